/* fable — text corpora to token shards (formats and semantics in include/fable/data.h).
 *
 * Memory: plain-text inputs are mmap'd and stories point into the mapping; a JSON input
 * keeps only its decoded-string arena. Tokenization runs over blocks of stories (a few
 * MB of text each): the stories of a block are encoded in parallel into one buffer, then
 * appended to the shard(s) in story order, so the output does not depend on the thread
 * count.
 */
#include <fcntl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fable/data.h"
#include "fable/json.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

#define EOT_MARK "<|endoftext|>"

struct corpus_store {
    void *p;
    size_t len;
    int is_map; /* munmap, else free */
};

/* ---- whitespace as Python's str.strip() sees it ------------------------------------------
 * str.isspace() is true for U+0009..000D, U+001C..001F, U+0020, U+0085, U+00A0, U+1680,
 * U+2000..200A, U+2028, U+2029, U+202F, U+205F, U+3000. Decoded from UTF-8 at both ends. */
static int py_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Length of the whitespace character at s (0 if none). Only the 1..3-byte forms matter. */
static size_t space_at(const unsigned char *s, size_t n) {
    if (n >= 1 && s[0] < 0x80) return py_space(s[0]) ? 1 : 0;
    if (n >= 2 && (s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80)
        return py_space((unsigned)(s[0] & 0x1F) << 6 | (s[1] & 0x3F)) ? 2 : 0;
    if (n >= 3 && (s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80)
        return py_space((unsigned)(s[0] & 0x0F) << 12 | (unsigned)(s[1] & 0x3F) << 6 | (s[2] & 0x3F)) ? 3 : 0;
    return 0;
}

/* Length of the whitespace character ending at s[n-1] (0 if none). */
static size_t space_before(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    if (s[n - 1] < 0x80) return py_space(s[n - 1]) ? 1 : 0;
    for (size_t k = 2; k <= 3 && k <= n; k++)
        if ((s[n - k] & 0xC0) != 0x80) return space_at(s + n - k, k) == k ? k : 0;
    return 0;
}

const char *corpus_strip(const char *s, size_t *len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = *len, k;
    while (n && (k = space_at(p, n)) > 0) {
        p += k;
        n -= k;
    }
    while (n && (k = space_before(p, n)) > 0) n -= k;
    *len = n;
    return (const char *)p;
}

/* ---- corpus ------------------------------------------------------------------------------- */

int corpus_format_parse(const char *name, corpus_format *f) {
    if (!strcmp(name, "auto")) *f = CORPUS_AUTO;
    else if (!strcmp(name, "json")) *f = CORPUS_JSON;
    else if (!strcmp(name, "eot")) *f = CORPUS_EOT;
    else if (!strcmp(name, "lines")) *f = CORPUS_LINES;
    else return fb_err("unknown text format '%s' (auto | json | eot | lines)", name);
    return 0;
}

const char *corpus_format_name(corpus_format f) {
    static const char *names[] = {"auto", "json", "eot", "lines"};
    return (unsigned)f < 4 ? names[f] : "?";
}

static int keep(corpus *c, void *p, size_t len, int is_map) {
    if (c->n_store == c->cap_store) {
        size_t cap = c->cap_store ? 2 * c->cap_store : 8;
        struct corpus_store *s = realloc(c->store, cap * sizeof *s);
        if (!s) return fb_err("out of memory");
        c->store = s;
        c->cap_store = cap;
    }
    c->store[c->n_store++] = (struct corpus_store){p, len, is_map};
    return 0;
}

static int push(corpus *c, const char *s, size_t len) {
    s = corpus_strip(s, &len);
    if (len == 0) return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        const char **t = realloc(c->text, cap * sizeof *t);
        if (!t) return fb_err("out of memory for %zu stories", cap);
        c->text = t;
        size_t *l = realloc(c->len, cap * sizeof *l);
        if (!l) return fb_err("out of memory for %zu stories", cap);
        c->len = l;
        c->cap = cap;
    }
    c->text[c->n] = s;
    c->len[c->n] = len;
    c->n++;
    c->bytes += len;
    return 0;
}

static corpus_format detect(const char *s, size_t len) {
    size_t i = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) i = 3;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    if (i < len && (s[i] == '[' || s[i] == '{')) return CORPUS_JSON;
    if (memmem(s, len, EOT_MARK, strlen(EOT_MARK))) return CORPUS_EOT;
    return CORPUS_LINES;
}

