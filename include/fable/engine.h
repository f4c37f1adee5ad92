/* fable — the engine interface: every kernel the training step calls.
 *
 * The training step (src/train/step.c) calls ONLY these kernels, so an engine
 * (cpu now, cuda later) can be swapped without the loop knowing. All pointers
 * are engine memory (eng->alloc); the cpu engine's memory is plain host memory.
 *
 * Notation: B batch, T sequence, N = B·T rows (token positions, row n = b·T + t),
 * D dim, F hidden_dim, NH heads, NKV kv heads, HS = D/NH head size, KVD = NKV·HS,
 * V vocab. Matrices are row-major; a weight W[out][in] maps x (in) to W·x (out),
 * so for row-major activations X [N, in]:  Y = X · Wᵀ  [N, out].
 *
 * Residual streams are never updated in place: every sublayer reads its input
 * x_in and writes x_out = x_in + f(x_in); backward reads dy = dL/dx_out and
 * writes dx = dL/dx_in = dy + (∂f/∂x_in)ᵀ·dy. Keeping both lets the weight-
 * gradient calls (separate, so an engine may run them overlapped on another
 * queue) read dy after the dx path has moved on. dx outputs are overwritten.
 * Every call that writes a parameter gradient takes `acc`: 1 = accumulate (g += ...),
 * 0 = overwrite (g = ...; the first micro-batch of an update, so the gradients never
 * need zeroing and the GEMMs never read them back). "+=" below means "+= or =, by acc".
 * Inputs of a *_dw call must stay unchanged until eng->sync() returns.
 */
#ifndef FABLE_ENGINE_H
#define FABLE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "fable/model.h"

typedef struct {
    int B, T, N;           /* N = B*T */
    int D, F, NH, NKV, HS, KVD, V;
} eng_dims;

void eng_dims_make(eng_dims *d, const model_config *c, int B, int T);

/* One layer's weights (views into the model parameters, or their gradients). */
typedef struct {
    float *rms_att, *wq, *wk, *wv, *wo;   /* [D] [D,D] [KVD,D] [KVD,D] [D,D] */
    float *rms_ffn, *w1, *w2, *w3;        /* [D] [F,D] [D,F] [F,D] */
} eng_layer;

/* Layer l's views from a model_params (weights, grads, or moments). */
void eng_layer_of(const model_config *c, const model_params *p, int l, eng_layer *out);

/* Saved activations ("taps") of the attention half of one layer. */
typedef struct {
    float *x;      /* [N, D]   input residual stream (needed by RMSNorm backward) */
    float *rstd;   /* [N]      1/sqrt(mean(x²)+eps) */
    float *xn;     /* [N, D]   RMSNorm(x)·rms_att */
    float *q;      /* [N, D]   RoPE(xn·Wqᵀ) */
    float *k;      /* [N, KVD] RoPE(xn·Wkᵀ) */
    float *v;      /* [N, KVD] xn·Wvᵀ */
    float *att;    /* [N, D]   softmax(q·kᵀ/√HS, causal)·v, heads side by side (input of Wo) */
    float *lse;    /* [B, NH, T] log-sum-exp of each score row (to recompute P in backward) */
} eng_attn_taps;

/* Saved activations of the FFN half of one layer. */
typedef struct {
    float *x;      /* [N, D] input residual stream */
    float *rstd;   /* [N] */
    float *xn;     /* [N, D] RMSNorm(x)·rms_ffn */
    float *h1;     /* [N, F] xn·W1ᵀ */
    float *h3;     /* [N, F] xn·W3ᵀ */
    float *gate;   /* [N, F] silu(h1)⊙h3 */
} eng_ffn_taps;

/* Scratch the backward kernels hand to the weight-gradient kernels. */
typedef struct {
    float *da;     /* [N, D]   dL/d(att) = dy·Wo */
    float *dq;     /* [N, D]   dL/d(xn·Wqᵀ) (RoPE undone) */
    float *dk;     /* [N, KVD] */
    float *dv;     /* [N, KVD] */
    float *dxn;    /* [N, D]   dL/d(xn), scratch for the norm backward */
} eng_attn_grads;

