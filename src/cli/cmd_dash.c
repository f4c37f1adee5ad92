/* fable dash — the live terminal dashboard: launch a training run and show it, or follow a log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dash/dash.h"
#include "fable/util.h"

static const char *usage =
    "usage: fable dash [options] -- train <fable train arguments>   launch a training run and show it\n"
    "       fable dash --log FILE [options]                         follow a run, or replay a finished log\n"
    "options:\n"
    "  --log FILE          the JSON-lines log (launch mode: default OUT/train.jsonl, OUT from train's --out)\n"
    "  --out DIR           the run folder, for g (default: the log's, or train's --out)\n"
    "  --tokenizer FILE    for g (default: the log's, or train's --tokenizer)\n"
    "  --no-generate       no sampling from checkpoints (the g key)\n"
    "  --no-power          no RAPL or NVML power readings\n"
    "  --window N          updates shown by z (last N; default 200)\n"
    "  --sample-tokens N   tokens g generates (default 64)\n"
    "  --fps N             most redraws a second (default 5)\n"
    "  --snapshot COLSxROWS  read the whole log, print one frame as text and exit (no terminal needed)\n"
    "keys: q quit (launch mode: the trainer checkpoints and stops first), r restart the trainer with\n"
    "      --resume, g generate from the newest checkpoint, p pause autoscroll, arrows/PgUp/PgDn scroll\n"
    "      the log, l log-scale loss, z whole run / last N updates\n";

static int snapshot(const dash_opts *o, const char *size) {
    int w = 0, h = 0;
    if (sscanf(size, "%dx%d", &w, &h) != 2 || w < 1 || h < 1 || w > 1000 || h > 1000)
        return fb_err("--snapshot wants COLSxROWS, e.g. 80x24, not '%s'", size);
    FILE *f = fopen(o->log_path, "rb");
    if (!f) return fb_errno("%s", o->log_path);
    dash_model m;
    dash_model_init(&m);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); dash_model_free(&m); return fb_err("out of memory"); }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0) break;
        len += n;
        size_t used = dash_model_feed(&m, buf, len);
        memmove(buf, buf + used, len - used);
        len -= used;
    }
    if (len) dash_model_line(&m, buf, len);
    fclose(f);
    free(buf);
    dash_sys sys;
    dash_sys_init(&sys, o->no_power, 0);
    dash_sys_sample(&sys, (pid_t)m.pid);
    if (m.pid > 0) { usleep(300000); dash_sys_sample(&sys, (pid_t)m.pid); }
    dash_view v = {.window = o->window, .log_top = -1, .mode = "replay", .no_generate = o->no_generate,
                  .out = o->out_dir};
    dash_screen s;
    int rc = -1;
    if (dash_screen_init(&s, w, h) == 0) {
        dash_render(&s, &m, &sys, &v);
        char *t = dash_screen_text(&s);
        if (t) { fputs(t, stdout); free(t); rc = 0; }
        dash_screen_free(&s);
    }
    dash_sys_free(&sys);
    dash_model_free(&m);
    return rc ? fb_err("out of memory") : 0;
}

int cmd_dash(int argc, char **argv) {
    int dd = argc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) { dd = i; break; }
    cli_args a;
    cli_args_init(&a, dd, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    dash_opts o = {0};
    o.log_path = cli_str(&a, "--log", NULL);
    o.out_dir = cli_str(&a, "--out", NULL);
    o.tokenizer = cli_str(&a, "--tokenizer", NULL);
    o.no_generate = cli_flag(&a, "--no-generate");
    o.no_power = cli_flag(&a, "--no-power");
    o.window = (int)cli_int(&a, "--window", 200);
    o.sample_tokens = (int)cli_int(&a, "--sample-tokens", 64);
    o.fps = cli_float(&a, "--fps", 5);
    const char *snap = cli_str(&a, "--snapshot", NULL);
    if (cli_finish(&a)) return 2;
    o.launch_argc = dd < argc ? argc - dd - 1 : 0;
    o.launch_argv = argv + dd + 1;
    if (o.window < 1) return cli_fail(&a, "--window must be at least 1");
    if (o.fps <= 0 || o.fps > 60) return cli_fail(&a, "--fps must be in (0, 60]");
    if (snap) {
        if (!o.log_path) return cli_fail(&a, "--snapshot needs --log FILE");
        if (o.launch_argc) return cli_fail(&a, "--snapshot reads a log; it does not launch a trainer");
        return snapshot(&o, snap) ? cli_fail(&a, NULL) : 0;
    }
    if (!o.log_path && !o.launch_argc) {
        fputs(usage, stderr);
        return cli_fail(&a, "give --log FILE to follow a run, or -- train ... to launch one");
    }
    if (o.launch_argc && (o.launch_argc < 2 || strcmp(o.launch_argv[0], "train")))
        return cli_fail(&a, "after -- comes the train command: fable dash -- train --preset ... (got '%s')",
                        o.launch_argc ? o.launch_argv[0] : "");
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return cli_fail(&a, "cannot find the fable binary (/proc/self/exe)");
    self[n] = 0;
    o.self = self;
    return dash_run_tty(&o) ? cli_fail(&a, NULL) : 0;
}
