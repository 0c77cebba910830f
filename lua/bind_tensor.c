/* The Tensor type: metamethods, fields, and the methods that are not ops.
 *
 * Fields (t.name):
 *   t.grad            the accumulated gradient (nil if none); `t.grad = nil`
 *                     clears it, `t.grad = g` sets it (same shape and dtype).
 *                     Each read returns a new handle on the same gradient.
 *   t.requires_grad   boolean; assignable on leaves of a float dtype
 *   t.is_leaf         true when no op made it (grad_fn is nil)
 *   t.grad_fn         the name of the op that made it ("mul"...), or nil
 *   t.shape           the sizes as a table (same as t:size())
 *   t.device          "cpu" or "cuda:0"...
 * Anything else is looked up in the methods table (whorl.Tensor).
 *
 * Indexing (1-based, negative from the end, along the first dimension):
 *   t[k]              a view of row k (select); a Lua number for 1-d tensors
 *   t[k] = v          fills row k with a number, or copies a tensor into it
 *
 * Methods: size([d]) dim() numel() stride([d]) is_contiguous() dtype()
 *   type([name]) device_name() item() totable() tostring() get(i, ...)
 *   set(i, ..., v) bytes() float() double() byte() to(dtype)
 *   backward([grad], {retain_graph=}) retain_grad() detach() requires_grad_([b])
 *   zero_grad() close()
 * `==` is identity (no __eq); `#t` is t:size(1).  close() (or a <close>
 * variable) releases the C tensor at once; later use raises "tensor was
 * closed". */
#include <string.h>

#include "bind_internal.h"
#include "ops_util.h"

static whl_tensor_ud *check_ud(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, WHL_TENSOR_MT);
}

static int push_size_table(lua_State *L, int n, const int64_t *v) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* ---- metamethods ---------------------------------------------------------------- */

static int t_gc(lua_State *L) {
    whl_tensor_ud *u = check_ud(L, 1);
    wh_tensor_clear(&u->t);
    return 0;
}

static int push_row(lua_State *L, wh_tensor *t, int key_idx) {
    if (t->ndim == 0) return luaL_error(L, "index: a 0-d tensor cannot be indexed (use item())");
    int64_t k = whl_check_index(L, key_idx, t->shape[0], "index", 1);
    if (t->ndim == 1) {
        wh_tensor *h = whl_to_host(L, t);
        lua_pushnumber(L, whl_load(h, h->offset + k * h->stride[0]));
        return 1;
    }
    wh_tensor *v = NULL;
    whl_check(L, wh_select(t, 0, k, &v));
    return whl_push_tensor(L, v);
}

static int t_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        const char *k = lua_tostring(L, 2);
        wh_tensor *t = whl_check_tensor(L, 1);
        if (strcmp(k, "grad") == 0) {
            wh_tensor_retain(t->grad);
            return whl_push_tensor(L, t->grad);
        }
        if (strcmp(k, "requires_grad") == 0) lua_pushboolean(L, t->requires_grad);
        else if (strcmp(k, "is_leaf") == 0) lua_pushboolean(L, t->grad_fn == NULL);
        else if (strcmp(k, "grad_fn") == 0) {
            if (t->grad_fn) lua_pushstring(L, t->grad_fn->name);
            else lua_pushnil(L);
        } else if (strcmp(k, "shape") == 0) push_size_table(L, t->ndim, t->shape);
        else if (strcmp(k, "device") == 0) {
            char buf[32];
            lua_pushstring(L, wh_device_name(wh_tensor_device(t), buf, sizeof buf));
        } else lua_pushnil(L);
        return 1;
    }
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) return push_row(L, t, 2);
    return luaL_error(L, "index: a tensor is indexed by an integer or a method/field name, not "
                      "a %s", luaL_typename(L, 2));
}

static void assign_row(lua_State *L, wh_tensor *t) {
    if (t->ndim == 0) luaL_error(L, "index: a 0-d tensor cannot be indexed (use fill_)");
    int64_t k = whl_check_index(L, 2, t->shape[0], "index", 1);
    /* The row view has no autograd state of its own, so the check that
     * guards recorded tensors must look at t. */
    whl_check(L, wh_check_inplace("index assignment", t));
    wh_tensor *row = NULL;
    whl_check(L, wh_select_raw(t, 0, k, &row));
    whl_push_tensor(L, row);
    if (lua_type(L, 3) == LUA_TNUMBER) {
        whl_check(L, wh_fill_(row, lua_tonumber(L, 3)));
    } else if (whl_is_tensor(L, 3)) {
        whl_check(L, wh_copy_(row, whl_check_tensor(L, 3)));
    } else {
        luaL_error(L, "index assignment: the value must be a number or a tensor, not a %s",
                   luaL_typename(L, 3));
    }
}

