/* fable — the training loop: data → micro-steps → AdamW updates, with evaluation,
 * samples, checkpoints (atomic, bit-exact resume), telemetry and clean stops. */
#include "fable/train.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fable/ckpt.h"
#include "fable/data.h"
#include "fable/engine.h"
#include "fable/infer.h"
#include "fable/step.h"
#include "fable/telemetry.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

/* ---- hyper-parameters -------------------------------------------------------------- */
int train_recipe(const char *name, train_hparams *h) {
    memset(h, 0, sizeof *h);
    if (!strcmp(name, "ane")) {
        /* the reference: 1×256, accum 10, Adam 3e-4 (0.9, 0.999, 1e-8), no wd, no clip,
         * constant lr, uniformly random windows */
        *h = (train_hparams){.batch = 1, .seq = 256, .accum = 10, .steps = 1000, .lr = 3e-4f, .min_lr = 3e-4f,
                             .warmup = 0, .schedule = SCHED_CONSTANT, .beta1 = 0.9f, .beta2 = 0.999f,
                             .eps = 1e-8f, .weight_decay = 0.0f, .grad_clip = 0.0f, .sampler = LOADER_RANDOM,
                             .seed = 1337};
        return 0;
    }
    if (!strcmp(name, "llama2c")) {
        /* llama2.c train.py: AdamW (0.9, 0.95), wd 0.1, clip 1.0, warmup 1000 then cosine
         * to 0 (min_lr 0 per the issue), lr 5e-4, shuffled non-overlapping windows */
        *h = (train_hparams){.batch = 32, .seq = 256, .accum = 4, .steps = 100000, .lr = 5e-4f, .min_lr = 0.0f,
                             .warmup = 1000, .schedule = SCHED_COSINE, .beta1 = 0.9f, .beta2 = 0.95f,
                             .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f, .sampler = LOADER_SHUFFLED,
                             .seed = 1337};
        return 0;
    }
    return fb_err("unknown recipe '%s' (known: ane, llama2c)", name);
}

float train_lr(const train_hparams *h, int u) {
    if (h->warmup > 0 && u <= h->warmup) return h->lr * (float)u / (float)h->warmup;
    if (h->schedule == SCHED_CONSTANT) return h->lr;
    if (u >= h->steps) return h->min_lr;
    double ratio = (double)(u - h->warmup) / (double)(h->steps - h->warmup);
    double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return (float)(h->min_lr + coeff * (h->lr - h->min_lr));
}

void train_opts_defaults(train_opts *o) {
    memset(o, 0, sizeof *o);
    train_recipe("ane", &o->hp);
    o->out_dir = "out";
    o->eval_every = 100;
    o->eval_batches = 20;
    o->sample_every = 0;
    o->sample_tokens = 64;
    o->ckpt_every = 100;
    o->keep = 3;
}

/* ---- stop requests ---------------------------------------------------------------- */
static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) { stop_signal = sig; }

/* ---- the run ------------------------------------------------------------------------ */
typedef struct {
    train_opts *o;
    model_config cfg;
    eng *e;
    step_ctx s;
    shard train, val;
    int have_val;
    loader ld;
    float *params, *grads, *m, *v;
    model_params pw, pg;
    size_t n;
    ckpt_header h;          /* running state, saved as is */
    tele tl;
    tokenizer *tok;
    char last_ckpt[4096];
    double peak;
} run;

static void fill_header(run *r) {
    ckpt_header *h = &r->h;
    memcpy(h->magic, CKPT_MAGIC, 8);
    h->version = CKPT_VERSION;
    h->header_bytes = sizeof *h;
    ckpt_cfg_pack(&r->cfg, h->cfg);
    h->hp = r->o->hp;
    h->n_params = r->n;
    h->loader = r->ld.st;
    h->data_tokens = r->train.n;
    h->data_vocab = r->train.vocab_size;
    h->threads = r->e->threads;
    snprintf(h->data_path, sizeof h->data_path, "%s", r->o->train_path);
    snprintf(h->tokenizer_path, sizeof h->tokenizer_path, "%s", r->o->tokenizer_path ? r->o->tokenizer_path : "");
}

