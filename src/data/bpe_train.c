/* fable — BPE tokenizer trainer following sentencepiece's BPE trainer (bpe_model_trainer.cc),
 * so that the vocabulary it writes behaves like one from `spm_train --model_type=bpe` with
 * llama2.c's tok512 recipe (byte_fallback, split_digits, allow_whitespace_only_pieces,
 * identity normalization, character_coverage 1.0).
 *
 * Algorithm:
 *   1. Sentences: every line of every story (sentencepiece reads its input line by line;
 *      llama2.c writes one story per line, so its sentences are the stories' paragraphs).
 *      Each is normalized like the encoder does: '▁' in front (dummy prefix), ' ' → '▁',
 *      an invalid UTF-8 byte → U+FFFD. Spaces are kept as they are (remove_extra_whitespaces
 *      is off in the written model, so that the .model and the .bin encode alike).
 *   2. Words: split before every '▁' that follows a non-'▁' character (SplitIntoWords with
 *      allow_whitespace_only_pieces: a word is "▁*[^▁]*"); count equal words once with their
 *      frequency.
 *   3. Characters: counted over all sentences; the most frequent ones covering
 *      `character_coverage` of all characters become pieces ("required chars"); the others
 *      are unknown (they are never merged, and encode through byte fallback).
 *   4. Merges: start from characters; repeatedly take the adjacent symbol pair with the
 *      highest frequency over all words (ties: fewer characters, then the smaller string,
 *      as sentencepiece does), make it a new symbol and replace it left to right in every
 *      word that holds it. Pairs that would make an invalid piece are never formed:
 *      more than max_piece_chars characters, '▁' anywhere but at the start (unless the
 *      piece is all '▁'), a digit together with anything (split_digits), two Unicode
 *      scripts (Latin + Common punctuation, ...; Hiragana and Katakana count as Han and
 *      combining marks take the script before them), U+2047, NUL or TAB.
 *   5. Vocabulary: <unk> <s> </s>, the 256 byte pieces <0x00>..<0xFF>, the merged pieces
 *      in the order they were made (score 0, -1, -2, ...), then the required characters,
 *      most frequent first, scores continuing downwards. The number of merges is
 *      vocab_size - 259 - number of characters.
 *
 * Pair frequencies live in a hash map with, per pair, the list of words that held it; a
 * max-heap with lazy invalidation finds the best pair. A merge touches only the words of
 * the merged pair. Everything is deterministic (ties are broken down to symbol ids) and
 * there is no global state, so trainers may run concurrently.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/spm_proto.h"
#include "fable/data.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

#define WS_CP 0x2581u

/* ---- small hash map uint64 → int64 (open addressing) ------------------------------------- */

typedef struct {
    uint64_t *key;  /* key + 1; 0 = empty */
    int64_t *val;
    size_t mask, used;
} u64map;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int u64map_init(u64map *m, size_t cap) {
    size_t c = 64;
    while (c < cap * 2) c <<= 1;
    m->key = calloc(c, sizeof *m->key);
    m->val = calloc(c, sizeof *m->val);
    m->mask = c - 1;
    m->used = 0;
    return m->key && m->val ? 0 : fb_err("tokenizer train: out of memory");
}

static void u64map_free(u64map *m) {
    free(m->key);
    free(m->val);
}

/* Slot of key (inserted with value init when absent). Returns NULL on OOM. */
static int64_t *u64map_slot(u64map *m, uint64_t key, int64_t init, int *is_new) {
    if (2 * (m->used + 1) > m->mask + 1) {
        u64map n;
        if (u64map_init(&n, (m->mask + 1))) return NULL;
        for (size_t i = 0; i <= m->mask; i++) {
            if (!m->key[i]) continue;
            size_t j = mix64(m->key[i]) & n.mask;
            while (n.key[j]) j = (j + 1) & n.mask;
            n.key[j] = m->key[i];
            n.val[j] = m->val[i];
        }
        n.used = m->used;
        u64map_free(m);
        *m = n;
    }
    uint64_t k = key + 1;
    size_t i = mix64(k) & m->mask;
    while (m->key[i] && m->key[i] != k) i = (i + 1) & m->mask;
    if (is_new) *is_new = !m->key[i];
    if (!m->key[i]) {
        m->key[i] = k;
        m->val[i] = init;
        m->used++;
    }
    return &m->val[i];
}

static int64_t u64map_get(const u64map *m, uint64_t key, int64_t def) {
    uint64_t k = key + 1;
    size_t i = mix64(k) & m->mask;
    while (m->key[i]) {
        if (m->key[i] == k) return m->val[i];
        i = (i + 1) & m->mask;
    }
    return def;
}

/* ---- Unicode helpers ------------------------------------------------------------------------ */

/* Decode one UTF-8 character as sentencepiece does; invalid → U+FFFD consuming 1 byte. */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    if (c < 0x80) { *len = 1; return c; }
    if ((c & 0xE0) == 0xC0 && n >= 2 && (s[1] & 0xC0) == 0x80) {
        uint32_t cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        if (cp >= 0x80) { *len = 2; return cp; }
    } else if ((c & 0xF0) == 0xE0 && n >= 3 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
        uint32_t cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if (cp >= 0x800 && (cp < 0xD800 || cp >= 0xE000)) { *len = 3; return cp; }
    } else if ((c & 0xF8) == 0xF0 && n >= 4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
               (s[3] & 0xC0) == 0x80) {
        uint32_t cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        if (cp >= 0x10000 && cp <= 0x10FFFF) { *len = 4; return cp; }
    }
    *len = 1;
    return 0xFFFD;
}

