/* Internal pieces of minutiae extraction (core/fp_*.c), one file per stage
 * of the Hong, Wan and Jain 1998 chain ("Fingerprint image enhancement:
 * algorithm and performance evaluation", IEEE PAMI 20(8)):
 *
 *   fp_segment.c      normalisation, foreground mask, distance to its edge
 *   fp_orientation.c  orientation field from smoothed gradient tensors
 *   (normalisation, then orientation, then the mask, which uses coherence)
 *   fp_frequency.c    local ridge frequency from oriented x-signatures
 *   fp_enhance.c      oriented Gabor filtering and binarisation
 *   fp_thin.c         thinning to an 8-connected one-pixel skeleton
 *   fp_minutiae.c     crossing numbers, directions, false-minutia cleanup
 *   fp_extract.c      the driver, defaults, batch
 *
 * Every map is row-major h*w floats unless said otherwise. */
#ifndef WHORL_FP_INTERNAL_H
#define WHORL_FP_INTERNAL_H

#include "fingerprint.h"

typedef struct {
    int h, w;
    double scale;          /* dpi / 500: periods and windows scale with it */
    wh_extract_params p;
    float *norm;           /* zero mean, unit variance, ridges POSITIVE */
    float *mask;           /* foreground 0/1 */
    float *dist;           /* distance to the nearest background pixel (or image edge) */
    float *orient;         /* ridge direction in [0, pi), image frame */
    float *coher;          /* orientation reliability in [0, 1] */
    float *period;         /* local ridge period in pixels (valid everywhere) */
    float *enh;            /* Gabor response (ridges positive) */
    unsigned char *ridge;  /* binarised ridges inside the mask */
    unsigned char *skel;   /* one-pixel skeleton of ridge */
    float *tmp;            /* scratch, 3*h*w floats */
} fp_work;

/* Smallest and largest plausible ridge periods at this scale (5 and 15 px at 500 dpi). */
double fp_min_period(const fp_work *wk);
double fp_max_period(const fp_work *wk);

/* Separable mean filter of radius r (a (2r+1)^2 box, cut at the image edge
 * and normalised by the pixels it covers), in place.  tmp: h*w floats.
 * Returns WH_ERR_MEMORY on allocation failure. */
wh_status fp_box_blur(float *a, int h, int w, int r, float *tmp);

/* norm from the image; returns 0 when it is flat (blank), 1 otherwise. */
int fp_normalise(fp_work *wk, const float *image);
/* orient and coher from norm. */
wh_status fp_orientation(fp_work *wk);
/* mask and dist from norm and coher; returns 0 when nothing is foreground,
 * 1 otherwise, -1 when out of memory. */
int fp_segment(fp_work *wk);
/* period from norm, orient, mask. */
wh_status fp_frequency(fp_work *wk);
/* enh and ridge from norm, orient, period, mask. */
wh_status fp_enhance(fp_work *wk);
/* skel from ridge. */
wh_status fp_thin(fp_work *wk);
/* Minutiae of skel into out (malloc'd). */
wh_status fp_find_minutiae(const fp_work *wk, wh_template *out);

#endif
