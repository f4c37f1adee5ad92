/* fable tests — an independent, naive, double-precision Llama-2 forward pass (llama2.c
 * semantics) used as the reference for finite differences and loss checks.
 *
 * It shares nothing with src/ but the parameter layout, which it derives on its own from the
 * documented storage order (model.h; llama2.c's checkpoint order) — the tests check that
 * model_tensors() agrees with refd_layout_make(). Loops are written out one position at a time,
 * straight from the formulas:
 *   x = E[tok]
 *   per layer:  xn = RMSNorm(x)·rms_att;  q = Wq·xn, k = Wk·xn, v = Wv·xn;
 *               RoPE: pairs (2i, 2i+1) of each head rotated by pos / 10000^(2i/HS);
 *               head h attends with kv head h / (NH/NKV), causal, scores q·k/sqrt(HS);
 *               x += Wo·att;  xn = RMSNorm(x)·rms_ffn;  x += W2·(silu(W1·xn) ⊙ W3·xn)
 *   logits = Wcls·(RMSNorm(x)·rms_final);  loss_n = logsumexp(logits) − logits[target]
 *   loss = mean over positions with target >= 0.
 * RMSNorm(x) = x / sqrt(mean(x²) + 1e-5).
 * Dropout: when refd_mask_att / refd_mask_gate are set (multipliers, [L][N·D] and [L][N·F]),
 * att and silu(W1·xn)⊙W3·xn are multiplied by them element by element before Wo and W2. */
#ifndef FABLE_TEST_REF_DOUBLE_H
#define FABLE_TEST_REF_DOUBLE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fable/model.h"

static const double *refd_mask_att, *refd_mask_gate; /* NULL: no dropout */

/* Offsets (in elements) of each tensor in the flat layout. */
typedef struct {
    size_t tok_emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
    size_t total;
} refd_layout;

static inline void refd_layout_make(const model_config *c, refd_layout *o) {
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t V = (size_t)c->vocab_size, KVD = (size_t)c->n_kv_heads * (D / (size_t)c->n_heads);
    size_t p = 0;
    o->tok_emb = p;   p += V * D;
    o->rms_att = p;   p += L * D;
    o->wq = p;        p += L * D * D;
    o->wk = p;        p += L * KVD * D;
    o->wv = p;        p += L * KVD * D;
    o->wo = p;        p += L * D * D;
    o->rms_ffn = p;   p += L * D;
    o->w1 = p;        p += L * F * D;
    o->w2 = p;        p += L * D * F;
    o->w3 = p;        p += L * F * D;
    o->rms_final = p; p += D;
    if (c->tied) o->wcls = o->tok_emb;
    else { o->wcls = p; p += V * D; }
    o->total = p;
}

/* y[r] = Σ_c W[r][c]·x[c], W row-major [rows][cols]. */
static inline void refd_matvec(double *y, const double *W, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static inline void refd_rmsnorm(double *y, const double *x, const double *w, int D) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / D + 1e-5);
    for (int i = 0; i < D; i++) y[i] = x[i] * r * w[i];
}

/* Rotate the pairs (2i, 2i+1) of each of `heads` heads of size HS at position pos. */
static inline void refd_rope(double *v, int heads, int HS, int pos) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < HS / 2; i++) {
            double ang = pos / pow(10000.0, (2.0 * i) / HS);
            double c = cos(ang), s = sin(ang);
            double *a = v + h * HS + 2 * i;
            double x0 = a[0], x1 = a[1];
            a[0] = x0 * c - x1 * s;
            a[1] = x0 * s + x1 * c;
        }
}

/* Mean cross-entropy of the model with parameters p (flat, refd_layout) on tokens/targets
 * [B,T]. Optional outputs: losses [B·T] (0 where target < 0), logits [B·T, V]. Returns NAN
 * if no target is valid. */
