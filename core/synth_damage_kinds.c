/* The kinds of damage.  Each fills c->weight (where, and how strongly) and
 * c->rep (what the damaged pixels become); see synth_damage.h.  Sizes are
 * in pixels of a 224 px image and scale with the image (c->scale); the
 * three levels draw from ranges that grow from easy to hard. */
#include <math.h>
#include <string.h>

#include "synth_damage.h"

#define PICK(lo0, lo1, lo2, hi0, hi1, hi2) \
    dmg_pick(c, (const double[3]){lo0, lo1, lo2}, (const double[3]){hi0, hi1, hi2})

static size_t npix(const dmg_ctx *c) { return (size_t)c->h * c->w; }

static void fill_weight(dmg_ctx *c, float v) {
    for (size_t i = 0; i < npix(c); i++) c->weight[i] = v;
}

/* Bilinear sample of the input, clamped at the border. */
static float sample_in(const dmg_ctx *c, double x, double y) {
    x = synth_clamp(x - 0.5, 0, c->w - 1);
    y = synth_clamp(y - 0.5, 0, c->h - 1);
    int x0 = (int)x, y0 = (int)y, x1 = x0 + 1 < c->w ? x0 + 1 : x0, y1 = y0 + 1 < c->h ? y0 + 1 : y0;
    double fx = x - x0, fy = y - y0;
    const float *in = c->in;
    return (float)((in[(size_t)y0 * c->w + x0] * (1 - fx) + in[(size_t)y0 * c->w + x1] * fx) * (1 - fy) +
                   (in[(size_t)y1 * c->w + x0] * (1 - fx) + in[(size_t)y1 * c->w + x1] * fx) * fy);
}

/* Ink of a grey level: 0 on the background, 1 on black. */
static double ink_of(const dmg_ctx *c, double v) {
    return c->bg > 0 ? synth_clamp((c->bg - v) / c->bg, 0, 1) : 0;
}

/* SOCOFing "Obl": 1-3 elongated scars; scar tissue is pale and mottled,
 * streaked along its length, with a faint ghost of the ridges under it. */
void dmg_obliteration(dmg_ctx *c) {
    int count = c->level + 1;
    double axis = 0;
    for (int i = 0; i < 3; i++) {
        double x, y;
        dmg_point_on_print(c, 0.6, &x, &y);
        double r = PICK(15, 21, 27, 20, 27, 34) * c->scale, elong = wh_synth_rng_range(c->rng, 1.3, 2.4);
        double angle = wh_synth_rng_range(c->rng, 0, M_PI);
        if (i == 0) axis = angle;
        if (i < count) dmg_blob(c, c->weight, x, y, r / sqrt(elong), elong, angle, 4 * c->scale, 1.0);
    }
    dmg_smooth_field(c, c->tmp, 7 * c->scale);
    double q = wh_synth_rng_range(c->rng, 3, 6) * c->scale, tone = wh_synth_rng_range(c->rng, 0.72, 0.9);
    double ghost = wh_synth_rng_range(c->rng, 0.05, 0.2), nx = -sin(axis), ny = cos(axis);
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            size_t o = (size_t)y * c->w + x;
            if (c->weight[o] <= 0) continue;
            double f = c->tmp[o], across = x * nx + y * ny;
            double streak = 0.5 + 0.5 * cos(2 * M_PI * across / q + 4 * f);
            double v = c->bg * (tone + 0.15 * f - 0.1 * streak) + ghost * (c->in[o] - c->bg);
            c->rep[o] = (float)synth_clamp(v, 0, 1);
        }
}

/* SOCOFing "CR": a disc about the centre of the print turned by an angle;
 * its edge is a hard discontinuity of the ridges. */
void dmg_central_rotation(dmg_ctx *c) {
    double r = fmin(c->rx, c->ry) * PICK(0.35, 0.5, 0.65, 0.45, 0.6, 0.75);
    double a = PICK(15, 35, 70, 30, 65, 150) * M_PI / 180;
    if (wh_synth_rng_uniform(c->rng) < 0.5) a = -a;
    double x0 = c->cx + 0.1 * c->rx * wh_synth_rng_normal(c->rng);
    double y0 = c->cy + 0.1 * c->ry * wh_synth_rng_normal(c->rng);
    double ca = cos(a), sa = sin(a);
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            double dx = x + 0.5 - x0, dy = y + 0.5 - y0;
            if (dx * dx + dy * dy > r * r) continue;
            size_t o = (size_t)y * c->w + x;
            c->weight[o] = 1;
            c->rep[o] = sample_in(c, x0 + ca * dx + sa * dy, y0 - sa * dx + ca * dy);
        }
}

