/* fable — cpu engine: single-precision GEMM built the BLIS way (see include/fable/gemm.h).
 *
 *   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C
 *
 * Five loops around one micro-kernel (BLIS's structure; our own code):
 *
 *   for jc in N, step NC           B block  op(B)[pc:pc+kc, jc:jc+nc] packed → lives in L3
 *    for pc in K, step KC           (packed by all threads together, then a barrier;
 *                                    double-buffered, so one barrier per block)
 *     for ic in M (this thread's rows), step MC
 *                                   A block  op(A)[ic:ic+mc, pc:pc+kc] packed → lives in L2
 *      for jr in nc, step NR          B micro-panel kc×NR → stays in L1 across the ir loop
 *       for ir in mc, step MR           A micro-panel MR×kc streams from L2
 *        micro-kernel: C[MR,NR] (+)= A_panel · B_panel, MR·NR accumulators in registers
 *
 * Packed layouts (w = MR for A, NR for B; zero-padded to w when the matrix edge cuts a panel):
 *   A micro-panel: pa[p*MR + i] = op(A)[ic+ir+i][pc+p]     (one column of MR values per k)
 *   B micro-panel: pb[p*NR + j] = op(B)[pc+p][jc+jr+j]     (one row of NR values per k)
 * so the kernel's inner step is: load NR floats of B, broadcast each of the MR floats of A,
 * MR·NR/lanes FMAs. Per k step it loads MR + NR floats for 2·MR·NR flops.
 *
 * Micro-kernels (chosen at compile time by what the target has, switchable at run time):
 *  - AVX-512, 8×32: 16 zmm accumulators (8 rows × 2 vectors), 2 B loads + 8 broadcasts per
 *    16 FMAs. Measured in isolation at ~98% of the 2-FMA/cycle peak with A streaming from L2.
 *    8 rows because every token count and layer width fable uses is a multiple of 8, so
 *    row edges never waste FMAs on the real shapes (12×32 measured the same in isolation
 *    but wastes 3% at M = 256).
 *  - AVX2, 6×16: the classic 12 ymm accumulators (6 rows × 2 vectors) + 2 B + 1 broadcast.
 *
 * Cache blocking (Zen 3: 32 KB L1d, 512 KB L2/core; Zen 5: 48 KB L1d, 1 MB L2/core; the
 * L3 is tens of MB, shared). For the AVX-512 kernel:
 *   KC = 256: B micro-panel 256·32·4 B = 32 KB stays in L1 across the ir loop, A
 *             micro-panel 8·256·4 = 8 KB streams beside it.
 *   MC = 384: A block 384·256·4 = 384 KB, under half the L2 so B panels and C lines pass
 *             through without evicting it.
 *   NC = 4096: B block 256·4096·4 = 4 MB, comfortably inside the shared L3.
 * For AVX2 6×16: KC = 256 (B micro-panel 16 KB, half of a 32 KB L1), MC = 144 (A block
 * 144 KB in a 512 KB L2), NC = 4096. Each dimension is split into equal blocks rounded to
 * the panel width (K = 288 → 2×144, not 256 + 32) so no block is a sliver.
 *
 * Threads (OpenMP; libgomp keeps its pool, so no threads are created per call): the M
 * panels are split into one contiguous row range per thread; each thread packs its own A
 * blocks (no barrier) and all threads pack one shared B block together (one barrier after
 * packing; the B buffer is double-buffered). When M has fewer panels than threads, the NR
 * panels of each B block are split instead. With a pre-packed B there is nothing shared
 * to write, so threads run without any barrier. Called inside a parallel region: one thread.
 *
 * Edges: packing zero-pads partial panels; a partial C tile is computed into a local MR×NR
 * buffer and merged, so the kernel itself only ever sees full tiles. K needs no padding.
 */
#include "fable/gemm.h"
#include "fable/util.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GEMM_AVX2 1
#if defined(__AVX512F__)
#define GEMM_AVX512 1
#endif
#endif

/* ---- small helpers ------------------------------------------------------------ */
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
static inline int round_up(int a, int m) { return ceil_div(a, m) * m; }

/* Split n into equal blocks of at most about `target`, each a multiple of `mult`. */
static int block_size(int n, int target, int mult) {
    if (n <= 0) return mult;
    int nb = ceil_div(n, target);
    return round_up(ceil_div(n, nb), mult);
}

static _Atomic int g_threads = 0;
void gemm_set_threads(int n) { g_threads = n > 0 ? n : 0; }

/* C = beta·C over M×N (beta == 0 writes zeros without reading: NaN-safe). */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (ptrdiff_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f) for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

