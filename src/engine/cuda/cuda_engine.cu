/* fable cuda engine — the device, memory, the two streams and their hazards, timers, and the
 * entry point of libfable_cuda.so. The kernels the step calls are in cuda_layers.cu (layers,
 * classifier, optimizer), built from cuda_gemm.cu (cuBLASLt), cuda_kernels.cu (element-wise
 * and reductions) and cuda_attn.cu (flash attention); the KV-cache decoder is cuda_infer.cu.
 *
 * Asynchrony: every call is queued on the main stream and returns at once; the weight
 * gradients go to a second stream (FABLE_CUDA_DW_STREAM=0 keeps them on main). Each side-
 * stream call first waits (an event) for the main-stream work before it, and is recorded with
 * the buffers it reads and writes; a later main-stream call that would overwrite what such a
 * call reads, or touch the gradients it writes, waits for it first (cu_main_hazard) — the
 * reference's "waited for before the next use", measured as the DW_WAIT phase. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_internal.cuh"
#include "engine/cuda/cuda_layers.cuh"
#include "engine/cuda/cuda_plugin.h"

extern "C" {
#include "fable/util.h"
}

extern "C" void cu_fatal(const char *file, int line, const char *what, const char *why) {
    fb_die("CUDA error at %s:%d: %s: %s", file, line, what, why);
}

static void graphs_drop(cu_state *st);

/* ---- scratch --------------------------------------------------------------------------------- */
void *cu_scratch(cu_state *st, int slot, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (st->scratch_bytes[slot] < bytes) {
        if (st->capturing) cu_fatal(__FILE__, __LINE__, "cu_scratch", "scratch grows while a step is recorded");
        graphs_drop(st); /* recorded steps point at the old buffer */
        if (st->scratch[slot]) CU_CHECK(cudaFree(st->scratch[slot])); /* waits for the device */
        bytes += bytes / 4;
        if (cudaMalloc(&st->scratch[slot], bytes) != cudaSuccess) {
            size_t fr = 0, tot = 0;
            cudaMemGetInfo(&fr, &tot);
            fb_die("out of GPU memory: engine scratch of %.1f MB (%.1f MB free of %.1f MB)", bytes / 1e6, fr / 1e6,
                   tot / 1e6);
        }
        st->scratch_bytes[slot] = bytes;
    }
    return st->scratch[slot];
}

/* ---- parameters and their bf16 mirrors -------------------------------------------------------- */
static int region_of(cu_state *st, const void *p) {
    for (int i = 0; i < st->nregion; i++)
        if ((const float *)p >= st->region[i].f32 && (const float *)p < st->region[i].f32 + st->region[i].n) return i;
    return -1;
}

const bf16 *cu_mirror(cu_state *st, const float *p) {
    int r = region_of(st, p);
    if (r < 0 || !st->region[r].b16) return NULL;
    return st->region[r].b16 + (p - st->region[r].f32);
}

/* ---- events and timers -------------------------------------------------------------------------- */
static cudaEvent_t ev_get(cu_state *st) {
    if (st->capturing) { /* a graph node records it at every launch: the graph owns it */
        cu_graph *g = st->capturing;
        if (g->nevs == g->cap_evs) {
            g->cap_evs = g->cap_evs ? 2 * g->cap_evs : 256;
            g->evs = (cudaEvent_t *)realloc(g->evs, g->cap_evs * sizeof(cudaEvent_t));
            if (!g->evs) fb_die("out of memory for CUDA events");
        }
        CU_CHECK(cudaEventCreate(&g->evs[g->nevs]));
        return g->evs[g->nevs++];
    }
    if (st->ev_used == st->nev) {
        if (st->nev == st->cap_ev) {
            st->cap_ev = st->cap_ev ? 2 * st->cap_ev : 1024;
            st->evpool = (cudaEvent_t *)realloc(st->evpool, st->cap_ev * sizeof(cudaEvent_t));
            if (!st->evpool) fb_die("out of memory for CUDA events");
        }
        CU_CHECK(cudaEventCreate(&st->evpool[st->nev]));
        st->nev++;
    }
    return st->evpool[st->ev_used++];
}

/* Record a timing event. In a graph being recorded, a plain cudaEventRecord only marks a fork or
 * join point; an event to be timed must be an event-record node (cudaEventRecordExternal). */
