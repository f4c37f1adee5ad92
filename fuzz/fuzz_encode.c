/* Fuzz target: tok_encode / tok_decode / tok_decode_piece on arbitrary bytes.
 *
 * The tokenizers are made at start-up, with no file: a BPE model trained in memory by
 * bpe_train_texts (byte fallback on) under three normalizer settings, and, when the
 * harness runs from the repository root, the sentencepiece-made fixture models of
 * tests/fixtures/tok (one without byte fallback, one with a custom normalizer, one with
 * whitespace as suffix, one with unused pieces). The first input byte picks one.
 * Checked: every id is in the vocabulary, the count is the same with a short buffer,
 * decode(encode(x)) == x for valid UTF-8 x with the trained model (identity normalizer,
 * dummy prefix, no whitespace folding) unless x holds U+2581 itself (sentencepiece's space
 * symbol: a literal one decodes as a space, in sentencepiece too), and decoding arbitrary ids rejects exactly the
 * ids outside the vocabulary. */
#include <string.h>

#include "fable/tokenizer.h"
#include "fuzz.h"

#define MAX_TOK 8
static tokenizer *toks[MAX_TOK];
static int n_toks, n_roundtrip; /* toks[0 .. n_roundtrip) must round-trip valid UTF-8 */

static const char *const train_texts[] = {
    "Once upon a time, there was a little girl named Lily. She liked to play outside.",
    "One day, a big dog came to the park. The dog was happy and wagged its tail.",
    "Tom and Sue went to the shop to buy 12 red apples and 3 green pears.",
    "\"Can I help you?\" asked the kind old man. \xC3\xA9t\xC3\xA9 caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x98\x80",
    "  spaces   and\ttabs\nand new lines\n\n<|endoftext|> the end.",
};

static void add(tokenizer *t) {
    if (t && n_toks < MAX_TOK) toks[n_toks++] = t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bpe_train_opts o;
    bpe_train_opts_default(&o);
    o.vocab_size = 320;
    o.verbose = 0;
    size_t n = sizeof train_texts / sizeof train_texts[0], lens[8];
    for (size_t i = 0; i < n; i++) lens[i] = strlen(train_texts[i]);
    uint8_t *model = NULL;
    size_t model_len = 0;
    if (bpe_train_texts(train_texts, lens, n, &o, &model, &model_len) != 0) {
        fprintf(stderr, "fuzz_encode: training the tokenizer failed: %s\n", fb_errmsg());
        abort();
    }
    const int norm[3][2] = {{1, 0}, {0, 0}, {1, 1}};
    for (int k = 0; k < 3; k++) {
        tokenizer *t = tok_load_mem(model, model_len, "trained.model");
        FUZZ_CHECK(t);
        tok_set_normalizer(t, norm[k][0], norm[k][1]);
        add(t);
        if (k == 1) n_roundtrip = n_toks;
    }
    free(model);
    const char *fixtures[] = {"extra_nofallback", "extra_norm", "extra_suffix", "extra_unused"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/tok/%s.model", fixtures[i]);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        add(tok_load(path));
    }
    return 0;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 1 || n_toks == 0) return 0;
    const int which = d[0] % n_toks;
    const tokenizer *t = toks[which];
    const char *text = (const char *)d + 1;
    const size_t len = n - 1;
    const int V = tok_vocab_size(t);
    const int bos = (d[0] >> 4) & 1, eos = (d[0] >> 5) & 1;

    /* encode: the count first (a buffer of 1), then the ids */
    int32_t one[1];
    long need = tok_encode(t, text, len, bos, eos, one, 1);
    FUZZ_CHECK(need >= 0);
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    FUZZ_CHECK(tok_encode(t, text, len, bos, eos, ids, (size_t)need) == need);
    for (long i = 0; i < need; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < V);
    if (bos && tok_bos_id(t) >= 0) FUZZ_CHECK(need >= 1 && ids[0] == tok_bos_id(t));

    /* decode: the size first, then the text; the round trip where it is promised */
    long dn = tok_decode(t, ids, (size_t)need, NULL, 0);
    FUZZ_CHECK(dn >= 0);
    char *out = malloc((size_t)dn + 1);
    FUZZ_CHECK(tok_decode(t, ids, (size_t)need, out, (size_t)dn) == dn);
    if (which < n_roundtrip && valid_utf8((const uint8_t *)text, len) && !memmem(text, len, "\xE2\x96\x81", 3)) {
        if (dn != (long)len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "round trip: %zu bytes in, %ld bytes out\n", len, dn);
            FUZZ_CHECK(!"decode(encode(x)) == x");
        }
    }
    size_t plen;
    for (long i = 0; i < need; i++) {
        const char *p = tok_decode_piece(t, i ? ids[i - 1] : tok_bos_id(t), ids[i], &plen);
        FUZZ_CHECK(p && (plen == 0 || p[0] || plen == 1));
    }
    free(out);
    free(ids);

    /* the input read as ids: those outside [0, V) are an error, the rest decode */
    size_t k = len / 4;
    if (k) {
        int32_t *raw = malloc(k * sizeof *raw);
        memcpy(raw, text, k * sizeof *raw);
        int bad = 0;
        for (size_t i = 0; i < k; i++) {
            raw[i] = (int32_t)((uint32_t)raw[i] % (uint32_t)(V + 2)) - 1; /* -1 .. V */
            bad |= raw[i] < 0 || raw[i] >= V;
        }
        char buf[64];
        long r = tok_decode(t, raw, k, buf, sizeof buf);
        FUZZ_CHECK(bad ? r == -1 : r >= 0);
        for (size_t i = 0; i < k; i++) tok_decode_piece(t, i ? raw[i - 1] : -1, raw[i], &plen);
        free(raw);
    }
    return 0;
}
