/* Shape and view ops with autograd.  View-like ops share storage with their
 * input (through the wh_*_raw functions of tensor.c); copying ops (clone,
 * contiguous of a strided tensor, to_dtype, concat, pad) allocate.  Every
 * backward maps the output's gradient back onto the input's shape. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels/strided_math.h"
#include "ops_util.h"

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */

/* Attaches a node for a one-input op; on failure releases *out. */
static wh_status record1(const char *name, wh_backward_fn fn, wh_tensor *x, wh_tensor **out,
                         wh_node **node) {
    wh_status st = wh_record(name, fn, 1, &x, *out, node);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

/* Zeros of an input's shape, on the device of the gradient `like`. */
static wh_status zeros_of_meta(const wh_meta *m, const wh_tensor *like, wh_tensor **out) {
    return wh_tensor_zeros_on(m->dtype, m->ndim, m->shape, like->storage->allocator, out);
}

/* The gradient of every op that only changes the shape (view, reshape,
 * unsqueeze, squeeze, flatten): g is contiguous, so it can always be viewed
 * with the input's shape. */
static wh_status reshape_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_meta *m = &n->input_meta[0];
    return wh_view_raw(g, m->ndim, m->shape, &gin[0]);
}

/* Gradients of ops that produce a copy of the input's values (clone,
 * contiguous): the gradient passes through unchanged. */
static wh_status identity_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_tensor_retain(g);
    gin[0] = g;
    return WH_OK;
}

/* ---- view, reshape ------------------------------------------------------------ */

wh_status wh_view(wh_tensor *x, int ndim, const int64_t *shape, wh_tensor **out) {
    wh_node *node;
    WH_TRY(wh_view_raw(x, ndim, shape, out));
    return record1("view", reshape_backward, x, out, &node);
}

wh_status wh_reshape(wh_tensor *x, int ndim, const int64_t *shape, wh_tensor **out) {
    char a[128], b[128];
    if (ndim < 0 || ndim > WH_MAX_DIMS)
        return wh_fail(WH_ERR_SHAPE, "reshape: %d dimensions given, whorl supports 0 to %d",
                       ndim, WH_MAX_DIMS);
    /* Size errors are reported here under reshape's name; after this check a
     * failing view can only be a stride problem, which a copy resolves. */
    int64_t known = 1, n = wh_tensor_numel(x);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape[i] < 0) {
            return wh_fail(WH_ERR_SHAPE, "reshape: invalid size %lld in %s (only one -1 is "
                           "allowed)", (long long)shape[i], wh_dims_str(ndim, shape, b, sizeof b));
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0 ? (known == 0 || n % known != 0) : known != n)
        return wh_fail(WH_ERR_SHAPE, "reshape: cannot reshape a tensor of shape %s (%lld "
                       "elements) into %s", wh_shape_str(x, a, sizeof a), (long long)n,
                       wh_dims_str(ndim, shape, b, sizeof b));
    if (wh_view_raw(x, ndim, shape, out) != WH_OK) {
        wh_tensor *c;
        WH_TRY(wh_contiguous_raw(x, true, &c));
        wh_status st = wh_view_raw(c, ndim, shape, out);
        wh_tensor_release(c);
        WH_TRY(st);
    }
    wh_node *node;
    return record1("reshape", reshape_backward, x, out, &node);
}

/* ---- permute, transpose -------------------------------------------------------- */

static wh_status permute_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    int inv[WH_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) inv[n->iarg[i]] = i;
    /* A strided view is a valid gradient: the engine makes it contiguous when
     * it feeds the next node or a leaf's .grad, so copying here would copy twice. */
    return wh_permute_raw(g, inv, &gin[0]);
}

