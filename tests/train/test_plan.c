/* plan_updates against a step-by-step simulation of the training loop's clock.
 *
 * The simulation is written from the loop in src/train/train.c, not from plan.c's formula:
 * after each update u < N it pays for the periodic eval, sample and checkpoint that fall on
 * u; after the last update it pays for the final checkpoint, eval and sample. The planned N
 * must be the largest count whose simulated end is within the budget. */
#include <stdint.h>

#include "fable/plan.h"
#include "testlib.h"

static double simulate(const plan_in *p, int64_t n) {
    double t = p->elapsed;
    for (int64_t u = p->u0 + 1; u <= n; u++) {
        t += p->t_update;
        if (u == n) break;
        if (p->eval_every > 0 && u % p->eval_every == 0) t += p->t_eval;
        if (p->sample_every > 0 && u % p->sample_every == 0) t += p->t_sample;
        if (p->ckpt_every > 0 && u % p->ckpt_every == 0) t += p->t_ckpt;
    }
    return t + p->t_ckpt + p->t_eval + p->t_sample;
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

int main(void) {
    /* random plans: budgets of 1 s to 20 min, overheads from none to several updates' worth */
    for (int trial = 0; trial < 400; trial++) {
        plan_in p = {.limit = 1 + urand() * 1199, .margin = urand() < 0.5 ? 0 : 0.02};
        p.t_update = 0.001 + urand() * 0.2;
        p.u0 = (int64_t)(urand() * 50);
        p.elapsed = p.u0 * p.t_update * (1 + urand());
        p.t_eval = urand() < 0.3 ? 0 : urand() * 2;
        p.t_ckpt = urand() < 0.3 ? 0 : urand() * 0.5;
        p.t_sample = urand() < 0.5 ? 0 : urand();
        p.eval_every = urand() < 0.2 ? 0 : 1 + (int)(urand() * 300);
        p.ckpt_every = urand() < 0.2 ? 0 : 1 + (int)(urand() * 300);
        p.sample_every = urand() < 0.5 ? 0 : 1 + (int)(urand() * 500);
        int64_t n = plan_updates(&p);
        double budget = (1 - p.margin) * p.limit;
        CHECK(n > p.u0, "trial %d: n %lld <= u0 %lld", trial, (long long)n, (long long)p.u0);
        CHECK(plan_end_time(&p, n) == simulate(&p, n) || fabs(plan_end_time(&p, n) - simulate(&p, n)) < 1e-9 * budget,
              "trial %d: formula %.9f vs simulation %.9f", trial, plan_end_time(&p, n), simulate(&p, n));
        if (simulate(&p, p.u0 + 1) <= budget) {
            CHECK(simulate(&p, n) <= budget + 1e-9, "trial %d: planned %lld ends at %.3f > budget %.3f", trial,
                  (long long)n, simulate(&p, n), budget);
            CHECK(simulate(&p, n + 1) > budget - 1e-9, "trial %d: %lld + 1 would still fit (%.3f <= %.3f)", trial,
                  (long long)n, simulate(&p, n + 1), budget);
        } else {
            CHECK(n == p.u0 + 1, "trial %d: nothing fits, yet n = %lld", trial, (long long)n);
        }
    }
    /* a worked case by hand: 60 s, 0.1 s updates, nothing else → 600 updates from zero */
    plan_in q = {.limit = 60, .t_update = 0.1};
    CHECK(plan_updates(&q) == 600 || plan_updates(&q) == 599, "60 s of 0.1 s updates: %lld", (long long)plan_updates(&q));
    /* + one 3 s eval every 100 updates (5 periodic at 100..500, 1 final) = 18 s: (60-18)/0.1 = 420
     * → 420 updates have periodic evals at 100..400 (4) + final: 42 + 15 = 57 s; 450: 45+15 = 60 */
    q.t_eval = 3, q.eval_every = 100;
    int64_t n = plan_updates(&q);
    CHECK(n >= 449 && n <= 450, "with evals: %lld (expected 450: 45 s of updates + 5 evals of 3 s)", (long long)n);
    return t_done("test_plan");
}
