/* fable cuda engine — causal scaled-dot-product attention with GQA, flash-style: no T×T matrix
 * is ever stored; scores are recomputed tile by tile (cuda_internal.cuh: cu_attn_fwd, cu_attn_bwd).
 *
 * The math (ref_engine.c's ref_attn_fwd / ref_attn_bwd are the oracle). For batch b, query head h,
 * kv head kh = h / (NH/NKV), positions t (query) and j ≤ t (key) of the same sequence:
 *   s_tj = q_t·k_j / √HS,   lse_t = log Σ_{j≤t} exp(s_tj),   P_tj = exp(s_tj − lse_t),
 *   att_t = Σ_j P_tj v_j.
 * Backward from da = dL/datt:
 *   Δ_t = da_t·att_t (= Σ_j P_tj dP_tj),   dP_tj = da_t·v_j,   dS_tj = P_tj (dP_tj − Δ_t) / √HS,
 *   dq_t = Σ_j dS_tj k_j,   dk_j = Σ_{h of kh} Σ_{t≥j} dS_tj q_t,   dv_j = Σ_{h of kh} Σ_{t≥j} P_tj da_t.
 * The softmax runs in base 2: x = s·log2(e), exp(s − m) = exp2(x − m₂), lse = (m₂ + log2 l)·ln 2.
 * All arithmetic is fp32; act values (A = float or bf16) are converted on load and store.
 *
 * Work split (all implementations; tc v2 uses 128 query rows per fwd CTA and computes Δ in dq):
 *   fwd   one CTA per (64 query rows, b·NH + h); loops over key tiles up to the diagonal
 *         (online softmax: running max m, running sum l, output accumulator o).
 *   delta one warp per (row n, head h): Δ into the fp32 scratch [B, NH, T].
 *   dq    one CTA per (64 query rows, b·NH + h); loops over key tiles up to the diagonal.
 *   dk,dv one CTA per (64 key rows, b·NKV + kh); loops over the query heads of the group in order,
 *         and for each over the query rows t ≥ the tile's first key, in order.
 * Every sum runs in a fixed order and nothing is accumulated with atomics: bit-identical reruns.
 * Rows past T are zero-filled in shared memory, masked out of every softmax / gradient sum, and
 * never stored; every element of att, lse, dq, dk, dv (and delta) below T is written.
 *
 * Three implementations (FABLE_CUDA_ATTN, read once: unset = tc version 2, "v1", "simple"):
 *   simple  CUDA-core fp32, templated on HS (8, 16, 32, 40, 48, 64, 80, 96, 128). One row per
 *           G adjacent threads (G = 1, 2, 4 by HS, so the per-thread vectors fit in registers:
 *           lane p of a row owns the 4-float chunks c ≡ p mod G; dot products are summed over the
 *           G lanes with __shfl_xor_sync). Tiles are staged in shared memory as fp32. Used for
 *           A = float, and for bf16 when HS has no tensor-core kernel or FABLE_CUDA_ATTN=simple.
 *   tc      bf16 tensor cores (mma.sync m16n8k16, fp32 accumulators) for HS ∈ {16, 32, 48, 64,
 *           128}, FlashAttention-2 style: 4 warps × 16 rows; S, P, dP, dS live in registers as
 *           mma C fragments, and P, dS are reused in registers as A fragments (see below).
 *           Version 1 (FABLE_CUDA_ATTN=v1): operand fragments are read from padded bf16 tiles in
 *           shared memory with 32-bit loads; operands needed "transposed" are staged transposed;
 *           tiles are loaded synchronously between two __syncthreads.
 *           Version 2 (the default; "v2b": another launch configuration; "version 2" section below):
 *           the same per-element arithmetic in the same order (the same results, but for terms below
 *           2^-126 flushed to zero), with cp.async double buffering, ldmatrix(.trans)
 *           fragment loads from row-major tiles only, 32 query rows per warp in fwd, per-warp
 *           skipping of fully masked tiles, masks only where needed, and Δ computed in the dq kernel.
 *
 * mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 fragments (PTX ISA "Matrix fragments for
 * mma.m16n8k16 with floating point type"), g = lane >> 2 (groupID), tq = lane & 3
 * (threadID_in_group); each 32-bit A/B register holds two bf16, the lower column/k index in the
 * low 16 bits:
 *   A (16×16, row-major, 4 regs):  a[0] = A[g][2tq, 2tq+1]      a[1] = A[g+8][2tq, 2tq+1]
 *                                  a[2] = A[g][2tq+8, 2tq+9]    a[3] = A[g+8][2tq+8, 2tq+9]
 *   B (16×8, "col": k-contiguous, 2 regs):  b0 = B[2tq, 2tq+1][g]   b1 = B[2tq+8, 2tq+9][g]
 *   C (16×8 fp32, 4 regs):  c[0] = C[g][2tq]  c[1] = C[g][2tq+1]  c[2] = C[g+8][2tq]  c[3] = C[g+8][2tq+1]
 * C→A reuse: columns 16kk..16kk+15 of a 16×64 C tile are the C fragments of n-tiles 2kk and
 * 2kk+1; packed pairwise they are exactly the A fragment of k-tile kk:
 *   a[0] = (c_{2kk}[0], c_{2kk}[1])   a[1] = (c_{2kk}[2], c_{2kk}[3])
 *   a[2] = (c_{2kk+1}[0], c_{2kk+1}[1])   a[3] = (c_{2kk+1}[2], c_{2kk+1}[3]).
 * Shared tiles are [rows][cols + 8] bf16: a row stride of (cols/2 + 4) words puts the 8 rows × 4
 * lanes of one fragment load in 32 different banks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "engine/cuda/cuda_internal.cuh"

/* ---- device helpers ------------------------------------------------------------------------ */

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

/* dynamic shared memory of every kernel in this file (16-byte aligned tiles are carved from it) */
extern __shared__ __align__(16) unsigned char attn_smem[];

/* x summed over the G adjacent lanes (G = 1, 2, 4) that share one row; every lane of the warp
 * calls it together. */
template <int G>
__device__ __forceinline__ float attn_group_sum(float x) {
#pragma unroll
    for (int o = 1; o < G; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float attn_dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

__device__ __forceinline__ void attn_axpy4(float4 &y, float a, float4 x) {
    y.x += a * x.x, y.y += a * x.y, y.z += a * x.z, y.w += a * x.w;
}

/* 4 act values from global memory as a float4 (scaled), and back */
template <typename A>
__device__ __forceinline__ float4 attn_load4(const A *p, float scale) {
    return make_float4(to_f(p[0]) * scale, to_f(p[1]) * scale, to_f(p[2]) * scale, to_f(p[3]) * scale);
}
template <typename A>
__device__ __forceinline__ void attn_store4(A *p, float4 x, float scale) {
    p[0] = from_f<A>(x.x * scale), p[1] = from_f<A>(x.y * scale), p[2] = from_f<A>(x.z * scale),
    p[3] = from_f<A>(x.w * scale);
}

/* Rows row0..row0+ROWS−1 of one head into a fp32 shared tile dst [ROWS][HS], zero past T.
 * src points at that head's column 0 of position 0 of the sequence; positions are `stride` apart. */
template <typename A, int HS, int ROWS>
__device__ __forceinline__ void attn_stage_f32(float *dst, const A *src, size_t stride, int row0, int T) {
    for (int i = threadIdx.x; i < ROWS * HS; i += blockDim.x) {
        const int r = i / HS, c = i - r * HS;
        dst[i] = row0 + r < T ? to_f(src[(size_t)(row0 + r) * stride + c]) : 0.f;
    }
}

/* The same for bf16 tiles, 16-byte loads: row-major dst [ROWS][HS + 8] (RM) and/or transposed
 * dstT [HS][ROWS + 8] (TR: dstT[c][r] = row r, column c). */
template <int HS, int ROWS, bool RM, bool TR>
__device__ __forceinline__ void attn_stage_bf16(bf16 *dst, bf16 *dstT, const bf16 *src, size_t stride, int row0,
                                                int T) {
    constexpr int CH = HS / 8; /* 16-byte chunks per row */
    for (int i = threadIdx.x; i < ROWS * CH; i += blockDim.x) {
        const int r = i / CH, c = (i - r * CH) * 8;
        uint4 x = make_uint4(0u, 0u, 0u, 0u);
        if (row0 + r < T) x = *reinterpret_cast<const uint4 *>(src + (size_t)(row0 + r) * stride + c);
        if (RM) *reinterpret_cast<uint4 *>(dst + r * (HS + 8) + c) = x;
        if (TR) { /* element u of the chunk is the (u & 1) half of word u/2, low half first */
            unsigned short *t = reinterpret_cast<unsigned short *>(dstT) + c * (ROWS + 8) + r;
            const uint32_t w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int u = 0; u < 8; u++) t[u * (ROWS + 8)] = (unsigned short)(w[u >> 1] >> (16 * (u & 1)));
        }
    }
}

__device__ __forceinline__ uint32_t attn_lds32(const bf16 *p) { return *reinterpret_cast<const uint32_t *>(p); }

/* (lo, hi) rounded to bf16 and packed, lo in the low 16 bits */
__device__ __forceinline__ uint32_t attn_pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* c += A·B for one 16×8×16 tile (fragments as in the header comment) */
__device__ __forceinline__ void attn_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* A fragment of the 16×16 block at (r0, c0) of a row-major shared tile with row stride S */
template <int S>
__device__ __forceinline__ void attn_frag_a(uint32_t (&a)[4], const bf16 *s, int r0, int c0, int g, int tq) {
    a[0] = attn_lds32(s + (r0 + g) * S + c0 + 2 * tq);
    a[1] = attn_lds32(s + (r0 + g + 8) * S + c0 + 2 * tq);
    a[2] = attn_lds32(s + (r0 + g) * S + c0 + 8 + 2 * tq);
    a[3] = attn_lds32(s + (r0 + g + 8) * S + c0 + 8 + 2 * tq);
}

/* B fragment (16 k × 8 n) with B(k, n) = s[(n0 + n)·S + k0 + k]: a tile stored n-major, k-contiguous */
template <int S>
__device__ __forceinline__ void attn_frag_b(uint32_t &b0, uint32_t &b1, const bf16 *s, int n0, int k0, int g,
                                            int tq) {
    b0 = attn_lds32(s + (n0 + g) * S + k0 + 2 * tq);
    b1 = attn_lds32(s + (n0 + g) * S + k0 + 8 + 2 * tq);
}

/* C fragments of n-tiles 2kk (c0) and 2kk+1 (c1) → A fragment of k-tile kk (header comment) */
__device__ __forceinline__ void attn_c_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = attn_pack_bf16(c0[0], c0[1]);
    a[1] = attn_pack_bf16(c0[2], c0[3]);
    a[2] = attn_pack_bf16(c1[0], c1[1]);
    a[3] = attn_pack_bf16(c1[2], c1[3]);
}

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

