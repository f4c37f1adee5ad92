/* fable dash — the terminal: ncursesw output of a dash_screen, keys, resize, and the loop.
 *
 * The loop sleeps in poll() on the keyboard (at most 100 ms), reads what the log gained
 * (at most 1 MB a turn, so replaying a huge log stays responsive), reaps the trainer,
 * samples /proc and power once a second, and redraws at most `fps` times a second, and only
 * when something changed or a second has passed. It never writes to the trainer or its files.
 */
#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dash/dash.h"
#include "fable/ckpt.h"
#include "fable/util.h"

static volatile sig_atomic_t quit_signal;
static void on_signal(int sig) { quit_signal = sig; }

/* ---- the log file: follow it as it grows ------------------------------------------------- */
typedef struct {
    const char *path;
    int fd;
    off_t off;
    char *buf;
    size_t len, cap;
    int caught_up;
} follower;

/* Read at most `budget` new bytes into the model; 1 if it changed. */
static int follow(follower *f, dash_model *m, size_t budget) {
    f->caught_up = 1;
    if (f->fd < 0) {
        f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (f->fd < 0) return 0;
        if (lseek(f->fd, f->off, SEEK_SET) < 0) f->off = 0;
    }
    struct stat st;
    if (fstat(f->fd, &st) == 0 && st.st_size < f->off) { /* truncated or replaced: start over */
        dash_model_free(m);
        dash_model_init(m);
        dash_model_log(m, DASH_LOG_WARN, "%s was truncated: reading it again", f->path);
        f->off = 0;
        f->len = 0;
        lseek(f->fd, 0, SEEK_SET);
    }
    int changed = 0;
    size_t got = 0;
    while (got < budget) {
        if (f->cap - f->len < 65536) {
            size_t cap = f->cap ? f->cap * 2 : 131072;
            char *nb = realloc(f->buf, cap);
            if (!nb) break;
            f->buf = nb;
            f->cap = cap;
        }
        ssize_t n = read(f->fd, f->buf + f->len, f->cap - f->len);
        if (n <= 0) break;
        f->len += (size_t)n;
        f->off += n;
        got += (size_t)n;
        size_t used = dash_model_feed(m, f->buf, f->len);
        if (used) {
            memmove(f->buf, f->buf + used, f->len - used);
            f->len -= used;
            changed = 1;
        }
    }
    if (got >= budget) f->caught_up = 0;
    return changed;
}

/* ---- curses ---------------------------------------------------------------------------------- */
static void colors_init(void) {
    if (!has_colors()) return;
    start_color();
    use_default_colors();
    static const short fg[DASH_NCOLORS] = {
        [DASH_C_NORMAL] = -1,        [DASH_C_TITLE] = COLOR_CYAN,  [DASH_C_TRAIN] = COLOR_YELLOW,
        [DASH_C_VAL] = COLOR_GREEN,  [DASH_C_GOOD] = COLOR_GREEN,  [DASH_C_WARN] = COLOR_YELLOW,
        [DASH_C_ERROR] = COLOR_RED,  [DASH_C_CKPT] = COLOR_BLUE,   [DASH_C_SAMPLE] = COLOR_MAGENTA,
        [DASH_C_DIM] = -1,
        [DASH_C_BAR0 + 0] = COLOR_WHITE, [DASH_C_BAR0 + 1] = COLOR_CYAN,    [DASH_C_BAR0 + 2] = COLOR_MAGENTA,
        [DASH_C_BAR0 + 3] = COLOR_BLUE,  [DASH_C_BAR0 + 4] = COLOR_RED,     [DASH_C_BAR0 + 5] = COLOR_YELLOW,
        [DASH_C_BAR0 + 6] = COLOR_GREEN, [DASH_C_BAR0 + 7] = COLOR_CYAN,
    };
    for (int i = 1; i < DASH_NCOLORS; i++) init_pair((short)i, fg[i], -1);
}

