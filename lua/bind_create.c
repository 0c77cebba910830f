/* Tensor creation functions of the Lua module.
 *
 *   whorl.tensor(data, opts)       data: a number (0-d), nested tables (the
 *                                  nesting gives the shape) or a tensor (copied)
 *   whorl.zeros(sizes, opts)       sizes: numbers (2, 3) or a table {2, 3};
 *   whorl.ones / empty / rand / randn   no sizes gives a 0-d tensor
 *   whorl.full(sizes_table_or_n, value, opts)
 *   whorl.arange([start,] stop [, step], opts)   [start, stop): stop is
 *                                  exclusive as in NumPy/PyTorch, start defaults to 0
 *   whorl.from_bytes(string, dtype, sizes)   raw row-major contents (t:bytes())
 * opts: a table {dtype = "float32"|"float64"|"uint8" (or float/double/byte),
 * requires_grad = bool, device = "cpu"|"cuda"|"cuda:N"}, or just a dtype
 * string.  zeros and empty allocate on the device; the others are made on
 * the CPU and copied there.  The default dtype is
 * float32 (Torch7's FloatTensor); rand is uniform on [0, 1), randn N(0, 1). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "bind_internal.h"

/* The options slot of a creation call whose sizes start at `first`: the
 * last argument when it is a table or string that cannot be the sizes. */
static int options_slot(lua_State *L, int first) {
    int top = lua_gettop(L);
    if (top < first) return 0;
    int t = lua_type(L, top);
    if (t == LUA_TSTRING) return top;
    if (t == LUA_TTABLE && top > first) return top;
    return 0;
}

typedef struct {
    wh_dtype dtype;
    bool requires_grad;
    wh_allocator *alloc; /* NULL: the CPU */
} create_opts;

static create_opts parse_opts(lua_State *L, int slot, wh_dtype def) {
    create_opts o = {def, false, NULL};
    if (slot == 0 || lua_isnoneornil(L, slot)) return o;
    if (lua_type(L, slot) == LUA_TSTRING) {
        o.dtype = whl_check_dtype(L, slot);
        return o;
    }
    luaL_checktype(L, slot, LUA_TTABLE);
    if (lua_getfield(L, slot, "dtype") != LUA_TNIL) o.dtype = whl_check_dtype(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, slot, "device") != LUA_TNIL) {
        wh_device d;
        whl_check(L, wh_device_parse(luaL_checkstring(L, -1), &d));
        whl_check(L, wh_device_allocator(d, &o.alloc));
        if (o.alloc == wh_cpu_allocator()) o.alloc = NULL;
    }
    lua_pop(L, 1);
    o.requires_grad = whl_opt_field_boolean(L, slot, "requires_grad", false);
    return o;
}

/* With t pushed on top of the stack: moves it to the requested device
 * (replacing it there) and applies the requires_grad option. */
static int finish_created(lua_State *L, wh_tensor *t, const create_opts *o, const char *fn) {
    if (o->alloc && t->storage->allocator != o->alloc) {
        wh_tensor *moved = NULL;
        whl_check(L, wh_to_device(t, o->alloc, &moved));
        lua_pop(L, 1);
        whl_push_tensor(L, moved);
        t = moved;
    }
    if (o->requires_grad) {
        if (!wh_dtype_is_float(t->dtype))
            luaL_error(L, "%s: requires_grad needs a float dtype, not %s", fn,
                       wh_dtype_name(t->dtype));
        t->requires_grad = true;
    }
    return 1;
}

/* Pushes t (taking its reference), then as finish_created. */
static int push_created(lua_State *L, wh_tensor *t, const create_opts *o, const char *fn) {
    whl_push_tensor(L, t);
    return finish_created(L, t, o, fn);
}

typedef enum { C_ZEROS, C_ONES, C_EMPTY, C_RAND, C_RANDN } create_kind;