/* ---- tensor-core kernels: bf16 mma.sync, fp32 accumulators -------------------------------------
 * 128 threads = 4 warps; warp w owns rows 16w..16w+15 of the CTA's 64-row tile. In a C fragment,
 * lane (g, tq) holds rows 16w+g (c[0], c[1]) and 16w+g+8 (c[2], c[3]), columns 2tq, 2tq+1 of each
 * 8-column n-tile. Shared tiles: [rows][HS + 8] row-major, [HS][rows + 8] transposed (bf16). */
template <int HS>
struct attn_tc_cfg {
    static constexpr int SR = HS + 8;                 /* row stride of a [64 or BQ][HS] tile */
    static constexpr int ST = 64 + 8;                 /* row stride of a [HS][64] transposed tile */
    static constexpr int BQ = HS > 64 ? 32 : 64;      /* query rows per step of the dk/dv kernel */
    static constexpr int SQT = BQ + 8;                /* row stride of a [HS][BQ] transposed tile */
    static constexpr size_t SMEM_FWD = (size_t)(64 * SR + HS * ST) * sizeof(bf16);
    static constexpr size_t SMEM_DQ = (size_t)(4 * 64 * SR + HS * ST) * sizeof(bf16);
    static constexpr size_t SMEM_DKDV = (size_t)((2 * 64 + 2 * BQ) * SR + 2 * HS * SQT) * sizeof(bf16) +
                                        (size_t)2 * BQ * sizeof(float);
    static_assert(HS % 16 == 0 && HS <= 128, "head size");
};

/* att, lse. Grid (query tiles, largest first; B·NH), block 128. */
template <int HS>
__global__ void __launch_bounds__(128, 1)
    attn_fwd_tc(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                bf16 *__restrict__ att, float *__restrict__ lse, int T, int NH, int NKV, float scale_log2) {
    using C = attn_tc_cfg<HS>;
    constexpr int SR = C::SR, ST = C::ST;
    bf16 *sK = reinterpret_cast<bf16 *>(attn_smem); /* [64][SR]: the Q tile first, then each K tile */
    bf16 *sVt = sK + 64 * SR;                        /* [HS][ST]: the V tile, transposed */
    const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh - b * NH, kh = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const bf16 *kb = k + (size_t)b * T * ks + kh * HS, *vb = v + (size_t)b * T * ks + kh * HS;
    const int q0 = qt * 64, wr = warp * 16, row0 = q0 + wr + g, row1 = row0 + 8; /* rows of c[0,1] / c[2,3] */

    attn_stage_bf16<HS, 64, true, false>(sK, nullptr, q + (size_t)b * T * qs + h * HS, qs, q0, T);
    __syncthreads();
    uint32_t qa[HS / 16][4]; /* this warp's 16 query rows as A fragments, k-tiles of 16 dims */
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) attn_frag_a<SR>(qa[kk], sK, wr, kk * 16, g, tq);

    float o[HS / 8][4];
#pragma unroll
    for (int nd = 0; nd < HS / 8; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f; /* per row; l: this lane's columns only */
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * 64;
        __syncthreads(); /* sK (Q or the previous K) and sVt are consumed */
        attn_stage_bf16<HS, 64, true, false>(sK, nullptr, kb, ks, k0, T);
        attn_stage_bf16<HS, 64, false, true>(nullptr, sVt, vb, ks, k0, T);
        __syncthreads();

        float s[8][4]; /* S = Q·Kᵀ: 16 rows × 64 keys (8 n-tiles) */
#pragma unroll
        for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HS / 16; kk++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                uint32_t b0, b1; /* B(d, j) = K[j][d] */
                attn_frag_b<SR>(b0, b1, sK, nt * 8, kk * 16, g, tq);
                attn_mma(s[nt], qa[kk], b0, b1);
            }

        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = e < 2 ? row0 : row1, col = k0 + nt * 8 + 2 * tq + (e & 1);
                const float x = col <= row ? s[nt][e] * scale_log2 : -INFINITY; /* causal; zero rows past T */
                s[nt][e] = x;
                if (e < 2) mx0 = fmaxf(mx0, x);
                else mx1 = fmaxf(mx1, x);
            }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1)); /* the 4 lanes of a row: tq = 0..3 */
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float mb0 = mn0 == -INFINITY ? 0.f : mn0, mb1 = mn1 == -INFINITY ? 0.f : mn1;
        const float corr0 = exp2f(m0 - mb0), corr1 = exp2f(m1 - mb1);
        m0 = mn0, m1 = mn1;
        l0 *= corr0, l1 *= corr1;
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++) o[nd][0] *= corr0, o[nd][1] *= corr0, o[nd][2] *= corr1, o[nd][3] *= corr1;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - mb0), s[nt][1] = exp2f(s[nt][1] - mb0);
            s[nt][2] = exp2f(s[nt][2] - mb1), s[nt][3] = exp2f(s[nt][3] - mb1);
            l0 += s[nt][0] + s[nt][1], l1 += s[nt][2] + s[nt][3];
        }

#pragma unroll
        for (int kk = 0; kk < 4; kk++) { /* O += P·V, keys 16kk..16kk+15 */
            uint32_t pa[4];
            attn_c_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++) {
                uint32_t b0, b1; /* B(j, d) = V[j][d] = sVt[d][j] */
                attn_frag_b<ST>(b0, b1, sVt, nd * 8, kk * 16, g, tq);
                attn_mma(o[nd], pa, b0, b1);
            }
        }
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.f / l0, inv1 = 1.f / l1;
    bf16 *ob = att + (size_t)b * T * qs + h * HS + 2 * tq;
    if (row0 < T) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++)
            *reinterpret_cast<uint32_t *>(ob + (size_t)row0 * qs + nd * 8) =
                attn_pack_bf16(o[nd][0] * inv0, o[nd][1] * inv0);
        if (tq == 0) lse[(size_t)bh * T + row0] = (m0 + log2f(l0)) * ATTN_LN2;
    }
    if (row1 < T) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++)
            *reinterpret_cast<uint32_t *>(ob + (size_t)row1 * qs + nd * 8) =
                attn_pack_bf16(o[nd][2] * inv1, o[nd][3] * inv1);
        if (tq == 0) lse[(size_t)bh * T + row1] = (m1 + log2f(l1)) * ATTN_LN2;
    }
}

/* dq. Grid (query tiles, largest first; B·NH), block 128. */
template <int HS>
__global__ void __launch_bounds__(128, 1)
    attn_dq_tc(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
               const bf16 *__restrict__ da, const float *__restrict__ lse, const float *__restrict__ delta,
               bf16 *__restrict__ dq, int T, int NH, int NKV, float scale_log2, float scale) {
    using C = attn_tc_cfg<HS>;
    constexpr int SR = C::SR, ST = C::ST;
    bf16 *sQ = reinterpret_cast<bf16 *>(attn_smem); /* [64][SR] */
    bf16 *sdO = sQ + 64 * SR;                        /* [64][SR] da */
    bf16 *sK = sdO + 64 * SR;                        /* [64][SR] */
    bf16 *sV = sK + 64 * SR;                         /* [64][SR] */
    bf16 *sKt = sV + 64 * SR;                        /* [HS][ST] K transposed */
    const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh - b * NH, kh = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const size_t qoff = (size_t)b * T * qs + h * HS;
    const bf16 *kb = k + (size_t)b * T * ks + kh * HS, *vb = v + (size_t)b * T * ks + kh * HS;
    const int q0 = qt * 64, wr = warp * 16, row0 = q0 + wr + g, row1 = row0 + 8;

    attn_stage_bf16<HS, 64, true, false>(sQ, nullptr, q + qoff, qs, q0, T);
    attn_stage_bf16<HS, 64, true, false>(sdO, nullptr, da + qoff, qs, q0, T);
    const float lse0 = row0 < T ? lse[(size_t)bh * T + row0] * ATTN_LOG2E : 0.f;
    const float lse1 = row1 < T ? lse[(size_t)bh * T + row1] * ATTN_LOG2E : 0.f;
    const float dl0 = row0 < T ? delta[(size_t)bh * T + row0] : 0.f;
    const float dl1 = row1 < T ? delta[(size_t)bh * T + row1] : 0.f;

    float acc[HS / 8][4];
#pragma unroll
    for (int nd = 0; nd < HS / 8; nd++) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * 64;
        __syncthreads(); /* sK, sV, sKt consumed (and, the first time, sQ, sdO staged) */
        attn_stage_bf16<HS, 64, true, true>(sK, sKt, kb, ks, k0, T);
        attn_stage_bf16<HS, 64, true, false>(sV, nullptr, vb, ks, k0, T);
        __syncthreads();

        float s[8][4], dp[8][4]; /* S = Q·Kᵀ, dP = dO·Vᵀ: 16 rows × 64 keys */
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = 0.f, dp[nt][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HS / 16; kk++) {
            uint32_t qa[4], oa[4];
            attn_frag_a<SR>(qa, sQ, wr, kk * 16, g, tq);
            attn_frag_a<SR>(oa, sdO, wr, kk * 16, g, tq);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                uint32_t b0, b1;
                attn_frag_b<SR>(b0, b1, sK, nt * 8, kk * 16, g, tq); /* B(d, j) = K[j][d] */
                attn_mma(s[nt], qa, b0, b1);
                attn_frag_b<SR>(b0, b1, sV, nt * 8, kk * 16, g, tq); /* B(d, j) = V[j][d] */
                attn_mma(dp[nt], oa, b0, b1);
            }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) { /* s ← dS = P (dP − Δ)/√HS */
                const int row = e < 2 ? row0 : row1, col = k0 + nt * 8 + 2 * tq + (e & 1);
                const float pj = col <= row && row < T ? exp2f(s[nt][e] * scale_log2 - (e < 2 ? lse0 : lse1)) : 0.f;
                s[nt][e] = pj * (dp[nt][e] - (e < 2 ? dl0 : dl1)) * scale;
            }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { /* dQ += dS·K, keys 16kk..16kk+15 */
            uint32_t a[4];
            attn_c_to_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++) {
                uint32_t b0, b1; /* B(j, d) = K[j][d] = sKt[d][j] */
                attn_frag_b<ST>(b0, b1, sKt, nd * 8, kk * 16, g, tq);
                attn_mma(acc[nd], a, b0, b1);
            }
        }
    }

    bf16 *ob = dq + qoff + 2 * tq;
    if (row0 < T) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++)
            *reinterpret_cast<uint32_t *>(ob + (size_t)row0 * qs + nd * 8) = attn_pack_bf16(acc[nd][0], acc[nd][1]);
    }
    if (row1 < T) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++)
            *reinterpret_cast<uint32_t *>(ob + (size_t)row1 * qs + nd * 8) = attn_pack_bf16(acc[nd][2], acc[nd][3]);
    }
}

