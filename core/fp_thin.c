/* Thinning of the binarised ridges to one-pixel lines: Zhang and Suen's
 * two-subiteration algorithm (CACM 27(3), 1984), then a sequential pass
 * that deletes the corner pixels of its "staircases" (a pixel with two
 * 4-neighbours that are themselves 8-adjacent, whose deletion keeps the
 * local 8-connectivity: Yokoi's connectivity number C8 = 1).  The result
 * is 8-connected and 8-thin, so the crossing number of a skeleton pixel is
 * 1 at an ending, 2 along a ridge and 3 at a bifurcation. */
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

/* Neighbours in circular order starting north (P2..P9 of Zhang & Suen). */
static const int NX[8] = {0, 1, 1, 1, 0, -1, -1, -1};
static const int NY[8] = {-1, -1, 0, 1, 1, 1, 0, -1};

static void neighbours(const unsigned char *b, int h, int w, int x, int y, int p[8]) {
    for (int k = 0; k < 8; k++) {
        int xx = x + NX[k], yy = y + NY[k];
        p[k] = xx >= 0 && yy >= 0 && xx < w && yy < h ? b[(size_t)yy * w + xx] : 0;
    }
}

/* One subiteration; returns how many pixels it removed.  del: h*w bytes. */
static long zs_pass(unsigned char *b, unsigned char *del, int h, int w, int second) {
    long removed = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            del[i] = 0;
            if (!b[i]) continue;
            int p[8], nb = 0, t = 0;
            neighbours(b, h, w, x, y, p);
            for (int k = 0; k < 8; k++) {
                nb += p[k];
                t += !p[k] && p[(k + 1) % 8];
            }
            if (nb < 2 || nb > 6 || t != 1) continue;
            int a = second ? p[0] * p[2] * p[6] : p[0] * p[2] * p[4];
            int c = second ? p[0] * p[4] * p[6] : p[2] * p[4] * p[6];
            if (a == 0 && c == 0) del[i] = 1;
        }
    for (size_t i = 0; i < (size_t)h * w; i++)
        if (del[i]) {
            b[i] = 0;
            removed++;
        }
    return removed;
}

/* Yokoi's 8-connectivity number of a pixel from its neighbours p (north
 * first, clockwise): the number of 8-connected pieces it joins. */
static int yokoi8(const int p[8]) {
    int c = 0;
    for (int k = 0; k < 8; k += 2) {
        int a = !p[k], b = !p[(k + 1) % 8], d = !p[(k + 2) % 8];
        c += a - a * b * d;
    }
    return c;
}

static void remove_staircases(unsigned char *b, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            if (!b[i]) continue;
            int p[8], nb = 0;
            neighbours(b, h, w, x, y, p);
            for (int k = 0; k < 8; k++) nb += p[k];
            /* N&E, E&S, S&W or W&N: two 4-neighbours that touch diagonally */
            int corner = (p[0] && p[2]) || (p[2] && p[4]) || (p[4] && p[6]) || (p[6] && p[0]);
            if (corner && nb >= 2 && yokoi8(p) == 1) b[i] = 0;
        }
}

wh_status fp_thin(fp_work *wk) {
    int h = wk->h, w = wk->w;
    size_t n = (size_t)h * w;
    unsigned char *b = wk->skel, *del = (unsigned char *)wk->tmp;
    memcpy(b, wk->ridge, n);
    while (zs_pass(b, del, h, w, 0) + zs_pass(b, del, h, w, 1) > 0) {
    }
    remove_staircases(b, h, w);
    return WH_OK;
}