static int utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Unicode scripts, coarsely: the blocks of the major scripts (Unicode's Scripts.txt
 * condensed to block ranges; exact for ASCII, Latin-1, the Latin/Greek/Cyrillic blocks and
 * CJK, approximate inside some mixed blocks). Unlisted code points are Common. */
enum { SC_ANY = -1, SC_COMMON = 0, SC_INHERITED, SC_LATIN, SC_GREEK, SC_CYRILLIC, SC_ARMENIAN, SC_HEBREW,
       SC_ARABIC, SC_SYRIAC, SC_THAANA, SC_DEVANAGARI, SC_BENGALI, SC_GURMUKHI, SC_GUJARATI, SC_ORIYA, SC_TAMIL,
       SC_TELUGU, SC_KANNADA, SC_MALAYALAM, SC_SINHALA, SC_THAI, SC_LAO, SC_TIBETAN, SC_MYANMAR, SC_GEORGIAN,
       SC_HANGUL, SC_ETHIOPIC, SC_CHEROKEE, SC_KHMER, SC_MONGOLIAN, SC_HAN, SC_BOPOMOFO, SC_YI, SC_OTHER };

typedef struct { uint32_t lo, hi; int8_t sc; } script_range;

static const script_range SCRIPTS[] = {
    {0x41, 0x5A, SC_LATIN}, {0x61, 0x7A, SC_LATIN}, {0xAA, 0xAA, SC_LATIN}, {0xBA, 0xBA, SC_LATIN},
    {0xC0, 0xD6, SC_LATIN}, {0xD8, 0xF6, SC_LATIN}, {0xF8, 0x2B8, SC_LATIN}, {0x2E0, 0x2E4, SC_LATIN},
    {0x300, 0x36F, SC_INHERITED}, {0x370, 0x373, SC_GREEK}, {0x375, 0x37D, SC_GREEK}, {0x37F, 0x383, SC_GREEK},
    {0x384, 0x384, SC_GREEK}, {0x386, 0x386, SC_GREEK}, {0x388, 0x3E1, SC_GREEK}, {0x3E2, 0x3EF, SC_OTHER},
    {0x3F0, 0x3FF, SC_GREEK}, {0x400, 0x484, SC_CYRILLIC}, {0x485, 0x486, SC_INHERITED}, {0x487, 0x52F, SC_CYRILLIC},
    {0x531, 0x58F, SC_ARMENIAN}, {0x591, 0x5FF, SC_HEBREW}, {0x600, 0x604, SC_ARABIC}, {0x606, 0x60B, SC_ARABIC},
    {0x60D, 0x61A, SC_ARABIC}, {0x61C, 0x61E, SC_ARABIC}, {0x620, 0x63F, SC_ARABIC}, {0x641, 0x64A, SC_ARABIC},
    {0x64B, 0x655, SC_INHERITED}, {0x656, 0x66F, SC_ARABIC}, {0x670, 0x670, SC_INHERITED}, {0x671, 0x6DC, SC_ARABIC},
    {0x6DE, 0x6FF, SC_ARABIC}, {0x700, 0x74F, SC_SYRIAC}, {0x750, 0x77F, SC_ARABIC}, {0x780, 0x7BF, SC_THAANA},
    {0x8A0, 0x8FF, SC_ARABIC}, {0x900, 0x950, SC_DEVANAGARI}, {0x951, 0x954, SC_INHERITED},
    {0x955, 0x963, SC_DEVANAGARI}, {0x966, 0x97F, SC_DEVANAGARI}, {0x980, 0x9FF, SC_BENGALI},
    {0xA00, 0xA7F, SC_GURMUKHI}, {0xA80, 0xAFF, SC_GUJARATI}, {0xB00, 0xB7F, SC_ORIYA}, {0xB80, 0xBFF, SC_TAMIL},
    {0xC00, 0xC7F, SC_TELUGU}, {0xC80, 0xCFF, SC_KANNADA}, {0xD00, 0xD7F, SC_MALAYALAM}, {0xD80, 0xDFF, SC_SINHALA},
    {0xE00, 0xE3E, SC_THAI}, {0xE40, 0xE7F, SC_THAI}, {0xE80, 0xEFF, SC_LAO}, {0xF00, 0xFD4, SC_TIBETAN},
    {0xFD9, 0xFFF, SC_TIBETAN}, {0x1000, 0x109F, SC_MYANMAR}, {0x10A0, 0x10FA, SC_GEORGIAN},
    {0x10FC, 0x10FF, SC_GEORGIAN}, {0x1100, 0x11FF, SC_HANGUL}, {0x1200, 0x139F, SC_ETHIOPIC},
    {0x13A0, 0x13FF, SC_CHEROKEE}, {0x1400, 0x167F, SC_OTHER}, {0x1780, 0x17FF, SC_KHMER},
    {0x1800, 0x1801, SC_MONGOLIAN}, {0x1804, 0x1804, SC_MONGOLIAN}, {0x1806, 0x18AF, SC_MONGOLIAN},
    {0x1AB0, 0x1AFF, SC_INHERITED}, {0x1D00, 0x1D25, SC_LATIN}, {0x1D26, 0x1D2A, SC_GREEK},
    {0x1D2C, 0x1D5C, SC_LATIN}, {0x1D62, 0x1D65, SC_LATIN}, {0x1D6B, 0x1D77, SC_LATIN}, {0x1D79, 0x1DBE, SC_LATIN},
    {0x1DC0, 0x1DFF, SC_INHERITED}, {0x1E00, 0x1EFF, SC_LATIN}, {0x1F00, 0x1FFE, SC_GREEK},
    {0x200C, 0x200D, SC_INHERITED}, {0x2071, 0x2071, SC_LATIN}, {0x207F, 0x207F, SC_LATIN},
    {0x2090, 0x209C, SC_LATIN}, {0x20D0, 0x20F0, SC_INHERITED}, {0x2126, 0x2126, SC_GREEK},
    {0x212A, 0x212B, SC_LATIN}, {0x2132, 0x2132, SC_LATIN}, {0x214E, 0x214E, SC_LATIN}, {0x2160, 0x2188, SC_LATIN},
    {0x2C00, 0x2C5F, SC_OTHER}, {0x2C60, 0x2C7F, SC_LATIN}, {0x2C80, 0x2CFF, SC_OTHER}, {0x2D00, 0x2D2F, SC_GEORGIAN},
    {0x2DE0, 0x2DFF, SC_CYRILLIC}, {0x2E80, 0x2FD5, SC_HAN}, {0x3005, 0x3005, SC_HAN}, {0x3007, 0x3007, SC_HAN},
    {0x3021, 0x3029, SC_HAN}, {0x302A, 0x302D, SC_INHERITED}, {0x3038, 0x303B, SC_HAN}, {0x3041, 0x3096, SC_HAN},
    {0x3099, 0x309A, SC_INHERITED}, {0x309D, 0x309F, SC_HAN}, {0x30A1, 0x30FA, SC_HAN}, {0x30FC, 0x30FF, SC_HAN},
    {0x3105, 0x312F, SC_BOPOMOFO}, {0x3131, 0x318E, SC_HANGUL}, {0x31A0, 0x31BF, SC_BOPOMOFO},
    {0x31F0, 0x31FF, SC_HAN}, {0x3200, 0x321E, SC_HANGUL}, {0x3260, 0x327E, SC_HANGUL}, {0x32D0, 0x32FE, SC_HAN},
    {0x3300, 0x3357, SC_HAN}, {0x3400, 0x4DBF, SC_HAN}, {0x4E00, 0x9FFF, SC_HAN}, {0xA000, 0xA4CF, SC_YI},
    {0xA640, 0xA69F, SC_CYRILLIC}, {0xA722, 0xA787, SC_LATIN}, {0xA78B, 0xA7FF, SC_LATIN},
    {0xAB30, 0xAB5A, SC_LATIN}, {0xAB5C, 0xAB64, SC_LATIN}, {0xAC00, 0xD7FF, SC_HANGUL}, {0xF900, 0xFAFF, SC_HAN},
    {0xFB00, 0xFB06, SC_LATIN}, {0xFB13, 0xFB17, SC_ARMENIAN}, {0xFB1D, 0xFB4F, SC_HEBREW},
    {0xFB50, 0xFD3D, SC_ARABIC}, {0xFD50, 0xFDFF, SC_ARABIC}, {0xFE00, 0xFE0F, SC_INHERITED},
    {0xFE20, 0xFE2F, SC_INHERITED}, {0xFE70, 0xFEFC, SC_ARABIC}, {0xFF21, 0xFF3A, SC_LATIN},
    {0xFF41, 0xFF5A, SC_LATIN}, {0xFF66, 0xFF6F, SC_HAN}, {0xFF71, 0xFF9D, SC_HAN}, {0xFFA0, 0xFFDC, SC_HANGUL},
    {0x10000, 0x1F0FF, SC_OTHER}, {0x20000, 0x3FFFF, SC_HAN}, {0xE0100, 0xE01EF, SC_INHERITED},
};

