/* Shared by the tokenizer tests: where the sentencepiece-written fixtures live, and the
 * escape format of hard_cases.txt (written by tests/ref/gen_tok_fixtures.py). */
#ifndef FABLE_TOK_FIXTURES_H
#define FABLE_TOK_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* tests/fixtures/tok/<name>, found from the repository root or a build subfolder. */
static char *fixture_path(const char *name) {
    static char buf[4][1024];
    static int k = 0;
    char *b = buf[k++ & 3];
    const char *cands[] = {"tests/fixtures/tok", "../tests/fixtures/tok", "../../tests/fixtures/tok"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(b, 1024, "%s/%s", cands[i], name);
        if (access(b, R_OK) == 0) return b;
    }
    snprintf(b, 1024, "tests/fixtures/tok/%s", name);
    return b;
}

/* Hard-case escapes (see gen_tok_fixtures.py): \n \t \r \\ \xHH. Returns the length. */
static size_t unescape(const char *s, char *out) {
    size_t o = 0;
    while (*s) {
        if (s[0] == '\\' && s[1]) {
            char e = s[1];
            if (e == 'x') {
                char hex[3] = {s[2], s[3], 0};
                out[o++] = (char)strtol(hex, NULL, 16);
                s += 4;
                continue;
            }
            out[o++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : '\\';
            s += 2;
            continue;
        }
        out[o++] = *s++;
    }
    return o;
}

#endif
