/* fable dash — what the machine says: the trainer's CPU % and resident memory (/proc), CPU
 * package power (RAPL, /sys/class/powercap), and NVIDIA GPUs' power, utilisation and memory
 * (NVML, loaded at run time with dlopen so that the binary needs no driver).
 *
 * CPU % = Δ(utime + stime) / CLK_TCK / Δwall × 100 (200% = two cores busy).
 * Power  = Δenergy_uj / Δwall (the counter wraps at max_energy_range_uj).
 * Each reading that cannot be taken keeps the reason, and the panel shows "n/a (reason)".
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dash/dash.h"
#include "fable/util.h"

void dash_hist_push(dash_hist *h, float v) {
    h->v[h->head] = v;
    h->head = (h->head + 1) % DASH_HIST;
    if (h->n < DASH_HIST) h->n++;
}

float dash_hist_at(const dash_hist *h, int i) {
    int start = (h->head - h->n + DASH_HIST) % DASH_HIST;
    return h->v[(start + i) % DASH_HIST];
}

/* ---- NVML, the parts we use (nvml.h's signatures) ------------------------------------------ */
typedef struct { unsigned gpu, memory; } nvml_util;
typedef struct { unsigned long long total, free, used; } nvml_mem;
static int (*nvml_init)(void);
static int (*nvml_shutdown)(void);
static int (*nvml_count)(unsigned *);
static int (*nvml_handle)(unsigned, void **);
static int (*nvml_power)(void *, unsigned *);
static int (*nvml_utilz)(void *, nvml_util *);
static int (*nvml_meminfo)(void *, nvml_mem *);

static void nvml_open(dash_sys *s) {
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) { snprintf(s->nvml_why, sizeof s->nvml_why, "no libnvidia-ml.so.1"); return; }
    *(void **)&nvml_init = dlsym(h, "nvmlInit_v2");
    *(void **)&nvml_shutdown = dlsym(h, "nvmlShutdown");
    *(void **)&nvml_count = dlsym(h, "nvmlDeviceGetCount_v2");
    *(void **)&nvml_handle = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&nvml_power = dlsym(h, "nvmlDeviceGetPowerUsage");
    *(void **)&nvml_utilz = dlsym(h, "nvmlDeviceGetUtilizationRates");
    *(void **)&nvml_meminfo = dlsym(h, "nvmlDeviceGetMemoryInfo");
    unsigned n = 0;
    if (!nvml_init || !nvml_count || !nvml_handle || !nvml_power || !nvml_utilz || !nvml_meminfo) {
        snprintf(s->nvml_why, sizeof s->nvml_why, "libnvidia-ml.so.1 lacks the NVML functions");
    } else if (nvml_init() != 0) {
        snprintf(s->nvml_why, sizeof s->nvml_why, "nvmlInit failed (driver not loaded?)");
    } else if (nvml_count(&n) != 0 || n == 0) {
        snprintf(s->nvml_why, sizeof s->nvml_why, "no NVIDIA GPU");
        if (nvml_shutdown) nvml_shutdown();
    } else {
        s->n_gpu = n > 8 ? 8 : (int)n;
        for (int i = 0; i < s->n_gpu; i++)
            if (nvml_handle((unsigned)i, &s->nvml_dev[i]) != 0) s->nvml_dev[i] = NULL;
        s->nvml = h;
        s->nvml_ok = 1;
        return;
    }
    dlclose(h);
}

/* ---- RAPL ------------------------------------------------------------------------------------- */
static int read_ull(const char *path, unsigned long long *v) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%llu", v) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

static void rapl_read(dash_sys *s, unsigned long long uj[8], int *n, int *err) {
    *n = 0;
    *err = 0;
    for (int i = 0; i < 8; i++) {
        char p[128];
        snprintf(p, sizeof p, "/sys/class/powercap/intel-rapl:%d/energy_uj", i);
        if (access(p, F_OK) != 0) {
            snprintf(p, sizeof p, "/sys/class/powercap/amd-rapl:%d/energy_uj", i);
            if (access(p, F_OK) != 0) break;
        }
        if (read_ull(p, &uj[i])) { *err = errno ? errno : EIO; break; }
        if (!s->rapl_max_uj[i]) {
            char q[128];
            snprintf(q, sizeof q, "%.*s/max_energy_range_uj", (int)(strlen(p) - strlen("/energy_uj")), p);
            if (read_ull(q, &s->rapl_max_uj[i])) s->rapl_max_uj[i] = 0;
        }
        (*n)++;
    }
}

void dash_sys_init(dash_sys *s, int no_power, int want_gpu) {
    memset(s, 0, sizeof *s);
    snprintf(s->proc_why, sizeof s->proc_why, "no trainer process known");
    s->power_off = no_power;
    if (no_power) return;
    DIR *d = opendir("/sys/class/powercap");
    if (!d) snprintf(s->rapl_why, sizeof s->rapl_why, "no /sys/class/powercap");
    else {
        closedir(d);
        unsigned long long uj[8];
        int n, err;
        rapl_read(s, uj, &n, &err);
        if (err) snprintf(s->rapl_why, sizeof s->rapl_why, "energy_uj: %s", strerror(err));
        else if (n == 0) snprintf(s->rapl_why, sizeof s->rapl_why, "no RAPL domain in /sys/class/powercap");
        else snprintf(s->rapl_why, sizeof s->rapl_why, "measuring");
    }
    (void)want_gpu;
    nvml_open(s);
}