static int t_newindex(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        assign_row(L, t);
        return 0;
    }
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (k && strcmp(k, "requires_grad") == 0) {
        if (lua_type(L, 3) != LUA_TBOOLEAN)
            luaL_error(L, "requires_grad must be set to a boolean, not a %s",
                       luaL_typename(L, 3));
        bool v = lua_toboolean(L, 3);
        if (t->grad_fn) {
            if (!v)
                luaL_error(L, "requires_grad can only be changed on leaf tensors; this one "
                           "was made by '%s' (use detach())", t->grad_fn->name);
            return 0;
        }
        if (v && !wh_dtype_is_float(t->dtype))
            luaL_error(L, "requires_grad: only float tensors can require grad, this one is %s",
                       wh_dtype_name(t->dtype));
        t->requires_grad = v;
        return 0;
    }
    if (k && strcmp(k, "grad") == 0) {
        if (lua_isnil(L, 3)) {
            wh_tensor_clear(&t->grad);
            return 0;
        }
        wh_tensor *g = whl_check_tensor(L, 3);
        if (!wh_tensor_same_shape(g, t) || g->dtype != t->dtype) {
            char a[128], b[128];
            luaL_error(L, "grad: assigned gradient of shape %s (%s) does not match the tensor's "
                       "shape %s (%s)", wh_shape_str(g, a, sizeof a), wh_dtype_name(g->dtype),
                       wh_shape_str(t, b, sizeof b), wh_dtype_name(t->dtype));
        }
        wh_tensor_retain(g);
        wh_tensor_release(t->grad);
        t->grad = g;
        return 0;
    }
    return luaL_error(L, "cannot set field '%s' of a tensor (settable: requires_grad, grad, "
                      "integer indices)", k ? k : luaL_typename(L, 2));
}

static int t_len(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (t->ndim == 0) return luaL_error(L, "#: a 0-d tensor has no length (use numel())");
    lua_pushinteger(L, (lua_Integer)t->shape[0]);
    return 1;
}

static int t_tostring(lua_State *L) {
    whl_tensor_ud *u = check_ud(L, 1);
    if (!u->t) lua_pushstring(L, "[whorl.Tensor (closed)]");
    else whl_push_tensor_string(L, u->t);
    return 1;
}

static int t_close(lua_State *L) {
    whl_tensor_ud *u = check_ud(L, 1);
    wh_tensor_clear(&u->t);
    return 0;
}

/* ---- queries --------------------------------------------------------------------- */

static int m_size(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return push_size_table(L, t->ndim, t->shape);
    lua_pushinteger(L, (lua_Integer)t->shape[whl_check_dim(L, 2, t->ndim, 0)]);
    return 1;
}

static int m_stride(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return push_size_table(L, t->ndim, t->stride);
    lua_pushinteger(L, (lua_Integer)t->stride[whl_check_dim(L, 2, t->ndim, 0)]);
    return 1;
}

static int m_dim(lua_State *L) {
    lua_pushinteger(L, whl_check_tensor(L, 1)->ndim);
    return 1;
}

static int m_numel(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)wh_tensor_numel(whl_check_tensor(L, 1)));
    return 1;
}

static int m_is_contiguous(lua_State *L) {
    lua_pushboolean(L, wh_tensor_is_contiguous(whl_check_tensor(L, 1)));
    return 1;
}

static int m_dtype(lua_State *L) {
    lua_pushstring(L, wh_dtype_name(whl_check_tensor(L, 1)->dtype));
    return 1;
}

static int to_dtype(lua_State *L, wh_tensor *t, wh_dtype dt) {
    if (t->dtype == dt) {
        lua_pushvalue(L, 1);
        return 1;
    }
    wh_tensor *out = NULL;
    whl_check(L, wh_to_dtype(t, dt, &out));
    return whl_push_tensor(L, out);
}

/* type() -> "whorl.FloatTensor"; type(name) converts (Torch7). */
static int m_type(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_pushstring(L, whl_type_name(t->dtype));
        return 1;
    }
    return to_dtype(L, t, whl_check_dtype(L, 2));
}

static int m_to(lua_State *L) { return to_dtype(L, whl_check_tensor(L, 1), whl_check_dtype(L, 2)); }
static int m_float(lua_State *L) { return to_dtype(L, whl_check_tensor(L, 1), WH_FLOAT32); }
static int m_double(lua_State *L) { return to_dtype(L, whl_check_tensor(L, 1), WH_FLOAT64); }
static int m_byte(lua_State *L) { return to_dtype(L, whl_check_tensor(L, 1), WH_UINT8); }

/* ---- element access ---------------------------------------------------------------- */

/* The 0-based indices in slots 2..nidx+1, checked against t's shape. */
static void element_index(lua_State *L, wh_tensor *t, const char *op, int nidx, int64_t *idx) {
    if (nidx != t->ndim) {
        char buf[128];
        luaL_error(L, "%s: %d indices given for a %d-d tensor of shape %s", op, nidx, t->ndim,
                   wh_shape_str(t, buf, sizeof buf));
    }
    for (int d = 0; d < t->ndim; d++) idx[d] = whl_check_index(L, 2 + d, t->shape[d], op, d + 1);
}

static int m_get(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    int64_t idx[WH_MAX_DIMS];
    double v;
    element_index(L, t, "get", lua_gettop(L) - 1, idx);
    whl_check(L, wh_tensor_get(whl_to_host(L, t), idx, &v));
    lua_pushnumber(L, v);
    return 1;
}

