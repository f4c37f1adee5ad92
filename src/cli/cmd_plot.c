/* fable plot — loss curves of `fable train` logs as a standalone SVG: the training loss of
 * every update ("batch" records) and the validation loss of every evaluation ("eval"
 * records), several runs overlaid, against updates, tokens or wall time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/json.h"
#include "fable/svg.h"
#include "fable/util.h"

static const char *usage =
    "usage: fable plot LOG.jsonl... --out FILE.svg [options]\n"
    "  LOG.jsonl          `fable train` telemetry (default OUT/train.jsonl); several are overlaid\n"
    "  --out FILE.svg     the chart, a standalone SVG (convert with e.g. rsvg-convert for PNG)\n"
    "  --labels A,B,...   one legend label per log (default: the run folder's name)\n"
    "  --title T          chart title\n"
    "  --x update|tokens|time   horizontal axis (default update; time is wall time, needs time_s)\n"
    "  --log-scale        logarithmic loss axis\n"
    "  --no-val           training loss only\n"
    "  --width W --height H     pixels (default 800 x 450)\n";

/* One point of a curve, with every x it can be drawn against. */
typedef struct { double update, tokens, time, loss; } point;
typedef struct { point *p; size_t n, cap; } curve;

typedef struct {
    const char *path;
    char label[256];
    char preset[64];
    long long batch, seq, accum, params;
    curve train, val;
    int starts;
} run_log;

static int push(curve *c, point p) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        point *q = realloc(c->p, cap * sizeof *q);
        if (!q) return fb_err("out of memory reading a log");
        c->p = q;
        c->cap = cap;
    }
    c->p[c->n++] = p;
    return 0;
}

static double num(const json_doc *d, const json_node *o, const char *key) {
    const json_node *v = json_get(d, o, key);
    return v && v->type == JSON_NUMBER ? v->num : NAN;
}

/* A resumed run restarts at update R: what the log holds past R was redone (or lost, after a
 * crash) and is replaced by the new records; wall time continues from the point at R. */
static double resume_at(run_log *r, double R) {
    while (r->train.n && r->train.p[r->train.n - 1].update > R) r->train.n--;
    while (r->val.n && r->val.p[r->val.n - 1].update > R) r->val.n--;
    return r->train.n ? r->train.p[r->train.n - 1].time : 0.0;
}

static void default_label(run_log *r) {
    /* OUT/train.jsonl → OUT's name; else the file's name without .jsonl */
    const char *p = r->path, *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    if (!strcmp(base, "train.jsonl") && slash && slash > p) {
        const char *q = slash;
        while (q > p && q[-1] != '/') q--;
        snprintf(r->label, sizeof r->label, "%.*s", (int)(slash - q), q);
        return;
    }
    snprintf(r->label, sizeof r->label, "%s", base);
    size_t n = strlen(r->label);
    if (n > 6 && !strcmp(r->label + n - 6, ".jsonl")) r->label[n - 6] = 0;
}

