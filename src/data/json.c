/* fable — strict JSON reader (see include/fable/json.h).
 *
 * Recursive descent over RFC 8259's grammar:
 *   value  = object | array | string | number | true | false | null
 *   number = -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 *   string = " (any byte >= 0x20 except " and \ | \ ["\/bfnrt] | \u XXXX)* "
 * Nesting is limited to JSON_MAX_DEPTH so hostile input cannot overflow the C stack.
 * Every decoded string is no longer than its escaped source, and the source also holds
 * the two quotes, so an arena of len+1 bytes holds all strings and their NULs.
 */
#include "fable/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

#define JSON_MAX_DEPTH 512

typedef struct {
    const unsigned char *p, *end, *begin;
    const char *name;
    json_doc *d;
} parser;

static int fail_at(parser *ps, const unsigned char *at, const char *what) {
    size_t line = 1, col = 1;
    for (const unsigned char *q = ps->begin; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return fb_err("%s: malformed JSON at byte %zu (line %zu, column %zu): %s", ps->name, (size_t)(at - ps->begin),
                  line, col, what);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

/* Append a zeroed node; returns its index or (size_t)-1. */
static size_t new_node(parser *ps, json_type t) {
    json_doc *d = ps->d;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        json_node *nn = realloc(d->nodes, cap * sizeof *nn);
        if (!nn) {
            fb_err("%s: out of memory for %zu JSON values", ps->name, cap);
            return (size_t)-1;
        }
        d->nodes = nn;
        d->cap = cap;
    }
    memset(&d->nodes[d->n], 0, sizeof d->nodes[0]);
    d->nodes[d->n].type = t;
    return d->n++;
}

static int hex4(const unsigned char *p, unsigned *v) {
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], h;
        if (c >= '0' && c <= '9') h = c - '0';
        else if (c >= 'a' && c <= 'f') h = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') h = c - 'A' + 10;
        else return -1;
        x = x << 4 | h;
    }
    *v = x;
    return 0;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Parse a string at ps->p (which is '"') into the arena. */
static int parse_string(parser *ps, const char **out, size_t *out_len) {
    const unsigned char *start = ps->p++;
    char *o0 = ps->d->arena + ps->d->arena_used, *o = o0;
    for (;;) {
        /* copy the run of plain bytes in one go */
        const unsigned char *q = ps->p;
        while (q < ps->end && *q != '"' && *q != '\\' && *q >= 0x20) q++;
        memcpy(o, ps->p, (size_t)(q - ps->p));
        o += q - ps->p;
        ps->p = q;
        if (q >= ps->end) return fail_at(ps, start, "unterminated string");
        unsigned char c = *q;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            char msg[80];
            snprintf(msg, sizeof msg, "control character 0x%02X inside a string (must be escaped)", c);
            return fail_at(ps, q, msg);
        }
        /* backslash */
        if (q + 1 >= ps->end) return fail_at(ps, start, "unterminated string");
        unsigned char e = q[1];
        ps->p = q + 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - (q + 2) < 4 || hex4(q + 2, &cp) != 0) return fail_at(ps, q, "\\u must be followed by 4 hex digits");
            ps->p = q + 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail_at(ps, q, "unpaired low surrogate \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* UTF-16 pair: cp = 0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00) */
                const unsigned char *r = ps->p;
                if (ps->end - r < 6 || r[0] != '\\' || r[1] != 'u' || hex4(r + 2, &lo) != 0 || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return fail_at(ps, q, "high surrogate \\u escape not followed by a low surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                ps->p = r + 6;
            }
            o = put_utf8(o, cp);
            break;
        }
        default: {
            char msg[64];
            if (e >= 0x20 && e < 0x7F) snprintf(msg, sizeof msg, "invalid escape '\\%c'", e);
            else snprintf(msg, sizeof msg, "invalid escape (byte 0x%02X after '\\')", e);
            return fail_at(ps, q, msg);
        }
        }
    }
    *o = 0;
    *out = o0;
    *out_len = (size_t)(o - o0);
    ps->d->arena_used += (size_t)(o - o0) + 1;
    return 0;
}

static int is_digit(const parser *ps, const unsigned char *q) { return q < ps->end && *q >= '0' && *q <= '9'; }

static int parse_number(parser *ps, double *v) {
    const unsigned char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-') q++;
    if (!is_digit(ps, q)) return fail_at(ps, s, "invalid number");
    if (*q == '0') q++;
    else
        while (is_digit(ps, q)) q++;
    if (q < ps->end && *q == '.') {
        q++;
        if (!is_digit(ps, q)) return fail_at(ps, q, "digit expected after '.' in number");
        while (is_digit(ps, q)) q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (!is_digit(ps, q)) return fail_at(ps, q, "digit expected in exponent");
        while (is_digit(ps, q)) q++;
    }
    size_t n = (size_t)(q - s);
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return fb_err("%s: out of memory", ps->name);
    memcpy(buf, s, n);
    buf[n] = 0;
    *v = strtod(buf, NULL);
    if (buf != small) free(buf);
    ps->p = q;
    return 0;
}

static int literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return fail_at(ps, ps->p, "invalid literal");
    ps->p += n;
    return 0;
}

static int parse_value(parser *ps, int depth, size_t *out_idx);

