/* The layout of a master finger: class, silhouette, singular points,
 * orientation field and ridge-period map (SFinGe steps 1-3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

static const char *const class_names[WH_FP_NCLASSES] = {"arch", "tented_arch", "left_loop",
                                                        "right_loop", "whorl"};

/* Wilson, Candela, Watson (NIST 1994) as quoted by SFinGe. */
const double wh_fp_class_frequency[WH_FP_NCLASSES] = {0.037, 0.029, 0.338, 0.317, 0.279};

const char *wh_fp_class_name(int cls) {
    return cls >= 0 && cls < WH_FP_NCLASSES ? class_names[cls] : "unknown";
}

int wh_fp_class_from_name(const char *name) {
    for (int c = 0; name && c < WH_FP_NCLASSES; c++)
        if (strcmp(name, class_names[c]) == 0) return c;
    return -1;
}

void synth_master_free(synth_master *m) {
    free(m->orientation);
    free(m->period_map);
    free(m->mask);
    free(m->ridges);
    free(m->minutiae);
    memset(m, 0, sizeof *m);
}

float synth_sample(const float *map, int h, int w, double x, double y, float outside) {
    if (!(x > -1.0 && y > -1.0 && x < w && y < h)) return outside;
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double fx = x - x0, fy = y - y0;
    float v[4];
    for (int k = 0; k < 4; k++) {
        int xx = x0 + (k & 1), yy = y0 + (k >> 1);
        v[k] = (xx >= 0 && yy >= 0 && xx < w && yy < h) ? map[(size_t)yy * w + xx] : outside;
    }
    return (float)((v[0] * (1 - fx) + v[1] * fx) * (1 - fy) + (v[2] * (1 - fx) + v[3] * fx) * fy);
}

/* ---- silhouette --------------------------------------------------------------- */

double synth_silhouette_radius(const synth_silhouette *s, double x, double y) {
    double u = fabs(x - s->cx) / s->half_width;
    double yc = s->top + s->tip_height;
    if (y < yc) {
        double v = (yc - y) / s->tip_height;
        return sqrt(u * u + v * v);
    }
    double v = (y - yc) / s->body_height;
    return sqrt(sqrt(u * u * u * u + v * v * v * v));
}

/* A finger about 0.7 times as wide as tall, tip near the top edge, the lower
 * part usually running off the bottom of the canvas as on a sensor. */
static void draw_silhouette(int h, int w, wh_synth_rng *rng, synth_silhouette *s) {
    double a = fmin(w * wh_synth_rng_range(rng, 0.38, 0.46), h * wh_synth_rng_range(rng, 0.33, 0.40));
    s->half_width = a;
    s->cx = w * 0.5 + a * 0.04 * wh_synth_rng_normal(rng);
    s->top = h * wh_synth_rng_range(rng, 0.02, 0.08);
    s->tip_height = a * wh_synth_rng_range(rng, 1.0, 1.25);
    double bottom = h * wh_synth_rng_range(rng, 0.98, 1.2);
    s->body_height = fmax(bottom - s->top - s->tip_height, 0.3 * a);
    s->visible = fmin(bottom, (double)h) - s->top;
}

/* mask: 1 inside, 0 outside, a ramp about half a ridge period wide. */
static void fill_mask(synth_master *m) {
    double ramp = fmax(1.5, 0.5 * m->period) / m->sil.half_width;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < m->h; y++)
        for (int x = 0; x < m->w; x++) {
            double r = synth_silhouette_radius(&m->sil, x + 0.5, y + 0.5);
            m->mask[(size_t)y * m->w + x] = (float)synth_smoothstep(1.0, 1.0 - ramp, r);
        }
}

/* ---- class and singular points ------------------------------------------------ */

static int draw_class(wh_synth_rng *rng) {
    double u = wh_synth_rng_uniform(rng), acc = 0;
    for (int c = 0; c < WH_FP_NCLASSES; c++) {
        acc += wh_fp_class_frequency[c];
        if (u < acc) return c;
    }
    return WH_FP_WHORL;
}

