/* Index and per-element math of pooling, upsampling and the losses, shared
 * by the CPU loops (ops_nn.c, ops_loss.c) and a CUDA backend, so both pick
 * the same windows and source pixels and compute the same losses. */
#ifndef WHORL_NN_MATH_H
#define WHORL_NN_MATH_H

#include <math.h>
#include <stdint.h>

#ifndef WH_HD
#ifdef __CUDACC__
#define WH_HD __host__ __device__
#else
#define WH_HD
#endif
#endif

/* ---- pooling -------------------------------------------------------------------- */

/* PyTorch's pooling output size.  With ceil_mode the last window may hang
 * over the end, but it must start inside the input or the left padding,
 * else it would pool padding only. */
WH_HD static inline int64_t wh_pool_out_size(int64_t in, int64_t k, int64_t s, int64_t pad,
                                             int ceil_mode) {
    int64_t num = in + 2 * pad - k + (ceil_mode ? s - 1 : 0);
    int64_t q = num >= 0 ? num / s : -((-num + s - 1) / s); /* floor division */
    int64_t out = q + 1;
    if (ceil_mode && out > 0 && (out - 1) * s >= in + pad) out--;
    return out;
}

/* The max-pool comparison: NaN wins (so it propagates, as in PyTorch), and
 * equal values do not replace the earlier one, so ties go to the first. */
WH_HD static inline int wh_pool_takes_f32(float v, float best) { return v > best || v != v; }
WH_HD static inline int wh_pool_takes_f64(double v, double best) { return v > best || v != v; }

/* ---- upsampling -------------------------------------------------------------------- */

/* PyTorch's legacy "nearest" source index, including its float32 index
 * arithmetic, so arbitrary sizes pick exactly the pixels PyTorch picks;
 * the same and the doubled size are exact integer cases. */
WH_HD static inline int64_t wh_nearest_source(int64_t dst, int64_t in, int64_t out) {
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    float scale = (float)in / (float)out;
    int64_t src = (int64_t)floorf((float)dst * scale);
    return src < in - 1 ? src : in - 1;
}

/* Bilinear source coordinate of output pixel dst (PyTorch's
 * area_pixel_compute_source_index): align_corners maps the corner pixel
 * centres onto each other; otherwise pixel centres are at half-integers
 * (Keras' and TensorFlow's half_pixel_centers), clamped at 0 on the left. */
WH_HD static inline double wh_linear_source(int64_t dst, int64_t in, int64_t out,
                                            int align_corners) {
    if (align_corners) return out > 1 ? (double)dst * (double)(in - 1) / (double)(out - 1) : 0.0;
    double src = ((double)dst + 0.5) * (double)in / (double)out - 0.5;
    return src < 0 ? 0.0 : src;
}

/* Splits a source coordinate into the lower pixel, the step to the upper one
 * (0 at the last pixel) and the upper pixel's weight. */
WH_HD static inline void wh_linear_split(double src, int64_t in, int64_t *i0, int64_t *step,
                                         double *lambda) {
    int64_t i = (int64_t)src;
    if (i > in - 1) i = in - 1;
    *i0 = i;
    *step = i < in - 1 ? 1 : 0;
    *lambda = src - (double)i;
}

/* ---- pixel losses ------------------------------------------------------------------- */

enum { WH_LOSS_MSE = 0, WH_LOSS_L1 = 1, WH_LOSS_BCE = 2 };

/* Keras' backend epsilon: BCE clips probabilities to [eps, 1 - eps]. */
#define WH_BCE_EPS 1e-7

#define WH_DEFINE_LOSS_MATH(T, SUF, LOG, FABS)                                              \
    WH_HD static inline T wh_loss_forward_##SUF(int kind, T p, T t) {                       \
        if (kind == WH_LOSS_MSE) return (p - t) * (p - t);                                  \
        if (kind == WH_LOSS_L1) return FABS(p - t);                                         \
        T lo = (T)WH_BCE_EPS, hi = (T)1 - lo;                                               \
        T pc = p < lo ? lo : p > hi ? hi : p;                                               \
        return -(t * LOG(pc) + ((T)1 - t) * LOG((T)1 - pc));                                \
    }                                                                                      \
    /* d loss / d pred; BCE passes no gradient where the clip is active. */                 \
    WH_HD static inline T wh_loss_grad_pred_##SUF(int kind, T p, T t) {                     \
        if (kind == WH_LOSS_MSE) return 2 * (p - t);                                        \
        if (kind == WH_LOSS_L1) return p > t ? (T)1 : p < t ? (T)-1 : (T)0;                 \
        T lo = (T)WH_BCE_EPS, hi = (T)1 - lo;                                               \
        if (p < lo || p > hi) return (T)0;                                                  \
        return -t / p + ((T)1 - t) / ((T)1 - p);                                            \
    }                                                                                      \
    WH_HD static inline T wh_loss_grad_target_##SUF(int kind, T p, T t) {                   \
        if (kind == WH_LOSS_MSE) return -2 * (p - t);                                       \
        if (kind == WH_LOSS_L1) return p > t ? (T)-1 : p < t ? (T)1 : (T)0;                 \
        T lo = (T)WH_BCE_EPS, hi = (T)1 - lo;                                               \
        T pc = p < lo ? lo : p > hi ? hi : p;                                               \
        return LOG((T)1 - pc) - LOG(pc);                                                    \
    }

WH_DEFINE_LOSS_MATH(float, f32, logf, fabsf)
WH_DEFINE_LOSS_MATH(double, f64, log, fabs)

#endif
