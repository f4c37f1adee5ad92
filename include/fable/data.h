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
void shard_close(shard *s);
/* Write a shard with header (atomic). */
int shard_write(const char *path, const uint16_t *ids, size_t n, int vocab);

/* Window samplers. Each window is T+1 consecutive tokens: inputs = w[0..T), targets = w[1..T]. */
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
/* Restore a saved state (checks kind/T/seed match the shard; rebuilds the permutation). */
int loader_restore(loader *L, const loader_state *st);
int loader_kind_parse(const char *name, loader_kind *k);  /* "random"|"shuffled"|"sequential" */
const char *loader_kind_name(loader_kind k);

#endif