typedef struct {
    float *dh1;    /* [N, F] dL/dh1 = dgate·h3·silu'(h1) */
    float *dh3;    /* [N, F] dL/dh3 = dgate·silu(h1) */
    float *dgate;  /* [N, F] scratch: dy·W2 */
    float *dxn;    /* [N, D] scratch */
} eng_ffn_grads;

typedef struct eng eng;

/* AdamW hyper-parameters for one update. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_scale;   /* gradients are multiplied by this first (1/accum · clip factor) */
    int step;           /* 1-based update count, for bias correction */
} eng_adamw_args;

struct eng {
    const char *name;          /* "cpu" */
    int threads;
    double peak_gflops;        /* measured FMA peak of this engine (0 = not measured yet) */
    void *impl;                /* engine-private state (scratch buffers, streams) */

    void *(*alloc)(eng *e, size_t bytes);          /* zeroed, 64-byte aligned */
    void (*free)(eng *e, void *p);
    void (*upload)(eng *e, void *dst, const void *src, size_t bytes);
    void (*download)(eng *e, void *dst, const void *src, size_t bytes);
    void (*sync)(eng *e);                          /* wait for all queued work (incl. dW) */
    void (*destroy)(eng *e);

    /* ---- embedding ------------------------------------------------------------
     * x[n,:] = E[tok[n],:]                                         x [N,D], E [V,D] */
    void (*embed_fwd)(eng *e, const eng_dims *d, float *x, const float *emb, const int32_t *tok);
    /* dE[tok[n],:] += dx[n,:]  (always accumulates: only the rows of tok are touched) */
    void (*embed_bwd)(eng *e, const eng_dims *d, float *demb, const float *dx, const int32_t *tok);

    /* ---- RoPE table -------------------------------------------------------------
     * rope [T, HS/2, 2] = (cos, sin) of pos / 10000^(2i/HS), computed in fp32 exactly as
     * run.c does. Kernels below take it as an argument. */

    /* ---- attention half ------------------------------------------------------
     * fwdAttn: xn = RMSNorm(x_in)·rms_att; q,k,v = xn·Wq/k/vᵀ; RoPE on q,k (pairs
     * (2i,2i+1) per head); att = causal softmax(q·kᵀ/√HS)·v with GQA;
     * x_out = x_in + att·Woᵀ. Fills every field of taps (taps->x must be x_in). */
    void (*attn_fwd)(eng *e, const eng_dims *d, const eng_layer *w, const float *rope,
                     eng_attn_taps *taps, float *x_out);
    /* sdpaBwd1+2: from dy = dL/dx_out: da = dy·Wo; recompute P from q,k,lse;
     * dV = Pᵀ·da; dP = da·Vᵀ; dS = P⊙(dP − rowsum(P⊙dP))/√HS; dQ = dS·K; dK = dSᵀ·Q;
     * then RoPE backward (rotate by −angle) on dQ, dK. Writes g->da, dq, dk, dv. O(T²). */
    void (*attn_bwd)(eng *e, const eng_dims *d, const eng_layer *w, const float *rope,
                     const eng_attn_taps *taps, const float *dy, eng_attn_grads *g);
    /* qkvBwd: dxn = dq·Wq + dk·Wk + dv·Wv; RMSNorm backward:
     *   x̂ = x·rstd, dx̂ = dxn⊙w, dx = dy + rstd·(dx̂ − x̂·mean(dx̂⊙x̂)),  d rms_att += Σ_n dxn⊙x̂.
     * Writes dx [N,D] (may NOT alias dy), accumulates grad->rms_att. */
    void (*qkv_bwd)(eng *e, const eng_dims *d, const eng_layer *w, const eng_attn_taps *taps,
                    const float *dy, eng_attn_grads *g, float *dx, eng_layer *grad, int acc);
    /* Attention weight gradients (+=): dWo += dyᵀ·att; dWq += dqᵀ·xn; dWk += dkᵀ·xn;
     * dWv += dvᵀ·xn. May run asynchronously until sync(). */
    void (*attn_dw)(eng *e, const eng_dims *d, const eng_attn_taps *taps, const float *dy,
                    const eng_attn_grads *g, eng_layer *grad, int acc);

