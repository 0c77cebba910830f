/* Batch norm on cuDNN (spatial mode: statistics per channel over N, H, W;
 * a 2-d (N, C) input is viewed as (N, C, 1, 1)).
 *
 * Training runs cudnnBatchNormalizationForwardTraining, which also updates
 * the running statistics with PyTorch's momentum rule and the unbiased
 * variance, and saves the batch mean and inverse standard deviation that
 * cudnnBatchNormalizationBackward takes.  Evaluation uses the running
 * statistics (cudnnBatchNormalizationForwardInference); its gradient is
 * plain per-channel arithmetic (custom kernels in nn.cu / reduce.cu),
 * since cuDNN's backward assumes batch statistics.  A missing weight or
 * bias is a temporary of ones or zeros, and strided parameter vectors are
 * made contiguous (running statistics are written back). */
#include <string.h>

#include "cuda_internal.h"

typedef union {
    float f;
    double d;
} scalar;

static const void *scal(wh_dtype dt, scalar *s, double v) {
    if (dt == WH_FLOAT64) s->d = v;
    else s->f = (float)v;
    return s;
}

typedef struct {
    cudnnTensorDescriptor_t x, bn;
} bn_descs;

static void descs_free(bn_descs *d) {
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->bn) cudnnDestroyTensorDescriptor(d->bn);
}

static wh_status descs_make(const wh_tensor *x, bn_descs *d) {
    memset(d, 0, sizeof *d);
    int n = (int)x->shape[0], c = (int)x->shape[1];
    int h = x->ndim == 4 ? (int)x->shape[2] : 1, w = x->ndim == 4 ? (int)x->shape[3] : 1;
    cudnnDataType_t t = x->dtype == WH_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    WHC_CUDNN(cudnnCreateTensorDescriptor(&d->x));
    WHC_CUDNN(cudnnCreateTensorDescriptor(&d->bn));
    WHC_CUDNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, t, n, c, h, w));
    WHC_CUDNN(cudnnDeriveBNTensorDescriptor(d->bn, d->x, CUDNN_BATCHNORM_SPATIAL));
    return WH_OK;
}

/* Up to six temporaries per call, released together. */
typedef struct {
    wh_tensor *t[6];
    int n;
} temps;

static void temps_free(temps *tp) {
    for (int i = 0; i < tp->n; i++) whc_core->tensor_release(tp->t[i]);
    tp->n = 0;
}

/* A contiguous (C) vector of x's dtype on x's device: v itself when it is
 * already one, a contiguous copy of it, or `fill` everywhere when v is NULL. */
static wh_status channel_vec(const wh_tensor *x, const wh_tensor *v, double fill, temps *tp,
                             const wh_tensor **out) {
    if (v && whc_core->is_contiguous(v)) {
        *out = v;
        return WH_OK;
    }
    wh_tensor *t = NULL;
    if (v) {
        WH_TRY(whc_core->contiguous((wh_tensor *)v, true, &t));
    } else {
        int64_t c = x->shape[1];
        WH_TRY(whc_empty_like(x, x->dtype, 1, &c, &t));
        wh_status st = whc_fill(t, fill);
        if (st != WH_OK) {
            whc_core->tensor_release(t);
            return st;
        }
    }
    tp->t[tp->n++] = t;
    *out = t;
    return WH_OK;
}

