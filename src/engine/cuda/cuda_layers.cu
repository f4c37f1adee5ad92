/* fable cuda engine — the kernels of engine.h, each a short sequence of cuBLASLt products and
 * fused kernels on the main stream (weight gradients: on the side stream, cu_dw_begin/end).
 *
 * Every function is a template on the act type A (float or bf16, engine.h "act" buffers);
 * matrix operands are A too: activations directly, weights through their bf16 mirror
 * (cu_mirror) in bf16 mode, residual gradients dy through a bf16 copy (cu_dy_act). Products
 * accumulate in fp32; those that feed a residual stream or a gradient write fp32. Shapes as in
 * engine.h: N rows, D, F, KVD, V. */
#include "engine/cuda/cuda_internal.cuh"
#include "engine/cuda/cuda_layers.cuh"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "fable/util.h"
}

template <typename A> struct act_info;
template <> struct act_info<float> { static const int type = CU_F32; };
template <> struct act_info<bf16> { static const int type = CU_BF16; };

/* weight w as a matrix operand of type A */
template <typename A> static const A *W(cu_state *st, const float *w);
template <> const float *W<float>(cu_state *st, const float *w) { return w; }
template <> const bf16 *W<bf16>(cu_state *st, const float *w) {
    const bf16 *m = cu_mirror(st, w);
    if (!m) fb_die("cuda engine: a weight outside parameter memory (allocate parameters with alloc_params)");
    return m;
}

#define SPAN(p, n) cu_span{(const void *)(p), (size_t)(n)}

/* ---- attention half ----------------------------------------------------------------------- */
/* xn = RMSNorm(x)·rms_att; q,k,v = xn·Wq/k/vᵀ; RoPE(q, k); att = attention; x_out = x + att·Woᵀ */
template <typename A>
static void attn_fwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope, eng_attn_taps *t,
                     float *x_out) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, KVD = d->KVD, ab = act_info<A>::type;
    const size_t as = sizeof(A);
    cu_span wr[] = {SPAN(t->rstd, N * 4), SPAN(t->xn, (size_t)N * D * as), SPAN(t->q, (size_t)N * D * as),
                    SPAN(t->k, (size_t)N * KVD * as), SPAN(t->v, (size_t)N * KVD * as),
                    SPAN(t->att, (size_t)N * D * as), SPAN(t->lse, (size_t)N * d->NH * 4), SPAN(x_out, (size_t)N * D * 4)};
    cu_main_hazard(st, wr, 8, NULL, 0);
    cudaStream_t s = st->main;
    A *xn = (A *)t->xn, *q = (A *)t->q, *k = (A *)t->k, *v = (A *)t->v, *att = (A *)t->att;
    cu_rmsnorm_fwd<A>(s, N, D, t->x, w->rms_att, xn, t->rstd);
    cu_gemm(st, s, st->ws_main, 0, 1, N, D, D, xn, D, W<A>(st, w->wq), D, ab, NULL, q, D, ab, 1, 0);
    cu_gemm(st, s, st->ws_main, 0, 1, N, KVD, D, xn, D, W<A>(st, w->wk), D, ab, NULL, k, KVD, ab, 1, 0);
    cu_gemm(st, s, st->ws_main, 0, 1, N, KVD, D, xn, D, W<A>(st, w->wv), D, ab, NULL, v, KVD, ab, 1, 0);
    cu_rope<A>(s, q, N, d->T, d->NH, d->HS, rope, 0);
    cu_rope<A>(s, k, N, d->T, d->NKV, d->HS, rope, 0);
    cu_attn_fwd<A>(s, d, q, k, v, att, t->lse);
    cu_gemm(st, s, st->ws_main, 0, 1, N, D, D, att, D, W<A>(st, w->wo), D, ab, t->x, x_out, D, CU_F32, 1, 1);
}

