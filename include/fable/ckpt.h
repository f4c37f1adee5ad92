/* fable — training checkpoints (SPEC §5).
 *
 * File layout (little-endian):
 *   ckpt_header   fixed-size struct below (magic "FBLCKPT1", version 1)
 *   float32       params[n_params], adam_m[n_params], adam_v[n_params]
 *   uint64        checksum: fb_hash64 over every byte before it
 * Written atomically (temp file, fsync, rename); a truncated or corrupted file is
 * rejected with the reason: the header is checked field by field (config, n_params against
 * the config, the file size against n_params, NUL-terminated strings, plausible batch/seq/
 * accum) before anything is allocated. Resume continues bit-for-bit: with the same engine and
 * thread count, N steps + save + load + N steps equals 2N steps exactly.
 */
#ifndef FABLE_CKPT_H
#define FABLE_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "fable/data.h"
#include "fable/model.h"
#include "fable/train.h"

#define CKPT_MAGIC "FBLCKPT1"
#define CKPT_VERSION 1
/* Largest batch (sequences per micro-step) a checkpoint header may claim: the header sizes the
 * activations on resume, so a corrupt value must be an error, not a huge allocation. */
#define CKPT_MAX_BATCH 65536

/* Cumulative seconds per phase since the run began (across resumes). */
typedef struct {
    double fwd, bwd_dx, dw, cls, rms, opt, data, eval, ckpt, total;
} ckpt_timers;

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;      /* sizeof(ckpt_header) */
    int32_t cfg[8];             /* dim, hidden, layers, heads, kv_heads, vocab, seq_len, tied */
    train_hparams hp;
    int64_t update;             /* optimizer updates done */
    int64_t micro_steps;
    int64_t tokens_seen;
    uint64_t rng;               /* trainer RNG (samples) */
    loader_state loader;        /* training data position */
    ckpt_timers timers;
    uint64_t data_tokens;       /* size of the training shard, to detect a different data set */
    int32_t data_vocab;
    int32_t threads;            /* thread count (bit-exact resume needs the same) */
    uint64_t n_params;
    char data_path[512];
    char tokenizer_path[512];
    float best_val_loss;
    float last_loss;
    char engine[16];            /* engine that wrote it ("" in older files: cpu) */
    int32_t precision;          /* eng_precision it computed in */
    int32_t time_plan;          /* train_time_plan: 0 none, 1 pending (measuring), 2 planned (hp.steps fixed) */
    int32_t world_size;         /* processes of the data-parallel job that wrote it (0 in older files: 1) */
    float dropout;              /* dropout rate of the run (0 in older files: none) */
    lr_replan replan;           /* the last correction of the time plan (update 0: none; 0 in older files) */
    uint8_t reserved[16];
} ckpt_header;

void ckpt_cfg_pack(const model_config *c, int32_t out[8]);
void ckpt_cfg_unpack(const int32_t in[8], model_config *c);

/* Write path atomically. params/m/v hold h->n_params floats each. */
int ckpt_save(const char *path, const ckpt_header *h, const float *params, const float *m, const float *v);
/* The same, reading the three arrays through get(ctx, part, off, n, dst): part 0 params,
 * 1 m, 2 v; floats [off, off+n) into dst (0, or -1 + fb_err). A slice at a time, so that an
 * engine's memory is streamed into the file without a host copy of the whole state. */
int ckpt_save_from(const char *path, const ckpt_header *h,
                   int (*get)(void *ctx, int part, size_t off, size_t n, float *dst), void *ctx);
/* Read and verify (size, magic, version, checksum). Allocates *params, *m, *v with fb_alloc
 * (any of them may be NULL to skip: the checksum is still verified). */
int ckpt_load(const char *path, ckpt_header *h, float **params, float **m, float **v);
/* The same from memory (the whole file in data[0..len)); name is used in error messages. */
int ckpt_load_mem(const void *data, size_t len, const char *name, ckpt_header *h, float **params, float **m,
                  float **v);
/* Header only (cheap), with size/magic/version checks but no checksum. */
int ckpt_read_header(const char *path, ckpt_header *h);
/* Newest checkpoint "ckpt_NNNNNNNN.bin" in dir → out. -1 + fb_err if none. */
int ckpt_latest(const char *dir, char *out, size_t cap);
/* Delete all but the newest `keep` checkpoints in dir (keep <= 0: keep all). */
int ckpt_prune(const char *dir, int keep);
/* "dir/ckpt_%08d.bin" */
void ckpt_path(char *out, size_t cap, const char *dir, int64_t update);
/* Is this file a fable checkpoint (by magic)? */
int ckpt_is_checkpoint(const char *path);
/* Do the file's first 8 bytes differ from the magic in only a few bits (1..8)? Then it is a
 * damaged checkpoint, not another format: a llama2.c header starts with two small int32s. */
int ckpt_magic_damaged(const char *path);

#endif
