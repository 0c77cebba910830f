/* Realistic damage: the context every kind works in (where the print is,
 * the background grey), random shapes, filters, and the single and batch
 * entry points.  The kinds themselves are in synth_damage_kinds.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth_damage.h"

static const char *const kind_names[WH_DMG_NKINDS] = {
    "obliteration", "central_rotation", "zcut", "erasure", "smudge", "gaussian_noise",
    "salt_pepper", "blur", "low_contrast", "dry", "wet", "partial"};
static const char *const level_names[WH_DMG_NLEVELS] = {"easy", "medium", "hard"};

const char *wh_damage_name(int kind) {
    return kind >= 0 && kind < WH_DMG_NKINDS ? kind_names[kind] : "unknown";
}

int wh_damage_from_name(const char *name) {
    for (int k = 0; name && k < WH_DMG_NKINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

const char *wh_damage_level_name(int level) {
    return level >= 0 && level < WH_DMG_NLEVELS ? level_names[level] : "unknown";
}

int wh_damage_level_from_name(const char *name) {
    for (int l = 0; name && l < WH_DMG_NLEVELS; l++)
        if (strcmp(name, level_names[l]) == 0) return l;
    return -1;
}

/* ---- where the print is ------------------------------------------------------ */

/* Background: the 95th percentile grey (ridges are dark, so that is the
 * paper or the sensor).  Print: blocks whose standard deviation is over a
 * third of the strongest blocks' (ridges alternate; background is flat),
 * summarised by their centroid and extents.  tmp receives block stats. */
static void locate_print(dmg_ctx *c) {
    int h = c->h, w = c->w;
    size_t n = (size_t)h * w;
    /* percentile from a 1024-bin histogram of [0, 1] */
    enum { BINS = 1024 };
    size_t hist[BINS] = {0}, seen = 0;
    for (size_t i = 0; i < n; i++) hist[(int)(synth_clamp(c->in[i], 0, 1) * (BINS - 1))]++;
    int b = 0;
    while (b < BINS - 1 && (seen += hist[b]) < (size_t)(0.95 * n)) b++;
    c->bg = (b + 0.5) / (BINS - 1);

    int bs = (int)fmax(4, round(8 * c->scale));
    int bh = (h + bs - 1) / bs, bw = (w + bs - 1) / bs;
    float *sd = c->tmp;
    float top = 0;
    for (int by = 0; by < bh; by++)
        for (int bx = 0; bx < bw; bx++) {
            double s = 0, s2 = 0;
            int cnt = 0;
            for (int y = by * bs; y < h && y < (by + 1) * bs; y++)
                for (int x = bx * bs; x < w && x < (bx + 1) * bs; x++) {
                    double v = c->in[(size_t)y * w + x];
                    s += v;
                    s2 += v * v;
                    cnt++;
                }
            double var = s2 / cnt - (s / cnt) * (s / cnt);
            sd[by * bw + bx] = (float)sqrt(fmax(var, 0));
            top = fmaxf(top, sd[by * bw + bx]);
        }
    double thr = fmax(0.02, top / 3), sx = 0, sy = 0, sxx = 0, syy = 0, cnt = 0, bgs = 0, bgc = 0;
    for (int by = 0; by < bh; by++)
        for (int bx = 0; bx < bw; bx++) {
            double x = (bx + 0.5) * bs, y = (by + 0.5) * bs, v = sd[by * bw + bx];
            if (v > thr) {
                sx += x;
                sy += y;
                sxx += x * x;
                syy += y * y;
                cnt++;
            } else {
                bgs += v;
                bgc++;
            }
        }
    c->bg_noise = bgc > 0 ? fmin(bgs / bgc, 0.05) : 0.01;
    if (cnt < 4) { /* nothing print-like: use the whole image */
        c->cx = w / 2.0;
        c->cy = h / 2.0;
        c->rx = w / 2.0;
        c->ry = h / 2.0;
        return;
    }
    c->cx = sx / cnt;
    c->cy = sy / cnt;
    /* a uniform spread over [-a, a] has standard deviation a / sqrt(3) */
    c->rx = synth_clamp(sqrt(3 * fmax(sxx / cnt - c->cx * c->cx, 0)), 0.15 * w, 0.5 * w);
    c->ry = synth_clamp(sqrt(3 * fmax(syy / cnt - c->cy * c->cy, 0)), 0.15 * h, 0.5 * h);
}

