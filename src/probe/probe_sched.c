/* fable probe sched — latency of each kernel type across thread counts, nice levels, and
 * with a competing CPU-bound process beside it.
 *
 * The reference found that scheduling priority made no difference on its accelerator. On a
 * CPU the question is different: with the cores to itself, a nice level only matters against
 * other runnable work, so it is measured both alone and against a competitor (a forked child
 * spinning at nice 0, killed after). Nice levels are set on every thread of the OpenMP team
 * (Linux keeps one per thread: setpriority(PRIO_PROCESS, tid)); a level below 0 needs root or
 * CAP_SYS_NICE, and where it cannot be set the column says so. Without that privilege a raised
 * level cannot be lowered again, which is why `probe all` runs this probe last. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_out.h"

/* the nice level of every thread of a team of nt; 0 or the errno of the first failure */
static int team_nice(int nt, int nice) {
    int err = 0;
#pragma omp parallel num_threads(nt) reduction(max : err)
    {
        if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice)) err = errno;
    }
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) && !err) err = errno;
    return err;
}

static pid_t competitor_start(void) {
    pid_t pid = fork();
    if (pid == 0) {
        volatile unsigned long x = 0;
        for (;;) x++; /* CPU-bound, nothing else: safe in a child of a threaded process */
    }
    return pid;
}

static void competitor_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int probe_sched(const probe_opts *o, probe_sched_result *r) {
    memset(r, 0, sizeof *r);
    probe_kfix *f;
    if (probe_kfix_init(&f, o)) return -1;
    const int nt = probe_kfix_threads(f);
    /* the configurations: threads 1..nt alone, then nt at nice 10, 19, -5 alone, then nt
     * against a competitor at nice 0, 19, -5 */
    int nc = 0;
    for (int t = 1; t <= nt && nc < 5; t++) {
        if (nt > 5 && t > 2 && t < nt && t != nt / 2) continue;
        r->cfg[nc++] = (probe_sched_cfg){.threads = t, .nice = 0, .competitor = 0};
    }
    const int nices[3] = {10, 19, -5};
    for (int i = 0; i < 3; i++) r->cfg[nc++] = (probe_sched_cfg){.threads = nt, .nice = nices[i]};
    const int cnices[3] = {0, 19, -5};
    for (int i = 0; i < 3; i++) r->cfg[nc++] = (probe_sched_cfg){.threads = nt, .nice = cnices[i], .competitor = 1};
    /* run the levels that root could lower again in an order a non-root caller can follow
     * (each raise is permanent for it): alone 0, -5, 10, then the competitor runs 0, -5, 19;
     * alone 19 last */
    int order[PROBE_MAX_CFG], no = 0;
    for (int i = 0; i < nc; i++)
        if (r->cfg[i].nice == 0 && !r->cfg[i].competitor) order[no++] = i;
    for (int i = 0; i < nc; i++)
        if (r->cfg[i].nice == -5 && !r->cfg[i].competitor) order[no++] = i;
    for (int i = 0; i < nc; i++)
        if (r->cfg[i].competitor && r->cfg[i].nice <= 0) order[no++] = i;
    for (int i = 0; i < nc; i++)
        if (!r->cfg[i].competitor && r->cfg[i].nice == 10) order[no++] = i;
    for (int i = 0; i < nc; i++)
        if (r->cfg[i].competitor && r->cfg[i].nice == 19) order[no++] = i;
    for (int i = 0; i < nc; i++)
        if (!r->cfg[i].competitor && r->cfg[i].nice == 19) order[no++] = i;
    r->ncfg = nc;
    r->nk = probe_kfix_count(f);
    for (int k = 0; k < r->nk; k++) {
        snprintf(r->kname[k], PROBE_NAME, "%s", probe_kfix_info(f, k)->name);
        for (int c = 0; c < nc; c++) r->ms[k][c] = NAN;
    }
    const int reps = o->quick ? 3 : 5;
    const double max_s = o->quick ? 0.05 : 0.15;
    for (int oi = 0; oi < no; oi++) {
        probe_sched_cfg *c = &r->cfg[order[oi]];
        snprintf(c->label, sizeof c->label, "t%d%s%s%d", c->threads, c->competitor ? "+busy" : "", " nice ", c->nice);
        omp_set_num_threads(c->threads);
        int err = team_nice(nt, c->nice);
        c->applied = err == 0;
        if (err) {
            snprintf(c->why, sizeof c->why, "setpriority(%d): %s%s", c->nice, strerror(err),
                     c->nice < 0 ? " (a level below 0 needs root or CAP_SYS_NICE)" : "");
            continue;
        }
        pid_t comp = c->competitor ? competitor_start() : 0;
        if (comp < 0) {
            snprintf(c->why, sizeof c->why, "fork: %s", strerror(errno));
            c->applied = 0;
            continue;
        }
        if (comp) usleep(20000); /* let the scheduler see it running */
        for (int k = 0; k < r->nk; k++) r->ms[k][order[oi]] = 1e3 * probe_kfix_time(f, k, reps, max_s);
        competitor_stop(comp);
    }
    team_nice(nt, 0); /* root: back to 0; otherwise stays at the last raise (see the header) */
    omp_set_num_threads(nt);
    probe_kfix_free(f);
    return 0;
}

