/* Lua: whorl.synth, synthetic fingerprints and realistic damage.
 *
 *   whorl.synth.fingerprint{size=224 | {h, w}, dpi=500, period=nil, seed=0,
 *                           finger=0, impression=0, class=nil, fields=false}
 *       -> image (h, w) float32 in [0, 1] (ridges dark), info
 *       The finger (its class, ridges and minutiae) depends on (seed,
 *       finger) only; impression k of it adds a rigid motion, an elastic
 *       distortion, pressure, dryness and noise.  period is the mean ridge
 *       period in pixels (default drawn from 8.2-10 px at 500 dpi, scaled by
 *       dpi/500).  class: "arch", "tented_arch", "left_loop", "right_loop"
 *       or "whorl" (default drawn with the natural frequencies).
 *       The finger always fills the canvas (its tip near the top, its lower
 *       part running off the bottom edge as on a sensor); dpi sets only the
 *       ridge period.  A real finger is about 35 ridges wide, so a whole
 *       finger looks natural near dpi = 1.33 * width (400 for 300x300);
 *       SOCOFing's 96x103 prints are coarser, about 4 px a ridge: dpi 250.
 *       info = {class=, finger=, impression=, seed=, period=, dx=, dy=,
 *               rotation= (radians), center={x, y},
 *               singular={{x=, y=, type="core"|"delta"}},
 *               minutiae={{x=, y=, type="ending"|"bifurcation", angle=}}}
 *       with 1-based pixel coordinates (pixel (1,1) is centred on x=1, y=1);
 *       the impression moved the finger by `rotation` about `center`, then
 *       by (dx, dy), before its elastic distortion;
 *       angles in radians from +x towards +y (down); with fields=true also
 *       info.orientation (ridge direction in [0, pi)), info.period_map and
 *       info.mask (the finger's foreground), each (h, w).
 *   whorl.synth.batch{count=N, impressions=1, info=true, ...same options}
 *       -> images (N, 1, h, w), infos (a list, or nil with info=false)
 *       Print i is impression impression + (i-1) % impressions of finger
 *       finger + (i-1) // impressions; OpenMP over fingers.
 *   whorl.synth.damage(images, kind, {level="medium", seed=0})
 *   whorl.synth.damage(images, kind, level)
 *       -> damaged, mask, choices
 *       images (h, w), (1, h, w) or (N, 1, h, w); damaged and mask have the
 *       same shape (float32); mask is 1 where the damage applies and the
 *       other pixels are copied unchanged.  kind is a name of
 *       whorl.synth.damage_kinds, a list of names, or "random" (any); level
 *       "easy", "medium", "hard", a list of them, or "random".  With lists,
 *       each image draws its own; choices lists {kind=, level=} per image.
 *       Image i of a batch uses seed mix(seed, i), so a batch is
 *       reproducible and its images independent.
 *   whorl.synth.classes, whorl.synth.class_frequencies,
 *   whorl.synth.damage_kinds, whorl.synth.levels */
#include <string.h>

#include "binding.h"
#include "synth.h"

/* The generation options shared by fingerprint and batch. */
static wh_synth_params check_params(lua_State *L, int idx, const char *op) {
    wh_synth_params p = {0};
    int size[2];
    whl_opt_field_pair(L, idx, "size", 224, size);
    p.height = size[0];
    p.width = size[1];
    if (p.height < 16 || p.width < 16 || p.height > WH_SYNTH_MAX_SIDE || p.width > WH_SYNTH_MAX_SIDE)
        luaL_error(L, "%s: option 'size' must be from 16 to %d pixels a side, got %dx%d", op,
                   WH_SYNTH_MAX_SIDE, p.height, p.width);
    p.dpi = whl_opt_field_number(L, idx, "dpi", 500);
    p.period = whl_opt_field_number(L, idx, "period", 0);
    if (!lua_isnoneornil(L, idx)) {
        lua_getfield(L, idx, "period");
        if (!lua_isnil(L, -1) && !(p.period > 0))
            luaL_error(L, "%s: option 'period' must be a positive number of pixels, got %f", op, p.period);
        lua_pop(L, 1);
    }
    p.seed = (uint64_t)whl_opt_field_integer(L, idx, "seed", 0);
    p.finger = (int64_t)whl_opt_field_integer(L, idx, "finger", 0);
    lua_Integer imp = whl_opt_field_integer(L, idx, "impression", 0);
    if (imp < 0 || imp > 1000000000)
        luaL_error(L, "%s: option 'impression' must be >= 0, got %I", op, imp);
    p.impression = (int)imp;
    p.cls = -1;
    if (!lua_isnoneornil(L, idx) && lua_getfield(L, idx, "class") != LUA_TNIL) {
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        p.cls = wh_fp_class_from_name(name);
        if (p.cls < 0)
            luaL_error(L, "%s: option 'class' must be arch, tented_arch, left_loop, right_loop or whorl, got %s",
                       op, name ? name : luaL_typename(L, -1));
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, idx)) {
        lua_pop(L, 1);
    }
    /* the core repeats these checks; here they name the Lua option */
    if (wh_synth_check_params(&p) != WH_OK) {
        const char *msg = wh_error_message();
        luaL_error(L, "%s: %s", op, strncmp(msg, "synth: ", 7) == 0 ? msg + 7 : msg);
    }
    return p;
}

