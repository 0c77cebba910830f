/* Oriented Gabor enhancement and binarisation (Hong, Wan and Jain 1998,
 * 2.5): each foreground pixel is filtered by the even-symmetric Gabor
 * filter tuned to its ridge direction theta and period T,
 *
 *   g(u, v) = exp(-(u^2 + v^2) / (2 sigma^2)) cos(2 pi u / T),   sigma = gabor_sigma * T,
 *
 * with u across the ridges and v along them.  Filters are precomputed for
 * the directions and periods the image uses, quantised to 16 directions
 * and half-pixel periods, kept only where the envelope exceeds exp(-3)
 * (a disc of 2.45 sigma) and made zero-mean so flat areas give 0.  The
 * response is positive on ridges (the normalised image has ridges
 * positive), so binarisation is its sign, inside the mask. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

#define NDIR 16
#define PERIOD_STEP 0.5

/* A filter as a dense (2r+1) x lp block, rows padded with zero taps to a
 * multiple of 8 (and zero outside its disc), so applying it accumulates
 * whole rows into one vector of partial sums: no per-row reductions, which
 * is what makes it fast. */
typedef struct {
    int r, lp;  /* radius; padded row length */
    float *wt;  /* (2r+1) * lp taps */
} gabor_filter;

static int period_bins(const fp_work *wk) {
    return (int)floor((fp_max_period(wk) - fp_min_period(wk)) / PERIOD_STEP) + 1;
}

static int dir_bin(float theta) {
    int d = (int)lround(theta / M_PI * NDIR);
    return ((d % NDIR) + NDIR) % NDIR;
}

static int period_bin(const fp_work *wk, float period) {
    int np = period_bins(wk);
    int k = (int)lround((period - fp_min_period(wk)) / PERIOD_STEP);
    return k < 0 ? 0 : k >= np ? np - 1 : k;
}

/* The radius of the filters for a period (the disc where the envelope
 * exceeds exp(-3)). */
static int filter_radius(double period, double sigma_frac) {
    return (int)ceil(sqrt(6.0) * sigma_frac * period);
}

/* The filter's taps from 1-D tables: the envelope is ex(x) ex(y) and the
 * carrier cos(a x + b y) = cos(a x) cos(b y) - sin(a x) sin(b y), so only
 * O(r) transcendental calls per filter. */
static wh_status make_filter(gabor_filter *f, double theta, double period, double sigma_frac) {
    double sigma = sigma_frac * period, rad = sqrt(6.0) * sigma;
    int r = filter_radius(period, sigma_frac), side = 2 * r + 1, lp = (side + 7) / 8 * 8;
    f->r = r;
    f->lp = lp;
    f->wt = calloc((size_t)side * lp, sizeof(float));
    double *tab = malloc(sizeof(double) * (size_t)side * 5);
    if (!f->wt || !tab) {
        free(tab);
        return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory building Gabor filters");
    }
    /* u = -sin(theta) x + cos(theta) y: across the ridge (the normal) */
    double a = -sin(theta) * 2 * M_PI / period, b = cos(theta) * 2 * M_PI / period;
    double *ex = tab, *cx = tab + side, *sx = tab + 2 * side, *cy = tab + 3 * side, *sy = tab + 4 * side;
    for (int t = -r; t <= r; t++) {
        ex[t + r] = exp(-(double)t * t / (2 * sigma * sigma));
        cx[t + r] = cos(a * t);
        sx[t + r] = sin(a * t);
        cy[t + r] = cos(b * t);
        sy[t + r] = sin(b * t);
    }
    double mean = 0;
    int n = 0;
    for (int y = -r; y <= r; y++)
        for (int x = -r; x <= r; x++) {
            if ((double)x * x + (double)y * y > rad * rad) continue;
            double wgt = ex[x + r] * ex[y + r] * (cx[x + r] * cy[y + r] - sx[x + r] * sy[y + r]);
            f->wt[(size_t)(y + r) * lp + (x + r)] = (float)wgt;
            mean += wgt;
            n++;
        }
    mean /= n;
    for (int y = -r; y <= r; y++)
        for (int x = -r; x <= r; x++)
            if ((double)x * x + (double)y * y <= rad * rad) f->wt[(size_t)(y + r) * lp + (x + r)] -= (float)mean;
    free(tab);
    return WH_OK;
}

/* Response of filter f at the padded image's pixel c (pw: padded width;
 * the padding reaches lp - r - 1 columns right of c). */
static float apply(const gabor_filter *f, const float *c, int pw) {
    int lp = f->lp, side = 2 * f->r + 1;
    float acc[lp];
    for (int k = 0; k < lp; k++) acc[k] = 0;
    const float *src = c - (ptrdiff_t)f->r * pw - f->r, *wt = f->wt;
    for (int row = 0; row < side; row++, src += pw, wt += lp) {
#pragma omp simd
        for (int k = 0; k < lp; k++) acc[k] += wt[k] * src[k];
    }
    float s = 0;
    for (int k = 0; k < lp; k++) s += acc[k];
    return s;
}

/* The normalised image padded by pad pixels, edges replicated. */
static float *pad_image(const float *img, int h, int w, int pad) {
    int ph = h + 2 * pad, pw = w + 2 * pad;
    float *p = malloc(sizeof(float) * (size_t)ph * pw);
    if (!p) return NULL;
    for (int y = 0; y < ph; y++) {
        int sy = y - pad < 0 ? 0 : y - pad >= h ? h - 1 : y - pad;
        for (int x = 0; x < pw; x++) {
            int sx = x - pad < 0 ? 0 : x - pad >= w ? w - 1 : x - pad;
            p[(size_t)y * pw + x] = img[(size_t)sy * w + sx];
        }
    }
    return p;
}

wh_status fp_enhance(fp_work *wk) {
    int h = wk->h, w = wk->w, np = period_bins(wk), nf = NDIR * np;
    size_t n = (size_t)h * w;
    gabor_filter *bank = calloc((size_t)nf, sizeof *bank);
    unsigned char *need = calloc((size_t)nf, 1);
    float *padded = NULL;
    wh_status st = WH_OK;
    if (!bank || !need) {
        st = wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory building Gabor filters");
        goto done;
    }
    /* the filter index of every pixel, in tmp as ints (-1 outside the mask) */
    int *which = (int *)wk->tmp;
    for (size_t i = 0; i < n; i++) {
        if (wk->mask[i] > 0) {
            which[i] = dir_bin(wk->orient[i]) * np + period_bin(wk, wk->period[i]);
            need[which[i]] = 1;
        } else {
            which[i] = -1;
        }
    }
    for (int k = 0; k < nf && st == WH_OK; k++)
        if (need[k])
            st = make_filter(&bank[k], (k / np) * M_PI / NDIR, fp_min_period(wk) + (k % np) * PERIOD_STEP,
                             wk->p.gabor_sigma);
    if (st != WH_OK) goto done;
    int pad = filter_radius(fp_max_period(wk), wk->p.gabor_sigma) + 8, pw = w + 2 * pad;
    padded = pad_image(wk->norm, h, w, pad);
    if (!padded) {
        st = wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory for Gabor filtering");
        goto done;
    }
#pragma omp parallel for schedule(static) if (h * w >= 65536)
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            int k = which[i];
            float r = k >= 0 ? apply(&bank[k], padded + (size_t)(y + pad) * pw + x + pad, pw) : 0.0f;
            wk->enh[i] = r;
            wk->ridge[i] = r > 0;
        }
done:
    for (int k = 0; bank && k < nf; k++) {
        free(bank[k].wt);
    }
    free(bank);
    free(need);
    free(padded);
    return st;
}
