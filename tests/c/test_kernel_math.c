/* Host-side checks of the arithmetic the CUDA kernels run (cuda/ *.cu): each
 * kernel's per-element body lives in a plain-C header under core/kernels/,
 * and here the same bodies run on the CPU, over every element, and are
 * compared with the CPU ops (forward and, through autograd, backward):
 *   strided_math.h  offsets of strided and broadcast views, coalescing,
 *                   reduction layouts, the max rule, uint8 stores, padding
 *   pool_math.h     pooling and upsampling, forward and gather backward
 *   xent_math.h     cross-entropy per position
 *   optim_math.h    the fused optimizer updates, against Keras' formulas
 * Prints failures and ends with "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/optim_math.h"
#include "kernels/pool_math.h"
#include "kernels/strided_math.h"
#include "kernels/xent_math.h"
#include "kernels/elementwise_math.h"
#include "ops.h"

#include "check.h"

#define OK(expr)                                                                              \
    do {                                                                                      \
        if ((expr) != WH_OK) {                                                                \
            printf("FAIL: %s: %s\n", #expr, wh_error_message());                              \
            failed++;                                                                         \
            return;                                                                           \
        }                                                                                     \
    } while (0)

static unsigned long long rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next_u64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static int irand(int lo, int hi) { return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1)); }

/* A float64 tensor of uniform values in [-1, 1), or small integers (so
 * that maxima tie) when `ties`. */
static wh_tensor *random_tensor(int ndim, const int64_t *shape, bool ties) {
    wh_tensor *t = NULL;
    if (wh_tensor_empty(WH_FLOAT64, ndim, shape, NULL, &t) != WH_OK) return NULL;
    double *p = wh_tensor_data(t);
    for (int64_t i = 0; i < wh_tensor_numel(t); i++)
        p[i] = ties ? (double)irand(-2, 2) : (double)(next_u64() >> 11) / 9007199254740992.0 * 2 - 1;
    return t;
}

static double at(const wh_tensor *t, int64_t off) { return ((const double *)t->storage->data)[off]; }

static bool close_to(double a, double b, double tol) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= tol * (1 + fabs(b));
}

