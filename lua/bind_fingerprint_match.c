/* Lua: matching and score statistics in whorl.fingerprint (core/fp_match.h).
 *
 * A template is what fp.extract returns: {minutiae = {{x=, y=, angle=,
 * type=, quality=}, ...}, height=, width=} (0-based pixels, angles in
 * radians in the image frame).  Only x, y and angle are used by the matcher.
 *
 *   fp.mcc(template [, {dpi=500}]) -> cylinders (userdata; #c = valid cylinders)
 *       Minutia Cylinder-Code of one print, built once and reused by every
 *       comparison; anywhere a template is accepted below, cylinders are too.
 *       c:close() frees their memory now (about 2.8 KB a cylinder) rather
 *       than at a garbage collection (which counts it: whl_gc_account).
 *   fp.mcc_all(templates [, {dpi=500}]) -> list of cylinders (OpenMP over prints)
 *   fp.match(a, b [, {dpi=500}]) -> score in [0, 1], pairs
 *       score 1 for identical templates (0.99 and more), 0 when either has
 *       no usable minutia (a cylinder needs two neighbours and 75% of its
 *       disc inside the minutiae's hull grown by 50 px); invariant to
 *       translation and to rotations up to 90 degrees (minutiae turned
 *       further apart never pair, as in the paper); pairs = {{a=i, b=j, similarity=}, ...}: 1-based
 *       minutia indices of the pairs the score averages, best first.
 *   fp.match_all(list_a, list_b [, {dpi=500, pairs={{i, j}, ...}}]) -> scores
 *       Every a against every b: a float64 tensor (#list_a, #list_b); with
 *       pairs, only those comparisons (1-based indices): a tensor (#pairs).
 *       OpenMP over comparisons, cylinders built once per template.
 *   fp.threshold_at_fmr(impostor_scores, fmr) -> threshold
 *   fp.gmr(genuine_scores, threshold) -> rate
 *   fp.eer(genuine_scores, impostor_scores) -> eer, threshold
 *       Scores: a Lua list of numbers or a tensor.  A comparison is a match
 *       when its score is strictly above the threshold; the threshold at an
 *       FMR f is the (floor(f n) + 1)-th highest impostor score; the EER is
 *       interpolated linearly where the FMR and FNMR curves cross. */
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "fp_match.h"

#define MCC_MT "whorl.fingerprint.Cylinders"

/* ---- templates from Lua ----------------------------------------------------------- */

static double minutia_number(lua_State *L, int m, const char *key, const char *op, int arg, int k) {
    lua_getfield(L, m, key);
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: argument %d: minutia %d has no number '%s' (got %s)", op, arg, k, key,
                   luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Reads the template table at idx into t (minutiae in a userdata anchored on
 * the stack, so nothing leaks if a later check raises). */
static void read_template(lua_State *L, int idx, const char *op, int arg, wh_template *t) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: argument %d must be a template table or cylinders, got %s", op, arg,
                   luaL_typename(L, idx));
    if (lua_getfield(L, idx, "minutiae") != LUA_TTABLE)
        luaL_error(L, "%s: argument %d: template.minutiae must be a list, got %s", op, arg,
                   luaL_typename(L, -1));
    int list = lua_gettop(L);
    lua_Integer n = luaL_len(L, list);
    if (n > 100000) luaL_error(L, "%s: argument %d: %I minutiae is too many", op, arg, n);
    memset(t, 0, sizeof *t);
    t->count = (int)n;
    t->minutiae = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof(wh_minutia), 0);
    lua_replace(L, list); /* the anchor takes the list's slot */
    lua_getfield(L, idx, "minutiae");
    for (int k = 0; k < n; k++) {
        if (lua_geti(L, -1, k + 1) != LUA_TTABLE)
            luaL_error(L, "%s: argument %d: minutia %d must be a table, got %s", op, arg, k + 1,
                       luaL_typename(L, -1));
        int m = lua_gettop(L);
        wh_minutia *mi = &t->minutiae[k];
        mi->x = (float)minutia_number(L, m, "x", op, arg, k + 1);
        mi->y = (float)minutia_number(L, m, "y", op, arg, k + 1);
        mi->angle = (float)minutia_number(L, m, "angle", op, arg, k + 1);
        lua_getfield(L, m, "type");
        const char *type = lua_tostring(L, -1);
        mi->type = type && strcmp(type, "bifurcation") == 0 ? WH_MINUTIA_BIFURCATION : WH_MINUTIA_ENDING;
        lua_getfield(L, m, "quality");
        mi->quality = lua_isnumber(L, -1) ? (float)lua_tonumber(L, -1) : 1.0f;
        lua_settop(L, m - 1);
    }
    lua_pop(L, 1);
    t->height = (int)whl_opt_field_integer(L, idx, "height", 0);
    t->width = (int)whl_opt_field_integer(L, idx, "width", 0);
}

