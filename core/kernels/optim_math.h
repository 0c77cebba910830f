/* Per-element updates of the fused optimizer steps (core/ops_optim.c and
 * the CUDA kernels in cuda/), with Keras 3's formulas, which whorl.optim
 * follows (issue 3):
 *
 *   weight decay (every optimizer, decoupled):  p -= lr * wd * p, first
 *   SGD      m = momentum*m - lr*g;  p += nesterov ? momentum*m - lr*g : m
 *            (no momentum: p -= lr*g)
 *   Adam     m += (g - m)*(1 - b1);  v += (g^2 - v)*(1 - b2)
 *            amsgrad: vhat = max(vhat, v), used for v below
 *            p -= alpha * m / (sqrt(v) + eps),
 *            alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)   (computed once per step)
 *   RMSprop  v = rho*v + (1 - rho)*g^2
 *            centered: a = rho*a + (1 - rho)*g, den = v - a^2 + eps; else den = v + eps
 *            inc = lr * g / sqrt(den)
 *            momentum: mom = momentum*mom + inc, p -= mom; else p -= inc
 *
 * Scalars arrive in the parameter's precision; each function updates one
 * element of the parameter and its state in place. */
#ifndef WHORL_OPTIM_MATH_H
#define WHORL_OPTIM_MATH_H

#include <math.h>

#ifndef WH_HD
#ifdef __CUDACC__
#define WH_HD __host__ __device__
#else
#define WH_HD
#endif
#endif

/* Keras' Adam step size for step t (1 for the first update). */
static inline double wh_adam_alpha(double lr, double beta1, double beta2, double t) {
    return lr * sqrt(1.0 - pow(beta2, t)) / (1.0 - pow(beta1, t));
}

#define WH_DEFINE_OPTIM_MATH(T, SUF, SQRT)                                                   \
    /* m may be NULL when momentum is 0. */                                                 \
    WH_HD static inline void wh_sgd_update_##SUF(T *p, T g, T *m, T lr, T momentum,          \
                                                 int nesterov, T wd) {                       \
        T x = *p;                                                                            \
        if (wd != 0) x -= lr * wd * x;                                                       \
        if (m && momentum != 0) {                                                            \
            T mv = momentum * *m - lr * g;                                                   \
            *m = mv;                                                                         \
            x += nesterov ? momentum * mv - lr * g : mv;                                     \
        } else {                                                                             \
            x -= lr * g;                                                                     \
        }                                                                                    \
        *p = x;                                                                              \
    }                                                                                        \
    /* vhat is NULL without amsgrad. */                                                     \
    WH_HD static inline void wh_adam_update_##SUF(T *p, T g, T *m, T *v, T *vhat, T alpha,   \
                                                  T beta1, T beta2, T eps, T lr, T wd) {     \
        T x = *p;                                                                            \
        if (wd != 0) x -= lr * wd * x;                                                       \
        T mv = *m + (g - *m) * ((T)1 - beta1);                                               \
        T vv = *v + (g * g - *v) * ((T)1 - beta2);                                           \
        *m = mv;                                                                             \
        *v = vv;                                                                             \
        if (vhat) {                                                                          \
            if (vv < *vhat) vv = *vhat;                                                      \
            *vhat = vv;                                                                      \
        }                                                                                    \
        *p = x - (mv * alpha) / (SQRT(vv) + eps);                                            \
    }                                                                                        \
    /* avg (centered) and mom (momentum > 0) may be NULL. */                                \
    WH_HD static inline void wh_rmsprop_update_##SUF(T *p, T g, T *v, T *avg, T *mom, T lr,  \
                                                     T rho, T eps, T momentum, T wd) {       \
        T x = *p;                                                                            \
        if (wd != 0) x -= lr * wd * x;                                                       \
        T vv = rho * *v + ((T)1 - rho) * g * g;                                              \
        *v = vv;                                                                             \
        T den = vv + eps;                                                                    \
        if (avg) {                                                                           \
            T a = rho * *avg + ((T)1 - rho) * g;                                             \
            *avg = a;                                                                        \
            den = vv - a * a + eps;                                                          \
        }                                                                                    \
        T inc = lr * g / SQRT(den);                                                          \
        if (mom && momentum > 0) {                                                           \
            T mv = momentum * *mom + inc;                                                    \
            *mom = mv;                                                                       \
            x -= mv;                                                                         \
        } else {                                                                             \
            x -= inc;                                                                        \
        }                                                                                    \
        *p = x;                                                                              \
    }

WH_DEFINE_OPTIM_MATH(float, f32, sqrtf)
WH_DEFINE_OPTIM_MATH(double, f64, sqrt)

#endif
