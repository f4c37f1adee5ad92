/* fable — shared helpers of the libFuzzer harnesses (fuzz/fuzz_*.c).
 *
 * Each harness feeds arbitrary bytes to one parser of outside data through its in-memory
 * entry point (no temp files) and checks what the parser promises on success. A parser
 * that returns an error is fine; a crash, a sanitizer report, a leak, a timeout or an
 * allocation the input cannot justify is a bug. FUZZ_CHECK turns a broken promise into
 * a crash that libFuzzer records.
 */
#ifndef FABLE_FUZZ_H
#define FABLE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fable/util.h"

#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An error message is always set and printable (a parser that fails must say why). */
static inline void fuzz_check_error(void) {
    const char *m = fb_errmsg();
    FUZZ_CHECK(m && m[0]);
}

#endif
