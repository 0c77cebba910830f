/* The caching device allocator and host transfers.
 *
 * cudaMalloc and cudaFree synchronise the device and cost tens of
 * microseconds, and a training step frees and re-allocates the same
 * activation sizes every iteration, so freed blocks are kept in free lists
 * per size class and handed out again.  Sizes are rounded up to the class:
 * multiples of 512 bytes up to 1 MiB, then four classes per power of two
 * (at most 25% waste).  Every kernel and copy of a device runs on its one
 * stream, so a block freed on the host can be reused at once: the next user
 * is queued after the last one.  When cudaMalloc runs out of memory, the
 * cached blocks of the device are freed and the allocation retried once.
 *
 * Host copies go through two pinned staging buffers per device, chunk by
 * chunk: while one chunk crosses the bus the CPU fills or drains the other,
 * so a batch upload runs at pinned-memory speed without the caller pinning
 * anything, and an upload returns as soon as the source has been read. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

enum {
    SMALL_LIMIT = 1 << 20,               /* classes of 512 bytes up to here */
    SMALL_CLASSES = SMALL_LIMIT / 512 + 1,
    NCLASSES = SMALL_CLASSES + 4 * 44,   /* quarter powers of two up to 2^64 */
    STAGE_BYTES = 4 << 20,               /* one pinned staging chunk */
    DIRECT_LIMIT = 256 << 10             /* smaller copies skip the staging */
};

typedef struct block {
    void *ptr;
    struct block *next;
} block;

typedef struct {
    wh_allocator base;
    char name[16];
    int index;
    pthread_mutex_t lock;
    block *free_list[NCLASSES];
    wh_device_memory_stats stats;
    /* staging */
    pthread_mutex_t stage_lock;
    void *stage[2];
    cudaEvent_t stage_done[2];
    bool stage_busy[2];
} device_alloc;

static device_alloc *allocs;
static int nallocs;

/* The class of a request and the size it is rounded up to. */
static int size_class(size_t nbytes, size_t *rounded) {
    if (nbytes == 0) nbytes = 1;
    if (nbytes <= SMALL_LIMIT) {
        size_t c = (nbytes + 511) / 512;
        *rounded = c * 512;
        return (int)c;
    }
    int e = 63 - __builtin_clzll((unsigned long long)(nbytes - 1)); /* 2^e < n <= 2^(e+1) */
    size_t base = (size_t)1 << e, quarter = base >> 2;
    size_t k = (nbytes - base + quarter - 1) / quarter;             /* 1..4 */
    *rounded = base + k * quarter;
    return SMALL_CLASSES + (e - 20) * 4 + (int)(k - 1);
}

static device_alloc *alloc_of(wh_allocator *self) { return (device_alloc *)self; }

/* Frees every cached block of a device (lock held). */
static void release_cached(device_alloc *a) {
    whc_device *d;
    if (whc_device_get(a->index, &d) != WH_OK) return;
    for (int c = 0; c < NCLASSES; c++) {
        while (a->free_list[c]) {
            block *b = a->free_list[c];
            a->free_list[c] = b->next;
            cudaFree(b->ptr);
            free(b);
        }
    }
    cudaGetLastError();
    a->stats.reserved_bytes = a->stats.allocated_bytes;
    a->stats.cached_blocks = 0;
}

static void *dev_alloc(wh_allocator *self, size_t nbytes) {
    device_alloc *a = alloc_of(self);
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    void *p = NULL;
    pthread_mutex_lock(&a->lock);
    a->stats.allocations++;
    if (a->free_list[c]) {
        block *b = a->free_list[c];
        a->free_list[c] = b->next;
        p = b->ptr;
        free(b);
        a->stats.cache_hits++;
        a->stats.cached_blocks--;
    } else {
        whc_device *d;
        if (whc_device_get(a->index, &d) != WH_OK) {
            pthread_mutex_unlock(&a->lock);
            return NULL;
        }
        cudaError_t e = cudaMalloc(&p, rounded);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            release_cached(a);
            a->stats.oom_retries++;
            e = cudaMalloc(&p, rounded);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            whc_fail(e == cudaErrorMemoryAllocation ? WH_ERR_MEMORY : WH_ERR_DEVICE,
                     "cudaMalloc of %zu bytes on %s failed: %s (%zu bytes in use)", rounded,
                     a->name, cudaGetErrorString(e), a->stats.allocated_bytes);
            pthread_mutex_unlock(&a->lock);
            return NULL;
        }
        a->stats.device_mallocs++;
        a->stats.reserved_bytes += rounded;
    }
    a->stats.allocated_bytes += rounded;
    if (a->stats.allocated_bytes > a->stats.peak_allocated_bytes)
        a->stats.peak_allocated_bytes = a->stats.allocated_bytes;
    pthread_mutex_unlock(&a->lock);
    return p;
}

static void dev_free(wh_allocator *self, void *ptr, size_t nbytes) {
    if (!ptr) return;
    device_alloc *a = alloc_of(self);
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    block *b = malloc(sizeof *b);
    pthread_mutex_lock(&a->lock);
    a->stats.allocated_bytes -= rounded;
    if (b) {
        b->ptr = ptr;
        b->next = a->free_list[c];
        a->free_list[c] = b;
        a->stats.cached_blocks++;
    } else {
        /* no memory for the list node: give the block back instead */
        whc_device *d;
        if (whc_device_get(a->index, &d) == WH_OK) cudaFree(ptr);
        cudaGetLastError();
        a->stats.reserved_bytes -= rounded;
    }
    pthread_mutex_unlock(&a->lock);
}

/* ---- host transfers ----------------------------------------------------------------------------- */

