/* Checks every conv2d / conv_transpose2d kernel (f32 and f64, direct and GEMM
 * paths) against naive 6-loop references computed in double.
 * Prints one line per failing case and ends with "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/conv2d.h"
#include "status.h"

#include "check.h"

/* ------------------------------------------------------------- utilities */

static unsigned long long rng_state = 88172645463325252ULL;
static double urand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}
static double *rnd(size_t n, int round_to_float) {
    double *p = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = round_to_float ? (double)(float)urand() : urand();
    return p;
}
static float *to_f32(const double *p, size_t n) {
    float *q = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) q[i] = (float)p[i];
    return q;
}
static float *garbage_f32(size_t n) {
    float *q = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) q[i] = NAN;
    return q;
}
static double *garbage_f64(size_t n) {
    double *q = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) q[i] = NAN;
    return q;
}

/* max |got - ref| / scale, scale = the largest |ref| or absref (the same
 * reference computed on |inputs|: the sum of |terms| bounds the rounding
 * error of a sum, so outputs that cancel to ~0 do not fail spuriously).
 * 0 when equal, inf/nan when broken. */
static double relerr_d(const double *got, const double *ref, const double *absref, size_t n) {
    double scale = 1e-30, err = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fmax(fabs(ref[i]), fabs(absref[i])));
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]);
        if (!(e <= err)) err = e; /* catches NaN */
    }
    return err / scale;
}
static double relerr_f(const float *got, const double *ref, const double *absref, size_t n) {
    double *g = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) g[i] = got[i];
    double e = relerr_d(g, ref, absref, n);
    free(g);
    return e;
}
static double *absdup(const double *p, size_t n) {
    double *q = calloc(n ? n : 1, sizeof(double));
    for (size_t i = 0; i < n; i++) q[i] = fabs(p[i]);
    return q;
}

static double act_ref(wh_activation a, double v) {
    if (a == WH_ACT_RELU) return v > 0 ? v : 0;
    if (a == WH_ACT_SIGMOID) return 1.0 / (1.0 + exp(-v));
    return v;
}

/* ----------------------------------------------------- naive references */

#define X4(p, a, b, c, d, B, C, D) (p)[(((size_t)(a) * (B) + (b)) * (C) + (c)) * (D) + (d)]

static void ref_fwd(const wh_conv2d_shape *s, const double *x, const double *w, const double *b,
                    wh_activation act, double *y) {
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->c_out; co++)
            for (int oh = 0; oh < s->h_out; oh++)
                for (int ow = 0; ow < s->w_out; ow++) {
                    double acc = b ? b[co] : 0;
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int kh = 0; kh < s->kh; kh++)
                            for (int kw = 0; kw < s->kw; kw++) {
                                int ih = oh * s->stride_h - s->pad_h + kh * s->dil_h;
                                int iw = ow * s->stride_w - s->pad_w + kw * s->dil_w;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                acc += X4(x, n, ci, ih, iw, s->c_in, s->h_in, s->w_in) *
                                       X4(w, co, ci, kh, kw, s->c_in, s->kh, s->kw);
                            }
                    X4(y, n, co, oh, ow, s->c_out, s->h_out, s->w_out) = act_ref(act, acc);
                }
}

static void ref_bwd(const wh_conv2d_shape *s, const double *x, const double *w, const double *dy,
                    double *dx, double *dw, double *db) {
    memset(dx, 0, sizeof(double) * s->n * s->c_in * s->h_in * s->w_in);
    memset(dw, 0, sizeof(double) * s->c_out * s->c_in * s->kh * s->kw);
    memset(db, 0, sizeof(double) * s->c_out);
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->c_out; co++)
            for (int oh = 0; oh < s->h_out; oh++)
                for (int ow = 0; ow < s->w_out; ow++) {
                    double g = X4(dy, n, co, oh, ow, s->c_out, s->h_out, s->w_out);
                    db[co] += g;
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int kh = 0; kh < s->kh; kh++)
                            for (int kw = 0; kw < s->kw; kw++) {
                                int ih = oh * s->stride_h - s->pad_h + kh * s->dil_h;
                                int iw = ow * s->stride_w - s->pad_w + kw * s->dil_w;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                X4(dx, n, ci, ih, iw, s->c_in, s->h_in, s->w_in) +=
                                    g * X4(w, co, ci, kh, kw, s->c_in, s->kh, s->kw);
                                X4(dw, co, ci, kh, kw, s->c_in, s->kh, s->kw) +=
                                    g * X4(x, n, ci, ih, iw, s->c_in, s->h_in, s->w_in);
                            }
                }
}

