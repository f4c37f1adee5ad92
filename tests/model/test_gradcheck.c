/* Finite-difference proof of fable's gradients, in double precision.
 *
 * The reference loss is tests/model/ref_double.h: a naive double-precision Llama-2 forward,
 * independent of src/. For EVERY parameter element θ_i, a 4-point central difference
 *     g_i = (8·(L(θ+h) − L(θ−h)) − (L(θ+2h) − L(θ−2h))) / (12h),   h = 1e-3
 * (truncation O(h⁴) ≈ 1e-12, rounding ≈ 1e-13) gives the exact gradient of the model at the
 * same fp32 weights. fable's fp32 analytic gradient (step_fwd_bwd on the cpu engine) must match
 * it per tensor:  max|g_fable − g_fd| / max|g_fd| <= GRAD_TOL.
 * PyTorch's own fp32 autograd gradients measure ~1e-7..5e-7 against this FD (see
 * docs/testing.md); GRAD_TOL leaves room for fable's different summation order, not for bugs:
 * a wrong formula gives errors of order 1e-2..1.
 * Also: fable's loss (step_loss and step_fwd_bwd) and per-position losses equal the double
 * reference's (LOSS_TOL), the layout of model_tensors() is the documented one, and a second
 * step_fwd_bwd overwrites every gradient with acc = 0 and accumulates (grads += ...) with acc = 1.
 *
 * Weights: model_init_weights(seed), matrices then scaled ×5 (std 0.1, so that attention is
 * far from uniform and SwiGLU far from linear) and norm weights set to 1 + 0.1·N(0,1) (so that
 * they are not all 1 and their gradients matter). Under FABLE_TEST_QUICK (the ASan pass) only
 * every 3rd element of each tensor is differenced. */
#include <stdint.h>

#include "fable/engine.h"
#include "fable/model.h"
#include "fable/step.h"
#include "fable/util.h"
#include "ref_double.h"
#include "testlib.h"

#define GRAD_TOL 1e-5   /* per tensor, max|a−b| / max|b| */
#define LOSS_TOL 1e-5   /* relative, loss and per-position losses */
#define FD_H 1e-3

typedef struct {
    const char *label;
    model_config c;
    int B, T;
    uint64_t seed;
    int n_ignored;    /* targets set to -1 */
    float drop_p;     /* dropout rate of the training step (0: none) */
} gc_case;

#define DROP_SEED 0xC0FFEEu
/* The multipliers of step.h's dropout contract for micro-step 0: layer l draws from
 * seed_l = eng_drop_hash(seed, l), element i of a site is kept iff
 * eng_drop_hash(seed_l ^ site, i) >= round(p·2³²) and then scaled by 1/(1−p). Returns the
 * fraction dropped. */
static double make_masks(int L, size_t width, uint32_t site, float p, double *mask) {
    const uint32_t thresh = (uint32_t)((double)p * 4294967296.0 + 0.5);
    size_t dropped = 0;
    for (int l = 0; l < L; l++) {
        const uint32_t sl = eng_drop_hash(DROP_SEED, (uint32_t)l) ^ site;
        for (size_t i = 0; i < width; i++) {
            int keep = eng_drop_hash(sl, (uint32_t)i) >= thresh;
            mask[(size_t)l * width + i] = keep ? 1.0 / (1.0 - (double)p) : 0.0;
            dropped += !keep;
        }
    }
    return (double)dropped / ((double)L * width);
}

/* Test-local RNG (splitmix64), so the test depends on nothing in src/ for its data. */
static uint64_t g_rng;
static uint64_t rng_u64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double rng_unif(void) { return (double)(rng_u64() >> 11) / 9007199254740992.0; }
static double rng_normal(void) {
    double u = rng_unif(), v = rng_unif();
    return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(6.283185307179586 * v);
}

/* model_tensors() must describe the documented layout (refd_layout_make, derived from
 * model.h's storage order on its own), and model_params_view must point at it. */
