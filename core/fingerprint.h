/* Fingerprint identity: minutiae extraction (core/fp_*.c) and matching
 * (core/fp_match*.c), so a restoration is judged by whether it is still the
 * same finger.
 *
 * Images are single-channel float32 in [0, 1], row-major height*width,
 * ridges dark on a light background (as whorl.synth draws them and as
 * sensors deliver them).  Coordinates are pixels with (0,0) the top-left
 * pixel centre (whorl.synth's C coordinates put that centre at (0.5, 0.5):
 * subtract 0.5 to compare).  Angles are radians in [0, 2*pi) in the image
 * frame, as whorl.synth's: measured from +x turning towards +y (down), so a
 * minutia's direction (cos a, sin a) is a step in image coordinates and the
 * rotation of an image by r adds r to every angle.  The type codes are the
 * crossing numbers, shared with whorl.synth's ground truth (wh_fp_minutia). */
#ifndef WHORL_FINGERPRINT_H
#define WHORL_FINGERPRINT_H

#include <stdint.h>

#include "status.h"

#define WH_MINUTIA_ENDING 1
#define WH_MINUTIA_BIFURCATION 3

typedef struct {
    float x, y;
    float angle;   /* radians in [0, 2*pi): an ending points away from its ridge (where
                      the ridge would go on); a bifurcation along its stem, away from
                      the fork (the direction of the ending it becomes when the fork's
                      branch breaks off: the valley ending's direction) */
    int type;      /* WH_MINUTIA_ENDING or WH_MINUTIA_BIFURCATION */
    float quality; /* in [0, 1]: local ridge clarity and distance from the mask border */
} wh_minutia;

/* A template: what the matcher needs of one print. */
typedef struct {
    int count;
    wh_minutia *minutiae; /* malloc'd, count entries (NULL when 0); wh_template_free */
    int height, width;    /* of the image it came from */
} wh_template;

/* Frees t->minutiae and zeroes t (defined in core/fp_extract.c). */
void wh_template_free(wh_template *t);

/* ---- extraction (Hong, Wan and Jain 1998 chain; docs/fingerprint.md) ---------- */

typedef struct {
    double dpi;            /* resolution of the input, 50 to 5000; periods scale by dpi/500 (default 500) */
    int block;             /* block side for segmentation and frequency (default 16 at 500 dpi) */
    double variance_threshold; /* foreground when the block variance of the normalised (unit
                                  variance), 3x3-smoothed image exceeds it, and the block's
                                  mean orientation coherence exceeds 0.3 (default 0.1) */
    double orientation_sigma;  /* smoothing of the doubled-angle field, pixels (6 at 500 dpi) */
    double gabor_sigma;        /* Gabor envelope as a fraction of the local period (0.45) */
    int border;            /* drop minutiae closer than this to the mask border, pixels (12) */
    int min_ridge;         /* spurs, short ridges and bridges shorter than this go, pixels (10) */
    int upsample;          /* 0: automatic (prints under 350 dpi are extracted at twice the
                              size, their ridges being too thin to thin cleanly), 1: never,
                              2: always; lengths above stay in input pixels either way */
} wh_extract_params;

/* Defaults for a dpi (<= 0 means 500). */
wh_extract_params wh_extract_defaults(double dpi);

/* Optional intermediate outputs, each height*width floats or NULL:
 * enhanced image (ridges 1, valleys 0 after Gabor + binarisation), the
 * orientation of ridges in [0, pi), the ridge frequency (1/period, 0 where
 * unknown), the foreground mask (0/1), and the thinned skeleton (0/1). */
typedef struct {
    float *enhanced;
    float *orientation;
    float *frequency;
    float *mask;
    float *skeleton;
} wh_extract_fields;

/* Minutiae of one image into out (out->minutiae malloc'd).  fields may be
 * NULL.  Errors (WH_ERR_ARG) on non-finite pixels or sides under 32. */
wh_status wh_extract_minutiae(const float *image, int height, int width,
                              const wh_extract_params *params, wh_template *out,
                              const wh_extract_fields *fields);

/* count images (count*height*width) into out[count]; OpenMP over images.
 * On failure every out[i] is freed and zeroed. */
wh_status wh_extract_batch(const float *images, int count, int height, int width,
                           const wh_extract_params *params, wh_template *out);

/* ---- pairing of two minutia sets in the same frame ------------------------------ */

/* One-to-one pairs (a index, b index) of minutiae closer than max_distance
 * pixels whose angles differ by at most max_angle radians (modulo pi when
 * axial, for ground truth whose bifurcation angles are axes), chosen
 * greedily by increasing cost distance/max_distance + angle/max_angle (the
 * usual scoring of extracted against ground-truth minutiae; types are not
 * compared, since pressure turns endings into bifurcations).  pairs holds
 * 2 * min(na, nb) ints: pairs[2k], pairs[2k+1], in increasing a index;
 * *count receives how many. */
wh_status wh_minutiae_pair(const wh_minutia *a, int na, const wh_minutia *b, int nb,
                           double max_distance, double max_angle, int axial, int *pairs,
                           int *count);

/* ---- matching ----------------------------------------------------------------- */
/* Declared in core/fp_match.h by the matcher. */

#endif