/* max |a - b| over contiguous float64 tensors of one shape (NaN pairs agree). */
static double max_diff(const wh_tensor *a, const double *b, int64_t n) {
    double m = 0;
    const double *p = wh_tensor_data(a);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(p[i]) && isnan(b[i])) continue;
        double d = fabs(p[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* The gradient of sum(y * g) with respect to x (CPU autograd). */
static wh_status cpu_grad(wh_tensor *y, wh_tensor *g, wh_tensor *x, wh_tensor **gx) {
    return wh_autograd_grad(1, &y, &g, 1, &x, false, gx);
}

/* ---- strided offsets and broadcasting ----------------------------------------------------- */

static void test_strided_offsets(void) {
    int ok = 1, cases = 0;
    for (int rep = 0; rep < 200; rep++) {
        int nd = irand(1, 5);
        int64_t shape[8];
        for (int d = 0; d < nd; d++) shape[d] = irand(1, 5);
        wh_tensor *t = random_tensor(nd, shape, false), *v = NULL, *w = NULL;
        /* a permuted, narrowed view */
        int perm[8];
        for (int d = 0; d < nd; d++) perm[d] = d;
        for (int d = nd - 1; d > 0; d--) {
            int j = irand(0, d), tmp = perm[d];
            perm[d] = perm[j];
            perm[j] = tmp;
        }
        wh_permute_raw(t, perm, &v);
        int dim = irand(0, nd - 1);
        int64_t start = irand(0, (int)v->shape[dim] - 1);
        wh_narrow_raw(v, dim, start, v->shape[dim] - start, &w);
        int64_t i = 0;
        WH_FOR_EACH_OFFSET(w, off, {
            if (w->offset + wh_strided_offset(i, w->ndim, w->shape, w->stride) != off) ok = 0;
            i++;
        });
        cases++;
        wh_tensor_release(t);
        wh_tensor_release(v);
        wh_tensor_release(w);
    }
    CHECK(ok, "wh_strided_offset disagrees with WH_FOR_EACH_OFFSET (%d cases)", cases);
}

/* The GPU's binary kernel, run on the host: a coalesced broadcast loop
 * and elementwise_math.h, against wh_binary. */
static void test_broadcast_binary(void) {
    int bad = 0;
    for (int rep = 0; rep < 300; rep++) {
        int nd = irand(1, 4);
        int64_t shape[8], sa[8], sb[8];
        for (int d = 0; d < nd; d++) {
            shape[d] = irand(1, 4);
            sa[d] = irand(0, 2) ? shape[d] : 1;
            sb[d] = irand(0, 2) ? shape[d] : 1;
        }
        int lead = irand(0, nd - 1); /* b may have fewer dims */
        int bnd = nd - lead;
        bool transposed = bnd >= 2 && irand(0, 1);
        int64_t bs[8];
        memcpy(bs, sb + lead, sizeof(int64_t) * (size_t)bnd);
        if (transposed) { /* made with its first two dims swapped, then transposed back */
            bs[0] = sb[lead + 1];
            bs[1] = sb[lead];
        }
        wh_tensor *a = random_tensor(nd, sa, false), *b0 = random_tensor(bnd, bs, false);
        wh_tensor *b = b0, *bt = NULL;
        if (transposed) {
            wh_transpose(b0, 0, 1, &bt);
            b = bt;
        }
        int mop = irand(0, WH_MATH_MINIMUM);
        if (mop == WH_MATH_POW) mop = WH_MATH_MUL; /* pow of negatives: NaN on both, tested elsewhere */
        wh_tensor *ref = NULL;
        if (wh_binary((wh_binary_op)mop, a, b, &ref) != WH_OK) {
            bad++;
            printf("  binary failed: %s\n", wh_error_message());
            continue;
        }
        wh_strided_loop l;
        wh_strided_loop_init(&l, ref->ndim, ref->shape, 3);
        wh_strided_loop_operand(&l, 0, a->ndim, a->shape, a->stride, a->offset);
        wh_strided_loop_operand(&l, 1, b->ndim, b->shape, b->stride, b->offset);
        wh_strided_loop_operand(&l, 2, 0, NULL, NULL, 0);
        wh_strided_coalesce(&l);
        int64_t n = wh_tensor_numel(ref);
        for (int64_t i = 0; i < n; i++) {
            int64_t o[3];
            wh_strided_offsets(&l, i, o);
            double got = wh_binary_forward_f64(mop, at(a, o[0]), at(b, o[1]));
            if (o[2] != i || !close_to(got, ((double *)wh_tensor_data(ref))[i], 0)) {
                bad++;
                break;
            }
        }
        wh_tensor_release(a);
        wh_tensor_release(b0);
        wh_tensor_release(bt);
        wh_tensor_release(ref);
    }
    CHECK(bad == 0, "broadcast loop + binary math differ from wh_binary in %d cases", bad);
}

static void test_coalesce(void) {
    /* a contiguous tensor becomes one dim; a transposed one keeps two */
    int64_t shape[3] = {2, 3, 4};
    wh_tensor *t = random_tensor(3, shape, false), *tt = NULL;
    wh_strided_loop l;
    wh_strided_loop_init(&l, 3, shape, 1);
    wh_strided_loop_operand(&l, 0, 3, t->shape, t->stride, 0);
    wh_strided_coalesce(&l);
    CHECK(l.ndim == 1 && l.shape[0] == 24 && l.stride[0][0] == 1, "contiguous loop coalesces to "
          "one dim (got %d dims)", l.ndim);
    wh_transpose(t, 1, 2, &tt);
    wh_strided_loop_init(&l, 3, tt->shape, 2);
    wh_strided_loop_operand(&l, 0, 3, tt->shape, tt->stride, 0);
    wh_strided_loop_operand(&l, 1, 0, NULL, NULL, 0);
    wh_strided_coalesce(&l);
    CHECK(l.ndim == 3, "a transposed operand keeps its dims (got %d)", l.ndim);
    int64_t one[2] = {1, 1};
    wh_strided_loop_init(&l, 0, one, 1);
    wh_strided_loop_operand(&l, 0, 0, NULL, NULL, 0);
    wh_strided_coalesce(&l);
    CHECK(l.ndim == 1 && l.shape[0] == 1, "a 0-d loop is one element");
    wh_tensor_release(t);
    wh_tensor_release(tt);
}

/* ---- reductions ---------------------------------------------------------------------------------- */

/* The GPU's reduction, emulated: cells of the layout, each split into
 * `parts` parts reduced separately and combined in order. */
static void emulate_reduce(const wh_tensor *x, const int *mask, int parts, double *sum, double *mx,
                           int64_t *arg) {
    wh_reduce_layout r;
    wh_reduce_layout_init(&r, x->ndim, x->shape, x->stride, mask);
    const double *p = wh_tensor_data(x);
    for (int64_t q = 0; q < r.outputs; q++) {
        int64_t base = wh_strided_offset(q, r.kept_ndim, r.kept_shape, r.kept_stride);
        int64_t chunk = (r.count + parts - 1) / parts;
        double s = 0, best = p[base];
        int64_t bi = base;
        for (int part = parts - 1; part >= 0; part--) { /* combine in any order */
            int64_t j0 = part * chunk, j1 = j0 + chunk < r.count ? j0 + chunk : r.count;
            double ps = 0, pb = NAN;
            int64_t pi = -1;
            for (int64_t j = j0; j < j1; j++) {
                int64_t o = base + wh_strided_offset(j, r.red_ndim, r.red_shape, r.red_stride);
                ps += p[o];
                if (pi < 0 || wh_max_takes_f64(p[o], o, pb, pi)) {
                    pb = p[o];
                    pi = o;
                }
            }
            s += ps;
            if (pi >= 0 && wh_max_takes_f64(pb, pi, best, bi)) {
                best = pb;
                bi = pi;
            }
        }
        sum[q] = s;
        mx[q] = best;
        arg[q] = bi;
    }
}

static void test_reductions(void) {
    int bad_sum = 0, bad_max = 0, bad_arg = 0, cases = 0;
    for (int rep = 0; rep < 300; rep++) {
        int nd = irand(1, 4);
        int64_t shape[8];
        for (int d = 0; d < nd; d++) shape[d] = irand(1, 5);
        wh_tensor *x = random_tensor(nd, shape, rep % 2 == 0);
        if (rep % 7 == 0) ((double *)wh_tensor_data(x))[irand(0, (int)wh_tensor_numel(x) - 1)] = NAN;
        int mask[8] = {0}, dims[8], ndims = 0;
        for (int d = 0; d < nd; d++)
            if (irand(0, 1)) {
                mask[d] = 1;
                dims[ndims++] = d;
            }
        if (ndims == 0) {
            mask[0] = 1;
            dims[ndims++] = 0;
        }
        wh_tensor *s = NULL, *m = NULL, *am = NULL;
        if (wh_sum(x, ndims, dims, false, &s) != WH_OK || wh_max(x, ndims, dims, false, &m) != WH_OK) {
            bad_sum++;
            continue;
        }
        int64_t nout = wh_tensor_numel(s);
        double *es = malloc(sizeof(double) * (size_t)nout), *em = malloc(sizeof(double) * (size_t)nout);
        int64_t *ea = malloc(sizeof(int64_t) * (size_t)nout);
        emulate_reduce(x, mask, irand(1, 4), es, em, ea);
        if (max_diff(s, es, nout) > 1e-12) bad_sum++;
        if (max_diff(m, em, nout) != 0) bad_max++;
        if (ndims == 1 && wh_argmax(x, 1, dims, false, &am) == WH_OK) {
            int64_t div = 1;
            for (int d = dims[0] + 1; d < nd; d++) div *= shape[d];
            const double *a = wh_tensor_data(am);
            for (int64_t q = 0; q < nout; q++)
                if (a[q] != (double)((ea[q] / div) % shape[dims[0]])) {
                    bad_arg++;
                    break;
                }
        }
        cases++;
        free(es);
        free(em);
        free(ea);
        wh_tensor_release(x);
        wh_tensor_release(s);
        wh_tensor_release(m);
        wh_tensor_release(am);
    }
    CHECK(bad_sum == 0, "reduction layout sums differ from wh_sum in %d of %d cases", bad_sum, cases);
    CHECK(bad_max == 0, "split max differs from wh_max in %d of %d cases", bad_max, cases);
    CHECK(bad_arg == 0, "split arg max differs from wh_argmax in %d of %d cases", bad_arg, cases);
    /* the rule itself: NaN beats numbers, ties and NaNs go to the lowest position */
    CHECK(wh_max_takes_f64(NAN, 5, 3.0, 1) && !wh_max_takes_f64(3.0, 1, NAN, 5), "NaN wins");
    CHECK(wh_max_takes_f64(2.0, 1, 2.0, 4) && !wh_max_takes_f64(2.0, 4, 2.0, 1), "ties: first");
    CHECK(wh_max_takes_f32(NAN, 1, NAN, 4) && !wh_max_takes_f32(NAN, 4, NAN, 1), "NaNs: first");
}

/* ---- uint8 stores, padding ------------------------------------------------------------------------- */

static void test_u8(void) {
    double vals[] = {-3, -0.5, 0, 0.4, 0.5, 1.5, 2.5, 127.49, 254.5, 255, 255.6, 1e9, NAN, 3.7};
    int64_t n = sizeof vals / sizeof vals[0];
    wh_tensor *src = NULL, *dst = NULL;
    OK(wh_tensor_from_bytes(WH_FLOAT64, 1, &n, vals, sizeof vals, &src));
    OK(wh_tensor_empty(WH_UINT8, 1, &n, NULL, &dst));
    OK(wh_copy_into(dst, src));
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (((uint8_t *)wh_tensor_data(dst))[i] != wh_u8_from_double(vals[i])) bad++;
    CHECK(bad == 0, "wh_u8_from_double differs from the CPU's uint8 store in %d values", bad);
    wh_tensor_release(src);
    wh_tensor_release(dst);
}

static void test_pad(void) {
    int bad = 0, cases = 0;
    for (int rep = 0; rep < 120; rep++) {
        int nd = irand(1, 4), npairs = irand(1, nd), mode = irand(0, 2);
        int64_t shape[8], pads[16];
        for (int d = 0; d < nd; d++) shape[d] = irand(2, 5);
        wh_tensor *x0 = random_tensor(nd, shape, false), *x = x0, *xt = NULL, *y = NULL;
        if (nd >= 2 && irand(0, 1)) { /* a strided input */
            wh_transpose(x0, 0, nd - 1, &xt);
            x = xt;
        }
        for (int k = 0; k < npairs; k++) {
            int64_t size = x->shape[nd - 1 - k];
            pads[2 * k] = irand(0, (int)size - 1);
            pads[2 * k + 1] = irand(0, (int)size - 1);
        }
        if (wh_pad(x, npairs, pads, (wh_pad_mode)mode, 0.25, &y) != WH_OK) {
            printf("  pad failed: %s\n", wh_error_message());
            bad++;
            continue;
        }
        wh_pad_geom g;
        memset(&g, 0, sizeof g);
        g.ndim = nd;
        g.mode = mode;
        g.in_offset = x->offset;
        for (int d = 0; d < nd; d++) {
            g.out_shape[d] = y->shape[d];
            g.in_shape[d] = x->shape[d];
            g.in_stride[d] = x->stride[d];
            int k = nd - 1 - d;
            g.before[d] = k < npairs ? pads[2 * k] : 0;
        }
        const double *yp = wh_tensor_data(y);
        for (int64_t i = 0; i < wh_tensor_numel(y); i++) {
            int64_t s = wh_pad_source_offset(&g, i);
            double v = s < 0 ? 0.25 : at(x, s);
            if (v != yp[i]) {
                bad++;
                printf("  pad mode %d npairs %d of a %d-d input: element %lld is %g, expected %g\n",
                       mode, npairs, nd, (long long)i, v, yp[i]);
                break;
            }
        }
        cases++;
        wh_tensor_release(x0);
        wh_tensor_release(xt);
        wh_tensor_release(y);
    }
    CHECK(bad == 0, "wh_pad_source_offset differs from wh_pad in %d of %d cases", bad, cases);
}

/* ---- pooling and upsampling ------------------------------------------------------------------------ */

static void test_pooling(void) {
    int bad_fwd = 0, bad_grad = 0, bad_avg = 0, bad_avg_grad = 0, cases = 0;
    for (int rep = 0; rep < 120; rep++) {
        wh_pool_params p;
        memset(&p, 0, sizeof p);
        for (int i = 0; i < 2; i++) {
            p.kernel[i] = irand(1, 4);
            p.stride[i] = irand(1, 3);
            p.padding[i] = irand(0, p.kernel[i] / 2);
        }
        p.ceil_mode = irand(0, 1);
        p.count_include_pad = irand(0, 1);
        int64_t shape[4] = {irand(1, 2), irand(1, 3), irand(4, 9), irand(4, 9)};
        wh_tensor *x = random_tensor(4, shape, rep % 2 == 0), *ym = NULL, *ya = NULL;
        x->requires_grad = true;
        if (wh_max_pool2d(x, &p, &ym) != WH_OK || wh_avg_pool2d(x, &p, &ya) != WH_OK) {
            wh_tensor_release(x);
            wh_tensor_release(ym);
            continue; /* a window too big for the input: refused on both */
        }
        wh_pool_geom g = {shape[2], shape[3], ym->shape[2], ym->shape[3], p.kernel[0],
                          p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1],
                          p.count_include_pad};
        int64_t planes = shape[0] * shape[1], HW = g.H * g.W, OHW = g.OH * g.OW;
        int64_t nout = planes * OHW, nin = planes * HW;
        double *ey = malloc(sizeof(double) * (size_t)nout), *ea = malloc(sizeof(double) * (size_t)nout);
        double *egx = malloc(sizeof(double) * (size_t)nin), *eag = malloc(sizeof(double) * (size_t)nin);
        int32_t *idx = malloc(sizeof(int32_t) * (size_t)nout);
        const double *X = wh_tensor_data(x);
        for (int64_t i = 0; i < nout; i++) {
            int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / OHW;
            ey[i] = wh_max_pool_at_f64(&g, X + pl * HW, oh, ow, &idx[i]);
            ea[i] = wh_avg_pool_at_f64(&g, X + pl * HW, oh, ow);
        }
        if (max_diff(ym, ey, nout) != 0) bad_fwd++;
        if (max_diff(ya, ea, nout) > 1e-15) bad_avg++;
        wh_tensor *gy = random_tensor(4, ym->shape, false), *gxm = NULL, *gxa = NULL;
        const double *G = wh_tensor_data(gy);
        for (int64_t i = 0; i < nin; i++) {
            int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / HW;
            egx[i] = wh_max_pool_grad_at_f64(&g, G + pl * OHW, idx + pl * OHW, h, w);
            eag[i] = wh_avg_pool_grad_at_f64(&g, G + pl * OHW, h, w);
        }
        if (cpu_grad(ym, gy, x, &gxm) != WH_OK || max_diff(gxm, egx, nin) > 1e-14) bad_grad++;
        if (cpu_grad(ya, gy, x, &gxa) != WH_OK || max_diff(gxa, eag, nin) > 1e-14) bad_avg_grad++;
        cases++;
        free(ey);
        free(ea);
        free(egx);
        free(eag);
        free(idx);
        wh_tensor_release(x);
        wh_tensor_release(ym);
        wh_tensor_release(ya);
        wh_tensor_release(gy);
        wh_tensor_release(gxm);
        wh_tensor_release(gxa);
    }
    CHECK(cases > 50, "enough pooling cases ran (%d)", cases);
    CHECK(bad_fwd == 0, "max pool bodies differ from wh_max_pool2d in %d of %d cases", bad_fwd, cases);
    CHECK(bad_grad == 0, "max pool gather differs from the CPU backward in %d of %d cases", bad_grad, cases);
    CHECK(bad_avg == 0, "avg pool bodies differ from wh_avg_pool2d in %d of %d cases", bad_avg, cases);
    CHECK(bad_avg_grad == 0, "avg pool gather differs from the CPU backward in %d of %d cases",
          bad_avg_grad, cases);
}

static void test_upsampling(void) {
    int bad_fwd = 0, bad_grad = 0, cases = 0;
    for (int rep = 0; rep < 120; rep++) {
        int mode = irand(0, 1), align = mode == 1 ? irand(0, 1) : 0;
        int64_t shape[4] = {1, irand(1, 2), irand(1, 7), irand(1, 7)};
        int64_t OH = irand(1, 16), OW = irand(1, 16);
        if (rep % 3 == 0) {
            OH = 2 * shape[2];
            OW = 2 * shape[3];
        }
        wh_tensor *x = random_tensor(4, shape, false), *y = NULL, *gx = NULL;
        x->requires_grad = true;
        if (wh_upsample2d(x, OH, OW, (wh_upsample_mode)mode, align, &y) != WH_OK) {
            bad_fwd++;
            wh_tensor_release(x);
            continue;
        }
        int64_t H = shape[2], W = shape[3], planes = shape[0] * shape[1];
        int64_t nout = planes * OH * OW, nin = planes * H * W;
        double *ey = malloc(sizeof(double) * (size_t)nout), *eg = malloc(sizeof(double) * (size_t)nin);
        const double *X = wh_tensor_data(x);
        for (int64_t i = 0; i < nout; i++) {
            int64_t ow = i % OW, oh = (i / OW) % OH, pl = i / (OH * OW);
            ey[i] = wh_upsample_at_f64(mode, align, X + pl * H * W, H, W, OH, OW, oh, ow);
        }
        if (max_diff(y, ey, nout) != 0) bad_fwd++;
        int64_t *runs = malloc(sizeof(int64_t) * (size_t)(2 * H + 2 * W));
        wh_resample_readers(mode, align, H, OH, runs, runs + H);
        wh_resample_readers(mode, align, W, OW, runs + 2 * H, runs + 2 * H + W);
        wh_tensor *gy = random_tensor(4, y->shape, false);
        const double *G = wh_tensor_data(gy);
        for (int64_t i = 0; i < nin; i++) {
            int64_t w = i % W, h = (i / W) % H, pl = i / (H * W);
            eg[i] = wh_upsample_grad_at_f64(mode, align, G + pl * OH * OW, H, W, OH, OW, runs,
                                            runs + H, runs + 2 * H, runs + 2 * H + W, h, w);
        }
        if (cpu_grad(y, gy, x, &gx) != WH_OK || max_diff(gx, eg, nin) > 1e-13) bad_grad++;
        cases++;
        free(ey);
        free(eg);
        free(runs);
        wh_tensor_release(x);
        wh_tensor_release(y);
        wh_tensor_release(gy);
        wh_tensor_release(gx);
    }
    CHECK(bad_fwd == 0, "upsample bodies differ from wh_upsample2d in %d of %d cases", bad_fwd, cases);
    CHECK(bad_grad == 0, "upsample gather differs from the CPU backward in %d of %d cases", bad_grad,
          cases);
}

/* ---- cross-entropy ------------------------------------------------------------------------------------ */

static void test_xent(void) {
    int64_t N = 2, C = 5, H = 3, W = 4, S = H * W, shape[4] = {N, C, H, W}, tshape[3] = {N, H, W};
    wh_tensor *z = random_tensor(4, shape, false), *t = NULL, *loss = NULL, *gz = NULL, *g = NULL;
    for (int64_t i = 0; i < wh_tensor_numel(z); i++) ((double *)wh_tensor_data(z))[i] *= 4;
    z->requires_grad = true;
    OK(wh_tensor_empty(WH_FLOAT64, 3, tshape, NULL, &t));
    double *tp = wh_tensor_data(t);
    for (int64_t e = 0; e < N * S; e++) tp[e] = e % 7 == 3 ? -100 : irand(0, (int)C - 1);
    OK(wh_cross_entropy(z, t, NULL, -100, WH_REDUCE_NONE, &loss));
    g = random_tensor(3, tshape, false);
    OK(cpu_grad(loss, g, z, &gz));
    const double *Z = wh_tensor_data(z), *L = wh_tensor_data(loss), *GZ = wh_tensor_data(gz),
                 *G = wh_tensor_data(g);
    double worst = 0, worst_g = 0;
    for (int64_t e = 0; e < N * S; e++) {
        int64_t b = e / S, s = e % S, k = tp[e] < 0 ? -1 : (int64_t)tp[e];
        const double *z0 = Z + b * C * S + s;
        double lse = wh_xent_lse_f64(z0, C, S), l = k >= 0 ? -(z0[k * S] - lse) : 0;
        worst = fmax(worst, fabs(l - L[e]));
        double f = k >= 0 ? G[e] : 0;
        for (int64_t c = 0; c < C; c++)
            worst_g = fmax(worst_g, fabs(wh_xent_grad_f64(z0[c * S], lse, f, k == c) -
                                         GZ[b * C * S + c * S + s]));
    }
    CHECK(worst < 1e-13, "cross-entropy per position differs from the CPU op by %g", worst);
    CHECK(worst_g < 1e-13, "cross-entropy gradient differs from the CPU op by %g", worst_g);
    wh_tensor_release(z);
    wh_tensor_release(t);
    wh_tensor_release(loss);
    wh_tensor_release(gz);
    wh_tensor_release(g);
}

/* ---- optimizer updates ----------------------------------------------------------------------------------- */

/* Keras 3's update steps written out on their own (keras/src/optimizers),
 * for one element, to check the shared functions against. */
static void keras_sgd(double *p, double g, double *m, double lr, double mo, int nesterov, double wd) {
    *p -= *p * wd * lr;
    if (mo != 0) {
        *m = -g * lr + *m * mo;
        *p += nesterov ? -g * lr + *m * mo : *m;
    } else {
        *p += -g * lr;
    }
}

static void keras_adam(double *p, double g, double *m, double *v, double *vh, int t, double lr,
                       double b1, double b2, double eps, double wd) {
    *p -= *p * wd * lr;
    double alpha = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
    *m += (g - *m) * (1 - b1);
    *v += (g * g - *v) * (1 - b2);
    double vv = *v;
    if (vh) {
        *vh = fmax(*vh, *v);
        vv = *vh;
    }
    *p -= (*m * alpha) / (sqrt(vv) + eps);
}

static void keras_rmsprop(double *p, double g, double *v, double *a, double *mom, double lr,
                          double rho, double eps, double mo, double wd) {
    *p -= *p * wd * lr;
    *v = rho * *v + (1 - rho) * g * g;
    double den = *v + eps;
    if (a) {
        *a = rho * *a + (1 - rho) * g;
        den = *v - *a * *a + eps;
    }
    double inc = lr * g / sqrt(den);
    if (mo > 0) {
        *mom = mo * *mom + inc;
        *p -= *mom;
    } else {
        *p -= inc;
    }
}

static void test_optim_math(void) {
    double worst = 0;
    for (int variant = 0; variant < 8; variant++) {
        int nes = variant & 1, ams = (variant >> 1) & 1, cen = (variant >> 2) & 1;
        double wd = variant % 3 == 0 ? 0.01 : 0, mo = variant % 2 ? 0.9 : 0;
        double p[3] = {0.5, 0.5, 0.5}, r[3] = {0.5, 0.5, 0.5}, s[6] = {0}, q[6] = {0}, h = 0, hq = 0;
        double avg = 0, avgq = 0, mom = 0, momq = 0;
        for (int t = 1; t <= 6; t++) {
            double g = sin(t * 1.7 + variant);
            wh_sgd_update_f64(&p[0], g, &s[0], 0.1, mo, nes, wd);
            keras_sgd(&r[0], g, &q[0], 0.1, mo, nes, wd);
            wh_adam_update_f64(&p[1], g, &s[1], &s[2], ams ? &h : NULL,
                               wh_adam_alpha(0.01, 0.9, 0.999, t), 0.9, 0.999, 1e-7, 0.01, wd);
            keras_adam(&r[1], g, &q[1], &q[2], ams ? &hq : NULL, t, 0.01, 0.9, 0.999, 1e-7, wd);
            wh_rmsprop_update_f64(&p[2], g, &s[3], cen ? &avg : NULL, &mom, 0.01, 0.9, 1e-7, mo, wd);
            keras_rmsprop(&r[2], g, &q[3], cen ? &avgq : NULL, &momq, 0.01, 0.9, 1e-7, mo, wd);
        }
        for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(p[k] - r[k]));
    }
    CHECK(worst < 1e-14, "optimizer updates differ from Keras' formulas by %g", worst);
    /* float32 follows float64 */
    float pf = 0.5f, mf = 0, vf = 0;
    double pd = 0.5, md = 0, vd = 0;
    for (int t = 1; t <= 10; t++) {
        double g = cos(t * 0.9);
        wh_adam_update_f32(&pf, (float)g, &mf, &vf, NULL, (float)wh_adam_alpha(1e-3, 0.9, 0.999, t),
                           0.9f, 0.999f, 1e-7f, 1e-3f, 0);
        wh_adam_update_f64(&pd, g, &md, &vd, NULL, wh_adam_alpha(1e-3, 0.9, 0.999, t), 0.9, 0.999,
                           1e-7, 1e-3, 0);
    }
    CHECK(fabs(pf - pd) < 1e-6, "float32 Adam follows float64 (%g vs %g)", pf, pd);
}

