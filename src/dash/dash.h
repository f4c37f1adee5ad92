/* fable dash — the live terminal dashboard (SPEC §6), in four layers:
 *
 *   dash_model.c   JSON lines of `fable train` → dash_model (pure data: no terminal, no clock)
 *   dash_proc.c    the trainer's CPU % and resident memory from /proc, RAPL and NVML power → dash_sys
 *   dash_render.c  dash_model + dash_sys + dash_view → dash_screen, an off-screen grid of cells
 *   dash_tty.c     dash_screen → ncursesw, keys, resize;  dash_launch.c: the trainer process
 *
 * Only dash_tty.c knows about curses, so everything above it is tested without a terminal
 * (tests/dash/test_dash.c: a real log → expected numbers → golden frames at 80×24 and 120×40).
 */
#ifndef FABLE_DASH_H
#define FABLE_DASH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the model: what the JSON lines say ------------------------------------------------ */

/* The phases of one update, in the order the bars show them (ms summed over its micro-steps;
 * `opt` comes from the batch record). */
enum { DASH_PH_DATA, DASH_PH_FWD, DASH_PH_BWD, DASH_PH_DW, DASH_PH_DW_WAIT, DASH_PH_CLS, DASH_PH_RMS, DASH_PH_OPT,
       DASH_NPH };
extern const char *const dash_phase_names[DASH_NPH];

typedef enum { DASH_LOG_INFO, DASH_LOG_EVAL, DASH_LOG_CKPT, DASH_LOG_SAMPLE, DASH_LOG_WARN, DASH_LOG_ERROR,
               DASH_LOG_END } dash_log_kind;

#define DASH_LOG_MAX 1024 /* log lines kept (a ring) */
#define DASH_LOG_LEN 200
typedef struct {
    dash_log_kind kind;
    char text[DASH_LOG_LEN];
} dash_log_line;

typedef struct {
    double *x, *y; /* update, loss */
    size_t n, cap;
} dash_series;

typedef struct {
    /* start record (the latest one; a resume writes another) */
    int have_start;
    char engine[32], precision[16], device[128], preset[48], recipe[32], schedule[16];
    char out[512], log_path[512], tokenizer[512], train[512];
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, tied, threads;
    int batch, seq, accum;
    long long steps, params, resumed_at, pid;
    double peak_gflops, flops_per_token, time_limit;
    int n_starts; /* 2 and more: resumed */
    /* latest update (batch + perf records) */
    long long update, tokens;
    double loss, lr, grad_norm, train_ms, ms_per_step, tokens_per_s, gflops, mfu_pct;
    double time_s;      /* from the records' time_s when the log has it, else < 0 */
    double busy_s;      /* sum of train_ms, eval ms and checkpoint ms: elapsed when there is no time_s */
    double recent_ms[32]; /* train_ms of the last updates (a ring), for the ETA */
    int n_recent;
    /* phase times of the last complete update, ms */
    double phase[DASH_NPH], pending[DASH_NPH];
    long long pending_update;
    /* validation */
    double val_loss, best_val;
    long long val_step, best_val_step;
    int n_evals;
    /* curves */
    dash_series train_curve, val_curve;
    /* newest sample (the trainer's, or one the dashboard made) */
    char *sample;
    long long sample_step;
    double sample_tps;
    int sample_by_dash;
    /* checkpoints */
    char last_ckpt[512];
    long long last_ckpt_step;
    int n_ckpts;
    /* end record */
    int ended;
    char end_reason[32], end_error[400], end_ckpt[512];
    long long end_step;
    double end_loss, end_seconds;
    /* the scrolling log */
    dash_log_line log[DASH_LOG_MAX];
    long long n_log; /* lines ever added; the ring holds the last DASH_LOG_MAX */
    long long n_records, n_bad; /* JSON lines read, and lines that were not valid records */
} dash_model;

void dash_model_init(dash_model *m);
void dash_model_free(dash_model *m);
/* Take one line (without its newline). Lines that are not JSON objects go to the log as
 * warnings (a trainer's stderr mixed into the file); returns 1 if the model changed. */
int dash_model_line(dash_model *m, const char *line, size_t len);
/* Feed a whole buffer of lines; a last line without '\n' is left for next time: returns
 * the bytes consumed. */
