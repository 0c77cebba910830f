/* A fake "cuda:0" for machines without a GPU (the Lua module fake_device,
 * used by tests/device_dispatch_spec.lua): a wh_backend whose memory is
 * host memory and whose kernels run the CPU ops on views of it.  Installed
 * in place of the CUDA backend, it sends every op down its device path in
 * the ops layer (allocation on the inputs' device, the backend calls, the
 * device branches of the backward functions, devbufs, host copies), so the
 * GPU spec's comparisons (tests/helpers/device_suite.lua) run on CI and
 * check the dispatch; the CUDA kernels themselves need a real device.
 *
 * Built as a shared object with the core's symbols left undefined: the
 * spec loads whorl.core with RTLD_GLOBAL first, so there is one core. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels/conv2d.h"
#include "kernels/elementwise_math.h"
#include "kernels/pool_math.h"
#include "kernels/strided_math.h"
#include "kernels/xent_math.h"

/* ---- memory ------------------------------------------------------------------------------- */

static void *fake_alloc(wh_allocator *self, size_t n) { return malloc(n ? n : 1); }
static void fake_free(wh_allocator *self, void *p, size_t n) { free(p); }
static wh_status fake_copy_hook(wh_allocator *self, void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    return WH_OK;
}

static wh_allocator fake_allocator = {
    .name = "cuda:0", .device = {WH_CUDA, 0}, .alloc = fake_alloc, .free = fake_free,
    .copy_to_host = fake_copy_hook, .copy_from_host = fake_copy_hook,
};

/* A CPU tensor over the same memory as t (a "device" tensor).  Its
 * storage carries an extra reference, so releasing the view never frees
 * the memory (the header is left behind: this is a test). */
static wh_tensor *hv(const wh_tensor *t) {
    if (!t) return NULL;
    wh_storage *s = calloc(1, sizeof *s);
    wh_tensor *h = calloc(1, sizeof *h);
    s->refcount = 2;
    s->data = t->storage->data;
    s->allocator = wh_cpu_allocator();
    h->refcount = 1;
    h->dtype = t->dtype;
    h->ndim = t->ndim;
    memcpy(h->shape, t->shape, sizeof h->shape);
    memcpy(h->stride, t->stride, sizeof h->stride);
    h->offset = t->offset;
    h->storage = s;
    return h;
}

/* dst (a device tensor) <- src (a CPU one); releases src. */
static wh_status put(wh_tensor *dst, wh_tensor *src) {
    wh_tensor *d = hv(dst);
    wh_status st = wh_copy_into(d, src);
    wh_tensor_release(d);
    wh_tensor_release(src);
    return st;
}

/* A CPU leaf (requires grad) holding a copy of t, expanded to shape when ndim >= 0. */
static wh_tensor *leaf(const wh_tensor *t, int ndim, const int64_t *shape) {
    wh_tensor *v = hv(t), *e = NULL, *c = NULL;
    if (ndim >= 0) wh_expand_raw(v, ndim, shape, &e);
    wh_contiguous_raw(e ? e : v, true, &c);
    wh_tensor_release(v);
    wh_tensor_release(e);
    c->requires_grad = true;
    return c;
}

static wh_status grads(wh_tensor *y, wh_tensor *g, int n, wh_tensor **leaves, wh_tensor **out) {
    wh_tensor *gh = hv(g);
    wh_status st = wh_autograd_grad(1, &y, &gh, n, leaves, false, out);
    wh_tensor_release(gh);
    return st;
}

#define TRY_OR(st, expr)                                                                   \
    do {                                                                                   \
        if ((st) == WH_OK) (st) = (expr);                                                  \
    } while (0)

static int fake_count(void) { return 1; }
static wh_allocator *fake_alloc_of(int i) { return &fake_allocator; }
static int fake_current(void) { return 0; }
static wh_status fake_set_device(int i) { return WH_OK; }
static wh_status fake_sync(int i) { return WH_OK; }
static const char *fake_name(int i, char *buf, size_t n) {
    strncpy(buf, "fake device (host memory)", n);
    buf[n - 1] = 0;
    return buf;
}
static const char *fake_versions(char *buf, size_t n) { return fake_name(0, buf, n); }
static void fake_empty_cache(void) {}
static void fake_stats(int i, wh_device_memory_stats *s) { memset(s, 0, sizeof *s); }
static int fake_set_option(const char *name, int v) { return 0; }
static int fake_get_option(const char *name) { return 0; }

static wh_status k_copy(wh_tensor *dst, const wh_tensor *src) {
    wh_tensor *d = hv(dst), *s = hv(src);
    wh_status st = wh_copy_into(d, s);
    wh_tensor_release(d);
    wh_tensor_release(s);
    return st;
}

