/* fable dash — the processes and threads the dashboard starts: the trainer (launch mode) and
 * a sample from the newest checkpoint (`g`).
 *
 * The trainer runs in its own process group, so a Ctrl-C typed at the dashboard reaches only
 * the dashboard, which then asks the trainer to stop the way `q` does: SIGINT, on which
 * `fable train` finishes the update, writes a checkpoint and exits 0. Its stdout (the human
 * progress lines) goes to /dev/null, its stderr into the log panel.
 */
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dash/dash.h"
#include "fable/ckpt.h"
#include "fable/infer.h"
#include "fable/tokenizer.h"
#include "fable/util.h"
#include "train/model_file.h"

/* ---- the trainer -------------------------------------------------------------------------- */
static const char *arg_value(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], name) && i + 1 < argc) return argv[i + 1];
        if (!strncmp(argv[i], name, n) && argv[i][n] == '=') return argv[i] + n + 1;
    }
    return NULL;
}

int dash_trainer_init(dash_trainer *t, const char *self, int argc, char **argv, const char *log_override) {
    memset(t, 0, sizeof *t);
    t->err_fd = -1;
    t->exit_status = -1;
    if (argc > 0 && !strcmp(argv[0], "train")) { argc--; argv++; }
    const char *out = arg_value(argc, argv, "--out");
    if (!out) out = arg_value(argc, argv, "--resume");
    if (!out) out = "out";
    snprintf(t->out, sizeof t->out, "%s", out);
    const char *log = arg_value(argc, argv, "--log");
    if (log && log_override && strcmp(log, log_override))
        return fb_err("--log %s (dash) and --log %s (train) disagree: give it once", log_override, log);
    if (!log) log = log_override;
    if (log && !strcmp(log, "-")) return fb_err("--log - (stderr) cannot be followed: give a file, or leave it out");
    if (log) snprintf(t->log, sizeof t->log, "%s", log);
    else snprintf(t->log, sizeof t->log, "%s/train.jsonl", out);
    t->argv = calloc((size_t)argc + 6, sizeof *t->argv);
    if (!t->argv) return fb_err("out of memory");
    t->argv[t->argc++] = strdup(self);
    t->argv[t->argc++] = strdup("train");
    for (int i = 0; i < argc; i++) t->argv[t->argc++] = strdup(argv[i]);
    if (!arg_value(argc, argv, "--log")) { /* explicit, so it works whatever train's default is */
        t->argv[t->argc++] = strdup("--log");
        t->argv[t->argc++] = strdup(t->log);
    }
    return 0;
}

void dash_trainer_free(dash_trainer *t) {
    for (int i = 0; i < t->argc; i++) free(t->argv[i]);
    free(t->argv);
    if (t->err_fd >= 0) close(t->err_fd);
    memset(t, 0, sizeof *t);
    t->err_fd = -1;
}

int dash_trainer_start(dash_trainer *t, int resume) {
    /* the command line: with --resume OUT (and without --init, which --resume replaces) */
    char **av = calloc((size_t)t->argc + 3, sizeof *av);
    if (!av) return fb_err("out of memory");
    int n = 0;
    for (int i = 0; i < t->argc; i++) {
        if (resume && (!strcmp(t->argv[i], "--resume") || !strcmp(t->argv[i], "--init")) && i + 1 < t->argc) { i++; continue; }
        if (resume && (!strncmp(t->argv[i], "--resume=", 9) || !strncmp(t->argv[i], "--init=", 7))) continue;
        av[n++] = t->argv[i];
    }
    if (resume) {
        av[n++] = "--resume";
        av[n++] = t->out;
    }
    av[n] = NULL;
    if (fb_mkdir_p(t->out)) { free(av); return -1; }
    int fds[2];
    if (pipe(fds)) { free(av); return fb_errno("pipe"); }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        free(av);
        return fb_errno("fork");
    }
    if (pid == 0) {
        setpgid(0, 0);
        int dn = open("/dev/null", O_RDWR);
        if (dn >= 0) { dup2(dn, 0); dup2(dn, 1); }
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execv(av[0], av);
        fprintf(stderr, "fable dash: cannot run %s: %s\n", av[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    if (t->err_fd >= 0) close(t->err_fd);
    t->err_fd = fds[0];
    t->errlen = 0;
    t->pid = pid;
    t->stopping = 0;
    free(av);
    return 0;
}

void dash_trainer_stop(dash_trainer *t) {
    if (t->pid > 0 && !t->stopping) {
        kill(t->pid, SIGINT);
        t->stopping = 1;
    }
}

int dash_trainer_poll(dash_trainer *t) {
    if (t->pid <= 0) return 0;
    int st;
    pid_t r = waitpid(t->pid, &st, WNOHANG);
    if (r != t->pid) return 0;
    t->exit_status = st;
    t->pid = 0;
    t->stopping = 0;
    return 1;
}

void dash_trainer_drain(dash_trainer *t, dash_model *m) {
    if (t->err_fd < 0) return;
    char buf[4096];
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = read(t->err_fd, buf, sizeof buf);
        if (n == 0) { close(t->err_fd); t->err_fd = -1; break; }
        if (n < 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || t->errlen == sizeof t->errbuf - 1) {
                t->errbuf[t->errlen] = 0;
                if (t->errlen) {
                    int err = strstr(t->errbuf, "fable") || strstr(t->errbuf, "rror");
                    dash_model_log(m, err ? DASH_LOG_ERROR : DASH_LOG_WARN, "%s", t->errbuf);
                }
                t->errlen = 0;
                if (buf[i] == '\n') continue;
            }
            t->errbuf[t->errlen++] = buf[i];
        }
    }
}

