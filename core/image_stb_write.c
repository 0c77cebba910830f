/* PNG and JPEG output through stb_image_write (Debian libstb-dev), compiled
 * here as a private static copy, apart from the decoders in image_stb.c:
 * its JPEG bit writer shifts ints past their top bit by design (the bits
 * that fall off are never used), which UndefinedBehaviorSanitizer stops
 * at, so the sanitizer build compiles this file with -fno-sanitize=shift
 * (Makefile) while the decoders keep every check. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include "stb_warnings.h"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

/* ---- PNG and JPEG output --------------------------------------------------------------------- */

typedef struct {
    unsigned char *data;
    size_t size, cap;
    bool failed;
} membuf;

static void membuf_put(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->size + (size_t)size > m->cap) {
        size_t cap = (m->cap ? m->cap * 2 : 1 << 16) + (size_t)size;
        unsigned char *p = realloc(m->data, cap);
        if (!p) {
            m->failed = true;
            return;
        }
        m->data = p, m->cap = cap;
    }
    memcpy(m->data + m->size, data, (size_t)size);
    m->size += (size_t)size;
}

wh_status wh_write_png(const char *path, const wh_raw_image *img) {
    membuf m = {0};
    int w = img->info.width, c = img->info.channels;
    int ok = stbi_write_png_to_func(membuf_put, &m, w, img->info.height, c, img->pixels, w * c);
    wh_status st;
    if (!ok || m.failed) st = wh_fail(WH_ERR_MEMORY, "%s: PNG encoding failed (out of memory)", path);
    else st = wh_write_file(path, m.data, m.size);
    free(m.data);
    return st;
}

wh_status wh_write_jpeg(const char *path, const wh_raw_image *img, int quality) {
    membuf m = {0};
    int w = img->info.width, c = img->info.channels;
    int ok = stbi_write_jpg_to_func(membuf_put, &m, w, img->info.height, c, img->pixels, quality);
    wh_status st;
    if (!ok || m.failed) st = wh_fail(WH_ERR_MEMORY, "%s: JPEG encoding failed (out of memory)", path);
    else st = wh_write_file(path, m.data, m.size);
    free(m.data);
    return st;
}
