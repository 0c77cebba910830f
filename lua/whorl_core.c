/* The C module `whorl.core`: the helpers every lua/bind_*.c uses (see
 * binding.h), garbage-collector pacing for tensor memory, the module-level
 * autograd/RNG/memory functions, and luaopen_whorl_core, which calls each
 * family's opener.
 *
 * Module functions defined here:
 *   whorl.is_tensor(x)
 *   whorl.manual_seed(n), whorl.get_rng_state() -> 64 hex digits,
 *   whorl.set_rng_state(s)
 *   whorl.set_grad_enabled(bool) -> previous, whorl.is_grad_enabled()
 *   whorl.grad(outputs, inputs, {grad_outputs=, retain_graph=false}) -> {grads}
 *   whorl.memory_stats() -> {live_bytes, peak_bytes, gc_collections, gc_threshold}
 *   whorl.empty_cache()
 *   whorl.clock() -> seconds (monotonic wall clock, for timing)
 *   whorl.hash64(s [, seed]) -> integer (core's wh_hash64 of the bytes of s)
 * Creation functions are in bind_create.c, tensor methods in bind_tensor.c. */
#include <dlfcn.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind_internal.h"
#include "dataset.h"
#include <time.h>

/* ---- tensor arguments --------------------------------------------------------- */

wh_tensor *whl_check_tensor(lua_State *L, int idx) {
    whl_tensor_ud *u = luaL_testudata(L, idx, WHL_TENSOR_MT);
    if (!u) luaL_typeerror(L, idx, "tensor");
    if (!u->t) luaL_argerror(L, idx, "tensor was closed");
    return u->t;
}

wh_tensor *whl_opt_tensor(lua_State *L, int idx) {
    return lua_isnoneornil(L, idx) ? NULL : whl_check_tensor(L, idx);
}

bool whl_is_tensor(lua_State *L, int idx) {
    return luaL_testudata(L, idx, WHL_TENSOR_MT) != NULL;
}

wh_tensor *whl_tensor_or_scalar(lua_State *L, int idx, const wh_tensor *like) {
    if (whl_is_tensor(L, idx)) return whl_check_tensor(L, idx);
    if (lua_type(L, idx) != LUA_TNUMBER) luaL_typeerror(L, idx, "tensor or number");
    /* on like's device, so that t op number works there too */
    wh_tensor *s = NULL;
    whl_check(L, wh_tensor_empty(like ? like->dtype : WH_FLOAT32, 0, NULL,
                                 like ? like->storage->allocator : NULL, &s));
    whl_push_tensor(L, s);
    whl_check(L, wh_fill(s, lua_tonumber(L, idx)));
    return s;
}

void whl_check(lua_State *L, wh_status st) {
    if (st != WH_OK) luaL_error(L, "%s", wh_error_message());
}

/* ---- garbage-collector pacing -------------------------------------------------
 * A tensor's userdata is a few bytes while its storage may be megabytes, so
 * Lua's collector, pacing itself on its own heap, would let gigabytes of
 * unreachable tensors pile up.  Each new tensor therefore checks the bytes
 * held by all storages: once they exceed what was live after the previous
 * collection by half again (at least GC_FLOOR), a full collection runs.
 * The cost is one full collection per GC_FLOOR (or more) bytes allocated,
 * negligible next to filling that memory; RSS stays within about
 * 1.5 x live + GC_FLOOR.  Incremental steps proportional to the bytes
 * (LUA_GCSTEP) are not used: Lua paces them on its own small heap, so with a
 * few MB of Lua objects every few MB of tensors would start a whole cycle.
 * The state is per process, not per lua_State: the memory counter it
 * watches is global too.  Cairo canvases and match cylinders note their
 * memory in the same counter (wh_memory_note_external) and call
 * whl_gc_account when they are made. */
#define GC_FLOOR ((size_t)64 << 20)

static size_t gc_baseline;
static unsigned long gc_collections;

static size_t gc_threshold(void) {
    size_t allow = gc_baseline / 2 > GC_FLOOR ? gc_baseline / 2 : GC_FLOOR;
    return gc_baseline + allow;
}

void whl_gc_account(lua_State *L) {
    size_t live = wh_memory_live_bytes();
    /* Memory freed behind our back (close(), Lua's own cycles) lowers the bar. */
    if (live < gc_baseline) gc_baseline = live;
    if (live <= gc_threshold()) return;
    if (!lua_gc(L, LUA_GCISRUNNING)) return; /* the user stopped the collector */
    lua_gc(L, LUA_GCCOLLECT);
    gc_baseline = wh_memory_live_bytes();
    gc_collections++;
}

