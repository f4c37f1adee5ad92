/* fable probe — characterise the machine and the engine the training step runs on (SPEC §7,
 * issue 18). Each probe is a function that measures into a result struct (what the tests
 * check) and a print function (text table or JSON, src/probe/probe_out.h).
 *
 *   weights   can a layer's weights change without re-preparing its kernels? (cpu: the
 *             pre-packed GEMM path, gemm_pack_b / gemm_repack_b)
 *   counters  perf_event_open counters per kernel type, and exactly which are missing and why
 *   sched     latency of each kernel type across thread counts, nice levels and a competitor
 *   roofline  measured FMA peak, memory bandwidth, each kernel's intensity and roof fraction
 *   cache     streaming and GEMM throughput against working-set size; the cliffs located
 *   dispatch  the cost of starting the smallest kernel: team wake-up, barrier, empty region
 *
 * Kernel types are the training step's at the preset's shapes (src/probe/probe_kernels.c):
 * the forward GEMMs of a layer (qkv, wo, w1+w3, w2, classifier), the attention core forward
 * and backward, RMSNorm, RoPE, SwiGLU, the fused classifier + cross-entropy, AdamW; each
 * runs the cpu engine's own function. With --engine cuda, weights and dispatch run on the GPU
 * instead (src/probe/probe_cuda.h, src/engine/cuda/cuda_probe.cu); the others measure the CPU.
 */
#ifndef FABLE_PROBE_H
#define FABLE_PROBE_H

#include <stddef.h>

#include "fable/model.h"

#define PROBE_MAX_KERNELS 16
#define PROBE_NAME 40

typedef struct {
    const char *engine;   /* "cpu" (the functions below), or "cuda" (probe_cuda.h: weights, dispatch) */
    const char *preset;   /* for the report */
    model_config cfg;
    int B, T;             /* micro-batch of the kernel types (T <= cfg.seq_len) */
    int threads;          /* 0 = all cores */
    int quick;            /* shrink sweeps and repetitions (tests) */
} probe_opts;

/* ---- the kernel types (probe_kernels.c) -------------------------------------------------- */
typedef struct probe_kfix probe_kfix;
typedef struct {
    char name[PROBE_NAME];
    double flops;         /* per call (nominal: exp and sqrt count 1) */
    double bytes;         /* compulsory memory traffic per call: each operand read once, each output written once */
} probe_kinfo;
int probe_kfix_init(probe_kfix **out, const probe_opts *o);      /* 0 or -1 + fb_err */
void probe_kfix_free(probe_kfix *f);
int probe_kfix_count(const probe_kfix *f);
const probe_kinfo *probe_kfix_info(const probe_kfix *f, int i);
void probe_kfix_run(probe_kfix *f, int i);
/* Median seconds of up to `reps` calls after one warm-up; stops early once max_s is spent. */
double probe_kfix_time(probe_kfix *f, int i, int reps, double max_s);
int probe_kfix_threads(const probe_kfix *f);

/* ---- weights -------------------------------------------------------------------------- */
typedef struct {
    char name[PROBE_NAME];  /* "wq", "w1", "cls" ... */
    int M, K, N;            /* Y[M,N] = X[M,K] · Wᵀ, W [N,K] */
    double err_first;       /* max |Y − X·W0ᵀ| / max |X·W0ᵀ| after gemm_pack_b */
    double err_swapped;     /* the same against X·W1ᵀ after gemm_repack_b(W1) in place */
    double moved;           /* max |Y1 − Y0| / max |Y0|: the output followed the new weights */
    double err_ref;         /* the swapped output against the ref engine's layer (NaN: no ref check) */
    double t_repack, t_pack, t_mm_packed, t_mm_plain; /* seconds: repack in place, pack afresh (alloc+pack+free),
                                                          product on the packed B, gemm_f32 from W */
    double breakeven;       /* products per weight update for which repacking pays (inf: never) */
    size_t packed_bytes;
} probe_weights_row;
typedef struct {
    int n;
    probe_weights_row r[8];
    char kernel[16];        /* the micro-kernel the packing is laid out for */
} probe_weights_result;
int probe_weights(const probe_opts *o, probe_weights_result *r);
/* The weight matrices the weights probes take (cpu and cuda): a layer's (wq/wo, wk/wv when
 * narrower, w1/w3, w2) and the classifier, as Y = X·Wᵀ with W [N, K]. Returns the count (≤ 5). */
typedef struct {
    const char *name;
    int N, K;
} probe_wshape;
int probe_weight_shapes(const model_config *c, probe_wshape sh[5]);

/* ---- counters -------------------------------------------------------------------------- */
#define PROBE_NCTR 10
typedef struct {
    int paranoid;                    /* /proc/sys/kernel/perf_event_paranoid (-99: unreadable) */
    int has_cpu_pmu;                 /* /sys/bus/event_source/devices/cpu exists */
    const char *ctr_name[PROBE_NCTR];
    int ctr_ok[PROBE_NCTR];
    char ctr_why[PROBE_NCTR][200];   /* why a counter is unavailable: the errno and its meaning here */
    int nk;
    char kname[PROBE_MAX_KERNELS][PROBE_NAME];
    double val[PROBE_MAX_KERNELS][PROBE_NCTR]; /* per call, summed over the team's threads; NaN: unavailable */
    double sec[PROBE_MAX_KERNELS];
} probe_counters_result;
int probe_counters(const probe_opts *o, probe_counters_result *r);

