/* Fuzz target: llama2.c version-0 model files (model_load_llama2c_mem). */
#include <math.h>
#include <string.h>

#include "fable/model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    model m;
    if (model_load_llama2c_mem(&m, d, n, "fuzz.bin") != 0) {
        fuzz_check_error();
        FUZZ_CHECK(m.data == NULL);
        return 0;
    }
    FUZZ_CHECK(model_config_validate(&m.cfg) == 0);
    const size_t np = model_num_params(&m.cfg);
    /* the file held exactly the header, the weights and the RoPE tables */
    FUZZ_CHECK(np * sizeof(float) + 28 <= n);
    for (size_t i = 0; i < np; i++) FUZZ_CHECK(isfinite(m.data[i]));
    FUZZ_CHECK(m.w.tok_emb == m.data);
    if (m.cfg.tied) FUZZ_CHECK(m.w.wcls == m.w.tok_emb);
    model_free(&m);
    return 0;
}
