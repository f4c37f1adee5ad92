/* Allocation bounds: a size read from a file never allocates more than the file can
 * justify. Each case is a small file (≤ a few KB) whose header claims gigabytes or more:
 * loading it must fail with the reason (truncated, size mismatch, implausible field) and
 * name the file, and must never try the huge allocation.
 *
 * How a huge allocation would show: in the release build the address space is capped at
 * what the process uses now + 512 MB (RLIMIT_AS), so a claim of 4 GB or more would come
 * back as "out of memory" instead of the expected reason; under ASan (whose shadow memory
 * rules out RLIMIT_AS) max_allocation_size_mb=256 with allocator_may_return_null does the
 * same. The peak RSS is checked too.
 *
 * Files: checkpoints (a 7B-size config in 2 KB, n_params that disagree with the config,
 * a training shape that would size 2^30-sequence batches, unterminated path strings),
 * llama2.c models (a 70B config in 1 KB, vocab INT32_MIN), token shards (2^31 and 2^63
 * tokens in 1 KB), tokenizer.bin (a 1 GB piece), SentencePiece .model (a 4 GB protobuf
 * field), and JSON nested 100000 deep (the parser's depth limit guards the C stack).
 */
#include <stdint.h>
#include <sys/resource.h>

#include "fable/ckpt.h"
#include "fable/data.h"
#include "fable/json.h"
#include "fable/model.h"
#include "fable/tokenizer.h"
#include "fable/util.h"
#include "testlib.h"
#include "train/model_file.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=256"; }
#else
#define UNDER_ASAN 0
#endif

static void cap_memory(void) {
    if (UNDER_ASAN) return;
    FILE *f = fopen("/proc/self/status", "r");
    unsigned long long kb = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    struct rlimit r = {.rlim_cur = (rlim_t)(kb << 10) + (512ull << 20), .rlim_max = RLIM_INFINITY};
    if (kb == 0 || setrlimit(RLIMIT_AS, &r) != 0) fprintf(stderr, "note: cannot cap the address space\n");
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

/* The last error names the file, says `why`, and is not an allocation failure. */
static void expect_error(int failed, const char *path, const char *why, const char *what) {
    const char *m = fb_errmsg();
    CHECK(failed, "%s: accepted", what);
    if (!failed) return;
    CHECK(strstr(m, path) != NULL, "%s: message does not name the file: %s", what, m);
    CHECK(strstr(m, why) != NULL, "%s: expected '%s' in: %s", what, why, m);
    CHECK(strstr(m, "out of memory") == NULL, "%s: tried the huge allocation: %s", what, m);
}

/* ---- checkpoints ------------------------------------------------------------------ */

static void ckpt_header_for(ckpt_header *h, const model_config *c) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, CKPT_MAGIC, 8);
    h->version = CKPT_VERSION;
    h->header_bytes = sizeof *h;
    ckpt_cfg_pack(c, h->cfg);
    h->n_params = model_num_params(c);
    h->hp = (train_hparams){.batch = 2, .seq = 4, .accum = 1, .steps = 2, .lr = 1e-3f, .beta1 = 0.9f,
                            .beta2 = 0.95f, .eps = 1e-8f};
}

/* One load through every entry point: header, full load, in memory, model_file_load. */
static void ckpt_expect_error(const char *name, const void *bytes, size_t n, const char *why) {
    const char *path = t_tmp_path(name);
    write_bytes(path, bytes, n);
    ckpt_header h;
    float *p = NULL, *m = NULL, *v = NULL;
    char what[128];
    snprintf(what, sizeof what, "%s: ckpt_read_header", name);
    expect_error(ckpt_read_header(path, &h) != 0, path, why, what);
    snprintf(what, sizeof what, "%s: ckpt_load", name);
    expect_error(ckpt_load(path, &h, &p, &m, &v) != 0, path, why, what);
    CHECK(!p && !m && !v, "%s: arrays returned on failure", name);
    snprintf(what, sizeof what, "%s: ckpt_load_mem", name);
    expect_error(ckpt_load_mem(bytes, n, path, &h, &p, &m, &v) != 0, path, why, what);
    model mo;
    snprintf(what, sizeof what, "%s: model_file_load", name);
    expect_error(model_file_load(&mo, path) != 0, path, why, what);
}

