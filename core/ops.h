/* Differentiable ops.  Each takes input tensors and returns a new output
 * tensor through `out` (one reference for the caller), recording an
 * autograd node when grad mode is on and an input requires grad.
 * In-place ops end in an underscore, record nothing and refuse leaves that
 * require grad while grad mode is on.
 *
 * Float ops accept float32 and float64 (the two inputs of a binary op must
 * share a dtype); uint8 tensors are for storage and conversion only.
 * Each file ops_*.c implements one family; the kernels they call are plain
 * functions over raw arrays (core/kernels/). */
#ifndef WHORL_OPS_H
#define WHORL_OPS_H

#include "autograd.h"
#include "tensor.h"

/* ---- shape and view ops (ops_shape.c) ----------------------------------------
 * Views share storage with the input; their backward maps the gradient back. */
wh_status wh_view(wh_tensor *x, int ndim, const int64_t *shape, wh_tensor **out);
/* Like view, but copies when the strides do not allow a view. */
wh_status wh_reshape(wh_tensor *x, int ndim, const int64_t *shape, wh_tensor **out);
wh_status wh_permute(wh_tensor *x, const int *perm, wh_tensor **out);
wh_status wh_transpose(wh_tensor *x, int dim0, int dim1, wh_tensor **out);
wh_status wh_narrow(wh_tensor *x, int dim, int64_t start, int64_t length, wh_tensor **out);
wh_status wh_select(wh_tensor *x, int dim, int64_t index, wh_tensor **out);
wh_status wh_unsqueeze(wh_tensor *x, int dim, wh_tensor **out);
/* Drops dim when its size is 1 (a dim of another size stays, as in
 * PyTorch); with `all`, drops every size-1 dim and ignores dim. */
wh_status wh_squeeze(wh_tensor *x, int dim, bool all, wh_tensor **out);
wh_status wh_expand(wh_tensor *x, int ndim, const int64_t *shape, wh_tensor **out);
wh_status wh_contiguous(wh_tensor *x, wh_tensor **out);
/* Differentiable dtype conversion between float dtypes (a copy; x itself
 * when it already has dtype dt). */
wh_status wh_to_dtype(wh_tensor *x, wh_dtype dt, wh_tensor **out);
/* A copy (differentiable). */
wh_status wh_clone(wh_tensor *x, wh_tensor **out);
/* Concatenation of n tensors along dim (same shapes elsewhere). */
wh_status wh_concat(int n, wh_tensor *const *xs, int dim, wh_tensor **out);
/* Pads the last dims: pads holds (before, after) pairs starting from the
 * LAST dimension, as in PyTorch's F.pad; mode "constant" (with value),
 * "reflect" or "replicate". npairs <= ndim. */
typedef enum { WH_PAD_CONSTANT = 0, WH_PAD_REFLECT = 1, WH_PAD_REPLICATE = 2 } wh_pad_mode;
wh_status wh_pad(wh_tensor *x, int npairs, const int64_t *pads, wh_pad_mode mode, double value,
                 wh_tensor **out);

/* ---- elementwise (ops_elementwise.c) -----------------------------------------
 * Binary ops broadcast with NumPy rules. */
typedef enum { WH_BIN_ADD, WH_BIN_SUB, WH_BIN_MUL, WH_BIN_DIV, WH_BIN_POW,
               WH_BIN_MAXIMUM, WH_BIN_MINIMUM } wh_binary_op;
wh_status wh_binary(wh_binary_op op, wh_tensor *a, wh_tensor *b, wh_tensor **out);
wh_status wh_add(wh_tensor *a, wh_tensor *b, wh_tensor **out);
wh_status wh_sub(wh_tensor *a, wh_tensor *b, wh_tensor **out);
wh_status wh_mul(wh_tensor *a, wh_tensor *b, wh_tensor **out);
wh_status wh_div(wh_tensor *a, wh_tensor *b, wh_tensor **out);
wh_status wh_pow(wh_tensor *a, wh_tensor *b, wh_tensor **out);
/* x*scale + shift with scalars, and x^p with a scalar exponent. */
wh_status wh_affine(wh_tensor *x, double scale, double shift, wh_tensor **out);
wh_status wh_pow_scalar(wh_tensor *x, double p, wh_tensor **out);
/* scalar - x, scalar / x  (rsub, rdiv for Lua's 2 - t and 2 / t) */
wh_status wh_rsub_scalar(wh_tensor *x, double s, wh_tensor **out);
wh_status wh_rdiv_scalar(wh_tensor *x, double s, wh_tensor **out);

