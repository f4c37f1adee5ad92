/* fable — the training state and one training step, against the engine interface only. */
#include "fable/step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; } /* keep every view 64-byte aligned */

/* floats of the activation arena for L layers, nset grads sets, nres residual gradients */
static size_t arena_floats(const eng_dims *d, int L, int nset, int nres) {
    const size_t N = d->N, D = d->D, F = d->F, KVD = d->KVD;
    const size_t attn_sz = up16(N) + 3 * up16(N * D) + 2 * up16(N * KVD) + up16(N * d->NH);
    const size_t ffn_sz = up16(N) + up16(N * D) + 3 * up16(N * F);
    const size_t grads_sz = 3 * up16(N * D) + 2 * up16(N * KVD) + 3 * up16(N * F); /* ag + fg.dh1/dh3/dgate */
    const size_t tail_sz = (nres + 1) * up16(N * D) + up16(N) /* dres[], dxf, xf_rstd */
                           + up16(N * D) + up16(N);           /* xf, losses */
    return L * (attn_sz + ffn_sz) + nset * grads_sz + up16(N * D) /* shared dxn */ + tail_sz;
}

int step_init(step_ctx *s, eng *e, const model_config *c, int B, int T, int K, int train) {
    memset(s, 0, sizeof *s);
    if (model_config_validate(c)) return -1;
    if (B <= 0 || T <= 0) return fb_err("batch %d x seq %d: both must be positive", B, T);
    if (T > c->seq_len) return fb_err("sequence length %d exceeds the model's seq_len %d", T, c->seq_len);
    if (K <= 0 || K > STEP_MAX_ACCUM) return fb_err("accumulation %d must be in 1..%d", K, STEP_MAX_ACCUM);
    s->cfg = *c;
    s->e = e;
    s->B = B;
    s->T = T;
    s->K = K;
    s->n = model_num_params(c);
    eng_dims_make(&s->d, c, B, T);
    const eng_dims *d = &s->d;
    const size_t N = d->N, D = d->D, F = d->F, KVD = d->KVD, L = c->n_layers;
    s->n_grads = e->dw_async ? 2 : 1;
    s->n_dres = e->dw_async ? 4 : 2;

    /* does it fit? (checked before anything is allocated) */
    const size_t total = arena_floats(d, (int)L, s->n_grads, s->n_dres);
    const double act_bytes = (double)(total + (2 * L + 1) * N * D) * sizeof(float);
    const double state_bytes = (double)s->n * sizeof(float) * (train ? 4 : 1);
    const size_t avail = e->mem_available(e);
    if (avail && state_bytes > (double)avail)
        return fb_err("%zu parameters need %.2f GB for weights%s, but only %.2f GB of memory is available to the %s "
                      "engine", s->n, state_bytes / 1e9, train ? ", gradients and Adam moments" : "", avail / 1e9,
                      e->name);
    if (avail && act_bytes + state_bytes > (double)avail)
        return fb_err("batch %d x seq %d needs %.2f GB of activations, but only %.2f GB of memory is available to "
                      "the %s engine after %.2f GB of weights%s; use a smaller batch or sequence (gradient "
                      "accumulation keeps the tokens per update)",
                      B, T, act_bytes / 1e9, (avail - state_bytes) / 1e9, e->name, state_bytes / 1e9,
                      train ? ", gradients and moments" : "");

    s->params = e->alloc_params(e, s->n);
    if (train) {
        s->grads = e->alloc(e, s->n * sizeof(float));
        s->m = e->alloc(e, s->n * sizeof(float));
        s->v = e->alloc(e, s->n * sizeof(float));
    }
    s->res = e->alloc(e, (2 * L + 1) * N * D * sizeof(float));
    s->act = e->alloc(e, total * sizeof(float));
    s->rope = e->alloc(e, (size_t)T * d->HS * sizeof(float));
    s->tok = e->alloc(e, N * sizeof(int32_t));
    s->tgt = e->alloc(e, N * sizeof(int32_t));
    s->stats = e->alloc(e, (K + 1) * sizeof(double));
    s->attn = calloc(L, sizeof *s->attn);
    s->ffn = calloc(L, sizeof *s->ffn);
    s->sec = calloc(K + 1, sizeof *s->sec);
    if (!s->params || (train && (!s->grads || !s->m || !s->v)) || !s->res || !s->act || !s->rope || !s->tok ||
        !s->tgt || !s->stats || !s->attn || !s->ffn || !s->sec) {
        char why[512];
        snprintf(why, sizeof why, "%s", fb_errmsg());
        step_free(s);
        return fb_err("cannot allocate the training state (batch %d x seq %d, %.1f MB of activations) on the %s engine: %s",
                      B, T, act_bytes / 1e6, e->name, why);
    }
    model_params_view(c, s->params, &s->pw);
    if (train) model_params_view(c, s->grads, &s->pg);
    float *rope_host = malloc((size_t)T * d->HS * sizeof(float));
    if (!rope_host) { step_free(s); return fb_err("out of memory"); }
    model_rope_table(rope_host, T, d->HS);
    e->upload(e, s->rope, rope_host, (size_t)T * d->HS * sizeof(float));
    free(rope_host);

    float *p = s->act;
#define TAKE(n) (p += up16(n), p - up16(n))
    for (size_t l = 0; l < L; l++) {
        eng_attn_taps *a = &s->attn[l];
        a->x = s->res + (2 * l) * N * D;
        a->rstd = TAKE(N);
        a->xn = TAKE(N * D);
        a->q = TAKE(N * D);
        a->k = TAKE(N * KVD);
        a->v = TAKE(N * KVD);
        a->att = TAKE(N * D);
        a->lse = TAKE(N * d->NH);
        eng_ffn_taps *f = &s->ffn[l];
        f->x = s->res + (2 * l + 1) * N * D;
        f->rstd = TAKE(N);
        f->xn = TAKE(N * D);
        f->h1 = TAKE(N * F);
        f->h3 = TAKE(N * F);
        f->gate = TAKE(N * F);
    }
    float *dxn = TAKE(N * D); /* norm-backward scratch: used within one call only, shared by all sets */
    for (int i = 0; i < s->n_grads; i++) {
        s->ag[i].da = TAKE(N * D);
        s->ag[i].dq = TAKE(N * D);
        s->ag[i].dk = TAKE(N * KVD);
        s->ag[i].dv = TAKE(N * KVD);
        s->ag[i].dxn = dxn;
        s->fg[i].dxn = dxn;
        s->fg[i].dh1 = TAKE(N * F);
        s->fg[i].dh3 = TAKE(N * F);
        s->fg[i].dgate = TAKE(N * F);
    }
    for (int i = 0; i < s->n_dres; i++) s->dres[i] = TAKE(N * D);
    s->dxf = TAKE(N * D);
    s->xf_rstd = TAKE(N);
    s->xf = TAKE(N * D);
    s->losses = TAKE(N);
#undef TAKE
    return 0;
}