/* Transposed conv written from its own definition (scatter), not via ref_fwd. */
static void ref_tfwd(const wh_conv_transpose2d_shape *t, const double *x, const double *w,
                     const double *b, wh_activation act, double *y) {
    size_t ny = (size_t)t->n * t->c_out * t->h_out * t->w_out;
    for (int n = 0; n < t->n; n++)
        for (int co = 0; co < t->c_out; co++)
            for (int i = 0; i < t->h_out * t->w_out; i++)
                y[((size_t)n * t->c_out + co) * t->h_out * t->w_out + i] = b ? b[co] : 0;
    for (int n = 0; n < t->n; n++)
        for (int ci = 0; ci < t->c_in; ci++)
            for (int ih = 0; ih < t->h_in; ih++)
                for (int iw = 0; iw < t->w_in; iw++)
                    for (int co = 0; co < t->c_out; co++)
                        for (int kh = 0; kh < t->kh; kh++)
                            for (int kw = 0; kw < t->kw; kw++) {
                                int oh = ih * t->stride_h - t->pad_h + kh * t->dil_h;
                                int ow = iw * t->stride_w - t->pad_w + kw * t->dil_w;
                                if (oh < 0 || oh >= t->h_out || ow < 0 || ow >= t->w_out) continue;
                                X4(y, n, co, oh, ow, t->c_out, t->h_out, t->w_out) +=
                                    X4(x, n, ci, ih, iw, t->c_in, t->h_in, t->w_in) *
                                    X4(w, ci, co, kh, kw, t->c_out, t->kh, t->kw);
                            }
    for (size_t i = 0; i < ny; i++) y[i] = act_ref(act, y[i]);
}

static void ref_tbwd(const wh_conv_transpose2d_shape *t, const double *x, const double *w,
                     const double *dy, double *dx, double *dw, double *db) {
    memset(dx, 0, sizeof(double) * t->n * t->c_in * t->h_in * t->w_in);
    memset(dw, 0, sizeof(double) * t->c_in * t->c_out * t->kh * t->kw);
    memset(db, 0, sizeof(double) * t->c_out);
    for (int n = 0; n < t->n; n++)
        for (int co = 0; co < t->c_out; co++)
            for (int i = 0; i < t->h_out * t->w_out; i++)
                db[co] += dy[((size_t)n * t->c_out + co) * t->h_out * t->w_out + i];
    for (int n = 0; n < t->n; n++)
        for (int ci = 0; ci < t->c_in; ci++)
            for (int ih = 0; ih < t->h_in; ih++)
                for (int iw = 0; iw < t->w_in; iw++)
                    for (int co = 0; co < t->c_out; co++)
                        for (int kh = 0; kh < t->kh; kh++)
                            for (int kw = 0; kw < t->kw; kw++) {
                                int oh = ih * t->stride_h - t->pad_h + kh * t->dil_h;
                                int ow = iw * t->stride_w - t->pad_w + kw * t->dil_w;
                                if (oh < 0 || oh >= t->h_out || ow < 0 || ow >= t->w_out) continue;
                                double g = X4(dy, n, co, oh, ow, t->c_out, t->h_out, t->w_out);
                                X4(dx, n, ci, ih, iw, t->c_in, t->h_in, t->w_in) +=
                                    g * X4(w, ci, co, kh, kw, t->c_out, t->kh, t->kw);
                                X4(dw, ci, co, kh, kw, t->c_out, t->kh, t->kw) +=
                                    g * X4(x, n, ci, ih, iw, t->c_in, t->h_in, t->w_in);
                            }
}

/* ------------------------------------------------------------ conv cases */

static const double TOL32 = 1e-4, TOL64 = 1e-10;
static const char *algo_name[] = {"auto", "direct", "gemm", "implicit"};
static const char *act_name[] = {"none", "relu", "sigmoid"};

static void describe(char *buf, size_t len, const wh_conv2d_shape *s) {
    snprintf(buf, len,
             "n=%d c_in=%d %dx%d c_out=%d k=%dx%d stride=%dx%d pad=%dx%d dil=%dx%d -> %dx%d", s->n,
             s->c_in, s->h_in, s->w_in, s->c_out, s->kh, s->kw, s->stride_h, s->stride_w, s->pad_h,
             s->pad_w, s->dil_h, s->dil_w, s->h_out, s->w_out);
}

