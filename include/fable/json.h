/* fable — a small strict JSON (RFC 8259) reader: the whole document into a flat node array.
 *
 * Nodes are stored in document order (pre-order): the children of an array or object at
 * index i start at i+1, and each node's `next` gives its following sibling (0 = none; the
 * root, index 0, is never a sibling). Strings (and keys) are decoded into one arena:
 * escapes resolved, \uXXXX and surrogate pairs turned into UTF-8, NUL-terminated (a
 * decoded "\u0000" stays inside `len`). Bytes >= 0x80 are copied as they are, valid UTF-8
 * or not: the tokenizer, not the JSON reader, decides what to do with bad UTF-8.
 *
 * Malformed input is an error naming the file, byte offset, line and column:
 *   "data.json: malformed JSON at byte 1234 (line 5, column 7): expected ',' or ']' in array"
 */
#ifndef FABLE_JSON_H
#define FABLE_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct {
    json_type type;
    uint32_t count;   /* array/object: number of children (members) */
    size_t next;      /* index of the next sibling, 0 = none */
    const char *key;  /* member of an object: its decoded key; else NULL */
    size_t key_len;
    const char *str;  /* JSON_STRING: decoded bytes (NUL-terminated) */
    size_t len;
    double num;       /* JSON_NUMBER */
} json_node;

typedef struct {
    json_node *nodes; /* nodes[0] is the root */
    size_t n, cap;
    char *arena;      /* decoded strings; never reallocated, so str/key stay valid */
    size_t arena_used;
} json_doc;

/* Parse len bytes; name is used in error messages (a file name). 0 or -1 + fb_err. */
int json_parse(json_doc *d, const char *text, size_t len, const char *name);
int json_parse_file(json_doc *d, const char *path);
void json_free(json_doc *d);

static inline const json_node *json_root(const json_doc *d) { return d->nodes; }
/* First child of an array/object (NULL if empty), and the sibling after c (NULL at the end). */
const json_node *json_first(const json_doc *d, const json_node *parent);
const json_node *json_next(const json_doc *d, const json_node *c);
/* Member `key` of an object (the first one if repeated), NULL if absent or not an object. */
const json_node *json_get(const json_doc *d, const json_node *obj, const char *key);
const char *json_type_name(json_type t);

#endif