/* The fused CPU ops run the same functions over whole tensors. */
static void test_fused_ops(void) {
    int64_t n = 1000;
    wh_tensor *p = random_tensor(1, &n, false), *g = random_tensor(1, &n, false);
    wh_tensor *m = NULL, *v = NULL;
    OK(wh_tensor_zeros(WH_FLOAT64, 1, &n, &m));
    OK(wh_tensor_zeros(WH_FLOAT64, 1, &n, &v));
    double *ref = malloc(sizeof(double) * (size_t)n), *rm = calloc((size_t)n, sizeof(double)),
           *rv = calloc((size_t)n, sizeof(double));
    memcpy(ref, wh_tensor_data(p), sizeof(double) * (size_t)n);
    wh_adam_options o = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-7, .step = 1};
    for (int t = 1; t <= 3; t++) {
        o.step = t;
        OK(wh_adam_update_(p, g, m, v, NULL, &o));
        for (int64_t i = 0; i < n; i++)
            keras_adam(&ref[i], at(g, i), &rm[i], &rv[i], NULL, t, 1e-3, 0.9, 0.999, 1e-7, 0);
    }
    CHECK(max_diff(p, ref, n) < 1e-15, "wh_adam_update_ differs from Keras' Adam by %g",
          max_diff(p, ref, n));
    wh_rmsprop_options ro = {.lr = 1e-3, .rho = 0.9, .eps = 1e-7, .momentum = 0.5};
    CHECK(wh_rmsprop_update_(p, g, v, NULL, NULL, &ro) == WH_ERR_ARG &&
              strstr(wh_error_message(), "momentum buffer") != NULL,
          "rmsprop with momentum and no buffer is refused: %s", wh_error_message());
    free(ref);
    free(rm);
    free(rv);
    wh_tensor_release(p);
    wh_tensor_release(g);
    wh_tensor_release(m);
    wh_tensor_release(v);
}

int main(void) {
    test_strided_offsets();
    test_broadcast_binary();
    test_coalesce();
    test_reductions();
    test_u8();
    test_pad();
    test_pooling();
    test_upsampling();
    test_xent();
    test_optim_math();
    test_fused_ops();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
