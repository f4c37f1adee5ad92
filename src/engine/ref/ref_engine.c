/* fable — the ref engine: the whole of engine.h in plain scalar C, the oracle.
 *
 * Every kernel is a naive loop over the formula its engine.h comment states, one thread,
 * host memory. Dot products and reductions (matmuls, norms, softmax sums, log-sum-exp, dW
 * sums, sumsq) accumulate in double; every buffer is stored as fp32. It is slow on purpose:
 * every other engine is checked op by op against it (tests/engine/test_engine_ops.c).
 *
 * Notation as in engine.h: N = B·T rows (row n = b·T + t, position t = n mod T), D, F, NH,
 * NKV, HS = D/NH, KVD = NKV·HS, V. Row-major; W [out, in] maps x to W·x.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/engine.h"
#include "fable/model.h"
#include "fable/util.h"

typedef struct {
    double (*sec)[ENG_PH_COUNT]; /* [ENG_MAX_RECORDS][ENG_PH_COUNT] seconds */
    int rec, ph;                 /* the slot being timed (ph = -1: none) */
    double t0;                   /* when it started */
} ref_state;

/* ---- primitives --------------------------------------------------------------------------- */
/* Σ_k a[k·sa]·b[k·sb] over k < n, in double. */
static double dot(const float *a, size_t sa, const float *b, size_t sb, int n) {
    double s = 0;
    for (int k = 0; k < n; k++) s += (double)a[k * sa] * b[k * sb];
    return s;
}

/* Y [N,out] = R + X·Wᵀ:  Y[n][o] = R[n][o] + Σ_i X[n][i]·W[o][i]   (X [N,in], W [out,in];
 * R [N,out] is the residual, or NULL for 0). */
static void mm_xwt(float *Y, const float *X, const float *W, const float *R, int N, int in, int out) {
    for (size_t n = 0; n < (size_t)N; n++)
        for (size_t o = 0; o < (size_t)out; o++)
            Y[n * out + o] = (float)((R ? (double)R[n * out + o] : 0.0) + dot(X + n * in, 1, W + o * in, 1, in));
}

/* dX [N,in] = dY·W:  dX[n][i] = Σ_o dY[n][o]·W[o][i]   (dY [N,out], W [out,in]). */
static void mm_dyw(float *dX, const float *dY, const float *W, int N, int out, int in) {
    for (size_t n = 0; n < (size_t)N; n++)
        for (size_t i = 0; i < (size_t)in; i++) dX[n * in + i] = (float)dot(dY + n * out, 1, W + i, in, out);
}

/* dW [out,in] (+)= dYᵀ·X:  dW[o][i] = (acc ? dW[o][i] : 0) + Σ_n dY[n][o]·X[n][i]. */
static void mm_dw(float *dW, const float *dY, const float *X, int N, int out, int in, int acc) {
    for (size_t o = 0; o < (size_t)out; o++)
        for (size_t i = 0; i < (size_t)in; i++)
            dW[o * in + i] = (float)((acc ? (double)dW[o * in + i] : 0.0) + dot(dY + o, out, X + i, in, N));
}

/* RMSNorm forward, per row n:  r = 1/sqrt(Σ_j x[n][j]²/D + eps);  rstd[n] = r;
 * out[n][j] = x[n][j]·r·w[j]. */
static void rms_fwd(int N, int D, const float *x, const float *w, float *out, float *rstd) {
    for (size_t n = 0; n < (size_t)N; n++) {
        const float *xr = x + n * D;
        double r = 1.0 / sqrt(dot(xr, 1, xr, 1, D) / D + (double)MODEL_RMS_EPS);
        rstd[n] = (float)r;
        for (int j = 0; j < D; j++) out[n * D + j] = (float)(xr[j] * r * w[j]);
    }
}

