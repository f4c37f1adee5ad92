/* Every engine against `ref`, op by op (in the spirit of ggml's test-backend-ops): every function
 * of the engine interface (include/fable/engine.h) on random inputs at several shapes, the engine
 * under test and the scalar ref engine given identical inputs, each output compared per tensor.
 *
 * Engines under test: FABLE_TEST_ENGINES="cpu,cuda" when set, else every engine of eng_list() but
 * ref that can run here; each at fp32 and at bf16 (an engine that refuses a precision is skipped
 * at it). Exit 77 when none can run. FABLE_TEST_QUICK=1 (the sanitizer pass): the two smallest
 * shapes. FABLE_TEST_VERBOSE=1: the worst error of every op and tensor.
 *
 * Engine memory is touched only through alloc / alloc_params / upload / download / *_act. Outputs
 * are poisoned with NaN before each call, so an element left unwritten fails; with acc 0 so are
 * the gradients (overwrite: never read back); with acc 1 they start from the same random values
 * on both engines. Backward ops read the taps of the engine's OWN forward on the identical inputs
 * (as the training step does), with the same dy on both. The optional infer_* (KV-cache decoder),
 * where an engine has it, is checked against model/infer.c instead (ref has none).
 *
 * Error: relative L2, ‖out − ref‖ / ‖ref‖, on what the op adds: x_out − x_in and dx − dy for the
 * residual streams (the residual would hide the sublayer's error), g − g0 when gradients
 * accumulate, p − p0 for AdamW. NaN or Inf anywhere (either engine) fails.
 *
 * Tolerances (TOL below):
 *  - fp32: 1e-5 for everything. ref accumulates in double; an fp32 engine's rounding over sums of
 *    K ≤ ~400 terms gives ~1e-6 (cpu and cuda: at most 2.2e-6, qkv_bwd's dx − dy; most ≤ 1e-6).
 *  - In any precision, the ops that compute in fp32 from fp32 inputs keep 1e-5 (F32 class):
 *    embedding, rstd, the final RMSNorm backward, sumsq, AdamW, zero.
 *  - bf16: 8 significant bits, unit roundoff u = 2^-9 ≈ 2e-3. One rounding of O(1) values is a
 *    relative L2 error of ≈ 0.8u ≈ 1.6e-3 (the error is uniform in ±ulp/2); an output whose path
 *    rounds k times (bf16 operands and stored act, fp32 accumulation) is off by ≈ 1.6e-3·√k, and
 *    the softmax multiplies score errors by the score size (~2 here). A bf16 emulation of ref
 *    (rounding xn, q, k, v, att, h1, h3, gate, the weights, dy, P before P·V, dS, the logits, and
 *    every act scratch; a scratch build, not in the tree) measured on these shapes: xn 1.7e-3 (one
 *    rounding), q 2.9e-3 (three), att 6.9e-3, attention x_out − x_in 7.1e-3, dq 9.4e-3, dx − dy
 *    9.7e-3, weight gradients ≤ 9.6e-3 (summing over N rows averages their operands' errors: no
 *    larger than the operands'), losses 1.2e-3, dxn 3.6e-3. The cuda engine at bf16 (H200)
 *    measured a little more, as a real kernel rounds a little more: att 8.1e-3, x_out − x_in
 *    8.2e-3, dq/dk 1.1e-2, dx − dy 1.0e-2, dWk 1.1e-2, losses 8e-4. The tolerances leave ~2×:
 *    FWD 1.5e-2 (taps, x_out − x_in, lse, infer_step's logits), BWD 2e-2 (da, dq, dk, dv, dh1,
 *    dh3, dx − dy, the classifier's dxn), DW 2e-2 (weight and norm gradients), LOSS 5e-3 (losses
 *    and loss_sum: loss = lse − logit, with |logit| ≲ 8 held in bf16 off by ≲ 1e-2, against a
 *    loss of ln V ≈ 4..8).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/engine.h"
#include "fable/infer.h"
#include "fable/model.h"
#include "fable/util.h"
#include "testlib.h"

enum { K_F32, K_FWD, K_BWD, K_DW, K_LOSS, K_COUNT };
static const double TOL[2][K_COUNT] = {
    /* F32  FWD     BWD   DW    LOSS */
    {1e-5, 1e-5,   1e-5, 1e-5, 1e-5}, /* ENG_FP32 */
    {1e-5, 1.5e-2, 2e-2, 2e-2, 5e-3}, /* ENG_BF16 */
};

typedef struct { const char *name; int B, T, D, NH, NKV, F, V, tied; } shape;
static const shape SHAPES[] = {
    /* name       B    T    D  NH NKV    F     V  tied     HS  what it reaches */
    {"tiny-mha",  1,   7,  16,  2,  2,  24,   37, 1}, /*  8  below every tile; tied classifier */
    {"gqa-odd",   2,  67,  48,  6,  2, 100, 1003, 0}, /*  8  GQA 3:1, odd T, F, V */
    {"hs40-gqa",  2,  45, 160,  4,  2, 136,  301, 0}, /* 40  GQA 2:1, no register tile: GEMM-tiled */
    {"hs32-gqa",  1,  70, 128,  4,  2, 160,  515, 0}, /* 32  GQA 2:1 in the register tiles */
    {"hs48",      3,  33,  96,  2,  2, 256,  777, 0}, /* 48  B 3 */
    {"260K",      2, 130,  64,  8,  4, 172,  512, 0}, /*  8  stories260K's layer, T > 128 */
    {"hs64",      1, 200, 128,  2,  1, 344, 2049, 0}, /* 64  MQA, V one past a power of two */
};
#define NSHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

