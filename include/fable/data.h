/* fable — token shards and the training data loader.
 *
 * Shard file (SPEC §5), little-endian:
 *   offset 0  char[8]  magic "FBLTOKS1"
 *   offset 8  uint32   version = 1
 *   offset 12 uint32   vocab_size
 *   offset 16 uint64   n_tokens
 *   offset 24 uint32   header_bytes = 32
 *   offset 28 uint32   reserved = 0
 *   offset 32 uint16   ids[n_tokens]   (each < vocab_size; BOS before every story)
 * Raw headerless uint16 files (llama2.c's and the reference's pretokenized .bin) are
 * read too when the caller gives the vocab size.
 */
#ifndef FABLE_DATA_H
#define FABLE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "fable/util.h"

#define SHARD_MAGIC "FBLTOKS1"
#define SHARD_HEADER_BYTES 32

typedef struct {
    const uint16_t *tokens;  /* mmap'd ids */
    size_t n;                /* number of tokens */
    int vocab_size;
    int has_header;
    char path[1024];
    void *map;               /* whole mapping */
    size_t map_len;
} shard;

/* Open and validate. vocab: required for raw files (0 = file must have a header); when
 * the file has a header and vocab > 0, the two must agree. Every id is checked < vocab
 * (error names the file and the token offset). */
int shard_open(shard *s, const char *path, int vocab);
/* The same checks on a shard in memory (data must outlive s; nothing is copied, and
 * shard_close unmaps nothing). The ids are read in place: data must be 2-byte aligned. */
int shard_open_mem(shard *s, const void *data, size_t len, int vocab, const char *name);
void shard_close(shard *s);
/* Write a shard with header (atomic). */
int shard_write(const char *path, const uint16_t *ids, size_t n, int vocab);

/* Streaming shard writer (for outputs too big to hold): the ids go to "<path>.tmp.<pid>"
 * behind a placeholder header; shard_writer_close patches n_tokens into the header, fsyncs
 * and renames over path, so a reader never sees a half-written shard. Any error (or
 * shard_writer_abort) removes the temp file. Ids are checked < vocab as they arrive. */
typedef struct {
    fb_atomic a;           /* temp file, fsync, rename (fable/util.h) */
    int vocab;
    uint64_t n;            /* ids written so far */
} shard_writer;
int shard_writer_open(shard_writer *w, const char *path, int vocab);
int shard_writer_put(shard_writer *w, const uint16_t *ids, size_t n);
int shard_writer_put_i32(shard_writer *w, const int32_t *ids, size_t n);
int shard_writer_close(shard_writer *w);
void shard_writer_abort(shard_writer *w);

/* ---- text corpora (src/data/tokenize.c) ---------------------------------------------
 * A corpus is a list of stories read from text files. Formats:
 *   CORPUS_JSON  TinyStories JSON: an array of strings, an array of objects with a "story"
 *                (else "text") string, or an object {"texts": [...]} / {"stories": [...]};
 *   CORPUS_EOT   plain text, stories separated by "<|endoftext|>" (TinyStories .txt files);
 *   CORPUS_LINES one story per line;
 *   CORPUS_AUTO  JSON if the first non-blank byte is '[' or '{', else EOT if the file
 *                contains "<|endoftext|>", else lines.
 * Every story is stripped of surrounding whitespace as Python's str.strip() does
 * (llama2.c's pretokenize: `text.strip()`), and stories left empty are dropped. Bytes are
 * kept as they are: invalid UTF-8 goes on to the tokenizer (whose byte fallback encodes it). */
typedef enum { CORPUS_AUTO = 0, CORPUS_JSON, CORPUS_EOT, CORPUS_LINES } corpus_format;

typedef struct {
    size_t n, cap;
    const char **text;     /* story i = text[i][0 .. len[i]) (not NUL-terminated) */
    size_t *len;
    uint64_t bytes;        /* sum of len[] */
    struct corpus_store *store; /* the mmaps and arenas the stories point into */
    size_t n_store, cap_store;
} corpus;

