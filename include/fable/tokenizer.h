/* fable — tokenizer: SentencePiece-compatible BPE (encode/decode) over a vocabulary
 * loaded from a SentencePiece .model (protobuf ModelProto) or llama2.c's tokenizer.bin.
 *
 * Encoding gives exactly the ids sentencepiece gives for the same BPE model and text
 * (dummy prefix, '▁' for spaces, byte fallback). Decoding follows llama2.c/run.c:
 * tok_decode_piece(prev, id) strips the leading space after BOS and maps byte pieces
 * <0xNN> to the byte. docs/tokenizer.md describes the algorithm and every edge case.
 */
#ifndef FABLE_TOKENIZER_H
#define FABLE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* Load by content: a SentencePiece ModelProto or a llama2.c tokenizer.bin.
 * Returns NULL + fb_err (naming the file and the problem) on failure. */
tokenizer *tok_load(const char *path);
void tok_free(tokenizer *t);

int tok_vocab_size(const tokenizer *t);
int tok_bos_id(const tokenizer *t);   /* 1 for the Llama-2 and tok512 vocabularies */
int tok_eos_id(const tokenizer *t);   /* 2 */
/* The raw piece text of id as stored in tokenizer.bin form ('▁' shown as ' '); NUL-terminated. */
const char *tok_piece(const tokenizer *t, int id);
float tok_score(const tokenizer *t, int id);

/* Encode len bytes of text. Writes at most max ids to out and returns the number of ids
 * the text needs (call again with a bigger buffer if it exceeds max), or -1 + fb_err.
 * bos/eos: prepend BOS / append EOS. Thread-safe (t is read-only). */
long tok_encode(const tokenizer *t, const char *text, size_t len, int bos, int eos,
                int32_t *out, size_t max);

/* Bytes of token id when it follows token prev (run.c semantics): leading space removed
 * after BOS, <0xNN> → that byte. *len receives the length (may contain NUL for <0x00>). */
const char *tok_decode_piece(const tokenizer *t, int prev, int id, size_t *len);

/* ---- additions ------------------------------------------------------------------ */

/* SentencePiece piece types (ModelProto.SentencePiece.Type). */
enum {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER_DEFINED = 4,
    TOK_UNUSED = 5,
    TOK_BYTE = 6,
};

/* Load from memory; name is used in error messages. */
tokenizer *tok_load_mem(const void *data, size_t len, const char *name);

int tok_unk_id(const tokenizer *t);
int tok_piece_type(const tokenizer *t, int id);      /* TOK_*, 0 for an invalid id */
/* SentencePiece form of the piece ('▁' for a space, "<s>" for BOS); NUL-terminated. */
const char *tok_sp_piece(const tokenizer *t, int id);
/* Id of a piece given in SentencePiece form, -1 when absent. */
int tok_piece_id(const tokenizer *t, const char *sp_piece);
/* 1 when loaded from a .model, 0 from a tokenizer.bin. */
int tok_is_spm_model(const tokenizer *t);

/* Normalizer settings (from the .model's NormalizerSpec; a tokenizer.bin stores none and
 * gets Llama-2's: add_dummy_prefix 1, remove_extra_whitespaces 0). tok_set_normalizer
 * overrides them (e.g. 1/1 makes tok512.bin encode like tok512.model); call it before
 * sharing t between threads. */
void tok_get_normalizer(const tokenizer *t, int *add_dummy_prefix, int *remove_extra_whitespaces);
void tok_set_normalizer(tokenizer *t, int add_dummy_prefix, int remove_extra_whitespaces);

/* Decode ids to text as sentencepiece's DecodeIds does for valid text: control pieces
 * (BOS/EOS) vanish, '▁' becomes ' ', the leading space of the first piece is dropped
 * (dummy prefix), <unk> becomes the model's unk surface (" ⁇ "), byte pieces become their
 * raw bytes (sentencepiece would replace bytes that do not form valid UTF-8 by U+FFFD;
 * fable keeps the bytes, so decode is the exact inverse of encode on valid UTF-8 that holds
 * no U+2581 '▁' of its own: that one decodes as a space, as in sentencepiece; fuzz_encode
 * checks the round trip with the identity normalizer and remove_extra_whitespaces off).
 * Writes at most max bytes (no NUL) and returns the number of bytes the text needs, or
 * -1 + fb_err for an id outside the vocabulary. */
long tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char *out, size_t max);

/* Write the vocabulary as llama2.c tokenizer.bin / as a SentencePiece .model (BPE,
 * identity normalizer with this tokenizer's settings). Atomic; 0 or -1 + fb_err. */
int tok_save_bin(const tokenizer *t, const char *path);
int tok_save_model(const tokenizer *t, const char *path);

/* ---- training (src/data/bpe_train.c) --------------------------------------------- */

typedef struct {
    int vocab_size;             /* total, including <unk> <s> </s> and the 256 byte pieces */
    int split_digits;           /* 1: digits never merge (llama2.c's tok512 recipe) */
    int max_piece_chars;        /* longest piece in characters (sentencepiece: 16) */
    double character_coverage;  /* share of characters that become pieces (1.0: all) */
    int verbose;                /* 1: summary on stderr, 2: every merge */
} bpe_train_opts;

void bpe_train_opts_default(bpe_train_opts *o);
/* Train on the stories read from files (plain text, one story per line or separated by
 * <|endoftext|> lines, or TinyStories JSON); writes prefix.model and prefix.bin. */
int bpe_train_files(const char *const *inputs, int n_inputs, const char *prefix,
                    const bpe_train_opts *o);
/* Train on in-memory texts; returns the serialized .model (malloc'd) in *model. */
int bpe_train_texts(const char *const *texts, const size_t *lens, size_t n_texts,
                    const bpe_train_opts *o, uint8_t **model, size_t *model_len);

#endif