static wh_status permute_named(const char *name, wh_tensor *x, const int *perm,
                               wh_tensor **out) {
    int p[WH_MAX_DIMS];
    bool seen[WH_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        p[i] = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
        if (p[i] < 0 || p[i] >= x->ndim || seen[p[i]]) {
            char a[128];
            return wh_fail(WH_ERR_ARG, "%s: entry %d (%d) of the permutation is out of range or "
                           "repeated for a tensor of shape %s", name, i + 1, perm[i],
                           wh_shape_str(x, a, sizeof a));
        }
        seen[p[i]] = true;
    }
    WH_TRY(wh_permute_raw(x, p, out));
    wh_node *node;
    WH_TRY(record1(name, permute_backward, x, out, &node));
    if (node)
        for (int i = 0; i < x->ndim; i++) node->iarg[i] = p[i];
    return WH_OK;
}

wh_status wh_permute(wh_tensor *x, const int *perm, wh_tensor **out) {
    return permute_named("permute", x, perm, out);
}

wh_status wh_transpose(wh_tensor *x, int dim0, int dim1, wh_tensor **out) {
    WH_TRY(wh_check_dim("transpose", &dim0, x->ndim));
    WH_TRY(wh_check_dim("transpose", &dim1, x->ndim));
    int perm[WH_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[dim0] = dim1;
    perm[dim1] = dim0;
    return permute_named("transpose", x, perm, out);
}

/* ---- narrow, select --------------------------------------------------------------- */

/* Zeros of the input's shape with g written into the part the op took. */
static wh_status narrow_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_tensor *part = NULL;
    WH_TRY(zeros_of_meta(&n->input_meta[0], g, &gin[0]));
    wh_status st = n->iarg[0] == 0
                       ? wh_narrow_raw(gin[0], (int)n->iarg[1], n->iarg[2], n->iarg[3], &part)
                       : wh_select_raw(gin[0], (int)n->iarg[1], n->iarg[2], &part);
    if (st == WH_OK) st = wh_copy_into(part, g);
    wh_tensor_release(part);
    if (st != WH_OK) wh_tensor_clear(&gin[0]);
    return st;
}

wh_status wh_narrow(wh_tensor *x, int dim, int64_t start, int64_t length, wh_tensor **out) {
    WH_TRY(wh_check_dim("narrow", &dim, x->ndim));
    if (start < 0) start += x->shape[dim];
    WH_TRY(wh_narrow_raw(x, dim, start, length, out));
    wh_node *node;
    WH_TRY(record1("narrow", narrow_backward, x, out, &node));
    if (node) {
        node->iarg[0] = 0;
        node->iarg[1] = dim;
        node->iarg[2] = start;
        node->iarg[3] = length;
    }
    return WH_OK;
}

wh_status wh_select(wh_tensor *x, int dim, int64_t index, wh_tensor **out) {
    WH_TRY(wh_check_dim("select", &dim, x->ndim));
    if (index < 0) index += x->shape[dim];
    WH_TRY(wh_select_raw(x, dim, index, out));
    wh_node *node;
    WH_TRY(record1("select", narrow_backward, x, out, &node));
    if (node) {
        node->iarg[0] = 1;
        node->iarg[1] = dim;
        node->iarg[2] = index;
    }
    return WH_OK;
}

/* ---- unsqueeze, squeeze ------------------------------------------------------------- */

wh_status wh_unsqueeze(wh_tensor *x, int dim, wh_tensor **out) {
    int d = dim < 0 ? dim + x->ndim + 1 : dim;
    if (d < 0 || d > x->ndim)
        return wh_fail(WH_ERR_INDEX, "unsqueeze: dimension %d is out of range for a %d-d tensor "
                       "(a new dimension can go at 0 to %d)", dim, x->ndim, x->ndim);
    if (x->ndim >= WH_MAX_DIMS)
        return wh_fail(WH_ERR_SHAPE, "unsqueeze: the tensor already has %d dimensions, the most "
                       "whorl supports", x->ndim);
    WH_TRY(wh_alias(x, out));
    wh_tensor *o = *out;
    for (int i = x->ndim; i > d; i--) {
        o->shape[i] = o->shape[i - 1];
        o->stride[i] = o->stride[i - 1];
    }
    o->shape[d] = 1;
    o->stride[d] = d < x->ndim ? x->stride[d] * x->shape[d] : 1;
    o->ndim = x->ndim + 1;
    wh_node *node;
    return record1("unsqueeze", reshape_backward, x, out, &node);
}

