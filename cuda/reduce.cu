// Reductions: sum and max (with arg max) over any set of dims of a
// contiguous tensor, the arg max scatter of max's gradient, softmax and
// log_softmax with their gradients, the sum of squares, and the
// per-channel sums of batch norm's gradient.
//
// Sums accumulate in double, as on the CPU.  A reduction either gives each
// output cell one thread (many cells, or few elements per cell) or splits
// each cell's elements between blocks whose partial results are combined
// in a fixed order, so results never depend on scheduling.  Max keeps the
// CPU's choice among equal values and NaNs (wh_max_takes in
// strided_math.h), whatever order partial results are combined in.
#include "kernels.cuh"

// How a reduction runs: one thread per cell, or `splits` blocks per cell.
static int reduce_splits(const whc_device *d, const wh_reduce_layout &r) {
    if (r.count < 1024 || r.outputs >= (int64_t)d->sm_count * 512) return 0;
    int64_t want = ((int64_t)d->sm_count * 4 + r.outputs - 1) / r.outputs;
    int64_t most = (r.count + 4095) / 4096;
    if (want > most) want = most;
    if (want > 1024) want = 1024;
    return want < 1 ? 1 : (int)want;
}

static wh_reduce_layout layout_of(const wh_tensor *x, const bool *mask) {
    int m[WH_IDX_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) m[k] = mask[k];
    wh_reduce_layout r;
    wh_reduce_layout_init(&r, x->ndim, x->shape, x->stride, m);
    return r;
}

__device__ inline int64_t kept_offset(const wh_reduce_layout &r, int64_t q) {
    return r.kept_ndim == 1 ? q * r.kept_stride[0]
                            : wh_strided_offset(q, r.kept_ndim, r.kept_shape, r.kept_stride);
}

__device__ inline int64_t red_offset(const wh_reduce_layout &r, int64_t j) {
    return r.red_ndim == 1 ? j * r.red_stride[0]
                           : wh_strided_offset(j, r.red_ndim, r.red_shape, r.red_stride);
}

// ---- sum ----------------------------------------------------------------------------------------

template <class T>
__global__ void sum_cells_kernel(wh_reduce_layout r, const T *x, double scale, T *out) {
    WHC_GRID_LOOP(q, r.outputs) {
        const T *p = x + kept_offset(r, q);
        double s = 0;
        for (int64_t j = 0; j < r.count; j++) s += (double)p[red_offset(r, j)];
        out[q] = (T)(s * scale);
    }
}

// Block b sums part b % splits of cell b / splits.
template <class T>
__global__ void sum_parts_kernel(wh_reduce_layout r, const T *x, int splits, double *partial) {
    int64_t q = blockIdx.x / splits, part = blockIdx.x % splits;
    int64_t chunk = (r.count + splits - 1) / splits, j0 = part * chunk;
    int64_t j1 = j0 + chunk < r.count ? j0 + chunk : r.count;
    const T *p = x + kept_offset(r, q);
    double s = 0;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) s += (double)p[red_offset(r, j)];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

template <class T>
__global__ void sum_finish_kernel(const double *partial, int splits, int64_t outputs, double scale,
                                  T *out) {
    WHC_GRID_LOOP(q, outputs) {
        double s = 0;
        for (int k = 0; k < splits; k++) s += partial[q * splits + k];
        out[q] = (T)(s * scale);
    }
}

extern "C" wh_status whc_sum(const wh_tensor *x, const bool *mask, double scale, wh_tensor *out) {
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    wh_reduce_layout r = layout_of(x, mask);
    if (r.outputs == 0) return WH_OK;
    int splits = reduce_splits(d, r);
    if (!splits) {
        WHC_FLOAT_DISPATCH(x->dtype,
            sum_cells_kernel<T><<<whc_blocks(r.outputs), WHC_THREADS, 0, d->stream>>>(
                r, (const T *)whc_data(x), scale, (T *)whc_data(out)));
        WHC_LAUNCHED("sum_cells_kernel");
        return WH_OK;
    }
    size_t bytes = sizeof(double) * (size_t)(r.outputs * splits);
    double *partial;
    WH_TRY(whc_malloc(d->index, bytes, (void **)&partial));
    WHC_FLOAT_DISPATCH(x->dtype,
        sum_parts_kernel<T><<<(unsigned)(r.outputs * splits), WHC_THREADS, 0, d->stream>>>(
            r, (const T *)whc_data(x), splits, partial);
        sum_finish_kernel<T><<<whc_blocks(r.outputs), WHC_THREADS, 0, d->stream>>>(
            partial, splits, r.outputs, scale, (T *)whc_data(out)));
    whc_free(d->index, partial, bytes);
    WHC_LAUNCHED("sum_parts_kernel");
    return WH_OK;
}