static void blit(const dash_screen *s) {
    for (int y = 0; y < s->h; y++)
        for (int x = 0; x < s->w; x++) {
            const dash_cell *c = &s->c[(size_t)y * s->w + x];
            wchar_t wc[2] = {(wchar_t)c->ch, 0};
            attr_t a = c->bold ? A_BOLD : A_NORMAL;
            if (c->color == DASH_C_DIM) a |= A_DIM;
            cchar_t cc;
            setcchar(&cc, wc, a, (short)c->color, NULL);
            mvadd_wch(y, x, &cc);
        }
    wnoutrefresh(stdscr);
    doupdate();
}

/* ---- the loop -------------------------------------------------------------------------------- */
typedef struct {
    const dash_opts *o;
    dash_model m;
    dash_view v;
    dash_sys sys;
    dash_trainer tr;
    dash_gen *gen;
    follower f;
    int launch, quitting, restarting, done;
    double msg_until;
} app;

static void say(app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(app *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->v.status, sizeof a->v.status, fmt, ap);
    va_end(ap);
    a->msg_until = fb_now() + 6;
}

static const char *run_dir(app *a) {
    if (a->launch) return a->tr.out;
    if (a->o->out_dir) return a->o->out_dir;
    if (a->m.out[0]) return a->m.out;
    static char d[512];
    if (a->m.last_ckpt[0]) {
        snprintf(d, sizeof d, "%s", a->m.last_ckpt);
        char *sl = strrchr(d, '/');
        if (sl) { *sl = 0; return d; }
        return ".";
    }
    return NULL;
}

static const char *tokenizer_path(app *a) {
    if (a->o->tokenizer) return a->o->tokenizer;
    if (a->m.tokenizer[0]) return a->m.tokenizer;
    if (a->launch)
        for (int i = 0; i + 1 < a->tr.argc; i++)
            if (!strcmp(a->tr.argv[i], "--tokenizer")) return a->tr.argv[i + 1];
    return NULL;
}

static void key_generate(app *a) {
    if (a->o->no_generate) { say(a, "g is off (--no-generate)"); return; }
    if (a->gen) { say(a, "a sample is already being generated"); return; }
    const char *dir = run_dir(a), *tok = tokenizer_path(a);
    if (!dir) { say(a, "g: which run folder? give --out DIR"); return; }
    if (!tok) { say(a, "g needs a tokenizer: give --tokenizer FILE"); return; }
    char p[1024];
    if (ckpt_latest(dir, p, sizeof p)) { say(a, "g: no checkpoint in %s yet", dir); return; }
    a->gen = dash_gen_start(dir, tok, a->o->sample_tokens);
    if (!a->gen) say(a, "g: cannot start a thread");
    else {
        const char *b = strrchr(p, '/');
        say(a, " generating from %s (low priority, one thread)…", b ? b + 1 : p);
    }
}

static void key_quit(app *a) {
    if (!a->launch || a->tr.pid <= 0) { a->done = 1; return; }
    dash_trainer_stop(&a->tr);
    a->quitting = 1;
    a->restarting = 0;
    snprintf(a->v.status, sizeof a->v.status, " stopping: the trainer writes a checkpoint, then exits…");
    a->msg_until = 1e300;
}

static void key_restart(app *a) {
    if (!a->launch) { say(a, "r restarts only a trainer this dashboard launched (fable dash -- train ...)"); return; }
    if (a->quitting) return;
    char p[1024];
    if (ckpt_latest(a->tr.out, p, sizeof p) && a->tr.pid <= 0) { say(a, "r: no checkpoint in %s to resume from", a->tr.out); return; }
    if (a->tr.pid > 0) {
        dash_trainer_stop(&a->tr);
        a->restarting = 1;
        snprintf(a->v.status, sizeof a->v.status, " restarting: waiting for the checkpoint…");
        a->msg_until = 1e300;
    } else if (dash_trainer_start(&a->tr, 1)) {
        say(a, "restart failed: %s", fb_errmsg());
    } else {
        dash_model_log(&a->m, DASH_LOG_INFO, "restarted the trainer with --resume %s (pid %d)", a->tr.out, (int)a->tr.pid);
        say(a, "restarted with --resume %s", a->tr.out);
    }
}

