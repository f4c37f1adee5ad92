/* fable sample — generate text from a llama2.c .bin (or a fable checkpoint). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "fable/engine.h"
#include "fable/infer.h"
#include "fable/model.h"
#include "fable/tokenizer.h"
#include "train/model_file.h"

static const char *usage =
    "usage: fable sample --model FILE --tokenizer FILE [options]\n"
    "  --model FILE        llama2.c .bin (version 0) or a fable checkpoint (.ckpt)\n"
    "  --tokenizer FILE    tokenizer.bin or SentencePiece .model with the model's vocabulary\n"
    "  --prompt TEXT       text to continue (default: empty, start from BOS)\n"
    "  --temperature T     0 = greedy (default 1.0)\n"
    "  --topp P            nucleus sampling (default 0.9; 0 or 1 = off)\n"
    "  --topk K            keep the K most likely tokens first (default 0 = off)\n"
    "  --seed S            sampling seed (default: time)\n"
    "  --steps N           positions to generate, at most the model's seq_len (default 256)\n"
    CLI_ENGINE_USAGE
    "The ref and cpu engines sample with fable's host decoder (llama2.c run.c's forward, dot products in SIMD lanes);\n"
    "an engine with its own KV-cache decoder (cuda) runs it on its device.\n";

/* An engine's decoder behind infer_generate's forward hook. */
typedef struct {
    eng *e;
    void *dec;
    float *logits; /* [V] host */
} engine_decoder;

static float *engine_forward(void *ctx, int token, int pos) {
    engine_decoder *d = ctx;
    d->e->infer_step(d->e, d->dec, token, pos, d->logits);
    return d->logits;
}

int cmd_sample(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    const char *mpath = cli_str(&a, "--model", NULL);
    if (!mpath) mpath = cli_str(&a, "--ckpt", NULL);
    const char *tpath = cli_str(&a, "--tokenizer", NULL);
    const char *prompt = cli_str(&a, "--prompt", "");
    double temp = cli_float(&a, "--temperature", 1.0);
    double topp = cli_float(&a, "--topp", 0.9);
    long topk = cli_int(&a, "--topk", 0);
    long seed = cli_int(&a, "--seed", 0);
    long steps = cli_int(&a, "--steps", 256);
    const char *engine;
    eng_opts eo;
    if (cli_engine(&a, &engine, &eo)) return 2;
    if (cli_finish(&a)) return 2;
    if (!mpath || !tpath) { fputs(usage, stderr); return 2; }
    if (temp < 0) return cli_fail(&a, "--temperature must be >= 0");
    if (seed <= 0) seed = (long)time(NULL);
    model_file_threads(eo.threads);
    eng *e = eng_create(engine, &eo);
    if (!e) return cli_fail(&a, NULL);
    engine_decoder ed = {.e = e};
    float *params = NULL;

    model m;
    if (model_file_load(&m, mpath)) return cli_fail(&a, NULL);
    tokenizer *t = tok_load(tpath);
    if (!t) { model_free(&m); return cli_fail(&a, NULL); }
    int rc = 1;
    infer_state st;
    sampler smp;
    if (tok_vocab_size(t) != m.cfg.vocab_size) {
        cli_fail(&a, "%s has %d tokens but %s expects a vocabulary of %d: they do not belong together", tpath,
                 tok_vocab_size(t), mpath, m.cfg.vocab_size);
    } else if (infer_init(&st, &m, 0) == 0) {
        if (e->infer_open) { /* the engine's decoder over its own copy of the weights */
            params = e->alloc_params(e, model_num_params(&m.cfg));
            ed.logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
            if (params && ed.logits) {
                e->upload(e, params, m.data, model_num_params(&m.cfg) * sizeof(float));
                ed.dec = e->infer_open(e, &m.cfg, params, st.max_T);
            }
            if (!ed.dec) {
                infer_free(&st);
                goto fail;
            }
            st.fwd = engine_forward;
            st.fwd_ctx = &ed;
        }
        if (sampler_init(&smp, m.cfg.vocab_size, (float)temp, (float)topp, (int)topk, (uint64_t)seed) == 0) {
            double tps = 0;
            if (infer_generate(&st, t, &smp, prompt, (int)steps, stdout, &tps) >= 0) {
                fprintf(stderr, "achieved tok/s: %f\n", tps);
                rc = 0;
            } else {
                cli_fail(&a, NULL);
            }
            sampler_free(&smp);
        } else {
            cli_fail(&a, NULL);
        }
        infer_free(&st);
    } else {
        cli_fail(&a, NULL);
    }
    goto out;
fail:
    cli_fail(&a, NULL);
out:
    if (ed.dec) e->infer_close(e, ed.dec);
    if (params) e->free(e, params);
    free(ed.logits);
    e->destroy(e);
    tok_free(t);
    model_free(&m);
    return rc;
}