static void blas_gemm(int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- kernel table --------------------------------------------------------------- */
/* ukernel: full MR×NR tile, C = alpha·(pa·pb) + beta·C; beta == 0 does not read C. */
typedef void (*gemm_ukernel)(int kc, const float *restrict pa, const float *restrict pb,
                             float *restrict c, ptrdiff_t ldc, float alpha, float beta);
typedef struct {
    const char *name;
    int mr, nr;           /* register tile */
    int mc, kc, nc;       /* cache blocks (targets; actual blocks are balanced) */
    gemm_ukernel kern;    /* NULL: cblas_sgemm */
} gemm_arch;

#define GEMM_MAX_TILE (8 * 32)

#ifdef GEMM_AVX2
/* ---- packing ---------------------------------------------------------------------- */
/* Transpose 8×8 in registers: r[i][j] → r[j][i]. Three stages: interleave pairs of rows
 * (unpack), gather 4-element columns within each 128-bit half (shuffle), swap halves. */
static inline void tr8x8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Panels whose w values per k are contiguous in the source (op(A) with transA: A[p][i];
 * op(B) without transB: B[p][j]), a plain copy. n values per k-row are cut into
 * ceil(n/w) panels of width w, the last zero-padded:
 *   dst[q·kc·w + p·w + r] = src[p·lds + q·w + r]   (q·w + r < n; else 0),  p < kc.
 * Walked 8 k-rows at a time across all panels: the 8 source rows stream sequentially and
 * each panel gets 8·w contiguous floats (whole cache lines). Measured for w = 8, kc = 256,
 * 48 panels: panel by panel 0.49 ns/float (one 32-byte piece per row per panel: TLB-bound
 * when lds is large, e.g. dYᵀ in dW with lds = 32000), one k-row across all panels 0.89
 * (48 write streams 8 KB apart alias in the L1's sets), 8 k-rows at a time 0.1. */
static inline __attribute__((always_inline)) void
pack_contig_panels_w(const int w, int n, int kc, const float *src, ptrdiff_t lds, float *dst) {
    const int np = ceil_div(n, w), full = (w & 7) == 0 ? n / w : 0;
    const ptrdiff_t ps = (ptrdiff_t)kc * w;                  /* panel stride in dst */
    for (int p0 = 0; p0 < kc; p0 += 8) {
        const int pn = imin(8, kc - p0);
        const float *s = src + (ptrdiff_t)p0 * lds;
        float *d = dst + (ptrdiff_t)p0 * w;
        if (pn == 8) {
            for (int q = 0; q < full; q++) {                 /* 8·w floats, contiguous */
#pragma GCC unroll 8
                for (int p = 0; p < 8; p++)
#pragma GCC unroll 4
                    for (int r = 0; r < w; r += 8)
                        _mm256_storeu_ps(d + q * ps + p * w + r,
                                         _mm256_loadu_ps(s + (ptrdiff_t)p * lds + q * w + r));
            }
        }
        for (int q = pn == 8 ? full : 0; q < np; q++) {
            int we = imin(w, n - q * w);
            for (int p = 0; p < pn; p++) {
                int r = 0;
                for (; r < we; r++) d[q * ps + p * w + r] = s[(ptrdiff_t)p * lds + q * w + r];
                for (; r < w; r++) d[q * ps + p * w + r] = 0.0f;
            }
        }
    }
}

/* Specialised on the panel widths in use so the copy loops unroll completely
 * (the generic loop measured 0.36 ns/float for w = 8, the specialised one 0.14). */
static void pack_contig_panels(int w, int n, int kc, const float *src, ptrdiff_t lds, float *dst) {
    switch (w) {
    case 8:  pack_contig_panels_w(8, n, kc, src, lds, dst); break;
    case 16: pack_contig_panels_w(16, n, kc, src, lds, dst); break;
    case 32: pack_contig_panels_w(32, n, kc, src, lds, dst); break;
    default: pack_contig_panels_w(w, n, kc, src, lds, dst); break;
    }
}

/* Panel whose values for one r are contiguous along k in the source:
 *   dst[p*w + r] = src[r*lds + p]   (r < we; zero for we ≤ r < w), p < kc.
 * Serves op(A) without transA (A[i][p]) and op(B) with transB (W[j][p], the forward form).
 * 8 rows × 8 k at a time: 8 row loads, an in-register transpose, 8 stores of 8 lanes
 * (fewer lanes, masked, for the last group of a 6-wide panel). Only rows < we are read. */
static void pack_strided(int w, int we, int kc, const float *src, ptrdiff_t lds, float *dst) {
    for (int r0 = 0; r0 < w; r0 += 8) {
        int rn = imin(8, w - r0);                         /* lanes stored for this group */
        int rv = we - r0 < 0 ? 0 : imin(8, we - r0);      /* rows that exist in the source */
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rn),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const float *s = src + (ptrdiff_t)r0 * lds;
        float *d = dst + r0;
        int p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++)
                v[i] = i < rv ? _mm256_loadu_ps(s + (ptrdiff_t)i * lds + p) : _mm256_setzero_ps();
            tr8x8(v);
            if (rn == 8)
                for (int t = 0; t < 8; t++) _mm256_storeu_ps(d + (ptrdiff_t)(p + t) * w, v[t]);
            else
                for (int t = 0; t < 8; t++) _mm256_maskstore_ps(d + (ptrdiff_t)(p + t) * w, mask, v[t]);
        }
        for (; p < kc; p++)
            for (int i = 0; i < rn; i++)
                d[(ptrdiff_t)p * w + i] = i < rv ? s[(ptrdiff_t)i * lds + p] : 0.0f;
    }
}

