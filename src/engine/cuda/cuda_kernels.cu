/* fable cuda engine — element-wise and reduction kernels: RMSNorm, RoPE, SwiGLU, embedding,
 * conversions, Σg², AdamW, softmax + cross-entropy. Every reduction runs in a fixed order
 * (block trees of fixed shape, partials in fixed slots summed in order): no float atomics. */
#include <cub/cub.cuh>

#include "engine/cuda/cuda_internal.cuh"

/* ---- block reductions (fixed order: warp shuffle tree, then the warps' partials in order) -- */
template <typename Tv> __device__ __forceinline__ Tv warp_sum(Tv v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* sum over the block (blockDim a multiple of 32, ≤ 1024); every thread gets the result */
template <typename Tv> __device__ Tv block_sum(Tv v, Tv *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    Tv t = 0;
    for (int i = 0; i < nw; i++) t += sh[i];
    return t;
}
__device__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float t = -INFINITY;
    for (int i = 0; i < nw; i++) t = fmaxf(t, sh[i]);
    return t;
}

static int grid_for(size_t n, int threads) {
    size_t b = (n + threads - 1) / threads;
    return (int)(b < 65536 * 16 ? b : 65536 * 16);
}

/* ---- vector access: VEC consecutive elements in one 16- or 8-byte load/store --------------- */
template <typename A, int VEC> struct __align__(16) vec_t {
    A e[VEC];
};
template <typename A, int VEC> __device__ __forceinline__ vec_t<A, VEC> vload(const A *p) {
    vec_t<A, VEC> r;
    if ((VEC * sizeof(A)) % 16 == 0)
#pragma unroll
        for (int c = 0; c < (int)(VEC * sizeof(A) / 16); c++) ((uint4 *)r.e)[c] = ((const uint4 *)p)[c];
    else if (VEC * sizeof(A) == 8) *(uint2 *)r.e = *(const uint2 *)p;
    else
#pragma unroll
        for (int c = 0; c < VEC; c++) r.e[c] = p[c];
    return r;
}
template <typename A, int VEC> __device__ __forceinline__ void vstore(A *p, const vec_t<A, VEC> &r) {
    if ((VEC * sizeof(A)) % 16 == 0)
#pragma unroll
        for (int c = 0; c < (int)(VEC * sizeof(A) / 16); c++) ((uint4 *)p)[c] = ((const uint4 *)r.e)[c];
    else if (VEC * sizeof(A) == 8) *(uint2 *)p = *(const uint2 *)r.e;
    else
#pragma unroll
        for (int c = 0; c < VEC; c++) p[c] = r.e[c];
}

static int aligned16(const void *p) { return !((uintptr_t)p & 15); }

/* ---- RMSNorm ------------------------------------------------------------------------------
 * out[n,:] = w ⊙ (x[n,:]·r), r = 1/sqrt(mean(x[n,:]²) + eps); one block per row */
template <typename A>
__global__ void k_rmsnorm_fwd(int D, const float *__restrict__ x, const float *__restrict__ w, A *__restrict__ out,
                              float *__restrict__ rstd) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float ss = 0;
    for (int j = threadIdx.x; j < D; j += blockDim.x) ss += xr[j] * xr[j];
    ss = block_sum(ss, sh);
    const float r = 1.0f / sqrtf(ss / (float)D + MODEL_RMS_EPS);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int j = threadIdx.x; j < D; j += blockDim.x) out[row * D + j] = from_f<A>(w[j] * (r * xr[j]));
}

/* The same, one warp per row held in registers: lane p owns the float4 chunks p, p + 32, ...
 * (CH of them, D ≤ 128·CH, D % 4 = 0); the sum of squares is a warp reduction. */
template <typename A, int CH>
__global__ void k_rmsnorm_fwd_warp(int N, int D, const float *__restrict__ x, const float *__restrict__ w,
                                   A *__restrict__ out, float *__restrict__ rstd) {
    const int lane = threadIdx.x & 31, D4 = D / 4;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= (size_t)N) return;
    const float4 *xr = (const float4 *)(x + row * D);
    float4 v[CH];
    float ss = 0;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int j = c * 32 + lane;
        v[c] = j < D4 ? xr[j] : make_float4(0, 0, 0, 0);
        ss += v[c].x * v[c].x + v[c].y * v[c].y + v[c].z * v[c].z + v[c].w * v[c].w;
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)D + MODEL_RMS_EPS);
    if (lane == 0) rstd[row] = r;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int j = c * 32 + lane;
        if (j >= D4) continue;
        const float4 wv = ((const float4 *)w)[j];
        vec_t<A, 4> o;
        o.e[0] = from_f<A>(wv.x * (r * v[c].x));
        o.e[1] = from_f<A>(wv.y * (r * v[c].y));
        o.e[2] = from_f<A>(wv.z * (r * v[c].z));
        o.e[3] = from_f<A>(wv.w * (r * v[c].w));
        vstore<A, 4>(out + row * D + 4 * j, o);
    }
}