int corpus_format_parse(const char *name, corpus_format *f); /* auto|json|eot|lines */
const char *corpus_format_name(corpus_format f);
/* Append the stories of a file. fmt AUTO detects; *used (optional) receives the format read. */
int corpus_add_file(corpus *c, const char *path, corpus_format fmt, corpus_format *used);
/* Append stories from memory (the text is copied). name is used in error messages. */
int corpus_add_text(corpus *c, const char *text, size_t len, corpus_format fmt, const char *name);
void corpus_free(corpus *c);
/* Strip Python str.strip() whitespace from both ends of s[0..*len); returns the new start. */
const char *corpus_strip(const char *s, size_t *len);

/* ---- tokenization to shards ---------------------------------------------------------- */
struct tokenizer;
typedef struct {
    uint64_t stories;
    uint64_t tokens;       /* ids written, BOS excluded */
    uint64_t bytes;        /* story text bytes */
} tokenize_stats;

/* Deterministic validation split by fraction f in [0,1): story i is validation iff
 * floor((i+1) f) > floor(i f), which spreads exactly floor(n f) validation stories
 * evenly over the corpus. split[i] = 1 for validation, 0 for training. */
void tokenize_split_fraction(size_t n, double f, unsigned char *split);

/* Encode every story of c as [BOS, ids...] (no EOS, like llama2.c's pretokenize) and
 * append them in story order to out[split ? split[i] : 0]. Stories are encoded in
 * parallel (OpenMP, `threads` <= 0 = all cores) in blocks; writing stays in order.
 * progress (optional) is called after each block with the bytes done so far. */
int tokenize_corpus(const struct tokenizer *t, const corpus *c, const unsigned char *split, shard_writer *out[2],
                    int threads, void (*progress)(uint64_t done, uint64_t total, void *ctx), void *ctx,
                    tokenize_stats st[2]);

/* Window samplers. Each window is T+1 consecutive tokens: inputs = w[0..T), targets = w[1..T].
 * SHUFFLED and SEQUENTIAL use the W = floor((n-1)/T) windows starting at k*T (every one that
 * fits; llama2.c's `n//T - 1` is one fewer when T does not divide n); SHUFFLED's order in an
 * epoch is a Fisher-Yates permutation seeded by (seed, epoch). Details: src/data/loader.c. */
typedef enum {
    LOADER_RANDOM = 0,     /* the reference: uniformly random offsets in [0, n-T-1] */
    LOADER_SHUFFLED = 1,   /* llama2.c: non-overlapping windows, shuffled per epoch */
    LOADER_SEQUENTIAL = 2  /* non-overlapping windows in file order */
} loader_kind;

/* Everything a checkpoint must save to continue the exact same stream (POD). */
typedef struct {
    uint32_t kind;
    uint32_t T;
    uint64_t rng;          /* sampler RNG state */
    uint64_t epoch;        /* completed passes (shuffled/sequential) */
    uint64_t pos;          /* next window index within the epoch */
    uint64_t windows_served;
    uint64_t seed;
} loader_state;

typedef struct {
    const shard *s;
    loader_state st;
    uint32_t *perm;        /* shuffled window order for the current epoch (LOADER_SHUFFLED) */
    size_t n_windows;
} loader;

/* Error if the shard holds fewer than T+1 tokens ("shard X has N tokens, need T+1"). */
int loader_init(loader *L, const shard *s, loader_kind kind, int T, uint64_t seed);
void loader_free(loader *L);
/* Next B windows: inputs[b*T + t], targets[b*T + t]. */
int loader_next(loader *L, int B, int32_t *inputs, int32_t *targets);
/* Advance past the next `windows` windows without reading them: the state afterwards is the
 * one loader_next over as many windows leaves (a data-parallel rank skips the others' slices). */
void loader_skip(loader *L, size_t windows);
/* Restore a saved state (checks kind/T/seed match the shard; rebuilds the permutation). */
int loader_restore(loader *L, const loader_state *st);
int loader_kind_parse(const char *name, loader_kind *k);  /* "random"|"shuffled"|"sequential" */
const char *loader_kind_name(loader_kind k);

#endif
