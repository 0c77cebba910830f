#include "status.h"

#include <stdio.h>

static _Thread_local char error_message[1024];

wh_status wh_vfail(wh_status code, const char *fmt, va_list ap) {
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    return code;
}

wh_status wh_fail(wh_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wh_vfail(code, fmt, ap);
    va_end(ap);
    return code;
}

const char *wh_error_message(void) { return error_message; }

const char *wh_status_name(wh_status code) {
    switch (code) {
    case WH_OK: return "ok";
    case WH_ERR_ARG: return "bad argument";
    case WH_ERR_SHAPE: return "shape error";
    case WH_ERR_DTYPE: return "dtype error";
    case WH_ERR_INDEX: return "index error";
    case WH_ERR_MEMORY: return "out of memory";
    case WH_ERR_IO: return "I/O error";
    case WH_ERR_FORMAT: return "format error";
    case WH_ERR_DEVICE: return "device error";
    case WH_ERR_STATE: return "state error";
    }
    return "unknown error";
}
