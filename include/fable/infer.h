/* fable — inference: the one-token-at-a-time forward with a KV cache, and the sampler.
 *
 * infer_forward follows llama2.c run.c's forward() operation for operation (fp32), except
 * that dot products are summed in SIMD lanes and the KV cache keeps positions innermost
 * (src/model/infer.c says why): greedy text matches run.c's on the same model (tested).
 * The sampler is run.c's (temperature, top-p with its cutoff trick, xorshift64* coin),
 * plus top-k (applied before top-p; off by default).
 */
#ifndef FABLE_INFER_H
#define FABLE_INFER_H

#include <stdint.h>

#include "fable/model.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

typedef struct {
    const model *m;
    int max_T;           /* positions the KV cache holds */
    float *x, *xb, *xb2; /* [D] */
    float *hb, *hb2;     /* [F] */
    float *q;            /* [D] */
    float *k, *v;        /* [KVD]: this position's key and value, before they enter the cache */
    float *att;          /* [NH, max_T] */
    float *logits;       /* [V] */
    /* the caches, positions innermost: [L, n_kv_heads, HS, max_T], so that a head's
     * attention scores (over positions, for each of the HS dimensions) and its weighted sum
     * of values (a dot product over positions, for each dimension) run along contiguous
     * memory, in SIMD lanes, even when HS is small (8 in stories260K) */
    float *kcache;
    float *vcache;
    float *rope;         /* [max_T, HS/2, 2] */
    /* optional: another implementation of the forward (an engine's decoder, wired by the
     * caller); infer_generate then calls fwd(fwd_ctx, token, pos) instead of infer_forward */
    float *(*fwd)(void *fwd_ctx, int token, int pos);
    void *fwd_ctx;
} infer_state;

int infer_init(infer_state *s, const model *m, int max_T);
void infer_free(infer_state *s);
/* Logits [V] for `token` at position pos (0 <= pos < max_T); earlier positions must
 * have been fed in order. */
float *infer_forward(infer_state *s, int token, int pos);

typedef struct {
    float temperature;   /* 0 = greedy */
    float topp;          /* nucleus; <= 0 or >= 1 = off */
    int topk;            /* 0 = off */
    fb_rng rng;
    int vocab;
    struct { float prob; int index; } *cand; /* [V] scratch */
} sampler;

int sampler_init(sampler *s, int vocab, float temperature, float topp, int topk, uint64_t seed);
void sampler_free(sampler *s);
/* Picks the next token; modifies logits in place (temperature, softmax). */
int sampler_sample(sampler *s, float *logits);

/* Generate up to `steps` positions from BOS + prompt, writing text to out (run.c's
 * generate(): stops at BOS; byte pieces that are not printable are skipped).
 * Returns the number of tokens generated, or -1 + fb_err; *tok_per_s gets the speed. */
long infer_generate(infer_state *s, const tokenizer *t, sampler *smp, const char *prompt, int steps,
                    FILE *out, double *tok_per_s);

#endif
