/* fable — loading and saving tokenizers: a SentencePiece ModelProto (.model, through
 * spm_proto.c) or a llama2.c tokenizer.bin, detected by content, and both forms written
 * back. Every length and offset read from a file is checked before use: a truncated or
 * corrupt file is an error naming the file and the problem (see include/fable/tokenizer.h). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/spm_proto.h"
#include "data/tokenizer_internal.h"
#include "fable/util.h"

static atomic_uint_fast64_t next_serial = 1; /* tok_finish: unique per load, keys the per-thread caches */

/* ---- piece tables --------------------------------------------------------------------------- */

static int table_init(piece_table *tb, int n) {
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2 + 1) cap <<= 1;
    tb->hash = malloc(cap * sizeof *tb->hash);
    tb->id = malloc(cap * sizeof *tb->id);
    if (!tb->hash || !tb->id) return fb_err("out of memory building the piece table");
    memset(tb->id, 0xff, cap * sizeof *tb->id);
    tb->mask = cap - 1;
    return 0;
}

static void table_free(piece_table *tb) {
    free(tb->hash);
    free(tb->id);
}

/* Insert id; returns the id already holding the same text, or -1 when inserted. */
static int table_insert(tokenizer *t, piece_table *tb, int id) {
    const char *s = t->sp[id];
    size_t n = t->sp_len[id];
    uint64_t h = tok_hash(s, n);
    uint32_t h32 = (uint32_t)h, i = (uint32_t)(h >> 32) & tb->mask;
    for (;;) {
        int o = tb->id[i];
        if (o < 0) {
            tb->id[i] = id;
            tb->hash[i] = h32;
            return -1;
        }
        if (tb->hash[i] == h32 && t->sp_len[o] == n && memcmp(t->sp[o], s, n) == 0) return o;
        i = (i + 1) & tb->mask;
    }
}

/* ---- loading --------------------------------------------------------------------------------- */

void tok_free_partial(tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) {
        if (t->sp) free(t->sp[i]);
        if (t->bin) free(t->bin[i]);
    }
    free(t->sp); free(t->sp_len); free(t->bin); free(t->bin_len);
    free(t->score); free(t->type); free(t->byte_val); free(t->unk_surface); free(t->charsmap);
    free(t->trie);
    table_free(&t->normal);
    table_free(&t->reserved);
    free(t);
}

static tokenizer *tok_alloc(int n) {
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = n;
    t->sp = calloc((size_t)n, sizeof *t->sp);
    t->sp_len = calloc((size_t)n, sizeof *t->sp_len);
    t->bin = calloc((size_t)n, sizeof *t->bin);
    t->bin_len = calloc((size_t)n, sizeof *t->bin_len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = calloc((size_t)n, sizeof *t->type);
    t->byte_val = calloc((size_t)n, sizeof *t->byte_val);
    if (!t->sp || !t->sp_len || !t->bin || !t->bin_len || !t->score || !t->type || !t->byte_val) {
        tok_free_partial(t);
        return NULL;
    }
    return t;
}

static char *mem_dup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Replace every occurrence of `from` by `to` in s[0..n). */
static char *replace_all(const char *s, size_t n, const char *from, const char *to, uint32_t *out_len) {
    size_t fl = strlen(from), tl = strlen(to), cnt = 0;
    for (size_t i = 0; i + fl <= n;) {
        if (memcmp(s + i, from, fl) == 0) { cnt++; i += fl; } else i++;
    }
    size_t m = n + cnt * tl - cnt * fl;
    char *d = malloc(m + 1);
    if (!d) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + fl <= n && memcmp(s + i, from, fl) == 0) { memcpy(d + o, to, tl); o += tl; i += fl; }
        else d[o++] = s[i++];
    }
    d[o] = 0;
    *out_len = (uint32_t)o;
    return d;
}

