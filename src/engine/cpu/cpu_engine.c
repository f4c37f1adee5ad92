/* fable cpu engine — creation, memory, and the element-wise kernels
 * (embedding, RMSNorm, RoPE, optimizer). The layer kernels live in cpu_attn.c (with
 * cpu_attn_direct.c for small heads),
 * cpu_ffn.c and the classifier in cpu_cls.c. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "fable/util.h"

void openblas_set_num_threads(int);

int cpu_gemm_use_own = 1;

/* ---- memory (host) -------------------------------------------------------------- */
typedef struct {
    void *buf[CPU_SCRATCH_COUNT];
    size_t bytes[CPU_SCRATCH_COUNT];
    float *tbuf[CPU_MAX_THREADS];
    size_t tbytes[CPU_MAX_THREADS];
    double (*sec)[ENG_PH_COUNT];   /* [ENG_MAX_RECORDS] phase seconds per timer record */
    int cur_rec, cur_ph;           /* the phase being timed (cur_ph -1: none) */
    double t_mark;                 /* when it began */
} cpu_state;

float *cpu_thread_scratch(eng *e, size_t bytes) {
    cpu_state *s = e->impl;
    int t = omp_get_thread_num();
    if (t >= CPU_MAX_THREADS) fb_die("more than %d threads", CPU_MAX_THREADS);
    if (s->tbytes[t] < bytes) {
        fb_free(s->tbuf[t]);
        s->tbuf[t] = fb_alloc(bytes);
        if (!s->tbuf[t]) fb_die("out of memory: thread scratch of %zu bytes", bytes);
        s->tbytes[t] = bytes;
    }
    return s->tbuf[t];
}

void *cpu_scratch(eng *e, int slot, size_t bytes) {
    cpu_state *s = e->impl;
    if (s->bytes[slot] < bytes) {
        fb_free(s->buf[slot]);
        s->buf[slot] = fb_alloc(bytes);
        if (!s->buf[slot]) fb_die("out of memory: engine scratch of %zu bytes", bytes);
        s->bytes[slot] = bytes;
    }
    return s->buf[slot];
}

static void *cpu_alloc(eng *e, size_t bytes) {
    void *p = fb_alloc(bytes);
    if (!p) fb_err("out of memory: %.1f MB requested", bytes / 1e6);
    return p;
}
static float *cpu_alloc_params(eng *e, size_t n) { return cpu_alloc(e, n * sizeof(float)); }
static void cpu_free(eng *e, void *p) { fb_free(p); }
static size_t cpu_mem_available(eng *e) { return fb_mem_available(); }
static void cpu_copy(eng *e, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_copy_act(eng *e, float *dst, const float *src, size_t n) { cpu_copy_floats(dst, src, n); }

/* dst = src over n floats, in parallel from 64K floats up. A serial copy of a 2048×64
 * activation (512 KB) took ~70 us on the master while the other thread, idle longer than
 * libgomp's short spin, fell asleep and then cost a wake-up at the next region (session 18:
 * ~1.5 ms of a 35 ms stories260K update over the two residual copies of 5 layers). */
void cpu_copy_floats(float *dst, const float *src, size_t n) {
    const size_t chunk = 16384;   /* 64 KB per task */
    if (n < 4 * chunk) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const long nc = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nc; c++) {
        const size_t i0 = (size_t)c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
        memcpy(dst + i0, src + i0, m * sizeof(float));
    }
}
static void cpu_sync(eng *e) {}
static double cpu_peak(eng *e) { return eng_cpu_measure_peak(e->threads); }
static void cpu_destroy(eng *e) {
    cpu_state *s = e->impl;
    for (int i = 0; i < CPU_SCRATCH_COUNT; i++) fb_free(s->buf[i]);
    for (int i = 0; i < CPU_MAX_THREADS; i++) fb_free(s->tbuf[i]);
    free(s->sec);
    free(s);
    free(e);
}

/* ---- timers: host clock (the cpu engine is synchronous; weight gradients run inline, so
 * nothing ever waits for them: DW_WAIT stays 0) ---------------------------------------- */
static void cpu_phase(eng *e, int rec, int ph) {
    cpu_state *s = e->impl;
    const double now = fb_now();
    if (s->cur_ph >= 0) s->sec[s->cur_rec][s->cur_ph] += now - s->t_mark;
    s->cur_rec = rec >= 0 && rec < ENG_MAX_RECORDS ? rec : 0;
    s->cur_ph = ph;
    s->t_mark = now;
}

