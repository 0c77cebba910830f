// Pieces shared by the CUDA kernel files (C++ compiled by nvcc): launch
// sizes, the per-element math of core/kernels/*.h under float/double
// overloads, strided loops built from tensors, and a deterministic block
// sum (a fixed grid, partial sums added in a fixed order) for reductions.
#ifndef WHORL_CUDA_KERNELS_CUH
#define WHORL_CUDA_KERNELS_CUH

#include "cuda_internal.h"
#include "kernels/elementwise_math.h"
#include "kernels/nn_math.h"
#include "kernels/optim_math.h"
#include "kernels/strided_math.h"

enum { WHC_THREADS = 256, WHC_MAX_BLOCKS = 65535 * 8 };

// Blocks for a grid-stride loop over n elements.
static inline unsigned whc_blocks(int64_t n) {
    int64_t b = (n + WHC_THREADS - 1) / WHC_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b < WHC_MAX_BLOCKS ? b : WHC_MAX_BLOCKS);
}

#define WHC_GRID_LOOP(i, n)                                                                 \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)blockDim.x * gridDim.x)

// Runs the statement(s) after dt with T = float or double after the
// tensor dtype dt (variadic: a kernel launch's <<<...>>> has commas).
#define WHC_FLOAT_DISPATCH(dt, ...)                                                         \
    do {                                                                                   \
        if ((dt) == WH_FLOAT64) {                                                          \
            typedef double T;                                                              \
            __VA_ARGS__;                                                                   \
        } else {                                                                           \
            typedef float T;                                                               \
            __VA_ARGS__;                                                                   \
        }                                                                                  \
    } while (0)

// ---- the shared math under one name per function ----------------------------------------
__device__ inline float bin_fwd(int op, float a, float b) { return wh_binary_forward_f32(op, a, b); }
__device__ inline double bin_fwd(int op, double a, double b) { return wh_binary_forward_f64(op, a, b); }
__device__ inline float bin_ga(int op, float a, float b, float o, float g) { return wh_binary_grad_a_f32(op, a, b, o, g); }
__device__ inline double bin_ga(int op, double a, double b, double o, double g) { return wh_binary_grad_a_f64(op, a, b, o, g); }
__device__ inline float bin_gb(int op, float a, float b, float o, float g) { return wh_binary_grad_b_f32(op, a, b, o, g); }
__device__ inline double bin_gb(int op, double a, double b, double o, double g) { return wh_binary_grad_b_f64(op, a, b, o, g); }
__device__ inline float un_fwd(int op, float x, float p0, float p1) { return wh_unary_forward_f32(op, x, p0, p1); }
__device__ inline double un_fwd(int op, double x, double p0, double p1) { return wh_unary_forward_f64(op, x, p0, p1); }
__device__ inline float un_grad(int op, float x, float y, float g, float p0, float p1) { return wh_unary_grad_f32(op, x, y, g, p0, p1); }
__device__ inline double un_grad(int op, double x, double y, double g, double p0, double p1) { return wh_unary_grad_f64(op, x, y, g, p0, p1); }
__device__ inline float loss_fwd(int k, float p, float t) { return wh_loss_forward_f32(k, p, t); }
__device__ inline double loss_fwd(int k, double p, double t) { return wh_loss_forward_f64(k, p, t); }
__device__ inline float loss_gp(int k, float p, float t) { return wh_loss_grad_pred_f32(k, p, t); }
__device__ inline double loss_gp(int k, double p, double t) { return wh_loss_grad_pred_f64(k, p, t); }
__device__ inline float loss_gt(int k, float p, float t) { return wh_loss_grad_target_f32(k, p, t); }
__device__ inline double loss_gt(int k, double p, double t) { return wh_loss_grad_target_f64(k, p, t); }
__device__ inline int max_takes(float v, int64_t i, float b, int64_t bi) { return wh_max_takes_f32(v, i, b, bi); }
__device__ inline int max_takes(double v, int64_t i, double b, int64_t bi) { return wh_max_takes_f64(v, i, b, bi); }
__device__ inline int pool_takes(float v, float b) { return wh_pool_takes_f32(v, b); }
__device__ inline int pool_takes(double v, double b) { return wh_pool_takes_f64(v, b); }
__device__ inline float dev_exp(float x) { return expf(x); }
__device__ inline double dev_exp(double x) { return exp(x); }