static wh_status k_fill(wh_tensor *t, double v) {
    wh_tensor *h = hv(t);
    wh_status st = wh_fill(h, v);
    wh_tensor_release(h);
    return st;
}

/* ---- elementwise ----------------------------------------------------------------------------------- */

static wh_status k_binary(int mop, const wh_tensor *a, const wh_tensor *b, wh_tensor *out) {
    wh_tensor *ha = hv(a), *hb = hv(b), *r = NULL;
    wh_status st = wh_binary((wh_binary_op)mop, ha, hb, &r);
    TRY_OR(st, put(out, r));
    wh_tensor_release(ha);
    wh_tensor_release(hb);
    return st;
}

static wh_status k_binary_grad(int mop, const wh_tensor *a, const wh_tensor *b, const wh_tensor *out,
                               const wh_tensor *g, wh_tensor *ga, wh_tensor *gb) {
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l[2] = {leaf(a, out->ndim, out->shape), leaf(b, out->ndim, out->shape)};
    wh_tensor *y = NULL, *gr[2] = {NULL, NULL};
    wh_status st = wh_binary((wh_binary_op)mop, l[0], l[1], &y);
    TRY_OR(st, grads(y, (wh_tensor *)g, 2, l, gr));
    if (ga) TRY_OR(st, put(ga, gr[0]));
    else wh_tensor_release(gr[0]);
    if (gb) TRY_OR(st, put(gb, gr[1]));
    else wh_tensor_release(gr[1]);
    wh_set_grad_enabled(mode);
    wh_tensor_release(y);
    wh_tensor_release(l[0]);
    wh_tensor_release(l[1]);
    return st;
}

static wh_status unary_op(int mop, wh_tensor *x, double p0, double p1, wh_tensor **out) {
    switch (mop) {
    case WH_MATH_LEAKY_RELU: return wh_leaky_relu(x, p0, out);
    case WH_MATH_CLAMP: return wh_clamp(x, p0, p1, out);
    case WH_MATH_AFFINE: return wh_affine(x, p0, p1, out);
    case WH_MATH_POW_SCALAR: return wh_pow_scalar(x, p0, out);
    case WH_MATH_RSUB: return wh_rsub_scalar(x, p0, out);
    case WH_MATH_RDIV: return wh_rdiv_scalar(x, p0, out);
    default: return wh_unary((wh_unary_op)mop, x, out);
    }
}

static wh_status k_unary(int mop, const wh_tensor *x, wh_tensor *y, double p0, double p1) {
    wh_tensor *h = hv(x), *r = NULL;
    wh_status st = unary_op(mop, h, p0, p1, &r);
    TRY_OR(st, put(y, r));
    wh_tensor_release(h);
    return st;
}

static wh_status k_unary_grad(int mop, const wh_tensor *x, const wh_tensor *y, const wh_tensor *g,
                              wh_tensor *gx, double p0, double p1) {
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l = leaf(x, -1, NULL), *r = NULL, *gr = NULL;
    wh_status st = unary_op(mop, l, p0, p1, &r);
    TRY_OR(st, grads(r, (wh_tensor *)g, 1, &l, &gr));
    TRY_OR(st, put(gx, gr));
    wh_set_grad_enabled(mode);
    wh_tensor_release(r);
    wh_tensor_release(l);
    return st;
}

static wh_status k_update(int kind, wh_tensor *x, const wh_tensor *a, const wh_tensor *b, double v) {
    wh_tensor *hx = hv(x), *ha = hv(a), *hb = hv(b);
    wh_status st;
    switch (kind) {
    case WH_UPDATE_AXPY: st = wh_add_(hx, ha, v); break;
    case WH_UPDATE_MUL: st = wh_mul_(hx, ha); break;
    case WH_UPDATE_ADDCMUL: st = wh_addcmul_(hx, ha, hb, v); break;
    case WH_UPDATE_ADDCDIV: st = wh_addcdiv_(hx, ha, hb, v); break;
    default: st = wh_copy_(hx, ha); break;
    }
    wh_tensor_release(hx);
    wh_tensor_release(ha);
    wh_tensor_release(hb);
    return st;
}

/* ---- reductions --------------------------------------------------------------------------------------- */

static wh_status k_sum(const wh_tensor *x, const bool *mask, double scale, wh_tensor *out) {
    int dims[WH_MAX_DIMS], n = 0;
    for (int d = 0; d < x->ndim; d++)
        if (mask[d]) dims[n++] = d;
    wh_tensor *h = hv(x), *r = NULL;
    wh_status st = n ? wh_sum(h, n, dims, false, &r) : wh_contiguous_raw(h, true, &r);
    if (st == WH_OK && scale != 1) st = wh_affine_(r, scale, 0);
    wh_tensor *shaped = NULL; /* the kernel's output may keep the reduced dims */
    TRY_OR(st, wh_view_raw(r, out->ndim, out->shape, &shaped));
    wh_tensor_release(r);
    TRY_OR(st, put(out, shaped));
    wh_tensor_release(h);
    return st;
}

