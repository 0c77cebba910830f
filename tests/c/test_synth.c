/* The synthetic generator and damage at the C level: results independent of
 * the OpenMP thread count (what Lua cannot vary), in-place damage equal to
 * out-of-place, batch damage equal to single, minutiae of a drawn ridge map,
 * the parameter checks and the local generator.  Ends with "N passed, N failed". */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

#include "check.h"

/* A batch made with one thread and with four is the same bytes, and so are
 * its minutiae. */
static void thread_count_independence(void) {
    enum { N = 6, S = 80 };
    wh_synth_params p = {.height = S, .width = S, .dpi = 400, .seed = 12, .finger = 3, .cls = -1};
    float *a = alloc_floats((size_t)N * S * S), *b = alloc_floats((size_t)N * S * S);
    wh_fp_info ia[N], ib[N];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(wh_synth_batch(&p, N, 2, a, ia) == WH_OK, "batch, 1 thread: %s", wh_error_message());
    omp_set_num_threads(4);
    CHECK(wh_synth_batch(&p, N, 2, b, ib) == WH_OK, "batch, 4 threads: %s", wh_error_message());
    omp_set_num_threads(saved);
    CHECK(memcmp(a, b, sizeof(float) * N * S * S) == 0, "batch images depend on the thread count");
    for (int i = 0; i < N; i++) {
        CHECK(ia[i].nminutiae == ib[i].nminutiae && ia[i].cls == ib[i].cls, "print %d info differs", i);
        int same = ia[i].nminutiae == ib[i].nminutiae;
        for (int k = 0; same && k < ia[i].nminutiae; k++) {
            const wh_fp_minutia *x = &ia[i].minutiae[k], *y = &ib[i].minutiae[k];
            same = x->x == y->x && x->y == y->y && x->angle == y->angle && x->kind == y->kind;
        }
        CHECK(same, "print %d minutiae differ", i);
        wh_fp_info_free(&ia[i]);
        wh_fp_info_free(&ib[i]);
    }
    /* and a single large print, whose rows are shared among threads */
    wh_synth_params q = {.height = 200, .width = 160, .dpi = 500, .seed = 4, .cls = WH_FP_WHORL};
    float *c = alloc_floats(200 * 160), *d = alloc_floats(200 * 160);
    omp_set_num_threads(1);
    CHECK(wh_synth_fingerprint(&q, c, NULL, NULL) == WH_OK, "fingerprint: %s", wh_error_message());
    omp_set_num_threads(3);
    CHECK(wh_synth_fingerprint(&q, d, NULL, NULL) == WH_OK, "fingerprint: %s", wh_error_message());
    omp_set_num_threads(saved);
    CHECK(memcmp(c, d, sizeof(float) * 200 * 160) == 0, "a print depends on the thread count");
    free(a);
    free(b);
    free(c);
    free(d);
}

/* Damage in place equals damage into another buffer; the batch equals the
 * singles with the same seeds, whatever the thread count. */
static void damage_consistency(void) {
    enum { S = 64, N = WH_DMG_NKINDS };
    wh_synth_params p = {.height = S, .width = S, .dpi = 400, .seed = 5, .cls = -1};
    float *src = alloc_floats((size_t)N * S * S);
    CHECK(wh_synth_batch(&p, N, 1, src, NULL) == WH_OK, "batch: %s", wh_error_message());
    float *out = alloc_floats((size_t)N * S * S), *mask = alloc_floats((size_t)N * S * S);
    float *one = alloc_floats(S * S), *m1 = alloc_floats(S * S), *inplace = alloc_floats(S * S);
    int kinds[N], levels[N];
    uint64_t seeds[N];
    for (int i = 0; i < N; i++) {
        kinds[i] = i;
        levels[i] = i % WH_DMG_NLEVELS;
        seeds[i] = 100 + i;
    }
    omp_set_num_threads(2);
    CHECK(wh_synth_damage_batch(src, N, S, S, kinds, levels, seeds, out, mask) == WH_OK, "damage batch: %s",
          wh_error_message());
    for (int i = 0; i < N; i++) {
        const float *img = src + (size_t)i * S * S;
        CHECK(wh_synth_damage(img, S, S, i, levels[i], seeds[i], one, m1) == WH_OK, "damage: %s",
              wh_error_message());
        CHECK(memcmp(one, out + (size_t)i * S * S, sizeof(float) * S * S) == 0 &&
                  memcmp(m1, mask + (size_t)i * S * S, sizeof(float) * S * S) == 0,
              "%s: batch differs from single", wh_damage_name(i));
        memcpy(inplace, img, sizeof(float) * S * S);
        CHECK(wh_synth_damage(inplace, S, S, i, levels[i], seeds[i], inplace, m1) == WH_OK, "in place: %s",
              wh_error_message());
        CHECK(memcmp(one, inplace, sizeof(float) * S * S) == 0, "%s: in place differs", wh_damage_name(i));
    }
    free(src);
    free(out);
    free(mask);
    free(one);
    free(m1);
    free(inplace);
}

