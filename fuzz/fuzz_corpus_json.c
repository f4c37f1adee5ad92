/* Fuzz target: TinyStories JSON corpora (corpus_add_text, CORPUS_JSON: an array of strings
 * or of {"story"/"text": ...} objects, or {"texts"/"stories": [...]}). */
#include "corpus_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    corpus_run(d, n, CORPUS_JSON);
    return 0;
}
