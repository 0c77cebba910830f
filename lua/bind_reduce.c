/* Lua: reductions, softmax and matrix products (dims 1-based, negative from
 * the end).
 *
 * Methods (also module functions taking the tensor first):
 *   t:sum([dims], [keepdim=false])   dims: nil (all, a 0-d result), a number or a table
 *   t:mean([dims], [keepdim])        t:max([dims], [keepdim])  (values; the gradient
 *                                    goes to the first maximum)
 *   t:argmax([dim], [keepdim])       1-based indices along dim as a float64 tensor, or
 *                                    the 1-based flat index when dim is nil; no gradient
 *   t:softmax(dim)   t:log_softmax(dim)
 *   t:sum_squares()                  a Lua number (no gradient)
 *   a:matmul(b)                      NumPy/PyTorch matmul: 1-d operands are vectors,
 *                                    leading dims are batch dims and broadcast
 *   a:mm(b)                          the 2-d x 2-d case only */
#include "binding.h"

/* Reduction dims from slot idx: none (0 returned), a number, or a table. */
static int check_reduce_dims(lua_State *L, int idx, const char *op, const wh_tensor *t,
                             int *dims) {
    if (lua_isnoneornil(L, idx)) return 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        dims[0] = whl_check_dim(L, idx, t->ndim, 0);
        return 1;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        return luaL_typeerror(L, idx, "nil, a dim or a table of dims");
    int n = (int)luaL_len(L, idx);
    if (n > t->ndim)
        luaL_error(L, "%s: %d dims given for a %d-d tensor", op, n, t->ndim);
    for (int i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        int isint;
        lua_Integer d = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint) luaL_error(L, "%s: entry %d of dims is not an integer", op, i + 1);
        if (d >= 1 && d <= t->ndim) dims[i] = (int)d - 1;
        else if (d < 0 && d >= -t->ndim) dims[i] = (int)d + t->ndim;
        else
            luaL_error(L, "%s: dim %d is out of range for a %d-d tensor (expected 1..%d or "
                       "-%d..-1)", op, (int)d, t->ndim, t->ndim, t->ndim);
    }
    /* An empty table would otherwise mean "all dims" to the core. */
    if (n == 0) luaL_error(L, "%s: the table of dims is empty (pass nil to reduce all)", op);
    return n;
}

typedef wh_status (*reduce_fn)(wh_tensor *, int, const int *, bool, wh_tensor **);

static int reduce(lua_State *L, const char *op, reduce_fn fn) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int dims[WH_MAX_DIMS];
    int n = check_reduce_dims(L, 2, op, t, dims);
    bool keepdim = lua_toboolean(L, 3);
    whl_check(L, fn(t, n, dims, keepdim, &out));
    return whl_push_tensor(L, out);
}

static int l_sum(lua_State *L) { return reduce(L, "sum", wh_sum); }
static int l_mean(lua_State *L) { return reduce(L, "mean", wh_mean); }
static int l_max(lua_State *L) { return reduce(L, "max", wh_max); }

static int l_argmax(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    int dim = 0, n = 0;
    if (!lua_isnoneornil(L, 2)) {
        dim = whl_check_dim(L, 2, t->ndim, 0);
        n = 1;
    }
    whl_check(L, wh_argmax(t, n, &dim, lua_toboolean(L, 3), &out));
    whl_push_tensor(L, out);
    /* The core counts from 0; Lua users count from 1 (on any device). */
    whl_check(L, wh_affine_(out, 1.0, 1.0));
    return 1;
}

static int softmax_common(lua_State *L, const char *op,
                          wh_status (*fn)(wh_tensor *, int, wh_tensor **)) {
    wh_tensor *t = whl_check_tensor(L, 1), *out = NULL;
    if (lua_isnoneornil(L, 2))
        return luaL_error(L, "%s: the dim to normalise over is required (e.g. %s(x, -1))", op, op);
    int dim = whl_check_dim(L, 2, t->ndim, 0);
    whl_check(L, fn(t, dim, &out));
    return whl_push_tensor(L, out);
}

static int l_softmax(lua_State *L) { return softmax_common(L, "softmax", wh_softmax); }
static int l_log_softmax(lua_State *L) { return softmax_common(L, "log_softmax", wh_log_softmax); }

static int l_sum_squares(lua_State *L) {
    double r = 0;
    whl_check(L, wh_sum_squares(whl_check_tensor(L, 1), &r));
    lua_pushnumber(L, r);
    return 1;
}

static int l_matmul(lua_State *L) {
    wh_tensor *a = whl_check_tensor(L, 1), *b = whl_check_tensor(L, 2), *out = NULL;
    whl_check(L, wh_matmul(a, b, &out));
    return whl_push_tensor(L, out);
}

static int l_mm(lua_State *L) {
    wh_tensor *a = whl_check_tensor(L, 1), *b = whl_check_tensor(L, 2);
    if (a->ndim != 2 || b->ndim != 2) {
        char x[128], y[128];
        return luaL_error(L, "mm: expects two 2-d tensors, got shapes %s and %s (matmul "
                          "handles vectors and batches)", wh_shape_str(a, x, sizeof x),
                          wh_shape_str(b, y, sizeof y));
    }
    return l_matmul(L);
}

static const luaL_Reg reduce_fns[] = {
    {"sum", l_sum},
    {"mean", l_mean},
    {"max", l_max},
    {"argmax", l_argmax},
    {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {"sum_squares", l_sum_squares},
    {"matmul", l_matmul},
    {"mm", l_mm},
    {NULL, NULL},
};

void whl_open_reduce(lua_State *L, int module, int methods) {
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, reduce_fns, 0);
    lua_pop(L, 1);
    lua_pushvalue(L, module);
    luaL_setfuncs(L, reduce_fns, 0);
    lua_pop(L, 1);
}