    /* ---- FFN half -------------------------------------------------------------
     * fwdFFN: xn = RMSNorm(x_in)·rms_ffn; h1 = xn·W1ᵀ; h3 = xn·W3ᵀ; gate = silu(h1)⊙h3;
     * x_out = x_in + gate·W2ᵀ.  silu(a) = a·σ(a). */
    void (*ffn_fwd)(eng *e, const eng_dims *d, const eng_layer *w, eng_ffn_taps *taps,
                    float *x_out);
    /* ffnBwd: dgate = dy·W2; dh1 = dgate⊙h3⊙silu'(h1), silu'(a) = σ(a)(1 + a(1−σ(a)));
     * dh3 = dgate⊙silu(h1); dxn = dh1·W1 + dh3·W3; RMSNorm backward as in qkv_bwd into
     * dx = dy + ..., grad->rms_ffn +=. Writes g->dh1, g->dh3. */
    void (*ffn_bwd)(eng *e, const eng_dims *d, const eng_layer *w, const eng_ffn_taps *taps,
                    const float *dy, eng_ffn_grads *g, float *dx, eng_layer *grad, int acc);
    /* dW2 += dyᵀ·gate; dW1 += dh1ᵀ·xn; dW3 += dh3ᵀ·xn. May run asynchronously. */
    void (*ffn_dw)(eng *e, const eng_dims *d, const eng_ffn_taps *taps, const float *dy,
                   const eng_ffn_grads *g, eng_layer *grad, int acc);

    /* ---- final RMSNorm -----------------------------------------------------------
     * out = x·rstd·w, rstd = 1/sqrt(mean(x²)+eps) per row. x [N,D]. */
    void (*rmsnorm_fwd)(eng *e, int N, int D, const float *x, const float *w, float *out,
                        float *rstd);
    /* dx = rstd·(dx̂ − x̂·mean(dx̂⊙x̂)) with dx̂ = dout⊙w (overwrites dx); dw += Σ dout⊙x̂. */
    void (*rmsnorm_bwd)(eng *e, int N, int D, const float *x, const float *w, const float *rstd,
                        const float *dout, float *dx, float *dw, int acc);

    /* ---- classifier + softmax + cross-entropy, fused ------------------------------
     * logits = xn·Wclsᵀ [N,V], processed in vocabulary blocks; per row
     *   loss_n = logsumexp(logits_n) − logits_n[target_n]   (target < 0: row ignored, loss 0).
     * Returns Σ_n loss_n (double). If losses != NULL, writes loss_n.
     * With dxn != NULL also the backward for L = scale·Σ_n loss_n:
     *   dlogits = scale·(softmax − onehot); dxn = dlogits·Wcls (overwritten);
     *   dWcls += dlogitsᵀ·xn  (or = when acc == 0).
     * Never holds more than one [rows × V] logits buffer. */
    double (*cls_loss)(eng *e, const eng_dims *d, const float *xn, const float *wcls,
                       const int32_t *targets, float scale, float *losses, float *dxn,
                       float *dwcls, int acc);

    /* ---- optimizer -----------------------------------------------------------------
     * Σ g² over n floats (double accumulation, deterministic). */
    double (*sumsq)(eng *e, const float *g, size_t n);
    /* AdamW (decoupled decay) on n floats:  g ← g·grad_scale;  m ← β1m + (1−β1)g;
     * v ← β2v + (1−β2)g²;  p ← p − lr·( (m/(1−β1^t)) / (sqrt(v/(1−β2^t)) + eps) + wd·p ). */
    void (*adamw)(eng *e, float *p, const float *g, float *m, float *v, size_t n,
                  const eng_adamw_args *a);
    /* Fill n floats with zero. */
    void (*zero)(eng *e, float *p, size_t n);
};

/* Create the cpu engine with `threads` threads (0 = all cores). NULL + fb_err on failure. */
eng *eng_cpu_create(int threads);
/* Measured fp32 FMA peak of `threads` cores in GFLOP/s (~0.1 s). */
double eng_cpu_measure_peak(int threads);
/* e->peak_gflops, measured on first use. */
double eng_peak_gflops(eng *e);
/* By name ("cpu"). */
eng *eng_create(const char *name, int threads);

/* RoPE table for T positions: [T, HS/2, 2] (cos, sin), fp32 as run.c computes it. */
void eng_rope_table(float *rope, int T, int HS);

#endif
