/* The C tests' shared checking: count passed and failed checks, print each
 * failure with its message, and end with the line "N passed, N failed"
 * that tools/run_tests.sh sums (check_summary() returns the exit status). */
#ifndef WHORL_TEST_CHECK_H
#define WHORL_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (cond) {                                                                              \
            passed++;                                                                            \
        } else {                                                                                 \
            failed++;                                                                            \
            printf("FAIL: " __VA_ARGS__);                                                        \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

/* malloc for test buffers: a test cannot go on without its memory. */
static inline float *alloc_floats(size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        printf("out of memory\n");
        exit(1);
    }
    return p;
}

#endif
