/* fable dash — JSON lines of `fable train` (docs/telemetry.md) → dash_model.
 *
 * Pure data: no terminal, no clock, no files. The same log always gives the same model, so
 * tests/dash/test_dash.c checks it number by number. Fields the trainer may or may not write
 * (start: preset, recipe, pid, out, log, tokenizer, time_limit; batch/eval: time_s) are used
 * when present and left unknown when absent.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dash/dash.h"
#include "fable/json.h"

const char *const dash_phase_names[DASH_NPH] = {"data", "fwd", "bwd", "dw", "dw_wait", "cls", "rms", "opt"};
static const char *const phase_keys[DASH_NPH] = {"t_data", "t_fwd", "t_bwd", "t_dw", "t_dw_wait", "t_cls", "t_rms", NULL};

void dash_model_init(dash_model *m) {
    memset(m, 0, sizeof *m);
    m->time_s = -1;
    m->best_val = NAN;
    m->val_loss = NAN;
    m->loss = NAN;
    m->pending_update = -1;
}

void dash_model_free(dash_model *m) {
    free(m->train_curve.x);
    free(m->train_curve.y);
    free(m->val_curve.x);
    free(m->val_curve.y);
    free(m->sample);
    memset(m, 0, sizeof *m);
}

void dash_model_log(dash_model *m, dash_log_kind kind, const char *fmt, ...) {
    dash_log_line *l = &m->log[m->n_log % DASH_LOG_MAX];
    l->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text, sizeof l->text, fmt, ap);
    va_end(ap);
    for (char *p = l->text; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    m->n_log++;
}

static void series_push(dash_series *s, double x, double y) {
    /* a resumed run repeats the updates after its checkpoint: drop what it replaces */
    while (s->n && s->x[s->n - 1] >= x) s->n--;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

static void series_cut(dash_series *s, double x) {
    while (s->n && s->x[s->n - 1] > x) s->n--;
}

/* ---- field access ------------------------------------------------------------------------ */
typedef struct {
    const json_doc *d;
    const json_node *o;
} rec;

static int has(rec r, const char *k) {
    const json_node *n = json_get(r.d, r.o, k);
    return n && n->type != JSON_NULL;
}
static double num(rec r, const char *k, double def) {
    const json_node *n = json_get(r.d, r.o, k);
    return n && n->type == JSON_NUMBER ? n->num : def;
}
static long long inum(rec r, const char *k, long long def) { return (long long)llround(num(r, k, (double)def)); }
static void str(rec r, const char *k, char *out, size_t cap) {
    const json_node *n = json_get(r.d, r.o, k);
    if (n && n->type == JSON_STRING) snprintf(out, cap, "%s", n->str);
}
static const char *cstr(rec r, const char *k) {
    const json_node *n = json_get(r.d, r.o, k);
    return n && n->type == JSON_STRING ? n->str : NULL;
}

/* ---- one record type each ------------------------------------------------------------------ */
static void on_start(dash_model *m, rec r) {
    m->have_start = 1;
    m->n_starts++;
    str(r, "engine", m->engine, sizeof m->engine);
    str(r, "precision", m->precision, sizeof m->precision);
    str(r, "device", m->device, sizeof m->device);
    str(r, "preset", m->preset, sizeof m->preset);
    str(r, "recipe", m->recipe, sizeof m->recipe);
    str(r, "schedule", m->schedule, sizeof m->schedule);
    str(r, "out", m->out, sizeof m->out);
    str(r, "log", m->log_path, sizeof m->log_path);
    str(r, "tokenizer", m->tokenizer, sizeof m->tokenizer);
    str(r, "train", m->train, sizeof m->train);
    m->dim = (int)inum(r, "dim", 0);
    m->hidden_dim = (int)inum(r, "hidden_dim", 0);
    m->n_layers = (int)inum(r, "n_layers", 0);
    m->n_heads = (int)inum(r, "n_heads", 0);
    m->n_kv_heads = (int)inum(r, "n_kv_heads", 0);
    m->vocab_size = (int)inum(r, "vocab_size", 0);
    m->seq_len = (int)inum(r, "seq_len", 0);
    m->tied = (int)inum(r, "tied", 1);
    m->threads = (int)inum(r, "threads", 0);
    m->batch = (int)inum(r, "batch", 0);
    m->seq = (int)inum(r, "seq", 0);
    m->accum = (int)inum(r, "accum", 1);
    m->steps = inum(r, "steps", 0);
    m->params = inum(r, "params", 0);
    m->resumed_at = inum(r, "resumed_at", 0);
    m->pid = inum(r, "pid", 0);
    m->peak_gflops = num(r, "peak_gflops", 0);
    m->flops_per_token = num(r, "flops_per_token", 0);
    m->time_limit = num(r, "time_limit", 0);
    /* a new run segment: forget the end of the previous one, and any updates past the
     * checkpoint it resumes from */
    m->ended = 0;
    series_cut(&m->train_curve, (double)m->resumed_at);
    series_cut(&m->val_curve, (double)m->resumed_at);
    if (m->update > m->resumed_at) m->update = m->resumed_at;
    m->pending_update = -1;
    m->n_recent = 0;
    if (m->resumed_at > 0)
        dash_model_log(m, DASH_LOG_INFO, "resumed at update %lld of %lld (%s, %d threads)", m->resumed_at, m->steps,
                       m->engine, m->threads);
    else
        dash_model_log(m, DASH_LOG_INFO, "start: %lld updates of %dx%dx%d on %s %s, %d threads", m->steps, m->batch,
                       m->seq, m->accum, m->engine, m->precision, m->threads);
}

