/* fable — llama2.c "version 0" model files (run.c's format), both ways.
 *
 * Layout (little-endian):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *     (vocab_size < 0 means the classifier is NOT shared with the embedding)
 *   float32 tok_emb [V,D], rms_att [L,D], wq [L,D,D], wk [L,KVD,D], wv [L,KVD,D],
 *           wo [L,D,D], rms_ffn [L,D], w1 [L,F,D], w2 [L,D,F], w3 [L,F,D], rms_final [D],
 *           freq_cis_real [seq_len, HS/2], freq_cis_imag [seq_len, HS/2]   (unused by fable)
 *           wcls [V,D]   only when untied
 * The first 11 tensors are exactly fable's storage order, so load/save are two copies.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fable/model.h"
#include "fable/util.h"

#define HDR_INTS 7

static size_t rope_floats(const model_config *c) {
    return (size_t)c->seq_len * (size_t)(model_head_size(c) / 2) * 2;
}

/* The config of a header, checked against the file size: the file must hold exactly the
 * tensors the header announces, so nothing is allocated that the file cannot fill. */
static int check_header(const int32_t h[HDR_INTS], size_t fsize, const char *path, model_config *c, size_t *nrope) {
    *c = (model_config){.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3],
                        .n_kv_heads = h[4], .vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]), .seq_len = h[6],
                        .tied = h[5] > 0};
    if (h[5] == INT32_MIN || model_config_validate(c)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", h[5] == INT32_MIN ? "vocab is INT32_MIN" : fb_errmsg());
        return fb_err("%s: impossible llama2.c header (dim %d, hidden %d, layers %d, heads %d, kv_heads %d, "
                      "vocab %d, seq_len %d): %s",
                      path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], why);
    }
    /* model_config_validate bounds every size, so these products stay below 2^50 */
    *nrope = rope_floats(c);
    size_t expect = HDR_INTS * sizeof(int32_t) + (model_num_params(c) + *nrope) * sizeof(float);
    if (fsize != expect)
        return fb_err("%s: size %zu bytes does not match its header (dim %d, hidden %d, layers %d, heads %d, "
                      "kv_heads %d, vocab %d, seq_len %d): expected %zu bytes — %s",
                      path, fsize, h[0], h[1], h[2], h[3], h[4], h[5], h[6], expect,
                      fsize < expect ? "the file is truncated" : "the file has trailing data");
    return 0;
}

/* Weights are finite (NaN/Inf in a file is corruption, not a model). */
static int check_finite(model *m, const char *path) {
    size_t np = model_num_params(&m->cfg);
    for (size_t i = 0; i < np; i++)
        if (!isfinite(m->data[i])) {
            model_free(m);
            return fb_err("%s: corrupt: parameter %zu is not finite", path, i);
        }
    return 0;
}

int model_load_llama2c(model *m, const char *path) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return fb_errno("%s: cannot open model", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) { fclose(f); return fb_errno("%s: cannot stat", path); }
    int32_t h[HDR_INTS];
    if ((size_t)st.st_size < sizeof h || fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return fb_err("%s: truncated: %lld bytes, shorter than the 28-byte llama2.c header", path,
                      (long long)st.st_size);
    }
    model_config c;
    size_t nrope;
    if (check_header(h, (size_t)st.st_size, path, &c, &nrope)) { fclose(f); return -1; }
    if (model_create(m, &c)) { fclose(f); return -1; }
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(&c, t);
    size_t shared = t[10].offset + t[10].numel; /* through rms_final */
    int ok = fread(m->data, sizeof(float), shared, f) == shared;
    if (ok && fseek(f, (long)(nrope * sizeof(float)), SEEK_CUR) != 0) ok = 0;
    if (ok && nt == 12) ok = fread(m->data + t[11].offset, sizeof(float), t[11].numel, f) == t[11].numel;
    fclose(f);
    if (!ok) {
        model_free(m);
        return fb_err("%s: read failed", path);
    }
    return check_finite(m, path);
}

int model_load_llama2c_mem(model *m, const void *data, size_t len, const char *name) {
    memset(m, 0, sizeof *m);
    int32_t h[HDR_INTS];
    if (len < sizeof h)
        return fb_err("%s: truncated: %zu bytes, shorter than the 28-byte llama2.c header", name, len);
    memcpy(h, data, sizeof h);
    model_config c;
    size_t nrope;
    if (check_header(h, len, name, &c, &nrope)) return -1;
    if (model_create(m, &c)) return -1;
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(&c, t);
    const unsigned char *src = (const unsigned char *)data + sizeof h; /* floats, maybe unaligned */
    size_t shared = t[10].offset + t[10].numel;
    memcpy(m->data, src, shared * sizeof(float));
    if (nt == 12) memcpy(m->data + t[11].offset, src + (shared + nrope) * sizeof(float), t[11].numel * sizeof(float));
    return check_finite(m, name);
}

int model_save_llama2c(const model *m, const char *path) {
    const model_config *c = &m->cfg;
    int32_t h[HDR_INTS] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                           c->tied ? c->vocab_size : -c->vocab_size, c->seq_len};
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(c, t);
    size_t shared = t[10].offset + t[10].numel;
    /* The RoPE tables llama2.c wrote (freqs_cos / freqs_sin), for readers that expect them. */
    int HS = model_head_size(c), half = HS / 2;
    float *rope = fb_alloc(rope_floats(c) * sizeof(float));
    if (!rope) return -1;
    for (int pos = 0; pos < c->seq_len; pos++)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(MODEL_ROPE_THETA, (float)(2 * i) / (float)HS);
            float val = (float)pos * freq;
            rope[(size_t)pos * half + i] = cosf(val);
            rope[(size_t)c->seq_len * half + (size_t)pos * half + i] = sinf(val);
        }
    fb_atomic a;
    int rc = fb_atomic_begin(&a, path);
    if (!rc) rc = fb_atomic_write(&a, h, sizeof h);
    if (!rc) rc = fb_atomic_write(&a, m->data, shared * sizeof(float));
    if (!rc) rc = fb_atomic_write(&a, rope, rope_floats(c) * sizeof(float));
    if (!rc && nt == 12) rc = fb_atomic_write(&a, m->data + t[11].offset, t[11].numel * sizeof(float));
    if (!rc) rc = fb_atomic_commit(&a);
    fb_free(rope);
    return rc;
}