static void check_layout(const model_config *c, float *base) {
    refd_layout lo;
    refd_layout_make(c, &lo);
    static const char *names[] = {"tok_emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn",
                                  "w1", "w2", "w3", "rms_final", "wcls"};
    size_t offs[] = {lo.tok_emb, lo.rms_att, lo.wq, lo.wk, lo.wv, lo.wo, lo.rms_ffn,
                     lo.w1, lo.w2, lo.w3, lo.rms_final, lo.wcls};
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(c, t);
    int want = c->tied ? 11 : 12;
    CHECK(nt == want, "model_tensors returned %d tensors, want %d", nt, want);
    CHECK(model_num_params(c) == lo.total, "model_num_params %zu, want %zu",
          model_num_params(c), lo.total);
    for (int i = 0; i < nt && i < want; i++) {
        CHECK(strcmp(t[i].name, names[i]) == 0, "tensor %d is %s, want %s", i, t[i].name, names[i]);
        CHECK(t[i].offset == offs[i], "%s offset %zu, want %zu", names[i], t[i].offset, offs[i]);
        size_t end = (i + 1 < want) ? offs[i + 1] : lo.total;
        CHECK(t[i].numel == end - offs[i], "%s numel %zu, want %zu", names[i], t[i].numel,
              end - offs[i]);
        int is_norm = strncmp(names[i], "rms", 3) == 0;
        CHECK(t[i].is_matrix == !is_norm, "%s is_matrix %d", names[i], t[i].is_matrix);
    }
    model_params p;
    model_params_view(c, base, &p);
    float *views[] = {p.tok_emb, p.rms_att, p.wq, p.wk, p.wv, p.wo, p.rms_ffn,
                      p.w1, p.w2, p.w3, p.rms_final, p.wcls};
    for (int i = 0; i < 12; i++)
        CHECK(views[i] == base + offs[i], "model_params_view: %s at %td, want %zu", names[i],
              views[i] - base, offs[i]);
}

/* The reference loss without the masks (evaluation's model). */
static double refd_loss_plain(const model_config *c, const double *p, int B, int T, const int32_t *tok,
                              const int32_t *tgt) {
    const double *ma = refd_mask_att, *mg = refd_mask_gate;
    refd_mask_att = refd_mask_gate = NULL;
    double l = refd_loss(c, p, B, T, tok, tgt, NULL, NULL);
    refd_mask_att = ma, refd_mask_gate = mg;
    return l;
}