/* RMSNorm backward, per row n with r = rstd[n], x̂ = x·r, dx̂ = dout⊙w:
 *   dx = R + r·(dx̂ − x̂·mean(dx̂⊙x̂))   (R = the residual dy, or NULL for 0);
 *   dw[j] (+)= Σ_n dout[n][j]·x̂[n][j]. */
static void rms_bwd(int N, int D, const float *x, const float *w, const float *rstd, const float *dout,
                    const float *R, float *dx, float *dw, int acc) {
    for (size_t n = 0; n < (size_t)N; n++) {
        const double r = rstd[n];
        double m = 0;
        for (size_t j = 0; j < (size_t)D; j++) m += (double)dout[n * D + j] * w[j] * (x[n * D + j] * r);
        m /= D;
        for (size_t j = 0; j < (size_t)D; j++)
            dx[n * D + j] = (float)((R ? (double)R[n * D + j] : 0.0) +
                                    r * ((double)dout[n * D + j] * w[j] - x[n * D + j] * r * m));
    }
    for (size_t j = 0; j < (size_t)D; j++) {
        double s = acc ? dw[j] : 0.0;
        for (size_t n = 0; n < (size_t)N; n++) s += (double)dout[n * D + j] * x[n * D + j] * rstd[n];
        dw[j] = (float)s;
    }
}

/* RoPE on every head of x [N, width] (width = heads·HS), in place: row n is at position
 * t = n mod T; pair (2i, 2i+1) of each head, (c, s) = rope[t][i], rotates by sign·angle:
 *   (a, b) → (a·c − b·s', a·s' + b·c),  s' = sign·s   (sign −1 is the backward). */
static void rope_rows(float *x, int N, int T, int width, int HS, const float *rope, int sign) {
    for (size_t n = 0; n < (size_t)N; n++) {
        const float *cs = rope + (size_t)(n % T) * HS;  /* [HS/2][2] */
        for (int h0 = 0; h0 < width; h0 += HS)
            for (int i = 0; i < HS / 2; i++) {
                float *p = x + n * width + h0 + 2 * i;
                const double a = p[0], b = p[1], c = cs[2 * i], s = sign * (double)cs[2 * i + 1];
                p[0] = (float)(a * c - b * s);
                p[1] = (float)(a * s + b * c);
            }
    }
}

static double sigmoid(double a) { return 1.0 / (1.0 + exp(-a)); }

