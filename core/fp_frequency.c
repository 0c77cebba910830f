/* Local ridge frequency (Hong, Wan and Jain 1998, 2.4): in every block an
 * oriented window, two blocks long across the ridges and one block along
 * them, is projected onto its across-ridge axis (the "x-signature"), whose
 * peaks are the ridges; the mean distance between consecutive peaks is the
 * period.  Periods outside the plausible range (5..15 px at 500 dpi, scaled
 * by dpi/500) or from flat signatures are invalid; invalid blocks take the
 * mean of their valid neighbours, repeatedly (Hong's interpolation), the
 * block map is smoothed by a 3x3 mean and interpolated bilinearly to pixels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

double fp_min_period(const fp_work *wk) { return 5.0 * wk->scale; }
double fp_max_period(const fp_work *wk) { return 15.0 * wk->scale; }

static float bilinear(const float *a, int h, int w, double x, double y) {
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x > w - 1) x = w - 1;
    if (y > h - 1) y = h - 1;
    int x0 = (int)x, y0 = (int)y;
    int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    double tx = x - x0, ty = y - y0;
    return (float)((1 - ty) * ((1 - tx) * a[(size_t)y0 * w + x0] + tx * a[(size_t)y0 * w + x1]) +
                   ty * ((1 - tx) * a[(size_t)y1 * w + x0] + tx * a[(size_t)y1 * w + x1]));
}

/* The period of the block centred at (cx, cy) with ridge direction theta,
 * or 0 when its x-signature shows no clear, plausible peaks. */
static double block_period(const fp_work *wk, double cx, double cy, double theta, int len,
                           int width, float *sig) {
    double tx = cos(theta), ty = sin(theta); /* along the ridges */
    double nx = -ty, ny = tx;                /* across them */
    for (int k = 0; k < len; k++) {
        double s = 0, u = k - len / 2.0 + 0.5;
        for (int d = 0; d < width; d++) {
            double v = d - width / 2.0 + 0.5;
            s += bilinear(wk->norm, wk->h, wk->w, cx + u * nx + v * tx, cy + u * ny + v * ty);
        }
        sig[k] = (float)(s / width);
    }
    /* peaks of the [1 2 1]-smoothed signature, located to a fraction of a pixel */
    double first = -1, last = -1, lo = 1e30, hi = -1e30;
    int peaks = 0;
    for (int k = 0; k < len; k++) {
        lo = fmin(lo, sig[k]);
        hi = fmax(hi, sig[k]);
    }
    if (hi - lo < 0.5) return 0; /* flat: no ridges here (unit-variance image) */
    for (int k = 2; k < len - 2; k++) {
        double a = sig[k - 2] + 2 * sig[k - 1] + sig[k], b = sig[k - 1] + 2 * sig[k] + sig[k + 1],
               c = sig[k] + 2 * sig[k + 1] + sig[k + 2];
        if (!(b > a && b >= c)) continue;
        double den = a - 2 * b + c, off = den < 0 ? 0.5 * (a - c) / den : 0;
        double pos = k + off;
        if (first < 0) first = pos;
        last = pos;
        peaks++;
    }
    if (peaks < 2) return 0;
    double period = (last - first) / (peaks - 1);
    return period >= fp_min_period(wk) && period <= fp_max_period(wk) ? period : 0;
}

/* Mean of the positive (valid) periods among block (by, bx)'s 3x3
 * neighbourhood, or 0 when none is valid. */
static double neighbour_mean(const double *per, int nby, int nbx, int by, int bx) {
    double s = 0;
    int cnt = 0;
    for (int yy = by - 1; yy <= by + 1; yy++)
        for (int xx = bx - 1; xx <= bx + 1; xx++)
            if (yy >= 0 && xx >= 0 && yy < nby && xx < nbx && per[yy * nbx + xx] > 0) {
                s += per[yy * nbx + xx];
                cnt++;
            }
    return cnt ? s / cnt : 0;
}

wh_status fp_frequency(fp_work *wk) {
    int h = wk->h, w = wk->w, b = wk->p.block;
    int nby = (h + b - 1) / b, nbx = (w + b - 1) / b, nb = nby * nbx;
    int len = 2 * b, width = b;
    double *per = malloc(sizeof(double) * (size_t)nb * 2), *nxt = per ? per + nb : NULL;
    float *sig = malloc(sizeof(float) * (size_t)len);
    if (!per || !sig) {
        free(per);
        free(sig);
        return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory estimating ridge frequency");
    }
    int valid = 0;
    double sum = 0;
    for (int by = 0; by < nby; by++)
        for (int bx = 0; bx < nbx; bx++) {
            int cy = by * b + b / 2 < h ? by * b + b / 2 : h - 1, cx = bx * b + b / 2 < w ? bx * b + b / 2 : w - 1;
            size_t c = (size_t)cy * w + cx;
            double p = wk->mask[c] > 0 ? block_period(wk, cx, cy, wk->orient[c], len, width, sig) : 0;
            per[by * nbx + bx] = p;
            if (p > 0) {
                valid++;
                sum += p;
            }
        }
    /* fill invalid blocks from valid neighbours, ring by ring */
    double fallback = valid ? sum / valid : 9.0 * wk->scale;
    int missing = nb - valid;
    while (missing > 0) {
        int filled = 0;
        memcpy(nxt, per, sizeof(double) * (size_t)nb);
        for (int by = 0; by < nby; by++)
            for (int bx = 0; bx < nbx; bx++) {
                if (per[by * nbx + bx] > 0) continue;
                double m = neighbour_mean(per, nby, nbx, by, bx);
                if (m > 0) {
                    nxt[by * nbx + bx] = m;
                    filled++;
                }
            }
        memcpy(per, nxt, sizeof(double) * (size_t)nb);
        missing -= filled;
        if (!filled) {
            for (int i = 0; i < nb; i++)
                if (!(per[i] > 0)) per[i] = fallback;
            missing = 0;
        }
    }
    /* 3x3 mean of the block map (every block is valid now) */
    for (int by = 0; by < nby; by++)
        for (int bx = 0; bx < nbx; bx++) nxt[by * nbx + bx] = neighbour_mean(per, nby, nbx, by, bx);
    /* bilinear between block centres */
    float *blk = wk->tmp;
    for (int i = 0; i < nb; i++) blk[i] = (float)nxt[i];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double fy = (y + 0.5) / b - 0.5, fx = (x + 0.5) / b - 0.5;
            wk->period[(size_t)y * w + x] = bilinear(blk, nby, nbx, fx, fy);
        }
    free(per);
    free(sig);
    return WH_OK;
}
