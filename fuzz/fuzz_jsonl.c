/* Fuzz target: JSON lines (telemetry logs such as train.jsonl, read back one object per
 * line) through json_parse, and the document tree it builds: every node is walked and the
 * reader's invariants are checked (child counts, sibling links, keys, decoded strings). */
#include <string.h>

#include "fable/json.h"
#include "fuzz.h"

/* Walk the subtree at node; returns the number of nodes in it. */
static size_t walk(const json_doc *d, const json_node *node, int in_object) {
    FUZZ_CHECK(node >= d->nodes && node < d->nodes + d->n);
    FUZZ_CHECK((node->key != NULL) == in_object);
    if (node->key) FUZZ_CHECK(node->key[node->key_len] == 0);
    if (node->type == JSON_STRING) FUZZ_CHECK(node->str && node->str[node->len] == 0);
    FUZZ_CHECK(strcmp(json_type_name(node->type), "?") != 0);
    size_t total = 1;
    if (node->type == JSON_ARRAY || node->type == JSON_OBJECT) {
        uint32_t count = 0;
        for (const json_node *c = json_first(d, node); c; c = json_next(d, c)) {
            FUZZ_CHECK(c > node);
            total += walk(d, c, node->type == JSON_OBJECT);
            count++;
            /* json_get finds a member by its key (the first one of that name) */
            if (node->type == JSON_OBJECT && memchr(c->key, 0, c->key_len) == NULL) {
                const json_node *g = json_get(d, node, c->key);
                FUZZ_CHECK(g && g <= c && g->key_len == c->key_len);
            }
        }
        FUZZ_CHECK(count == node->count);
    } else {
        FUZZ_CHECK(node->count == 0 && json_first(d, node) == NULL);
    }
    return total;
}

static void parse_one(const uint8_t *s, size_t n) {
    json_doc doc;
    if (json_parse(&doc, (const char *)s, n, "fuzz.jsonl") != 0) {
        fuzz_check_error();
        FUZZ_CHECK(doc.nodes == NULL && doc.arena == NULL);
        return;
    }
    FUZZ_CHECK(doc.n >= 1 && doc.arena_used <= n + 1);
    FUZZ_CHECK(walk(&doc, json_root(&doc), 0) == doc.n);
    /* the fields a telemetry reader looks up */
    const json_node *t = json_get(&doc, json_root(&doc), "type");
    if (t) FUZZ_CHECK(json_root(&doc)->type == JSON_OBJECT);
    json_free(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || d[i] == '\n') {
            if (i > start) parse_one(d + start, i - start);
            start = i + 1;
        }
    return 0;
}