static void cpu_timers(eng *e, int nrec, double (*sec)[ENG_PH_COUNT]) {
    cpu_state *s = e->impl;
    for (int r = 0; r < nrec && r < ENG_MAX_RECORDS; r++)
        for (int p = 0; p < ENG_PH_COUNT; p++) sec[r][p] += s->sec[r][p];
    memset(s->sec, 0, ENG_MAX_RECORDS * sizeof *s->sec);
}

/* ---- embedding ------------------------------------------------------------------- */
/* x[n,:] = E[tok[n],:] */
static void cpu_embed_fwd(eng *e, const eng_dims *d, float *x, const float *emb, const int32_t *tok) {
    const int D = d->D;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < d->N; n++) memcpy(x + (size_t)n * D, emb + (size_t)tok[n] * D, D * sizeof(float));
}

/* dE[tok[n],:] += dx[n,:]. Parallel over column blocks, rows in order: deterministic. */
static void cpu_embed_bwd(eng *e, const eng_dims *d, float *demb, const float *dx, const int32_t *tok) {
    const int D = d->D, N = d->N, CB = 64;
    const int nblk = (D + CB - 1) / CB;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        int j0 = b * CB, j1 = j0 + CB < D ? j0 + CB : D;
        for (int n = 0; n < N; n++) {
            float *dst = demb + (size_t)tok[n] * D;
            const float *src = dx + (size_t)n * D;
#pragma omp simd
            for (int j = j0; j < j1; j++) dst[j] += src[j];
        }
    }
}

/* ---- RMSNorm ----------------------------------------------------------------------- */
void cpu_rmsnorm_rows(int N, int D, const float *x, const float *w, float *out, float *rstd) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float *o = out + (size_t)n * D;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < D; j++) ss += xr[j] * xr[j];
        float r = 1.0f / sqrtf(ss / (float)D + MODEL_RMS_EPS);
        rstd[n] = r;
#pragma omp simd
        for (int j = 0; j < D; j++) o[j] = w[j] * (r * xr[j]);
    }
}

void cpu_rmsnorm_bwd_rows(int N, int D, const float *x, const float *w, const float *rstd,
                          const float *dout, const float *base, float *dx, float *dw, int acc) {
    /* dx: rows independent. mean(ĝ⊙x̂) = rstd·Σ_j dout_j w_j x_j / D. */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *g = dout + (size_t)n * D;
        const float *br = base ? base + (size_t)n * D : NULL;
        float *o = dx + (size_t)n * D;
        const float r = rstd[n];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < D; j++) dot += g[j] * w[j] * xr[j];
        const float c = dot * r / (float)D; /* mean(ĝ⊙x̂) = rstd·Σ ĝ_j x_j / D */
        if (br) {
#pragma omp simd
            for (int j = 0; j < D; j++) o[j] = br[j] + r * (g[j] * w[j] - xr[j] * r * c);
        } else {
#pragma omp simd
            for (int j = 0; j < D; j++) o[j] = r * (g[j] * w[j] - xr[j] * r * c);
        }
    }
    /* dw_j += Σ_n dout[n,j]·x[n,j]·rstd[n]: column blocks in parallel, rows in order. */
    const int CB = 32, nblk = (D + CB - 1) / CB;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        int j0 = b * CB, j1 = j0 + CB < D ? j0 + CB : D;
        float part[32] = {0};
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * D, *g = dout + (size_t)n * D;
            const float r = rstd[n];
            for (int j = j0; j < j1; j++) part[j - j0] += g[j] * xr[j] * r;
        }
        for (int j = j0; j < j1; j++) dw[j] = (acc ? dw[j] : 0.0f) + part[j - j0];
    }
}

static void cpu_rmsnorm_fwd(eng *e, int N, int D, const float *x, const float *w, float *out, float *rstd) {
    cpu_rmsnorm_rows(N, D, x, w, out, rstd);
}

static void cpu_rmsnorm_bwd(eng *e, int N, int D, const float *x, const float *w, const float *rstd,
                            const float *dout, float *dx, float *dw, int acc) {
    cpu_rmsnorm_bwd_rows(N, D, x, w, rstd, dout, NULL, dx, dw, acc);
}

/* ---- dropout ------------------------------------------------------------------------
 * x[i] ·= eng_drop_mult(seed ^ site, …, i) over n elements: 0 or 1/(1−p) (engine.h). */
void cpu_dropout_mul(size_t n, float *x, uint32_t site_seed, float p) {
    const uint32_t thresh = eng_drop_thresh(p);
    const float keep = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= eng_drop_mult(site_seed, thresh, keep, (uint32_t)i);
}

/* ---- RoPE ---------------------------------------------------------------------------
 * forward:  (a, b) → (a·cos − b·sin, a·sin + b·cos)
 * inverse (the gradient): rotate by −angle: (a, b) → (a·cos + b·sin, −a·sin + b·cos) */
