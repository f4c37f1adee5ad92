/* fable — SentencePiece ModelProto (sentencepiece_model.proto) read and written with a
 * minimal protobuf wire-format codec of our own (no libprotobuf).
 *
 * Only what a BPE tokenizer needs is kept: the pieces (text, score, type), the
 * normalizer settings that change encoding, and the trainer settings that name the
 * special pieces. Unknown fields are skipped on reading, so newer .model files load.
 *
 * Wire format recap: a message is a sequence of (key, value); key = field << 3 | wire
 * type; wire 0 = varint, 1 = 8 bytes, 2 = varint length + bytes (strings, sub-messages),
 * 5 = 4 bytes (float). Field numbers used here (sentencepiece_model.proto):
 *   ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
 *                   5 denormalizer_spec
 *   SentencePiece   1 piece  2 score (float)  3 type (enum, default NORMAL)
 *   TrainerSpec     3 model_type (1 unigram, 2 BPE, 3 word, 4 char)  4 vocab_size
 *                   24 treat_whitespace_as_suffix  35 byte_fallback  40..43 unk/bos/eos/pad id
 *                   44 unk_surface  45..48 unk/bos/eos/pad piece  (others kept for writing)
 *   NormalizerSpec  1 name  2 precompiled_charsmap  3 add_dummy_prefix (default true)
 *                   4 remove_extra_whitespaces (default true)  5 escape_whitespaces (default true)
 */
#ifndef FABLE_SPM_PROTO_H
#define FABLE_SPM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "fable/tokenizer.h"

/* SentencePiece.Type values: TOK_NORMAL .. TOK_BYTE in fable/tokenizer.h. */

enum { SPM_UNIGRAM = 1, SPM_BPE = 2, SPM_WORD = 3, SPM_CHAR = 4 };

typedef struct {
    char *piece;      /* UTF-8, NUL-terminated, '▁' (U+2581) for a space */
    uint32_t len;     /* bytes */
    float score;
    int type;         /* SPM_* */
} spm_piece;

typedef struct {
    spm_piece *pieces;
    int n_pieces;
    /* TrainerSpec (defaults as in sentencepiece_model.proto) */
    int model_type;              /* SPM_BPE ... default SPM_UNIGRAM */
    int vocab_size;              /* default 8000 */
    int byte_fallback;           /* default 0 */
    int treat_whitespace_as_suffix;
    int split_digits, split_by_whitespace, allow_whitespace_only_pieces;
    int max_sentencepiece_length;
    float character_coverage;
    int unk_id, bos_id, eos_id, pad_id;  /* defaults 0, 1, 2, -1 */
    char *unk_piece, *bos_piece, *eos_piece, *pad_piece;  /* "<unk>" "<s>" "</s>" "<pad>" */
    char *unk_surface;           /* default " \xE2\x81\x87 " (" ⁇ ") */
    /* NormalizerSpec */
    char *norm_name;             /* e.g. "identity", "nmt_nfkc" (may be NULL) */
    uint8_t *charsmap;           /* precompiled_charsmap blob (may be empty) */
    size_t charsmap_len;
    int add_dummy_prefix;        /* default 1 */
    int remove_extra_whitespaces;/* default 1 */
    int escape_whitespaces;      /* default 1 */
} spm_model;

/* Set every field to the protobuf defaults (no pieces). */
void spm_model_defaults(spm_model *m);
/* Parse a serialized ModelProto. On failure returns -1 and writes the reason to err
 * (the caller adds the file name). m must be freed with spm_model_free in both cases. */
int spm_model_parse(spm_model *m, const uint8_t *buf, size_t len, char *err, size_t errlen);
/* Serialize (pieces, trainer_spec with the fields above, normalizer_spec). The result is
 * malloc'd. Returns 0 or -1 + fb_err. */
int spm_model_serialize(const spm_model *m, uint8_t **out, size_t *out_len);
void spm_model_free(spm_model *m);

#endif