static void set_number(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* Pushes the info table of one print (coordinates made 1-based). */
static void push_info(lua_State *L, const wh_fp_info *info, const wh_synth_params *p) {
    lua_createtable(L, 0, 10);
    lua_pushstring(L, wh_fp_class_name(info->cls));
    lua_setfield(L, -2, "class");
    lua_pushinteger(L, (lua_Integer)p->finger);
    lua_setfield(L, -2, "finger");
    lua_pushinteger(L, p->impression);
    lua_setfield(L, -2, "impression");
    lua_pushinteger(L, (lua_Integer)p->seed);
    lua_setfield(L, -2, "seed");
    set_number(L, "period", info->period);
    set_number(L, "dx", info->dx);
    set_number(L, "dy", info->dy);
    set_number(L, "rotation", info->rotation);
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, info->cx + 0.5);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, info->cy + 0.5);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "center");
    lua_createtable(L, info->nsingular, 0);
    for (int k = 0; k < info->nsingular; k++) {
        lua_createtable(L, 0, 3);
        set_number(L, "x", info->singular[k].x + 0.5);
        set_number(L, "y", info->singular[k].y + 0.5);
        lua_pushstring(L, info->singular[k].kind > 0 ? "core" : "delta");
        lua_setfield(L, -2, "type");
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "singular");
    lua_createtable(L, info->nminutiae, 0);
    for (int k = 0; k < info->nminutiae; k++) {
        lua_createtable(L, 0, 4);
        set_number(L, "x", info->minutiae[k].x + 0.5);
        set_number(L, "y", info->minutiae[k].y + 0.5);
        set_number(L, "angle", info->minutiae[k].angle);
        lua_pushstring(L, info->minutiae[k].kind == 1 ? "ending" : "bifurcation");
        lua_setfield(L, -2, "type");
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "minutiae");
}

static wh_tensor *new_tensor(lua_State *L, int ndim, const int64_t *shape) {
    wh_tensor *t = NULL;
    whl_check(L, wh_tensor_empty(WH_FLOAT32, ndim, shape, NULL, &t));
    whl_push_tensor(L, t);
    return t;
}

/* Minutiae live in malloc'd arrays while the info tables are built; this
 * userdata frees them even if building raises. */
typedef struct {
    int n;
    wh_fp_info *infos;
} info_guard;

static void free_infos(info_guard *g) {
    for (int i = 0; g->infos && i < g->n; i++) wh_fp_info_free(&g->infos[i]);
    g->n = 0;
}

static int info_guard_gc(lua_State *L) {
    free_infos(lua_touserdata(L, 1));
    return 0;
}