static int save_checkpoint(run *r) {
    if (!r->o->out_dir) return 0;
    double t0 = fb_now();
    fill_header(r);
    char path[4096];
    ckpt_path(path, sizeof path, r->o->out_dir, r->h.update);
    if (ckpt_save(path, &r->h, r->params, r->m, r->v)) return -1;
    ckpt_prune(r->o->out_dir, r->o->keep);
    double dt = fb_now() - t0;
    r->h.timers.ckpt += dt;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
    tele_begin(&r->tl, "ckpt");
    tele_int(&r->tl, "step", r->h.update);
    tele_str(&r->tl, "path", path);
    tele_int(&r->tl, "bytes", (long long)(sizeof(ckpt_header) + 3 * r->n * sizeof(float) + 8));
    tele_num(&r->tl, "ms", dt * 1e3);
    tele_end(&r->tl);
    return 0;
}

/* Mean loss over the first `batches` sequential B×T windows of the validation shard. */
static double evaluate(run *r, int *used) {
    loader L;
    const int B = r->o->hp.batch, T = r->o->hp.seq;
    *used = 0;
    if (loader_init(&L, &r->val, LOADER_SEQUENTIAL, T, 0)) return NAN;
    int32_t *in = malloc((size_t)B * T * sizeof(int32_t)), *tg = malloc((size_t)B * T * sizeof(int32_t));
    size_t windows = L.n_windows;
    int nb = r->o->eval_batches > 0 ? r->o->eval_batches : 1;
    if ((size_t)nb * B > windows) nb = (int)(windows / B);
    double sum = 0;
    for (int b = 0; b < nb; b++) {
        loader_next(&L, B, in, tg);
        sum += step_loss(&r->s, &r->pw, in, tg);
    }
    free(in);
    free(tg);
    loader_free(&L);
    *used = nb;
    return nb ? sum / nb : NAN;
}

static void do_eval(run *r) {
    if (!r->have_val) return;
    double t0 = fb_now();
    int nb;
    double vl = evaluate(r, &nb);
    double dt = fb_now() - t0;
    r->h.timers.eval += dt;
    if (nb == 0) return;
    if (vl < r->h.best_val_loss || r->h.best_val_loss == 0) r->h.best_val_loss = (float)vl;
    tele_begin(&r->tl, "eval");
    tele_int(&r->tl, "step", r->h.update);
    tele_num(&r->tl, "val_loss", vl);
    tele_num(&r->tl, "val_ppl", exp(vl));
    tele_int(&r->tl, "batches", nb);
    tele_int(&r->tl, "tokens", (long long)nb * r->o->hp.batch * r->o->hp.seq);
    tele_num(&r->tl, "ms", dt * 1e3);
    tele_end(&r->tl);
    if (!r->o->quiet) printf("update %lld | val loss %.4f | val ppl %.2f\n", (long long)r->h.update, vl, exp(vl));
}

static void do_sample(run *r) {
    if (!r->tok || r->o->sample_tokens <= 0) return;
    model mv = {.cfg = r->cfg, .data = r->params, .w = r->pw};
    infer_state st;
    sampler smp;
    int steps = r->o->sample_tokens + 1 < r->cfg.seq_len ? r->o->sample_tokens + 1 : r->cfg.seq_len;
    if (infer_init(&st, &mv, steps)) return;
    /* as the reference dashboard: temperature 0.8, top-k 50, from BOS; seeded per update */
    if (sampler_init(&smp, r->cfg.vocab_size, 0.8f, 0.0f, 50, r->o->hp.seed + (uint64_t)r->h.update) == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        double tps = 0;
        if (mem && infer_generate(&st, r->tok, &smp, "", steps, mem, &tps) >= 0) {
            fclose(mem);
            mem = NULL;
            tele_begin(&r->tl, "sample");
            tele_int(&r->tl, "step", r->h.update);
            tele_str(&r->tl, "text", text);
            tele_num(&r->tl, "tok_per_s", tps);
            tele_end(&r->tl);
            if (!r->o->quiet) printf("--- sample at update %lld ---\n%s---\n", (long long)r->h.update, text);
        }
        if (mem) fclose(mem);
        free(text);
        sampler_free(&smp);
    }
    infer_free(&st);
}

