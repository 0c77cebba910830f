/* Convolution kernels: shape checks, dispatch, threading policy, transposed
 * convolution and activations.  The loops themselves are in conv2d_impl.h,
 * instantiated below for float and double. */
#include "kernels/conv2d.h"
#include "kernels/conv2d_internal.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>

#include "scratch.h"

/* ---------------------------------------------------------------- policy */

static wh_conv_algo g_algo = WH_CONV_ALGO_AUTO;

void wh_conv2d_set_algo(wh_conv_algo algo) { g_algo = algo; }

/* Target size of one im2col block, in elements (1 MiB of floats): keeps
 * the column block and the GEMM's packed panels in the 2 MiB L2. */
static const size_t g_block_elems = 256 * 1024;

static int wh__conv_threads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* Threading: independent tasks (images x row blocks, images x channel groups)
 * run on OpenMP threads and each calls BLAS single-threaded.  Measured on 2
 * cores, this is ~1.4x faster than one task at a time with OpenBLAS's
 * own threads + OpenMP im2col even with OMP_WAIT_POLICY=passive, and ~10x
 * faster than that with the default spinning waits (the two thread pools
 * spin against each other).  Tasks are made small enough that there are at
 * least 2 per thread; a single task runs with BLAS's own threads. */
static int wh__conv_outer_parallel(int ntask) { return ntask > 1 && wh__conv_threads() > 1; }

/* Input-channel groups per image for backward_input, so that a batch that
 * does not split evenly over the threads still does. */
static int wh__conv_groups(int n, int c_in) {
    const int nth = wh__conv_threads();
    if (nth <= 1 || n % nth == 0 || n >= 4 * nth) return 1;
    int g = (2 * nth + n - 1) / n;
    return g < c_in ? g : c_in;
}

/* Output rows per im2col block: the block fits g_block_elems, and the batch
 * gives at least 2 blocks per thread. */
static int wh__conv_block_rows(const wh_conv2d_shape *s, int k) {
    size_t per_row = (size_t)k * s->w_out;
    size_t rows = g_block_elems / (per_row ? per_row : 1);
    const int nth = wh__conv_threads();
    if (s->n < 2 * nth) {
        size_t nblk = (size_t)(2 * nth + s->n - 1) / s->n;
        size_t r2 = ((size_t)s->h_out + nblk - 1) / nblk;
        if (r2 < rows) rows = r2;
    }
    if (rows < 1) rows = 1;
    if (rows > (size_t)s->h_out) rows = s->h_out;
    return (int)rows;
}

/* A 1x1, stride-1, unpadded conv needs no im2col: the image is the matrix. */
static int wh__conv_is_pointwise(const wh_conv2d_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->stride_h == 1 && s->stride_w == 1 && s->pad_h == 0 &&
           s->pad_w == 0 && s->h_out == s->h_in && s->w_out == s->w_in;
}

/* Output positions o in [lo, hi) of a row of n_out whose input index
 * o*stride + off lies in [0, n_in). */