void probe_sched_print(probe_out *po, const probe_sched_result *r) {
    po_begin(po, "sched", "sched: median ms per call by thread count, nice level and a competing busy process");
    const char *keys[PROBE_MAX_CFG + 1], *heads[PROBE_MAX_CFG + 1];
    char kb[PROBE_MAX_CFG][48];
    keys[0] = heads[0] = "kernel";
    for (int c = 0; c < r->ncfg; c++) {
        snprintf(kb[c], sizeof kb[c], "t%d_%snice%d", r->cfg[c].threads, r->cfg[c].competitor ? "busy_" : "",
                 r->cfg[c].nice);
        keys[c + 1] = kb[c];
        heads[c + 1] = r->cfg[c].label;
    }
    po_table(po, "kernels", r->ncfg + 1, keys, heads);
    double sum[PROBE_MAX_CFG] = {0};
    for (int k = 0; k < r->nk; k++) {
        po_cell_str(po, r->kname[k]);
        for (int c = 0; c < r->ncfg; c++) {
            po_cell_num(po, r->ms[k][c], "%.3f");
            sum[c] += r->ms[k][c];
        }
    }
    po_cell_str(po, "all kernels");
    for (int c = 0; c < r->ncfg; c++) po_cell_num(po, sum[c], "%.2f");
    po_table_end(po);
    for (int c = 0; c < r->ncfg; c++)
        if (!r->cfg[c].applied) po_note(po, "%s: not run: %s", r->cfg[c].label, r->cfg[c].why);
    /* what holds here: nice alone, and nice against a competitor, relative to nice 0 */
    int nt = 0, a0 = -1, c0 = -1;
    for (int c = 0; c < r->ncfg; c++) if (r->cfg[c].threads > nt) nt = r->cfg[c].threads;
    for (int c = 0; c < r->ncfg; c++) {
        if (r->cfg[c].threads != nt || r->cfg[c].nice) continue;
        if (r->cfg[c].competitor) c0 = c;
        else a0 = c;
    }
    for (int c = 0; c < r->ncfg; c++) {
        if (r->cfg[c].threads != nt || !r->cfg[c].nice || !isfinite(sum[c])) continue;
        int base = r->cfg[c].competitor ? c0 : a0;
        if (base >= 0 && sum[base] > 0)
            po_note(po, "%s: all kernels %.2fx the time at nice 0%s", r->cfg[c].label, sum[c] / sum[base],
                    r->cfg[c].competitor ? " with the same competitor" : " (alone)");
    }
    if (a0 >= 0 && c0 >= 0 && sum[a0] > 0)
        po_note(po, "a competing busy process at equal priority: %.2fx the time alone", sum[c0] / sum[a0]);
}
