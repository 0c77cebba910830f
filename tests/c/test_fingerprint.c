/* Minutiae extraction and pairing at the C level: batch results independent
 * of the OpenMP thread count and equal to one-by-one extraction, a failing
 * batch leaves nothing allocated, partial field requests, other
 * resolutions (periods scale with dpi), pairing corner cases and argument
 * checks.  Ends with "N passed, N failed". */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "synth.h"

#include "check.h"

static int same_template(const wh_template *a, const wh_template *b) {
    if (a->count != b->count || a->height != b->height || a->width != b->width) return 0;
    return a->count == 0 || memcmp(a->minutiae, b->minutiae, sizeof(wh_minutia) * (size_t)a->count) == 0;
}

static float *prints(int n, int h, int w, double dpi, wh_fp_info *infos) {
    wh_synth_params p = {.height = h, .width = w, .dpi = dpi, .seed = 31, .finger = 0, .cls = -1};
    float *img = alloc_floats((size_t)n * h * w);
    if (wh_synth_batch(&p, n, 1, img, infos) != WH_OK) {
        printf("synth failed: %s\n", wh_error_message());
        exit(1);
    }
    return img;
}

/* The batch with one thread, with three, and print by print agree. */
static void batch_thread_independence(void) {
    enum { N = 5, H = 160, W = 144 };
    float *img = prints(N, H, W, 500, NULL);
    wh_extract_params p = wh_extract_defaults(500);
    wh_template a[N], b[N];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(wh_extract_batch(img, N, H, W, &p, a) == WH_OK, "batch, 1 thread: %s", wh_error_message());
    omp_set_num_threads(3);
    CHECK(wh_extract_batch(img, N, H, W, &p, b) == WH_OK, "batch, 3 threads: %s", wh_error_message());
    omp_set_num_threads(saved);
    for (int i = 0; i < N; i++) {
        wh_template one;
        CHECK(wh_extract_minutiae(img + (size_t)i * H * W, H, W, &p, &one, NULL) == WH_OK, "print %d", i);
        CHECK(same_template(&a[i], &b[i]), "print %d: batch depends on the thread count", i);
        CHECK(same_template(&a[i], &one), "print %d: batch differs from one by one", i);
        CHECK(a[i].count > 3, "print %d: only %d minutiae", i, a[i].count);
        wh_template_free(&a[i]);
        wh_template_free(&b[i]);
        wh_template_free(&one);
        CHECK(a[i].count == 0 && a[i].minutiae == NULL, "template_free zeroes");
    }
    free(img);
}

/* A bad image in the middle of a batch: an error naming it, every output
 * freed and zeroed. */
static void batch_failure(void) {
    enum { N = 4, S = 64 };
    float *img = prints(N, S, S, 500, NULL);
    img[(size_t)2 * S * S + 7] = NAN;
    wh_template t[N];
    memset(t, 0x55, sizeof t);
    wh_status st = wh_extract_batch(img, N, S, S, NULL, t);
    CHECK(st == WH_ERR_ARG, "NaN in a batch: status %d", st);
    CHECK(strstr(wh_error_message(), "image 3 of the batch") != NULL, "message: %s", wh_error_message());
    for (int i = 0; i < N; i++) CHECK(t[i].count == 0 && t[i].minutiae == NULL, "out[%d] not cleared", i);
    CHECK(wh_extract_batch(img, 0, S, S, NULL, NULL) == WH_OK, "an empty batch is fine");
    free(img);
}

/* Asking for some fields only; the skeleton lies on the ridges. */
static void partial_fields(void) {
    enum { S = 128 };
    float *img = prints(1, S, S, 500, NULL);
    float *skel = alloc_floats((size_t)S * S), *enh = alloc_floats((size_t)S * S);
    wh_extract_fields f = {.enhanced = enh, .skeleton = skel};
    wh_template t, plain;
    CHECK(wh_extract_minutiae(img, S, S, NULL, &t, &f) == WH_OK, "fields: %s", wh_error_message());
    CHECK(wh_extract_minutiae(img, S, S, NULL, &plain, NULL) == WH_OK, "no fields");
    CHECK(same_template(&t, &plain), "asking for fields changes the minutiae");
    long on = 0, off_ridge = 0;
    for (int i = 0; i < S * S; i++) {
        on += skel[i] == 1;
        off_ridge += skel[i] == 1 && enh[i] != 1;
    }
    CHECK(on > S * 4 && off_ridge == 0, "skeleton %ld pixels, %ld off the ridges", on, off_ridge);
    for (int k = 0; k < t.count; k++)
        CHECK(skel[(int)t.minutiae[k].y * S + (int)t.minutiae[k].x] == 1, "minutia %d is off the skeleton", k);
    wh_template_free(&t);
    wh_template_free(&plain);
    free(img);
    free(skel);
    free(enh);
}

/* At 1000 dpi (periods about 18 px) the defaults for 1000 dpi find the
 * generator's minutiae about as well as at 500 dpi. */
