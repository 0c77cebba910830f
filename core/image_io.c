/* Image files: format detection by magic bytes, the conversion of decoded
 * samples into tensors, and the choice of writer by extension.  The
 * decoders themselves live in image_bmp.c, image_tiff.c, image_stb.c and
 * image_pnm.c. */
#include "image_io.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "image_internal.h"

/* Files above this are refused before reading: no fingerprint image comes
 * near it, and a bogus path to a huge file should fail fast. */
#define MAX_FILE_BYTES ((size_t)1 << 30)

static _Atomic int64_t max_pixels = (int64_t)1 << 28;

void wh_image_set_max_pixels(int64_t n) { atomic_store(&max_pixels, n > 0 ? n : 1); }
int64_t wh_image_max_pixels(void) { return atomic_load(&max_pixels); }

wh_status wh_image_check_size(const char *name, const char *format, int64_t width,
                              int64_t height) {
    if (width <= 0 || height <= 0)
        return wh_fail(WH_ERR_FORMAT, "%s: corrupt %s: image size %lldx%lld", name, format,
                       (long long)width, (long long)height);
    int64_t limit = wh_image_max_pixels();
    if (width > limit || height > limit || width > limit / height)
        return wh_fail(WH_ERR_FORMAT, "%s: %s declares %lldx%lld pixels, more than the limit of "
                       "%lld (corrupt file?)", name, format, (long long)width, (long long)height,
                       (long long)limit);
    return WH_OK;
}

wh_status wh_raw_alloc(const char *name, wh_raw_image *img) {
    const wh_image_info *in = &img->info;
    WH_TRY(wh_image_check_size(name, in->format, in->width, in->height));
    size_t n = (size_t)in->width * (size_t)in->height * (size_t)in->channels *
               (in->depth == 16 ? 2 : 1);
    img->pixels = malloc(n ? n : 1);
    if (!img->pixels)
        return wh_fail(WH_ERR_MEMORY, "%s: out of memory for a %dx%d image", name, in->width,
                       in->height);
    return WH_OK;
}

void wh_raw_free(wh_raw_image *img) {
    free(img->pixels);
    img->pixels = NULL;
}

/* ---- files ---------------------------------------------------------------------- */

