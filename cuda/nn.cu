// Pooling, upsampling and batch norm's evaluation-mode helpers.
//
// Pooling and upsampling are custom kernels rather than cuDNN's pooling:
// their per-element bodies (core/kernels/pool_math.h) follow the CPU's
// window and source-pixel arithmetic (nn_math.h), so ceil_mode,
// count_include_pad, PyTorch's nearest-neighbour indices, ties and NaNs
// come out exactly as on the CPU, which cuDNN's pooling does not promise,
// and the host tests run the very same bodies.  Forward passes are one
// thread per output element; backward passes are gathers, one thread per
// input element, with no atomics: deterministic.
#include "kernels.cuh"
#include "kernels/pool_math.h"

__device__ inline float max_pool_at(const wh_pool_geom *g, const float *x, int64_t oh, int64_t ow, int32_t *b) { return wh_max_pool_at_f32(g, x, oh, ow, b); }
__device__ inline double max_pool_at(const wh_pool_geom *g, const double *x, int64_t oh, int64_t ow, int32_t *b) { return wh_max_pool_at_f64(g, x, oh, ow, b); }
__device__ inline float max_pool_grad_at(const wh_pool_geom *g, const float *gp, const int32_t *ip, int64_t h, int64_t w) { return wh_max_pool_grad_at_f32(g, gp, ip, h, w); }
__device__ inline double max_pool_grad_at(const wh_pool_geom *g, const double *gp, const int32_t *ip, int64_t h, int64_t w) { return wh_max_pool_grad_at_f64(g, gp, ip, h, w); }
__device__ inline float avg_pool_at(const wh_pool_geom *g, const float *x, int64_t oh, int64_t ow) { return wh_avg_pool_at_f32(g, x, oh, ow); }
__device__ inline double avg_pool_at(const wh_pool_geom *g, const double *x, int64_t oh, int64_t ow) { return wh_avg_pool_at_f64(g, x, oh, ow); }
__device__ inline float avg_pool_grad_at(const wh_pool_geom *g, const float *gp, int64_t h, int64_t w) { return wh_avg_pool_grad_at_f32(g, gp, h, w); }
__device__ inline double avg_pool_grad_at(const wh_pool_geom *g, const double *gp, int64_t h, int64_t w) { return wh_avg_pool_grad_at_f64(g, gp, h, w); }
__device__ inline float upsample_at(int m, int a, const float *x, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t oh, int64_t ow) { return wh_upsample_at_f32(m, a, x, H, W, OH, OW, oh, ow); }
__device__ inline double upsample_at(int m, int a, const double *x, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t oh, int64_t ow) { return wh_upsample_at_f64(m, a, x, H, W, OH, OW, oh, ow); }
__device__ inline float upsample_grad_at(int m, int a, const float *gp, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t *rlo, const int64_t *rhi, const int64_t *clo, const int64_t *chi, int64_t h, int64_t w) { return wh_upsample_grad_at_f32(m, a, gp, H, W, OH, OW, rlo, rhi, clo, chi, h, w); }
__device__ inline double upsample_grad_at(int m, int a, const double *gp, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t *rlo, const int64_t *rhi, const int64_t *clo, const int64_t *chi, int64_t h, int64_t w) { return wh_upsample_grad_at_f64(m, a, gp, H, W, OH, OW, rlo, rhi, clo, chi, h, w); }

static wh_pool_geom pool_geom_of(const wh_tensor *in, const wh_tensor *out, const wh_pool_params *p) {
    wh_pool_geom g = {in->shape[2], in->shape[3], out->shape[2], out->shape[3], p->kernel[0],
                      p->kernel[1], p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                      p->count_include_pad};
    return g;
}

// ---- pooling -----------------------------------------------------------------------------------

template <class T>
__global__ void max_pool_kernel(wh_pool_geom g, const T *x, T *y, int32_t *idx, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
        int32_t b;
        y[i] = max_pool_at(&g, x + pl * g.H * g.W, oh, ow, &b);
        if (idx) idx[i] = b;
    }
}

