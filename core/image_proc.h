/* Preprocessing of fingerprint images: grey conversion, foreground
 * segmentation and cropping, resizing, contrast normalisation, resolution.
 *
 * Every function takes an image tensor of any dtype, (H,W) or (C,H,W) (it
 * goes through wh_image_to_grey first), and returns a new contiguous float32
 * (H,W) tensor.  Boxes are 0-based and half-open: rows top..bottom-1,
 * columns left..right-1. */
#ifndef WHORL_IMAGE_PROC_H
#define WHORL_IMAGE_PROC_H

#include <stdbool.h>

#include "tensor.h"

typedef struct {
    int64_t top, left, bottom, right;
} wh_box;

/* (H,W) or (C,H,W), C in 1..4: uint8 scaled by 1/255, floats kept as they
 * are; colour to ITU-R BT.601 luma, alpha dropped.  Returns a new reference
 * (t itself when it already is contiguous float32 (H,W) on the CPU). */
wh_status wh_image_to_grey(const wh_tensor *t, wh_tensor **out);

/* Foreground segmentation by block variance (Mehtre et al. 1987; the seed
 * article's "local variance"): blocks of `block` pixels whose variance
 * exceeds threshold x the variance of the whole image are foreground; of the
 * 8-connected groups of such blocks, those smaller than an eighth of the
 * largest are dropped as specks.  The box is their bounding box grown by
 * margin pixels; an image with no foreground gives an empty box. */
typedef struct {
    int block;        /* default 16 (about two ridge periods at 500 dpi) */
    double threshold; /* default 0.1 */
    int margin;       /* default 0 */
} wh_segment_opts;
void wh_segment_opts_default(wh_segment_opts *o);
wh_status wh_image_foreground(const wh_tensor *img, const wh_segment_opts *o, wh_tensor **mask,
                              wh_box *box);
/* The image cut to its foreground box (the whole image when it has no
 * foreground; *box then covers it all). */
wh_status wh_image_crop(const wh_tensor *img, const wh_segment_opts *o, wh_tensor **out,
                        wh_box *box);
/* The image cut to a given box (clamped to the image; must not be empty). */
wh_status wh_image_crop_box(const wh_tensor *img, const wh_box *box, wh_tensor **out);

/* To exactly h x w.  Per axis: area averaging when shrinking (each output
 * pixel is the mean of the input area it covers, as PIL's BOX filter),
 * bilinear interpolation with half-pixel centres when growing (PyTorch's
 * align_corners=False, edges clamped), a copy when the size is unchanged. */
wh_status wh_image_resize(const wh_tensor *img, int64_t h, int64_t w, wh_tensor **out);
/* Median of the image's border pixels (the lower middle value for an even
 * count): the paper or sensor colour around a print. */
wh_status wh_image_background(const wh_tensor *img, double *value);
/* Scaled to fit h x w with the aspect ratio kept, centred, the rest filled
 * with `background` (the border median when background < 0). */
wh_status wh_image_fit(const wh_tensor *img, int64_t h, int64_t w, double background,
                       wh_tensor **out);
/* Scales by to_dpi / from_dpi (sizes rounded to the nearest pixel). */
wh_status wh_image_resample_dpi(const wh_tensor *img, double from_dpi, double to_dpi,
                                wh_tensor **out);

/* Histogram equalisation over `bins` bins of [0,1] (values outside are
 * clamped into the end bins): v -> (cdf(bin(v)) - cdf_min) / (N - cdf_min),
 * OpenCV's equalizeHist without its rounding to 8 bits.  A constant image is
 * returned unchanged. */
wh_status wh_image_equalize(const wh_tensor *img, int bins, wh_tensor **out);

/* Contrast-limited adaptive histogram equalisation (Zuiderveld, "Graphics
 * Gems IV", 1994), with OpenCV's conventions: the image is divided into
 * tiles_y x tiles_x tiles of ceil(H/tiles_y) x ceil(W/tiles_x) pixels
 * (reflect-101 padding where that overshoots), each tile's histogram is
 * clipped at max(1, clip x tile_pixels / bins) with the excess spread evenly
 * over the bins, and each pixel's value is mapped through the cdfs of its four
 * nearest tiles, bilinearly weighted by the distances to their centres. */
typedef struct {
    int tiles_y, tiles_x; /* default 8 x 8 */
    double clip;          /* default 2.0; 0 = no limit */
    int bins;             /* default 256 */
} wh_clahe_opts;
void wh_clahe_opts_default(wh_clahe_opts *o);
wh_status wh_image_clahe(const wh_tensor *img, const wh_clahe_opts *o, wh_tensor **out);

/* The pipeline of whorl.data, in this order: grey; dpi resampling; the
 * background estimate (border median); crop to the foreground (or to
 * `box` when given, e.g. the clean partner's box for a damaged image);
 * fit (or stretch) to out_h x out_w, padding with that background;
 * equalisation; inversion. */
typedef enum { WH_EQ_NONE = 0, WH_EQ_HIST = 1, WH_EQ_CLAHE = 2 } wh_equalize_mode;
typedef struct {
    double from_dpi, to_dpi; /* both > 0 to resample */
    bool crop;
    wh_segment_opts segment;
    int64_t out_h, out_w;    /* 0: keep the size */
    bool keep_aspect;        /* fit with padding (else stretch) */
    wh_equalize_mode equalize;
    wh_clahe_opts clahe;
    bool invert;
} wh_preprocess_opts;
void wh_preprocess_opts_default(wh_preprocess_opts *o);
/* box: NULL to segment the image itself.  box_used (may be NULL) receives
 * the crop box in the (resampled) image's coordinates, the whole image when
 * not cropping. */
wh_status wh_preprocess(const wh_tensor *img, const wh_preprocess_opts *o, const wh_box *box,
                        wh_tensor **out, wh_box *box_used);

#endif
