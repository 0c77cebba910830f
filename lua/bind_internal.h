/* Pieces shared by the binding core's own files (whorl_core.c, bind_tensor.c,
 * tensor_format.c, bind_math.c); the op families only need binding.h. */
#ifndef WHORL_BIND_INTERNAL_H
#define WHORL_BIND_INTERNAL_H

#include "binding.h"

/* The userdata behind a Lua tensor.  t is NULL once the tensor was closed. */
typedef struct {
    wh_tensor *t;
} whl_tensor_ud;

/* A CPU tensor with t's values, to read them: t itself when it is on the
 * CPU (nothing pushed), else a copy pushed on the stack so that it is
 * released with the stack.  Callers must keep t anchored meanwhile. */
wh_tensor *whl_to_host(lua_State *L, wh_tensor *t);
/* Reads element `off` (counted from the storage start) as a double. */
double whl_load(const wh_tensor *t, int64_t off);
/* Pushes Torch7-style text for t (values, then "[whorl.FloatTensor of size 2x3]"). */
void whl_push_tensor_string(lua_State *L, wh_tensor *t);
/* "whorl.FloatTensor" and friends. */
const char *whl_type_name(wh_dtype dt);
/* whl_check_shape over the stack slots first..last only. */
void whl_shape_range(lua_State *L, int first, int last, int *ndim, int64_t *shape);
/* The creation functions (bind_create.c), called by luaopen_whorl_core. */
void whl_open_create(lua_State *L, int module, int methods);

#endif
