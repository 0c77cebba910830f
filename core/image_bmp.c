/* BMP decoder and writer.
 *
 * Written here rather than taken from stb_image, whose BMP loader (v2.27)
 * reads past the end of a truncated file as zeros (a silently wrong image),
 * leaves palette entries beyond the declared count uninitialised, rejects
 * BI_BITFIELDS files whose three masks are equal and has no RLE.  This one
 * follows Microsoft's "Bitmap Storage" documentation: core (12-byte),
 * OS/2 2.x (64), BITMAPINFOHEADER (40) with BI_BITFIELDS / BI_ALPHABITFIELDS
 * masks after it, V2/V3 (52/56), V4 (108) and V5 (124) headers; 1, 2, 4 and
 * 8-bit palettes; RLE8 and RLE4; 16, 24 and 32 bits with default or explicit
 * masks; bottom-up and top-down rows.  Every read is bounds-checked. */
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

static uint32_t u16le(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

enum { BI_RGB = 0, BI_RLE8 = 1, BI_RLE4 = 2, BI_BITFIELDS = 3, BI_ALPHABITFIELDS = 6 };

typedef struct {
    uint32_t mask, shift, max; /* value = (pixel & mask) >> shift, in 0..max */
} channel_mask;

typedef struct {
    const char *name;
    int64_t width, height; /* height > 0 */
    bool top_down;
    int bpp, compression;
    uint32_t offset;
    int ncolors;                /* palette entries (bpp <= 8) */
    unsigned char pal[256][3];  /* RGB */
    bool grey_palette;
    channel_mask m[4];          /* R, G, B, A (A.mask 0: none) */
} bmp_header;

static wh_status corrupt(const char *name, const char *why) {
    return wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: %s", name, why);
}

static wh_status set_mask(const char *name, channel_mask *c, uint32_t mask) {
    c->mask = mask;
    c->shift = 0;
    c->max = 0;
    if (!mask) return WH_OK;
    while (!(mask >> c->shift & 1)) c->shift++;
    c->max = mask >> c->shift;
    if (c->max & (c->max + 1))
        return wh_fail(WH_ERR_FORMAT, "%s: unsupported BMP: colour mask 0x%08x is not one run "
                       "of bits", name, mask);
    return WH_OK;
}

static wh_status parse_header(const unsigned char *d, size_t n, const char *name, bmp_header *h) {
    memset(h, 0, sizeof *h);
    h->name = name;
    if (n < 14 + 12) return corrupt(name, "the file is shorter than a BMP header");
    h->offset = u32le(d + 10);
    uint32_t hsz = u32le(d + 14);
    if (hsz != 12 && hsz != 40 && hsz != 52 && hsz != 56 && hsz != 64 && hsz != 108 && hsz != 124)
        return wh_fail(WH_ERR_FORMAT, "%s: unsupported BMP: unknown header size %u", name, hsz);
    if (n < 14 + (size_t)hsz) return corrupt(name, "the file ends inside the header");
    const unsigned char *ih = d + 14;
    uint32_t planes;
    int32_t sheight;
    if (hsz == 12) {
        h->width = u16le(ih + 4);
        sheight = (int32_t)u16le(ih + 6);
        planes = u16le(ih + 8);
        h->bpp = (int)u16le(ih + 10);
        h->compression = BI_RGB;
    } else {
        h->width = (int32_t)u32le(ih + 4);
        sheight = (int32_t)u32le(ih + 8);
        planes = u16le(ih + 12);
        h->bpp = (int)u16le(ih + 14);
        h->compression = (int)u32le(ih + 16);
    }
    if (planes != 1) return corrupt(name, "colour planes field is not 1");
    if (sheight == INT32_MIN) return corrupt(name, "height out of range");
    h->top_down = sheight < 0;
    h->height = sheight < 0 ? -(int64_t)sheight : sheight;
    WH_TRY(wh_image_check_size(name, "BMP", h->width, h->height));

    int c = h->compression;
    if (hsz == 64 && c > BI_RLE4)
        return wh_fail(WH_ERR_FORMAT, "%s: unsupported BMP: OS/2 compression %d", name, c);
    if (c == 4 || c == 5)
        return wh_fail(WH_ERR_FORMAT, "%s: unsupported BMP: embedded %s", name,
                       c == 4 ? "JPEG" : "PNG");
    if (c != BI_RGB && c != BI_RLE8 && c != BI_RLE4 && c != BI_BITFIELDS && c != BI_ALPHABITFIELDS)
        return wh_fail(WH_ERR_FORMAT, "%s: unsupported BMP: compression %d", name, c);
    int b = h->bpp;
    if (b != 1 && b != 2 && b != 4 && b != 8 && b != 16 && b != 24 && b != 32)
        return wh_fail(WH_ERR_FORMAT, "%s: unsupported BMP: %d bits per pixel", name, b);
    if ((c == BI_RLE8 && b != 8) || (c == BI_RLE4 && b != 4))
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: RLE%d with %d bits per pixel", name,
                       c == BI_RLE8 ? 8 : 4, b);
    if ((c == BI_BITFIELDS || c == BI_ALPHABITFIELDS) && b != 16 && b != 32)
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: bit fields with %d bits per pixel", name,
                       b);
    if ((c == BI_RLE8 || c == BI_RLE4) && h->top_down)
        return corrupt(name, "RLE data cannot be top-down (negative height)");

    /* Masks: inside V2+ headers, or after a 40-byte header. */
    size_t after = 14 + (size_t)hsz;
    uint32_t masks[4] = {0, 0, 0, 0};
    if (c == BI_BITFIELDS || c == BI_ALPHABITFIELDS) {
        int count = c == BI_ALPHABITFIELDS ? 4 : 3;
        const unsigned char *mp;
        if (hsz == 40) {
            if (n < after + 4 * (size_t)count) return corrupt(name, "the file ends in the masks");
            mp = d + after;
            after += 4 * (size_t)count;
        } else {
            mp = ih + 40;
            if (hsz < 56) count = 3;
            if (hsz >= 56 && count == 3) count = 4; /* V3+ headers carry an alpha mask */
        }
        for (int i = 0; i < count; i++) masks[i] = u32le(mp + 4 * i);
        if (!masks[0] && !masks[1] && !masks[2]) return corrupt(name, "colour masks are all zero");
    } else if (b == 16) {
        masks[0] = 0x7C00, masks[1] = 0x03E0, masks[2] = 0x001F;
    } else if (b == 32) {
        /* The fourth byte of BI_RGB 32-bit pixels is reserved, unless a V4/V5
         * header gives an alpha mask. */
        masks[0] = 0x00FF0000, masks[1] = 0x0000FF00, masks[2] = 0x000000FF;
        if (hsz >= 108) masks[3] = u32le(ih + 52);
    }
    if (b >= 16)
        for (int i = 0; i < 4; i++) WH_TRY(set_mask(name, &h->m[i], masks[i]));

    if (b <= 8) {
        uint32_t used = hsz >= 40 ? u32le(ih + 32) : 0;
        uint32_t full = 1u << b;
        h->ncolors = (int)(used == 0 || used > full ? full : used);
        size_t esz = hsz == 12 ? 3 : 4;
        /* The palette may be shorter than its declared size when the pixel
         * offset cuts it; entries present are read, missing ones stay unset
         * and any pixel that uses them is an error. */
        size_t avail = h->offset > after ? (h->offset - after) / esz : 0;
        if ((size_t)h->ncolors > avail) h->ncolors = (int)avail;
        if (h->ncolors == 0) return corrupt(name, "a palettized image without a palette");
        if (after + esz * (size_t)h->ncolors > n) return corrupt(name, "the file ends in the palette");
        h->grey_palette = true;
        for (int i = 0; i < h->ncolors; i++) {
            const unsigned char *e = d + after + esz * (size_t)i;
            h->pal[i][0] = e[2], h->pal[i][1] = e[1], h->pal[i][2] = e[0];
            if (e[0] != e[1] || e[1] != e[2]) h->grey_palette = false;
        }
    }
    if (h->offset < after || h->offset >= n)
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: pixel data offset %u outside the file "
                       "(%zu bytes, header ends at %zu)", name, h->offset, n, after);
    if (c == BI_RGB || c == BI_BITFIELDS || c == BI_ALPHABITFIELDS) {
        /* Rows are padded to 4 bytes; the last row's padding may be missing. */
        uint64_t stride = ((uint64_t)h->width * (uint64_t)b + 31) / 32 * 4;
        uint64_t need = stride * (uint64_t)(h->height - 1) + ((uint64_t)h->width * b + 7) / 8;
        if (h->offset + need > n)
            return wh_fail(WH_ERR_FORMAT, "%s: truncated BMP: %llu bytes of pixels expected at "
                           "offset %u, the file has %zu bytes", name, (unsigned long long)need,
                           h->offset, n);
    }
    return WH_OK;
}

