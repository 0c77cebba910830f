/* One-to-one pairing of two minutia sets in the same frame, as used to
 * score an extractor against ground truth or a restored print's minutiae
 * against the clean print's: every pair within the distance and angle
 * tolerances is a candidate with cost d/max_distance + dangle/max_angle,
 * and candidates are taken greedily by increasing cost, each minutia at
 * most once (the usual approximation of the optimal assignment; with
 * tolerances well below the minutia spacing the two rarely differ). */
#include <math.h>
#include <stdlib.h>

#include "fingerprint.h"

typedef struct {
    float cost;
    int i, j;
} pair_candidate;

static int by_cost(const void *a, const void *b) {
    const pair_candidate *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? -1 : 1;
    if (x->i != y->i) return x->i < y->i ? -1 : 1; /* ties: a stable, reproducible order */
    return (x->j > y->j) - (x->j < y->j);
}

/* |a - b| as an angle, modulo 2 pi (or pi when axial), in [0, pi]. */
static double angle_gap(double a, double b, int axial) {
    double period = axial ? M_PI : 2 * M_PI;
    double d = fmod(fabs(a - b), period);
    return d > period / 2 ? period - d : d;
}

wh_status wh_minutiae_pair(const wh_minutia *a, int na, const wh_minutia *b, int nb, double max_distance,
                           double max_angle, int axial, int *pairs, int *count) {
    if (!count) return wh_fail(WH_ERR_ARG, "fingerprint.pair: no output count");
    *count = 0;
    if (na < 0 || nb < 0 || (na && !a) || (nb && !b))
        return wh_fail(WH_ERR_ARG, "fingerprint.pair: bad minutia sets (%d and %d)", na, nb);
    if (!(max_distance > 0) || !(max_angle > 0) || !isfinite(max_distance))
        return wh_fail(WH_ERR_ARG, "fingerprint.pair: distance and angle must be positive, got %g and %g",
                       max_distance, max_angle);
    if (na == 0 || nb == 0) return WH_OK;
    if (!pairs) return wh_fail(WH_ERR_ARG, "fingerprint.pair: no output pairs");
    size_t cap = 64, n = 0;
    pair_candidate *c = malloc(sizeof *c * cap);
    unsigned char *used = calloc((size_t)nb, 1); /* b's taken */
    int *partner = malloc(sizeof(int) * (size_t)na); /* a's partner in b, or -1 */
    if (!c || !used || !partner) goto oom;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) {
            double dx = a[i].x - b[j].x, dy = a[i].y - b[j].y, d = sqrt(dx * dx + dy * dy);
            if (!(d <= max_distance)) continue;
            double da = angle_gap(a[i].angle, b[j].angle, axial);
            if (!(da <= max_angle)) continue;
            if (n == cap) {
                cap *= 2;
                pair_candidate *g = realloc(c, sizeof *c * cap);
                if (!g) goto oom;
                c = g;
            }
            c[n++] = (pair_candidate){(float)(d / max_distance + da / max_angle), i, j};
        }
    qsort(c, n, sizeof *c, by_cost);
    for (int i = 0; i < na; i++) partner[i] = -1;
    for (size_t k = 0; k < n; k++) {
        if (partner[c[k].i] >= 0 || used[c[k].j]) continue;
        partner[c[k].i] = c[k].j;
        used[c[k].j] = 1;
    }
    for (int i = 0; i < na; i++) /* reported in the order of a */
        if (partner[i] >= 0) {
            pairs[2 * *count] = i;
            pairs[2 * *count + 1] = partner[i];
            (*count)++;
        }
    free(c);
    free(used);
    free(partner);
    return WH_OK;
oom:
    free(c);
    free(used);
    free(partner);
    return wh_fail(WH_ERR_MEMORY, "fingerprint.pair: out of memory pairing %d and %d minutiae", na, nb);
}
