/* Preprocessing (see image_proc.h): grey conversion, foreground
 * segmentation and cropping, and the pipeline of whorl.data.  Resizing is in
 * image_resize.c, contrast in image_contrast.c.  Each public function
 * converts its input to a grey float32 image, runs a plain kernel over float
 * arrays and wraps the result in a new tensor. */
#include "image_proc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_proc_internal.h"

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
    if (h < 1 || w < 1 || h > WH_PROC_MAX_SIDE || w > WH_PROC_MAX_SIDE)
        return wh_fail(WH_ERR_SHAPE, "image: image size %lldx%lld is outside 1..%d", (long long)h,
                       (long long)w, WH_PROC_MAX_SIDE);
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

wh_status wh_proc_new_image(int64_t h, int64_t w, wh_tensor **out) {
    int64_t shape[2] = {h, w};
    return wh_tensor_empty(WH_FLOAT32, 2, shape, NULL, out);
}

wh_status wh_proc_copy(const wh_tensor *g, wh_tensor **out) {
    WH_TRY(wh_proc_new_image(g->shape[0], g->shape[1], out));
    memcpy(wh_tensor_data(*out), wh_tensor_data(g), sizeof(float) * (size_t)wh_tensor_numel(g));
    return WH_OK;
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
    if (st == WH_OK) st = wh_proc_new_image(h, w, mask);
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
    if (st == WH_OK) st = wh_proc_new_image(b - t, r - l, out);
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
    if (o->out_h) WH_TRY(wh_proc_check_size("preprocess", o->out_h, o->out_w));
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
    if (st == WH_OK) st = wh_proc_border_median(wh_tensor_data(g), g->shape[0], g->shape[1], &bg);
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
        if (o->keep_aspect) STEP(wh_proc_fit(g, o->out_h, o->out_w, bg, &next));
        else STEP(wh_image_resize(g, o->out_h, o->out_w, &next));
    }
    if (o->equalize == WH_EQ_HIST) STEP(wh_image_equalize(g, o->clahe.bins, &next));
    else if (o->equalize == WH_EQ_CLAHE) STEP(wh_image_clahe(g, &o->clahe, &next));
#undef STEP
    if (st == WH_OK && o->invert) {
        if (g == img && (st = wh_proc_copy(g, &next)) == WH_OK) {
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
        st = wh_proc_copy(g, out);
        wh_tensor_release(g);
        if (st != WH_OK) return st;
    } else {
        *out = g;
    }
    if (box_used) *box_used = used;
    return WH_OK;
}