/* Palette indices of every pixel, row by row top first (RLE images start
 * with index 0 everywhere: skipped pixels take the first palette entry). */
static wh_status rle_indices(const unsigned char *d, size_t n, const bmp_header *h,
                             unsigned char *idx) {
    const char *name = h->name;
    int64_t w = h->width, x = 0, y = h->height - 1; /* bottom-up */
    size_t p = h->offset;
    bool rle4 = h->compression == BI_RLE4;
    memset(idx, 0, (size_t)(w * h->height));
    for (;;) {
        if (p + 2 > n) return wh_fail(WH_ERR_FORMAT, "%s: truncated BMP: RLE data ends before "
                                      "the end-of-bitmap marker", name);
        unsigned count = d[p], value = d[p + 1];
        p += 2;
        if (count > 0) { /* a run */
            if (y < 0 || x + count > w)
                return wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: RLE run of %u pixels overflows "
                               "row %lld", name, count, (long long)(h->height - y));
            for (unsigned i = 0; i < count; i++)
                idx[y * w + x++] = rle4 ? (i & 1 ? value & 15 : value >> 4) : value;
            continue;
        }
        if (value == 0) { /* end of line */
            x = 0;
            y--;
        } else if (value == 1) { /* end of bitmap */
            return WH_OK;
        } else if (value == 2) { /* delta */
            if (p + 2 > n) return wh_fail(WH_ERR_FORMAT, "%s: truncated BMP in an RLE delta", name);
            x += d[p];
            y -= d[p + 1];
            p += 2;
            if (x > w || y < -1)
                return corrupt(name, "RLE delta moves outside the image");
        } else { /* absolute run of `value` pixels, padded to 16 bits */
            size_t bytes = rle4 ? (value + 1) / 2 : value;
            if (p + bytes > n) return wh_fail(WH_ERR_FORMAT, "%s: truncated BMP in RLE data", name);
            if (y < 0 || x + value > w)
                return wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: RLE literal of %u pixels overflows "
                               "row %lld", name, value, (long long)(h->height - y));
            for (unsigned i = 0; i < value; i++)
                idx[y * w + x++] = rle4 ? (i & 1 ? d[p + i / 2] & 15 : d[p + i / 2] >> 4) : d[p + i];
            p += bytes + (bytes & 1);
        }
    }
}

