// Elementwise kernels: strided copies with dtype conversion, fill, binary
// ops with broadcasting and their gradients, unary ops and theirs, the
// in-place updates of optimizers written with ops, and padding.  Every
// kernel is a grid-stride loop over output elements that finds its
// operands' elements with strided_math.h; the per-element formulas are the
// CPU's own (elementwise_math.h).
#include "kernels.cuh"

// ---- copy and fill ----------------------------------------------------------------------------

template <class T> __device__ inline T convert_to(double v) { return (T)v; }
template <> __device__ inline uint8_t convert_to<uint8_t>(double v) { return wh_u8_from_double(v); }

template <class D, class S>
__global__ void copy_kernel(wh_strided_loop l, D *dst, const S *src, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t o[2];
        loop_offsets(l, i, o);
        dst[o[0]] = convert_to<D>((double)src[o[1]]);
    }
}

template <class D>
static void launch_copy(const wh_strided_loop &l, D *dst, const wh_tensor *src, int64_t n,
                        cudaStream_t s) {
    void *base = src->storage->data;
    unsigned nb = whc_blocks(n);
    if (src->dtype == WH_FLOAT32) copy_kernel<D, float><<<nb, WHC_THREADS, 0, s>>>(l, dst, (const float *)base, n);
    else if (src->dtype == WH_FLOAT64) copy_kernel<D, double><<<nb, WHC_THREADS, 0, s>>>(l, dst, (const double *)base, n);
    else copy_kernel<D, uint8_t><<<nb, WHC_THREADS, 0, s>>>(l, dst, (const uint8_t *)base, n);
}

extern "C" wh_status whc_copy(wh_tensor *dst, const wh_tensor *src) {
    int64_t n = whc_numel(dst);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(dst, &d));
    if (dst->dtype == src->dtype && whc_core->is_contiguous(dst) &&
        whc_core->is_contiguous(src)) {
        if (whc_data(dst) != whc_data(src))
            WHC_CUDA(cudaMemcpyAsync(whc_data(dst), whc_data(src),
                                     (size_t)n * whc_dtype_size(dst->dtype),
                                     cudaMemcpyDeviceToDevice, d->stream));
        return WH_OK;
    }
    wh_strided_loop l;
    const wh_tensor *ops[2] = {dst, src};
    whc_loop_init(&l, dst->ndim, dst->shape, 2, ops);
    void *base = dst->storage->data;
    if (dst->dtype == WH_FLOAT32) launch_copy(l, (float *)base, src, n, d->stream);
    else if (dst->dtype == WH_FLOAT64) launch_copy(l, (double *)base, src, n, d->stream);
    else launch_copy(l, (uint8_t *)base, src, n, d->stream);
    WHC_LAUNCHED("copy_kernel");
    return WH_OK;
}

template <class T>
__global__ void fill_kernel(wh_strided_loop l, T *t, T v, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t o;
        loop_offsets(l, i, &o);
        t[o] = v;
    }
}

extern "C" wh_status whc_fill(wh_tensor *t, double value) {
    int64_t n = whc_numel(t);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(t, &d));
    if (value == 0 && !signbit(value) && whc_core->is_contiguous(t)) {
        WHC_CUDA(cudaMemsetAsync(whc_data(t), 0, (size_t)n * whc_dtype_size(t->dtype), d->stream));
        return WH_OK;
    }
    wh_strided_loop l;
    whc_loop_init(&l, t->ndim, t->shape, 1, &t);
    unsigned nb = whc_blocks(n);
    void *base = t->storage->data;
    if (t->dtype == WH_FLOAT32) fill_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(l, (float *)base, (float)value, n);
    else if (t->dtype == WH_FLOAT64) fill_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(l, (double *)base, value, n);
    else fill_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(l, (uint8_t *)base, wh_u8_from_double(value), n);
    WHC_LAUNCHED("fill_kernel");
    return WH_OK;
}

