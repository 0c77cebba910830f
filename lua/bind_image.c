/* whorl.image: image files and preprocessing (core/image_io.h,
 * core/image_proc.h).
 *
 *   image.read(path, {grey=true, dtype="float32"}) -> (H,W), or (C,H,W) with
 *       grey=false; float in [0,1], or uint8
 *   image.decode(bytes, {grey=, dtype=, name=}) -> the same from a string
 *   image.write(path, img, {bits=8, compression="none"|"lzw"|"deflate", quality=95})
 *       format from the extension: .png .tif .tiff .pgm .ppm .bmp .jpg .jpeg
 *       (quality: JPEG only, 1..100; stb writes JPEG as three components,
 *       so a grey image reads back with three equal channels)
 *   image.info(path) -> {width, height, channels, bits, depth, pages, format}
 *
 * Preprocessing (each takes a grey (H,W) float image, or anything to_grey
 * accepts, and returns a new float32 image):
 *   image.to_grey(img) -> (H,W) float32 in [0,1]
 *   image.foreground(img, {block=16, threshold=0.1, margin=0})
 *       -> mask (H,W) float32 of 0/1, box {top, left, bottom, right} (1-based,
 *          inclusive) or nil when no block is foreground
 *   image.crop(img, {block=, threshold=, margin=}) -> cropped, box
 *   image.resize(img, h, w) -> (h,w): area averaging where shrinking,
 *       bilinear (half-pixel centres) where growing, per axis
 *   image.fit(img, size | {h, w}, {background=nil}) -> (h,w): scaled to fit,
 *       aspect ratio kept, padded with the background (default: the median
 *       of the border pixels), centred
 *   image.background(img) -> the border median
 *   image.equalize(img, {bins=256}) -> histogram equalisation
 *   image.clahe(img, {tiles={8,8}, clip=2.0, bins=256})
 *   image.resample_dpi(img, from_dpi, to_dpi)
 *   image.preprocess(img, opts) -> image, box: the pipeline whorl.data uses
 *       (options: see whl_opt_preprocess below) */
#include <string.h>

#include "binding.h"
#include "image_io.h"
#include "image_proc.h"

static wh_dtype opt_dtype(lua_State *L, int idx, wh_dtype def) {
    if (lua_isnoneornil(L, idx)) return def;
    lua_getfield(L, idx, "dtype");
    wh_dtype dt = whl_opt_dtype(L, -1, def);
    lua_pop(L, 1);
    return dt;
}

static bool opt_grey(lua_State *L, int idx) {
    return whl_opt_field_boolean(L, idx, "grey", true);
}

static void check_opts(lua_State *L, int idx) {
    if (!lua_isnoneornil(L, idx)) luaL_checktype(L, idx, LUA_TTABLE);
}

static int l_read(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    check_opts(L, 2);
    wh_tensor *t = NULL;
    whl_check(L, wh_image_read(path, opt_grey(L, 2), opt_dtype(L, 2, WH_FLOAT32), &t));
    return whl_push_tensor(L, t);
}

static int l_decode(lua_State *L) {
    size_t n;
    const char *bytes = luaL_checklstring(L, 1, &n);
    check_opts(L, 2);
    const char *name = "<memory>";
    if (!lua_isnoneornil(L, 2)) {
        lua_getfield(L, 2, "name");
        if (lua_isstring(L, -1)) name = lua_tostring(L, -1); /* stays on the stack */
    }
    wh_tensor *t = NULL;
    whl_check(L, wh_image_decode(bytes, n, name, opt_grey(L, 2), opt_dtype(L, 2, WH_FLOAT32), &t));
    return whl_push_tensor(L, t);
}