/* ---- engine memory ------------------------------------------------------------------------ */
static void *ref_alloc(eng *e, size_t bytes) { return fb_alloc(bytes); } /* zeroed, 64-aligned */
static float *ref_alloc_params(eng *e, size_t n) { return fb_alloc(n * sizeof(float)); }
static void ref_free(eng *e, void *p) { fb_free(p); }
static size_t ref_mem_available(eng *e) { return fb_mem_available(); }
static void ref_upload(eng *e, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void ref_download(eng *e, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void ref_upload_act(eng *e, float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void ref_download_act(eng *e, float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void ref_sync(eng *e) {}
static double ref_peak(eng *e) { return 0; } /* not measured: ref is not for speed (MFU 0) */

static void ref_destroy(eng *e) {
    if (!e) return;
    ref_state *s = e->impl;
    if (s) free(s->sec);
    free(s);
    free(e);
}

/* ---- timers: host clock; synchronous, so ENG_PH_DW_WAIT stays 0 ----------------------------- */
/* Closes the running slot (adds the time since its mark), then starts (rec, ph). */
static void ref_phase(eng *e, int rec, int ph) {
    ref_state *s = e->impl;
    const double now = fb_now();
    if (s->ph >= 0) s->sec[s->rec][s->ph] += now - s->t0;
    const int ok = ph >= 0 && ph < ENG_PH_COUNT && rec >= 0 && rec < ENG_MAX_RECORDS;
    s->rec = ok ? rec : 0;
    s->ph = ok ? ph : -1;
    s->t0 = now;
}

static void ref_timers(eng *e, int nrec, double (*sec)[ENG_PH_COUNT]) {
    ref_state *s = e->impl;
    if (s->ph >= 0) ref_phase(e, s->rec, s->ph); /* bank the running slot's time so far */
    for (int r = 0; r < nrec && r < ENG_MAX_RECORDS; r++)
        for (int p = 0; p < ENG_PH_COUNT; p++) sec[r][p] += s->sec[r][p];
    memset(s->sec, 0, sizeof(double) * ENG_MAX_RECORDS * ENG_PH_COUNT);
}

/* ---- embedding ---------------------------------------------------------------------------- */
/* x[n,:] = E[tok[n],:]   x [N,D], E [V,D] */
static void ref_embed_fwd(eng *e, const eng_dims *d, float *x, const float *emb, const int32_t *tok) {
    for (size_t n = 0; n < (size_t)d->N; n++) memcpy(x + n * d->D, emb + (size_t)tok[n] * d->D, d->D * sizeof(float));
}

/* dE[tok[n],:] += dx[n,:], n in order (always accumulates) */
static void ref_embed_bwd(eng *e, const eng_dims *d, float *demb, const float *dx, const int32_t *tok) {
    for (size_t n = 0; n < (size_t)d->N; n++)
        for (size_t j = 0; j < (size_t)d->D; j++) demb[(size_t)tok[n] * d->D + j] += dx[n * d->D + j];
}

/* ---- dropout ------------------------------------------------------------------------------ */
/* The multiplier of element i of a site (engine.h): 0 or 1/(1−p); 1 without dropout. */
static double drop_mult(const eng_dims *d, uint32_t site, size_t i) {
    if (!(d->drop_p > 0)) return 1.0;
    return eng_drop_hash(d->drop_seed ^ site, (uint32_t)i) >= eng_drop_thresh(d->drop_p) ? 1.0 / (1.0 - d->drop_p) : 0.0;
}

/* ---- attention half ----------------------------------------------------------------------- */
/* xn = RMSNorm(x)·rms_att; q = RoPE(xn·Wqᵀ), k = RoPE(xn·Wkᵀ), v = xn·Wvᵀ; then for each
 * (b, h, t), with kv head kh = h/(NH/NKV) and t' ≤ t in sequence b:
 *   s_t' = q_t·k_t'/√HS;  lse_t = log Σ_t' exp(s_t');  att_t = Σ_t' exp(s_t' − lse_t)·v_t';
 * att ⊙= mask/(1−p) under dropout;  x_out = x + att·Woᵀ. */
static void ref_attn_fwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope, eng_attn_taps *tp,
                         float *x_out) {
    const int B = d->B, T = d->T, N = d->N, D = d->D, NH = d->NH, HS = d->HS, KVD = d->KVD;
    const double sc = 1.0 / sqrt((double)HS);
    rms_fwd(N, D, tp->x, w->rms_att, tp->xn, tp->rstd);
    mm_xwt(tp->q, tp->xn, w->wq, NULL, N, D, D);
    mm_xwt(tp->k, tp->xn, w->wk, NULL, N, D, KVD);
    mm_xwt(tp->v, tp->xn, w->wv, NULL, N, D, KVD);
    rope_rows(tp->q, N, T, D, HS, rope, +1);
    rope_rows(tp->k, N, T, KVD, HS, rope, +1);
    double *s = malloc(sizeof(double) * T); /* scores of one row */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const size_t kh = h / (NH / d->NKV), row = (size_t)b * T + t;
                const float *q = tp->q + row * D + h * HS;
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= t; u++) {
                    s[u] = dot(q, 1, tp->k + ((size_t)b * T + u) * KVD + kh * HS, 1, HS) * sc;
                    if (s[u] > mx) mx = s[u];
                }
                for (int u = 0; u <= t; u++) sum += exp(s[u] - mx);
                const double lse = mx + log(sum);
                tp->lse[((size_t)b * NH + h) * T + t] = (float)lse;
                for (int i = 0; i < HS; i++) {
                    double a = 0;
                    for (int u = 0; u <= t; u++) a += exp(s[u] - lse) * tp->v[((size_t)b * T + u) * KVD + kh * HS + i];
                    tp->att[row * D + h * HS + i] = (float)(a * drop_mult(d, ENG_DROP_SITE_ATT, row * D + h * HS + i));
                }
            }
    free(s);
    mm_xwt(x_out, tp->att, w->wo, tp->x, N, D, D);
}

/* da = dy·Wo (⊙ mask/(1−p) under dropout); per (b, h, t), t' ≤ t:  P = exp(q_t·k_t'/√HS − lse_t), dP = da_t·v_t',
 * Δ_t = Σ_t' P⊙dP, dS = P(dP − Δ_t)/√HS;  dq_t += dS·k_t',  dk_t' += dS·q_t,  dv_t' += P·da_t
 * (dk, dv summed over the NH/NKV query heads of a kv head); then dq, dk rotated by −angle. */
static void ref_attn_bwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope,
                         const eng_attn_taps *tp, const float *dy, eng_attn_grads *g) {
    const int B = d->B, T = d->T, N = d->N, D = d->D, NH = d->NH, HS = d->HS, KVD = d->KVD;
    const double sc = 1.0 / sqrt((double)HS);
    mm_dyw(g->da, dy, w->wo, N, D, D);
    for (size_t i = 0; i < (size_t)N * D; i++) g->da[i] = (float)(g->da[i] * drop_mult(d, ENG_DROP_SITE_ATT, i));
    double *P = malloc(sizeof(double) * T), *dP = malloc(sizeof(double) * T);
    double *dq = calloc((size_t)N * D, sizeof(double)), *dk = calloc((size_t)N * KVD, sizeof(double)),
           *dv = calloc((size_t)N * KVD, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const size_t kh = h / (NH / d->NKV), qo = ((size_t)b * T + t) * D + h * HS;
                const double lse = tp->lse[((size_t)b * NH + h) * T + t];
                double delta = 0;
                for (int u = 0; u <= t; u++) {
                    const size_t ko = ((size_t)b * T + u) * KVD + kh * HS;
                    P[u] = exp(dot(tp->q + qo, 1, tp->k + ko, 1, HS) * sc - lse);
                    dP[u] = dot(g->da + qo, 1, tp->v + ko, 1, HS);
                    delta += P[u] * dP[u];
                }
                for (int u = 0; u <= t; u++) {
                    const size_t ko = ((size_t)b * T + u) * KVD + kh * HS;
                    const double dS = P[u] * (dP[u] - delta) * sc;
                    for (int i = 0; i < HS; i++) {
                        dq[qo + i] += dS * tp->k[ko + i];
                        dk[ko + i] += dS * tp->q[qo + i];
                        dv[ko + i] += P[u] * g->da[qo + i];
                    }
                }
            }
    for (size_t i = 0; i < (size_t)N * D; i++) g->dq[i] = (float)dq[i];
    for (size_t i = 0; i < (size_t)N * KVD; i++) g->dk[i] = (float)dk[i], g->dv[i] = (float)dv[i];
    rope_rows(g->dq, N, T, D, HS, rope, -1);
    rope_rows(g->dk, N, T, KVD, HS, rope, -1);
    free(P), free(dP), free(dq), free(dk), free(dv);
}

