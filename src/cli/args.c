/* fable CLI option parser (see cli.h). */
#include "cli/cli.h"
#include "fable/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

void cli_args_init(cli_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->argc = argc < 256 ? argc : 256;
    a->argv = argv;
    a->cmd = argc > 0 ? argv[0] : "?";
    if (argc > 0) a->used[0] = 1;
}

/* Index of option `name` (exact "--name" or "--name=..."), -1 if absent. */
static int find_opt(const cli_args *a, const char *name, const char **inline_val) {
    size_t n = strlen(name);
    for (int i = 1; i < a->argc; i++) {
        const char *s = a->argv[i];
        if (strncmp(s, name, n) == 0) {
            if (s[n] == 0) { *inline_val = NULL; return i; }
            if (s[n] == '=') { *inline_val = s + n + 1; return i; }
        }
    }
    return -1;
}

int cli_has(const cli_args *a, const char *name) {
    const char *v;
    return find_opt(a, name, &v) >= 0;
}

const char *cli_str(cli_args *a, const char *name, const char *def) {
    const char *v = NULL;
    int i = find_opt(a, name, &v);
    if (i < 0) return def;
    a->used[i] = 1;
    if (v) return v;
    if (i + 1 >= a->argc) {
        fprintf(stderr, "fable %s: option %s needs a value\n", a->cmd, name);
        exit(2);
    }
    a->used[i + 1] = 1;
    return a->argv[i + 1];
}

long cli_int(cli_args *a, const char *name, long def) {
    const char *s = cli_str(a, name, NULL);
    if (!s) return def;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0) {
        fprintf(stderr, "fable %s: option %s expects an integer, got '%s'\n", a->cmd, name, s);
        exit(2);
    }
    return v;
}

double cli_float(cli_args *a, const char *name, double def) {
    const char *s = cli_str(a, name, NULL);
    if (!s) return def;
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end != 0) {
        fprintf(stderr, "fable %s: option %s expects a number, got '%s'\n", a->cmd, name, s);
        exit(2);
    }
    return v;
}

int cli_flag(cli_args *a, const char *name) {
    for (int i = 1; i < a->argc; i++)
        if (strcmp(a->argv[i], name) == 0) { a->used[i] = 1; return 1; }
    return 0;
}

int cli_multi(cli_args *a, const char *name, const char **out, int max) {
    int n = 0;
    for (int i = 1; i < a->argc; i++) {
        const char *s = a->argv[i];
        size_t len = strlen(name);
        if (strncmp(s, name, len) != 0) continue;
        if (s[len] == '=') {
            a->used[i] = 1;
            if (n < max) out[n++] = s + len + 1;
        } else if (s[len] == 0) {
            a->used[i] = 1;
            int j = i + 1;
            for (; j < a->argc && strncmp(a->argv[j], "--", 2) != 0; j++) {
                a->used[j] = 1;
                if (n < max) out[n++] = a->argv[j];
            }
            i = j - 1;
        }
    }
    return n;
}

int cli_positional(cli_args *a, const char **out, int max) {
    int n = 0;
    for (int i = 1; i < a->argc; i++) {
        if (a->used[i] || strncmp(a->argv[i], "--", 2) == 0) continue;
        a->used[i] = 1;
        if (n < max) out[n++] = a->argv[i];
    }
    return n;
}

int cli_finish(cli_args *a) {
    for (int i = 1; i < a->argc; i++) {
        if (!a->used[i]) {
            fprintf(stderr, "fable %s: unknown or misplaced argument '%s' (see `fable %s --help`)\n",
                    a->cmd, a->argv[i], a->cmd);
            return -1;
        }
    }
    return 0;
}

int cli_fail(const cli_args *a, const char *fmt, ...) {
    fprintf(stderr, "fable %s: ", a ? a->cmd : "");
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    } else {
        fputs(fb_errmsg(), stderr);
    }
    fputc('\n', stderr);
    return 1;
}

int cli_engine(cli_args *a, const char **name, void *out) {
    eng_opts *o = out;
    *name = cli_str(a, "--engine", eng_default_name());
    o->threads = (int)cli_int(a, "--threads", 0);
    o->device = (int)cli_int(a, "--device", 0);
    o->precision = -1;
    const char *p = cli_str(a, "--precision", getenv("FABLE_PRECISION"));
    if (p && eng_precision_parse(p, &o->precision)) {
        cli_fail(a, NULL);
        return -1;
    }
    return 0;
}
