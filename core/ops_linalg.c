/* Matrix products through BLAS (cblas_sgemm / cblas_dgemm).
 *
 * matmul follows NumPy/PyTorch: a 1-d first operand is a row vector, a 1-d
 * second operand a column vector (the added dim is dropped from the result),
 * and the leading (batch) dims broadcast.  Every case runs as a batched
 * product of expanded views, (batch..., m, k) @ (batch..., k, n), whose
 * matrices BLAS reads in place when they are row-major or transposed
 * row-major; other layouts are copied once, before broadcasting.  Gradients
 * reuse the same product: dA = dC @ B^T and dB = A^T @ dC, with the batch
 * dims an operand was broadcast over summed by accumulating GEMMs (beta = 1)
 * into one matrix instead of materialising a batch of them. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "backend.h"
#include "ops_util.h"

/* ---- matrix layouts ------------------------------------------------------------- */

typedef struct {
    CBLAS_TRANSPOSE trans;
    int64_t ld;
} mat_layout;

/* How BLAS can read the last two dims of t (rows x cols) without a copy. */
static bool layout_of(const wh_tensor *t, mat_layout *l) {
    int nd = t->ndim;
    int64_t rows = t->shape[nd - 2], cols = t->shape[nd - 1];
    int64_t s0 = t->stride[nd - 2], s1 = t->stride[nd - 1];
    int64_t mc = cols > 1 ? cols : 1, mr = rows > 1 ? rows : 1;
    if ((cols <= 1 || s1 == 1) && (rows <= 1 || s0 >= mc)) {
        l->trans = CblasNoTrans;
        l->ld = rows <= 1 ? mc : s0;
        return true;
    }
    if ((rows <= 1 || s0 == 1) && (cols <= 1 || s1 >= mr)) {
        l->trans = CblasTrans;
        l->ld = cols <= 1 ? mr : s1;
        return true;
    }
    return false;
}

/* t itself (a new reference) when BLAS can read its matrices, else a
 * contiguous copy. */
static wh_status blas_ready(wh_tensor *t, wh_tensor **out) {
    mat_layout l;
    if (layout_of(t, &l)) return wh_alias(t, out);
    return wh_contiguous_raw(t, true, out);
}

static wh_status check_blas_int(const char *op, int64_t v) {
    if (sizeof(blasint) < sizeof(int64_t) && v > INT_MAX)
        return wh_fail(WH_ERR_SHAPE, "%s: a matrix dimension of %lld exceeds what BLAS can "
                       "index", op, (long long)v);
    return WH_OK;
}

/* C = A @ B (+ C when accumulate) for 2-d views (any layout_of-compatible
 * strides for A and B, C row-major). */
static wh_status gemm2d(const char *op, wh_tensor *A, wh_tensor *B, wh_tensor *C, bool accumulate) {
    mat_layout la, lb, lc;
    if (!layout_of(A, &la) || !layout_of(B, &lb) || !layout_of(C, &lc) || lc.trans != CblasNoTrans)
        return wh_fail(WH_ERR_STATE, "%s: internal error: operand layout not readable by BLAS", op);
    int64_t m = A->shape[0], k = A->shape[1], n = B->shape[1];
    if (m == 0 || n == 0) return WH_OK;
    WH_TRY(check_blas_int(op, m));
    WH_TRY(check_blas_int(op, n));
    WH_TRY(check_blas_int(op, k));
    WH_TRY(check_blas_int(op, la.ld));
    WH_TRY(check_blas_int(op, lb.ld));
    WH_TRY(check_blas_int(op, lc.ld));
    if (k == 0) {
        /* BLAS leaves C alone for k = 0 with beta = 0 in some builds. */
        return accumulate ? WH_OK : wh_fill(C, 0);
    }
    const wh_backend *be = wh_backend_of(C);
    if (be)
        return be->gemm(wh_tensor_device(C).index, A->dtype, la.trans == CblasTrans,
                        lb.trans == CblasTrans, m, n, k, wh_tensor_data(A), la.ld,
                        wh_tensor_data(B), lb.ld, accumulate ? 1.0 : 0.0, wh_tensor_data(C),
                        lc.ld);
    if (A->dtype == WH_FLOAT32)
        cblas_sgemm(CblasRowMajor, la.trans, lb.trans, (blasint)m, (blasint)n, (blasint)k, 1.0f,
                    wh_tensor_data(A), (blasint)la.ld, wh_tensor_data(B), (blasint)lb.ld,
                    accumulate ? 1.0f : 0.0f, wh_tensor_data(C), (blasint)lc.ld);
    else
        cblas_dgemm(CblasRowMajor, la.trans, lb.trans, (blasint)m, (blasint)n, (blasint)k, 1.0,
                    wh_tensor_data(A), (blasint)la.ld, wh_tensor_data(B), (blasint)lb.ld,
                    accumulate ? 1.0 : 0.0, wh_tensor_data(C), (blasint)lc.ld);
    return WH_OK;
}

