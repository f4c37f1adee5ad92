/* fable cuda engine — the GPU side of `fable probe dispatch` and `fable probe weights`
 * (issue 18; the structs are in cuda_plugin.h, the printing in src/probe/probe_cuda.c).
 *
 * dispatch: the reference asked what dispatching a kernel costs on its accelerator. Here:
 *   launch      nkern empty kernels launched one by one on a stream: host time per launch
 *               (the enqueue), and device time per kernel between events around the batch
 *   round trip  one empty kernel + cudaStreamSynchronize
 *   graph       the same nkern kernels captured once as a CUDA graph (capture + instantiate
 *               timed once), then replayed: host time per cudaGraphLaunch, device time per node
 *   graph sync  a one-kernel graph: launch + synchronize
 * weights: the reference asked whether weights can change without recompiling its kernels.
 * The cuda engine's "compiled" step is a captured CUDA graph (cu_run), whose products read
 * the weights by address. Per weight shape of the preset, Y[M,N] = X[M,K]·Wᵀ through the
 * engine's own product (cu_gemm, cuBLASLt, the engine's precision) is captured once, then:
 *   1. replayed: Y0 against a double-precision X·W0ᵀ (sampled rows);
 *   2. W1 copied over W0 in place (what AdamW does to the weights and their bf16 mirror) and
 *      the graph replayed unchanged: Y1 against X·W1ᵀ, and how far Y moved from Y0;
 *   3. W2 at another address: the product captured again and the executable graph updated
 *      in place (cudaGraphExecUpdate), against capturing and instantiating a new graph.
 * The references are computed from the operands as the GPU holds them (bf16-rounded in bf16
 * mode), so the errors measure the product, not the rounding of the inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_internal.cuh"
#include "fable/util.h"

__global__ void k_empty(void) {}

static double now_us(void) { return 1e6 * fb_now(); }

/* Capture n empty kernels on s as an executable graph (g and x: the caller destroys them). */
static void capture_empties(cudaStream_t s, int n, cudaGraph_t *g, cudaGraphExec_t *x) {
    CU_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < n; i++) k_empty<<<1, 32, 0, s>>>();
    CU_CHECK(cudaStreamEndCapture(s, g));
    CU_CHECK(cudaGraphInstantiate(x, *g, 0));
}

/* device µs between two events recorded on s around fn's work */
static float event_us(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0.0f;
    CU_CHECK(cudaEventElapsedTime(&ms, a, b));
    return 1e3f * ms;
}