static wh_status k_max(const wh_tensor *x, const bool *mask, wh_tensor *out, int64_t *arg) {
    int m[WH_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) m[d] = mask[d];
    wh_reduce_layout r;
    wh_reduce_layout_init(&r, x->ndim, x->shape, x->stride, m);
    for (int64_t q = 0; q < r.outputs; q++) {
        int64_t base = wh_strided_offset(q, r.kept_ndim, r.kept_shape, r.kept_stride), bi = base;
        for (int64_t j = 1; j < r.count; j++) {
            int64_t o = base + wh_strided_offset(j, r.red_ndim, r.red_shape, r.red_stride);
            bool takes = x->dtype == WH_FLOAT32
                             ? wh_max_takes_f32(((float *)wh_tensor_data(x))[o], o,
                                                ((float *)wh_tensor_data(x))[bi], bi)
                             : wh_max_takes_f64(((double *)wh_tensor_data(x))[o], o,
                                                ((double *)wh_tensor_data(x))[bi], bi);
            if (takes) bi = o;
        }
        arg[q] = bi;
        if (x->dtype == WH_FLOAT32) ((float *)wh_tensor_data(out))[q] = ((float *)wh_tensor_data(x))[bi];
        else ((double *)wh_tensor_data(out))[q] = ((double *)wh_tensor_data(x))[bi];
    }
    return WH_OK;
}

static wh_status k_scatter(wh_tensor *dst, const int64_t *index, const wh_tensor *src) {
    size_t es = wh_dtype_size(dst->dtype);
    for (int64_t q = 0; q < wh_tensor_numel(src); q++)
        memcpy((char *)wh_tensor_data(dst) + index[q] * (int64_t)es,
               (char *)wh_tensor_data(src) + q * (int64_t)es, es);
    return WH_OK;
}

static wh_status k_arg_index(const int64_t *arg, int64_t div, int64_t size, wh_tensor *out) {
    double *o = wh_tensor_data(out);
    for (int64_t q = 0; q < wh_tensor_numel(out); q++)
        o[q] = size ? (double)((arg[q] / div) % size) : (double)arg[q];
    return WH_OK;
}

static wh_status k_softmax(const wh_tensor *x, int dim, bool log_mode, wh_tensor *y) {
    wh_tensor *h = hv(x), *r = NULL;
    wh_status st = log_mode ? wh_log_softmax(h, dim, &r) : wh_softmax(h, dim, &r);
    TRY_OR(st, put(y, r));
    wh_tensor_release(h);
    return st;
}

/* From y alone: softmax's input is log(y) up to a constant, log_softmax's is y. */
static wh_status k_softmax_grad(const wh_tensor *y, const wh_tensor *g, int dim, bool log_mode,
                                wh_tensor *gx) {
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l = leaf(y, -1, NULL), *in = NULL, *r = NULL, *gr = NULL;
    wh_status st = WH_OK;
    if (log_mode) {
        wh_tensor_retain(l);
        in = l;
    } else {
        bool m2 = wh_set_grad_enabled(false);
        st = wh_unary(WH_UN_LOG, l, &in);
        wh_set_grad_enabled(m2);
        if (in) in->requires_grad = true;
    }
    TRY_OR(st, log_mode ? wh_log_softmax(in, dim, &r) : wh_softmax(in, dim, &r));
    TRY_OR(st, grads(r, (wh_tensor *)g, 1, &in, &gr));
    TRY_OR(st, put(gx, gr));
    wh_set_grad_enabled(mode);
    wh_tensor_release(in);
    wh_tensor_release(r);
    wh_tensor_release(l);
    return st;
}

static wh_status k_sum_squares(const wh_tensor *x, double *result) {
    wh_tensor *h = hv(x);
    wh_status st = wh_sum_squares(h, result);
    wh_tensor_release(h);
    return st;
}

/* ---- shape, linear algebra ---------------------------------------------------------------------------- */

static wh_pad_geom pad_geom(const wh_tensor *in, const int64_t *out_shape, const int64_t *before,
                            int mode) {
    wh_pad_geom p;
    memset(&p, 0, sizeof p);
    p.ndim = in->ndim;
    p.mode = mode;
    p.in_offset = in->offset;
    for (int k = 0; k < in->ndim; k++) {
        p.out_shape[k] = out_shape[k];
        p.in_shape[k] = in->shape[k];
        p.in_stride[k] = in->stride[k];
        p.before[k] = before[k];
    }
    return p;
}

