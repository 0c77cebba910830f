/* One impression of a master finger (SFinGe step 5): where the finger
 * touched the sensor, how hard, how dry the skin was, and the sensor's
 * background and noise.
 *
 * Geometry is a backward map from output pixels to master coordinates: the
 * inverse of a rigid motion (rotation about the finger centre, then a
 * displacement), followed by a plastic distortion in the form of Cappelli,
 * Maio & Maltoni (2001): inside an elliptical contact region the skin does
 * not move; outside it, points follow a rigid transform T, braked smoothly
 * with the distance d from the region,
 *     s = v + (T(v) - v) brake(d),  brake(d) = smoothstep(0, k, d)
 * (a cubic ramp where the paper has its own smooth one). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

typedef struct {
    double cx, cy;                 /* centre of the rigid rotation */
    double cosr, sinr, dx, dy;     /* rigid motion master -> output */
    double qx, qy, ra, rb;         /* contact ellipse (master coordinates) */
    double cosp, sinp, ex, ey, k;  /* distortion transform about q, brake distance */
} warp;

/* Output pixel (ox, oy) -> master coordinates. */
static void warp_apply(const warp *w, double ox, double oy, double *sx, double *sy) {
    double ux = ox - w->dx - w->cx, uy = oy - w->dy - w->cy;
    double vx = w->cx + w->cosr * ux + w->sinr * uy, vy = w->cy - w->sinr * ux + w->cosr * uy;
    double ex = (vx - w->qx) / w->ra, ey = (vy - w->qy) / w->rb;
    double d = (sqrt(ex * ex + ey * ey) - 1.0) * fmin(w->ra, w->rb);
    double brake = synth_smoothstep(0, w->k, d);
    double tx = w->qx + w->cosp * (vx - w->qx) - w->sinp * (vy - w->qy) + w->ex;
    double ty = w->qy + w->sinp * (vx - w->qx) + w->cosp * (vy - w->qy) + w->ey;
    *sx = vx + (tx - vx) * brake;
    *sy = vy + (ty - vy) * brake;
}

/* J = d(master)/d(output) at (ox, oy), by central differences. */
static void warp_jacobian(const warp *w, double ox, double oy, double j[4]) {
    double ax, ay, bx, by, cx, cy, dx, dy;
    warp_apply(w, ox + 0.5, oy, &ax, &ay);
    warp_apply(w, ox - 0.5, oy, &bx, &by);
    warp_apply(w, ox, oy + 0.5, &cx, &cy);
    warp_apply(w, ox, oy - 0.5, &dx, &dy);
    j[0] = ax - bx;
    j[1] = cx - dx;
    j[2] = ay - by;
    j[3] = cy - dy;
}

/* Master point -> output pixel: Newton's method on warp_apply, started
 * from the rigid motion alone. */
static void warp_invert(const warp *w, double sx, double sy, double *ox, double *oy) {
    double ux = sx - w->cx, uy = sy - w->cy;
    double x = w->cx + w->cosr * ux - w->sinr * uy + w->dx, y = w->cy + w->sinr * ux + w->cosr * uy + w->dy;
    for (int it = 0; it < 20; it++) {
        double fx, fy, j[4];
        warp_apply(w, x, y, &fx, &fy);
        double rx = sx - fx, ry = sy - fy;
        if (rx * rx + ry * ry < 1e-8) break;
        warp_jacobian(w, x, y, j);
        double det = j[0] * j[3] - j[1] * j[2];
        if (fabs(det) < 1e-9) break;
        x += (j[3] * rx - j[1] * ry) / det;
        y += (-j[2] * rx + j[0] * ry) / det;
    }
    *ox = x;
    *oy = y;
}

/* A master direction at output pixel (ox, oy): the tangent maps by J^-1. */
static double warp_angle(const warp *w, double ox, double oy, double angle) {
    double j[4];
    warp_jacobian(w, ox, oy, j);
    double vx = cos(angle), vy = sin(angle);
    return atan2(-j[2] * vx + j[0] * vy, j[3] * vx - j[1] * vy); /* det > 0 dropped */
}

