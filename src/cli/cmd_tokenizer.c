/* fable tokenizer — train a BPE vocabulary, or convert one between formats.
 *
 *   fable tokenizer train --vocab N --input F... --out PREFIX   → PREFIX.model + PREFIX.bin
 *   fable tokenizer convert --tokenizer T --out FILE(.model|.bin)
 *   fable tokenizer info --tokenizer T
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: fable tokenizer train --vocab N --input FILE... --out PREFIX [options]\n"
            "       fable tokenizer convert --tokenizer T --out FILE.model|FILE.bin\n"
            "       fable tokenizer info --tokenizer T\n"
            "\n"
            "train: a SentencePiece-style BPE vocabulary with byte fallback (ids 0,1,2 = <unk>,<s>,</s>,\n"
            "then <0x00>..<0xFF>, then merged pieces, then single characters). Writes PREFIX.model\n"
            "(SentencePiece ModelProto, loadable by the sentencepiece library) and PREFIX.bin\n"
            "(llama2.c tokenizer.bin). Inputs: TinyStories JSON, or text with stories separated by\n"
            "<|endoftext|> lines, or one story per line (detected by content).\n"
            "  --vocab N               total vocabulary size (>= 260), e.g. 512\n"
            "  --input FILE...         training text (repeatable)\n"
            "  --out PREFIX            output prefix\n"
            "  --no-split-digits       let digits merge (default: each digit is its own piece, as tok512)\n"
            "  --max-piece-chars N     longest piece in characters (default 16)\n"
            "  --character-coverage X  share of characters kept as pieces (default 1.0; the rest use bytes)\n"
            "  --quiet                 no summary\n"
            "convert: write a loaded tokenizer as .model or tokenizer.bin (chosen by the extension).\n"
            "info: vocabulary size, special ids and normalizer settings.\n");
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int cmd_train_vocab(cli_args *a) {
    bpe_train_opts o;
    bpe_train_opts_default(&o);
    o.vocab_size = (int)cli_int(a, "--vocab", 0);
    const char *inputs[256];
    int n = cli_multi(a, "--input", inputs, 256);
    const char *out = cli_str(a, "--out", NULL);
    if (cli_flag(a, "--no-split-digits")) o.split_digits = 0;
    o.max_piece_chars = (int)cli_int(a, "--max-piece-chars", o.max_piece_chars);
    o.character_coverage = cli_float(a, "--character-coverage", o.character_coverage);
    o.verbose = cli_flag(a, "--quiet") ? 0 : 1;
    if (cli_finish(a)) return 2;
    if (!o.vocab_size || !n || !out) {
        usage(stderr);
        return cli_fail(a, "train needs --vocab, --input and --out");
    }
    if (o.character_coverage <= 0 || o.character_coverage > 1)
        return cli_fail(a, "--character-coverage must be in (0, 1]");
    double t0 = fb_now();
    if (bpe_train_files(inputs, n, out, &o)) return cli_fail(a, NULL);
    if (o.verbose) fprintf(stderr, "fable tokenizer: wrote %s.model and %s.bin (%.2f s)\n", out, out, fb_now() - t0);
    return 0;
}

static int cmd_convert(cli_args *a) {
    const char *in = cli_str(a, "--tokenizer", NULL), *out = cli_str(a, "--out", NULL);
    if (cli_finish(a)) return 2;
    if (!in || !out) return cli_fail(a, "convert needs --tokenizer and --out");
    tokenizer *t = tok_load(in);
    if (!t) return cli_fail(a, NULL);
    int rc = ends_with(out, ".model") ? tok_save_model(t, out) : tok_save_bin(t, out);
    tok_free(t);
    return rc ? cli_fail(a, NULL) : 0;
}

static int cmd_tok_info(cli_args *a) {
    const char *in = cli_str(a, "--tokenizer", NULL);
    if (cli_finish(a)) return 2;
    if (!in) return cli_fail(a, "info needs --tokenizer");
    tokenizer *t = tok_load(in);
    if (!t) return cli_fail(a, NULL);
    int adp, rws, nbyte = 0;
    tok_get_normalizer(t, &adp, &rws);
    for (int i = 0; i < tok_vocab_size(t); i++) nbyte += tok_piece_type(t, i) == TOK_BYTE;
    printf("file: %s (%s)\nvocab_size: %d\nunk: %d  bos: %d  eos: %d\nbyte pieces: %d\n"
           "add_dummy_prefix: %d\nremove_extra_whitespaces: %d\n",
           in, tok_is_spm_model(t) ? "SentencePiece model" : "llama2.c tokenizer.bin", tok_vocab_size(t),
           tok_unk_id(t), tok_bos_id(t), tok_eos_id(t), nbyte, adp, rws);
    tok_free(t);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    cli_args a;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    cli_args_init(&a, argc - 1, argv + 1);
    a.cmd = "tokenizer";
    if (cli_flag(&a, "--help")) { usage(stdout); return 0; }
    if (!strcmp(sub, "train")) return cmd_train_vocab(&a);
    if (!strcmp(sub, "convert")) return cmd_convert(&a);
    if (!strcmp(sub, "info")) return cmd_tok_info(&a);
    usage(stderr);
    return cli_fail(&a, "unknown subcommand '%s' (train, convert, info)", sub);
}