/* da = dy·Wo; flash backward → dq, dk, dv; inverse RoPE on dq, dk */
template <typename A>
static void attn_bwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope, const eng_attn_taps *t,
                     const float *dy, eng_attn_grads *g) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, KVD = d->KVD, ab = act_info<A>::type;
    const size_t as = sizeof(A);
    const A *dya = (const A *)cu_dy_act(st, dy, (size_t)N * D, 1);
    cu_span wr[] = {SPAN(g->da, (size_t)N * D * as), SPAN(g->dq, (size_t)N * D * as), SPAN(g->dk, (size_t)N * KVD * as),
                    SPAN(g->dv, (size_t)N * KVD * as)};
    cu_main_hazard(st, wr, 4, NULL, 0);
    cudaStream_t s = st->main;
    A *da = (A *)g->da, *dq = (A *)g->dq, *dk = (A *)g->dk, *dv = (A *)g->dv;
    cu_gemm(st, s, st->ws_main, 0, 0, N, D, D, dya, D, W<A>(st, w->wo), D, ab, NULL, da, D, ab, 1, 0);
    float *delta = (float *)cu_scratch(st, CU_SCR_DELTA, (size_t)N * d->NH * sizeof(float));
    cu_attn_bwd<A>(s, d, (const A *)t->q, (const A *)t->k, (const A *)t->v, (const A *)t->att, t->lse, da, dq, dk, dv,
                   delta);
    cu_rope<A>(s, dq, N, d->T, d->NH, d->HS, rope, 1);
    cu_rope<A>(s, dk, N, d->T, d->NKV, d->HS, rope, 1);
}

/* dxn = dq·Wq + dk·Wk + dv·Wv (fp32); RMSNorm backward into dx = dy + ...; d rms_att (+)= */
template <typename A>
static void qkv_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_attn_taps *t, const float *dy,
                    eng_attn_grads *g, float *dx, model_layer *grad, int acc) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, KVD = d->KVD, ab = act_info<A>::type;
    cu_span wr[] = {SPAN(g->dxn, (size_t)N * D * 4), SPAN(dx, (size_t)N * D * 4), SPAN(grad->rms_att, D * 4)};
    cu_main_hazard(st, wr, 3, NULL, 0);
    cudaStream_t s = st->main;
    cu_gemm(st, s, st->ws_main, 0, 0, N, D, D, g->dq, D, W<A>(st, w->wq), D, ab, NULL, g->dxn, D, CU_F32, 1, 0);
    cu_gemm(st, s, st->ws_main, 0, 0, N, D, KVD, g->dk, KVD, W<A>(st, w->wk), D, ab, g->dxn, g->dxn, D, CU_F32, 1, 1);
    cu_gemm(st, s, st->ws_main, 0, 0, N, D, KVD, g->dv, KVD, W<A>(st, w->wv), D, ab, g->dxn, g->dxn, D, CU_F32, 1, 1);
    cu_rmsnorm_bwd(st, s, N, D, t->x, w->rms_att, t->rstd, g->dxn, dy, dx, cu_dy_fill(st, dx, (size_t)N * D),
                   grad->rms_att, acc);
}

/* dWo (+)= dyᵀ·att; dWq (+)= dqᵀ·xn; dWk (+)= dkᵀ·xn; dWv (+)= dvᵀ·xn (side stream) */
template <typename A>
static void attn_dw(eng *e, const eng_dims *d, const eng_attn_taps *t, const float *dy, const eng_attn_grads *g,
                    model_layer *grad, int acc) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, KVD = d->KVD, ab = act_info<A>::type;
    const size_t as = sizeof(A);
    const A *dya = (const A *)cu_dy_act(st, dy, (size_t)N * D, 0);
    void *ws;
    cudaStream_t s = cu_dw_begin(st, &ws);
    const float beta = acc ? 1.0f : 0.0f;
    cu_gemm(st, s, ws, 1, 0, D, D, N, dya, D, t->att, D, ab, grad->wo, grad->wo, D, CU_F32, 1, beta);
    cu_gemm(st, s, ws, 1, 0, D, D, N, g->dq, D, t->xn, D, ab, grad->wq, grad->wq, D, CU_F32, 1, beta);
    cu_gemm(st, s, ws, 1, 0, KVD, D, N, g->dk, KVD, t->xn, D, ab, grad->wk, grad->wk, D, CU_F32, 1, beta);
    cu_gemm(st, s, ws, 1, 0, KVD, D, N, g->dv, KVD, t->xn, D, ab, grad->wv, grad->wv, D, CU_F32, 1, beta);
    cu_span wr[] = {SPAN(grad->wo, (size_t)D * D * 4), SPAN(grad->wq, (size_t)D * D * 4),
                    SPAN(grad->wk, (size_t)KVD * D * 4), SPAN(grad->wv, (size_t)KVD * D * 4)};
    cu_span rd[] = {SPAN(dya, (size_t)N * D * as), SPAN(t->att, (size_t)N * D * as), SPAN(t->xn, (size_t)N * D * as),
                    SPAN(g->dq, (size_t)N * D * as), SPAN(g->dk, (size_t)N * KVD * as), SPAN(g->dv, (size_t)N * KVD * as)};
    cu_dw_end(st, wr, 4, rd, 6);
}