static int l_write(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    wh_tensor *t = whl_check_tensor(L, 2);
    check_opts(L, 3);
    lua_Integer quality = whl_opt_field_integer(L, 3, "quality", 95);
    /* the core reads 0 as its default; from Lua a 0 is a mistake */
    if (quality < 1 || quality > 100)
        return luaL_error(L, "%s: image.write: quality must be 1..100, got %d", path, (int)quality);
    wh_image_write_opts o = {(int)whl_opt_field_integer(L, 3, "bits", 8), WH_TIFF_NONE, (int)quality};
    if (!lua_isnoneornil(L, 3)) {
        lua_getfield(L, 3, "compression");
        if (!lua_isnil(L, -1)) {
            static const char *const names[] = {"none", "lzw", "deflate", NULL};
            o.compression = (wh_tiff_compression)luaL_checkoption(L, -1, NULL, names);
        }
        lua_pop(L, 1);
    }
    whl_check(L, wh_image_write(path, t, &o));
    return 0;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int l_info(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    wh_image_info in;
    whl_check(L, wh_image_info_file(path, &in));
    lua_createtable(L, 0, 7);
    set_int(L, "width", in.width);
    set_int(L, "height", in.height);
    set_int(L, "channels", in.channels);
    set_int(L, "bits", in.bits);
    set_int(L, "depth", in.depth);
    set_int(L, "pages", in.pages);
    lua_pushstring(L, in.format);
    lua_setfield(L, -2, "format");
    return 1;
}

/* ---- preprocessing ----------------------------------------------------------------- */

/* The argument as a grey float32 (H,W) image: a new reference owned by the
 * caller through the returned userdata slot on the stack. */
static wh_tensor *grey_arg(lua_State *L, int idx) {
    wh_tensor *t = whl_check_tensor(L, idx), *g = NULL;
    whl_check(L, wh_image_to_grey(t, &g));
    whl_push_tensor(L, g);
    return g;
}

static int l_to_grey(lua_State *L) {
    lua_settop(L, 1); /* grey_arg pushes above the arguments */
    grey_arg(L, 1);
    return 1;
}

static void opt_segment(lua_State *L, int idx, wh_segment_opts *o) {
    wh_segment_opts_default(o);
    o->block = (int)whl_opt_field_integer(L, idx, "block", o->block);
    o->threshold = whl_opt_field_number(L, idx, "threshold", o->threshold);
    o->margin = (int)whl_opt_field_integer(L, idx, "margin", o->margin);
}

static void push_box(lua_State *L, const wh_box *b) {
    if (b->bottom <= b->top) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 4, 0);
    int64_t v[4] = {b->top + 1, b->left + 1, b->bottom, b->right};
    for (int i = 0; i < 4; i++) {
        lua_pushinteger(L, (lua_Integer)v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_foreground(lua_State *L) {
    lua_settop(L, 2); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    check_opts(L, 2);
    wh_segment_opts o;
    opt_segment(L, 2, &o);
    wh_tensor *mask = NULL;
    wh_box box;
    whl_check(L, wh_image_foreground(g, &o, &mask, &box));
    whl_push_tensor(L, mask);
    push_box(L, &box);
    return 2;
}

static int l_crop(lua_State *L) {
    lua_settop(L, 2); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    check_opts(L, 2);
    wh_segment_opts o;
    opt_segment(L, 2, &o);
    wh_tensor *out = NULL;
    wh_box box;
    whl_check(L, wh_image_crop(g, &o, &out, &box));
    whl_push_tensor(L, out);
    push_box(L, &box);
    return 2;
}

static int64_t check_side(lua_State *L, int idx, const char *what) {
    lua_Integer v = luaL_checkinteger(L, idx);
    if (v < 1 || v > 65535)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in 1..65535, got %I", what, v));
    return v;
}

static int l_resize(lua_State *L) {
    lua_settop(L, 3); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    int64_t h = check_side(L, 2, "height"), w = check_side(L, 3, "width");
    wh_tensor *out = NULL;
    whl_check(L, wh_image_resize(g, h, w, &out));
    return whl_push_tensor(L, out);
}

/* A size argument: n (square) or {h, w}. */
static void check_size_arg(lua_State *L, int idx, int64_t *h, int64_t *w) {
    if (lua_type(L, idx) == LUA_TTABLE) {
        if (luaL_len(L, idx) != 2) luaL_argerror(L, idx, "size must be a number or {h, w}");
        lua_geti(L, idx, 1);
        lua_geti(L, idx, 2);
        *h = check_side(L, -2, "height");
        *w = check_side(L, -1, "width");
        lua_pop(L, 2);
    } else {
        *h = *w = check_side(L, idx, "size");
    }
}

static int l_fit(lua_State *L) {
    lua_settop(L, 3); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    int64_t h, w;
    check_size_arg(L, 2, &h, &w);
    check_opts(L, 3);
    double bg = whl_opt_field_number(L, 3, "background", -1.0);
    wh_tensor *out = NULL;
    whl_check(L, wh_image_fit(g, h, w, bg, &out));
    return whl_push_tensor(L, out);
}

static int l_background(lua_State *L) {
    lua_settop(L, 1); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    double v;
    whl_check(L, wh_image_background(g, &v));
    lua_pushnumber(L, v);
    return 1;
}

static int l_equalize(lua_State *L) {
    lua_settop(L, 2); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    check_opts(L, 2);
    int bins = (int)whl_opt_field_integer(L, 2, "bins", 256);
    wh_tensor *out = NULL;
    whl_check(L, wh_image_equalize(g, bins, &out));
    return whl_push_tensor(L, out);
}

static void opt_clahe(lua_State *L, int idx, wh_clahe_opts *o) {
    wh_clahe_opts_default(o);
    int tiles[2];
    whl_opt_field_pair(L, idx, "tiles", 8, tiles);
    o->tiles_y = tiles[0], o->tiles_x = tiles[1];
    o->clip = whl_opt_field_number(L, idx, "clip", o->clip);
    o->bins = (int)whl_opt_field_integer(L, idx, "bins", o->bins);
}

static int l_clahe(lua_State *L) {
    lua_settop(L, 2); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    check_opts(L, 2);
    wh_clahe_opts o;
    opt_clahe(L, 2, &o);
    wh_tensor *out = NULL;
    whl_check(L, wh_image_clahe(g, &o, &out));
    return whl_push_tensor(L, out);
}

static int l_resample_dpi(lua_State *L) {
    lua_settop(L, 3); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    double from = luaL_checknumber(L, 2), to = luaL_checknumber(L, 3);
    wh_tensor *out = NULL;
    whl_check(L, wh_image_resample_dpi(g, from, to, &out));
    return whl_push_tensor(L, out);
}

/* The preprocessing options of whorl.data, from the table at idx:
 *   size = n | {h, w}   output size (default: keep the size)
 *   fit = true          keep the aspect ratio and pad (false: stretch)
 *   crop = false        crop to the foreground first
 *   block, threshold, margin   segmentation options for crop
 *   dpi, target_dpi     resample from dpi to target_dpi first
 *   equalize = "none" | "hist" | "clahe", clip, tiles   contrast
 *   invert = false      1 - value (dark background, light ridges) */
void whl_opt_preprocess(lua_State *L, int idx, wh_preprocess_opts *o) {
    wh_preprocess_opts_default(o);
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "size");
    if (!lua_isnil(L, -1)) {
        int64_t h, w;
        check_size_arg(L, lua_gettop(L), &h, &w);
        o->out_h = h, o->out_w = w;
    }
    lua_pop(L, 1);
    o->keep_aspect = whl_opt_field_boolean(L, idx, "fit", true);
    o->crop = whl_opt_field_boolean(L, idx, "crop", false);
    opt_segment(L, idx, &o->segment);
    o->from_dpi = whl_opt_field_number(L, idx, "dpi", 0);
    o->to_dpi = whl_opt_field_number(L, idx, "target_dpi", 0);
    lua_getfield(L, idx, "equalize");
    if (!lua_isnil(L, -1)) {
        static const char *const names[] = {"none", "hist", "clahe", NULL};
        if (lua_isboolean(L, -1)) o->equalize = lua_toboolean(L, -1) ? WH_EQ_HIST : WH_EQ_NONE;
        else o->equalize = (wh_equalize_mode)luaL_checkoption(L, -1, NULL, names);
    }
    lua_pop(L, 1);
    opt_clahe(L, idx, &o->clahe);
    o->invert = whl_opt_field_boolean(L, idx, "invert", false);
}

static int l_preprocess(lua_State *L) {
    lua_settop(L, 2); /* grey_arg pushes above the arguments */
    wh_tensor *g = grey_arg(L, 1);
    wh_preprocess_opts o;
    whl_opt_preprocess(L, 2, &o);
    wh_tensor *out = NULL;
    wh_box box;
    whl_check(L, wh_preprocess(g, &o, NULL, &out, &box));
    whl_push_tensor(L, out);
    push_box(L, &box);
    return 2;
}

static const luaL_Reg image_fns[] = {
    {"read", l_read},
    {"decode", l_decode},
    {"write", l_write},
    {"info", l_info},
    {"to_grey", l_to_grey},
    {"foreground", l_foreground},
    {"crop", l_crop},
    {"resize", l_resize},
    {"fit", l_fit},
    {"background", l_background},
    {"equalize", l_equalize},
    {"clahe", l_clahe},
    {"resample_dpi", l_resample_dpi},
    {"preprocess", l_preprocess},
    {NULL, NULL},
};

/* whorl.data's C side lives in bind_data.c; it adds module._data. */
void whl_open_data_core(lua_State *L, int module);

void whl_open_image(lua_State *L, int module, int methods) {
    lua_newtable(L);
    luaL_setfuncs(L, image_fns, 0);
    lua_setfield(L, module, "image");
    whl_open_data_core(L, module);
}
