/* Ridge growth (SFinGe step 4): starting from a few random seeds, each
 * pixel is repeatedly replaced by the response of the Gabor filter tuned to
 * its own orientation and period, amplified and clipped to [-1, 1].  Seeds
 * spread into ridge patterns that follow the field; where two patches meet
 * out of phase, endings and bifurcations form as in real skin.
 *
 * Speed: the filters come from a bank (quantised orientations x periods)
 * built once per finger, with rows padded to 8 floats so the per-pixel dot
 * product vectorises; pixels whose neighbourhood is still blank are skipped
 * by an 8x8 block activity map; OpenMP over rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

enum { BANK_ORIENTATIONS = 32, BLOCK = 8, MAX_ITERATIONS = 25,
       MAX_CHUNKS = 10 /* kernel rows of at most 80 floats: radius <= 39 */ };
static const double PERIOD_STEP = 1.05; /* ratio between neighbouring periods of the bank */
/* > 1 so patterns saturate and spread; higher gains spread faster (fewer
 * iterations) and give crisper ridges */
static const double GAIN = 3.5;

/* The kernels of one period: BANK_ORIENTATIONS kernels of (kh, kwp) floats,
 * kh = 2 radius + 1 rows padded to kwp = a multiple of 8. */
typedef struct {
    int radius, kh, kwp;
    float *kernels;
} bank_level;

/* Periods on a fixed geometric grid, level q having period
 * BANK_P0 * PERIOD_STEP^q (2.2 to 34 px), built on first use and kept for
 * the life of the process: every finger at a similar dpi shares them. */
enum { BANK_LEVELS = 57 };
static const double BANK_P0 = 2.2;
static bank_level *bank_levels[BANK_LEVELS];

/* The levels one finger uses: filter f is orientation f / nq at level
 * qmin + f % nq. */
typedef struct {
    int qmin, nq, pad; /* pad: the largest radius */
    const bank_level *level[BANK_LEVELS];
} gabor_bank;

/* One kernel: an even Gabor with envelope sigma_along = 0.5 p along the
 * ridges and sigma_across = 0.4 p across them, its mean removed (a flat
 * region gives no response) and scaled so a sinusoid of period p at
 * orientation theta gives a response of 1. */
static void make_kernel(float *k, int radius, int kwp, double theta, double p) {
    double sa = 0.5 * p, sn = 0.4 * p, c = cos(theta), s = sin(theta);
    int kh = 2 * radius + 1;
    double sg = 0, sgc = 0;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kwp; j++) {
            double dx = j - radius, dy = i - radius;
            double along = dx * c + dy * s, across = -dx * s + dy * c;
            double g = j < kh ? exp(-0.5 * (along * along / (sa * sa) + across * across / (sn * sn))) : 0;
            k[i * kwp + j] = (float)g;
            sg += g;
            sgc += g * cos(2 * M_PI * across / p);
        }
    double dc = sgc / sg, resp = 0;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kh; j++) {
            double dx = j - radius, dy = i - radius, across = -dx * s + dy * c;
            double g = k[i * kwp + j], cs = cos(2 * M_PI * across / p);
            k[i * kwp + j] = (float)(g * (cs - dc));
            resp += g * (cs - dc) * cs;
        }
    for (int i = 0; i < kh * kwp; i++) k[i] = (float)(k[i] / resp);
}

static int level_of(double p) {
    int q = (int)lround(log(p / BANK_P0) / log(PERIOD_STEP));
    return q < 0 ? 0 : q >= BANK_LEVELS ? BANK_LEVELS - 1 : q;
}

