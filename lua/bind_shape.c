/* Lua: shape and view ops (Torch7 conventions: dims and indices 1-based,
 * negative ones from the end).
 *
 * Methods (also module functions taking the tensor first):
 *   t:view(sizes...)  t:reshape(sizes...)   sizes as numbers or one table; one -1 is inferred
 *   t:permute(dims...)                      dims as numbers or one table
 *   t:transpose(d1, d2)   t:t()             (t() swaps the two dims of a 2-d tensor)
 *   t:narrow(dim, start, length)            start 1-based
 *   t:select(dim, index)                    index 1-based; the dim disappears
 *   t:unsqueeze(dim)      t:squeeze([dim])  squeeze() drops every size-1 dim
 *   t:expand(sizes...)    t:expand_as(o)    -1 keeps a size
 *   t:contiguous()        t:clone()
 *   t:flatten([start_dim=1], [end_dim=-1])
 *   t:pad(pads, [mode="constant"], [value=0])
 * Module functions:
 *   whorl.cat({tensors}, [dim=1]) (also whorl.cat(t1, t2, [dim]) and whorl.concat)
 *   whorl.pad(t, {before_last, after_last, before_2nd_last, ...}, mode, value)
 *     pads pair up from the LAST dim, as PyTorch's F.pad; negative pads crop;
 *     mode "constant", "reflect" or "replicate".
 * View-like results share storage with t; view() fails on strides that do
 * not allow it, reshape() copies then. */
#include <string.h>

#include "binding.h"

/* Takes the address of the result, not its value: the call producing st
 * may be evaluated after the other arguments. */
static int push_result(lua_State *L, wh_status st, wh_tensor **out) {
    whl_check(L, st);
    return whl_push_tensor(L, *out);
}

/* ---- view, reshape, expand ---------------------------------------------------------- */

static int l_view(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int nd;
    int64_t shape[WH_MAX_DIMS];
    whl_check_shape(L, 2, &nd, shape);
    return push_result(L, wh_view(t, nd, shape, &out), &out);
}

static int l_reshape(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int nd;
    int64_t shape[WH_MAX_DIMS];
    whl_check_shape(L, 2, &nd, shape);
    return push_result(L, wh_reshape(t, nd, shape, &out), &out);
}

static int l_expand(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int nd;
    int64_t shape[WH_MAX_DIMS];
    whl_check_shape(L, 2, &nd, shape);
    return push_result(L, wh_expand(t, nd, shape, &out), &out);
}

static int l_expand_as(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *o = whl_check_tensor(L, 2), *out = NULL;
    return push_result(L, wh_expand(t, o->ndim, o->shape, &out), &out);
}

static int l_flatten(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    if (t->ndim == 0) {
        int64_t one = 1;
        return push_result(L, wh_reshape(t, 1, &one, &out), &out);
    }
    int s = lua_isnoneornil(L, 2) ? 0 : whl_check_dim(L, 2, t->ndim, 0);
    int e = lua_isnoneornil(L, 3) ? t->ndim - 1 : whl_check_dim(L, 3, t->ndim, 0);
    if (s > e)
        return luaL_error(L, "flatten: start_dim %d comes after end_dim %d", s + 1, e + 1);
    int64_t shape[WH_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < s; d++) shape[nd++] = t->shape[d];
    int64_t merged = 1;
    for (int d = s; d <= e; d++) merged *= t->shape[d];
    shape[nd++] = merged;
    for (int d = e + 1; d < t->ndim; d++) shape[nd++] = t->shape[d];
    return push_result(L, wh_reshape(t, nd, shape, &out), &out);
}

/* ---- permute, transpose ----------------------------------------------------------------- */

