/* Grow-only scratch buffers reused across calls, so hot loops (im2col
 * columns, per-thread partial sums) never allocate once warmed up.
 *
 * Each slot is one buffer; a kernel that needs two buffers at once uses two
 * slots.  Buffers are owned by the calling thread (thread-local), so the
 * data-loading thread and the training thread never share one.  The pointer
 * stays valid until the next wh_scratch call on the same slot and thread. */
#ifndef WHORL_SCRATCH_H
#define WHORL_SCRATCH_H

#include <stddef.h>

enum { WH_SCRATCH_SLOTS = 8 };

/* A buffer of at least `bytes` bytes, 64-byte aligned; NULL if out of memory. */
void *wh_scratch(int slot, size_t bytes);
/* Returns every scratch buffer of this thread to the system. */
void wh_scratch_release(void);
/* Bytes currently held by this thread's scratch buffers. */
size_t wh_scratch_bytes(void);

#endif
