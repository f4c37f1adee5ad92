/* fable bench — time the real training step (step_fwd_bwd + step_optimizer, the code
 * `fable train` runs) and each kernel and GEMM shape alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fable/engine.h"
#include "fable/model.h"
#include "fable/step.h"
#include "fable/util.h"

static const char *usage =
    "usage: fable bench step   (--preset P | --dim .. shape flags) [--batch B] [--seq T] [--accum K]\n"
    "                          [--steps N] [--warmup N] [--dropout P] [--contend N] [--json] [engine options]\n"
    "       fable bench kernels (same model options) [--reps N] [--only NAME] [--json] [engine options]\n"
    "step: times updates of the real training step (K micro-steps of forward+backward, then AdamW;\n"
    "      K = --accum, default 1) after warm-up; prints median, min and max ms per update, tokens/s,\n"
    "      GFLOP/s and MFU against the engine's peak, and the engine's per-phase breakdown.\n"
    "      --contend N runs N CPU-bound processes (busy loops, like `while :; do :; done`) beside the\n"
    "      timed updates, as a user's machine that runs something else (the peak is measured before).\n"
    "kernels: each engine kernel alone (the cpu GEMM's shapes: bench/bench_gemm).\n"
    "engine options:\n" CLI_ENGINE_USAGE;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_model(cli_args *a, model_config *c) {
    const char *preset = cli_str(a, "--preset", "stories110M");
    if (model_preset(preset, c)) return -1;
    const char *fl[] = {"--dim", "--hidden-dim", "--n-layers", "--n-heads", "--n-kv-heads", "--vocab", "--seq-len"};
    int *v[] = {&c->dim, &c->hidden_dim, &c->n_layers, &c->n_heads, &c->n_kv_heads, &c->vocab_size, &c->seq_len};
    for (int i = 0; i < 7; i++)
        if (cli_has(a, fl[i])) *v[i] = (int)cli_int(a, fl[i], 0);
    if (cli_flag(a, "--untied")) c->tied = 0;
    return model_config_validate(c);
}

static long peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

/* Everything a benchmark needs: the engine, the training state (step_ctx owns it), a batch. */
typedef struct {
    model_config c;
    eng *e;
    step_ctx s;
    int32_t *tok, *tgt;
} bench_fix;

static int fix_init(bench_fix *f, const model_config *c, int B, int T, int K, const char *engine, const eng_opts *eo) {
    memset(f, 0, sizeof *f);
    f->c = *c;
    if (T > f->c.seq_len) f->c.seq_len = T;
    f->e = eng_create(engine, eo);
    if (!f->e) return -1;
    if (step_init(&f->s, f->e, &f->c, B, T, K, 1)) return -1;
    step_init_weights(&f->s, 1);
    f->tok = malloc((size_t)B * T * 4);
    f->tgt = malloc((size_t)B * T * 4);
    if (!f->tok || !f->tgt) return fb_err("out of memory");
    fb_rng r;
    fb_rng_seed(&r, 7);
    for (int i = 0; i < B * T; i++) {
        f->tok[i] = (int32_t)(fb_rng_u32(&r) % f->c.vocab_size);
        f->tgt[i] = (int32_t)(fb_rng_u32(&r) % f->c.vocab_size);
    }
    return 0;
}

static void fix_free(bench_fix *f) {
    free(f->tok);
    free(f->tgt);
    if (f->e) {
        step_free(&f->s);
        f->e->destroy(f->e);
    }
}

/* n busy-loop child processes (killed by contenders_stop); returns how many started */
static int contenders_start(int n, pid_t *pids) {
    int k = 0;
    for (; k < n; k++) {
        pid_t p = fork();
        if (p < 0) break;
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
            volatile unsigned long spin = 0;
            for (;;) spin++;
        }
        pids[k] = p;
    }
    return k;
}

static void contenders_stop(int n, const pid_t *pids) {
    for (int k = 0; k < n; k++) kill(pids[k], SIGKILL);
    for (int k = 0; k < n; k++) waitpid(pids[k], NULL, 0);
}

