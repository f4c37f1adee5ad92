/* fable probe — the machine's roofs, measured with loops of the probe's own (independent
 * of the engine's peak measurement in cpu_peak.c, which the tests compare them with):
 *   FMA peak:  12 independent FMA chains per thread on the widest vectors the build targets
 *              (AVX-512 16 lanes, else AVX2 8, else scalar), fixed iteration count, best of runs.
 *   bandwidth: read (a sum with 8 accumulators), write (plain stores), copy (b = a; counted as
 *              2 × n bytes, STREAM's convention), each thread on its own contiguous part,
 *              buffers touched first by the thread that uses them, best of `reps` passes.
 * Stores are ordinary (the write-allocate read is not counted), as the training step's are
 * except AdamW's non-temporal ones. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "fable/probe.h"
#include "fable/util.h"

/* ---- FMA peak --------------------------------------------------------------------------- */
#if defined(__AVX512F__)
#define VW 16
typedef __m512 vf;
#define V_SET1 _mm512_set1_ps
#define V_FMA _mm512_fmadd_ps
#define V_ADD _mm512_add_ps
#define V_LOAD _mm512_load_ps
#define V_STORE _mm512_store_ps
#define V_ZERO _mm512_setzero_ps
static float v_sum(vf v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
typedef __m256 vf;
#define V_SET1 _mm256_set1_ps
#define V_FMA _mm256_fmadd_ps
#define V_ADD _mm256_add_ps
#define V_LOAD _mm256_load_ps
#define V_STORE _mm256_store_ps
#define V_ZERO _mm256_setzero_ps
static float v_sum(vf v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

#ifdef VW
static float fma_chains(long iters) {
    vf a = V_SET1(0.9999999f), b = V_SET1(1e-8f);
    vf c0 = V_SET1(0), c1 = V_SET1(1), c2 = V_SET1(2), c3 = V_SET1(3), c4 = V_SET1(4), c5 = V_SET1(5);
    vf c6 = V_SET1(6), c7 = V_SET1(7), c8 = V_SET1(8), c9 = V_SET1(9), c10 = V_SET1(10), c11 = V_SET1(11);
    for (long i = 0; i < iters; i++) {
        c0 = V_FMA(c0, a, b); c1 = V_FMA(c1, a, b); c2 = V_FMA(c2, a, b); c3 = V_FMA(c3, a, b);
        c4 = V_FMA(c4, a, b); c5 = V_FMA(c5, a, b); c6 = V_FMA(c6, a, b); c7 = V_FMA(c7, a, b);
        c8 = V_FMA(c8, a, b); c9 = V_FMA(c9, a, b); c10 = V_FMA(c10, a, b); c11 = V_FMA(c11, a, b);
    }
    vf s = V_ADD(V_ADD(V_ADD(c0, c1), V_ADD(c2, c3)), V_ADD(V_ADD(c4, c5), V_ADD(c6, c7)));
    s = V_ADD(s, V_ADD(V_ADD(c8, c9), V_ADD(c10, c11)));
    return v_sum(s);
}
static const double fma_flops_per_iter = 12.0 * VW * 2;
#else
static float fma_chains(long iters) {
    float c[12];
    for (int j = 0; j < 12; j++) c[j] = (float)j;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) c[j] = c[j] * 0.9999999f + 1e-8f;
    float s = 0;
    for (int j = 0; j < 12; j++) s += c[j];
    return s;
}
static const double fma_flops_per_iter = 12.0 * 2;
#endif

static double thread_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double probe_fma_peak(int threads, int quick, double *per_cpu) {
    /* many short runs (~0.5 ms at full speed), best of them: on a shared machine a run that
     * needs every thread on a core at once for long is rarely granted */
    const long iters = 300000;
    const int runs = quick ? 20 : 60;
    volatile float sink = 0;
    double best = 0, best_cpu = 0;
    for (int r = 0; r < runs; r++) {
        float s = 0;
        double cpu_rate = 0;
        double t0 = fb_now();
#pragma omp parallel num_threads(threads) reduction(+ : s, cpu_rate)
        {
            double c0 = thread_cpu_now();
            s += fma_chains(iters);
            double c = thread_cpu_now() - c0;
            if (c > 0) cpu_rate += fma_flops_per_iter * iters / c / 1e9;
        }
        double dt = fb_now() - t0;
        sink += s;
        double g = fma_flops_per_iter * iters * threads / dt / 1e9;
        if (g > best) best = g;
        if (cpu_rate > best_cpu) best_cpu = cpu_rate;
    }
    if (per_cpu) *per_cpu = best_cpu;
    return best;
}

/* ---- bandwidth -------------------------------------------------------------------------- */
/* The loops below stay inside their buffers by construction; under AddressSanitizer they are
 * left uninstrumented, so that a sanitizer build still measures the memory, not the checks. */
#if defined(__SANITIZE_ADDRESS__)
#define PROBE_NO_ASAN __attribute__((no_sanitize_address))
#else
#define PROBE_NO_ASAN
#endif
PROBE_NO_ASAN static float read_part(const float *p, size_t n) {
#ifdef VW
    vf s0 = V_ZERO(), s1 = V_ZERO(), s2 = V_ZERO(), s3 = V_ZERO(), s4 = V_ZERO(), s5 = V_ZERO(), s6 = V_ZERO(),
       s7 = V_ZERO();
    size_t i = 0;
    for (; i + 8 * VW <= n; i += 8 * VW) {
        s0 = V_ADD(s0, V_LOAD(p + i));
        s1 = V_ADD(s1, V_LOAD(p + i + VW));
        s2 = V_ADD(s2, V_LOAD(p + i + 2 * VW));
        s3 = V_ADD(s3, V_LOAD(p + i + 3 * VW));
        s4 = V_ADD(s4, V_LOAD(p + i + 4 * VW));
        s5 = V_ADD(s5, V_LOAD(p + i + 5 * VW));
        s6 = V_ADD(s6, V_LOAD(p + i + 6 * VW));
        s7 = V_ADD(s7, V_LOAD(p + i + 7 * VW));
    }
    float s = v_sum(V_ADD(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)), V_ADD(V_ADD(s4, s5), V_ADD(s6, s7))));
    for (; i < n; i++) s += p[i];
    return s;
