/* Model layout, presets, init and llama2.c file loading. Expected parameter counts come
 * from SPEC §2 (and llama2.c's published model sizes), not from fable. */
#include <omp.h>
#include <stdint.h>

#include "fable/model.h"
#include "fable/util.h"
#include "testlib.h"

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

int main(void) {
    /* presets: exact parameter counts of SPEC §2 */
    const char *names[] = {"stories260K", "stories15M", "stories42M", "stories110M"};
    const size_t counts[] = {260032, 15191712, 41689600, 109529856};
    for (int i = 0; i < 4; i++) {
        model_config c;
        CHECK(model_preset(names[i], &c) == 0, "%s", names[i]);
        CHECK(model_num_params(&c) == counts[i], "%s: %zu != %zu", names[i], model_num_params(&c), counts[i]);
    }
    model_config c;
    CHECK(model_preset("stories7B", &c) != 0, "unknown preset accepted");
    /* stories110M at seq 256: ≈685 MFLOP per token (SPEC §2); 6N term = 6·109.5M */
    model_preset("stories110M", &c);
    double f = model_flops_per_token(&c, 256);
    CHECK(f > 680e6 && f < 690e6, "flops/token %.4g", f);

    /* untied adds a [V,D] classifier; custom shapes validate */
    model_config u = {64, 172, 5, 8, 4, 512, 512, 0};
    CHECK(model_num_params(&u) == 260032 + 512 * 64, "untied count %zu", model_num_params(&u));
    model_config bad = {30, 64, 2, 4, 4, 100, 16, 1};  /* 30 % 4 != 0 */
    CHECK(model_config_validate(&bad) != 0, "dim not multiple of heads accepted");
    model_config bad2 = {32, 64, 2, 4, 3, 100, 16, 1}; /* 4 % 3 != 0 */
    CHECK(model_config_validate(&bad2) != 0, "heads not multiple of kv heads accepted");

    /* views: tensors tile the allocation with no gaps, tied classifier aliases the embedding */
    model m;
    CHECK(model_create(&m, &u) == 0, "create");
    model_tensor t[MODEL_MAX_TENSORS];
    int nt = model_tensors(&u, t);
    CHECK(nt == 12, "untied has 12 tensors");
    for (int i = 1; i < nt; i++) CHECK(t[i].offset == t[i - 1].offset + t[i - 1].numel, "gap before %s", t[i].name);
    CHECK(m.w.wcls == m.data + t[11].offset, "wcls view");
    CHECK(m.w.w2 == m.data + t[8].offset, "w2 view");
    model_free(&m);
    model_config tied = u;
    tied.tied = 1;
    model_create(&m, &tied);
    CHECK(m.w.wcls == m.w.tok_emb, "tied classifier aliases the embedding");

    /* init: same seed same weights, different seed different; stds as llama2.c */
    size_t np = model_num_params(&tied);
    float *a = fb_alloc(np * 4), *b = fb_alloc(np * 4);
    model_init_weights(&tied, a, 42);
    model_init_weights(&tied, b, 42);
    CHECK(memcmp(a, b, np * 4) == 0, "same seed, different weights");
    /* the weights depend on the seed only, not on how many threads fill the blocks */
    omp_set_num_threads(3);
    model_init_weights(&tied, b, 42);
    omp_set_num_threads(1);
    CHECK(memcmp(a, b, np * 4) == 0, "same seed, different weights on 3 threads than on 1");
    omp_set_num_threads(omp_get_num_procs());
    model_init_weights(&tied, b, 43);
    CHECK(memcmp(a, b, np * 4) != 0, "different seed, same weights");
    nt = model_tensors(&tied, t);
    for (int i = 0; i < nt; i++) {
        double s = 0, s2 = 0;
        for (size_t k = 0; k < t[i].numel; k++) { s += a[t[i].offset + k]; s2 += (double)a[t[i].offset + k] * a[t[i].offset + k]; }
        double mean = s / t[i].numel, sd = sqrt(s2 / t[i].numel - mean * mean);
        if (!t[i].is_matrix) {
            CHECK(mean == 1.0 && sd < 1e-6, "%s: norms must init to 1", t[i].name);
        } else {
            double want = (!strcmp(t[i].name, "w3") || !strcmp(t[i].name, "wo")) ? 0.02 / sqrt(2.0 * tied.n_layers) : 0.02;
            CHECK(fabs(sd - want) < 0.05 * want && fabs(mean) < 0.1 * want, "%s: std %.5f want %.5f mean %.2g",
                  t[i].name, sd, want, mean);
            /* neighbours (a Box–Muller pair, and pairs across block edges) are uncorrelated */
            double cxy = 0;
            for (size_t k = 0; k + 1 < t[i].numel; k++) cxy += (double)a[t[i].offset + k] * a[t[i].offset + k + 1];
            double corr = cxy / (t[i].numel - 1) / (sd * sd);
            CHECK(fabs(corr) < 6.0 / sqrt((double)t[i].numel), "%s: neighbouring weights correlate (%.4f)", t[i].name, corr);
        }
    }
    model_free(&m);

    /* llama2.c file: real stories260K loads with the header of PROVENANCE.md */
    const char *path = t_data_path("stories260K/stories260K.bin");
    CHECK(model_load_llama2c(&m, path) == 0, "load %s: %s", path, fb_errmsg());
    CHECK(m.cfg.dim == 64 && m.cfg.hidden_dim == 172 && m.cfg.n_layers == 5 && m.cfg.n_heads == 8 &&
              m.cfg.n_kv_heads == 4 && m.cfg.vocab_size == 512 && m.cfg.seq_len == 512 && m.cfg.tied,
          "stories260K header");
    /* save → load round trip is byte-identical to the original file */
    char tmp[] = "/tmp/fable_test_modelXXXXXX";
    int fd = mkstemp(tmp);
    close(fd);
    CHECK(model_save_llama2c(&m, tmp) == 0, "save: %s", fb_errmsg());
    char *orig, *copy;
    size_t lo, lc;
    fb_read_file(path, &orig, &lo);
    fb_read_file(tmp, &copy, &lc);
    /* weights must be identical; the RoPE tables we write may differ in the last ulp from
     * PyTorch's, so compare everything except those [seq_len, HS/2] × 2 floats */
    model_tensors(&m.cfg, t);
    const size_t rope_off = 28 + 4 * (t[10].offset + t[10].numel), rope_len = 4 * 512 * 4 * 2;
    CHECK(lo == lc && memcmp(orig, copy, rope_off) == 0 && memcmp(orig + rope_off + rope_len, copy + rope_off + rope_len, lo - rope_off - rope_len) == 0,
          "save/load round trip differs (%zu vs %zu bytes)", lo, lc);
    /* bad files: truncated, impossible header, trailing data — each names the file */
    write_bytes(tmp, orig, lo - 100);
    model m2;
    CHECK(model_load_llama2c(&m2, tmp) != 0 && strstr(fb_errmsg(), tmp) && strstr(fb_errmsg(), "truncated"),
          "truncated: %s", fb_errmsg());
    write_bytes(tmp, orig, 10);
    CHECK(model_load_llama2c(&m2, tmp) != 0 && strstr(fb_errmsg(), "truncated"), "short header: %s", fb_errmsg());
    int32_t hdr[7] = {64, 172, 5, 8, 3, 512, 512}; /* 8 heads, 3 kv heads: impossible */
    memcpy(copy, hdr, sizeof hdr);
    write_bytes(tmp, copy, lc);
    CHECK(model_load_llama2c(&m2, tmp) != 0 && strstr(fb_errmsg(), "impossible"), "bad header: %s", fb_errmsg());
    int32_t hdr2[7] = {64, 172, 5, 8, 4, 512, 512};
    memcpy(copy, hdr2, sizeof hdr2);
    FILE *fw = fopen(tmp, "wb");
    fwrite(copy, 1, lc, fw);
    fwrite("junk", 1, 4, fw);
    fclose(fw);
    CHECK(model_load_llama2c(&m2, tmp) != 0 && strstr(fb_errmsg(), "trailing"), "trailing: %s", fb_errmsg());
    CHECK(model_load_llama2c(&m2, "/nonexistent/model.bin") != 0 && strstr(fb_errmsg(), "/nonexistent/model.bin"),
          "missing file: %s", fb_errmsg());
    unlink(tmp);
    free(orig);
    free(copy);
    model_free(&m);
    fb_free(a);
    fb_free(b);
    return t_done("test_model");
}
