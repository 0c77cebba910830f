/* Included right before an stb header that a .c file compiles as its own
 * private static copy (image_stb.c, image_stb_write.c): silences what stb
 * raises under -Wall -Wextra.  The including file pops the diagnostic state
 * after the stb header.  No include guard: each inclusion opens a region. */
/* stb declares static prototypes of the parts compiled out: reported at the
 * end of the file, so this one stays on after the pop. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
