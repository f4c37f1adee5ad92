/* fable export — checkpoint → llama2.c version-0 .bin (+ the tokenizer as tokenizer.bin). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/ckpt.h"
#include "fable/model.h"
#include "fable/tokenizer.h"
#include "fable/util.h"
#include "train/model_file.h"

static const char *usage =
    "usage: fable export --ckpt FILE --out MODEL.bin [--tokenizer T] [--tokenizer-out tokenizer.bin]\n"
    "  Writes llama2.c's version-0 format (negative vocab_size when the classifier is untied),\n"
    "  loadable by llama2.c's run.c and by `fable train --init`. The tokenizer (default: the\n"
    "  one recorded in the checkpoint) is written in llama2.c's tokenizer.bin format next to it.\n";

int cmd_export(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    const char *cpath = cli_str(&a, "--ckpt", NULL);
    const char *out = cli_str(&a, "--out", NULL);
    const char *tpath = cli_str(&a, "--tokenizer", NULL);
    const char *tout = cli_str(&a, "--tokenizer-out", NULL);
    if (cli_finish(&a)) return 2;
    if (!cpath || !out) { fputs(usage, stderr); return 2; }
    model m;
    if (model_file_load(&m, cpath)) return cli_fail(&a, NULL);
    if (model_save_llama2c(&m, out)) { model_free(&m); return cli_fail(&a, NULL); }
    printf("wrote %s (%zu parameters, %s classifier)\n", out, model_num_params(&m.cfg), m.cfg.tied ? "tied" : "untied");
    ckpt_header h;
    if (!tpath && ckpt_is_checkpoint(cpath) && ckpt_read_header(cpath, &h) == 0 && h.tokenizer_path[0])
        tpath = h.tokenizer_path;
    int rc = 0;
    if (tpath) {
        char def[4096];
        if (!tout) {
            snprintf(def, sizeof def, "%s", out);
            char *slash = strrchr(def, '/');
            snprintf(slash ? slash + 1 : def, sizeof def - (slash ? (size_t)(slash + 1 - def) : 0), "tokenizer.bin");
            tout = def;
        }
        tokenizer *t = tok_load(tpath);
        if (!t) rc = cli_fail(&a, NULL);
        else if (tok_vocab_size(t) != m.cfg.vocab_size)
            rc = cli_fail(&a, "%s has %d tokens, the model's vocabulary is %d", tpath, tok_vocab_size(t), m.cfg.vocab_size);
        else if (tok_save_bin(t, tout)) rc = cli_fail(&a, NULL);
        else printf("wrote %s (%d tokens)\n", tout, tok_vocab_size(t));
        if (t) tok_free(t);
    }
    model_free(&m);
    return rc;
}
