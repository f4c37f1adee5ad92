/* fable sample — generate text from a llama2.c .bin (or a fable checkpoint). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
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
    "  --threads N         threads (default: all cores)\n";

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
    long threads = cli_int(&a, "--threads", 0);
    if (cli_finish(&a)) return 2;
    if (!mpath || !tpath) { fputs(usage, stderr); return 2; }
    if (temp < 0) return cli_fail(&a, "--temperature must be >= 0");
    if (seed <= 0) seed = (long)time(NULL);
    model_file_threads((int)threads);

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
    tok_free(t);
    model_free(&m);
    return rc;
}
