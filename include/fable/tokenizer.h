/* fable — tokenizer: SentencePiece-compatible BPE (encode/decode) over a vocabulary
 * loaded from a SentencePiece .model (protobuf ModelProto) or llama2.c's tokenizer.bin.
 *
 * Encoding gives exactly the ids sentencepiece gives for the same BPE model and text
 * (dummy prefix, '▁' for spaces, byte fallback). Decoding follows llama2.c/run.c:
 * tok_decode_piece(prev, id) strips the leading space after BOS and maps byte pieces
 * <0xNN> to the byte.
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

#endif
