/* fable probe dispatch — what it costs to start the smallest kernel.
 * The cpu engine's kernels are OpenMP parallel regions on one pool of threads (created once):
 * starting one means waking the team, running, and a barrier at the end. Measured:
 *   empty region   #pragma omp parallel {} back to back (the team still spinning: warm)
 *   barrier        one #pragma omp barrier inside a running region
 *   wake-up        an empty region after 20 ms of idleness, when libgomp's threads have
 *                  stopped spinning and sleep in the kernel (futex): the cold start
 *   tiny GEMM      gemm_f32 8×32×8, warm and after 20 ms idle
 *   tiny RMSNorm   the engine's rmsnorm_fwd on one row (engine.h), warm
 * Each is the median of batches (warm: per call inside a batch of many). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fable/engine.h"
#include "fable/gemm.h"
#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_out.h"


int probe_dispatch(const probe_opts *o, probe_dispatch_result *r) {
    memset(r, 0, sizeof *r);
    eng *e = eng_create("cpu", &(eng_opts){.threads = o->threads, .precision = -1});
    if (!e) return -1;
    const int nt = e->threads, D = o->cfg.dim;
    r->threads = nt;
    const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT");
    snprintf(r->wait_policy, sizeof r->wait_policy, "%s", wp ? wp : "default");
    r->spin_count = sc ? atof(sc) : -1;
    const int batches = o->quick ? 5 : 11, inner = o->quick ? 200 : 2000, cold = o->quick ? 5 : 15;
    double t[32];
    volatile int sink = 0;
    for (int b = 0; b < batches; b++) {
        double t0 = fb_now();
        for (int i = 0; i < inner; i++) {
#pragma omp parallel num_threads(nt)
            { __asm__ volatile("" ::: "memory"); }
        }
        t[b] = (fb_now() - t0) / inner;
    }
    r->empty_region_us = 1e6 * fb_median(t, batches);
    for (int b = 0; b < batches; b++) {
        double t0 = 0, t1 = 0;
#pragma omp parallel num_threads(nt)
        {
#pragma omp barrier
#pragma omp master
            t0 = fb_now();
            for (int i = 0; i < inner; i++) {
#pragma omp barrier
            }
#pragma omp master
            t1 = fb_now();
        }
        t[b] = (t1 - t0) / inner;
    }
    r->barrier_us = 1e6 * fb_median(t, batches);
    for (int b = 0; b < cold; b++) {
        usleep(20000);
        double t0 = fb_now();
#pragma omp parallel num_threads(nt)
        { sink++; }
        t[b] = fb_now() - t0;
    }
    r->wake_us = 1e6 * fb_median(t, cold);
    float *A = fb_alloc(8 * 8 * sizeof(float)), *B = fb_alloc(32 * 8 * sizeof(float)), *C = fb_alloc(8 * 32 * sizeof(float));
    float *x = fb_alloc((size_t)D * sizeof(float)), *w = fb_alloc((size_t)D * sizeof(float));
    float *y = fb_alloc((size_t)D * sizeof(float)), rstd[1];
    if (!A || !B || !C || !x || !w || !y) {
        fb_free(A), fb_free(B), fb_free(C), fb_free(x), fb_free(w), fb_free(y);
        e->destroy(e);
        return fb_err("out of memory");
    }
    for (int i = 0; i < 64; i++) A[i] = 0.01f * i;
    for (int i = 0; i < 256; i++) B[i] = 0.02f * i;
    for (int i = 0; i < D; i++) x[i] = w[i] = 1.0f + 0.001f * i;
    for (int b = 0; b < batches; b++) {
        double t0 = fb_now();
        for (int i = 0; i < inner; i++) gemm_f32(0, 1, 8, 32, 8, 1.0f, A, 8, B, 8, 0.0f, C, 32);
        t[b] = (fb_now() - t0) / inner;
    }
    r->tiny_gemm_us = 1e6 * fb_median(t, batches);
    for (int b = 0; b < cold; b++) {
        usleep(20000);
        double t0 = fb_now();
        gemm_f32(0, 1, 8, 32, 8, 1.0f, A, 8, B, 8, 0.0f, C, 32);
        t[b] = fb_now() - t0;
    }
    r->tiny_gemm_cold_us = 1e6 * fb_median(t, cold);
    for (int b = 0; b < batches; b++) {
        double t0 = fb_now();
        for (int i = 0; i < inner; i++) e->rmsnorm_fwd(e, 1, D, x, w, y, rstd);
        e->sync(e);
        t[b] = (fb_now() - t0) / inner;
    }
    r->tiny_rms_us = 1e6 * fb_median(t, batches);
    fb_free(A), fb_free(B), fb_free(C), fb_free(x), fb_free(w), fb_free(y);
    e->destroy(e);
    return 0;
}

void probe_dispatch_print(probe_out *po, const probe_dispatch_result *r) {
    po_begin(po, "dispatch", "dispatch: the cost of starting the smallest kernel (OpenMP thread team)");
    po_num(po, "threads", "threads", r->threads, "%.0f", "");
    po_str(po, "wait_policy", "OMP_WAIT_POLICY", r->wait_policy);
    po_num(po, "empty_region_us", "empty parallel region, team warm", r->empty_region_us, "%.2f", "us");
    po_num(po, "barrier_us", "one barrier", r->barrier_us, "%.2f", "us");
    po_num(po, "wake_us", "empty region after 20 ms idle (waking the team)", r->wake_us, "%.1f", "us");
    po_num(po, "tiny_gemm_us", "gemm_f32 8x32x8, warm", r->tiny_gemm_us, "%.2f", "us");
    po_num(po, "tiny_gemm_cold_us", "gemm_f32 8x32x8 after 20 ms idle", r->tiny_gemm_cold_us, "%.1f", "us");
    po_num(po, "tiny_rmsnorm_us", "engine rmsnorm_fwd of one row, warm", r->tiny_rms_us, "%.2f", "us");
    po_note(po, "per 100 kernel starts: %.0f us with the team warm, %.1f ms if every start found it asleep",
            100 * r->empty_region_us, 100 * r->wake_us / 1e3);
}
