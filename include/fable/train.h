/* fable — the training loop (`fable train`): recipes, hyper-parameters, checkpoints,
 * telemetry. See docs/telemetry.md for the JSON-lines records it writes.
 *
 * Vocabulary: a "micro-step" is one forward+backward over B×T tokens; an "update" (the
 * reference's "batch", llama2.c's "iter") is one optimizer step after `accum`
 * micro-steps. --steps counts updates.
 */
#ifndef FABLE_TRAIN_H
#define FABLE_TRAIN_H

#include <stdint.h>

#include "fable/data.h"
#include "fable/model.h"

/* After warmup: constant lr, cosine from lr to min_lr, or a straight line from lr to min_lr
 * (linear; with min_lr 0 the "decay to zero" schedule of Bergsma et al. 2025, which beats
 * cosine to lr/10 when a small model sees many tokens per parameter). */
typedef enum { SCHED_CONSTANT = 0, SCHED_COSINE = 1, SCHED_LINEAR = 2 } lr_schedule;

/* A run planned by time (include/fable/plan.h): none; measuring (hp.steps provisional);
 * planned (hp.steps fixed, stored in the checkpoint). */
typedef enum { TIME_PLAN_NONE = 0, TIME_PLAN_PENDING = 1, TIME_PLAN_DONE = 2 } train_time_plan;

/* Everything that determines the training trajectory. Stored in every checkpoint
 * (fixed-size POD, written field by field in little-endian order). */
typedef struct {
    int32_t batch;          /* B: sequences per micro-step */
    int32_t seq;            /* T: tokens per sequence */
    int32_t accum;          /* micro-steps per update */
    int32_t steps;          /* total updates */
    float lr;               /* peak learning rate */
    float min_lr;           /* floor of the decaying schedules */
    int32_t warmup;         /* linear warmup updates */
    int32_t schedule;       /* lr_schedule */
    float beta1, beta2, eps;
    float weight_decay;     /* decoupled, matrices only (0 = Adam) */
    float grad_clip;        /* global norm; <= 0 off */
    int32_t sampler;        /* loader_kind */
    uint64_t seed;
} train_hparams;

/* A correction of a time plan (train.c): after update `update` (past the warmup) the total
 * was changed to hp.steps; the schedule's progress, `progress` in [0, 1) at that update,
 * then runs on in a straight line to 1 at the new total, so the learning rate stays
 * continuous. update 0: none. Stored in the checkpoint (ckpt_header.replan). */
typedef struct {
    int32_t update;
    float progress;
} lr_replan;

/* lr at update u (1-based): warmup u/warmup·lr, then constant, or cosine or linear to min_lr at `steps`.
 * The decay's progress p(u) = (u − warmup)/(steps − warmup); after a correction rp (may be NULL)
 * at update R with progress p_R: p(u) = p_R + (1 − p_R)·(u − R)/(steps − R) for u > R.
 * Cosine: lr = min_lr + ½(1 + cos πp)(lr − min_lr); linear: lr = min_lr + (1 − p)(lr − min_lr). */
float train_lr_replanned(const train_hparams *h, const lr_replan *rp, int u);
/* the same without a correction */
float train_lr(const train_hparams *h, int u);
/* the decay's progress p(u) above (0 inside the warmup, 1 at and past `steps`) */
double train_lr_progress(const train_hparams *h, const lr_replan *rp, int u);
/* "constant", "cosine" or "linear" */
const char *train_schedule_name(int schedule);

/* Recipe defaults: "ane" (the reference), "llama2c", or "budget" (training in a time budget). */
int train_recipe(const char *name, train_hparams *h);
/* The dropout rate of a recipe (0 for an unknown name). Kept beside train_hparams, whose
 * layout is fixed by the checkpoint format (ckpt_header.dropout holds it there). */
float train_recipe_dropout(const char *name);

/* Options of one `fable train` run (not part of the trajectory). */
typedef struct {
    model_config cfg;
    train_hparams hp;
    const char *init_path;     /* llama2.c .bin to start from (fine-tune), or NULL */
    const char *train_path;
    const char *val_path;      /* may be NULL */
    int data_vocab;            /* vocab for raw headerless shards (0 = shard header) */
    const char *out_dir;       /* checkpoints go here */
    const char *resume_dir;    /* continue from the newest checkpoint in this dir */
    int resume_steps;          /* > 0: raise/lower the total updates of a resumed run */
    const char *log_path;      /* JSON lines: NULL = OUT/train.jsonl (stderr without an out dir), "-" = stderr */
    const char *tokenizer_path;/* for sample text (optional) */
    const char *engine;        /* engine name (NULL = cpu) */
    int precision;             /* eng_precision, -1 = the engine's default */
    int threads;
    int eval_every, eval_batches;
    int sample_every, sample_tokens;
    int ckpt_every, keep;
    double time_limit;         /* seconds; 0 = none. Stops after the update that crosses it. */
    int plan_by_time;          /* with time_limit and a decaying schedule, no --steps: plan the updates that fit */
    int quiet;                 /* no human progress line */
    int seq_explicit;          /* --seq given: an error if it exceeds seq_len (else clamped) */
    int stop_after;            /* testing aid: stop (with a checkpoint) after this many updates of this run */
    const char *recipe;        /* --recipe name, for the start record (NULL: none given, e.g. a resume) */
    float dropout;             /* rate on att and gate (engine.h), training micro-steps only; part of the trajectory */
} train_opts;

void train_opts_defaults(train_opts *o);
/* Run training. 0 on success (including a clean stop on SIGINT/SIGTERM), -1 + fb_err, or
 * TRAIN_REPORTED: failed in a job of several ranks, the message already on stderr (printed
 * before MPI_Finalize, so that mpirun ending the job cannot cut it off). */
#define TRAIN_REPORTED (-2)
int train_run(train_opts *o);

#endif
