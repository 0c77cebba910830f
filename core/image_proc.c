/* Preprocessing kernels (see image_proc.h).  Each public function converts
 * its input to a grey float32 image, runs a plain kernel over float arrays
 * and wraps the result in a new tensor. */
#include "image_proc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIDE 65535

/* ---- grey ------------------------------------------------------------------------------ */

wh_status wh_image_to_grey(const wh_tensor *t, wh_tensor **out) {
    char buf[64];
    *out = NULL;
    if (wh_tensor_device(t).type != WH_CPU)
        return wh_fail(WH_ERR_DEVICE, "image: needs a CPU tensor");
    int64_t c, h, w;
    if (t->ndim == 2) c = 1, h = t->shape[0], w = t->shape[1];
    else if (t->ndim == 3 && t->shape[0] >= 1 && t->shape[0] <= 4)
        c = t->shape[0], h = t->shape[1], w = t->shape[2];
    else
        return wh_fail(WH_ERR_SHAPE, "image: expected an image (H,W) or (C,H,W) with C in 1..4, "
                       "got %s", wh_shape_str(t, buf, sizeof buf));
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return wh_fail(WH_ERR_SHAPE, "image: image size %lldx%lld is outside 1..%d", (long long)h,
                       (long long)w, MAX_SIDE);
    if (t->ndim == 2 && t->dtype == WH_FLOAT32 && wh_tensor_is_contiguous(t)) {
        wh_tensor_retain((wh_tensor *)t);
        *out = (wh_tensor *)t;
        return WH_OK;
    }
    int64_t shape[2] = {h, w};
    WH_TRY(wh_tensor_empty(WH_FLOAT32, 2, shape, NULL, out));
    float *o = wh_tensor_data(*out);
    const char *base = t->storage->data;
    size_t es = wh_dtype_size(t->dtype);
    double scale = t->dtype == WH_UINT8 ? 1.0 / 255.0 : 1.0;
    static const double luma[3] = {0.299, 0.587, 0.114};
    int use = c >= 3 ? 3 : 1; /* grey+alpha and RGBA: alpha dropped */
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double v = 0;
            for (int k = 0; k < use; k++) {
                int64_t off = t->offset + (t->ndim == 3 ? k * t->stride[0] : 0) +
                              y * t->stride[t->ndim - 2] + x * t->stride[t->ndim - 1];
                const char *p = base + (size_t)off * es;
                double s = t->dtype == WH_UINT8     ? *(const uint8_t *)p
                           : t->dtype == WH_FLOAT32 ? *(const float *)p
                                                    : *(const double *)p;
                v += use == 3 ? luma[k] * s : s;
            }
            o[y * w + x] = (float)(v * scale);
        }
    return WH_OK;
}

static wh_status new_image(int64_t h, int64_t w, wh_tensor **out) {
    int64_t shape[2] = {h, w};
    return wh_tensor_empty(WH_FLOAT32, 2, shape, NULL, out);
}

/* ---- segmentation ------------------------------------------------------------------- */

void wh_segment_opts_default(wh_segment_opts *o) {
    o->block = 16;
    o->threshold = 0.1;
    o->margin = 0;
}

static wh_status check_segment(const wh_segment_opts *o) {
    if (o->block < 2 || o->block > 4096)
        return wh_fail(WH_ERR_ARG, "image.foreground: block must be in 2..4096, got %d", o->block);
    if (!(o->threshold >= 0) || !isfinite(o->threshold))
        return wh_fail(WH_ERR_ARG, "image.foreground: threshold must be a finite number >= 0");
    if (o->margin < 0)
        return wh_fail(WH_ERR_ARG, "image.foreground: margin must be >= 0, got %d", o->margin);
    return WH_OK;
}

