/* MSE, PSNR and SSIM per image (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_util.h"

#define SSIM_RADIUS 5 /* int(3.5 * 1.5 + 0.5): an 11x11 window */
#define SSIM_SIGMA 1.5
#define SSIM_K1 0.01
#define SSIM_K2 0.03

const char *wh_metric_name(wh_metric_kind kind) {
    switch (kind) {
    case WH_METRIC_MSE: return "mse";
    case WH_METRIC_PSNR: return "psnr";
    case WH_METRIC_SSIM: return "ssim";
    }
    return "?";
}

/* Image geometry of an (H, W) or (N, 1, H, W) tensor. */
static wh_status image_dims(const char *op, const char *arg, const wh_tensor *t, int64_t *n,
                            int64_t *h, int64_t *w) {
    char buf[96];
    if (t->ndim == 2) {
        *n = 1;
        *h = t->shape[0];
        *w = t->shape[1];
    } else if (t->ndim == 4 && t->shape[1] == 1) {
        *n = t->shape[0];
        *h = t->shape[2];
        *w = t->shape[3];
    } else {
        return wh_fail(WH_ERR_SHAPE, "%s: %s must be (H,W) or (N,1,H,W), got shape %s", op, arg,
                       wh_shape_str(t, buf, sizeof buf));
    }
    return WH_OK;
}

wh_status wh_metric_check(const char *op, wh_metric_kind kind, const wh_tensor *a,
                          const wh_tensor *b, const wh_tensor *mask, int64_t *nimages) {
    char sa[96], sb[96];
    WH_TRY(wh_check_float(op, "a", a));
    WH_TRY(wh_check_float(op, "b", b));
    int64_t n = 0, h = 0, w = 0;
    WH_TRY(image_dims(op, "a", a, &n, &h, &w));
    if (!wh_tensor_same_shape(a, b))
        return wh_fail(WH_ERR_SHAPE, "%s: a and b must have the same shape, got a %s and b %s", op,
                       wh_shape_str(a, sa, sizeof sa), wh_shape_str(b, sb, sizeof sb));
    if (h < 1 || w < 1)
        return wh_fail(WH_ERR_SHAPE, "%s: empty images (shape %s)", op,
                       wh_shape_str(a, sa, sizeof sa));
    if (n < 1)
        return wh_fail(WH_ERR_SHAPE, "%s: empty batch (shape %s)", op,
                       wh_shape_str(a, sa, sizeof sa));
    if (kind == WH_METRIC_SSIM && (h < 2 * SSIM_RADIUS + 1 || w < 2 * SSIM_RADIUS + 1))
        return wh_fail(WH_ERR_SHAPE,
                       "%s: SSIM needs images of at least %dx%d pixels (its Gaussian window), "
                       "got shape %s",
                       op, 2 * SSIM_RADIUS + 1, 2 * SSIM_RADIUS + 1,
                       wh_shape_str(a, sa, sizeof sa));
    if (mask) {
        WH_TRY(wh_check_cpu(op, mask));
        bool shared = mask->ndim == 2 && mask->shape[0] == h && mask->shape[1] == w;
        if (!shared && !wh_tensor_same_shape(mask, a))
            return wh_fail(WH_ERR_SHAPE,
                           "%s: mask must have the shape of the images %s or (H,W) = [%lld, %lld], "
                           "got %s",
                           op, wh_shape_str(a, sa, sizeof sa), (long long)h, (long long)w,
                           wh_shape_str(mask, sb, sizeof sb));
    }
    *nimages = n;
    return WH_OK;
}

/* Gaussian weights of scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5). */
static void gauss_weights(double *g) {
    double s = 0;
    for (int i = -SSIM_RADIUS; i <= SSIM_RADIUS; i++) {
        g[i + SSIM_RADIUS] = exp(-0.5 * i * i / (SSIM_SIGMA * SSIM_SIGMA));
        s += g[i + SSIM_RADIUS];
    }
    for (int i = 0; i <= 2 * SSIM_RADIUS; i++) g[i] /= s;
}

/* scipy "reflect" (half-sample symmetric); n > SSIM_RADIUS so one fold is enough. */
static inline int64_t reflect(int64_t i, int64_t n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - i - 1;
    return i;
}

/* out = gaussian_filter(in) for one h x w plane; tmp is h x w scratch. */
static void gauss_filter(const double *in, double *out, double *tmp, int64_t h, int64_t w,
                         const double *g) {
    for (int64_t y = 0; y < h; y++) {
        const double *row = in + y * w;
        for (int64_t x = 0; x < w; x++) {
            double s = 0;
            if (x >= SSIM_RADIUS && x + SSIM_RADIUS < w) {
                for (int k = -SSIM_RADIUS; k <= SSIM_RADIUS; k++)
                    s += g[k + SSIM_RADIUS] * row[x + k];
            } else {
                for (int k = -SSIM_RADIUS; k <= SSIM_RADIUS; k++)
                    s += g[k + SSIM_RADIUS] * row[reflect(x + k, w)];
            }
            tmp[y * w + x] = s;
        }
    }
    for (int64_t y = 0; y < h; y++) {
        double *o = out + y * w;
        for (int64_t x = 0; x < w; x++) o[x] = 0;
        for (int k = -SSIM_RADIUS; k <= SSIM_RADIUS; k++) {
            const double *r = tmp + reflect(y + k, h) * w;
            double gk = g[k + SSIM_RADIUS];
            for (int64_t x = 0; x < w; x++) o[x] += gk * r[x];
        }
    }
}

