/* fable probe — the training step's kernel types at a preset's shapes, each running the cpu
 * engine's own function on a real training state (step_ctx, after one forward+backward so
 * every tap holds real values). Used by the counters, sched and roofline probes.
 *
 * FLOPs and compulsory bytes per call (N = B·T tokens; fp32 = 4 bytes):
 *   gemm M×N×K          2MNK              4(MK + NK + MN)
 *   attention fwd       2·N·T·D           (causal half of S = QKᵀ and O = PV: 4NTD full)
 *   attention bwd       5·N·T·D           (S recomputed, dV, dP, dQ, dK: five causal halves)
 *   rmsnorm             4·N·D             x² sum, ×rstd, ×w
 *   rope                3·N·D             4 mul + 2 add per pair
 *   swiglu              5·N·F             neg, exp, add, div, mul (exp counted as 1)
 *   cls+CE fwd+bwd      6·N·D·V           logits, dxn, dWcls
 *   adamw               10·n              bench's count; 28 bytes per parameter
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "fable/probe.h"
#include "fable/step.h"
#include "fable/util.h"

enum {
    K_QKV, K_WO, K_W13, K_W2, K_CLS_GEMM, K_ATT_FWD, K_ATT_BWD, K_RMS, K_ROPE, K_SWIGLU, K_CLS_CE, K_ADAMW, K_COUNT
};

struct probe_kfix {
    eng *e;
    step_ctx s;
    model_config c;
    model_layer lw;
    int32_t *tok, *tgt;
    float *y;          /* [N, D] output of wo / w2 */
    float *logits;     /* [N, V] output of the classifier GEMM */
    float *rq;         /* [N, D] a copy of q for RoPE to rotate */
    probe_kinfo info[K_COUNT];
};

static double gemm_bytes(double M, double N, double K) { return 4 * (M * K + N * K + M * N); }

int probe_kfix_init(probe_kfix **out, const probe_opts *o) {
    *out = NULL;
    if (o->engine && strcmp(o->engine, "cpu")) {
        fb_err("engine '%s': the kernel probes run the cpu engine's own functions; only --engine cpu is probed in this "
               "build",
               o->engine);
        return -1;
    }
    probe_kfix *f = calloc(1, sizeof *f);
    if (!f) return fb_err("out of memory");
    f->c = o->cfg;
    if (o->T > f->c.seq_len) f->c.seq_len = o->T;
    f->e = eng_create("cpu", &(eng_opts){.threads = o->threads, .precision = -1});
    if (!f->e) { free(f); return -1; }
    if (step_init(&f->s, f->e, &f->c, o->B, o->T, 1, 1)) { f->e->destroy(f->e); free(f); return -1; }
    step_init_weights(&f->s, 1);
    const eng_dims *d = &f->s.d;
    const size_t N = d->N;
    f->tok = malloc(N * sizeof(int32_t));
    f->tgt = malloc(N * sizeof(int32_t));
    f->y = fb_alloc(N * d->D * sizeof(float));
    f->rq = fb_alloc(N * d->D * sizeof(float));
    f->logits = fb_alloc(N * d->V * sizeof(float));
    if (!f->tok || !f->tgt || !f->y || !f->rq || !f->logits) { probe_kfix_free(f); return fb_err("out of memory"); }
    fb_rng r;
    fb_rng_seed(&r, 11);
    for (size_t i = 0; i < N; i++) {
        f->tok[i] = (int32_t)(fb_rng_u32(&r) % f->c.vocab_size);
        f->tgt[i] = (int32_t)(fb_rng_u32(&r) % f->c.vocab_size);
    }
    step_fwd_bwd(&f->s, f->tok, f->tgt, 0); /* every tap and gradient scratch now holds real values */
    memcpy(f->rq, f->s.attn[0].q, N * d->D * sizeof(float));
    model_layer_view(&f->c, &f->s.pw, 0, &f->lw);

    const double n = (double)N, D = d->D, F = d->F, KVD = d->KVD, V = d->V, T = d->T, P = (double)f->s.n;
    struct { const char *name; double flops, bytes; } k[K_COUNT] = {
        [K_QKV] = {"gemm qkv", 2 * n * D * (D + 2 * KVD), gemm_bytes(n, D + 2 * KVD, D)},
        [K_WO] = {"gemm wo", 2 * n * D * D, gemm_bytes(n, D, D)},
        [K_W13] = {"gemm w1+w3", 2 * 2 * n * F * D, gemm_bytes(n, 2 * F, D)},
        [K_W2] = {"gemm w2", 2 * n * D * F, gemm_bytes(n, D, F)},
        [K_CLS_GEMM] = {"gemm classifier", 2 * n * V * D, gemm_bytes(n, V, D)},
        [K_ATT_FWD] = {"attention fwd", 2 * n * T * D, 4 * (2 * n * D + 2 * n * KVD)},
        [K_ATT_BWD] = {"attention bwd", 5 * n * T * D, 4 * (3 * n * D + 4 * n * KVD)},
        [K_RMS] = {"rmsnorm", 4 * n * D, 4 * (2 * n * D + D + n)},
        [K_ROPE] = {"rope", 3 * n * D, 4 * (2 * n * D + T * D / d->NH)},
        [K_SWIGLU] = {"swiglu", 5 * n * F, 4 * 3 * n * F},
        [K_CLS_CE] = {"cls+CE fwd+bwd", 6 * n * D * V, 4 * (2 * n * D + 3 * V * D)},
        [K_ADAMW] = {"adamw", 10 * P, 28 * P},
    };
    for (int i = 0; i < K_COUNT; i++) {
        snprintf(f->info[i].name, PROBE_NAME, "%s", k[i].name);
        f->info[i].flops = k[i].flops;
        f->info[i].bytes = k[i].bytes;
    }
    *out = f;
    return 0;
}