static wh_mcc_params check_params(lua_State *L, int opts, const char *op) {
    double dpi = lua_isnoneornil(L, opts) ? 500 : whl_opt_field_number(L, opts, "dpi", 500);
    if (!(dpi >= 50 && dpi <= 5000)) luaL_error(L, "%s: option 'dpi' must be 50..5000, got %f", op, dpi);
    return wh_mcc_defaults(dpi);
}

/* ---- cylinders userdata --------------------------------------------------------------- */

static int mcc_gc(lua_State *L) {
    wh_mcc_free(luaL_checkudata(L, 1, MCC_MT));
    return 0;
}

static int mcc_close(lua_State *L) {
    wh_mcc_free(luaL_checkudata(L, 1, MCC_MT));
    return 0;
}

/* Cylinders that were closed (wh_mcc_free zeroes them) cannot be used. */
static wh_mcc_template *check_open(lua_State *L, wh_mcc_template *m, const char *op, int arg) {
    if (m && m->cells == 0) luaL_error(L, "%s: argument %d: the cylinders were closed", op, arg);
    return m;
}

static int mcc_len(lua_State *L) {
    lua_pushinteger(L, ((wh_mcc_template *)luaL_checkudata(L, 1, MCC_MT))->count);
    return 1;
}

static int mcc_tostring(lua_State *L) {
    wh_mcc_template *m = luaL_checkudata(L, 1, MCC_MT);
    lua_pushfstring(L, "whorl.fingerprint cylinders (%d of %d minutiae, %f dpi)", m->count, m->minutiae,
                    m->params.dpi);
    return 1;
}

/* A zeroed cylinders userdata with its finaliser, pushed. */
static wh_mcc_template *push_mcc(lua_State *L) {
    wh_mcc_template *m = lua_newuserdatauv(L, sizeof *m, 0);
    memset(m, 0, sizeof *m);
    if (luaL_newmetatable(L, MCC_MT)) {
        lua_pushcfunction(L, mcc_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, mcc_len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, mcc_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, mcc_close);
        lua_setfield(L, -2, "__close");
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, mcc_close);
        lua_setfield(L, -2, "close");
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
    return m;
}

/* Cylinders for the value at idx: the userdata itself, or built from a
 * template (the new userdata is pushed as an anchor; nothing is pushed for
 * a userdata). */
static const wh_mcc_template *to_mcc(lua_State *L, int idx, const wh_mcc_params *p, const char *op,
                                     int arg) {
    wh_mcc_template *m = check_open(L, luaL_testudata(L, idx, MCC_MT), op, arg);
    if (m) {
        if (m->params.dpi != p->dpi)
            luaL_error(L, "%s: argument %d: cylinders built at %f dpi, comparison at %f dpi", op, arg,
                       m->params.dpi, p->dpi);
        return m;
    }
    wh_template t;
    read_template(L, idx, op, arg, &t); /* pushes the minutiae anchor */
    m = push_mcc(L);
    whl_check(L, wh_mcc_build(&t, p, m));
    lua_remove(L, -2);
    whl_gc_account(L);
    return m;
}

static int l_mcc(lua_State *L) {
    static const char *const allowed[] = {"dpi", NULL};
    whl_check_options(L, 2, "fingerprint.mcc", allowed, false);
    wh_mcc_params p = check_params(L, 2, "fingerprint.mcc");
    if (check_open(L, luaL_testudata(L, 1, MCC_MT), "fingerprint.mcc", 1)) {
        lua_settop(L, 1);
        return 1;
    }
    to_mcc(L, 1, &p, "fingerprint.mcc", 1);
    return 1;
}

