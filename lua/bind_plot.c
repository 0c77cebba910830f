/* whorl.plot's C side: a cairo canvas and colour maps (module.plot of
 * whorl.core; lua/whorl/plot.lua re-exports these and draws figures with them).
 *
 *   plot.canvas(width, height) -> canvas, white, RGB, 1..MAX_SIDE pixels a side
 *   c:color(r, g, b [, a=1])          components in [0,1]; used by what follows
 *   c:line(x1, y1, x2, y2 [, width=1])
 *   c:polyline({x1, y1, x2, y2, ...} [, width=1])   at least two points
 *   c:rect(x, y, w, h [, fill=true [, width=1]])    width: outline's width
 *   c:circle(x, y, r [, fill=true [, width=1]])
 *   c:text(x, y, str [, {size=12, align="left"|"center"|"right",
 *           valign="baseline"|"middle"|"top"|"bottom", rotate=0 (radians), bold=false}])
 *           -> the text's advance width in pixels
 *   c:measure(str [, {size=12, bold=false}]) -> width, ascent, descent (pixels)
 *   c:image(t, x, y [, w, h [, {filter="auto"|"nearest"|"bilinear", alpha=1}]])
 *           t: (H,W) grey or (3,H,W) / (1,H,W), float in [0,1] (clamped) or
 *           uint8 in 0..255; drawn scaled to w x h (default H x W).  "auto":
 *           nearest neighbour when enlarging (pixel-exact blocks), bilinear
 *           when shrinking.
 *   c:clip(x, y, w, h) / c:clip()     restricts drawing to a rectangle / lifts it
 *   c:size() -> width, height
 *   c:save(path)                      PNG, written to a temporary file in the
 *                                     same folder and renamed over path
 *   c:close()                         frees the surface now (also __gc, __close)
 *   plot.colormap(t, name="jet") -> (3,H,W) float32; t (H,W) or (1,H,W) in [0,1]
 *           (clamped), name "jet" | "gray" | "viridis"
 *
 * Coordinates are pixels from the top-left corner, y downwards; they must be
 * finite and within +-MAX_COORD (cairo stores them as 24.8 fixed point). */
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bind_internal.h"

#define CANVAS_MT "whorl.plot.Canvas"
#define MAX_SIDE 8192
#define MAX_COORD 1e6
#define MAX_LINE_WIDTH 1000.0
#define MAX_FONT_SIZE 1000.0
#define FONT_FAMILY "DejaVu Sans"

typedef struct {
    cairo_surface_t *surface; /* NULL once closed */
    cairo_t *cr;
    int width, height;
    size_t bytes; /* the surface's pixels, noted in wh_memory_live_bytes */
} canvas;

/* ---- argument checks ----------------------------------------------------------------- */

static canvas *check_canvas(lua_State *L, int idx) {
    canvas *c = luaL_checkudata(L, idx, CANVAS_MT);
    if (!c->surface) luaL_error(L, "plot: the canvas was closed");
    return c;
}

static double check_finite(lua_State *L, int idx, const char *op, const char *what) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "plot %s: %s must be a number, got %s", op, what, luaL_typename(L, idx));
    double v = lua_tonumber(L, idx);
    if (!isfinite(v)) luaL_error(L, "plot %s: %s must be finite, got %f", op, what, v);
    return v;
}

static double check_coord(lua_State *L, int idx, const char *op, const char *what) {
    double v = check_finite(L, idx, op, what);
    if (fabs(v) > MAX_COORD)
        luaL_error(L, "plot %s: %s = %f is out of range (|value| <= %f)", op, what, v, MAX_COORD);
    return v;
}

static double check_range(lua_State *L, int idx, const char *op, const char *what, double lo,
                          double hi) {
    double v = check_finite(L, idx, op, what);
    if (v < lo || v > hi) luaL_error(L, "plot %s: %s must be in [%f, %f], got %f", op, what, lo, hi, v);
    return v;
}

static double opt_range(lua_State *L, int idx, const char *op, const char *what, double lo,
                        double hi, double def) {
    return lua_isnoneornil(L, idx) ? def : check_range(L, idx, op, what, lo, hi);
}