/* Marks foreground blocks in fg (by rows x bcols) and returns the box in pixels. */
static wh_status segment(const float *img, int64_t h, int64_t w, const wh_segment_opts *o,
                         unsigned char *fg, int64_t brows, int64_t bcols, wh_box *box) {
    int b = o->block;
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < h * w; i++) sum += img[i], sum2 += (double)img[i] * img[i];
    double n = (double)(h * w), mean = sum / n, gvar = sum2 / n - mean * mean;
    for (int64_t by = 0; by < brows; by++)
        for (int64_t bx = 0; bx < bcols; bx++) {
            int64_t y1 = (by + 1) * b < h ? (by + 1) * b : h, x1 = (bx + 1) * b < w ? (bx + 1) * b : w;
            double s = 0, s2 = 0, cnt = 0;
            for (int64_t y = by * b; y < y1; y++)
                for (int64_t x = bx * b; x < x1; x++) s += img[y * w + x], s2 += (double)img[y * w + x] * img[y * w + x], cnt++;
            double m = s / cnt, var = s2 / cnt - m * m;
            /* A tiny floor keeps a flat image (gvar ~ 0) all background. */
            fg[by * bcols + bx] = var > o->threshold * gvar && var > 1e-8;
        }
    /* 8-connected components of foreground blocks (iterative flood fill). */
    int64_t nb = brows * bcols;
    int32_t *label = calloc((size_t)nb, sizeof *label), *stack = malloc((size_t)nb * sizeof *stack);
    int64_t *size = calloc((size_t)nb + 1, sizeof *size);
    if (!label || !stack || !size) {
        free(label), free(stack), free(size);
        return wh_fail(WH_ERR_MEMORY, "image.foreground: out of memory");
    }
    int32_t nlab = 0;
    int64_t largest = 0;
    for (int64_t i = 0; i < nb; i++) {
        if (!fg[i] || label[i]) continue;
        int32_t l = ++nlab;
        int64_t top = 0;
        stack[top++] = (int32_t)i;
        label[i] = l;
        while (top) {
            int64_t k = stack[--top], ky = k / bcols, kx = k % bcols;
            size[l]++;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int64_t yy = ky + dy, xx = kx + dx;
                    if (yy < 0 || yy >= brows || xx < 0 || xx >= bcols) continue;
                    int64_t j = yy * bcols + xx;
                    if (fg[j] && !label[j]) label[j] = l, stack[top++] = (int32_t)j;
                }
        }
        if (size[l] > largest) largest = size[l];
    }
    *box = (wh_box){h, w, 0, 0};
    for (int64_t i = 0; i < nb; i++) {
        if (fg[i] && size[label[i]] * 8 < largest) fg[i] = 0; /* a speck */
        if (!fg[i]) continue;
        int64_t by = i / bcols, bx = i % bcols;
        if (by * b < box->top) box->top = by * b;
        if (bx * b < box->left) box->left = bx * b;
        int64_t y1 = (by + 1) * b < h ? (by + 1) * b : h, x1 = (bx + 1) * b < w ? (bx + 1) * b : w;
        if (y1 > box->bottom) box->bottom = y1;
        if (x1 > box->right) box->right = x1;
    }
    free(label), free(stack), free(size);
    if (box->bottom <= box->top) {
        *box = (wh_box){0, 0, 0, 0};
        return WH_OK;
    }
    box->top = box->top - o->margin < 0 ? 0 : box->top - o->margin;
    box->left = box->left - o->margin < 0 ? 0 : box->left - o->margin;
    box->bottom = box->bottom + o->margin > h ? h : box->bottom + o->margin;
    box->right = box->right + o->margin > w ? w : box->right + o->margin;
    return WH_OK;
}

static wh_status segment_image(const wh_tensor *g, const wh_segment_opts *o, unsigned char **fg,
                               int64_t *brows, int64_t *bcols, wh_box *box) {
    *fg = NULL;
    WH_TRY(check_segment(o));
    int64_t h = g->shape[0], w = g->shape[1];
    *brows = (h + o->block - 1) / o->block, *bcols = (w + o->block - 1) / o->block;
    *fg = malloc((size_t)(*brows * *bcols));
    if (!*fg) return wh_fail(WH_ERR_MEMORY, "image.foreground: out of memory");
    wh_status st = segment(wh_tensor_data(g), h, w, o, *fg, *brows, *bcols, box);
    if (st != WH_OK) free(*fg), *fg = NULL;
    return st;
}

wh_status wh_image_foreground(const wh_tensor *img, const wh_segment_opts *o, wh_tensor **mask,
                              wh_box *box) {
    *mask = NULL;
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    unsigned char *fg;
    int64_t brows, bcols, h = g->shape[0], w = g->shape[1];
    wh_status st = segment_image(g, o, &fg, &brows, &bcols, box);
    if (st == WH_OK) st = new_image(h, w, mask);
    if (st == WH_OK) {
        float *m = wh_tensor_data(*mask);
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++) m[y * w + x] = fg[(y / o->block) * bcols + x / o->block];
    }
    free(fg);
    wh_tensor_release(g);
    return st;
}

