/* fable cpu engine — internals shared by its kernel files.
 *
 * Threads: OpenMP (one pool for the life of the process, never created per call);
 * OpenBLAS is Debian's OpenMP build, so its GEMMs use the same pool and run
 * single-threaded when called inside a parallel region. Every reduction is done in a
 * fixed order so that results are bit-identical from run to run with the same
 * thread count (checkpoint resume depends on it).
 */
#ifndef FABLE_CPU_INTERNAL_H
#define FABLE_CPU_INTERNAL_H

#include <cblas.h>
#include <math.h>

#include "fable/engine.h"
#include "fable/gemm.h"

/* ---- GEMM forms (row-major). All the engine's matmuls go through these three. ----
 * cpu_gemm_use_own: 1 = fable's packed AVX2 GEMM (src/engine/cpu/gemm.c), 0 = OpenBLAS.
 * Chosen by measurement (bench/RESULTS.md); FABLE_GEMM=blas|fable overrides at engine creation. */
extern int cpu_gemm_use_own;
/* Query rows per causal attention block (cpu_attn.c); FABLE_ATTN_BLOCK overrides at engine creation. */
extern int cpu_attn_block;
/* Head sizes up to this use the direct attention kernels (cpu_attn_direct.c) instead of the
 * GEMM-tiled ones; FABLE_ATTN_DIRECT_HS overrides (0 = always GEMM-tiled). */