int cu_probe_dispatch(const eng_opts *o, int quick, fable_cuda_dispatch *r) {
    memset(r, 0, sizeof *r);
    eng *e = cu_create(o);
    if (!e) return -1;
    cu_state *st = cu_st(e);
    cudaStream_t s = st->main;
    const int nk = quick ? 200 : 1000, reps = quick ? 5 : 11;
    r->nkern = nk;
    cudaEvent_t a, b;
    CU_CHECK(cudaEventCreate(&a));
    CU_CHECK(cudaEventCreate(&b));
    double host[32], dev[32];
    for (int i = 0; i < 50; i++) k_empty<<<1, 32, 0, s>>>(); /* warm: module loaded, queue running */
    CU_CHECK(cudaStreamSynchronize(s));
    for (int rep = 0; rep < reps; rep++) {
        CU_CHECK(cudaEventRecord(a, s));
        const double t0 = now_us();
        for (int i = 0; i < nk; i++) k_empty<<<1, 32, 0, s>>>();
        host[rep] = (now_us() - t0) / nk;
        CU_CHECK(cudaEventRecord(b, s));
        CU_CHECK(cudaStreamSynchronize(s));
        dev[rep] = event_us(a, b) / nk;
    }
    CU_CHECK(cudaGetLastError());
    r->launch_us = fb_median(host, reps);
    r->launch_gap_us = fb_median(dev, reps);
    for (int rep = 0; rep < reps; rep++) {
        const double t0 = now_us();
        k_empty<<<1, 32, 0, s>>>();
        CU_CHECK(cudaStreamSynchronize(s));
        host[rep] = now_us() - t0;
    }
    r->launch_sync_us = fb_median(host, reps);

    /* the batch as one graph */
    cudaGraph_t g, g1;
    cudaGraphExec_t x, x1;
    double t0 = now_us();
    capture_empties(s, nk, &g, &x);
    r->capture_us = now_us() - t0;
    CU_CHECK(cudaGraphLaunch(x, s)); /* first launch uploads the graph */
    CU_CHECK(cudaStreamSynchronize(s));
    for (int rep = 0; rep < reps; rep++) {
        CU_CHECK(cudaEventRecord(a, s));
        const double t1 = now_us();
        CU_CHECK(cudaGraphLaunch(x, s));
        host[rep] = now_us() - t1;
        CU_CHECK(cudaEventRecord(b, s));
        CU_CHECK(cudaStreamSynchronize(s));
        dev[rep] = event_us(a, b) / nk;
    }
    r->graph_launch_us = fb_median(host, reps);
    r->graph_gap_us = fb_median(dev, reps);
    capture_empties(s, 1, &g1, &x1);
    CU_CHECK(cudaGraphLaunch(x1, s));
    CU_CHECK(cudaStreamSynchronize(s));
    for (int rep = 0; rep < reps; rep++) {
        const double t1 = now_us();
        CU_CHECK(cudaGraphLaunch(x1, s));
        CU_CHECK(cudaStreamSynchronize(s));
        host[rep] = now_us() - t1;
    }
    r->graph_sync_us = fb_median(host, reps);
    CU_CHECK(cudaGraphExecDestroy(x));
    CU_CHECK(cudaGraphExecDestroy(x1));
    CU_CHECK(cudaGraphDestroy(g));
    CU_CHECK(cudaGraphDestroy(g1));
    CU_CHECK(cudaEventDestroy(a));
    CU_CHECK(cudaEventDestroy(b));
    e->destroy(e);
    return 0;
}

/* ---- weights ------------------------------------------------------------------------------ */

/* a host matrix of n values in [-1, 1) from a fixed generator, rounded as the GPU will hold it */
static void fill(float *h, size_t n, uint64_t *state, int bf) {
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        float v = (float)((*state >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
        h[i] = bf ? __bfloat162float(__float2bfloat16(v)) : v;
    }
}

/* the device copy of host h [n] in the product's operand type */
static void put(void *d, const float *h, size_t n, int bf) {
    if (!bf) {
        CU_CHECK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
        return;
    }
    bf16 *t = (bf16 *)malloc(n * sizeof(bf16));
    if (!t) cu_fatal(__FILE__, __LINE__, "malloc", "out of host memory");
    for (size_t i = 0; i < n; i++) t[i] = __float2bfloat16(h[i]);
    CU_CHECK(cudaMemcpy(d, t, n * sizeof(bf16), cudaMemcpyHostToDevice));
    free(t);
}

/* max over sampled rows of |Y − X·Wᵀ| / max |X·Wᵀ| (double reference); Y on the host [M,N] */
static double rel_err(const float *Y, const float *X, const float *W, int M, int N, int K, int rows) {
    double emax = 0.0, rmax = 0.0;
    for (int s = 0; s < rows; s++) {
        const int i = (int)((long)s * M / rows);
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            const float *x = X + (size_t)i * K, *w = W + (size_t)j * K;
            for (int k = 0; k < K; k++) acc += (double)x[k] * w[k];
            emax = fmax(emax, fabs(Y[(size_t)i * N + j] - acc));
            rmax = fmax(rmax, fabs(acc));
        }
    }
    return rmax > 0 ? emax / rmax : emax;
}

static void download(float *h, const float *d, size_t n) {
    CU_CHECK(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost));
}