static int create(lua_State *L, create_kind kind, const char *fn) {
    int slot = options_slot(L, 1), ndim;
    int64_t shape[WH_MAX_DIMS];
    whl_shape_range(L, 1, slot ? slot - 1 : lua_gettop(L), &ndim, shape);
    create_opts o = parse_opts(L, slot, WH_FLOAT32);
    wh_tensor *t = NULL;
    wh_status st = WH_OK;
    switch (kind) {
    case C_ZEROS: st = wh_tensor_zeros_on(o.dtype, ndim, shape, o.alloc, &t); break;
    case C_ONES: st = wh_tensor_full(o.dtype, ndim, shape, 1.0, &t); break;
    case C_EMPTY: st = wh_tensor_empty(o.dtype, ndim, shape, o.alloc, &t); break;
    case C_RAND: st = wh_tensor_rand(o.dtype, ndim, shape, 0.0, 1.0, &t); break;
    case C_RANDN: st = wh_tensor_randn(o.dtype, ndim, shape, 0.0, 1.0, &t); break;
    }
    whl_check(L, st);
    return push_created(L, t, &o, fn);
}

static int l_zeros(lua_State *L) { return create(L, C_ZEROS, "zeros"); }
static int l_ones(lua_State *L) { return create(L, C_ONES, "ones"); }
static int l_empty(lua_State *L) { return create(L, C_EMPTY, "empty"); }
static int l_rand(lua_State *L) { return create(L, C_RAND, "rand"); }
static int l_randn(lua_State *L) { return create(L, C_RANDN, "randn"); }

static int l_full(lua_State *L) {
    int ndim;
    int64_t shape[WH_MAX_DIMS];
    if (lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TNUMBER)
        luaL_typeerror(L, 1, "size table or number");
    whl_shape_range(L, 1, 1, &ndim, shape);
    double v = luaL_checknumber(L, 2);
    create_opts o = parse_opts(L, 3, WH_FLOAT32);
    wh_tensor *t = NULL;
    whl_check(L, wh_tensor_full(o.dtype, ndim, shape, v, &t));
    return push_created(L, t, &o, "full");
}

static int l_arange(lua_State *L) {
    int nnum = 0;
    while (nnum < 3 && lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
    if (nnum == 0) return luaL_typeerror(L, 1, "number");
    double start = 0, stop, step = 1;
    if (nnum == 1) {
        stop = lua_tonumber(L, 1);
    } else {
        start = lua_tonumber(L, 1);
        stop = lua_tonumber(L, 2);
        if (nnum == 3) step = lua_tonumber(L, 3);
    }
    create_opts o = parse_opts(L, nnum + 1, WH_FLOAT32);
    wh_tensor *t = NULL;
    whl_check(L, wh_tensor_arange(o.dtype, start, stop, step, &t));
    return push_created(L, t, &o, "arange");
}

static int l_from_bytes(lua_State *L) {
    size_t n;
    const char *bytes = luaL_checklstring(L, 1, &n);
    wh_dtype dt = whl_check_dtype(L, 2);
    int ndim;
    int64_t shape[WH_MAX_DIMS];
    if (lua_gettop(L) < 3) {
        /* no sizes: a 1-d tensor of every element in the string */
        size_t es = wh_dtype_size(dt);
        if (n % es != 0)
            luaL_error(L, "from_bytes: %d bytes are not a whole number of %s elements", (int)n,
                       wh_dtype_name(dt));
        ndim = 1;
        shape[0] = (int64_t)(n / es);
    } else {
        whl_check_shape(L, 3, &ndim, shape);
    }
    wh_tensor *t = NULL;
    whl_check(L, wh_tensor_from_bytes(dt, ndim, shape, bytes, n, &t));
    return whl_push_tensor(L, t);
}

/* ---- whorl.tensor from nested tables ------------------------------------------------- */

static void nested_shape(lua_State *L, int idx, int *ndim, int64_t *shape) {
    int d = 0;
    lua_pushvalue(L, idx);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (d == WH_MAX_DIMS)
            luaL_error(L, "tensor: tables nested deeper than %d levels", WH_MAX_DIMS);
        int64_t n = (int64_t)lua_rawlen(L, -1);
        shape[d++] = n;
        if (n == 0) break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    *ndim = d;
}

static const char *path_str(int depth, const int64_t *path, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < depth && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "[%lld]", (long long)path[i] + 1);
    return buf;
}