/* float4 chunks per lane for a warp-per-row kernel of width D (0: none fits) */
static int rms_chunks(int D, const void *a, const void *b, const void *c) {
    if (D % 4 || !aligned16(a) || !aligned16(b) || (c && !aligned16(c))) return 0;
    const int ch = cdiv(D / 4, 32);
    return ch <= 1 ? 1 : ch <= 2 ? 2 : ch <= 3 ? 3 : ch <= 4 ? 4 : ch <= 6 ? 6 : ch <= 8 ? 8 : 0;
}
#define RMS_CH_SWITCH(ch, LAUNCH)     \
    switch (ch) {                     \
    case 1: LAUNCH(1); break;         \
    case 2: LAUNCH(2); break;         \
    case 3: LAUNCH(3); break;         \
    case 4: LAUNCH(4); break;         \
    case 6: LAUNCH(6); break;         \
    default: LAUNCH(8); break;        \
    }

template <typename A>
void cu_rmsnorm_fwd(cudaStream_t s, int N, int D, const float *x, const float *w, A *out, float *rstd) {
    const int ch = rms_chunks(D, x, w, out);
    if (ch) {
#define RMS_FWD(C) k_rmsnorm_fwd_warp<A, C><<<cdiv(N, 8), 256, 0, s>>>(N, D, x, w, out, rstd)
        RMS_CH_SWITCH(ch, RMS_FWD)
#undef RMS_FWD
    } else {
        k_rmsnorm_fwd<A><<<N, D >= 512 ? 256 : 128, 0, s>>>(D, x, w, out, rstd);
    }
    CU_LAUNCHED();
}

/* dx[n,:] = base + r·(g⊙w − x·r·c), c = r·Σ_j g_j w_j x_j / D  (mean(ĝ⊙x̂) = c) */
__global__ void k_rmsnorm_bwd_rows(int D, const float *__restrict__ x, const float *__restrict__ w,
                                   const float *__restrict__ rstd, const float *__restrict__ g,
                                   const float *__restrict__ base, float *__restrict__ dx) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *xr = x + row * D, *gr = g + row * D;
    const float r = rstd[row];
    float dot = 0;
    for (int j = threadIdx.x; j < D; j += blockDim.x) dot += gr[j] * w[j] * xr[j];
    dot = block_sum(dot, sh);
    const float c = dot * r / (float)D;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float v = r * (gr[j] * w[j] - xr[j] * r * c);
        dx[row * D + j] = base ? base[row * D + j] + v : v;
    }
}

/* dw partials: part[c][j] = Σ_{n in row chunk c} g[n,j]·x[n,j]·rstd[n] (rows in order) */
#define NORM_ROWS 256
__global__ void k_rmsnorm_dw_part(int N, int D, const float *__restrict__ x, const float *__restrict__ rstd,
                                  const float *__restrict__ g, float *__restrict__ part) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (j >= D) return;
    const int n0 = c * NORM_ROWS, n1 = min(N, n0 + NORM_ROWS);
    float s = 0;
    for (int n = n0; n < n1; n++) s += g[(size_t)n * D + j] * x[(size_t)n * D + j] * rstd[n];
    part[(size_t)c * D + j] = s;
}
__global__ void k_rmsnorm_dw_sum(int nc, int D, const float *__restrict__ part, float *__restrict__ dw, int acc) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    float s = 0;
    for (int c = 0; c < nc; c++) s += part[(size_t)c * D + j];
    dw[j] = acc ? dw[j] + s : s;
}
/* the same for many partials: a block of 32 columns × 16 warps; warp w sums partials w, w + 16,
 * ... in order, then lane j adds the 16 warps' sums in order (fixed order: deterministic) */
