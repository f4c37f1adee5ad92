/* bench_adamw — what AdamW costs in a training step, and what a lighter optimizer state or a
 * fused update would save (issue 21 item 2).
 *
 * Build (after `make`, from the repository root):   make -C bench bench_adamw
 * Run:   build/bench/bench_adamw [--params N] [--rounds R] [--threads T] [--step-ms MS]
 *   --params N   parameters (default 109529856: stories110M)
 *   --step-ms MS the measured training-step time to state AdamW's share of (e.g. from
 *                `fable bench step --preset stories110M --batch 1 --seq 256`)
 *
 * Contenders, alternated round by round so that the machine's noise hits them alike:
 *   engine     the cpu engine's AdamW as training runs it: fp32 p, g, m, v; reads 16 bytes
 *              per parameter and writes 12 with non-temporal stores (28 bytes);
 *   bf16-mv    a prototype with bf16 moments (m, v rounded to nearest even), fp32 p and g:
 *              12 read + 8 written = 20 bytes per parameter. Not used by training: it is
 *              what "a lighter state" would buy, measured;
 *   traffic    the engine's traffic with almost no arithmetic (p = a·p + b·g, m = c·m,
 *              v = d·v, same loads and non-temporal stores): the memory roof of AdamW;
 *   in-cache   AdamW's arithmetic (the engine's, vectorised the same way) over one 64 KB
 *              slice per thread, repeated to cover N parameters in one parallel region:
 *              the arithmetic alone, as if p, g, m, v were in L1/L2. What an update fused
 *              into the backward (while the gradient is in cache) could at best approach;
 *              at 110M the gradient of one layer (7M parameters, 28 MB) does not stay in
 *              the 1 MB L2, so the real saving would be the gradient's read (4 of 28 bytes).
 * Prints ms per update (median over rounds), GB/s, and the share of --step-ms.
 */
#include "fable/engine.h"
#include "fable/util.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#if defined(__AVX512F__)
/* bf16 (round to nearest even) of 16 floats, and back */
static inline __m256i to_bf16(__m512 x) {
    __m512i b = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    b = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(b, 16));
}
static inline __m512 from_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The engine's AdamW arithmetic (cpu_engine.c cpu_adamw) on 16 lanes: constants, one step */
typedef struct { __m512 b1, b2, c1, c2, dec, lr, is, eps; } adamw_k;
static adamw_k adamw_consts(const eng_adamw_args *a) {
    const float bc1 = 1.0f - powf(a->beta1, (float)a->step), bc2 = 1.0f - powf(a->beta2, (float)a->step);
    return (adamw_k){_mm512_set1_ps(a->beta1), _mm512_set1_ps(a->beta2), _mm512_set1_ps(1.0f - a->beta1),
                     _mm512_set1_ps(1.0f - a->beta2), _mm512_set1_ps(1.0f - a->lr * a->weight_decay),
                     _mm512_set1_ps(a->lr / bc1), _mm512_set1_ps(1.0f / sqrtf(bc2)), _mm512_set1_ps(a->eps)};
}
/* m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², returns p·(1 − lr·wd) − lr/bc1·m / (√v/√bc2 + eps) */
static inline __m512 adamw_vec(const adamw_k *k, __m512 p, __m512 g, __m512 *m, __m512 *v) {
    *m = _mm512_add_ps(_mm512_mul_ps(k->b1, *m), _mm512_mul_ps(k->c1, g));
    *v = _mm512_add_ps(_mm512_mul_ps(k->b2, *v), _mm512_mul_ps(k->c2, _mm512_mul_ps(g, g)));
    __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(*v), k->is), k->eps);
    return _mm512_sub_ps(_mm512_mul_ps(p, k->dec), _mm512_div_ps(_mm512_mul_ps(k->lr, *m), den));
}

/* AdamW with bf16 m and v: the engine's arithmetic, other storage */
static void adamw_bf16mv(float *p, const float *g, uint16_t *m, uint16_t *v, size_t n, const eng_adamw_args *a) {
    const adamw_k k = adamw_consts(a);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 16) { /* n is a multiple of 16, the arrays 64-byte aligned */
        __m512 mi = from_bf16(_mm256_load_si256((const __m256i *)(m + i)));
        __m512 vi = from_bf16(_mm256_load_si256((const __m256i *)(v + i)));
        __m512 pi = adamw_vec(&k, _mm512_load_ps(p + i), _mm512_load_ps(g + i), &mi, &vi);
        _mm256_stream_si256((__m256i *)(m + i), to_bf16(mi));
        _mm256_stream_si256((__m256i *)(v + i), to_bf16(vi));
        _mm512_stream_ps(p + i, pi);
    }
    _mm_sfence();
}

/* AdamW's arithmetic on a cache-resident slice per thread, `reps` times over (ordinary
 * stores: the slice stays in L1/L2) */