static bool opt_bool(lua_State *L, int idx, const char *op, const char *what, bool def) {
    if (lua_isnoneornil(L, idx)) return def;
    if (!lua_isboolean(L, idx))
        luaL_error(L, "plot %s: %s must be a boolean, got %s", op, what, luaL_typename(L, idx));
    return lua_toboolean(L, idx);
}

/* A cairo context in an error state ignores everything after; make it loud. */
static void check_cairo(lua_State *L, canvas *c, const char *op) {
    cairo_status_t st = cairo_status(c->cr);
    if (st != CAIRO_STATUS_SUCCESS)
        luaL_error(L, "plot %s: cairo: %s (the canvas cannot draw any more)", op,
                   cairo_status_to_string(st));
}

/* ---- canvas life ------------------------------------------------------------------- */

static void release(canvas *c) {
    if (c->cr) cairo_destroy(c->cr);
    if (c->surface) cairo_surface_destroy(c->surface);
    if (c->bytes) wh_memory_note_external(-(ptrdiff_t)c->bytes);
    c->cr = NULL, c->surface = NULL, c->bytes = 0;
}

static int l_canvas(lua_State *L) {
    lua_Integer w = luaL_checkinteger(L, 1), h = luaL_checkinteger(L, 2);
    if (w < 1 || w > MAX_SIDE) luaL_argerror(L, 1, lua_pushfstring(L, "width must be in 1..%d, got %I", MAX_SIDE, w));
    if (h < 1 || h > MAX_SIDE) luaL_argerror(L, 2, lua_pushfstring(L, "height must be in 1..%d, got %I", MAX_SIDE, h));
    canvas *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->surface = NULL, c->cr = NULL, c->width = (int)w, c->height = (int)h, c->bytes = 0;
    luaL_setmetatable(L, CANVAS_MT); /* from here __gc frees whatever was made */
    c->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)w, (int)h);
    if (cairo_surface_status(c->surface) != CAIRO_STATUS_SUCCESS) {
        cairo_status_t st = cairo_surface_status(c->surface);
        release(c);
        luaL_error(L, "plot.canvas(%I, %I): cairo: %s", w, h, cairo_status_to_string(st));
    }
    /* the surface is the canvas's memory: let the collector see it */
    c->bytes = (size_t)cairo_image_surface_get_stride(c->surface) * (size_t)h;
    wh_memory_note_external((ptrdiff_t)c->bytes);
    c->cr = cairo_create(c->surface);
    check_cairo(L, c, "canvas");
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_set_source_rgb(c->cr, 0, 0, 0);
    cairo_set_line_cap(c->cr, CAIRO_LINE_CAP_BUTT);
    cairo_set_line_join(c->cr, CAIRO_LINE_JOIN_ROUND);
    whl_gc_account(L);
    return 1;
}

static int l_close(lua_State *L) {
    canvas *c = luaL_checkudata(L, 1, CANVAS_MT);
    release(c);
    return 0;
}

static int l_size(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    lua_pushinteger(L, c->width);
    lua_pushinteger(L, c->height);
    return 2;
}

static int l_tostring(lua_State *L) {
    canvas *c = luaL_checkudata(L, 1, CANVAS_MT);
    if (!c->surface) lua_pushstring(L, "whorl.plot.Canvas (closed)");
    else lua_pushfstring(L, "whorl.plot.Canvas %dx%d", c->width, c->height);
    return 1;
}

/* ---- drawing ----------------------------------------------------------------------- */

static int l_color(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    double r = check_range(L, 2, "color", "r", 0, 1), g = check_range(L, 3, "color", "g", 0, 1);
    double b = check_range(L, 4, "color", "b", 0, 1), a = opt_range(L, 5, "color", "a", 0, 1, 1);
    cairo_set_source_rgba(c->cr, r, g, b, a);
    return 0;
}

static void set_width(lua_State *L, canvas *c, int idx, const char *op) {
    cairo_set_line_width(c->cr, opt_range(L, idx, op, "width", 1e-3, MAX_LINE_WIDTH, 1));
}

