/* Elementwise math for Lua: operators, functions, methods, in-place updates.
 *
 * Operators  a + b, a - b, a * b, a / b, a ^ b, -a  for tensor op tensor
 *            (NumPy broadcasting), tensor op number and number op tensor.
 *            A number side never becomes a tensor (except number ^ tensor):
 *            t * 2 is affine(t, 2, 0), 2 - t is rsub(t, 2), t / 2 is
 *            affine(t, 1/2, 0) (one rounding of the reciprocal), ...
 * Functions  whorl.add/sub/mul/div/pow/maximum/minimum(a, b)  (either side
 *            may be a number), whorl.exp/log/sqrt/abs/relu/sigmoid/tanh/neg/
 *            square/sin/cos(t), whorl.leaky_relu(t, slope = 0.01) (PyTorch's
 *            default, not Keras' 0.3), whorl.clamp(t, lo, hi) (lo or hi may
 *            be nil for a one-sided clamp); each also a method: t:exp(),
 *            t:add(b), t:clamp(lo, hi)...
 * In place   t:add_(x [, alpha]) (x a tensor, or a number added to every
 *            element), t:sub_(x [, alpha]), t:mul_(x), t:div_(number),
 *            t:addcmul_(a, b [, v]) t += v*a*b, t:addcdiv_(a, b [, v])
 *            t += v*a/b, t:clamp_(lo, hi), t:fill_(v), t:zero_(), t:copy_(src)
 *            (broadcasting; converts dtypes when shapes are equal), and
 *            t:exp_() t:sqrt_() ... for every unary op.  They return t,
 *            record no graph and refuse tensors that require grad while
 *            gradients are recorded (use whorl.no_grad). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "binding.h"
#include "ops_util.h"

/* ---- binary ---------------------------------------------------------------------- */

static const char *const binary_names[] = {"add", "sub", "mul", "div", "pow", "maximum",
                                           "minimum"};

/* t op s for a number s, without a tensor for s where a scalar op exists. */
static wh_status scalar_right(lua_State *L, wh_binary_op op, wh_tensor *t, double s,
                              wh_tensor **out) {
    switch (op) {
    case WH_BIN_ADD: return wh_affine(t, 1.0, s, out);
    case WH_BIN_SUB: return wh_affine(t, 1.0, -s, out);
    case WH_BIN_MUL: return wh_affine(t, s, 0.0, out);
    case WH_BIN_DIV: return wh_affine(t, 1.0 / s, 0.0, out);
    case WH_BIN_POW: return wh_pow_scalar(t, s, out);
    default: break;
    }
    lua_pushnumber(L, s);
    wh_tensor *st = whl_tensor_or_scalar(L, lua_gettop(L), t);
    return wh_binary(op, t, st, out);
}

/* s op t for a number s. */
static wh_status scalar_left(lua_State *L, wh_binary_op op, double s, wh_tensor *t,
                             wh_tensor **out) {
    switch (op) {
    case WH_BIN_ADD: return wh_affine(t, 1.0, s, out);
    case WH_BIN_SUB: return wh_rsub_scalar(t, s, out);
    case WH_BIN_MUL: return wh_affine(t, s, 0.0, out);
    case WH_BIN_DIV: return wh_rdiv_scalar(t, s, out);
    default: break;
    }
    lua_pushnumber(L, s);
    wh_tensor *st = whl_tensor_or_scalar(L, lua_gettop(L), t);
    return wh_binary(op, st, t, out);
}

static int binary(lua_State *L, wh_binary_op op) {
    bool ta = whl_is_tensor(L, 1), tb = whl_is_tensor(L, 2);
    wh_tensor *out = NULL;
    if (ta && tb) {
        whl_check(L, wh_binary(op, whl_check_tensor(L, 1), whl_check_tensor(L, 2), &out));
    } else if (ta) {
        if (lua_type(L, 2) != LUA_TNUMBER)
            return luaL_error(L, "%s: the second operand must be a tensor or a number, not a %s",
                              binary_names[op], luaL_typename(L, 2));
        whl_check(L, scalar_right(L, op, whl_check_tensor(L, 1), lua_tonumber(L, 2), &out));
    } else if (tb) {
        if (lua_type(L, 1) != LUA_TNUMBER)
            return luaL_error(L, "%s: the first operand must be a tensor or a number, not a %s",
                              binary_names[op], luaL_typename(L, 1));
        whl_check(L, scalar_left(L, op, lua_tonumber(L, 1), whl_check_tensor(L, 2), &out));
    } else {
        return luaL_error(L, "%s: at least one operand must be a tensor (got %s and %s)",
                          binary_names[op], luaL_typename(L, 1), luaL_typename(L, 2));
    }
    return whl_push_tensor(L, out);
}