static void scroll_log(app *a, long long d) {
    long long last = a->m.n_log - 1, first = a->m.n_log > DASH_LOG_MAX ? a->m.n_log - DASH_LOG_MAX : 0;
    long long top = a->v.log_top >= 0 ? a->v.log_top : last;
    top += d;
    if (top < first) top = first;
    if (top >= last) top = a->v.paused ? last : -1;
    a->v.log_top = top;
}

static int handle_key(app *a, int ch) {
    switch (ch) {
    case 'q': case 'Q': key_quit(a); break;
    case 'r': case 'R': key_restart(a); break;
    case 'g': case 'G': key_generate(a); break;
    case 'p': case 'P':
        a->v.paused = !a->v.paused;
        a->v.log_top = a->v.paused ? a->m.n_log - 1 : -1;
        break;
    case 'l': case 'L': a->v.log_scale = !a->v.log_scale; break;
    case 'z': case 'Z': a->v.last_n = !a->v.last_n; break;
    case KEY_UP: scroll_log(a, -1); break;
    case KEY_DOWN: scroll_log(a, 1); break;
    case KEY_PPAGE: scroll_log(a, -10); break;
    case KEY_NPAGE: scroll_log(a, 10); break;
    case KEY_HOME: a->v.log_top = a->m.n_log > DASH_LOG_MAX ? a->m.n_log - DASH_LOG_MAX : 0; break;
    case KEY_END: a->v.log_top = a->v.paused ? a->m.n_log - 1 : -1; break;
    case KEY_RESIZE: break;
    default: return 0;
    }
    return 1;
}

