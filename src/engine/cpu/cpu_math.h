/* fable cpu engine — a vectorisable expf.
 *
 * libm's expf is a scalar call; inside `#pragma omp simd` loops the compiler cannot
 * vectorise it without -ffast-math. This version is branch-free C that gcc turns into
 * AVX2 code: exp(x) = 2^n · e^r with n = round(x·log2 e), r = x − n·ln2 (ln2 split in a
 * hi and lo part so r is exact to fp32), e^r by a degree-6 Taylor/minimax polynomial on
 * |r| ≤ ln2/2, and 2^n built directly in the exponent bits. Max error ≈ 2 ulp over
 * [-87, 88] (checked against libm in tests/engine/test_cpu_math.c); inputs below −87.3 return 0, above 88.7 return +inf (as expf), NaN → NaN.
 */
#ifndef FABLE_CPU_MATH_H
#define FABLE_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^(xc − n·ln2) for n = round(xc·log2e): the reduced argument r = xc − n·ln2 (ln2 in a hi and
 * lo part, so r is exact to fp32) and e^r ≈ 1 + r + r²/2 + r³/6 + r⁴/24 + r⁵/120 + r⁶/720
 * on |r| ≤ 0.347. Shared by the two exps below, which differ in how they build 2^n. */
#pragma omp declare simd notinbranch
static inline float fb_exp_reduced(float xc, float n) {
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float r = xc - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

#pragma omp declare simd notinbranch
static inline float fb_expf(float x) {
    const float log2e = 1.44269504088896341f;
    float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    xc = x == x ? xc : 0.0f; /* NaN: compute on 0 (no UB in the int conversion), return NaN below */
    /* round to nearest by the 1.5·2^23 trick: branch-free and vectorisable (roundf is a libm call) */
    float n = (xc * log2e + 12582912.0f) - 12582912.0f;
    float p = fb_exp_reduced(xc, n);
    uint32_t e = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    float y = p * scale;
    y = x < -87.3f ? 0.0f : y;
    y = x > 88.7f ? __builtin_inff() : y;
    return x != x ? x : y;
}

/* exp(x) for the softmax, whose arguments are ≤ 0 (a logit minus its row's max or lse):
 * the same polynomial without the overflow branch, and 2^n built from the rounding sum's
 * own bits (t = x·log2e + 1.5·2^23 holds n in its low mantissa bits; no float→int
 * conversion). Valid for x ≤ 88 (larger x: garbage, never passed); x < −87.3 → 0; NaN → NaN.
 * Measured 0.18 ns/element against fb_expf's 0.32 in a sum over an L2-resident tile. */
#pragma omp declare simd notinbranch
static inline float fb_expf_le0(float x) {
    const float log2e = 1.44269504088896341f;
    const float xc = x < -87.3f ? -87.3f : x; /* NaN passes through */
    const float t = xc * log2e + 12582912.0f;
    const float p = fb_exp_reduced(xc, t - 12582912.0f);
    uint32_t tb;
    memcpy(&tb, &t, 4);
    const uint32_t e = (tb - 0x4B400000u + 127u) << 23; /* (n + 127) << 23; 0x4B400000 = bits of 1.5·2^23 */
    float scale;
    memcpy(&scale, &e, 4);
    const float y = p * scale; /* NaN input: p is NaN, so y is NaN */
    return x < -87.3f ? 0.0f : y;
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* fb_expf_le0 on 16 lanes, written with intrinsics and with its multiply-adds fused (so a
 * lane may differ from the C form by an ulp; both are checked against libm in
 * tests/engine/test_cpu_math.c). The compiler's vectorisation of the C form inside the
 * softmax rows' variable-length loops ran at 0.79 ns per element of a causal row; the rows
 * below, on this, at 0.46 (bench/RESULTS.md). */
static inline __m512 fb_expf_le0_v16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.3f), big = _mm512_set1_ps(12582912.0f);
    const __m512 xc = _mm512_max_ps(lo, x);  /* (lo, x): a NaN x passes through */
    const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), big);
    const __m512 n = _mm512_sub_ps(t, big);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.38888889e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.33333333e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.16666667e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.66666667e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000)),
                         _mm512_set1_epi32(127)), 23);
    const __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    return _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
}

