#include "ops_util.h"

#include <string.h>

#include "backend.h"

static wh_status check_float_dtype(const char *op, const char *arg, const wh_tensor *t) {
    if (!t) return wh_fail(WH_ERR_ARG, "%s: %s is missing", op, arg);
    if (!wh_dtype_is_float(t->dtype))
        return wh_fail(WH_ERR_DTYPE, "%s: %s must be float32 or float64, got %s", op, arg,
                       wh_dtype_name(t->dtype));
    return WH_OK;
}

wh_status wh_check_float(const char *op, const char *arg, const wh_tensor *t) {
    WH_TRY(check_float_dtype(op, arg, t));
    return wh_check_cpu(op, t);
}

wh_status wh_check_float_dev(const char *op, const char *arg, const wh_tensor *t) {
    WH_TRY(check_float_dtype(op, arg, t));
    return wh_check_device(op, t);
}

wh_status wh_check_same_dtype(const char *op, const wh_tensor *a, const wh_tensor *b) {
    if (a->dtype != b->dtype)
        return wh_fail(WH_ERR_DTYPE, "%s: dtypes differ (%s and %s); convert one with "
                       "t:float() or t:double()", op, wh_dtype_name(a->dtype),
                       wh_dtype_name(b->dtype));
    wh_device da = wh_tensor_device(a), db = wh_tensor_device(b);
    if (da.type != db.type || da.index != db.index) {
        char x[32], y[32];
        return wh_fail(WH_ERR_DEVICE, "%s: tensors are on different devices (%s and %s)", op,
                       wh_device_name(da, x, sizeof x), wh_device_name(db, y, sizeof y));
    }
    return WH_OK;
}

wh_status wh_check_cpu(const char *op, const wh_tensor *t) {
    if (wh_tensor_device(t).type != WH_CPU)
        return wh_fail(WH_ERR_DEVICE, "%s: this op has no implementation for tensors on %s",
                       op, t->storage->allocator->name);
    return WH_OK;
}

wh_status wh_check_device(const char *op, const wh_tensor *t) {
    wh_device_type type = wh_tensor_device(t).type;
    if (type != WH_CPU && !wh_backend_get(type))
        return wh_fail(WH_ERR_DEVICE, "%s: the backend of %s is not loaded", op,
                       t->storage->allocator->name);
    return WH_OK;
}

wh_status wh_check_ndim(const char *op, const char *arg, const wh_tensor *t, int ndim,
                        const char *layout) {
    if (t->ndim != ndim) {
        char buf[128];
        return wh_fail(WH_ERR_SHAPE, "%s: %s must be %d-d %s, got shape %s", op, arg, ndim,
                       layout, wh_shape_str(t, buf, sizeof buf));
    }
    return WH_OK;
}

wh_status wh_check_inplace(const char *op, const wh_tensor *t) {
    if (wh_grad_enabled() && t->requires_grad)
        return wh_fail(WH_ERR_STATE, "%s: in-place op on a tensor that requires grad while "
                       "gradients are recorded; wrap it in whorl.no_grad(...)", op);
    return wh_check_device(op, t);
}

wh_status wh_contig(wh_tensor *t, wh_tensor **out) { return wh_contiguous_raw(t, false, out); }

/* Merges neighbouring dims that every operand walks as one (stride of the
 * outer == stride of the inner * its size), so a contiguous 4-d weight is
 * one long row instead of many rows of 3 elements. */
static void coalesce_dims(wh_row_iter *it) {
    int out = 0;
    for (int d = 1; d < it->ndim; d++) {
        bool merge = true;
        for (int k = 0; k < it->nops && merge; k++)
            merge = it->stride[k][out] == it->stride[k][d] * it->shape[d];
        if (it->shape[out] == 1) merge = true; /* a size-1 dim carries no stride */
        if (merge) {
            for (int k = 0; k < it->nops; k++)
                if (it->shape[out] == 1 || it->shape[d] != 1) it->stride[k][out] = it->stride[k][d];
            it->shape[out] *= it->shape[d];
        } else {
            out++;
            it->shape[out] = it->shape[d];
            for (int k = 0; k < it->nops; k++) it->stride[k][out] = it->stride[k][d];
        }
    }
    it->ndim = out + 1;
}

/* Rows are the unit of parallel work: a single long row (the common case
 * after coalescing) is cut into up to 64 equal rows so OpenMP has work to
 * share, when its length has such a divisor. */
static void split_long_rows(wh_row_iter *it) {
    int64_t rows = 1, inner = it->shape[it->ndim - 1];
    for (int d = 0; d < it->ndim - 1; d++) rows *= it->shape[d];
    if (rows >= 64 || inner < 2 * 8192 || it->ndim >= WH_MAX_DIMS) return;
    int64_t f = 64;
    while (f > 1 && (inner % f != 0 || inner / f < 8192)) f--;
    if (f < 2) return;
    int last = it->ndim - 1;
    it->shape[last] = f;
    it->shape[last + 1] = inner / f;
    for (int k = 0; k < it->nops; k++) {
        it->stride[k][last + 1] = it->stride[k][last];
        it->stride[k][last] = it->stride[k][last] * (inner / f);
    }
    it->ndim++;
}

wh_status wh_row_iter_init(wh_row_iter *it, int ndim, const int64_t *shape, int nops,
                           wh_tensor *const *ts) {
    memset(it, 0, sizeof *it);
    if (ndim == 0) {
        it->ndim = 1;
        it->shape[0] = 1;
    } else {
        it->ndim = ndim;
        memcpy(it->shape, shape, sizeof(int64_t) * (size_t)ndim);
    }
    it->nops = nops;
    for (int k = 0; k < nops; k++) {
        const wh_tensor *t = ts[k];
        if (!t) {
            int64_t s = 1;
            for (int d = it->ndim - 1; d >= 0; d--) {
                it->stride[k][d] = s;
                s *= it->shape[d];
            }
            continue;
        }
        it->offset[k] = t->offset;
        int lead = it->ndim - t->ndim;
        if (lead < 0) return wh_fail(WH_ERR_SHAPE, "internal: operand has more dims than output");
        for (int d = 0; d < it->ndim; d++) {
            int td = d - lead;
            it->stride[k][d] = td < 0 || t->shape[td] == 1 ? 0 : t->stride[td];
        }
    }
    coalesce_dims(it);
    split_long_rows(it);
    it->inner = it->shape[it->ndim - 1];
    it->rows = 1;
    for (int d = 0; d < it->ndim - 1; d++) it->rows *= it->shape[d];
    return WH_OK;
}

void wh_row_iter_offsets(const wh_row_iter *it, int64_t r, int64_t *offs) {
    for (int k = 0; k < it->nops; k++) offs[k] = it->offset[k];
    for (int d = it->ndim - 2; d >= 0; d--) {
        int64_t i = r % it->shape[d];
        r /= it->shape[d];
        for (int k = 0; k < it->nops; k++) offs[k] += i * it->stride[k][d];
    }
}