// ---- max with arg max ----------------------------------------------------------------------------

template <class T>
__global__ void max_cells_kernel(wh_reduce_layout r, const T *x, T *out, int64_t *arg) {
    WHC_GRID_LOOP(q, r.outputs) {
        int64_t base = kept_offset(r, q), bi = base;
        T best = x[base];
        for (int64_t j = 1; j < r.count; j++) {
            int64_t o = base + red_offset(r, j);
            if (max_takes(x[o], o, best, bi)) {
                best = x[o];
                bi = o;
            }
        }
        out[q] = best;
        arg[q] = bi;
    }
}

template <class T>
__global__ void max_parts_kernel(wh_reduce_layout r, const T *x, int splits, T *pval,
                                 int64_t *pidx) {
    __shared__ T sv[WHC_THREADS];
    __shared__ int64_t si[WHC_THREADS];
    int64_t q = blockIdx.x / splits, part = blockIdx.x % splits;
    int64_t chunk = (r.count + splits - 1) / splits, j0 = part * chunk;
    int64_t j1 = j0 + chunk < r.count ? j0 + chunk : r.count;
    int64_t base = kept_offset(r, q);
    // Start from the part's first element so every thread has a candidate.
    int64_t bi = base + red_offset(r, j0 < j1 ? j0 : 0);
    T best = x[bi];
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        int64_t o = base + red_offset(r, j);
        if (max_takes(x[o], o, best, bi)) {
            best = x[o];
            bi = o;
        }
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w && max_takes(sv[threadIdx.x + w], si[threadIdx.x + w], sv[threadIdx.x],
                                         si[threadIdx.x])) {
            sv[threadIdx.x] = sv[threadIdx.x + w];
            si[threadIdx.x] = si[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        pval[blockIdx.x] = sv[0];
        pidx[blockIdx.x] = si[0];
    }
}

template <class T>
__global__ void max_finish_kernel(const T *pval, const int64_t *pidx, int splits, int64_t outputs,
                                  T *out, int64_t *arg) {
    WHC_GRID_LOOP(q, outputs) {
        T best = pval[q * splits];
        int64_t bi = pidx[q * splits];
        for (int k = 1; k < splits; k++)
            if (max_takes(pval[q * splits + k], pidx[q * splits + k], best, bi)) {
                best = pval[q * splits + k];
                bi = pidx[q * splits + k];
            }
        out[q] = best;
        arg[q] = bi;
    }
}

extern "C" wh_status whc_max(const wh_tensor *x, const bool *mask, wh_tensor *out, int64_t *arg) {
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    wh_reduce_layout r = layout_of(x, mask);
    if (r.outputs == 0) return WH_OK;
    int splits = reduce_splits(d, r);
    if (!splits) {
        WHC_FLOAT_DISPATCH(x->dtype,
            max_cells_kernel<T><<<whc_blocks(r.outputs), WHC_THREADS, 0, d->stream>>>(
                r, (const T *)whc_data(x), (T *)whc_data(out), arg));
        WHC_LAUNCHED("max_cells_kernel");
        return WH_OK;
    }
    int64_t np = r.outputs * splits;
    size_t bytes = (sizeof(double) + sizeof(int64_t)) * (size_t)np;
    char *partial;
    WH_TRY(whc_malloc(d->index, bytes, (void **)&partial));
    int64_t *pidx = (int64_t *)partial;
    WHC_FLOAT_DISPATCH(x->dtype,
        T *pval = (T *)(partial + sizeof(int64_t) * (size_t)np);
        max_parts_kernel<T><<<(unsigned)np, WHC_THREADS, 0, d->stream>>>(
            r, (const T *)whc_data(x), splits, pval, pidx);
        max_finish_kernel<T><<<whc_blocks(r.outputs), WHC_THREADS, 0, d->stream>>>(
            pval, pidx, splits, r.outputs, (T *)whc_data(out), arg));
    whc_free(d->index, partial, bytes);
    WHC_LAUNCHED("max_parts_kernel");
    return WH_OK;
}