__global__ void k_rmsnorm_dw_sum_wide(int nc, int D, const float *__restrict__ part, float *__restrict__ dw, int acc) {
    __shared__ float sh[16][33];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, j = blockIdx.x * 32 + lane;
    float s = 0;
    if (j < D)
        for (int c = wid; c < nc; c += 16) s += part[(size_t)c * D + j];
    sh[wid][lane] = s;
    __syncthreads();
    if (wid || j >= D) return;
    float t = 0;
    for (int w = 0; w < 16; w++) t += sh[w][lane];
    dw[j] = acc ? dw[j] + t : t;
}

/* The rows and the dw partials in one pass, one warp per row in registers (as the fwd): warp
 * gw of RMS_WARPS (fixed, so the partials do not depend on the GPU) takes rows gw, gw + W, ...
 * in order and keeps its column sums of g·x·rstd in registers: part[gw][j]. dx16: a bf16 copy
 * of dx (the next layer's matmul operand), or NULL. */
#define RMS_WARPS 2048
template <int CH>
__global__ void __launch_bounds__(256) k_rmsnorm_bwd_warp(int N, int D, const float *__restrict__ x,
                                                          const float *__restrict__ w, const float *__restrict__ rstd,
                                                          const float *__restrict__ g, const float *__restrict__ base,
                                                          float *__restrict__ dx, bf16 *__restrict__ dx16,
                                                          float *__restrict__ part, int nwarps) {
    const int lane = threadIdx.x & 31, D4 = D / 4;
    const int gw = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (gw >= nwarps) return;
    float4 acc[CH];
#pragma unroll
    for (int c = 0; c < CH; c++) acc[c] = make_float4(0, 0, 0, 0);
    for (size_t row = gw; row < (size_t)N; row += nwarps) {
        const float4 *xr = (const float4 *)(x + row * D), *gr = (const float4 *)(g + row * D);
        const float r = rstd[row];
        float4 xv[CH], gv[CH];
        float dot = 0;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int j = c * 32 + lane;
            const float4 z = make_float4(0, 0, 0, 0);
            xv[c] = j < D4 ? xr[j] : z;
            gv[c] = j < D4 ? gr[j] : z;
            const float4 wv = j < D4 ? ((const float4 *)w)[j] : z;
            dot += gv[c].x * wv.x * xv[c].x + gv[c].y * wv.y * xv[c].y + gv[c].z * wv.z * xv[c].z +
                   gv[c].w * wv.w * xv[c].w;
        }
        dot = warp_sum(dot);
        const float cc = dot * r / (float)D;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int j = c * 32 + lane;
            if (j >= D4) continue;
            const float4 wv = ((const float4 *)w)[j];
            float4 v = make_float4(r * (gv[c].x * wv.x - xv[c].x * r * cc), r * (gv[c].y * wv.y - xv[c].y * r * cc),
                                   r * (gv[c].z * wv.z - xv[c].z * r * cc), r * (gv[c].w * wv.w - xv[c].w * r * cc));
            if (base) {
                const float4 b = ((const float4 *)(base + row * D))[j];
                v.x += b.x, v.y += b.y, v.z += b.z, v.w += b.w;
            }
            ((float4 *)(dx + row * D))[j] = v;
            if (dx16) {
                vec_t<bf16, 4> o;
                o.e[0] = __float2bfloat16(v.x), o.e[1] = __float2bfloat16(v.y);
                o.e[2] = __float2bfloat16(v.z), o.e[3] = __float2bfloat16(v.w);
                vstore<bf16, 4>(dx16 + row * D + 4 * j, o);
            }
            acc[c].x += gv[c].x * xv[c].x * r, acc[c].y += gv[c].y * xv[c].y * r;
            acc[c].z += gv[c].z * xv[c].z * r, acc[c].w += gv[c].w * xv[c].w * r;
        }
    }
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int j = c * 32 + lane;
        if (j < D4) ((float4 *)(part + (size_t)gw * D))[j] = acc[c];
    }
}

