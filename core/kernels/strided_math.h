/* Index arithmetic of strided, broadcast and reduced tensors, and the
 * per-element rules that must not differ between backends (uint8 stores,
 * which element a max keeps, where a padded element comes from).
 *
 * The CUDA kernels (cuda/) compute every element offset with these
 * functions, and tests/c/test_kernel_math.c checks them against the CPU
 * core's own loops, so the arithmetic the GPU runs is tested on machines
 * without one.  Everything is plain C that nvcc also compiles as
 * __host__ __device__ code. */
#ifndef WHORL_STRIDED_MATH_H
#define WHORL_STRIDED_MATH_H

#include <math.h>
#include <stdint.h>

#ifndef WH_HD
#ifdef __CUDACC__
#define WH_HD __host__ __device__
#else
#define WH_HD
#endif
#endif

/* At most this many dims and operands per strided loop (WH_MAX_DIMS in
 * tensor.h is the same 8). */
enum { WH_IDX_MAX_DIMS = 8, WH_IDX_MAX_OPS = 4 };

/* A loop over `shape` (row-major) with up to WH_IDX_MAX_OPS operands, each
 * with its own strides over that shape (0 along broadcast dims) and base
 * offset.  Passed by value to GPU kernels, so it stays a flat struct. */
typedef struct {
    int ndim; /* >= 1 */
    int nops;
    int64_t shape[WH_IDX_MAX_DIMS];
    int64_t stride[WH_IDX_MAX_OPS][WH_IDX_MAX_DIMS];
    int64_t offset[WH_IDX_MAX_OPS];
} wh_strided_loop;

/* Offset of element `linear` (row-major over shape) along one stride set,
 * not counting the base offset. */
WH_HD static inline int64_t wh_strided_offset(int64_t linear, int ndim, const int64_t *shape,
                                              const int64_t *stride) {
    int64_t off = 0;
    for (int d = ndim - 1; d > 0; d--) {
        int64_t i = linear % shape[d];
        linear /= shape[d];
        off += i * stride[d];
    }
    return off + linear * stride[0];
}

/* Offsets of element `linear` for every operand of the loop. */
WH_HD static inline void wh_strided_offsets(const wh_strided_loop *l, int64_t linear,
                                            int64_t *offs) {
    for (int k = 0; k < l->nops; k++) offs[k] = l->offset[k];
    for (int d = l->ndim - 1; d > 0; d--) {
        int64_t i = linear % l->shape[d];
        linear /= l->shape[d];
        for (int k = 0; k < l->nops; k++) offs[k] += i * l->stride[k][d];
    }
    for (int k = 0; k < l->nops; k++) offs[k] += linear * l->stride[k][0];
}

/* The strides of a tensor (t_ndim, t_shape, t_stride) read over the
 * broadcast shape (ndim, shape): leading missing dims and size-1 dims get
 * stride 0 (as wh_row_iter_init does).  The caller has checked that the shapes broadcast. */
WH_HD static inline void wh_broadcast_strides(int ndim, const int64_t *shape, int t_ndim,
                                              const int64_t *t_shape, const int64_t *t_stride,
                                              int64_t *stride) {
    int lead = ndim - t_ndim;
    for (int d = 0; d < ndim; d++) {
        int td = d - lead;
        stride[d] = td < 0 || t_shape[td] == 1 ? 0 : t_stride[td];
    }
}

/* Starts a loop over `shape` (ndim 0: one element) with nops operands,
 * each then set with wh_strided_loop_operand. */
WH_HD static inline void wh_strided_loop_init(wh_strided_loop *l, int ndim, const int64_t *shape,
                                              int nops) {
    l->ndim = ndim > 0 ? ndim : 1;
    l->nops = nops;
    for (int d = 0; d < l->ndim; d++) l->shape[d] = ndim > 0 ? shape[d] : 1;
    for (int k = 0; k < WH_IDX_MAX_OPS; k++) {
        l->offset[k] = 0;
        for (int d = 0; d < WH_IDX_MAX_DIMS; d++) l->stride[k][d] = 0;
    }
}

