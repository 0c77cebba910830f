/* The C side of whorl.data: listing image folders, preprocessing a list of
 * files into one tensor (in parallel), caching that tensor in one binary
 * file, seeded permutations, and a batch loader that can prepare the next
 * batch on a background thread.  Which files, pairs and splits make a
 * dataset is decided in Lua (lua/whorl/data.lua). */
#ifndef WHORL_DATASET_H
#define WHORL_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "image_proc.h"
#include "tensor.h"

/* ---- folders ---------------------------------------------------------------------------- */

typedef struct {
    char **paths; /* relative to the folder, '/'-separated, sorted bytewise */
    int64_t count;
} wh_file_list;

/* The image files (.tif .tiff .bmp .png .jpg .jpeg .pgm .ppm .pnm, any case)
 * under dir, recursively or not.  Names starting with '.' are skipped;
 * symbolic links are followed, each directory visited once.  A missing dir
 * or one that is not a directory is WH_ERR_IO naming it. */
wh_status wh_list_images(const char *dir, bool recursive, wh_file_list *out);
void wh_file_list_free(wh_file_list *l);
bool wh_is_image_name(const char *name);

/* ---- hashing ------------------------------------------------------------------------------ */

/* A fast 64-bit hash (not cryptographic) of n bytes. */
uint64_t wh_hash64(const void *data, size_t n, uint64_t seed);
/* Hash of the files' paths, sizes and modification times, and of `extra`
 * (the options): the key a cache file must match.  A missing file is
 * WH_ERR_IO naming it. */
wh_status wh_files_key(const char *const *paths, int64_t n, const char *extra, uint64_t *key);

/* ---- building -------------------------------------------------------------------------- */

/* Decodes and preprocesses n files into pixels (n, out_h, out_w) of dtype
 * WH_UINT8 (values rounded to 1/255) or WH_FLOAT32, and meta (n, 6) float64:
 * the decoded height and width (after dpi resampling) and the crop box
 * (top, left, bottom, right; 0-based, half-open).  box_from[i] >= 0 makes
 * file i use file box_from[i]'s crop box instead of segmenting itself (a
 * damaged image cropped like its clean partner; the two must have the same
 * size); NULL or -1: its own.  Files are processed in parallel (OpenMP); on
 * failure the message is that of the first failing file in list order. */
wh_status wh_dataset_build(const char *const *paths, int64_t n, const int64_t *box_from,
                           const wh_preprocess_opts *o, wh_dtype dtype, wh_tensor **pixels,
                           wh_tensor **meta);

/* ---- cache files ----------------------------------------------------------------------- */

/* Writes pixels and meta under `key` (to a temporary file renamed into
 * place, so a reader never sees half a file).  Creates missing parent
 * directories. */
wh_status wh_cache_save(const char *path, uint64_t key, const wh_tensor *pixels,
                        const wh_tensor *meta);
/* Loads a cache file when it matches key, count, size and dtype and its
 * checksums hold.  When it does not (missing, stale, corrupt), returns WH_OK
 * with *pixels NULL and the reason in why: such a file is rebuilt, never
 * trusted.  Errors are only real failures (out of memory). */
wh_status wh_cache_load(const char *path, uint64_t key, int64_t count, int64_t h, int64_t w,
                        wh_dtype dtype, wh_tensor **pixels, wh_tensor **meta, char *why,
                        size_t why_len);

/* ---- shuffling --------------------------------------------------------------------------- */

/* A permutation of 0..n-1 determined by seed alone (Fisher-Yates over
 * splitmix64, unbiased bounded draws), independent of the global RNG. */
void wh_permutation(int64_t n, uint64_t seed, int64_t *out);
/* Mixes several numbers into one seed (for per-epoch and per-item seeds). */
uint64_t wh_seed_mix(uint64_t a, uint64_t b);

/* ---- batches ------------------------------------------------------------------------------ */

/* Called for every sample of a batch, on the thread that builds it (the
 * background thread when there is one): x and y (y NULL for unpaired data)
 * are that sample's h x w float images, to modify in place; seed is
 * wh_seed_mix(wh_seed_mix(config seed, epoch), item), so the result does not
 * depend on the thread or the batch size.  Must not touch Lua state. */
typedef wh_status (*wh_loader_transform)(void *ctx, float *x, float *y, int64_t h, int64_t w,
                                         uint64_t seed);

typedef struct {
    wh_tensor *pixels;      /* (N,H,W) uint8 or float32, from wh_dataset_build; retained */
    const int64_t *input;   /* item -> row of pixels (copied) */
    const int64_t *target;  /* item -> row, or NULL for unpaired data (copied) */
    int64_t items, batch;
    bool drop_last;         /* drop a last, smaller batch */
    bool background;        /* prepare batches on a thread */
    int prefetch;           /* batches prepared ahead (default 2) */
    wh_loader_transform transform; /* may be NULL */
    void *transform_ctx;
    uint64_t seed;
} wh_loader_config;

typedef struct wh_loader wh_loader;

wh_status wh_loader_new(const wh_loader_config *c, wh_loader **out);
/* Starts an epoch over `order` (items, a permutation or any list of item
 * indices, copied; NULL: 0..items-1).  Batches of the previous epoch not yet
 * taken are dropped. */
wh_status wh_loader_start(wh_loader *l, const int64_t *order, int64_t n, uint64_t epoch);
/* The next batch: x (B,1,H,W) float32 in [0,1] and, for paired data, y of
 * the same shape; both NULL after the last batch of the epoch. */
wh_status wh_loader_next(wh_loader *l, wh_tensor **x, wh_tensor **y);
/* Batches in the current epoch. */
int64_t wh_loader_batches(const wh_loader *l);
/* Stops the thread and frees everything (NULL is fine). */
void wh_loader_free(wh_loader *l);

#endif