static wh_status k_pad(const wh_tensor *x, const int64_t *before, int mode, double value,
                       wh_tensor *y) {
    wh_pad_geom p = pad_geom(x, y->shape, before, mode);
    size_t es = wh_dtype_size(x->dtype);
    wh_tensor *fill = NULL;
    WH_TRY(wh_tensor_full(x->dtype, 0, NULL, value, &fill));
    for (int64_t i = 0; i < wh_tensor_numel(y); i++) {
        int64_t s = wh_pad_source_offset(&p, i);
        const char *src = s < 0 ? (const char *)wh_tensor_data(fill)
                                : (const char *)x->storage->data + s * (int64_t)es;
        memcpy((char *)wh_tensor_data(y) + i * (int64_t)es, src, es);
    }
    wh_tensor_release(fill);
    return WH_OK;
}

static wh_status k_pad_grad(const wh_tensor *g, const int64_t *before, int mode, wh_tensor *gx) {
    WH_TRY(k_fill(gx, 0));
    wh_pad_geom p = pad_geom(gx, g->shape, before, mode);
    for (int64_t i = 0; i < wh_tensor_numel(g); i++) {
        int64_t s = wh_pad_source_offset(&p, i);
        if (s < 0) continue;
        if (g->dtype == WH_FLOAT32)
            ((float *)gx->storage->data)[s] += ((const float *)wh_tensor_data(g))[i];
        else
            ((double *)gx->storage->data)[s] += ((const double *)wh_tensor_data(g))[i];
    }
    return WH_OK;
}

static wh_status k_gemm(int device, wh_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                        const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
                        void *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) {
                int64_t ai = ta ? l * lda + i : i * lda + l, bi = tb ? j * ldb + l : l * ldb + j;
                s += dt == WH_FLOAT32 ? (double)((const float *)a)[ai] * ((const float *)b)[bi]
                                      : ((const double *)a)[ai] * ((const double *)b)[bi];
            }
            if (dt == WH_FLOAT32) {
                float *cp = (float *)c + i * ldc + j;
                *cp = (float)(s + (beta != 0 ? beta * *cp : 0));
            } else {
                double *cp = (double *)c + i * ldc + j;
                *cp = s + (beta != 0 ? beta * *cp : 0);
            }
        }
    return WH_OK;
}

/* ---- convolution --------------------------------------------------------------------------------------- */

static wh_status conv_op(const wh_conv_params *p, bool transposed, wh_tensor *x, wh_tensor *w,
                         wh_tensor *b, wh_tensor **out) {
    return transposed ? wh_conv_transpose2d(x, w, b, p, out) : wh_conv2d(x, w, b, p, out);
}

static wh_status k_conv2d(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                          const wh_tensor *w, const wh_tensor *b, wh_tensor *y) {
    wh_tensor *hx = hv(x), *hw = hv(w), *hb = hv(b), *r = NULL;
    wh_status st = conv_op(p, transposed, hx, hw, hb, &r);
    TRY_OR(st, put(y, r));
    wh_tensor_release(hx);
    wh_tensor_release(hw);
    wh_tensor_release(hb);
    return st;
}

/* The pre-activation gradient from y (as cuDNN's activation backward),
 * then the gradients of the plain convolution with a zero bias. */
static wh_status k_conv2d_grad(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                               const wh_tensor *w, const wh_tensor *y, const wh_tensor *g,
                               wh_tensor *gx, wh_tensor *gw, wh_tensor *gb) {
    wh_tensor *gpre = NULL;
    wh_tensor *hg = hv(g);
    WH_TRY(wh_contiguous_raw(hg, true, &gpre));
    wh_tensor_release(hg);
    if (p->activation != WH_ACT_NONE) {
        int64_t n = wh_tensor_numel(gpre);
        for (int64_t i = 0; i < n; i++) {
            double yv = y->dtype == WH_FLOAT32 ? ((float *)wh_tensor_data(y))[i]
                                               : ((double *)wh_tensor_data(y))[i];
            double f = p->activation == WH_ACT_RELU ? (yv > 0) : yv * (1 - yv);
            if (gpre->dtype == WH_FLOAT32) ((float *)wh_tensor_data(gpre))[i] *= (float)f;
            else ((double *)wh_tensor_data(gpre))[i] *= f;
        }
    }
    wh_conv_params plain = *p;
    plain.activation = WH_ACT_NONE;
    int64_t cout = transposed ? w->shape[1] : w->shape[0];
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l[3] = {leaf(x, -1, NULL), leaf(w, -1, NULL), NULL}, *r = NULL, *gr[3] = {0};
    wh_status st = wh_tensor_zeros(x->dtype, 1, &cout, &l[2]);
    if (l[2]) l[2]->requires_grad = true;
    TRY_OR(st, conv_op(&plain, transposed, l[0], l[1], l[2], &r));
    TRY_OR(st, wh_autograd_grad(1, &r, &gpre, 3, l, false, gr));
    wh_tensor *outs[3] = {gx, gw, gb};
    for (int i = 0; i < 3; i++) {
        if (outs[i]) TRY_OR(st, put(outs[i], gr[i]));
        else wh_tensor_release(gr[i]);
    }
    wh_set_grad_enabled(mode);
    wh_tensor_release(r);
    wh_tensor_release(gpre);
    for (int i = 0; i < 3; i++) wh_tensor_release(l[i]);
    return st;
}

