/* The backend registry, the loader of the CUDA library, device names and
 * device buffers.  See backend.h. */
#include "backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N_DEVICE_TYPES = 2 };

static const wh_backend *registry[N_DEVICE_TYPES];

void wh_backend_register(const wh_backend *be) {
    if (be && be->type > WH_CPU && (int)be->type < N_DEVICE_TYPES) registry[be->type] = be;
}

void wh_backend_remove(wh_device_type type) {
    if ((int)type > 0 && (int)type < N_DEVICE_TYPES) registry[type] = NULL;
}

const wh_backend *wh_backend_get(wh_device_type type) {
    return (int)type > 0 && (int)type < N_DEVICE_TYPES ? registry[type] : NULL;
}

/* ---- loading the CUDA library ----------------------------------------------------------- */

static wh_status api_fail(wh_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wh_status st = wh_vfail(code, fmt, ap);
    va_end(ap);
    return st;
}

static const wh_core_api core_api = {
    .abi = WH_BACKEND_ABI,
    .fail = api_fail,
    .tensor_empty = wh_tensor_empty,
    .tensor_release = wh_tensor_release,
    .contiguous = wh_contiguous_raw,
    .shape_str = wh_shape_str,
    .numel = wh_tensor_numel,
    .is_contiguous = wh_tensor_is_contiguous,
};

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static bool load_tried[N_DEVICE_TYPES];
static char load_reason[N_DEVICE_TYPES][768];

#define CUDA_LIB "libwhorl_cuda.so"

/* Opens the CUDA library: the first candidate file that exists is the one
 * (a failure to load it, e.g. a missing libcudnn, is the reason reported);
 * with no file found, the dynamic linker's own search decides. */
static void *open_cuda_library(char *reason, size_t n) {
    char cand[3][1024];
    int nc = 0;
    const char *env = getenv("WHORL_CUDA_LIB");
    if (env && *env) snprintf(cand[nc++], sizeof cand[0], "%s", env);
    Dl_info info;
    if (dladdr((void *)wh_backend_load, &info) && info.dli_fname) {
        char dir[900];
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand[nc++], sizeof cand[0], "%s/" CUDA_LIB, dir);
            snprintf(cand[nc++], sizeof cand[0], "%s/../" CUDA_LIB, dir);
        }
    }
    for (int i = 0; i < nc; i++) {
        if (access(cand[i], F_OK) != 0) continue;
        void *h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) snprintf(reason, n, "cannot load %s: %s", cand[i], dlerror());
        return h;
    }
    void *h = dlopen(CUDA_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        snprintf(reason, n, "%s was not built or cannot be loaded (%s); build it with make "
                 "(CUDA=auto needs nvcc) or set WHORL_CUDA_LIB", CUDA_LIB, dlerror());
    return h;
}

static const wh_backend *load_cuda(char *reason, size_t n) {
    void *h = open_cuda_library(reason, n);
    if (!h) return NULL;
    /* The library stays loaded even when it reports no device: unloading a
     * half-initialised CUDA runtime is not safe, and it costs nothing. */
    wh_backend_init_fn init = (wh_backend_init_fn)dlsym(h, WH_CUDA_INIT_SYMBOL);
    if (!init) {
        snprintf(reason, n, "%s has no %s (%s)", CUDA_LIB, WH_CUDA_INIT_SYMBOL, dlerror());
        return NULL;
    }
    const wh_backend *be = NULL;
    if (!init(&core_api, &be, reason, n)) return NULL;
    if (!be || be->abi != WH_BACKEND_ABI || be->type != WH_CUDA) {
        snprintf(reason, n, "%s was built for another version of whorl (backend ABI %d, "
                 "expected %d); rebuild it", CUDA_LIB, be ? be->abi : -1, WH_BACKEND_ABI);
        return NULL;
    }
    return be;
}

