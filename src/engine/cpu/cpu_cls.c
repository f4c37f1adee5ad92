/* fable cpu engine — fused classifier + softmax + cross-entropy.
 *
 *   logits = xn·Wclsᵀ [N, V];  lse_n = log Σ_v e^(logits[n,v]);  loss_n = lse_n − logits[n, target_n]
 *   backward (L = scale·Σ_n loss_n):  dl = scale·(e^(logits − lse) − onehot(target)),
 *                                     dxn = dl·Wcls,  dWcls (+)= dlᵀ·xn
 *
 * Work split: each thread owns a contiguous vocabulary range (balanced, cut at multiples of
 * 32 columns) for the whole call, so its dWcls rows are written by it alone (no races, no
 * reduction), and every product it computes is a single-threaded GEMM on a tile that
 * is about the size of the L2: rows × columns = CLS_RT × CLS_VS floats (1 MB). Per tile,
 * while it is in cache:
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
 *     dl = scale·(e^(l−m')·e^(m'−lse) − onehot) in place;  dxn_t += dl·W_tile (per-thread partial);
 *     dW_tile (+)= dlᵀ·x_tile.
 *   dxn = Σ_t dxn_t, in thread order (rows split over threads).
 *
 * Memory: the forward-only call keeps one tile per thread. The backward needs the logits
 * between the passes: rows are processed in chunks so that the single logits buffer holds
 * at most CHUNK_BYTES. Deterministic for a given thread count (fixed split and order).
 * Measured against the earlier one-GEMM-per-block version: bench/RESULTS.md.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"
#include "fable/util.h"

#define CHUNK_BYTES ((size_t)160 << 20)
#ifndef CLS_RT
#define CLS_RT 512 /* rows per tile */
#endif
#ifndef CLS_VS
#define CLS_VS 512 /* vocabulary columns per tile */
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

double cpu_cls_loss(eng *e, const eng_dims *d, const float *xn, const float *wcls, const int32_t *targets,
                    float scale, float *losses, float *dxn, float *dwcls, int acc) {
    const int N = d->N, D = d->D, V = d->V;
    const int nt = omp_get_max_threads();
    /* rows per chunk: the logits buffer (backward only) stays under CHUNK_BYTES; chunks balanced */
    int R = N;
    if (dxn) {
        int cap = (int)(CHUNK_BYTES / ((size_t)V * sizeof(float)));
        if (cap < 1) cap = 1;
        int nch = (N + cap - 1) / cap;
        R = (N + nch - 1) / nch;
    }
    const size_t tile = (size_t)CLS_RT * CLS_VS;
    /* scratch: logits [R, V] (backward) | per-thread tile (forward only) | m, s [nt, R] |
     * lse, target logit [R] | shifts [nt, R, ntile] | dxn partials [nt − 1, R, D] (backward) */
    const int ntile = (V + CLS_VS - 1) / CLS_VS + 1; /* ≥ tiles in any thread's range, any team size */
    const size_t n_logits = dxn ? (size_t)R * V : (size_t)nt * tile;
    const size_t n_sh = (size_t)nt * R * ntile;
    const size_t n_part = dxn ? (size_t)(nt - 1) * R * D : 0;
    float *buf = cpu_scratch(e, CPU_SCRATCH_CLS,
                             (n_logits + 2 * (size_t)nt * R + 2 * (size_t)R + n_sh + n_part + 64) * sizeof(float));
    float *logits = buf, *mx = buf + n_logits, *se = mx + (size_t)nt * R, *lse = se + (size_t)nt * R;
    float *tl = lse + R, *shift = tl + R, *part = shift + n_sh;
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

            /* pass 1: logits tiles and their row statistics; vocabulary tiles outer, so each
             * W tile is read from memory once and stays in cache across the row tiles (x, the
             * smaller operand, is what gets re-read). Each row still sees its tiles in
             * ascending order. */
            for (int c0 = va; c0 < vb; c0 += CLS_VS) {
                const int vs = imin(CLS_VS, vb - c0);
                for (int rt = 0; rt < rows; rt += CLS_RT) {
                    const int rr = imin(CLS_RT, rows - rt);
                    float *L = dxn ? logits + (size_t)rt * V + c0 : logits + (size_t)t * tile;
                    const int ld = dxn ? V : CLS_VS;
                    mm_nt(rr, vs, D, x + (size_t)rt * D, D, wcls + (size_t)c0 * D, D, 0.0f, L, ld);
                    tile_stats(L, ld, rr, vs, c0, tg + rt, m + rt, s + rt, tl + rt,
                               sh + (size_t)rt * ntile + (c0 - va) / CLS_VS, ntile);
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
                /* pass 2: dl = scale·e^(l−m')·e^(m'−lse) − scale·onehot in place, then
                 * dxn_t += dl·W_tile and dW_tile (+)= dlᵀ·x */
                float *dx_t = t == 0 ? dxn + (size_t)r0 * D : part + (size_t)(t - 1) * R * D;
                if (va >= vb) memset(dx_t, 0, (size_t)rows * D * sizeof(float));
                for (int c0 = va; c0 < vb; c0 += CLS_VS) {
                    const int vs = imin(CLS_VS, vb - c0), ti = (c0 - va) / CLS_VS;
                    for (int rt = 0; rt < rows; rt += CLS_RT) {
                        const int rr = imin(CLS_RT, rows - rt);
                        float *L = logits + (size_t)rt * V + c0;
                        for (int i = 0; i < rr; i++) {
                            float *l = L + (size_t)i * V;
                            const int target = tg[rt + i];
                            if (target < 0) {
                                memset(l, 0, vs * sizeof(float));
                                continue;
                            }
                            const float c = scale * expf(sh[(size_t)(rt + i) * ntile + ti] - lse[rt + i]);
#pragma omp simd
                            for (int j = 0; j < vs; j++) l[j] *= c;
                            if (target >= c0 && target < c0 + vs) l[target - c0] -= scale;
                        }
                        mm_nn(rr, D, vs, L, V, wcls + (size_t)c0 * D, D, c0 == va ? 0.0f : 1.0f,
                              dx_t + (size_t)rt * D, D);
                        mm_tn(vs, D, rr, L, V, x + (size_t)rt * D, D, acc || r0 || rt ? 1.0f : 0.0f,
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
            if (losses) losses[r0 + i] = li;
            total += li;
        }
    }
    return total;
}
