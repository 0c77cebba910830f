/* Internals of the damage generator, shared by synth_damage.c (context,
 * shapes, filters, dispatch) and synth_damage_kinds.c (one function per
 * kind of damage).
 *
 * Every kind builds a weight map (0 = untouched) and a replacement image;
 * dmg_blend then writes out = in + weight (replacement - in) where the
 * weight is positive and copies the input bit for bit elsewhere, and the
 * mask is exactly where the weight is positive. */
#ifndef WHORL_SYNTH_DAMAGE_H
#define WHORL_SYNTH_DAMAGE_H

#include "synth_internal.h"

typedef struct {
    const float *in;
    int h, w, level;
    wh_synth_rng *rng;
    double bg, bg_noise;  /* background grey and its pixel noise */
    double cx, cy;        /* centre of the print */
    double rx, ry;        /* half extents of the print */
    double scale;         /* image size relative to 224 px: sizes of effects */
    float *weight, *rep;  /* (h, w) work maps, zeroed / copied from in */
    float *tmp, *tmp2;    /* (h, w) scratch */
} dmg_ctx;

/* ---- shapes: each raises weight to at least its own value ---------------- */
/* A blob with a wavy outline: radius r(phi) = radius (1 + sum_k a_k cos(k phi
 * + p_k)), stretched by `elong` along direction `angle`, soft over `edge` px. */
void dmg_blob(dmg_ctx *c, float *weight, double x0, double y0, double radius, double elong,
              double angle, double edge, double strength);
/* A quadratic Bezier stroke from (x0,y0) through control (x1,y1) to (x2,y2). */
void dmg_stroke(dmg_ctx *c, float *weight, const double *pts, double width, double strength);
/* A random point on the print (within frac of its extents from the centre). */
void dmg_point_on_print(dmg_ctx *c, double frac, double *x, double *y);

/* dst = 1 on the print (where the local mean ink is high), 0 on the
 * background, smooth between; tmp is scratch. */
void dmg_print_presence(dmg_ctx *c, float *dst, float *tmp);

/* ---- fields and filters --------------------------------------------------- */
/* (h, w) smooth random values in [0, 1] on a grid of `cell` pixels. */
void dmg_smooth_field(dmg_ctx *c, float *dst, double cell);
/* Separable Gaussian blur of src into dst (may alias); sigma in px. */
void dmg_gaussian_blur(const float *src, float *dst, float *tmp, int h, int w, double sigma);
/* Grey erosion (min) or dilation (max) over a disc of radius r px. */
void dmg_min_max_filter(const float *src, float *dst, int h, int w, int r, int take_max);

/* ---- the kinds (synth_damage_kinds.c) -------------------------------------- */
void dmg_obliteration(dmg_ctx *c);
void dmg_central_rotation(dmg_ctx *c);
void dmg_zcut(dmg_ctx *c);
void dmg_erasure(dmg_ctx *c);
void dmg_smudge(dmg_ctx *c);
void dmg_gaussian_noise(dmg_ctx *c);
void dmg_salt_pepper(dmg_ctx *c);
void dmg_blur(dmg_ctx *c);
void dmg_low_contrast(dmg_ctx *c);
void dmg_dry(dmg_ctx *c);
void dmg_wet(dmg_ctx *c);
void dmg_partial(dmg_ctx *c);

/* Background grey with its noise at (x, y) (for wiped areas). */
static inline double dmg_background(dmg_ctx *c) {
    return synth_clamp(c->bg + c->bg_noise * wh_synth_rng_normal(c->rng), 0, 1);
}
/* A value of one of three per-level ranges: lo[level]..hi[level]. */
static inline double dmg_pick(dmg_ctx *c, const double lo[3], const double hi[3]) {
    return wh_synth_rng_range(c->rng, lo[c->level], hi[c->level]);
}

#endif
