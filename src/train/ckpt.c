/* fable — checkpoint files (see include/fable/ckpt.h). */
#include "fable/ckpt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fable/step.h"
#include "fable/util.h"

void ckpt_cfg_pack(const model_config *c, int32_t o[8]) {
    o[0] = c->dim; o[1] = c->hidden_dim; o[2] = c->n_layers; o[3] = c->n_heads;
    o[4] = c->n_kv_heads; o[5] = c->vocab_size; o[6] = c->seq_len; o[7] = c->tied;
}

void ckpt_cfg_unpack(const int32_t i[8], model_config *c) {
    c->dim = i[0]; c->hidden_dim = i[1]; c->n_layers = i[2]; c->n_heads = i[3];
    c->n_kv_heads = i[4]; c->vocab_size = i[5]; c->seq_len = i[6]; c->tied = i[7];
}

void ckpt_path(char *out, size_t cap, const char *dir, int64_t update) {
    snprintf(out, cap, "%s/ckpt_%08lld.bin", dir, (long long)update);
}

static size_t payload_bytes(const ckpt_header *h) { return 3 * (size_t)h->n_params * sizeof(float); }

int ckpt_save_from(const char *path, const ckpt_header *h,
                   int (*get)(void *ctx, int part, size_t off, size_t n, float *dst), void *ctx) {
    const size_t n = (size_t)h->n_params, slice = (size_t)4 << 20; /* 16 MB */
    float *buf = malloc((n < slice ? n : slice) * sizeof(float) + 1);
    if (!buf) return fb_err("out of memory writing %s", path);
    fb_atomic a;
    if (fb_atomic_begin(&a, path)) { free(buf); return -1; }
    uint64_t sum = fb_hash64(FB_HASH_INIT, h, sizeof *h);
    int rc = fb_atomic_write(&a, h, sizeof *h);
    /* each part's checksum is fb_hash64 over the whole part (as load_payload computes it),
     * streamed over 16 MB slices: a per-slice fb_hash64 made every model over 4M parameters
     * unloadable (stories15M and up) */
    for (int part = 0; part < 3 && !rc; part++) {
        uint64_t ph = sum;
        for (size_t off = 0; off < n && !rc; off += slice) {
            const size_t k = n - off < slice ? n - off : slice;
            rc = get(ctx, part, off, k, buf);
            if (!rc) {
                ph = fb_hash64_raw(ph, buf, k * sizeof(float));
                rc = fb_atomic_write(&a, buf, k * sizeof(float));
            }
        }
        sum = fb_hash64_final(ph);
    }
    free(buf);
    if (!rc) rc = fb_atomic_write(&a, &sum, sizeof sum);
    if (rc) { fb_atomic_abort(&a); return -1; }
    return fb_atomic_commit(&a);
}

typedef struct { const float *part[3]; } host_arrays;
static int host_source(void *ctx, int part, size_t off, size_t n, float *dst) {
    memcpy(dst, ((host_arrays *)ctx)->part[part] + off, n * sizeof(float));
    return 0;
}

int ckpt_save(const char *path, const ckpt_header *h, const float *params, const float *m, const float *v) {
    host_arrays src = {{params, m, v}};
    return ckpt_save_from(path, h, host_source, &src);
}

