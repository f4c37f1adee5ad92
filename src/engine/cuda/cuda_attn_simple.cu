/* fable cuda engine — attention: the CUDA-core fp32 kernels and attn_delta
 * (overview and math: cuda_attn.cu; shared helpers: cuda_attn.cuh). */
#include <type_traits>

#include "engine/cuda/cuda_attn.cuh"

/* ---- simple kernels: CUDA-core fp32 ------------------------------------------------------------
 * G lanes per row, each owning NC/G of the NC = HS/4 float4 chunks (chunk c = i·G + p for lane p;
 * the G lanes of a row read adjacent float4s, all rows the same tile row: no bank conflicts).
 * A CTA owns ROWS = 64 query (fwd, dq) or key (dk/dv) rows; the other side streams through shared
 * memory in tiles of BK rows, every row of a tile visited by every thread (uniform control flow for
 * the shuffles; out-of-range pairs are masked). */
template <int HS>
struct attn_simple_cfg {
    static constexpr int NC = HS / 4;
    static constexpr int G_FWD = HS > 64 ? 2 : 1;                      /* fwd: q, o */
    static constexpr int G_BWD = HS <= 32 ? 1 : (HS <= 64 ? 2 : 4);   /* dq: q, da, dq; dk/dv: k, v, dk, dv */
    static constexpr int ROWS = 64;                                    /* rows a CTA owns */
    static constexpr int BK = HS > 64 ? 32 : 64;                       /* rows per staged tile */
    static constexpr size_t SMEM_KV = (size_t)2 * BK * HS * sizeof(float);               /* fwd, dq */
    static constexpr size_t SMEM_DKDV = (size_t)(2 * BK * HS + 2 * BK) * sizeof(float);  /* dk/dv */
    static_assert(HS % 8 == 0 && HS <= 128, "head size");
    static_assert(NC % G_FWD == 0 && NC % G_BWD == 0, "chunks split over the lanes of a row");
};

/* att, lse. Grid (query tiles, largest first; B·NH), block 64·G_FWD. */
template <typename A, int HS>
__global__ void __launch_bounds__(64 * attn_simple_cfg<HS>::G_FWD, 1)
    attn_fwd_simple(const A *__restrict__ q, const A *__restrict__ k, const A *__restrict__ v, A *__restrict__ att,
                    float *__restrict__ lse, int T, int NH, int NKV, float scale_log2) {
    using C = attn_simple_cfg<HS>;
    constexpr int G = C::G_FWD, NC = C::NC, NV = NC / G, BK = C::BK, KC = 8;
    float *sK = reinterpret_cast<float *>(attn_smem); /* [BK][HS] */
    float *sV = sK + BK * HS;                         /* [BK][HS] */
    const float4 *sK4 = reinterpret_cast<const float4 *>(sK), *sV4 = reinterpret_cast<const float4 *>(sV);
    const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh - b * NH, kh = h / (NH / NKV);
    const int p = threadIdx.x % G, t = qt * C::ROWS + threadIdx.x / G; /* t may be ≥ T: computed, never stored */
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const A *kb = k + (size_t)b * T * ks + kh * HS, *vb = v + (size_t)b * T * ks + kh * HS;

    float4 qv[NV], o[NV];
#pragma unroll
    for (int i = 0; i < NV; i++) {
        qv[i] = t < T ? attn_load4(q + ((size_t)b * T + t) * qs + h * HS + (i * G + p) * 4, scale_log2)
                      : make_float4(0.f, 0.f, 0.f, 0.f);
        o[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float m = -INFINITY, l = 0.f; /* running max (base-2 units) and sum of exp2(x − m) */
    const int kend = min(T, qt * C::ROWS + C::ROWS); /* keys this CTA needs: j < kend */
    for (int k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads(); /* the previous tile is consumed */
        attn_stage_f32<A, HS, BK>(sK, kb, ks, k0, T);
        attn_stage_f32<A, HS, BK>(sV, vb, ks, k0, T);
        __syncthreads();
        for (int j0 = 0; j0 < BK; j0 += KC) {
            float x[KC], mx = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < KC; jj++) {
                const int j = j0 + jj;
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < NV; i++) d += attn_dot4(qv[i], sK4[j * NC + i * G + p]);
                d = attn_group_sum<G>(d);
                x[jj] = k0 + j <= t ? d : -INFINITY; /* causal (also masks the zero rows past T) */
                mx = fmaxf(mx, x[jj]);
            }
            const float mn = fmaxf(m, mx), mb = mn == -INFINITY ? 0.f : mn, corr = exp2f(m - mb);
            m = mn;
            l *= corr;
#pragma unroll
            for (int i = 0; i < NV; i++) o[i].x *= corr, o[i].y *= corr, o[i].z *= corr, o[i].w *= corr;
#pragma unroll
            for (int jj = 0; jj < KC; jj++) {
                const float pj = exp2f(x[jj] - mb);
                l += pj;
#pragma unroll
                for (int i = 0; i < NV; i++) attn_axpy4(o[i], pj, sV4[(j0 + jj) * NC + i * G + p]);
            }
        }
    }
    if (t < T) {
        const float inv = 1.f / l;
#pragma unroll
        for (int i = 0; i < NV; i++) attn_store4(att + ((size_t)b * T + t) * qs + h * HS + (i * G + p) * 4, o[i], inv);
        if (p == 0) lse[(size_t)bh * T + t] = (m + log2f(l)) * ATTN_LN2;
    }
}