// ---- strided loops ------------------------------------------------------------------------

// A loop over `shape` with operands ts (broadcast to it; a NULL entry is a
// contiguous tensor of exactly that shape), coalesced.
static inline void whc_loop_init(wh_strided_loop *l, int ndim, const int64_t *shape, int nops,
                                 const wh_tensor *const *ts) {
    wh_strided_loop_init(l, ndim, shape, nops);
    for (int k = 0; k < nops; k++) {
        const wh_tensor *t = ts[k];
        if (t) wh_strided_loop_operand(l, k, t->ndim, t->shape, t->stride, t->offset);
        else wh_strided_loop_operand(l, k, 0, NULL, NULL, 0);
    }
    wh_strided_coalesce(l);
}

// Offsets of element i; a coalesced loop over contiguous operands has one
// dim, which skips the divisions.
__device__ inline void loop_offsets(const wh_strided_loop &l, int64_t i, int64_t *offs) {
    if (l.ndim == 1) {
        for (int k = 0; k < l.nops; k++) offs[k] = l.offset[k] + i * l.stride[k][0];
    } else {
        wh_strided_offsets(&l, i, offs);
    }
}

// ---- deterministic sums -------------------------------------------------------------------

// The sum of v over the block (every thread gets it); blockDim.x == WHC_THREADS.
__device__ inline double block_sum(double v) {
    __shared__ double warp_part[WHC_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); // warp_part may still be read by a previous call
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    double s = 0;
    for (int w = 0; w < WHC_THREADS / 32; w++) s += warp_part[w];
    return s;
}

// Blocks for a grid-wide sum of n terms: a function of n only, so a given
// size always adds its terms in the same order.
static inline unsigned whc_sum_blocks(int64_t n) {
    int64_t b = (n + WHC_THREADS * 8 - 1) / (WHC_THREADS * 8);
    if (b < 1) b = 1;
    return (unsigned)(b < 1024 ? b : 1024);
}

// partial[block] = sum over the block's grid-stride share of f(i), i < n.
template <class F>
__global__ void partial_sums_kernel(F f, int64_t n, double *partial) {
    double s = 0;
    WHC_GRID_LOOP(i, n) s += f(i);
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = scale * sum of partial[0..nparts) in order (one thread).
template <class T>
__global__ void finish_sum_kernel(const double *partial, int nparts, double scale, T *out,
                                  double *out_double) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0;
    for (int i = 0; i < nparts; i++) s += partial[i];
    s *= scale;
    if (out) *out = (T)s;
    if (out_double) *out_double = s;
}

// The sum of f(i) for i < n, times scale, into *out (a T on the device)
// and/or *out_double (device memory).
template <class T, class F>
static wh_status whc_grid_sum(whc_device *d, F f, int64_t n, double scale, T *out,
                              double *out_double) {
    unsigned nb = whc_sum_blocks(n);
    double *partial;
    WH_TRY(whc_malloc(d->index, sizeof(double) * nb, (void **)&partial));
    partial_sums_kernel<<<nb, WHC_THREADS, 0, d->stream>>>(f, n, partial);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) {
        finish_sum_kernel<T><<<1, 32, 0, d->stream>>>(partial, (int)nb, scale, out, out_double);
        e = cudaGetLastError();
    }
    whc_free(d->index, partial, sizeof(double) * nb);
    return e == cudaSuccess ? WH_OK : whc_cuda_error("launch of a sum kernel", e);
}

#endif
