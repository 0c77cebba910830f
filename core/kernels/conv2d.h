/* 2-D convolution and transposed convolution kernels on raw NCHW buffers.
 *
 * Layouts (all contiguous, row-major):
 *   conv2d            x (n, c_in, h_in, w_in)  w (c_out, c_in, kh, kw)  y (n, c_out, h_out, w_out)
 *   conv_transpose2d  x (n, c_in, h_in, w_in)  w (c_in, c_out, kh, kw)  y (n, c_out, h_out, w_out)
 *   bias (c_out) may be NULL everywhere.
 *
 * Every kernel overwrites its outputs (no accumulation into them) and returns
 * WH_OK, or WH_ERR_ARG / WH_ERR_SHAPE / WH_ERR_MEMORY with a message (see
 * status.h).  Shapes must have been filled by the *_shape_init functions.
 *
 * Algorithms (see wh_conv2d_set_algo): direct loops for layers that make
 * poor GEMMs (c_out < 8 or c_in*kh*kw < 16, e.g. 1->32 and 64->1 channels);
 * for the others, on CPUs with AVX-512 and stride 1, an implicit GEMM with
 * AVX-512 micro-kernels (no im2col matrix; chosen at run time), else im2col
 * (blocked over output rows) + BLAS sgemm/dgemm.  f64 always uses the plain
 * direct loops or im2col + dgemm (it exists for gradient checks).
 *
 * Threading: every kernel runs OpenMP over independent tasks (images x row
 * blocks, images x channel blocks) with omp_get_max_threads() threads; BLAS
 * is called single-threaded inside them (OpenBLAS's process-global thread
 * count is set to 1 for the duration of the call and restored after it), so
 * nothing oversubscribes.  A call made from inside an OpenMP parallel region
 * runs on the calling thread only.  Temporary buffers come from wh_scratch
 * slots 0-6 of the calling thread and of each OpenMP worker: once warm, no
 * call allocates.  Kernels are not re-entrant per thread (they share those
 * slots).
 *
 * The per-element math (activation and its derivative) is in static inline
 * functions below so that other backends can share it. */
#ifndef WHORL_KERNELS_CONV2D_H
#define WHORL_KERNELS_CONV2D_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#include "status.h"

typedef enum { WH_ACT_NONE = 0, WH_ACT_RELU = 1, WH_ACT_SIGMOID = 2 } wh_activation;

typedef struct {
    int n, c_in, h_in, w_in;          /* input  NCHW */
    int c_out, kh, kw;                /* conv2d weight (c_out, c_in, kh, kw) */
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
    int h_out, w_out;                 /* filled by wh_conv2d_shape_init */
} wh_conv2d_shape;

/* Validates (all sizes > 0, pads >= 0, output >= 1) and fills h_out/w_out:
 *   h_out = (h_in + 2*pad_h - dil_h*(kh-1) - 1)/stride_h + 1   (same for w).
 * WH_ERR_ARG for a non-positive size/stride/dilation or a negative pad,
 * WH_ERR_SHAPE when the (dilated) kernel does not fit the padded input; the
 * message names the values. */
wh_status wh_conv2d_shape_init(wh_conv2d_shape *s);

/* y = act(conv(x, w) + bias). */
wh_status wh_conv2d_forward_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                const float *bias, wh_activation act, float *y);
wh_status wh_conv2d_forward_f64(const wh_conv2d_shape *s, const double *x, const double *w,
                                const double *bias, wh_activation act, double *y);
/* dx (n, c_in, h_in, w_in) from dy (n, c_out, h_out, w_out), the gradient
 * w.r.t. the pre-activation output (see wh_activation_backward_*). */
wh_status wh_conv2d_backward_input_f32(const wh_conv2d_shape *s, const float *dy,
                                       const float *w, float *dx);
wh_status wh_conv2d_backward_input_f64(const wh_conv2d_shape *s, const double *dy,
                                       const double *w, double *dx);
/* dw (c_out, c_in, kh, kw) and dbias (c_out, may be NULL) from x and dy. */
wh_status wh_conv2d_backward_weight_f32(const wh_conv2d_shape *s, const float *x,
                                        const float *dy, float *dw, float *dbias);
