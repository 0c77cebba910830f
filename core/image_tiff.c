/* TIFF through libtiff: reading the first directory (page) from memory, and
 * writing 8/16-bit grey or RGB(A).
 *
 * Grey (min-is-black or min-is-white, 1/2/4/8/16 bits), palette and RGB
 * images of unsigned integer samples are read sample by sample from strips
 * or tiles, contiguous or planar, so 16-bit data keeps its precision and
 * min-is-white is inverted exactly.  Anything else libtiff can turn into
 * RGBA (YCbCr, CMYK, JPEG-in-TIFF, LogLuv...) goes through
 * TIFFReadRGBAImage at 8 bits.  The Orientation tag is honoured.
 *
 * libtiff reports errors through process-wide handlers that print to
 * stderr by default.  Ours record the first error of the current thread
 * (libtiff calls them on the thread that called it), so the message ends up
 * in the wh_fail text and nothing is printed; warnings are dropped. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

#include "image_internal.h"

/* ---- error capture ------------------------------------------------------------------- */

static _Thread_local char tiff_error[400];

static void on_error(const char *module, const char *fmt, va_list ap) {
    if (tiff_error[0]) return; /* the first error explains the rest */
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(tiff_error, sizeof tiff_error, "%s%s%s", module ? module : "", module ? ": " : "", msg);
}

static void on_warning(const char *module, const char *fmt, va_list ap) {}

static void install_handlers(void) {
    TIFFSetErrorHandler(on_error);
    TIFFSetWarningHandler(on_warning);
}

static void reset_errors(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_handlers);
    tiff_error[0] = 0;
}

static const char *last_error(void) { return tiff_error[0] ? tiff_error : "unknown libtiff error"; }

/* ---- reading from memory ------------------------------------------------------------- */

typedef struct {
    const unsigned char *d;
    toff_t n, pos;
} memfile;

static tmsize_t mem_read(thandle_t h, void *buf, tmsize_t size) {
    memfile *m = h;
    if (size < 0) return -1;
    toff_t left = m->pos < m->n ? m->n - m->pos : 0;
    toff_t k = (toff_t)size < left ? (toff_t)size : left;
    memcpy(buf, m->d + m->pos, (size_t)k);
    m->pos += k;
    return (tmsize_t)k;
}
static tmsize_t mem_write(thandle_t h, void *buf, tmsize_t size) { return -1; }
static toff_t mem_seek(thandle_t h, toff_t off, int whence) {
    memfile *m = h;
    toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->n;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    m->pos = base + off; /* past the end is allowed; reads there return 0 bytes */
    return m->pos;
}
static int mem_close(thandle_t h) { return 0; }
static toff_t mem_size(thandle_t h) { return ((memfile *)h)->n; }
static int mem_map(thandle_t h, void **base, toff_t *size) { return 0; }
static void mem_unmap(thandle_t h, void *base, toff_t size) {}

static wh_status fail_tiff(const char *name, const char *what) {
    /* libtiff's text often repeats the file name ("TIFFFetchDirectory: x.tif:
     * Can not read..."); ours already starts with it. */
    char msg[sizeof tiff_error];
    snprintf(msg, sizeof msg, "%s", last_error());
    size_t nl = strlen(name);
    char *at = nl ? strstr(msg, name) : NULL;
    if (at && strncmp(at + nl, ": ", 2) == 0) memmove(at, at + nl + 2, strlen(at + nl + 2) + 1);
    return wh_fail(WH_ERR_FORMAT, "%s: %s TIFF: %s", name, what, msg);
}

typedef enum { PATH_GREY, PATH_RGB, PATH_PALETTE, PATH_RGBA } read_path;

typedef struct {
    TIFF *tif;
    const char *name;
    uint32_t w, h;
    uint16_t bps, spp, photometric, planar, orientation;
    int channels;          /* output channels */
    read_path path;
    uint16_t *cmap[3];     /* palette (libtiff's arrays) */
    bool cmap8, grey_cmap; /* colormap written with 8-bit values; grey palette */
} tiff_desc;

