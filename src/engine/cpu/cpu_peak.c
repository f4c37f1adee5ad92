/* fable cpu engine — measured FMA peak (GFLOP/s over all threads), the denominator of MFU.
 * Uses the widest FMA the build targets (AVX-512 16-wide where -march=native has it, else
 * AVX2 8-wide, else scalar), so MFU is against what this machine can really do.
 * Each thread runs 10 independent FMA chains (enough to cover FMA latency × ports
 * on current x86 cores) for a fixed number of iterations; peak = flops / wall time. */
#include <omp.h>
#include <stdlib.h>

#include "engine/cpu/cpu_internal.h"
#include "fable/util.h"

#if defined(__AVX512F__)
#include <immintrin.h>
static double fma_loop(long iters) {
    __m512 acc[10], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 10; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 10; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < 10; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}
static const double flops_per_iter = 10 * 16 * 2;
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static double fma_loop(long iters) {
    __m256 acc[10], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 10; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 10; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float s = 0, tmp[8];
    for (int i = 0; i < 10; i++) {
        _mm256_storeu_ps(tmp, acc[i]);
        s += tmp[0];
    }
    return s + (double)iters * 10 * 8 * 2 * 0; /* keep the result live */
}
static const double flops_per_iter = 10 * 8 * 2;
#else
static double fma_loop(long iters) {
    float acc[16];
    for (int i = 0; i < 16; i++) acc[i] = (float)i;
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 16; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < 16; i++) s += acc[i];
    return s;
}
static const double flops_per_iter = 16 * 2;
#endif

double eng_cpu_measure_peak(int threads) {
    /* 5 runs of ~30 ms each, best of them: a short probe is easily disturbed on a shared VM.
     * FABLE_PEAK_ITERS shortens them (under valgrind, 4×10⁸ FMAs would take minutes). */
    const char *e = getenv("FABLE_PEAK_ITERS");
    const long iters = e && atol(e) >= 4 ? atol(e) : 80000000;
    volatile double sink = 0;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = fb_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += fma_loop(iters / 4);
        double dt = fb_now() - t0;
        double g = flops_per_iter * (iters / 4) * threads / dt / 1e9;
        best = g > best ? g : best;
    }
    return best;
}
