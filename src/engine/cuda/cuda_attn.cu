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

#include "engine/cuda/cuda_attn.cuh"

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