wh_status whc_batch_norm(const wh_tensor *x, const wh_tensor *weight, const wh_tensor *bias,
                         wh_tensor *running_mean, wh_tensor *running_var, bool training,
                         double momentum, double eps, wh_tensor *y, wh_tensor *save_mean,
                         wh_tensor *save_invstd) {
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    bn_descs ds;
    temps tp = {{0}, 0};
    const wh_tensor *w = NULL, *b = NULL, *rm = NULL, *rv = NULL;
    wh_status st = descs_make(x, &ds);
    if (st == WH_OK) st = channel_vec(x, weight, 1.0, &tp, &w);
    if (st == WH_OK) st = channel_vec(x, bias, 0.0, &tp, &b);
    if (st == WH_OK && running_mean) st = channel_vec(x, running_mean, 0, &tp, &rm);
    if (st == WH_OK && running_var) st = channel_vec(x, running_var, 0, &tp, &rv);
    scalar one, zero;
    const void *p1 = scal(x->dtype, &one, 1), *p0 = scal(x->dtype, &zero, 0);
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    const char *call = NULL;
    if (st == WH_OK && training) {
        call = "cudnnBatchNormalizationForwardTraining";
        s = cudnnBatchNormalizationForwardTraining(
            d->dnn, CUDNN_BATCHNORM_SPATIAL, p1, p0, ds.x, whc_data(x), ds.x, whc_data(y), ds.bn,
            whc_data(w), whc_data(b), momentum, rm ? whc_data(rm) : NULL,
            rv ? whc_data(rv) : NULL, eps, whc_data(save_mean), whc_data(save_invstd));
    } else if (st == WH_OK) {
        call = "cudnnBatchNormalizationForwardInference";
        s = cudnnBatchNormalizationForwardInference(d->dnn, CUDNN_BATCHNORM_SPATIAL, p1, p0, ds.x,
                                                    whc_data(x), ds.x, whc_data(y), ds.bn,
                                                    whc_data(w), whc_data(b), whc_data(rm),
                                                    whc_data(rv), eps);
        if (s == CUDNN_STATUS_SUCCESS) st = whc_copy(save_mean, rm);
        if (s == CUDNN_STATUS_SUCCESS && st == WH_OK) st = whc_bn_invstd(rv, eps, save_invstd);
    }
    if (st == WH_OK && s != CUDNN_STATUS_SUCCESS) st = whc_cudnn_error(call, s);
    /* strided running statistics were updated in a copy: write it back */
    if (st == WH_OK && training && rm && rm != running_mean) st = whc_copy(running_mean, rm);
    if (st == WH_OK && training && rv && rv != running_var) st = whc_copy(running_var, rv);
    temps_free(&tp);
    descs_free(&ds);
    return st;
}

/* Evaluation-mode gradients: the statistics are constants. */
static wh_status eval_grad(whc_device *d, const wh_tensor *x, const wh_tensor *weight,
                           const wh_tensor *save_mean, const wh_tensor *save_invstd,
                           const wh_tensor *g, wh_tensor *gx, wh_tensor *gw, wh_tensor *gb) {
    if (gx) WH_TRY(whc_bn_eval_grad_input(g, weight, save_invstd, gx));
    if (!gw && !gb) return WH_OK;
    int64_t c = x->shape[1];
    size_t bytes = sizeof(double) * 2 * (size_t)c;
    double *sums;
    WH_TRY(whc_malloc(d->index, bytes, (void **)&sums));
    wh_status st = whc_channel_sums(x, g, save_mean, save_invstd, sums, sums + c);
    if (st == WH_OK) st = whc_bn_param_grads(sums, sums + c, gw, gb);
    whc_free(d->index, sums, bytes);
    return st;
}

wh_status whc_batch_norm_grad(const wh_tensor *x, const wh_tensor *weight,
                              const wh_tensor *save_mean, const wh_tensor *save_invstd,
                              bool training, double eps, const wh_tensor *g, wh_tensor *gx,
                              wh_tensor *gw, wh_tensor *gb) {
    whc_device *d;
    WH_TRY(whc_device_of(x, &d));
    if (!training) return eval_grad(d, x, weight, save_mean, save_invstd, g, gx, gw, gb);
    bn_descs ds;
    temps tp = {{0}, 0};
    const wh_tensor *w = NULL;
    wh_status st = descs_make(x, &ds);
    if (st == WH_OK) st = channel_vec(x, weight, 1.0, &tp, &w);
    /* cuDNN writes all three gradients: unneeded ones go to temporaries */
    int64_t c = x->shape[1];
    wh_tensor *dx = gx, *dw = gw, *db = gb;
    if (st == WH_OK && !dx && (st = whc_empty_like(x, x->dtype, x->ndim, x->shape, &dx)) == WH_OK)
        tp.t[tp.n++] = dx;
    if (st == WH_OK && !dw && (st = whc_empty_like(x, x->dtype, 1, &c, &dw)) == WH_OK)
        tp.t[tp.n++] = dw;
    if (st == WH_OK && !db && (st = whc_empty_like(x, x->dtype, 1, &c, &db)) == WH_OK)
        tp.t[tp.n++] = db;
    scalar one, zero;
    const void *p1 = scal(x->dtype, &one, 1), *p0 = scal(x->dtype, &zero, 0);
    if (st == WH_OK) {
        cudnnStatus_t s = cudnnBatchNormalizationBackward(
            d->dnn, CUDNN_BATCHNORM_SPATIAL, p1, p0, p1, p0, ds.x, whc_data(x), ds.x, whc_data(g),
            ds.x, whc_data(dx), ds.bn, whc_data(w), whc_data(dw), whc_data(db), eps,
            whc_data(save_mean), whc_data(save_invstd));
        if (s != CUDNN_STATUS_SUCCESS) st = whc_cudnn_error("cudnnBatchNormalizationBackward", s);
    }
    temps_free(&tp);
    descs_free(&ds);
    return st;
}