/* dq. Grid (query tiles, largest first; B·NH), block 64·G_BWD. */
template <typename A, int HS>
__global__ void __launch_bounds__(64 * attn_simple_cfg<HS>::G_BWD, 1)
    attn_dq_simple(const A *__restrict__ q, const A *__restrict__ k, const A *__restrict__ v,
                   const A *__restrict__ da, const float *__restrict__ lse, const float *__restrict__ delta,
                   A *__restrict__ dq, int T, int NH, int NKV, float scale_log2, float scale) {
    using C = attn_simple_cfg<HS>;
    constexpr int G = C::G_BWD, NC = C::NC, NV = NC / G, BK = C::BK;
    float *sK = reinterpret_cast<float *>(attn_smem); /* [BK][HS] */
    float *sV = sK + BK * HS;                         /* [BK][HS] */
    const float4 *sK4 = reinterpret_cast<const float4 *>(sK), *sV4 = reinterpret_cast<const float4 *>(sV);
    const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh - b * NH, kh = h / (NH / NKV);
    const int p = threadIdx.x % G, t = qt * C::ROWS + threadIdx.x / G;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const A *kb = k + (size_t)b * T * ks + kh * HS, *vb = v + (size_t)b * T * ks + kh * HS;
    const size_t qo = ((size_t)b * T + t) * qs + h * HS; /* this row's head in q, da, dq (used only if t < T) */

    float4 qv[NV], dav[NV], acc[NV];
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
        qv[i] = t < T ? attn_load4(q + qo + (i * G + p) * 4, scale_log2) : z;
        dav[i] = t < T ? attn_load4(da + qo + (i * G + p) * 4, 1.f) : z;
        acc[i] = z;
    }
    const float lse2 = t < T ? lse[(size_t)bh * T + t] * ATTN_LOG2E : 0.f;
    const float dl = t < T ? delta[(size_t)bh * T + t] : 0.f;
    const int kend = min(T, qt * C::ROWS + C::ROWS);
    for (int k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads();
        attn_stage_f32<A, HS, BK>(sK, kb, ks, k0, T);
        attn_stage_f32<A, HS, BK>(sV, vb, ks, k0, T);
        __syncthreads();
        for (int j = 0; j < BK; j++) {
            float x = 0.f, dp = 0.f;
#pragma unroll
            for (int i = 0; i < NV; i++) {
                x += attn_dot4(qv[i], sK4[j * NC + i * G + p]);
                dp += attn_dot4(dav[i], sV4[j * NC + i * G + p]);
            }
            x = attn_group_sum<G>(x);
            dp = attn_group_sum<G>(dp);
            const float pj = k0 + j <= t && t < T ? exp2f(x - lse2) : 0.f;
            const float ds = pj * (dp - dl) * scale;
#pragma unroll
            for (int i = 0; i < NV; i++) attn_axpy4(acc[i], ds, sK4[j * NC + i * G + p]);
        }
    }
    if (t < T) {
#pragma unroll
        for (int i = 0; i < NV; i++) attn_store4(dq + qo + (i * G + p) * 4, acc[i], 1.f);
    }
}