static int add_eot(corpus *c, const char *s, size_t len) {
    const size_t m = strlen(EOT_MARK);
    const char *end = s + len;
    while (s < end) {
        const char *e = memmem(s, (size_t)(end - s), EOT_MARK, m);
        const char *stop = e ? e : end;
        if (push(c, s, (size_t)(stop - s)) != 0) return -1;
        s = e ? e + m : end;
    }
    return 0;
}

static int add_lines(corpus *c, const char *s, size_t len) {
    const char *end = s + len;
    while (s < end) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        const char *stop = e ? e : end;
        if (push(c, s, (size_t)(stop - s)) != 0) return -1;
        s = e ? e + 1 : end;
    }
    return 0;
}

/* Stories of a parsed JSON document (see data.h for the accepted shapes). */
static int add_json(corpus *c, const json_doc *d, const char *name) {
    const json_node *r = json_root(d), *arr = r;
    if (r->type == JSON_OBJECT) {
        arr = json_get(d, r, "texts");
        if (!arr) arr = json_get(d, r, "stories");
        if (!arr || arr->type != JSON_ARRAY)
            return fb_err("%s: a JSON object must hold the stories in a \"texts\" (or \"stories\") array", name);
    } else if (r->type != JSON_ARRAY) {
        return fb_err("%s: JSON must be an array of stories or an object {\"texts\": [...]}, not a %s", name,
                      json_type_name(r->type));
    }
    size_t i = 0;
    for (const json_node *e = json_first(d, arr); e; e = json_next(d, e), i++) {
        const json_node *s = e;
        if (e->type == JSON_OBJECT) {
            s = json_get(d, e, "story");
            if (!s) s = json_get(d, e, "text");
            if (!s) return fb_err("%s: element %zu is an object without a \"story\" or \"text\" member", name, i);
        }
        if (s->type != JSON_STRING)
            return fb_err("%s: element %zu: a story must be a string, found a %s", name, i, json_type_name(s->type));
        if (push(c, s->str, s->len) != 0) return -1;
    }
    return 0;
}

static int add_buffer(corpus *c, const char *s, size_t len, corpus_format fmt, const char *name,
                      corpus_format *used) {
    if (fmt == CORPUS_AUTO) fmt = detect(s, len);
    if (used) *used = fmt;
    if (fmt == CORPUS_EOT) return add_eot(c, s, len);
    if (fmt == CORPUS_LINES) return add_lines(c, s, len);
    json_doc d;
    if (json_parse(&d, s, len, name) != 0) return -1;
    /* keep only the decoded strings: the stories point into the arena */
    char *arena = d.arena;
    d.arena = NULL;
    if (keep(c, arena, 0, 0) != 0) {
        free(arena);
        json_free(&d);
        return -1;
    }
    int rc = add_json(c, &d, name);
    json_free(&d);
    return rc;
}

int corpus_add_text(corpus *c, const char *text, size_t len, corpus_format fmt, const char *name) {
    char *copy = malloc(len + 1);
    if (!copy) return fb_err("%s: out of memory (%zu bytes)", name, len);
    memcpy(copy, text, len);
    copy[len] = 0;
    if (keep(c, copy, len, 0) != 0) {
        free(copy);
        return -1;
    }
    return add_buffer(c, copy, len, fmt, name, NULL);
}