/* After a non-finite loss: find where the forward pass first went bad. */
static void diagnose_forward(run *r, char *out, size_t cap) {
    const eng_dims *d = &r->s.d;
    const size_t ND = (size_t)d->N * d->D;
    for (int i = 0; i <= 2 * r->cfg.n_layers; i++) {
        const float *x = r->s.res + i * ND;
        for (size_t k = 0; k < ND; k++)
            if (!isfinite(x[k])) {
                if (i == 0) snprintf(out, cap, "the token embedding (non-finite weights)");
                else snprintf(out, cap, "the forward pass, layer %d %s output", (i - 1) / 2,
                              (i - 1) % 2 == 0 ? "attention" : "FFN");
                return;
            }
    }
    snprintf(out, cap, "the classifier / cross-entropy (final RMSNorm and logits)");
}

static int check_space(run *r) {
    if (!r->o->out_dir) return 0;
    if (fb_mkdir_p(r->o->out_dir)) return -1;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.write_probe.%d", r->o->out_dir, (int)getpid());
    FILE *f = fopen(probe, "wb");
    if (!f) return fb_errno("checkpoint directory %s is not writable", r->o->out_dir);
    fclose(f);
    unlink(probe);
    struct statvfs sv;
    double need = (double)sizeof(ckpt_header) + 3.0 * r->n * sizeof(float) + 8;
    if (statvfs(r->o->out_dir, &sv) == 0) {
        double avail = (double)sv.f_bavail * sv.f_frsize;
        if (avail < need)
            return fb_err("not enough disk space in %s for a checkpoint: need %.1f MB, %.1f MB free", r->o->out_dir,
                          need / 1e6, avail / 1e6);
    }
    return 0;
}

