/* fable cpu engine — causal attention on register tiles, for heads of 32, 48 or 64 dims.
 *
 * Same mathematics as the GEMM-tiled path in cpu_attn.c (see there). That path calls the
 * general GEMM five times per (head, 64-row block) in the backward and twice in the forward;
 * each call packs both operands again, for products whose K is only HS or 64 rows, so the
 * attention core ran at ~45% of the FMA peak. Here one task owns a (batch b, kv head g):
 * it lays K and V out once for all query heads of the group and all row blocks,
 *   Kp, Vp:  32-key panels, Kp[n][d][j] = K[32n + j][d]   (so S = Q·Kᵀ reads one 32-key
 *            row of the panel per d; zero past T)
 *   Kd, Vd:  rows packed densely, Kd[u][d] = K[u][d]      (the B operands of dQ = dS·K
 *            and O = P·V)
 * and every product is a run of one register-tile kernel,
 *   C[r][j] (+)= alpha · Σ_{p<K} A[r·ars + p·aks] · B[p·bks + j]     r < R, j < 16·W,
 * whose A is read by broadcasts at any strides (rows of Q, dA, P, dS, or columns of P and
 * dS for Pᵀ·dA and dSᵀ·Q) and whose B is one 16·W-float row per k step:
 *   forward, per row block (nc = r0 + rb visible keys):
 *     S = scale·Q_blk·Kᵀ        tiles 8 rows × 32 keys, only the panels at or left of the
 *                               diagonal; then the causal softmax rows (cpu_math.h), left
 *                               unnormalised: E = e^(S − m)
 *     O_blk = (E·V) / Σ E       tiles R rows × HS, K = the tile's visible keys; each output
 *                               row then scaled by its 1/Σ (HS multiplies instead of T)
 *   backward (a task also owns dK_g, dV_g: accumulated densely, written once at the end):
 *     P = exp(scale·Q_blk·Kᵀ − lse), dP = dA_blk·Vᵀ, dS = P⊙(dP − Δ)·scale
 *     dQ_blk = dS·K;  dK[u] += Σ_{i ≥ u − r0} dS[i][u]·Q_blk[i];  dV[u] += Σ_i P[i][u]·dA_blk[i]
 * R·W ≤ 24 accumulators (W = HS/16 vectors per row: R = 8 for W ≤ 3, 6 for W = 4), plus the
 * W row vectors of B and a broadcast: within the 32 zmm registers. Fixed order throughout, and
 * a task's outputs are its own: deterministic for any thread count and schedule.
 * Measured against the GEMM-tiled path (bench/RESULTS.md, session 3): the attention core
 * −21..−27% on stories15M's heads, −8..−15% on stories110M's; the 15M step −1.7%.
 */
#include <math.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"

int cpu_attn_tiles = 1;

#if defined(__AVX512F__) && defined(__FMA__) /* the kernels below; panels from gemm.c */
#include <immintrin.h>

int cpu_attn_tiles_fit(int HS) { return HS == 32 || HS == 48 || HS == 64; }

typedef void (*rtile_fn)(int K, const float *A, ptrdiff_t ars, ptrdiff_t aks, const float *B, ptrdiff_t bks,
                         float *C, ptrdiff_t ldc, float alpha, int add);

/* The kernel, R and W compile-time constants (instantiated below): accumulators stay in
 * registers, each k step loads W vectors of B and broadcasts R values of A. add: C += …,
 * else C = … (C not read). */
static inline __attribute__((always_inline)) void rtile(const int R, const int W, int K, const float *A,
                                                        ptrdiff_t ars, ptrdiff_t aks, const float *B,
                                                        ptrdiff_t bks, float *C, ptrdiff_t ldc, float alpha,
                                                        int add) {
    __m512 acc[8][4];
    const float *ar[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        ar[r] = A + r * ars;
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) acc[r][w] = _mm512_setzero_ps();
    }
    ptrdiff_t ak = 0;
    for (int p = 0; p < K; p++, ak += aks, B += bks) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) b[w] = _mm512_loadu_ps(B + 16 * w);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_set1_ps(ar[r][ak]);
