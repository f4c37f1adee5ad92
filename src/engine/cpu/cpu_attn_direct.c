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
 *                   (given the forward's output o, Δ = Σ_d da_d·o_d instead, and p and ds are
 *                   formed in the products' registers: scores_ep; else a pass per row finds Δ)
 *                   dq_d = Σ_u ds_u·kT[d][u];  dkT[d][u] += q_d·ds_u;  dvT[d][u] += da_d·p_u
 * Rows go in blocks. The scores of 4 rows at a time share each load of kT (scores_rows).
 * Each task lays out K and V once per kv head, for all the query heads of its group.
 * The backward task owns one (b, kv head g), so dK_g and dV_g are accumulated transposed
 * in its scratch and written once at the end, 16 query rows (ATT_RB) per pass over them.
 * When HS is a multiple of 8 (accum_kv), the pass keeps a 16-key × 8-dim slice of both in
 * registers across the block's rows.
 * For HS = 8 or 16, the two products over keys run on a register tile over V and K laid
 * out as interleaved key pairs (interleave_pairs), with no per-dimension reductions:
 *   O = P·V in the forward, 8 rows at a time (ATT_FB);
 *   dQ = dS·K in the backward, 8 rows at a time.
 * Fixed order throughout: deterministic. Chosen over the GEMM path for HS ≤
 * cpu_attn_direct_hs, by measurement (bench/RESULTS.md).
 */
#include <math.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"
#include "engine/cpu/simd_transpose.h"

static inline int pad16(int n) { return (n + 15) & ~15; }

/* Query rows per block in the backward: their dK/dV contributions are added in one pass.
 * With the accumulators in registers (accum_kv), 16 rows ran the 260K backward core 30%
 * faster than 4 and as fast as 32 (bench/RESULTS.md, session 5). */
#ifndef ATT_RB
#define ATT_RB 16
#endif
/* Query rows per block of the forward's P·V register tile (≤ 8) */
#define ATT_FB 8

/* dst[c·ldd + r] = src[r·lds + c], r < rows, c < cols (8×8 register blocks where the
 * target has AVX2: the element loop ran at ~1 ns per element, 8% of the backward) */
static void transpose(const float *src, int lds, int rows, int cols, float *dst, int ldd) {
#if defined(__AVX2__)
    fb_transpose(src, lds, rows, cols, dst, ldd);
#else
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
#endif
}

/* dst[d·Tp + u] = src[u·ld + d] for u < T, d < HS; zero for T ≤ u < Tp (the vector loops
 * read whole 16-key vectors up to Tp and discard the lanes past the row's last key) */
static void transpose_in(const float *src, int ld, int T, int HS, float *dst, int Tp) {
    transpose(src, ld, T, HS, dst, Tp);
    for (int dd = 0; dd < HS; dd++)
        for (int u = T; u < Tp; u++) dst[(size_t)dd * Tp + u] = 0.0f;
}

/* Key pairs interleaved by dimension: xi[p·2HS + 2d + j] = X[2p + j][d] (j = 0, 1; zero for
 * keys ≥ T), p < Tp/2. In this layout a block of rows contracts on a register tile:
 *   out_r[d] = scl_r · Σ_u w_r[u]·X[u][d]
 * takes per key pair one load of 2·HS floats (shared by the rows) and per row one broadcast of
 * the pair (w_r[2p], w_r[2p+1]) as a double, lane 2d + j of the accumulator summing key 2p + j
 * of dim d; the two halves are added once per row at the end (no per-dim reductions). */
static int pairs_fit(int HS) { return HS == 8 || HS == 16; }

static void interleave_pairs(const float *src, int ld, int T, int HS, float *dst, int Tp) {
#if defined(__AVX2__)
    if (HS % 8 == 0) {   /* per 8 dims of a pair: unpack the two rows, then put the halves in order */
        for (int p = 0; p < Tp / 2; p++) {
            const int u = 2 * p;
            for (int d0 = 0; d0 < HS; d0 += 8) {
                const __m256 a = u < T ? _mm256_loadu_ps(src + (size_t)u * ld + d0) : _mm256_setzero_ps();
                const __m256 b = u + 1 < T ? _mm256_loadu_ps(src + (size_t)(u + 1) * ld + d0) : _mm256_setzero_ps();
                const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
                float *o = dst + (size_t)p * 2 * HS + 2 * d0;
                _mm256_storeu_ps(o, _mm256_permute2f128_ps(lo, hi, 0x20));
                _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            }
        }
        return;
    }
#endif
    for (int p = 0; p < Tp / 2; p++)
        for (int j = 0; j < 2; j++) {
            const int u = 2 * p + j;
            for (int dd = 0; dd < HS; dd++) dst[(size_t)p * 2 * HS + 2 * dd + j] = u < T ? src[(size_t)u * ld + dd] : 0.0f;
        }
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* lanes of the 16 keys from u that row t sees (u' ≤ t): all, some, or none */
static inline __mmask16 visible16(int u, int t) {
    const int k = t + 1 - u;
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1u);
}

/* Scores of R query rows at once (rows of x ldx apart, of out lds apart) for the keys u < n,
 * rounded up to 16 (out and kT hold Tp ≥ that), 64 keys × R rows per step: each kT vector is
 * loaded once for all R rows (one row at a time loaded it R times: 5 loads per 4 FMAs instead of
 * 2 per 4 at R = 4); the last vectors of a row run as R independent chains. What is stored:
 *   EP_S:  out_r[u] = scale·Σ_d x_r[d]·kT[d][u]   (the forward; rows past their own last key
 *          get scores too, which the softmax that follows zeroes)
 * and, for the backward's two products over keys, the softmax gradient applied in registers
 * (R query rows t0..):
 *   EP_P:  out_r[u] = e^(scale·Σ_d x_r[d]·kT[d][u] − c_r)      (c_r = lse of row t0 + r)
 *          and 0 for the keys u > t0 + r the row does not see;
 *   EP_DS: out_r[u] = scale·p_r[u]·(Σ_d x_r[d]·kT[d][u] − c_r)  (c_r = Δ of the row, p_r the
 *          row's P above) and 0 past the row's keys (set, not computed: where a diverging
 *          run's dP overflows, 0·∞ would be NaN; the run must stop on its loss instead)
 * With Δ_t = Σ_u P[t][u]·dP[t][u] = Σ_d dA[t][d]·O[t][d] known beforehand (O, the forward's
 * output: FlashAttention-2's identity), P and dS need no pass of their own over the rows:
 * scores, exponential and gradient run on the 64-key tiles while they are in registers.
 * Rounding matters where a diverging run saturates the softmax (scores ~1e12, one-hot P): the
 * exponent is round(scale·s) − lse, the forward's own rounded score (a fused multiply-subtract
 * differed from it by ~1e5 there, and e^(1e5) made the gradient NaN), and Δ sums its products
 * with fmaf in the order of the dP lanes, so that a one-hot row gives dS = 0 exactly, as the
 * pass over P·dP did. */
enum { EP_S, EP_P, EP_DS };
static inline __attribute__((always_inline)) void scores_ep_r(const int R, const int ep, const float *x, size_t ldx,
                                                              const float *kT, int Tp, int HS, int n, float scale,
                                                              const float *c, int t0, const float *pm, float *out,
                                                              size_t lds) {
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 cv[4];
    for (int r = 0; r < R; r++) cv[r] = ep == EP_S ? _mm512_setzero_ps() : _mm512_set1_ps(c[r]);
    int u = 0;
    for (; u + 64 <= n + 15; u += 64) {
        __m512 a[4][4];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) a[r][j] = _mm512_setzero_ps();
        for (int dd = 0; dd < HS; dd++) {
            const float *kr = kT + (size_t)dd * Tp + u;
            const __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16), k2 = _mm512_loadu_ps(kr + 32),
                         k3 = _mm512_loadu_ps(kr + 48);
            for (int r = 0; r < R; r++) {
                const __m512 xd = _mm512_set1_ps(x[r * ldx + dd]);
                a[r][0] = _mm512_fmadd_ps(xd, k0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(xd, k1, a[r][1]);
                a[r][2] = _mm512_fmadd_ps(xd, k2, a[r][2]);
                a[r][3] = _mm512_fmadd_ps(xd, k3, a[r][3]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) {
                const int uj = u + 16 * j;
                __m512 o;
                if (ep == EP_S)
                    o = _mm512_mul_ps(a[r][j], sc);
                else if (ep == EP_P)
                    o = _mm512_maskz_mov_ps(visible16(uj, t0 + r), fb_expf_le0_v16(_mm512_sub_ps(_mm512_mul_ps(a[r][j], sc), cv[r])));
                else   /* masked too: 0·∞ past the row's keys would be NaN (an overflowing dP) */
                    o = _mm512_maskz_mul_ps(visible16(uj, t0 + r), _mm512_loadu_ps(pm + r * lds + uj),
                                            _mm512_mul_ps(_mm512_sub_ps(a[r][j], cv[r]), sc));
                _mm512_storeu_ps(out + r * lds + uj, o);
            }
    }
    for (; u < n; u += 16) {
        __m512 a[4];
        for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
        for (int dd = 0; dd < HS; dd++) {
            const __m512 kv = _mm512_loadu_ps(kT + (size_t)dd * Tp + u);
            for (int r = 0; r < R; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + dd]), kv, a[r]);
        }
        for (int r = 0; r < R; r++) {
            __m512 o;
            if (ep == EP_S)
                o = _mm512_mul_ps(a[r], sc);
            else if (ep == EP_P)
                o = _mm512_maskz_mov_ps(visible16(u, t0 + r), fb_expf_le0_v16(_mm512_sub_ps(_mm512_mul_ps(a[r], sc), cv[r])));
            else
                o = _mm512_maskz_mul_ps(visible16(u, t0 + r), _mm512_loadu_ps(pm + r * lds + u),
                                        _mm512_mul_ps(_mm512_sub_ps(a[r], cv[r]), sc));
            _mm512_storeu_ps(out + r * lds + u, o);
        }
    }
}

/* any number of rows, 4 at a time (rows t0, t0 + 1, ...; c, pm, out follow them; c and pm
 * unused, may be NULL, for EP_S) */
static void scores_ep(int R, int ep, const float *x, size_t ldx, const float *kT, int Tp, int HS, int n, float scale,
                      const float *c, int t0, const float *pm, float *out, size_t lds) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        const float *xr = x + r0 * ldx, *cr = c ? c + r0 : NULL, *pr = pm ? pm + r0 * lds : NULL;
        float *o = out + r0 * lds;
        const int m = R - r0 < 4 ? R - r0 : 4;
#define SE(k, E) case k: scores_ep_r(k, E, xr, ldx, kT, Tp, HS, n, scale, cr, t0 + r0, pr, o, lds); break;
#define SE4(E) switch (m) { SE(1, E) SE(2, E) SE(3, E) SE(4, E) }
        if (ep == EP_S) SE4(EP_S) else if (ep == EP_P) SE4(EP_P) else SE4(EP_DS)
#undef SE4
#undef SE
    }
}
#define HAVE_SCORES_EP 1

