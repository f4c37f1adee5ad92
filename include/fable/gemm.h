/* fable — single-precision GEMM for the cpu engine.
 *
 *   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C[M,N]      (row-major)
 *
 * op(X) = X when trans == 0, Xᵀ when trans != 0; exactly cblas_sgemm(CblasRowMajor, ...):
 *   op(A)[i][p] = transA ? A[p*lda + i] : A[i*lda + p]
 *   op(B)[p][j] = transB ? B[j*ldb + p] : B[p*ldb + j]
 * beta == 0 never reads C (NaN garbage in C is overwritten); alpha == 0 or K == 0 only scales C.
 *
 * The three training forms (W[out,in] row-major, N tokens):
 *   forward  Y[N,out]  = X[N,in]  · Wᵀ      gemm_f32(0, 1, N, out, in,  1, X, in,  W, in,  0|1, Y, out)
 *   dx       dX[N,in]  = dY[N,out] · W      gemm_f32(0, 0, N, in,  out, 1, dY, out, W, in, 0|1, dX, in)
 *   dW       dW[out,in] += dYᵀ · X          gemm_f32(1, 0, out, in, N,  1, dY, out, X, in,  1, dW, in)
 *
 * Built the BLIS way (src/engine/cpu/gemm.c, its kernels in gemm_kernels.c): one
 * register-blocked micro-kernel (AVX-512 8×32 where the compiler targets AVX-512, else
 * AVX2/FMA 6×16), A and B packed into contiguous panels, K/M/N cache blocking, OpenMP over
 * all threads (each thread computes its part of C, no barriers; see below). Without AVX2+FMA it
 * calls cblas_sgemm. Called from inside an OpenMP parallel region it runs single-threaded.
 * Thread-safe: each calling thread keeps its own packing scratch (≤ ~5 MB, kept for reuse,
 * freed when the thread exits).
 * Deterministic: the same shapes and thread count give bit-identical results run to run.
 * Row/column splits hand out their blocks of C at run time (a thread that finishes early
 * takes the rest of a slower one's part), but every element is computed the same way
 * whichever thread computes it, so they match the 1-thread result bit for bit; a K split
 * (chosen when M·N is small and K long, e.g. the stories15M/260K dW shapes) is static and
 * differs from the 1-thread result by rounding.
 * Measured against OpenBLAS on every training shape: bench/RESULTS.md.
 */
#ifndef FABLE_GEMM_H
#define FABLE_GEMM_H

#include <stddef.h>

void gemm_f32(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);

/* For tests of the run-time split: before each block of C they take, threads other than 0
 * spin until some thread has taken a block from another's part (counted since the last
 * gemm_test_steals) or `us` µs have passed (0: off), so that thread 0 takes over their
 * blocks however the cores are scheduled; gemm_test_steals returns how many blocks were
 * taken from another thread's part since the last call. */
void gemm_test_skew(int us);
long gemm_test_steals(void);

/* ---- pre-packed B ------------------------------------------------------------
 * A weight matrix is the B operand of the forward (transB = 1) and dx (transB = 0)
 * forms and only changes at the optimizer step: pack op(B)[K,N] once, reuse it for every
 * call until the weights change, then gemm_repack_b (same shape, no allocation).
 * The packed form is a copy (about K·N floats, N rounded up to the panel width) laid out
 * for the micro-kernel selected when it was packed. */
typedef struct gemm_packed gemm_packed;

gemm_packed *gemm_pack_b(int transB, int K, int N, const float *B, int ldb); /* NULL + fb_err */
void gemm_repack_b(gemm_packed *p, const float *B, int ldb);
void gemm_packed_free(gemm_packed *p);
size_t gemm_packed_bytes(const gemm_packed *p);

/* C[M,N] = alpha · op(A)[M,K] · op(Bp) + beta · C, K and N from the packed B.
 * Returns 0, or -1 + fb_err when its packing scratch (≤ ~1 MB) cannot be allocated
 * (gemm_f32 falls back to cblas_sgemm in that case; a packed B cannot). */