template <class T>
__global__ void scatter_kernel(T *dst, const int64_t *index, const T *src, int64_t n) {
    WHC_GRID_LOOP(q, n) dst[index[q]] = src[q];
}

extern "C" wh_status whc_scatter(wh_tensor *dst, const int64_t *index, const wh_tensor *src) {
    int64_t n = whc_numel(src);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(dst, &d));
    WHC_FLOAT_DISPATCH(dst->dtype,
        scatter_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            (T *)whc_data(dst), index, (const T *)whc_data(src), n));
    WHC_LAUNCHED("scatter_kernel");
    return WH_OK;
}

__global__ void arg_index_kernel(const int64_t *arg, int64_t div, int64_t size, double *out,
                                 int64_t n) {
    WHC_GRID_LOOP(q, n) out[q] = size ? (double)((arg[q] / div) % size) : (double)arg[q];
}

extern "C" wh_status whc_arg_index(const int64_t *arg, int64_t div, int64_t size, wh_tensor *out) {
    int64_t n = whc_numel(out);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(out, &d));
    arg_index_kernel<<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(arg, div, size,
                                                                   (double *)whc_data(out), n);
    WHC_LAUNCHED("arg_index_kernel");
    return WH_OK;
}

// ---- softmax ----------------------------------------------------------------------------------
// One thread per (outer, inner) line of D elements, the CPU's arithmetic:
// the max in T, the sum of exponentials in double.

template <class T>
__global__ void softmax_kernel(const T *x, T *y, int64_t outer, int64_t D, int64_t inner,
                               int log_mode) {
    WHC_GRID_LOOP(t, outer * inner) {
        int64_t base = (t / inner) * D * inner + t % inner;
        const T *p = x + base;
        T *q = y + base;
        T m = p[0];
        for (int64_t k = 1; k < D; k++) m = p[k * inner] > m ? p[k * inner] : m;
        double s = 0;
        for (int64_t k = 0; k < D; k++) s += (double)dev_exp(p[k * inner] - m);
        if (log_mode) {
            T ls = (T)log(s);
            for (int64_t k = 0; k < D; k++) q[k * inner] = p[k * inner] - m - ls;
        } else {
            T inv = (T)(1.0 / s);
            for (int64_t k = 0; k < D; k++) q[k * inner] = dev_exp(p[k * inner] - m) * inv;
        }
    }
}

// softmax: gx = y * (g - sum(g*y));  log_softmax: gx = g - exp(y) * sum(g)
template <class T>
__global__ void softmax_grad_kernel(const T *y, const T *g, T *gx, int64_t outer, int64_t D,
                                    int64_t inner, int log_mode) {
    WHC_GRID_LOOP(t, outer * inner) {
        int64_t base = (t / inner) * D * inner + t % inner;
        double s = 0;
        for (int64_t k = 0; k < D; k++) {
            int64_t e = base + k * inner;
            s += log_mode ? (double)g[e] : (double)g[e] * (double)y[e];
        }
        for (int64_t k = 0; k < D; k++) {
            int64_t e = base + k * inner;
            gx[e] = log_mode ? g[e] - dev_exp(y[e]) * (T)s : y[e] * (g[e] - (T)s);
        }
    }
}

static void softmax_dims(const wh_tensor *x, int dim, int64_t *outer, int64_t *D, int64_t *inner) {
    *outer = *inner = 1;
    for (int k = 0; k < dim; k++) *outer *= x->shape[k];
    for (int k = dim + 1; k < x->ndim; k++) *inner *= x->shape[k];
    *D = x->shape[dim];
}