wh_status wh_squeeze(wh_tensor *x, int dim, bool all, wh_tensor **out) {
    if (!all) WH_TRY(wh_check_dim("squeeze", &dim, x->ndim));
    WH_TRY(wh_alias(x, out));
    wh_tensor *o = *out;
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        /* Squeezing a dim whose size is not 1 leaves it, as in PyTorch. */
        bool drop = x->shape[i] == 1 && (all || i == dim);
        if (drop) continue;
        o->shape[nd] = x->shape[i];
        o->stride[nd] = x->stride[i];
        nd++;
    }
    o->ndim = nd;
    wh_node *node;
    return record1("squeeze", reshape_backward, x, out, &node);
}

/* ---- expand ---------------------------------------------------------------------------- */

static wh_status expand_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_meta *m = &n->input_meta[0];
    int lead = g->ndim - m->ndim, dims[WH_MAX_DIMS], nd = 0;
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (m->shape[i - lead] == 1 && g->shape[i] != 1)) dims[nd++] = i;
    if (nd == 0) return wh_view_raw(g, m->ndim, m->shape, &gin[0]);
    wh_tensor *s;
    WH_TRY(wh_sum(g, nd, dims, false, &s));
    wh_status st = wh_view_raw(s, m->ndim, m->shape, &gin[0]);
    wh_tensor_release(s);
    return st;
}

wh_status wh_expand(wh_tensor *x, int ndim, const int64_t *shape, wh_tensor **out) {
    WH_TRY(wh_expand_raw(x, ndim, shape, out));
    wh_node *node;
    return record1("expand", expand_backward, x, out, &node);
}

/* ---- contiguous, clone, to_dtype ---------------------------------------------------------- */

wh_status wh_contiguous(wh_tensor *x, wh_tensor **out) {
    if (wh_tensor_is_contiguous(x)) {
        /* Already laid out: the tensor itself is the answer, history and all. */
        wh_tensor_retain(x);
        *out = x;
        return WH_OK;
    }
    WH_TRY(wh_contiguous_raw(x, true, out));
    wh_node *node;
    return record1("contiguous", identity_backward, x, out, &node);
}

wh_status wh_clone(wh_tensor *x, wh_tensor **out) {
    WH_TRY(wh_contiguous_raw(x, true, out));
    wh_node *node;
    return record1("clone", identity_backward, x, out, &node);
}

static wh_status to_dtype_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    return wh_to_dtype_raw(g, n->input_meta[0].dtype, &gin[0]);
}

wh_status wh_to_dtype(wh_tensor *x, wh_dtype dt, wh_tensor **out) {
    if (wh_dtype_size(dt) == 0) return wh_fail(WH_ERR_DTYPE, "to_dtype: unknown dtype %d", (int)dt);
    if (x->dtype == dt) {
        wh_tensor_retain(x);
        *out = x;
        return WH_OK;
    }
    WH_TRY(wh_to_dtype_raw(x, dt, out));
    /* Conversions to uint8 round values, so there is no gradient to carry. */
    if (!wh_dtype_is_float(dt) || !wh_dtype_is_float(x->dtype)) return WH_OK;
    wh_node *node;
    return record1("to_dtype", to_dtype_backward, x, out, &node);
}

/* ---- concat -------------------------------------------------------------------------------- */

static wh_status concat_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    int dim = (int)n->iarg[0];
    int64_t start = 0;
    for (int i = 0; i < n->ninputs; i++) {
        int64_t len = n->input_meta[i].shape[dim];
        if (wh_node_needs_grad(n, i)) WH_TRY(wh_narrow_raw(g, dim, start, len, &gin[i]));
        start += len;
    }
    return WH_OK;
}

