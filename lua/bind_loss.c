/* Lua: the losses.
 *
 *   whorl.mse_loss(pred, target, {weight=w, reduction="mean"|"sum"|"none"})
 *   whorl.l1_loss(pred, target, opts)
 *   whorl.bce_loss(pred, target, opts)        (alias binary_cross_entropy)
 *       pred and target of the same shape (no broadcasting between them);
 *       weight, optional, broadcastable to pred (a per-pixel map, or per
 *       channel...).  mean = sum(weight * loss) / number of elements
 *       (Keras' sample-weight convention).  bce_loss is Keras'
 *       binary_crossentropy on probabilities: pred clipped to
 *       [1e-7, 1 - 1e-7], no gradient where clipped.  opts may also be just
 *       the reduction string.
 *   whorl.cross_entropy(logits, target, {weight=, ignore_index=-100,
 *                       reduction="mean", base=1})
 *       logits (N,C) or (N,C,H,W); target (N) or (N,H,W) holding class ids
 *       in any dtype.  Class ids are 1-based as in Torch7's
 *       ClassNLLCriterion (base=0 takes 0-based ids, e.g. label images where
 *       0 is a class); ignore_index is compared with the ids as given.
 *       weight: per-class weights (C), constants (no gradient flows to
 *       them); mean divides by the summed weights of the counted elements
 *       (PyTorch). */
#include <string.h>

#include "binding.h"
#include "kernels/nn_math.h"

static wh_reduction parse_reduction(lua_State *L, int idx, const char *op) {
    const char *r = lua_tostring(L, idx);
    if (!r) luaL_error(L, "%s: reduction must be a string (mean, sum or none)", op);
    if (strcmp(r, "mean") == 0) return WH_REDUCE_MEAN;
    if (strcmp(r, "sum") == 0) return WH_REDUCE_SUM;
    if (strcmp(r, "none") == 0) return WH_REDUCE_NONE;
    luaL_error(L, "%s: unknown reduction '%s' (mean, sum or none)", op, r);
    return WH_REDUCE_MEAN;
}

/* Options at index 3: nil, a reduction string, or a table of `allowed`
 * fields.  Leaves field "weight" (or nil) on the stack, anchoring it, and
 * returns the tensor. */
static wh_tensor *parse_opts(lua_State *L, const char *op, const char *const *allowed,
                             wh_reduction *r) {
    *r = WH_REDUCE_MEAN;
    if (lua_type(L, 3) == LUA_TSTRING) {
        *r = parse_reduction(L, 3, op);
        lua_pushnil(L);
        return NULL;
    }
    if (lua_isnoneornil(L, 3)) {
        lua_pushnil(L);
        return NULL;
    }
    if (lua_type(L, 3) != LUA_TTABLE)
        luaL_error(L, "%s: options must be a table or a reduction string, got %s", op,
                   luaL_typename(L, 3));
    whl_check_options(L, 3, op, allowed, false);
    if (lua_getfield(L, 3, "reduction") != LUA_TNIL) *r = parse_reduction(L, -1, op);
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "weight") == LUA_TNIL) return NULL;
    if (!whl_is_tensor(L, -1))
        luaL_error(L, "%s: option 'weight' must be a tensor, got %s", op, luaL_typename(L, -1));
    return whl_check_tensor(L, -1);
}

static int pixel_loss(lua_State *L, int kind) {
    static const char *const allowed[] = {"weight", "reduction", NULL};
    static const char *const names[] = {"mse_loss", "l1_loss", "bce_loss"};
    wh_tensor *pred = whl_check_tensor(L, 1), *target = whl_check_tensor(L, 2), *out = NULL;
    wh_reduction r;
    wh_tensor *w = parse_opts(L, names[kind], allowed, &r);
    wh_status st = kind == WH_LOSS_MSE  ? wh_mse_loss(pred, target, w, r, &out)
                   : kind == WH_LOSS_L1 ? wh_l1_loss(pred, target, w, r, &out)
                                        : wh_bce_loss(pred, target, w, r, &out);
    whl_check(L, st);
    return whl_push_tensor(L, out);
}

static int l_mse_loss(lua_State *L) { return pixel_loss(L, WH_LOSS_MSE); }
static int l_l1_loss(lua_State *L) { return pixel_loss(L, WH_LOSS_L1); }
static int l_bce_loss(lua_State *L) { return pixel_loss(L, WH_LOSS_BCE); }

static int l_cross_entropy(lua_State *L) {
    static const char *const allowed[] = {"weight", "ignore_index", "reduction", "base", NULL};
    wh_tensor *logits = whl_check_tensor(L, 1), *target = whl_check_tensor(L, 2), *out = NULL;
    wh_reduction r;
    wh_tensor *w = parse_opts(L, "cross_entropy", allowed, &r);
    lua_Integer ignore = -100, base = 1;
    if (lua_type(L, 3) == LUA_TTABLE) {
        ignore = whl_opt_field_integer(L, 3, "ignore_index", -100);
        base = whl_opt_field_integer(L, 3, "base", 1);
        if (base != 0 && base != 1)
            luaL_error(L, "cross_entropy: base must be 0 or 1, got %I", base);
    }
    whl_check(L, wh_cross_entropy_based(logits, target, w, ignore, base, r, &out));
    return whl_push_tensor(L, out);
}

void whl_open_loss(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"mse_loss", l_mse_loss},
        {"l1_loss", l_l1_loss},
        {"bce_loss", l_bce_loss},
        {"binary_cross_entropy", l_bce_loss},
        {"cross_entropy", l_cross_entropy},
        {NULL, NULL},
    };
    lua_pushvalue(L, module);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