static void test_ckpt(void) {
    /* Llama-2 7B's shape: 6.7e9 parameters, 80 GB of params + moments, in 2 KB */
    model_config big = {4096, 11008, 32, 32, 32, 32000, 4096, 1};
    unsigned char buf[sizeof(ckpt_header) + 1024] = {0};
    ckpt_header h;
    ckpt_header_for(&h, &big);
    memcpy(buf, &h, sizeof h);
    ckpt_expect_error("big.ckpt", buf, sizeof buf, "truncated");
    /* n_params near 2^62, which the config does not need (3 n_params * 4 would wrap) */
    h.n_params = (uint64_t)1 << 62;
    memcpy(buf, &h, sizeof h);
    ckpt_expect_error("nparams.ckpt", buf, sizeof buf, "parameters but the config needs");

    /* A tiny model, file of exactly the right size, but fields that would size the run */
    model_config tiny = {4, 8, 1, 2, 1, 16, 8, 1};
    const size_t np = model_num_params(&tiny), n = sizeof h + 3 * np * sizeof(float) + 8;
    unsigned char *f = calloc(1, n);
    struct { const char *name, *why; void (*edit)(ckpt_header *); } cases[] = {
        {"batch.ckpt", "batch", NULL}, {"seq.ckpt", "seq", NULL}, {"accum.ckpt", "accum", NULL},
        {"path.ckpt", "NUL-terminated", NULL}, {"kind.ckpt", "loader kind", NULL},
        {"replan.ckpt", "correction", NULL},
    };
    for (int k = 0; k < 6; k++) {
        ckpt_header_for(&h, &tiny);
        if (k == 0) h.hp.batch = 1 << 30;
        if (k == 1) h.hp.seq = 1 << 20;          /* > seq_len 8 */
        if (k == 2) h.hp.accum = 1 << 30;
        if (k == 3) memset(h.data_path, 'A', sizeof h.data_path);
        if (k == 4) h.loader.kind = 77;
        if (k == 5) h.replan = (lr_replan){.update = 1 << 30, .progress = 0.5f}; /* past the updates done */
        memcpy(f, &h, sizeof h);
        uint64_t sum = fb_hash64(FB_HASH_INIT, f, sizeof h);
        for (int i = 0; i < 3; i++) sum = fb_hash64(sum, f + sizeof h + i * np * 4, np * 4);
        memcpy(f + n - 8, &sum, 8);
        ckpt_expect_error(cases[k].name, f, n, cases[k].why);
    }
    /* and the same file with sane fields loads (the checks above are not just "reject all") */
    ckpt_header_for(&h, &tiny);
    memcpy(f, &h, sizeof h);
    uint64_t sum = fb_hash64(FB_HASH_INIT, f, sizeof h);
    for (int i = 0; i < 3; i++) sum = fb_hash64(sum, f + sizeof h + i * np * 4, np * 4);
    memcpy(f + n - 8, &sum, 8);
    const char *ok = t_tmp_path("ok.ckpt");
    write_bytes(ok, f, n);
    float *p = NULL;
    CHECK(ckpt_load(ok, &h, &p, NULL, NULL) == 0 && p, "a valid tiny checkpoint: %s", fb_errmsg());
    fb_free(p);
    free(f);
}

/* ---- llama2.c models --------------------------------------------------------------- */

static void test_llama2c(void) {
    /* Llama-2 70B's shape (GQA 64/8): 69e9 floats, 276 GB, in 1 KB */
    int32_t buf[256] = {8192, 28672, 80, 64, 8, 32000, 4096};
    const char *path = t_tmp_path("big.bin");
    write_bytes(path, buf, sizeof buf);
    model m;
    expect_error(model_load_llama2c(&m, path) != 0, path, "does not match its header", "70B llama2c");
    expect_error(model_load_llama2c_mem(&m, buf, sizeof buf, path) != 0, path, "does not match its header",
                 "70B llama2c, in memory");
    expect_error(model_file_load(&m, path) != 0, path, "does not match its header", "70B via model_file_load");
    /* every size at its validated maximum: the products must not overflow size_t either */
    int32_t huge[7] = {65536, 1 << 20, 1024, 2, 1, -65536, 1 << 20};
    path = t_tmp_path("huge.bin");
    write_bytes(path, huge, sizeof huge);
    expect_error(model_load_llama2c(&m, path) != 0, path, "does not match its header", "maximal llama2c");
    int32_t minv[7] = {8, 16, 1, 2, 1, INT32_MIN, 8};
    path = t_tmp_path("minvocab.bin");
    write_bytes(path, minv, sizeof minv);
    expect_error(model_load_llama2c(&m, path) != 0, path, "impossible llama2.c header", "vocab INT32_MIN");
}

