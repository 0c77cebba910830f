/* Device backends: how ops run when their tensors live on a device.
 *
 * The ops layer (core/ops_*.c) keeps, for every device, the argument
 * checks, the allocation of outputs (on the inputs' device, through their
 * allocator) and the autograd recording; only where it would run a CPU loop
 * does it call the kernel of the tensors' backend instead.  Backward
 * functions are ops code too, so they dispatch the same way, and a graph
 * built on the GPU is differentiated on the GPU.
 *
 * A backend is one table of raw kernels, registered per device type.  The
 * CUDA one lives in a separate library (build/libwhorl_cuda.so) that
 * wh_backend_load opens with dlopen on first use and that calls back into
 * the core only through the wh_core_api table it is given, so the core
 * never links CUDA, works where CUDA is missing, and the library resolves
 * every symbol at link time (-z defs).
 *
 * Kernel conventions: the ops layer has checked shapes, dtypes (float32 or
 * float64 unless said) and that every tensor is on this backend's device.
 * Outputs are contiguous tensors it allocated on that device; inputs have
 * any strides unless said "contiguous".  Raw index buffers (int32_t /
 * int64_t / double pointers) are device memory from wh_devbuf_new.  A
 * kernel returns WH_OK or a status with the message set (wh_fail). */
#ifndef WHORL_BACKEND_H
#define WHORL_BACKEND_H

#include "ops.h"

/* Bumped whenever wh_backend or wh_core_api changes layout, so a stale
 * libwhorl_cuda.so is refused instead of called through the wrong slots. */
#define WH_BACKEND_ABI 1

/* In-place update kinds of wh_backend.update (x is the updated tensor):
 * x += v*a, x *= a, x += v*a*b, x += v*a/b, x = a. */
enum { WH_UPDATE_AXPY, WH_UPDATE_MUL, WH_UPDATE_ADDCMUL, WH_UPDATE_ADDCDIV, WH_UPDATE_COPY };

typedef struct {
    size_t allocated_bytes;      /* held by live tensors (rounded to blocks) */
    size_t reserved_bytes;       /* allocated + cached, i.e. taken from the device */
    size_t peak_allocated_bytes;
    size_t cached_blocks;
    uint64_t allocations;        /* requests served */
    uint64_t cache_hits;         /* ... of which from the cache */
    uint64_t device_mallocs;     /* calls to the device's own allocator */
    uint64_t oom_retries;        /* out-of-memory recovered by emptying the cache */
} wh_device_memory_stats;