/* One engine's buffers (all engine memory). S[0]: the engine under test, S[1]: ref. */
typedef struct {
    eng *e;
    void *mem[64];
    int nmem;
    float *P, *G; /* parameters (alloc_params) and gradients, one layer, model layout */
    model_params p, g;
    model_layer w, gw;
    float *rope, *xa, *xa_out, *xf, *xf_out, *dy, *dyf, *dx, *tmp, *nout, *nrstd, *ndx, *dout, *cxn;
    float *losses, *cdxn, *m, *v;
    double *csum, *dsum;
    int32_t *tok, *tgt;
    eng_attn_taps at;
    eng_ffn_taps ft;
    eng_attn_grads ag;
    eng_ffn_grads fg;
} side;
static side S[2];

/* The case being run, its host inputs and host scratch. */
static struct {
    const char *eng;
    int prec;
    const shape *sh;
    model_config c;
    eng_dims d;
    size_t np, hmax;
    float *P, *xa, *xf, *dy, *dyf, *dout, *cxn, *dx, *rope, *nan, *a, *r, *gb[4], *t1, *t2, *t3;
    int32_t *tok, *tgt;
} H;

/* statistics for the summary line (worst error relative to its tolerance) and verbose table */
static struct { int n; double ratio, err, tol; char where[160]; } st;
typedef struct { char key[48]; double err; int kind; } opstat;
static opstat ops[96];
static int nops, verbose;

#define BOTH(...)                          \
    for (int i_ = 0; i_ < 2; i_++) {       \
        side *s = &S[i_];                  \
        eng *e = s->e;                     \
        (void)s;                           \
        __VA_ARGS__;                       \
        e->sync(e);                        \
    }
#define UP(f, h, n) BOTH(e->upload(e, s->f, h, (size_t)(n) * sizeof *(h)))
#define UPA(f, h, n) BOTH(e->upload_act(e, s->f, h, n))
#define POISON(f, n) BOTH(e->upload(e, s->f, H.nan, (size_t)(n) * sizeof(float)))
#define POISONA(f, n) BOTH(e->upload_act(e, s->f, H.nan, n))
#define CMP(op, name, kind, act, f, n, base) cmp(op, name, kind, act, S[0].f, S[1].f, n, base)

static void randn(fb_rng *r, float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * fb_rng_normal(r));
}

static float bf16_round(float x) { /* round to nearest even, as the host conversion does */
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static void record(const char *op, const char *name, int kind, double err, const char *detail) {
    const double tol = TOL[H.prec][kind];
    char key[48], where[160];
    snprintf(key, sizeof key, "%s %s", op, name);
    snprintf(where, sizeof where, "%s %s", H.sh->name, key);
    CHECK(err <= tol, "%s/%s %s: rel err %.3g > tol %.2g%s", H.eng, eng_precision_name(H.prec), where, err, tol,
          detail);
    st.n++;
    if (err / tol > st.ratio || st.n == 1) {
        st.ratio = err / tol;
        st.err = err;
        st.tol = tol;
        snprintf(st.where, sizeof st.where, "%s", where);
    }
    int i = 0;
    while (i < nops && strcmp(ops[i].key, key)) i++;
    if (i == nops && nops < 96) {
        ops[nops++] = (opstat){.err = 0, .kind = kind};
        snprintf(ops[i].key, sizeof ops[i].key, "%s", key);
    }
    if (i < nops && !(ops[i].err >= err)) ops[i].err = err;
}

/* Downloads n values of pe (engine) and pr (ref), compares them (minus base, a host array or
 * NULL); returns the rms of the ref's values minus base (the size of a gradient, for acc 1). */
static double cmp(const char *op, const char *name, int kind, int act, const float *pe, const float *pr, size_t n,
                  const float *base) {
    float *hv[2] = {H.a, H.r};
    const float *pv[2] = {pe, pr};
    BOTH(if (act) e->download_act(e, hv[i_], pv[i_], n); else e->download(e, hv[i_], pv[i_], n * sizeof(float)));
    double num = 0, den = 0;
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        const double b = base ? base[i] : 0, a = H.a[i] - b, r = H.r[i] - b;
        if (bad == n && !(isfinite(H.a[i]) && isfinite(H.r[i]))) bad = i;
        num += (a - r) * (a - r);
        den += r * r;
    }
    char detail[128] = "";
    double err = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    if (bad < n) {
        err = INFINITY;
        snprintf(detail, sizeof detail, " (non-finite at [%zu]: engine %g, ref %g)", bad, H.a[bad], H.r[bad]);
    }
    record(op, name, kind, err, detail);
    return sqrt(den / (n ? n : 1));
}