#pragma GCC unroll 4
            for (int w = 0; w < W; w++) acc[r][w] = _mm512_fmadd_ps(a, b[w], acc[r][w]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) {
            float *c = C + r * ldc + 16 * w;
            __m512 x = _mm512_mul_ps(va, acc[r][w]);
            if (add) x = _mm512_add_ps(_mm512_loadu_ps(c), x);
            _mm512_storeu_ps(c, x);
        }
}

#define RT_DEF(R, W)                                                                                         \
    static void rtile_##R##x##W(int K, const float *A, ptrdiff_t ars, ptrdiff_t aks, const float *B,        \
                                ptrdiff_t bks, float *C, ptrdiff_t ldc, float alpha, int add) {             \
        rtile(R, W, K, A, ars, aks, B, bks, C, ldc, alpha, add);                                            \
    }
#define RT_ROWS(W) RT_DEF(1, W) RT_DEF(2, W) RT_DEF(3, W) RT_DEF(4, W) RT_DEF(5, W) RT_DEF(6, W)
RT_ROWS(2) RT_ROWS(3) RT_ROWS(4)
RT_DEF(7, 2) RT_DEF(8, 2) RT_DEF(7, 3) RT_DEF(8, 3)
#define RT_ROW_PTRS(W) {NULL, rtile_1x##W, rtile_2x##W, rtile_3x##W, rtile_4x##W, rtile_5x##W, rtile_6x##W
/* rt[W][R]: the kernel for R rows (1..rows_per_tile(W)) of W vectors */
static const rtile_fn rt[5][9] = {
    [2] = RT_ROW_PTRS(2), rtile_7x2, rtile_8x2},
    [3] = RT_ROW_PTRS(3), rtile_7x3, rtile_8x3},
    [4] = RT_ROW_PTRS(4)},
};
static inline int rows_per_tile(int W) { return W == 4 ? 6 : 8; }

/* Kp[n][d][j] = K[(32n + j)·ld + d] for 32n + j < T, else 0; n < ceil(T / 32): each panel is
 * the GEMM's transposed B panel of 32 rows (zero-padded past T) */
static void pack_key_panels(const float *K, int ld, int T, int HS, float *Kp) {
    for (int n = 0; n * 32 < T; n++)
        gemm_pack_transposed(32, T - 32 * n < 32 ? T - 32 * n : 32, HS, K + (size_t)n * 32 * ld, ld,
                             Kp + (size_t)n * HS * 32);
}

/* dst[i·ldd][0:HS] = src[i·lds][0:HS], rows i < n (HS a multiple of 16: whole vectors, no call) */
static void copy_rows(const float *src, int lds, int n, int HS, float *dst, int ldd) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < HS; j += 16)
            _mm512_storeu_ps(dst + (size_t)i * ldd + j, _mm512_loadu_ps(src + (size_t)i * lds + j));
}

/* Row t of a tile is read up to key t + 7 at most (the products' tiles are ≤ 8 rows or keys
 * and stop at their last row's diagonal): zero its masked keys [t + 1, min(t + 8, nc)). */
static inline void zero_masked(float *row, int t, int nc) {
    const int n = (t + 8 < nc ? t + 8 : nc) - (t + 1);
    if (n > 0) _mm512_mask_storeu_ps(row + t + 1, (__mmask16)((1u << n) - 1u), _mm512_setzero_ps());
}

/* Scores of rows [r0, r0 + rb) of one head against the keys at or before the diagonal:
 * S[i][u] = alpha·Σ_d X[r0+i][d]·K[u][d] (X with row stride ldx, K as panels Kp); rows in
 * 8-row tiles, each over the panels up to its last row's diagonal. Columns past that are
 * not written. */
