// Pooling, upsampling and batch norm's evaluation-mode helpers.
//
// Pooling and upsampling are custom kernels rather than cuDNN's pooling:
// they share the CPU's window and source-pixel arithmetic (nn_math.h), so
// ceil_mode, count_include_pad, PyTorch's nearest-neighbour indices, ties
// and NaNs come out exactly as on the CPU, which cuDNN's pooling does not
// promise.  Forward passes are one thread per output element.  Backward
// passes are gathers, one thread per input element summing the outputs
// that read it (found from the windows, or from per-row ranges for
// upsampling), so they need no atomics and are deterministic.
#include "kernels.cuh"

typedef struct {
    int64_t planes, H, W, OH, OW;
    int kh, kw, sh, sw, ph, pw, ceil_mode, include_pad;
} pool_geom;

static pool_geom pool_geom_of(const wh_tensor *in, const wh_tensor *out, const wh_pool_params *p) {
    pool_geom g = {in->shape[0] * in->shape[1], in->shape[2], in->shape[3], out->shape[2],
                   out->shape[3], p->kernel[0], p->kernel[1], p->stride[0], p->stride[1],
                   p->padding[0], p->padding[1], p->ceil_mode, p->count_include_pad};
    return g;
}

// ---- max pooling ---------------------------------------------------------------------------------

// The CPU's loop: the window clipped to the input, scanned row by row, a
// later element taking over when wh_pool_takes says so.
template <class T>
__global__ void max_pool_kernel(pool_geom g, const T *x, T *y, int32_t *idx, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
        int64_t hs = oh * g.sh - g.ph, he = hs + g.kh < g.H ? hs + g.kh : g.H;
        int64_t ws = ow * g.sw - g.pw, we = ws + g.kw < g.W ? ws + g.kw : g.W;
        if (hs < 0) hs = 0;
        if (ws < 0) ws = 0;
        const T *xp = x + pl * g.H * g.W;
        int64_t bi = hs * g.W + ws;
        T best = xp[bi];
        for (int64_t h = hs; h < he; h++)
            for (int64_t w = ws; w < we; w++)
                if (pool_takes(xp[h * g.W + w], best)) {
                    best = xp[h * g.W + w];
                    bi = h * g.W + w;
                }
        y[i] = best;
        if (idx) idx[i] = (int32_t)bi;
    }
}

extern "C" wh_status whc_max_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y,
                                    int32_t *idx) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    pool_geom g = pool_geom_of(x, y, p);
    WHC_FLOAT_DISPATCH(x->dtype,
        max_pool_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(x), (T *)whc_data(y), idx, n));
    WHC_LAUNCHED("max_pool_kernel");
    return WH_OK;
}

// The outputs whose (unclipped) window [o*s - pad, o*s - pad + k) holds
// input position i: o in [*lo, *hi).
__device__ inline void windows_of(int64_t i, int k, int s, int pad, int64_t out, int64_t *lo,
                                  int64_t *hi) {
    int64_t a = i + pad - k + 1; // o*s >= a
    int64_t l = a <= 0 ? 0 : (a + s - 1) / s;
    int64_t h = (i + pad) / s + 1; // o*s <= i + pad
    *lo = l;
    *hi = h < out ? h : out;
}

template <class T>
__global__ void max_pool_grad_kernel(pool_geom g, const T *gy, const int32_t *idx, T *gx,
                                     int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
        int64_t oh0, oh1, ow0, ow1;
        windows_of(h, g.kh, g.sh, g.ph, g.OH, &oh0, &oh1);
        windows_of(w, g.kw, g.sw, g.pw, g.OW, &ow0, &ow1);
        int32_t me = (int32_t)(h * g.W + w);
        const T *gp = gy + pl * g.OH * g.OW;
        const int32_t *ip = idx + pl * g.OH * g.OW;
        T acc = 0;
        for (int64_t oh = oh0; oh < oh1; oh++)
            for (int64_t ow = ow0; ow < ow1; ow++)
                if (ip[oh * g.OW + ow] == me) acc += gp[oh * g.OW + ow];
        gx[i] = acc;
    }
}

extern "C" wh_status whc_max_pool2d_grad(const wh_tensor *gy, const int32_t *idx,
                                         const wh_pool_params *p, wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    pool_geom g = pool_geom_of(gx, gy, p);
    WHC_FLOAT_DISPATCH(gx->dtype,
        max_pool_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(gy), idx, (T *)whc_data(gx), n));
    WHC_LAUNCHED("max_pool_grad_kernel");
    return WH_OK;
}

// ---- average pooling -------------------------------------------------------------------------------