extern int cpu_attn_direct_hs;
static inline void cpu_sgemm(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                             int ldb, float beta, float *C, int ldc) {
    if (cpu_gemm_use_own)
        gemm_f32(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    else
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                    A, lda, B, ldb, beta, C, ldc);
}
/* C[M,N] = beta·C + A[M,K] · B[N,K]ᵀ      forward:  Y = X·Wᵀ */
static inline void mm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc) {
    cpu_sgemm(0, 1, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
/* C[M,N] = beta·C + A[M,K] · B[K,N]       backward to dx:  dX = dY·W */
static inline void mm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc) {
    cpu_sgemm(0, 0, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
/* C[M,N] = beta·C + A[K,M]ᵀ · B[K,N]      weight gradient:  dW (+)= dYᵀ·X */
static inline void mm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc) {
    cpu_sgemm(1, 0, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

/* ---- engine-owned scratch: reused across calls, grown on demand (never per-call alloc) ---- */
enum { CPU_SCRATCH_CLS = 0, CPU_SCRATCH_COUNT };
void *cpu_scratch(eng *e, int slot, size_t bytes);
/* Per-thread scratch (attention tiles): call inside a parallel region; contents undefined. */
#define CPU_MAX_THREADS 256
float *cpu_thread_scratch(eng *e, size_t bytes);

/* ---- shared element-wise pieces (cpu_engine.c) ---- */
/* dst = src over n floats; parallel when large (a serial copy lets the team fall asleep). */
void cpu_copy_floats(float *dst, const float *src, size_t n);
/* out[n,:] = x[n,:]·rstd[n]·w, rstd[n] = 1/sqrt(mean(x[n,:]²) + eps). Parallel over rows. */
void cpu_rmsnorm_rows(int N, int D, const float *x, const float *w, float *out, float *rstd);
/* RMSNorm backward. dx = base + rstd·(ĝ − x̂·mean(ĝ⊙x̂)), ĝ = dout⊙w, x̂ = x·rstd
 * (base may be NULL = 0); dw (+)= Σ_n dout⊙x̂ (acc: +=, else =; column-parallel, order fixed). */
void cpu_rmsnorm_bwd_rows(int N, int D, const float *x, const float *w, const float *rstd,
                          const float *dout, const float *base, float *dx, float *dw, int acc);
/* Rotate pairs (2i, 2i+1) of each head of rows [N, heads·HS] by ±angle(pos = n mod T). */
void cpu_rope(float *x, int N, int T, int heads, int HS, const float *rope, int inverse);

/* gate = silu(h1)⊙h3 over n elements, parallel (cpu_ffn.c). */
void cpu_swiglu(size_t n, const float *h1, const float *h3, float *gate);
/* gate = silu(h1)⊙h3⊙mask/(1−p), the dropout mask of site_seed (engine.h) */
void cpu_swiglu_drop(size_t n, const float *h1, const float *h3, float *gate, uint32_t site_seed, float p);
/* x ⊙= mask/(1−p) over n elements */
void cpu_dropout_mul(size_t n, float *x, uint32_t site_seed, float p);

/* Causal attention core without GEMM calls, for small heads (cpu_attn_direct.c):
 * fwd fills att [N, D] and lse [B, NH, T]; bwd writes dq [N, D], dk, dv [N, KVD] from da.
 * o: the forward's att as stored, or NULL; with it, the backward takes each row's
 * Δ_t = Σ_u P·dP as o_keep·Σ_d dA·o (1, or 1 − p when att and dA carry a dropout mask/(1 − p))
 * and needs no pass of its own for it. */
void cpu_attn_fwd_direct(eng *e, const eng_dims *d, const float *q, const float *k, const float *v,
                         float *att, float *lse);
void cpu_attn_bwd_direct(eng *e, const eng_dims *d, const float *q, const float *k, const float *v,
                         const float *lse, const float *o, float o_keep, const float *da, float *dq, float *dk,
                         float *dv);

/* Causal attention on register tiles with K and V laid out once per kv head
 * (cpu_attn_tiles.c), for the head sizes cpu_attn_tiles_fit accepts (32, 48, 64 with
 * AVX-512), while cpu_attn_tiles is 1 (FABLE_ATTN_TILES=0 sets 0). Same contract as the
 * direct kernels. */
extern int cpu_attn_tiles;
int cpu_attn_tiles_fit(int HS);
void cpu_attn_fwd_tiles(eng *e, const eng_dims *d, const float *q, const float *k, const float *v,
                        float *att, float *lse);
void cpu_attn_bwd_tiles(eng *e, const eng_dims *d, const float *q, const float *k, const float *v,
                        const float *lse, const float *da, float *dq, float *dk, float *dv);

/* The attention core alone (q, k, v after RoPE → att, lse; da → dq, dk, dv before the
 * inverse RoPE), by the path the settings above choose for d->HS (cpu_attn.c). */
void cpu_attn_core_fwd(eng *e, const eng_dims *d, const float *q, const float *k, const float *v,
                       float *att, float *lse);
void cpu_attn_core_bwd(eng *e, const eng_dims *d, const float *q, const float *k, const float *v,
                       const float *lse, const float *o, float o_keep, const float *da, float *dq, float *dk,
                       float *dv);

/* Kernel entry points wired into the vtable by cpu_engine.c. */
void cpu_attn_fwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope,
                  eng_attn_taps *taps, float *x_out);
void cpu_attn_bwd(eng *e, const eng_dims *d, const model_layer *w, const float *rope,
                  const eng_attn_taps *taps, const float *dy, eng_attn_grads *g);
void cpu_qkv_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_attn_taps *taps,
                 const float *dy, eng_attn_grads *g, float *dx, model_layer *grad, int acc);
void cpu_attn_dw(eng *e, const eng_dims *d, const eng_attn_taps *taps, const float *dy,
                 const eng_attn_grads *g, model_layer *grad, int acc);
void cpu_ffn_fwd(eng *e, const eng_dims *d, const model_layer *w, eng_ffn_taps *taps, float *x_out);
void cpu_ffn_bwd(eng *e, const eng_dims *d, const model_layer *w, const eng_ffn_taps *taps,
                 const float *dy, eng_ffn_grads *g, float *dx, model_layer *grad, int acc);
void cpu_ffn_dw(eng *e, const eng_dims *d, const eng_ffn_taps *taps, const float *dy,
                const eng_ffn_grads *g, model_layer *grad, int acc);
void cpu_cls_loss(eng *e, const eng_dims *d, const float *xn, const float *wcls,
                  const int32_t *targets, float scale, float *losses, double *loss_sum, float *dxn,
                  float *dwcls, int acc);
/* Measured fp32 FMA peak of `threads` cores in GFLOP/s (~0.1 s; cpu_peak.c). */
double eng_cpu_measure_peak(int threads);

#endif