/* Script of cp with sentencepiece's adjustments (Hiragana/Katakana → Han is in the table). */
static int script_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof SCRIPTS / sizeof *SCRIPTS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < SCRIPTS[mid].lo) hi = mid;
        else if (cp > SCRIPTS[mid].hi) lo = mid + 1;
        else return SCRIPTS[mid].sc;
    }
    return SC_COMMON;
}

/* ---- trainer state -------------------------------------------------------------------------- */

typedef struct {
    char *s;          /* UTF-8 text */
    uint32_t len;     /* bytes */
    uint32_t nchars;
} bsym;

typedef struct {
    int32_t a, b;
    int64_t count;
    int64_t heap_count;  /* count of its live heap entry (see pop_best) */
    int32_t *words;      /* words that held the pair at some point (may repeat) */
    uint32_t nw, cw;
} bpair;

typedef struct {
    int64_t count;
    int32_t pair;
} heap_ent;

typedef struct {
    const bpe_train_opts *o;
    bsym *sym; int nsym, csym;
    int unk_sym;                  /* symbol of characters outside the required set */
    /* words */
    int32_t *wsym;                /* symbols of all words, word w at wsym[woff[w] .. + wlen[w]) */
    size_t *woff; uint32_t *wlen; int64_t *wfreq; int nwords;
    /* pairs */
    bpair *pair; int npair, cpair;
    u64map pair_of;               /* (a << 32 | b) → pair index */
    heap_ent *heap; size_t nheap, cheap;
    uint32_t *stamp;              /* per word: last merge that touched it */
    int32_t *touched; int ntouched, ctouched;
} trainer;