/* ---- pooling, upsampling, batch norm -------------------------------------------------------------- */

static wh_pool_geom geom(const wh_tensor *in, const wh_tensor *out, const wh_pool_params *p) {
    wh_pool_geom g = {in->shape[2], in->shape[3], out->shape[2], out->shape[3], p->kernel[0],
                      p->kernel[1], p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                      p->count_include_pad};
    return g;
}

#define PLANE_LOOP(t, body)                                                                     \
    for (int64_t i = 0; i < wh_tensor_numel(t); i++) {                                         \
        int64_t c1 = i % (t)->shape[3], c0 = (i / (t)->shape[3]) % (t)->shape[2];              \
        int64_t pl = i / ((t)->shape[2] * (t)->shape[3]);                                      \
        body;                                                                                  \
    }

static wh_status k_max_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y,
                              int32_t *idx) {
    wh_pool_geom g = geom(x, y, p);
    int32_t b;
    if (x->dtype == WH_FLOAT32) {
        PLANE_LOOP(y, ((float *)wh_tensor_data(y))[i] = wh_max_pool_at_f32(
                          &g, (float *)wh_tensor_data(x) + pl * g.H * g.W, c0, c1, &b);
                   if (idx) idx[i] = b)
    } else {
        PLANE_LOOP(y, ((double *)wh_tensor_data(y))[i] = wh_max_pool_at_f64(
                          &g, (double *)wh_tensor_data(x) + pl * g.H * g.W, c0, c1, &b);
                   if (idx) idx[i] = b)
    }
    return WH_OK;
}

static wh_status k_max_pool2d_grad(const wh_tensor *gy, const int32_t *idx, const wh_pool_params *p,
                                   wh_tensor *gx) {
    wh_pool_geom g = geom(gx, gy, p);
    int64_t ohw = g.OH * g.OW;
    if (gx->dtype == WH_FLOAT32) {
        PLANE_LOOP(gx, ((float *)wh_tensor_data(gx))[i] = wh_max_pool_grad_at_f32(
                           &g, (float *)wh_tensor_data(gy) + pl * ohw, idx + pl * ohw, c0, c1))
    } else {
        PLANE_LOOP(gx, ((double *)wh_tensor_data(gx))[i] = wh_max_pool_grad_at_f64(
                           &g, (double *)wh_tensor_data(gy) + pl * ohw, idx + pl * ohw, c0, c1))
    }
    return WH_OK;
}

static wh_status k_avg_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y) {
    wh_pool_geom g = geom(x, y, p);
    if (x->dtype == WH_FLOAT32) {
        PLANE_LOOP(y, ((float *)wh_tensor_data(y))[i] = wh_avg_pool_at_f32(
                          &g, (float *)wh_tensor_data(x) + pl * g.H * g.W, c0, c1))
    } else {
        PLANE_LOOP(y, ((double *)wh_tensor_data(y))[i] = wh_avg_pool_at_f64(
                          &g, (double *)wh_tensor_data(x) + pl * g.H * g.W, c0, c1))
    }
    return WH_OK;
}

static wh_status k_avg_pool2d_grad(const wh_tensor *gy, const wh_pool_params *p, wh_tensor *gx) {
    wh_pool_geom g = geom(gx, gy, p);
    int64_t ohw = g.OH * g.OW;
    if (gx->dtype == WH_FLOAT32) {
        PLANE_LOOP(gx, ((float *)wh_tensor_data(gx))[i] = wh_avg_pool_grad_at_f32(
                           &g, (float *)wh_tensor_data(gy) + pl * ohw, c0, c1))
    } else {
        PLANE_LOOP(gx, ((double *)wh_tensor_data(gx))[i] = wh_avg_pool_grad_at_f64(
                           &g, (double *)wh_tensor_data(gy) + pl * ohw, c0, c1))
    }
    return WH_OK;
}

static wh_status k_upsample2d(const wh_tensor *x, int mode, bool align, wh_tensor *y) {
    int64_t H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    if (x->dtype == WH_FLOAT32) {
        PLANE_LOOP(y, ((float *)wh_tensor_data(y))[i] = wh_upsample_at_f32(
                          mode, align, (float *)wh_tensor_data(x) + pl * H * W, H, W, OH, OW, c0, c1))
    } else {
        PLANE_LOOP(y, ((double *)wh_tensor_data(y))[i] = wh_upsample_at_f64(
                          mode, align, (double *)wh_tensor_data(x) + pl * H * W, H, W, OH, OW, c0, c1))
    }
    return WH_OK;
}