static int parse_container(parser *ps, int depth, size_t idx, int is_obj) {
    char close = is_obj ? '}' : ']';
    ps->p++; /* '[' or '{' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    size_t prev = 0;
    uint32_t count = 0;
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        skip_ws(ps);
        if (is_obj) {
            if (ps->p >= ps->end || *ps->p != '"')
                return fail_at(ps, ps->p, ps->p >= ps->end ? "unexpected end of input in object" : "expected a string key");
            if (parse_string(ps, &key, &key_len) != 0) return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail_at(ps, ps->p, "expected ':' after object key");
            ps->p++;
        }
        size_t child;
        if (parse_value(ps, depth + 1, &child) != 0) return -1;
        json_node *nodes = ps->d->nodes;
        nodes[child].key = key;
        nodes[child].key_len = key_len;
        if (prev) nodes[prev].next = child;
        prev = child;
        if (count == UINT32_MAX) return fail_at(ps, ps->p, "too many elements");
        count++;
        skip_ws(ps);
        if (ps->p >= ps->end)
            return fail_at(ps, ps->p, is_obj ? "unexpected end of input in object" : "unexpected end of input in array");
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            break;
        }
        return fail_at(ps, ps->p, is_obj ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
    }
    ps->d->nodes[idx].count = count;
    return 0;
}

static int parse_value(parser *ps, int depth, size_t *out_idx) {
    if (depth > JSON_MAX_DEPTH) return fail_at(ps, ps->p, "nesting deeper than 512 levels");
    skip_ws(ps);
    if (ps->p >= ps->end) return fail_at(ps, ps->p, "unexpected end of input (a value was expected)");
    unsigned char c = *ps->p;
    json_type t;
    switch (c) {
    case '{': t = JSON_OBJECT; break;
    case '[': t = JSON_ARRAY; break;
    case '"': t = JSON_STRING; break;
    case 't': t = JSON_TRUE; break;
    case 'f': t = JSON_FALSE; break;
    case 'n': t = JSON_NULL; break;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            t = JSON_NUMBER;
            break;
        }
        {
            char msg[80];
            if (c >= 0x20 && c < 0x7F) snprintf(msg, sizeof msg, "unexpected character '%c'", c);
            else snprintf(msg, sizeof msg, "unexpected byte 0x%02X", c);
            return fail_at(ps, ps->p, msg);
        }
    }
    size_t idx = new_node(ps, t);
    if (idx == (size_t)-1) return -1;
    *out_idx = idx;
    switch (t) {
    case JSON_OBJECT: return parse_container(ps, depth, idx, 1);
    case JSON_ARRAY: return parse_container(ps, depth, idx, 0);
    case JSON_STRING: {
        const char *s;
        size_t n;
        if (parse_string(ps, &s, &n) != 0) return -1;
        ps->d->nodes[idx].str = s;
        ps->d->nodes[idx].len = n;
        return 0;
    }
    case JSON_NUMBER: {
        double v = 0;
        if (parse_number(ps, &v) != 0) return -1;
        ps->d->nodes[idx].num = v;
        return 0;
    }
    case JSON_TRUE: return literal(ps, "true");
    case JSON_FALSE: return literal(ps, "false");
    case JSON_NULL: return literal(ps, "null");
    }
    return -1;
}

int json_parse(json_doc *d, const char *text, size_t len, const char *name) {
    memset(d, 0, sizeof *d);
    d->arena = malloc(len + 1);
    if (!d->arena) return fb_err("%s: out of memory (%zu bytes) for JSON strings", name, len + 1);
    parser ps = {(const unsigned char *)text, (const unsigned char *)text + len, (const unsigned char *)text, name, d};
    /* a UTF-8 byte order mark is tolerated (some editors write one) */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ps.p += 3;
    size_t root;
    if (parse_value(&ps, 0, &root) != 0) goto fail;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail_at(&ps, ps.p, "unexpected data after the end of the JSON value");
        goto fail;
    }
    return 0;
fail:
    json_free(d);
    return -1;
}

int json_parse_file(json_doc *d, const char *path) {
    char *text;
    size_t len;
    memset(d, 0, sizeof *d);
    if (fb_read_file(path, &text, &len) != 0) return -1;
    int rc = json_parse(d, text, len, path);
    free(text);
    return rc;
}

void json_free(json_doc *d) {
    free(d->nodes);
    free(d->arena);
    memset(d, 0, sizeof *d);
}

const json_node *json_first(const json_doc *d, const json_node *parent) {
    (void)d; /* children follow their parent in the node array */
    if ((parent->type != JSON_ARRAY && parent->type != JSON_OBJECT) || parent->count == 0) return NULL;
    return parent + 1;
}

const json_node *json_next(const json_doc *d, const json_node *c) { return c->next ? d->nodes + c->next : NULL; }

const json_node *json_get(const json_doc *d, const json_node *obj, const char *key) {
    if (obj->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (const json_node *c = json_first(d, obj); c; c = json_next(d, c))
        if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
    return NULL;
}

const char *json_type_name(json_type t) {
    static const char *names[] = {"null", "false", "true", "number", "string", "array", "object"};
    return (unsigned)t < 7 ? names[t] : "?";
}