static int tr_grow(void **p, int *cap, int need, size_t sz) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *np = realloc(*p, (size_t)c * sz);
    if (!np) return fb_err("tokenizer train: out of memory");
    *p = np;
    *cap = c;
    return 0;
}

/* Piece validity (sentencepiece's IsValidSentencePiece with split_by_whitespace,
 * allow_whitespace_only_pieces, split_by_unicode_script, split_by_number and, if set,
 * split_digits). */
static int valid_piece(const trainer *T, const char *s, size_t n) {
    uint32_t cps[64];
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = utf8_next((const unsigned char *)s + i, n - i, &l);
        if (k == 64) return 0;
        cps[k++] = cp;
        i += l;
    }
    if (k == 0 || (int)k > T->o->max_piece_chars) return 0;
    int all_ws = 1;
    for (size_t i = 0; i < k; i++) all_ws &= cps[i] == WS_CP;
    int prev = SC_ANY;
    for (size_t i = 0; i < k; i++) {
        uint32_t c = cps[i];
        if (c == 0x2047 || c == 0 || c == '\t') return 0;
        if (c == WS_CP) {
            if (!all_ws && i > 0) return 0;
            continue;
        }
        int sc = script_of(c);
        if (sc == SC_INHERITED) sc = prev;
        int digit = c >= '0' && c <= '9';
        if (T->o->split_digits && digit && k > 1) return 0;
        if (sc != SC_ANY && prev != SC_ANY && prev != sc) return 0;
        prev = sc;
    }
    return 1;
}

/* Order of candidate pairs: higher count, then fewer characters, then the smaller string,
 * then smaller symbol ids (only to be deterministic). Returns 1 if p should come before q. */
static int pair_better(const trainer *T, int64_t cp, int p, int64_t cq, int q) {
    if (cp != cq) return cp > cq;
    const bpair *P = &T->pair[p], *Q = &T->pair[q];
    const bsym *pa = &T->sym[P->a], *pb = &T->sym[P->b], *qa = &T->sym[Q->a], *qb = &T->sym[Q->b];
    uint32_t np = pa->nchars + pb->nchars, nq = qa->nchars + qb->nchars;
    if (np != nq) return np < nq;
    /* compare pa+pb with qa+qb bytewise (std::string operator<) */
    size_t lp = pa->len + pb->len, lq = qa->len + qb->len, m = lp < lq ? lp : lq;
    for (size_t i = 0; i < m; i++) {
        unsigned char x = (unsigned char)(i < pa->len ? pa->s[i] : pb->s[i - pa->len]);
        unsigned char y = (unsigned char)(i < qa->len ? qa->s[i] : qb->s[i - qa->len]);
        if (x != y) return x < y;
    }
    if (lp != lq) return lp < lq;
    if (P->a != Q->a) return P->a < Q->a;
    return P->b < Q->b;
}

static int heap_push(trainer *T, int p) {
    if (T->nheap == T->cheap) {
        size_t c = T->cheap ? T->cheap * 2 : 4096;
        heap_ent *nh = realloc(T->heap, c * sizeof *nh);
        if (!nh) return fb_err("tokenizer train: out of memory");
        T->heap = nh;
        T->cheap = c;
    }
    heap_ent e = {T->pair[p].count, p};
    T->pair[p].heap_count = e.count;
    size_t i = T->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_better(T, e.count, e.pair, T->heap[up].count, T->heap[up].pair)) break;
        T->heap[i] = T->heap[up];
        i = up;
    }
    T->heap[i] = e;
    return 0;
}

static heap_ent heap_pop(trainer *T) {
    heap_ent top = T->heap[0], last = T->heap[--T->nheap];
    size_t i = 0, n = T->nheap;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t r = l + 1;
        size_t b = (r < n && pair_better(T, T->heap[r].count, T->heap[r].pair, T->heap[l].count, T->heap[l].pair)) ? r : l;
        if (!pair_better(T, T->heap[b].count, T->heap[b].pair, last.count, last.pair)) break;
        T->heap[i] = T->heap[b];
        i = b;
    }
    if (n) T->heap[i] = last;
    return top;
}

/* The pair with the highest count. Each pair keeps one live heap entry, whose count
 * (heap_count) is >= its true count: counts that grow get a new entry at once, counts
 * that shrink are corrected when their entry reaches the top. Returns -1 when none. */
static int pop_best(trainer *T) {
    while (T->nheap) {
        heap_ent e = heap_pop(T);
        bpair *P = &T->pair[e.pair];
        if (e.count != P->heap_count) continue;   /* superseded entry */
        if (P->count == e.count) return P->count > 0 ? e.pair : -1;
        if (P->count > 0 && heap_push(T, e.pair)) return -2;
        if (P->count <= 0) P->heap_count = -1;
    }
    return -1;
}

