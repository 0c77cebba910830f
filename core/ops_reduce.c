/* Reductions (sum, mean, max, argmax), softmax and log_softmax, with their
 * gradients.
 *
 * Sums accumulate in double whatever the dtype (so the mean of tens of
 * millions of float32 values keeps its digits), in blocks whose partial sums
 * are added last.  A reduction over several dims runs as a sequence of
 * (outer, R, inner) reductions over contiguous groups of dims, innermost
 * first: each step is either a run of contiguous elements (inner == 1) or a
 * vectorisable accumulation of whole rows. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels/elementwise_math.h"
#include "ops_util.h"

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */
#define BLOCK 2048         /* elements summed together before joining the total */
#define CHUNK 256          /* columns a task accumulates at once (fits in L1) */

/* ---- dims --------------------------------------------------------------------------- */

/* mask[d] is true for the reduced dims; ndims == 0 reduces all. */
static wh_status reduce_mask(const char *op, const wh_tensor *x, int ndims, const int *dims,
                             bool *mask) {
    char a[128];
    if (ndims < 0 || ndims > WH_MAX_DIMS)
        return wh_fail(WH_ERR_ARG, "%s: %d dimensions given", op, ndims);
    for (int d = 0; d < WH_MAX_DIMS; d++) mask[d] = ndims == 0;
    for (int i = 0; i < ndims; i++) {
        int d = dims[i] < 0 ? dims[i] + x->ndim : dims[i];
        if (d < 0 || d >= x->ndim)
            return wh_fail(WH_ERR_INDEX, "%s: dimension %d is out of range for a tensor of "
                           "shape %s", op, dims[i], wh_shape_str(x, a, sizeof a));
        if (mask[d])
            return wh_fail(WH_ERR_ARG, "%s: dimension %d appears twice (tensor of shape %s)",
                           op, d + 1, wh_shape_str(x, a, sizeof a));
        mask[d] = true;
    }
    return WH_OK;
}

/* The output shape, and the keepdim shape (reduced dims as 1). */
static int reduced_shape(const wh_tensor *x, const bool *mask, bool keepdim, int64_t *shape,
                         int64_t *kshape, int64_t *count) {
    int nd = 0;
    *count = 1;
    for (int d = 0; d < x->ndim; d++) {
        kshape[d] = mask[d] ? 1 : x->shape[d];
        if (mask[d]) *count *= x->shape[d];
        if (!mask[d] || keepdim) shape[nd++] = kshape[d];
    }
    return nd;
}

/* Consecutive dims with the same role merged; size-1 dims dropped (they
 * change neither the order of elements nor the result). */
typedef struct {
    int n;
    int64_t size[WH_MAX_DIMS];
    bool red[WH_MAX_DIMS];
} dim_groups;

static void make_groups(const wh_tensor *x, const bool *mask, dim_groups *g) {
    g->n = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (g->n && g->red[g->n - 1] == mask[d]) {
            g->size[g->n - 1] *= x->shape[d];
        } else {
            g->size[g->n] = x->shape[d];
            g->red[g->n] = mask[d];
            g->n++;
        }
    }
}

/* ---- sum kernels ---------------------------------------------------------------------- */

