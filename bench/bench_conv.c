/* Conv kernel benchmark on the seed autoencoder's layers (batch 16, 3x3,
 * stride 1, pad 1), f32.
 *
 *   build/bench/bench_conv [torch.txt]
 *
 * Prints the machine's sgemm GFLOPS, then per layer forward (with bias and
 * the layer's activation), backward_input and backward_weight (+ dbias): best
 * time of WH_BENCH_REPS (default 5) after a warm-up, GFLOPS
 * (2*N*Cout*Cin*KH*KW*Hout*Wout per op) and the fraction of sgemm.  The
 * repetitions are interleaved over the layers and ops.  With a
 * file of lines from bench/peer_torch_conv.py
 *   torch layer=L1 fwd_ms=... bwd_in_ms=... bwd_w_ms=...
 * it also prints torch's times and the speedup torch_ms / whorl_ms (> 1:
 * whorl is faster):
 *   /usr/bin/python3 bench/peer_torch_conv.py > t.txt && build/bench/bench_conv t.txt
 * WH_CONV_ALGO=auto|direct|gemm|implicit forces one algorithm (see conv2d.h). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/conv2d.h"
#include "kernels/conv2d_internal.h"
#include "status.h"

enum { BATCH = 16, NLAYER = 6 };

static const struct {
    const char *name;
    int c_in, c_out, size;
    wh_activation act;
} layers[NLAYER] = {
    {"L1", 1, 32, 224, WH_ACT_RELU},   {"L2", 32, 64, 112, WH_ACT_RELU},
    {"L3", 64, 128, 56, WH_ACT_RELU},  {"L4", 128, 128, 56, WH_ACT_RELU},
    {"L5", 128, 64, 112, WH_ACT_RELU}, {"L6", 64, 1, 224, WH_ACT_SIGMOID},
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *alloc_rand(size_t n, float scale, unsigned seed) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = scale * ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    return p;
}

/* One 1536^3 sgemm on all threads; returns GFLOPS. */
static double sgemm_once(const float *a, const float *b, float *c) {
    const int n = 1536;
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    return 2.0 * n * n * (double)n / (now() - t0) / 1e9;
}

typedef struct {
    int have;
    double fwd, bwd_in, bwd_w;
} peer;

static void read_peer(const char *path, peer *p) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_conv: cannot read %s; no torch comparison\n", path);
        return;
    }
    char line[512], name[32];
    double a, b, c;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "torch layer=%31s fwd_ms=%lf bwd_in_ms=%lf bwd_w_ms=%lf", name, &a, &b,
                   &c) != 4)
            continue;
        for (int i = 0; i < NLAYER; i++)
            if (strcmp(name, layers[i].name) == 0) p[i] = (peer){1, a, b, c};
    }
    fclose(f);
}

