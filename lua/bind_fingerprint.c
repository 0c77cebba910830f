/* Lua: minutiae extraction and pairing in whorl.fingerprint (core/fingerprint.h).
 *
 *   fp.extract(image [, opts]) -> template
 *       image: (H, W) or (1, H, W), float32/float64 on the CPU, values in
 *       [0, 1], ridges dark; H, W >= 32.  opts: dpi=500 (50 to 5000),
 *       fields=false, and the extraction parameters block,
 *       variance_threshold, orientation_sigma, gabor_sigma, border,
 *       min_ridge (defaults scale with dpi: core/fingerprint.h, and
 *       docs/fingerprint.md), upsample (nil: prints under 350 dpi
 *       are extracted at twice the size, their ridges being too thin to thin
 *       cleanly; true: always; false: never).
 *       template = {minutiae = {{x=, y=, angle=, type="ending"|"bifurcation",
 *                                quality=}, ...}, height=, width=}
 *       with 0-BASED pixel coordinates (pixel (0,0) centred on x=0, y=0:
 *       whorl.synth's info is 1-based, subtract 1 to compare) and angles in
 *       radians in [0, 2 pi) in the image frame (from +x towards +y, as
 *       whorl.synth's).  With fields=true also enhanced (binarised ridges
 *       0/1), orientation (ridge direction in [0, pi)), frequency (1/period,
 *       0 off the print), mask (0/1) and skeleton (0/1), each (H, W) float32.
 *   fp.extract_batch(images [, opts]) -> list of templates
 *       images (N, H, W) or (N, 1, H, W); opts as extract without fields.
 *       OpenMP over images.
 *   fp.pair(a, b [, {distance=15, angle=math.rad(25), axial=false}])
 *       -> {pairs = {{i, j}, ...}, precision=, recall=, matched=, a_count=, b_count=}
 *       a, b: lists of minutiae ({x=, y=, angle=, ...}, e.g. template.minutiae)
 *       in the same frame; one-to-one pairs within the distance (pixels) and
 *       angle (radians; modulo pi with axial=true) tolerances, greedy by
 *       cost; i, j are 1-based indices into a and b, in a's order.  a is the set under
 *       test, b the reference: precision = matched / #a, recall =
 *       matched / #b (1 when the set is empty). */
#include <math.h>
#include <string.h>

#include "binding.h"
#include "fingerprint.h"

static const char *const EXTRACT_OPTIONS[] = {"dpi",         "fields", "block",     "variance_threshold",
                                              "orientation_sigma", "gabor_sigma", "border", "min_ridge",
                                              "upsample",    NULL};