static int l_line(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    double x1 = check_coord(L, 2, "line", "x1"), y1 = check_coord(L, 3, "line", "y1");
    double x2 = check_coord(L, 4, "line", "x2"), y2 = check_coord(L, 5, "line", "y2");
    set_width(L, c, 6, "line");
    cairo_move_to(c->cr, x1, y1);
    cairo_line_to(c->cr, x2, y2);
    cairo_stroke(c->cr);
    check_cairo(L, c, "line");
    return 0;
}

/* points = {x1, y1, x2, y2, ...}: checked completely before the path starts. */
static int l_polyline(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    if (n < 4 || n % 2 != 0)
        luaL_error(L, "plot polyline: points must be {x1, y1, x2, y2, ...} with at least two "
                   "points, got %I numbers", n);
    set_width(L, c, 3, "polyline");
    char what[48];
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        snprintf(what, sizeof what, "points[%lld]", (long long)i);
        check_coord(L, -1, "polyline", what);
        lua_pop(L, 1);
    }
    for (lua_Integer i = 1; i <= n; i += 2) {
        lua_geti(L, 2, i);
        lua_geti(L, 2, i + 1);
        double x = lua_tonumber(L, -2), y = lua_tonumber(L, -1);
        lua_pop(L, 2);
        if (i == 1) cairo_move_to(c->cr, x, y);
        else cairo_line_to(c->cr, x, y);
    }
    cairo_stroke(c->cr);
    check_cairo(L, c, "polyline");
    return 0;
}

/* Fills the current path, or strokes it with the width at idx + 1. */
static void fill_or_stroke(lua_State *L, canvas *c, int idx, const char *op) {
    if (opt_bool(L, idx, op, "fill", true)) {
        cairo_fill(c->cr);
    } else {
        set_width(L, c, idx + 1, op);
        cairo_stroke(c->cr);
    }
    check_cairo(L, c, op);
}

static int l_rect(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    double x = check_coord(L, 2, "rect", "x"), y = check_coord(L, 3, "rect", "y");
    double w = check_range(L, 4, "rect", "w", 0, MAX_COORD);
    double h = check_range(L, 5, "rect", "h", 0, MAX_COORD);
    cairo_new_path(c->cr);
    cairo_rectangle(c->cr, x, y, w, h);
    fill_or_stroke(L, c, 6, "rect");
    return 0;
}

static int l_circle(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    double x = check_coord(L, 2, "circle", "x"), y = check_coord(L, 3, "circle", "y");
    double r = check_range(L, 4, "circle", "r", 0, MAX_COORD);
    cairo_new_path(c->cr);
    cairo_arc(c->cr, x, y, r, 0, 2 * M_PI);
    fill_or_stroke(L, c, 5, "circle");
    return 0;
}

static int l_clip(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    cairo_reset_clip(c->cr);
    if (lua_gettop(L) == 1) return 0;
    double x = check_coord(L, 2, "clip", "x"), y = check_coord(L, 3, "clip", "y");
    double w = check_range(L, 4, "clip", "w", 0, MAX_COORD);
    double h = check_range(L, 5, "clip", "h", 0, MAX_COORD);
    cairo_new_path(c->cr);
    cairo_rectangle(c->cr, x, y, w, h);
    cairo_clip(c->cr);
    return 0;
}

/* ---- text ---------------------------------------------------------------------------- */

/* cairo's toy text API puts the context in a permanent error state on a
 * string it does not accept, so strings are checked first with its rule:
 * well-formed UTF-8 (no overlong forms) of code points below U+110000 that
 * are neither surrogates nor noncharacters (U+FDD0..U+FDEF, U+xFFFE/xFFFF). */
static bool valid_code_point(uint32_t cp) {
    return cp < 0x110000 && (cp & 0xFFFFF800u) != 0xD800 && (cp < 0xFDD0 || cp > 0xFDEF) &&
           (cp & 0xFFFE) != 0xFFFE;
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3
                   : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || i + len > n || b == 0) return false;
        uint32_t cp = len == 1 ? b : b & (0x7Fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if (cp < min_for_len[len] || !valid_code_point(cp)) return false;
        i += len;
    }
    return true;
}

