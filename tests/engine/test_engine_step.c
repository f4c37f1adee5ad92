/* fable — whole training steps, engine against engine: each engine under test runs one update
 * (two micro-steps, so k = 0 overwrites and k = 1 accumulates, then clipping and AdamW) on the
 * same weights and tokens as the cpu engine, and every result is compared: both micro-step
 * losses, the gradient norm, every gradient tensor, and every tensor's AdamW update
 * (weights after − before).
 *
 * Engines under test: FABLE_TEST_ENGINES (comma list), else every available engine but cpu
 * (ref in CI; ref and cuda where a GPU exists). Each runs in fp32 and, where it has it, bf16.
 *
 * Tolerances (relative L2 per tensor, relative for scalars):
 * - fp32: 1e-5 for losses, the norm and gradients. Both engines compute the same formulas in
 *   fp32 with different summation orders; measured (ref vs cpu): losses ~1e-8, gradients
 *   ~6e-7. The first AdamW update is m̂/(√v̂+eps) = g/(|g|+eps): ill-conditioned where a
 *   gradient is near 0 (its relative error becomes the update's), so updates get 1e-3
 *   (measured ≤ 1.6e-4, ref vs cpu), as tests/model/test_torch_parity.c does against PyTorch.
 * - bf16 (against the fp32 cpu engine): the loss 2e-3: it is a mean over all positions, so the
 *   ~2^-9 relative rounding of each bf16 operand averages out; gradients 5e-2: every gradient
 *   passes through the bf16 rounding of its two matmul operands (u = 2^-9 each) in every layer
 *   above it, and the errors of L layers add up (≈ u·sqrt(roundings) per layer). The first
 *   update is sign(g)·lr where |g| ≫ eps, so a bf16 gradient whose sign differs from fp32's on
 *   a near-zero element moves the update by 2·lr there: only a loose bound (0.5) is meaningful;
 *   the AdamW kernel itself is checked op by op (test_engine_ops). A wrong kernel is off by
 *   O(1), far outside these.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fable/engine.h"
#include "fable/model.h"
#include "fable/step.h"
#include "fable/util.h"
#include "testlib.h"

typedef struct {
    const char *label;
    model_config c;
    int B, T;
} st_case;

typedef struct {
    double loss[2], gnorm;
    float *grads, *params;
} st_out;

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double x = (double)a[i] - b[i];
        d += x * x;
        r += (double)b[i] * b[i];
    }
    if (!isfinite(d)) return INFINITY;
    return sqrt(d) / fmax(sqrt(r), 1e-30);
}

/* one update on engine e from the weights w0 and batches tok/tgt [2][N]; fills o */
static int run(eng *e, const st_case *k, const float *w0, const int32_t *tok, const int32_t *tgt, st_out *o) {
    step_ctx s;
    if (step_init(&s, e, &k->c, k->B, k->T, 2, 1)) return -1;
    const size_t P = s.n, N = (size_t)k->B * k->T;
    float *z = calloc(P, sizeof(float));
    step_set_params(&s, w0);
    step_set_moments(&s, z, z);
    free(z);
    const optim_cfg oc = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                          .grad_clip = 0.5f};
    step_fwd_bwd(&s, tok, tgt, 0);
    step_fwd_bwd(&s, tok + N, tgt + N, 1);
    step_optimizer(&s, &oc, 1, 0.5f);
    step_result r;
    step_finish(&s, &r);
    o->loss[0] = r.loss[0];
    o->loss[1] = r.loss[1];
    o->gnorm = r.grad_norm;
    o->grads = malloc(P * sizeof(float));
    o->params = malloc(P * sizeof(float));
    step_get_grads(&s, o->grads);
    step_get_params(&s, o->params);
    step_free(&s);
    return 0;
}

