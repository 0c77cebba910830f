/* Define-by-run autograd.
 *
 * Every op that runs while gradients are enabled and has an input that
 * requires grad creates a node: the op's name, its backward function, one
 * edge per input (to the node that made that input, or to the leaf tensor
 * itself), the tensors it saved for backward and its attributes.  The output
 * tensor points to the node; a node never points to its output, so the graph
 * has no reference cycles and dies with the last tensor that uses it.
 *
 * wh_backward runs the nodes reachable from the roots in reverse topological
 * order (Kahn's algorithm on dependency counts), accumulates gradients into
 * leaves' .grad, and, unless the graph is retained, frees each node's saved
 * tensors as soon as it has run. */
#ifndef WHORL_AUTOGRAD_H
#define WHORL_AUTOGRAD_H

#include "tensor.h"

enum { WH_NODE_MAX_SAVED = 8, WH_NODE_MAX_IARGS = 16, WH_NODE_MAX_FARGS = 8 };

/* Computes the gradient of each input that needs one (wh_node_needs_grad)
 * from grad_output (contiguous, the output's shape and dtype).  grad_inputs
 * has node->ninputs entries, all NULL on entry; the function fills the ones
 * it computes with new references (the engine takes ownership). */
typedef wh_status (*wh_backward_fn)(wh_node *node, wh_tensor *grad_output,
                                    wh_tensor **grad_inputs);

typedef struct {
    wh_node *node;   /* the input was made by this node, or */
    wh_tensor *leaf; /* the input is this leaf that requires grad; both NULL: no grad */
} wh_edge;

typedef struct {
    int ndim;
    int64_t shape[WH_MAX_DIMS];
    wh_dtype dtype;
} wh_meta;

struct wh_node {
    int64_t refcount;
    const char *name;
    wh_backward_fn backward;

    int ninputs;
    wh_edge *next;       /* ninputs edges */
    wh_meta *input_meta; /* ninputs shapes/dtypes of the inputs */
    wh_meta output_meta;

    int nsaved;
    wh_tensor *saved[WH_NODE_MAX_SAVED];
    uint64_t saved_version[WH_NODE_MAX_SAVED];

    /* The op's attributes (stride, padding, dims, alpha, ...). */
    int64_t iarg[WH_NODE_MAX_IARGS];
    double farg[WH_NODE_MAX_FARGS];
    void *ctx;                   /* op-owned extra state, freed with free_ctx */
    void (*free_ctx)(void *ctx);

    /* engine state */
    wh_tensor *grad_accum;
    int64_t pending;
    uint64_t visit;
    bool freed;
    wh_tensor *retained; /* weak: the output tensor, when it asked to retain grad */
};

/* ---- grad mode ------------------------------------------------------------ */
bool wh_grad_enabled(void);
/* Sets the mode for this thread and returns the previous one. */
bool wh_set_grad_enabled(bool enabled);

/* ---- used by ops ---------------------------------------------------------- */
/* True when grad mode is on and some input requires grad. */
bool wh_needs_graph(int n, wh_tensor *const *inputs);
/* A node for an op with these inputs (edges for those requiring grad).
 * Returns NULL (with an error message set) if out of memory. */
wh_node *wh_node_new(const char *name, wh_backward_fn fn, int ninputs,
                     wh_tensor *const *inputs);
void wh_node_release(wh_node *node);
/* Saves a tensor for backward (an alias without history, so no cycle). */
wh_status wh_node_save(wh_node *node, wh_tensor *t);
/* The i-th saved tensor, checked against in-place modification. */
wh_status wh_node_saved(wh_node *node, int i, wh_tensor **t);
bool wh_node_needs_grad(const wh_node *node, int input);
/* Makes `out` the output of `node` (out->requires_grad = true); consumes the
 * caller's reference to node. */
void wh_node_attach(wh_node *node, wh_tensor *out);

/* Convenience for ops: if the inputs need a graph, create the node, call
 * `save` hooks via the returned pointer, and attach to out.  Returns WH_OK
 * with *node NULL when no graph is needed. */
wh_status wh_record(const char *name, wh_backward_fn fn, int ninputs,
                    wh_tensor *const *inputs, wh_tensor *out, wh_node **node);

/* ---- running backward ------------------------------------------------------ */
/* Backpropagates from `root` (grad_output NULL means ones, allowed only for a
 * one-element root) and accumulates into the .grad of leaves and of
 * tensors that retain grad. */
wh_status wh_backward(wh_tensor *root, wh_tensor *grad_output, bool retain_graph);

/* Gradients of the roots with respect to `inputs` (leaves or intermediate
 * tensors), returned as new tensors in grads[ninputs] without touching any
 * .grad.  An input that does not influence the roots gets a zero tensor. */
wh_status wh_autograd_grad(int nroots, wh_tensor *const *roots,
                           wh_tensor *const *grad_outputs, int ninputs,
                           wh_tensor *const *inputs, bool retain_graph, wh_tensor **grads);

/* Asks a non-leaf tensor to keep its .grad after backward. */
wh_status wh_retain_grad(wh_tensor *t);
/* A tensor sharing t's data with no history and requires_grad false. */
wh_status wh_detach(wh_tensor *t, wh_tensor **out);

/* ---- helpers used by backward functions ------------------------------------ */
/* Sums g over the dimensions that were broadcast so it gets `meta`'s shape. */
wh_status wh_sum_to_meta(wh_tensor *g, const wh_meta *meta, wh_tensor **out);
/* acc <- acc + g (same shape and dtype; acc contiguous). */
wh_status wh_accumulate_into(wh_tensor *acc, const wh_tensor *g);

#endif