void step_free(step_ctx *s) {
    if (s->e) {
        void *bufs[] = {s->params, s->grads, s->m, s->v, s->res, s->act, s->rope, s->tok, s->tgt, s->stats};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) s->e->free(s->e, bufs[i]);
    }
    free(s->attn);
    free(s->ffn);
    free(s->sec);
    memset(s, 0, sizeof *s);
}

/* ---- the edges ------------------------------------------------------------------------ */
void step_set_params(step_ctx *s, const float *host) { s->e->upload(s->e, s->params, host, s->n * sizeof(float)); }
void step_get_params(step_ctx *s, float *host) { s->e->download(s->e, host, s->params, s->n * sizeof(float)); }
void step_get_grads(step_ctx *s, float *host) { s->e->download(s->e, host, s->grads, s->n * sizeof(float)); }
void step_set_grads(step_ctx *s, const float *host) { s->e->upload(s->e, s->grads, host, s->n * sizeof(float)); }
void step_get_losses(step_ctx *s, float *host) { s->e->download(s->e, host, s->losses, s->d.N * sizeof(float)); }

void step_set_moments(step_ctx *s, const float *m, const float *v) {
    s->e->upload(s->e, s->m, m, s->n * sizeof(float));
    s->e->upload(s->e, s->v, v, s->n * sizeof(float));
}

