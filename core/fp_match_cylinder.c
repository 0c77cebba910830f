/* MCC cylinders of one print (Cappelli, Ferrara, Maltoni, TPAMI 2010,
 * section 3).  See fp_match.h for the idea; the steps here:
 *
 *   1. the convex hull of the minutiae, grown by omega: cells outside it
 *      fall where the print has no information and are invalid;
 *   2. per minutia m, the cell centres of its disc, turned with m;
 *   3. per cell and direction bin, sum over neighbours mt near the cell of
 *      G_s(distance) * (the mass of G_d over the bin, centred on mt's
 *      direction relative to m), squashed by the sigmoid psi;
 *   4. the cylinder is kept when enough cells are valid and enough
 *      minutiae are near m.
 *
 * Angles follow core/fingerprint.h (the image frame, from +x turning
 * towards +y, so the direction of angle a is the image step (cos a, sin a)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_match.h"
#include "tensor.h"

#define PI 3.14159265358979323846

wh_mcc_params wh_mcc_defaults(double dpi) {
    if (!(dpi > 0)) dpi = 500;
    double s = dpi / 500.0;
    wh_mcc_params p = {
        .dpi = dpi,
        .ns = 16,
        .nd = 6,
        .radius = 70 * s,
        .sigma_s = 28.0 / 3.0 * s,
        .sigma_d = 2 * PI / 9,
        .mu_psi = 1.0 / 100,
        .tau_psi = 400,
        .omega = 50 * s,
        .min_valid_cells = 0.75,
        .min_neighbours = 2,
        .min_matchable = 0.60,
        .max_rotation = PI / 2,
        .min_np = 4,
        .max_np = 12,
        .mu_p = 20,
        .tau_p = 2.0 / 5,
        .relax_iterations = 5,
        .relax_weight = 0.5,
        .mu_rho = {5 * s, PI / 12, PI / 12},
        .tau_rho = {-8.0 / 5 / s, -30, -30},
    };
    return p;
}

wh_status wh_mcc_check_params(const wh_mcc_params *p) {
    if (!p) return wh_fail(WH_ERR_ARG, "mcc: parameters are NULL");
    if (p->ns < 2 || p->ns > WH_MCC_MAX_NS)
        return wh_fail(WH_ERR_ARG, "mcc: ns must be 2..%d, got %d", WH_MCC_MAX_NS, p->ns);
    if (p->nd < 1 || p->nd > WH_MCC_MAX_ND)
        return wh_fail(WH_ERR_ARG, "mcc: nd must be 1..%d, got %d", WH_MCC_MAX_ND, p->nd);
    if (!(p->radius > 0) || !(p->sigma_s > 0) || !(p->sigma_d > 0) || !(p->omega >= 0) ||
        !isfinite(p->radius) || !isfinite(p->omega))
        return wh_fail(WH_ERR_ARG, "mcc: radius, sigma_s and sigma_d must be positive and omega >= 0");
    if (!(p->min_valid_cells >= 0 && p->min_valid_cells <= 1) ||
        !(p->min_matchable >= 0 && p->min_matchable <= 1))
        return wh_fail(WH_ERR_ARG, "mcc: min_valid_cells and min_matchable are fractions in [0, 1]");
    if (p->min_np < 1 || p->max_np < p->min_np || p->max_np > WH_MCC_MAX_PAIRS)
        return wh_fail(WH_ERR_ARG, "mcc: need 1 <= min_np <= max_np <= %d, got %d and %d",
                       WH_MCC_MAX_PAIRS, p->min_np, p->max_np);
    if (p->relax_iterations < 0 || !(p->relax_weight >= 0 && p->relax_weight <= 1))
        return wh_fail(WH_ERR_ARG, "mcc: relax_iterations >= 0 and relax_weight in [0, 1]");
    return WH_OK;
}

void wh_mcc_free(wh_mcc_template *m) {
    if (!m) return;
    free(m->index);
    free(m->x);
    free(m->y);
    free(m->angle);
    free(m->valid);
    free(m->energy);
    free(m->values);
    free(m->distance);
    free(m->direction);
    if (m->bytes) wh_memory_note_external(-(ptrdiff_t)m->bytes);
    memset(m, 0, sizeof *m);
}

/* ---- 1. the convex hull, grown by omega ---------------------------------------- */