static info_guard *push_info_guard(lua_State *L, int n) {
    info_guard *g = lua_newuserdatauv(L, sizeof *g + (size_t)n * sizeof(wh_fp_info), 0);
    g->n = n;
    g->infos = (wh_fp_info *)(g + 1);
    memset(g->infos, 0, (size_t)n * sizeof(wh_fp_info));
    if (luaL_newmetatable(L, "whorl.synth.info_guard")) {
        lua_pushcfunction(L, info_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return g;
}

static int l_fingerprint(lua_State *L) {
    static const char *const allowed[] = {"size", "dpi", "period", "seed", "finger", "impression",
                                          "class", "fields", NULL};
    whl_check_options(L, 1, "synth.fingerprint", allowed, false);
    wh_synth_params p = check_params(L, 1, "synth.fingerprint");
    bool fields = whl_opt_field_boolean(L, 1, "fields", false);
    lua_settop(L, 1);
    int64_t shape[2] = {p.height, p.width};
    wh_tensor *img = new_tensor(L, 2, shape); /* 2 */
    wh_fp_fields f = {0};
    if (fields) {
        f.orientation = wh_tensor_data(new_tensor(L, 2, shape)); /* 3 */
        f.period = wh_tensor_data(new_tensor(L, 2, shape));      /* 4 */
        f.mask = wh_tensor_data(new_tensor(L, 2, shape));        /* 5 */
    }
    info_guard *g = push_info_guard(L, 1);
    whl_check(L, wh_synth_fingerprint(&p, wh_tensor_data(img), &g->infos[0], fields ? &f : NULL));
    lua_pushvalue(L, 2);
    push_info(L, &g->infos[0], &p);
    if (fields) {
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "orientation");
        lua_pushvalue(L, 4);
        lua_setfield(L, -2, "period_map");
        lua_pushvalue(L, 5);
        lua_setfield(L, -2, "mask");
    }
    free_infos(g); /* now rather than at the next collection */
    return 2;
}

static int l_batch(lua_State *L) {
    static const char *const allowed[] = {"count", "impressions", "info", "size", "dpi", "period",
                                          "seed", "finger", "impression", "class", NULL};
    if (lua_type(L, 1) != LUA_TTABLE)
        luaL_error(L, "synth.batch: expected an options table with at least count, got %s",
                   luaL_typename(L, 1));
    whl_check_options(L, 1, "synth.batch", allowed, false);
    lua_getfield(L, 1, "count");
    if (lua_isnil(L, -1)) luaL_error(L, "synth.batch: option 'count' is required");
    lua_pop(L, 1);
    lua_Integer count = whl_opt_field_integer(L, 1, "count", 0);
    lua_Integer imps = whl_opt_field_integer(L, 1, "impressions", 1);
    if (count < 1 || count > 10000000)
        luaL_error(L, "synth.batch: option 'count' must be >= 1, got %I", count);
    if (imps < 1 || imps > 1000000)
        luaL_error(L, "synth.batch: option 'impressions' must be >= 1, got %I", imps);
    wh_synth_params p = check_params(L, 1, "synth.batch");
    bool want_info = whl_opt_field_boolean(L, 1, "info", true);
    lua_settop(L, 1);
    int64_t shape[4] = {count, 1, p.height, p.width};
    wh_tensor *imgs = new_tensor(L, 4, shape); /* 2 */
    info_guard *g = want_info ? push_info_guard(L, (int)count) : NULL;
    whl_check(L, wh_synth_batch(&p, (int)count, (int)imps, wh_tensor_data(imgs), g ? g->infos : NULL));
    lua_pushvalue(L, 2);
    if (!g) {
        lua_pushnil(L);
        return 2;
    }
    lua_createtable(L, (int)count, 0);
    for (int i = 0; i < count; i++) {
        wh_synth_params q = p;
        q.finger = p.finger + i / imps;
        q.impression = p.impression + (int)(i % imps);
        push_info(L, &g->infos[i], &q);
        lua_rawseti(L, -2, i + 1);
    }
    free_infos(g);
    return 2;
}

/* ---- damage -------------------------------------------------------------------- */

/* Reads a name or a list of names (or "random") at idx into ids; returns
 * how many.  from_name maps a name to an id or -1. */
static int check_names(lua_State *L, int idx, const char *what, int (*from_name)(const char *),
                       int nall, const char *(*name_of)(int), int *ids) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strcmp(s, "random") == 0) {
            for (int i = 0; i < nall; i++) ids[i] = i;
            return nall;
        }
        ids[0] = from_name(s);
        if (ids[0] >= 0) return 1;
        lua_pushvalue(L, idx);
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        int n = (int)luaL_len(L, idx);
        if (n < 1 || n > 64) luaL_error(L, "synth.damage: the list of %ss must hold 1 to 64 names", what);
        for (int i = 0; i < n; i++) {
            lua_geti(L, idx, i + 1);
            ids[i] = lua_type(L, -1) == LUA_TSTRING ? from_name(lua_tostring(L, -1)) : -1;
            if (ids[i] < 0) break;
            lua_pop(L, 1);
            if (i == n - 1) return n;
        }
    } else {
        lua_pushvalue(L, idx);
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < nall; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, name_of(i));
    }
    luaL_pushresult(&b);
    if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_error(L, "synth.damage: a %s must be a name, got a %s (expected %s, a list of them, or random)",
                          what, luaL_typename(L, -2), lua_tostring(L, -1));
    return luaL_error(L, "synth.damage: unknown %s '%s' (expected %s, a list of them, or random)", what,
                      lua_tostring(L, -2), lua_tostring(L, -1));
}

