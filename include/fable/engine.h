/* fable — the engine interface: every kernel the training step calls.
 *
 * The training step (src/train/step.c) calls ONLY these functions, so an engine (ref, cpu,
 * cuda) can be swapped without the loop knowing. Engines are found by name in a registry
 * (eng_create, eng_list below; src/engine/engine.c). Every engine is checked op by op
 * against `ref`, the plain scalar C engine (tests/engine/test_engine_ops.c).
 *
 * Memory. Every pointer handed to a kernel is ENGINE MEMORY (e->alloc, e->alloc_params):
 * host memory for ref and cpu, device memory for cuda. Only e->upload / e->download (and
 * the *_act variants) move data between the host and the engine; no code outside
 * src/engine/ reads or writes engine memory directly. Calls are queued in order on the
 * engine's queue and may return before the work is done (cuda); e->sync() waits for all of
 * it, and a download waits for the work queued before it.
 *
 * Storage formats. Parameters, gradients, Adam moments, residual streams (x, x_out, dy, dx),
 * rstd, lse, losses and the reduction outputs are fp32 (double where stated). The
 * activation buffers marked "act" below (taps that feed matmuls, and backward scratch) are
 * stored in the engine's activation format: e->act_bytes bytes per element (4: fp32; 2:
 * bf16 in the cuda engine's bf16 precision). Their sizes are still allocated as floats;
 * download_act/upload_act convert to and from fp32 on the host.
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
 * queue: e->dw_async) read dy after the dx path has moved on. dx outputs are overwritten.
 * An engine that overlaps them orders every later call that writes what a pending *_dw call
 * reads, or touches the gradients it writes, after that call (it tracks the buffers);
 * the caller only has to leave the inputs of a *_dw call unwritten by the host.
 * Every call that writes a parameter gradient takes `acc`: 1 = accumulate (g += ...),
 * 0 = overwrite (g = ...; the first micro-batch of an update, so the gradients never
 * need zeroing and the GEMMs never read them back). "+=" below means "+= or =, by acc".
 *
 * One synchronisation per update: the loss (cls_loss) and the gradient norm (sumsq) are
 * written to engine memory and read back once, after the update (step_finish); clipping
 * reads the norm where it lies (adamw's gsumsq).
 */
#ifndef FABLE_ENGINE_H
#define FABLE_ENGINE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fable/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int B, T, N;           /* N = B*T */
    int D, F, NH, NKV, HS, KVD, V;
    /* Dropout of the call (training forward and backward only; eng_dims_make sets it off):
     * inverted dropout at rate drop_p on the input of each output projection, att (before
     * Wo) and gate (before W2). The mask is a pure function of (drop_seed, site, element
     * index), eng_drop_mult below, so the backward recomputes it instead of storing it; the
     * step sets drop_seed per update, micro-step and layer. Engines without e->dropout never
     * see drop_p > 0 (step_set_dropout refuses). */
    float drop_p;
    uint32_t drop_seed;
} eng_dims;

void eng_dims_make(eng_dims *d, const model_config *c, int B, int T);

/* ---- dropout masks --------------------------------------------------------------------
 * Element i of a site's [N, width] tensor (i = n·width + j) is kept iff
 *   hash(seed ^ site_salt, i) ≥ thresh,   thresh = round(p·2³²)   (P(drop) = p to 2⁻³²),
 * and a kept element is scaled by 1/(1−p), so E[mask·x] = x. hash is a 32-bit integer mixer
 * (two multiply-xorshift rounds, full avalanche), cheap enough to recompute in backward. */
#define ENG_DROP_SITE_ATT 0x5bd1e995u  /* att, the input of Wo */
#define ENG_DROP_SITE_GATE 0x27d4eb2fu /* gate, the input of W2 */
static inline uint32_t eng_drop_hash(uint32_t seed, uint32_t i) {
    uint32_t x = i * 0x9e3779b9u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
static inline uint32_t eng_drop_thresh(float p) {
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)(t + 0.5);
}
/* The multiplier of element i: 0 (dropped) or 1/(1−p) (kept). */
static inline float eng_drop_mult(uint32_t site_seed, uint32_t thresh, float keep_scale, uint32_t i) {
    return eng_drop_hash(site_seed, i) >= thresh ? keep_scale : 0.0f;
}