/* ---- AVX2/FMA 6×16 micro-kernel ------------------------------------------------------ */
#define Y_DECL(i) __m256 c##i##a = _mm256_setzero_ps(), c##i##b = _mm256_setzero_ps();
#define Y_STEP(i) { __m256 ai = _mm256_broadcast_ss(pa + i);                         \
                    c##i##a = _mm256_fmadd_ps(ai, b0, c##i##a);                       \
                    c##i##b = _mm256_fmadd_ps(ai, b1, c##i##b); }
#define Y_PF(i)   __builtin_prefetch(c + (i) * ldc, 1, 3); __builtin_prefetch(c + (i) * ldc + 15, 1, 3);
#define Y_ST(i)   { float *cr = c + (i) * ldc;                                          \
                    __m256 x0 = _mm256_mul_ps(va, c##i##a), x1 = _mm256_mul_ps(va, c##i##b); \
                    if (beta != 0.0f) {                                                \
                        x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), x0);            \
                        x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), x1);        \
                    }                                                                  \
                    _mm256_storeu_ps(cr, x0); _mm256_storeu_ps(cr + 8, x1); }

static void ukernel_avx2_6x16(int kc, const float *restrict pa, const float *restrict pb,
                              float *restrict c, ptrdiff_t ldc, float alpha, float beta) {
    Y_DECL(0) Y_DECL(1) Y_DECL(2) Y_DECL(3) Y_DECL(4) Y_DECL(5)
    Y_PF(0) Y_PF(1) Y_PF(2) Y_PF(3) Y_PF(4) Y_PF(5)
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(pb), b1 = _mm256_load_ps(pb + 8);
        Y_STEP(0) Y_STEP(1) Y_STEP(2) Y_STEP(3) Y_STEP(4) Y_STEP(5)
        pa += 6; pb += 16;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    Y_ST(0) Y_ST(1) Y_ST(2) Y_ST(3) Y_ST(4) Y_ST(5)
}

#ifdef GEMM_AVX512
/* ---- AVX-512 8×32 micro-kernel ------------------------------------------------------- */
#define Z_DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
#define Z_STEP(i) { __m512 ai = _mm512_set1_ps(pa[i]);                                 \
                    c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);                       \
                    c##i##b = _mm512_fmadd_ps(ai, b1, c##i##b); }
#define Z_PF(i)   __builtin_prefetch(c + (i) * ldc, 1, 3); __builtin_prefetch(c + (i) * ldc + 31, 1, 3);
#define Z_ST(i)   { float *cr = c + (i) * ldc;                                          \
                    __m512 x0 = _mm512_mul_ps(va, c##i##a), x1 = _mm512_mul_ps(va, c##i##b); \
                    if (beta != 0.0f) {                                                \
                        x0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), x0);            \
                        x1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), x1);       \
                    }                                                                  \
                    _mm512_storeu_ps(cr, x0); _mm512_storeu_ps(cr + 16, x1); }

static void ukernel_avx512_8x32(int kc, const float *restrict pa, const float *restrict pb,
                                float *restrict c, ptrdiff_t ldc, float alpha, float beta) {
    Z_DECL(0) Z_DECL(1) Z_DECL(2) Z_DECL(3) Z_DECL(4) Z_DECL(5) Z_DECL(6) Z_DECL(7)
    Z_PF(0) Z_PF(1) Z_PF(2) Z_PF(3) Z_PF(4) Z_PF(5) Z_PF(6) Z_PF(7)
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(pb), b1 = _mm512_load_ps(pb + 16);
        Z_STEP(0) Z_STEP(1) Z_STEP(2) Z_STEP(3) Z_STEP(4) Z_STEP(5) Z_STEP(6) Z_STEP(7)
        pa += 8; pb += 32;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    Z_ST(0) Z_ST(1) Z_ST(2) Z_ST(3) Z_ST(4) Z_ST(5) Z_ST(6) Z_ST(7)
}
#endif /* GEMM_AVX512 */
#endif /* GEMM_AVX2 */

