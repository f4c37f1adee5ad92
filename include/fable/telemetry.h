/* fable — JSON-lines telemetry: one object per line, flushed at once so that a
 * dashboard or `tail -f` sees each record as it happens. Field-by-field meaning of
 * every record type is documented in docs/telemetry.md.
 *
 *   tele t; tele_open(&t, path_or_NULL_for_stderr);
 *   tele_begin(&t, "step"); tele_int(&t, "step", 3); tele_num(&t, "loss", 4.2); tele_end(&t);
 */
#ifndef FABLE_TELEMETRY_H
#define FABLE_TELEMETRY_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    int owned;
    char buf[8192];
    size_t len;
    int overflow;
} tele;

int tele_open(tele *t, const char *path); /* NULL or "-" = stderr; appends to a file */
void tele_close(tele *t);
void tele_begin(tele *t, const char *type);
void tele_int(tele *t, const char *key, long long v);
void tele_num(tele *t, const char *key, double v);   /* non-finite → null */
void tele_str(tele *t, const char *key, const char *v);
void tele_end(tele *t);

/* ---- the records of `fable train` (fields: docs/telemetry.md); times given in seconds ----
 * time_s: seconds since this process's run began (wall clock, for followers). */
typedef struct {
    long long step, update, tokens;
    double loss, lr;
    double t_data, t_fwd, t_bwd, t_dw, t_dw_wait, t_cls, t_rms, ms;
} tele_step_rec;
void tele_step(tele *t, const tele_step_rec *r);
void tele_batch(tele *t, long long update, double loss, double lr, double grad_norm, double t_opt, double t_dw_wait,
                double train_s, int accum, double tokens_per_s, long long tokens, double time_s);
void tele_perf(tele *t, long long update, double gflops, double peak_gflops);
void tele_eval(tele *t, long long update, double val_loss, int batches, long long tokens, double seconds,
               double time_s);
void tele_sample(tele *t, long long update, const char *text, double tok_per_s);
void tele_ckpt(tele *t, long long update, const char *path, long long bytes, double seconds);
void tele_end_run(tele *t, long long update, const char *reason, const char *error, double last_loss,
                  double seconds, const char *checkpoint);

/* JSON string escaping into out (always NUL-terminated). */
void tele_escape(char *out, size_t cap, const char *s);

#endif