static int l_add(lua_State *L) { return binary(L, WH_BIN_ADD); }
static int l_sub(lua_State *L) { return binary(L, WH_BIN_SUB); }
static int l_mul(lua_State *L) { return binary(L, WH_BIN_MUL); }
static int l_div(lua_State *L) { return binary(L, WH_BIN_DIV); }
static int l_pow(lua_State *L) { return binary(L, WH_BIN_POW); }
static int l_maximum(lua_State *L) { return binary(L, WH_BIN_MAXIMUM); }
static int l_minimum(lua_State *L) { return binary(L, WH_BIN_MINIMUM); }

static int l_unm(lua_State *L) {
    wh_tensor *out = NULL;
    whl_check(L, wh_unary(WH_UN_NEG, whl_check_tensor(L, 1), &out));
    return whl_push_tensor(L, out);
}

/* ---- unary --------------------------------------------------------------------------- */

static const struct { const char *name; wh_unary_op op; } unary_ops[] = {
    {"neg", WH_UN_NEG},   {"exp", WH_UN_EXP},         {"log", WH_UN_LOG},
    {"sqrt", WH_UN_SQRT}, {"abs", WH_UN_ABS},         {"relu", WH_UN_RELU},
    {"sigmoid", WH_UN_SIGMOID}, {"tanh", WH_UN_TANH}, {"square", WH_UN_SQUARE},
    {"sin", WH_UN_SIN},   {"cos", WH_UN_COS},
};

static int l_unary(lua_State *L) {
    wh_unary_op op = (wh_unary_op)lua_tointeger(L, lua_upvalueindex(1));
    wh_tensor *out = NULL;
    whl_check(L, wh_unary(op, whl_check_tensor(L, 1), &out));
    return whl_push_tensor(L, out);
}

static int l_unary_(lua_State *L) {
    wh_unary_op op = (wh_unary_op)lua_tointeger(L, lua_upvalueindex(1));
    whl_check(L, wh_unary_(op, whl_check_tensor(L, 1)));
    lua_settop(L, 1);
    return 1;
}

static int l_leaky_relu(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    whl_check(L, wh_leaky_relu(x, luaL_optnumber(L, 2, 0.01), &out));
    return whl_push_tensor(L, out);
}

static void clamp_bounds(lua_State *L, double *lo, double *hi) {
    *lo = luaL_optnumber(L, 2, -INFINITY);
    *hi = luaL_optnumber(L, 3, INFINITY);
}

static int l_clamp(lua_State *L) {
    wh_tensor *x = whl_check_tensor(L, 1), *out = NULL;
    double lo, hi;
    clamp_bounds(L, &lo, &hi);
    whl_check(L, wh_clamp(x, lo, hi, &out));
    return whl_push_tensor(L, out);
}

/* ---- in place ----------------------------------------------------------------------- */

static int self(lua_State *L) {
    lua_settop(L, 1);
    return 1;
}

/* The number forms run through affine_; checking first makes errors name
 * the method the user called. */
static void check_scalar_inplace(lua_State *L, const char *name, wh_tensor *t) {
    whl_check(L, wh_check_inplace(name, t));
    whl_check(L, wh_check_float_dev(name, "self", t));
}

/* t += alpha * x, for a tensor or a number x. */
static int add_inplace(lua_State *L, double sign) {
    wh_tensor *t = whl_check_tensor(L, 1);
    double alpha = sign * luaL_optnumber(L, 3, 1.0);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        check_scalar_inplace(L, sign > 0 ? "add_" : "sub_", t);
        whl_check(L, wh_affine_(t, 1.0, alpha * lua_tonumber(L, 2)));
    }
    else whl_check(L, wh_add_(t, whl_check_tensor(L, 2), alpha));
    return self(L);
}

