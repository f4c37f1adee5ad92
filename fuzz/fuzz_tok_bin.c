/* Fuzz target: llama2.c tokenizer.bin files (tok_load_mem; any bytes, detected by content). */
#include "tok_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    tokenizer *t = tok_load_mem(d, n, "fuzz_tokenizer.bin");
    if (!t) {
        fuzz_check_error();
        return 0;
    }
    tok_check(t, d, n);
    tok_free(t);
    return 0;
}