/* dk, dv. Grid (key tiles; B·NKV), block 128. Warp w owns keys k0+16w..k0+16w+15 and computes
 * Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ (rows = keys, columns = BQ queries), then dV += Pᵀ·dO, dK += dSᵀ·Q. */
template <int HS>
__global__ void __launch_bounds__(128, 1)
    attn_dkdv_tc(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                 const bf16 *__restrict__ da, const float *__restrict__ lse, const float *__restrict__ delta,
                 bf16 *__restrict__ dk, bf16 *__restrict__ dv, int T, int NH, int NKV, float scale_log2, float scale) {
    using C = attn_tc_cfg<HS>;
    constexpr int SR = C::SR, BQ = C::BQ, SQT = C::SQT;
    bf16 *sK = reinterpret_cast<bf16 *>(attn_smem);         /* [64][SR] */
    bf16 *sV = sK + 64 * SR;                                 /* [64][SR] */
    bf16 *sQ = sV + 64 * SR;                                 /* [BQ][SR] */
    bf16 *sdO = sQ + BQ * SR;                                /* [BQ][SR] da */
    bf16 *sQt = sdO + BQ * SR;                               /* [HS][SQT] Q transposed */
    bf16 *sdOt = sQt + HS * SQT;                             /* [HS][SQT] da transposed */
    float *sL = reinterpret_cast<float *>(sdOt + HS * SQT);  /* [BQ] lse·log2(e) */
    float *sD = sL + BQ;                                     /* [BQ] delta */
    const int bk = blockIdx.y, b = bk / NKV, kh = bk - b * NKV, grp = NH / NKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const size_t koff = (size_t)b * T * ks + kh * HS;
    const int k0 = blockIdx.x * 64, wr = warp * 16, key0 = k0 + wr + g, key1 = key0 + 8; /* rows of c[0,1] / c[2,3] */

    attn_stage_bf16<HS, 64, true, false>(sK, nullptr, k + koff, ks, k0, T);
    attn_stage_bf16<HS, 64, true, false>(sV, nullptr, v + koff, ks, k0, T);
    float dka[HS / 8][4], dva[HS / 8][4];
#pragma unroll
    for (int nd = 0; nd < HS / 8; nd++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[nd][e] = 0.f, dva[nd][e] = 0.f;

    for (int hi = 0; hi < grp; hi++) {
        const int h = kh * grp + hi;
        const size_t qoff = (size_t)b * T * qs + h * HS;
        const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = delta + ((size_t)b * NH + h) * T;
        for (int t0 = k0; t0 < T; t0 += BQ) {
            __syncthreads(); /* the previous query tile is consumed (and, the first time, sK, sV staged) */
            attn_stage_bf16<HS, BQ, true, true>(sQ, sQt, q + qoff, qs, t0, T);
            attn_stage_bf16<HS, BQ, true, true>(sdO, sdOt, da + qoff, qs, t0, T);
            for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
                sL[i] = t0 + i < T ? lrow[t0 + i] * ATTN_LOG2E : 0.f;
                sD[i] = t0 + i < T ? drow[t0 + i] : 0.f;
            }
            __syncthreads();

            float st[BQ / 8][4], dpt[BQ / 8][4]; /* Sᵀ, dPᵀ: 16 keys × BQ queries */
#pragma unroll
            for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[nt][e] = 0.f, dpt[nt][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < HS / 16; kk++) {
                uint32_t ka[4], va[4];
                attn_frag_a<SR>(ka, sK, wr, kk * 16, g, tq);
                attn_frag_a<SR>(va, sV, wr, kk * 16, g, tq);
#pragma unroll
                for (int nt = 0; nt < BQ / 8; nt++) {
                    uint32_t b0, b1;
                    attn_frag_b<SR>(b0, b1, sQ, nt * 8, kk * 16, g, tq); /* B(d, t) = Q[t][d] */
                    attn_mma(st[nt], ka, b0, b1);
                    attn_frag_b<SR>(b0, b1, sdO, nt * 8, kk * 16, g, tq); /* B(d, t) = dO[t][d] */
                    attn_mma(dpt[nt], va, b0, b1);
                }
            }
#pragma unroll
            for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) { /* st ← Pᵀ, dpt ← dSᵀ */
                    const int key = e < 2 ? key0 : key1, tl = nt * 8 + 2 * tq + (e & 1), t = t0 + tl;
                    const float pj = t >= key && t < T ? exp2f(st[nt][e] * scale_log2 - sL[tl]) : 0.f;
                    st[nt][e] = pj;
                    dpt[nt][e] = pj * (dpt[nt][e] - sD[tl]) * scale;
                }
#pragma unroll
            for (int kk = 0; kk < BQ / 16; kk++) { /* queries t0+16kk..t0+16kk+15 */
                uint32_t pa[4], sa[4];
                attn_c_to_a(pa, st[2 * kk], st[2 * kk + 1]);
                attn_c_to_a(sa, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
                for (int nd = 0; nd < HS / 8; nd++) {
                    uint32_t b0, b1;
                    attn_frag_b<SQT>(b0, b1, sdOt, nd * 8, kk * 16, g, tq); /* B(t, d) = dO[t][d] = sdOt[d][t] */
                    attn_mma(dva[nd], pa, b0, b1);
                    attn_frag_b<SQT>(b0, b1, sQt, nd * 8, kk * 16, g, tq); /* B(t, d) = Q[t][d] = sQt[d][t] */
                    attn_mma(dka[nd], sa, b0, b1);
                }
            }
        }
    }

    bf16 *dkb = dk + koff + 2 * tq, *dvb = dv + koff + 2 * tq;
    if (key0 < T) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++) {
            *reinterpret_cast<uint32_t *>(dkb + (size_t)key0 * ks + nd * 8) = attn_pack_bf16(dka[nd][0], dka[nd][1]);
            *reinterpret_cast<uint32_t *>(dvb + (size_t)key0 * ks + nd * 8) = attn_pack_bf16(dva[nd][0], dva[nd][1]);
        }
    }
    if (key1 < T) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++) {
            *reinterpret_cast<uint32_t *>(dkb + (size_t)key1 * ks + nd * 8) = attn_pack_bf16(dka[nd][2], dka[nd][3]);
            *reinterpret_cast<uint32_t *>(dvb + (size_t)key1 * ks + nd * 8) = attn_pack_bf16(dva[nd][2], dva[nd][3]);
        }
    }
}

/* ---- tensor-core kernels, version 2 (the default) ---------------------------------------------
 * The mathematics, the mma fragments and the per-element operation order of the version-1 kernels
 * above: every sum runs over the same terms in the same order, so the outputs are the same, except
 * that exponentials below 2^-126 are flushed to zero (attn_exp2). Changes:
 *  - cp.async double buffering (16-byte cp.async.cg, zero-fill for rows at or past T): the next
 *    K/V tile (fwd, dq) or Q/dO/lse/Δ tile (dk/dv) is in flight while the current one is consumed,
 *    and one __syncthreads per tile orders both buffers;
 *  - ldmatrix.x4 fragment loads: one instruction gives an A fragment, or the B fragments of two
 *    n-tiles; .trans for the operands needed transposed (V in P·V, K in dS·K, dO and Q in Pᵀ·dO and
 *    dSᵀ·Q), so there is no transposed staging. Every tile is row-major [rows][HS + 8] bf16: the 16-byte
 *    row segments that 8 consecutive rows present to one 8×8 matrix lie in distinct bank quads;
 *  - for HS ≤ 64, 4 warps × 32 query rows (fwd, dq) or keys (dk/dv): two m-tiles per warp, so each
 *    B fragment loaded from shared memory feeds two mma, and each staged tile feeds 128 rows (twice
 *    version 1's); dq and dk/dv work through a staged tile in sub-tiles (64 keys, 32 queries) to
 *    bound the registers (attn_v2_cfg);
 *  - warps skip tiles and sub-tiles that are entirely masked (above their diagonal, or all their rows
 *    past T; there every P and dS is 0, so skipping adds nothing less), and the causal / past-T masks
 *    are evaluated only on the tiles that need them;
 *  - Δ = rowsum(da ⊙ att) is computed by the dq kernel (in attn_delta's order), not a separate pass;
 *  - grids are (heads, tiles) with the most work at tile index 0, so every large CTA is dispatched
 *    before any small one (less tail imbalance than version 1's per-head largest-first order).
 * A warp's rows lie in one 64-row block, and the key (fwd, dq) or query (dk/dv) tiles are the same
 * 64- (or BQ-) aligned tiles as in version 1, visited in the same order.
 *
 * ldmatrix.x4 (PTX ISA "Warp-level matrix load instruction: ldmatrix"): lanes 8i..8i+7 give the
 * addresses of the 8 rows (16 bytes each) of matrix i; register i of lane l then holds row l/4,
 * elements 2(l%4), 2(l%4)+1 of matrix i (low half first), or with .trans the elements
 * [2(l%4)][l/4], [2(l%4)+1][l/4]. So, for a row-major tile with row stride S:
 *   A fragment of the 16×16 block at (r0, c0): lane l addresses row r0 + (l & 15), column c0 + 8(l >> 4)
 *     (matrices (r0, c0), (r0+8, c0), (r0, c0+8), (r0+8, c0+8) = a[0..3]);
 *   B fragments of n-tiles n0, n0+8 (B(k, n) = tile[n][k], tile n-major): lane l addresses row
 *     n0 + (l & 7) + 8(l >> 4), column k0 + 8((l >> 3) & 1)  → b0, b1 of n0, then b0, b1 of n0+8;
 *   B fragments of n-tiles n0, n0+8 with B(k, n) = tile[k][n] (k-major, .trans): lane l addresses
 *     row k0 + (l & 15), column n0 + 8(l >> 4) (the A pattern) → b0, b1 of n0, then of n0+8. */

