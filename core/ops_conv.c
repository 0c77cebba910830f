/* conv2d and conv_transpose2d as differentiable ops over the raw kernels
 * in kernels/conv2d.c.  The activation fused into the forward pass is
 * undone in backward from the saved output (relu: y > 0, sigmoid: y(1-y)),
 * so a fused conv+relu saves one tensor and one pass over memory. */
#include <string.h>

#include "backend.h"
#include "kernels/conv2d.h"
#include "ops_util.h"

void wh_conv_params_default(wh_conv_params *p) {
    memset(p, 0, sizeof *p);
    p->stride[0] = p->stride[1] = 1;
    p->dilation[0] = p->dilation[1] = 1;
}

/* The checks both ops share: x (N,C,H,W), weight 4-d with `w_in_dim` equal
 * to C, bias 1-d of the output channels. */
static wh_status check_conv_args(const char *op, wh_tensor *x, wh_tensor *w, wh_tensor *b,
                                 int w_in_dim, int w_out_dim, const wh_conv_params *p) {
    char xs[128], ws[128], bs[128];
    WH_TRY(wh_check_float_dev(op, "input", x));
    WH_TRY(wh_check_float_dev(op, "weight", w));
    WH_TRY(wh_check_same_dtype(op, x, w));
    WH_TRY(wh_check_ndim(op, "input", x, 4, "(N, C, H, W)"));
    WH_TRY(wh_check_ndim(op, "weight", w, 4, w_in_dim == 1 ? "(C_out, C_in, KH, KW)"
                                                            : "(C_in, C_out, KH, KW)"));
    if (w->shape[w_in_dim] != x->shape[1])
        return wh_fail(WH_ERR_SHAPE, "%s: input has %lld channels (shape %s) but the weight "
                       "expects %lld (weight shape %s)", op, (long long)x->shape[1],
                       wh_shape_str(x, xs, sizeof xs), (long long)w->shape[w_in_dim],
                       wh_shape_str(w, ws, sizeof ws));
    if (b) {
        WH_TRY(wh_check_float_dev(op, "bias", b));
        WH_TRY(wh_check_same_dtype(op, x, b));
        if (b->ndim != 1 || b->shape[0] != w->shape[w_out_dim])
            return wh_fail(WH_ERR_SHAPE, "%s: bias must have shape [%lld] for weight %s, got %s",
                           op, (long long)w->shape[w_out_dim], wh_shape_str(w, ws, sizeof ws),
                           wh_shape_str(b, bs, sizeof bs));
    }
    if (p->activation < WH_ACT_NONE || p->activation > WH_ACT_SIGMOID)
        return wh_fail(WH_ERR_ARG, "%s: unknown fused activation %d", op, p->activation);
    for (int i = 0; i < 4; i++)
        if (x->shape[i] > INT32_MAX || w->shape[i] > INT32_MAX)
            return wh_fail(WH_ERR_SHAPE, "%s: dimension too large for the conv kernels", op);
    return WH_OK;
}

/* Contiguous copies of x, w, b for the kernels (new references). */
static wh_status contig3(wh_tensor *x, wh_tensor *w, wh_tensor *b, wh_tensor **xc,
                         wh_tensor **wc, wh_tensor **bc) {
    *xc = *wc = *bc = NULL;
    wh_status st = wh_contig(x, xc);
    if (st == WH_OK) st = wh_contig(w, wc);
    if (st == WH_OK && b) st = wh_contig(b, bc);
    if (st != WH_OK) {
        wh_tensor_clear(xc);
        wh_tensor_clear(wc);
    }
    return st;
}

#define DATA(t, T) ((t) ? (T *)wh_tensor_data(t) : NULL)

/* The pre-activation gradient: g itself when there is no fused activation,
 * else a new tensor g * act'(y). */
