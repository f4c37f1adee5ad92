/* fable — KV-cache inference and sampling: llama2.c run.c's forward and sampler, operation
 * for operation, except that every dot product is summed in SIMD lanes (dot() below) where
 * run.c sums in order, and that the KV cache keeps positions innermost. run.c's in-order sum
 * cannot be vectorised (-O3 keeps fp32 additions in order), so its matrix-vector products
 * run at scalar speed; fable's run at the memory speed (bench/sample_vs_runc.sh). With the
 * positions innermost, a head's attention scores and weighted sum of values run in SIMD
 * lanes over positions, which matters when heads are narrow (stories260K: 8 dimensions per
 * head, where run.c's per-position dot products of 8 were 2/3 of the time). Greedy text
 * stays run.c's: a different summation order moves a logit by ~1e-6 relative, far inside the
 * gap between the first and second choice (tests/cli/sample_stories260K.sh compares with
 * run.c's own output). */
#include "fable/infer.h"

#include <ctype.h>
#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>


int infer_init(infer_state *s, const model *m, int max_T) {
    memset(s, 0, sizeof *s);
    const model_config *c = &m->cfg;
    if (max_T <= 0 || max_T > c->seq_len) max_T = c->seq_len;
    const size_t D = c->dim, F = c->hidden_dim, L = c->n_layers, KVD = model_kv_dim(c);
    s->m = m;
    s->max_T = max_T;
    s->x = fb_alloc(D * sizeof(float));
    s->xb = fb_alloc(D * sizeof(float));
    s->xb2 = fb_alloc(D * sizeof(float));
    s->hb = fb_alloc(F * sizeof(float));
    s->hb2 = fb_alloc(F * sizeof(float));
    s->q = fb_alloc(D * sizeof(float));
    s->k = fb_alloc(KVD * sizeof(float));
    s->v = fb_alloc(KVD * sizeof(float));
    s->att = fb_alloc((size_t)c->n_heads * max_T * sizeof(float));
    s->logits = fb_alloc((size_t)c->vocab_size * sizeof(float));
    s->kcache = fb_alloc(L * max_T * KVD * sizeof(float));
    s->vcache = fb_alloc(L * max_T * KVD * sizeof(float));
    s->rope = fb_alloc((size_t)max_T * model_head_size(c) * sizeof(float));
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->k || !s->v || !s->att || !s->logits ||
        !s->kcache || !s->vcache || !s->rope) {
        infer_free(s);
        return fb_err("out of memory for inference state (seq %d)", max_T);
    }
    model_rope_table(s->rope, max_T, model_head_size(c));
    return 0;
}

void infer_free(infer_state *s) {
    float *p[] = {s->x, s->xb, s->xb2, s->hb, s->hb2, s->q, s->k, s->v, s->att, s->logits, s->kcache, s->vcache,
                  s->rope};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) fb_free(p[i]);
    memset(s, 0, sizeof *s);
}

/* o = x·w/sqrt(mean(x²)+eps), sequential fp32 sum as run.c */
static void rmsnorm(float *o, const float *x, const float *w, int n) {
    float ss = 0.0f;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss /= n;
    ss += MODEL_RMS_EPS;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

/* a·b over n floats, summed in SIMD lanes, then the lanes in a fixed order (so results do not
 * depend on the thread count). With AVX-512: two accumulators of 16 lanes, the tail by a
 * masked load, the lanes summed as a tree (_mm512_reduce_add_ps): the compiler's own
 * reduction of an `omp simd` loop adds the 16 lanes one after another (16 dependent adds),
 * which cost more than the 4 FMAs of a 64-long product (stories260K's rows). */
#if defined(__AVX512F__)
static inline float dot(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int j = 0;
    for (; j + 32 <= n; j += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
    }
    if (j + 16 <= n) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
        j += 16;
    }
    if (j < n) {
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#else
static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) s += a[j] * b[j];
    return s;
}
#endif

/* Below this many multiply-adds a product runs on one thread: waking the team costs more. */
#define MATVEC_PAR_MIN 65536

/* xout[d] = W[d,n]·x[n]; rows in parallel, each row's dot product on one thread. */
static void matvec(float *xout, const float *x, const float *w, int n, int d) {
#pragma omp parallel for schedule(static) if ((long)d * n > MATVEC_PAR_MIN)
    for (int i = 0; i < d; i++) xout[i] = dot(w + (size_t)i * n, x, n);
}

static void softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