/* the shared-window address of a pointer into attn_smem */
__device__ __forceinline__ uint32_t attn_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global → shared, asynchronously (L2 only); valid = false writes 16 zero bytes instead */
__device__ __forceinline__ void attn_cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(attn_smem_u32(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

/* 4 bytes global → shared, asynchronously; valid = false writes zero */
__device__ __forceinline__ void attn_cp_async4(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(attn_smem_u32(dst)), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}

/* close this thread's group of cp.async copies */
__device__ __forceinline__ void attn_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

/* wait until at most N of this thread's committed groups are still in flight (then __syncthreads
 * makes every thread's landed copies visible to the CTA) */
template <int N>
__device__ __forceinline__ void attn_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* four 8×8 bf16 matrices from shared memory (lane l gives the row address p of matrix l/8, row l%8) */
__device__ __forceinline__ void attn_ldsm_x4(uint32_t (&r)[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(attn_smem_u32(p))
                 : "memory");
}

/* the same, each matrix transposed */
__device__ __forceinline__ void attn_ldsm_x4_t(uint32_t (&r)[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(attn_smem_u32(p))
                 : "memory");
}

/* 2^x with subnormal results (x < −126) flushed to zero: a bare MUFU.EX2. exp2f compiles to the
 * non-ftz ex2.approx.f32, which wraps the same MUFU.EX2 in a fix-up for the subnormal range. */
__device__ __forceinline__ float attn_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* This lane's element offset of its ldmatrix.x4 row address in a row-major tile of row stride S
 * (header comment): the A pattern (A fragments; B fragments from a k-major tile with .trans), and
 * the B pattern (B fragments of two n-tiles from an n-major tile). */
template <int S>
__device__ __forceinline__ int attn_ldsm_off_a(int lane) {
    return (lane & 15) * S + (lane >> 4) * 8;
}
template <int S>
__device__ __forceinline__ int attn_ldsm_off_b(int lane) {
    return ((lane & 7) + ((lane >> 4) << 3)) * S + ((lane >> 3) & 1) * 8;
}

/* Rows row0..row0+ROWS−1 of one head (src: its column 0 at position 0; positions `stride` apart) into
 * the row-major shared tile dst [ROWS][HS + 8] with cp.async, by NT threads; rows at or past T are
 * zero-filled (their source address clamped to row 0, not read). */
template <int HS, int ROWS, int NT>
__device__ __forceinline__ void attn_async_rows(bf16 *dst, const bf16 *src, size_t stride, int row0, int T) {
    constexpr int CH = HS / 8, N = ROWS * CH; /* 16-byte chunks */
#pragma unroll
    for (int i0 = 0; i0 < N; i0 += NT) {
        const int i = i0 + (int)threadIdx.x;
        if (N % NT == 0 || i < N) {
            const int r = i / CH, c = (i - r * CH) * 8;
            const bool ok = row0 + r < T;
            attn_cp_async16(dst + r * (HS + 8) + c, src + (size_t)(ok ? row0 + r : 0) * stride + c, ok);
        }
    }
}

/* Version-2 launch configurations. MINB: the CTAs per SM that the register allocation is capped for
 * (no spills at these). The default gives each warp two m-tiles (32 rows, or 32 keys in dk/dv) for
 * HS ≤ 64, so every K/V (fwd, dq) or Q/dO (dk/dv) fragment read from shared memory feeds two mma,
 * at 8 warps per SM (up to 255 registers). ALT (FABLE_CUDA_ATTN=v2b, to measure the trade-off on
 * the GPU): one m-tile per warp everywhere (fwd 8 warps × 16 rows per CTA: 16 warps per SM; dq 12
 * warps per SM; dk/dv with K, V fragments in registers), i.e. more warps to hide latency but 1.4-1.8×
 * the shared-memory bytes per row. */
template <int HS, bool ALT = false>
struct attn_v2_cfg {
    static constexpr int SR = HS + 8;            /* row stride of every tile (bf16) */
    static constexpr bool TWO = !ALT && HS <= 64; /* two m-tiles per warp */
    /* fwd: warps, m-tiles (16 query rows) per warp, Q fragments in registers, CTAs per SM */
    static constexpr int FWD_NW = ALT && HS <= 64 ? 8 : 4, FWD_MT = TWO ? 2 : 1;
    static constexpr bool FWD_QREG = HS > 64;
    static constexpr int FWD_MINB = !TWO ? 2 : HS <= 16 ? 4 : HS <= 32 ? 3 : 2;
    /* dq: warps, m-tiles per warp, keys per sub-tile, Q and dO fragments in registers, CTAs per SM */
    static constexpr int DQ_NW = 4, DQ_MT = TWO ? 2 : 1, DQ_BNS = 64;
    static constexpr int DQ_MINB = TWO || HS > 64 ? 2 : HS <= 16 ? 4 : 3;
    static constexpr bool DQ_QREG = false;
    /* dk/dv: warps, m-tiles (16 keys) per warp, query rows per tile (as version 1) and per sub-step,
     * K and V fragments in registers, CTAs per SM */
    static constexpr int KV_NW = 4, KV_MT = TWO ? 2 : 1, KV_BQ = HS > 64 ? 32 : 64, KV_BQS = TWO ? 32 : KV_BQ;
    static constexpr int KV_MINB = HS <= 16 ? 3 : 2;
    static constexpr bool KV_KREG = !TWO && HS <= 64;
    static constexpr size_t TILE = (size_t)64 * SR * sizeof(bf16); /* one 64-row tile */
    static constexpr size_t SMEM_FWD = (size_t)16 * FWD_MT * FWD_NW * SR * sizeof(bf16) + 4 * TILE;
    static constexpr size_t SMEM_DQ = (size_t)2 * 16 * DQ_MT * DQ_NW * SR * sizeof(bf16) + 4 * TILE;
    static constexpr size_t KV_STAGE = (size_t)2 * KV_BQ * SR * sizeof(bf16) + (size_t)2 * KV_BQ * sizeof(float);
    static constexpr size_t SMEM_DKDV = (size_t)2 * 16 * KV_MT * KV_NW * SR * sizeof(bf16) + 2 * KV_STAGE;
    static_assert(HS % 16 == 0 && HS <= 128, "head size");
    static_assert(KV_STAGE % 16 == 0, "stages stay 16-byte aligned");
};

/* One online-softmax step of the fwd kernel for one 16-row m-tile (C fragments: rows row0 / row1,
 * keys k0 + 8nt + 2tq + {0, 1}): s ← P (unnormalised, base 2), m, l, o rescaled. DIAG: the causal
 * mask (which also masks the zero keys past T of the last tile). The operation order of version 1. */
template <int HS, bool DIAG>
__device__ __forceinline__ void attn_fwd_softmax(float (&s)[8][4], float (&m)[2], float (&l)[2], float (&o)[HS / 8][4],
                                                 int row0, int row1, int k0, int tq, float scale_log2) {
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = e < 2 ? row0 : row1, col = k0 + nt * 8 + 2 * tq + (e & 1);
            const float x = !DIAG || col <= row ? s[nt][e] * scale_log2 : -INFINITY;
            s[nt][e] = x;
            if (e < 2) mx0 = fmaxf(mx0, x);
            else mx1 = fmaxf(mx1, x);
        }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1)); /* the 4 lanes of a row: tq = 0..3 */
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m[0], mx0), mn1 = fmaxf(m[1], mx1);
    const float mb0 = mn0 == -INFINITY ? 0.f : mn0, mb1 = mn1 == -INFINITY ? 0.f : mn1;
    const float corr0 = attn_exp2(m[0] - mb0), corr1 = attn_exp2(m[1] - mb1);
    m[0] = mn0, m[1] = mn1;
    l[0] *= corr0, l[1] *= corr1;
#pragma unroll
    for (int nd = 0; nd < HS / 8; nd++) o[nd][0] *= corr0, o[nd][1] *= corr0, o[nd][2] *= corr1, o[nd][3] *= corr1;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        s[nt][0] = attn_exp2(s[nt][0] - mb0), s[nt][1] = attn_exp2(s[nt][1] - mb0);
        s[nt][2] = attn_exp2(s[nt][2] - mb1), s[nt][3] = attn_exp2(s[nt][3] - mb1);
        l[0] += s[nt][0] + s[nt][1], l[1] += s[nt][2] + s[nt][3];
    }
}

/* att, lse. Grid (B·NH; query tiles of BM = 16·MT·NW rows, largest first), block 32·NW. Warp w owns
 * the MT m-tiles of query rows q0+16MT·w .. q0+16MT·w+16MT−1 (16MT divides 64: all in one 64-row
 * block) and needs key tiles 0..wlast = (q0+16MT·w)/64, the last one (diagonal) masked. QREG: its Q
 * fragments stay in registers (else they are re-read from shared memory for every key tile). */