typedef struct wh_backend {
    int abi;
    const char *name;            /* "cuda" */
    wh_device_type type;

    /* ---- devices, memory, settings (whorl.cuda) ----------------------------------- */
    int (*device_count)(void);
    /* The allocator of device `index` (checked by the caller against
     * device_count); its copy hooks move contiguous bytes to and from the host. */
    wh_allocator *(*allocator)(int index);
    int (*current_device)(void);
    wh_status (*set_device)(int index);
    wh_status (*synchronize)(int index);
    /* "NVIDIA H100 80GB HBM3, compute 9.0, 79.1 GiB" into buf. */
    const char *(*device_name)(int index, char *buf, size_t n);
    /* "runtime 13.0, driver 13.0, cuDNN 9.19.0, cuBLAS 13.1.0" into buf. */
    const char *(*versions)(char *buf, size_t n);
    void (*empty_cache)(void);
    void (*memory_stats)(int index, wh_device_memory_stats *s);
    /* Named switches ("benchmark", "deterministic", "allow_tf32"): set_option
     * returns the previous value or -1 for an unknown name. */
    int (*set_option)(const char *name, int value);
    int (*get_option)(const char *name);

    /* ---- tensor.c, autograd.c ------------------------------------------------------- */
    /* dst <- src, same shape, both on this device (dst any strides too);
     * converts dtypes, uint8 included (wh_u8_from_double rounding). */
    wh_status (*copy)(wh_tensor *dst, const wh_tensor *src);
    wh_status (*fill)(wh_tensor *t, double value); /* any strides, any dtype */

    /* ---- elementwise (ops_elementwise.c) --------------------------------------------- */
    /* out = a op b, a and b broadcast to out's shape; mop as elementwise_math.h. */
    wh_status (*binary)(int mop, const wh_tensor *a, const wh_tensor *b, wh_tensor *out);
    /* ga, gb (out's shape, either NULL) = d(a op b)/da * g, .../db * g; g contiguous. */
    wh_status (*binary_grad)(int mop, const wh_tensor *a, const wh_tensor *b,
                             const wh_tensor *out, const wh_tensor *g, wh_tensor *ga,
                             wh_tensor *gb);
    /* y = f(x) elementwise; x and y of one shape, any strides, may be the
     * same tensor (in-place ops). */
    wh_status (*unary)(int mop, const wh_tensor *x, wh_tensor *y, double p0, double p1);
    /* gx = g * f'(x) from x, y = f(x) and g, all contiguous. */
    wh_status (*unary_grad)(int mop, const wh_tensor *x, const wh_tensor *y,
                            const wh_tensor *g, wh_tensor *gx, double p0, double p1);
    /* x updated in place (WH_UPDATE_*), a and b (b may be NULL) broadcast to
     * x's shape; x any strides. */
    wh_status (*update)(int kind, wh_tensor *x, const wh_tensor *a, const wh_tensor *b,
                        double v);

    /* ---- reductions (ops_reduce.c) ---------------------------------------------------- */
    /* out (the reduced shape, contiguous) = scale * sum of contiguous x over
     * the dims where mask[d]; accumulated in double. */
    wh_status (*sum)(const wh_tensor *x, const bool *mask, double scale, wh_tensor *out);
    /* out = max of contiguous x over the masked dims; arg (numel(out)
     * int64) gets each maximum's flat position in x (wh_max_takes rule). */
    wh_status (*max)(const wh_tensor *x, const bool *mask, wh_tensor *out, int64_t *arg);
    /* dst[index[q]] = src[q] for q < numel(src); dst and src contiguous. */
    wh_status (*scatter)(wh_tensor *dst, const int64_t *index, const wh_tensor *src);
    /* out (float64, contiguous) = (arg[q] / div) % size, or arg[q] when size is 0. */
    wh_status (*arg_index)(const int64_t *arg, int64_t div, int64_t size, wh_tensor *out);
    /* (log_)softmax along dim of contiguous x; its gradient from y and g. */
    wh_status (*softmax)(const wh_tensor *x, int dim, bool log_mode, wh_tensor *y);
    wh_status (*softmax_grad)(const wh_tensor *y, const wh_tensor *g, int dim, bool log_mode,
                              wh_tensor *gx);
    wh_status (*sum_squares)(const wh_tensor *x, double *result); /* x contiguous */

    /* ---- shape (ops_shape.c) ------------------------------------------------------------ */
    /* y = pad(x): before[d] is the padding before dim d of y (0 for dims
     * that are not padded); mode as wh_pad_mode, fill value for constant.
     * Any dtype; x any strides. */
    wh_status (*pad)(const wh_tensor *x, const int64_t *before, int mode, double value,
                     wh_tensor *y);
    /* gx (x's shape, contiguous, overwritten) = the adjoint of pad applied to g. */
    wh_status (*pad_grad)(const wh_tensor *g, const int64_t *before, int mode, wh_tensor *gx);

    /* ---- linear algebra (ops_linalg.c) --------------------------------------------------- */
    /* Row-major C (m x n, leading dim ldc) = op(A) @ op(B) + beta*C, like
     * cblas_?gemm with CblasRowMajor and alpha 1; pointers to memory of
     * device number `device`. */
    wh_status (*gemm)(int device, wh_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n,
                      int64_t k,
                      const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
                      void *c, int64_t ldc);

    /* ---- convolution (ops_conv.c) ---------------------------------------------------------
     * x, w, b (b may be NULL) contiguous; transposed selects
     * conv_transpose2d (weight (C_in, C_out, KH, KW)); p->activation fused. */
    wh_status (*conv2d)(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                        const wh_tensor *w, const wh_tensor *b, wh_tensor *y);
    /* From g = dL/dy (contiguous) and, with a fused activation, the saved
     * output y: gx, gw, gb (each may be NULL when not needed). */
    wh_status (*conv2d_grad)(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                             const wh_tensor *w, const wh_tensor *y, const wh_tensor *g,
                             wh_tensor *gx, wh_tensor *gw, wh_tensor *gb);

    /* ---- pooling, resampling, normalisation (ops_nn.c) --------------------------------------
     * Image tensors are contiguous (N,C,H,W). */
    /* idx (numel(y) int32, may be NULL) gets each maximum's position in its H*W plane. */
    wh_status (*max_pool2d)(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y,
                            int32_t *idx);
    /* gx overwritten (not accumulated into). */
    wh_status (*max_pool2d_grad)(const wh_tensor *g, const int32_t *idx,
                                 const wh_pool_params *p, wh_tensor *gx);
    wh_status (*avg_pool2d)(const wh_tensor *x, const wh_pool_params *p, wh_tensor *y);
    wh_status (*avg_pool2d_grad)(const wh_tensor *g, const wh_pool_params *p, wh_tensor *gx);
    wh_status (*upsample2d)(const wh_tensor *x, int mode, bool align_corners, wh_tensor *y);
    wh_status (*upsample2d_grad)(const wh_tensor *g, int mode, bool align_corners,
                                 wh_tensor *gx);
    /* Batch norm over (N,C) or (N,C,H,W), x contiguous; weight, bias may be
     * NULL; running_* may be NULL in training and are updated in place
     * (PyTorch's momentum, unbiased running variance).  save_mean and
     * save_invstd (C, x's dtype) receive the statistics used: the batch's
     * in training, the running ones in evaluation. */
    wh_status (*batch_norm)(const wh_tensor *x, const wh_tensor *weight, const wh_tensor *bias,
                            wh_tensor *running_mean, wh_tensor *running_var, bool training,
                            double momentum, double eps, wh_tensor *y, wh_tensor *save_mean,
                            wh_tensor *save_invstd);
    /* gx, gw, gb (each may be NULL) from g (contiguous); training says
     * whether the statistics came from the batch (and so carry gradient). */
    wh_status (*batch_norm_grad)(const wh_tensor *x, const wh_tensor *weight,
                                 const wh_tensor *save_mean, const wh_tensor *save_invstd,
                                 bool training, double eps, const wh_tensor *g, wh_tensor *gx,
                                 wh_tensor *gw, wh_tensor *gb);

    /* ---- losses (ops_loss.c) -------------------------------------------------------------
     * Pixel losses (kind as nn_math.h, reduction as wh_reduction): out is
     * pred's shape (none) or 0-d (mean divides by numel(pred)); weight may
     * be NULL and broadcasts to pred; any strides. */
    wh_status (*pixel_loss)(int kind, int reduction, const wh_tensor *pred,
                            const wh_tensor *target, const wh_tensor *weight, wh_tensor *out);
    /* gp, gt (pred's shape, may be NULL), gw_full (pred's shape: g * loss,
     * summed back by the caller; may be NULL) from g (out's shape). */
    wh_status (*pixel_loss_grad)(int kind, int reduction, const wh_tensor *pred,
                                 const wh_tensor *target, const wh_tensor *weight,
                                 const wh_tensor *g, wh_tensor *gp, wh_tensor *gt,
                                 wh_tensor *gw_full);
    /* Cross-entropy of contiguous logits z (N,C,S...) with class ids cls
     * (N*S int64, -1 ignored) and optional class weights cw (C); lse (N*S
     * doubles) receives each log-sum-exp for the gradient.  out is (N,S...)
     * for reduction none, else 0-d: the weighted sum, divided by
     * weight_sum for the mean. */
    wh_status (*cross_entropy)(const wh_tensor *z, const int64_t *cls, const wh_tensor *cw,
                               int reduction, double weight_sum, double *lse, wh_tensor *out);
    wh_status (*cross_entropy_grad)(const wh_tensor *z, const int64_t *cls, const double *lse,
                                    const wh_tensor *cw, int reduction, double weight_sum,
                                    const wh_tensor *g, wh_tensor *gz);

    /* ---- fused optimizer updates (ops_optim.c); every tensor contiguous --------------- */
    wh_status (*sgd_update)(wh_tensor *p, const wh_tensor *g, wh_tensor *m,
                            const wh_sgd_options *o);
    wh_status (*adam_update)(wh_tensor *p, const wh_tensor *g, wh_tensor *m, wh_tensor *v,
                             wh_tensor *vhat, const wh_adam_options *o);
    wh_status (*rmsprop_update)(wh_tensor *p, const wh_tensor *g, wh_tensor *v, wh_tensor *avg,
                                wh_tensor *mom, const wh_rmsprop_options *o);
} wh_backend;

