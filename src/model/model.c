/* fable — model configuration, presets, parameter layout and initialisation. */
#include "fable/model.h"

#include <math.h>
#include <string.h>

#include "fable/util.h"

/* ---- presets (SPEC §2) ------------------------------------------------------------ */
typedef struct {
    const char *name;
    model_config c;
} preset;

static const preset presets[] = {
    /*                 D    F     L   NH  NKV  V      T     tied */
    {"stories260K", {64, 172, 5, 8, 4, 512, 512, 1}},
    {"stories15M", {288, 768, 6, 6, 6, 32000, 256, 1}},
    {"stories42M", {512, 1376, 8, 8, 8, 32000, 1024, 1}},
    {"stories110M", {768, 2048, 12, 12, 12, 32000, 1024, 1}},
};

const char *const model_preset_names[] = {"stories260K", "stories15M", "stories42M", "stories110M", NULL};

int model_preset(const char *name, model_config *c) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) {
            *c = presets[i].c;
            return 0;
        }
    return fb_err("unknown preset '%s' (known: stories260K, stories15M, stories42M, stories110M)", name);
}

int model_config_validate(const model_config *c) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->vocab_size <= 0 || c->seq_len <= 0)
        return fb_err("invalid model config: every size must be positive (dim %d, hidden %d, layers %d, "
                      "heads %d, kv_heads %d, vocab %d, seq_len %d)",
                      c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                      c->seq_len);
    if (c->dim % c->n_heads != 0)
        return fb_err("invalid model config: dim %d is not a multiple of n_heads %d", c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads != 0)
        return fb_err("invalid model config: n_heads %d is not a multiple of n_kv_heads %d", c->n_heads,
                      c->n_kv_heads);
    if ((c->dim / c->n_heads) % 2 != 0)
        return fb_err("invalid model config: head size %d must be even (RoPE rotates pairs)",
                      c->dim / c->n_heads);
    if (c->vocab_size > 65536)
        return fb_err("invalid model config: vocab %d exceeds 65536 (token shards hold uint16 ids)",
                      c->vocab_size);
    if (c->dim > 65536 || c->hidden_dim > 1 << 20 || c->n_layers > 1024 || c->seq_len > 1 << 20)
        return fb_err("invalid model config: implausibly large (dim %d, hidden %d, layers %d, seq_len %d)",
                      c->dim, c->hidden_dim, c->n_layers, c->seq_len);
    return 0;
}

/* ---- layout -------------------------------------------------------------------------- */
int model_tensors(const model_config *c, model_tensor t[MODEL_MAX_TENSORS]) {
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    const int KVD = model_kv_dim(c);
    /* name, rows, cols, layers, is_matrix — in llama2.c checkpoint order */
    const struct { const char *n; int r, cl, l, m; } spec[] = {
        {"tok_emb", V, D, 1, 1},   {"rms_att", 1, D, L, 0}, {"wq", D, D, L, 1},
        {"wk", KVD, D, L, 1},      {"wv", KVD, D, L, 1},    {"wo", D, D, L, 1},
        {"rms_ffn", 1, D, L, 0},   {"w1", F, D, L, 1},      {"w2", D, F, L, 1},
        {"w3", F, D, L, 1},        {"rms_final", 1, D, 1, 0}, {"wcls", V, D, 1, 1},
    };
    int n = c->tied ? 11 : 12;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        t[i].name = spec[i].n;
        t[i].rows = spec[i].r;
        t[i].cols = spec[i].cl;
        t[i].layers = spec[i].l;
        t[i].is_matrix = spec[i].m;
        t[i].numel = (size_t)spec[i].r * spec[i].cl * spec[i].l;
        t[i].offset = off;
        off += t[i].numel;
    }
    return n;
}

size_t model_num_params(const model_config *c) {
    model_tensor t[MODEL_MAX_TENSORS];
    int n = model_tensors(c, t);
    return t[n - 1].offset + t[n - 1].numel;
}

size_t model_num_matmul_params(const model_config *c) {
    model_tensor t[MODEL_MAX_TENSORS];
    int n = model_tensors(c, t);
    size_t s = 0;
    for (int i = 0; i < n; i++)
        if (t[i].is_matrix) s += t[i].numel;
    /* The tied classifier is a matmul too (the embedding lookup is not, but llama2.c's
     * 6N convention counts all parameters; we count the classifier once either way). */
    return s;
}

