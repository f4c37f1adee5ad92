/* What a loaded tokenizer promises, whatever file it came from (fuzz_tok_bin.c,
 * fuzz_spm_model.c): accessors stay inside the vocabulary, and it encodes and decodes. */
#ifndef FABLE_FUZZ_TOK_CHECK_H
#define FABLE_FUZZ_TOK_CHECK_H

#include <string.h>

#include "fable/tokenizer.h"
#include "fuzz.h"

static inline void tok_check(tokenizer *t, const uint8_t *d, size_t n) {
    const int V = tok_vocab_size(t);
    FUZZ_CHECK(V >= 1);
    FUZZ_CHECK(tok_unk_id(t) >= 0 && tok_unk_id(t) < V);
    FUZZ_CHECK(tok_bos_id(t) >= -1 && tok_bos_id(t) < V && tok_eos_id(t) >= -1 && tok_eos_id(t) < V);
    for (int id = 0; id < V; id++) {
        FUZZ_CHECK(tok_piece(t, id) && tok_sp_piece(t, id));
        int ty = tok_piece_type(t, id);
        FUZZ_CHECK(ty >= TOK_NORMAL && ty <= TOK_BYTE);
        /* lookup by text stays in the vocabulary (-1: absent, e.g. a piece holding a NUL) */
        int back = tok_piece_id(t, tok_sp_piece(t, id));
        FUZZ_CHECK(back >= -1 && back < V);
    }
    /* encode a fixed sentence and the first bytes of the file itself, decode them back */
    const char *texts[2] = {"Once upon a time, \xC3\xA9 \xF0\x9F\x98\x80 99 \xFF.", (const char *)d};
    size_t lens[2] = {strlen(texts[0]), n < 64 ? n : 64};
    for (int k = 0; k < 2; k++) {
        int32_t ids[1024];
        long m = tok_encode(t, texts[k], lens[k], 1, 1, ids, 1024);
        FUZZ_CHECK(m >= 0 && m <= 1024);
        for (long i = 0; i < m; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < V);
        char out[4096];
        long dn = tok_decode(t, ids, (size_t)m, out, sizeof out);
        FUZZ_CHECK(dn >= 0);
        size_t plen;
        for (long i = 0; i < m; i++) tok_decode_piece(t, i ? ids[i - 1] : -1, ids[i], &plen);
    }
}

/* Load a tokenizer from the input's bytes (either format, detected by content): a refusal
 * must leave a message; an accepted one must pass tok_check. */
static inline void tok_check_bytes(const uint8_t *d, size_t n, const char *name) {
    tokenizer *t = tok_load_mem(d, n, name);
    if (!t) {
        fuzz_check_error();
        return;
    }
    tok_check(t, d, n);
    tok_free(t);
}

#endif