/* dxn = dq·Wq + dk·Wk + dv·Wv; then RMSNorm backward: dx = dy + ..., rms_att (+)= Σ dxn⊙x̂. */
static void ref_qkv_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_attn_taps *tp, const float *dy,
                        eng_attn_grads *g, float *dx, model_layer *grad, int acc) {
    const size_t N = d->N, D = d->D, KVD = d->KVD;
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < D; i++)
            g->dxn[n * D + i] = (float)(dot(g->dq + n * D, 1, w->wq + i, D, D) + dot(g->dk + n * KVD, 1, w->wk + i, D, KVD) +
                                        dot(g->dv + n * KVD, 1, w->wv + i, D, KVD));
    rms_bwd(N, D, tp->x, w->rms_att, tp->rstd, g->dxn, dy, dx, grad->rms_att, acc);
}

/* dWo (+)= dyᵀ·att; dWq (+)= dqᵀ·xn; dWk (+)= dkᵀ·xn; dWv (+)= dvᵀ·xn. */
static void ref_attn_dw(eng *e, const eng_dims *d, const eng_attn_taps *tp, const float *dy, const eng_attn_grads *g,
                        model_layer *grad, int acc) {
    mm_dw(grad->wo, dy, tp->att, d->N, d->D, d->D, acc);
    mm_dw(grad->wq, g->dq, tp->xn, d->N, d->D, d->D, acc);
    mm_dw(grad->wk, g->dk, tp->xn, d->N, d->KVD, d->D, acc);
    mm_dw(grad->wv, g->dv, tp->xn, d->N, d->KVD, d->D, acc);
}