/* One shape, one algorithm, both dtypes; acts/bias cycle with `variant`. */
static void conv_case(wh_conv2d_shape s, int algo, int variant) {
    char d[256];
    if (wh_conv2d_shape_init(&s) != WH_OK) {
        CHECK(0, "shape_init rejected a valid shape: %s", wh_error_message());
        return;
    }
    describe(d, sizeof d, &s);
    wh_conv2d_set_algo((wh_conv_algo)algo);
    const size_t nx = (size_t)s.n * s.c_in * s.h_in * s.w_in;
    const size_t nw = (size_t)s.c_out * s.c_in * s.kh * s.kw;
    const size_t ny = (size_t)s.n * s.c_out * s.h_out * s.w_out;
    double *x = rnd(nx, 1), *w = rnd(nw, 1), *b = rnd(s.c_out, 1), *dy = rnd(ny, 1);
    double *y = malloc(sizeof(double) * ny), *dx = malloc(sizeof(double) * nx);
    double *dw = malloc(sizeof(double) * nw), *db = malloc(sizeof(double) * s.c_out);
    float *xf = to_f32(x, nx), *wf = to_f32(w, nw), *bf = to_f32(b, s.c_out), *dyf = to_f32(dy, ny);
    ref_bwd(&s, x, w, dy, dx, dw, db);
    double *xa = absdup(x, nx), *wa = absdup(w, nw), *ba = absdup(b, s.c_out), *dya = absdup(dy, ny);
    double *ya = malloc(sizeof(double) * ny), *dxa = malloc(sizeof(double) * nx);
    double *dwa = malloc(sizeof(double) * nw), *dba = malloc(sizeof(double) * s.c_out);
    ref_bwd(&s, xa, wa, dya, dxa, dwa, dba);
    ref_fwd(&s, xa, wa, ba, WH_ACT_NONE, ya);

    /* forward: every activation, bias alternating */
    for (int a = 0; a < 3; a++) {
        const int with_bias = (a + variant) % 2 == 0;
        ref_fwd(&s, x, w, with_bias ? b : NULL, (wh_activation)a, y);
        float *yf = garbage_f32(ny);
        double *yd = garbage_f64(ny);
        wh_status st = wh_conv2d_forward_f32(&s, xf, wf, with_bias ? bf : NULL, a, yf);
        double e = st == WH_OK ? relerr_f(yf, y, ya, ny) : INFINITY;
        CHECK(e <= TOL32, "conv2d forward_f32 [%s, act=%s, bias=%d] %s: err %.3g (%s)",
              algo_name[algo], act_name[a], with_bias, d, e, wh_error_message());
        st = wh_conv2d_forward_f64(&s, x, w, with_bias ? b : NULL, a, yd);
        e = st == WH_OK ? relerr_d(yd, y, ya, ny) : INFINITY;
        CHECK(e <= TOL64, "conv2d forward_f64 [%s, act=%s, bias=%d] %s: err %.3g (%s)",
              algo_name[algo], act_name[a], with_bias, d, e, wh_error_message());
        free(yf);
        free(yd);
    }
    /* backward_input */
    {
        float *gf = garbage_f32(nx);
        double *gd = garbage_f64(nx);
        wh_status st = wh_conv2d_backward_input_f32(&s, dyf, wf, gf);
        double e = st == WH_OK ? relerr_f(gf, dx, dxa, nx) : INFINITY;
        CHECK(e <= TOL32, "conv2d backward_input_f32 [%s] %s: err %.3g", algo_name[algo], d, e);
        st = wh_conv2d_backward_input_f64(&s, dy, w, gd);
        e = st == WH_OK ? relerr_d(gd, dx, dxa, nx) : INFINITY;
        CHECK(e <= TOL64, "conv2d backward_input_f64 [%s] %s: err %.3g", algo_name[algo], d, e);
        free(gf);
        free(gd);
    }
    /* backward_weight, with and without dbias */
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        float *gwf = garbage_f32(nw), *gbf = garbage_f32(s.c_out);
        double *gwd = garbage_f64(nw), *gbd = garbage_f64(s.c_out);
        wh_status st = wh_conv2d_backward_weight_f32(&s, xf, dyf, gwf, with_bias ? gbf : NULL);
        double e = st == WH_OK ? relerr_f(gwf, dw, dwa, nw) : INFINITY;
        if (with_bias && st == WH_OK) e = fmax(e, relerr_f(gbf, db, dba, s.c_out));
        CHECK(e <= TOL32, "conv2d backward_weight_f32 [%s, dbias=%d] %s: err %.3g",
              algo_name[algo], with_bias, d, e);
        st = wh_conv2d_backward_weight_f64(&s, x, dy, gwd, with_bias ? gbd : NULL);
        e = st == WH_OK ? relerr_d(gwd, dw, dwa, nw) : INFINITY;
        if (with_bias && st == WH_OK) e = fmax(e, relerr_d(gbd, db, dba, s.c_out));
        CHECK(e <= TOL64, "conv2d backward_weight_f64 [%s, dbias=%d] %s: err %.3g",
              algo_name[algo], with_bias, d, e);
        free(gwf);
        free(gbf);
        free(gwd);
        free(gbd);
    }
    wh_conv2d_set_algo(WH_CONV_ALGO_AUTO);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
    free(xa), free(wa), free(ba), free(dya), free(ya), free(dxa), free(dwa), free(dba);
    free(xf), free(wf), free(bf), free(dyf);
}