static const char *check_text(lua_State *L, int idx, const char *op) {
    size_t n;
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "plot %s: text must be a string, got %s", op, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &n);
    if (!valid_utf8((const unsigned char *)s, n))
        luaL_error(L, "plot %s: text is not valid UTF-8 (or holds a NUL byte or a noncharacter)", op);
    return s;
}

typedef struct {
    double size, rotate;
    bool bold;
    int align, valign; /* indices into the names below */
} text_opts;

static const char *const align_names[] = {"left", "center", "right", NULL};
static const char *const valign_names[] = {"baseline", "middle", "top", "bottom", NULL};

/* Option `name` of the table at idx as an index into names (0 when nil). */
static int opt_choice(lua_State *L, int idx, const char *op, const char *name,
                      const char *const *names) {
    int t = lua_getfield(L, idx, name), choice = 0;
    if (t != LUA_TNIL) {
        const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        for (choice = 0; s && names[choice] && strcmp(s, names[choice]) != 0; choice++) {}
        if (!s || !names[choice]) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; names[i]; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, names[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "plot %s: option '%s' must be one of %s, got %s", op, name,
                       lua_tostring(L, -1), s ? s : luaL_typename(L, -2));
        }
    }
    lua_pop(L, 1);
    return choice;
}

static void check_text_opts(lua_State *L, int idx, const char *op, text_opts *o) {
    static const char *const allowed[] = {"size", "align", "valign", "rotate", "bold", NULL};
    *o = (text_opts){12, 0, false, 0, 0};
    if (lua_isnoneornil(L, idx)) return;
    whl_check_options(L, idx, lua_pushfstring(L, "plot %s", op), allowed, false);
    lua_pop(L, 1); /* the name, kept on the stack while it was in use */
    o->size = whl_opt_field_number(L, idx, "size", 12);
    if (!(o->size > 0 && o->size <= MAX_FONT_SIZE))
        luaL_error(L, "plot %s: option 'size' must be in (0, %f], got %f", op, MAX_FONT_SIZE, o->size);
    o->rotate = whl_opt_field_number(L, idx, "rotate", 0);
    if (!isfinite(o->rotate)) luaL_error(L, "plot %s: option 'rotate' must be finite", op);
    o->bold = whl_opt_field_boolean(L, idx, "bold", false);
    o->align = opt_choice(L, idx, op, "align", align_names);
    o->valign = opt_choice(L, idx, op, "valign", valign_names);
}

