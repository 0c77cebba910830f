/* conv2d and conv_transpose2d on cuDNN (its legacy convolution API, present
 * and deprecated in cuDNN 9), with the fused bias and activation.
 *
 * Both ops are described by one "underlying" convolution with input A,
 * filter W and output B:
 *   conv2d            A = x, B = y, W = weight (C_out, C_in, KH, KW)
 *   conv_transpose2d  A = y, B = x, W = weight (C_in, C_out, KH, KW) as is
 * so conv2d's forward is cuDNN's forward, conv_transpose2d's forward is
 * cuDNN's backward-data, and their gradients are the other two directions.
 *
 * Each geometry (device, dtype, A and W dims, padding, stride, dilation and
 * the settings) gets one cache entry holding its descriptors and, per
 * direction, the algorithm chosen on first use: by cuDNN's heuristics, or
 * by timing them all (cudnnFind*Ex) when whorl.cuda.set_benchmark(true).
 * With the deterministic setting (the default) only algorithms cuDNN
 * reports as reproducible are taken; without allow_tf32 (the default)
 * float32 runs on FMA kernels only, so results match the CPU to 1e-4.  Every
 * call shares the device's one workspace. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels/conv2d.h"

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER, NDIR };

typedef struct {
    int device, dtype;
    int a[4], w[4], pad[2], stride[2], dil[2];
    int benchmark, deterministic, tf32;
} conv_key;

typedef struct conv_entry {
    conv_key key;
    cudnnTensorDescriptor_t a, b;
    cudnnTensorDescriptor_t bias_a, bias_b; /* (1, C, 1, 1) with A's and B's channels */
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnActivationDescriptor_t relu, sigmoid;
    int b_dims[4];
    bool chosen[NDIR];
    int algo[NDIR];
    cudnnMathType_t math[NDIR];
    size_t workspace[NDIR];
    struct conv_entry *next;
} conv_entry;

static conv_entry *cache;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static cudnnDataType_t dnn_type(wh_dtype dt) {
    return dt == WH_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
}