/* ---- FFN half ----------------------------------------------------------------------------------- */
/* xn = RMSNorm(x)·rms_ffn; h1 = xn·W1ᵀ; h3 = xn·W3ᵀ; gate = silu(h1)⊙h3; x_out = x + gate·W2ᵀ */
template <typename A>
static void ffn_fwd(eng *e, const eng_dims *d, const model_layer *w, eng_ffn_taps *t, float *x_out) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, F = d->F, ab = act_info<A>::type;
    const size_t as = sizeof(A);
    cu_span wr[] = {SPAN(t->rstd, N * 4), SPAN(t->xn, (size_t)N * D * as), SPAN(t->h1, (size_t)N * F * as),
                    SPAN(t->h3, (size_t)N * F * as), SPAN(t->gate, (size_t)N * F * as), SPAN(x_out, (size_t)N * D * 4)};
    cu_main_hazard(st, wr, 6, NULL, 0);
    cudaStream_t s = st->main;
    A *xn = (A *)t->xn, *h1 = (A *)t->h1, *h3 = (A *)t->h3, *gate = (A *)t->gate;
    cu_rmsnorm_fwd<A>(s, N, D, t->x, w->rms_ffn, xn, t->rstd);
    cu_gemm(st, s, st->ws_main, 0, 1, N, F, D, xn, D, W<A>(st, w->w1), D, ab, NULL, h1, F, ab, 1, 0);
    cu_gemm(st, s, st->ws_main, 0, 1, N, F, D, xn, D, W<A>(st, w->w3), D, ab, NULL, h3, F, ab, 1, 0);
    cu_swiglu_fwd<A>(s, (size_t)N * F, h1, h3, gate);
    cu_gemm(st, s, st->ws_main, 0, 1, N, D, F, gate, F, W<A>(st, w->w2), F, ab, t->x, x_out, D, CU_F32, 1, 1);
}

/* dgate = dy·W2; dh1, dh3 (SwiGLU backward); dxn = dh1·W1 + dh3·W3; RMSNorm backward */
template <typename A>
static void ffn_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_ffn_taps *t, const float *dy,
                    eng_ffn_grads *g, float *dx, model_layer *grad, int acc) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, F = d->F, ab = act_info<A>::type;
    const size_t as = sizeof(A);
    const A *dya = (const A *)cu_dy_act(st, dy, (size_t)N * D, 1);
    cu_span wr[] = {SPAN(g->dgate, (size_t)N * F * 4), SPAN(g->dh1, (size_t)N * F * as),
                    SPAN(g->dh3, (size_t)N * F * as), SPAN(g->dxn, (size_t)N * D * 4), SPAN(dx, (size_t)N * D * 4),
                    SPAN(grad->rms_ffn, D * 4)};
    cu_main_hazard(st, wr, 6, NULL, 0);
    cudaStream_t s = st->main;
    A *dh1 = (A *)g->dh1, *dh3 = (A *)g->dh3;
    A *dgate = (A *)g->dgate; /* act type: in bf16 mode the product's bf16 output */
    cu_gemm(st, s, st->ws_main, 0, 0, N, F, D, dya, D, W<A>(st, w->w2), F, ab, NULL, dgate, F, ab, 1, 0);
    cu_swiglu_bwd<A>(s, (size_t)N * F, dgate, (const A *)t->h1, (const A *)t->h3, dh1, dh3);
    cu_gemm(st, s, st->ws_main, 0, 0, N, D, F, dh1, F, W<A>(st, w->w1), D, ab, NULL, g->dxn, D, CU_F32, 1, 0);
    cu_gemm(st, s, st->ws_main, 0, 0, N, D, F, dh3, F, W<A>(st, w->w3), D, ab, g->dxn, g->dxn, D, CU_F32, 1, 1);
    cu_rmsnorm_bwd(st, s, N, D, t->x, w->rms_ffn, t->rstd, g->dxn, dy, dx, cu_dy_fill(st, dx, (size_t)N * D),
                   grad->rms_ffn, acc);
}

