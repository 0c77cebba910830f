/* Resizing (see image_proc.h): separable area averaging / bilinear
 * interpolation, fitting with background padding, and dpi resampling. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_proc_internal.h"

/* ---- resizing -------------------------------------------------------------------------- */

/* For each output index along one axis, a run of input indices and weights. */
typedef struct {
    int64_t *first; /* [out] */
    int *count;     /* [out] */
    float *weight;  /* [out * maxc] */
    int maxc;
} axis_weights;

static void free_axis(axis_weights *a) { free(a->first), free(a->count), free(a->weight); }

static wh_status make_axis(int64_t in, int64_t out, axis_weights *a) {
    double scale = (double)in / (double)out;
    a->maxc = out < in ? (int)ceil(scale) + 2 : 2; /* +2: the run may straddle two partial pixels */
    a->first = malloc(sizeof *a->first * (size_t)out);
    a->count = malloc(sizeof *a->count * (size_t)out);
    a->weight = calloc((size_t)out * (size_t)a->maxc, sizeof *a->weight);
    if (!a->first || !a->count || !a->weight) {
        free_axis(a);
        return wh_fail(WH_ERR_MEMORY, "image.resize: out of memory");
    }
    for (int64_t i = 0; i < out; i++) {
        float *wt = a->weight + i * a->maxc;
        if (out < in) { /* area: the output pixel covers [i*scale, (i+1)*scale) */
            double lo = i * scale, hi = (i + 1) * scale;
            int64_t j0 = (int64_t)floor(lo), j1 = (int64_t)ceil(hi);
            if (j1 > in) j1 = in;
            a->first[i] = j0;
            a->count[i] = (int)(j1 - j0);
            for (int64_t j = j0; j < j1; j++) {
                double ov = fmin(hi, (double)j + 1) - fmax(lo, (double)j);
                wt[j - j0] = (float)(ov > 0 ? ov / scale : 0);
            }
        } else if (out > in) { /* bilinear, half-pixel centres, clamped */
            double src = (i + 0.5) * scale - 0.5;
            if (src < 0) src = 0;
            int64_t j0 = (int64_t)floor(src);
            if (j0 > in - 1) j0 = in - 1;
            double f = src - (double)j0;
            a->first[i] = j0;
            a->count[i] = j0 + 1 < in ? 2 : 1;
            wt[0] = (float)(a->count[i] == 2 ? 1 - f : 1);
            wt[1] = (float)(a->count[i] == 2 ? f : 0);
        } else {
            a->first[i] = i, a->count[i] = 1, wt[0] = 1;
        }
    }
    return WH_OK;
}

static wh_status resize_kernel(const float *src, int64_t h, int64_t w, float *dst, int64_t oh,
                               int64_t ow) {
    axis_weights ax, ay;
    WH_TRY(make_axis(w, ow, &ax));
    wh_status st = make_axis(h, oh, &ay);
    float *tmp = st == WH_OK ? malloc(sizeof(float) * (size_t)(h * ow)) : NULL;
    if (st == WH_OK && !tmp) st = wh_fail(WH_ERR_MEMORY, "image.resize: out of memory");
    if (st != WH_OK) {
        free_axis(&ax);
        if (ay.first || ay.count || ay.weight) free_axis(&ay);
        return st;
    }
    /* Rows first (width), then columns (height); sums in double. */
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < ow; x++) {
            const float *wt = ax.weight + x * ax.maxc, *s = src + y * w + ax.first[x];
            double acc = 0;
            for (int k = 0; k < ax.count[x]; k++) acc += (double)wt[k] * s[k];
            tmp[y * ow + x] = (float)acc;
        }
    for (int64_t y = 0; y < oh; y++) {
        const float *wt = ay.weight + y * ay.maxc;
        for (int64_t x = 0; x < ow; x++) {
            double acc = 0;
            for (int k = 0; k < ay.count[y]; k++) acc += (double)wt[k] * tmp[(ay.first[y] + k) * ow + x];
            dst[y * ow + x] = (float)acc;
        }
    }
    free(tmp);
    free_axis(&ax);
    free_axis(&ay);
    return WH_OK;
}

