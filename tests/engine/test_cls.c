/* The fused classifier + softmax + cross-entropy against a naive double-precision
 * reference, at sizes that exercise several vocabulary tiles (V not a multiple of the
 * tile) and, in the full run, several row chunks; some targets ignored (-1). Also with
 * 1, 3 and 5 threads on a small vocabulary, where some threads' vocabulary ranges are empty
 * (ranges are cut at multiples of 32 columns). */
#include <stdint.h>

#include "fable/engine.h"
#include "fable/util.h"
#include "testlib.h"

static void check(int threads, int D, int V, int N) {
    fb_rng r;
    fb_rng_seed(&r, 5);
    float *xn = fb_alloc((size_t)N * D * 4), *w = fb_alloc((size_t)V * D * 4);
    float *dxn = fb_alloc((size_t)N * D * 4), *dw = fb_alloc((size_t)V * D * 4), *loss = fb_alloc((size_t)N * 4);
    int32_t *tg = fb_alloc((size_t)N * 4);
    for (size_t i = 0; i < (size_t)N * D; i++) xn[i] = (float)fb_rng_normal(&r);
    for (size_t i = 0; i < (size_t)V * D; i++) w[i] = (float)(0.3 * fb_rng_normal(&r));
    int nv = 0;
    for (int n = 0; n < N; n++) {
        tg[n] = n % 17 == 3 ? -1 : (int32_t)(fb_rng_u32(&r) % V);
        nv += tg[n] >= 0;
    }
    for (size_t i = 0; i < (size_t)V * D; i++) dw[i] = 1e-3f; /* dW accumulates (+=) onto this */
    eng *e = eng_create("cpu", &(eng_opts){.threads = threads, .precision = -1});
    eng_dims d = {.B = 1, .T = N, .N = N, .D = D, .V = V};
    const float scale = 1.0f / nv;
    double sum;
    e->cls_loss(e, &d, xn, w, tg, scale, loss, &sum, dxn, dw, 1);

    /* reference in double */
    double *ref_dx = calloc((size_t)N * D, sizeof(double)), *ref_dw = calloc((size_t)V * D, sizeof(double));
    double *lg = malloc((size_t)V * sizeof(double)), ref_sum = 0, max_loss_err = 0;
    for (int n = 0; n < N; n++) {
        double m = -1e300;
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += (double)xn[(size_t)n * D + k] * w[(size_t)v * D + k];
            lg[v] = s;
            m = s > m ? s : m;
        }
        double z = 0;
        for (int v = 0; v < V; v++) z += exp(lg[v] - m);
        double lse = m + log(z);
        if (tg[n] < 0) {
            CHECK(loss[n] == 0.0f, "ignored row %d has loss %g", n, loss[n]);
            continue;
        }
        double l = lse - lg[tg[n]];
        ref_sum += l;
        double err = fabs(l - loss[n]) / (fabs(l) + 1e-6);
        max_loss_err = err > max_loss_err ? err : max_loss_err;
        for (int v = 0; v < V; v++) {
            double g = (exp(lg[v] - lse) - (v == tg[n])) * scale;
            for (int k = 0; k < D; k++) {
                ref_dx[(size_t)n * D + k] += g * w[(size_t)v * D + k];
                ref_dw[(size_t)v * D + k] += g * xn[(size_t)n * D + k];
            }
        }
    }
    float *rdx = malloc((size_t)N * D * 4);
    for (size_t i = 0; i < (size_t)N * D; i++) rdx[i] = (float)ref_dx[i];
    /* compare dW without the offset so the tolerance is relative to the gradient itself */
    double mdw = 0, mref = 0;
    for (size_t i = 0; i < (size_t)V * D; i++) {
        double a = (double)dw[i] - 1e-3, b = ref_dw[i];
        mdw = fabs(a - b) > mdw ? fabs(a - b) : mdw;
        mref = fabs(b) > mref ? fabs(b) : mref;
    }
    double e_dx = t_rel_err(dxn, rdx, (size_t)N * D, NULL), e_dw = mdw / mref;
    double e_sum = fabs(sum - ref_sum) / ref_sum;
    fprintf(stderr, "threads %d N %d V %d: loss sum rel err %.2e, per-row max %.2e, dxn %.2e, dWcls %.2e\n",
            e->threads, N, V, e_sum, max_loss_err, e_dx, e_dw);
    CHECK(e_sum < 1e-5, "loss sum %g vs %g", sum, ref_sum);
    CHECK(max_loss_err < 1e-5, "per-row loss error %g", max_loss_err);
    CHECK(e_dx < 1e-4, "dxn rel err %g", e_dx);
    CHECK(e_dw < 1e-4, "dWcls rel err %g", e_dw);
    /* forward-only path gives the same losses */
    float *loss2 = fb_alloc((size_t)N * 4);
    double sum2;
    e->cls_loss(e, &d, xn, w, tg, 1.0f, loss2, &sum2, NULL, NULL, 0);
    /* bit for bit with fable's GEMM (its result does not depend on C's leading dimension,
     * and the forward-only call writes compact tiles); OpenBLAS (FABLE_GEMM=blas, or
     * FABLE_GEMM_KERNEL=blas under fable's layout) may round differently for the two layouts */
    const char *gm = getenv("FABLE_GEMM"), *gk = getenv("FABLE_GEMM_KERNEL");
    if ((gm && !strcmp(gm, "blas")) || (gk && !strcmp(gk, "blas"))) {
        double wl = 0;
        for (int n = 0; n < N; n++) wl = fmax(wl, fabs((double)loss[n] - loss2[n]) / (fabs((double)loss[n]) + 1e-6));
        CHECK(wl < 1e-6 && fabs(sum2 - sum) <= 1e-6 * fabs(sum), "forward-only losses differ: rel %g", wl);
    } else {
        CHECK(sum2 == sum && memcmp(loss, loss2, (size_t)N * 4) == 0, "forward-only losses differ");
    }
    /* acc = 0 overwrites dW (NaN in it must not survive) and gives the accumulated result
     * minus the offset */
    for (size_t i = 0; i < (size_t)V * D; i++) dw[i] = NAN;
    double sum3;
    e->cls_loss(e, &d, xn, w, tg, scale, loss2, &sum3, dxn, dw, 0);
    double mdw0 = 0;
    for (size_t i = 0; i < (size_t)V * D; i++) {
        double err = isfinite(dw[i]) ? fabs((double)dw[i] - ref_dw[i]) : INFINITY;
        mdw0 = err > mdw0 ? err : mdw0;
    }
    CHECK(mdw0 / mref < 1e-4, "dWcls with acc = 0: rel err %g", mdw0 / mref);
    e->destroy(e);
    free(ref_dx); free(ref_dw); free(lg); free(rdx);
    fb_free(xn); fb_free(w); fb_free(dxn); fb_free(dw); fb_free(loss); fb_free(loss2); fb_free(tg);
}

int main(void) {
    const int quick = getenv("FABLE_TEST_QUICK") != NULL;
    check(0, 32, 20011, quick ? 300 : 2300); /* 2300 x 20011 floats > one 160 MB chunk */
    const int threads[] = {1, 3, 5};
    for (int i = 0; i < 3; i++) check(threads[i], 16, 70, 37);
    check(2, 16, 70, 4100 * 2 + 37); /* the forward-only call in 3 chunks of ≤ 4096 rows */
    return t_done("test_cls");
}