/* ------------------------------------------------------- transposed cases */

static void convt_case(wh_conv_transpose2d_shape t, int algo, int variant) {
    char d[320];
    if (wh_conv_transpose2d_shape_init(&t) != WH_OK) {
        CHECK(0, "conv_transpose2d shape_init rejected a valid shape: %s", wh_error_message());
        return;
    }
    snprintf(d, sizeof d,
             "n=%d c_in=%d %dx%d c_out=%d k=%dx%d stride=%dx%d pad=%dx%d dil=%dx%d outpad=%dx%d -> "
             "%dx%d",
             t.n, t.c_in, t.h_in, t.w_in, t.c_out, t.kh, t.kw, t.stride_h, t.stride_w, t.pad_h,
             t.pad_w, t.dil_h, t.dil_w, t.out_pad_h, t.out_pad_w, t.h_out, t.w_out);
    wh_conv2d_set_algo((wh_conv_algo)algo);
    const size_t nx = (size_t)t.n * t.c_in * t.h_in * t.w_in;
    const size_t nw = (size_t)t.c_in * t.c_out * t.kh * t.kw;
    const size_t ny = (size_t)t.n * t.c_out * t.h_out * t.w_out;
    double *x = rnd(nx, 1), *w = rnd(nw, 1), *b = rnd(t.c_out, 1), *dy = rnd(ny, 1);
    double *y = malloc(sizeof(double) * ny), *dx = malloc(sizeof(double) * nx);
    double *dw = malloc(sizeof(double) * nw), *db = malloc(sizeof(double) * t.c_out);
    float *xf = to_f32(x, nx), *wf = to_f32(w, nw), *bf = to_f32(b, t.c_out), *dyf = to_f32(dy, ny);
    ref_tbwd(&t, x, w, dy, dx, dw, db);
    double *xa = absdup(x, nx), *wa = absdup(w, nw), *ba = absdup(b, t.c_out), *dya = absdup(dy, ny);
    double *ya = malloc(sizeof(double) * ny), *dxa = malloc(sizeof(double) * nx);
    double *dwa = malloc(sizeof(double) * nw), *dba = malloc(sizeof(double) * t.c_out);
    ref_tbwd(&t, xa, wa, dya, dxa, dwa, dba);
    ref_tfwd(&t, xa, wa, ba, WH_ACT_NONE, ya);

    const int a = variant % 3, with_bias = variant % 2;
    ref_tfwd(&t, x, w, with_bias ? b : NULL, (wh_activation)a, y);
    float *yf = garbage_f32(ny);
    double *yd = garbage_f64(ny);
    wh_status st = wh_conv_transpose2d_forward_f32(&t, xf, wf, with_bias ? bf : NULL, a, yf);
    double e = st == WH_OK ? relerr_f(yf, y, ya, ny) : INFINITY;
    CHECK(e <= TOL32, "conv_transpose2d forward_f32 [%s, act=%s, bias=%d] %s: err %.3g",
          algo_name[algo], act_name[a], with_bias, d, e);
    st = wh_conv_transpose2d_forward_f64(&t, x, w, with_bias ? b : NULL, a, yd);
    e = st == WH_OK ? relerr_d(yd, y, ya, ny) : INFINITY;
    CHECK(e <= TOL64, "conv_transpose2d forward_f64 [%s, act=%s, bias=%d] %s: err %.3g",
          algo_name[algo], act_name[a], with_bias, d, e);

    float *gf = garbage_f32(nx);
    double *gd = garbage_f64(nx);
    st = wh_conv_transpose2d_backward_input_f32(&t, dyf, wf, gf);
    e = st == WH_OK ? relerr_f(gf, dx, dxa, nx) : INFINITY;
    CHECK(e <= TOL32, "conv_transpose2d backward_input_f32 [%s] %s: err %.3g", algo_name[algo], d, e);
    st = wh_conv_transpose2d_backward_input_f64(&t, dy, w, gd);
    e = st == WH_OK ? relerr_d(gd, dx, dxa, nx) : INFINITY;
    CHECK(e <= TOL64, "conv_transpose2d backward_input_f64 [%s] %s: err %.3g", algo_name[algo], d, e);

    float *gwf = garbage_f32(nw), *gbf = garbage_f32(t.c_out);
    double *gwd = garbage_f64(nw), *gbd = garbage_f64(t.c_out);
    st = wh_conv_transpose2d_backward_weight_f32(&t, xf, dyf, gwf, with_bias ? gbf : NULL);
    e = st == WH_OK ? relerr_f(gwf, dw, dwa, nw) : INFINITY;
    if (with_bias && st == WH_OK) e = fmax(e, relerr_f(gbf, db, dba, t.c_out));
    CHECK(e <= TOL32, "conv_transpose2d backward_weight_f32 [%s, dbias=%d] %s: err %.3g",
          algo_name[algo], with_bias, d, e);
    st = wh_conv_transpose2d_backward_weight_f64(&t, x, dy, gwd, with_bias ? gbd : NULL);
    e = st == WH_OK ? relerr_d(gwd, dw, dwa, nw) : INFINITY;
    if (with_bias && st == WH_OK) e = fmax(e, relerr_d(gbd, db, dba, t.c_out));
    CHECK(e <= TOL64, "conv_transpose2d backward_weight_f64 [%s, dbias=%d] %s: err %.3g",
          algo_name[algo], with_bias, d, e);

    wh_conv2d_set_algo(WH_CONV_ALGO_AUTO);
    free(yf), free(yd), free(gf), free(gd), free(gwf), free(gbf), free(gwd), free(gbd);
    free(xa), free(wa), free(ba), free(dya), free(ya), free(dxa), free(dwa), free(dba);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
    free(xf), free(wf), free(bf), free(dyf);
}

