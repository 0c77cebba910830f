#include "scratch.h"

#include <stdlib.h>

static _Thread_local struct {
    void *ptr;
    size_t bytes;
} slots[WH_SCRATCH_SLOTS];

void *wh_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= WH_SCRATCH_SLOTS) return NULL;
    if (bytes == 0) bytes = 64;
    if (slots[slot].bytes >= bytes) return slots[slot].ptr;
    free(slots[slot].ptr);
    /* Grow by 1.5x at least so slowly rising sizes do not reallocate each call. */
    size_t want = bytes + bytes / 2;
    want = (want + 63) & ~(size_t)63;
    slots[slot].ptr = aligned_alloc(64, want);
    slots[slot].bytes = slots[slot].ptr ? want : 0;
    return slots[slot].ptr;
}

void wh_scratch_release(void) {
    for (int i = 0; i < WH_SCRATCH_SLOTS; i++) {
        free(slots[i].ptr);
        slots[i].ptr = NULL;
        slots[i].bytes = 0;
    }
}

size_t wh_scratch_bytes(void) {
    size_t total = 0;
    for (int i = 0; i < WH_SCRATCH_SLOTS; i++) total += slots[i].bytes;
    return total;
}
