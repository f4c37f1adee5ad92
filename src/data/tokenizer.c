/* fable — SentencePiece-compatible BPE tokenizer (see include/fable/tokenizer.h and
 * docs/tokenizer.md): encoding and decoding. Loading and saving are in tokenizer_io.c, the
 * struct and the piece tables both use in tokenizer_internal.h.
 *
 * Encoding reproduces sentencepiece 0.1.97 (SentencePieceProcessor::Encode with a BPE
 * model) step by step:
 *
 *   1. Normalize (normalizer.cc). Per input character: a user-defined piece is copied
 *      as is; else the longest match in the precompiled charsmap (double-array trie) is
 *      replaced by its normalized string; else one UTF-8 character is copied, and a byte
 *      that does not start a valid UTF-8 sequence becomes U+FFFD (EF BF BD) and
 *      consumes one byte. With remove_extra_whitespaces, leading, trailing and repeated
 *      spaces are dropped. With escape_whitespaces, ' ' becomes '▁' (U+2581). With
 *      add_dummy_prefix, a '▁' is put in front (behind with treat_whitespace_as_suffix)
 *      unless the text is empty (or only spaces that were removed).
 *   2. BPE (bpe_model.cc). Symbols start as single characters (user-defined pieces are
 *      whole, frozen symbols). Repeatedly merge the adjacent pair whose concatenation is
 *      a piece (NORMAL, USER_DEFINED or UNUSED) with the highest score; ties go to the
 *      leftmost pair. A merged UNUSED piece is split back into the pair that formed it.
 *   3. Ids (sentencepiece_processor.cc). A symbol's id is looked up among the reserved
 *      pieces (CONTROL, UNKNOWN, BYTE) first, then the normal ones; an unknown symbol
 *      becomes its UTF-8 bytes as <0xNN> pieces with byte_fallback, else <unk>.
 *
 * Speed: when no piece contains a non-space character followed by '▁' (true for every
 * vocabulary sentencepiece trains with split_by_whitespace, Llama-2's and tok512's
 * included), no merge can cross the point just before a run of '▁' that follows a
 * non-space character. The normalized text is cut there into words "▁*[^▁]*"; each word
 * is encoded independently (the merge order inside a word is the same as in the whole
 * text: priorities are per pair and ties are broken by position, which a shift does
 * not change) and memoized in a per-thread word → ids cache. That makes encoding a
 * hash lookup per word. Vocabularies where this does not hold (or that have UNUSED
 * pieces, whose resegmentation depends on the whole text) are encoded in one piece.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"
#include "fable/util.h"

/* ---- UTF-8 (sentencepiece's rules) ----------------------------------------------------- */

/* Length of the valid UTF-8 character at s (n bytes available), or 0 when invalid:
 * a bad lead byte, a missing or wrong continuation byte, an overlong form, a surrogate
 * or a code point above U+10FFFF (sentencepiece's DecodeUTF8 + IsValidCodepoint). */
static inline int utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        unsigned cp = ((c & 0x1F) << 6) | (s[1] & 0x3F);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((c & 0xF0) == 0xE0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        unsigned cp = ((c & 0x0F) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3F);
        return cp >= 0x800 && (cp < 0xD800 || cp >= 0xE000) ? 3 : 0;
    }
    if ((c & 0xF8) == 0xF0) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        unsigned cp = ((c & 0x07) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3F);
        return cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
    }
    return 0;
}

/* ---- per-thread scratch and word cache -------------------------------------------------- */

typedef struct {
    int start, len;   /* bytes in the word */
    int prev, next;   /* linked list of live symbols; -1 at the ends */
    int freeze;       /* user-defined piece: never merged */
} bpe_sym;

typedef struct {
    float score;
    int left, right;
    int size;         /* bytes of the merged piece, to detect stale entries */
} bpe_pair;

typedef struct {
    int off, len;     /* merged UNUSED piece (bytes in the text) */
    int left_len;     /* bytes of its left half */
} rev_merge;

