/* Fingerprint identity throughput: extraction, cylinders, matching.
 *
 *   build/bench/bench_fingerprint [fingers [impressions [size]]]
 *
 * Generates fingers x impressions synthetic prints (default 50 x 4 at
 * 256 x 256, 500 dpi), then times
 *   - minutiae extraction (wh_extract_batch, OpenMP over images): ms/image,
 *   - MCC cylinder construction: ms/print,
 *   - matching (wh_mcc_match_many, OpenMP over comparisons): matches/s,
 * and prints the genuine/impostor EER of the set as a sanity check (every
 * pair of impressions of a finger; first impressions of different fingers).
 * Last, the projected time of the evaluation the reconstruction job runs
 * (issue 6): extract a 1,000-image test set three times (clean, damaged,
 * restored), 2,000 genuine comparisons, and the impostor comparisons of a
 * 100-finger subset (restored and damaged against clean: 2 x 100 x 99),
 * on the threads OpenMP gives (OMP_NUM_THREADS; the target is 2 cores,
 * under a minute).  Best of WH_BENCH_REPS (default 3). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fp_match.h"
#include "synth.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (all threads): steadier than wall time
 * on a shared machine. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The best wall time and the CPU time of that run. */
typedef struct {
    double wall, cpu;
} timing;

static void keep_best(timing *best, double w0, double c0) {
    double w = now() - w0, c = cpu_now() - c0;
    if (w < best->wall) *best = (timing){w, c};
}

static int reps(void) {
    const char *r = getenv("WH_BENCH_REPS");
    int n = r ? atoi(r) : 3;
    return n > 0 ? n : 3;
}

static void check(wh_status st, const char *what) {
    if (st != WH_OK) {
        fprintf(stderr, "bench_fingerprint: %s: %s\n", what, wh_error_message());
        exit(1);
    }
}

static void *alloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_fingerprint: out of memory\n");
        exit(1);
    }
    return p;
}

/* Best wall time of extracting count images into templates (freed between reps). */
static timing time_extract(const float *images, int count, int size, wh_template *templates) {
    wh_extract_params ep = wh_extract_defaults(500);
    timing best = {1e30, 0};
    for (int r = 0; r < reps(); r++) {
        if (r) for (int i = 0; i < count; i++) wh_template_free(&templates[i]);
        double w0 = now(), c0 = cpu_now();
        check(wh_extract_batch(images, count, size, size, &ep, templates), "extraction");
        keep_best(&best, w0, c0);
    }
    return best;
}

static timing time_cylinders(const wh_template *templates, int count, wh_mcc_template *mcc) {
    wh_mcc_params p = wh_mcc_defaults(500);
    timing best = {1e30, 0};
    for (int r = 0; r < reps(); r++) {
        for (int i = 0; r && i < count; i++) wh_mcc_free(&mcc[i]);
        double w0 = now(), c0 = cpu_now();
        int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
        for (int i = 0; i < count; i++) failed |= wh_mcc_build(&templates[i], &p, &mcc[i]) != WH_OK;
        if (failed) check(WH_ERR_ARG, "cylinders");
        keep_best(&best, w0, c0);
    }
    return best;
}

static timing time_matches(const wh_mcc_template *const *mcc, int count, const int *pa, const int *pb,
                           int64_t n, double *scores) {
    timing best = {1e30, 0};
    for (int r = 0; r < reps(); r++) {
        double w0 = now(), c0 = cpu_now();
        check(wh_mcc_match_many(mcc, count, mcc, count, pa, pb, n, scores), "matching");
        keep_best(&best, w0, c0);
    }
    return best;
}

