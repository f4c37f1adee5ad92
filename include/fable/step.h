/* fable — the training state and one training step, written against the engine interface.
 *
 * step_ctx owns everything a step touches, in engine memory (like llm.c's GPT2 struct):
 * parameters, gradients, Adam moments, activations, scratch, and the update's statistics.
 * The host sees it only at the edges, through step_set_* / step_get_* (init from a seed or a
 * file, checkpoint save and resume, samples, export).
 *
 * One update = K micro-steps + the optimizer, queued without waiting:
 *   for k < K: step_fwd_bwd(s, tok, tgt, k)   embedding → L × (fwdAttn, fwdFFN) → final RMSNorm
 *              → fused classifier+cross-entropy (forward and backward) → L × (ffnBwd, ffn dW,
 *              sdpaBwd, qkvBwd, attn dW) in reverse → embedding backward
 *   step_optimizer(s, ...)                     Σg², clip, AdamW (the norm never leaves the engine)
 *   step_finish(s, &r)                         the one synchronisation: the K losses, the norm,
 *                                              the engine's per-phase timers
 *
 * Gradient convention: grads (+)= ∂(mean loss over this micro-batch's valid targets)/∂θ,
 * overwriting on the first micro-batch of an update (k = 0: no zeroing pass, and the
 * weight-gradient GEMMs never read the old values) and adding on the others (k > 0).
 * With gradient accumulation over K micro-batches the optimizer scales by 1/K.
 */
#ifndef FABLE_STEP_H
#define FABLE_STEP_H

#include <stdint.h>

#include "fable/engine.h"
#include "fable/model.h"

#define STEP_MAX_ACCUM (ENG_MAX_RECORDS - 1)

/* Optimizer hyper-parameters. weight_decay applies to matrices only (not norms). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_clip;   /* global L2 norm clip; <= 0 = off */
} optim_cfg;

/* What an update (or a lone forward/backward) produced, read back by step_finish. */
typedef struct {
    int n;                          /* micro-steps since the last step_finish */
    double loss[STEP_MAX_ACCUM];    /* mean loss of micro-step k (0 when it had no valid target) */
    double loss_mean;               /* mean of loss[0..n) */
    double grad_norm;               /* global norm after 1/accum, before clipping; NaN if no optimizer ran */
    double (*sec)[ENG_PH_COUNT];    /* [n + 1] seconds per phase: micro-steps, then the optimizer */
} step_result;

typedef struct {
    model_config cfg;
    eng *e;
    eng_dims d;
    int B, T, K;             /* micro-batch B×T, K micro-steps per update */
    size_t n;                /* parameters */
    /* ---- training state (engine memory) ---- */
    float *params;           /* [n] fp32 master weights (e->alloc_params) */
    float *grads, *m, *v;    /* [n] each; NULL in a forward-only context */
    model_params pw, pg;     /* views of params and grads */
    /* ---- activations and scratch (engine memory) ---- */
    float *rope;             /* [T, HS/2, 2] */
    float *res;              /* [2L+1, N, D] residual stream before each sublayer + final */
    float *act;              /* one arena for all taps and scratch */
    eng_attn_taps *attn;     /* [L] views (host array of engine pointers) */
    eng_ffn_taps *ffn;       /* [L] views */
    float *xf;               /* [N, D] act: final RMSNorm output */
    float *xf_rstd;          /* [N] */
    int n_dres;              /* 2, or 4 when the engine overlaps dW (a ring, so dW inputs outlive the next sublayer) */
    float *dres[4];          /* [N, D] residual gradients */
    float *dxf;              /* [N, D] dL/d(final norm output) */
    int n_grads;             /* 1, or 2 when the engine overlaps dW (by layer parity) */
    eng_attn_grads ag[2];
    eng_ffn_grads fg[2];
    float *losses;           /* [N] per-position loss of the last forward */
    int32_t *tok, *tgt;      /* [N] engine copies */
    double *stats;           /* [K + 1]: loss sum of each micro-step, then Σg² */
    /* ---- host-side bookkeeping of the current update ---- */
    int nv[STEP_MAX_ACCUM];  /* valid targets of micro-step k */
    int n_micro;             /* micro-steps queued since the last step_finish */
    int opt_ran;
    float opt_scale;         /* grad_scale of the queued optimizer (the norm is reported after it) */
    float drop_p;            /* dropout rate of the training micro-steps (0: none; never in step_loss) */
    uint32_t drop_seed;      /* of the current update (step_set_dropout) */
    double (*sec)[ENG_PH_COUNT]; /* [K + 1] */
} step_ctx;

/* Allocate the state for micro-batches of B×T tokens (T <= cfg.seq_len) and K micro-steps per
 * update. train = 0: parameters and activations only (evaluation). Checks first that it fits
 * the engine's memory. Parameters start at zero: set them with step_init_weights/set_params. */
int step_init(step_ctx *s, eng *e, const model_config *c, int B, int T, int K, int train);
void step_free(step_ctx *s);

/* ---- the edges: host ↔ engine ---- */
void step_init_weights(step_ctx *s, uint64_t seed);            /* llama2.c init (model_init_weights) */
void step_set_params(step_ctx *s, const float *host);           /* [n] */
void step_get_params(step_ctx *s, float *host);
void step_set_moments(step_ctx *s, const float *m, const float *v);
void step_get_moments(step_ctx *s, float *m, float *v);
void step_get_grads(step_ctx *s, float *host);
void step_set_grads(step_ctx *s, const float *host);            /* tests */
void step_get_losses(step_ctx *s, float *host);                 /* [N] of the last forward */

/* Dropout (engine.h, eng_dims) at rate p for the micro-steps queued from now on, with masks
 * drawn from seed (give each update, and each rank of a data-parallel job, its own seed;
 * micro-step k and layer l mix into it). p = 0 turns it off; evaluation (step_loss) never
 * drops. -1 + fb_err when p is outside [0, 0.9] or the engine has no dropout. */
int step_set_dropout(step_ctx *s, float p, uint32_t seed);

/* Forward only: mean loss over targets >= 0 (eval). Waits for the engine. */
double step_loss(step_ctx *s, const int32_t *tok, const int32_t *tgt);

/* Queue forward + backward of micro-step k (0 <= k < K) of the current update: grads = (k = 0)
 * or += (k > 0) ∂(mean loss)/∂θ. k = 0 writes every gradient element (a micro-batch without
 * valid targets writes zeros). */
void step_fwd_bwd(step_ctx *s, const int32_t *tok, const int32_t *tgt, int k);

/* Queue one AdamW update over all parameters: grads are first scaled by grad_scale (1/accum),
 * then clipped to grad_clip by their global norm (computed in the engine). step is 1-based.
 * Does not zero the grads. */
void step_optimizer(step_ctx *s, const optim_cfg *o, int step, float grad_scale);

/* Wait for everything queued; read back the micro-step losses, the gradient norm and the
 * phase timers into r (r->sec points into s, valid until the next call). */
void step_finish(step_ctx *s, step_result *r);

/* After a non-finite loss: which part of the last forward first went bad, in words. */
void step_diagnose(step_ctx *s, char *out, size_t cap);

/* Training FLOPs of one forward+backward over B×T tokens (SPEC §2 convention). */
double step_flops(const model_config *c, int B, int T);

#endif