static wh_status preactivation_grad(wh_node *n, wh_tensor *g, wh_tensor **gpre) {
    wh_activation act = (wh_activation)n->iarg[8];
    if (act == WH_ACT_NONE) {
        wh_tensor_retain(g);
        *gpre = g;
        return WH_OK;
    }
    wh_tensor *y;
    WH_TRY(wh_node_saved(n, 2, &y));
    if (g->refcount == 1 && g->storage->refcount == 1 && wh_tensor_is_contiguous(g)) {
        /* Nobody else holds this gradient (the engine hands each node its
         * own accumulated one), so it can become the pre-activation
         * gradient in place: one pass over memory instead of a copy. */
        wh_tensor_retain(g);
        *gpre = g;
    } else {
        WH_TRY(wh_contiguous_raw(g, true, gpre));
    }
    size_t cnt = (size_t)wh_tensor_numel(y);
    if (y->dtype == WH_FLOAT32) wh_activation_backward_f32(act, DATA(y, float), DATA(*gpre, float), cnt);
    else wh_activation_backward_f64(act, DATA(y, double), DATA(*gpre, double), cnt);
    return WH_OK;
}

/* The node's iarg holds the kernel shape struct fields in order. */
static void store_params(wh_node *n, const wh_conv_params *p) {
    n->iarg[0] = p->stride[0];
    n->iarg[1] = p->stride[1];
    n->iarg[2] = p->padding[0];
    n->iarg[3] = p->padding[1];
    n->iarg[4] = p->dilation[0];
    n->iarg[5] = p->dilation[1];
    n->iarg[6] = p->output_padding[0];
    n->iarg[7] = p->output_padding[1];
    n->iarg[8] = p->activation;
}

static void load_params(const wh_node *n, wh_conv_params *p) {
    p->stride[0] = (int)n->iarg[0];
    p->stride[1] = (int)n->iarg[1];
    p->padding[0] = (int)n->iarg[2];
    p->padding[1] = (int)n->iarg[3];
    p->dilation[0] = (int)n->iarg[4];
    p->dilation[1] = (int)n->iarg[5];
    p->output_padding[0] = (int)n->iarg[6];
    p->output_padding[1] = (int)n->iarg[7];
    p->activation = (int)n->iarg[8];
}

/* The backward of both ops on a device: the backend undoes the fused
 * activation itself, from the saved output.  bias_len: C_out. */
static wh_status conv_backward_device(const wh_backend *be, wh_node *n, bool transposed,
                                      wh_tensor *x, wh_tensor *w, wh_tensor *g, int64_t bias_len,
                                      wh_tensor **gin) {
    wh_conv_params p;
    load_params(n, &p);
    wh_tensor *y = NULL;
    if (p.activation != WH_ACT_NONE) WH_TRY(wh_node_saved(n, 2, &y));
    wh_status st = WH_OK;
    if (wh_node_needs_grad(n, 0)) st = wh_tensor_empty_like(x, &gin[0]);
    if (st == WH_OK && wh_node_needs_grad(n, 1)) st = wh_tensor_empty_like(w, &gin[1]);
    if (st == WH_OK && wh_node_needs_grad(n, 2))
        st = wh_tensor_empty(x->dtype, 1, &bias_len, x->storage->allocator, &gin[2]);
    if (st == WH_OK) st = be->conv2d_grad(&p, transposed, x, w, y, g, gin[0], gin[1], gin[2]);
    if (st != WH_OK)
        for (int i = 0; i < 3; i++) wh_tensor_clear(&gin[i]);
    return st;
}

/* ---- conv2d -------------------------------------------------------------------- */

static void conv2d_shape_of(const wh_tensor *x, const wh_tensor *w, const wh_conv_params *p,
                            wh_conv2d_shape *s) {
    memset(s, 0, sizeof *s);
    s->n = (int)x->shape[0];
    s->c_in = (int)x->shape[1];
    s->h_in = (int)x->shape[2];
    s->w_in = (int)x->shape[3];
    s->c_out = (int)w->shape[0];
    s->kh = (int)w->shape[2];
    s->kw = (int)w->shape[3];
    s->stride_h = p->stride[0];
    s->stride_w = p->stride[1];
    s->pad_h = p->padding[0];
    s->pad_w = p->padding[1];
    s->dil_h = p->dilation[0];
    s->dil_w = p->dilation[1];
}

