/* fable probe — each probe's claims against an independent computation:
 *   weights:  after gemm_repack_b the product equals a double-precision product written here
 *             (and the probe's own checks against its oracle and the ref engine are tight);
 *   roofline: the probe's FMA peak is physically plausible, and the engine's peak (bench
 *             step's MFU denominator) never exceeds the hardware roof and, when this thread
 *             had its core, agrees with it; bandwidth between 1 GB/s and 1 TB/s;
 *   cache:    the reported sizes equal what sysfs says (read here), and there is a bandwidth
 *             cliff within a factor of 4 of L1d and of L2;
 *   counters: each counter is either a number or unavailable with a named reason;
 *   sched, dispatch: finite, positive, plausible; every printed report is one valid JSON value.
 * Timing targets are never asserted: this machine is shared. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fable/engine.h"
#include "fable/gemm.h"
#include "fable/json.h"
#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_cuda.h"
#include "probe/probe_out.h"
#include "testlib.h"

double eng_cpu_measure_peak(int threads); /* the cpu engine's (cpu_peak.c): bench step's MFU denominator */

static probe_opts opts(void) {
    probe_opts o = {.engine = "cpu", .preset = "stories260K", .B = 1, .T = 64, .threads = 2, .quick = 1};
    model_preset("stories260K", &o.cfg);
    return o;
}

/* print(po, res) as one JSON object into memory: buf (malloc'd, the caller frees it), len bytes */
#define REPORT_JSON(print, res, buf, len)                                                \
    do {                                                                                 \
        FILE *mf_ = open_memstream(&(buf), &(len));                                      \
        probe_out po_;                                                                   \
        po_init(&po_, mf_, 1);                                                           \
        po_open(&po_);                                                                   \
        print(&po_, res);                                                                \
        po_end(&po_);                                                                    \
        po_close(&po_);                                                                  \
        fclose(mf_);                                                                     \
    } while (0)

/* print with fn into memory as JSON and parse it */
#define CHECK_JSON(name, print, res)                                                     \
    do {                                                                                 \
        char *buf = NULL;                                                                \
        size_t len = 0;                                                                  \
        REPORT_JSON(print, res, buf, len);                                               \
        json_doc jd;                                                                    \
        int ok = json_parse(&jd, buf, len, name) == 0;                                    \
        CHECK(ok, "%s: report is not valid JSON: %s\n%s", name, fb_errmsg(), buf);       \
        if (ok) {                                                                        \
            CHECK(json_get(&jd, json_root(&jd), name) != NULL, "%s: no section", name);    \
            json_free(&jd);                                                             \
        }                                                                                \
        free(buf);                                                                       \
    } while (0)

/* an independent swap check at odd shapes: pack, change, repack, compare with a double product */
static void test_swap_direct(void) {
    const int M = 37, N = 53, K = 29;
    fb_rng r;
    fb_rng_seed(&r, 3);
    float *X = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K), *Y = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) X[i] = fb_rng_f32(&r) - 0.5f;
    for (int i = 0; i < N * K; i++) W[i] = fb_rng_f32(&r) - 0.5f;
    gemm_packed *p = gemm_pack_b(1, K, N, W, K);
    CHECK(p != NULL, "gemm_pack_b: %s", fb_errmsg());
    if (!p) return;
    for (int round = 0; round < 3; round++) {
        if (round) {
            for (int i = 0; i < N * K; i++) W[i] = -W[i] + 0.25f * (fb_rng_f32(&r) - 0.5f);
            gemm_repack_b(p, W, K);
        }
        gemm_f32_prepacked(0, M, 1.0f, X, K, p, 0.0f, Y, N);
        double emax = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)X[i * K + k] * W[j * K + k];
                emax = fmax(emax, fabs(s - Y[i * N + j]));
            }
        CHECK(emax < 1e-5, "round %d: packed product differs from X·Wᵀ by %g after repack", round, emax);
    }
    gemm_packed_free(p);
    free(X), free(W), free(Y);
}

