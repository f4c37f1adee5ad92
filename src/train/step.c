/* fable — one training step over the whole model, against the engine interface only. */
#include "fable/step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; } /* keep every view 64-byte aligned */

int step_init(step_ctx *s, eng *e, const model_config *c, int B, int T) {
    memset(s, 0, sizeof *s);
    if (model_config_validate(c)) return -1;
    if (B <= 0 || T <= 0) return fb_err("batch %d x seq %d: both must be positive", B, T);
    if (T > c->seq_len) return fb_err("sequence length %d exceeds the model's seq_len %d", T, c->seq_len);
    s->cfg = *c;
    s->e = e;
    s->B = B;
    s->T = T;
    eng_dims_make(&s->d, c, B, T);
    const eng_dims *d = &s->d;
    const size_t N = d->N, D = d->D, F = d->F, KVD = d->KVD, L = c->n_layers;

    /* one arena: per-layer taps, then scratch shared by all layers */
    const size_t attn_sz = up16(N) + 3 * up16(N * D) + 2 * up16(N * KVD) + up16(N * d->NH);
    const size_t ffn_sz = up16(N) + up16(N * D) + 3 * up16(N * F);
    const size_t scratch_sz = 4 * up16(N * D) + 2 * up16(N * KVD) + 3 * up16(N * F) /* ag + fg */
                              + 3 * up16(N * D) + up16(N) /* dres[2], dxf, xf_rstd */
                              + up16(N * D) + up16(N);    /* xf, losses */
    const size_t total = L * (attn_sz + ffn_sz) + scratch_sz;
    const double need = (double)(total + (2 * L + 1) * N * D) * sizeof(float);
    const size_t avail = fb_mem_available();
    if (avail && need > (double)avail)
        return fb_err("batch %d x seq %d needs %.2f GB of activations, but only %.2f GB of memory is available; "
                      "use a smaller batch or sequence (gradient accumulation keeps the tokens per update)",
                      B, T, need / 1e9, avail / 1e9);
    s->res = e->alloc(e, (2 * L + 1) * N * D * sizeof(float));
    s->act = e->alloc(e, total * sizeof(float));
    s->rope = e->alloc(e, (size_t)T * d->HS * sizeof(float));
    s->tok = e->alloc(e, N * sizeof(int32_t));
    s->tgt = e->alloc(e, N * sizeof(int32_t));
    s->attn = calloc(L, sizeof *s->attn);
    s->ffn = calloc(L, sizeof *s->ffn);
    if (!s->res || !s->act || !s->rope || !s->tok || !s->tgt || !s->attn || !s->ffn) {
        step_free(s);
        return fb_err("out of memory for activations (batch %d x seq %d, %.1f MB)", B, T,
                      (total + (2 * L + 1) * N * D) * 4.0 / 1e6);
    }
    float *rope_host = malloc((size_t)T * d->HS * sizeof(float));
    if (!rope_host) { step_free(s); return fb_err("out of memory"); }
    eng_rope_table(rope_host, T, d->HS);
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
    s->ag.da = TAKE(N * D);
    s->ag.dq = TAKE(N * D);
    s->ag.dk = TAKE(N * KVD);
    s->ag.dv = TAKE(N * KVD);
    s->ag.dxn = TAKE(N * D);
    s->fg.dxn = s->ag.dxn; /* scratch used within one call only */
    s->fg.dh1 = TAKE(N * F);
    s->fg.dh3 = TAKE(N * F);
    s->fg.dgate = TAKE(N * F);
    s->dres[0] = TAKE(N * D);
    s->dres[1] = TAKE(N * D);
    s->dxf = TAKE(N * D);
    s->xf_rstd = TAKE(N);
    s->xf = TAKE(N * D);
    s->losses = TAKE(N);
#undef TAKE
    return 0;
}

void step_free(step_ctx *s) {
    if (s->e) {
        s->e->free(s->e, s->res);
        s->e->free(s->e, s->act);
        s->e->free(s->e, s->rope);
        s->e->free(s->e, s->tok);
        s->e->free(s->e, s->tgt);
    }
    free(s->attn);
    free(s->ffn);
    memset(s, 0, sizeof *s);
}

/* Embedding, L × (attention, FFN), final RMSNorm. Returns the number of valid targets. */
static int forward(step_ctx *s, const model_params *w, const int32_t *tok, const int32_t *tgt) {
    eng *e = s->e;
    const eng_dims *d = &s->d;
    const int L = s->cfg.n_layers;
    double t0 = fb_now();
    e->upload(e, s->tok, tok, d->N * sizeof(int32_t));
    e->upload(e, s->tgt, tgt, d->N * sizeof(int32_t));
    e->embed_fwd(e, d, s->res, w->tok_emb, s->tok);
    for (int l = 0; l < L; l++) {
        eng_layer lw;
        eng_layer_of(&s->cfg, w, l, &lw);
        e->attn_fwd(e, d, &lw, s->rope, &s->attn[l], s->ffn[l].x);
        e->ffn_fwd(e, d, &lw, &s->ffn[l], s->res + (size_t)(2 * l + 2) * d->N * d->D);
    }
    double t1 = fb_now();
    e->rmsnorm_fwd(e, d->N, d->D, s->res + (size_t)2 * L * d->N * d->D, w->rms_final, s->xf, s->xf_rstd);
    double t2 = fb_now();
    s->tm.fwd += t1 - t0;
    s->tm.rms += t2 - t1;
    int nv = 0;
    for (int i = 0; i < d->N; i++) nv += tgt[i] >= 0;
    return nv;
}

