/* fable — engine-independent helpers of the engine interface. */
#include "fable/engine.h"

#include <math.h>
#include <string.h>

#include "fable/util.h"

void eng_dims_make(eng_dims *d, const model_config *c, int B, int T) {
    d->B = B;
    d->T = T;
    d->N = B * T;
    d->D = c->dim;
    d->F = c->hidden_dim;
    d->NH = c->n_heads;
    d->NKV = c->n_kv_heads;
    d->HS = c->dim / c->n_heads;
    d->KVD = d->NKV * d->HS;
    d->V = c->vocab_size;
}

void eng_layer_of(const model_config *c, const model_params *p, int l, eng_layer *o) {
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
void eng_rope_table(float *rope, int T, int HS) {
    const int half = HS / 2;
    for (int pos = 0; pos < T; pos++)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(MODEL_ROPE_THETA, (float)(2 * i) / (float)HS);
            float val = (float)pos * freq;
            rope[((size_t)pos * half + i) * 2 + 0] = cosf(val);
            rope[((size_t)pos * half + i) * 2 + 1] = sinf(val);
        }
}

eng *eng_create(const char *name, int threads) {
    if (!name || !strcmp(name, "cpu")) return eng_cpu_create(threads);
    fb_err("unknown engine '%s' (this build has: cpu)", name);
    return NULL;
}

double eng_peak_gflops(eng *e) {
    if (e->peak_gflops <= 0 && !strcmp(e->name, "cpu")) e->peak_gflops = eng_cpu_measure_peak(e->threads);
    return e->peak_gflops;
}
