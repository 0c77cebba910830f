# whorl: build, test, bench, install.
#   make            build the core library and the Lua module
#   make test       install missing Debian packages, build, run C tests and busted specs
#   make test-sanitize  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      CPU benchmarks (installs Debian's python3-torch for the peer figures)
#   make install    install the Lua package and module (PREFIX=/usr/local)
#   CUDA=auto|0     build the GPU backend when nvcc is found (default auto)

CC      ?= gcc
LUA_VER ?= 5.4
BUILD   ?= build
PREFIX  ?= /usr/local
CUDA    ?= auto
SANITIZE ?=

PKG_CFLAGS := $(shell pkg-config --cflags lua$(LUA_VER) openblas 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null)
ifeq ($(PKG_LIBS),)
PKG_LIBS := -lopenblas
endif

OPT     ?= -O3 -march=x86-64-v3 -mtune=generic
CFLAGS  += -std=c11 -D_GNU_SOURCE -fPIC -fopenmp $(OPT) -g -Wall -Wextra -Wno-unused-parameter \
           -Icore $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -ltiff -lm -fopenmp -lpthread

ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS  += -fsanitize=address,undefined
OPT     := -O1
endif

CORE_SRC  := $(wildcard core/*.c core/kernels/*.c)
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
LUA_SRC   := $(wildcard lua/*.c)
LUA_OBJ   := $(LUA_SRC:%.c=$(BUILD)/%.o)
CTEST_SRC := $(wildcard tests/c/test_*.c)
CTEST_BIN := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB     := $(BUILD)/libwhorl.a
SOLIB   := $(BUILD)/libwhorl.so
LUAMOD  := $(BUILD)/whorl/core.so

LUA_ENV := LUA_PATH="lua/?.lua;lua/?/init.lua;models/?.lua;;" LUA_CPATH="$(BUILD)/?.so;;"
BUSTED  := busted --lua=lua$(LUA_VER)

.PHONY: all deps deps-test test test-c test-lua test-sanitize bench install clean

all: $(LIB) $(SOLIB) $(LUAMOD) $(CTEST_BIN)

deps:
	@tools/deps.sh build
deps-test:
	@tools/deps.sh test

$(BUILD)/%.o: %.c $(wildcard core/*.h core/kernels/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(SOLIB): $(CORE_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(LUAMOD): $(LUA_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(LUA_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/c/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDLIBS)

# The test command of README.md.  tools/run_tests.sh prints the final
# "N passed, N failed" line summed over C tests and busted specs.
test: deps-test
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tools/run_tests.sh

# Sanitizers: the Lua interpreter is not instrumented, so libasan is preloaded.
test-sanitize: deps-test
	@$(MAKE) --no-print-directory BUILD=build-san SANITIZE=1 all
	@BUILD=build-san SANITIZE=1 tools/run_tests.sh

bench: deps
	@tools/deps.sh bench
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BUILD=$(BUILD) tools/run_bench.sh

LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_VER)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VER)

install: all
	install -d $(DESTDIR)$(LUA_LIBDIR)/whorl $(DESTDIR)$(LUA_SHAREDIR)/whorl
	install -m 755 $(LUAMOD) $(DESTDIR)$(LUA_LIBDIR)/whorl/core.so
	cp -r lua/whorl/. $(DESTDIR)$(LUA_SHAREDIR)/whorl/
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/whorl
	install -m 644 $(LIB) $(SOLIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 core/*.h $(DESTDIR)$(PREFIX)/include/whorl/

clean:
	rm -rf build build-san