void step_get_moments(step_ctx *s, float *m, float *v) {
    s->e->download(s->e, m, s->m, s->n * sizeof(float));
    s->e->download(s->e, v, s->v, s->n * sizeof(float));
}

void step_init_weights(step_ctx *s, uint64_t seed) {
    float *host = fb_alloc(s->n * sizeof(float));
    if (!host) fb_die("out of memory for %zu initial weights", s->n);
    model_init_weights(&s->cfg, host, seed);
    step_set_params(s, host);
    fb_free(host);
}

/* ---- the step --------------------------------------------------------------------------- */
/* Tokens and targets into engine memory; the number of valid targets (counted on the host,
 * which holds them). */
static int upload_batch(step_ctx *s, const int32_t *tok, const int32_t *tgt) {
    const eng_dims *d = &s->d;
    s->e->upload(s->e, s->tok, tok, d->N * sizeof(int32_t));
    s->e->upload(s->e, s->tgt, tgt, d->N * sizeof(int32_t));
    int nv = 0;
    for (int i = 0; i < d->N; i++) nv += tgt[i] >= 0;
    return nv;
}

int step_set_dropout(step_ctx *s, float p, uint32_t seed) {
    if (!(p >= 0.0f && p <= 0.9f)) return fb_err("dropout %g must be in [0, 0.9]", p);
    if (p > 0 && !s->e->dropout) return fb_err("the %s engine has no dropout (use --dropout 0)", s->e->name);
    s->drop_p = p;
    s->drop_seed = seed;
    return 0;
}

/* The dropout of layer l in micro-step k (train) or none, into s->d for the layer calls that
 * follow (the backward sets the same seed again, so the masks match). */
static void set_layer_dropout(step_ctx *s, int train, int k, int l) {
    s->d.drop_p = train ? s->drop_p : 0.0f;
    s->d.drop_seed = train ? eng_drop_hash(s->drop_seed, (uint32_t)(k * 65536 + l)) : 0;
}

/* Embedding, L × (attention, FFN), final RMSNorm, timed as record rec; with the step's
 * dropout when train (micro-step rec). */
static void forward(step_ctx *s, int rec, int train) {
    eng *e = s->e;
    const eng_dims *d = &s->d;
    const int L = s->cfg.n_layers;
    e->phase(e, rec, ENG_PH_FWD);
    e->embed_fwd(e, d, s->res, s->pw.tok_emb, s->tok);
    for (int l = 0; l < L; l++) {
        model_layer lw;
        model_layer_view(&s->cfg, &s->pw, l, &lw);
        set_layer_dropout(s, train, rec, l);
        e->attn_fwd(e, d, &lw, s->rope, &s->attn[l], s->ffn[l].x);
        e->ffn_fwd(e, d, &lw, &s->ffn[l], s->res + (size_t)(2 * l + 2) * d->N * d->D);
    }
    set_layer_dropout(s, 0, 0, 0);
    e->phase(e, rec, ENG_PH_RMS);
    e->rmsnorm_fwd(e, d->N, d->D, s->res + (size_t)2 * L * d->N * d->D, s->pw.rms_final, s->xf, s->xf_rstd);
}

double step_loss(step_ctx *s, const int32_t *tok, const int32_t *tgt) {
    eng *e = s->e;
    int nv = upload_batch(s, tok, tgt);
    forward(s, 0, 0);
    e->phase(e, 0, ENG_PH_CLS);
    e->cls_loss(e, &s->d, s->xf, s->pw.wcls, s->tgt, 1.0f, s->losses, s->stats, NULL, NULL, 0);
    e->phase(e, 0, -1);
    double sum;
    e->download(e, &sum, s->stats, sizeof sum);
    e->sync(e);
    e->timers(e, 0, NULL); /* evaluation is not part of the update's phases */
    return nv ? sum / nv : 0.0;
}