static void other_resolution(void) {
    enum { N = 2, S = 384 };
    wh_fp_info inf[N];
    float *img = prints(N, S, S, 1000, inf);
    wh_extract_params p = wh_extract_defaults(1000);
    CHECK(p.block == 32 && p.border == 24, "defaults scale with dpi: block %d border %d", p.block, p.border);
    int matched = 0, extracted = 0, wanted = 0;
    for (int i = 0; i < N; i++) {
        wh_template t;
        CHECK(wh_extract_minutiae(img + (size_t)i * S * S, S, S, &p, &t, NULL) == WH_OK, "1000 dpi");
        wh_minutia *g = calloc((size_t)inf[i].nminutiae + 1, sizeof *g);
        int n = 0;
        for (int k = 0; k < inf[i].nminutiae; k++) {
            double x = inf[i].minutiae[k].x - 0.5, y = inf[i].minutiae[k].y - 0.5;
            if (x < p.border || y < p.border || x >= S - p.border || y >= S - p.border) continue;
            g[n++] = (wh_minutia){(float)x, (float)y, (float)inf[i].minutiae[k].angle, 1, 1};
        }
        int *pairs = malloc(sizeof(int) * 2 * (size_t)(t.count + n + 1)), c = 0;
        CHECK(wh_minutiae_pair(t.minutiae, t.count, g, n, 24, M_PI / 6, 1, pairs, &c) == WH_OK, "pair");
        matched += c;
        extracted += t.count;
        wanted += n;
        free(pairs);
        free(g);
        wh_template_free(&t);
        wh_fp_info_free(&inf[i]);
    }
    /* measured: precision 0.86, recall 0.77 (two prints, 24 px and 30 degrees) */
    CHECK(wanted > 30, "only %d true minutiae", wanted);
    CHECK(matched > 0.7 * extracted && matched > 0.7 * wanted, "1000 dpi: %d of %d extracted, %d true", matched,
          extracted, wanted);
    free(img);
}

static void pairing(void) {
    wh_minutia a[3] = {{0, 0, 0.1f, 1, 1}, {10, 0, 3.0f, 1, 1}, {30, 30, 0, 3, 1}};
    wh_minutia b[2] = {{1, 0, 6.2f, 1, 1}, {10, 1, (float)(3.0 + M_PI), 3, 1}};
    int pairs[4], c = -1;
    CHECK(wh_minutiae_pair(a, 3, b, 2, 5, 0.3, 0, pairs, &c) == WH_OK && c == 1 && pairs[0] == 0 && pairs[1] == 0,
          "directed pairing: %d pairs", c);
    CHECK(wh_minutiae_pair(a, 3, b, 2, 5, 0.3, 1, pairs, &c) == WH_OK && c == 2 && pairs[2] == 1 && pairs[3] == 1,
          "axial pairing: %d pairs", c);
    CHECK(wh_minutiae_pair(a, 0, b, 2, 5, 0.3, 0, NULL, &c) == WH_OK && c == 0, "empty a");
    CHECK(wh_minutiae_pair(NULL, 0, NULL, 0, 5, 0.3, 0, NULL, &c) == WH_OK && c == 0, "both empty");
    CHECK(wh_minutiae_pair(a, 3, b, 2, 0, 0.3, 0, pairs, &c) == WH_ERR_ARG, "distance 0");
    CHECK(wh_minutiae_pair(a, 3, b, 2, NAN, 0.3, 0, pairs, &c) == WH_ERR_ARG, "distance NaN");
    CHECK(wh_minutiae_pair(a, -1, b, 2, 5, 0.3, 0, pairs, &c) == WH_ERR_ARG, "negative count");
    CHECK(wh_minutiae_pair(a, 3, b, 2, 5, 0.3, 0, NULL, &c) == WH_ERR_ARG, "no output");
}

static void argument_checks(void) {
    float img[40 * 40] = {0};
    wh_template t;
    CHECK(wh_extract_minutiae(img, 31, 40, NULL, &t, NULL) == WH_ERR_ARG, "31 rows");
    CHECK(wh_extract_minutiae(NULL, 40, 40, NULL, &t, NULL) == WH_ERR_ARG, "no image");
    CHECK(wh_extract_minutiae(img, 40, 40, NULL, NULL, NULL) == WH_ERR_ARG, "no output");
    wh_extract_params p = wh_extract_defaults(500);
    p.gabor_sigma = 0;
    CHECK(wh_extract_minutiae(img, 40, 40, &p, &t, NULL) == WH_ERR_ARG, "gabor_sigma 0");
    p = wh_extract_defaults(500);
    p.upsample = 3;
    CHECK(wh_extract_minutiae(img, 40, 40, &p, &t, NULL) == WH_ERR_ARG, "upsample 3");
    p = wh_extract_defaults(-3);
    CHECK(p.dpi == 500 && p.block == 16, "defaults for a bad dpi are 500 dpi's");
    CHECK(wh_extract_minutiae(img, 40, 40, &p, &t, NULL) == WH_OK && t.count == 0, "black image");
    wh_template_free(&t);
    wh_template_free(NULL);
    passed++;
}

int main(void) {
    batch_thread_independence();
    batch_failure();
    partial_fields();
    other_resolution();
    pairing();
    argument_checks();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
