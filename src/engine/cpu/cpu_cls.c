/* fable cpu engine — fused classifier + softmax + cross-entropy.
 *
 *   logits = xn·Wclsᵀ [N, V];  lse_n = log Σ_v e^(logits[n,v]);  loss_n = lse_n − logits[n, target_n]
 *   backward (L = scale·Σ_n loss_n):  dl = scale·(e^(logits − lse) − onehot(target)),
 *                                     dxn = dl·Wcls,  dWcls (+)= dlᵀ·xn
 *
 * Work split: each thread owns a contiguous vocabulary range (balanced, cut at multiples of
 * 32 columns) for the whole call, so its dWcls rows are written by it alone (no races, no
 * reduction), and every product it computes is a single-threaded GEMM on a tile that
 * fits in the L2 with its operands: rows × columns = CLS_RT × CLS_VS floats (576 KB). Every
 * operand is in the GEMM's packed layout before the products that read it (gemm_f32_pp),
 * and each is packed once: x per row tile at the start (as A for the logits, as B for dW),
 * W per vocabulary tile per pass (as B: Wᵀ for the logits, W for dxn), and the gradient
 * tile dl is written by the pass that computes it straight into its two packed forms (A of
 * dxn = dl·W and A of dW = dlᵀ·x), so the logits buffer is only ever read after pass 1.
 * Per tile, while it is in cache:
 *
 *   pass 1 (forward), vocabulary tiles outer, row tiles inner:
 *     logits tile = x_tile·W_tileᵀ;  per row an online max m and Σexp s over the thread's
 *     columns:  m' = max(m, max_tile),  s' = s·e^(m−m') + Σ_tile e^(l−m');
 *     the tile keeps e^(l−m') in place of l (and m' per row and tile), so pass 2 needs no
 *     second exp; the target's logit is picked up first by the thread whose range holds it.
 *   combine (after a barrier, rows split over threads, threads combined in fixed order):
 *     lse = M + log Σ_t s_t·e^(m_t − M),  M = max_t m_t.
 *   pass 2 (backward), vocabulary tiles outer, row tiles inner (so the dW tile stays in
 *   cache across the row tiles that add into it):
 *     dl = scale·(e^(l−m')·e^(m'−lse) − onehot) into its packed forms (pack_dl);
 *     dxn_t += dl·W_tile (per-thread partial);  dW_tile (+)= dlᵀ·x_tile.
 *   dxn = Σ_t dxn_t, in thread order (rows split over threads).
 *
 * Memory: the backward needs the logits between the passes, so rows are processed in chunks
 * for which the single logits buffer holds at most CHUNK_BYTES; the forward-only call keeps
 * one logits tile per thread and takes chunks of at most CLS_FWD_ROWS rows. Per thread, the
 * packed operands of one chunk (x twice, two W tiles, two dl tiles: ~6 MB for stories15M).
 * Deterministic for a given thread count (fixed split and order). Measured against the
 * earlier versions (one GEMM per block; re-packing per tile): bench/RESULTS.md.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"
#include "engine/cpu/simd_transpose.h"
#include "fable/util.h"

#define CHUNK_BYTES ((size_t)160 << 20)
#define CLS_FWD_ROWS 4096
#ifndef CLS_RT
#define CLS_RT 384 /* rows per tile (Intel VM: 384 x 384 beat 512 x 512 by 2.4% on 15M, bench/RESULTS.md session 19) */
#endif
#ifndef CLS_VS
#define CLS_VS 384 /* vocabulary columns per tile (AMD VM: 256 and 448 measured the same on 15M and 110M) */
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }

/* thread t's vocabulary range [*v0, *v1): balanced, boundaries at multiples of 32 */
static void vocab_range(int V, int nt, int t, int *v0, int *v1) {
    int a = (int)((long)V * t / nt), b = (int)((long)V * (t + 1) / nt);
    *v0 = t == 0 ? 0 : imin(V, (a + 16) / 32 * 32);
    *v1 = t == nt - 1 ? V : imin(V, (b + 16) / 32 * 32);
}

/* Rows [0, rows) of tile L (leading dimension ld, vs columns): the target logit into tl[i]
 * when target_i − c0 falls in the tile; then the online update of the row's max m and Σexp s,
 *   m' = max(m, max_tile),  s' = s·e^(m−m') + Σ_tile e^(l−m'),
 * storing e^(l−m') in place of l and m' in sh[i·shs] (the shift pass 2 needs to turn it into
 * a probability: p = e^(l−m')·e^(m'−lse)). */
