/* Tensor lifetime, creation, views and copies.  See tensor.h. */
#include "tensor.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "backend.h"

/* ---- dtypes ---------------------------------------------------------------- */

size_t wh_dtype_size(wh_dtype dt) {
    switch (dt) {
    case WH_FLOAT32: return 4;
    case WH_FLOAT64: return 8;
    case WH_UINT8: return 1;
    }
    return 0;
}

const char *wh_dtype_name(wh_dtype dt) {
    switch (dt) {
    case WH_FLOAT32: return "float32";
    case WH_FLOAT64: return "float64";
    case WH_UINT8: return "uint8";
    }
    return "?";
}

bool wh_dtype_is_float(wh_dtype dt) { return dt == WH_FLOAT32 || dt == WH_FLOAT64; }

const char *wh_device_name(wh_device d, char *buf, size_t n) {
    if (d.type == WH_CPU) snprintf(buf, n, "cpu");
    else snprintf(buf, n, "cuda:%d", d.index);
    return buf;
}

/* ---- the CPU allocator ------------------------------------------------------
 * Large blocks are cached by exact (page-rounded) size and handed out again,
 * because a training step frees and re-allocates the same activation sizes
 * every iteration; going back to the kernel for them (mmap/munmap and page
 * faults) is where PyTorch's CPU path loses much of its time. */

static atomic_size_t live_bytes, peak_bytes;

enum { CACHE_SLOTS = 256, CACHE_MIN_BYTES = 64 * 1024 };
/* A training step of the seed model at batch 16 and 224x224 cycles through
 * about 1.2 GB of activations and gradients; a cache smaller than that
 * would send the largest blocks back to the kernel every step. */
static const size_t cache_limit_bytes = (size_t)2 << 30;

static struct {
    pthread_mutex_t lock;
    size_t bytes;
    int count;
    struct { void *ptr; size_t nbytes; } block[CACHE_SLOTS];
} cpu_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static size_t round_block(size_t nbytes) {
    if (nbytes < CACHE_MIN_BYTES) return (nbytes + 63) & ~(size_t)63;
    return (nbytes + 4095) & ~(size_t)4095;
}

static void *cpu_alloc(wh_allocator *self, size_t nbytes) {
    size_t size = round_block(nbytes ? nbytes : 64);
    if (size >= CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cpu_cache.lock);
        for (int i = cpu_cache.count - 1; i >= 0; i--) {
            if (cpu_cache.block[i].nbytes == size) {
                void *p = cpu_cache.block[i].ptr;
                cpu_cache.block[i] = cpu_cache.block[--cpu_cache.count];
                cpu_cache.bytes -= size;
                pthread_mutex_unlock(&cpu_cache.lock);
                return p;
            }
        }
        pthread_mutex_unlock(&cpu_cache.lock);
    }
    return aligned_alloc(64, size);
}

static void cpu_free(wh_allocator *self, void *ptr, size_t nbytes) {
    size_t size = round_block(nbytes ? nbytes : 64);
    if (size >= CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cpu_cache.lock);
        if (cpu_cache.count < CACHE_SLOTS && cpu_cache.bytes + size <= cache_limit_bytes) {
            cpu_cache.block[cpu_cache.count].ptr = ptr;
            cpu_cache.block[cpu_cache.count].nbytes = size;
            cpu_cache.count++;
            cpu_cache.bytes += size;
            pthread_mutex_unlock(&cpu_cache.lock);
            return;
        }
        pthread_mutex_unlock(&cpu_cache.lock);
    }
    free(ptr);
}

void wh_cpu_allocator_empty_cache(void) {
    pthread_mutex_lock(&cpu_cache.lock);
    for (int i = 0; i < cpu_cache.count; i++) free(cpu_cache.block[i].ptr);
    cpu_cache.count = 0;
    cpu_cache.bytes = 0;
    pthread_mutex_unlock(&cpu_cache.lock);
}

static wh_allocator cpu_allocator = {
    .name = "cpu", .device = { WH_CPU, 0 }, .alloc = cpu_alloc, .free = cpu_free,
};

wh_allocator *wh_cpu_allocator(void) { return &cpu_allocator; }

size_t wh_memory_live_bytes(void) { return atomic_load(&live_bytes); }