float *infer_forward(infer_state *s, int token, int pos) {
    const model_config *c = &s->m->cfg;
    const model_params *w = &s->m->w;
    const int D = c->dim, F = c->hidden_dim, HS = model_head_size(c), KVD = model_kv_dim(c);
    const int NH = c->n_heads, group = c->n_heads / c->n_kv_heads, T = s->max_T;
    float *x = s->x;
    memcpy(x, w->tok_emb + (size_t)token * D, D * sizeof(float));
    const float *rp = s->rope + (size_t)pos * HS;
    for (int l = 0; l < c->n_layers; l++) {
        model_layer lw;
        model_layer_view(c, w, l, &lw);
        rmsnorm(s->xb, x, lw.rms_att, D);
        matvec(s->q, s->xb, lw.wq, D, D);
        matvec(s->k, s->xb, lw.wk, D, KVD);
        matvec(s->v, s->xb, lw.wv, D, KVD);
        /* RoPE: rotate pairs (2i, 2i+1) of every head of q and k */
        for (int i = 0; i < D; i += 2) {
            const int j = (i % HS) / 2;
            const float fcr = rp[2 * j], fci = rp[2 * j + 1];
            const int rotn = i < KVD ? 2 : 1;
            for (int v = 0; v < rotn; v++) {
                float *vec = v == 0 ? s->q : s->k;
                float v0 = vec[i], v1 = vec[i + 1];
                vec[i] = v0 * fcr - v1 * fci;
                vec[i + 1] = v0 * fci + v1 * fcr;
            }
        }
        /* this position's key and value into the caches ([L, KVH, HS, T]: column pos) */
        float *kl = s->kcache + (size_t)l * KVD * T, *vl = s->vcache + (size_t)l * KVD * T;
        for (int i = 0; i < KVD; i++) {
            kl[(size_t)i * T + pos] = s->k[i];
            vl[(size_t)i * T + pos] = s->v[i];
        }
        /* causal attention over positions 0..pos, per head:
         *   att[t] = Σ_i q[i]·K[i][t] / √HS (summed over i in order, as run.c), softmax,
         *   xb[i] = Σ_t att[t]·V[i][t] (in SIMD lanes over t) */
        const int npos = pos + 1;
        const float scale = sqrtf((float)HS);
#pragma omp parallel for schedule(static) if (NH * npos * HS > 65536)
        for (int h = 0; h < NH; h++) {
            const float *q = s->q + h * HS;
            float *restrict att = s->att + (size_t)h * T;
            const float *K = kl + (size_t)(h / group) * HS * T, *V = vl + (size_t)(h / group) * HS * T;
            for (int t = 0; t < npos; t++) att[t] = q[0] * K[t];
            for (int i = 1; i < HS; i++) {
                const float qi = q[i], *restrict Ki = K + (size_t)i * T;
#pragma omp simd
                for (int t = 0; t < npos; t++) att[t] += qi * Ki[t];
            }
#pragma omp simd
            for (int t = 0; t < npos; t++) att[t] /= scale;
            softmax(att, npos);
            float *xb = s->xb + h * HS;
            for (int i = 0; i < HS; i++) xb[i] = dot(att, V + (size_t)i * T, npos);
        }
        matvec(s->xb2, s->xb, lw.wo, D, D);
        for (int i = 0; i < D; i++) x[i] += s->xb2[i];
        /* FFN: W2·(silu(W1·xn) ⊙ W3·xn) */
        rmsnorm(s->xb, x, lw.rms_ffn, D);
        matvec(s->hb, s->xb, lw.w1, D, F);
        matvec(s->hb2, s->xb, lw.w3, D, F);
        for (int i = 0; i < F; i++) {
            float val = s->hb[i];
            val *= 1.0f / (1.0f + expf(-val));
            s->hb[i] = val * s->hb2[i];
        }
        matvec(s->xb, s->hb, lw.w2, F, D);
        for (int i = 0; i < D; i++) x[i] += s->xb[i];
    }
    rmsnorm(x, x, w->rms_final, D);
    matvec(s->logits, x, w->wcls, D, c->vocab_size);
    return s->logits;
}

/* ---- sampler ----------------------------------------------------------------------- */
int sampler_init(sampler *s, int vocab, float temperature, float topp, int topk, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (temperature < 0) return fb_err("temperature %g must be >= 0", temperature);
    s->temperature = temperature;
    s->topp = topp;
    s->topk = topk;
    s->vocab = vocab;
    fb_rng_seed(&s->rng, seed);
    s->cand = calloc((size_t)vocab, sizeof *s->cand);
    if (!s->cand) return fb_err("out of memory for the sampler");
    return 0;
}

