/* test_gemm — gemm_f32 / gemm_f32_prepacked against a naive double-precision reference.
 *
 * Error bound, per element:  |C - ref| ≤ 1e-5 · (|alpha|·Σ_p |op(A)[i][p]|·|op(B)[p][j]| + |beta·C0[i][j]|)
 * i.e. 1e-5 relative to the magnitude of the sum of |a||b| (fp32 accumulation over K ≤ 2048
 * in blocks of ≤ 256 has a worst-case bound of a few 1e-5 and a typical one of ~1e-6).
 *
 * Every matrix is allocated to its exact extent ((rows-1)·ld + cols floats), so under ASan
 * (tests/run.sh, FABLE_TEST_QUICK=1) a read past any matrix is caught; the gaps between rows
 * when ld > cols hold NaN, so reading them would poison the result; the gaps of C must come
 * back untouched; beta = 0 runs on a C filled with NaN.
 * Covered: all 4 transpose cases × alpha/beta variants × odd sizes (1..70, K=1, M=1, N=1),
 * sizes crossing the KC/MC/NC block edges, 1 and 2 threads, calls from inside a parallel
 * region, every compiled-in kernel (avx512, avx2, blas), pre-packed B (incl. repack), and
 * the real training shapes (spot-checked entries). */
#include "fable/gemm.h"
#include "fable/util.h"
#include "testlib.h"

#include <omp.h>
#include <stdint.h>

static int quick;
static uint64_t rng = 88172645463325252ULL;
static float frand(void) {   /* uniform [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static int irand(int n) { frand(); return (int)((rng >> 11) % (uint64_t)n); }

typedef struct { int rows, cols, ld; float *p; } mat;

static mat mat_new(int rows, int cols, int ld) {
    mat m = {rows, cols, ld, NULL};
    size_t n = (size_t)(rows - 1) * ld + cols;
    m.p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) m.p[i] = NAN;                /* gaps stay NaN */
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) m.p[(size_t)r * ld + c] = frand();
    return m;
}
static size_t mat_n(const mat *m) { return (size_t)(m->rows - 1) * m->ld + m->cols; }

/* op(X)[r][c] for a stored matrix X. */
static inline float opx(const mat *m, int t, int r, int c) {
    return t ? m->p[(size_t)c * m->ld + r] : m->p[(size_t)r * m->ld + c];
}

/* Check C (after) against the reference on a set of entries; C0 = C before the call. */
static double check_entries(int tA, int tB, int M, int N, int K, float alpha, float beta,
                            const mat *A, const mat *B, const float *C0, const mat *C,
                            int nsample, const char *what) {
    double worst = 0;
    int bad = 0;
    int total = nsample > 0 ? nsample : M * N;
    for (int s = 0; s < total; s++) {
        int i = nsample > 0 ? irand(M) : s / N, j = nsample > 0 ? irand(N) : s % N;
        double acc = 0, mag = 0;
        if (alpha != 0.0f)
            for (int p = 0; p < K; p++) {
                double a = opx(A, tA, i, p), b = opx(B, tB, p, j);
                acc += a * b;
                mag += fabs(a * b);
            }
        double c0 = C0[(size_t)i * C->ld + j];
        double ref = (double)alpha * acc + (beta != 0.0f ? (double)beta * c0 : 0.0);
        double scale = fabs((double)alpha) * mag + (beta != 0.0f ? fabs(beta * c0) : 0.0);
        double got = C->p[(size_t)i * C->ld + j];
        double err = fabs(got - ref) / (scale > 1e-30 ? scale : 1e-30);
        if (!(err <= 1e-5) && !(fabs(got - ref) < 1e-30)) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: C[%d][%d] = %.9g, ref %.9g (rel %.3g)\n", what, i, j, got, ref, err);
            err = err == err ? err : 1e9;
        }
        if (err > worst && fabs(got - ref) >= 1e-30) worst = err;
    }
    /* the gaps between C's rows must be untouched (they are NaN in C0 and in C) */
    for (int i = 0; i + 1 < C->rows; i++)
        for (int j = C->cols; j < C->ld; j++)
            if (C->p[(size_t)i * C->ld + j] == C->p[(size_t)i * C->ld + j]) { bad++; break; }
    CHECK(bad == 0, "%s: %d bad entries, worst rel err %.3g", what, bad, worst);
    return worst;
}