void probe_kfix_free(probe_kfix *f) {
    if (!f) return;
    free(f->tok);
    free(f->tgt);
    fb_free(f->y);
    fb_free(f->rq);
    fb_free(f->logits);
    if (f->e) {
        step_free(&f->s);
        f->e->destroy(f->e);
    }
    free(f);
}

int probe_kfix_count(const probe_kfix *f) { return K_COUNT; }
const probe_kinfo *probe_kfix_info(const probe_kfix *f, int i) { return &f->info[i]; }
int probe_kfix_threads(const probe_kfix *f) { return f->e->threads; }

void probe_kfix_run(probe_kfix *f, int i) {
    eng *e = f->e;
    step_ctx *s = &f->s;
    const eng_dims *d = &s->d;
    const int N = d->N, D = d->D, F = d->F, KVD = d->KVD;
    eng_attn_taps *at = &s->attn[0];
    eng_ffn_taps *ft = &s->ffn[0];
    const model_layer *w = &f->lw;
    switch (i) {
    case K_QKV:
        mm_nt(N, D, D, at->xn, D, w->wq, D, 0.0f, at->q, D);
        mm_nt(N, KVD, D, at->xn, D, w->wk, D, 0.0f, at->k, KVD);
        mm_nt(N, KVD, D, at->xn, D, w->wv, D, 0.0f, at->v, KVD);
        break;
    case K_WO: mm_nt(N, D, D, at->att, D, w->wo, D, 0.0f, f->y, D); break;
    case K_W13:
        mm_nt(N, F, D, ft->xn, D, w->w1, D, 0.0f, ft->h1, F);
        mm_nt(N, F, D, ft->xn, D, w->w3, D, 0.0f, ft->h3, F);
        break;
    case K_W2: mm_nt(N, D, F, ft->gate, F, w->w2, F, 0.0f, f->y, D); break;
    case K_CLS_GEMM: mm_nt(N, d->V, D, s->xf, D, s->pw.wcls, D, 0.0f, f->logits, d->V); break;
    case K_ATT_FWD: cpu_attn_core_fwd(e, d, at->q, at->k, at->v, at->att, at->lse); break;
    case K_ATT_BWD:
        cpu_attn_core_bwd(e, d, at->q, at->k, at->v, at->lse, at->att, 1.0f, s->ag[0].da, s->ag[0].dq, s->ag[0].dk, s->ag[0].dv);
        break;
    case K_RMS: cpu_rmsnorm_rows(N, D, at->x, w->rms_att, at->xn, at->rstd); break;
    case K_ROPE: cpu_rope(f->rq, N, d->T, d->NH, d->HS, s->rope, 0); break;
    case K_SWIGLU: cpu_swiglu((size_t)N * F, ft->h1, ft->h3, ft->gate); break;
    case K_CLS_CE:
        e->cls_loss(e, d, s->xf, s->pw.wcls, s->tgt, 1.0f / N, s->losses, s->stats, s->dxf, s->pg.wcls, 1);
        break;
    case K_ADAMW: {
        /* lr 0: the weights stay as they are however often the probe runs it */
        eng_adamw_args aa = {.lr = 0.0f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                             .grad_scale = 1, .grad_clip = 0, .step = 1};
        e->adamw(e, s->params, s->grads, s->m, s->v, s->n, &aa, s->stats + 1);
        break;
    }
    }
    e->sync(e);
}

double probe_kfix_time(probe_kfix *f, int i, int reps, double max_s) {
    double t[64];
    if (reps > 64) reps = 64;
    if (reps < 1) reps = 1;
    double start = fb_now();
    probe_kfix_run(f, i);
    int n = 0;
    while (n < reps) {
        double t0 = fb_now();
        probe_kfix_run(f, i);
        t[n++] = fb_now() - t0;
        if (fb_now() - start > max_s) break;
    }
    return fb_median(t, n);
}