extern "C" wh_status whc_max_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y,
                                    int32_t *idx) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    wh_pool_geom g = pool_geom_of(x, y, p);
    WHC_FLOAT_DISPATCH(x->dtype,
        max_pool_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(x), (T *)whc_data(y), idx, n));
    WHC_LAUNCHED("max_pool_kernel");
    return WH_OK;
}

template <class T>
__global__ void max_pool_grad_kernel(wh_pool_geom g, const T *gy, const int32_t *idx, T *gx,
                                     int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
        gx[i] = max_pool_grad_at(&g, gy + pl * g.OH * g.OW, idx + pl * g.OH * g.OW, h, w);
    }
}

extern "C" wh_status whc_max_pool2d_grad(const wh_tensor *gy, const int32_t *idx,
                                         const wh_pool_params *p, wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    wh_pool_geom g = pool_geom_of(gx, gy, p);
    WHC_FLOAT_DISPATCH(gx->dtype,
        max_pool_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(gy), idx, (T *)whc_data(gx), n));
    WHC_LAUNCHED("max_pool_grad_kernel");
    return WH_OK;
}

template <class T>
__global__ void avg_pool_kernel(wh_pool_geom g, const T *x, T *y, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
        y[i] = avg_pool_at(&g, x + pl * g.H * g.W, oh, ow);
    }
}

extern "C" wh_status whc_avg_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    wh_pool_geom g = pool_geom_of(x, y, p);
    WHC_FLOAT_DISPATCH(x->dtype,
        avg_pool_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(x), (T *)whc_data(y), n));
    WHC_LAUNCHED("avg_pool_kernel");
    return WH_OK;
}

template <class T>
__global__ void avg_pool_grad_kernel(wh_pool_geom g, const T *gy, T *gx, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
        gx[i] = avg_pool_grad_at(&g, gy + pl * g.OH * g.OW, h, w);
    }
}

extern "C" wh_status whc_avg_pool2d_grad(const wh_tensor *gy, const wh_pool_params *p,
                                         wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    wh_pool_geom g = pool_geom_of(gx, gy, p);
    WHC_FLOAT_DISPATCH(gx->dtype,
        avg_pool_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(gy), (T *)whc_data(gx), n));
    WHC_LAUNCHED("avg_pool_grad_kernel");
    return WH_OK;
}

// ---- upsampling ------------------------------------------------------------------------------------

typedef struct {
    int64_t H, W, OH, OW;
    int mode, align;
} resample_geom;

template <class T>
__global__ void upsample_kernel(resample_geom g, const T *x, T *y, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
        y[i] = upsample_at(g.mode, g.align, x + pl * g.H * g.W, g.H, g.W, g.OH, g.OW, oh, ow);
    }
}

extern "C" wh_status whc_upsample2d(const wh_tensor *x, int mode, bool align, wh_tensor *y) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    resample_geom g = {x->shape[2], x->shape[3], y->shape[2], y->shape[3], mode, align};
    WHC_FLOAT_DISPATCH(x->dtype,
        upsample_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(x), (T *)whc_data(y), n));
    WHC_LAUNCHED("upsample_kernel");
    return WH_OK;
}

// range: the reader runs of rows (lo: [0, H), hi: [H, 2H)) then of
// columns (lo: [2H, 2H+W), hi: [2H+W, 2H+2W)).
template <class T>
__global__ void upsample_grad_kernel(resample_geom g, const int64_t *range, const T *gy, T *gx,
                                     int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
        const int64_t *cr = range + 2 * g.H;
        gx[i] = upsample_grad_at(g.mode, g.align, gy + pl * g.OH * g.OW, g.H, g.W, g.OH, g.OW,
                                 range, range + g.H, cr, cr + g.W, h, w);
    }
}