static int setup(run *r) {
    train_opts *o = r->o;
    train_hparams *hp = &o->hp;
    if (hp->batch <= 0 || hp->seq <= 0 || hp->accum <= 0 || hp->steps <= 0)
        return fb_err("batch, seq, accum and steps must be positive (got %d, %d, %d, %d)", hp->batch, hp->seq,
                      hp->accum, hp->steps);
    if (!(hp->lr >= 0) || !(hp->beta1 >= 0 && hp->beta1 < 1) || !(hp->beta2 >= 0 && hp->beta2 < 1) || !(hp->eps > 0))
        return fb_err("invalid optimizer settings (lr %g, beta1 %g, beta2 %g, eps %g)", hp->lr, hp->beta1, hp->beta2,
                      hp->eps);
    if (tele_open(&r->tl, o->log_path)) return -1;
    r->e = eng_cpu_create(o->threads);
    if (!r->e) return -1;

    /* resume: the checkpoint decides the model and the trajectory */
    ckpt_header rh;
    char rpath[4096] = "";
    if (o->resume_dir) {
        if (ckpt_latest(o->resume_dir, rpath, sizeof rpath)) return -1;
        if (ckpt_read_header(rpath, &rh)) return -1;
        ckpt_cfg_unpack(rh.cfg, &o->cfg);
        *hp = rh.hp;
        if (o->resume_steps > 0) hp->steps = o->resume_steps;
        if (!o->out_dir) o->out_dir = o->resume_dir;
        if (rh.threads != r->e->threads)
            fprintf(stderr, "fable train: note: %s was written with %d threads, resuming with %d: the run continues "
                            "correctly but not bit-for-bit\n", rpath, rh.threads, r->e->threads);
    }
    /* model shape */
    model init;
    memset(&init, 0, sizeof init);
    if (o->init_path && !o->resume_dir) {
        if (model_load_llama2c(&init, o->init_path)) return -1;
        o->cfg = init.cfg;
    }
    r->cfg = o->cfg;
    if (model_config_validate(&r->cfg)) { model_free(&init); return -1; }
    if (hp->seq > r->cfg.seq_len && !o->seq_explicit && !o->resume_dir) hp->seq = r->cfg.seq_len;
    if (hp->seq > r->cfg.seq_len) {
        model_free(&init);
        return fb_err("--seq %d exceeds the model's seq_len %d", hp->seq, r->cfg.seq_len);
    }
    /* data */
    int dv = o->data_vocab;
    if (shard_open(&r->train, o->train_path, dv)) { model_free(&init); return -1; }
    if (r->train.vocab_size != r->cfg.vocab_size) {
        model_free(&init);
        return fb_err("%s holds ids of a %d-token vocabulary but the model has vocab_size %d: tokenize with the "
                      "model's tokenizer or choose a matching model", o->train_path, r->train.vocab_size,
                      r->cfg.vocab_size);
    }
    if (o->val_path) {
        if (shard_open(&r->val, o->val_path, dv)) { model_free(&init); return -1; }
        if (r->val.vocab_size != r->cfg.vocab_size) {
            model_free(&init);
            return fb_err("%s: vocab %d does not match the model's %d", o->val_path, r->val.vocab_size,
                          r->cfg.vocab_size);
        }
        if (r->val.n < (size_t)hp->batch * hp->seq + 1)
            fprintf(stderr, "fable train: note: %s is smaller than one %dx%d batch: no validation\n", o->val_path,
                    hp->batch, hp->seq);
        else
            r->have_val = 1;
    }
    if (loader_init(&r->ld, &r->train, (loader_kind)hp->sampler, hp->seq, hp->seed)) { model_free(&init); return -1; }

    /* parameters, gradients, Adam moments: four flat arrays of the same layout */
    r->n = model_num_params(&r->cfg);
    const size_t state_bytes = 4 * r->n * sizeof(float), avail = fb_mem_available();
    if (avail && state_bytes > avail) {
        model_free(&init);
        return fb_err("%zu parameters need %.2f GB for weights, gradients and Adam moments, but only %.2f GB of "
                      "memory is available", r->n, state_bytes / 1e9, avail / 1e9);
    }
    r->grads = r->e->alloc(r->e, r->n * sizeof(float));
    if (!r->grads) { model_free(&init); return -1; }
    model_params_view(&r->cfg, r->grads, &r->pg);
    memset(&r->h, 0, sizeof r->h);
    if (o->resume_dir) {
        if (ckpt_load(rpath, &r->h, &r->params, &r->m, &r->v)) return -1;
        if (r->h.data_tokens != r->train.n || r->h.data_vocab != r->train.vocab_size)
            return fb_err("%s does not match the data: it was trained on %s (%llu tokens, vocab %d), but --train %s "
                          "has %zu tokens, vocab %d",
                          rpath, r->h.data_path, (unsigned long long)r->h.data_tokens, r->h.data_vocab,
                          o->train_path, r->train.n, r->train.vocab_size);
        if (loader_restore(&r->ld, &r->h.loader)) return -1;
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", rpath);
    } else {
        r->params = r->e->alloc(r->e, r->n * sizeof(float));
        r->m = r->e->alloc(r->e, r->n * sizeof(float));
        r->v = r->e->alloc(r->e, r->n * sizeof(float));
        if (!r->params || !r->m || !r->v) { model_free(&init); return -1; }
        if (init.data) memcpy(r->params, init.data, r->n * sizeof(float));
        else model_init_weights(&r->cfg, r->params, hp->seed);
    }
    model_free(&init);
    model_params_view(&r->cfg, r->params, &r->pw);
    if (step_init(&r->s, r->e, &r->cfg, hp->batch, hp->seq)) return -1;
    if (check_space(r)) return -1;
    if (o->tokenizer_path) {
        r->tok = tok_load(o->tokenizer_path);
        if (!r->tok) return -1;
        if (tok_vocab_size(r->tok) != r->cfg.vocab_size)
            return fb_err("%s has %d tokens, the model's vocabulary is %d", o->tokenizer_path,
                          tok_vocab_size(r->tok), r->cfg.vocab_size);
    }
    r->peak = eng_peak_gflops(r->e);
    return 0;
}

