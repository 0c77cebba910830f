/* Normalisation and foreground segmentation (Hong, Wan and Jain 1998, 2.1;
 * Mehtre 1993 for block variance; Bazen and Gerez 2001 for coherence): the
 * image is brought to zero mean and unit variance with ridges positive; a
 * block is foreground when the variance of the image, smoothed over 3x3
 * pixels so that pixel noise does not count, is high enough and its ridge
 * orientation is coherent (noise has high variance but no direction); the
 * block map is cleaned by a morphological
 * closing and opening, only its largest connected part is kept (holes
 * filled), and the pixel mask is the block map interpolated bilinearly.
 * A chamfer distance to the mask's edge (and the image's) tells how far a
 * minutia is from where ridges are cut off. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

static inline float min2(float a, float b) { return a < b ? a : b; }

/* Below this standard deviation (image units, [0, 1]) nothing is a print:
 * a flat or blank image yields an empty mask. */
#define FLAT_STD 0.01
/* Least mean coherence of a foreground block: ridges give 0.5 to 0.95,
 * noise about 0.1. */
#define MIN_COHERENCE 0.3

/* (mean - image) / std into norm, so ridges (dark) are positive; returns
 * the image's standard deviation. */
static double normalise_image(const float *image, int h, int w, float *norm) {
    size_t n = (size_t)h * w;
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += image[i];
    double mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (image[i] - mean) * (image[i] - mean);
    double sd = sqrt(s2 / (double)n);
    double inv = sd > 1e-12 ? 1.0 / sd : 0.0;
    for (size_t i = 0; i < n; i++) norm[i] = (float)((mean - image[i]) * inv);
    return sd;
}

/* One 3x3 binary erosion (erode = 1) or dilation (0) of an nby x nbx map,
 * coordinates clamped at its edge. */
static void morph(unsigned char *m, unsigned char *t, int nby, int nbx, int erode) {
    for (int y = 0; y < nby; y++)
        for (int x = 0; x < nbx; x++) {
            int v = erode;
            for (int yy = y - 1; yy <= y + 1; yy++)
                for (int xx = x - 1; xx <= x + 1; xx++) {
                    int cy = yy < 0 ? 0 : yy >= nby ? nby - 1 : yy, cx = xx < 0 ? 0 : xx >= nbx ? nbx - 1 : xx;
                    int b = m[cy * nbx + cx];
                    v = erode ? v && b : v || b;
                }
            t[y * nbx + x] = (unsigned char)v;
        }
    memcpy(m, t, (size_t)nby * nbx);
}

/* Closing then opening of the block map.  They run on a copy padded by one
 * block that repeats the edge, so a print that runs off the image keeps its
 * edge blocks while background along the image's edge is not swallowed by
 * the closing (with the edge merely clamped, a dilation that reaches the
 * edge can never be eroded back).  pad: two (nby + 2) * (nbx + 2) maps. */
static void clean_blocks(unsigned char *bm, int nby, int nbx, unsigned char *pad) {
    int py = nby + 2, px = nbx + 2;
    unsigned char *tmp = pad + py * px;
    for (int y = 0; y < py; y++)
        for (int x = 0; x < px; x++) {
            int cy = y - 1 < 0 ? 0 : y - 1 >= nby ? nby - 1 : y - 1, cx = x - 1 < 0 ? 0 : x - 1 >= nbx ? nbx - 1 : x - 1;
            pad[y * px + x] = bm[cy * nbx + cx];
        }
    morph(pad, tmp, py, px, 0); /* closing fills gaps in the print */
    morph(pad, tmp, py, px, 1);
    morph(pad, tmp, py, px, 1); /* opening drops specks of background noise */
    morph(pad, tmp, py, px, 0);
    for (int y = 0; y < nby; y++) memcpy(bm + y * nbx, pad + (y + 1) * px + 1, (size_t)nbx);
}

/* Labels 4-connected components of value `val` from a stack flood fill;
 * keeps only the largest (largest = 1) or clears those not touching the
 * border (largest = 0, used to fill holes of the background). */
static void components(unsigned char *m, int nby, int nbx, unsigned char val, int largest,
                       int *label, int *stack) {
    int n = nby * nbx, ncomp = 0, best = -1, best_size = 0;
    for (int i = 0; i < n; i++) label[i] = -1;
    for (int i = 0; i < n; i++) {
        if (m[i] != val || label[i] >= 0) continue;
        int top = 0, size = 0, border = 0;
        stack[top++] = i;
        label[i] = ncomp;
        while (top) {
            int k = stack[--top], y = k / nbx, x = k % nbx;
            size++;
            if (y == 0 || x == 0 || y == nby - 1 || x == nbx - 1) border = 1;
            const int nb[4] = {y > 0 ? k - nbx : -1, y < nby - 1 ? k + nbx : -1, x > 0 ? k - 1 : -1,
                               x < nbx - 1 ? k + 1 : -1};
            for (int j = 0; j < 4; j++)
                if (nb[j] >= 0 && m[nb[j]] == val && label[nb[j]] < 0) {
                    label[nb[j]] = ncomp;
                    stack[top++] = nb[j];
                }
        }
        if (largest && size > best_size) {
            best_size = size;
            best = ncomp;
        }
        if (!largest && !border) /* a hole: fill it */
            for (int k = 0; k < n; k++)
                if (label[k] == ncomp) m[k] = (unsigned char)!val;
        ncomp++;
    }
    if (largest)
        for (int k = 0; k < n; k++)
            if (m[k] == val && label[k] != best) m[k] = (unsigned char)!val;
}

