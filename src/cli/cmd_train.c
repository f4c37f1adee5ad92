/* fable train — train or resume a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/engine.h"
#include "fable/ckpt.h"
#include "fable/train.h"
#include "fable/util.h"

static const char *usage =
    "usage: fable train --train SHARD [--val SHARD] [model] [recipe and overrides] [run options]\n"
    "model (one of):\n"
    "  --preset NAME           stories260K | stories15M | stories42M | stories110M\n"
    "  --dim D --hidden-dim F --n-layers L --n-heads H [--n-kv-heads K] --vocab V --seq-len T [--untied]\n"
    "  --init MODEL.bin        start from a llama2.c version-0 model (fine-tune)\n"
    "  --resume DIR            continue the newest checkpoint in DIR bit-for-bit (model, data position,\n"
    "                          optimizer and hyper-parameters come from it; --steps may be raised)\n"
    "recipe: --recipe ane (default: 1x256, accum 10, Adam 3e-4, constant) | llama2c (AdamW 0.9/0.95,\n"
    "        wd 0.1, clip 1.0, warmup + cosine to 0, lr 5e-4) | budget (for --time-limit: 8x256, AdamW\n"
    "        0.9/0.99, lr 3e-3, wd 0.1, clip 1, warmup 100, linear to 0); every value can be overridden:\n"
    "  --batch B --seq T --accum K --steps N --lr X --min-lr X --warmup N --schedule cosine|linear|constant\n"
    "  --optimizer adamw|adam --beta1 X --beta2 X --eps X --weight-decay X --grad-clip X (0 = off)\n"
    "  --sampler random|shuffled|sequential --seed S --dropout P (on the inputs of Wo and W2; training only)\n"
    "data: --train SHARD --val SHARD [--data-vocab V for raw headerless uint16 files]\n"
    "run:  --out DIR (checkpoints, default out) --ckpt-every N (100) --keep K (3) --log FILE (JSON lines;\n"
    "      default OUT/train.jsonl; - = stderr) --eval-every N (100) --eval-batches N (20) --sample-every N (0) --sample-tokens N\n"
    "      --tokenizer FILE (for samples) --time-limit SECONDS --quiet\n"
    "time: --time-limit S stops the run after S seconds; with a decaying schedule (cosine, linear) and no --steps,\n"
    "      the run first measures its speed, then plans the number of updates that fit in S (evals, checkpoints\n"
    "      and samples included) and decays the learning rate over exactly those\n"
    "data-parallel: mpirun -np N fable train ... (a build with MPI): each process runs --accum K micro-steps,\n"
    "      the update is that of one process with N*K; rank 0 writes; resume with the same N (docs/distributed.md)\n"
    "engine:\n" CLI_ENGINE_USAGE;

static int mismatch(const char *ck, const char *flag, double want, double have) {
    ckpt_header h; /* a damaged file explains the difference better than the flag does */
    if (ckpt_load(ck, &h, NULL, NULL, NULL)) return -1;
    fb_err("%s does not match the request: it has %s %g, you asked for %g", ck, flag, have, want);
    return -1;
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    train_opts o;
    train_opts_defaults(&o);
    const char *recipe = cli_str(&a, "--recipe", "ane");
    if (train_recipe(recipe, &o.hp)) return cli_fail(&a, NULL);
    o.recipe = cli_has(&a, "--recipe") || !cli_has(&a, "--resume") ? recipe : NULL;
    train_hparams *hp = &o.hp;
    const float min_lr_ratio = hp->schedule != SCHED_CONSTANT && hp->lr > 0 ? hp->min_lr / hp->lr : 0.0f;
    /* model */
    const char *preset = cli_str(&a, "--preset", NULL);
    o.init_path = cli_str(&a, "--init", NULL);
    o.resume_dir = cli_str(&a, "--resume", NULL);
    model_config c = {0};
    if (preset && model_preset(preset, &c)) return cli_fail(&a, NULL);
    const char *shape_flags[] = {"--dim", "--hidden-dim", "--n-layers", "--n-heads", "--n-kv-heads", "--vocab", "--seq-len"};
    int *shape_vals[] = {&c.dim, &c.hidden_dim, &c.n_layers, &c.n_heads, &c.n_kv_heads, &c.vocab_size, &c.seq_len};
    int shape_given = 0;
    for (int i = 0; i < 7; i++)
        if (cli_has(&a, shape_flags[i])) { *shape_vals[i] = (int)cli_int(&a, shape_flags[i], 0); shape_given = 1; }
    if (!preset) c.tied = 1;
    if (cli_flag(&a, "--untied")) { c.tied = 0; shape_given = 1; }
    if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
    if (!preset && !shape_given && !o.init_path && !o.resume_dir) {
        fputs(usage, stderr);
        return cli_fail(&a, "choose a model: --preset, shape flags, --init or --resume");
    }
    if (o.init_path && (preset || shape_given))
        return cli_fail(&a, "--init takes the model shape from %s; do not also give --preset or shape flags", o.init_path);
    o.cfg = c;
    /* hyper-parameters */
    const char *hp_flags[] = {"--batch", "--seq", "--accum", "--steps", "--warmup"};
    int32_t *hp_ints[] = {&hp->batch, &hp->seq, &hp->accum, &hp->steps, &hp->warmup};
    int hp_given[16] = {0};
    for (int i = 0; i < 5; i++)
        if (cli_has(&a, hp_flags[i])) { *hp_ints[i] = (int32_t)cli_int(&a, hp_flags[i], 0); hp_given[i] = 1; }
    const char *hf_flags[] = {"--lr", "--min-lr", "--beta1", "--beta2", "--eps", "--weight-decay", "--grad-clip"};
    float *hp_floats[] = {&hp->lr, &hp->min_lr, &hp->beta1, &hp->beta2, &hp->eps, &hp->weight_decay, &hp->grad_clip};
    int hf_given[8] = {0};
    for (int i = 0; i < 7; i++)
        if (cli_has(&a, hf_flags[i])) { *hp_floats[i] = (float)cli_float(&a, hf_flags[i], 0); hf_given[i] = 1; }
    o.seq_explicit = hp_given[1];
    const char *sched = cli_str(&a, "--schedule", NULL);
    if (sched) {
        if (!strcmp(sched, "cosine")) hp->schedule = SCHED_COSINE;
        else if (!strcmp(sched, "linear")) hp->schedule = SCHED_LINEAR;
        else if (!strcmp(sched, "constant")) hp->schedule = SCHED_CONSTANT;
        else return cli_fail(&a, "--schedule must be cosine, linear or constant, not '%s'", sched);
    }
    /* min_lr follows the schedule and lr unless given: constant → lr; cosine, linear → the recipe's
     * floor as a fraction of its lr (0 for llama2c and budget) */
    if (!hf_given[1]) hp->min_lr = hp->schedule == SCHED_CONSTANT ? hp->lr : min_lr_ratio * hp->lr;
    const char *opt = cli_str(&a, "--optimizer", NULL);
    if (opt) {
        if (!strcmp(opt, "adam")) {
            if (hf_given[5] && hp->weight_decay != 0)
                return cli_fail(&a, "--optimizer adam has no weight decay; use --optimizer adamw for decoupled decay");
            hp->weight_decay = 0;
        } else if (strcmp(opt, "adamw") != 0) {
            return cli_fail(&a, "--optimizer must be adamw or adam, not '%s'", opt);
        }
    }
    const char *smp = cli_str(&a, "--sampler", NULL);
    if (smp) {
        loader_kind k;
        if (loader_kind_parse(smp, &k)) return cli_fail(&a, NULL);
        hp->sampler = k;
    }
    if (cli_has(&a, "--seed")) hp->seed = (uint64_t)cli_int(&a, "--seed", 0);
    o.dropout = (float)cli_float(&a, "--dropout", train_recipe_dropout(recipe));
    /* data and run */
    o.train_path = cli_str(&a, "--train", NULL);
    o.val_path = cli_str(&a, "--val", NULL);
    o.data_vocab = (int)cli_int(&a, "--data-vocab", 0);
    o.out_dir = cli_str(&a, "--out", o.resume_dir ? NULL : "out");
    o.ckpt_every = (int)cli_int(&a, "--ckpt-every", o.ckpt_every);
    o.keep = (int)cli_int(&a, "--keep", o.keep);
    o.log_path = cli_str(&a, "--log", NULL);
    o.eval_every = (int)cli_int(&a, "--eval-every", o.eval_every);
    o.eval_batches = (int)cli_int(&a, "--eval-batches", o.eval_batches);
    o.sample_every = (int)cli_int(&a, "--sample-every", o.sample_every);
    o.sample_tokens = (int)cli_int(&a, "--sample-tokens", o.sample_tokens);
    o.tokenizer_path = cli_str(&a, "--tokenizer", NULL);
    eng_opts eo;
    if (cli_engine(&a, &o.engine, &eo)) return 2;
    o.threads = eo.threads;
    o.precision = eo.precision;
    o.time_limit = cli_float(&a, "--time-limit", 0);
    /* "train for S seconds" with a decaying schedule: plan the updates that fit (plan.h) */
    o.plan_by_time = o.time_limit > 0 && !hp_given[3] && hp->schedule != SCHED_CONSTANT && !o.resume_dir;
    o.quiet = cli_flag(&a, "--quiet");
    o.stop_after = (int)cli_int(&a, "--stop-after", 0);
    if (cli_finish(&a)) return 2;
    if (!o.train_path) return cli_fail(&a, "--train SHARD is required (make one with `fable tokenize`)");

    if (o.resume_dir) {
        /* the checkpoint decides; explicit flags must agree with it (except --steps) */
        char path[4096];
        ckpt_header h;
        if (ckpt_latest(o.resume_dir, path, sizeof path) || ckpt_read_header(path, &h)) return cli_fail(&a, NULL);
        model_config hc;
        ckpt_cfg_unpack(h.cfg, &hc);
        int *hc_vals[] = {&hc.dim, &hc.hidden_dim, &hc.n_layers, &hc.n_heads, &hc.n_kv_heads, &hc.vocab_size, &hc.seq_len};
        for (int i = 0; i < 7; i++)
            if ((preset || cli_has(&a, shape_flags[i])) && *shape_vals[i] != *hc_vals[i])
                { mismatch(path, shape_flags[i], *shape_vals[i], *hc_vals[i]); return cli_fail(&a, NULL); }
        int32_t *h_ints[] = {&h.hp.batch, &h.hp.seq, &h.hp.accum, &h.hp.steps, &h.hp.warmup};
        for (int i = 0; i < 5; i++)
            if (hp_given[i] && i != 3 && *hp_ints[i] != *h_ints[i])
                { mismatch(path, hp_flags[i], *hp_ints[i], *h_ints[i]); return cli_fail(&a, NULL); }
        float *h_floats[] = {&h.hp.lr, &h.hp.min_lr, &h.hp.beta1, &h.hp.beta2, &h.hp.eps, &h.hp.weight_decay, &h.hp.grad_clip};
        for (int i = 0; i < 7; i++)
            if (hf_given[i] && *hp_floats[i] != *h_floats[i])
                { mismatch(path, hf_flags[i], *hp_floats[i], *h_floats[i]); return cli_fail(&a, NULL); }
        if (cli_has(&a, "--dropout") && o.dropout != h.dropout)
            { mismatch(path, "--dropout", o.dropout, h.dropout); return cli_fail(&a, NULL); }
        o.resume_steps = hp_given[3] ? hp->steps : 0;
    }
    const int rc = train_run(&o);
    if (rc == TRAIN_REPORTED) return 1;
    if (rc) return cli_fail(&a, NULL);
    return 0;
}