static int read_log(run_log *r) {
    FILE *f = fopen(r->path, "r");
    if (!f) return fb_errno("%s: cannot open the log", r->path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    double t_off = 0;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        int complete = len > 0 && line[len - 1] == '\n';
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        /* fable's records that no curve needs: skipped unparsed (a log holds one per micro-step) */
        static const char *const skip[] = {"{\"type\":\"step\"", "{\"type\":\"perf\"", "{\"type\":\"sample\"",
                                           "{\"type\":\"ckpt\"", "{\"type\":\"report\"", "{\"type\":\"end\""};
        int skipped = 0;
        for (size_t k = 0; k < sizeof skip / sizeof skip[0] && !skipped; k++)
            skipped = !strncmp(line, skip[k], strlen(skip[k]));
        if (skipped) continue;
        json_doc d;
        char where[4200];
        snprintf(where, sizeof where, "%s:%ld", r->path, lineno);
        if (json_parse(&d, line, (size_t)len, where)) { /* the message names the file and line */
            if (!complete) break; /* a live run's half-written last line: not an error */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", fb_errmsg());
            rc = fb_err("%s (is this a `fable train` log?)", msg);
            break;
        }
        const json_node *o = json_root(&d);
        const json_node *tn = json_get(&d, o, "type");
        if (!tn || tn->type != JSON_STRING) {
            json_free(&d);
            rc = fb_err("%s: not a telemetry record (no \"type\"): is this a `fable train` log?", where);
            break;
        }
        const char *type = tn->str;
        if (!strcmp(type, "start")) {
            double R = num(&d, o, "resumed_at");
            t_off = resume_at(r, isfinite(R) ? R : 0);
            r->starts++;
            const json_node *ps = json_get(&d, o, "preset");
            if (ps && ps->type == JSON_STRING) snprintf(r->preset, sizeof r->preset, "%s", ps->str);
            r->batch = (long long)num(&d, o, "batch");
            r->seq = (long long)num(&d, o, "seq");
            r->accum = (long long)num(&d, o, "accum");
            r->params = (long long)num(&d, o, "params");
        } else if (!strcmp(type, "batch")) {
            point p = {num(&d, o, "batch"), num(&d, o, "tokens"), t_off + num(&d, o, "time_s"), num(&d, o, "loss")};
            if (isfinite(p.update)) rc = push(&r->train, p);
        } else if (!strcmp(type, "eval")) {
            point p = {num(&d, o, "step"), NAN, t_off + num(&d, o, "time_s"), num(&d, o, "val_loss")};
            /* the training tokens at that update: from its batch record */
            for (size_t k = r->train.n; k-- > 0;)
                if (r->train.p[k].update == p.update) { p.tokens = r->train.p[k].tokens; break; }
            if (isfinite(p.update)) rc = push(&r->val, p);
        }
        json_free(&d);
    }
    free(line);
    if (!rc && ferror(f)) rc = fb_errno("%s: read error", r->path);
    fclose(f);
    if (!rc && r->train.n == 0)
        rc = fb_err("%s: no training records (\"type\":\"batch\") in %ld lines: is this a `fable train` log?", r->path,
                    lineno);
    return rc;
}

/* x of a point on the chosen axis: 0 update, 1 tokens, 2 time (scaled to the axis unit). */
static double xof(const point *p, int axis, double tscale) {
    return axis == 0 ? p->update : axis == 1 ? p->tokens : p->time / tscale;
}

/* At most `max` points: means of consecutive buckets (a 20-minute run has thousands). */
static size_t thin(const curve *c, int axis, double tscale, size_t max, double *x, double *y) {
    size_t per = c->n > max ? (c->n + max - 1) / max : 1, m = 0;
    for (size_t i = 0; i < c->n; i += per) {
        size_t e = i + per < c->n ? i + per : c->n;
        double sx = 0, sy = 0;
        for (size_t k = i; k < e; k++) { sx += xof(&c->p[k], axis, tscale); sy += c->p[k].loss; }
        x[m] = sx / (double)(e - i);
        y[m] = sy / (double)(e - i);
        m++;
    }
    return m;
}

