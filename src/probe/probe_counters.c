/* fable probe counters — hardware and software performance counters per kernel type,
 * through perf_event_open(2).
 *
 * Each counter is opened on its own (not as a group) in every thread of the OpenMP team
 * (pid 0 = the calling thread; the team's threads already exist, so `inherit` would not
 * reach them), enabled around `reps` calls of a kernel, read, and summed over the threads.
 * A counter that cannot be opened is reported with the errno it failed with and what that
 * means here (no PMU in a VM, perf_event_paranoid, no such event), and the rest go on: the
 * probe never fails for a missing counter. */
#include <errno.h>
#include <linux/perf_event.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_out.h"

enum { C_CYCLES, C_INSTR, C_CREF, C_CMISS, C_BR, C_BRMISS, C_TASK, C_CS, C_MIGR, C_PF };
static const struct { const char *name; unsigned type; unsigned long long config; } ctrs[PROBE_NCTR] = {
    [C_CYCLES] = {"cycles", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES},
    [C_INSTR] = {"instructions", PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS},
    [C_CREF] = {"cache-references", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_REFERENCES},
    [C_CMISS] = {"cache-misses", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES},
    [C_BR] = {"branches", PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_INSTRUCTIONS},
    [C_BRMISS] = {"branch-misses", PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_MISSES},
    [C_TASK] = {"task-clock-ns", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK},
    [C_CS] = {"context-switches", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES},
    [C_MIGR] = {"cpu-migrations", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_MIGRATIONS},
    [C_PF] = {"page-faults", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS},
};

static int read_int_file(const char *path, int def) {
    FILE *f = fopen(path, "r");
    if (!f) return def;
    int v = def;
    if (fscanf(f, "%d", &v) != 1) v = def;
    fclose(f);
    return v;
}

static int exclude_kernel(int paranoid) { return paranoid >= 2 && geteuid() != 0; }

static int ctr_open(int i, int paranoid) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = ctrs[i].type;
    a.config = ctrs[i].config;
    a.disabled = 1;
    a.exclude_kernel = exclude_kernel(paranoid);
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

static void explain(char *why, size_t cap, int err, const probe_counters_result *r, unsigned type) {
    const char *e = strerror(err);
    if ((err == ENOENT || err == ENODEV || err == EOPNOTSUPP) && type == PERF_TYPE_HARDWARE && !r->has_cpu_pmu)
        snprintf(why, cap, "errno %d (%s): no CPU PMU here (no /sys/bus/event_source/devices/cpu): the hypervisor "
                           "does not expose hardware counters to this VM", err, e);
    else if (err == EACCES || err == EPERM)
        snprintf(why, cap, "errno %d (%s): not permitted with perf_event_paranoid = %d (user-space counting of one's "
                           "own process needs <= 2, kernel events <= 1, or CAP_PERFMON)", err, e, r->paranoid);
    else if (err == ENOENT || err == EOPNOTSUPP)
        snprintf(why, cap, "errno %d (%s): this PMU has no such generic event", err, e);
    else if (err == ENOSYS)
        snprintf(why, cap, "errno %d (%s): the kernel was built without perf events", err, e);
    else snprintf(why, cap, "errno %d (%s)", err, e);
}

