/* bench_gemm — fable's gemm_f32 vs OpenBLAS cblas_sgemm on the training shapes.
 *
 * Build (after `make`, from the repository root):   make -C bench bench_gemm
 * Run:   build/bench/bench_gemm [--threads 1,2] [--models 110m,15m,260k] [--forms fwd,dx,dw]
 *                               [--min-time S] [--cold] [--peak P1,P2] [--no-header]
 *
 * For every shape and form it alternates calls of each contender (ours with the default
 * kernel, ours with a pre-packed weight, ours with the AVX2 6×16 kernel, OpenBLAS), so
 * that noise from other work on the machine hits all of them alike, and prints best and
 * median GFLOP/s, % of the measured FMA peak, and ours/OpenBLAS (best vs best).
 * --cold flushes the caches (writes 256 MB) before every call, as a training step sees
 * weights that are not cached. The FMA peak is measured at start with independent FMA
 * chains on zmm (AVX-512) and ymm (AVX2) registers; --peak P1,P2 makes %pk divide by
 * given 1- and 2-thread peaks instead (the machine is shared: a peak measured while
 * others run comes out low). Each row also reports how busy the other processes kept
 * the machine while it was measured.
 * Output is a markdown table (one row per shape × form × threads).
 */
#include "fable/gemm.h"
#include "fable/util.h"

#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

char *openblas_get_corename(void);
char *openblas_get_config(void);
void openblas_set_num_threads(int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- FMA peak ------------------------------------------------------------------- */
#if defined(__AVX2__) && defined(__FMA__)
#define FMA12(T, F, S)                                                                   \
    T a0 = S(0), a1 = S(1), a2 = S(2), a3 = S(3), a4 = S(4), a5 = S(5), a6 = S(6), a7 = S(7), \
      a8 = S(8), a9 = S(9), a10 = S(10), a11 = S(11), b = S(1.0000001f), c = S(1e-7f);   \
    for (long i = 0; i < iters; i++) {                                                   \
        a0 = F(a0, b, c); a1 = F(a1, b, c); a2 = F(a2, b, c); a3 = F(a3, b, c);          \
        a4 = F(a4, b, c); a5 = F(a5, b, c); a6 = F(a6, b, c); a7 = F(a7, b, c);          \
        a8 = F(a8, b, c); a9 = F(a9, b, c); a10 = F(a10, b, c); a11 = F(a11, b, c);      \
    }
__attribute__((noinline)) static float fma_ymm(long iters) {
    FMA12(__m256, _mm256_fmadd_ps, _mm256_set1_ps)
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0];
}
#ifdef __AVX512F__
__attribute__((noinline)) static float fma_zmm(long iters) {
    FMA12(__m512, _mm512_fmadd_ps, _mm512_set1_ps)
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}
#endif
/* best of 3 runs of ~0.2 s, GFLOP/s over nt threads; lanes = 8 (ymm) or 16 (zmm) */
static double peak(int nt, int lanes) {
    long iters = 20000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        float sink = 0;
        double t = now();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
        {
#ifdef __AVX512F__
            sink += lanes == 16 ? fma_zmm(iters) : fma_ymm(iters);
#else
            sink += fma_ymm(iters);
#endif
        }
        t = now() - t;
        double g = nt * iters * 12.0 * lanes * 2 / t / 1e9;
        if (g > best && sink != 12345.f) best = g;
    }
    return best;
}
#else
static double peak(int nt, int lanes) { return 0; }
#endif

/* ---- shapes ------------------------------------------------------------------------ */
typedef struct { const char *model; int out, in, T; } shape;
static const shape shapes[] = {
    {"110m", 768, 768, 256},   {"110m", 2048, 768, 256},  {"110m", 768, 2048, 256},
    {"110m", 32000, 768, 256}, {"110m", 768, 768, 1024},  {"110m", 2048, 768, 1024},
    {"110m", 768, 2048, 1024}, {"110m", 32000, 768, 1024},
    {"15m", 288, 288, 2048},   {"15m", 768, 288, 2048},   {"15m", 288, 768, 2048},
    {"15m", 32000, 288, 2048},
    {"260k", 64, 64, 8192},    {"260k", 172, 64, 8192},   {"260k", 64, 172, 8192},
    {"260k", 512, 64, 8192},
};

/* CPU time used by other processes while a row was measured, as % of all cores: the
 * machine is shared, so each row says how quiet it was. /proc/stat busy jiffies minus
 * this process's own CPU time (getrusage). */