static void parameter_checks(void) {
    wh_synth_params ok = {.height = 64, .width = 64, .dpi = 500, .cls = -1};
    CHECK(wh_synth_check_params(&ok) == WH_OK, "good parameters refused: %s", wh_error_message());
    wh_synth_params p = ok;
    p.height = 10;
    CHECK(wh_synth_check_params(&p) == WH_ERR_ARG && strstr(wh_error_message(), "size"), "tiny size");
    p = ok;
    p.dpi = NAN;
    CHECK(wh_synth_check_params(&p) == WH_ERR_ARG && strstr(wh_error_message(), "dpi"), "NaN dpi");
    p = ok;
    p.dpi = 2000;
    CHECK(wh_synth_check_params(&p) == WH_ERR_ARG && strstr(wh_error_message(), "dpi"), "huge dpi");
    p = ok;
    p.period = 30;
    CHECK(wh_synth_check_params(&p) == WH_ERR_ARG && strstr(wh_error_message(), "period"), "huge period");
    p = ok;
    p.cls = WH_FP_NCLASSES;
    CHECK(wh_synth_check_params(&p) == WH_ERR_ARG, "bad class");
    p = ok;
    p.impression = -1;
    CHECK(wh_synth_check_params(&p) == WH_ERR_ARG, "negative impression");
    float img[64 * 64] = {0}, out[64 * 64], mask[64 * 64];
    CHECK(wh_synth_damage(img, 64, 64, WH_DMG_NKINDS, 0, 1, out, mask) == WH_ERR_ARG, "bad kind");
    CHECK(wh_synth_damage(img, 64, 64, 0, 3, 1, out, mask) == WH_ERR_ARG, "bad level");
    CHECK(wh_synth_damage(img, 4, 64, 0, 0, 1, out, mask) == WH_ERR_SHAPE, "tiny image");
    for (int k = 0; k < WH_DMG_NKINDS; k++)
        CHECK(wh_damage_from_name(wh_damage_name(k)) == k, "damage name %d", k);
    for (int c = 0; c < WH_FP_NCLASSES; c++) CHECK(wh_fp_class_from_name(wh_fp_class_name(c)) == c, "class %d", c);
    CHECK(wh_damage_from_name("nope") == -1 && wh_fp_class_from_name(NULL) == -1, "unknown names");
}

/* Minutiae of a drawn ridge map: a horizontal ridge from x = 10 to 50 on
 * row 30 with a branch from its middle down to (45, 45), all three pixels
 * thick: three endings and one bifurcation. */
static void crossing_numbers(void) {
    enum { S = 60 };
    synth_master m = {.h = S, .w = S, .period = 4};
    m.sil = (synth_silhouette){.cx = 30, .top = -500, .half_width = 1000, .tip_height = 100,
                               .body_height = 1000, .visible = 1000};
    m.ridges = alloc_floats(S * S);
    m.mask = alloc_floats(S * S);
    m.orientation = alloc_floats(S * S);
    for (int i = 0; i < S * S; i++) {
        m.ridges[i] = -1;
        m.mask[i] = 1;
        m.orientation[i] = 0;
    }
    for (int x = 10; x <= 50; x++)
        for (int d = -1; d <= 1; d++) m.ridges[(30 + d) * S + x] = 1;
    for (int t = 0; t <= 15; t++)
        for (int d = -1; d <= 1; d++) m.ridges[(30 + t) * S + 30 + t + d] = 1;
    CHECK(synth_find_minutiae(&m) == WH_OK, "find_minutiae: %s", wh_error_message());
    int endings = 0, bifurcations = 0, near_ends = 0, near_fork = 0;
    for (int k = 0; k < m.nminutiae; k++) {
        const wh_fp_minutia *mm = &m.minutiae[k];
        if (mm->kind == 1) {
            endings++;
            near_ends += hypot(mm->x - 10.5, mm->y - 30.5) < 3 || hypot(mm->x - 50.5, mm->y - 30.5) < 3 ||
                         hypot(mm->x - 45.5, mm->y - 45.5) < 3;
        } else {
            bifurcations++;
            near_fork += hypot(mm->x - 31, mm->y - 31) < 4;
        }
    }
    CHECK(endings == 3 && bifurcations == 1, "%d endings and %d bifurcations, expected 3 and 1", endings,
          bifurcations);
    CHECK(near_ends == 3 && near_fork == 1, "minutiae away from the drawn ends and fork");
    /* the ending at the right points right, away from its ridge */
    for (int k = 0; k < m.nminutiae; k++)
        if (m.minutiae[k].kind == 1 && m.minutiae[k].x > 48)
            CHECK(fabs(m.minutiae[k].angle) < 0.3, "right ending angle %g", m.minutiae[k].angle);
    synth_master_free(&m);
}

/* The local generator: reproducible, and uniform enough. */
static void generator(void) {
    wh_synth_rng a, b;
    wh_synth_rng_seed(&a, 42);
    wh_synth_rng_seed(&b, 42);
    int same = 1;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        double u = wh_synth_rng_uniform(&a);
        same &= u == wh_synth_rng_uniform(&b);
        sum += u;
        sum2 += u * u;
    }
    CHECK(same, "two generators with one seed disagree");
    double mean = sum / 1e5, var = sum2 / 1e5 - mean * mean;
    CHECK(fabs(mean - 0.5) < 0.005 && fabs(var - 1.0 / 12) < 0.002, "uniform mean %g var %g", mean, var);
    CHECK(wh_synth_mix(1, 2) != wh_synth_mix(2, 1) && wh_synth_mix(1, 2) == wh_synth_mix(1, 2), "mix");
}

int main(void) {
    generator();
    parameter_checks();
    crossing_numbers();
    thread_count_independence();
    damage_consistency();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