extern "C" wh_status whc_softmax(const wh_tensor *x, int dim, bool log_mode, wh_tensor *y) {
    int64_t outer, D, inner;
    softmax_dims(x, dim, &outer, &D, &inner);
    if (outer * D * inner == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    WHC_FLOAT_DISPATCH(x->dtype,
        softmax_kernel<T><<<whc_blocks(outer * inner), WHC_THREADS, 0, d->stream>>>(
            (const T *)whc_data(x), (T *)whc_data(y), outer, D, inner, log_mode));
    WHC_LAUNCHED("softmax_kernel");
    return WH_OK;
}

extern "C" wh_status whc_softmax_grad(const wh_tensor *y, const wh_tensor *g, int dim,
                                      bool log_mode, wh_tensor *gx) {
    int64_t outer, D, inner;
    softmax_dims(y, dim, &outer, &D, &inner);
    if (outer * D * inner == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(y, &d));
    WHC_FLOAT_DISPATCH(y->dtype,
        softmax_grad_kernel<T><<<whc_blocks(outer * inner), WHC_THREADS, 0, d->stream>>>(
            (const T *)whc_data(y), (const T *)whc_data(g), (T *)whc_data(gx), outer, D, inner,
            log_mode));
    WHC_LAUNCHED("softmax_grad_kernel");
    return WH_OK;
}

// ---- sum of squares, batch norm's channel sums -------------------------------------------------

template <class T>
struct square_term {
    const T *x;
    __device__ double operator()(int64_t i) const { return (double)x[i] * (double)x[i]; }
};

extern "C" wh_status whc_sum_squares(const wh_tensor *x, double *result) {
    int64_t n = whc_numel(x);
    *result = 0;
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    double *dev;
    WH_TRY(whc_malloc(d->index, sizeof(double), (void **)&dev));
    wh_status st;
    WHC_FLOAT_DISPATCH(x->dtype,
        square_term<T> f = {(const T *)whc_data(x)};
        st = whc_grid_sum<double>(d, f, n, 1.0, (double *)NULL, dev));
    cudaError_t e = cudaSuccess;
    if (st == WH_OK) e = cudaMemcpyAsync(result, dev, sizeof(double), cudaMemcpyDeviceToHost, d->stream);
    if (st == WH_OK && e == cudaSuccess) e = cudaStreamSynchronize(d->stream);
    whc_free(d->index, dev, sizeof(double));
    if (st == WH_OK && e != cudaSuccess) st = whc_cuda_error("cudaMemcpyAsync (sum of squares)", e);
    return st;
}

// Block c sums channel c of (N, C, S): g, and g * (x - mean) * invstd.
template <class T>
__global__ void channel_sums_kernel(const T *x, const T *g, const T *mean, const T *invstd,
                                    int64_t N, int64_t C, int64_t S, double *sum_g,
                                    double *sum_gx) {
    int64_t c = blockIdx.x;
    double mu = (double)mean[c], is = (double)invstd[c], sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < N * S; j += blockDim.x) {
        int64_t e = ((j / S) * C + c) * S + j % S;
        sg += (double)g[e];
        sgx += (double)g[e] * (((double)x[e] - mu) * is);
    }
    sg = block_sum(sg);
    sgx = block_sum(sgx);
    if (threadIdx.x == 0) {
        sum_g[c] = sg;
        sum_gx[c] = sgx;
    }
}

extern "C" wh_status whc_channel_sums(const wh_tensor *x, const wh_tensor *g, const wh_tensor *mean,
                                      const wh_tensor *invstd, double *sum_g, double *sum_gx) {
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int k = 2; k < x->ndim; k++) S *= x->shape[k];
    if (C == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    WHC_FLOAT_DISPATCH(x->dtype,
        channel_sums_kernel<T><<<(unsigned)C, WHC_THREADS, 0, d->stream>>>(
            (const T *)whc_data(x), (const T *)whc_data(g), (const T *)whc_data(mean),
            (const T *)whc_data(invstd), N, C, S, sum_g, sum_gx));
    WHC_LAUNCHED("channel_sums_kernel");
    return WH_OK;
}