#define DEFINE_SUM_KERNELS(T, SUF)                                                            \
    static double sum_run_##SUF(const T *p, int64_t n) {                                     \
        double total = 0;                                                                    \
        for (int64_t b = 0; b < n; b += BLOCK) {                                             \
            int64_t e = b + BLOCK < n ? b + BLOCK : n;                                       \
            double s = 0;                                                                    \
            _Pragma("omp simd reduction(+:s)")                                               \
            for (int64_t i = b; i < e; i++) s += (double)p[i];                               \
            total += s;                                                                      \
        }                                                                                    \
        return total;                                                                        \
    }                                                                                        \
    /* dst[o*inner+i] = sum_r src[(o*R+r)*inner+i] */                                        \
    static wh_status sum_step_##SUF(const T *src, int64_t outer, int64_t R, int64_t inner,   \
                                    double *dst) {                                           \
        int64_t total = outer * R * inner;                                                   \
        int nt = omp_get_max_threads();                                                      \
        if (inner == 1) {                                                                    \
            if (outer >= 4 * (int64_t)nt || total <= PARALLEL_MIN) {                         \
                _Pragma("omp parallel for if (total > PARALLEL_MIN)")                        \
                for (int64_t o = 0; o < outer; o++) dst[o] = sum_run_##SUF(src + o * R, R);  \
            } else {                                                                         \
                for (int64_t o = 0; o < outer; o++) {                                        \
                    const T *p = src + o * R;                                                \
                    int64_t nb = (R + BLOCK - 1) / BLOCK;                                    \
                    double acc = 0;                                                          \
                    _Pragma("omp parallel for reduction(+:acc) schedule(static)")            \
                    for (int64_t b = 0; b < nb; b++) {                                       \
                        int64_t len = R - b * BLOCK < BLOCK ? R - b * BLOCK : BLOCK;         \
                        acc += sum_run_##SUF(p + b * BLOCK, len);                            \
                    }                                                                        \
                    dst[o] = acc;                                                            \
                }                                                                            \
            }                                                                                \
            return WH_OK;                                                                    \
        }                                                                                    \
        int64_t nchunk = (inner + CHUNK - 1) / CHUNK, tasks = outer * nchunk;                \
        int64_t cells = outer * inner;                                                       \
        if (tasks < nt && total > PARALLEL_MIN && cells <= 65536 && R >= nt) {               \
            /* Few output cells and a long reduction: split R between threads,             \
             * each with its own partial sums. */                                            \
            double *part = calloc((size_t)(nt * cells), sizeof *part);                       \
            if (!part) return wh_fail(WH_ERR_MEMORY, "sum: out of memory");                  \
            _Pragma("omp parallel num_threads(nt)")                                          \
            {                                                                                \
                int t = omp_get_thread_num(), n_t = omp_get_num_threads();                   \
                int64_t r0 = R * t / n_t, r1 = R * (t + 1) / n_t;                            \
                double *acc = part + (int64_t)t * cells;                                     \
                for (int64_t o = 0; o < outer; o++)                                          \
                    for (int64_t r = r0; r < r1; r++) {                                      \
                        const T *row = src + (o * R + r) * inner;                            \
                        double *a = acc + o * inner;                                         \
                        _Pragma("omp simd")                                                  \
                        for (int64_t i = 0; i < inner; i++) a[i] += (double)row[i];          \
                    }                                                                        \
            }                                                                                \
            for (int64_t c = 0; c < cells; c++) {                                            \
                double s = 0;                                                                \
                for (int t = 0; t < nt; t++) s += part[(int64_t)t * cells + c];              \
                dst[c] = s;                                                                  \
            }                                                                                \
            free(part);                                                                      \
            return WH_OK;                                                                    \
        }                                                                                    \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t t = 0; t < tasks; t++) {                                                \
            int64_t o = t / nchunk, i0 = (t % nchunk) * CHUNK;                               \
            int64_t len = inner - i0 < CHUNK ? inner - i0 : CHUNK;                           \
            double acc[CHUNK] = {0};                                                         \
            for (int64_t r = 0; r < R; r++) {                                                \
                const T *row = src + (o * R + r) * inner + i0;                               \
                _Pragma("omp simd")                                                          \
                for (int64_t i = 0; i < len; i++) acc[i] += (double)row[i];                  \
            }                                                                                \
            for (int64_t i = 0; i < len; i++) dst[o * inner + i0 + i] = acc[i];              \
        }                                                                                    \
        return WH_OK;                                                                        \
    }

DEFINE_SUM_KERNELS(float, f32)
DEFINE_SUM_KERNELS(double, f64)

/* Sums contiguous xc over the masked dims into out (contiguous, the reduced
 * shape), times `scale`. */
