/* fable eval — mean loss and perplexity of a model on a token shard. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "fable/data.h"
#include "fable/engine.h"
#include "fable/step.h"
#include "fable/util.h"
#include "train/model_file.h"

static const char *usage =
    "usage: fable eval (--model FILE | --ckpt FILE) --data SHARD [options]\n"
    "  --data SHARD      token shard (fable header, or raw uint16 with --data-vocab V)\n"
    "  --batch B         sequences per forward (default 8)\n"
    "  --seq T           tokens per sequence (default: the model's seq_len, at most 256)\n"
    "  --batches N       evaluate at most N batches (default: the whole shard)\n"
    "  --json            print one JSON object instead of text\n"
    CLI_ENGINE_USAGE
    "Windows are consecutive, non-overlapping T+1-token spans from the start of the shard.\n";

int cmd_eval(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    const char *mpath = cli_str(&a, "--model", NULL);
    if (!mpath) mpath = cli_str(&a, "--ckpt", NULL);
    const char *dpath = cli_str(&a, "--data", NULL);
    int B = (int)cli_int(&a, "--batch", 8);
    int T = (int)cli_int(&a, "--seq", 0);
    long batches = cli_int(&a, "--batches", 0);
    const char *engine;
    eng_opts eo;
    if (cli_engine(&a, &engine, &eo)) return 2;
    int dvocab = (int)cli_int(&a, "--data-vocab", 0);
    int json = cli_flag(&a, "--json");
    if (cli_finish(&a)) return 2;
    if (!mpath || !dpath) { fputs(usage, stderr); return 2; }
    model m;
    if (model_file_load(&m, mpath)) return cli_fail(&a, NULL);
    if (T <= 0) T = m.cfg.seq_len < 256 ? m.cfg.seq_len : 256;
    if (T > m.cfg.seq_len) { model_free(&m); return cli_fail(&a, "--seq %d exceeds the model's seq_len %d", T, m.cfg.seq_len); }
    shard s;
    if (shard_open(&s, dpath, dvocab ? dvocab : 0)) { model_free(&m); return cli_fail(&a, NULL); }
    int rc = 1;
    eng *e = NULL;
    step_ctx st = {0};
    loader L = {0};
    int32_t *in = NULL, *tg = NULL;
    if (s.vocab_size != m.cfg.vocab_size) {
        cli_fail(&a, "%s holds ids of a %d-token vocabulary but %s has vocab_size %d", dpath, s.vocab_size, mpath,
                 m.cfg.vocab_size);
        goto done;
    }
    if (loader_init(&L, &s, LOADER_SEQUENTIAL, T, 0)) { cli_fail(&a, NULL); goto done; }
    size_t nb = L.n_windows / (size_t)B;
    if (nb == 0) { B = (int)L.n_windows; nb = 1; }
    if (batches > 0 && (size_t)batches < nb) nb = (size_t)batches;
    e = eng_create(engine, &eo);
    if (!e || step_init(&st, e, &m.cfg, B, T, 1, 0)) { cli_fail(&a, NULL); goto done; }
    step_set_params(&st, m.data);
    in = malloc((size_t)B * T * sizeof(int32_t));
    tg = malloc((size_t)B * T * sizeof(int32_t));
    double sum = 0, t0 = fb_now();
    for (size_t b = 0; b < nb; b++) {
        loader_next(&L, B, in, tg);
        sum += step_loss(&st, in, tg);
    }
    double loss = sum / nb, dt = fb_now() - t0;
    double tokens = (double)nb * B * T;
    if (!isfinite(loss)) { cli_fail(&a, "the loss is not finite (%g): the model's weights are broken", loss); goto done; }
    if (json)
        printf("{\"loss\":%.6f,\"perplexity\":%.4f,\"batches\":%zu,\"batch\":%d,\"seq\":%d,\"tokens\":%.0f,"
               "\"seconds\":%.3f,\"engine\":\"%s\",\"precision\":\"%s\"}\n", loss, exp(loss), nb, B, T, tokens, dt,
               e->name, eng_precision_name(e->precision));
    else
        printf("loss %.4f  perplexity %.3f  (%zu batches of %d x %d = %.0f tokens, %.1f s)\n", loss, exp(loss), nb,
               B, T, tokens, dt);
    rc = 0;
done:
    free(in);
    free(tg);
    if (e) { step_free(&st); e->destroy(e); }
    loader_free(&L);
    shard_close(&s);
    model_free(&m);
    return rc;
}
