/* Per-position arithmetic of the GPU's cross-entropy kernels (cuda/loss.cu),
 * the same as ops_loss.c's loops: the max in double, the exponentials in
 * the logits' precision, their sum and the log-sum-exp in double.  Plain C,
 * so tests/c/test_kernel_math.c runs it on the host against the CPU op. */
#ifndef WHORL_XENT_MATH_H
#define WHORL_XENT_MATH_H

#include <math.h>
#include <stdint.h>

#ifndef WH_HD
#ifdef __CUDACC__
#define WH_HD __host__ __device__
#else
#define WH_HD
#endif
#endif

#define WH_DEFINE_XENT_MATH(T, SUF, EXP)                                                     \
    /* log(sum_c exp(z0[c*S])) of one position, z0 its class-0 logit. */                 \
    WH_HD static inline double wh_xent_lse_##SUF(const T *z0, int64_t C, int64_t S) {       \
        double m = (double)z0[0], acc = 0;                                                  \
        for (int64_t c = 1; c < C; c++) m = (double)z0[c * S] > m ? (double)z0[c * S] : m;  \
        for (int64_t c = 0; c < C; c++) acc += (double)EXP((T)((double)z0[c * S] - m));     \
        return m + log(acc);                                                                \
    }                                                                                       \
    /* d loss / d z of one logit: f * (softmax - [target]), f the upstream        \
     * gradient times the target's class weight. */                                      \
    WH_HD static inline T wh_xent_grad_##SUF(T z, double lse, double f, int is_target) {    \
        return (T)(f * ((double)EXP((T)((double)z - lse)) - (is_target ? 1.0 : 0.0)));      \
    }

WH_DEFINE_XENT_MATH(float, f32, expf)
WH_DEFINE_XENT_MATH(double, f64, exp)

#endif
