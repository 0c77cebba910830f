/* core/dataset.h from C: permutations (valid, seeded, unbiased enough),
 * the hash (every byte matters), and the batch loader's per-sample transform
 * hook, which the Lua API does not expose: the background thread must give
 * the synchronous batches, seeds must not depend on batch size or thread,
 * and a failing transform must surface with its message.
 * Prints failures and ends with "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

#include "check.h"

static void test_permutation(void) {
    enum { N = 10 };
    int64_t a[N], b[N], seen[N];
    wh_permutation(N, 42, a);
    wh_permutation(N, 42, b);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) seen[a[i]]++;
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= seen[i] == 1;
    CHECK(ok, "permutation of 10 is not a permutation");
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different permutations");
    wh_permutation(N, 43, b);
    CHECK(memcmp(a, b, sizeof a) != 0, "seeds 42 and 43 give the same permutation");
    /* Position of element 0 over many seeds: uniform within 5 sigma. */
    enum { T = 20000 };
    int count[N] = {0};
    for (int s = 0; s < T; s++) {
        wh_permutation(N, (uint64_t)s * 7919u, a);
        for (int i = 0; i < N; i++)
            if (a[i] == 0) count[i]++;
    }
    double expect = (double)T / N, sigma = sqrt(T * 0.1 * 0.9);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= fabs(count[i] - expect) < 5 * sigma;
    CHECK(ok, "element 0 is not uniformly placed");
    wh_permutation(0, 1, a); /* nothing to do, must not crash */
    CHECK(wh_seed_mix(1, 2) != wh_seed_mix(2, 1), "seed_mix is symmetric");
}

static void test_hash(void) {
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (unsigned char)(i * 31 + 7);
    uint64_t h = wh_hash64(buf, sizeof buf, 0);
    int ok = 1;
    for (int i = 0; i < 1000; i += 37) {
        buf[i] ^= 1;
        ok &= wh_hash64(buf, sizeof buf, 0) != h;
        buf[i] ^= 1;
    }
    CHECK(ok, "a one-bit change left the hash unchanged");
    CHECK(wh_hash64(buf, 999, 0) != h, "length not in the hash");
    CHECK(wh_hash64(buf, sizeof buf, 1) != h, "seed not in the hash");
    CHECK(wh_hash64(buf, sizeof buf, 0) == h, "hash not deterministic");
}

/* Adds a seed-derived value to x and writes the seed's low bits into y. */
static wh_status add_seed(void *ctx, float *x, float *y, int64_t h, int64_t w, uint64_t seed) {
    int *calls = ctx;
    __atomic_fetch_add(calls, 1, __ATOMIC_RELAXED);
    for (int64_t i = 0; i < h * w; i++) x[i] += (float)(seed % 1000) / 1000.0f;
    if (y) y[0] = (float)(seed & 0xFFFF);
    return WH_OK;
}

static wh_status fail_on_item(void *ctx, float *x, float *y, int64_t h, int64_t w, uint64_t seed) {
    (void)ctx, (void)y, (void)h, (void)w, (void)seed;
    if (x[0] > 0.5f) return wh_fail(WH_ERR_ARG, "transform refused a bright sample");
    return WH_OK;
}

static int collect(wh_loader *l, const int64_t *order, int64_t n, uint64_t epoch, wh_tensor **xs,
                   wh_tensor **ys, int max) {
    if (wh_loader_start(l, order, n, epoch) != WH_OK) return -1;
    int k = 0;
    for (;;) {
        wh_tensor *x, *y;
        if (wh_loader_next(l, &x, &y) != WH_OK) return -1;
        if (!x) break;
        if (k < max) xs[k] = x, ys[k] = y, k++;
        else wh_tensor_release(x), wh_tensor_release(y);
    }
    return k;
}

static float *data_of(wh_tensor *t) { return wh_tensor_data(t); }