static wh_status k_upsample2d_grad(const wh_tensor *gy, int mode, bool align, wh_tensor *gx) {
    int64_t H = gx->shape[2], W = gx->shape[3], OH = gy->shape[2], OW = gy->shape[3];
    int64_t *r = malloc(sizeof(int64_t) * (size_t)(2 * H + 2 * W));
    wh_resample_readers(mode, align, H, OH, r, r + H);
    wh_resample_readers(mode, align, W, OW, r + 2 * H, r + 2 * H + W);
    if (gx->dtype == WH_FLOAT32) {
        PLANE_LOOP(gx, ((float *)wh_tensor_data(gx))[i] = wh_upsample_grad_at_f32(
                           mode, align, (float *)wh_tensor_data(gy) + pl * OH * OW, H, W, OH, OW, r,
                           r + H, r + 2 * H, r + 2 * H + W, c0, c1))
    } else {
        PLANE_LOOP(gx, ((double *)wh_tensor_data(gx))[i] = wh_upsample_grad_at_f64(
                           mode, align, (double *)wh_tensor_data(gy) + pl * OH * OW, H, W, OH, OW,
                           r, r + H, r + 2 * H, r + 2 * H + W, c0, c1))
    }
    free(r);
    return WH_OK;
}

static double vget(const wh_tensor *t, int64_t c) {
    int64_t o = t->offset + c * t->stride[0];
    return t->dtype == WH_FLOAT32 ? ((float *)t->storage->data)[o] : ((double *)t->storage->data)[o];
}

static void vset(wh_tensor *t, int64_t c, double v) {
    if (t->dtype == WH_FLOAT32) ((float *)wh_tensor_data(t))[c] = (float)v;
    else ((double *)wh_tensor_data(t))[c] = v;
}

static wh_status k_batch_norm(const wh_tensor *x, const wh_tensor *weight, const wh_tensor *bias,
                              wh_tensor *rm, wh_tensor *rv, bool training, double momentum, double eps,
                              wh_tensor *y, wh_tensor *save_mean, wh_tensor *save_invstd) {
    int64_t N = x->shape[0], C = x->shape[1], S = wh_tensor_numel(x) / (N * C);
    for (int64_t c = 0; c < C; c++) {
        double mu, var;
        if (training) {
            double s = 0, ss = 0;
            for (int64_t b = 0; b < N; b++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t e = (b * C + c) * S + i;
                    s += x->dtype == WH_FLOAT32 ? ((float *)wh_tensor_data(x))[e] : ((double *)wh_tensor_data(x))[e];
                }
            mu = s / (double)(N * S);
            for (int64_t b = 0; b < N; b++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t e = (b * C + c) * S + i;
                    double d = (x->dtype == WH_FLOAT32 ? ((float *)wh_tensor_data(x))[e]
                                                       : ((double *)wh_tensor_data(x))[e]) - mu;
                    ss += d * d;
                }
            var = ss / (double)(N * S);
        } else {
            mu = vget(rm, c);
            var = vget(rv, c);
        }
        vset(save_mean, c, mu);
        vset(save_invstd, c, 1.0 / sqrt(var + eps));
    }
    wh_tensor *hx = hv(x), *hw = hv(weight), *hb = hv(bias), *hm = hv(rm), *hvv = hv(rv), *r = NULL;
    wh_status st = wh_batch_norm(hx, hw, hb, hm, hvv, training, momentum, eps, &r);
    TRY_OR(st, put(y, r));
    wh_tensor *ts[5] = {hx, hw, hb, hm, hvv};
    for (int i = 0; i < 5; i++) wh_tensor_release(ts[i]);
    return st;
}