static wh_status describe(TIFF *tif, const char *name, tiff_desc *t) {
    memset(t, 0, sizeof *t);
    t->tif = tif;
    t->name = name;
    uint16_t sampleformat = SAMPLEFORMAT_UINT, nextra = 0, *extra = NULL;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &t->w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &t->h))
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt TIFF: no image width or length", name);
    WH_TRY(wh_image_check_size(name, "TIFF", t->w, t->h));
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &t->bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &t->spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &t->planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sampleformat);
    TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
    TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &t->orientation);
    if (t->orientation < 1 || t->orientation > 8) t->orientation = ORIENTATION_TOPLEFT;
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &t->photometric)) {
        /* Missing in some old bilevel files (libtiff usually fills it in);
         * TIFF 6.0's baseline bilevel default is min-is-white. */
        t->photometric = t->spp >= 3   ? PHOTOMETRIC_RGB
                         : t->bps == 1 ? PHOTOMETRIC_MINISWHITE
                                       : PHOTOMETRIC_MINISBLACK;
    }
    if (t->spp == 0 || t->bps == 0)
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt TIFF: %u samples of %u bits per pixel", name,
                       t->spp, t->bps);
    uint16_t ph = t->photometric, b = t->bps;
    bool uint_ok = sampleformat == SAMPLEFORMAT_UINT &&
                   (b == 1 || b == 2 || b == 4 || b == 8 || b == 16);
    if (uint_ok && (ph == PHOTOMETRIC_MINISBLACK || ph == PHOTOMETRIC_MINISWHITE)) {
        t->path = PATH_GREY;
        t->channels = t->spp >= 2 ? 2 : 1;
    } else if (uint_ok && ph == PHOTOMETRIC_RGB && t->spp >= 3 && (b == 8 || b == 16)) {
        t->path = PATH_RGB;
        t->channels = t->spp >= 4 ? 4 : 3;
    } else if (uint_ok && ph == PHOTOMETRIC_PALETTE && b <= 8) {
        t->path = PATH_PALETTE;
        if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &t->cmap[0], &t->cmap[1], &t->cmap[2]))
            return wh_fail(WH_ERR_FORMAT, "%s: corrupt TIFF: palette image without a colour map",
                           name);
        /* Like libtiff's RGBA reader: a map with no value above 255 was
         * written with 8-bit entries. */
        uint32_t n = 1u << b;
        t->cmap8 = t->grey_cmap = true;
        for (uint32_t i = 0; i < n; i++) {
            if (t->cmap[0][i] > 255 || t->cmap[1][i] > 255 || t->cmap[2][i] > 255) t->cmap8 = false;
            if (t->cmap[0][i] != t->cmap[1][i] || t->cmap[1][i] != t->cmap[2][i])
                t->grey_cmap = false;
        }
        t->channels = t->grey_cmap ? 1 : 3;
    } else {
        char why[1024];
        if (!TIFFRGBAImageOK(tif, why))
            return wh_fail(WH_ERR_FORMAT, "%s: unsupported TIFF: %s (photometric %u, %u x %u-bit "
                           "samples, sample format %u)", name, why, ph, t->spp, b, sampleformat);
        t->path = PATH_RGBA;
        t->channels = nextra > 0 ? 4 : 3;
    }
    return WH_OK;
}

/* Sample k of a packed row of bps-bit samples (MSB first, as libtiff hands them). */
static inline uint32_t get_sample(const unsigned char *row, size_t k, int bps) {
    switch (bps) {
    case 8: return row[k];
    case 16: return ((const uint16_t *)row)[k];
    default: {
        size_t bit = k * (size_t)bps;
        return (uint32_t)(row[bit >> 3] >> (8 - bps - (bit & 7))) & ((1u << bps) - 1);
    }
    }
}

/* Stores one stored row segment: pixels x0..x0+n-1 of row y, samples of
 * plane `plane` (all samples when contiguous). */
static void put_row(const tiff_desc *t, wh_raw_image *img, const unsigned char *src, uint32_t y,
                    uint32_t x0, uint32_t n, int plane) {
    int spp_in = t->planar == PLANARCONFIG_CONTIG ? t->spp : 1, ch = img->info.channels;
    uint32_t maxv = (1u << t->bps) - 1;
    bool wide = img->info.depth == 16;
    for (uint32_t i = 0; i < n; i++) {
        size_t o = ((size_t)y * t->w + x0 + i) * (size_t)ch;
        for (int s = 0; s < spp_in; s++) {
            int k = t->planar == PLANARCONFIG_CONTIG ? s : plane; /* output channel */
            uint32_t v = get_sample(src, (size_t)i * (size_t)spp_in + (size_t)s, t->bps);
            if (t->path == PATH_PALETTE) {
                for (int c = 0; c < ch; c++) {
                    uint32_t e = t->cmap[c][v]; /* v < 2^bps entries */
                    ((uint8_t *)img->pixels)[o + (size_t)c] =
                        (uint8_t)(t->cmap8 ? e : (e * 255 + 32767) / 65535);
                }
                continue;
            }
            if (k >= ch) continue; /* extra samples beyond alpha */
            if (t->path == PATH_GREY && k == 0 && t->photometric == PHOTOMETRIC_MINISWHITE)
                v = maxv - v;
            if (wide) ((uint16_t *)img->pixels)[o + (size_t)k] = (uint16_t)v;
            else ((uint8_t *)img->pixels)[o + (size_t)k] =
                     (uint8_t)(t->bps == 8 ? v : (v * 255 * 2 + maxv) / (2 * maxv));
        }
    }
}