static void select_font(canvas *c, const text_opts *o) {
    cairo_select_font_face(c->cr, FONT_FAMILY, CAIRO_FONT_SLANT_NORMAL,
                           o->bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(c->cr, o->size);
}

/* Offsets from the anchor to the baseline start.  Vertical placement uses the
 * font's ascent/descent, not the string's ink, so labels of one row line up. */
static void text_offset(canvas *c, const char *s, const text_opts *o, double *dx, double *dy,
                        double *advance) {
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(c->cr, s, &te);
    cairo_font_extents(c->cr, &fe);
    *advance = te.x_advance;
    *dx = o->align == 0 ? 0 : o->align == 1 ? -te.x_advance / 2 : -te.x_advance;
    *dy = o->valign == 0 ? 0 : o->valign == 1 ? (fe.ascent - fe.descent) / 2
        : o->valign == 2 ? fe.ascent : -fe.descent;
}

static int l_text(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    double x = check_coord(L, 2, "text", "x"), y = check_coord(L, 3, "text", "y");
    const char *s = check_text(L, 4, "text");
    text_opts o;
    check_text_opts(L, 5, "text", &o);
    select_font(c, &o);
    double dx, dy, advance;
    text_offset(c, s, &o, &dx, &dy, &advance);
    cairo_save(c->cr);
    cairo_translate(c->cr, x, y);
    cairo_rotate(c->cr, o.rotate);
    cairo_move_to(c->cr, dx, dy);
    cairo_show_text(c->cr, s);
    cairo_restore(c->cr);
    cairo_new_path(c->cr);
    check_cairo(L, c, "text");
    lua_pushnumber(L, advance);
    return 1;
}

static int l_measure(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    const char *s = check_text(L, 2, "measure");
    text_opts o;
    check_text_opts(L, 3, "measure", &o);
    select_font(c, &o);
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(c->cr, s, &te);
    cairo_font_extents(c->cr, &fe);
    check_cairo(L, c, "measure");
    lua_pushnumber(L, te.x_advance);
    lua_pushnumber(L, fe.ascent);
    lua_pushnumber(L, fe.descent);
    return 3;
}

/* ---- images ------------------------------------------------------------------------ */

/* Pushes t's size as "3x64x64" (for error messages) and returns it. */
static const char *push_shape(lua_State *L, const wh_tensor *t) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (t->ndim == 0) luaL_addstring(&b, "scalar");
    for (int d = 0; d < t->ndim; d++) {
        if (d) luaL_addchar(&b, 'x');
        lua_pushfstring(L, "%I", (lua_Integer)t->shape[d]);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* The tensor at idx as a host tensor with its channel count (1 or 3) and
 * H, W; errors name the accepted shapes. */
static wh_tensor *check_image(lua_State *L, int idx, const char *op, int *channels, int64_t *h,
                              int64_t *w) {
    wh_tensor *t = whl_check_tensor(L, idx);
    bool grey = t->ndim == 2, planes = t->ndim == 3 && (t->shape[0] == 1 || t->shape[0] == 3);
    if (!grey && !planes)
        luaL_error(L, "plot %s: the image must be (H,W), (1,H,W) or (3,H,W), got a tensor of "
                   "size %s", op, push_shape(L, t));
    *channels = grey ? 1 : (int)t->shape[0];
    *h = t->shape[t->ndim - 2], *w = t->shape[t->ndim - 1];
    if (*h < 1 || *w < 1 || *h > MAX_SIDE || *w > MAX_SIDE)
        luaL_error(L, "plot %s: the image is %Ix%I; sides must be in 1..%d", op,
                   (lua_Integer)*h, (lua_Integer)*w, MAX_SIDE);
    return whl_to_host(L, t);
}

/* Element (ch, y, x) of an (H,W) or (C,H,W) host tensor. */
static double pixel(const wh_tensor *t, int ch, int64_t y, int64_t x) {
    int d = t->ndim - 2;
    int64_t off = t->offset + y * t->stride[d] + x * t->stride[d + 1];
    if (t->ndim == 3) off += ch * t->stride[0];
    return whl_load(t, off);
}

static uint32_t to_byte(double v, double scale) {
    v *= scale;
    return v <= 0 ? 0 : v >= 1 ? 255 : (uint32_t)lround(v * 255.0);
}

/* An RGB24 surface with t's pixels, or NULL (nothing allocated) when t holds
 * a non-finite value, reported through bad_y/bad_x. */
static cairo_surface_t *image_surface(const wh_tensor *t, int channels, int64_t h, int64_t w,
                                      int64_t *bad_y, int64_t *bad_x) {
    double scale = t->dtype == WH_UINT8 ? 1.0 / 255.0 : 1.0;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)w, (int)h);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return s;
    unsigned char *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int64_t y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(void *)(data + y * stride);
        for (int64_t x = 0; x < w; x++) {
            double v[3];
            for (int ch = 0; ch < 3; ch++) v[ch] = pixel(t, channels == 3 ? ch : 0, y, x);
            if (!isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2])) {
                *bad_y = y, *bad_x = x;
                cairo_surface_destroy(s);
                return NULL;
            }
            row[x] = to_byte(v[0], scale) << 16 | to_byte(v[1], scale) << 8 | to_byte(v[2], scale);
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

typedef struct {
    cairo_filter_t filter;
    double alpha;
} image_opts;

/* {filter = "auto"|"nearest"|"bilinear", alpha = 1} at idx; "auto" is
 * nearest when enlarging, so each source pixel stays a sharp block. */
static void check_image_opts(lua_State *L, int idx, bool enlarging, image_opts *o) {
    static const char *const names[] = {"auto", "nearest", "bilinear", NULL};
    static const char *const allowed[] = {"filter", "alpha", NULL};
    int choice = 0;
    o->alpha = 1;
    if (!lua_isnoneornil(L, idx)) {
        whl_check_options(L, idx, "plot image", allowed, false);
        choice = opt_choice(L, idx, "image", "filter", names);
        o->alpha = whl_opt_field_number(L, idx, "alpha", 1);
        if (!(o->alpha >= 0 && o->alpha <= 1))
            luaL_error(L, "plot image: option 'alpha' must be in [0, 1], got %f", o->alpha);
    }
    if (choice == 0) choice = enlarging ? 1 : 2;
    o->filter = choice == 1 ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD;
}

