/* Synthetic fingerprints and realistic damage.
 *
 * Generation follows SFinGe (Cappelli, Maio, Maltoni, "Synthetic
 * fingerprint-image generation", ICPR 2000, and Maltoni et al., Handbook of
 * Fingerprint Recognition, ch. 6):
 *
 *   1. a silhouette (the finger's contact area) and a class drawn with the
 *      natural frequencies of the five Henry classes;
 *   2. an orientation field from singular points (the zero-pole model of
 *      Sherlock & Monro 1993 with the Vizcaya & Gerhardt 1996 correction),
 *      or a smooth arch field for plain arches;
 *   3. a ridge-period map, longer above the cores and below the deltas;
 *   4. ridges grown from random seeds by iterated space-variant Gabor
 *      filtering with a saturating nonlinearity, until they stop changing:
 *      minutiae appear where growth fronts meet out of phase;
 *   5. impressions of that "master" finger: a rigid motion, an elastic skin
 *      distortion (after Cappelli, Maio, Maltoni 2001, "Modelling plastic
 *      distortion in fingerprint images"), pressure and dryness (ridge
 *      thickness), noise and a background.
 *
 * All randomness comes from a local xoshiro256** generator seeded from
 * (seed, finger, impression), never from the global whorl generator, so
 * every output is a pure function of its parameters whatever the thread
 * count.  Images are float32 in [0,1], ridges dark on a light background,
 * row-major (height, width).  Coordinates are 0-based pixels, x to the
 * right, y down; angles are radians in the same frame (so a positive angle
 * turns from +x towards +y). */
#ifndef WHORL_SYNTH_H
#define WHORL_SYNTH_H

#include <stdint.h>

#include "status.h"

/* ---- local random generator ------------------------------------------------ */
typedef struct {
    uint64_t s[4];
} wh_synth_rng;

/* A well-mixed 64-bit value of two (splitmix64 finaliser), to derive seeds. */
uint64_t wh_synth_mix(uint64_t a, uint64_t b);
void wh_synth_rng_seed(wh_synth_rng *r, uint64_t seed);
uint64_t wh_synth_rng_next(wh_synth_rng *r);
double wh_synth_rng_uniform(wh_synth_rng *r);               /* [0, 1) */
double wh_synth_rng_range(wh_synth_rng *r, double lo, double hi);
double wh_synth_rng_normal(wh_synth_rng *r);                /* N(0, 1) */
int wh_synth_rng_int(wh_synth_rng *r, int n);               /* [0, n) */

/* ---- classes ------------------------------------------------------------------ */
typedef enum {
    WH_FP_ARCH = 0,
    WH_FP_TENTED_ARCH,
    WH_FP_LEFT_LOOP,
    WH_FP_RIGHT_LOOP,
    WH_FP_WHORL,
    WH_FP_NCLASSES
} wh_fp_class;

/* "arch", "tented_arch", "left_loop", "right_loop", "whorl". */
const char *wh_fp_class_name(int cls);
/* The class of a name, or -1. */
int wh_fp_class_from_name(const char *name);
/* Natural frequencies (Wilson et al., NIST), summing to 1. */
extern const double wh_fp_class_frequency[WH_FP_NCLASSES];

/* ---- generation ----------------------------------------------------------------- */
#define WH_FP_MAX_SINGULAR 4

typedef struct {
    double x, y;
    int kind; /* +1 core, -1 delta */
} wh_fp_point;

typedef struct {
    double x, y;
    double angle; /* ridge direction; for endings it points away from the ridge */
    int kind;     /* 1 ending, 3 bifurcation (crossing numbers) */
} wh_fp_minutia;