wh_status wh_read_file(const char *path, size_t max_bytes, unsigned char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return wh_fail(WH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return wh_fail(WH_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        fclose(f);
        return wh_fail(WH_ERR_IO, "%s: empty file (0 bytes)", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return wh_fail(WH_ERR_IO, "%s: file of %lld bytes is larger than the limit of %zu",
                       path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n);
    if (!buf) {
        fclose(f);
        return wh_fail(WH_ERR_MEMORY, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n) {
        free(buf);
        return wh_fail(WH_ERR_IO, "%s: read %zu of %zu bytes%s%s", path, got, n,
                       err ? ": " : "", err ? strerror(errno) : "");
    }
    *data = buf;
    *size = n;
    return WH_OK;
}

wh_status wh_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return wh_fail(WH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t put = fwrite(data, 1, size, f);
    int bad = put != size || fflush(f) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        remove(path);
        return wh_fail(WH_ERR_IO, "%s: write failed: %s", path, strerror(err));
    }
    return WH_OK;
}

/* ---- format detection ------------------------------------------------------------- */

static wh_image_decoder pick_decoder(const unsigned char *d, size_t n) {
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return wh_decode_bmp;
    if (n >= 4 && ((d[0] == 'I' && d[1] == 'I' && (d[2] == 42 || d[2] == 43) && d[3] == 0) ||
                   (d[0] == 'M' && d[1] == 'M' && d[2] == 0 && (d[3] == 42 || d[3] == 43))))
        return wh_decode_tiff;
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return wh_decode_png;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return wh_decode_jpeg;
    if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6') return wh_decode_pnm;
    return NULL;
}

static wh_status decode_raw(const unsigned char *data, size_t size, const char *name,
                            bool info_only, wh_raw_image *img) {
    memset(img, 0, sizeof *img);
    if (size == 0) return wh_fail(WH_ERR_FORMAT, "%s: empty file (0 bytes)", name);
    wh_image_decoder dec = pick_decoder(data, size);
    if (!dec) {
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < size && i < 8; i++)
            snprintf(hex + 3 * i, 4, "%02x ", data[i]);
        if (size) hex[3 * (size < 8 ? size : 8) - 1] = 0;
        return wh_fail(WH_ERR_FORMAT, "%s: not a TIFF, BMP, PNG, JPEG or PGM/PPM file (first "
                       "bytes %s)", name, hex);
    }
    img->info.pages = 1;
    wh_status st = dec(data, size, name, info_only, img);
    if (st != WH_OK) wh_raw_free(img);
    return st;
}

/* ---- samples to tensors ----------------------------------------------------------- */

static inline double sample(const wh_raw_image *img, size_t i) {
    return img->info.depth == 16 ? ((const uint16_t *)img->pixels)[i]
                                 : ((const uint8_t *)img->pixels)[i];
}

static void store(void *dst, wh_dtype dt, size_t i, double v, double maxval) {
    switch (dt) {
    case WH_UINT8: {
        double b = maxval == 255.0 ? v : v * 255.0 / maxval;
        ((uint8_t *)dst)[i] = (uint8_t)lrint(b);
        break;
    }
    case WH_FLOAT32: ((float *)dst)[i] = (float)(v / maxval); break;
    case WH_FLOAT64: ((double *)dst)[i] = v / maxval; break;
    }
}

static wh_status raw_to_tensor(const wh_raw_image *img, bool grey, wh_dtype dtype,
                               wh_tensor **out) {
    int64_t h = img->info.height, w = img->info.width, c = img->info.channels;
    double maxval = img->info.depth == 16 ? 65535.0 : 255.0;
    size_t hw = (size_t)(h * w);
    if (grey) {
        int64_t shape[2] = {h, w};
        WH_TRY(wh_tensor_empty(dtype, 2, shape, NULL, out));
        void *dst = wh_tensor_data(*out);
        for (size_t p = 0; p < hw; p++) {
            double v;
            if (c >= 3) /* ITU-R BT.601 luma; alpha ignored */
                v = 0.299 * sample(img, p * c) + 0.587 * sample(img, p * c + 1) +
                    0.114 * sample(img, p * c + 2);
            else
                v = sample(img, p * c);
            store(dst, dtype, p, v, maxval);
        }
        return WH_OK;
    }
    int64_t shape[3] = {c, h, w};
    WH_TRY(wh_tensor_empty(dtype, 3, shape, NULL, out));
    void *dst = wh_tensor_data(*out);
    for (int64_t k = 0; k < c; k++)
        for (size_t p = 0; p < hw; p++)
            store(dst, dtype, (size_t)k * hw + p, sample(img, p * c + k), maxval);
    return WH_OK;
}

static wh_status check_dtype(const char *name, wh_dtype dtype) {
    if (dtype != WH_UINT8 && dtype != WH_FLOAT32 && dtype != WH_FLOAT64)
        return wh_fail(WH_ERR_DTYPE, "%s: cannot decode into dtype %s", name,
                       wh_dtype_name(dtype));
    return WH_OK;
}

wh_status wh_image_decode(const void *data, size_t size, const char *name, bool grey,
                          wh_dtype dtype, wh_tensor **out) {
    *out = NULL;
    WH_TRY(check_dtype(name, dtype));
    wh_raw_image img;
    WH_TRY(decode_raw(data, size, name, false, &img));
    wh_status st = raw_to_tensor(&img, grey, dtype, out);
    wh_raw_free(&img);
    return st;
}

wh_status wh_image_read(const char *path, bool grey, wh_dtype dtype, wh_tensor **out) {
    *out = NULL;
    WH_TRY(check_dtype(path, dtype));
    unsigned char *data;
    size_t size;
    WH_TRY(wh_read_file(path, MAX_FILE_BYTES, &data, &size));
    wh_status st = wh_image_decode(data, size, path, grey, dtype, out);
    free(data);
    return st;
}

wh_status wh_image_info_memory(const void *data, size_t size, const char *name,
                               wh_image_info *info) {
    wh_raw_image img;
    WH_TRY(decode_raw(data, size, name, true, &img));
    *info = img.info;
    wh_raw_free(&img);
    return WH_OK;
}

wh_status wh_image_info_file(const char *path, wh_image_info *info) {
    unsigned char *data;
    size_t size;
    WH_TRY(wh_read_file(path, MAX_FILE_BYTES, &data, &size));
    wh_status st = wh_image_info_memory(data, size, path, info);
    free(data);
    return st;
}

/* ---- writing ---------------------------------------------------------------------- */

static const char *extension(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

/* Tensor -> interleaved samples of `bits` bits. */
static wh_status tensor_to_raw(const char *path, const wh_tensor *t, int bits, wh_raw_image *img) {
    memset(img, 0, sizeof *img);
    char buf[64];
    if (wh_tensor_device(t).type != WH_CPU)
        return wh_fail(WH_ERR_DEVICE, "%s: image.write needs a CPU tensor", path);
    int64_t c, h, w;
    if (t->ndim == 2) {
        c = 1, h = t->shape[0], w = t->shape[1];
    } else if (t->ndim == 3 && t->shape[0] >= 1 && t->shape[0] <= 4) {
        c = t->shape[0], h = t->shape[1], w = t->shape[2];
    } else {
        return wh_fail(WH_ERR_SHAPE, "%s: image.write takes (H,W) or (C,H,W) with C in 1..4, "
                       "got %s", path, wh_shape_str(t, buf, sizeof buf));
    }
    if (h <= 0 || w <= 0 || h > 65535 || w > 65535)
        return wh_fail(WH_ERR_SHAPE, "%s: image.write: cannot write an image of size %lldx%lld "
                       "(1..65535 per side)", path, (long long)h, (long long)w);
    img->info = (wh_image_info){.width = (int)w, .height = (int)h, .channels = (int)c,
                                .depth = bits, .bits = bits * (int)c, .pages = 1,
                                .format = extension(path)};
    WH_TRY(wh_raw_alloc(path, img));
    double maxval = bits == 16 ? 65535.0 : 255.0;
    const char *data = t->storage->data;
    size_t es = wh_dtype_size(t->dtype);
    for (int64_t k = 0; k < c; k++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++) {
                int64_t off = t->offset + (t->ndim == 3 ? k * t->stride[0] : 0) +
                              y * t->stride[t->ndim - 2] + x * t->stride[t->ndim - 1];
                double v;
                if (t->dtype == WH_UINT8) {
                    v = ((const uint8_t *)data)[off] * (maxval / 255.0);
                } else {
                    v = t->dtype == WH_FLOAT32 ? *(const float *)(data + off * es)
                                               : *(const double *)(data + off * es);
                    if (isnan(v)) {
                        wh_raw_free(img);
                        return wh_fail(WH_ERR_ARG, "%s: image.write: pixel (%lld,%lld) is NaN",
                                       path, (long long)y + 1, (long long)x + 1);
                    }
                    v = (v < 0 ? 0 : v > 1 ? 1 : v) * maxval;
                }
                size_t i = ((size_t)y * (size_t)w + (size_t)x) * (size_t)c + (size_t)k;
                if (bits == 16) ((uint16_t *)img->pixels)[i] = (uint16_t)lrint(v);
                else ((uint8_t *)img->pixels)[i] = (uint8_t)lrint(v);
            }
    return WH_OK;
}

wh_status wh_image_write(const char *path, const wh_tensor *t, const wh_image_write_opts *opts) {
    wh_image_write_opts o = opts ? *opts : (wh_image_write_opts){8, WH_TIFF_NONE, 0};
    if (o.bits == 0) o.bits = 8;
    if (o.quality == 0) o.quality = 95;
    const char *ext = extension(path);
    enum { PNG, TIFF, PNM, BMP, JPEG } kind;
    if (strcasecmp(ext, "png") == 0) kind = PNG;
    else if (strcasecmp(ext, "tif") == 0 || strcasecmp(ext, "tiff") == 0) kind = TIFF;
    else if (strcasecmp(ext, "pgm") == 0 || strcasecmp(ext, "ppm") == 0 ||
             strcasecmp(ext, "pnm") == 0) kind = PNM;
    else if (strcasecmp(ext, "bmp") == 0) kind = BMP;
    else if (strcasecmp(ext, "jpg") == 0 || strcasecmp(ext, "jpeg") == 0) kind = JPEG;
    else
        return wh_fail(WH_ERR_ARG, "%s: image.write: unknown extension '.%s' (.png, .tif, "
                       ".tiff, .pgm, .ppm, .bmp, .jpg, .jpeg)", path, ext);
    if (o.bits != 8 && o.bits != 16)
        return wh_fail(WH_ERR_ARG, "%s: image.write: bits must be 8 or 16, got %d", path, o.bits);
    if (o.quality < 1 || o.quality > 100)
        return wh_fail(WH_ERR_ARG, "%s: image.write: quality must be 1..100, got %d", path,
                       o.quality);
    if (o.bits == 16 && (kind == PNG || kind == BMP || kind == JPEG))
        return wh_fail(WH_ERR_ARG, "%s: image.write: 16-bit output needs .tif or .pgm", path);
    if (o.compression != WH_TIFF_NONE && kind != TIFF)
        return wh_fail(WH_ERR_ARG, "%s: image.write: compression applies to TIFF only", path);
    if (t->dtype != WH_UINT8 && !wh_dtype_is_float(t->dtype))
        return wh_fail(WH_ERR_DTYPE, "%s: image.write: unsupported dtype %s", path,
                       wh_dtype_name(t->dtype));
    wh_raw_image img;
    WH_TRY(tensor_to_raw(path, t, o.bits, &img));
    int c = img.info.channels;
    wh_status st = WH_OK;
    if (kind == PNM && c != 1 && c != 3)
        st = wh_fail(WH_ERR_SHAPE, "%s: PGM/PPM holds 1 or 3 channels, the tensor has %d", path, c);
    else if (kind == BMP && c != 1 && c != 3)
        st = wh_fail(WH_ERR_SHAPE, "%s: BMP output holds 1 or 3 channels, the tensor has %d",
                     path, c);
    else if (kind == JPEG && c != 1 && c != 3)
        st = wh_fail(WH_ERR_SHAPE, "%s: JPEG output holds 1 or 3 channels, the tensor has %d",
                     path, c);
    else if (kind == PNG) st = wh_write_png(path, &img);
    else if (kind == TIFF) st = wh_write_tiff(path, &img, o.compression);
    else if (kind == PNM) st = wh_write_pnm(path, &img);
    else if (kind == JPEG) st = wh_write_jpeg(path, &img, o.quality);
    else st = wh_write_bmp(path, &img);
    wh_raw_free(&img);
    return st;
}