/* dW2 (+)= dyᵀ·gate; dW1 (+)= dh1ᵀ·xn; dW3 (+)= dh3ᵀ·xn (side stream) */
template <typename A>
static void ffn_dw(eng *e, const eng_dims *d, const eng_ffn_taps *t, const float *dy, const eng_ffn_grads *g,
                   model_layer *grad, int acc) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, F = d->F, ab = act_info<A>::type;
    const size_t as = sizeof(A);
    const A *dya = (const A *)cu_dy_act(st, dy, (size_t)N * D, 0);
    void *ws;
    cudaStream_t s = cu_dw_begin(st, &ws);
    const float beta = acc ? 1.0f : 0.0f;
    cu_gemm(st, s, ws, 1, 0, D, F, N, dya, D, t->gate, F, ab, grad->w2, grad->w2, F, CU_F32, 1, beta);
    cu_gemm(st, s, ws, 1, 0, F, D, N, g->dh1, F, t->xn, D, ab, grad->w1, grad->w1, D, CU_F32, 1, beta);
    cu_gemm(st, s, ws, 1, 0, F, D, N, g->dh3, F, t->xn, D, ab, grad->w3, grad->w3, D, CU_F32, 1, beta);
    cu_span wr[] = {SPAN(grad->w2, (size_t)D * F * 4), SPAN(grad->w1, (size_t)F * D * 4), SPAN(grad->w3, (size_t)F * D * 4)};
    cu_span rd[] = {SPAN(dya, (size_t)N * D * as), SPAN(t->gate, (size_t)N * F * as), SPAN(t->xn, (size_t)N * D * as),
                    SPAN(g->dh1, (size_t)N * F * as), SPAN(g->dh3, (size_t)N * F * as)};
    cu_dw_end(st, wr, 3, rd, 5);
}

/* ---- final RMSNorm --------------------------------------------------------------------------------- */
template <typename A>
static void rmsnorm_fwd(eng *e, int N, int D, const float *x, const float *w, float *out, float *rstd) {
    cu_state *st = cu_st(e);
    cu_span wr[] = {SPAN(out, (size_t)N * D * sizeof(A)), SPAN(rstd, N * 4)};
    cu_main_hazard(st, wr, 2, NULL, 0);
    cu_rmsnorm_fwd<A>(st->main, N, D, x, w, (A *)out, rstd);
}

static void rmsnorm_bwd(eng *e, int N, int D, const float *x, const float *w, const float *rstd, const float *dout,
                        float *dx, float *dw, int acc) {
    cu_state *st = cu_st(e);
    cu_span wr[] = {SPAN(dx, (size_t)N * D * 4), SPAN(dw, D * 4)};
    cu_main_hazard(st, wr, 2, NULL, 0);
    cu_rmsnorm_bwd(st, st->main, N, D, x, w, rstd, dout, NULL, dx, cu_dy_fill(st, dx, (size_t)N * D), dw, acc);
}

/* ---- embedding ----------------------------------------------------------------------------------- */
static void embed_fwd(eng *e, const eng_dims *d, float *x, const float *emb, const int32_t *tok) {
    cu_state *st = cu_st(e);
    cu_span wr[] = {SPAN(x, (size_t)d->N * d->D * 4)};
    cu_main_hazard(st, wr, 1, NULL, 0);
    cu_embed_fwd(st->main, d->N, d->D, x, emb, tok);
}

static void embed_bwd(eng *e, const eng_dims *d, float *demb, const float *dx, const int32_t *tok) {
    cu_state *st = cu_st(e);
    cu_span wr[] = {SPAN(demb, (size_t)d->V * d->D * 4)};
    cu_main_hazard(st, wr, 1, NULL, 0);
    cu_embed_bwd(st, st->main, d->N, d->D, d->V, demb, dx, tok);
}

/* ---- classifier + softmax + cross-entropy ----------------------------------------------------------
 * Row chunks of R rows: logits [R, V] = xn·Wclsᵀ (fp32, or in bf16 mode the product's bf16
 * output unless FABLE_CUDA_CLS_LOGITS=fp32); per row loss and dl = scale·(softmax − onehot) in
 * act type (over the bf16 logits in place); dxn = dl·Wcls; dWcls (+)= dlᵀ·xn. R keeps the logits
 * chunk at ≤ 1 GB. */
static int cls_logits_bf16(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("FABLE_CUDA_CLS_LOGITS");
        v = !(e && !strcmp(e, "fp32"));
    }
    return v;
}

