/* fable cpu engine — the attention half of a layer: fwdAttn, sdpaBwd (1+2), qkvBwd, dW.
 *
 * Causal attention per (batch b, query head h), kv head g = h / (NH/NKV):
 *   s[t,u] = q_t·k_u / √HS  (u ≤ t),  P = softmax_u(s),  o_t = Σ_u P[t,u] v_u
 * The forward saves lse[t] = logsumexp_u s[t,u]; the backward recomputes
 * P[t,u] = exp(s[t,u] − lse[t]) row by row, so memory and time are O(T²) per head
 * and no T×T matrix is kept between calls (one TB×T tile per thread while working).
 * cpu_attn_core_fwd/bwd pick the path by head size: up to cpu_attn_direct_hs dimensions the
 * direct kernels of cpu_attn_direct.c, 32/48/64 the register tiles of cpu_attn_tiles.c, any
 * other the GEMM-tiled code here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"
#include "fable/util.h"

/* Causal blocks: query rows are taken TB = cpu_attn_block at a time (64; FABLE_ATTN_BLOCK
 * overrides, which the tests use to cut T = 16 into blocks); a block of rows [r0, r0 + rb)
 * only attends to keys [0, r0 + rb), so every product below runs on that many columns
 * instead of T: for T = 256 and TB = 64 the scores and P·V cost 10/16 of the full square. */
int cpu_attn_block = 64;
#define ATT_TB cpu_attn_block
int cpu_attn_direct_hs = 16;

/* Per (b, h) and row block the attention is two small GEMMs on a TB×T scratch tile S
 * (one per thread):
 *   S = Q_blk·K[0:nc]ᵀ/√HS;  P = causal softmax rows of S (in place, zero above the
 *   diagonal);  O_blk = P·V[0:nc],   nc = r0 + rb.
 * Q_h is a [T, HS] view with row stride D into q; K_g, V_g are views with stride KVD.
 * The GEMMs run single-threaded inside the parallel region; the (b, h) pairs are the
 * parallel dimension. */
static void attention_fwd(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                          float *lse) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD;
    const int group = d->NH / d->NKV;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *S = cpu_thread_scratch(e, (size_t)ATT_TB * T * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int g = h / group;
                const float *Q = q + (size_t)b * T * D + h * HS;
                const float *K = k + (size_t)b * T * KVD + g * HS;
                const float *V = v + (size_t)b * T * KVD + g * HS;
                float *l = lse + ((size_t)b * NH + h) * T;
                for (int r0 = 0; r0 < T; r0 += ATT_TB) {
                    const int rb = T - r0 < ATT_TB ? T - r0 : ATT_TB, nc = r0 + rb;
                    gemm_f32(0, 1, rb, nc, HS, scale, Q + (size_t)r0 * D, D, K, KVD, 0.0f, S, nc);
                    for (int i = 0; i < rb; i++) l[r0 + i] = cpu_softmax_causal_row(S + (size_t)i * nc, r0 + i + 1, nc, NULL);
                    gemm_f32(0, 0, rb, HS, nc, 1.0f, S, nc, V, KVD, 0.0f, att + (size_t)(b * T + r0) * D + h * HS, D);
                }
            }
    }
}

/* The attention core by head size: direct kernels for small heads, register tiles where
 * they fit, else the GEMM-tiled code above. */
void cpu_attn_core_fwd(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                       float *lse) {
    if (d->HS <= cpu_attn_direct_hs) cpu_attn_fwd_direct(e, d, q, k, v, att, lse);
    else if (cpu_attn_tiles && cpu_attn_tiles_fit(d->HS)) cpu_attn_fwd_tiles(e, d, q, k, v, att, lse);
    else attention_fwd(e, d, q, k, v, att, lse);
}

void cpu_attn_fwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope, eng_attn_taps *tp,
                  float *x_out) {
    const int N = d->N, D = d->D, KVD = d->KVD;
    cpu_rmsnorm_rows(N, D, tp->x, w->rms_att, tp->xn, tp->rstd);
    mm_nt(N, D, D, tp->xn, D, w->wq, D, 0.0f, tp->q, D);
    mm_nt(N, KVD, D, tp->xn, D, w->wk, D, 0.0f, tp->k, KVD);
    mm_nt(N, KVD, D, tp->xn, D, w->wv, D, 0.0f, tp->v, KVD);
    cpu_rope(tp->q, N, d->T, d->NH, d->HS, rope, 0);
    cpu_rope(tp->k, N, d->T, d->NKV, d->HS, rope, 0);
    cpu_attn_core_fwd(e, d, tp->q, tp->k, tp->v, tp->att, tp->lse);
    if (d->drop_p > 0) cpu_dropout_mul((size_t)N * D, tp->att, d->drop_seed ^ ENG_DROP_SITE_ATT, d->drop_p);
    if (x_out != tp->x) cpu_copy_floats(x_out, tp->x, (size_t)N * D);
    mm_nt(N, D, D, tp->att, D, w->wo, D, 1.0f, x_out, D); /* x_out = x + att·Woᵀ */
}

/* sdpaBwd: per (b, kv head g), over the query heads h of its group (so dK_g, dV_g are
 * written by one task only: no races, fixed order), and per causal row block (nc = r0 + rb
 * keys), with two TB×T tiles per thread:
 *   P = exp(Q_blk·K[0:nc]ᵀ/√HS − lse) (causal, zero above the diagonal)
 *   dV[0:nc] += Pᵀ·dA_blk;   dP = dA_blk·V[0:nc]ᵀ;   Δ_t = Σ_u P[t,u]·dP[t,u]
 *   dS = P⊙(dP − Δ)/√HS;   dQ_blk = dS·K[0:nc];   dK[0:nc] += dSᵀ·Q_blk
 * Row blocks run last to first, so the first product into dK_g, dV_g (beta 0) covers all T
 * rows and the later, shorter ones add onto initialised rows. */