static int l_match(lua_State *L) {
    static const char *const allowed[] = {"dpi", NULL};
    const char *op = "fingerprint.match";
    whl_check_options(L, 3, op, allowed, false);
    wh_mcc_params p = check_params(L, 3, op);
    lua_settop(L, 3);
    const wh_mcc_template *a = to_mcc(L, 1, &p, op, 1);
    const wh_mcc_template *b = to_mcc(L, 2, &p, op, 2);
    wh_match_pair pairs[WH_MCC_MAX_PAIRS];
    int npairs = 0;
    double score = 0;
    whl_check(L, wh_mcc_match(a, b, &score, pairs, WH_MCC_MAX_PAIRS, &npairs));
    lua_pushnumber(L, score);
    lua_createtable(L, npairs, 0);
    for (int k = 0; k < npairs; k++) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, pairs[k].a + 1);
        lua_setfield(L, -2, "a");
        lua_pushinteger(L, pairs[k].b + 1);
        lua_setfield(L, -2, "b");
        lua_pushnumber(L, pairs[k].similarity);
        lua_setfield(L, -2, "similarity");
        lua_rawseti(L, -2, k + 1);
    }
    return 2;
}

/* ---- many comparisons ------------------------------------------------------------------ */

/* The templates of a list, built in parallel: the raw templates are read on
 * this thread (Lua is not thread-safe), the cylinders built under OpenMP.
 * The returned array of pointers lives in a userdata pushed on the stack,
 * together with one cylinders userdata per template in a table. */
static const wh_mcc_template **list_mcc(lua_State *L, int idx, const wh_mcc_params *p, const char *op,
                                        int arg, int *count) {
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: argument %d must be a list of templates, got %s", op, arg, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    if (n > 10000000) luaL_error(L, "%s: argument %d: too many templates", op, arg);
    const wh_mcc_template **ptr = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *ptr, 0);
    lua_createtable(L, (int)n, 0); /* anchors: minutiae and new cylinders */
    int anchors = lua_gettop(L);
    wh_template *raw = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *raw, 0);
    lua_rawseti(L, anchors, n + 1);
    wh_mcc_template **todo = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *todo, 0);
    lua_rawseti(L, anchors, n + 2);
    int nbuild = 0;
    for (lua_Integer i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        wh_mcc_template *m = check_open(L, luaL_testudata(L, -1, MCC_MT), op, arg);
        if (m) {
            if (m->params.dpi != p->dpi)
                luaL_error(L, "%s: argument %d: cylinders %I built at %f dpi, comparison at %f dpi", op, arg,
                           i + 1, m->params.dpi, p->dpi);
            lua_rawseti(L, anchors, i + 1);
            ptr[i] = m;
            continue;
        }
        read_template(L, -1, op, arg, &raw[nbuild]); /* pushes the minutiae anchor */
        lua_rawseti(L, anchors, n + 3 + nbuild);
        lua_pop(L, 1);
        m = push_mcc(L);
        lua_rawseti(L, anchors, i + 1);
        ptr[i] = todo[nbuild++] = m;
    }
    int failed = 0;
    char message[256] = "";
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < nbuild; k++)
        if (wh_mcc_build(&raw[k], p, todo[k]) != WH_OK) {
#pragma omp critical(whl_mcc_list_error)
            if (!failed) {
                failed = 1;
                strncpy(message, wh_error_message(), sizeof message - 1);
            }
        }
    if (failed) luaL_error(L, "%s: argument %d: %s", op, arg, message);
    whl_gc_account(L);
    *count = (int)n;
    return ptr;
}