static void scores_block(const float *X, int ldx, int r0, int rb, const float *Kp, int HS, float alpha, float *S,
                         int ldS) {
    for (int i0 = 0; i0 < rb; i0 += 8) {
        const int ri = rb - i0 < 8 ? rb - i0 : 8, npan = (r0 + i0 + ri - 1) / 32 + 1;
        for (int n = 0; n < npan; n++)
            rt[2][ri](HS, X + (size_t)(r0 + i0) * ldx, ldx, 1, Kp + (size_t)n * HS * 32, 32,
                      S + (size_t)i0 * ldS + 32 * n, ldS, alpha, 0);
    }
}

/* Out[i][0:HS] = Σ_u W[i][u]·Bd[u][0:HS] for rows i < rb of a block starting at query r0: each
 * R-row tile over its visible keys u < r0 + i0 + R (W is zero past each row's diagonal). */
static void rows_by_dense(const float *Wt, int ldW, int r0, int rb, const float *Bd, int HS, float *Out, int ldo) {
    const int W = HS / 16, R = rows_per_tile(W);
    for (int i0 = 0; i0 < rb; i0 += R) {
        const int ri = rb - i0 < R ? rb - i0 : R;
        rt[W][ri](r0 + i0 + ri, Wt + (size_t)i0 * ldW, ldW, 1, Bd, HS, Out + (size_t)i0 * ldo, ldo, 1.0f, 0);
    }
}

/* Acc[u][0:HS] += Σ_i Wt[i][u]·Xd[i][0:HS] for keys u < nc, block rows i < rb (query r0 + i):
 * key tiles of R, each from the first row that can see its first key (i ≥ u − r0). */
static void cols_by_dense(const float *Wt, int ldW, int r0, int rb, int nc, const float *Xd, int HS, float *Acc) {
    const int W = HS / 16, R = rows_per_tile(W);
    for (int u0 = 0; u0 < nc; u0 += R) {
        const int ru = nc - u0 < R ? nc - u0 : R, i0 = u0 > r0 ? u0 - r0 : 0;
        if (i0 >= rb) continue;
        rt[W][ru](rb - i0, Wt + (size_t)i0 * ldW + u0, 1, ldW, Xd + (size_t)i0 * HS, HS, Acc + (size_t)u0 * HS, HS,
                  1.0f, 1);
    }
}

/* The per-thread layout of the tiles: S (and dP) rows padded so that walking down a column
 * does not hit the same L1 set every few rows. */
static inline int tile_ld(int T) { return ((T + 31) & ~31) + 16; }

void cpu_attn_fwd_tiles(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                        float *lse) {
    const int B = d->B, T = d->T, NH = d->NH, NKV = d->NKV, HS = d->HS, D = d->D, KVD = d->KVD;
    const int group = NH / NKV, TB = cpu_attn_block, ldS = tile_ld(T), Tp = (T + 31) & ~31;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *Kp = cpu_thread_scratch(e, ((size_t)2 * Tp * HS + (size_t)TB * ldS + TB) * sizeof(float));
        float *Vd = Kp + (size_t)Tp * HS, *S = Vd + (size_t)Tp * HS, *inv = S + (size_t)TB * ldS;
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {
                pack_key_panels(k + (size_t)b * T * KVD + g * HS, KVD, T, HS, Kp);
                copy_rows(v + (size_t)b * T * KVD + g * HS, KVD, T, HS, Vd, HS);
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float *Q = q + (size_t)b * T * D + h * HS;
                    float *l = lse + ((size_t)b * NH + h) * T;
                    for (int r0 = 0; r0 < T; r0 += TB) {
                        const int rb = T - r0 < TB ? T - r0 : TB, nc = r0 + rb;
                        scores_block(Q, D, r0, rb, Kp, HS, scale, S, ldS);
                        for (int i = 0; i < rb; i++) {
                            float *row = S + (size_t)i * ldS;
                            l[r0 + i] = cpu_softmax_causal_row(row, r0 + i + 1, r0 + i + 1, inv + i);
                            zero_masked(row, r0 + i, nc);
                        }
                        float *O = att + (size_t)(b * T + r0) * D + h * HS;
                        rows_by_dense(S, ldS, r0, rb, Vd, HS, O, D);
                        for (int i = 0; i < rb; i++) /* O = (Σ_u e^(s−m)·V_u) / Σ_u e^(s−m) */
                            for (int j = 0; j < HS; j++) O[(size_t)i * D + j] *= inv[i];
                    }
                }
            }
    }
}