typedef struct {
    uint64_t hash;    /* 0 = empty slot */
    uint32_t key_off, key_len;
    uint32_t ids_off, n_ids;
} cache_entry;

/* word → ids memo for one tokenizer (open addressing, grows by doubling) */
typedef struct {
    uint64_t serial;  /* tokenizer it belongs to, 0 = unused */
    uint64_t last_use;
    cache_entry *tab;
    uint32_t mask, used;
    char *keys; size_t keys_n, keys_cap;
    int32_t *cids; size_t cids_n, cids_cap;
} word_cache;

#define CACHE_MAX_WORD 64            /* longer words are not memoized */
#define CACHE_MAX_ENTRIES (1u << 18)
#define CACHE_MAX_BYTES (32u << 20)
#define CACHE_SLOTS 4                /* tokenizers memoized at once per thread */

typedef struct {
    char *norm; size_t norm_cap;
    bpe_sym *sym; size_t sym_cap;
    bpe_pair *heap; size_t heap_cap;
    rev_merge *rev; size_t rev_n, rev_cap;
    int32_t *ids; size_t ids_n, ids_cap;
    word_cache slot[CACHE_SLOTS];
    word_cache *cache;               /* slot of the tokenizer being used */
    uint64_t clock;
} tok_ctx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static _Thread_local tok_ctx *tls_ctx;

static void cache_release(word_cache *w) {
    free(w->tab); free(w->keys); free(w->cids);
    memset(w, 0, sizeof *w);
}

static void ctx_free(void *p) {
    tok_ctx *c = p;
    if (!c) return;
    free(c->norm); free(c->sym); free(c->heap); free(c->rev); free(c->ids);
    for (int i = 0; i < CACHE_SLOTS; i++) cache_release(&c->slot[i]);
    free(c);
}

static void ctx_key_init(void) { pthread_key_create(&ctx_key, ctx_free); }

/* The calling thread's context with c->cache set to t's word cache (the least recently
 * used slot is recycled for a new tokenizer). The context is freed when the thread exits
 * (pthread key destructor). */
static tok_ctx *ctx_get(const tokenizer *t) {
    tok_ctx *c = tls_ctx;
    if (!c) {
        pthread_once(&ctx_once, ctx_key_init);
        c = calloc(1, sizeof *c);
        if (!c) return NULL;
        pthread_setspecific(ctx_key, c);
        tls_ctx = c;
    }
    word_cache *w = NULL;
    for (int i = 0; i < CACHE_SLOTS && !w; i++)
        if (c->slot[i].serial == t->serial) w = &c->slot[i];
    if (!w) {
        w = &c->slot[0];
        for (int i = 1; i < CACHE_SLOTS; i++)
            if (c->slot[i].last_use < w->last_use) w = &c->slot[i];
        cache_release(w);
        w->serial = t->serial;
    }
    w->last_use = ++c->clock;
    c->cache = w;
    return c;
}

/* Grow *p (element size sz) to hold at least need elements. */
static int grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * sz);
    if (!np) return fb_err("tokenizer: out of memory (%zu bytes)", nc * sz);
    *p = np;
    *cap = nc;
    return 0;
}
#define GROW(c, field, capf, need) grow((void **)&(c)->field, &(c)->capf, (need), sizeof *(c)->field)

/* ---- normalization ------------------------------------------------------------------------ */

/* Longest prefix of s (n bytes) in the charsmap trie, at most the first 32 matches
 * considered (sentencepiece's kMaxTrieResultsSize). Returns the match length and the
 * offset of its normalized string, or 0. Darts-clone double array: unit bits 0-7 label
 * (with bit 31 as "is leaf"), bit 8 has_leaf, bit 9 offset scale, bits 10-31 offset. */