static void store(wh_tensor *t, int64_t i, double v) {
    void *p = t->storage->data;
    switch (t->dtype) {
    case WH_FLOAT32: ((float *)p)[i] = (float)v; break;
    case WH_FLOAT64: ((double *)p)[i] = v; break;
    case WH_UINT8:
        ((uint8_t *)p)[i] = (uint8_t)(isnan(v) ? 0 : v < 0 ? 0 : v > 255 ? 255 : nearbyint(v));
        break;
    }
}

/* Fills t (contiguous) from the value on top of the stack, checking that
 * every level has the same length. */
static void fill_nested(lua_State *L, wh_tensor *t, int depth, int64_t *path, int64_t *pos) {
    char buf[128];
    if (depth == t->ndim) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "tensor: element %s is not a number (%s)",
                       path_str(depth, path, buf, sizeof buf), luaL_typename(L, -1));
        store(t, (*pos)++, lua_tonumber(L, -1));
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "tensor: entry %s is a %s, expected a table of %I entries (nested "
                   "tables must be rectangular)", path_str(depth, path, buf, sizeof buf),
                   luaL_typename(L, -1), (lua_Integer)t->shape[depth]);
    int64_t n = (int64_t)lua_rawlen(L, -1);
    if (n != t->shape[depth])
        luaL_error(L, "tensor: entry %s has %I entries, expected %I (nested tables must be "
                   "rectangular)", depth ? path_str(depth, path, buf, sizeof buf) : "(top)",
                   (lua_Integer)n, (lua_Integer)t->shape[depth]);
    for (int64_t i = 0; i < n; i++) {
        path[depth] = i;
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        fill_nested(L, t, depth + 1, path, pos);
        lua_pop(L, 1);
    }
}

static int l_tensor(lua_State *L) {
    wh_tensor *t = NULL;
    if (whl_is_tensor(L, 1)) {
        wh_tensor *src = whl_check_tensor(L, 1);
        create_opts o = parse_opts(L, 2, src->dtype);
        whl_check(L, wh_to_dtype_raw(src, o.dtype, &t));
        return push_created(L, t, &o, "tensor");
    }
    create_opts o = parse_opts(L, 2, WH_FLOAT32);
    if (lua_type(L, 1) == LUA_TNUMBER) {
        whl_check(L, wh_tensor_full(o.dtype, 0, NULL, lua_tonumber(L, 1), &t));
        return push_created(L, t, &o, "tensor");
    }
    if (lua_type(L, 1) != LUA_TTABLE) return luaL_typeerror(L, 1, "number, table or tensor");
    int ndim;
    int64_t shape[WH_MAX_DIMS], path[WH_MAX_DIMS], pos = 0;
    nested_shape(L, 1, &ndim, shape);
    whl_check(L, wh_tensor_empty(o.dtype, ndim, shape, NULL, &t));
    whl_push_tensor(L, t);
    lua_pushvalue(L, 1);
    fill_nested(L, t, 0, path, &pos);
    lua_pop(L, 1);
    return finish_created(L, t, &o, "tensor");
}

static const luaL_Reg create_fns[] = {
    {"tensor", l_tensor},     {"zeros", l_zeros}, {"ones", l_ones},
    {"empty", l_empty},       {"full", l_full},   {"arange", l_arange},
    {"rand", l_rand},         {"randn", l_randn}, {"from_bytes", l_from_bytes},
    {NULL, NULL},
};

void whl_open_create(lua_State *L, int module, int methods) {
    lua_pushvalue(L, module);
    luaL_setfuncs(L, create_fns, 0);
    lua_pop(L, 1);
}
