/* AVX-512 implicit-GEMM convolution for f32, stride 1 (runtime-dispatched;
 * the library is built for x86-64-v3, so these functions carry their own
 * target attribute and run only where the CPU has AVX-512F).
 *
 * "Extended" layout: pad each input plane to hp x wp (wp = w_in + 2*pad_w)
 * and flatten it.  Output pixel (oh, ow) then lives at f = oh*wp + ow, and
 * tap (kh, kw) of channel c reads padded[c][f + kh*dil_h*wp + kw*dil_w]: the
 * im2col matrix never needs to exist, its row k = (c, kh, kw) is the padded
 * plane shifted by a constant.  The positions with ow >= w_out are garbage
 * and are dropped when the output is written.
 *
 *   forward:          Y (c_out x F) = W (c_out x K) * X_shifted (K x F)
 *                     micro-kernel 8 x 48: rows broadcast from W, columns
 *                     loaded straight from the padded planes.
 *   backward_input:   the forward of dy padded by dil*(k-1) - pad with the
 *                     weights flipped and transposed (stride 1 only).
 *   backward_weight:  dW^T (K x c_out) += X_shifted (K x F) * dY^T (F x c_out)
 *                     micro-kernel 12 x 32: rows broadcast from the shifted
 *                     planes, columns from dY packed in chunks of F.
 * Tasks are (image, range of F) on OpenMP threads; dW uses per-thread partial
 * sums. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/conv2d_internal.h"
#include "scratch.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define WH_HAVE_X512 1
#include <immintrin.h>
#define X512 __attribute__((target("avx512f,fma")))
#else
#define WH_HAVE_X512 0
#endif

int wh__conv2d_x512_available(void) {
#if WH_HAVE_X512
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return cached;
#else
    return 0;
#endif
}

int wh__conv2d_x512_ok(const wh_conv2d_shape *s, int op) {
    if (!wh__conv2d_x512_available() || s->stride_h != 1 || s->stride_w != 1) return 0;
    if (op == 1) /* backward_input as a forward conv needs pad <= dil*(k-1) */
        return s->pad_h <= s->dil_h * (s->kh - 1) && s->pad_w <= s->dil_w * (s->kw - 1);
    return 1;
}

#if WH_HAVE_X512

static int nthreads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* -------------------------------------------------------- micro-kernels */