int probe_counters(const probe_opts *o, probe_counters_result *r) {
    memset(r, 0, sizeof *r);
    r->paranoid = read_int_file("/proc/sys/kernel/perf_event_paranoid", -99);
    r->has_cpu_pmu = access("/sys/bus/event_source/devices/cpu", F_OK) == 0 ||
                     access("/sys/bus/event_source/devices/cpu_core", F_OK) == 0;
    int navail = 0;
    for (int i = 0; i < PROBE_NCTR; i++) {
        r->ctr_name[i] = ctrs[i].name;
        int fd = ctr_open(i, r->paranoid);
        if (fd >= 0) {
            r->ctr_ok[i] = 1;
            navail++;
            close(fd);
        } else {
            explain(r->ctr_why[i], sizeof r->ctr_why[i], errno, r, ctrs[i].type);
        }
    }
    probe_kfix *f;
    if (probe_kfix_init(&f, o)) return -1;
    const int nt = probe_kfix_threads(f);
    int (*fd)[PROBE_NCTR] = malloc(sizeof(int[PROBE_NCTR]) * nt);
    long long (*val)[PROBE_NCTR] = calloc(nt, sizeof(long long[PROBE_NCTR]));
    if (!fd || !val) { free(fd); free(val); probe_kfix_free(f); return fb_err("out of memory"); }
    r->nk = probe_kfix_count(f);
    for (int k = 0; k < r->nk; k++) {
        snprintf(r->kname[k], PROBE_NAME, "%s", probe_kfix_info(f, k)->name);
        double t1 = probe_kfix_time(f, k, 3, 0.5);
        int reps = t1 > 0 ? (int)((o->quick ? 0.01 : 0.05) / t1) : 1;
        if (reps < 1) reps = 1;
        if (reps > 2000) reps = 2000;
        if (navail) {
#pragma omp parallel num_threads(nt)
            {
                int t = omp_get_thread_num();
                for (int i = 0; i < PROBE_NCTR; i++) {
                    fd[t][i] = r->ctr_ok[i] ? ctr_open(i, r->paranoid) : -1;
                }
            }
        }
        /* counting starts and stops here, from this thread (any thread may switch a counter):
         * the window holds the kernel calls and nothing of the opening */
        for (int t = 0; navail && t < nt; t++)
            for (int i = 0; i < PROBE_NCTR; i++)
                if (fd[t][i] >= 0) {
                    ioctl(fd[t][i], PERF_EVENT_IOC_RESET, 0);
                    ioctl(fd[t][i], PERF_EVENT_IOC_ENABLE, 0);
                }
        double t0 = fb_now();
        for (int i = 0; i < reps; i++) probe_kfix_run(f, k);
        r->sec[k] = (fb_now() - t0) / reps;
        for (int t = 0; navail && t < nt; t++)
            for (int i = 0; i < PROBE_NCTR; i++)
                if (fd[t][i] >= 0) ioctl(fd[t][i], PERF_EVENT_IOC_DISABLE, 0);
        for (int i = 0; i < PROBE_NCTR; i++) r->val[k][i] = r->ctr_ok[i] ? 0 : NAN;
        if (navail) {
#pragma omp parallel num_threads(nt)
            {
                int t = omp_get_thread_num();
                for (int i = 0; i < PROBE_NCTR; i++) {
                    val[t][i] = -1;
                    if (fd[t][i] < 0) continue;
                    long long v;
                    if (read(fd[t][i], &v, sizeof v) == (ssize_t)sizeof v) val[t][i] = v;
                    close(fd[t][i]);
                }
            }
            for (int t = 0; t < nt; t++)
                for (int i = 0; i < PROBE_NCTR; i++)
                    if (r->ctr_ok[i] && val[t][i] >= 0) r->val[k][i] += (double)val[t][i] / reps;
        }
    }
    free(fd);
    free(val);
    probe_kfix_free(f);
    return 0;
}

void probe_counters_print(probe_out *po, const probe_counters_result *r) {
    po_begin(po, "counters", "counters: perf_event_open per kernel type (per call, summed over threads)");
    po_num(po, "perf_event_paranoid", "perf_event_paranoid", r->paranoid, "%.0f", "");
    po_str(po, "cpu_pmu", "CPU PMU (/sys/bus/event_source/devices/cpu)", r->has_cpu_pmu ? "present" : "absent");
    static const char *ckeys[] = {"counter", "available", "why"};
    po_table(po, "available", 3, ckeys, ckeys);
    for (int i = 0; i < PROBE_NCTR; i++) {
        po_cell_str(po, r->ctr_name[i]);
        po_cell_str(po, r->ctr_ok[i] ? "yes" : "no");
        po_cell_str(po, r->ctr_ok[i] ? "" : r->ctr_why[i]);
    }
    po_table_end(po);
    static const char *keys[] = {"kernel", "ms", "cycles", "instructions", "ipc", "cache_refs", "cache_misses",
                                 "branches", "branch_misses", "task_clock_ms", "cpu_util", "ctx_switches",
                                 "migrations", "page_faults"};
    static const char *heads[] = {"kernel", "ms", "cycles", "instr", "IPC", "cache refs", "cache miss",
                                  "branches", "br miss", "task-clock ms", "CPUs busy", "ctx sw", "migr", "faults"};
    po_table(po, "kernels", 14, keys, heads);
    for (int k = 0; k < r->nk; k++) {
        const double *v = r->val[k];
        po_cell_str(po, r->kname[k]);
        po_cell_num(po, r->sec[k] * 1e3, "%.3f");
        po_cell_num(po, v[C_CYCLES], "%.3g");
        po_cell_num(po, v[C_INSTR], "%.3g");
        po_cell_num(po, v[C_INSTR] / v[C_CYCLES], "%.2f");
        po_cell_num(po, v[C_CREF], "%.3g");
        po_cell_num(po, v[C_CMISS], "%.3g");
        po_cell_num(po, v[C_BR], "%.3g");
        po_cell_num(po, v[C_BRMISS], "%.3g");
        po_cell_num(po, v[C_TASK] / 1e6, "%.3f");
        po_cell_num(po, v[C_TASK] / 1e9 / r->sec[k], "%.2f");
        po_cell_num(po, v[C_CS], "%.2f");
        po_cell_num(po, v[C_MIGR], "%.2f");
        po_cell_num(po, v[C_PF], "%.1f");
    }
    po_table_end(po);
    int hw = 0;
    for (int i = 0; i < PROBE_NCTR; i++) hw += r->ctr_ok[i] && i <= C_BRMISS;
    if (!hw)
        po_note(po, "no hardware counter could be opened (reasons above): cycles, instructions, IPC, cache and "
                    "branch misses read n/a; the software counters still say how busy the team was");
    po_note(po, "CPUs busy = task-clock / wall time: how many threads were running on average during the kernel");
}