/* The matrix of batch index b (row-major over the batch dims) as a 2-d view. */
static wh_status batch_matrix(wh_tensor *t, int64_t b, wh_tensor **out) {
    int nb = t->ndim - 2;
    WH_TRY(wh_alias(t, out));
    wh_tensor *o = *out;
    for (int d = nb - 1; d >= 0; d--) {
        o->offset += (b % t->shape[d]) * t->stride[d];
        b /= t->shape[d];
    }
    o->ndim = 2;
    o->shape[0] = t->shape[nb];
    o->shape[1] = t->shape[nb + 1];
    o->stride[0] = t->stride[nb];
    o->stride[1] = t->stride[nb + 1];
    return WH_OK;
}

static bool batch_is_broadcast(const wh_tensor *t) {
    for (int d = 0; d < t->ndim - 2; d++)
        if (t->shape[d] != 1 && t->stride[d] != 0) return false;
    return true;
}

/* Tries to run the batched product as one GEMM; *done tells whether it did.
 *  - B shared by every batch: the batch dims fold into A's and C's rows.
 *  - C shared by every batch (accumulating a broadcast operand's gradient):
 *    the batch dims fold into the contraction dim of A and B. */
static wh_status bmm_folded(const char *op, wh_tensor *A, wh_tensor *B, wh_tensor *C,
                            bool accumulate, bool *done) {
    int nd = A->ndim, nb = nd - 2;
    int64_t m = A->shape[nb], k = A->shape[nb + 1], n = B->shape[nb + 1];
    wh_tensor *a2 = NULL, *b2 = NULL, *c2 = NULL;
    mat_layout l;
    wh_status st = WH_OK;
    *done = false;
    if (batch_is_broadcast(B) && !batch_is_broadcast(C)) {
        int64_t as[2] = {-1, k}, cs[2] = {-1, n};
        if (wh_view_raw(A, 2, as, &a2) == WH_OK && layout_of(a2, &l) &&
            wh_view_raw(C, 2, cs, &c2) == WH_OK && batch_matrix(B, 0, &b2) == WH_OK) {
            st = gemm2d(op, a2, b2, c2, accumulate);
            *done = true;
        }
    } else if (accumulate && batch_is_broadcast(C)) {
        /* A (batch..., m, k) -> (m, batch..., k) -> (m, batch*k);
         * B (batch..., k, n) -> (batch*k, n). */
        int perm[WH_MAX_DIMS];
        perm[0] = nb;
        for (int d = 0; d < nb; d++) perm[d + 1] = d;
        perm[nd - 1] = nd - 1;
        wh_tensor *ap = NULL;
        int64_t as[2] = {m, -1}, bs[2] = {-1, n};
        if (wh_permute_raw(A, perm, &ap) == WH_OK && wh_view_raw(ap, 2, as, &a2) == WH_OK &&
            layout_of(a2, &l) && wh_view_raw(B, 2, bs, &b2) == WH_OK && layout_of(b2, &l) &&
            batch_matrix(C, 0, &c2) == WH_OK) {
            st = gemm2d(op, a2, b2, c2, true);
            *done = true;
        }
        wh_tensor_release(ap);
    }
    wh_tensor_release(a2);
    wh_tensor_release(b2);
    wh_tensor_release(c2);
    return st;
}

/* C = A @ B over matching batch dims (all three have the same ndim >= 2 and
 * batch shape; stride-0 batch dims broadcast).  With `accumulate`, C holds
 * initial values (zeros) and may itself be broadcast over the batch, which
 * sums the products. */
static wh_status bmm(const char *op, wh_tensor *A, wh_tensor *B, wh_tensor *C, bool accumulate) {
    int nb = A->ndim - 2;
    int64_t batch = 1;
    for (int d = 0; d < nb; d++) batch *= C->shape[d];
    if (batch == 0) return WH_OK;
    if (nb == 0) return gemm2d(op, A, B, C, accumulate);
    bool done;
    WH_TRY(bmm_folded(op, A, B, C, accumulate, &done));
    if (done) return WH_OK;
    /* One GEMM per batch, in order: accumulating ones may share C. */
    for (int64_t b = 0; b < batch; b++) {
        wh_tensor *a2 = NULL, *b2 = NULL, *c2 = NULL;
        wh_status st = batch_matrix(A, b, &a2);
        if (st == WH_OK) st = batch_matrix(B, b, &b2);
        if (st == WH_OK) st = batch_matrix(C, b, &c2);
        if (st == WH_OK) st = gemm2d(op, a2, b2, c2, accumulate);
        wh_tensor_release(a2);
        wh_tensor_release(b2);
        wh_tensor_release(c2);
        WH_TRY(st);
    }
    return WH_OK;
}