/* Saved activations ("taps") of the attention half of one layer. */
typedef struct {
    float *x;      /* [N, D]   input residual stream (needed by RMSNorm backward) */
    float *rstd;   /* [N]      1/sqrt(mean(x²)+eps) */
    float *xn;     /* [N, D]   act: RMSNorm(x)·rms_att */
    float *q;      /* [N, D]   act: RoPE(xn·Wqᵀ) */
    float *k;      /* [N, KVD] act: RoPE(xn·Wkᵀ) */
    float *v;      /* [N, KVD] act: xn·Wvᵀ */
    float *att;    /* [N, D]   act: softmax(q·kᵀ/√HS, causal)·v, heads side by side (input of Wo) */
    float *lse;    /* [B, NH, T] log-sum-exp of each score row (to recompute P in backward) */
} eng_attn_taps;

/* Saved activations of the FFN half of one layer. */
typedef struct {
    float *x;      /* [N, D] input residual stream */
    float *rstd;   /* [N] */
    float *xn;     /* [N, D] act: RMSNorm(x)·rms_ffn */
    float *h1;     /* [N, F] act: xn·W1ᵀ */
    float *h3;     /* [N, F] act: xn·W3ᵀ */
    float *gate;   /* [N, F] act: silu(h1)⊙h3 */
} eng_ffn_taps;

/* Scratch the backward kernels hand to the weight-gradient kernels (all act). */
typedef struct {
    float *da;     /* [N, D]   dL/d(att) = dy·Wo */
    float *dq;     /* [N, D]   dL/d(xn·Wqᵀ) (RoPE undone) */
    float *dk;     /* [N, KVD] */
    float *dv;     /* [N, KVD] */
    float *dxn;    /* [N, D]   scratch for the norm backward (engine-private contents) */
} eng_attn_grads;

typedef struct {
    float *dh1;    /* [N, F] dL/dh1 = dgate·h3·silu'(h1) */
    float *dh3;    /* [N, F] dL/dh3 = dgate·silu(h1) */
    float *dgate;  /* [N, F] scratch: dy·W2 (engine-private contents) */
    float *dxn;    /* [N, D] scratch (engine-private contents) */
} eng_ffn_grads;

typedef struct eng eng;

/* Precision of an engine's arithmetic. fp32: fp32 everywhere (cuda: TF32 off).
 * bf16: bf16 matmul operands and activations, fp32 accumulation, fp32 master weights,
 * gradients and Adam moments. */
typedef enum { ENG_FP32 = 0, ENG_BF16 = 1 } eng_precision;
const char *eng_precision_name(int precision);
int eng_precision_parse(const char *s, int *precision); /* "fp32" | "bf16"; -1 + fb_err */

/* Options of eng_create. */
typedef struct {
    int threads;     /* host threads (0 = all cores); cpu */
    int precision;   /* eng_precision; -1 = the engine's default */
    int device;      /* GPU ordinal; cuda */
} eng_opts;

/* AdamW hyper-parameters for one update. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_scale;   /* gradients are multiplied by this first (1/accum) */
    float grad_clip;    /* global-norm clip (<= 0: off), from gsumsq (see eng_clip_scale) */
    int step;           /* 1-based update count, for bias correction */
} eng_adamw_args;

/* The factor AdamW multiplies raw gradients by: grad_scale, times torch's
 * clip_grad_norm_ coefficient clip / (norm + 1e-6) when norm = sqrt(sumsq)·grad_scale
 * exceeds clip. Every engine applies exactly this (the cuda engine, its device twin). */
static inline float eng_clip_scale(double sumsq, float grad_scale, float grad_clip) {
    double norm = sqrt(sumsq) * grad_scale;
    float scale = grad_scale;
    if (grad_clip > 0 && norm > grad_clip) scale *= (float)(grad_clip / (norm + 1e-6));
    return scale;
}

/* Phases of a step, for the engine's timers. */
enum {
    ENG_PH_FWD = 0,    /* embedding + layer forwards */
    ENG_PH_RMS,        /* final RMSNorm forward and backward */
    ENG_PH_CLS,        /* classifier + softmax + cross-entropy, forward and backward */
    ENG_PH_BWD,        /* layer backward to dx + embedding backward */
    ENG_PH_DW,         /* weight-gradient kernels (on their own queue where overlapped) */
    ENG_PH_OPT,        /* gradient norm + AdamW */
    ENG_PH_DW_WAIT,    /* read only: time the main queue waited for weight gradients */
    ENG_PH_COUNT
};
#define ENG_MAX_RECORDS 4096 /* timer records per read (micro-steps of one update + 1) */

