/* fable cuda engine — the one-token-at-a-time decoder with a KV cache, on the GPU.
 *
 * It follows llama2.c run.c's forward() operation for operation in fp32, with every sum in
 * run.c's sequential order (fable's host decoder, src/model/infer.c, sums its dot products in
 * SIMD lanes instead; the greedy text is the same): each output
 * of a matrix-vector product is one thread's loop over the input; RMSNorm's Σx² and the
 * softmax run in one thread; this file is compiled with --fmad=false, so a·b + c is rounded
 * twice as on the host. The greedy text is then the host's, except where expf, whose last bit
 * may differ between the GPU and glibc, decides a near tie. The master weights (fp32) are read
 * in every precision. */
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_internal.cuh"
#include "engine/cuda/cuda_layers.cuh"

extern "C" {
#include "fable/util.h"
}

typedef struct {
    model_config c;
    model_params w;     /* views of the parameters (device) */
    int max_T;
    float *x, *xb, *xb2, *hb, *hb2, *q, *att, *logits, *kcache, *vcache, *rope;
} cu_decoder;

/* o = w ⊙ (x · 1/sqrt(mean(x²) + eps)); Σx² sequential (thread 0) */
__global__ void k_dec_rmsnorm(float *o, const float *x, const float *w, int n) {
    __shared__ float ss;
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int j = 0; j < n; j++) s += x[j] * x[j];
        s /= n;
        s += MODEL_RMS_EPS;
        ss = 1.0f / sqrtf(s);
    }
    __syncthreads();
    for (int j = threadIdx.x; j < n; j += blockDim.x) o[j] = w[j] * (ss * x[j]);
}

/* xout[i] = Σ_j W[i,j]·x[j], j in order; one thread per row */
__global__ void k_dec_matvec(float *xout, const float *x, const float *w, int n, int d) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    const float *wr = w + (size_t)i * n;
    float val = 0.0f;
    for (int j = 0; j < n; j++) val += wr[j] * x[j];
    xout[i] = val;
}

/* RoPE on q (all D) and k (the first KVD) at position pos, as run.c */
__global__ void k_dec_rope(float *q, float *k, const float *rp, int D, int KVD, int HS) {
    const int i = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= D) return;
    const int j = (i % HS) / 2;
    const float fcr = rp[2 * j], fci = rp[2 * j + 1];
    const int rotn = i < KVD ? 2 : 1;
    for (int v = 0; v < rotn; v++) {
        float *vec = v == 0 ? q : k;
        const float v0 = vec[i], v1 = vec[i + 1];
        vec[i] = v0 * fcr - v1 * fci;
        vec[i + 1] = v0 * fci + v1 * fcr;
    }
}

/* one block per head: scores, softmax (thread 0, in order), then xb = Σ_t att[t]·v[t] */
__global__ void k_dec_attn(float *xb, float *att_all, const float *q, const float *kc, const float *vc, int pos,
                           int HS, int KVD, int group, int T) {
    const int h = blockIdx.x;
    const float *qh = q + h * HS;
    float *att = att_all + (size_t)h * T;
    const size_t koff = (size_t)(h / group) * HS;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        const float *k = kc + koff + (size_t)t * KVD;
        float score = 0.0f;
        for (int i = 0; i < HS; i++) score += qh[i] * k[i];
        att[t] = score / sqrtf((float)HS);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float mx = att[0];
        for (int t = 1; t <= pos; t++) mx = att[t] > mx ? att[t] : mx;
        float sum = 0.0f;
        for (int t = 0; t <= pos; t++) {
            att[t] = expf(att[t] - mx);
            sum += att[t];
        }
        for (int t = 0; t <= pos; t++) att[t] /= sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < HS; i += blockDim.x) {
        float acc = 0.0f;
        for (int t = 0; t <= pos; t++) acc += att[t] * vc[koff + (size_t)t * KVD + i];
        xb[h * HS + i] = acc;
    }
}