static inline uint8_t scale8(uint32_t v, uint32_t max) {
    return max == 255 ? (uint8_t)v : (uint8_t)((v * 255ull * 2 + max) / (2ull * max));
}

wh_status wh_decode_bmp(const unsigned char *d, size_t n, const char *name, bool info_only,
                        wh_raw_image *img) {
    bmp_header h;
    WH_TRY(parse_header(d, n, name, &h));
    int b = h.bpp, ch = b <= 8 ? (h.grey_palette ? 1 : 3) : (h.m[3].mask ? 4 : 3);
    img->info = (wh_image_info){.width = (int)h.width, .height = (int)h.height, .channels = ch,
                                .bits = b, .depth = 8, .pages = 1, .format = "BMP"};
    if (info_only) return WH_OK;
    WH_TRY(wh_raw_alloc(name, img));
    unsigned char *out = img->pixels;
    int64_t w = h.width, H = h.height;

    if (b <= 8) {
        unsigned char *idx = malloc((size_t)(w * H));
        if (!idx) return wh_fail(WH_ERR_MEMORY, "%s: out of memory", name);
        wh_status st = WH_OK;
        if (h.compression == BI_RLE8 || h.compression == BI_RLE4) {
            st = rle_indices(d, n, &h, idx);
        } else {
            size_t stride = (size_t)(((uint64_t)w * (uint64_t)b + 31) / 32 * 4);
            for (int64_t y = 0; y < H; y++) {
                const unsigned char *row = d + h.offset + stride * (size_t)(h.top_down ? y : H - 1 - y);
                for (int64_t x = 0; x < w; x++) {
                    int64_t bit = x * b;
                    idx[y * w + x] = (unsigned char)(row[bit >> 3] >> (8 - b - (bit & 7)) &
                                                     ((1u << b) - 1));
                }
            }
        }
        for (int64_t i = 0; st == WH_OK && i < w * H; i++) {
            unsigned v = idx[i];
            if ((int)v >= h.ncolors) {
                st = wh_fail(WH_ERR_FORMAT, "%s: corrupt BMP: pixel (%lld,%lld) uses colour %u of "
                             "a %d-entry palette", name, (long long)(i / w + 1),
                             (long long)(i % w + 1), v, h.ncolors);
                break;
            }
            if (ch == 1) out[i] = h.pal[v][0];
            else memcpy(out + 3 * i, h.pal[v], 3);
        }
        free(idx);
        return st;
    }

    size_t stride = (size_t)(((uint64_t)w * (uint64_t)b + 31) / 32 * 4);
    bool any_alpha = false;
    for (int64_t y = 0; y < H; y++) {
        const unsigned char *row = d + h.offset + stride * (size_t)(h.top_down ? y : H - 1 - y);
        unsigned char *o = out + (size_t)(y * w) * (size_t)ch;
        for (int64_t x = 0; x < w; x++, o += ch) {
            if (b == 24) {
                const unsigned char *p = row + 3 * x;
                o[0] = p[2], o[1] = p[1], o[2] = p[0];
                continue;
            }
            uint32_t v = b == 16 ? u16le(row + 2 * x) : u32le(row + 4 * x);
            for (int k = 0; k < ch; k++) {
                const channel_mask *m = &h.m[k];
                o[k] = m->mask ? scale8((v & m->mask) >> m->shift, m->max) : 0;
            }
            if (ch == 4 && o[3]) any_alpha = true;
        }
    }
    /* An alpha mask with every alpha zero comes from writers that do not
     * fill it: the image is opaque, not invisible. */
    if (ch == 4 && !any_alpha)
        for (int64_t i = 0; i < w * H; i++) out[4 * i + 3] = 255;
    return WH_OK;
}