/* SOCOFing "Zcut": a Z-shaped incision (two bars joined by a diagonal);
 * each triangular flap slides along the diagonal, most at the cut and not
 * at all at its uncut side, and the incision itself heals pale. */
void dmg_zcut(dmg_ctx *c) {
    double half = fmin(c->rx, c->ry) * PICK(0.35, 0.45, 0.55, 0.45, 0.55, 0.65);
    double tall = half * wh_synth_rng_range(c->rng, 0.6, 0.9);
    double shift = PICK(4, 7, 11, 7, 11, 16) * c->scale;
    double beta = wh_synth_rng_range(c->rng, -0.5, 0.5);
    double x0 = c->cx + 0.1 * c->rx * wh_synth_rng_normal(c->rng);
    double y0 = c->cy + 0.1 * c->ry * wh_synth_rng_normal(c->rng);
    double cut = wh_synth_rng_range(c->rng, 1.5, 3.0) * c->scale;
    double light = c->bg * wh_synth_rng_range(c->rng, 0.85, 1.0);
    double cb = cos(beta), sb = sin(beta);
    /* the diagonal runs from (half, -tall) to (-half, tall) in the Z's frame */
    double len = hypot(2 * half, 2 * tall), du = -2 * half / len, dv = 2 * tall / len;
    double ddx = cb * du - sb * dv, ddy = sb * du + cb * dv;
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double u = cb * px + sb * py, v = -sb * px + cb * py;
            if (fabs(u) > half || fabs(v) > tall) continue;
            bool upper = v < -tall * u / half;
            double t = upper ? (u + half) / (2 * half) : (half - u) / (2 * half);
            double s = (upper ? 1 : -1) * t * shift;
            size_t o = (size_t)y * c->w + x;
            if (t <= 0) continue;
            c->weight[o] = 1;
            c->rep[o] = sample_in(c, x + 0.5 - s * ddx, y + 0.5 - s * ddy);
        }
    /* the incision: the two bars and the diagonal */
    memset(c->tmp, 0, npix(c) * sizeof(float));
    double corners[4][2] = {{-half, -tall}, {half, -tall}, {-half, tall}, {half, tall}};
    double img[4][2];
    for (int k = 0; k < 4; k++) {
        img[k][0] = x0 + cb * corners[k][0] - sb * corners[k][1];
        img[k][1] = y0 + sb * corners[k][0] + cb * corners[k][1];
    }
    int seg[3][2] = {{0, 1}, {1, 2}, {2, 3}};
    for (int k = 0; k < 3; k++) {
        const double *a = img[seg[k][0]], *b = img[seg[k][1]];
        double pts[6] = {a[0], a[1], 0.5 * (a[0] + b[0]), 0.5 * (a[1] + b[1]), b[0], b[1]};
        dmg_stroke(c, c->tmp, pts, cut, 1.0);
    }
    for (size_t i = 0; i < npix(c); i++)
        if (c->tmp[i] > 0) {
            c->rep[i] = (float)(c->rep[i] * (1 - c->tmp[i]) + light * c->tmp[i]);
            c->weight[i] = 1;
        }
}