void dmg_print_presence(dmg_ctx *c, float *dst, float *tmp) {
    /* the mean ink over a (2r+1)^2 box, by running sums along rows then columns */
    int h = c->h, w = c->w, r = (int)fmax(2, round(6 * c->scale));
    for (int y = 0; y < h; y++) {
        double run = 0;
        const float *in = c->in + (size_t)y * w;
        for (int x = -r; x < w; x++) {
            if (x + r < w) run += c->bg > 0 ? synth_clamp((c->bg - in[x + r]) / c->bg, 0, 1) : 0;
            if (x - r - 1 >= 0) run -= c->bg > 0 ? synth_clamp((c->bg - in[x - r - 1]) / c->bg, 0, 1) : 0;
            if (x >= 0) tmp[(size_t)y * w + x] = (float)run;
        }
    }
    for (int x = 0; x < w; x++) {
        double run = 0;
        for (int y = -r; y < h; y++) {
            if (y + r < h) run += tmp[(size_t)(y + r) * w + x];
            if (y - r - 1 >= 0) run -= tmp[(size_t)(y - r - 1) * w + x];
            if (y >= 0) dst[(size_t)y * w + x] = (float)synth_smoothstep(0.08, 0.2, run / ((2.0 * r + 1) * (2.0 * r + 1)));
        }
    }
}

void dmg_point_on_print(dmg_ctx *c, double frac, double *x, double *y) {
    double a = wh_synth_rng_range(c->rng, 0, 2 * M_PI), r = sqrt(wh_synth_rng_uniform(c->rng)) * frac;
    *x = c->cx + r * c->rx * cos(a);
    *y = c->cy + r * c->ry * sin(a);
}

/* ---- shapes ----------------------------------------------------------------------- */

void dmg_blob(dmg_ctx *c, float *weight, double x0, double y0, double radius, double elong,
              double angle, double edge, double strength) {
    double amp[4], ph[4], reach = 1;
    for (int k = 0; k < 4; k++) {
        amp[k] = wh_synth_rng_range(c->rng, 0, 0.25 / (k + 2));
        ph[k] = wh_synth_rng_range(c->rng, 0, 2 * M_PI);
        reach += amp[k];
    }
    double ca = cos(angle), sa = sin(angle), ext = radius * elong * reach + edge;
    int xa = (int)fmax(0, floor(x0 - ext)), xb = (int)fmin(c->w - 1, ceil(x0 + ext));
    int ya = (int)fmax(0, floor(y0 - ext)), yb = (int)fmin(c->h - 1, ceil(y0 + ext));
    for (int y = ya; y <= yb; y++)
        for (int x = xa; x <= xb; x++) {
            double dx = x + 0.5 - x0, dy = y + 0.5 - y0;
            double u = (dx * ca + dy * sa) / elong, v = -dx * sa + dy * ca;
            double d = hypot(u, v), phi = atan2(v, u), r = radius;
            for (int k = 0; k < 4; k++) r += radius * amp[k] * cos((k + 2) * phi + ph[k]);
            double wgt = strength * synth_smoothstep(r + 0.5 * edge, r - 0.5 * edge, d);
            float *o = &weight[(size_t)y * c->w + x];
            if (wgt > *o) *o = (float)wgt;
        }
}