template <int HS, int NW, int MT, bool QREG, int MINB>
__global__ void __launch_bounds__(32 * NW, MINB)
    attn_fwd_v2(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                bf16 *__restrict__ att, float *__restrict__ lse, int T, int NH, int NKV, float scale_log2) {
    constexpr int SR = HS + 8, BM = 16 * MT * NW, NT = 32 * NW, KT = HS / 16;
    static_assert(64 % (16 * MT) == 0, "a warp's rows lie in one 64-row block");
    bf16 *sQ = reinterpret_cast<bf16 *>(attn_smem); /* [BM][SR] */
    bf16 *sKV = sQ + BM * SR;                        /* stage s: K [64][SR] at 2s·64·SR, V after it */
    const int qt = gridDim.y - 1 - blockIdx.y, bh = blockIdx.x, b = bh / NH, h = bh - b * NH, kh = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const bf16 *kb = k + (size_t)b * T * ks + kh * HS, *vb = v + (size_t)b * T * ks + kh * HS;
    const int q0 = qt * BM, wr = warp * 16 * MT;
    const int nkt = (min(T, q0 + BM) - 1) / 64 + 1;       /* key tiles the CTA needs */
    const int wlast = q0 + wr < T ? (q0 + wr) / 64 : -1;  /* this warp's last (diagonal) key tile */
    const int offA = attn_ldsm_off_a<SR>(lane), offB = attn_ldsm_off_b<SR>(lane); /* ldmatrix row addresses */

    attn_async_rows<HS, BM, NT>(sQ, q + (size_t)b * T * qs + h * HS, qs, q0, T);
    attn_async_rows<HS, 64, NT>(sKV, kb, ks, 0, T);
    attn_async_rows<HS, 64, NT>(sKV + 64 * SR, vb, ks, 0, T);
    attn_cp_commit();
    attn_cp_wait<0>();
    __syncthreads();
    [[maybe_unused]] uint32_t qa[QREG ? MT : 1][QREG ? KT : 1][4]; /* Q as A fragments, k-tiles of 16 dims */
    if constexpr (QREG) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int kk = 0; kk < KT; kk++) attn_ldsm_x4(qa[mt][kk], sQ + (wr + 16 * mt) * SR + kk * 16 + offA);
    }

    float o[MT][HS / 8][4], m[MT][2], l[MT][2]; /* per row: running max, sum (this lane's columns only) */
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++) o[mt][nd][0] = o[mt][nd][1] = o[mt][nd][2] = o[mt][nd][3] = 0.f;
        m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;
    }
    for (int kt = 0; kt < nkt; kt++) {
        if (kt > 0) {
            attn_cp_wait<0>(); /* tile kt (this thread's copies) landed */
            __syncthreads();   /* ... everyone's; and tile kt−1's stage is consumed by every warp */
        }
        if (kt + 1 < nkt) {
            bf16 *nK = sKV + ((kt + 1) & 1) * 2 * 64 * SR;
            attn_async_rows<HS, 64, NT>(nK, kb, ks, (kt + 1) * 64, T);
            attn_async_rows<HS, 64, NT>(nK + 64 * SR, vb, ks, (kt + 1) * 64, T);
            attn_cp_commit();
        }
        if (kt > wlast) continue; /* above this warp's diagonal: nothing (warp-uniform) */
        const bf16 *sK = sKV + (kt & 1) * 2 * 64 * SR, *sV = sK + 64 * SR;
        const int k0 = kt * 64;

        float s[MT][8][4]; /* S = Q·Kᵀ: 16 rows × 64 keys (8 n-tiles) per m-tile */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            uint32_t qf[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                if constexpr (QREG) {
#pragma unroll
                    for (int i = 0; i < 4; i++) qf[mt][i] = qa[mt][kk][i];
                } else {
                    attn_ldsm_x4(qf[mt], sQ + (wr + 16 * mt) * SR + kk * 16 + offA);
                }
            }
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t kf[4]; /* B(d, j) = K[j][d], keys 16np..16np+15 */
                attn_ldsm_x4(kf, sK + np * 16 * SR + kk * 16 + offB);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    attn_mma(s[mt][2 * np], qf[mt], kf[0], kf[1]);
                    attn_mma(s[mt][2 * np + 1], qf[mt], kf[2], kf[3]);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const int row0 = q0 + wr + 16 * mt + g, row1 = row0 + 8;
            if (kt == wlast) attn_fwd_softmax<HS, true>(s[mt], m[mt], l[mt], o[mt], row0, row1, k0, tq, scale_log2);
            else attn_fwd_softmax<HS, false>(s[mt], m[mt], l[mt], o[mt], row0, row1, k0, tq, scale_log2);
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { /* O += P·V, keys 16kk..16kk+15 */
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) attn_c_to_a(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
            for (int dp = 0; dp < HS / 16; dp++) {
                uint32_t vf[4]; /* B(j, d) = V[j][d], dims 16dp..16dp+15 (.trans) */
                attn_ldsm_x4_t(vf, sV + kk * 16 * SR + dp * 16 + offA);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    attn_mma(o[mt][2 * dp], pa[mt], vf[0], vf[1]);
                    attn_mma(o[mt][2 * dp + 1], pa[mt], vf[2], vf[3]);
                }
            }
        }
    }

    if (wlast < 0) return; /* all rows past T */
    bf16 *ob = att + (size_t)b * T * qs + h * HS + 2 * tq;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int row0 = q0 + wr + 16 * mt + g, row1 = row0 + 8;
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float inv0 = 1.f / l0, inv1 = 1.f / l1;
        if (row0 < T) {
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++)
                *reinterpret_cast<uint32_t *>(ob + (size_t)row0 * qs + nd * 8) =
                    attn_pack_bf16(o[mt][nd][0] * inv0, o[mt][nd][1] * inv0);
            if (tq == 0) lse[(size_t)bh * T + row0] = (m[mt][0] + log2f(l0)) * ATTN_LN2;
        }
        if (row1 < T) {
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++)
                *reinterpret_cast<uint32_t *>(ob + (size_t)row1 * qs + nd * 8) =
                    attn_pack_bf16(o[mt][nd][2] * inv1, o[mt][nd][3] * inv1);
            if (tq == 0) lse[(size_t)bh * T + row1] = (m[mt][1] + log2f(l1)) * ATTN_LN2;
        }
    }
}

/* Δ and dq. Grid (B·NH; query tiles of BM = 16·MT·NW rows, largest first), block 32·NW. Warp w owns
 * the MT m-tiles of query rows q0+16MT·w .. q0+16MT·w+16MT−1 (one 64-row block). First each warp
 * computes Δ_t = da_t·att_t of its rows exactly as attn_delta does (lane sums over i ≡ lane mod 32,
 * then the same butterfly: the same values) and stores it for the dk/dv kernel that follows. Then,
 * for each key tile (in sub-tiles of BNS keys: S, dP, dS of BNS columns, then dQ += dS·K over them),
 * dq. QREG: the warp's Q and dO fragments stay in registers (else re-read for every sub-tile). */
template <int HS, int NW, int MT, int BNS, bool QREG, int MINB>
__global__ void __launch_bounds__(32 * NW, MINB)
    attn_dq_v2(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
               const bf16 *__restrict__ da, const bf16 *__restrict__ att, const float *__restrict__ lse,
               float *__restrict__ delta, bf16 *__restrict__ dq, int T, int NH, int NKV, float scale_log2,
               float scale) {
    constexpr int SR = HS + 8, BM = 16 * MT * NW, NT = 32 * NW, KT = HS / 16, NS = BNS / 8;
    static_assert(64 % (16 * MT) == 0 && 64 % BNS == 0 && BNS % 16 == 0, "tiling");
    static_assert(BM <= 128, "the att rows fit in stage 1");
    bf16 *sQ = reinterpret_cast<bf16 *>(attn_smem); /* [BM][SR] */
    bf16 *sdO = sQ + BM * SR;                        /* [BM][SR] da */
    bf16 *sKV = sdO + BM * SR;                       /* stage s: K [64][SR] at 2s·64·SR, V after it */
    bf16 *sO = sKV + 2 * 64 * SR;                    /* [BM][SR] att, in stage 1 until Δ is computed */
    const int qt = gridDim.y - 1 - blockIdx.y, bh = blockIdx.x, b = bh / NH, h = bh - b * NH, kh = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const size_t qoff = (size_t)b * T * qs + h * HS;
    const bf16 *kb = k + (size_t)b * T * ks + kh * HS, *vb = v + (size_t)b * T * ks + kh * HS;
    const int q0 = qt * BM, wr = warp * 16 * MT, wend = q0 + wr + 16 * MT - 1; /* the warp's rows: ..wend */
    const int nkt = (min(T, q0 + BM) - 1) / 64 + 1;
    const int wlast = q0 + wr < T ? (q0 + wr) / 64 : -1;
    const int offA = attn_ldsm_off_a<SR>(lane), offB = attn_ldsm_off_b<SR>(lane); /* ldmatrix row addresses */

    attn_async_rows<HS, BM, NT>(sQ, q + qoff, qs, q0, T);
    attn_async_rows<HS, BM, NT>(sdO, da + qoff, qs, q0, T);
    attn_async_rows<HS, BM, NT>(sO, att + qoff, qs, q0, T);
    attn_async_rows<HS, 64, NT>(sKV, kb, ks, 0, T);
    attn_async_rows<HS, 64, NT>(sKV + 64 * SR, vb, ks, 0, T);
    attn_cp_commit();
    float lse2[MT][2], dl[MT][2]; /* per row (row0, row1 of each m-tile): lse·log2(e), Δ; 0 past T */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hi = 0; hi < 2; hi++) {
            const int row = q0 + wr + 16 * mt + 8 * hi + g;
            lse2[mt][hi] = row < T ? lse[(size_t)bh * T + row] * ATTN_LOG2E : 0.f;
            dl[mt][hi] = 0.f;
        }
    attn_cp_wait<0>();
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 16 * MT; r++) {
        const bf16 *dr = sdO + (wr + r) * SR, *ar = sO + (wr + r) * SR;
        float sum = 0.f;
#pragma unroll
        for (int i = lane; i < HS; i += 32) sum += to_f(dr[i]) * to_f(ar[i]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if ((r & 7) == g) dl[r / 16][(r / 8) & 1] = sum; /* zero-filled rows past T give 0 */
        if (lane == 0 && q0 + wr + r < T) delta[(size_t)bh * T + q0 + wr + r] = sum;
    }
    __syncthreads(); /* sO (stage 1) is read by every warp before key tile 1 lands there */
    [[maybe_unused]] uint32_t qa[QREG ? MT : 1][QREG ? KT : 1][4], oa[QREG ? MT : 1][QREG ? KT : 1][4];
    if constexpr (QREG) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                attn_ldsm_x4(qa[mt][kk], sQ + (wr + 16 * mt) * SR + kk * 16 + offA);
                attn_ldsm_x4(oa[mt][kk], sdO + (wr + 16 * mt) * SR + kk * 16 + offA);
            }
    }

    float acc[MT][HS / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++) acc[mt][nd][0] = acc[mt][nd][1] = acc[mt][nd][2] = acc[mt][nd][3] = 0.f;
    for (int kt = 0; kt < nkt; kt++) {
        if (kt > 0) {
            attn_cp_wait<0>();
            __syncthreads();
        }
        if (kt + 1 < nkt) {
            bf16 *nK = sKV + ((kt + 1) & 1) * 2 * 64 * SR;
            attn_async_rows<HS, 64, NT>(nK, kb, ks, (kt + 1) * 64, T);
            attn_async_rows<HS, 64, NT>(nK + 64 * SR, vb, ks, (kt + 1) * 64, T);
            attn_cp_commit();
        }
        if (kt > wlast) continue;
        const bf16 *sK = sKV + (kt & 1) * 2 * 64 * SR, *sV = sK + 64 * SR;
#pragma unroll
        for (int hf = 0; hf < 64 / BNS; hf++) {
            const int j0 = kt * 64 + hf * BNS; /* the sub-tile's first key */
            if (j0 > wend) break; /* every key after every row of the warp: dS = 0 there (exact skip) */
            const bf16 *sKh = sK + hf * BNS * SR, *sVh = sV + hf * BNS * SR;
            float s[MT][NS][4], dp[MT][NS][4]; /* S = Q·Kᵀ, dP = dO·Vᵀ: 16 rows × BNS keys per m-tile */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NS; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[mt][nt][e] = 0.f, dp[mt][nt][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                uint32_t qf[MT][4], of[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if constexpr (QREG) {
#pragma unroll
                        for (int i = 0; i < 4; i++) qf[mt][i] = qa[mt][kk][i], of[mt][i] = oa[mt][kk][i];
                    } else {
                        attn_ldsm_x4(qf[mt], sQ + (wr + 16 * mt) * SR + kk * 16 + offA);
                        attn_ldsm_x4(of[mt], sdO + (wr + 16 * mt) * SR + kk * 16 + offA);
                    }
                }
#pragma unroll
                for (int np = 0; np < NS / 2; np++) {
                    uint32_t f[4];
                    attn_ldsm_x4(f, sKh + np * 16 * SR + kk * 16 + offB); /* B(d, j) = K[j][d] */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(s[mt][2 * np], qf[mt], f[0], f[1]);
                        attn_mma(s[mt][2 * np + 1], qf[mt], f[2], f[3]);
                    }
                    attn_ldsm_x4(f, sVh + np * 16 * SR + kk * 16 + offB); /* B(d, j) = V[j][d] */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(dp[mt][2 * np], of[mt], f[0], f[1]);
                        attn_mma(dp[mt][2 * np + 1], of[mt], f[2], f[3]);
                    }
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int row0 = q0 + wr + 16 * mt + g, row1 = row0 + 8;
                if (kt == wlast) { /* s ← dS = P (dP − Δ)/√HS, causal on the diagonal tile */
#pragma unroll
                    for (int nt = 0; nt < NS; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int row = e < 2 ? row0 : row1, col = j0 + nt * 8 + 2 * tq + (e & 1);
                            const float pj = col <= row ? attn_exp2(s[mt][nt][e] * scale_log2 - lse2[mt][e >> 1]) : 0.f;
                            s[mt][nt][e] = pj * (dp[mt][nt][e] - dl[mt][e >> 1]) * scale;
                        }
                } else {
#pragma unroll
                    for (int nt = 0; nt < NS; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const float pj = attn_exp2(s[mt][nt][e] * scale_log2 - lse2[mt][e >> 1]);
                            s[mt][nt][e] = pj * (dp[mt][nt][e] - dl[mt][e >> 1]) * scale;
                        }
                }
            }
#pragma unroll
            for (int kk = 0; kk < BNS / 16; kk++) { /* dQ += dS·K, keys j0+16kk..j0+16kk+15 */
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) attn_c_to_a(a[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
                for (int dp2 = 0; dp2 < HS / 16; dp2++) {
                    uint32_t f[4]; /* B(j, d) = K[j][d] (.trans) */
                    attn_ldsm_x4_t(f, sKh + kk * 16 * SR + dp2 * 16 + offA);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(acc[mt][2 * dp2], a[mt], f[0], f[1]);
                        attn_mma(acc[mt][2 * dp2 + 1], a[mt], f[2], f[3]);
                    }
                }
            }
        }
    }

    bf16 *ob = dq + qoff + 2 * tq;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int row0 = q0 + wr + 16 * mt + g, row1 = row0 + 8;
        if (row0 < T) {
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++)
                *reinterpret_cast<uint32_t *>(ob + (size_t)row0 * qs + nd * 8) =
                    attn_pack_bf16(acc[mt][nd][0], acc[mt][nd][1]);
        }
        if (row1 < T) {
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++)
                *reinterpret_cast<uint32_t *>(ob + (size_t)row1 * qs + nd * 8) =
                    attn_pack_bf16(acc[mt][nd][2], acc[mt][nd][3]);
        }
    }
}

