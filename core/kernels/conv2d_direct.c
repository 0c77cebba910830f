/* Register-blocked direct convolution for f32, for layers that are poor
 * GEMMs (c_in = 1: K = 9; c_out = 1: M = 1).
 *
 * Every op is a "correlation" of one zero-padded input plane with a set of
 * taps: out[r][c] (+)= sum_t wt[t] * in[r*row_step + off[t] + c], where off[t]
 * encodes the tap's (row, column) shift in the padded plane.  Forward and
 * backward_weight pad x; backward_input pads dy and uses flipped offsets
 * (stride 1 only).  Padding once per plane removes every bounds check from
 * the inner loops, which run 8-float vectors over the output width: 4
 * accumulators per row chunk for the forward ops, 9 (one per tap) for the
 * weight gradient. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/conv2d_internal.h"
#include "scratch.h"

#if defined(__FMA__)
#include <immintrin.h>
#endif

typedef float v8 __attribute__((vector_size(32)));

static inline v8 vld(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vst(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 vbc(float x) { return (v8){x, x, x, x, x, x, x, x}; }
/* a*b + c; explicit because -std=c11 turns off FP contraction. */
static inline v8 vfma(v8 a, v8 b, v8 c) {
#if defined(__FMA__)
    return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}
static inline double vsum(v8 v) {
    return ((double)v[0] + v[4]) + ((double)v[1] + v[5]) + ((double)v[2] + v[6]) +
           ((double)v[3] + v[7]);
}

static int nthreads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* Size of the `minor` blocks so that major x blocks gives >= 4 tasks per thread. */
static int block_for(int major, int minor) {
    const int want = 4 * nthreads();
    if (major >= want) return minor;
    int nb = (want + major - 1) / major;
    if (nb > minor) nb = minor;
    return (minor + nb - 1) / nb;
}

static inline int round8(int v) { return (v + 7) & ~7; }

/* --------------------------------------------------------- padded planes */

typedef struct {
    int rows, ld, top, left; /* padded plane: rows x ld, content at (top, left) */
} geom;

static size_t geom_bytes(const geom *g) { return sizeof(float) * ((size_t)g->rows * g->ld + 16); }

/* dst = src (h x w) placed at (top, left) in a zeroed rows x ld plane. */
static void pad_plane(const float *restrict src, int h, int w, float *restrict dst, const geom *g) {
    for (int r = 0; r < g->rows; r++) {
        float *d = dst + (size_t)r * g->ld;
        const int sr = r - g->top;
        if (sr < 0 || sr >= h) {
            memset(d, 0, sizeof(float) * g->ld);
            continue;
        }
        memset(d, 0, sizeof(float) * g->left);
        memcpy(d + g->left, src + (size_t)sr * w, sizeof(float) * w);
        memset(d + g->left + w, 0, sizeof(float) * (g->ld - g->left - w));
    }
    memset(dst + (size_t)g->rows * g->ld, 0, sizeof(float) * 16);
}

/* x padded for forward / backward_weight: tap (kh, kw) of output (r, c) reads
 * row r*stride_h + kh*dil_h, column c + kw*dil_w. */
static geom fwd_geom(const wh_conv2d_shape *s, int *off) {
    geom g;
    g.top = s->pad_h;
    g.left = s->pad_w;
    g.rows = s->h_in + 2 * s->pad_h;
    const int need_rows = (s->h_out - 1) * s->stride_h + (s->kh - 1) * s->dil_h + 1;
    if (g.rows < need_rows) g.rows = need_rows;
    g.ld = s->w_in + 2 * s->pad_w;
    const int need_ld = round8(s->w_out) + (s->kw - 1) * s->dil_w;
    if (g.ld < need_ld) g.ld = need_ld;
    for (int kh = 0; kh < s->kh; kh++)
        for (int kw = 0; kw < s->kw; kw++)
            off[kh * s->kw + kw] = kh * s->dil_h * g.ld + kw * s->dil_w;
    return g;
}

/* dy padded for backward_input (stride 1): dx(ih, iw) gets tap (kh, kw) from
 * dy(ih + pad_h - kh*dil_h, iw + pad_w - kw*dil_w). */
static geom bwdin_geom(const wh_conv2d_shape *s, int *off) {
    geom g;
    g.top = s->dil_h * (s->kh - 1);
    g.left = s->dil_w * (s->kw - 1);
    g.rows = s->h_in + s->pad_h + g.top;
    if (g.rows < g.top + s->h_out) g.rows = g.top + s->h_out;
    g.ld = round8(s->w_in) + s->pad_w + g.left;
    if (g.ld < g.left + s->w_out) g.ld = g.left + s->w_out;
    for (int kh = 0; kh < s->kh; kh++)
        for (int kw = 0; kw < s->kw; kw++)
            off[kh * s->kw + kw] = (s->pad_h + s->dil_h * (s->kh - 1 - kh)) * g.ld +
                                   s->pad_w + s->dil_w * (s->kw - 1 - kw);
    return g;
}