/* ---- FFN half ----------------------------------------------------------------------------- */
/* xn = RMSNorm(x)·rms_ffn; h1 = xn·W1ᵀ, h3 = xn·W3ᵀ [N,F]; gate = silu(h1)⊙h3,
 * silu(a) = a·σ(a) (⊙ mask/(1−p) under dropout); x_out = x + gate·W2ᵀ. */
static void ref_ffn_fwd(eng *e, const eng_dims *d, const model_layer *w, eng_ffn_taps *tp, float *x_out) {
    const int N = d->N, D = d->D, F = d->F;
    rms_fwd(N, D, tp->x, w->rms_ffn, tp->xn, tp->rstd);
    mm_xwt(tp->h1, tp->xn, w->w1, NULL, N, D, F);
    mm_xwt(tp->h3, tp->xn, w->w3, NULL, N, D, F);
    for (size_t i = 0; i < (size_t)N * F; i++) {
        const double a = tp->h1[i];
        tp->gate[i] = (float)(a * sigmoid(a) * tp->h3[i] * drop_mult(d, ENG_DROP_SITE_GATE, i));
    }
    mm_xwt(x_out, tp->gate, w->w2, tp->x, N, F, D);
}

/* dgate = dy·W2 (⊙ mask/(1−p) under dropout); dh1 = dgate⊙h3⊙silu'(h1), silu'(a) = σ(a)(1 + a(1−σ(a))); dh3 = dgate⊙silu(h1);
 * dxn = dh1·W1 + dh3·W3; RMSNorm backward: dx = dy + ..., rms_ffn (+)= Σ dxn⊙x̂. */
static void ref_ffn_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_ffn_taps *tp, const float *dy,
                        eng_ffn_grads *g, float *dx, model_layer *grad, int acc) {
    const size_t N = d->N, D = d->D, F = d->F;
    mm_dyw(g->dgate, dy, w->w2, N, D, F);
    for (size_t i = 0; i < N * F; i++) {
        const double a = tp->h1[i], sg = sigmoid(a), dgate = g->dgate[i] * drop_mult(d, ENG_DROP_SITE_GATE, i);
        g->dh1[i] = (float)(dgate * tp->h3[i] * sg * (1.0 + a * (1.0 - sg)));
        g->dh3[i] = (float)(dgate * a * sg);
    }
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < D; i++)
            g->dxn[n * D + i] = (float)(dot(g->dh1 + n * F, 1, w->w1 + i, D, F) + dot(g->dh3 + n * F, 1, w->w3 + i, D, F));
    rms_bwd(N, D, tp->x, w->rms_ffn, tp->rstd, g->dxn, dy, dx, grad->rms_ffn, acc);
}