static int one_shape(cu_state *st, fable_cuda_wrow *w, int quick) {
    const int M = w->M, N = w->N, K = w->K, bf = st->is_bf16, ab = bf ? CU_BF16 : CU_F32;
    const size_t es = bf ? sizeof(bf16) : sizeof(float), nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
    const int reps = quick ? 5 : 15, rows = quick ? 4 : 16;
    cudaStream_t s = st->main;
    float *hx = (float *)malloc(nx * sizeof(float)), *hw0 = (float *)malloc(nw * sizeof(float));
    float *hw1 = (float *)malloc(nw * sizeof(float)), *hw2 = (float *)malloc(nw * sizeof(float));
    float *hy0 = (float *)malloc(ny * sizeof(float)), *hy = (float *)malloc(ny * sizeof(float));
    void *dx = NULL, *dw = NULL, *dw1 = NULL, *dw2 = NULL;
    float *dy = NULL;
    if (!hx || !hw0 || !hw1 || !hw2 || !hy0 || !hy) {
        free(hx), free(hw0), free(hw1), free(hw2), free(hy0), free(hy);
        return fb_err("probe weights: out of host memory at %s (%d x %d x %d)", w->name, M, N, K);
    }
    if (cudaMalloc(&dx, nx * es) != cudaSuccess || cudaMalloc(&dw, nw * es) != cudaSuccess ||
        cudaMalloc(&dw1, nw * es) != cudaSuccess || cudaMalloc(&dw2, nw * es) != cudaSuccess ||
        cudaMalloc((void **)&dy, ny * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        cudaFree(dx), cudaFree(dw), cudaFree(dw1), cudaFree(dw2), cudaFree(dy);
        free(hx), free(hw0), free(hw1), free(hw2), free(hy0), free(hy);
        return fb_err("probe weights: out of GPU memory at %s (%d x %d x %d)", w->name, M, N, K);
    }
    uint64_t seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)N << 20) ^ (uint64_t)K;
    fill(hx, nx, &seed, bf);
    fill(hw0, nw, &seed, bf);
    fill(hw1, nw, &seed, bf);
    fill(hw2, nw, &seed, bf);
    put(dx, hx, nx, bf);
    put(dw, hw0, nw, bf);
    put(dw1, hw1, nw, bf);
    put(dw2, hw2, nw, bf);
    CU_CHECK(cudaDeviceSynchronize()); /* pageable copies may still be in flight; s does not wait for them */
    double t[32];
    /* Y = X·Wᵀ: A = X [M,K], B = W stored [N,K] (tb = 1), fp32 output */
#define PRODUCT(W) cu_gemm(st, s, st->ws_main, 0, 1, M, N, K, dx, K, (W), K, ab, NULL, dy, N, CU_F32, 1.0f, 0.0f)
    /* the product with weights W captured as a graph; cu_gemm does not tune while a capture is open */