/* Pair index of (a, b), created when valid; -1 if the pair can never be a piece. */
static int get_pair(trainer *T, int a, int b) {
    if (a == T->unk_sym || b == T->unk_sym) return -1;
    int is_new;
    int64_t *slot = u64map_slot(&T->pair_of, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, -2, &is_new);
    if (!slot) return -2;
    if (*slot != -2) return (int)*slot;
    char buf[256];
    const bsym *A = &T->sym[a], *B = &T->sym[b];
    int ok = A->len + B->len <= sizeof buf;
    if (ok) {
        memcpy(buf, A->s, A->len);
        memcpy(buf + A->len, B->s, B->len);
        ok = valid_piece(T, buf, A->len + B->len);
    }
    if (!ok) { *slot = -1; return -1; }
    if (tr_grow((void **)&T->pair, &T->cpair, T->npair + 1, sizeof *T->pair)) return -2;
    int p = T->npair++;
    T->pair[p] = (bpair){a, b, 0, -1, NULL, 0, 0};
    /* the map may have been rehashed by u64map_slot; look the slot up again */
    *u64map_slot(&T->pair_of, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, -2, NULL) = p;
    return p;
}

static int pair_add_word(trainer *T, int p, int w) {
    bpair *P = &T->pair[p];
    if (P->nw && P->words[P->nw - 1] == w) return 0;
    if (P->nw == P->cw) {
        uint32_t c = P->cw ? P->cw * 2 : 4;
        int32_t *nw = realloc(P->words, c * sizeof *nw);
        if (!nw) return fb_err("tokenizer train: out of memory");
        P->words = nw;
        P->cw = c;
    }
    P->words[P->nw++] = w;
    return 0;
}

static int touch(trainer *T, int p) {
    if (tr_grow((void **)&T->touched, &T->ctouched, T->ntouched + 1, sizeof *T->touched)) return -1;
    T->touched[T->ntouched++] = p;
    return 0;
}

/* Add (sign = +1) or remove (-1) the pairs of word w to the counts. */
static int count_word(trainer *T, int w, int sign) {
    const int32_t *s = T->wsym + T->woff[w];
    for (uint32_t j = 1; j < T->wlen[w]; j++) {
        int p = get_pair(T, s[j - 1], s[j]);
        if (p == -2) return -1;
        if (p < 0) continue;
        T->pair[p].count += sign * T->wfreq[w];
        if (sign > 0) {
            if (pair_add_word(T, p, w) || touch(T, p)) return -1;
        }
    }
    return 0;
}

/* Replace every (a, b) in the words that hold it by c, left to right. */
static int apply_merge(trainer *T, int p, int c, uint32_t stamp) {
    bpair *P = &T->pair[p];
    int a = P->a, b = P->b;
    int32_t *words = P->words;
    uint32_t nw = P->nw;
    P->words = NULL;
    P->nw = P->cw = 0;
    T->ntouched = 0;
    int rc = 0;
    for (uint32_t k = 0; k < nw && !rc; k++) {
        int w = words[k];
        if (T->stamp[w] == stamp) continue;
        T->stamp[w] = stamp;
        int32_t *s = T->wsym + T->woff[w];
        uint32_t n = T->wlen[w], j;
        for (j = 1; j < n; j++)
            if (s[j - 1] == a && s[j] == b) break;
        if (j >= n) continue;  /* no longer holds the pair */
        if (count_word(T, w, -1)) { rc = -1; break; }
        uint32_t o = 0;
        for (uint32_t i = 0; i < n;) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) { s[o++] = c; i += 2; }
            else s[o++] = s[i++];
        }
        T->wlen[w] = o;
        if (count_word(T, w, +1)) rc = -1;
    }
    free(words);
    /* Counts that grew need a heap entry at their new value. */
    for (int i = 0; i < T->ntouched && !rc; i++) {
        bpair *Q = &T->pair[T->touched[i]];
        if (Q->count > Q->heap_count) rc = heap_push(T, T->touched[i]);
    }
    return rc;
}

static int add_symbol(trainer *T, const char *s, size_t len, uint32_t nchars) {
    if (tr_grow((void **)&T->sym, &T->csym, T->nsym + 1, sizeof *T->sym)) return -1;
    char *d = malloc(len + 1);
    if (!d) return fb_err("tokenizer train: out of memory");
    memcpy(d, s, len);
    d[len] = 0;
    T->sym[T->nsym] = (bsym){d, (uint32_t)len, nchars};
    return T->nsym++;
}

/* ---- sentences → words ------------------------------------------------------------------ */

typedef struct {
    /* word text → index (hash of text; collisions resolved by comparing) */
    char *arena; size_t an, acap;
    size_t *off; uint32_t *len; int64_t *freq; int n, cap;
    int32_t *slot; size_t mask;       /* open addressing over word indices, -1 empty */
    u64map chars;                     /* code point → count */
    int64_t total_chars;
} word_counter;

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return mix64(h);
}