static void add_point(synth_master *m, double u, double v, int kind) {
    wh_fp_point *p = &m->singular[m->nsingular++];
    p->x = m->sil.cx + u * m->sil.half_width;
    p->y = m->sil.top + v * m->sil.visible;
    p->kind = kind;
}

/* Positions in silhouette units: u across (half-widths from the centre
 * line), v down (fractions of the visible finger).  Cores sit a little above
 * the middle, deltas lower and to the side the loop does not open to. */
static void place_singular_points(synth_master *m, wh_synth_rng *rng, double *arch_u,
                                  double *arch_v) {
    m->nsingular = 0;
    double cu = wh_synth_rng_range(rng, -0.1, 0.1), cv = wh_synth_rng_range(rng, 0.36, 0.48);
    switch (m->cls) {
    case WH_FP_ARCH:
        *arch_u = cu;
        *arch_v = cv + 0.08;
        break;
    case WH_FP_TENTED_ARCH:
        add_point(m, cu, cv, +1);
        add_point(m, cu + wh_synth_rng_range(rng, -0.06, 0.06), cv + wh_synth_rng_range(rng, 0.11, 0.18),
                  -1);
        break;
    case WH_FP_LEFT_LOOP:
    case WH_FP_RIGHT_LOOP: {
        /* a left loop opens to the left, so its delta lies on the right */
        double side = m->cls == WH_FP_LEFT_LOOP ? 1.0 : -1.0;
        cu -= side * wh_synth_rng_range(rng, 0.0, 0.15);
        add_point(m, cu, cv, +1);
        add_point(m, cu + side * wh_synth_rng_range(rng, 0.45, 0.7), cv + wh_synth_rng_range(rng, 0.24, 0.36),
                  -1);
        break;
    }
    default: { /* whorl: two cores around the centre, a delta on each side */
        double sep = wh_synth_rng_range(rng, 0.04, 0.11), turn = wh_synth_rng_range(rng, 0.0, M_PI);
        double du = sep * cos(turn) * 1.5, dv = sep * sin(turn);
        add_point(m, cu - du, cv - dv, +1);
        add_point(m, cu + du, cv + dv, +1);
        double dvv = cv + wh_synth_rng_range(rng, 0.24, 0.34);
        add_point(m, cu - wh_synth_rng_range(rng, 0.5, 0.7), dvv + wh_synth_rng_range(rng, -0.04, 0.04), -1);
        add_point(m, cu + wh_synth_rng_range(rng, 0.5, 0.7), dvv + wh_synth_rng_range(rng, -0.04, 0.04), -1);
        break;
    }
    }
}

/* ---- orientation ----------------------------------------------------------------- */

enum { VG_NODES = 8 };

/* Vizcaya & Gerhardt's correction: each singular point k contributes
 * g_k(arg(z - z_k)) instead of arg(z - z_k), g_k piecewise linear through
 * (alpha_l, alpha_l + d_l) at alpha_l = -pi + 2 pi l / 8, with g(pi) =
 * g(-pi) + 2 pi so the field stays continuous.  Small random d_l bend the
 * flow differently for every finger. */
static double vg_correct(const double *d, double alpha) {
    double step = 2.0 * M_PI / VG_NODES;
    double t = (alpha + M_PI) / step;
    int l = (int)floor(t);
    if (l < 0) l = 0;
    if (l >= VG_NODES) l = VG_NODES - 1;
    double f = t - l;
    double g0 = -M_PI + l * step + d[l], g1 = -M_PI + (l + 1) * step + d[(l + 1) % VG_NODES];
    return g0 + f * (g1 - g0);
}

/* atan2 to 2e-4 rad (a minimax polynomial for atan on [0, 1]); the
 * zero-pole field calls it for every pixel and singular point. */
