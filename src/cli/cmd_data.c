/* fable data — obtain TinyStories and the Llama-2 tokenizer into a directory.
 *
 *   fable data [--out DIR] [--tinystories PATH_OR_URL [--sha256 HEX]] [--valid PATH_OR_URL
 *              [--valid-sha256 HEX]] [--tokenizer PATH_OR_URL [--tokenizer-sha256 HEX]]
 *              [--version v1|v2] [--valid-only] [--offline] [--stories N] [--seed S]
 *              [--mirror BASE_URL] [--copy] [--no-tokenizer] [--quiet]
 *
 * Result in DIR: tinystories-train.txt, tinystories-valid.txt (or .json when the source is
 * JSON), tokenizer.model, and SOURCES.txt (name, origin, sha256 per line).
 *
 * Policy:
 *   - a source the user names (--tinystories/--valid/--tokenizer) must be obtained, else
 *     the command fails: no silent substitution;
 *   - the default TinyStories files come from Hugging Face; when they cannot be downloaded
 *     (or with --offline) fable writes its built-in generated stories instead and says so;
 *   - the default tokenizer comes from llama2.c's GitHub, checked against its known
 *     sha256; when fable has fallen back to generated stories a missing tokenizer is only
 *     a note (train one with `fable tokenizer train`), otherwise it is an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fable/download.h"
#include "fable/sha256.h"
#include "fable/storygen.h"
#include "fable/util.h"

#define HF_BASE "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
#define TOK_URL "https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.model"
/* tokenizer.model of karpathy/llama2.c (Meta's Llama 2 tokenizer), 499,723 bytes; see
 * shared/data/PROVENANCE.md. The TinyStories text files have no checksum fable can vouch
 * for (none was published and they could not be fetched when this was written), so they
 * are verified only when the user gives --sha256 / --valid-sha256. */
#define TOK_SHA256 "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"

static void usage(void) {
    printf("usage: fable data [options]\n"
           "Obtain TinyStories and the Llama-2 tokenizer into DIR (downloads resume; checksums verified).\n"
           "  --out DIR                 destination (default data)\n"
           "  --tinystories SRC         training text: a URL or a local file (JSON or <|endoftext|> text)\n"
           "  --valid SRC               validation text: a URL or a local file\n"
           "  --sha256 HEX              expected sha256 of --tinystories (--valid-sha256 for --valid)\n"
           "  --tokenizer SRC           tokenizer .model/.bin: URL or local file (default: llama2.c's\n"
           "                            tokenizer.model from GitHub, sha256 checked)\n"
           "  --tokenizer-sha256 HEX    expected sha256 of --tokenizer\n"
           "  --no-tokenizer            do not fetch a tokenizer\n"
           "  --version v1|v2           default TinyStories files: v2 = TinyStoriesV2-GPT4-{train,valid}.txt\n"
           "                            (2.2 GB + 22 MB), v1 = TinyStories-{train,valid}.txt (default v2)\n"
           "  --valid-only              fetch only the validation file of the default set (~20 MB)\n"
           "  --mirror BASE_URL         fetch the default files from BASE_URL/<file name> instead\n"
           "  --offline                 no network: local files, else the built-in story generator\n"
           "  --stories N               stories to generate when offline (default 20000; +N/10 validation)\n"
           "  --seed S                  generator seed (default 1)\n"
           "  --copy                    copy local files (default: symbolic link)\n"
           "  --quiet                   no progress bars\n"
           "Without network and without local files fable writes its own generated stories, so that\n"
           "the pipeline runs anywhere; it says so when it does.\n");
}

/* ---- SOURCES.txt: "name<TAB>origin<TAB>sha256" per line ---------------------------------------- */
#define MAX_SOURCES 16
typedef struct {
    char name[128];
    char origin[1200];
    char sha[65];
} source;

typedef struct {
    source s[MAX_SOURCES];
    int n;
} sources;