static void test_weights(void) {
    probe_opts o = opts();
    probe_weights_result r;
    CHECK(probe_weights(&o, &r) == 0, "probe_weights: %s", fb_errmsg());
    CHECK(r.n >= 4, "%d shapes", r.n);
    for (int i = 0; i < r.n; i++) {
        const probe_weights_row *w = &r.r[i];
        CHECK(w->err_first < 1e-5 && w->err_swapped < 1e-5, "%s: errors %g %g", w->name, w->err_first, w->err_swapped);
        CHECK(w->moved > 0.05, "%s: the output did not follow the new weights (moved %g)", w->name, w->moved);
        CHECK(w->err_ref < 1e-5, "%s: against the ref engine %g", w->name, w->err_ref);
        CHECK(w->t_repack > 0 && w->t_pack > 0 && w->t_mm_packed > 0 && w->t_mm_plain > 0, "%s: times", w->name);
        CHECK(w->packed_bytes >= (size_t)w->N * w->K * 4, "%s: packed %zu bytes", w->name, w->packed_bytes);
    }
    CHECK_JSON("weights", probe_weights_print, &r);
}

static void test_roofline(void) {
    probe_opts o = opts();
    /* the hardware roof: FMAs per second of CPU time; 1 thread, then 2 */
    double cpu1 = 0, cpu2 = 0;
    double wall1 = probe_fma_peak(1, 1, &cpu1);
    /* the 2-thread figure needs both vCPUs at once: on a shared VM (seen in a test run here)
     * the host may give them one core's worth for seconds, so up to 5 tries, 0.3 s apart */
    for (int try = 0; try < 5 && !(cpu2 > 1.5 * cpu1); try++) {
        if (try) nanosleep(&(struct timespec){0, 300000000}, NULL);
        probe_fma_peak(2, 1, &cpu2);
    }
    fprintf(stderr, "probe FMA peak: 1 thread %.1f (wall %.1f), 2 threads %.1f GFLOP/s per CPU-second\n", cpu1, wall1,
            cpu2);
    /* 16 lanes × 2 flops × 2 FMA pipes × 6 GHz = 384 GFLOP/s is more than any core does */
    CHECK(cpu1 > 4 && cpu1 < 400, "1-thread FMA peak %g GFLOP/s is not physical", cpu1);
    CHECK(cpu2 > 1.5 * cpu1 && cpu2 < 2.5 * cpu1, "2 threads %g vs 1 thread %g", cpu2, cpu1);
    /* the engine's peak, the MFU denominator, against it: never above the hardware roof (else MFU
     * would be flattered); within 20% of it when the measuring thread had its core throughout
     * (its CPU time ≈ the wall time: a quiet moment; on one thread the runs stay on this thread) */
    double e1 = 0, e2 = eng_cpu_measure_peak(2);
    int quiet = 0;
    const int attempts = getenv("FABLE_TEST_QUICK") ? 1 : 5; /* each is ~0.2 s here, ~10 s under ASan */
    for (int a = 0; a < attempts && !quiet; a++) {
        struct timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        double w0 = fb_now();
        e1 = eng_cpu_measure_peak(1);
        double wall = fb_now() - w0;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        double cpu = (c1.tv_sec - c0.tv_sec) + 1e-9 * (c1.tv_nsec - c0.tv_nsec);
        quiet = cpu > 0.95 * wall;
        CHECK(e1 < 1.2 * cpu1, "engine 1-thread peak %g above the hardware roof %g", e1, cpu1);
    }
#if defined(__SANITIZE_ADDRESS__)
    quiet = 0; /* the sanitizer build's cpu_peak.c keeps its accumulators in checked memory: not the engine's speed */
#endif
    fprintf(stderr, "engine peak: 1 thread %.1f, 2 threads %.1f GFLOP/s (%s)\n", e1, e2,
            quiet ? "its thread had the core" : "busy machine: agreement not checked");
    CHECK(e2 < 1.2 * cpu2, "engine 2-thread peak %g above the hardware roof %g", e2, cpu2);
    if (quiet) CHECK(e1 > 0.8 * cpu1, "engine 1-thread peak %g far below the probe's %g on a quiet core", e1, cpu1);
    probe_roofline_result r;
    CHECK(probe_roofline(&o, &r) == 0, "probe_roofline: %s", fb_errmsg());
    fprintf(stderr, "bandwidth: read %.1f, write %.1f, copy %.1f GB/s; 1 thread %.1f (per CPU-second %.1f)\n", r.bw_read,
            r.bw_write, r.bw_copy, r.bw_read1, r.bw_read1_cpu);
    CHECK(r.bw_read1_cpu > 1 && r.bw_read1_cpu < 1000, "1-thread read bandwidth %g GB/s", r.bw_read1_cpu);
    const double bw[] = {r.bw_read, r.bw_write, r.bw_copy, r.bw_read1};
    for (int i = 0; i < 4; i++) CHECK(bw[i] > 0 && bw[i] < 1000, "bandwidth %d: %g GB/s", i, bw[i]);
    CHECK(r.nk >= 12, "%d kernel types", r.nk);
    for (int k = 0; k < r.nk; k++) {
        CHECK(r.k[k].flops > 0 && r.k[k].bytes > 0 && r.k[k].sec > 0, "%s: flops/bytes/time", r.k[k].name);
        CHECK(isfinite(r.k[k].frac) && r.k[k].frac > 0, "%s: fraction %g", r.k[k].name, r.k[k].frac);
    }
    CHECK_JSON("roofline", probe_roofline_print, &r);
    char path[] = "/tmp/fable_probe_roofXXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(probe_roofline_svg(&r, path) == 0, "svg: %s", fb_errmsg());
    char *svg = NULL;
    size_t n = 0;
    CHECK(fb_read_file(path, &svg, &n) == 0 && strstr(svg, "<svg") && strstr(svg, "</svg>"), "svg content");
    free(svg);
    unlink(path);
}