#define FMA_ROW3(i)                                                                              \
    do {                                                                                         \
        const __m512 t = _mm512_set1_ps(a##i[k]);                                                \
        c##i##0 = _mm512_fmadd_ps(t, b0, c##i##0);                                               \
        c##i##1 = _mm512_fmadd_ps(t, b1, c##i##1);                                               \
        c##i##2 = _mm512_fmadd_ps(t, b2, c##i##2);                                               \
    } while (0)
#define ZERO_ROW3(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0
#define STORE_ROW3(i)                                                                            \
    do {                                                                                         \
        _mm512_storeu_ps(c + (i) * ldc, c##i##0);                                                \
        _mm512_storeu_ps(c + (i) * ldc + 16, c##i##1);                                           \
        _mm512_storeu_ps(c + (i) * ldc + 32, c##i##2);                                           \
    } while (0)

/* c[i*ldc + j] = sum_k a[i][k] * brow[k][boff + j], i < 8, j < 48. */
X512 static void ukr_8x48(int K, const float *const *a, const float *const *brow, ptrdiff_t boff,
                          float *c, ptrdiff_t ldc) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    const float *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
    ZERO_ROW3(0);
    ZERO_ROW3(1);
    ZERO_ROW3(2);
    ZERO_ROW3(3);
    ZERO_ROW3(4);
    ZERO_ROW3(5);
    ZERO_ROW3(6);
    ZERO_ROW3(7);
    for (int k = 0; k < K; k++) {
        const float *b = brow[k] + boff;
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16),
                     b2 = _mm512_loadu_ps(b + 32);
        FMA_ROW3(0);
        FMA_ROW3(1);
        FMA_ROW3(2);
        FMA_ROW3(3);
        FMA_ROW3(4);
        FMA_ROW3(5);
        FMA_ROW3(6);
        FMA_ROW3(7);
    }
    STORE_ROW3(0);
    STORE_ROW3(1);
    STORE_ROW3(2);
    STORE_ROW3(3);
    STORE_ROW3(4);
    STORE_ROW3(5);
    STORE_ROW3(6);
    STORE_ROW3(7);
}

#define FMA_ROW2(i)                                                                              \
    do {                                                                                         \
        const __m512 t = _mm512_set1_ps(a##i[k]);                                                \
        c##i##0 = _mm512_fmadd_ps(t, b0, c##i##0);                                               \
        c##i##1 = _mm512_fmadd_ps(t, b1, c##i##1);                                               \
    } while (0)
#define LOAD_ROW2(i)                                                                             \
    __m512 c##i##0 = _mm512_loadu_ps(c + (i) * ldc), c##i##1 = _mm512_loadu_ps(c + (i) * ldc + 16)
#define STORE_ROW2(i)                                                                            \
    do {                                                                                         \
        _mm512_storeu_ps(c + (i) * ldc, c##i##0);                                                \
        _mm512_storeu_ps(c + (i) * ldc + 16, c##i##1);                                           \
    } while (0)

/* c[i*ldc + j] += sum_k a[i][k] * b[k*32 + j], i < 12, j < 32. */
X512 static void ukr_12x32_acc(int K, const float *const *a, const float *b, float *c,
                               ptrdiff_t ldc) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    const float *a6 = a[6], *a7 = a[7], *a8 = a[8], *a9 = a[9], *a10 = a[10], *a11 = a[11];
    LOAD_ROW2(0);
    LOAD_ROW2(1);
    LOAD_ROW2(2);
    LOAD_ROW2(3);
    LOAD_ROW2(4);
    LOAD_ROW2(5);
    LOAD_ROW2(6);
    LOAD_ROW2(7);
    LOAD_ROW2(8);
    LOAD_ROW2(9);
    LOAD_ROW2(10);
    LOAD_ROW2(11);
    for (int k = 0; k < K; k++, b += 32) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        FMA_ROW2(0);
        FMA_ROW2(1);
        FMA_ROW2(2);
        FMA_ROW2(3);
        FMA_ROW2(4);
        FMA_ROW2(5);
        FMA_ROW2(6);
        FMA_ROW2(7);
        FMA_ROW2(8);
        FMA_ROW2(9);
        FMA_ROW2(10);
        FMA_ROW2(11);
    }
    STORE_ROW2(0);
    STORE_ROW2(1);
    STORE_ROW2(2);
    STORE_ROW2(3);
    STORE_ROW2(4);
    STORE_ROW2(5);
    STORE_ROW2(6);
    STORE_ROW2(7);
    STORE_ROW2(8);
    STORE_ROW2(9);
    STORE_ROW2(10);
    STORE_ROW2(11);
}

/* ------------------------------------------------------------ geometry */

/* Work is split into bands of output rows; a task pads the input rows of
 * its band (plus the kernel's halo) into a per-thread buffer that stays in
 * L2 while the band is computed. */
typedef struct {
    int wp;       /* padded row length: w_in + 2*pad_w */
    int halo;     /* extra input rows per band: dil_h*(kh-1) */
    int band;     /* output rows per band */
    int nband;    /* bands per image */
    size_t plane; /* floats between the channel planes of a band buffer */
} xgeom;

/* Band buffer size: measured on 2 MiB-L2 cores, 1 MiB beat 256 KiB, 2 MiB and
 * whole images (up to 1.3x on 128->64 @112). */
static const size_t g_band_bytes = 1 << 20;

static xgeom geom_of(const wh_conv2d_shape *s) {
    xgeom g;
    g.wp = s->w_in + 2 * s->pad_w;
    g.halo = s->dil_h * (s->kh - 1);
    const size_t per_row = sizeof(float) * (size_t)s->c_in * g.wp;
    long band = (long)(g_band_bytes / per_row) - g.halo;
    if (band < 1) band = 1;
    if (band > s->h_out) band = s->h_out;
    int nband = (int)((s->h_out + band - 1) / band);
    const int nth = nthreads();
    if ((long)s->n * nband < 2L * nth) { /* small batch: more, smaller bands */
        int want = (2 * nth + s->n - 1) / s->n;
        if (want > s->h_out) want = s->h_out;
        if (want > nband) {
            band = (s->h_out + want - 1) / want;
            nband = (int)((s->h_out + band - 1) / band);
        }
    }
    g.band = (int)band;
    g.nband = nband;
    /* reads reach 48 positions past the band's F plus the largest shift */
    size_t need = (size_t)g.band * g.wp + 64 + (size_t)g.halo * g.wp + (s->kw - 1) * s->dil_w;
    size_t plane = (size_t)(g.band + g.halo) * g.wp;
    if (plane < need) plane = need;
    g.plane = (plane + 15) & ~(size_t)15;
    return g;
}

static size_t band_bytes(const wh_conv2d_shape *s, const xgeom *g) {
    return sizeof(float) * ((size_t)s->c_in * g->plane + 64);
}

/* The padded input rows of output rows [oh0, oh1) of image xn, channel
 * planes one after another, everything else zero. */
static void pad_band(const wh_conv2d_shape *s, const xgeom *g, const float *xn, int oh0, int oh1,
                     float *dst) {
    const int H = s->h_in, W = s->w_in, pw = s->pad_w, wp = g->wp;
    const int nrows = oh1 - oh0 + g->halo;
    for (int c = 0; c < s->c_in; c++) {
        float *d = dst + (size_t)c * g->plane;
        const float *src = xn + (size_t)c * H * W;
        for (int r = 0; r < nrows; r++) {
            float *row = d + (size_t)r * wp;
            const int ih = oh0 + r - s->pad_h;
            if (ih < 0 || ih >= H) {
                memset(row, 0, sizeof(float) * wp);
                continue;
            }
            memset(row, 0, sizeof(float) * pw);
            memcpy(row + pw, src + (size_t)ih * W, sizeof(float) * W);
            memset(row + pw + W, 0, sizeof(float) * pw);
        }
        memset(d + (size_t)nrows * wp, 0, sizeof(float) * (g->plane - (size_t)nrows * wp));
    }
    memset(dst + (size_t)s->c_in * g->plane, 0, sizeof(float) * 64);
}

/* ------------------------------------------------------------- forward */

/* y rows of one 48-wide tile (band-local positions [f0, f1)): act(tile + bias),
 * dropping the garbage columns ow >= w_out. */
static void epilogue(const float *restrict tile, int rows, int f0, int f1, int wp, int w_out,
                     float *restrict yc, size_t plane_out, const float *bias, int co0,
                     wh_activation act) {
    for (int i = 0; i < rows; i++) {
        const float b = bias ? bias[co0 + i] : 0.0f;
        const float *t = tile + (size_t)i * 48;
        float *yp = yc + (size_t)i * plane_out;
        int f = f0;
        while (f < f1) {
            const int oh = f / wp, ow = f % wp;
            int end = oh * wp + w_out;
            if (end > f1) end = f1;
            if (ow < w_out) {
                float *dst = yp + (size_t)oh * w_out + ow;
                const float *src = t + (f - f0);
                const int len = end - f;
                if (act == WH_ACT_RELU)
                    for (int j = 0; j < len; j++) dst[j] = wh_relu_f32(src[j] + b);
                else if (act == WH_ACT_SIGMOID)
                    for (int j = 0; j < len; j++) dst[j] = wh_sigmoid_f32(src[j] + b);
                else
                    for (int j = 0; j < len; j++) dst[j] = src[j] + b;
            }
            f = (oh + 1) * wp;
        }
    }
}

/* y = act(conv(x, w) + bias) for a stride-1 shape; w is (c_out, K) rows. */
static wh_status fwd_core(const wh_conv2d_shape *s, const float *x, const float *w,
                          const float *bias, wh_activation act, float *y) {
    const int Co = s->c_out, KK = s->kh * s->kw, K = s->c_in * KK;
    const xgeom g = geom_of(s);
    const size_t HoWo = (size_t)s->h_out * s->w_out, HW = (size_t)s->h_in * s->w_in;
    const int ntask = s->n * g.nband;
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int n = t / g.nband, oh0 = (t % g.nband) * g.band;
        const int oh1 = oh0 + g.band < s->h_out ? oh0 + g.band : s->h_out;
        const int F = (oh1 - oh0) * g.wp;
        float *xp = wh_scratch(2, band_bytes(s, &g));
        const float **brow = wh_scratch(3, sizeof(float *) * K);
        float *tile = wh_scratch(4, sizeof(float) * 8 * 48);
        if (!xp || !brow || !tile) {
#pragma omp atomic write
            st = WH_ERR_MEMORY;
            continue;
        }
        pad_band(s, &g, x + (size_t)n * s->c_in * HW, oh0, oh1, xp);
        for (int c = 0; c < s->c_in; c++)
            for (int kh = 0; kh < s->kh; kh++)
                for (int kw = 0; kw < s->kw; kw++)
                    brow[(c * s->kh + kh) * s->kw + kw] =
                        xp + (size_t)c * g.plane + (size_t)kh * s->dil_h * g.wp + kw * s->dil_w;
        float *yb = y + (size_t)n * Co * HoWo + (size_t)oh0 * s->w_out;
        for (int f0 = 0; f0 < F; f0 += 48) {
            const int f1 = f0 + 48 < F ? f0 + 48 : F;
            for (int co0 = 0; co0 < Co; co0 += 8) {
                const int rows = Co - co0 < 8 ? Co - co0 : 8;
                const float *a[8];
                for (int i = 0; i < 8; i++) a[i] = w + (size_t)(co0 + (i < rows ? i : 0)) * K;
                ukr_8x48(K, a, (const float *const *)brow, f0, tile, 48);
                epilogue(tile, rows, f0, f1, g.wp, s->w_out, yb + (size_t)co0 * HoWo, HoWo, bias,
                         co0, act);
            }
        }
    }
    return st;
}

wh_status wh__conv2d_fwd_x512_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                  const float *bias, wh_activation act, float *y) {
    return fwd_core(s, x, w, bias, act, y);
}

/* dx = forward conv of dy (padded by dil*(k-1) - pad) with w flipped and
 * transposed: w'[ci][co][kh'][kw'] = w[co][ci][kh-1-kh'][kw-1-kw']. */
wh_status wh__conv2d_bwdin_x512_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                    const float *bias, wh_activation act, float *dx) {
    const int Ci = s->c_in, Co = s->c_out, KH = s->kh, KW = s->kw, KK = KH * KW;
    wh_conv2d_shape t = {
        .n = s->n, .c_in = Co, .h_in = s->h_out, .w_in = s->w_out, .c_out = Ci, .kh = KH,
        .kw = KW, .stride_h = 1, .stride_w = 1, .pad_h = s->dil_h * (KH - 1) - s->pad_h,
        .pad_w = s->dil_w * (KW - 1) - s->pad_w, .dil_h = s->dil_h, .dil_w = s->dil_w,
        .h_out = s->h_in, .w_out = s->w_in};
    float *wt = wh_scratch(5, sizeof(float) * (size_t)Ci * Co * KK);
    if (!wt) return WH_ERR_MEMORY;
#pragma omp parallel for schedule(static) if ((size_t)Ci * Co * KK > 65536)
    for (int ci = 0; ci < Ci; ci++)
        for (int co = 0; co < Co; co++)
            for (int k = 0; k < KK; k++)
                wt[((size_t)ci * Co + co) * KK + (KK - 1 - k)] = w[((size_t)co * Ci + ci) * KK + k];
    return fwd_core(&t, dy, wt, bias, act, dx);
}

