/* fable cuda engine — every matrix product, through cuBLASLt.
 *
 * fable's matrices are row-major; cuBLASLt's are column-major. A row-major X [r, c] with
 * leading dimension ld is the column-major Xᵀ [c, r] with the same ld, so
 *   row-major  C[M,N] = op(A)[M,K] · op(B)[K,N]
 *   is column-major  Cᵀ[N,M] = op(B)ᵀ[N,K] · op(A)ᵀ[K,M],
 * i.e. cuBLASLt's first operand is our B and its second our A, with m = N, n = M:
 *   B not transposed (stored [K,N]): its column-major view [N,K] is op(B)ᵀ: op N, layout N×K;
 *   B transposed (stored [N,K]):     view [K,N] = op(B): op T, layout K×N;
 *   A not transposed (stored [M,K]): view [K,M] = op(A)ᵀ: op N, layout K×M;
 *   A transposed (stored [K,M]):     view [M,K] = op(A): op T, layout M×K;
 *   C, D: layout N×M.
 * Compute type CUBLAS_COMPUTE_32F: fp32 accumulation, and with fp32 operands no TF32 (that
 * would be CUBLAS_COMPUTE_32F_FAST_TF32). The candidates for each shape are asked of the
 * heuristic once and one is chosen (below: tuning), so a shape always runs the same algorithm
 * (bit-identical results from step to step, and from process to process). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/cuda/cuda_internal.cuh"

#define NCAND 8

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, ab, cd, beta0;
    int tuned, ncand;
    cublasLtMatmulHeuristicResult_t cand[NCAND];
    int align[4];  /* byte alignment of A, B, C, D (≤ 256): algorithms are chosen for it */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int used;
} plan;

#define NPLANS 1024
static plan plans[NPLANS];
static int nplans;

static cudaDataType_t dtype(int t) { return t == CU_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* the largest power of two (≤ 256) that divides the address */
static int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
    return al;
}

static plan *find_plan(cu_state *st, int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc, int ab, int cd,
                       int beta0, const int align[4]) {
    for (int i = 0; i < nplans; i++) {
        plan *p = &plans[i];
        if (p->ta == ta && p->tb == tb && p->M == M && p->N == N && p->K == K && p->lda == lda && p->ldb == ldb &&
            p->ldc == ldc && p->ab == ab && p->cd == cd && p->beta0 == beta0 && !memcmp(p->align, align, sizeof p->align))
            return p;
    }
    if (nplans == NPLANS) cu_fatal(__FILE__, __LINE__, "cu_gemm", "more than 1024 distinct matrix shapes");
    plan *p = &plans[nplans++];
    memset(p, 0, sizeof *p);
    p->ta = ta, p->tb = tb, p->M = M, p->N = N, p->K = K, p->lda = lda, p->ldb = ldb, p->ldc = ldc;
    p->ab = ab, p->cd = cd, p->beta0 = beta0;
    memcpy(p->align, align, sizeof p->align);
    LT_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A is our B */
    cublasOperation_t opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (tb) LT_CHECK(cublasLtMatrixLayoutCreate(&p->la, dtype(ab), K, N, ldb));
    else LT_CHECK(cublasLtMatrixLayoutCreate(&p->la, dtype(ab), N, K, ldb));
    if (ta) LT_CHECK(cublasLtMatrixLayoutCreate(&p->lb, dtype(ab), M, K, lda));
    else LT_CHECK(cublasLtMatrixLayoutCreate(&p->lb, dtype(ab), K, M, lda));
    LT_CHECK(cublasLtMatrixLayoutCreate(&p->lc, dtype(cd), N, M, ldc));
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = st->ws_bytes;
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    /* split-K reductions only through a workspace, never in place in the output (which needs
     * atomics): results stay bit-identical from run to run */
    uint32_t red = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &red, sizeof red));
    /* cuBLASLt's A is our B and its B our A */
    const cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) {
        uint32_t v = (uint32_t)align[i];
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, al[i], &v, sizeof v));
    }
    cublasLtMatmulHeuristicResult_t h[NCAND];
    int got = 0;
    LT_CHECK(cublasLtMatmulAlgoGetHeuristic(st->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, NCAND, h, &got));
    cublasLtMatmulPreferenceDestroy(pref);
    if (got <= 0) {
        char why[200];
        snprintf(why, sizeof why, "no cuBLASLt algorithm for %s[%d,%d]·%s[%d,%d] (%s → %s)", ta ? "Aᵀ" : "A", M, K,
                 tb ? "Bᵀ" : "B", K, N, ab == CU_BF16 ? "bf16" : "fp32", cd == CU_BF16 ? "bf16" : "fp32");
        cu_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", why);
    }
    p->algo = h[0].algo;
    p->ncand = got;
    memcpy(p->cand, h, got * sizeof h[0]);
    return p;
}