/* One case: random A, B, C with given leading-dimension slack; runs gemm_f32 (or the
 * pre-packed path) and checks every entry (nsample = 0) or a random sample. */
static double one_case(int tA, int tB, int M, int N, int K, float alpha, float beta,
                       int slack, int prepacked, int nsample) {
    mat A = tA ? mat_new(K, M, M + slack) : mat_new(M, K, K + slack);
    mat B = tB ? mat_new(N, K, K + slack) : mat_new(K, N, N + slack);
    mat C = mat_new(M, N, N + slack);
    if (beta == 0.0f)
        for (size_t i = 0; i < mat_n(&C); i++) C.p[i] = NAN;     /* beta 0 must not read C */
    float *C0 = malloc(mat_n(&C) * sizeof(float));
    memcpy(C0, C.p, mat_n(&C) * sizeof(float));
    double w = 0;
    char what[160];
    snprintf(what, sizeof what, "%s tA=%d tB=%d M=%d N=%d K=%d a=%g b=%g ld+%d%s",
             gemm_kernel_name(), tA, tB, M, N, K, alpha, beta, slack,
             prepacked == 1 ? " prepacked" : prepacked == 2 ? " caller-packed" : prepacked == 3 ? " caller-packed cblas" : "");
    if (prepacked >= 2) {         /* both operands packed by the caller: 2 = this kernel, 3 = cblas */
        gemm_layout lo = gemm_layout_get(prepacked == 2);
        int kcb = lo.mr > 1 && K > 24 && (M + N) % 2 ? 16 : gemm_layout_kc(&lo, K);   /* cblas: one block */
        size_t na = gemm_packed_a_floats(&lo, M, K), nb = gemm_packed_b_floats(&lo, K, N);
        float *pa = fb_alloc(na * sizeof(float)), *pb = fb_alloc(nb * sizeof(float)), *ra = calloc(na, sizeof(float));
        gemm_pack_a_into(&lo, tA, M, K, kcb, A.p, A.ld, pa);
        gemm_pack_b_into(&lo, tB, K, N, kcb, B.p, B.ld, pb);
        /* the layout is the one gemm.h documents (gemm_packed_a_at), zero padding included */
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) ra[gemm_packed_a_at(lo.mr, M, K, kcb, i, k)] = opx(&A, tA, i, k);
        CHECK(memcmp(ra, pa, na * sizeof(float)) == 0, "%s: packed A differs from the documented layout", what);
        free(ra);
        ra = calloc(nb, sizeof(float));
        for (int j = 0; j < N; j++)
            for (int k = 0; k < K; k++) ra[gemm_packed_a_at(lo.nr, N, K, kcb, j, k)] = opx(&B, tB, k, j);
        CHECK(memcmp(ra, pb, nb * sizeof(float)) == 0, "%s: packed B differs from the documented layout", what);
        gemm_f32_pp(&lo, M, N, K, kcb, alpha, pa, pb, beta, C.p, C.ld);
        fb_free(pa); fb_free(pb); free(ra);
    } else if (prepacked) {
        gemm_packed *P = gemm_pack_b(tB, K, N, B.p, B.ld);
        CHECK(P != NULL, "%s: pack failed", what);
        if (!P) goto out;
        CHECK(gemm_f32_prepacked(tA, M, alpha, A.p, A.ld, P, beta, C.p, C.ld) == 0, "%s", what);
        gemm_packed_free(P);
    } else {
        gemm_f32(tA, tB, M, N, K, alpha, A.p, A.ld, B.p, B.ld, beta, C.p, C.ld);
    }
    w = check_entries(tA, tB, M, N, K, alpha, beta, &A, &B, C0, &C, nsample, what);
out:
    free(A.p); free(B.p); free(C.p); free(C0);
    return w;
}