// ---- binary ops -------------------------------------------------------------------------------

// Operands: 0 a, 1 b (strided, broadcast), 2 out (contiguous).
template <class T>
__global__ void binary_kernel(int op, wh_strided_loop l, const T *a, const T *b, T *out, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t o[3];
        loop_offsets(l, i, o);
        out[o[2]] = bin_fwd(op, a[o[0]], b[o[1]]);
    }
}

extern "C" wh_status whc_binary(int mop, const wh_tensor *a, const wh_tensor *b, wh_tensor *out) {
    int64_t n = whc_numel(out);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(out, &d));
    wh_strided_loop l;
    const wh_tensor *ops[3] = {a, b, out};
    whc_loop_init(&l, out->ndim, out->shape, 3, ops);
    WHC_FLOAT_DISPATCH(out->dtype,
        binary_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            mop, l, (const T *)a->storage->data, (const T *)b->storage->data,
            (T *)out->storage->data, n));
    WHC_LAUNCHED("binary_kernel");
    return WH_OK;
}

// out, g, ga, gb are contiguous over out's shape: element i of each.
template <class T>
__global__ void binary_grad_kernel(int op, wh_strided_loop l, const T *a, const T *b, const T *out,
                                   const T *g, T *ga, T *gb, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t o[2];
        loop_offsets(l, i, o);
        T x = a[o[0]], y = b[o[1]];
        if (ga) ga[i] = bin_ga(op, x, y, out[i], g[i]);
        if (gb) gb[i] = bin_gb(op, x, y, out[i], g[i]);
    }
}

extern "C" wh_status whc_binary_grad(int mop, const wh_tensor *a, const wh_tensor *b,
                                     const wh_tensor *out, const wh_tensor *g, wh_tensor *ga,
                                     wh_tensor *gb) {
    int64_t n = whc_numel(out);
    if (n == 0 || (!ga && !gb)) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(out, &d));
    wh_strided_loop l;
    const wh_tensor *ops[2] = {a, b};
    whc_loop_init(&l, out->ndim, out->shape, 2, ops);
    WHC_FLOAT_DISPATCH(out->dtype,
        binary_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            mop, l, (const T *)a->storage->data, (const T *)b->storage->data,
            (const T *)whc_data(out), (const T *)whc_data(g), ga ? (T *)whc_data(ga) : NULL,
            gb ? (T *)whc_data(gb) : NULL, n));
    WHC_LAUNCHED("binary_grad_kernel");
    return WH_OK;
}

// ---- unary ops --------------------------------------------------------------------------------

template <class T>
__global__ void unary_kernel(int op, wh_strided_loop l, const T *x, T *y, T p0, T p1, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t o[2];
        loop_offsets(l, i, o);
        y[o[1]] = un_fwd(op, x[o[0]], p0, p1);
    }
}

extern "C" wh_status whc_unary(int mop, const wh_tensor *x, wh_tensor *y, double p0, double p1) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(y, &d));
    wh_strided_loop l;
    const wh_tensor *ops[2] = {x, y};
    whc_loop_init(&l, y->ndim, y->shape, 2, ops);
    WHC_FLOAT_DISPATCH(y->dtype,
        unary_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            mop, l, (const T *)x->storage->data, (T *)y->storage->data, (T)p0, (T)p1, n));
    WHC_LAUNCHED("unary_kernel");
    return WH_OK;
}

template <class T>
__global__ void unary_grad_kernel(int op, const T *x, const T *y, const T *g, T *gx, T p0, T p1,
                                  int64_t n) {
    WHC_GRID_LOOP(i, n) gx[i] = un_grad(op, x[i], y[i], g[i], p0, p1);
}

extern "C" wh_status whc_unary_grad(int mop, const wh_tensor *x, const wh_tensor *y,
                                    const wh_tensor *g, wh_tensor *gx, double p0, double p1) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    WHC_FLOAT_DISPATCH(gx->dtype,
        unary_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            mop, (const T *)whc_data(x), (const T *)whc_data(y), (const T *)whc_data(g),
            (T *)whc_data(gx), (T)p0, (T)p1, n));
    WHC_LAUNCHED("unary_grad_kernel");
    return WH_OK;
}