/* Block map -> pixel mask: bilinear interpolation between block centres,
 * thresholded at one half. */
static void upsample(const unsigned char *bm, int nby, int nbx, int b, int h, int w, float *mask) {
    for (int y = 0; y < h; y++) {
        double fy = (y + 0.5) / b - 0.5;
        int y0 = (int)floor(fy);
        double ty = fy - y0;
        int ya = y0 < 0 ? 0 : y0 >= nby ? nby - 1 : y0, yb = y0 + 1 >= nby ? nby - 1 : y0 + 1 < 0 ? 0 : y0 + 1;
        for (int x = 0; x < w; x++) {
            double fx = (x + 0.5) / b - 0.5;
            int x0 = (int)floor(fx);
            double tx = fx - x0;
            int xa = x0 < 0 ? 0 : x0 >= nbx ? nbx - 1 : x0, xb = x0 + 1 >= nbx ? nbx - 1 : x0 + 1 < 0 ? 0 : x0 + 1;
            double v = (1 - ty) * ((1 - tx) * bm[ya * nbx + xa] + tx * bm[ya * nbx + xb]) +
                       ty * ((1 - tx) * bm[yb * nbx + xa] + tx * bm[yb * nbx + xb]);
            mask[(size_t)y * w + x] = v >= 0.5 ? 1.0f : 0.0f;
        }
    }
}

/* Chamfer (3-4) distance of every foreground pixel to the nearest
 * background pixel, the outside of the image counting as background
 * (Borgefors 1986), in pixels. */
static void distance(const float *mask, int h, int w, float *d) {
    const float big = 1e9f;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            if (mask[i] < 0.5f) {
                d[i] = 0;
                continue;
            }
            float v = big;
            float up = y > 0 ? d[i - w] : 0, left = x > 0 ? d[i - 1] : 0;
            float ul = y > 0 && x > 0 ? d[i - w - 1] : 0, ur = y > 0 && x < w - 1 ? d[i - w + 1] : 0;
            v = min2(v, up + 3);
            v = min2(v, left + 3);
            v = min2(v, ul + 4);
            v = min2(v, ur + 4);
            d[i] = v;
        }
    for (int y = h - 1; y >= 0; y--)
        for (int x = w - 1; x >= 0; x--) {
            size_t i = (size_t)y * w + x;
            if (d[i] == 0) continue;
            float dn = y < h - 1 ? d[i + w] : 0, r = x < w - 1 ? d[i + 1] : 0;
            float dr = y < h - 1 && x < w - 1 ? d[i + w + 1] : 0, dl = y < h - 1 && x > 0 ? d[i + w - 1] : 0;
            float v = d[i];
            v = min2(v, dn + 3);
            v = min2(v, r + 3);
            v = min2(v, dr + 4);
            v = min2(v, dl + 4);
            d[i] = v;
        }
    for (size_t i = 0; i < (size_t)h * w; i++) d[i] /= 3.0f;
}

int fp_normalise(fp_work *wk, const float *image) {
    return normalise_image(image, wk->h, wk->w, wk->norm) >= FLAT_STD;
}

int fp_segment(fp_work *wk) {
    int h = wk->h, w = wk->w, b = wk->p.block;
    size_t n = (size_t)h * w;
    memset(wk->mask, 0, n * sizeof(float));
    memset(wk->dist, 0, n * sizeof(float));
    int nby = (h + b - 1) / b, nbx = (w + b - 1) / b, nb = nby * nbx;
    /* the smoothed image in tmp, the block maps after it: bytes, labels, a stack */
    float *smooth = wk->tmp;
    memcpy(smooth, wk->norm, n * sizeof(float));
    if (fp_box_blur(smooth, h, w, 1, wk->tmp + n) != WH_OK) return -1;
    size_t bytes = (size_t)nb + 2 * (size_t)(nby + 2) * (nbx + 2); /* the map and its padded copies */
    unsigned char *bm = (unsigned char *)(wk->tmp + n), *bt = bm + nb;
    int *label = (int *)(wk->tmp + n + (bytes + 3) / 4 + 1), *stack = label + nb;
    int any = 0;
    for (int by = 0; by < nby; by++)
        for (int bx = 0; bx < nbx; bx++) {
            int y1 = by * b + b > h ? h : by * b + b, x1 = bx * b + b > w ? w : bx * b + b;
            double s = 0, s2 = 0, coh = 0;
            int cnt = 0;
            for (int y = by * b; y < y1; y++)
                for (int x = bx * b; x < x1; x++) {
                    double v = smooth[(size_t)y * w + x];
                    s += v;
                    s2 += v * v;
                    coh += wk->coher[(size_t)y * w + x];
                    cnt++;
                }
            double var = s2 / cnt - (s / cnt) * (s / cnt);
            bm[by * nbx + bx] = var > wk->p.variance_threshold && coh / cnt > MIN_COHERENCE;
            any |= bm[by * nbx + bx];
        }
    if (!any) return 0;
    clean_blocks(bm, nby, nbx, bt);
    components(bm, nby, nbx, 1, 1, label, stack);
    components(bm, nby, nbx, 0, 0, label, stack);
    upsample(bm, nby, nbx, b, h, w, wk->mask);
    distance(wk->mask, h, w, wk->dist);
    for (size_t i = 0; i < n; i++)
        if (wk->mask[i] > 0) return 1;
    return 0;
}