static wh_status k_batch_norm_grad(const wh_tensor *x, const wh_tensor *weight,
                                   const wh_tensor *save_mean, const wh_tensor *save_invstd,
                                   bool training, double eps, const wh_tensor *g, wh_tensor *gx,
                                   wh_tensor *gw, wh_tensor *gb) {
    int64_t C = x->shape[1];
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l[3] = {leaf(x, -1, NULL), NULL, NULL}, *rm = NULL, *rv = NULL, *r = NULL,
              *gr[3] = {0};
    wh_status st = WH_OK;
    if (weight) l[1] = leaf(weight, -1, NULL);
    else TRY_OR(st, wh_tensor_full(x->dtype, 1, &C, 1.0, &l[1]));
    TRY_OR(st, wh_tensor_zeros(x->dtype, 1, &C, &l[2]));
    l[1]->requires_grad = l[2]->requires_grad = true;
    if (!training) {
        /* the statistics used in evaluation: var = 1/invstd^2 - eps */
        TRY_OR(st, wh_tensor_empty(x->dtype, 1, &C, NULL, &rm));
        TRY_OR(st, wh_tensor_empty(x->dtype, 1, &C, NULL, &rv));
        for (int64_t c = 0; st == WH_OK && c < C; c++) {
            double is = vget(save_invstd, c);
            vset(rm, c, vget(save_mean, c));
            vset(rv, c, 1.0 / (is * is) - eps);
        }
    }
    TRY_OR(st, wh_batch_norm(l[0], l[1], l[2], rm, rv, training, 0.0, eps, &r));
    TRY_OR(st, grads(r, (wh_tensor *)g, 3, l, gr));
    wh_tensor *outs[3] = {gx, gw, gb};
    for (int i = 0; i < 3; i++) {
        if (outs[i]) TRY_OR(st, put(outs[i], gr[i]));
        else wh_tensor_release(gr[i]);
    }
    wh_set_grad_enabled(mode);
    wh_tensor *ts[6] = {l[0], l[1], l[2], rm, rv, r};
    for (int i = 0; i < 6; i++) wh_tensor_release(ts[i]);
    return st;
}

/* ---- losses, optimizers ---------------------------------------------------------------------------- */

static wh_status loss_op(int kind, wh_tensor *p, wh_tensor *t, wh_tensor *w, int r, wh_tensor **out) {
    if (kind == 0) return wh_mse_loss(p, t, w, (wh_reduction)r, out);
    if (kind == 1) return wh_l1_loss(p, t, w, (wh_reduction)r, out);
    return wh_bce_loss(p, t, w, (wh_reduction)r, out);
}

static wh_status k_pixel_loss(int kind, int red, const wh_tensor *pred, const wh_tensor *target,
                              const wh_tensor *weight, wh_tensor *out) {
    wh_tensor *hp = hv(pred), *ht = hv(target), *hw = hv(weight), *r = NULL;
    wh_status st = loss_op(kind, hp, ht, hw, red, &r);
    TRY_OR(st, put(out, r));
    wh_tensor_release(hp);
    wh_tensor_release(ht);
    wh_tensor_release(hw);
    return st;
}

static wh_status k_pixel_loss_grad(int kind, int red, const wh_tensor *pred, const wh_tensor *target,
                                   const wh_tensor *weight, const wh_tensor *g, wh_tensor *gp,
                                   wh_tensor *gt, wh_tensor *gw) {
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l[3] = {leaf(pred, -1, NULL), leaf(target, -1, NULL),
                       weight ? leaf(weight, pred->ndim, pred->shape) : NULL};
    wh_tensor *r = NULL, *gr[3] = {0};
    wh_status st = loss_op(kind, l[0], l[1], l[2], red, &r);
    TRY_OR(st, grads(r, (wh_tensor *)g, weight ? 3 : 2, l, gr));
    wh_tensor *outs[3] = {gp, gt, gw};
    for (int i = 0; i < 3; i++) {
        if (outs[i]) TRY_OR(st, put(outs[i], gr[i]));
        else wh_tensor_release(gr[i]);
    }
    wh_set_grad_enabled(mode);
    wh_tensor_release(r);
    for (int i = 0; i < 3; i++) wh_tensor_release(l[i]);
    return st;
}

/* The class ids as a float64 target tensor (N, S...) with -1 for ignored. */
static wh_tensor *target_of(const wh_tensor *z, const int64_t *cls) {
    int64_t shape[WH_MAX_DIMS];
    int nd = z->ndim - 1;
    shape[0] = z->shape[0];
    for (int d = 2; d < z->ndim; d++) shape[d - 1] = z->shape[d];
    wh_tensor *t = NULL;
    wh_tensor_empty(WH_FLOAT64, nd, shape, NULL, &t);
    for (int64_t e = 0; e < wh_tensor_numel(t); e++) ((double *)wh_tensor_data(t))[e] = (double)cls[e];
    return t;
}

static wh_status k_cross_entropy(const wh_tensor *z, const int64_t *cls, const wh_tensor *cw, int red,
                                 double weight_sum, double *lse, wh_tensor *out) {
    int64_t C = z->shape[1], S = wh_tensor_numel(z) / (z->shape[0] * C);
    for (int64_t e = 0; e < z->shape[0] * S; e++) {
        int64_t off = (e / S) * C * S + e % S;
        lse[e] = z->dtype == WH_FLOAT32 ? wh_xent_lse_f32((float *)wh_tensor_data(z) + off, C, S)
                                        : wh_xent_lse_f64((double *)wh_tensor_data(z) + off, C, S);
    }
    wh_tensor *t = target_of(z, cls), *hz = hv(z), *hw = hv(cw), *r = NULL;
    wh_status st = wh_cross_entropy(hz, t, hw, -1, (wh_reduction)red, &r);
    TRY_OR(st, put(out, r));
    wh_tensor_release(t);
    wh_tensor_release(hz);
    wh_tensor_release(hw);
    return st;
}

