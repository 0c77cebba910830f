/* Per-element bodies of the GPU's pooling and upsampling kernels (cuda/nn.cu),
 * in plain C so that tests/c/test_kernel_math.c runs them on the host over
 * every element and compares with the CPU ops, forward and backward.
 *
 * Forward passes compute one output element as the CPU loops do (same
 * window, same scan order, same expression).  Backward passes are gathers:
 * one input element sums the outputs that read it, so the GPU needs no
 * atomics and its results do not depend on scheduling.  Window and
 * source-pixel rules come from nn_math.h. */
#ifndef WHORL_POOL_MATH_H
#define WHORL_POOL_MATH_H

#include <stdint.h>

#include "nn_math.h"

/* One (N*C, H, W) -> (OH, OW) pooling: the input and output plane sizes
 * and the window (numbers of wh_pool_params). */
typedef struct {
    int64_t H, W, OH, OW;
    int kh, kw, sh, sw, ph, pw, include_pad;
} wh_pool_geom;

/* The outputs o whose unclipped window [o*s - pad, o*s - pad + k) holds
 * input index i: o in [*lo, *hi). */
WH_HD static inline void wh_pool_readers(int64_t i, int k, int s, int pad, int64_t out,
                                         int64_t *lo, int64_t *hi) {
    int64_t a = i + pad - k + 1; /* o*s >= a */
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    int64_t h = (i + pad) / s + 1; /* o*s <= i + pad */
    *hi = h < out ? h : out;
}

/* PyTorch's average-pool window (ops_nn.c): clipped to the padded input
 * for the count_include_pad divisor (padded_len), to the input for the
 * pixels [start, end). */
WH_HD static inline void wh_avg_window(int64_t o, int s, int pad, int k, int64_t in,
                                       int64_t *start, int64_t *end, int64_t *padded_len) {
    int64_t a = o * s - pad, b = a + k < in + pad ? a + k : in + pad;
    *padded_len = b - a;
    *start = a < 0 ? 0 : a;
    *end = b < in ? b : in;
}

WH_HD static inline int64_t wh_avg_divisor(const wh_pool_geom *g, int64_t oh, int64_t ow) {
    int64_t hs, he, hl, ws, we, wl;
    wh_avg_window(oh, g->sh, g->ph, g->kh, g->H, &hs, &he, &hl);
    wh_avg_window(ow, g->sw, g->pw, g->kw, g->W, &ws, &we, &wl);
    return g->include_pad ? hl * wl : (he - hs) * (we - ws);
}

/* Upsampling: the source rows (or columns) of output index o, as the CPU
 * tables have them: nearest has one (i0, step 0, lambda 0), bilinear two
 * (i0 with weight 1 - lambda, i0 + step with lambda). */
WH_HD static inline void wh_resample_source(int mode, int align, int64_t o, int64_t in,
                                            int64_t out, int64_t *i0, int64_t *step,
                                            double *lambda) {
    if (mode == 0) { /* WH_UPSAMPLE_NEAREST */
        *i0 = wh_nearest_source(o, in, out);
        *step = 0;
        *lambda = 0;
    } else {
        wh_linear_split(wh_linear_source(o, in, out, align), in, i0, step, lambda);
    }
}

/* For every input index of one axis, the run of outputs [lo, hi) reading
 * it (sources never decrease along the output axis, so they form a run;
 * an unread input gets an empty one).  Host-side: the GPU gets the table. */
static inline void wh_resample_readers(int mode, int align, int64_t in, int64_t out, int64_t *lo,
                                       int64_t *hi) {
    for (int64_t i = 0; i < in; i++) {
        lo[i] = out;
        hi[i] = 0;
    }
    for (int64_t o = 0; o < out; o++) {
        int64_t i0, step;
        double lambda;
        wh_resample_source(mode, align, o, in, out, &i0, &step, &lambda);
        int64_t srcs[2] = {i0, i0 + step};
        for (int k = 0; k < 2; k++) {
            if (o < lo[srcs[k]]) lo[srcs[k]] = o;
            if (o + 1 > hi[srcs[k]]) hi[srcs[k]] = o + 1;
        }
    }
    for (int64_t i = 0; i < in; i++)
        if (hi[i] < lo[i]) lo[i] = hi[i] = 0;
}

