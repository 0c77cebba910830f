/* tostring(t): Torch7's layout.  One number format per tensor, chosen from
 * the range of its values (integers without decimals, a common scale
 * line such as "0.001 *" when all values share a magnitude, scientific
 * notation when they span more than four orders); 1-d tensors print as a column, matrices as
 * rows split into "Columns a to b" chunks of 80 characters, higher dims as
 * "(i,j,.,.) = " blocks of their last two dims; then a footer
 * "[whorl.FloatTensor of size 2x3]" with the autograd state.  Tensors of
 * more than SUMMARY_THRESHOLD elements show only the first and last
 * EDGE_ITEMS entries of each long dimension, with "..." between. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind_internal.h"

enum { SUMMARY_THRESHOLD = 1000, EDGE_ITEMS = 3, LINE_WIDTH = 80 };

typedef struct {
    const wh_tensor *t;
    bool summarize[WH_MAX_DIMS];
    char fmt[16];
    int width;
    double scale; /* 0: none */
} printer;

/* Positions along dim d: all indices, or EDGE_ITEMS, an ellipsis, EDGE_ITEMS. */
static int64_t npos(const printer *p, int d) {
    return p->summarize[d] ? 2 * EDGE_ITEMS + 1 : p->t->shape[d];
}

/* The index at position i of dim d, or -1 for the ellipsis. */
static int64_t pos_index(const printer *p, int d, int64_t i) {
    if (!p->summarize[d]) return i;
    if (i < EDGE_ITEMS) return i;
    if (i == EDGE_ITEMS) return -1;
    return p->t->shape[d] - (2 * EDGE_ITEMS + 1 - i);
}

static double value_at(const printer *p, const int64_t *idx) {
    int64_t off = p->t->offset;
    for (int d = 0; d < p->t->ndim; d++) off += idx[d] * p->t->stride[d];
    return whl_load(p->t, off);
}

/* Min/max magnitude and integrality over the printed values. */
typedef struct {
    bool any, all_int;
    double min_abs, max_abs;
} stats;

static void gather(const printer *p, int d, int64_t *idx, stats *s) {
    if (d == p->t->ndim) {
        double v = value_at(p, idx);
        if (!isfinite(v)) return;
        double a = fabs(v);
        if (!s->any || a < s->min_abs) s->min_abs = a;
        if (!s->any || a > s->max_abs) s->max_abs = a;
        if (v != ceil(v)) s->all_int = false;
        s->any = true;
        return;
    }
    for (int64_t i = 0; i < npos(p, d); i++) {
        if ((idx[d] = pos_index(p, d, i)) < 0) continue;
        gather(p, d + 1, idx, s);
    }
}

static int magnitude(double a) { return a != 0 ? (int)floor(log10(a)) + 1 : 1; }

static void choose_format(printer *p) {
    int64_t idx[WH_MAX_DIMS] = {0};
    stats s = {false, true, 0, 0};
    gather(p, 0, idx, &s);
    int emin = magnitude(s.min_abs), emax = magnitude(s.max_abs);
    p->scale = 0;
    if (s.all_int || p->t->dtype == WH_UINT8) {
        if (emax > 9) {
            snprintf(p->fmt, sizeof p->fmt, "%%11.4e");
            p->width = 11;
        } else {
            p->width = emax + 1;
            snprintf(p->fmt, sizeof p->fmt, "%%%d.0f", p->width);
        }
    } else if (emax - emin > 4) {
        p->width = abs(emax) > 99 || abs(emin) > 99 ? 12 : 11;
        snprintf(p->fmt, sizeof p->fmt, "%%%d.4e", p->width);
    } else if (emax > 5 || emax < 0) {
        p->width = 7;
        snprintf(p->fmt, sizeof p->fmt, "%%7.4f");
        p->scale = pow(10, emax - 1);
    } else {
        p->width = emax + 6;
        snprintf(p->fmt, sizeof p->fmt, "%%%d.4f", p->width);
    }
}

static void add_value(luaL_Buffer *b, const printer *p, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, p->fmt, p->scale ? v / p->scale : v);
    luaL_addstring(b, buf);
}

static void add_ellipsis(luaL_Buffer *b, int width) {
    char buf[64];
    snprintf(buf, sizeof buf, "%*s", width < 60 ? width : 60, "...");
    luaL_addstring(b, buf);
}

static void add_scale(luaL_Buffer *b, const printer *p) {
    char buf[64];
    if (!p->scale) return;
    snprintf(buf, sizeof buf, "%g *\n", p->scale);
    luaL_addstring(b, buf);
}