/* The SSIM map of one image pair into map (h x w); scratch holds 7 h*w planes. */
static void ssim_map(const double *a, const double *b, int64_t h, int64_t w, double range,
                     double *map, double *scratch) {
    int64_t hw = h * w;
    double g[2 * SSIM_RADIUS + 1];
    gauss_weights(g);
    double *prod = scratch, *tmp = scratch + hw;
    double *ux = scratch + 2 * hw, *uy = scratch + 3 * hw, *uxx = scratch + 4 * hw,
           *uyy = scratch + 5 * hw, *uxy = scratch + 6 * hw;
    gauss_filter(a, ux, tmp, h, w, g);
    gauss_filter(b, uy, tmp, h, w, g);
    for (int64_t i = 0; i < hw; i++) prod[i] = a[i] * a[i];
    gauss_filter(prod, uxx, tmp, h, w, g);
    for (int64_t i = 0; i < hw; i++) prod[i] = b[i] * b[i];
    gauss_filter(prod, uyy, tmp, h, w, g);
    for (int64_t i = 0; i < hw; i++) prod[i] = a[i] * b[i];
    gauss_filter(prod, uxy, tmp, h, w, g);
    double c1 = (SSIM_K1 * range) * (SSIM_K1 * range);
    double c2 = (SSIM_K2 * range) * (SSIM_K2 * range);
    for (int64_t i = 0; i < hw; i++) {
        double mx = ux[i], my = uy[i];
        double vx = uxx[i] - mx * mx, vy = uyy[i] - my * my, vxy = uxy[i] - mx * my;
        double num = (2 * mx * my + c1) * (2 * vxy + c2);
        double den = (mx * mx + my * my + c1) * (vx + vy + c2);
        map[i] = num / den;
    }
}

wh_status wh_metric_compute(const char *op, wh_metric_kind kind, const wh_tensor *a,
                            const wh_tensor *b, const wh_tensor *mask, double data_range,
                            double *per_image, int64_t nimages, double *mean) {
    int64_t n = 0, h = 0, w = 0;
    WH_TRY(wh_metric_check(op, kind, a, b, mask, &n));
    WH_TRY(image_dims(op, "a", a, &n, &h, &w));
    if (n != nimages)
        return wh_fail(WH_ERR_ARG, "%s: room for %lld results, the batch has %lld images", op,
                       (long long)nimages, (long long)n);
    if (kind != WH_METRIC_MSE && !(data_range > 0 && isfinite(data_range)))
        return wh_fail(WH_ERR_ARG, "%s: data_range must be a positive number, got %g", op,
                       data_range);

    wh_tensor *ad = NULL, *bd = NULL, *md = NULL;
    wh_status st = wh_to_dtype_raw((wh_tensor *)a, WH_FLOAT64, &ad);
    if (st == WH_OK) st = wh_to_dtype_raw((wh_tensor *)b, WH_FLOAT64, &bd);
    if (st == WH_OK && mask) st = wh_to_dtype_raw((wh_tensor *)mask, WH_FLOAT64, &md);
    if (st != WH_OK) goto done;

    int64_t hw = h * w;
    const double *A = wh_tensor_data(ad), *B = wh_tensor_data(bd);
    const double *M = md ? wh_tensor_data(md) : NULL;
    bool shared = md && wh_tensor_numel(md) == hw && n > 1;

    /* Empty regions first, so the parallel part cannot fail on them. */
    if (M) {
        for (int64_t i = 0; i < n; i++) {
            const double *m = shared ? M : M + i * hw;
            int64_t c = 0;
            for (int64_t p = 0; p < hw && !c; p++) c += m[p] > 0.5;
            if (!c) {
                st = wh_fail(WH_ERR_ARG,
                             "%s: the mask of image %lld (1-based) of %lld is empty "
                             "(no pixel > 0.5), so the region has no %s",
                             op, (long long)(i + 1), (long long)n, wh_metric_name(kind));
                goto done;
            }
        }
    }

    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int64_t i = 0; i < n; i++) {
        const double *x = A + i * hw, *y = B + i * hw;
        const double *m = M ? (shared ? M : M + i * hw) : NULL;
        double v;
        if (kind == WH_METRIC_SSIM) {
            double *buf = malloc(sizeof(double) * (size_t)hw * 8);
            if (!buf) {
                #pragma omp atomic write
                failed = 1;
                per_image[i] = 0;
                continue;
            }
            ssim_map(x, y, h, w, data_range, buf, buf + hw);
            double s = 0;
            int64_t c = 0;
            if (m) {
                for (int64_t p = 0; p < hw; p++)
                    if (m[p] > 0.5) s += buf[p], c++;
            } else {
                for (int64_t yy = SSIM_RADIUS; yy < h - SSIM_RADIUS; yy++)
                    for (int64_t xx = SSIM_RADIUS; xx < w - SSIM_RADIUS; xx++)
                        s += buf[yy * w + xx], c++;
            }
            free(buf);
            v = s / (double)c;
        } else {
            double s = 0;
            int64_t c = 0;
            for (int64_t p = 0; p < hw; p++) {
                if (m && !(m[p] > 0.5)) continue;
                double d = x[p] - y[p];
                s += d * d;
                c++;
            }
            v = s / (double)c;
            if (kind == WH_METRIC_PSNR)
                v = v > 0 ? 10.0 * log10(data_range * data_range / v) : INFINITY;
        }
        per_image[i] = v;
    }
    if (failed) {
        st = wh_fail(WH_ERR_MEMORY, "%s: out of memory for the SSIM maps of %lldx%lld images", op,
                     (long long)h, (long long)w);
        goto done;
    }
    if (mean) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += per_image[i];
        *mean = s / (double)n;
    }
done:
    wh_tensor_clear(&ad);
    wh_tensor_clear(&bd);
    wh_tensor_clear(&md);
    return st;
}