typedef struct {
    double x, y;
} point;

static int by_xy(const void *pa, const void *pb) {
    const point *a = pa, *b = pb;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    return (a->y > b->y) - (a->y < b->y);
}

static double cross(point o, point a, point b) {
    return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
}

/* Andrew's monotone chain: pts (n, sorted in place) -> hull (counter-clockwise
 * in x-right/y-up terms, no repeated end point); returns its size.  hull
 * needs 2n slots: while the upper chain is built the stack holds the whole
 * lower chain plus the upper candidates. */
static int convex_hull(point *pts, int n, point *hull) {
    qsort(pts, (size_t)n, sizeof *pts, by_xy);
    if (n < 3) {
        memcpy(hull, pts, (size_t)n * sizeof *pts);
        return n;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        while (k >= 2 && cross(hull[k - 2], hull[k - 1], pts[i]) <= 0) k--;
        hull[k++] = pts[i];
    }
    for (int i = n - 2, lower = k + 1; i >= 0; i--) {
        while (k >= lower && cross(hull[k - 2], hull[k - 1], pts[i]) <= 0) k--;
        hull[k++] = pts[i];
    }
    return k - 1;
}

static double segment_distance2(point p, point a, point b) {
    double vx = b.x - a.x, vy = b.y - a.y, len2 = vx * vx + vy * vy;
    double t = len2 > 0 ? ((p.x - a.x) * vx + (p.y - a.y) * vy) / len2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double dx = p.x - a.x - t * vx, dy = p.y - a.y - t * vy;
    return dx * dx + dy * dy;
}

/* Whether p lies in the hull or within omega of it. */
static int in_grown_hull(point p, const point *hull, int nh, double omega) {
    if (nh >= 3) {
        int inside = 1;
        for (int i = 0; i < nh && inside; i++)
            if (cross(hull[i], hull[(i + 1) % nh], p) < 0) inside = 0;
        if (inside) return 1;
    }
    double o2 = omega * omega;
    for (int i = 0; i < nh; i++)
        if (segment_distance2(p, hull[i], hull[(i + 1) % nh]) <= o2) return 1;
    return 0;
}

/* ---- 2-3. one cylinder ------------------------------------------------------------ */

typedef struct {
    const wh_mcc_params *p;
    const wh_minutia *m;
    int n;
    const point *hull;
    int nh;
    int *near;     /* n scratch: minutiae that can reach a cell of the disc */
    double *dir;   /* n x nd scratch: directional contribution of each of them */
} cylinder_ctx;

/* Fills values (cells x nd), valid (cells) and energy (cells) of minutia c's
 * cylinder; returns the number of valid cells. */