static void rec_timing(cu_state *st, cudaEvent_t ev, cudaStream_t s) {
    if (st->capturing) CU_CHECK(cudaEventRecordWithFlags(ev, s, cudaEventRecordExternal));
    else CU_CHECK(cudaEventRecord(ev, s));
}

static void mark(cu_state *st, int rec, int ph) {
    if (st->nmarks == st->cap_marks) {
        st->cap_marks = st->cap_marks ? 2 * st->cap_marks : 1024;
        st->marks = (cu_mark *)realloc(st->marks, st->cap_marks * sizeof(cu_mark));
        if (!st->marks) fb_die("out of memory for timer marks");
    }
    cu_mark *m = &st->marks[st->nmarks++];
    m->rec = rec;
    m->ph = ph;
    m->ev = ev_get(st);
    rec_timing(st, m->ev, st->main);
}

static void clear_timers(cu_state *st) {
    st->nmarks = 0;
    st->nside = 0;
    st->npend = 0; /* only after a sync: nothing is pending */
    st->ev_used = 0;
}

static void cu_phase(eng *e, int rec, int ph) {
    cu_state *st = cu_st(e);
    if (rec < 0 || rec >= ENG_MAX_RECORDS) rec = 0;
    if (ph == st->cur_ph && rec == st->cur_rec) return;
    st->cur_rec = rec;
    st->cur_ph = ph;
    mark(st, rec, ph);
}

/* Elapsed ms between two completed events; a timing the driver refuses is left out (once said),
 * never fatal: telemetry must not stop a training run. */
static int elapsed(cu_state *st, float *ms, cudaEvent_t a, cudaEvent_t b) {
    cudaError_t err = cudaEventElapsedTime(ms, a, b);
    if (err == cudaSuccess) return 1;
    cudaGetLastError();
    static int said;
    if (!said++) fprintf(stderr, "fable: note: a cuda phase timing is unavailable (%s); phases may read low\n",
                         cudaGetErrorString(err));
    return 0;
}

static void cu_timers(eng *e, int nrec, double (*sec)[ENG_PH_COUNT]) {
    cu_state *st = cu_st(e);
    CU_CHECK(cudaDeviceSynchronize());
    for (int i = 0; i + 1 < st->nmarks; i++) {
        const cu_mark *m = &st->marks[i];
        if (m->ph < 0 || m->rec >= nrec) continue;
        float ms = 0;
        if (elapsed(st, &ms, m->ev, st->marks[i + 1].ev)) sec[m->rec][m->ph] += ms * 1e-3;
    }
    for (int i = 0; i < st->nside; i++) {
        if (st->side_iv[i].rec >= nrec) continue;
        float ms = 0;
        if (elapsed(st, &ms, st->side_iv[i].a, st->side_iv[i].b)) sec[st->side_iv[i].rec][ENG_PH_DW] += ms * 1e-3;
    }
    clear_timers(st);
    if (st->cur_ph >= 0) mark(st, st->cur_rec, st->cur_ph); /* a phase still running goes on */
}

/* ---- hazards between the streams ------------------------------------------------------------- */
static int overlaps(const cu_span *a, int na, const cu_span *b, int nb) {
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) {
            uintptr_t a0 = (uintptr_t)a[i].p, a1 = a0 + a[i].bytes, b0 = (uintptr_t)b[j].p, b1 = b0 + b[j].bytes;
            if (a0 < b1 && b0 < a1) return 1;
        }
    return 0;
}

/* main waits for pend[0..k] (the side stream is in order, so the last one covers the rest) */
static void wait_pending(cu_state *st, int k) {
    const int rec = st->cur_rec, ph = st->cur_ph;
    mark(st, rec, ENG_PH_DW_WAIT);
    CU_CHECK(cudaStreamWaitEvent(st->main, st->pend[k].done, 0));
    mark(st, rec, ph);
    memmove(st->pend, st->pend + k + 1, (st->npend - k - 1) * sizeof(cu_pending));
    st->npend -= k + 1;
}

