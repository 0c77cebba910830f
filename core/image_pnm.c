/* Netpbm: PBM/PGM/PPM, ASCII (P1-P3) and binary (P4-P6), any maxval, and a
 * binary PGM/PPM writer.  Own code rather than stb_image's, which ignores
 * maxval (a PGM with maxval 1023 would come out as raw numbers) and has no
 * ASCII variants.  Reference: netpbm's pgm(5) and ppm(5) pages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

typedef struct {
    const unsigned char *d;
    size_t n, p;
    const char *name;
} reader;

static bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Skips whitespace and '#' comments. */
static void skip_blank(reader *r) {
    while (r->p < r->n) {
        if (r->d[r->p] == '#') {
            while (r->p < r->n && r->d[r->p] != '\n') r->p++;
        } else if (is_space(r->d[r->p])) {
            r->p++;
        } else {
            return;
        }
    }
}

static wh_status read_uint(reader *r, const char *what, uint64_t limit, uint64_t *v) {
    skip_blank(r);
    if (r->p >= r->n)
        return wh_fail(WH_ERR_FORMAT, "%s: truncated PNM: the file ends before the %s", r->name, what);
    if (r->d[r->p] < '0' || r->d[r->p] > '9')
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNM: expected the %s, found byte 0x%02x", r->name,
                       what, r->d[r->p]);
    uint64_t x = 0;
    while (r->p < r->n && r->d[r->p] >= '0' && r->d[r->p] <= '9') {
        x = x * 10 + (uint64_t)(r->d[r->p++] - '0');
        if (x > limit)
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNM: %s is larger than %llu", r->name, what,
                           (unsigned long long)limit);
    }
    *v = x;
    return WH_OK;
}

wh_status wh_decode_pnm(const unsigned char *d, size_t n, const char *name, bool info_only,
                        wh_raw_image *img) {
    reader r = {d, n, 2, name};
    int kind = d[1] - '0'; /* 1..6 */
    bool ascii = kind <= 3, bitmap = kind == 1 || kind == 4;
    int ch = kind == 3 || kind == 6 ? 3 : 1;
    if (n > 2 && !is_space(d[2]) && d[2] != '#')
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNM: no whitespace after the magic P%d", name, kind);
    uint64_t w, h, maxval = 1;
    WH_TRY(read_uint(&r, "width", 1u << 30, &w));
    WH_TRY(read_uint(&r, "height", 1u << 30, &h));
    if (!bitmap) WH_TRY(read_uint(&r, "maximum value", 65535, &maxval));
    if (maxval == 0) return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNM: maximum value 0", name);
    WH_TRY(wh_image_check_size(name, "PNM", (int64_t)w, (int64_t)h));
    int depth = maxval > 255 ? 16 : 8;
    img->info = (wh_image_info){.width = (int)w, .height = (int)h, .channels = ch,
                                .bits = bitmap ? 1 : ch * (maxval > 255 ? 16 : 8), .depth = depth,
                                .pages = 1, .format = "PNM"};
    size_t count = (size_t)w * (size_t)h * (size_t)ch;
    if (!ascii) {
        /* Exactly one whitespace byte separates the header from the data. */
        if (r.p >= n || !is_space(d[r.p]))
            return wh_fail(WH_ERR_FORMAT, "%s: truncated PNM: no data after the header", name);
        r.p++;
        size_t need = bitmap ? (size_t)((w + 7) / 8) * (size_t)h : count * (maxval > 255 ? 2 : 1);
        if (n - r.p < need)
            return wh_fail(WH_ERR_FORMAT, "%s: truncated PNM: %zu bytes of pixels expected, %zu "
                           "present", name, need, n - r.p);
    }
    if (info_only) return WH_OK;
    WH_TRY(wh_raw_alloc(name, img));
    uint8_t *o8 = img->pixels;
    uint16_t *o16 = img->pixels;
    uint64_t full = depth == 16 ? 65535 : 255;
    for (size_t i = 0; i < count; i++) {
        uint64_t v;
        if (bitmap && ascii) {
            skip_blank(&r);
            if (r.p >= n || (d[r.p] != '0' && d[r.p] != '1'))
                return wh_fail(WH_ERR_FORMAT, "%s: %s PBM: pixel %zu of %zu", name,
                               r.p >= n ? "truncated" : "corrupt", i + 1, count);
            v = d[r.p++] == '0'; /* 1 is black */
        } else if (bitmap) {
            size_t x = i % w, y = i / w;
            v = !(d[r.p + y * ((w + 7) / 8) + x / 8] >> (7 - x % 8) & 1);
        } else if (ascii) {
            char what[64];
            snprintf(what, sizeof what, "sample %zu of %zu", i + 1, count);
            WH_TRY(read_uint(&r, what, 65535, &v));
        } else if (maxval > 255) {
            v = (uint64_t)d[r.p + 2 * i] << 8 | d[r.p + 2 * i + 1];
        } else {
            v = d[r.p + i];
        }
        if (v > maxval)
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNM: sample %zu is %llu, above the maximum "
                           "value %llu", name, i + 1, (unsigned long long)v,
                           (unsigned long long)maxval);
        v = maxval == full ? v : (v * full * 2 + maxval) / (2 * maxval);
        if (depth == 16) o16[i] = (uint16_t)v;
        else o8[i] = (uint8_t)v;
    }
    return WH_OK;
}

wh_status wh_write_pnm(const char *path, const wh_raw_image *img) {
    int w = img->info.width, h = img->info.height, c = img->info.channels;
    bool wide = img->info.depth == 16;
    char head[64];
    int hl = snprintf(head, sizeof head, "P%d\n%d %d\n%d\n", c == 1 ? 5 : 6, w, h,
                      wide ? 65535 : 255);
    size_t count = (size_t)w * (size_t)h * (size_t)c, total = (size_t)hl + count * (wide ? 2 : 1);
    unsigned char *buf = malloc(total);
    if (!buf) return wh_fail(WH_ERR_MEMORY, "%s: out of memory", path);
    memcpy(buf, head, (size_t)hl);
    for (size_t i = 0; i < count; i++) {
        if (wide) {
            uint16_t v = ((const uint16_t *)img->pixels)[i];
            buf[hl + 2 * i] = (unsigned char)(v >> 8), buf[hl + 2 * i + 1] = (unsigned char)v;
        } else {
            buf[hl + i] = ((const uint8_t *)img->pixels)[i];
        }
    }
    wh_status st = wh_write_file(path, buf, total);
    free(buf);
    return st;
}