static int build_cylinder(const cylinder_ctx *cx, int c, uint8_t *values, uint8_t *valid, float *energy) {
    const wh_mcc_params *p = cx->p;
    const wh_minutia *mc = &cx->m[c];
    int ns = p->ns, nd = p->nd;
    double ds = 2 * p->radius / ns, dd = 2 * PI / nd;
    double gs_norm = 1 / (p->sigma_s * sqrt(2 * PI)), reach2 = 9 * p->sigma_s * p->sigma_s;
    double erf_scale = 1 / (p->sigma_d * sqrt(2.0));
    /* the minutiae within R + 3 sigma_s (others reach no cell), and the mass
     * of G_d over each bin around each one's direction relative to m */
    int nn = 0;
    double reach = p->radius + 3 * p->sigma_s;
    for (int t = 0; t < cx->n; t++) {
        double dx = cx->m[t].x - mc->x, dy = cx->m[t].y - mc->y;
        if (t == c || dx * dx + dy * dy > reach * reach) continue;
        double rel = wh_angle_diff(mc->angle, cx->m[t].angle);
        for (int k = 0; k < nd; k++) {
            double centre = -PI + (k + 0.5) * dd, x = wh_angle_diff(centre, rel);
            cx->dir[nn * nd + k] = 0.5 * (erf((x + dd / 2) * erf_scale) - erf((x - dd / 2) * erf_scale));
        }
        cx->near[nn++] = t;
    }
    /* the cell grid in m's frame: axis u along m's direction, v across it */
    double ux = cos(mc->angle), uy = sin(mc->angle), vx = -uy, vy = ux;
    int nvalid = 0;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < ns; j++) {
            int cell = i * ns + j;
            double u = (i - (ns - 1) / 2.0) * ds, v = (j - (ns - 1) / 2.0) * ds;
            point pc = {mc->x + u * ux + v * vx, mc->y + u * uy + v * vy};
            uint8_t *val = values + (size_t)cell * nd;
            int ok = u * u + v * v <= p->radius * p->radius && in_grown_hull(pc, cx->hull, cx->nh, p->omega);
            valid[cell] = (uint8_t)ok;
            energy[cell] = 0;
            for (int k = 0; k < nd; k++) val[k] = 0;
            if (!ok) continue;
            nvalid++;
            double sum[WH_MCC_MAX_ND] = {0};
            for (int q = 0; q < nn; q++) {
                const wh_minutia *mt = &cx->m[cx->near[q]];
                double dx = mt->x - pc.x, dy = mt->y - pc.y, d2 = dx * dx + dy * dy;
                if (d2 > reach2) continue;
                double gs = gs_norm * exp(-d2 / (2 * p->sigma_s * p->sigma_s));
                for (int k = 0; k < nd; k++) sum[k] += gs * cx->dir[q * nd + k];
            }
            int e = 0;
            for (int k = 0; k < nd; k++) {
                val[k] = (uint8_t)lround(255 * wh_mcc_sigmoid(sum[k], p->mu_psi, p->tau_psi));
                e += val[k] * val[k];
            }
            energy[cell] = (float)e;
        }
    return nvalid;
}

/* ---- 4. the template ------------------------------------------------------------- */

static int count_disc_cells(const wh_mcc_params *p) {
    double ds = 2 * p->radius / p->ns;
    int n = 0;
    for (int i = 0; i < p->ns; i++)
        for (int j = 0; j < p->ns; j++) {
            double u = (i - (p->ns - 1) / 2.0) * ds, v = (j - (p->ns - 1) / 2.0) * ds;
            n += u * u + v * v <= p->radius * p->radius;
        }
    return n;
}

static int count_neighbours(const wh_minutia *m, int n, int c, double reach) {
    int k = 0;
    for (int t = 0; t < n; t++) {
        double dx = m[t].x - m[c].x, dy = m[t].y - m[c].y;
        k += t != c && dx * dx + dy * dy <= reach * reach;
    }
    return k;
}

static wh_status alloc_template(wh_mcc_template *o, int n) {
    size_t cells = (size_t)o->cells, nd = (size_t)o->params.nd, m = n > 0 ? (size_t)n : 1;
    o->index = malloc(m * sizeof *o->index);
    o->x = malloc(m * sizeof(float));
    o->y = malloc(m * sizeof(float));
    o->angle = malloc(m * sizeof(float));
    o->valid = malloc(m * cells);
    o->energy = malloc(m * cells * sizeof(float));
    o->values = malloc(m * cells * nd);
    if (!o->index || !o->x || !o->y || !o->angle || !o->valid || !o->energy || !o->values) {
        wh_mcc_free(o);
        return wh_fail(WH_ERR_MEMORY, "mcc: out of memory for %d cylinders", n);
    }
    size_t bytes = m * (sizeof *o->index + 3 * sizeof(float) + cells + cells * sizeof(float) + cells * nd);
    o->bytes += bytes;
    wh_memory_note_external((ptrdiff_t)bytes);
    return WH_OK;
}

