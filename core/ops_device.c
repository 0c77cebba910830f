/* Moving tensors between devices as a differentiable op: x:cuda(),
 * x:to("cpu") inside a model keep the graph, and the gradient is copied
 * back to the device the input lives on. */
#include "backend.h"
#include "ops_util.h"

/* ctx: the input's allocator (static, never freed). */
static wh_status to_device_backward(wh_node *n, wh_tensor *g, wh_tensor **gin) {
    const wh_meta *m = &n->input_meta[0];
    WH_TRY(wh_tensor_empty(m->dtype, m->ndim, m->shape, n->ctx, &gin[0]));
    wh_status st = wh_copy_into(gin[0], g);
    if (st != WH_OK) wh_tensor_clear(&gin[0]);
    return st;
}

wh_status wh_to_device(wh_tensor *x, wh_allocator *alloc, wh_tensor **out) {
    if (!alloc) alloc = wh_cpu_allocator();
    wh_device from = wh_tensor_device(x), to = alloc->device;
    if (from.type == to.type && from.index == to.index) {
        wh_tensor_retain(x);
        *out = x;
        return WH_OK;
    }
    WH_TRY(wh_check_device("to", x));
    WH_TRY(wh_tensor_empty(x->dtype, x->ndim, x->shape, alloc, out));
    wh_status st = wh_copy_into(*out, x);
    wh_node *node = NULL;
    if (st == WH_OK && wh_dtype_is_float(x->dtype))
        st = wh_record("to_device", to_device_backward, 1, &x, *out, &node);
    if (node) node->ctx = x->storage->allocator;
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}