/* Wiped blobs and scratches back to the background. */
void dmg_erasure(dmg_ctx *c) {
    int blobs = c->level + 1, scratches = (int[]){1, 3, 6}[c->level];
    for (int i = 0; i < 3; i++) {
        double x, y;
        dmg_point_on_print(c, 0.7, &x, &y);
        double r = PICK(9, 13, 18, 13, 18, 24) * c->scale;
        double elong = wh_synth_rng_range(c->rng, 1, 1.8), angle = wh_synth_rng_range(c->rng, 0, M_PI);
        if (i < blobs) dmg_blob(c, c->weight, x, y, r, elong, angle, 3 * c->scale, 1.0);
    }
    for (int i = 0; i < 6; i++) {
        double pts[6], angle = wh_synth_rng_range(c->rng, 0, 2 * M_PI);
        double len = wh_synth_rng_range(c->rng, 40, 100) * c->scale * (1 + 0.3 * c->level);
        double bend = wh_synth_rng_range(c->rng, -0.3, 0.3) * len;
        dmg_point_on_print(c, 0.8, &pts[0], &pts[1]);
        pts[4] = pts[0] + len * cos(angle);
        pts[5] = pts[1] + len * sin(angle);
        pts[2] = 0.5 * (pts[0] + pts[4]) - bend * sin(angle);
        pts[3] = 0.5 * (pts[1] + pts[5]) + bend * cos(angle);
        double width = PICK(1.5, 2, 2.5, 2.5, 3, 4) * c->scale;
        if (i < scratches) dmg_stroke(c, c->weight, pts, width, 1.0);
    }
    for (size_t i = 0; i < npix(c); i++) c->rep[i] = (float)dmg_background(c);
}

/* Ink smudges: dark blots where the ridges are smeared into each other. */
void dmg_smudge(dmg_ctx *c) {
    int count = c->level + 1;
    for (int i = 0; i < 3; i++) {
        double x, y;
        dmg_point_on_print(c, 0.7, &x, &y);
        double r = PICK(12, 17, 23, 17, 23, 30) * c->scale;
        double elong = wh_synth_rng_range(c->rng, 1, 1.8), angle = wh_synth_rng_range(c->rng, 0, M_PI);
        double strength = wh_synth_rng_range(c->rng, 0.75, 1.0);
        if (i < count) dmg_blob(c, c->weight, x, y, r, elong, angle, 6 * c->scale, strength);
    }
    double dark = wh_synth_rng_range(c->rng, 0.06, 0.25), keep = wh_synth_rng_range(c->rng, 0.25, 0.5);
    dmg_gaussian_blur(c->in, c->tmp, c->tmp2, c->h, c->w, 1.5 * c->scale);
    for (size_t i = 0; i < npix(c); i++) c->rep[i] = (float)(dark + keep * (c->tmp[i] - dark));
}

void dmg_gaussian_noise(dmg_ctx *c) {
    double sigma = PICK(0.04, 0.08, 0.14, 0.06, 0.11, 0.2);
    fill_weight(c, 1);
    for (size_t i = 0; i < npix(c); i++) c->rep[i] = (float)(c->in[i] + sigma * wh_synth_rng_normal(c->rng));
}

/* Salt and pepper: only the hit pixels are damaged. */
void dmg_salt_pepper(dmg_ctx *c) {
    double frac = PICK(0.02, 0.05, 0.1, 0.04, 0.08, 0.16);
    for (size_t i = 0; i < npix(c); i++) {
        double u = wh_synth_rng_uniform(c->rng), salt = wh_synth_rng_uniform(c->rng);
        if (u >= frac) continue;
        c->weight[i] = 1;
        c->rep[i] = salt < 0.5 ? 0.f : 1.f;
    }
}

void dmg_blur(dmg_ctx *c) {
    double sigma = PICK(0.9, 1.5, 2.3, 1.2, 2.0, 3.2) * c->scale;
    fill_weight(c, 1);
    dmg_gaussian_blur(c->in, c->rep, c->tmp, c->h, c->w, sigma);
}

/* Contrast squeezed towards the background grey. */
void dmg_low_contrast(dmg_ctx *c) {
    double keep = PICK(0.45, 0.28, 0.15, 0.6, 0.4, 0.25);
    fill_weight(c, 1);
    for (size_t i = 0; i < npix(c); i++) c->rep[i] = (float)(c->bg + (c->in[i] - c->bg) * keep);
}

/* Patches covering a growing share of the print (all of it when hard),
 * soft at their edges; skin moisture leaves the background alone. */
static void moisture_patches(dmg_ctx *c, double threshold) {
    dmg_print_presence(c, c->weight, c->tmp);
    if (threshold <= 0) return;
    dmg_smooth_field(c, c->tmp, 0.3 * fmin(c->h, c->w));
    for (size_t i = 0; i < npix(c); i++)
        c->weight[i] *= (float)synth_smoothstep(threshold, threshold + 0.2, c->tmp[i]);
}