/* ---- smooth random fields -------------------------------------------------------- */

/* Value noise: random values on a grid of `cell` pixels, interpolated with
 * smoothstep weights; values in [0, 1]. */
typedef struct {
    int gw, gh;
    double cell;
    float *v;
} value_noise;

static wh_status noise_init(value_noise *n, int h, int w, double cell, wh_synth_rng *rng) {
    n->cell = fmax(cell, 1.0);
    n->gw = (int)(w / n->cell) + 3;
    n->gh = (int)(h / n->cell) + 3;
    n->v = malloc((size_t)n->gw * n->gh * sizeof(float));
    if (!n->v) return wh_fail(WH_ERR_MEMORY, "synth: out of memory for a noise field");
    for (int i = 0; i < n->gw * n->gh; i++) n->v[i] = (float)wh_synth_rng_uniform(rng);
    return WH_OK;
}

static double noise_at(const value_noise *n, double x, double y) {
    double gx = synth_clamp(x / n->cell + 1, 0, n->gw - 1.001), gy = synth_clamp(y / n->cell + 1, 0, n->gh - 1.001);
    int x0 = (int)gx, y0 = (int)gy;
    double fx = synth_smoothstep(0, 1, gx - x0), fy = synth_smoothstep(0, 1, gy - y0);
    const float *r0 = n->v + (size_t)y0 * n->gw + x0, *r1 = r0 + n->gw;
    return (r0[0] * (1 - fx) + r0[1] * fx) * (1 - fy) + (r1[0] * (1 - fx) + r1[1] * fx) * fy;
}

/* ---- rendering ---------------------------------------------------------------------- */

typedef struct {
    double pressure;   /* -1 light .. +1 heavy: ridge thickness, contact area */
    double dryness;    /* 0 .. 1: broken ridges */
    double contact;    /* silhouette radius where the contact ends */
    double background, ridge; /* grey levels */
    double noise, blur;
} look;

static void draw_warp(const synth_master *m, wh_synth_rng *rng, warp *w) {
    const synth_silhouette *s = &m->sil;
    double a = s->half_width;
    double rot = synth_clamp(wh_synth_rng_normal(rng) * 6.0, -15, 15) * M_PI / 180;
    w->cx = s->cx;
    w->cy = s->top + 0.5 * s->visible;
    w->cosr = cos(rot);
    w->sinr = sin(rot);
    w->dx = synth_clamp(wh_synth_rng_normal(rng) * 0.03, -0.07, 0.07) * m->ow;
    w->dy = synth_clamp(wh_synth_rng_normal(rng) * 0.03, -0.07, 0.07) * m->oh;
    w->qx = s->cx + 0.1 * a * wh_synth_rng_normal(rng);
    w->qy = s->top + 0.45 * s->visible + 0.1 * a * wh_synth_rng_normal(rng);
    w->ra = a * wh_synth_rng_range(rng, 0.35, 0.55);
    w->rb = w->ra * wh_synth_rng_range(rng, 1.1, 1.4);
    double phi = synth_clamp(wh_synth_rng_normal(rng) * 3.0, -8, 8) * M_PI / 180;
    w->cosp = cos(phi);
    w->sinp = sin(phi);
    w->ex = 0.03 * a * wh_synth_rng_normal(rng);
    w->ey = 0.03 * a * wh_synth_rng_normal(rng);
    w->k = a * wh_synth_rng_range(rng, 0.4, 0.8);
}

static void draw_look(wh_synth_rng *rng, look *l) {
    l->pressure = wh_synth_rng_range(rng, -1, 1);
    double d = wh_synth_rng_uniform(rng);
    l->dryness = d * d;
    l->contact = wh_synth_rng_range(rng, 0.9, 1.0) + 0.03 * l->pressure;
    l->background = wh_synth_rng_range(rng, 0.82, 0.97);
    l->ridge = wh_synth_rng_range(rng, 0.04, 0.3);
    l->noise = wh_synth_rng_range(rng, 0.005, 0.03);
    l->blur = wh_synth_rng_range(rng, 0.1, 0.7);
}