void cpu_rope(float *x, int N, int T, int heads, int HS, const float *rope, int inverse) {
    const int half = HS / 2, W = heads * HS;
    const float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *rp = rope + (size_t)(n % T) * half * 2;
        float *row = x + (size_t)n * W;
        for (int h = 0; h < heads; h++) {
            float *v = row + h * HS;
            for (int i = 0; i < half; i++) {
                float c = rp[2 * i], s = sgn * rp[2 * i + 1];
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
    }
}

/* ---- optimizer ----------------------------------------------------------------------- */
/* Σ g² in double, over fixed 64K-element blocks summed in order: the result does not
 * depend on the thread count. Within a block, 16 independent double lanes (lane j takes
 * elements ≡ j mod 16), combined in a fixed order at the end: the compiler keeps them in
 * two zmm registers, so the loop runs at memory speed instead of waiting on one chain of
 * dependent adds (with the gradient overwrite, the 110M optimizer phase went 86 → 67 ms;
 * bench/RESULTS.md). */
static double sumsq_block(const float *g, size_t n) {
    double lane[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
#pragma omp simd
        for (int j = 0; j < 16; j++) lane[j] += (double)g[i + j] * g[i + j];
    for (int j = 0; i < n; i++, j++) lane[j] += (double)g[i] * g[i];
    double s = 0;
    for (int j = 0; j < 16; j++) s += lane[j];
    return s;
}

static void cpu_sumsq(eng *e, const float *g, size_t n, double *out) {
    const size_t BS = 65536;
    const size_t nb = (n + BS - 1) / BS;
    double *part = malloc((nb ? nb : 1) * sizeof(double));
    if (!part) fb_die("out of memory in sumsq");
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * BS, i1 = i0 + BS < n ? i0 + BS : n;
        part[b] = sumsq_block(g + i0, i1 - i0);
    }
    double s = 0;
    for (size_t b = 0; b < nb; b++) s += part[b];
    free(part);
    *out = s;
}

/* One AdamW element (the scalar form of the vector loop below; same operations, same order).
 * torch.optim.AdamW: p ← p(1 − lr·wd) − lr·m̂ / (√v / √bc2 + eps), m̂ = m/bc1 */
static inline void adamw_one(float *p, const float *g, float *m, float *v, float b1, float b2, float gs, float decay,
                             float lr_bc1, float inv_sqrt_bc2, float eps) {
    float gi = *g * gs;
    float mi = b1 * *m + (1.0f - b1) * gi;
    float vi = b2 * *v + (1.0f - b2) * (gi * gi);
    *m = mi;
    *v = vi;
    *p = *p * decay - lr_bc1 * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
}

/* AdamW is memory-bound (read p, g, m, v; write p, m, v: 28 bytes per parameter). The
 * vector path writes with non-temporal stores so the written lines are not first read
 * into the cache (saves the read-for-ownership traffic: ~40 → 28 bytes per parameter). */
static void cpu_adamw(eng *e, float *p, const float *g, float *m, float *v, size_t n, const eng_adamw_args *a,
                      const double *gsumsq) {
    const float b1 = a->beta1, b2 = a->beta2;
    const float bc1 = 1.0f - powf(b1, (float)a->step), bc2 = 1.0f - powf(b2, (float)a->step);
    const float eps = a->eps, gs = eng_clip_scale(*gsumsq, a->grad_scale, a->grad_clip);
    const float decay = 1.0f - a->lr * a->weight_decay, lr_bc1 = a->lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    const size_t CH = 1 << 14;
    const size_t nch = (n + CH - 1) / CH;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nch; c++) {
        size_t i = c * CH, end = i + CH < n ? i + CH : n;
#if defined(__AVX512F__)
        while (i < end && ((uintptr_t)(p + i) & 63)) { adamw_one(p + i, g + i, m + i, v + i, b1, b2, gs, decay, lr_bc1, inv_sqrt_bc2, eps); i++; }
        /* the three written arrays share p's alignment only if their offsets agree mod 16 */
        int aligned = !((uintptr_t)(m + i) & 63) && !((uintptr_t)(v + i) & 63);
        const __m512 vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2), v1b1 = _mm512_set1_ps(1.0f - b1),
                     v1b2 = _mm512_set1_ps(1.0f - b2), vgs = _mm512_set1_ps(gs), vdec = _mm512_set1_ps(decay),
                     vlr = _mm512_set1_ps(lr_bc1), vis = _mm512_set1_ps(inv_sqrt_bc2), veps = _mm512_set1_ps(eps);
        for (; aligned && i + 16 <= end; i += 16) {
            __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), vgs);
            __m512 mi = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_load_ps(m + i)), _mm512_mul_ps(v1b1, gi));
            __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_load_ps(v + i)), _mm512_mul_ps(v1b2, _mm512_mul_ps(gi, gi)));
            __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), vis), veps);
            __m512 pi = _mm512_sub_ps(_mm512_mul_ps(_mm512_load_ps(p + i), vdec), _mm512_div_ps(_mm512_mul_ps(vlr, mi), den));
            _mm512_stream_ps(m + i, mi);
            _mm512_stream_ps(v + i, vi);
            _mm512_stream_ps(p + i, pi);
        }
