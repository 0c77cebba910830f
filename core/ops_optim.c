/* Fused optimizer updates: one pass over a parameter, its gradient and its
 * state per step (Keras' formulas, kernels/optim_math.h), on the CPU with
 * OpenMP or on the tensors' device through its backend.  An Adam step
 * written with in-place ops reads and writes the parameter-sized tensors
 * about fifteen times; this reads each once and writes each once. */
#include <math.h>

#include "backend.h"
#include "kernels/optim_math.h"
#include "ops_util.h"

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */

/* p: updated in place, float, contiguous, on a device with a backend. */
static wh_status check_param(const char *op, wh_tensor *p) {
    WH_TRY(wh_check_inplace(op, p));
    WH_TRY(wh_check_float_dev(op, "parameter", p));
    if (!wh_tensor_is_contiguous(p))
        return wh_fail(WH_ERR_ARG, "%s: the parameter must be contiguous", op);
    return WH_OK;
}

/* A tensor of p's shape, dtype and device; state tensors (written) must
 * also be contiguous.  A missing one is an error when `needed` says why. */
static wh_status check_like(const char *op, const char *arg, wh_tensor *p, wh_tensor *t,
                            bool state, const char *needed) {
    if (!t) {
        if (needed) return wh_fail(WH_ERR_ARG, "%s: %s is missing (%s)", op, arg, needed);
        return WH_OK;
    }
    WH_TRY(wh_check_float_dev(op, arg, t));
    WH_TRY(wh_check_same_dtype(op, p, t));
    if (!wh_tensor_same_shape(p, t)) {
        char a[128], b[128];
        return wh_fail(WH_ERR_SHAPE, "%s: %s has shape %s but the parameter has %s", op, arg,
                       wh_shape_str(t, a, sizeof a), wh_shape_str(p, b, sizeof b));
    }
    if (state && !wh_tensor_is_contiguous(t))
        return wh_fail(WH_ERR_ARG, "%s: %s must be contiguous", op, arg);
    return WH_OK;
}

static wh_status check_positive(const char *op, const char *name, double v, bool zero_ok) {
    if (!isfinite(v) || v < 0 || (!zero_ok && v == 0))
        return wh_fail(WH_ERR_ARG, "%s: %s must be a %s number, got %g", op, name,
                       zero_ok ? "non-negative" : "positive", v);
    return WH_OK;
}