static int wc_add(word_counter *W, const char *s, size_t n) {
    if (2 * ((size_t)W->n + 1) > W->mask + 1) {
        size_t cap = W->mask ? 2 * (W->mask + 1) : 1 << 14;
        int32_t *ns = malloc(cap * sizeof *ns);
        if (!ns) return fb_err("tokenizer train: out of memory");
        memset(ns, 0xff, cap * sizeof *ns);
        for (int i = 0; i < W->n; i++) {
            size_t j = str_hash(W->arena + W->off[i], W->len[i]) & (cap - 1);
            while (ns[j] >= 0) j = (j + 1) & (cap - 1);
            ns[j] = i;
        }
        free(W->slot);
        W->slot = ns;
        W->mask = cap - 1;
    }
    size_t j = str_hash(s, n) & W->mask;
    for (; W->slot[j] >= 0; j = (j + 1) & W->mask) {
        int i = W->slot[j];
        if (W->len[i] == n && memcmp(W->arena + W->off[i], s, n) == 0) { W->freq[i]++; return 0; }
    }
    if (W->n == W->cap) {
        int c = W->cap ? W->cap * 2 : 4096;
        size_t *no = realloc(W->off, (size_t)c * sizeof *no);
        if (no) W->off = no;
        uint32_t *nl = realloc(W->len, (size_t)c * sizeof *nl);
        if (nl) W->len = nl;
        int64_t *nf = realloc(W->freq, (size_t)c * sizeof *nf);
        if (nf) W->freq = nf;
        if (!no || !nl || !nf) return fb_err("tokenizer train: out of memory");
        W->cap = c;
    }
    if (W->an + n > W->acap) {
        size_t c = W->acap ? W->acap * 2 : 1 << 20;
        while (c < W->an + n) c *= 2;
        char *na = realloc(W->arena, c);
        if (!na) return fb_err("tokenizer train: out of memory");
        W->arena = na;
        W->acap = c;
    }
    memcpy(W->arena + W->an, s, n);
    W->off[W->n] = W->an;
    W->len[W->n] = (uint32_t)n;
    W->freq[W->n] = 1;
    W->an += n;
    W->slot[j] = W->n++;
    return 0;
}

/* One sentence (a line, no '\n'): normalize, count characters, add its words. */
static int wc_sentence(word_counter *W, const char *line, size_t n, char **buf, size_t *cap) {
    if (n == 0) return 0;
    if (*cap < 3 * n + 3) {
        *cap = 3 * n + 3;
        char *nb = realloc(*buf, *cap);
        if (!nb) return fb_err("tokenizer train: out of memory");
        *buf = nb;
    }
    char *o = *buf;
    size_t k = 0;
    memcpy(o, "\xE2\x96\x81", 3);  /* dummy prefix */
    k = 3;
    int64_t *c = u64map_slot(&W->chars, WS_CP, 0, NULL);
    if (!c) return -1;
    (*c)++;
    W->total_chars++;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = utf8_next((const unsigned char *)line + i, n - i, &l);
        i += l;
        if (cp == ' ') cp = WS_CP;
        k += (size_t)utf8_put(cp, o + k);
        if (cp == 0) continue;  /* NUL never becomes a piece (sentencepiece skips it) */
        if (!(c = u64map_slot(&W->chars, cp, 0, NULL))) return -1;
        (*c)++;
        W->total_chars++;
    }
    /* words "▁*[^▁]*" */
    size_t start = 0, i = 0;
    int in_ws = 1;
    while (i < k) {
        int is_ws = i + 3 <= k && memcmp(o + i, "\xE2\x96\x81", 3) == 0;
        if (is_ws && !in_ws && i > start) {
            if (wc_add(W, o + start, i - start)) return -1;
            start = i;
        }
        in_ws = is_ws;
        i += is_ws ? 3 : 1;
        while (!is_ws && i < k && ((unsigned char)o[i] & 0xC0) == 0x80) i++;
    }
    if (k > start && wc_add(W, o + start, k - start)) return -1;
    return 0;
}

static void wc_free(word_counter *W) {
    free(W->arena); free(W->off); free(W->len); free(W->freq); free(W->slot);
    u64map_free(&W->chars);
}

/* ---- training ------------------------------------------------------------------------------ */

void bpe_train_opts_default(bpe_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->vocab_size = 512;
    o->split_digits = 1;
    o->max_piece_chars = 16;
    o->character_coverage = 1.0;
}

typedef struct { uint32_t cp; int64_t n; } char_count;

static int cmp_chars(const void *x, const void *y) {
    const char_count *a = x, *b = y;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    return a->cp < b->cp ? -1 : a->cp > b->cp;
}

static void trainer_free(trainer *T) {
    for (int i = 0; i < T->nsym; i++) free(T->sym[i].s);
    free(T->sym);
    free(T->wsym); free(T->woff); free(T->wlen); free(T->wfreq);
    for (int i = 0; i < T->npair; i++) free(T->pair[i].words);
    free(T->pair);
    u64map_free(&T->pair_of);
    free(T->heap); free(T->stamp); free(T->touched);
}

#define N_META 259  /* <unk> <s> </s> + 256 byte pieces */

