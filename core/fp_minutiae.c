/* Minutiae of the skeleton (Maltoni et al., Handbook of Fingerprint
 * Recognition, 3.7.1 and 3.8): a skeleton pixel whose crossing number
 * CN = (1/2) sum |P(k) - P(k+1)| over its eight neighbours is 1 is an
 * ending, 3 a bifurcation.  Each candidate's ridge is followed along the
 * skeleton to give its direction and to recognise the usual false minutiae
 * of thinning (Xiao and Raafat 1991; Ratha, Chen and Jain 1995):
 *
 *   spur    an ending whose ridge reaches a bifurcation within min_ridge;
 *   island  an ending whose ridge reaches another ending within min_ridge
 *           (a short ridge or a dot);
 *   bridge  two bifurcations joined by a branch shorter than min_ridge (also
 *           a lake: two bifurcations around a small hole);
 *   break   two endings closer than a period facing each other across a gap;
 *   cluster any two left within half a period of each other;
 *   border  closer than params.border to the foreground's edge, where the
 *           segmentation cuts ridges into false endings.
 *
 * An ending's direction points away from its ridge; a bifurcation's along
 * its stem (the branch most opposite the other two), away from the fork.
 * The traced direction picks the sense; the smoothed orientation field,
 * which is more precise, gives the axis when it agrees within 45 degrees. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

static const int NX[8] = {0, 1, 1, 1, 0, -1, -1, -1};
static const int NY[8] = {-1, -1, 0, 1, 1, 1, 0, -1};

#define MAX_TRACE 64

static inline int on(const unsigned char *s, int h, int w, int x, int y) {
    return x >= 0 && y >= 0 && x < w && y < h && s[(size_t)y * w + x];
}

static int crossing(const unsigned char *s, int h, int w, int x, int y) {
    int t = 0;
    for (int k = 0; k < 8; k++)
        t += on(s, h, w, x + NX[k], y + NY[k]) != on(s, h, w, x + NX[(k + 1) % 8], y + NY[(k + 1) % 8]);
    return t / 2;
}

/* The first pixel of each run of skeleton neighbours around (x, y) (a
 * 4-neighbour of the run when it has one): the starts of its branches.
 * Returns how many (at most 4). */
static int branch_starts(const unsigned char *s, int h, int w, int x, int y, int sx[4], int sy[4]) {
    int p[8], n = 0;
    for (int k = 0; k < 8; k++) p[k] = on(s, h, w, x + NX[k], y + NY[k]);
    int start = 0;
    while (start < 8 && p[start]) start++;
    if (start == 8) return 0; /* fully surrounded: not a minutia */
    for (int j = 1; j <= 8 && n < 4; j++) {
        int k = (start + j) % 8;
        if (!p[k] || p[(k + 7) % 8]) continue; /* not the first of a run */
        int pick = k;
        for (int m = k; p[m % 8] && m < k + 8; m++)
            if ((m % 8) % 2 == 0) {
                pick = m % 8;
                break;
            }
        sx[n] = x + NX[pick];
        sy[n] = y + NY[pick];
        n++;
    }
    return n;
}

typedef struct {
    int x, y, len;
    int stop; /* 0: went maxlen or ran out, 1: reached an ending, 3: a bifurcation */
} trace_end;

/* Follows the skeleton from (x0, y0) through (x1, y1) for at most maxlen
 * steps, stopping at the next ending or bifurcation. */
