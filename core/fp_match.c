/* MCC matching (Cappelli, Ferrara, Maltoni, TPAMI 2010, sections 4-5):
 *
 *   1. local similarity of every cylinder pair (the matrix Gamma, nA x nB):
 *      1 - |a - b| / (|a| + |b|) over the cells valid in both, 0 when the
 *      minutiae turn more than max_rotation apart or too few cells are
 *      valid in both;
 *   2. n_R = min(nA, nB) pairs taken greedily from the highest similarity
 *      down, each minutia at most once (an approximation of the paper's
 *      LSA assignment);
 *   3. relaxation (LSS-R): each pair's similarity is pulled towards the
 *      similarities of the pairs it is geometrically compatible with
 *      (equal distances, relative directions and radial angles in both
 *      prints), n_rel times;
 *   4. the score is the mean relaxed similarity of the n_P pairs whose
 *      similarity the relaxation kept best (largest efficiency
 *      lambda_final / lambda_initial); n_P grows with min(nA, nB). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_match.h"

/* ---- 1. local similarity --------------------------------------------------------- */

/* Cylinder i of a against cylinder j of b.  Cells: energy is the sum of a
 * cell's squared bins, so |a restricted to b's valid cells|^2 is a dot
 * product of a's energies with b's validity; invalid cells hold zeros, so
 * the plain dot product of the values is already the restricted one. */
static double local_similarity(const wh_mcc_template *a, int i, const wh_mcc_template *b, int j,
                               int min_common) {
    if (fabs(wh_angle_diff(a->angle[i], b->angle[j])) > a->params.max_rotation) return 0;
    int cells = a->cells, len = cells * a->params.nd;
    const uint8_t *va = a->valid + (size_t)i * cells, *vb = b->valid + (size_t)j * cells;
    const float *ea = a->energy + (size_t)i * cells, *eb = b->energy + (size_t)j * cells;
    int common = 0;
    float aa = 0, bb = 0;
    /* omp simd: lets the compiler reorder the float sums into vector lanes */
#pragma omp simd reduction(+ : common, aa, bb)
    for (int c = 0; c < cells; c++) {
        common += va[c] & vb[c];
        aa += vb[c] ? ea[c] : 0.0f;
        bb += va[c] ? eb[c] : 0.0f;
    }
    if (common < min_common) return 0;
    const uint8_t *xa = a->values + (size_t)i * len, *xb = b->values + (size_t)j * len;
    int ab = 0; /* at most 32 x 32 x 16 x 255^2 < 2^31: exact */
#pragma omp simd reduction(+ : ab)
    for (int k = 0; k < len; k++) ab += xa[k] * xb[k];
    double na = sqrt(aa), nb = sqrt(bb);
    if (na + nb <= 0) return 0;
    double diff2 = (double)aa + bb - 2.0 * ab;
    double s = 1 - sqrt(diff2 > 0 ? diff2 : 0) / (na + nb);
    return s < 0 ? 0 : s > 1 ? 1 : s;
}

/* ---- 2. initial pairs -------------------------------------------------------------- */

typedef struct {
    float s;
    int i, j;
} cand;

static int by_score_desc(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    if (a->i != b->i) return a->i - b->i; /* ties broken by index: deterministic */
    return a->j - b->j;
}

/* Greedy one-to-one assignment from the best similarity down; returns how
 * many pairs (at most min(na, nb)), skipping zero similarities. */
static int pick_pairs(cand *all, int na, int nb, cand *out) {
    int n = 0, m = 0, want = na < nb ? na : nb;
    for (int k = 0; k < na * nb; k++)
        if (all[k].s > 0) all[m++] = all[k];
    qsort(all, (size_t)m, sizeof *all, by_score_desc);
    char *used = calloc((size_t)(na + nb), 1);
    if (!used) return -1;
    for (int k = 0; k < m && n < want; k++) {
        if (used[all[k].i] || used[na + all[k].j]) continue;
        used[all[k].i] = used[na + all[k].j] = 1;
        out[n++] = all[k];
    }
    free(used);
    return n;
}

/* ---- 3. relaxation ------------------------------------------------------------------- */

/* Compatibility rho of pairs t = (a_t, b_t) and k = (a_k, b_k): the product of
 * three sigmoids of how differently the two prints place a_k from a_t and
 * b_k from b_t (distance, relative direction, radial angle). */
