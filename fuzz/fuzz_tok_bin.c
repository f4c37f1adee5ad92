/* Fuzz target: llama2.c tokenizer.bin files (tok_load_mem; any bytes, detected by content). */
#include "tok_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    tok_check_bytes(d, n, "fuzz_tokenizer.bin");
    return 0;
}