wh_status wh_backend_load(wh_device_type type, const wh_backend **out) {
    if (type != WH_CUDA) return wh_fail(WH_ERR_DEVICE, "no backend to load for device type %d", (int)type);
    pthread_mutex_lock(&load_lock);
    const wh_backend *be = registry[type];
    if (!be && !load_tried[type]) {
        load_tried[type] = true;
        be = load_cuda(load_reason[type], sizeof load_reason[type]);
        if (be) {
            load_reason[type][0] = 0;
            wh_backend_register(be);
        }
    }
    pthread_mutex_unlock(&load_lock);
    if (!be) return wh_fail(WH_ERR_DEVICE, "CUDA is not available: %s", load_reason[type]);
    *out = be;
    return WH_OK;
}

const char *wh_backend_unavailable_reason(wh_device_type type) {
    if ((int)type <= 0 || (int)type >= N_DEVICE_TYPES) return "";
    return registry[type] ? "" : load_reason[type];
}

/* ---- devices ------------------------------------------------------------------------------- */

wh_status wh_device_parse(const char *name, wh_device *out) {
    if (strcmp(name, "cpu") == 0) {
        *out = (wh_device){WH_CPU, 0};
        return WH_OK;
    }
    if (strncmp(name, "cuda", 4) == 0) {
        const char *p = name + 4;
        if (*p == 0) {
            *out = (wh_device){WH_CUDA, -1}; /* the current device */
            return WH_OK;
        }
        char *end;
        long i = *p == ':' ? strtol(p + 1, &end, 10) : -1;
        if (*p == ':' && end != p + 1 && *end == 0 && i >= 0 && i < 1024) {
            *out = (wh_device){WH_CUDA, (int)i};
            return WH_OK;
        }
    }
    return wh_fail(WH_ERR_ARG, "unknown device '%s' (cpu, cuda or cuda:N)", name);
}

wh_status wh_device_allocator(wh_device d, wh_allocator **out) {
    if (d.type == WH_CPU) {
        *out = wh_cpu_allocator();
        return WH_OK;
    }
    const wh_backend *be;
    WH_TRY(wh_backend_load(d.type, &be));
    int count = be->device_count();
    int index = d.index < 0 ? be->current_device() : d.index;
    if (index < 0 || index >= count)
        return wh_fail(WH_ERR_DEVICE, "%s:%d does not exist (%d device%s)", be->name, index,
                       count, count == 1 ? "" : "s");
    *out = be->allocator(index);
    return WH_OK;
}

wh_status wh_check_same_device(const char *op, const wh_tensor *a, const wh_tensor *b) {
    if (!b) return WH_OK;
    wh_device da = wh_tensor_device(a), db = wh_tensor_device(b);
    if (da.type == db.type && da.index == db.index) return WH_OK;
    char x[32], y[32];
    return wh_fail(WH_ERR_DEVICE, "%s: tensors are on different devices (%s and %s)", op,
                   wh_device_name(da, x, sizeof x), wh_device_name(db, y, sizeof y));
}

/* ---- device buffers ------------------------------------------------------------------------ */

wh_status wh_devbuf_new(wh_allocator *alloc, size_t nbytes, wh_devbuf **out) {
    wh_devbuf *b = calloc(1, sizeof *b);
    if (!b) return wh_fail(WH_ERR_MEMORY, "out of memory allocating a buffer header");
    b->alloc = alloc;
    b->nbytes = nbytes ? nbytes : 8;
    b->ptr = alloc->alloc(alloc, b->nbytes);
    if (!b->ptr) {
        free(b);
        return wh_fail(WH_ERR_MEMORY, "out of memory allocating %zu bytes on %s", nbytes,
                       alloc->name);
    }
    *out = b;
    return WH_OK;
}

void wh_devbuf_free(void *buf) {
    wh_devbuf *b = buf;
    if (!b) return;
    b->alloc->free(b->alloc, b->ptr, b->nbytes);
    free(b);
}
