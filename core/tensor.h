/* Tensors: refcounted storage, and views onto it with shape, strides and an
 * offset (all counted in elements, not bytes).
 *
 * Ownership: every function that returns a new wh_tensor* through an out
 * parameter hands the caller one reference; release it with wh_tensor_release.
 * Views share storage with their base; writes through a view are seen by the
 * base.  The storage records the device it lives on through its allocator, so
 * a GPU backend can plug in its own allocator without touching this file. */
#ifndef WHORL_TENSOR_H
#define WHORL_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define WH_MAX_DIMS 8

typedef enum { WH_FLOAT32 = 0, WH_FLOAT64 = 1, WH_UINT8 = 2 } wh_dtype;
typedef enum { WH_CPU = 0, WH_CUDA = 1 } wh_device_type;

typedef struct {
    wh_device_type type;
    int index;
} wh_device;

typedef struct wh_allocator wh_allocator;
struct wh_allocator {
    const char *name;
    wh_device device;
    void *(*alloc)(wh_allocator *self, size_t nbytes);
    void (*free)(wh_allocator *self, void *ptr, size_t nbytes);
    /* Optional: copy between this device and the host (NULL for the CPU). */
    wh_status (*copy_to_host)(wh_allocator *self, void *dst, const void *src, size_t nbytes);
    wh_status (*copy_from_host)(wh_allocator *self, void *dst, const void *src, size_t nbytes);
    void *ctx;
};

typedef struct {
    int64_t refcount;
    void *data;
    size_t nbytes;
    wh_allocator *allocator;
    /* Bumped by every in-place write, so autograd can tell that a tensor it
     * saved for backward was modified afterwards. */
    uint64_t version;
} wh_storage;

typedef struct wh_node wh_node;

typedef struct wh_tensor {
    int64_t refcount;
    wh_dtype dtype;
    int ndim;
    int64_t shape[WH_MAX_DIMS];
    int64_t stride[WH_MAX_DIMS];
    int64_t offset;
    wh_storage *storage;

    /* autograd */
    bool requires_grad;
    bool retains_grad;       /* keep .grad on a non-leaf after backward */
    struct wh_tensor *grad;  /* accumulated gradient, or NULL */
    wh_node *grad_fn;        /* the op that made this tensor, NULL for leaves */
} wh_tensor;

/* ---- dtypes and devices -------------------------------------------------- */
size_t wh_dtype_size(wh_dtype dt);
const char *wh_dtype_name(wh_dtype dt);
bool wh_dtype_is_float(wh_dtype dt);
wh_allocator *wh_cpu_allocator(void);
const char *wh_device_name(wh_device d, char *buf, size_t n);

/* Live bytes held by all storages of all devices, and by CPU storages
 * (the Lua binding feeds the latter to the garbage collector). */
size_t wh_memory_live_bytes(void);
size_t wh_memory_peak_bytes(void);
/* Other large C memory (match cylinders, image surfaces) counted in the live
 * bytes while it is held, so the binding's collector pacing sees it too:
 * + bytes when allocated, - the same when freed. */
void wh_memory_note_external(ptrdiff_t bytes);
/* Frees cached blocks of the CPU allocator. */
void wh_cpu_allocator_empty_cache(void);

/* ---- lifetime ------------------------------------------------------------ */
void wh_tensor_retain(wh_tensor *t);
void wh_tensor_release(wh_tensor *t);
/* Releases *pt if set and clears it; convenient in error paths. */
void wh_tensor_clear(wh_tensor **pt);

/* ---- creation ------------------------------------------------------------ */
/* Uninitialised contiguous tensor (allocated through `alloc`, or the CPU
 * allocator when NULL). */
wh_status wh_tensor_empty(wh_dtype dt, int ndim, const int64_t *shape,
                          wh_allocator *alloc, wh_tensor **out);
wh_status wh_tensor_zeros(wh_dtype dt, int ndim, const int64_t *shape, wh_tensor **out);
/* Zeros allocated through `alloc` (the CPU allocator when NULL), so on its
 * device: what backward functions use for gradients of their inputs. */
wh_status wh_tensor_zeros_on(wh_dtype dt, int ndim, const int64_t *shape, wh_allocator *alloc,
                             wh_tensor **out);
wh_status wh_tensor_full(wh_dtype dt, int ndim, const int64_t *shape, double value,
                         wh_tensor **out);
/* [start, stop) by step, as a 1-d tensor. */
wh_status wh_tensor_arange(wh_dtype dt, double start, double stop, double step,
                           wh_tensor **out);
/* Copies nbytes of raw host memory (the tensor's dtype, row-major). */
wh_status wh_tensor_from_bytes(wh_dtype dt, int ndim, const int64_t *shape,
                               const void *bytes, size_t nbytes, wh_tensor **out);
/* A new contiguous tensor of the same shape, dtype and device. */
wh_status wh_tensor_empty_like(const wh_tensor *t, wh_tensor **out);
wh_status wh_tensor_zeros_like(const wh_tensor *t, wh_tensor **out);

