/* Lua: whorl.metrics, image quality of restored fingerprints (core/metrics.c).
 *
 *   whorl.metrics.mse(a, b, {mask=nil})                  -> mean, per_image
 *   whorl.metrics.psnr(a, b, {mask=nil, data_range=1})   -> mean, per_image
 *   whorl.metrics.ssim(a, b, {mask=nil, data_range=1})   -> mean, per_image
 *       a, b: float32/float64 CPU tensors of the same shape, (H, W) for one
 *       image or (N, 1, H, W) for a batch.  per_image is a Lua list of N
 *       numbers (one per image) and mean their mean.
 *       mask: a tensor of the images' shape or (H, W) (shared by the batch),
 *       any dtype; the region is where mask > 0.5 and the metric is taken
 *       over it only.  An image whose region is empty is an error naming it.
 *       PSNR = 10 log10(data_range^2 / MSE) per image, math.huge where the
 *       images are equal (the mean is then math.huge too).
 *       SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, population
 *       covariances, mirror ("reflect") borders: scikit-image's
 *       structural_similarity(gaussian_weights=True, sigma=1.5,
 *       use_sample_covariance=False, data_range=...).  Without a mask the
 *       value is the mean of the SSIM map with 5 pixels cropped at every
 *       border (exactly scikit-image's value); with a mask it is the mean of
 *       the full, uncropped SSIM map over the masked pixels.  Needs H, W >= 11.
 *   whorl.metrics.compare(clean, damaged, restored, {mask=nil, data_range=1})
 *       -> {n = N,
 *           whole  = {damaged = {mse=, psnr=, ssim=}, restored = {...}},
 *           region = {damaged = {...}, restored = {...}}}   (region: with mask)
 *       Batch means of each metric of damaged vs clean and restored vs clean,
 *       ready for metrics.json (note: a PSNR of math.huge, for identical
 *       images, is not valid JSON). */
#include <string.h>

#include "binding.h"
#include "metrics.h"

/* opts.mask (pushed on the stack as an anchor), or NULL. */
static wh_tensor *opt_mask(lua_State *L, int opts, const char *op) {
    if (lua_isnoneornil(L, opts)) {
        lua_pushnil(L);
        return NULL;
    }
    lua_getfield(L, opts, "mask");
    if (lua_isnil(L, -1)) return NULL;
    if (!whl_is_tensor(L, -1))
        luaL_error(L, "%s: mask must be a tensor, got %s", op, luaL_typename(L, -1));
    return whl_check_tensor(L, lua_gettop(L));
}

static double opt_range(lua_State *L, int opts) {
    return lua_isnoneornil(L, opts) ? 1.0 : whl_opt_field_number(L, opts, "data_range", 1.0);
}

/* Computes one metric; pushes nothing, returns the mean and fills per_image
 * (a userdata buffer of n doubles the caller anchored). */
static double compute(lua_State *L, const char *op, wh_metric_kind kind, wh_tensor *a,
                      wh_tensor *b, wh_tensor *mask, double range, double *per_image,
                      int64_t n) {
    double mean = 0;
    whl_check(L, wh_metric_compute(op, kind, a, b, mask, range, per_image, n, &mean));
    return mean;
}

static double *new_buffer(lua_State *L, int64_t n) {
    return lua_newuserdatauv(L, sizeof(double) * (size_t)n, 0);
}

static int metric(lua_State *L, wh_metric_kind kind, const char *op) {
    static const char *const with_range[] = {"mask", "data_range", NULL};
    static const char *const mask_only[] = {"mask", NULL};
    wh_tensor *a = whl_check_tensor(L, 1);
    wh_tensor *b = whl_check_tensor(L, 2);
    whl_check_options(L, 3, op, kind == WH_METRIC_MSE ? mask_only : with_range, false);
    wh_tensor *mask = opt_mask(L, 3, op);
    double range = opt_range(L, 3);
    int64_t n = 0;
    whl_check(L, wh_metric_check(op, kind, a, b, mask, &n));
    double *per = new_buffer(L, n);
    double mean = compute(L, op, kind, a, b, mask, range, per, n);
    lua_pushnumber(L, mean);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, per[i]);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    return 2;
}

static int l_mse(lua_State *L) { return metric(L, WH_METRIC_MSE, "whorl.metrics.mse"); }
static int l_psnr(lua_State *L) { return metric(L, WH_METRIC_PSNR, "whorl.metrics.psnr"); }
static int l_ssim(lua_State *L) { return metric(L, WH_METRIC_SSIM, "whorl.metrics.ssim"); }

/* Pushes {mse=, psnr=, ssim=} of x vs clean. */
static void push_triple(lua_State *L, wh_tensor *clean, wh_tensor *x, wh_tensor *mask,
                        double range, double *buf, int64_t n) {
    static const char *const ops[] = {"whorl.metrics.compare (mse)",
                                      "whorl.metrics.compare (psnr)",
                                      "whorl.metrics.compare (ssim)"};
    lua_createtable(L, 0, 3);
    for (int k = 0; k < 3; k++) {
        double m = compute(L, ops[k], (wh_metric_kind)k, x, clean, mask, range, buf, n);
        lua_pushnumber(L, m);
        lua_setfield(L, -2, wh_metric_name((wh_metric_kind)k));
    }
}

static int l_compare(lua_State *L) {
    const char *op = "whorl.metrics.compare";
    static const char *const allowed[] = {"mask", "data_range", NULL};
    wh_tensor *clean = whl_check_tensor(L, 1);
    wh_tensor *damaged = whl_check_tensor(L, 2);
    wh_tensor *restored = whl_check_tensor(L, 3);
    whl_check_options(L, 4, op, allowed, false);
    wh_tensor *mask = opt_mask(L, 4, op);
    double range = opt_range(L, 4);
    int64_t n = 0;
    /* SSIM is the strictest check (window size); name the pair in errors. */
    whl_check(L, wh_metric_check("whorl.metrics.compare (damaged vs clean)", WH_METRIC_SSIM,
                                 damaged, clean, mask, &n));
    whl_check(L, wh_metric_check("whorl.metrics.compare (restored vs clean)", WH_METRIC_SSIM,
                                 restored, clean, mask, &n));
    double *buf = new_buffer(L, n);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, -2, "n");
    for (int region = 0; region < (mask ? 2 : 1); region++) {
        wh_tensor *m = region ? mask : NULL;
        lua_createtable(L, 0, 2);
        push_triple(L, clean, damaged, m, range, buf, n);
        lua_setfield(L, -2, "damaged");
        push_triple(L, clean, restored, m, range, buf, n);
        lua_setfield(L, -2, "restored");
        lua_setfield(L, -2, region ? "region" : "whole");
    }
    return 1;
}

void whl_open_metrics(lua_State *L, int module, int methods) {
    static const luaL_Reg funcs[] = {
        {"mse", l_mse},
        {"psnr", l_psnr},
        {"ssim", l_ssim},
        {"compare", l_compare},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
    lua_setfield(L, module, "metrics");
}
