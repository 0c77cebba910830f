/* Elementwise ops with broadcasting, their gradients, and the in-place
 * updates optimizers use.  The per-element formulas live in
 * kernels/elementwise_math.h (shared with CUDA); this file is the loops. */
#include <math.h>
#include <string.h>

#include "backend.h"
#include "kernels/elementwise_math.h"
#include "ops_util.h"

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */

/* ---- loops ---------------------------------------------------------------------- */

/* out[i] = a[i] op b[i] over an output shape; a, b strided (broadcast). */
static void binary_loop(int mop, wh_tensor *a, wh_tensor *b, wh_tensor *out) {
    wh_row_iter it;
    wh_tensor *ops[3] = {a, b, NULL};
    wh_row_iter_init(&it, out->ndim, out->shape, 3, ops);
    int64_t sa = it.stride[0][it.ndim - 1], sb = it.stride[1][it.ndim - 1];
    int64_t total = it.rows * it.inner;
#define BINARY_ROWS(T, SUF)                                                                 \
    do {                                                                                   \
        const T *A = a->storage->data, *B = b->storage->data;                              \
        T *O = wh_tensor_data(out);                                                        \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                              \
        for (int64_t r = 0; r < it.rows; r++) {                                            \
            int64_t offs[3];                                                               \
            wh_row_iter_offsets(&it, r, offs);                                             \
            const T *x = A + offs[0], *y = B + offs[1];                                    \
            T *o = O + r * it.inner;                                                       \
            if (sa == 1 && sb == 1)                                                        \
                for (int64_t i = 0; i < it.inner; i++) o[i] = wh_binary_forward_##SUF(mop, x[i], y[i]); \
            else if (sa == 1 && sb == 0)                                                   \
                for (int64_t i = 0; i < it.inner; i++) o[i] = wh_binary_forward_##SUF(mop, x[i], y[0]); \
            else if (sa == 0 && sb == 1)                                                   \
                for (int64_t i = 0; i < it.inner; i++) o[i] = wh_binary_forward_##SUF(mop, x[0], y[i]); \
            else                                                                           \
                for (int64_t i = 0; i < it.inner; i++)                                     \
                    o[i] = wh_binary_forward_##SUF(mop, x[i * sa], y[i * sb]);             \
        }                                                                                  \
    } while (0)
    if (out->dtype == WH_FLOAT32) BINARY_ROWS(float, f32);
    else BINARY_ROWS(double, f64);
#undef BINARY_ROWS
}

/* ga/gb (full output shape, contiguous; either may be NULL) from g and out. */
static void binary_grad_loop(int mop, wh_tensor *a, wh_tensor *b, wh_tensor *out, wh_tensor *g,
                             wh_tensor *ga, wh_tensor *gb) {
    wh_row_iter it;
    wh_tensor *ops[2] = {a, b};
    wh_row_iter_init(&it, out->ndim, out->shape, 2, ops);
    int64_t sa = it.stride[0][it.ndim - 1], sb = it.stride[1][it.ndim - 1];
    int64_t total = it.rows * it.inner;
#define GRAD_ROWS(T, SUF)                                                                   \
    do {                                                                                   \
        const T *A = a->storage->data, *B = b->storage->data;                              \
        const T *O = wh_tensor_data(out), *G = wh_tensor_data(g);                          \
        T *GA = ga ? wh_tensor_data(ga) : NULL, *GB = gb ? wh_tensor_data(gb) : NULL;      \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                              \
        for (int64_t r = 0; r < it.rows; r++) {                                            \
            int64_t offs[2], base = r * it.inner;                                          \
            wh_row_iter_offsets(&it, r, offs);                                             \
            for (int64_t i = 0; i < it.inner; i++) {                                       \
                T x = A[offs[0] + i * sa], y = B[offs[1] + i * sb];                        \
                T o = O[base + i], gg = G[base + i];                                       \
                if (GA) GA[base + i] = wh_binary_grad_a_##SUF(mop, x, y, o, gg);           \
                if (GB) GB[base + i] = wh_binary_grad_b_##SUF(mop, x, y, o, gg);           \
            }                                                                              \
        }                                                                                  \
    } while (0)
    if (out->dtype == WH_FLOAT32) GRAD_ROWS(float, f32);
    else GRAD_ROWS(double, f64);
#undef GRAD_ROWS
}