static void compare(const char *name, int prec, const st_case *k, const float *w0, const st_out *a, const st_out *ref) {
    const int bf = prec == ENG_BF16;
    const double tl = bf ? 2e-3 : 1e-5, tg = bf ? 5e-2 : 1e-5, tu = bf ? 0.5 : 1e-3;
    for (int i = 0; i < 2; i++) {
        double r = fabs(a->loss[i] - ref->loss[i]) / fabs(ref->loss[i]);
        CHECK(r <= tl, "%s %s %s: micro-step %d loss %.9f vs cpu %.9f (rel %.2e > %.0e)", name,
              eng_precision_name(prec), k->label, i, a->loss[i], ref->loss[i], r, tl);
    }
    double rn = fabs(a->gnorm - ref->gnorm) / ref->gnorm;
    CHECK(rn <= tg, "%s %s %s: grad norm %.7g vs cpu %.7g (rel %.2e)", name, eng_precision_name(prec), k->label,
          a->gnorm, ref->gnorm, rn);
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(&k->c, t);
    double wg = 0, wu = 0;
    for (int i = 0; i < nt; i++) {
        const size_t o = t[i].offset, n = t[i].numel;
        double eg = rel_l2(a->grads + o, ref->grads + o, n);
        /* updates: params − w0, compared relative to the cpu engine's update */
        float *ua = malloc(n * sizeof(float)), *ur = malloc(n * sizeof(float));
        for (size_t j = 0; j < n; j++) ua[j] = a->params[o + j] - w0[o + j], ur[j] = ref->params[o + j] - w0[o + j];
        double eu = rel_l2(ua, ur, n);
        free(ua);
        free(ur);
        wg = fmax(wg, eg);
        wu = fmax(wu, eu);
        CHECK(eg <= tg, "%s %s %s: grad %s rel L2 %.2e > %.0e", name, eng_precision_name(prec), k->label, t[i].name,
              eg, tg);
        CHECK(eu <= tu, "%s %s %s: AdamW update of %s rel L2 %.2e > %.0e", name, eng_precision_name(prec), k->label,
              t[i].name, eu, tu);
    }
    fprintf(stderr, "  %-5s %-4s %-12s loss rel %.1e / %.1e, grad norm rel %.1e, worst grad %.1e, worst update %.1e\n",
            name, eng_precision_name(prec), k->label, fabs(a->loss[0] - ref->loss[0]) / fabs(ref->loss[0]),
            fabs(a->loss[1] - ref->loss[1]) / fabs(ref->loss[1]), rn, wg, wu);
}

int main(void) {
    const int quick = getenv("FABLE_TEST_QUICK") != NULL;
    const st_case cases[] = {
        /* stories260K's shape (HS 8, GQA 2:1), 2 layers */
        {"260K-like", {64, 172, 2, 8, 4, 512, 128, 1}, 4, 64},
        /* HS 64 (the tensor-core attention of stories110M), GQA 2:1, untied, odd T and V */
        {"hs64-untied", {128, 344, 2, 2, 1, 1003, 256, 0}, 2, 67},
    };
    const int ncase = quick ? 1 : 2;
    char list[256] = "";
    const char *env = getenv("FABLE_TEST_ENGINES");
    if (env && *env) snprintf(list, sizeof list, "%s", env);
    else
        for (const eng_backend *const *b = eng_list(); *b; b++) {
            char why[512];
            if (strcmp((*b)->name, "cpu") && (*b)->available(why, sizeof why))
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", (*b)->name);
        }
    if (!list[0]) {
        fprintf(stderr, "no engine to compare with cpu\n");
        return 77;
    }
    eng *cpu = eng_create("cpu", &(eng_opts){.threads = 2, .precision = ENG_FP32});
    if (!cpu) { fprintf(stderr, "cpu engine: %s\n", fb_errmsg()); return 1; }
    for (int ci = 0; ci < ncase; ci++) {
        const st_case *k = &cases[ci];
        const size_t P = model_num_params(&k->c), N = (size_t)k->B * k->T;
        float *w0 = malloc(P * sizeof(float));
        model_init_weights(&k->c, w0, 11 + ci);
        int32_t *tok = malloc(2 * N * sizeof(int32_t)), *tgt = malloc(2 * N * sizeof(int32_t));
        fb_rng r;
        fb_rng_seed(&r, 5 + ci);
        for (size_t i = 0; i < 2 * N; i++) {
            tok[i] = (int32_t)(fb_rng_u32(&r) % k->c.vocab_size);
            tgt[i] = i % 13 == 5 ? -1 : (int32_t)(fb_rng_u32(&r) % k->c.vocab_size);
        }
        st_out ref;
        if (run(cpu, k, w0, tok, tgt, &ref)) { CHECK(0, "cpu run: %s", fb_errmsg()); continue; }
        char names[256];
        snprintf(names, sizeof names, "%s", list);
        for (char *name = strtok(names, ","); name; name = strtok(NULL, ",")) {
            for (int prec = ENG_FP32; prec <= ENG_BF16; prec++) {
                eng *e = eng_create(name, &(eng_opts){.threads = 2, .precision = prec});
                if (!e) {
                    CHECK(prec == ENG_BF16, "engine %s fp32: %s", name, fb_errmsg());
                    continue;
                }
                st_out o;
                if (run(e, k, w0, tok, tgt, &o)) CHECK(0, "%s run: %s", name, fb_errmsg());
                else {
                    compare(name, prec, k, w0, &o, &ref);
                    free(o.grads);
                    free(o.params);
                }
                e->destroy(e);
            }
        }
        free(ref.grads);
        free(ref.params);
        free(w0);
        free(tok);
        free(tgt);
    }
    cpu->destroy(cpu);
    return t_done("test_engine_step");
}