/* lanes [0, n − u) of the 16 starting at u (all 16 when n − u ≥ 16) */
static inline __mmask16 fb_lanes(int u, int n) {
    const int k = n - u;
    return k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << k) - 1u);
}

/* x[j] = e^(x[j] − shift) on the lanes of k (x ≤ shift there); returns the exps, zero off k */
static inline __m512 fb_exp_shift16(float *x, __mmask16 k, __m512 shift) {
    const __m512 e = fb_expf_le0_v16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x), shift));
    _mm512_mask_storeu_ps(x, k, e);
    return _mm512_maskz_mov_ps(k, e);
}
#endif

/* ---- causal softmax rows (the attention kernels' shared element-wise steps) ---- */

/* One row of scores in place: s[0:n) → softmax (n = t + 1 visible keys of query t), and
 * s[n:nz) = 0 (the masked keys a following product reads). Returns lse = m + log Σ e^(s − m).
 * With inv non-NULL the row is left unnormalised, e^(s − m), and *inv = 1 / Σ e^(s − m)
 * (for a caller that scales its product's output row instead: HS multiplies, not n). */
static inline float cpu_softmax_causal_row(float *s, int n, int nz, float *inv) {
#if defined(__AVX512F__)
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int u = 0; u < n; u += 16)
        vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(vm, fb_lanes(u, n), s + u));
    const float m = _mm512_reduce_max_ps(vm);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 vs = _mm512_setzero_ps();
    for (int u = 0; u < n; u += 16) vs = _mm512_add_ps(vs, fb_exp_shift16(s + u, fb_lanes(u, n), mv));
    const float sum = _mm512_reduce_add_ps(vs);
    if (inv) {
        *inv = 1.0f / sum;
    } else {
        const __m512 r = _mm512_set1_ps(1.0f / sum);
        for (int u = 0; u < n; u += 16) {
            const __mmask16 k = fb_lanes(u, n);
            _mm512_mask_storeu_ps(s + u, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + u), r));
        }
    }
    for (int u = n; u < nz; u++) s[u] = 0.0f;
    return m + logf(sum);
#else
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int u = 0; u < n; u++) m = s[u] > m ? s[u] : m;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int u = 0; u < n; u++) {
        s[u] = fb_expf_le0(s[u] - m);
        sum += s[u];
    }
    if (inv) {
        *inv = 1.0f / sum;
    } else {
        const float r = 1.0f / sum;
#pragma omp simd
        for (int u = 0; u < n; u++) s[u] *= r;
    }
    for (int u = n; u < nz; u++) s[u] = 0.0f;
    return m + logf(sum);
#endif
}

/* Its backward, one row: p held the scaled scores and dp = dA·Vᵀ; then
 *   p[u] = e^(p[u] − lse),  Δ = Σ_u p[u]·dp[u],  dp[u] = p[u]·(dp[u] − Δ)·scale   (u < n)
 * and both are zero on [n, nz). */
static inline void cpu_softmax_grad_row(float *p, float *dp, int n, int nz, float lse, float scale) {
#if defined(__AVX512F__)
    const __m512 lv = _mm512_set1_ps(lse);
    __m512 vd = _mm512_setzero_ps();
    for (int u = 0; u < n; u += 16) {
        const __mmask16 k = fb_lanes(u, n);
        vd = _mm512_add_ps(vd, _mm512_mul_ps(fb_exp_shift16(p + u, k, lv), _mm512_maskz_loadu_ps(k, dp + u)));
    }
    const __m512 delta = _mm512_set1_ps(_mm512_reduce_add_ps(vd)), sc = _mm512_set1_ps(scale);
    for (int u = 0; u < n; u += 16) {
        const __mmask16 k = fb_lanes(u, n);
        const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + u), delta);
        _mm512_mask_storeu_ps(dp + u, k, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + u), d), sc));
    }
#else
    float delta = 0.0f;
#pragma omp simd reduction(+ : delta)
    for (int u = 0; u < n; u++) {
        p[u] = fb_expf_le0(p[u] - lse);
        delta += p[u] * dp[u];
    }
#pragma omp simd
    for (int u = 0; u < n; u++) dp[u] = p[u] * (dp[u] - delta) * scale;
#endif
    for (int u = n; u < nz; u++) p[u] = dp[u] = 0.0f;
}

#endif
