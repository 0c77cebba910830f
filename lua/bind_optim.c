/* Fused optimizer updates for Lua optimizers (core/ops_optim.c): one pass
 * per parameter on the CPU or the GPU, with Keras' formulas and defaults
 * (kernels/optim_math.h).  They record no graph and return the parameter.
 *
 *   whorl.sgd_update_(p, grad, m, {lr=0.01, momentum=0, nesterov=false, weight_decay=0})
 *   whorl.adam_update_(p, grad, m, v, vhat, {step=t, lr=0.001, beta_1=0.9, beta_2=0.999,
 *                                            epsilon=1e-7, weight_decay=0})
 *   whorl.rmsprop_update_(p, grad, v, avg, mom, {lr=0.001, rho=0.9, epsilon=1e-7,
 *                                               momentum=0, weight_decay=0})
 * State tensors (m, v, ...) are updated in place; the optional ones (m
 * without momentum, vhat without amsgrad, avg when not centered, mom without
 * momentum) may be nil.  step counts Adam updates from 1. */
#include "binding.h"

static int l_sgd_update_(lua_State *L) {
    wh_tensor *p = whl_check_tensor(L, 1), *g = whl_check_tensor(L, 2), *m = whl_opt_tensor(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    wh_sgd_options o = {
        .lr = whl_opt_field_number(L, 4, "lr", 0.01),
        .momentum = whl_opt_field_number(L, 4, "momentum", 0.0),
        .weight_decay = whl_opt_field_number(L, 4, "weight_decay", 0.0),
        .nesterov = whl_opt_field_boolean(L, 4, "nesterov", false),
    };
    whl_check(L, wh_sgd_update_(p, g, m, &o));
    lua_settop(L, 1);
    return 1;
}

static int l_adam_update_(lua_State *L) {
    wh_tensor *p = whl_check_tensor(L, 1), *g = whl_check_tensor(L, 2);
    wh_tensor *m = whl_check_tensor(L, 3), *v = whl_check_tensor(L, 4), *vhat = whl_opt_tensor(L, 5);
    luaL_checktype(L, 6, LUA_TTABLE);
    lua_Integer step = whl_opt_field_integer(L, 6, "step", 0);
    if (step < 1) return luaL_error(L, "adam_update_: option 'step' (updates so far, from 1) is required");
    wh_adam_options o = {
        .lr = whl_opt_field_number(L, 6, "lr", 0.001),
        .beta1 = whl_opt_field_number(L, 6, "beta_1", 0.9),
        .beta2 = whl_opt_field_number(L, 6, "beta_2", 0.999),
        .eps = whl_opt_field_number(L, 6, "epsilon", 1e-7),
        .weight_decay = whl_opt_field_number(L, 6, "weight_decay", 0.0),
        .step = (int64_t)step,
    };
    whl_check(L, wh_adam_update_(p, g, m, v, vhat, &o));
    lua_settop(L, 1);
    return 1;
}

static int l_rmsprop_update_(lua_State *L) {
    wh_tensor *p = whl_check_tensor(L, 1), *g = whl_check_tensor(L, 2), *v = whl_check_tensor(L, 3);
    wh_tensor *avg = whl_opt_tensor(L, 4), *mom = whl_opt_tensor(L, 5);
    luaL_checktype(L, 6, LUA_TTABLE);
    wh_rmsprop_options o = {
        .lr = whl_opt_field_number(L, 6, "lr", 0.001),
        .rho = whl_opt_field_number(L, 6, "rho", 0.9),
        .eps = whl_opt_field_number(L, 6, "epsilon", 1e-7),
        .momentum = whl_opt_field_number(L, 6, "momentum", 0.0),
        .weight_decay = whl_opt_field_number(L, 6, "weight_decay", 0.0),
    };
    whl_check(L, wh_rmsprop_update_(p, g, v, avg, mom, &o));
    lua_settop(L, 1);
    return 1;
}

static const luaL_Reg optim_fns[] = {
    {"sgd_update_", l_sgd_update_},
    {"adam_update_", l_adam_update_},
    {"rmsprop_update_", l_rmsprop_update_},
    {NULL, NULL},
};

void whl_open_optim(lua_State *L, int module, int methods) {
    lua_pushvalue(L, module);
    luaL_setfuncs(L, optim_fns, 0);
    lua_pop(L, 1);
}
