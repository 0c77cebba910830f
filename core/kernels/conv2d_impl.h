/* Convolution kernel bodies, instantiated once per element type by conv2d.c:
 *   #define T float / double, SFX _f32 / _f64, GEMM cblas_sgemm / cblas_dgemm
 *   #include "conv2d_impl.h"
 * Not a public header. Everything here is static. */
#ifndef T
#error "conv2d_impl.h is a template: define T, SFX and GEMM first"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(name, SFX)

/* ---------------------------------------------------------------- epilogues */

/* p[i] = act(p[i] + b) over n elements. */
static void F(bias_act)(T *restrict p, size_t n, T b, wh_activation act) {
    switch (act) {
    case WH_ACT_RELU:
        for (size_t i = 0; i < n; i++) p[i] = F(wh_relu)(p[i] + b);
        break;
    case WH_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) p[i] = F(wh_sigmoid)(p[i] + b);
        break;
    default:
        if (b != 0)
            for (size_t i = 0; i < n; i++) p[i] += b;
        break;
    }
}

static T F(sum)(const T *restrict p, size_t n) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

/* -------------------------------------------------------- im2col / col2im */

/* col ((c1-c0)*kh*kw, (oh1-oh0)*w_out) = patches of channels [c0,c1) of one
 * image xn (c_in, h_in, w_in) for output rows [oh0, oh1). */
static void F(im2col)(const wh_conv2d_shape *s, const T *restrict xn, int c0, int c1, int oh0,
                      int oh1, T *restrict col) {
    const int H = s->h_in, W = s->w_in, Wo = s->w_out, KH = s->kh, KW = s->kw;
    const int sh = s->stride_h, sw = s->stride_w;
    const size_t nb = (size_t)(oh1 - oh0) * Wo;
    for (int c = c0; c < c1; c++) {
        for (int kh = 0; kh < KH; kh++) {
            for (int kw = 0; kw < KW; kw++) {
                T *dst = col + ((size_t)((c - c0) * KH + kh) * KW + kw) * nb;
                const int off = kw * s->dil_w - s->pad_w;
                int lo, hi;
                wh__conv_range(off, sw, W, Wo, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++, dst += Wo) {
                    const int ih = oh * sh - s->pad_h + kh * s->dil_h;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, sizeof(T) * Wo);
                        continue;
                    }
                    const T *src = xn + ((size_t)c * H + ih) * W;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0;
                    if (sw == 1)
                        memcpy(dst + lo, src + lo + off, sizeof(T) * (hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * sw + off];
                    for (int ow = hi; ow < Wo; ow++) dst[ow] = 0;
                }
            }
        }
    }
}

