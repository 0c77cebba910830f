/* PNG and JPEG through stb_image (Debian
 * libstb-dev headers, compiled here as private static copies so that the
 * decoders are built with our flags: the sanitizers and the fuzz target see
 * inside them).
 *
 * stb_image is lenient where whorl must not be: it ignores PNG CRCs and
 * decodes a truncated JPEG into an image whose bottom is grey.  Both are
 * checked here before stb sees the data. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#include "stb_warnings.h"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

/* ---- PNG chunk structure and CRCs (RFC 2083, section 3.4) ------------------------ */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static wh_status png_check_chunks(const unsigned char *d, size_t n, const char *name) {
    size_t p = 8;
    for (int i = 0;; i++) {
        if (n - p < 12)
            return wh_fail(WH_ERR_FORMAT, "%s: truncated PNG: the file ends after %zu bytes, "
                           "before the IEND chunk", name, n);
        uint32_t len = be32(d + p);
        char type[5] = {(char)d[p + 4], (char)d[p + 5], (char)d[p + 6], (char)d[p + 7], 0};
        for (int k = 0; k < 4; k++)
            if (!((type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z')))
                return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNG: chunk %d has an invalid type",
                               name, i + 1);
        if (i == 0 && (strcmp(type, "IHDR") != 0 || len != 13))
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNG: first chunk is %s of %u bytes, not "
                           "IHDR", name, type, len);
        if (len > n - p - 12)
            return wh_fail(WH_ERR_FORMAT, "%s: truncated PNG: chunk %s of %u bytes at offset %zu "
                           "runs past the end of the file (%zu bytes)", name, type, len, p, n);
        if (crc32_of(d + p + 4, (size_t)len + 4) != be32(d + p + 8 + len))
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt PNG: CRC mismatch in chunk %s at offset %zu",
                           name, type, p);
        if (i == 0) /* stb reports an oversized image only as "unknown image type" */
            WH_TRY(wh_image_check_size(name, "PNG", be32(d + p + 8), be32(d + p + 12)));
        p += (size_t)len + 12;
        if (strcmp(type, "IEND") == 0) return WH_OK;
    }
}

/* ---- JPEG marker structure (ITU T.81, annex B) ------------------------------------
 * Walked before stb sees the file.  A truncated file must fail: stb pads
 * missing scan data with zeros, so the walk must reach the end-of-image
 * marker.  And two holes of stb v2.27, both found by the fuzz target, are
 * closed here: it trusts the symbol counts of a Huffman table (counts summing
 * to more than 256 overflow its tables), and it decodes a scan with a Huffman
 * table that no DHT segment defined (its tables are uninitialised memory
 * then, and indices run out of bounds).  So each table is checked, and each
 * scan may only use tables defined before it. */

static wh_status jpeg_check_dht(const unsigned char *s, size_t len, const char *name, size_t at,
                                unsigned *defined) {
    while (len > 0) {
        if (len < 17)
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: short Huffman table at offset %zu",
                           name, at);
        unsigned tc = s[0] >> 4, th = s[0] & 15, total = 0;
        if (tc > 1 || th > 3)
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: Huffman table class %u id %u at "
                           "offset %zu", name, tc, th, at);
        for (int i = 1; i <= 16; i++) total += s[i];
        if (total > 256 || 17 + (size_t)total > len)
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: Huffman table at offset %zu declares "
                           "%u symbols", name, at, total);
        *defined |= 1u << (tc * 4 + th); /* bits 0-3: DC tables, 4-7: AC tables */
        s += 17 + total;
        len -= 17 + total;
    }
    return WH_OK;
}

/* The Huffman tables a scan (SOS segment s of len bytes) decodes with must
 * have been defined.  A sequential scan uses every DC and AC table it names;
 * a progressive one only the DC tables of a first DC scan (Ss = 0, Ah = 0)
 * or the AC table of an AC scan (Ss > 0). */