/* ---- queries ------------------------------------------------------------- */
int64_t wh_tensor_numel(const wh_tensor *t);
bool wh_tensor_is_contiguous(const wh_tensor *t);
wh_device wh_tensor_device(const wh_tensor *t);
bool wh_tensor_same_shape(const wh_tensor *a, const wh_tensor *b);
/* Address of element 0 of the view (storage data + offset). */
void *wh_tensor_data(const wh_tensor *t);
/* "[16, 1, 224, 224]" into buf. */
const char *wh_shape_str(const wh_tensor *t, char *buf, size_t n);
const char *wh_dims_str(int ndim, const int64_t *shape, char *buf, size_t n);
/* Reads/writes one element as double; index has t->ndim entries (checked).
 * On a device each call is a transfer of one element: for occasional use. */
wh_status wh_tensor_get(const wh_tensor *t, const int64_t *index, double *value);
wh_status wh_tensor_set(wh_tensor *t, const int64_t *index, double value);
/* Normalises a possibly negative dim against ndim (ndim_plus for unsqueeze). */
wh_status wh_check_dim(const char *op, int *dim, int ndim);

/* ---- raw views (no autograd; the ops layer wraps these) ------------------ */
wh_status wh_view_raw(wh_tensor *t, int ndim, const int64_t *shape, wh_tensor **out);
wh_status wh_permute_raw(wh_tensor *t, const int *perm, wh_tensor **out);
wh_status wh_narrow_raw(wh_tensor *t, int dim, int64_t start, int64_t length, wh_tensor **out);
wh_status wh_select_raw(wh_tensor *t, int dim, int64_t index, wh_tensor **out);
wh_status wh_expand_raw(wh_tensor *t, int ndim, const int64_t *shape, wh_tensor **out);
/* A tensor sharing storage, shape and strides, with no autograd history. */
wh_status wh_alias(wh_tensor *t, wh_tensor **out);

/* ---- copies -------------------------------------------------------------- */
/* dst <- src elementwise (shapes must be equal, dtypes may differ, any strides;
 * any devices: copies within a device run on its backend, copies between
 * devices go through the allocators' host copy hooks). */
wh_status wh_copy_into(wh_tensor *dst, const wh_tensor *src);
/* A contiguous copy (or a new reference to t when already contiguous and
 * `force` is false). */
wh_status wh_contiguous_raw(wh_tensor *t, bool force, wh_tensor **out);
wh_status wh_to_dtype_raw(wh_tensor *t, wh_dtype dt, wh_tensor **out);
/* Fills every element (any strides). */
wh_status wh_fill(wh_tensor *t, double value);
/* Marks the storage as modified in place. */
void wh_tensor_bump_version(wh_tensor *t);

/* ---- broadcasting --------------------------------------------------------- */
/* The broadcast shape of a and b (NumPy rules), or WH_ERR_SHAPE naming both. */
wh_status wh_broadcast_shape(const char *op, const wh_tensor *a, const wh_tensor *b,
                             int *ndim, int64_t *shape);

/* ---- random numbers --------------------------------------------------------
 * One global generator (xoshiro256**), seeded and reproducible; its state can
 * be saved and restored as 4 64-bit words. */
void wh_rng_seed(uint64_t seed);
void wh_rng_get_state(uint64_t state[4]);
void wh_rng_set_state(const uint64_t state[4]);
uint64_t wh_rng_next(void);
double wh_rng_uniform(void); /* [0, 1) */
double wh_rng_normal(void);  /* N(0, 1) */
wh_status wh_tensor_rand(wh_dtype dt, int ndim, const int64_t *shape, double lo, double hi,
                         wh_tensor **out);
wh_status wh_tensor_randn(wh_dtype dt, int ndim, const int64_t *shape, double mean,
                          double std, wh_tensor **out);

/* Calls body for every element offset of a strided tensor, in row-major
 * order.  Used by the generic (non-contiguous) paths. */
#define WH_FOR_EACH_OFFSET(t, off_var, body)                                   \
    do {                                                                       \
        const wh_tensor *wh_it_t_ = (t);                                       \
        int64_t wh_it_idx_[WH_MAX_DIMS] = {0};                                 \
        int64_t wh_it_n_ = wh_tensor_numel(wh_it_t_);                          \
        int64_t off_var = wh_it_t_->offset;                                    \
        for (int64_t wh_it_i_ = 0; wh_it_i_ < wh_it_n_; wh_it_i_++) {          \
            body;                                                              \
            for (int wh_it_d_ = wh_it_t_->ndim - 1; wh_it_d_ >= 0; wh_it_d_--) { \
                if (++wh_it_idx_[wh_it_d_] < wh_it_t_->shape[wh_it_d_]) {      \
                    off_var += wh_it_t_->stride[wh_it_d_];                     \
                    break;                                                     \
                }                                                              \
                off_var -= wh_it_t_->stride[wh_it_d_] * (wh_it_t_->shape[wh_it_d_] - 1); \
                wh_it_idx_[wh_it_d_] = 0;                                      \
            }                                                                  \
        }                                                                      \
    } while (0)

#endif