static void teardown(run *r) {
    if (r->e) {
        step_free(&r->s);
        r->e->free(r->e, r->grads);
        /* params/m/v come from fb_alloc either way (cpu engine) */
        fb_free(r->params);
        fb_free(r->m);
        fb_free(r->v);
        r->e->destroy(r->e);
    }
    loader_free(&r->ld);
    shard_close(&r->train);
    if (r->have_val || r->val.map) shard_close(&r->val);
    if (r->tok) tok_free(r->tok);
    tele_close(&r->tl);
}

static void log_start(run *r) {
    const train_hparams *hp = &r->o->hp;
    tele *t = &r->tl;
    tele_begin(t, "start");
    tele_str(t, "engine", r->e->name);
    tele_int(t, "threads", r->e->threads);
    tele_int(t, "dim", r->cfg.dim);
    tele_int(t, "hidden_dim", r->cfg.hidden_dim);
    tele_int(t, "n_layers", r->cfg.n_layers);
    tele_int(t, "n_heads", r->cfg.n_heads);
    tele_int(t, "n_kv_heads", r->cfg.n_kv_heads);
    tele_int(t, "vocab_size", r->cfg.vocab_size);
    tele_int(t, "seq_len", r->cfg.seq_len);
    tele_int(t, "tied", r->cfg.tied);
    tele_int(t, "params", (long long)r->n);
    tele_int(t, "batch", hp->batch);
    tele_int(t, "seq", hp->seq);
    tele_int(t, "accum", hp->accum);
    tele_int(t, "steps", hp->steps);
    tele_num(t, "lr", hp->lr);
    tele_num(t, "min_lr", hp->min_lr);
    tele_int(t, "warmup", hp->warmup);
    tele_str(t, "schedule", hp->schedule == SCHED_COSINE ? "cosine" : "constant");
    tele_num(t, "beta1", hp->beta1);
    tele_num(t, "beta2", hp->beta2);
    tele_num(t, "eps", hp->eps);
    tele_num(t, "weight_decay", hp->weight_decay);
    tele_num(t, "grad_clip", hp->grad_clip);
    tele_str(t, "sampler", loader_kind_name((loader_kind)hp->sampler));
    tele_int(t, "seed", (long long)hp->seed);
    tele_int(t, "resumed_at", r->h.update);
    tele_str(t, "train", r->o->train_path);
    tele_int(t, "train_tokens", (long long)r->train.n);
    tele_num(t, "peak_gflops", r->peak);
    tele_num(t, "flops_per_token", model_flops_per_token(&r->cfg, hp->seq));
    tele_end(t);
}

