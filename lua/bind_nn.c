/* Lua: pooling, upsampling, batch norm and dropout.
 *
 *   whorl.max_pool2d(x, {kernel=2, stride=kernel, padding=0, ceil_mode=false})
 *   whorl.max_pool2d(x, kernel [, stride [, padding [, ceil_mode]]])
 *   whorl.avg_pool2d(x, {kernel=, stride=, padding=, ceil_mode=, count_include_pad=true})
 *   whorl.avg_pool2d(x, kernel [, stride [, padding [, ceil_mode [, count_include_pad]]]])
 *       kernel, stride, padding: a number or {h, w}; stride defaults to the
 *       kernel (Keras' MaxPooling2D(2) is max_pool2d(x, 2)).  Output sizes
 *       follow PyTorch, ceil_mode included.
 *   whorl.upsample(x, {scale=2 | size={h, w}, mode="nearest"|"bilinear",
 *                      align_corners=false})
 *   whorl.upsample(x, scale [, mode])
 *       scale: a number or {sh, sw}; the output is floor(input size * scale)
 *       and the pixels are then picked as for that size.  Bilinear with
 *       align_corners=false is PyTorch's default and Keras' UpSampling2D.
 *   whorl.batch_norm(x, weight, bias, running_mean, running_var,
 *                    {training=true, momentum=0.1, eps=1e-5})
 *       any of weight/bias/running stats may be nil; in training the running
 *       stats are updated in place (PyTorch's momentum convention).
 *   whorl.dropout(x, p=0.5, training=true)
 *       inverted dropout from the generator seeded by whorl.manual_seed.
 * Methods: x:max_pool2d(...), x:avg_pool2d(...), x:upsample(...), x:dropout(...),
 * x:batch_norm(...). */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "binding.h"

#define MISSING INT_MIN

/* A table {a, b} of two numbers (a positional pair, not an options table). */
static bool is_pair_table(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return false;
    bool pair = lua_geti(L, idx, 1) == LUA_TNUMBER;
    lua_pop(L, 1);
    return pair;
}

/* A positional integer-or-{h, w} argument; def when nil or absent. */
static void check_pair_arg(lua_State *L, int idx, const char *op, const char *name, int def,
                           int pair[2]) {
    pair[0] = pair[1] = def;
    if (lua_isnoneornil(L, idx)) return;
    int isint = 1;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer v = lua_tointegerx(L, idx, &isint);
        if (isint && v >= INT_MIN + 1 && v <= INT_MAX) pair[0] = pair[1] = (int)v;
        else isint = 0;
    } else if (lua_type(L, idx) == LUA_TTABLE && luaL_len(L, idx) == 2) {
        for (int i = 0; i < 2 && isint; i++) {
            lua_geti(L, idx, i + 1);
            lua_Integer v = lua_tointegerx(L, -1, &isint);
            if (isint && v >= INT_MIN + 1 && v <= INT_MAX) pair[i] = (int)v;
            else isint = 0;
            lua_pop(L, 1);
        }
    } else {
        isint = 0;
    }
    if (!isint) luaL_error(L, "%s: %s must be an integer or a pair of integers {h, w}", op, name);
}

static bool check_bool_arg(lua_State *L, int idx, const char *op, const char *name, bool def) {
    if (lua_isnoneornil(L, idx)) return def;
    if (lua_type(L, idx) != LUA_TBOOLEAN)
        luaL_error(L, "%s: %s must be a boolean, got %s", op, name, luaL_typename(L, idx));
    return lua_toboolean(L, idx);
}

static void parse_pool(lua_State *L, const char *op, bool avg, wh_pool_params *p) {
    static const char *const max_opts[] = {"kernel", "stride", "padding", "ceil_mode", NULL};
    static const char *const avg_opts[] = {"kernel", "stride", "padding", "ceil_mode",
                                           "count_include_pad", NULL};
    memset(p, 0, sizeof *p);
    if (lua_type(L, 2) == LUA_TTABLE && !is_pair_table(L, 2)) {
        whl_check_options(L, 2, op, avg ? avg_opts : max_opts, true);
        whl_opt_field_pair(L, 2, "kernel", MISSING, p->kernel);
        whl_opt_field_pair(L, 2, "stride", MISSING, p->stride);
        whl_opt_field_pair(L, 2, "padding", 0, p->padding);
        p->ceil_mode = whl_opt_field_boolean(L, 2, "ceil_mode", false);
        p->count_include_pad = whl_opt_field_boolean(L, 2, "count_include_pad", true);
    } else {
        check_pair_arg(L, 2, op, "kernel", MISSING, p->kernel);
        check_pair_arg(L, 3, op, "stride", MISSING, p->stride);
        check_pair_arg(L, 4, op, "padding", 0, p->padding);
        p->ceil_mode = check_bool_arg(L, 5, op, "ceil_mode", false);
        p->count_include_pad = avg ? check_bool_arg(L, 6, op, "count_include_pad", true) : true;
    }
    if (p->kernel[0] == MISSING)
        luaL_error(L, "%s: the kernel size is required: %s(x, 2) or %s(x, {kernel = 2})", op, op,
                   op);
    for (int i = 0; i < 2; i++)
        if (p->stride[i] == MISSING) p->stride[i] = p->kernel[i];
}

