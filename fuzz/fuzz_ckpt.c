/* Fuzz target: fable checkpoints (ckpt_load_mem: header checks, size, checksum).
 * Random bytes almost never carry a valid checksum, and a header only gets past the size
 * check in a file of exactly the size it announces, so each input is tried three ways:
 *   1. as it is;
 *   2. with its last 8 bytes replaced by the checksum of the rest (when the size splits
 *      into header + 3 equal arrays + 8), so the loader's success path is fuzzed too;
 *   3. its first sizeof(ckpt_header) bytes as the header of a file made to the size that
 *      header announces (n_params <= 2^16: the rest of the input, then zeros, and a
 *      matching checksum), so that small inputs reach every check after the size one
 *      and the kept corpus holds headers, not whole checkpoints. */
#include <string.h>

#include "fable/ckpt.h"
#include "fuzz.h"

static void try_load(const uint8_t *d, size_t n) {
    ckpt_header h;
    float *p = NULL, *m = NULL, *v = NULL;
    if (ckpt_load_mem(d, n, "fuzz.ckpt", &h, &p, &m, &v) != 0) {
        fuzz_check_error();
        FUZZ_CHECK(!p && !m && !v);
        return;
    }
    model_config c;
    ckpt_cfg_unpack(h.cfg, &c);
    FUZZ_CHECK(model_config_validate(&c) == 0);
    FUZZ_CHECK(h.n_params == model_num_params(&c));
    FUZZ_CHECK(n == sizeof h + 3 * h.n_params * sizeof(float) + 8);
    FUZZ_CHECK(memchr(h.data_path, 0, sizeof h.data_path) && memchr(h.engine, 0, sizeof h.engine));
    FUZZ_CHECK(p && m && v);
    model_params w;
    model_params_view(&c, p, &w);
    FUZZ_CHECK(w.tok_emb == p);
    fb_free(p);
    fb_free(m);
    fb_free(v);
    /* header only, parameters skipped: the checksum is still verified */
    FUZZ_CHECK(ckpt_load_mem(d, n, "fuzz.ckpt", &h, NULL, NULL, NULL) == 0);
}

static void header_mode(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    try_load(d, n);
    header_mode(d, n);
    const size_t hb = sizeof(ckpt_header);
    if (n < hb + 8 || (n - hb - 8) % 3 || (n - hb - 8) / 3 % 4) return 0;
    uint8_t *c = malloc(n);
    memcpy(c, d, n);
    const size_t nb = (n - hb - 8) / 3;
    uint64_t sum = fb_hash64(FB_HASH_INIT, c, hb);
    for (int i = 0; i < 3; i++) sum = fb_hash64(sum, c + hb + i * nb, nb);
    memcpy(c + n - 8, &sum, 8);
    try_load(c, n);
    free(c);
    return 0;
}

static void header_mode(const uint8_t *d, size_t n) {
    const size_t hb = sizeof(ckpt_header);
    if (n < hb) return;
    ckpt_header h;
    memcpy(&h, d, hb);
    if (h.n_params > (1u << 16)) return;
    const size_t nb = (size_t)h.n_params * sizeof(float), len = hb + 3 * nb + 8;
    uint8_t *f = calloc(1, len);
    memcpy(f, d, n < len - 8 ? n : len - 8);
    uint64_t sum = fb_hash64(FB_HASH_INIT, f, hb);
    for (int i = 0; i < 3; i++) sum = fb_hash64(sum, f + hb + i * nb, nb);
    memcpy(f + len - 8, &sum, 8);
    try_load(f, len);
    free(f);
}