int gemm_f32_prepacked(int transA, int M, float alpha, const float *A, int lda,
                       const gemm_packed *Bp, float beta, float *C, int ldc);

/* ---- operands packed by the caller ---------------------------------------------
 * For a caller that reuses an operand across many products, or writes it in packed form
 * itself (the classifier's softmax gradient, src/engine/cpu/cpu_cls.c). A layout is the
 * panel widths of one micro-kernel: `own` = 1 the current gemm kernel, 0 cblas_sgemm.
 * Both operands are cut into K blocks of kcb (gemm_layout_kc; every block kcb long but the
 * last); block b (k0 = b·kcb, kc = min(kcb, K − k0)) holds the zero-padded panels of width
 * w (mr for A, nr for B), panel q at q·kc·w, one k per w floats:
 *   A[i][k] at  k0·Mpad + (i/mr)·kc·mr + (k − k0)·mr + i%mr      (Mpad = M rounded up to mr)
 *   B[k][j] at  k0·Npad + (j/nr)·kc·nr + (k − k0)·nr + j%nr      (Npad = N rounded up to nr)
 * (gemm_packed_a_at). With cblas (w = 1, kcb = K) that is A row-major and Bᵀ row-major.
 * gemm_f32_pp computes C[M,N] = alpha·A·B + beta·C on the calling thread only; packed B must
 * be 64-byte aligned (fb_alloc), as the kernels load its panels with aligned loads. */
typedef struct { const void *arch; int mr, nr; } gemm_layout;
gemm_layout gemm_layout_get(int own);
int gemm_layout_kc(const gemm_layout *lo, int K);
size_t gemm_packed_a_floats(const gemm_layout *lo, int M, int K);
size_t gemm_packed_b_floats(const gemm_layout *lo, int K, int N);
void gemm_pack_a_into(const gemm_layout *lo, int transA, int M, int K, int kcb, const float *A, int lda,
                      float *dst);
void gemm_pack_b_into(const gemm_layout *lo, int transB, int K, int N, int kcb, const float *B, int ldb,
                      float *dst);
void gemm_f32_pp(const gemm_layout *lo, int M, int N, int K, int kcb, float alpha, const float *pa,
                 const float *pb, float beta, float *C, int ldc);
/* index of A[i][k] in a packed A of M×K (the formula above; also B[k][j] with i = j, w = nr) */
static inline size_t gemm_packed_a_at(int w, int M, int K, int kcb, int i, int k) {
    const int k0 = k / kcb * kcb, kc = K - k0 < kcb ? K - k0 : kcb;
    const size_t mpad = (size_t)((M + w - 1) / w) * w;
    return (size_t)k0 * mpad + (size_t)(i / w) * kc * w + (size_t)(k - k0) * w + i % w;
}

/* ---- packing -------------------------------------------------------------------
 * One transposed panel, the layout the micro-kernel reads for a B operand with transB (and
 * an A operand without transA): dst[p·w + r] = src[r·lds + p] for r < we, p < kc, and zero
 * for we ≤ r < w. Also lays out the attention's 32-key panels (cpu_attn_tiles.c). Compiled
 * where the GEMM has its own kernels (AVX2 + FMA). */
void gemm_pack_transposed(int w, int we, int kc, const float *src, ptrdiff_t lds, float *dst);

/* ---- tuning / benchmarking ---------------------------------------------------- */
/* Micro-kernel choice: "avx512" (8×32, if compiled in), "avx2" (6×16), "blas" (cblas_sgemm).
 * Default: the widest compiled in; FABLE_GEMM_KERNEL overrides at first use.
 * Returns 0, or -1 + fb_err if that kernel is not available. Not thread-safe: call
 * before GEMMs run. Already-packed B keeps the kernel it was packed for. */
int gemm_set_kernel(const char *name);
const char *gemm_kernel_name(void);

/* Threads for gemm_f32 (0 = omp_get_max_threads(), the default). */
void gemm_set_threads(int n);

#endif
