/* fable probe cache — the reference's on-chip memory sweep, on the CPU's cache hierarchy:
 * throughput against working-set size, one thread (L1 and L2 are per core), across L1, L2,
 * L3 and memory.
 *   streaming: the read bandwidth of a buffer of the working set's size, read over and over
 *              (probe_mem.c), sizes 16 KB .. 256 MB in steps of √2 (2 with --quick), per second
 *              of the thread's CPU time (so that a busy machine's time slices do not count);
 *   GEMM:      gemm_f32 on n×n×n (working set A + B + C = 12n² bytes), n = 32 .. 2896, one
 *              thread, also by its CPU clock.
 * Cliffs are located on the streaming curve: adjacent steps where the bandwidth falls by more
 * than 12% are merged into one cliff (lo = the last size before it, hi = the first after),
 * the three largest kept, and each is matched to the cache level the machine reports
 * (sysconf, else sysfs) within a factor of 4. The packed GEMM is cache-blocked (BLIS): its
 * curve should show no such cliffs once the matrices outgrow the caches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fable/gemm.h"
#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_out.h"

static size_t sysfs_cache(int level) {
    /* /sys/devices/system/cpu/cpu0/cache/indexN/{level,type,size}: the data or unified cache */
    for (int i = 0; i < 8; i++) {
        char p[128], buf[64];
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(p, "r");
        if (!f) break;
        int lv = 0;
        if (fscanf(f, "%d", &lv) != 1) lv = 0;
        fclose(f);
        if (lv != level) continue;
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        f = fopen(p, "r");
        if (!f || !fgets(buf, sizeof buf, f)) { if (f) fclose(f); continue; }
        fclose(f);
        if (!strncmp(buf, "Instruction", 11)) continue;
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(p, "r");
        if (!f) continue;
        size_t v = 0;
        char unit = 0;
        if (fscanf(f, "%zu%c", &v, &unit) >= 1) v *= unit == 'K' ? 1024 : unit == 'M' ? 1048576 : 1;
        fclose(f);
        return v;
    }
    return 0;
}

static void cache_sizes(probe_cache_result *r) {
    long v[3] = {0, 0, 0};
#ifdef _SC_LEVEL1_DCACHE_SIZE
    v[0] = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    v[1] = sysconf(_SC_LEVEL2_CACHE_SIZE);
    v[2] = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    int sys = 0;
    for (int i = 0; i < 3; i++) {
        if (v[i] > 0) r->cache[i] = (size_t)v[i];
        else { r->cache[i] = sysfs_cache(i + 1); sys++; }
    }
    snprintf(r->cache_src, sizeof r->cache_src, "%s", sys ? "sysfs (sysconf where known)" : "sysconf");
}

