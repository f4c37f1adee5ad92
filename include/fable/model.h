/* fable — the Llama-2 model: configuration, presets, and the parameter layout.
 *
 * Architecture (llama2.c model.py / run.c, matched exactly):
 *   x = E[tokens]                                                   E: [V, D]
 *   for each layer l:
 *     x += Wo · attn(RoPE(Wq·n(x)), RoPE(Wk·n(x)), Wv·n(x))         n = RMSNorm(rms_att[l])
 *     x += W2 · (silu(W1·n(x)) ⊙ W3·n(x))                           n = RMSNorm(rms_ffn[l])
 *   logits = Wcls · RMSNorm(rms_final)(x)                           Wcls = E when tied
 *   RMSNorm(w)(x) = x · w / sqrt(mean(x²) + 1e-5)
 *
 * Parameters live in ONE allocation, in llama2.c's checkpoint order, so that the
 * optimizer, checksums, and file I/O are flat loops; model_params holds named views.
 * Gradients and the Adam moments use the same layout (model_params_view on another base).
 */
#ifndef FABLE_MODEL_H
#define FABLE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int dim;         /* D: model width */
    int hidden_dim;  /* F: FFN width */
    int n_layers;    /* L */
    int n_heads;     /* NH: query heads; head size HS = D / NH */
    int n_kv_heads;  /* NKV: key/value heads (GQA: query head h uses kv head h / (NH/NKV)) */
    int vocab_size;  /* V */
    int seq_len;     /* T max (RoPE table length; training windows are <= this) */
    int tied;        /* 1: classifier shares the token embedding; 0: separate Wcls */
} model_config;

#define MODEL_RMS_EPS 1e-5f
#define MODEL_ROPE_THETA 10000.0f

/* Presets of SPEC §2. Returns 0 and fills *c, or -1 (fb_err) for an unknown name. */
int model_preset(const char *name, model_config *c);
/* Names of all presets, NULL-terminated. */
extern const char *const model_preset_names[];
/* Checks shapes (positive, D % NH == 0, NH % NKV == 0, HS even, V <= 65536...). */
int model_config_validate(const model_config *c);
static inline int model_head_size(const model_config *c) { return c->dim / c->n_heads; }
static inline int model_kv_dim(const model_config *c) { return c->n_kv_heads * (c->dim / c->n_heads); }

/* Named views into one flat float array (parameters, gradients, or Adam moments).
 * Shapes are [rows, cols] row-major, W[out][in] as in llama2.c. */
typedef struct {
    float *tok_emb;    /* [V, D] */
    float *rms_att;    /* [L, D] */
    float *wq;         /* [L, D, D]     (out = NH*HS, in = D) */
    float *wk;         /* [L, KVD, D]   KVD = NKV*HS */
    float *wv;         /* [L, KVD, D] */
    float *wo;         /* [L, D, D] */
    float *rms_ffn;    /* [L, D] */
    float *w1;         /* [L, F, D] */
    float *w2;         /* [L, D, F] */
    float *w3;         /* [L, F, D] */
    float *rms_final;  /* [D] */
    float *wcls;       /* [V, D]; == tok_emb when tied, else its own storage at the end */
} model_params;

/* One tensor of the layout, for loops over all of them (tests, optimizer masks, I/O). */
typedef struct {
    const char *name;  /* "tok_emb", "rms_att", ..., "wcls" */
    size_t offset;     /* in floats from the base */
    size_t numel;
    int rows, cols;    /* per layer for layered tensors; layers = L or 1 */
    int layers;
    int is_matrix;     /* 1 for weight matrices (get weight decay), 0 for norms */
} model_tensor;

#define MODEL_MAX_TENSORS 12
/* Fills t[] in storage order; returns the number of tensors (11 tied, 12 untied). */
int model_tensors(const model_config *c, model_tensor t[MODEL_MAX_TENSORS]);
/* Total number of floats (== parameter count). */
size_t model_num_params(const model_config *c);
/* Number of matmul weights (for FLOP counting): all matrices incl. the classifier
 * (counted once for tied), excluding norms. */
size_t model_num_matmul_params(const model_config *c);
/* Training FLOPs per token (llama2.c convention): 6·Nmatmul + 12·L·D·T. */
double model_flops_per_token(const model_config *c, int T);
/* Builds views over base (which holds model_num_params floats). */
void model_params_view(const model_config *c, float *base, model_params *p);
/* One layer's tensors: views into a model_params (weights, gradients or moments). */
typedef struct {
    float *rms_att, *wq, *wk, *wv, *wo;   /* [D] [D,D] [KVD,D] [KVD,D] [D,D] */
    float *rms_ffn, *w1, *w2, *w3;        /* [D] [F,D] [D,F] [F,D] */
} model_layer;

/* Layer l's views from p (pointer arithmetic only: p may point into engine memory). */
void model_layer_view(const model_config *c, const model_params *p, int l, model_layer *out);

/* RoPE table for T positions: rope[pos][i] = (cos, sin) of pos / 10000^(2i/HS), i < HS/2,
 * computed in fp32 exactly as llama2.c's run.c does. [T, HS/2, 2] floats. */
void model_rope_table(float *rope, int T, int HS);

/* llama2.c init: matrices N(0, 0.02), w3 and wo N(0, 0.02/sqrt(2L)), norms 1. */
void model_init_weights(const model_config *c, float *base, uint64_t seed);

/* A model in memory: config + one allocation of parameters. */
typedef struct {
    model_config cfg;
    float *data;       /* model_num_params(cfg) floats, fb_alloc'd */
    model_params w;
} model;

int model_create(model *m, const model_config *c);  /* zeroed weights */
void model_free(model *m);

/* llama2.c version-0 .bin: 7 × int32 header (dim, hidden, layers, heads, kv_heads,
 * vocab (negative = untied), seq_len), then fp32 tensors in our storage order, with the
 * unused RoPE tables freq_cis_real/imag [seq_len, HS/2] between rms_final and wcls.
 * load: checks the header and the exact file size, naming the file and the problem. */
int model_load_llama2c(model *m, const char *path);
/* The same from memory (a whole .bin in data[0..len)); name is used in error messages. */
int model_load_llama2c_mem(model *m, const void *data, size_t len, const char *name);
int model_save_llama2c(const model *m, const char *path); /* atomic write */

#ifdef __cplusplus
}
#endif
#endif
