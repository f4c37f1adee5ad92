/* Fuzz target: plain-text corpora (corpus_add_text): stories separated by <|endoftext|>,
 * one story per line, and the automatic choice between them and JSON. */
#include "corpus_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    corpus_run(d, n, CORPUS_EOT);
    corpus_run(d, n, CORPUS_LINES);
    corpus_run(d, n, CORPUS_AUTO);
    return 0;
}
