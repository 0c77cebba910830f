/* Batches of a preprocessed dataset, built either on the caller's thread or
 * on one background thread that stays `prefetch` batches ahead (see
 * dataset.h).  Both paths call the same build_batch, so they give the same
 * tensors; the thread only changes when the work happens.
 *
 * The thread touches nothing but the loader: the store's pixels (read
 * only; retained by the loader, which the caller frees only after joining),
 * its own copies of the index arrays, and the tensors it allocates (the CPU
 * allocator is thread-safe) and hands over under the mutex. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

typedef struct {
    wh_tensor *x, *y;
    wh_status st;
    char msg[512];
} slot;

struct wh_loader {
    wh_tensor *pixels;
    int64_t *input, *target;
    int64_t items, batch, h, w;
    bool drop_last, background;
    wh_loader_transform transform;
    void *transform_ctx;
    uint64_t seed;

    /* the epoch; order and nbatches change only while the thread is idle */
    int64_t *order, norder, nbatches;
    uint64_t epoch;
    int64_t produced, consumed; /* batches built by the thread / taken by next() */

    pthread_mutex_t mu;
    pthread_cond_t wake_worker, wake_caller;
    pthread_t thread;
    bool thread_started, stop, busy;
    uint64_t generation; /* bumped by every start, so stale batches are dropped */
    slot *ring;
    int cap, head, count;
};

/* ---- building one batch ------------------------------------------------------------------ */

static void copy_row(const wh_tensor *pixels, int64_t row, int64_t hw, float *dst) {
    if (pixels->dtype == WH_FLOAT32) {
        memcpy(dst, (const float *)wh_tensor_data(pixels) + row * hw, sizeof(float) * (size_t)hw);
    } else {
        const uint8_t *s = (const uint8_t *)wh_tensor_data(pixels) + row * hw;
        for (int64_t i = 0; i < hw; i++) dst[i] = s[i] * (1.0f / 255.0f);
    }
}

static wh_status build_batch(const wh_loader *l, const int64_t *order, uint64_t epoch, int64_t b,
                             wh_tensor **x, wh_tensor **y) {
    *x = *y = NULL;
    int64_t start = b * l->batch, n = l->norder - start < l->batch ? l->norder - start : l->batch;
    int64_t shape[4] = {n, 1, l->h, l->w}, hw = l->h * l->w;
    WH_TRY(wh_tensor_empty(WH_FLOAT32, 4, shape, NULL, x));
    wh_status st = l->target ? wh_tensor_empty(WH_FLOAT32, 4, shape, NULL, y) : WH_OK;
    float *xd = wh_tensor_data(*x), *yd = *y ? wh_tensor_data(*y) : NULL;
    uint64_t epoch_seed = wh_seed_mix(l->seed, epoch);
    for (int64_t i = 0; st == WH_OK && i < n; i++) {
        int64_t item = order[start + i];
        copy_row(l->pixels, l->input[item], hw, xd + i * hw);
        if (yd) copy_row(l->pixels, l->target[item], hw, yd + i * hw);
        if (l->transform)
            st = l->transform(l->transform_ctx, xd + i * hw, yd ? yd + i * hw : NULL, l->h, l->w,
                              wh_seed_mix(epoch_seed, (uint64_t)item));
    }
    if (st != WH_OK) wh_tensor_clear(x), wh_tensor_clear(y);
    return st;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void *worker(void *arg) {
    wh_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->produced >= l->nbatches || l->count == l->cap) {
            pthread_cond_wait(&l->wake_worker, &l->mu);
            continue;
        }
        int64_t b = l->produced++;
        uint64_t gen = l->generation, epoch = l->epoch;
        const int64_t *order = l->order;
        l->busy = true;
        pthread_mutex_unlock(&l->mu);

        slot s = {NULL, NULL, WH_OK, ""};
        s.st = build_batch(l, order, epoch, b, &s.x, &s.y);
        if (s.st != WH_OK) snprintf(s.msg, sizeof s.msg, "%s", wh_error_message());

        pthread_mutex_lock(&l->mu);
        l->busy = false;
        if (gen == l->generation && !l->stop) {
            l->ring[(l->head + l->count) % l->cap] = s;
            l->count++;
        } else {
            wh_tensor_release(s.x);
            wh_tensor_release(s.y);
        }
        pthread_cond_broadcast(&l->wake_caller);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Drops queued batches; with the lock held and the thread idle. */
static void drain(wh_loader *l) {
    for (int i = 0; i < l->count; i++) {
        slot *s = &l->ring[(l->head + i) % l->cap];
        wh_tensor_release(s->x);
        wh_tensor_release(s->y);
    }
    l->head = l->count = 0;
}

/* ---- API ---------------------------------------------------------------------------------------- */

wh_status wh_loader_new(const wh_loader_config *c, wh_loader **out) {
    *out = NULL;
    const wh_tensor *p = c->pixels;
    if (!p || p->ndim != 3 || (p->dtype != WH_UINT8 && p->dtype != WH_FLOAT32) ||
        !wh_tensor_is_contiguous(p) || wh_tensor_device(p).type != WH_CPU)
        return wh_fail(WH_ERR_ARG, "data loader: pixels must be a contiguous CPU (N,H,W) uint8 or "
                       "float32 tensor");
    if (c->items < 1) return wh_fail(WH_ERR_ARG, "data loader: the dataset has no items");
    if (c->batch < 1) return wh_fail(WH_ERR_ARG, "data loader: batch size must be >= 1, got %lld",
                                     (long long)c->batch);
    for (int64_t i = 0; i < c->items; i++)
        for (int k = 0; k < 2; k++) {
            const int64_t *a = k ? c->target : c->input;
            if (a && (a[i] < 0 || a[i] >= p->shape[0]))
                return wh_fail(WH_ERR_INDEX, "data loader: item %lld refers to image %lld of %lld",
                               (long long)i + 1, (long long)a[i] + 1, (long long)p->shape[0]);
        }
    wh_loader *l = calloc(1, sizeof *l);
    if (!l) return wh_fail(WH_ERR_MEMORY, "data loader: out of memory");
    l->cap = c->prefetch > 0 ? c->prefetch : 2;
    l->input = malloc(sizeof(int64_t) * (size_t)c->items);
    l->target = c->target ? malloc(sizeof(int64_t) * (size_t)c->items) : NULL;
    l->ring = calloc((size_t)l->cap, sizeof *l->ring);
    if (!l->input || (c->target && !l->target) || !l->ring) {
        free(l->input), free(l->target), free(l->ring), free(l);
        return wh_fail(WH_ERR_MEMORY, "data loader: out of memory");
    }
    memcpy(l->input, c->input, sizeof(int64_t) * (size_t)c->items);
    if (c->target) memcpy(l->target, c->target, sizeof(int64_t) * (size_t)c->items);
    wh_tensor_retain(c->pixels);
    l->pixels = c->pixels;
    l->items = c->items, l->batch = c->batch, l->h = p->shape[1], l->w = p->shape[2];
    l->drop_last = c->drop_last, l->background = c->background;
    l->transform = c->transform, l->transform_ctx = c->transform_ctx, l->seed = c->seed;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->wake_worker, NULL);
    pthread_cond_init(&l->wake_caller, NULL);
    *out = l;
    return WH_OK;
}

