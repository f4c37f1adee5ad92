/* fable — run reports: parameters and FLOPs by part at the start, efficiency at the end. */
#include "fable/report.h"

#include <math.h>
#include <string.h>

#include "fable/util.h"

/* ---- what the model is made of ----------------------------------------------------- */
void report_params_of(const model_config *c, report_params *p) {
    const size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, L = (size_t)c->n_layers, V = (size_t)c->vocab_size;
    const size_t KVD = (size_t)model_kv_dim(c);
    p->embedding = V * D;
    p->attention = L * (2 * D * D + 2 * KVD * D);
    p->ffn = L * 3 * F * D;
    p->norms = L * 2 * D + D;
    p->classifier = c->tied ? 0 : V * D;
    p->total = p->embedding + p->attention + p->ffn + p->norms + p->classifier;
}

void report_flops_of(const model_config *c, int T, report_flops *f) {
    report_params p;
    report_params_of(c, &p);
    const double VD = (double)c->vocab_size * c->dim;
    f->embedding = c->tied ? 0.0 : 6.0 * VD;
    f->attention = 6.0 * (double)p.attention;
    f->sdpa = 12.0 * c->n_layers * (double)c->dim * T;
    f->ffn = 6.0 * (double)p.ffn;
    f->classifier = 6.0 * VD;
    f->total = f->embedding + f->attention + f->sdpa + f->ffn + f->classifier;
}

const char *report_preset_name(const model_config *c) {
    for (const char *const *n = model_preset_names; *n; n++) {
        model_config p;
        if (model_preset(*n, &p) == 0 && !memcmp(&p, c, sizeof p)) return *n;
    }
    return NULL;
}

/* 15191712 → "15,191,712" */
static const char *grouped(char *buf, size_t cap, unsigned long long v) {
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%llu", v), o = 0;
    for (int i = 0; i < n && (size_t)o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
    return buf;
}

void report_start_print(FILE *f, const model_config *c, int T) {
    report_params p;
    report_flops fl;
    report_params_of(c, &p);
    report_flops_of(c, T, &fl);
    char b[40];
    const char *preset = report_preset_name(c);
    fprintf(f, "model: %s parameters%s%s%s\n", grouped(b, sizeof b, p.total), preset ? " (" : "",
            preset ? preset : "", preset ? ")" : "");
    const struct { const char *name; size_t n; } rows[] = {
        {"embedding", p.embedding}, {"attention", p.attention}, {"ffn", p.ffn},
        {"norms", p.norms},         {"classifier", p.classifier},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (i == 4 && c->tied) { fprintf(f, "  %-11s %14s  (tied: the embedding matrix)\n", "classifier", "-"); continue; }
        fprintf(f, "  %-11s %14s  %5.1f%%\n", rows[i].name, grouped(b, sizeof b, rows[i].n),
                100.0 * (double)rows[i].n / (double)p.total);
    }
    fprintf(f, "training FLOPs per token at seq %d: %.2f MFLOP (6 per matmul weight + 12*L*D*T)\n", T, fl.total / 1e6);
    const struct { const char *name; double v; } fr[] = {
        {"embedding", fl.embedding}, {"attention", fl.attention}, {"scores+values", fl.sdpa},
        {"ffn", fl.ffn},             {"classifier", fl.classifier},
    };
    for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++)
        if (fr[i].v > 0 || i != 0)
            fprintf(f, "  %-13s %10.3f MFLOP  %5.1f%%\n", fr[i].name, fr[i].v / 1e6, 100.0 * fr[i].v / fl.total);
}

void report_start_fields(tele *t, const model_config *c, int T) {
    report_params p;
    report_flops fl;
    report_params_of(c, &p);
    report_flops_of(c, T, &fl);
    tele_int(t, "params_embedding", (long long)p.embedding);
    tele_int(t, "params_attention", (long long)p.attention);
    tele_int(t, "params_ffn", (long long)p.ffn);
    tele_int(t, "params_norms", (long long)p.norms);
    tele_int(t, "params_classifier", (long long)p.classifier);
    tele_num(t, "flops_embedding", fl.embedding);
    tele_num(t, "flops_attention", fl.attention);
    tele_num(t, "flops_sdpa", fl.sdpa);
    tele_num(t, "flops_ffn", fl.ffn);
    tele_num(t, "flops_classifier", fl.classifier);
}

/* ---- how the run went -------------------------------------------------------------- */
void report_run_begin(report_run *rr, int dw_async, double peak_gflops) {
    memset(rr, 0, sizeof *rr);
    rr->t0 = fb_now();
    rr->dw_async = dw_async;
    rr->peak_gflops = peak_gflops;
}

void report_run_update(report_run *rr, const double ph[ENG_PH_COUNT], double data_s, double wall_s,
                       long long tokens, double flops) {
    for (int p = 0; p < ENG_PH_COUNT; p++) rr->ph[p] += ph[p];
    rr->data_s += data_s;
    rr->train_s += wall_s;
    rr->tokens += tokens;
    rr->flops += flops;
    rr->updates++;
}

/* The rows of the time table. `counted`: part of the 100% (the main queue's time). Overlapped
 * weight gradients (dw_async) run beside the main queue: shown, but only their wait counts. */