// PyTorch's window and divisor (ops_nn.c avg_window): the window clipped to
// the padded input gives the divisor with count_include_pad, the window
// clipped to the input the pixels (and the divisor without).
__device__ inline void avg_window(int64_t o, int s, int pad, int k, int64_t in, int64_t *start,
                                  int64_t *end, int64_t *padded_len) {
    int64_t a = o * s - pad, b = a + k < in + pad ? a + k : in + pad;
    *padded_len = b - a;
    *start = a < 0 ? 0 : a;
    *end = b < in ? b : in;
}

__device__ inline int64_t avg_divisor(const pool_geom &g, int64_t oh, int64_t ow) {
    int64_t hs, he, hl, ws, we, wl;
    avg_window(oh, g.sh, g.ph, g.kh, g.H, &hs, &he, &hl);
    avg_window(ow, g.sw, g.pw, g.kw, g.W, &ws, &we, &wl);
    return g.include_pad ? hl * wl : (he - hs) * (we - ws);
}

template <class T>
__global__ void avg_pool_kernel(pool_geom g, const T *x, T *y, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
        int64_t hs, he, hl, ws, we, wl;
        avg_window(oh, g.sh, g.ph, g.kh, g.H, &hs, &he, &hl);
        avg_window(ow, g.sw, g.pw, g.kw, g.W, &ws, &we, &wl);
        int64_t div = g.include_pad ? hl * wl : (he - hs) * (we - ws);
        const T *xp = x + pl * g.H * g.W;
        T acc = 0;
        for (int64_t h = hs; h < he; h++)
            for (int64_t w = ws; w < we; w++) acc += xp[h * g.W + w];
        y[i] = div > 0 ? acc / (T)div : (T)0;
    }
}

extern "C" wh_status whc_avg_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    pool_geom g = pool_geom_of(x, y, p);
    WHC_FLOAT_DISPATCH(x->dtype,
        avg_pool_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(x), (T *)whc_data(y), n));
    WHC_LAUNCHED("avg_pool_kernel");
    return WH_OK;
}

template <class T>
__global__ void avg_pool_grad_kernel(pool_geom g, const T *gy, T *gx, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
        int64_t oh0, oh1, ow0, ow1;
        windows_of(h, g.kh, g.sh, g.ph, g.OH, &oh0, &oh1);
        windows_of(w, g.kw, g.sw, g.pw, g.OW, &ow0, &ow1);
        const T *gp = gy + pl * g.OH * g.OW;
        T acc = 0;
        for (int64_t oh = oh0; oh < oh1; oh++)
            for (int64_t ow = ow0; ow < ow1; ow++) {
                int64_t div = avg_divisor(g, oh, ow);
                if (div > 0) acc += gp[oh * g.OW + ow] / (T)div;
            }
        gx[i] = acc;
    }
}

extern "C" wh_status whc_avg_pool2d_grad(const wh_tensor *gy, const wh_pool_params *p,
                                         wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    pool_geom g = pool_geom_of(gx, gy, p);
    WHC_FLOAT_DISPATCH(gx->dtype,
        avg_pool_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(gy), (T *)whc_data(gx), n));
    WHC_LAUNCHED("avg_pool_grad_kernel");
    return WH_OK;
}

// ---- upsampling ------------------------------------------------------------------------------------

typedef struct {
    int64_t planes, H, W, OH, OW;
    int mode, align;
} resample_geom;

// Source rows (or columns) of output row o: nearest has one (i0, step 0,
// lambda 0), bilinear two (i0 with weight 1-lambda, i0+step with lambda).
__host__ __device__ inline void source_of(int mode, int align, int64_t o, int64_t in, int64_t out,
                                          int64_t *i0, int64_t *step, double *lambda) {
    if (mode == WH_UPSAMPLE_NEAREST) {
        *i0 = wh_nearest_source(o, in, out);
        *step = 0;
        *lambda = 0;
    } else {
        wh_linear_split(wh_linear_source(o, in, out, align), in, i0, step, lambda);
    }
}

template <class T>
__global__ void upsample_kernel(resample_geom g, const T *x, T *y, int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
        int64_t h0, hs, w0, ws;
        double hl, wl;
        source_of(g.mode, g.align, oh, g.H, g.OH, &h0, &hs, &hl);
        source_of(g.mode, g.align, ow, g.W, g.OW, &w0, &ws, &wl);
        const T *xp = x + pl * g.H * g.W;
        if (g.mode == WH_UPSAMPLE_NEAREST) {
            y[i] = xp[h0 * g.W + w0];
        } else {
            // the CPU's expression, operand for operand
            const T *s0 = xp + h0 * g.W, *s1 = s0 + hs * g.W;
            T lh = (T)hl, lh0 = (T)1 - lh, lw = (T)wl, lw0 = (T)1 - lw;
            int64_t a = w0, b = w0 + ws;
            y[i] = lh0 * (lw0 * s0[a] + lw * s0[b]) + lh * (lw0 * s1[a] + lw * s1[b]);
        }
    }
}

