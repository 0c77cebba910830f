/* Folders, hashing, parallel preprocessing into one tensor, cache files and
 * permutations (see dataset.h).  The batch loader is in dataset_loader.c. */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_io.h"

/* ---- folders ------------------------------------------------------------------------------ */

bool wh_is_image_name(const char *name) {
    static const char *const exts[] = {"tif", "tiff", "bmp", "png", "jpg", "jpeg", "pgm", "ppm", "pnm"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return true;
    return false;
}

typedef struct {
    wh_file_list *list;
    int64_t cap;
    struct { dev_t dev; ino_t ino; } *seen;
    int64_t nseen, capseen;
} walker;

static wh_status push_path(walker *wk, const char *rel) {
    wh_file_list *l = wk->list;
    if (l->count == wk->cap) {
        int64_t cap = wk->cap ? wk->cap * 2 : 256;
        char **p = realloc(l->paths, sizeof *p * (size_t)cap);
        if (!p) return wh_fail(WH_ERR_MEMORY, "data: out of memory listing files");
        l->paths = p, wk->cap = cap;
    }
    if (!(l->paths[l->count] = strdup(rel))) return wh_fail(WH_ERR_MEMORY, "data: out of memory");
    l->count++;
    return WH_OK;
}

/* Records a directory; false when it was visited already (a link loop). */
static wh_status mark_seen(walker *wk, const struct stat *st, bool *fresh) {
    for (int64_t i = 0; i < wk->nseen; i++)
        if (wk->seen[i].dev == st->st_dev && wk->seen[i].ino == st->st_ino) {
            *fresh = false;
            return WH_OK;
        }
    if (wk->nseen == wk->capseen) {
        int64_t cap = wk->capseen ? wk->capseen * 2 : 32;
        void *p = realloc(wk->seen, sizeof *wk->seen * (size_t)cap);
        if (!p) return wh_fail(WH_ERR_MEMORY, "data: out of memory");
        wk->seen = p, wk->capseen = cap;
    }
    wk->seen[wk->nseen].dev = st->st_dev, wk->seen[wk->nseen].ino = st->st_ino;
    wk->nseen++;
    *fresh = true;
    return WH_OK;
}

static wh_status walk(walker *wk, const char *root, const char *rel, bool recursive, int depth) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel) >= (int)sizeof dir)
        return wh_fail(WH_ERR_IO, "data: path too long under %s", root);
    DIR *d = opendir(dir);
    if (!d) return wh_fail(WH_ERR_IO, "data: cannot open folder %s: %s", dir, strerror(errno));
    wh_status st = WH_OK;
    struct dirent *e;
    while (st == WH_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files, caches */
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", root, sub) >= (int)sizeof full) {
            st = wh_fail(WH_ERR_IO, "data: path too long: %s/%s", dir, e->d_name);
            break;
        }
        struct stat s;
        if (stat(full, &s) != 0) continue; /* a dangling link */
        if (S_ISDIR(s.st_mode)) {
            if (!recursive) continue;
            bool fresh;
            st = mark_seen(wk, &s, &fresh);
            if (st == WH_OK && fresh) {
                if (depth >= 64) st = wh_fail(WH_ERR_IO, "data: folders nested too deep at %s", full);
                else st = walk(wk, root, sub, recursive, depth + 1);
            }
        } else if (S_ISREG(s.st_mode) && wh_is_image_name(e->d_name)) {
            st = push_path(wk, sub);
        }
    }
    closedir(d);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

wh_status wh_list_images(const char *dir, bool recursive, wh_file_list *out) {
    memset(out, 0, sizeof *out);
    struct stat s;
    if (stat(dir, &s) != 0)
        return wh_fail(WH_ERR_IO, "data: folder %s does not exist (%s)", dir, strerror(errno));
    if (!S_ISDIR(s.st_mode)) return wh_fail(WH_ERR_IO, "data: %s is not a folder", dir);
    walker wk = {out, 0, NULL, 0, 0};
    bool fresh;
    wh_status st = mark_seen(&wk, &s, &fresh);
    if (st == WH_OK) st = walk(&wk, dir, "", recursive, 0);
    free(wk.seen);
    if (st != WH_OK) {
        wh_file_list_free(out);
        return st;
    }
    if (out->count) qsort(out->paths, (size_t)out->count, sizeof *out->paths, cmp_str);
    return WH_OK;
}