#define WH_DEFINE_POOL_MATH(T, SUF)                                                              \
    /* Max pool output (oh, ow) of plane xp: the CPU's scan of the clipped              \
     * window; *bi gets the winner's position in the plane. */                           \
    WH_HD static inline T wh_max_pool_at_##SUF(const wh_pool_geom *g, const T *xp, int64_t oh,  \
                                               int64_t ow, int32_t *bi) {                      \
        int64_t hs = oh * g->sh - g->ph, he = hs + g->kh < g->H ? hs + g->kh : g->H;             \
        int64_t ws = ow * g->sw - g->pw, we = ws + g->kw < g->W ? ws + g->kw : g->W;             \
        if (hs < 0) hs = 0;                                                                      \
        if (ws < 0) ws = 0;                                                                      \
        int64_t b = hs * g->W + ws;                                                              \
        T best = xp[b];                                                                          \
        for (int64_t h = hs; h < he; h++)                                                        \
            for (int64_t w = ws; w < we; w++)                                                    \
                if (wh_pool_takes_##SUF(xp[h * g->W + w], best)) {                               \
                    best = xp[h * g->W + w];                                                     \
                    b = h * g->W + w;                                                            \
                }                                                                                \
        *bi = (int32_t)b;                                                                        \
        return best;                                                                             \
    }                                                                                            \
    /* The gradient of input (h, w) of a plane: the outputs whose window holds   \
     * it and that picked it (gp, ip: the plane's output gradient and indices). */           \
    WH_HD static inline T wh_max_pool_grad_at_##SUF(const wh_pool_geom *g, const T *gp,         \
                                                    const int32_t *ip, int64_t h, int64_t w) {  \
        int64_t oh0, oh1, ow0, ow1;                                                              \
        wh_pool_readers(h, g->kh, g->sh, g->ph, g->OH, &oh0, &oh1);                              \
        wh_pool_readers(w, g->kw, g->sw, g->pw, g->OW, &ow0, &ow1);                              \
        int32_t me = (int32_t)(h * g->W + w);                                                    \
        T acc = 0;                                                                               \
        for (int64_t oh = oh0; oh < oh1; oh++)                                                   \
            for (int64_t ow = ow0; ow < ow1; ow++)                                               \
                if (ip[oh * g->OW + ow] == me) acc += gp[oh * g->OW + ow];                       \
        return acc;                                                                              \
    }                                                                                            \
    WH_HD static inline T wh_avg_pool_at_##SUF(const wh_pool_geom *g, const T *xp, int64_t oh,  \
                                               int64_t ow) {                                   \
        int64_t hs, he, hl, ws, we, wl;                                                          \
        wh_avg_window(oh, g->sh, g->ph, g->kh, g->H, &hs, &he, &hl);                             \
        wh_avg_window(ow, g->sw, g->pw, g->kw, g->W, &ws, &we, &wl);                             \
        int64_t div = g->include_pad ? hl * wl : (he - hs) * (we - ws);                          \
        T acc = 0;                                                                               \
        for (int64_t h = hs; h < he; h++)                                                        \
            for (int64_t w = ws; w < we; w++) acc += xp[h * g->W + w];                           \
        return div > 0 ? acc / (T)div : (T)0;                                                    \
    }                                                                                            \
    WH_HD static inline T wh_avg_pool_grad_at_##SUF(const wh_pool_geom *g, const T *gp,         \
                                                    int64_t h, int64_t w) {                    \
        int64_t oh0, oh1, ow0, ow1;                                                              \
        wh_pool_readers(h, g->kh, g->sh, g->ph, g->OH, &oh0, &oh1);                              \
        wh_pool_readers(w, g->kw, g->sw, g->pw, g->OW, &ow0, &ow1);                              \
        T acc = 0;                                                                               \
        for (int64_t oh = oh0; oh < oh1; oh++)                                                   \
            for (int64_t ow = ow0; ow < ow1; ow++) {                                             \
                int64_t div = wh_avg_divisor(g, oh, ow);                                         \
                if (div > 0) acc += gp[oh * g->OW + ow] / (T)div;                                \
            }                                                                                    \
        return acc;                                                                              \
    }                                                                                            \
    /* Upsampled output (oh, ow) of plane xp (H x W -> OH x OW), with the CPU's  \
     * expression operand for operand. */                                                    \
    WH_HD static inline T wh_upsample_at_##SUF(int mode, int align, const T *xp, int64_t H,     \
                                               int64_t W, int64_t OH, int64_t OW, int64_t oh,   \
                                               int64_t ow) {                                   \
        int64_t h0, hs, w0, ws;                                                                  \
        double hl, wl;                                                                           \
        wh_resample_source(mode, align, oh, H, OH, &h0, &hs, &hl);                               \
        wh_resample_source(mode, align, ow, W, OW, &w0, &ws, &wl);                               \
        if (mode == 0) return xp[h0 * W + w0];                                                   \
        const T *s0 = xp + h0 * W, *s1 = s0 + hs * W;                                            \
        T lh = (T)hl, lh0 = (T)1 - lh, lw = (T)wl, lw0 = (T)1 - lw;                              \
        int64_t a = w0, b = w0 + ws;                                                             \
        return lh0 * (lw0 * s0[a] + lw * s0[b]) + lh * (lw0 * s1[a] + lw * s1[b]);               \
    }                                                                                            \
    /* The weight with which a source (i0, step, lambda) feeds input index i:   \
     * what the CPU's scatter adds for it. */                                                \
    WH_HD static inline T wh_resample_weight_##SUF(int mode, int64_t i, int64_t i0, int64_t step, \
                                                   double lambda) {                            \
        if (mode == 0) return i0 == i ? (T)1 : (T)0;                                             \
        T l = (T)lambda, wt = 0;                                                                 \
        if (i0 == i) wt += (T)1 - l;                                                             \
        if (i0 + step == i) wt += l;                                                             \
        return wt;                                                                               \
    }                                                                                            \
    /* The gradient of input (h, w) of a plane from the output gradient gp,    \
     * with the reader runs of wh_resample_readers (rows: rlo/rhi, columns:     \
     * clo/chi). */                                                                          \
    WH_HD static inline T wh_upsample_grad_at_##SUF(int mode, int align, const T *gp, int64_t H,\
                                                    int64_t W, int64_t OH, int64_t OW,          \
                                                    const int64_t *rlo, const int64_t *rhi,     \
                                                    const int64_t *clo, const int64_t *chi,     \
                                                    int64_t h, int64_t w) {                    \
        T acc = 0;                                                                               \
        for (int64_t oh = rlo[h]; oh < rhi[h]; oh++) {                                           \
            int64_t h0, hs;                                                                      \
            double hl;                                                                           \
            wh_resample_source(mode, align, oh, H, OH, &h0, &hs, &hl);                           \
            T wh = wh_resample_weight_##SUF(mode, h, h0, hs, hl);                                \
            for (int64_t ow = clo[w]; ow < chi[w]; ow++) {                                       \
                int64_t w0, ws;                                                                  \
                double wl;                                                                       \
                wh_resample_source(mode, align, ow, W, OW, &w0, &ws, &wl);                       \
                acc += wh * wh_resample_weight_##SUF(mode, w, w0, ws, wl) * gp[oh * OW + ow];     \
            }                                                                                    \
        }                                                                                        \
        return acc;                                                                              \
    }

WH_DEFINE_POOL_MATH(float, f32)
WH_DEFINE_POOL_MATH(double, f64)

#endif