static size_t trie_longest(const tokenizer *t, const unsigned char *s, size_t n, uint32_t *value) {
    const uint32_t *u = t->trie;
    size_t nu = t->trie_units, best = 0;
    int found = 0;
#define DA_OFFSET(x) (((x) >> 10) << (((x) & (1u << 9)) >> 6))
    uint32_t pos = DA_OFFSET(u[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= nu) break;
        uint32_t unit = u[pos];
        if ((unit & ((1u << 31) | 0xFF)) != s[i]) break;
        pos ^= DA_OFFSET(unit);
        if ((unit >> 8) & 1) {
            if (pos >= nu) break;
            if (found < 32) {
                best = i + 1;
                *value = u[pos] & ((1u << 31) - 1);
            }
            found++;
        }
    }
#undef DA_OFFSET
    return best;
}

/* Longest user-defined piece that is a prefix of s, or 0. */
static size_t user_prefix(const tokenizer *t, const char *s, size_t n) {
    size_t m = n < (size_t)t->max_user_len ? n : (size_t)t->max_user_len;
    for (size_t l = m; l > 0; l--) {
        int id = table_find(t, &t->normal, s, l);
        if (id >= 0 && t->type[id] == TOK_USER_DEFINED) return l;
    }
    return 0;
}

/* One normalization step at s: *rep and *rep_len receive the replacement, returns bytes consumed. */
static size_t norm_prefix(const tokenizer *t, const char *s, size_t n, const char **rep, size_t *rep_len) {
    if (t->n_user) {
        size_t l = user_prefix(t, s, n);
        if (l) { *rep = s; *rep_len = l; return l; }
    }
    if (t->trie) {
        uint32_t v = 0;
        size_t l = trie_longest(t, (const unsigned char *)s, n, &v);
        if (l && v < t->norm_strs_len) {
            *rep = t->norm_strs + v;
            *rep_len = strnlen(*rep, t->norm_strs_len - v);
            return l;
        }
    }
    int l = utf8_valid_len((const unsigned char *)s, n);
    if (l == 0) {
        *rep = "\xEF\xBF\xBD";  /* U+FFFD replaces one invalid byte */
        *rep_len = 3;
        return 1;
    }
    *rep = s;
    *rep_len = (size_t)l;
    return (size_t)l;
}

/* Normalize text into c->norm; returns its length or -1. */
static long normalize(const tokenizer *t, tok_ctx *c, const char *in, size_t n) {
    if (n == 0) return 0;
    const char *ws = t->escape_ws ? WS : " ";
    size_t wsl = t->escape_ws ? 3 : 1;
    /* Worst case per input byte is 3 output bytes (space → '▁', bad byte → U+FFFD) unless
     * the charsmap expands more; grow on demand in that case. */
    if (GROW(c, norm, norm_cap, 3 * n + 8)) return -1;
    size_t o = 0;
    const char *rep;
    size_t rl;
    if (t->remove_extra_ws) {  /* skip leading spaces */
        while (n) {
            size_t k = norm_prefix(t, in, n, &rep, &rl);
            if (!(rl == 1 && rep[0] == ' ')) break;
            in += k;
            n -= k;
        }
        if (n == 0) return 0;
    }
    if (t->add_dummy_prefix && !t->ws_suffix) { memcpy(c->norm, ws, wsl); o = wsl; }
    int prev_space = t->remove_extra_ws;
    const int fast = !t->n_user && !t->trie;
    while (n) {
        size_t k;
        unsigned char ch = (unsigned char)*in;
        if (fast && ch < 0x80) {  /* ASCII: itself */
            rep = in;
            rl = 1;
            k = 1;
        } else {
            k = norm_prefix(t, in, n, &rep, &rl);
        }
        if (prev_space)
            while (rl && rep[0] == ' ') { rep++; rl--; }
        if (rl) {
            if (o + 3 * rl + 8 > c->norm_cap && GROW(c, norm, norm_cap, o + 3 * rl + 3 * n + 8)) return -1;
            for (size_t i = 0; i < rl; i++) {
                if (rep[i] == ' ' && t->escape_ws) { memcpy(c->norm + o, WS, 3); o += 3; }
                else c->norm[o++] = rep[i];
            }
            prev_space = rep[rl - 1] == ' ';
        }
        if (!t->remove_extra_ws) prev_space = 0;
        in += k;
        n -= k;
    }
    if (t->remove_extra_ws)
        while (o >= wsl && memcmp(c->norm + o - wsl, ws, wsl) == 0) o -= wsl;
    if (t->add_dummy_prefix && t->ws_suffix) {
        if (GROW(c, norm, norm_cap, o + wsl)) return -1;
        memcpy(c->norm + o, ws, wsl);
        o += wsl;
    }
    return (long)o;
}

