/* What every corpus reader promises about the stories it returns (fuzz_corpus_*.c). */
#ifndef FABLE_FUZZ_CORPUS_CHECK_H
#define FABLE_FUZZ_CORPUS_CHECK_H

#include "fable/data.h"
#include "fuzz.h"

/* Stories are non-empty, already stripped (corpus_strip changes nothing), no longer than
 * the input, and their lengths add up to c->bytes. */
static inline void corpus_check(const corpus *c, size_t n) {
    uint64_t total = 0;
    for (size_t i = 0; i < c->n; i++) {
        size_t len = c->len[i];
        FUZZ_CHECK(len > 0);
        const char *s = corpus_strip(c->text[i], &len);
        FUZZ_CHECK(s == c->text[i] && len == c->len[i]);
        FUZZ_CHECK(len <= n);
        total += len;
    }
    FUZZ_CHECK(total == c->bytes);
}

static inline void corpus_run(const uint8_t *d, size_t n, corpus_format fmt) {
    corpus c = {0};
    if (corpus_add_text(&c, (const char *)d, n, fmt, "fuzz.txt") != 0) fuzz_check_error();
    else corpus_check(&c, n);
    corpus_free(&c);
}

#endif