double model_flops_per_token(const model_config *c, int T) {
    return 6.0 * (double)model_num_matmul_params(c) + 12.0 * c->n_layers * c->dim * (double)T;
}

void model_params_view(const model_config *c, float *base, model_params *p) {
    model_tensor t[MODEL_MAX_TENSORS];
    int n = model_tensors(c, t);
    float **slot[] = {&p->tok_emb, &p->rms_att, &p->wq, &p->wk, &p->wv, &p->wo,
                      &p->rms_ffn, &p->w1, &p->w2, &p->w3, &p->rms_final, &p->wcls};
    for (int i = 0; i < n; i++) *slot[i] = base + t[i].offset;
    if (c->tied) p->wcls = p->tok_emb;
}

/* splitmix64's finaliser: a well-mixed 64-bit seed from any input */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Matrices: N(0, std²) in blocks of INIT_BLOCK elements, each block from its own xorshift
 * stream seeded by (seed, tensor, block), both Box–Muller outputs used. The blocks fill in
 * parallel, and the weights depend only on the seed, not on the thread count (stories110M:
 * 3.4 s from one stream, 1.2 s now on 2 threads; bench/RESULTS.md). */
#define INIT_BLOCK 65536
void model_init_weights(const model_config *c, float *base, uint64_t seed) {
    model_tensor t[MODEL_MAX_TENSORS];
    int n = model_tensors(c, t);
    const double std_resid = 0.02 / sqrt(2.0 * c->n_layers);  /* w3 and wo, as llama2.c */
    for (int i = 0; i < n; i++) {
        float *p = base + t[i].offset;
        const size_t numel = t[i].numel;
        if (!t[i].is_matrix) {
            for (size_t k = 0; k < numel; k++) p[k] = 1.0f;
            continue;
        }
        const double std = (!strcmp(t[i].name, "w3") || !strcmp(t[i].name, "wo")) ? std_resid : 0.02;
        const long nb = (long)((numel + INIT_BLOCK - 1) / INIT_BLOCK);
#pragma omp parallel for schedule(static)
        for (long b = 0; b < nb; b++) {
            fb_rng r;
            fb_rng_seed(&r, mix64(mix64(seed ^ 0x5DEECE66DULL) + ((uint64_t)i << 40) + (uint64_t)b));
            const size_t k0 = (size_t)b * INIT_BLOCK, k1 = k0 + INIT_BLOCK < numel ? k0 + INIT_BLOCK : numel;
            for (size_t k = k0; k < k1; k += 2) {
                double z0, z1;
                fb_rng_normal2(&r, &z0, &z1);
                p[k] = (float)(std * z0);
                if (k + 1 < k1) p[k + 1] = (float)(std * z1);
            }
        }
    }
}

int model_create(model *m, const model_config *c) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(c)) return -1;
    m->cfg = *c;
    m->data = fb_alloc(model_num_params(c) * sizeof(float));
    if (!m->data) return -1;
    model_params_view(c, m->data, &m->w);
    return 0;
}

void model_free(model *m) {
    fb_free(m->data);
    memset(m, 0, sizeof *m);
}

/* ---- layer views and the RoPE table ------------------------------------------------- */
void model_layer_view(const model_config *c, const model_params *p, int l, model_layer *o) {
    const size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, KVD = (size_t)model_kv_dim(c);
    o->rms_att = p->rms_att + l * D;
    o->wq = p->wq + l * D * D;
    o->wk = p->wk + l * KVD * D;
    o->wv = p->wv + l * KVD * D;
    o->wo = p->wo + l * D * D;
    o->rms_ffn = p->rms_ffn + l * D;
    o->w1 = p->w1 + l * F * D;
    o->w2 = p->w2 + l * D * F;
    o->w3 = p->w3 + l * F * D;
}

/* angle(pos, i) = pos / 10000^(2i/HS), in fp32 with powf/cosf/sinf exactly as run.c. */
void model_rope_table(float *rope, int T, int HS) {
    const int half = HS / 2;
    for (int pos = 0; pos < T; pos++)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(MODEL_ROPE_THETA, (float)(2 * i) / (float)HS);
            float val = (float)pos * freq;
            rope[((size_t)pos * half + i) * 2 + 0] = cosf(val);
            rope[((size_t)pos * half + i) * 2 + 1] = sinf(val);
        }
}