static void tile_stats(float *L, int ld, int rows, int vs, int c0, const int32_t *tg, float *m, float *s,
                       float *tl, float *sh, int shs) {
    for (int i = 0; i < rows; i++) {
        float *l = L + (size_t)i * ld;
        const int t = tg[i] - c0;
        if (t >= 0 && t < vs) tl[i] = l[t];
        float bm = -INFINITY;
#pragma omp simd reduction(max : bm)
        for (int j = 0; j < vs; j++) bm = l[j] > bm ? l[j] : bm;
        const float mn = m[i] > bm ? m[i] : bm;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < vs; j++) {
            const float ej = fb_expf_le0(l[j] - mn);
            l[j] = ej;
            sum += ej;
        }
        s[i] = s[i] * expf(m[i] - mn) + sum;
        m[i] = mn;
        sh[(size_t)i * shs] = mn;
    }
}

/* Pass 2's gradient tile, rows [0, rr) × columns [0, vs) of the tile E (leading dimension ld,
 * E = e^(l−m') from pass 1), written straight into the two packed operands that read it
 * (layout in gemm.h):
 *   dl[i][j] = cf_i·E[i][j] − scale·[j = tj_i]       (rows with live_i = 0: all zero)
 *   a1 = dl  as A of dxn = dl·W   (M = rr, K = vs, K blocks of kc1)
 *   a2 = dlᵀ as A of dW  = dlᵀ·x  (M = vs, K = rr, K blocks of kc2)
 * With 8-row panels (the AVX-512 kernel) whole 8×8 blocks go through registers: the 8 rows'
 * pieces are a2's runs as they are, and transposed they are a1's. Other layouts and edges
 * take the element-wise path. */
static void pack_dl(const gemm_layout *lo, const float *E, int ld, int rr, int vs, const float *cf,
                    const int *tj, const unsigned char *live, float scale, int kc1, float *a1, int kc2, float *a2) {
    const int mr = lo->mr;
    int fast = 0;
#if defined(__AVX2__)
    fast = mr == 8 && rr % 8 == 0 && vs % 8 == 0 && kc2 % 8 == 0;
#endif
    if (!fast) {   /* element-wise; zero first for the padding of partial panels */
        memset(a1, 0, gemm_packed_a_floats(lo, rr, vs) * sizeof(float));
        memset(a2, 0, gemm_packed_a_floats(lo, vs, rr) * sizeof(float));
    }
    for (int r0 = 0; r0 < rr; r0 += 8) {
        const int rn = imin(8, rr - r0);
        int all = fast;
        for (int i = 0; i < rn; i++) all &= live[r0 + i];
#if defined(__AVX2__)
        if (all) {
            /* a1: column v of the 8 rows at blk1 + (v − k0)·8; a2: row r's run of 8 columns
             * v0.. at a2r + (v0/8)·kcr·8 (rows r0..r0+7 share one K block of kc2) */
            const int k0r = r0 / kc2 * kc2, kcr = imin(kc2, rr - k0r);
            float *a2r = a2 + (size_t)k0r * vs + (size_t)(r0 - k0r) * 8;
            __m256 c[8];
            for (int i = 0; i < 8; i++) c[i] = _mm256_set1_ps(cf[r0 + i]);
            for (int k0 = 0; k0 < vs; k0 += kc1) {
                const int kc = imin(kc1, vs - k0);
                float *blk1 = a1 + (size_t)k0 * rr + (size_t)(r0 / 8) * kc * 8;
                for (int v0 = k0; v0 < k0 + kc; v0 += 8) {
                    __m256 x[8];
                    for (int i = 0; i < 8; i++) {
                        x[i] = _mm256_mul_ps(_mm256_loadu_ps(E + (size_t)(r0 + i) * ld + v0), c[i]);
                        _mm256_storeu_ps(a2r + (size_t)(v0 / 8) * kcr * 8 + i * 8, x[i]);
                    }
                    tr8x8(x);
                    for (int t = 0; t < 8; t++) _mm256_storeu_ps(blk1 + (size_t)(v0 - k0 + t) * 8, x[t]);
                }
            }
            for (int i = 0; i < 8; i++) {
                const int r = r0 + i, j = tj[r];
                if (j < 0) continue;
                const float g = E[(size_t)r * ld + j] * cf[r] - scale;
                a1[gemm_packed_a_at(8, rr, vs, kc1, r, j)] = g;
                a2[gemm_packed_a_at(8, vs, rr, kc2, j, r)] = g;
            }
            continue;
        }
#endif
        for (int i = r0; i < r0 + rn; i++) {
            const float *e = E + (size_t)i * ld;
            for (int j = 0; j < vs; j++) {
                float g = 0.0f;
                if (live[i]) {
                    g = e[j] * cf[i];
                    if (j == tj[i]) g -= scale;
                }
                a1[gemm_packed_a_at(mr, rr, vs, kc1, i, j)] = g;
                a2[gemm_packed_a_at(mr, vs, rr, kc2, j, i)] = g;
            }
        }
    }
}

