/* fable — SentencePiece ModelProto codec (see spm_proto.h for the fields and the wire format). */
#include "data/spm_proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

/* ---- reading ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
    char *err;
    size_t errlen;
} pb_reader;

static int pb_fail(pb_reader *r, const char *fmt, ...) FB_PRINTF(2, 3);
static int pb_fail(pb_reader *r, const char *fmt, ...) {
    if (r->err && r->errlen && !r->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int pb_varint(pb_reader *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return pb_fail(r, "truncated varint");
        uint8_t c = *r->p++;
        if (shift == 63 && c > 1) return pb_fail(r, "varint overflows 64 bits");
        x |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80) { *v = x; return 0; }
    }
    return pb_fail(r, "varint longer than 10 bytes");
}

/* One field: its number, wire type, and value (varint in *v; bytes in *data and *n; fixed
 * 32/64-bit little-endian in *v). */
static int pb_field(pb_reader *r, uint32_t *field, int *wire, uint64_t *v, const uint8_t **data,
                    size_t *n) {
    uint64_t key = 0;
    if (pb_varint(r, &key)) return -1;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    if (*field == 0 || key >> 32) return pb_fail(r, "invalid field number");
    switch (*wire) {
    case 0: return pb_varint(r, v);
    case 1:
    case 5: {
        size_t k = *wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < k) return pb_fail(r, "truncated fixed-width field %u", *field);
        uint64_t x = 0;
        for (size_t i = 0; i < k; i++) x |= (uint64_t)r->p[i] << (8 * i);
        r->p += k;
        *v = x;
        return 0;
    }
    case 2: {
        uint64_t len = 0;
        if (pb_varint(r, &len)) return -1;
        if (len > (uint64_t)(r->end - r->p))
            return pb_fail(r, "field %u claims %llu bytes, only %zu left", *field,
                           (unsigned long long)len, (size_t)(r->end - r->p));
        *data = r->p;
        *n = (size_t)len;
        r->p += len;
        return 0;
    }
    default: return pb_fail(r, "unsupported wire type %d (field %u)", *wire, *field);
    }
}

static float pb_f32(uint64_t v) {
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static char *dup_bytes(const uint8_t *d, size_t n) {
    char *s = malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, d, n);
    s[n] = 0;
    return s;
}

/* Replace *dst with a copy of (d, n). */
static int set_str(pb_reader *r, char **dst, const uint8_t *d, size_t n) {
    char *s = dup_bytes(d, n);
    if (!s) return pb_fail(r, "out of memory");
    free(*dst);
    *dst = s;
    return 0;
}

static int expect_wire(pb_reader *r, uint32_t field, int wire, int want, const char *msg) {
    if (wire != want) return pb_fail(r, "%s field %u has wire type %d, expected %d", msg, field, wire, want);
    return 0;
}

static int parse_piece(spm_model *m, const uint8_t *d, size_t n, pb_reader *parent) {
    pb_reader r = {d, d + n, parent->err, parent->errlen};
    spm_piece pc = {NULL, 0, 0.0f, TOK_NORMAL};
    int have_piece = 0;
    while (r.p < r.end) {
        uint32_t f; int w; uint64_t v = 0; const uint8_t *s = NULL; size_t sn = 0;
        if (pb_field(&r, &f, &w, &v, &s, &sn)) goto fail;
        if (f == 1) {
            if (expect_wire(&r, f, w, 2, "SentencePiece")) goto fail;
            if (set_str(&r, &pc.piece, s, sn)) goto fail;
            pc.len = (uint32_t)sn;
            have_piece = 1;
        } else if (f == 2) {
            if (expect_wire(&r, f, w, 5, "SentencePiece")) goto fail;
            pc.score = pb_f32(v);
        } else if (f == 3) {
            if (expect_wire(&r, f, w, 0, "SentencePiece")) goto fail;
            if (v < TOK_NORMAL || v > TOK_BYTE) {
                pb_fail(&r, "piece %d has unknown type %llu", m->n_pieces, (unsigned long long)v);
                goto fail;
            }
            pc.type = (int)v;
        }
    }
    if (!have_piece || pc.len == 0) {
        pb_fail(&r, "piece %d is empty", m->n_pieces);
        goto fail;
    }
    if ((m->n_pieces & (m->n_pieces - 1)) == 0) {  /* grow at powers of two */
        size_t cap = m->n_pieces ? (size_t)m->n_pieces * 2 : 64;
        spm_piece *np = realloc(m->pieces, cap * sizeof *np);
        if (!np) { pb_fail(&r, "out of memory"); goto fail; }
        m->pieces = np;
    }
    m->pieces[m->n_pieces++] = pc;
    return 0;
fail:
    free(pc.piece);
    return -1;
}