static int bench_step(cli_args *a) {
    model_config c;
    if (parse_model(a, &c)) return cli_fail(a, NULL);
    int B = (int)cli_int(a, "--batch", 1), T = (int)cli_int(a, "--seq", 256), K = (int)cli_int(a, "--accum", 1);
    int steps = (int)cli_int(a, "--steps", 5), warm = (int)cli_int(a, "--warmup", 2);
    int json = cli_flag(a, "--json");
    const int contend = (int)cli_int(a, "--contend", 0);
    const float dropout = (float)cli_float(a, "--dropout", 0);
    const char *engine;
    eng_opts eo;
    if (cli_engine(a, &engine, &eo)) return 2;
    if (cli_finish(a)) return 2;
    if (steps <= 0 || warm < 0 || K <= 0) return cli_fail(a, "--steps and --accum must be positive, --warmup >= 0");
    if (contend < 0 || contend > 64) return cli_fail(a, "--contend %d must be in 0..64", contend);
    bench_fix f;
    if (fix_init(&f, &c, B, T, K, engine, &eo)) { cli_fail(a, NULL); fix_free(&f); return 1; }
    if (step_set_dropout(&f.s, dropout, 1)) { cli_fail(a, NULL); fix_free(&f); return 1; }
    eng *e = f.e;
    step_ctx *s = &f.s;
    const optim_cfg oc = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
    double peak = eng_peak_gflops(e); /* before any contender starts */
    pid_t pids[64];
    const int ncont = contenders_start(contend, pids);
    if (ncont < contend) {
        contenders_stop(ncont, pids);
        fix_free(&f);
        return cli_fail(a, "could not start %d busy processes", contend);
    }
    double *ms = malloc(steps * sizeof(double));
    double ph[ENG_PH_COUNT] = {0};
    step_result res;
    for (int i = 0; i < warm + steps; i++) {
        double t0 = fb_now();
        for (int k = 0; k < K; k++) step_fwd_bwd(s, f.tok, f.tgt, k);
        step_optimizer(s, &oc, i + 1, 1.0f / K);
        step_finish(s, &res);
        double dt = fb_now() - t0;
        if (i >= warm) {
            ms[i - warm] = dt * 1e3;
            for (int k = 0; k <= K; k++)
                for (int p = 0; p < ENG_PH_COUNT; p++) ph[p] += res.sec[k][p];
        }
    }
    contenders_stop(ncont, pids);
    const double med = fb_median(ms, steps); /* ms sorted: ms[0] min, ms[steps − 1] max */
    double flops = step_flops(&c, B, T) * K;
    double gf = flops / (med / 1e3) / 1e9;
    double tps = (double)B * T * K / (med / 1e3);
    double mfu = peak > 0 ? 100 * gf / peak : 0;
    double k = 1e3 / steps;
    if (json) {
        printf("{\"bench\":\"step\",\"engine\":\"%s\",\"precision\":\"%s\",\"device\":\"%s\",\"dim\":%d,\"n_layers\":%d,"
               "\"vocab\":%d,\"params\":%zu,\"batch\":%d,\"seq\":%d,\"accum\":%d,"
               "\"threads\":%d,\"steps\":%d,\"ms_median\":%.3f,\"ms_min\":%.3f,\"ms_max\":%.3f,\"tokens_per_s\":%.1f,"
               "\"gflops\":%.2f,\"peak_gflops\":%.2f,\"mfu_pct\":%.2f,\"flops_per_step\":%.6g,\"peak_rss_mb\":%ld,"
               "\"t_fwd\":%.3f,\"t_bwd\":%.3f,\"t_dw\":%.3f,\"t_dw_wait\":%.3f,\"t_cls\":%.3f,\"t_rms\":%.3f,"
               "\"t_opt\":%.3f,\"dw_async\":%d,\"contend\":%d,\"dropout\":%g}\n",
               e->name, eng_precision_name(e->precision), e->device, c.dim, c.n_layers, c.vocab_size, s->n, B, T, K,
               e->threads, steps, med, ms[0], ms[steps - 1], tps, gf, peak, mfu, flops, peak_rss_mb(),
               ph[ENG_PH_FWD] * k, ph[ENG_PH_BWD] * k, ph[ENG_PH_DW] * k, ph[ENG_PH_DW_WAIT] * k, ph[ENG_PH_CLS] * k,
               ph[ENG_PH_RMS] * k, ph[ENG_PH_OPT] * k, e->dw_async, contend, dropout);
    } else {
        printf("model dim %d, %d layers, vocab %d: %zu parameters; batch %d x seq %d x accum %d; engine %s (%s) on %s\n",
               c.dim, c.n_layers, c.vocab_size, s->n, B, T, K, e->name, eng_precision_name(e->precision), e->device);
        printf("update (%d x fwd+bwd, AdamW), %d timed after %d warm-up: median %.2f ms, min %.2f, max %.2f\n", K,
               steps, warm, med, ms[0], ms[steps - 1]);
        if (contend || dropout > 0) printf("beside %d busy process%s; dropout %g\n", contend, contend == 1 ? "" : "es", dropout);
        printf("%.0f tokens/s, %.1f GFLOP/s of %.1f peak = %.1f%% MFU (%.4g FLOP per update)\n", tps, gf, peak, mfu,
               flops);
        printf("per update: forward %.2f ms | backward dx %.2f | weight grads %.2f%s (waited for: %.2f) | "
               "classifier+loss %.2f | final rmsnorm %.2f | optimizer %.2f\n",
               ph[ENG_PH_FWD] * k, ph[ENG_PH_BWD] * k, ph[ENG_PH_DW] * k, e->dw_async ? " overlapped" : "",
               ph[ENG_PH_DW_WAIT] * k, ph[ENG_PH_CLS] * k, ph[ENG_PH_RMS] * k, ph[ENG_PH_OPT] * k);
        printf("peak resident memory %ld MB\n", peak_rss_mb());
    }
    free(ms);
    fix_free(&f);
    return 0;
}