static void run_case(const gc_case *k, eng *e, int quick) {
    const model_config *c = &k->c;
    const int B = k->B, T = k->T, N = B * T;
    fprintf(stderr, "== %s: D=%d F=%d L=%d NH=%d NKV=%d V=%d T=%d/%d B=%d %s\n", k->label,
            c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, T,
            c->seq_len, B, c->tied ? "tied" : "untied");
    CHECK(model_config_validate(c) == 0, "config rejected: %s", fb_errmsg());

    model m;
    if (model_create(&m, c) != 0) { CHECK(0, "model_create: %s", fb_errmsg()); return; }
    const size_t P = model_num_params(c);
    check_layout(c, m.data);

    /* weights: llama2.c init, matrices ×5, norms 1 + 0.1·N(0,1) */
    g_rng = k->seed;
    model_init_weights(c, m.data, k->seed);
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(c, t);
    for (int i = 0; i < nt; i++)
        for (size_t j = 0; j < t[i].numel; j++) {
            float *w = m.data + t[i].offset + j;
            *w = t[i].is_matrix ? *w * 5.0f : (float)(1.0 + 0.1 * rng_normal());
        }
    int32_t *tok = malloc(sizeof(int32_t) * N), *tgt = malloc(sizeof(int32_t) * N);
    for (int n = 0; n < N; n++) {
        tok[n] = (int32_t)(rng_u64() % (uint64_t)c->vocab_size);
        tgt[n] = (int32_t)(rng_u64() % (uint64_t)c->vocab_size);
    }
    for (int i = 0; i < k->n_ignored; i++) tgt[(size_t)(3 + 5 * i) % (size_t)N] = -1;

    /* fable: loss and analytic gradient (fp32, the engine under test) */
    step_ctx s;
    if (step_init(&s, e, c, B, T, 1, 1) != 0) { CHECK(0, "step_init: %s", fb_errmsg()); return; }
    step_set_params(&s, m.data);
    if (k->drop_p > 0 && step_set_dropout(&s, k->drop_p, DROP_SEED)) { CHECK(0, "step_set_dropout: %s", fb_errmsg()); return; }
    step_result res;
    float *losses = malloc(sizeof(float) * N);
    double loss_eval = step_loss(&s, tok, tgt);
    step_get_losses(&s, losses);
    /* k = 0 must write every gradient element: start from NaN so a missed one shows */
    float *g1 = malloc(P * sizeof(float)), *g2 = malloc(P * sizeof(float));
    for (size_t i = 0; i < P; i++) g1[i] = NAN;
    step_set_grads(&s, g1);
    step_fwd_bwd(&s, tok, tgt, 0);
    step_finish(&s, &res);
    double loss_fb = res.loss[0];
    step_get_grads(&s, g1);
    size_t nonfinite = 0;
    for (size_t i = 0; i < P; i++) nonfinite += !isfinite(g1[i]);
    CHECK(nonfinite == 0, "step_fwd_bwd(k = 0) left %zu of %zu gradient elements unwritten", nonfinite, P);
    /* accumulation: a second micro-step (k = 1) on the same data adds the same gradient again
     * (without dropout: with it, micro-step 1 draws other masks) */
    step_ctx s2;
    if (k->drop_p == 0) {
    if (step_init(&s2, e, c, B, T, 2, 1) != 0) { CHECK(0, "step_init: %s", fb_errmsg()); return; }
    step_set_params(&s2, m.data);
    step_fwd_bwd(&s2, tok, tgt, 0);
    step_fwd_bwd(&s2, tok, tgt, 1);
    step_finish(&s2, &res);
    step_get_grads(&s2, g2);
    CHECK(res.n == 2 && res.loss[0] == loss_fb && res.loss[1] == loss_fb, "micro-step losses %g %g vs %g",
          res.loss[0], res.loss[1], loss_fb);
    step_free(&s2);
    for (size_t i = 0; i < P; i++) g2[i] *= 0.5f;
    double acc = t_rel_err(g2, g1, P, NULL);
    CHECK(acc < 1e-6, "second micro-step did not accumulate: grads/2 differ by %.2e", acc);
    }
    /* a micro-batch with every target ignored has a zero gradient: k = 0 writes zeros */
    int32_t *none = malloc(sizeof(int32_t) * N);
    for (int n = 0; n < N; n++) none[n] = -1;
    step_fwd_bwd(&s, tok, none, 0);
    step_finish(&s, &res);
    double l0 = res.loss[0];
    step_get_grads(&s, g2);
    size_t nonzero = 0;
    for (size_t i = 0; i < P; i++) nonzero += g2[i] != 0.0f;
    CHECK(l0 == 0.0 && nonzero == 0, "all targets ignored: loss %g, %zu nonzero gradient elements", l0, nonzero);
    free(none);
    /* and k = 0 again overwrites: the first gradient, bit for bit */
    step_fwd_bwd(&s, tok, tgt, 0);
    step_finish(&s, &res);
    step_get_grads(&s, g2);
    CHECK(memcmp(g1, g2, P * sizeof(float)) == 0, "step_fwd_bwd(k = 0) did not overwrite the gradients");

    /* the double reference at the same weights */
    refd_layout lo;
    refd_layout_make(c, &lo);
    double *p = malloc(sizeof(double) * lo.total);
    for (size_t i = 0; i < lo.total; i++) p[i] = m.data[i];
    double *rl = malloc(sizeof(double) * N);
    /* evaluation (step_loss) never drops: it is the plain model's loss */
    double loss_ref = refd_loss(c, p, B, T, tok, tgt, rl, NULL);
    double e1 = fabs(loss_eval - loss_ref) / fabs(loss_ref);
    double *mask_att = NULL, *mask_gate = NULL;
    if (k->drop_p > 0) { /* training: the masked model */
        mask_att = malloc(sizeof(double) * c->n_layers * (size_t)N * c->dim);
        mask_gate = malloc(sizeof(double) * c->n_layers * (size_t)N * c->hidden_dim);
        double fa = make_masks(c->n_layers, (size_t)N * c->dim, ENG_DROP_SITE_ATT, k->drop_p, mask_att);
        double fg = make_masks(c->n_layers, (size_t)N * c->hidden_dim, ENG_DROP_SITE_GATE, k->drop_p, mask_gate);
        fprintf(stderr, "dropout %.2f: dropped %.3f of att, %.3f of gate\n", k->drop_p, fa, fg);
        CHECK(fabs(fa - k->drop_p) < 0.08 && fabs(fg - k->drop_p) < 0.05, "dropped fractions %.3f, %.3f for p %.2f",
              fa, fg, k->drop_p);
        refd_mask_att = mask_att, refd_mask_gate = mask_gate;
        double loss_drop = refd_loss(c, p, B, T, tok, tgt, rl, NULL);
        CHECK(fabs(loss_drop - loss_ref) > 1e-3 * fabs(loss_ref), "dropout did not change the loss (%.9f vs %.9f)",
              loss_drop, loss_ref);
        loss_ref = loss_drop;
    }
    double e2 = fabs(loss_fb - loss_ref) / fabs(loss_ref);
    if (k->drop_p > 0) e1 = fabs(loss_eval - refd_loss_plain(c, p, B, T, tok, tgt)) / fabs(loss_ref);
    fprintf(stderr, "loss: ref %.9f  step_loss %.9f (rel %.1e)  step_fwd_bwd %.9f (rel %.1e)\n",
            loss_ref, loss_eval, e1, loss_fb, e2);
    CHECK(e1 < LOSS_TOL, "step_loss %.9f vs ref %.9f: rel %.2e", loss_eval, loss_ref, e1);
    CHECK(e2 < LOSS_TOL, "step_fwd_bwd loss %.9f vs ref %.9f: rel %.2e", loss_fb, loss_ref, e2);
    double mlo = 0, mlr = 0;
    for (int n = 0; n < N; n++) {
        mlo = fmax(mlo, fabs(losses[n] - rl[n]));
        mlr = fmax(mlr, fabs(rl[n]));
    }
    if (k->drop_p == 0) CHECK(mlo / mlr < LOSS_TOL, "per-position losses: rel %.2e", mlo / mlr);

    /* finite differences, tensor by tensor */
    int stride = quick ? 3 : 1;
    for (int i = 0; i < nt; i++) {
        double md = 0, mb = 0, fd_worst = 0;
        size_t worst = 0, count = 0;
        for (size_t j = 0; j < t[i].numel; j += (size_t)stride) {
            double *q = p + t[i].offset + j, s0 = *q;
            *q = s0 + FD_H;     double a1 = refd_loss(c, p, B, T, tok, tgt, NULL, NULL);
            *q = s0 - FD_H;     double b1 = refd_loss(c, p, B, T, tok, tgt, NULL, NULL);
            *q = s0 + 2 * FD_H; double a2 = refd_loss(c, p, B, T, tok, tgt, NULL, NULL);
            *q = s0 - 2 * FD_H; double b2 = refd_loss(c, p, B, T, tok, tgt, NULL, NULL);
            *q = s0;
            double fd = (8.0 * (a1 - b1) - (a2 - b2)) / (12.0 * FD_H);
            double d = fabs((double)g1[t[i].offset + j] - fd);
            if (d > md || d != d) { md = d; worst = j; fd_worst = fd; }
            mb = fmax(mb, fabs(fd));
            count++;
        }
        double rel = md / (mb > 1e-30 ? mb : 1e-30);
        fprintf(stderr, "  %-9s %6zu elems  max|g| %.3e  rel err %.2e  (worst at %zu)\n",
                t[i].name, count, mb, rel, worst);
        CHECK(mb > 1e-8, "%s: reference gradient is all zero: test would prove nothing", t[i].name);
        CHECK(rel <= GRAD_TOL, "%s: gradient rel err %.2e > %.0e (worst element %zu: fable "
              "%.8g, FD %.8g)", t[i].name, rel, GRAD_TOL, worst, g1[t[i].offset + worst],
              fd_worst);
    }

    refd_mask_att = refd_mask_gate = NULL;
    free(mask_att); free(mask_gate);
    free(p); free(rl); free(g1); free(g2); free(losses); free(tok); free(tgt);
    step_free(&s);
    model_free(&m);
}

int main(void) {
    int quick = getenv("FABLE_TEST_QUICK") != NULL;
    /* the engine under test: $FABLE_ENGINE (default cpu), in fp32 */
    eng *e = t_engine(ENG_FP32);
    if (!e) return 77;
    const gc_case cases[] = {
        /* GQA (2 query heads per kv head), untied classifier, T < seq_len */
        {"gqa-untied", {16, 24, 2, 4, 2, 37, 8, 0}, 2, 7, 11, 0, 0.0f},
        /* multi-head (NKV = NH), tied classifier, odd sizes, two ignored targets */
        {"mha-tied", {12, 20, 2, 3, 3, 29, 5, 1}, 3, 5, 23, 2, 0.0f},
        /* dropout 0.3 on att and gate: the gradient of the masked model (step.h's contract) */
        {"gqa-dropout", {16, 24, 2, 4, 2, 37, 8, 0}, 2, 7, 11, 0, 0.3f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], e, quick);
    e->destroy(e);
    return t_done("test_gradcheck");
}
