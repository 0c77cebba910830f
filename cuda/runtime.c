/* The CUDA backend's entry point and device management: the checks made at
 * load (core ABI, cuDNN version, driver and devices), one context per
 * device (a stream, cuBLAS and cuDNN handles, a shared cuDNN workspace)
 * created on first use, the settings, the translation of CUDA, cuBLAS and
 * cuDNN statuses into whorl errors, and the wh_backend table. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"

const wh_core_api *whc_core;

int whc_benchmark = 0;     /* cuDNN: time the algorithms (Find) instead of asking heuristics */
int whc_deterministic = 1; /* cuDNN: only algorithms whose results are bitwise reproducible */
int whc_allow_tf32 = 0;    /* float32 convolutions and matmuls on TF32 tensor cores */

/* ---- errors -------------------------------------------------------------------------------- */

wh_status whc_cuda_error(const char *call, cudaError_t e) {
    wh_status code = e == cudaErrorMemoryAllocation ? WH_ERR_MEMORY : WH_ERR_DEVICE;
    return whc_fail(code, "CUDA error in %s: %s (%s)", call, cudaGetErrorString(e),
                    cudaGetErrorName(e));
}

wh_status whc_cublas_error(const char *call, cublasStatus_t s) {
    wh_status code = s == CUBLAS_STATUS_ALLOC_FAILED ? WH_ERR_MEMORY : WH_ERR_DEVICE;
    return whc_fail(code, "cuBLAS error in %s: %s", call, cublasGetStatusString(s));
}

wh_status whc_cudnn_error(const char *call, cudnnStatus_t s) {
    wh_status code = s == CUDNN_STATUS_ALLOC_FAILED ? WH_ERR_MEMORY : WH_ERR_DEVICE;
    return whc_fail(code, "cuDNN error in %s: %s", call, cudnnGetErrorString(s));
}

/* ---- devices -------------------------------------------------------------------------------- */

enum { MAX_DEVICES = 64 };

static int device_count;
static int current_index; /* what "cuda" without an index means */
static whc_device devices[MAX_DEVICES];
static bool device_ready[MAX_DEVICES];
static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int thread_device = -1; /* the device this thread last made current */

static wh_status device_init(whc_device *d, int index) {
    struct cudaDeviceProp prop;
    d->index = index;
    WHC_CUDA(cudaGetDeviceProperties(&prop, index));
    d->sm_count = prop.multiProcessorCount;
    WHC_CUDA(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
    WHC_CUBLAS(cublasCreate(&d->blas));
    WHC_CUBLAS(cublasSetStream(d->blas, d->stream));
    WHC_CUBLAS(cublasSetMathMode(d->blas, whc_allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                         : CUBLAS_DEFAULT_MATH));
    WHC_CUDNN(cudnnCreate(&d->dnn));
    WHC_CUDNN(cudnnSetStream(d->dnn, d->stream));
    return WH_OK;
}

wh_status whc_device_get(int index, whc_device **out) {
    if (index < 0 || index >= device_count)
        return whc_fail(WH_ERR_DEVICE, "cuda:%d does not exist (%d devices)", index, device_count);
    if (thread_device != index) {
        WHC_CUDA(cudaSetDevice(index));
        thread_device = index;
    }
    whc_device *d = &devices[index];
    if (!__atomic_load_n(&device_ready[index], __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&device_lock);
        wh_status st = WH_OK;
        if (!device_ready[index]) {
            st = device_init(d, index);
            if (st == WH_OK) __atomic_store_n(&device_ready[index], true, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&device_lock);
        WH_TRY(st);
    }
    *out = d;
    return WH_OK;
}

wh_status whc_device_of(const wh_tensor *t, whc_device **out) {
    return whc_device_get(whc_index_of(t), out);
}

wh_status whc_workspace(whc_device *d, size_t bytes, void **out) {
    if (bytes > d->workspace_size) {
        if (d->workspace) whc_free(d->index, d->workspace, d->workspace_size);
        d->workspace = NULL;
        d->workspace_size = 0;
        WH_TRY(whc_malloc(d->index, bytes, &d->workspace));
        d->workspace_size = bytes;
    }
    *out = d->workspace;
    return WH_OK;
}

wh_status whc_empty_like(const wh_tensor *t, wh_dtype dt, int ndim, const int64_t *shape,
                         wh_tensor **out) {
    return whc_core->tensor_empty(dt, ndim, shape, t->storage->allocator, out);
}

/* ---- the wh_backend entries for devices and settings ----------------------------------------- */

static int be_device_count(void) { return device_count; }

static int be_current_device(void) { return current_index; }

static wh_status be_set_device(int index) {
    whc_device *d;
    WH_TRY(whc_device_get(index, &d));
    current_index = index;
    return WH_OK;
}

static wh_status be_synchronize(int index) {
    for (int i = 0; i < device_count; i++) {
        if ((index >= 0 && i != index) || !device_ready[i]) continue;
        whc_device *d;
        WH_TRY(whc_device_get(i, &d));
        WHC_CUDA(cudaStreamSynchronize(d->stream));
    }
    return WH_OK;
}

static const char *be_device_name(int index, char *buf, size_t n) {
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, n, "cuda:%d (properties unavailable)", index);
        return buf;
    }
    snprintf(buf, n, "%s, compute %d.%d, %.1f GiB", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1u << 30));
    return buf;
}