int cmd_plot(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    const char *out = cli_str(&a, "--out", NULL);
    const char *labels = cli_str(&a, "--labels", NULL);
    const char *title = cli_str(&a, "--title", NULL);
    const char *xs = cli_str(&a, "--x", "update");
    int log_y = cli_flag(&a, "--log-scale");
    int no_val = cli_flag(&a, "--no-val");
    int width = (int)cli_int(&a, "--width", 800), height = (int)cli_int(&a, "--height", 450);
    const char *paths[64];
    int nr = cli_positional(&a, paths, 64);
    if (cli_finish(&a)) return 2;
    if (nr == 0) { fputs(usage, stderr); return cli_fail(&a, "give at least one log (a `fable train` JSON-lines file)"); }
    if (!out) return cli_fail(&a, "--out FILE.svg is required");
    size_t ol = strlen(out);
    if (ol < 4 || strcmp(out + ol - 4, ".svg"))
        return cli_fail(&a, "--out %s: fable plot writes SVG; name the file .svg (rsvg-convert makes a PNG of it)", out);
    int axis = !strcmp(xs, "update") ? 0 : !strcmp(xs, "tokens") ? 1 : !strcmp(xs, "time") ? 2 : -1;
    if (axis < 0) return cli_fail(&a, "--x must be update, tokens or time, not '%s'", xs);
    if (width < 200 || height < 150 || width > 10000 || height > 10000)
        return cli_fail(&a, "--width and --height must be 200..10000 and 150..10000 pixels");

    run_log *runs = calloc((size_t)nr, sizeof *runs);
    if (!runs) return cli_fail(&a, "out of memory");
    int rc = 0;
    for (int i = 0; i < nr && !rc; i++) {
        runs[i].path = paths[i];
        default_label(&runs[i]);
        rc = read_log(&runs[i]);
    }
    if (!rc && labels) { /* A,B,C: one per log */
        int k = 0;
        for (const char *p = labels;; k++) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            if (k < nr) snprintf(runs[k].label, sizeof runs[k].label, "%.*s", (int)n, p);
            if (!c) break;
            p = c + 1;
        }
        if (k + 1 != nr) rc = fb_err("--labels has %d label%s for %d logs", k + 1, k ? "s" : "", nr);
    }
    /* wall time in the unit that keeps the numbers short */
    double tmax = 0, tscale = 1;
    const char *xlabel = axis == 0 ? "update" : axis == 1 ? "tokens" : "time (s)";
    for (int i = 0; i < nr && !rc; i++)
        for (size_t k = 0; k < runs[i].train.n; k++) {
            const point *p = &runs[i].train.p[k];
            double v = axis == 1 ? p->tokens : axis == 2 ? p->time : p->update;
            if (!isfinite(v)) {
                rc = fb_err("%s: update %.0f has no %s (a log written before fable recorded it): use --x update",
                            runs[i].path, p->update, axis == 1 ? "tokens" : "time_s");
                break;
            }
            if (p->time > tmax) tmax = p->time;
        }
    if (axis == 2 && tmax > 3 * 3600) { tscale = 3600; xlabel = "time (hours)"; }
    else if (axis == 2 && tmax > 600) { tscale = 60; xlabel = "time (minutes)"; }

    static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    svg_series *ser = calloc(2 * (size_t)nr, sizeof *ser);
    double **bufs = calloc(4 * (size_t)nr, sizeof *bufs);
    char (*names)[300] = calloc(2 * (size_t)nr, sizeof *names);
    int ns = 0;
    size_t ntrain = 0, nval = 0;
    if (!ser || !bufs || !names) rc = rc ? rc : fb_err("out of memory");
    for (int i = 0; i < nr && !rc; i++) {
        const run_log *r = &runs[i];
        for (int c = 0; c < 2; c++) {
            const curve *cv = c == 0 ? &r->train : &r->val;
            if (cv->n == 0 || (c == 1 && no_val)) continue;
            double *x = malloc(cv->n * sizeof *x), *y = malloc(cv->n * sizeof *y);
            bufs[4 * i + 2 * c] = x;
            bufs[4 * i + 2 * c + 1] = y;
            if (!x || !y) { rc = fb_err("out of memory"); break; }
            size_t n = thin(cv, axis, tscale, c == 0 ? 1000 : cv->n, x, y);
            if (c == 0) ntrain += n; else nval += n;
            if (nr == 1) snprintf(names[ns], sizeof names[ns], "%s", c == 0 ? "train" : "validation");
            else snprintf(names[ns], sizeof names[ns], "%s %s", r->label, c == 0 ? "train" : "val");
            ser[ns] = (svg_series){.label = names[ns], .x = x, .y = y, .n = n,
                                   .color = palette[(nr == 1 ? c : i) % 10], .dashed = c == 1 && nr > 1,
                                   .markers = c == 1, .width = c == 0 ? 1.3 : 2.0};
            ns++;
        }
    }
    char tbuf[512];
    if (!rc && !title) {
        const run_log *r = &runs[0];
        if (nr == 1) {
            char model[64];
            if (r->preset[0]) snprintf(model, sizeof model, "%s", r->preset);
            else snprintf(model, sizeof model, "%lld parameters", r->params);
            snprintf(tbuf, sizeof tbuf, "%s: %s, batch %lldx%lld, accum %lld", r->label, model, r->batch, r->seq,
                     r->accum);
        } else {
            snprintf(tbuf, sizeof tbuf, "loss of %d runs", nr);
        }
        title = tbuf;
    }
    if (!rc)
        rc = svg_chart_save(out, &(svg_chart){.width = width, .height = height, .title = title, .xlabel = xlabel,
                                              .ylabel = log_y ? "loss (log scale)" : "loss", .log_y = log_y},
                            ser, ns);
    if (!rc) printf("wrote %s: %d run%s, %zu training and %zu validation points\n", out, nr, nr > 1 ? "s" : "", ntrain,
                    nval);
    for (int i = 0; i < 4 * nr && bufs; i++) free(bufs[i]);
    for (int i = 0; i < nr; i++) { free(runs[i].train.p); free(runs[i].val.p); }
    free(bufs);
    free(ser);
    free(names);
    free(runs);
    return rc ? cli_fail(&a, NULL) : 0;
}