/* ---- binary ops ------------------------------------------------------------------- */

_Static_assert((int)WH_MATH_MINIMUM == (int)WH_BIN_MINIMUM && (int)WH_MATH_COS == (int)WH_UN_COS,
               "the math op numbers are shared with the backends");

static const char *binary_name(int mop) {
    static const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
    return mop >= 0 && mop <= WH_MATH_MINIMUM ? names[mop] : "binary";
}

static wh_status binary_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    int mop = (int)n->iarg[0];
    wh_tensor *a, *b, *out, *full[2] = {NULL, NULL};
    WH_TRY(wh_node_saved(n, 0, &a));
    WH_TRY(wh_node_saved(n, 1, &b));
    WH_TRY(wh_node_saved(n, 2, &out));
    wh_status st = WH_OK;
    for (int i = 0; i < 2 && st == WH_OK; i++)
        if (wh_node_needs_grad(n, i)) st = wh_tensor_empty_like(out, &full[i]);
    const wh_backend *be = wh_backend_of(out);
    if (st == WH_OK && be) st = be->binary_grad(mop, a, b, out, g, full[0], full[1]);
    else if (st == WH_OK) binary_grad_loop(mop, a, b, out, g, full[0], full[1]);
    for (int i = 0; i < 2; i++) {
        if (st == WH_OK && full[i]) st = wh_sum_to_meta(full[i], &n->input_meta[i], &gin[i]);
        wh_tensor_release(full[i]);
    }
    return st;
}

wh_status wh_binary(wh_binary_op op, wh_tensor *a, wh_tensor *b, wh_tensor **out) {
    int mop = (int)op;
    const char *name = binary_name(mop);
    int ndim;
    int64_t shape[WH_MAX_DIMS];
    WH_TRY(wh_check_float_dev(name, "first operand", a));
    WH_TRY(wh_check_float_dev(name, "second operand", b));
    WH_TRY(wh_check_same_dtype(name, a, b));
    WH_TRY(wh_broadcast_shape(name, a, b, &ndim, shape));
    WH_TRY(wh_tensor_empty(a->dtype, ndim, shape, a->storage->allocator, out));
    const wh_backend *be = wh_backend_of(a);
    wh_status st = WH_OK;
    if (be) st = be->binary(mop, a, b, *out);
    else binary_loop(mop, a, b, *out);
    wh_tensor *inputs[2] = {a, b};
    wh_node *node;
    if (st == WH_OK) st = wh_record(name, binary_backward, 2, inputs, *out, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = mop;
        if ((st = wh_node_save(node, a)) == WH_OK && (st = wh_node_save(node, b)) == WH_OK)
            st = wh_node_save(node, *out);
    }
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_add(wh_tensor *a, wh_tensor *b, wh_tensor **out) { return wh_binary(WH_BIN_ADD, a, b, out); }
wh_status wh_sub(wh_tensor *a, wh_tensor *b, wh_tensor **out) { return wh_binary(WH_BIN_SUB, a, b, out); }
wh_status wh_mul(wh_tensor *a, wh_tensor *b, wh_tensor **out) { return wh_binary(WH_BIN_MUL, a, b, out); }
wh_status wh_div(wh_tensor *a, wh_tensor *b, wh_tensor **out) { return wh_binary(WH_BIN_DIV, a, b, out); }
wh_status wh_pow(wh_tensor *a, wh_tensor *b, wh_tensor **out) { return wh_binary(WH_BIN_POW, a, b, out); }

/* ---- unary ops ---------------------------------------------------------------------- */

static const char *unary_name(int mop) {
    static const char *names[] = {"neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh",
                                  "square", "sin", "cos", "leaky_relu", "clamp", "affine", "pow", "rsub", "rdiv"};
    return mop >= 0 && mop <= WH_MATH_RDIV ? names[mop] : "unary";
}

static void unary_loop(int mop, const wh_tensor *x, wh_tensor *y, double p0, double p1) {
    int64_t n = wh_tensor_numel(x);
    if (x->dtype == WH_FLOAT32) {
        const float *a = wh_tensor_data(x);
        float *o = wh_tensor_data(y), q0 = (float)p0, q1 = (float)p1;
        #pragma omp parallel for simd if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++) o[i] = wh_unary_forward_f32(mop, a[i], q0, q1);
    } else {
        const double *a = wh_tensor_data(x);
        double *o = wh_tensor_data(y);
        #pragma omp parallel for simd if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++) o[i] = wh_unary_forward_f64(mop, a[i], p0, p1);
    }
}

static wh_status unary_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    int mop = (int)n->iarg[0];
    double p0 = n->farg[0], p1 = n->farg[1];
    wh_tensor *x, *y;
    WH_TRY(wh_node_saved(n, 0, &x));
    WH_TRY(wh_node_saved(n, 1, &y));
    WH_TRY(wh_tensor_empty_like(y, &gin[0]));
    const wh_backend *be = wh_backend_of(y);
    if (be) return be->unary_grad(mop, x, y, g, gin[0], p0, p1);
    int64_t cnt = wh_tensor_numel(y);
    if (y->dtype == WH_FLOAT32) {
        const float *X = wh_tensor_data(x), *Y = wh_tensor_data(y), *G = wh_tensor_data(g);
        float *D = wh_tensor_data(gin[0]), q0 = (float)p0, q1 = (float)p1;
        #pragma omp parallel for simd if (cnt > PARALLEL_MIN)
        for (int64_t i = 0; i < cnt; i++) D[i] = wh_unary_grad_f32(mop, X[i], Y[i], G[i], q0, q1);
    } else {
        const double *X = wh_tensor_data(x), *Y = wh_tensor_data(y), *G = wh_tensor_data(g);
        double *D = wh_tensor_data(gin[0]);
        #pragma omp parallel for simd if (cnt > PARALLEL_MIN)
        for (int64_t i = 0; i < cnt; i++) D[i] = wh_unary_grad_f64(mop, X[i], Y[i], G[i], p0, p1);
    }
    return WH_OK;
}

