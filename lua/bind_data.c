/* The C half of whorl.data (core/dataset.h), as the private table
 * whorl._data; lua/whorl/data.lua is the public API.  Indices cross this
 * boundary 1-based.
 *
 *   _data.list_images(dir, recursive) -> {relative paths, sorted}
 *   _data.is_dir(path) -> boolean
 *   _data.files_key(paths, extra) -> 16 hex digits
 *   _data.build(paths, box_from|nil, preprocess opts, dtype) -> pixels, meta
 *   _data.cache_load(path, key, count, h, w, dtype) -> pixels, meta | nil, reason
 *   _data.cache_save(path, key, pixels, meta)
 *   _data.permutation(n, seed) -> {1-based permutation}
 *   _data.seed_mix(a, b) -> integer
 *   _data.loader(pixels, input, target|nil, batch, {drop_last, background,
 *                prefetch, seed}) -> loader
 *   loader:start(order|nil, epoch)  loader:next() -> x, y | nil
 *   loader:batches()  loader:close() */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "binding.h"
#include "dataset.h"

#define LOADER_MT "whorl.data.Loader"

void whl_opt_preprocess(lua_State *L, int idx, wh_preprocess_opts *o); /* bind_image.c */

/* A list of strings at idx as a C array in a userdata left on the stack
 * (the strings stay anchored by the table). */
static const char **string_list(lua_State *L, int idx, int64_t *n) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer len = luaL_len(L, idx);
    const char **a = lua_newuserdatauv(L, sizeof *a * (size_t)(len ? len : 1), 0);
    for (lua_Integer i = 1; i <= len; i++) {
        if (lua_geti(L, idx, i) != LUA_TSTRING)
            luaL_error(L, "data: entry %d of the file list is not a string", (int)i);
        a[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    *n = len;
    return a;
}

/* A list of integers (1-based in Lua) as 0-based int64 in a userdata on the stack;
 * entries equal to nil_value (e.g. 0) become -1. */
static int64_t *index_list(lua_State *L, int idx, int64_t expect, const char *what) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer len = luaL_len(L, idx);
    if (expect >= 0 && len != expect)
        luaL_error(L, "data: %s has %d entries, expected %d", what, (int)len, (int)expect);
    int64_t *a = lua_newuserdatauv(L, sizeof *a * (size_t)(len ? len : 1), 0);
    for (lua_Integer i = 1; i <= len; i++) {
        int isint;
        lua_geti(L, idx, i);
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint) luaL_error(L, "data: entry %d of %s is not an integer", (int)i, what);
        a[i - 1] = (int64_t)v - 1;
        lua_pop(L, 1);
    }
    return a;
}

static int l_list_images(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    bool recursive = lua_isnone(L, 2) ? true : lua_toboolean(L, 2);
    wh_file_list fl;
    whl_check(L, wh_list_images(dir, recursive, &fl));
    lua_createtable(L, (int)fl.count, 0);
    for (int64_t i = 0; i < fl.count; i++) {
        lua_pushstring(L, fl.paths[i]);
        lua_rawseti(L, -2, i + 1);
    }
    wh_file_list_free(&fl);
    return 1;
}

static int l_is_dir(lua_State *L) {
    struct stat s;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &s) == 0 && S_ISDIR(s.st_mode));
    return 1;
}

static void push_key(lua_State *L, uint64_t key) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016" PRIx64, key);
    lua_pushstring(L, buf);
}

static uint64_t check_key(lua_State *L, int idx) {
    const char *s = luaL_checkstring(L, idx);
    char *end;
    uint64_t k = strtoull(s, &end, 16);
    if (strlen(s) != 16 || *end) luaL_argerror(L, idx, "a key of 16 hex digits");
    return k;
}

static int l_files_key(lua_State *L) {
    int64_t n;
    const char **paths = string_list(L, 1, &n);
    const char *extra = luaL_checkstring(L, 2);
    uint64_t key;
    whl_check(L, wh_files_key(paths, n, extra, &key));
    push_key(L, key);
    return 1;
}

static int l_build(lua_State *L) {
    int64_t n;
    const char **paths = string_list(L, 1, &n);
    int64_t *box_from = lua_isnoneornil(L, 2) ? NULL : index_list(L, 2, n, "box_from");
    wh_preprocess_opts o;
    whl_opt_preprocess(L, 3, &o);
    wh_dtype dt = whl_opt_dtype(L, 4, WH_UINT8);
    wh_tensor *pixels, *meta;
    whl_check(L, wh_dataset_build(paths, n, box_from, &o, dt, &pixels, &meta));
    whl_push_tensor(L, pixels);
    whl_push_tensor(L, meta);
    return 2;
}