static gemm_arch g_archs[] = {   /* blocks adjustable once via FABLE_GEMM_BLOCKS */
#ifdef GEMM_AVX512
    {"avx512", 8, 32, 384, 256, 4096, ukernel_avx512_8x32},
#endif
#ifdef GEMM_AVX2
    {"avx2", 6, 16, 144, 256, 4096, ukernel_avx2_6x16},
#endif
    {"blas", 1, 1, 0, 0, 0, NULL},
};
#define N_ARCHS ((int)(sizeof g_archs / sizeof g_archs[0]))

static const gemm_arch *_Atomic g_arch = NULL;
static pthread_once_t g_archs_once = PTHREAD_ONCE_INIT;

/* FABLE_GEMM_BLOCKS="MC,KC,NC" overrides the cache blocks of every kernel (for tuning
 * sweeps; bench/RESULTS.md has the sweep that chose the defaults). */
static void archs_init(void) {
    const char *e = getenv("FABLE_GEMM_BLOCKS");
    int mc, kc, nc;
    if (!e || sscanf(e, "%d,%d,%d", &mc, &kc, &nc) != 3 || mc < 1 || kc < 8 || nc < 1) return;
    for (int i = 0; i < N_ARCHS; i++) {
        if (!g_archs[i].kern) continue;
        g_archs[i].mc = round_up(mc, g_archs[i].mr);
        g_archs[i].kc = round_up(kc, 8);
        g_archs[i].nc = round_up(nc, g_archs[i].nr);
    }
}

static const gemm_arch *find_arch(const char *name) {
    pthread_once(&g_archs_once, archs_init);
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(g_archs[i].name, name) == 0) return &g_archs[i];
    return NULL;
}

static const gemm_arch *cur_arch(void) {
    const gemm_arch *a = g_arch;
    if (a) return a;
    const char *e = getenv("FABLE_GEMM_KERNEL");
    a = (e && *e) ? find_arch(e) : NULL;
    if (!a) a = find_arch(g_archs[0].name);
    g_arch = a;
    return a;
}

int gemm_set_kernel(const char *name) {
    const gemm_arch *a = find_arch(name);
    if (!a) return fb_err("gemm: kernel '%s' is not compiled into this build", name);
    g_arch = a;
    return 0;
}

const char *gemm_kernel_name(void) { return cur_arch()->name; }

/* ---- pre-packed B ------------------------------------------------------------------ */
struct gemm_packed {
    const gemm_arch *ar;
    int transB, K, N;
    int kcb;          /* K block used when packing: block p starts at data + p0·npad */
    int npan;         /* NR panels across N; npad = npan·NR */
    float *data;
    size_t nfloats;
};

/* ---- scratch ----------------------------------------------------------------------- */
/* Per calling thread: the shared B block plus one A block per team thread. Kept between
 * calls (allocating a fresh 4 MB block each call costs ~1000 page faults, ~0.3 ms). */
static _Thread_local float *tl_scratch = NULL;
static _Thread_local size_t tl_scratch_n = 0;

static float *scratch(size_t nfloats) {
    if (nfloats <= tl_scratch_n) return tl_scratch;
    fb_free(tl_scratch);
    tl_scratch = fb_alloc(nfloats * sizeof(float));
    tl_scratch_n = tl_scratch ? nfloats : 0;
    return tl_scratch;
}

#ifdef GEMM_AVX2
/* ---- team barrier --------------------------------------------------------------------
 * Sense-reversing counter barrier. Spins briefly, then yields the core on every check.
 * Not `#pragma omp barrier`: libgomp spins for up to GOMP_SPINCOUNT (300k pauses, about
 * a millisecond or more) before sleeping, and on a machine whose cores are shared with
 * other work the partner thread is often descheduled, so each barrier then burns a
 * time slice; measured under load on 2 cores: median 38 vs best 341 GFLOP/s. Yielding
 * hands the core to whoever must run for the barrier to open. seq_cst atomics order the
 * packed-panel writes before the barrier with the reads after it. */
typedef struct {
    _Atomic int count;
    _Atomic int sense;
} gemm_barrier;