typedef enum { WH_UN_NEG, WH_UN_EXP, WH_UN_LOG, WH_UN_SQRT, WH_UN_ABS, WH_UN_RELU,
               WH_UN_SIGMOID, WH_UN_TANH, WH_UN_SQUARE, WH_UN_SIN, WH_UN_COS } wh_unary_op;
wh_status wh_unary(wh_unary_op op, wh_tensor *x, wh_tensor **out);
wh_status wh_leaky_relu(wh_tensor *x, double slope, wh_tensor **out);
/* Clamps to [lo, hi]; use -INFINITY/INFINITY for one-sided clamps.  The
 * gradient is 1 inside the range (bounds included) and 0 outside. */
wh_status wh_clamp(wh_tensor *x, double lo, double hi, wh_tensor **out);

/* In-place updates for optimizers (no autograd): */
wh_status wh_add_(wh_tensor *x, wh_tensor *y, double alpha);            /* x += alpha*y */
wh_status wh_mul_(wh_tensor *x, wh_tensor *y);                          /* x *= y */
wh_status wh_affine_(wh_tensor *x, double scale, double shift);         /* x = x*scale+shift */
wh_status wh_addcmul_(wh_tensor *x, wh_tensor *a, wh_tensor *b, double v);   /* x += v*a*b */
wh_status wh_addcdiv_(wh_tensor *x, wh_tensor *a, wh_tensor *b, double v);   /* x += v*a/b */
wh_status wh_unary_(wh_unary_op op, wh_tensor *x);
wh_status wh_clamp_(wh_tensor *x, double lo, double hi);
wh_status wh_copy_(wh_tensor *x, wh_tensor *src);                      /* broadcasting copy */
wh_status wh_fill_(wh_tensor *x, double value);

/* ---- reductions (ops_reduce.c) -----------------------------------------------
 * dims: ndims dimension indices (negative allowed); ndims == 0 reduces all. */
wh_status wh_sum(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out);
wh_status wh_mean(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out);
/* Max over dims; the gradient goes to the (first) arg max. */
wh_status wh_max(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out);
/* The (first) arg max as float64, 0-based: along one dim (ndims == 1) or the
 * flat row-major index over all elements (ndims == 0).  No gradient. */
wh_status wh_argmax(wh_tensor *x, int ndims, const int *dims, bool keepdim, wh_tensor **out);
wh_status wh_softmax(wh_tensor *x, int dim, wh_tensor **out);
wh_status wh_log_softmax(wh_tensor *x, int dim, wh_tensor **out);
/* Sum of squares of all elements, as a double (no autograd; norm clipping). */
wh_status wh_sum_squares(wh_tensor *x, double *result);

/* ---- linear algebra (ops_linalg.c) -------------------------------------------
 * (m,k)@(k,n), batched (b,m,k)@(b,k,n), and vector cases, via BLAS. */
wh_status wh_matmul(wh_tensor *a, wh_tensor *b, wh_tensor **out);

/* ---- convolution (ops_conv.c) --------------------------------------------------
 * x (N,C,H,W), weight (Cout,Cin,KH,KW), bias (Cout) or NULL.  `act` fuses a
 * ReLU or sigmoid into the output (the gradient accounts for it). */
typedef struct {
    int stride[2], padding[2], dilation[2], output_padding[2];
    int activation; /* wh_activation from kernels/conv2d.h: 0 none, 1 relu, 2 sigmoid */
} wh_conv_params;
void wh_conv_params_default(wh_conv_params *p);
wh_status wh_conv2d(wh_tensor *x, wh_tensor *weight, wh_tensor *bias, const wh_conv_params *p,
                    wh_tensor **out);
/* weight (Cin,Cout,KH,KW) as in PyTorch. */
wh_status wh_conv_transpose2d(wh_tensor *x, wh_tensor *weight, wh_tensor *bias,
                              const wh_conv_params *p, wh_tensor **out);

/* ---- pooling, resampling, normalisation (ops_nn.c) ---------------------------- */
typedef struct {
    int kernel[2], stride[2], padding[2];
    bool ceil_mode;
    bool count_include_pad; /* avg_pool only */
} wh_pool_params;
wh_status wh_max_pool2d(wh_tensor *x, const wh_pool_params *p, wh_tensor **out);
wh_status wh_avg_pool2d(wh_tensor *x, const wh_pool_params *p, wh_tensor **out);

typedef enum { WH_UPSAMPLE_NEAREST = 0, WH_UPSAMPLE_BILINEAR = 1 } wh_upsample_mode;
/* To (out_h, out_w); bilinear with align_corners false unless set (PyTorch's
 * and Keras' default: half-pixel centres). */
