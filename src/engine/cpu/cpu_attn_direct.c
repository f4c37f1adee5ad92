/* fable cpu engine — causal attention for small heads, without GEMM calls.
 *
 * Same mathematics as the GEMM-tiled path in cpu_attn.c (see there), for head sizes where a
 * GEMM call per (b, h, row block) is mostly overhead: with HS = 8 (stories260K) a GEMM's
 * K or N is 8, so its 8×32 register tile computes 8 k-steps between C stores or wastes 3/4
 * of its lanes on padding. Here each task transposes its K and V once,
 *   kT[d][u] = K[u][d],  vT[d][u] = V[u][d]   ([HS, Tp], Tp = T rounded up to 16),
 * and every per-row quantity is a loop over the visible keys u ≤ t, vectorised over u
 * (16 keys per AVX-512 vector), with the HS products of each key accumulated in registers:
 *
 * forward, row t:   s_u = scale·Σ_d q_d·kT[d][u];  e = e^(s − max s);  o_d = Σ_u e_u·vT[d][u] / Σ_u e_u
 * backward, row t:  p_u = exp(scale·Σ_d q_d·kT[d][u] − lse_t);  dp_u = Σ_d da_d·vT[d][u]
 *                   Δ = Σ_u p_u·dp_u;  ds_u = p_u·(dp_u − Δ)·scale
 *                   dq_d = Σ_u ds_u·kT[d][u];  dkT[d][u] += q_d·ds_u;  dvT[d][u] += da_d·p_u
 * The backward task owns one (b, kv head g) and all query heads of its group, so dK_g and
 * dV_g are accumulated transposed in its scratch and written once at the end. Fixed order
 * throughout: deterministic. Chosen over the GEMM path for HS ≤ cpu_attn_direct_hs, by
 * measurement (bench/RESULTS.md).
 */
#include <math.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"

static inline int pad16(int n) { return (n + 15) & ~15; }

/* Query rows per block in the backward: their dK/dV contributions are added in one pass */
#ifndef ATT_RB
#define ATT_RB 4
#endif

/* dst[d·Tp + u] = src[u·ld + d] for u < T, d < HS; zero for T ≤ u < Tp (the vector loops
 * read whole 16-key vectors up to Tp and discard the lanes past the row's last key) */
static void transpose_in(const float *src, int ld, int T, int HS, float *dst, int Tp) {
    for (int u = 0; u < T; u++)
        for (int dd = 0; dd < HS; dd++) dst[(size_t)dd * Tp + u] = src[(size_t)u * ld + dd];
    for (int dd = 0; dd < HS; dd++)
        for (int u = T; u < Tp; u++) dst[(size_t)dd * Tp + u] = 0.0f;
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* s_u = scale·Σ_d q_d·kT[d][u] for u < n (rounded up to 16: s and kT hold Tp ≥ that).
 * Four 16-key vectors at a time: four independent FMA chains of length HS. */
static inline void scores(const float *q, const float *kT, int Tp, int HS, int n, float scale, float *s) {
    const __m512 sc = _mm512_set1_ps(scale);
    int u = 0;
    for (; u + 64 <= n + 15; u += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int dd = 0; dd < HS; dd++) {
            const __m512 qd = _mm512_set1_ps(q[dd]);
            const float *kr = kT + (size_t)dd * Tp + u;
            a0 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr), a0);
            a1 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 16), a1);
            a2 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 32), a2);
            a3 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 48), a3);
        }
        _mm512_storeu_ps(s + u, _mm512_mul_ps(a0, sc));
        _mm512_storeu_ps(s + u + 16, _mm512_mul_ps(a1, sc));
        _mm512_storeu_ps(s + u + 32, _mm512_mul_ps(a2, sc));
        _mm512_storeu_ps(s + u + 48, _mm512_mul_ps(a3, sc));
    }
    for (; u < n; u += 16) {
        __m512 a0 = _mm512_setzero_ps();
        for (int dd = 0; dd < HS; dd++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(q[dd]), _mm512_loadu_ps(kT + (size_t)dd * Tp + u), a0);
        _mm512_storeu_ps(s + u, _mm512_mul_ps(a0, sc));
    }
}

