/* fable cuda engine — attention: the tensor-core kernels, version 2 (the default)
 * (overview and math: cuda_attn.cu; shared helpers: cuda_attn.cuh). */
#include <type_traits>

#include "engine/cuda/cuda_attn.cuh"

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


/* ---- launchers -------------------------------------------------------------------------------- */

template <int HS, bool ALT>
void attn_fwd_v2_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
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

/* version 2: Δ is computed by the dq kernel (from att and da), which the dk/dv kernel follows */
template <int HS, bool ALT>
void attn_bwd_v2_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v,
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

/* explicit instantiations: the tensor-core head sizes, both launch configurations */
#define ATTN_INST2(hs, alt)                                                                                    \
    template void attn_fwd_v2_run<hs, alt>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *,           \
                                           const bf16 *, bf16 *, float *);                                     \
    template void attn_bwd_v2_run<hs, alt>(cudaStream_t, const eng_dims *, const bf16 *, const bf16 *,           \
                                           const bf16 *, const bf16 *, const bf16 *, const float *, float *,   \
                                           bf16 *, bf16 *, bf16 *);
#define ATTN_INST(hs) ATTN_INST2(hs, false) ATTN_INST2(hs, true)
ATTN_TC_HS(ATTN_INST)
#undef ATTN_INST
#undef ATTN_INST2