/* ---- shapes ------------------------------------------------------------------------ */

/* A 1-d operand as a matrix: a row (1, k) when it is the first operand, a
 * column (k, 1) when it is the second; others as they are. */
static wh_status promote(wh_tensor *t, bool first, wh_tensor **out) {
    WH_TRY(wh_alias(t, out));
    if (t->ndim != 1) return WH_OK;
    wh_tensor *o = *out;
    o->ndim = 2;
    int v = first ? 1 : 0, one = first ? 0 : 1;
    o->shape[v] = t->shape[0];
    o->stride[v] = t->stride[0];
    o->shape[one] = 1;
    o->stride[one] = t->shape[0] * t->stride[0];
    return WH_OK;
}

typedef struct {
    int nb;                      /* broadcast batch dims */
    int64_t batch[WH_MAX_DIMS];
    int64_t m, k, n;
    int out_ndim;                /* the user-visible result */
    int64_t out_shape[WH_MAX_DIMS];
} mm_plan;

static wh_status plan_matmul(const wh_tensor *a, const wh_tensor *b, mm_plan *p) {
    char x[128], y[128];
    if (a->ndim < 1 || b->ndim < 1)
        return wh_fail(WH_ERR_SHAPE, "matmul: both operands need at least 1 dimension, got "
                       "shapes %s and %s", wh_shape_str(a, x, sizeof x), wh_shape_str(b, y, sizeof y));
    int64_t ka = a->shape[a->ndim - 1];
    int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
    if (ka != kb)
        return wh_fail(WH_ERR_SHAPE, "matmul: shapes %s and %s do not fit: the first operand "
                       "has %lld columns but the second has %lld rows", wh_shape_str(a, x, sizeof x),
                       wh_shape_str(b, y, sizeof y), (long long)ka, (long long)kb);
    p->m = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
    p->k = ka;
    p->n = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
    int ba = a->ndim > 2 ? a->ndim - 2 : 0, bb = b->ndim > 2 ? b->ndim - 2 : 0;
    p->nb = ba > bb ? ba : bb;
    for (int i = 0; i < p->nb; i++) {
        int ia = i - (p->nb - ba), ib = i - (p->nb - bb);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return wh_fail(WH_ERR_SHAPE, "matmul: the batch dimensions of shapes %s and %s "
                           "cannot be broadcast together (%lld vs %lld)",
                           wh_shape_str(a, x, sizeof x), wh_shape_str(b, y, sizeof y),
                           (long long)sa, (long long)sb);
        p->batch[i] = sa == 1 ? sb : sa;
    }
    if (p->nb + 2 > WH_MAX_DIMS)
        return wh_fail(WH_ERR_SHAPE, "matmul: result would have more than %d dimensions",
                       WH_MAX_DIMS);
    int nd = 0;
    for (int i = 0; i < p->nb; i++) p->out_shape[nd++] = p->batch[i];
    if (a->ndim > 1) p->out_shape[nd++] = p->m;
    if (b->ndim > 1) p->out_shape[nd++] = p->n;
    p->out_ndim = nd;
    return WH_OK;
}

/* t (promoted, >= 2-d) expanded to (batch..., rows, cols). */
static wh_status expand_to_batch(wh_tensor *t, const mm_plan *p, wh_tensor **out) {
    int64_t shape[WH_MAX_DIMS];
    memcpy(shape, p->batch, sizeof(int64_t) * (size_t)p->nb);
    shape[p->nb] = t->shape[t->ndim - 2];
    shape[p->nb + 1] = t->shape[t->ndim - 1];
    return wh_expand_raw(t, p->nb + 2, shape, out);
}

/* View of a contiguous result in its promoted (batch..., rows, cols) form. */
static wh_status batch_view(wh_tensor *t, const mm_plan *p, int64_t rows, int64_t cols,
                            wh_tensor **out) {
    int64_t shape[WH_MAX_DIMS];
    memcpy(shape, p->batch, sizeof(int64_t) * (size_t)p->nb);
    shape[p->nb] = rows;
    shape[p->nb + 1] = cols;
    return wh_view_raw(t, p->nb + 2, shape, out);
}

static wh_status swap_last(wh_tensor *t, wh_tensor **out) {
    int perm[WH_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) perm[i] = i;
    perm[t->ndim - 2] = t->ndim - 1;
    perm[t->ndim - 1] = t->ndim - 2;
    return wh_permute_raw(t, perm, out);
}

