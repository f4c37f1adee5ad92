/* fable tests — tiny assertion helpers shared by every C test.
 * A test binary exits 0 when all checks pass, 1 otherwise, 77 when it must skip
 * (e.g. no GPU). tests/run.sh counts the results. */
#ifndef FABLE_TESTLIB_H
#define FABLE_TESTLIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int t_failures = 0;
static int t_checks = 0;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        t_checks++;                                                           \
        if (!(cond)) {                                                        \
            t_failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
        }                                                                     \
    } while (0)

/* The engine a model-level test runs on: $FABLE_ENGINE (default cpu) at `precision`, with 2
 * threads. NULL (after saying why on stderr) when it cannot run here: the test then exits
 * 77 (skipped), so `FABLE_ENGINE=cuda` on a machine without a GPU skips instead of failing. */
#ifdef FABLE_ENGINE_H
static inline eng *t_engine(int precision) {
    eng *e = eng_create(eng_default_name(), &(eng_opts){.threads = 2, .precision = precision});
    if (!e) fprintf(stderr, "skipped: %s\n", fb_errmsg());
    else fprintf(stderr, "engine %s (%s) on %s\n", e->name, eng_precision_name(e->precision), e->device);
    return e;
}
#endif

/* Finish: print a one-line summary and return the exit status. */
static inline int t_done(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failed\n", name, t_checks, t_failures);
    return t_failures ? 1 : 0;
}

/* Directory of the shared real data (../shared/data from the repo root), overridable
 * with FABLE_DATA. Returns NULL when absent (the test then fails: the data is required). */
static inline const char *t_data_dir(void) {
    const char *e = getenv("FABLE_DATA");
    if (e && *e) return e;
    static const char *cands[] = {"../shared/data", "../../shared/data", "../../../shared/data"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (access(cands[i], R_OK) == 0) return cands[i];
    return NULL;
}

static inline const char *t_data_path(const char *rel) {
    static char buf[8][1024];
    static int k = 0;
    const char *d = t_data_dir();
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s/%s", d ? d : "../shared/data", rel);
    return b;
}

/* A per-test scratch directory (mkdtemp under /tmp) and paths inside it. */
static char t_tmp_dir[256];
static inline int t_make_tmpdir(const char *tag) {
    snprintf(t_tmp_dir, sizeof t_tmp_dir, "/tmp/fable_test_%s_XXXXXX", tag);
    if (!mkdtemp(t_tmp_dir)) { perror("mkdtemp"); return -1; }
    return 0;
}
static inline const char *t_tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 512, "%s/%s", t_tmp_dir, name);
    return b;
}

/* Relative error of a vs reference b over n floats: max|a-b| / max(max|b|, tiny).
 * (Per-tensor, so that tiny entries of a tensor do not dominate.) */
static inline double t_rel_err(const float *a, const float *b, size_t n, size_t *worst) {
    double md = 0, mb = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || d != d) { md = d; w = i; }
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    if (worst) *worst = w;
    return md / (mb > 1e-30 ? mb : 1e-30);
}

#endif
