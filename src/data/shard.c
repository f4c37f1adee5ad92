/* fable — token shards: mmap'd reader and atomic writer (format in include/fable/data.h).
 *
 * Two kinds of file are read:
 *   - fable shards: the 32-byte FBLTOKS1 header, then n_tokens little-endian uint16 ids;
 *   - raw headerless uint16 files (llama2.c's `pretokenize` output, the reference's
 *     .bin), which carry no vocab size, so the caller must give it.
 * Whatever the kind, every id is checked < vocab once at open, so the trainer can index
 * the embedding table with them without further checks. The host is assumed
 * little-endian (x86-64, aarch64), like llama2.c's np.uint16 files.
 */
#include "fable/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fable/util.h"

/* ---- header ------------------------------------------------------------------- */

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static void header_fill(unsigned char h[SHARD_HEADER_BYTES], int vocab, uint64_t n) {
    memset(h, 0, SHARD_HEADER_BYTES);
    memcpy(h, SHARD_MAGIC, 8);
    wr32(h + 8, 1);
    wr32(h + 12, (uint32_t)vocab);
    wr64(h + 16, n);
    wr32(h + 24, SHARD_HEADER_BYTES);
    wr32(h + 28, 0);
}

/* ---- reader -------------------------------------------------------------------- */

/* First id >= vocab, or n when all are valid. */
static size_t first_bad_id(const uint16_t *ids, size_t n, int vocab) {
    /* One pass of max-reduction first (vectorises), the exact search only on failure. */
    uint16_t mx = 0;
    for (size_t i = 0; i < n; i++) mx = ids[i] > mx ? ids[i] : mx;
    if ((int)mx < vocab) return n;
    for (size_t i = 0; i < n; i++)
        if ((int)ids[i] >= vocab) return i;
    return n;
}

/* Validate size bytes at b (header, size, every id) and point s at the ids. 0 or -1 + fb_err. */
static int shard_parse(shard *s, const unsigned char *b, size_t size, int vocab, const char *path) {
    if (size == 0) return fb_err("%s: empty file (0 bytes): not a token shard", path);
    size_t m = size < 8 ? size : 8;
    if (memcmp(b, SHARD_MAGIC, m) == 0) {
        /* A fable shard (a raw file starting with these 8 bytes would need the ids
         * 16966 21580 19279 12627, i.e. the text "FBLTOKS1": not a concern). */
        if (size < SHARD_HEADER_BYTES)
            return fb_err("%s: truncated: the shard header needs %d bytes, the file has %zu", path,
                          SHARD_HEADER_BYTES, size);
        uint32_t version = rd32(b + 8), hvocab = rd32(b + 12), hbytes = rd32(b + 24);
        uint64_t n = rd64(b + 16);
        if (version != 1)
            return fb_err("%s: shard format version %u is not supported (this fable reads version 1)", path,
                          version);
        if (hbytes != SHARD_HEADER_BYTES)
            return fb_err("%s: corrupt header: header_bytes = %u, expected %d", path, hbytes, SHARD_HEADER_BYTES);
        if (hvocab == 0 || hvocab > 65536)
            return fb_err("%s: corrupt header: vocab_size = %u (must be 1..65536)", path, hvocab);
        if (vocab > 0 && (uint32_t)vocab != hvocab)
            return fb_err("%s: vocab mismatch: the shard was written for vocab %u, the model/tokenizer has %d",
                          path, hvocab, vocab);
        size_t payload = size - SHARD_HEADER_BYTES;
        if (n > payload / 2)
            return fb_err("%s: truncated: header says %llu tokens (%llu bytes), the file holds %zu bytes of ids",
                          path, (unsigned long long)n, (unsigned long long)n * 2, payload);
        if (n * 2 != payload)
            return fb_err("%s: corrupt: %zu bytes after the %llu tokens the header announces", path,
                          payload - (size_t)n * 2, (unsigned long long)n);
        s->has_header = 1;
        s->vocab_size = (int)hvocab;
        s->tokens = (const uint16_t *)(b + SHARD_HEADER_BYTES);
        s->n = (size_t)n;
    } else {
        if (vocab <= 0)
            return fb_err("%s: no FBLTOKS1 header; to read it as raw uint16 ids (llama2.c .bin) give the vocab "
                          "size (e.g. --vocab 32000)", path);
        if (size % 2)
            return fb_err("%s: truncated: a raw uint16 token file must have an even size, this one has %zu bytes",
                          path, size);
        s->has_header = 0;
        s->vocab_size = vocab;
        s->tokens = (const uint16_t *)b;
        s->n = size / 2;
    }
    size_t bad = first_bad_id(s->tokens, s->n, s->vocab_size);
    if (bad < s->n)
        return fb_err("%s: token %zu (byte offset %zu) has id %u, not below the vocab size %d", path, bad,
                      (size_t)((const unsigned char *)(s->tokens + bad) - b), s->tokens[bad], s->vocab_size);
    return 0;
}

