# whorl: build, test, bench, install.
#   make            build the core library and the Lua module
#   make test       install missing Debian packages, build, run C tests and busted specs
#   make test-sanitize  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      CPU benchmarks (installs Debian's python3-torch for the peer figures)
#   make bench-cuda time a training step of the seed model on the GPU (batch 128, 224x224)
#   make install    install the Lua package and module (PREFIX=/usr/local)
#   CUDA=auto|0     build the GPU backend when nvcc is found (default auto)

CC      ?= gcc
LUA_VER ?= 5.4
BUILD   ?= build
PREFIX  ?= /usr/local
CUDA    ?= auto
SANITIZE ?=

PKG_CFLAGS := $(shell pkg-config --cflags lua$(LUA_VER) openblas cairo 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null)
ifeq ($(PKG_LIBS),)
PKG_LIBS := -lopenblas
endif
# cairo draws whorl.plot's figures; only the Lua module links it (core/ stays
# free of it so C users do not inherit it).
CAIRO_LIBS := $(or $(shell pkg-config --libs cairo 2>/dev/null),-lcairo)

OPT     ?= -O3 -march=x86-64-v3 -mtune=generic
CFLAGS  += -std=c11 -D_GNU_SOURCE -fPIC -fopenmp $(OPT) -g -Wall -Wextra -Wno-unused-parameter \
           -Icore $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -ltiff -lm -fopenmp -lpthread

ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS  += -fsanitize=address,undefined
OPT     := -O1
# stb_image_write's JPEG bit writer shifts ints past their top bit by design
# (core/image_stb_write.c); every other check stays on there
$(BUILD)/core/image_stb_write.o: CFLAGS += -fno-sanitize=shift
endif