static trace_end trace(const unsigned char *s, int h, int w, int x0, int y0, int x1, int y1, int maxlen) {
    int px[MAX_TRACE + 2], py[MAX_TRACE + 2], n = 0;
    if (maxlen > MAX_TRACE) maxlen = MAX_TRACE;
    px[n] = x0;
    py[n++] = y0;
    int cx = x1, cy = y1;
    for (int len = 1;; len++) {
        px[n] = cx;
        py[n++] = cy;
        int cn = crossing(s, h, w, cx, cy);
        if (cn == 1 || cn >= 3) return (trace_end){cx, cy, len, cn >= 3 ? 3 : 1};
        if (len >= maxlen) return (trace_end){cx, cy, len, 0};
        int best = -1;
        for (int pass = 0; pass < 2 && best < 0; pass++) /* 4-neighbours first */
            for (int k = pass; k < 8; k += 2) {
                int nx = cx + NX[k], ny = cy + NY[k], seen = 0;
                if (!on(s, h, w, nx, ny)) continue;
                for (int j = 0; j < n && !seen; j++) seen = px[j] == nx && py[j] == ny;
                /* skip the pixel beside the previous step (a corner of the path) */
                for (int j = n >= 2 ? n - 2 : 0; j < n - 1 && !seen; j++)
                    seen = abs(px[j] - nx) <= 1 && abs(py[j] - ny) <= 1;
                if (!seen) {
                    best = k;
                    break;
                }
            }
        if (best < 0) return (trace_end){cx, cy, len, 0};
        cx += NX[best];
        cy += NY[best];
    }
}

typedef struct {
    int x, y, type;
    double dir; /* traced direction, radians */
    int drop;
} candidate;

static double wrap_pi(double a) { /* to (-pi, pi] */
    while (a > M_PI) a -= 2 * M_PI;
    while (a <= -M_PI) a += 2 * M_PI;
    return a;
}

static int find_index(const candidate *c, int n, int x, int y) {
    for (int k = 0; k < n; k++)
        if (abs(c[k].x - x) <= 1 && abs(c[k].y - y) <= 1) return k;
    return -1;
}

/* Marks spurs, islands and bridges by following every candidate's branches;
 * sets each candidate's traced direction. */
static void follow_ridges(const fp_work *wk, candidate *c, int n) {
    int h = wk->h, w = wk->w, L = wk->p.min_ridge;
    const unsigned char *s = wk->skel;
    for (int k = 0; k < n; k++) {
        int sx[4], sy[4];
        int nb = branch_starts(s, h, w, c[k].x, c[k].y, sx, sy);
        int reach = (int)lround(wk->period[(size_t)c[k].y * w + c[k].x]);
        if (c[k].type == WH_MINUTIA_ENDING) {
            if (nb != 1) {
                c[k].drop = 1;
                continue;
            }
            trace_end e = trace(s, h, w, c[k].x, c[k].y, sx[0], sy[0], L > reach ? L : reach);
            if (e.stop && e.len <= L) {
                int j = find_index(c, n, e.x, e.y);
                c[k].drop = 1; /* a spur (to a bifurcation) or an island (to an ending) */
                if (j >= 0) c[j].drop = 1;
            }
            trace_end d = e.len > reach ? trace(s, h, w, c[k].x, c[k].y, sx[0], sy[0], reach) : e;
            c[k].dir = atan2(c[k].y - d.y, c[k].x - d.x);
        } else {
            if (nb != 3) {
                c[k].drop = 1;
                continue;
            }
            double vx[3], vy[3];
            for (int b = 0; b < 3; b++) {
                trace_end e = trace(s, h, w, c[k].x, c[k].y, sx[b], sy[b], L > reach ? L : reach);
                if (e.stop == 3 && e.len <= L && e.len > 2) {
                    int j = find_index(c, n, e.x, e.y);
                    c[k].drop = 1; /* a bridge or a lake */
                    if (j >= 0) c[j].drop = 1;
                }
                trace_end d = e.len > reach ? trace(s, h, w, c[k].x, c[k].y, sx[b], sy[b], reach) : e;
                double dx = d.x - c[k].x, dy = d.y - c[k].y, m = sqrt(dx * dx + dy * dy);
                vx[b] = m > 0 ? dx / m : 0;
                vy[b] = m > 0 ? dy / m : 0;
            }
            int stem = 0;
            double best = 1e9;
            for (int b = 0; b < 3; b++) {
                double dot = 0;
                for (int o = 0; o < 3; o++)
                    if (o != b) dot += vx[b] * vx[o] + vy[b] * vy[o];
                if (dot < best) {
                    best = dot;
                    stem = b;
                }
            }
            c[k].dir = atan2(vy[stem], vx[stem]);
        }
    }
}

