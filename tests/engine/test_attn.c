/* The causal attention core against a naive double-precision reference written from the
 * formulas (forward: att, lse; backward: dq, dk, dv from a random da), on every path the
 * cpu engine has: the register tiles (HS 32, 48, 64), the GEMM-tiled blocks (any HS) and
 * the direct kernels (HS ≤ 16). Sequences that are not multiples of the 32-key panels or
 * the 64-row blocks, a single token, grouped-query heads (2 query heads per kv head),
 * batch 2, row blocks cut to 5 rows, and 1-3 threads (the tiles schedule tasks dynamically). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu_internal.h"
#include "fable/util.h"
#include "testlib.h"

typedef struct { int B, T, NH, NKV, HS; } shape;

/* reference: per (b, h, t) over keys u ≤ t, in double */
static void reference(const shape *s, const float *q, const float *k, const float *v, const float *da, double *att,
                      double *lse, double *dq, double *dk, double *dv) {
    const int T = s->T, HS = s->HS, D = s->NH * HS, KVD = s->NKV * HS, grp = s->NH / s->NKV;
    const double sc = 1.0 / sqrt((double)HS);
    double *p = malloc(T * sizeof(double)), *dp = malloc(T * sizeof(double));
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++)
            for (int t = 0; t < T; t++) {
                const int g = h / grp;
                const float *qt = q + (size_t)(b * T + t) * D + h * HS, *dat = da + (size_t)(b * T + t) * D + h * HS;
                double m = -1e300, z = 0, delta = 0;
                for (int u = 0; u <= t; u++) {
                    const float *ku = k + (size_t)(b * T + u) * KVD + g * HS;
                    double x = 0;
                    for (int j = 0; j < HS; j++) x += (double)qt[j] * ku[j];
                    p[u] = x * sc;
                    m = p[u] > m ? p[u] : m;
                }
                for (int u = 0; u <= t; u++) z += exp(p[u] - m);
                lse[((size_t)b * s->NH + h) * T + t] = m + log(z);
                for (int u = 0; u <= t; u++) {
                    p[u] = exp(p[u] - m) / z;
                    const float *vu = v + (size_t)(b * T + u) * KVD + g * HS;
                    double x = 0;
                    for (int j = 0; j < HS; j++) {
                        att[(size_t)(b * T + t) * D + h * HS + j] += p[u] * vu[j];
                        x += (double)dat[j] * vu[j];
                    }
                    dp[u] = x;
                    delta += p[u] * x;
                }
                for (int u = 0; u <= t; u++) {
                    const double ds = p[u] * (dp[u] - delta) * sc;
                    const size_t ku = (size_t)(b * T + u) * KVD + g * HS;
                    for (int j = 0; j < HS; j++) {
                        dq[(size_t)(b * T + t) * D + h * HS + j] += ds * k[ku + j];
                        dk[ku + j] += ds * qt[j];
                        dv[ku + j] += p[u] * dat[j];
                    }
                }
            }
    free(p);
    free(dp);
}

