/* fable dash without a terminal: a real log (tests/dash/fixture_train.jsonl, from a 60-update
 * stories260K run of `fable train`) → the panel state, number by number (the expected values
 * were read off the fixture's records, not computed by the dashboard's code); then frames at
 * 80×24 and 120×40 against golden text (FABLE_UPDATE_GOLDEN=1 rewrites them); then the
 * records' optional fields, resumes, junk lines, and the trainer's command line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dash/dash.h"
#include "testlib.h"

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-6 * (1 + fabs(b)))

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static void feed_str(dash_model *m, const char *s) { dash_model_feed(m, s, strlen(s)); }

static void test_fixture(dash_model *m) {
    size_t len;
    char *log = slurp("tests/dash/fixture_train.jsonl", &len);
    CHECK(log != NULL, "cannot read tests/dash/fixture_train.jsonl (run from the repository root)");
    if (!log) return;
    /* fed in ragged pieces, as a growing file is read: the result must not depend on it */
    size_t done = 0, have = 0;
    while (have < len) {
        size_t step = 777 + have % 1000;
        have = have + step < len ? have + step : len;
        done += dash_model_feed(m, log + done, have - done);
    }
    CHECK(done == len, "consumed %zu of %zu bytes", done, len);
    free(log);
    CHECK(m->n_records == 369 && m->n_bad == 0, "records %lld, bad %lld", m->n_records, m->n_bad);
    /* start */
    CHECK(m->have_start && !strcmp(m->engine, "cpu") && !strcmp(m->precision, "fp32") && m->threads == 2, "engine");
    CHECK(m->dim == 64 && m->hidden_dim == 172 && m->n_layers == 5 && m->n_heads == 8 && m->n_kv_heads == 4 &&
              m->vocab_size == 512 && m->seq_len == 512 && m->params == 260032,
          "shape");
    CHECK(m->batch == 8 && m->seq == 128 && m->accum == 4 && m->steps == 60, "batch shape");
    CHECK(m->preset[0] == 0 && m->pid == 0 && m->time_s < 0, "today's start record has no preset, pid or time_s");
    /* the last batch and perf records */
    CHECK(m->update == 60, "update %lld", m->update);
    CHECK(NEAR(m->loss, 4.720765), "loss %g", m->loss);
    CHECK(m->lr == 0, "lr %g", m->lr);
    CHECK(NEAR(m->grad_norm, 0.4274617), "grad norm %g", m->grad_norm);
    CHECK(NEAR(m->train_ms, 831.5042), "train_ms %g", m->train_ms);
    CHECK(NEAR(m->tokens_per_s, 4926.012), "tokens/s %g", m->tokens_per_s);
    CHECK(m->tokens == 245760, "tokens %lld", m->tokens);
    CHECK(NEAR(m->gflops, 10.08595) && NEAR(m->mfu_pct, 12.28918), "gflops %g mfu %g", m->gflops, m->mfu_pct);
    /* phases of update 60: the sums of its four step records' t_*, and the batch's t_opt */
    CHECK(NEAR(m->phase[DASH_PH_FWD], 125.4789 + 45.3682 + 3.242026 + 138.5457), "fwd %g", m->phase[DASH_PH_FWD]);
    CHECK(NEAR(m->phase[DASH_PH_BWD], 127.5652 + 113.3757 + 55.93275 + 24.0558), "bwd %g", m->phase[DASH_PH_BWD]);
    CHECK(NEAR(m->phase[DASH_PH_DW], 97.6589 + 48.20127 + 1.747223 + 1.756998), "dw %g", m->phase[DASH_PH_DW]);
    CHECK(NEAR(m->phase[DASH_PH_CLS], 0.963296 + 0.935854 + 21.00625 + 1.06538), "cls %g", m->phase[DASH_PH_CLS]);
    CHECK(NEAR(m->phase[DASH_PH_RMS], 0.039605 + 0.065314 + 0.046248 + 0.063871), "rms %g", m->phase[DASH_PH_RMS]);
    CHECK(NEAR(m->phase[DASH_PH_DATA], 0.008857 + 0.012454 + 0.016492 + 0.003186), "data %g", m->phase[DASH_PH_DATA]);
    CHECK(m->phase[DASH_PH_DW_WAIT] == 0 && NEAR(m->phase[DASH_PH_OPT], 0.212593), "opt %g", m->phase[DASH_PH_OPT]);
    /* evaluations: 5.0022 @20, 4.815008 @40, 4.745054 @60 */
    CHECK(m->n_evals == 3 && NEAR(m->best_val, 4.745054) && m->best_val_step == 60, "best val %g @ %lld", m->best_val,
          m->best_val_step);
    CHECK(m->val_curve.n == 3 && m->val_curve.x[0] == 20 && NEAR(m->val_curve.y[0], 5.0022) && m->val_curve.x[2] == 60,
          "val curve");
    CHECK(m->train_curve.n == 60 && m->train_curve.x[0] == 1 && NEAR(m->train_curve.y[0], 6.250326) &&
              m->train_curve.x[59] == 60 && NEAR(m->train_curve.y[59], 4.720765),
          "train curve: %zu points", m->train_curve.n);
    /* samples and checkpoints */
    CHECK(m->sample && m->sample_step == 60 && !strncmp(m->sample, ". waslt b haoty\n They", 21) && NEAR(m->sample_tps, 674.1375),
          "sample");
    CHECK(m->n_ckpts == 2 && m->last_ckpt_step == 60 && !strcmp(m->last_ckpt, "/tmp/fx/ckpt_00000060.bin"), "ckpt");
    /* the end */
    CHECK(m->ended && !strcmp(m->end_reason, "done") && m->end_step == 60 && NEAR(m->end_loss, 4.720765) &&
              NEAR(m->end_seconds, 209.3999) && !strcmp(m->end_ckpt, "/tmp/fx/ckpt_00000060.bin"),
          "end record");
    CHECK(NEAR(dash_model_elapsed(m), 209.3999) && dash_model_eta(m) == 0, "elapsed %g", dash_model_elapsed(m));
    /* the log: start, 3 evals, 2 samples, 2 checkpoints, the end */
    CHECK(m->n_log == 9, "log lines %lld", m->n_log);
    int kinds[8] = {0};
    for (long long i = 0; i < m->n_log; i++) kinds[m->log[i].kind]++;
    CHECK(kinds[DASH_LOG_INFO] == 1 && kinds[DASH_LOG_EVAL] == 3 && kinds[DASH_LOG_SAMPLE] == 2 &&
              kinds[DASH_LOG_CKPT] == 2 && kinds[DASH_LOG_END] == 1,
          "log kinds");
    CHECK(strstr(m->log[1].text, "val loss 5.0022") != NULL, "eval line: %s", m->log[1].text);
}