static void on_trainer_exit(app *a) {
    int st = a->tr.exit_status;
    dash_trainer_drain(&a->tr, &a->m);
    if (WIFEXITED(st))
        dash_model_log(&a->m, WEXITSTATUS(st) ? DASH_LOG_ERROR : DASH_LOG_INFO, "trainer exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        dash_model_log(&a->m, DASH_LOG_ERROR, "trainer killed by signal %d", WTERMSIG(st));
    follow(&a->f, &a->m, (size_t)1 << 30); /* its last records (the end record) */
    if (a->quitting) { a->done = 1; return; }
    if (a->restarting) {
        a->restarting = 0;
        if (dash_trainer_start(&a->tr, 1)) say(a, "restart failed: %s", fb_errmsg());
        else {
            dash_model_log(&a->m, DASH_LOG_INFO, "restarted the trainer with --resume %s (pid %d)", a->tr.out, (int)a->tr.pid);
            say(a, "restarted with --resume %s", a->tr.out);
        }
    }
}

int dash_run_tty(const dash_opts *o) {
    if (!isatty(0) || !isatty(1)) return fb_err("needs a terminal (for one frame as text: --snapshot 80x24)");
    app *a = calloc(1, sizeof *a);
    if (!a) return fb_err("out of memory");
    a->o = o;
    a->launch = o->launch_argc > 0;
    dash_model_init(&a->m);
    a->v = (dash_view){.window = o->window, .log_top = -1, .launch = a->launch, .no_generate = o->no_generate,
                       .mode = a->launch ? "launch" : "follow", .out = o->out_dir};
    a->f = (follower){.path = o->log_path, .fd = -1};
    if (a->launch) {
        if (dash_trainer_init(&a->tr, o->self, o->launch_argc, o->launch_argv, o->log_path)) { free(a); return -1; }
        a->f.path = a->tr.log;
        struct stat st; /* show this run only, not what an earlier run left in the same log */
        if (stat(a->tr.log, &st) == 0) a->f.off = st.st_size;
        if (dash_trainer_start(&a->tr, 0)) { dash_trainer_free(&a->tr); free(a); return -1; }
        a->v.out = a->tr.out;
        a->v.recipe = "ane";
        for (int i = 0; i + 1 < a->tr.argc; i++)
            if (!strcmp(a->tr.argv[i], "--recipe")) a->v.recipe = a->tr.argv[i + 1];
        dash_model_log(&a->m, DASH_LOG_INFO, "launched the trainer (pid %d), log %s", (int)a->tr.pid, a->tr.log);
    }
    dash_sys_init(&a->sys, o->no_power, 1);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    setlocale(LC_ALL, "");
    if (!getenv("ESCDELAY")) set_escdelay(25);
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    curs_set(0);
    colors_init();
    dash_screen scr = {0};
    double frame = 1.0 / (o->fps > 0 ? o->fps : 5), last_draw = 0, last_sys = 0;
    int dirty = 1;
    while (!a->done) {
        double now = fb_now();
        if (quit_signal) { quit_signal = 0; key_quit(a); dirty = 1; }
        dirty |= follow(&a->f, &a->m, (size_t)1 << 20);
        if (a->launch) {
            long long before = a->m.n_log;
            dash_trainer_drain(&a->tr, &a->m);
            dirty |= before != a->m.n_log;
            if (dash_trainer_poll(&a->tr)) { on_trainer_exit(a); dirty = 1; }
            a->v.trainer_running = a->tr.pid > 0;
        }
        if (a->gen) {
            char *text = NULL, err[256];
            long long step;
            double tps;
            if (dash_gen_poll(a->gen, &text, err, sizeof err, &step, &tps)) {
                dash_gen_free(a->gen);
                a->gen = NULL;
                if (text) {
                    free(a->m.sample);
                    a->m.sample = text;
                    a->m.sample_step = step;
                    a->m.sample_tps = tps;
                    a->m.sample_by_dash = 1;
                    dash_model_log(&a->m, DASH_LOG_SAMPLE, "generated from the checkpoint of update %lld, %.0f tok/s", step, tps);
                } else {
                    dash_model_log(&a->m, DASH_LOG_ERROR, "g: %s", err);
                }
                dirty = 1;
            }
        }
        a->v.gen_busy = a->gen != NULL;
        if (now - last_sys >= 1.0) {
            dash_sys_sample(&a->sys, a->launch ? a->tr.pid : (pid_t)a->m.pid);
            last_sys = now;
            dirty = 1;
        }
        if (a->msg_until && now > a->msg_until) { a->v.status[0] = 0; a->msg_until = 0; dirty = 1; }
        int ch;
        while ((ch = getch()) != ERR) dirty |= handle_key(a, ch);
        if (a->done) break;
        if ((dirty && now - last_draw >= frame) || now - last_draw >= 1.0) {
            int h, w;
            getmaxyx(stdscr, h, w);
            if (scr.w != w || scr.h != h) {
                dash_screen_free(&scr);
                if (dash_screen_init(&scr, w, h)) break;
                clear();
            }
            dash_render(&scr, &a->m, &a->sys, &a->v);
            blit(&scr);
            last_draw = now;
            dirty = 0;
        }
        double wait = a->f.caught_up ? 0.1 : 0;
        if (dirty) wait = fmax(0, frame - (fb_now() - last_draw));
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        poll(&pfd, 1, (int)(wait * 1000));
    }
    endwin();
    dash_screen_free(&scr);
    if (a->gen) dash_gen_free(a->gen);
    if (a->launch && a->tr.pid > 0) { /* the loop ended another way: still leave an intact checkpoint */
        dash_trainer_stop(&a->tr);
        int st;
        waitpid(a->tr.pid, &st, 0);
    }
    if (a->m.ended)
        printf("fable dash: training %s at update %lld; last loss %.4f; checkpoint %s\n",
               !strcmp(a->m.end_reason, "done") ? "finished" : "stopped", a->m.end_step, a->m.end_loss,
               a->m.end_ckpt[0] ? a->m.end_ckpt : "(none)");
    dash_trainer_free(&a->tr);
    dash_sys_free(&a->sys);
    dash_model_free(&a->m);
    free(a->f.buf);
    if (a->f.fd >= 0) close(a->f.fd);
    free(a);
    return 0;
}
