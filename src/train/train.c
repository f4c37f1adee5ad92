/* fable — the training loop: data → micro-steps → AdamW updates, with evaluation,
 * samples, checkpoints (atomic, bit-exact resume), telemetry and clean stops. */
#include "fable/train.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fable/ckpt.h"
#include "fable/data.h"
#include "fable/dist.h"
#include "fable/engine.h"
#include "fable/infer.h"
#include "fable/plan.h"
#include "fable/report.h"
#include "fable/step.h"
#include "fable/telemetry.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

/* ---- stop requests ---------------------------------------------------------------- */
static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) { stop_signal = sig; }

/* ---- the run ------------------------------------------------------------------------ */
typedef struct {
    train_opts *o;
    model_config cfg;
    eng *e;
    step_ctx s;             /* the training state: parameters, gradients, moments, activations */
    shard train, val;
    int have_val;
    loader ld;
    size_t n;
    ckpt_header h;          /* running state, saved as is */
    tele tl;
    char log_path[4200];    /* where tl writes ("-" = stderr) */
    report_run rep;         /* this run's totals for the end report; rep.t0 = the run's start */
    tokenizer *tok;
    char last_ckpt[4096];   /* the newest checkpoint written (or resumed from) */
    int64_t last_ckpt_update;
    /* The newest checkpoint whose weights gave a finite loss in the update after it: a
     * checkpoint is only known good once the next forward pass has used its weights. Older
     * checkpoints are pruned (--keep) only then, so a blow-up never leaves only bad ones. */
    char good_ckpt[4096];
    int prune_pending;
    double peak;
    int32_t *in, *tg;       /* [K, N] the update's windows (host) */
    double *t_data;         /* [K] */
    /* ---- the data-parallel job (one rank of one without mpirun): see fable/dist.h ---- */
    dist dp;
    double *xall;           /* [world, rec_doubles] every rank's update record (exchange_update) */
    double *g_loss, *g_tdata; /* [world·K] the job's micro-steps in global order (rank-major) */
    double (*g_sec)[ENG_PH_COUNT]; /* [world·K + 1]: micro-steps, then rank 0's optimizer */
    double t_reduce;        /* seconds of the last gradient all-reduce */
    double plan_dt[8192];   /* wall seconds of the updates measured for the time plan (PLAN_AT of the budget) */
    int plan_n;             /* updates measured */
    /* corrections of the plan (correct_time_plan), made only by the process that planned */
    plan_in plan;           /* the plan's model of the run's time (eval, checkpoint, sample costs) */
    int correcting;         /* 1 from the plan on in this process */
    int check_i;            /* the next of CHECK_AT */
    double dt_plan_sum, dt_check_sum; /* wall seconds of the updates since the plan / the last check */
    int dt_plan_n, dt_check_n;
    int lock_fd;            /* fb_lock_dir of the output folder, -1 when none is held */
    float *rp, *rm, *rv;    /* resume: the checkpoint's params and moments (host), verified before use */
} run;

/* ---- the data-parallel job's view of an update ------------------------------------- */
/* Doubles of one rank's update record: K losses, K data times, (K + 1) rows of phase times. */
static size_t rec_doubles(int K) { return 2 * (size_t)K + (size_t)(K + 1) * ENG_PH_COUNT; }

/* Every rank's micro-step losses and timers, gathered into the job's global order
 * (g_loss, g_tdata, g_sec: micro-step j = rank·K + k, as one process with N·K would number
 * them), so that telemetry and the NaN check see the whole job on every rank. */
static void exchange_update(run *r, step_result *res) {
    const int K = r->o->hp.accum, W = r->dp.world;
    const size_t rec = rec_doubles(K);
    double *mine = r->xall + (size_t)r->dp.rank * rec;
    memcpy(mine, res->loss, K * sizeof(double));
    memcpy(mine + K, r->t_data, K * sizeof(double));
    memcpy(mine + 2 * K, res->sec, (size_t)(K + 1) * ENG_PH_COUNT * sizeof(double));
    if (W > 1) dist_allgather(&r->dp, mine, r->xall, rec * sizeof(double));
    for (int q = 0; q < W; q++) {
        const double *x = r->xall + (size_t)q * rec;
        memcpy(r->g_loss + q * K, x, K * sizeof(double));
        memcpy(r->g_tdata + q * K, x + K, K * sizeof(double));
        memcpy(r->g_sec + q * K, x + 2 * K, (size_t)K * ENG_PH_COUNT * sizeof(double));
    }
    memcpy(r->g_sec + W * K, r->xall + 2 * K + (size_t)K * ENG_PH_COUNT, ENG_PH_COUNT * sizeof(double));
    res->loss_mean = 0; /* as step_finish computes it, over the job's micro-steps */
    for (int j = 0; j < W * K; j++) res->loss_mean += r->g_loss[j] / (W * K);
}

/* A hash of everything every rank must start from alike: shape, trajectory, data position,
 * parameters and moments (streamed out of engine memory a slice at a time). */
static uint64_t start_hash(run *r) {
    uint64_t h = fb_hash64(FB_HASH_INIT, &r->cfg, sizeof r->cfg);
    h = fb_hash64(h, &r->o->hp, sizeof r->o->hp);
    h = fb_hash64(h, &r->ld.st, sizeof r->ld.st);
    h = fb_hash64(h, &r->h.update, sizeof r->h.update);
    const size_t slice = (size_t)1 << 20;
    float *buf = malloc(slice * sizeof(float));
    if (!buf) fb_die("out of memory");
    const float *parts[3] = {r->s.params, r->s.m, r->s.v};
    for (int p = 0; p < 3; p++)
        for (size_t off = 0; off < r->n; off += slice) {
            const size_t k = r->n - off < slice ? r->n - off : slice;
            r->e->download(r->e, buf, parts[p] + off, k * sizeof(float));
            h = fb_hash64(h, buf, k * sizeof(float));
        }
    free(buf);
    return h;
}

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
    snprintf(h->engine, sizeof h->engine, "%s", r->e->name);
    h->precision = r->e->precision;
    h->world_size = r->dp.world;
    h->dropout = r->o->dropout;
    snprintf(h->data_path, sizeof h->data_path, "%s", r->o->train_path);
    snprintf(h->tokenizer_path, sizeof h->tokenizer_path, "%s", r->o->tokenizer_path ? r->o->tokenizer_path : "");
}