void cu_main_hazard(cu_state *st, const cu_span *writes, int nw, const cu_span *reads, int nr) {
    int last = -1;
    for (int i = 0; i < st->npend; i++) {
        const cu_pending *p = &st->pend[i];
        if (overlaps(writes, nw, p->reads, p->nr) || overlaps(writes, nw, p->writes, p->nw) ||
            overlaps(reads, nr, p->writes, p->nw))
            last = i;
    }
    if (last >= 0) wait_pending(st, last);
}

static void wait_all_pending(cu_state *st) {
    if (st->npend) wait_pending(st, st->npend - 1);
}

cudaStream_t cu_dw_begin(cu_state *st, void **ws) {
    if (!st->dw_side) {
        *ws = st->ws_main;
        return st->main;
    }
    cudaEvent_t fork = ev_get(st);
    CU_CHECK(cudaEventRecord(fork, st->main));
    CU_CHECK(cudaStreamWaitEvent(st->side, fork, 0));
    if (st->nside == st->cap_side) {
        st->cap_side = st->cap_side ? 2 * st->cap_side : 256;
        st->side_iv = (struct cu_iv *)realloc(st->side_iv, st->cap_side * sizeof *st->side_iv);
        if (!st->side_iv) fb_die("out of memory for timer marks");
    }
    st->side_iv[st->nside].rec = st->cur_rec;
    st->side_iv[st->nside].a = ev_get(st);
    rec_timing(st, st->side_iv[st->nside].a, st->side);
    *ws = st->ws_side;
    return st->side;
}

void cu_dw_end(cu_state *st, const cu_span *writes, int nw, const cu_span *reads, int nr) {
    if (!st->dw_side) return;
    cudaEvent_t b = ev_get(st), done = ev_get(st);
    rec_timing(st, b, st->side);
    CU_CHECK(cudaEventRecord(done, st->side)); /* what main waits on (a dependency inside a graph) */
    st->side_iv[st->nside++].b = b;
    if (st->npend == CU_MAX_PENDING) wait_pending(st, 0);
    cu_pending *p = &st->pend[st->npend++];
    if (nw > 8 || nr > 8) fb_die("cu_dw_end: too many spans");
    memcpy(p->writes, writes, nw * sizeof *writes);
    memcpy(p->reads, reads, nr * sizeof *reads);
    p->nw = nw;
    p->nr = nr;
    p->done = done;
}

/* ---- bf16 copies of residual gradients ---------------------------------------------------------- */
/* a ring slot (the oldest) for a bf16 copy of dy; the main stream first waits for side work
 * still reading what the slot held */
static int dy_slot(cu_state *st, const float *dy, size_t n) {
    if (n > st->dy_cap) {
        if (st->capturing) cu_fatal(__FILE__, __LINE__, "cu_dy_act", "gradient copies grow while a step is recorded");
        graphs_drop(st);
        CU_CHECK(cudaDeviceSynchronize());
        for (int i = 0; i < CU_DYCOPIES; i++) {
            if (st->dy_copy[i]) CU_CHECK(cudaFree(st->dy_copy[i]));
            if (cudaMalloc(&st->dy_copy[i], n * sizeof(bf16)) != cudaSuccess)
                fb_die("out of GPU memory for gradient copies (%.1f MB)", n * 2 / 1e6);
            st->dy_src[i] = NULL;
            st->dy_fresh[i] = 0;
        }
        st->dy_cap = n;
        st->npend = 0; /* after the device sync nothing is pending */
    }
    const int i = st->dy_next;
    st->dy_next = (st->dy_next + 1) % CU_DYCOPIES;
    cu_span w = {st->dy_copy[i], n * sizeof(bf16)};
    cu_main_hazard(st, &w, 1, NULL, 0);
    for (int j = 0; j < CU_DYCOPIES; j++) /* an older copy of the same buffer is stale now */
        if (st->dy_src[j] == dy) st->dy_src[j] = NULL, st->dy_fresh[j] = 0;
    st->dy_src[i] = dy;
    return i;
}

const void *cu_dy_act(cu_state *st, const float *dy, size_t n, int make) {
    if (!st->is_bf16) return dy;
    for (int i = 0; i < CU_DYCOPIES; i++)
        if (st->dy_src[i] == dy && (!make || st->dy_fresh[i])) {
            st->dy_fresh[i] = 0;
            return st->dy_copy[i];
        }
    const int i = dy_slot(st, dy, n);
    cu_to_bf16(st->main, n, dy, st->dy_copy[i]);
    return st->dy_copy[i];
}