static inline double refd_loss(const model_config *c, const double *p, int B, int T,
                               const int32_t *tok, const int32_t *tgt, double *losses,
                               double *logits_out) {
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HS = D / NH, KVD = NKV * HS;
    const int N = B * T;
    refd_layout lo;
    refd_layout_make(c, &lo);
    double *x = malloc(sizeof(double) * (size_t)N * D);
    double *xn = malloc(sizeof(double) * (size_t)N * D);
    double *q = malloc(sizeof(double) * (size_t)N * D);
    double *k = malloc(sizeof(double) * (size_t)N * KVD);
    double *v = malloc(sizeof(double) * (size_t)N * KVD);
    double *att = malloc(sizeof(double) * D);
    double *tmp = malloc(sizeof(double) * (D > F ? D : F));
    double *h1 = malloc(sizeof(double) * F);
    double *h3 = malloc(sizeof(double) * F);
    double *sc = malloc(sizeof(double) * T);
    double *lg = malloc(sizeof(double) * V);

    for (int n = 0; n < N; n++)
        memcpy(x + (size_t)n * D, p + lo.tok_emb + (size_t)tok[n] * D, sizeof(double) * D);

    for (int l = 0; l < L; l++) {
        const double *Wq = p + lo.wq + (size_t)l * D * D, *Wk = p + lo.wk + (size_t)l * KVD * D;
        const double *Wv = p + lo.wv + (size_t)l * KVD * D, *Wo = p + lo.wo + (size_t)l * D * D;
        const double *W1 = p + lo.w1 + (size_t)l * F * D, *W2 = p + lo.w2 + (size_t)l * D * F;
        const double *W3 = p + lo.w3 + (size_t)l * F * D;
        /* attention: q, k, v of every position first (causal attention reads earlier ones) */
        for (int n = 0; n < N; n++) {
            int pos = n % T;
            refd_rmsnorm(xn + (size_t)n * D, x + (size_t)n * D, p + lo.rms_att + (size_t)l * D, D);
            refd_matvec(q + (size_t)n * D, Wq, xn + (size_t)n * D, D, D);
            refd_matvec(k + (size_t)n * KVD, Wk, xn + (size_t)n * D, KVD, D);
            refd_matvec(v + (size_t)n * KVD, Wv, xn + (size_t)n * D, KVD, D);
            refd_rope(q + (size_t)n * D, NH, HS, pos);
            refd_rope(k + (size_t)n * KVD, NKV, HS, pos);
        }
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int n = b * T + t;
                for (int h = 0; h < NH; h++) {
                    int kh = h / (NH / NKV);
                    const double *qh = q + (size_t)n * D + h * HS;
                    double mx = -INFINITY;
                    for (int s = 0; s <= t; s++) {
                        const double *ks = k + (size_t)(b * T + s) * KVD + kh * HS;
                        double dot = 0;
                        for (int i = 0; i < HS; i++) dot += qh[i] * ks[i];
                        sc[s] = dot / sqrt((double)HS);
                        if (sc[s] > mx) mx = sc[s];
                    }
                    double z = 0;
                    for (int s = 0; s <= t; s++) { sc[s] = exp(sc[s] - mx); z += sc[s]; }
                    for (int i = 0; i < HS; i++) {
                        double a = 0;
                        for (int s = 0; s <= t; s++)
                            a += sc[s] / z * v[(size_t)(b * T + s) * KVD + kh * HS + i];
                        att[h * HS + i] = a;
                    }
                }
                if (refd_mask_att)
                    for (int i = 0; i < D; i++) att[i] *= refd_mask_att[((size_t)l * N + n) * D + i];
                refd_matvec(tmp, Wo, att, D, D);
                for (int i = 0; i < D; i++) x[(size_t)n * D + i] += tmp[i];
            }
        /* feed-forward */
        for (int n = 0; n < N; n++) {
            double *xr = x + (size_t)n * D, *xnr = xn + (size_t)n * D;
            refd_rmsnorm(xnr, xr, p + lo.rms_ffn + (size_t)l * D, D);
            refd_matvec(h1, W1, xnr, F, D);
            refd_matvec(h3, W3, xnr, F, D);
            for (int j = 0; j < F; j++) h1[j] = h1[j] / (1.0 + exp(-h1[j])) * h3[j];
            if (refd_mask_gate)
                for (int j = 0; j < F; j++) h1[j] *= refd_mask_gate[((size_t)l * N + n) * F + j];
            refd_matvec(tmp, W2, h1, D, F);
            for (int i = 0; i < D; i++) xr[i] += tmp[i];
        }
    }

    double sum = 0;
    int valid = 0;
    for (int n = 0; n < N; n++) {
        refd_rmsnorm(xn + (size_t)n * D, x + (size_t)n * D, p + lo.rms_final, D);
        refd_matvec(lg, p + lo.wcls, xn + (size_t)n * D, V, D);
        if (logits_out) memcpy(logits_out + (size_t)n * V, lg, sizeof(double) * V);
        double ln = 0;
        if (tgt[n] >= 0) {
            double mx = -INFINITY, z = 0;
            for (int j = 0; j < V; j++) if (lg[j] > mx) mx = lg[j];
            for (int j = 0; j < V; j++) z += exp(lg[j] - mx);
            ln = mx + log(z) - lg[tgt[n]];
            sum += ln;
            valid++;
        }
        if (losses) losses[n] = ln;
    }
    free(x); free(xn); free(q); free(k); free(v); free(att); free(tmp); free(h1); free(h3);
    free(sc); free(lg);
    return valid ? sum / valid : NAN;
}

#endif