void wh_memory_note_external(ptrdiff_t bytes) {
    if (bytes < 0) {
        atomic_fetch_sub(&live_bytes, (size_t)-bytes);
        return;
    }
    size_t now = atomic_fetch_add(&live_bytes, (size_t)bytes) + (size_t)bytes;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {}
}
size_t wh_memory_peak_bytes(void) { return atomic_load(&peak_bytes); }

/* ---- storage ---------------------------------------------------------------- */

static wh_status storage_new(size_t nbytes, wh_allocator *alloc, wh_storage **out) {
    wh_storage *s = calloc(1, sizeof *s);
    if (!s) return wh_fail(WH_ERR_MEMORY, "out of memory allocating a storage header");
    s->data = alloc->alloc(alloc, nbytes);
    if (!s->data) {
        free(s);
        return wh_fail(WH_ERR_MEMORY, "out of memory allocating %zu bytes on %s", nbytes,
                       alloc->name);
    }
    s->refcount = 1;
    s->nbytes = nbytes;
    s->allocator = alloc;
    size_t now = atomic_fetch_add(&live_bytes, nbytes) + nbytes;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {}
    *out = s;
    return WH_OK;
}

static void storage_release(wh_storage *s) {
    if (!s || --s->refcount > 0) return;
    s->allocator->free(s->allocator, s->data, s->nbytes);
    atomic_fetch_sub(&live_bytes, s->nbytes);
    free(s);
}

/* ---- lifetime --------------------------------------------------------------- */

void wh_tensor_retain(wh_tensor *t) {
    if (t) t->refcount++;
}

void wh_tensor_release(wh_tensor *t) {
    if (!t || --t->refcount > 0) return;
    wh_tensor_release(t->grad);
    if (t->grad_fn) {
        if (t->grad_fn->retained == t) t->grad_fn->retained = NULL;
        wh_node_release(t->grad_fn);
    }
    storage_release(t->storage);
    free(t);
}

void wh_tensor_clear(wh_tensor **pt) {
    wh_tensor_release(*pt);
    *pt = NULL;
}