static bank_level *build_level(int q) {
    double p = BANK_P0 * pow(PERIOD_STEP, q);
    bank_level *l = malloc(sizeof *l);
    if (!l) return NULL;
    l->radius = (int)ceil(1.1 * p);
    if (l->radius > 4 * MAX_CHUNKS - 1) l->radius = 4 * MAX_CHUNKS - 1;
    l->kh = 2 * l->radius + 1;
    l->kwp = (l->kh + 7) & ~7;
    size_t per = (size_t)l->kh * l->kwp;
    l->kernels = malloc(per * BANK_ORIENTATIONS * sizeof(float));
    if (!l->kernels) {
        free(l);
        return NULL;
    }
    for (int o = 0; o < BANK_ORIENTATIONS; o++)
        make_kernel(l->kernels + per * o, l->radius, l->kwp, M_PI * o / BANK_ORIENTATIONS, p);
    return l;
}

/* The levels covering [pmin, pmax], building the missing ones (once, under
 * a lock; readers that find a level built need no lock). */
static wh_status get_bank(gabor_bank *b, double pmin, double pmax) {
    b->qmin = level_of(pmin);
    b->nq = level_of(pmax) - b->qmin + 1;
    b->pad = 0;
    for (int i = 0; i < b->nq; i++) {
        int q = b->qmin + i;
        bank_level *l = __atomic_load_n(&bank_levels[q], __ATOMIC_ACQUIRE);
        if (!l) {
#pragma omp critical(wh_synth_gabor_bank)
            {
                l = bank_levels[q];
                if (!l && (l = build_level(q)) != NULL) __atomic_store_n(&bank_levels[q], l, __ATOMIC_RELEASE);
            }
        }
        if (!l) return wh_fail(WH_ERR_MEMORY, "synth: out of memory for the Gabor bank");
        b->level[i] = l;
        if (l->radius > b->pad) b->pad = l->radius;
    }
    return WH_OK;
}

static int bank_index(const gabor_bank *b, double theta, double p) {
    int o = (int)lround(theta / M_PI * BANK_ORIENTATIONS) % BANK_ORIENTATIONS;
    int q = level_of(p) - b->qmin;
    q = q < 0 ? 0 : q >= b->nq ? b->nq - 1 : q;
    return o * b->nq + q;
}

/* Eight floats; unaligned, and allowed to alias the float arrays. */
typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));

/* Dot product of one kernel (kh rows of nc * 8 floats) with the window whose
 * top-left is src.  One accumulator per column chunk keeps nc independent
 * add chains; nc is a constant at each call site so they stay in registers. */
