/* fable cpu engine — fused classifier + softmax + cross-entropy.
 *
 * logits = xn·Wclsᵀ [rows, V] computed vocabulary block by block (VB columns): while a
 * block is hot in cache, each row's running max m and Σexp are updated online
 *   m' = max(m, max_blk),  s' = s·e^(m−m') + Σ_blk e^(l−m')
 * so lse = m + log s is known after one pass. The backward pass revisits the blocks:
 *   dl = scale·(e^(l−lse) − onehot(target))  (in place),  dxn += dl_blk·W_blk,
 *   dW_blk += dl_blkᵀ·xn.
 * Rows are processed in chunks so that the single logits buffer holds at most
 * CHUNK_BYTES (one [rows × V] buffer, never more).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"
#include "fable/util.h"

#define VB 8192
#define CHUNK_BYTES ((size_t)160 << 20)

double cpu_cls_loss(eng *e, const eng_dims *d, const float *xn, const float *wcls, const int32_t *targets,
                    float scale, float *losses, float *dxn, float *dwcls, int acc) {
    const int N = d->N, D = d->D, V = d->V;
    int R = (int)(CHUNK_BYTES / ((size_t)V * sizeof(float)));
    if (R < 1) R = 1;
    if (R > N) R = N;
    float *logits = cpu_scratch(e, CPU_SCRATCH_CLS, ((size_t)R * V + 2 * (size_t)R) * sizeof(float));
    float *mx = logits + (size_t)R * V;
    float *se = mx + R;
    double total = 0.0;
    for (int r0 = 0; r0 < N; r0 += R) {
        const int rows = N - r0 < R ? N - r0 : R;
        const float *x = xn + (size_t)r0 * D;
        for (int i = 0; i < rows; i++) { mx[i] = -INFINITY; se[i] = 0.0f; }
        /* pass 1: logits and online logsumexp, block by block */
        for (int v0 = 0; v0 < V; v0 += VB) {
            const int vb = V - v0 < VB ? V - v0 : VB;
            mm_nt(rows, vb, D, x, D, wcls + (size_t)v0 * D, D, 0.0f, logits + v0, V);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < rows; i++) {
                const float *l = logits + (size_t)i * V + v0;
                float bm = -INFINITY;
#pragma omp simd reduction(max : bm)
                for (int j = 0; j < vb; j++) bm = l[j] > bm ? l[j] : bm;
                float m = mx[i] > bm ? mx[i] : bm;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int j = 0; j < vb; j++) s += fb_expf(l[j] - m);
                se[i] = se[i] * expf(mx[i] - m) + s;
                mx[i] = m;
            }
        }
        /* losses; mx becomes lse */
        for (int i = 0; i < rows; i++) {
            const int tg = targets[r0 + i];
            mx[i] += logf(se[i]);
            float li = tg >= 0 ? mx[i] - logits[(size_t)i * V + tg] : 0.0f;
            if (losses) losses[r0 + i] = li;
            total += li;
        }
        if (!dxn) continue;
        /* pass 2: dlogits in place, then the two GEMMs, block by block */
        for (int v0 = 0; v0 < V; v0 += VB) {
            const int vb = V - v0 < VB ? V - v0 : VB;
#pragma omp parallel for schedule(static)
            for (int i = 0; i < rows; i++) {
                float *l = logits + (size_t)i * V + v0;
                const int tg = targets[r0 + i];
                if (tg < 0) {
                    memset(l, 0, vb * sizeof(float));
                    continue;
                }
                const float lse = mx[i];
#pragma omp simd
                for (int j = 0; j < vb; j++) l[j] = scale * fb_expf(l[j] - lse);
                if (tg >= v0 && tg < v0 + vb) l[tg - v0] -= scale;
            }
            mm_nn(rows, D, vb, logits + v0, V, wcls + (size_t)v0 * D, D, v0 ? 1.0f : 0.0f,
                  dxn + (size_t)r0 * D, D);                                     /* dxn += dl·W */
            mm_tn(vb, D, rows, logits + v0, V, x, D, acc || r0 ? 1.0f : 0.0f,
                  dwcls + (size_t)v0 * D, D);                                   /* dW += dlᵀ·xn */
        }
    }
    return total;
}