int whl_push_tensor(lua_State *L, wh_tensor *t) {
    if (!t) {
        lua_pushnil(L);
        return 1;
    }
    whl_tensor_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = t;
    luaL_setmetatable(L, WHL_TENSOR_MT);
    whl_gc_account(L);
    return 1;
}

/* ---- shapes, dims, dtypes, options -------------------------------------------------- */

static int64_t check_size(lua_State *L, int idx, int which) {
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint) {
        if (lua_type(L, idx) == LUA_TNUMBER)
            luaL_error(L, "size %d must be an integer, got %s", which, lua_tostring(L, idx));
        luaL_error(L, "size %d must be an integer, got %s", which, luaL_typename(L, idx));
    }
    return (int64_t)v;
}

/* Sizes from stack slots first..last, or from a table at first. */
void whl_shape_range(lua_State *L, int first, int last, int *ndim, int64_t *shape) {
    if (first <= last && lua_type(L, first) == LUA_TTABLE) {
        if (last > first) luaL_argerror(L, first + 1, "unexpected argument after a size table");
        lua_Integer n = luaL_len(L, first);
        if (n > WH_MAX_DIMS)
            luaL_error(L, "a shape has %d dimensions, whorl supports at most %d", (int)n,
                       WH_MAX_DIMS);
        for (int i = 0; i < n; i++) {
            lua_geti(L, first, i + 1);
            shape[i] = check_size(L, -1, i + 1);
            lua_pop(L, 1);
        }
        *ndim = (int)n;
        return;
    }
    int n = last - first + 1;
    if (n < 0) n = 0;
    if (n > WH_MAX_DIMS)
        luaL_error(L, "a shape has %d dimensions, whorl supports at most %d", n, WH_MAX_DIMS);
    for (int i = 0; i < n; i++) shape[i] = check_size(L, first + i, i + 1);
    *ndim = n;
}

void whl_check_shape(lua_State *L, int idx, int *ndim, int64_t *shape) {
    whl_shape_range(L, idx, lua_gettop(L), ndim, shape);
}

int whl_check_dim(lua_State *L, int idx, int ndim, int ndim_extra) {
    lua_Integer d = luaL_checkinteger(L, idx);
    int n = ndim + ndim_extra;
    if (d >= 1 && d <= n) return (int)d - 1;
    if (d < 0 && d >= -n) return (int)(d + n);
    if (n == 0) return luaL_argerror(L, idx, "a 0-d tensor has no dimensions"), 0;
    return luaL_argerror(L, idx, lua_pushfstring(L, "dimension %d is out of range for a %d-d "
                         "tensor (expected 1..%d or -%d..-1)", (int)d, ndim, n, n)), 0;
}

int64_t whl_check_index(lua_State *L, int idx, int64_t n, const char *op, int dim) {
    int isint;
    lua_Integer k = lua_tointegerx(L, idx, &isint);
    if (!isint) {
        luaL_error(L, "%s: index for dimension %d must be an integer, got %s", op, dim,
                   lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
    }
    if (k >= 1 && k <= n) return k - 1;
    if (k < 0 && k >= -n) return k + n;
    luaL_error(L, "%s: index %I is out of range for dimension %d of size %I (valid: 1..%I or "
               "-%I..-1)", op, (lua_Integer)k, dim, (lua_Integer)n, (lua_Integer)n,
               (lua_Integer)n);
    return 0;
}

static const struct { const char *name; wh_dtype dt; } dtype_names[] = {
    {"float32", WH_FLOAT32}, {"float", WH_FLOAT32}, {"whorl.FloatTensor", WH_FLOAT32},
    {"float64", WH_FLOAT64}, {"double", WH_FLOAT64}, {"whorl.DoubleTensor", WH_FLOAT64},
    {"uint8", WH_UINT8}, {"byte", WH_UINT8}, {"whorl.ByteTensor", WH_UINT8},
};

wh_dtype whl_check_dtype(lua_State *L, int idx) {
    const char *s = luaL_checkstring(L, idx);
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (strcmp(s, dtype_names[i].name) == 0) return dtype_names[i].dt;
    return luaL_argerror(L, idx, lua_pushfstring(L, "unknown dtype '%s' (float32/float, "
                         "float64/double, uint8/byte)", s)), WH_FLOAT32;
}

wh_dtype whl_opt_dtype(lua_State *L, int idx, wh_dtype def) {
    return lua_isnoneornil(L, idx) ? def : whl_check_dtype(L, idx);
}

const char *whl_type_name(wh_dtype dt) {
    switch (dt) {
    case WH_FLOAT32: return "whorl.FloatTensor";
    case WH_FLOAT64: return "whorl.DoubleTensor";
    case WH_UINT8: return "whorl.ByteTensor";
    }
    return "whorl.Tensor";
}

/* Pushes field `name` of the options table at idx (nil when idx is none/nil). */
static int get_option(lua_State *L, int idx, const char *name) {
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    if (lua_type(L, idx) != LUA_TTABLE) luaL_typeerror(L, idx, "options table");
    return lua_getfield(L, idx, name);
}

static void option_type_error(lua_State *L, const char *name, const char *want) {
    luaL_error(L, "option '%s' must be %s, got %s", name, want, luaL_typename(L, -1));
}

double whl_opt_field_number(lua_State *L, int idx, const char *name, double def) {
    int t = get_option(L, idx, name);
    double v = def;
    if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL) option_type_error(L, name, "a number");
    lua_pop(L, 1);
    return v;
}

