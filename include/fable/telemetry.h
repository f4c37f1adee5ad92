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

/* JSON string escaping into out (always NUL-terminated). */
void tele_escape(char *out, size_t cap, const char *s);

#endif
