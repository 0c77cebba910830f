/* Pooling, upsampling, batch norm and dropout.  The image ops work on
 * (N,C,H,W) tensors one H x W plane at a time, so the loops parallelise over
 * the N*C planes and the backward passes scatter into their own plane
 * without races.  Window and source-pixel arithmetic lives in
 * kernels/nn_math.h (shared with CUDA). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels/nn_math.h"
#include "ops_util.h"
#include "scratch.h"

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */

/* ---- pooling ---------------------------------------------------------------------- */

static wh_status pool_setup(const char *op, wh_tensor *x, const wh_pool_params *p, int64_t *oh,
                            int64_t *ow) {
    if (!p) return wh_fail(WH_ERR_ARG, "%s: pooling parameters are missing", op);
    WH_TRY(wh_check_float_dev(op, "input", x));
    WH_TRY(wh_check_ndim(op, "input", x, 4, "(N,C,H,W)"));
    for (int i = 0; i < 2; i++) {
        if (p->kernel[i] < 1 || p->stride[i] < 1 || p->padding[i] < 0)
            return wh_fail(WH_ERR_ARG, "%s: kernel (%d, %d) and stride (%d, %d) must be "
                           "positive and padding (%d, %d) non-negative", op, p->kernel[0],
                           p->kernel[1], p->stride[0], p->stride[1], p->padding[0],
                           p->padding[1]);
        /* A wider padding would create windows that see padding only. */
        if (p->padding[i] > p->kernel[i] / 2)
            return wh_fail(WH_ERR_ARG, "%s: padding (%d, %d) must be at most half the kernel "
                           "size (%d, %d)", op, p->padding[0], p->padding[1], p->kernel[0],
                           p->kernel[1]);
    }
    *oh = wh_pool_out_size(x->shape[2], p->kernel[0], p->stride[0], p->padding[0], p->ceil_mode);
    *ow = wh_pool_out_size(x->shape[3], p->kernel[1], p->stride[1], p->padding[1], p->ceil_mode);
    if (*oh < 1 || *ow < 1) {
        char s[128];
        return wh_fail(WH_ERR_SHAPE, "%s: input of shape %s is too small for kernel (%d, %d) "
                       "with padding (%d, %d): the output would be %lldx%lld", op,
                       wh_shape_str(x, s, sizeof s), p->kernel[0], p->kernel[1], p->padding[0],
                       p->padding[1], (long long)*oh, (long long)*ow);
    }
    return WH_OK;
}

/* Pooling parameters kept in a node's iarg[0..7] (a device's max pool
 * backward needs them; avg pool's always does). */
static void store_pool_params(wh_node *n, const wh_pool_params *p) {
    n->iarg[0] = p->kernel[0];
    n->iarg[1] = p->kernel[1];
    n->iarg[2] = p->stride[0];
    n->iarg[3] = p->stride[1];
    n->iarg[4] = p->padding[0];
    n->iarg[5] = p->padding[1];
    n->iarg[6] = p->ceil_mode;
    n->iarg[7] = p->count_include_pad;
}

static wh_pool_params load_pool_params(const wh_node *n) {
    wh_pool_params pp = {{(int)n->iarg[0], (int)n->iarg[1]}, {(int)n->iarg[2], (int)n->iarg[3]},
                         {(int)n->iarg[4], (int)n->iarg[5]}, n->iarg[6] != 0, n->iarg[7] != 0};
    return pp;
}

/* The arg max of each output inside its input plane, for max_pool2d's backward.
 * int32 halves the memory of int64; pool_setup's callers refuse planes
 * that do not fit. */
typedef struct {
    int32_t *idx;
} maxpool_ctx;

static void maxpool_ctx_free(void *ctx) {
    maxpool_ctx *c = ctx;
    free(c->idx);
    free(c);
}