/* ----------------------------------------------------- backward weight */

enum { KC = 256 }; /* F positions per packed dY chunk */

wh_status wh__conv2d_bwdw_x512_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                   float *dw, float *dbias) {
    const int Co = s->c_out, KK = s->kh * s->kw, K = s->c_in * KK;
    const xgeom g = geom_of(s);
    const size_t HoWo = (size_t)s->h_out * s->w_out, HW = (size_t)s->h_in * s->w_in;
    const int Cop = (Co + 31) & ~31, Kp = (K + 11) / 12 * 12;
    const size_t part = (size_t)Kp * Cop + Cop; /* dW^T rows, then the bias sums */
    const int ntask = s->n * g.nband;
    const int nth = ntask > 1 ? nthreads() : 1;
    float *parts_buf = wh_scratch(1, sizeof(float) * part * nth);
    int *off = wh_scratch(6, sizeof(int) * K);
    if (!parts_buf || !off) return WH_ERR_MEMORY;
    memset(parts_buf, 0, sizeof(float) * part * nth);
    for (int k = 0; k < K; k++) {
        const int kh = (k % KK) / s->kw, kw = k % s->kw;
        off[k] = kh * s->dil_h * g.wp + kw * s->dil_w;
    }
    wh_status st = WH_OK;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        float *mine = parts_buf + part * (nth > 1 ? omp_get_thread_num() : 0);
        /* static: which tasks add into which thread's partial sums must not
         * depend on timing, or dW changes in the last bits from run to run
         * (fit's bitwise resume, tests/trainer_spec.lua). */
#pragma omp for schedule(static)
        for (int t = 0; t < ntask; t++) {
            const int n = t / g.nband, oh0 = (t % g.nband) * g.band;
            const int oh1 = oh0 + g.band < s->h_out ? oh0 + g.band : s->h_out;
            const int F = (oh1 - oh0) * g.wp;
            float *xp = wh_scratch(2, band_bytes(s, &g));
            float *bp = wh_scratch(3, sizeof(float) * (size_t)KC * Cop);
            if (!xp || !bp) {
#pragma omp atomic write
                st = WH_ERR_MEMORY;
                continue;
            }
            pad_band(s, &g, x + (size_t)n * s->c_in * HW, oh0, oh1, xp);
            const float *dyb = dy + (size_t)n * Co * HoWo + (size_t)oh0 * s->w_out;
            for (int f0 = 0; f0 < F; f0 += KC) {
                const int len = f0 + KC < F ? KC : F - f0;
                /* pack dY^T for this chunk: bp[tile][kk][32], zero at garbage columns */
                memset(bp, 0, sizeof(float) * (size_t)KC * Cop);
                for (int f = f0; f < f0 + len;) {
                    const int oh = f / g.wp, ow = f % g.wp;
                    int end = oh * g.wp + s->w_out;
                    if (end > f0 + len) end = f0 + len;
                    if (ow < s->w_out) {
                        for (int co = 0; co < Co; co++) {
                            const float *src = dyb + (size_t)co * HoWo + (size_t)oh * s->w_out;
                            float *d = bp + (size_t)(co >> 5) * KC * 32 + (co & 31);
                            float sum = 0;
                            for (int ff = f; ff < end; ff++) {
                                const float v = src[ff - oh * g.wp];
                                d[(size_t)(ff - f0) * 32] = v;
                                sum += v;
                            }
                            mine[(size_t)Kp * Cop + co] += sum;
                        }
                    }
                    f = (oh + 1) * g.wp;
                }
                for (int ct = 0; ct < Cop / 32; ct++) {
                    const float *b = bp + (size_t)ct * KC * 32;
                    for (int r0 = 0; r0 < Kp; r0 += 12) {
                        const float *a[12];
                        for (int i = 0; i < 12; i++) {
                            const int r = r0 + i < K ? r0 + i : K - 1;
                            a[i] = xp + (size_t)(r / KK) * g.plane + off[r] + f0;
                        }
                        ukr_12x32_acc(len, a, b, mine + (size_t)r0 * Cop + ct * 32, Cop);
                    }
                }
            }
        }
    }
    if (st != WH_OK) return st;
#pragma omp parallel for schedule(static) if ((size_t)K * Co > 16384)
    for (int co = 0; co < Co; co++) {
        for (int r = 0; r < K; r++) {
            float v = 0;
            for (int t = 0; t < nth; t++) v += parts_buf[part * t + (size_t)r * Cop + co];
            dw[(size_t)co * K + r] = v;
        }
        if (dbias) {
            float v = 0;
            for (int t = 0; t < nth; t++) v += parts_buf[part * t + (size_t)Kp * Cop + co];
            dbias[co] = v;
        }
    }
    return WH_OK;
}


#else /* no AVX-512 build support */

wh_status wh__conv2d_fwd_x512_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                  const float *bias, wh_activation act, float *y) {
    return WH_ERR_DEVICE;
}
wh_status wh__conv2d_bwdin_x512_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                    const float *bias, wh_activation act, float *dx) {
    return WH_ERR_DEVICE;
}
wh_status wh__conv2d_bwdw_x512_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                   float *dw, float *dbias) {
    return WH_ERR_DEVICE;
}

#endif
