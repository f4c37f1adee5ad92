/* Bad tokenizer files: a clear error naming the file, never a crash (this test also runs
 * under ASan+UBSan, where a read past the end would abort it).
 *   - missing file, directory, empty file, random bytes;
 *   - tok512.model / tokenizer.model cut at many lengths; tok512.bin cut at every length
 *     (cut exactly between two records it is a valid smaller vocabulary: then it must load
 *     with fewer pieces);
 *   - random byte flips in tok512.model and tok512.bin: load or fail, but never crash, and
 *     a tokenizer that loads must encode;
 *   - well-formed models the encoder cannot use: unigram, byte pieces without byte_fallback,
 *     duplicate pieces, no <unk>.
 */
#include <stdint.h>

#include "data/spm_proto.h"
#include "fable/tokenizer.h"
#include "fable/util.h"
#include "testlib.h"

static int quick;

/* tok_load_mem must fail and name the file. */
static void expect_fail(const void *d, size_t n, const char *name, const char *what) {
    tokenizer *t = tok_load_mem(d, n, name);
    CHECK(t == NULL, "%s: loaded although it should not", what);
    if (t) { tok_free(t); return; }
    CHECK(strstr(fb_errmsg(), name) != NULL, "%s: message '%s' does not name the file", what, fb_errmsg());
}

static void exercise(tokenizer *t) {
    const char *txt = "Once upon a time, \xff there was a \xF0\x9F\x98\x80 cat.\n  ";
    int32_t ids[256];
    long n = tok_encode(t, txt, strlen(txt), 1, 1, ids, 256);
    CHECK(n >= 2, "encode on a loadable tokenizer");
    char out[1024];
    for (long i = 0; i < n && i < 256; i++) {
        size_t l;
        tok_decode_piece(t, i ? ids[i - 1] : 1, ids[i], &l);
    }
    if (n > 0 && n <= 256) tok_decode(t, ids, (size_t)n, out, sizeof out);
}

/* Serialize m and try to load it. */
static tokenizer *load_model(spm_model *m, const char *name) {
    uint8_t *buf;
    size_t len;
    if (spm_model_serialize(m, &buf, &len)) return NULL;
    tokenizer *t = tok_load_mem(buf, len, name);
    free(buf);
    return t;
}