static wh_status sum_into(const char *op, wh_tensor *xc, const bool *mask, double scale,
                          wh_tensor *out) {
    int64_t nout = wh_tensor_numel(out);
    if (wh_tensor_numel(xc) == 0 || nout == 0) return wh_fill(out, nout ? 0.0 * scale : 0);
    const wh_backend *be = wh_backend_of(xc);
    if (be) return be->sum(xc, mask, scale, out);
    dim_groups g;
    make_groups(xc, mask, &g);
    const void *src = wh_tensor_data(xc);
    bool src_is_f32 = xc->dtype == WH_FLOAT32, src_owned = false;
    double *buf = NULL;
    int64_t n = wh_tensor_numel(xc);
    for (;;) {
        int k = -1;
        for (int i = g.n - 1; i >= 0 && k < 0; i--)
            if (g.red[i]) k = i;
        if (k < 0) break;
        int64_t outer = 1, inner = 1, R = g.size[k];
        for (int i = 0; i < k; i++) outer *= g.size[i];
        for (int i = k + 1; i < g.n; i++) inner *= g.size[i];
        buf = malloc(sizeof(double) * (size_t)(outer * inner));
        wh_status st = buf ? WH_OK : wh_fail(WH_ERR_MEMORY, "%s: out of memory", op);
        if (st == WH_OK)
            st = src_is_f32 ? sum_step_f32(src, outer, R, inner, buf)
                            : sum_step_f64(src, outer, R, inner, buf);
        if (src_owned) free((void *)src);
        if (st != WH_OK) {
            free(buf);
            return st;
        }
        src = buf;
        src_owned = true;
        src_is_f32 = false;
        n = outer * inner;
        /* Drop group k; its neighbours are kept groups and stay as they are. */
        for (int i = k; i < g.n - 1; i++) {
            g.size[i] = g.size[i + 1];
            g.red[i] = g.red[i + 1];
        }
        g.n--;
    }
    /* n == nout here: every reduced element has been folded in. */
    if (out->dtype == WH_FLOAT32) {
        float *o = wh_tensor_data(out);
        if (src_is_f32) {
            const float *s = src;
            for (int64_t i = 0; i < n; i++) o[i] = (float)((double)s[i] * scale);
        } else {
            const double *s = src;
            #pragma omp parallel for if (n > PARALLEL_MIN)
            for (int64_t i = 0; i < n; i++) o[i] = (float)(s[i] * scale);
        }
    } else {
        double *o = wh_tensor_data(out);
        const double *s = src;
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++) o[i] = s[i] * scale;
    }
    if (src_owned) free((void *)src);
    return WH_OK;
}

/* ---- sum and mean ------------------------------------------------------------------------- */

/* g (the reduced shape) broadcast back over the input's shape, times scale,
 * as a new contiguous tensor. */
static wh_status broadcast_back(wh_tensor *g, const wh_meta *m, const int64_t *kshape,
                                double scale, wh_tensor **out) {
    wh_tensor *gk = NULL, *ge = NULL;
    WH_TRY(wh_view_raw(g, m->ndim, kshape, &gk));
    wh_status st = wh_expand_raw(gk, m->ndim, m->shape, &ge);
    wh_tensor_release(gk);
    if (st == WH_OK) st = wh_tensor_empty(m->dtype, m->ndim, m->shape, g->storage->allocator, out);
    if (st != WH_OK) {
        wh_tensor_release(ge);
        return st;
    }
    const wh_backend *be = wh_backend_of(g);
    if (be) {
        st = be->copy(*out, ge);
        if (st == WH_OK && scale != 1) st = be->unary(WH_MATH_AFFINE, *out, *out, scale, 0);
        wh_tensor_release(ge);
        if (st != WH_OK) wh_tensor_clear(out);
        return st;
    }
    wh_row_iter it;
    wh_row_iter_init(&it, ge->ndim, ge->shape, 1, &ge);
    int64_t s = it.stride[0][it.ndim - 1], total = it.rows * it.inner;
#define BROADCAST_ROWS(T)                                                                     \
    do {                                                                                     \
        const T *G = ge->storage->data;                                                      \
        T *O = wh_tensor_data(*out), sc = (T)scale;                                          \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t r = 0; r < it.rows; r++) {                                              \
            int64_t off;                                                                     \
            wh_row_iter_offsets(&it, r, &off);                                               \
            T *o = O + r * it.inner;                                                         \
            if (s == 0) {                                                                    \
                T v = G[off] * sc;                                                           \
                for (int64_t i = 0; i < it.inner; i++) o[i] = v;                             \
            } else {                                                                         \
                for (int64_t i = 0; i < it.inner; i++) o[i] = G[off + i * s] * sc;           \
            }                                                                                \
        }                                                                                    \
    } while (0)
    if (m->dtype == WH_FLOAT32) BROADCAST_ROWS(float);
    else BROADCAST_ROWS(double);
#undef BROADCAST_ROWS
    wh_tensor_release(ge);
    return WH_OK;
}

/* iarg[0..ndim) is the keepdim shape; farg[0] the scale (1 or 1/count). */
static wh_status sum_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_meta *m = &n->input_meta[0];
    int64_t kshape[WH_MAX_DIMS];
    for (int d = 0; d < m->ndim; d++) kshape[d] = n->iarg[d];
    return broadcast_back(g, m, kshape, n->farg[0], &gin[0]);
}