/* dk, dv. Grid (key tiles; B·NKV), block 64·G_BWD. */
template <typename A, int HS>
__global__ void __launch_bounds__(64 * attn_simple_cfg<HS>::G_BWD, 1)
    attn_dkdv_simple(const A *__restrict__ q, const A *__restrict__ k, const A *__restrict__ v,
                     const A *__restrict__ da, const float *__restrict__ lse, const float *__restrict__ delta,
                     A *__restrict__ dk, A *__restrict__ dv, int T, int NH, int NKV, float scale_log2, float scale) {
    using C = attn_simple_cfg<HS>;
    constexpr int G = C::G_BWD, NC = C::NC, NV = NC / G, BQ = C::BK;
    float *sQ = reinterpret_cast<float *>(attn_smem); /* [BQ][HS] */
    float *sA = sQ + BQ * HS;                         /* [BQ][HS] da */
    float *sL = sA + BQ * HS;                         /* [BQ] lse·log2(e) */
    float *sD = sL + BQ;                              /* [BQ] delta */
    const float4 *sQ4 = reinterpret_cast<const float4 *>(sQ), *sA4 = reinterpret_cast<const float4 *>(sA);
    const int bk = blockIdx.y, b = bk / NKV, kh = bk - b * NKV, grp = NH / NKV;
    const int p = threadIdx.x % G, k0 = blockIdx.x * C::ROWS, j = k0 + threadIdx.x / G;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const size_t ko = ((size_t)b * T + j) * ks + kh * HS; /* this key's head in k, v, dk, dv (if j < T) */

    float4 kv[NV], vv[NV], dka[NV], dva[NV];
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
        kv[i] = j < T ? attn_load4(k + ko + (i * G + p) * 4, scale_log2) : z;
        vv[i] = j < T ? attn_load4(v + ko + (i * G + p) * 4, 1.f) : z;
        dka[i] = z, dva[i] = z;
    }
    for (int hi = 0; hi < grp; hi++) {
        const int h = kh * grp + hi;
        const A *qb = q + (size_t)b * T * qs + h * HS, *ab = da + (size_t)b * T * qs + h * HS;
        const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = delta + ((size_t)b * NH + h) * T;
        for (int t0 = k0; t0 < T; t0 += BQ) {
            __syncthreads();
            attn_stage_f32<A, HS, BQ>(sQ, qb, qs, t0, T);
            attn_stage_f32<A, HS, BQ>(sA, ab, qs, t0, T);
            for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
                sL[i] = t0 + i < T ? lrow[t0 + i] * ATTN_LOG2E : 0.f;
                sD[i] = t0 + i < T ? drow[t0 + i] : 0.f;
            }
            __syncthreads();
            for (int tt = 0; tt < BQ; tt++) {
                const int t = t0 + tt;
                float x = 0.f, dp = 0.f;
#pragma unroll
                for (int i = 0; i < NV; i++) {
                    x += attn_dot4(kv[i], sQ4[tt * NC + i * G + p]);
                    dp += attn_dot4(vv[i], sA4[tt * NC + i * G + p]);
                }
                x = attn_group_sum<G>(x);
                dp = attn_group_sum<G>(dp);
                const float pj = t >= j && t < T ? exp2f(x - sL[tt]) : 0.f;
                const float ds = pj * (dp - sD[tt]) * scale;
#pragma unroll
                for (int i = 0; i < NV; i++) {
                    attn_axpy4(dva[i], pj, sA4[tt * NC + i * G + p]);
                    attn_axpy4(dka[i], ds, sQ4[tt * NC + i * G + p]);
                }
            }
        }
    }
    if (j < T) {
#pragma unroll
        for (int i = 0; i < NV; i++) {
            attn_store4(dk + ko + (i * G + p) * 4, dka[i], 1.f);
            attn_store4(dv + ko + (i * G + p) * 4, dva[i], 1.f);
        }
    }
}

/* delta[(b·NH + h)·T + t] = Σ_i da[n][h·HS + i]·att[n][h·HS + i], n = b·T + t. One warp per (n, h):
 * lanes take i ≡ lane mod 32, then a fixed butterfly. Grid ⌈N·NH/8⌉, block 256. */