/* Frames: golden text, and the numbers on them are the model's. */
static void test_render(const dash_model *m) {
    dash_sys sys;
    dash_sys_init(&sys, 1, 0);
    dash_sys_sample(&sys, 0);
    dash_view v = {.window = 200, .log_top = -1, .mode = "replay"};
    const int sizes[2][2] = {{80, 24}, {120, 40}};
    for (int k = 0; k < 2; k++) {
        dash_screen s;
        CHECK(dash_screen_init(&s, sizes[k][0], sizes[k][1]) == 0, "screen");
        dash_render(&s, m, &sys, &v);
        char *t = dash_screen_text(&s);
        char path[128];
        snprintf(path, sizeof path, "tests/dash/golden_%dx%d.txt", sizes[k][0], sizes[k][1]);
        if (getenv("FABLE_UPDATE_GOLDEN")) {
            FILE *f = fopen(path, "wb");
            if (f) { fputs(t, f); fclose(f); }
        }
        char *g = slurp(path, NULL);
        CHECK(g && !strcmp(g, t), "%s differs from the frame:\n%s", path, t);
        /* independent of the golden: what the panels must say */
        CHECK(strstr(t, "stories260K") && strstr(t, "260,032 params"), "header");
        CHECK(strstr(t, "60 / 60 (100%)"), "update");
        CHECK(strstr(t, "4.7208"), "loss");
        CHECK(strstr(t, "4.7451 @ 60"), "best val");
        CHECK(strstr(t, "4,926"), "tokens/s");
        CHECK(strstr(t, "10.1  MFU 12.3%"), "GFLOP/s, MFU");
        CHECK(strstr(t, "831.5"), "ms per update");
        CHECK(strstr(t, "245.8K"), "tokens seen");
        CHECK(strstr(t, "3m29s"), "elapsed");
        CHECK(strstr(t, "training finished (done) · update 60/60"), "finished state");
        CHECK(strstr(t, "power: off (--no-power)"), "power");
        CHECK(strstr(t, ". waslt b haoty"), "sample text");
        int braille = 0;
        for (int i = 0; i < s.w * s.h; i++) braille += s.c[i].ch >= 0x2801 && s.c[i].ch <= 0x28FF;
        CHECK(braille > 20, "braille cells %d", braille);
        /* every row is exactly the width: nothing drawn off the grid, nothing wider than a cell */
        free(g);
        free(t);
        dash_screen_free(&s);
    }
    /* log scale and last N change the curve, not the numbers */
    dash_screen a, b;
    dash_screen_init(&a, 80, 24);
    dash_screen_init(&b, 80, 24);
    dash_render(&a, m, &sys, &v);
    dash_view vl = v;
    vl.log_scale = 1;
    vl.last_n = 1;
    vl.window = 10;
    dash_render(&b, m, &sys, &vl);
    char *ta = dash_screen_text(&a), *tb = dash_screen_text(&b);
    CHECK(strcmp(ta, tb) != 0 && strstr(tb, "log · last 10") && strstr(tb, "4.7451 @ 60"), "log scale / last N");
    free(ta);
    free(tb);
    dash_screen_free(&a);
    dash_screen_free(&b);
    /* too small */
    dash_screen s;
    dash_screen_init(&s, 79, 24);
    dash_render(&s, m, &sys, &v);
    char *t = dash_screen_text(&s);
    CHECK(strstr(t, "terminal too small") && strstr(t, "79x24, need 80x24"), "too small:\n%s", t);
    free(t);
    dash_screen_free(&s);
    dash_sys_free(&sys);
}

