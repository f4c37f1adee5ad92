/* fable encode — text → token ids, one output line per input line (like
 * `spm_encode --output_format=id`): each line, without its '\n', is encoded on its own.
 *
 * Input is read in chunks of whole lines; with --threads N the lines of a chunk are
 * encoded in parallel (OpenMP, blocks of lines, each thread with its own word cache inside
 * tok_encode) and written back in input order, so the output never depends on N. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/tokenizer.h"
#include "fable/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: fable encode --tokenizer T [--bos] [--eos] [--input FILE] [--threads N] < text > ids\n"
            "  Encode each line of the input (the '\\n' removed) and print its ids, space-separated,\n"
            "  on one line: exactly the ids sentencepiece's spm_encode --output_format=id gives.\n"
            "  --tokenizer T   SentencePiece .model or llama2.c tokenizer.bin (detected by content)\n"
            "  --bos           put BOS (<s>) before each line's ids\n"
            "  --eos           put EOS (</s>) after each line's ids\n"
            "  --input FILE    read FILE instead of stdin\n"
            "  --threads N     encode lines on N threads (default 1; 0 = all cores)\n");
}

typedef struct {
    char *b;
    size_t n, cap;
} outbuf;

static int out_reserve(outbuf *o, size_t extra) {
    if (o->n + extra <= o->cap) return 0;
    size_t cap = o->cap ? o->cap * 2 : 1 << 14;
    while (cap < o->n + extra) cap *= 2;
    char *nb = realloc(o->b, cap);
    if (!nb) return -1;
    o->b = nb;
    o->cap = cap;
    return 0;
}

/* Decimal digits of v (>= 0) at p; returns the count. */
static int put_uint(char *p, uint32_t v) {
    char tmp[12];
    int k = 0;
    do { tmp[k++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < k; i++) p[i] = tmp[k - 1 - i];
    return k;
}

#define LINES_PER_BLOCK 128

/* Encode lines [l0, l1) of the chunk into o. Returns 0 or -1 + fb_err. */
static int encode_block(const tokenizer *t, char *const *line, const size_t *len, size_t l0, size_t l1, int bos,
                        int eos, outbuf *o) {
    size_t cap = 1024;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return fb_err("out of memory");
    for (size_t l = l0; l < l1; l++) {
        long k = tok_encode(t, line[l], len[l], bos, eos, ids, cap);
        if (k > (long)cap) {
            cap = (size_t)k;
            int32_t *ni = realloc(ids, cap * sizeof *ids);
            if (!ni) { free(ids); return fb_err("out of memory"); }
            ids = ni;
            k = tok_encode(t, line[l], len[l], bos, eos, ids, cap);
        }
        if (k < 0 || out_reserve(o, (size_t)k * 11 + 1)) { free(ids); return k < 0 ? -1 : fb_err("out of memory"); }
        for (long i = 0; i < k; i++) {
            if (i) o->b[o->n++] = ' ';
            o->n += (size_t)put_uint(o->b + o->n, (uint32_t)ids[i]);
        }
        o->b[o->n++] = '\n';
    }
    free(ids);
    return 0;
}

int cmd_encode(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) { usage(stdout); return 0; }
    const char *path = cli_str(&a, "--tokenizer", NULL);
    const char *input = cli_str(&a, "--input", NULL);
    long threads = cli_int(&a, "--threads", 1);
    int bos = cli_flag(&a, "--bos"), eos = cli_flag(&a, "--eos");
    if (cli_finish(&a)) return 2;
    if (!path) { usage(stderr); return cli_fail(&a, "--tokenizer is required"); }
    if (threads <= 0) threads = omp_get_num_procs();
    tokenizer *t = tok_load(path);
    if (!t) return cli_fail(&a, NULL);
    FILE *in = stdin;
    if (input && !(in = fopen(input, "rb"))) {
        fb_errno("%s: cannot open", input);
        tok_free(t);
        return cli_fail(&a, NULL);
    }

    /* Chunked reading: buf holds [carry-over partial line][new bytes]. */
    size_t cap = 8u << 20, have = 0, nl_cap = 0;
    char *buf = malloc(cap);
    char **line = NULL;
    size_t *len = NULL;
    int nblk_cap = 0;
    outbuf *blk = NULL;
    int rc = 0, eof = 0;
    if (!buf) { rc = cli_fail(&a, "out of memory"); goto done; }
    while (!eof) {
        if (have == cap) {  /* one line longer than the buffer: grow */
            char *nb = realloc(buf, cap * 2);
            if (!nb) { rc = cli_fail(&a, "out of memory"); goto done; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + have, 1, cap - have, in);
        if (got == 0) {
            if (ferror(in)) { rc = cli_fail(&a, "error reading %s", input ? input : "stdin"); goto done; }
            eof = 1;
        }
        have += got;
        /* Complete lines; at EOF the unterminated rest is a line too (if non-empty). */
        size_t nlines = 0, pos = 0;
        while (pos < have) {
            char *nl = memchr(buf + pos, '\n', have - pos);
            if (!nl && !eof) break;
            size_t end = nl ? (size_t)(nl - buf) : have;
            if (nlines == nl_cap) {
                nl_cap = nl_cap ? 2 * nl_cap : 4096;
                char **nli = realloc(line, nl_cap * sizeof *line);
                size_t *nle = realloc(len, nl_cap * sizeof *len);
                if (nli) line = nli;
                if (nle) len = nle;
                if (!nli || !nle) { rc = cli_fail(&a, "out of memory"); goto done; }
            }
            line[nlines] = buf + pos;
            len[nlines] = end - pos;
            nlines++;
            pos = nl ? end + 1 : have;
        }
        int nblk = (int)((nlines + LINES_PER_BLOCK - 1) / LINES_PER_BLOCK);
        if (nblk > nblk_cap) {
            outbuf *nb = realloc(blk, (size_t)nblk * sizeof *blk);
            if (!nb) { rc = cli_fail(&a, "out of memory"); goto done; }
            memset(nb + nblk_cap, 0, (size_t)(nblk - nblk_cap) * sizeof *nb);
            blk = nb;
            nblk_cap = nblk;
        }
        int failed = 0;
        char err[512] = "";
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)threads) if (threads > 1)
        for (int b = 0; b < nblk; b++) {
            blk[b].n = 0;
            size_t l0 = (size_t)b * LINES_PER_BLOCK, l1 = l0 + LINES_PER_BLOCK < nlines ? l0 + LINES_PER_BLOCK : nlines;
            if (encode_block(t, line, len, l0, l1, bos, eos, &blk[b])) {
#pragma omp critical
                {
                    failed = 1;
                    snprintf(err, sizeof err, "%s", fb_errmsg());
                }
            }
        }
        if (failed) { rc = cli_fail(&a, "%s", err); goto done; }
        for (int b = 0; b < nblk; b++)
            if (blk[b].n && fwrite(blk[b].b, 1, blk[b].n, stdout) != blk[b].n) {
                rc = cli_fail(&a, "error writing the output");
                goto done;
            }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
    }
done:
    if (fflush(stdout) != 0 || ferror(stdout)) rc = rc ? rc : cli_fail(&a, "error writing the output");
    if (in && in != stdin) fclose(in);
    for (int b = 0; b < nblk_cap; b++) free(blk[b].b);
    free(blk);
    free(line);
    free(len);
    free(buf);
    tok_free(t);
    return rc;
}