/* x (an operand, promoted and BLAS-ready) expanded over the plan's batch. */
static wh_status prepare(wh_tensor *x, bool first, const mm_plan *p, wh_tensor **out) {
    wh_tensor *pr = NULL, *ready = NULL;
    WH_TRY(promote(x, first, &pr));
    wh_status st = blas_ready(pr, &ready);
    if (st == WH_OK) st = expand_to_batch(ready, p, out);
    wh_tensor_release(pr);
    wh_tensor_release(ready);
    return st;
}

/* ---- matmul ---------------------------------------------------------------------------- */

/* The gradient of one operand: (g @ other^T) or (other^T @ g), summed over
 * the batch dims it was broadcast over, in its own shape. */
static wh_status operand_grad(const mm_plan *p, wh_tensor *g3, wh_tensor *other, bool first,
                              const wh_meta *m, wh_tensor **out) {
    /* The operand's promoted shape and the result buffer expanded over the batch. */
    int64_t pshape[WH_MAX_DIMS];
    int pnd = m->ndim;
    memcpy(pshape, m->shape, sizeof pshape);
    if (m->ndim == 1) {
        pnd = 2;
        pshape[first ? 1 : 0] = m->shape[0];
        pshape[first ? 0 : 1] = 1;
    }
    int64_t rows = pshape[pnd - 2], cols = pshape[pnd - 1];
    bool broadcast = pnd - 2 < p->nb;
    for (int d = 0; d < pnd - 2 && !broadcast; d++) broadcast = pshape[d] != p->batch[d + p->nb - (pnd - 2)];
    wh_tensor *buf = NULL, *target = NULL, *ot = NULL, *ox = NULL;
    wh_allocator *alloc = g3->storage->allocator;
    wh_status st = broadcast ? wh_tensor_zeros_on(m->dtype, pnd, pshape, alloc, &buf)
                             : wh_tensor_empty(m->dtype, pnd, pshape, alloc, &buf);
    if (st == WH_OK) {
        int64_t shape[WH_MAX_DIMS];
        memcpy(shape, p->batch, sizeof(int64_t) * (size_t)p->nb);
        shape[p->nb] = rows;
        shape[p->nb + 1] = cols;
        st = wh_expand_raw(buf, p->nb + 2, shape, &target);
    }
    if (st == WH_OK) st = prepare(other, !first, p, &ox);
    if (st == WH_OK) st = swap_last(ox, &ot);
    if (st == WH_OK)
        st = first ? bmm("matmul backward", g3, ot, target, broadcast)
                   : bmm("matmul backward", ot, g3, target, broadcast);
    if (st == WH_OK) st = wh_view_raw(buf, m->ndim, m->shape, out);
    wh_tensor_release(buf);
    wh_tensor_release(target);
    wh_tensor_release(ot);
    wh_tensor_release(ox);
    return st;
}

static wh_status matmul_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_tensor *a, *b, *g3 = NULL;
    WH_TRY(wh_node_saved(n, 0, &a));
    WH_TRY(wh_node_saved(n, 1, &b));
    mm_plan p;
    WH_TRY(plan_matmul(a, b, &p));
    WH_TRY(batch_view(g, &p, p.m, p.n, &g3));
    wh_status st = WH_OK;
    if (wh_node_needs_grad(n, 0)) st = operand_grad(&p, g3, b, true, &n->input_meta[0], &gin[0]);
    if (st == WH_OK && wh_node_needs_grad(n, 1))
        st = operand_grad(&p, g3, a, false, &n->input_meta[1], &gin[1]);
    wh_tensor_release(g3);
    return st;
}

wh_status wh_matmul(wh_tensor *a, wh_tensor *b, wh_tensor **out) {
    WH_TRY(wh_check_float_dev("matmul", "first operand", a));
    WH_TRY(wh_check_float_dev("matmul", "second operand", b));
    WH_TRY(wh_check_same_dtype("matmul", a, b));
    mm_plan p;
    WH_TRY(plan_matmul(a, b, &p));
    wh_tensor *ae = NULL, *be = NULL, *c3 = NULL;
    wh_status st = wh_tensor_empty(a->dtype, p.out_ndim, p.out_shape, a->storage->allocator, out);
    if (st == WH_OK) st = prepare(a, true, &p, &ae);
    if (st == WH_OK) st = prepare(b, false, &p, &be);
    if (st == WH_OK) st = batch_view(*out, &p, p.m, p.n, &c3);
    if (st == WH_OK) st = bmm("matmul", ae, be, c3, false);
    wh_tensor_release(ae);
    wh_tensor_release(be);
    wh_tensor_release(c3);
    wh_tensor *inputs[2] = {a, b};
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record("matmul", matmul_backward, 2, inputs, *out, &node);
    if (node && (st = wh_node_save(node, a)) == WH_OK) st = wh_node_save(node, b);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}