static double fast_atan2(double y, double x) {
    double ax = fabs(x), ay = fabs(y), mx = fmax(ax, ay);
    if (mx == 0) return 0;
    double a = fmin(ax, ay) / mx, s = a * a;
    double r = ((((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s) * a + a);
    if (ay > ax) r = M_PI_2 - r;
    if (x < 0) r = M_PI - r;
    return y < 0 ? -r : r;
}

static float wrap_pi(double t) {
    t = fmod(t, M_PI);
    if (t < 0) t += M_PI;
    if (t >= M_PI) t = 0; /* fmod rounding */
    return (float)t;
}

/* (h, w) field: theta(z) = 1/2 [sum_cores g(arg(z - c)) - sum_deltas g(arg(z - d))]
 * (Sherlock & Monro's zero-pole model, corrected). */
static void zero_pole_field(synth_master *m, wh_synth_rng *rng) {
    double corr[WH_FP_MAX_SINGULAR][VG_NODES];
    for (int k = 0; k < m->nsingular; k++)
        for (int l = 0; l < VG_NODES; l++) corr[k][l] = 0.12 * wh_synth_rng_normal(rng);
#pragma omp parallel for schedule(static)
    for (int y = 0; y < m->h; y++)
        for (int x = 0; x < m->w; x++) {
            double t = 0;
            for (int k = 0; k < m->nsingular; k++) {
                const wh_fp_point *p = &m->singular[k];
                double g = vg_correct(corr[k], fast_atan2(y + 0.5 - p->y, x + 0.5 - p->x));
                t += p->kind > 0 ? g : -g;
            }
            m->orientation[(size_t)y * m->w + x] = wrap_pi(0.5 * t);
        }
}

/* Plain arch: ridges follow y = c - A(y) exp(-s^2/2), s = (x - x0)/width,
 * a hill towards the tip whose height A fades above and below the middle. */
static void arch_field(synth_master *m, wh_synth_rng *rng, double arch_u, double arch_v) {
    double x0 = m->sil.cx + arch_u * m->sil.half_width;
    double y0 = m->sil.top + arch_v * m->sil.visible;
    double width = m->sil.half_width * wh_synth_rng_range(rng, 0.35, 0.55);
    double height = width * wh_synth_rng_range(rng, 0.9, 1.6);
    double spread = m->sil.visible * wh_synth_rng_range(rng, 0.25, 0.4);
#pragma omp parallel for schedule(static)
    for (int y = 0; y < m->h; y++) {
        double a = height * exp(-0.5 * pow((y + 0.5 - y0) / spread, 2.0));
        for (int x = 0; x < m->w; x++) {
            double s = (x + 0.5 - x0) / width;
            double slope = a / width * s * exp(-0.5 * s * s);
            m->orientation[(size_t)y * m->w + x] = wrap_pi(atan(slope));
        }
    }
}

/* ---- period map ---------------------------------------------------------------------- */

/* (h, w) periods: longer above the highest core and below the lowest delta
 * (SFinGe's density map), a slow random undulation, scaled so the mean over
 * the foreground is the requested period, clamped to [0.78, 1.33] of it
 * (7-12 px around 9 px at 500 dpi). */
static wh_status period_map(synth_master *m, wh_synth_rng *rng, double core_y, double delta_y) {
    double kx[3], ky[3], ph[3];
    for (int i = 0; i < 3; i++) {
        double len = m->sil.visible * wh_synth_rng_range(rng, 0.6, 1.5);
        double dir = wh_synth_rng_range(rng, 0, M_PI);
        kx[i] = 2 * M_PI / len * cos(dir);
        ky[i] = 2 * M_PI / len * sin(dir);
        ph[i] = wh_synth_rng_range(rng, 0, 2 * M_PI);
    }
    double up = wh_synth_rng_range(rng, 0.12, 0.22), down = wh_synth_rng_range(rng, 0.08, 0.18);
    double ramp = 0.3 * m->sil.visible;
    /* cos(kx x + ky y + ph) = cx cy - sx sy with per-column and per-row tables */
    double *cs = malloc(sizeof(double) * 4 * 3 * (size_t)(m->w + m->h));
    if (!cs) return wh_fail(WH_ERR_MEMORY, "synth: out of memory for the period map");
    double *colc = cs, *cols = colc + 3 * (size_t)m->w, *rowc = cols + 3 * (size_t)m->w, *rows = rowc + 3 * (size_t)m->h;
    for (int x = 0; x < m->w; x++)
        for (int i = 0; i < 3; i++) {
            colc[3 * x + i] = cos(kx[i] * x + ph[i]);
            cols[3 * x + i] = sin(kx[i] * x + ph[i]);
        }
    for (int y = 0; y < m->h; y++)
        for (int i = 0; i < 3; i++) {
            rowc[3 * y + i] = cos(ky[i] * y);
            rows[3 * y + i] = sin(ky[i] * y);
        }
    for (int y = 0; y < m->h; y++) {
        double f = 1.0 + up * synth_smoothstep(0, ramp, core_y - y) +
                   down * synth_smoothstep(0, ramp, y - delta_y);
        for (int x = 0; x < m->w; x++) {
            double n = 0;
            for (int i = 0; i < 3; i++) n += colc[3 * x + i] * rowc[3 * y + i] - cols[3 * x + i] * rows[3 * y + i];
            m->period_map[(size_t)y * m->w + x] = (float)(f * (1.0 + 0.025 * n));
        }
    }
    free(cs);
    /* the mean is taken over the part of the finger inside the output frame
     * (the canvas margin and the finger below the frame have longer
     * periods); clamping moves the mean, so scale and clamp a few times */
    float *raw = m->ridges; /* free until the ridges grow */
    size_t n = (size_t)m->h * m->w;
    memcpy(raw, m->period_map, n * sizeof(float));
    double scale = m->period;
    for (int round = 0; round < 4; round++) {
        double sum = 0, wsum = 0;
        for (int y = m->oy; y < m->oy + m->oh; y++)
            for (int x = m->ox; x < m->ox + m->ow; x++) {
                size_t o = (size_t)y * m->w + x;
                double v = synth_clamp(raw[o] * scale, 0.78 * m->period, 1.33 * m->period);
                sum += v * m->mask[o];
                wsum += m->mask[o];
            }
        if (wsum > 0) scale *= m->period / (sum / wsum);
    }
    for (size_t i = 0; i < n; i++)
        m->period_map[i] = (float)synth_clamp(raw[i] * scale, 0.78 * m->period, 1.33 * m->period);
    return WH_OK;
}

wh_status synth_master_layout(const wh_synth_params *p, wh_synth_rng *rng, synth_master *m) {
    memset(m, 0, sizeof *m);
    m->oh = p->height;
    m->ow = p->width;
    m->ox = m->oy = (int)ceil(0.12 * fmax(p->height, p->width));
    m->h = m->oh + 2 * m->oy;
    m->w = m->ow + 2 * m->ox;
    size_t n = (size_t)m->h * m->w;
    m->orientation = malloc(n * sizeof(float));
    m->period_map = malloc(n * sizeof(float));
    m->mask = malloc(n * sizeof(float));
    m->ridges = malloc(n * sizeof(float));
    if (!m->orientation || !m->period_map || !m->mask || !m->ridges) {
        synth_master_free(m);
        return wh_fail(WH_ERR_MEMORY, "synth: out of memory for a %dx%d print", p->height, p->width);
    }
    /* draws happen in a fixed order whatever the options, so forcing the
     * class or the period leaves the rest of the finger unchanged */
    int cls = draw_class(rng);
    double period = wh_synth_rng_range(rng, 8.2, 10.0) * p->dpi / 500.0;
    m->cls = p->cls >= 0 ? p->cls : cls;
    m->period = p->period > 0 ? p->period : period;
    draw_silhouette(m->oh, m->ow, rng, &m->sil);
    m->sil.cx += m->ox;
    m->sil.top += m->oy;
    fill_mask(m);
    double arch_u = 0, arch_v = 0.5;
    place_singular_points(m, rng, &arch_u, &arch_v);
    double core_y = m->sil.top + arch_v * m->sil.visible, delta_y = core_y + 0.25 * m->sil.visible;
    if (m->nsingular > 0) {
        core_y = 1e30;
        delta_y = -1e30;
        for (int k = 0; k < m->nsingular; k++) {
            if (m->singular[k].kind > 0) core_y = fmin(core_y, m->singular[k].y);
            else delta_y = fmax(delta_y, m->singular[k].y);
        }
        zero_pole_field(m, rng);
    } else {
        arch_field(m, rng, arch_u, arch_v);
    }
    wh_status st = period_map(m, rng, core_y, delta_y);
    if (st != WH_OK) synth_master_free(m);
    return st;
}