/* Grey level of output pixel (x, y) before blur and sensor noise. */
static float render_pixel(const synth_master *m, const warp *w, const look *l,
                          const value_noise *dry, const value_noise *slow, int x, int y) {
    double sx, sy;
    warp_apply(w, x + 0.5 + m->ox, y + 0.5 + m->oy, &sx, &sy);
    double r = synth_silhouette_radius(&m->sil, sx, sy);
    double ramp = fmax(1.5, 0.5 * m->period) / m->sil.half_width;
    /* fading out within two pixels of the canvas edge, in case an extreme
     * motion reaches beyond the margin */
    double edge = fmin(fmin(sx, m->w - sx), fmin(sy, m->h - sy));
    double contact = synth_smoothstep(l->contact, l->contact - ramp, r) * synth_smoothstep(0, 2, edge);
    double bg = l->background + 0.04 * (noise_at(slow, x, y) - 0.5);
    if (contact <= 0) return (float)bg;
    double ridge = synth_sample(m->ridges, m->h, m->w, sx - 0.5, sy - 0.5, 0.f);
    /* thin ridges where the finger presses less: light touch, and the rim */
    double t = -0.3 * l->pressure + 0.35 * synth_smoothstep(l->contact - 0.3, l->contact, r);
    double dn = noise_at(dry, sx, sy);
    ridge -= l->dryness * 2.5 * fmax(0.0, dn - 0.45);
    double ink = synth_smoothstep(t - 0.3, t + 0.3, ridge);
    double strength = contact * (0.75 + 0.25 * noise_at(slow, sy, sx));
    return (float)(bg - (bg - l->ridge) * ink * strength);
}

static void impression_fields(const synth_master *m, const warp *w, const look *l,
                              const wh_fp_fields *f) {
    int h = m->h, wd = m->w;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < m->oh; y++)
        for (int x = 0; x < m->ow; x++) {
            double sx, sy, j[4], px = x + 0.5 + m->ox, py = y + 0.5 + m->oy;
            size_t o = (size_t)y * m->ow + x;
            warp_apply(w, px, py, &sx, &sy);
            int nx = (int)synth_clamp(floor(sx), 0, wd - 1), ny = (int)synth_clamp(floor(sy), 0, h - 1);
            if (f->orientation) {
                double a = warp_angle(w, px, py, m->orientation[(size_t)ny * wd + nx]);
                a = fmod(a, M_PI);
                f->orientation[o] = (float)(a < 0 ? a + M_PI : a >= M_PI ? 0 : a);
            }
            if (f->period) {
                warp_jacobian(w, px, py, j);
                double scale = sqrt(fabs(j[0] * j[3] - j[1] * j[2]));
                f->period[o] = (float)(synth_sample(m->period_map, h, wd, sx - 0.5, sy - 0.5,
                                                    m->period_map[(size_t)ny * wd + nx]) / scale);
            }
            if (f->mask) {
                double r = synth_silhouette_radius(&m->sil, sx, sy);
                double ramp = fmax(1.5, 0.5 * m->period) / m->sil.half_width;
                f->mask[o] = (float)synth_smoothstep(l->contact, l->contact - ramp, r);
            }
        }
}

/* Singular points and minutiae moved into output coordinates; minutiae
 * outside the image or the contact area are dropped. */
