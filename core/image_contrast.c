/* Contrast normalisation (see image_proc.h): histogram equalisation and
 * CLAHE, both over bins of [0,1]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_proc_internal.h"

/* ---- contrast ------------------------------------------------------------------------------ */

static inline int bin_of(float v, int bins) {
    int k = (int)floorf(v * (float)bins);
    return k < 0 ? 0 : k >= bins ? bins - 1 : k;
}

static wh_status check_bins(const char *op, int bins) {
    if (bins < 2 || bins > 65536)
        return wh_fail(WH_ERR_ARG, "%s: bins must be in 2..65536, got %d", op, bins);
    return WH_OK;
}

static wh_status equalize_kernel(const wh_tensor *g, int bins, wh_tensor **out) {
    int64_t n = wh_tensor_numel(g);
    const float *s = wh_tensor_data(g);
    int64_t *cdf = calloc((size_t)bins, sizeof *cdf);
    if (!cdf) return wh_fail(WH_ERR_MEMORY, "image.equalize: out of memory");
    for (int64_t i = 0; i < n; i++) cdf[bin_of(s[i], bins)]++;
    int64_t first = 0;
    for (int k = 0; k < bins; k++) {
        if (!first && cdf[k]) first = cdf[k];
        if (k) cdf[k] += cdf[k - 1];
    }
    wh_status st = WH_OK;
    if (first == n) {
        st = wh_proc_copy(g, out);
    } else if ((st = wh_proc_new_image(g->shape[0], g->shape[1], out)) == WH_OK) {
        float *o = wh_tensor_data(*out);
        double scale = 1.0 / (double)(n - first);
        for (int64_t i = 0; i < n; i++) o[i] = (float)((double)(cdf[bin_of(s[i], bins)] - first) * scale);
    }
    free(cdf);
    return st;
}

wh_status wh_image_equalize(const wh_tensor *img, int bins, wh_tensor **out) {
    *out = NULL;
    WH_TRY(check_bins("image.equalize", bins));
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = equalize_kernel(g, bins, out);
    wh_tensor_release(g);
    return st;
}

void wh_clahe_opts_default(wh_clahe_opts *o) {
    o->tiles_y = o->tiles_x = 8;
    o->clip = 2.0;
    o->bins = 256;
}

static inline int64_t reflect101(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

static wh_status clahe_kernel(const wh_tensor *g, const wh_clahe_opts *o, wh_tensor **out) {
    int64_t h = g->shape[0], w = g->shape[1];
    int ty = o->tiles_y, tx = o->tiles_x, bins = o->bins;
    int64_t th = (h + ty - 1) / ty, tw = (w + tx - 1) / tx, area = th * tw;
    const float *s = wh_tensor_data(g);
    int64_t limit = 0;
    if (o->clip > 0) {
        limit = (int64_t)(o->clip * (double)area / bins);
        if (limit < 1) limit = 1;
    }
    float *lut = malloc(sizeof(float) * (size_t)ty * (size_t)tx * (size_t)bins);
    int64_t *hist = malloc(sizeof(int64_t) * (size_t)bins);
    if (!lut || !hist) {
        free(lut), free(hist);
        return wh_fail(WH_ERR_MEMORY, "image.clahe: out of memory");
    }
    for (int i = 0; i < ty; i++)
        for (int j = 0; j < tx; j++) {
            memset(hist, 0, sizeof(int64_t) * (size_t)bins);
            for (int64_t y = i * th; y < (i + 1) * th; y++)
                for (int64_t x = j * tw; x < (j + 1) * tw; x++)
                    hist[bin_of(s[reflect101(y, h) * w + reflect101(x, w)], bins)]++;
            if (limit > 0) {
                int64_t excess = 0;
                for (int k = 0; k < bins; k++)
                    if (hist[k] > limit) excess += hist[k] - limit, hist[k] = limit;
                int64_t batch = excess / bins, residual = excess - batch * bins;
                for (int k = 0; k < bins; k++) hist[k] += batch;
                if (residual > 0) {
                    int64_t step = bins / residual > 1 ? bins / residual : 1;
                    for (int64_t k = 0; k < bins && residual > 0; k += step, residual--) hist[k]++;
                }
            }
            float *l = lut + ((size_t)i * tx + j) * (size_t)bins;
            int64_t sum = 0;
            for (int k = 0; k < bins; k++) sum += hist[k], l[k] = (float)((double)sum / (double)area);
        }
    free(hist);
    wh_status st = wh_proc_new_image(h, w, out);
    if (st == WH_OK) {
        float *d = wh_tensor_data(*out);
        for (int64_t y = 0; y < h; y++) {
            double tyf = (double)y / (double)th - 0.5;
            int64_t y1 = (int64_t)floor(tyf), y2 = y1 + 1;
            double ya = tyf - (double)y1;
            y1 = y1 < 0 ? 0 : y1;
            y2 = y2 > ty - 1 ? ty - 1 : y2;
            for (int64_t x = 0; x < w; x++) {
                double txf = (double)x / (double)tw - 0.5;
                int64_t x1 = (int64_t)floor(txf), x2 = x1 + 1;
                double xa = txf - (double)x1;
                x1 = x1 < 0 ? 0 : x1;
                x2 = x2 > tx - 1 ? tx - 1 : x2;
                int k = bin_of(s[y * w + x], bins);
#define LUT(a, b) lut[((size_t)(a) * tx + (size_t)(b)) * (size_t)bins + (size_t)k]
                double v = (LUT(y1, x1) * (1 - xa) + LUT(y1, x2) * xa) * (1 - ya) +
                           (LUT(y2, x1) * (1 - xa) + LUT(y2, x2) * xa) * ya;
#undef LUT
                d[y * w + x] = (float)v;
            }
        }
    }
    free(lut);
    return st;
}

wh_status wh_image_clahe(const wh_tensor *img, const wh_clahe_opts *o, wh_tensor **out) {
    *out = NULL;
    WH_TRY(check_bins("image.clahe", o->bins));
    if (o->tiles_y < 1 || o->tiles_x < 1 || o->tiles_y > 256 || o->tiles_x > 256)
        return wh_fail(WH_ERR_ARG, "image.clahe: tiles must be in 1..256, got %dx%d", o->tiles_y,
                       o->tiles_x);
    if (!(o->clip >= 0) || !isfinite(o->clip))
        return wh_fail(WH_ERR_ARG, "image.clahe: clip must be a finite number >= 0 (0: no limit)");
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = WH_OK;
    if (g->shape[0] < o->tiles_y || g->shape[1] < o->tiles_x)
        st = wh_fail(WH_ERR_ARG, "image.clahe: a %lldx%lld image cannot hold %dx%d tiles",
                     (long long)g->shape[0], (long long)g->shape[1], o->tiles_y, o->tiles_x);
    else
        st = clahe_kernel(g, o, out);
    wh_tensor_release(g);
    return st;
}