static wh_status conv2d_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_conv_params p;
    load_params(n, &p);
    wh_tensor *x, *w, *gpre;
    WH_TRY(wh_node_saved(n, 0, &x));
    WH_TRY(wh_node_saved(n, 1, &w));
    const wh_backend *be = wh_backend_of(x);
    if (be) return conv_backward_device(be, n, false, x, w, g, w->shape[0], gin);
    wh_conv2d_shape s;
    conv2d_shape_of(x, w, &p, &s);
    WH_TRY(wh_conv2d_shape_init(&s));
    WH_TRY(preactivation_grad(n, g, &gpre));
    bool f32 = x->dtype == WH_FLOAT32;
    wh_status st = WH_OK;
    if (wh_node_needs_grad(n, 0)) {
        st = wh_tensor_empty_like(x, &gin[0]);
        if (st == WH_OK)
            st = f32 ? wh_conv2d_backward_input_f32(&s, DATA(gpre, float), DATA(w, float), DATA(gin[0], float))
                     : wh_conv2d_backward_input_f64(&s, DATA(gpre, double), DATA(w, double), DATA(gin[0], double));
    }
    bool need_w = wh_node_needs_grad(n, 1), need_b = wh_node_needs_grad(n, 2);
    if (st == WH_OK && (need_w || need_b)) {
        wh_tensor *dw = NULL;
        st = wh_tensor_empty_like(w, &dw);
        if (st == WH_OK && need_b) st = wh_tensor_empty(x->dtype, 1, &w->shape[0], NULL, &gin[2]);
        if (st == WH_OK)
            st = f32 ? wh_conv2d_backward_weight_f32(&s, DATA(x, float), DATA(gpre, float),
                                                     DATA(dw, float), DATA(gin[2], float))
                     : wh_conv2d_backward_weight_f64(&s, DATA(x, double), DATA(gpre, double),
                                                     DATA(dw, double), DATA(gin[2], double));
        if (st == WH_OK && need_w) gin[1] = dw;
        else wh_tensor_release(dw);
    }
    wh_tensor_release(gpre);
    return st;
}

wh_status wh_conv2d(wh_tensor *x, wh_tensor *w, wh_tensor *b, const wh_conv_params *p,
                    wh_tensor **out) {
    WH_TRY(check_conv_args("conv2d", x, w, b, 1, 0, p));
    wh_conv2d_shape s;
    conv2d_shape_of(x, w, p, &s);
    WH_TRY(wh_conv2d_shape_init(&s));
    wh_tensor *xc, *wc, *bc;
    WH_TRY(contig3(x, w, b, &xc, &wc, &bc));
    int64_t shape[4] = {s.n, s.c_out, s.h_out, s.w_out};
    wh_status st = wh_tensor_empty(x->dtype, 4, shape, x->storage->allocator, out);
    wh_activation act = (wh_activation)p->activation;
    const wh_backend *be = wh_backend_of(x);
    if (st == WH_OK && be) st = be->conv2d(p, false, xc, wc, bc, *out);
    else if (st == WH_OK)
        st = x->dtype == WH_FLOAT32
                 ? wh_conv2d_forward_f32(&s, DATA(xc, float), DATA(wc, float), DATA(bc, float), act, DATA(*out, float))
                 : wh_conv2d_forward_f64(&s, DATA(xc, double), DATA(wc, double), DATA(bc, double), act, DATA(*out, double));
    wh_tensor *inputs[3] = {x, w, b};
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record("conv2d", conv2d_backward, 3, inputs, *out, &node);
    if (st == WH_OK && node) {
        store_params(node, p);
        if ((st = wh_node_save(node, xc)) == WH_OK && (st = wh_node_save(node, wc)) == WH_OK &&
            act != WH_ACT_NONE)
            st = wh_node_save(node, *out);
    }
    wh_tensor_release(xc);
    wh_tensor_release(wc);
    wh_tensor_release(bc);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

/* ---- conv_transpose2d ------------------------------------------------------------ */

static void transpose_shape_of(const wh_tensor *x, const wh_tensor *w, const wh_conv_params *p,
                               wh_conv_transpose2d_shape *t) {
    memset(t, 0, sizeof *t);
    t->n = (int)x->shape[0];
    t->c_in = (int)x->shape[1];
    t->h_in = (int)x->shape[2];
    t->w_in = (int)x->shape[3];
    t->c_out = (int)w->shape[1];
    t->kh = (int)w->shape[2];
    t->kw = (int)w->shape[3];
    t->stride_h = p->stride[0];
    t->stride_w = p->stride[1];
    t->pad_h = p->padding[0];
    t->pad_w = p->padding[1];
    t->dil_h = p->dilation[0];
    t->dil_w = p->dilation[1];
    t->out_pad_h = p->output_padding[0];
    t->out_pad_w = p->output_padding[1];
}

static wh_status conv_transpose2d_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_conv_params p;
    load_params(n, &p);
    wh_tensor *x, *w, *gpre;
    WH_TRY(wh_node_saved(n, 0, &x));
    WH_TRY(wh_node_saved(n, 1, &w));
    const wh_backend *be = wh_backend_of(x);
    if (be) return conv_backward_device(be, n, true, x, w, g, w->shape[1], gin);
    wh_conv_transpose2d_shape t;
    transpose_shape_of(x, w, &p, &t);
    WH_TRY(wh_conv_transpose2d_shape_init(&t));
    WH_TRY(preactivation_grad(n, g, &gpre));
    bool f32 = x->dtype == WH_FLOAT32;
    wh_status st = WH_OK;
    if (wh_node_needs_grad(n, 0)) {
        st = wh_tensor_empty_like(x, &gin[0]);
        if (st == WH_OK)
            st = f32 ? wh_conv_transpose2d_backward_input_f32(&t, DATA(gpre, float), DATA(w, float), DATA(gin[0], float))
                     : wh_conv_transpose2d_backward_input_f64(&t, DATA(gpre, double), DATA(w, double), DATA(gin[0], double));
    }
    bool need_w = wh_node_needs_grad(n, 1), need_b = wh_node_needs_grad(n, 2);
    if (st == WH_OK && (need_w || need_b)) {
        wh_tensor *dw = NULL;
        st = wh_tensor_empty_like(w, &dw);
        if (st == WH_OK && need_b) st = wh_tensor_empty(x->dtype, 1, &w->shape[1], NULL, &gin[2]);
        if (st == WH_OK)
            st = f32 ? wh_conv_transpose2d_backward_weight_f32(&t, DATA(x, float), DATA(gpre, float),
                                                               DATA(dw, float), DATA(gin[2], float))
                     : wh_conv_transpose2d_backward_weight_f64(&t, DATA(x, double), DATA(gpre, double),
                                                               DATA(dw, double), DATA(gin[2], double));
        if (st == WH_OK && need_w) gin[1] = dw;
        else wh_tensor_release(dw);
    }
    wh_tensor_release(gpre);
    return st;
}