/* dW2 (+)= dyᵀ·gate; dW1 (+)= dh1ᵀ·xn; dW3 (+)= dh3ᵀ·xn. */
static void ref_ffn_dw(eng *e, const eng_dims *d, const eng_ffn_taps *tp, const float *dy, const eng_ffn_grads *g,
                       model_layer *grad, int acc) {
    mm_dw(grad->w2, dy, tp->gate, d->N, d->D, d->F, acc);
    mm_dw(grad->w1, g->dh1, tp->xn, d->N, d->F, d->D, acc);
    mm_dw(grad->w3, g->dh3, tp->xn, d->N, d->F, d->D, acc);
}

/* ---- final RMSNorm ------------------------------------------------------------------------ */
static void ref_rmsnorm_fwd(eng *e, int N, int D, const float *x, const float *w, float *out, float *rstd) {
    rms_fwd(N, D, x, w, out, rstd);
}

static void ref_rmsnorm_bwd(eng *e, int N, int D, const float *x, const float *w, const float *rstd,
                            const float *dout, float *dx, float *dw, int acc) {
    rms_bwd(N, D, x, w, rstd, dout, NULL, dx, dw, acc);
}

/* ---- classifier + softmax + cross-entropy ----------------------------------------------------
 * Pass 1, a row n at a time: logit[v] = xn_n·Wcls_v [V]; lse_n = log Σ_v exp(logit[v]);
 *   loss_n = lse_n − logit[target_n] (0 when target_n < 0); *loss_sum = Σ_n loss_n in row order;
 *   backward: dlogit[v] = scale·(exp(logit[v] − lse_n) − [v = target_n]) (0 for an ignored row),
 *   dxn_n = Σ_v dlogit[v]·Wcls_v.
 * Pass 2, a vocabulary row v at a time (logits recomputed, so nothing [N × V] is held):
 *   dWcls_v (+)= Σ_n dlogit_n[v]·xn_n — every row written, in double. */
static void ref_cls_loss(eng *e, const eng_dims *d, const float *xn, const float *wcls, const int32_t *targets,
                         float scale, float *losses, double *loss_sum, float *dxn, float *dwcls, int acc) {
    const size_t N = d->N, D = d->D, V = d->V;
    double *logit = malloc(sizeof(double) * V), *lse = malloc(sizeof(double) * N), *dl = malloc(sizeof(double) * N);
    double sum = 0;
    for (size_t n = 0; n < N; n++) {
        double mx = -INFINITY, z = 0;
        for (size_t v = 0; v < V; v++) {
            logit[v] = dot(xn + n * D, 1, wcls + v * D, 1, D);
            if (logit[v] > mx) mx = logit[v];
        }
        for (size_t v = 0; v < V; v++) z += exp(logit[v] - mx);
        lse[n] = mx + log(z);
        const double loss = targets[n] < 0 ? 0.0 : lse[n] - logit[targets[n]];
        if (losses) losses[n] = (float)loss;
        sum += loss;
        if (!dxn) continue;
        double *dlogit = logit; /* overwritten in place: logit[v] is read before dlogit[v] is written */
        for (size_t v = 0; v < V; v++)
            dlogit[v] = targets[n] < 0 ? 0.0 : scale * (exp(logit[v] - lse[n]) - (v == (size_t)targets[n]));
        for (size_t i = 0; i < D; i++) {
            double s = 0;
            for (size_t v = 0; v < V; v++) s += dlogit[v] * wcls[v * D + i];
            dxn[n * D + i] = (float)s;
        }
    }
    if (loss_sum) *loss_sum = sum;
    if (dxn && dwcls)
        for (size_t v = 0; v < V; v++) {
            for (size_t n = 0; n < N; n++)
                dl[n] = targets[n] < 0 ? 0.0
                                       : scale * (exp(dot(xn + n * D, 1, wcls + v * D, 1, D) - lse[n]) -
                                                  (v == (size_t)targets[n]));
            for (size_t i = 0; i < D; i++) {
                double s = acc ? dwcls[v * D + i] : 0.0;
                for (size_t n = 0; n < N; n++) s += dl[n] * xn[n * D + i];
                dwcls[v * D + i] = (float)s;
            }
        }
    free(logit), free(lse), free(dl);
}