/* ---------------------------------------------------------------- kernels */

static void act_row(float *restrict p, int n, wh_activation act) {
    if (act == WH_ACT_RELU)
        for (int i = 0; i < n; i++) p[i] = wh_relu_f32(p[i]);
    else if (act == WH_ACT_SIGMOID)
        for (int i = 0; i < n; i++) p[i] = wh_sigmoid_f32(p[i]);
}

/* out[r*ldo + c] = (accumulate ? out : bias) + sum_t wt[t]*in[r*step + off[t] + c],
 * then act (pass WH_ACT_NONE until the last accumulation). */
static void corr(float *restrict out, int R, int C, int ldo, const float *restrict in, size_t step,
                 int ntap, const int *restrict off, const float *restrict wt, int accumulate,
                 float bias, wh_activation act) {
    const v8 vb = vbc(bias);
    for (int r = 0; r < R; r++) {
        float *o = out + (size_t)r * ldo;
        const float *ip = in + (size_t)r * step;
        int c = 0;
        for (; c + 32 <= C; c += 32) {
            v8 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
            if (accumulate) {
                a0 = vld(o + c);
                a1 = vld(o + c + 8);
                a2 = vld(o + c + 16);
                a3 = vld(o + c + 24);
            }
            for (int t = 0; t < ntap; t++) {
                const v8 wv = vbc(wt[t]);
                const float *q = ip + off[t] + c;
                a0 = vfma(wv, vld(q), a0);
                a1 = vfma(wv, vld(q + 8), a1);
                a2 = vfma(wv, vld(q + 16), a2);
                a3 = vfma(wv, vld(q + 24), a3);
            }
            vst(o + c, a0);
            vst(o + c + 8, a1);
            vst(o + c + 16, a2);
            vst(o + c + 24, a3);
        }
        for (; c + 8 <= C; c += 8) {
            v8 a = accumulate ? vld(o + c) : vb;
            for (int t = 0; t < ntap; t++) a = vfma(vbc(wt[t]), vld(ip + off[t] + c), a);
            vst(o + c, a);
        }
        if (c < C) {
            float tmp[8] = {0};
            v8 a = vb;
            if (accumulate) {
                memcpy(tmp, o + c, sizeof(float) * (C - c));
                a = vld(tmp);
            }
            for (int t = 0; t < ntap; t++) a = vfma(vbc(wt[t]), vld(ip + off[t] + c), a);
            vst(tmp, a);
            memcpy(o + c, tmp, sizeof(float) * (C - c));
        }
        if (act != WH_ACT_NONE) act_row(o, C, act);
    }
}

/* acc[t] += sum_{r,c} g[r*ldg + c] * in[r*step + off[t] + c] for t < ntap <= 9;
 * *gsum += sum g when gsum is not NULL.  One accumulator per tap; float
 * partial sums are flushed to double every ~256 vectors. */
static void corr_grad9(const float *restrict g, int R, int C, int ldg, const float *restrict in,
                       size_t step, const int *restrict off, int ntap, double *restrict acc,
                       double *gsum) {
    int o[9];
    for (int t = 0; t < 9; t++) o[t] = off[t < ntap ? t : 0];
    v8 a[9], sv = vbc(0);
    for (int t = 0; t < 9; t++) a[t] = vbc(0);
    const int flush = C >= 2048 ? 1 : 2048 / C;
    for (int r = 0; r < R; r++) {
        const float *gp = g + (size_t)r * ldg;
        const float *ip = in + (size_t)r * step;
        int c = 0;
        for (; c + 8 <= C; c += 8) {
            const v8 gv = vld(gp + c);
            sv += gv;
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) a[t] = vfma(gv, vld(ip + o[t] + c), a[t]);
        }
        if (c < C) {
            float tmp[8] = {0};
            memcpy(tmp, gp + c, sizeof(float) * (C - c));
            const v8 gv = vld(tmp);
            sv += gv;
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) a[t] = vfma(gv, vld(ip + o[t] + c), a[t]);
        }
        if ((r + 1) % flush == 0 || r == R - 1) {
            for (int t = 0; t < ntap; t++) acc[t] += vsum(a[t]);
            for (int t = 0; t < 9; t++) a[t] = vbc(0);
            if (gsum) *gsum += vsum(sv);
            sv = vbc(0);
        }
    }
}

/* ------------------------------------------------------------------- ops */

#define SET_ERR(st, v)                                                                           \
    do {                                                                                         \
        _Pragma("omp atomic write") st = (v);                                                    \
    } while (0)