static void adamw_in_cache(float *p, const float *g, float *m, float *v, size_t slice, size_t reps,
                           const eng_adamw_args *a) {
    const adamw_k k = adamw_consts(a);
#pragma omp parallel
    {
        const size_t off = (size_t)omp_get_thread_num() * slice;
        float *pp = p + off, *mm = m + off, *vv = v + off;
        const float *gg = g + off;
#pragma omp for schedule(static)
        for (size_t r = 0; r < reps; r++)
            for (size_t i = 0; i < slice; i += 16) {
                __m512 mi = _mm512_load_ps(mm + i), vi = _mm512_load_ps(vv + i);
                _mm512_store_ps(pp + i, adamw_vec(&k, _mm512_load_ps(pp + i), _mm512_load_ps(gg + i), &mi, &vi));
                _mm512_store_ps(mm + i, mi);
                _mm512_store_ps(vv + i, vi);
            }
    }
}

/* AdamW's loads and non-temporal stores, three multiply-adds instead of its arithmetic */
static void traffic_only(float *p, const float *g, float *m, float *v, size_t n) {
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 16) {
        __m512 gi = _mm512_load_ps(g + i);
        _mm512_stream_ps(m + i, _mm512_mul_ps(a, _mm512_load_ps(m + i)));
        _mm512_stream_ps(v + i, _mm512_mul_ps(a, _mm512_load_ps(v + i)));
        _mm512_stream_ps(p + i, _mm512_fmadd_ps(a, _mm512_load_ps(p + i), _mm512_mul_ps(b, gi)));
    }
    _mm_sfence();
}
#endif

int main(int argc, char **argv) {
    size_t n = 109529856;
    int rounds = 7, threads = 0;
    double step_ms = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--params")) n = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--step-ms")) step_ms = atof(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
#if !defined(__AVX512F__)
    fprintf(stderr, "bench_adamw needs AVX-512 (its prototypes are written with it)\n");
    return 77;
#else
    n = (n + 15) / 16 * 16;
    if (rounds < 1) rounds = 1;
    eng_opts eo = {.threads = threads, .precision = -1};
    eng *e = eng_create("cpu", &eo);
    if (!e) { fprintf(stderr, "%s\n", fb_errmsg()); return 1; }
    if (threads > 0) omp_set_num_threads(threads);
    float *p = e->alloc(e, n * 4), *g = e->alloc(e, n * 4), *m = e->alloc(e, n * 4), *v = e->alloc(e, n * 4);
    uint16_t *m16 = e->alloc(e, n * 2), *v16 = e->alloc(e, n * 2);
    if (!p || !g || !m || !v || !m16 || !v16) { fprintf(stderr, "out of memory\n"); return 1; }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        p[i] = 0.02f * (float)((i * 2654435761u) % 1000) / 1000.0f;
        g[i] = 1e-3f * ((float)((i * 40503u) % 2001) - 1000.0f) / 1000.0f;
    }
    const size_t slice = 4096; /* 4096 parameters: p, g, m, v are 64 KB together */
    const double gsumsq = 1.0;
    enum { ENGINE, BF16MV, TRAFFIC, INCACHE, NC };
    static const char *names[NC] = {"engine (fp32 m, v)", "bf16-mv (prototype)", "traffic only (roof)",
                                    "in-cache (arithmetic only)"};
    static const double bytes_pp[NC] = {28, 20, 28, 0};
    double *t = calloc((size_t)rounds * NC, sizeof *t);
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < NC; c++) {
            eng_adamw_args a = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                .grad_scale = 1.0f, .grad_clip = 1.0f, .step = r + 1};
            double t0 = fb_now();
            if (c == ENGINE) e->adamw(e, p, g, m, v, n, &a, &gsumsq);
            else if (c == BF16MV) adamw_bf16mv(p, g, m16, v16, n, &a);
            else if (c == TRAFFIC) traffic_only(p, g, m, v, n);
            else adamw_in_cache(p, g, m, v, slice, n / slice, &a);
            t[(size_t)r * NC + c] = fb_now() - t0;
        }
    }
    printf("AdamW over %zu parameters, %d threads, median of %d rounds (alternated)\n", n, omp_get_max_threads(),
           rounds);
    printf("| contender | bytes/param | ms per update | GB/s | share of a %.0f ms step |\n|---|---|---|---|---|\n",
           step_ms);
    for (int c = 0; c < NC; c++) {
        double col[256];
        int k = rounds < 256 ? rounds : 256;
        for (int r = 0; r < k; r++) col[r] = t[(size_t)r * NC + c];
        qsort(col, k, sizeof *col, cmp_d);
        const double med = col[k / 2];
        char gbs[32] = "-", share[32] = "-";
        if (bytes_pp[c] > 0) snprintf(gbs, sizeof gbs, "%.1f", bytes_pp[c] * n / med / 1e9);
        if (step_ms > 0) snprintf(share, sizeof share, "%.1f%%", 100.0 * med * 1e3 / step_ms);
        printf("| %s | %.0f | %.1f | %s | %s |\n", names[c], bytes_pp[c], med * 1e3, gbs, share);
    }
    free(t);
    e->free(e, p); e->free(e, g); e->free(e, m); e->free(e, v); e->free(e, m16); e->free(e, v16);
    e->destroy(e);
    return 0;
#endif
}