bf16 *cu_dy_fill(cu_state *st, const float *dy, size_t n) {
    if (!st->is_bf16) return NULL;
    const int i = dy_slot(st, dy, n);
    st->dy_fresh[i] = 1;
    return st->dy_copy[i];
}

/* ---- memory ------------------------------------------------------------------------------------- */
static void *cu_alloc(eng *e, size_t bytes) {
    cu_state *st = cu_st(e);
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fb_err("out of GPU memory: %.1f MB requested, %.1f MB free of %.1f MB on %s", bytes / 1e6, fr / 1e6,
               tot / 1e6, st->prop.name);
        return NULL;
    }
    CU_CHECK(cudaMemsetAsync(p, 0, bytes, st->main));
    return p;
}

static float *cu_alloc_params(eng *e, size_t n) {
    cu_state *st = cu_st(e);
    if (st->nregion == CU_MAX_REGIONS) {
        fb_err("too many parameter regions on the cuda engine");
        return NULL;
    }
    float *p = (float *)cu_alloc(e, n * sizeof(float));
    if (!p) return NULL;
    bf16 *m = NULL;
    if (st->is_bf16) {
        m = (bf16 *)cu_alloc(e, n * sizeof(bf16));
        if (!m) {
            cudaFree(p);
            return NULL;
        }
    }
    st->region[st->nregion].f32 = p;
    st->region[st->nregion].b16 = m;
    st->region[st->nregion].n = n;
    st->nregion++;
    return p;
}

static void cu_free(eng *e, void *p) {
    cu_state *st = cu_st(e);
    if (!p) return;
    graphs_drop(st); /* a recorded step may read this buffer */
    CU_CHECK(cudaDeviceSynchronize());
    st->npend = 0;
    int r = region_of(st, p);
    if (r >= 0 && st->region[r].f32 == p) {
        if (st->region[r].b16) CU_CHECK(cudaFree(st->region[r].b16));
        st->region[r] = st->region[--st->nregion];
    }
    CU_CHECK(cudaFree(p));
}

static size_t cu_mem_available(eng *e) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    return fr;
}

static void cu_upload(eng *e, void *dst, const void *src, size_t bytes) {
    cu_state *st = cu_st(e);
    cu_span w = {dst, bytes};
    cu_main_hazard(st, &w, 1, NULL, 0);
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st->main));
    int r = region_of(st, dst);
    if (r >= 0 && st->region[r].b16) { /* refresh the mirror of what was written */
        const size_t off = (const float *)dst - st->region[r].f32;
        cu_to_bf16(st->main, bytes / sizeof(float), (const float *)dst, st->region[r].b16 + off);
    }
}

static void cu_download(eng *e, void *dst, const void *src, size_t bytes) {
    cu_state *st = cu_st(e);
    cu_span rd = {src, bytes};
    cu_main_hazard(st, NULL, 0, &rd, 1);
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st->main));
    CU_CHECK(cudaStreamSynchronize(st->main));
}

static float *host_tmp(cu_state *st, size_t bytes) {
    if (st->host_tmp_bytes < bytes) {
        if (st->host_tmp) CU_CHECK(cudaFreeHost(st->host_tmp));
        CU_CHECK(cudaMallocHost((void **)&st->host_tmp, bytes));
        st->host_tmp_bytes = bytes;
    }
    return st->host_tmp;
}

static void cu_upload_act(eng *e, float *dst, const float *src, size_t n) {
    cu_state *st = cu_st(e);
    if (!st->is_bf16) {
        cu_upload(e, dst, src, n * sizeof(float));
        return;
    }
    CU_CHECK(cudaStreamSynchronize(st->main)); /* the staging buffer may still be in use */
    bf16 *h = (bf16 *)host_tmp(st, n * sizeof(bf16));
    for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16(src[i]);
    cu_span w = {dst, n * sizeof(bf16)};
    cu_main_hazard(st, &w, 1, NULL, 0);
    CU_CHECK(cudaMemcpyAsync(dst, h, n * sizeof(bf16), cudaMemcpyHostToDevice, st->main));
    CU_CHECK(cudaStreamSynchronize(st->main));
}