static void attention_bwd(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                          const float *da, float *dq, float *dk, float *dv) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD, NKV = d->NKV;
    const int group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
    const int nblk = (T + ATT_TB - 1) / ATT_TB;
#pragma omp parallel
    {
        float *P = cpu_thread_scratch(e, (size_t)2 * ATT_TB * T * sizeof(float));
        float *dP = P + (size_t)ATT_TB * T;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {
                const float *K = k + (size_t)b * T * KVD + g * HS;
                const float *V = v + (size_t)b * T * KVD + g * HS;
                float *dK = dk + (size_t)b * T * KVD + g * HS;
                float *dV = dv + (size_t)b * T * KVD + g * HS;
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float *Q = q + (size_t)b * T * D + h * HS;
                    const float *dA = da + (size_t)b * T * D + h * HS;
                    const float *l = lse + ((size_t)b * NH + h) * T;
                    for (int bi = nblk - 1; bi >= 0; bi--) {
                        const int r0 = bi * ATT_TB, rb = T - r0 < ATT_TB ? T - r0 : ATT_TB, nc = r0 + rb;
                        const float beta = h == g * group && bi == nblk - 1 ? 0.0f : 1.0f;
                        const float *Qb = Q + (size_t)r0 * D, *dAb = dA + (size_t)r0 * D;
                        gemm_f32(0, 1, rb, nc, HS, scale, Qb, D, K, KVD, 0.0f, P, nc);
                        gemm_f32(0, 1, rb, nc, HS, 1.0f, dAb, D, V, KVD, 0.0f, dP, nc);
                        for (int i = 0; i < rb; i++)
                            cpu_softmax_grad_row(P + (size_t)i * nc, dP + (size_t)i * nc, r0 + i + 1, nc, l[r0 + i], scale);
                        gemm_f32(1, 0, nc, HS, rb, 1.0f, P, nc, dAb, D, beta, dV, KVD);
                        gemm_f32(0, 0, rb, HS, nc, 1.0f, dP, nc, K, KVD, 0.0f, dq + (size_t)(b * T + r0) * D + h * HS, D);
                        gemm_f32(1, 0, nc, HS, rb, 1.0f, dP, nc, Qb, D, beta, dK, KVD);
                    }
                }
            }
    }
}

void cpu_attn_core_bwd(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                       const float *o, float o_keep, const float *da, float *dq, float *dk, float *dv) {
    if (d->HS <= cpu_attn_direct_hs) cpu_attn_bwd_direct(e, d, q, k, v, lse, o, o_keep, da, dq, dk, dv);
    else if (cpu_attn_tiles && cpu_attn_tiles_fit(d->HS)) cpu_attn_bwd_tiles(e, d, q, k, v, lse, da, dq, dk, dv);
    else attention_bwd(e, d, q, k, v, lse, da, dq, dk, dv);
}

void cpu_attn_bwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope, const eng_attn_taps *tp,
                  const float *dy, eng_attn_grads *g) {
    const int N = d->N, D = d->D;
    mm_nn(N, D, D, dy, D, w->wo, D, 0.0f, g->da, D); /* da = dy·Wo (⊙ mask/(1−p) under dropout) */
    if (d->drop_p > 0) cpu_dropout_mul((size_t)N * D, g->da, d->drop_seed ^ ENG_DROP_SITE_ATT, d->drop_p);
    /* Δ from att: with dropout both att and da carry mask/(1 − p), so Σ da·att is Δ/(1 − p) */
    cpu_attn_core_bwd(e, d, tp->q, tp->k, tp->v, tp->lse, tp->att, 1.0f - d->drop_p, g->da, g->dq, g->dk, g->dv);
    cpu_rope(g->dq, N, d->T, d->NH, d->HS, rope, 1);
    cpu_rope(g->dk, N, d->T, d->NKV, d->HS, rope, 1);
}

void cpu_qkv_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_attn_taps *tp, const float *dy,
                 eng_attn_grads *g, float *dx, model_layer *grad, int acc) {
    const int N = d->N, D = d->D, KVD = d->KVD;
    mm_nn(N, D, D, g->dq, D, w->wq, D, 0.0f, g->dxn, D);    /* dxn  = dq·Wq */
    mm_nn(N, D, KVD, g->dk, KVD, w->wk, D, 1.0f, g->dxn, D); /* dxn += dk·Wk */
    mm_nn(N, D, KVD, g->dv, KVD, w->wv, D, 1.0f, g->dxn, D); /* dxn += dv·Wv */
    cpu_rmsnorm_bwd_rows(N, D, tp->x, w->rms_att, tp->rstd, g->dxn, dy, dx, grad->rms_att, acc);
}

void cpu_attn_dw(eng *e, const eng_dims *d, const eng_attn_taps *tp, const float *dy, const eng_attn_grads *g,
                 model_layer *grad, int acc) {
    const int N = d->N, D = d->D, KVD = d->KVD;
    const float beta = acc ? 1.0f : 0.0f;
    mm_tn(D, D, N, dy, D, tp->att, D, beta, grad->wo, D);     /* dWo += dyᵀ·att */
    mm_tn(D, D, N, g->dq, D, tp->xn, D, beta, grad->wq, D);   /* dWq += dqᵀ·xn */
    mm_tn(KVD, D, N, g->dk, KVD, tp->xn, D, beta, grad->wk, D);
    mm_tn(KVD, D, N, g->dv, KVD, tp->xn, D, beta, grad->wv, D);
}