static void cmp_d(const char *op, const char *name, int kind, const double *pe, const double *pr) {
    double a, r;
    S[0].e->download(S[0].e, &a, pe, sizeof a);
    S[1].e->download(S[1].e, &r, pr, sizeof r);
    double err = isfinite(a) && isfinite(r) ? fabs(a - r) / fmax(fabs(r), 1e-300) : INFINITY;
    char detail[96];
    snprintf(detail, sizeof detail, " (engine %.9g, ref %.9g)", a, r);
    record(op, name, kind, err, detail);
}

/* A gradient tensor: offset (floats) from G, size, name. */
typedef struct { size_t off, n; const char *name; } gten;
static gten gt(const float *view, size_t n, const char *name) { return (gten){(size_t)(view - S[0].G), n, name}; }

/* Gradients before an accumulating call: acc 0 → NaN (overwrite, never read); acc 1 → the same
 * random values on both engines, of the size rms of the previous result; returns the base. */
static const float *ginit(int acc, gten t, double rms, float *hb, uint64_t seed) {
    if (!acc) {
        BOTH(e->upload(e, s->G + t.off, H.nan, t.n * sizeof(float)));
        return NULL;
    }
    fb_rng r;
    fb_rng_seed(&r, seed);
    randn(&r, hb, t.n, rms > 0 ? rms : 1);
    BOTH(e->upload(e, s->G + t.off, hb, t.n * sizeof(float)));
    return hb;
}

static void acc_grads(const char *op, int kind, int nt, const gten *t, int acc, double *rms, const float **base,
                      int init) {
    for (int j = 0; j < nt; j++)
        if (init) base[j] = ginit(acc, t[j], rms[j], H.gb[j], 900 + 10 * acc + j);
        else rms[j] = cmp(op, t[j].name, kind, 0, S[0].G + t[j].off, S[1].G + t[j].off, t[j].n, base[j]);
}

/* ---- the ops ------------------------------------------------------------------------- */
static void op_embed(void) {
    const eng_dims *d = &H.d;
    const size_t ND = (size_t)d->N * d->D, VD = (size_t)d->V * d->D;
    POISON(tmp, ND);
    BOTH(e->embed_fwd(e, d, s->tmp, s->p.tok_emb, s->tok));
    CMP("embed_fwd", "x", K_F32, 0, tmp, ND, NULL);
    /* dE starts random (always accumulates; the rows of absent tokens must stay as they were) */
    fb_rng r;
    fb_rng_seed(&r, 77);
    randn(&r, H.t1, VD, 1.0);
    UP(g.tok_emb, H.t1, VD);
    UP(dx, H.dx, ND);
    BOTH(e->embed_bwd(e, d, s->g.tok_emb, s->dx, s->tok));
    CMP("embed_bwd", "dE", K_F32, 0, g.tok_emb, VD, H.t1);
}

static void attn_fwd(const char *op) {
    const eng_dims *d = &H.d;
    const size_t ND = (size_t)d->N * d->D, NK = (size_t)d->N * d->KVD;
    POISON(at.rstd, d->N);
    POISONA(at.xn, ND);
    POISONA(at.q, ND);
    POISONA(at.k, NK);
    POISONA(at.v, NK);
    POISONA(at.att, ND);
    POISON(at.lse, (size_t)d->N * d->NH);
    POISON(xa_out, ND);
    BOTH(e->attn_fwd(e, d, &s->w, s->rope, &s->at, s->xa_out));
    CMP(op, "x_out-x_in", K_FWD, 0, xa_out, ND, H.xa);
    CMP(op, "rstd", K_F32, 0, at.rstd, d->N, NULL);
    CMP(op, "xn", K_FWD, 1, at.xn, ND, NULL);
    CMP(op, "q", K_FWD, 1, at.q, ND, NULL);
    CMP(op, "k", K_FWD, 1, at.k, NK, NULL);
    CMP(op, "v", K_FWD, 1, at.v, NK, NULL);
    CMP(op, "att", K_FWD, 1, at.att, ND, NULL);
    CMP(op, "lse", K_FWD, 0, at.lse, (size_t)d->N * d->NH, NULL);
}

static void op_ffn_fwd(void) {
    const eng_dims *d = &H.d;
    const size_t ND = (size_t)d->N * d->D, NF = (size_t)d->N * d->F;
    POISON(ft.rstd, d->N);
    POISONA(ft.xn, ND);
    POISONA(ft.h1, NF);
    POISONA(ft.h3, NF);
    POISONA(ft.gate, NF);
    POISON(xf_out, ND);
    BOTH(e->ffn_fwd(e, d, &s->w, &s->ft, s->xf_out));
    CMP("ffn_fwd", "x_out-x_in", K_FWD, 0, xf_out, ND, H.xf);
    CMP("ffn_fwd", "rstd", K_F32, 0, ft.rstd, d->N, NULL);
    CMP("ffn_fwd", "xn", K_FWD, 1, ft.xn, ND, NULL);
    CMP("ffn_fwd", "h1", K_FWD, 1, ft.h1, NF, NULL);
    CMP("ffn_fwd", "h3", K_FWD, 1, ft.h3, NF, NULL);
    CMP("ffn_fwd", "gate", K_FWD, 1, ft.gate, NF, NULL);
}