/* the forward's scores */
static void scores_rows(int R, const float *x, size_t ldx, const float *kT, int Tp, int HS, int n, float scale,
                        float *s, size_t lds) {
    scores_ep(R, EP_S, x, ldx, kT, Tp, HS, n, scale, NULL, 0, NULL, s, lds);
}

/* The dK/dV terms of a block of rb query rows (x = their q rows, y = their dA rows, ld apart):
 *   dkT[d][u] += Σ_r x_r[d]·dS_r[u],   dvT[d][u] += Σ_r y_r[d]·P_r[u]     (u < nb, d < HS)
 * For each 16-key vector and 8 dims, the 16 accumulators stay in registers over the rows:
 * per row 2 loads and 16 FMAs whose broadcasts come straight from x and y. (A pass per dim
 * reloaded every dS and P row for each dim and the accumulators once per dim: 2.5 memory
 * operations per FMA instead of ~1.6.) HS a multiple of 8; rows r ≥ rb are not read. */
static void accum_kv(int rb, const float *x, const float *y, size_t ld, const float *ds, const float *pm, int Tp,
                     int HS, int nb, float *dkT, float *dvT) {
    for (int u = 0; u < nb; u += 16) {
        const __mmask16 k = fb_lanes(u, nb);
        for (int d0 = 0; d0 < HS; d0 += 8) {
            __m512 ak[8], av[8];
            for (int j = 0; j < 8; j++) {
                ak[j] = _mm512_maskz_loadu_ps(k, dkT + (size_t)(d0 + j) * Tp + u);
                av[j] = _mm512_maskz_loadu_ps(k, dvT + (size_t)(d0 + j) * Tp + u);
            }
            for (int r = 0; r < rb; r++) {
                const __m512 dsr = _mm512_maskz_loadu_ps(k, ds + (size_t)r * Tp + u);
                const __m512 pr = _mm512_maskz_loadu_ps(k, pm + (size_t)r * Tp + u);
                const float *xr = x + r * ld + d0, *yr = y + r * ld + d0;
                for (int j = 0; j < 8; j++) {
                    ak[j] = _mm512_fmadd_ps(_mm512_set1_ps(xr[j]), dsr, ak[j]);
                    av[j] = _mm512_fmadd_ps(_mm512_set1_ps(yr[j]), pr, av[j]);
                }
            }
            for (int j = 0; j < 8; j++) {
                _mm512_mask_storeu_ps(dkT + (size_t)(d0 + j) * Tp + u, k, ak[j]);
                _mm512_mask_storeu_ps(dvT + (size_t)(d0 + j) * Tp + u, k, av[j]);
            }
        }
    }
}
#define HAVE_ACCUM_KV 1

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
/* rows r < R of w (leading dimension ldw, zero past each row's keys), nk even key count */
static inline __attribute__((always_inline)) void contract_rows_r(const int R, const float *w, int ldw,
                                                                  const float *xi, int HS, int nk,
                                                                  const float *scl, float *out, size_t ldo) {
    const int two = HS > 8;   /* 2·HS = 32 floats: two vectors per pair row */
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < nk / 2; p++) {
        const float *b = xi + (size_t)p * 2 * HS;
        const __m512 b0 = _mm512_loadu_ps(b), b1 = two ? _mm512_loadu_ps(b + 16) : b0;
        for (int r = 0; r < R; r++) {
            double pr;
            memcpy(&pr, w + (size_t)r * ldw + 2 * p, sizeof pr);
            const __m512 a = _mm512_castpd_ps(_mm512_set1_pd(pr));
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            if (two) acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __mmask16 keep = (__mmask16)((1u << HS) - 1u);
    for (int r = 0; r < R; r++) {
        const __m512 s0 = _mm512_add_ps(acc[r][0], _mm512_permute_ps(acc[r][0], 0xB1));
        const __m512 s1 = two ? _mm512_add_ps(acc[r][1], _mm512_permute_ps(acc[r][1], 0xB1)) : s0;
        const __m512 o = _mm512_mul_ps(_mm512_permutex2var_ps(s0, even, s1), _mm512_set1_ps(scl[r]));
        _mm512_mask_storeu_ps(out + r * ldo, keep, o);
    }
}

/* any number of rows, 8 at a time */
static void contract_rows(int R, const float *w, int ldw, const float *xi, int HS, int nk, const float *scl,
                          float *out, size_t ldo) {
    for (int r0 = 0; r0 < R; r0 += 8, w += (size_t)8 * ldw, scl += 8, out += 8 * ldo) {
        switch (R - r0 < 8 ? R - r0 : 8) {
#define CR(n) case n: contract_rows_r(n, w, ldw, xi, HS, nk, scl, out, ldo); break;
        CR(1) CR(2) CR(3) CR(4) CR(5) CR(6) CR(7) CR(8)
#undef CR
        }
    }
}
#else
/* portable forms of the loops above */
static void contract_rows(int R, const float *w, int ldw, const float *xi, int HS, int nk, const float *scl,
                          float *out, size_t ldo) {
    for (int r = 0; r < R; r++)
        for (int dd = 0; dd < HS; dd++) {
            float a = 0.0f;
            for (int p = 0; p < nk / 2; p++)
                a += w[(size_t)r * ldw + 2 * p] * xi[(size_t)p * 2 * HS + 2 * dd] +
                     w[(size_t)r * ldw + 2 * p + 1] * xi[(size_t)p * 2 * HS + 2 * dd + 1];
            out[r * ldo + dd] = a * scl[r];
        }
}

static void scores_rows(int R, const float *x, size_t ldx, const float *kT, int Tp, int HS, int n, float scale,
                        float *s, size_t lds) {
    for (int r = 0; r < R; r++) {
        float *sr = s + r * lds;
        for (int u = 0; u < n; u++) sr[u] = 0.0f;
        for (int dd = 0; dd < HS; dd++) {
            const float xd = x[r * ldx + dd], *kr = kT + (size_t)dd * Tp;
#pragma omp simd
            for (int u = 0; u < n; u++) sr[u] += xd * kr[u];
        }
        for (int u = 0; u < n; u++) sr[u] *= scale;
    }
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

/* One query head against its kv head's layouts (kT; vT as key pairs when pairs, else
 * transposed): q, att at the head's first row (rows D apart), l its lse row; s, inv scratch. */
static void fwd_head(const float *q, float *att, float *l, int D, int T, int HS, int Tp, float scale, int pairs,
                     const float *kT, const float *vT, float *s, float *inv) {
    if (pairs) {   /* blocks of ATT_FB rows: scores, softmax rows, then P·V on a register tile */
        for (int t0 = 0; t0 < T; t0 += ATT_FB) {
            const int rb = T - t0 < ATT_FB ? T - t0 : ATT_FB, nk = (t0 + rb + 1) & ~1;
            scores_rows(rb, q + (size_t)t0 * D, D, kT, Tp, HS, t0 + rb, scale, s, Tp);
            for (int r = 0; r < rb; r++)   /* e^(s − m), zero from the row's last key to nk */
                l[t0 + r] = cpu_softmax_causal_row(s + (size_t)r * Tp, t0 + r + 1, nk, inv + r);
            contract_rows(rb, s, Tp, vT, HS, nk, inv, att + (size_t)t0 * D, D);
        }
        return;
    }
    for (int t = 0; t < T; t++) {
        const int n = t + 1;
        float *o = att + (size_t)t * D;
        scores_rows(1, q + (size_t)t * D, D, kT, Tp, HS, n, scale, s, Tp);
        l[t] = cpu_softmax_causal_row(s, n, n, inv);   /* e^(s − m), unnormalised */
        contract(s, vT, Tp, HS, n, o);
        for (int dd = 0; dd < HS; dd++) o[dd] *= inv[0];   /* HS multiplies instead of n */
    }
}

void cpu_attn_fwd_direct(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                         float *lse) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD, NKV = d->NKV;
    const int group = NH / NKV, Tp = pad16(T), pairs = pairs_fit(HS);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *kT = cpu_thread_scratch(e, ((size_t)2 * HS * Tp + (size_t)ATT_FB * Tp + ATT_FB) * sizeof(float));
        float *vT = kT + (size_t)HS * Tp, *s = vT + (size_t)HS * Tp, *inv = s + (size_t)ATT_FB * Tp;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {   /* K and V laid out once for the group's heads */
                transpose_in(k + (size_t)b * T * KVD + g * HS, KVD, T, HS, kT, Tp);
                if (pairs) interleave_pairs(v + (size_t)b * T * KVD + g * HS, KVD, T, HS, vT, Tp);
                else transpose_in(v + (size_t)b * T * KVD + g * HS, KVD, T, HS, vT, Tp);
                for (int h = g * group; h < (g + 1) * group; h++)
                    fwd_head(q + (size_t)b * T * D + h * HS, att + (size_t)b * T * D + h * HS,
                             lse + ((size_t)b * NH + h) * T, D, T, HS, Tp, scale, pairs, kT, vT, s, inv);
            }
    }
}