static wh_status impression_points(const synth_master *m, const warp *w, const look *l,
                                   wh_fp_info *info) {
    info->nsingular = m->nsingular;
    for (int k = 0; k < m->nsingular; k++) {
        info->singular[k] = m->singular[k];
        warp_invert(w, m->singular[k].x, m->singular[k].y, &info->singular[k].x, &info->singular[k].y);
        info->singular[k].x -= m->ox;
        info->singular[k].y -= m->oy;
    }
    info->nminutiae = 0;
    info->minutiae = NULL;
    if (m->nminutiae == 0) return WH_OK;
    info->minutiae = malloc(m->nminutiae * sizeof *info->minutiae);
    if (!info->minutiae) return wh_fail(WH_ERR_MEMORY, "synth: out of memory for minutiae");
    double inner = l->contact - 1.2 * m->period / m->sil.half_width;
    for (int k = 0; k < m->nminutiae; k++) {
        const wh_fp_minutia *src = &m->minutiae[k];
        if (synth_silhouette_radius(&m->sil, src->x, src->y) > inner) continue;
        wh_fp_minutia *d = &info->minutiae[info->nminutiae];
        *d = *src;
        double ox, oy;
        warp_invert(w, src->x, src->y, &ox, &oy);
        d->x = ox - m->ox;
        d->y = oy - m->oy;
        if (d->x < 0 || d->y < 0 || d->x >= m->ow || d->y >= m->oh) continue;
        d->angle = warp_angle(w, ox, oy, src->angle);
        if (src->kind == 3) d->angle = fmod(d->angle + 2 * M_PI, M_PI);
        info->nminutiae++;
    }
    return WH_OK;
}

wh_status synth_render_impression(const synth_master *m, const wh_synth_params *p, float *image,
                                  wh_fp_info *info, const wh_fp_fields *fields) {
    wh_synth_rng rng;
    wh_synth_rng_seed(&rng, wh_synth_mix(wh_synth_mix(p->seed, (uint64_t)p->finger) ^ 0x1f2e3d4c5b6a7988ull,
                                         (uint64_t)p->impression));
    warp w;
    look l;
    draw_warp(m, &rng, &w);
    draw_look(&rng, &l);
    uint64_t noise_seed = wh_synth_rng_next(&rng);
    value_noise dry = {0}, slow = {0};
    wh_status st = noise_init(&dry, m->h, m->w, 0.7 * m->period, &rng);
    if (st == WH_OK) st = noise_init(&slow, m->h, m->w, 0.3 * fmax(m->h, m->w), &rng);
    float *raw = st == WH_OK ? malloc((size_t)m->oh * m->ow * sizeof(float)) : NULL;
    if (st == WH_OK && !raw) st = wh_fail(WH_ERR_MEMORY, "synth: out of memory rendering a print");
    if (st != WH_OK) {
        free(dry.v);
        free(slow.v);
        return st;
    }
    int h = m->oh, wd = m->ow;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; y++)
        for (int x = 0; x < wd; x++) raw[(size_t)y * wd + x] = render_pixel(m, &w, &l, &dry, &slow, x, y);
    /* a soft 3x3 binomial blur (the sensor's optics) mixed in by l.blur,
     * then sensor noise; rows draw from their own streams */
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; y++) {
        wh_synth_rng rr;
        wh_synth_rng_seed(&rr, wh_synth_mix(noise_seed, (uint64_t)y));
        for (int x = 0; x < wd; x++) {
            double s = 0, ws = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy < 0 || xx < 0 || yy >= h || xx >= wd) continue;
                    double k = (2 - abs(dx)) * (2 - abs(dy));
                    s += k * raw[(size_t)yy * wd + xx];
                    ws += k;
                }
            double v = (1 - l.blur) * raw[(size_t)y * wd + x] + l.blur * s / ws;
            /* Irwin-Hall: four uniforms make a near-normal deviate cheaply */
            double u = wh_synth_rng_uniform(&rr) + wh_synth_rng_uniform(&rr) + wh_synth_rng_uniform(&rr) +
                       wh_synth_rng_uniform(&rr);
            v += l.noise * (u - 2) * 1.7320508;
            image[(size_t)y * wd + x] = (float)synth_clamp(v, 0, 1);
        }
    }
    free(raw);
    free(dry.v);
    free(slow.v);
    if (fields) impression_fields(m, &w, &l, fields);
    if (info) {
        info->cls = m->cls;
        info->period = m->period;
        info->dx = w.dx;
        info->dy = w.dy;
        info->rotation = atan2(w.sinr, w.cosr);
        info->cx = w.cx - m->ox;
        info->cy = w.cy - m->oy;
        WH_TRY(impression_points(m, &w, &l, info));
    }
    return WH_OK;
}