void cu_rmsnorm_bwd(cu_state *st, cudaStream_t s, int N, int D, const float *x, const float *w, const float *rstd,
                    const float *g, const float *base, float *dx, bf16 *dx16, float *dw, int acc) {
    const int ch = rms_chunks(D, x, g, dx) && aligned16(w) && (!base || aligned16(base)) && (!dx16 || !(D % 8))
                       ? rms_chunks(D, x, g, dx)
                       : 0;
    if (ch) {
        const int nw = N < RMS_WARPS ? N : RMS_WARPS;
        float *part = (float *)cu_scratch(st, CU_SCR_NORM_DW, (size_t)nw * D * sizeof(float));
#define RMS_BWD(C) k_rmsnorm_bwd_warp<C><<<cdiv(nw, 8), 256, 0, s>>>(N, D, x, w, rstd, g, base, dx, dx16, part, nw)
        RMS_CH_SWITCH(ch, RMS_BWD)
#undef RMS_BWD
        CU_LAUNCHED();
        k_rmsnorm_dw_sum_wide<<<cdiv(D, 32), 512, 0, s>>>(nw, D, part, dw, acc);
        CU_LAUNCHED();
        return;
    }
    k_rmsnorm_bwd_rows<<<N, D >= 512 ? 256 : 128, 0, s>>>(D, x, w, rstd, g, base, dx);
    CU_LAUNCHED();
    if (dx16) cu_to_bf16(s, (size_t)N * D, dx, dx16);
    const int nc = cdiv(N, NORM_ROWS);
    float *part = (float *)cu_scratch(st, CU_SCR_NORM_DW, (size_t)nc * D * sizeof(float));
    k_rmsnorm_dw_part<<<dim3(cdiv(D, 128), nc), 128, 0, s>>>(N, D, x, rstd, g, part);
    CU_LAUNCHED();
    k_rmsnorm_dw_sum<<<cdiv(D, 128), 128, 0, s>>>(nc, D, part, dw, acc);
    CU_LAUNCHED();
}

/* ---- RoPE: rotate pairs (2i, 2i+1) of every head by ±angle(pos = n mod T), in place ----
 * Each thread rotates P consecutive pairs (P = 4: one 16-byte load of bf16, two of fp32). */
template <typename A, int P>
__global__ void k_rope(A *x, int N, int T, int heads, int HS, const float *__restrict__ rope, float sgn) {
    const int half = HS / 2, groups = half / P;
    const size_t total = (size_t)N * heads * groups;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const int i0 = (int)(idx % groups) * P;
        const size_t nh = idx / groups; /* n·heads + h */
        const int n = (int)(nh / heads);
        const float *rp = rope + ((size_t)(n % T) * half + i0) * 2;
        A *v = x + nh * HS + 2 * i0;
        vec_t<A, 2 * P> a = vload<A, 2 * P>(v);
        vec_t<float, 2 * P> cs = vload<float, 2 * P>(rp);
#pragma unroll
        for (int p = 0; p < P; p++) {
            const float c = cs.e[2 * p], sn = sgn * cs.e[2 * p + 1];
            const float x0 = to_f(a.e[2 * p]), x1 = to_f(a.e[2 * p + 1]);
            a.e[2 * p] = from_f<A>(x0 * c - x1 * sn);
            a.e[2 * p + 1] = from_f<A>(x0 * sn + x1 * c);
        }
        vstore<A, 2 * P>(v, a);
    }
}

template <typename A> void cu_rope(cudaStream_t s, A *x, int N, int T, int heads, int HS, const float *rope, int inverse) {
    const float sgn = inverse ? -1.0f : 1.0f;
    if ((HS / 2) % 4 == 0 && aligned16(x) && aligned16(rope)) {
        const size_t total = (size_t)N * heads * (HS / 8);
        k_rope<A, 4><<<grid_for(total, 256), 256, 0, s>>>(x, N, T, heads, HS, rope, sgn);
    } else {
        const size_t total = (size_t)N * heads * (HS / 2);
        k_rope<A, 1><<<grid_for(total, 256), 256, 0, s>>>(x, N, T, heads, HS, rope, sgn);
    }
    CU_LAUNCHED();
}

/* ---- SwiGLU: gate = silu(h1)⊙h3, silu(a) = a·σ(a) ----------------------------------------
 * backward: dh1 = dgate⊙h3⊙σ(a)(1 + a(1−σ(a))), dh3 = dgate⊙silu(a). Each thread takes VEC
 * consecutive elements (16-byte loads and stores) where n and the buffers allow, else one. */
