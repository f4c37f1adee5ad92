/* fable cuda engine — attention: the tensor-core kernels, version 1
 * (overview and math: cuda_attn.cu; shared helpers: cuda_attn.cuh). */
#include <type_traits>

#include "engine/cuda/cuda_attn.cuh"

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


/* ---- launchers -------------------------------------------------------------------------------- */

template <int HS>
void attn_fwd_tc_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
                            bf16 *att, float *lse) {
    const dim3 grid(cdiv(d->T, 64), d->B * d->NH), threads(128);
    const size_t smem = attn_tc_cfg<HS>::SMEM_FWD;
    attn_set_smem(attn_fwd_tc<HS>, smem);
    attn_fwd_tc<HS><<<grid, threads, smem, s>>>(q, k, v, att, lse, d->T, d->NH, d->NKV, attn_scale_log2(HS));
    CU_LAUNCHED();
}

template <int HS>
void attn_bwd_tc_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
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

/* explicit instantiations: the tensor-core head sizes */
#define ATTN_INST(hs)                                                                                          \
    template void attn_fwd_tc_run<hs>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *, const bf16 *,  \
                                      bf16 *, float *);                                                        \
    template void attn_bwd_tc_run<hs>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *, const bf16 *,  \
                                      const bf16 *, const float *, const float *, bf16 *, bf16 *, bf16 *);
ATTN_TC_HS(ATTN_INST)
#undef ATTN_INST