static wh_status entry_init(conv_entry *e) {
    const conv_key *k = &e->key;
    cudnnDataType_t t = dnn_type((wh_dtype)k->dtype);
    WHC_CUDNN(cudnnCreateTensorDescriptor(&e->a));
    WHC_CUDNN(cudnnCreateTensorDescriptor(&e->b));
    WHC_CUDNN(cudnnCreateTensorDescriptor(&e->bias_a));
    WHC_CUDNN(cudnnCreateTensorDescriptor(&e->bias_b));
    WHC_CUDNN(cudnnCreateActivationDescriptor(&e->relu));
    WHC_CUDNN(cudnnCreateActivationDescriptor(&e->sigmoid));
    WHC_CUDNN(cudnnSetActivationDescriptor(e->relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN,
                                           0.0));
    WHC_CUDNN(cudnnSetActivationDescriptor(e->sigmoid, CUDNN_ACTIVATION_SIGMOID,
                                           CUDNN_PROPAGATE_NAN, 0.0));
    WHC_CUDNN(cudnnCreateFilterDescriptor(&e->w));
    WHC_CUDNN(cudnnCreateConvolutionDescriptor(&e->conv));
    WHC_CUDNN(cudnnSetTensor4dDescriptor(e->a, CUDNN_TENSOR_NCHW, t, k->a[0], k->a[1], k->a[2],
                                         k->a[3]));
    WHC_CUDNN(cudnnSetFilter4dDescriptor(e->w, t, CUDNN_TENSOR_NCHW, k->w[0], k->w[1], k->w[2],
                                         k->w[3]));
    WHC_CUDNN(cudnnSetConvolution2dDescriptor(e->conv, k->pad[0], k->pad[1], k->stride[0],
                                              k->stride[1], k->dil[0], k->dil[1],
                                              CUDNN_CROSS_CORRELATION, t));
    WHC_CUDNN(cudnnSetConvolutionMathType(e->conv, k->tf32 || t == CUDNN_DATA_DOUBLE
                                                       ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    WHC_CUDNN(cudnnGetConvolution2dForwardOutputDim(e->conv, e->a, e->w, &e->b_dims[0],
                                                    &e->b_dims[1], &e->b_dims[2], &e->b_dims[3]));
    WHC_CUDNN(cudnnSetTensor4dDescriptor(e->b, CUDNN_TENSOR_NCHW, t, e->b_dims[0], e->b_dims[1],
                                         e->b_dims[2], e->b_dims[3]));
    WHC_CUDNN(cudnnSetTensor4dDescriptor(e->bias_a, CUDNN_TENSOR_NCHW, t, 1, k->a[1], 1, 1));
    WHC_CUDNN(cudnnSetTensor4dDescriptor(e->bias_b, CUDNN_TENSOR_NCHW, t, 1, e->b_dims[1], 1, 1));
    return WH_OK;
}

/* The entry of a geometry, created on first use (never freed: a model has
 * a handful of geometries, and cuDNN descriptors are small). */
static wh_status entry_get(const conv_key *key, conv_entry **out) {
    pthread_mutex_lock(&cache_lock);
    conv_entry *e = cache;
    while (e && memcmp(&e->key, key, sizeof *key) != 0) e = e->next;
    wh_status st = WH_OK;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) st = whc_fail(WH_ERR_MEMORY, "conv2d: out of memory");
        if (st == WH_OK) {
            e->key = *key;
            st = entry_init(e);
        }
        if (st == WH_OK) {
            e->next = cache;
            cache = e;
        } else {
            free(e);
            e = NULL;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    *out = e;
    return st;
}

/* ---- choosing algorithms -------------------------------------------------------------------- */

typedef struct {
    int algo;
    cudnnStatus_t status;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} candidate;

#define COPY_PERF(dst, src, n)                                                              \
    for (int i_ = 0; i_ < (n); i_++) {                                                     \
        (dst)[i_].algo = (int)(src)[i_].algo;                                              \
        (dst)[i_].status = (src)[i_].status;                                               \
        (dst)[i_].memory = (src)[i_].memory;                                               \
        (dst)[i_].determinism = (src)[i_].determinism;                                     \
        (dst)[i_].math = (src)[i_].mathType;                                               \
    }

/* Workspace offered to cudnnFind*: what is free, up to 1 GiB. */
static size_t find_workspace_bytes(void) {
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
        cudaGetLastError();
        return 64u << 20;
    }
    size_t cap = (size_t)1 << 30;
    return free_b / 2 < cap ? free_b / 2 : cap;
}

enum { MAX_ALGOS = 16 };

/* Lists the candidates of a direction, best first: cuDNN's timing when
 * benchmarking (which runs every algorithm on the real buffers, outputs
 * included), else its heuristics. */
static wh_status list_candidates(whc_device *d, conv_entry *e, int dir, const void *a, const void *w,
                                 void *b_or_dw_out, const void *b_in, void *a_out, candidate *c,
                                 int *n) {
    int got = 0;
    if (!e->key.benchmark) {
        if (dir == DIR_FWD) {
            cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
            WHC_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(d->dnn, e->a, e->w, e->conv, e->b,
                                                             MAX_ALGOS, &got, perf));
            COPY_PERF(c, perf, got);
        } else if (dir == DIR_BWD_DATA) {
            cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
            WHC_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(d->dnn, e->w, e->b, e->conv, e->a,
                                                                  MAX_ALGOS, &got, perf));
            COPY_PERF(c, perf, got);
        } else {
            cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
            WHC_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(d->dnn, e->a, e->b, e->conv,
                                                                    e->w, MAX_ALGOS, &got, perf));
            COPY_PERF(c, perf, got);
        }
        *n = got;
        return WH_OK;
    }
    size_t ws_bytes = find_workspace_bytes();
    void *ws;
    WH_TRY(whc_workspace(d, ws_bytes, &ws));
    if (dir == DIR_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
        WHC_CUDNN(cudnnFindConvolutionForwardAlgorithmEx(d->dnn, e->a, a, e->w, w, e->conv, e->b,
                                                         b_or_dw_out, MAX_ALGOS, &got, perf, ws,
                                                         ws_bytes));
        COPY_PERF(c, perf, got);
    } else if (dir == DIR_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
        WHC_CUDNN(cudnnFindConvolutionBackwardDataAlgorithmEx(d->dnn, e->w, w, e->b, b_in, e->conv,
                                                              e->a, a_out, MAX_ALGOS, &got, perf,
                                                              ws, ws_bytes));
        COPY_PERF(c, perf, got);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
        WHC_CUDNN(cudnnFindConvolutionBackwardFilterAlgorithmEx(d->dnn, e->a, a, e->b, b_in,
                                                                e->conv, e->w, b_or_dw_out,
                                                                MAX_ALGOS, &got, perf, ws,
                                                                ws_bytes));
        COPY_PERF(c, perf, got);
    }
    *n = got;
    return WH_OK;
}