void wh_file_list_free(wh_file_list *l) {
    for (int64_t i = 0; i < l->count; i++) free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->count = 0;
}

/* ---- hashing ------------------------------------------------------------------------------ */

static inline uint64_t mix64(uint64_t x) { /* MurmurHash3's finaliser */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static inline uint64_t rotl(uint64_t x, int k) { return x << k | x >> (64 - k); }

/* Four independent lanes so the multiplies overlap (several GB/s); not
 * cryptographic, only to catch damaged or stale files. */
uint64_t wh_hash64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL;
    uint64_t h[4] = {seed + P1, seed ^ P2, seed - P1, rotl(seed, 17) + P2};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * k, 8);
            h[k] = rotl(h[k] + w * P2, 31) * P1;
        }
    uint64_t r = mix64(h[0]) ^ rotl(mix64(h[1]), 13) ^ rotl(mix64(h[2]), 29) ^ rotl(mix64(h[3]), 43);
    for (; i < n; i++) r = (r ^ p[i]) * P1;
    return mix64(r ^ (uint64_t)n);
}

wh_status wh_files_key(const char *const *paths, int64_t n, const char *extra, uint64_t *key) {
    uint64_t h = wh_hash64(extra, strlen(extra), 0x5748524cULL);
    for (int64_t i = 0; i < n; i++) {
        struct stat s;
        if (stat(paths[i], &s) != 0)
            return wh_fail(WH_ERR_IO, "data: %s: %s", paths[i], strerror(errno));
        int64_t v[3] = {(int64_t)s.st_size, (int64_t)s.st_mtim.tv_sec, (int64_t)s.st_mtim.tv_nsec};
        h = wh_hash64(paths[i], strlen(paths[i]) + 1, h);
        h = wh_hash64(v, sizeof v, h);
    }
    *key = h;
    return WH_OK;
}

/* ---- building ----------------------------------------------------------------------------- */

typedef struct {
    int64_t h, w;  /* after dpi resampling */
    wh_box box;
} file_meta;

static wh_status build_one(const char *path, const wh_preprocess_opts *o, const wh_box *box,
                           const file_meta *partner, const char *partner_path, file_meta *meta,
                           void *dst, wh_dtype dt) {
    wh_tensor *img = NULL, *out = NULL;
    WH_TRY(wh_image_read(path, true, WH_FLOAT32, &img));
    int64_t h = img->shape[0], w = img->shape[1];
    if (o->from_dpi > 0 && o->from_dpi != o->to_dpi) {
        double s = o->to_dpi / o->from_dpi;
        h = llround(h * s), w = llround(w * s);
        h = h < 1 ? 1 : h, w = w < 1 ? 1 : w;
    }
    meta->h = h, meta->w = w;
    if (partner && (partner->h != h || partner->w != w)) {
        wh_tensor_release(img);
        return wh_fail(WH_ERR_SHAPE, "data: %s is %lldx%lld but its partner %s is %lldx%lld; "
                       "the pair must be pixel-aligned to share a crop", path, (long long)h,
                       (long long)w, partner_path, (long long)partner->h, (long long)partner->w);
    }
    wh_status st = wh_preprocess(img, o, box, &out, &meta->box);
    wh_tensor_release(img);
    if (st != WH_OK) return st;
    const float *s = wh_tensor_data(out);
    int64_t n = wh_tensor_numel(out);
    if (dt == WH_FLOAT32) {
        memcpy(dst, s, sizeof(float) * (size_t)n);
    } else {
        uint8_t *d = dst;
        for (int64_t i = 0; i < n; i++) {
            float v = s[i] < 0 ? 0 : s[i] > 1 ? 1 : s[i];
            d[i] = (uint8_t)lrintf(v * 255.0f); /* NaN cannot come out of the pipeline */
        }
    }
    wh_tensor_release(out);
    return WH_OK;
}