/* ------------------------------------------------------------ error cases */

static void error_cases(void) {
    wh_conv2d_shape s = {.n = 2, .c_in = 3, .h_in = 3, .w_in = 4, .c_out = 4, .kh = 5, .kw = 5,
                         .stride_h = 1, .stride_w = 1, .pad_h = 0, .pad_w = 0, .dil_h = 1, .dil_w = 1};
    wh_status st = wh_conv2d_shape_init(&s);
    const char *m = wh_error_message();
    CHECK(st == WH_ERR_SHAPE && strstr(m, "5x5") && strstr(m, "3x4"),
          "5x5 kernel on a 3x4 input: want WH_ERR_SHAPE naming 5x5 and 3x4, got %d '%s'", st, m);
    s.pad_h = 1; /* padded 5x4: still too narrow */
    st = wh_conv2d_shape_init(&s);
    CHECK(st == WH_ERR_SHAPE && strstr(wh_error_message(), "5x4"),
          "5x5 kernel on padded 5x4: want WH_ERR_SHAPE naming 5x4, got %d '%s'", st,
          wh_error_message());
    s.pad_w = 1; /* padded 5x6: fits */
    st = wh_conv2d_shape_init(&s);
    CHECK(st == WH_OK && s.h_out == 1 && s.w_out == 2, "5x5 on padded 5x6: got %d %dx%d", st,
          s.h_out, s.w_out);
    s.dil_h = 2; /* effective 9x5 */
    st = wh_conv2d_shape_init(&s);
    CHECK(st == WH_ERR_SHAPE && strstr(wh_error_message(), "9x5"),
          "dilated 9x5 kernel: want WH_ERR_SHAPE naming 9x5, got %d '%s'", st, wh_error_message());

    wh_conv2d_shape ok = {.n = 1, .c_in = 1, .h_in = 7, .w_in = 8, .c_out = 1, .kh = 3, .kw = 3,
                          .stride_h = 2, .stride_w = 3, .pad_h = 1, .pad_w = 2, .dil_h = 2, .dil_w = 1};
    st = wh_conv2d_shape_init(&ok);
    /* h: (7+2-4-1)/2+1 = 3; w: (8+4-2-1)/3+1 = 4 */
    CHECK(st == WH_OK && ok.h_out == 3 && ok.w_out == 4, "shape_init output: got %d %dx%d", st,
          ok.h_out, ok.w_out);

    wh_conv2d_shape bad;
    bad = ok, bad.c_in = 0;
    CHECK(wh_conv2d_shape_init(&bad) == WH_ERR_ARG && strstr(wh_error_message(), "c_in=0"),
          "c_in=0: want WH_ERR_ARG naming c_in=0 ('%s')", wh_error_message());
    bad = ok, bad.stride_w = 0;
    CHECK(wh_conv2d_shape_init(&bad) == WH_ERR_ARG, "stride 0: want WH_ERR_ARG");
    bad = ok, bad.pad_h = -1;
    CHECK(wh_conv2d_shape_init(&bad) == WH_ERR_ARG && strstr(wh_error_message(), "-1"),
          "pad -1: want WH_ERR_ARG naming -1 ('%s')", wh_error_message());
    bad = ok, bad.dil_h = 0;
    CHECK(wh_conv2d_shape_init(&bad) == WH_ERR_ARG, "dilation 0: want WH_ERR_ARG");
    bad = ok, bad.kw = -3;
    CHECK(wh_conv2d_shape_init(&bad) == WH_ERR_ARG, "kw -3: want WH_ERR_ARG");
    CHECK(wh_conv2d_shape_init(NULL) == WH_ERR_ARG, "NULL shape: want WH_ERR_ARG");

    /* kernels refuse shapes that were not initialised, NULL buffers, bad activations */
    float buf[1024] = {0};
    bad = ok, bad.h_out = 5;
    CHECK(wh_conv2d_forward_f32(&bad, buf, buf, NULL, WH_ACT_NONE, buf) == WH_ERR_SHAPE,
          "forward with a stale h_out: want WH_ERR_SHAPE");
    CHECK(wh_conv2d_forward_f32(&ok, NULL, buf, NULL, WH_ACT_NONE, buf) == WH_ERR_ARG,
          "forward with NULL x: want WH_ERR_ARG");
    CHECK(wh_conv2d_forward_f32(&ok, buf, buf, NULL, (wh_activation)7, buf) == WH_ERR_ARG,
          "forward with activation 7: want WH_ERR_ARG");
    CHECK(wh_conv2d_backward_weight_f32(&ok, buf, buf, NULL, NULL) == WH_ERR_ARG,
          "backward_weight with NULL dw: want WH_ERR_ARG");

    /* transposed: output_padding rule and output size */
    wh_conv_transpose2d_shape t = {.n = 1, .c_in = 2, .h_in = 4, .w_in = 5, .c_out = 3, .kh = 3,
                                   .kw = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                                   .dil_h = 1, .dil_w = 1, .out_pad_h = 1, .out_pad_w = 0};
    st = wh_conv_transpose2d_shape_init(&t);
    /* (4-1)*2 - 2 + 2 + 1 + 1 = 8; (5-1)*2 - 2 + 2 + 0 + 1 = 9 */
    CHECK(st == WH_OK && t.h_out == 8 && t.w_out == 9 && t.fwd.c_in == 3 && t.fwd.c_out == 2 &&
              t.fwd.h_out == 4 && t.fwd.w_out == 5,
          "conv_transpose2d shape: got %d %dx%d", st, t.h_out, t.w_out);
    t.out_pad_w = 2;
    st = wh_conv_transpose2d_shape_init(&t);
    CHECK(st == WH_ERR_ARG && strstr(wh_error_message(), "output_padding"),
          "output_padding 2 with stride 2, dilation 1: want WH_ERR_ARG, got %d '%s'", st,
          wh_error_message());
    t.out_pad_w = 1, t.dil_w = 3, t.stride_w = 1; /* allowed: < dilation */
    st = wh_conv_transpose2d_shape_init(&t);
    CHECK(st == WH_OK, "output_padding 1 < dilation 3: want WH_OK, got %d '%s'", st,
          wh_error_message());
    t.kh = 1, t.h_in = 1, t.pad_h = 1, t.out_pad_h = 0; /* (0)*2 - 2 + 0 + 0 + 1 = -1 */
    st = wh_conv_transpose2d_shape_init(&t);
    CHECK(st == WH_ERR_SHAPE, "conv_transpose2d with negative output: want WH_ERR_SHAPE, got %d", st);

    /* activation helpers */
    float yv[5] = {-1.0f, 0.0f, 0.25f, 0.5f, 2.0f}, g[5] = {1, 2, 3, 4, 5};
    wh_activation_backward_f32(WH_ACT_RELU, yv, g, 5);
    CHECK(g[0] == 0 && g[1] == 0 && g[2] == 3 && g[3] == 4 && g[4] == 5, "relu backward f32");
    double yd[3] = {0.25, 0.5, 0.9}, gd[3] = {1, 1, 2};
    wh_activation_backward_f64(WH_ACT_SIGMOID, yd, gd, 3);
    CHECK(fabs(gd[0] - 0.1875) < 1e-15 && fabs(gd[1] - 0.25) < 1e-15 && fabs(gd[2] - 0.18) < 1e-15,
          "sigmoid backward f64");
    wh_activation_backward_f32(WH_ACT_NONE, yv, g, 5);
    CHECK(g[2] == 3, "none backward f32");
    double emax = 0;
    for (float v = -80.0f; v <= 80.0f; v += 0.37f)
        emax = fmax(emax, fabs((double)wh_sigmoid_f32(v) - 1.0 / (1.0 + exp(-(double)v))) /
                              (1.0 / (1.0 + exp(-(double)v))));
    CHECK(emax < 1e-6, "wh_sigmoid_f32 relative error %.3g", emax);
    CHECK(wh_sigmoid_f32(INFINITY) == 1.0f && wh_sigmoid_f32(-INFINITY) < 1e-37f &&
              wh_sigmoid_f32(-INFINITY) >= 0.0f && wh_sigmoid_f32(1e30f) == 1.0f &&
              wh_sigmoid_f32(0.0f) == 0.5f && isnan(wh_sigmoid_f32(NAN)),
          "wh_sigmoid_f32 edge cases: inf %g, -inf %g, 1e30 %g, 0 %g, nan %g",
          wh_sigmoid_f32(INFINITY), wh_sigmoid_f32(-INFINITY), wh_sigmoid_f32(1e30f),
          wh_sigmoid_f32(0.0f), wh_sigmoid_f32(NAN));
    emax = 0;
    for (float v = -87.0f; v <= 0.0f; v += 0.173f)
        emax = fmax(emax, fabs((double)wh_exp_nonpos_f32(v) - exp((double)v)) / exp((double)v));
    CHECK(emax < 1e-6, "wh_exp_nonpos_f32 relative error %.3g", emax);
    /* the vectorised activation over a buffer agrees with the scalar function */
    float av[37], bv[37];
    for (int i = 0; i < 37; i++) av[i] = bv[i] = (float)(i - 18) * 0.77f;
    wh_activation_forward_f32(WH_ACT_SIGMOID, av, 37);
    int same = 1;
    for (int i = 0; i < 37; i++) same &= av[i] == wh_sigmoid_f32(bv[i]);
    CHECK(same, "wh_activation_forward_f32 sigmoid differs from wh_sigmoid_f32");
}