int main(int argc, char **argv) {
    const char *e = getenv("WH_BENCH_REPS");
    const int reps = e ? atoi(e) : 5;
    peer tp[NLAYER] = {{0}};
    int have_peer = 0;
    if (argc > 1) {
        read_peer(argv[1], tp);
        for (int i = 0; i < NLAYER; i++) have_peer |= tp[i].have;
    }

    const char *algo = getenv("WH_CONV_ALGO");
    static const char *algos[] = {"auto", "direct", "gemm", "implicit"};
    int algo_i = 0;
    for (int i = 0; algo && i < 4; i++)
        if (strcmp(algo, algos[i]) == 0) algo_i = i;
    wh_conv2d_set_algo((wh_conv_algo)algo_i);

    const int gn = 1536;
    float *ga = alloc_rand((size_t)gn * gn, 1, 1), *gb = alloc_rand((size_t)gn * gn, 1, 2);
    float *gc = alloc_rand((size_t)gn * gn, 1, 3);
    double peak = 0;
    printf("whorl conv2d f32: %d OpenMP threads, OpenBLAS %d threads (%s kernels), batch %d, "
           "best of %d\n",
           omp_get_max_threads(), openblas_get_num_threads(), openblas_get_corename(), BATCH, reps);
    printf("algorithm: %s; AVX-512 implicit GEMM %s\n", algos[algo_i],
           wh__conv2d_x512_available() ? "available (stride-1 layers with >= 8 out and >= 16 in "
                                         "channels*taps)"
                                       : "not available on this CPU");


    /* All layers' buffers at once (~1.3 GB), and the repetitions interleaved
     * over layers and ops: on a shared machine a burst of contention then
     * spoils one sample of many ops instead of every sample of one. */
    struct {
        wh_conv2d_shape s;
        float *x, *w, *b, *dy, *y, *dx, *dw, *db;
        double t[3], flops;
    } L[NLAYER];
    for (int li = 0; li < NLAYER; li++) {
        wh_conv2d_shape s = {.n = BATCH, .c_in = layers[li].c_in, .h_in = layers[li].size,
                             .w_in = layers[li].size, .c_out = layers[li].c_out, .kh = 3, .kw = 3,
                             .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                             .dil_h = 1, .dil_w = 1};
        if (wh_conv2d_shape_init(&s) != WH_OK) {
            fprintf(stderr, "bench_conv: %s\n", wh_error_message());
            return 1;
        }
        const size_t nx = (size_t)s.n * s.c_in * s.h_in * s.w_in;
        const size_t ny = (size_t)s.n * s.c_out * s.h_out * s.w_out;
        const size_t nw = (size_t)s.c_out * s.c_in * s.kh * s.kw;
        L[li].s = s;
        L[li].x = alloc_rand(nx, 1, 10 + li);
        L[li].w = alloc_rand(nw, 0.1f, 20 + li);
        L[li].b = alloc_rand(s.c_out, 0.1f, 30 + li);
        L[li].dy = alloc_rand(ny, 1, 40 + li);
        L[li].y = alloc_rand(ny, 0, 0);
        L[li].dx = alloc_rand(nx, 0, 0);
        L[li].dw = alloc_rand(nw, 0, 0);
        L[li].db = alloc_rand(s.c_out, 0, 0);
        L[li].flops = 2.0 * s.n * s.c_out * s.c_in * s.kh * s.kw * s.h_out * (double)s.w_out;
        for (int k = 0; k < 3; k++) L[li].t[k] = 1e30;
    }
    for (int r = 0; r <= reps; r++) { /* r == 0: warm-up */
        for (int i = 0; i < 2; i++) {
            const double gf = sgemm_once(ga, gb, gc);
            if (r > 0 && gf > peak) peak = gf;
        }
        /* let OpenBLAS's worker threads stop spinning before timing OpenMP code */
        nanosleep(&(struct timespec){0, 200000000}, NULL);
        for (int li = 0; li < NLAYER; li++)
            for (int k = 0; k < 3; k++) {
                const wh_conv2d_shape *s = &L[li].s;
                const double t0 = now();
                wh_status st =
                    k == 0   ? wh_conv2d_forward_f32(s, L[li].x, L[li].w, L[li].b, layers[li].act,
                                                     L[li].y)
                    : k == 1 ? wh_conv2d_backward_input_f32(s, L[li].dy, L[li].w, L[li].dx)
                             : wh_conv2d_backward_weight_f32(s, L[li].x, L[li].dy, L[li].dw,
                                                             L[li].db);
                const double t = (now() - t0) * 1e3;
                if (st != WH_OK) {
                    fprintf(stderr, "bench_conv: %s\n", wh_error_message());
                    return 1;
                }
                if (r > 0 && t < L[li].t[k]) L[li].t[k] = t;
            }
    }
    free(ga), free(gb), free(gc);
    printf("sgemm 1536^3: %.1f GFLOPS (OpenBLAS, all threads, best of %d)\n\n", peak, 2 * reps);
    printf("%-17s %-6s %9s %7s %6s", "layer", "op", "ms", "GF/s", "sgemm");
    if (have_peer) printf(" %10s %8s", "torch ms", "speedup");
    printf("\n");

    double step_ms = 0, step_torch = 0, step_flops = 0;
    for (int li = 0; li < NLAYER; li++) {
        const wh_conv2d_shape *s = &L[li].s;
        const double *t = L[li].t, flops = L[li].flops;
        const double pt[3] = {tp[li].fwd, tp[li].bwd_in, tp[li].bwd_w};
        static const char *ops[3] = {"fwd", "bwd_in", "bwd_w"};
        char label[32];
        snprintf(label, sizeof label, "%s %d->%d @%d", layers[li].name, s->c_in, s->c_out,
                 s->h_in);
        for (int k = 0; k < 3; k++) {
            const int needed = !(k == 1 && li == 0); /* no dx for the network input */
            printf("%-17s %-6s %9.2f %7.1f %5.0f%%", k == 0 ? label : "", ops[k], t[k],
                   flops / t[k] / 1e6, 100.0 * flops / t[k] / 1e6 / peak);
            if (tp[li].have) printf(" %10.2f %7.2fx", pt[k], pt[k] / t[k]);
            if (!needed) printf("  (not needed in training)");
            printf("\n");
            if (needed) {
                step_ms += t[k];
                step_torch += pt[k];
                step_flops += flops;
            }
        }
        free(L[li].x), free(L[li].w), free(L[li].b), free(L[li].dy);
        free(L[li].y), free(L[li].dx), free(L[li].dw), free(L[li].db);
    }
    printf("\nconv work per training step (fwd + bwd_w, + bwd_in except L1): %.1f ms, %.1f GFLOPS",
           step_ms, step_flops / step_ms / 1e6);
    if (have_peer) printf("; torch %.1f ms, speedup %.2fx", step_torch, step_torch / step_ms);
    printf("\n");
    return 0;
}