/* dxn[c0:c1] += col2im(col) for output rows [oh0, oh1). */
static void F(col2im)(const wh_conv2d_shape *s, const T *restrict col, int c0, int c1, int oh0,
                      int oh1, T *restrict dxn) {
    const int H = s->h_in, W = s->w_in, Wo = s->w_out, KH = s->kh, KW = s->kw;
    const int sh = s->stride_h, sw = s->stride_w;
    const size_t nb = (size_t)(oh1 - oh0) * Wo;
    for (int c = c0; c < c1; c++) {
        for (int kh = 0; kh < KH; kh++) {
            for (int kw = 0; kw < KW; kw++) {
                const T *src = col + ((size_t)((c - c0) * KH + kh) * KW + kw) * nb;
                const int off = kw * s->dil_w - s->pad_w;
                int lo, hi;
                wh__conv_range(off, sw, W, Wo, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++, src += Wo) {
                    const int ih = oh * sh - s->pad_h + kh * s->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    T *dst = dxn + ((size_t)c * H + ih) * W;
                    if (sw == 1) {
                        T *d = dst + off;
                        for (int ow = lo; ow < hi; ow++) d[ow] += src[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow * sw + off] += src[ow];
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------ GEMM paths */

/* y = act(W * im2col(x) + bias), tasks = images x output-row blocks. */
static wh_status F(fwd_gemm)(const wh_conv2d_shape *s, const T *x, const T *w, const T *bias,
                             wh_activation act, T *y) {
    const int M = s->c_out, K = s->c_in * s->kh * s->kw, Ho = s->h_out, Wo = s->w_out;
    const size_t HoWo = (size_t)Ho * Wo, xstride = (size_t)s->c_in * s->h_in * s->w_in;
    const int direct_b = wh__conv_is_pointwise(s);
    const int rows = wh__conv_block_rows(s, K);
    const int nblk = (Ho + rows - 1) / rows;
    const int ntask = s->n * nblk;
    const int outer = wh__conv_outer_parallel(ntask);
    const int saved = wh__blas_begin(outer);
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (outer)
    for (int t = 0; t < ntask; t++) {
        const int n = t / nblk, oh0 = (t % nblk) * rows;
        const int oh1 = oh0 + rows < Ho ? oh0 + rows : Ho;
        const int nb = (oh1 - oh0) * Wo;
        const T *xn = x + n * xstride;
        const T *B;
        int ldb;
        if (direct_b) {
            B = xn + (size_t)oh0 * Wo;
            ldb = (int)HoWo;
        } else {
            T *col = wh_scratch(0, sizeof(T) * (size_t)K * nb);
            if (!col) {
#pragma omp atomic write
                st = WH_ERR_MEMORY;
                continue;
            }
            F(im2col)(s, xn, 0, s->c_in, oh0, oh1, col);
            B = col;
            ldb = nb;
        }
        T *yb = y + n * (size_t)M * HoWo + (size_t)oh0 * Wo;
        GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, nb, K, 1, w, K, B, ldb, 0, yb,
             (int)HoWo);
        if (bias || act != WH_ACT_NONE) {
            for (int co = 0; co < M; co++)
                F(bias_act)(yb + co * HoWo, nb, bias ? bias[co] : 0, act);
        }
    }
    wh__blas_end(saved);
    return st;
}

/* dx = col2im(W^T dy) (+ bias, act for the transposed conv); tasks = images x
 * input-channel groups, each walking its output-row blocks in order. */
static wh_status F(bwdin_gemm)(const wh_conv2d_shape *s, const T *dy, const T *w, const T *bias,
                               wh_activation act, T *dx) {
    const int M = s->c_out, KK = s->kh * s->kw, K = s->c_in * KK, Ho = s->h_out, Wo = s->w_out;
    const size_t HoWo = (size_t)Ho * Wo, HW = (size_t)s->h_in * s->w_in;
    const int pointwise = wh__conv_is_pointwise(s);
    const int ng = wh__conv_groups(s->n, s->c_in);
    const int cpg = (s->c_in + ng - 1) / ng;
    const int ntask = s->n * ng;
    const int outer = wh__conv_outer_parallel(ntask);
    const int saved = wh__blas_begin(outer);
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (outer)
    for (int t = 0; t < ntask; t++) {
        const int n = t / ng, c0 = (t % ng) * cpg;
        const int c1 = c0 + cpg < s->c_in ? c0 + cpg : s->c_in;
        if (c0 >= c1) continue;
        const int Kg = (c1 - c0) * KK;
        const int rows = wh__conv_block_rows(s, Kg);
        T *dxn = dx + n * (size_t)s->c_in * HW;
        const T *dyn = dy + n * (size_t)M * HoWo;
        if (pointwise) {
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, Kg, (int)HoWo, M, 1, w + c0, K, dyn,
                 (int)HoWo, 0, dxn + c0 * HW, (int)HW);
        } else {
            memset(dxn + c0 * HW, 0, sizeof(T) * (c1 - c0) * HW);
            T *col = wh_scratch(0, sizeof(T) * (size_t)Kg * rows * Wo);
            if (!col) {
#pragma omp atomic write
                st = WH_ERR_MEMORY;
                continue;
            }
            for (int oh0 = 0; oh0 < Ho; oh0 += rows) {
                const int oh1 = oh0 + rows < Ho ? oh0 + rows : Ho;
                const int nb = (oh1 - oh0) * Wo;
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, Kg, nb, M, 1, w + c0 * KK, K,
                     dyn + (size_t)oh0 * Wo, (int)HoWo, 0, col, nb);
                F(col2im)(s, col, c0, c1, oh0, oh1, dxn);
            }
        }
        if (bias || act != WH_ACT_NONE) {
            for (int c = c0; c < c1; c++)
                F(bias_act)(dxn + c * HW, HW, bias ? bias[c] : 0, act);
        }
    }
    wh__blas_end(saved);
    return st;
}

/* dw = sum over images of dy * im2col(x)^T, with per-thread partial sums;
 * tasks = images x output-row blocks. */
static wh_status F(bwdw_gemm)(const wh_conv2d_shape *s, const T *x, const T *dy, T *dw,
                              T *dbias) {
    const int M = s->c_out, K = s->c_in * s->kh * s->kw, Ho = s->h_out, Wo = s->w_out;
    const size_t HoWo = (size_t)Ho * Wo, xstride = (size_t)s->c_in * s->h_in * s->w_in;
    const int pointwise = wh__conv_is_pointwise(s);
    const int rows = wh__conv_block_rows(s, K);
    const int nblk = (Ho + rows - 1) / rows;
    const int ntask = s->n * nblk;
    const int outer = wh__conv_outer_parallel(ntask);
    const int nth = outer ? wh__conv_threads() : 1;
    const size_t part = (size_t)M * K + M;
    T *parts = wh_scratch(1, sizeof(T) * part * nth);
    if (!parts) return wh_fail(WH_ERR_MEMORY, "conv2d backward_weight: out of memory");
    memset(parts, 0, sizeof(T) * part * nth);
    const int saved = wh__blas_begin(outer);
    wh_status st = WH_OK;
#pragma omp parallel num_threads(nth) if (outer)
    {
        T *mine = parts + part * (outer ? omp_get_thread_num() : 0);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntask; t++) {
            const int n = t / nblk, oh0 = (t % nblk) * rows;
            const int oh1 = oh0 + rows < Ho ? oh0 + rows : Ho;
            const int nb = (oh1 - oh0) * Wo;
            const T *xn = x + n * xstride;
            const T *B;
            int ldb;
            if (pointwise) {
                B = xn + (size_t)oh0 * Wo;
                ldb = (int)HoWo;
            } else {
                T *col = wh_scratch(0, sizeof(T) * (size_t)K * nb);
                if (!col) {
#pragma omp atomic write
                    st = WH_ERR_MEMORY;
                    continue;
                }
                F(im2col)(s, xn, 0, s->c_in, oh0, oh1, col);
                B = col;
                ldb = nb;
            }
            const T *dyb = dy + n * (size_t)M * HoWo + (size_t)oh0 * Wo;
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, nb, 1, dyb, (int)HoWo, B, ldb, 1,
                 mine, K);
            if (dbias)
                for (int co = 0; co < M; co++) mine[(size_t)M * K + co] += F(sum)(dyb + co * HoWo, nb);
        }
    }
    wh__blas_end(saved);
    if (st != WH_OK) return st;
#pragma omp parallel for schedule(static) if (part > 4096)
    for (size_t i = 0; i < (size_t)M * K; i++) {
        T v = 0;
        for (int t = 0; t < nth; t++) v += parts[part * t + i];
        dw[i] = v;
    }
    if (dbias)
        for (int co = 0; co < M; co++) {
            T v = 0;
            for (int t = 0; t < nth; t++) v += parts[part * t + (size_t)M * K + co];
            dbias[co] = v;
        }
    return WH_OK;
}

/* ---------------------------------------------------------- direct paths */

/* Direct loops, vectorised over the output width; for small c_in*kh*kw or
 * c_out where GEMM is inefficient.  Tasks = (image, output channel). */
static wh_status F(fwd_direct)(const wh_conv2d_shape *s, const T *x, const T *w, const T *bias,
                               wh_activation act, T *y) {
    const int Ci = s->c_in, Co = s->c_out, H = s->h_in, W = s->w_in, KH = s->kh, KW = s->kw;
    const int Ho = s->h_out, Wo = s->w_out, sh = s->stride_h, sw = s->stride_w;
    const size_t HW = (size_t)H * W, HoWo = (size_t)Ho * Wo;
    const int ntask = s->n * Co;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int n = t / Co, co = t % Co;
        T *restrict yp = y + (size_t)t * HoWo;
        const T b = bias ? bias[co] : 0;
        for (size_t i = 0; i < HoWo; i++) yp[i] = b;
        for (int ci = 0; ci < Ci; ci++) {
            const T *restrict xp = x + ((size_t)n * Ci + ci) * HW;
            const T *restrict wp = w + ((size_t)co * Ci + ci) * KH * KW;
            for (int oh = 0; oh < Ho; oh++) {
                T *restrict yr = yp + (size_t)oh * Wo;
                for (int kh = 0; kh < KH; kh++) {
                    const int ih = oh * sh - s->pad_h + kh * s->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    const T *restrict xr = xp + (size_t)ih * W;
                    for (int kw = 0; kw < KW; kw++) {
                        const T wv = wp[kh * KW + kw];
                        const int off = kw * s->dil_w - s->pad_w;
                        int lo, hi;
                        wh__conv_range(off, sw, W, Wo, &lo, &hi);
                        if (sw == 1) {
                            const T *restrict xs = xr + off;
                            for (int ow = lo; ow < hi; ow++) yr[ow] += wv * xs[ow];
                        } else {
                            for (int ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * sw + off];
                        }
                    }
                }
            }
        }
        if (act != WH_ACT_NONE) F(bias_act)(yp, HoWo, 0, act);
    }
    return WH_OK;
}

