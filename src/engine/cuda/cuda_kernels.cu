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

template <typename A>
void cu_rmsnorm_fwd(cudaStream_t s, int N, int D, const float *x, const float *w, A *out, float *rstd) {
    k_rmsnorm_fwd<A><<<N, D >= 512 ? 256 : 128, 0, s>>>(D, x, w, out, rstd);
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

void cu_rmsnorm_bwd(cu_state *st, cudaStream_t s, int N, int D, const float *x, const float *w, const float *rstd,
                    const float *g, const float *base, float *dx, float *dw, int acc) {
    k_rmsnorm_bwd_rows<<<N, D >= 512 ? 256 : 128, 0, s>>>(D, x, w, rstd, g, base, dx);
    CU_LAUNCHED();
    const int nc = cdiv(N, NORM_ROWS);
    float *part = (float *)cu_scratch(st, CU_SCR_NORM_DW, (size_t)nc * D * sizeof(float));
    k_rmsnorm_dw_part<<<dim3(cdiv(D, 128), nc), 128, 0, s>>>(N, D, x, rstd, g, part);
    CU_LAUNCHED();
    k_rmsnorm_dw_sum<<<cdiv(D, 128), 128, 0, s>>>(nc, D, part, dw, acc);
    CU_LAUNCHED();
}

/* ---- RoPE: rotate pairs (2i, 2i+1) of every head by ±angle(pos = n mod T), in place ---- */
template <typename A>
__global__ void k_rope(A *x, int N, int T, int heads, int HS, const float *__restrict__ rope, float sgn) {
    const int half = HS / 2;
    const size_t pairs = (size_t)N * heads * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < pairs; idx += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half);
        const size_t nh = idx / half; /* n·heads + h */
        const int n = (int)(nh / heads);
        const float *rp = rope + ((size_t)(n % T) * half + i) * 2;
        const float c = rp[0], sn = sgn * rp[1];
        A *v = x + nh * HS + 2 * i;
        const float a = to_f(v[0]), b = to_f(v[1]);
        v[0] = from_f<A>(a * c - b * sn);
        v[1] = from_f<A>(a * sn + b * c);
    }
}

template <typename A> void cu_rope(cudaStream_t s, A *x, int N, int T, int heads, int HS, const float *rope, int inverse) {
    const size_t pairs = (size_t)N * heads * (HS / 2);
    k_rope<A><<<grid_for(pairs, 256), 256, 0, s>>>(x, N, T, heads, HS, rope, inverse ? -1.0f : 1.0f);
    CU_LAUNCHED();
}

/* ---- SwiGLU: gate = silu(h1)⊙h3, silu(a) = a·σ(a) ----------------------------------------
 * backward: dh1 = dgate⊙h3⊙σ(a)(1 + a(1−σ(a))), dh3 = dgate⊙silu(a) */
template <typename A> __global__ void k_swiglu_fwd(size_t n, const A *h1, const A *h3, A *gate) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float a = to_f(h1[i]), sg = 1.0f / (1.0f + expf(-a));
        gate[i] = from_f<A>(a * sg * to_f(h3[i]));
    }
}
template <typename A>
__global__ void k_swiglu_bwd(size_t n, const float *dgate, const A *h1, const A *h3, A *dh1, A *dh3) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float a = to_f(h1[i]), b = to_f(h3[i]), g = dgate[i];
        const float sg = 1.0f / (1.0f + expf(-a));
        dh1[i] = from_f<A>(g * b * sg * (1.0f + a * (1.0f - sg)));
        dh3[i] = from_f<A>(g * a * sg);
    }
}
template <typename A> void cu_swiglu_fwd(cudaStream_t s, size_t n, const A *h1, const A *h3, A *gate) {
    k_swiglu_fwd<A><<<grid_for(n, 256), 256, 0, s>>>(n, h1, h3, gate);
    CU_LAUNCHED();
}
template <typename A>
void cu_swiglu_bwd(cudaStream_t s, size_t n, const float *dgate, const A *h1, const A *h3, A *dh1, A *dh3) {
    k_swiglu_bwd<A><<<grid_for(n, 256), 256, 0, s>>>(n, dgate, h1, h3, dh1, dh3);
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
template <typename A>
__global__ void k_softmax_xent(int V, const float *__restrict__ logits, const int32_t *__restrict__ tgt, float scale,
                               float *__restrict__ loss, A *__restrict__ dl) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *l = logits + row * V;
    const int t = tgt[row];
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, l[j]);
    mx = block_max(mx, sh);
    float se = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) se += expf(l[j] - mx);
    se = block_sum(se, sh);
    const float lse = mx + logf(se);
    if (threadIdx.x == 0) loss[row] = t >= 0 ? lse - l[t] : 0.0f;
    if (dl) {
        A *d = dl + row * V;
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            d[j] = from_f<A>(t >= 0 ? scale * (expf(l[j] - lse) - (j == t ? 1.0f : 0.0f)) : 0.0f);
    }
}
template <typename A>
void cu_softmax_xent(cudaStream_t s, int R, int V, const float *logits, const int32_t *tgt, float scale, float *loss,
                     A *dl) {
    k_softmax_xent<A><<<R, 512, 0, s>>>(V, logits, tgt, scale, loss, dl);
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
template void cu_swiglu_bwd<bf16>(cudaStream_t, size_t, const float *, const bf16 *, const bf16 *, bf16 *, bf16 *);
template void cu_softmax_xent<float>(cudaStream_t, int, int, const float *, const int32_t *, float, float *, float *);
template void cu_softmax_xent<bf16>(cudaStream_t, int, int, const float *, const int32_t *, float, float *, bf16 *);