void dmg_stroke(dmg_ctx *c, float *weight, const double *pts, double width, double strength) {
    enum { SEG = 24 };
    double px[SEG + 1], py[SEG + 1];
    double xa = 1e30, xb = -1e30, ya = 1e30, yb = -1e30;
    for (int i = 0; i <= SEG; i++) {
        double t = (double)i / SEG, a = (1 - t) * (1 - t), b = 2 * t * (1 - t), d = t * t;
        px[i] = a * pts[0] + b * pts[2] + d * pts[4];
        py[i] = a * pts[1] + b * pts[3] + d * pts[5];
        xa = fmin(xa, px[i]);
        xb = fmax(xb, px[i]);
        ya = fmin(ya, py[i]);
        yb = fmax(yb, py[i]);
    }
    double half = 0.5 * width + 1;
    int x0 = (int)fmax(0, floor(xa - half)), x1 = (int)fmin(c->w - 1, ceil(xb + half));
    int y0 = (int)fmax(0, floor(ya - half)), y1 = (int)fmin(c->h - 1, ceil(yb + half));
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double qx = x + 0.5, qy = y + 0.5, best = 1e30;
            for (int i = 0; i < SEG; i++) {
                double ex = px[i + 1] - px[i], ey = py[i + 1] - py[i], l2 = ex * ex + ey * ey;
                double t = l2 > 0 ? synth_clamp(((qx - px[i]) * ex + (qy - py[i]) * ey) / l2, 0, 1) : 0;
                double dx = qx - px[i] - t * ex, dy = qy - py[i] - t * ey;
                best = fmin(best, dx * dx + dy * dy);
            }
            double wgt = strength * synth_smoothstep(0.5 * width + 0.75, 0.5 * width - 0.75, sqrt(best));
            float *o = &weight[(size_t)y * c->w + x];
            if (wgt > *o) *o = (float)wgt;
        }
}

/* ---- fields and filters --------------------------------------------------------- */

/* Value noise averaged over two grids, the second turned by a random
 * angle, so level sets do not line up with the axes. */
void dmg_smooth_field(dmg_ctx *c, float *dst, double cell) {
    enum { GMAX = 64 };
    float grid[2][GMAX * GMAX];
    double diag = hypot(c->h, c->w);
    cell = fmax(cell, fmax(diag / (GMAX - 3.0), 1.0));
    int g = (int)(diag / cell) + 3;
    double turn = wh_synth_rng_range(c->rng, 0.3, 1.2);
    double cs[2] = {1, cos(turn)}, sn[2] = {0, sin(turn)};
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < g * g; i++) grid[l][i] = (float)wh_synth_rng_uniform(c->rng);
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            double v = 0;
            for (int l = 0; l < 2; l++) {
                /* grid coordinates about the image centre, then shifted into [0, g) */
                double px = x + 0.5 - 0.5 * c->w, py = y + 0.5 - 0.5 * c->h;
                double gx = (cs[l] * px + sn[l] * py + 0.5 * diag) / cell + 1;
                double gy = (-sn[l] * px + cs[l] * py + 0.5 * diag) / cell + 1;
                int x0 = (int)gx, y0 = (int)gy;
                double fx = synth_smoothstep(0, 1, gx - x0), fy = synth_smoothstep(0, 1, gy - y0);
                const float *r0 = grid[l] + y0 * g + x0, *r1 = r0 + g;
                v += (r0[0] * (1 - fx) + r0[1] * fx) * (1 - fy) + (r1[0] * (1 - fx) + r1[1] * fx) * fy;
            }
            /* the mean of two uniforms clusters at 1/2: stretch it back */
            dst[(size_t)y * c->w + x] = (float)synth_clamp(0.5 + 1.4 * (0.5 * v - 0.5), 0, 1);
        }
}

void dmg_gaussian_blur(const float *src, float *dst, float *tmp, int h, int w, double sigma) {
    enum { RMAX = 48 };
    float k[2 * RMAX + 1];
    int r = (int)fmin(RMAX, ceil(3 * sigma));
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] = (float)(k[i] / sum);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0;
            for (int i = -r; i <= r; i++) {
                int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                s += k[i + r] * src[(size_t)y * w + xx];
            }
            tmp[(size_t)y * w + x] = (float)s;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0;
            for (int i = -r; i <= r; i++) {
                int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                s += k[i + r] * tmp[(size_t)yy * w + x];
            }
            dst[(size_t)y * w + x] = (float)s;
        }
}

void dmg_min_max_filter(const float *src, float *dst, int h, int w, int r, int take_max) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float best = src[(size_t)y * w + x];
            for (int dy = -r; dy <= r; dy++)
                for (int dx = -r; dx <= r; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (dx * dx + dy * dy > r * r || yy < 0 || xx < 0 || yy >= h || xx >= w) continue;
                    float v = src[(size_t)yy * w + xx];
                    best = take_max ? fmaxf(best, v) : fminf(best, v);
                }
            dst[(size_t)y * w + x] = best;
        }
}

