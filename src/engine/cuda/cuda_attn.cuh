/* fable cuda engine — attention internals shared by its files (the overview, the math and the
 * mma fragment layouts are at the top of cuda_attn.cu):
 *   cuda_attn.cu         dispatch (FABLE_CUDA_ATTN, head sizes, padding), cu_attn_fwd / cu_attn_bwd
 *   cuda_attn_simple.cu  CUDA-core fp32 kernels (any act type, every head size) and attn_delta
 *   cuda_attn_tc.cu      tensor-core kernels, version 1 (FABLE_CUDA_ATTN=v1)
 *   cuda_attn_v2.cu      tensor-core kernels, version 2 (the default)
 * Here: the device helpers every family uses, host helpers, and each family's launchers
 * (explicitly instantiated in its own file for the head sizes below). */
#ifndef FABLE_CUDA_ATTN_CUH
#define FABLE_CUDA_ATTN_CUH

#include <math.h>
#include <string.h>

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


/* ---- host helpers -------------------------------------------------------------------------- */

/* 1/√HS, and the same times log2(e) (scores in base-2 units) */
static inline float attn_scale(int HS) { return (float)(1.0 / sqrt((double)HS)); }
static inline float attn_scale_log2(int HS) { return (float)(1.4426950408889634 / sqrt((double)HS)); }

template <typename K>
static inline void attn_set_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CU_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

/* head sizes with a kernel of their own: simple (fp32 and bf16), tensor cores (bf16) */
#define ATTN_SIMPLE_HS(X) X(8) X(16) X(32) X(40) X(48) X(64) X(80) X(96) X(128)
#define ATTN_TC_HS(X) X(16) X(32) X(48) X(64) X(128)

/* ---- launchers (one per family and direction; hs_scale: the real head size when padded) ---- */
template <typename A, int HS>
void attn_fwd_simple_run(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, A *att, float *lse,
                         int hs_scale = HS);
template <typename A, int HS>
void attn_bwd_simple_run(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, const A *da,
                         const float *lse, const float *delta, A *dq, A *dk, A *dv, int hs_scale = HS);
/* Δ = rowsum(da ⊙ att) into delta [B, NH, T] */
template <typename A>
void attn_delta_run(cudaStream_t s, const eng_dims *d, const A *att, const A *da, float *delta);
template <int HS>
void attn_fwd_tc_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v, bf16 *att,
                     float *lse);
template <int HS>
void attn_bwd_tc_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *da,
                     const float *lse, const float *delta, bf16 *dq, bf16 *dk, bf16 *dv);
template <int HS, bool ALT>
void attn_fwd_v2_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v, bf16 *att,
                     float *lse);
template <int HS, bool ALT>
void attn_bwd_v2_run(cudaStream_t s, const eng_dims *d, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *att,
                     const bf16 *da, const float *lse, float *delta, bf16 *dq, bf16 *dk, bf16 *dv);

#endif
