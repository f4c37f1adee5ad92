/* fable bench — time the real training step (step_fwd_bwd + step_optimizer, the code
 * `fable train` runs) and each kernel and GEMM shape alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "engine/cpu/cpu_internal.h"
#include "fable/engine.h"
#include "fable/model.h"
#include "fable/step.h"
#include "fable/util.h"

static const char *usage =
    "usage: fable bench step   (--preset P | --dim .. shape flags) [--batch B] [--seq T] [--threads N]\n"
    "                          [--steps N] [--warmup N] [--json]\n"
    "       fable bench kernels (same model options) [--reps N] [--only NAME] [--json]\n"
    "step: times forward+backward+AdamW of the real training step after warm-up; prints median, min\n"
    "      and max ms per step, tokens/s, GFLOP/s and MFU against the FMA peak measured here, and a\n"
    "      per-phase breakdown. kernels: each engine kernel and each GEMM shape alone.\n";

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

/* Everything a benchmark needs: engine, weights/grads/moments, step context, a batch. */
typedef struct {
    model_config c;
    eng *e;
    size_t n;
    float *p, *g, *m, *v;
    model_params pw, pg;
    step_ctx s;
    int32_t *tok, *tgt;
} bench_fix;

static int fix_init(bench_fix *f, const model_config *c, int B, int T, int threads) {
    memset(f, 0, sizeof *f);
    f->c = *c;
    if (T > f->c.seq_len) f->c.seq_len = T;
    f->e = eng_cpu_create(threads);
    if (!f->e) return -1;
    f->n = model_num_params(&f->c);
    f->p = fb_alloc(f->n * 4), f->g = fb_alloc(f->n * 4), f->m = fb_alloc(f->n * 4), f->v = fb_alloc(f->n * 4);
    if (!f->p || !f->g || !f->m || !f->v) return -1;
    model_init_weights(&f->c, f->p, 1);
    model_params_view(&f->c, f->p, &f->pw);
    model_params_view(&f->c, f->g, &f->pg);
    if (step_init(&f->s, f->e, &f->c, B, T)) return -1;
    f->tok = malloc((size_t)B * T * 4);
    f->tgt = malloc((size_t)B * T * 4);
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
    fb_free(f->p); fb_free(f->g); fb_free(f->m); fb_free(f->v);
}

static int bench_step(cli_args *a) {
    model_config c;
    if (parse_model(a, &c)) return cli_fail(a, NULL);
    int B = (int)cli_int(a, "--batch", 1), T = (int)cli_int(a, "--seq", 256);
    int threads = (int)cli_int(a, "--threads", 0);
    int steps = (int)cli_int(a, "--steps", 5), warm = (int)cli_int(a, "--warmup", 2);
    int json = cli_flag(a, "--json");
    if (cli_finish(a)) return 2;
    bench_fix f;
    if (fix_init(&f, &c, B, T, threads)) return cli_fail(a, NULL);
    eng *e = f.e;
    step_ctx s = f.s;
    const size_t n = f.n;
    float *p = f.p, *g = f.g, *m = f.m, *v = f.v;
    model_params pw = f.pw, pg = f.pg;
    const int32_t *tok = f.tok, *tgt = f.tgt;
    const optim_cfg oc = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
    double peak = eng_peak_gflops(e);
    double *ms = malloc(steps * sizeof(double));
    step_timers sum = {0};
    for (int i = 0; i < warm + steps; i++) {
        step_timers before = s.tm;
        double t0 = fb_now();
        step_fwd_bwd(&s, &pw, &pg, tok, tgt, 0);
        step_optimizer(&s, p, g, m, v, &oc, i + 1, 1.0f);
        double dt = fb_now() - t0;
        if (i >= warm) {
            ms[i - warm] = dt * 1e3;
            sum.fwd += s.tm.fwd - before.fwd;
            sum.bwd_dx += s.tm.bwd_dx - before.bwd_dx;
            sum.dw += s.tm.dw - before.dw;
            sum.cls += s.tm.cls - before.cls;
            sum.rms += s.tm.rms - before.rms;
            sum.opt += s.tm.opt - before.opt;
        }
    }
    qsort(ms, steps, sizeof *ms, cmp_d);
    double med = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
    double flops = step_flops(&c, B, T);
    double gf = flops / (med / 1e3) / 1e9;
    double tps = (double)B * T / (med / 1e3);
    double k = 1e3 / steps;
    if (json) {
        printf("{\"bench\":\"step\",\"dim\":%d,\"n_layers\":%d,\"vocab\":%d,\"params\":%zu,\"batch\":%d,\"seq\":%d,"
               "\"threads\":%d,\"steps\":%d,\"ms_median\":%.3f,\"ms_min\":%.3f,\"ms_max\":%.3f,\"tokens_per_s\":%.1f,"
               "\"gflops\":%.2f,\"peak_gflops\":%.2f,\"mfu_pct\":%.2f,\"flops_per_step\":%.6g,\"peak_rss_mb\":%ld,"
               "\"t_fwd\":%.3f,\"t_bwd\":%.3f,\"t_dw\":%.3f,\"t_cls\":%.3f,\"t_rms\":%.3f,\"t_opt\":%.3f}\n",
               c.dim, c.n_layers, c.vocab_size, n, B, T, e->threads, steps, med, ms[0], ms[steps - 1], tps, gf, peak,
               100 * gf / peak, flops, peak_rss_mb(), sum.fwd * k, sum.bwd_dx * k, sum.dw * k, sum.cls * k,
               sum.rms * k, sum.opt * k);
    } else {
        printf("model dim %d, %d layers, vocab %d: %zu parameters; batch %d x seq %d; %d threads\n", c.dim,
               c.n_layers, c.vocab_size, n, B, T, e->threads);
        printf("step (fwd+bwd+AdamW), %d timed after %d warm-up: median %.1f ms, min %.1f, max %.1f\n", steps, warm,
               med, ms[0], ms[steps - 1]);
        printf("%.0f tokens/s, %.1f GFLOP/s of %.1f measured FMA peak = %.1f%% MFU (%.4g FLOP per step)\n", tps, gf,
               peak, 100 * gf / peak, flops);
        printf("per step: forward %.1f ms | backward dx %.1f | weight grads %.1f | classifier+loss %.1f | final "
               "rmsnorm %.1f | optimizer %.1f\n",
               sum.fwd * k, sum.bwd_dx * k, sum.dw * k, sum.cls * k, sum.rms * k, sum.opt * k);
        printf("peak resident memory %ld MB\n", peak_rss_mb());
    }
    free(ms);
    f.s = s;
    fix_free(&f);
    return 0;
}