/* max |x − ref| / max |ref| */
static double rel_err_d(const float *x, const double *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double dd = fabs(x[i] - ref[i]);
        if (dd > md || dd != dd) md = dd;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

enum { PATH_TILES, PATH_GEMM, PATH_DIRECT };
static const char *path_name[] = {"tiles", "gemm", "direct"};

static void check(const shape *s, int path, int block, int threads) {
    const int N = s->B * s->T, D = s->NH * s->HS, KVD = s->NKV * s->HS;
    eng_dims d = {.B = s->B, .T = s->T, .N = N, .D = D, .NH = s->NH, .NKV = s->NKV, .HS = s->HS, .KVD = KVD};
    fb_rng r;
    fb_rng_seed(&r, 11 + s->T + s->HS);
    float *q = fb_alloc((size_t)N * D * 4), *dq = fb_alloc((size_t)N * D * 4), *da = fb_alloc((size_t)N * D * 4);
    float *att = fb_alloc((size_t)N * D * 4), *lse = fb_alloc((size_t)N * s->NH * 4);
    float *k = fb_alloc((size_t)N * KVD * 4), *v = fb_alloc((size_t)N * KVD * 4);
    float *dk = fb_alloc((size_t)N * KVD * 4), *dv = fb_alloc((size_t)N * KVD * 4);
    /* scores of a few units: the softmax is neither flat nor one-hot */
    for (size_t i = 0; i < (size_t)N * D; i++) q[i] = (float)(1.5 * fb_rng_normal(&r)), da[i] = (float)fb_rng_normal(&r);
    for (size_t i = 0; i < (size_t)N * KVD; i++) k[i] = (float)(1.5 * fb_rng_normal(&r)), v[i] = (float)fb_rng_normal(&r);
    /* outputs prefilled with NaN: every element must be written */
    for (size_t i = 0; i < (size_t)N * D; i++) att[i] = dq[i] = NAN;
    for (size_t i = 0; i < (size_t)N * KVD; i++) dk[i] = dv[i] = NAN;
    for (size_t i = 0; i < (size_t)N * s->NH; i++) lse[i] = NAN;

    double *ratt = calloc((size_t)N * D, 8), *rlse = calloc((size_t)N * s->NH, 8), *rdq = calloc((size_t)N * D, 8);
    double *rdk = calloc((size_t)N * KVD, 8), *rdv = calloc((size_t)N * KVD, 8);
    reference(s, q, k, v, da, ratt, rlse, rdq, rdk, rdv);

    eng *e = eng_create("cpu", &(eng_opts){.threads = threads, .precision = -1});
    cpu_attn_tiles = path == PATH_TILES;
    cpu_attn_direct_hs = path == PATH_DIRECT ? 16 : 0;
    cpu_attn_block = block;
    cpu_attn_core_fwd(e, &d, q, k, v, att, lse);
    /* the backward twice: finding Δ_t = Σ_u P·dP itself (o NULL), then from the forward's
     * output (Δ_t = Σ_d dA·O), here given as 2·O with o_keep ½ as under dropout; both checked */
    float *dq1 = fb_alloc((size_t)N * D * 4), *dk1 = fb_alloc((size_t)N * KVD * 4), *dv1 = fb_alloc((size_t)N * KVD * 4);
    float *o2 = fb_alloc((size_t)N * D * 4);
    for (size_t i = 0; i < (size_t)N * D; i++) o2[i] = 2.0f * att[i], dq1[i] = NAN;
    for (size_t i = 0; i < (size_t)N * KVD; i++) dk1[i] = dv1[i] = NAN;
    cpu_attn_core_bwd(e, &d, q, k, v, lse, NULL, 1.0f, da, dq1, dk1, dv1);
    cpu_attn_core_bwd(e, &d, q, k, v, lse, o2, 0.5f, da, dq, dk, dv);
    e->destroy(e);
    const double e1q = rel_err_d(dq1, rdq, (size_t)N * D), e1k = rel_err_d(dk1, rdk, (size_t)N * KVD),
                 e1v = rel_err_d(dv1, rdv, (size_t)N * KVD);
    const double tol = 2e-5;
    CHECK(e1q <= tol && e1k <= tol && e1v <= tol, "%s backward without O: dq %.2e dk %.2e dv %.2e", path_name[path],
          e1q, e1k, e1v);
    fb_free(dq1); fb_free(dk1); fb_free(dv1); fb_free(o2);

    double ea = rel_err_d(att, ratt, (size_t)N * D), el = rel_err_d(lse, rlse, (size_t)N * s->NH);
    double eq = rel_err_d(dq, rdq, (size_t)N * D), ek = rel_err_d(dk, rdk, (size_t)N * KVD);
    double ev = rel_err_d(dv, rdv, (size_t)N * KVD);
    fprintf(stderr, "  %-6s B%d T%-3d NH%d NKV%d HS%-2d block %2d, %d thr: att %.1e lse %.1e dq %.1e dk %.1e dv %.1e\n",
            path_name[path], s->B, s->T, s->NH, s->NKV, s->HS, block, threads, ea, el, eq, ek, ev);
    CHECK(ea <= tol && el <= tol, "%s forward: att %.2e lse %.2e > %.0e", path_name[path], ea, el, tol);
    CHECK(eq <= tol && ek <= tol && ev <= tol, "%s backward: dq %.2e dk %.2e dv %.2e > %.0e", path_name[path], eq, ek,
          ev, tol);
    free(ratt); free(rlse); free(rdq); free(rdk); free(rdv);
    fb_free(q); fb_free(dq); fb_free(da); fb_free(att); fb_free(lse);
    fb_free(k); fb_free(v); fb_free(dk); fb_free(dv);
}

int main(void) {
    const int quick = getenv("FABLE_TEST_QUICK") != NULL;
    const shape shapes[] = {
        {2, 100, 4, 2, 64}, /* GQA, T cuts a panel and a block */
        {1, 256, 2, 2, 48}, /* the stories15M head, full 256 window */
        {1, 33, 3, 3, 32},
        {1, 1, 2, 1, 64},   /* one token */
        {2, 40, 4, 2, 16},  /* a small head: the direct kernels */
        {1, 35, 4, 2, 8},   /* stories260K's head; T cuts the direct backward's 16-row blocks */
        {1, 100, 2, 1, 8},  /* rows longer than the 64-key score steps, a 4-row block at the end */
        {1, 37, 2, 1, 12},  /* a head that is not a multiple of 8: the direct kernels' plain loops */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        if (quick && s->T > 100) continue;
        for (int path = 0; path < 3; path++) {
            if (path == PATH_TILES && !cpu_attn_tiles_fit(s->HS)) continue;
            if (path == PATH_DIRECT && s->HS > 16) continue;
            check(s, path, 64, 2);
            if (path != PATH_DIRECT) check(s, path, 5, i % 2 ? 3 : 1);
        }
    }
    return t_done("test_attn");
}