/* Pᵀ and dSᵀ of one dk/dv sub-step in place of Sᵀ, dPᵀ for one m-tile (C fragments: rows = keys key0 /
 * key1, columns = the BQS queries t0 + tl; sL, sD: their lse, Δ); MASK: the causal (t ≥ key) and
 * t < T masks (else every pair is live). */
template <int BQS, bool MASK>
__device__ __forceinline__ void attn_dkdv_p_ds(float (&st)[BQS / 8][4], float (&dpt)[BQS / 8][4], const float *sL,
                                               const float *sD, int t0, int key0, int key1, int T, int tq,
                                               float scale_log2, float scale) {
#pragma unroll
    for (int nt = 0; nt < BQS / 8; nt++) {
        const float2 L2 = *reinterpret_cast<const float2 *>(sL + nt * 8 + 2 * tq); /* queries tl, tl + 1 */
        const float2 D2 = *reinterpret_cast<const float2 *>(sD + nt * 8 + 2 * tq);
#pragma unroll
        for (int e2 = 0; e2 < 2; e2++) {
            const int tl = nt * 8 + 2 * tq + e2, t = t0 + tl;
            const float L = __fmul_rn(e2 ? L2.y : L2.x, ATTN_LOG2E), D = e2 ? D2.y : D2.x;
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                const int e = 2 * hi + e2, key = hi ? key1 : key0;
                const float pj = !MASK || (t >= key && t < T) ? attn_exp2(st[nt][e] * scale_log2 - L) : 0.f;
                st[nt][e] = pj;
                dpt[nt][e] = pj * (dpt[nt][e] - D) * scale;
            }
        }
    }
}

/* dk, dv. Grid (B·NKV; key tiles of BN = 16·MT·NW keys, largest work first), block 32·NW. Warp w owns
 * the MT m-tiles of keys kw = k0+16MT·w .. kw+16MT−1 (one 64-key block) and, for each query head of
 * the group in order and each BQ-row query tile t0 = k0, k0+BQ, .. in order (all (head, tile) steps in
 * one double-buffered sequence), in sub-steps of BQS queries, computes Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, then
 * dV += Pᵀ·dO, dK += dSᵀ·Q. KREG: K, V fragments in registers (else re-read for every sub-step). */
template <int HS, int NW, int MT, int BQ, int BQS, bool KREG, int MINB>
__global__ void __launch_bounds__(32 * NW, MINB)
    attn_dkdv_v2(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                 const bf16 *__restrict__ da, const float *__restrict__ lse, const float *__restrict__ delta,
                 bf16 *__restrict__ dk, bf16 *__restrict__ dv, int T, int NH, int NKV, float scale_log2, float scale) {
    constexpr int SR = HS + 8, BN = 16 * MT * NW, NT = 32 * NW, KT = HS / 16, NS = BQS / 8;
    static_assert(64 % (16 * MT) == 0 && BQ % BQS == 0 && BQS % 16 == 0 && 64 % BQ == 0, "tiling");
    constexpr int STAGE = 2 * BQ * SR + 4 * BQ; /* bf16 units: Q, dO tiles, then lse, Δ (fp32) */
    bf16 *sK = reinterpret_cast<bf16 *>(attn_smem); /* [BN][SR] */
    bf16 *sV = sK + BN * SR;                         /* [BN][SR] */
    bf16 *sSt = sV + BN * SR;                        /* 2 stages */
    const int bk = blockIdx.x, b = bk / NKV, kh = bk - b * NKV, grp = NH / NKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
    const size_t koff = (size_t)b * T * ks + kh * HS;
    const int k0 = blockIdx.y * BN, wr = warp * 16 * MT, kw = k0 + wr;
    const int nq = (T - k0 + BQ - 1) / BQ, nit = grp * nq; /* query tiles per head; steps */
    const int offA = attn_ldsm_off_a<SR>(lane), offB = attn_ldsm_off_b<SR>(lane); /* ldmatrix row addresses */

    /* step it: head kh·grp + it/nq, query tile t0 = k0 + (it mod nq)·BQ → stage it & 1 */
    auto issue = [&](int it) {
        const int hi = it / nq, t0 = k0 + (it - hi * nq) * BQ, h = kh * grp + hi;
        bf16 *st = sSt + (it & 1) * STAGE;
        const size_t qoff = (size_t)b * T * qs + h * HS;
        attn_async_rows<HS, BQ, NT>(st, q + qoff, qs, t0, T);
        attn_async_rows<HS, BQ, NT>(st + BQ * SR, da + qoff, qs, t0, T);
        float *sl = reinterpret_cast<float *>(st + 2 * BQ * SR);
        const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = delta + ((size_t)b * NH + h) * T;
#pragma unroll
        for (int i0 = 0; i0 < 2 * BQ; i0 += NT) {
            const int i = i0 + (int)threadIdx.x;
            if ((2 * BQ) % NT == 0 || i < 2 * BQ) {
                const int j = i < BQ ? i : i - BQ, t = t0 + j;
                const bool ok = t < T;
                attn_cp_async4(sl + i, (i < BQ ? lrow : drow) + (ok ? t : 0), ok);
            }
        }
    };

    attn_async_rows<HS, BN, NT>(sK, k + koff, ks, k0, T);
    attn_async_rows<HS, BN, NT>(sV, v + koff, ks, k0, T);
    issue(0);
    attn_cp_commit();
    attn_cp_wait<0>();
    __syncthreads();
    [[maybe_unused]] uint32_t ka[KREG ? MT : 1][KREG ? KT : 1][4], va[KREG ? MT : 1][KREG ? KT : 1][4];
    if constexpr (KREG) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                attn_ldsm_x4(ka[mt][kk], sK + (wr + 16 * mt) * SR + kk * 16 + offA);
                attn_ldsm_x4(va[mt][kk], sV + (wr + 16 * mt) * SR + kk * 16 + offA);
            }
    }
    float dka[MT][HS / 8][4], dva[MT][HS / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nd = 0; nd < HS / 8; nd++)
#pragma unroll
            for (int e = 0; e < 4; e++) dka[mt][nd][e] = 0.f, dva[mt][nd][e] = 0.f;

    const bool wlive = kw < T; /* this warp has keys below T */
    for (int it = 0; it < nit; it++) {
        if (it > 0) {
            attn_cp_wait<0>();
            __syncthreads();
        }
        if (it + 1 < nit) {
            issue(it + 1);
            attn_cp_commit();
        }
        const int hi = it / nq, t0 = k0 + (it - hi * nq) * BQ;
        if (!wlive || t0 + BQ - 1 < kw) continue; /* every query of the tile before every key of the warp */
        const bf16 *sQ = sSt + (it & 1) * STAGE, *sdO = sQ + BQ * SR;
        const float *sL = reinterpret_cast<const float *>(sdO + BQ * SR), *sD = sL + BQ;
#pragma unroll
        for (int ss = 0; ss < BQ / BQS; ss++) {
            const int t0s = t0 + ss * BQS; /* the sub-step's first query */
            if (t0s + BQS - 1 < kw) continue; /* every query before every key: P = dS = 0 (exact skip) */
            const bf16 *sQs = sQ + ss * BQS * SR, *sdOs = sdO + ss * BQS * SR;
            float st[MT][NS][4], dpt[MT][NS][4]; /* Sᵀ, dPᵀ: 16 keys × BQS queries per m-tile */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NS; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) st[mt][nt][e] = 0.f, dpt[mt][nt][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                uint32_t kf[MT][4], vf[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if constexpr (KREG) {
#pragma unroll
                        for (int i = 0; i < 4; i++) kf[mt][i] = ka[mt][kk][i], vf[mt][i] = va[mt][kk][i];
                    } else {
                        attn_ldsm_x4(kf[mt], sK + (wr + 16 * mt) * SR + kk * 16 + offA);
                        attn_ldsm_x4(vf[mt], sV + (wr + 16 * mt) * SR + kk * 16 + offA);
                    }
                }
#pragma unroll
                for (int np = 0; np < NS / 2; np++) {
                    uint32_t f[4];
                    attn_ldsm_x4(f, sQs + np * 16 * SR + kk * 16 + offB); /* B(d, t) = Q[t][d] */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(st[mt][2 * np], kf[mt], f[0], f[1]);
                        attn_mma(st[mt][2 * np + 1], kf[mt], f[2], f[3]);
                    }
                    attn_ldsm_x4(f, sdOs + np * 16 * SR + kk * 16 + offB); /* B(d, t) = dO[t][d] */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(dpt[mt][2 * np], vf[mt], f[0], f[1]);
                        attn_mma(dpt[mt][2 * np + 1], vf[mt], f[2], f[3]);
                    }
                }
            }
            const bool mask = t0s < kw + 16 * MT || t0s + BQS > T; /* the diagonal, or the tile holding T */
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int key0 = kw + 16 * mt + g, key1 = key0 + 8;
                if (mask)
                    attn_dkdv_p_ds<BQS, true>(st[mt], dpt[mt], sL + ss * BQS, sD + ss * BQS, t0s, key0, key1, T, tq,
                                              scale_log2, scale);
                else
                    attn_dkdv_p_ds<BQS, false>(st[mt], dpt[mt], sL + ss * BQS, sD + ss * BQS, t0s, key0, key1, T,
                                               tq, scale_log2, scale);
            }
