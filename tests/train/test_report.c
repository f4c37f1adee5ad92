/* Run reports: the parameter breakdown of every preset against the counts llama2.c's
 * checkpoint layout gives (SPEC §2: 260,032 / 15,191,712 / 41,689,600 / 109,529,856) and
 * per-part values worked out by hand here; the FLOP parts against the reference trainer's own
 * FLOP model (SPEC §1: 43.49 GFLOP of forward projections and 12.58 of classifier per
 * 256-token step of stories110M; SPEC §2: ≈ 685 MFLOP per token); the end report's record
 * against the numbers it was given (shares sum to 100, rates, overlap). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/json.h"
#include "fable/model.h"
#include "fable/report.h"
#include "fable/util.h"
#include "testlib.h"

static const json_node *last_record(json_doc *d, const char *path, const char *type) {
    FILE *f = fopen(path, "r");
    char line[16384], found[16384] = "";
    char pat[64];
    snprintf(pat, sizeof pat, "\"type\":\"%s\"", type);
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, pat)) snprintf(found, sizeof found, "%s", line);
    if (f) fclose(f);
    if (!found[0] || json_parse(d, found, strlen(found), path)) return NULL;
    return json_root(d);
}

static double field(const json_doc *d, const json_node *o, const char *k) {
    const json_node *v = json_get(d, o, k);
    return v && v->type == JSON_NUMBER ? v->num : NAN;
}

int main(void) {
    /* ---- parameters by part ---- */
    struct { const char *preset; size_t total, emb, attn, ffn, norms; } want[] = {
        /* emb = V·D; attn = L·(2·D² + 2·KVD·D); ffn = L·3·F·D; norms = (2L+1)·D */
        {"stories260K", 260032, 512 * 64, 5 * (2 * 64 * 64 + 2 * 32 * 64), 5 * 3 * 172 * 64, 11 * 64},
        {"stories15M", 15191712, 9216000, 1990656, 3981312, 3744},
        {"stories42M", 41689600, 16384000, 8388608, 16908288, 8704},
        {"stories110M", 109529856, 24576000, 28311552, 56623104, 19200},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        model_config c;
        CHECK(model_preset(want[i].preset, &c) == 0, "preset %s", want[i].preset);
        report_params p;
        report_params_of(&c, &p);
        CHECK(p.total == want[i].total && p.total == model_num_params(&c),
              "%s: parts sum to %zu, SPEC says %zu, the layout %zu", want[i].preset, p.total, want[i].total,
              model_num_params(&c));
        CHECK(p.embedding == want[i].emb && p.attention == want[i].attn && p.ffn == want[i].ffn &&
                  p.norms == want[i].norms && p.classifier == 0,
              "%s: %zu %zu %zu %zu %zu", want[i].preset, p.embedding, p.attention, p.ffn, p.norms, p.classifier);
        CHECK(p.embedding + p.attention + p.ffn + p.norms + p.classifier == p.total, "%s: sum", want[i].preset);
        CHECK(report_preset_name(&c) && !strcmp(report_preset_name(&c), want[i].preset), "%s recognised",
              want[i].preset);
        /* FLOPs: the parts sum to flops_per_token at several window lengths */
        for (int T = 1; T <= c.seq_len; T *= 4) {
            report_flops f;
            report_flops_of(&c, T, &f);
            double sum = f.embedding + f.attention + f.sdpa + f.ffn + f.classifier;
            CHECK(fabs(sum - model_flops_per_token(&c, T)) <= 1e-9 * sum && f.total == sum,
                  "%s T=%d: parts %.0f, flops_per_token %.0f", want[i].preset, T, sum, model_flops_per_token(&c, T));
        }
    }
    /* the reference's FLOP model (SPEC §1), stories110M at seq 256: per 256-token step, forward
     * projections 43.49 GFLOP, the classifier 12.58 (each ×3 for forward, dx, dW) */
    model_config c110;
    model_preset("stories110M", &c110);
    report_flops f;
    report_flops_of(&c110, 256, &f);
    double fwd_proj = (f.attention + f.ffn) / 3 * 256 / 1e9, cls = f.classifier / 3 * 256 / 1e9;
    CHECK(fabs(fwd_proj - 43.49) < 0.005, "forward projections per step %.3f GFLOP (reference: 43.49)", fwd_proj);
    CHECK(fabs(cls - 12.58) < 0.005, "classifier per step %.3f GFLOP (reference: 12.58)", cls);
    CHECK(fabs(f.total / 1e6 - 685) < 1, "stories110M at 256: %.1f MFLOP per token (SPEC §2: ~685)", f.total / 1e6);
    CHECK(f.embedding == 0, "tied: the embedding's FLOPs are the classifier's");

    /* untied: the classifier is its own matrix, counted in params and FLOPs */
    model_config u = c110;
    u.tied = 0;
    report_params pu;
    report_params_of(&u, &pu);
    CHECK(pu.classifier == 24576000 && pu.total == model_num_params(&u) && pu.total == 109529856 + 24576000,
          "untied: classifier %zu, total %zu", pu.classifier, pu.total);
    report_flops fu;
    report_flops_of(&u, 256, &fu);
    CHECK(fabs(fu.total - model_flops_per_token(&u, 256)) < 1, "untied FLOPs sum to flops_per_token");
    CHECK(report_preset_name(&u) == NULL, "an untied stories110M is not the preset");

    /* ---- the end report's record ---- */
    char path[] = "/tmp/fable_test_report_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    for (int async = 0; async <= 1; async++) {
        tele t;
        remove(path);
        CHECK(tele_open(&t, path) == 0, "open %s", path);
        report_run rr;
        report_run_begin(&rr, async, 400.0);
        double ph[ENG_PH_COUNT] = {0};
        ph[ENG_PH_FWD] = 1.0; ph[ENG_PH_RMS] = 0.1; ph[ENG_PH_CLS] = 0.5; ph[ENG_PH_BWD] = 2.0;
        ph[ENG_PH_DW] = 1.5; ph[ENG_PH_OPT] = 0.2; ph[ENG_PH_DW_WAIT] = async ? 0.3 : 0.0;
        /* two updates of 5.8 s (+ data 0.1 each), 8192 tokens, 1e12 FLOPs each */
        report_run_update(&rr, ph, 0.1, async ? 4.4 : 5.6, 8192, 1e12);
        report_run_update(&rr, ph, 0.1, async ? 4.4 : 5.6, 8192, 1e12);
        rr.eval_s = 0.5;
        rr.ckpt_s = 0.25;
        double seconds = async ? 10.0 : 12.5;
        FILE *null = fopen("/dev/null", "w");
        report_end(&rr, seconds, &t, null);
        fclose(null);
        tele_close(&t);
        json_doc d;
        const json_node *o = last_record(&d, path, "report");
        CHECK(o != NULL, "a report record was written");
        if (!o) continue;
        const char *keys[] = {"data", "fwd", "rms", "cls", "bwd", "dw", "dw_wait", "opt", "eval", "ckpt", "sample", "other"};
        double pct = 0, secs = 0;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%s_pct", keys[k]);
            snprintf(b, sizeof b, "%s_s", keys[k]);
            int counted = !strcmp(keys[k], "dw") ? !async : !strcmp(keys[k], "dw_wait") ? async : 1;
            if (counted) { pct += field(&d, o, a); secs += field(&d, o, b); }
            CHECK(fabs(field(&d, o, a) - 100 * field(&d, o, b) / seconds) < 1e-4, "%s: share of its seconds", keys[k]);
        }
        /* counted phases: 2×(0.1 data + 1 + 0.1 + 0.5 + 2 + (async ? 0.3 wait : 1.5 dW) + 0.2) + 0.75 */
        double main_q = 2 * (0.1 + 1.0 + 0.1 + 0.5 + 2.0 + (async ? 0.3 : 1.5) + 0.2) + 0.75;
        CHECK(fabs(field(&d, o, "other_s") - (seconds - main_q)) < 1e-6, "other = wall - phases: %g",
              field(&d, o, "other_s"));
        CHECK(fabs(pct - 100) < 1e-3 && fabs(secs - seconds) < 1e-6, "shares sum to %.5f%%", pct);
        double train_s = async ? 8.8 : 11.2;
        CHECK(fabs(field(&d, o, "gflops") - 2e12 / train_s / 1e9) < 1e-3, "gflops %g", field(&d, o, "gflops"));
        CHECK(fabs(field(&d, o, "mfu_pct") - 100 * (2e12 / train_s / 1e9) / 400) < 1e-3, "mfu");
        CHECK(fabs(field(&d, o, "tokens_per_s") - 16384 / train_s) < 1e-2, "tokens/s");
        CHECK(field(&d, o, "updates") == 2 && field(&d, o, "tokens") == 16384, "updates and tokens");
        if (async) CHECK(fabs(field(&d, o, "dw_overlap_pct") - 100 * (1 - 0.6 / 3.0)) < 1e-4, "overlap 80%%");
        else CHECK(json_get(&d, o, "dw_overlap_pct")->type == JSON_NULL, "no overlap figure when dW runs inline");
        json_free(&d);
    }
    remove(path);
    return t_done("test_report");
}
