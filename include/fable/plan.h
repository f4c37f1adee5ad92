/* fable — planning a run by time: "train for 20 minutes" with a decaying schedule.
 *
 * A cosine schedule needs the number of updates in advance. With `--time-limit S` and no
 * `--steps`, the trainer runs a few updates at the warmup learning rate, measures what an
 * update, an evaluation, a checkpoint and a sample cost, and asks plan_updates() how many
 * updates fit in what is left. The answer becomes hp.steps and is stored in every checkpoint
 * from then on. At 25/50/75/90% of the budget the trainer asks again with the speed measured
 * since, and corrects the total when it differs (train.c correct_time_plan; the schedule
 * goes on continuously, lr_replan in fable/train.h). Each correction is stored too, so a
 * resume is bit-exact from any checkpoint. The hard `--time-limit` stop stays as a safety net.
 *
 * The model of the run's time, for a plan made after update u0 at elapsed time t0:
 *   end(N) = t0 + (N − u0)·t_update
 *          + t_eval   · #{u0 < u < N : u % eval_every   == 0}     periodic evaluations
 *          + t_ckpt   · #{u0 < u < N : u % ckpt_every   == 0}     periodic checkpoints
 *          + t_sample · #{u0 < u < N : u % sample_every == 0}     periodic samples
 *          + t_eval + t_ckpt + t_sample                           the final ones
 * (the training loop skips the periodic eval/sample/checkpoint at the last update: the final
 * ones stand for them). plan_updates() returns the largest N with end(N) ≤ (1 − margin)·limit.
 */
#ifndef FABLE_PLAN_H
#define FABLE_PLAN_H

#include <stdint.h>

typedef struct {
    double limit;           /* seconds for the whole run (the --time-limit) */
    double margin;          /* fraction of the limit kept free for noise (e.g. 0.02) */
    double elapsed;         /* seconds used when the plan is made (t0) */
    int64_t u0;             /* updates done when the plan is made */
    double t_update;        /* seconds per update (the trainer uses the mean of those measured) */
    double t_eval, t_ckpt, t_sample;    /* seconds per evaluation / checkpoint / sample (0 = none) */
    int eval_every, ckpt_every, sample_every;   /* periods in updates (<= 0 = never) */
} plan_in;

/* Predicted end time (seconds since the run began) of a run of n updates. */
double plan_end_time(const plan_in *p, int64_t n);

/* The largest n > u0 with plan_end_time(p, n) within the budget; u0 + 1 when even that does
 * not fit (the run then stops at the first update, and the hard time limit stops it anyway). */
int64_t plan_updates(const plan_in *p);

#endif
