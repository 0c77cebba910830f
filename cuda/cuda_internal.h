/* Internals of the CUDA backend library (libwhorl_cuda.so), shared by its C
 * files (runtime, allocator, cuBLAS and cuDNN calls) and its CUDA files
 * (the custom kernels).
 *
 * The library links against no part of the core: it sees tensors through
 * the core headers' struct layouts and calls the core only through the
 * wh_core_api table it was given (whc_core), so it resolves every symbol at
 * link time.  Functions named whc_* are the library's own. */
#ifndef WHORL_CUDA_INTERNAL_H
#define WHORL_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"

/* The oldest cuDNN this library accepts (checked at load; newer is fine:
 * the legacy convolution, pooling-free, batch-norm and activation API used
 * here is present, deprecated, throughout cuDNN 9). */
#define WHC_CUDNN_MIN_VERSION 90000

extern const wh_core_api *whc_core;
#define whc_fail(...) (whc_core->fail(__VA_ARGS__))

/* ---- status checks: every call's status becomes an error naming it ------------------- */
wh_status whc_cuda_error(const char *call, cudaError_t e);
wh_status whc_cublas_error(const char *call, cublasStatus_t s);
wh_status whc_cudnn_error(const char *call, cudnnStatus_t s);

#define WHC_CUDA(call)                                                                      \
    do {                                                                                   \
        cudaError_t whc_e_ = (call);                                                       \
        if (whc_e_ != cudaSuccess) return whc_cuda_error(#call, whc_e_);                   \
    } while (0)
#define WHC_CUBLAS(call)                                                                    \
    do {                                                                                   \
        cublasStatus_t whc_s_ = (call);                                                    \
        if (whc_s_ != CUBLAS_STATUS_SUCCESS) return whc_cublas_error(#call, whc_s_);        \
    } while (0)
#define WHC_CUDNN(call)                                                                     \
    do {                                                                                   \
        cudnnStatus_t whc_s_ = (call);                                                     \
        if (whc_s_ != CUDNN_STATUS_SUCCESS) return whc_cudnn_error(#call, whc_s_);          \
    } while (0)
/* After a kernel launch (name: a string literal): a bad configuration
 * shows up here; faults while it runs surface at the next synchronising
 * call, which names itself. */
#define WHC_LAUNCHED(name)                                                                  \
    do {                                                                                   \
        cudaError_t whc_e_ = cudaGetLastError();                                           \
        if (whc_e_ != cudaSuccess) return whc_cuda_error("launch of " name, whc_e_);        \
    } while (0)

/* ---- devices ----------------------------------------------------------------------------- */
typedef struct {
    int index;
    cudaStream_t stream;          /* every kernel and copy of the device runs here, in order */
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    int sm_count;
    /* one workspace shared by every cuDNN call of the device, grown on demand */
    void *workspace;
    size_t workspace_size;
} whc_device;

/* Makes device `index` current on this thread (initialising it on first
 * use) and returns its context. */
wh_status whc_device_get(int index, whc_device **out);
/* The context of the device a tensor lives on. */
wh_status whc_device_of(const wh_tensor *t, whc_device **out);
/* A workspace of at least `bytes` on the device (reused until a larger one is needed). */
wh_status whc_workspace(whc_device *d, size_t bytes, void **out);
/* Settings (wh_backend set_option / get_option). */
extern int whc_benchmark, whc_deterministic, whc_allow_tf32;

/* ---- the caching allocator (allocator.c) ---------------------------------------------------- */
wh_status whc_allocator_init(int device_count);
wh_allocator *whc_allocator(int index);
void whc_empty_cache(void);
void whc_memory_stats(int index, wh_device_memory_stats *s);
/* Raw device memory for a kernel's temporaries, returned with whc_free. */
wh_status whc_malloc(int index, size_t bytes, void **out);
void whc_free(int index, void *ptr, size_t bytes);

/* ---- tensors ----------------------------------------------------------------------------------- */
static inline size_t whc_dtype_size(wh_dtype dt) {
    return dt == WH_FLOAT64 ? 8 : dt == WH_FLOAT32 ? 4 : 1;
}
/* Address of element 0 of the view. */
static inline void *whc_data(const wh_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)whc_dtype_size(t->dtype);
}
static inline int64_t whc_numel(const wh_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
static inline int whc_index_of(const wh_tensor *t) { return t->storage->allocator->device.index; }
/* A new device tensor (whc_core->tensor_empty on t's allocator). */
wh_status whc_empty_like(const wh_tensor *t, wh_dtype dt, int ndim, const int64_t *shape,
                         wh_tensor **out);

/* ---- the op families (one file each) ------------------------------------------------------------ */
/* elementwise.cu */
wh_status whc_copy(wh_tensor *dst, const wh_tensor *src);
wh_status whc_fill(wh_tensor *t, double value);
wh_status whc_binary(int mop, const wh_tensor *a, const wh_tensor *b, wh_tensor *out);
wh_status whc_binary_grad(int mop, const wh_tensor *a, const wh_tensor *b, const wh_tensor *out,
                          const wh_tensor *g, wh_tensor *ga, wh_tensor *gb);
wh_status whc_unary(int mop, const wh_tensor *x, wh_tensor *y, double p0, double p1);
wh_status whc_unary_grad(int mop, const wh_tensor *x, const wh_tensor *y, const wh_tensor *g,
                         wh_tensor *gx, double p0, double p1);
wh_status whc_update(int kind, wh_tensor *x, const wh_tensor *a, const wh_tensor *b, double v);
wh_status whc_pad(const wh_tensor *x, const int64_t *before, int mode, double value,
                  wh_tensor *y);
wh_status whc_pad_grad(const wh_tensor *g, const int64_t *before, int mode, wh_tensor *gx);
/* reduce.cu */
wh_status whc_sum(const wh_tensor *x, const bool *mask, double scale, wh_tensor *out);
wh_status whc_max(const wh_tensor *x, const bool *mask, wh_tensor *out, int64_t *arg);
wh_status whc_scatter(wh_tensor *dst, const int64_t *index, const wh_tensor *src);
wh_status whc_arg_index(const int64_t *arg, int64_t div, int64_t size, wh_tensor *out);
wh_status whc_softmax(const wh_tensor *x, int dim, bool log_mode, wh_tensor *y);
wh_status whc_softmax_grad(const wh_tensor *y, const wh_tensor *g, int dim, bool log_mode,
                           wh_tensor *gx);
wh_status whc_sum_squares(const wh_tensor *x, double *result);
/* Per-channel sums over (N, C, S) of g and of g*(x-mean)*invstd, into
 * double arrays of C (device memory); used by batch norm in evaluation. */
wh_status whc_channel_sums(const wh_tensor *x, const wh_tensor *g, const wh_tensor *mean,
                           const wh_tensor *invstd, double *sum_g, double *sum_gx);
/* blas.c */
wh_status whc_gemm(int device, wh_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n,
                   int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb,
                   double beta, void *c, int64_t ldc);
/* conv.c */
wh_status whc_conv2d(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                     const wh_tensor *w, const wh_tensor *b, wh_tensor *y);
wh_status whc_conv2d_grad(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                          const wh_tensor *w, const wh_tensor *y, const wh_tensor *g,
                          wh_tensor *gx, wh_tensor *gw, wh_tensor *gb);
/* nn.cu */
wh_status whc_max_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y, int32_t *idx);
wh_status whc_max_pool2d_grad(const wh_tensor *g, const int32_t *idx, const wh_pool_params *p,
                              wh_tensor *gx);
wh_status whc_avg_pool2d(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y);
wh_status whc_avg_pool2d_grad(const wh_tensor *g, const wh_pool_params *p, wh_tensor *gx);
wh_status whc_upsample2d(const wh_tensor *x, int mode, bool align, wh_tensor *y);
wh_status whc_upsample2d_grad(const wh_tensor *g, int mode, bool align, wh_tensor *gx);
/* Evaluation-mode batch norm helpers: invstd = 1/sqrt(var + eps) (any
 * strides in, contiguous out), and dx = g * w * invstd per channel. */
wh_status whc_bn_invstd(const wh_tensor *var, double eps, wh_tensor *invstd);
wh_status whc_bn_eval_grad_input(const wh_tensor *g, const wh_tensor *weight,
                                 const wh_tensor *invstd, wh_tensor *gx);
/* Per-channel finish of batch norm's parameter gradients: gw = sum_gx,
 * gb = sum_g (double -> the tensors' dtype); either may be NULL. */
wh_status whc_bn_param_grads(const double *sum_g, const double *sum_gx, wh_tensor *gw,
                             wh_tensor *gb);
/* batchnorm.c */
wh_status whc_batch_norm(const wh_tensor *x, const wh_tensor *weight, const wh_tensor *bias,
                         wh_tensor *running_mean, wh_tensor *running_var, bool training,
                         double momentum, double eps, wh_tensor *y, wh_tensor *save_mean,
                         wh_tensor *save_invstd);
wh_status whc_batch_norm_grad(const wh_tensor *x, const wh_tensor *weight,
                              const wh_tensor *save_mean, const wh_tensor *save_invstd,
                              bool training, double eps, const wh_tensor *g, wh_tensor *gx,
                              wh_tensor *gw, wh_tensor *gb);
/* loss.cu */
wh_status whc_pixel_loss(int kind, int reduction, const wh_tensor *pred, const wh_tensor *target,
                         const wh_tensor *weight, wh_tensor *out);
wh_status whc_pixel_loss_grad(int kind, int reduction, const wh_tensor *pred,
                              const wh_tensor *target, const wh_tensor *weight, const wh_tensor *g,
                              wh_tensor *gp, wh_tensor *gt, wh_tensor *gw_full);
wh_status whc_cross_entropy(const wh_tensor *z, const int64_t *cls, const wh_tensor *cw,
                            int reduction, double weight_sum, double *lse, wh_tensor *out);
wh_status whc_cross_entropy_grad(const wh_tensor *z, const int64_t *cls, const double *lse,
                                 const wh_tensor *cw, int reduction, double weight_sum,
                                 const wh_tensor *g, wh_tensor *gz);
wh_status whc_sgd_update(wh_tensor *p, const wh_tensor *g, wh_tensor *m, const wh_sgd_options *o);
wh_status whc_adam_update(wh_tensor *p, const wh_tensor *g, wh_tensor *m, wh_tensor *v,
                          wh_tensor *vhat, const wh_adam_options *o);
wh_status whc_rmsprop_update(wh_tensor *p, const wh_tensor *g, wh_tensor *v, wh_tensor *avg,
                             wh_tensor *mom, const wh_rmsprop_options *o);

#ifdef __cplusplus
}
#endif

#endif
