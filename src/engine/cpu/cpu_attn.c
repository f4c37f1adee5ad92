/* fable cpu engine — the attention half of a layer: fwdAttn, sdpaBwd (1+2), qkvBwd, dW.
 *
 * Causal attention per (batch b, query head h), kv head g = h / (NH/NKV):
 *   s[t,u] = q_t·k_u / √HS  (u ≤ t),  P = softmax_u(s),  o_t = Σ_u P[t,u] v_u
 * The forward saves lse[t] = logsumexp_u s[t,u]; the backward recomputes
 * P[t,u] = exp(s[t,u] − lse[t]) row by row, so memory and time are O(T²) per head
 * and no T×T matrix is stored.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "fable/util.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* att[b,t,h,:] and lse[b,h,t] from roped q [N,D], k,v [N,KVD]. */
static void attention_fwd(const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                          float *lse) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD;
    const int group = d->NH / d->NKV;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *sc = malloc((size_t)T * sizeof(float));
        if (!sc) fb_die("out of memory in attention");
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int g = h / group;
                for (int t = 0; t < T; t++) {
                    const float *qt = q + (size_t)(b * T + t) * D + h * HS;
                    float m = -INFINITY;
                    for (int u = 0; u <= t; u++) {
                        float s = dot(qt, k + (size_t)(b * T + u) * KVD + g * HS, HS) * scale;
                        sc[u] = s;
                        if (s > m) m = s;
                    }
                    float sum = 0.0f;
                    for (int u = 0; u <= t; u++) {
                        sc[u] = expf(sc[u] - m);
                        sum += sc[u];
                    }
                    const float inv = 1.0f / sum;
                    float *o = att + (size_t)(b * T + t) * D + h * HS;
                    memset(o, 0, HS * sizeof(float));
                    for (int u = 0; u <= t; u++) axpy(o, sc[u] * inv, v + (size_t)(b * T + u) * KVD + g * HS, HS);
                    lse[((size_t)b * NH + h) * T + t] = m + logf(sum);
                }
            }
        free(sc);
    }
}

void cpu_attn_fwd(eng *e, const eng_dims *d, const eng_layer *w, const float *rope, eng_attn_taps *tp,
                  float *x_out) {
    const int N = d->N, D = d->D, KVD = d->KVD;
    cpu_rmsnorm_rows(N, D, tp->x, w->rms_att, tp->xn, tp->rstd);
    mm_nt(N, D, D, tp->xn, D, w->wq, D, 0.0f, tp->q, D);
    mm_nt(N, KVD, D, tp->xn, D, w->wk, D, 0.0f, tp->k, KVD);
    mm_nt(N, KVD, D, tp->xn, D, w->wv, D, 0.0f, tp->v, KVD);
    cpu_rope(tp->q, N, d->T, d->NH, d->HS, rope, 0);
    cpu_rope(tp->k, N, d->T, d->NKV, d->HS, rope, 0);
    attention_fwd(d, tp->q, tp->k, tp->v, tp->att, tp->lse);
    if (x_out != tp->x) memcpy(x_out, tp->x, (size_t)N * D * sizeof(float));
    mm_nt(N, D, D, tp->att, D, w->wo, D, 1.0f, x_out, D); /* x_out = x + att·Woᵀ */
}

/* sdpaBwd: per (b, kv head g), over the query heads h of its group (so dk, dv of g are
 * written by one task only: no races, fixed order).
 *   P[t,u] = exp(s[t,u] − lse[t]);  dP[t,u] = da_t·v_u;  Δ_t = Σ_u P[t,u]dP[t,u]
 *   dS[t,u] = P[t,u](dP[t,u] − Δ_t)/√HS;  dq_t = Σ_u dS[t,u] k_u;  dk_u += dS[t,u] q_t;
 *   dv_u += P[t,u] da_t */