static void cu_download_act(eng *e, float *dst, const float *src, size_t n) {
    cu_state *st = cu_st(e);
    if (!st->is_bf16) {
        cu_download(e, dst, src, n * sizeof(float));
        return;
    }
    bf16 *h = (bf16 *)host_tmp(st, n * sizeof(bf16));
    cu_download(e, h, src, n * sizeof(bf16));
    for (size_t i = 0; i < n; i++) dst[i] = __bfloat162float(h[i]);
}

static void cu_sync(eng *e) {
    cu_state *st = cu_st(e);
    wait_all_pending(st);
    CU_CHECK(cudaStreamSynchronize(st->main));
    CU_CHECK(cudaStreamSynchronize(st->side));
    CU_CHECK(cudaGetLastError());
    cu_prof_flush(1);
    if (st->ev_used > 200000) clear_timers(st); /* nobody reads the timers: do not grow forever */
}

static void cu_zero(eng *e, float *p, size_t n) {
    cu_state *st = cu_st(e);
    cu_span w = {p, n * sizeof(float)};
    cu_main_hazard(st, &w, 1, NULL, 0);
    CU_CHECK(cudaMemsetAsync(p, 0, n * sizeof(float), st->main));
}

/* ---- recorded micro-steps: CUDA graphs -----------------------------------------------------------
 * The first call with a key runs fn directly (buffers grow, cuBLASLt picks its algorithms), the
 * second records what fn queues on both streams into a graph (the side stream joins back into
 * main at its end), and every later call launches the graph. Pending side-stream work is waited
 * for before recording or launching, so a graph never waits on an event from outside it. Its
 * timer marks and side intervals (events it owns, recorded by its nodes) are re-registered at
 * each launch. A recording that fails falls back to calling fn, for that key, for good. */
static void graph_free(cu_graph *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    for (int i = 0; i < g->nevs; i++) cudaEventDestroy(g->evs[i]);
    free(g->evs);
    free(g->marks);
    free(g->iv);
    memset(g, 0, sizeof *g);
}

static void graphs_drop(cu_state *st) {
    if (!st->ngraph) return;
    CU_CHECK(cudaDeviceSynchronize());
    clear_timers(st); /* the marks may name events of the graphs */
    for (int i = 0; i < st->ngraph; i++) graph_free(&st->graph[i]);
    st->ngraph = 0;
}

static void graph_register(cu_state *st, const cu_graph *g) {
    for (int i = 0; i < g->nmarks; i++) {
        if (st->nmarks == st->cap_marks) {
            st->cap_marks = st->cap_marks ? 2 * st->cap_marks : 1024;
            st->marks = (cu_mark *)realloc(st->marks, st->cap_marks * sizeof(cu_mark));
            if (!st->marks) fb_die("out of memory for timer marks");
        }
        st->marks[st->nmarks++] = g->marks[i];
    }
    for (int i = 0; i < g->niv; i++) {
        if (st->nside == st->cap_side) {
            st->cap_side = st->cap_side ? 2 * st->cap_side : 256;
            st->side_iv = (struct cu_iv *)realloc(st->side_iv, st->cap_side * sizeof *st->side_iv);
            if (!st->side_iv) fb_die("out of memory for timer marks");
        }
        st->side_iv[st->nside++] = g->iv[i];
    }
    if (g->nmarks) st->cur_rec = g->marks[g->nmarks - 1].rec, st->cur_ph = g->marks[g->nmarks - 1].ph;
}