static const float alphas[] = {1.0f, 1.0f, 0.5f, -2.0f, 0.0f};
static const float betas[]  = {0.0f, 1.0f, -1.5f, 0.0f, 0.25f};

/* Odd sizes 1..70 in all 4 transpose cases and alpha/beta variants. */
static double odd_sizes(int threads) {
    static const int sz[] = {1, 2, 3, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 70};
    const int ns = (int)(sizeof sz / sizeof sz[0]);
    double worst = 0;
    gemm_set_threads(threads);
    int ncase = quick ? 40 : 160;
    for (int c = 0; c < ncase; c++) {
        int M = sz[irand(ns)], N = sz[irand(ns)], K = sz[irand(ns)];
        if (c % 10 == 0) K = 1;
        if (c % 10 == 1) M = 1;
        if (c % 10 == 2) N = 1;
        int ab = c % 5, slack = (c / 5) % 3 == 0 ? 0 : 1 + irand(5);
        for (int t = 0; t < 4; t++) {
            double w = one_case(t >> 1, t & 1, M, N, K, alphas[ab], betas[ab], slack, 0, 0);
            if (w > worst) worst = w;
        }
    }
    return worst;
}

/* Sizes that cross the cache-block edges (KC 256, MC 144/384, NC 4096) and the
 * thread split, full check. */
static double block_edges(void) {
    static const int cases[][3] = {
        {397, 77, 530}, {150, 300, 257}, {9, 1000, 300}, {1000, 9, 40}, {130, 70, 1100},
        {20, 4133, 260}, {7, 4100, 9}, {385, 40, 513},
        /* above the 2-thread threshold (4 MFLOP) yet small/odd: every split with edges */
        {70, 100, 300}, {9, 200, 1100}, {383, 33, 170}, {1, 2000, 1030}, {200, 65, 600},
        {33, 31, 2100}, {8, 4000, 70}, {390, 17, 333},
        /* big-M order with several N blocks, several K blocks, several M blocks a thread */
        {400, 4200, 20}, {800, 100, 600}, {1700, 40, 270},
    };
    double worst = 0;
    int nc = (int)(sizeof cases / sizeof cases[0]);
    for (int c = 0; c < nc; c++)
        for (int t = 0; t < 4; t++) {
            int M = cases[c][0], N = cases[c][1], K = cases[c][2];
            if (quick && c < 8 && c % 2) continue;
            double w = one_case(t >> 1, t & 1, M, N, K, c % 2 ? 1.0f : 0.75f,
                                c % 3 == 0 ? 0.0f : 1.0f, c % 2 ? 3 : 0, 0, quick ? 200 : 2000);
            if (w > worst) worst = w;
        }
    return worst;
}

/* Nested: two threads of an outer parallel region each call gemm_f32 on their own C;
 * the GEMM must run single-threaded in each and use its own scratch. */
static void nested(void) {
    int M = 70, N = 90, K = 300;
    mat A = mat_new(M, K, K), B = mat_new(N, K, K);
    mat C[2] = {mat_new(M, N, N), mat_new(M, N, N)};
    float *C0 = malloc(sizeof(float) * M * N);
    memcpy(C0, C[0].p, sizeof(float) * M * N);
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num();
        if (t < 2)
            for (int r = 0; r < 3; r++)
                gemm_f32(0, 1, M, N, K, 1.0f, A.p, K, B.p, K, 0.0f, C[t].p, N);
    }
    check_entries(0, 1, M, N, K, 1.0f, 0.0f, &A, &B, C0, &C[0], 0, "nested thread 0");
    if (omp_get_max_threads() > 1)
        check_entries(0, 1, M, N, K, 1.0f, 0.0f, &A, &B, C0, &C[1], 0, "nested thread 1");
    free(A.p); free(B.p); free(C[0].p); free(C[1].p); free(C0);
}