/* out_d = Σ_u w_u·xT[d][u] for u < n, d < HS: up to 16 heads' dims at a time, one
 * accumulator each (independent chains), the w vector loaded once per 16 keys; the last
 * partial vector is masked. */
static inline void contract(const float *w, const float *xT, int Tp, int HS, int n, float *out) {
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
    for (int d0 = 0; d0 < HS; d0 += 16) {
        const int nd = HS - d0 < 16 ? HS - d0 : 16;
        __m512 acc[16];
        for (int j = 0; j < nd; j++) acc[j] = _mm512_setzero_ps();
        int u = 0;
        for (; u + 16 <= n; u += 16) {
            const __m512 wv = _mm512_loadu_ps(w + u);
            for (int j = 0; j < nd; j++)
                acc[j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xT + (size_t)(d0 + j) * Tp + u), acc[j]);
        }
        if (u < n) {
            const __m512 wv = _mm512_maskz_loadu_ps(tail, w + u);
            for (int j = 0; j < nd; j++)
                acc[j] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, xT + (size_t)(d0 + j) * Tp + u), acc[j]);
        }
        for (int j = 0; j < nd; j++) out[d0 + j] = _mm512_reduce_add_ps(acc[j]);
    }
}
#else
/* portable forms of the two loops above */
static inline void scores(const float *q, const float *kT, int Tp, int HS, int n, float scale, float *s) {
    for (int u = 0; u < n; u++) s[u] = 0.0f;
    for (int dd = 0; dd < HS; dd++) {
        const float qd = q[dd], *kr = kT + (size_t)dd * Tp;
#pragma omp simd
        for (int u = 0; u < n; u++) s[u] += qd * kr[u];
    }
    for (int u = 0; u < n; u++) s[u] *= scale;
}

static inline void contract(const float *w, const float *xT, int Tp, int HS, int n, float *out) {
    for (int dd = 0; dd < HS; dd++) {
        const float *x = xT + (size_t)dd * Tp;
        float a = 0.0f;
#pragma omp simd reduction(+ : a)
        for (int u = 0; u < n; u++) a += w[u] * x[u];
        out[dd] = a;
    }
}
#endif

void cpu_attn_fwd_direct(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                         float *lse) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD;
    const int group = NH / d->NKV, Tp = pad16(T);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *kT = cpu_thread_scratch(e, ((size_t)2 * HS * Tp + Tp) * sizeof(float));
        float *vT = kT + (size_t)HS * Tp, *s = vT + (size_t)HS * Tp;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int g = h / group;
                transpose_in(k + (size_t)b * T * KVD + g * HS, KVD, T, HS, kT, Tp);
                transpose_in(v + (size_t)b * T * KVD + g * HS, KVD, T, HS, vT, Tp);
                float *l = lse + ((size_t)b * NH + h) * T;
                for (int t = 0; t < T; t++) {
                    const int n = t + 1;
                    float inv, *o = att + (size_t)(b * T + t) * D + h * HS;
                    scores(q + (size_t)(b * T + t) * D + h * HS, kT, Tp, HS, n, scale, s);
                    l[t] = cpu_softmax_causal_row(s, n, n, &inv);   /* e^(s − m), unnormalised */
                    contract(s, vT, Tp, HS, n, o);
                    for (int dd = 0; dd < HS; dd++) o[dd] *= inv;   /* HS multiplies instead of n */
                }
            }
    }
}