struct eng {
    const char *name;          /* "ref", "cpu", "cuda" */
    int threads;               /* host threads it uses */
    int precision;             /* eng_precision */
    int dw_async;              /* 1: *_dw calls overlap the dx chain (then double-buffer their inputs) */
    size_t act_bytes;          /* bytes per element of "act" buffers: 4 or 2 */
    char device[128];          /* what it runs on, in words ("AMD EPYC ... (2 threads)", "NVIDIA H200") */
    double peak_gflops;        /* the peak MFU is measured against (0 = not known yet; see eng_peak_gflops) */
    int dropout;               /* 1: the layer kernels apply eng_dims' dropout (else drop_p must stay 0) */
    void *impl;                /* engine-private state */

    /* ---- engine memory -----------------------------------------------------------------
     * alloc: zeroed, 64-byte aligned (host) or 256-byte aligned (device); NULL + fb_err when
     * out of memory. alloc_params: n floats of fp32 parameters; an engine with a lower
     * compute precision keeps a mirror of them, refreshed by upload into this region and by
     * adamw (so parameters must only be written through those two). */
    void *(*alloc)(eng *e, size_t bytes);
    float *(*alloc_params)(eng *e, size_t n);
    void (*free)(eng *e, void *p);
    /* Bytes of engine memory still free (0 = unknown). */
    size_t (*mem_available)(eng *e);
    void (*upload)(eng *e, void *dst, const void *src, size_t bytes);
    void (*download)(eng *e, void *dst, const void *src, size_t bytes);
    /* n values of an act buffer to/from fp32 on the host */
    void (*upload_act)(eng *e, float *dst, const float *src, size_t n);
    void (*download_act)(eng *e, float *dst, const float *src, size_t n);
    void (*sync)(eng *e);                          /* wait for all queued work (incl. dW) */
    void (*destroy)(eng *e);
    /* The peak GFLOP/s at this precision (cpu: FMA peak measured here; cuda: the card's dense
     * tensor peak). Called once, by eng_peak_gflops. */
    double (*peak)(eng *e);

    /* ---- timers ---------------------------------------------------------------------------
     * phase(rec, ph): work queued from now on belongs to phase ph of timer record rec
     * (rec < ENG_MAX_RECORDS; the step uses one record per micro-step and one for the
     * optimizer); ph = -1 stops timing. timers(nrec, sec): after sync, the seconds each
     * record spent in each phase (ENG_PH_DW_WAIT included) by the engine's own clock (host
     * clock, GPU events), added to sec[rec][ph] for rec < nrec; then the records are cleared. */
    void (*phase)(eng *e, int rec, int ph);
    void (*timers)(eng *e, int nrec, double (*sec)[ENG_PH_COUNT]);

    /* ---- recorded work ---------------------------------------------------------------------
     * run(key, fn, ctx): queue the work that fn(ctx) queues. An engine may record it when it
     * sees `key` again and from then on replay the recording instead of calling fn (cuda: a
     * CUDA graph), so fn must queue the same calls with the same arguments every time it runs
     * with that key, reading its inputs from the same engine buffers (uploads happen before
     * run), and must not download. ref and cpu call fn. */
    void (*run)(eng *e, uint64_t key, void (*fn)(void *ctx), void *ctx);

    /* ---- embedding ------------------------------------------------------------
     * x[n,:] = E[tok[n],:]                                         x [N,D], E [V,D] */
    void (*embed_fwd)(eng *e, const eng_dims *d, float *x, const float *emb, const int32_t *tok);
    /* dE[tok[n],:] += dx[n,:]  (always accumulates: only the rows of tok are touched;
     * rows added in order of n, so that repeated tokens sum deterministically) */
    void (*embed_bwd)(eng *e, const eng_dims *d, float *demb, const float *dx, const int32_t *tok);

