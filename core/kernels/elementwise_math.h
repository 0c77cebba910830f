/* Per-element math of the elementwise ops and their derivatives, shared by
 * the CPU kernels (ops_elementwise.c) and the CUDA kernels (cuda/), so both
 * backends compute the same thing and CPU tests cover the formulas.
 * Each function exists for float (_f32) and double (_f64). */
#ifndef WHORL_ELEMENTWISE_MATH_H
#define WHORL_ELEMENTWISE_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define WH_HD __host__ __device__
#else
#define WH_HD
#endif

/* Numbers match wh_binary_op / wh_unary_op in ops.h. */
enum { WH_MATH_ADD, WH_MATH_SUB, WH_MATH_MUL, WH_MATH_DIV, WH_MATH_POW, WH_MATH_MAXIMUM,
       WH_MATH_MINIMUM };
enum { WH_MATH_NEG, WH_MATH_EXP, WH_MATH_LOG, WH_MATH_SQRT, WH_MATH_ABS, WH_MATH_RELU,
       WH_MATH_SIGMOID, WH_MATH_TANH, WH_MATH_SQUARE, WH_MATH_SIN, WH_MATH_COS,
       /* parameterised unary ops (p0, p1 below) */
       WH_MATH_LEAKY_RELU, WH_MATH_CLAMP, WH_MATH_AFFINE, WH_MATH_POW_SCALAR,
       WH_MATH_RSUB, WH_MATH_RDIV };

#define WH_DEFINE_ELEMENTWISE_MATH(T, SUF, EXP, LOG, SQRT, TANH, FABS, POW, SIN, COS)                  \
    /* a op b */                                                                           \
    WH_HD static inline T wh_binary_forward_##SUF(int op, T a, T b) {                       \
        switch (op) {                                                                      \
        case WH_MATH_ADD: return a + b;                                                    \
        case WH_MATH_SUB: return a - b;                                                    \
        case WH_MATH_MUL: return a * b;                                                    \
        case WH_MATH_DIV: return a / b;                                                    \
        case WH_MATH_POW: return POW(a, b);                                                \
        case WH_MATH_MAXIMUM: return a > b || a != a ? a : b;                              \
        default: return a < b || a != a ? a : b;                                           \
        }                                                                                  \
    }                                                                                      \
    /* d(a op b)/da and d(a op b)/db times g; out = a op b.  Ties of maximum and           \
     * minimum split the gradient evenly, as PyTorch does. */                              \
    WH_HD static inline T wh_binary_grad_a_##SUF(int op, T a, T b, T out, T g) {            \
        switch (op) {                                                                      \
        case WH_MATH_ADD: case WH_MATH_SUB: return g;                                      \
        case WH_MATH_MUL: return g * b;                                                    \
        case WH_MATH_DIV: return g / b;                                                    \
        case WH_MATH_POW: return b == 0 ? (T)0 : g * b * POW(a, b - 1);                    \
        case WH_MATH_MAXIMUM: return a > b ? g : a == b ? g / 2 : (T)0;                    \
        default: return a < b ? g : a == b ? g / 2 : (T)0;                                 \
        }                                                                                  \
    }                                                                                      \
    WH_HD static inline T wh_binary_grad_b_##SUF(int op, T a, T b, T out, T g) {            \
        switch (op) {                                                                      \
        case WH_MATH_ADD: return g;                                                        \
        case WH_MATH_SUB: return -g;                                                       \
        case WH_MATH_MUL: return g * a;                                                    \
        case WH_MATH_DIV: return -g * a / (b * b);                                         \
        case WH_MATH_POW: return a > 0 ? g * out * LOG(a) : (T)0;                          \
        case WH_MATH_MAXIMUM: return b > a ? g : a == b ? g / 2 : (T)0;                    \
        default: return b < a ? g : a == b ? g / 2 : (T)0;                                 \
        }                                                                                  \
    }                                                                                      \
    /* f(x) with parameters p0, p1 (slope; lo, hi; scale, shift; exponent; scalar). */     \
    WH_HD static inline T wh_unary_forward_##SUF(int op, T x, T p0, T p1) {                 \
        switch (op) {                                                                      \
        case WH_MATH_NEG: return -x;                                                       \
        case WH_MATH_EXP: return EXP(x);                                                   \
        case WH_MATH_LOG: return LOG(x);                                                   \
        case WH_MATH_SQRT: return SQRT(x);                                                 \
        case WH_MATH_ABS: return FABS(x);                                                  \
        case WH_MATH_RELU: return x > 0 ? x : (T)0;                                        \
        case WH_MATH_SIGMOID:                                                              \
            /* written so that neither branch overflows */                                 \
            if (x >= 0) return (T)1 / ((T)1 + EXP(-x));                                    \
            else { T e = EXP(x); return e / ((T)1 + e); }                                  \
        case WH_MATH_TANH: return TANH(x);                                                 \
        case WH_MATH_SQUARE: return x * x;                                                 \
        case WH_MATH_SIN: return SIN(x);                                                   \
        case WH_MATH_COS: return COS(x);                                                   \
        case WH_MATH_LEAKY_RELU: return x > 0 ? x : x * p0;                                \
        case WH_MATH_CLAMP: return x < p0 ? p0 : x > p1 ? p1 : x;                          \
        case WH_MATH_AFFINE: return x * p0 + p1;                                           \
        case WH_MATH_POW_SCALAR: return POW(x, p0);                                        \
        case WH_MATH_RSUB: return p0 - x;                                                  \
        default: return p0 / x; /* WH_MATH_RDIV */                                         \
        }                                                                                  \
    }                                                                                      \
    /* g * f'(x), given x and y = f(x). */                                                 \
    WH_HD static inline T wh_unary_grad_##SUF(int op, T x, T y, T g, T p0, T p1) {          \
        switch (op) {                                                                      \
        case WH_MATH_NEG: return -g;                                                       \
        case WH_MATH_EXP: return g * y;                                                    \
        case WH_MATH_LOG: return g / x;                                                    \
        case WH_MATH_SQRT: return g / (2 * y);                                             \
        case WH_MATH_ABS: return x > 0 ? g : x < 0 ? -g : (T)0;                            \
        case WH_MATH_RELU: return x > 0 ? g : (T)0;                                        \
        case WH_MATH_SIGMOID: return g * y * ((T)1 - y);                                   \
        case WH_MATH_TANH: return g * ((T)1 - y * y);                                      \
        case WH_MATH_SQUARE: return 2 * x * g;                                             \
        case WH_MATH_SIN: return g * COS(x);                                               \
        case WH_MATH_COS: return -g * SIN(x);                                              \
        case WH_MATH_LEAKY_RELU: return x > 0 ? g : g * p0;                                \
        case WH_MATH_CLAMP: return x >= p0 && x <= p1 ? g : (T)0;                          \
        case WH_MATH_AFFINE: return g * p0;                                                \
        case WH_MATH_POW_SCALAR: return p0 == 0 ? (T)0 : g * p0 * POW(x, p0 - 1);          \
        case WH_MATH_RSUB: return -g;                                                      \
        default: return -g * y / x; /* RDIV: d(s/x) = -s/x^2 */                            \
        }                                                                                  \
    }

WH_DEFINE_ELEMENTWISE_MATH(float, f32, expf, logf, sqrtf, tanhf, fabsf, powf, sinf, cosf)
WH_DEFINE_ELEMENTWISE_MATH(double, f64, exp, log, sqrt, tanh, fabs, pow, sin, cos)

#endif