template <typename A, int VEC> __global__ void k_swiglu_fwd(size_t nv, const A *h1, const A *h3, A *gate) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv; i += (size_t)gridDim.x * blockDim.x) {
        const vec_t<A, VEC> a = vload<A, VEC>(h1 + i * VEC), b = vload<A, VEC>(h3 + i * VEC);
        vec_t<A, VEC> o;
#pragma unroll
        for (int c = 0; c < VEC; c++) {
            const float x = to_f(a.e[c]), sg = 1.0f / (1.0f + expf(-x));
            o.e[c] = from_f<A>(x * sg * to_f(b.e[c]));
        }
        vstore<A, VEC>(gate + i * VEC, o);
    }
}
template <typename A, int VEC>
__global__ void k_swiglu_bwd(size_t nv, const A *dgate, const A *h1, const A *h3, A *dh1, A *dh3) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv; i += (size_t)gridDim.x * blockDim.x) {
        const vec_t<A, VEC> a = vload<A, VEC>(h1 + i * VEC), b = vload<A, VEC>(h3 + i * VEC),
                            g = vload<A, VEC>(dgate + i * VEC);
        vec_t<A, VEC> o1, o3;
#pragma unroll
        for (int c = 0; c < VEC; c++) {
            const float x = to_f(a.e[c]), y = to_f(b.e[c]), gg = to_f(g.e[c]);
            const float sg = 1.0f / (1.0f + expf(-x));
            o1.e[c] = from_f<A>(gg * y * sg * (1.0f + x * (1.0f - sg)));
            o3.e[c] = from_f<A>(gg * x * sg);
        }
        vstore<A, VEC>(dh1 + i * VEC, o1);
        vstore<A, VEC>(dh3 + i * VEC, o3);
    }
}
template <typename A> void cu_swiglu_fwd(cudaStream_t s, size_t n, const A *h1, const A *h3, A *gate) {
    const int V = 16 / sizeof(A);
    if (n % V == 0 && aligned16(h1) && aligned16(h3) && aligned16(gate))
        k_swiglu_fwd<A, 16 / sizeof(A)><<<grid_for(n / V, 256), 256, 0, s>>>(n / V, h1, h3, gate);
    else k_swiglu_fwd<A, 1><<<grid_for(n, 256), 256, 0, s>>>(n, h1, h3, gate);
    CU_LAUNCHED();
}
template <typename A>
void cu_swiglu_bwd(cudaStream_t s, size_t n, const A *dgate, const A *h1, const A *h3, A *dh1, A *dh3) {
    const int V = 16 / sizeof(A);
    if (n % V == 0 && aligned16(dgate) && aligned16(h1) && aligned16(h3) && aligned16(dh1) && aligned16(dh3))
        k_swiglu_bwd<A, 16 / sizeof(A)><<<grid_for(n / V, 256), 256, 0, s>>>(n / V, dgate, h1, h3, dh1, dh3);
    else k_swiglu_bwd<A, 1><<<grid_for(n, 256), 256, 0, s>>>(n, dgate, h1, h3, dh1, dh3);
    CU_LAUNCHED();
}

/* ---- conversions ---------------------------------------------------------------------------- */
__global__ void k_to_bf16(size_t n, const float *src, bf16 *dst) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16(src[i]);
}
__global__ void k_to_f32(size_t n, const bf16 *src, float *dst) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}
void cu_to_bf16(cudaStream_t s, size_t n, const float *src, bf16 *dst) {
    if (!n) return;
    k_to_bf16<<<grid_for(n, 256), 256, 0, s>>>(n, src, dst);
    CU_LAUNCHED();
}
void cu_to_f32(cudaStream_t s, size_t n, const bf16 *src, float *dst) {
    if (!n) return;
    k_to_f32<<<grid_for(n, 256), 256, 0, s>>>(n, src, dst);
    CU_LAUNCHED();
}

/* ---- embedding --------------------------------------------------------------------------------
 * forward: x[n,:] = E[tok[n],:]. backward: dE[tok[n],:] += dx[n,:], deterministic: the (token,
 * position) pairs are sorted by token with a stable radix sort (positions stay in increasing
 * order within a token), then one block per run of equal tokens sums its rows in order. */
__global__ void k_embed_fwd(int N, int D, float *x, const float *emb, const int32_t *tok) {
    const size_t total = (size_t)N * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t n = i / D, j = i % D;
        x[i] = emb[(size_t)tok[n] * D + j];
    }
}
void cu_embed_fwd(cudaStream_t s, int N, int D, float *x, const float *emb, const int32_t *tok) {
    k_embed_fwd<<<grid_for((size_t)N * D, 256), 256, 0, s>>>(N, D, x, emb, tok);
    CU_LAUNCHED();
}