    /* ---- attention half ------------------------------------------------------
     * rope [T, HS/2, 2] (model_rope_table) is engine memory.
     * fwdAttn: xn = RMSNorm(x_in)·rms_att; q,k,v = xn·Wq/k/vᵀ; RoPE on q,k (pairs
     * (2i,2i+1) per head, position n mod T); att = causal softmax(q·kᵀ/√HS)·v with GQA
     * (query head h reads kv head h/(NH/NKV)); x_out = x_in + att·Woᵀ.
     * With dropout (d->drop_p > 0) att is stored masked, att ⊙ mask(ENG_DROP_SITE_ATT)/(1−p).
     * Fills every field of taps (taps->x must be x_in). */
    void (*attn_fwd)(eng *e, const eng_dims *d, const model_layer *w, const float *rope,
                     eng_attn_taps *taps, float *x_out);
    /* sdpaBwd1+2: from dy = dL/dx_out: da = dy·Wo (⊙ the same mask/(1−p) under dropout);
     * recompute P from q,k,lse;
     * dV = Pᵀ·da; dP = da·Vᵀ; dS = P⊙(dP − rowsum(P⊙dP))/√HS; dQ = dS·K; dK = dSᵀ·Q;
     * then RoPE backward (rotate by −angle) on dQ, dK. Writes g->da, dq, dk, dv. */
    void (*attn_bwd)(eng *e, const eng_dims *d, const model_layer *w, const float *rope,
                     const eng_attn_taps *taps, const float *dy, eng_attn_grads *g);
    /* qkvBwd: dxn = dq·Wq + dk·Wk + dv·Wv; RMSNorm backward:
     *   x̂ = x·rstd, dx̂ = dxn⊙w, dx = dy + rstd·(dx̂ − x̂·mean(dx̂⊙x̂)),  d rms_att += Σ_n dxn⊙x̂.
     * Writes dx [N,D] (may NOT alias dy), accumulates grad->rms_att. */
    void (*qkv_bwd)(eng *e, const eng_dims *d, const model_layer *w, const eng_attn_taps *taps,
                    const float *dy, eng_attn_grads *g, float *dx, model_layer *grad, int acc);
    /* Attention weight gradients (+=): dWo += dyᵀ·att; dWq += dqᵀ·xn; dWk += dkᵀ·xn;
     * dWv += dvᵀ·xn. Runs overlapped where e->dw_async. */
    void (*attn_dw)(eng *e, const eng_dims *d, const eng_attn_taps *taps, const float *dy,
                    const eng_attn_grads *g, model_layer *grad, int acc);

    /* ---- FFN half -------------------------------------------------------------
     * fwdFFN: xn = RMSNorm(x_in)·rms_ffn; h1 = xn·W1ᵀ; h3 = xn·W3ᵀ; gate = silu(h1)⊙h3;
     * x_out = x_in + gate·W2ᵀ.  silu(a) = a·σ(a). Under dropout gate is stored masked,
     * gate = silu(h1)⊙h3⊙mask(ENG_DROP_SITE_GATE)/(1−p). */
    void (*ffn_fwd)(eng *e, const eng_dims *d, const model_layer *w, eng_ffn_taps *taps,
                    float *x_out);
    /* ffnBwd: dgate = dy·W2 (⊙ mask/(1−p) under dropout); dh1 = dgate⊙h3⊙silu'(h1), silu'(a) = σ(a)(1 + a(1−σ(a)));
     * dh3 = dgate⊙silu(h1); dxn = dh1·W1 + dh3·W3; RMSNorm backward as in qkv_bwd into
     * dx = dy + ..., grad->rms_ffn +=. Writes g->dh1, g->dh3. */
    void (*ffn_bwd)(eng *e, const eng_dims *d, const model_layer *w, const eng_ffn_taps *taps,
                    const float *dy, eng_ffn_grads *g, float *dx, model_layer *grad, int acc);
    /* dW2 += dyᵀ·gate; dW1 += dh1ᵀ·xn; dW3 += dh3ᵀ·xn. Runs overlapped where e->dw_async. */
    void (*ffn_dw)(eng *e, const eng_dims *d, const eng_ffn_taps *taps, const float *dy,
                   const eng_ffn_grads *g, model_layer *grad, int acc);