static wh_extract_params check_extract_options(lua_State *L, int idx, const char *op, bool allow_fields) {
    whl_check_options(L, idx, op, EXTRACT_OPTIONS, false);
    if (!allow_fields && whl_opt_field_boolean(L, idx, "fields", false))
        luaL_error(L, "%s: option 'fields' is only for fp.extract", op);
    double dpi = whl_opt_field_number(L, idx, "dpi", 500);
    if (!(dpi >= 50 && dpi <= 5000))
        luaL_error(L, "%s: option 'dpi' must be from 50 to 5000, got %f", op, dpi);
    wh_extract_params p = wh_extract_defaults(dpi);
    p.block = (int)whl_opt_field_integer(L, idx, "block", p.block);
    p.variance_threshold = whl_opt_field_number(L, idx, "variance_threshold", p.variance_threshold);
    p.orientation_sigma = whl_opt_field_number(L, idx, "orientation_sigma", p.orientation_sigma);
    p.gabor_sigma = whl_opt_field_number(L, idx, "gabor_sigma", p.gabor_sigma);
    p.border = (int)whl_opt_field_integer(L, idx, "border", p.border);
    p.min_ridge = (int)whl_opt_field_integer(L, idx, "min_ridge", p.min_ridge);
    if (!lua_isnoneornil(L, idx)) {
        int t = lua_getfield(L, idx, "upsample");
        if (t == LUA_TBOOLEAN)
            p.upsample = lua_toboolean(L, -1) ? 2 : 1;
        else if (t != LUA_TNIL)
            luaL_error(L, "%s: option 'upsample' must be true, false or nil (automatic), got %s", op,
                       luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return p;
}

/* A float32, contiguous, CPU copy (or the tensor itself), pushed as an anchor. */
static wh_tensor *float32_images(lua_State *L, wh_tensor *t, const char *op) {
    if (wh_tensor_device(t).type != WH_CPU) luaL_error(L, "%s: images must be on the CPU", op);
    if (!wh_dtype_is_float(t->dtype))
        luaL_error(L, "%s: images must be float32 or float64 in [0, 1], got %s", op, wh_dtype_name(t->dtype));
    if (t->dtype == WH_FLOAT32 && wh_tensor_is_contiguous(t)) {
        lua_pushnil(L);
        return t;
    }
    wh_tensor *c = NULL;
    whl_check(L, wh_tensor_empty(WH_FLOAT32, t->ndim, t->shape, NULL, &c));
    whl_push_tensor(L, c);
    whl_check(L, wh_copy_into(c, t));
    return c;
}

static void set_number(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* Pushes the template table of t. */
static void push_template(lua_State *L, const wh_template *t) {
    lua_createtable(L, 0, 8);
    lua_createtable(L, t->count, 0);
    for (int k = 0; k < t->count; k++) {
        const wh_minutia *m = &t->minutiae[k];
        lua_createtable(L, 0, 5);
        set_number(L, "x", m->x);
        set_number(L, "y", m->y);
        set_number(L, "angle", m->angle);
        lua_pushstring(L, m->type == WH_MINUTIA_BIFURCATION ? "bifurcation" : "ending");
        lua_setfield(L, -2, "type");
        set_number(L, "quality", m->quality);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "minutiae");
    lua_pushinteger(L, t->height);
    lua_setfield(L, -2, "height");
    lua_pushinteger(L, t->width);
    lua_setfield(L, -2, "width");
}

/* Templates live in malloc'd arrays while their tables are built; this
 * userdata frees them even if building raises. */
typedef struct {
    int n;
    wh_template *t;
} template_guard;

static int template_guard_gc(lua_State *L) {
    template_guard *g = lua_touserdata(L, 1);
    for (int i = 0; i < g->n; i++) wh_template_free(&g->t[i]);
    g->n = 0;
    return 0;
}

static template_guard *push_template_guard(lua_State *L, int n) {
    template_guard *g = lua_newuserdatauv(L, sizeof *g + (size_t)n * sizeof(wh_template), 0);
    g->n = n;
    g->t = (wh_template *)(g + 1);
    memset(g->t, 0, (size_t)n * sizeof(wh_template));
    if (luaL_newmetatable(L, "whorl.fingerprint.template_guard")) {
        lua_pushcfunction(L, template_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return g;
}

static wh_tensor *new_map(lua_State *L, int h, int w) {
    int64_t shape[2] = {h, w};
    wh_tensor *t = NULL;
    whl_check(L, wh_tensor_empty(WH_FLOAT32, 2, shape, NULL, &t));
    whl_push_tensor(L, t);
    return t;
}

static int l_extract(lua_State *L) {
    const char *op = "fingerprint.extract";
    wh_tensor *t = whl_check_tensor(L, 1);
    wh_extract_params p = check_extract_options(L, 2, op, true);
    bool fields = whl_opt_field_boolean(L, 2, "fields", false);
    lua_settop(L, 2);
    char buf[96];
    if (!(t->ndim == 2 || (t->ndim == 3 && t->shape[0] == 1)))
        luaL_error(L, "%s: image must be (H, W) or (1, H, W), got %s", op, wh_shape_str(t, buf, sizeof buf));
    int64_t h = t->shape[t->ndim - 2], w = t->shape[t->ndim - 1];
    if (h < 32 || w < 32 || h > 1 << 15 || w > 1 << 15)
        luaL_error(L, "%s: image must be at least 32x32 pixels (and at most 32768), got %s", op,
                   wh_shape_str(t, buf, sizeof buf));
    wh_tensor *src = float32_images(L, t, op); /* 3 */
    static const char *const names[] = {"enhanced", "orientation", "frequency", "mask", "skeleton"};
    wh_extract_fields f = {0};
    if (fields) { /* 4..8 */
        float **slots[] = {&f.enhanced, &f.orientation, &f.frequency, &f.mask, &f.skeleton};
        for (int k = 0; k < 5; k++) *slots[k] = wh_tensor_data(new_map(L, (int)h, (int)w));
    }
    template_guard *g = push_template_guard(L, 1);
    whl_check(L, wh_extract_minutiae(wh_tensor_data(src), (int)h, (int)w, &p, &g->t[0], fields ? &f : NULL));
    push_template(L, &g->t[0]);
    for (int k = 0; fields && k < 5; k++) {
        lua_pushvalue(L, 4 + k);
        lua_setfield(L, -2, names[k]);
    }
    wh_template_free(&g->t[0]);
    return 1;
}

static int l_extract_batch(lua_State *L) {
    const char *op = "fingerprint.extract_batch";
    wh_tensor *t = whl_check_tensor(L, 1);
    wh_extract_params p = check_extract_options(L, 2, op, false);
    lua_settop(L, 2);
    char buf[96];
    if (!(t->ndim == 3 || (t->ndim == 4 && t->shape[1] == 1)))
        luaL_error(L, "%s: images must be (N, H, W) or (N, 1, H, W), got %s", op, wh_shape_str(t, buf, sizeof buf));
    int64_t n = t->shape[0], h = t->shape[t->ndim - 2], w = t->shape[t->ndim - 1];
    if (h < 32 || w < 32 || h > 1 << 15 || w > 1 << 15)
        luaL_error(L, "%s: images must be at least 32x32 pixels (and at most 32768), got %s", op,
                   wh_shape_str(t, buf, sizeof buf));
    if (n > 10000000) luaL_error(L, "%s: too many images (%I)", op, (lua_Integer)n);
    wh_tensor *src = float32_images(L, t, op);
    template_guard *g = push_template_guard(L, (int)n);
    whl_check(L, wh_extract_batch(wh_tensor_data(src), (int)n, (int)h, (int)w, &p, g->t));
    lua_createtable(L, (int)n, 0);
    for (int i = 0; i < n; i++) {
        push_template(L, &g->t[i]);
        lua_rawseti(L, -2, i + 1);
        wh_template_free(&g->t[i]);
    }
    return 1;
}

/* The minutiae list at idx as x, y, angle (the rest is not used), in a
 * userdata pushed as an anchor. */
static wh_minutia *read_minutiae(lua_State *L, int idx, const char *op, int arg, int *count) {
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: argument %d must be a list of minutiae, got %s", op, arg, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    if (n > 1000000) luaL_error(L, "%s: argument %d: %I minutiae is too many", op, arg, n);
    wh_minutia *m = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *m, 0);
    static const char *const keys[] = {"x", "y", "angle"};
    for (int k = 0; k < n; k++) {
        if (lua_geti(L, idx, k + 1) != LUA_TTABLE)
            luaL_error(L, "%s: argument %d: minutia %d must be a table, got %s", op, arg, k + 1,
                       luaL_typename(L, -1));
        float v[3];
        for (int j = 0; j < 3; j++) {
            lua_getfield(L, -1, keys[j]);
            int ok;
            double d = lua_tonumberx(L, -1, &ok);
            if (!ok || !isfinite(d))
                luaL_error(L, "%s: argument %d: minutia %d has no finite number '%s'", op, arg, k + 1, keys[j]);
            v[j] = (float)d;
            lua_pop(L, 1);
        }
        m[k] = (wh_minutia){v[0], v[1], v[2], WH_MINUTIA_ENDING, 1.0f};
        lua_pop(L, 1);
    }
    *count = (int)n;
    return m;
}

static int l_pair(lua_State *L) {
    static const char *const allowed[] = {"distance", "angle", "axial", NULL};
    const char *op = "fingerprint.pair";
    whl_check_options(L, 3, op, allowed, false);
    double dist = whl_opt_field_number(L, 3, "distance", 15);
    double ang = whl_opt_field_number(L, 3, "angle", 25 * M_PI / 180);
    bool axial = whl_opt_field_boolean(L, 3, "axial", false);
    if (!(dist > 0) || !isfinite(dist)) luaL_error(L, "%s: option 'distance' must be positive, got %f", op, dist);
    if (!(ang > 0)) luaL_error(L, "%s: option 'angle' must be positive, got %f", op, ang);
    lua_settop(L, 3);
    int na, nb;
    wh_minutia *a = read_minutiae(L, 1, op, 1, &na);
    wh_minutia *b = read_minutiae(L, 2, op, 2, &nb);
    int cap = na < nb ? na : nb, count = 0;
    int *pairs = lua_newuserdatauv(L, sizeof(int) * 2 * (size_t)(cap > 0 ? cap : 1), 0);
    whl_check(L, wh_minutiae_pair(a, na, b, nb, dist, ang, axial, pairs, &count));
    lua_createtable(L, 0, 6);
    lua_createtable(L, count, 0);
    for (int k = 0; k < count; k++) {
        lua_createtable(L, 2, 0);
        lua_pushinteger(L, pairs[2 * k] + 1);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, pairs[2 * k + 1] + 1);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "pairs");
    set_number(L, "precision", na ? (double)count / na : 1.0);
    set_number(L, "recall", nb ? (double)count / nb : 1.0);
    lua_pushinteger(L, count);
    lua_setfield(L, -2, "matched");
    lua_pushinteger(L, na);
    lua_setfield(L, -2, "a_count");
    lua_pushinteger(L, nb);
    lua_setfield(L, -2, "b_count");
    return 1;
}

void whl_open_fingerprint(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"extract", l_extract},
        {"extract_batch", l_extract_batch},
        {"pair", l_pair},
        {NULL, NULL},
    };
    /* extraction and matching both add to it, in either order */
    whl_add_to_subtable(L, module, "fingerprint", funcs);
}