/* Tasks = (image, input channel); accumulates over output channels. */
static wh_status F(bwdin_direct)(const wh_conv2d_shape *s, const T *dy, const T *w,
                                 const T *bias, wh_activation act, T *dx) {
    const int Ci = s->c_in, Co = s->c_out, H = s->h_in, W = s->w_in, KH = s->kh, KW = s->kw;
    const int Ho = s->h_out, Wo = s->w_out, sh = s->stride_h, sw = s->stride_w;
    const size_t HW = (size_t)H * W, HoWo = (size_t)Ho * Wo;
    const int ntask = s->n * Ci;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int n = t / Ci, ci = t % Ci;
        T *restrict dp = dx + (size_t)t * HW;
        memset(dp, 0, sizeof(T) * HW);
        for (int co = 0; co < Co; co++) {
            const T *restrict gp = dy + ((size_t)n * Co + co) * HoWo;
            const T *restrict wp = w + ((size_t)co * Ci + ci) * KH * KW;
            for (int oh = 0; oh < Ho; oh++) {
                const T *restrict gr = gp + (size_t)oh * Wo;
                for (int kh = 0; kh < KH; kh++) {
                    const int ih = oh * sh - s->pad_h + kh * s->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    T *restrict dr = dp + (size_t)ih * W;
                    for (int kw = 0; kw < KW; kw++) {
                        const T wv = wp[kh * KW + kw];
                        const int off = kw * s->dil_w - s->pad_w;
                        int lo, hi;
                        wh__conv_range(off, sw, W, Wo, &lo, &hi);
                        if (sw == 1) {
                            T *restrict ds = dr + off;
                            for (int ow = lo; ow < hi; ow++) ds[ow] += wv * gr[ow];
                        } else {
                            for (int ow = lo; ow < hi; ow++) dr[ow * sw + off] += wv * gr[ow];
                        }
                    }
                }
            }
        }
        if (bias || act != WH_ACT_NONE) F(bias_act)(dp, HW, bias ? bias[ci] : 0, act);
    }
    return WH_OK;
}