static void barrier_wait(gemm_barrier *b, int n, int *my_sense) {
    if (n <= 1) return;
    int s = !*my_sense;
    *my_sense = s;
    if (atomic_fetch_add(&b->count, 1) == n - 1) {
        atomic_store(&b->count, 0);
        atomic_store(&b->sense, s);
        return;
    }
    for (int i = 0; atomic_load_explicit(&b->sense, memory_order_acquire) != s; i++) {
        if (i < 2000) _mm_pause();
        else sched_yield();
    }
}

/* ---- the blocked product ---------------------------------------------------------- */
typedef struct {
    const gemm_arch *ar;
    int transA, transB, M, N, K;
    float alpha, beta;
    const float *A; ptrdiff_t lda;
    const float *B; ptrdiff_t ldb;      /* unpacked B (NULL when Bp is used) */
    const gemm_packed *Bp;
    float *C; ptrdiff_t ldc;
    int kcb, ncb, mcb_max;              /* block sizes; mcb_max bounds each A block */
    int ksb;                            /* small-M order: K super-block (multiple of kcb) */
    float *bbuf;                        /* shared B blocks, 2 × kcb × ncb (rounded to NR) */
    size_t bblk_n;                      /* floats in one B block buffer */
    float *abuf;                        /* nt A blocks of mcb_max × kcb */
    gemm_barrier *bar;                  /* the team's barrier */
} gemm_job;

/* Pack the NR panels [j0, j1) of B block (jc, pc) into bblk. */
static void pack_b_panels(const gemm_arch *ar, int transB, const float *B, ptrdiff_t ldb,
                          int jc, int nc, int pc, int kc, int j0, int j1, float *bblk) {
    const int nr = ar->nr;
    if (j0 >= j1) return;
    if (!transB) {
        int col = jc + j0 * nr, n = imin(nc - j0 * nr, (j1 - j0) * nr);
        pack_contig_panels(nr, n, kc, B + (ptrdiff_t)pc * ldb + col, ldb, bblk + (ptrdiff_t)j0 * kc * nr);
        return;
    }
    for (int j = j0; j < j1; j++) {
        int col = jc + j * nr, we = imin(nr, nc - j * nr);
        pack_strided(nr, we, kc, B + (ptrdiff_t)col * ldb + pc, ldb, bblk + (ptrdiff_t)j * kc * nr);
    }
}

/* Pack MR panels [i0, i1) of op(A) rows [row0, row0 + m) × [pc, pc + kc) into ablk
 * (panel i at ablk + i·kc·MR, rows counted from row0). */
static void pack_a_panels(const gemm_arch *ar, int transA, const float *A, ptrdiff_t lda,
                          int row0, int m, int pc, int kc, int i0, int i1, float *ablk) {
    const int mr = ar->mr;
    if (i0 >= i1) return;
    if (transA) {
        int row = row0 + i0 * mr, n = imin(m - i0 * mr, (i1 - i0) * mr);
        pack_contig_panels(mr, n, kc, A + (ptrdiff_t)pc * lda + row, lda, ablk + (ptrdiff_t)i0 * kc * mr);
        return;
    }
    for (int i = i0; i < i1; i++) {
        int row = row0 + i * mr, we = imin(mr, m - i * mr);
        pack_strided(mr, we, kc, A + (ptrdiff_t)row * lda + pc, lda, ablk + (ptrdiff_t)i * kc * mr);
    }
}

/* One MR×NR tile; partial tiles go through a local buffer so the kernel sees full tiles. */
static inline void tile(const gemm_arch *ar, int kc, const float *pa, const float *pb,
                        float *c, ptrdiff_t ldc, int me, int ne, float alpha, float beta) {
    if (me == ar->mr && ne == ar->nr) { ar->kern(kc, pa, pb, c, ldc, alpha, beta); return; }
    float t[GEMM_MAX_TILE] __attribute__((aligned(64)));
    ar->kern(kc, pa, pb, t, ar->nr, 1.0f, 0.0f);
    for (int i = 0; i < me; i++) {
        float *cr = c + (ptrdiff_t)i * ldc;
        const float *tr = t + i * ar->nr;
        if (beta == 0.0f) for (int j = 0; j < ne; j++) cr[j] = alpha * tr[j];
        else              for (int j = 0; j < ne; j++) cr[j] = alpha * tr[j] + beta * cr[j];
    }
}