/* ---- token shards ------------------------------------------------------------------ */

static void test_shard(void) {
    uint64_t claims[2] = {(uint64_t)1 << 31, UINT64_MAX / 2 + 7};
    for (int k = 0; k < 2; k++) {
        unsigned char buf[1024] = {0};
        memcpy(buf, SHARD_MAGIC, 8);
        uint32_t one = 1, vocab = 512, hb = SHARD_HEADER_BYTES;
        memcpy(buf + 8, &one, 4);
        memcpy(buf + 12, &vocab, 4);
        memcpy(buf + 16, &claims[k], 8);
        memcpy(buf + 24, &hb, 4);
        const char *path = t_tmp_path(k ? "huge.tok" : "big.tok");
        write_bytes(path, buf, sizeof buf);
        shard s;
        expect_error(shard_open(&s, path, 0) != 0, path, "truncated", "shard claiming many tokens");
        expect_error(shard_open_mem(&s, buf, sizeof buf, 0, path) != 0, path, "truncated",
                     "shard claiming many tokens, in memory");
    }
}

/* ---- tokenizers ------------------------------------------------------------------- */

static void test_tokenizers(void) {
    /* tokenizer.bin: max_token_length, then a record (score, len = 1 GB) in a 64-byte file */
    unsigned char bin[64] = {0};
    int32_t maxlen = 16, len = 1 << 30;
    float score = 0;
    memcpy(bin, &maxlen, 4);
    memcpy(bin + 4, &score, 4);
    memcpy(bin + 8, &len, 4);
    const char *path = t_tmp_path("big_tokenizer.bin");
    write_bytes(path, bin, sizeof bin);
    tokenizer *t = tok_load(path);
    expect_error(t == NULL, path, "corrupt or not a tokenizer.bin", "tokenizer.bin with a 1 GB piece");
    if (t) tok_free(t);
    /* a plausible length (4096), but the file ends first */
    len = 4096;
    memcpy(bin + 8, &len, 4);
    write_bytes(path, bin, sizeof bin);
    t = tok_load(path);
    expect_error(t == NULL, path, "truncated", "tokenizer.bin piece past the end");
    if (t) tok_free(t);
    /* .model: field 1 (pieces), wire type 2, length varint 2^32 - 1 */
    unsigned char pb[64] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 'x'};
    path = t_tmp_path("big.model");
    write_bytes(path, pb, sizeof pb);
    t = tok_load(path);
    expect_error(t == NULL, path, "not a valid tokenizer", ".model with a 4 GB field");
    if (t) tok_free(t);
}

/* ---- JSON ------------------------------------------------------------------------- */

static void test_json(void) {
    size_t n = 100000;
    char *s = malloc(n);
    memset(s, '[', n);
    json_doc d;
    expect_error(json_parse(&d, s, n, "deep.json") != 0, "deep.json", "nesting deeper than", "JSON 100000 deep");
    free(s);
}

int main(void) {
    if (t_make_tmpdir("alloc_bounds")) return 1;
    cap_memory();
    test_ckpt();
    test_llama2c();
    test_shard();
    test_tokenizers();
    test_json();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "peak RSS %ld MB\n", ru.ru_maxrss >> 10);
    CHECK(UNDER_ASAN || ru.ru_maxrss < (256 << 10), "peak RSS %ld MB: something allocated what a file claimed",
          ru.ru_maxrss >> 10);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t_tmp_dir);
    if (system(cmd)) fprintf(stderr, "note: could not remove %s\n", t_tmp_dir);
    return t_done("test_alloc_bounds");
}