wh_status wh_upsample2d(wh_tensor *x, int64_t out_h, int64_t out_w, wh_upsample_mode mode,
                        bool align_corners, wh_tensor **out);

/* Batch norm over (N,C,H,W) or (N,C).  In training, uses batch statistics
 * and updates running_mean/var in place (momentum as in PyTorch: new =
 * (1-m)*old + m*batch, unbiased variance for the running estimate);
 * in eval, uses the running statistics.  weight/bias/running_* may be NULL. */
wh_status wh_batch_norm(wh_tensor *x, wh_tensor *weight, wh_tensor *bias,
                        wh_tensor *running_mean, wh_tensor *running_var, bool training,
                        double momentum, double eps, wh_tensor **out);
/* Inverted dropout with the global seeded generator; identity when not
 * training or p == 0. */
wh_status wh_dropout(wh_tensor *x, double p, bool training, wh_tensor **out);

/* ---- losses (ops_loss.c) --------------------------------------------------------
 * Pixel losses: pred and target of the same shape; weight (may be NULL)
 * broadcastable to it.  reduction "mean" divides the weighted sum by the
 * number of elements (Keras' sample-weight convention), "sum" does not,
 * "none" returns the per-element loss. */
typedef enum { WH_REDUCE_MEAN = 0, WH_REDUCE_SUM = 1, WH_REDUCE_NONE = 2 } wh_reduction;
wh_status wh_mse_loss(wh_tensor *pred, wh_tensor *target, wh_tensor *weight, wh_reduction r,
                      wh_tensor **out);
wh_status wh_l1_loss(wh_tensor *pred, wh_tensor *target, wh_tensor *weight, wh_reduction r,
                     wh_tensor **out);
/* Keras' binary cross-entropy on probabilities: pred clipped to
 * [eps, 1-eps] with eps = 1e-7 (no gradient outside the clip range). */
wh_status wh_bce_loss(wh_tensor *pred, wh_tensor *target, wh_tensor *weight, wh_reduction r,
                      wh_tensor **out);
/* logits (N,C) or (N,C,H,W), target class indices (N) or (N,H,W) as any
 * dtype holding integers; optional per-class weight (C).  Mean is over the
 * non-ignored elements weighted by class weights (PyTorch semantics). */
wh_status wh_cross_entropy(wh_tensor *logits, wh_tensor *target, wh_tensor *class_weight,
                           int64_t ignore_index, wh_reduction r, wh_tensor **out);
/* For the Lua binding: class ids (and ignore_index) counted from `base`
 * (1 for Torch7's ids), and positions in messages 1-based, so errors name
 * what the user wrote. */
wh_status wh_cross_entropy_based(wh_tensor *logits, wh_tensor *target, wh_tensor *class_weight,
                                 int64_t ignore_index, int64_t base, wh_reduction r,
                                 wh_tensor **out);

/* ---- devices (ops_device.c) ---------------------------------------------------------
 * A copy of x on the device of `alloc` (a new reference to x when it is
 * already there); differentiable, the gradient goes back to x's device. */
wh_status wh_to_device(wh_tensor *x, wh_allocator *alloc, wh_tensor **out);

/* ---- fused optimizer updates (ops_optim.c) -----------------------------------------
 * One pass over a parameter, its gradient and its state per step instead of
 * a chain of in-place ops, with Keras' formulas (kernels/optim_math.h).  No
 * autograd.  p and the state tensors: contiguous, p's shape, dtype and
 * device (optional ones may be NULL); g: p's shape, dtype and device.
 * weight_decay is decoupled (p -= lr*wd*p first), as in Keras. */
typedef struct {
    double lr, momentum, weight_decay;
    bool nesterov;
} wh_sgd_options;
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t step; /* 1 for the first update */
} wh_adam_options;
typedef struct {
    double lr, rho, eps, momentum, weight_decay;
} wh_rmsprop_options;
/* m: the momentum buffer (needed when momentum != 0). */
wh_status wh_sgd_update_(wh_tensor *p, wh_tensor *g, wh_tensor *m, const wh_sgd_options *o);
/* m, v: first and second moments; vhat: the running max of v (amsgrad) or NULL. */
wh_status wh_adam_update_(wh_tensor *p, wh_tensor *g, wh_tensor *m, wh_tensor *v,
                          wh_tensor *vhat, const wh_adam_options *o);
/* v: mean square; avg: mean gradient (centered) or NULL; mom: the momentum
 * buffer (needed when momentum > 0). */
wh_status wh_rmsprop_update_(wh_tensor *p, wh_tensor *g, wh_tensor *v, wh_tensor *avg,
                             wh_tensor *mom, const wh_rmsprop_options *o);

#endif