/* Streams parameters and moments from engine memory into the checkpoint, a slice at a time.
 * A value that is not finite (the update that was just applied overflowed) stops the save:
 * the file is not written, and the previous checkpoint stays the newest. */
static int ckpt_source(void *ctx, int part, size_t off, size_t n, float *dst) {
    run *r = ctx;
    step_ctx *s = &r->s;
    const float *src = part == 0 ? s->params : part == 1 ? s->m : s->v;
    s->e->download(s->e, dst, src + off, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return fb_err("%s %zu became %s at update %lld (phase: optimizer update)",
                          part == 0 ? "parameter" : part == 1 ? "Adam first moment" : "Adam second moment", off + i,
                          isnan(dst[i]) ? "NaN" : "infinite", (long long)r->h.update);
    return 0;
}

static int save_checkpoint(run *r) {
    if (!r->o->out_dir) return 0;
    double t0 = fb_now();
    fill_header(r);
    char path[4096];
    ckpt_path(path, sizeof path, r->o->out_dir, r->h.update);
    /* rank 0 alone writes; every rank learns whether it could */
    int rc = 0;
    if (r->dp.rank == 0 && ckpt_save_from(path, &r->h, ckpt_source, r)) {
        char why[1536];
        snprintf(why, sizeof why, "%s", fb_errmsg());
        rc = fb_err("checkpoint %s not written: %s; the last good checkpoint is %s", path, why,
                    r->good_ckpt[0] ? r->good_ckpt : "(none yet)");
    }
    char why0[1536];
    if (dist_agree_why(&r->dp, rc, why0, sizeof why0)) return rc ? -1 : fb_err("rank 0: %s", why0);
    r->prune_pending = r->dp.rank == 0;
    double dt = fb_now() - t0;
    r->h.timers.ckpt += dt;
    r->rep.ckpt_s += dt;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
    r->last_ckpt_update = r->h.update;
    tele_ckpt(&r->tl, r->h.update, path, (long long)(sizeof(ckpt_header) + 3 * r->n * sizeof(float) + 8), dt);
    return 0;
}

/* Mean loss over the first `batches` sequential B×T windows of the validation shard. */
static double evaluate(run *r, int *used) {
    loader L;
    const int B = r->o->hp.batch, T = r->o->hp.seq;
    *used = 0;
    if (loader_init(&L, &r->val, LOADER_SEQUENTIAL, T, 0)) return NAN;
    size_t windows = L.n_windows;
    int nb = r->o->eval_batches > 0 ? r->o->eval_batches : 1;
    if ((size_t)nb * B > windows) nb = (int)(windows / B);
    /* batch b on rank b mod world; the per-batch losses merged, then summed in batch order:
     * the same number as one process computes */
    double *part = calloc(nb > 0 ? nb : 1, sizeof *part), sum = 0;
    if (!part) fb_die("out of memory");
    for (int b = 0; b < nb; b++) {
        if (b % r->dp.world != r->dp.rank) { loader_skip(&L, B); continue; }
        loader_next(&L, B, r->in, r->tg);
        part[b] = step_loss(&r->s, r->in, r->tg);
    }
    dist_merge(&r->dp, part, nb);
    for (int b = 0; b < nb; b++) sum += part[b];
    free(part);
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
    r->rep.eval_s += dt;
    if (nb == 0) return;
    if (vl < r->h.best_val_loss || r->h.best_val_loss == 0) r->h.best_val_loss = (float)vl;
    tele_eval(&r->tl, r->h.update, vl, nb, (long long)nb * r->o->hp.batch * r->o->hp.seq, dt, fb_now() - r->rep.t0);
    if (!r->o->quiet) printf("update %lld | val loss %.4f | val ppl %.2f\n", (long long)r->h.update, vl, exp(vl));
}

/* A sample from the current weights (downloaded to the host: the edge), as the reference
 * dashboard: temperature 0.8, top-k 50, from BOS; seeded per update. */
static void do_sample_timed(run *r);
static void do_sample(run *r) {
    double t0 = fb_now();
    do_sample_timed(r);
    r->rep.sample_s += fb_now() - t0;
}

static void do_sample_timed(run *r) {
    if (!r->tok || r->o->sample_tokens <= 0 || r->dp.rank != 0) return;
    model mv;
    if (model_create(&mv, &r->cfg)) return;
    step_get_params(&r->s, mv.data);
    infer_state st;
    sampler smp;
    int steps = r->o->sample_tokens + 1 < r->cfg.seq_len ? r->o->sample_tokens + 1 : r->cfg.seq_len;
    if (infer_init(&st, &mv, steps)) { model_free(&mv); return; }
    if (sampler_init(&smp, r->cfg.vocab_size, 0.8f, 0.0f, 50, r->o->hp.seed + (uint64_t)r->h.update) == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        double tps = 0;
        if (mem && infer_generate(&st, r->tok, &smp, "", steps, mem, &tps) >= 0) {
            fclose(mem);
            mem = NULL;
            tele_sample(&r->tl, r->h.update, text, tps);
            if (!r->o->quiet) printf("--- sample at update %lld ---\n%s---\n", (long long)r->h.update, text);
        }
        if (mem) fclose(mem);
        free(text);
        sampler_free(&smp);
    }
    infer_free(&st);
    model_free(&mv);
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

/* The checkpoint to resume from decides the model and the trajectory. */
static int setup_resume(run *r, char *rpath, size_t cap) {
    train_opts *o = r->o;
    if (ckpt_latest(o->resume_dir, rpath, cap)) return -1;
    /* the whole file is read and its checksum verified before its header decides the shapes */
    if (ckpt_load(rpath, &r->h, &r->rp, &r->rm, &r->rv)) return -1;
    const ckpt_header rh = r->h;
    ckpt_cfg_unpack(rh.cfg, &o->cfg);
    o->hp = rh.hp;
    o->dropout = rh.dropout;
    if (o->resume_steps > 0) o->hp.steps = o->resume_steps;
    if (!o->out_dir) o->out_dir = o->resume_dir;
    const int was_world = rh.world_size > 0 ? rh.world_size : 1;
    if (was_world != r->dp.world) {
        char how[64];
        if (was_world == 1) snprintf(how, sizeof how, "without mpirun");
        else snprintf(how, sizeof how, "with mpirun -np %d", was_world);
        return fb_err("%s was written by a job of %d process%s, this job has %d: resume it %s (the data each "
                      "process reads and the order of the gradient sums depend on the number of processes)",
                      rpath, was_world, was_world == 1 ? "" : "es", r->dp.world, how);
    }
    const char *was = rh.engine[0] ? rh.engine : "cpu";
    if (strcmp(was, r->e->name) || rh.precision != r->e->precision)
        fprintf(stderr, "fable train: note: %s was written by the %s engine in %s; resuming on %s in %s: the run "
                        "continues correctly but not bit-for-bit\n",
                rpath, was, eng_precision_name(rh.precision), r->e->name, eng_precision_name(r->e->precision));
    else if (rh.threads != r->e->threads)
        fprintf(stderr, "fable train: note: %s was written with %d threads, resuming with %d: the run continues "
                        "correctly but not bit-for-bit\n", rpath, rh.threads, r->e->threads);
    return 0;
}

/* Training and validation shards, checked against the model's vocabulary. */
static int setup_data(run *r) {
    train_opts *o = r->o;
    const train_hparams *hp = &o->hp;
    int dv = o->data_vocab;
    if (shard_open(&r->train, o->train_path, dv)) return -1;
    if (r->train.vocab_size != r->cfg.vocab_size)
        return fb_err("%s holds ids of a %d-token vocabulary but the model has vocab_size %d: tokenize with the "
                      "model's tokenizer or choose a matching model", o->train_path, r->train.vocab_size,
                      r->cfg.vocab_size);
    if (o->val_path) {
        if (shard_open(&r->val, o->val_path, dv)) return -1;
        if (r->val.vocab_size != r->cfg.vocab_size)
            return fb_err("%s: vocab %d does not match the model's %d", o->val_path, r->val.vocab_size,
                          r->cfg.vocab_size);
        if (r->val.n < (size_t)hp->batch * hp->seq + 1)
            fprintf(stderr, "fable train: note: %s is smaller than one %dx%d batch: no validation\n", o->val_path,
                    hp->batch, hp->seq);
        else
            r->have_val = 1;
    }
    return loader_init(&r->ld, &r->train, (loader_kind)hp->sampler, hp->seq, hp->seed);
}

/* Parameters and moments into engine memory: from the checkpoint, the --init model, or the seed. */
static int setup_weights(run *r, const char *rpath, model *init) {
    train_opts *o = r->o;
    if (o->resume_dir) { /* r->h and the arrays were loaded by setup_resume */
        step_set_params(&r->s, r->rp);
        step_set_moments(&r->s, r->rm, r->rv);
        fb_free(r->rp);
        fb_free(r->rm);
        fb_free(r->rv);
        r->rp = r->rm = r->rv = NULL;
        if (r->h.data_tokens != r->train.n || r->h.data_vocab != r->train.vocab_size)
            return fb_err("%s does not match the data: it was trained on %s (%llu tokens, vocab %d), but --train %s "
                          "has %zu tokens, vocab %d",
                          rpath, r->h.data_path, (unsigned long long)r->h.data_tokens, r->h.data_vocab,
                          o->train_path, r->train.n, r->train.vocab_size);
        if (loader_restore(&r->ld, &r->h.loader)) return -1;
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", rpath);
        r->last_ckpt_update = r->h.update;
    } else if (init->data) {
        memset(&r->h, 0, sizeof r->h);
        step_set_params(&r->s, init->data);
    } else {
        memset(&r->h, 0, sizeof r->h);
        step_init_weights(&r->s, o->hp.seed);
    }
    return 0;
}

static int setup(run *r) {
    train_opts *o = r->o;
    train_hparams *hp = &o->hp;
    if (hp->batch <= 0 || hp->seq <= 0 || hp->accum <= 0 || hp->steps <= 0)
        return fb_err("batch, seq, accum and steps must be positive (got %d, %d, %d, %d)", hp->batch, hp->seq,
                      hp->accum, hp->steps);
    if (hp->accum > STEP_MAX_ACCUM) return fb_err("--accum %d is more than %d", hp->accum, STEP_MAX_ACCUM);
    if (!(hp->lr >= 0) || !(hp->beta1 >= 0 && hp->beta1 < 1) || !(hp->beta2 >= 0 && hp->beta2 < 1) || !(hp->eps > 0))
        return fb_err("invalid optimizer settings (lr %g, beta1 %g, beta2 %g, eps %g)", hp->lr, hp->beta1, hp->beta2,
                      hp->eps);
    /* one run per folder, locked before anything in it (the log may live there) is opened;
     * in a data-parallel job rank 0 alone writes there, and holds the lock */
    const char *dir = o->out_dir ? o->out_dir : o->resume_dir;
    if (dir && r->dp.rank == 0) {
        if (fb_mkdir_p(dir)) return -1;
        if ((r->lock_fd = fb_lock_dir(dir)) < 0) return -1;
    }
    r->e = eng_create(o->engine, &(eng_opts){.threads = o->threads, .precision = o->precision, .device = 0});
    if (!r->e) return -1;
    char rpath[4096] = "";
    if (o->resume_dir && setup_resume(r, rpath, sizeof rpath)) return -1;
    /* model shape */
    model init;
    memset(&init, 0, sizeof init);
    if (o->init_path && !o->resume_dir) {
        if (model_load_llama2c(&init, o->init_path)) return -1;
        o->cfg = init.cfg;
    }
    r->cfg = o->cfg;
    int rc = model_config_validate(&r->cfg);
    if (!rc && hp->seq > r->cfg.seq_len && !o->seq_explicit && !o->resume_dir) hp->seq = r->cfg.seq_len;
    if (!rc && hp->seq > r->cfg.seq_len) rc = fb_err("--seq %d exceeds the model's seq_len %d", hp->seq, r->cfg.seq_len);
    if (!rc) rc = setup_data(r);
    r->n = model_num_params(&r->cfg);
    if (!rc) rc = step_init(&r->s, r->e, &r->cfg, hp->batch, hp->seq, hp->accum, 1);
    if (!rc) rc = step_set_dropout(&r->s, o->dropout, 0);
    if (!rc) rc = setup_weights(r, rpath, &init);
    model_free(&init);
    if (rc) return -1;
    if (!o->resume_dir) {
        r->h.time_plan = o->plan_by_time ? TIME_PLAN_PENDING : TIME_PLAN_NONE;
    } else if (r->h.time_plan == TIME_PLAN_PENDING) {
        if (o->resume_steps > 0) r->h.time_plan = TIME_PLAN_NONE;   /* --steps on resume decides */
        else if (o->time_limit <= 0)
            return fb_err("%s was saved before its run had planned its updates by time: resume it with --time-limit "
                          "SECONDS (it plans again) or --steps N", rpath);
    }
    if (check_space(r)) return -1;
    /* telemetry: --log, else a file in the run folder, so that the terminal stays readable */
    if (o->log_path) snprintf(r->log_path, sizeof r->log_path, "%s", o->log_path);
    else if (o->out_dir) snprintf(r->log_path, sizeof r->log_path, "%s/train.jsonl", o->out_dir);
    else snprintf(r->log_path, sizeof r->log_path, "-");
    if (tele_open(&r->tl, r->log_path)) return -1;
    if (o->tokenizer_path) {
        r->tok = tok_load(o->tokenizer_path);
        if (!r->tok) return -1;
        if (tok_vocab_size(r->tok) != r->cfg.vocab_size)
            return fb_err("%s has %d tokens, the model's vocabulary is %d", o->tokenizer_path,
                          tok_vocab_size(r->tok), r->cfg.vocab_size);
    }
    const size_t N = (size_t)hp->batch * hp->seq;
    r->in = malloc(hp->accum * N * sizeof(int32_t));
    r->tg = malloc(hp->accum * N * sizeof(int32_t));
    r->t_data = calloc(hp->accum, sizeof(double));
    const size_t nk = (size_t)r->dp.world * hp->accum;
    r->xall = calloc(r->dp.world * rec_doubles(hp->accum), sizeof(double));
    r->g_loss = calloc(nk, sizeof(double));
    r->g_tdata = calloc(nk, sizeof(double));
    r->g_sec = calloc(nk + 1, sizeof *r->g_sec);
    if (!r->in || !r->tg || !r->t_data || !r->xall || !r->g_loss || !r->g_tdata || !r->g_sec)
        return fb_err("out of memory for the data windows");
    r->peak = eng_peak_gflops(r->e);
    return 0;
}

static void teardown(run *r) {
    if (r->e) {
        step_free(&r->s);
        r->e->destroy(r->e);
    }
    free(r->in);
    free(r->tg);
    free(r->t_data);
    free(r->xall);
    free(r->g_loss);
    free(r->g_tdata);
    free(r->g_sec);
    loader_free(&r->ld);
    shard_close(&r->train);
    if (r->have_val || r->val.map) shard_close(&r->val);
    if (r->tok) tok_free(r->tok);
    tele_close(&r->tl);
    fb_free(r->rp);
    fb_free(r->rm);
    fb_free(r->rv);
    fb_unlock_dir(r->lock_fd);
}

static void log_start(run *r) {
    const train_hparams *hp = &r->o->hp;
    tele *t = &r->tl;
    tele_begin(t, "start");
    tele_str(t, "engine", r->e->name);
    tele_str(t, "precision", eng_precision_name(r->e->precision));
    tele_str(t, "device", r->e->device);
    tele_int(t, "threads", r->e->threads);
    tele_int(t, "world_size", r->dp.world);
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
    tele_str(t, "schedule", train_schedule_name(hp->schedule));
    tele_num(t, "beta1", hp->beta1);
    tele_num(t, "beta2", hp->beta2);
    tele_num(t, "eps", hp->eps);
    tele_num(t, "weight_decay", hp->weight_decay);
    tele_num(t, "grad_clip", hp->grad_clip);
    tele_num(t, "dropout", r->o->dropout);
    tele_str(t, "sampler", loader_kind_name((loader_kind)hp->sampler));
    tele_int(t, "seed", (long long)hp->seed);
    tele_int(t, "resumed_at", r->h.update);
    tele_str(t, "train", r->o->train_path);
    tele_int(t, "train_tokens", (long long)r->train.n);
    tele_num(t, "peak_gflops", r->peak);
    tele_num(t, "flops_per_token", model_flops_per_token(&r->cfg, hp->seq));
    /* what a follower (the dashboard, a plot) needs to find and describe the run */
    const char *preset = report_preset_name(&r->cfg);
    tele_str(t, "preset", preset ? preset : "");
    tele_str(t, "recipe", r->o->recipe ? r->o->recipe : "");
    tele_int(t, "pid", (long long)getpid());
    tele_str(t, "out", r->o->out_dir ? r->o->out_dir : "");
    tele_str(t, "log", r->log_path);
    tele_str(t, "tokenizer", r->o->tokenizer_path ? r->o->tokenizer_path : "");
    tele_str(t, "val", r->o->val_path ? r->o->val_path : "");
    tele_num(t, "time_limit", r->o->time_limit);
    report_start_fields(t, &r->cfg, hp->seq);
    tele_end(t);
}

/* "the last good checkpoint is X", and the newer one that holds the weights which failed */
static const char *good_ckpt_note(run *r, int u, char *buf, size_t cap) {
    const char *good = r->good_ckpt[0] ? r->good_ckpt : "(none yet)";
    if (r->last_ckpt[0] && strcmp(r->last_ckpt, r->good_ckpt) && r->last_ckpt_update == u - 1)
        snprintf(buf, cap, "%s (%s holds the weights that led to it)", good, r->last_ckpt);
    else
        snprintf(buf, cap, "%s", good);
    return buf;
}

/* One update: K micro-steps and AdamW queued on the engine (data for micro-step k+1 is read
 * while the engine works on k), then the one synchronisation. 0, or -1 + fb_err. */
static int run_update(run *r, int u, float lr, step_result *res) {
    const train_hparams *hp = &r->o->hp;
    const int B = hp->batch, K = hp->accum, W = r->dp.world, me = r->dp.rank;
    const size_t N = (size_t)B * hp->seq;
    /* the job's N·K·B windows of this update, in one global order; this rank's are r·K .. r·K+K-1 */
    double t0 = fb_now();
    loader_skip(&r->ld, (size_t)me * K * B);
    for (int k = 0; k < K; k++) r->t_data[k] = 0;
    r->t_data[0] = fb_now() - t0;
    /* dropout masks: fresh for every update and rank, the same on a resume */
    step_set_dropout(&r->s, r->o->dropout, eng_drop_hash(eng_drop_hash((uint32_t)(hp->seed ^ hp->seed >> 32), (uint32_t)u), (uint32_t)me));
    for (int k = 0; k < K; k++) {
        t0 = fb_now();
        if (loader_next(&r->ld, B, r->in + k * N, r->tg + k * N)) return -1;
        if (k == K - 1) loader_skip(&r->ld, (size_t)(W - 1 - me) * K * B);
        r->t_data[k] += fb_now() - t0;
        step_fwd_bwd(&r->s, r->in + k * N, r->tg + k * N, k);
    }
    t0 = fb_now();
    dist_reduce_grads(&r->dp, &r->s); /* every rank now holds Σ over the job's N·K micro-steps */
    r->t_reduce = fb_now() - t0;
    step_optimizer(&r->s, &(optim_cfg){.lr = lr, .beta1 = hp->beta1, .beta2 = hp->beta2, .eps = hp->eps,
                                       .weight_decay = hp->weight_decay, .grad_clip = hp->grad_clip},
                   u, 1.0f / (K * W));
    step_finish(&r->s, res);
    exchange_update(r, res);
    char good[8400];
    for (int j = 0; j < W * K; j++)
        if (!isfinite(r->g_loss[j])) {
            char where[256];
            if (j / K == me) step_diagnose(&r->s, where, sizeof where);
            else snprintf(where, sizeof where, "on rank %d", j / K);
            return fb_err("loss became %s at update %d, micro-step %d (phase: %s); training stopped without saving; "
                          "the last good checkpoint is %s",
                          isnan(r->g_loss[j]) ? "NaN" : "infinite", u, j + 1, where,
                          good_ckpt_note(r, u, good, sizeof good));
        }
    if (!isfinite(res->grad_norm))
        return fb_err("gradient norm became %s at update %d (phase: backward); training stopped without saving; the "
                      "last good checkpoint is %s",
                      isnan(res->grad_norm) ? "NaN" : "infinite", u, good_ckpt_note(r, u, good, sizeof good));
    /* this update's forward passes used the weights of update u-1: its checkpoint is good */
    if (r->last_ckpt[0] && r->last_ckpt_update == u - 1) {
        snprintf(r->good_ckpt, sizeof r->good_ckpt, "%s", r->last_ckpt);
        if (r->prune_pending && r->o->out_dir) ckpt_prune(r->o->out_dir, r->o->keep);
        r->prune_pending = 0;
    }
    return 0;
}

/* Telemetry of one finished update: its micro-steps, the update, its FLOP rate. */
static void log_update(run *r, int u, float lr, const step_result *res, double dt) {
    const train_hparams *hp = &r->o->hp;
    const int K = hp->accum * r->dp.world; /* the job's micro-steps, in global order (exchange_update) */
    const size_t N = (size_t)hp->batch * hp->seq;
    const int async = r->e->dw_async;
    int64_t tokens = r->h.tokens_seen - (int64_t)(K * N);
    for (int k = 0; k < K; k++) {
        const double *t = r->g_sec[k];
        tokens += (int64_t)N;
        tele_step_rec sr = {.step = r->h.micro_steps - K + k + 1, .update = u, .loss = r->g_loss[k], .lr = lr,
                            .tokens = tokens, .t_data = r->g_tdata[k], .t_fwd = t[ENG_PH_FWD],
                            .t_bwd = t[ENG_PH_BWD], .t_dw = t[ENG_PH_DW], .t_dw_wait = t[ENG_PH_DW_WAIT],
                            .t_cls = t[ENG_PH_CLS], .t_rms = t[ENG_PH_RMS]};
        /* the micro-step's time on the engine's main queue (overlapped dW counts only as its wait) */
        sr.ms = r->g_tdata[k] + t[ENG_PH_FWD] + t[ENG_PH_RMS] + t[ENG_PH_CLS] + t[ENG_PH_BWD] +
                (async ? t[ENG_PH_DW_WAIT] : t[ENG_PH_DW]);
        tele_step(&r->tl, &sr);
        r->h.timers.data += r->g_tdata[k]; /* phase timers: summed over the job's ranks */
    }
    const double *to = r->g_sec[K];
    double ph[ENG_PH_COUNT] = {0};
    for (int k = 0; k <= K; k++)
        for (int p = 0; p < ENG_PH_COUNT; p++) ph[p] += r->g_sec[k][p];
    r->h.timers.fwd += ph[ENG_PH_FWD];
    r->h.timers.bwd_dx += ph[ENG_PH_BWD];
    r->h.timers.dw += ph[ENG_PH_DW];
    r->h.timers.cls += ph[ENG_PH_CLS];
    r->h.timers.rms += ph[ENG_PH_RMS];
    r->h.timers.opt += ph[ENG_PH_OPT];
    /* the end report's phases: the mean rank's time, so that they share the wall time (the
     * job's micro-steps ran side by side); its peak is the job's (report_run_begin) */
    const double W = r->dp.world;
    double t_data = 0, ph_rank[ENG_PH_COUNT];
    for (int k = 0; k < K; k++) t_data += r->g_tdata[k];
    for (int p = 0; p < ENG_PH_COUNT; p++) ph_rank[p] = ph[p] / W;
    report_run_update(&r->rep, ph_rank, t_data / W, dt, (long long)(N * K),
                      step_flops(&r->cfg, hp->batch, hp->seq) * K);
    const double gflops = step_flops(&r->cfg, hp->batch, hp->seq) * K / dt / 1e9;
    tele_batch(&r->tl, u, res->loss_mean, lr, res->grad_norm, to[ENG_PH_OPT], to[ENG_PH_DW_WAIT], dt, K,
               (double)N * K / dt, r->h.tokens_seen, fb_now() - r->rep.t0);
    tele_perf(&r->tl, u, gflops, r->peak * r->dp.world);
    if (r->dp.world > 1) { /* the gradient all-reduce of this update, as rank 0 saw it */
        tele *t = &r->tl;
        tele_begin(t, "dist");
        tele_int(t, "update", u);
        tele_int(t, "world_size", r->dp.world);
        tele_num(t, "t_reduce", r->t_reduce);
        tele_num(t, "t_wait", r->dp.t_wait);
        tele_num(t, "t_comm", r->dp.t_comm);
        tele_num(t, "t_copy", r->dp.t_copy);
        tele_num(t, "t_sum", r->dp.t_sum);
        tele_int(t, "bytes", (long long)r->dp.bytes);
        tele_int(t, "overlap", 0);
        tele_end(t);
    }
}

/* Under mpirun: rank 0 alone logs and prints; each rank's default thread count is its share
 * of this machine's cores. */
static void job_options(run *r) {
    train_opts *o = r->o;
    if (r->dp.rank > 0) o->log_path = "/dev/null", o->quiet = 1;
    if (o->threads <= 0) {
        o->threads = omp_get_num_procs() / r->dp.local_world;
        if (o->threads < 1) o->threads = 1;
    }
}

/* After setup, collectively: did every rank start, and from the same state? */
static int start_agree(run *r, int rc) {
    char why[1536];
    const int bad = dist_agree_why(&r->dp, rc, why, sizeof why);
    if (rc) return rc;
    if (bad) return fb_err("rank %d could not start: %s", bad - 1, why);
    if (r->dp.world > 1 && (rc = dist_same(&r->dp, start_hash(r))))
        return fb_err("rank %d starts from other weights, settings or data position than rank 0 (start checksums "
                      "differ): every rank must run the same command on the same files", rc - 1);
    return 0;
}

/* The time plan is made when this fraction of the budget has passed (or 8192 updates were
 * measured): the first updates run slower than the steady state (cold caches, page faults),
 * and the later half of 5% is measured past them. Before the plan the schedule runs on the
 * recipe's provisional total. */
#define PLAN_AT 0.05
/* The fraction of the budget the plan keeps free for noise. It alone cannot cover this VM,
 * which runs in phases of ~23 and ~28 ms per stories260K 8×256 update: a plan made in a fast
 * minute was cut by the limit at 90% of its plan (docs/budget.md). The checks below correct
 * the plan as the run goes. */
#define PLAN_MARGIN 0.04

/* After the plan, the run checks its speed when these fractions of the budget have passed and,
 * when the plan's end no longer fits (or leaves time unused), changes the total: the plan
 * corrects itself (correct_time_plan). The last check leaves a tenth of the budget, so a
 * slowdown after it costs at most a fraction of that. */
static const double CHECK_AT[] = {0.25, 0.5, 0.75, 0.9};
#define N_CHECKS ((int)(sizeof CHECK_AT / sizeof CHECK_AT[0]))
/* The fraction of the budget a correction keeps free: less than the plan's, since the time
 * after the last check is short and the speed used is the slower of two means (below). */
#define CHECK_MARGIN 0.025

/* Stop reasons, agreed by every rank with dist_or. */
enum { STOP_SIGNAL = 1, STOP_TIME = 2, STOP_AFTER = 4 };

/* The time plan (include/fable/plan.h), made after update u: one evaluation, sample and
 * checkpoint are timed as they happen here, the update time is the mean wall time of the
 * later half of the updates measured so far (see below), and the updates that fit in the time
 * left become hp.steps. The checkpoint is written again with the plan in it, so that a
 * resume continues the planned run bit-for-bit. */
static int make_time_plan(run *r, int u, double run_t0) {
    train_opts *o = r->o;
    train_hparams *hp = &o->hp;
    double t_eval = 0, t_sample = 0, t_ckpt = 0, t;
    if (r->have_val) { t = fb_now(); do_eval(r); t_eval = fb_now() - t; }
    if (r->tok && o->sample_tokens > 0) { t = fb_now(); do_sample(r); t_sample = fb_now() - t; }
    if (o->out_dir) {
        t = fb_now();
        if (save_checkpoint(r)) return -1;
        t_ckpt = fb_now() - t;
    }
    /* the mean of the later half: the first updates run slower than the steady state (cold
     * caches, page faults: 121.6 vs ~114 ms in a 20-minute stories260K run, which wasted 5% of
     * its budget); the mean, not the median, so that a busy machine's slow updates count */
    const int first = r->plan_n / 2, used = r->plan_n - first;
    double sum = 0;
    for (int i = first; i < r->plan_n; i++) sum += r->plan_dt[i];
    const double t_update = sum / used;
    plan_in p = {.limit = o->time_limit, .margin = PLAN_MARGIN, .elapsed = fb_now() - run_t0 + t_ckpt, .u0 = u,
                 .t_update = t_update, .t_eval = t_eval, .t_ckpt = t_ckpt, .t_sample = t_sample,
                 .eval_every = r->have_val ? o->eval_every : 0, .ckpt_every = o->out_dir ? o->ckpt_every : 0,
                 .sample_every = t_sample > 0 ? o->sample_every : 0};
    const int64_t n = plan_updates(&p);
    hp->steps = n > INT32_MAX ? INT32_MAX : (int32_t)n;
    if (hp->warmup >= hp->steps) hp->warmup = hp->steps / 10;    /* a plan shorter than the warmup */
    double agreed[2] = {r->dp.rank == 0 ? hp->steps : 0, r->dp.rank == 0 ? hp->warmup : 0};
    dist_merge(&r->dp, agreed, 2); /* a data-parallel job runs rank 0's plan */
    hp->steps = (int32_t)agreed[0];
    hp->warmup = (int32_t)agreed[1];
    r->h.time_plan = TIME_PLAN_DONE;
    r->plan = p;
    r->correcting = 1;
    if (o->out_dir && save_checkpoint(r)) return -1;
    tele *tl = &r->tl;
    tele_begin(tl, "plan");
    tele_int(tl, "update", u);
    tele_int(tl, "steps", hp->steps);
    tele_int(tl, "warmup", hp->warmup);
    tele_num(tl, "time_limit", o->time_limit);
    tele_num(tl, "elapsed_s", p.elapsed);
    tele_num(tl, "predicted_end_s", plan_end_time(&p, n));
    tele_num(tl, "t_update_ms", t_update * 1e3);
    tele_num(tl, "t_eval_ms", t_eval * 1e3);
    tele_num(tl, "t_ckpt_ms", t_ckpt * 1e3);
    tele_num(tl, "t_sample_ms", t_sample * 1e3);
    tele_int(tl, "measured_updates", used);
    tele_end(tl);
    if (!o->quiet)
        printf("time plan: %d updates fit in %.0f s (%.1f ms per update, measured over %d; eval %.0f ms, checkpoint "
               "%.0f ms, sample %.0f ms); the %s schedule ends at update %d\n",
               hp->steps, o->time_limit, t_update * 1e3, used, t_eval * 1e3, t_ckpt * 1e3, t_sample * 1e3,
               train_schedule_name(hp->schedule), hp->steps);
    return 0;
}

/* A check of the plan after update u (CHECK_AT): the speed since the plan and since the last
 * check, the slower of the two means (the VM runs in phases of different speed; a plan made
 * in a fast one overruns), the updates that now fit, and a new total when it differs. The
 * schedule goes on from its progress at u (lr_replan), so the learning rate stays continuous;
 * the correction is stored in the checkpoint from then on, and a resumed run follows it
 * without checking again. Every rank takes rank 0's total; returns rank 0's elapsed seconds. */
static double correct_time_plan(run *r, int u, double run_t0) {
    train_opts *o = r->o;
    train_hparams *hp = &o->hp;
    const double overall = r->dt_plan_sum / r->dt_plan_n, recent = r->dt_check_sum / r->dt_check_n;
    plan_in p = r->plan;
    p.margin = CHECK_MARGIN;
    p.elapsed = fb_now() - run_t0;
    p.u0 = u;
    p.t_update = overall > recent ? overall : recent;
    int64_t n = plan_updates(&p);
    double agreed[2] = {r->dp.rank == 0 ? (double)(n > INT32_MAX ? INT32_MAX : n) : 0,
                        r->dp.rank == 0 ? p.elapsed : 0};
    dist_merge(&r->dp, agreed, 2);
    n = (int64_t)agreed[0];
    const int before = hp->steps;
    if (n != before) {
        if (u > hp->warmup) {
            r->h.replan.progress = (float)train_lr_progress(hp, &r->h.replan, u);
            r->h.replan.update = u;
        }
        hp->steps = (int32_t)n;
    }
    tele *tl = &r->tl;
    tele_begin(tl, "replan");
    tele_int(tl, "update", u);
    tele_int(tl, "check", r->check_i + 1);
    tele_int(tl, "steps_before", before);
    tele_int(tl, "steps", hp->steps);
    tele_num(tl, "progress", r->h.replan.update == u ? r->h.replan.progress : train_lr_progress(hp, &r->h.replan, u));
    tele_num(tl, "elapsed_s", p.elapsed);
    tele_num(tl, "predicted_end_s", plan_end_time(&p, hp->steps));
    tele_num(tl, "t_update_ms", p.t_update * 1e3);
    tele_num(tl, "since_plan_ms", overall * 1e3);
    tele_num(tl, "since_check_ms", recent * 1e3);
    tele_end(tl);
    if (!o->quiet && n != before)
        printf("time plan corrected at update %d: %d updates fit, not %d (%.1f ms per update since the plan, %.1f "
               "since the last check)\n", u, hp->steps, before, overall * 1e3, recent * 1e3);
    r->dt_check_sum = 0;
    r->dt_check_n = 0;
    return agreed[1];
}

/* "12:34" (or "1:02:03") */
static const char *clock_str(char *b, size_t cap, double sec) {
    long s = sec > 0 ? (long)(sec + 0.5) : 0;
    if (s >= 3600) snprintf(b, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(b, cap, "%ld:%02ld", s / 60, s % 60);
    return b;
}

/* The end of this process's part of the job, with its error message (NULL: none). In a job
 * of several ranks the message is printed here, before MPI_Finalize: once one rank has
 * finalized and exited with an error, mpirun ends the others, and a rank that printed only
 * after finalizing (rank 0 relaying another rank's reason, say) could be cut off before it
 * did (seen in a test run). Returns 0, TRAIN_REPORTED (printed) or -1 + fb_err. */
static int end_job(dist *dp, const char *msg) {
    const int rank = dp->rank, world = dp->world;
    if (msg && world > 1) {
        fprintf(stderr, "fable train: rank %d of %d: %s\n", rank, world, msg);
        fflush(stderr);
    }
    dist_free(dp);
    if (!msg) return 0;
    return world > 1 ? TRAIN_REPORTED : fb_err("%s", msg);
}

int train_run(train_opts *o) {
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.lock_fd = -1;
    if (dist_init(&r.dp)) return -1;
    if (r.dp.world > 1) job_options(&r);
    int rc = start_agree(&r, setup(&r));
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", fb_errmsg());
        teardown(&r);
        return end_job(&r.dp, msg);
    }
    const train_hparams *hp = &o->hp;
    const int B = hp->batch, T = hp->seq, K = hp->accum * r.dp.world; /* the job's micro-steps per update */
    const size_t N = (size_t)B * T;
    struct sigaction sa = {0}, old_int, old_term, old_xfsz, ign = {.sa_handler = SIG_IGN};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* past a file-size limit (ulimit -f) the write fails with EFBIG, which is reported, instead
     * of SIGXFSZ ending the process without a word */
    sigaction(SIGXFSZ, &ign, &old_xfsz);
    stop_signal = 0;
    report_run_begin(&r.rep, r.e->dw_async, r.peak * r.dp.world);
    log_start(&r);
    if (!o->quiet)
        printf("training %zu parameters (%d layers, dim %d, vocab %d) on %s: %d x %d tokens x %d accum, %d updates, "
               "engine %s (%s, %s), peak %.0f GFLOP/s%s\n",
               r.n, r.cfg.n_layers, r.cfg.dim, r.cfg.vocab_size, o->train_path, B, T, K, hp->steps, r.e->name,
               eng_precision_name(r.e->precision), r.e->device, r.peak,
               r.dp.world > 1 ? " per process; data-parallel over the processes of mpirun" : "");
    if (!o->quiet) {
        report_start_print(stdout, &r.cfg, T);
        if (strcmp(r.log_path, "-")) printf("telemetry: %s\n", r.log_path);
        fflush(stdout);
    }
    const double run_t0 = r.rep.t0;
    double last_print = 0;
    int updates_this_run = 0;
    const char *stop_reason = "done";
    rc = 0;
    step_result res;
    while (r.h.update < hp->steps) {
        const int u = (int)r.h.update + 1;
        const float lr = train_lr_replanned(hp, &r.h.replan, u);
        const double u_t0 = fb_now();
        if (run_update(&r, u, lr, &res)) { rc = -1; break; }
        const double dt = fb_now() - u_t0;
        r.h.update = u;
        r.h.micro_steps += K;
        r.h.tokens_seen += (int64_t)N * K;
        r.h.last_loss = (float)res.loss_mean;
        updates_this_run++;
        log_update(&r, u, lr, &res, dt);
        double now = fb_now();
        if (!o->quiet && (now - last_print >= 1.0 || u == hp->steps || u == 1)) {
            const double gflops = step_flops(&r.cfg, B, T) * K / dt / 1e9;
            char where[160], a[32], b[32];
            const double used = now - run_t0, left = o->time_limit - used;
            if (r.h.time_plan == TIME_PLAN_PENDING)    /* a timed run: time used and left, the total once planned */
                snprintf(where, sizeof where, "update %d (measuring) | %s used, %s left", u,
                         clock_str(a, sizeof a, used), clock_str(b, sizeof b, left));
            else if (o->time_limit > 0)
                snprintf(where, sizeof where, "update %d/%d | %s used, %s left", u, hp->steps,
                         clock_str(a, sizeof a, used), clock_str(b, sizeof b, left));
            else
                snprintf(where, sizeof where, "update %d/%d", u, hp->steps);
            printf("%s | loss %.4f | lr %.2e | grad norm %.3f | %.1f ms/step | %.0f tok/s | %.1f GFLOP/s (%.0f%% MFU)\n",
                   where, res.loss_mean, lr, res.grad_norm, dt * 1e3 / K, (double)N * K / dt, gflops,
                   r.peak > 0 ? 100.0 * gflops / (r.peak * r.dp.world) : 0.0);   /* the job's FLOPs, the job's peak */
            fflush(stdout);
            last_print = now;
        }
        int planned_now = 0;
        if (r.h.time_plan == TIME_PLAN_PENDING) {
            /* the update's wall time, telemetry and progress line included */
            r.plan_dt[r.plan_n++] = fb_now() - u_t0;
            /* every rank plans when any rank's clock says so (rank 0's plan is the job's) */
            if (dist_or(&r.dp, r.plan_n >= 4 && (now - run_t0 >= PLAN_AT * o->time_limit || r.plan_n >= (int)(sizeof r.plan_dt / sizeof r.plan_dt[0])))) {
                if (make_time_plan(&r, u, run_t0)) { rc = -1; break; }
                planned_now = 1;
                now = fb_now();
            }
        } else if (r.correcting && r.check_i < N_CHECKS) {
            const double dt_all = fb_now() - u_t0;   /* measured as for the plan */
            r.dt_plan_sum += dt_all, r.dt_plan_n++;
            r.dt_check_sum += dt_all, r.dt_check_n++;
            if (dist_or(&r.dp, now - run_t0 >= CHECK_AT[r.check_i] * o->time_limit) && u < hp->steps) {
                const double at = correct_time_plan(&r, u, run_t0);
                /* one check for all the fractions passed (after a long pause), by rank 0's clock */
                r.check_i++;
                while (r.check_i < N_CHECKS && at >= CHECK_AT[r.check_i] * o->time_limit) r.check_i++;
                now = fb_now();
            }
        }
        if (o->eval_every > 0 && u % o->eval_every == 0 && u != hp->steps && !planned_now) do_eval(&r);
        if (o->sample_every > 0 && u % o->sample_every == 0 && u != hp->steps && !planned_now) do_sample(&r);
        const unsigned why = dist_or(&r.dp, (stop_signal ? STOP_SIGNAL : 0) |
                                                (o->time_limit > 0 && now - run_t0 >= o->time_limit ? STOP_TIME : 0) |
                                                (o->stop_after > 0 && updates_this_run >= o->stop_after ? STOP_AFTER : 0));
        const int stopping = why != 0;
        if ((o->ckpt_every > 0 && u % o->ckpt_every == 0 && u != hp->steps && !stopping && !planned_now)) {
            if (save_checkpoint(&r)) { rc = -1; break; }
        }
        if (stopping) {
            stop_reason = why & STOP_SIGNAL ? "signal" : why & STOP_TIME ? "time_limit" : "stop_after";
            break;
        }
    }
    r.h.timers.total += fb_now() - run_t0;
    if (rc == 0) {
        if (r.h.update > 0 && save_checkpoint(&r)) rc = -1;
        if (rc == 0 && r.prune_pending) ckpt_prune(o->out_dir, o->keep); /* the run ends well: keep the newest */
        if (rc == 0 && (!strcmp(stop_reason, "done") || !strcmp(stop_reason, "time_limit"))) {
            do_eval(&r);
            do_sample(&r);
        }
    }
    char msg[2048] = "";
    if (rc) snprintf(msg, sizeof msg, "%s", fb_errmsg());
    if (r.rep.updates > 0) report_end(&r.rep, fb_now() - run_t0, &r.tl, o->quiet ? NULL : stdout);
    tele_end_run(&r.tl, r.h.update, rc ? "error" : stop_reason, rc ? msg : NULL, r.h.last_loss, r.h.timers.total,
                 r.last_ckpt);
    if (!o->quiet && rc == 0)
        printf("stopped (%s) at update %lld; checkpoint %s\n", stop_reason, (long long)r.h.update,
               r.last_ckpt[0] ? r.last_ckpt : "(none)");
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGXFSZ, &old_xfsz, NULL);
    teardown(&r);
    return end_job(&r.dp, rc ? msg : NULL);
}