/* A tensor header over `storage` (which it takes a new reference to). */
static wh_status tensor_header(wh_dtype dt, int ndim, const int64_t *shape,
                               const int64_t *stride, int64_t offset, wh_storage *storage,
                               wh_tensor **out) {
    wh_tensor *t = calloc(1, sizeof *t);
    if (!t) return wh_fail(WH_ERR_MEMORY, "out of memory allocating a tensor header");
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    t->offset = offset;
    t->storage = storage;
    storage->refcount++;
    *out = t;
    return WH_OK;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

static wh_status check_shape(const char *op, int ndim, const int64_t *shape, int64_t *numel) {
    if (ndim < 0 || ndim > WH_MAX_DIMS)
        return wh_fail(WH_ERR_SHAPE, "%s: %d dimensions given, whorl supports 0 to %d", op,
                       ndim, WH_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return wh_fail(WH_ERR_SHAPE, "%s: size %lld of dimension %d is negative", op,
                           (long long)shape[i], i + 1);
        if (shape[i] > 0 && n > INT64_MAX / 16 / shape[i])
            return wh_fail(WH_ERR_SHAPE, "%s: shape is too large", op);
        n *= shape[i];
    }
    *numel = n;
    return WH_OK;
}

/* ---- creation --------------------------------------------------------------- */

wh_status wh_tensor_empty(wh_dtype dt, int ndim, const int64_t *shape, wh_allocator *alloc,
                          wh_tensor **out) {
    int64_t n;
    WH_TRY(check_shape("empty", ndim, shape, &n));
    if (wh_dtype_size(dt) == 0) return wh_fail(WH_ERR_DTYPE, "unknown dtype %d", (int)dt);
    wh_storage *s = NULL;
    WH_TRY(storage_new((size_t)n * wh_dtype_size(dt), alloc ? alloc : &cpu_allocator, &s));
    int64_t stride[WH_MAX_DIMS];
    contiguous_strides(ndim, shape, stride);
    wh_status st = tensor_header(dt, ndim, shape, stride, 0, s, out);
    storage_release(s);
    return st;
}

wh_status wh_tensor_full(wh_dtype dt, int ndim, const int64_t *shape, double value,
                         wh_tensor **out) {
    WH_TRY(wh_tensor_empty(dt, ndim, shape, NULL, out));
    wh_status st = wh_fill(*out, value);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_tensor_zeros(wh_dtype dt, int ndim, const int64_t *shape, wh_tensor **out) {
    return wh_tensor_zeros_on(dt, ndim, shape, NULL, out);
}

wh_status wh_tensor_zeros_on(wh_dtype dt, int ndim, const int64_t *shape, wh_allocator *alloc,
                             wh_tensor **out) {
    WH_TRY(wh_tensor_empty(dt, ndim, shape, alloc, out));
    if (alloc && alloc->device.type != WH_CPU) {
        wh_status st = wh_fill(*out, 0);
        if (st != WH_OK) wh_tensor_clear(out);
        return st;
    }
    int64_t n = wh_tensor_numel(*out);
    memset(wh_tensor_data(*out), 0, (size_t)n * wh_dtype_size(dt));
    return WH_OK;
}

wh_status wh_tensor_arange(wh_dtype dt, double start, double stop, double step,
                           wh_tensor **out) {
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
        return wh_fail(WH_ERR_ARG, "arange: step must be non-zero and bounds finite "
                       "(start=%g, stop=%g, step=%g)", start, stop, step);
    double count = ceil((stop - start) / step);
    int64_t n = count > 0 ? (int64_t)count : 0;
    WH_TRY(wh_tensor_empty(dt, 1, &n, NULL, out));
    for (int64_t i = 0; i < n; i++) {
        int64_t idx = i;
        wh_tensor_set(*out, &idx, start + (double)i * step);
    }
    return WH_OK;
}

wh_status wh_tensor_from_bytes(wh_dtype dt, int ndim, const int64_t *shape, const void *bytes,
                               size_t nbytes, wh_tensor **out) {
    int64_t n;
    WH_TRY(check_shape("from_bytes", ndim, shape, &n));
    size_t want = (size_t)n * wh_dtype_size(dt);
    if (nbytes != want) {
        char buf[128];
        return wh_fail(WH_ERR_SHAPE, "from_bytes: %zu bytes given, a %s tensor of shape %s "
                       "needs %zu", nbytes, wh_dtype_name(dt), wh_dims_str(ndim, shape, buf,
                       sizeof buf), want);
    }
    WH_TRY(wh_tensor_empty(dt, ndim, shape, NULL, out));
    if (want) memcpy(wh_tensor_data(*out), bytes, want);
    return WH_OK;
}

wh_status wh_tensor_empty_like(const wh_tensor *t, wh_tensor **out) {
    return wh_tensor_empty(t->dtype, t->ndim, t->shape, t->storage->allocator, out);
}

wh_status wh_tensor_zeros_like(const wh_tensor *t, wh_tensor **out) {
    WH_TRY(wh_tensor_empty_like(t, out));
    wh_status st = wh_fill(*out, 0);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

/* ---- queries ----------------------------------------------------------------- */

int64_t wh_tensor_numel(const wh_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool wh_tensor_is_contiguous(const wh_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

wh_device wh_tensor_device(const wh_tensor *t) { return t->storage->allocator->device; }

bool wh_tensor_same_shape(const wh_tensor *a, const wh_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void *wh_tensor_data(const wh_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)wh_dtype_size(t->dtype);
}

const char *wh_dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

const char *wh_shape_str(const wh_tensor *t, char *buf, size_t n) {
    return wh_dims_str(t->ndim, t->shape, buf, n);
}

static wh_status element_offset(const wh_tensor *t, const int64_t *index, int64_t *off) {
    int64_t o = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        int64_t k = index[i];
        if (k < 0 || k >= t->shape[i]) {
            char buf[128];
            return wh_fail(WH_ERR_INDEX, "index %lld is out of range for dimension %d of "
                           "a tensor of shape %s", (long long)k, i + 1,
                           wh_shape_str(t, buf, sizeof buf));
        }
        o += k * t->stride[i];
    }
    *off = o;
    return WH_OK;
}

static double load_elem(const void *base, wh_dtype dt, int64_t off) {
    switch (dt) {
    case WH_FLOAT32: return ((const float *)base)[off];
    case WH_FLOAT64: return ((const double *)base)[off];
    case WH_UINT8: return ((const uint8_t *)base)[off];
    }
    return 0;
}

static void store_elem(void *base, wh_dtype dt, int64_t off, double v) {
    switch (dt) {
    case WH_FLOAT32: ((float *)base)[off] = (float)v; break;
    case WH_FLOAT64: ((double *)base)[off] = v; break;
    case WH_UINT8: {
        /* saturate, round to nearest: images converted back to bytes */
        double r = isnan(v) ? 0 : v < 0 ? 0 : v > 255 ? 255 : nearbyint(v);
        ((uint8_t *)base)[off] = (uint8_t)r;
        break;
    }
    }
}

/* One element of a device tensor through its allocator's host copy hooks. */
static wh_status device_element(const wh_tensor *t, int64_t off, double *get, const double *set) {
    wh_allocator *a = t->storage->allocator;
    size_t es = wh_dtype_size(t->dtype);
    char *p = (char *)t->storage->data + off * (int64_t)es;
    union { float f; double d; uint8_t u; } cell;
    if (!a->copy_to_host || !a->copy_from_host)
        return wh_fail(WH_ERR_DEVICE, "element access: %s has no host copies", a->name);
    if (get) {
        WH_TRY(a->copy_to_host(a, &cell, p, es));
        *get = load_elem(&cell, t->dtype, 0);
        return WH_OK;
    }
    store_elem(&cell, t->dtype, 0, *set);
    return a->copy_from_host(a, p, &cell, es);
}

wh_status wh_tensor_get(const wh_tensor *t, const int64_t *index, double *value) {
    int64_t off = 0;
    WH_TRY(element_offset(t, index, &off));
    if (wh_tensor_device(t).type != WH_CPU) return device_element(t, off, value, NULL);
    *value = load_elem(t->storage->data, t->dtype, off);
    return WH_OK;
}

wh_status wh_tensor_set(wh_tensor *t, const int64_t *index, double value) {
    int64_t off = 0;
    WH_TRY(element_offset(t, index, &off));
    if (wh_tensor_device(t).type != WH_CPU) return device_element(t, off, NULL, &value);
    store_elem(t->storage->data, t->dtype, off, value);
    return WH_OK;
}

wh_status wh_check_dim(const char *op, int *dim, int ndim) {
    int d = *dim;
    if (d < 0) d += ndim;
    if (d < 0 || d >= ndim || ndim == 0)
        return wh_fail(WH_ERR_INDEX, "%s: dimension %d is out of range for a %d-d tensor", op,
                       *dim, ndim);
    *dim = d;
    return WH_OK;
}

/* ---- raw views ---------------------------------------------------------------- */

static wh_status view_of(wh_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                         int64_t offset, wh_tensor **out) {
    return tensor_header(t->dtype, ndim, shape, stride, offset, t->storage, out);
}

wh_status wh_alias(wh_tensor *t, wh_tensor **out) {
    return view_of(t, t->ndim, t->shape, t->stride, t->offset, out);
}

/* Computes strides for viewing t with a new shape without copying, when the
 * memory layout allows it (the same rule as PyTorch's view). */
static bool view_strides(const wh_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    if (wh_tensor_is_contiguous(t)) {
        contiguous_strides(ndim, shape, stride);
        return true;
    }
    /* Walk chunks of old dims that are mutually contiguous. */
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->ndim ? t->stride[t->ndim - 1] : 1;
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base_stride = t->stride[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

wh_status wh_view_raw(wh_tensor *t, int ndim, const int64_t *shape, wh_tensor **out) {
    int64_t want[WH_MAX_DIMS], n = wh_tensor_numel(t), known = 1;
    int infer = -1;
    char a[128], b[128];
    if (ndim < 0 || ndim > WH_MAX_DIMS)
        return wh_fail(WH_ERR_SHAPE, "view: %d dimensions given, at most %d", ndim, WH_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        want[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return wh_fail(WH_ERR_SHAPE, "view: only one dimension can be -1 in %s",
                               wh_dims_str(ndim, shape, a, sizeof a));
            infer = i;
        } else if (shape[i] < 0) {
            return wh_fail(WH_ERR_SHAPE, "view: invalid size %lld in %s", (long long)shape[i],
                           wh_dims_str(ndim, shape, a, sizeof a));
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || n % known != 0)
            return wh_fail(WH_ERR_SHAPE, "view: cannot view a tensor of shape %s (%lld "
                           "elements) as %s", wh_shape_str(t, a, sizeof a), (long long)n,
                           wh_dims_str(ndim, shape, b, sizeof b));
        want[infer] = n / known;
        known *= want[infer];
    }
    if (known != n)
        return wh_fail(WH_ERR_SHAPE, "view: cannot view a tensor of shape %s (%lld elements) "
                       "as %s (%lld elements)", wh_shape_str(t, a, sizeof a), (long long)n,
                       wh_dims_str(ndim, want, b, sizeof b), (long long)known);
    int64_t stride[WH_MAX_DIMS];
    if (!view_strides(t, ndim, want, stride))
        return wh_fail(WH_ERR_SHAPE, "view: the strides of a tensor of shape %s do not allow "
                       "viewing it as %s without a copy (use reshape or contiguous first)",
                       wh_shape_str(t, a, sizeof a), wh_dims_str(ndim, want, b, sizeof b));
    return view_of(t, ndim, want, stride, t->offset, out);
}

wh_status wh_permute_raw(wh_tensor *t, const int *perm, wh_tensor **out) {
    int64_t shape[WH_MAX_DIMS], stride[WH_MAX_DIMS];
    bool seen[WH_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        if (p < 0) p += t->ndim;
        if (p < 0 || p >= t->ndim || seen[p])
            return wh_fail(WH_ERR_ARG, "permute: argument %d (%d) is not a valid permutation "
                           "entry for a %d-d tensor", i + 1, perm[i], t->ndim);
        seen[p] = true;
        shape[i] = t->shape[p];
        stride[i] = t->stride[p];
    }
    return view_of(t, t->ndim, shape, stride, t->offset, out);
}

wh_status wh_narrow_raw(wh_tensor *t, int dim, int64_t start, int64_t length, wh_tensor **out) {
    WH_TRY(wh_check_dim("narrow", &dim, t->ndim));
    if (start < 0) start += t->shape[dim];
    if (start < 0 || length < 0 || start + length > t->shape[dim])
        return wh_fail(WH_ERR_INDEX, "narrow: range [%lld, %lld) is outside dimension %d of "
                       "size %lld", (long long)start, (long long)(start + length), dim + 1,
                       (long long)t->shape[dim]);
    int64_t shape[WH_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[dim] = length;
    return view_of(t, t->ndim, shape, t->stride, t->offset + start * t->stride[dim], out);
}

wh_status wh_select_raw(wh_tensor *t, int dim, int64_t index, wh_tensor **out) {
    WH_TRY(wh_check_dim("select", &dim, t->ndim));
    int64_t k = index < 0 ? index + t->shape[dim] : index;
    if (k < 0 || k >= t->shape[dim])
        return wh_fail(WH_ERR_INDEX, "select: index %lld is out of range for dimension %d of "
                       "size %lld", (long long)index, dim + 1, (long long)t->shape[dim]);
    int64_t shape[WH_MAX_DIMS], stride[WH_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == dim) continue;
        shape[nd] = t->shape[i];
        stride[nd] = t->stride[i];
        nd++;
    }
    return view_of(t, nd, shape, stride, t->offset + k * t->stride[dim], out);
}

wh_status wh_expand_raw(wh_tensor *t, int ndim, const int64_t *shape, wh_tensor **out) {
    char a[128], b[128];
    if (ndim < t->ndim || ndim > WH_MAX_DIMS)
        return wh_fail(WH_ERR_SHAPE, "expand: cannot expand a tensor of shape %s to %s",
                       wh_shape_str(t, a, sizeof a), wh_dims_str(ndim, shape, b, sizeof b));
    int64_t nshape[WH_MAX_DIMS], nstride[WH_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t want = shape[i];
        if (i < lead) {
            if (want < 0) goto bad;
            nshape[i] = want;
            nstride[i] = 0;
            continue;
        }
        int64_t have = t->shape[i - lead];
        if (want == -1) want = have;
        if (have == want) {
            nshape[i] = have;
            nstride[i] = t->stride[i - lead];
        } else if (have == 1 && want >= 0) {
            nshape[i] = want;
            nstride[i] = 0;
        } else {
            goto bad;
        }
    }
    return view_of(t, ndim, nshape, nstride, t->offset, out);
bad:
    return wh_fail(WH_ERR_SHAPE, "expand: cannot expand a tensor of shape %s to %s (only "
                   "dimensions of size 1 can grow)", wh_shape_str(t, a, sizeof a),
                   wh_dims_str(ndim, shape, b, sizeof b));
}

/* ---- copies -------------------------------------------------------------------- */

void wh_tensor_bump_version(wh_tensor *t) { t->storage->version++; }

/* Host <-> device copy of contiguous tensors of one dtype, through the
 * device allocator's hooks. */
static wh_status host_transfer(wh_tensor *dst, const wh_tensor *src) {
    wh_allocator *da = dst->storage->allocator, *sa = src->storage->allocator;
    size_t nb = (size_t)wh_tensor_numel(src) * wh_dtype_size(src->dtype);
    if (nb == 0) return WH_OK;
    if (da->device.type == WH_CPU && sa->copy_to_host)
        return sa->copy_to_host(sa, wh_tensor_data(dst), wh_tensor_data(src), nb);
    if (sa->device.type == WH_CPU && da->copy_from_host)
        return da->copy_from_host(da, wh_tensor_data(dst), wh_tensor_data(src), nb);
    return wh_fail(WH_ERR_DEVICE, "copy: no host copy between %s and %s", sa->name, da->name);
}

/* Copies where a device is involved.  Within one device the backend copies
 * (any strides, dtype conversion); between devices the bytes cross through
 * the host hooks, with the layout and dtype work done on whichever side
 * has it cheapest: a strided or converting upload is prepared on the CPU,
 * a strided download is made contiguous on the device first. */
static wh_status device_copy(wh_tensor *dst, const wh_tensor *src) {
    wh_device dd = wh_tensor_device(dst), sd = wh_tensor_device(src);
    if (dd.type == sd.type && dd.index == sd.index) {
        const wh_backend *be = wh_backend_of(dst);
        if (!be) return wh_fail(WH_ERR_DEVICE, "copy: no backend for %s", dst->storage->allocator->name);
        return wh_tensor_numel(src) ? be->copy(dst, src) : WH_OK;
    }
    bool plain = dst->dtype == src->dtype && wh_tensor_is_contiguous(dst) &&
                 wh_tensor_is_contiguous(src);
    if (plain && (dd.type == WH_CPU || sd.type == WH_CPU)) return host_transfer(dst, src);
    wh_tensor *a = NULL, *b = NULL;
    wh_status st;
    if (sd.type == WH_CPU) {
        /* CPU -> device: convert on the CPU, upload, place on the device. */
        st = wh_to_dtype_raw((wh_tensor *)src, dst->dtype, &a);
        if (st == WH_OK) st = wh_tensor_empty(dst->dtype, dst->ndim, dst->shape,
                                              dst->storage->allocator, &b);
        if (st == WH_OK) st = host_transfer(b, a);
        if (st == WH_OK) st = wh_copy_into(dst, b);
    } else {
        /* device -> CPU or another device: contiguous on the source device,
         * to the host, then into place. */
        st = wh_contiguous_raw((wh_tensor *)src, false, &a);
        if (st == WH_OK) st = wh_tensor_empty(src->dtype, src->ndim, src->shape, NULL, &b);
        if (st == WH_OK) st = host_transfer(b, a);
        if (st == WH_OK) st = wh_copy_into(dst, b);
    }
    wh_tensor_release(a);
    wh_tensor_release(b);
    return st;
}

wh_status wh_copy_into(wh_tensor *dst, const wh_tensor *src) {
    char a[128], b[128];
    if (!wh_tensor_same_shape(dst, src))
        return wh_fail(WH_ERR_SHAPE, "copy: destination shape %s differs from source shape %s",
                       wh_shape_str(dst, a, sizeof a), wh_shape_str(src, b, sizeof b));
    wh_allocator *da = dst->storage->allocator, *sa = src->storage->allocator;
    if (da->device.type != WH_CPU || sa->device.type != WH_CPU) {
        wh_tensor_bump_version(dst);
        return device_copy(dst, src);
    }
    wh_tensor_bump_version(dst);
    int64_t n = wh_tensor_numel(src);
    if (n == 0) return WH_OK;
    if (dst->dtype == src->dtype && wh_tensor_is_contiguous(dst) && wh_tensor_is_contiguous(src)) {
        memmove(wh_tensor_data(dst), wh_tensor_data(src), (size_t)n * wh_dtype_size(src->dtype));
        return WH_OK;
    }
    /* General path: walk both in row-major order. */
    const void *sbase = src->storage->data;
    void *dbase = dst->storage->data;
    if (dst->dtype == WH_FLOAT32 && src->dtype == WH_FLOAT32 && src->ndim >= 1) {
        /* Fast path for the common float32 strided copy (contiguous()). */
        int64_t inner = src->shape[src->ndim - 1];
        int64_t ss = src->stride[src->ndim - 1], ds = dst->stride[dst->ndim - 1];
        int64_t rows = n / (inner ? inner : 1);
        #pragma omp parallel for if (n > 65536)
        for (int64_t r = 0; r < rows; r++) {
            int64_t rem = r, so = src->offset, dof = dst->offset;
            for (int d = src->ndim - 2; d >= 0; d--) {
                int64_t k = rem % src->shape[d];
                rem /= src->shape[d];
                so += k * src->stride[d];
                dof += k * dst->stride[d];
            }
            const float *sp = (const float *)sbase + so;
            float *dp = (float *)dbase + dof;
            for (int64_t i = 0; i < inner; i++) dp[i * ds] = sp[i * ss];
        }
        return WH_OK;
    }
    int64_t doffs_idx[WH_MAX_DIMS] = {0};
    int64_t doff = dst->offset;
    WH_FOR_EACH_OFFSET(src, soff, {
        store_elem(dbase, dst->dtype, doff, load_elem(sbase, src->dtype, soff));
        for (int d = dst->ndim - 1; d >= 0; d--) {
            if (++doffs_idx[d] < dst->shape[d]) {
                doff += dst->stride[d];
                break;
            }
            doff -= dst->stride[d] * (dst->shape[d] - 1);
            doffs_idx[d] = 0;
        }
    });
    return WH_OK;
}

wh_status wh_contiguous_raw(wh_tensor *t, bool force, wh_tensor **out) {
    if (!force && wh_tensor_is_contiguous(t)) {
        WH_TRY(wh_alias(t, out));
        return WH_OK;
    }
    WH_TRY(wh_tensor_empty(t->dtype, t->ndim, t->shape, t->storage->allocator, out));
    wh_status st = wh_copy_into(*out, t);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_to_dtype_raw(wh_tensor *t, wh_dtype dt, wh_tensor **out) {
    WH_TRY(wh_tensor_empty(dt, t->ndim, t->shape, t->storage->allocator, out));
    wh_status st = wh_copy_into(*out, t);
    if (st != WH_OK) wh_tensor_clear(out);
    return st;
}

wh_status wh_fill(wh_tensor *t, double value) {
    wh_tensor_bump_version(t);
    const wh_backend *be = wh_backend_of(t);
    if (be) return wh_tensor_numel(t) ? be->fill(t, value) : WH_OK;
    if (wh_tensor_device(t).type != WH_CPU)
        return wh_fail(WH_ERR_DEVICE, "fill: no backend for %s", t->storage->allocator->name);
    int64_t n = wh_tensor_numel(t);
    if (wh_tensor_is_contiguous(t)) {
        void *p = wh_tensor_data(t);
        if (t->dtype == WH_FLOAT32) {
            float v = (float)value, *f = p;
            for (int64_t i = 0; i < n; i++) f[i] = v;
        } else if (t->dtype == WH_FLOAT64) {
            double *f = p;
            for (int64_t i = 0; i < n; i++) f[i] = value;
        } else {
            for (int64_t i = 0; i < n; i++) store_elem(p, t->dtype, i, value);
        }
        return WH_OK;
    }
    void *base = t->storage->data;
    WH_FOR_EACH_OFFSET(t, off, store_elem(base, t->dtype, off, value));
    return WH_OK;
}

/* ---- broadcasting --------------------------------------------------------------- */

wh_status wh_broadcast_shape(const char *op, const wh_tensor *a, const wh_tensor *b, int *ndim,
                             int64_t *shape) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[128], y[128];
            return wh_fail(WH_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast together "
                           "(dimension %d: %lld vs %lld)", op, wh_shape_str(a, x, sizeof x),
                           wh_shape_str(b, y, sizeof y), i + 1, (long long)sa, (long long)sb);
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = nd;
    return WH_OK;
}
