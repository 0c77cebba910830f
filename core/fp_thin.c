/* Thinning of the binarised ridges to one-pixel lines: Zhang and Suen's
 * two-subiteration algorithm (CACM 27(3), 1984), then a sequential pass
 * that deletes the corner pixels of its "staircases" (a pixel with two
 * 4-neighbours that are themselves 8-adjacent, whose deletion keeps the
 * local 8-connectivity: Yokoi's connectivity number C8 = 1).  The result
 * is 8-connected and 8-thin, so the crossing number of a skeleton pixel is
 * 1 at an ending, 2 along a ridge and 3 at a bifurcation.
 *
 * Every decision depends only on the 8 neighbours, so each rule is a table
 * over the 256 neighbourhoods, and the image is padded by one background
 * pixel so neighbours need no bounds checks. */
#include <stdlib.h>
#include <string.h>

#include "fp_internal.h"

/* Bit k of a neighbourhood code is neighbour P(k+2) of Zhang & Suen:
 * north first, then clockwise (N, NE, E, SE, S, SW, W, NW). */
static void bits(int code, int p[8]) {
    for (int k = 0; k < 8; k++) p[k] = (code >> k) & 1;
}

/* Zhang-Suen deletion of a pixel with this neighbourhood, in subiteration
 * `second`. */
static int zs_deletable(int code, int second) {
    int p[8], nb = 0, t = 0;
    bits(code, p);
    for (int k = 0; k < 8; k++) {
        nb += p[k];
        t += !p[k] && p[(k + 1) % 8];
    }
    if (nb < 2 || nb > 6 || t != 1) return 0;
    int a = second ? p[0] * p[2] * p[6] : p[0] * p[2] * p[4];
    int c = second ? p[0] * p[4] * p[6] : p[2] * p[4] * p[6];
    return a == 0 && c == 0;
}

/* Yokoi's 8-connectivity number: the number of 8-connected pieces the
 * pixel joins. */
static int yokoi8(const int p[8]) {
    int c = 0;
    for (int k = 0; k < 8; k += 2) {
        int a = !p[k], b = !p[(k + 1) % 8], d = !p[(k + 2) % 8];
        c += a - a * b * d;
    }
    return c;
}

/* A staircase corner: two touching 4-neighbours (N&E, E&S, S&W, W&N), at
 * least two neighbours, and deleting it keeps the local connectivity. */
static int staircase(int code) {
    int p[8], nb = 0;
    bits(code, p);
    for (int k = 0; k < 8; k++) nb += p[k];
    int corner = (p[0] && p[2]) || (p[2] && p[4]) || (p[4] && p[6]) || (p[6] && p[0]);
    return corner && nb >= 2 && yokoi8(p) == 1;
}

typedef struct {
    unsigned char zs[2][256], stair[256];
} thin_tables;

/* Built per call: 768 tiny evaluations, nothing beside a thinning pass. */
static void make_tables(thin_tables *t) {
    for (int c = 0; c < 256; c++) {
        t->zs[0][c] = (unsigned char)zs_deletable(c, 0);
        t->zs[1][c] = (unsigned char)zs_deletable(c, 1);
        t->stair[c] = (unsigned char)staircase(c);
    }
}

/* The neighbourhood code of padded pixel i (pw: padded width). */
static inline int code_at(const unsigned char *b, size_t i, int pw) {
    return b[i - pw] | b[i - pw + 1] << 1 | b[i + 1] << 2 | b[i + pw + 1] << 3 | b[i + pw] << 4 |
           b[i + pw - 1] << 5 | b[i - 1] << 6 | b[i - pw - 1] << 7;
}

/* One subiteration over the padded image; returns how many pixels it
 * removed.  del: a list of up to (h * w) indices. */
static long zs_pass(unsigned char *b, size_t *del, int h, int w, const unsigned char *rule) {
    int pw = w + 2;
    long n = 0;
    for (int y = 1; y <= h; y++)
        for (size_t i = (size_t)y * pw + 1, end = i + w; i < end; i++)
            if (b[i] && rule[code_at(b, i, pw)]) del[n++] = i;
    for (long k = 0; k < n; k++) b[del[k]] = 0;
    return n;
}

wh_status fp_thin(fp_work *wk) {
    int h = wk->h, w = wk->w, pw = w + 2;
    size_t padded = (size_t)(h + 2) * pw;
    thin_tables tab, *t = &tab;
    make_tables(t);
    unsigned char *b = calloc(padded, 1);
    size_t *del = malloc(sizeof(size_t) * (size_t)h * w);
    if (!b || !del) {
        free(b);
        free(del);
        return wh_fail(WH_ERR_MEMORY, "fingerprint: out of memory thinning");
    }
    for (int y = 0; y < h; y++) memcpy(b + (size_t)(y + 1) * pw + 1, wk->ridge + (size_t)y * w, (size_t)w);
    while (zs_pass(b, del, h, w, t->zs[0]) + zs_pass(b, del, h, w, t->zs[1]) > 0) {
    }
    for (int y = 1; y <= h; y++) /* sequential: each deletion is seen by the next pixel */
        for (size_t i = (size_t)y * pw + 1, end = i + w; i < end; i++)
            if (b[i] && t->stair[code_at(b, i, pw)]) b[i] = 0;
    for (int y = 0; y < h; y++) memcpy(wk->skel + (size_t)y * w, b + (size_t)(y + 1) * pw + 1, (size_t)w);
    free(b);
    free(del);
    return WH_OK;
}