int train_run(train_opts *o) {
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    int rc = setup(&r);
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", fb_errmsg());
        teardown(&r);
        return fb_err("%s", msg);
    }
    const train_hparams *hp = &o->hp;
    const int B = hp->batch, T = hp->seq, K = hp->accum;
    const size_t N = (size_t)B * T;
    const double flops_micro = step_flops(&r.cfg, B, T);
    int32_t *in = malloc(N * sizeof(int32_t)), *tg = malloc(N * sizeof(int32_t));
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    stop_signal = 0;
    log_start(&r);
    if (!o->quiet)
        printf("training %zu parameters (%d layers, dim %d, vocab %d) on %s: %d x %d tokens x %d accum, %d updates, "
               "%d threads, peak %.0f GFLOP/s\n",
               r.n, r.cfg.n_layers, r.cfg.dim, r.cfg.vocab_size, o->train_path, B, T, K, hp->steps, r.e->threads,
               r.peak);
    const double run_t0 = fb_now();
    double last_print = 0;
    int updates_this_run = 0;
    const char *stop_reason = "done";
    rc = 0;
    while (r.h.update < hp->steps) {
        const int u = (int)r.h.update + 1;
        const float lr = train_lr(hp, u);
        const double u_t0 = fb_now();
        double loss_sum = 0;
        for (int k = 0; k < K; k++) {
            const step_timers before = r.s.tm;
            double t0 = fb_now();
            if (loader_next(&r.ld, B, in, tg)) { rc = -1; break; }
            double t_data = fb_now() - t0;
            double loss = step_fwd_bwd(&r.s, &r.pw, &r.pg, in, tg, k > 0); /* k = 0 overwrites */
            double t_all = fb_now() - t0;
            r.h.micro_steps++;
            r.h.tokens_seen += (int64_t)N;
            if (!isfinite(loss)) {
                char where[256];
                diagnose_forward(&r, where, sizeof where);
                rc = fb_err("loss became %s at update %d, micro-step %d (phase: %s); training stopped without "
                            "saving; the last good checkpoint is %s",
                            isnan(loss) ? "NaN" : "infinite", u, k + 1, where,
                            r.last_ckpt[0] ? r.last_ckpt : "(none written yet)");
                break;
            }
            loss_sum += loss;
            const step_timers *a = &r.s.tm;
            tele_begin(&r.tl, "step");
            tele_int(&r.tl, "step", r.h.micro_steps);
            tele_int(&r.tl, "update", u);
            tele_num(&r.tl, "loss", loss);
            tele_num(&r.tl, "lr", lr);
            tele_int(&r.tl, "tokens", r.h.tokens_seen);
            tele_num(&r.tl, "t_data", t_data * 1e3);
            tele_num(&r.tl, "t_fwd", (a->fwd - before.fwd) * 1e3);
            tele_num(&r.tl, "t_bwd", (a->bwd_dx - before.bwd_dx) * 1e3);
            tele_num(&r.tl, "t_dw", (a->dw - before.dw) * 1e3);
            tele_num(&r.tl, "t_dw_wait", 0.0);
            tele_num(&r.tl, "t_cls", (a->cls - before.cls) * 1e3);
            tele_num(&r.tl, "t_rms", (a->rms - before.rms) * 1e3);
            tele_num(&r.tl, "ms", t_all * 1e3);
            tele_end(&r.tl);
            r.h.timers.data += t_data;
        }
        if (rc) break;
        const double t_opt0 = r.s.tm.opt;
        double gnorm = step_optimizer(&r.s, r.params, r.grads, r.m, r.v,
                                      &(optim_cfg){.lr = lr, .beta1 = hp->beta1, .beta2 = hp->beta2, .eps = hp->eps,
                                                   .weight_decay = hp->weight_decay, .grad_clip = hp->grad_clip},
                                      u, 1.0f / K);
        if (!isfinite(gnorm)) {
            rc = fb_err("gradient norm became %s at update %d (phase: backward); training stopped without saving; "
                        "the last good checkpoint is %s",
                        isnan(gnorm) ? "NaN" : "infinite", u, r.last_ckpt[0] ? r.last_ckpt : "(none written yet)");
            break;
        }
        r.h.update = u;
        updates_this_run++;
        const double dt = fb_now() - u_t0;
        const double loss = loss_sum / K;
        r.h.last_loss = (float)loss;
        const double gflops = flops_micro * K / dt / 1e9;
        tele_begin(&r.tl, "batch");
        tele_int(&r.tl, "batch", u);
        tele_num(&r.tl, "loss", loss);
        tele_num(&r.tl, "lr", lr);
        tele_num(&r.tl, "grad_norm", gnorm);
        tele_num(&r.tl, "t_opt", (r.s.tm.opt - t_opt0) * 1e3);
        tele_num(&r.tl, "train_ms", dt * 1e3);
        tele_num(&r.tl, "ms_per_step", dt * 1e3 / K);
        tele_num(&r.tl, "tokens_per_s", (double)N * K / dt);
        tele_int(&r.tl, "tokens", r.h.tokens_seen);
        tele_end(&r.tl);
        tele_begin(&r.tl, "perf");
        tele_int(&r.tl, "batch", u);
        tele_num(&r.tl, "gflops", gflops);
        tele_num(&r.tl, "tflops", gflops / 1e3);
        tele_num(&r.tl, "mfu_pct", r.peak > 0 ? 100.0 * gflops / r.peak : 0.0);
        tele_num(&r.tl, "peak_gflops", r.peak);
        tele_end(&r.tl);
        const double now = fb_now();
        if (!o->quiet && (now - last_print >= 1.0 || u == hp->steps || u == 1)) {
            printf("update %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.1f ms/step | %.0f tok/s | %.1f GFLOP/s "
                   "(%.0f%% MFU)\n",
                   u, hp->steps, loss, lr, gnorm, dt * 1e3 / K, (double)N * K / dt, gflops,
                   r.peak > 0 ? 100.0 * gflops / r.peak : 0.0);
            fflush(stdout);
            last_print = now;
        }
        if (o->eval_every > 0 && u % o->eval_every == 0 && u != hp->steps) do_eval(&r);
        if (o->sample_every > 0 && u % o->sample_every == 0 && u != hp->steps) do_sample(&r);
        int stopping = stop_signal || (o->time_limit > 0 && now - run_t0 >= o->time_limit) ||
                       (o->stop_after > 0 && updates_this_run >= o->stop_after);
        if ((o->ckpt_every > 0 && u % o->ckpt_every == 0 && u != hp->steps && !stopping)) {
            if (save_checkpoint(&r)) { rc = -1; break; }
        }
        if (stopping) {
            stop_reason = stop_signal ? "signal" : o->time_limit > 0 && now - run_t0 >= o->time_limit ? "time_limit"
                                                                                                   : "stop_after";
            break;
        }
    }
    r.h.timers.fwd += r.s.tm.fwd;
    r.h.timers.bwd_dx += r.s.tm.bwd_dx;
    r.h.timers.dw += r.s.tm.dw;
    r.h.timers.cls += r.s.tm.cls;
    r.h.timers.rms += r.s.tm.rms;
    r.h.timers.opt += r.s.tm.opt;
    r.h.timers.total += fb_now() - run_t0;
    if (rc == 0) {
        if (r.h.update > 0 && save_checkpoint(&r)) rc = -1;
        if (rc == 0 && (!strcmp(stop_reason, "done") || !strcmp(stop_reason, "time_limit"))) {
            do_eval(&r);
            do_sample(&r);
        }
    }
    char msg[2048] = "";
    if (rc) snprintf(msg, sizeof msg, "%s", fb_errmsg());
    tele_begin(&r.tl, "end");
    tele_int(&r.tl, "step", r.h.update);
    tele_str(&r.tl, "reason", rc ? "error" : stop_reason);
    if (rc) tele_str(&r.tl, "error", msg);
    tele_num(&r.tl, "last_loss", r.h.last_loss);
    tele_num(&r.tl, "seconds", r.h.timers.total);
    tele_str(&r.tl, "checkpoint", r.last_ckpt);
    tele_end(&r.tl);
    if (!o->quiet && rc == 0)
        printf("stopped (%s) at update %lld; checkpoint %s\n", stop_reason, (long long)r.h.update,
               r.last_ckpt[0] ? r.last_ckpt : "(none)");
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(in);
    free(tg);
    teardown(&r);
    return rc ? fb_err("%s", msg) : 0;
}