static void test_loader(void) {
    enum { N = 23, H = 5, W = 4 };
    int64_t shape[3] = {N, H, W};
    wh_tensor *pixels;
    wh_tensor_empty(WH_UINT8, 3, shape, NULL, &pixels);
    uint8_t *p = wh_tensor_data(pixels);
    for (int i = 0; i < N * H * W; i++) p[i] = (uint8_t)(i / (H * W) * 10);
    int64_t input[N], target[N], order[N];
    for (int i = 0; i < N; i++) input[i] = i, target[i] = N - 1 - i;
    wh_permutation(N, 5, order);

    int calls_bg = 0, calls_sync = 0;
    wh_loader_config c = {.pixels = pixels, .input = input, .target = target, .items = N,
                          .batch = 4, .background = true, .prefetch = 2, .transform = add_seed,
                          .transform_ctx = &calls_bg, .seed = 99};
    wh_loader *bg, *sync, *big;
    CHECK(wh_loader_new(&c, &bg) == WH_OK, "loader_new: %s", wh_error_message());
    c.background = false, c.transform_ctx = &calls_sync;
    CHECK(wh_loader_new(&c, &sync) == WH_OK, "loader_new: %s", wh_error_message());
    c.batch = 7;
    CHECK(wh_loader_new(&c, &big) == WH_OK, "loader_new: %s", wh_error_message());
    wh_tensor *xb[8], *yb[8], *xs[8], *ys[8], *xg[8], *yg[8];
    for (uint64_t epoch = 1; epoch <= 3; epoch++) {
        int nb = collect(bg, order, N, epoch, xb, yb, 8), ns = collect(sync, order, N, epoch, xs, ys, 8);
        int ng = collect(big, order, N, epoch, xg, yg, 8);
        CHECK(nb == 6 && ns == 6 && ng == 4, "batch counts %d %d %d", nb, ns, ng);
        int same = 1, shifted = 1;
        for (int b = 0; b < nb && b < ns; b++) {
            same &= wh_tensor_same_shape(xb[b], xs[b]) &&
                    memcmp(data_of(xb[b]), data_of(xs[b]), sizeof(float) * (size_t)wh_tensor_numel(xb[b])) == 0 &&
                    memcmp(data_of(yb[b]), data_of(ys[b]), sizeof(float) * (size_t)wh_tensor_numel(yb[b])) == 0;
        }
        CHECK(same, "epoch %d: background batches differ from synchronous ones", (int)epoch);
        /* Sample k of the epoch is in batch k/4 (size 4) and k/7 (size 7):
         * the transform's seed depends on the item, not on the batch. */
        for (int k = 0; k < N; k++) {
            float *a = data_of(xs[k / 4]) + (k % 4) * H * W, *b = data_of(xg[k / 7]) + (k % 7) * H * W;
            shifted &= memcmp(a, b, sizeof(float) * H * W) == 0;
            float base = (float)(order[k] * 10) / 255.0f;
            shifted &= fabsf(a[0] - base) < 1.001f && a[0] >= base - 1e-6f;
            float *y = data_of(ys[k / 4]) + (k % 4) * H * W;
            shifted &= y[0] == (float)(wh_seed_mix(wh_seed_mix(99, epoch), (uint64_t)order[k]) & 0xFFFF);
            shifted &= fabsf(y[1] - (float)((N - 1 - order[k]) * 10) / 255.0f) < 1e-6f;
        }
        CHECK(shifted, "epoch %d: per-item seeds or targets wrong", (int)epoch);
        for (int b = 0; b < nb; b++) wh_tensor_release(xb[b]), wh_tensor_release(yb[b]);
        for (int b = 0; b < ns; b++) wh_tensor_release(xs[b]), wh_tensor_release(ys[b]);
        for (int b = 0; b < ng; b++) wh_tensor_release(xg[b]), wh_tensor_release(yg[b]);
    }
    CHECK(calls_bg == 3 * N && calls_sync == 3 * N * 2, "transform calls %d %d", calls_bg, calls_sync);
    wh_loader_free(bg);
    wh_loader_free(sync);
    wh_loader_free(big);

    /* A failing transform: the batch that holds the bright item fails with
     * the transform's message, in both modes; the others still come. */
    for (int mode = 0; mode < 2; mode++) {
        wh_loader_config f = {.pixels = pixels, .input = input, .items = N, .batch = 5,
                              .background = mode == 1, .transform = fail_on_item};
        for (int i = 0; i < N; i++) p[i * H * W] = i == 13 ? 200 : 0;
        wh_loader *l;
        wh_loader_new(&f, &l);
        wh_loader_start(l, NULL, 0, 1);
        int ok = 0, bad = 0;
        for (int b = 0; b < 5; b++) {
            wh_tensor *x, *y;
            wh_status st = wh_loader_next(l, &x, &y);
            if (st == WH_OK && x) ok++, wh_tensor_release(x);
            else if (st != WH_OK && strstr(wh_error_message(), "bright")) bad++;
        }
        wh_tensor *x, *y;
        CHECK(ok == 4 && bad == 1 && wh_loader_next(l, &x, &y) == WH_OK && !x,
              "mode %d: %d good and %d failed batches", mode, ok, bad);
        wh_loader_free(l);
    }

    /* Restarting mid-epoch drops the batches prepared for the old one. */
    wh_loader_config r = {.pixels = pixels, .input = input, .items = N, .batch = 2,
                          .background = true, .prefetch = 4};
    wh_loader *l;
    wh_loader_new(&r, &l);
    int64_t rev[N];
    for (int i = 0; i < N; i++) rev[i] = N - 1 - i;
    int ok = 1;
    for (int round = 0; round < 50; round++) {
        wh_loader_start(l, order, N, 1);
        wh_tensor *x, *y;
        wh_loader_next(l, &x, &y);
        wh_tensor_release(x);
        wh_loader_start(l, rev, N, 2);
        wh_loader_next(l, &x, &y);
        ok &= x && x->shape[0] == 2 && data_of(x)[0] == (float)p[rev[0] * H * W] / 255.0f &&
              data_of(x)[H * W] == (float)p[rev[1] * H * W] / 255.0f;
        wh_tensor_release(x);
    }
    CHECK(ok, "a restarted epoch returned a batch of the previous one");
    int64_t bad_order[2] = {0, N};
    CHECK(wh_loader_start(l, bad_order, 2, 3) == WH_ERR_INDEX, "order out of range accepted");
    wh_loader_free(l);
    wh_loader_free(NULL);

    wh_loader_config e = {.pixels = pixels, .input = input, .items = N, .batch = 0};
    CHECK(wh_loader_new(&e, &l) == WH_ERR_ARG, "batch 0 accepted");
    input[3] = N;
    e.batch = 2;
    CHECK(wh_loader_new(&e, &l) == WH_ERR_INDEX, "row out of range accepted");
    wh_tensor_release(pixels);
}

int main(void) {
    test_permutation();
    test_hash();
    test_loader();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
