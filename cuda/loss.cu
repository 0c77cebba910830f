// Losses and fused optimizer updates.
//
// The pixel losses use the CPU's per-element formulas (nn_math.h) and sum
// in double with a fixed-order grid sum; their gradients read the upstream
// gradient of a reduced loss on the device, so a training step never waits
// for the loss value.  Cross-entropy works per position (N x S), its
// classes strided S apart, which neighbouring threads read together.  The
// optimizer updates are one thread per parameter element with the shared
// formulas of optim_math.h.
#include "kernels.cuh"
#include "kernels/xent_math.h"

__device__ inline double xent_lse(const float *z0, int64_t C, int64_t S) { return wh_xent_lse_f32(z0, C, S); }
__device__ inline double xent_lse(const double *z0, int64_t C, int64_t S) { return wh_xent_lse_f64(z0, C, S); }
__device__ inline float xent_grad(float z, double lse, double f, int t) { return wh_xent_grad_f32(z, lse, f, t); }
__device__ inline double xent_grad(double z, double lse, double f, int t) { return wh_xent_grad_f64(z, lse, f, t); }

// ---- pixel losses ---------------------------------------------------------------------------------

// Operands of the loop: 0 pred, 1 target, 2 weight (pred again when absent).
template <class T>
struct loss_term {
    int kind, has_w;
    wh_strided_loop l;
    const T *p, *t, *w;
    __device__ T operator()(int64_t i) const {
        int64_t o[3];
        loop_offsets(l, i, o);
        T v = loss_fwd(kind, p[o[0]], t[o[1]]);
        if (has_w) v *= w[o[2]];
        return v;
    }
};

template <class T>
struct loss_sum_term {
    loss_term<T> f;
    __device__ double operator()(int64_t i) const { return (double)f(i); }
};

template <class T>
__global__ void loss_elements_kernel(loss_term<T> f, T *out, int64_t n) {
    WHC_GRID_LOOP(i, n) out[i] = f(i);
}

template <class T>
static loss_term<T> make_loss_term(int kind, const wh_tensor *pred, const wh_tensor *target,
                                   const wh_tensor *weight) {
    loss_term<T> f;
    const wh_tensor *ops[3] = {pred, target, weight ? weight : pred};
    whc_loop_init(&f.l, pred->ndim, pred->shape, 3, ops);
    f.kind = kind;
    f.has_w = weight != NULL;
    f.p = (const T *)pred->storage->data;
    f.t = (const T *)target->storage->data;
    f.w = (const T *)ops[2]->storage->data;
    return f;
}

extern "C" wh_status whc_pixel_loss(int kind, int reduction, const wh_tensor *pred,
                                    const wh_tensor *target, const wh_tensor *weight,
                                    wh_tensor *out) {
    int64_t n = whc_numel(pred);
    whc_device *d;
    WH_TRY(whc_device_of(pred, &d));
    wh_status st = WH_OK;
    WHC_FLOAT_DISPATCH(pred->dtype,
        loss_term<T> f = make_loss_term<T>(kind, pred, target, weight);
        if (reduction == WH_REDUCE_NONE) {
            if (n) loss_elements_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
                f, (T *)whc_data(out), n);
        } else {
            double scale = reduction == WH_REDUCE_MEAN ? 1.0 / (double)n : 1.0;
            loss_sum_term<T> s = {f};
            st = whc_grid_sum<T>(d, s, n, scale, (T *)whc_data(out), (double *)NULL);
        });
    WH_TRY(st);
    WHC_LAUNCHED("pixel loss kernel");
    return WH_OK;
}

// g: element i (reduction none) or g[0] shared by all, divided by n for the mean.
template <class T>
__global__ void loss_grad_kernel(loss_term<T> f, int per_elem, double gdiv, const T *g, T *gp,
                                 T *gt, T *gw, int64_t n) {
    T shared = per_elem ? (T)0 : (T)((double)g[0] / gdiv);
    WHC_GRID_LOOP(i, n) {
        int64_t o[3];
        loop_offsets(f.l, i, o);
        T p = f.p[o[0]], t = f.t[o[1]];
        T gg = per_elem ? g[i] : shared;
        if (gw) gw[i] = gg * loss_fwd(f.kind, p, t);
        if (f.has_w) gg *= f.w[o[2]];
        if (gp) gp[i] = gg * loss_gp(f.kind, p, t);
        if (gt) gt[i] = gg * loss_gt(f.kind, p, t);
    }
}

extern "C" wh_status whc_pixel_loss_grad(int kind, int reduction, const wh_tensor *pred,
                                         const wh_tensor *target, const wh_tensor *weight,
                                         const wh_tensor *g, wh_tensor *gp, wh_tensor *gt,
                                         wh_tensor *gw_full) {
    int64_t n = whc_numel(pred);
    if (n == 0 || (!gp && !gt && !gw_full)) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(pred, &d));
    double gdiv = reduction == WH_REDUCE_MEAN ? (double)n : 1.0;
    WHC_FLOAT_DISPATCH(pred->dtype,
        loss_term<T> f = make_loss_term<T>(kind, pred, target, weight);
        loss_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            f, reduction == WH_REDUCE_NONE, gdiv, (const T *)whc_data(g),
            gp ? (T *)whc_data(gp) : (T *)NULL, gt ? (T *)whc_data(gt) : (T *)NULL,
            gw_full ? (T *)whc_data(gw_full) : (T *)NULL, n));
    WHC_LAUNCHED("loss_grad_kernel");
    return WH_OK;
}