/* A fixed-size char field holds a NUL-terminated string (else printing it reads past the header). */
static int has_nul(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

/* Every header field a reader trusts, checked against the file size and against each other:
 * the payload size must be exactly what the config needs, and the training shape (batch, seq,
 * accum), which sizes the activations on resume, must be plausible for this model. So a
 * corrupt or hostile header is an error naming the field, never an allocation it cannot justify. */
static int check_header(const char *path, const ckpt_header *h, long long fsize) {
    if (memcmp(h->magic, CKPT_MAGIC, 8) != 0) return fb_err("%s: not a fable checkpoint (bad magic)", path);
    if (h->version != CKPT_VERSION)
        return fb_err("%s: checkpoint version %u, this fable reads version %d", path, h->version, CKPT_VERSION);
    if (h->header_bytes != sizeof *h)
        return fb_err("%s: corrupt checkpoint header (size field %u, expected %zu)", path, h->header_bytes,
                      sizeof *h);
    model_config c;
    ckpt_cfg_unpack(h->cfg, &c);
    if (h->cfg[7] != 0 && h->cfg[7] != 1)
        return fb_err("%s: corrupt checkpoint header: tied flag %d (must be 0 or 1)", path, h->cfg[7]);
    if (model_config_validate(&c)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", fb_errmsg());
        return fb_err("%s: corrupt checkpoint header: %s", path, why);
    }
    if (h->n_params != model_num_params(&c))
        return fb_err("%s: corrupt checkpoint header: %llu parameters but the config needs %zu", path,
                      (unsigned long long)h->n_params, model_num_params(&c));
    /* n_params <= 2^48 (model_config_validate's bounds), so this cannot overflow */
    long long want = (long long)(sizeof *h + payload_bytes(h) + sizeof(uint64_t));
    if (fsize != want)
        return fb_err("%s: checkpoint is %s: %lld bytes, expected %lld", path, fsize < want ? "truncated" : "too long",
                      fsize, want);
    if (!has_nul(h->data_path, sizeof h->data_path) || !has_nul(h->tokenizer_path, sizeof h->tokenizer_path) ||
        !has_nul(h->engine, sizeof h->engine))
        return fb_err("%s: corrupt checkpoint header: a path or engine name is not NUL-terminated", path);
    const train_hparams *hp = &h->hp;
    if (hp->batch <= 0 || hp->batch > CKPT_MAX_BATCH || hp->seq <= 0 || hp->seq > c.seq_len || hp->accum <= 0 ||
        hp->accum > STEP_MAX_ACCUM || hp->steps <= 0)
        return fb_err("%s: corrupt checkpoint header: batch %d, seq %d, accum %d, steps %d (need 1..%d, 1..seq_len "
                      "%d, 1..%d, >= 1)", path, hp->batch, hp->seq, hp->accum, hp->steps, CKPT_MAX_BATCH, c.seq_len,
                      STEP_MAX_ACCUM);
    if ((uint32_t)hp->sampler > LOADER_SEQUENTIAL || (uint32_t)hp->schedule > SCHED_LINEAR ||
        h->loader.kind > LOADER_SEQUENTIAL)
        return fb_err("%s: corrupt checkpoint header: sampler %d, schedule %d, loader kind %u", path, hp->sampler,
                      hp->schedule, h->loader.kind);
    if (h->replan.update < 0 || (h->replan.update > 0 && (h->replan.update > h->update ||
                                                          !(h->replan.progress >= 0 && h->replan.progress < 1))))
        return fb_err("%s: corrupt checkpoint header: the time plan's correction at update %d (progress %g) is not "
                      "between 0 and the updates done (%lld) or its progress not in [0, 1)", path, h->replan.update,
                      (double)h->replan.progress, (long long)h->update);
    if (h->update < 0 || h->micro_steps < 0 || h->tokens_seen < 0 || h->threads < 0 || h->data_vocab < 0 ||
        h->data_vocab > 65536)
        return fb_err("%s: corrupt checkpoint header: negative counter or bad data vocab (update %lld, micro-steps "
                      "%lld, tokens %lld, threads %d, data vocab %d)", path, (long long)h->update,
                      (long long)h->micro_steps, (long long)h->tokens_seen, h->threads, h->data_vocab);
    return 0;
}

/* A header from the first bytes of a file of fsize bytes (size, magic, version, fields; no checksum). */
static int header_from(const char *path, const void *head, size_t have, long long fsize, ckpt_header *h) {
    if (have < sizeof *h) {
        if (have >= 8 && memcmp(head, CKPT_MAGIC, 8) != 0) return fb_err("%s: not a fable checkpoint (bad magic)", path);
        return fb_err("%s: checkpoint is truncated (%lld bytes, shorter than its header)", path, fsize);
    }
    memcpy(h, head, sizeof *h);
    return check_header(path, h, fsize);
}

int ckpt_read_header(const char *path, ckpt_header *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return fb_errno("%s: cannot open checkpoint", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return fb_errno("%s: cannot stat checkpoint", path);
    }
    unsigned char head[sizeof *h];
    size_t have = fread(head, 1, sizeof head, f);
    fclose(f);
    return header_from(path, head, have, (long long)st.st_size, h);
}

int ckpt_is_checkpoint(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char mg[8];
    int ok = fread(mg, 8, 1, f) == 1 && memcmp(mg, CKPT_MAGIC, 8) == 0;
    fclose(f);
    return ok;
}

int ckpt_magic_damaged(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char mg[8];
    int bits = -1;
    if (fread(mg, 8, 1, f) == 1) {
        bits = 0;
        for (int i = 0; i < 8; i++) bits += __builtin_popcount(mg[i] ^ (unsigned char)CKPT_MAGIC[i]);
    }
    fclose(f);
    return bits >= 1 && bits <= 8;
}

/* The payload after a checked header: read(ctx, dst, n) fills dst with the next n bytes
 * (0, or -1 + fb_err). Each requested array is allocated (only now that the file size has
 * proved the header's n_params); the checksum covers all three in any case. */
static int load_payload(const char *path, ckpt_header *h, float **params, float **m, float **v,
                        int (*read)(void *ctx, void *dst, size_t n), void *ctx) {
    const size_t n = (size_t)h->n_params, nb = n * sizeof(float);
    float *bufs[3] = {NULL, NULL, NULL};
    float **outs[3] = {params, m, v};
    uint64_t sum = fb_hash64(FB_HASH_INIT, h, sizeof *h);
    float *tmp = NULL;
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        float *b = outs[i] ? (bufs[i] = fb_alloc(nb)) : (tmp ? tmp : (tmp = fb_alloc(nb)));
        if (!b) { rc = -1; break; }
        if (read(ctx, b, nb)) rc = -1;
        else sum = fb_hash64(sum, b, nb);
    }
    uint64_t stored = 0;
    if (!rc && read(ctx, &stored, sizeof stored)) rc = -1;
    if (!rc && stored != sum)
        rc = fb_err("%s: checkpoint is corrupt: checksum mismatch (stored %016llx, computed %016llx)", path,
                    (unsigned long long)stored, (unsigned long long)sum);
    fb_free(tmp);
    for (int i = 0; i < 3; i++) {
        if (rc) fb_free(bufs[i]);
        else if (outs[i]) *outs[i] = bufs[i];
    }
    return rc;
}