/* n floats rounded up to a whole 64-byte line (keeps the sub-buffers of a scratch aligned) */
static size_t lines(size_t n) { return (n + 15) & ~(size_t)15; }

void cpu_cls_loss(eng *e, const eng_dims *d, const float *xn, const float *wcls, const int32_t *targets,
                  float scale, float *losses, double *loss_sum, float *dxn, float *dwcls, int acc) {
    const int N = d->N, D = d->D, V = d->V;
    const int nt = omp_get_max_threads();
    /* rows per chunk: the logits buffer (backward) stays under CHUNK_BYTES; the forward-only
     * call keeps no logits, and its chunks of at most CLS_FWD_ROWS bound the per-thread packed
     * x (a large eval batch would otherwise pack all its rows at once); chunks balanced */
    int cap = dxn ? (int)(CHUNK_BYTES / ((size_t)V * sizeof(float))) : CLS_FWD_ROWS;
    if (cap < 1) cap = 1;
    const int nch = (N + cap - 1) / cap, R = (N + nch - 1) / nch;
    const int RT = imin(CLS_RT, R), nrt = (R + RT - 1) / RT, VS = CLS_VS;
    /* shared scratch: logits [R, V] (backward) | m, s [nt, R] | lse, target logit [R] |
     * shifts [nt, R, ntile] | dxn partials [nt − 1, R, D] (backward) */
    const int ntile = (V + VS - 1) / VS + 1; /* ≥ tiles in any thread's range, any team size */
    const size_t n_logits = dxn ? (size_t)R * V : 0;
    const size_t n_sh = (size_t)nt * R * ntile;
    const size_t n_part = dxn ? (size_t)(nt - 1) * R * D : 0;
    float *buf = cpu_scratch(e, CPU_SCRATCH_CLS,
                             (n_logits + 2 * (size_t)nt * R + 2 * (size_t)R + n_sh + n_part + 64) * sizeof(float));
    float *logits = buf, *mx = buf + n_logits, *se = mx + (size_t)nt * R, *lse = se + (size_t)nt * R;
    float *tl = lse + R, *shift = tl + R, *part = shift + n_sh;
    /* per-thread scratch, operands packed for gemm_f32_pp (gemm.h): x per row tile as A (xa)
     * and as B (xb), the W tile as B of each pass (wb1: Wᵀ, wb2: W), the gradient tile as the
     * A of its two products (a1, a2), the logits tile of the forward-only call (lt), and
     * per row the coefficient, target column and liveness pack_dl reads */
    const gemm_layout lo = gemm_layout_get(cpu_gemm_use_own);
    const int kcD = gemm_layout_kc(&lo, D);
    const size_t n_xa = lines(gemm_packed_a_floats(&lo, RT, D)), n_xb = dxn ? lines(gemm_packed_b_floats(&lo, RT, D)) : 0;
    const size_t n_wb1 = lines(gemm_packed_b_floats(&lo, D, VS));
    const size_t n_wb2 = dxn ? lines(gemm_packed_b_floats(&lo, VS, D)) : 0;
    const size_t n_a1 = dxn ? lines(gemm_packed_a_floats(&lo, RT, VS)) : 0;
    const size_t n_a2 = dxn ? lines(gemm_packed_a_floats(&lo, VS, RT)) : 0;
    const size_t n_lt = dxn ? 0 : (size_t)RT * VS;
    const size_t n_thr = nrt * (n_xa + n_xb) + n_wb1 + n_wb2 + n_a1 + n_a2 + n_lt + 3 * lines(RT);
    double total = 0.0;

    for (int r0 = 0; r0 < N; r0 += R) {
        const int rows = imin(R, N - r0);
        const float *x = xn + (size_t)r0 * D;
        const int32_t *tg = targets + r0;
#pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num(), team = omp_get_num_threads();
            int va, vb;
            vocab_range(V, team, t, &va, &vb);
            float *m = mx + (size_t)t * R, *s = se + (size_t)t * R, *sh = shift + (size_t)t * R * ntile;
            for (int i = 0; i < rows; i++) { m[i] = -INFINITY; s[i] = 0.0f; }
            float *xa = cpu_thread_scratch(e, n_thr * sizeof(float)), *xb = xa + nrt * n_xa;
            float *wb1 = xb + nrt * n_xb, *wb2 = wb1 + n_wb1, *a1 = wb2 + n_wb2;
            float *a2 = a1 + n_a1, *lt = a2 + n_a2;
            float *cf = lt + n_lt;
            int *tj = (int *)(cf + lines(RT));
            unsigned char *live = (unsigned char *)(tj + lines(RT));
            if (va < vb)
                for (int rt = 0; rt < rows; rt += RT) {
                    const int rr = imin(RT, rows - rt);
                    gemm_pack_a_into(&lo, 0, rr, D, kcD, x + (size_t)rt * D, D, xa + rt / RT * n_xa);
                    if (dxn)
                        gemm_pack_b_into(&lo, 0, rr, D, gemm_layout_kc(&lo, rr), x + (size_t)rt * D, D,
                                         xb + rt / RT * n_xb);
                }

            /* pass 1: logits tiles and their row statistics; vocabulary tiles outer, so each
             * W tile is read from memory and packed once and stays in cache across the row
             * tiles. Each row still sees its tiles in ascending order. */
            for (int c0 = va; c0 < vb; c0 += VS) {
                const int vs = imin(VS, vb - c0);
                gemm_pack_b_into(&lo, 1, D, vs, kcD, wcls + (size_t)c0 * D, D, wb1);
                for (int rt = 0; rt < rows; rt += RT) {
                    const int rr = imin(RT, rows - rt);
                    float *L = dxn ? logits + (size_t)rt * V + c0 : lt;
                    const int ld = dxn ? V : VS;
                    gemm_f32_pp(&lo, rr, vs, D, kcD, 1.0f, xa + rt / RT * n_xa, wb1, 0.0f, L, ld);
                    tile_stats(L, ld, rr, vs, c0, tg + rt, m + rt, s + rt, tl + rt,
                               sh + (size_t)rt * ntile + (c0 - va) / VS, ntile);
                }
            }
#pragma omp barrier
            /* combine the threads' statistics: lse per row (threads in fixed order) */
#pragma omp for schedule(static)
            for (int i = 0; i < rows; i++) {
                float M = -INFINITY;
                for (int u = 0; u < team; u++) M = mx[(size_t)u * R + i] > M ? mx[(size_t)u * R + i] : M;
                float S = 0.0f;
                for (int u = 0; u < team; u++) S += se[(size_t)u * R + i] * expf(mx[(size_t)u * R + i] - M);
                lse[i] = M + logf(S);
            }
            /* implicit barrier: lse complete */
            if (dxn) {
                /* pass 2: dl = scale·e^(l−m')·e^(m'−lse) − scale·onehot into its packed forms,
                 * then dxn_t += dl·W_tile and dW_tile (+)= dlᵀ·x */
                float *dx_t = t == 0 ? dxn + (size_t)r0 * D : part + (size_t)(t - 1) * R * D;
                if (va >= vb) memset(dx_t, 0, (size_t)rows * D * sizeof(float));
                for (int c0 = va; c0 < vb; c0 += VS) {
                    const int vs = imin(VS, vb - c0), ti = (c0 - va) / VS, kc1 = gemm_layout_kc(&lo, vs);
                    gemm_pack_b_into(&lo, 0, vs, D, kc1, wcls + (size_t)c0 * D, D, wb2);
                    for (int rt = 0; rt < rows; rt += RT) {
                        const int rr = imin(RT, rows - rt), kc2 = gemm_layout_kc(&lo, rr);
                        for (int i = 0; i < rr; i++) {
                            const int target = tg[rt + i];
                            live[i] = target >= 0;
                            cf[i] = live[i] ? scale * expf(sh[(size_t)(rt + i) * ntile + ti] - lse[rt + i]) : 0.0f;
                            tj[i] = live[i] && target >= c0 && target < c0 + vs ? target - c0 : -1;
                        }
                        pack_dl(&lo, logits + (size_t)rt * V + c0, V, rr, vs, cf, tj, live, scale, kc1, a1, kc2, a2);
                        gemm_f32_pp(&lo, rr, D, vs, kc1, 1.0f, a1, wb2, c0 == va ? 0.0f : 1.0f, dx_t + (size_t)rt * D, D);
                        gemm_f32_pp(&lo, vs, D, rr, kc2, 1.0f, a2, xb + rt / RT * n_xb, acc || r0 || rt ? 1.0f : 0.0f,
                                    dwcls + (size_t)c0 * D, D);
                    }
                }
#pragma omp barrier
#pragma omp for schedule(static)
                for (int i = 0; i < rows; i++) {
                    float *o = dxn + (size_t)(r0 + i) * D;
                    for (int u = 1; u < team; u++) {
                        const float *p = part + ((size_t)(u - 1) * R + i) * D;
#pragma omp simd
                        for (int k = 0; k < D; k++) o[k] += p[k];
                    }
                }
            }
        }
        /* losses, summed in row order (double) */
        for (int i = 0; i < rows; i++) {
            float li = tg[i] >= 0 ? lse[i] - tl[i] : 0.0f;
            losses[r0 + i] = li;
            total += li;
        }
    }
    *loss_sum = total;
}