static int m_add_(lua_State *L) { return add_inplace(L, 1.0); }
static int m_sub_(lua_State *L) { return add_inplace(L, -1.0); }

static int m_mul_(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        check_scalar_inplace(L, "mul_", t);
        whl_check(L, wh_affine_(t, lua_tonumber(L, 2), 0.0));
    }
    else whl_check(L, wh_mul_(t, whl_check_tensor(L, 2)));
    return self(L);
}

static int m_div_(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    if (lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "div_: divides by a number only (for a tensor use t:mul_(1 / x) "
                          "or x:pow(-1))");
    check_scalar_inplace(L, "div_", t);
    whl_check(L, wh_affine_(t, 1.0 / lua_tonumber(L, 2), 0.0));
    return self(L);
}

static int m_addcmul_(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    whl_check(L, wh_addcmul_(t, whl_check_tensor(L, 2), whl_check_tensor(L, 3),
                             luaL_optnumber(L, 4, 1.0)));
    return self(L);
}

static int m_addcdiv_(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    whl_check(L, wh_addcdiv_(t, whl_check_tensor(L, 2), whl_check_tensor(L, 3),
                             luaL_optnumber(L, 4, 1.0)));
    return self(L);
}

static int m_clamp_(lua_State *L) {
    wh_tensor *t = whl_check_tensor(L, 1);
    double lo, hi;
    clamp_bounds(L, &lo, &hi);
    whl_check(L, wh_clamp_(t, lo, hi));
    return self(L);
}

static int m_fill_(lua_State *L) {
    whl_check(L, wh_fill_(whl_check_tensor(L, 1), luaL_checknumber(L, 2)));
    return self(L);
}

static int m_zero_(lua_State *L) {
    whl_check(L, wh_fill_(whl_check_tensor(L, 1), 0.0));
    return self(L);
}

static int m_copy_(lua_State *L) {
    whl_check(L, wh_copy_(whl_check_tensor(L, 1), whl_check_tensor(L, 2)));
    return self(L);
}

/* ---- registration ------------------------------------------------------------------------ */

static const luaL_Reg functions[] = {
    {"add", l_add},         {"sub", l_sub},           {"mul", l_mul},
    {"div", l_div},         {"pow", l_pow},           {"maximum", l_maximum},
    {"minimum", l_minimum}, {"leaky_relu", l_leaky_relu}, {"clamp", l_clamp},
    {NULL, NULL},
};

static const luaL_Reg inplace_methods[] = {
    {"add_", m_add_},       {"sub_", m_sub_},   {"mul_", m_mul_},   {"div_", m_div_},
    {"addcmul_", m_addcmul_}, {"addcdiv_", m_addcdiv_}, {"clamp_", m_clamp_},
    {"fill_", m_fill_},     {"zero_", m_zero_}, {"copy_", m_copy_}, {NULL, NULL},
};

static const luaL_Reg operators[] = {
    {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div},
    {"__pow", l_pow}, {"__unm", l_unm}, {NULL, NULL},
};

void whl_open_math(lua_State *L, int module, int methods) {
    lua_pushvalue(L, module);
    luaL_setfuncs(L, functions, 0);
    lua_pop(L, 1);
    lua_pushvalue(L, methods);
    luaL_setfuncs(L, functions, 0);
    luaL_setfuncs(L, inplace_methods, 0);
    lua_pop(L, 1);
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++) {
        char name[32];
        lua_pushinteger(L, unary_ops[i].op);
        lua_pushcclosure(L, l_unary, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, module, unary_ops[i].name);
        lua_setfield(L, methods, unary_ops[i].name);
        snprintf(name, sizeof name, "%s_", unary_ops[i].name);
        lua_pushinteger(L, unary_ops[i].op);
        lua_pushcclosure(L, l_unary_, 1);
        lua_setfield(L, methods, name);
    }
    luaL_getmetatable(L, WHL_TENSOR_MT);
    luaL_setfuncs(L, operators, 0);
    lua_pop(L, 1);
}