static void on_step(dash_model *m, rec r) {
    long long u = inum(r, "update", -1);
    if (u != m->pending_update) {
        memset(m->pending, 0, sizeof m->pending);
        m->pending_update = u;
    }
    for (int p = 0; p < DASH_NPH; p++)
        if (phase_keys[p]) m->pending[p] += num(r, phase_keys[p], 0);
    if (has(r, "tokens")) m->tokens = inum(r, "tokens", m->tokens);
}

static void on_batch(dash_model *m, rec r) {
    long long u = inum(r, "batch", m->update);
    m->update = u;
    m->loss = num(r, "loss", NAN);
    m->lr = num(r, "lr", m->lr);
    m->grad_norm = num(r, "grad_norm", m->grad_norm);
    m->train_ms = num(r, "train_ms", 0);
    m->ms_per_step = num(r, "ms_per_step", 0);
    m->tokens_per_s = num(r, "tokens_per_s", 0);
    m->tokens = inum(r, "tokens", m->tokens);
    if (has(r, "time_s")) m->time_s = num(r, "time_s", m->time_s);
    m->busy_s += m->train_ms / 1e3;
    m->recent_ms[m->n_recent++ % 32] = m->train_ms;
    if (m->pending_update == u) {
        memcpy(m->phase, m->pending, sizeof m->phase);
        m->phase[DASH_PH_OPT] = num(r, "t_opt", 0);
    }
    if (isfinite(m->loss)) series_push(&m->train_curve, (double)u, m->loss);
}

static void on_perf(dash_model *m, rec r) {
    m->gflops = num(r, "gflops", 0);
    m->mfu_pct = num(r, "mfu_pct", 0);
    if (has(r, "peak_gflops")) m->peak_gflops = num(r, "peak_gflops", 0);
}

static void on_eval(dash_model *m, rec r) {
    long long u = inum(r, "step", m->update);
    double vl = num(r, "val_loss", NAN);
    m->val_loss = vl;
    m->val_step = u;
    m->n_evals++;
    m->busy_s += num(r, "ms", 0) / 1e3;
    if (has(r, "time_s")) m->time_s = num(r, "time_s", m->time_s);
    if (isfinite(vl)) {
        series_push(&m->val_curve, (double)u, vl);
        if (!(vl >= m->best_val)) { /* also when best_val is NaN */
            m->best_val = vl;
            m->best_val_step = u;
        }
    }
    dash_model_log(m, DASH_LOG_EVAL, "update %lld: val loss %.4f, ppl %.2f%s", u, vl, exp(vl),
                   m->best_val_step == u && isfinite(vl) ? " (best)" : "");
}

static void on_sample(dash_model *m, rec r) {
    const char *t = cstr(r, "text");
    if (!t) return;
    free(m->sample);
    m->sample = strdup(t);
    m->sample_step = inum(r, "step", m->update);
    m->sample_tps = num(r, "tok_per_s", 0);
    m->sample_by_dash = 0;
    if (has(r, "time_s")) m->time_s = num(r, "time_s", m->time_s);
    dash_model_log(m, DASH_LOG_SAMPLE, "update %lld: sample, %.0f tok/s", m->sample_step, m->sample_tps);
}