/* The core functions a backend library may call (it links against no part
 * of the core).  Same meanings as in tensor.h / status.h. */
typedef struct {
    int abi;
    wh_status (*fail)(wh_status code, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
    wh_status (*tensor_empty)(wh_dtype dt, int ndim, const int64_t *shape, wh_allocator *alloc,
                              wh_tensor **out);
    void (*tensor_release)(wh_tensor *t);
    wh_status (*contiguous)(wh_tensor *t, bool force, wh_tensor **out);
    const char *(*shape_str)(const wh_tensor *t, char *buf, size_t n);
    int64_t (*numel)(const wh_tensor *t);
    bool (*is_contiguous)(const wh_tensor *t);
} wh_core_api;

/* The entry point a backend library exports: fills *out with its table, or
 * returns false with the reason (no driver, no device, cuDNN too old...)
 * in reason.  Called once, from wh_backend_load. */
typedef bool (*wh_backend_init_fn)(const wh_core_api *core, const wh_backend **out,
                                   char *reason, size_t reason_size);
#define WH_CUDA_INIT_SYMBOL "whorl_cuda_backend_init"

/* ---- registry ------------------------------------------------------------------------ */

/* Installs a backend for its device type; wh_backend_remove takes it out
 * again (a test installs a fake one; tensors of the device must be gone). */
void wh_backend_register(const wh_backend *be);
void wh_backend_remove(wh_device_type type);
/* The registered backend of a device type, or NULL. */
const wh_backend *wh_backend_get(wh_device_type type);
/* The backend of t's device: NULL on the CPU, which the ops run themselves.
 * A tensor can only be on a device whose backend made its allocator. */
static inline const wh_backend *wh_backend_of(const wh_tensor *t) {
    wh_device_type type = t->storage->allocator->device.type;
    return type == WH_CPU ? NULL : wh_backend_get(type);
}
/* Loads (once per process) the backend of a device type: for CUDA, dlopen
 * of libwhorl_cuda.so from $WHORL_CUDA_LIB, the directory of the library
 * holding the core, its parent, then the system's search path.  On failure
 * returns WH_ERR_DEVICE with a message that includes the reason, which
 * wh_backend_unavailable_reason also returns later. */
wh_status wh_backend_load(wh_device_type type, const wh_backend **out);
/* Why loading failed ("" while not tried or after success). */
const char *wh_backend_unavailable_reason(wh_device_type type);

/* ---- devices ------------------------------------------------------------------------------ */

/* "cpu", "cuda" (the current CUDA device), "cuda:1". */
wh_status wh_device_parse(const char *name, wh_device *out);
/* The allocator of a device, loading its backend when needed; the index
 * of a CUDA device is checked against the device count. */
wh_status wh_device_allocator(wh_device d, wh_allocator **out);
/* Fails naming both devices when a and b differ ("op: tensors are on
 * different devices (cuda:0 and cpu)"); b may be NULL. */
wh_status wh_check_same_device(const char *op, const wh_tensor *a, const wh_tensor *b);

/* ---- device memory for op state ------------------------------------------------------------
 * Raw buffers on a tensor's device for what an op keeps between forward and
 * backward (arg max positions, class ids); wh_devbuf_free is a valid
 * wh_node free_ctx. */
typedef struct {
    wh_allocator *alloc;
    size_t nbytes;
    void *ptr;
} wh_devbuf;
wh_status wh_devbuf_new(wh_allocator *alloc, size_t nbytes, wh_devbuf **out);
void wh_devbuf_free(void *buf);

#endif