/* "<0xNN>" with two upper-case hex digits → NN, else -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Common second half of loading: tables, byte pieces, word-split check. Frees t on error. */
static tokenizer *tok_finish(tokenizer *t, const char *name) {
    if (table_init(&t->normal, t->n) || table_init(&t->reserved, t->n)) goto fail;
    for (int i = 0; i < 256; i++) {
        t->byte_id[i] = -1;
        t->byte_str[i][0] = (char)i;
        t->byte_str[i][1] = 0;
    }
    int n_bytes = 0, unk = -1;
    for (int id = 0; id < t->n; id++) {
        int ty = t->type[id];
        t->byte_val[id] = -1;
        if (t->sp_len[id] > t->max_len) t->max_len = t->sp_len[id];
        int normal = ty == TOK_NORMAL || ty == TOK_USER_DEFINED || ty == TOK_UNUSED;
        int dup = table_insert(t, normal ? &t->normal : &t->reserved, id);
        if (dup >= 0) {
            if (t->from_model) {
                fb_err("%s: piece %d '%s' is already defined as piece %d", name, id, t->sp[id], dup);
                goto fail;
            }
            /* tokenizer.bin: keep the first (as a lookup would find it) */
        }
        if (ty == TOK_USER_DEFINED) {
            t->n_user++;
            if ((int)t->sp_len[id] > t->max_user_len) t->max_user_len = (int)t->sp_len[id];
        }
        if (ty == TOK_UNUSED) t->has_unused = 1;
        if (ty == TOK_UNKNOWN) {
            if (unk >= 0) {
                fb_err("%s: two <unk> pieces (%d and %d)", name, unk, id);
                goto fail;
            }
            unk = id;
        }
        if (ty == TOK_BYTE) {
            int b = parse_byte_piece(t->sp[id], t->sp_len[id]);
            if (b < 0) {
                fb_err("%s: byte piece %d '%s' is not of the form <0xNN>", name, id, t->sp[id]);
                goto fail;
            }
            if (t->byte_id[b] < 0) n_bytes++;
            if (t->byte_id[b] < 0) t->byte_id[b] = id;
            t->byte_val[id] = (int16_t)b;
        }
    }
    if (unk < 0) {
        if (t->from_model) {
            fb_err("%s: the model has no <unk> piece", name);
            goto fail;
        }
        unk = 0;
    }
    t->unk_id = unk;
    if (t->byte_fallback && n_bytes != 256) {
        fb_err("%s: byte_fallback is on but only %d of the 256 byte pieces <0x00>..<0xFF> exist", name, n_bytes);
        goto fail;
    }
    if (!t->from_model) t->byte_fallback = n_bytes == 256;
    /* Word split is exact when no mergeable piece holds a non-space followed by a space
     * symbol (then no merge crosses a word start) and there is no UNUSED piece. */
    const char *ws = t->escape_ws ? WS : " ";
    size_t wsl = strlen(ws);
    t->word_split = !t->has_unused;
    for (int id = 0; id < t->n && t->word_split; id++) {
        int ty = t->type[id];
        if (!(ty == TOK_NORMAL || ty == TOK_USER_DEFINED || ty == TOK_UNUSED)) continue;
        const char *s = t->sp[id];
        size_t n = t->sp_len[id];
        int prev_ws = 1;  /* start of piece counts as a boundary */
        for (size_t i = 0; i < n;) {
            int is_ws = i + wsl <= n && memcmp(s + i, ws, wsl) == 0;
            if (is_ws && !prev_ws) { t->word_split = 0; break; }
            prev_ws = is_ws;
            i += is_ws ? wsl : (size_t)one_char_len((unsigned char)s[i]);
        }
    }
    t->serial = atomic_fetch_add(&next_serial, 1);
    return t;
fail:
    tok_free_partial(t);
    return NULL;
}

/* llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score, int32 len,
 * len bytes. Sizes are validated so that random bytes are rejected, not trusted. */