wh_status wh_concat(int n, wh_tensor *const *xs, int dim, wh_tensor **out) {
    char a[128], b[128];
    if (n < 1) return wh_fail(WH_ERR_ARG, "cat: needs at least one tensor");
    for (int i = 0; i < n; i++)
        if (!xs[i]) return wh_fail(WH_ERR_ARG, "cat: tensor %d is missing", i + 1);
    const wh_tensor *x0 = xs[0];
    int d = dim;
    if (d < 0) d += x0->ndim;
    if (d < 0 || d >= x0->ndim)
        return wh_fail(WH_ERR_INDEX, "cat: dimension %d is out of range for tensors of shape %s",
                       dim, wh_shape_str(x0, a, sizeof a));
    int64_t shape[WH_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const wh_tensor *x = xs[i];
        if (x->dtype != x0->dtype)
            return wh_fail(WH_ERR_DTYPE, "cat: tensor %d is %s but tensor 1 is %s", i + 1,
                           wh_dtype_name(x->dtype), wh_dtype_name(x0->dtype));
        WH_TRY(wh_check_device("cat", x));
        WH_TRY(wh_check_same_device("cat", x0, x));
        bool fits = x->ndim == x0->ndim;
        for (int k = 0; fits && k < x->ndim; k++) fits = k == d || x->shape[k] == x0->shape[k];
        if (!fits)
            return wh_fail(WH_ERR_SHAPE, "cat: tensor %d has shape %s, which does not match "
                           "tensor 1's shape %s outside dimension %d", i + 1,
                           wh_shape_str(x, b, sizeof b), wh_shape_str(x0, a, sizeof a), d + 1);
        shape[d] += x->shape[d];
    }
    WH_TRY(wh_tensor_empty(x0->dtype, x0->ndim, shape, x0->storage->allocator, out));
    int64_t start = 0;
    wh_status st = WH_OK;
    for (int i = 0; i < n && st == WH_OK; i++) {
        wh_tensor *part = NULL;
        st = wh_narrow_raw(*out, d, start, xs[i]->shape[d], &part);
        if (st == WH_OK) st = wh_copy_into(part, xs[i]);
        wh_tensor_release(part);
        start += xs[i]->shape[d];
    }
    wh_node *node = NULL;
    if (st == WH_OK && wh_dtype_is_float(x0->dtype))
        st = wh_record("cat", concat_backward, n, xs, *out, &node);
    if (node) node->iarg[0] = d;
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

/* ---- pad -------------------------------------------------------------------------------------
 * Every mode is a map from output index to input index along each padded dim
 * (-1 for the constant fill), so one gather loop does the forward pass and
 * the matching scatter-add does the backward (where reflect and replicate
 * send several outputs to one input). */

typedef struct {
    int ndim, first;                 /* dims first..ndim-1 are padded */
    int64_t in_shape[WH_MAX_DIMS], out_shape[WH_MAX_DIMS];
    int64_t before[WH_MAX_DIMS];     /* padding before each dim (0 if not padded) */
    int64_t *map[WH_MAX_DIMS];       /* map[d][o] for padded dims */
    int64_t *buf;
} pad_plan;

static void pad_plan_free(void *p) {
    pad_plan *plan = p;
    if (!plan) return;
    free(plan->buf);
    free(plan);
}

static wh_status pad_plan_new(const wh_tensor *x, int npairs, const int64_t *pads, wh_pad_mode mode,
                              pad_plan **out) {
    char a[128];
    if ((int)mode < WH_PAD_CONSTANT || (int)mode > WH_PAD_REPLICATE)
        return wh_fail(WH_ERR_ARG, "pad: unknown mode %d (constant, reflect or replicate)",
                       (int)mode);
    if (npairs < 0 || npairs > x->ndim)
        return wh_fail(WH_ERR_ARG, "pad: %d (before, after) pairs given for a tensor of shape "
                       "%s, which has only %d dimensions", npairs, wh_shape_str(x, a, sizeof a),
                       x->ndim);
    pad_plan *p = calloc(1, sizeof *p);
    if (!p) return wh_fail(WH_ERR_MEMORY, "pad: out of memory");
    p->ndim = x->ndim;
    p->first = x->ndim - npairs;
    memcpy(p->in_shape, x->shape, sizeof p->in_shape);
    memcpy(p->out_shape, x->shape, sizeof p->out_shape);
    int64_t total = 0;
    for (int k = 0; k < npairs; k++) {
        int d = x->ndim - 1 - k;
        int64_t before = pads[2 * k], after = pads[2 * k + 1], size = x->shape[d];
        int64_t osize = size + before + after;
        if (osize < 0) {
            pad_plan_free(p);
            return wh_fail(WH_ERR_ARG, "pad: padding (%lld, %lld) of dimension %d would give a "
                           "negative size for input shape %s", (long long)before,
                           (long long)after, d + 1, wh_shape_str(x, a, sizeof a));
        }
        if (mode == WH_PAD_REFLECT && (before >= size || after >= size) && (before > 0 || after > 0)) {
            pad_plan_free(p);
            return wh_fail(WH_ERR_ARG, "pad: reflect padding (%lld, %lld) of dimension %d must "
                           "be smaller than its size %lld (input shape %s)", (long long)before,
                           (long long)after, d + 1, (long long)size, wh_shape_str(x, a, sizeof a));
        }
        if (mode == WH_PAD_REPLICATE && size == 0 && osize > 0) {
            pad_plan_free(p);
            return wh_fail(WH_ERR_ARG, "pad: replicate padding of dimension %d needs a non-empty "
                           "input (input shape %s)", d + 1, wh_shape_str(x, a, sizeof a));
        }
        p->out_shape[d] = osize;
        total += osize;
    }
    p->buf = malloc(sizeof(int64_t) * (size_t)(total > 0 ? total : 1));
    if (!p->buf) {
        pad_plan_free(p);
        return wh_fail(WH_ERR_MEMORY, "pad: out of memory");
    }
    int64_t *m = p->buf;
    for (int d = p->first; d < p->ndim; d++) {
        int k = p->ndim - 1 - d;
        int64_t before = pads[2 * k], size = x->shape[d];
        p->before[d] = before;
        p->map[d] = m;
        for (int64_t o = 0; o < p->out_shape[d]; o++) m[o] = wh_pad_source(o, before, size, (int)mode);
        m += p->out_shape[d];
    }
    *out = p;
    return WH_OK;
}

/* For output row r (all dims but the last), the input offset of its start
 * along the leading dims, or -1 when the row lies in constant padding. */
static int64_t pad_row_offset(const pad_plan *p, const int64_t *in_stride, int64_t r) {
    int64_t off = 0;
    for (int d = p->ndim - 2; d >= 0; d--) {
        int64_t o = r % p->out_shape[d];
        r /= p->out_shape[d];
        int64_t i = d >= p->first ? p->map[d][o] : o;
        if (i < 0) return -1;
        off += i * in_stride[d];
    }
    return off;
}

static void pad_forward_loop(const pad_plan *p, const wh_tensor *x, wh_tensor *y, double value) {
    int nd = p->ndim, last = nd - 1;
    int64_t inner = nd ? p->out_shape[last] : 1, total = wh_tensor_numel(y);
    int64_t rows = inner ? total / inner : 0;
    const int64_t *lmap = nd && last >= p->first ? p->map[last] : NULL;
    int64_t ls = nd ? x->stride[last] : 0;
#define PAD_ROWS(T)                                                                           \
    do {                                                                                     \
        const T *X = (const T *)x->storage->data + x->offset;                                \
        T *Y = wh_tensor_data(y), v = (T)value;                                              \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t r = 0; r < rows; r++) {                                                 \
            int64_t off = pad_row_offset(p, x->stride, r);                                   \
            T *yr = Y + r * inner;                                                           \
            if (off < 0) {                                                                   \
                for (int64_t o = 0; o < inner; o++) yr[o] = v;                               \
            } else if (lmap) {                                                               \
                for (int64_t o = 0; o < inner; o++)                                          \
                    yr[o] = lmap[o] < 0 ? v : X[off + lmap[o] * ls];                         \
            } else {                                                                         \
                for (int64_t o = 0; o < inner; o++) yr[o] = X[off + o * ls];                 \
            }                                                                                \
        }                                                                                    \
    } while (0)
    if (x->dtype == WH_FLOAT32) PAD_ROWS(float);
    else if (x->dtype == WH_FLOAT64) PAD_ROWS(double);
    else {
        /* uint8 images: the fill value saturates like every uint8 store. */
        double r = value < 0 ? 0 : value > 255 ? 255 : value;
        value = (double)(uint8_t)(r + 0.5);
        PAD_ROWS(uint8_t);
    }
#undef PAD_ROWS
}