static wh_status unary_apply(int mop, wh_tensor *x, double p0, double p1, wh_tensor **out) {
    const char *name = unary_name(mop);
    wh_tensor *xc;
    WH_TRY(wh_check_float_dev(name, "input", x));
    WH_TRY(wh_contig(x, &xc));
    wh_status st = wh_tensor_empty_like(xc, out);
    if (st != WH_OK) {
        wh_tensor_release(xc);
        return st;
    }
    const wh_backend *be = wh_backend_of(x);
    if (be) st = be->unary(mop, xc, *out, p0, p1);
    else unary_loop(mop, xc, *out, p0, p1);
    wh_node *node;
    if (st == WH_OK) st = wh_record(name, unary_backward, 1, &x, *out, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = mop;
        node->farg[0] = p0;
        node->farg[1] = p1;
        if ((st = wh_node_save(node, xc)) == WH_OK) st = wh_node_save(node, *out);
    }
    wh_tensor_release(xc);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_unary(wh_unary_op op, wh_tensor *x, wh_tensor **out) {
    if ((int)op < 0 || (int)op > WH_MATH_COS)
        return wh_fail(WH_ERR_ARG, "unary: unknown op %d", (int)op);
    return unary_apply((int)op, x, 0, 0, out);
}

wh_status wh_leaky_relu(wh_tensor *x, double slope, wh_tensor **out) {
    if (!isfinite(slope)) return wh_fail(WH_ERR_ARG, "leaky_relu: slope must be finite");
    return unary_apply(WH_MATH_LEAKY_RELU, x, slope, 0, out);
}

wh_status wh_clamp(wh_tensor *x, double lo, double hi, wh_tensor **out) {
    if (isnan(lo) || isnan(hi) || lo > hi)
        return wh_fail(WH_ERR_ARG, "clamp: min (%g) must not exceed max (%g)", lo, hi);
    return unary_apply(WH_MATH_CLAMP, x, lo, hi, out);
}

wh_status wh_affine(wh_tensor *x, double scale, double shift, wh_tensor **out) {
    return unary_apply(WH_MATH_AFFINE, x, scale, shift, out);
}

wh_status wh_pow_scalar(wh_tensor *x, double p, wh_tensor **out) {
    if (p == 2) return unary_apply(WH_MATH_SQUARE, x, 0, 0, out);
    return unary_apply(WH_MATH_POW_SCALAR, x, p, 0, out);
}

wh_status wh_rsub_scalar(wh_tensor *x, double s, wh_tensor **out) {
    return unary_apply(WH_MATH_RSUB, x, s, 0, out);
}

wh_status wh_rdiv_scalar(wh_tensor *x, double s, wh_tensor **out) {
    return unary_apply(WH_MATH_RDIV, x, s, 0, out);
}

/* ---- in-place updates ------------------------------------------------------------------ */

/* x <- f(x, a, b) elementwise with a, b broadcast to x (b may be NULL). */
typedef enum { IP_AXPY, IP_MUL, IP_ADDCMUL, IP_ADDCDIV, IP_COPY } inplace_kind;
_Static_assert((int)IP_AXPY == WH_UPDATE_AXPY && (int)IP_COPY == WH_UPDATE_COPY,
               "in-place kinds are passed to backends as WH_UPDATE_*");

static wh_status inplace(const char *name, inplace_kind kind, wh_tensor *x, wh_tensor *a,
                         wh_tensor *b, double v) {
    WH_TRY(wh_check_inplace(name, x));
    WH_TRY(wh_check_float_dev(name, "self", x));
    wh_tensor *operands[3] = {x, a, b};
    for (int k = 1; k < 3; k++) {
        wh_tensor *t = operands[k];
        if (!t) continue;
        WH_TRY(wh_check_float_dev(name, "argument", t));
        WH_TRY(wh_check_same_dtype(name, x, t));
        int nd;
        int64_t shape[WH_MAX_DIMS];
        WH_TRY(wh_broadcast_shape(name, x, t, &nd, shape));
        bool fits = nd == x->ndim;
        for (int d = 0; fits && d < nd; d++) fits = shape[d] == x->shape[d];
        if (!fits) {
            char s1[128], s2[128];
            return wh_fail(WH_ERR_SHAPE, "%s: argument of shape %s cannot be broadcast to the "
                           "updated tensor's shape %s", name, wh_shape_str(t, s2, sizeof s2),
                           wh_shape_str(x, s1, sizeof s1));
        }
    }
    const wh_backend *be = wh_backend_of(x);
    if (be) {
        wh_tensor_bump_version(x);
        return be->update((int)kind, x, a, b, v);
    }
    wh_row_iter it;
    wh_row_iter_init(&it, x->ndim, x->shape, 3, operands);
    int64_t total = it.rows * it.inner;
    int64_t s0 = it.stride[0][it.ndim - 1], s1 = it.stride[1][it.ndim - 1],
            s2 = it.stride[2][it.ndim - 1];
#define INPLACE_ROWS(T)                                                                     \
    do {                                                                                   \
        T *X = x->storage->data;                                                           \
        const T *A = a ? (const T *)a->storage->data : NULL;                               \
        const T *B = b ? (const T *)b->storage->data : NULL;                               \
        T val = (T)v;                                                                      \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                              \
        for (int64_t r = 0; r < it.rows; r++) {                                            \
            int64_t offs[3];                                                               \
            wh_row_iter_offsets(&it, r, offs);                                             \
            T *xp = X + offs[0];                                                           \
            const T *ap = A ? A + offs[1] : NULL, *bp = B ? B + offs[2] : NULL;             \
            switch (kind) {                                                                \
            case IP_AXPY:                                                                  \
                for (int64_t i = 0; i < it.inner; i++) xp[i * s0] += val * ap[i * s1];     \
                break;                                                                     \
            case IP_MUL:                                                                   \
                for (int64_t i = 0; i < it.inner; i++) xp[i * s0] *= ap[i * s1];           \
                break;                                                                     \
            case IP_ADDCMUL:                                                               \
                for (int64_t i = 0; i < it.inner; i++) xp[i * s0] += val * ap[i * s1] * bp[i * s2]; \
                break;                                                                     \
            case IP_ADDCDIV:                                                               \
                for (int64_t i = 0; i < it.inner; i++) xp[i * s0] += val * ap[i * s1] / bp[i * s2]; \
                break;                                                                     \
            case IP_COPY:                                                                  \
                for (int64_t i = 0; i < it.inner; i++) xp[i * s0] = ap[i * s1];            \
                break;                                                                     \
            }                                                                              \
        }                                                                                  \
    } while (0)
    if (x->dtype == WH_FLOAT32) INPLACE_ROWS(float);
    else INPLACE_ROWS(double);
#undef INPLACE_ROWS
    wh_tensor_bump_version(x);
    return WH_OK;
}

wh_status wh_add_(wh_tensor *x, wh_tensor *y, double alpha) {
    return inplace("add_", IP_AXPY, x, y, NULL, alpha);
}
wh_status wh_mul_(wh_tensor *x, wh_tensor *y) { return inplace("mul_", IP_MUL, x, y, NULL, 0); }
wh_status wh_addcmul_(wh_tensor *x, wh_tensor *a, wh_tensor *b, double v) {
    return inplace("addcmul_", IP_ADDCMUL, x, a, b, v);
}
wh_status wh_addcdiv_(wh_tensor *x, wh_tensor *a, wh_tensor *b, double v) {
    return inplace("addcdiv_", IP_ADDCDIV, x, a, b, v);
}

wh_status wh_copy_(wh_tensor *x, wh_tensor *src) {
    WH_TRY(wh_check_inplace("copy_", x));
    wh_device dx = wh_tensor_device(x), ds = wh_tensor_device(src);
    if ((dx.type != ds.type || dx.index != ds.index) && !wh_tensor_same_shape(x, src)) {
        /* Across devices with broadcasting: bring src over first. */
        wh_tensor *moved = NULL;
        wh_status st = wh_tensor_empty(src->dtype, src->ndim, src->shape, x->storage->allocator,
                                       &moved);
        if (st == WH_OK) st = wh_copy_into(moved, src);
        if (st == WH_OK) st = wh_copy_(x, moved);
        wh_tensor_release(moved);
        return st;
    }
    if (x->dtype != src->dtype || !wh_dtype_is_float(x->dtype) || dx.type != ds.type ||
        dx.index != ds.index) {
        /* Conversions (uint8 images into float tensors...) and copies between
         * devices need equal shapes. */
        return wh_copy_into(x, src);
    }
    return inplace("copy_", IP_COPY, x, src, NULL, 0);
}

/* x <- f(x) for unary math, any strides. */
static wh_status unary_inplace(const char *name, int mop, wh_tensor *x, double p0, double p1) {
    WH_TRY(wh_check_inplace(name, x));
    WH_TRY(wh_check_float_dev(name, "self", x));
    const wh_backend *be = wh_backend_of(x);
    if (be) {
        wh_tensor_bump_version(x);
        return be->unary(mop, x, x, p0, p1);
    }
    wh_row_iter it;
    wh_row_iter_init(&it, x->ndim, x->shape, 1, &x);
    int64_t s0 = it.stride[0][it.ndim - 1], total = it.rows * it.inner;
#define UNARY_INPLACE_ROWS(T, SUF)                                                          \
    do {                                                                                   \
        T *X = x->storage->data, q0 = (T)p0, q1 = (T)p1;                                   \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                              \
        for (int64_t r = 0; r < it.rows; r++) {                                            \
            int64_t off;                                                                   \
            wh_row_iter_offsets(&it, r, &off);                                             \
            for (int64_t i = 0; i < it.inner; i++)                                         \
                X[off + i * s0] = wh_unary_forward_##SUF(mop, X[off + i * s0], q0, q1);    \
        }                                                                                  \
    } while (0)
    if (x->dtype == WH_FLOAT32) UNARY_INPLACE_ROWS(float, f32);
    else UNARY_INPLACE_ROWS(double, f64);
#undef UNARY_INPLACE_ROWS
    wh_tensor_bump_version(x);
    return WH_OK;
}

wh_status wh_unary_(wh_unary_op op, wh_tensor *x) {
    if ((int)op < 0 || (int)op > WH_MATH_COS)
        return wh_fail(WH_ERR_ARG, "unary_: unknown op %d", (int)op);
    return unary_inplace(unary_name((int)op), (int)op, x, 0, 0);
}

wh_status wh_affine_(wh_tensor *x, double scale, double shift) {
    return unary_inplace("affine_", WH_MATH_AFFINE, x, scale, shift);
}

wh_status wh_clamp_(wh_tensor *x, double lo, double hi) {
    if (isnan(lo) || isnan(hi) || lo > hi)
        return wh_fail(WH_ERR_ARG, "clamp_: min (%g) must not exceed max (%g)", lo, hi);
    return unary_inplace("clamp_", WH_MATH_CLAMP, x, lo, hi);
}

wh_status wh_fill_(wh_tensor *x, double value) {
    WH_TRY(wh_check_inplace("fill_", x));
    return wh_fill(x, value);
}