/* ---- writer: 8-bit palettized grey or 24-bit BGR, bottom-up ---------------------- */

static void put16(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i);
}

wh_status wh_write_bmp(const char *path, const wh_raw_image *img) {
    int w = img->info.width, h = img->info.height, c = img->info.channels;
    int bpp = c == 1 ? 8 : 24;
    size_t stride = ((size_t)w * (size_t)bpp + 31) / 32 * 4;
    size_t pal = c == 1 ? 256 * 4 : 0, offset = 14 + 40 + pal;
    size_t total = offset + stride * (size_t)h;
    if (total > 0xFFFFFFFFu) return wh_fail(WH_ERR_ARG, "%s: image too large for BMP", path);
    unsigned char *buf = calloc(1, total);
    if (!buf) return wh_fail(WH_ERR_MEMORY, "%s: out of memory", path);
    buf[0] = 'B', buf[1] = 'M';
    put32(buf + 2, (uint32_t)total);
    put32(buf + 10, (uint32_t)offset);
    put32(buf + 14, 40);
    put32(buf + 18, (uint32_t)w);
    put32(buf + 22, (uint32_t)h);
    put16(buf + 26, 1);
    put16(buf + 28, (uint32_t)bpp);
    put32(buf + 34, (uint32_t)(stride * (size_t)h));
    put32(buf + 38, 19685), put32(buf + 42, 19685); /* 500 dpi in pixels per metre */
    if (c == 1) {
        put32(buf + 46, 256);
        for (int i = 0; i < 256; i++) buf[54 + 4 * i] = buf[55 + 4 * i] = buf[56 + 4 * i] = (unsigned char)i;
    }
    const unsigned char *px = img->pixels;
    for (int y = 0; y < h; y++) {
        unsigned char *row = buf + offset + stride * (size_t)(h - 1 - y);
        const unsigned char *src = px + (size_t)y * (size_t)w * (size_t)c;
        if (c == 1) memcpy(row, src, (size_t)w);
        else
            for (int x = 0; x < w; x++)
                row[3 * x] = src[3 * x + 2], row[3 * x + 1] = src[3 * x + 1], row[3 * x + 2] = src[3 * x];
    }
    wh_status st = wh_write_file(path, buf, total);
    free(buf);
    return st;
}