static wh_status workspace_size(whc_device *d, conv_entry *e, int dir, int algo, size_t *out) {
    if (dir == DIR_FWD)
        WHC_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(d->dnn, e->a, e->w, e->conv, e->b,
                                                          (cudnnConvolutionFwdAlgo_t)algo, out));
    else if (dir == DIR_BWD_DATA)
        WHC_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(
            d->dnn, e->w, e->b, e->conv, e->a, (cudnnConvolutionBwdDataAlgo_t)algo, out));
    else
        WHC_CUDNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            d->dnn, e->a, e->b, e->conv, e->w, (cudnnConvolutionBwdFilterAlgo_t)algo, out));
    return WH_OK;
}

static const char *dir_name(int dir) {
    return dir == DIR_FWD ? "forward" : dir == DIR_BWD_DATA ? "backward data" : "backward filter";
}

/* Picks the direction's algorithm once: the first candidate that ran (or
 * would run), is reproducible when asked, keeps float32 off tensor cores
 * (TF32) unless allowed, and whose workspace can be allocated.  The TF32
 * wish, then the reproducibility one, are dropped if no candidate meets
 * them.  A float32 candidate of the default math type runs with FMA math
 * when TF32 is not allowed (the default type permits TF32 on Ampere+). */
static wh_status choose(whc_device *d, conv_entry *e, int dir, const void *a, const void *w,
                        void *b_or_dw_out, const void *b_in, void *a_out) {
    if (e->chosen[dir]) return WH_OK;
    candidate c[MAX_ALGOS];
    int n = 0;
    WH_TRY(list_candidates(d, e, dir, a, w, b_or_dw_out, b_in, a_out, c, &n));
    bool fp32_exact = e->key.dtype == WH_FLOAT32 && !e->key.tf32;
    for (int level = 0; level < 3; level++) {
        for (int i = 0; i < n; i++) {
            if (c[i].status != CUDNN_STATUS_SUCCESS) continue;
            if (level < 2 && e->key.deterministic && c[i].determinism != CUDNN_DETERMINISTIC)
                continue;
            bool plain = c[i].math == CUDNN_FMA_MATH || c[i].math == CUDNN_DEFAULT_MATH;
            if (level < 1 && fp32_exact && !plain) continue;
            size_t bytes = 0;
            void *ws;
            if (workspace_size(d, e, dir, c[i].algo, &bytes) != WH_OK) continue;
            if (bytes && whc_workspace(d, bytes, &ws) != WH_OK) continue;
            e->algo[dir] = c[i].algo;
            e->math[dir] = fp32_exact && plain ? CUDNN_FMA_MATH : c[i].math;
            e->workspace[dir] = bytes;
            e->chosen[dir] = true;
            return WH_OK;
        }
    }
    return whc_fail(WH_ERR_DEVICE, "conv2d: cuDNN offers no usable %s algorithm for input "
                    "[%d, %d, %d, %d] and filter [%d, %d, %d, %d] (%d candidates)", dir_name(dir),
                    e->key.a[0], e->key.a[1], e->key.a[2], e->key.a[3], e->key.w[0], e->key.w[1],
                    e->key.w[2], e->key.w[3], n);
}

