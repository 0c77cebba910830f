/* Lua: whorl.conv2d and whorl.conv_transpose2d.
 *
 *   whorl.conv2d(x, weight, bias_or_nil, {stride=1, padding=0 | "same" | "valid",
 *                dilation=1, activation=nil | "relu" | "sigmoid"})
 *   whorl.conv_transpose2d(x, weight, bias_or_nil, {stride=1, padding=0,
 *                output_padding=0, dilation=1, activation=...})
 * Pair options take a number or {h, w}.  padding = "same" (Keras') needs
 * stride 1 and an odd effective kernel, so the padding is symmetric. */
#include <string.h>

#include "binding.h"
#include "kernels/conv2d.h"

static int check_activation(lua_State *L, int opts) {
    if (lua_type(L, opts) != LUA_TTABLE) return WH_ACT_NONE;
    lua_getfield(L, opts, "activation");
    int act = WH_ACT_NONE;
    if (!lua_isnil(L, -1)) {
        const char *name = luaL_checkstring(L, -1);
        if (strcmp(name, "relu") == 0) act = WH_ACT_RELU;
        else if (strcmp(name, "sigmoid") == 0) act = WH_ACT_SIGMOID;
        else if (strcmp(name, "linear") == 0 || strcmp(name, "none") == 0) act = WH_ACT_NONE;
        else luaL_error(L, "conv: unknown activation '%s' (relu, sigmoid or none)", name);
    }
    lua_pop(L, 1);
    return act;
}

static void parse_params(lua_State *L, int opts, const wh_tensor *w, bool transposed,
                         wh_conv_params *p) {
    wh_conv_params_default(p);
    if (!lua_isnoneornil(L, opts)) luaL_checktype(L, opts, LUA_TTABLE);
    whl_opt_field_pair(L, opts, "stride", 1, p->stride);
    whl_opt_field_pair(L, opts, "dilation", 1, p->dilation);
    whl_opt_field_pair(L, opts, "output_padding", 0, p->output_padding);
    p->activation = check_activation(L, opts);
    if (lua_type(L, opts) == LUA_TTABLE) {
        lua_getfield(L, opts, "padding");
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *mode = lua_tostring(L, -1);
            if (strcmp(mode, "valid") == 0) {
                p->padding[0] = p->padding[1] = 0;
            } else if (strcmp(mode, "same") == 0 && !transposed) {
                for (int i = 0; i < 2; i++) {
                    int k = (int)w->shape[2 + i], span = p->dilation[i] * (k - 1);
                    if (p->stride[i] != 1 || span % 2 != 0)
                        luaL_error(L, "conv2d: padding 'same' needs stride 1 and an odd "
                                   "(dilated) kernel, got kernel %d, stride %d, dilation %d",
                                   k, p->stride[i], p->dilation[i]);
                    p->padding[i] = span / 2;
                }
            } else {
                luaL_error(L, "conv: unknown padding '%s' (a number, {h, w}, 'valid'%s)", mode,
                           transposed ? "" : " or 'same'");
            }
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
    }
    whl_opt_field_pair(L, opts, "padding", 0, p->padding);
}

static int l_conv2d(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *w = whl_check_tensor(L, 2);
    wh_tensor *b = whl_opt_tensor(L, 3);
    wh_conv_params p;
    parse_params(L, 4, w, false, &p);
    wh_tensor *out = NULL;
    whl_check(L, wh_conv2d(x, w, b, &p, &out));
    return whl_push_tensor(L, out);
}

static int l_conv_transpose2d(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *w = whl_check_tensor(L, 2);
    wh_tensor *b = whl_opt_tensor(L, 3);
    wh_conv_params p;
    parse_params(L, 4, w, true, &p);
    wh_tensor *out = NULL;
    whl_check(L, wh_conv_transpose2d(x, w, b, &p, &out));
    return whl_push_tensor(L, out);
}

void whl_open_conv(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"conv2d", l_conv2d},
        {"conv_transpose2d", l_conv_transpose2d},
        {NULL, NULL},
    };
    lua_pushvalue(L, module);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    /* x:conv2d(w, b, opts) reads naturally in model code too. */
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