static void gemm_thread(const gemm_job *jb, int tid, int nt) {
    const gemm_arch *ar = jb->ar;
    const int mr = ar->mr, nr = ar->nr, M = jb->M, N = jb->N, K = jb->K;

    /* Thread grid tm × tn: rows split tm ways (each thread packs its own A), B panels
     * split tn ways only when M has fewer MR panels than threads. */
    int mp = ceil_div(M, mr);
    int tm = imin(nt, mp), tn = nt / tm;
    int active = tid < tm * tn;
    int ti = tid % tm, tj = tid / tm;
    int i0 = imin(M, (int)((int64_t)mp * ti / tm) * mr);
    int i1 = imin(M, (int)((int64_t)mp * (ti + 1) / tm) * mr);
    int mcb = block_size(i1 - i0, ar->mc, mr);
    if (mcb > jb->mcb_max) mcb = jb->mcb_max;
    float *abuf = jb->abuf + (size_t)tid * jb->mcb_max * jb->kcb;
    int sense = 0;

    int it = 0;
    for (int jc = 0; jc < N; jc += jb->ncb) {
        int nc = imin(jb->ncb, N - jc), njr = ceil_div(nc, nr);
        int jr0 = njr * tj / tn, jr1 = njr * (tj + 1) / tn;
        for (int pc = 0; pc < K; pc += jb->kcb, it++) {
            int kc = imin(jb->kcb, K - pc);
            float beta = pc == 0 ? jb->beta : 1.0f;
            const float *bblk;
            if (jb->Bp) {
                bblk = jb->Bp->data + (size_t)pc * jb->Bp->npan * nr + (size_t)(jc / nr) * kc * nr;
            } else {
                /* double-buffered: block t+1 is packed into the buffer of block t-1,
                 * which every thread has finished with once all have reached the
                 * barrier of block t, so one barrier per block suffices */
                float *bb = jb->bbuf + (size_t)(it & 1) * jb->bblk_n;
                pack_b_panels(ar, jb->transB, jb->B, jb->ldb, jc, nc, pc, kc,
                              njr * tid / nt, njr * (tid + 1) / nt, bb);
                barrier_wait(jb->bar, nt, &sense);
                bblk = bb;
            }
            if (active) {
                for (int ic = i0; ic < i1; ic += mcb) {
                    int mc = imin(mcb, i1 - ic), nir = ceil_div(mc, mr);
                    pack_a_panels(ar, jb->transA, jb->A, jb->lda, ic, mc, pc, kc, 0, nir, abuf);
                    for (int jr = jr0; jr < jr1; jr++) {
                        const float *pb = bblk + (ptrdiff_t)jr * kc * nr;
                        int ne = imin(nr, nc - jr * nr);
                        float *cc = jb->C + (ptrdiff_t)ic * jb->ldc + jc + jr * nr;
                        for (int ir = 0; ir < nir; ir++)
                            tile(ar, kc, abuf + (ptrdiff_t)ir * kc * mr, pb,
                                 cc + (ptrdiff_t)ir * mr * jb->ldc, jb->ldc,
                                 imin(mr, mc - ir * mr), ne, jb->alpha, beta);
                    }
                }
            }
        }
    }
}

/* Small M (all of op(A) fits one A block, the forward/dx forms at 256 tokens): Goto's
 * order for a short, wide product.
 *   for each K super-block (ksb = several KC blocks; all M rows × ksb packed ≤ 3/4 L2):
 *     all threads pack the A super-block together → barrier
 *     for each of my NR panels of C (threads split N):
 *       for each KC block in the super-block:
 *         pack the B micro-panel (kc × NR) into a private 32 KB buffer (stays in L1)
 *         run the MR×NR tiles down the M rows
 * The C strip (M × NR, 32 KB at M = 256) stays in L1/L2 across the super-block's KC
 * blocks, so C goes to memory once per super-block instead of once per KC block: for the
 * classifier forward (C = 256 × 32000 floats, K = 768) that is 1 pass instead of 3 over
 * 33 MB. Packed B never goes out to L3 and back (the big-M order writes a 4 MB B block
 * and reads it again). One barrier per super-block: A is double-buffered, and a thread
 * can only start packing super-block s+1 into the buffer of s-1 after every thread has
 * arrived at the barrier of s, i.e. finished computing s-1. */
