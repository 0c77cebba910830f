/* whorl.cuda: the GPU backend from Lua, and moving tensors between devices.
 *
 * Nothing here loads CUDA when `require "whorl"` runs: the backend library
 * (libwhorl_cuda.so) is opened on the first call that needs it, and a
 * machine without it, without a driver or without a device simply has
 * is_available() == false.
 *
 *   whorl.cuda.is_available()        true when a CUDA device can be used
 *   whorl.cuda.unavailable_reason()  why not (a string), or nil when available
 *   whorl.cuda.device_count()        0 when unavailable
 *   whorl.cuda.current_device(), whorl.cuda.set_device(i)   0-based, as in "cuda:0"
 *   whorl.cuda.synchronize([i])      waits for the device's queued work (all devices by default)
 *   whorl.cuda.empty_cache()         frees the allocator's cached blocks
 *   whorl.cuda.memory_stats([i])     {allocated_bytes, reserved_bytes, peak_allocated_bytes,
 *                                     cached_blocks, allocations, cache_hits, device_mallocs,
 *                                     oom_retries}
 *   whorl.cuda.get_device_name([i]), whorl.cuda.versions()
 *   whorl.cuda.set_benchmark(b)      time cuDNN's convolution algorithms once per shape
 *                                    instead of asking its heuristics (default false)
 *   whorl.cuda.set_deterministic(b)  only bitwise-reproducible algorithms (default true)
 *   whorl.cuda.set_allow_tf32(b)     float32 convolutions/matmuls on TF32 tensor cores
 *                                    (default false: results match the CPU to 1e-4)
 *   each set_* returns the previous value; whorl.cuda.get_option(name) reads one.
 *
 * Tensor methods: t:cuda([i]) t:cpu() t:is_cuda(), and t:to(device) for
 * "cpu", "cuda" or "cuda:N" (t:to(dtype) still converts dtypes).  Moves
 * are differentiable: the gradient flows back to the original device. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "binding.h"

/* The backend, or NULL when CUDA is unavailable (without raising). */
static const wh_backend *backend(void) {
    const wh_backend *be = NULL;
    if (wh_backend_load(WH_CUDA, &be) != WH_OK) return NULL;
    return be->device_count() > 0 ? be : NULL;
}

/* The backend, or a Lua error saying why there is none. */
static const wh_backend *check_backend(lua_State *L) {
    const wh_backend *be = NULL;
    whl_check(L, wh_backend_load(WH_CUDA, &be));
    return be;
}

/* An optional device index argument (default: the current device), checked. */
static int check_index(lua_State *L, int idx, const wh_backend *be) {
    if (lua_isnoneornil(L, idx)) return be->current_device();
    lua_Integer i = luaL_checkinteger(L, idx);
    int n = be->device_count();
    if (i < 0 || i >= n)
        luaL_error(L, "cuda:%d does not exist (%d device%s; indices count from 0)", (int)i, n,
                   n == 1 ? "" : "s");
    return (int)i;
}

static int l_is_available(lua_State *L) {
    lua_pushboolean(L, backend() != NULL);
    return 1;
}

static int l_unavailable_reason(lua_State *L) {
    if (backend()) {
        lua_pushnil(L);
        return 1;
    }
    const char *r = wh_backend_unavailable_reason(WH_CUDA);
    lua_pushstring(L, *r ? r : "no CUDA device");
    return 1;
}

static int l_device_count(lua_State *L) {
    const wh_backend *be = backend();
    lua_pushinteger(L, be ? be->device_count() : 0);
    return 1;
}

static int l_current_device(lua_State *L) {
    lua_pushinteger(L, check_backend(L)->current_device());
    return 1;
}

static int l_set_device(lua_State *L) {
    const wh_backend *be = check_backend(L);
    whl_check(L, be->set_device(check_index(L, 1, be)));
    return 0;
}

static int l_synchronize(lua_State *L) {
    const wh_backend *be = check_backend(L);
    whl_check(L, be->synchronize(lua_isnoneornil(L, 1) ? -1 : check_index(L, 1, be)));
    return 0;
}

static int l_empty_cache(lua_State *L) {
    const wh_backend *be = backend();
    if (be) be->empty_cache();
    return 0;
}