void cpu_attn_bwd_tiles(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                        const float *da, float *dq, float *dk, float *dv) {
    const int B = d->B, T = d->T, NH = d->NH, NKV = d->NKV, HS = d->HS, D = d->D, KVD = d->KVD;
    const int group = NH / NKV, TB = cpu_attn_block, ldS = tile_ld(T), Tp = (T + 31) & ~31;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        /* Kp, Vp, Kd [Tp, HS] | dK, dV accumulators [T, HS] | Q_blk, dA_blk [TB, HS] | P, dP [TB, ldS] */
        float *Kp = cpu_thread_scratch(e, ((size_t)5 * Tp * HS + (size_t)2 * TB * HS + (size_t)2 * TB * ldS) *
                                              sizeof(float));
        float *Vp = Kp + (size_t)Tp * HS, *Kd = Vp + (size_t)Tp * HS, *dKa = Kd + (size_t)Tp * HS;
        float *dVa = dKa + (size_t)Tp * HS, *Qb = dVa + (size_t)Tp * HS, *dAb = Qb + (size_t)TB * HS;
        float *P = dAb + (size_t)TB * HS, *dP = P + (size_t)TB * ldS;
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < NKV; g++) {
                const float *K = k + (size_t)b * T * KVD + g * HS, *V = v + (size_t)b * T * KVD + g * HS;
                pack_key_panels(K, KVD, T, HS, Kp);
                pack_key_panels(V, KVD, T, HS, Vp);
                copy_rows(K, KVD, T, HS, Kd, HS);
                memset(dKa, 0, (size_t)2 * Tp * HS * sizeof(float)); /* dKa and dVa */
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float *Q = q + (size_t)b * T * D + h * HS, *dA = da + (size_t)b * T * D + h * HS;
                    const float *l = lse + ((size_t)b * NH + h) * T;
                    for (int r0 = 0; r0 < T; r0 += TB) {
                        const int rb = T - r0 < TB ? T - r0 : TB, nc = r0 + rb;
                        scores_block(Q, D, r0, rb, Kp, HS, scale, P, ldS);
                        scores_block(dA, D, r0, rb, Vp, HS, 1.0f, dP, ldS);
                        for (int i = 0; i < rb; i++) {
                            float *pr = P + (size_t)i * ldS, *dpr = dP + (size_t)i * ldS;
                            cpu_softmax_grad_row(pr, dpr, r0 + i + 1, r0 + i + 1, l[r0 + i], scale);
                            zero_masked(pr, r0 + i, nc);
                            zero_masked(dpr, r0 + i, nc);
                        }
                        rows_by_dense(dP, ldS, r0, rb, Kd, HS, dq + (size_t)(b * T + r0) * D + h * HS, D);
                        copy_rows(Q + (size_t)r0 * D, D, rb, HS, Qb, HS);
                        copy_rows(dA + (size_t)r0 * D, D, rb, HS, dAb, HS);
                        cols_by_dense(dP, ldS, r0, rb, nc, Qb, HS, dKa);
                        cols_by_dense(P, ldS, r0, rb, nc, dAb, HS, dVa);
                    }
                }
                copy_rows(dKa, HS, T, HS, dk + (size_t)b * T * KVD + g * HS, KVD);
                copy_rows(dVa, HS, T, HS, dv + (size_t)b * T * KVD + g * HS, KVD);
            }
    }
}
#else
int cpu_attn_tiles_fit(int HS) { return 0; } /* no AVX-512: the GEMM-tiled path */
void cpu_attn_fwd_tiles(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, float *att,
                        float *lse) {}
void cpu_attn_bwd_tiles(eng *e, const eng_dims *d, const float *q, const float *k, const float *v, const float *lse,
                        const float *da, float *dq, float *dk, float *dv) {}
#endif