void cpu_attn_bwd_direct(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                         const float *da, float *dq, float *dk, float *dv) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD, NKV = d->NKV;
    const int group = NH / NKV, Tp = pad16(T);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *kT = cpu_thread_scratch(e, ((size_t)4 * HS * Tp + 2 * ATT_RB * (size_t)Tp) * sizeof(float));
        float *vT = kT + (size_t)HS * Tp, *dkT = vT + (size_t)HS * Tp, *dvT = dkT + (size_t)HS * Tp;
        float *p = dvT + (size_t)HS * Tp, *dp = p + (size_t)ATT_RB * Tp;   /* [ATT_RB][Tp] each */
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {
                transpose_in(k + (size_t)b * T * KVD + g * HS, KVD, T, HS, kT, Tp);
                transpose_in(v + (size_t)b * T * KVD + g * HS, KVD, T, HS, vT, Tp);
                memset(dkT, 0, (size_t)2 * HS * Tp * sizeof(float)); /* dkT and dvT */
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float *l = lse + ((size_t)b * NH + h) * T;
                    for (int t0 = 0; t0 < T; t0 += ATT_RB) {
                        /* rows t0.. of the block: P and dS over the block's keys u < nb (zero
                         * past each row's own last key), dQ per row */
                        const int rb = T - t0 < ATT_RB ? T - t0 : ATT_RB, nb = t0 + rb;
                        for (int r = 0; r < rb; r++) {
                            const int t = t0 + r, n = t + 1;
                            const size_t row = (size_t)(b * T + t) * D + h * HS;
                            float *pr = p + (size_t)r * Tp, *dpr = dp + (size_t)r * Tp;
                            scores(q + row, kT, Tp, HS, n, scale, pr);
                            scores(da + row, vT, Tp, HS, n, 1.0f, dpr);
                            cpu_softmax_grad_row(pr, dpr, n, nb, l[t], scale);
                            contract(dpr, kT, Tp, HS, n, dq + row);
                        }
                        /* dkT[d][u] += Σ_r q_r[d]·dS_r[u];  dvT[d][u] += Σ_r dA_r[d]·P_r[u]: one pass
                         * over the accumulators per block of rows instead of one per row */
                        for (int dd = 0; dd < HS; dd++) {
                            float qd[ATT_RB] = {0}, ad[ATT_RB] = {0};
                            for (int r = 0; r < rb; r++) {
                                const size_t row = (size_t)(b * T + t0 + r) * D + h * HS;
                                qd[r] = q[row + dd];
                                ad[r] = da[row + dd];
                            }
                            float *dkr = dkT + (size_t)dd * Tp, *dvr = dvT + (size_t)dd * Tp;
                            if (rb == ATT_RB) {
#pragma omp simd
                                for (int u = 0; u < nb; u++) {
                                    float sk = dkr[u], sv = dvr[u];
#pragma GCC unroll 8
                                    for (int r = 0; r < ATT_RB; r++) {
                                        sk += qd[r] * dp[(size_t)r * Tp + u];
                                        sv += ad[r] * p[(size_t)r * Tp + u];
                                    }
                                    dkr[u] = sk;
                                    dvr[u] = sv;
                                }
                            } else {
                                for (int r = 0; r < rb; r++) {
                                    const float *dpr = dp + (size_t)r * Tp, *pr = p + (size_t)r * Tp;
#pragma omp simd
                                    for (int u = 0; u < nb; u++) {
                                        dkr[u] += qd[r] * dpr[u];
                                        dvr[u] += ad[r] * pr[u];
                                    }
                                }
                            }
                        }
                    }
                }
                float *dK = dk + (size_t)b * T * KVD + g * HS, *dV = dv + (size_t)b * T * KVD + g * HS;
                for (int u = 0; u < T; u++)
                    for (int dd = 0; dd < HS; dd++) {
                        dK[(size_t)u * KVD + dd] = dkT[(size_t)dd * Tp + u];
                        dV[(size_t)u * KVD + dd] = dvT[(size_t)dd * Tp + u];
                    }
            }
    }
}