// ---- cross-entropy -----------------------------------------------------------------------------------

// The class weight of class k (-1: ignored, weight 0).
template <class T>
__device__ inline double class_weight(const T *cw, int64_t cs, int64_t k) {
    return k < 0 ? 0.0 : cw ? (double)cw[k * cs] : 1.0;
}

// Per position e = b*S + s: the log-sum-exp over the C classes, and the
// loss, into out (reduction none) or terms (to be summed).
template <class T>
__global__ void ce_kernel(const T *z, const int64_t *cls, const T *cw, int64_t cs, int64_t N,
                          int64_t C, int64_t S, double *lse, T *out, double *terms) {
    WHC_GRID_LOOP(e, N * S) {
        const T *z0 = z + (e / S) * C * S + e % S;
        double l = xent_lse(z0, C, S);
        lse[e] = l;
        int64_t k = cls[e];
        double loss = k >= 0 ? -class_weight(cw, cs, k) * ((double)z0[k * S] - l) : 0.0;
        if (out) out[e] = (T)loss;
        else terms[e] = loss;
    }
}

struct term_reader {
    const double *terms;
    __device__ double operator()(int64_t i) const { return terms[i]; }
};

extern "C" wh_status whc_cross_entropy(const wh_tensor *z, const int64_t *cls, const wh_tensor *cw,
                                       int reduction, double weight_sum, double *lse,
                                       wh_tensor *out) {
    int64_t N = z->shape[0], C = z->shape[1], S = 1;
    for (int k = 2; k < z->ndim; k++) S *= z->shape[k];
    int64_t E = N * S;
    whc_device *d;
    WH_TRY(whc_device_of(z, &d));
    bool per_elem = reduction == WH_REDUCE_NONE;
    double *terms = NULL;
    size_t bytes = sizeof(double) * (size_t)(E > 0 ? E : 1);
    if (!per_elem) WH_TRY(whc_malloc(d->index, bytes, (void **)&terms));
    wh_status st = WH_OK;
    int64_t cs = cw ? cw->stride[0] : 0;
    WHC_FLOAT_DISPATCH(z->dtype,
        if (E > 0 && C > 0)
            ce_kernel<T><<<whc_blocks(E), WHC_THREADS, 0, d->stream>>>(
                (const T *)whc_data(z), cls, cw ? (const T *)whc_data(cw) : (const T *)NULL, cs,
                N, C, S, lse, per_elem ? (T *)whc_data(out) : (T *)NULL, terms);
        if (!per_elem) {
            /* with every element ignored the mean is 0/0 = NaN, as on the CPU */
            double scale = reduction == WH_REDUCE_MEAN ? 1.0 / weight_sum : 1.0;
            term_reader f = {terms};
            st = whc_grid_sum<T>(d, f, E, scale, (T *)whc_data(out), (double *)NULL);
        });
    if (terms) whc_free(d->index, terms, bytes);
    WH_TRY(st);
    WHC_LAUNCHED("ce_kernel");
    return WH_OK;
}

// d/dz_c of -w_y*(z_y - lse) is w_y*(softmax_c - [c == y]); one thread per logit.
template <class T>
__global__ void ce_grad_kernel(const T *z, const int64_t *cls, const double *lse, const T *cw,
                               int64_t cs, int per_elem, double gdiv, const T *g, T *gz, int64_t C,
                               int64_t S, int64_t n) {
    double shared = per_elem ? 0.0 : (double)g[0] / gdiv;
    WHC_GRID_LOOP(i, n) {
        int64_t s = i % S, c = (i / S) % C, b = i / (S * C), e = b * S + s;
        int64_t k = cls[e];
        double f = (per_elem ? (double)g[e] : shared) * class_weight(cw, cs, k);
        gz[i] = xent_grad(z[i], lse[e], f, k == c);
    }
}

extern "C" wh_status whc_cross_entropy_grad(const wh_tensor *z, const int64_t *cls,
                                            const double *lse, const wh_tensor *cw, int reduction,
                                            double weight_sum, const wh_tensor *g, wh_tensor *gz) {
    int64_t n = whc_numel(z), C = z->shape[1], S = 1;
    for (int k = 2; k < z->ndim; k++) S *= z->shape[k];
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(z, &d));
    double gdiv = reduction == WH_REDUCE_MEAN ? weight_sum : 1.0;
    WHC_FLOAT_DISPATCH(z->dtype,
        ce_grad_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            (const T *)whc_data(z), cls, lse, cw ? (const T *)whc_data(cw) : (const T *)NULL,
            cw ? cw->stride[0] : 0, reduction == WH_REDUCE_NONE, gdiv, (const T *)whc_data(g),
            (T *)whc_data(gz), C, S, n));
    WHC_LAUNCHED("ce_grad_kernel");
    return WH_OK;
}