static wh_status jpeg_check_sos(const unsigned char *s, size_t len, const char *name, size_t at,
                                unsigned defined, bool progressive) {
    unsigned ns = len ? s[0] : 0;
    if (ns < 1 || ns > 4 || len != 1 + 2 * (size_t)ns + 3)
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: scan header at offset %zu", name, at);
    unsigned ss = s[1 + 2 * ns], ah = s[3 + 2 * ns] >> 4;
    bool need_dc = !progressive || (ss == 0 && ah == 0), need_ac = !progressive || ss > 0;
    for (unsigned i = 0; i < ns; i++) {
        unsigned td = s[2 + 2 * i] >> 4, ta = s[2 + 2 * i] & 15;
        if ((need_dc && (td > 3 || !(defined >> td & 1))) ||
            (need_ac && (ta > 3 || !(defined >> (4 + ta) & 1))))
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: the scan at offset %zu uses a Huffman "
                           "table that was never defined", name, at);
    }
    return WH_OK;
}

static wh_status jpeg_check_markers(const unsigned char *d, size_t n, const char *name,
                                    bool info_only) {
    bool in_scan = false, progressive = false;
    unsigned defined = 0;
    size_t p = 2; /* after SOI */
    while (p < n) {
        if (d[p] != 0xFF) {
            if (!in_scan)
                return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: expected a marker at offset %zu",
                               name, p);
            p++; /* entropy-coded data */
            continue;
        }
        if (p + 1 >= n) break;
        unsigned m = d[p + 1];
        if (m == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        if (m == 0x00 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 || m == 0xD8) {
            p += 2; /* stuffed FF, restart, TEM, SOI: no length */
            continue;
        }
        if (m == 0xD9) return WH_OK; /* EOI */
        if (p + 4 > n) break;
        size_t len = (size_t)d[p + 2] << 8 | d[p + 3];
        if (len < 2)
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt JPEG: marker segment of length %zu at "
                           "offset %zu", name, len, p);
        if (p + 2 + len > n) break;
        if (m == 0xC4) WH_TRY(jpeg_check_dht(d + p + 4, len - 2, name, p, &defined));
        if (m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE) progressive = true;
        if (m == 0xDA) {
            if (info_only) return WH_OK; /* the header is complete */
            WH_TRY(jpeg_check_sos(d + p + 4, len - 2, name, p, defined, progressive));
            in_scan = true;
        }
        p += 2 + len;
    }
    return wh_fail(WH_ERR_FORMAT, "%s: truncated JPEG: the file ends after %zu bytes, before the "
                   "end-of-image marker", name, n);
}

/* ---- decoding ------------------------------------------------------------------------ */

static wh_status stb_decode(const unsigned char *d, size_t n, const char *name, bool info_only,
                            wh_raw_image *img, const char *format) {
    if (n > INT32_MAX) return wh_fail(WH_ERR_FORMAT, "%s: %s file too large", name, format);
    int w, h, comp;
    if (!stbi_info_from_memory(d, (int)n, &w, &h, &comp))
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt %s: %s", name, format, stbi_failure_reason());
    WH_TRY(wh_image_check_size(name, format, w, h));
    bool wide = stbi_is_16_bit_from_memory(d, (int)n);
    img->info = (wh_image_info){.width = w, .height = h, .channels = comp,
                                .bits = comp * (wide ? 16 : 8), .depth = wide ? 16 : 8,
                                .pages = 1, .format = format};
    if (info_only) return WH_OK;
    int w2, h2, c2;
    void *px = wide ? (void *)stbi_load_16_from_memory(d, (int)n, &w2, &h2, &c2, 0)
                    : (void *)stbi_load_from_memory(d, (int)n, &w2, &h2, &c2, 0);
    if (!px)
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt %s: %s", name, format, stbi_failure_reason());
    if (w2 != w || h2 != h || c2 != comp) {
        stbi_image_free(px);
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt %s: header and data disagree", name, format);
    }
    /* stb's buffer came from malloc (STBI_MALLOC), so it can be the raw image's. */
    img->pixels = px;
    return WH_OK;
}

wh_status wh_decode_png(const unsigned char *d, size_t n, const char *name, bool info_only,
                        wh_raw_image *img) {
    WH_TRY(png_check_chunks(d, n, name));
    return stb_decode(d, n, name, info_only, img, "PNG");
}

wh_status wh_decode_jpeg(const unsigned char *d, size_t n, const char *name, bool info_only,
                         wh_raw_image *img) {
    WH_TRY(jpeg_check_markers(d, n, name, info_only));
    return stb_decode(d, n, name, info_only, img, "JPEG");
}