/* Operand k: a view (t_ndim, t_shape, t_stride, t_offset) read over the
 * loop's shape (broadcast); t_shape NULL means a contiguous tensor of
 * exactly that shape at offset 0. */
WH_HD static inline void wh_strided_loop_operand(wh_strided_loop *l, int k, int t_ndim,
                                                 const int64_t *t_shape, const int64_t *t_stride,
                                                 int64_t t_offset) {
    if (!t_shape) {
        int64_t s = 1;
        for (int d = l->ndim - 1; d >= 0; d--) {
            l->stride[k][d] = s;
            s *= l->shape[d];
        }
        l->offset[k] = 0;
        return;
    }
    l->offset[k] = t_offset;
    wh_broadcast_strides(l->ndim, l->shape, t_ndim, t_shape, t_stride, l->stride[k]);
}

/* Merges neighbouring dims that every operand walks as one (stride[d-1] ==
 * stride[d] * shape[d] for all operands) and drops size-1 dims, so a
 * contiguous tensor becomes one dim and each element costs the GPU fewer
 * divisions.  The loop visits the same elements in the same order. */
WH_HD static inline void wh_strided_coalesce(wh_strided_loop *l) {
    int n = 0;
    for (int d = 0; d < l->ndim; d++) {
        if (l->shape[d] == 1) continue;
        int merge = n > 0;
        for (int k = 0; merge && k < l->nops; k++)
            merge = l->stride[k][n - 1] == l->stride[k][d] * l->shape[d];
        if (merge) {
            l->shape[n - 1] *= l->shape[d];
            for (int k = 0; k < l->nops; k++) l->stride[k][n - 1] = l->stride[k][d];
        } else {
            l->shape[n] = l->shape[d];
            for (int k = 0; k < l->nops; k++) l->stride[k][n] = l->stride[k][d];
            n++;
        }
    }
    if (n == 0) {
        /* every dim was 1 (or there were none): one element */
        l->shape[0] = 1;
        for (int k = 0; k < l->nops; k++) l->stride[k][0] = 0;
        n = 1;
    }
    l->ndim = n;
}

/* ---- reductions -------------------------------------------------------------------
 * A reduction of a contiguous tensor over the dims in `mask` splits its
 * dims into kept ones (which index the output, row-major) and reduced
 * ones: input element = kept offset of the output cell + reduced offset of
 * the step, both walked with wh_strided_offset.  Each group is coalesced;
 * the reduced steps stay in row-major order, i.e. increasing position. */
typedef struct {
    int kept_ndim, red_ndim; /* >= 1 each (a [1] dim when empty) */
    int64_t kept_shape[WH_IDX_MAX_DIMS], kept_stride[WH_IDX_MAX_DIMS];
    int64_t red_shape[WH_IDX_MAX_DIMS], red_stride[WH_IDX_MAX_DIMS];
    int64_t outputs, count; /* output cells, reduced elements per cell */
} wh_reduce_layout;

/* Merges neighbouring dims of one stride set that are walked as one
 * (stride[d-1] == stride[d] * shape[d]) and drops size-1 dims; an empty
 * result is one dim of size 1. */
WH_HD static inline void wh_coalesce_dims(int *ndim, int64_t *shape, int64_t *stride) {
    int n = 0;
    for (int d = 0; d < *ndim; d++) {
        if (shape[d] == 1) continue;
        if (n > 0 && stride[n - 1] == stride[d] * shape[d]) {
            shape[n - 1] *= shape[d];
            stride[n - 1] = stride[d];
        } else {
            shape[n] = shape[d];
            stride[n] = stride[d];
            n++;
        }
    }
    if (n == 0) {
        shape[0] = 1;
        stride[0] = 0;
        n = 1;
    }
    *ndim = n;
}

