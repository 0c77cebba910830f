/* Losses: the pixel losses (MSE, L1, Keras' binary cross-entropy) with an
 * optional weight map, and cross-entropy over class indices.  Per-element
 * formulas live in kernels/nn_math.h (shared with CUDA).  Sums are
 * accumulated in double whatever the dtype, so a float32 mean over a large
 * image does not lose the small terms. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels/nn_math.h"
#include "ops_util.h"

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */

static const char *loss_name(int kind) {
    return kind == WH_LOSS_MSE ? "mse_loss" : kind == WH_LOSS_L1 ? "l1_loss" : "bce_loss";
}

static wh_status check_reduction(const char *op, wh_reduction r) {
    if (r != WH_REDUCE_MEAN && r != WH_REDUCE_SUM && r != WH_REDUCE_NONE)
        return wh_fail(WH_ERR_ARG, "%s: unknown reduction %d (mean, sum or none)", op, (int)r);
    return WH_OK;
}

/* ---- pixel losses ------------------------------------------------------------------- */

/* One pass over pred's shape with pred, target and weight (each strided,
 * weight broadcast), writing the per-element loss (reduction none) or
 * returning the weighted sum. */
static double pixel_loss_forward(int kind, wh_tensor *pred, wh_tensor *target, wh_tensor *weight,
                                 wh_tensor *elem_out) {
    wh_tensor *ops[3] = {pred, target, weight ? weight : pred};
    wh_row_iter it;
    wh_row_iter_init(&it, pred->ndim, pred->shape, 3, ops);
    int64_t sp = it.stride[0][it.ndim - 1], st = it.stride[1][it.ndim - 1],
            sw = it.stride[2][it.ndim - 1], total = it.rows * it.inner;
    bool has_w = weight != NULL;
    double acc = 0;
#define LOSS_FWD(T, SUF)                                                                     \
    do {                                                                                    \
        const T *P = pred->storage->data, *Tg = target->storage->data;                      \
        const T *Wt = (const T *)ops[2]->storage->data;                                     \
        T *O = elem_out ? wh_tensor_data(elem_out) : NULL;                                  \
        _Pragma("omp parallel for reduction(+ : acc) if (total > PARALLEL_MIN)")            \
        for (int64_t r = 0; r < it.rows; r++) {                                             \
            int64_t offs[3];                                                                \
            wh_row_iter_offsets(&it, r, offs);                                              \
            for (int64_t i = 0; i < it.inner; i++) {                                        \
                T l = wh_loss_forward_##SUF(kind, P[offs[0] + i * sp], Tg[offs[1] + i * st]); \
                if (has_w) l *= Wt[offs[2] + i * sw];                                       \
                if (O) O[r * it.inner + i] = l;                                             \
                else acc += (double)l;                                                      \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (pred->dtype == WH_FLOAT32) LOSS_FWD(float, f32);
    else LOSS_FWD(double, f64);
#undef LOSS_FWD
    return acc;
}

/* Saved: 0 pred, 1 target, 2 weight (when iarg[2]).  iarg[0]: kind,
 * iarg[1]: reduction.  The gradients of pred and target are full-shape;
 * the weight's is summed back over the dims it was broadcast along. */
static wh_status pixel_loss_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    int kind = (int)n->iarg[0];
    wh_reduction red = (wh_reduction)n->iarg[1];
    bool has_w = n->iarg[2] != 0;
    wh_tensor *pred, *target, *weight = NULL, *gw_full = NULL;
    WH_TRY(wh_node_saved(n, 0, &pred));
    WH_TRY(wh_node_saved(n, 1, &target));
    if (has_w) WH_TRY(wh_node_saved(n, 2, &weight));
    bool need_p = wh_node_needs_grad(n, 0), need_t = wh_node_needs_grad(n, 1),
         need_w = has_w && wh_node_needs_grad(n, 2);
    wh_status st = WH_OK;
    if (need_p) st = wh_tensor_empty_like(pred, &gin[0]);
    if (st == WH_OK && need_t) st = wh_tensor_empty_like(pred, &gin[1]);
    if (st == WH_OK && need_w) st = wh_tensor_empty_like(pred, &gw_full);
    const wh_backend *be = wh_backend_of(pred);
    if (st == WH_OK && be)
        st = be->pixel_loss_grad(kind, red, pred, target, weight, g, gin[0], gin[1], gw_full);
    if (st != WH_OK) {
        wh_tensor_clear(&gin[0]);
        wh_tensor_clear(&gin[1]);
        wh_tensor_release(gw_full);
        return st;
    }
    if (be) goto weight_grad;
    int64_t numel = wh_tensor_numel(pred);
    /* A reduced loss has a one-element gradient shared by every element. */
    double gscale = 1;
    if (red != WH_REDUCE_NONE) {
        gscale = g->dtype == WH_FLOAT32 ? *(const float *)wh_tensor_data(g)
                                        : *(const double *)wh_tensor_data(g);
        if (red == WH_REDUCE_MEAN) gscale /= (double)numel;
    }
    wh_tensor *ops[3] = {pred, target, weight ? weight : pred};
    wh_row_iter it;
    wh_row_iter_init(&it, pred->ndim, pred->shape, 3, ops);
    int64_t sp = it.stride[0][it.ndim - 1], stt = it.stride[1][it.ndim - 1],
            sw = it.stride[2][it.ndim - 1], total = it.rows * it.inner;
    bool per_elem = red == WH_REDUCE_NONE;
#define LOSS_BACK(T, SUF)                                                                    \
    do {                                                                                    \
        const T *P = pred->storage->data, *Tg = target->storage->data;                      \
        const T *Wt = (const T *)ops[2]->storage->data;                                     \
        const T *G = wh_tensor_data(g);                                                     \
        T *DP = need_p ? wh_tensor_data(gin[0]) : NULL;                                     \
        T *DT = need_t ? wh_tensor_data(gin[1]) : NULL;                                     \
        T *DW = need_w ? wh_tensor_data(gw_full) : NULL;                                    \
        T gs = (T)gscale;                                                                   \
        _Pragma("omp parallel for if (total > PARALLEL_MIN)")                               \
        for (int64_t r = 0; r < it.rows; r++) {                                             \
            int64_t offs[3];                                                                \
            wh_row_iter_offsets(&it, r, offs);                                              \
            for (int64_t i = 0; i < it.inner; i++) {                                        \
                int64_t e = r * it.inner + i;                                               \
                T p = P[offs[0] + i * sp], t = Tg[offs[1] + i * stt];                       \
                T gg = per_elem ? G[e] : gs;                                                \
                if (DW) DW[e] = gg * wh_loss_forward_##SUF(kind, p, t);                     \
                if (has_w) gg *= Wt[offs[2] + i * sw];                                      \
                if (DP) DP[e] = gg * wh_loss_grad_pred_##SUF(kind, p, t);                   \
                if (DT) DT[e] = gg * wh_loss_grad_target_##SUF(kind, p, t);                 \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (pred->dtype == WH_FLOAT32) LOSS_BACK(float, f32);
    else LOSS_BACK(double, f64);
#undef LOSS_BACK
weight_grad:
    if (gw_full) {
        st = wh_sum_to_meta(gw_full, &n->input_meta[2], &gin[2]);
        wh_tensor_release(gw_full);
    }
    return st;
}

static wh_status pixel_loss(int kind, wh_tensor *pred, wh_tensor *target, wh_tensor *weight,
                            wh_reduction r, wh_tensor **out) {
    const char *op = loss_name(kind);
    char a[128], b[128];
    *out = NULL;
    WH_TRY(wh_check_float_dev(op, "pred", pred));
    WH_TRY(wh_check_float_dev(op, "target", target));
    WH_TRY(wh_check_same_dtype(op, pred, target));
    WH_TRY(check_reduction(op, r));
    if (!wh_tensor_same_shape(pred, target))
        return wh_fail(WH_ERR_SHAPE, "%s: pred of shape %s and target of shape %s differ (losses "
                       "do not broadcast pred against target)", op,
                       wh_shape_str(pred, a, sizeof a), wh_shape_str(target, b, sizeof b));
    if (weight) {
        WH_TRY(wh_check_float_dev(op, "weight", weight));
        WH_TRY(wh_check_same_dtype(op, pred, weight));
        int nd;
        int64_t shape[WH_MAX_DIMS];
        bool fits = wh_broadcast_shape(op, pred, weight, &nd, shape) == WH_OK && nd == pred->ndim;
        for (int d = 0; fits && d < nd; d++) fits = shape[d] == pred->shape[d];
        if (!fits)
            return wh_fail(WH_ERR_SHAPE, "%s: weight of shape %s cannot be broadcast to pred's "
                           "shape %s", op, wh_shape_str(weight, b, sizeof b),
                           wh_shape_str(pred, a, sizeof a));
    }
    wh_tensor *y = NULL;
    const wh_backend *be = wh_backend_of(pred);
    if (be) {
        WH_TRY(wh_tensor_empty(pred->dtype, r == WH_REDUCE_NONE ? pred->ndim : 0, pred->shape,
                               pred->storage->allocator, &y));
        wh_status st = be->pixel_loss(kind, r, pred, target, weight, y);
        if (st != WH_OK) {
            wh_tensor_release(y);
            return st;
        }
    } else if (r == WH_REDUCE_NONE) {
        WH_TRY(wh_tensor_empty(pred->dtype, pred->ndim, pred->shape, NULL, &y));
        pixel_loss_forward(kind, pred, target, weight, y);
    } else {
        double sum = pixel_loss_forward(kind, pred, target, weight, NULL);
        if (r == WH_REDUCE_MEAN) sum /= (double)wh_tensor_numel(pred);
        WH_TRY(wh_tensor_full(pred->dtype, 0, NULL, sum, &y));
    }
    wh_tensor *inputs[3] = {pred, target, weight};
    wh_node *node;
    wh_status st = wh_record(op, pixel_loss_backward, 3, inputs, y, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = kind;
        node->iarg[1] = r;
        node->iarg[2] = weight != NULL;
        if ((st = wh_node_save(node, pred)) == WH_OK && (st = wh_node_save(node, target)) == WH_OK &&
            weight)
            st = wh_node_save(node, weight);
    }
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

wh_status wh_mse_loss(wh_tensor *pred, wh_tensor *target, wh_tensor *weight, wh_reduction r,
                      wh_tensor **out) {
    return pixel_loss(WH_LOSS_MSE, pred, target, weight, r, out);
}

wh_status wh_l1_loss(wh_tensor *pred, wh_tensor *target, wh_tensor *weight, wh_reduction r,
                     wh_tensor **out) {
    return pixel_loss(WH_LOSS_L1, pred, target, weight, r, out);
}

wh_status wh_bce_loss(wh_tensor *pred, wh_tensor *target, wh_tensor *weight, wh_reduction r,
                      wh_tensor **out) {
    return pixel_loss(WH_LOSS_BCE, pred, target, weight, r, out);
}

/* ---- cross-entropy ------------------------------------------------------------------- */

/* Cross-entropy works on tiles of up to CE_TILE neighbouring positions of
 * one image, so its loops over classes read contiguous rows of the (N,C,S)
 * logits instead of striding S elements for every class.  The exponentials
 * run in the logits' dtype (expf is about twice as fast as exp); sums and
 * the log-sum-exp stay in double. */
#define CE_TILE 256

/* The validated class of each (n, position) element (-1 when ignored) and
 * its log-sum-exp, kept from forward for backward. */
typedef struct {
    int64_t *cls;
    double *lse;
} ce_ctx;

static void ce_ctx_free(void *p) {
    ce_ctx *c = p;
    if (!c) return;
    free(c->cls);
    free(c->lse);
    free(c);
}

/* On a device the class ids and log-sum-exps stay in device memory. */
typedef struct {
    wh_devbuf *cls, *lse;
} ce_device_ctx;

static void ce_device_ctx_free(void *p) {
    ce_device_ctx *c = p;
    if (!c) return;
    wh_devbuf_free(c->cls);
    wh_devbuf_free(c->lse);
    free(c);
}

/* "[2, 3]": the position of flat element i of `shape`, counted from base. */
static const char *position_str(int ndim, const int64_t *shape, int64_t i, int64_t base,
                                char *buf, size_t n) {
    int64_t idx[WH_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = shape[d] ? i % shape[d] : 0;
        i = shape[d] ? i / shape[d] : 0;
    }
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? ", " : "", (long long)(idx[d] + base));
    if (len < n) snprintf(buf + len, n - len, "]");
    return buf;
}

/* Reads the target (any dtype, any strides) into class ids counted from 0,
 * checking each against [base, base + C) and ignore_index; a message names
 * the position counted from pos_base. */
static wh_status read_classes(const char *op, const wh_tensor *target, int64_t C,
                              int64_t ignore_index, int64_t base, int64_t pos_base,
                              int64_t *cls) {
    const char *data = target->storage->data;
    int64_t i = 0, bad = -1;
    double bad_value = 0;
    WH_FOR_EACH_OFFSET(target, off, {
        double v;
        switch (target->dtype) {
        case WH_FLOAT32: v = ((const float *)data)[off]; break;
        case WH_FLOAT64: v = ((const double *)data)[off]; break;
        default: v = ((const uint8_t *)data)[off]; break;
        }
        if (bad < 0) {
            if (v == (double)ignore_index) cls[i] = -1;
            else if (v == floor(v) && v >= (double)base && v < (double)base + (double)C)
                cls[i] = (int64_t)v - base;
            else {
                bad = i;
                bad_value = v;
            }
        }
        i++;
    });
    if (bad >= 0) {
        char pos[160];
        position_str(target->ndim, target->shape, bad, pos_base, pos, sizeof pos);
        return wh_fail(WH_ERR_INDEX, "%s: target value %g at %s is not a class id in [%lld, %lld] "
                       "(logits have %lld classes; ignore_index is %lld)", op, bad_value, pos,
                       (long long)base, (long long)(base + C - 1), (long long)C,
                       (long long)ignore_index);
    }
    return WH_OK;
}

/* Saved: 0 the contiguous logits, 1 the class weights (when iarg[1]).
 * iarg[0]: reduction; farg[0]: the total weight of the mean's denominator. */
static wh_status cross_entropy_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const ce_ctx *ctx = n->ctx;
    wh_reduction red = (wh_reduction)n->iarg[0];
    wh_tensor *z, *cw = NULL;
    WH_TRY(wh_node_saved(n, 0, &z));
    if (n->iarg[1]) WH_TRY(wh_node_saved(n, 1, &cw));
    int64_t N = z->shape[0], C = z->shape[1], S = 1;
    for (int d = 2; d < z->ndim; d++) S *= z->shape[d];
    WH_TRY(wh_tensor_empty_like(z, &gin[0]));
    const wh_backend *be = wh_backend_of(z);
    if (be) {
        const ce_device_ctx *dc = n->ctx;
        return be->cross_entropy_grad(z, dc->cls->ptr, dc->lse->ptr, cw, red, n->farg[0], g,
                                      gin[0]);
    }
    double gscale = 1;
    if (red != WH_REDUCE_NONE) {
        gscale = g->dtype == WH_FLOAT32 ? *(const float *)wh_tensor_data(g)
                                        : *(const double *)wh_tensor_data(g);
        if (red == WH_REDUCE_MEAN) gscale /= n->farg[0];
    }
    bool per_elem = red == WH_REDUCE_NONE;
    const int64_t *cls = ctx->cls;
    const double *lse = ctx->lse;
    /* d/dz_c of -w_y*(z_y - lse) is w_y*(softmax_c - [c == y]).  Tiles as
     * in forward. */
    int64_t ntiles = (S + CE_TILE - 1) / CE_TILE;
#define CE_BACK(T, EXP)                                                                         \
    do {                                                                                    \
        const T *Z = wh_tensor_data(z), *G = wh_tensor_data(g);                             \
        const T *CW = cw ? (const T *)cw->storage->data : NULL;                             \
        T *D = wh_tensor_data(gin[0]);                                                      \
        _Pragma("omp parallel for if (N * C * S > PARALLEL_MIN)")                           \
        for (int64_t tile = 0; tile < N * ntiles; tile++) {                                 \
            int64_t b = tile / ntiles, s0 = (tile % ntiles) * CE_TILE;                      \
            int64_t len = S - s0 < CE_TILE ? S - s0 : CE_TILE, e0 = b * S + s0;             \
            double f[CE_TILE];                                                              \
            for (int64_t i = 0; i < len; i++) {                                             \
                int64_t k = cls[e0 + i];                                                    \
                double wk = k < 0 ? 0.0 : CW ? (double)CW[cw->offset + k * cw->stride[0]] : 1.0; \
                f[i] = (per_elem ? (double)G[e0 + i] : gscale) * wk;                        \
            }                                                                               \
            for (int64_t c = 0; c < C; c++) {                                               \
                const T *zr = Z + (b * C + c) * S + s0;                                     \
                T *dr = D + (b * C + c) * S + s0;                                           \
                for (int64_t i = 0; i < len; i++)                                           \
                    dr[i] = (T)(f[i] * ((double)EXP((T)((double)zr[i] - lse[e0 + i])) -                  \
                                        (cls[e0 + i] == c ? 1.0 : 0.0)));                   \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (z->dtype == WH_FLOAT32) CE_BACK(float, expf);
    else CE_BACK(double, exp);
#undef CE_BACK
    return WH_OK;
}

/* A CPU copy of a device tensor (a new reference). */
static wh_status host_copy(wh_tensor *t, wh_tensor **out) {
    WH_TRY(wh_tensor_empty(t->dtype, t->ndim, t->shape, NULL, out));
    wh_status st = wh_copy_into(*out, t);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

/* cross_entropy's device path.  The target is checked on the host, with
 * the CPU's messages: it is N*S values, small next to the logits, and the
 * mean's denominator (a sum of class weights) is known before the kernels
 * run, so the loss needs no read-back. */
static wh_status cross_entropy_device(const wh_backend *be, wh_tensor *logits, wh_tensor *target,
                                      wh_tensor *class_weight, int64_t ignore_index,
                                      int64_t base, int64_t pos_base, wh_reduction r,
                                      int64_t C, int64_t E, wh_tensor **out) {
    const char *op = "cross_entropy";
    wh_allocator *alloc = logits->storage->allocator;
    wh_tensor *ht = NULL, *hw = NULL, *z = NULL, *y = NULL;
    int64_t *cls = malloc(sizeof(int64_t) * (size_t)(E > 0 ? E : 1));
    ce_device_ctx *ctx = calloc(1, sizeof *ctx);
    wh_status st = cls && ctx ? WH_OK : wh_fail(WH_ERR_MEMORY, "%s: out of memory", op);
    if (st == WH_OK) st = host_copy(target, &ht);
    if (st == WH_OK) st = read_classes(op, ht, C, ignore_index, base, pos_base, cls);
    if (st == WH_OK && class_weight) st = host_copy(class_weight, &hw);
    double weight_sum = 0;
    for (int64_t e = 0; st == WH_OK && e < E; e++) {
        if (cls[e] < 0) continue;
        int64_t k = cls[e];
        weight_sum += !hw ? 1.0 : hw->dtype == WH_FLOAT32
                         ? (double)((const float *)hw->storage->data)[hw->offset + k * hw->stride[0]]
                         : ((const double *)hw->storage->data)[hw->offset + k * hw->stride[0]];
    }
    if (st == WH_OK) st = wh_devbuf_new(alloc, sizeof(int64_t) * (size_t)(E > 0 ? E : 1), &ctx->cls);
    if (st == WH_OK) st = wh_devbuf_new(alloc, sizeof(double) * (size_t)(E > 0 ? E : 1), &ctx->lse);
    if (st == WH_OK && E > 0) st = alloc->copy_from_host(alloc, ctx->cls->ptr, cls, sizeof(int64_t) * (size_t)E);
    if (st == WH_OK) st = wh_contig(logits, &z);
    if (st == WH_OK)
        st = wh_tensor_empty(logits->dtype, r == WH_REDUCE_NONE ? target->ndim : 0, target->shape,
                             alloc, &y);
    if (st == WH_OK)
        st = be->cross_entropy(z, ctx->cls->ptr, class_weight, r, weight_sum, ctx->lse->ptr, y);
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record(op, cross_entropy_backward, 1, &logits, y, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = r;
        node->iarg[1] = class_weight != NULL;
        node->farg[0] = weight_sum;
        node->ctx = ctx;
        node->free_ctx = ce_device_ctx_free;
        ctx = NULL;
        if ((st = wh_node_save(node, z)) == WH_OK && class_weight)
            st = wh_node_save(node, class_weight);
    }
    free(cls);
    ce_device_ctx_free(ctx);
    wh_tensor_release(ht);
    wh_tensor_release(hw);
    wh_tensor_release(z);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

static wh_status cross_entropy(wh_tensor *logits, wh_tensor *target, wh_tensor *class_weight,
                               int64_t ignore_index, int64_t base, int64_t pos_base,
                               wh_reduction r, wh_tensor **out) {
    const char *op = "cross_entropy";
    char a[128], b[128];
    *out = NULL;
    WH_TRY(wh_check_float_dev(op, "logits", logits));
    WH_TRY(check_reduction(op, r));
    if (!target) return wh_fail(WH_ERR_ARG, "%s: target is missing", op);
    WH_TRY(wh_check_device(op, target));
    WH_TRY(wh_check_same_device(op, logits, target));
    if (logits->ndim < 2)
        return wh_fail(WH_ERR_SHAPE, "%s: logits must be (N,C) or (N,C,H,W), got shape %s", op,
                       wh_shape_str(logits, a, sizeof a));
    bool fits = target->ndim == logits->ndim - 1 && target->shape[0] == logits->shape[0];
    for (int d = 1; fits && d < target->ndim; d++) fits = target->shape[d] == logits->shape[d + 1];
    if (!fits)
        return wh_fail(WH_ERR_SHAPE, "%s: target of shape %s does not fit logits of shape %s "
                       "(logits (N,C) take target (N); (N,C,H,W) take (N,H,W))", op,
                       wh_shape_str(target, b, sizeof b), wh_shape_str(logits, a, sizeof a));
    int64_t N = logits->shape[0], C = logits->shape[1], S = 1;
    for (int d = 2; d < logits->ndim; d++) S *= logits->shape[d];
    if (class_weight) {
        WH_TRY(wh_check_float_dev(op, "class weight", class_weight));
        WH_TRY(wh_check_same_device(op, logits, class_weight));
        if (class_weight->dtype != logits->dtype)
            return wh_fail(WH_ERR_DTYPE, "%s: class weight is %s but logits are %s", op,
                           wh_dtype_name(class_weight->dtype), wh_dtype_name(logits->dtype));
        if (class_weight->ndim != 1 || class_weight->shape[0] != C)
            return wh_fail(WH_ERR_SHAPE, "%s: class weight must have shape [%lld] (one per class "
                           "of logits %s), got %s", op, (long long)C,
                           wh_shape_str(logits, a, sizeof a),
                           wh_shape_str(class_weight, b, sizeof b));
    }
    int64_t E = N * S;
    const wh_backend *be = wh_backend_of(logits);
    if (be)
        return cross_entropy_device(be, logits, target, class_weight, ignore_index, base, pos_base,
                                    r, C, E, out);
    ce_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx) {
        ctx->cls = malloc(sizeof(int64_t) * (size_t)(E > 0 ? E : 1));
        ctx->lse = malloc(sizeof(double) * (size_t)(E > 0 ? E : 1));
    }
    if (!ctx || !ctx->cls || !ctx->lse) {
        ce_ctx_free(ctx);
        return wh_fail(WH_ERR_MEMORY, "%s: out of memory", op);
    }
    wh_tensor *z = NULL, *y = NULL;
    wh_status st = read_classes(op, target, C, ignore_index, base, pos_base, ctx->cls);
    if (st == WH_OK) st = wh_contig(logits, &z);
    if (st == WH_OK) {
        if (r == WH_REDUCE_NONE) st = wh_tensor_empty(logits->dtype, target->ndim, target->shape, NULL, &y);
        else st = wh_tensor_empty(logits->dtype, 0, NULL, NULL, &y);
    }
    if (st != WH_OK) goto done;

    const int64_t *cls = ctx->cls;
    double *lse = ctx->lse, loss_sum = 0, weight_sum = 0;
    bool per_elem = r == WH_REDUCE_NONE;
    const wh_tensor *cw = class_weight;
    int64_t ntiles = (S + CE_TILE - 1) / CE_TILE;
#define CE_FWD(T, EXP)                                                                          \
    do {                                                                                    \
        const T *Z = wh_tensor_data(z);                                                     \
        const T *CW = cw ? (const T *)cw->storage->data : NULL;                             \
        T *O = per_elem ? wh_tensor_data(y) : NULL;                                         \
        _Pragma("omp parallel for reduction(+ : loss_sum, weight_sum) if (N * C * S > PARALLEL_MIN)") \
        for (int64_t tile = 0; tile < N * ntiles; tile++) {                                 \
            int64_t bb = tile / ntiles, s0 = (tile % ntiles) * CE_TILE;                     \
            int64_t len = S - s0 < CE_TILE ? S - s0 : CE_TILE, e0 = bb * S + s0;            \
            double m[CE_TILE], acc[CE_TILE];                                                \
            const T *z0 = Z + bb * C * S + s0;                                              \
            for (int64_t i = 0; i < len; i++) {                                             \
                m[i] = (double)z0[i];                                                       \
                acc[i] = 0;                                                                 \
            }                                                                               \
            for (int64_t c = 1; c < C; c++) {                                               \
                const T *zr = z0 + c * S;                                                   \
                for (int64_t i = 0; i < len; i++) m[i] = (double)zr[i] > m[i] ? (double)zr[i] : m[i]; \
            }                                                                               \
            for (int64_t c = 0; c < C; c++) {                                               \
                const T *zr = z0 + c * S;                                                   \
                for (int64_t i = 0; i < len; i++) acc[i] += (double)EXP((T)((double)zr[i] - m[i]));      \
            }                                                                               \
            for (int64_t i = 0; i < len; i++) {                                             \
                int64_t e = e0 + i, k = cls[e];                                             \
                lse[e] = m[i] + log(acc[i]);                                                \
                double l = 0;                                                               \
                if (k >= 0) {                                                               \
                    double wk = CW ? (double)CW[cw->offset + k * cw->stride[0]] : 1.0;      \
                    l = -wk * ((double)z0[k * S + i] - lse[e]);                             \
                    weight_sum += wk;                                                       \
                }                                                                           \
                if (O) O[e] = (T)l;                                                         \
                else loss_sum += l;                                                         \
            }                                                                               \
        }                                                                                   \
    } while (0)
    if (logits->dtype == WH_FLOAT32) CE_FWD(float, expf);
    else CE_FWD(double, exp);
#undef CE_FWD
    if (!per_elem) {
        /* With every element ignored the mean is 0/0 = NaN, as in PyTorch. */
        double v = r == WH_REDUCE_MEAN ? loss_sum / weight_sum : loss_sum;
        if (y->dtype == WH_FLOAT32) *(float *)wh_tensor_data(y) = (float)v;
        else *(double *)wh_tensor_data(y) = v;
    }
    wh_node *node;
    st = wh_record(op, cross_entropy_backward, 1, &logits, y, &node);
    if (st == WH_OK && node) {
        node->iarg[0] = r;
        node->iarg[1] = class_weight != NULL;
        node->farg[0] = weight_sum;
        node->ctx = ctx;
        node->free_ctx = ce_ctx_free;
        ctx = NULL;
        if ((st = wh_node_save(node, z)) == WH_OK && class_weight)
            st = wh_node_save(node, class_weight);
    }
done:
    ce_ctx_free(ctx);
    wh_tensor_release(z);
    if (st != WH_OK) wh_tensor_clear(&y);
    *out = y;
    return st;
}

wh_status wh_cross_entropy(wh_tensor *logits, wh_tensor *target, wh_tensor *class_weight,
                           int64_t ignore_index, wh_reduction r, wh_tensor **out) {
    return cross_entropy(logits, target, class_weight, ignore_index, 0, 0, r, out);
}

wh_status wh_cross_entropy_based(wh_tensor *logits, wh_tensor *target, wh_tensor *class_weight,
                                 int64_t ignore_index, int64_t base, wh_reduction r,
                                 wh_tensor **out) {
    return cross_entropy(logits, target, class_weight, ignore_index, base, 1, r, out);
}