static void op_attn_bwd(void) {
    const eng_dims *d = &H.d;
    const size_t ND = (size_t)d->N * d->D, NK = (size_t)d->N * d->KVD;
    POISONA(ag.da, ND);
    POISONA(ag.dq, ND);
    POISONA(ag.dk, NK);
    POISONA(ag.dv, NK);
    POISONA(ag.dxn, ND); /* engine-private: must be written before it is read */
    BOTH(e->attn_bwd(e, d, &s->w, s->rope, &s->at, s->dy, &s->ag));
    CMP("attn_bwd", "da", K_BWD, 1, ag.da, ND, NULL);
    CMP("attn_bwd", "dq", K_BWD, 1, ag.dq, ND, NULL);
    CMP("attn_bwd", "dk", K_BWD, 1, ag.dk, NK, NULL);
    CMP("attn_bwd", "dv", K_BWD, 1, ag.dv, NK, NULL);

    /* qkv_bwd (dx, d rms_att), then the weight gradients, each at acc 0 then acc 1 */
    const gten tr[1] = {gt(S[0].gw.rms_att, d->D, "d rms_att")};
    const gten tw[4] = {gt(S[0].gw.wq, (size_t)d->D * d->D, "dWq"), gt(S[0].gw.wk, (size_t)d->KVD * d->D, "dWk"),
                        gt(S[0].gw.wv, (size_t)d->KVD * d->D, "dWv"), gt(S[0].gw.wo, (size_t)d->D * d->D, "dWo")};
    double rr[1] = {0}, rw[4] = {0};
    const float *br[1], *bw[4];
    for (int acc = 0; acc < 2; acc++) {
        POISON(dx, ND);
        acc_grads("qkv_bwd", K_DW, 1, tr, acc, rr, br, 1);
        BOTH(e->qkv_bwd(e, d, &s->w, &s->at, s->dy, &s->ag, s->dx, &s->gw, acc));
        CMP("qkv_bwd", "dx-dy", K_BWD, 0, dx, ND, H.dy);
        acc_grads("qkv_bwd", K_DW, 1, tr, acc, rr, br, 0);
    }
    for (int acc = 0; acc < 2; acc++) {
        acc_grads("attn_dw", K_DW, 4, tw, acc, rw, bw, 1);
        BOTH(e->attn_dw(e, d, &s->at, s->dy, &s->ag, &s->gw, acc));
        acc_grads("attn_dw", K_DW, 4, tw, acc, rw, bw, 0);
    }
}

static void op_ffn_bwd(void) {
    const eng_dims *d = &H.d;
    const size_t ND = (size_t)d->N * d->D, NF = (size_t)d->N * d->F, FD = (size_t)d->F * d->D;
    const gten tr[1] = {gt(S[0].gw.rms_ffn, d->D, "d rms_ffn")};
    const gten tw[3] = {gt(S[0].gw.w1, FD, "dW1"), gt(S[0].gw.w2, FD, "dW2"), gt(S[0].gw.w3, FD, "dW3")};
    double rr[1] = {0}, rw[3] = {0};
    const float *br[1], *bw[3];
    for (int acc = 0; acc < 2; acc++) {
        POISON(dx, ND);
        POISONA(fg.dh1, NF);
        POISONA(fg.dh3, NF);
        POISONA(fg.dgate, NF);
        POISONA(fg.dxn, ND);
        acc_grads("ffn_bwd", K_DW, 1, tr, acc, rr, br, 1);
        BOTH(e->ffn_bwd(e, d, &s->w, &s->ft, s->dyf, &s->fg, s->dx, &s->gw, acc));
        CMP("ffn_bwd", "dx-dy", K_BWD, 0, dx, ND, H.dyf);
        CMP("ffn_bwd", "dh1", K_BWD, 1, fg.dh1, NF, NULL);
        CMP("ffn_bwd", "dh3", K_BWD, 1, fg.dh3, NF, NULL);
        acc_grads("ffn_bwd", K_DW, 1, tr, acc, rr, br, 0);
    }
    for (int acc = 0; acc < 2; acc++) {
        acc_grads("ffn_dw", K_DW, 3, tw, acc, rw, bw, 1);
        BOTH(e->ffn_dw(e, d, &s->ft, s->dyf, &s->fg, &s->gw, acc));
        acc_grads("ffn_dw", K_DW, 3, tw, acc, rw, bw, 0);
    }
}