/* Tuning. The heuristic's first algorithm is often not the fastest (measured on the H200:
 * products with an fp32 residual epilogue ran at 270-460 TFLOP/s where another candidate
 * reached 480-640; 1.8 ms of a 60 ms stories110M step at 32×1024). With FABLE_CUDA_GEMM_TUNE=1,
 * on a product's first call (outside a graph recording) fable times the candidates (one
 * warm-up, the best of three runs each) and keeps the fastest. It tunes
 * only where re-running cannot change the result: beta = 0 (D is overwritten anyway) or C ≠ D
 * (the residual adds); in-place accumulations keep the heuristic's choice.
 *
 * Bit-exact resume needs every process to run the same algorithm for a product, and timing is
 * noisy: so every choice is kept in a cache file, read at start and written (atomically)
 * after each new choice, and a product found there is not timed again. The file is
 * $FABLE_CUDA_CACHE, else $XDG_CACHE_HOME/fable (else ~/.cache/fable), named for the GPU and
 * the cuBLASLt version. Where no cache can be written, nothing is tuned (the heuristic's first
 * choice is the same in every process). Off by default until the cache's cross-process
 * resume has been checked on a GPU (scripts/gpu-check.sh, section 4 with the switch set). */
#define KEYLEN 15
typedef struct {
    int key[KEYLEN];
    int ncand, idx;
} tune_ent;
static tune_ent tcache[NPLANS];
static int ntcache, tune_state = -1; /* -1 not set up, 0 off, 1 on */
static char tpath[1400];

static void plan_key(const plan *p, int *k) {
    const int v[KEYLEN] = {p->ta, p->tb, p->M, p->N, p->K, p->lda, p->ldb, p->ldc, p->ab, p->cd, p->beta0,
                           p->align[0], p->align[1], p->align[2], p->align[3]};
    memcpy(k, v, sizeof v);
}

static tune_ent *cache_find(const int *k) {
    for (int i = 0; i < ntcache; i++)
        if (!memcmp(tcache[i].key, k, sizeof tcache[i].key)) return &tcache[i];
    return NULL;
}

/* read the file's entries (those not known yet) */
static void cache_read(void) {
    FILE *f = fopen(tpath, "r");
    if (!f) return;
    tune_ent t;
    while (ntcache < NPLANS &&
           fscanf(f, "%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d", &t.key[0], &t.key[1], &t.key[2], &t.key[3],
                  &t.key[4], &t.key[5], &t.key[6], &t.key[7], &t.key[8], &t.key[9], &t.key[10], &t.key[11], &t.key[12],
                  &t.key[13], &t.key[14], &t.ncand, &t.idx) == 17)
        if (!cache_find(t.key)) tcache[ntcache++] = t;
    fclose(f);
}

static int cache_write(void) {
    cache_read(); /* another process may have added entries: keep them (the first choice stays) */
    char tmp[1500];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", tpath, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return 0;
    for (int i = 0; i < ntcache; i++) {
        for (int j = 0; j < KEYLEN; j++) fprintf(f, "%d ", tcache[i].key[j]);
        fprintf(f, "%d %d\n", tcache[i].ncand, tcache[i].idx);
    }
    if (fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp, tpath)) {
        unlink(tmp);
        return 0;
    }
    return 1;
}

