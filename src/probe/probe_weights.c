/* fable probe weights — can a layer's weights change without re-preparing the kernels?
 *
 * The reference asked whether its compiled ANE programs could take new weights without a
 * recompile. On the cpu engine the "prepared kernel" is a weight matrix packed into the
 * micro-kernel's panel layout (gemm_pack_b). For each weight shape of a layer at the
 * preset's shapes, as the forward product Y[M,N] = X[M,K]·Wᵀ (M = B·T tokens):
 *   1. pack W0, multiply: Y0 must equal X·W0ᵀ;
 *   2. change W in place (W1 = W0/2 + R, as an optimizer step writes the same buffer),
 *      gemm_repack_b into the same packed buffer (no allocation): Y1 must equal X·W1ᵀ and
 *      differ from Y0 (the output followed the new weights);
 *   3. the swapped product checked once more against the ref engine: W1 as the w1 of an
 *      FFN layer (D = K, F = N), whose tap h1 = RMSNorm(x)·W1ᵀ, on 8 rows;
 *   4. time: repack in place, pack afresh (allocate + pack + free), the product on the packed
 *      weights, and gemm_f32 from the plain weights (which packs, or reads in place, itself).
 * Pre-packing once per update pays when uses·(t_plain − t_packed) > t_repack: `breakeven`
 * is the number of uses per update that takes (the forward form is used once per
 * micro-step, so with --accum A it pays when breakeven <= A).
 * The references are double-precision sums of the sampled rows (all N columns of up to 32
 * rows spread over M): an oracle that shares no code with the GEMM. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fable/engine.h"
#include "fable/gemm.h"
#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_out.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* max |Y[i,:] − X[i,:]·Wᵀ| / max |X·Wᵀ| over the sampled rows i */
static double err_vs_naive(int M, int N, int K, const float *X, const float *W, const float *Y) {
    double emax = 0, rmax = 1e-30;
    int step = M > 32 ? M / 32 : 1;
    for (int i = 0; i < M; i += step)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)X[(size_t)i * K + k] * W[(size_t)j * K + k];
            double e = fabs(Y[(size_t)i * N + j] - s);
            if (e > emax) emax = e;
            if (fabs(s) > rmax) rmax = fabs(s);
        }
    return emax / rmax;
}

/* The swapped product against the ref engine's FFN layer on 8 rows (NaN if ref is absent). */
static double err_vs_ref(int N, int K, const float *X, const float *W, const gemm_packed *p) {
    eng *r = eng_create("ref", &(eng_opts){.threads = 1, .precision = -1});
    if (!r) return NAN;
    const int M = 8;
    eng_dims d = {.B = 1, .T = M, .N = M, .D = K, .F = N, .NH = 1, .NKV = 1, .HS = K, .KVD = K, .V = 1};
    float *rms = r->alloc(r, K * sizeof(float)), *w2 = r->alloc(r, (size_t)K * N * sizeof(float));
    float *x = r->alloc(r, (size_t)M * K * sizeof(float)), *xo = r->alloc(r, (size_t)M * K * sizeof(float));
    eng_ffn_taps t = {.x = x, .rstd = r->alloc(r, M * sizeof(float)), .xn = r->alloc(r, (size_t)M * K * sizeof(float)),
                      .h1 = r->alloc(r, (size_t)M * N * sizeof(float)), .h3 = r->alloc(r, (size_t)M * N * sizeof(float)),
                      .gate = r->alloc(r, (size_t)M * N * sizeof(float))};
    float *y = fb_alloc((size_t)M * N * sizeof(float));
    double err = NAN;
    if (rms && w2 && x && xo && t.rstd && t.xn && t.h1 && t.h3 && t.gate && y) {
        for (int k = 0; k < K; k++) rms[k] = 1.0f;
        memcpy(x, X, (size_t)M * K * sizeof(float));
        model_layer lw = {.rms_ffn = rms, .w1 = (float *)W, .w3 = (float *)W, .w2 = w2};
        r->ffn_fwd(r, &d, &lw, &t, xo);
        /* the packed weights applied to the ref engine's normed input must give its h1 */
        gemm_f32_prepacked(0, M, 1.0f, t.xn, K, p, 0.0f, y, N);
        double emax = 0, rmax = 1e-30;
        for (size_t i = 0; i < (size_t)M * N; i++) {
            double e = fabs((double)y[i] - t.h1[i]);
            if (e > emax) emax = e;
            if (fabs(t.h1[i]) > rmax) rmax = fabs(t.h1[i]);
        }
        err = emax / rmax;
    }
    fb_free(y);
    void *bufs[] = {rms, w2, x, xo, t.rstd, t.xn, t.h1, t.h3, t.gate};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) r->free(r, bufs[i]);
    r->destroy(r);
    return err;
}