/* Distances and line directions between the kept minutiae, so that the
 * relaxation of every comparison reads them instead of recomputing them. */
static wh_status pair_geometry(wh_mcc_template *o) {
    size_t n = (size_t)o->count, nn = n > 0 ? n * n : 1;
    o->distance = malloc(nn * sizeof(float));
    o->direction = malloc(nn * sizeof(float));
    if (!o->distance || !o->direction) {
        wh_mcc_free(o);
        return wh_fail(WH_ERR_MEMORY, "mcc: out of memory for %zu cylinders", n);
    }
    o->bytes += 2 * nn * sizeof(float);
    wh_memory_note_external((ptrdiff_t)(2 * nn * sizeof(float)));
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < n; k++) {
            double dx = o->x[k] - o->x[i], dy = o->y[k] - o->y[i];
            o->distance[i * n + k] = (float)sqrt(dx * dx + dy * dy);
            o->direction[i * n + k] = (float)atan2(dy, dx);
        }
    return WH_OK;
}

wh_status wh_mcc_build(const wh_template *t, const wh_mcc_params *p, wh_mcc_template *out) {
    if (!t || !out) return wh_fail(WH_ERR_ARG, "mcc: template or output is NULL");
    memset(out, 0, sizeof *out);
    WH_TRY(wh_mcc_check_params(p));
    if (t->count < 0 || (t->count > 0 && !t->minutiae))
        return wh_fail(WH_ERR_ARG, "mcc: template has %d minutiae but no array", t->count);
    for (int i = 0; i < t->count; i++) {
        const wh_minutia *m = &t->minutiae[i];
        if (!isfinite(m->x) || !isfinite(m->y) || !isfinite(m->angle))
            return wh_fail(WH_ERR_ARG, "mcc: minutia %d has a non-finite x, y or angle", i + 1);
    }
    out->params = *p;
    out->minutiae = t->count;
    out->cells = p->ns * p->ns;
    out->disc_cells = count_disc_cells(p);
    int n = t->count;
    WH_TRY(alloc_template(out, n));
    point *pts = malloc((size_t)(n > 0 ? n : 1) * 3 * sizeof(point)); /* n points, 2n hull */
    double *dir = malloc((size_t)(n > 0 ? n : 1) * p->nd * sizeof(double));
    int *near = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (!pts || !dir || !near) {
        free(pts);
        free(dir);
        free(near);
        wh_mcc_free(out);
        return wh_fail(WH_ERR_MEMORY, "mcc: out of memory for %d minutiae", n);
    }
    for (int i = 0; i < n; i++) pts[i] = (point){t->minutiae[i].x, t->minutiae[i].y};
    point *hull = pts + n;
    cylinder_ctx cx = {p, t->minutiae, n, hull, convex_hull(pts, n, hull), near, dir};
    size_t cells = (size_t)out->cells, nd = (size_t)p->nd;
    int min_cells = (int)ceil(p->min_valid_cells * out->disc_cells);
    for (int c = 0; c < n && n >= 2; c++) {
        if (count_neighbours(t->minutiae, n, c, p->radius + 3 * p->sigma_s) < p->min_neighbours) continue;
        int k = out->count;
        int nvalid = build_cylinder(&cx, c, out->values + k * cells * nd, out->valid + k * cells,
                                    out->energy + k * cells);
        if (nvalid < min_cells) continue; /* slot k is reused by the next one */
        out->index[k] = c;
        out->x[k] = t->minutiae[c].x;
        out->y[k] = t->minutiae[c].y;
        out->angle[k] = t->minutiae[c].angle;
        out->count++;
    }
    free(pts);
    free(dir);
    free(near);
    return pair_geometry(out);
}