static inline void wh__conv_range(int off, int stride, int n_in, int n_out, int *lo, int *hi) {
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = n_in - off <= 0 ? 0 : (n_in - off + stride - 1) / stride;
    if (h > n_out) h = n_out;
    if (l > n_out) l = n_out;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* OpenBLAS's thread count is process-global: the GEMM paths set it to 1 while
 * their own OpenMP threads call it, and restore it afterwards. */
static int wh__blas_begin(int outer) {
    if (!outer) return 0;
    int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    return saved;
}
static void wh__blas_end(int saved) {
    if (saved > 1) openblas_set_num_threads(saved);
}

/* ------------------------------------------------------------- templates */

#define T float
#define SFX _f32
#define GEMM cblas_sgemm
#include "kernels/conv2d_impl.h"
#undef T
#undef SFX
#undef GEMM

#define T double
#define SFX _f64
#define GEMM cblas_dgemm
#include "kernels/conv2d_impl.h"
#undef T
#undef SFX
#undef GEMM

/* Direct paths: the register-blocked f32 kernels where their strides allow,
 * the plain loops otherwise (and for f64). */
static wh_status fwd_direct_any_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                    const float *bias, wh_activation act, float *y) {
    if (wh__conv2d_fast_fwd_ok(s)) return wh__conv2d_fwd_fast_f32(s, x, w, bias, act, y);
    return fwd_direct_f32(s, x, w, bias, act, y);
}
static wh_status bwdin_direct_any_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                      const float *bias, wh_activation act, float *dx) {
    if (wh__conv2d_fast_bwdin_ok(s)) return wh__conv2d_bwdin_fast_f32(s, dy, w, bias, act, dx);
    return bwdin_direct_f32(s, dy, w, bias, act, dx);
}
static wh_status bwdw_direct_any_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                     float *dw, float *dbias) {
    if (wh__conv2d_fast_bwdw_ok(s)) return wh__conv2d_bwdw_fast_f32(s, x, dy, dw, dbias);
    return bwdw_direct_f32(s, x, dy, dw, dbias);
}
/* GEMM paths: the AVX-512 implicit GEMM where it applies, im2col + BLAS otherwise. */
static int use_x512(const wh_conv2d_shape *s, int op) {
    return (g_algo == WH_CONV_ALGO_AUTO || g_algo == WH_CONV_ALGO_IMPLICIT) &&
           wh__conv2d_x512_ok(s, op);
}
static wh_status fwd_gemm_any_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                  const float *bias, wh_activation act, float *y) {
    if (use_x512(s, 0)) return wh__conv2d_fwd_x512_f32(s, x, w, bias, act, y);
    return fwd_gemm_f32(s, x, w, bias, act, y);
}
static wh_status bwdin_gemm_any_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                    const float *bias, wh_activation act, float *dx) {
    if (use_x512(s, 1)) return wh__conv2d_bwdin_x512_f32(s, dy, w, bias, act, dx);
    return bwdin_gemm_f32(s, dy, w, bias, act, dx);
}
static wh_status bwdw_gemm_any_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                   float *dw, float *dbias) {
    if (use_x512(s, 2)) return wh__conv2d_bwdw_x512_f32(s, x, dy, dw, dbias);
    return bwdw_gemm_f32(s, x, dy, dw, dbias);
}
#define fwd_gemm_any_f64 fwd_gemm_f64
#define bwdin_gemm_any_f64 bwdin_gemm_f64
#define bwdw_gemm_any_f64 bwdw_gemm_f64
#define fwd_direct_any_f64 fwd_direct_f64
#define bwdin_direct_any_f64 bwdin_direct_f64
#define bwdw_direct_any_f64 bwdw_direct_f64

/* ----------------------------------------------------------------- shapes */

static int out_size(int in, int k, int stride, int pad, int dil) {
    long v = ((long)in + 2L * pad - (long)dil * (k - 1) - 1);
    if (v < 0) return 0;
    return (int)(v / stride + 1);
}

wh_status wh_conv2d_shape_init(wh_conv2d_shape *s) {
    if (!s) return wh_fail(WH_ERR_ARG, "conv2d: shape is NULL");
    if (s->n <= 0 || s->c_in <= 0 || s->h_in <= 0 || s->w_in <= 0)
        return wh_fail(WH_ERR_ARG, "conv2d: input sizes must be > 0, got (n=%d, c_in=%d, h=%d, w=%d)",
                       s->n, s->c_in, s->h_in, s->w_in);
    if (s->c_out <= 0 || s->kh <= 0 || s->kw <= 0)
        return wh_fail(WH_ERR_ARG, "conv2d: weight sizes must be > 0, got (c_out=%d, kh=%d, kw=%d)",
                       s->c_out, s->kh, s->kw);
    if (s->stride_h <= 0 || s->stride_w <= 0)
        return wh_fail(WH_ERR_ARG, "conv2d: stride must be > 0, got %dx%d", s->stride_h, s->stride_w);
    if (s->dil_h <= 0 || s->dil_w <= 0)
        return wh_fail(WH_ERR_ARG, "conv2d: dilation must be > 0, got %dx%d", s->dil_h, s->dil_w);
    if (s->pad_h < 0 || s->pad_w < 0)
        return wh_fail(WH_ERR_ARG, "conv2d: padding must be >= 0, got %dx%d", s->pad_h, s->pad_w);
    long ekh = (long)s->dil_h * (s->kh - 1) + 1, ekw = (long)s->dil_w * (s->kw - 1) + 1;
    long ph = s->h_in + 2L * s->pad_h, pw = s->w_in + 2L * s->pad_w;
    if (ekh > ph || ekw > pw)
        return wh_fail(WH_ERR_SHAPE,
                       "conv2d: kernel %dx%d (dilation %dx%d, effective %ldx%ld) is larger than the "
                       "padded input %ldx%ld (input %dx%d, padding %dx%d)",
                       s->kh, s->kw, s->dil_h, s->dil_w, ekh, ekw, ph, pw, s->h_in, s->w_in,
                       s->pad_h, s->pad_w);
    if (ph > INT_MAX / 2 || pw > INT_MAX / 2 || (long)s->c_in * s->kh * s->kw > INT_MAX / 4)
        return wh_fail(WH_ERR_ARG, "conv2d: sizes too large (input %dx%d, c_in %d, kernel %dx%d)",
                       s->h_in, s->w_in, s->c_in, s->kh, s->kw);
    s->h_out = out_size(s->h_in, s->kh, s->stride_h, s->pad_h, s->dil_h);
    s->w_out = out_size(s->w_in, s->kw, s->stride_w, s->pad_w, s->dil_w);
    if ((long)s->h_out * s->w_out > INT_MAX / 4 || (long)s->h_in * s->w_in > INT_MAX / 4)
        return wh_fail(WH_ERR_ARG, "conv2d: image too large (%dx%d -> %dx%d)", s->h_in, s->w_in,
                       s->h_out, s->w_out);
    return WH_OK;
}