static wh_status read_samples(const tiff_desc *t, wh_raw_image *img) {
    TIFF *tif = t->tif;
    int planes = t->planar == PLANARCONFIG_SEPARATE ? t->spp : 1;
    int spp_in = t->planar == PLANARCONFIG_CONTIG ? t->spp : 1;
    bool tiled = TIFFIsTiled(tif);
    uint32_t tw = t->w, th = 1;
    if (tiled) {
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
        if (tw == 0 || th == 0) return wh_fail(WH_ERR_FORMAT, "%s: corrupt TIFF: tile size 0", t->name);
    } else {
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &th);
        if (th == 0 || th > t->h) th = t->h;
    }
    uint64_t rowbytes = ((uint64_t)tw * (uint64_t)spp_in * t->bps + 7) / 8;
    uint64_t bufsize = tiled ? TIFFTileSize64(tif) : TIFFStripSize64(tif);
    if (bufsize == 0 || bufsize < rowbytes || bufsize > ((uint64_t)1 << 31))
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt TIFF: %s size %llu", t->name,
                       tiled ? "tile" : "strip", (unsigned long long)bufsize);
    unsigned char *buf = malloc((size_t)bufsize);
    if (!buf) return wh_fail(WH_ERR_MEMORY, "%s: out of memory for a TIFF %s", t->name,
                             tiled ? "tile" : "strip");
    wh_status st = WH_OK;
    for (int p = 0; p < planes && st == WH_OK; p++)
        for (uint32_t y0 = 0; y0 < t->h && st == WH_OK; y0 += th)
            for (uint32_t x0 = 0; x0 < t->w && st == WH_OK; x0 += tw) {
                uint32_t rows = th < t->h - y0 ? th : t->h - y0;
                uint32_t cols = tw < t->w - x0 ? tw : t->w - x0;
                tmsize_t got;
                if (tiled)
                    got = TIFFReadEncodedTile(tif, TIFFComputeTile(tif, x0, y0, 0, (uint16_t)p), buf,
                                              (tmsize_t)bufsize);
                else
                    got = TIFFReadEncodedStrip(tif, TIFFComputeStrip(tif, y0, (uint16_t)p), buf,
                                               (tmsize_t)bufsize);
                /* A tile always holds th full rows; a strip the rows it covers. */
                uint64_t need = rowbytes * (tiled ? th : rows);
                if (got < 0 || (uint64_t)got < need) {
                    st = got < 0 ? fail_tiff(t->name, "corrupt")
                                 : wh_fail(WH_ERR_FORMAT, "%s: truncated TIFF: %s at row %u has "
                                           "%lld of %llu bytes", t->name, tiled ? "tile" : "strip",
                                           y0 + 1, (long long)got, (unsigned long long)need);
                    break;
                }
                for (uint32_t r = 0; r < rows; r++)
                    put_row(t, img, buf + rowbytes * r, y0 + r, x0, cols, p);
            }
    free(buf);
    return st;
}

static wh_status read_rgba(const tiff_desc *t, wh_raw_image *img) {
    size_t n = (size_t)t->w * t->h;
    uint32_t *raster = malloc(n * sizeof *raster);
    if (!raster) return wh_fail(WH_ERR_MEMORY, "%s: out of memory", t->name);
    if (!TIFFReadRGBAImageOriented(t->tif, t->w, t->h, raster, ORIENTATION_TOPLEFT, 1)) {
        free(raster);
        return fail_tiff(t->name, "corrupt");
    }
    uint8_t *o = img->pixels;
    int ch = img->info.channels;
    for (size_t i = 0; i < n; i++) {
        uint32_t p = raster[i];
        o[i * ch] = (uint8_t)TIFFGetR(p), o[i * ch + 1] = (uint8_t)TIFFGetG(p);
        o[i * ch + 2] = (uint8_t)TIFFGetB(p);
        if (ch == 4) o[i * ch + 3] = (uint8_t)TIFFGetA(p);
    }
    free(raster);
    return WH_OK;
}

/* Applies the Orientation tag (TIFF 6.0, section 8): stored row r, column c
 * of an H x W image goes to the displayed position below. */