lua_Integer whl_opt_field_integer(lua_State *L, int idx, const char *name, lua_Integer def) {
    int t = get_option(L, idx, name), isint = 1;
    lua_Integer v = def;
    if (t == LUA_TNUMBER) v = lua_tointegerx(L, -1, &isint);
    if ((t != LUA_TNIL && t != LUA_TNUMBER) || !isint) option_type_error(L, name, "an integer");
    lua_pop(L, 1);
    return v;
}

bool whl_opt_field_boolean(lua_State *L, int idx, const char *name, bool def) {
    int t = get_option(L, idx, name);
    bool v = def;
    if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL) option_type_error(L, name, "a boolean");
    lua_pop(L, 1);
    return v;
}

void whl_opt_field_pair(lua_State *L, int idx, const char *name, int def, int pair[2]) {
    int t = get_option(L, idx, name), isint = 1;
    pair[0] = pair[1] = def;
    if (t == LUA_TNUMBER) {
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (isint && v >= INT_MIN && v <= INT_MAX) pair[0] = pair[1] = (int)v;
        else isint = 0;
    } else if (t == LUA_TTABLE) {
        if (luaL_len(L, -1) != 2) luaL_error(L, "option '%s' must be a number or {h, w}", name);
        for (int i = 0; i < 2 && isint; i++) {
            lua_geti(L, -1, i + 1);
            lua_Integer v = lua_tointegerx(L, -1, &isint);
            if (isint && v >= INT_MIN && v <= INT_MAX) pair[i] = (int)v;
            else isint = 0;
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        isint = 0;
    }
    if (!isint) luaL_error(L, "option '%s' must be an integer or a pair of integers {h, w}", name);
    lua_pop(L, 1);
}

/* Raises an error naming the op, the key and the allowed names for a key of
 * the options table at idx that is not in `allowed` (NULL-terminated), so a
 * misspelt option is never silently ignored.  nil/none passes; another
 * non-table value is an error.  Non-string keys are skipped when
 * `positional` is true (tables that also hold positional values). */
void whl_add_to_subtable(lua_State *L, int module, const char *name, const luaL_Reg *funcs) {
    if (lua_getfield(L, module, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, module, name);
    }
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

void whl_check_options(lua_State *L, int idx, const char *op, const char *const *allowed,
                       bool positional) {
    if (lua_isnoneornil(L, idx)) return;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: options must be a table, got %s", op, luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (positional && lua_type(L, -1) != LUA_TSTRING) continue;
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        bool ok = false;
        for (const char *const *a = allowed; key && *a && !ok; a++) ok = strcmp(key, *a) == 0;
        if (ok) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *const *a = allowed; *a; a++) {
            if (a != allowed) luaL_addstring(&b, ", ");
            luaL_addstring(&b, *a);
        }
        luaL_pushresult(&b);
        luaL_error(L, "%s: unknown option '%s' (expected %s)", op,
                   key ? key : luaL_tolstring(L, -2, NULL), lua_tostring(L, -1));
    }
}

/* ---- host copies ----------------------------------------------------------------------- */