WH_HD static inline void wh_reduce_layout_init(wh_reduce_layout *r, int ndim,
                                               const int64_t *shape, const int64_t *stride,
                                               const int *mask) {
    r->kept_ndim = r->red_ndim = 0;
    r->outputs = r->count = 1;
    for (int d = 0; d < ndim; d++) {
        if (mask[d]) {
            r->red_shape[r->red_ndim] = shape[d];
            r->red_stride[r->red_ndim++] = stride[d];
            r->count *= shape[d];
        } else {
            r->kept_shape[r->kept_ndim] = shape[d];
            r->kept_stride[r->kept_ndim++] = stride[d];
            r->outputs *= shape[d];
        }
    }
    wh_coalesce_dims(&r->kept_ndim, r->kept_shape, r->kept_stride);
    wh_coalesce_dims(&r->red_ndim, r->red_shape, r->red_stride);
}

/* Whether candidate (v, i) replaces the current best (best, bi) of a max
 * with arg max, where i and bi are flat positions.  The CPU scans in
 * increasing position with "v > best, or v is the first NaN", so: a NaN
 * beats every number, and among equal values (or NaNs) the lowest position
 * wins.  Being symmetric in its arguments' order, the rule gives the CPU's
 * answer whatever order a parallel reduction combines partial results in. */
#define WH_DEFINE_MAX_RULE(T, SUF)                                                           \
    WH_HD static inline int wh_max_takes_##SUF(T v, int64_t i, T best, int64_t bi) {         \
        int vn = v != v, bn = best != best;                                                  \
        if (vn || bn) return vn && (!bn || i < bi);                                          \
        return v > best || (v == best && i < bi);                                            \
    }
WH_DEFINE_MAX_RULE(float, f32)
WH_DEFINE_MAX_RULE(double, f64)

/* ---- stores and padding ------------------------------------------------------------- */

/* A value stored into a uint8 element: rounded to nearest (ties to even),
 * saturated to [0, 255], NaN as 0 (images converted back to bytes). */
WH_HD static inline uint8_t wh_u8_from_double(double v) {
    if (v != v || v <= 0) return 0;
    if (v >= 255) return 255;
    return (uint8_t)rint(v);
}

/* Where output index o of a dim padded by `before` comes from in an input
 * dim of `size`: mode 0 constant (-1: the fill value), 1 reflect (the
 * border not repeated), 2 replicate (numbers match wh_pad_mode). */
WH_HD static inline int64_t wh_pad_source(int64_t o, int64_t before, int64_t size, int mode) {
    int64_t i = o - before;
    if (i >= 0 && i < size) return i;
    if (mode == 0) return -1;
    if (mode == 1) return i < 0 ? -i : 2 * (size - 1) - i;
    return i < 0 ? 0 : size - 1;
}

/* A padded copy: output element i (row-major over out_shape) reads the
 * input element at the returned offset (from the input's storage start),
 * or the fill value when -1.  Dims that are not padded have before = 0 and
 * out_shape = in_shape. */
typedef struct {
    int ndim, mode;
    int64_t out_shape[WH_IDX_MAX_DIMS], in_shape[WH_IDX_MAX_DIMS];
    int64_t in_stride[WH_IDX_MAX_DIMS], before[WH_IDX_MAX_DIMS];
    int64_t in_offset;
} wh_pad_geom;

WH_HD static inline int64_t wh_pad_source_offset(const wh_pad_geom *p, int64_t i) {
    int64_t off = p->in_offset;
    for (int k = p->ndim - 1; k >= 0; k--) {
        int64_t o = i % p->out_shape[k];
        i /= p->out_shape[k];
        int64_t s = wh_pad_source(o, p->before[k], p->in_shape[k], p->mode);
        if (s < 0) return -1;
        off += s * p->in_stride[k];
    }
    return off;
}

#endif
