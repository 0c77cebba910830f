/* Orientation field from smoothed gradient tensors (Kass and Witkin 1987;
 * Hong, Wan and Jain 1998, 2.2; Bazen and Gerez 2002 for coherence):
 *
 *   Gxx = sum gx^2, Gyy = sum gy^2, Gxy = sum gx gy   averaged by a box filter
 *   applied twice (about a Gaussian of sigma 7 px at 500 dpi, 0.8 of a
 *   typical 9 px period: enough ridges for a direction, little enough to
 *   follow the curvature near cores),
 *   gradient direction  phi = atan2(2 Gxy, Gxx - Gyy) / 2,
 *   ridge direction     theta = phi + pi/2 (mod pi),
 *   coherence           |(Gxx - Gyy, 2 Gxy)| / (Gxx + Gyy)  in [0, 1].
 *
 * The doubled-angle vectors (cos 2phi, sin 2phi), weighted by coherence so
 * that noisy places follow their reliable neighbours, are then smoothed
 * again over orientation_sigma pixels; this is Hong's low-pass filtering of
 * the continuous vector field.  Angles are in the image frame (y down). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

wh_status fp_box_blur(float *a, int h, int w, int r, float *tmp) {
    if (r <= 0) return WH_OK;
    double *acc = malloc(sizeof(double) * (size_t)(w > h ? w : h) * 2 + sizeof(double));
    if (!acc) return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory smoothing");
    /* rows: prefix sums, tmp = horizontal means */
    for (int y = 0; y < h; y++) {
        const float *row = a + (size_t)y * w;
        acc[0] = 0;
        for (int x = 0; x < w; x++) acc[x + 1] = acc[x] + row[x];
        for (int x = 0; x < w; x++) {
            int lo = x - r < 0 ? 0 : x - r, hi = x + r >= w ? w - 1 : x + r;
            tmp[(size_t)y * w + x] = (float)((acc[hi + 1] - acc[lo]) / (hi - lo + 1));
        }
    }
    /* columns: a running sum over rows [y - r, y + r] per column */
    double *col = acc;
    memset(col, 0, sizeof(double) * (size_t)w);
    for (int y = 0; y < r && y < h; y++)
        for (int x = 0; x < w; x++) col[x] += tmp[(size_t)y * w + x];
    for (int y = 0; y < h; y++) {
        int add = y + r, drop = y - r - 1;
        if (add < h)
            for (int x = 0; x < w; x++) col[x] += tmp[(size_t)add * w + x];
        if (drop >= 0)
            for (int x = 0; x < w; x++) col[x] -= tmp[(size_t)drop * w + x];
        int lo = y - r < 0 ? 0 : y - r, hi = y + r >= h ? h - 1 : y + r;
        double inv = 1.0 / (hi - lo + 1);
        for (int x = 0; x < w; x++) a[(size_t)y * w + x] = (float)(col[x] * inv);
    }
    free(acc);
    return WH_OK;
}

/* Radius of a box filter that, applied twice, has about this sigma: each
 * pass has variance r(r+1)/3. */
static int box_radius(double sigma) {
    double r = (-1 + sqrt(1 + 6 * sigma * sigma)) / 2;
    return r < 1 ? 1 : (int)lround(r);
}

wh_status fp_orientation(fp_work *wk) {
    int h = wk->h, w = wk->w;
    size_t n = (size_t)h * w;
    const float *g = wk->norm;
    /* gxx, gyy, gxy into orient, coher, tmp[0..n) (reused as outputs later) */
    float *gxx = wk->orient, *gyy = wk->coher, *gxy = wk->tmp, *scratch = wk->tmp + n;
    for (int y = 0; y < h; y++) {
        int ym = y > 0 ? y - 1 : y, yp = y < h - 1 ? y + 1 : y;
        for (int x = 0; x < w; x++) {
            int xm = x > 0 ? x - 1 : x, xp = x < w - 1 ? x + 1 : x;
            /* Sobel */
            float gx = (g[(size_t)ym * w + xp] + 2 * g[(size_t)y * w + xp] + g[(size_t)yp * w + xp]) -
                       (g[(size_t)ym * w + xm] + 2 * g[(size_t)y * w + xm] + g[(size_t)yp * w + xm]);
            float gy = (g[(size_t)yp * w + xm] + 2 * g[(size_t)yp * w + x] + g[(size_t)yp * w + xp]) -
                       (g[(size_t)ym * w + xm] + 2 * g[(size_t)ym * w + x] + g[(size_t)ym * w + xp]);
            size_t i = (size_t)y * w + x;
            gxx[i] = gx * gx;
            gyy[i] = gy * gy;
            gxy[i] = gx * gy;
        }
    }
    int r1 = box_radius(0.8 * 9.0 * wk->scale);
    for (int k = 0; k < 2; k++) {
        WH_TRY(fp_box_blur(gxx, h, w, r1, scratch));
        WH_TRY(fp_box_blur(gyy, h, w, r1, scratch));
        WH_TRY(fp_box_blur(gxy, h, w, r1, scratch));
    }
    /* doubled-angle vectors weighted by coherence: u into gxx, v into gxy */
    for (size_t i = 0; i < n; i++) {
        double vx = gxx[i] - gyy[i], vy = 2.0 * gxy[i], s = gxx[i] + gyy[i];
        double mag = sqrt(vx * vx + vy * vy);
        double coh = s > 1e-12 ? mag / s : 0;
        double scale = mag > 1e-12 ? coh / mag : 0;
        gxx[i] = (float)(vx * scale);
        gxy[i] = (float)(vy * scale);
        gyy[i] = (float)coh;
    }
    int r2 = box_radius(wk->p.orientation_sigma);
    for (int k = 0; k < 2; k++) {
        WH_TRY(fp_box_blur(gxx, h, w, r2, scratch));
        WH_TRY(fp_box_blur(gxy, h, w, r2, scratch));
    }
    for (size_t i = 0; i < n; i++) {
        double phi = 0.5 * atan2(gxy[i], gxx[i]); /* gradient direction */
        double theta = phi + M_PI / 2;
        if (theta >= M_PI) theta -= M_PI;
        if (theta < 0) theta += M_PI;
        wk->orient[i] = (float)theta; /* gxx is orient: read above, written last */
    }
    return WH_OK;
}