/* ----------------------------------------------------------------- main */

int main(void) {
    error_cases();

    /* A spread of shapes: every listed value of each parameter appears with
     * every algorithm (cycled deterministically over the combinations). */
    static const int ns[] = {1, 3}, cins[] = {1, 2, 5}, couts[] = {1, 3, 4};
    static const int ks[][2] = {{1, 1}, {3, 3}, {2, 3}, {5, 5}};
    static const int hw[][2] = {{7, 9}, {11, 6}, {5, 13}, {8, 8}};
    int idx = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int stride = 1; stride <= 3; stride++)
            for (int pad = 0; pad <= 2; pad++)
                for (int dil = 1; dil <= 2; dil++) {
                    for (int rep = 0; rep < 2; rep++, idx++) {
                        wh_conv2d_shape s = {
                            .n = ns[idx % 2], .c_in = cins[(idx / 2) % 3],
                            .h_in = hw[idx % 4][0], .w_in = hw[idx % 4][1],
                            .c_out = couts[(idx / 3) % 3], .kh = ks[ki][0], .kw = ks[ki][1],
                            /* mix square and non-square strides/pads/dilations */
                            .stride_h = stride, .stride_w = rep ? 1 + stride % 3 : stride,
                            .pad_h = pad, .pad_w = rep ? (pad + 1) % 3 : pad,
                            .dil_h = dil, .dil_w = rep ? 3 - dil : dil};
                        wh_conv2d_shape probe = s;
                        if (wh_conv2d_shape_init(&probe) != WH_OK) continue; /* kernel too big */
                        for (int algo = 0; algo < 4; algo++) conv_case(s, algo, idx + algo);

                        /* the transposed conv with the same parameters */
                        wh_conv_transpose2d_shape t = {
                            .n = s.n, .c_in = s.c_in, .h_in = 1 + s.h_in / 2, .w_in = 1 + s.w_in / 3,
                            .c_out = s.c_out, .kh = s.kh, .kw = s.kw, .stride_h = s.stride_h,
                            .stride_w = s.stride_w, .pad_h = s.pad_h, .pad_w = s.pad_w,
                            .dil_h = s.dil_h, .dil_w = s.dil_w,
                            .out_pad_h = (idx % 2) ? (s.stride_h > s.dil_h ? s.stride_h : s.dil_h) - 1 : 0,
                            .out_pad_w = (idx % 3) ? (s.stride_w > s.dil_w ? s.stride_w : s.dil_w) - 1 : 0};
                        wh_conv_transpose2d_shape tp = t;
                        if (wh_conv_transpose2d_shape_init(&tp) != WH_OK) continue;
                        for (int algo = 0; algo < 4; algo++) convt_case(t, algo, idx + algo);
                    }
                }

    /* Larger shapes: the auto GEMM path, 1x1 pointwise, several im2col row
     * blocks, batches that do not split evenly over threads. */
    static const int big[][13] = {
        /* n c_in h w c_out kh kw sh sw ph pw dh dw */
        {3, 8, 12, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1},
        {1, 16, 9, 7, 8, 1, 1, 1, 1, 0, 0, 1, 1},     /* pointwise */
        {2, 16, 9, 7, 8, 1, 1, 2, 2, 0, 0, 1, 1},     /* 1x1 strided: im2col */
        {5, 12, 10, 11, 9, 1, 1, 1, 1, 0, 0, 1, 1},   /* pointwise, odd batch */
        {2, 16, 70, 66, 12, 3, 3, 1, 1, 1, 1, 1, 1},  /* several row blocks */
        {1, 32, 40, 36, 16, 3, 3, 1, 1, 1, 1, 1, 1},  /* batch 1: blocks split the image */
        {3, 9, 15, 13, 10, 5, 5, 2, 1, 2, 1, 1, 2},
        {2, 10, 14, 17, 11, 3, 2, 3, 2, 0, 2, 2, 1},
        {3, 5, 17, 23, 40, 3, 3, 1, 1, 1, 1, 1, 1},   /* c_out, c_in*9 off the tile sizes */
        {2, 7, 9, 50, 20, 3, 2, 1, 1, 2, 0, 2, 1},    /* dilated, rectangular, wide */
        {2, 8, 10, 10, 16, 3, 3, 1, 1, 3, 3, 1, 1},   /* pad > dil*(k-1) */
        {16, 1, 24, 20, 32, 3, 3, 1, 1, 1, 1, 1, 1},  /* like the seed's first layer */
        {16, 8, 24, 20, 1, 3, 3, 1, 1, 1, 1, 1, 1},   /* like the seed's last layer */
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        const int *v = big[i];
        wh_conv2d_shape s = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                             v[11], v[12], 0, 0};
        for (int algo = 0; algo < 4; algo++) conv_case(s, algo, (int)i + algo);
        wh_conv_transpose2d_shape t = {.n = v[0], .c_in = v[4], .h_in = v[2] / 2 + 1,
                                       .w_in = v[3] / 2 + 1, .c_out = v[1], .kh = v[5], .kw = v[6],
                                       .stride_h = v[7], .stride_w = v[8], .pad_h = v[9],
                                       .pad_w = v[10], .dil_h = v[11], .dil_w = v[12],
                                       .out_pad_h = v[7] - 1, .out_pad_w = 0};
        wh_conv_transpose2d_shape tp = t;
        if (wh_conv_transpose2d_shape_init(&tp) == WH_OK)
            for (int algo = 0; algo < 4; algo++) convt_case(t, algo, (int)i + algo);
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