double step_loss(step_ctx *s, const model_params *w, const int32_t *tok, const int32_t *tgt) {
    int nv = forward(s, w, tok, tgt);
    double t0 = fb_now();
    double sum = s->e->cls_loss(s->e, &s->d, s->xf, w->wcls, s->tgt, 1.0f, s->losses, NULL, NULL, 0);
    s->tm.cls += fb_now() - t0;
    return nv ? sum / nv : 0.0;
}

double step_fwd_bwd(step_ctx *s, const model_params *w, model_params *g, const int32_t *tok, const int32_t *tgt,
                    int acc) {
    eng *e = s->e;
    const eng_dims *d = &s->d;
    const int L = s->cfg.n_layers;
    const size_t ND = (size_t)d->N * d->D;
    int nv = forward(s, w, tok, tgt);
    if (nv == 0) { /* no valid target: the gradient of this micro-batch is zero */
        if (!acc) e->zero(e, g->tok_emb, model_num_params(&s->cfg)); /* tok_emb is the layout's first tensor */
        return 0.0;
    }

    double t0 = fb_now();
    double sum = e->cls_loss(e, d, s->xf, w->wcls, s->tgt, 1.0f / nv, s->losses, s->dxf, g->wcls, acc);
    double t1 = fb_now();
    e->rmsnorm_bwd(e, d->N, d->D, s->res + 2 * L * ND, w->rms_final, s->xf_rstd, s->dxf, s->dres[0], g->rms_final,
                   acc);
    double t2 = fb_now();
    s->tm.cls += t1 - t0;
    s->tm.rms += t2 - t1;

    /* dres[0] = dL/d(output of layer l); ffn: dres[0] → dres[1]; attention: dres[1] → dres[0] */
    double tdx = 0, tdw = 0;
    for (int l = L - 1; l >= 0; l--) {
        eng_layer lw, lg;
        eng_layer_of(&s->cfg, w, l, &lw);
        eng_layer_of(&s->cfg, g, l, &lg);
        double a = fb_now();
        e->ffn_bwd(e, d, &lw, &s->ffn[l], s->dres[0], &s->fg, s->dres[1], &lg, acc);
        double b = fb_now();
        e->ffn_dw(e, d, &s->ffn[l], s->dres[0], &s->fg, &lg, acc);
        double c = fb_now();
        e->attn_bwd(e, d, &lw, s->rope, &s->attn[l], s->dres[1], &s->ag);
        e->qkv_bwd(e, d, &lw, &s->attn[l], s->dres[1], &s->ag, s->dres[0], &lg, acc);
        double dd = fb_now();
        e->attn_dw(e, d, &s->attn[l], s->dres[1], &s->ag, &lg, acc);
        double ee = fb_now();
        tdx += (b - a) + (dd - c);
        tdw += (c - b) + (ee - dd);
    }
    double t3 = fb_now();
    /* tied: the classifier already wrote (or added to) this tensor; untied and overwriting:
     * the scatter-add needs a zero table first */
    if (!acc && g->tok_emb != g->wcls) e->zero(e, g->tok_emb, (size_t)d->V * d->D);
    e->embed_bwd(e, d, g->tok_emb, s->dres[0], s->tok);
    e->sync(e);
    double t4 = fb_now();
    s->tm.bwd_dx += tdx + (t4 - t3);
    s->tm.dw += tdw;
    return sum / nv;
}

double step_optimizer(step_ctx *s, float *params, float *grads, float *m, float *v, const optim_cfg *o, int step,
                      float grad_scale) {
    eng *e = s->e;
    double t0 = fb_now();
    const size_t n = model_num_params(&s->cfg);
    double norm = sqrt(e->sumsq(e, grads, n)) * grad_scale;
    float scale = grad_scale;
    /* torch.nn.utils.clip_grad_norm_: coef = clip / (norm + 1e-6), applied when < 1 */
    if (o->grad_clip > 0 && norm > o->grad_clip) scale *= (float)(o->grad_clip / (norm + 1e-6));
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(&s->cfg, t);
    for (int i = 0; i < nt; i++) {
        eng_adamw_args a = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                            .weight_decay = t[i].is_matrix ? o->weight_decay : 0.0f,
                            .grad_scale = scale, .step = step};
        size_t off = t[i].offset;
        e->adamw(e, params + off, grads + off, m + off, v + off, t[i].numel, &a);
    }
    s->tm.opt += fb_now() - t0;
    return norm;
}

double step_flops(const model_config *c, int B, int T) {
    return model_flops_per_token(c, T) * (double)B * T;
}
