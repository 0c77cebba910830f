/* Helpers shared by the preprocessing files (image_proc.c, image_resize.c,
 * image_contrast.c); not part of the public API.  Images here are grey
 * float32 (H,W) contiguous tensors, as wh_image_to_grey returns them. */
#ifndef WHORL_IMAGE_PROC_INTERNAL_H
#define WHORL_IMAGE_PROC_INTERNAL_H

#include "image_proc.h"

#define WH_PROC_MAX_SIDE 65535

/* A new uninitialised float32 (h,w) image. */
wh_status wh_proc_new_image(int64_t h, int64_t w, wh_tensor **out);
/* A copy of a grey image. */
wh_status wh_proc_copy(const wh_tensor *g, wh_tensor **out);
/* WH_ERR_ARG naming op unless 1 <= h, w <= WH_PROC_MAX_SIDE. */
wh_status wh_proc_check_size(const char *op, int64_t h, int64_t w);
/* The median of the border pixels of an h x w float image. */
wh_status wh_proc_border_median(const float *img, int64_t h, int64_t w, double *value);
/* g scaled to fit oh x ow, centred, padded with bg. */
wh_status wh_proc_fit(const wh_tensor *g, int64_t oh, int64_t ow, double bg, wh_tensor **out);

#endif