static int parse_trainer(spm_model *m, const uint8_t *d, size_t n, pb_reader *parent) {
    pb_reader r = {d, d + n, parent->err, parent->errlen};
    while (r.p < r.end) {
        uint32_t f; int w; uint64_t v = 0; const uint8_t *s = NULL; size_t sn = 0;
        if (pb_field(&r, &f, &w, &v, &s, &sn)) return -1;
        int want = -1;
        int *ip = NULL;
        char **sp = NULL;
        switch (f) {
        case 3: ip = &m->model_type; break;
        case 4: ip = &m->vocab_size; break;
        case 20: ip = &m->max_sentencepiece_length; break;
        case 22: ip = &m->split_by_whitespace; break;
        case 24: ip = &m->treat_whitespace_as_suffix; break;
        case 25: ip = &m->split_digits; break;
        case 26: ip = &m->allow_whitespace_only_pieces; break;
        case 35: ip = &m->byte_fallback; break;
        case 40: ip = &m->unk_id; break;
        case 41: ip = &m->bos_id; break;
        case 42: ip = &m->eos_id; break;
        case 43: ip = &m->pad_id; break;
        case 44: sp = &m->unk_surface; break;
        case 45: sp = &m->unk_piece; break;
        case 46: sp = &m->bos_piece; break;
        case 47: sp = &m->eos_piece; break;
        case 48: sp = &m->pad_piece; break;
        case 10:
            if (expect_wire(&r, f, w, 5, "TrainerSpec")) return -1;
            m->character_coverage = pb_f32(v);
            continue;
        default: continue;  /* fields that do not affect encoding */
        }
        want = ip ? 0 : 2;
        if (expect_wire(&r, f, w, want, "TrainerSpec")) return -1;
        if (ip) *ip = (int)(int32_t)(uint32_t)v;  /* int32 varints are sign-extended to 64 bits */
        else if (set_str(&r, sp, s, sn)) return -1;
    }
    return 0;
}

static int parse_normalizer(spm_model *m, const uint8_t *d, size_t n, pb_reader *parent) {
    pb_reader r = {d, d + n, parent->err, parent->errlen};
    while (r.p < r.end) {
        uint32_t f; int w; uint64_t v = 0; const uint8_t *s = NULL; size_t sn = 0;
        if (pb_field(&r, &f, &w, &v, &s, &sn)) return -1;
        if (f == 1) {
            if (expect_wire(&r, f, w, 2, "NormalizerSpec") || set_str(&r, &m->norm_name, s, sn)) return -1;
        } else if (f == 2) {
            if (expect_wire(&r, f, w, 2, "NormalizerSpec")) return -1;
            free(m->charsmap);
            m->charsmap = (uint8_t *)dup_bytes(s, sn);
            if (!m->charsmap) return pb_fail(&r, "out of memory");
            m->charsmap_len = sn;
        } else if (f >= 3 && f <= 5) {
            if (expect_wire(&r, f, w, 0, "NormalizerSpec")) return -1;
            int *ip = f == 3 ? &m->add_dummy_prefix : f == 4 ? &m->remove_extra_whitespaces
                                                             : &m->escape_whitespaces;
            *ip = v != 0;
        }
    }
    return 0;
}

void spm_model_defaults(spm_model *m) {
    memset(m, 0, sizeof *m);
    m->model_type = SPM_UNIGRAM;
    m->vocab_size = 8000;
    m->split_by_whitespace = 1;
    m->max_sentencepiece_length = 16;
    m->character_coverage = 0.9995f;
    m->unk_id = 0;
    m->bos_id = 1;
    m->eos_id = 2;
    m->pad_id = -1;
    m->add_dummy_prefix = 1;
    m->remove_extra_whitespaces = 1;
    m->escape_whitespaces = 1;
}

int spm_model_parse(spm_model *m, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    spm_model_defaults(m);
    if (err && errlen) err[0] = 0;
    pb_reader r = {buf, buf + len, err, errlen};
    int have_trainer = 0, have_normalizer = 0;
    while (r.p < r.end) {
        uint32_t f; int w; uint64_t v = 0; const uint8_t *s = NULL; size_t sn = 0;
        if (pb_field(&r, &f, &w, &v, &s, &sn)) return -1;
        if (f == 1 || f == 2 || f == 3) {
            if (expect_wire(&r, f, w, 2, "ModelProto")) return -1;
            int rc = f == 1 ? parse_piece(m, s, sn, &r)
                   : f == 2 ? parse_trainer(m, s, sn, &r)
                            : parse_normalizer(m, s, sn, &r);
            if (rc) return -1;
            if (f == 2) have_trainer = 1;
            if (f == 3) have_normalizer = 1;
        }
    }
    if (m->n_pieces == 0) return pb_fail(&r, "no pieces (not a SentencePiece model)");
    /* sentencepiece always writes both; a file without them is cut short (or not a model) */
    if (!have_trainer) return pb_fail(&r, "no trainer_spec after %d pieces (truncated?)", m->n_pieces);
    if (!have_normalizer) return pb_fail(&r, "no normalizer_spec (truncated?)");
    const char **defs[4] = {(const char **)&m->unk_piece, (const char **)&m->bos_piece,
                            (const char **)&m->eos_piece, (const char **)&m->pad_piece};
    const char *defv[4] = {"<unk>", "<s>", "</s>", "<pad>"};
    for (int i = 0; i < 4; i++)
        if (!*defs[i] && !(*(char **)defs[i] = dup_bytes((const uint8_t *)defv[i], strlen(defv[i]))))
            return pb_fail(&r, "out of memory");
    if (!m->unk_surface && !(m->unk_surface = dup_bytes((const uint8_t *)" \xE2\x81\x87 ", 5)))
        return pb_fail(&r, "out of memory");
    return 0;
}