static int graph_record(cu_state *st, cu_graph *g, void (*fn)(void *), void *ctx) {
    const int m0 = st->nmarks, s0 = st->nside, rec0 = st->cur_rec, ph0 = st->cur_ph;
    st->capturing = g;
    CU_CHECK(cudaStreamBeginCapture(st->main, cudaStreamCaptureModeRelaxed));
    fn(ctx);
    if (st->nside > s0) { /* the side stream joins back */
        cudaEvent_t j = ev_get(st);
        CU_CHECK(cudaEventRecord(j, st->side));
        CU_CHECK(cudaStreamWaitEvent(st->main, j, 0));
    }
    st->npend = 0;
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamEndCapture(st->main, &graph);
    st->capturing = NULL;
    if (err == cudaSuccess) err = cudaGraphInstantiate(&g->exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    /* the marks and intervals of the recording move into the graph */
    g->nmarks = st->nmarks - m0;
    g->marks = (cu_mark *)malloc((g->nmarks + 1) * sizeof(cu_mark));
    memcpy(g->marks, st->marks + m0, g->nmarks * sizeof(cu_mark));
    g->niv = st->nside - s0;
    g->iv = (struct cu_iv *)malloc((g->niv + 1) * sizeof(struct cu_iv));
    memcpy(g->iv, st->side_iv + s0, g->niv * sizeof(struct cu_iv));
    st->nmarks = m0;
    st->nside = s0;
    st->cur_rec = rec0, st->cur_ph = ph0;
    if (err != cudaSuccess) {
        cudaGetLastError();
        fprintf(stderr, "fable: note: the cuda engine could not record a step as a CUDA graph (%s); it runs "
                        "without one\n", cudaGetErrorString(err));
        g->failed = 1;
        return -1;
    }
    return 0;
}

static void cu_run(eng *e, uint64_t key, void (*fn)(void *), void *ctx) {
    cu_state *st = cu_st(e);
    cu_graph *g = NULL;
    for (int i = 0; i < st->ngraph && !g; i++)
        if (st->graph[i].key == key) g = &st->graph[i];
    if (!g && st->use_graphs && st->ngraph < CU_MAX_GRAPHS) {
        g = &st->graph[st->ngraph++];
        memset(g, 0, sizeof *g);
        g->key = key;
    }
    if (!g || g->failed || g->seen++ == 0) {
        fn(ctx);
        return;
    }
    wait_all_pending(st);
    if (!g->exec && graph_record(st, g, fn, ctx)) {
        fn(ctx);
        return;
    }
    graph_register(st, g);
    CU_CHECK(cudaGraphLaunch(g->exec, st->main));
}

/* ---- peak --------------------------------------------------------------------------------------
 * The dense tensor peak from the datasheet for the cards fable knows (MFU is quoted against
 * it); otherwise a measured 4096³ cuBLASLt product at this precision. */
static double cu_peak(eng *e) {
    cu_state *st = cu_st(e);
    const char *n = st->prop.name;
    const int bf = st->is_bf16;
    if (strstr(n, "H100") && strstr(n, "PCIe")) return bf ? 756e3 : 51.2e3;
    if (strstr(n, "H100") || strstr(n, "H200") || strstr(n, "H800")) return bf ? 989.4e3 : 66.9e3;
    if (strstr(n, "A100")) return bf ? 312e3 : 19.5e3;
    const int M = 4096;
    void *a = cu_alloc(e, (size_t)M * M * 4), *b = cu_alloc(e, (size_t)M * M * 4), *c = cu_alloc(e, (size_t)M * M * 4);
    if (!a || !b || !c) return 0;
    const int t = bf ? CU_BF16 : CU_F32;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        cudaEvent_t e0 = ev_get(st), e1 = ev_get(st);
        CU_CHECK(cudaEventRecord(e0, st->main));
        cu_gemm(st, st->main, st->ws_main, 0, 1, M, M, M, a, M, b, M, t, c, c, M, CU_F32, 1.0f, 0.0f);
        CU_CHECK(cudaEventRecord(e1, st->main));
        CU_CHECK(cudaEventSynchronize(e1));
        float ms;
        CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best) best = ms;
    }
    cu_free(e, a), cu_free(e, b), cu_free(e, c);
    clear_timers(st);
    return 2.0 * M * M * M / (best * 1e-3) / 1e9;
}

/* ---- creation ------------------------------------------------------------------------------------ */
static void cu_destroy(eng *e) {
    cu_state *st = cu_st(e);
    cudaDeviceSynchronize();
    cu_prof_report();
    for (int i = 0; i < st->ngraph; i++) graph_free(&st->graph[i]);
    for (int i = 0; i < CU_SCR_COUNT; i++)
        if (st->scratch[i]) cudaFree(st->scratch[i]);
    for (int i = 0; i < CU_DYCOPIES; i++)
        if (st->dy_copy[i]) cudaFree(st->dy_copy[i]);
    for (int i = 0; i < st->nev; i++) cudaEventDestroy(st->evpool[i]);
    free(st->evpool);
    free(st->marks);
    free(st->side_iv);
    if (st->host_tmp) cudaFreeHost(st->host_tmp);
    cudaFree(st->ws_main);
    cudaFree(st->ws_side);
    cublasLtDestroy(st->lt);
    cudaStreamDestroy(st->main);
    cudaStreamDestroy(st->side);
    free(st);
    free(e);
}