static void bump(wh_tensor *a, wh_tensor *b, wh_tensor *c, wh_tensor *d) {
    wh_tensor *ts[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (ts[i]) wh_tensor_bump_version(ts[i]);
}

#define DATA(t, T) ((t) ? (T *)wh_tensor_data(t) : (T *)0)

wh_status wh_sgd_update_(wh_tensor *p, wh_tensor *g, wh_tensor *m, const wh_sgd_options *o) {
    const char *op = "sgd_update_";
    WH_TRY(check_param(op, p));
    WH_TRY(check_like(op, "gradient", p, g, false, "the gradient"));
    WH_TRY(check_like(op, "momentum buffer", p, m, true,
                      o->momentum != 0 ? "needed when momentum is not 0" : NULL));
    WH_TRY(check_positive(op, "lr", o->lr, true));
    WH_TRY(check_positive(op, "momentum", o->momentum, true));
    WH_TRY(check_positive(op, "weight_decay", o->weight_decay, true));
    wh_tensor *gc;
    WH_TRY(wh_contig(g, &gc));
    bump(p, m, NULL, NULL);
    const wh_backend *be = wh_backend_of(p);
    wh_status st = WH_OK;
    int64_t n = wh_tensor_numel(p);
    int nesterov = o->nesterov;
    if (be) st = be->sgd_update(p, gc, m, o);
    else if (p->dtype == WH_FLOAT32) {
        float *P = DATA(p, float), *M = DATA(m, float);
        const float *G = DATA(gc, float);
        float lr = (float)o->lr, mo = (float)o->momentum, wd = (float)o->weight_decay;
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            wh_sgd_update_f32(P + i, G[i], M ? M + i : NULL, lr, mo, nesterov, wd);
    } else {
        double *P = DATA(p, double), *M = DATA(m, double);
        const double *G = DATA(gc, double);
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            wh_sgd_update_f64(P + i, G[i], M ? M + i : NULL, o->lr, o->momentum, nesterov,
                              o->weight_decay);
    }
    wh_tensor_release(gc);
    return st;
}

wh_status wh_adam_update_(wh_tensor *p, wh_tensor *g, wh_tensor *m, wh_tensor *v,
                          wh_tensor *vhat, const wh_adam_options *o) {
    const char *op = "adam_update_";
    WH_TRY(check_param(op, p));
    WH_TRY(check_like(op, "gradient", p, g, false, "the gradient"));
    WH_TRY(check_like(op, "first moment", p, m, true, "the first moment"));
    WH_TRY(check_like(op, "second moment", p, v, true, "the second moment"));
    WH_TRY(check_like(op, "max of the second moment", p, vhat, true, NULL));
    WH_TRY(check_positive(op, "lr", o->lr, true));
    WH_TRY(check_positive(op, "eps", o->eps, true));
    WH_TRY(check_positive(op, "weight_decay", o->weight_decay, true));
    if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return wh_fail(WH_ERR_ARG, "%s: beta1 (%g) and beta2 (%g) must be in [0, 1)", op,
                       o->beta1, o->beta2);
    if (o->step < 1)
        return wh_fail(WH_ERR_ARG, "%s: step counts updates from 1, got %lld", op,
                       (long long)o->step);
    wh_tensor *gc;
    WH_TRY(wh_contig(g, &gc));
    bump(p, m, v, vhat);
    const wh_backend *be = wh_backend_of(p);
    wh_status st = WH_OK;
    int64_t n = wh_tensor_numel(p);
    double alpha = wh_adam_alpha(o->lr, o->beta1, o->beta2, (double)o->step);
    if (be) st = be->adam_update(p, gc, m, v, vhat, o);
    else if (p->dtype == WH_FLOAT32) {
        float *P = DATA(p, float), *M = DATA(m, float), *V = DATA(v, float), *VH = DATA(vhat, float);
        const float *G = DATA(gc, float);
        float a = (float)alpha, b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps,
              lr = (float)o->lr, wd = (float)o->weight_decay;
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            wh_adam_update_f32(P + i, G[i], M + i, V + i, VH ? VH + i : NULL, a, b1, b2, eps, lr, wd);
    } else {
        double *P = DATA(p, double), *M = DATA(m, double), *V = DATA(v, double),
               *VH = DATA(vhat, double);
        const double *G = DATA(gc, double);
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            wh_adam_update_f64(P + i, G[i], M + i, V + i, VH ? VH + i : NULL, alpha, o->beta1,
                               o->beta2, o->eps, o->lr, o->weight_decay);
    }
    wh_tensor_release(gc);
    return st;
}

wh_status wh_rmsprop_update_(wh_tensor *p, wh_tensor *g, wh_tensor *v, wh_tensor *avg,
                             wh_tensor *mom, const wh_rmsprop_options *o) {
    const char *op = "rmsprop_update_";
    WH_TRY(check_param(op, p));
    WH_TRY(check_like(op, "gradient", p, g, false, "the gradient"));
    WH_TRY(check_like(op, "mean square", p, v, true, "the mean square"));
    WH_TRY(check_like(op, "mean gradient", p, avg, true, NULL));
    WH_TRY(check_like(op, "momentum buffer", p, mom, true,
                      o->momentum > 0 ? "needed when momentum is positive" : NULL));
    WH_TRY(check_positive(op, "lr", o->lr, true));
    WH_TRY(check_positive(op, "eps", o->eps, true));
    WH_TRY(check_positive(op, "momentum", o->momentum, true));
    WH_TRY(check_positive(op, "weight_decay", o->weight_decay, true));
    if (!(o->rho >= 0 && o->rho < 1))
        return wh_fail(WH_ERR_ARG, "%s: rho must be in [0, 1), got %g", op, o->rho);
    wh_tensor *gc;
    WH_TRY(wh_contig(g, &gc));
    bump(p, v, avg, mom);
    const wh_backend *be = wh_backend_of(p);
    wh_status st = WH_OK;
    int64_t n = wh_tensor_numel(p);
    if (be) st = be->rmsprop_update(p, gc, v, avg, mom, o);
    else if (p->dtype == WH_FLOAT32) {
        float *P = DATA(p, float), *V = DATA(v, float), *A = DATA(avg, float), *MO = DATA(mom, float);
        const float *G = DATA(gc, float);
        float lr = (float)o->lr, rho = (float)o->rho, eps = (float)o->eps,
              mo = (float)o->momentum, wd = (float)o->weight_decay;
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            wh_rmsprop_update_f32(P + i, G[i], V + i, A ? A + i : NULL, MO ? MO + i : NULL, lr,
                                  rho, eps, mo, wd);
    } else {
        double *P = DATA(p, double), *V = DATA(v, double), *A = DATA(avg, double),
               *MO = DATA(mom, double);
        const double *G = DATA(gc, double);
        #pragma omp parallel for if (n > PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            wh_rmsprop_update_f64(P + i, G[i], V + i, A ? A + i : NULL, MO ? MO + i : NULL, o->lr,
                                  o->rho, o->eps, o->momentum, o->weight_decay);
    }
    wh_tensor_release(gc);
    return st;
}