/* Pre-packed B, incl. repack after the weights change. */
static double prepacked_cases(void) {
    double worst = 0;
    static const int cases[][3] = {{33, 47, 19}, {64, 96, 300}, {1, 70, 5}, {130, 33, 530}, {17, 1, 8},
                                   {40, 50, 2100} /* 2 threads split K */, {400, 100, 300}};
    for (int c = 0; c < 7; c++)
        for (int t = 0; t < 4; t++) {
            double w = one_case(t >> 1, t & 1, cases[c][0], cases[c][1], cases[c][2],
                                alphas[c % 5], betas[c % 5], c % 2 ? 2 : 0, 1, 0);
            if (w > worst) worst = w;
        }
    /* repack: same shape, new values */
    int M = 40, N = 50, K = 270;
    mat A = mat_new(M, K, K), B = mat_new(N, K, K), C = mat_new(M, N, N);
    gemm_packed *P = gemm_pack_b(1, K, N, B.p, K);
    CHECK(P && gemm_packed_bytes(P) >= sizeof(float) * (size_t)K * N, "packed size");
    for (size_t i = 0; i < mat_n(&B); i++) B.p[i] = frand();
    if (P) {
        gemm_repack_b(P, B.p, K);
        float *C0 = malloc(sizeof(float) * M * N);
        memcpy(C0, C.p, sizeof(float) * M * N);
        gemm_f32_prepacked(0, M, 1.0f, A.p, K, P, 1.0f, C.p, N);
        double w = check_entries(0, 1, M, N, K, 1.0f, 1.0f, &A, &B, C0, &C, 0, "repacked");
        if (w > worst) worst = w;
        free(C0);
    }
    gemm_packed_free(P);
    free(A.p); free(B.p); free(C.p);
    return worst;
}

/* Both operands packed by the caller (gemm_f32_pp), in this kernel's layout and in cblas's:
 * odd sizes, several K blocks (kcb 16), the classifier's tile shapes. */
static double caller_packed_cases(void) {
    static const int cases[][3] = {{1, 1, 1}, {7, 33, 5}, {33, 47, 19}, {64, 96, 300}, {130, 33, 530},
                                   {17, 1, 8}, {512, 288, 512}, {256, 512, 768}, {45, 70, 200}};
    double worst = 0;
    for (int c = 0; c < 9; c++)
        for (int t = 0; t < 8; t++) {
            double w = one_case((t >> 1) & 1, t & 1, cases[c][0], cases[c][1], cases[c][2], alphas[c % 5],
                                betas[c % 5], c % 2 ? 3 : 0, 2 + (t >> 2), cases[c][0] > 100 ? 400 : 0);
            if (w > worst) worst = w;
        }
    return worst;
}

/* The training shapes: forward (0,1), dx (0,0), dW (1,0, beta 1), spot-checked entries. */
static double real_shapes(int prepacked) {
    static const int full[][3] = {      /* out, in, tokens */
        {768, 768, 256}, {2048, 768, 256}, {768, 2048, 256}, {32000, 768, 256},
        {288, 288, 2048}, {768, 288, 2048}, {64, 172, 8192}, {512, 64, 8192},
    };
    static const int small[][3] = {{64, 172, 512}, {172, 64, 512}, {512, 64, 256}};
    const int (*sh)[3] = quick ? small : full;
    int n = quick ? 3 : (int)(sizeof full / sizeof full[0]);
    double worst = 0;
    for (int s = 0; s < n; s++) {
        int out = sh[s][0], in = sh[s][1], T = sh[s][2];
        double w;
        w = one_case(0, 1, T, out, in, 1.0f, 0.0f, 0, prepacked, 300);      /* forward */
        if (w > worst) worst = w;
        w = one_case(0, 0, T, in, out, 1.0f, 1.0f, 0, prepacked, 300);      /* dx (+=) */
        if (w > worst) worst = w;
        if (!prepacked) {
            w = one_case(1, 0, out, in, T, 1.0f, 1.0f, 0, 0, 300);           /* dW += */
            if (w > worst) worst = w;
        }
    }
    return worst;
}