/* The queued work of micro-step k: forward, classifier, backward (run through e->run, so
 * that an engine may record it once and replay it: same calls, same buffers every time). */
typedef struct {
    step_ctx *s;
    int k, nv;
} micro_args;

static void micro_step(void *arg) {
    const micro_args *m = arg;
    step_ctx *s = m->s;
    eng *e = s->e;
    const eng_dims *d = &s->d;
    const int L = s->cfg.n_layers, k = m->k, nv = m->nv, acc = k > 0;
    const size_t ND = (size_t)d->N * d->D;
    forward(s, k, 1);
    if (nv == 0) { /* no valid target: the gradient of this micro-batch is zero; the loss sum is 0 */
        e->phase(e, k, ENG_PH_CLS);
        e->cls_loss(e, d, s->xf, s->pw.wcls, s->tgt, 1.0f, s->losses, s->stats + k, NULL, NULL, 0);
        if (!acc) e->zero(e, s->grads, s->n);
        e->phase(e, k, -1);
        return;
    }
    e->phase(e, k, ENG_PH_CLS);
    e->cls_loss(e, d, s->xf, s->pw.wcls, s->tgt, 1.0f / nv, s->losses, s->stats + k, s->dxf, s->pg.wcls, acc);
    e->phase(e, k, ENG_PH_RMS);
    int r = 0; /* dres[r] = dL/d(output of the sublayer being differentiated) */
    e->rmsnorm_bwd(e, d->N, d->D, s->res + 2 * L * ND, s->pw.rms_final, s->xf_rstd, s->dxf, s->dres[r],
                   s->pg.rms_final, acc);
    /* Each sublayer reads dres[r] and writes dres[r+1] (a ring of n_dres buffers); with two
     * scratch sets (by layer parity) and a ring of 4, the inputs of each *_dw call stay
     * untouched for the next sublayers' dx chain, so an engine that overlaps dW need not wait. */
    for (int l = L - 1; l >= 0; l--) {
        model_layer lw, lg;
        model_layer_view(&s->cfg, &s->pw, l, &lw);
        model_layer_view(&s->cfg, &s->pg, l, &lg);
        eng_ffn_grads *fg = &s->fg[l % s->n_grads];
        eng_attn_grads *ag = &s->ag[l % s->n_grads];
        float *dy = s->dres[r], *dmid = s->dres[(r + 1) % s->n_dres], *dx = s->dres[(r + 2) % s->n_dres];
        e->phase(e, k, ENG_PH_BWD);
        set_layer_dropout(s, 1, k, l);
        e->ffn_bwd(e, d, &lw, &s->ffn[l], dy, fg, dmid, &lg, acc);
        e->phase(e, k, ENG_PH_DW);
        e->ffn_dw(e, d, &s->ffn[l], dy, fg, &lg, acc);
        e->phase(e, k, ENG_PH_BWD);
        e->attn_bwd(e, d, &lw, s->rope, &s->attn[l], dmid, ag);
        e->qkv_bwd(e, d, &lw, &s->attn[l], dmid, ag, dx, &lg, acc);
        e->phase(e, k, ENG_PH_DW);
        e->attn_dw(e, d, &s->attn[l], dmid, ag, &lg, acc);
        r = (r + 2) % s->n_dres;
    }
    set_layer_dropout(s, 0, 0, 0);
    e->phase(e, k, ENG_PH_BWD);
    /* tied: the classifier already wrote (or added to) this tensor; untied and overwriting:
     * the scatter-add needs a zero table first */
    if (!acc && s->pg.tok_emb != s->pg.wcls) e->zero(e, s->pg.tok_emb, (size_t)d->V * d->D);
    e->embed_bwd(e, d, s->pg.tok_emb, s->dres[r], s->tok);
    e->phase(e, k, -1);
}