void sampler_free(sampler *s) { free(s->cand); s->cand = NULL; }

static int argmax(const float *p, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (p[i] > p[best]) best = i;
    return best;
}

static int cmp_desc(const void *a, const void *b) {
    float pa = *(const float *)a, pb = *(const float *)b;
    return pa > pb ? -1 : pa < pb ? 1 : 0;
}

int sampler_sample(sampler *s, float *logits) {
    const int n = s->vocab;
    if (s->temperature == 0.0f) return argmax(logits, n);
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    softmax(logits, n);
    const float coin = fb_rng_f32(&s->rng);
    int use_topp = s->topp > 0 && s->topp < 1;
    if (s->topk > 0 && s->topk < n) {
        /* top-k: keep the k most probable, renormalise, then continue with top-p / multinomial */
        for (int i = 0; i < n; i++) { s->cand[i].prob = logits[i]; s->cand[i].index = i; }
        qsort(s->cand, n, sizeof *s->cand, cmp_desc);
        float kept = 0;
        for (int i = 0; i < s->topk; i++) kept += s->cand[i].prob;
        float thr = s->cand[s->topk - 1].prob;
        for (int i = 0; i < n; i++) logits[i] = logits[i] >= thr ? logits[i] / kept : 0.0f;
    }
    if (!use_topp) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (coin < cdf) return i;
        }
        return n - 1;
    }
    /* run.c's top-p: drop tokens below (1−p)/(n−1) (they cannot be in the nucleus), sort the
     * rest descending, cut where the cumulative probability first exceeds p, sample inside. */
    const float cutoff = (1.0f - s->topp) / (n - 1);
    int n0 = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff) { s->cand[n0].index = i; s->cand[n0].prob = logits[i]; n0++; }
    qsort(s->cand, n0, sizeof *s->cand, cmp_desc);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += s->cand[i].prob;
        if (cum > s->topp) { last = i; break; }
    }
    const float r = coin * cum;
    float cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += s->cand[i].prob;
        if (r < cdf) return s->cand[i].index;
    }
    return s->cand[last].index;
}

/* ---- generation ------------------------------------------------------------------- */
long infer_generate(infer_state *s, const tokenizer *t, sampler *smp, const char *prompt, int steps,
                    FILE *out, double *tok_per_s) {
    const model_config *c = &s->m->cfg;
    if (tok_vocab_size(t) != c->vocab_size)
        return fb_err("tokenizer has %d tokens but the model's vocabulary is %d: they do not belong together",
                      tok_vocab_size(t), c->vocab_size);
    if (steps <= 0 || steps > s->max_T) steps = s->max_T;
    if (!prompt) prompt = "";
    size_t plen = strlen(prompt);
    size_t cap = plen + 3;
    int32_t *ids = malloc(cap * sizeof(int32_t));
    if (!ids) return fb_err("out of memory");
    long np = tok_encode(t, prompt, plen, 1, 0, ids, cap);
    if (np < 0) { free(ids); return -1; }
    if ((size_t)np > cap) {
        free(ids);
        return fb_err("prompt encodes to %ld tokens, more than expected", np);
    }
    const int bos = tok_bos_id(t);
    int token = ids[0], pos = 0;
    long generated = 0;
    double t0 = 0;
    while (pos < steps) {
        float *logits = s->fwd ? s->fwd(s->fwd_ctx, token, pos) : infer_forward(s, token, pos);
        int next = pos < np - 1 ? ids[pos + 1] : sampler_sample(smp, logits);
        pos++;
        if (next == bos) break;
        size_t len;
        const char *piece = tok_decode_piece(t, token, next, &len);
        /* run.c's safe_printf: skip lone bytes that are neither printable nor whitespace */
        if (piece && len > 0 &&
            !(len == 1 && !(isprint((unsigned char)piece[0]) || isspace((unsigned char)piece[0]))))
            fwrite(piece, 1, len, out);
        fflush(out);
        token = next;
        generated++;
        if (t0 == 0) t0 = fb_now(); /* as run.c: time from after the first step */
    }
    fputc('\n', out);
    fflush(out);
    if (tok_per_s) *tok_per_s = pos > 1 ? (pos - 1) / (fb_now() - t0) : 0;
    free(ids);
    return generated;
}