#else
    float s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
#endif
}

PROBE_NO_ASAN static void write_part(float *p, size_t n, float v) {
#ifdef VW
    vf x = V_SET1(v);
    size_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        V_STORE(p + i, x);
        V_STORE(p + i + VW, x);
        V_STORE(p + i + 2 * VW, x);
        V_STORE(p + i + 3 * VW, x);
    }
    for (; i < n; i++) p[i] = v;
#else
    for (size_t i = 0; i < n; i++) p[i] = v;
#endif
}

PROBE_NO_ASAN static void copy_part(float *dst, const float *src, size_t n) {
#ifdef VW
    size_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        V_STORE(dst + i, V_LOAD(src + i));
        V_STORE(dst + i + VW, V_LOAD(src + i + VW));
        V_STORE(dst + i + 2 * VW, V_LOAD(src + i + 2 * VW));
        V_STORE(dst + i + 3 * VW, V_LOAD(src + i + 3 * VW));
    }
    for (; i < n; i++) dst[i] = src[i];
#else
    memcpy(dst, src, n * sizeof(float));
#endif
}

/* thread t's part of n floats, kept 64-float (256-byte) aligned */
static void part(size_t n, int t, int nt, size_t *i0, size_t *len) {
    size_t blk = (n / nt + 63) & ~(size_t)63;
    size_t a = blk * t, b = a + blk;
    if (a > n) a = n;
    if (b > n || t == nt - 1) b = n;
    *i0 = a;
    *len = b - a;
}

enum { BW_READ, BW_WRITE, BW_COPY };

/* cpu_clock (one thread only): time by the thread's CPU clock instead of the wall clock */
static double bw_run(int kind, size_t bytes, int threads, int reps, int cpu_clock) {
    size_t n = bytes / sizeof(float);
    n &= ~(size_t)63;
    if (n < 64) n = 64;
    float *a = fb_alloc(n * sizeof(float)), *b = kind == BW_COPY ? fb_alloc(n * sizeof(float)) : NULL;
    if (!a || (kind == BW_COPY && !b)) {
        fb_free(a);
        fb_free(b);
        return 0;
    }
    /* first touch by the thread that will use each part */
#pragma omp parallel num_threads(threads)
    {
        size_t i0, len;
        part(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &len);
        write_part(a + i0, len, 1.0f);
        if (b) write_part(b + i0, len, 0.0f);
    }
    /* passes until ~2 ms have gone by, timed together: small (cached) sets need many */
    double best = 0;
    volatile float sink = 0;
    const double moved = (double)n * sizeof(float) * (kind == BW_COPY ? 2 : 1);
    /* passes inside one parallel region, so that a cached set's pass is not just the cost
     * of starting the region */
    const int inner = moved < 8e6 ? (int)(8e6 / moved) : 1;
    for (int r = 0; r < reps; r++) {
        long passes = 0;
        double t0 = cpu_clock ? thread_cpu_now() : fb_now(), dt;
        do {
            float s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
            {
                size_t i0, len;
                part(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &len);
                for (int k = 0; k < inner; k++) {
                    __asm__ volatile("" ::: "memory"); /* every pass really reads */
                    if (kind == BW_READ) s += read_part(a + i0, len);
                    else if (kind == BW_WRITE) write_part(a + i0, len, (float)(r + k));
                    else copy_part(b + i0, a + i0, len);
                }
            }
            sink += s;
            passes += inner;
            dt = (cpu_clock ? thread_cpu_now() : fb_now()) - t0;
        } while (dt < 2e-3);
        double g = moved * passes / dt / 1e9;
        if (g > best) best = g;
    }
    fb_free(a);
    fb_free(b);
    return best;
}

double probe_bw_read(size_t bytes, int threads, int reps) { return bw_run(BW_READ, bytes, threads, reps, 0); }
double probe_bw_write(size_t bytes, int threads, int reps) { return bw_run(BW_WRITE, bytes, threads, reps, 0); }
double probe_bw_copy(size_t bytes, int threads, int reps) { return bw_run(BW_COPY, bytes, threads, reps, 0); }
double probe_bw_read_cpu(size_t bytes, int reps) { return bw_run(BW_READ, bytes, 1, reps, 1); }