/* Re-checks a shape handed to a kernel (catches one never initialised). */
static wh_status check(const wh_conv2d_shape *s, const char *op, const void *a, const void *b,
                       const void *c) {
    if (!s) return wh_fail(WH_ERR_ARG, "%s: shape is NULL", op);
    wh_conv2d_shape t = *s;
    wh_status st = wh_conv2d_shape_init(&t);
    if (st != WH_OK) return st;
    if (t.h_out != s->h_out || t.w_out != s->w_out)
        return wh_fail(WH_ERR_SHAPE,
                       "%s: shape has output %dx%d but input %dx%d, kernel %dx%d gives %dx%d "
                       "(call wh_conv2d_shape_init)",
                       op, s->h_out, s->w_out, s->h_in, s->w_in, s->kh, s->kw, t.h_out, t.w_out);
    if (!a || !b || !c) return wh_fail(WH_ERR_ARG, "%s: NULL buffer", op);
    return WH_OK;
}

static int use_direct(const wh_conv2d_shape *s) {
    if (g_algo == WH_CONV_ALGO_DIRECT) return 1;
    if (g_algo == WH_CONV_ALGO_GEMM) return 0;
    return s->c_out < 8 || s->c_in * s->kh * s->kw < 16;
}

static wh_status act_check(wh_activation act, const char *op) {
    if (act != WH_ACT_NONE && act != WH_ACT_RELU && act != WH_ACT_SIGMOID)
        return wh_fail(WH_ERR_ARG, "%s: unknown activation %d", op, (int)act);
    return WH_OK;
}

static wh_status oom(wh_status st, const char *op) {
    if (st == WH_ERR_MEMORY) return wh_fail(st, "%s: out of memory for scratch buffers", op);
    return st;
}

/* ------------------------------------------------------- conv2d kernels */

