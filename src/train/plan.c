/* fable — planning a run by time (see include/fable/plan.h for the model of the run's time). */
#include "fable/plan.h"

/* #{u : lo < u < hi, u % every == 0} */
static int64_t multiples_between(int64_t lo, int64_t hi, int every) {
    if (every <= 0 || hi - 1 <= lo) return 0;
    return (hi - 1) / every - lo / every;
}

double plan_end_time(const plan_in *p, int64_t n) {
    double t = p->elapsed + (double)(n - p->u0) * p->t_update;
    t += p->t_eval * (double)multiples_between(p->u0, n, p->eval_every);
    t += p->t_ckpt * (double)multiples_between(p->u0, n, p->ckpt_every);
    t += p->t_sample * (double)multiples_between(p->u0, n, p->sample_every);
    return t + p->t_eval + p->t_ckpt + p->t_sample;
}

int64_t plan_updates(const plan_in *p) {
    const double budget = (1.0 - p->margin) * p->limit;
    int64_t lo = p->u0 + 1;                     /* the answer is at least this */
    if (!(p->t_update > 0) || plan_end_time(p, lo) > budget) return lo;
    /* end(n) grows with n: bracket, then bisect for the last n that fits */
    int64_t hi = lo + 1;
    while (plan_end_time(p, hi) <= budget) {
        lo = hi;
        hi = lo + (hi - p->u0);                  /* doubling steps: O(log n) evaluations */
    }
    while (hi - lo > 1) {                        /* end(lo) fits, end(hi) does not */
        int64_t mid = lo + (hi - lo) / 2;
        if (plan_end_time(p, mid) <= budget) lo = mid;
        else hi = mid;
    }
    return lo;
}