static void op_rmsnorm(void) {
    const eng_dims *d = &H.d;
    const int N = d->N, D = d->D;
    const size_t ND = (size_t)N * D;
    POISONA(nout, ND);
    POISON(nrstd, N);
    BOTH(e->rmsnorm_fwd(e, N, D, s->xa, s->p.rms_final, s->nout, s->nrstd));
    CMP("rmsnorm_fwd", "out", K_FWD, 1, nout, ND, NULL);
    CMP("rmsnorm_fwd", "rstd", K_F32, 0, nrstd, N, NULL);
    const gten t[1] = {gt(S[0].g.rms_final, D, "dw")};
    double rms[1] = {0};
    const float *b[1];
    for (int acc = 0; acc < 2; acc++) {
        POISON(ndx, ND);
        acc_grads("rmsnorm_bwd", K_F32, 1, t, acc, rms, b, 1);
        BOTH(e->rmsnorm_bwd(e, N, D, s->xa, s->p.rms_final, s->nrstd, s->dout, s->ndx, s->g.rms_final, acc));
        CMP("rmsnorm_bwd", "dx", K_F32, 0, ndx, ND, NULL);
        acc_grads("rmsnorm_bwd", K_F32, 1, t, acc, rms, b, 0);
    }
}

static void op_cls(void) {
    const eng_dims *d = &H.d;
    const size_t ND = (size_t)d->N * d->D;
    const double nan = NAN;
    int nvalid = 0;
    for (int n = 0; n < d->N; n++) nvalid += H.tgt[n] >= 0;
    /* forward only */
    POISON(losses, d->N);
    BOTH(e->upload(e, s->csum, &nan, sizeof nan));
    BOTH(e->cls_loss(e, d, s->cxn, s->p.wcls, s->tgt, 1.0f, s->losses, s->csum, NULL, NULL, 0));
    CMP("cls_loss(fwd)", "losses", K_LOSS, 0, losses, d->N, NULL);
    cmp_d("cls_loss(fwd)", "loss_sum", K_LOSS, S[0].csum, S[1].csum);
    /* with backward: (acc 0, scale 1), (acc 0, scale 1/valid), (acc 1, scale 1/valid) */
    const gten t[1] = {gt(S[0].g.wcls, (size_t)d->V * d->D, "dWcls")};
    double rms[1] = {0};
    const float *b[1];
    static const char *opn[3] = {"cls_loss(acc0,s=1)", "cls_loss(acc0,s=1/n)", "cls_loss(acc1,s=1/n)"};
    for (int run = 0; run < 3; run++) {
        const int acc = run == 2;
        const float scale = run ? 1.0f / (float)nvalid : 1.0f;
        POISON(losses, d->N);
        POISON(cdxn, ND);
        BOTH(e->upload(e, s->csum, &nan, sizeof nan));
        acc_grads(opn[run], K_DW, 1, t, acc, rms, b, 1);
        BOTH(e->cls_loss(e, d, s->cxn, s->p.wcls, s->tgt, scale, s->losses, s->csum, s->cdxn, s->g.wcls, acc));
        CMP(opn[run], "losses", K_LOSS, 0, losses, d->N, NULL);
        cmp_d(opn[run], "loss_sum", K_LOSS, S[0].csum, S[1].csum);
        CMP(opn[run], "dxn", K_BWD, 0, cdxn, ND, NULL);
        acc_grads(opn[run], K_DW, 1, t, acc, rms, b, 0);
    }
}

/* infer_open/step/close, where an engine has them (optional): the logits of batch row 0's
 * tokens fed in order, against model/infer.c (llama2.c run.c's forward on the host, fp32). */
static void op_infer(void) {
    eng *e = S[0].e;
    if (!e->infer_open) return;
    const int T = H.d.T, V = H.d.V;
    model m = {.cfg = H.c, .data = H.P};
    model_params_view(&m.cfg, m.data, &m.w);
    infer_state is;
    void *dec = NULL;
    if (infer_init(&is, &m, T) || !(dec = e->infer_open(e, &H.c, S[0].P, T))) {
        CHECK(0, "%s: infer_open / infer_init: %s", H.eng, fb_errmsg());
        return;
    }
    double num = 0, den = 0;
    char detail[128] = "";
    for (int pos = 0; pos < T; pos++) {
        for (int v = 0; v < V; v++) H.a[v] = NAN;
        e->infer_step(e, dec, H.tok[pos], pos, H.a);
        const float *r = infer_forward(&is, H.tok[pos], pos);
        for (int v = 0; v < V; v++) {
            if (!*detail && !isfinite(H.a[v]))
                snprintf(detail, sizeof detail, " (non-finite at pos %d [%d]: %g)", pos, v, H.a[v]);
            num += ((double)H.a[v] - r[v]) * ((double)H.a[v] - r[v]), den += (double)r[v] * r[v];
        }
    }
    e->infer_close(e, dec);
    infer_free(&is);
    record("infer_step", "logits", K_FWD, *detail ? INFINITY : sqrt(num / den), detail);
}

/* sumsq over the gradient region (and from an unaligned start), AdamW over the parameters
 * (4 settings; the last on the layer's attention matrices only, as a per-tensor call), zero */