void spm_model_free(spm_model *m) {
    for (int i = 0; i < m->n_pieces; i++) free(m->pieces[i].piece);
    free(m->pieces);
    free(m->unk_piece);
    free(m->bos_piece);
    free(m->eos_piece);
    free(m->pad_piece);
    free(m->unk_surface);
    free(m->norm_name);
    free(m->charsmap);
    memset(m, 0, sizeof *m);
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct {
    uint8_t *b;
    size_t n, cap;
    int oom;
} pb_buf;

static void pb_put(pb_buf *w, const void *d, size_t n) {
    if (w->oom) return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        while (cap < w->n + n) cap *= 2;
        uint8_t *nb = realloc(w->b, cap);
        if (!nb) { w->oom = 1; return; }
        w->b = nb;
        w->cap = cap;
    }
    memcpy(w->b + w->n, d, n);
    w->n += n;
}

static void pb_put_varint(pb_buf *w, uint64_t v) {
    uint8_t tmp[10];
    int k = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        tmp[k++] = c | (v ? 0x80 : 0);
    } while (v);
    pb_put(w, tmp, (size_t)k);
}

static void pb_put_key(pb_buf *w, uint32_t field, int wire) { pb_put_varint(w, (uint64_t)field << 3 | (uint64_t)wire); }

/* int32 fields: negative values are written sign-extended to 10 bytes, as protobuf does. */
static void pb_put_int(pb_buf *w, uint32_t field, int v) {
    pb_put_key(w, field, 0);
    pb_put_varint(w, (uint64_t)(int64_t)v);
}

static void pb_put_bytes(pb_buf *w, uint32_t field, const void *d, size_t n) {
    pb_put_key(w, field, 2);
    pb_put_varint(w, n);
    pb_put(w, d, n);
}

static void pb_put_str(pb_buf *w, uint32_t field, const char *s) {
    if (s) pb_put_bytes(w, field, s, strlen(s));
}

static void pb_put_float(pb_buf *w, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_put_key(w, field, 5);
    pb_put(w, le, 4);
}

static void pb_put_msg(pb_buf *w, uint32_t field, const pb_buf *sub) {
    pb_put_bytes(w, field, sub->b ? sub->b : (const uint8_t *)"", sub->n);
    if (sub->oom) w->oom = 1;
}

int spm_model_serialize(const spm_model *m, uint8_t **out, size_t *out_len) {
    pb_buf w = {0}, sub = {0};
    for (int i = 0; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        sub.n = 0;
        pb_put_bytes(&sub, 1, p->piece, p->len);
        pb_put_float(&sub, 2, p->score);
        if (p->type != TOK_NORMAL) pb_put_int(&sub, 3, p->type);
        pb_put_msg(&w, 1, &sub);
    }
    sub.n = 0;
    pb_put_int(&sub, 3, m->model_type);
    pb_put_int(&sub, 4, m->vocab_size);
    pb_put_float(&sub, 10, m->character_coverage);
    pb_put_int(&sub, 20, m->max_sentencepiece_length);
    pb_put_int(&sub, 22, m->split_by_whitespace);
    pb_put_int(&sub, 24, m->treat_whitespace_as_suffix);
    pb_put_int(&sub, 25, m->split_digits);
    pb_put_int(&sub, 26, m->allow_whitespace_only_pieces);
    pb_put_int(&sub, 35, m->byte_fallback);
    pb_put_int(&sub, 40, m->unk_id);
    pb_put_int(&sub, 41, m->bos_id);
    pb_put_int(&sub, 42, m->eos_id);
    pb_put_int(&sub, 43, m->pad_id);
    pb_put_str(&sub, 44, m->unk_surface);
    pb_put_str(&sub, 45, m->unk_piece);
    pb_put_str(&sub, 46, m->bos_piece);
    pb_put_str(&sub, 47, m->eos_piece);
    pb_put_str(&sub, 48, m->pad_piece);
    pb_put_msg(&w, 2, &sub);
    sub.n = 0;
    pb_put_str(&sub, 1, m->norm_name ? m->norm_name : "identity");
    pb_put_bytes(&sub, 2, m->charsmap ? m->charsmap : (const uint8_t *)"", m->charsmap_len);
    pb_put_int(&sub, 3, m->add_dummy_prefix);
    pb_put_int(&sub, 4, m->remove_extra_whitespaces);
    pb_put_int(&sub, 5, m->escape_whitespaces);
    pb_put_msg(&w, 3, &sub);
    free(sub.b);
    if (w.oom) {
        free(w.b);
        return fb_err("out of memory serializing a SentencePiece model");
    }
    *out = w.b;
    *out_len = w.n;
    return 0;
}