static tokenizer *load_bin(const uint8_t *d, size_t len, const char *name, char *why, size_t whylen) {
    if (len < 4) { snprintf(why, whylen, "%zu bytes, too short for a tokenizer.bin header", len); return NULL; }
    int32_t maxlen;
    memcpy(&maxlen, d, 4);
    if (maxlen <= 0 || maxlen > 4096) {
        snprintf(why, whylen, "max_token_length %d is implausible", maxlen);
        return NULL;
    }
    /* First pass: count and validate the records. */
    size_t p = 4, n = 0;
    while (p < len) {
        if (len - p < 8) { snprintf(why, whylen, "truncated: token %zu has a partial header at byte %zu", n, p); return NULL; }
        float sc;
        int32_t l;
        memcpy(&sc, d + p, 4);
        memcpy(&l, d + p + 4, 4);
        if (l <= 0 || l > 4096 || !isfinite(sc)) {
            snprintf(why, whylen, "token %zu at byte %zu has length %d / score %g (corrupt or not a tokenizer.bin)", n, p, l, (double)sc);
            return NULL;
        }
        if ((size_t)l > len - p - 8) {
            snprintf(why, whylen, "truncated: token %zu needs %d bytes at byte %zu, the file ends at %zu", n, l, p + 8, len);
            return NULL;
        }
        p += 8 + (size_t)l;
        n++;
        if (n > (1u << 24)) { snprintf(why, whylen, "more than 2^24 tokens"); return NULL; }
    }
    if (n < 3) { snprintf(why, whylen, "only %zu tokens", n); return NULL; }
    tokenizer *t = tok_alloc((int)n);
    if (!t) { snprintf(why, whylen, "out of memory"); return NULL; }
    t->from_model = 0;
    t->add_dummy_prefix = 1;
    t->remove_extra_ws = 0;
    t->escape_ws = 1;
    t->bos_id = t->eos_id = -1;
    p = 4;
    for (size_t i = 0; i < n; i++) {
        int32_t l;
        memcpy(&t->score[i], d + p, 4);
        memcpy(&l, d + p + 4, 4);
        const char *s = (const char *)d + p + 8;
        p += 8 + (size_t)l;
        t->bin[i] = mem_dup(s, (size_t)l);
        t->bin_len[i] = (uint32_t)l;
        if (!t->bin[i]) goto oom;
        int ty = TOK_NORMAL;
        const char *sps = NULL;
        if ((l == 5 && !memcmp(s, "\n<s>\n", 5)) || (l == 3 && !memcmp(s, "<s>", 3))) {
            ty = TOK_CONTROL;
            sps = "<s>";
            if (t->bos_id < 0) t->bos_id = (int)i;
        } else if ((l == 6 && !memcmp(s, "\n</s>\n", 6)) || (l == 4 && !memcmp(s, "</s>", 4))) {
            ty = TOK_CONTROL;
            sps = "</s>";
            if (t->eos_id < 0) t->eos_id = (int)i;
        } else if (l == 5 && !memcmp(s, "<unk>", 5)) {
            ty = TOK_UNKNOWN;
        } else if (parse_byte_piece(s, (size_t)l) >= 0) {
            ty = TOK_BYTE;
        }
        t->type[i] = (uint8_t)ty;
        if (sps) {
            t->sp[i] = mem_dup(sps, strlen(sps));
            t->sp_len[i] = (uint32_t)strlen(sps);
        } else if (ty == TOK_NORMAL) {
            t->sp[i] = replace_all(s, (size_t)l, " ", WS, &t->sp_len[i]);
        } else {
            t->sp[i] = mem_dup(s, (size_t)l);
            t->sp_len[i] = (uint32_t)l;
        }
        if (!t->sp[i]) goto oom;
    }
    if (!(t->unk_surface = mem_dup(" \xE2\x81\x87 ", 5))) goto oom;
    return tok_finish(t, name);
oom:
    tok_free_partial(t);
    snprintf(why, whylen, "out of memory");
    return NULL;
}