#define DEFINE_CONV(T, SFX)                                                                       \
    static wh_status fwd##SFX(const wh_conv2d_shape *s, const T *x, const T *w, const T *bias,    \
                              wh_activation act, T *y) {                                           \
        if (use_direct(s)) return fwd_direct_any##SFX(s, x, w, bias, act, y);                          \
        return fwd_gemm_any##SFX(s, x, w, bias, act, y);                                               \
    }                                                                                              \
    wh_status wh_conv2d_forward##SFX(const wh_conv2d_shape *s, const T *x, const T *w,            \
                                     const T *bias, wh_activation act, T *y) {                    \
        WH_TRY(check(s, "conv2d forward", x, w, y));                                               \
        WH_TRY(act_check(act, "conv2d forward"));                                                  \
        return oom(fwd##SFX(s, x, w, bias, act, y), "conv2d forward");                             \
    }                                                                                              \
    static wh_status bwdin##SFX(const wh_conv2d_shape *s, const T *dy, const T *w, const T *bias, \
                                wh_activation act, T *dx) {                                       \
        if (use_direct(s)) return bwdin_direct_any##SFX(s, dy, w, bias, act, dx);                      \
        return bwdin_gemm_any##SFX(s, dy, w, bias, act, dx);                                           \
    }                                                                                              \
    wh_status wh_conv2d_backward_input##SFX(const wh_conv2d_shape *s, const T *dy, const T *w,    \
                                            T *dx) {                                               \
        WH_TRY(check(s, "conv2d backward_input", dy, w, dx));                                      \
        return oom(bwdin##SFX(s, dy, w, NULL, WH_ACT_NONE, dx), "conv2d backward_input");          \
    }                                                                                              \
    static wh_status bwdw##SFX(const wh_conv2d_shape *s, const T *x, const T *dy, T *dw,          \
                               T *dbias) {                                                         \
        if (use_direct(s)) return bwdw_direct_any##SFX(s, x, dy, dw, dbias);                           \
        return bwdw_gemm_any##SFX(s, x, dy, dw, dbias);                                                \
    }                                                                                              \
    wh_status wh_conv2d_backward_weight##SFX(const wh_conv2d_shape *s, const T *x, const T *dy,   \
                                             T *dw, T *dbias) {                                    \
        WH_TRY(check(s, "conv2d backward_weight", x, dy, dw));                                     \
        return oom(bwdw##SFX(s, x, dy, dw, dbias), "conv2d backward_weight");                      \
    }                                                                                              \
    void wh_activation_backward##SFX(wh_activation act, const T *y, T *dy, size_t n) {            \
        act_backward##SFX(act, y, dy, n);                                                          \
    }                                                                                              \
    void wh_activation_forward##SFX(wh_activation act, T *y, size_t n) {                          \
        _Pragma("omp parallel for schedule(static) if (n > 65536)")                                \
        for (size_t i = 0; i < n; i += 16384) {                                                    \
            size_t len = n - i < 16384 ? n - i : 16384;                                             \
            bias_act##SFX(y + i, len, 0, act);                                                     \
        }                                                                                          \
    }

DEFINE_CONV(float, _f32)
DEFINE_CONV(double, _f64)

/* ------------------------------------------------ transposed convolution */

wh_status wh_conv_transpose2d_shape_init(wh_conv_transpose2d_shape *t) {
    if (!t) return wh_fail(WH_ERR_ARG, "conv_transpose2d: shape is NULL");
    if (t->n <= 0 || t->c_in <= 0 || t->h_in <= 0 || t->w_in <= 0 || t->c_out <= 0 || t->kh <= 0 ||
        t->kw <= 0)
        return wh_fail(WH_ERR_ARG,
                       "conv_transpose2d: sizes must be > 0, got input (n=%d, c_in=%d, h=%d, w=%d), "
                       "c_out=%d, kernel %dx%d",
                       t->n, t->c_in, t->h_in, t->w_in, t->c_out, t->kh, t->kw);
    if (t->stride_h <= 0 || t->stride_w <= 0 || t->dil_h <= 0 || t->dil_w <= 0)
        return wh_fail(WH_ERR_ARG, "conv_transpose2d: stride %dx%d and dilation %dx%d must be > 0",
                       t->stride_h, t->stride_w, t->dil_h, t->dil_w);
    if (t->pad_h < 0 || t->pad_w < 0 || t->out_pad_h < 0 || t->out_pad_w < 0)
        return wh_fail(WH_ERR_ARG,
                       "conv_transpose2d: padding %dx%d and output_padding %dx%d must be >= 0",
                       t->pad_h, t->pad_w, t->out_pad_h, t->out_pad_w);
    if ((t->out_pad_h >= t->stride_h && t->out_pad_h >= t->dil_h) ||
        (t->out_pad_w >= t->stride_w && t->out_pad_w >= t->dil_w))
        return wh_fail(WH_ERR_ARG,
                       "conv_transpose2d: output_padding %dx%d must be smaller than stride %dx%d or "
                       "dilation %dx%d",
                       t->out_pad_h, t->out_pad_w, t->stride_h, t->stride_w, t->dil_h, t->dil_w);
    long ho = (long)(t->h_in - 1) * t->stride_h - 2L * t->pad_h + (long)t->dil_h * (t->kh - 1) +
              t->out_pad_h + 1;
    long wo = (long)(t->w_in - 1) * t->stride_w - 2L * t->pad_w + (long)t->dil_w * (t->kw - 1) +
              t->out_pad_w + 1;
    if (ho < 1 || wo < 1)
        return wh_fail(WH_ERR_SHAPE,
                       "conv_transpose2d: output size %ldx%ld is not positive (input %dx%d, kernel "
                       "%dx%d, stride %dx%d, padding %dx%d, dilation %dx%d, output_padding %dx%d)",
                       ho, wo, t->h_in, t->w_in, t->kh, t->kw, t->stride_h, t->stride_w, t->pad_h,
                       t->pad_w, t->dil_h, t->dil_w, t->out_pad_h, t->out_pad_w);
    if (ho > INT_MAX / 4 || wo > INT_MAX / 4 || ho * wo > INT_MAX / 4)
        return wh_fail(WH_ERR_ARG, "conv_transpose2d: output %ldx%ld too large", ho, wo);
    t->h_out = (int)ho;
    t->w_out = (int)wo;
    wh_conv2d_shape f = {
        .n = t->n, .c_in = t->c_out, .h_in = t->h_out, .w_in = t->w_out,
        .c_out = t->c_in, .kh = t->kh, .kw = t->kw,
        .stride_h = t->stride_h, .stride_w = t->stride_w, .pad_h = t->pad_h, .pad_w = t->pad_w,
        .dil_h = t->dil_h, .dil_w = t->dil_w,
    };
    WH_TRY(wh_conv2d_shape_init(&f));
    /* The forward conv gives h_in + out_pad_h/stride_h rows: more than h_in
     * when output_padding >= stride (allowed when < dilation).  The extra
     * rows are not part of the transposed conv, so keep only the first h_in. */
    if (f.h_out < t->h_in || f.w_out < t->w_in)
        return wh_fail(WH_ERR_SHAPE,
                       "conv_transpose2d: input %dx%d does not round-trip through output %dx%d",
                       t->h_in, t->w_in, t->h_out, t->w_out);
    f.h_out = t->h_in;
    f.w_out = t->w_in;
    t->fwd = f;
    return WH_OK;
}