void step_fwd_bwd(step_ctx *s, const int32_t *tok, const int32_t *tgt, int k) {
    if (k < 0 || k >= s->K) fb_die("step_fwd_bwd: micro-step %d outside 0..%d", k, s->K - 1);
    if (!s->grads) fb_die("step_fwd_bwd on a forward-only step context");
    if (k == 0) s->n_micro = 0, s->opt_ran = 0;
    s->n_micro = k + 1;
    micro_args m = {s, k, upload_batch(s, tok, tgt)};
    s->nv[k] = m.nv;
    /* the recorded work depends on this context, k (record, loss slot, acc) and nv (the scale) */
    const uint64_t key = ((uint64_t)(uintptr_t)s * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)k << 32) ^ (uint64_t)m.nv;
    /* (engines that record have no dropout: step_set_dropout refuses them, so the masks,
     * which change every update, never sit in a recording) */
    s->e->run(s->e, key, micro_step, &m);
}

void step_optimizer(step_ctx *s, const optim_cfg *o, int step, float grad_scale) {
    eng *e = s->e;
    const int rec = s->n_micro;
    double *gsumsq = s->stats + s->K;
    e->phase(e, rec, ENG_PH_OPT);
    e->sumsq(e, s->grads, s->n, gsumsq);
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(&s->cfg, t);
    for (int i = 0; i < nt; i++) {
        eng_adamw_args a = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                            .weight_decay = t[i].is_matrix ? o->weight_decay : 0.0f,
                            .grad_scale = grad_scale, .grad_clip = o->grad_clip, .step = step};
        size_t off = t[i].offset;
        e->adamw(e, s->params + off, s->grads + off, s->m + off, s->v + off, t[i].numel, &a, gsumsq);
    }
    e->phase(e, rec, -1);
    s->opt_ran = 1;
    s->opt_scale = grad_scale;
}

void step_finish(step_ctx *s, step_result *r) {
    eng *e = s->e;
    const int n = s->n_micro;
    double stats[STEP_MAX_ACCUM + 1];
    e->download(e, stats, s->stats, (s->K + 1) * sizeof(double)); /* waits for the queued work */
    e->sync(e);
    memset(s->sec, 0, (s->K + 1) * sizeof *s->sec);
    e->timers(e, n + 1, s->sec);
    r->n = n;
    r->loss_mean = 0;
    for (int k = 0; k < n; k++) {
        r->loss[k] = s->nv[k] ? stats[k] / s->nv[k] : 0.0;
        r->loss_mean += r->loss[k] / n;
    }
    r->grad_norm = s->opt_ran ? sqrt(stats[s->K]) * s->opt_scale : NAN;
    r->sec = s->sec;
    s->n_micro = 0;
    s->opt_ran = 0;
}

void step_diagnose(step_ctx *s, char *out, size_t cap) {
    const eng_dims *d = &s->d;
    const size_t ND = (size_t)d->N * d->D;
    float *x = malloc(ND * sizeof(float));
    if (!x) { snprintf(out, cap, "(out of memory while looking)"); return; }
    for (int i = 0; i <= 2 * s->cfg.n_layers; i++) {
        s->e->download(s->e, x, s->res + i * ND, ND * sizeof(float));
        for (size_t k = 0; k < ND; k++)
            if (!isfinite(x[k])) {
                if (i == 0) snprintf(out, cap, "the token embedding (non-finite weights)");
                else snprintf(out, cap, "the forward pass, layer %d %s output", (i - 1) / 2,
                              (i - 1) % 2 == 0 ? "attention" : "FFN");
                free(x);
                return;
            }
    }
    free(x);
    snprintf(out, cap, "the classifier / cross-entropy (final RMSNorm and logits)");
}

double step_flops(const model_config *c, int B, int T) {
    return model_flops_per_token(c, T) * (double)B * T;
}