static tokenizer *load_model(const uint8_t *d, size_t len, const char *name, char *why, size_t whylen) {
    spm_model m;
    if (spm_model_parse(&m, d, len, why, whylen)) {
        spm_model_free(&m);
        return NULL;
    }
    if (m.model_type != SPM_BPE) {
        snprintf(why, whylen, "model_type is %s; fable encodes BPE models only",
                 m.model_type == SPM_UNIGRAM ? "unigram" : m.model_type == SPM_WORD ? "word"
                 : m.model_type == SPM_CHAR ? "char" : "unknown");
        spm_model_free(&m);
        return NULL;
    }
    tokenizer *t = tok_alloc(m.n_pieces);
    if (!t) { spm_model_free(&m); snprintf(why, whylen, "out of memory"); return NULL; }
    t->from_model = 1;
    t->add_dummy_prefix = m.add_dummy_prefix;
    t->remove_extra_ws = m.remove_extra_whitespaces;
    t->escape_ws = m.escape_whitespaces;
    t->ws_suffix = m.treat_whitespace_as_suffix;
    t->byte_fallback = m.byte_fallback;
    t->bos_id = t->eos_id = -1;
    for (int i = 0; i < m.n_pieces; i++) {
        spm_piece *pc = &m.pieces[i];
        t->sp[i] = pc->piece;  /* take ownership */
        t->sp_len[i] = pc->len;
        pc->piece = NULL;
        t->score[i] = pc->score;
        t->type[i] = (uint8_t)pc->type;
        if (pc->type == TOK_BYTE && !m.byte_fallback) {
            snprintf(why, whylen, "byte piece %d '%s' found although byte_fallback is false", i, t->sp[i]);
            goto fail;
        }
    }
    /* BOS/EOS: the trainer's bos_piece/eos_piece when they are control pieces (Llama-2,
     * tok512: "<s>" = 1, "</s>" = 2). */
    for (int i = 0; i < t->n; i++) {
        if (t->type[i] != TOK_CONTROL) continue;
        if (t->bos_id < 0 && !strcmp(t->sp[i], m.bos_piece)) t->bos_id = i;
        if (t->eos_id < 0 && !strcmp(t->sp[i], m.eos_piece)) t->eos_id = i;
    }
    for (int i = 0; i < t->n; i++) {
        const char *s = t->sp[i];
        size_t n = t->sp_len[i];
        if (i == t->bos_id) { s = "\n<s>\n"; n = 5; }
        else if (i == t->eos_id) { s = "\n</s>\n"; n = 6; }
        t->bin[i] = replace_all(s, n, WS, " ", &t->bin_len[i]);
        if (!t->bin[i]) { snprintf(why, whylen, "out of memory"); goto fail; }
    }
    t->unk_surface = m.unk_surface;
    m.unk_surface = NULL;
    if (m.charsmap_len) {
        /* blob: uint32 trie bytes (LE), the trie's uint32 units, then NUL-separated strings */
        if (m.charsmap_len < 4) { snprintf(why, whylen, "precompiled_charsmap is truncated"); goto fail; }
        uint32_t tb = (uint32_t)m.charsmap[0] | (uint32_t)m.charsmap[1] << 8 |
                      (uint32_t)m.charsmap[2] << 16 | (uint32_t)m.charsmap[3] << 24;
        if (tb > m.charsmap_len - 4 || tb % 4 || tb == 0) {
            snprintf(why, whylen, "precompiled_charsmap: bad trie size %u", tb);
            goto fail;
        }
        t->trie_units = tb / 4;
        t->trie = malloc(tb);
        if (!t->trie) { snprintf(why, whylen, "out of memory"); goto fail; }
        for (size_t k = 0; k < t->trie_units; k++) {
            const uint8_t *u = m.charsmap + 4 + 4 * k;
            t->trie[k] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
        }
        t->charsmap = m.charsmap;
        m.charsmap = NULL;
        t->norm_strs = (const char *)t->charsmap + 4 + tb;
        t->norm_strs_len = m.charsmap_len - 4 - tb;
    }
    spm_model_free(&m);
    return tok_finish(t, name);
fail:
    spm_model_free(&m);
    tok_free_partial(t);
    return NULL;
}