wh_status wh_image_crop_box(const wh_tensor *img, const wh_box *box, wh_tensor **out) {
    *out = NULL;
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    int64_t h = g->shape[0], w = g->shape[1];
    int64_t t = box->top < 0 ? 0 : box->top, l = box->left < 0 ? 0 : box->left;
    int64_t b = box->bottom > h ? h : box->bottom, r = box->right > w ? w : box->right;
    wh_status st = WH_OK;
    if (b <= t || r <= l)
        st = wh_fail(WH_ERR_ARG, "image.crop: box rows %lld..%lld, columns %lld..%lld is empty "
                     "inside a %lldx%lld image", (long long)box->top + 1, (long long)box->bottom,
                     (long long)box->left + 1, (long long)box->right, (long long)h, (long long)w);
    if (st == WH_OK) st = new_image(b - t, r - l, out);
    if (st == WH_OK) {
        const float *s = wh_tensor_data(g);
        float *o = wh_tensor_data(*out);
        for (int64_t y = t; y < b; y++) memcpy(o + (y - t) * (r - l), s + y * w + l, sizeof(float) * (size_t)(r - l));
    }
    wh_tensor_release(g);
    return st;
}

wh_status wh_image_crop(const wh_tensor *img, const wh_segment_opts *o, wh_tensor **out,
                        wh_box *box) {
    *out = NULL;
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    unsigned char *fg;
    int64_t brows, bcols;
    wh_status st = segment_image(g, o, &fg, &brows, &bcols, box);
    if (st == WH_OK) {
        free(fg);
        if (box->bottom <= box->top) *box = (wh_box){0, 0, g->shape[0], g->shape[1]};
        st = wh_image_crop_box(g, box, out);
    }
    wh_tensor_release(g);
    return st;
}

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

static wh_status check_out_size(const char *op, int64_t h, int64_t w) {
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return wh_fail(WH_ERR_ARG, "%s: output size %lldx%lld is outside 1..%d", op, (long long)h,
                       (long long)w, MAX_SIDE);
    return WH_OK;
}