    /* ---- final RMSNorm -----------------------------------------------------------
     * out (act) = x·rstd·w, rstd = 1/sqrt(mean(x²)+eps) per row. x [N,D]. */
    void (*rmsnorm_fwd)(eng *e, int N, int D, const float *x, const float *w, float *out,
                        float *rstd);
    /* dx = rstd·(dx̂ − x̂·mean(dx̂⊙x̂)) with dx̂ = dout⊙w (overwrites dx); dw += Σ dout⊙x̂.
     * dout and dx fp32. */
    void (*rmsnorm_bwd)(eng *e, int N, int D, const float *x, const float *w, const float *rstd,
                        const float *dout, float *dx, float *dw, int acc);

    /* ---- classifier + softmax + cross-entropy, fused ------------------------------
     * logits = xn·Wclsᵀ [N,V] (xn act), processed in vocabulary or row blocks; per row
     *   loss_n = logsumexp(logits_n) − logits_n[target_n]   (target < 0: row ignored, loss 0).
     * Writes losses[n] (fp32) and *loss_sum = Σ_n loss_n (one double in engine memory,
     * summed in a fixed order).
     * With dxn != NULL also the backward for L = scale·Σ_n loss_n:
     *   dlogits = scale·(softmax − onehot); dxn = dlogits·Wcls (fp32, overwritten);
     *   dWcls += dlogitsᵀ·xn.
     * Never holds the whole [N × V] logits in fp32. */
    void (*cls_loss)(eng *e, const eng_dims *d, const float *xn, const float *wcls,
                     const int32_t *targets, float scale, float *losses, double *loss_sum,
                     float *dxn, float *dwcls, int acc);

    /* ---- optimizer -----------------------------------------------------------------
     * *out = Σ g² over n floats (double accumulation, fixed order: deterministic). */
    void (*sumsq)(eng *e, const float *g, size_t n, double *out);
    /* AdamW (decoupled decay) on n floats, with s = eng_clip_scale(*gsumsq, grad_scale, grad_clip)
     * (gsumsq in engine memory, as sumsq wrote it):  g ← g·s;  m ← β1m + (1−β1)g;
     * v ← β2v + (1−β2)g²;  p ← p·(1 − lr·wd) − lr·(m/(1−β1^t)) / (sqrt(v)/sqrt(1−β2^t) + eps).
     * p lies in an alloc_params region (its mirror is refreshed). */
    void (*adamw)(eng *e, float *p, const float *g, float *m, float *v, size_t n,
                  const eng_adamw_args *a, const double *gsumsq);
    /* Fill n floats with zero. */
    void (*zero)(eng *e, float *p, size_t n);

    /* ---- inference with a KV cache (optional: NULL on engines whose sampling is the host's
     * model/infer.c, which follows llama2.c's run.c) ------------------------------------------
     * infer_open: a decoder over the parameters at `params` (engine memory, model layout) with
     * a KV cache for max_T positions; NULL + fb_err. infer_step: the forward of `token` at
     * position pos (positions fed in order from 0), the logits [V] fp32 into host memory. */
    void *(*infer_open)(eng *e, const model_config *c, const float *params, int max_T);
    void (*infer_step)(eng *e, void *dec, int token, int pos, float *logits);
    void (*infer_close)(eng *e, void *dec);
};

/* ---- the registry ------------------------------------------------------------------- */
/* An engine compiled into this build. */
typedef struct {
    const char *name;
    const char *about;                               /* one line */
    int (*available)(char *why, size_t cap);          /* 1 = can run here; else 0 and why not */
    eng *(*create)(const eng_opts *o);                /* NULL + fb_err */
} eng_backend;

/* The engines of this build, NULL-terminated. */
const eng_backend *const *eng_list(void);
/* By name (NULL = "cpu"); an unknown or unavailable engine is NULL + fb_err saying why. */
eng *eng_create(const char *name, const eng_opts *o);
/* e->peak_gflops, asking the engine on first use. */
double eng_peak_gflops(eng *e);
/* e->run for engines that record nothing: calls fn(ctx). */
void eng_run_direct(eng *e, uint64_t key, void (*fn)(void *ctx), void *ctx);
/* The engine named by FABLE_ENGINE (default "cpu"), for tests that run on any engine. */
const char *eng_default_name(void);

#ifdef __cplusplus
}
#endif
#endif