/* Fields that newer trainers add, resumes, and lines that are not records. */
static void test_records(void) {
    dash_model m;
    dash_model_init(&m);
    feed_str(&m, "{\"type\":\"start\",\"engine\":\"cpu\",\"precision\":\"fp32\",\"threads\":2,\"dim\":64,\"steps\":100,"
                 "\"preset\":\"mine\",\"recipe\":\"ane\",\"pid\":4242,\"out\":\"runs/a\",\"tokenizer\":\"t.bin\",\"resumed_at\":0}\n");
    CHECK(!strcmp(m.preset, "mine") && !strcmp(m.recipe, "ane") && m.pid == 4242 && !strcmp(m.out, "runs/a") &&
              !strcmp(m.tokenizer, "t.bin"),
          "new start fields");
    char line[256];
    for (int u = 1; u <= 10; u++) {
        snprintf(line, sizeof line,
                 "{\"type\":\"batch\",\"batch\":%d,\"loss\":%g,\"train_ms\":100,\"tokens\":%d,\"time_s\":%g}\n", u,
                 5.0 - 0.1 * u, u * 1000, 0.5 + 0.1 * u);
        feed_str(&m, line);
    }
    CHECK(NEAR(dash_model_elapsed(&m), 1.5), "elapsed from time_s: %g", dash_model_elapsed(&m));
    CHECK(NEAR(dash_model_eta(&m), 90 * 0.1), "eta %g", dash_model_eta(&m));
    feed_str(&m, "{\"type\":\"eval\",\"step\":10,\"val_loss\":4.5,\"ms\":10,\"time_s\":2.5}\n");
    CHECK(NEAR(dash_model_elapsed(&m), 2.5), "elapsed from eval's time_s");
    feed_str(&m, "{\"type\":\"end\",\"step\":10,\"reason\":\"signal\",\"last_loss\":4,\"seconds\":3,\"checkpoint\":\"c\"}\n");
    CHECK(m.ended, "ended");
    /* a resume from update 5: updates 6..10 are redone; the curve must not hold them twice */
    feed_str(&m, "{\"type\":\"start\",\"engine\":\"cpu\",\"steps\":100,\"resumed_at\":5}\n");
    CHECK(!m.ended && m.n_starts == 2 && m.train_curve.n == 5 && m.val_curve.n == 0 && m.update == 5,
          "resume: ended %d, curve %zu, update %lld", m.ended, m.train_curve.n, m.update);
    feed_str(&m, "{\"type\":\"batch\",\"batch\":6,\"loss\":4.2,\"train_ms\":100}\n");
    CHECK(m.train_curve.n == 6 && m.train_curve.x[5] == 6 && NEAR(m.train_curve.y[5], 4.2), "after resume");
    /* junk: an error message from the trainer's stderr, a broken record, a half line */
    long long n_log = m.n_log;
    feed_str(&m, "fable train: loss became NaN at update 7\n{\"type\":\"batch\",\"batch\":\n");
    CHECK(m.n_log == n_log + 2 && m.log[n_log % DASH_LOG_MAX].kind == DASH_LOG_ERROR && m.n_bad == 2, "junk lines");
    const char *half = "{\"type\":\"batch\",\"batch\":7,\"loss\":4.1,\"train_ms\":100}";
    CHECK(dash_model_feed(&m, half, strlen(half)) == 0 && m.update == 6, "a line without its newline waits");
    CHECK(dash_model_line(&m, half, strlen(half)) == 1 && m.update == 7, "then it is read");
    /* the log ring keeps the newest lines */
    for (int i = 0; i < DASH_LOG_MAX + 5; i++) dash_model_log(&m, DASH_LOG_INFO, "line %d", i);
    CHECK(!strcmp(m.log[(m.n_log - 1) % DASH_LOG_MAX].text, "line 1028"), "ring");
    dash_model_free(&m);
}

