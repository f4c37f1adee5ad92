/* fable — cpu engine: the GEMM's micro-kernels, packing routines and kernel table
 * (gemm_kernels.h says what each is for; gemm.c blocks and threads the products). */
#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/simd_transpose.h"
#include "fable/gemm.h"
#include "fable/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef GEMM_AVX2
/* ---- packing ---------------------------------------------------------------------- */
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
void gemm_pack_contig(int w, int n, int kc, const float *src, ptrdiff_t lds, float *dst) {
    switch (w) {
    case 8:  pack_contig_panels_w(8, n, kc, src, lds, dst); break;
    case 16: pack_contig_panels_w(16, n, kc, src, lds, dst); break;
    case 32: pack_contig_panels_w(32, n, kc, src, lds, dst); break;
    default: pack_contig_panels_w(w, n, kc, src, lds, dst); break;
    }
}

/* Panel whose values for one r are contiguous along k in the source (gemm.h):
 *   dst[p*w + r] = src[r*lds + p]   (r < we; zero for we ≤ r < w), p < kc.
 * Serves op(A) without transA (A[i][p]) and op(B) with transB (W[j][p], the forward form).
 * 8 rows × 8 k at a time: 8 row loads, an in-register transpose, 8 stores of 8 lanes
 * (fewer lanes, masked, for the last group of a 6-wide panel). Only rows < we are read. */
void gemm_pack_transposed(int w, int we, int kc, const float *src, ptrdiff_t lds, float *dst) {
#ifdef GEMM_AVX512
    /* panels a multiple of 16 wide (the 8×32 kernel's B): 16 rows × 16 k per transpose, then
     * the remaining k (kc mod 16) of those rows one by one */
    if ((w & 15) == 0) {
        for (int r0 = 0; r0 < w; r0 += 16) {
            const int rv = we - r0 < 0 ? 0 : imin(16, we - r0);
            const float *sp = src + (ptrdiff_t)r0 * lds;
            float *d = dst + r0;
            int p = 0;
            for (; p + 16 <= kc; p += 16) {
                __m512 v[16];
                for (int i = 0; i < 16; i++)
                    v[i] = i < rv ? _mm512_loadu_ps(sp + (ptrdiff_t)i * lds + p) : _mm512_setzero_ps();
                tr16x16(v);
                for (int t = 0; t < 16; t++) _mm512_storeu_ps(d + (ptrdiff_t)(p + t) * w, v[t]);
            }
            for (; p < kc; p++)
                for (int i = 0; i < 16; i++) d[(ptrdiff_t)p * w + i] = i < rv ? sp[(ptrdiff_t)i * lds + p] : 0.0f;
        }
        return;
    }
#endif
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

void gemm_ukernel_avx512_8x32(int kc, const float *restrict pa, const float *restrict pb,
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
/* The same tile on operands read in place: A(i, p) at a[i·ars + p·aks] (broadcast) and
 * B's row p at b + p·bks (two vectors, any alignment), for the products where packing
 * costs as much as it saves (gemm.c: run_direct_a, seq_direct_ab). */
#define S_STEP(i) { __m512 ai = _mm512_set1_ps(a##i[ak]);                                  \
                    c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);                       \
                    c##i##b = _mm512_fmadd_ps(ai, b1, c##i##b); }
void gemm_ukernel_avx512_8x32_strided(int kc, const float *restrict a, ptrdiff_t ars, ptrdiff_t aks,
                                      const float *restrict b, ptrdiff_t bks, float *restrict c, ptrdiff_t ldc,
                                      float alpha, float beta) {
    const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars, *a4 = a + 4 * ars,
                *a5 = a + 5 * ars, *a6 = a + 6 * ars, *a7 = a + 7 * ars;
    Z_DECL(0) Z_DECL(1) Z_DECL(2) Z_DECL(3) Z_DECL(4) Z_DECL(5) Z_DECL(6) Z_DECL(7)
    Z_PF(0) Z_PF(1) Z_PF(2) Z_PF(3) Z_PF(4) Z_PF(5) Z_PF(6) Z_PF(7)
    ptrdiff_t ak = 0;
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++, ak += aks, b += bks) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        S_STEP(0) S_STEP(1) S_STEP(2) S_STEP(3) S_STEP(4) S_STEP(5) S_STEP(6) S_STEP(7)
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    Z_ST(0) Z_ST(1) Z_ST(2) Z_ST(3) Z_ST(4) Z_ST(5) Z_ST(6) Z_ST(7)
}
#endif /* GEMM_AVX512 */
#endif /* GEMM_AVX2 */

static gemm_arch g_archs[] = {   /* blocks adjustable once via FABLE_GEMM_BLOCKS */
#ifdef GEMM_AVX512
    {"avx512", 8, 32, 384, 256, 4096, gemm_ukernel_avx512_8x32},
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

const gemm_arch *gemm_arch_find(const char *name) {
    pthread_once(&g_archs_once, archs_init);
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(g_archs[i].name, name) == 0) return &g_archs[i];
    return NULL;
}

const gemm_arch *gemm_arch_current(void) {
    const gemm_arch *a = g_arch;
    if (a) return a;
    const char *e = getenv("FABLE_GEMM_KERNEL");
    a = (e && *e) ? gemm_arch_find(e) : NULL;
    if (!a) a = gemm_arch_find(g_archs[0].name);
    g_arch = a;
    return a;
}

int gemm_set_kernel(const char *name) {
    const gemm_arch *a = gemm_arch_find(name);
    if (!a) return fb_err("gemm: kernel '%s' is not compiled into this build", name);
    g_arch = a;
    return 0;
}

const char *gemm_kernel_name(void) { return gemm_arch_current()->name; }
