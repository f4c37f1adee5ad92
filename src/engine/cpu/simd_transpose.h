/* fable cpu engine — in-register transposes of float tiles (AVX2 8×8, AVX-512 16×16),
 * shared by the GEMM's panel packing (gemm.c), the classifier's packed gradient
 * (cpu_cls.c) and the small-head attention's K/V layouts (cpu_attn_direct.c). */
#ifndef FABLE_SIMD_TRANSPOSE_H
#define FABLE_SIMD_TRANSPOSE_H

#if defined(__AVX2__)
#include <immintrin.h>

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

/* dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols: 8×8 blocks through tr8x8, the
 * edges (rows or cols not a multiple of 8) element by element. */
static inline void fb_transpose(const float *src, int lds, int rows, int cols, float *dst, int ldd) {
    const int r8 = rows & ~7, c8 = cols & ~7;
    for (int r0 = 0; r0 < r8; r0 += 8)
        for (int c0 = 0; c0 < c8; c0 += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(src + (size_t)(r0 + i) * lds + c0);
            tr8x8(v);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (size_t)(c0 + i) * ldd + r0, v[i]);
        }
    for (int r = 0; r < rows; r++)
        for (int c = r < r8 ? c8 : 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

#if defined(__AVX512F__)
/* Transpose 16×16 in registers: r[i][j] → r[j][i]. Four stages: interleave pairs of rows
 * (unpack), gather 4-row columns within each 128-bit lane (shuffle_ps), then move whole
 * 128-bit lanes twice (shuffle_f32x4) so lane m of output column c holds rows 4m..4m+3. */
static inline void tr16x16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int m = 0; m < 8; m++) {
        t[2 * m] = _mm512_unpacklo_ps(r[2 * m], r[2 * m + 1]);
        t[2 * m + 1] = _mm512_unpackhi_ps(r[2 * m], r[2 * m + 1]);
    }
    /* u[4m + c], lane L: column 4L + c of rows 4m..4m+3 */
    for (int m = 0; m < 4; m++) {
        u[4 * m + 0] = _mm512_shuffle_ps(t[4 * m], t[4 * m + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * m + 1] = _mm512_shuffle_ps(t[4 * m], t[4 * m + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * m + 2] = _mm512_shuffle_ps(t[4 * m + 1], t[4 * m + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * m + 3] = _mm512_shuffle_ps(t[4 * m + 1], t[4 * m + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* for each c: 4×4 transpose of 128-bit lanes across u[c], u[4+c], u[8+c], u[12+c] */
    for (int c = 0; c < 4; c++) {
        __m512 b0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), b1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 b2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), b3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(b0, b2, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(b0, b2, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(b1, b3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(b1, b3, 0xDD);
    }
}
#endif

#endif /* __AVX2__ */
#endif