#endif
        for (; i < end; i++) adamw_one(p + i, g + i, m + i, v + i, b1, b2, gs, decay, lr_bc1, inv_sqrt_bc2, eps);
    }
#if defined(__AVX512F__)
    _mm_sfence();
#endif
}

static void cpu_zero(eng *e, float *p, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 16384) memset(p + i, 0, (n - i < 16384 ? n - i : 16384) * sizeof(float));
}

/* ---- creation ---------------------------------------------------------------------------- */
static void cpu_cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            char *v = strchr(line, ':') + 1;
            while (*v == ' ') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, cap, "%s", v);
            break;
        }
    fclose(f);
}

static eng *cpu_create(const eng_opts *o) {
    if (o->precision == ENG_BF16) {
        fb_err("the cpu engine computes in fp32 only (--precision fp32)");
        return NULL;
    }
    eng *e = calloc(1, sizeof *e);
    cpu_state *st = calloc(1, sizeof(cpu_state));
    if (st) st->sec = calloc(ENG_MAX_RECORDS, sizeof *st->sec);
    if (!e || !st || !st->sec) {
        if (st) free(st->sec);
        free(st);
        free(e);
        fb_err("out of memory creating the cpu engine");
        return NULL;
    }
    st->cur_ph = -1;
    e->impl = st;
    int threads = o->threads;
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    const char *g = getenv("FABLE_GEMM");
    if (g && !strcmp(g, "fable")) cpu_gemm_use_own = 1;
    else if (g && !strcmp(g, "blas")) cpu_gemm_use_own = 0;
    const char *ab = getenv("FABLE_ATTN_BLOCK");
    if (ab && atoi(ab) > 0) cpu_attn_block = atoi(ab);
    const char *dh = getenv("FABLE_ATTN_DIRECT_HS");
    if (dh && *dh) cpu_attn_direct_hs = atoi(dh);
    const char *at = getenv("FABLE_ATTN_TILES");
    if (at && *at) cpu_attn_tiles = atoi(at) != 0;
    e->name = "cpu";
    e->threads = threads;
    e->precision = ENG_FP32;
    e->dw_async = 0;
    e->dropout = 1;
    e->act_bytes = sizeof(float);
    char cpu[100];
    cpu_cpu_name(cpu, sizeof cpu);
    snprintf(e->device, sizeof e->device, "%s (%d thread%s)", cpu, threads, threads == 1 ? "" : "s");
    e->alloc = cpu_alloc;
    e->alloc_params = cpu_alloc_params;
    e->free = cpu_free;
    e->mem_available = cpu_mem_available;
    e->upload = cpu_copy;
    e->download = cpu_copy;
    e->upload_act = cpu_copy_act;
    e->download_act = cpu_copy_act;
    e->sync = cpu_sync;
    e->destroy = cpu_destroy;
    e->peak = cpu_peak;
    e->phase = cpu_phase;
    e->timers = cpu_timers;
    e->run = eng_run_direct;
    e->embed_fwd = cpu_embed_fwd;
    e->embed_bwd = cpu_embed_bwd;
    e->attn_fwd = cpu_attn_fwd;
    e->attn_bwd = cpu_attn_bwd;
    e->qkv_bwd = cpu_qkv_bwd;
    e->attn_dw = cpu_attn_dw;
    e->ffn_fwd = cpu_ffn_fwd;
    e->ffn_bwd = cpu_ffn_bwd;
    e->ffn_dw = cpu_ffn_dw;
    e->rmsnorm_fwd = cpu_rmsnorm_fwd;
    e->rmsnorm_bwd = cpu_rmsnorm_bwd;
    e->cls_loss = cpu_cls_loss;
    e->sumsq = cpu_sumsq;
    e->adamw = cpu_adamw;
    e->zero = cpu_zero;
    return e;
}

static int cpu_available(char *why, size_t cap) { return 1; }

const eng_backend eng_backend_cpu = {"cpu", "fp32 on every core: packed AVX-512/AVX2 GEMM, fused attention and classifier",
                                     cpu_available, cpu_create};
