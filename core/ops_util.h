/* Helpers shared by the ops_*.c files: argument checks that produce
 * messages naming the op, the argument and its shape, and a strided
 * multi-operand row iterator for broadcasting loops. */
#ifndef WHORL_OPS_UTIL_H
#define WHORL_OPS_UTIL_H

#include "ops.h"

/* `arg` names the argument in messages ("input", "weight", ...).
 * wh_check_float and wh_check_cpu accept CPU tensors only: code that reads
 * tensor data on the host relies on them.  Ops with a device path (they
 * call the tensor's backend, see backend.h) use the _dev / device forms,
 * which accept any device whose backend is loaded. */
wh_status wh_check_float(const char *op, const char *arg, const wh_tensor *t);
wh_status wh_check_float_dev(const char *op, const char *arg, const wh_tensor *t);
wh_status wh_check_same_dtype(const char *op, const wh_tensor *a, const wh_tensor *b);
wh_status wh_check_cpu(const char *op, const wh_tensor *t);
wh_status wh_check_device(const char *op, const wh_tensor *t);
/* ndim must equal `ndim` (names the expected layout, e.g. "(N,C,H,W)"). */
wh_status wh_check_ndim(const char *op, const char *arg, const wh_tensor *t, int ndim,
                        const char *layout);
/* In-place ops may not write into a leaf that requires grad while recording,
 * nor into a tensor whose autograd history they would silently break.
 * Accepts any device with a loaded backend. */
wh_status wh_check_inplace(const char *op, const wh_tensor *t);
/* A contiguous version of t (new reference; t itself when already so). */
wh_status wh_contig(wh_tensor *t, wh_tensor **out);

/* Iterates the rows (all dims but the last) of an output shape with up to
 * four operands, each with its own strides on that shape (0 where it is
 * broadcast).  Rows are independent, so the loop over rows can be parallel. */
enum { WH_ITER_MAX_OPS = 4 };
typedef struct {
    int ndim;        /* >= 1: 0-d shapes are treated as [1] */
    int64_t shape[WH_MAX_DIMS];
    int nops;
    int64_t stride[WH_ITER_MAX_OPS][WH_MAX_DIMS];
    int64_t offset[WH_ITER_MAX_OPS];
    int64_t rows, inner;
} wh_row_iter;
/* Sets up the iterator over `shape` for operands ts (each broadcastable to
 * shape; a NULL entry is a contiguous tensor of exactly `shape`). */
wh_status wh_row_iter_init(wh_row_iter *it, int ndim, const int64_t *shape, int nops,
                           wh_tensor *const *ts);
/* Element offsets (from each operand's storage start) of the first element of row r. */
void wh_row_iter_offsets(const wh_row_iter *it, int64_t r, int64_t *offs);

#endif