tokenizer *tok_load_mem(const void *data, size_t len, const char *name) {
    const uint8_t *d = data;
    char why_model[512] = "", why_bin[512] = "";
    if (len == 0) {
        fb_err("%s: empty file, not a tokenizer (expected a SentencePiece .model or a llama2.c tokenizer.bin)", name);
        return NULL;
    }
    /* A ModelProto starts with field 1 (pieces), wire type 2: byte 0x0A. */
    if (d[0] == 0x0A) {
        tokenizer *t = load_model(d, len, name, why_model, sizeof why_model);
        if (t) return t;
        if (!why_model[0]) snprintf(why_model, sizeof why_model, "%s", fb_errmsg());
    }
    tokenizer *t = load_bin(d, len, name, why_bin, sizeof why_bin);
    if (t) return t;
    if (!why_bin[0]) snprintf(why_bin, sizeof why_bin, "%s", fb_errmsg());
    if (d[0] == 0x0A)
        fb_err("%s: not a valid tokenizer (truncated or corrupt?): as a SentencePiece .model: %s; as a llama2.c tokenizer.bin: %s",
               name, why_model, why_bin);
    else
        fb_err("%s: not a tokenizer (neither a SentencePiece .model nor a llama2.c tokenizer.bin): %s", name, why_bin);
    return NULL;
}

tokenizer *tok_load(const char *path) {
    char *data;
    size_t len;
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fb_err("%s: not a regular file (expected a SentencePiece .model or a llama2.c tokenizer.bin)", path);
        return NULL;
    }
    if (fb_read_file(path, &data, &len)) return NULL;
    tokenizer *t = tok_load_mem(data, len, path);
    free(data);
    return t;
}

/* ---- saving ---------------------------------------------------------------------------------- */

int tok_save_bin(const tokenizer *t, const char *path) {
    size_t total = 4, maxlen = 0;
    for (int i = 0; i < t->n; i++) {
        total += 8 + t->bin_len[i];
        if (t->bin_len[i] > maxlen) maxlen = t->bin_len[i];
    }
    uint8_t *buf = malloc(total);
    if (!buf) return fb_err("%s: out of memory", path);
    int32_t ml = (int32_t)maxlen;
    memcpy(buf, &ml, 4);
    size_t p = 4;
    for (int i = 0; i < t->n; i++) {
        int32_t l = (int32_t)t->bin_len[i];
        memcpy(buf + p, &t->score[i], 4);
        memcpy(buf + p + 4, &l, 4);
        memcpy(buf + p + 8, t->bin[i], (size_t)l);
        p += 8 + (size_t)l;
    }
    int rc = fb_write_file_atomic(path, buf, total);
    free(buf);
    return rc;
}

int tok_save_model(const tokenizer *t, const char *path) {
    spm_model m;
    spm_model_defaults(&m);
    m.model_type = SPM_BPE;
    m.vocab_size = t->n;
    m.byte_fallback = t->byte_fallback;
    m.treat_whitespace_as_suffix = t->ws_suffix;
    m.character_coverage = 1.0f;
    m.unk_id = t->unk_id;
    m.bos_id = t->bos_id;
    m.eos_id = t->eos_id;
    m.add_dummy_prefix = t->add_dummy_prefix;
    m.remove_extra_whitespaces = t->remove_extra_ws;
    m.escape_whitespaces = t->escape_ws;
    m.norm_name = (char *)"identity";
    m.unk_surface = t->unk_surface;
    m.unk_piece = t->sp[t->unk_id];
    m.bos_piece = t->bos_id >= 0 ? t->sp[t->bos_id] : (char *)"<s>";
    m.eos_piece = t->eos_id >= 0 ? t->sp[t->eos_id] : (char *)"</s>";
    m.pad_piece = (char *)"<pad>";
    if (t->charsmap) {
        m.norm_name = (char *)"custom";
        m.charsmap = t->charsmap;
        m.charsmap_len = 4 + t->trie_units * 4 + t->norm_strs_len;
    }
    m.n_pieces = t->n;
    m.pieces = malloc((size_t)t->n * sizeof *m.pieces);
    if (!m.pieces) return fb_err("%s: out of memory", path);
    for (int i = 0; i < t->n; i++)
        m.pieces[i] = (spm_piece){t->sp[i], t->sp_len[i], t->score[i], t->type[i]};
    uint8_t *buf;
    size_t len;
    int rc = spm_model_serialize(&m, &buf, &len);
    free(m.pieces);
    if (rc) return fb_err("%s: %s", path, fb_errmsg());
    rc = fb_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

