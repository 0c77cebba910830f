/* Score statistics of a biometric evaluation (declared in fp_match.h):
 * the threshold at a false-match rate, the genuine match rate at a
 * threshold, and the equal error rate.  Definitions as in Maltoni et al.,
 * Handbook of Fingerprint Recognition (2nd ed.), section 1.5: a comparison
 * is accepted when its score exceeds the threshold; FMR counts accepted
 * impostor comparisons, FNMR rejected genuine ones. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_match.h"

static wh_status check_scores(const char *op, const char *what, const double *s, int64_t n) {
    if (n < 1 || !s) return wh_fail(WH_ERR_ARG, "%s: needs at least one %s score, got %lld", op, what, (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(s[i]))
            return wh_fail(WH_ERR_ARG, "%s: %s score %lld is not finite", op, what, (long long)i + 1);
    return WH_OK;
}

static int ascending(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

static double *sorted_copy(const double *s, int64_t n) {
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) return NULL;
    memcpy(c, s, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, ascending);
    return c;
}

wh_status wh_eval_threshold_at_fmr(const double *impostor, int64_t n, double fmr, double *threshold) {
    const char *op = "fingerprint threshold_at_fmr";
    WH_TRY(check_scores(op, "impostor", impostor, n));
    if (!(fmr > 0 && fmr < 1)) return wh_fail(WH_ERR_ARG, "%s: fmr must be in (0, 1), got %g", op, fmr);
    if (!threshold) return wh_fail(WH_ERR_ARG, "%s: threshold is NULL", op);
    double *s = sorted_copy(impostor, n);
    if (!s) return wh_fail(WH_ERR_MEMORY, "%s: out of memory for %lld scores", op, (long long)n);
    /* at most k impostors may exceed t; the tiny margin keeps 0.29 * 100
     * from flooring to 28 */
    int64_t k = (int64_t)floor(fmr * (double)n * (1 + 1e-12));
    if (k > n - 1) k = n - 1;
    /* t = the (k+1)-th highest: scores above it are at most k, and any lower
     * t would accept that one too (ties: all equal scores are rejected) */
    *threshold = s[n - 1 - k];
    free(s);
    return WH_OK;
}

wh_status wh_eval_gmr(const double *genuine, int64_t n, double threshold, double *gmr) {
    WH_TRY(check_scores("fingerprint gmr", "genuine", genuine, n));
    if (!gmr) return wh_fail(WH_ERR_ARG, "fingerprint gmr: gmr is NULL");
    int64_t above = 0;
    for (int64_t i = 0; i < n; i++) above += genuine[i] > threshold;
    *gmr = (double)above / (double)n;
    return WH_OK;
}

wh_status wh_eval_eer(const double *genuine, int64_t ng, const double *impostor, int64_t ni,
                      double *eer, double *threshold) {
    const char *op = "fingerprint eer";
    WH_TRY(check_scores(op, "genuine", genuine, ng));
    WH_TRY(check_scores(op, "impostor", impostor, ni));
    if (!eer) return wh_fail(WH_ERR_ARG, "%s: eer is NULL", op);
    double *g = sorted_copy(genuine, ng), *im = sorted_copy(impostor, ni);
    if (!g || !im) {
        free(g);
        free(im);
        return wh_fail(WH_ERR_MEMORY, "%s: out of memory", op);
    }
    /* Walk the distinct scores upwards as thresholds, merging the two sorted
     * lists.  Before the first: FMR 1, FNMR 0 (everything accepted). */
    int64_t ig = 0, ii = 0;
    double prev_t = fmin(g[0], im[0]) - 1, prev_fmr = 1, prev_fnmr = 0;
    double result = 0, at = prev_t;
    int found = 0;
    while (ig < ng || ii < ni) {
        double t = ig < ng && (ii >= ni || g[ig] <= im[ii]) ? g[ig] : im[ii];
        while (ig < ng && g[ig] <= t) ig++;
        while (ii < ni && im[ii] <= t) ii++;
        double fmr = (double)(ni - ii) / (double)ni, fnmr = (double)ig / (double)ng;
        if (fmr - fnmr <= 0) {
            /* the sign changed between prev_t and t: interpolate linearly */
            double d0 = prev_fmr - prev_fnmr, d1 = fmr - fnmr;
            double a = d0 - d1 > 0 ? d0 / (d0 - d1) : 0;
            result = prev_fmr + a * (fmr - prev_fmr);
            at = prev_t + a * (t - prev_t);
            found = 1;
            break;
        }
        prev_t = t;
        prev_fmr = fmr;
        prev_fnmr = fnmr;
    }
    if (!found) { /* cannot happen: at the top score FMR is 0 */
        result = 0;
        at = prev_t;
    }
    *eer = result;
    if (threshold) *threshold = at;
    free(g);
    free(im);
    return WH_OK;
}