wh_status wh_conv2d_backward_weight_f64(const wh_conv2d_shape *s, const double *x,
                                        const double *dy, double *dw, double *dbias);

/* ---- transposed convolution (PyTorch's conv_transpose2d semantics) ----
 *   h_out = (h_in-1)*stride_h - 2*pad_h + dil_h*(kh-1) + out_pad_h + 1   (same for w)
 *   weight (c_in, c_out, kh, kw); out_pad_h must be < stride_h or < dil_h.
 * Fill the fields above h_out and call wh_conv_transpose2d_shape_init, which
 * fills h_out/w_out and `fwd`: the equivalent forward convolution, whose
 * input is this op's output (n, c_out, h_out, w_out), whose output is this
 * op's input (n, c_in, h_in, w_in) and whose weight (fwd.c_out = c_in,
 * fwd.c_in = c_out, kh, kw) has the same memory layout as this op's weight.
 * So: transpose forward = conv backward_input of `fwd` (+ bias, act),
 *     transpose backward_input = conv forward of `fwd`,
 *     transpose backward_weight = conv backward_weight of `fwd` with x and
 *     dy swapped.
 * When output_padding >= stride (allowed when < dilation), fwd.h_out/w_out
 * are this op's h_in/w_in, smaller than the forward conv's natural output:
 * the extra rows/columns get no contribution in the transposed conv.  Use
 * the wh_conv_transpose2d_* functions rather than passing `fwd` to the
 * wh_conv2d_* ones, which would reject it then. */
typedef struct {
    int n, c_in, h_in, w_in;          /* input NCHW */
    int c_out, kh, kw;                /* weight (c_in, c_out, kh, kw) */
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out_pad_h, out_pad_w;
    int h_out, w_out;                 /* filled by wh_conv_transpose2d_shape_init */
    wh_conv2d_shape fwd;              /* filled by wh_conv_transpose2d_shape_init */
} wh_conv_transpose2d_shape;

wh_status wh_conv_transpose2d_shape_init(wh_conv_transpose2d_shape *t);

/* y (n, c_out, h_out, w_out) = act(conv_transpose(x, w) + bias). */
wh_status wh_conv_transpose2d_forward_f32(const wh_conv_transpose2d_shape *t, const float *x,
                                          const float *w, const float *bias, wh_activation act,
                                          float *y);
wh_status wh_conv_transpose2d_forward_f64(const wh_conv_transpose2d_shape *t, const double *x,
                                          const double *w, const double *bias, wh_activation act,
                                          double *y);
/* dx (n, c_in, h_in, w_in) from the pre-activation gradient dy (n, c_out, h_out, w_out). */
wh_status wh_conv_transpose2d_backward_input_f32(const wh_conv_transpose2d_shape *t,
                                                 const float *dy, const float *w, float *dx);
wh_status wh_conv_transpose2d_backward_input_f64(const wh_conv_transpose2d_shape *t,
                                                 const double *dy, const double *w, double *dx);
/* dw (c_in, c_out, kh, kw) and dbias (c_out, may be NULL) from x and dy. */
wh_status wh_conv_transpose2d_backward_weight_f32(const wh_conv_transpose2d_shape *t,
                                                  const float *x, const float *dy, float *dw,
                                                  float *dbias);
wh_status wh_conv_transpose2d_backward_weight_f64(const wh_conv_transpose2d_shape *t,
                                                  const double *x, const double *dy, double *dw,
                                                  double *dbias);

/* Turns dy into the pre-activation gradient in place, given the activated
 * output y: relu: dy *= (y > 0); sigmoid: dy *= y*(1-y); none: unchanged. */
void wh_activation_backward_f32(wh_activation act, const float *y, float *dy, size_t n);
void wh_activation_backward_f64(wh_activation act, const double *y, double *dy, size_t n);
/* y = act(y) in place over n elements. */
void wh_activation_forward_f32(wh_activation act, float *y, size_t n);
void wh_activation_forward_f64(wh_activation act, double *y, size_t n);