static int l_max_pool2d(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    wh_pool_params p;
    parse_pool(L, "max_pool2d", false, &p);
    whl_check(L, wh_max_pool2d(x, &p, &out));
    return whl_push_tensor(L, out);
}

static int l_avg_pool2d(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    wh_pool_params p;
    parse_pool(L, "avg_pool2d", true, &p);
    whl_check(L, wh_avg_pool2d(x, &p, &out));
    return whl_push_tensor(L, out);
}

/* A positive scale: a number for both dims or {sh, sw}, at stack index idx. */
static void check_scale(lua_State *L, int idx, double scale[2]) {
    bool ok = true;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        scale[0] = scale[1] = lua_tonumber(L, idx);
    } else if (lua_type(L, idx) == LUA_TTABLE && luaL_len(L, idx) == 2) {
        for (int i = 0; i < 2; i++) {
            ok = ok && lua_geti(L, idx, i + 1) == LUA_TNUMBER;
            scale[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        ok = false;
    }
    for (int i = 0; ok && i < 2; i++) ok = isfinite(scale[i]) && scale[i] > 0;
    if (!ok) luaL_error(L, "upsample: scale must be a positive number or a pair {sh, sw}");
}

static wh_upsample_mode check_mode(lua_State *L, int idx) {
    const char *m = lua_tostring(L, idx);
    if (!m) luaL_error(L, "upsample: mode must be a string (nearest or bilinear)");
    if (strcmp(m, "nearest") == 0) return WH_UPSAMPLE_NEAREST;
    if (strcmp(m, "bilinear") == 0) return WH_UPSAMPLE_BILINEAR;
    luaL_error(L, "upsample: unknown mode '%s' (nearest or bilinear)", m);
    return WH_UPSAMPLE_NEAREST;
}

static int l_upsample(lua_State *L) {
    static const char *const opts[] = {"scale", "size", "mode", "align_corners", NULL};
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    if (x->ndim != 4) {
        char s[128];
        luaL_error(L, "upsample: input must be 4-d (N,C,H,W), got shape %s",
                   wh_shape_str(x, s, sizeof s));
    }
    wh_upsample_mode mode = WH_UPSAMPLE_NEAREST;
    bool align = false, have_scale = false, have_size = false;
    double scale[2] = {1, 1};
    int size[2] = {0, 0};
    if (lua_type(L, 2) == LUA_TTABLE && !is_pair_table(L, 2)) {
        whl_check_options(L, 2, "upsample", opts, true);
        if (lua_getfield(L, 2, "scale") != LUA_TNIL) {
            check_scale(L, lua_gettop(L), scale);
            have_scale = true;
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "size") != LUA_TNIL) have_size = true;
        lua_pop(L, 1);
        whl_opt_field_pair(L, 2, "size", 0, size);
        if (lua_getfield(L, 2, "mode") != LUA_TNIL) mode = check_mode(L, lua_gettop(L));
        lua_pop(L, 1);
        align = whl_opt_field_boolean(L, 2, "align_corners", false);
    } else if (!lua_isnoneornil(L, 2)) {
        check_scale(L, 2, scale);
        have_scale = true;
        if (!lua_isnoneornil(L, 3)) mode = check_mode(L, 3);
    }
    if (have_scale == have_size)
        luaL_error(L, "upsample: give exactly one of scale and size, e.g. upsample(x, {scale = 2})"
                   " or upsample(x, {size = {h, w}})");
    int64_t oh = size[0], ow = size[1];
    if (have_scale) {
        double h = floor((double)x->shape[2] * scale[0]), w = floor((double)x->shape[3] * scale[1]);
        if (h > (double)INT32_MAX || w > (double)INT32_MAX)
            luaL_error(L, "upsample: scale (%f, %f) gives an output too large", scale[0], scale[1]);
        oh = (int64_t)h;
        ow = (int64_t)w;
    }
    whl_check(L, wh_upsample2d(x, oh, ow, mode, align, &out));
    return whl_push_tensor(L, out);
}

static int l_batch_norm(lua_State *L) {
    static const char *const opts[] = {"training", "momentum", "eps", NULL};
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    wh_tensor *w = whl_opt_tensor(L, 2), *b = whl_opt_tensor(L, 3);
    wh_tensor *rm = whl_opt_tensor(L, 4), *rv = whl_opt_tensor(L, 5);
    if (lua_type(L, 6) == LUA_TTABLE) whl_check_options(L, 6, "batch_norm", opts, true);
    bool training = whl_opt_field_boolean(L, 6, "training", true);
    double momentum = whl_opt_field_number(L, 6, "momentum", 0.1);
    double eps = whl_opt_field_number(L, 6, "eps", 1e-5);
    whl_check(L, wh_batch_norm(x, w, b, rm, rv, training, momentum, eps, &out));
    return whl_push_tensor(L, out);
}

static int l_dropout(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    double p = luaL_optnumber(L, 2, 0.5);
    bool training = check_bool_arg(L, 3, "dropout", "training", true);
    whl_check(L, wh_dropout(x, p, training, &out));
    return whl_push_tensor(L, out);
}

void whl_open_nn(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"max_pool2d", l_max_pool2d},
        {"avg_pool2d", l_avg_pool2d},
        {"upsample", l_upsample},
        {"batch_norm", l_batch_norm},
        {"dropout", l_dropout},
        {NULL, NULL},
    };
    lua_pushvalue(L, module);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