/* ---- BPE on one word ------------------------------------------------------------------------ */

/* Heap order: higher score first, then the leftmost pair (sentencepiece's comparator). */
static inline int pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(bpe_pair *h, size_t *n, bpe_pair p) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
}

static bpe_pair heap_pop(bpe_pair *h, size_t *n) {
    bpe_pair top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        size_t r = l + 1, b = (r < m && pair_before(&h[r], &h[l])) ? r : l;
        if (!pair_before(&h[b], &last)) break;
        h[i] = h[b];
        i = b;
    }
    if (m) h[i] = last;
    return top;
}

static int emit(tok_ctx *c, int32_t id) {
    if (c->ids_n == c->ids_cap && GROW(c, ids, ids_cap, c->ids_n + 1)) return -1;
    c->ids[c->ids_n++] = id;
    return 0;
}

/* Ids of one final symbol (step 3 of the header comment). */
static int emit_symbol(const tokenizer *t, tok_ctx *c, const char *s, size_t n) {
    int id = table_find(t, &t->reserved, s, n);
    if (id < 0) id = table_find(t, &t->normal, s, n);
    if (id >= 0) return emit(c, id);
    if (!t->byte_fallback) return emit(c, t->unk_id);
    for (size_t i = 0; i < n; i++)
        if (emit(c, t->byte_id[(unsigned char)s[i]])) return -1;
    return 0;
}

/* Split a merged UNUSED piece back into the pair that formed it, recursively, using the
 * latest recorded merge of that text (sentencepiece's rev_merge map keeps the last
 * insertion). */
static int resegment(const tokenizer *t, tok_ctx *c, const char *base, const char *s, size_t n) {
    int id = table_find(t, &t->reserved, s, n);
    if (id < 0) id = table_find(t, &t->normal, s, n);
    if (id < 0 || t->type[id] != TOK_UNUSED) return emit_symbol(t, c, s, n);
    for (size_t k = c->rev_n; k-- > 0;) {
        const rev_merge *r = &c->rev[k];
        if ((size_t)r->len == n && memcmp(base + r->off, s, n) == 0) {
            size_t l = (size_t)r->left_len;
            if (resegment(t, c, base, s, l)) return -1;
            return resegment(t, c, base, s + l, n - l);
        }
    }
    return emit(c, id);
}

/* Candidate merge of symbols a and b (adjacent, both alive). */
static inline void try_pair(const tokenizer *t, tok_ctx *c, const char *s, int a, int b, size_t *hn) {
    if (a < 0 || b < 0) return;
    bpe_sym *sa = &c->sym[a], *sb = &c->sym[b];
    if (sa->freeze || sb->freeze) return;
    size_t len = (size_t)sa->len + (size_t)sb->len;
    if (len > t->max_len) return;
    int id = table_find(t, &t->normal, s + sa->start, len);
    if (id < 0) return;
    bpe_pair p = {t->score[id], a, b, (int)len};
    heap_push(c->heap, hn, p);
    if (t->type[id] == TOK_UNUSED) {
        if (c->rev_n == c->rev_cap && GROW(c, rev, rev_cap, c->rev_n + 1)) return;
        c->rev[c->rev_n++] = (rev_merge){sa->start, (int)len, sa->len};
    }
}