static wh_status pad_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const pad_plan *p = n->ctx;
    const wh_backend *be = wh_backend_of(g);
    if (be) {
        const wh_meta *m = &n->input_meta[0];
        WH_TRY(wh_tensor_empty(m->dtype, m->ndim, m->shape, g->storage->allocator, &gin[0]));
        return be->pad_grad(g, p->before, (int)n->iarg[0], gin[0]);
    }
    WH_TRY(zeros_of_meta(&n->input_meta[0], g, &gin[0]));
    wh_tensor *x = gin[0];
    int nd = p->ndim, last = nd - 1;
    int64_t inner = nd ? p->out_shape[last] : 1, total = wh_tensor_numel(g);
    int64_t rows = inner ? total / inner : 0;
    /* Rows that differ in an unpadded leading dim write disjoint parts of the
     * input gradient, so those blocks run in parallel; inside a block,
     * mirrored rows add into the same input row and run in order. */
    int64_t blocks = 1;
    for (int d = 0; d < p->first && d < last; d++) blocks *= p->out_shape[d];
    int64_t per_block = blocks ? rows / blocks : 0;
    const int64_t *lmap = nd && last >= p->first ? p->map[last] : NULL;
#define PAD_GRAD(T)                                                                           \
    do {                                                                                     \
        T *X = wh_tensor_data(x);                                                            \
        const T *G = wh_tensor_data(g);                                                      \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                                \
        for (int64_t b = 0; b < blocks; b++) {                                               \
            for (int64_t r = b * per_block; r < (b + 1) * per_block; r++) {                  \
                int64_t off = pad_row_offset(p, x->stride, r);                               \
                if (off < 0) continue;                                                       \
                const T *gr = G + r * inner;                                                 \
                if (lmap) {                                                                  \
                    for (int64_t o = 0; o < inner; o++)                                      \
                        if (lmap[o] >= 0) X[off + lmap[o]] += gr[o];                         \
                } else {                                                                     \
                    for (int64_t o = 0; o < inner; o++) X[off + o] += gr[o];                 \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    } while (0)
    if (x->dtype == WH_FLOAT32) PAD_GRAD(float);
    else PAD_GRAD(double);
#undef PAD_GRAD
    return WH_OK;
}

wh_status wh_pad(wh_tensor *x, int npairs, const int64_t *pads, wh_pad_mode mode, double value,
                 wh_tensor **out) {
    WH_TRY(wh_check_device("pad", x));
    if (x->ndim == 0 && npairs == 0) return wh_clone(x, out);
    pad_plan *p = NULL;
    WH_TRY(pad_plan_new(x, npairs, pads, mode, &p));
    wh_status st = wh_tensor_empty(x->dtype, p->ndim, p->out_shape, x->storage->allocator, out);
    if (st != WH_OK) {
        pad_plan_free(p);
        return st;
    }
    const wh_backend *be = wh_backend_of(x);
    if (be) {
        /* uint8 fill values saturate and round as on the CPU */
        double v = value;
        if (x->dtype == WH_UINT8) {
            double r = v < 0 ? 0 : v > 255 ? 255 : v;
            v = (double)(uint8_t)(r + 0.5);
        }
        st = be->pad(x, p->before, (int)mode, v, *out);
    } else {
        pad_forward_loop(p, x, *out, value);
    }
    wh_node *node = NULL;
    if (st == WH_OK && wh_dtype_is_float(x->dtype))
        st = wh_record("pad", pad_backward, 1, &x, *out, &node);
    if (node) {
        node->ctx = p;
        node->free_ctx = pad_plan_free;
        node->iarg[0] = mode;
    } else {
        pad_plan_free(p);
    }
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}