static void gemm_thread_small(const gemm_job *jb, int tid, int nt) {
    const gemm_arch *ar = jb->ar;
    const int mr = ar->mr, nr = ar->nr, M = jb->M, N = jb->N, K = jb->K, kcb = jb->kcb;
    const int mp = ceil_div(M, mr), np = ceil_div(N, nr);
    const size_t mpad = (size_t)mp * mr;
    const int j0 = np * tid / nt, j1 = np * (tid + 1) / nt;      /* my C panels */
    const int a0 = mp * tid / nt, a1 = mp * (tid + 1) / nt;      /* A panels I pack */
    float *bpan = jb->bbuf + (size_t)tid * kcb * nr;
    int sense = 0;
    for (int k0 = 0, it = 0; k0 < K; k0 += jb->ksb, it++) {
        const int k1 = imin(K, k0 + jb->ksb);
        /* KC block pc of the super-block sits at asb + (pc - k0)·mpad */
        float *asb = jb->abuf + (size_t)(it & 1) * mpad * jb->ksb;
        for (int pc = k0; pc < k1; pc += kcb)
            pack_a_panels(ar, jb->transA, jb->A, jb->lda, 0, M, pc, imin(kcb, K - pc), a0, a1,
                          asb + (size_t)(pc - k0) * mpad);
        barrier_wait(jb->bar, nt, &sense);
        for (int jr = j0; jr < j1; jr++) {
            const int ne = imin(nr, N - jr * nr);
            float *cc = jb->C + jr * nr;
            for (int pc = k0; pc < k1; pc += kcb) {
                const int kc = imin(kcb, K - pc);
                const float beta = pc == 0 ? jb->beta : 1.0f;
                const float *ablk = asb + (size_t)(pc - k0) * mpad, *pb;
                if (jb->Bp) {
                    pb = jb->Bp->data + (size_t)pc * jb->Bp->npan * nr + (size_t)jr * kc * nr;
                } else {
                    pack_b_panels(ar, jb->transB, jb->B, jb->ldb, jr * nr, N - jr * nr, pc, kc, 0, 1, bpan);
                    pb = bpan;
                }
                for (int ir = 0; ir < mp; ir++)
                    tile(ar, kc, ablk + (ptrdiff_t)ir * kc * mr, pb, cc + (ptrdiff_t)ir * mr * jb->ldc,
                         jb->ldc, imin(mr, M - ir * mr), ne, jb->alpha, beta);
            }
        }
    }
}

/* Bytes of L2 per core (sysconf; 512 KB, Zen 3's, when unknown). */
static size_t l2_bytes(void) {
    static _Atomic long cached = 0;
    long v = cached;
    if (v) return (size_t)v;
#ifdef _SC_LEVEL2_CACHE_SIZE
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (v < 65536 || v > (64L << 20)) v = 512 * 1024;
    cached = v;
    return (size_t)v;
}

/* Below this many flops a second thread costs more (wake-up, barriers) than it saves. */
#define GEMM_MT_MIN_FLOPS 4e6

static int run_blocked(const gemm_arch *ar, int transA, int transB, int M, int N, int K,
                       float alpha, const float *A, int lda, const float *B, int ldb,
                       const gemm_packed *Bp, float beta, float *C, int ldc) {
    gemm_job jb = {
        .ar = ar, .transA = transA, .transB = transB, .M = M, .N = N, .K = K,
        .alpha = alpha, .beta = beta, .A = A, .lda = lda, .B = B, .ldb = ldb, .Bp = Bp,
        .C = C, .ldc = ldc,
    };
    jb.kcb = Bp ? Bp->kcb : block_size(K, ar->kc, 8);
    jb.ncb = block_size(N, ar->nc, ar->nr);

    int nt = g_threads ? g_threads : omp_get_max_threads();
    if (omp_in_parallel() || 2.0 * M * N * K < GEMM_MT_MIN_FLOPS) nt = 1;
    int tiles = ceil_div(M, ar->mr) * ceil_div(N, ar->nr);
    if (nt > tiles) nt = tiles;
    if (nt < 1) nt = 1;

    /* Small M (one A block holds all rows) with enough NR panels to go round: Goto's
     * short-and-wide order; otherwise the BLIS order. */
    int small = !Bp && M <= round_up(ar->mc, ar->mr) && ceil_div(N, ar->nr) >= nt;
    size_t bsz, asz;
    if (small) {
        /* A super-block: as many KC blocks as fit 3/4 of L2 with all M rows (at least one) */
        size_t mpad = (size_t)round_up(M, ar->mr);
        int nkb = (int)(l2_bytes() * 3 / 4 / sizeof(float) / (mpad * jb.kcb));
        jb.ksb = jb.kcb * (nkb < 1 ? 1 : nkb);
        bsz = (size_t)jb.kcb * ar->nr * nt;                        /* one micro-panel each */
        asz = mpad * jb.ksb * 2;                                   /* shared, double-buffered */
    } else {
        /* An A block is at most MC rows (rounded to MR) and never more than M needs; this
         * bound holds for any team size the runtime ends up giving. */
        jb.mcb_max = imin(round_up(ar->mc, ar->mr), round_up(M, ar->mr));
        jb.bblk_n = (size_t)jb.kcb * round_up(jb.ncb, ar->nr);
        bsz = Bp ? 0 : 2 * jb.bblk_n;                               /* shared, double-buffered */
        asz = (size_t)jb.mcb_max * jb.kcb * nt;                   /* one A block each */
    }
    float *s = scratch(bsz + asz + 16);
    if (!s) return fb_err("gemm: out of memory for %zu packing floats", bsz + asz);
    jb.bbuf = s;
    jb.abuf = s + bsz;

    void (*body)(const gemm_job *, int, int) = small ? gemm_thread_small : gemm_thread;
    if (nt == 1) {
        body(&jb, 0, 1);
        return 0;
    }
    gemm_barrier bar = {0, 0};
    jb.bar = &bar;
#pragma omp parallel num_threads(nt)
    {
        /* The runtime may give fewer threads than asked (thread limits); the barrier counts
         * on exactly nt, so a short team leaves all the work to its thread 0. */
        if (omp_get_num_threads() == nt) body(&jb, omp_get_thread_num(), nt);
        else if (omp_get_thread_num() == 0) body(&jb, 0, 1);
    }
    return 0;
}
#endif /* GEMM_AVX2 */