/* Dry skin: thin, pale ridges broken into dots and dashes. */
void dmg_dry(dmg_ctx *c) {
    moisture_patches(c, PICK(0.5, 0.3, -1, 0.6, 0.4, -1));
    int r = (int)fmax(1, round((c->level == 2 ? 2 : 1) * c->scale));
    dmg_min_max_filter(c->in, c->tmp, c->h, c->w, r, 1); /* lighter = thinner dark ridges */
    dmg_smooth_field(c, c->tmp2, 3 * c->scale);
    double gap = PICK(0.2, 0.32, 0.42, 0.3, 0.42, 0.52), pale = wh_synth_rng_range(c->rng, 0.55, 0.85);
    for (size_t i = 0; i < npix(c); i++) {
        double ink = ink_of(c, c->tmp[i]) * synth_smoothstep(gap, gap + 0.15, c->tmp2[i]) * pale;
        c->rep[i] = (float)(c->bg - c->bg * ink);
    }
}

/* Wet skin: ridges swell, valleys fill, blotches of solid ink. */
void dmg_wet(dmg_ctx *c) {
    moisture_patches(c, PICK(0.6, 0.45, 0.25, 0.7, 0.55, 0.35));
    int r = (int)fmax(1, round((c->level == 2 ? 2 : 1) * c->scale));
    dmg_min_max_filter(c->in, c->tmp, c->h, c->w, r, 0); /* darker = thicker ridges */
    dmg_gaussian_blur(c->tmp, c->tmp, c->tmp2, c->h, c->w, 0.8 * c->scale);
    dmg_smooth_field(c, c->tmp2, 4 * c->scale);
    double blot = PICK(0.75, 0.65, 0.55, 0.8, 0.7, 0.6);
    for (size_t i = 0; i < npix(c); i++) {
        double ink = fmin(1, ink_of(c, c->tmp[i]) * 1.25 + 0.1);
        ink = fmax(ink, synth_smoothstep(blot, blot + 0.1, c->tmp2[i]));
        c->rep[i] = (float)(c->bg - c->bg * 0.92 * ink);
    }
}

/* A partial print: the finger touched with only part of its surface; a
 * wavy line cuts off a share of the print, beyond it only background. */
void dmg_partial(dmg_ctx *c) {
    double frac = PICK(0.12, 0.25, 0.4, 0.18, 0.32, 0.5);
    double phi = wh_synth_rng_range(c->rng, 0, 2 * M_PI), nx = cos(phi), ny = sin(phi);
    /* the cut position: quantile of the projections of a grid over the
     * print's ellipse */
    enum { G = 40 };
    double proj[G * G];
    int m = 0;
    for (int i = 0; i < G; i++)
        for (int j = 0; j < G; j++) {
            double u = (i + 0.5) / G * 2 - 1, v = (j + 0.5) / G * 2 - 1;
            if (u * u + v * v > 1) continue;
            proj[m++] = (c->cx + u * c->rx) * nx + (c->cy + v * c->ry) * ny;
        }
    /* partial selection sort is enough for 1,300 values */
    int want = (int)((1 - frac) * (m - 1));
    for (int i = 0; i <= want; i++)
        for (int j = i + 1; j < m; j++)
            if (proj[j] < proj[i]) {
                double t = proj[i];
                proj[i] = proj[j];
                proj[j] = t;
            }
    double cut = proj[want], amp = wh_synth_rng_range(c->rng, 2, 6) * c->scale;
    double wave = wh_synth_rng_range(c->rng, 40, 90) * c->scale, ph = wh_synth_rng_range(c->rng, 0, 2 * M_PI);
    double edge = 2 * c->scale;
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            double along = -(x + 0.5) * ny + (y + 0.5) * nx, across = (x + 0.5) * nx + (y + 0.5) * ny;
            double t = cut + amp * sin(2 * M_PI * along / wave + ph);
            size_t o = (size_t)y * c->w + x;
            c->weight[o] = (float)synth_smoothstep(t - edge, t + edge, across);
            if (c->weight[o] > 0) c->rep[o] = (float)dmg_background(c);
        }
}