int shard_open(shard *s, const char *path, int vocab) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    if (vocab < 0 || vocab > 65536)
        return fb_err("%s: vocab size %d cannot be stored as uint16 ids (1..65536)", path, vocab);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fb_errno("%s: cannot open token shard", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fb_errno("%s: cannot stat", path);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_err("%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return fb_err("%s: empty file (0 bytes): not a token shard", path);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return fb_errno("%s: cannot mmap %zu bytes", path, size);
    if (shard_parse(s, map, size, vocab, path)) {
        munmap(map, size);
        s->tokens = NULL;
        s->n = 0;
        return -1;
    }
    s->map = map;
    s->map_len = size;
    madvise(map, size, MADV_RANDOM);
    return 0;
}

int shard_open_mem(shard *s, const void *data, size_t len, int vocab, const char *name) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", name);
    if (vocab < 0 || vocab > 65536)
        return fb_err("%s: vocab size %d cannot be stored as uint16 ids (1..65536)", name, vocab);
    if (shard_parse(s, data, len, vocab, name)) {
        s->tokens = NULL;
        s->n = 0;
        return -1;
    }
    return 0;
}

void shard_close(shard *s) {
    if (s->map) munmap(s->map, s->map_len);
    s->map = NULL;
    s->map_len = 0;
    s->tokens = NULL;
    s->n = 0;
}

/* ---- writer -------------------------------------------------------------------- */

int shard_writer_open(shard_writer *w, const char *path, int vocab) {
    memset(w, 0, sizeof *w);
    if (vocab <= 0 || vocab > 65536)
        return fb_err("%s: vocab size %d cannot be stored as uint16 ids (1..65536)", path, vocab);
    if (strlen(path) >= sizeof w->a.path) return fb_err("%s: path too long", path);
    w->vocab = vocab;
    if (fb_atomic_begin(&w->a, path)) return -1;
    unsigned char h[SHARD_HEADER_BYTES];
    header_fill(h, vocab, 0); /* n_tokens patched at close */
    return fb_atomic_write(&w->a, h, sizeof h); /* aborts (removes the temp file) on error */
}

int shard_writer_put(shard_writer *w, const uint16_t *ids, size_t n) {
    size_t bad = first_bad_id(ids, n, w->vocab);
    if (bad < n) {
        fb_err("%s: token %llu has id %u, not below the vocab size %d", w->a.path,
               (unsigned long long)(w->n + bad), ids[bad], w->vocab);
        shard_writer_abort(w);
        return -1;
    }
    if (fb_atomic_write(&w->a, ids, n * sizeof *ids) != 0) return -1;
    w->n += n;
    return 0;
}

int shard_writer_put_i32(shard_writer *w, const int32_t *ids, size_t n) {
    uint16_t buf[4096];
    while (n) {
        size_t k = n < 4096 ? n : 4096;
        for (size_t i = 0; i < k; i++) {
            if (ids[i] < 0 || ids[i] >= w->vocab) {
                fb_err("%s: token %llu has id %d, outside the vocab [0, %d)", w->a.path,
                       (unsigned long long)(w->n + i), (int)ids[i], w->vocab);
                shard_writer_abort(w);
                return -1;
            }
            buf[i] = (uint16_t)ids[i];
        }
        if (shard_writer_put(w, buf, k) != 0) return -1;
        ids += k;
        n -= k;
    }
    return 0;
}

void shard_writer_abort(shard_writer *w) {
    if (w->a.f) fb_atomic_abort(&w->a);
}

int shard_writer_close(shard_writer *w) {
    if (!w->a.f) return fb_err("%s: shard writer already closed", w->a.path);
    unsigned char h[SHARD_HEADER_BYTES];
    header_fill(h, w->vocab, w->n);
    if (fflush(w->a.f) != 0 || fseek(w->a.f, 0, SEEK_SET) != 0) {
        fb_errno("%s: write failed", w->a.tmp);
        shard_writer_abort(w);
        return -1;
    }
    if (fb_atomic_write(&w->a, h, sizeof h) != 0) return -1;
    return fb_atomic_commit(&w->a); /* flush, fsync, rename, fsync the directory */
}

int shard_write(const char *path, const uint16_t *ids, size_t n, int vocab) {
    shard_writer w;
    if (shard_writer_open(&w, path, vocab) != 0) return -1;
    if (shard_writer_put(&w, ids, n) != 0) return -1;
    return shard_writer_close(&w);
}