/* Border minutiae first (so they take no one with them), then breaks
 * (facing endings) and clusters among the rest. */
static wh_status drop_close(const fp_work *wk, candidate *c, int n) {
    int w = wk->w;
    unsigned char *mark = calloc((size_t)n + 1, 1);
    if (!mark) return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory finding minutiae");
    for (int i = 0; i < n; i++)
        if (wk->dist[(size_t)c[i].y * w + c[i].x] < wk->p.border) c[i].drop = 1;
    for (int i = 0; i < n; i++) {
        double T = wk->period[(size_t)c[i].y * w + c[i].x];
        for (int j = i + 1; j < n; j++) {
            double dx = c[j].x - c[i].x, dy = c[j].y - c[i].y, d = sqrt(dx * dx + dy * dy);
            if (d > 1.5 * T) continue;
            if (c[i].drop || c[j].drop) continue;
            if (d < 0.5 * T) { /* a cluster */
                mark[i] = mark[j] = 1;
                continue;
            }
            if (c[i].type != WH_MINUTIA_ENDING || c[j].type != WH_MINUTIA_ENDING) continue;
            /* facing: opposite directions, each pointing at the other */
            double opp = cos(c[i].dir - c[j].dir);
            double ai = (dx * cos(c[i].dir) + dy * sin(c[i].dir)) / d;
            double aj = -(dx * cos(c[j].dir) + dy * sin(c[j].dir)) / d;
            if (opp < -0.7 && ai > 0.6 && aj > 0.6) mark[i] = mark[j] = 1;
        }
    }
    for (int i = 0; i < n; i++)
        if (mark[i]) c[i].drop = 1;
    free(mark);
    return WH_OK;
}

/* The orientation axis near the traced direction (within 45 degrees), else
 * the traced direction; in [0, 2 pi). */
static double refine_angle(double traced, double theta) {
    double a = theta, d = wrap_pi(a - traced);
    if (fabs(d) > M_PI / 2) a += M_PI, d = wrap_pi(a - traced);
    double out = fabs(d) <= M_PI / 4 ? a : traced;
    out = fmod(out, 2 * M_PI);
    return out < 0 ? out + 2 * M_PI : out;
}

wh_status fp_find_minutiae(const fp_work *wk, wh_template *out) {
    int h = wk->h, w = wk->w, n = 0, cap = 0;
    candidate *c = NULL;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            if (!wk->skel[(size_t)y * w + x]) continue;
            int cn = crossing(wk->skel, h, w, x, y);
            if (cn != 1 && cn != 3) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                candidate *g = realloc(c, sizeof *c * (size_t)cap);
                if (!g) {
                    free(c);
                    return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory finding minutiae");
                }
                c = g;
            }
            c[n++] = (candidate){x, y, cn, 0, 0};
        }
    follow_ridges(wk, c, n);
    wh_status st = drop_close(wk, c, n);
    if (st != WH_OK) {
        free(c);
        return st;
    }
    int kept = 0;
    for (int k = 0; k < n; k++) kept += !c[k].drop;
    out->count = 0;
    out->minutiae = kept ? malloc(sizeof(wh_minutia) * (size_t)kept) : NULL;
    if (kept && !out->minutiae) {
        free(c);
        return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory finding minutiae");
    }
    double border = wk->p.border > 0 ? wk->p.border : 1;
    for (int k = 0; k < n; k++) {
        if (c[k].drop) continue;
        size_t i = (size_t)c[k].y * w + c[k].x;
        wh_minutia *m = &out->minutiae[out->count++];
        m->x = (float)c[k].x;
        m->y = (float)c[k].y;
        m->type = c[k].type;
        m->angle = (float)refine_angle(c[k].dir, wk->orient[i]);
        if (!(m->angle < (float)(2 * M_PI))) m->angle = 0; /* 2 pi - tiny rounds up in float */
        double far = wk->dist[i] / (2 * border);
        m->quality = (float)(wk->coher[i] * (far < 1 ? far : 1));
    }
    free(c);
    return WH_OK;
}