CORE_SRC  := $(wildcard core/*.c core/kernels/*.c)
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
LUA_SRC   := $(wildcard lua/*.c)
LUA_OBJ   := $(LUA_SRC:%.c=$(BUILD)/%.o)
CTEST_SRC := $(wildcard tests/c/test_*.c)
CTEST_BIN := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
# Lua C modules only the specs load (tests/device_dispatch_spec.lua)
TEST_MODS := $(BUILD)/tests/fake_device.so
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB     := $(BUILD)/libwhorl.a
SOLIB   := $(BUILD)/libwhorl.so
LUAMOD  := $(BUILD)/whorl/core.so

# ---- the CUDA backend: build/libwhorl_cuda.so, opened at run time by
# whorl.cuda (dlopen), so nothing else links CUDA.  CUDA=auto builds it when
# nvcc is found (not in the sanitizer build: the library is not
# instrumented anyway), CUDA=1 insists, CUDA=0 skips it.
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard $(CUDA_HOME)/bin/nvcc))
CUDA_ARCHS ?= 80 90
ifeq ($(CUDA),auto)
CUDA_ON := $(if $(and $(NVCC),$(if $(SANITIZE),,1)),1,0)
else ifeq ($(CUDA),0)
CUDA_ON := 0
else
CUDA_ON := 1
endif
CUDA_LIB    := $(BUILD)/libwhorl_cuda.so
CUDA_C_SRC  := $(wildcard cuda/*.c)
CUDA_CU_SRC := $(wildcard cuda/*.cu)
CUDA_OBJ    := $(CUDA_C_SRC:%.c=$(BUILD)/%.o) $(CUDA_CU_SRC:%.cu=$(BUILD)/%.cu.o)
CUDA_HDRS   := $(wildcard cuda/*.h cuda/*.cuh core/*.h core/kernels/*.h)
CUDA_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -O2 -g -Wall -Wextra -Wno-unused-parameter \
               -Icore -I$(CUDA_HOME)/include
# SASS for each listed architecture (sm_80's also runs on sm_86/sm_89 such
# as the L40S), plus PTX of the newest for GPUs after it.
CUDA_LAST   := $(lastword $(CUDA_ARCHS))
NVCC_FLAGS  := -std=c++17 -O3 -Xcompiler -fPIC -Icore -Icuda \
               $(foreach a,$(filter-out $(CUDA_LAST),$(CUDA_ARCHS)),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(CUDA_LAST),code=[sm_$(CUDA_LAST),compute_$(CUDA_LAST)]
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart \
               -lstdc++ -lpthread -lm
CUDA_TARGETS := $(if $(filter 1,$(CUDA_ON)),$(CUDA_LIB))

LUA_ENV := LUA_PATH="lua/?.lua;lua/?/init.lua;models/?.lua;;" LUA_CPATH="$(BUILD)/?.so;;"
BUSTED  := busted --lua=lua$(LUA_VER)

# The main job of README.md: synthetic prints, training, evaluation, a run folder.
.DEFAULT_GOAL := all
demo: deps-test
	@$(MAKE) --no-print-directory all
	@OMP_WAIT_POLICY=passive $(LUA_ENV) lua$(LUA_VER) experiments/reconstruct.lua $(ARGS)

.PHONY: demo all deps deps-test test test-c test-lua test-sanitize bench bench-cuda install clean fuzz

all: $(LIB) $(SOLIB) $(LUAMOD) $(CTEST_BIN) $(TEST_MODS) $(CUDA_TARGETS)

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
	$(CC) -shared -o $@ $(LUA_OBJ) $(LIB) $(LDLIBS) $(CAIRO_LIBS)

$(BUILD)/cuda/%.o: cuda/%.c $(CUDA_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CUDA_CFLAGS) -c $< -o $@

$(BUILD)/cuda/%.cu.o: cuda/%.cu $(CUDA_HDRS)
	@test -n "$(NVCC)" || { echo "CUDA=1 but nvcc was not found (set NVCC or CUDA_HOME)"; exit 1; }
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

# -z defs: every symbol resolves at link time (the core is reached only
# through the table it hands over), so a missing one fails here, not at dlopen.
$(CUDA_LIB): $(CUDA_OBJ)
	$(CC) -shared -o $@ $^ $(CUDA_LDLIBS) -Wl,-z,defs

# The core's symbols stay undefined: the spec loads whorl.core globally first.
$(BUILD)/tests/fake_device.so: tests/c/fake_device.c $(wildcard core/*.h core/kernels/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared $< -o $@

$(BUILD)/tests/%: tests/c/%.c tests/c/check.h $(LIB)
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

# Needs no CUDA to build (it loads the library like whorl.cuda does); on a
# machine without a GPU it says so and exits 0.
$(BUILD)/bench/cuda_train_step: cuda/bench/train_step.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDLIBS)

bench-cuda: all $(BUILD)/bench/cuda_train_step
	@$(BUILD)/bench/cuda_train_step

bench: deps
	@tools/deps.sh bench
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BUILD=$(BUILD) tools/run_bench.sh

# The image decoders under clang's libFuzzer + ASan/UBSan for FUZZ_SECONDS,
# seeded with the small image fixtures (fuzz/README.md).
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
$(FUZZ_DIR)/fuzz_image: fuzz/fuzz_image.c $(CORE_SRC) $(wildcard core/*.h core/kernels/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -w -Icore \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    fuzz/fuzz_image.c $(CORE_SRC) -o $@ $(PKG_LIBS) -ltiff -lm -lpthread

fuzz:
	@tools/deps.sh fuzz
	@$(MAKE) --no-print-directory $(FUZZ_DIR)/fuzz_image
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	@find tests/fixtures/image -maxdepth 1 -type f -size -20k ! -name '*.py' ! -name '*.json' \
	    -exec cp {} $(FUZZ_DIR)/seeds/ \;
	cd $(FUZZ_DIR) && ./fuzz_image -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	    -max_len=65536 -print_final_stats=1 corpus seeds

LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_VER)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VER)

install: all
	install -d $(DESTDIR)$(LUA_LIBDIR)/whorl $(DESTDIR)$(LUA_SHAREDIR)/whorl
	install -m 755 $(LUAMOD) $(DESTDIR)$(LUA_LIBDIR)/whorl/core.so
	cp -r lua/whorl/. $(DESTDIR)$(LUA_SHAREDIR)/whorl/
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/whorl
	install -m 644 $(LIB) $(SOLIB) $(CUDA_TARGETS) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 core/*.h $(DESTDIR)$(PREFIX)/include/whorl/

clean:
	rm -rf build build-san
