/* Text corpora and tokenization to shards, against independent references: the story
 * counts and the per-vocabulary token counts that shared/data/PROVENANCE.md records
 * (measured with sentencepiece itself), and the id list PROVENANCE gives for one sentence. */
#include "fable/data.h"
#include "fable/tokenizer.h"
#include "fable/util.h"
#include "testlib.h"


static void put_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(s, 1, strlen(s), f);
    fclose(f);
}

typedef struct {
    const char *file;
    corpus_format fmt;
    size_t stories;
    uint64_t llama, tok512;
} ref_file;

/* PROVENANCE.md, "tinystories/" table (no BOS, per story). */
static const ref_file refs[] = {
    {"tinystories_v1_train_first1000.json", CORPUS_JSON, 1000, 256374, 478303},
    {"tinystories_v1_valid_first1000.txt", CORPUS_EOT, 1000, 210352, 389330},
    {"tinystories_v2_train_first10000lines.txt", CORPUS_EOT, 1728, 371741, 680125},
    {"tinystories_subset3000.json", CORPUS_JSON, 3000, 638448, 1168973},
    {"tinystories_v2_sample_cs336.txt", CORPUS_EOT, 5, 942, 1804},
};

/* Tokenize c with t into one shard; check the shard; return its token count without BOS. */
static uint64_t encode_to_shard(const tokenizer *t, const corpus *c, int threads, const char *name) {
    shard_writer w;
    shard_writer *outs[2] = {&w, NULL};
    tokenize_stats st[2];
    if (shard_writer_open(&w, t_tmp_path(name), tok_vocab_size(t)) != 0) return 0;
    if (tokenize_corpus(t, c, NULL, outs, threads, NULL, NULL, st) != 0 || shard_writer_close(&w) != 0) {
        fprintf(stderr, "  %s\n", fb_errmsg());
        return 0;
    }
    shard s;
    if (shard_open(&s, t_tmp_path(name), tok_vocab_size(t)) != 0) return 0;
    /* BOS starts the shard and appears once per story */
    size_t bos = 0;
    for (size_t i = 0; i < s.n; i++) bos += s.tokens[i] == tok_bos_id(t);
    CHECK(s.n > 0 && s.tokens[0] == tok_bos_id(t), "%s: shard does not start with BOS", name);
    CHECK(bos == c->n && st[0].stories == c->n, "%s: %zu BOS for %zu stories", name, bos, c->n);
    CHECK(s.n == st[0].tokens + c->n, "%s: shard has %zu ids, stats say %llu + %zu", name, s.n,
          (unsigned long long)st[0].tokens, c->n);
    uint64_t n = s.n - bos;
    shard_close(&s);
    return n;
}

static void test_strip(void) {
    struct {
        const char *in, *out;
    } cases[] = {
        {"  hello world \n\n", "hello world"},
        {"\t\r\n\v\f x", "x"},
        {"\x1c\x1d\x1e\x1f" "a b" "\x1f", "a b"},               /* Python counts FS/GS/RS/US as space */
        {"\xc2\xa0\xc2\x85 y \xe3\x80\x80\xe2\x80\x83", "y"},   /* NBSP, NEL, ideographic space, em space */
        {"\xe2\x80\xa8z\xe2\x80\xa9", "z"},                     /* line/paragraph separators */
        {"\xc2\xa1hola!\xc2\xa1", "\xc2\xa1hola!\xc2\xa1"},     /* inverted ! is not a space */
        {"\xe2\x80\x8bw\xe2\x80\x8b", "\xe2\x80\x8bw\xe2\x80\x8b"}, /* zero-width space is not (Python) */
        {" \xff bad \xa0", "\xff bad \xa0"},                    /* invalid UTF-8 kept as it is */
        {"   ", ""},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        const char *s = corpus_strip(cases[i].in, &len);
        CHECK(len == strlen(cases[i].out) && memcmp(s, cases[i].out, len) == 0, "strip case %zu", i);
    }
}