/* ---- optimizer ---------------------------------------------------------------------------- */
/* *out = Σ_i g[i]², i in order, in double. */
static void ref_sumsq(eng *e, const float *g, size_t n, double *out) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    *out = s;
}

/* AdamW, in fp32, op for op as the cpu engine (so the two agree bit for bit):
 *   g ← g·s (s = eng_clip_scale); m ← β1m + (1−β1)g; v ← β2v + (1−β2)g²;
 *   p ← p·(1 − lr·wd) − (lr/(1−β1^t))·m / (sqrt(v)·(1/sqrt(1−β2^t)) + eps). */
static void ref_adamw(eng *e, float *p, const float *g, float *m, float *v, size_t n, const eng_adamw_args *a,
                      const double *gsumsq) {
    const float s = eng_clip_scale(*gsumsq, a->grad_scale, a->grad_clip);
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
    const float bc1 = 1.0f - powf(b1, (float)a->step), bc2 = 1.0f - powf(b2, (float)a->step);
    const float decay = 1.0f - a->lr * a->weight_decay, lr_bc1 = a->lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * s;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - lr_bc1 * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

static void ref_zero(eng *e, float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

/* ---- creation ----------------------------------------------------------------------------- */
static int ref_available(char *why, size_t cap) { return 1; }

static eng *ref_create(const eng_opts *o) {
    if (o && o->precision == ENG_BF16) {
        fb_err("the ref engine computes in fp32 only");
        return NULL;
    }
    eng *e = calloc(1, sizeof *e);
    ref_state *s = calloc(1, sizeof *s);
    double (*sec)[ENG_PH_COUNT] = calloc(ENG_MAX_RECORDS, sizeof *sec);
    if (!e || !s || !sec) {
        free(e), free(s), free(sec);
        fb_err("out of memory creating the ref engine");
        return NULL;
    }
    *s = (ref_state){.sec = sec, .rec = 0, .ph = -1, .t0 = 0};
    *e = (eng){
        .name = "ref", .threads = 1, .precision = ENG_FP32, .dw_async = 0, .act_bytes = 4, .dropout = 1,
        .device = "host CPU, 1 thread, scalar", .peak_gflops = 0, .impl = s,
        .alloc = ref_alloc, .alloc_params = ref_alloc_params, .free = ref_free,
        .mem_available = ref_mem_available, .upload = ref_upload, .download = ref_download,
        .upload_act = ref_upload_act, .download_act = ref_download_act, .sync = ref_sync,
        .destroy = ref_destroy, .peak = ref_peak, .phase = ref_phase, .timers = ref_timers,
        .run = eng_run_direct,
        .embed_fwd = ref_embed_fwd, .embed_bwd = ref_embed_bwd,
        .attn_fwd = ref_attn_fwd, .attn_bwd = ref_attn_bwd, .qkv_bwd = ref_qkv_bwd, .attn_dw = ref_attn_dw,
        .ffn_fwd = ref_ffn_fwd, .ffn_bwd = ref_ffn_bwd, .ffn_dw = ref_ffn_dw,
        .rmsnorm_fwd = ref_rmsnorm_fwd, .rmsnorm_bwd = ref_rmsnorm_bwd, .cls_loss = ref_cls_loss,
        .sumsq = ref_sumsq, .adamw = ref_adamw, .zero = ref_zero,
    };
    return e;
}

const eng_backend eng_backend_ref = {"ref", "plain scalar C, the oracle every engine is checked against; slow",
                                     ref_available, ref_create};