/* ---- entry points ------------------------------------------------------------------ */

static void (*const kinds[WH_DMG_NKINDS])(dmg_ctx *) = {
    dmg_obliteration, dmg_central_rotation, dmg_zcut, dmg_erasure, dmg_smudge, dmg_gaussian_noise,
    dmg_salt_pepper, dmg_blur, dmg_low_contrast, dmg_dry, dmg_wet, dmg_partial};

static wh_status check_damage(int h, int w, int kind, int level) {
    if (h < 8 || w < 8 || h > WH_SYNTH_MAX_SIDE || w > WH_SYNTH_MAX_SIDE)
        return wh_fail(WH_ERR_SHAPE, "synth.damage: image %dx%d out of range (each side 8 to %d)", h, w,
                       WH_SYNTH_MAX_SIDE);
    if (kind < 0 || kind >= WH_DMG_NKINDS)
        return wh_fail(WH_ERR_ARG, "synth.damage: unknown kind %d", kind);
    if (level < 0 || level >= WH_DMG_NLEVELS)
        return wh_fail(WH_ERR_ARG, "synth.damage: level %d out of range (0 easy, 1 medium, 2 hard)", level);
    return WH_OK;
}

/* One image with work buffers `work` (4 h w floats). */
static void damage_one(const float *in, int h, int w, int kind, int level, uint64_t seed, float *out,
                       float *mask, float *work) {
    size_t n = (size_t)h * w;
    wh_synth_rng rng;
    /* the level does not enter the stream: a harder level draws the same
     * places and shapes, larger or stronger */
    wh_synth_rng_seed(&rng, wh_synth_mix(seed, 0x5ca77e9ull + (uint64_t)kind));
    dmg_ctx c = {.in = in, .h = h, .w = w, .level = level, .rng = &rng};
    c.scale = synth_clamp(fmin(h, w) / 224.0, 0.3, 4.0);
    c.weight = work;
    c.rep = work + n;
    c.tmp = work + 2 * n;
    c.tmp2 = work + 3 * n;
    locate_print(&c);
    memset(c.weight, 0, n * sizeof(float));
    memcpy(c.rep, in, n * sizeof(float));
    kinds[kind](&c);
    for (size_t i = 0; i < n; i++) {
        float wgt = c.weight[i], v = in[i];
        if (wgt > 0) {
            float d = v + wgt * (c.rep[i] - v);
            out[i] = d < 0 ? 0.f : d > 1 ? 1.f : d;
            mask[i] = 1.f;
        } else {
            out[i] = v;
            mask[i] = 0.f;
        }
    }
}

wh_status wh_synth_damage(const float *in, int h, int w, int kind, int level, uint64_t seed,
                          float *out, float *mask) {
    WH_TRY(check_damage(h, w, kind, level));
    float *work = malloc((size_t)4 * h * w * sizeof(float));
    if (!work) return wh_fail(WH_ERR_MEMORY, "synth.damage: out of memory for a %dx%d image", h, w);
    damage_one(in, h, w, kind, level, seed, out, mask, work);
    free(work);
    return WH_OK;
}

wh_status wh_synth_damage_batch(const float *in, int n, int h, int w, const int *kinds_,
                                const int *levels, const uint64_t *seeds, float *out, float *mask) {
    if (n < 0) return wh_fail(WH_ERR_ARG, "synth.damage: negative batch size %d", n);
    for (int i = 0; i < n; i++) {
        wh_status st = check_damage(h, w, kinds_[i], levels[i]);
        if (st != WH_OK) return st;
    }
    size_t plane = (size_t)h * w;
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *work = malloc(4 * plane * sizeof(float));
        failed |= work == NULL;
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n; i++)
            if (work) damage_one(in + plane * i, h, w, kinds_[i], levels[i], seeds[i], out + plane * i,
                                 mask + plane * i, work);
        free(work);
    }
    if (failed) return wh_fail(WH_ERR_MEMORY, "synth.damage: out of memory for %dx%d work buffers", h, w);
    return WH_OK;
}