/* ---- running the three directions -------------------------------------------------------------- */

typedef union {
    float f;
    double d;
} scalar;

static const void *scal(wh_dtype dt, scalar *s, double v) {
    if (dt == WH_FLOAT64) s->d = v;
    else s->f = (float)v;
    return s;
}

static wh_status run(whc_device *d, conv_entry *e, int dir, const void *a, const void *w,
                     const void *b, void *out) {
    wh_dtype dt = (wh_dtype)e->key.dtype;
    scalar one, zero;
    const void *p1 = scal(dt, &one, 1), *p0 = scal(dt, &zero, 0);
    /* benchmarking writes the output, which is computed again below */
    WH_TRY(choose(d, e, dir, a, w, out, b, out));
    void *ws = NULL;
    if (e->workspace[dir]) WH_TRY(whc_workspace(d, e->workspace[dir], &ws));
    WHC_CUDNN(cudnnSetConvolutionMathType(e->conv, e->math[dir]));
    if (dir == DIR_FWD)
        WHC_CUDNN(cudnnConvolutionForward(d->dnn, p1, e->a, a, e->w, w, e->conv,
                                          (cudnnConvolutionFwdAlgo_t)e->algo[dir], ws,
                                          e->workspace[dir], p0, e->b, out));
    else if (dir == DIR_BWD_DATA)
        WHC_CUDNN(cudnnConvolutionBackwardData(d->dnn, p1, e->w, w, e->b, b, e->conv,
                                               (cudnnConvolutionBwdDataAlgo_t)e->algo[dir], ws,
                                               e->workspace[dir], p0, e->a, out));
    else
        WHC_CUDNN(cudnnConvolutionBackwardFilter(d->dnn, p1, e->a, a, e->b, b, e->conv,
                                                 (cudnnConvolutionBwdFilterAlgo_t)e->algo[dir], ws,
                                                 e->workspace[dir], p0, e->w, out));
    return WH_OK;
}

/* The geometry of an op: A is conv2d's x or conv_transpose2d's y. */
static wh_status geometry(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                          const wh_tensor *w, const int64_t *y_shape, conv_entry **out) {
    conv_key k;
    memset(&k, 0, sizeof k);
    k.device = whc_index_of(x);
    k.dtype = x->dtype;
    const int64_t *a = transposed ? y_shape : x->shape;
    for (int i = 0; i < 4; i++) {
        k.a[i] = (int)a[i];
        k.w[i] = (int)w->shape[i];
    }
    for (int i = 0; i < 2; i++) {
        k.pad[i] = p->padding[i];
        k.stride[i] = p->stride[i];
        k.dil[i] = p->dilation[i];
        if (transposed && p->output_padding[i] >= p->stride[i])
            return whc_fail(WH_ERR_ARG, "conv_transpose2d: output_padding (%d, %d) at least the "
                            "stride (%d, %d) is not supported on CUDA", p->output_padding[0],
                            p->output_padding[1], p->stride[0], p->stride[1]);
    }
    k.benchmark = whc_benchmark;
    k.deterministic = whc_deterministic;
    k.tf32 = whc_allow_tf32;
    WH_TRY(entry_get(&k, out));
    const int64_t *b = transposed ? x->shape : y_shape;
    for (int i = 0; i < 4; i++)
        if ((*out)->b_dims[i] != (int)b[i])
            return whc_fail(WH_ERR_SHAPE, "conv2d: cuDNN computes output dims [%d, %d, %d, %d], "
                            "whorl expected [%lld, %lld, %lld, %lld]", (*out)->b_dims[0],
                            (*out)->b_dims[1], (*out)->b_dims[2], (*out)->b_dims[3],
                            (long long)b[0], (long long)b[1], (long long)b[2], (long long)b[3]);
    return WH_OK;
}

/* The descriptor of a fused activation (relu or sigmoid). */
static cudnnActivationDescriptor_t activation(const conv_entry *e, int act) {
    return act == WH_ACT_RELU ? e->relu : e->sigmoid;
}

