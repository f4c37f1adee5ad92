/* Fuzz target: token shards (shard_open_mem: the FBLTOKS1 header, raw uint16 files), and
 * the data loader over whatever opens, since it indexes windows by the parsed size. */
#include <string.h>

#include "fable/data.h"
#include "fuzz.h"

static void check_open(const uint8_t *buf, size_t n, int vocab) {
    shard s;
    if (shard_open_mem(&s, buf, n, vocab, "fuzz.tok") != 0) {
        fuzz_check_error();
        FUZZ_CHECK(s.tokens == NULL && s.n == 0);
        return;
    }
    FUZZ_CHECK(s.vocab_size >= 1 && s.vocab_size <= 65536);
    FUZZ_CHECK(s.n * 2 + (s.has_header ? SHARD_HEADER_BYTES : 0) == n);
    for (size_t i = 0; i < s.n; i++) FUZZ_CHECK((int)s.tokens[i] < s.vocab_size);
    /* windows of T+1 tokens, every sampler, a few batches */
    for (int kind = 0; kind < 3; kind++) {
        loader L;
        const int T = 3, B = 2;
        if (loader_init(&L, &s, (loader_kind)kind, T, 7) != 0) {
            FUZZ_CHECK(s.n < (size_t)T + 1);
            continue;
        }
        int32_t in[B * T], tg[B * T];
        for (int k = 0; k < 3; k++) {
            FUZZ_CHECK(loader_next(&L, B, in, tg) == 0);
            for (int i = 0; i < B * T; i++) FUZZ_CHECK(in[i] >= 0 && in[i] < s.vocab_size && tg[i] >= 0 && tg[i] < s.vocab_size);
        }
        loader_state st = L.st;
        FUZZ_CHECK(loader_restore(&L, &st) == 0);
        loader_free(&L);
    }
    shard_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    /* an aligned copy: the ids are read in place as uint16 */
    uint8_t *buf = malloc(n ? n : 1);
    memcpy(buf, d, n);
    check_open(buf, n, 0);    /* a header is required */
    check_open(buf, n, 512);  /* raw ids accepted, a header must agree */
    free(buf);
    return 0;
}