/* time stmt over reps after one warm-up, waiting for the engine each time; median seconds */
#define TIME_IT(reps, out, stmt)                                        \
    do {                                                                \
        double _t[64];                                                  \
        int _r = (reps) > 64 ? 64 : (reps);                             \
        stmt;                                                           \
        e->sync(e);                                                     \
        for (int _i = 0; _i < _r; _i++) {                               \
            double _t0 = fb_now();                                      \
            stmt;                                                       \
            e->sync(e);                                                 \
            _t[_i] = fb_now() - _t0;                                    \
        }                                                               \
        qsort(_t, _r, sizeof(double), cmp_d);                           \
        (out) = _t[_r / 2];                                             \
    } while (0)

static void report(int json, const char *name, double sec, double flops, double peak) {
    double gf = flops / sec / 1e9, pct = peak > 0 ? 100 * gf / peak : 0;
    if (json) printf("{\"bench\":\"kernel\",\"name\":\"%s\",\"ms\":%.4f,\"gflops\":%.2f,\"pct_peak\":%.1f}\n", name, sec * 1e3, gf, pct);
    else printf("  %-34s %9.3f ms  %8.1f GFLOP/s  %5.1f%% of peak\n", name, sec * 1e3, gf, pct);
}

static int bench_kernels(cli_args *a) {
    model_config c;
    if (parse_model(a, &c)) return cli_fail(a, NULL);
    int B = (int)cli_int(a, "--batch", 1), T = (int)cli_int(a, "--seq", 256);
    int reps = (int)cli_int(a, "--reps", 5);
    int json = cli_flag(a, "--json");
    const char *only = cli_str(a, "--only", NULL);
    const char *engine;
    eng_opts eo;
    if (cli_engine(a, &engine, &eo)) return 2;
    if (cli_finish(a)) return 2;
    bench_fix f;
    if (fix_init(&f, &c, B, T, 1, engine, &eo)) { cli_fail(a, NULL); fix_free(&f); return 1; }
    eng *e = f.e;
    step_ctx *s = &f.s;
    const size_t n = s->n;
    step_fwd_bwd(s, f.tok, f.tgt, 0); /* fills every tap */
    e->sync(e);
    const eng_dims *d = &s->d;
    const double N = d->N, D = d->D, F = d->F, KVD = d->KVD, V = d->V, Tt = d->T;
    const double peak = eng_peak_gflops(e);
    model_layer lw, lg;
    model_layer_view(&c, &s->pw, 0, &lw);
    model_layer_view(&c, &s->pg, 0, &lg);
    float *x1 = s->dres[1];
    /* attention FLOPs (causal, counted full as llama2.c): 4·N·T·D forward */
    double att_f = 4.0 * N * Tt * D / 2;
    if (!json)
        printf("kernels of layer 0, batch %d x seq %d, engine %s (%s) on %s (peak %.1f GFLOP/s):\n", B, T, e->name,
               eng_precision_name(e->precision), e->device, peak);
    double t;
    int timed = 0;
    /* time one kernel and report it, unless --only names another (substring match) */
#define KERNEL(name, flops, stmt)                                       \
    do {                                                                \
        if (only && !strstr((name), only)) break;                      \
        timed++;                                                        \
        TIME_IT(reps, t, stmt);                                         \
        report(json, (name), t, (flops), peak);                        \
    } while (0)
    KERNEL("fwdAttn", 2 * N * D * (2 * D + 2 * KVD) + att_f, e->attn_fwd(e, d, &lw, s->rope, &s->attn[0], x1));
    KERNEL("fwdFFN", 2 * N * D * F * 3, e->ffn_fwd(e, d, &lw, &s->ffn[0], x1));
    KERNEL("ffnBwd (dx)", 2 * N * D * F * 3, e->ffn_bwd(e, d, &lw, &s->ffn[0], s->dres[0], &s->fg[0], x1, &lg, 1));
    KERNEL("ffn dW", 2 * N * D * F * 3, e->ffn_dw(e, d, &s->ffn[0], s->dres[0], &s->fg[0], &lg, 1));
    KERNEL("sdpaBwd (Wo dx + attention)", 2 * N * D * D + 2 * att_f,
           e->attn_bwd(e, d, &lw, s->rope, &s->attn[0], s->dres[0], &s->ag[0]));
    KERNEL("qkvBwd (dx)", 2 * N * D * (D + 2 * KVD), e->qkv_bwd(e, d, &lw, &s->attn[0], s->dres[0], &s->ag[0], x1, &lg, 1));
    KERNEL("attention dW", 2 * N * D * (2 * D + 2 * KVD), e->attn_dw(e, d, &s->attn[0], s->dres[0], &s->ag[0], &lg, 1));
    KERNEL("classifier+CE fwd+bwd", 6 * N * D * V,
           e->cls_loss(e, d, s->xf, s->pw.wcls, s->tgt, 1.0f / N, s->losses, s->stats, s->dxf, s->pg.wcls, 1));
    KERNEL("classifier+CE fwd only", 2 * N * D * V,
           e->cls_loss(e, d, s->xf, s->pw.wcls, s->tgt, 1.0f, s->losses, s->stats, NULL, NULL, 0));
    KERNEL("final rmsnorm fwd", 3 * N * D, e->rmsnorm_fwd(e, d->N, d->D, s->res, s->pw.rms_final, s->xf, s->xf_rstd));
    KERNEL("grad norm (all params)", 2.0 * n, e->sumsq(e, s->grads, n, s->stats + 1));
    {
        eng_adamw_args aa = {.lr = 1e-6f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                             .grad_scale = 1, .grad_clip = 0, .step = 1};
        KERNEL("AdamW (all params)", 10.0 * n, e->adamw(e, s->params, s->grads, s->m, s->v, n, &aa, s->stats + 1));
    }
    fix_free(&f);
    if (!timed) {
        fprintf(stderr, "fable bench kernels: no kernel name contains '%s'\n", only);
        return 2;
    }
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cli_args a;
    cli_args_init(&a, argc - 1, argv + 1);
    if (!strcmp(argv[1], "step")) { a.cmd = "bench step"; return bench_step(&a); }
    if (!strcmp(argv[1], "kernels")) { a.cmd = "bench kernels"; return bench_kernels(&a); }
    fputs(usage, stderr);
    return 2;
}
