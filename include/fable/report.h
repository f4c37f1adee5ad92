/* fable — run reports of `fable train`: what the model is made of (parameters and training
 * FLOPs per token by part, at the start) and how well the run used the machine (time by phase
 * as a share of the wall time, achieved FLOP rate and MFU, tokens/s, the data loader's share,
 * how much of the weight-gradient time was hidden), at the end. Printed on the terminal and
 * written as telemetry: the start record's params_* / flops_* fields and the `report` record
 * (docs/telemetry.md).
 */
#ifndef FABLE_REPORT_H
#define FABLE_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "fable/engine.h"
#include "fable/model.h"
#include "fable/telemetry.h"

/* Parameters by part; the parts sum to model_num_params. KVD = n_kv_heads · head_size. */
typedef struct {
    size_t embedding;  /* tok_emb [V, D] (it is also the classifier when tied) */
    size_t attention;  /* wq, wk, wv, wo: L·(2·D·D + 2·KVD·D) */
    size_t ffn;        /* w1, w2, w3: L·3·F·D */
    size_t norms;      /* rms_att and rms_ffn: L·2·D, rms_final: D */
    size_t classifier; /* wcls [V, D] when untied; 0 when tied (counted as the embedding) */
    size_t total;
} report_params;
void report_params_of(const model_config *c, report_params *p);

/* Training FLOPs per token by part, llama2.c's convention: 6 per matmul weight (2 forward, 2
 * for dx, 2 for dW) plus 12·L·D·T for the attention scores and values. The parts sum to
 * model_flops_per_token; RMSNorm, softmax and AdamW are not counted (as in the convention). */
typedef struct {
    double embedding;  /* 6·V·D when untied (the convention counts every matrix; the lookup
                          itself does no multiply-adds), 0 when tied */
    double attention;  /* 6·(attention weights): the Q, K, V and O projections */
    double sdpa;       /* 12·L·D·T: Q·Kᵀ and P·V, forward and backward */
    double ffn;        /* 6·(FFN weights) */
    double classifier; /* 6·V·D */
    double total;
} report_flops;
void report_flops_of(const model_config *c, int T, report_flops *f);

/* The preset whose shape (seq_len and tying included) is exactly c's, or NULL. */
const char *report_preset_name(const model_config *c);

/* The start report on the terminal: parameters and FLOPs per token by part. */
void report_start_print(FILE *f, const model_config *c, int T);
/* The start record's fields params_* and flops_* (between tele_begin and tele_end). */
void report_start_fields(tele *t, const model_config *c, int T);

/* What one run (this process) did, accumulated as it goes. Seconds. */
typedef struct {
    double t0;                       /* fb_now() when the run began */
    long long updates, tokens;       /* of this run */
    double flops;                    /* training FLOPs of this run (as flops_per_token counts) */
    double train_s;                  /* wall time inside updates */
    double data_s;                   /* reading the windows */
    double ph[ENG_PH_COUNT];         /* the engine's clock per phase, micro-steps and optimizer */
    double eval_s, ckpt_s, sample_s;
    int dw_async;                    /* weight gradients on a second queue (cuda) */
    double peak_gflops;              /* MFU's denominator; 0 = unknown */
} report_run;

void report_run_begin(report_run *rr, int dw_async, double peak_gflops);
/* One update: its phase seconds summed over its micro-steps and optimizer, its data time,
 * its wall time, tokens and FLOPs. */
void report_run_update(report_run *rr, const double ph[ENG_PH_COUNT], double data_s, double wall_s,
                       long long tokens, double flops);

/* The end report: the `report` record into t (if non-NULL) and the table on f (if non-NULL).
 * seconds: the run's wall time. */
void report_end(const report_run *rr, double seconds, tele *t, FILE *f);

#endif