size_t dash_model_feed(dash_model *m, const char *buf, size_t len);
void dash_model_log(dash_model *m, dash_log_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Derived numbers. Elapsed seconds (time_s, the end record's seconds, else busy time);
 * ETA in seconds (< 0 when unknown). */
double dash_model_elapsed(const dash_model *m);
double dash_model_eta(const dash_model *m);

/* ---- the machine: /proc, RAPL, NVML ------------------------------------------------------ */
#define DASH_HIST 240 /* samples kept for the sparklines (one a second) */
typedef struct {
    float v[DASH_HIST];
    int n, head; /* a ring: head is the next slot */
} dash_hist;
void dash_hist_push(dash_hist *h, float v);
float dash_hist_at(const dash_hist *h, int i_from_oldest);

typedef struct {
    /* the trainer process */
    pid_t pid;            /* 0: none known */
    char proc_why[96];    /* why there is no reading, when proc_ok == 0 */
    int proc_ok;
    double cpu_pct, rss_mb;
    dash_hist cpu, rss;
    /* CPU package power (RAPL) */
    int power_off;        /* --no-power */
    int rapl_ok, n_rapl;
    char rapl_why[96];
    double rapl_w;
    dash_hist rapl;
    /* NVIDIA GPUs (NVML via dlopen) */
    int nvml_ok, n_gpu;
    char nvml_why[96];
    double gpu_w, gpu_util, gpu_mem_mb, gpu_mem_total_mb;
    dash_hist gpu_pw, gpu_ut, gpu_mem;
    /* private state of the readers */
    double last_t;
    unsigned long long last_ticks, rapl_last_uj[8], rapl_max_uj[8];
    int rapl_have_last;
    void *nvml; /* dlopen handle */
    void *nvml_dev[8];
} dash_sys;

void dash_sys_init(dash_sys *s, int no_power, int want_gpu);
void dash_sys_free(dash_sys *s);
/* One reading (call about once a second; the first call only primes the rates). */
void dash_sys_sample(dash_sys *s, pid_t pid);

/* ---- the view: what the user chose ----------------------------------------------------- */
typedef struct {
    int log_scale;      /* `l` */
    int last_n;         /* `z` toggles between the whole run (0) and the last window updates */
    int window;         /* --window N */
    int paused;         /* `p`: autoscroll off */
    long long log_top;  /* when paused or scrolled: index (in n_log) of the last line shown; -1 = follow */
    int launch;         /* launch mode (keys q and r act on the trainer) */
    char status[200];   /* the bottom line's message */
    const char *mode;   /* "launch", "follow", "replay" */
    int trainer_running;
    int gen_busy, no_generate;
    const char *recipe, *out; /* from the train arguments or --out, for logs whose start record lacks them */
} dash_view;

/* ---- the off-screen frame ---------------------------------------------------------------- */
enum { DASH_C_NORMAL, DASH_C_TITLE, DASH_C_TRAIN, DASH_C_VAL, DASH_C_GOOD, DASH_C_WARN, DASH_C_ERROR, DASH_C_CKPT,
       DASH_C_SAMPLE, DASH_C_DIM, DASH_C_BAR0 /* ..BAR0+7: one per phase */, DASH_NCOLORS = DASH_C_BAR0 + DASH_NPH };

typedef struct {
    uint32_t ch;  /* a Unicode code point of width 1 */
    uint8_t color;
    uint8_t bold;
} dash_cell;

typedef struct {
    int w, h;
    dash_cell *c; /* [h][w] */
} dash_screen;

#define DASH_MIN_W 80
#define DASH_MIN_H 24

int dash_screen_init(dash_screen *s, int w, int h);
void dash_screen_free(dash_screen *s);
/* Draw everything (or the "terminal too small" page). */
void dash_render(dash_screen *s, const dash_model *m, const dash_sys *sys, const dash_view *v);
/* The frame as UTF-8 text, one line per row, trailing blanks trimmed (goldens, --snapshot). */
char *dash_screen_text(const dash_screen *s);

/* ---- the trainer process (launch mode) --------------------------------------------------- */
typedef struct {
    char **argv;      /* "fable" "train" ... (owned) */
    int argc;
    pid_t pid;        /* 0 when not running */
    int err_fd;       /* the trainer's stderr (a pipe), -1 when closed */
    int exit_status;  /* waitpid status of the last exit, -1 before */
    int stopping;     /* SIGINT sent */
    char out[512], log[512];
    char errbuf[1024];  /* a partial stderr line */
    size_t errlen;
} dash_trainer;

/* Build the trainer's command line from the user's train arguments: adds --log LOG unless
 * given (LOG = OUT/train.jsonl), finds OUT (--out, --resume, default "out"). */
int dash_trainer_init(dash_trainer *t, const char *self, int argc, char **argv, const char *log_override);
void dash_trainer_free(dash_trainer *t);
int dash_trainer_start(dash_trainer *t, int resume);
void dash_trainer_stop(dash_trainer *t);      /* SIGINT: checkpoint and exit */
int dash_trainer_poll(dash_trainer *t);       /* reap; 1 when it has just exited */
/* Read what the trainer wrote to stderr into the model's log. */
void dash_trainer_drain(dash_trainer *t, dash_model *m);

/* ---- generating a sample from the newest checkpoint (a low-priority thread) ---------------- */
typedef struct dash_gen dash_gen;
dash_gen *dash_gen_start(const char *ckpt_dir, const char *tokenizer, int tokens);
/* 1 when finished: *text (malloc'd, or NULL with *err set) and the checkpoint's update. */
int dash_gen_poll(dash_gen *g, char **text, char *err, size_t errcap, long long *step, double *tps);
void dash_gen_free(dash_gen *g);

/* The command (src/cli/cmd_dash.c) drives the loop in dash_tty.c. */
typedef struct {
    const char *log_path, *out_dir, *tokenizer;
    int no_generate, no_power, window, sample_tokens;
    double fps;
    int launch_argc;
    char **launch_argv; /* the train arguments after "--" */
    const char *self;   /* path of the fable binary */
} dash_opts;
int dash_run_tty(const dash_opts *o);

#endif
