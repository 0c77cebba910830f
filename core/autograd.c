/* The autograd engine.  See autograd.h for the design. */
#include "autograd.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"

static _Thread_local bool grad_disabled;

bool wh_grad_enabled(void) { return !grad_disabled; }

bool wh_set_grad_enabled(bool enabled) {
    bool previous = !grad_disabled;
    grad_disabled = !enabled;
    return previous;
}

bool wh_needs_graph(int n, wh_tensor *const *inputs) {
    if (grad_disabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

static void meta_of(const wh_tensor *t, wh_meta *m) {
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof m->shape);
    m->dtype = t->dtype;
}

wh_node *wh_node_new(const char *name, wh_backward_fn fn, int ninputs, wh_tensor *const *inputs) {
    wh_node *n = calloc(1, sizeof *n);
    if (!n) goto oom;
    n->next = calloc((size_t)(ninputs > 0 ? ninputs : 1), sizeof *n->next);
    n->input_meta = calloc((size_t)(ninputs > 0 ? ninputs : 1), sizeof *n->input_meta);
    if (!n->next || !n->input_meta) {
        free(n->next);
        free(n->input_meta);
        free(n);
        goto oom;
    }
    n->refcount = 1;
    n->name = name;
    n->backward = fn;
    n->ninputs = ninputs;
    for (int i = 0; i < ninputs; i++) {
        wh_tensor *t = inputs[i];
        if (!t) continue;
        meta_of(t, &n->input_meta[i]);
        if (!t->requires_grad) continue;
        if (t->grad_fn) {
            n->next[i].node = t->grad_fn;
            t->grad_fn->refcount++;
        } else {
            n->next[i].leaf = t;
            wh_tensor_retain(t);
        }
    }
    return n;
oom:
    wh_fail(WH_ERR_MEMORY, "%s: out of memory recording the autograd graph", name);
    return NULL;
}

/* Drops what the node holds for backward (saved tensors, edges). */
static void node_free_graph(wh_node *n) {
    for (int i = 0; i < n->nsaved; i++) wh_tensor_clear(&n->saved[i]);
    n->nsaved = 0;
    for (int i = 0; i < n->ninputs; i++) {
        if (n->next[i].node) wh_node_release(n->next[i].node);
        if (n->next[i].leaf) wh_tensor_release(n->next[i].leaf);
        n->next[i].node = NULL;
        n->next[i].leaf = NULL;
    }
    if (n->ctx && n->free_ctx) n->free_ctx(n->ctx);
    n->ctx = NULL;
    n->freed = true;
}

void wh_node_release(wh_node *n) {
    /* Iterative, so releasing a very long chain (an RNN-like loop of many
     * thousand ops) cannot overflow the C stack. */
    wh_node *stack_small[64], **stack = stack_small;
    size_t cap = 64, top = 0;
    if (!n) return;
    stack[top++] = n;
    while (top) {
        wh_node *cur = stack[--top];
        if (--cur->refcount > 0) continue;
        for (int i = 0; i < cur->nsaved; i++) wh_tensor_clear(&cur->saved[i]);
        for (int i = 0; i < cur->ninputs; i++) {
            if (cur->next[i].leaf) wh_tensor_release(cur->next[i].leaf);
            wh_node *child = cur->next[i].node;
            if (!child) continue;
            if (top == cap) {
                size_t ncap = cap * 2;
                wh_node **ns = malloc(ncap * sizeof *ns);
                if (!ns) { /* fall back to recursion for this child */
                    wh_node_release(child);
                    continue;
                }
                memcpy(ns, stack, top * sizeof *ns);
                if (stack != stack_small) free(stack);
                stack = ns;
                cap = ncap;
            }
            stack[top++] = child;
        }
        wh_tensor_release(cur->grad_accum);
        if (cur->ctx && cur->free_ctx) cur->free_ctx(cur->ctx);
        free(cur->next);
        free(cur->input_meta);
        free(cur);
    }
    if (stack != stack_small) free(stack);
}

wh_status wh_node_save(wh_node *n, wh_tensor *t) {
    if (n->nsaved >= WH_NODE_MAX_SAVED)
        return wh_fail(WH_ERR_STATE, "%s: too many saved tensors", n->name);
    wh_tensor *a;
    WH_TRY(wh_alias(t, &a));
    n->saved_version[n->nsaved] = t->storage->version;
    n->saved[n->nsaved++] = a;
    return WH_OK;
}

wh_status wh_node_saved(wh_node *n, int i, wh_tensor **t) {
    if (i < 0 || i >= n->nsaved || !n->saved[i])
        return wh_fail(WH_ERR_STATE, "%s: saved tensor %d is missing (graph already freed?)",
                       n->name, i);
    if (n->saved[i]->storage->version != n->saved_version[i])
        return wh_fail(WH_ERR_STATE, "%s: a tensor saved for its gradient was modified in "
                       "place after the op ran; compute the gradient before changing it, or "
                       "change a copy", n->name);
    *t = n->saved[i];
    return WH_OK;
}

bool wh_node_needs_grad(const wh_node *n, int i) {
    return i >= 0 && i < n->ninputs && (n->next[i].node || n->next[i].leaf);
}

void wh_node_attach(wh_node *n, wh_tensor *out) {
    if (out->grad_fn) wh_node_release(out->grad_fn);
    meta_of(out, &n->output_meta);
    out->grad_fn = n;
    out->requires_grad = true;
}

wh_status wh_record(const char *name, wh_backward_fn fn, int ninputs, wh_tensor *const *inputs,
                    wh_tensor *out, wh_node **node) {
    *node = NULL;
    if (!wh_needs_graph(ninputs, inputs)) return WH_OK;
    wh_node *n = wh_node_new(name, fn, ninputs, inputs);
    if (!n) return WH_ERR_MEMORY;
    wh_node_attach(n, out);
    *node = n;
    return WH_OK;
}

wh_status wh_detach(wh_tensor *t, wh_tensor **out) { return wh_alias(t, out); }

wh_status wh_retain_grad(wh_tensor *t) {
    if (!t->requires_grad)
        return wh_fail(WH_ERR_STATE, "retain_grad: the tensor does not require grad");
    if (t->grad_fn) t->grad_fn->retained = t;
    return WH_OK;
}

/* ---- gradient arithmetic ---------------------------------------------------- */

wh_status wh_accumulate_into(wh_tensor *acc, const wh_tensor *g) {
    char a[128], b[128];
    if (!wh_tensor_same_shape(acc, g) || acc->dtype != g->dtype)
        return wh_fail(WH_ERR_SHAPE, "autograd: gradient of shape %s (%s) does not match %s (%s)",
                       wh_shape_str(g, b, sizeof b), wh_dtype_name(g->dtype),
                       wh_shape_str(acc, a, sizeof a), wh_dtype_name(acc->dtype));
    const wh_backend *be = wh_backend_of(acc);
    if (be || wh_backend_of(g)) {
        WH_TRY(wh_check_same_device("autograd", acc, g));
        wh_tensor_bump_version(acc);
        return wh_tensor_numel(acc) ? be->update(WH_UPDATE_AXPY, acc, g, NULL, 1.0) : WH_OK;
    }
    wh_tensor *gc;
    WH_TRY(wh_contiguous_raw((wh_tensor *)g, false, &gc));
    int64_t n = wh_tensor_numel(acc);
    if (acc->dtype == WH_FLOAT32) {
        float *x = wh_tensor_data(acc);
        const float *y = wh_tensor_data(gc);
        #pragma omp parallel for simd if (n > 1 << 16)
        for (int64_t i = 0; i < n; i++) x[i] += y[i];
    } else {
        double *x = wh_tensor_data(acc);
        const double *y = wh_tensor_data(gc);
        #pragma omp parallel for simd if (n > 1 << 16)
        for (int64_t i = 0; i < n; i++) x[i] += y[i];
    }
    wh_tensor_release(gc);
    wh_tensor_bump_version(acc);
    return WH_OK;
}

wh_status wh_sum_to_meta(wh_tensor *g, const wh_meta *m, wh_tensor **out) {
    bool same = g->ndim == m->ndim;
    for (int i = 0; same && i < m->ndim; i++) same = g->shape[i] == m->shape[i];
    if (same) {
        wh_tensor_retain(g);
        *out = g;
        return WH_OK;
    }
    if (wh_backend_of(g)) {
        /* On a device: one reduction over the broadcast dims. */
        int lead = g->ndim - m->ndim, dims[WH_MAX_DIMS], nd = 0;
        for (int i = 0; i < g->ndim; i++)
            if (i < lead || (m->shape[i - lead] == 1 && g->shape[i] != 1)) dims[nd++] = i;
        if (nd == 0) return wh_view_raw(g, m->ndim, m->shape, out);
        wh_tensor *sum;
        WH_TRY(wh_sum(g, nd, dims, false, &sum));
        wh_status st = wh_view_raw(sum, m->ndim, m->shape, out);
        wh_tensor_release(sum);
        return st;
    }
    WH_TRY(wh_tensor_zeros(g->dtype, m->ndim, m->shape, out));
    wh_tensor *target = NULL;
    wh_status st = wh_expand_raw(*out, g->ndim, g->shape, &target);
    if (st != WH_OK) {
        wh_tensor_clear(out);
        return st;
    }
    /* Walk g in row-major order alongside the expanded (stride-0) view. */
    int64_t idx[WH_MAX_DIMS] = {0}, toff = target->offset;
    char *tbase = target->storage->data;
    const char *gbase = g->storage->data;
    bool f32 = g->dtype == WH_FLOAT32;
    WH_FOR_EACH_OFFSET(g, goff, {
        if (f32) ((float *)tbase)[toff] += ((const float *)gbase)[goff];
        else ((double *)tbase)[toff] += ((const double *)gbase)[goff];
        for (int d = target->ndim - 1; d >= 0; d--) {
            if (++idx[d] < target->shape[d]) {
                toff += target->stride[d];
                break;
            }
            toff -= target->stride[d] * (target->shape[d] - 1);
            idx[d] = 0;
        }
    });
    wh_tensor_release(target);
    return WH_OK;
}

/* Adds g into *slot: takes a reference when the slot is empty, adds in place
 * when the slot's tensor is exclusively ours, else replaces it with a sum. */
static wh_status accumulate(wh_tensor **slot, wh_tensor *g) {
    if (!*slot) {
        wh_tensor_retain(g);
        *slot = g;
        return WH_OK;
    }
    wh_tensor *acc = *slot;
    if (acc->refcount == 1 && acc->storage->refcount == 1 && wh_tensor_is_contiguous(acc))
        return wh_accumulate_into(acc, g);
    wh_tensor *sum;
    WH_TRY(wh_contiguous_raw(acc, true, &sum));
    wh_status st = wh_accumulate_into(sum, g);
    if (st != WH_OK) {
        wh_tensor_release(sum);
        return st;
    }
    wh_tensor_release(acc);
    *slot = sum;
    return WH_OK;
}

/* A leaf's .grad is user-visible and updated in place by optimizers, so it
 * must never alias another gradient: the first one stored is a private copy
 * unless nobody else holds it. */
static wh_status accumulate_leaf(wh_tensor *leaf, wh_tensor *g) {
    if (!leaf->grad && !(g->refcount == 1 && g->storage->refcount == 1 &&
                         wh_tensor_is_contiguous(g))) {
        WH_TRY(wh_contiguous_raw(g, true, &leaf->grad));
        return WH_OK;
    }
    return accumulate(&leaf->grad, g);
}

/* ---- the engine -------------------------------------------------------------- */

static uint64_t visit_epoch;

typedef struct {
    wh_node **items;
    size_t n, cap;
} node_list;

static wh_status list_push(node_list *l, wh_node *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        wh_node **items = realloc(l->items, cap * sizeof *items);
        if (!items) return wh_fail(WH_ERR_MEMORY, "autograd: out of memory");
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = n;
    return WH_OK;
}

typedef struct {
    int n;
    wh_tensor *const *inputs; /* capture targets (autograd.grad), or NULL */
    wh_tensor **grads;
} capture_set;

static int capture_index_leaf(const capture_set *c, const wh_tensor *leaf) {
    for (int i = 0; c && i < c->n; i++)
        if (c->inputs[i] == leaf && !leaf->grad_fn) return i;
    return -1;
}

static int capture_index_node(const capture_set *c, const wh_node *node) {
    for (int i = 0; c && i < c->n; i++)
        if (c->inputs[i]->grad_fn == node) return i;
    return -1;
}

static wh_status run_backward(int nroots, wh_tensor *const *roots, wh_tensor *const *grad_outputs,
                              bool retain_graph, capture_set *capture) {
    node_list all = {0}, ready = {0};
    wh_status st = WH_OK;
    uint64_t epoch = ++visit_epoch;

    /* 1. Discover every node reachable from the roots and count how many
     *    edges point at each (its pending gradient contributions). */
    for (int r = 0; r < nroots && st == WH_OK; r++) {
        wh_node *rn = roots[r]->grad_fn;
        if (!rn || rn->visit == epoch) continue;
        rn->visit = epoch;
        rn->pending = 0;
        st = list_push(&all, rn);
    }
    for (size_t k = 0; k < all.n && st == WH_OK; k++) {
        wh_node *n = all.items[k];
        if (n->freed) {
            st = wh_fail(WH_ERR_STATE, "backward: the graph through '%s' was already freed by "
                         "an earlier backward; pass retain_graph = true to the first backward "
                         "to run it twice", n->name);
            break;
        }
        for (int i = 0; i < n->ninputs; i++) {
            wh_node *c = n->next[i].node;
            if (!c) continue;
            if (c->visit != epoch) {
                c->visit = epoch;
                c->pending = 0;
                if ((st = list_push(&all, c)) != WH_OK) break;
            }
            c->pending++;
        }
    }
    for (size_t k = 0; k < all.n; k++) all.items[k]->refcount++;

    /* 2. Seed the roots. */
    for (int r = 0; r < nroots && st == WH_OK; r++) {
        wh_tensor *root = roots[r];
        wh_tensor *g = grad_outputs ? grad_outputs[r] : NULL, *seed = NULL;
        char a[128], b[128];
        if (!root->requires_grad) {
            st = wh_fail(WH_ERR_STATE, "backward: the tensor does not require grad and has no "
                         "graph (was it computed under no_grad, or from tensors that do not "
                         "require grad?)");
            break;
        }
        if (!g) {
            if (wh_tensor_numel(root) != 1) {
                st = wh_fail(WH_ERR_SHAPE, "backward: a gradient can only be created implicitly "
                             "for a one-element output, this one has shape %s; pass a gradient",
                             wh_shape_str(root, a, sizeof a));
                break;
            }
            /* The seed lives on the root's device, as every gradient of it will. */
            st = wh_tensor_empty(root->dtype, root->ndim, root->shape, root->storage->allocator,
                                 &seed);
            if (st == WH_OK) st = wh_fill(seed, 1.0);
        } else if (!wh_tensor_same_shape(g, root)) {
            st = wh_fail(WH_ERR_SHAPE, "backward: gradient shape %s does not match output "
                         "shape %s", wh_shape_str(g, a, sizeof a), wh_shape_str(root, b, sizeof b));
        } else {
            st = wh_tensor_empty(root->dtype, root->ndim, root->shape, root->storage->allocator,
                                 &seed);
            if (st == WH_OK) st = wh_copy_into(seed, g);
        }
        if (st != WH_OK) {
            wh_tensor_clear(&seed);
            break;
        }
        if (root->grad_fn) st = accumulate(&root->grad_fn->grad_accum, seed);
        else {
            int ci = capture_index_leaf(capture, root);
            if (ci >= 0) st = accumulate(&capture->grads[ci], seed);
            else if (!capture) st = accumulate_leaf(root, seed);
        }
        wh_tensor_release(seed);
    }
    for (int r = 0; r < nroots && st == WH_OK; r++) {
        wh_node *rn = roots[r]->grad_fn;
        if (rn && rn->pending == 0 && rn->visit == epoch) {
            rn->pending = -1; /* queued */
            st = list_push(&ready, rn);
        }
    }

    /* 3. Run nodes whose every consumer has contributed its gradient.  The
     *    backward functions call ordinary ops, which must not record. */
    bool grad_mode = wh_set_grad_enabled(false);
    wh_tensor *gin_small[8], **gin = gin_small;
    size_t gin_cap = 8;
    while (st == WH_OK && ready.n) {
        wh_node *n = ready.items[--ready.n];
        wh_tensor *gout = n->grad_accum;
        n->grad_accum = NULL;
        if (!gout) continue; /* reached but no gradient flowed (cannot happen for roots) */

        int ci = capture_index_node(capture, n);
        if (ci >= 0) st = accumulate(&capture->grads[ci], gout);
        if (st == WH_OK && n->retained && !capture)
            st = accumulate_leaf(n->retained, gout);

        wh_tensor *gc = NULL;
        if (st == WH_OK) st = wh_contiguous_raw(gout, false, &gc);
        wh_tensor_release(gout);
        if (st != WH_OK) break;

        if ((size_t)n->ninputs > gin_cap) {
            wh_tensor **bigger = malloc((size_t)n->ninputs * sizeof *bigger);
            if (!bigger) {
                st = wh_fail(WH_ERR_MEMORY, "autograd: out of memory");
                wh_tensor_release(gc);
                break;
            }
            if (gin != gin_small) free(gin);
            gin = bigger;
            gin_cap = (size_t)n->ninputs;
        }
        memset(gin, 0, (size_t)n->ninputs * sizeof *gin);
        st = n->backward(n, gc, gin);
        wh_tensor_release(gc);

        for (int i = 0; i < n->ninputs; i++) {
            wh_tensor *g = gin[i];
            if (!g) continue;
            if (st == WH_OK) {
                char a[128], b[128];
                const wh_meta *m = &n->input_meta[i];
                if (g->ndim != m->ndim || memcmp(g->shape, m->shape, sizeof(int64_t) * (size_t)m->ndim))
                    st = wh_fail(WH_ERR_STATE, "autograd: '%s' produced a gradient of shape %s "
                                 "for input %d of shape %s", n->name, wh_shape_str(g, a, sizeof a),
                                 i + 1, wh_dims_str(m->ndim, m->shape, b, sizeof b));
            }
            if (st == WH_OK) {
                if (n->next[i].node) {
                    st = accumulate(&n->next[i].node->grad_accum, g);
                } else if (n->next[i].leaf) {
                    int li = capture_index_leaf(capture, n->next[i].leaf);
                    if (li >= 0) st = accumulate(&capture->grads[li], g);
                    else if (!capture) st = accumulate_leaf(n->next[i].leaf, g);
                }
            }
            wh_tensor_release(g);
        }
        if (st != WH_OK) break;
        for (int i = 0; i < n->ninputs && st == WH_OK; i++) {
            wh_node *c = n->next[i].node;
            if (c && --c->pending == 0) {
                c->pending = -1;
                st = list_push(&ready, c);
            }
        }
        if (!retain_graph) node_free_graph(n);
    }
    if (gin != gin_small) free(gin);
    wh_set_grad_enabled(grad_mode);

    /* 4. Drop leftover gradients (on error) and our references. */
    for (size_t k = 0; k < all.n; k++) {
        wh_tensor_clear(&all.items[k]->grad_accum);
        wh_node_release(all.items[k]);
    }
    free(all.items);
    free(ready.items);
    return st;
}

wh_status wh_backward(wh_tensor *root, wh_tensor *grad_output, bool retain_graph) {
    return run_backward(1, &root, grad_output ? &grad_output : NULL, retain_graph, NULL);
}

wh_status wh_autograd_grad(int nroots, wh_tensor *const *roots, wh_tensor *const *grad_outputs,
                           int ninputs, wh_tensor *const *inputs, bool retain_graph,
                           wh_tensor **grads) {
    for (int i = 0; i < ninputs; i++) {
        grads[i] = NULL;
        if (!inputs[i]->requires_grad)
            return wh_fail(WH_ERR_STATE, "grad: input %d does not require grad", i + 1);
    }
    capture_set c = {ninputs, inputs, grads};
    wh_status st = run_backward(nroots, roots, grad_outputs, retain_graph, &c);
    for (int i = 0; i < ninputs && st == WH_OK; i++)
        if (!grads[i]) st = wh_tensor_zeros_like(inputs[i], &grads[i]);
    if (st != WH_OK)
        for (int i = 0; i < ninputs; i++) wh_tensor_clear(&grads[i]);
    return st;
}