wh_status wh_dataset_build(const char *const *paths, int64_t n, const int64_t *box_from,
                           const wh_preprocess_opts *o, wh_dtype dtype, wh_tensor **pixels,
                           wh_tensor **meta) {
    *pixels = *meta = NULL;
    if (n < 1) return wh_fail(WH_ERR_ARG, "data: no files to load");
    if (o->out_h < 1 || o->out_w < 1)
        return wh_fail(WH_ERR_ARG, "data: a dataset needs an image size (option size)");
    if (dtype != WH_UINT8 && dtype != WH_FLOAT32)
        return wh_fail(WH_ERR_DTYPE, "data: datasets are stored as uint8 or float32, not %s",
                       wh_dtype_name(dtype));
    for (int64_t i = 0; box_from && i < n; i++) {
        int64_t j = box_from[i];
        if (j < -1 || j >= n || (j >= 0 && box_from[j] >= 0))
            return wh_fail(WH_ERR_ARG, "data: file %lld takes its crop from entry %lld, which is "
                           "not a file with its own crop", (long long)i + 1, (long long)j + 1);
    }
    int64_t shape[3] = {n, o->out_h, o->out_w}, mshape[2] = {n, 6};
    WH_TRY(wh_tensor_empty(dtype, 3, shape, NULL, pixels));
    file_meta *fm = calloc((size_t)n, sizeof *fm);
    if (!fm) {
        wh_tensor_clear(pixels);
        return wh_fail(WH_ERR_MEMORY, "data: out of memory");
    }
    size_t per = (size_t)(o->out_h * o->out_w) * wh_dtype_size(dtype);
    char *base = wh_tensor_data(*pixels);
    int64_t err_at = INT64_MAX;
    wh_status err = WH_OK;
    char *err_msg = malloc(1024);
    if (!err_msg) err = wh_fail(WH_ERR_MEMORY, "data: out of memory"), err_at = -1;
    /* Pass 0: files with their own crop; pass 1: files cropped like a partner. */
    for (int pass = 0; pass < 2 && err == WH_OK; pass++) {
        #pragma omp parallel for schedule(dynamic, 1)
        for (int64_t i = 0; i < n; i++) {
            int64_t j = box_from ? box_from[i] : -1;
            if ((pass == 0) != (j < 0)) continue;
            int64_t first_err;
            #pragma omp atomic read
            first_err = err_at;
            if (first_err < i) continue; /* an earlier file failed: its message wins */
            const wh_box *box = j >= 0 && o->crop ? &fm[j].box : NULL;
            wh_status st = build_one(paths[i], o, box, j >= 0 && o->crop ? &fm[j] : NULL,
                                     j >= 0 ? paths[j] : NULL, &fm[i], base + per * (size_t)i, dtype);
            if (st != WH_OK) {
                #pragma omp critical(wh_dataset_error)
                if (i < err_at) {
                    #pragma omp atomic write
                    err_at = i;
                    err = st;
                    snprintf(err_msg, 1024, "%s", wh_error_message());
                }
            }
        }
    }
    if (err == WH_OK) err = wh_tensor_empty(WH_FLOAT64, 2, mshape, NULL, meta);
    if (err == WH_OK) {
        double *m = wh_tensor_data(*meta);
        for (int64_t i = 0; i < n; i++) {
            double v[6] = {(double)fm[i].h, (double)fm[i].w, (double)fm[i].box.top,
                           (double)fm[i].box.left, (double)fm[i].box.bottom, (double)fm[i].box.right};
            memcpy(m + 6 * i, v, sizeof v);
        }
    } else if (err_at >= 0) {
        wh_fail(err, "%s", err_msg);
    }
    free(err_msg);
    free(fm);
    if (err != WH_OK) wh_tensor_clear(pixels), wh_tensor_clear(meta);
    return err;
}