wh_status wh_loader_start(wh_loader *l, const int64_t *order, int64_t n, uint64_t epoch) {
    if (order && n < 0) return wh_fail(WH_ERR_ARG, "data loader: negative order length");
    if (!order) n = l->items;
    int64_t *copy = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!copy) return wh_fail(WH_ERR_MEMORY, "data loader: out of memory");
    for (int64_t i = 0; i < n; i++) {
        copy[i] = order ? order[i] : i;
        if (copy[i] < 0 || copy[i] >= l->items) {
            int64_t bad = copy[i];
            free(copy);
            return wh_fail(WH_ERR_INDEX, "data loader: order entry %lld is item %lld, outside "
                           "1..%lld", (long long)i + 1, (long long)bad + 1, (long long)l->items);
        }
    }
    pthread_mutex_lock(&l->mu);
    l->generation++;
    while (l->busy) pthread_cond_wait(&l->wake_caller, &l->mu);
    drain(l);
    free(l->order);
    l->order = copy, l->norder = n, l->epoch = epoch;
    l->nbatches = l->drop_last ? n / l->batch : (n + l->batch - 1) / l->batch;
    l->produced = l->consumed = 0;
    wh_status st = WH_OK;
    if (l->background && !l->thread_started) {
        if (pthread_create(&l->thread, NULL, worker, l) != 0)
            st = wh_fail(WH_ERR_STATE, "data loader: cannot start the background thread");
        else
            l->thread_started = true;
    }
    pthread_cond_signal(&l->wake_worker);
    pthread_mutex_unlock(&l->mu);
    return st;
}

wh_status wh_loader_next(wh_loader *l, wh_tensor **x, wh_tensor **y) {
    *x = *y = NULL;
    if (!l->order) return wh_fail(WH_ERR_STATE, "data loader: start an epoch before next()");
    if (!l->thread_started) {
        if (l->consumed >= l->nbatches) return WH_OK;
        return build_batch(l, l->order, l->epoch, l->consumed++, x, y);
    }
    pthread_mutex_lock(&l->mu);
    if (l->consumed >= l->nbatches) {
        pthread_mutex_unlock(&l->mu);
        return WH_OK;
    }
    while (l->count == 0) pthread_cond_wait(&l->wake_caller, &l->mu);
    slot s = l->ring[l->head];
    l->head = (l->head + 1) % l->cap;
    l->count--;
    l->consumed++;
    pthread_cond_signal(&l->wake_worker);
    pthread_mutex_unlock(&l->mu);
    if (s.st != WH_OK) return wh_fail(s.st, "%s", s.msg);
    *x = s.x, *y = s.y;
    return WH_OK;
}

int64_t wh_loader_batches(const wh_loader *l) { return l->order ? l->nbatches : 0; }

void wh_loader_free(wh_loader *l) {
    if (!l) return;
    if (l->thread_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->wake_worker);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    drain(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->wake_worker);
    pthread_cond_destroy(&l->wake_caller);
    wh_tensor_release(l->pixels);
    free(l->input), free(l->target), free(l->order), free(l->ring);
    free(l);
}