static wh_status stage_ready(device_alloc *a) {
    for (int i = 0; i < 2; i++) {
        if (a->stage[i]) continue;
        WHC_CUDA(cudaHostAlloc(&a->stage[i], STAGE_BYTES, cudaHostAllocDefault));
        WHC_CUDA(cudaEventCreateWithFlags(&a->stage_done[i], cudaEventDisableTiming));
    }
    return WH_OK;
}

/* Device -> host: waits for the device's queued work, then copies. */
static wh_status copy_to_host_locked(device_alloc *a, whc_device *d, char *dst, const char *src,
                                     size_t n) {
    if (n <= DIRECT_LIMIT) {
        WHC_CUDA(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, d->stream));
        WHC_CUDA(cudaStreamSynchronize(d->stream));
        return WH_OK;
    }
    WH_TRY(stage_ready(a));
    size_t nchunks = (n + STAGE_BYTES - 1) / STAGE_BYTES;
    for (size_t i = 0; i <= nchunks; i++) {
        if (i < nchunks) {
            /* the buffer's previous chunk was drained in the previous iteration */
            int k = (int)(i & 1);
            size_t off = i * STAGE_BYTES, len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
            WHC_CUDA(cudaMemcpyAsync(a->stage[k], src + off, len, cudaMemcpyDeviceToHost,
                                     d->stream));
            WHC_CUDA(cudaEventRecord(a->stage_done[k], d->stream));
        }
        if (i > 0) {
            int k = (int)((i - 1) & 1);
            size_t off = (i - 1) * STAGE_BYTES, len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
            WHC_CUDA(cudaEventSynchronize(a->stage_done[k]));
            memcpy(dst + off, a->stage[k], len);
        }
    }
    return WH_OK;
}

/* Host -> device: returns once the source has been read. */
static wh_status copy_from_host_locked(device_alloc *a, whc_device *d, char *dst, const char *src,
                                       size_t n) {
    if (n <= DIRECT_LIMIT) {
        /* from pageable memory the call returns once src was read */
        WHC_CUDA(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, d->stream));
        return WH_OK;
    }
    WH_TRY(stage_ready(a));
    for (size_t off = 0, i = 0; off < n; off += STAGE_BYTES, i++) {
        int k = (int)(i & 1);
        size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
        if (a->stage_busy[k]) WHC_CUDA(cudaEventSynchronize(a->stage_done[k]));
        memcpy(a->stage[k], src + off, len);
        WHC_CUDA(cudaMemcpyAsync(dst + off, a->stage[k], len, cudaMemcpyHostToDevice, d->stream));
        WHC_CUDA(cudaEventRecord(a->stage_done[k], d->stream));
        a->stage_busy[k] = true;
    }
    return WH_OK;
}

static wh_status dev_copy_to_host(wh_allocator *self, void *dst, const void *src, size_t n) {
    device_alloc *a = alloc_of(self);
    whc_device *d;
    WH_TRY(whc_device_get(a->index, &d));
    pthread_mutex_lock(&a->stage_lock);
    wh_status st = copy_to_host_locked(a, d, dst, src, n);
    pthread_mutex_unlock(&a->stage_lock);
    return st;
}

static wh_status dev_copy_from_host(wh_allocator *self, void *dst, const void *src, size_t n) {
    device_alloc *a = alloc_of(self);
    whc_device *d;
    WH_TRY(whc_device_get(a->index, &d));
    pthread_mutex_lock(&a->stage_lock);
    wh_status st = copy_from_host_locked(a, d, dst, src, n);
    pthread_mutex_unlock(&a->stage_lock);
    return st;
}

/* ---- the library's interface ---------------------------------------------------------------------- */

wh_status whc_allocator_init(int device_count) {
    allocs = calloc((size_t)device_count, sizeof *allocs);
    if (!allocs) return whc_fail(WH_ERR_MEMORY, "out of memory");
    nallocs = device_count;
    for (int i = 0; i < device_count; i++) {
        device_alloc *a = &allocs[i];
        snprintf(a->name, sizeof a->name, "cuda:%d", i);
        a->index = i;
        pthread_mutex_init(&a->lock, NULL);
        pthread_mutex_init(&a->stage_lock, NULL);
        a->base.name = a->name;
        a->base.device = (wh_device){WH_CUDA, i};
        a->base.alloc = dev_alloc;
        a->base.free = dev_free;
        a->base.copy_to_host = dev_copy_to_host;
        a->base.copy_from_host = dev_copy_from_host;
        a->base.ctx = a;
    }
    return WH_OK;
}

wh_allocator *whc_allocator(int index) {
    return index >= 0 && index < nallocs ? &allocs[index].base : NULL;
}

void whc_empty_cache(void) {
    for (int i = 0; i < nallocs; i++) {
        pthread_mutex_lock(&allocs[i].lock);
        release_cached(&allocs[i]);
        pthread_mutex_unlock(&allocs[i].lock);
    }
}

void whc_memory_stats(int index, wh_device_memory_stats *s) {
    memset(s, 0, sizeof *s);
    if (index < 0 || index >= nallocs) return;
    pthread_mutex_lock(&allocs[index].lock);
    *s = allocs[index].stats;
    pthread_mutex_unlock(&allocs[index].lock);
}

wh_status whc_malloc(int index, size_t bytes, void **out) {
    wh_allocator *a = whc_allocator(index);
    if (!a) return whc_fail(WH_ERR_DEVICE, "cuda:%d does not exist", index);
    *out = a->alloc(a, bytes);
    return *out ? WH_OK : WH_ERR_MEMORY; /* the allocator has set the message */
}

void whc_free(int index, void *ptr, size_t bytes) {
    wh_allocator *a = whc_allocator(index);
    if (a) a->free(a, ptr, bytes);
}