/* median seconds of reps runs of stmt (after one warm-up), at most ~max_s in all */
#define MEDIAN(out, reps, max_s, stmt)                                            \
    do {                                                                          \
        double _t[32], _s = fb_now();                                             \
        int _n = 0;                                                               \
        stmt;                                                                     \
        while (_n < (reps) && _n < 32) {                                          \
            double _t0 = fb_now();                                                \
            stmt;                                                                 \
            _t[_n++] = fb_now() - _t0;                                            \
            if (fb_now() - _s > (max_s)) break;                                   \
        }                                                                         \
        qsort(_t, _n, sizeof(double), cmp_d);                                     \
        (out) = _t[_n / 2];                                                       \
    } while (0)

static int one_shape(probe_weights_row *row, const char *name, int M, int N, int K, int quick, fb_rng *rng) {
    memset(row, 0, sizeof *row);
    snprintf(row->name, sizeof row->name, "%s", name);
    row->M = M;
    row->N = N;
    row->K = K;
    float *X = fb_alloc((size_t)M * K * sizeof(float)), *W = fb_alloc((size_t)N * K * sizeof(float));
    float *Y0 = fb_alloc((size_t)M * N * sizeof(float)), *Y1 = fb_alloc((size_t)M * N * sizeof(float));
    if (!X || !W || !Y0 || !Y1) {
        fb_free(X), fb_free(W), fb_free(Y0), fb_free(Y1);
        return -1;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = 2 * fb_rng_f32(rng) - 1;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = 0.1f * (2 * fb_rng_f32(rng) - 1);
    gemm_packed *p = gemm_pack_b(1, K, N, W, K);
    if (!p) {
        fb_free(X), fb_free(W), fb_free(Y0), fb_free(Y1);
        return -1;
    }
    row->packed_bytes = gemm_packed_bytes(p);
    gemm_f32_prepacked(0, M, 1.0f, X, K, p, 0.0f, Y0, N);
    row->err_first = err_vs_naive(M, N, K, X, W, Y0);
    /* the weight update, in the same buffer, then the repack into the same packed buffer */
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = 0.5f * W[i] + 0.1f * (2 * fb_rng_f32(rng) - 1);
    gemm_repack_b(p, W, K);
    gemm_f32_prepacked(0, M, 1.0f, X, K, p, 0.0f, Y1, N);
    row->err_swapped = err_vs_naive(M, N, K, X, W, Y1);
    double dmax = 0, ymax = 1e-30;
    for (size_t i = 0; i < (size_t)M * N; i++) {
        if (fabs(Y1[i] - Y0[i]) > dmax) dmax = fabs(Y1[i] - Y0[i]);
        if (fabs(Y0[i]) > ymax) ymax = fabs(Y0[i]);
    }
    row->moved = dmax / ymax;
    row->err_ref = M >= 8 ? err_vs_ref(N, K, X, W, p) : NAN;

    const int reps = quick ? 3 : 9;
    const double max_s = quick ? 0.2 : 0.5;
    MEDIAN(row->t_repack, reps, max_s, gemm_repack_b(p, W, K));
    MEDIAN(row->t_pack, reps, max_s, gemm_packed_free(gemm_pack_b(1, K, N, W, K)));
    MEDIAN(row->t_mm_packed, reps, max_s, gemm_f32_prepacked(0, M, 1.0f, X, K, p, 0.0f, Y1, N));
    MEDIAN(row->t_mm_plain, reps, max_s, gemm_f32(0, 1, M, N, K, 1.0f, X, K, W, K, 0.0f, Y1, N));
    double gain = row->t_mm_plain - row->t_mm_packed;
    row->breakeven = gain > 0 ? row->t_repack / gain : INFINITY;
    gemm_packed_free(p);
    fb_free(X), fb_free(W), fb_free(Y0), fb_free(Y1);
    return 0;
}

int probe_weight_shapes(const model_config *c, probe_wshape sh[5]) {
    const int D = c->dim, F = c->hidden_dim, KVD = model_kv_dim(c);
    int n = 0;
    sh[n++] = (probe_wshape){"wq/wo [D,D]", D, D};
    if (KVD != D) sh[n++] = (probe_wshape){"wk/wv [KVD,D]", KVD, D};
    sh[n++] = (probe_wshape){"w1/w3 [F,D]", F, D};
    sh[n++] = (probe_wshape){"w2 [D,F]", D, F};
    sh[n++] = (probe_wshape){"wcls [V,D]", c->vocab_size, D};
    return n;
}

int probe_weights(const probe_opts *o, probe_weights_result *r) {
    memset(r, 0, sizeof *r);
    if (o->engine && strcmp(o->engine, "cpu"))
        return fb_err("probe weights: engine '%s': this is the cpu engine's probe (cuda: probe_cuda_weights)",
                      o->engine);
    if (o->threads > 0) gemm_set_threads(o->threads);
    snprintf(r->kernel, sizeof r->kernel, "%s", gemm_kernel_name());
    const model_config *c = &o->cfg;
    const int M = o->B * o->T;
    fb_rng rng;
    fb_rng_seed(&rng, 5);
    probe_wshape sh[5];
    const int n = probe_weight_shapes(c, sh);
    for (int i = 0; i < n; i++) {
        if (one_shape(&r->r[r->n], sh[i].name, M, sh[i].N, sh[i].K, o->quick, &rng)) {
            gemm_set_threads(0);
            return -1;
        }
        r->n++;
    }
    gemm_set_threads(0);
    return 0;
}

void probe_weights_print(probe_out *po, const probe_weights_result *r) {
    po_begin(po, "weights", "weights: change a layer's weights without re-preparing its kernels (cpu: packed GEMM B)");
    po_str(po, "kernel", "packed for the micro-kernel", r->kernel);
    static const char *keys[] = {"matrix", "M", "N", "K", "err_first", "err_swapped", "moved", "err_ref",
                                 "repack_ms", "pack_ms", "mm_packed_ms", "mm_plain_ms", "breakeven_uses", "packed_mb"};
    static const char *heads[] = {"matrix", "M", "N", "K", "err W0", "err W1", "moved", "err ref",
                                  "repack ms", "pack ms", "Y packed ms", "Y plain ms", "pays at uses", "packed MB"};
    po_table(po, "shapes", 14, keys, heads);
    for (int i = 0; i < r->n; i++) {
        const probe_weights_row *w = &r->r[i];
        po_cell_str(po, w->name);
        po_cell_num(po, w->M, "%.0f");
        po_cell_num(po, w->N, "%.0f");
        po_cell_num(po, w->K, "%.0f");
        po_cell_num(po, w->err_first, "%.1e");
        po_cell_num(po, w->err_swapped, "%.1e");
        po_cell_num(po, w->moved, "%.2f");
        po_cell_num(po, w->err_ref, "%.1e");
        po_cell_num(po, w->t_repack * 1e3, "%.3f");
        po_cell_num(po, w->t_pack * 1e3, "%.3f");
        po_cell_num(po, w->t_mm_packed * 1e3, "%.3f");
        po_cell_num(po, w->t_mm_plain * 1e3, "%.3f");
        po_cell_num(po, w->breakeven, "%.2f");
        po_cell_num(po, w->packed_bytes / 1e6, "%.2f");
    }
    po_table_end(po);
    po_note(po, "err W0 / err W1: max relative error against a double-precision X·Wᵀ after packing W0 and after "
                "repacking W1 in place; moved: how far the output moved (it followed the new weights)");
    po_note(po, "err ref: the repacked weights against the ref engine's FFN layer (h1 tap) on 8 rows");
    int pays = 0, never = 0;
    for (int i = 0; i < r->n; i++) {
        if (r->r[i].breakeven <= 1) pays++;
        if (!isfinite(r->r[i].breakeven)) never++;
    }
    po_note(po, "pays at uses: products per weight update for which repack + packed products beat gemm_f32 on the "
                "plain weights; the step uses each weight once per micro-step in this form (and once more, "
                "transposed, for dx): %d of %d shapes pay at accum 1, %d never pay (packing inside gemm_f32 is "
                "no dearer than the repack)",
            pays, r->n, never);
}