__global__ void k_iota(int n, int32_t *v) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) v[i] = i;
}
__global__ void k_embed_runs(int N, int D, const int32_t *keys, const int32_t *pos, const float *dx, float *demb) {
    const int i = blockIdx.x;
    const int32_t t = keys[i];
    if (i > 0 && keys[i - 1] == t) return; /* not the start of a run */
    int end = i + 1;
    while (end < N && keys[end] == t) end++;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float s = demb[(size_t)t * D + j];
        for (int r = i; r < end; r++) s += dx[(size_t)pos[r] * D + j];
        demb[(size_t)t * D + j] = s;
    }
}

void cu_embed_bwd(cu_state *st, cudaStream_t s, int N, int D, int V, float *demb, const float *dx, const int32_t *tok) {
    int32_t *keys = (int32_t *)cu_scratch(st, CU_SCR_SORT_KEYS, (size_t)N * sizeof(int32_t));
    int32_t *vals = (int32_t *)cu_scratch(st, CU_SCR_SORT_VALS, (size_t)2 * N * sizeof(int32_t));
    int32_t *pos_in = vals, *pos_out = vals + N;
    k_iota<<<cdiv(N, 256), 256, 0, s>>>(N, pos_in);
    CU_LAUNCHED();
    int bits = 1;
    while ((1 << bits) < V) bits++;
    size_t tmp_bytes = 0;
    CU_CHECK(cub::DeviceRadixSort::SortPairs(NULL, tmp_bytes, (const unsigned *)tok, (unsigned *)keys, pos_in, pos_out,
                                             N, 0, bits, s));
    void *tmp = cu_scratch(st, CU_SCR_SORT_TMP, tmp_bytes);
    CU_CHECK(cub::DeviceRadixSort::SortPairs(tmp, tmp_bytes, (const unsigned *)tok, (unsigned *)keys, pos_in, pos_out,
                                             N, 0, bits, s));
    k_embed_runs<<<N, D >= 256 ? 256 : 128, 0, s>>>(N, D, keys, pos_out, dx, demb);
    CU_LAUNCHED();
}

/* ---- Σ g² (double, fixed order): chunks of SUMSQ_CHUNK floats per block → partials → one block */
#define SUMSQ_CHUNK 65536
__global__ void k_sumsq_part(const float *g, size_t n, double *part) {
    __shared__ double sh[32];
    const size_t i0 = (size_t)blockIdx.x * SUMSQ_CHUNK, i1 = min(n, i0 + SUMSQ_CHUNK);
    double s = 0;
    for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += (double)g[i] * g[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void k_sum_doubles(const double *part, int nb, double *out) {
    __shared__ double sh[32];
    double s = 0;
    for (int i = threadIdx.x; i < nb; i += blockDim.x) s += part[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) *out = s;
}
void cu_sumsq(cu_state *st, cudaStream_t s, const float *g, size_t n, double *out) {
    const int nb = cdiv((long)n, SUMSQ_CHUNK);
    double *part = (double *)cu_scratch(st, CU_SCR_SUMSQ, (size_t)(nb ? nb : 1) * sizeof(double));
    k_sumsq_part<<<nb ? nb : 1, 256, 0, s>>>(g, n, part);
    CU_LAUNCHED();
    k_sum_doubles<<<1, 1024, 0, s>>>(part, nb ? nb : 1, out);
    CU_LAUNCHED();
}

__global__ void k_sum_floats(const float *x, int n, double *out) {
    __shared__ double sh[32];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) *out = s;
}
void cu_sum(cudaStream_t s, const float *x, int n, double *out) {
    k_sum_floats<<<1, 1024, 0, s>>>(x, n, out);
    CU_LAUNCHED();
}

/* ---- AdamW: the formula of engine.h, with the clip factor read from Σg² in device memory
 * (eng_clip_scale, written out again for the device) ------------------------------------------ */
__global__ void k_adamw(float *p, bf16 *mirror, const float *g, float *m, float *v, size_t n, float lr, float b1,
                        float b2, float eps, float wd, float grad_scale, float grad_clip, float bc1, float bc2,
                        const double *gsumsq) {
    const double norm = sqrt(*gsumsq) * grad_scale;
    float sc = grad_scale;
    if (grad_clip > 0 && norm > grad_clip) sc *= (float)(grad_clip / (norm + 1e-6));
    const float decay = 1.0f - lr * wd, lr_bc1 = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float gi = g[i] * sc;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        const float pi = p[i] * decay - lr_bc1 * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        p[i] = pi;
        if (mirror) mirror[i] = __float2bfloat16(pi);
    }
}
void cu_adamw(cudaStream_t s, float *p, bf16 *mirror, const float *g, float *m, float *v, size_t n,
              const eng_adamw_args *a, const double *gsumsq) {
    if (!n) return;
    const float bc1 = 1.0f - powf(a->beta1, (float)a->step), bc2 = 1.0f - powf(a->beta2, (float)a->step);
    k_adamw<<<grid_for(n, 256), 256, 0, s>>>(p, mirror, g, m, v, n, a->lr, a->beta1, a->beta2, a->eps,
                                            a->weight_decay, a->grad_scale, a->grad_clip, bc1, bc2, gsumsq);
    CU_LAUNCHED();
}