typedef struct {
    int height, width; /* > 0, at most WH_SYNTH_MAX_SIDE */
    double dpi;        /* > 0; periods scale by dpi / 500 */
    double period;     /* mean ridge period in pixels; <= 0 draws 8.2..10 px at 500 dpi */
    uint64_t seed;     /* base seed */
    int64_t finger;    /* identity: the master depends on (seed, finger) only */
    int impression;    /* >= 0: which impression of that finger */
    int cls;           /* a wh_fp_class, or -1 to draw it */
} wh_synth_params;

#define WH_SYNTH_MAX_SIDE 8192

/* What was generated, in the coordinates of the returned image. */
typedef struct {
    int cls;
    double period;            /* mean ridge period over the foreground, pixels */
    double dx, dy, rotation;  /* the impression's rigid motion (pixels, radians): the */
    double cx, cy;            /* master point p lands near c + R(rotation)(p - c) + d */
    int nsingular;
    wh_fp_point singular[WH_FP_MAX_SINGULAR];
    int nminutiae;
    wh_fp_minutia *minutiae;  /* malloc'd (NULL when none); wh_fp_info_free */
} wh_fp_info;

/* Optional per-pixel outputs (each height*width floats, or NULL):
 * orientation of the ridges in [0, pi), period in pixels, and the finger's
 * foreground (1 inside the contact area, 0 outside, soft at the edge). */
typedef struct {
    float *orientation;
    float *period;
    float *mask;
} wh_fp_fields;

wh_status wh_synth_check_params(const wh_synth_params *p);
/* One impression into image (height*width).  info and fields may be NULL. */
wh_status wh_synth_fingerprint(const wh_synth_params *p, float *image, wh_fp_info *info,
                               const wh_fp_fields *fields);
/* count prints into images (count*height*width): print i is impression
 * p->impression + i % impressions of finger p->finger + i / impressions, so
 * a finger's master is grown once for all its impressions.  OpenMP over
 * fingers.  infos: count entries or NULL. */
wh_status wh_synth_batch(const wh_synth_params *p, int count, int impressions, float *images,
                         wh_fp_info *infos);
void wh_fp_info_free(wh_fp_info *info);

/* ---- damage ------------------------------------------------------------------------ */
typedef enum {
    WH_DMG_OBLITERATION = 0, /* SOCOFing "Obl": a scar overwrites the ridges */
    WH_DMG_CENTRAL_ROTATION, /* SOCOFing "CR": a central disc rotated */
    WH_DMG_ZCUT,             /* SOCOFing "Zcut": a Z-shaped cut, flaps displaced */
    WH_DMG_ERASURE,          /* blobs and scratches wiped to the background */
    WH_DMG_SMUDGE,           /* ink smudges */
    WH_DMG_GAUSSIAN_NOISE,
    WH_DMG_SALT_PEPPER,
    WH_DMG_BLUR,
    WH_DMG_LOW_CONTRAST,
    WH_DMG_DRY,              /* thin, broken ridges in dry patches */
    WH_DMG_WET,              /* ridges merged into dark blotches */
    WH_DMG_PARTIAL,          /* part of the finger missing */
    WH_DMG_NKINDS
} wh_damage_kind;

enum { WH_DMG_EASY = 0, WH_DMG_MEDIUM = 1, WH_DMG_HARD = 2, WH_DMG_NLEVELS = 3 };

const char *wh_damage_name(int kind);
int wh_damage_from_name(const char *name); /* -1 if unknown */
const char *wh_damage_level_name(int level);
int wh_damage_level_from_name(const char *name);

/* One (h, w) image in [0,1] -> out (damaged) and mask (1 where the damage
 * applies, 0 elsewhere; pixels where mask is 0 are copied bit for bit).
 * in and out may be the same buffer. */
wh_status wh_synth_damage(const float *in, int h, int w, int kind, int level, uint64_t seed,
                          float *out, float *mask);
/* n images, each with its own kind, level and seed; OpenMP over images. */
wh_status wh_synth_damage_batch(const float *in, int n, int h, int w, const int *kinds,
                                const int *levels, const uint64_t *seeds, float *out,
                                float *mask);

#endif
