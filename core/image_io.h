/* Reading and writing image files.
 *
 * Decoders: TIFF (libtiff: 1/2/4/8/16-bit grey, min-is-white, palette, RGB
 * and RGBA, contiguous or planar, strips or tiles, any codec libtiff has;
 * only the first page of a multi-page file), BMP (own decoder: 1/4/8-bit
 * palettized, RLE4/RLE8, 16/24/32-bit, BI_BITFIELDS, bottom-up or top-down,
 * all header versions), PNG and JPEG (stb_image), PGM/PPM/PBM (own decoder,
 * any maxval).  The format comes from the file's first bytes, never from its
 * name.  Every decoder checks sizes before allocating and rejects truncated
 * data; failures are WH_ERR_IO (cannot read the file) or WH_ERR_FORMAT
 * (corrupt or unsupported content) with a message naming the file and the
 * reason.  Decoders never print anything.
 *
 * Tensors: a grey image is (H,W); a colour image (C,H,W) with C the file's
 * channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).  uint8 tensors hold the
 * 8-bit values (16-bit files are rounded to 8 bits); float tensors hold
 * values in [0,1] (value / 255 or / 65535, so 16-bit precision is kept).
 * Grey conversion of colour uses ITU-R BT.601 luma, 0.299 R + 0.587 G +
 * 0.114 B, and ignores alpha (as PIL's convert("L")).
 *
 * Writers, chosen by the extension of the path (any case): .png (8-bit,
 * stb_image_write), .tif/.tiff (8- or 16-bit, libtiff, uncompressed, LZW or
 * deflate), .pgm (8- or 16-bit binary) and .bmp (8-bit palettized grey or
 * 24-bit colour).  Float input is clamped to [0,1] and rounded; NaN is an
 * error. */
#ifndef WHORL_IMAGE_IO_H
#define WHORL_IMAGE_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

typedef struct {
    int width, height;
    int channels;       /* 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (after palette expansion) */
    int bits;           /* bits per pixel as stored in the file (1, 4, 8, 16, 24, 32, 48...) */
    int depth;          /* 8 or 16: precision of the decoded samples */
    int pages;          /* TIFF directories (1 for other formats) */
    const char *format; /* "tiff", "bmp", "png", "jpeg", "pnm" */
} wh_image_info;

/* Largest image any decoder accepts, in pixels (default 1 << 28); files that
 * declare more are rejected before anything is allocated.  Process-wide; the
 * fuzz target lowers it. */
void wh_image_set_max_pixels(int64_t max_pixels);
int64_t wh_image_max_pixels(void);

/* Decodes a file.  grey: convert to (H,W); else (C,H,W).  dtype: WH_UINT8,
 * WH_FLOAT32 or WH_FLOAT64. */
wh_status wh_image_read(const char *path, bool grey, wh_dtype dtype, wh_tensor **out);
/* The same from memory; `name` is used in messages only. */
wh_status wh_image_decode(const void *data, size_t size, const char *name, bool grey,
                          wh_dtype dtype, wh_tensor **out);
/* Header information without decoding the pixels (TIFF and BMP headers are
 * fully validated; PNG/JPEG as far as stb_image's info reaches). */
wh_status wh_image_info_file(const char *path, wh_image_info *info);
wh_status wh_image_info_memory(const void *data, size_t size, const char *name,
                               wh_image_info *info);

typedef enum { WH_TIFF_NONE = 0, WH_TIFF_LZW = 1, WH_TIFF_DEFLATE = 2 } wh_tiff_compression;
typedef struct {
    int bits;                        /* 8 (default) or 16 (TIFF and PGM only) */
    wh_tiff_compression compression; /* TIFF only */
    int quality;                     /* JPEG only: 1..100, 0 = the default 95 */
} wh_image_write_opts;

/* Writes img ((H,W) or (C,H,W), C in 1..4; uint8 as is, float in [0,1]) to
 * path in the format its extension names (.png .tif .tiff .pgm .ppm .pnm
 * .bmp .jpg .jpeg).  opts may be NULL. */
wh_status wh_image_write(const char *path, const wh_tensor *img, const wh_image_write_opts *opts);

/* Reads a whole file into a malloc'd buffer (freed by the caller); a missing,
 * unreadable, empty or larger-than-max_bytes file is WH_ERR_IO naming it. */
wh_status wh_read_file(const char *path, size_t max_bytes, unsigned char **data, size_t *size);

#endif