static void sources_load(sources *S, const char *path) {
    S->n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1500];
    while (S->n < MAX_SOURCES && fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *a = strtok(line, "\t\n"), *b = strtok(NULL, "\t\n"), *c = strtok(NULL, "\t\n");
        if (!a || !b) continue;
        source *s = &S->s[S->n++];
        snprintf(s->name, sizeof s->name, "%s", a);
        snprintf(s->origin, sizeof s->origin, "%s", b);
        snprintf(s->sha, sizeof s->sha, "%s", c ? c : "-");
    }
    fclose(f);
}

static source *sources_find(sources *S, const char *name) {
    for (int i = 0; i < S->n; i++)
        if (!strcmp(S->s[i].name, name)) return &S->s[i];
    return NULL;
}

static void sources_set(sources *S, const char *name, const char *origin, const char *sha) {
    source *s = sources_find(S, name);
    if (!s && S->n < MAX_SOURCES) s = &S->s[S->n++];
    if (!s) return;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->origin, sizeof s->origin, "%s", origin);
    snprintf(s->sha, sizeof s->sha, "%s", sha && *sha ? sha : "-");
}

static int sources_save(const sources *S, const char *path) {
    char buf[MAX_SOURCES * 1500 + 128];
    size_t o = (size_t)snprintf(buf, sizeof buf, "# fable data: where each file came from (name, origin, sha256)\n");
    for (int i = 0; i < S->n; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s\t%s\t%s\n", S->s[i].name, S->s[i].origin, S->s[i].sha);
    return fb_write_file_atomic(path, buf, o);
}

/* ---- one file -------------------------------------------------------------------------------- */
typedef struct {
    const char *dir;
    int offline, progress, copy;
    sources *S;
} ctx;

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

/* Obtain src (URL or path) as DIR/name. sha: expected digest or NULL. 0 ok, -1 + fb_err. */
static int obtain(ctx *C, const char *src, const char *name, const char *sha, const char *label) {
    char dest[2048];
    snprintf(dest, sizeof dest, "%s/%s", C->dir, name);
    char hex[65] = "";
    if (dl_is_url(src)) {
        if (C->offline) return fb_err("%s is a URL, but --offline was given", src);
        source *prev = sources_find(C->S, name);
        struct stat st;
        if (prev && !strcmp(prev->origin, src) && lstat(dest, &st) == 0 && S_ISREG(st.st_mode)) {
            /* downloads are renamed into place only when complete: this one is done */
            if (!sha || (sha256_file(dest, hex) == 0 && !strcasecmp(hex, sha))) {
                printf("%-10s already downloaded: %s\n", label, dest);
                return 0;
            }
        }
        printf("%-10s downloading %s\n", label, src);
        fflush(stdout);
        dl_opts o = {sha, name, C->progress, 0, 0};
        dl_result r;
        if (dl_fetch(src, dest, &o, &r) != 0) return -1;
        printf("%-10s %s: %llu bytes%s, sha256 %s (%s)\n", label, dest, (unsigned long long)r.size,
               r.resumed_from ? " (resumed)" : "", r.sha256, sha ? "verified" : "not verified: no known checksum");
        sources_set(C->S, name, src, r.sha256);
        return 0;
    }
    if (sha) {
        if (sha256_file(src, hex) != 0) return -1;
        if (strcasecmp(hex, sha) != 0) return fb_err("%s: sha256 mismatch: expected %s, got %s", src, sha, hex);
    }
    if (dl_local(src, dest, !C->copy) != 0) return -1;
    char abs[4096];
    char origin[4200];
    snprintf(origin, sizeof origin, "local:%s", realpath(src, abs) ? abs : src);
    printf("%-10s %s -> %s (%s%s)\n", label, src, dest, C->copy ? "copied" : "linked", sha ? ", sha256 verified" : "");
    sources_set(C->S, name, origin, hex);
    return 0;
}

static int generate(ctx *C, long n, long nv, uint64_t seed, const char *why) {
    if (why) fprintf(stderr, "\nfable data: TinyStories could not be downloaded (%s);\n", why);
    else fprintf(stderr, "\nfable data: TinyStories not downloaded (--offline);\n");
    fprintf(stderr,
            "            using fable's built-in story generator (%ld stories, %ld for validation).\n"
            "            These are simple generated stories, not TinyStories: a model trained on them\n"
            "            learns their small grammar. For the real data, run `fable data` online or pass\n"
            "            --tinystories PATH.\n\n",
            n, nv);
    char path[2048], origin[128];
    snprintf(path, sizeof path, "%s/tinystories-train.txt", C->dir);
    if (storygen_write(path, seed, 0, (size_t)n) != 0) return -1;
    snprintf(origin, sizeof origin, "generated:storygen seed=%llu stories=0..%ld", (unsigned long long)seed, n - 1);
    char hex[65] = "";
    sha256_file(path, hex);
    sources_set(C->S, "tinystories-train.txt", origin, hex);
    printf("generated  %s (%ld stories)\n", path, n);
    snprintf(path, sizeof path, "%s/tinystories-valid.txt", C->dir);
    if (storygen_write(path, seed, (uint64_t)n, (size_t)nv) != 0) return -1;
    snprintf(origin, sizeof origin, "generated:storygen seed=%llu stories=%ld..%ld", (unsigned long long)seed, n,
             n + nv - 1);
    sha256_file(path, hex);
    sources_set(C->S, "tinystories-valid.txt", origin, hex);
    printf("generated  %s (%ld stories)\n", path, nv);
    return 0;
}

static const char *text_name(const char *src, const char *split, char *buf, size_t cap) {
    snprintf(buf, cap, "tinystories-%s.%s", split, ends_with(src, ".json") ? "json" : "txt");
    return buf;
}

int cmd_data(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
        usage();
        return 0;
    }
    const char *dir = cli_str(&a, "--out", "data");
    const char *ts = cli_str(&a, "--tinystories", NULL), *ts_sha = cli_str(&a, "--sha256", NULL);
    const char *tv = cli_str(&a, "--valid", NULL), *tv_sha = cli_str(&a, "--valid-sha256", NULL);
    const char *tok = cli_str(&a, "--tokenizer", NULL), *tok_sha = cli_str(&a, "--tokenizer-sha256", NULL);
    const char *version = cli_str(&a, "--version", "v2");
    const char *mirror = cli_str(&a, "--mirror", NULL);
    int valid_only = cli_flag(&a, "--valid-only");
    int offline = cli_flag(&a, "--offline");
    int no_tok = cli_flag(&a, "--no-tokenizer");
    int copy = cli_flag(&a, "--copy");
    int quiet = cli_flag(&a, "--quiet");
    long stories = cli_int(&a, "--stories", 20000);
    long seed = cli_int(&a, "--seed", 1);
    if (cli_finish(&a) != 0) return 2;

    if (strcmp(version, "v1") && strcmp(version, "v2")) return cli_fail(&a, "--version must be v1 or v2");
    if (stories < 1 || stories > 100000000) return cli_fail(&a, "--stories must be in 1..100000000");
    const char *shas[3] = {ts_sha, tv_sha, tok_sha}, *shan[3] = {"--sha256", "--valid-sha256", "--tokenizer-sha256"};
    for (int i = 0; i < 3; i++)
        if (shas[i] && !sha256_valid_hex(shas[i])) return cli_fail(&a, "%s: '%s' is not 64 hex digits", shan[i], shas[i]);
    if (ts_sha && !ts) return cli_fail(&a, "--sha256 checks --tinystories: give both");
    if (tv_sha && !tv) return cli_fail(&a, "--valid-sha256 checks --valid: give both");
    if (no_tok && (tok || tok_sha)) return cli_fail(&a, "--no-tokenizer contradicts --tokenizer");
    if (fb_mkdir_p(dir) != 0) return cli_fail(&a, NULL);

    sources S;
    char spath[2048];
    snprintf(spath, sizeof spath, "%s/SOURCES.txt", dir);
    sources_load(&S, spath);
    ctx C = {dir, offline, isatty(2) && !quiet, copy, &S};
    char name[64];
    int fell_back = 0, rc = 0;

    /* ---- TinyStories ---- */
    if (ts || tv) {
        if (ts && obtain(&C, ts, text_name(ts, "train", name, sizeof name), ts_sha, "train") != 0) rc = 1;
        if (!rc && tv && obtain(&C, tv, text_name(tv, "valid", name, sizeof name), tv_sha, "valid") != 0) rc = 1;
        if (rc) {
            cli_fail(&a, NULL);
            goto out;
        }
    } else if (offline) {
        if (generate(&C, stories, stories / 10 > 0 ? stories / 10 : 1, (uint64_t)seed, NULL) != 0) {
            rc = cli_fail(&a, NULL);
            goto out;
        }
        fell_back = 1;
    } else {
        const char *base = mirror ? mirror : HF_BASE;
        const char *train_file = !strcmp(version, "v2") ? "TinyStoriesV2-GPT4-train.txt" : "TinyStories-train.txt";
        const char *valid_file = !strcmp(version, "v2") ? "TinyStoriesV2-GPT4-valid.txt" : "TinyStories-valid.txt";
        char url[2048];
        /* the small validation file first: if the network is down we learn it quickly */
        snprintf(url, sizeof url, "%s/%s", base, valid_file);
        int ok = obtain(&C, url, "tinystories-valid.txt", NULL, "valid") == 0;
        if (ok && !valid_only) {
            snprintf(url, sizeof url, "%s/%s", base, train_file);
            ok = obtain(&C, url, "tinystories-train.txt", NULL, "train") == 0;
        }
        if (!ok) {
            char why[1024];
            snprintf(why, sizeof why, "%s", fb_errmsg());
            if (generate(&C, stories, stories / 10 > 0 ? stories / 10 : 1, (uint64_t)seed, why) != 0) {
                rc = cli_fail(&a, NULL);
                goto out;
            }
            fell_back = 1;
        }
    }

    /* ---- tokenizer ---- */
    if (!no_tok) {
        char url[2048];
        const char *src = tok, *sha = tok_sha;
        if (!src) {
            if (mirror) snprintf(url, sizeof url, "%s/tokenizer.model", mirror);
            else snprintf(url, sizeof url, "%s", TOK_URL);
            src = url;
            sha = TOK_SHA256; /* the default file has a known digest */
        }
        const char *tname = ends_with(src, ".bin") ? "tokenizer.bin" : "tokenizer.model";
        if (!tok && offline) {
            printf("tokenizer  not fetched (--offline): pass --tokenizer PATH, or train one:\n"
                   "           fable tokenizer train --vocab 512 --input %s/tinystories-train.txt --out %s/tok512\n",
                   dir, dir);
        } else if (obtain(&C, src, tname, sha, "tokenizer") != 0) {
            if (!tok && fell_back) {
                fprintf(stderr,
                        "fable data: note: the Llama 2 tokenizer could not be downloaded either (%s);\n"
                        "            pass --tokenizer PATH, or train one:\n"
                        "            fable tokenizer train --vocab 512 --input %s/tinystories-train.txt --out %s/tok512\n",
                        fb_errmsg(), dir, dir);
            } else {
                rc = cli_fail(&a, NULL);
                goto out;
            }
        } else if (sha && !strcasecmp(sha, TOK_SHA256)) {
            printf("tokenizer  is the Llama 2 tokenizer (32000 pieces)\n");
        }
    }
out:
    if (sources_save(&S, spath) != 0 && rc == 0) rc = cli_fail(&a, NULL);
    if (rc == 0)
        printf("done: %s (see %s)%s\n", dir, spath, fell_back ? " [generated stories: TinyStories was not available]" : "");
    return rc;
}