/* time fn over reps after one warm-up; returns median seconds */
#define TIME_IT(reps, out, stmt)                                        \
    do {                                                                \
        double _t[64];                                                  \
        int _r = (reps) > 64 ? 64 : (reps);                             \
        stmt;                                                           \
        for (int _i = 0; _i < _r; _i++) {                               \
            double _t0 = fb_now();                                      \
            stmt;                                                       \
            _t[_i] = fb_now() - _t0;                                    \
        }                                                               \
        qsort(_t, _r, sizeof(double), cmp_d);                           \
        (out) = _t[_r / 2];                                             \
    } while (0)

static void report(int json, const char *name, double sec, double flops, double peak) {
    double gf = flops / sec / 1e9;
    if (json) printf("{\"bench\":\"kernel\",\"name\":\"%s\",\"ms\":%.4f,\"gflops\":%.2f,\"pct_peak\":%.1f}\n", name, sec * 1e3, gf, 100 * gf / peak);
    else printf("  %-34s %9.3f ms  %8.1f GFLOP/s  %5.1f%% of peak\n", name, sec * 1e3, gf, 100 * gf / peak);
}

static int bench_kernels(cli_args *a) {
    model_config c;
    if (parse_model(a, &c)) return cli_fail(a, NULL);
    int B = (int)cli_int(a, "--batch", 1), T = (int)cli_int(a, "--seq", 256);
    int threads = (int)cli_int(a, "--threads", 0), reps = (int)cli_int(a, "--reps", 5);
    int json = cli_flag(a, "--json");
    const char *only = cli_str(a, "--only", NULL);
    if (cli_finish(a)) return 2;
    bench_fix f;
    if (fix_init(&f, &c, B, T, threads)) return cli_fail(a, NULL);
    eng *e = f.e;
    step_ctx s = f.s;
    const size_t n = f.n;
    float *p = f.p, *g = f.g;
    model_params pw = f.pw, pg = f.pg;
    const int32_t *tok = f.tok, *tgt = f.tgt;
    step_fwd_bwd(&s, &pw, &pg, tok, tgt, 0); /* fills every tap */
    const eng_dims *d = &s.d;
    const double N = d->N, D = d->D, F = d->F, KVD = d->KVD, V = d->V, Tt = d->T;
    const double peak = eng_peak_gflops(e);
    eng_layer lw, lg;
    eng_layer_of(&c, &pw, 0, &lw);
    eng_layer_of(&c, &pg, 0, &lg);
    float *x1 = s.dres[1];
    /* attention FLOPs (causal, counted full as llama2.c): 4·N·T·D forward */
    double att_f = 4.0 * N * Tt * D / 2;
    if (!json) printf("kernels of layer 0, batch %d x seq %d, %d threads (peak %.1f GFLOP/s):\n", B, T, e->threads, peak);
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
    KERNEL("fwdAttn", 2 * N * D * (2 * D + 2 * KVD) + att_f, e->attn_fwd(e, d, &lw, s.rope, &s.attn[0], x1));
    KERNEL("fwdFFN", 2 * N * D * F * 3, e->ffn_fwd(e, d, &lw, &s.ffn[0], x1));
    KERNEL("ffnBwd (dx)", 2 * N * D * F * 3, e->ffn_bwd(e, d, &lw, &s.ffn[0], s.dres[0], &s.fg, x1, &lg, 1));
    KERNEL("ffn dW", 2 * N * D * F * 3, e->ffn_dw(e, d, &s.ffn[0], s.dres[0], &s.fg, &lg, 1));
    KERNEL("sdpaBwd (Wo dx + attention)", 2 * N * D * D + 2 * att_f, e->attn_bwd(e, d, &lw, s.rope, &s.attn[0], s.dres[0], &s.ag));
    KERNEL("qkvBwd (dx)", 2 * N * D * (D + 2 * KVD), e->qkv_bwd(e, d, &lw, &s.attn[0], s.dres[0], &s.ag, x1, &lg, 1));
    KERNEL("attention dW", 2 * N * D * (2 * D + 2 * KVD), e->attn_dw(e, d, &s.attn[0], s.dres[0], &s.ag, &lg, 1));
    KERNEL("classifier+CE fwd+bwd", 6 * N * D * V, e->cls_loss(e, d, s.xf, pw.wcls, tgt, 1.0f / N, s.losses, s.dxf, pg.wcls, 1));
    KERNEL("classifier+CE fwd only", 2 * N * D * V, e->cls_loss(e, d, s.xf, pw.wcls, tgt, 1.0f, s.losses, NULL, NULL, 0));
    KERNEL("final rmsnorm fwd", 3 * N * D, e->rmsnorm_fwd(e, d->N, d->D, s.res, pw.rms_final, s.xf, s.xf_rstd));
    {
        float *m = f.m, *v = f.v;
        eng_adamw_args aa = {.lr = 1e-6f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 1, .step = 1};
        KERNEL("AdamW (all params)", 10.0 * n, e->adamw(e, p, g, m, v, n, &aa));
    }
    /* GEMM shapes alone: forward Y=X·Wᵀ, dx = dY·W, dW += dYᵀ·X */
    struct { const char *name; int out, in; } shapes[] = {
        {"wq/wo", (int)D, (int)D}, {"wk/wv", (int)KVD, (int)D}, {"w1/w3", (int)F, (int)D}, {"w2", (int)D, (int)F},
        {"classifier", (int)V, (int)D}};
    float *X = fb_alloc((size_t)N * (F > D ? F : D) * 4 + 64), *Y = fb_alloc((size_t)N * V * 4 + 64),
          *W = fb_alloc((size_t)V * (F > D ? F : D) * 4 + 64);
    if (!json) printf("GEMM shapes (N = %d rows):\n", (int)N);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int o = shapes[i].out, in = shapes[i].in, Nr = (int)N;
        double fl = 2.0 * N * o * in;
        char nm[96];
        snprintf(nm, sizeof nm, "%s fwd  [%d,%d]x[%d,%d]T", shapes[i].name, Nr, in, o, in);
        KERNEL(nm, fl, mm_nt(Nr, o, in, X, in, W, in, 0.0f, Y, o));
        snprintf(nm, sizeof nm, "%s dx   [%d,%d]x[%d,%d]", shapes[i].name, Nr, o, o, in);
        KERNEL(nm, fl, mm_nn(Nr, in, o, Y, o, W, in, 0.0f, X, in));
        snprintf(nm, sizeof nm, "%s dW   [%d,%d]Tx[%d,%d]", shapes[i].name, Nr, o, Nr, in);
        KERNEL(nm, fl, mm_tn(o, in, Nr, Y, o, X, in, 1.0f, W, in));
    }
    fb_free(X); fb_free(Y); fb_free(W);
    fix_free(&f);
    if (!timed) {
        fprintf(stderr, "fable bench kernels: no kernel or GEMM shape name contains '%s'\n", only);
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
    if (!strcmp(argv[1], "step")) return bench_step(&a);
    if (!strcmp(argv[1], "kernels")) return bench_kernels(&a);
    fputs(usage, stderr);
    return 2;
}