/* Encode the normalized bytes s[0..n) with BPE, appending ids to c->ids. */
static int bpe_word(const tokenizer *t, tok_ctx *c, const char *s, size_t n) {
    if (n == 0) return 0;
    if (GROW(c, sym, sym_cap, n) || GROW(c, heap, heap_cap, 2 * n + 2)) return -1;
    int ns = 0;
    for (size_t i = 0; i < n;) {
        size_t l = 0;
        int fr = 0;
        if (t->n_user && (l = user_prefix(t, s + i, n - i)) > 0) fr = 1;
        if (!l) {
            l = (size_t)one_char_len((unsigned char)s[i]);
            if (l > n - i) l = n - i;
        }
        c->sym[ns] = (bpe_sym){(int)i, (int)l, ns - 1, i + l < n ? ns + 1 : -1, fr};
        ns++;
        i += l;
    }
    size_t hn = 0;
    c->rev_n = 0;
    /* Every merge adds at most two pairs and there are < ns merges: 3 * ns bounds the heap. */
    if (GROW(c, heap, heap_cap, 3 * (size_t)ns + 2)) return -1;
    for (int i = 1; i < ns; i++) try_pair(t, c, s, i - 1, i, &hn);
    while (hn) {
        bpe_pair p = heap_pop(c->heap, &hn);
        bpe_sym *l = &c->sym[p.left], *r = &c->sym[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.size) continue;  /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) c->sym[r->next].prev = p.left;
        r->len = 0;
        try_pair(t, c, s, l->prev, p.left, &hn);
        try_pair(t, c, s, p.left, l->next, &hn);
    }
    for (int i = 0; i >= 0; i = c->sym[i].next) {
        const bpe_sym *y = &c->sym[i];
        int rc = t->has_unused ? resegment(t, c, s, s + y->start, (size_t)y->len)
                               : emit_symbol(t, c, s + y->start, (size_t)y->len);
        if (rc) return -1;
    }
    return 0;
}

/* ---- word cache ------------------------------------------------------------------------------ */

static int cache_grow(word_cache *w) {
    uint32_t cap = w->tab ? 2 * (w->mask + 1) : 4096;
    cache_entry *nt = calloc(cap, sizeof *nt);
    if (!nt) return -1;
    for (uint32_t i = 0; w->tab && i <= w->mask; i++) {
        if (!w->tab[i].hash) continue;
        uint32_t j = (uint32_t)(w->tab[i].hash >> 20) & (cap - 1);
        while (nt[j].hash) j = (j + 1) & (cap - 1);
        nt[j] = w->tab[i];
    }
    free(w->tab);
    w->tab = nt;
    w->mask = cap - 1;
    return 0;
}