/* Dims (1-based or negative) from slot idx: numbers to the top, or one table. */
static int check_dim_list(lua_State *L, int idx, const char *op, int ndim, int *dims) {
    int n;
    bool table = lua_type(L, idx) == LUA_TTABLE;
    n = table ? (int)luaL_len(L, idx) : lua_gettop(L) - idx + 1;
    if (n < 0) n = 0;
    if (n != ndim)
        luaL_error(L, "%s: %d dims given for a %d-d tensor (give each dim once)", op, n, ndim);
    for (int i = 0; i < n; i++) {
        if (table) lua_geti(L, idx, i + 1);
        else lua_pushvalue(L, idx + i);
        int isint;
        lua_Integer d = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint) luaL_error(L, "%s: dim %d is not an integer", op, i + 1);
        if (d >= 1 && d <= ndim) dims[i] = (int)d - 1;
        else if (d < 0 && d >= -ndim) dims[i] = (int)d + ndim;
        else
            luaL_error(L, "%s: dim %d is out of range for a %d-d tensor (expected 1..%d or "
                       "-%d..-1)", op, (int)d, ndim, ndim, ndim);
    }
    return n;
}

static int l_permute(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int perm[WH_MAX_DIMS];
    check_dim_list(L, 2, "permute", t->ndim, perm);
    for (int i = 0; i < t->ndim; i++)
        for (int j = 0; j < i; j++)
            if (perm[i] == perm[j])
                return luaL_error(L, "permute: dim %d appears twice", perm[i] + 1);
    return push_result(L, wh_permute(t, perm, &out), &out);
}

static int l_transpose(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int d0 = whl_check_dim(L, 2, t->ndim, 0), d1 = whl_check_dim(L, 3, t->ndim, 0);
    return push_result(L, wh_transpose(t, d0, d1, &out), &out);
}

static int l_t(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    if (t->ndim > 2) {
        char buf[128];
        return luaL_error(L, "t: expects a tensor with at most 2 dims, got shape %s (use "
                          "transpose or permute)", wh_shape_str(t, buf, sizeof buf));
    }
    if (t->ndim < 2) {
        wh_tensor_retain(t);
        return whl_push_tensor(L, t);
    }
    return push_result(L, wh_transpose(t, 0, 1, &out), &out);
}

/* ---- narrow, select, unsqueeze, squeeze ------------------------------------------------- */

static int l_narrow(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int dim = whl_check_dim(L, 2, t->ndim, 0);
    lua_Integer start = luaL_checkinteger(L, 3), length = luaL_checkinteger(L, 4);
    int64_t size = t->shape[dim];
    /* start may be size+1 with length 0: the empty slice at the end. */
    int64_t s0 = start >= 1 ? start - 1 : start < 0 ? size + start : -1;
    if (s0 < 0 || s0 > size)
        return luaL_error(L, "narrow: start %I is out of range for dimension %d of size %I "
                          "(1-based: 1..%I, or negative from the end)", start, dim + 1,
                          (lua_Integer)size, (lua_Integer)size);
    if (length < 0 || s0 + length > size)
        return luaL_error(L, "narrow: start %I with length %I runs past the end of dimension "
                          "%d of size %I", start, length, dim + 1, (lua_Integer)size);
    return push_result(L, wh_narrow(t, dim, s0, length, &out), &out);
}

static int l_select(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int dim = whl_check_dim(L, 2, t->ndim, 0);
    int64_t k = whl_check_index(L, 3, t->shape[dim], "select", dim + 1);
    return push_result(L, wh_select(t, dim, k, &out), &out);
}

static int l_unsqueeze(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int dim = whl_check_dim(L, 2, t->ndim, 1);
    return push_result(L, wh_unsqueeze(t, dim, &out), &out);
}

static int l_squeeze(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    if (lua_isnoneornil(L, 2)) return push_result(L, wh_squeeze(t, 0, true, &out), &out);
    int dim = whl_check_dim(L, 2, t->ndim, 0);
    return push_result(L, wh_squeeze(t, dim, false, &out), &out);
}

/* ---- copies -------------------------------------------------------------------------------- */

static int l_contiguous(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    return push_result(L, wh_contiguous(t, &out), &out);
}

static int l_clone(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    return push_result(L, wh_clone(t, &out), &out);
}

