/* fable — JSON-lines telemetry writer. */
#include "fable/telemetry.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "fable/util.h"

int tele_open(tele *t, const char *path) {
    memset(t, 0, sizeof *t);
    if (!path || !strcmp(path, "-")) {
        t->f = stderr;
        return 0;
    }
    t->f = fopen(path, "a");
    if (!t->f) return fb_errno("%s: cannot open the log file", path);
    t->owned = 1;
    return 0;
}

void tele_close(tele *t) {
    if (t->owned && t->f) fclose(t->f);
    t->f = NULL;
}

static void put(tele *t, const char *fmt, ...) {
    if (t->overflow) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof t->buf - t->len) { t->overflow = 1; return; }
    t->len += (size_t)n;
}

void tele_escape(char *out, size_t cap, const char *s) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 7 < cap; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
        else if (c == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
        else if (c == '\t') { out[o++] = '\\'; out[o++] = 't'; }
        else if (c == '\r') { out[o++] = '\\'; out[o++] = 'r'; }
        else if (c < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        else out[o++] = (char)c;
    }
    out[o] = 0;
}

void tele_begin(tele *t, const char *type) {
    t->len = 0;
    t->overflow = 0;
    put(t, "{\"type\":\"%s\"", type);
}

void tele_int(tele *t, const char *key, long long v) { put(t, ",\"%s\":%lld", key, v); }

void tele_num(tele *t, const char *key, double v) {
    if (!isfinite(v)) put(t, ",\"%s\":null", key);
    else put(t, ",\"%s\":%.7g", key, v); /* 7 digits: a float exactly, a loss to 1e-7 */
}

void tele_str(tele *t, const char *key, const char *v) {
    char esc[4096];
    tele_escape(esc, sizeof esc, v ? v : "");
    put(t, ",\"%s\":\"%s\"", key, esc);
}

void tele_end(tele *t) {
    if (!t->f) return;
    if (t->overflow) {
        fprintf(t->f, "{\"type\":\"error\",\"message\":\"telemetry record too long\"}\n");
    } else {
        put(t, "}\n");
        fwrite(t->buf, 1, t->len, t->f);
    }
    fflush(t->f);
}

/* ---- the records of `fable train` ------------------------------------------------------- */
void tele_step(tele *t, const tele_step_rec *r) {
    tele_begin(t, "step");
    tele_int(t, "step", r->step);
    tele_int(t, "update", r->update);
    tele_num(t, "loss", r->loss);
    tele_num(t, "lr", r->lr);
    tele_int(t, "tokens", r->tokens);
    tele_num(t, "t_data", r->t_data * 1e3);
    tele_num(t, "t_fwd", r->t_fwd * 1e3);
    tele_num(t, "t_bwd", r->t_bwd * 1e3);
    tele_num(t, "t_dw", r->t_dw * 1e3);
    tele_num(t, "t_dw_wait", r->t_dw_wait * 1e3);
    tele_num(t, "t_cls", r->t_cls * 1e3);
    tele_num(t, "t_rms", r->t_rms * 1e3);
    tele_num(t, "ms", r->ms * 1e3);
    tele_end(t);
}

void tele_batch(tele *t, long long update, double loss, double lr, double grad_norm, double t_opt, double t_dw_wait,
                double train_s, int accum, double tokens_per_s, long long tokens, double time_s) {
    tele_begin(t, "batch");
    tele_int(t, "batch", update);
    tele_num(t, "loss", loss);
    tele_num(t, "lr", lr);
    tele_num(t, "grad_norm", grad_norm);
    tele_num(t, "t_opt", t_opt * 1e3);
    tele_num(t, "t_dw_wait", t_dw_wait * 1e3);
    tele_num(t, "train_ms", train_s * 1e3);
    tele_num(t, "ms_per_step", train_s * 1e3 / accum);
    tele_num(t, "tokens_per_s", tokens_per_s);
    tele_int(t, "tokens", tokens);
    tele_num(t, "time_s", time_s);
    tele_end(t);
}

void tele_perf(tele *t, long long update, double gflops, double peak_gflops) {
    tele_begin(t, "perf");
    tele_int(t, "batch", update);
    tele_num(t, "gflops", gflops);
    tele_num(t, "tflops", gflops / 1e3);
    tele_num(t, "mfu_pct", peak_gflops > 0 ? 100.0 * gflops / peak_gflops : 0.0);
    tele_num(t, "peak_gflops", peak_gflops);
    tele_end(t);
}

void tele_eval(tele *t, long long update, double val_loss, int batches, long long tokens, double seconds,
               double time_s) {
    tele_begin(t, "eval");
    tele_int(t, "step", update);
    tele_num(t, "val_loss", val_loss);
    tele_num(t, "val_ppl", exp(val_loss));
    tele_int(t, "batches", batches);
    tele_int(t, "tokens", tokens);
    tele_num(t, "ms", seconds * 1e3);
    tele_num(t, "time_s", time_s);
    tele_end(t);
}

void tele_sample(tele *t, long long update, const char *text, double tok_per_s) {
    tele_begin(t, "sample");
    tele_int(t, "step", update);
    tele_str(t, "text", text);
    tele_num(t, "tok_per_s", tok_per_s);
    tele_end(t);
}

void tele_ckpt(tele *t, long long update, const char *path, long long bytes, double seconds) {
    tele_begin(t, "ckpt");
    tele_int(t, "step", update);
    tele_str(t, "path", path);
    tele_int(t, "bytes", bytes);
    tele_num(t, "ms", seconds * 1e3);
    tele_end(t);
}

void tele_end_run(tele *t, long long update, const char *reason, const char *error, double last_loss,
                  double seconds, const char *checkpoint) {
    tele_begin(t, "end");
    tele_int(t, "step", update);
    tele_str(t, "reason", reason);
    if (error) tele_str(t, "error", error);
    tele_num(t, "last_loss", last_loss);
    tele_num(t, "seconds", seconds);
    tele_str(t, "checkpoint", checkpoint);
    tele_end(t);
}