int main(int argc, char **argv) {
    int fingers = argc > 1 ? atoi(argv[1]) : 50, imps = argc > 2 ? atoi(argv[2]) : 4;
    int size = argc > 3 ? atoi(argv[3]) : 256;
    if (fingers < 2 || imps < 2 || size < 64) {
        fprintf(stderr, "usage: bench_fingerprint [fingers >= 2 [impressions >= 2 [size >= 64]]]\n");
        return 2;
    }
    int count = fingers * imps;
    float *images = alloc((size_t)count * size * size * sizeof(float));
    wh_synth_params sp = {.height = size, .width = size, .dpi = 500, .seed = 2024, .cls = -1};
    check(wh_synth_batch(&sp, count, imps, images, NULL), "synthesis");
    wh_template *templates = alloc((size_t)count * sizeof *templates);
    wh_mcc_template *mcc = alloc((size_t)count * sizeof *mcc);
    const wh_mcc_template **ptr = alloc((size_t)count * sizeof *ptr);
    for (int i = 0; i < count; i++) ptr[i] = &mcc[i];

    timing t_extract = time_extract(images, count, size, templates);
    timing t_cyl = time_cylinders(templates, count, mcc);
    long minutiae = 0, cylinders = 0;
    for (int i = 0; i < count; i++) {
        minutiae += templates[i].count;
        cylinders += mcc[i].count;
    }

    /* genuine: every pair of impressions of a finger; impostor: first
     * impressions of different fingers */
    int64_t ng = (int64_t)fingers * imps * (imps - 1) / 2, ni = (int64_t)fingers * (fingers - 1) / 2;
    int *pa = alloc((size_t)(ng + ni) * sizeof(int)), *pb = alloc((size_t)(ng + ni) * sizeof(int));
    int64_t k = 0;
    for (int f = 0; f < fingers; f++)
        for (int a = 0; a < imps; a++)
            for (int b = a + 1; b < imps; b++, k++) pa[k] = f * imps + a, pb[k] = f * imps + b;
    for (int f = 0; f < fingers; f++)
        for (int g = f + 1; g < fingers; g++, k++) pa[k] = f * imps, pb[k] = g * imps;
    double *scores = alloc((size_t)(ng + ni) * sizeof(double));
    timing t_match = time_matches(ptr, count, pa, pb, ng + ni, scores);
    double eer = 0;
    check(wh_eval_eer(scores, ng, scores + ng, ni, &eer, NULL), "eer");

    int threads = omp_get_max_threads();
    double ms_extract = t_extract.wall / count * 1e3, ms_cyl = t_cyl.wall / count * 1e3;
    double per_s = (double)(ng + ni) / t_match.wall;
    printf("prints: %d fingers x %d impressions, %dx%d at 500 dpi, %d threads\n", fingers, imps, size,
           size, threads);
    printf("  minutiae per print %.1f, valid cylinders per print %.1f\n", (double)minutiae / count,
           (double)cylinders / count);
    printf("  (wall time on %d threads; CPU time summed over threads in brackets)\n", threads);
    printf("  extraction      %8.2f ms/image   (%.2f ms CPU)\n", ms_extract, t_extract.cpu / count * 1e3);
    printf("  cylinders       %8.2f ms/print   (%.2f ms CPU)\n", ms_cyl, t_cyl.cpu / count * 1e3);
    printf("  matching        %8.0f matches/s (%.0f per CPU second; %lld comparisons)\n", per_s,
           (double)(ng + ni) / t_match.cpu, (long long)(ng + ni));
    printf("  genuine/impostor EER %.4f (%lld genuine, %lld impostor)\n", eer, (long long)ng,
           (long long)ni);
    /* the evaluation: 3,000 extractions and cylinder sets, 2,000 genuine
     * and 2 x 100 x 99 impostor comparisons; from CPU time spread over 2
     * cores, and from this run's wall time */
    double matches = 2000.0 + 2 * 100 * 99;
    double cpu = 3000 * (t_extract.cpu + t_cyl.cpu) / count + matches * t_match.cpu / (double)(ng + ni);
    double wall = 3000 * (ms_extract + ms_cyl) / 1e3 + matches / per_s;
    printf("projected evaluation of a 1,000-image test set (3,000 extractions, 2,000 genuine and\n"
           "  19,800 impostor comparisons of a 100-finger subset): %.1f s on 2 cores (CPU time / 2),\n"
           "  %.1f s at this run's wall speed on %d threads\n", cpu / 2, wall, threads);

    for (int i = 0; i < count; i++) {
        wh_template_free(&templates[i]);
        wh_mcc_free(&mcc[i]);
    }
    free(images);
    free(templates);
    free(mcc);
    free(ptr);
    free(pa);
    free(pb);
    free(scores);
    return 0;
}
