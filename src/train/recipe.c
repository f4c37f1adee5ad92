/* fable — training hyper-parameters: the named recipes (--recipe), the learning-rate schedule
 * (warmup, then cosine, linear or constant decay, continued from a corrected time plan's
 * progress) and the defaults of train_opts (include/fable/train.h). */
#include <math.h>
#include <string.h>

#include "fable/train.h"
#include "fable/util.h"

/* the budget recipe's dropout (docs/budget.md: the sweep that chose it) */
#define TRAIN_BUDGET_DROPOUT 0.0f

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
    if (!strcmp(name, "budget")) {
        /* training in a time budget (`--time-limit S`, docs/budget.md): chosen by a sweep of
         * the stories260K preset on the TinyStories sample, where more, smaller updates won
         * (the limit is optimisation per second). 8×256, AdamW (0.9, 0.99) lr 3e-3, wd 0.1,
         * clip 1, 100 warmup updates then a straight line to 0 over the updates that fit in
         * the time (planned at run time; it beat cosine to lr/10), shuffled windows. lr 3e-3
         * beat 2e-3 and 1.4e-3 at a fixed 12,000 updates and reached 1.5540 in 20 minutes
         * where 2e-3 had reached 1.5812 (session 18) */
        *h = (train_hparams){.batch = 8, .seq = 256, .accum = 1, .steps = 100000, .lr = 3e-3f, .min_lr = 0.0f,
                             .warmup = 100, .schedule = SCHED_LINEAR, .beta1 = 0.9f, .beta2 = 0.99f,
                             .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f, .sampler = LOADER_SHUFFLED,
                             .seed = 1337};
        return 0;
    }
    return fb_err("unknown recipe '%s' (known: ane, llama2c, budget)", name);
}

float train_recipe_dropout(const char *name) {
    return name && !strcmp(name, "budget") ? TRAIN_BUDGET_DROPOUT : 0.0f;
}

const char *train_schedule_name(int s) {
    return s == SCHED_COSINE ? "cosine" : s == SCHED_LINEAR ? "linear" : "constant";
}

double train_lr_progress(const train_hparams *h, const lr_replan *rp, int u) {
    if (u <= h->warmup) return 0;
    if (u >= h->steps) return 1;
    if (rp && rp->update > h->warmup && u > rp->update && h->steps > rp->update)
        return rp->progress + (1.0 - rp->progress) * (double)(u - rp->update) / (double)(h->steps - rp->update);
    return (double)(u - h->warmup) / (double)(h->steps - h->warmup);
}

float train_lr_replanned(const train_hparams *h, const lr_replan *rp, int u) {
    if (h->warmup > 0 && u <= h->warmup) return h->lr * (float)u / (float)h->warmup;
    if (h->schedule == SCHED_CONSTANT) return h->lr;
    if (u >= h->steps) return h->min_lr;
    const double ratio = train_lr_progress(h, rp, u);
    double coeff = h->schedule == SCHED_LINEAR ? 1.0 - ratio : 0.5 * (1.0 + cos(M_PI * ratio));
    return (float)(h->min_lr + coeff * (h->lr - h->min_lr));
}

float train_lr(const train_hparams *h, int u) { return train_lr_replanned(h, NULL, u); }

void train_opts_defaults(train_opts *o) {
    memset(o, 0, sizeof *o);
    train_recipe("ane", &o->hp);
    o->out_dir = "out";
    o->precision = -1;
    o->eval_every = 100;
    o->eval_batches = 20;
    o->sample_every = 0;
    o->sample_tokens = 64;
    o->ckpt_every = 100;
    o->keep = 3;
}