void cpu_attn_bwd_direct(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                         const float *o, float o_keep, const float *da, float *dq, float *dk, float *dv) {
    const int B = d->B, T = d->T, NH = d->NH, HS = d->HS, D = d->D, KVD = d->KVD, NKV = d->NKV;
    const int group = NH / NKV, Tp = pad16(T), pairs = pairs_fit(HS);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *kT = cpu_thread_scratch(e, ((size_t)5 * HS * Tp + 2 * ATT_RB * (size_t)Tp) * sizeof(float));
        float *vT = kT + (size_t)HS * Tp, *dkT = vT + (size_t)HS * Tp, *dvT = dkT + (size_t)HS * Tp;
        float *p = dvT + (size_t)HS * Tp, *dp = p + (size_t)ATT_RB * Tp;   /* [ATT_RB][Tp] each */
        float *ki = dp + (size_t)ATT_RB * Tp;                                /* K as key pairs */
        float ones[ATT_RB];
        for (int r = 0; r < ATT_RB; r++) ones[r] = 1.0f;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {
                transpose_in(k + (size_t)b * T * KVD + g * HS, KVD, T, HS, kT, Tp);
                transpose_in(v + (size_t)b * T * KVD + g * HS, KVD, T, HS, vT, Tp);
                if (pairs) interleave_pairs(k + (size_t)b * T * KVD + g * HS, KVD, T, HS, ki, Tp);
                memset(dkT, 0, (size_t)2 * HS * Tp * sizeof(float)); /* dkT and dvT */
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float *l = lse + ((size_t)b * NH + h) * T;
                    for (int t0 = 0; t0 < T; t0 += ATT_RB) {
                        /* rows t0.. of the block: P and dS over the block's keys u < nb (zero
                         * past each row's own last key), dQ per row */
                        const int rb = T - t0 < ATT_RB ? T - t0 : ATT_RB, nb = t0 + rb, nk = (nb + 1) & ~1;
                        const size_t row0 = (size_t)(b * T + t0) * D + h * HS;
#ifdef HAVE_SCORES_EP
                        if (o) {   /* P and dS straight from the products, Δ from O (scores_ep) */
                            float delta[ATT_RB];
                            for (int r = 0; r < rb; r++) {
                                const float *ar = da + row0 + (size_t)r * D, *orow = o + row0 + (size_t)r * D;
                                float acc = 0.0f;
                                for (int dd = 0; dd < HS; dd++) acc = fmaf(ar[dd], orow[dd], acc);
                                delta[r] = o_keep * acc;
                            }
                            scores_ep(rb, EP_P, q + row0, D, kT, Tp, HS, nb, scale, l + t0, t0, NULL, p, Tp);
                            scores_ep(rb, EP_DS, da + row0, D, vT, Tp, HS, nb, scale, delta, t0, p, dp, Tp);
                            if (!pairs)
                                for (int r = 0; r < rb; r++)
                                    contract(dp + (size_t)r * Tp, kT, Tp, HS, t0 + r + 1, dq + row0 + (size_t)r * D);
                        } else
#endif
                        {
                            scores_rows(rb, q + row0, D, kT, Tp, HS, nb, scale, p, Tp);
                            scores_rows(rb, da + row0, D, vT, Tp, HS, nb, 1.0f, dp, Tp);
                            for (int r = 0; r < rb; r++) {
                                const int t = t0 + r, n = t + 1;
                                const size_t row = (size_t)(b * T + t) * D + h * HS;
                                float *pr = p + (size_t)r * Tp, *dpr = dp + (size_t)r * Tp;
                                cpu_softmax_grad_row(pr, dpr, n, nk, l[t], scale);
                                if (!pairs) contract(dpr, kT, Tp, HS, n, dq + row);
                            }
                        }
                        if (pairs)   /* dQ of the block's rows = dS·K on a register tile */
                            contract_rows(rb, dp, Tp, ki, HS, nk, ones, dq + row0, D);
                        /* dkT[d][u] += Σ_r q_r[d]·dS_r[u];  dvT[d][u] += Σ_r dA_r[d]·P_r[u]: one pass
                         * over the accumulators per block of rows instead of one per row */
#ifdef HAVE_ACCUM_KV
                        if (HS % 8 == 0) {
                            accum_kv(rb, q + row0, da + row0, D, dp, p, Tp, HS, nb, dkT, dvT);
                            continue;
                        }
#endif
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
                transpose(dkT, Tp, HS, T, dk + (size_t)b * T * KVD + g * HS, KVD);
                transpose(dvT, Tp, HS, T, dv + (size_t)b * T * KVD + g * HS, KVD);
            }
    }
}
