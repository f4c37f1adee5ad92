/* fable tokenize — text (TinyStories JSON, <|endoftext|>-separated text, one story per
 * line) -> token shards: BOS before every story, no EOS, ids checked against the vocab.
 *
 *   fable tokenize --tokenizer T [--out DIR] [--format auto|json|eot|lines]
 *                  [--val-input F... | --val-fraction f] [--threads N] [--quiet] INPUT...
 *
 * Writes DIR/train.bin (all inputs) and, with a validation split, DIR/val.bin
 * (--train-out / --val-out name the files directly).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fable/data.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

#define MAX_INPUTS 256

static void usage(void) {
    printf("usage: fable tokenize --tokenizer T [options] INPUT...\n"
           "  INPUT...             text files: TinyStories JSON, text with <|endoftext|> separators, or\n"
           "                       one story per line (also --input F ...)\n"
           "  --tokenizer T        SentencePiece .model or llama2.c tokenizer.bin (required)\n"
           "  --format F           auto | json | eot | lines (default auto: by content)\n"
           "  --out DIR            output directory (default data): DIR/train.bin, DIR/val.bin\n"
           "  --train-out PATH     training shard path (overrides --out)\n"
           "  --val-out PATH       validation shard path (overrides --out)\n"
           "  --val-input F...     validation text file(s): the words after it up to the next option\n"
           "                       (so put the training INPUTs before it, or use --input)\n"
           "  --val-fraction f     or: every story i with floor((i+1)f) > floor(i f) goes to validation\n"
           "  --threads N          encoding threads (default: all cores)\n"
           "  --quiet              no progress bar\n"
           "Each story is stripped of surrounding whitespace (Python str.strip()), empty ones are\n"
           "dropped, and it is written as BOS followed by its ids (no EOS), like llama2.c.\n");
}

typedef struct {
    double t0;
    const char *label;
} bar_ctx;

static void draw_bar(uint64_t done, uint64_t total, void *p) {
    bar_ctx *b = p;
    double frac = total ? (double)done / (double)total : 1.0, dt = fb_now() - b->t0;
    int w = 30, k = (int)(frac * w + 0.5);
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r%-6s [%s] %5.1f%%  %.1f/%.1f MB  %.1f MB/s ", b->label, bar, 100 * frac, done / 1e6, total / 1e6,
            dt > 0 ? done / 1e6 / dt : 0.0);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static int read_inputs(corpus *c, const char **paths, int n, corpus_format fmt, int verbose) {
    for (int i = 0; i < n; i++) {
        size_t before = c->n;
        corpus_format used;
        if (corpus_add_file(c, paths[i], fmt, &used) != 0) return -1;
        if (verbose)
            fprintf(stderr, "read %s (%s): %zu stories\n", paths[i], corpus_format_name(used), c->n - before);
    }
    return 0;
}

static void report(const char *name, const tokenize_stats *s, const char *path) {
    printf("%s: %llu stories, %llu tokens (+%llu BOS), %.1f tokens/story -> %s\n", name,
           (unsigned long long)s->stories, (unsigned long long)s->tokens, (unsigned long long)s->stories,
           s->stories ? (double)s->tokens / (double)s->stories : 0.0, path);
}

int cmd_tokenize(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
        usage();
        return 0;
    }
    const char *tok_path = cli_str(&a, "--tokenizer", NULL);
    const char *fmt_name = cli_str(&a, "--format", "auto");
    const char *out_dir = cli_str(&a, "--out", "data");
    const char *train_out = cli_str(&a, "--train-out", NULL);
    const char *val_out = cli_str(&a, "--val-out", NULL);
    int has_frac = cli_has(&a, "--val-fraction");
    double frac = cli_float(&a, "--val-fraction", 0.0);
    long threads = cli_int(&a, "--threads", 0);
    int quiet = cli_flag(&a, "--quiet");
    const char *inputs[MAX_INPUTS], *val_inputs[MAX_INPUTS];
    int n_val = cli_multi(&a, "--val-input", val_inputs, MAX_INPUTS);
    int n_in = cli_multi(&a, "--input", inputs, MAX_INPUTS);
    n_in += cli_positional(&a, inputs + n_in, MAX_INPUTS - n_in);
    if (cli_finish(&a) != 0) return 2;

    corpus_format fmt;
    if (corpus_format_parse(fmt_name, &fmt) != 0) return cli_fail(&a, NULL);
    if (!tok_path) return cli_fail(&a, "--tokenizer is required (a .model or tokenizer.bin; `fable data` fetches one)");
    if (n_in == 0) return cli_fail(&a, "no input files (see fable tokenize --help)");
    if (has_frac && n_val) return cli_fail(&a, "give either --val-input or --val-fraction, not both");
    if (has_frac && !(frac > 0 && frac < 1)) return cli_fail(&a, "--val-fraction must be in (0, 1), got %g", frac);
    if (threads < 0 || threads > 4096) return cli_fail(&a, "--threads must be >= 1");
    if (threads == 0) threads = omp_get_max_threads();
    int want_val = has_frac || n_val > 0;

    char train_path[1100], val_path[1100];
    if (!train_out || (want_val && !val_out)) {
        if (fb_mkdir_p(out_dir) != 0) return cli_fail(&a, NULL);
    }
    snprintf(train_path, sizeof train_path, "%s", train_out ? train_out : "");
    if (!train_out) snprintf(train_path, sizeof train_path, "%s/train.bin", out_dir);
    snprintf(val_path, sizeof val_path, "%s", val_out ? val_out : "");
    if (!val_out) snprintf(val_path, sizeof val_path, "%s/val.bin", out_dir);

    double t0 = fb_now();
    tokenizer *tok = tok_load(tok_path);
    if (!tok) return cli_fail(&a, NULL);
    int vocab = tok_vocab_size(tok);
    int tty = isatty(2) && !quiet;

    corpus train = {0}, val = {0};
    shard_writer wt, wv;
    int rc = 1, wt_open = 0, wv_open = 0;
    tokenize_stats st[2], vst[2];
    memset(vst, 0, sizeof vst);
    if (read_inputs(&train, inputs, n_in, fmt, !quiet) != 0) goto done;
    if (read_inputs(&val, val_inputs, n_val, fmt, !quiet) != 0) goto done;
    if (train.n == 0) {
        fb_err("the input holds no stories (after stripping whitespace)");
        goto done;
    }
    if (n_val && val.n == 0) {
        fb_err("the validation input holds no stories");
        goto done;
    }
    unsigned char *split = NULL;
    if (has_frac) {
        split = malloc(train.n);
        if (!split) {
            fb_err("out of memory");
            goto done;
        }
        tokenize_split_fraction(train.n, frac, split);
    }
    if (shard_writer_open(&wt, train_path, vocab) != 0) goto done_split;
    wt_open = 1;
    if (want_val) {
        if (shard_writer_open(&wv, val_path, vocab) != 0) goto done_split;
        wv_open = 1;
    }
    double t1 = fb_now();
    bar_ctx bc = {t1, "encode"};
    shard_writer *outs[2] = {&wt, has_frac ? &wv : NULL};
    if (tokenize_corpus(tok, &train, split, outs, (int)threads, tty ? draw_bar : NULL, &bc, st) != 0) goto done_split;
    if (n_val) {
        shard_writer *vouts[2] = {&wv, NULL};
        bc.label = "val";
        bc.t0 = fb_now();
        if (tokenize_corpus(tok, &val, NULL, vouts, (int)threads, tty ? draw_bar : NULL, &bc, vst) != 0)
            goto done_split;
        st[1] = vst[0];
    }
    if (shard_writer_close(&wt) != 0) goto done_split;
    wt_open = 0;
    if (want_val) {
        if (shard_writer_close(&wv) != 0) goto done_split;
        wv_open = 0;
    }
    double t2 = fb_now();
    report("train", &st[0], train_path);
    if (want_val) report("val", &st[1], val_path);
    uint64_t bytes = st[0].bytes + st[1].bytes, toks = st[0].tokens + st[1].tokens;
    printf("encoded %.2f MB in %.2f s with %ld thread%s: %.2f MB/s, %.0f tokens/s (%.2f s total incl. loading)\n",
           bytes / 1e6, t2 - t1, threads, threads == 1 ? "" : "s", bytes / 1e6 / (t2 - t1), toks / (t2 - t1),
           t2 - t0);
    rc = 0;
done_split:
    free(split);
done:
    if (wt_open) shard_writer_abort(&wt);
    if (wv_open) shard_writer_abort(&wv);
    corpus_free(&train);
    corpus_free(&val);
    tok_free(tok);
    if (rc) return cli_fail(&a, NULL);
    return 0;
}