static double compatibility(const wh_mcc_template *a, const wh_mcc_template *b, const cand *t,
                            const cand *k) {
    const wh_mcc_params *p = &a->params;
    size_t ia = (size_t)t->i * a->count + k->i, ib = (size_t)t->j * b->count + k->j;
    double d1 = fabs(a->distance[ia] - b->distance[ib]);
    double z1 = wh_mcc_sigmoid(d1, p->mu_rho[0], p->tau_rho[0]);
    if (z1 < 1e-6) return 0; /* distances disagree: the angles cannot save it */
    double d2 = fabs(wh_angle_diff(wh_angle_diff(a->angle[t->i], a->angle[k->i]),
                                   wh_angle_diff(b->angle[t->j], b->angle[k->j])));
    /* radial angle: m_t's direction against the line to m_k */
    double ra = wh_angle_diff(a->angle[t->i], a->direction[ia]);
    double rb = wh_angle_diff(b->angle[t->j], b->direction[ib]);
    double d3 = fabs(wh_angle_diff(ra, rb));
    return z1 * wh_mcc_sigmoid(d2, p->mu_rho[1], p->tau_rho[1]) *
           wh_mcc_sigmoid(d3, p->mu_rho[2], p->tau_rho[2]);
}

/* lambda (n) starts as the pairs' similarities and ends relaxed; rho is n x n scratch. */
static void relax(const wh_mcc_template *a, const wh_mcc_template *b, const cand *pairs, int n,
                  double *lambda, double *rho, double *next) {
    const wh_mcc_params *p = &a->params;
    for (int t = 0; t < n; t++) /* not symmetric: the radial angle is seen from t */
        for (int k = 0; k < n; k++)
            rho[t * n + k] = k == t ? 0 : compatibility(a, b, &pairs[t], &pairs[k]);
    for (int t = 0; t < n; t++) lambda[t] = pairs[t].s;
    if (n < 2) return;
    for (int it = 0; it < p->relax_iterations; it++) {
        for (int t = 0; t < n; t++) {
            double support = 0;
            for (int k = 0; k < n; k++) support += rho[t * n + k] * lambda[k];
            next[t] = p->relax_weight * lambda[t] + (1 - p->relax_weight) * support / (n - 1);
        }
        memcpy(lambda, next, (size_t)n * sizeof *lambda);
    }
}

/* ---- 4. the score ---------------------------------------------------------------------- */

static int pairs_to_average(const wh_mcc_params *p, int na, int nb) {
    int m = na < nb ? na : nb;
    return p->min_np + (int)lround(wh_mcc_sigmoid(m, p->mu_p, p->tau_p) * (p->max_np - p->min_np));
}

typedef struct {
    double efficiency, lambda;
    int t;
} ranked;

static int by_efficiency_desc(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (a->efficiency != b->efficiency) return a->efficiency > b->efficiency ? -1 : 1;
    return a->t - b->t;
}

static wh_status check_compatible(const wh_mcc_template *a, const wh_mcc_template *b) {
    if (!a || !b) return wh_fail(WH_ERR_ARG, "mcc match: a template is NULL");
    if (a->params.ns != b->params.ns || a->params.nd != b->params.nd ||
        a->params.radius != b->params.radius)
        return wh_fail(WH_ERR_ARG,
                       "mcc match: templates built with different cylinders (ns %d/%d, nd %d/%d, radius %g/%g)",
                       a->params.ns, b->params.ns, a->params.nd, b->params.nd, a->params.radius,
                       b->params.radius);
    return WH_OK;
}