static wh_status k_cross_entropy_grad(const wh_tensor *z, const int64_t *cls, const double *lse,
                                      const wh_tensor *cw, int red, double weight_sum,
                                      const wh_tensor *g, wh_tensor *gz) {
    bool mode = wh_set_grad_enabled(true);
    wh_tensor *l = leaf(z, -1, NULL), *t = target_of(z, cls), *hw = hv(cw), *r = NULL, *gr = NULL;
    wh_status st = wh_cross_entropy(l, t, hw, -1, (wh_reduction)red, &r);
    TRY_OR(st, grads(r, (wh_tensor *)g, 1, &l, &gr));
    TRY_OR(st, put(gz, gr));
    wh_set_grad_enabled(mode);
    wh_tensor *ts[4] = {l, t, hw, r};
    for (int i = 0; i < 4; i++) wh_tensor_release(ts[i]);
    return st;
}

static wh_status k_sgd(wh_tensor *p, const wh_tensor *g, wh_tensor *m, const wh_sgd_options *o) {
    wh_tensor *a = hv(p), *b = hv(g), *c = hv(m);
    wh_status st = wh_sgd_update_(a, b, c, o);
    wh_tensor_release(a);
    wh_tensor_release(b);
    wh_tensor_release(c);
    return st;
}

static wh_status k_adam(wh_tensor *p, const wh_tensor *g, wh_tensor *m, wh_tensor *v, wh_tensor *vh,
                        const wh_adam_options *o) {
    wh_tensor *ts[5] = {hv(p), hv(g), hv(m), hv(v), hv(vh)};
    wh_status st = wh_adam_update_(ts[0], ts[1], ts[2], ts[3], ts[4], o);
    for (int i = 0; i < 5; i++) wh_tensor_release(ts[i]);
    return st;
}

static wh_status k_rmsprop(wh_tensor *p, const wh_tensor *g, wh_tensor *v, wh_tensor *a,
                           wh_tensor *mo, const wh_rmsprop_options *o) {
    wh_tensor *ts[5] = {hv(p), hv(g), hv(v), hv(a), hv(mo)};
    wh_status st = wh_rmsprop_update_(ts[0], ts[1], ts[2], ts[3], ts[4], o);
    for (int i = 0; i < 5; i++) wh_tensor_release(ts[i]);
    return st;
}

static const wh_backend fake_backend = {
    .abi = WH_BACKEND_ABI, .name = "cuda", .type = WH_CUDA,
    .device_count = fake_count, .allocator = fake_alloc_of, .current_device = fake_current,
    .set_device = fake_set_device, .synchronize = fake_sync, .device_name = fake_name,
    .versions = fake_versions, .empty_cache = fake_empty_cache, .memory_stats = fake_stats,
    .set_option = fake_set_option, .get_option = fake_get_option,
    .copy = k_copy, .fill = k_fill, .binary = k_binary, .binary_grad = k_binary_grad,
    .unary = k_unary, .unary_grad = k_unary_grad, .update = k_update,
    .sum = k_sum, .max = k_max, .scatter = k_scatter, .arg_index = k_arg_index,
    .softmax = k_softmax, .softmax_grad = k_softmax_grad, .sum_squares = k_sum_squares,
    .pad = k_pad, .pad_grad = k_pad_grad, .gemm = k_gemm,
    .conv2d = k_conv2d, .conv2d_grad = k_conv2d_grad,
    .max_pool2d = k_max_pool2d, .max_pool2d_grad = k_max_pool2d_grad,
    .avg_pool2d = k_avg_pool2d, .avg_pool2d_grad = k_avg_pool2d_grad,
    .upsample2d = k_upsample2d, .upsample2d_grad = k_upsample2d_grad,
    .batch_norm = k_batch_norm, .batch_norm_grad = k_batch_norm_grad,
    .pixel_loss = k_pixel_loss, .pixel_loss_grad = k_pixel_loss_grad,
    .cross_entropy = k_cross_entropy, .cross_entropy_grad = k_cross_entropy_grad,
    .sgd_update = k_sgd, .adam_update = k_adam, .rmsprop_update = k_rmsprop,
};

static int l_install(lua_State *L) {
    wh_backend_register(&fake_backend);
    return 0;
}

static int l_remove(lua_State *L) {
    wh_backend_remove(WH_CUDA);
    return 0;
}

int luaopen_fake_device(lua_State *L) {
    static const luaL_Reg fns[] = {{"install", l_install}, {"remove", l_remove}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