static void print_vector(luaL_Buffer *b, const printer *p) {
    int64_t idx[1];
    add_scale(b, p);
    for (int64_t i = 0; i < npos(p, 0); i++) {
        if ((idx[0] = pos_index(p, 0, i)) < 0) add_ellipsis(b, p->width);
        else add_value(b, p, value_at(p, idx));
        luaL_addchar(b, '\n');
    }
}

/* The last two dims at the leading index idx[0 .. ndim-3]. */
static void print_matrix(luaL_Buffer *b, const printer *p, int64_t *idx) {
    int r = p->t->ndim - 2, c = r + 1;
    int64_t ncols = npos(p, c), per_line = LINE_WIDTH / (p->width + 1);
    if (per_line < 1) per_line = 1;
    for (int64_t first = 0; first < ncols; first += per_line) {
        int64_t last = first + per_line < ncols ? first + per_line : ncols;
        if (per_line < ncols) {
            char buf[80];
            if (first) luaL_addchar(b, '\n');
            snprintf(buf, sizeof buf, "Columns %lld to %lld\n", (long long)first + 1,
                     (long long)last);
            luaL_addstring(b, buf);
        }
        add_scale(b, p);
        for (int64_t i = 0; i < npos(p, r); i++) {
            idx[r] = pos_index(p, r, i);
            for (int64_t j = first; j < last; j++) {
                luaL_addchar(b, ' ');
                idx[c] = pos_index(p, c, j);
                if (idx[r] < 0 || idx[c] < 0) add_ellipsis(b, p->width);
                else add_value(b, p, value_at(p, idx));
            }
            luaL_addchar(b, '\n');
        }
    }
}

static void print_blocks(luaL_Buffer *b, const printer *p, int d, int64_t *idx) {
    if (d == p->t->ndim - 2) {
        char buf[32];
        luaL_addchar(b, '(');
        for (int k = 0; k < d; k++) {
            snprintf(buf, sizeof buf, "%lld,", (long long)idx[k] + 1);
            luaL_addstring(b, buf);
        }
        luaL_addstring(b, ".,.) = \n");
        print_matrix(b, p, idx);
        luaL_addchar(b, '\n');
        return;
    }
    for (int64_t i = 0; i < npos(p, d); i++) {
        if ((idx[d] = pos_index(p, d, i)) < 0) luaL_addstring(b, "...\n\n");
        else print_blocks(b, p, d + 1, idx);
    }
}

static void add_footer(luaL_Buffer *b, const wh_tensor *t) {
    char buf[64];
    luaL_addchar(b, '[');
    luaL_addstring(b, whl_type_name(t->dtype));
    if (t->ndim == 0) {
        luaL_addstring(b, " scalar");
    } else {
        luaL_addstring(b, " of size ");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(buf, sizeof buf, d ? "x%lld" : "%lld", (long long)t->shape[d]);
            luaL_addstring(b, buf);
        }
    }
    if (t->grad_fn) {
        luaL_addstring(b, ", grad_fn=");
        luaL_addstring(b, t->grad_fn->name);
    } else if (t->requires_grad) {
        luaL_addstring(b, ", requires grad");
    }
    wh_device dev = wh_tensor_device(t);
    if (dev.type != WH_CPU) {
        luaL_addstring(b, ", device=");
        luaL_addstring(b, wh_device_name(dev, buf, sizeof buf));
    }
    luaL_addchar(b, ']');
}

void whl_push_tensor_string(lua_State *L, wh_tensor *t) {
    int top = lua_gettop(L);
    printer p = {.t = whl_to_host(L, t)};
    int64_t n = wh_tensor_numel(t);
    for (int d = 0; d < t->ndim; d++)
        p.summarize[d] = n > SUMMARY_THRESHOLD && t->shape[d] > 2 * EDGE_ITEMS;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (n > 0) {
        int64_t idx[WH_MAX_DIMS] = {0};
        choose_format(&p);
        if (t->ndim == 0) {
            add_value(&b, &p, value_at(&p, idx));
            luaL_addchar(&b, '\n');
        } else if (t->ndim == 1) {
            print_vector(&b, &p);
        } else {
            if (t->ndim == 2) print_matrix(&b, &p, idx);
            else print_blocks(&b, &p, 0, idx);
        }
    }
    add_footer(&b, t);
    luaL_pushresult(&b);
    if (lua_gettop(L) > top + 1) { /* a host copy sits below the string */
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
    }
}