int bpe_train_texts(const char *const *texts, const size_t *lens, size_t n_texts, const bpe_train_opts *o,
                    uint8_t **model, size_t *model_len) {
    double t0 = fb_now();
    if (o->vocab_size < N_META + 1)
        return fb_err("tokenizer train: --vocab %d is too small: the 3 special and 256 byte pieces alone take %d",
                      o->vocab_size, N_META);
    if (o->max_piece_chars < 1 || o->max_piece_chars > 64)
        return fb_err("tokenizer train: max piece length %d is outside 1..64", o->max_piece_chars);
    word_counter W = {0};
    trainer T = {0};
    T.o = o;
    spm_model m;
    spm_model_defaults(&m);
    char_count *cc = NULL;
    char *buf = NULL;
    size_t bcap = 0;
    int rc = -1;
    if (u64map_init(&W.chars, 256) || u64map_init(&T.pair_of, 1 << 16)) goto done;

    /* 1-2: sentences (lines) → words */
    for (size_t i = 0; i < n_texts; i++) {
        const char *s = texts[i], *end = s + lens[i];
        while (s < end) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            const char *e = nl ? nl : end;
            if (wc_sentence(&W, s, (size_t)(e - s), &buf, &bcap)) goto done;
            s = nl ? nl + 1 : end;
        }
    }
    if (W.n == 0) { fb_err("tokenizer train: the input holds no text"); goto done; }

    /* 3: required characters by coverage, most frequent first */
    size_t nchar = 0;
    cc = malloc((W.chars.used + 1) * sizeof *cc);
    if (!cc) { fb_err("tokenizer train: out of memory"); goto done; }
    for (size_t i = 0; i <= W.chars.mask; i++)
        if (W.chars.key[i]) cc[nchar++] = (char_count){(uint32_t)(W.chars.key[i] - 1), W.chars.val[i]};
    qsort(cc, nchar, sizeof *cc, cmp_chars);
    size_t nreq = 0;
    int64_t acc = 0;
    while (nreq < nchar && (double)acc / (double)W.total_chars < o->character_coverage) acc += cc[nreq++].n;
    if (nreq > (size_t)(o->vocab_size - N_META)) {
        if (o->verbose)
            fprintf(stderr, "tokenizer train: %zu characters do not fit in %d pieces; the %zu rarest are left to byte fallback\n",
                    nreq, o->vocab_size - N_META, nreq - (size_t)(o->vocab_size - N_META));
        nreq = (size_t)(o->vocab_size - N_META);
    }
    u64map sym_of;  /* code point → symbol */
    if (u64map_init(&sym_of, nreq + 1)) goto done;
    for (size_t i = 0; i < nreq; i++) {
        char u[4];
        int l = utf8_put(cc[i].cp, u);
        int s = add_symbol(&T, u, (size_t)l, 1);
        if (s < 0) { u64map_free(&sym_of); goto done; }
        *u64map_slot(&sym_of, cc[i].cp, 0, NULL) = s;
    }
    T.unk_sym = add_symbol(&T, "\xE2\x81\x87", 3, 1);  /* stands for every unknown character */
    if (T.unk_sym < 0) { u64map_free(&sym_of); goto done; }

    /* words as symbol sequences */
    T.nwords = W.n;
    T.woff = malloc((size_t)W.n * sizeof *T.woff);
    T.wlen = malloc((size_t)W.n * sizeof *T.wlen);
    T.wfreq = malloc((size_t)W.n * sizeof *T.wfreq);
    T.wsym = malloc(W.an * sizeof *T.wsym);
    T.stamp = calloc((size_t)W.n, sizeof *T.stamp);
    if (!T.woff || !T.wlen || !T.wfreq || !T.wsym || !T.stamp) {
        u64map_free(&sym_of);
        fb_err("tokenizer train: out of memory");
        goto done;
    }
    size_t off = 0;
    for (int w = 0; w < W.n; w++) {
        const char *s = W.arena + W.off[w];
        size_t n = W.len[w];
        T.woff[w] = off;
        T.wfreq[w] = W.freq[w];
        uint32_t k = 0;
        for (size_t i = 0; i < n;) {
            size_t l;
            uint32_t cp = utf8_next((const unsigned char *)s + i, n - i, &l);
            i += l;
            T.wsym[off + k++] = (int32_t)u64map_get(&sym_of, cp, T.unk_sym);
        }
        T.wlen[w] = k;
        off += k;
    }
    u64map_free(&sym_of);

    /* 4: merges */
    for (int w = 0; w < T.nwords; w++)
        if (count_word(&T, w, +1)) goto done;
    for (int p = 0; p < T.npair; p++)
        if (T.pair[p].count > 0 && heap_push(&T, p)) goto done;
    int target = o->vocab_size - N_META - (int)nreq, nmerge = 0;
    int *merged = malloc(((size_t)target + 1) * sizeof *merged);
    u64map seen;  /* hash of piece text → first symbol, to skip duplicate pieces */
    if (!merged || u64map_init(&seen, (size_t)target + 1)) { free(merged); fb_err("tokenizer train: out of memory"); goto done; }
    for (size_t i = 0; i < nreq; i++) *u64map_slot(&seen, str_hash(T.sym[i].s, T.sym[i].len), 0, NULL) = (int64_t)i;
    uint32_t stamp = 0;
    while (nmerge < target) {
        int p = pop_best(&T);
        if (p == -2) { free(merged); u64map_free(&seen); goto done; }
        if (p < 0) break;  /* no pair left: the vocabulary comes out smaller */
        bpair *P = &T.pair[p];
        const bsym *A = &T.sym[P->a], *B = &T.sym[P->b];
        char tmp[256];
        size_t tl = A->len + B->len;
        memcpy(tmp, A->s, A->len);
        memcpy(tmp + A->len, B->s, B->len);
        int c = add_symbol(&T, tmp, tl, A->nchars + B->nchars);  /* moves T.sym: A, B are stale after */
        if (c < 0) { free(merged); u64map_free(&seen); goto done; }
        /* The same text can come from two splits ("aa"+"a", "a"+"aa"): one piece only. */
        int is_new;
        int64_t *sl = u64map_slot(&seen, str_hash(tmp, tl), c, &is_new);
        int dup = !is_new && T.sym[*sl].len == T.sym[c].len && !memcmp(T.sym[*sl].s, tmp, T.sym[c].len);
        if (!dup) merged[nmerge++] = c;
        if (o->verbose > 1) fprintf(stderr, "merge %d: '%s' (%lld)\n", nmerge, T.sym[c].s, (long long)T.pair[p].count);
        if (apply_merge(&T, p, c, ++stamp)) { free(merged); u64map_free(&seen); goto done; }
        T.pair[p].count = 0;
    }
    u64map_free(&seen);

    /* 5: the model */
    int total = N_META + nmerge + (int)nreq;
    m.model_type = SPM_BPE;
    m.vocab_size = total;
    m.byte_fallback = 1;
    m.split_digits = o->split_digits;
    m.allow_whitespace_only_pieces = 1;
    m.max_sentencepiece_length = o->max_piece_chars;
    m.character_coverage = (float)o->character_coverage;
    m.add_dummy_prefix = 1;
    m.remove_extra_whitespaces = 0;
    m.escape_whitespaces = 1;
    m.pieces = calloc((size_t)total, sizeof *m.pieces);
    if (!m.pieces) { free(merged); fb_err("tokenizer train: out of memory"); goto done; }
    m.n_pieces = total;
    int id = 0;
    static const char *special[3] = {"<unk>", "<s>", "</s>"};
    char bytes[256][7];  /* local: concurrent trainers share nothing */
    for (int i = 0; i < 3; i++, id++)
        m.pieces[id] = (spm_piece){(char *)special[i], (uint32_t)strlen(special[i]), 0.0f, i ? TOK_CONTROL : TOK_UNKNOWN};
    for (int b = 0; b < 256; b++, id++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        m.pieces[id] = (spm_piece){bytes[b], 6, 0.0f, TOK_BYTE};
    }
    int k = 0;
    for (int i = 0; i < nmerge; i++, id++, k++)
        m.pieces[id] = (spm_piece){T.sym[merged[i]].s, T.sym[merged[i]].len, -(float)k, TOK_NORMAL};
    for (size_t i = 0; i < nreq; i++, id++, k++)
        m.pieces[id] = (spm_piece){T.sym[i].s, T.sym[i].len, -(float)k, TOK_NORMAL};
    free(merged);
    /* spm_model_serialize only reads the strings; free_model below must not free them */
    char *names[5] = {"<unk>", "<s>", "</s>", "<pad>", " \xE2\x81\x87 "};
    m.unk_piece = names[0]; m.bos_piece = names[1]; m.eos_piece = names[2]; m.pad_piece = names[3];
    m.unk_surface = names[4];
    m.norm_name = "identity";
    rc = spm_model_serialize(&m, model, model_len);
    if (o->verbose)
        fprintf(stderr, "tokenizer train: %d pieces (%d merges, %zu characters, 259 special+byte) from %d distinct words in %.2f s\n",
                total, nmerge, nreq, W.n, fb_now() - t0);
    if (!rc && total < o->vocab_size && o->verbose)
        fprintf(stderr, "tokenizer train: the input ran out of pairs to merge: %d pieces instead of %d\n", total, o->vocab_size);
done:
    free(m.pieces);
    free(cc);
    free(buf);
    wc_free(&W);
    trainer_free(&T);
    return rc;
}

int bpe_train_files(const char *const *inputs, int n_inputs, const char *prefix, const bpe_train_opts *o) {
    corpus c = {0};
    for (int i = 0; i < n_inputs; i++)
        if (corpus_add_file(&c, inputs[i], CORPUS_AUTO, NULL)) { corpus_free(&c); return -1; }
    if (o->verbose)
        fprintf(stderr, "tokenizer train: %zu stories, %.1f MB from %d file%s\n", c.n, (double)c.bytes / 1e6, n_inputs,
                n_inputs == 1 ? "" : "s");
    uint8_t *model = NULL;
    size_t len = 0;
    int rc = bpe_train_texts(c.text, c.len, c.n, o, &model, &len);
    corpus_free(&c);
    if (rc) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s.model", prefix);
    rc = fb_write_file_atomic(path, model, len);
    if (!rc) {
        tokenizer *t = tok_load_mem(model, len, path);
        if (!t) rc = -1;
        else {
            snprintf(path, sizeof path, "%s.bin", prefix);
            rc = tok_save_bin(t, path);
            tok_free(t);
        }
    }
    free(model);
    return rc;
}