int main(void) {
    quick = getenv("FABLE_TEST_QUICK") && atoi(getenv("FABLE_TEST_QUICK"));

    /* missing, directory, empty */
    tokenizer *t = tok_load("/nonexistent/dir/tokenizer.model");
    CHECK(!t && strstr(fb_errmsg(), "/nonexistent/dir/tokenizer.model"), "missing file: '%s'", fb_errmsg());
    t = tok_load("/tmp");
    CHECK(!t && strstr(fb_errmsg(), "/tmp"), "directory: '%s'", fb_errmsg());
    if (t) tok_free(t);
    expect_fail("", 0, "empty.model", "empty file");
    CHECK(strstr(fb_errmsg(), "empty") != NULL, "empty file message: '%s'", fb_errmsg());

    /* random bytes (including ones that start like a protobuf or a plausible .bin header) */
    fb_rng r;
    fb_rng_seed(&r, 1234);
    uint8_t *rnd = malloc(1 << 16);
    for (int trial = 0; trial < (quick ? 50 : 400); trial++) {
        size_t n = 1 + fb_rng_u32(&r) % (trial < 200 ? 64 : 65536);
        for (size_t i = 0; i < n; i++) rnd[i] = (uint8_t)fb_rng_u32(&r);
        if (trial % 3 == 1) rnd[0] = 0x0A;
        if (trial % 3 == 2 && n >= 4) { rnd[0] = 27; rnd[1] = rnd[2] = rnd[3] = 0; }
        expect_fail(rnd, n, "random.bin", "random bytes");
    }
    free(rnd);

    /* truncated .model files */
    const char *models[2] = {"stories260K/tok512.model", "tokenizer/tokenizer.model"};
    for (int mi = 0; mi < 2; mi++) {
        char *d;
        size_t n;
        CHECK(fb_read_file(t_data_path(models[mi]), &d, &n) == 0, "read %s", models[mi]);
        if (!d) continue;
        size_t step = mi == 0 ? (quick ? 7 : 1) : (quick ? 4999 : 997), tried = 0;
        for (size_t k = 0; k < n; k += step, tried++) expect_fail(d, k, "cut.model", "truncated .model");
        expect_fail(d, n - 1, "cut.model", "truncated .model (last byte)");
        t = tok_load_mem(d, n, "whole.model");
        CHECK(t != NULL, "the whole %s loads", models[mi]);
        tok_free(t);
        fprintf(stderr, "%s: %zu truncations rejected\n", models[mi], tried + 1);
        free(d);
    }

    /* truncated tok512.bin: every length */
    {
        char *d;
        size_t n;
        CHECK(fb_read_file(t_data_path("stories260K/tok512.bin"), &d, &n) == 0, "read tok512.bin");
        if (d) {
            /* record boundaries */
            int *bound = calloc(n + 1, sizeof *bound);  /* records before a boundary, + 1 */
            size_t p = 4, nrec = 0;
            bound[4] = 1;
            while (p + 8 <= n) {
                int32_t l;
                memcpy(&l, d + p + 4, 4);
                p += 8 + (size_t)l;
                nrec++;
                if (p <= n) bound[p] = (int)nrec + 1;
            }
            CHECK(nrec == 512 && p == n, "tok512.bin has %zu records", nrec);
            size_t rejected = 0, smaller = 0;
            for (size_t k = 0; k < n; k++) {
                t = tok_load_mem(d, k, "cut.bin");
                if (bound[k] > 3) {  /* at least 3 records */
                    /* a whole number of records: a valid, smaller vocabulary */
                    CHECK(t && tok_vocab_size(t) < 512, "cut at a record boundary %zu", k);
                    smaller += t != NULL;
                } else {
                    CHECK(!t && strstr(fb_errmsg(), "cut.bin"), "cut at %zu loaded (%s)", k, t ? "" : fb_errmsg());
                    rejected += !t;
                }
                if (t) tok_free(t);
            }
            fprintf(stderr, "tok512.bin: %zu truncations rejected, %zu record-boundary cuts load as smaller vocabularies\n",
                    rejected, smaller);
            free(bound);
            free(d);
        }
    }

    /* random corruption: never a crash */
    const char *files[2] = {"stories260K/tok512.model", "stories260K/tok512.bin"};
    for (int fi = 0; fi < 2; fi++) {
        char *d;
        size_t n;
        if (fb_read_file(t_data_path(files[fi]), &d, &n)) continue;
        char *c = malloc(n);
        int loaded = 0, trials = quick ? 100 : 1000;
        for (int trial = 0; trial < trials; trial++) {
            memcpy(c, d, n);
            int flips = 1 + (int)(fb_rng_u32(&r) % 4);
            for (int k = 0; k < flips; k++) c[fb_rng_u32(&r) % n] = (char)fb_rng_u32(&r);
            t = tok_load_mem(c, n, "flipped");
            if (t) {
                loaded++;
                exercise(t);
                tok_free(t);
            } else {
                CHECK(strstr(fb_errmsg(), "flipped") != NULL, "corrupt file message '%s'", fb_errmsg());
            }
        }
        fprintf(stderr, "%s: %d random corruptions, %d still load (a flipped score or letter is still a tokenizer)\n",
                files[fi], trials, loaded);
        free(c);
        free(d);
    }

    /* Well-formed models the encoder must refuse. Built from tok512.model. */
    {
        char *d;
        size_t n;
        char err[256];
        spm_model m;
        if (fb_read_file(t_data_path("stories260K/tok512.model"), &d, &n) == 0 &&
            spm_model_parse(&m, (const uint8_t *)d, n, err, sizeof err) == 0) {
            t = load_model(&m, "same.model");
            CHECK(t != NULL, "re-serialized tok512.model loads: %s", fb_errmsg());
            if (t) {
                int32_t ids[64];
                long k = tok_encode(t, "Once upon a time", 16, 0, 0, ids, 64);
                CHECK(k == 4 && ids[0] == 403 && ids[1] == 407 && ids[2] == 261 && ids[3] == 378,
                      "re-serialized tok512 encodes like tok512 (403 407 261 378)");
                tok_free(t);
            }
            m.model_type = SPM_UNIGRAM;
            t = load_model(&m, "unigram.model");
            CHECK(!t && strstr(fb_errmsg(), "unigram") && strstr(fb_errmsg(), "unigram.model"), "unigram: '%s'", fb_errmsg());
            m.model_type = SPM_BPE;
            m.byte_fallback = 0;
            t = load_model(&m, "nofallback.model");
            CHECK(!t && strstr(fb_errmsg(), "byte_fallback"), "byte pieces without byte_fallback: '%s'", fb_errmsg());
            m.byte_fallback = 1;
            char *saved = m.pieces[300].piece;
            uint32_t saved_len = m.pieces[300].len;
            m.pieces[300].piece = m.pieces[301].piece;
            m.pieces[300].len = m.pieces[301].len;
            t = load_model(&m, "dup.model");
            CHECK(!t && strstr(fb_errmsg(), "already defined"), "duplicate piece: '%s'", fb_errmsg());
            m.pieces[300].piece = saved;
            m.pieces[300].len = saved_len;
            m.pieces[0].type = TOK_CONTROL;
            t = load_model(&m, "nounk.model");
            CHECK(!t && strstr(fb_errmsg(), "<unk>"), "no <unk>: '%s'", fb_errmsg());
            m.pieces[0].type = TOK_UNKNOWN;
            m.pieces[5].type = TOK_NORMAL;  /* <0x02> is no longer a byte piece */
            t = load_model(&m, "255bytes.model");
            CHECK(!t && strstr(fb_errmsg(), "255"), "a byte piece missing: '%s'", fb_errmsg());
            spm_model_free(&m);
        } else {
            CHECK(0, "cannot parse tok512.model");
        }
        free(d);
    }
    return t_done("test_tokenizer_errors");
}
