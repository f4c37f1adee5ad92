/* fable — the engine registry and engine-independent helpers of the engine interface.
 * Engines are known here only by their eng_backend entry; each lives in its own folder
 * (src/engine/ref, src/engine/cpu, src/engine/cuda). */
#include "fable/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

extern const eng_backend eng_backend_ref;
extern const eng_backend eng_backend_cpu;
extern const eng_backend eng_backend_cuda;

static const eng_backend *const backends[] = {&eng_backend_cpu, &eng_backend_ref, &eng_backend_cuda, NULL};

const eng_backend *const *eng_list(void) { return backends; }

void eng_run_direct(eng *e, uint64_t key, void (*fn)(void *ctx), void *ctx) { fn(ctx); }

const char *eng_default_name(void) {
    const char *s = getenv("FABLE_ENGINE");
    return s && *s ? s : "cpu";
}

eng *eng_create(const char *name, const eng_opts *o) {
    if (!name) name = "cpu";
    eng_opts def = {.threads = 0, .precision = -1, .device = 0};
    if (!o) o = &def;
    char names[256] = "";
    for (const eng_backend *const *b = backends; *b; b++) {
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", b == backends ? "" : ", ", (*b)->name);
        if (strcmp((*b)->name, name)) continue;
        char why[1024] = "";
        if (!(*b)->available(why, sizeof why)) {
            fb_err("engine '%s' cannot run on this machine: %s", name, why);
            return NULL;
        }
        return (*b)->create(o);
    }
    fb_err("unknown engine '%s' (this build has: %s; `fable engines` lists them)", name, names);
    return NULL;
}

double eng_peak_gflops(eng *e) {
    if (e->peak_gflops <= 0 && e->peak) e->peak_gflops = e->peak(e);
    return e->peak_gflops;
}

const char *eng_precision_name(int precision) { return precision == ENG_BF16 ? "bf16" : "fp32"; }

int eng_precision_parse(const char *s, int *precision) {
    if (!strcmp(s, "fp32")) *precision = ENG_FP32;
    else if (!strcmp(s, "bf16")) *precision = ENG_BF16;
    else return fb_err("unknown precision '%s' (known: fp32, bf16)", s);
    return 0;
}

void eng_dims_make(eng_dims *d, const model_config *c, int B, int T) {
    d->B = B;
    d->T = T;
    d->N = B * T;
    d->D = c->dim;
    d->F = c->hidden_dim;
    d->NH = c->n_heads;
    d->NKV = c->n_kv_heads;
    d->HS = c->dim / c->n_heads;
    d->KVD = d->NKV * d->HS;
    d->V = c->vocab_size;
    d->drop_p = 0.0f;
    d->drop_seed = 0;
}