template <typename A>
static void cls_loss(eng *e, const eng_dims *d, const float *xn, const float *wcls, const int32_t *targets,
                     float scale, float *losses, double *loss_sum, float *dxn, float *dwcls, int acc) {
    cu_state *st = cu_st(e);
    const int N = d->N, D = d->D, V = d->V, ab = act_info<A>::type;
    cu_span wr[] = {SPAN(losses, N * 4), SPAN(loss_sum, 8), SPAN(dxn, dxn ? (size_t)N * D * 4 : 0),
                    SPAN(dwcls, dwcls ? (size_t)V * D * 4 : 0)};
    cu_main_hazard(st, wr, 4, NULL, 0);
    cudaStream_t s = st->main;
    const int lb = sizeof(A) == 2 && cls_logits_bf16(); /* logits in bf16, dl written over them */
    const size_t lsz = lb ? 2 : 4;
    long R = (1L << 30) / ((long)V * (long)lsz); /* a multiple of 128 rows keeps chunks aligned */
    if (R >= 128) R -= R % 128;
    if (R > N) R = N;
    if (R < 1) R = 1;
    void *logits = cu_scratch(st, CU_SCR_CLS_LOGITS, (size_t)R * V * lsz);
    A *dl = !dxn ? NULL : lb ? (A *)logits : (A *)cu_scratch(st, CU_SCR_CLS_DL, (size_t)R * V * sizeof(A));
    const A *x = (const A *)xn, *wc = W<A>(st, wcls);
    for (long r0 = 0; r0 < N; r0 += R) {
        const int rows = (int)(N - r0 < R ? N - r0 : R);
        cu_gemm(st, s, st->ws_main, 0, 1, rows, V, D, x + r0 * D, D, wc, D, ab, NULL, logits, V, lb ? CU_BF16 : CU_F32,
                1, 0);
        if (lb) cu_softmax_xent<bf16, A>(s, rows, V, (const bf16 *)logits, targets + r0, scale, losses + r0, dl);
        else cu_softmax_xent<float, A>(s, rows, V, (const float *)logits, targets + r0, scale, losses + r0, dl);
        if (dxn) {
            cu_gemm(st, s, st->ws_main, 0, 0, rows, D, V, dl, V, wc, D, ab, NULL, dxn + r0 * D, D, CU_F32, 1, 0);
            const float beta = (acc || r0 > 0) ? 1.0f : 0.0f;
            cu_gemm(st, s, st->ws_main, 1, 0, V, D, rows, dl, V, x + r0 * D, D, ab, dwcls, dwcls, D, CU_F32, 1, beta);
        }
    }
    cu_sum(s, losses, N, loss_sum);
}

/* ---- optimizer --------------------------------------------------------------------------------------- */
static void sumsq(eng *e, const float *g, size_t n, double *out) {
    cu_state *st = cu_st(e);
    cu_span wr[] = {SPAN(out, 8)}, rd[] = {SPAN(g, n * 4)};
    cu_main_hazard(st, wr, 1, rd, 1);
    cu_sumsq(st, st->main, g, n, out);
}

static void adamw(eng *e, float *p, const float *g, float *m, float *v, size_t n, const eng_adamw_args *a,
                  const double *gsumsq) {
    cu_state *st = cu_st(e);
    cu_span wr[] = {SPAN(p, n * 4), SPAN(m, n * 4), SPAN(v, n * 4)}, rd[] = {SPAN(g, n * 4)};
    cu_main_hazard(st, wr, 3, rd, 1);
    cu_adamw(st->main, p, (bf16 *)cu_mirror(st, p), g, m, v, n, a, gsumsq);
}

/* ---- the table --------------------------------------------------------------------------------------- */
template <typename A> static void install(eng *e) {
    e->attn_fwd = attn_fwd<A>;
    e->attn_bwd = attn_bwd<A>;
    e->qkv_bwd = qkv_bwd<A>;
    e->attn_dw = attn_dw<A>;
    e->ffn_fwd = ffn_fwd<A>;
    e->ffn_bwd = ffn_bwd<A>;
    e->ffn_dw = ffn_dw<A>;
    e->rmsnorm_fwd = rmsnorm_fwd<A>;
    e->cls_loss = cls_loss<A>;
}

void cu_layers_install(eng *e) {
    if (cu_st(e)->is_bf16) install<bf16>(e);
    else install<float>(e);
    e->rmsnorm_bwd = rmsnorm_bwd;
    e->embed_fwd = embed_fwd;
    e->embed_bwd = embed_bwd;
    e->sumsq = sumsq;
    e->adamw = adamw;
    cu_infer_install(e);
}
