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
    else put(t, ",\"%s\":%.6g", key, v);
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