wh_status wh_mcc_match(const wh_mcc_template *a, const wh_mcc_template *b, double *score,
                       wh_match_pair *pairs, int max_pairs, int *npairs) {
    WH_TRY(check_compatible(a, b));
    if (!score) return wh_fail(WH_ERR_ARG, "mcc match: score is NULL");
    *score = 0;
    if (npairs) *npairs = 0;
    int na = a->count, nb = b->count;
    if (na == 0 || nb == 0) return WH_OK;
    int n = na < nb ? na : nb;
    size_t nall = (size_t)na * nb;
    cand *all = malloc((nall + (size_t)n) * sizeof *all);
    double *work = malloc(((size_t)n * n + 2 * (size_t)n) * sizeof *work);
    ranked *rank = malloc((size_t)n * sizeof *rank);
    if (!all || !work || !rank) {
        free(all);
        free(work);
        free(rank);
        return wh_fail(WH_ERR_MEMORY, "mcc match: out of memory for %d x %d cylinders", na, nb);
    }
    int min_common = (int)ceil(a->params.min_matchable * a->disc_cells);
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            all[(size_t)i * nb + j] = (cand){(float)local_similarity(a, i, b, j, min_common), i, j};
    cand *chosen = all + nall;
    int nr = pick_pairs(all, na, nb, chosen);
    if (nr < 0) {
        free(all);
        free(work);
        free(rank);
        return wh_fail(WH_ERR_MEMORY, "mcc match: out of memory");
    }
    double *rho = work, *lambda = work + (size_t)n * n, *next = lambda + n;
    relax(a, b, chosen, nr, lambda, rho, next);
    for (int t = 0; t < nr; t++)
        rank[t] = (ranked){chosen[t].s > 0 ? lambda[t] / chosen[t].s : 0, lambda[t], t};
    qsort(rank, (size_t)nr, sizeof *rank, by_efficiency_desc);
    int np = pairs_to_average(&a->params, na, nb);
    if (np > nr) np = nr;
    double sum = 0;
    for (int t = 0; t < np; t++) sum += rank[t].lambda;
    *score = np > 0 ? sum / np : 0;
    if (pairs && npairs) {
        int m = np < max_pairs ? np : max_pairs;
        for (int t = 0; t < m; t++) {
            const cand *c = &chosen[rank[t].t];
            pairs[t] = (wh_match_pair){a->index[c->i], b->index[c->j], (float)rank[t].lambda};
        }
        *npairs = m;
    }
    free(all);
    free(work);
    free(rank);
    return WH_OK;
}

wh_status wh_match_templates(const wh_template *a, const wh_template *b, const wh_mcc_params *p,
                             double *score, wh_match_pair *pairs, int max_pairs, int *npairs) {
    wh_mcc_params def = wh_mcc_defaults(500);
    if (!p) p = &def;
    wh_mcc_template ma, mb;
    WH_TRY(wh_mcc_build(a, p, &ma));
    wh_status st = wh_mcc_build(b, p, &mb);
    if (st != WH_OK) {
        wh_mcc_free(&ma);
        return st;
    }
    st = wh_mcc_match(&ma, &mb, score, pairs, max_pairs, npairs);
    wh_mcc_free(&ma);
    wh_mcc_free(&mb);
    return st;
}

wh_status wh_mcc_match_many(const wh_mcc_template *const *a, int na,
                            const wh_mcc_template *const *b, int nb, const int *pair_a,
                            const int *pair_b, int64_t npairs, double *scores) {
    if (na < 0 || nb < 0 || (!a && na) || (!b && nb) || !scores)
        return wh_fail(WH_ERR_ARG, "mcc match_many: bad lists (%d and %d templates)", na, nb);
    int64_t total = pair_a ? npairs : (int64_t)na * nb;
    if (pair_a) {
        if (!pair_b || npairs < 0) return wh_fail(WH_ERR_ARG, "mcc match_many: pair lists incomplete");
        for (int64_t k = 0; k < npairs; k++)
            if (pair_a[k] < 0 || pair_a[k] >= na || pair_b[k] < 0 || pair_b[k] >= nb)
                return wh_fail(WH_ERR_INDEX, "mcc match_many: pair %lld (%d, %d) out of range %d x %d",
                               (long long)k + 1, pair_a[k] + 1, pair_b[k] + 1, na, nb);
    }
    if (na && nb) WH_TRY(check_compatible(a[0], b[0]));
    for (int i = 1; i < na; i++) WH_TRY(check_compatible(a[0], a[i]));
    for (int j = 1; j < nb; j++) WH_TRY(check_compatible(a[0], b[j]));
    int failed = 0;
    char message[256] = "";
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t k = 0; k < total; k++) {
        int i = pair_a ? pair_a[k] : (int)(k / nb), j = pair_a ? pair_b[k] : (int)(k % nb);
        if (wh_mcc_match(a[i], b[j], &scores[k], NULL, 0, NULL) != WH_OK) {
#pragma omp critical(wh_mcc_many_error)
            if (!failed) {
                failed = 1;
                strncpy(message, wh_error_message(), sizeof message - 1);
            }
        }
    }
    if (failed) return wh_fail(WH_ERR_MEMORY, "%s", message);
    return WH_OK;
}