wh_tensor *whl_to_host(lua_State *L, wh_tensor *t) {
    wh_tensor *h = NULL;
    if (wh_tensor_device(t).type == WH_CPU) return t;
    whl_check(L, wh_tensor_empty(t->dtype, t->ndim, t->shape, NULL, &h));
    whl_push_tensor(L, h);
    whl_check(L, wh_copy_into(h, t));
    return h;
}

double whl_load(const wh_tensor *t, int64_t off) {
    switch (t->dtype) {
    case WH_FLOAT32: return ((const float *)t->storage->data)[off];
    case WH_FLOAT64: return ((const double *)t->storage->data)[off];
    case WH_UINT8: return ((const uint8_t *)t->storage->data)[off];
    }
    return NAN;
}

/* ---- module functions ------------------------------------------------------------------ */

static int l_is_tensor(lua_State *L) {
    lua_pushboolean(L, whl_is_tensor(L, 1));
    return 1;
}

static int l_manual_seed(lua_State *L) {
    lua_Integer seed;
    if (lua_isinteger(L, 1)) seed = lua_tointeger(L, 1);
    else seed = (lua_Integer)luaL_checknumber(L, 1);
    wh_rng_seed((uint64_t)seed);
    return 0;
}

static int l_get_rng_state(lua_State *L) {
    uint64_t s[4];
    char buf[4 * 16 + 1];
    wh_rng_get_state(s);
    for (int i = 0; i < 4; i++) snprintf(buf + 16 * i, 17, "%016" PRIx64, s[i]);
    lua_pushstring(L, buf);
    return 1;
}

static int l_set_rng_state(lua_State *L) {
    size_t n;
    const char *str = luaL_checklstring(L, 1, &n);
    uint64_t s[4] = {0};
    bool ok = n == 64;
    for (size_t i = 0; ok && i < 64; i++) {
        char c = str[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) ok = false;
        else s[i / 16] = s[i / 16] << 4 | (uint64_t)v;
    }
    if (!ok)
        return luaL_argerror(L, 1, "not an RNG state (64 hex digits from whorl.get_rng_state)");
    wh_rng_set_state(s);
    return 0;
}

static int l_set_grad_enabled(lua_State *L) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    lua_pushboolean(L, wh_set_grad_enabled(lua_toboolean(L, 1)));
    return 1;
}

static int l_is_grad_enabled(lua_State *L) {
    lua_pushboolean(L, wh_grad_enabled());
    return 1;
}

/* A tensor or a list of tensors at idx, as a borrowed array in a scratch
 * userdata left on the stack (so it is freed even if an error follows). */
static wh_tensor **tensor_list(lua_State *L, int idx, const char *what, int *n, bool allow_nil,
                               int expect) {
    if (whl_is_tensor(L, idx)) {
        wh_tensor **a = lua_newuserdatauv(L, sizeof *a, 0);
        a[0] = whl_check_tensor(L, idx);
        *n = 1;
        return a;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "grad: %s must be a tensor or a list of tensors, got %s", what,
                   luaL_typename(L, idx));
    int count = expect >= 0 ? expect : (int)luaL_len(L, idx);
    if (count == 0) luaL_error(L, "grad: %s is an empty list", what);
    wh_tensor **a = lua_newuserdatauv(L, sizeof *a * (size_t)count, 0);
    for (int i = 0; i < count; i++) {
        lua_geti(L, idx, i + 1);
        if (lua_isnil(L, -1) && allow_nil) a[i] = NULL;
        else if (!whl_is_tensor(L, -1))
            luaL_error(L, "grad: %s[%d] must be a tensor, got %s", what, i + 1,
                       luaL_typename(L, -1));
        else a[i] = whl_check_tensor(L, -1);
        lua_pop(L, 1);
    }
    *n = count;
    return a;
}

/* whorl.grad(outputs, inputs, {grad_outputs=, retain_graph=false}) -> list of
 * gradients of the outputs with respect to each input (leaf or
 * intermediate), leaving every .grad untouched. */
