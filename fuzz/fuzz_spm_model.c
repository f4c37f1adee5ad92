/* Fuzz target: SentencePiece .model files (protobuf ModelProto): the wire-format reader
 * spm_model_parse, its writer on what it read (serialize, then parse again must succeed
 * with the same pieces), and tok_load_mem on the bytes. */
#include "data/spm_proto.h"
#include "tok_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    spm_model m;
    char why[512];
    if (spm_model_parse(&m, d, n, why, sizeof why) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (spm_model_serialize(&m, &buf, &len) == 0) {
            spm_model m2;
            char why2[512];
            int rc = spm_model_parse(&m2, buf, len, why2, sizeof why2);
            if (rc) fprintf(stderr, "re-parse failed: %s\n", why2);
            FUZZ_CHECK(rc == 0);
            FUZZ_CHECK(m2.n_pieces == m.n_pieces);
            for (int i = 0; i < m.n_pieces; i++)
                FUZZ_CHECK(m2.pieces[i].len == m.pieces[i].len &&
                           memcmp(m2.pieces[i].piece, m.pieces[i].piece, m.pieces[i].len) == 0 &&
                           m2.pieces[i].type == m.pieces[i].type);
            spm_model_free(&m2);
            free(buf);
        }
    }
    spm_model_free(&m);
    tok_check_bytes(d, n, "fuzz.model");
    return 0;
}
