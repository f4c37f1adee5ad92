/* fable cuda engine — FABLE_CUDA_PROFILE=1: where the device time goes, kernel by kernel.
 *
 * A measurement aid, off by default. When on, the engine runs everything on the main stream
 * and without CUDA graphs (cu_create), and records an event after every kernel launch and
 * every matrix product. The device executes the stream in order, so the time between two
 * consecutive events is the time of the work launched between them: the launch site's (a
 * host function and line) or the product's (its shape). At the engine's end a table goes to
 * stderr: per site the calls, the total and per-call time, its share, and for products the
 * achieved TFLOP/s. Gaps where the device waited for the host are charged to the next launch,
 * so profile a step that keeps the GPU busy (large batches). The first two synchronisations'
 * worth of work (initialisation, the first step: plan choices, allocations, tuning) is
 * dropped; FABLE_CUDA_PROFILE=N drops the first N instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_internal.cuh"

int cu_prof_on;

typedef struct {
    const void *key;
    int line;
    char name[112];
    double flops, ms;
    long calls;
} prof_site;

#define PROF_SITES 512
#define PROF_EVENTS 4096
static prof_site sites[PROF_SITES];
static int nsites;
static cudaEvent_t evs[PROF_EVENTS];
static int ev_site[PROF_EVENTS], nev;
static cudaStream_t pstream;
static int skip_epochs; /* synchronisations still to drop */

int cu_prof_start(cudaStream_t s) {
    const char *e = getenv("FABLE_CUDA_PROFILE");
    cu_prof_on = e && strcmp(e, "0") && *e;
    if (!cu_prof_on) return 0;
    pstream = s;
    skip_epochs = atoi(e) > 1 ? atoi(e) : 2;
    for (int i = 0; i < PROF_EVENTS; i++) CU_CHECK(cudaEventCreate(&evs[i]));
    CU_CHECK(cudaEventRecord(evs[0], s));
    ev_site[0] = -1;
    nev = 1;
    return 1;
}

/* charge the intervals recorded so far; the last event starts the next batch. end_epoch: at a
 * synchronisation of the engine (drops what came before while skip_epochs lasts) */
void cu_prof_flush(int end_epoch) {
    if (!cu_prof_on || nev < 2) return;
    CU_CHECK(cudaEventSynchronize(evs[nev - 1]));
    for (int i = 1; i < nev; i++) {
        float ms = 0;
        if (ev_site[i] < 0 || cudaEventElapsedTime(&ms, evs[i - 1], evs[i]) != cudaSuccess) continue;
        sites[ev_site[i]].ms += ms;
        sites[ev_site[i]].calls++;
    }
    if (end_epoch && skip_epochs > 0) {
        skip_epochs--;
        for (int i = 0; i < nsites; i++) sites[i].ms = 0, sites[i].calls = 0;
    }
    cudaEvent_t last = evs[nev - 1];
    evs[nev - 1] = evs[0];
    evs[0] = last;
    ev_site[0] = -1;
    nev = 1;
}

void cu_prof_mark(const void *key, int line, const char *name, double flops) {
    int i;
    for (i = 0; i < nsites; i++)
        if (sites[i].key == key && sites[i].line == line) break;
    if (i == nsites) {
        if (nsites == PROF_SITES) return;
        sites[i].key = key, sites[i].line = line, sites[i].flops = flops;
        snprintf(sites[i].name, sizeof sites[i].name, "%s", name);
        nsites++;
    }
    if (nev == PROF_EVENTS) cu_prof_flush(0);
    CU_CHECK(cudaEventRecord(evs[nev], pstream));
    ev_site[nev++] = i;
}

void cu_prof_launch(const char *fn, int line) {
    char name[112];
    snprintf(name, sizeof name, "%s:%d", fn, line);
    cu_prof_mark(fn, line, name, 0);
}

static int by_time(const void *a, const void *b) {
    double x = ((const prof_site *)a)->ms, y = ((const prof_site *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

void cu_prof_report(void) {
    if (!cu_prof_on) return;
    cu_prof_flush(0);
    double tot = 0;
    for (int i = 0; i < nsites; i++) tot += sites[i].ms;
    qsort(sites, nsites, sizeof sites[0], by_time);
    fprintf(stderr, "cuda profile (FABLE_CUDA_PROFILE): %.2f ms of device time over %d launch sites\n", tot, nsites);
    fprintf(stderr, "  %-58s %7s %10s %9s %6s %8s\n", "site", "calls", "total ms", "us/call", "share", "TFLOP/s");
    for (int i = 0; i < nsites; i++) {
        const prof_site *p = &sites[i];
        if (!p->calls) continue;
        char tf[16] = "";
        if (p->flops > 0 && p->ms > 0) snprintf(tf, sizeof tf, "%8.1f", p->flops * p->calls / (p->ms * 1e-3) / 1e12);
        fprintf(stderr, "  %-58s %7ld %10.3f %9.1f %5.1f%% %8s\n", p->name, p->calls, p->ms, 1e3 * p->ms / p->calls,
                tot > 0 ? 100 * p->ms / tot : 0, tf);
    }
    for (int i = 0; i < PROF_EVENTS; i++) cudaEventDestroy(evs[i]);
    cu_prof_on = 0;
}