// ---- fused optimizer updates -------------------------------------------------------------------------

__device__ inline void sgd_up(float *p, float g, float *m, float lr, float mo, int nes, float wd) { wh_sgd_update_f32(p, g, m, lr, mo, nes, wd); }
__device__ inline void sgd_up(double *p, double g, double *m, double lr, double mo, int nes, double wd) { wh_sgd_update_f64(p, g, m, lr, mo, nes, wd); }
__device__ inline void adam_up(float *p, float g, float *m, float *v, float *vh, float a, float b1, float b2, float eps, float lr, float wd) { wh_adam_update_f32(p, g, m, v, vh, a, b1, b2, eps, lr, wd); }
__device__ inline void adam_up(double *p, double g, double *m, double *v, double *vh, double a, double b1, double b2, double eps, double lr, double wd) { wh_adam_update_f64(p, g, m, v, vh, a, b1, b2, eps, lr, wd); }
__device__ inline void rms_up(float *p, float g, float *v, float *a, float *mo, float lr, float rho, float eps, float m, float wd) { wh_rmsprop_update_f32(p, g, v, a, mo, lr, rho, eps, m, wd); }
__device__ inline void rms_up(double *p, double g, double *v, double *a, double *mo, double lr, double rho, double eps, double m, double wd) { wh_rmsprop_update_f64(p, g, v, a, mo, lr, rho, eps, m, wd); }

template <class T>
__global__ void sgd_kernel(T *p, const T *g, T *m, T lr, T mo, int nes, T wd, int64_t n) {
    WHC_GRID_LOOP(i, n) sgd_up(p + i, g[i], m ? m + i : (T *)NULL, lr, mo, nes, wd);
}

template <class T>
__global__ void adam_kernel(T *p, const T *g, T *m, T *v, T *vh, T alpha, T b1, T b2, T eps, T lr,
                            T wd, int64_t n) {
    WHC_GRID_LOOP(i, n) adam_up(p + i, g[i], m + i, v + i, vh ? vh + i : (T *)NULL, alpha, b1, b2,
                                eps, lr, wd);
}

template <class T>
__global__ void rmsprop_kernel(T *p, const T *g, T *v, T *a, T *mo, T lr, T rho, T eps, T m, T wd,
                               int64_t n) {
    WHC_GRID_LOOP(i, n) rms_up(p + i, g[i], v + i, a ? a + i : (T *)NULL, mo ? mo + i : (T *)NULL,
                               lr, rho, eps, m, wd);
}

#define OPT(t) ((t) ? (T *)whc_data(t) : (T *)NULL)

extern "C" wh_status whc_sgd_update(wh_tensor *p, const wh_tensor *g, wh_tensor *m,
                                    const wh_sgd_options *o) {
    int64_t n = whc_numel(p);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(p, &d));
    WHC_FLOAT_DISPATCH(p->dtype,
        sgd_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            (T *)whc_data(p), (const T *)whc_data(g), OPT(m), (T)o->lr, (T)o->momentum,
            o->nesterov, (T)o->weight_decay, n));
    WHC_LAUNCHED("sgd_kernel");
    return WH_OK;
}

extern "C" wh_status whc_adam_update(wh_tensor *p, const wh_tensor *g, wh_tensor *m, wh_tensor *v,
                                     wh_tensor *vhat, const wh_adam_options *o) {
    int64_t n = whc_numel(p);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(p, &d));
    double alpha = wh_adam_alpha(o->lr, o->beta1, o->beta2, (double)o->step);
    WHC_FLOAT_DISPATCH(p->dtype,
        adam_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            (T *)whc_data(p), (const T *)whc_data(g), (T *)whc_data(m), (T *)whc_data(v),
            OPT(vhat), (T)alpha, (T)o->beta1, (T)o->beta2, (T)o->eps, (T)o->lr,
            (T)o->weight_decay, n));
    WHC_LAUNCHED("adam_kernel");
    return WH_OK;
}

extern "C" wh_status whc_rmsprop_update(wh_tensor *p, const wh_tensor *g, wh_tensor *v,
                                        wh_tensor *avg, wh_tensor *mom,
                                        const wh_rmsprop_options *o) {
    int64_t n = whc_numel(p);
    if (n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_of(p, &d));
    WHC_FLOAT_DISPATCH(p->dtype,
        rmsprop_kernel<T><<<whc_blocks(n), WHC_THREADS, 0, d->stream>>>(
            (T *)whc_data(p), (const T *)whc_data(g), (T *)whc_data(v), OPT(avg), OPT(mom),
            (T)o->lr, (T)o->rho, (T)o->eps, (T)o->momentum, (T)o->weight_decay, n));
    WHC_LAUNCHED("rmsprop_kernel");
    return WH_OK;
}