static void test_trainer_args(void) {
    dash_trainer t;
    char *a1[] = {"train", "--preset", "stories260K", "--out", "runs/x", "--steps", "5"};
    CHECK(dash_trainer_init(&t, "/bin/fable", 7, a1, NULL) == 0, "init");
    CHECK(!strcmp(t.out, "runs/x") && !strcmp(t.log, "runs/x/train.jsonl"), "out %s log %s", t.out, t.log);
    CHECK(t.argc == 10 && !strcmp(t.argv[0], "/bin/fable") && !strcmp(t.argv[1], "train") &&
              !strcmp(t.argv[8], "--log") && !strcmp(t.argv[9], "runs/x/train.jsonl"),
          "argv");
    dash_trainer_free(&t);
    char *a2[] = {"train", "--preset", "stories260K", "--log=my.jsonl"};
    CHECK(dash_trainer_init(&t, "/bin/fable", 4, a2, NULL) == 0 && !strcmp(t.log, "my.jsonl") && t.argc == 5 &&
              !strcmp(t.out, "out"),
          "the user's --log is kept, not added twice");
    dash_trainer_free(&t);
    CHECK(dash_trainer_init(&t, "/bin/fable", 4, a2, "other.jsonl") != 0, "conflicting --log is an error");
    dash_trainer_free(&t);
    dash_hist h = {0};
    for (int i = 0; i < DASH_HIST + 3; i++) dash_hist_push(&h, (float)i);
    CHECK(h.n == DASH_HIST && dash_hist_at(&h, 0) == 3 && dash_hist_at(&h, DASH_HIST - 1) == DASH_HIST + 2, "hist ring");
}

int main(void) {
    dash_model m;
    dash_model_init(&m);
    test_fixture(&m);
    test_render(&m);
    dash_model_free(&m);
    test_records();
    test_trainer_args();
    return t_done("test_dash");
}
