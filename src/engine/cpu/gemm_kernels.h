/* fable — cpu engine: the GEMM's micro-kernels, packing routines and kernel table
 * (gemm_kernels.c), shared with the blocking and threading code of gemm.c.
 *
 * Micro-kernels (chosen at compile time by what the target has, switchable at run time):
 *  - AVX-512, 8×32: 16 zmm accumulators (8 rows × 2 vectors), 2 B loads + 8 broadcasts per
 *    16 FMAs. Measured in isolation at ~98% of the 2-FMA/cycle peak with A streaming from L2.
 *    8 rows because every token count and layer width fable uses is a multiple of 8, so
 *    row edges never waste FMAs on the real shapes (12×32 measured the same in isolation
 *    but wastes 3% at M = 256).
 *  - AVX2, 6×16: the classic 12 ymm accumulators (6 rows × 2 vectors) + 2 B + 1 broadcast.
 * Packed layouts: gemm.c's header comment. */
#ifndef FABLE_GEMM_KERNELS_H
#define FABLE_GEMM_KERNELS_H

#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GEMM_AVX2 1
#if defined(__AVX512F__)
#define GEMM_AVX512 1
#endif
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
static inline int round_up(int a, int m) { return ceil_div(a, m) * m; }

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

/* The kernel named (NULL if not compiled in), and the one in use: FABLE_GEMM_KERNEL, else
 * the widest compiled in; gemm_set_kernel (gemm.h) changes it. */
const gemm_arch *gemm_arch_find(const char *name);
const gemm_arch *gemm_arch_current(void);

#ifdef GEMM_AVX2
/* Panels whose w values per k are contiguous in the source (op(A) with transA, op(B)
 * without transB), a plain copy; n values per k-row in ceil(n/w) zero-padded panels:
 *   dst[q·kc·w + p·w + r] = src[p·lds + q·w + r]   (q·w + r < n; else 0),  p < kc.
 * (The transposing counterpart, gemm_pack_transposed, is in gemm.h.) */
void gemm_pack_contig(int w, int n, int kc, const float *src, ptrdiff_t lds, float *dst);
#endif
#ifdef GEMM_AVX512
void gemm_ukernel_avx512_8x32(int kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                              ptrdiff_t ldc, float alpha, float beta);
/* The same tile on operands read in place: A(i, p) at a[i·ars + p·aks] (broadcast) and B's
 * row p at b + p·bks (two vectors, any alignment). */
void gemm_ukernel_avx512_8x32_strided(int kc, const float *restrict a, ptrdiff_t ars, ptrdiff_t aks,
                                      const float *restrict b, ptrdiff_t bks, float *restrict c, ptrdiff_t ldc,
                                      float alpha, float beta);
#endif

#endif