static double thread_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* one thread (gemm_set_threads(1): the calling thread), timed by its CPU clock */
static double gemm_gflops(int n, int quick) {
    float *A = fb_alloc((size_t)n * n * sizeof(float)), *B = fb_alloc((size_t)n * n * sizeof(float));
    float *C = fb_alloc((size_t)n * n * sizeof(float));
    if (!A || !B || !C) { fb_free(A); fb_free(B); fb_free(C); return NAN; }
    for (size_t i = 0; i < (size_t)n * n; i++) A[i] = B[i] = 1e-3f * (float)(i % 97);
    gemm_f32(0, 0, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n); /* warm-up (and the page faults) */
    double best = 1e30, spent = 0, budget = quick ? 0.01 : 0.03;
    for (int r = 0; r < 5 && (r < 2 || spent < budget); r++) {
        /* small products: enough calls to last ~1 ms per timing */
        int calls = 1;
        double fl = 2.0 * n * n * n;
        if (fl < 2e8) calls = (int)(2e8 / fl);
        double t0 = thread_cpu_now();
        for (int c = 0; c < calls; c++) gemm_f32(0, 0, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double dt = (thread_cpu_now() - t0) / calls;
        spent += dt * calls;
        if (dt < best) best = dt;
    }
    fb_free(A), fb_free(B), fb_free(C);
    return 2.0 * n * n * n / best / 1e9;
}

int probe_cache(const probe_opts *o, probe_cache_result *r) {
    memset(r, 0, sizeof *r);
    cache_sizes(r);
    const double step = o->quick ? 2.0 : sqrt(2.0);
    const double top = o->quick ? 64.0 * 1048576 : 256.0 * 1048576;
    for (double ws = 16384; ws <= top * 1.01 && r->n < PROBE_MAX_WS; ws *= step) {
        size_t b = ((size_t)(ws + 0.5) + 255) & ~(size_t)255;
        r->ws[r->n] = b;
        r->read_gbs[r->n] = probe_bw_read_cpu(b, o->quick ? 2 : 3);
        r->n++;
    }
    gemm_set_threads(1);
    const int nmax = o->quick ? 1024 : 2896;
    for (double n = 32; n <= nmax * 1.01 && r->ng < PROBE_MAX_WS; n *= step) {
        int ni = ((int)(n + 0.5) + 7) & ~7;
        r->gemm_n[r->ng] = ni;
        r->gemm_ws[r->ng] = (size_t)12 * ni * ni;
        r->gemm_gflops[r->ng] = gemm_gflops(ni, o->quick);
        r->ng++;
    }
    gemm_set_threads(0);
    /* cliffs */
    const double thr = log(1.12);
    for (int i = 0; i + 1 < r->n;) {
        if (log(r->read_gbs[i] / r->read_gbs[i + 1]) <= thr) { i++; continue; }
        int j = i;
        while (j + 1 < r->n && log(r->read_gbs[j] / r->read_gbs[j + 1]) > thr) j++;
        /* the steps i .. j-1 fall: a cliff from ws[i] to ws[j] */
        double drop = r->read_gbs[i] / r->read_gbs[j];
        int slot = r->ncliff < 4 ? r->ncliff++ : -1;
        if (slot < 0) { /* keep the largest four */
            int m = 0;
            for (int c = 1; c < 4; c++) if (r->cliff[c].drop < r->cliff[m].drop) m = c;
            if (r->cliff[m].drop < drop) slot = m;
        }
        if (slot >= 0) {
            r->cliff[slot].lo = r->ws[i];
            r->cliff[slot].hi = r->ws[j];
            r->cliff[slot].drop = drop;
        }
        i = j;
    }
    /* order by size, keep the three largest drops, and match each to a cache level */
    for (int a = 0; a < r->ncliff; a++)
        for (int b = a + 1; b < r->ncliff; b++)
            if (r->cliff[b].lo < r->cliff[a].lo) {
                struct probe_cliff t = r->cliff[a];
                r->cliff[a] = r->cliff[b];
                r->cliff[b] = t;
            }
    while (r->ncliff > 3) { /* drop the smallest drop */
        int m = 0;
        for (int c = 1; c < r->ncliff; c++) if (r->cliff[c].drop < r->cliff[m].drop) m = c;
        for (int c = m; c + 1 < r->ncliff; c++) r->cliff[c] = r->cliff[c + 1];
        r->ncliff--;
    }
    for (int c = 0; c < r->ncliff; c++) {
        double mid = sqrt((double)r->cliff[c].lo * r->cliff[c].hi), best = 1e30;
        r->cliff[c].level = 0;
        r->cliff[c].vs_cache = NAN;
        for (int l = 0; l < 3; l++) {
            if (!r->cache[l]) continue;
            double d = fabs(log(mid / r->cache[l]));
            if (d < best && d < log(4.0)) {
                best = d;
                r->cliff[c].level = l + 1;
                r->cliff[c].vs_cache = mid / r->cache[l];
            }
        }
    }
    return 0;
}

static void fmt_size(char *b, size_t cap, double v) {
    if (v >= 1048576) snprintf(b, cap, "%.3g MiB", v / 1048576);
    else snprintf(b, cap, "%.3g KiB", v / 1024);
}

void probe_cache_print(probe_out *po, const probe_cache_result *r) {
    po_begin(po, "cache", "cache: one thread's throughput against working-set size");
    char b[32];
    const char *lk[] = {"l1d_bytes", "l2_bytes", "l3_bytes"}, *ll[] = {"L1d", "L2", "L3"};
    for (int l = 0; l < 3; l++) {
        fmt_size(b, sizeof b, (double)r->cache[l]);
        char label[128];
        snprintf(label, sizeof label, "%s as reported (%s)", ll[l], r->cache_src);
        if (po->json) po_num(po, lk[l], label, (double)r->cache[l], "%.0f", "");
        else po_str(po, lk[l], label, r->cache[l] ? b : "unknown");
    }
    static const char *skeys[] = {"bytes", "size", "read_gbs"}, *sheads[] = {"working set", "bytes", "read GB/s"};
    po_table(po, "stream", 3, skeys, sheads);
    for (int i = 0; i < r->n; i++) {
        fmt_size(b, sizeof b, (double)r->ws[i]);
        po_cell_num(po, (double)r->ws[i], "%.0f");
        po_cell_str(po, b);
        po_cell_num(po, r->read_gbs[i], "%.1f");
    }
    po_table_end(po);
    static const char *gkeys[] = {"n", "bytes", "size", "gflops"}, *gheads[] = {"gemm n", "bytes", "12n^2", "GFLOP/s"};
    po_table(po, "gemm", 4, gkeys, gheads);
    for (int i = 0; i < r->ng; i++) {
        fmt_size(b, sizeof b, (double)r->gemm_ws[i]);
        po_cell_num(po, r->gemm_n[i], "%.0f");
        po_cell_num(po, (double)r->gemm_ws[i], "%.0f");
        po_cell_str(po, b);
        po_cell_num(po, r->gemm_gflops[i], "%.1f");
    }
    po_table_end(po);
    static const char *ckeys[] = {"from_bytes", "to_bytes", "drop", "level", "vs_cache"};
    static const char *cheads[] = {"cliff after", "before", "bandwidth ratio", "cache", "cliff / cache size"};
    po_table(po, "cliffs", 5, ckeys, cheads);
    for (int c = 0; c < r->ncliff; c++) {
        char lo[32], hi[32];
        fmt_size(lo, sizeof lo, (double)r->cliff[c].lo);
        fmt_size(hi, sizeof hi, (double)r->cliff[c].hi);
        if (po->json) {
            po_cell_num(po, (double)r->cliff[c].lo, "%.0f");
            po_cell_num(po, (double)r->cliff[c].hi, "%.0f");
        } else {
            po_cell_str(po, lo);
            po_cell_str(po, hi);
        }
        po_cell_num(po, r->cliff[c].drop, "%.2f");
        po_cell_str(po, r->cliff[c].level ? ll[r->cliff[c].level - 1] : "none");
        po_cell_num(po, r->cliff[c].vs_cache, "%.2f");
    }
    po_table_end(po);
    double gmin = 1e30, gmax = 0;
    for (int i = 0; i < r->ng; i++)
        if (r->gemm_n[i] >= 256) {
            if (r->gemm_gflops[i] < gmin) gmin = r->gemm_gflops[i];
            if (r->gemm_gflops[i] > gmax) gmax = r->gemm_gflops[i];
        }
    if (gmax > 0)
        po_note(po, "GEMM from n = 256 on: %.0f..%.0f GFLOP/s (max/min %.2f) across working sets from L2 to "
                    "memory size: %s",
                gmin, gmax, gmax / gmin,
                gmax / gmin < 1.3 ? "the packed, cache-blocked product does not fall off the streaming cliffs"
                                  : "it varies more than the blocking should allow (a busy machine, or a real cliff)");
    po_note(po, "a cliff: where a step of the working set cuts the read bandwidth by more than 12%%; "
                "cliff / cache size compares the middle of the cliff with the cache it matches");
}