static inline __attribute__((always_inline)) float window_dot(const float *src, size_t stride,
                                                              const float *k, int kh, const int nc) {
    v8f acc[MAX_CHUNKS];
    for (int c = 0; c < nc; c++) acc[c] = (v8f){0};
    for (int i = 0; i < kh; i++) {
        const v8f *row = (const v8f *)(src + i * stride), *kr = (const v8f *)(k + (size_t)i * nc * 8);
        for (int c = 0; c < nc; c++) acc[c] += kr[c] * row[c];
    }
    v8f s = acc[0];
    for (int c = 1; c < nc; c++) s += acc[c];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static float window_response(const float *src, size_t stride, const float *k, int kh, int kwp) {
    switch (kwp / 8) {
    case 1: return window_dot(src, stride, k, kh, 1);
    case 2: return window_dot(src, stride, k, kh, 2);
    case 3: return window_dot(src, stride, k, kh, 3);
    case 4: return window_dot(src, stride, k, kh, 4);
    case 5: return window_dot(src, stride, k, kh, 5);
    case 6: return window_dot(src, stride, k, kh, 6);
    case 7: return window_dot(src, stride, k, kh, 7);
    case 8: return window_dot(src, stride, k, kh, 8);
    case 9: return window_dot(src, stride, k, kh, 9);
    default: return window_dot(src, stride, k, kh, 10);
    }
}

typedef struct {
    int h, w, pad;
    size_t stride;      /* padded row length */
    float *cur, *next;  /* (h + 2 pad, stride), zero borders */
    int *filter;        /* (h, w) bank index, -1 outside the growth domain */
    int bh, bw;
    unsigned char *active, *near; /* (bh, bw) blocks with content / near content */
    unsigned char *full;          /* (bh, bw) blocks mostly inside the domain */
} grow_state;

static inline float *at(const grow_state *g, float *buf, int y, int x) {
    return buf + (size_t)(y + g->pad) * g->stride + (x + g->pad);
}

/* active = blocks holding a nonzero value; near = blocks within reach of
 * the kernel from an active one (elsewhere the filter sees only zeros).
 * Returns how many full blocks have not grown yet: a grown block holds a
 * saturated value (a block spans most of a period, so a pattern puts a
 * ridge or valley centre in it). */
static long update_activity(grow_state *g) {
    float *peak = (float *)g->next; /* scratch: next is overwritten by the step */
    memset(peak, 0, (size_t)g->bh * g->bw * sizeof(float));
    for (int y = 0; y < g->h; y++) {
        const float *row = at(g, g->cur, y, 0);
        float *pk = peak + (size_t)(y / BLOCK) * g->bw;
        for (int x = 0; x < g->w; x++) pk[x / BLOCK] = fmaxf(pk[x / BLOCK], fabsf(row[x]));
    }
    long ungrown = 0;
    for (int b = 0; b < g->bh * g->bw; b++) {
        g->active[b] = peak[b] > 0;
        ungrown += g->full[b] && peak[b] < 0.9f;
    }
    memset(peak, 0, (size_t)g->bh * g->bw * sizeof(float));
    int reach = (g->pad + BLOCK - 1) / BLOCK;
    for (int by = 0; by < g->bh; by++)
        for (int bx = 0; bx < g->bw; bx++) {
            unsigned char v = 0;
            for (int dy = -reach; dy <= reach && !v; dy++)
                for (int dx = -reach; dx <= reach && !v; dx++) {
                    int yy = by + dy, xx = bx + dx;
                    if (yy >= 0 && xx >= 0 && yy < g->bh && xx < g->bw) v = g->active[yy * g->bw + xx];
                }
            g->near[by * g->bw + bx] = v;
        }
    return ungrown;
}

static long grow_step(grow_state *g, const gabor_bank *b, double gain) {
    long changed = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : changed)
    for (int y = 0; y < g->h; y++) {
        float *out = at(g, g->next, y, 0);
        const float *in = at(g, g->cur, y, 0);
        for (int x = 0; x < g->w; x++) {
            int f = g->filter[(size_t)y * g->w + x];
            if (f < 0 || !g->near[(y / BLOCK) * g->bw + x / BLOCK]) {
                out[x] = in[x];
                continue;
            }
            const bank_level *l = b->level[f % b->nq];
            const float *k = l->kernels + (size_t)(f / b->nq) * l->kh * l->kwp;
            const float *src = at(g, g->cur, y - l->radius, x - l->radius); /* window top-left */
            float v = (float)gain * window_response(src, g->stride, k, l->kh, l->kwp);
            v = v > 1.f ? 1.f : v < -1.f ? -1.f : v;
            changed += in[x] != 0 && (v > 0) != (in[x] > 0);
            out[x] = v;
        }
    }
    float *t = g->cur;
    g->cur = g->next;
    g->next = t;
    return changed;
}

/* A seed: a patch of the local sinusoid, radius 0.8 period, random phase. */
static void plant_seed(grow_state *g, const synth_master *m, int sx, int sy, double phase) {
    size_t o = (size_t)sy * m->w + sx;
    double p = m->period_map[o], t = m->orientation[o];
    double nx = -sin(t), ny = cos(t);
    int r = (int)ceil(0.8 * p);
    for (int y = sy - r; y <= sy + r; y++)
        for (int x = sx - r; x <= sx + r; x++) {
            if (x < 0 || y < 0 || x >= g->w || y >= g->h) continue;
            if ((x - sx) * (x - sx) + (y - sy) * (y - sy) > r * r) continue;
            if (g->filter[(size_t)y * g->w + x] < 0) continue;
            double v = cos(2 * M_PI * ((x - sx) * nx + (y - sy) * ny) / p + phase);
            *at(g, g->cur, y, x) = (float)v;
        }
}

static void free_state(grow_state *g) {
    free(g->cur);
    free(g->next);
    free(g->filter);
    free(g->active);
    free(g->near);
    free(g->full);
}

