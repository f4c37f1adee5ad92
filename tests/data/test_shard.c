/* Token shards: the on-disk header byte by byte, raw uint16 files, every kind of damage
 * (truncation, bad ids, vocab mismatch, missing file) and the writer's atomicity. */
#include <dirent.h>
#include <stdint.h>

#include "fable/data.h"
#include "fable/util.h"
#include "testlib.h"


static void put_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static size_t get_bytes(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Little-endian header written by hand (not by the code under test). */
static size_t hand_header(unsigned char *h, uint32_t vocab, uint64_t n) {
    memcpy(h, "FBLTOKS1", 8);
    uint32_t w[2] = {1, vocab};
    memcpy(h + 8, w, 8);
    memcpy(h + 16, &n, 8);
    uint32_t z[2] = {32, 0};
    memcpy(h + 24, z, 8);
    return 32;
}

static int expect_open_error(const char *path, int vocab, const char *needle1, const char *needle2) {
    shard s;
    int rc = shard_open(&s, path, vocab);
    const char *m = fb_errmsg();
    int ok = rc != 0 && strstr(m, needle1) && (!needle2 || strstr(m, needle2));
    if (!ok) fprintf(stderr, "  open(%s, %d) rc=%d msg='%s' (wanted '%s'/'%s')\n", path, vocab, rc, m, needle1,
                     needle2 ? needle2 : "");
    if (rc == 0) shard_close(&s);
    return ok;
}

static int count_files(void) {
    DIR *d = opendir(t_tmp_dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int main(void) {
    if (t_make_tmpdir("shard")) return 1;

    /* 1. The writer's bytes are exactly the documented header followed by the ids. */
    uint16_t ids[10] = {1, 0, 511, 7, 300, 1, 2, 3, 4, 510};
    CHECK(shard_write(t_tmp_path("a.bin"), ids, 10, 512) == 0, "%s", fb_errmsg());
    unsigned char got[256], want[256];
    size_t ng = get_bytes(t_tmp_path("a.bin"), got, sizeof got);
    size_t nw = hand_header(want, 512, 10);
    memcpy(want + nw, ids, sizeof ids);
    nw += sizeof ids;
    CHECK(ng == nw && ng == 52, "file is %zu bytes, want %zu", ng, nw);
    CHECK(memcmp(got, want, nw) == 0, "bytes differ from the documented layout");

    shard s;
    CHECK(shard_open(&s, t_tmp_path("a.bin"), 0) == 0, "%s", fb_errmsg());
    CHECK(s.has_header == 1 && s.n == 10 && s.vocab_size == 512, "n=%zu vocab=%d", s.n, s.vocab_size);
    CHECK(s.n == 10 && memcmp(s.tokens, ids, sizeof ids) == 0, "ids differ");
    shard_close(&s);
    CHECK(shard_open(&s, t_tmp_path("a.bin"), 512) == 0, "matching vocab: %s", fb_errmsg());
    shard_close(&s);
    CHECK(expect_open_error(t_tmp_path("a.bin"), 32000, "vocab", "512"), "vocab mismatch");

    /* A header shard with zero tokens is valid (and empty). */
    CHECK(shard_write(t_tmp_path("empty.bin"), ids, 0, 512) == 0, "%s", fb_errmsg());
    CHECK(shard_open(&s, t_tmp_path("empty.bin"), 0) == 0 && s.n == 0, "empty shard: %s", fb_errmsg());
    shard_close(&s);

    /* 2. Raw headerless uint16 (llama2.c): needs the vocab; ids checked against it. */
    uint16_t raw[8] = {1, 403, 407, 261, 378, 432, 383, 286};
    put_bytes(t_tmp_path("raw.bin"), raw, sizeof raw);
    CHECK(expect_open_error(t_tmp_path("raw.bin"), 0, "raw.bin", "vocab"), "raw without vocab");
    CHECK(shard_open(&s, t_tmp_path("raw.bin"), 512) == 0, "%s", fb_errmsg());
    CHECK(s.has_header == 0 && s.n == 8 && s.tokens[1] == 403 && s.tokens[7] == 286, "raw content");
    shard_close(&s);
    CHECK(expect_open_error(t_tmp_path("raw.bin"), 432, "token 5 ", "id 432"), "id == vocab at token 5");
    raw[6] = 65535;
    put_bytes(t_tmp_path("raw2.bin"), raw, sizeof raw);
    CHECK(expect_open_error(t_tmp_path("raw2.bin"), 32000, "raw2.bin: token 6 ", "byte offset 12"), "bad id 65535");

    /* 3. Damage. */
    put_bytes(t_tmp_path("odd.bin"), raw, 15);
    CHECK(expect_open_error(t_tmp_path("odd.bin"), 512, "truncated", "15 bytes"), "odd byte count");
    /* header announces 10 tokens, file holds 4 */
    unsigned char buf[128];
    size_t hb = hand_header(buf, 512, 10);
    memcpy(buf + hb, ids, 8);
    put_bytes(t_tmp_path("short.bin"), buf, hb + 8);
    CHECK(expect_open_error(t_tmp_path("short.bin"), 0, "truncated", "10 tokens"), "n_tokens > file");
    /* header cut short */
    put_bytes(t_tmp_path("cut.bin"), buf, 20);
    CHECK(expect_open_error(t_tmp_path("cut.bin"), 0, "truncated", "header"), "header cut short");
    put_bytes(t_tmp_path("cut5.bin"), buf, 5);
    CHECK(expect_open_error(t_tmp_path("cut5.bin"), 512, "truncated", "header"), "header cut to 5 bytes");
    /* trailing bytes after the announced tokens */
    hb = hand_header(buf, 512, 3);
    memcpy(buf + hb, ids, 8);
    put_bytes(t_tmp_path("long.bin"), buf, hb + 8);
    CHECK(expect_open_error(t_tmp_path("long.bin"), 0, "2 bytes after", NULL), "extra bytes");
    /* an id >= vocab inside a header shard: token offset and byte offset (32 + 2*3) */
    hb = hand_header(buf, 300, 4);
    uint16_t bad4[4] = {1, 2, 299, 300};
    memcpy(buf + hb, bad4, 8);
    put_bytes(t_tmp_path("badid.bin"), buf, hb + 8);
    CHECK(expect_open_error(t_tmp_path("badid.bin"), 0, "token 3 ", "byte offset 38"), "bad id in shard");
    /* unsupported version */
    hb = hand_header(buf, 512, 0);
    buf[8] = 2;
    put_bytes(t_tmp_path("v2.bin"), buf, hb);
    CHECK(expect_open_error(t_tmp_path("v2.bin"), 0, "version 2", NULL), "version");
    put_bytes(t_tmp_path("zero.bin"), buf, 0);
    CHECK(expect_open_error(t_tmp_path("zero.bin"), 512, "empty", NULL), "empty raw file");
    CHECK(expect_open_error(t_tmp_path("does-not-exist.bin"), 512, "does-not-exist.bin", "No such file"), "missing");
    CHECK(expect_open_error(t_tmp_dir, 512, "not a regular file", NULL), "directory");

    /* 4. Writer: streaming in pieces equals one write; ids >= vocab are refused and leave
     * neither the target nor a temp file; a failed rewrite keeps the old file intact. */
    shard_writer w;
    CHECK(shard_writer_open(&w, t_tmp_path("b.bin"), 512) == 0, "%s", fb_errmsg());
    CHECK(shard_writer_put(&w, ids, 4) == 0, "%s", fb_errmsg());
    int32_t ids32[6];
    for (int i = 0; i < 6; i++) ids32[i] = ids[4 + i];
    CHECK(shard_writer_put_i32(&w, ids32, 6) == 0, "%s", fb_errmsg());
    CHECK(shard_writer_close(&w) == 0, "%s", fb_errmsg());
    unsigned char got2[256];
    CHECK(get_bytes(t_tmp_path("b.bin"), got2, sizeof got2) == 52 && memcmp(got2, want, 52) == 0,
          "streamed shard differs from the documented bytes");

    int before = count_files();
    CHECK(shard_write(t_tmp_path("c.bin"), ids, 10, 511) != 0, "id 511 with vocab 511 must fail");
    CHECK(strstr(fb_errmsg(), "token 2 ") != NULL, "message names the token: %s", fb_errmsg());
    CHECK(access(t_tmp_path("c.bin"), F_OK) != 0 && count_files() == before, "a failed write left files behind");
    CHECK(shard_writer_open(&w, t_tmp_path("a.bin"), 512) == 0, "%s", fb_errmsg());
    CHECK(shard_writer_put(&w, ids, 3) == 0, "%s", fb_errmsg());
    ids32[0] = -1;
    CHECK(shard_writer_put_i32(&w, ids32, 1) != 0, "negative id must fail");
    CHECK(count_files() == before, "temp file left after abort");
    CHECK(get_bytes(t_tmp_path("a.bin"), got2, sizeof got2) == 52 && memcmp(got2, want, 52) == 0,
          "the old file must be untouched by a failed rewrite");
    CHECK(shard_write(t_tmp_path("nodir/x.bin"), ids, 10, 512) != 0 && strstr(fb_errmsg(), "nodir"),
          "unwritable path: %s", fb_errmsg());

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t_tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return t_done("test_shard");
}