static void op_opt(void) {
    const size_t n = H.np;
    fb_rng r;
    fb_rng_seed(&r, 4242);
    float *g = H.t1, *m = H.t2, *v = H.t3;
    randn(&r, g, n, 1e-2);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    const double nan = NAN;
    UP(G, g, n);
    for (int sub = 0; sub < 2; sub++) {
        BOTH(e->upload(e, s->dsum, &nan, sizeof nan));
        BOTH(e->sumsq(e, s->G + sub, n - 2 * sub, s->dsum));
        cmp_d("sumsq", sub ? "sum [1, n-1)" : "sum", K_F32, S[0].dsum, S[1].dsum);
    }

    const float gs = 0.5f, norm = (float)(sqrt(ss) * gs);
    const struct { int step; float wd, clip; const char *name; } cases[4] = {
        {1, 0.1f, 0.5f * norm, "adamw(t=1,wd,clipped)"},
        {7, 0.0f, 2.0f * norm, "adamw(t=7,clip idle)"},
        {7, 0.1f, 0.25f * norm, "adamw(t=7,wd,clipped)"},
        {1, 0.0f, 0.0f, "adamw(t=1,clip off,wq..wo)"},
    };
    const size_t off = (size_t)(S[0].w.wq - S[0].P), nsub = (size_t)(S[0].w.rms_ffn - S[0].w.wq);
    for (int c = 0; c < 4; c++) {
        randn(&r, m, n, 5e-3);
        for (size_t i = 0; i < n; i++) v[i] = fabsf((float)(1e-4 * fb_rng_normal(&r) * fb_rng_normal(&r)));
        UP(P, H.P, n);
        UP(G, g, n);
        UP(m, m, n);
        UP(v, v, n);
        BOTH(e->upload(e, s->dsum, &ss, sizeof ss));
        const eng_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = cases[c].wd,
                                  .grad_scale = gs, .grad_clip = cases[c].clip, .step = cases[c].step};
        const size_t o = c == 3 ? off : 0;
        BOTH(e->adamw(e, s->P + o, s->G + o, s->m + o, s->v + o, c == 3 ? nsub : n, &a, s->dsum));
        CMP(cases[c].name, "p-p0", K_F32, 0, P, n, H.P);
        CMP(cases[c].name, "m", K_F32, 0, m, n, NULL);
        CMP(cases[c].name, "v", K_F32, 0, v, n, NULL);
    }
    /* the updated parameters reach the kernels (an engine's lower-precision mirror is refreshed) */
    attn_fwd("attn_fwd(after adamw)");

    const size_t nz = (size_t)H.d.N * H.d.D;
    UP(tmp, H.dx, nz);
    BOTH(e->zero(e, s->tmp, nz - 3));
    CMP("zero", "p", K_F32, 0, tmp, nz, NULL);
}

/* ---- setup ----------------------------------------------------------------------------- */
static void *ealloc(side *s, size_t bytes, int params) {
    void *p = params ? (void *)s->e->alloc_params(s->e, bytes / sizeof(float)) : s->e->alloc(s->e, bytes);
    if (!p || s->nmem == (int)(sizeof s->mem / sizeof s->mem[0])) {
        fprintf(stderr, "%s: allocation of %zu bytes failed: %s\n", s->e->name, bytes, p ? "too many" : fb_errmsg());
        exit(1);
    }
    s->mem[s->nmem++] = p;
    return p;
}
#define FA(s, n) ((float *)ealloc(s, (size_t)(n) * sizeof(float), 0))

static void side_alloc(side *s) {
    const eng_dims *d = &H.d;
    const size_t N = d->N, ND = N * d->D, NK = N * d->KVD, NF = N * d->F;
    s->nmem = 0;
    s->P = ealloc(s, H.np * sizeof(float), 1);
    s->G = FA(s, H.np);
    model_params_view(&H.c, s->P, &s->p);
    model_params_view(&H.c, s->G, &s->g);
    model_layer_view(&H.c, &s->p, 0, &s->w);
    model_layer_view(&H.c, &s->g, 0, &s->gw);
    s->rope = FA(s, (size_t)H.c.seq_len * d->HS);
    s->tok = ealloc(s, N * sizeof(int32_t), 0);
    s->tgt = ealloc(s, N * sizeof(int32_t), 0);
    float **nd[] = {&s->xa, &s->xa_out, &s->xf, &s->xf_out, &s->dy, &s->dyf, &s->dx, &s->tmp, &s->nout,
                    &s->ndx, &s->dout, &s->cxn, &s->cdxn, &s->at.xn, &s->at.q, &s->at.att, &s->ft.xn,
                    &s->ag.da, &s->ag.dq, &s->ag.dxn, &s->fg.dxn};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++) *nd[i] = FA(s, ND);
    float **nf[] = {&s->ft.h1, &s->ft.h3, &s->ft.gate, &s->fg.dh1, &s->fg.dh3, &s->fg.dgate};
    for (size_t i = 0; i < sizeof nf / sizeof nf[0]; i++) *nf[i] = FA(s, NF);
    s->at.k = FA(s, NK), s->at.v = FA(s, NK), s->ag.dk = FA(s, NK), s->ag.dv = FA(s, NK);
    s->at.rstd = FA(s, N), s->ft.rstd = FA(s, N), s->nrstd = FA(s, N), s->losses = FA(s, N);
    s->at.lse = FA(s, N * d->NH);
    s->at.x = s->xa, s->ft.x = s->xf;
    s->m = FA(s, H.np), s->v = FA(s, H.np);
    s->csum = ealloc(s, sizeof(double), 0);
    s->dsum = ealloc(s, sizeof(double), 0);
}