static const char *be_versions(char *buf, size_t n) {
    int rt = 0, drv = 0, bmaj = 0, bmin = 0, bpat = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    cublasGetProperty(MAJOR_VERSION, &bmaj);
    cublasGetProperty(MINOR_VERSION, &bmin);
    cublasGetProperty(PATCH_LEVEL, &bpat);
    size_t v = cudnnGetVersion();
    snprintf(buf, n, "runtime %d.%d, driver %d.%d, cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d",
             rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10, v / 10000, v % 10000 / 100,
             v % 100, bmaj, bmin, bpat);
    return buf;
}

static int *option_slot(const char *name) {
    if (strcmp(name, "benchmark") == 0) return &whc_benchmark;
    if (strcmp(name, "deterministic") == 0) return &whc_deterministic;
    if (strcmp(name, "allow_tf32") == 0) return &whc_allow_tf32;
    return NULL;
}

static int be_get_option(const char *name) {
    int *slot = option_slot(name);
    return slot ? *slot : -1;
}

static int be_set_option(const char *name, int value) {
    int *slot = option_slot(name);
    if (!slot) return -1;
    int previous = *slot;
    *slot = value != 0;
    if (slot == &whc_allow_tf32) {
        /* cuBLAS keeps the math mode in its handles; cuDNN's is set per call. */
        for (int i = 0; i < device_count; i++)
            if (device_ready[i])
                cublasSetMathMode(devices[i].blas, *slot ? CUBLAS_TF32_TENSOR_OP_MATH
                                                         : CUBLAS_DEFAULT_MATH);
    }
    return previous;
}

static const wh_backend cuda_backend = {
    .abi = WH_BACKEND_ABI,
    .name = "cuda",
    .type = WH_CUDA,
    .device_count = be_device_count,
    .allocator = whc_allocator,
    .current_device = be_current_device,
    .set_device = be_set_device,
    .synchronize = be_synchronize,
    .device_name = be_device_name,
    .versions = be_versions,
    .empty_cache = whc_empty_cache,
    .memory_stats = whc_memory_stats,
    .set_option = be_set_option,
    .get_option = be_get_option,
    .copy = whc_copy,
    .fill = whc_fill,
    .binary = whc_binary,
    .binary_grad = whc_binary_grad,
    .unary = whc_unary,
    .unary_grad = whc_unary_grad,
    .update = whc_update,
    .sum = whc_sum,
    .max = whc_max,
    .scatter = whc_scatter,
    .arg_index = whc_arg_index,
    .softmax = whc_softmax,
    .softmax_grad = whc_softmax_grad,
    .sum_squares = whc_sum_squares,
    .pad = whc_pad,
    .pad_grad = whc_pad_grad,
    .gemm = whc_gemm,
    .conv2d = whc_conv2d,
    .conv2d_grad = whc_conv2d_grad,
    .max_pool2d = whc_max_pool2d,
    .max_pool2d_grad = whc_max_pool2d_grad,
    .avg_pool2d = whc_avg_pool2d,
    .avg_pool2d_grad = whc_avg_pool2d_grad,
    .upsample2d = whc_upsample2d,
    .upsample2d_grad = whc_upsample2d_grad,
    .batch_norm = whc_batch_norm,
    .batch_norm_grad = whc_batch_norm_grad,
    .pixel_loss = whc_pixel_loss,
    .pixel_loss_grad = whc_pixel_loss_grad,
    .cross_entropy = whc_cross_entropy,
    .cross_entropy_grad = whc_cross_entropy_grad,
    .sgd_update = whc_sgd_update,
    .adam_update = whc_adam_update,
    .rmsprop_update = whc_rmsprop_update,
};

/* ---- the entry point --------------------------------------------------------------------------- */

__attribute__((visibility("default"))) bool whorl_cuda_backend_init(const wh_core_api *core,
                                                                   const wh_backend **out,
                                                                   char *reason, size_t n) {
    if (!core || core->abi != WH_BACKEND_ABI) {
        snprintf(reason, n, "libwhorl_cuda.so was built for another version of whorl (core ABI "
                 "%d, expected %d); rebuild it", core ? core->abi : -1, WH_BACKEND_ABI);
        return false;
    }
    whc_core = core;
    /* A minimum, never a range: newer cuDNN releases keep this API. */
    size_t v = cudnnGetVersion();
    if (v < WHC_CUDNN_MIN_VERSION) {
        snprintf(reason, n, "cuDNN %zu.%zu.%zu is too old: whorl needs %d.%d or newer", v / 10000,
                 v % 10000 / 100, v % 100, WHC_CUDNN_MIN_VERSION / 10000,
                 WHC_CUDNN_MIN_VERSION % 10000 / 100);
        return false;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        snprintf(reason, n, "no CUDA device: cudaGetDeviceCount failed: %s (%s)",
                 cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();
        return false;
    }
    if (count == 0) {
        snprintf(reason, n, "no CUDA device: the driver reports none");
        return false;
    }
    device_count = count < MAX_DEVICES ? count : MAX_DEVICES;
    if (whc_allocator_init(device_count) != WH_OK) {
        snprintf(reason, n, "cannot set up the device allocators");
        return false;
    }
    *out = &cuda_backend;
    return true;
}