static void attention_bwd(const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                          const float *da, float *dq, float *dk, float *dv) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD, NKV = d->NKV;
    const int group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *p = malloc((size_t)T * 2 * sizeof(float));
        if (!p) fb_die("out of memory in attention backward");
        float *dp = p + T;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {
                for (int t = 0; t < T; t++) {
                    memset(dk + (size_t)(b * T + t) * KVD + g * HS, 0, HS * sizeof(float));
                    memset(dv + (size_t)(b * T + t) * KVD + g * HS, 0, HS * sizeof(float));
                }
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int t = 0; t < T; t++) {
                        const size_t rt = (size_t)(b * T + t);
                        const float *qt = q + rt * D + h * HS, *dat = da + rt * D + h * HS;
                        const float l = lse[((size_t)b * NH + h) * T + t];
                        float delta = 0.0f;
                        for (int u = 0; u <= t; u++) {
                            const size_t ru = (size_t)(b * T + u) * KVD + g * HS;
                            p[u] = expf(dot(qt, k + ru, HS) * scale - l);
                            dp[u] = dot(dat, v + ru, HS);
                            delta += p[u] * dp[u];
                        }
                        float *dqt = dq + rt * D + h * HS;
                        memset(dqt, 0, HS * sizeof(float));
                        for (int u = 0; u <= t; u++) {
                            const size_t ru = (size_t)(b * T + u) * KVD + g * HS;
                            const float ds = p[u] * (dp[u] - delta) * scale;
                            axpy(dqt, ds, k + ru, HS);
                            axpy(dk + ru, ds, qt, HS);
                            axpy(dv + ru, p[u], dat, HS);
                        }
                    }
            }
        free(p);
    }
}

void cpu_attn_bwd(eng *e, const eng_dims *d, const eng_layer *w, const float *rope, const eng_attn_taps *tp,
                  const float *dy, eng_attn_grads *g) {
    const int N = d->N, D = d->D;
    mm_nn(N, D, D, dy, D, w->wo, D, 0.0f, g->da, D); /* da = dy·Wo */
    attention_bwd(d, tp->q, tp->k, tp->v, tp->lse, g->da, g->dq, g->dk, g->dv);
    cpu_rope(g->dq, N, d->T, d->NH, d->HS, rope, 1);
    cpu_rope(g->dk, N, d->T, d->NKV, d->HS, rope, 1);
}

void cpu_qkv_bwd(eng *e, const eng_dims *d, const eng_layer *w, const eng_attn_taps *tp, const float *dy,
                 eng_attn_grads *g, float *dx, eng_layer *grad) {
    const int N = d->N, D = d->D, KVD = d->KVD;
    mm_nn(N, D, D, g->dq, D, w->wq, D, 0.0f, g->dxn, D);    /* dxn  = dq·Wq */
    mm_nn(N, D, KVD, g->dk, KVD, w->wk, D, 1.0f, g->dxn, D); /* dxn += dk·Wk */
    mm_nn(N, D, KVD, g->dv, KVD, w->wv, D, 1.0f, g->dxn, D); /* dxn += dv·Wv */
    cpu_rmsnorm_bwd_rows(N, D, tp->x, w->rms_att, tp->rstd, g->dxn, dy, dx, grad->rms_att);
}

void cpu_attn_dw(eng *e, const eng_dims *d, const eng_attn_taps *tp, const float *dy, const eng_attn_grads *g,
                 eng_layer *grad) {
    const int N = d->N, D = d->D, KVD = d->KVD;
    mm_tn_acc(D, D, N, dy, D, tp->att, D, grad->wo, D);     /* dWo += dyᵀ·att */
    mm_tn_acc(D, D, N, g->dq, D, tp->xn, D, grad->wq, D);   /* dWq += dqᵀ·xn */
    mm_tn_acc(KVD, D, N, g->dk, KVD, tp->xn, D, grad->wk, D);
    mm_tn_acc(KVD, D, N, g->dv, KVD, tp->xn, D, grad->wv, D);
}