/* Encode one word through the cache: ids appended to c->ids. */
static int word_cached(const tokenizer *t, tok_ctx *c, const char *s, size_t n) {
    word_cache *w = c->cache;
    if (n > CACHE_MAX_WORD || (!w->tab && cache_grow(w))) return bpe_word(t, c, s, n);
    uint64_t h = tok_hash(s, n) | 1;  /* hash 0 marks an empty slot */
    uint32_t i = (uint32_t)(h >> 20) & w->mask;
    for (;;) {
        cache_entry *e = &w->tab[i];
        if (e->hash == 0) break;
        if (e->hash == h && e->key_len == n && memcmp(w->keys + e->key_off, s, n) == 0) {
            if (GROW(c, ids, ids_cap, c->ids_n + e->n_ids)) return -1;
            memcpy(c->ids + c->ids_n, w->cids + e->ids_off, e->n_ids * sizeof(int32_t));
            c->ids_n += e->n_ids;
            return 0;
        }
        i = (i + 1) & w->mask;
    }
    size_t before = c->ids_n;
    if (bpe_word(t, c, s, n)) return -1;
    size_t k = c->ids_n - before;
    if (w->used >= CACHE_MAX_ENTRIES || w->keys_n + n > CACHE_MAX_BYTES ||
        (w->cids_n + k) * sizeof(int32_t) > CACHE_MAX_BYTES) {
        /* full: start over (simple, and rare on natural text) */
        memset(w->tab, 0, (size_t)(w->mask + 1) * sizeof *w->tab);
        w->used = 0;
        w->keys_n = w->cids_n = 0;
    } else if (2 * (w->used + 1) > w->mask + 1) {
        if (cache_grow(w)) return 0;
    } else {
        goto insert;
    }
    i = (uint32_t)(h >> 20) & w->mask;
    while (w->tab[i].hash) i = (i + 1) & w->mask;
insert:
    if (GROW(w, keys, keys_cap, w->keys_n + n) || GROW(w, cids, cids_cap, w->cids_n + k)) return 0;
    memcpy(w->keys + w->keys_n, s, n);
    memcpy(w->cids + w->cids_n, c->ids + before, k * sizeof(int32_t));
    w->tab[i] = (cache_entry){h, (uint32_t)w->keys_n, (uint32_t)n, (uint32_t)w->cids_n, (uint32_t)k};
    w->keys_n += n;
    w->cids_n += k;
    w->used++;
    return 0;
}

/* ---- encode --------------------------------------------------------------------------------- */

long tok_encode(const tokenizer *t, const char *text, size_t len, int bos, int eos, int32_t *out,
                size_t max) {
    if (!t) return fb_err("tok_encode: no tokenizer");
    if (!text && len) return fb_err("tok_encode: NULL text");
    tok_ctx *c = ctx_get(t);
    if (!c) return fb_err("tok_encode: out of memory");
    c->ids_n = 0;
    if (bos && t->bos_id >= 0 && emit(c, t->bos_id)) return -1;
    long nn = normalize(t, c, text, len);
    if (nn < 0) return -1;
    const char *s = c->norm;
    size_t n = (size_t)nn;
    if (t->word_split && t->escape_ws) {
        /* Words are "▁*[^▁]*": cut before a '▁' that follows a non-'▁' character. */
        size_t i = 0;
        while (i < n) {
            size_t j = i;
            while (j + 3 <= n && memcmp(s + j, WS, 3) == 0) j += 3;
            while (j < n) {
                const char *p = memchr(s + j, 0xE2, n - j);
                if (!p) { j = n; break; }
                j = (size_t)(p - s);
                if (j + 3 <= n && memcmp(s + j, WS, 3) == 0) break;
                j++;
            }
            if (word_cached(t, c, s + i, j - i)) return -1;
            i = j;
        }
    } else if (t->word_split) {  /* spaces kept as ' ' */
        size_t i = 0;
        while (i < n) {
            size_t j = i;
            while (j < n && s[j] == ' ') j++;
            while (j < n && s[j] != ' ') j++;
            if (word_cached(t, c, s + i, j - i)) return -1;
            i = j;
        }
    } else if (bpe_word(t, c, s, n)) {
        return -1;
    }
    if (!t->byte_fallback) {
        /* sentencepiece merges a run of unknown pieces into one <unk> (so a decoder can
         * copy the unknown surface in one go); with byte fallback there are none. */
        size_t o = 0;
        for (size_t i = 0; i < c->ids_n; i++)
            if (!(c->ids[i] == t->unk_id && o && c->ids[o - 1] == t->unk_id)) c->ids[o++] = c->ids[i];
        c->ids_n = o;
    }
    if (eos && t->eos_id >= 0 && emit(c, t->eos_id)) return -1;
    size_t k = c->ids_n < max ? c->ids_n : max;
    if (k) memcpy(out, c->ids, k * sizeof(int32_t));
    return (long)c->ids_n;
}

/* ---- decode ---------------------------------------------------------------------------------- */

