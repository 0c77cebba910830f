/* What the per-format image files (image_bmp.c, image_tiff.c, image_stb.c,
 * image_pnm.c) share with image_io.c.  Not part of the public API.
 *
 * Each decoder fills a wh_raw_image: interleaved samples, row-major, top row
 * first, 8- or 16-bit (host-endian uint16).  With info_only it fills the
 * info fields and leaves pixels NULL, and must not allocate pixel memory. */
#ifndef WHORL_IMAGE_INTERNAL_H
#define WHORL_IMAGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image_io.h"

typedef struct {
    wh_image_info info; /* info.depth says 8 or 16 bits per decoded sample */
    void *pixels;       /* malloc'd: height * width * channels samples */
} wh_raw_image;

typedef wh_status (*wh_image_decoder)(const unsigned char *data, size_t size, const char *name,
                                      bool info_only, wh_raw_image *img);

wh_status wh_decode_bmp(const unsigned char *data, size_t size, const char *name, bool info_only,
                        wh_raw_image *img);
wh_status wh_decode_tiff(const unsigned char *data, size_t size, const char *name,
                         bool info_only, wh_raw_image *img);
wh_status wh_decode_png(const unsigned char *data, size_t size, const char *name,
                        bool info_only, wh_raw_image *img);
wh_status wh_decode_jpeg(const unsigned char *data, size_t size, const char *name,
                         bool info_only, wh_raw_image *img);
wh_status wh_decode_pnm(const unsigned char *data, size_t size, const char *name,
                        bool info_only, wh_raw_image *img);

/* Writers take 8- or 16-bit interleaved samples (same layout). */
wh_status wh_write_png(const char *path, const wh_raw_image *img);
/* Baseline JPEG at quality 1..100 (stb_image_write); 1 or 3 channels. */
wh_status wh_write_jpeg(const char *path, const wh_raw_image *img, int quality);
wh_status wh_write_tiff(const char *path, const wh_raw_image *img, wh_tiff_compression c);
wh_status wh_write_pnm(const char *path, const wh_raw_image *img);
wh_status wh_write_bmp(const char *path, const wh_raw_image *img);

/* WH_ERR_FORMAT unless width x height (x channels) is a sane image size:
 * both sides positive, at most the process limit of pixels. */
wh_status wh_image_check_size(const char *name, const char *format, int64_t width,
                              int64_t height);
/* Allocates the pixel buffer for img->info (checked sizes). */
wh_status wh_raw_alloc(const char *name, wh_raw_image *img);
void wh_raw_free(wh_raw_image *img);
/* Writes `size` bytes to path, reporting errors with the file name. */
wh_status wh_write_file(const char *path, const void *data, size_t size);

#endif