/* Testing/benchmark hook: which algorithm the conv2d kernels use.
 *   AUTO      per shape: DIRECT when c_out < 8 or c_in*kh*kw < 16, else
 *             IMPLICIT where it applies, else GEMM.
 *   DIRECT    direct loops (register-blocked for f32 where strides allow).
 *   GEMM      im2col + BLAS sgemm/dgemm.
 *   IMPLICIT  f32 stride-1 implicit GEMM with AVX-512 micro-kernels (CPU
 *             checked at run time); GEMM where it does not apply.
 * The setting is process-global. */
typedef enum {
    WH_CONV_ALGO_AUTO = 0,
    WH_CONV_ALGO_DIRECT = 1,
    WH_CONV_ALGO_GEMM = 2,
    WH_CONV_ALGO_IMPLICIT = 3
} wh_conv_algo;
void wh_conv2d_set_algo(wh_conv_algo algo);

/* ------------------------------------------------------------------------
 * Per-element math, shared with other backends.  Branch-free so loops over
 * them vectorise. */

/* exp(x) for x in [-87, 0] (float; relative error ~2e-7): Cody-Waite range
 * reduction and a degree-6 polynomial.  No clamps or branches, so it
 * vectorises under the default -ftrapping-math. */
static inline float wh_exp_nonpos_f32(float x) {
    /* k = round(x / ln2) by the 1.5*2^23 trick; k in [-126, 0] */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* 1/(1+exp(-v)) from e = exp(-|v|) (|v| clamped to 87), so neither branch
 * overflows and small results keep their relative precision; NaN in, NaN
 * out.  Selections are done on the bits: float selects would stop GCC from
 * vectorising loops over it. */
static inline float wh_sigmoid_f32(float v) {
    int32_t vb, pb, nb;
    memcpy(&vb, &v, sizeof vb);
    int32_t ab = vb & 0x7fffffff;                   /* |v| */
    int32_t cb = ab > 0x42ae0000 ? 0x42ae0000 : ab; /* min(|v|, 87) */
    float a;
    memcpy(&a, &cb, sizeof a);
    float e = wh_exp_nonpos_f32(-a);
    float pos = 1.0f / (1.0f + e), neg = e * pos;   /* sigmoid(|v|), sigmoid(-|v|) */
    memcpy(&pb, &pos, sizeof pb);
    memcpy(&nb, &neg, sizeof nb);
    int32_t m = -(int32_t)(vb < 0);                 /* v negative */
    int32_t r = (pb & ~m) | (nb & m);
    int32_t mn = -(int32_t)(ab > 0x7f800000);       /* v is NaN */
    r = (vb & mn) | (r & ~mn);
    float out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline float wh_relu_f32(float v) { return v > 0.0f ? v : 0.0f; }
static inline double wh_relu_f64(double v) { return v > 0.0 ? v : 0.0; }
static inline double wh_sigmoid_f64(double v) { return 1.0 / (1.0 + exp(-v)); }

/* Derivative of the activation expressed with its output y. */
static inline float wh_relu_grad_f32(float y) { return y > 0.0f ? 1.0f : 0.0f; }
static inline double wh_relu_grad_f64(double y) { return y > 0.0 ? 1.0 : 0.0; }
static inline float wh_sigmoid_grad_f32(float y) { return y * (1.0f - y); }
static inline double wh_sigmoid_grad_f64(double y) { return y * (1.0 - y); }

static inline float wh_act_f32(wh_activation a, float v) {
    return a == WH_ACT_RELU ? wh_relu_f32(v) : a == WH_ACT_SIGMOID ? wh_sigmoid_f32(v) : v;
}
static inline double wh_act_f64(wh_activation a, double v) {
    return a == WH_ACT_RELU ? wh_relu_f64(v) : a == WH_ACT_SIGMOID ? wh_sigmoid_f64(v) : v;
}
static inline float wh_act_grad_f32(wh_activation a, float y) {
    return a == WH_ACT_RELU ? wh_relu_grad_f32(y) : a == WH_ACT_SIGMOID ? wh_sigmoid_grad_f32(y) : 1.0f;
}
static inline double wh_act_grad_f64(wh_activation a, double y) {
    return a == WH_ACT_RELU ? wh_relu_grad_f64(y) : a == WH_ACT_SIGMOID ? wh_sigmoid_grad_f64(y) : 1.0;
}

#endif
