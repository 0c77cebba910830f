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

/* ---- the geometry and kernels of both ops ------------------------------------------- */

/* A conv2d or a conv_transpose2d: which one, and its kernel shape. */
typedef struct {
    bool transposed;
    wh_conv2d_shape c;           /* when !transposed */
    wh_conv_transpose2d_shape t; /* when transposed */
} conv_geom;

static wh_status geom_init(bool transposed, const wh_tensor *x, const wh_tensor *w,
                           const wh_conv_params *p, conv_geom *g, int64_t out_shape[4]) {
    memset(g, 0, sizeof *g);
    g->transposed = transposed;
    int n = (int)x->shape[0], c = (int)x->shape[1], h = (int)x->shape[2], wd = (int)x->shape[3];
    int kh = (int)w->shape[2], kw = (int)w->shape[3];
    if (!transposed) {
        wh_conv2d_shape *s = &g->c;
        *s = (wh_conv2d_shape){n, c, h, wd, (int)w->shape[0], kh, kw, p->stride[0], p->stride[1],
                               p->padding[0], p->padding[1], p->dilation[0], p->dilation[1], 0, 0};
        WH_TRY(wh_conv2d_shape_init(s));
        out_shape[1] = s->c_out, out_shape[2] = s->h_out, out_shape[3] = s->w_out;
    } else {
        wh_conv_transpose2d_shape *t = &g->t;
        t->n = n, t->c_in = c, t->h_in = h, t->w_in = wd;
        t->c_out = (int)w->shape[1], t->kh = kh, t->kw = kw;
        t->stride_h = p->stride[0], t->stride_w = p->stride[1];
        t->pad_h = p->padding[0], t->pad_w = p->padding[1];
        t->dil_h = p->dilation[0], t->dil_w = p->dilation[1];
        t->out_pad_h = p->output_padding[0], t->out_pad_w = p->output_padding[1];
        WH_TRY(wh_conv_transpose2d_shape_init(t));
        out_shape[1] = t->c_out, out_shape[2] = t->h_out, out_shape[3] = t->w_out;
    }
    out_shape[0] = n;
    return WH_OK;
}

/* y = act(op(x, w) + b) on the CPU (contiguous tensors). */
static wh_status kernel_forward(const conv_geom *g, wh_tensor *x, wh_tensor *w, wh_tensor *b,
                                wh_activation act, wh_tensor *y) {
    if (x->dtype == WH_FLOAT32) {
        const float *X = DATA(x, float), *W = DATA(w, float), *B = DATA(b, float);
        return g->transposed ? wh_conv_transpose2d_forward_f32(&g->t, X, W, B, act, DATA(y, float))
                             : wh_conv2d_forward_f32(&g->c, X, W, B, act, DATA(y, float));
    }
    const double *X = DATA(x, double), *W = DATA(w, double), *B = DATA(b, double);
    return g->transposed ? wh_conv_transpose2d_forward_f64(&g->t, X, W, B, act, DATA(y, double))
                         : wh_conv2d_forward_f64(&g->c, X, W, B, act, DATA(y, double));
}

/* dx from the pre-activation gradient dy. */
static wh_status kernel_backward_input(const conv_geom *g, wh_tensor *dy, wh_tensor *w,
                                       wh_tensor *dx) {
    if (dy->dtype == WH_FLOAT32) {
        const float *DY = DATA(dy, float), *W = DATA(w, float);
        return g->transposed ? wh_conv_transpose2d_backward_input_f32(&g->t, DY, W, DATA(dx, float))
                             : wh_conv2d_backward_input_f32(&g->c, DY, W, DATA(dx, float));
    }
    const double *DY = DATA(dy, double), *W = DATA(w, double);
    return g->transposed ? wh_conv_transpose2d_backward_input_f64(&g->t, DY, W, DATA(dx, double))
                         : wh_conv2d_backward_input_f64(&g->c, DY, W, DATA(dx, double));
}

