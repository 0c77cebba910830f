/* libFuzzer target over the image decoders (core/image_*.c): every input
 * must decode or fail with a status, never crash, leak, hang or read out of
 * bounds.  Built and run by `make fuzz` (see fuzz/README.md). */
#include <stdint.h>
#include <stdlib.h>

#include "image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        /* 1 Mpixel: real fingerprints fit (FVC2004 is 640x480), and a bogus huge header cannot
         * make one input take seconds or exceed libFuzzer's memory limit. */
        wh_image_set_max_pixels(1 << 20);
        ready = 1;
    }
    wh_image_info info;
    wh_status st = wh_image_info_memory(data, size, "fuzz-input", &info);
    /* The low bit of the size picks grey float32 or colour uint8 output, so
     * both conversions run without doubling the work per input. */
    wh_tensor *t = NULL;
    wh_status dec = wh_image_decode(data, size, "fuzz-input", size & 1, size & 1 ? WH_FLOAT32 : WH_UINT8, &t);
    if (dec == WH_OK) {
        /* A file that decodes must have had a valid header. */
        if (st != WH_OK) abort();
        wh_tensor_release(t);
    }
    return 0;
}