int corpus_add_file(corpus *c, const char *path, corpus_format fmt, corpus_format *used) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fb_errno("%s: cannot open text input", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fb_err("%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (len == 0) {
        close(fd);
        if (used) *used = fmt;
        return fb_err("%s: empty file (no stories)", path);
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return fb_errno("%s: cannot mmap %zu bytes", path, len);
    madvise(m, len, MADV_SEQUENTIAL);
    corpus_format f = fmt == CORPUS_AUTO ? detect(m, len) : fmt;
    int rc;
    if (f == CORPUS_JSON) {
        /* the arena holds the strings; the raw JSON is not needed afterwards */
        rc = add_buffer(c, m, len, f, path, used);
        munmap(m, len);
    } else {
        if (keep(c, m, len, 1) != 0) {
            munmap(m, len);
            return -1;
        }
        rc = add_buffer(c, m, len, f, path, used);
    }
    return rc;
}

void corpus_free(corpus *c) {
    for (size_t i = 0; i < c->n_store; i++) {
        if (c->store[i].is_map) munmap(c->store[i].p, c->store[i].len);
        else free(c->store[i].p);
    }
    free(c->store);
    free(c->text);
    free(c->len);
    memset(c, 0, sizeof *c);
}

/* ---- tokenization ---------------------------------------------------------------------- */

void tokenize_split_fraction(size_t n, double f, unsigned char *split) {
    for (size_t i = 0; i < n; i++) split[i] = f > 0 && (uint64_t)((double)(i + 1) * f) > (uint64_t)((double)i * f);
}

#define BLOCK_BYTES ((size_t)4 << 20)

int tokenize_corpus(const tokenizer *t, const corpus *c, const unsigned char *split, shard_writer *out[2],
                    int threads, void (*progress)(uint64_t done, uint64_t total, void *ctx), void *ctx,
                    tokenize_stats st[2]) {
    memset(st, 0, 2 * sizeof *st);
    if (threads <= 0) threads = omp_get_max_threads();
    size_t cap = 0;
    int32_t *buf = NULL;
    size_t *off = NULL;       /* off[k]: start of story k of the block in buf */
    long *cnt = NULL;         /* ids story k needs (BOS included), or -1 on error */
    int32_t **big = NULL;     /* story k's ids when they did not fit in its slot (never seen in practice) */
    size_t maxb = 0;
    int rc = 0;
    uint64_t done = 0;
    for (size_t b0 = 0; b0 < c->n && rc == 0;) {
        /* a block: stories until ~BLOCK_BYTES of text (at least one story) */
        size_t b1 = b0, bytes = 0;
        while (b1 < c->n && (b1 == b0 || bytes + c->len[b1] <= BLOCK_BYTES)) bytes += c->len[b1++];
        size_t nb = b1 - b0;
        /* a story needs at most one id per byte (byte fallback), plus the dummy-prefix
         * space and BOS: len + 2; a little slack on top */
        size_t need = bytes + 4 * nb;
        if (need > cap || nb > maxb) {
            free(buf);
            free(off);
            free(cnt);
            free(big);
            cap = need > cap ? need : cap;
            maxb = nb > maxb ? nb : maxb;
            buf = malloc(cap * sizeof *buf);
            off = malloc((maxb + 1) * sizeof *off);
            cnt = malloc(maxb * sizeof *cnt);
            big = calloc(maxb, sizeof *big);
            if (!buf || !off || !cnt || !big) {
                rc = fb_err("tokenize: out of memory for a block of %zu bytes", bytes);
                break;
            }
        }
        off[0] = 0;
        for (size_t k = 0; k < nb; k++) off[k + 1] = off[k] + c->len[b0 + k] + 4;
        long bad = -1;
        char err[512] = "";
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
        for (size_t k = 0; k < nb; k++) {
            size_t i = b0 + k, slot = off[k + 1] - off[k];
            long n = tok_encode(t, c->text[i], c->len[i], 1, 0, buf + off[k], slot);
            if (n > (long)slot) {
                big[k] = malloc((size_t)n * sizeof(int32_t));
                n = big[k] ? tok_encode(t, c->text[i], c->len[i], 1, 0, big[k], (size_t)n) : -1;
                if (!big[k]) fb_err("tokenize: out of memory");
            }
            cnt[k] = n;
            if (n < 0) {
#pragma omp critical(tokenize_err)
                if (bad < 0 || (long)k < bad) {
                    bad = (long)k;
                    snprintf(err, sizeof err, "%s", fb_errmsg()); /* fb_err is per thread */
                }
            }
        }
        if (bad >= 0) {
            rc = fb_err("tokenize: story %zu: %s", b0 + (size_t)bad, err);
        }
        for (size_t k = 0; k < nb && rc == 0; k++) {
            size_t i = b0 + k;
            int which = split ? split[i] != 0 : 0;
            const int32_t *ids = big[k] ? big[k] : buf + off[k];
            if (!out[which]) continue;
            if (shard_writer_put_i32(out[which], ids, (size_t)cnt[k]) != 0) {
                rc = -1; /* the writer has removed its temp file */
                break;
            }
            st[which].stories++;
            st[which].tokens += (uint64_t)cnt[k] - 1;
            st[which].bytes += c->len[i];
        }
        for (size_t k = 0; k < nb; k++) {
            free(big[k]);
            big[k] = NULL;
        }
        done += bytes;
        if (progress && rc == 0) progress(done, c->bytes, ctx);
        b0 = b1;
    }
    free(buf);
    free(off);
    free(cnt);
    free(big);
    return rc;
}