typedef struct { FILE *f; const char *path; } file_src;
static int file_read(void *ctx, void *dst, size_t n) {
    file_src *s = ctx;
    return fread(dst, 1, n, s->f) == n ? 0 : fb_err("%s: checkpoint is truncated", s->path);
}

typedef struct { const unsigned char *p, *end; const char *path; } mem_src;
static int mem_read(void *ctx, void *dst, size_t n) {
    mem_src *s = ctx;
    if ((size_t)(s->end - s->p) < n) return fb_err("%s: checkpoint is truncated", s->path);
    memcpy(dst, s->p, n);
    s->p += n;
    return 0;
}

int ckpt_load(const char *path, ckpt_header *h, float **params, float **m, float **v) {
    if (ckpt_read_header(path, h)) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return fb_errno("%s: cannot open checkpoint", path);
    file_src src = {f, path};
    int rc = fseek(f, sizeof *h, SEEK_SET) != 0 ? fb_errno("%s: cannot seek", path)
                                                : load_payload(path, h, params, m, v, file_read, &src);
    fclose(f);
    return rc;
}

int ckpt_load_mem(const void *data, size_t len, const char *name, ckpt_header *h, float **params, float **m,
                  float **v) {
    if (header_from(name, data, len, (long long)len, h)) return -1;
    mem_src src = {(const unsigned char *)data + sizeof *h, (const unsigned char *)data + len, name};
    return load_payload(name, h, params, m, v, mem_read, &src);
}

/* update number from "ckpt_NNNNNNNN.bin", -1 if the name does not match */
static long long ckpt_number(const char *name) {
    long long u;
    char tail[8];
    if (sscanf(name, "ckpt_%lld.%7s", &u, tail) == 2 && !strcmp(tail, "bin") && strlen(name) == 17) return u;
    return -1;
}

static int list_ckpts(const char *dir, long long **out, int *n) {
    DIR *d = opendir(dir);
    if (!d) return fb_errno("%s: cannot open checkpoint directory", dir);
    int cap = 16;
    *n = 0;
    *out = malloc(cap * sizeof **out);
    struct dirent *e;
    while ((e = readdir(d))) {
        long long u = ckpt_number(e->d_name);
        if (u < 0) continue;
        if (*n == cap) *out = realloc(*out, (cap *= 2) * sizeof **out);
        (*out)[(*n)++] = u;
    }
    closedir(d);
    return 0;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int ckpt_latest(const char *dir, char *out, size_t cap) {
    long long *u;
    int n;
    if (list_ckpts(dir, &u, &n)) return -1;
    long long best = -1;
    for (int i = 0; i < n; i++) best = u[i] > best ? u[i] : best;
    free(u);
    if (best < 0) return fb_err("%s: no checkpoint (ckpt_NNNNNNNN.bin) to resume from", dir);
    ckpt_path(out, cap, dir, best);
    return 0;
}

int ckpt_prune(const char *dir, int keep) {
    if (keep <= 0) return 0;
    long long *u;
    int n;
    if (list_ckpts(dir, &u, &n)) return -1;
    qsort(u, n, sizeof *u, cmp_ll);
    for (int i = 0; i + keep < n; i++) {
        char p[4096];
        ckpt_path(p, sizeof p, dir, u[i]);
        unlink(p);
    }
    free(u);
    return 0;
}
