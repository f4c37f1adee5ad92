/* fable tests — reader for the binary fixtures that tests/ref/llama_ref.py writes.
 *
 * Format (little-endian; the writer's docstring lists the records it writes):
 *   magic  8 bytes  "FABLEFX1"
 *   count  uint32   number of records
 *   record: uint32 name_len, name (ASCII, no NUL), uint32 dtype (1 = float32, 2 = int32),
 *           uint32 ndim, uint32 dims[ndim], data (prod(dims) elements, row-major)
 *
 * fx_load reads a whole file and copies each record's data into its own aligned buffer
 * (records are not aligned in the file). Errors are printed to stderr with the path. */
#ifndef FABLE_TEST_FIXTURE_H
#define FABLE_TEST_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FX_F32 1
#define FX_I32 2
#define FX_MAX_DIMS 8

typedef struct {
    char name[64];
    int dtype;               /* FX_F32 or FX_I32 */
    int ndim;
    int dims[FX_MAX_DIMS];
    size_t numel;
    void *data;              /* float* or int32_t*, numel elements */
} fx_rec;

typedef struct {
    char path[1024];
    int n;
    fx_rec *recs;
} fx_file;

static inline void fx_free(fx_file *f) {
    for (int i = 0; i < f->n; i++) free(f->recs[i].data);
    free(f->recs);
    f->recs = NULL;
    f->n = 0;
}

static inline uint32_t fx__u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Returns 0, or -1 after printing why. */
static inline int fx_load(fx_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "fixture %s: cannot open (regenerate: see docs/testing.md)\n", path); return -1; }
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = sz > 0 ? malloc((size_t)sz) : NULL;
    if (!buf || fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
        fprintf(stderr, "fixture %s: read failed\n", path);
        fclose(fp); free(buf); return -1;
    }
    fclose(fp);
    size_t len = (size_t)sz, o = 12;
    const char *why = NULL;
    if (len < 12 || memcmp(buf, "FABLEFX1", 8) != 0) { why = "bad magic (not a FABLEFX1 file)"; goto bad; }
    uint32_t count = fx__u32(buf + 8);
    if (count > 100000) { why = "absurd record count"; goto bad; }
    f->recs = calloc(count ? count : 1, sizeof *f->recs);
    for (uint32_t r = 0; r < count; r++) {
        fx_rec *rec = &f->recs[r];
        if (o + 4 > len) { why = "truncated record header"; goto bad; }
        uint32_t nl = fx__u32(buf + o); o += 4;
        if (nl == 0 || nl >= sizeof rec->name || o + nl + 8 > len) { why = "bad record name"; goto bad; }
        memcpy(rec->name, buf + o, nl); rec->name[nl] = 0; o += nl;
        rec->dtype = (int)fx__u32(buf + o);
        rec->ndim = (int)fx__u32(buf + o + 4); o += 8;
        if ((rec->dtype != FX_F32 && rec->dtype != FX_I32) || rec->ndim > FX_MAX_DIMS ||
            o + 4 * (size_t)rec->ndim > len) { why = "bad dtype or ndim"; goto bad; }
        rec->numel = 1;
        for (int d = 0; d < rec->ndim; d++) {
            rec->dims[d] = (int)fx__u32(buf + o); o += 4;
            rec->numel *= (size_t)rec->dims[d];
        }
        if (rec->numel > (len - o) / 4) { why = "truncated record data"; goto bad; }
        rec->data = malloc(rec->numel * 4 + 4);
        memcpy(rec->data, buf + o, rec->numel * 4);   /* little-endian host assumed (x86, ARM) */
        o += rec->numel * 4;
        f->n = (int)r + 1;
    }
    if (o != len) { why = "trailing bytes after the last record"; goto bad; }
    free(buf);
    return 0;
bad:
    fprintf(stderr, "fixture %s: %s at byte %zu\n", path, why, o);
    free(buf);
    fx_free(f);
    return -1;
}

/* The record named `name` with dtype `dtype`, or NULL (and a message) if absent/wrong type. */
static inline const fx_rec *fx_get(const fx_file *f, const char *name, int dtype) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->recs[i].name, name) == 0) {
            if (f->recs[i].dtype != dtype) {
                fprintf(stderr, "fixture %s: record %s has dtype %d, want %d\n", f->path, name,
                        f->recs[i].dtype, dtype);
                return NULL;
            }
            return &f->recs[i];
        }
    fprintf(stderr, "fixture %s: no record %s\n", f->path, name);
    return NULL;
}

/* float data of `name` if it holds exactly `numel` elements (0 = any), else NULL + message. */
static inline const float *fx_f32(const fx_file *f, const char *name, size_t numel) {
    const fx_rec *r = fx_get(f, name, FX_F32);
    if (!r) return NULL;
    if (numel && r->numel != numel) {
        fprintf(stderr, "fixture %s: record %s has %zu elements, want %zu\n", f->path, name,
                r->numel, numel);
        return NULL;
    }
    return (const float *)r->data;
}

static inline const int32_t *fx_i32(const fx_file *f, const char *name, size_t numel) {
    const fx_rec *r = fx_get(f, name, FX_I32);
    if (!r) return NULL;
    if (numel && r->numel != numel) {
        fprintf(stderr, "fixture %s: record %s has %zu elements, want %zu\n", f->path, name,
                r->numel, numel);
        return NULL;
    }
    return (const int32_t *)r->data;
}

/* Path of a committed fixture: $FABLE_FIXTURES/name, else tests/fixtures/torch/name found from
 * the repository root (where tests/run.sh runs) or from a build directory below it. */
static inline const char *fx_committed_path(const char *name) {
    static char buf[4][1024];
    static int k = 0;
    char *b = buf[k++ & 3];
    const char *env = getenv("FABLE_FIXTURES");
    if (env && *env) { snprintf(b, 1024, "%s/%s", env, name); return b; }
    static const char *dirs[] = {"tests/fixtures/torch", "../tests/fixtures/torch",
                                 "../../tests/fixtures/torch", "../../../tests/fixtures/torch",
                                 "../../../../tests/fixtures/torch"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(b, 1024, "%s/%s", dirs[i], name);
        if (access(b, R_OK) == 0) return b;
    }
    snprintf(b, 1024, "tests/fixtures/torch/%s", name);
    return b;
}

#endif