/* ---- a sample from the newest checkpoint, on one low-priority thread ---------------------- */
struct dash_gen {
    pthread_t th;
    char dir[512], tok[512];
    int tokens;
    int done; /* atomic */
    char *text;
    char err[1024];
    long long step;
    double tps;
};

static void *gen_main(void *arg) {
    dash_gen *g = arg;
    setpriority(PRIO_PROCESS, (id_t)gettid(), 19); /* this thread only: the trainer comes first */
    omp_set_num_threads(1);
    char path[1024];
    ckpt_header h;
    model m = {0};
    tokenizer *t = NULL;
    if (ckpt_latest(g->dir, path, sizeof path) || ckpt_read_header(path, &h)) {
        snprintf(g->err, sizeof g->err, "%s", fb_errmsg());
    } else if (model_file_load(&m, path)) {
        snprintf(g->err, sizeof g->err, "%s", fb_errmsg());
    } else if (!(t = tok_load(g->tok))) {
        snprintf(g->err, sizeof g->err, "%s", fb_errmsg());
    } else if (tok_vocab_size(t) != m.cfg.vocab_size) {
        snprintf(g->err, sizeof g->err, "%s has %d tokens, the model %d", g->tok, tok_vocab_size(t), m.cfg.vocab_size);
    } else {
        g->step = h.update;
        int steps = g->tokens + 1 < m.cfg.seq_len ? g->tokens + 1 : m.cfg.seq_len;
        infer_state st;
        sampler smp;
        if (infer_init(&st, &m, steps) == 0) {
            /* the reference dashboard's sampler: temperature 0.8, top-k 50, from BOS */
            if (sampler_init(&smp, m.cfg.vocab_size, 0.8f, 0.0f, 50, (uint64_t)time(NULL)) == 0) {
                size_t len = 0;
                FILE *mem = open_memstream(&g->text, &len);
                if (!mem || infer_generate(&st, t, &smp, "", steps, mem, &g->tps) < 0)
                    snprintf(g->err, sizeof g->err, "%s", fb_errmsg());
                if (mem) fclose(mem);
                sampler_free(&smp);
            }
            infer_free(&st);
        } else {
            snprintf(g->err, sizeof g->err, "%s", fb_errmsg());
        }
    }
    if (t) tok_free(t);
    if (m.data) model_free(&m);
    if (g->err[0] && g->text) { free(g->text); g->text = NULL; }
    __atomic_store_n(&g->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

dash_gen *dash_gen_start(const char *ckpt_dir, const char *tok, int tokens) {
    dash_gen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    snprintf(g->dir, sizeof g->dir, "%s", ckpt_dir);
    snprintf(g->tok, sizeof g->tok, "%s", tok);
    g->tokens = tokens > 0 ? tokens : 64;
    if (pthread_create(&g->th, NULL, gen_main, g)) { free(g); return NULL; }
    return g;
}

int dash_gen_poll(dash_gen *g, char **text, char *err, size_t errcap, long long *step, double *tps) {
    if (!__atomic_load_n(&g->done, __ATOMIC_ACQUIRE)) return 0;
    pthread_join(g->th, NULL);
    g->done = 2;
    *text = g->text;
    g->text = NULL;
    snprintf(err, errcap, "%s", g->err);
    *step = g->step;
    *tps = g->tps;
    return 1;
}

void dash_gen_free(dash_gen *g) {
    if (!g) return;
    if (g->done != 2) pthread_join(g->th, NULL);
    free(g->text);
    free(g);
}