wh_status wh__conv2d_fwd_fast_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                  const float *bias, wh_activation act, float *y) {
    const int Ci = s->c_in, Co = s->c_out, KK = s->kh * s->kw;
    const size_t HW = (size_t)s->h_in * s->w_in, HoWo = (size_t)s->h_out * s->w_out;
    int *off = wh_scratch(4, sizeof(int) * KK);
    if (!off) return WH_ERR_MEMORY;
    const geom g = fwd_geom(s, off);
    const size_t step = (size_t)s->stride_h * g.ld;
    const int cob = block_for(s->n, Co), ncb = (Co + cob - 1) / cob, ntask = s->n * ncb;
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int n = t / ncb, co0 = (t % ncb) * cob, co1 = co0 + cob < Co ? co0 + cob : Co;
        float *xp = wh_scratch(2, geom_bytes(&g));
        if (!xp) {
            SET_ERR(st, WH_ERR_MEMORY);
            continue;
        }
        for (int ci = 0; ci < Ci; ci++) {
            pad_plane(x + ((size_t)n * Ci + ci) * HW, s->h_in, s->w_in, xp, &g);
            for (int co = co0; co < co1; co++)
                corr(y + ((size_t)n * Co + co) * HoWo, s->h_out, s->w_out, s->w_out, xp, step, KK,
                     off, w + ((size_t)co * Ci + ci) * KK, ci > 0, bias ? bias[co] : 0.0f,
                     ci == Ci - 1 ? act : WH_ACT_NONE);
        }
    }
    return st;
}

wh_status wh__conv2d_bwdin_fast_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                    const float *bias, wh_activation act, float *dx) {
    const int Ci = s->c_in, Co = s->c_out, KK = s->kh * s->kw;
    const size_t HW = (size_t)s->h_in * s->w_in, HoWo = (size_t)s->h_out * s->w_out;
    int *off = wh_scratch(4, sizeof(int) * KK);
    if (!off) return WH_ERR_MEMORY;
    const geom g = bwdin_geom(s, off);
    const int cib = block_for(s->n, Ci), ncb = (Ci + cib - 1) / cib, ntask = s->n * ncb;
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int n = t / ncb, ci0 = (t % ncb) * cib, ci1 = ci0 + cib < Ci ? ci0 + cib : Ci;
        float *gp = wh_scratch(2, geom_bytes(&g));
        if (!gp) {
            SET_ERR(st, WH_ERR_MEMORY);
            continue;
        }
        for (int co = 0; co < Co; co++) {
            pad_plane(dy + ((size_t)n * Co + co) * HoWo, s->h_out, s->w_out, gp, &g);
            for (int ci = ci0; ci < ci1; ci++)
                corr(dx + ((size_t)n * Ci + ci) * HW, s->h_in, s->w_in, s->w_in, gp, g.ld, KK, off,
                     w + ((size_t)co * Ci + ci) * KK, co > 0, bias ? bias[ci] : 0.0f,
                     co == Co - 1 ? act : WH_ACT_NONE);
        }
    }
    return st;
}

wh_status wh__conv2d_bwdw_fast_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                   float *dw, float *dbias) {
    const int Ci = s->c_in, Co = s->c_out, KK = s->kh * s->kw;
    const size_t HW = (size_t)s->h_in * s->w_in, HoWo = (size_t)s->h_out * s->w_out;
    int *off = wh_scratch(4, sizeof(int) * KK);
    if (!off) return WH_ERR_MEMORY;
    const geom g = fwd_geom(s, off);
    const size_t step = (size_t)s->stride_h * g.ld;
    const int cob = block_for(Ci, Co), ncb = (Co + cob - 1) / cob, ntask = Ci * ncb;
    wh_status st = WH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
    for (int t = 0; t < ntask; t++) {
        const int ci = t / ncb, co0 = (t % ncb) * cob, co1 = co0 + cob < Co ? co0 + cob : Co;
        const size_t per = (size_t)KK + 1; /* taps + bias sum, per output channel */
        float *xp = wh_scratch(2, geom_bytes(&g));
        double *acc = wh_scratch(3, sizeof(double) * per * (co1 - co0));
        if (!xp || !acc) {
            SET_ERR(st, WH_ERR_MEMORY);
            continue;
        }
        memset(acc, 0, sizeof(double) * per * (co1 - co0));
        const int want_bias = dbias && ci == 0;
        for (int n = 0; n < s->n; n++) {
            pad_plane(x + ((size_t)n * Ci + ci) * HW, s->h_in, s->w_in, xp, &g);
            for (int co = co0; co < co1; co++) {
                double *a = acc + per * (co - co0);
                const float *gp = dy + ((size_t)n * Co + co) * HoWo;
                for (int t0 = 0; t0 < KK; t0 += 9)
                    corr_grad9(gp, s->h_out, s->w_out, s->w_out, xp, step, off + t0,
                               KK - t0 < 9 ? KK - t0 : 9, a + t0,
                               want_bias && t0 == 0 ? a + KK : NULL);
            }
        }
        for (int co = co0; co < co1; co++) {
            const double *a = acc + per * (co - co0);
            float *d = dw + ((size_t)co * Ci + ci) * KK;
            for (int k = 0; k < KK; k++) d[k] = (float)a[k];
            if (want_bias) dbias[co] = (float)a[KK];
        }
    }
    return st;
}