static void on_ckpt(dash_model *m, rec r) {
    str(r, "path", m->last_ckpt, sizeof m->last_ckpt);
    m->last_ckpt_step = inum(r, "step", m->update);
    m->n_ckpts++;
    m->busy_s += num(r, "ms", 0) / 1e3;
    dash_model_log(m, DASH_LOG_CKPT, "update %lld: checkpoint %s (%.1f MB, %.0f ms)", m->last_ckpt_step, m->last_ckpt,
                   num(r, "bytes", 0) / 1e6, num(r, "ms", 0));
}

static void on_end(dash_model *m, rec r) {
    m->ended = 1;
    str(r, "reason", m->end_reason, sizeof m->end_reason);
    m->end_error[0] = 0;
    str(r, "error", m->end_error, sizeof m->end_error);
    m->end_ckpt[0] = 0;
    str(r, "checkpoint", m->end_ckpt, sizeof m->end_ckpt);
    m->end_step = inum(r, "step", m->update);
    m->end_loss = num(r, "last_loss", NAN);
    m->end_seconds = num(r, "seconds", 0);
    if (!strcmp(m->end_reason, "error"))
        dash_model_log(m, DASH_LOG_ERROR, "stopped at update %lld: %s", m->end_step, m->end_error);
    else
        dash_model_log(m, DASH_LOG_END, "end (%s) at update %lld: loss %.4f, %.1f s", m->end_reason, m->end_step,
                       m->end_loss, m->end_seconds);
}

int dash_model_line(dash_model *m, const char *line, size_t len) {
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i == len) return 0;
    if (line[i] != '{') { /* e.g. a trainer's error message, when the log is its stderr */
        m->n_bad++;
        char buf[DASH_LOG_LEN];
        size_t n = len - i < sizeof buf - 1 ? len - i : sizeof buf - 1;
        memcpy(buf, line + i, n);
        buf[n] = 0;
        int err = strstr(buf, "error") || strstr(buf, "fable train:") || strstr(buf, "cannot");
        dash_model_log(m, err ? DASH_LOG_ERROR : DASH_LOG_WARN, "%s", buf);
        return 1;
    }
    json_doc d;
    if (json_parse(&d, line + i, len - i, "log") || json_root(&d)->type != JSON_OBJECT) {
        if (d.nodes) json_free(&d);
        m->n_bad++;
        dash_model_log(m, DASH_LOG_WARN, "unreadable log line (%zu bytes)", len);
        return 1;
    }
    rec r = {&d, json_root(&d)};
    const char *type = cstr(r, "type");
    m->n_records++;
    if (!type) m->n_bad++;
    else if (!strcmp(type, "step")) on_step(m, r);
    else if (!strcmp(type, "batch")) on_batch(m, r);
    else if (!strcmp(type, "perf")) on_perf(m, r);
    else if (!strcmp(type, "eval")) on_eval(m, r);
    else if (!strcmp(type, "sample")) on_sample(m, r);
    else if (!strcmp(type, "ckpt")) on_ckpt(m, r);
    else if (!strcmp(type, "end")) on_end(m, r);
    else if (!strcmp(type, "start")) on_start(m, r);
    else if (!strcmp(type, "error")) dash_model_log(m, DASH_LOG_ERROR, "trainer: %s", cstr(r, "message") ? cstr(r, "message") : "error");
    else if (!strcmp(type, "warning")) dash_model_log(m, DASH_LOG_WARN, "trainer: %s", cstr(r, "message") ? cstr(r, "message") : "warning");
    /* other types (a newer trainer's) are counted and otherwise ignored */
    json_free(&d);
    return 1;
}

size_t dash_model_feed(dash_model *m, const char *buf, size_t len) {
    size_t done = 0;
    for (;;) {
        const char *nl = memchr(buf + done, '\n', len - done);
        if (!nl) break;
        dash_model_line(m, buf + done, (size_t)(nl - (buf + done)));
        done = (size_t)(nl - buf) + 1;
    }
    return done;
}

double dash_model_elapsed(const dash_model *m) {
    if (m->ended && m->end_seconds > 0) return m->end_seconds;
    if (m->time_s >= 0) return m->time_s;
    return m->busy_s;
}

double dash_model_eta(const dash_model *m) {
    if (m->ended || m->steps <= 0 || m->n_recent == 0) return m->ended ? 0 : -1;
    int n = m->n_recent < 32 ? m->n_recent : 32;
    double s = 0;
    for (int i = 0; i < n; i++) s += m->recent_ms[i];
    long long left = m->steps - m->update;
    return left > 0 ? (double)left * s / n / 1e3 : 0;
}