/* ---- softmax + cross-entropy of logits rows (one block per row) ---------------------------
 * lse = max + log Σ exp(l − max); loss = lse − l[target] (target < 0: 0);
 * dl = scale·(exp(l − lse) − [v = target]) (target < 0: 0) */
/* Per row of logits [R, V] (type L): loss = lse − l[t]; with dl, dl = scale·(softmax − onehot).
 * The row is read from memory once: each thread keeps its PER·VEC elements in registers (VEC
 * consecutive elements per 16-byte load where the row allows it) through the max, the sum of
 * exponentials and the write of dl. dl may be the logits buffer itself (in place). Rows longer
 * than 1024·PER·VEC use the three-pass kernel below. */
template <typename L, typename A, int PER, int VEC>
__global__ void __launch_bounds__(1024) k_softmax_xent_reg(int V, const L *logits, const int32_t *__restrict__ tgt,
                                                           float scale, float *__restrict__ loss, A *dl) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const L *l = logits + row * V;
    const int t = tgt[row];
    float v[PER][VEC];
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        const int j0 = (i * blockDim.x + threadIdx.x) * VEC;
        if (VEC > 1 && j0 < V) {
            const uint4 u = *(const uint4 *)(l + j0);
            L e[VEC];
            memcpy(e, &u, sizeof u);
#pragma unroll
            for (int c = 0; c < VEC; c++) v[i][c] = to_f(e[c]);
        } else {
#pragma unroll
            for (int c = 0; c < VEC; c++) v[i][c] = j0 + c < V ? to_f(l[j0 + c]) : -INFINITY;
        }
#pragma unroll
        for (int c = 0; c < VEC; c++) mx = fmaxf(mx, v[i][c]);
    }
    const float lt = t >= 0 ? to_f(l[t]) : 0.0f; /* read before dl may overwrite the row */
    mx = block_max(mx, sh);
    float se = 0;
#pragma unroll
    for (int i = 0; i < PER; i++)
#pragma unroll
        for (int c = 0; c < VEC; c++) {
            v[i][c] = expf(v[i][c] - mx); /* 0 for the padding (−inf) */
            se += v[i][c];
        }
    se = block_sum(se, sh);
    if (threadIdx.x == 0) loss[row] = t >= 0 ? mx + logf(se) - lt : 0.0f;
    if (!dl) return;
    A *d = dl + row * V;
    const float inv = 1.0f / se;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        const int j0 = (i * blockDim.x + threadIdx.x) * VEC;
        if (j0 >= V) continue;
        A o[VEC];
#pragma unroll
        for (int c = 0; c < VEC; c++)
            o[c] = from_f<A>(t >= 0 ? scale * (v[i][c] * inv - (j0 + c == t ? 1.0f : 0.0f)) : 0.0f);
        if (VEC > 1 && (VEC * sizeof(A)) % 8 == 0) {
#pragma unroll
            for (int c = 0; c < VEC; c += 8 / sizeof(A)) {
                uint2 u;
                memcpy(&u, o + c, sizeof u);
                *(uint2 *)(d + j0 + c) = u;
            }
        } else {
#pragma unroll
            for (int c = 0; c < VEC; c++)
                if (j0 + c < V) d[j0 + c] = o[c];
        }
    }
}