static int l_memory_stats(lua_State *L) {
    const wh_backend *be = check_backend(L);
    wh_device_memory_stats s;
    be->memory_stats(check_index(L, 1, be), &s);
    lua_createtable(L, 0, 8);
#define FIELD(name)                                                                         \
    lua_pushinteger(L, (lua_Integer)s.name);                                               \
    lua_setfield(L, -2, #name)
    FIELD(allocated_bytes);
    FIELD(reserved_bytes);
    FIELD(peak_allocated_bytes);
    FIELD(cached_blocks);
    FIELD(allocations);
    FIELD(cache_hits);
    FIELD(device_mallocs);
    FIELD(oom_retries);
#undef FIELD
    return 1;
}

static int l_get_device_name(lua_State *L) {
    const wh_backend *be = check_backend(L);
    char buf[256];
    lua_pushstring(L, be->device_name(check_index(L, 1, be), buf, sizeof buf));
    return 1;
}

static int l_versions(lua_State *L) {
    char buf[256];
    lua_pushstring(L, check_backend(L)->versions(buf, sizeof buf));
    return 1;
}

static int set_option(lua_State *L, const char *name) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    int previous = check_backend(L)->set_option(name, lua_toboolean(L, 1));
    lua_pushboolean(L, previous > 0);
    return 1;
}

static int l_set_benchmark(lua_State *L) { return set_option(L, "benchmark"); }
static int l_set_deterministic(lua_State *L) { return set_option(L, "deterministic"); }
static int l_set_allow_tf32(lua_State *L) { return set_option(L, "allow_tf32"); }

static int l_get_option(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    int v = check_backend(L)->get_option(name);
    if (v < 0) return luaL_argerror(L, 1, "unknown option (benchmark, deterministic, allow_tf32)");
    lua_pushboolean(L, v);
    return 1;
}

/* ---- moving tensors -------------------------------------------------------------------------- */

/* t moved to the device named by `name`; pushes the result. */
static int move_to(lua_State *L, wh_tensor *t, wh_device d, const char *what) {
    wh_allocator *alloc = NULL;
    if (wh_device_allocator(d, &alloc) != WH_OK)
        return luaL_error(L, "%s: %s", what, wh_error_message());
    wh_tensor *out = NULL;
    whl_check(L, wh_to_device(t, alloc, &out));
    return whl_push_tensor(L, out);
}

static int m_cuda(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    wh_device d = {WH_CUDA, -1};
    if (!lua_isnoneornil(L, 2)) d.index = (int)luaL_checkinteger(L, 2);
    return move_to(L, t, d, "cuda()");
}

static int m_cpu(lua_State *L) {
    return move_to(L, whl_check_tensor(L, 1), (wh_device){WH_CPU, 0}, "cpu()");
}

static int m_is_cuda(lua_State *L) {
    lua_pushboolean(L, wh_tensor_device(whl_check_tensor(L, 1)).type == WH_CUDA);
    return 1;
}

/* t:to(device) for device names; anything else goes to the dtype method
 * this one wraps (upvalue 1). */
static int m_to(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    const char *s = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (s && (strcmp(s, "cpu") == 0 || strncmp(s, "cuda", 4) == 0)) {
        wh_device d;
        whl_check(L, wh_device_parse(s, &d));
        char what[64];
        snprintf(what, sizeof what, "to(\"%s\")", s);
        return move_to(L, t, d, what);
    }
    char name[64] = "";
    if (s) snprintf(name, sizeof name, "%s", s); /* the call below pops the argument */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0) != LUA_OK) {
        if (s)
            return luaL_error(L, "to: '%s' is neither a dtype (float32/float, float64/double, "
                              "uint8/byte) nor a device (cpu, cuda, cuda:N)", name);
        return lua_error(L);
    }
    return lua_gettop(L);
}

static const luaL_Reg cuda_fns[] = {
    {"is_available", l_is_available},
    {"unavailable_reason", l_unavailable_reason},
    {"device_count", l_device_count},
    {"current_device", l_current_device},
    {"set_device", l_set_device},
    {"synchronize", l_synchronize},
    {"empty_cache", l_empty_cache},
    {"memory_stats", l_memory_stats},
    {"get_device_name", l_get_device_name},
    {"versions", l_versions},
    {"set_benchmark", l_set_benchmark},
    {"set_deterministic", l_set_deterministic},
    {"set_allow_tf32", l_set_allow_tf32},
    {"get_option", l_get_option},
    {NULL, NULL},
};

void whl_open_cuda(lua_State *L, int module, int methods) {
    lua_newtable(L);
    luaL_setfuncs(L, cuda_fns, 0);
    lua_setfield(L, module, "cuda");
    static const luaL_Reg tensor_methods[] = {
        {"cuda", m_cuda}, {"cpu", m_cpu}, {"is_cuda", m_is_cuda}, {NULL, NULL}};
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, tensor_methods, 0);
    /* wrap the dtype form of t:to (bind_tensor.c) */
    lua_getfield(L, -1, "to");
    lua_pushcclosure(L, m_to, 1);
    lua_setfield(L, -2, "to");
    lua_pop(L, 1);
}