static int l_grad(lua_State *L) {
    int nout, nin, ngo = 0;
    lua_settop(L, 3); /* scratch arrays go above the arguments */
    wh_tensor **outs = tensor_list(L, 1, "outputs", &nout, false, -1);
    wh_tensor **ins = tensor_list(L, 2, "inputs", &nin, false, -1);
    bool retain = whl_opt_field_boolean(L, 3, "retain_graph", false);
    wh_tensor **gouts = NULL;
    int slot = lua_gettop(L) + 1;
    if (get_option(L, 3, "grad_outputs") != LUA_TNIL) {
        /* entries may be nil (a ones gradient), so # only bounds the count */
        if (lua_type(L, slot) == LUA_TTABLE && luaL_len(L, slot) > nout)
            luaL_error(L, "grad: %d grad_outputs given for %d outputs", (int)luaL_len(L, slot),
                       nout);
        gouts = tensor_list(L, slot, "grad_outputs", &ngo, true,
                            whl_is_tensor(L, slot) ? -1 : nout);
        if (ngo != nout)
            luaL_error(L, "grad: %d grad_outputs given for %d outputs", ngo, nout);
    }
    wh_tensor **grads = lua_newuserdatauv(L, sizeof *grads * (size_t)nin, 0);
    whl_check(L, wh_autograd_grad(nout, outs, gouts, nin, ins, retain, grads));
    /* Anchor every result before anything (a table allocation) can raise. */
    int first = lua_gettop(L) + 1;
    for (int i = 0; i < nin; i++) whl_push_tensor(L, grads[i]);
    lua_createtable(L, nin, 0);
    for (int i = 0; i < nin; i++) {
        lua_pushvalue(L, first + i);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_memory_stats(lua_State *L) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)wh_memory_live_bytes());
    lua_setfield(L, -2, "live_bytes");
    lua_pushinteger(L, (lua_Integer)wh_memory_peak_bytes());
    lua_setfield(L, -2, "peak_bytes");
    lua_pushinteger(L, (lua_Integer)gc_collections);
    lua_setfield(L, -2, "gc_collections");
    lua_pushinteger(L, (lua_Integer)gc_threshold());
    lua_setfield(L, -2, "gc_threshold");
    return 1;
}

static int l_empty_cache(lua_State *L) {
    wh_cpu_allocator_empty_cache();
    return 0;
}

/* Lua has only os.time (whole seconds) and os.clock (CPU time of all
 * threads): progress lines need wall time. */
static int l_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static int l_hash64(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    uint64_t seed = (uint64_t)luaL_optinteger(L, 2, 0);
    lua_pushinteger(L, (lua_Integer)wh_hash64(s, n, seed));
    return 1;
}

static const luaL_Reg module_fns[] = {
    {"is_tensor", l_is_tensor},
    {"manual_seed", l_manual_seed},
    {"get_rng_state", l_get_rng_state},
    {"set_rng_state", l_set_rng_state},
    {"set_grad_enabled", l_set_grad_enabled},
    {"is_grad_enabled", l_is_grad_enabled},
    {"grad", l_grad},
    {"memory_stats", l_memory_stats},
    {"empty_cache", l_empty_cache},
    {"clock", l_clock},
    {"hash64", l_hash64},
    {NULL, NULL},
};

/* lua_close unloads C modules with dlclose, which would unmap this library
 * and the OpenMP runtime it pulled in while OpenMP's idle worker threads
 * still run code there: a segfault at exit, seen in about one run in six.
 * Taking a reference with RTLD_NODELETE keeps both mapped until exit. */
static void pin_library(void) {
    Dl_info info;
    if (dladdr((void *)pin_library, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

int luaopen_whorl_core(lua_State *L) {
    pin_library();
    lua_newtable(L);
    int module = lua_gettop(L);
    luaL_setfuncs(L, module_fns, 0);
    luaL_newmetatable(L, WHL_TENSOR_MT);
    lua_pop(L, 1);
    lua_newtable(L);
    int methods = lua_gettop(L);
    /* Lua code (whorl/init.lua, nn) may add methods through whorl.Tensor. */
    lua_pushvalue(L, methods);
    lua_setfield(L, module, "Tensor");

    whl_open_tensor(L, module, methods);
    whl_open_create(L, module, methods);
    void (*families[])(lua_State *, int, int) = {whl_open_math, whl_open_shape, whl_open_reduce,
                                                 whl_open_nn, whl_open_conv, whl_open_loss,
                                                 whl_open_optim,
                                                 whl_open_image, whl_open_synth, whl_open_metrics,
                                                 whl_open_fingerprint, whl_open_fingerprint_match,
                                                 whl_open_plot, whl_open_cuda};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i]) families[i](L, module, methods);
    lua_settop(L, module);
    gc_baseline = wh_memory_live_bytes();
    return 1;
}