wh_status synth_grow_ridges(synth_master *m, wh_synth_rng *rng) {
    size_t n = (size_t)m->h * m->w;
    float pmin = m->period_map[0], pmax = pmin;
    for (size_t i = 0; i < n; i++) {
        pmin = fminf(pmin, m->period_map[i]);
        pmax = fmaxf(pmax, m->period_map[i]);
    }
    gabor_bank bank;
    WH_TRY(get_bank(&bank, pmin, pmax));
    grow_state g = {.h = m->h, .w = m->w, .pad = bank.pad};
    /* a window starting at x - radius reads kwp <= 2 radius + 8 columns */
    g.stride = (size_t)m->w + 2 * (size_t)g.pad + 8;
    size_t total = (size_t)(m->h + 2 * g.pad) * g.stride;
    g.bh = (m->h + BLOCK - 1) / BLOCK;
    g.bw = (m->w + BLOCK - 1) / BLOCK;
    g.cur = calloc(total, sizeof(float));
    g.next = calloc(total, sizeof(float));
    g.filter = malloc(n * sizeof(int));
    g.active = malloc((size_t)g.bh * g.bw);
    g.near = malloc((size_t)g.bh * g.bw);
    g.full = calloc((size_t)g.bh * g.bw, 1);
    int *inside = calloc((size_t)g.bh * g.bw, sizeof(int));
    /* the block maps borrow g.next as scratch */
    if (!g.cur || !g.next || !g.filter || !g.active || !g.near || !g.full || !inside ||
        total < (size_t)g.bh * g.bw) {
        free(inside);
        free_state(&g);
        return wh_fail(WH_ERR_MEMORY, "synth: out of memory growing the ridges");
    }
    /* grow a period beyond the silhouette so its edge cuts through ridges */
    double margin = 1.0 + 1.2 * m->period / m->sil.half_width;
    long domain = 0;
    for (int y = 0; y < m->h; y++)
        for (int x = 0; x < m->w; x++) {
            size_t o = (size_t)y * m->w + x;
            bool in = synth_silhouette_radius(&m->sil, x + 0.5, y + 0.5) < margin;
            g.filter[o] = in ? bank_index(&bank, m->orientation[o], m->period_map[o]) : -1;
            domain += in;
            inside[(y / BLOCK) * g.bw + x / BLOCK] += in;
        }
    for (int b = 0; b < g.bh * g.bw; b++) g.full[b] = inside[b] >= BLOCK * BLOCK / 2;
    free(inside);
    /* one seed per (2.5 periods)^2 of skin: fronts meet after a few steps;
     * sparser seeds give no fewer minutiae, only more iterations */
    int seeds = 1 + (int)(domain / (6.0 * m->period * m->period));
    for (int s = 0, tries = 0; s < seeds && tries < 100 * seeds; tries++) {
        int x = wh_synth_rng_int(rng, m->w), y = wh_synth_rng_int(rng, m->h);
        if (g.filter[(size_t)y * m->w + x] < 0) continue;
        plant_seed(&g, m, x, y, wh_synth_rng_range(rng, 0, 2 * M_PI));
        s++;
    }
    /* until every block has grown and fewer than 3% of the pixels still
     * flip (minutiae drift for a long time; their moves no longer matter) */
    long flips = domain;
    for (int it = 0; it < MAX_ITERATIONS; it++) {
        long ungrown = update_activity(&g);
        if (ungrown == 0 && flips <= 3 * domain / 100) break;
        flips = grow_step(&g, &bank, GAIN);
    }
    /* a last, unclipped pass rounds the square profile into a smooth one
     * (a saturated square wave answers with amplitude 4/pi) */
    update_activity(&g);
    grow_step(&g, &bank, M_PI / 4);
    for (int y = 0; y < m->h; y++) memcpy(m->ridges + (size_t)y * m->w, at(&g, g.cur, y, 0), m->w * sizeof(float));
    free_state(&g);
    return WH_OK;
}