wh_status wh_image_resize(const wh_tensor *img, int64_t h, int64_t w, wh_tensor **out) {
    *out = NULL;
    WH_TRY(check_out_size("image.resize", h, w));
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = new_image(h, w, out);
    if (st == WH_OK) st = resize_kernel(wh_tensor_data(g), g->shape[0], g->shape[1], wh_tensor_data(*out), h, w);
    if (st != WH_OK) wh_tensor_clear(out);
    wh_tensor_release(g);
    return st;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static wh_status border_median(const float *img, int64_t h, int64_t w, double *value) {
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
    wh_status st = border_median(wh_tensor_data(g), g->shape[0], g->shape[1], value);
    wh_tensor_release(g);
    return st;
}

static wh_status fit_kernel(const wh_tensor *g, int64_t oh, int64_t ow, double bg, wh_tensor **out) {
    int64_t h = g->shape[0], w = g->shape[1];
    double s = fmin((double)oh / (double)h, (double)ow / (double)w);
    int64_t nh = (int64_t)llround(h * s), nw = (int64_t)llround(w * s);
    nh = nh < 1 ? 1 : nh > oh ? oh : nh;
    nw = nw < 1 ? 1 : nw > ow ? ow : nw;
    float *inner = malloc(sizeof(float) * (size_t)(nh * nw));
    if (!inner) return wh_fail(WH_ERR_MEMORY, "image.fit: out of memory");
    wh_status st = resize_kernel(wh_tensor_data(g), h, w, inner, nh, nw);
    if (st == WH_OK) st = new_image(oh, ow, out);
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
    WH_TRY(check_out_size("image.fit", h, w));
    if (!isfinite(background) && !(background < 0))
        return wh_fail(WH_ERR_ARG, "image.fit: background must be a finite number");
    wh_tensor *g;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = WH_OK;
    if (background < 0) st = border_median(wh_tensor_data(g), g->shape[0], g->shape[1], &background);
    if (st == WH_OK) st = fit_kernel(g, h, w, background, out);
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

static wh_status copy_image(const wh_tensor *g, wh_tensor **out) {
    WH_TRY(new_image(g->shape[0], g->shape[1], out));
    memcpy(wh_tensor_data(*out), wh_tensor_data(g), sizeof(float) * (size_t)wh_tensor_numel(g));
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
        st = copy_image(g, out);
    } else if ((st = new_image(g->shape[0], g->shape[1], out)) == WH_OK) {
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
    wh_status st = new_image(h, w, out);
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

/* ---- the pipeline ------------------------------------------------------------------------ */

void wh_preprocess_opts_default(wh_preprocess_opts *o) {
    memset(o, 0, sizeof *o);
    wh_segment_opts_default(&o->segment);
    wh_clahe_opts_default(&o->clahe);
    o->keep_aspect = true;
}

wh_status wh_preprocess(const wh_tensor *img, const wh_preprocess_opts *o, const wh_box *box,
                        wh_tensor **out, wh_box *box_used) {
    *out = NULL;
    if ((o->out_h == 0) != (o->out_w == 0))
        return wh_fail(WH_ERR_ARG, "preprocess: give both output sides or neither");
    if (o->out_h) WH_TRY(check_out_size("preprocess", o->out_h, o->out_w));
    if ((o->from_dpi > 0) != (o->to_dpi > 0))
        return wh_fail(WH_ERR_ARG, "preprocess: dpi and target_dpi go together");
    wh_tensor *g, *next = NULL;
    WH_TRY(wh_image_to_grey(img, &g));
    wh_status st = WH_OK;
#define STEP(call)                                                                              \
    do {                                                                                        \
        if (st == WH_OK) {                                                                      \
            st = (call);                                                                        \
            if (st == WH_OK) wh_tensor_release(g), g = next, next = NULL;                       \
        }                                                                                       \
    } while (0)
    if (o->from_dpi > 0 && o->from_dpi != o->to_dpi) STEP(wh_image_resample_dpi(g, o->from_dpi, o->to_dpi, &next));
    double bg = 0;
    if (st == WH_OK) st = border_median(wh_tensor_data(g), g->shape[0], g->shape[1], &bg);
    wh_box used = {0, 0, g->shape[0], g->shape[1]};
    if (box) {
        if (box->top < 0 || box->left < 0 || box->bottom > g->shape[0] || box->right > g->shape[1])
            st = wh_fail(WH_ERR_SHAPE, "preprocess: crop box rows %lld..%lld, columns %lld..%lld "
                         "does not fit a %lldx%lld image", (long long)box->top + 1,
                         (long long)box->bottom, (long long)box->left + 1, (long long)box->right,
                         (long long)g->shape[0], (long long)g->shape[1]);
        used = *box;
        STEP(wh_image_crop_box(g, &used, &next));
    } else if (o->crop) {
        STEP(wh_image_crop(g, &o->segment, &next, &used));
    }
    if (o->out_h && (o->out_h != g->shape[0] || o->out_w != g->shape[1])) {
        if (o->keep_aspect) STEP(fit_kernel(g, o->out_h, o->out_w, bg, &next));
        else STEP(wh_image_resize(g, o->out_h, o->out_w, &next));
    }
    if (o->equalize == WH_EQ_HIST) STEP(wh_image_equalize(g, o->clahe.bins, &next));
    else if (o->equalize == WH_EQ_CLAHE) STEP(wh_image_clahe(g, &o->clahe, &next));
#undef STEP
    if (st == WH_OK && o->invert) {
        if (g == img && (st = copy_image(g, &next)) == WH_OK) {
            wh_tensor_release(g);
            g = next, next = NULL;
        }
        if (st == WH_OK) {
            float *p = wh_tensor_data(g);
            for (int64_t i = 0; i < wh_tensor_numel(g); i++) p[i] = 1.0f - p[i];
        }
    }
    if (st != WH_OK) {
        wh_tensor_release(g);
        return st;
    }
    /* Never hand back the caller's own tensor: the result is theirs to modify. */
    if (g == img) {
        st = copy_image(g, out);
        wh_tensor_release(g);
        if (st != WH_OK) return st;
    } else {
        *out = g;
    }
    if (box_used) *box_used = used;
    return WH_OK;
}