__global__ void k_dec_add(float *x, const float *y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

__global__ void k_dec_swiglu(float *hb, const float *hb2, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float val = hb[i];
    val *= (1.0f / (1.0f + expf(-val)));
    hb[i] = val * hb2[i];
}

static void matvec(cudaStream_t s, float *out, const float *x, const float *w, int n, int d) {
    k_dec_matvec<<<cdiv(d, 128), 128, 0, s>>>(out, x, w, n, d);
    CU_LAUNCHED();
}

static void *dec_open(eng *e, const model_config *c, const float *params, int max_T) {
    cu_state *st = cu_st(e);
    if (max_T <= 0 || max_T > c->seq_len) max_T = c->seq_len;
    cu_decoder *dd = (cu_decoder *)calloc(1, sizeof *dd);
    if (!dd) {
        fb_err("out of memory");
        return NULL;
    }
    dd->c = *c;
    dd->max_T = max_T;
    model_params_view(c, (float *)params, &dd->w);
    const size_t D = c->dim, F = c->hidden_dim, L = c->n_layers, KVD = model_kv_dim(c), HS = model_head_size(c);
    float **bufs[] = {&dd->x, &dd->xb, &dd->xb2, &dd->hb, &dd->hb2, &dd->q, &dd->att, &dd->logits,
                      &dd->kcache, &dd->vcache, &dd->rope};
    const size_t sizes[] = {D, D, D, F, F, D, (size_t)c->n_heads * max_T, (size_t)c->vocab_size,
                            L * max_T * KVD, L * max_T * KVD, (size_t)max_T * HS};
    for (int i = 0; i < 11; i++)
        if (cudaMalloc(bufs[i], sizes[i] * sizeof(float)) != cudaSuccess) {
            cudaGetLastError();
            for (int j = 0; j < i; j++) cudaFree(*bufs[j]);
            free(dd);
            fb_err("out of GPU memory for the decoder's KV cache (seq %d)", max_T);
            return NULL;
        }
    float *rope = (float *)malloc((size_t)max_T * HS * sizeof(float));
    if (!rope) fb_die("out of memory");
    model_rope_table(rope, max_T, (int)HS); /* the host's table, bit for bit */
    CU_CHECK(cudaMemcpyAsync(dd->rope, rope, (size_t)max_T * HS * sizeof(float), cudaMemcpyHostToDevice, st->main));
    CU_CHECK(cudaStreamSynchronize(st->main));
    free(rope);
    return dd;
}

static void dec_step(eng *e, void *h, int token, int pos, float *logits) {
    cu_state *st = cu_st(e);
    cu_decoder *dd = (cu_decoder *)h;
    const model_config *c = &dd->c;
    const int D = c->dim, F = c->hidden_dim, HS = model_head_size(c), KVD = model_kv_dim(c), T = dd->max_T;
    const int NH = c->n_heads, group = c->n_heads / c->n_kv_heads;
    cudaStream_t s = st->main;
    CU_CHECK(cudaMemcpyAsync(dd->x, dd->w.tok_emb + (size_t)token * D, D * sizeof(float), cudaMemcpyDeviceToDevice, s));
    for (int l = 0; l < c->n_layers; l++) {
        model_layer lw;
        model_layer_view(c, &dd->w, l, &lw);
        k_dec_rmsnorm<<<1, 256, 0, s>>>(dd->xb, dd->x, lw.rms_att, D);
        float *kc = dd->kcache + ((size_t)l * T + pos) * KVD, *vc = dd->vcache + ((size_t)l * T + pos) * KVD;
        matvec(s, dd->q, dd->xb, lw.wq, D, D);
        matvec(s, kc, dd->xb, lw.wk, D, KVD);
        matvec(s, vc, dd->xb, lw.wv, D, KVD);
        k_dec_rope<<<cdiv(D / 2, 128), 128, 0, s>>>(dd->q, kc, dd->rope + (size_t)pos * HS, D, KVD, HS);
        k_dec_attn<<<NH, 128, 0, s>>>(dd->xb, dd->att, dd->q, dd->kcache + (size_t)l * T * KVD,
                                      dd->vcache + (size_t)l * T * KVD, pos, HS, KVD, group, T);
        matvec(s, dd->xb2, dd->xb, lw.wo, D, D);
        k_dec_add<<<cdiv(D, 256), 256, 0, s>>>(dd->x, dd->xb2, D);
        k_dec_rmsnorm<<<1, 256, 0, s>>>(dd->xb, dd->x, lw.rms_ffn, D);
        matvec(s, dd->hb, dd->xb, lw.w1, D, F);
        matvec(s, dd->hb2, dd->xb, lw.w3, D, F);
        k_dec_swiglu<<<cdiv(F, 256), 256, 0, s>>>(dd->hb, dd->hb2, F);
        matvec(s, dd->xb, dd->hb, lw.w2, F, D);
        k_dec_add<<<cdiv(D, 256), 256, 0, s>>>(dd->x, dd->xb, D);
    }
    k_dec_rmsnorm<<<1, 256, 0, s>>>(dd->x, dd->x, dd->w.rms_final, D);
    matvec(s, dd->logits, dd->x, dd->w.wcls, D, c->vocab_size);
    CU_LAUNCHED();
    CU_CHECK(cudaMemcpyAsync(logits, dd->logits, (size_t)c->vocab_size * sizeof(float), cudaMemcpyDeviceToHost, s));
    CU_CHECK(cudaStreamSynchronize(s));
}

static void dec_close(eng *e, void *h) {
    cu_decoder *dd = (cu_decoder *)h;
    if (!dd) return;
    CU_CHECK(cudaStreamSynchronize(cu_st(e)->main));
    float *bufs[] = {dd->x, dd->xb, dd->xb2, dd->hb, dd->hb2, dd->q, dd->att, dd->logits, dd->kcache, dd->vcache, dd->rope};
    for (int i = 0; i < 11; i++) cudaFree(bufs[i]);
    free(dd);
}

void cu_infer_install(eng *e) {
    e->infer_open = dec_open;
    e->infer_step = dec_step;
    e->infer_close = dec_close;
}
