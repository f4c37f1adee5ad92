/* fable cpu engine — the FFN half of a layer: fwdFFN, ffnBwd, dW.
 *   xn = RMSNorm(x)·w;  h1 = xn·W1ᵀ;  h3 = xn·W3ᵀ;  gate = silu(h1)⊙h3;  y = x + gate·W2ᵀ
 *   silu(a) = a·σ(a),  silu'(a) = σ(a)·(1 + a·(1 − σ(a)))
 */
#include <math.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "engine/cpu/cpu_math.h"

/* gate = silu(h1)⊙h3 over n elements (also timed alone by `fable probe`) */
void cpu_swiglu(size_t n, const float *h1, const float *h3, float *gate) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float a = h1[i];
        gate[i] = a / (1.0f + fb_expf(-a)) * h3[i];
    }
}

void cpu_swiglu_drop(size_t n, const float *h1, const float *h3, float *gate, uint32_t site_seed, float p) {
    const uint32_t thresh = eng_drop_thresh(p);
    const float keep = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float a = h1[i];
        gate[i] = a / (1.0f + fb_expf(-a)) * h3[i] * eng_drop_mult(site_seed, thresh, keep, (uint32_t)i);
    }
}

void cpu_ffn_fwd(eng *e, const eng_dims *d, const model_layer *w, eng_ffn_taps *tp, float *x_out) {
    const int N = d->N, D = d->D, F = d->F;
    cpu_rmsnorm_rows(N, D, tp->x, w->rms_ffn, tp->xn, tp->rstd);
    mm_nt(N, F, D, tp->xn, D, w->w1, D, 0.0f, tp->h1, F);
    mm_nt(N, F, D, tp->xn, D, w->w3, D, 0.0f, tp->h3, F);
    if (d->drop_p > 0) cpu_swiglu_drop((size_t)N * F, tp->h1, tp->h3, tp->gate, d->drop_seed ^ ENG_DROP_SITE_GATE, d->drop_p);
    else cpu_swiglu((size_t)N * F, tp->h1, tp->h3, tp->gate);
    if (x_out != tp->x) cpu_copy_floats(x_out, tp->x, (size_t)N * D);
    mm_nt(N, D, F, tp->gate, F, w->w2, F, 1.0f, x_out, D); /* x_out = x + gate·W2ᵀ */
}

void cpu_ffn_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_ffn_taps *tp, const float *dy,
                 eng_ffn_grads *g, float *dx, model_layer *grad, int acc) {
    const int N = d->N, D = d->D, F = d->F;
    mm_nn(N, F, D, dy, D, w->w2, F, 0.0f, g->dgate, F); /* dgate = dy·W2 (⊙ mask/(1−p) below) */
    const size_t NF = (size_t)N * F;
    const uint32_t seed = d->drop_seed ^ ENG_DROP_SITE_GATE, thresh = eng_drop_thresh(d->drop_p);
    const int drop = d->drop_p > 0;
    const float keep = drop ? 1.0f / (1.0f - d->drop_p) : 1.0f;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < NF; i++) {
        float a = tp->h1[i];
        float sg = 1.0f / (1.0f + fb_expf(-a));
        float dgt = drop ? g->dgate[i] * eng_drop_mult(seed, thresh, keep, (uint32_t)i) : g->dgate[i];
        g->dh1[i] = dgt * tp->h3[i] * sg * (1.0f + a * (1.0f - sg));
        g->dh3[i] = dgt * a * sg;
    }
    mm_nn(N, D, F, g->dh1, F, w->w1, D, 0.0f, g->dxn, D); /* dxn  = dh1·W1 */
    mm_nn(N, D, F, g->dh3, F, w->w3, D, 1.0f, g->dxn, D); /* dxn += dh3·W3 */
    cpu_rmsnorm_bwd_rows(N, D, tp->x, w->rms_ffn, tp->rstd, g->dxn, dy, dx, grad->rms_ffn, acc);
}

void cpu_ffn_dw(eng *e, const eng_dims *d, const eng_ffn_taps *tp, const float *dy, const eng_ffn_grads *g,
                model_layer *grad, int acc) {
    const int N = d->N, D = d->D, F = d->F;
    const float beta = acc ? 1.0f : 0.0f;
    mm_tn(D, F, N, dy, D, tp->gate, F, beta, grad->w2, F);   /* dW2 += dyᵀ·gate */
    mm_tn(F, D, N, g->dh1, F, tp->xn, D, beta, grad->w1, D); /* dW1 += dh1ᵀ·xn */
    mm_tn(F, D, N, g->dh3, F, tp->xn, D, beta, grad->w3, D); /* dW3 += dh3ᵀ·xn */
}
