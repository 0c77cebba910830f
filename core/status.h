/* Status codes and the error message that goes with them.
 *
 * Every fallible core function returns a wh_status.  On failure it has also
 * written a human-readable message (naming the op, the shapes and the
 * argument) into a thread-local buffer that wh_error_message() returns; the
 * Lua binding turns that message into a Lua error. */
#ifndef WHORL_STATUS_H
#define WHORL_STATUS_H

#include <stdarg.h>

typedef enum {
    WH_OK = 0,
    WH_ERR_ARG,     /* a bad argument value (negative size, unknown mode...) */
    WH_ERR_SHAPE,   /* shapes that do not fit together */
    WH_ERR_DTYPE,   /* an op that does not support the tensor's dtype */
    WH_ERR_INDEX,   /* an index out of range */
    WH_ERR_MEMORY,  /* an allocation failed */
    WH_ERR_IO,      /* a file could not be read or written */
    WH_ERR_FORMAT,  /* a file was read but its content is corrupt or unsupported */
    WH_ERR_DEVICE,  /* a device error, or tensors on different devices */
    WH_ERR_STATE    /* an op used in the wrong state (graph already freed...) */
} wh_status;

/* Records a formatted message for the current thread and returns `code`,
 * so a failing path reads `return wh_fail(WH_ERR_SHAPE, "...", ...);`. */
wh_status wh_fail(wh_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
wh_status wh_vfail(wh_status code, const char *fmt, va_list ap);

/* The message of the last failure on this thread ("" if none). */
const char *wh_error_message(void);
/* A short name for a status code ("shape error", ...). */
const char *wh_status_name(wh_status code);

/* Propagate a failure: evaluate `expr`, return its status if it failed. */
#define WH_TRY(expr)                                                           \
    do {                                                                       \
        wh_status wh_try_status_ = (expr);                                     \
        if (wh_try_status_ != WH_OK) return wh_try_status_;                    \
    } while (0)

#endif
