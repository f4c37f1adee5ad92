/* fable — the tokenizer's private parts, shared by its two files:
 *   tokenizer.c     encoding (normalization, BPE, the word cache) and decoding; the accessors
 *   tokenizer_io.c  loading (SentencePiece ModelProto, llama2.c tokenizer.bin) and saving
 * The algorithm and sentencepiece's rules are described at the top of tokenizer.c. */
#ifndef FABLE_TOKENIZER_INTERNAL_H
#define FABLE_TOKENIZER_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "fable/tokenizer.h"

#define WS "\xE2\x96\x81" /* '▁' U+2581, sentencepiece's escaped space */

/* ---- piece hash table -------------------------------------------------------------- */

/* Open addressing over piece ids, keyed by the SentencePiece text. */
typedef struct {
    uint32_t *hash;   /* per slot: low 32 bits of the key hash */
    int32_t *id;      /* per slot: piece id, -1 = empty */
    uint32_t mask;
} piece_table;

static inline uint64_t tok_hash(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t x = 0;
    if (n) memcpy(&x, s, n);
    h = (h ^ x) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

struct tokenizer {
    int n;                 /* vocabulary size */
    char **sp;             /* SentencePiece form, NUL-terminated ('▁', "<s>") */
    uint32_t *sp_len;
    char **bin;            /* tokenizer.bin form (' ', "\n<s>\n") */
    uint32_t *bin_len;
    float *score;
    uint8_t *type;         /* TOK_* */
    int16_t *byte_val;     /* per id: the byte of a BYTE piece, else -1 */
    int byte_id[256];      /* id of <0xNN>, -1 if absent */
    char byte_str[256][2]; /* NUL-terminated one-byte strings for tok_decode_piece */
    int unk_id, bos_id, eos_id;
    char *unk_surface;
    int from_model;

    /* normalizer / model settings */
    int add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix, byte_fallback;
    uint32_t *trie;        /* precompiled charsmap: double-array units (NULL = identity) */
    size_t trie_units;
    const char *norm_strs; /* NUL-separated normalized strings (points into charsmap) */
    size_t norm_strs_len;
    uint8_t *charsmap;

    piece_table normal;    /* NORMAL, USER_DEFINED, UNUSED: the pieces merges may form */
    piece_table reserved;  /* CONTROL, UNKNOWN, BYTE */
    int n_user, max_user_len;
    int has_unused;
    uint32_t max_len;      /* longest piece in bytes (merge candidates longer are skipped) */
    int word_split;        /* see the header comment: words may be encoded independently */
    uint64_t serial;       /* unique per load: keys the per-thread caches */
};

static inline int table_find(const tokenizer *t, const piece_table *tb, const char *s, size_t n) {
    uint64_t h = tok_hash(s, n);
    uint32_t h32 = (uint32_t)h, i = (uint32_t)(h >> 32) & tb->mask;
    for (;;) {
        int id = tb->id[i];
        if (id < 0) return -1;
        if (tb->hash[i] == h32 && t->sp_len[id] == n && memcmp(t->sp[id], s, n) == 0) return id;
        i = (i + 1) & tb->mask;
    }
}


/* Length of the UTF-8 character starting with byte c, from its lead byte alone
 * (sentencepiece's OneCharLen; used on already-normalized, valid text). */
static inline int one_char_len(unsigned char c) {
    static const int8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

/* tokenizer_io.c: frees what loading built (not the per-thread caches: tok_free does that) */
void tok_free_partial(tokenizer *t);

#endif