/* ---- public entry points ------------------------------------------------------------ */
void gemm_f32(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
#ifdef GEMM_AVX2
    const gemm_arch *ar = cur_arch();
    if (ar->kern && run_blocked(ar, transA, transB, M, N, K, alpha, A, lda, B, ldb,
                                NULL, beta, C, ldc) == 0)
        return;
#endif
    blas_gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void pack_all(gemm_packed *p, const float *B, int ldb) {
    if (!p->ar->kern) {   /* cblas layout: op(B) as a dense K×N matrix */
        for (int k = 0; k < p->K; k++)
            for (int j = 0; j < p->N; j++)
                p->data[(size_t)k * p->N + j] = p->transB ? B[(ptrdiff_t)j * ldb + k]
                                                          : B[(ptrdiff_t)k * ldb + j];
        return;
    }
#ifdef GEMM_AVX2
    const gemm_arch *ar = p->ar;
    const int nr = ar->nr, npan = p->npan, nkb = ceil_div(p->K, p->kcb);
    /* One task per (K block, panel); the whole matrix is one "B block" of width N. */
    int ntask = nkb * npan;
    int nt = omp_in_parallel() ? 1 : (g_threads ? g_threads : omp_get_max_threads());
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < ntask; t++) {
        int kb = t / npan, j = t % npan;
        int pc = kb * p->kcb, kc = imin(p->kcb, p->K - pc);
        float *blk = p->data + (size_t)pc * npan * nr;
        pack_b_panels(ar, p->transB, B, ldb, 0, p->N, pc, kc, j, j + 1, blk);
    }
#endif
}

gemm_packed *gemm_pack_b(int transB, int K, int N, const float *B, int ldb) {
    if (K <= 0 || N <= 0) { fb_err("gemm_pack_b: empty matrix %d×%d", K, N); return NULL; }
    gemm_packed *p = fb_alloc(sizeof *p);
    if (!p) return NULL;
    p->ar = cur_arch();
    p->transB = transB ? 1 : 0;
    p->K = K;
    p->N = N;
    if (p->ar->kern) {
        p->kcb = block_size(K, p->ar->kc, 8);
        p->npan = ceil_div(N, p->ar->nr);
        p->nfloats = (size_t)K * p->npan * p->ar->nr;
    } else {
        p->kcb = K;
        p->npan = N;
        p->nfloats = (size_t)K * N;
    }
    p->data = fb_alloc(p->nfloats * sizeof(float));
    if (!p->data) { fb_free(p); return NULL; }
    pack_all(p, B, ldb);
    return p;
}

void gemm_repack_b(gemm_packed *p, const float *B, int ldb) { pack_all(p, B, ldb); }

void gemm_packed_free(gemm_packed *p) {
    if (!p) return;
    fb_free(p->data);
    fb_free(p);
}

size_t gemm_packed_bytes(const gemm_packed *p) { return p ? p->nfloats * sizeof(float) : 0; }

int gemm_f32_prepacked(int transA, int M, float alpha, const float *A, int lda,
                       const gemm_packed *Bp, float beta, float *C, int ldc) {
    int N = Bp->N, K = Bp->K;
    if (M <= 0) return 0;
    if (alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return 0; }
#ifdef GEMM_AVX2
    if (Bp->ar->kern)
        return run_blocked(Bp->ar, transA, 0, M, N, K, alpha, A, lda, NULL, 0, Bp, beta, C, ldc);
#endif
    blas_gemm(transA, 0, M, N, K, alpha, A, lda, Bp->data, N, beta, C, ldc);
    return 0;
}