void dash_sys_free(dash_sys *s) {
    if (s->nvml) {
        if (nvml_shutdown) nvml_shutdown();
        dlclose(s->nvml);
    }
    s->nvml = NULL;
}

/* utime + stime of a process (fields 14 and 15 of /proc/PID/stat, after the "(comm)"). */
static int proc_ticks(pid_t pid, unsigned long long *ticks, double *rss_mb) {
    char p[64], buf[1024];
    /* a pid from an old log may belong to another program by now: only a fable counts */
    snprintf(p, sizeof p, "/proc/%d/comm", (int)pid);
    FILE *c = fopen(p, "r");
    if (!c) return -1;
    int is_fable = fgets(buf, sizeof buf, c) && !strncmp(buf, "fable", 5);
    fclose(c);
    if (!is_fable) return -1;
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')');
    if (!q) return -1;
    unsigned long long ut, st;
    long rss;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     * cutime cstime priority nice num_threads itrealvalue starttime vsize rss */
    if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %*u %*u %ld",
               &ut, &st, &rss) != 3)
        return -1;
    *ticks = ut + st;
    *rss_mb = (double)rss * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
    return 0;
}

void dash_sys_sample(dash_sys *s, pid_t pid) {
    double now = fb_now(), dt = now - s->last_t;
    int first = s->last_t == 0;
    s->last_t = now;
    /* the trainer */
    if (pid != s->pid) { s->pid = pid; first = 1; s->cpu.n = s->rss.n = 0; }
    unsigned long long ticks;
    double rss;
    if (pid <= 0) {
        s->proc_ok = 0;
        snprintf(s->proc_why, sizeof s->proc_why, "no trainer pid in the log");
    } else if (proc_ticks(pid, &ticks, &rss)) {
        s->proc_ok = 0;
        snprintf(s->proc_why, sizeof s->proc_why, "trainer (pid %d) not running", (int)pid);
    } else {
        if (!first && dt > 0) {
            s->cpu_pct = (double)(ticks - s->last_ticks) / (double)sysconf(_SC_CLK_TCK) / dt * 100.0;
            s->rss_mb = rss;
            dash_hist_push(&s->cpu, (float)s->cpu_pct);
            dash_hist_push(&s->rss, (float)rss);
            s->proc_ok = 1;
        } else if (!s->proc_ok) {
            snprintf(s->proc_why, sizeof s->proc_why, "measuring pid %d", (int)pid);
        }
        s->last_ticks = ticks;
    }
    if (s->power_off) return;
    /* RAPL */
    unsigned long long uj[8];
    int n = 0, err = 0;
    if (access("/sys/class/powercap", F_OK) == 0) rapl_read(s, uj, &n, &err);
    if (n > 0 && !err) {
        if (s->rapl_have_last && dt > 0) {
            double w = 0;
            for (int i = 0; i < n && i < 8; i++) {
                unsigned long long d = uj[i] >= s->rapl_last_uj[i] ? uj[i] - s->rapl_last_uj[i]
                                                                  : uj[i] + s->rapl_max_uj[i] - s->rapl_last_uj[i];
                w += (double)d / 1e6 / dt;
            }
            s->rapl_w = w;
            s->n_rapl = n;
            s->rapl_ok = 1;
            dash_hist_push(&s->rapl, (float)w);
        }
        memcpy(s->rapl_last_uj, uj, sizeof uj);
        s->rapl_have_last = 1;
    } else if (err) {
        s->rapl_ok = 0;
        snprintf(s->rapl_why, sizeof s->rapl_why, "energy_uj: %s", strerror(err));
    }
    /* NVML: the sum of power, the mean utilisation and the sum of memory over the GPUs */
    if (s->nvml_ok) {
        double w = 0, ut = 0, used = 0, total = 0;
        int k = 0;
        for (int i = 0; i < s->n_gpu; i++) {
            if (!s->nvml_dev[i]) continue;
            unsigned mw = 0;
            nvml_util u = {0};
            nvml_mem m = {0};
            if (nvml_power(s->nvml_dev[i], &mw) == 0) w += mw / 1000.0;
            if (nvml_utilz(s->nvml_dev[i], &u) == 0) ut += u.gpu;
            if (nvml_meminfo(s->nvml_dev[i], &m) == 0) {
                used += (double)m.used / (1024.0 * 1024.0);
                total += (double)m.total / (1024.0 * 1024.0);
            }
            k++;
        }
        s->gpu_w = w;
        s->gpu_util = k ? ut / k : 0;
        s->gpu_mem_mb = used;
        s->gpu_mem_total_mb = total;
        dash_hist_push(&s->gpu_pw, (float)w);
        dash_hist_push(&s->gpu_ut, (float)s->gpu_util);
        dash_hist_push(&s->gpu_mem, (float)used);
    }
}