/* Host inputs: weights such that activations are O(1) (q·k/√HS of rms ~2: a peaked softmax),
 * norms' weights 1 ± 0.1, residual rows of rms 0.01..3, tokens with many repeats, some
 * targets -1. */
static void host_inputs(int si) {
    const eng_dims *d = &H.d;
    const size_t N = d->N, ND = N * d->D;
    fb_rng r;
    fb_rng_seed(&r, 1000 + 16 * (uint64_t)si);
    model_tensor t[MODEL_MAX_TENSORS];
    const int nt = model_tensors(&H.c, t);
    for (int i = 0; i < nt; i++) {
        float *x = H.P + t[i].offset;
        const char *nm = t[i].name;
        if (!t[i].is_matrix) {
            for (size_t j = 0; j < t[i].numel; j++) x[j] = 0.9f + 0.2f * fb_rng_f32(&r);
            continue;
        }
        double sd = 1.0 / sqrt((double)t[i].cols);
        if (!strcmp(nm, "tok_emb")) sd = H.c.tied ? 0.5 : 1.0;
        else if (!strcmp(nm, "wcls")) sd *= 2.0;
        else if (!strcmp(nm, "wq") || !strcmp(nm, "wk")) sd *= 1.5;
        else if (!strcmp(nm, "wo") || !strcmp(nm, "w2")) sd *= 0.5;
        randn(&r, x, t[i].numel, sd);
    }
    float *nd[] = {H.xa, H.xf, H.dy, H.dyf, H.dout, H.cxn, H.dx};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++) randn(&r, nd[i], ND, 1.0);
    for (size_t n = 0; n < N; n++) { /* residual rows of rms 0.01..3: RMSNorm's eps matters in the small ones */
        const float sa = (float)exp(log(0.01) + log(300.0) * fb_rng_f32(&r));
        const float sf = (float)exp(log(0.01) + log(300.0) * fb_rng_f32(&r));
        for (int j = 0; j < d->D; j++) H.xa[n * d->D + j] *= sa, H.xf[n * d->D + j] *= sf;
    }
    if (S[0].e->act_bytes == 2) /* the classifier's input is act: give ref the same bf16 values */
        for (size_t i = 0; i < ND; i++) H.cxn[i] = bf16_round(H.cxn[i]);
    for (size_t n = 0; n < N; n++) {
        const uint32_t u = fb_rng_u32(&r); /* two tokens in three among the first 5: many repeats */
        H.tok[n] = (int32_t)(u % 3 ? fb_rng_u32(&r) % 5u : fb_rng_u32(&r) % (uint32_t)d->V);
        H.tgt[n] = fb_rng_f32(&r) < 0.15f ? -1 : (int32_t)(fb_rng_u32(&r) % d->V);
    }
    H.tok[N - 1] = d->V - 1, H.tgt[0] = d->V - 1, H.tgt[N - 1] = -1;
    model_rope_table(H.rope, H.c.seq_len, d->HS);
}

static void run_shape(int si) {
    const shape *sh = &SHAPES[si];
    H.sh = sh;
    H.c = (model_config){.dim = sh->D, .hidden_dim = sh->F, .n_layers = 1, .n_heads = sh->NH,
                         .n_kv_heads = sh->NKV, .vocab_size = sh->V, .seq_len = sh->T + 5, .tied = sh->tied};
    if (model_config_validate(&H.c)) {
        CHECK(0, "shape %s: %s", sh->name, fb_errmsg());
        return;
    }
    eng_dims_make(&H.d, &H.c, sh->B, sh->T);
    const eng_dims *d = &H.d;
    const size_t N = d->N, ND = N * d->D;
    H.np = model_num_params(&H.c);
    H.hmax = H.np > N * d->F ? H.np : N * d->F;
    float **hb[] = {&H.P, &H.xa, &H.xf, &H.dy, &H.dyf, &H.dout, &H.cxn, &H.dx, &H.rope, &H.nan, &H.a, &H.r,
                    &H.gb[0], &H.gb[1], &H.gb[2], &H.gb[3], &H.t1, &H.t2, &H.t3};
    for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++) *hb[i] = malloc(H.hmax * sizeof(float));
    H.tok = malloc(N * sizeof(int32_t)), H.tgt = malloc(N * sizeof(int32_t));
    for (size_t i = 0; i < H.hmax; i++) H.nan[i] = NAN;
    for (int i = 0; i < 2; i++) side_alloc(&S[i]);
    host_inputs(si);

    UP(P, H.P, H.np);
    UP(rope, H.rope, (size_t)H.c.seq_len * d->HS);
    UP(tok, H.tok, N);
    UP(tgt, H.tgt, N);
    UP(xa, H.xa, ND);
    UP(xf, H.xf, ND);
    UP(dy, H.dy, ND);
    UP(dyf, H.dyf, ND);
    UP(dout, H.dout, ND);
    UPA(cxn, H.cxn, ND);

    BOTH(e->phase(e, 0, ENG_PH_FWD));
    op_embed();
    attn_fwd("attn_fwd");
    op_ffn_fwd();
    BOTH(e->phase(e, 0, ENG_PH_BWD));
    op_attn_bwd();
    op_ffn_bwd();
    if (S[0].e->dropout && S[1].e->dropout) { /* the layer ops again under dropout: the same masks on both */
        H.d.drop_p = 0.25f;
        H.d.drop_seed = 0x5eed1234u;
        attn_fwd("attn_fwd(dropout)");
        op_ffn_fwd();
        op_attn_bwd();
        op_ffn_bwd();
        H.d.drop_p = 0.0f;
        H.d.drop_seed = 0;
    }
    BOTH(e->phase(e, 0, ENG_PH_RMS));
    op_rmsnorm();
    BOTH(e->phase(e, 0, ENG_PH_CLS));
    op_cls();
    op_infer();
    BOTH(e->phase(e, 1, ENG_PH_OPT));
    op_opt();
    BOTH(e->phase(e, 1, -1));
    for (int i = 0; i < 2; i++) { /* the timers: seconds, non-negative and finite */
        double sec[2][ENG_PH_COUNT] = {{0}};
        S[i].e->sync(S[i].e);
        S[i].e->timers(S[i].e, 2, sec);
        for (int rec = 0; rec < 2; rec++)
            for (int ph = 0; ph < ENG_PH_COUNT; ph++)
                CHECK(isfinite(sec[rec][ph]) && sec[rec][ph] >= 0, "%s timers: record %d phase %d: %g s",
                      S[i].e->name, rec, ph, sec[rec][ph]);
    }

    for (int i = 0; i < 2; i++)
        for (int j = S[i].nmem - 1; j >= 0; j--) S[i].e->free(S[i].e, S[i].mem[j]);
    for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++) free(*hb[i]);
    free(H.tok), free(H.tgt);
}