wh_status whc_conv2d(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                     const wh_tensor *w, const wh_tensor *b, wh_tensor *y) {
    if (whc_numel(y) == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    conv_entry *e;
    WH_TRY(geometry(p, transposed, x, w, y->shape, &e));
    if (transposed) WH_TRY(run(d, e, DIR_BWD_DATA, NULL, whc_data(w), whc_data(x), whc_data(y)));
    else WH_TRY(run(d, e, DIR_FWD, whc_data(x), whc_data(w), NULL, whc_data(y)));
    scalar one, zero;
    const void *p1 = scal(x->dtype, &one, 1), *p0 = scal(x->dtype, &zero, 0);
    /* y is B for conv2d, A for the transposed op; the bias has its channels */
    cudnnTensorDescriptor_t yd = transposed ? e->a : e->b;
    cudnnTensorDescriptor_t bd = transposed ? e->bias_a : e->bias_b;
    if (b) WHC_CUDNN(cudnnAddTensor(d->dnn, p1, bd, whc_data(b), p1, yd, whc_data(y)));
    if (p->activation != WH_ACT_NONE)
        WHC_CUDNN(cudnnActivationForward(d->dnn, activation(e, p->activation), p1, yd,
                                         whc_data(y), p0, yd, whc_data(y)));
    return WH_OK;
}

wh_status whc_conv2d_grad(const wh_conv_params *p, bool transposed, const wh_tensor *x,
                          const wh_tensor *w, const wh_tensor *y, const wh_tensor *g,
                          wh_tensor *gx, wh_tensor *gw, wh_tensor *gb) {
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    conv_entry *e;
    WH_TRY(geometry(p, transposed, x, w, g->shape, &e));
    cudnnTensorDescriptor_t yd = transposed ? e->a : e->b;
    cudnnTensorDescriptor_t bd = transposed ? e->bias_a : e->bias_b;
    wh_dtype dt = x->dtype;
    scalar one, zero;
    const void *p1 = scal(dt, &one, 1), *p0 = scal(dt, &zero, 0);
    /* The gradient before the fused activation, in a temporary. */
    const void *gpre = whc_data(g);
    void *tmp = NULL;
    size_t tmp_bytes = (size_t)whc_numel(g) * whc_dtype_size(dt);
    wh_status st = WH_OK;
    if (p->activation != WH_ACT_NONE && tmp_bytes) {
        WH_TRY(whc_malloc(d->index, tmp_bytes, &tmp));
        /* relu's and sigmoid's derivatives depend on y only, so y stands in for x */
        cudnnStatus_t s = cudnnActivationBackward(d->dnn, activation(e, p->activation), p1, yd,
                                                  whc_data(y), yd, whc_data(g), yd, whc_data(y),
                                                  p0, yd, tmp);
        if (s != CUDNN_STATUS_SUCCESS) st = whc_cudnn_error("cudnnActivationBackward", s);
        gpre = tmp;
    }
    if (st == WH_OK && gx && whc_numel(gx)) {
        if (transposed) st = run(d, e, DIR_FWD, gpre, whc_data(w), NULL, whc_data(gx));
        else st = run(d, e, DIR_BWD_DATA, NULL, whc_data(w), gpre, whc_data(gx));
    }
    if (st == WH_OK && gw) {
        if (transposed) st = run(d, e, DIR_BWD_FILTER, gpre, NULL, whc_data(x), whc_data(gw));
        else st = run(d, e, DIR_BWD_FILTER, whc_data(x), NULL, gpre, whc_data(gw));
    }
    if (st == WH_OK && gb) {
        cudnnStatus_t s = cudnnConvolutionBackwardBias(d->dnn, p1, yd, gpre, p0, bd, whc_data(gb));
        if (s != CUDNN_STATUS_SUCCESS) st = whc_cudnn_error("cudnnConvolutionBackwardBias", s);
    }
    if (tmp) whc_free(d->index, tmp, tmp_bytes);
    return st;
}