static wh_status tcheck(const wh_conv_transpose2d_shape *t, const char *op, const void *a,
                        const void *b, const void *c) {
    if (!t) return wh_fail(WH_ERR_ARG, "%s: shape is NULL", op);
    wh_conv_transpose2d_shape u = *t;
    WH_TRY(wh_conv_transpose2d_shape_init(&u));
    if (memcmp(&u, t, sizeof u) != 0)
        return wh_fail(WH_ERR_SHAPE, "%s: shape not initialised (call wh_conv_transpose2d_shape_init)",
                       op);
    if (!a || !b || !c) return wh_fail(WH_ERR_ARG, "%s: NULL buffer", op);
    return WH_OK;
}

#define DEFINE_CONVT(T, SFX)                                                                      \
    wh_status wh_conv_transpose2d_forward##SFX(const wh_conv_transpose2d_shape *t, const T *x,    \
                                               const T *w, const T *bias, wh_activation act,      \
                                               T *y) {                                             \
        WH_TRY(tcheck(t, "conv_transpose2d forward", x, w, y));                                    \
        WH_TRY(act_check(act, "conv_transpose2d forward"));                                        \
        return oom(bwdin##SFX(&t->fwd, x, w, bias, act, y), "conv_transpose2d forward");          \
    }                                                                                              \
    wh_status wh_conv_transpose2d_backward_input##SFX(const wh_conv_transpose2d_shape *t,         \
                                                      const T *dy, const T *w, T *dx) {           \
        WH_TRY(tcheck(t, "conv_transpose2d backward_input", dy, w, dx));                           \
        return oom(fwd##SFX(&t->fwd, dy, w, NULL, WH_ACT_NONE, dx),                                \
                   "conv_transpose2d backward_input");                                             \
    }                                                                                              \
    wh_status wh_conv_transpose2d_backward_weight##SFX(const wh_conv_transpose2d_shape *t,        \
                                                       const T *x, const T *dy, T *dw, T *dbias) { \
        WH_TRY(tcheck(t, "conv_transpose2d backward_weight", x, dy, dw));                          \
        WH_TRY(oom(bwdw##SFX(&t->fwd, dy, x, dw, NULL), "conv_transpose2d backward_weight"));      \
        if (dbias) {                                                                               \
            const size_t plane = (size_t)t->h_out * t->w_out;                                      \
            _Pragma("omp parallel for schedule(static) if (t->c_out > 1)")                         \
            for (int c = 0; c < t->c_out; c++) {                                                   \
                double v = 0;                                                                      \
                for (int n = 0; n < t->n; n++)                                                     \
                    v += sum##SFX(dy + ((size_t)n * t->c_out + c) * plane, plane);                 \
                dbias[c] = (T)v;                                                                   \
            }                                                                                      \
        }                                                                                          \
        return WH_OK;                                                                              \
    }

DEFINE_CONVT(float, _f32)
DEFINE_CONVT(double, _f64)