static int l_image(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    lua_settop(L, 7); /* whl_to_host may push a copy above the arguments */
    int channels;
    int64_t h, w;
    wh_tensor *t = check_image(L, 2, "image", &channels, &h, &w);
    double x = check_coord(L, 3, "image", "x"), y = check_coord(L, 4, "image", "y");
    double dw = lua_isnil(L, 5) ? (double)w : check_range(L, 5, "image", "w", 1e-3, MAX_COORD);
    double dh = lua_isnil(L, 6) ? (double)h : check_range(L, 6, "image", "h", 1e-3, MAX_COORD);
    image_opts o;
    check_image_opts(L, 7, dw >= (double)w && dh >= (double)h, &o);
    int64_t bad_y = 0, bad_x = 0;
    cairo_surface_t *s = image_surface(t, channels, h, w, &bad_y, &bad_x);
    if (!s)
        luaL_error(L, "plot image: the image has a non-finite value at row %I, column %I",
                   (lua_Integer)bad_y + 1, (lua_Integer)bad_x + 1);
    cairo_save(c->cr);
    cairo_translate(c->cr, x, y);
    cairo_scale(c->cr, dw / (double)w, dh / (double)h);
    cairo_set_source_surface(c->cr, s, 0, 0);
    /* PAD: bilinear samples at the border repeat the edge instead of fading to black */
    cairo_pattern_set_extend(cairo_get_source(c->cr), CAIRO_EXTEND_PAD);
    cairo_pattern_set_filter(cairo_get_source(c->cr), o.filter);
    cairo_rectangle(c->cr, 0, 0, (double)w, (double)h);
    cairo_clip(c->cr);
    cairo_paint_with_alpha(c->cr, o.alpha);
    cairo_restore(c->cr);
    cairo_surface_destroy(s);
    check_cairo(L, c, "image");
    return 0;
}

/* ---- saving -------------------------------------------------------------------------- */