extern "C" wh_status whc_upsample2d(const wh_tensor *x, int mode, bool align, wh_tensor *y) {
    int64_t n = whc_numel(y);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    resample_geom g = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2],
                       y->shape[3], mode, align};
    WHC_FLOAT_DISPATCH(x->dtype,
        upsample_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            g, (const T *)whc_data(x), (T *)whc_data(y), n));
    WHC_LAUNCHED("upsample_kernel");
    return WH_OK;
}

// The weight with which output row o (sources i0, i0+step, lambda) feeds
// input row i: what the CPU's scatter adds for it.
template <class T>
__device__ inline T source_weight(int mode, int64_t i, int64_t i0, int64_t step, double lambda) {
    if (mode == WH_UPSAMPLE_NEAREST) return i0 == i ? (T)1 : (T)0;
    T l = (T)lambda, w = 0;
    if (i0 == i) w += (T)1 - l;
    if (i0 + step == i) w += l;
    return w;
}

// range[0..H) / [H..2H): the output rows reading input row h; then the
// same for columns at [2H..2H+W) / [2H+W..2H+2W).
template <class T>
__global__ void upsample_grad_kernel(resample_geom g, const int64_t *range, const T *gy, T *gx,
                                     int64_t n) {
    WHC_GRID_LOOP(i, n) {
        int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
        const int64_t *cr = range + 2 * g.H;
        const T *gp = gy + pl * g.OH * g.OW;
        T acc = 0;
        for (int64_t oh = range[h]; oh < range[g.H + h]; oh++) {
            int64_t h0, hs;
            double hl;
            source_of(g.mode, g.align, oh, g.H, g.OH, &h0, &hs, &hl);
            T wh = source_weight<T>(g.mode, h, h0, hs, hl);
            for (int64_t ow = cr[w]; ow < cr[g.W + w]; ow++) {
                int64_t w0, ws;
                double wl;
                source_of(g.mode, g.align, ow, g.W, g.OW, &w0, &ws, &wl);
                acc += wh * source_weight<T>(g.mode, w, w0, ws, wl) * gp[oh * g.OW + ow];
            }
        }
        gx[i] = acc;
    }
}

// For every input index along one axis, the outputs reading it: sources
// never decrease along the output axis, so they form one run.
static void reading_ranges(int mode, int align, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    for (int64_t i = 0; i < in; i++) {
        lo[i] = out;
        hi[i] = 0;
    }
    for (int64_t o = 0; o < out; o++) {
        int64_t i0, step;
        double lambda;
        source_of(mode, align, o, in, out, &i0, &step, &lambda);
        int64_t srcs[2] = {i0, i0 + step};
        for (int k = 0; k < 2; k++) {
            int64_t i = srcs[k];
            if (o < lo[i]) lo[i] = o;
            if (o + 1 > hi[i]) hi[i] = o + 1;
        }
    }
    for (int64_t i = 0; i < in; i++)
        if (hi[i] < lo[i]) lo[i] = hi[i] = 0;
}

extern "C" wh_status whc_upsample2d_grad(const wh_tensor *gy, int mode, bool align, wh_tensor *gx) {
    int64_t n = whc_numel(gx);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(gx, &d));
    resample_geom g = {gx->shape[0] * gx->shape[1], gx->shape[2], gx->shape[3], gy->shape[2],
                       gy->shape[3], mode, align};
    size_t bytes = sizeof(int64_t) * (size_t)(2 * g.H + 2 * g.W);
    int64_t *host = (int64_t *)malloc(bytes), *dev = NULL;
    if (!host) return whc_fail(WH_ERR_MEMORY, "upsample backward: out of memory");
    reading_ranges(mode, align, g.H, g.OH, host, host + g.H);
    reading_ranges(mode, align, g.W, g.OW, host + 2 * g.H, host + 2 * g.H + g.W);
    wh_status st = whc_malloc(d->index, bytes, (void **)&dev);
    if (st == WH_OK) {
        // from pageable memory: returns once `host` has been read
        cudaError_t e = cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, d->stream);
        if (e != cudaSuccess) st = whc_cuda_error("cudaMemcpyAsync (upsample ranges)", e);
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