static int l_damage(lua_State *L) {
    static const char *const allowed[] = {"level", "seed", NULL};
    wh_tensor *t = whl_check_tensor(L, 1);
    if (wh_tensor_device(t).type != WH_CPU)
        luaL_error(L, "synth.damage: images must be on the CPU");
    if (!wh_dtype_is_float(t->dtype))
        luaL_error(L, "synth.damage: images must be float32 or float64 in [0, 1], got %s",
                   wh_dtype_name(t->dtype));
    char buf[96];
    int64_t n = 1, h, w;
    if (t->ndim == 2) {
        h = t->shape[0];
        w = t->shape[1];
    } else if (t->ndim == 3 && t->shape[0] == 1) {
        h = t->shape[1];
        w = t->shape[2];
    } else if (t->ndim == 4 && t->shape[1] == 1) {
        n = t->shape[0];
        h = t->shape[2];
        w = t->shape[3];
    } else {
        return luaL_error(L, "synth.damage: images must be (h, w), (1, h, w) or (N, 1, h, w), got %s",
                          wh_shape_str(t, buf, sizeof buf));
    }
    if (lua_isnoneornil(L, 2)) luaL_error(L, "synth.damage: argument 2 (kind) is required");
    if (lua_type(L, 3) == LUA_TSTRING) { /* damage(img, kind, "hard") */
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "level");
        lua_replace(L, 3);
    }
    whl_check_options(L, 3, "synth.damage", allowed, false);
    int kinds[64], levels[64];
    int nk = check_names(L, 2, "kind", wh_damage_from_name, WH_DMG_NKINDS, wh_damage_name, kinds);
    int nl = 1;
    levels[0] = WH_DMG_MEDIUM;
    if (!lua_isnoneornil(L, 3) && lua_getfield(L, 3, "level") != LUA_TNIL)
        nl = check_names(L, lua_gettop(L), "level", wh_damage_level_from_name, WH_DMG_NLEVELS,
                         wh_damage_level_name, levels);
    uint64_t seed = (uint64_t)whl_opt_field_integer(L, 3, "seed", 0);
    lua_settop(L, 3);

    /* a float32 contiguous view of the input */
    wh_tensor *src = t;
    if (t->dtype != WH_FLOAT32 || !wh_tensor_is_contiguous(t)) {
        whl_check(L, wh_tensor_empty(WH_FLOAT32, t->ndim, t->shape, NULL, &src));
        whl_push_tensor(L, src);
        whl_check(L, wh_copy_into(src, t));
    } else {
        lua_pushnil(L);
    } /* 4 */
    wh_tensor *out = new_tensor(L, t->ndim, t->shape);  /* 5 */
    wh_tensor *mask = new_tensor(L, t->ndim, t->shape); /* 6 */
    uint64_t *seeds = lua_newuserdatauv(L, (size_t)n * (2 * sizeof(int) + sizeof(uint64_t)), 0);
    int *ks = (int *)(seeds + n), *ls = ks + n;
    /* per-image choices from their own stream, then each image's seed */
    wh_synth_rng rng;
    wh_synth_rng_seed(&rng, wh_synth_mix(seed, 0xd1ce));
    for (int64_t i = 0; i < n; i++) {
        ks[i] = kinds[wh_synth_rng_int(&rng, nk)];
        ls[i] = levels[wh_synth_rng_int(&rng, nl)];
        seeds[i] = n == 1 ? seed : wh_synth_mix(seed, (uint64_t)i);
    }
    whl_check(L, wh_synth_damage_batch(wh_tensor_data(src), (int)n, (int)h, (int)w, ks, ls, seeds,
                                       wh_tensor_data(out), wh_tensor_data(mask)));
    lua_pushvalue(L, 5);
    lua_pushvalue(L, 6);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, wh_damage_name(ks[i]));
        lua_setfield(L, -2, "kind");
        lua_pushstring(L, wh_damage_level_name(ls[i]));
        lua_setfield(L, -2, "level");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 3;
}

static void push_name_list(lua_State *L, int n, const char *(*name_of)(int)) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, name_of(i));
        lua_rawseti(L, -2, i + 1);
    }
}

void whl_open_synth(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"fingerprint", l_fingerprint},
        {"batch", l_batch},
        {"damage", l_damage},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
    push_name_list(L, WH_FP_NCLASSES, wh_fp_class_name);
    lua_setfield(L, -2, "classes");
    lua_createtable(L, 0, WH_FP_NCLASSES);
    for (int c = 0; c < WH_FP_NCLASSES; c++) {
        lua_pushnumber(L, wh_fp_class_frequency[c]);
        lua_setfield(L, -2, wh_fp_class_name(c));
    }
    lua_setfield(L, -2, "class_frequencies");
    push_name_list(L, WH_DMG_NKINDS, wh_damage_name);
    lua_setfield(L, -2, "damage_kinds");
    push_name_list(L, WH_DMG_NLEVELS, wh_damage_level_name);
    lua_setfield(L, -2, "levels");
    lua_setfield(L, module, "synth");
}