typedef struct { const char *key, *name; double s; int counted; } phase_row;
enum { N_ROWS = 12 };

static void phase_rows(const report_run *rr, double seconds, phase_row row[N_ROWS]) {
    const double *ph = rr->ph;
    const phase_row r[N_ROWS] = {
        {"data", "data loading", rr->data_s, 1},
        {"fwd", "forward", ph[ENG_PH_FWD], 1},
        {"rms", "final RMSNorm", ph[ENG_PH_RMS], 1},
        {"cls", "classifier+loss", ph[ENG_PH_CLS], 1},
        {"bwd", "backward (dx)", ph[ENG_PH_BWD], 1},
        {"dw", rr->dw_async ? "weight grads (overlapped)" : "weight grads", ph[ENG_PH_DW], !rr->dw_async},
        {"dw_wait", "wait for weight grads", ph[ENG_PH_DW_WAIT], rr->dw_async},
        {"opt", "optimizer", ph[ENG_PH_OPT], 1},
        {"eval", "evaluation", rr->eval_s, 1},
        {"ckpt", "checkpoints", rr->ckpt_s, 1},
        {"sample", "samples", rr->sample_s, 1},
        {"other", "other (sync, logging)", 0, 1},
    };
    double sum = 0;
    for (int i = 0; i < N_ROWS; i++) {
        row[i] = r[i];
        if (r[i].counted) sum += r[i].s;
    }
    /* What no phase timer saw. On an engine whose device work overlaps the host's data
     * loading (cuda), the counted phases can exceed the wall time: then 0. */
    row[N_ROWS - 1].s = seconds > sum ? seconds - sum : 0.0;
}

void report_end(const report_run *rr, double seconds, tele *t, FILE *f) {
    phase_row row[N_ROWS];
    phase_rows(rr, seconds, row);
    const double gflops = rr->train_s > 0 ? rr->flops / rr->train_s / 1e9 : 0.0;
    const double mfu = rr->peak_gflops > 0 ? 100.0 * gflops / rr->peak_gflops : NAN;
    const double tps = rr->train_s > 0 ? (double)rr->tokens / rr->train_s : 0.0;
    const double wall_tps = seconds > 0 ? (double)rr->tokens / seconds : 0.0;
    const double dw = rr->ph[ENG_PH_DW], wait = rr->ph[ENG_PH_DW_WAIT];
    /* the share of the overlapped weight-gradient time that the main queue did not wait for */
    const double overlap = rr->dw_async && dw > 0 ? 100.0 * (1.0 - (wait < dw ? wait : dw) / dw) : NAN;
    const double pct = seconds > 0 ? 100.0 / seconds : 0.0;
    if (t) {
        tele_begin(t, "report");
        tele_int(t, "updates", rr->updates);
        tele_int(t, "tokens", rr->tokens);
        tele_num(t, "seconds", seconds);
        tele_num(t, "train_s", rr->train_s);
        for (int i = 0; i < N_ROWS; i++) {
            char k[32];
            snprintf(k, sizeof k, "%s_s", row[i].key);
            tele_num(t, k, row[i].s);
            snprintf(k, sizeof k, "%s_pct", row[i].key);
            tele_num(t, k, row[i].s * pct);
        }
        tele_int(t, "dw_overlapped", rr->dw_async);
        tele_num(t, "dw_overlap_pct", overlap);
        tele_num(t, "flops", rr->flops);
        tele_num(t, "gflops", gflops);
        tele_num(t, "peak_gflops", rr->peak_gflops);
        tele_num(t, "mfu_pct", mfu);
        tele_num(t, "tokens_per_s", tps);
        tele_num(t, "wall_tokens_per_s", wall_tps);
        tele_end(t);
    }
    if (!f) return;
    fprintf(f, "efficiency report: %lld updates, %lld tokens in %.2f s (%.2f s in updates)\n", rr->updates,
            rr->tokens, seconds, rr->train_s);
    double sum = 0;
    for (int i = 0; i < N_ROWS; i++) {
        if (!row[i].counted && row[i].s == 0) continue; /* dw_wait of an engine that runs dW inline */
        fprintf(f, "  %-26s %10.3f s  %5.1f%%%s\n", row[i].name, row[i].s, row[i].s * pct,
                row[i].counted ? "" : "  (beside the main queue; not in the total)");
        if (row[i].counted) sum += row[i].s * pct;
    }
    fprintf(f, "  %-26s %10.3f s  %5.1f%%\n", "total", seconds, sum);
    fprintf(f, "  throughput: %.0f tokens/s in updates (%.0f over the wall time), %.2f GFLOP/s", tps, wall_tps, gflops);
    if (isfinite(mfu)) fprintf(f, ", %.1f%% MFU of %.0f GFLOP/s\n", mfu, rr->peak_gflops);
    else fprintf(f, " (no peak known: no MFU)\n");
    fprintf(f, "  data loading: %.1f%% of the time\n", rr->data_s * pct);
    if (rr->dw_async)
        fprintf(f, "  weight gradients: %.3f s on the second queue, waited for %.3f s (t_dw_wait): %.1f%% hidden\n", dw,
                wait, isfinite(overlap) ? overlap : 0.0);
    else
        fprintf(f, "  weight gradients: run inline on the main queue (t_dw_wait 0: nothing to overlap)\n");
}