static size_t sysfs_level(int level) {
    for (int i = 0; i < 8; i++) {
        char p[128], t[32] = "";
        int lv = 0;
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(p, "r");
        if (!f) return 0;
        if (fscanf(f, "%d", &lv) != 1) lv = 0;
        fclose(f);
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if ((f = fopen(p, "r"))) { if (fscanf(f, "%31s", t) != 1) t[0] = 0; fclose(f); }
        if (lv != level || !strcmp(t, "Instruction")) continue;
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        size_t v = 0;
        char u = 0;
        if ((f = fopen(p, "r"))) {
            if (fscanf(f, "%zu%c", &v, &u) < 1) v = 0;
            fclose(f);
        }
        return v * (u == 'K' ? 1024 : u == 'M' ? 1048576 : 1);
    }
    return 0;
}

static void test_cache(void) {
    probe_opts o = opts();
    probe_cache_result r;
    CHECK(probe_cache(&o, &r) == 0, "probe_cache: %s", fb_errmsg());
    for (int l = 0; l < 3; l++) {
        size_t s = sysfs_level(l + 1);
        fprintf(stderr, "L%d: probe %zu, sysfs %zu bytes\n", l + 1, r.cache[l], s);
        if (s && r.cache[l]) CHECK(r.cache[l] == s, "L%d: %zu vs sysfs %zu", l + 1, r.cache[l], s);
    }
    for (int i = 0; i < r.n; i++) CHECK(r.read_gbs[i] > 0.5 && r.read_gbs[i] < 5000, "%zu: %g GB/s", r.ws[i], r.read_gbs[i]);
    /* the smallest set (in L1) streams faster than the largest (in memory) */
    CHECK(r.read_gbs[0] > 1.5 * r.read_gbs[r.n - 1], "L1 %g vs memory %g GB/s", r.read_gbs[0], r.read_gbs[r.n - 1]);
#if defined(__SANITIZE_ADDRESS__)
    /* the sanitizer build runs the surrounding code at -O1 with checks: the curve's shape is not
     * the machine's there (the release build checks it) */
    fprintf(stderr, "sanitizer build: cliff positions not checked\n");
    for (int l = 0; l < 0; l++) {
#else
    for (int l = 0; l < 2; l++) {
#endif
        if (!r.cache[l]) continue;
        int found = 0;
        for (int c = 0; c < r.ncliff; c++) {
            double mid = sqrt((double)r.cliff[c].lo * r.cliff[c].hi);
            fprintf(stderr, "cliff %zu..%zu (drop %.2f) vs L%d %zu\n", r.cliff[c].lo, r.cliff[c].hi, r.cliff[c].drop,
                    l + 1, r.cache[l]);
            if (mid > r.cache[l] / 4.0 && mid < r.cache[l] * 4.0) found = 1;
        }
        CHECK(found, "no bandwidth cliff within a factor of 4 of L%d (%zu bytes)", l + 1, r.cache[l]);
    }
    for (int i = 0; i < r.ng; i++) CHECK(r.gemm_gflops[i] > 0 && r.gemm_gflops[i] < 400, "gemm n=%d: %g", r.gemm_n[i], r.gemm_gflops[i]);
    CHECK_JSON("cache", probe_cache_print, &r);
}

static void test_counters(void) {
    probe_opts o = opts();
    probe_counters_result *r = malloc(sizeof *r);
    CHECK(probe_counters(&o, r) == 0, "probe_counters: %s", fb_errmsg());
    for (int i = 0; i < PROBE_NCTR; i++) {
        fprintf(stderr, "%-18s %s %s\n", r->ctr_name[i], r->ctr_ok[i] ? "yes" : "no", r->ctr_why[i]);
        if (r->ctr_ok[i]) {
            for (int k = 0; k < r->nk; k++)
                CHECK(isfinite(r->val[k][i]) && r->val[k][i] >= 0, "%s on %s: %g", r->ctr_name[i], r->kname[k], r->val[k][i]);
        } else {
            CHECK(strstr(r->ctr_why[i], "errno") != NULL, "%s: unavailable without a reason", r->ctr_name[i]);
            for (int k = 0; k < r->nk; k++) CHECK(isnan(r->val[k][i]), "%s: a value although unavailable", r->ctr_name[i]);
        }
    }
    /* task-clock (CPU time of the team) cannot exceed threads × wall time by much */
    if (r->ctr_ok[6])
        for (int k = 0; k < r->nk; k++)
            CHECK(r->val[k][6] / 1e9 <= 2 * r->sec[k] * 1.5 + 1e-3, "%s: task-clock %g ns in %g s", r->kname[k],
                  r->val[k][6], r->sec[k]);
    CHECK_JSON("counters", probe_counters_print, r);
    free(r);
}

static void test_sched_dispatch(void) {
    probe_opts o = opts();
    probe_sched_result s;
    CHECK(probe_sched(&o, &s) == 0, "probe_sched: %s", fb_errmsg());
    CHECK(s.ncfg >= 5 && s.nk >= 12, "%d configurations, %d kernels", s.ncfg, s.nk);
    for (int c = 0; c < s.ncfg; c++) {
        if (!s.cfg[c].applied) {
            CHECK(s.cfg[c].why[0] != 0, "%s: not run without a reason", s.cfg[c].label);
            continue;
        }
        for (int k = 0; k < s.nk; k++)
            CHECK(isfinite(s.ms[k][c]) && s.ms[k][c] > 0, "%s / %s: %g ms", s.kname[k], s.cfg[c].label, s.ms[k][c]);
    }
    CHECK_JSON("sched", probe_sched_print, &s);
    probe_dispatch_result d;
    CHECK(probe_dispatch(&o, &d) == 0, "probe_dispatch: %s", fb_errmsg());
    const double v[] = {d.empty_region_us, d.barrier_us, d.wake_us, d.tiny_gemm_us, d.tiny_gemm_cold_us, d.tiny_rms_us};
    for (int i = 0; i < 6; i++) CHECK(isfinite(v[i]) && v[i] > 0 && v[i] < 1e6, "dispatch value %d: %g us", i, v[i]);
    CHECK_JSON("dispatch", probe_dispatch_print, &d);
}

/* The cuda probes' reports (their numbers come from a GPU, which CI lacks): printed from results
 * written here, they must be valid JSON with the members tests/cli/probe.sh reads on a GPU, the
 * values as given, NaN as null (cudaGraphExecUpdate refused), and the verdict note must say when
 * the replay did not follow the weights. */
static const json_node *member(const json_doc *d, const json_node *o, const char *k, json_type t) {
    const json_node *n = o ? json_get(d, o, k) : NULL;
    CHECK(n && n->type == t, "cuda report: member %s missing or not %s", k, json_type_name(t));
    return n && n->type == t ? n : NULL;
}

static void cuda_weights_report(int follows) {
    fable_cuda_weights w = {.n = 2};
    snprintf(w.precision, sizeof w.precision, "bf16");
    w.r[0] = (fable_cuda_wrow){"wq/wo [D,D]", 256, 288, 288, 1e-6, 2e-6, follows ? 1.4 : 0.0, 3e-6,
                               9.5, 7.25, 3.0, 40.0, 120.0};
    w.r[1] = (fable_cuda_wrow){"wcls [V,D]", 256, 32000, 288, 1e-6, 2e-6, 1.3, NAN, 50.0, 45.0, 8.0, NAN, 130.0};
    char *buf = NULL;
    size_t len = 0;
    REPORT_JSON(probe_cuda_weights_print, &w, buf, len);
    json_doc jd;
    const int ok = json_parse(&jd, buf, len, "cuda weights") == 0;
    CHECK(ok, "cuda weights report is not valid JSON: %s\n%s", fb_errmsg(), buf);
    if (ok) {
        const json_node *sec = member(&jd, json_root(&jd), "weights", JSON_OBJECT);
        const json_node *prec = member(&jd, sec, "precision", JSON_STRING);
        CHECK(prec && !strcmp(prec->str, "bf16"), "precision");
        const json_node *rows = member(&jd, sec, "shapes", JSON_ARRAY);
        CHECK(rows && rows->count == 2, "two shapes");
        int i = 0;
        for (const json_node *r = rows ? json_first(&jd, rows) : NULL; r; r = json_next(&jd, r), i++) {
            const fable_cuda_wrow *x = &w.r[i];
            const json_node *name = member(&jd, r, "matrix", JSON_STRING);
            CHECK(name && !strcmp(name->str, x->name), "row %d: matrix", i);
            const char *keys[] = {"err_first", "err_inplace", "moved", "err_newaddr", "plain_us", "replay_us",
                                  "write_us", "update_us", "recapture_us", "M", "N", "K"};
            const double vals[] = {x->err_first, x->err_inplace, x->moved, x->err_newaddr, x->plain_us, x->replay_us,
                                   x->write_us, x->update_us, x->recapture_us, x->M, x->N, x->K};
            for (int k = 0; k < 12; k++) {
                const json_node *v = member(&jd, r, keys[k], isnan(vals[k]) ? JSON_NULL : JSON_NUMBER);
                if (v && !isnan(vals[k]))   /* printed with 2-3 significant digits */
                    CHECK(fabs(v->num - vals[k]) <= 0.051 * fabs(vals[k]), "row %d %s: %g, not %g", i, keys[k], v->num,
                          vals[k]);
            }
        }
        CHECK((strstr(buf, "DID NOT FOLLOW") != NULL) == !follows, "the verdict note (follows = %d)", follows);
        json_free(&jd);
    }
    free(buf);
}

static void cuda_dispatch_report(void) {
    const fable_cuda_dispatch d = {1000, 2.5, 1.75, 9.0, 4000.0, 12.0, 0.85, 8.0};
    char *buf = NULL;
    size_t len = 0;
    REPORT_JSON(probe_cuda_dispatch_print, &d, buf, len);
    json_doc jd;
    const int ok = json_parse(&jd, buf, len, "cuda dispatch") == 0;
    CHECK(ok, "cuda dispatch report is not valid JSON: %s\n%s", fb_errmsg(), buf);
    if (ok) {
        const json_node *sec = member(&jd, json_root(&jd), "dispatch", JSON_OBJECT);
        const char *keys[] = {"nkern", "launch_us", "launch_gap_us", "launch_sync_us", "capture_us",
                              "graph_launch_us", "graph_gap_us", "graph_sync_us"};
        const double vals[] = {d.nkern, d.launch_us, d.launch_gap_us, d.launch_sync_us, d.capture_us,
                               d.graph_launch_us, d.graph_gap_us, d.graph_sync_us};
        for (int k = 0; k < 8; k++) {
            const json_node *v = member(&jd, sec, keys[k], JSON_NUMBER);
            if (v) CHECK(fabs(v->num - vals[k]) <= 0.051 * vals[k], "dispatch %s: %g, not %g", keys[k], v->num, vals[k]);
        }
        json_free(&jd);
    }
    free(buf);
}

int main(void) {
    cuda_weights_report(1);
    cuda_weights_report(0);
    cuda_dispatch_report();
    test_swap_direct();
    test_weights();
    test_roofline();
    test_cache();
    test_counters();
    test_sched_dispatch();
    return t_done("test_probe");
}