static cairo_status_t write_fd(void *closure, const unsigned char *data, unsigned int n) {
    int fd = *(int *)closure;
    while (n > 0) {
        ssize_t k = write(fd, data, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return CAIRO_STATUS_WRITE_ERROR;
        data += k, n -= (unsigned int)k;
    }
    return CAIRO_STATUS_SUCCESS;
}

/* Writes the PNG to a unique temporary file beside path, then renames it over
 * path, so readers never see a half-written file.  Returns NULL or the error. */
static const char *save_png(canvas *c, const char *path, char *tmp, size_t tmp_size, char *err,
                            size_t err_size) {
    snprintf(tmp, tmp_size, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return snprintf(err, err_size, "%s", strerror(errno)), err;
    cairo_surface_flush(c->surface);
    cairo_status_t st = cairo_surface_write_to_png_stream(c->surface, write_fd, &fd);
    int saved_errno = errno;
    /* mkstemp makes the file 0600; a figure is meant to be read by others */
    bool ok = st == CAIRO_STATUS_SUCCESS && fchmod(fd, 0644) == 0;
    if (close(fd) != 0) ok = false;
    if (ok && rename(tmp, path) == 0) return NULL;
    if (st != CAIRO_STATUS_SUCCESS)
        snprintf(err, err_size, "%s (%s)", cairo_status_to_string(st), strerror(saved_errno));
    else snprintf(err, err_size, "%s", strerror(errno));
    unlink(tmp);
    return err;
}

static int l_save(lua_State *L) {
    canvas *c = check_canvas(L, 1);
    size_t n;
    const char *path = luaL_checklstring(L, 2, &n);
    if (n == 0 || strlen(path) != n) luaL_argerror(L, 2, "path must be a non-empty string without NUL");
    char *tmp = lua_newuserdatauv(L, n + 16, 0), err[256];
    const char *e = save_png(c, path, tmp, n + 16, err, sizeof err);
    if (e) luaL_error(L, "plot save: cannot write '%s': %s", path, e);
    return 0;
}

/* ---- colour maps ------------------------------------------------------------------- */

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* MATLAB's jet: piecewise linear, dark blue (0,0,0.5) -> blue -> cyan ->
 * yellow -> red -> dark red (0.5,0,0). */
static void jet(double v, double rgb[3]) {
    rgb[0] = clamp01(1.5 - fabs(4 * v - 3));
    rgb[1] = clamp01(1.5 - fabs(4 * v - 2));
    rgb[2] = clamp01(1.5 - fabs(4 * v - 1));
}

/* matplotlib's viridis sampled at 0, 1/8, ..., 1 (from its published 256-entry
 * table), linearly interpolated: within 0.01 of the full table. */
static void viridis(double v, double rgb[3]) {
    static const double k[9][3] = {
        {0.267004, 0.004874, 0.329415}, {0.282623, 0.140926, 0.457517},
        {0.229739, 0.322361, 0.545706}, {0.163625, 0.471133, 0.558148},
        {0.127568, 0.566949, 0.550556}, {0.134692, 0.658636, 0.517649},
        {0.369214, 0.788888, 0.382914}, {0.678489, 0.863742, 0.189503},
        {0.993248, 0.906157, 0.143936}};
    double p = v * 8;
    int i = p >= 8 ? 7 : (int)p;
    double f = p - i;
    for (int ch = 0; ch < 3; ch++) rgb[ch] = k[i][ch] + f * (k[i + 1][ch] - k[i][ch]);
}

static void gray(double v, double rgb[3]) { rgb[0] = rgb[1] = rgb[2] = v; }

static int l_colormap(lua_State *L) {
    static const char *const names[] = {"jet", "gray", "viridis", NULL};
    static void (*const maps[])(double, double[3]) = {jet, gray, viridis};
    lua_settop(L, 2);
    wh_tensor *t = whl_check_tensor(L, 1);
    int which = luaL_checkoption(L, 2, "jet", names);
    if (!(t->ndim == 2 || (t->ndim == 3 && t->shape[0] == 1)))
        luaL_error(L, "plot.colormap: expected an (H,W) or (1,H,W) tensor, got size %s",
                   push_shape(L, t));
    int64_t h = t->shape[t->ndim - 2], w = t->shape[t->ndim - 1];
    wh_tensor *src = whl_to_host(L, t), *out = NULL;
    whl_check(L, wh_tensor_empty(WH_FLOAT32, 3, (int64_t[]){3, h, w}, NULL, &out));
    whl_push_tensor(L, out);
    float *o = wh_tensor_data(out);
    double scale = t->dtype == WH_UINT8 ? 1.0 / 255.0 : 1.0;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double v = pixel(src, 0, y, x) * scale, rgb[3];
            if (!isfinite(v))
                luaL_error(L, "plot.colormap: non-finite value at row %I, column %I",
                           (lua_Integer)y + 1, (lua_Integer)x + 1);
            maps[which](clamp01(v), rgb);
            for (int ch = 0; ch < 3; ch++) o[(ch * h + y) * w + x] = (float)rgb[ch];
        }
    return 1;
}

/* ---- registration ---------------------------------------------------------------------- */

static const luaL_Reg canvas_methods[] = {
    {"color", l_color},     {"line", l_line},   {"polyline", l_polyline}, {"rect", l_rect},
    {"circle", l_circle},   {"text", l_text},   {"measure", l_measure},   {"image", l_image},
    {"clip", l_clip},       {"size", l_size},   {"save", l_save},         {"close", l_close},
    {NULL, NULL},
};

static const luaL_Reg plot_fns[] = {
    {"canvas", l_canvas},
    {"colormap", l_colormap},
    {NULL, NULL},
};

void whl_open_plot(lua_State *L, int module, int methods) {
    (void)methods;
    luaL_newmetatable(L, CANVAS_MT);
    lua_newtable(L);
    luaL_setfuncs(L, canvas_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, plot_fns, 0);
    lua_setfield(L, module, "plot");
}