#pragma unroll
            for (int kk = 0; kk < BQS / 16; kk++) { /* queries t0s+16kk..t0s+16kk+15 */
                uint32_t pa[MT][4], sa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    attn_c_to_a(pa[mt], st[mt][2 * kk], st[mt][2 * kk + 1]);
                    attn_c_to_a(sa[mt], dpt[mt][2 * kk], dpt[mt][2 * kk + 1]);
                }
#pragma unroll
                for (int dp2 = 0; dp2 < HS / 16; dp2++) {
                    uint32_t f[4];
                    attn_ldsm_x4_t(f, sdOs + kk * 16 * SR + dp2 * 16 + offA); /* B(t, d) = dO[t][d] (.trans) */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(dva[mt][2 * dp2], pa[mt], f[0], f[1]);
                        attn_mma(dva[mt][2 * dp2 + 1], pa[mt], f[2], f[3]);
                    }
                    attn_ldsm_x4_t(f, sQs + kk * 16 * SR + dp2 * 16 + offA); /* B(t, d) = Q[t][d] (.trans) */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma(dka[mt][2 * dp2], sa[mt], f[0], f[1]);
                        attn_mma(dka[mt][2 * dp2 + 1], sa[mt], f[2], f[3]);
                    }
                }
            }
        }
    }

    bf16 *dkb = dk + koff + 2 * tq, *dvb = dv + koff + 2 * tq;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int key0 = kw + 16 * mt + g, key1 = key0 + 8;
        if (key0 < T) {
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++) {
                *reinterpret_cast<uint32_t *>(dkb + (size_t)key0 * ks + nd * 8) =
                    attn_pack_bf16(dka[mt][nd][0], dka[mt][nd][1]);
                *reinterpret_cast<uint32_t *>(dvb + (size_t)key0 * ks + nd * 8) =
                    attn_pack_bf16(dva[mt][nd][0], dva[mt][nd][1]);
            }
        }
        if (key1 < T) {
#pragma unroll
            for (int nd = 0; nd < HS / 8; nd++) {
                *reinterpret_cast<uint32_t *>(dkb + (size_t)key1 * ks + nd * 8) =
                    attn_pack_bf16(dka[mt][nd][2], dka[mt][nd][3]);
                *reinterpret_cast<uint32_t *>(dvb + (size_t)key1 * ks + nd * 8) =
                    attn_pack_bf16(dva[mt][nd][2], dva[mt][nd][3]);
            }
        }
    }
}

/* ---- host: dispatch --------------------------------------------------------------------------- */

/* FABLE_CUDA_ATTN (read once): unset or "v2": the version-2 tensor-core kernels; "v2b": the same with
 * the alternative launch configuration (attn_v2_cfg ALT); "v1": the version-1 tensor-core kernels;
 * "simple": the CUDA-core kernels for bf16 too. */
enum { ATTN_V2 = 0, ATTN_V2B, ATTN_V1, ATTN_SIMPLE };
static int attn_mode(void) {
    static const int mode = [] {
        const char *e = getenv("FABLE_CUDA_ATTN");
        if (!e || !*e || strcmp(e, "v2") == 0) return (int)ATTN_V2;
        if (strcmp(e, "v2b") == 0) return (int)ATTN_V2B;
        if (strcmp(e, "v1") == 0) return (int)ATTN_V1;
        if (strcmp(e, "simple") == 0) return (int)ATTN_SIMPLE;
        fprintf(stderr, "fable cuda: FABLE_CUDA_ATTN=%s is not one of v2, v2b, v1, simple; using v2\n", e);
        return (int)ATTN_V2;
    }();
    return mode;
}

static bool attn_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static void attn_unsupported(int HS) {
    char why[64];
    snprintf(why, sizeof why, "head size %d not supported", HS);
    cu_fatal(__FILE__, __LINE__, "attention", why);
}

static void attn_check_dims(const eng_dims *d) {
    if (d->NH <= 0 || d->NKV <= 0 || d->NH % d->NKV != 0)
        cu_fatal(__FILE__, __LINE__, "attention", "n_heads must be a multiple of n_kv_heads");
    if ((long)d->B * d->NH > 65535) cu_fatal(__FILE__, __LINE__, "attention", "batch·heads above 65535 (grid y)");
}

/* 1/√HS, and the same times log2(e) (scores in base-2 units) */
static float attn_scale(int HS) { return (float)(1.0 / sqrt((double)HS)); }
static float attn_scale_log2(int HS) { return (float)(1.4426950408889634 / sqrt((double)HS)); }

template <typename K>
static void attn_set_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CU_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

/* Whether the tensor-core kernels take this call: bf16, a head size they have, 16-byte aligned
 * buffers (their vector loads and cp.async), and not FABLE_CUDA_ATTN=simple. */
template <typename A>
static bool attn_use_tc(int HS, const void *const *ptrs, int n) {
    if (!std::is_same<A, bf16>::value || attn_mode() == ATTN_SIMPLE) return false;
    if (HS != 16 && HS != 32 && HS != 48 && HS != 64 && HS != 128) return false;
    for (int i = 0; i < n; i++)
        if (!attn_aligned16(ptrs[i])) return false;
    return true;
}

#define ATTN_SIMPLE_HS(X) X(8) X(16) X(32) X(40) X(48) X(64) X(80) X(96) X(128)
#define ATTN_TC_HS(X) X(16) X(32) X(48) X(64) X(128)

template <typename A, int HS>
static void attn_fwd_simple_run(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, A *att,
                                float *lse, int hs_scale = HS) {
    using C = attn_simple_cfg<HS>;
    const dim3 grid(cdiv(d->T, C::ROWS), d->B * d->NH), threads(C::ROWS * C::G_FWD);
    const size_t smem = C::SMEM_KV;
    attn_set_smem(attn_fwd_simple<A, HS>, smem);
    attn_fwd_simple<A, HS><<<grid, threads, smem, s>>>(q, k, v, att, lse, d->T, d->NH, d->NKV, attn_scale_log2(hs_scale));
    CU_LAUNCHED();
}

template <int HS>
static void attn_fwd_tc_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
                            bf16 *att, float *lse) {
    const dim3 grid(cdiv(d->T, 64), d->B * d->NH), threads(128);
    const size_t smem = attn_tc_cfg<HS>::SMEM_FWD;
    attn_set_smem(attn_fwd_tc<HS>, smem);
    attn_fwd_tc<HS><<<grid, threads, smem, s>>>(q, k, v, att, lse, d->T, d->NH, d->NKV, attn_scale_log2(HS));
    CU_LAUNCHED();
}

template <int HS, bool ALT>
static void attn_fwd_v2_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
                            bf16 *att, float *lse) {
    using C = attn_v2_cfg<HS, ALT>;
    constexpr int NW = C::FWD_NW, MT = C::FWD_MT, MINB = C::FWD_MINB;
    constexpr bool QREG = C::FWD_QREG;
    const dim3 grid(d->B * d->NH, cdiv(d->T, 16 * MT * NW)), threads(32 * NW);
    const size_t smem = C::SMEM_FWD;
    attn_set_smem(attn_fwd_v2<HS, NW, MT, QREG, MINB>, smem);
    attn_fwd_v2<HS, NW, MT, QREG, MINB><<<grid, threads, smem, s>>>(q, k, v, att, lse, d->T, d->NH, d->NKV,
                                                                    attn_scale_log2(HS));
    CU_LAUNCHED();
}

template <typename A, int HS>
static void attn_bwd_simple_run(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, const A *da,
                                const float *lse, const float *delta, A *dq, A *dk, A *dv, int hs_scale = HS) {
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

template <int HS>
static void attn_bwd_tc_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
                            const bf16 *da, const float *lse, const float *delta, bf16 *dq, bf16 *dk, bf16 *dv) {
    using C = attn_tc_cfg<HS>;
    const dim3 threads(128);
    const dim3 gq(cdiv(d->T, 64), d->B * d->NH), gk(cdiv(d->T, 64), d->B * d->NKV);
    const size_t smq = C::SMEM_DQ, smk = C::SMEM_DKDV;
    attn_set_smem(attn_dq_tc<HS>, smq);
    attn_dq_tc<HS><<<gq, threads, smq, s>>>(q, k, v, da, lse, delta, dq, d->T, d->NH, d->NKV, attn_scale_log2(HS),
                                            attn_scale(HS));
    CU_LAUNCHED();
    attn_set_smem(attn_dkdv_tc<HS>, smk);
    attn_dkdv_tc<HS><<<gk, threads, smk, s>>>(q, k, v, da, lse, delta, dk, dv, d->T, d->NH, d->NKV,
                                              attn_scale_log2(HS), attn_scale(HS));
    CU_LAUNCHED();
}

