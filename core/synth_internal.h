/* Internals shared by the synth_*.c files: the master finger (everything
 * that identifies one finger, grown once and shared by its impressions) and
 * the steps that build and render it. */
#ifndef WHORL_SYNTH_INTERNAL_H
#define WHORL_SYNTH_INTERNAL_H

#include <stdbool.h>

#include "synth.h"

/* The finger's outline: a half ellipse for the tip on top of a
 * superellipse (exponent 4) for the flatter lower part. */
typedef struct {
    double cx, top;      /* centre column, topmost row of the tip */
    double half_width;   /* a */
    double tip_height;   /* semi-axis of the tip ellipse; its centre row is top + tip_height */
    double body_height;  /* semi-axis of the lower superellipse below that row */
    double visible;      /* rows of the finger inside the canvas */
} synth_silhouette;

/* The master canvas extends the output frame by a margin on every side so
 * that an impression's rigid motion and distortion pull in grown ridges
 * rather than blank canvas.  Master coordinates = output + (ox, oy). */
typedef struct {
    int h, w;             /* master canvas */
    int oh, ow, ox, oy;   /* output frame size and its offset in the canvas */
    int cls;
    double period;        /* requested mean period (pixels) */
    synth_silhouette sil;
    int nsingular;
    wh_fp_point singular[WH_FP_MAX_SINGULAR];
    float *orientation;   /* (h, w) ridge direction in [0, pi) */
    float *period_map;    /* (h, w) pixels */
    float *mask;          /* (h, w) in [0, 1], soft edge */
    float *ridges;        /* (h, w) in [-1, 1], > 0 on ridges */
    int nminutiae;
    wh_fp_minutia *minutiae;
} synth_master;

void synth_master_free(synth_master *m);

/* Normalised radius of (x, y) in the silhouette: < 1 inside. */
double synth_silhouette_radius(const synth_silhouette *s, double x, double y);

/* synth_orientation.c: class, silhouette, singular points, orientation field
 * and period map of the master (allocates every field). */
wh_status synth_master_layout(const wh_synth_params *p, wh_synth_rng *rng, synth_master *m);

/* synth_ridges.c: m->ridges from the orientation and period maps. */
wh_status synth_grow_ridges(synth_master *m, wh_synth_rng *rng);

/* synth_minutiae.c: thin the ridge map and keep crossing-number minutiae
 * inside the foreground. */
wh_status synth_find_minutiae(synth_master *m);

/* The full master: layout, ridges, and minutiae when asked for. */
wh_status synth_make_master(const wh_synth_params *p, bool minutiae, synth_master *m);

/* synth_impression.c: impression p->impression of master m. */
wh_status synth_render_impression(const synth_master *m, const wh_synth_params *p, float *image,
                                  wh_fp_info *info, const wh_fp_fields *fields);

/* Shared small helpers. */
static inline double synth_clamp(double v, double lo, double hi) {
    return v < lo ? lo : v > hi ? hi : v;
}
static inline double synth_smoothstep(double e0, double e1, double x) {
    double t = synth_clamp((x - e0) / (e1 - e0), 0.0, 1.0);
    return t * t * (3.0 - 2.0 * t);
}
/* Bilinear sample of a (h, w) map; `outside` beyond the border. */
float synth_sample(const float *map, int h, int w, double x, double y, float outside);

#endif