static int available(const char *name, char *why, size_t cap) {
    for (const eng_backend *const *b = eng_list(); *b; b++)
        if (!strcmp((*b)->name, name)) return (*b)->available(why, cap);
    snprintf(why, cap, "not in this build");
    return 0;
}

/* one engine at one precision against ref; returns 1 when it ran */
static int run_engine(const char *name, int prec, eng *ref) {
    eng *e = eng_create(name, &(eng_opts){.threads = 0, .precision = prec, .device = 0});
    if (!e) {
        if (prec == ENG_BF16) fprintf(stderr, "engine %s: bf16 not supported, skipped (%s)\n", name, fb_errmsg());
        else CHECK(0, "engine %s: creating it at fp32 failed: %s", name, fb_errmsg());
        return 0;
    }
    CHECK(e->precision == prec && (e->act_bytes == 4 || e->act_bytes == 2), "engine %s: precision %d, act_bytes %zu",
          name, e->precision, e->act_bytes);
    S[0].e = e, S[1].e = ref;
    H.eng = name, H.prec = prec;
    memset(&st, 0, sizeof st);
    nops = 0;
    const int quick = getenv("FABLE_TEST_QUICK") != NULL;
    const double t0 = fb_now();
    for (int si = 0; si < (quick ? 2 : NSHAPES); si++) run_shape(si);
    if (verbose)
        for (int i = 0; i < nops; i++)
            fprintf(stderr, "  %-40s worst rel err %.2e (tol %.2g)\n", ops[i].key, ops[i].err, TOL[prec][ops[i].kind]);
    fprintf(stderr, "engine %s/%s on %s: %d comparisons over %d shapes in %.1f s; worst %.2e (%.2f of tol %.2g) "
            "at %s\n",
            name, eng_precision_name(prec), e->device, st.n, quick ? 2 : NSHAPES, fb_now() - t0, st.err, st.ratio,
            st.tol, st.where);
    e->destroy(e);
    return 1;
}

int main(void) {
    verbose = getenv("FABLE_TEST_VERBOSE") && atoi(getenv("FABLE_TEST_VERBOSE"));
    char list[512] = "";
    const char *env = getenv("FABLE_TEST_ENGINES");
    if (env && *env) snprintf(list, sizeof list, "%s", env);
    else
        for (const eng_backend *const *b = eng_list(); *b; b++) {
            char why[512] = "";
            if (strcmp((*b)->name, "ref") && (*b)->available(why, sizeof why))
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", *list ? "," : "", (*b)->name);
        }
    eng *ref = eng_create("ref", &(eng_opts){.threads = 0, .precision = ENG_FP32, .device = 0});
    if (!ref) {
        CHECK(0, "cannot create the ref engine: %s", fb_errmsg());
        return t_done("test_engine_ops");
    }
    int ran = 0;
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        char why[512] = "";
        if (!strcmp(name, "ref")) continue;
        if (!available(name, why, sizeof why)) {
            fprintf(stderr, "engine %s: cannot run here (%s), skipped\n", name, why);
            continue;
        }
        for (int prec = ENG_FP32; prec <= ENG_BF16; prec++) ran += run_engine(name, prec, ref);
    }
    ref->destroy(ref);
    if (!ran && !t_failures) {
        fprintf(stderr, "test_engine_ops: no engine but ref can run here (FABLE_TEST_ENGINES=%s): skipped\n",
                env && *env ? env : "all");
        return 77;
    }
    return t_done("test_engine_ops");
}