static wh_status sum_or_mean(const char *op, bool mean, wh_tensor *x, int ndims, const int *dims,
                             bool keepdim, wh_tensor **out) {
    bool mask[WH_MAX_DIMS];
    int64_t shape[WH_MAX_DIMS], kshape[WH_MAX_DIMS], count;
    WH_TRY(wh_check_float_dev(op, "input", x));
    WH_TRY(reduce_mask(op, x, ndims, dims, mask));
    int nd = reduced_shape(x, mask, keepdim, shape, kshape, &count);
    double scale = mean ? (count ? 1.0 / (double)count : NAN) : 1.0;
    wh_tensor *xc;
    WH_TRY(wh_contig(x, &xc));
    wh_status st = wh_tensor_empty(x->dtype, nd, shape, x->storage->allocator, out);
    if (st == WH_OK) st = sum_into(op, xc, mask, scale, *out);
    wh_tensor_release(xc);
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record(op, sum_backward, 1, &x, *out, &node);
    if (node) {
        for (int d = 0; d < x->ndim; d++) node->iarg[d] = kshape[d];
        node->farg[0] = scale;
    }
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_sum(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out) {
    return sum_or_mean("sum", false, x, ndims, dims, keepdim, out);
}

wh_status wh_mean(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out) {
    return sum_or_mean("mean", true, x, ndims, dims, keepdim, out);
}

/* ---- max and argmax ------------------------------------------------------------------------
 * Both find, for every output cell, the flat (row-major) position in the
 * input of its first maximum; NaN counts as larger than everything, as in
 * PyTorch, so a NaN propagates. */

#define BETTER(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))

#define DEFINE_MAX_KERNELS(T, SUF)                                                            \
    /* One reduced group: (outer, R, inner). */                                              \
    static void max_step_##SUF(const T *src, int64_t outer, int64_t R, int64_t inner, T *val,  \
                               int64_t *arg) {                                               \
        int64_t total = outer * R * inner;                                                   \
        if (inner == 1) {                                                                    \
            _Pragma("omp parallel for if (total > PARALLEL_MIN)")                            \
            for (int64_t o = 0; o < outer; o++) {                                            \
                const T *p = src + o * R;                                                    \
                T best = p[0];                                                               \
                int64_t bi = 0;                                                              \
                for (int64_t r = 1; r < R; r++)                                              \
                    if (BETTER(p[r], best)) {                                                \
                        best = p[r];                                                         \
                        bi = r;                                                              \
                    }                                                                        \
                val[o] = best;                                                               \
                arg[o] = o * R + bi;                                                         \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        int64_t nchunk = (inner + CHUNK - 1) / CHUNK;                                        \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t t = 0; t < outer * nchunk; t++) {                                       \
            int64_t o = t / nchunk, i0 = (t % nchunk) * CHUNK;                               \
            int64_t len = inner - i0 < CHUNK ? inner - i0 : CHUNK;                           \
            T best[CHUNK];                                                                   \
            int64_t bi[CHUNK];                                                               \
            const T *base = src + o * R * inner + i0;                                        \
            for (int64_t i = 0; i < len; i++) {                                              \
                best[i] = base[i];                                                           \
                bi[i] = 0;                                                                   \
            }                                                                                \
            for (int64_t r = 1; r < R; r++) {                                                \
                const T *row = base + r * inner;                                             \
                for (int64_t i = 0; i < len; i++)                                            \
                    if (BETTER(row[i], best[i])) {                                           \
                        best[i] = row[i];                                                    \
                        bi[i] = r;                                                           \
                    }                                                                        \
            }                                                                                \
            for (int64_t i = 0; i < len; i++) {                                              \
                val[o * inner + i0 + i] = best[i];                                           \
                arg[o * inner + i0 + i] = (o * R + bi[i]) * inner + i0 + i;                  \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* Any groups: each output cell walks its reduced groups in row-major     \
     * order, the innermost reduced group as a plain strided run. */         \
    static void max_general_##SUF(const T *src, const dim_groups *g, int64_t nout, T *val,    \
                                  int64_t *arg) {                                            \
        int64_t stride[WH_MAX_DIMS], s = 1, nred = 1;                                        \
        int last = -1;                                                                       \
        for (int i = g->n - 1; i >= 0; i--) {                                                \
            stride[i] = s;                                                                   \
            s *= g->size[i];                                                                 \
            if (g->red[i]) {                                                                 \
                nred *= g->size[i];                                                          \
                if (last < 0) last = i;                                                      \
            }                                                                                \
        }                                                                                    \
        int64_t run = g->size[last], rs = stride[last], nruns = nred / run;                  \
        _Pragma("omp parallel for if (nout * nred > PARALLEL_MIN)")                          \
        for (int64_t q = 0; q < nout; q++) {                                                 \
            int64_t base = 0, rem = q;                                                       \
            for (int i = g->n - 1; i >= 0; i--) {                                            \
                if (g->red[i]) continue;                                                     \
                base += (rem % g->size[i]) * stride[i];                                      \
                rem /= g->size[i];                                                           \
            }                                                                                \
            T best = src[base];                                                              \
            int64_t bo = base;                                                               \
            for (int64_t k = 0; k < nruns; k++) {                                            \
                int64_t off = base, kr = k;                                                  \
                for (int i = last - 1; i >= 0; i--) {                                        \
                    if (!g->red[i]) continue;                                                \
                    off += (kr % g->size[i]) * stride[i];                                    \
                    kr /= g->size[i];                                                        \
                }                                                                            \
                const T *p = src + off;                                                      \
                for (int64_t r = 0; r < run; r++)                                            \
                    if (BETTER(p[r * rs], best)) {                                           \
                        best = p[r * rs];                                                    \
                        bo = off + r * rs;                                                   \
                    }                                                                        \
            }                                                                                \
            val[q] = best;                                                                   \
            arg[q] = bo;                                                                     \
        }                                                                                    \
    }

DEFINE_MAX_KERNELS(float, f32)
DEFINE_MAX_KERNELS(double, f64)

/* Values into out (contiguous, reduced shape) and flat arg max positions
 * into arg (numel(out) entries). */
static wh_status max_into(const char *op, wh_tensor *xc, const bool *mask, wh_tensor *out,
                          int64_t *arg) {
    int64_t nout = wh_tensor_numel(out);
    if (nout == 0) return WH_OK;
    if (wh_tensor_numel(xc) == 0) {
        char a[128];
        return wh_fail(WH_ERR_SHAPE, "%s: cannot reduce over an empty dimension (input shape %s)",
                       op, wh_shape_str(xc, a, sizeof a));
    }
    const wh_backend *be = wh_backend_of(xc);
    if (be) return be->max(xc, mask, out, arg);
    dim_groups g;
    make_groups(xc, mask, &g);
    int nred = 0, k = -1;
    for (int i = 0; i < g.n; i++)
        if (g.red[i]) {
            nred++;
            k = i;
        }
    int64_t outer = 1, inner = 1, R = 1;
    if (nred <= 1) {
        /* No reduced group at all (only size-1 dims reduced) is R = 1. */
        if (k >= 0) R = g.size[k];
        for (int i = 0; i < g.n; i++) {
            if (i == k) continue;
            if (k >= 0 && i < k) outer *= g.size[i];
            else inner *= g.size[i];
        }
        if (xc->dtype == WH_FLOAT32)
            max_step_f32(wh_tensor_data(xc), outer, R, inner, wh_tensor_data(out), arg);
        else
            max_step_f64(wh_tensor_data(xc), outer, R, inner, wh_tensor_data(out), arg);
    } else if (xc->dtype == WH_FLOAT32) {
        max_general_f32(wh_tensor_data(xc), &g, nout, wh_tensor_data(out), arg);
    } else {
        max_general_f64(wh_tensor_data(xc), &g, nout, wh_tensor_data(out), arg);
    }
    return WH_OK;
}

/* ctx holds the flat arg max positions (in a wh_devbuf on a device). */
static wh_status max_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_backend *be = wh_backend_of(g);
    if (be) {
        const wh_devbuf *buf = n->ctx;
        WH_TRY(wh_tensor_zeros_on(n->input_meta[0].dtype, n->input_meta[0].ndim,
                                  n->input_meta[0].shape, g->storage->allocator, &gin[0]));
        return be->scatter(gin[0], buf->ptr, g);
    }
    const int64_t *arg = n->ctx;
    int64_t nout = wh_tensor_numel(g);
    WH_TRY(wh_tensor_zeros(n->input_meta[0].dtype, n->input_meta[0].ndim,
                           n->input_meta[0].shape, &gin[0]));
    if (g->dtype == WH_FLOAT32) {
        float *d = wh_tensor_data(gin[0]);
        const float *s = wh_tensor_data(g);
        for (int64_t q = 0; q < nout; q++) d[arg[q]] = s[q];
    } else {
        double *d = wh_tensor_data(gin[0]);
        const double *s = wh_tensor_data(g);
        for (int64_t q = 0; q < nout; q++) d[arg[q]] = s[q];
    }
    return WH_OK;
}

/* The arg max positions go to *argp: malloc'd on the CPU; on a device in
 * *bufp (whose ptr *argp is), NULL on the CPU. */
static wh_status max_common(const char *op, wh_tensor *x, int ndims, const int *dims,
                            bool keepdim, wh_tensor **out, int64_t **argp, wh_devbuf **bufp,
                            bool *mask) {
    int64_t shape[WH_MAX_DIMS], kshape[WH_MAX_DIMS], count;
    *bufp = NULL;
    WH_TRY(wh_check_float_dev(op, "input", x));
    WH_TRY(reduce_mask(op, x, ndims, dims, mask));
    int nd = reduced_shape(x, mask, keepdim, shape, kshape, &count);
    wh_tensor *xc;
    WH_TRY(wh_contig(x, &xc));
    wh_status st = wh_tensor_empty(x->dtype, nd, shape, x->storage->allocator, out);
    int64_t nout = st == WH_OK ? wh_tensor_numel(*out) : 0;
    size_t nbytes = sizeof(int64_t) * (size_t)(nout ? nout : 1);
    int64_t *arg = NULL;
    if (st == WH_OK && wh_backend_of(x)) {
        st = wh_devbuf_new(x->storage->allocator, nbytes, bufp);
        if (st == WH_OK) arg = (*bufp)->ptr;
    } else if (st == WH_OK) {
        arg = malloc(nbytes);
        if (!arg) st = wh_fail(WH_ERR_MEMORY, "%s: out of memory", op);
    }
    if (st == WH_OK) st = max_into(op, xc, mask, *out, arg);
    wh_tensor_release(xc);
    if (st != WH_OK) {
        if (*bufp) wh_devbuf_free(*bufp);
        else free(arg);
        *bufp = NULL;
        wh_tensor_clear(out);
        return st;
    }
    *argp = arg;
    return WH_OK;
}

wh_status wh_max(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out) {
    bool mask[WH_MAX_DIMS];
    int64_t *arg = NULL;
    wh_devbuf *buf = NULL;
    WH_TRY(max_common("max", x, ndims, dims, keepdim, out, &arg, &buf, mask));
    wh_node *node = NULL;
    wh_status st = wh_record("max", max_backward, 1, &x, *out, &node);
    if (node) {
        node->ctx = buf ? (void *)buf : (void *)arg;
        node->free_ctx = buf ? wh_devbuf_free : free;
    } else if (buf) {
        wh_devbuf_free(buf);
    } else {
        free(arg);
    }
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_argmax(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out) {
    if (ndims > 1)
        return wh_fail(WH_ERR_ARG, "argmax: takes one dimension or none (flat index), got %d",
                       ndims);
    bool mask[WH_MAX_DIMS];
    int64_t *arg = NULL;
    wh_devbuf *buf = NULL;
    wh_tensor *vals = NULL;
    WH_TRY(max_common("argmax", x, ndims, dims, keepdim, &vals, &arg, &buf, mask));
    wh_status st = wh_tensor_empty(WH_FLOAT64, vals->ndim, vals->shape, x->storage->allocator, out);
    /* The flat position becomes an index along the reduced dim. */
    int64_t div = 1, size = 1;
    if (ndims == 1) {
        int d = dims[0] < 0 ? dims[0] + x->ndim : dims[0];
        size = x->shape[d];
        for (int i = d + 1; i < x->ndim; i++) div *= x->shape[i];
    }
    if (st == WH_OK && buf) {
        st = wh_backend_of(x)->arg_index(arg, div, ndims == 1 ? size : 0, *out);
        if (st != WH_OK) wh_tensor_clear(out);
    } else if (st == WH_OK) {
        double *o = wh_tensor_data(*out);
        int64_t nout = wh_tensor_numel(vals);
        for (int64_t q = 0; q < nout; q++)
            o[q] = ndims == 1 ? (double)((arg[q] / div) % size) : (double)arg[q];
    }
    if (buf) wh_devbuf_free(buf);
    else free(arg);
    wh_tensor_release(vals);
    return st;
}

/* ---- softmax, log_softmax -------------------------------------------------------------------
 * Along one dim of size D: the contiguous input is (outer, D, inner). */

#define DEFINE_SOFTMAX_KERNELS(T, SUF, EXP)                                              \
    static void softmax_fwd_##SUF(const T *x, T *y, int64_t outer, int64_t D, int64_t inner,  \
                                  bool log_mode) {                                           \
        int64_t total = outer * D * inner;                                                   \
        if (inner == 1) {                                                                    \
            _Pragma("omp parallel for if (total > PARALLEL_MIN)")                            \
            for (int64_t o = 0; o < outer; o++) {                                            \
                const T *p = x + o * D;                                                      \
                T *q = y + o * D;                                                            \
                T m = p[0];                                                                  \
                for (int64_t d = 1; d < D; d++) m = p[d] > m ? p[d] : m;                     \
                double s = 0;                                                                \
                if (log_mode) {                                                              \
                    for (int64_t d = 0; d < D; d++) s += (double)EXP(p[d] - m);              \
                    T ls = (T)log(s);                                                        \
                    for (int64_t d = 0; d < D; d++) q[d] = p[d] - m - ls;                    \
                } else {                                                                     \
                    for (int64_t d = 0; d < D; d++) {                                        \
                        q[d] = EXP(p[d] - m);                                                \
                        s += (double)q[d];                                                   \
                    }                                                                        \
                    T inv = (T)(1.0 / s);                                                    \
                    for (int64_t d = 0; d < D; d++) q[d] *= inv;                             \
                }                                                                            \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        int64_t nchunk = (inner + CHUNK - 1) / CHUNK;                                        \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t t = 0; t < outer * nchunk; t++) {                                       \
            int64_t o = t / nchunk, i0 = (t % nchunk) * CHUNK;                               \
            int64_t len = inner - i0 < CHUNK ? inner - i0 : CHUNK;                           \
            const T *p = x + o * D * inner + i0;                                             \
            T *q = y + o * D * inner + i0;                                                   \
            T m[CHUNK];                                                                      \
            double s[CHUNK] = {0};                                                           \
            for (int64_t i = 0; i < len; i++) m[i] = p[i];                                   \
            for (int64_t d = 1; d < D; d++)                                                  \
                for (int64_t i = 0; i < len; i++) {                                          \
                    T v = p[d * inner + i];                                                  \
                    m[i] = v > m[i] ? v : m[i];                                              \
                }                                                                            \
            for (int64_t d = 0; d < D; d++)                                                  \
                for (int64_t i = 0; i < len; i++) {                                          \
                    T e = EXP(p[d * inner + i] - m[i]);                                      \
                    s[i] += (double)e;                                                       \
                    if (!log_mode) q[d * inner + i] = e;                                     \
                }                                                                            \
            if (log_mode) {                                                                  \
                for (int64_t i = 0; i < len; i++) m[i] += (T)log(s[i]);                      \
                for (int64_t d = 0; d < D; d++)                                              \
                    for (int64_t i = 0; i < len; i++) q[d * inner + i] = p[d * inner + i] - m[i]; \
            } else {                                                                         \
                T inv[CHUNK];                                                                \
                for (int64_t i = 0; i < len; i++) inv[i] = (T)(1.0 / s[i]);                  \
                for (int64_t d = 0; d < D; d++)                                              \
                    for (int64_t i = 0; i < len; i++) q[d * inner + i] *= inv[i];            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* softmax: gx = y * (g - sum(g*y));  log_softmax: gx = g - exp(y) * sum(g) */           \
    static void softmax_bwd_##SUF(const T *y, const T *g, T *gx, int64_t outer, int64_t D,    \
                                  int64_t inner, bool log_mode) {                            \
        int64_t total = outer * D * inner;                                                   \
        int64_t nchunk = (inner + CHUNK - 1) / CHUNK;                                        \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t t = 0; t < outer * nchunk; t++) {                                       \
            int64_t o = t / nchunk, i0 = (t % nchunk) * CHUNK;                               \
            int64_t len = inner - i0 < CHUNK ? inner - i0 : CHUNK;                           \
            int64_t base = o * D * inner + i0;                                               \
            double s[CHUNK] = {0};                                                           \
            for (int64_t d = 0; d < D; d++)                                                  \
                for (int64_t i = 0; i < len; i++) {                                          \
                    int64_t k = base + d * inner + i;                                        \
                    s[i] += log_mode ? (double)g[k] : (double)g[k] * (double)y[k];           \
                }                                                                            \
            for (int64_t d = 0; d < D; d++)                                                  \
                for (int64_t i = 0; i < len; i++) {                                          \
                    int64_t k = base + d * inner + i;                                        \
                    gx[k] = log_mode ? g[k] - EXP(y[k]) * (T)s[i] : y[k] * (g[k] - (T)s[i]);  \
                }                                                                            \
        }                                                                                    \
    }

DEFINE_SOFTMAX_KERNELS(float, f32, expf)
DEFINE_SOFTMAX_KERNELS(double, f64, exp)

static void softmax_dims(const wh_meta *m, int dim, int64_t *outer, int64_t *D, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < dim; i++) *outer *= m->shape[i];
    for (int i = dim + 1; i < m->ndim; i++) *inner *= m->shape[i];
    *D = m->shape[dim];
}

/* iarg[0]: dim, iarg[1]: log mode; saved[0]: the output. */
static wh_status softmax_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_tensor *y;
    WH_TRY(wh_node_saved(n, 0, &y));
    int64_t outer, D, inner;
    softmax_dims(&n->output_meta, (int)n->iarg[0], &outer, &D, &inner);
    WH_TRY(wh_tensor_empty_like(y, &gin[0]));
    const wh_backend *be = wh_backend_of(y);
    if (be) return be->softmax_grad(y, g, (int)n->iarg[0], n->iarg[1] != 0, gin[0]);
    if (y->dtype == WH_FLOAT32)
        softmax_bwd_f32(wh_tensor_data(y), wh_tensor_data(g), wh_tensor_data(gin[0]), outer, D,
                        inner, n->iarg[1]);
    else
        softmax_bwd_f64(wh_tensor_data(y), wh_tensor_data(g), wh_tensor_data(gin[0]), outer, D,
                        inner, n->iarg[1]);
    return WH_OK;
}

static wh_status softmax_common(const char *op, bool log_mode, wh_tensor *x, int dim,
                                wh_tensor **out) {
    WH_TRY(wh_check_float_dev(op, "input", x));
    WH_TRY(wh_check_dim(op, &dim, x->ndim));
    wh_tensor *xc;
    WH_TRY(wh_contig(x, &xc));
    wh_status st = wh_tensor_empty_like(xc, out);
    const wh_backend *be = wh_backend_of(x);
    if (st == WH_OK && be) {
        st = be->softmax(xc, dim, log_mode, *out);
        if (st != WH_OK) wh_tensor_clear(out);
    } else if (st == WH_OK) {
        wh_meta m = {.ndim = x->ndim, .dtype = x->dtype};
        memcpy(m.shape, x->shape, sizeof m.shape);
        int64_t outer, D, inner;
        softmax_dims(&m, dim, &outer, &D, &inner);
        if (outer * D * inner > 0) {
            if (x->dtype == WH_FLOAT32)
                softmax_fwd_f32(wh_tensor_data(xc), wh_tensor_data(*out), outer, D, inner, log_mode);
            else
                softmax_fwd_f64(wh_tensor_data(xc), wh_tensor_data(*out), outer, D, inner, log_mode);
        }
    }
    wh_tensor_release(xc);
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record(op, softmax_backward, 1, &x, *out, &node);
    if (node) {
        node->iarg[0] = dim;
        node->iarg[1] = log_mode;
        st = wh_node_save(node, *out);
    }
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_softmax(wh_tensor *x, int dim, wh_tensor **out) {
    return softmax_common("softmax", false, x, dim, out);
}

wh_status wh_log_softmax(wh_tensor *x, int dim, wh_tensor **out) {
    return softmax_common("log_softmax", true, x, dim, out);
}

/* ---- sum of squares -------------------------------------------------------------------------- */

wh_status wh_sum_squares(wh_tensor *x, double *result) {
    WH_TRY(wh_check_float_dev("sum_squares", "input", x));
    wh_tensor *xc;
    WH_TRY(wh_contig(x, &xc));
    const wh_backend *be = wh_backend_of(x);
    if (be) {
        wh_status st = be->sum_squares(xc, result);
        wh_tensor_release(xc);
        return st;
    }
    int64_t n = wh_tensor_numel(xc), nb = (n + BLOCK - 1) / BLOCK;
    double total = 0;
    if (xc->dtype == WH_FLOAT32) {
        const float *p = wh_tensor_data(xc);
        #pragma omp parallel for reduction(+:total) schedule(static) if (n > PARALLEL_MIN)
        for (int64_t b = 0; b < nb; b++) {
            int64_t e = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
            double s = 0;
            #pragma omp simd reduction(+:s)
            for (int64_t i = b * BLOCK; i < e; i++) s += (double)p[i] * (double)p[i];
            total += s;
        }
    } else {
        const double *p = wh_tensor_data(xc);
        #pragma omp parallel for reduction(+:total) schedule(static) if (n > PARALLEL_MIN)
        for (int64_t b = 0; b < nb; b++) {
            int64_t e = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
            double s = 0;
            #pragma omp simd reduction(+:s)
            for (int64_t i = b * BLOCK; i < e; i++) s += p[i] * p[i];
            total += s;
        }
    }
    wh_tensor_release(xc);
    *result = total;
    return WH_OK;
}