// ---- in-place updates --------------------------------------------------------------------------

// Operands: 0 x (updated), 1 a, 2 b (absent: operand 1 again).
template <class T>
__global__ void update_kernel(int kind, wh_strided_loop l, T *x, const T *a, const T *b, T v,
                              int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t o[3];
        loop_offsets(l, i, o);
        T *p = x + o[0];
        T av = a[o[1]];
        switch (kind) {
        case WH_UPDATE_AXPY: *p += v * av; break;
        case WH_UPDATE_MUL: *p *= av; break;
        case WH_UPDATE_ADDCMUL: *p += v * av * b[o[2]]; break;
        case WH_UPDATE_ADDCDIV: *p += v * av / b[o[2]]; break;
        default: *p = av; break;
        }
    }
}

extern "C" wh_status whc_update(int kind, wh_tensor *x, const wh_tensor *a, const wh_tensor *b,
                                double v) {
    int64_t n = whc_numel(x);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    wh_strided_loop l;
    const wh_tensor *ops[3] = {x, a, b ? b : a};
    whc_loop_init(&l, x->ndim, x->shape, 3, ops);
    const wh_tensor *bb = b ? b : a;
    WHC_FLOAT_DISPATCH(x->dtype,
        update_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            kind, l, (T *)x->storage->data, (const T *)a->storage->data,
            (const T *)bb->storage->data, (T)v, n));
    WHC_LAUNCHED("update_kernel");
    return WH_OK;
}

// ---- padding -------------------------------------------------------------------------------------

static wh_pad_geom pad_geom_of(const wh_tensor *in, const int64_t *out_shape,
                               const int64_t *before, int mode) {
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

template <class T>
__global__ void pad_kernel(wh_pad_geom p, const T *x, T *y, T value, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t s = wh_pad_source_offset(&p, i);
        y[i] = s < 0 ? value : x[s];
    }
}

extern "C" wh_status whc_pad(const wh_tensor *x, const int64_t *before, int mode, double value,
                             wh_tensor *y) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(y, &d));
    wh_pad_geom p = pad_geom_of(x, y->shape, before, mode);
    unsigned nb = whc_blocks(n);
    void *xs = x->storage->data, *yd = whc_data(y);
    if (x->dtype == WH_FLOAT32) pad_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(p, (const float *)xs, (float *)yd, (float)value, n);
    else if (x->dtype == WH_FLOAT64) pad_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(p, (const double *)xs, (double *)yd, value, n);
    else pad_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(p, (const uint8_t *)xs, (uint8_t *)yd, wh_u8_from_double(value), n);
    WHC_LAUNCHED("pad_kernel");
    return WH_OK;
}

// The adjoint: each output's gradient goes to the input element it was
// read from.  Reflect and replicate send several outputs to one input,
// hence the atomics (only there may the order of additions vary).
template <class T>
__global__ void pad_grad_kernel(wh_pad_geom p, const T *g, T *gx, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t s = wh_pad_source_offset(&p, i);
        if (s >= 0) atomicAdd(gx + s, g[i]);
    }
}

extern "C" wh_status whc_pad_grad(const wh_tensor *g, const int64_t *before, int mode,
                                  wh_tensor *gx) {
    WH_TRY(whc_fill(gx, 0));
    int64_t n = whc_numel(g);
    if (n == 0 || whc_numel(gx) == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(g, &d));
    wh_pad_geom p = pad_geom_of(gx, g->shape, before, mode);
    WHC_FLOAT_DISPATCH(g->dtype,
        pad_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            p, (const T *)whc_data(g), (T *)gx->storage->data, n));
    WHC_LAUNCHED("pad_grad_kernel");
    return WH_OK;
}