/* whorl.cat({t1, t2, ...}, [dim=1]) or whorl.cat(t1, t2, ..., [dim]) */
static int l_cat(lua_State *L) {
    int n, dim_idx;
    bool table = lua_type(L, 1) == LUA_TTABLE;
    if (table) {
        n = (int)luaL_len(L, 1);
        if (n < 1) return luaL_error(L, "cat: the list of tensors is empty");
        dim_idx = 2;
    } else {
        int top = lua_gettop(L);
        n = 0;
        while (n < top && whl_is_tensor(L, n + 1)) n++;
        if (n < 1) return luaL_typeerror(L, 1, "list of tensors");
        if (top > n + 1) return luaL_argerror(L, n + 2, "unexpected argument after dim");
        dim_idx = n + 1;
    }
    /* The borrowed array goes above the arguments, never into the dim slot. */
    lua_settop(L, dim_idx);
    wh_tensor **xs = lua_newuserdatauv(L, sizeof *xs * (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        if (table) {
            lua_geti(L, 1, i + 1);
            if (!whl_is_tensor(L, -1))
                return luaL_error(L, "cat: entry %d of the list is a %s, not a tensor", i + 1,
                                  luaL_typename(L, -1));
            xs[i] = whl_check_tensor(L, -1);
            lua_pop(L, 1);
        } else {
            xs[i] = whl_check_tensor(L, i + 1);
        }
    }
    int dim = 0;
    if (!lua_isnoneornil(L, dim_idx)) dim = whl_check_dim(L, dim_idx, xs[0]->ndim, 0);
    wh_tensor *out = NULL;
    return push_result(L, wh_concat(n, xs, dim, &out), &out);
}

/* whorl.pad(t, pads, [mode="constant"], [value=0]) */
static int l_pad(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    luaL_checktype(L, 2, LUA_TTABLE);
    int np = (int)luaL_len(L, 2);
    if (np % 2 != 0)
        return luaL_error(L, "pad: pads must come in (before, after) pairs, got %d numbers", np);
    if (np / 2 > t->ndim) {
        char buf[128];
        return luaL_error(L, "pad: %d pairs given for a tensor of shape %s", np / 2,
                          wh_shape_str(t, buf, sizeof buf));
    }
    int64_t pads[2 * WH_MAX_DIMS];
    for (int i = 0; i < np; i++) {
        lua_geti(L, 2, i + 1);
        int isint;
        pads[i] = (int64_t)lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint) return luaL_error(L, "pad: entry %d of pads is not an integer", i + 1);
    }
    const char *mode = luaL_optstring(L, 3, "constant");
    wh_pad_mode m;
    if (strcmp(mode, "constant") == 0) m = WH_PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0) m = WH_PAD_REFLECT;
    else if (strcmp(mode, "replicate") == 0) m = WH_PAD_REPLICATE;
    else return luaL_error(L, "pad: unknown mode '%s' (constant, reflect or replicate)", mode);
    double value = luaL_optnumber(L, 4, 0.0);
    return push_result(L, wh_pad(t, np / 2, pads, m, value, &out), &out);
}

static const luaL_Reg shape_fns[] = {
    {"view", l_view},           {"reshape", l_reshape},     {"expand", l_expand},
    {"expand_as", l_expand_as}, {"flatten", l_flatten},     {"permute", l_permute},
    {"transpose", l_transpose}, {"t", l_t},                 {"narrow", l_narrow},
    {"select", l_select},       {"unsqueeze", l_unsqueeze}, {"squeeze", l_squeeze},
    {"contiguous", l_contiguous}, {"clone", l_clone},       {"pad", l_pad},
    {NULL, NULL},
};

void whl_open_shape(lua_State *L, int module, int methods) {
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, shape_fns, 0);
    lua_pop(L, 1);
    lua_pushvalue(L, module);
    luaL_setfuncs(L, shape_fns, 0);
    lua_pushcfunction(L, l_cat);
    lua_setfield(L, -2, "cat");
    lua_pushcfunction(L, l_cat);
    lua_setfield(L, -2, "concat");
    lua_pop(L, 1);
}
