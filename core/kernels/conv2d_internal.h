/* Internal to the conv2d kernels (conv2d.c, conv2d_direct.c); not installed API. */
#ifndef WHORL_KERNELS_CONV2D_INTERNAL_H
#define WHORL_KERNELS_CONV2D_INTERNAL_H

#include "kernels/conv2d.h"

/* Register-blocked direct kernels for f32 (conv2d_direct.c), used for the
 * layers that make poor GEMMs (c_in*kh*kw or c_out small).  They work on
 * zero-padded copies of one input plane at a time (wh_scratch slot 2, slot 3
 * for weight-gradient sums) and vectorise over the output width, so they need
 * unit stride along the width (and along the height too for backward_input):
 * see the *_ok predicates.  Other strides use the plain loops of conv2d_impl.h. */
static inline int wh__conv2d_fast_fwd_ok(const wh_conv2d_shape *s) { return s->stride_w == 1; }
static inline int wh__conv2d_fast_bwdin_ok(const wh_conv2d_shape *s) {
    return s->stride_w == 1 && s->stride_h == 1;
}
static inline int wh__conv2d_fast_bwdw_ok(const wh_conv2d_shape *s) { return s->stride_w == 1; }

/* y = act(conv(x, w) + bias).  Tasks: (image, block of output channels). */
wh_status wh__conv2d_fwd_fast_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                  const float *bias, wh_activation act, float *y);
/* dx = act(conv backward_input(dy, w) + bias); bias/act serve the transposed
 * conv's forward (NULL / WH_ACT_NONE for a plain backward).  Tasks: (image,
 * block of input channels). */
wh_status wh__conv2d_bwdin_fast_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                    const float *bias, wh_activation act, float *dx);
/* dw, dbias (may be NULL).  Tasks: (input channel, block of output channels). */
wh_status wh__conv2d_bwdw_fast_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                   float *dw, float *dbias);

/* AVX-512 implicit GEMM for stride-1 f32 convs (conv2d_x512.c), dispatched at
 * run time.  wh__conv2d_x512_ok: the CPU has AVX-512F and the op (0 forward,
 * 1 backward_input, 2 backward_weight) supports the shape.  Scratch slots
 * 1-6. */
int wh__conv2d_x512_available(void);
int wh__conv2d_x512_ok(const wh_conv2d_shape *s, int op);
wh_status wh__conv2d_fwd_x512_f32(const wh_conv2d_shape *s, const float *x, const float *w,
                                  const float *bias, wh_activation act, float *y);
wh_status wh__conv2d_bwdin_x512_f32(const wh_conv2d_shape *s, const float *dy, const float *w,
                                    const float *bias, wh_activation act, float *dx);
wh_status wh__conv2d_bwdw_x512_f32(const wh_conv2d_shape *s, const float *x, const float *dy,
                                   float *dw, float *dbias);

#endif
