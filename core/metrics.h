/* Image quality metrics for restored fingerprints: MSE, PSNR and SSIM, per
 * image of a batch, over the whole image or over a masked region.
 *
 * Layouts: a and b are float tensors (float32 or float64, CPU) of shape
 * (H, W) (one image) or (N, 1, H, W) (N images), both of the same shape.
 * The optional mask has the shape of a, or (H, W) (shared by all images),
 * and any dtype; a pixel is in the region where mask > 0.5.  A region with
 * no pixel is an error naming the (1-based) image.
 *
 *   MSE  = mean over the pixels of (a - b)^2.
 *   PSNR = 10 log10(data_range^2 / MSE) dB; +inf where MSE is 0.
 *   SSIM = Wang et al. 2004 with a Gaussian window (sigma 1.5, truncated at
 *          3.5 sigma: 11x11), K1 = 0.01, K2 = 0.03, population (not sample)
 *          covariances; local statistics are filtered with mirror borders
 *          (scipy's "reflect": d c b a | a b c d), exactly as scikit-image's
 *          structural_similarity(gaussian_weights=True, sigma=1.5,
 *          use_sample_covariance=False).
 *          Whole image: the mean of the SSIM map with 5 pixels cropped from
 *          every border (scikit-image's value).  With a mask: the mean of the
 *          full (uncropped) SSIM map over the masked pixels, so regions that
 *          touch the border count too.  SSIM needs H, W >= 11.
 *
 * Images are processed in parallel (OpenMP). */
#ifndef WHORL_METRICS_H
#define WHORL_METRICS_H

#include "tensor.h"

typedef enum { WH_METRIC_MSE = 0, WH_METRIC_PSNR = 1, WH_METRIC_SSIM = 2 } wh_metric_kind;

/* "mse", "psnr", "ssim". */
const char *wh_metric_name(wh_metric_kind kind);

/* Checks a, b (and mask when not NULL) for `kind` and gives the number of
 * images.  op names the caller in messages ("whorl.metrics.ssim"). */
wh_status wh_metric_check(const char *op, wh_metric_kind kind, const wh_tensor *a,
                          const wh_tensor *b, const wh_tensor *mask, int64_t *nimages);

/* Writes the metric of every image into per_image (nimages entries, as
 * returned by wh_metric_check) and their mean into *mean (may be NULL).
 * data_range (> 0) is used by PSNR and SSIM. */
wh_status wh_metric_compute(const char *op, wh_metric_kind kind, const wh_tensor *a,
                            const wh_tensor *b, const wh_tensor *mask, double data_range,
                            double *per_image, int64_t nimages, double *mean);

#endif