/* Tasks = (output channel, input channel); dbias summed by the ci == 0 tasks. */
static wh_status F(bwdw_direct)(const wh_conv2d_shape *s, const T *x, const T *dy, T *dw,
                                T *dbias) {
    const int Ci = s->c_in, Co = s->c_out, H = s->h_in, W = s->w_in, KH = s->kh, KW = s->kw;
    const int Ho = s->h_out, Wo = s->w_out, sh = s->stride_h, sw = s->stride_w;
    const size_t HW = (size_t)H * W, HoWo = (size_t)Ho * Wo;
    const int ntask = Co * Ci;
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int co = t / Ci, ci = t % Ci;
        double *acc = wh_scratch(2, sizeof(double) * (KH * KW + 1));
        if (!acc) {
#pragma omp atomic write
            st = WH_ERR_MEMORY;
            continue;
        }
        for (int k = 0; k <= KH * KW; k++) acc[k] = 0;
        for (int n = 0; n < s->n; n++) {
            const T *restrict gp = dy + ((size_t)n * Co + co) * HoWo;
            const T *restrict xp = x + ((size_t)n * Ci + ci) * HW;
            if (dbias && ci == 0) acc[KH * KW] += F(sum)(gp, HoWo);
            for (int oh = 0; oh < Ho; oh++) {
                const T *restrict gr = gp + (size_t)oh * Wo;
                for (int kh = 0; kh < KH; kh++) {
                    const int ih = oh * sh - s->pad_h + kh * s->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    const T *restrict xr = xp + (size_t)ih * W;
                    for (int kw = 0; kw < KW; kw++) {
                        const int off = kw * s->dil_w - s->pad_w;
                        int lo, hi;
                        wh__conv_range(off, sw, W, Wo, &lo, &hi);
                        T a = 0;
                        if (sw == 1) {
                            const T *restrict xs = xr + off;
#pragma omp simd reduction(+ : a)
                            for (int ow = lo; ow < hi; ow++) a += gr[ow] * xs[ow];
                        } else {
#pragma omp simd reduction(+ : a)
                            for (int ow = lo; ow < hi; ow++) a += gr[ow] * xr[ow * sw + off];
                        }
                        acc[kh * KW + kw] += a;
                    }
                }
            }
        }
        T *dwp = dw + (size_t)t * KH * KW;
        for (int k = 0; k < KH * KW; k++) dwp[k] = (T)acc[k];
        if (dbias && ci == 0) dbias[co] = (T)acc[KH * KW];
    }
    return st;
}

/* ------------------------------------------------------------ activation */

static void F(act_backward)(wh_activation act, const T *restrict y, T *restrict dy, size_t n) {
    switch (act) {
    case WH_ACT_RELU:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dy[i] *= F(wh_relu_grad)(y[i]);
        break;
    case WH_ACT_SIGMOID:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dy[i] *= F(wh_sigmoid_grad)(y[i]);
        break;
    default:
        break;
    }
}

#undef F
#undef CAT
#undef CAT_