static void tune_setup(cu_state *st) {
    const char *e = getenv("FABLE_CUDA_GEMM_TUNE");
    tune_state = 0;
    if (!e || strcmp(e, "1")) return;
    char dir[900];
    const char *c = getenv("FABLE_CUDA_CACHE"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (c && *c) snprintf(dir, sizeof dir, "%s", c);
    else if (x && *x) snprintf(dir, sizeof dir, "%s/fable", x);
    else if (h && *h) snprintf(dir, sizeof dir, "%s/.cache/fable", h);
    else return;
    for (char *q = dir + 1; *q; q++) /* mkdir -p */
        if (*q == '/') {
            *q = 0;
            mkdir(dir, 0755);
            *q = '/';
        }
    mkdir(dir, 0755);
    char gpu[256];
    snprintf(gpu, sizeof gpu, "%s", st->prop.name);
    for (char *q = gpu; *q; q++)
        if (!isalnum((unsigned char)*q)) *q = '-';
    snprintf(tpath, sizeof tpath, "%s/cublaslt-%s-%zu.txt", dir, gpu, cublasLtGetVersion());
    cache_read();
    if (!cache_write()) return; /* not writable: no tuning */
    tune_state = 1;
}

static int tune(cu_state *st, plan *p, cudaStream_t s, void *ws, const void *A, const void *B, const void *C, void *D,
                float alpha, float beta) {
    cudaEvent_t e0, e1;
    CU_CHECK(cudaEventCreate(&e0));
    CU_CHECK(cudaEventCreate(&e1));
    float best = 1e30f;
    int besti = 0;
    for (int i = 0; i < p->ncand; i++) {
        if (cublasLtMatmul(st->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, D, p->lc, &p->cand[i].algo, ws,
                           st->ws_bytes, s) != CUBLAS_STATUS_SUCCESS)
            continue;
        float t = 1e30f;
        for (int r = 0; r < 3; r++) {
            CU_CHECK(cudaEventRecord(e0, s));
            LT_CHECK(cublasLtMatmul(st->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, D, p->lc,
                                    &p->cand[i].algo, ws, st->ws_bytes, s));
            CU_CHECK(cudaEventRecord(e1, s));
            CU_CHECK(cudaEventSynchronize(e1));
            float ms;
            CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            t = ms < t ? ms : t;
        }
        if (t < best) best = t, besti = i;
    }
    CU_CHECK(cudaEventDestroy(e0));
    CU_CHECK(cudaEventDestroy(e1));
    return besti;
}

void cu_gemm(cu_state *st, cudaStream_t s, void *ws, int ta, int tb, int M, int N, int K, const void *A, int lda,
             const void *B, int ldb, int ab_type, const void *C, void *D, int ldc, int cd_type, float alpha,
             float beta) {
    if (M <= 0 || N <= 0) return;
    if (!C) C = D;
    const int align[4] = {align_of(A), align_of(B), align_of(C), align_of(D)};
    plan *p = find_plan(st, ta, tb, M, N, K, lda, ldb, ldc, ab_type, cd_type, beta == 0.0f, align);
    if (!p->tuned && !st->capturing) {
        p->tuned = 1;
        if (tune_state < 0) tune_setup(st);
        int k[KEYLEN];
        plan_key(p, k);
        const tune_ent *t = tune_state ? cache_find(k) : NULL;
        if (t && t->ncand == p->ncand && t->idx < p->ncand) p->algo = p->cand[t->idx].algo;
        else if (tune_state && p->ncand > 1 && (beta == 0.0f || C != D) && ntcache < NPLANS) {
            tune_ent *n = &tcache[ntcache++];
            memcpy(n->key, k, sizeof n->key);
            n->ncand = p->ncand;
            n->idx = tune(st, p, s, ws, A, B, C, D, alpha, beta);
            p->algo = p->cand[n->idx].algo;
            if (!cache_write()) tune_state = 0, p->algo = p->cand[0].algo; /* cannot keep it: do not tune */
        }
    }
    LT_CHECK(cublasLtMatmul(st->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, D, p->lc, &p->algo, ws,
                            st->ws_bytes, s));
    if (cu_prof_on) {
        char name[112];
        snprintf(name, sizeof name, "gemm %s[%d,%d]%s[%d,%d] %s->%s%s", ta ? "At" : "A", M, K, tb ? "Bt" : "B", K, N,
                 ab_type == CU_BF16 ? "bf16" : "f32", cd_type == CU_BF16 ? "bf16" : "f32", beta != 0.0f ? " +C" : "");
        cu_prof_mark(p, 0, name, 2.0 * M * N * (double)K);
    }
}