static int cu_probe(char *why, size_t cap) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaErrorNoDevice || (err == cudaSuccess && n == 0)) {
        snprintf(why, cap, "no NVIDIA GPU found (the CUDA libraries are here, but no device)");
        return 0;
    }
    if (err == cudaErrorInsufficientDriver) {
        snprintf(why, cap, "no usable NVIDIA driver: libcuda.so.1 is missing or older than CUDA 13 needs (%s)",
                 cudaGetErrorString(err));
        return 0;
    }
    if (err != cudaSuccess) {
        snprintf(why, cap, "the CUDA runtime cannot reach a GPU: %s", cudaGetErrorString(err));
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess && p.major < 8) {
        snprintf(why, cap, "%s has compute capability %d.%d; fable's cuda engine needs 8.0 or newer (bf16 tensor cores)",
                 p.name, p.major, p.minor);
        return 0;
    }
    return 1;
}

eng *cu_create(const eng_opts *o) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || o->device < 0 || o->device >= n) {
        fb_err("GPU %d does not exist (this machine has %d)", o->device, n);
        return NULL;
    }
    eng *e = (eng *)calloc(1, sizeof *e);
    cu_state *st = (cu_state *)calloc(1, sizeof *st);
    if (!e || !st) {
        free(e);
        free(st);
        fb_err("out of memory creating the cuda engine");
        return NULL;
    }
    st->dev = o->device;
    CU_CHECK(cudaSetDevice(st->dev));
    CU_CHECK(cudaGetDeviceProperties(&st->prop, st->dev));
    st->is_bf16 = o->precision != ENG_FP32;
    const char *ds = getenv("FABLE_CUDA_DW_STREAM");
    st->dw_side = !(ds && !strcmp(ds, "0"));
    const char *gs = getenv("FABLE_CUDA_GRAPH");
    st->use_graphs = !(gs && !strcmp(gs, "0"));
    CU_CHECK(cudaStreamCreateWithFlags(&st->main, cudaStreamNonBlocking));
    CU_CHECK(cudaStreamCreateWithFlags(&st->side, cudaStreamNonBlocking));
    if (cu_prof_start(st->main)) st->dw_side = 0, st->use_graphs = 0; /* one stream, in order */
    LT_CHECK(cublasLtCreate(&st->lt));
    st->ws_bytes = (size_t)32 << 20;
    CU_CHECK(cudaMalloc(&st->ws_main, st->ws_bytes));
    CU_CHECK(cudaMalloc(&st->ws_side, st->ws_bytes));
    st->cur_ph = -1;
    e->impl = st;
    e->name = "cuda";
    e->threads = 1;
    e->precision = st->is_bf16 ? ENG_BF16 : ENG_FP32;
    e->dw_async = st->dw_side;
    e->act_bytes = st->is_bf16 ? 2 : 4;
    int drv = 0;
    cudaDriverGetVersion(&drv);
    snprintf(e->device, sizeof e->device, "%s (cc %d.%d, %.0f GB, %d SMs, driver CUDA %d.%d)", st->prop.name,
             st->prop.major, st->prop.minor, st->prop.totalGlobalMem / 1e9, st->prop.multiProcessorCount, drv / 1000,
             (drv % 1000) / 10);
    e->alloc = cu_alloc;
    e->alloc_params = cu_alloc_params;
    e->free = cu_free;
    e->mem_available = cu_mem_available;
    e->upload = cu_upload;
    e->download = cu_download;
    e->upload_act = cu_upload_act;
    e->download_act = cu_download_act;
    e->sync = cu_sync;
    e->destroy = cu_destroy;
    e->peak = cu_peak;
    e->phase = cu_phase;
    e->timers = cu_timers;
    e->run = cu_run;
    e->zero = cu_zero;
    cu_layers_install(e);
    return e;
}

static const fable_cuda_api api = {FABLE_CUDA_ABI, cu_probe, cu_create, cu_probe_dispatch, cu_probe_weights};

extern "C" __attribute__((visibility("default"))) const fable_cuda_api *fable_cuda_entry(void) { return &api; }