/* Fills Y (and I when not NULL) for planes of size H x W -> OH x OW. */
#define MAXPOOL_PLANES(T, SUF)                                                               \
    do {                                                                                    \
        const T *X = wh_tensor_data(xc);                                                    \
        T *Y = wh_tensor_data(y);                                                           \
        const int fast = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 &&   \
                         2 * OH <= H && 2 * OW <= W;                                        \
        _Pragma("omp parallel for if (planes * OH * OW * kh * kw > PARALLEL_MIN)")          \
        for (int64_t pl = 0; pl < planes; pl++) {                                           \
            const T *xp = X + pl * H * W;                                                   \
            T *yp = Y + pl * OH * OW;                                                       \
            int32_t *ip = I ? I + pl * OH * OW : NULL;                                      \
            if (fast) {                                                                     \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    const T *r0 = xp + 2 * oh * W, *r1 = r0 + W;                            \
                    for (int64_t ow = 0; ow < OW; ow++) {                                   \
                        int64_t w0 = 2 * ow, bi = 2 * oh * W + w0;                           \
                        T best = r0[w0];                                                    \
                        if (wh_pool_takes_##SUF(r0[w0 + 1], best)) best = r0[w0 + 1], bi = 2 * oh * W + w0 + 1; \
                        if (wh_pool_takes_##SUF(r1[w0], best)) best = r1[w0], bi = (2 * oh + 1) * W + w0;     \
                        if (wh_pool_takes_##SUF(r1[w0 + 1], best)) best = r1[w0 + 1], bi = (2 * oh + 1) * W + w0 + 1; \
                        yp[oh * OW + ow] = best;                                            \
                        if (ip) ip[oh * OW + ow] = (int32_t)bi;                             \
                    }                                                                       \
                }                                                                           \
                continue;                                                                   \
            }                                                                               \
            for (int64_t oh = 0; oh < OH; oh++) {                                           \
                int64_t hs = oh * sh - ph, he = hs + kh < H ? hs + kh : H;                  \
                if (hs < 0) hs = 0;                                                         \
                for (int64_t ow = 0; ow < OW; ow++) {                                       \
                    int64_t ws = ow * sw - pw, we = ws + kw < W ? ws + kw : W;              \
                    if (ws < 0) ws = 0;                                                     \
                    int64_t bi = hs * W + ws;                                               \
                    T best = xp[bi];                                                        \
                    for (int64_t h = hs; h < he; h++)                                       \
                        for (int64_t w = ws; w < we; w++)                                   \
                            if (wh_pool_takes_##SUF(xp[h * W + w], best)) {                 \
                                best = xp[h * W + w];                                       \
                                bi = h * W + w;                                             \
                            }                                                               \
                    yp[oh * OW + ow] = best;                                                \
                    if (ip) ip[oh * OW + ow] = (int32_t)bi;                                 \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)

static wh_status max_pool_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_meta *m = &n->input_meta[0];
    const wh_backend *be = wh_backend_of(g);
    if (be) {
        /* On a device ctx is a wh_devbuf of the int32 indices. */
        const wh_devbuf *buf = n->ctx;
        wh_pool_params pp = load_pool_params(n);
        WH_TRY(wh_tensor_empty(m->dtype, m->ndim, m->shape, g->storage->allocator, &gin[0]));
        return be->max_pool2d_grad(g, buf->ptr, &pp, gin[0]);
    }
    const maxpool_ctx *c = n->ctx;
    int64_t planes = m->shape[0] * m->shape[1], HW = m->shape[2] * m->shape[3];
    int64_t OHW = g->shape[2] * g->shape[3];
    WH_TRY(wh_tensor_zeros(m->dtype, m->ndim, m->shape, &gin[0]));
    const int32_t *I = c->idx;
#define MAXPOOL_BACK(T)                                                                      \
    do {                                                                                    \
        const T *G = wh_tensor_data(g);                                                     \
        T *D = wh_tensor_data(gin[0]);                                                      \
        _Pragma("omp parallel for if (planes * OHW > PARALLEL_MIN)")                        \
        for (int64_t pl = 0; pl < planes; pl++) {                                           \
            T *dp = D + pl * HW;                                                            \
            const T *gp = G + pl * OHW;                                                     \
            const int32_t *ip = I + pl * OHW;                                               \
            for (int64_t o = 0; o < OHW; o++) dp[ip[o]] += gp[o];                           \
        }                                                                                   \
    } while (0)
    if (m->dtype == WH_FLOAT32) MAXPOOL_BACK(float);
    else MAXPOOL_BACK(double);
#undef MAXPOOL_BACK
    return WH_OK;
}

/* max_pool2d on a device: the indices stay in device memory. */
static wh_status max_pool_device(const wh_backend *be, wh_tensor *x, const wh_pool_params *p,
                                 bool graph, int64_t nout, int64_t N, int64_t C, int64_t OH,
                                 int64_t OW, wh_tensor **out) {
    wh_devbuf *buf = NULL;
    wh_tensor *xc = NULL, *y = NULL;
    int64_t shape[4] = {N, C, OH, OW};
    wh_status st = wh_contig(x, &xc);
    if (st == WH_OK) st = wh_tensor_empty(x->dtype, 4, shape, x->storage->allocator, &y);
    if (st == WH_OK && graph)
        st = wh_devbuf_new(x->storage->allocator, sizeof(int32_t) * (size_t)nout, &buf);
    if (st == WH_OK) st = be->max_pool2d(xc, p, y, buf ? buf->ptr : NULL);
    wh_tensor_release(xc);
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record("max_pool2d", max_pool_backward, 1, &x, y, &node);
    if (st == WH_OK && node) {
        store_pool_params(node, p);
        node->ctx = buf;
        node->free_ctx = wh_devbuf_free;
        buf = NULL;
    }
    wh_devbuf_free(buf);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

wh_status wh_max_pool2d(wh_tensor *x, const wh_pool_params *p, wh_tensor **out) {
    const char *op = "max_pool2d";
    int64_t OH = 0, OW = 0;
    *out = NULL;
    WH_TRY(pool_setup(op, x, p, &OH, &OW));
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t planes = N * C;
    int64_t kh = p->kernel[0], kw = p->kernel[1], sh = p->stride[0], sw = p->stride[1];
    int64_t ph = p->padding[0], pw = p->padding[1];
    bool graph = wh_needs_graph(1, &x);
    if (graph && H * W > INT32_MAX) {
        char s[128];
        return wh_fail(WH_ERR_SHAPE, "%s: planes of more than 2^31 elements are not supported "
                       "when recording gradients (input %s)", op, wh_shape_str(x, s, sizeof s));
    }
    const wh_backend *be = wh_backend_of(x);
    if (be) return max_pool_device(be, x, p, graph, planes * OH * OW, N, C, OH, OW, out);
    maxpool_ctx *ctx = NULL;
    if (graph) {
        ctx = calloc(1, sizeof *ctx);
        if (ctx) ctx->idx = malloc(sizeof(int32_t) * (size_t)(planes * OH * OW > 0 ? planes * OH * OW : 1));
        if (!ctx || !ctx->idx) {
            if (ctx) free(ctx);
            return wh_fail(WH_ERR_MEMORY, "%s: out of memory for the arg max indices", op);
        }
    }
    wh_tensor *xc = NULL, *y = NULL;
    int64_t shape[4] = {N, C, OH, OW};
    wh_status st = wh_contig(x, &xc);
    if (st == WH_OK) st = wh_tensor_empty(x->dtype, 4, shape, NULL, &y);
    if (st != WH_OK) {
        wh_tensor_release(xc);
        if (ctx) maxpool_ctx_free(ctx);
        return st;
    }
    int32_t *I = ctx ? ctx->idx : NULL;
    if (x->dtype == WH_FLOAT32) MAXPOOL_PLANES(float, f32);
    else MAXPOOL_PLANES(double, f64);
    wh_tensor_release(xc);
    wh_node *node;
    st = wh_record(op, max_pool_backward, 1, &x, y, &node);
    if (st == WH_OK && node) {
        store_pool_params(node, p);
        node->ctx = ctx;
        node->free_ctx = maxpool_ctx_free;
        ctx = NULL;
    }
    if (ctx) maxpool_ctx_free(ctx);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}
#undef MAXPOOL_PLANES

/* PyTorch's avg_pool2d window: the divisor counts the padding that the window
 * covers (up to the padded border) when count_include_pad, else only the
 * input pixels.  Returns the clipped window and its divisor. */
static inline void avg_window(int64_t o, int64_t s, int64_t pad, int64_t k, int64_t in,
                              int64_t *start, int64_t *end, int64_t *padded_len) {
    int64_t a = o * s - pad, b = a + k < in + pad ? a + k : in + pad;
    *padded_len = b - a;
    *start = a < 0 ? 0 : a;
    *end = b < in ? b : in;
}

#define AVGPOOL_ARGS                                                                         \
    int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, const wh_pool_params *p

static void avg_pool_forward(wh_tensor *xc, wh_tensor *y, AVGPOOL_ARGS) {
    int64_t kh = p->kernel[0], kw = p->kernel[1], sh = p->stride[0], sw = p->stride[1];
    int64_t ph = p->padding[0], pw = p->padding[1];
    bool incl = p->count_include_pad;
    /* 2x2 windows at stride 2 that all lie inside the input: always 4 pixels. */
    bool fast = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && 2 * OH <= H &&
                2 * OW <= W;
#define AVGPOOL_FWD(T)                                                                       \
    do {                                                                                    \
        const T *X = wh_tensor_data(xc);                                                    \
        T *Y = wh_tensor_data(y);                                                           \
        _Pragma("omp parallel for if (planes * OH * OW * kh * kw > PARALLEL_MIN)")          \
        for (int64_t pl = 0; pl < planes; pl++) {                                           \
            const T *xp = X + pl * H * W;                                                   \
            T *yp = Y + pl * OH * OW;                                                       \
            if (fast) {                                                                     \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    const T *r0 = xp + 2 * oh * W, *r1 = r0 + W;                            \
                    for (int64_t ow = 0; ow < OW; ow++)                                     \
                        yp[oh * OW + ow] = (r0[2 * ow] + r0[2 * ow + 1] + r1[2 * ow] +      \
                                            r1[2 * ow + 1]) * (T)0.25;                      \
                }                                                                           \
                continue;                                                                   \
            }                                                                               \
            for (int64_t oh = 0; oh < OH; oh++) {                                           \
                int64_t hs, he, hl;                                                         \
                avg_window(oh, sh, ph, kh, H, &hs, &he, &hl);                               \
                for (int64_t ow = 0; ow < OW; ow++) {                                       \
                    int64_t ws, we, wl;                                                     \
                    avg_window(ow, sw, pw, kw, W, &ws, &we, &wl);                           \
                    int64_t div = incl ? hl * wl : (he - hs) * (we - ws);                   \
                    T acc = 0;                                                              \
                    for (int64_t h = hs; h < he; h++)                                       \
                        for (int64_t w = ws; w < we; w++) acc += xp[h * W + w];             \
                    yp[oh * OW + ow] = div > 0 ? acc / (T)div : (T)0;                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (y->dtype == WH_FLOAT32) AVGPOOL_FWD(float);
    else AVGPOOL_FWD(double);
#undef AVGPOOL_FWD
}

static wh_status avg_pool_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_meta *m = &n->input_meta[0];
    wh_pool_params pp = load_pool_params(n);
    const wh_pool_params *p = &pp;
    const wh_backend *be = wh_backend_of(g);
    if (be) {
        WH_TRY(wh_tensor_empty(m->dtype, m->ndim, m->shape, g->storage->allocator, &gin[0]));
        return be->avg_pool2d_grad(g, p, gin[0]);
    }
    int64_t planes = m->shape[0] * m->shape[1], H = m->shape[2], W = m->shape[3];
    int64_t OH = g->shape[2], OW = g->shape[3];
    int64_t kh = p->kernel[0], kw = p->kernel[1], sh = p->stride[0], sw = p->stride[1];
    int64_t ph = p->padding[0], pw = p->padding[1];
    bool incl = p->count_include_pad;
    bool fast = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && 2 * OH <= H &&
                2 * OW <= W;
    WH_TRY(wh_tensor_zeros(m->dtype, m->ndim, m->shape, &gin[0]));
#define AVGPOOL_BACK(T)                                                                      \
    do {                                                                                    \
        const T *G = wh_tensor_data(g);                                                     \
        T *D = wh_tensor_data(gin[0]);                                                      \
        _Pragma("omp parallel for if (planes * OH * OW * kh * kw > PARALLEL_MIN)")          \
        for (int64_t pl = 0; pl < planes; pl++) {                                           \
            T *dp = D + pl * H * W;                                                         \
            const T *gp = G + pl * OH * OW;                                                 \
            if (fast) {                                                                     \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    T *r0 = dp + 2 * oh * W, *r1 = r0 + W;                                  \
                    for (int64_t ow = 0; ow < OW; ow++) {                                   \
                        T v = gp[oh * OW + ow] * (T)0.25;                                   \
                        r0[2 * ow] = r0[2 * ow + 1] = r1[2 * ow] = r1[2 * ow + 1] = v;      \
                    }                                                                       \
                }                                                                           \
                continue;                                                                   \
            }                                                                               \
            for (int64_t oh = 0; oh < OH; oh++) {                                           \
                int64_t hs, he, hl;                                                         \
                avg_window(oh, sh, ph, kh, H, &hs, &he, &hl);                               \
                for (int64_t ow = 0; ow < OW; ow++) {                                       \
                    int64_t ws, we, wl;                                                     \
                    avg_window(ow, sw, pw, kw, W, &ws, &we, &wl);                           \
                    int64_t div = incl ? hl * wl : (he - hs) * (we - ws);                   \
                    if (div <= 0) continue;                                                 \
                    T v = gp[oh * OW + ow] / (T)div;                                        \
                    for (int64_t h = hs; h < he; h++)                                       \
                        for (int64_t w = ws; w < we; w++) dp[h * W + w] += v;               \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (m->dtype == WH_FLOAT32) AVGPOOL_BACK(float);
    else AVGPOOL_BACK(double);
#undef AVGPOOL_BACK
    return WH_OK;
}

wh_status wh_avg_pool2d(wh_tensor *x, const wh_pool_params *p, wh_tensor **out) {
    const char *op = "avg_pool2d";
    int64_t OH = 0, OW = 0;
    *out = NULL;
    WH_TRY(pool_setup(op, x, p, &OH, &OW));
    int64_t N = x->shape[0], C = x->shape[1];
    wh_tensor *xc = NULL, *y = NULL;
    int64_t shape[4] = {N, C, OH, OW};
    WH_TRY(wh_contig(x, &xc));
    wh_status st = wh_tensor_empty(x->dtype, 4, shape, x->storage->allocator, &y);
    const wh_backend *be = wh_backend_of(x);
    if (st == WH_OK && be) st = be->avg_pool2d(xc, p, y);
    else if (st == WH_OK) avg_pool_forward(xc, y, N * C, x->shape[2], x->shape[3], OH, OW, p);
    wh_tensor_release(xc);
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record(op, avg_pool_backward, 1, &x, y, &node);
    if (st == WH_OK && node) store_pool_params(node, p);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

/* ---- upsampling ------------------------------------------------------------------- */

/* Per output row and column: the source pixel (nearest), or the lower source
 * pixel, the step to the upper one and its weight (bilinear).  Built once per
 * call in scratch buffers, then shared read-only by the plane loops. */
typedef struct {
    int64_t *h0, *hstep, *w0, *wstep;
    double *hl, *wl;
} resample_table;

static wh_status resample_table_build(const char *op, int mode, bool align, int64_t H, int64_t W,
                                      int64_t OH, int64_t OW, resample_table *t) {
    t->h0 = wh_scratch(0, sizeof(int64_t) * (size_t)OH);
    t->w0 = wh_scratch(1, sizeof(int64_t) * (size_t)OW);
    t->hstep = wh_scratch(2, sizeof(int64_t) * (size_t)OH);
    t->wstep = wh_scratch(3, sizeof(int64_t) * (size_t)OW);
    t->hl = wh_scratch(4, sizeof(double) * (size_t)OH);
    t->wl = wh_scratch(5, sizeof(double) * (size_t)OW);
    if (!t->h0 || !t->w0 || !t->hstep || !t->wstep || !t->hl || !t->wl)
        return wh_fail(WH_ERR_MEMORY, "%s: out of memory for the index tables", op);
    for (int64_t o = 0; o < OH; o++) {
        if (mode == WH_UPSAMPLE_NEAREST) t->h0[o] = wh_nearest_source(o, H, OH);
        else wh_linear_split(wh_linear_source(o, H, OH, align), H, &t->h0[o], &t->hstep[o], &t->hl[o]);
    }
    for (int64_t o = 0; o < OW; o++) {
        if (mode == WH_UPSAMPLE_NEAREST) t->w0[o] = wh_nearest_source(o, W, OW);
        else wh_linear_split(wh_linear_source(o, W, OW, align), W, &t->w0[o], &t->wstep[o], &t->wl[o]);
    }
    return WH_OK;
}

static void upsample_forward(int mode, const resample_table *t, wh_tensor *xc, wh_tensor *y,
                             int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    bool twice = mode == WH_UPSAMPLE_NEAREST && OH == 2 * H && OW == 2 * W;
#define UPSAMPLE_FWD(T)                                                                      \
    do {                                                                                    \
        const T *X = wh_tensor_data(xc);                                                    \
        T *Y = wh_tensor_data(y);                                                           \
        _Pragma("omp parallel for if (planes * OH * OW > PARALLEL_MIN)")                    \
        for (int64_t pl = 0; pl < planes; pl++) {                                           \
            const T *xp = X + pl * H * W;                                                   \
            T *yp = Y + pl * OH * OW;                                                       \
            if (twice) {                                                                    \
                /* Keras' UpSampling2D((2,2)): each pixel becomes a 2x2 block. */           \
                for (int64_t h = 0; h < H; h++) {                                           \
                    T *r = yp + 2 * h * OW;                                                 \
                    const T *s = xp + h * W;                                                \
                    for (int64_t w = 0; w < W; w++) r[2 * w] = r[2 * w + 1] = s[w];         \
                    memcpy(r + OW, r, sizeof(T) * (size_t)OW);                              \
                }                                                                           \
            } else if (mode == WH_UPSAMPLE_NEAREST) {                                       \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    const T *s = xp + t->h0[oh] * W;                                        \
                    T *r = yp + oh * OW;                                                    \
                    for (int64_t ow = 0; ow < OW; ow++) r[ow] = s[t->w0[ow]];               \
                }                                                                           \
            } else {                                                                        \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    const T *s0 = xp + t->h0[oh] * W, *s1 = s0 + t->hstep[oh] * W;           \
                    T lh = (T)t->hl[oh], lh0 = (T)1 - lh;                                   \
                    T *r = yp + oh * OW;                                                    \
                    for (int64_t ow = 0; ow < OW; ow++) {                                   \
                        int64_t a = t->w0[ow], b = a + t->wstep[ow];                        \
                        T lw = (T)t->wl[ow], lw0 = (T)1 - lw;                               \
                        r[ow] = lh0 * (lw0 * s0[a] + lw * s0[b]) + lh * (lw0 * s1[a] + lw * s1[b]); \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (y->dtype == WH_FLOAT32) UPSAMPLE_FWD(float);
    else UPSAMPLE_FWD(double);
#undef UPSAMPLE_FWD
}

static wh_status upsample_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const char *op = n->name;
    const wh_meta *m = &n->input_meta[0];
    int mode = (int)n->iarg[0];
    bool align = n->iarg[1] != 0;
    int64_t planes = m->shape[0] * m->shape[1], H = m->shape[2], W = m->shape[3];
    int64_t OH = g->shape[2], OW = g->shape[3];
    bool twice = mode == WH_UPSAMPLE_NEAREST && OH == 2 * H && OW == 2 * W;
    const wh_backend *be = wh_backend_of(g);
    if (be) {
        WH_TRY(wh_tensor_empty(m->dtype, m->ndim, m->shape, g->storage->allocator, &gin[0]));
        return be->upsample2d_grad(g, mode, align, gin[0]);
    }
    resample_table t;
    WH_TRY(resample_table_build(op, mode, align, H, W, OH, OW, &t));
    WH_TRY(wh_tensor_zeros(m->dtype, m->ndim, m->shape, &gin[0]));
    const resample_table *tp = &t;
#define UPSAMPLE_BACK(T)                                                                     \
    do {                                                                                    \
        const T *G = wh_tensor_data(g);                                                     \
        T *D = wh_tensor_data(gin[0]);                                                      \
        _Pragma("omp parallel for if (planes * OH * OW > PARALLEL_MIN)")                    \
        for (int64_t pl = 0; pl < planes; pl++) {                                           \
            T *dp = D + pl * H * W;                                                         \
            const T *gp = G + pl * OH * OW;                                                 \
            if (twice) {                                                                    \
                for (int64_t h = 0; h < H; h++) {                                           \
                    const T *r0 = gp + 2 * h * OW, *r1 = r0 + OW;                           \
                    for (int64_t w = 0; w < W; w++)                                         \
                        dp[h * W + w] = r0[2 * w] + r0[2 * w + 1] + r1[2 * w] + r1[2 * w + 1]; \
                }                                                                           \
            } else if (mode == WH_UPSAMPLE_NEAREST) {                                       \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    T *d = dp + tp->h0[oh] * W;                                             \
                    const T *r = gp + oh * OW;                                              \
                    for (int64_t ow = 0; ow < OW; ow++) d[tp->w0[ow]] += r[ow];             \
                }                                                                           \
            } else {                                                                        \
                for (int64_t oh = 0; oh < OH; oh++) {                                       \
                    T *d0 = dp + tp->h0[oh] * W, *d1 = d0 + tp->hstep[oh] * W;              \
                    T lh = (T)tp->hl[oh], lh0 = (T)1 - lh;                                  \
                    const T *r = gp + oh * OW;                                              \
                    for (int64_t ow = 0; ow < OW; ow++) {                                   \
                        int64_t a = tp->w0[ow], b = a + tp->wstep[ow];                      \
                        T lw = (T)tp->wl[ow], lw0 = (T)1 - lw, v = r[ow];                   \
                        d0[a] += lh0 * lw0 * v;                                             \
                        d0[b] += lh0 * lw * v;                                              \
                        d1[a] += lh * lw0 * v;                                              \
                        d1[b] += lh * lw * v;                                               \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (m->dtype == WH_FLOAT32) UPSAMPLE_BACK(float);
    else UPSAMPLE_BACK(double);
#undef UPSAMPLE_BACK
    return WH_OK;
}

wh_status wh_upsample2d(wh_tensor *x, int64_t out_h, int64_t out_w, wh_upsample_mode mode,
                        bool align_corners, wh_tensor **out) {
    const char *op = mode == WH_UPSAMPLE_BILINEAR ? "upsample_bilinear2d" : "upsample_nearest2d";
    *out = NULL;
    if (mode != WH_UPSAMPLE_NEAREST && mode != WH_UPSAMPLE_BILINEAR)
        return wh_fail(WH_ERR_ARG, "upsample2d: unknown mode %d (nearest or bilinear)", (int)mode);
    WH_TRY(wh_check_float_dev(op, "input", x));
    WH_TRY(wh_check_ndim(op, "input", x, 4, "(N,C,H,W)"));
    char s[128];
    if (out_h < 1 || out_w < 1)
        return wh_fail(WH_ERR_ARG, "%s: output size %lldx%lld must be positive (input %s)", op,
                       (long long)out_h, (long long)out_w, wh_shape_str(x, s, sizeof s));
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return wh_fail(WH_ERR_SHAPE, "%s: input of shape %s has an empty plane", op,
                       wh_shape_str(x, s, sizeof s));
    if (mode == WH_UPSAMPLE_NEAREST && align_corners)
        return wh_fail(WH_ERR_ARG, "%s: align_corners only applies to bilinear mode", op);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const wh_backend *be = wh_backend_of(x);
    resample_table t;
    if (!be) WH_TRY(resample_table_build(op, mode, align_corners, H, W, out_h, out_w, &t));
    wh_tensor *xc = NULL, *y = NULL;
    int64_t shape[4] = {N, C, out_h, out_w};
    WH_TRY(wh_contig(x, &xc));
    wh_status st = wh_tensor_empty(x->dtype, 4, shape, x->storage->allocator, &y);
    if (st == WH_OK && be) st = be->upsample2d(xc, mode, align_corners, y);
    else if (st == WH_OK) upsample_forward(mode, &t, xc, y, N * C, H, W, out_h, out_w);
    wh_tensor_release(xc);
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record(op, upsample_backward, 1, &x, y, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = mode;
        node->iarg[1] = align_corners;
    }
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

/* ---- batch norm ---------------------------------------------------------------------- */

/* Reads/writes element c of a 1-d float tensor with any stride. */
static inline double vec_get(const wh_tensor *t, int64_t c) {
    if (!t) return 0;
    int64_t off = t->offset + c * t->stride[0];
    return t->dtype == WH_FLOAT32 ? ((const float *)t->storage->data)[off]
                                  : ((const double *)t->storage->data)[off];
}

static inline void vec_set(wh_tensor *t, int64_t c, double v) {
    int64_t off = t->offset + c * t->stride[0];
    if (t->dtype == WH_FLOAT32) ((float *)t->storage->data)[off] = (float)v;
    else ((double *)t->storage->data)[off] = v;
}

static wh_status check_channel_vec(const char *op, const char *arg, wh_tensor *v,
                                   const wh_tensor *x) {
    if (!v) return WH_OK;
    WH_TRY(wh_check_float_dev(op, arg, v));
    WH_TRY(wh_check_same_device(op, x, v));
    if (v->dtype != x->dtype)
        return wh_fail(WH_ERR_DTYPE, "%s: %s is %s but input is %s; convert one with t:float() "
                       "or t:double()", op, arg, wh_dtype_name(v->dtype), wh_dtype_name(x->dtype));
    if (v->ndim != 1 || v->shape[0] != x->shape[1]) {
        char a[128], b[128];
        return wh_fail(WH_ERR_SHAPE, "%s: %s must have shape [%lld] (one per channel of input "
                       "%s), got %s", op, arg, (long long)x->shape[1],
                       wh_shape_str(x, b, sizeof b), wh_shape_str(v, a, sizeof a));
    }
    return WH_OK;
}

/* Saved: 0 the contiguous input, 1 the per-channel mean and 2 the inverse
 * standard deviation (float64, whatever the input's dtype), 3 the weight
 * when there is one.  iarg[0]: training, iarg[1]: has weight. */
static wh_status batch_norm_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_tensor *x, *mean_t, *invstd_t, *weight = NULL;
    WH_TRY(wh_node_saved(n, 0, &x));
    WH_TRY(wh_node_saved(n, 1, &mean_t));
    WH_TRY(wh_node_saved(n, 2, &invstd_t));
    if (n->iarg[1]) WH_TRY(wh_node_saved(n, 3, &weight));
    bool training = n->iarg[0] != 0;
    const wh_backend *be = wh_backend_of(x);
    if (be) {
        /* The saved statistics are in x's dtype here (what cuDNN keeps). */
        int64_t C = x->shape[1];
        wh_status st = WH_OK;
        if (wh_node_needs_grad(n, 0)) st = wh_tensor_empty_like(x, &gin[0]);
        for (int i = 1; i < 3 && st == WH_OK; i++)
            if (wh_node_needs_grad(n, i))
                st = wh_tensor_empty(x->dtype, 1, &C, x->storage->allocator, &gin[i]);
        if (st == WH_OK)
            st = be->batch_norm_grad(x, weight, mean_t, invstd_t, training, n->farg[0], g,
                                     gin[0], gin[1], gin[2]);
        if (st != WH_OK)
            for (int i = 0; i < 3; i++) wh_tensor_clear(&gin[i]);
        return st;
    }
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    double M = (double)(N * S);
    const double *mean = wh_tensor_data(mean_t), *invstd = wh_tensor_data(invstd_t);
    bool need_x = wh_node_needs_grad(n, 0), need_w = wh_node_needs_grad(n, 1),
         need_b = wh_node_needs_grad(n, 2);
    wh_status st = WH_OK;
    if (need_x) st = wh_tensor_empty_like(x, &gin[0]);
    if (st == WH_OK && need_w) st = wh_tensor_empty(x->dtype, 1, &C, NULL, &gin[1]);
    if (st == WH_OK && need_b) st = wh_tensor_empty(x->dtype, 1, &C, NULL, &gin[2]);
    if (st != WH_OK) {
        for (int i = 0; i < 3; i++) wh_tensor_clear(&gin[i]);
        return st;
    }
    /* Per channel: sums of g and g*xhat, then dx.  Through the batch
     * statistics (training) dx = w*invstd*(g - mean(g) - xhat*mean(g*xhat)). */
#define BN_BACK(T)                                                                           \
    do {                                                                                    \
        const T *X = wh_tensor_data(x), *G = wh_tensor_data(g);                             \
        T *DX = need_x ? wh_tensor_data(gin[0]) : NULL;                                     \
        T *DW = need_w ? wh_tensor_data(gin[1]) : NULL;                                     \
        T *DB = need_b ? wh_tensor_data(gin[2]) : NULL;                                     \
        _Pragma("omp parallel for if (N * C * S > PARALLEL_MIN)")                           \
        for (int64_t c = 0; c < C; c++) {                                                   \
            double mu = mean[c], is = invstd[c], sg = 0, sgx = 0;                           \
            for (int64_t b = 0; b < N; b++) {                                               \
                const T *xp = X + (b * C + c) * S, *gp = G + (b * C + c) * S;               \
                for (int64_t i = 0; i < S; i++) {                                           \
                    sg += gp[i];                                                            \
                    sgx += gp[i] * (((double)xp[i] - mu) * is);                             \
                }                                                                           \
            }                                                                               \
            if (DW) DW[c] = (T)sgx;                                                         \
            if (DB) DB[c] = (T)sg;                                                          \
            if (!DX) continue;                                                              \
            double w = weight ? vec_get(weight, c) : 1.0, k = w * is;                       \
            double mg = training ? sg / M : 0, mgx = training ? sgx / M : 0;                \
            for (int64_t b = 0; b < N; b++) {                                               \
                const T *xp = X + (b * C + c) * S, *gp = G + (b * C + c) * S;               \
                T *dp = DX + (b * C + c) * S;                                               \
                for (int64_t i = 0; i < S; i++) {                                           \
                    double xh = ((double)xp[i] - mu) * is;                                  \
                    dp[i] = (T)(k * ((double)gp[i] - mg - xh * mgx));                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (x->dtype == WH_FLOAT32) BN_BACK(float);
    else BN_BACK(double);
#undef BN_BACK
    return WH_OK;
}

wh_status wh_batch_norm(wh_tensor *x, wh_tensor *weight, wh_tensor *bias,
                        wh_tensor *running_mean, wh_tensor *running_var, bool training,
                        double momentum, double eps, wh_tensor **out) {
    const char *op = "batch_norm";
    char s[128];
    *out = NULL;
    WH_TRY(wh_check_float_dev(op, "input", x));
    if (x->ndim != 2 && x->ndim != 4)
        return wh_fail(WH_ERR_SHAPE, "%s: input must be 2-d (N,C) or 4-d (N,C,H,W), got shape %s",
                       op, wh_shape_str(x, s, sizeof s));
    WH_TRY(check_channel_vec(op, "weight", weight, x));
    WH_TRY(check_channel_vec(op, "bias", bias, x));
    WH_TRY(check_channel_vec(op, "running_mean", running_mean, x));
    WH_TRY(check_channel_vec(op, "running_var", running_var, x));
    if (!(eps >= 0) || !isfinite(eps))
        return wh_fail(WH_ERR_ARG, "%s: eps must be a non-negative number, got %g", op, eps);
    if (!isfinite(momentum))
        return wh_fail(WH_ERR_ARG, "%s: momentum must be finite, got %g", op, momentum);
    if (!training && (!running_mean || !running_var))
        return wh_fail(WH_ERR_ARG, "%s: evaluation mode needs running_mean and running_var", op);
    if ((running_mean == NULL) != (running_var == NULL))
        return wh_fail(WH_ERR_ARG, "%s: give both running_mean and running_var, or neither", op);
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    int64_t M = N * S;
    if (training && M < 2)
        return wh_fail(WH_ERR_SHAPE, "%s: training needs more than one value per channel to "
                       "compute a variance, input of shape %s has %lld", op,
                       wh_shape_str(x, s, sizeof s), (long long)M);
    if (training && running_mean) {
        WH_TRY(wh_check_inplace("batch_norm (running_mean update)", running_mean));
        WH_TRY(wh_check_inplace("batch_norm (running_var update)", running_var));
    }

    wh_tensor *xc = NULL, *mean_t = NULL, *invstd_t = NULL, *y = NULL;
    const wh_backend *be = wh_backend_of(x);
    /* The statistics: float64 on the CPU, x's dtype on a device (cuDNN's). */
    wh_dtype stat_dtype = be ? x->dtype : WH_FLOAT64;
    wh_status st = wh_contig(x, &xc);
    if (st == WH_OK) st = wh_tensor_empty(stat_dtype, 1, &C, x->storage->allocator, &mean_t);
    if (st == WH_OK) st = wh_tensor_empty(stat_dtype, 1, &C, x->storage->allocator, &invstd_t);
    if (st == WH_OK) st = wh_tensor_empty_like(xc, &y);
    if (st != WH_OK) goto done;
    if (be) {
        st = be->batch_norm(xc, weight, bias, running_mean, running_var, training, momentum, eps,
                            y, mean_t, invstd_t);
        if (st != WH_OK) goto done;
        if (training && running_mean) {
            wh_tensor_bump_version(running_mean);
            wh_tensor_bump_version(running_var);
        }
        goto record;
    }
    double *mean = wh_tensor_data(mean_t), *invstd = wh_tensor_data(invstd_t);

    /* Statistics in double, two passes (mean, then squared deviations), so
     * float32 inputs with a large mean keep their variance. */
#define BN_STATS(T)                                                                          \
    do {                                                                                    \
        const T *X = wh_tensor_data(xc);                                                    \
        _Pragma("omp parallel for if (N * C * S > PARALLEL_MIN)")                           \
        for (int64_t c = 0; c < C; c++) {                                                   \
            double sum = 0, ss = 0;                                                         \
            for (int64_t b = 0; b < N; b++) {                                               \
                const T *xp = X + (b * C + c) * S;                                          \
                for (int64_t i = 0; i < S; i++) sum += xp[i];                               \
            }                                                                               \
            double mu = sum / (double)M;                                                    \
            for (int64_t b = 0; b < N; b++) {                                               \
                const T *xp = X + (b * C + c) * S;                                          \
                for (int64_t i = 0; i < S; i++) {                                           \
                    double d = (double)xp[i] - mu;                                          \
                    ss += d * d;                                                            \
                }                                                                           \
            }                                                                               \
            mean[c] = mu;                                                                   \
            invstd[c] = ss / (double)M; /* biased variance; inverted below */               \
        }                                                                                   \
    } while (0)
    if (training) {
        if (x->dtype == WH_FLOAT32) BN_STATS(float);
        else BN_STATS(double);
        for (int64_t c = 0; c < C; c++) {
            double var = invstd[c];
            if (running_mean) {
                vec_set(running_mean, c, (1 - momentum) * vec_get(running_mean, c) + momentum * mean[c]);
                vec_set(running_var, c, (1 - momentum) * vec_get(running_var, c) +
                                            momentum * var * (double)M / (double)(M - 1));
            }
            invstd[c] = 1.0 / sqrt(var + eps);
        }
        if (running_mean) {
            wh_tensor_bump_version(running_mean);
            wh_tensor_bump_version(running_var);
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = vec_get(running_mean, c);
            invstd[c] = 1.0 / sqrt(vec_get(running_var, c) + eps);
        }
    }
#undef BN_STATS

    /* y = x*a + b per channel, with a = w*invstd and b = bias - mean*a. */
#define BN_APPLY(T)                                                                          \
    do {                                                                                    \
        const T *X = wh_tensor_data(xc);                                                    \
        T *Y = wh_tensor_data(y);                                                           \
        _Pragma("omp parallel for collapse(2) if (N * C * S > PARALLEL_MIN)")               \
        for (int64_t b = 0; b < N; b++)                                                     \
            for (int64_t c = 0; c < C; c++) {                                               \
                double a = (weight ? vec_get(weight, c) : 1.0) * invstd[c];                 \
                double sh = (bias ? vec_get(bias, c) : 0.0) - mean[c] * a;                  \
                const T *xp = X + (b * C + c) * S;                                          \
                T *yp = Y + (b * C + c) * S;                                                \
                for (int64_t i = 0; i < S; i++) yp[i] = (T)((double)xp[i] * a + sh);        \
            }                                                                               \
    } while (0)
    if (x->dtype == WH_FLOAT32) BN_APPLY(float);
    else BN_APPLY(double);
#undef BN_APPLY

record:;
    wh_tensor *inputs[3] = {x, weight, bias};
    wh_node *node;
    st = wh_record(op, batch_norm_backward, 3, inputs, y, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = training;
        node->iarg[1] = weight != NULL;
        node->farg[0] = eps;
        if ((st = wh_node_save(node, xc)) == WH_OK && (st = wh_node_save(node, mean_t)) == WH_OK &&
            (st = wh_node_save(node, invstd_t)) == WH_OK && weight)
            st = wh_node_save(node, weight);
    }
done:
    wh_tensor_release(xc);
    wh_tensor_release(mean_t);
    wh_tensor_release(invstd_t);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

/* ---- dropout ------------------------------------------------------------------------ */

/* Saved: the mask, already scaled (0 or 1/(1-p)), so backward is g*mask. */
static wh_status dropout_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_tensor *mask;
    WH_TRY(wh_node_saved(n, 0, &mask));
    WH_TRY(wh_tensor_empty_like(mask, &gin[0]));
    const wh_backend *be = wh_backend_of(mask);
    if (be) return be->binary(WH_BIN_MUL, g, mask, gin[0]);
    int64_t cnt = wh_tensor_numel(mask);
#define DROPOUT_BACK(T)                                                                      \
    do {                                                                                    \
        const T *K = wh_tensor_data(mask), *G = wh_tensor_data(g);                          \
        T *D = wh_tensor_data(gin[0]);                                                      \
        _Pragma("omp parallel for simd if (cnt > PARALLEL_MIN)")                            \
        for (int64_t i = 0; i < cnt; i++) D[i] = G[i] * K[i];                               \
    } while (0)
    if (mask->dtype == WH_FLOAT32) DROPOUT_BACK(float);
    else DROPOUT_BACK(double);
#undef DROPOUT_BACK
    return WH_OK;
}

wh_status wh_dropout(wh_tensor *x, double p, bool training, wh_tensor **out) {
    const char *op = "dropout";
    *out = NULL;
    WH_TRY(wh_check_float_dev(op, "input", x));
    if (!(p >= 0 && p < 1))
        return wh_fail(WH_ERR_ARG, "%s: probability p must be in [0, 1), got %g", op, p);
    if (!training || p == 0) {
        /* The input itself, as PyTorch returns it: its history carries the gradient. */
        wh_tensor_retain(x);
        *out = x;
        return WH_OK;
    }
    wh_tensor *xc = NULL, *mask = NULL, *y = NULL;
    wh_status st = wh_contig(x, &xc);
    if (st == WH_OK) st = wh_tensor_empty_like(xc, &mask);
    if (st == WH_OK) st = wh_tensor_empty_like(xc, &y);
    if (st != WH_OK) goto done;
    int64_t cnt = wh_tensor_numel(xc);
    double scale = 1.0 / (1.0 - p);
    const wh_backend *be = wh_backend_of(x);
    if (be) {
        /* The mask is drawn on the host from the same generator, so a seed
         * gives the same mask on every device, and uploaded. */
        wh_tensor *hmask = NULL;
        st = wh_tensor_empty(x->dtype, x->ndim, x->shape, NULL, &hmask);
        if (st == WH_OK) {
            if (x->dtype == WH_FLOAT32) {
                float *K = wh_tensor_data(hmask), sc = (float)scale;
                for (int64_t i = 0; i < cnt; i++) K[i] = wh_rng_uniform() >= p ? sc : 0.0f;
            } else {
                double *K = wh_tensor_data(hmask);
                for (int64_t i = 0; i < cnt; i++) K[i] = wh_rng_uniform() >= p ? scale : 0.0;
            }
            st = wh_copy_into(mask, hmask);
        }
        wh_tensor_release(hmask);
        if (st == WH_OK) st = be->binary(WH_BIN_MUL, xc, mask, y);
        if (st != WH_OK) goto done;
        goto record;
    }
    /* The mask is drawn serially in element order so that a seed gives the
     * same mask whatever the thread count. */
#define DROPOUT_FWD(T)                                                                       \
    do {                                                                                    \
        const T *X = wh_tensor_data(xc);                                                    \
        T *K = wh_tensor_data(mask), *Y = wh_tensor_data(y), sc = (T)scale;                 \
        for (int64_t i = 0; i < cnt; i++) K[i] = wh_rng_uniform() >= p ? sc : (T)0;         \
        _Pragma("omp parallel for simd if (cnt > PARALLEL_MIN)")                            \
        for (int64_t i = 0; i < cnt; i++) Y[i] = X[i] * K[i];                               \
    } while (0)
    if (x->dtype == WH_FLOAT32) DROPOUT_FWD(float);
    else DROPOUT_FWD(double);
#undef DROPOUT_FWD
record:;
    wh_node *node;
    st = wh_record(op, dropout_backward, 1, &x, y, &node);
    if (st == WH_OK && node) st = wh_node_save(node, mask);
done:
    wh_tensor_release(xc);
    wh_tensor_release(mask);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}