static int l_mcc_all(lua_State *L) {
    static const char *const allowed[] = {"dpi", NULL};
    const char *op = "fingerprint.mcc_all";
    whl_check_options(L, 2, op, allowed, false);
    wh_mcc_params p = check_params(L, 2, op);
    lua_settop(L, 2);
    int n = 0;
    list_mcc(L, 1, &p, op, 1, &n); /* pushes the pointers, then the anchors table */
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_geti(L, -2, i); /* the anchors table holds the cylinders at 1..n */
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int l_match_all(lua_State *L) {
    static const char *const allowed[] = {"dpi", "pairs", NULL};
    const char *op = "fingerprint.match_all";
    whl_check_options(L, 3, op, allowed, false);
    wh_mcc_params p = check_params(L, 3, op);
    lua_settop(L, 3);
    int na = 0, nb = 0;
    const wh_mcc_template **a = list_mcc(L, 1, &p, op, 1, &na);
    const wh_mcc_template **b = list_mcc(L, 2, &p, op, 2, &nb);
    int *pa = NULL, *pb = NULL;
    int64_t npairs = 0;
    if (!lua_isnil(L, 3) && lua_getfield(L, 3, "pairs") != LUA_TNIL) {
        int list = lua_gettop(L);
        if (!lua_istable(L, list)) luaL_error(L, "%s: option 'pairs' must be a list of {i, j}", op);
        npairs = luaL_len(L, list);
        pa = lua_newuserdatauv(L, (size_t)(npairs > 0 ? npairs : 1) * 2 * sizeof(int), 0);
        pb = pa + npairs;
        for (int64_t k = 0; k < npairs; k++) {
            lua_geti(L, list, k + 1);
            lua_geti(L, -1, 1);
            lua_geti(L, -2, 2);
            int oki, okj;
            lua_Integer i = lua_tointegerx(L, -2, &oki), j = lua_tointegerx(L, -1, &okj);
            if (!oki || !okj || i < 1 || i > na || j < 1 || j > nb)
                luaL_error(L, "%s: pair %I must be {i, j} with 1 <= i <= %d and 1 <= j <= %d", op,
                           (lua_Integer)k + 1, na, nb);
            pa[k] = (int)i - 1;
            pb[k] = (int)j - 1;
            lua_pop(L, 3);
        }
    }
    wh_tensor *out = NULL;
    int64_t shape[2] = {pa ? npairs : na, nb};
    whl_check(L, wh_tensor_empty(WH_FLOAT64, pa ? 1 : 2, shape, NULL, &out));
    whl_push_tensor(L, out);
    whl_check(L, wh_mcc_match_many(a, na, b, nb, pa, pb, npairs, wh_tensor_data(out)));
    return 1;
}

/* ---- score statistics ------------------------------------------------------------------- */

/* The scores at idx (a list of numbers or a tensor) as doubles in a
 * userdata pushed on the stack. */
static double *check_scores(lua_State *L, int idx, const char *op, const char *what, int64_t *n) {
    if (whl_is_tensor(L, idx)) {
        wh_tensor *t = whl_check_tensor(L, idx), *d = NULL, *c = NULL;
        if (wh_tensor_device(t).type != WH_CPU) luaL_error(L, "%s: %s scores must be on the CPU", op, what);
        *n = wh_tensor_numel(t);
        double *s = lua_newuserdatauv(L, (size_t)(*n > 0 ? *n : 1) * sizeof *s, 0);
        whl_check(L, wh_to_dtype_raw(t, WH_FLOAT64, &d));
        wh_status st = wh_contiguous_raw(d, false, &c);
        if (st == WH_OK) memcpy(s, wh_tensor_data(c), (size_t)*n * sizeof *s);
        wh_tensor_release(d);
        if (c) wh_tensor_release(c);
        whl_check(L, st);
        return s;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: %s scores must be a list of numbers or a tensor, got %s", op, what,
                   luaL_typename(L, idx));
    *n = luaL_len(L, idx);
    double *s = lua_newuserdatauv(L, (size_t)(*n > 0 ? *n : 1) * sizeof *s, 0);
    for (int64_t i = 0; i < *n; i++) {
        lua_geti(L, idx, i + 1);
        int ok;
        s[i] = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "%s: %s score %I is not a number (got %s)", op, what, (lua_Integer)i + 1,
                            luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return s;
}

static int l_threshold_at_fmr(lua_State *L) {
    const char *op = "fingerprint.threshold_at_fmr";
    double fmr = luaL_checknumber(L, 2);
    int64_t n = 0;
    double *s = check_scores(L, 1, op, "impostor", &n);
    double t = 0;
    whl_check(L, wh_eval_threshold_at_fmr(s, n, fmr, &t));
    lua_pushnumber(L, t);
    return 1;
}

static int l_gmr(lua_State *L) {
    double threshold = luaL_checknumber(L, 2);
    int64_t n = 0;
    double *s = check_scores(L, 1, "fingerprint.gmr", "genuine", &n);
    double g = 0;
    whl_check(L, wh_eval_gmr(s, n, threshold, &g));
    lua_pushnumber(L, g);
    return 1;
}

static int l_eer(lua_State *L) {
    const char *op = "fingerprint.eer";
    int64_t ng = 0, ni = 0;
    double *g = check_scores(L, 1, op, "genuine", &ng);
    double *im = check_scores(L, 2, op, "impostor", &ni);
    double eer = 0, t = 0;
    whl_check(L, wh_eval_eer(g, ng, im, ni, &eer, &t));
    lua_pushnumber(L, eer);
    lua_pushnumber(L, t);
    return 2;
}

void whl_open_fingerprint_match(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"mcc", l_mcc},
        {"mcc_all", l_mcc_all},
        {"match", l_match},
        {"match_all", l_match_all},
        {"threshold_at_fmr", l_threshold_at_fmr},
        {"gmr", l_gmr},
        {"eer", l_eer},
        {NULL, NULL},
    };
    /* extraction and matching both add to it, in either order */
    whl_add_to_subtable(L, module, "fingerprint", funcs);
}