/* the fallback for rows too long to keep in registers: three passes over the row */
template <typename L, typename A>
__global__ void k_softmax_xent(int V, const L *logits, const int32_t *__restrict__ tgt, float scale,
                               float *__restrict__ loss, A *dl) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const L *l = logits + row * V;
    const int t = tgt[row];
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, to_f(l[j]));
    mx = block_max(mx, sh);
    float se = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) se += expf(to_f(l[j]) - mx);
    se = block_sum(se, sh);
    const float lse = mx + logf(se), lt = t >= 0 ? to_f(l[t]) : 0.0f;
    __syncthreads(); /* every thread has read l[t] before dl (maybe the same row) is written */
    if (threadIdx.x == 0) loss[row] = t >= 0 ? lse - lt : 0.0f;
    if (dl) {
        A *d = dl + row * V;
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            d[j] = from_f<A>(t >= 0 ? scale * (expf(to_f(l[j]) - lse) - (j == t ? 1.0f : 0.0f)) : 0.0f);
    }
}

template <typename L, typename A, int VEC>
static void softmax_xent_launch(cudaStream_t s, int R, int V, const L *logits, const int32_t *tgt, float scale,
                                float *loss, A *dl) {
    const int per = cdiv(cdiv(V, VEC), 1024);
    if (per <= 1) k_softmax_xent_reg<L, A, 1, VEC><<<R, 1024, 0, s>>>(V, logits, tgt, scale, loss, dl);
    else if (per <= 2) k_softmax_xent_reg<L, A, 2, VEC><<<R, 1024, 0, s>>>(V, logits, tgt, scale, loss, dl);
    else if (per <= 4) k_softmax_xent_reg<L, A, 4, VEC><<<R, 1024, 0, s>>>(V, logits, tgt, scale, loss, dl);
    else if (per <= 8 && VEC <= 4) k_softmax_xent_reg<L, A, 8, VEC><<<R, 1024, 0, s>>>(V, logits, tgt, scale, loss, dl);
    else k_softmax_xent<L, A><<<R, 1024, 0, s>>>(V, logits, tgt, scale, loss, dl);
}

template <typename L, typename A>
void cu_softmax_xent(cudaStream_t s, int R, int V, const L *logits, const int32_t *tgt, float scale, float *loss,
                     A *dl) {
    const int VEC = 16 / sizeof(L); /* 16-byte loads: rows must start 16-byte aligned */
    const int vec_ok = V % VEC == 0 && !((uintptr_t)logits & 15) && (!dl || !((uintptr_t)dl & 15));
    if (vec_ok) softmax_xent_launch<L, A, 16 / sizeof(L)>(s, R, V, logits, tgt, scale, loss, dl);
    else softmax_xent_launch<L, A, 1>(s, R, V, logits, tgt, scale, loss, dl);
    CU_LAUNCHED();
}

/* ---- instantiations ---- */
template void cu_rmsnorm_fwd<float>(cudaStream_t, int, int, const float *, const float *, float *, float *);
template void cu_rmsnorm_fwd<bf16>(cudaStream_t, int, int, const float *, const float *, bf16 *, float *);
template void cu_rope<float>(cudaStream_t, float *, int, int, int, int, const float *, int);
template void cu_rope<bf16>(cudaStream_t, bf16 *, int, int, int, int, const float *, int);
template void cu_swiglu_fwd<float>(cudaStream_t, size_t, const float *, const float *, float *);
template void cu_swiglu_fwd<bf16>(cudaStream_t, size_t, const bf16 *, const bf16 *, bf16 *);
template void cu_swiglu_bwd<float>(cudaStream_t, size_t, const float *, const float *, const float *, float *, float *);
template void cu_swiglu_bwd<bf16>(cudaStream_t, size_t, const bf16 *, const bf16 *, const bf16 *, bf16 *, bf16 *);
template void cu_softmax_xent<float, float>(cudaStream_t, int, int, const float *, const int32_t *, float, float *, float *);
template void cu_softmax_xent<float, bf16>(cudaStream_t, int, int, const float *, const int32_t *, float, float *, bf16 *);
template void cu_softmax_xent<bf16, float>(cudaStream_t, int, int, const bf16 *, const int32_t *, float, float *, float *);
template void cu_softmax_xent<bf16, bf16>(cudaStream_t, int, int, const bf16 *, const int32_t *, float, float *, bf16 *);
