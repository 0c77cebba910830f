rockspec_format = "3.0"
package = "whorl"
version = "scm-1"
source = {
   url = "git+file:///work/main",
   branch = "main",
}
description = {
   summary = "A deep learning framework with a C core and a Lua 5.4 front, built to restore damaged fingerprints",
   detailed = [[
whorl has tensors, define-by-run autograd and fast CPU kernels in C (OpenBLAS,
OpenMP), an optional CUDA backend, and a Torch7-style Lua API on top.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4",
}
-- OpenBLAS, libtiff and stb are found by the Makefile through pkg-config and
-- Debian's multiarch include paths (tools/deps.sh installs them).
build = {
   type = "make",
   build_variables = {
      LUA_VER = "5.4",
   },
   install_variables = {
      PREFIX = "$(PREFIX)",
      LUA_LIBDIR = "$(LIBDIR)",
      LUA_SHAREDIR = "$(LUADIR)",
   },
}