extern "C" wh_status whc_upsample2d_grad(const wh_tensor *gy, int mode, bool align, wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    resample_geom g = {gx->shape[2], gx->shape[3], gy->shape[2], gy->shape[3], mode, align};
    size_t bytes = sizeof(int64_t) * (size_t)(2 * g.H + 2 * g.W);
    int64_t *host = (int64_t *)malloc(bytes), *dev = NULL;
    if (!host) return whc_fail(WH_ERR_MEMORY, "upsample backward: out of memory");
    wh_resample_readers(mode, align, g.H, g.OH, host, host + g.H);
    wh_resample_readers(mode, align, g.W, g.OW, host + 2 * g.H, host + 2 * g.H + g.W);
    wh_status st = whc_malloc(d->index, bytes, (void **)&dev);
    if (st == WH_OK) {
        // from pageable memory: returns once `host` has been read
        cudaError_t e = cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, d->stream);
        if (e != cudaSuccess) st = whc_cuda_error("cudaMemcpyAsync (upsample reader runs)", e);
    }
    if (st == WH_OK) {
        WHC_FLOAT_DISPATCH(gx->dtype,
            upsample_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
                g, dev, (const T *)whc_data(gy), (T *)whc_data(gx), n));
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) st = whc_cuda_error("launch of upsample_grad_kernel", e);
    }
    if (dev) whc_free(d->index, dev, bytes);
    free(host);
    return st;
}

// ---- batch norm in evaluation ------------------------------------------------------------------------

template <class T>
__global__ void bn_invstd_kernel(const T *var, int64_t stride, double eps, T *invstd, int64_t c) {
    WHC_GRID_LOOP(i, c) invstd[i] = (T)(1.0 / sqrt((double)var[i * stride] + eps));
}

extern "C" wh_status whc_bn_invstd(const wh_tensor *var, double eps, wh_tensor *invstd) {
    int64_t c = whc_numel(invstd);
    if (c == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(invstd, &d));
    WHC_FLOAT_DISPATCH(invstd->dtype,
        bn_invstd_kernel<T><<<whc_blocks(c), WHC_THREADS, 0, d->stream>>>(
            (const T *)whc_data(var), var->stride[0], eps, (T *)whc_data(invstd), c));
    WHC_LAUNCHED("bn_invstd_kernel");
    return WH_OK;
}

// dx = g * weight * invstd per channel of (N, C, S); weight may be absent (1).
template <class T>
__global__ void bn_eval_grad_kernel(const T *g, const T *w, int64_t ws, const T *invstd, T *gx,
                                    int64_t C, int64_t S, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t c = (i / S) % C;
        double k = (w ? (double)w[c * ws] : 1.0) * (double)invstd[c];
        gx[i] = (T)(k * (double)g[i]);
    }
}

extern "C" wh_status whc_bn_eval_grad_input(const wh_tensor *g, const wh_tensor *weight,
                                            const wh_tensor *invstd, wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    int64_t C = gx->shape[1], S = 1;
    for (int k = 2; k < gx->ndim; k++) S *= gx->shape[k];
    WHC_FLOAT_DISPATCH(gx->dtype,
        bn_eval_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            (const T *)whc_data(g), weight ? (const T *)whc_data(weight) : (const T *)NULL,
            weight ? weight->stride[0] : 0, (const T *)whc_data(invstd), (T *)whc_data(gx), C, S,
            n));
    WHC_LAUNCHED("bn_eval_grad_kernel");
    return WH_OK;
}

template <class T>
__global__ void bn_param_grads_kernel(const double *sum_g, const double *sum_gx, T *gw, T *gb,
                                      int64_t c) {
    WHC_GRID_LOOP(i, c) {
        if (gw) gw[i] = (T)sum_gx[i];
        if (gb) gb[i] = (T)sum_g[i];
    }
}

extern "C" wh_status whc_bn_param_grads(const double *sum_g, const double *sum_gx, wh_tensor *gw,
                                        wh_tensor *gb) {
    wh_tensor *any = gw ? gw : gb;
    if (!any) return WH_OK;
    int64_t c = whc_numel(any);
    if (c == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(any, &d));
    WHC_FLOAT_DISPATCH(any->dtype,
        bn_param_grads_kernel<T><<<whc_blocks(c), WHC_THREADS, 0, d->stream>>>(
            sum_g, sum_gx, gw ? (T *)whc_data(gw) : (T *)NULL, gb ? (T *)whc_data(gb) : (T *)NULL,
            c));
    WHC_LAUNCHED("bn_param_grads_kernel");
    return WH_OK;
}
