/* fable — one training step over the whole model, written against the engine interface.
 *
 * step_fwd_bwd runs: embedding → L × (fwdAttn, fwdFFN) → final RMSNorm → fused
 * classifier+cross-entropy (forward and backward) → L × (ffnBwd, ffn dW, sdpaBwd,
 * qkvBwd, attn dW) in reverse → embedding backward. It knows nothing of which engine
 * runs the kernels. Per-phase wall times are accumulated in step_timers.
 *
 * Gradient convention: grads (+)= ∂(mean loss over this micro-batch's valid targets)/∂θ,
 * overwriting on the first micro-batch of an update (acc = 0: no zeroing pass, and the
 * weight-gradient GEMMs never read the old values) and adding on the others (acc = 1).
 * With gradient accumulation over K micro-batches the optimizer scales by 1/K.
 */
#ifndef FABLE_STEP_H
#define FABLE_STEP_H

#include <stdint.h>

#include "fable/engine.h"
#include "fable/model.h"

/* Seconds spent per phase (cumulative; the trainer reads and resets them). */
typedef struct {
    double fwd;      /* embedding + layer forwards */
    double rms;      /* final RMSNorm forward + backward */
    double cls;      /* classifier + softmax + cross-entropy, forward and backward */
    double bwd_dx;   /* layer backward to dx (ffnBwd, sdpaBwd, qkvBwd) + embedding backward */
    double dw;       /* weight-gradient kernels (incl. any wait on them) */
    double opt;      /* optimizer (grad norm, clip, AdamW) */
} step_timers;

typedef struct {
    model_config cfg;
    eng *e;
    eng_dims d;
    int B, T;
    float *rope;             /* [T, HS/2, 2] */
    float *res;              /* [2L+1, N, D] residual stream before each sublayer + final */
    float *act;              /* one arena for all taps and scratch */
    eng_attn_taps *attn;     /* [L] views */
    eng_ffn_taps *ffn;       /* [L] views */
    float *xf;               /* [N, D] final RMSNorm output */
    float *xf_rstd;          /* [N] */
    float *dres[2];          /* [N, D] ping-pong residual gradients */
    float *dxf;              /* [N, D] dL/d(final norm output) */
    eng_attn_grads ag;
    eng_ffn_grads fg;
    float *losses;           /* [N] per-position loss of the last call */
    int32_t *tok, *tgt;      /* [N] engine copies */
    step_timers tm;
} step_ctx;

/* Allocate activations for micro-batches of B×T tokens (T <= cfg.seq_len). */
int step_init(step_ctx *s, eng *e, const model_config *c, int B, int T);
void step_free(step_ctx *s);

/* Forward only: mean loss over targets >= 0 (eval). Per-position losses in s->losses. */
double step_loss(step_ctx *s, const model_params *w, const int32_t *tok, const int32_t *tgt);

/* Forward + backward: grads = (acc 0) or += (acc 1) ∂(mean loss)/∂θ; returns the mean loss.
 * acc = 0 writes every gradient element (a micro-batch without valid targets writes zeros). */
double step_fwd_bwd(step_ctx *s, const model_params *w, model_params *g, const int32_t *tok,
                    const int32_t *tgt, int acc);

/* Optimizer hyper-parameters. weight_decay applies to matrices only (not norms). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_clip;   /* global L2 norm clip; <= 0 = off */
} optim_cfg;

/* One AdamW update over all parameters: grads are first scaled by grad_scale (1/accum),
 * then clipped to grad_clip by their global norm. step is 1-based. Returns the global
 * gradient norm after grad_scale and before clipping. Does not zero the grads. */
double step_optimizer(step_ctx *s, float *params, float *grads, float *m, float *v,
                      const optim_cfg *o, int step, float grad_scale);

/* Training FLOPs of one forward+backward over B×T tokens (SPEC §2 convention). */
double step_flops(const model_config *c, int B, int T);

#endif
