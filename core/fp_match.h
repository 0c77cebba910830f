/* Fingerprint matching: Minutia Cylinder-Code (MCC) and the score
 * statistics that turn match scores into error rates.
 *
 * MCC is the representation and matcher of R. Cappelli, M. Ferrara and
 * D. Maltoni, "Minutia Cylinder-Code: A New Representation and Matching
 * Technique for Fingerprint Recognition", IEEE TPAMI 32(12):2128-2141, 2010.
 * Each minutia m gets a "cylinder": a disc of radius R centred on m and
 * turned with m's direction (so the code is invariant to translation and
 * rotation), Ns x Ns spatial cells, each split into Nd direction bins.  A
 * cell bin counts, with Gaussian weights, the neighbouring minutiae near the
 * cell centre whose direction relative to m falls in the bin.  Two
 * cylinders compare by a normalised vector distance over the cells valid in
 * both; two prints by the best local similarities after a relaxation that
 * keeps only the pairs whose mutual distances and angles agree (LSS-R).
 *
 * Templates are precomputed once per print (wh_mcc_build), so an all-pairs
 * evaluation pays the cylinder construction n times, not n^2 times.
 * Everything here is deterministic and thread-safe (no globals written). */
#ifndef WHORL_FP_MATCH_H
#define WHORL_FP_MATCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fingerprint.h"
#include "status.h"

/* The difference a - b of two angles in [-pi, pi) (the paper's d_phi). */
static inline double wh_angle_diff(double a, double b) {
    const double pi = 3.14159265358979323846;
    double d = a - b;
    if (d < -pi || d >= pi) d -= 2 * pi * floor((d + pi) / (2 * pi));
    return d;
}

/* The paper's sigmoid Z(v, mu, tau) = 1 / (1 + exp(-tau (v - mu))). */
static inline double wh_mcc_sigmoid(double v, double mu, double tau) {
    return 1 / (1 + exp(-tau * (v - mu)));
}

/* Parameters, defaults from the paper's Table 2 at 500 dpi (distances scale
 * with dpi / 500). */
typedef struct {
    double dpi;               /* resolution the distances below are meant for */
    int ns;                   /* spatial cells per side (16), at most WH_MCC_MAX_NS */
    int nd;                   /* direction bins (6), at most WH_MCC_MAX_ND */
    double radius;            /* R, pixels (70 at 500 dpi) */
    double sigma_s;           /* spatial Gaussian, pixels (28/3) */
    double sigma_d;           /* directional Gaussian, radians (2 pi / 9) */
    double mu_psi, tau_psi;   /* the sigmoid that limits a cell's value (1/100, 400) */
    double omega;             /* the convex hull of the minutiae is grown by omega pixels (50) */
    double min_valid_cells;   /* a cylinder needs this fraction of its disc's cells valid (0.75) */
    int min_neighbours;       /* ... and this many minutiae within R + 3 sigma_s (2) */
    double min_matchable;     /* two cylinders compare when this fraction of the disc's
                                 cells is valid in both (0.60) */
    double max_rotation;      /* cylinders whose minutiae turn more than this never pair (pi/2) */
    /* global score (LSS-R): n_P = min_np + round(Z(min(nA, nB), mu_p, tau_p) (max_np - min_np)) */
    int min_np, max_np;       /* 4, 12 */
    double mu_p, tau_p;       /* 20, 2/5 */
    int relax_iterations;     /* n_rel (5) */
    double relax_weight;      /* w_R (0.5) */
    double mu_rho[3], tau_rho[3]; /* pair compatibility: distance (5 px, -8/5 per px),
                                     relative direction and radial angle (pi/12, -30) */
} wh_mcc_params;

#define WH_MCC_MAX_NS 32
#define WH_MCC_MAX_ND 16
#define WH_MCC_MAX_PAIRS 64

/* The paper's parameters for a resolution (dpi <= 0 means 500). */
wh_mcc_params wh_mcc_defaults(double dpi);
/* WH_ERR_ARG naming the first bad field. */
wh_status wh_mcc_check_params(const wh_mcc_params *p);

/* The cylinders of one print.  Only valid cylinders are kept; index maps
 * each back to its minutia in the source template. */
