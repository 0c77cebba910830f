/* Ground-truth minutiae of a master finger: the ridge map (ridges > 0) is
 * thinned to one-pixel lines (Zhang & Suen 1984) and each skeleton pixel
 * classified by its crossing number (Arcelli & Baja; Maltoni et al.,
 * Handbook, 3.7.1): half the number of 0/1 transitions around its eight
 * neighbours is 1 at a ridge ending and 3 at a bifurcation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

/* Neighbours in circular order starting north: P2..P9 of Zhang & Suen. */
static const int NX[8] = {0, 1, 1, 1, 0, -1, -1, -1};
static const int NY[8] = {-1, -1, 0, 1, 1, 1, 0, -1};

static inline int pix(const unsigned char *b, int h, int w, int x, int y) {
    return x >= 0 && y >= 0 && x < w && y < h ? b[(size_t)y * w + x] : 0;
}

/* One Zhang-Suen sub-iteration; returns how many pixels it removed. */
static long thin_pass(unsigned char *b, unsigned char *del, int h, int w, int second) {
    long removed = 0;
    memset(del, 0, (size_t)h * w);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!b[(size_t)y * w + x]) continue;
            int p[8], n = 0, t = 0;
            for (int k = 0; k < 8; k++) n += p[k] = pix(b, h, w, x + NX[k], y + NY[k]);
            for (int k = 0; k < 8; k++) t += !p[k] && p[(k + 1) % 8];
            if (n < 2 || n > 6 || t != 1) continue;
            /* P2 P4 P6 / P4 P6 P8 (first) or P2 P4 P8 / P2 P6 P8 (second) */
            int a = second ? p[0] * p[2] * p[6] : p[0] * p[2] * p[4];
            int c = second ? p[0] * p[4] * p[6] : p[2] * p[4] * p[6];
            if (a == 0 && c == 0) del[(size_t)y * w + x] = 1;
        }
    for (size_t i = 0; i < (size_t)h * w; i++)
        if (del[i]) {
            b[i] = 0;
            removed++;
        }
    return removed;
}

static int crossing_number(const unsigned char *b, int h, int w, int x, int y) {
    int t = 0;
    for (int k = 0; k < 8; k++)
        t += abs(pix(b, h, w, x + NX[k], y + NY[k]) - pix(b, h, w, x + NX[(k + 1) % 8], y + NY[(k + 1) % 8]));
    return t / 2;
}

/* Direction of a ridge ending: walk up to `steps` pixels back along its
 * skeleton line and point from there to the ending. */
static double ending_angle(const unsigned char *b, int h, int w, int x, int y, int steps) {
    int cx = x, cy = y, px = -1, py = -1;
    for (int s = 0; s < steps; s++) {
        int found = 0;
        for (int k = 0; k < 8 && !found; k++) {
            int nx = cx + NX[k], ny = cy + NY[k];
            if (pix(b, h, w, nx, ny) && !(nx == px && ny == py) && !(nx == x && ny == y)) {
                px = cx;
                py = cy;
                cx = nx;
                cy = ny;
                found = 1;
            }
        }
        if (!found) break;
    }
    return atan2(y - cy, x - cx);
}

wh_status synth_find_minutiae(synth_master *m) {
    int h = m->h, w = m->w;
    size_t n = (size_t)h * w;
    unsigned char *b = malloc(n), *del = malloc(n);
    wh_fp_minutia *found = NULL;
    int count = 0, cap = 0;
    if (!b || !del) goto oom;
    for (size_t i = 0; i < n; i++) b[i] = m->ridges[i] > 0 && m->mask[i] > 0.5f;
    while (thin_pass(b, del, h, w, 0) + thin_pass(b, del, h, w, 1) > 0) {
    }
    /* keep a period away from the edge of the finger, where the silhouette
     * cuts ridges into false endings */
    double inner = 1.0 - 1.2 * m->period / m->sil.half_width;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            if (!b[(size_t)y * w + x]) continue;
            int cn = crossing_number(b, h, w, x, y);
            if (cn != 1 && cn != 3) continue;
            if (synth_silhouette_radius(&m->sil, x + 0.5, y + 0.5) > inner) continue;
            if (count == cap) {
                cap = cap ? 2 * cap : 64;
                wh_fp_minutia *g = realloc(found, cap * sizeof *g);
                if (!g) goto oom;
                found = g;
            }
            wh_fp_minutia *mm = &found[count++];
            mm->x = x + 0.5;
            mm->y = y + 0.5;
            mm->kind = cn;
            mm->angle = cn == 1 ? ending_angle(b, h, w, x, y, (int)ceil(m->period))
                                : m->orientation[(size_t)y * w + x];
        }
    /* thinning leaves pairs of false minutiae a fraction of a period apart
     * (spurs, small holes, bridges): drop both of every such pair */
    memset(del, 0, count ? (size_t)count : 1);
    double near2 = pow(0.6 * m->period, 2);
    for (int i = 0; i < count; i++)
        for (int j = i + 1; j < count; j++) {
            double dx = found[i].x - found[j].x, dy = found[i].y - found[j].y;
            if (dx * dx + dy * dy < near2) del[i] = del[j] = 1;
        }
    int kept = 0;
    for (int i = 0; i < count; i++)
        if (!del[i]) found[kept++] = found[i];
    free(b);
    free(del);
    m->minutiae = found;
    m->nminutiae = kept;
    return WH_OK;
oom:
    free(b);
    free(del);
    free(found);
    return wh_fail(WH_ERR_MEMORY, "synth: out of memory finding minutiae");
}