/* The run-time split (gemm.c, "work shared at run time"): with threads other than 0 held
 * back (gemm_test_skew), thread 0 takes over their blocks of C, including blocks whose
 * earlier K pass another thread ran; the result must still match the 1-thread product bit
 * for bit, and blocks must actually have changed hands. Shapes: the N split of short
 * products (one and several K super-blocks; AVX-512 only: the AVX2 kernel's MC block is
 * shorter than 256 rows, so these split statically there) and the M split of tall ones (one
 * and several K blocks), real and odd sizes; then the strips of the direct-A path (N, K ≤ 256:
 * the stories260K shapes, and an odd one with a partial last strip). */
static void shared_split(void) {
    static const int sh[][5] = {     /* transA, transB, M, N, K */
        {0, 1, 256, 768, 768}, {1, 0, 768, 768, 256}, {0, 0, 256, 768, 2048},
        {0, 1, 200, 1000, 1500}, {0, 1, 1024, 768, 768}, {1, 0, 1000, 333, 700},
        {0, 1, 8192, 64, 64}, {0, 0, 1003, 200, 172},
    };
    const int all = (int)(sizeof sh / sizeof sh[0]);
    gemm_test_steals();
    long steals = 0;
    for (int s = 0; s < all; s++) {
        if (quick && s >= 3 && s < all - 2) continue;   /* quick: three of the first six, both direct-A */
        const int tA = sh[s][0], tB = sh[s][1], M = sh[s][2], N = sh[s][3], K = sh[s][4];
        mat A = tA ? mat_new(K, M, M) : mat_new(M, K, K);
        mat B = tB ? mat_new(N, K, K) : mat_new(K, N, N);
        mat C = mat_new(M, N, N);
        const size_t nc = mat_n(&C);
        float *ref = malloc(nc * sizeof(float)), *c0 = malloc(nc * sizeof(float));
        memcpy(c0, C.p, nc * sizeof(float));
        gemm_set_threads(1);
        gemm_f32(tA, tB, M, N, K, 0.5f, A.p, A.ld, B.p, B.ld, 1.0f, C.p, C.ld);
        memcpy(ref, C.p, nc * sizeof(float));
        for (int nt = 2; nt <= 3; nt++) {
            memcpy(C.p, c0, nc * sizeof(float));
            gemm_set_threads(nt);
            gemm_test_skew(50000);
            gemm_f32(tA, tB, M, N, K, 0.5f, A.p, A.ld, B.p, B.ld, 1.0f, C.p, C.ld);
            gemm_test_skew(0);
            steals += gemm_test_steals();
            CHECK(memcmp(C.p, ref, nc * sizeof(float)) == 0,
                  "%s tA=%d tB=%d M=%d N=%d K=%d, %d threads, one held back: differs from 1 thread",
                  gemm_kernel_name(), tA, tB, M, N, K, nt);
        }
        free(A.p); free(B.p); free(C.p); free(ref); free(c0);
    }
    gemm_set_threads(0);
    if (strcmp(gemm_kernel_name(), "blas") != 0)
        CHECK(steals > 0, "%s: no block of C changed threads although threads 1.. were held back", gemm_kernel_name());
}

int main(void) {
    quick = getenv("FABLE_TEST_QUICK") != NULL;
    static const char *kernels[] = {"avx512", "avx2", "blas"};
    for (int k = 0; k < 3; k++) {
        if (gemm_set_kernel(kernels[k]) != 0) {
            fprintf(stderr, "kernel %s: not compiled in, skipped\n", kernels[k]);
            continue;
        }
        double w1 = odd_sizes(1), w2 = odd_sizes(2);
        gemm_set_threads(0);
        double we = block_edges();
        nested();
        double wp = prepacked_cases();
        double wc = caller_packed_cases();
        shared_split();
        double wr = real_shapes(0);
        double wrp = (k < 2 || !quick) ? real_shapes(1) : 0;
        fprintf(stderr, "kernel %-6s worst rel err: odd sizes %.2g/%.2g (1/2 thr), block edges %.2g, "
                "prepacked %.2g, caller-packed %.2g, real shapes %.2g, real prepacked %.2g\n",
                kernels[k], w1, w2, we, wp, wc, wr, wrp);
    }
    return t_done("test_gemm");
}