/* dw and db (may be NULL) from x and the pre-activation gradient dy. */
static wh_status kernel_backward_weight(const conv_geom *g, wh_tensor *x, wh_tensor *dy,
                                        wh_tensor *dw, wh_tensor *db) {
    if (x->dtype == WH_FLOAT32) {
        const float *X = DATA(x, float), *DY = DATA(dy, float);
        float *DW = DATA(dw, float), *DB = DATA(db, float);
        return g->transposed ? wh_conv_transpose2d_backward_weight_f32(&g->t, X, DY, DW, DB)
                             : wh_conv2d_backward_weight_f32(&g->c, X, DY, DW, DB);
    }
    const double *X = DATA(x, double), *DY = DATA(dy, double);
    double *DW = DATA(dw, double), *DB = DATA(db, double);
    return g->transposed ? wh_conv_transpose2d_backward_weight_f64(&g->t, X, DY, DW, DB)
                         : wh_conv2d_backward_weight_f64(&g->c, X, DY, DW, DB);
}

/* ---- the ops ---------------------------------------------------------------------------- */

/* iarg[9] says which op the node belongs to. */
static wh_status conv_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    wh_conv_params p;
    load_params(n, &p);
    bool transposed = n->iarg[9] != 0;
    wh_tensor *x, *w, *gpre;
    WH_TRY(wh_node_saved(n, 0, &x));
    WH_TRY(wh_node_saved(n, 1, &w));
    int64_t bias_len = w->shape[transposed ? 1 : 0];
    const wh_backend *be = wh_backend_of(x);
    if (be) return conv_backward_device(be, n, transposed, x, w, g, bias_len, gin);
    conv_geom geom;
    int64_t out_shape[4];
    WH_TRY(geom_init(transposed, x, w, &p, &geom, out_shape));
    WH_TRY(preactivation_grad(n, g, &gpre));
    wh_status st = WH_OK;
    if (wh_node_needs_grad(n, 0)) {
        st = wh_tensor_empty_like(x, &gin[0]);
        if (st == WH_OK) st = kernel_backward_input(&geom, gpre, w, gin[0]);
    }
    bool need_w = wh_node_needs_grad(n, 1), need_b = wh_node_needs_grad(n, 2);
    if (st == WH_OK && (need_w || need_b)) {
        /* The kernels produce dw and db together; dw is dropped when only the
         * bias needs a gradient. */
        wh_tensor *dw = NULL;
        st = wh_tensor_empty_like(w, &dw);
        if (st == WH_OK && need_b) st = wh_tensor_empty(x->dtype, 1, &bias_len, NULL, &gin[2]);
        if (st == WH_OK) st = kernel_backward_weight(&geom, x, gpre, dw, gin[2]);
        if (st == WH_OK && need_w) gin[1] = dw;
        else wh_tensor_release(dw);
    }
    wh_tensor_release(gpre);
    return st;
}

static wh_status conv_forward(const char *name, bool transposed, wh_tensor *x, wh_tensor *w,
                              wh_tensor *b, const wh_conv_params *p, wh_tensor **out) {
    WH_TRY(check_conv_args(name, x, w, b, transposed ? 0 : 1, transposed ? 1 : 0, p));
    conv_geom geom;
    int64_t shape[4];
    WH_TRY(geom_init(transposed, x, w, p, &geom, shape));
    wh_tensor *xc, *wc, *bc;
    WH_TRY(contig3(x, w, b, &xc, &wc, &bc));
    wh_status st = wh_tensor_empty(x->dtype, 4, shape, x->storage->allocator, out);
    wh_activation act = (wh_activation)p->activation;
    const wh_backend *be = wh_backend_of(x);
    if (st == WH_OK && be) st = be->conv2d(p, transposed, xc, wc, bc, *out);
    else if (st == WH_OK) st = kernel_forward(&geom, xc, wc, bc, act, *out);
    wh_tensor *inputs[3] = {x, w, b};
    wh_node *node = NULL;
    if (st == WH_OK) st = wh_record(name, conv_backward, 3, inputs, *out, &node);
    if (st == WH_OK && node) {
        store_params(node, p);
        node->iarg[9] = transposed;
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

wh_status wh_conv2d(wh_tensor *x, wh_tensor *w, wh_tensor *b, const wh_conv_params *p,
                    wh_tensor **out) {
    return conv_forward("conv2d", false, x, w, b, p, out);
}

/* weight (C_in, C_out, KH, KW), as in PyTorch. */
wh_status wh_conv_transpose2d(wh_tensor *x, wh_tensor *w, wh_tensor *b, const wh_conv_params *p,
                              wh_tensor **out) {
    return conv_forward("conv_transpose2d", true, x, w, b, p, out);
}