/* ---- sched ----------------------------------------------------------------------------- */
#define PROBE_MAX_CFG 12
typedef struct {
    char label[48];
    int threads, nice, competitor;
    int applied;         /* 0: the nice level could not be set (why in `why`) */
    char why[120];
} probe_sched_cfg;
typedef struct {
    int ncfg, nk;
    probe_sched_cfg cfg[PROBE_MAX_CFG];
    char kname[PROBE_MAX_KERNELS][PROBE_NAME];
    double ms[PROBE_MAX_KERNELS][PROBE_MAX_CFG];  /* median ms per call; NaN: not run */
} probe_sched_result;
int probe_sched(const probe_opts *o, probe_sched_result *r);

/* ---- roofline -------------------------------------------------------------------------- */
typedef struct {
    int threads;
    double peak1, peakn;       /* GFLOP/s: this probe's own FMA loop, 1 thread and all (wall clock) */
    double peak_cpu1, peak_cpun; /* the same per second of CPU time each thread got (the hardware's roof) */
    double eng_peak;           /* the engine's peak (eng_peak_gflops: bench step's MFU denominator) */
    double bw_read, bw_write, bw_copy;  /* GB/s, all threads, buffers far larger than the caches */
    double bw_read1;           /* GB/s, one thread */
    double bw_read1_cpu;       /* GB/s, one thread, per second of its CPU time */
    size_t bw_bytes;           /* the buffer size used */
    int nk;
    struct {
        char name[PROBE_NAME];
        double flops, bytes, ai, sec, gflops, roof, frac;
    } k[PROBE_MAX_KERNELS];
} probe_roofline_result;
int probe_roofline(const probe_opts *o, probe_roofline_result *r);
int probe_roofline_svg(const probe_roofline_result *r, const char *path);  /* 0 or -1 + fb_err */

/* Memory bandwidth kernels (probe_mem.c), GB/s over `threads` threads, best of reps. The
 * buffers are of `bytes` each (copy: two of them). Bytes counted: read n, write n, copy 2n. */
double probe_bw_read(size_t bytes, int threads, int reps);
double probe_bw_write(size_t bytes, int threads, int reps);
double probe_bw_copy(size_t bytes, int threads, int reps);
/* One thread's read bandwidth per second of its CPU time (robust to a busy machine, as long
 * as the others leave the memory bus alone). */
double probe_bw_read_cpu(size_t bytes, int reps);
/* Peak GFLOP/s of an FMA loop of the widest vectors the build targets, on `threads` threads
 * (wall clock, best of many short runs); *per_cpu (may be NULL): the same FLOPs over each
 * thread's own CPU time, summed: what the cores can do when the threads have them, however
 * busy the machine is. */
double probe_fma_peak(int threads, int quick, double *per_cpu);

/* ---- cache ----------------------------------------------------------------------------- */
#define PROBE_MAX_WS 48
typedef struct {
    size_t cache[3];           /* L1d, L2, L3 bytes as the machine reports them (0: unknown) */
    char cache_src[64];        /* where they came from */
    int n;
    size_t ws[PROBE_MAX_WS];   /* working sets of the streaming sweep (bytes) */
    double read_gbs[PROBE_MAX_WS];   /* per second of the thread's CPU time */
    int ng;
    int gemm_n[PROBE_MAX_WS];  /* square GEMMs n×n×n, working set 3n²·4 bytes */
    size_t gemm_ws[PROBE_MAX_WS];
    double gemm_gflops[PROBE_MAX_WS];
    int ncliff;
    struct probe_cliff {
        size_t lo, hi;         /* the throughput falls between these working sets */
        double drop;           /* bandwidth ratio across the cliff (before / after) */
        int level;             /* the cache it matches (1..3; 0: none within a factor of 4) */
        double vs_cache;       /* hi / that cache's size */
    } cliff[4];
} probe_cache_result;
int probe_cache(const probe_opts *o, probe_cache_result *r);

/* ---- dispatch -------------------------------------------------------------------------- */
typedef struct {
    int threads;
    double empty_region_us;    /* an empty parallel region, team warm (back to back) */
    double barrier_us;         /* one barrier inside a running region */
    double wake_us;            /* an empty region after the team went to sleep (20 ms idle) */
    double tiny_gemm_us;       /* the smallest GEMM (8×32×8), warm */
    double tiny_gemm_cold_us;  /* the same after 20 ms idle */
    double tiny_rms_us;        /* RMSNorm of one row (the engine's entry point), warm */
    double spin_count;         /* GOMP_SPINCOUNT / OMP_WAIT_POLICY as set (-1: default) */
    char wait_policy[32];
} probe_dispatch_result;
int probe_dispatch(const probe_opts *o, probe_dispatch_result *r);

/* ---- printing and the command --------------------------------------------------------- */
struct probe_out;
void probe_weights_print(struct probe_out *po, const probe_weights_result *r);
void probe_counters_print(struct probe_out *po, const probe_counters_result *r);
void probe_sched_print(struct probe_out *po, const probe_sched_result *r);
void probe_roofline_print(struct probe_out *po, const probe_roofline_result *r);
void probe_cache_print(struct probe_out *po, const probe_cache_result *r);
void probe_dispatch_print(struct probe_out *po, const probe_dispatch_result *r);

#endif