wh_status wh_conv_transpose2d(wh_tensor *x, wh_tensor *w, wh_tensor *b, const wh_conv_params *p,
                              wh_tensor **out) {
    WH_TRY(check_conv_args("conv_transpose2d", x, w, b, 0, 1, p));
    wh_conv_transpose2d_shape t;
    transpose_shape_of(x, w, p, &t);
    WH_TRY(wh_conv_transpose2d_shape_init(&t));
    wh_tensor *xc, *wc, *bc;
    WH_TRY(contig3(x, w, b, &xc, &wc, &bc));
    int64_t shape[4] = {t.n, t.c_out, t.h_out, t.w_out};
    wh_status st = wh_tensor_empty(x->dtype, 4, shape, x->storage->allocator, out);
    wh_activation act = (wh_activation)p->activation;
    const wh_backend *be = wh_backend_of(x);
    if (st == WH_OK && be) st = be->conv2d(p, true, xc, wc, bc, *out);
    else if (st == WH_OK)
        st = x->dtype == WH_FLOAT32
                 ? wh_conv_transpose2d_forward_f32(&t, DATA(xc, float), DATA(wc, float), DATA(bc, float), act, DATA(*out, float))
                 : wh_conv_transpose2d_forward_f64(&t, DATA(xc, double), DATA(wc, double), DATA(bc, double), act, DATA(*out, double));
    wh_tensor *inputs[3] = {x, w, b};
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record("conv_transpose2d", conv_transpose2d_backward, 3, inputs, *out, &node);
    if (st == WH_OK && node) {
        store_params(node, p);
        if ((st = wh_node_save(node, xc)) == WH_OK && (st = wh_node_save(node, wc)) == WH_OK &&
            act != WH_ACT_NONE)
            st = wh_node_save(node, *out);
    }
    wh_tensor_release(xc);
    wh_tensor_release(wc);
    wh_tensor_release(bc);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}