static int l_cache_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    uint64_t key = check_key(L, 2);
    lua_Integer count = luaL_checkinteger(L, 3), h = luaL_checkinteger(L, 4),
                w = luaL_checkinteger(L, 5);
    wh_dtype dt = whl_check_dtype(L, 6);
    wh_tensor *pixels, *meta;
    char why[256];
    whl_check(L, wh_cache_load(path, key, count, h, w, dt, &pixels, &meta, why, sizeof why));
    if (!pixels) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    whl_push_tensor(L, pixels);
    whl_push_tensor(L, meta);
    return 2;
}

static int l_cache_save(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    uint64_t key = check_key(L, 2);
    wh_tensor *pixels = whl_check_tensor(L, 3), *meta = whl_check_tensor(L, 4);
    whl_check(L, wh_cache_save(path, key, pixels, meta));
    return 0;
}

static uint64_t check_seed(lua_State *L, int idx) {
    if (lua_isinteger(L, idx)) return (uint64_t)lua_tointeger(L, idx);
    return (uint64_t)(int64_t)luaL_checknumber(L, idx);
}

static int l_permutation(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0 || n > ((lua_Integer)1 << 31)) luaL_argerror(L, 1, "n must be in 0..2^31");
    uint64_t seed = check_seed(L, 2);
    int64_t *p = lua_newuserdatauv(L, sizeof *p * (size_t)(n ? n : 1), 0);
    wh_permutation(n, seed, p);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushinteger(L, p[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_seed_mix(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)wh_seed_mix(check_seed(L, 1), check_seed(L, 2)));
    return 1;
}

/* ---- loader userdata ------------------------------------------------------------------- */

typedef struct {
    wh_loader *l;
} loader_ud;

static wh_loader *check_loader(lua_State *L) {
    loader_ud *u = luaL_checkudata(L, 1, LOADER_MT);
    if (!u->l) luaL_error(L, "data loader: closed");
    return u->l;
}

static int l_loader(lua_State *L) {
    wh_loader_config c = {0};
    c.pixels = whl_check_tensor(L, 1);
    c.input = index_list(L, 2, -1, "input");
    lua_Integer items = luaL_len(L, 2);
    c.target = lua_isnoneornil(L, 3) ? NULL : index_list(L, 3, items, "target");
    c.items = items;
    c.batch = luaL_checkinteger(L, 4);
    if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);
    c.drop_last = whl_opt_field_boolean(L, 5, "drop_last", false);
    c.background = whl_opt_field_boolean(L, 5, "background", true);
    c.prefetch = (int)whl_opt_field_integer(L, 5, "prefetch", 2);
    if (c.prefetch < 1 || c.prefetch > 64) luaL_error(L, "data loader: prefetch must be in 1..64");
    c.seed = (uint64_t)whl_opt_field_integer(L, 5, "seed", 0);
    loader_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->l = NULL;
    luaL_setmetatable(L, LOADER_MT);
    whl_check(L, wh_loader_new(&c, &u->l));
    return 1;
}

static int m_start(lua_State *L) {
    wh_loader *l = check_loader(L);
    int64_t n = 0, *order = NULL;
    if (!lua_isnoneornil(L, 2)) {
        n = luaL_len(L, 2);
        order = index_list(L, 2, -1, "order");
    }
    whl_check(L, wh_loader_start(l, order, n, (uint64_t)luaL_optinteger(L, 3, 0)));
    return 0;
}

static int m_next(lua_State *L) {
    wh_loader *l = check_loader(L);
    wh_tensor *x, *y;
    whl_check(L, wh_loader_next(l, &x, &y));
    if (!x) return 0;
    whl_push_tensor(L, x);
    if (!y) return 1;
    whl_push_tensor(L, y);
    return 2;
}

static int m_batches(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)wh_loader_batches(check_loader(L)));
    return 1;
}

static int m_close(lua_State *L) {
    loader_ud *u = luaL_checkudata(L, 1, LOADER_MT);
    wh_loader_free(u->l);
    u->l = NULL;
    return 0;
}

static const luaL_Reg loader_methods[] = {
    {"start", m_start}, {"next", m_next}, {"batches", m_batches}, {"close", m_close}, {NULL, NULL},
};

static const luaL_Reg data_fns[] = {
    {"list_images", l_list_images},
    {"is_dir", l_is_dir},
    {"files_key", l_files_key},
    {"build", l_build},
    {"cache_load", l_cache_load},
    {"cache_save", l_cache_save},
    {"permutation", l_permutation},
    {"seed_mix", l_seed_mix},
    {"loader", l_loader},
    {NULL, NULL},
};

void whl_open_data_core(lua_State *L, int module) {
    luaL_newmetatable(L, LOADER_MT);
    lua_newtable(L);
    luaL_setfuncs(L, loader_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, data_fns, 0);
    lua_setfield(L, module, "_data");
}