typedef struct {
    wh_mcc_params params;
    int minutiae;     /* minutiae in the source template */
    int count;        /* valid cylinders */
    int cells;        /* ns * ns */
    int disc_cells;   /* cells whose centre lies within R of the minutia */
    int *index;       /* count: minutia index in the source template */
    float *x, *y, *angle; /* count: the minutia of each cylinder */
    /* Cell values are stored as round(255 v): the similarity is a ratio, so
     * the scale cancels, integer dot products are exact, and a cylinder
     * takes 2.8 KB instead of 8 (16 x 16 x 6 cells). */
    uint8_t *valid;   /* count x cells: 1 where the cell is valid, else 0 */
    float *energy;    /* count x cells: sum over the nd bins of the stored value^2 */
    uint8_t *values;  /* count x cells x nd, 0 in invalid cells */
    /* between the minutiae of cylinders i and k, at [i * count + k]: their
     * distance and the direction of the line from i to k (for the relaxation) */
    float *distance, *direction;
    size_t bytes;     /* all of the above, noted in wh_memory_live_bytes */
} wh_mcc_template;

/* Builds t's cylinders into out (malloc'd; wh_mcc_free).  Minutiae with
 * non-finite fields are an error; a template with under two minutiae gives
 * no cylinders (it then matches nothing, with score 0). */
wh_status wh_mcc_build(const wh_template *t, const wh_mcc_params *p, wh_mcc_template *out);
void wh_mcc_free(wh_mcc_template *m);

/* One pair of matched minutiae: indices into the two source templates and
 * the relaxed similarity of their cylinders (in [0, 1]). */
typedef struct {
    int a, b;
    float similarity;
} wh_match_pair;

/* Score of a against b in [0, 1] (1 for identical templates, 0 when either
 * has no valid cylinder), and up to max_pairs of the pairs behind it (the
 * n_P pairs the score averages, best first); pairs may be NULL.  The two
 * templates must have been built with the same ns, nd and radius. */
wh_status wh_mcc_match(const wh_mcc_template *a, const wh_mcc_template *b, double *score,
                       wh_match_pair *pairs, int max_pairs, int *npairs);

/* Builds both templates with p (NULL: defaults at 500 dpi) and matches them. */
wh_status wh_match_templates(const wh_template *a, const wh_template *b, const wh_mcc_params *p,
                             double *score, wh_match_pair *pairs, int max_pairs, int *npairs);

/* Scores of many comparisons, OpenMP over comparisons.  With pair_a/pair_b
 * (npairs entries each, 0-based) scores[k] = match(a[pair_a[k]], b[pair_b[k]]);
 * with pair_a == NULL every a[i] against every b[j] into scores[i * nb + j]. */
wh_status wh_mcc_match_many(const wh_mcc_template *const *a, int na,
                            const wh_mcc_template *const *b, int nb, const int *pair_a,
                            const int *pair_b, int64_t npairs, double *scores);

/* ---- score statistics (core/fp_eval.c) -------------------------------------------
 * Convention: a comparison is accepted ("match") when its score is strictly
 * greater than the threshold.  FMR(t) is the fraction of impostor scores > t,
 * FNMR(t) the fraction of genuine scores <= t, GMR = 1 - FNMR. */

/* The lowest threshold whose FMR is at most fmr (0 < fmr < 1): the
 * (floor(fmr n) + 1)-th highest impostor score.  n >= 1, scores finite. */
wh_status wh_eval_threshold_at_fmr(const double *impostor, int64_t n, double fmr,
                                   double *threshold);
/* Fraction of genuine scores > threshold (n >= 1). */
wh_status wh_eval_gmr(const double *genuine, int64_t n, double threshold, double *gmr);
/* Equal error rate: the FMR and FNMR curves over every distinct score as a
 * threshold (and one below them all), linearly interpolated between the two
 * thresholds where FMR - FNMR changes sign.  threshold (may be NULL) gets
 * the score at the crossing, interpolated the same way. */
wh_status wh_eval_eer(const double *genuine, int64_t ng, const double *impostor, int64_t ni,
                      double *eer, double *threshold);

#endif