#define CAPTURE(W, out)                                                           \
    do {                                                                          \
        st->capturing = &st->graph[0];                                            \
        CU_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));    \
        PRODUCT(W);                                                               \
        CU_CHECK(cudaStreamEndCapture(s, &(out)));                                \
        st->capturing = NULL;                                                     \
    } while (0)
    PRODUCT(dw); /* the plan is made (and tuned, if asked) outside any capture */
    CU_CHECK(cudaStreamSynchronize(s));
    for (int r = 0; r < reps; r++) {
        const double t0 = now_us();
        PRODUCT(dw);
        CU_CHECK(cudaStreamSynchronize(s));
        t[r] = now_us() - t0;
    }
    w->plain_us = fb_median(t, reps);

    cudaGraph_t g;
    cudaGraphExec_t x;
    CAPTURE(dw, g);
    CU_CHECK(cudaGraphInstantiate(&x, g, 0));
    CU_CHECK(cudaGraphLaunch(x, s));
    CU_CHECK(cudaStreamSynchronize(s));
    download(hy0, dy, ny);
    w->err_first = rel_err(hy0, hx, hw0, M, N, K, rows);
    for (int r = 0; r < reps; r++) {
        const double t0 = now_us();
        CU_CHECK(cudaGraphLaunch(x, s));
        CU_CHECK(cudaStreamSynchronize(s));
        t[r] = now_us() - t0;
    }
    w->replay_us = fb_median(t, reps);

    /* 2. new weights at the same address; the graph as it was */
    for (int r = 0; r < reps; r++) {
        const double t0 = now_us();
        CU_CHECK(cudaMemcpyAsync(dw, dw1, nw * es, cudaMemcpyDeviceToDevice, s));
        CU_CHECK(cudaStreamSynchronize(s));
        t[r] = now_us() - t0;
    }
    w->write_us = fb_median(t, reps);
    CU_CHECK(cudaGraphLaunch(x, s));
    CU_CHECK(cudaStreamSynchronize(s));
    download(hy, dy, ny);
    w->err_inplace = rel_err(hy, hx, hw1, M, N, K, rows);
    double dmax = 0.0, ymax = 0.0;
    for (size_t i = 0; i < ny; i++) dmax = fmax(dmax, fabs((double)hy[i] - hy0[i])), ymax = fmax(ymax, fabs(hy0[i]));
    w->moved = ymax > 0 ? dmax / ymax : 0.0;

    /* 3. weights at another address: capture again, then update the executable graph in
     * place, or instantiate a new one; the pointer alternates so each capture differs */
    cudaGraph_t g2;
    int updated = 1;
    for (int r = 0; r < reps && updated; r++) {
        void *wp = r % 2 ? dw : dw2;
        const double t0 = now_us();
        CAPTURE(wp, g2);
        cudaGraphExecUpdateResultInfo info;
        const cudaError_t ue = cudaGraphExecUpdate(x, g2, &info);
        t[r] = now_us() - t0;
        CU_CHECK(cudaGraphDestroy(g2));
        if (ue != cudaSuccess) cudaGetLastError(), updated = 0; /* refused: the graph is left as it was */
    }
    w->update_us = w->err_newaddr = NAN;
    if (updated) {
        /* the last capture above pointed at dw2 (reps is odd): the updated graph reads W2 */
        w->update_us = fb_median(t, reps);
        CU_CHECK(cudaGraphLaunch(x, s));
        CU_CHECK(cudaStreamSynchronize(s));
        download(hy, dy, ny);
        w->err_newaddr = rel_err(hy, hx, hw2, M, N, K, rows);
    }
    for (int r = 0; r < reps; r++) {
        cudaGraphExec_t x2;
        const double t0 = now_us();
        CAPTURE(dw2, g2);
        CU_CHECK(cudaGraphInstantiate(&x2, g2, 0));
        t[r] = now_us() - t0;
        CU_CHECK(cudaGraphExecDestroy(x2));
        CU_CHECK(cudaGraphDestroy(g2));
    }
    w->recapture_us = fb_median(t, reps);
#undef CAPTURE
#undef PRODUCT
    CU_CHECK(cudaGraphExecDestroy(x));
    CU_CHECK(cudaGraphDestroy(g));
    cudaFree(dx), cudaFree(dw), cudaFree(dw1), cudaFree(dw2), cudaFree(dy);
    free(hx), free(hw0), free(hw1), free(hw2), free(hy0), free(hy);
    return 0;
}

int cu_probe_weights(const eng_opts *o, int quick, fable_cuda_weights *r) {
    eng *e = cu_create(o);
    if (!e) return -1;
    cu_state *st = cu_st(e);
    snprintf(r->precision, sizeof r->precision, "%s", st->is_bf16 ? "bf16" : "fp32");
    int rc = 0;
    for (int i = 0; i < r->n && !rc; i++) rc = one_shape(st, &r->r[i], quick);
    e->destroy(e);
    return rc;
}
