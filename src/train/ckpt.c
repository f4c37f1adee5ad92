/* fable — checkpoint files (see include/fable/ckpt.h). */
#include "fable/ckpt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    for (int part = 0; part < 3 && !rc; part++)
        for (size_t off = 0; off < n && !rc; off += slice) {
            const size_t k = n - off < slice ? n - off : slice;
            rc = get(ctx, part, off, k, buf);
            if (!rc) {
                sum = fb_hash64(sum, buf, k * sizeof(float));
                rc = fb_atomic_write(&a, buf, k * sizeof(float));
            }
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

static int check_header(const char *path, const ckpt_header *h, long long fsize) {
    if (memcmp(h->magic, CKPT_MAGIC, 8) != 0) return fb_err("%s: not a fable checkpoint (bad magic)", path);
    if (h->version != CKPT_VERSION)
        return fb_err("%s: checkpoint version %u, this fable reads version %d", path, h->version, CKPT_VERSION);
    if (h->header_bytes != sizeof *h)
        return fb_err("%s: corrupt checkpoint header (size field %u, expected %zu)", path, h->header_bytes,
                      sizeof *h);
    model_config c;
    ckpt_cfg_unpack(h->cfg, &c);
    if (model_config_validate(&c)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", fb_errmsg());
        return fb_err("%s: corrupt checkpoint header: %s", path, why);
    }
    if (h->n_params != model_num_params(&c))
        return fb_err("%s: corrupt checkpoint header: %llu parameters but the config needs %zu", path,
                      (unsigned long long)h->n_params, model_num_params(&c));
    long long want = (long long)(sizeof *h + payload_bytes(h) + sizeof(uint64_t));
    if (fsize != want)
        return fb_err("%s: checkpoint is %s: %lld bytes, expected %lld", path, fsize < want ? "truncated" : "too long",
                      fsize, want);
    return 0;
}

int ckpt_read_header(const char *path, ckpt_header *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return fb_errno("%s: cannot open checkpoint", path);
    struct stat st;
    fstat(fileno(f), &st);
    if ((size_t)st.st_size < sizeof *h || fread(h, sizeof *h, 1, f) != 1) {
        fclose(f);
        if ((size_t)st.st_size >= 8) {
            char mg[8];
            FILE *g = fopen(path, "rb");
            if (g && fread(mg, 8, 1, g) == 1 && memcmp(mg, CKPT_MAGIC, 8) != 0) {
                fclose(g);
                return fb_err("%s: not a fable checkpoint (bad magic)", path);
            }
            if (g) fclose(g);
        }
        return fb_err("%s: checkpoint is truncated (%lld bytes, shorter than its header)", path,
                      (long long)st.st_size);
    }
    fclose(f);
    return check_header(path, h, (long long)st.st_size);
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

int ckpt_load(const char *path, ckpt_header *h, float **params, float **m, float **v) {
    if (ckpt_read_header(path, h)) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return fb_errno("%s: cannot open checkpoint", path);
    fseek(f, sizeof *h, SEEK_SET);
    const size_t n = (size_t)h->n_params, nb = n * sizeof(float);
    float *bufs[3] = {NULL, NULL, NULL};
    float **outs[3] = {params, m, v};
    uint64_t sum = fb_hash64(FB_HASH_INIT, h, sizeof *h);
    float *tmp = NULL;
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        float *b = outs[i] ? (bufs[i] = fb_alloc(nb)) : (tmp ? tmp : (tmp = fb_alloc(nb)));
        if (!b) { rc = -1; break; }
        if (fread(b, 1, nb, f) != nb) rc = fb_err("%s: checkpoint is truncated", path);
        else sum = fb_hash64(sum, b, nb);
    }
    uint64_t stored = 0;
    if (!rc && fread(&stored, sizeof stored, 1, f) != 1) rc = fb_err("%s: checkpoint is truncated", path);
    if (!rc && stored != sum)
        rc = fb_err("%s: checkpoint is corrupt: checksum mismatch (stored %016llx, computed %016llx)", path,
                    (unsigned long long)stored, (unsigned long long)sum);
    fclose(f);
    fb_free(tmp);
    for (int i = 0; i < 3; i++) {
        if (rc) fb_free(bufs[i]);
        else if (outs[i]) *outs[i] = bufs[i];
    }
    return rc;
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
