/* Synthetic fingerprint and damage throughput.
 *
 *   build/bench/bench_synth
 *
 * Prints prints per second at 224x224 (one impression per finger, and four
 * impressions per finger sharing a master), the time to generate the main
 * job's default dataset (600 prints at 128x128), and damaged images per
 * second at 224x224 over all kinds and levels.  Best of WH_BENCH_REPS
 * (default 3) after a warm-up; OpenMP threads as the environment says. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "synth.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int reps(void) {
    const char *r = getenv("WH_BENCH_REPS");
    int n = r ? atoi(r) : 3;
    return n > 0 ? n : 3;
}

/* Best wall time of generating count prints of size x size. */
static double time_batch(int size, int count, int impressions, uint64_t seed) {
    wh_synth_params p = {.height = size, .width = size, .dpi = 500, .seed = seed, .cls = -1};
    float *images = malloc((size_t)count * size * size * sizeof(float));
    if (!images) {
        fprintf(stderr, "bench_synth: out of memory\n");
        exit(1);
    }
    double best = 1e30;
    for (int r = -1; r < reps(); r++) { /* r = -1 warms up */
        p.finger = (int64_t)(r + 1) * count;
        double t0 = now();
        if (wh_synth_batch(&p, count, impressions, images, NULL) != WH_OK) {
            fprintf(stderr, "bench_synth: %s\n", wh_error_message());
            exit(1);
        }
        double t = now() - t0;
        if (r >= 0 && t < best) best = t;
    }
    free(images);
    return best;
}

static double time_damage(int size, int count) {
    size_t plane = (size_t)size * size;
    float *in = malloc(count * plane * sizeof(float)), *out = malloc(count * plane * sizeof(float));
    float *mask = malloc(count * plane * sizeof(float));
    int *kinds = malloc(count * sizeof(int)), *levels = malloc(count * sizeof(int));
    uint64_t *seeds = malloc(count * sizeof(uint64_t));
    if (!in || !out || !mask || !kinds || !levels || !seeds) {
        fprintf(stderr, "bench_synth: out of memory\n");
        exit(1);
    }
    wh_synth_params p = {.height = size, .width = size, .dpi = 500, .seed = 1, .cls = -1};
    if (wh_synth_batch(&p, count, 1, in, NULL) != WH_OK) {
        fprintf(stderr, "bench_synth: %s\n", wh_error_message());
        exit(1);
    }
    for (int i = 0; i < count; i++) {
        kinds[i] = i % WH_DMG_NKINDS;
        levels[i] = (i / WH_DMG_NKINDS) % WH_DMG_NLEVELS;
        seeds[i] = (uint64_t)i;
    }
    double best = 1e30;
    for (int r = -1; r < reps(); r++) {
        double t0 = now();
        if (wh_synth_damage_batch(in, count, size, size, kinds, levels, seeds, out, mask) != WH_OK) {
            fprintf(stderr, "bench_synth: %s\n", wh_error_message());
            exit(1);
        }
        double t = now() - t0;
        if (r >= 0 && t < best) best = t;
    }
    free(in);
    free(out);
    free(mask);
    free(kinds);
    free(levels);
    free(seeds);
    return best;
}

int main(void) {
    int threads = omp_get_max_threads();
    printf("bench_synth: %d OpenMP threads, best of %d\n", threads, reps());
    int n = 48;
    double t = time_batch(224, n, 1, 1);
    printf("synth 224x224, 1 impression per finger:  %7.1f prints/s\n", n / t);
    t = time_batch(224, n, 4, 2);
    printf("synth 224x224, 4 impressions per finger: %7.1f prints/s\n", n / t);
    t = time_batch(128, 600, 1, 3);
    printf("synth 600 prints at 128x128 (default dataset): %.2f s (%.1f prints/s)\n", t, 600 / t);
    n = 72;
    t = time_damage(224, n);
    printf("damage 224x224, all kinds and levels:    %7.1f images/s\n", n / t);
    return 0;
}
