/* JSON reader: structure, every escape (incl. \u and surrogate pairs, compared with
 * UTF-8 bytes written out by hand), numbers, and malformed input rejected with the byte
 * offset. Then the real TinyStories JSON files parse to the documented story counts. */
#include "fable/json.h"
#include "fable/util.h"
#include "testlib.h"

static int parse(json_doc *d, const char *s) { return json_parse(d, s, strlen(s), "t.json"); }

static int rejects(const char *s, const char *needle) {
    json_doc d;
    int rc = parse(&d, s);
    int ok = rc != 0 && strstr(fb_errmsg(), needle) != NULL && strstr(fb_errmsg(), "t.json") != NULL;
    if (!ok) fprintf(stderr, "  input %s: rc=%d msg='%s' (wanted '%s')\n", s, rc, rc ? fb_errmsg() : "", needle);
    if (rc == 0) json_free(&d);
    return ok;
}

int main(void) {
    json_doc d;
    const char *doc = " {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {}, \"c\": [], \"a\": 0} ";
    CHECK(parse(&d, doc) == 0, "%s", fb_errmsg());
    const json_node *r = json_root(&d);
    CHECK(r->type == JSON_OBJECT && r->count == 4, "root %s count %u", json_type_name(r->type), r->count);
    const json_node *a = json_get(&d, r, "a");
    CHECK(a && a->type == JSON_ARRAY && a->count == 6, "a");
    const json_node *e = json_first(&d, a);
    CHECK(e && e->type == JSON_NUMBER && e->num == 1.0, "a[0]");
    e = json_next(&d, e);
    CHECK(e && e->type == JSON_NUMBER && e->num == -2500.0, "a[1] = %g", e ? e->num : 0);
    e = json_next(&d, e);
    CHECK(e && e->type == JSON_TRUE, "a[2]");
    e = json_next(&d, json_next(&d, e));
    CHECK(e && e->type == JSON_NULL, "a[4]");
    e = json_next(&d, e);
    CHECK(e && e->type == JSON_STRING && e->len == 1 && !strcmp(e->str, "x") && !json_next(&d, e), "a[5]");
    const json_node *b = json_get(&d, r, "b"), *c = json_get(&d, r, "c");
    CHECK(b && b->type == JSON_OBJECT && b->count == 0 && !json_first(&d, b), "b");
    CHECK(c && c->type == JSON_ARRAY && c->count == 0, "c");
    CHECK(json_get(&d, r, "zz") == NULL && json_get(&d, a, "a") == NULL, "absent key");
    json_free(&d);

    /* Escapes. Expected bytes written by hand: é = C3 A9, € = E2 82 AC, 😀 (U+1F600) =
     * F0 9F 98 80 (UTF-16 D83D DE00), U+0000 = one NUL byte. Raw UTF-8 and invalid bytes
     * (0xFF) pass through untouched. */
    const char *esc = "[\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t|\\u00e9|\\u20AC|\\ud83d\\uDE00|\\u0000|\xc3\xa9\xff\"]";
    CHECK(parse(&d, esc) == 0, "%s", fb_errmsg());
    const char want[] = "q\" b\\ s/ \b\f\n\r\t|\xc3\xa9|\xe2\x82\xac|\xf0\x9f\x98\x80|\0|\xc3\xa9\xff";
    e = json_first(&d, json_root(&d));
    CHECK(e && e->len == sizeof want - 1 && memcmp(e->str, want, sizeof want - 1) == 0 && e->str[e->len] == 0,
          "escapes decoded wrong (len %zu, want %zu)", e ? e->len : 0, sizeof want - 1);
    json_free(&d);
    CHECK(parse(&d, "\xEF\xBB\xBF[\"bom\"]") == 0, "BOM: %s", fb_errmsg());
    json_free(&d);
    CHECK(parse(&d, "0") == 0 && json_root(&d)->type == JSON_NUMBER, "scalar root");
    json_free(&d);

    /* Malformed: each with the byte offset where it goes wrong. */
    CHECK(rejects("", "byte 0"), "empty");
    CHECK(rejects("[1, 2", "byte 5"), "unterminated array");
    CHECK(rejects("[1 2]", "byte 3 (line 1, column 4)"), "missing comma");
    CHECK(rejects("[1,]", "byte 3"), "trailing comma");
    CHECK(rejects("{\"a\" 1}", "':'"), "missing colon");
    CHECK(rejects("{1: 2}", "string key"), "non-string key");
    CHECK(rejects("[\"abc", "unterminated string"), "unterminated string");
    CHECK(rejects("[\"a\nb\"]", "control character 0x0A"), "raw newline in string");
    CHECK(rejects("[\"\\x\"]", "invalid escape '\\x'"), "bad escape");
    CHECK(rejects("[\"\\u12G4\"]", "4 hex digits"), "bad \\u");
    CHECK(rejects("[\"\\ud83d\"]", "low surrogate"), "lone high surrogate");
    CHECK(rejects("[\"\\ud83d\\u0041\"]", "low surrogate"), "high + non-low");
    CHECK(rejects("[\"\\ude00\"]", "unpaired low surrogate"), "lone low surrogate");
    CHECK(rejects("[01]", "expected ',' or ']'"), "leading zero");
    CHECK(rejects("[1.]", "after '.'"), "1.");
    CHECK(rejects("[1e]", "exponent"), "1e");
    CHECK(rejects("[tru]", "invalid literal"), "tru");
    CHECK(rejects("[1]x", "after the end"), "trailing data");
    CHECK(rejects("\n\n  @", "line 3, column 3"), "line/column");
    char deep[2000];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    CHECK(rejects(deep, "nesting"), "deep nesting");

    /* Real files: the counts PROVENANCE.md documents. */
    CHECK(json_parse_file(&d, t_data_path("tinystories/tinystories_v1_train_first1000.json")) == 0, "%s", fb_errmsg());
    r = json_root(&d);
    CHECK(r->type == JSON_ARRAY && r->count == 1000, "v1 train: %s of %u", json_type_name(r->type), r->count);
    int nonstr = 0;
    for (e = json_first(&d, r); e; e = json_next(&d, e)) nonstr += e->type != JSON_STRING;
    CHECK(nonstr == 0, "%d non-strings", nonstr);
    e = json_first(&d, r);
    CHECK(e && !strncmp(e->str, "One day, a little girl named Lily found a needle in her room.", 61), "first story");
    json_free(&d);
    CHECK(json_parse_file(&d, t_data_path("tinystories/tinystories_subset3000.json")) == 0, "%s", fb_errmsg());
    const json_node *texts = json_get(&d, json_root(&d), "texts");
    CHECK(texts && texts->type == JSON_ARRAY && texts->count == 3000, "subset3000");
    json_free(&d);
    CHECK(json_parse_file(&d, "/nonexistent.json") != 0 && strstr(fb_errmsg(), "/nonexistent.json"), "missing file");
    return t_done("test_json");
}