/* ---- cache files ------------------------------------------------------------------------------
 * Layout (little-endian):
 *   0  "WHORLDS\n"  8  version u32  12 dtype u32  16 key u64  24 count u64
 *   32 height u64  40 width u64  48 meta hash u64  56 pixel hash u64
 *   64 header hash u64 (of bytes 0..63)
 *   72 meta: count x 6 int32 (height, width, top, left, bottom, right), then the pixels. */

#define CACHE_MAGIC "WHORLDS\n"
#define CACHE_VERSION 1u
#define CACHE_HEADER 72

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i); }
static uint32_t get_u32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static wh_status mkdirs_for(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return wh_fail(WH_ERR_IO, "data: cache path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return wh_fail(WH_ERR_IO, "data: cannot create folder %s for the cache: %s", buf,
                           strerror(errno));
        *p = '/';
    }
    return WH_OK;
}

static int32_t *meta_ints(const wh_tensor *meta, int64_t count) {
    int32_t *v = malloc(sizeof(int32_t) * 6 * (size_t)(count ? count : 1));
    if (!v) return NULL;
    const double *m = wh_tensor_data(meta);
    for (int64_t i = 0; i < 6 * count; i++) {
        int32_t x = (int32_t)m[i];
        unsigned char b[4];
        put_u32(b, (uint32_t)x);
        memcpy(&v[i], b, 4);
    }
    return v;
}

wh_status wh_cache_save(const char *path, uint64_t key, const wh_tensor *pixels,
                        const wh_tensor *meta) {
    if (pixels->ndim != 3 || !wh_tensor_is_contiguous(pixels) ||
        (pixels->dtype != WH_UINT8 && pixels->dtype != WH_FLOAT32) || meta->ndim != 2 ||
        meta->shape[0] != pixels->shape[0] || meta->shape[1] != 6 || meta->dtype != WH_FLOAT64 ||
        !wh_tensor_is_contiguous(meta))
        return wh_fail(WH_ERR_ARG, "data: cache_save takes the pixels and meta of wh_dataset_build");
    WH_TRY(mkdirs_for(path));
    int64_t count = pixels->shape[0];
    size_t pbytes = (size_t)wh_tensor_numel(pixels) * wh_dtype_size(pixels->dtype);
    int32_t *m = meta_ints(meta, count);
    if (!m) return wh_fail(WH_ERR_MEMORY, "data: out of memory");
    size_t mbytes = sizeof(int32_t) * 6 * (size_t)count;
    unsigned char head[CACHE_HEADER];
    memcpy(head, CACHE_MAGIC, 8);
    put_u32(head + 8, CACHE_VERSION);
    put_u32(head + 12, (uint32_t)pixels->dtype);
    put_u64(head + 16, key);
    put_u64(head + 24, (uint64_t)count);
    put_u64(head + 32, (uint64_t)pixels->shape[1]);
    put_u64(head + 40, (uint64_t)pixels->shape[2]);
    put_u64(head + 48, wh_hash64(m, mbytes, 1));
    put_u64(head + 56, wh_hash64(wh_tensor_data(pixels), pbytes, 2));
    put_u64(head + 64, wh_hash64(head, 64, 3));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(m);
        return wh_fail(WH_ERR_IO, "data: cannot write cache %s: %s", tmp, strerror(errno));
    }
    bool ok = fwrite(head, 1, CACHE_HEADER, f) == CACHE_HEADER && fwrite(m, 1, mbytes, f) == mbytes &&
              fwrite(wh_tensor_data(pixels), 1, pbytes, f) == pbytes && fflush(f) == 0;
    int err = errno;
    free(m);
    if (fclose(f) != 0 && ok) ok = false, err = errno;
    if (ok && rename(tmp, path) != 0) ok = false, err = errno;
    if (!ok) {
        remove(tmp);
        return wh_fail(WH_ERR_IO, "data: cannot write cache %s: %s", path, strerror(err));
    }
    return WH_OK;
}

