/* Shared pieces of the Lua binding (the C module `whorl.core`).
 *
 * The binding is split by op family into lua/bind_*.c files; each exports
 * one `whl_open_<family>(L, module, methods)` that adds its functions to the
 * module table (stack index `module`) and its tensor methods to the Tensor
 * methods table (stack index `methods`).  whorl_core.c calls every one.
 *
 * Conventions for Lua users (Torch7's): dimensions and indices are 1-based,
 * negative ones count from the end (-1 is the last).  Every C failure
 * becomes a Lua error carrying the core's message (op, shapes, argument). */
#ifndef WHORL_BINDING_H
#define WHORL_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "ops.h"

#define WHL_TENSOR_MT "whorl.Tensor"

/* The tensor at stack index idx, or a Lua error naming the argument. */
wh_tensor *whl_check_tensor(lua_State *L, int idx);
/* NULL for nil/none, else as whl_check_tensor. */
wh_tensor *whl_opt_tensor(lua_State *L, int idx);
bool whl_is_tensor(lua_State *L, int idx);
/* A tensor for a tensor-or-number argument: a number becomes a 0-d tensor
 * of like's dtype, anchored by pushing it on the stack (so it is collected
 * even if an error follows).  The returned pointer is borrowed. */
wh_tensor *whl_tensor_or_scalar(lua_State *L, int idx, const wh_tensor *like);
/* Pushes a new userdata owning one reference to t (which the caller gives
 * up) and tells the garbage collector about the memory.  Returns 1.  If t
 * is NULL pushes nil. */
int whl_push_tensor(lua_State *L, wh_tensor *t);
/* Runs a full collection when the C memory counted by wh_memory_live_bytes
 * has grown by half since the last one (at least 64 MB): every function
 * that makes a userdata owning large C memory calls it (whorl_core.c). */
void whl_gc_account(lua_State *L);
/* Raises a Lua error with the core's message when st != WH_OK. */
void whl_check(lua_State *L, wh_status st);
/* A shape given either as numbers from idx to the top of the stack, or as a
 * table (or a tensor's size table) at idx.  Errors on bad entries. */
void whl_check_shape(lua_State *L, int idx, int *ndim, int64_t *shape);
/* A 1-based (or negative) dimension argument for a tensor of ndim dims,
 * returned 0-based; errors when out of range. ndim_extra allows one past the
 * end (unsqueeze). */
int whl_check_dim(lua_State *L, int idx, int ndim, int ndim_extra);
/* A 1-based (or negative) index argument into a dimension of size n,
 * returned 0-based; errors name op and the (1-based) dim when out of range. */
int64_t whl_check_index(lua_State *L, int idx, int64_t n, const char *op, int dim);
/* dtype from a string ("float32"/"float"/"float64"/"double"/"uint8"/"byte"). */
wh_dtype whl_check_dtype(lua_State *L, int idx);
wh_dtype whl_opt_dtype(lua_State *L, int idx, wh_dtype def);
/* Field `name` of the table at idx as a number/integer/boolean, or def. */
double whl_opt_field_number(lua_State *L, int idx, const char *name, double def);
lua_Integer whl_opt_field_integer(lua_State *L, int idx, const char *name, lua_Integer def);
bool whl_opt_field_boolean(lua_State *L, int idx, const char *name, bool def);
/* A pair option: a number (used for both) or a table {h, w}; def if nil. */
void whl_opt_field_pair(lua_State *L, int idx, const char *name, int def, int pair[2]);
/* Errors on an unknown key of the options table at idx (allowed is
 * NULL-terminated); nil passes; positional: non-string keys are ignored. */
void whl_check_options(lua_State *L, int idx, const char *op, const char *const *allowed,
                       bool positional);

/* Adds funcs to the table module.<name>, creating it if no family has yet
 * (families that share a sub-table, such as whorl.fingerprint). */
void whl_add_to_subtable(lua_State *L, int module, const char *name, const luaL_Reg *funcs);

/* The families; each lives in lua/bind_<family>.c.  Weak, so the module
 * links while a family is being written. */
void whl_open_tensor(lua_State *L, int module, int methods);    /* whorl_core.c */
void whl_open_math(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_shape(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_reduce(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_nn(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_conv(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_loss(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_optim(lua_State *L, int module, int methods) __attribute__((weak));
/* Families that live in a sub-table of the module (whorl.image, ...): the
 * opener creates module.<name> itself. */
void whl_open_image(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_synth(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_metrics(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_fingerprint(lua_State *L, int module, int methods) __attribute__((weak));
/* Matching and evaluation add to module.fingerprint (creating it if absent). */
void whl_open_fingerprint_match(lua_State *L, int module, int methods) __attribute__((weak));
/* module.plot: a cairo canvas (lua/bind_plot.c). */
void whl_open_plot(lua_State *L, int module, int methods) __attribute__((weak));
void whl_open_cuda(lua_State *L, int module, int methods) __attribute__((weak));

#endif