const char *tok_decode_piece(const tokenizer *t, int prev, int id, size_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return "";
    }
    if (t->byte_val[id] >= 0) {
        if (len) *len = 1;
        return t->byte_str[t->byte_val[id]];
    }
    const char *p = t->bin[id];
    size_t n = t->bin_len[id];
    if (prev == t->bos_id && n && p[0] == ' ') { p++; n--; }
    if (len) *len = n;
    return p;
}

long tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char *out, size_t max) {
    size_t o = 0;
    int at_start = 1;  /* no visible text yet: the dummy-prefix space is dropped */
#define PUT(p, k)                                                   \
    do {                                                            \
        size_t k_ = (k);                                            \
        if (o < max) memcpy(out + o, (p), o + k_ <= max ? k_ : max - o); \
        o += k_;                                                    \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n) return fb_err("decode: id %d is outside the vocabulary (0..%d)", id, t->n - 1);
        int ty = t->type[id];
        if (ty == TOK_CONTROL) continue;
        if (ty == TOK_UNKNOWN) {
            PUT(t->unk_surface, strlen(t->unk_surface));
            at_start = 0;
            continue;
        }
        if (ty == TOK_BYTE) {
            char b = (char)t->byte_val[id];
            PUT(&b, 1);
            at_start = 0;
            continue;
        }
        const char *p = t->sp[id];
        size_t k = t->sp_len[id];
        if (at_start && (t->add_dummy_prefix || t->remove_extra_ws) && k >= 3 && memcmp(p, WS, 3) == 0) {
            p += 3;
            k -= 3;
        }
        at_start = 0;
        for (size_t j = 0; j < k;) {
            if (j + 3 <= k && memcmp(p + j, WS, 3) == 0) { PUT(" ", 1); j += 3; }
            else { PUT(p + j, 1); j++; }
        }
    }
#undef PUT
    return (long)o;
}

void tok_free(tokenizer *t) {
    tok_ctx *c = tls_ctx;
    for (int i = 0; t && c && i < CACHE_SLOTS; i++)
        if (c->slot[i].serial == t->serial) cache_release(&c->slot[i]);
    tok_free_partial(t);
}

/* ---- accessors ------------------------------------------------------------------------------- */

int tok_vocab_size(const tokenizer *t) { return t->n; }
int tok_bos_id(const tokenizer *t) { return t->bos_id; }
int tok_eos_id(const tokenizer *t) { return t->eos_id; }
int tok_unk_id(const tokenizer *t) { return t->unk_id; }
int tok_is_spm_model(const tokenizer *t) { return t->from_model; }

const char *tok_piece(const tokenizer *t, int id) { return id >= 0 && id < t->n ? t->bin[id] : ""; }
const char *tok_sp_piece(const tokenizer *t, int id) { return id >= 0 && id < t->n ? t->sp[id] : ""; }
float tok_score(const tokenizer *t, int id) { return id >= 0 && id < t->n ? t->score[id] : 0.0f; }
int tok_piece_type(const tokenizer *t, int id) { return id >= 0 && id < t->n ? t->type[id] : 0; }

int tok_piece_id(const tokenizer *t, const char *sp_piece) {
    size_t n = strlen(sp_piece);
    int id = table_find(t, &t->reserved, sp_piece, n);
    return id >= 0 ? id : table_find(t, &t->normal, sp_piece, n);
}

void tok_get_normalizer(const tokenizer *t, int *add_dummy_prefix, int *remove_extra_whitespaces) {
    if (add_dummy_prefix) *add_dummy_prefix = t->add_dummy_prefix;
    if (remove_extra_whitespaces) *remove_extra_whitespaces = t->remove_extra_ws;
}

void tok_set_normalizer(tokenizer *t, int add_dummy_prefix, int remove_extra_whitespaces) {
    t->add_dummy_prefix = add_dummy_prefix != 0;
    t->remove_extra_ws = remove_extra_whitespaces != 0;
}