static wh_status orient(const char *name, int orientation, wh_raw_image *img) {
    if (orientation == ORIENTATION_TOPLEFT) return WH_OK;
    int64_t H = img->info.height, W = img->info.width;
    size_t es = (size_t)img->info.channels * (img->info.depth == 16 ? 2 : 1);
    bool swap = orientation >= 5;
    int64_t oh = swap ? W : H, ow = swap ? H : W;
    unsigned char *dst = malloc((size_t)(H * W) * es), *src = img->pixels;
    if (!dst) return wh_fail(WH_ERR_MEMORY, "%s: out of memory", name);
    for (int64_t r = 0; r < H; r++)
        for (int64_t c = 0; c < W; c++) {
            int64_t y, x;
            switch (orientation) {
            case 2: y = r, x = W - 1 - c; break;
            case 3: y = H - 1 - r, x = W - 1 - c; break;
            case 4: y = H - 1 - r, x = c; break;
            case 5: y = c, x = r; break;
            case 6: y = c, x = H - 1 - r; break;
            case 7: y = W - 1 - c, x = H - 1 - r; break;
            default: y = W - 1 - c, x = r; break; /* 8 */
            }
            memcpy(dst + (size_t)(y * ow + x) * es, src + (size_t)(r * W + c) * es, es);
        }
    free(img->pixels);
    img->pixels = dst;
    img->info.height = (int)oh, img->info.width = (int)ow;
    return WH_OK;
}

wh_status wh_decode_tiff(const unsigned char *d, size_t n, const char *name, bool info_only,
                         wh_raw_image *img) {
    reset_errors();
    memfile m = {d, n, 0};
    TIFF *tif = TIFFClientOpen(name, "rm", (thandle_t)&m, mem_read, mem_write, mem_seek, mem_close,
                               mem_size, mem_map, mem_unmap);
    if (!tif) return fail_tiff(name, "corrupt");
    tiff_desc t;
    wh_status st = describe(tif, name, &t);
    if (st == WH_OK) {
        bool wide = t.bps == 16 && (t.path == PATH_GREY || t.path == PATH_RGB);
        bool swap = t.path != PATH_RGBA && t.orientation >= 5;
        img->info = (wh_image_info){.width = (int)(swap ? t.h : t.w), .height = (int)(swap ? t.w : t.h),
                                    .channels = t.channels, .bits = t.bps * t.spp,
                                    .depth = wide ? 16 : 8, .pages = 1, .format = "TIFF"};
        if (info_only) {
            img->info.pages = TIFFNumberOfDirectories(tif);
        } else {
            img->info.width = (int)t.w, img->info.height = (int)t.h;
            st = wh_raw_alloc(name, img);
            if (st == WH_OK) st = t.path == PATH_RGBA ? read_rgba(&t, img) : read_samples(&t, img);
            if (st == WH_OK && t.path != PATH_RGBA) st = orient(name, t.orientation, img);
        }
    }
    TIFFClose(tif);
    return st;
}

/* ---- writing -------------------------------------------------------------------------- */

wh_status wh_write_tiff(const char *path, const wh_raw_image *img, wh_tiff_compression comp) {
    reset_errors();
    TIFF *tif = TIFFOpen(path, "w");
    if (!tif) return wh_fail(WH_ERR_IO, "%s: cannot create TIFF: %s", path, last_error());
    uint32_t w = (uint32_t)img->info.width, h = (uint32_t)img->info.height;
    uint16_t c = (uint16_t)img->info.channels, bps = (uint16_t)img->info.depth;
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bps);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, c);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, c >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_ORIENTATION, ORIENTATION_TOPLEFT);
    if (c == 2 || c == 4) {
        uint16_t extra = EXTRASAMPLE_UNASSALPHA;
        TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, 1, &extra);
    }
    TIFFSetField(tif, TIFFTAG_COMPRESSION, comp == WH_TIFF_LZW       ? COMPRESSION_LZW
                                           : comp == WH_TIFF_DEFLATE ? COMPRESSION_ADOBE_DEFLATE
                                                                     : COMPRESSION_NONE);
    if (comp != WH_TIFF_NONE) TIFFSetField(tif, TIFFTAG_PREDICTOR, PREDICTOR_HORIZONTAL);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, TIFFDefaultStripSize(tif, 0));
    size_t rowbytes = (size_t)w * c * (bps / 8);
    /* TIFFWriteScanline may modify the row (predictor), so write from a copy. */
    unsigned char *row = malloc(rowbytes);
    bool ok = row != NULL;
    for (uint32_t y = 0; ok && y < h; y++) {
        memcpy(row, (const unsigned char *)img->pixels + rowbytes * y, rowbytes);
        ok = TIFFWriteScanline(tif, row, y, 0) == 1;
    }
    free(row);
    if (ok) ok = TIFFWriteDirectory(tif) == 1;
    TIFFClose(tif);
    if (!ok) {
        unlink(path);
        return wh_fail(WH_ERR_IO, "%s: writing TIFF failed: %s", path, last_error());
    }
    return WH_OK;
}
