/* fable decode — token ids on stdin → text, one output line per input line of ids
 * (like `spm_decode --input_format=id`). Decoding is sentencepiece's (BOS/EOS vanish,
 * the dummy-prefix space is dropped, '▁' → ' '), except that byte pieces give their raw
 * bytes even when they do not form valid UTF-8 (see tok_decode). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: fable decode --tokenizer T < ids > text\n"
            "  Each input line holds token ids separated by spaces; each becomes one line of text.\n"
            "  --tokenizer T   SentencePiece .model or llama2.c tokenizer.bin (detected by content)\n");
}

int cmd_decode(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) { usage(stdout); return 0; }
    const char *path = cli_str(&a, "--tokenizer", NULL);
    if (cli_finish(&a)) return 2;
    if (!path) { usage(stderr); return cli_fail(&a, "--tokenizer is required"); }
    tokenizer *t = tok_load(path);
    if (!t) return cli_fail(&a, NULL);

    char *line = NULL, *text = NULL;
    size_t cap = 0, idcap = 0, tcap = 0, lineno = 0;
    int32_t *ids = NULL;
    int rc = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t k = 0;
        char *p = line;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v >= tok_vocab_size(t) ||
                (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')) {
                rc = cli_fail(&a, "line %zu: '%.*s' is not a token id of %s (0..%d)", lineno,
                              (int)strcspn(p, " \t\r\n"), p, path, tok_vocab_size(t) - 1);
                goto done;
            }
            if (k == idcap) {
                idcap = idcap ? 2 * idcap : 1024;
                int32_t *ni = realloc(ids, idcap * sizeof *ids);
                if (!ni) { rc = cli_fail(&a, "out of memory"); goto done; }
                ids = ni;
            }
            ids[k++] = (int32_t)v;
            p = end;
        }
        long m = tok_decode(t, ids, k, text, tcap);
        if (m > (long)tcap) {
            tcap = (size_t)m;
            char *nt = realloc(text, tcap);
            if (!nt) { rc = cli_fail(&a, "out of memory"); goto done; }
            text = nt;
            m = tok_decode(t, ids, k, text, tcap);
        }
        if (m < 0) { rc = cli_fail(&a, NULL); goto done; }
        fwrite(text, 1, (size_t)m, stdout);
        putchar('\n');
    }
done:
    if (fflush(stdout) != 0 || ferror(stdout)) rc = cli_fail(&a, "error writing the output");
    free(line);
    free(ids);
    free(text);
    tok_free(t);
    return rc;
}