/* version 2: Δ is computed by the dq kernel (from att and da), which the dk/dv kernel follows */
template <int HS, bool ALT>
static void attn_bwd_v2_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
                            const bf16 *att, const bf16 *da, const float *lse, float *delta, bf16 *dq, bf16 *dk,
                            bf16 *dv) {
    using C = attn_v2_cfg<HS, ALT>;
    constexpr int QW = C::DQ_NW, QM = C::DQ_MT, QN = C::DQ_BNS, QB = C::DQ_MINB;
    constexpr int KW = C::KV_NW, KM = C::KV_MT, BQ = C::KV_BQ, BQS = C::KV_BQS, KB = C::KV_MINB;
    constexpr bool QREG = C::DQ_QREG, KREG = C::KV_KREG;
    const dim3 gq(d->B * d->NH, cdiv(d->T, 16 * QM * QW)), gk(d->B * d->NKV, cdiv(d->T, 16 * KM * KW));
    const size_t smq = C::SMEM_DQ, smk = C::SMEM_DKDV;
    attn_set_smem(attn_dq_v2<HS, QW, QM, QN, QREG, QB>, smq);
    attn_dq_v2<HS, QW, QM, QN, QREG, QB><<<gq, dim3(32 * QW), smq, s>>>(q, k, v, da, att, lse, delta, dq, d->T,
                                                                       d->NH, d->NKV, attn_scale_log2(HS),
                                                                       attn_scale(HS));
    CU_LAUNCHED();
    attn_set_smem(attn_dkdv_v2<HS, KW, KM, BQ, BQS, KREG, KB>, smk);
    attn_dkdv_v2<HS, KW, KM, BQ, BQS, KREG, KB><<<gk, dim3(32 * KW), smk, s>>>(q, k, v, da, lse, delta, dk, dv,
                                                                               d->T, d->NH, d->NKV,
                                                                               attn_scale_log2(HS), attn_scale(HS));
    CU_LAUNCHED();
}

/* ---- other head sizes: zero-padded to the next simple kernel's ---------------------------------
 * q, k, v (and da) are copied into rows of HSp ≥ HS values, the extra ones zero, which changes no
 * score and no output value; the kernels scale by 1/√HS of the real head size; att, dq, dk, dv are
 * copied back. The staging buffer is the file's own, grown on the first call of a shape. */
template <typename A> __global__ void attn_pad(const A *src, A *dst, size_t rows, int hs, int hsp) {
    const size_t n = rows * hsp;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / hsp, c = i - r * hsp;
        dst[i] = c < (size_t)hs ? src[r * hs + c] : from_f<A>(0.0f);
    }
}
template <typename A> __global__ void attn_unpad(const A *src, A *dst, size_t rows, int hs, int hsp) {
    const size_t n = rows * hs;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / hs, c = i - r * hs;
        dst[i] = src[r * hsp + c];
    }
}
template <typename A> static void attn_pad_run(cudaStream_t s, const A *src, A *dst, size_t rows, int hs, int hsp) {
    const size_t n = rows * hsp;
    attn_pad<A><<<(unsigned)((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536), 256, 0, s>>>(src, dst, rows, hs, hsp);
    CU_LAUNCHED();
}
template <typename A> static void attn_unpad_run(cudaStream_t s, const A *src, A *dst, size_t rows, int hs, int hsp) {
    const size_t n = rows * hs;
    attn_unpad<A><<<(unsigned)((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536), 256, 0, s>>>(src, dst, rows, hs, hsp);
    CU_LAUNCHED();
}

static int attn_pad_hs(int HS) {
    const int hs[] = {8, 16, 32, 40, 48, 64, 80, 96, 128};
    for (int i = 0; i < 9; i++)
        if (hs[i] >= HS) return hs[i];
    return 0;
}

static void *attn_pad_scratch(size_t bytes) {
    static void *buf;
    static size_t have;
    if (bytes > have) {
        if (buf) {
            CU_CHECK(cudaDeviceSynchronize());
            CU_CHECK(cudaFree(buf));
        }
        CU_CHECK(cudaMalloc(&buf, bytes));
        have = bytes;
    }
    return buf;
}

template <typename A>
static void attn_fwd_padded(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, A *att, float *lse,
                            int hsp) {
    eng_dims p = *d;
    p.HS = hsp, p.D = d->NH * hsp, p.KVD = d->NKV * hsp;
    const size_t nq = (size_t)d->N * d->NH, nk = (size_t)d->N * d->NKV;
    A *qp = (A *)attn_pad_scratch((2 * nq + 2 * nk) * hsp * sizeof(A)), *kp = qp + nq * hsp, *vp = kp + nk * hsp,
      *ap = vp + nk * hsp;
    attn_pad_run(s, q, qp, nq, d->HS, hsp);
    attn_pad_run(s, k, kp, nk, d->HS, hsp);
    attn_pad_run(s, v, vp, nk, d->HS, hsp);
    switch (hsp) {
#define ATTN_CASE(hs) \
    case hs: attn_fwd_simple_run<A, hs>(s, &p, qp, kp, vp, ap, lse, d->HS); break;
        ATTN_SIMPLE_HS(ATTN_CASE)
#undef ATTN_CASE
    }
    attn_unpad_run(s, ap, att, nq, d->HS, hsp);
}

template <typename A>
static void attn_bwd_padded(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, const A *da,
                            const float *lse, const float *delta, A *dq, A *dk, A *dv, int hsp) {
    eng_dims p = *d;
    p.HS = hsp, p.D = d->NH * hsp, p.KVD = d->NKV * hsp;
    const size_t nq = (size_t)d->N * d->NH, nk = (size_t)d->N * d->NKV;
    A *qp = (A *)attn_pad_scratch((3 * nq + 4 * nk) * hsp * sizeof(A)), *kp = qp + nq * hsp, *vp = kp + nk * hsp,
      *dap = vp + nk * hsp, *dqp = dap + nq * hsp, *dkp = dqp + nq * hsp, *dvp = dkp + nk * hsp;
    attn_pad_run(s, q, qp, nq, d->HS, hsp);
    attn_pad_run(s, k, kp, nk, d->HS, hsp);
    attn_pad_run(s, v, vp, nk, d->HS, hsp);
    attn_pad_run(s, da, dap, nq, d->HS, hsp);
    switch (hsp) {
#define ATTN_CASE(hs) \
    case hs: attn_bwd_simple_run<A, hs>(s, &p, qp, kp, vp, dap, lse, delta, dqp, dkp, dvp, d->HS); break;
        ATTN_SIMPLE_HS(ATTN_CASE)
#undef ATTN_CASE
    }
    attn_unpad_run(s, dqp, dq, nq, d->HS, hsp);
    attn_unpad_run(s, dkp, dk, nk, d->HS, hsp);
    attn_unpad_run(s, dvp, dv, nk, d->HS, hsp);
}

template <typename A>
void cu_attn_fwd(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, A *att, float *lse) {
    if (d->N <= 0) return;
    attn_check_dims(d);
    const void *ptrs[] = {q, k, v, att};
    if constexpr (std::is_same<A, bf16>::value) {
        if (attn_use_tc<A>(d->HS, ptrs, 4)) {
            switch (d->HS) {
#define ATTN_CASE(hs)                                                                                          \
    case hs:                                                                                                   \
        if (attn_mode() == ATTN_V1) attn_fwd_tc_run<hs>(s, d, q, k, v, att, lse);                              \
        else if (attn_mode() == ATTN_V2B) attn_fwd_v2_run<hs, true>(s, d, q, k, v, att, lse);                  \
        else attn_fwd_v2_run<hs, false>(s, d, q, k, v, att, lse);                                              \
        return;
                ATTN_TC_HS(ATTN_CASE)
#undef ATTN_CASE
            }
        }
    }
    switch (d->HS) {
#define ATTN_CASE(hs) \
    case hs: attn_fwd_simple_run<A, hs>(s, d, q, k, v, att, lse); return;
        ATTN_SIMPLE_HS(ATTN_CASE)
#undef ATTN_CASE
    }
    if (const int hsp = attn_pad_hs(d->HS)) return attn_fwd_padded(s, d, q, k, v, att, lse, hsp);
    attn_unsupported(d->HS);
}

template <typename A>
static void attn_delta_run(cudaStream_t s, const eng_dims *d, const A *att, const A *da, float *delta) {
    const long rows = (long)d->N * d->NH;
    const dim3 grid((unsigned)((rows + 7) / 8)), threads(256);
    attn_delta<A><<<grid, threads, 0, s>>>(att, da, delta, d->T, d->NH, d->HS, rows);
    CU_LAUNCHED();
}

template <typename A>
void cu_attn_bwd(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, const A *att,
                 const float *lse, const A *da, A *dq, A *dk, A *dv, float *delta) {
    if (d->N <= 0) return;
    attn_check_dims(d);
    const void *ptrs[] = {q, k, v, da, dq, dk, dv};
    if constexpr (std::is_same<A, bf16>::value) {
        if (attn_use_tc<A>(d->HS, ptrs, 7)) {
            const bool v2 = attn_mode() != ATTN_V1 && attn_aligned16(att); /* v2 also reads att (Δ) */
            const bool alt = attn_mode() == ATTN_V2B;
            if (!v2) attn_delta_run(s, d, att, da, delta);
            switch (d->HS) {
#define ATTN_CASE(hs)                                                                                          \
    case hs:                                                                                                   \
        if (v2 && alt) attn_bwd_v2_run<hs, true>(s, d, q, k, v, att, da, lse, delta, dq, dk, dv);              \
        else if (v2) attn_bwd_v2_run<hs, false>(s, d, q, k, v, att, da, lse, delta, dq, dk, dv);               \
        else attn_bwd_tc_run<hs>(s, d, q, k, v, da, lse, delta, dq, dk, dv);                                   \
        return;
                ATTN_TC_HS(ATTN_CASE)
#undef ATTN_CASE
            }
        }
    }
    attn_delta_run(s, d, att, da, delta);
    switch (d->HS) {
#define ATTN_CASE(hs) \
    case hs: attn_bwd_simple_run<A, hs>(s, d, q, k, v, da, lse, delta, dq, dk, dv); return;
        ATTN_SIMPLE_HS(ATTN_CASE)
#undef ATTN_CASE
    }
    if (const int hsp = attn_pad_hs(d->HS)) return attn_bwd_padded(s, d, q, k, v, da, lse, delta, dq, dk, dv, hsp);
    attn_unsupported(d->HS);
}

template void cu_attn_fwd<float>(cudaStream_t, const eng_dims *, const float *, const float *, const float *, float *,
                                 float *);
template void cu_attn_fwd<bf16>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *, const bf16 *, bf16 *,
                                float *);
template void cu_attn_bwd<float>(cudaStream_t, const eng_dims *, const float *, const float *, const float *,
                                 const float *, const float *, const float *, float *, float *, float *, float *);
template void cu_attn_bwd<bf16>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *, const bf16 *, const bf16 *,
                                const float *, const bf16 *, bf16 *, bf16 *, bf16 *, float *);