wh_status wh_proc_check_size(const char *op, int64_t h, int64_t w) {
    if (h < 1 || w < 1 || h > WH_PROC_MAX_SIDE || w > WH_PROC_MAX_SIDE)
        return wh_fail(WH_ERR_ARG, "%s: output size %lldx%lld is outside 1..%d", op, (long long)h,
                       (long long)w, WH_PROC_MAX_SIDE);
    return WH_OK;
}

wh_status wh_image_resize(const wh_tensor *img, int64_t h, int64_t w, wh_tensor **out) {
    *out = NULL;
    WH_TRY(wh_proc_check_size("image.resize", h, w));
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = wh_proc_new_image(h, w, out);
    if (st == WH_OK) st = resize_kernel(wh_tensor_data(g), g->shape[0], g->shape[1], wh_tensor_data(*out), h, w);
    if (st != WH_OK) wh_tensor_clear(out);
    wh_tensor_release(g);
    return st;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

wh_status wh_proc_border_median(const float *img, int64_t h, int64_t w, double *value) {
    int64_t n = h == 1 || w == 1 ? h * w : 2 * (h + w) - 4, k = 0;
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return wh_fail(WH_ERR_MEMORY, "image.background: out of memory");
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            if (y == 0 || y == h - 1 || x == 0 || x == w - 1) v[k++] = img[y * w + x];
    qsort(v, (size_t)k, sizeof(float), cmp_float);
    *value = v[(k - 1) / 2];
    free(v);
    return WH_OK;
}

wh_status wh_image_background(const wh_tensor *img, double *value) {
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = wh_proc_border_median(wh_tensor_data(g), g->shape[0], g->shape[1], value);
    wh_tensor_release(g);
    return st;
}

wh_status wh_proc_fit(const wh_tensor *g, int64_t oh, int64_t ow, double bg, wh_tensor **out) {
    int64_t h = g->shape[0], w = g->shape[1];
    double s = fmin((double)oh / (double)h, (double)ow / (double)w);
    int64_t nh = (int64_t)llround(h * s), nw = (int64_t)llround(w * s);
    nh = nh < 1 ? 1 : nh > oh ? oh : nh;
    nw = nw < 1 ? 1 : nw > ow ? ow : nw;
    float *inner = malloc(sizeof(float) * (size_t)(nh * nw));
    if (!inner) return wh_fail(WH_ERR_MEMORY, "image.fit: out of memory");
    wh_status st = resize_kernel(wh_tensor_data(g), h, w, inner, nh, nw);
    if (st == WH_OK) st = wh_proc_new_image(oh, ow, out);
    if (st == WH_OK) {
        float *o = wh_tensor_data(*out);
        for (int64_t i = 0; i < oh * ow; i++) o[i] = (float)bg;
        int64_t top = (oh - nh) / 2, left = (ow - nw) / 2;
        for (int64_t y = 0; y < nh; y++) memcpy(o + (top + y) * ow + left, inner + y * nw, sizeof(float) * (size_t)nw);
    }
    free(inner);
    return st;
}

wh_status wh_image_fit(const wh_tensor *img, int64_t h, int64_t w, double background,
                       wh_tensor **out) {
    *out = NULL;
    WH_TRY(wh_proc_check_size("image.fit", h, w));
    if (!isfinite(background) && !(background < 0))
        return wh_fail(WH_ERR_ARG, "image.fit: background must be a finite number");
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = WH_OK;
    if (background < 0) st = wh_proc_border_median(wh_tensor_data(g), g->shape[0], g->shape[1], &background);
    if (st == WH_OK) st = wh_proc_fit(g, h, w, background, out);
    wh_tensor_release(g);
    return st;
}

wh_status wh_image_resample_dpi(const wh_tensor *img, double from_dpi, double to_dpi,
                                wh_tensor **out) {
    *out = NULL;
    if (!(from_dpi > 0 && from_dpi < 1e6) || !(to_dpi > 0 && to_dpi < 1e6))
        return wh_fail(WH_ERR_ARG, "image.resample_dpi: dpi values must be positive, got %g and %g",
                       from_dpi, to_dpi);
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    double s = to_dpi / from_dpi;
    int64_t h = (int64_t)llround(g->shape[0] * s), w = (int64_t)llround(g->shape[1] * s);
    wh_status st = wh_image_resize(g, h < 1 ? 1 : h, w < 1 ? 1 : w, out);
    wh_tensor_release(g);
    return st;
}