static void test_formats(void) {
    corpus c = {0};
    /* EOT: separator on its own line or inline; blank stories dropped; stripped */
    const char *eot = "\n  First story.\n\nSecond paragraph.\n<|endoftext|>\nSecond<|endoftext|><|endoftext|>\n  \n"
                      "<|endoftext|>Third\n";
    CHECK(corpus_add_text(&c, eot, strlen(eot), CORPUS_AUTO, "eot") == 0, "%s", fb_errmsg());
    CHECK(c.n == 3, "eot: %zu stories", c.n);
    if (c.n == 3) {
        CHECK(c.len[0] == 31 && !memcmp(c.text[0], "First story.\n\nSecond paragraph.", 31), "eot story 0");
        CHECK(c.len[1] == 6 && !memcmp(c.text[1], "Second", 6), "eot story 1");
        CHECK(c.len[2] == 5 && !memcmp(c.text[2], "Third", 5), "eot story 2");
    }
    corpus_free(&c);
    /* lines */
    const char *lines = "one\n\n  two  \r\nthree";
    CHECK(corpus_add_text(&c, lines, strlen(lines), CORPUS_AUTO, "lines") == 0 && c.n == 3, "lines: %zu", c.n);
    if (c.n == 3) CHECK(c.len[1] == 3 && !memcmp(c.text[1], "two", 3), "lines story 1");
    corpus_free(&c);
    /* the same text read as EOT is one story */
    CHECK(corpus_add_text(&c, lines, strlen(lines), CORPUS_EOT, "x") == 0 && c.n == 1, "lines as eot: %zu", c.n);
    corpus_free(&c);
    /* JSON shapes */
    const char *j1 = "[{\"story\": \" A \\\"q\\\" \\u00e9 \", \"summary\": \"no\"}, {\"text\": \"B\"}, \"C\", \"  \"]";
    CHECK(corpus_add_text(&c, j1, strlen(j1), CORPUS_AUTO, "j1") == 0 && c.n == 3, "json objects: %zu", c.n);
    if (c.n == 3) {
        CHECK(c.len[0] == 8 && !memcmp(c.text[0], "A \"q\" \xc3\xa9", 8), "story member decoded and stripped");
        CHECK(c.len[1] == 1 && c.text[1][0] == 'B' && c.text[2][0] == 'C', "text member and plain string");
    }
    corpus_free(&c);
    const char *j2 = "{\"stories\": [\"x\", \"y\"]}";
    CHECK(corpus_add_text(&c, j2, strlen(j2), CORPUS_JSON, "j2") == 0 && c.n == 2, "json stories object");
    corpus_free(&c);
    /* errors: each names the input */
    struct {
        const char *text, *needle;
    } bad[] = {
        {"[{\"title\": \"x\"}]", "element 0 is an object without"},
        {"[\"ok\", 7]", "element 1: a story must be a string, found a number"},
        {"{\"text\": [\"x\"]}", "\"texts\""},
        {"[\"unterminated", "malformed JSON at byte 1"},
        {"[\"a\" \"b\"]", "byte 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = corpus_add_text(&c, bad[i].text, strlen(bad[i].text), CORPUS_AUTO, "bad.json");
        CHECK(rc != 0 && strstr(fb_errmsg(), bad[i].needle) && strstr(fb_errmsg(), "bad.json"),
              "bad json %zu: %s", i, fb_errmsg());
        corpus_free(&c);
    }
    CHECK(corpus_add_file(&c, t_tmp_path("missing.txt"), CORPUS_AUTO, NULL) != 0 &&
              strstr(fb_errmsg(), "missing.txt") && strstr(fb_errmsg(), "No such file"),
          "missing file: %s", fb_errmsg());
    put_file(t_tmp_path("empty.txt"), "");
    CHECK(corpus_add_file(&c, t_tmp_path("empty.txt"), CORPUS_AUTO, NULL) != 0 && strstr(fb_errmsg(), "empty"),
          "empty file: %s", fb_errmsg());
    corpus_free(&c);
    corpus_format f;
    CHECK(corpus_format_parse("eot", &f) == 0 && f == CORPUS_EOT && corpus_format_parse("xml", &f) != 0, "parse");
}

static void test_split(void) {
    unsigned char s[1000];
    tokenize_split_fraction(10, 0.1, s);
    int n = 0;
    for (int i = 0; i < 10; i++) n += s[i];
    CHECK(n == 1 && s[9] == 1, "10 stories at 0.1: %d validation", n);
    tokenize_split_fraction(1000, 0.05, s);
    n = 0;
    int maxgap = 0, last = -1;
    for (int i = 0; i < 1000; i++)
        if (s[i]) {
            n++;
            if (i - last > maxgap) maxgap = i - last;
            last = i;
        }
    CHECK(n == 50 && maxgap == 20, "1000 at 0.05: %d validation, max gap %d", n, maxgap);
}

int main(void) {
    int quick = getenv("FABLE_TEST_QUICK") != NULL;
    if (t_make_tmpdir("tokenize")) return 1;
    test_strip();
    test_formats();
    test_split();

    /* story counts of the real files, format detected by content */
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        corpus c = {0};
        corpus_format used;
        char rel[256];
        snprintf(rel, sizeof rel, "tinystories/%s", refs[i].file);
        CHECK(corpus_add_file(&c, t_data_path(rel), CORPUS_AUTO, &used) == 0, "%s", fb_errmsg());
        CHECK(c.n == refs[i].stories && used == refs[i].fmt, "%s: %zu stories as %s, want %zu as %s", refs[i].file,
              c.n, corpus_format_name(used), refs[i].stories, corpus_format_name(refs[i].fmt));
        corpus_free(&c);
    }

    /* PROVENANCE's sentence through the whole path (lines format -> shard): BOS + its ids */
    tokenizer *llama = tok_load(t_data_path("tokenizer/tokenizer.model"));
    tokenizer *t512 = tok_load(t_data_path("stories260K/tok512.model"));
    CHECK(llama && t512, "tokenizers: %s", fb_errmsg());
    if (!llama || !t512) return t_done("test_tokenize");
    const char *lily = "  Once upon a time, there was a little girl named Lily.  \n\n";
    static const uint16_t want[] = {1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889};
    corpus c = {0};
    CHECK(corpus_add_text(&c, lily, strlen(lily), CORPUS_LINES, "lily") == 0 && c.n == 1, "lily corpus");
    CHECK(encode_to_shard(llama, &c, 1, "lily.bin") == 14, "lily: 14 tokens");
    shard s;
    CHECK(shard_open(&s, t_tmp_path("lily.bin"), 32000) == 0 && s.n == 15 && !memcmp(s.tokens, want, sizeof want),
          "lily ids differ from PROVENANCE.md");
    shard_close(&s);
    corpus_free(&c);

    /* Invalid UTF-8 goes through to the tokenizer (byte fallback), never an error. */
    const char *bad = "A \xff\xfe broken \xc3 story.";
    CHECK(corpus_add_text(&c, bad, strlen(bad), CORPUS_LINES, "bad") == 0 && c.n == 1, "bad utf-8 corpus");
    CHECK(encode_to_shard(llama, &c, 1, "bad.bin") > 5, "bad utf-8 story");
    corpus_free(&c);

    /* Token totals per file and vocabulary (PROVENANCE.md). Under the sanitizers only the
     * small files: the counts are the same code path. */
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        if (quick && refs[i].stories > 1000) continue;
        char rel[256];
        snprintf(rel, sizeof rel, "tinystories/%s", refs[i].file);
        CHECK(corpus_add_file(&c, t_data_path(rel), CORPUS_AUTO, NULL) == 0, "%s", fb_errmsg());
        uint64_t nl = encode_to_shard(llama, &c, 2, "l.bin");
        uint64_t n5 = encode_to_shard(t512, &c, 2, "t.bin");
        CHECK(nl == refs[i].llama, "%s: %llu Llama 2 tokens, PROVENANCE says %llu", refs[i].file,
              (unsigned long long)nl, (unsigned long long)refs[i].llama);
        CHECK(n5 == refs[i].tok512, "%s: %llu tok512 tokens, PROVENANCE says %llu", refs[i].file,
              (unsigned long long)n5, (unsigned long long)refs[i].tok512);
        if (i == 4) {
            /* thread count does not change the bytes */
            shard a, b;
            encode_to_shard(t512, &c, 1, "t1.bin");
            CHECK(shard_open(&a, t_tmp_path("t.bin"), 0) == 0 && shard_open(&b, t_tmp_path("t1.bin"), 0) == 0 && a.n == b.n &&
                      !memcmp(a.tokens, b.tokens, a.n * 2),
                  "1 and 2 threads differ");
            shard_close(&a);
            shard_close(&b);
        }
        corpus_free(&c);
    }

    /* Split to two writers: train + val add up to the whole, val gets floor(n f) stories. */
    CHECK(corpus_add_file(&c, t_data_path("tinystories/tinystories_v2_sample_cs336.txt"), CORPUS_AUTO, NULL) == 0, "cs336");
    unsigned char split[5];
    tokenize_split_fraction(5, 0.4, split);
    shard_writer wt, wv;
    shard_writer *outs[2] = {&wt, &wv};
    tokenize_stats st[2];
    CHECK(shard_writer_open(&wt, t_tmp_path("tr.bin"), 512) == 0 && shard_writer_open(&wv, t_tmp_path("va.bin"), 512) == 0, "open");
    CHECK(tokenize_corpus(t512, &c, split, outs, 2, NULL, NULL, st) == 0, "%s", fb_errmsg());
    CHECK(shard_writer_close(&wt) == 0 && shard_writer_close(&wv) == 0, "close");
    CHECK(st[0].stories == 3 && st[1].stories == 2 && st[0].tokens + st[1].tokens == 1804, "split: %llu + %llu stories, "
          "%llu + %llu tokens", (unsigned long long)st[0].stories, (unsigned long long)st[1].stories,
          (unsigned long long)st[0].tokens, (unsigned long long)st[1].tokens);
    corpus_free(&c);

    /* A tokenizer larger than the writer's vocab: ids are refused, not truncated. */
    CHECK(corpus_add_text(&c, "Lily is happy.", 14, CORPUS_LINES, "v") == 0, "corpus");
    CHECK(shard_writer_open(&wt, t_tmp_path("small.bin"), 300) == 0, "open");
    outs[0] = &wt;
    outs[1] = NULL;
    CHECK(tokenize_corpus(llama, &c, NULL, outs, 1, NULL, NULL, st) != 0 && strstr(fb_errmsg(), "vocab"),
          "ids >= vocab must fail: %s", fb_errmsg());
    shard_writer_abort(&wt);
    CHECK(access(t_tmp_path("small.bin"), F_OK) != 0, "no shard after a failure");
    corpus_free(&c);

    tok_free(llama);
    tok_free(t512);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t_tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return t_done("test_tokenize");
}