static int m_set(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    int top = lua_gettop(L);
    if (top < 2 || lua_type(L, top) != LUA_TNUMBER)
        return luaL_error(L, "set: expected indices then a number value, as t:set(i, j, v)");
    int64_t idx[WH_MAX_DIMS];
    element_index(L, t, "set", top - 2, idx);
    whl_check(L, wh_check_inplace("set", t));
    whl_check(L, wh_tensor_set(t, idx, lua_tonumber(L, top)));
    /* autograd must see that a tensor it may have saved was changed */
    wh_tensor_bump_version(t);
    return 0;
}

static int m_item(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (wh_tensor_numel(t) != 1) {
        char buf[128];
        return luaL_error(L, "item: the tensor has %d elements (shape %s), item() needs exactly "
                          "one", (int)wh_tensor_numel(t), wh_shape_str(t, buf, sizeof buf));
    }
    wh_tensor *h = whl_to_host(L, t);
    lua_pushnumber(L, whl_load(h, h->offset));
    return 1;
}

static void push_nested(lua_State *L, const wh_tensor *t, int d, int64_t off) {
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        int64_t o = off + i * t->stride[d];
        if (d == t->ndim - 1) lua_pushnumber(L, whl_load(t, o));
        else push_nested(L, t, d + 1, o);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int m_totable(lua_State *L) {
    wh_tensor *h = whl_to_host(L, whl_check_tensor(L, 1));
    if (h->ndim == 0) lua_pushnumber(L, whl_load(h, h->offset));
    else push_nested(L, h, 0, h->offset);
    return 1;
}

static int m_tostring(lua_State *L) {
    whl_push_tensor_string(L, whl_check_tensor(L, 1));
    return 1;
}

/* Raw row-major contents as a string: what whorl.from_bytes reads back. */
static int m_bytes(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1), *c = NULL;
    wh_tensor *h = whl_to_host(L, t);
    whl_check(L, wh_contiguous_raw(h, false, &c));
    whl_push_tensor(L, c);
    lua_pushlstring(L, wh_tensor_data(c), (size_t)wh_tensor_numel(c) * wh_dtype_size(c->dtype));
    return 1;
}

/* ---- autograd ------------------------------------------------------------------------ */

static int m_backward(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    int opts = 3;
    wh_tensor *g = NULL;
    if (whl_is_tensor(L, 2)) g = whl_check_tensor(L, 2);
    else if (lua_type(L, 2) == LUA_TTABLE) opts = 2;
    else if (!lua_isnoneornil(L, 2)) luaL_typeerror(L, 2, "gradient tensor or options table");
    bool retain = whl_opt_field_boolean(L, opts, "retain_graph", false);
    whl_check(L, wh_backward(t, g, retain));
    return 0;
}

static int m_retain_grad(lua_State *L) {
    whl_check(L, wh_retain_grad(whl_check_tensor(L, 1)));
    lua_pushvalue(L, 1);
    return 1;
}

static int m_detach(lua_State *L) {
    wh_tensor *out = NULL;
    whl_check(L, wh_detach(whl_check_tensor(L, 1), &out));
    return whl_push_tensor(L, out);
}

static int m_requires_grad_(lua_State *L) {
    whl_check_tensor(L, 1);
    bool v = lua_isnoneornil(L, 2) ? true : (luaL_checktype(L, 2, LUA_TBOOLEAN),
                                            lua_toboolean(L, 2));
    lua_settop(L, 1);
    lua_pushstring(L, "requires_grad");
    lua_pushboolean(L, v);
    t_newindex(L);
    lua_settop(L, 1);
    return 1;
}

static int m_zero_grad(lua_State *L) {
    wh_tensor_clear(&whl_check_tensor(L, 1)->grad);
    lua_settop(L, 1);
    return 1;
}

static const luaL_Reg methods_fns[] = {
    {"size", m_size},
    {"stride", m_stride},
    {"dim", m_dim},
    {"numel", m_numel},
    {"nelement", m_numel},
    {"is_contiguous", m_is_contiguous},
    {"dtype", m_dtype},
    {"type", m_type},
    {"to", m_to},
    {"float", m_float},
    {"double", m_double},
    {"byte", m_byte},
    {"get", m_get},
    {"set", m_set},
    {"item", m_item},
    {"totable", m_totable},
    {"tostring", m_tostring},
    {"bytes", m_bytes},
    {"backward", m_backward},
    {"retain_grad", m_retain_grad},
    {"detach", m_detach},
    {"requires_grad_", m_requires_grad_},
    {"zero_grad", m_zero_grad},
    {"close", t_close},
    {NULL, NULL},
};

void whl_open_tensor(lua_State *L, int module, int methods) {
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, methods_fns, 0);
    lua_pop(L, 1);
    luaL_getmetatable(L, WHL_TENSOR_MT);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    static const luaL_Reg meta[] = {
        {"__newindex", t_newindex}, {"__len", t_len},     {"__tostring", t_tostring},
        {"__gc", t_gc},             {"__close", t_close}, {NULL, NULL},
    };
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}