wh_status wh_cache_load(const char *path, uint64_t key, int64_t count, int64_t h, int64_t w,
                        wh_dtype dtype, wh_tensor **pixels, wh_tensor **meta, char *why,
                        size_t why_len) {
    *pixels = *meta = NULL;
#define REJECT(...)                                                                               \
    do {                                                                                          \
        snprintf(why, why_len, __VA_ARGS__);                                                      \
        goto reject;                                                                              \
    } while (0)
    int32_t *m = NULL;
    wh_status st = WH_OK;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_len, "no cache file (%s)", strerror(errno));
        return WH_OK;
    }
    struct stat s;
    unsigned char head[CACHE_HEADER];
    if (fstat(fileno(f), &s) != 0 || fread(head, 1, CACHE_HEADER, f) != CACHE_HEADER)
        REJECT("corrupt: shorter than its header");
    if (memcmp(head, CACHE_MAGIC, 8) != 0) REJECT("corrupt: not a whorl dataset cache");
    if (get_u64(head + 64) != wh_hash64(head, 64, 3)) REJECT("corrupt: header checksum mismatch");
    if (get_u32(head + 8) != CACHE_VERSION)
        REJECT("stale: cache version %u, this whorl writes %u", get_u32(head + 8), CACHE_VERSION);
    if (get_u64(head + 16) != key) REJECT("stale: the files or the options changed");
    if (get_u64(head + 24) != (uint64_t)count || get_u64(head + 32) != (uint64_t)h ||
        get_u64(head + 40) != (uint64_t)w || get_u32(head + 12) != (uint32_t)dtype)
        REJECT("stale: count, size or dtype differ");
    size_t mbytes = sizeof(int32_t) * 6 * (size_t)count;
    size_t pbytes = (size_t)count * (size_t)h * (size_t)w * wh_dtype_size(dtype);
    if ((uint64_t)s.st_size != CACHE_HEADER + mbytes + pbytes)
        REJECT("corrupt: %lld bytes, expected %zu", (long long)s.st_size, CACHE_HEADER + mbytes + pbytes);
    m = malloc(mbytes ? mbytes : 1);
    int64_t shape[3] = {count, h, w}, mshape[2] = {count, 6};
    if (!m) {
        st = wh_fail(WH_ERR_MEMORY, "data: out of memory loading %s", path);
        goto reject;
    }
    if ((st = wh_tensor_empty(dtype, 3, shape, NULL, pixels)) != WH_OK ||
        (st = wh_tensor_empty(WH_FLOAT64, 2, mshape, NULL, meta)) != WH_OK)
        goto reject;
    if (fread(m, 1, mbytes, f) != mbytes || fread(wh_tensor_data(*pixels), 1, pbytes, f) != pbytes)
        REJECT("corrupt: read failed");
    if (get_u64(head + 48) != wh_hash64(m, mbytes, 1)) REJECT("corrupt: metadata checksum mismatch");
    if (get_u64(head + 56) != wh_hash64(wh_tensor_data(*pixels), pbytes, 2))
        REJECT("corrupt: pixel checksum mismatch");
    double *md = wh_tensor_data(*meta);
    for (int64_t i = 0; i < 6 * count; i++) md[i] = (double)(int32_t)get_u32((unsigned char *)&m[i]);
    free(m);
    fclose(f);
    why[0] = 0;
    return WH_OK;
reject:
#undef REJECT
    free(m);
    fclose(f);
    wh_tensor_clear(pixels);
    wh_tensor_clear(meta);
    return st;
}

/* ---- permutations --------------------------------------------------------------------------- */

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t wh_seed_mix(uint64_t a, uint64_t b) {
    uint64_t s = a ^ mix64(b + 0x632BE59BD9B4E019ULL);
    return splitmix64(&s);
}

void wh_permutation(int64_t n, uint64_t seed, int64_t *out) {
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        /* Unbiased draw in [0, i] by rejection (Lemire's threshold). */
        uint64_t range = (uint64_t)i + 1, lim = -range % range, r;
        do r = splitmix64(&s);
        while (r < lim);
        int64_t j = (int64_t)(r % range);
        int64_t t = out[i];
        out[i] = out[j], out[j] = t;
    }
}