static double busy_jiffies(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f) return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8) v[0] = 0;
    fclose(f);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
}
static double own_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static char *flushbuf;
static void flush_caches(void) {
    const size_t n = 256u << 20;
    if (!flushbuf) flushbuf = malloc(n);
    for (size_t i = 0; i < n; i += 64) flushbuf[i] = (char)i;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { C_OURS, C_PACKED, C_AVX2, C_BLAS, NC };

int main(int argc, char **argv) {
    const char *threads = "1,2", *models = "110m,15m,260k", *forms = "fwd,dx,dw";
    double min_time = 0.4, pk_override[3] = {0, 0, 0};
    int cold = 0, header = 1, pack = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--forms") && i + 1 < argc) forms = argv[++i];
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--cold")) cold = 1;
        else if (!strcmp(argv[i], "--peak") && i + 1 < argc)
            sscanf(argv[++i], "%lf,%lf", &pk_override[1], &pk_override[2]);
        else if (!strcmp(argv[i], "--no-header")) header = 0;
        else if (!strcmp(argv[i], "--pack")) pack = 1;
        else { fprintf(stderr, "usage: %s [--threads 1,2] [--models 110m,15m,260k] [--forms fwd,dx,dw] [--min-time S] [--cold] [--peak P1,P2] [--no-header] [--pack]\n", argv[0]); return 2; }
    }
    const char *env_ct = getenv("OPENBLAS_CORETYPE"), *env_l2 = getenv("OPENBLAS_L2_SIZE");
    int have_avx2 = gemm_set_kernel("avx2") == 0;
    gemm_set_kernel(getenv("FABLE_GEMM_KERNEL") ? getenv("FABLE_GEMM_KERNEL") : "avx512");
    const char *ours = gemm_kernel_name();
    double pk_z[3] = {0, peak(1, 16), peak(2, 16)}, pk_y[3] = {0, peak(1, 8), peak(2, 8)};
    double pk_ref[3];   /* the peak that %pk divides by */
    for (int t = 1; t <= 2; t++)
        pk_ref[t] = pk_override[t] > 0 ? pk_override[t] : pk_z[t] > 0 ? pk_z[t] : pk_y[t];
    if (header) {
        printf("# bench_gemm: ours = %s kernel; OpenBLAS core %s (%s); OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s%s\n",
               ours, openblas_get_corename(), openblas_get_config(), env_ct ? env_ct : "(unset)",
               env_l2 ? env_l2 : "(unset)", cold ? "; caches flushed before each call" : "");
        printf("# FMA peak GFLOP/s measured now: AVX-512 %.0f (1 thr) %.0f (2 thr); AVX2 %.0f (1 thr) %.0f (2 thr);"
               " %%pk divides by %.0f (1 thr) / %.0f (2 thr)\n",
               pk_z[1], pk_z[2], pk_y[1], pk_y[2], pk_ref[1], pk_ref[2]);
        printf("# GFLOP/s best / median over alternating runs; ours/OB = best / best; busy = CPU %% used by\n"
               "# other processes during the row (of all cores)\n\n");
        printf("| model | form | M×N×K | thr | ours | %%pk | ours prepacked | ours avx2 6×16 | OpenBLAS | %%pk | ours/OB | busy |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    fflush(stdout);

    for (const char *tp = threads; *tp;) {
        int nt = atoi(tp);
        while (*tp && *tp != ',') tp++;
        if (*tp == ',') tp++;
        omp_set_num_threads(nt);
        openblas_set_num_threads(nt);
        gemm_set_threads(nt);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const shape *sh = &shapes[s];
            if (!strstr(models, sh->model)) continue;
            for (int f = 0; f < 3; f++) {
                static const char *fname[] = {"fwd", "dx", "dw"};
                if (!strstr(forms, fname[f])) continue;
                /* fwd: Y[T,out] = X[T,in]·Wᵀ   dx: dX[T,in] = dY[T,out]·W   dW[out,in] += dYᵀ·X */
                int tA = f == 2, tB = f == 0;
                int M = f == 2 ? sh->out : sh->T, N = f == 0 ? sh->out : sh->in;
                int K = f == 0 ? sh->in : f == 1 ? sh->out : sh->T;
                int lda = tA ? M : K, ldb = tB ? K : N;
                float beta = f == 2 ? 1.0f : 0.0f;
                size_t na = (size_t)M * K, nb = (size_t)K * N, ncm = (size_t)M * N;
                /* fable's allocator, as the training step has (2 MB+ buffers on huge pages) */
                float *A = fb_alloc(na * 4), *B = fb_alloc(nb * 4), *C = fb_alloc(ncm * 4);
                for (size_t i = 0; i < na; i++) A[i] = (float)((i * 7 % 13) - 6) * 0.01f;
                for (size_t i = 0; i < nb; i++) B[i] = (float)((i * 5 % 11) - 5) * 0.01f;
                for (size_t i = 0; i < ncm; i++) C[i] = 0.0f;
                gemm_set_kernel(ours);
                gemm_packed *P = f < 2 ? gemm_pack_b(tB, K, N, B, ldb) : NULL;
                double flops = 2.0 * M * N * K;
                double *t[NC];
                int cap = 1000, n = 0;
                for (int c = 0; c < NC; c++) t[c] = malloc(sizeof(double) * cap);
                double total = 0, busy0 = busy_jiffies(), own0 = own_cpu(), wall0 = now();
                for (int rep = -1; n < cap && (rep < 3 || total < min_time * NC); rep++) {
                    for (int c = 0; c < NC; c++) {
                        if (c == C_PACKED && !P) continue;
                        if (c == C_AVX2 && !have_avx2) continue;
                        if (c == C_AVX2) gemm_set_kernel("avx2");
                        if (cold) flush_caches();
                        double t0 = now();
                        switch (c) {
                        case C_OURS: case C_AVX2:
                            gemm_f32(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
                            break;
                        case C_PACKED:
                            gemm_f32_prepacked(tA, M, 1.0f, A, lda, P, beta, C, N);
                            break;
                        case C_BLAS:
                            cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans,
                                        tB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda,
                                        B, ldb, beta, C, N);
                            break;
                        }
                        double dt = now() - t0;
                        if (c == C_AVX2) gemm_set_kernel(ours);
                        if (rep >= 0) { t[c][n] = dt; total += dt; }   /* rep -1: warm-up */
                    }
                    if (rep >= 0) n++;
                }
                double busy = (busy_jiffies() - busy0 - (own_cpu() - own0)) /
                              ((now() - wall0) * sysconf(_SC_NPROCESSORS_ONLN));
                double best[NC], med[NC];
                for (int c = 0; c < NC; c++) {
                    qsort(t[c], n, sizeof(double), cmpd);
                    best[c] = flops / t[c][0] / 1e9;
                    med[c] = flops / t[c][n / 2] / 1e9;
                }
                char dims[64], cell[NC][32];
                snprintf(dims, sizeof dims, "%d×%d×%d", M, N, K);
                for (int c = 0; c < NC; c++) {
                    if ((c == C_PACKED && !P) || (c == C_AVX2 && !have_avx2)) snprintf(cell[c], 32, "–");
                    else snprintf(cell[c], 32, "%.0f / %.0f", best[c], med[c]);
                }
                double pk = pk_ref[nt <= 2 ? nt : 2] * (nt > 2 ? nt / 2.0 : 1);
                printf("| %s %d×%d T=%d | %s | %s | %d | %s | %.0f%% | %s | %s | %s | %.0f%% | %.2f | %.0f%% |\n",
                       sh->model, sh->out, sh->in, sh->T, fname[f], dims, nt, cell[C_OURS],
                       100 * best[C_OURS] / pk, cell[C_PACKED], cell[C_AVX2], cell[C_BLAS],
                       100 * best[C_BLAS] / pk, best[C_OURS] / best[C_BLAS], busy < 0 ? 0 : 100 * busy);
                fflush(stdout);
                for (int c = 0; c < NC; c++) free(t[c]);
                gemm_packed_free(P);
                fb_free(A); fb_free(B); fb_free(C);
            }
        }
    }
    if (pack) {
        /* Cost of pre-packing: gemm_repack_b of each weight in both layouts (forward reads
         * op(B) = Wᵀ: transB = 1; dx reads W: transB = 0), once per optimizer step. */
        gemm_set_kernel(ours);
        printf("\n| weight W[out×in] | thr | repack fwd layout (Wᵀ) ms | repack dx layout (W) ms | GB/s (read+write) |\n");
        printf("|---|---|---|---|---|\n");
        for (const char *tp = threads; *tp;) {
            int nt = atoi(tp);
            while (*tp && *tp != ',') tp++;
            if (*tp == ',') tp++;
            omp_set_num_threads(nt);
            gemm_set_threads(nt);
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                const shape *sh = &shapes[s];
                int dup = 0;
                for (size_t r = 0; r < s; r++)
                    dup |= shapes[r].out == sh->out && shapes[r].in == sh->in;
                if (dup || !strstr(models, sh->model)) continue;
                size_t n = (size_t)sh->out * sh->in;
                float *W = malloc(n * 4);
                for (size_t i = 0; i < n; i++) W[i] = (float)(i % 17) * 0.01f;
                double best[2] = {1e9, 1e9};
                for (int tB = 0; tB < 2; tB++) {
                    /* op(B) is K×N: forward K = in, N = out (W is N×K); dx K = out, N = in */
                    int K = tB ? sh->in : sh->out, N = tB ? sh->out : sh->in;
                    gemm_packed *P = gemm_pack_b(tB, K, N, W, sh->in);
                    for (int r = 0; r < 5 && P; r++) {
                        double t0 = now();
                        gemm_repack_b(P, W, sh->in);
                        double dt = now() - t0;
                        if (dt < best[tB]) best[tB] = dt;
                    }
                    gemm_packed_free(P);
                }
                printf("| %s %d×%d | %d | %.3f | %.3f | %.1f |\n", sh->model, sh->out, sh->in, nt,
                       best[1] * 1e3, best[0] * 1e3, 8.0 * n / ((best[0] + best[1]) / 2) / 1e9);
                free(W);
            }
        }
    }
    return 0;
}