template <typename A>
__global__ void __launch_bounds__(256) attn_delta(const A *__restrict__ att, const A *__restrict__ da,
                                                  float *__restrict__ delta, int T, int NH, int HS, long rows) {
    const long w = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= rows) return; /* whole warps only */
    const long n = w / NH;
    const int h = (int)(w - n * NH), b = (int)(n / T), t = (int)(n - (long)b * T);
    const size_t base = (size_t)n * NH * HS + (size_t)h * HS;
    float s = 0.f;
    for (int i = lane; i < HS; i += 32) s += to_f(da[base + i]) * to_f(att[base + i]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) delta[((size_t)b * NH + h) * T + t] = s;
}


/* ---- launchers -------------------------------------------------------------------------------- */

template <typename A, int HS>
void attn_fwd_simple_run(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, A *att,
                                float *lse, int hs_scale) {
    using C = attn_simple_cfg<HS>;
    const dim3 grid(cdiv(d->T, C::ROWS), d->B * d->NH), threads(C::ROWS * C::G_FWD);
    const size_t smem = C::SMEM_KV;
    attn_set_smem(attn_fwd_simple<A, HS>, smem);
    attn_fwd_simple<A, HS><<<grid, threads, smem, s>>>(q, k, v, att, lse, d->T, d->NH, d->NKV, attn_scale_log2(hs_scale));
    CU_LAUNCHED();
}

template <typename A, int HS>
void attn_bwd_simple_run(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, const A *da,
                                const float *lse, const float *delta, A *dq, A *dk, A *dv, int hs_scale) {
    using C = attn_simple_cfg<HS>;
    const dim3 threads(C::ROWS * C::G_BWD);
    const dim3 gq(cdiv(d->T, C::ROWS), d->B * d->NH), gk(cdiv(d->T, C::ROWS), d->B * d->NKV);
    const size_t smq = C::SMEM_KV, smk = C::SMEM_DKDV;
    attn_set_smem(attn_dq_simple<A, HS>, smq);
    attn_dq_simple<A, HS><<<gq, threads, smq, s>>>(q, k, v, da, lse, delta, dq, d->T, d->NH, d->NKV,
                                                   attn_scale_log2(hs_scale), attn_scale(hs_scale));
    CU_LAUNCHED();
    attn_set_smem(attn_dkdv_simple<A, HS>, smk);
    attn_dkdv_simple<A, HS><<<gk, threads, smk, s>>>(q, k, v, da, lse, delta, dk, dv, d->T, d->NH, d->NKV,
                                                     attn_scale_log2(hs_scale), attn_scale(hs_scale));
    CU_LAUNCHED();
}

template <typename A>
void attn_delta_run(cudaStream_t s, const eng_dims *d, const A *att, const A *da, float *delta) {
    const long rows = (long)d->N * d->NH;
    const dim3 grid((unsigned)((rows + 7) / 8)), threads(256);
    attn_delta<A><<<grid, threads, 0, s>>>(att, da, delta, d->T, d->NH, d->HS, rows);
    CU_LAUNCHED();
}

/* explicit instantiations: every simple head size, fp32 and bf16 */
#define ATTN_INST(hs)                                                                                          \
    template void attn_fwd_simple_run<float, hs>(cudaStream_t, const eng_dims *, const float *, const float *,   \
                                                 const float *, float *, float *, int);                          \
    template void attn_fwd_simple_run<bf16, hs>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *,      \
                                                const bf16 *, bf16 *, float *, int);                             \
    template void attn_bwd_simple_run<float, hs>(cudaStream_t, const eng_dims *, const float *, const float *,   \
                                                 const float *, const float *, const float *, const float *,     \
                                                 float *, float *, float *, int);                                \
    template void attn_bwd_simple_run<bf16, hs>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *,      \
                                                const bf16 *, const bf16 *, const float *, const float *,        \
                                                bf16 *, bf16 *, bf16 *, int);
ATTN_SIMPLE_HS(ATTN_INST)
#undef ATTN_INST
template void attn_delta_run<float>(cudaStream_t, const eng_dims *, const float *, const float *, float *);
template void attn_delta_run<bf16>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *, float *);
