/* The built-in story generator: deterministic, the requested count, no empty or
 * unexpanded stories, sentences that start and end properly, and enough vocabulary
 * for a small model to learn something. */
#include <ctype.h>

#include "fable/data.h"
#include "fable/storygen.h"
#include "fable/util.h"
#include "testlib.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    int quick = getenv("FABLE_TEST_QUICK") != NULL;
    size_t N = quick ? 300 : 1000;
    size_t len, len2;
    char *a = storygen_corpus(42, 0, N, &len);
    char *b = storygen_corpus(42, 0, N, &len2);
    CHECK(a && b && len == len2 && memcmp(a, b, len) == 0, "same seed, different corpus");
    char *c = storygen_corpus(43, 0, N, &len2);
    CHECK(c && (len2 != len || memcmp(a, c, len) != 0), "different seeds, same corpus");
    free(b);
    free(c);

    /* story k does not depend on how many are generated around it */
    char s1[8192], s2[8192];
    size_t n1 = storygen_story(42, 5, s1, sizeof s1);
    char *five = storygen_corpus(42, 5, 1, &len2);
    CHECK(n1 > 0 && n1 < sizeof s1 && len2 == n1 + 15 && !memcmp(five, s1, n1), "story 5 differs in a sub-corpus");
    free(five);
    size_t n2 = storygen_story(42, 6, s2, sizeof s2);
    CHECK(n2 > 0 && strcmp(s1, s2) != 0, "stories 5 and 6 are equal");
    char tiny[8];
    CHECK(storygen_story(42, 5, tiny, sizeof tiny) == n1 && strlen(tiny) == 7, "truncation like snprintf");

    /* separators: exactly N, each on its own line; split back into N non-empty stories */
    size_t seps = 0;
    for (const char *p = a; (p = strstr(p, "\n<|endoftext|>\n")); p++) seps++;
    CHECK(seps == N, "%zu separators for %zu stories", seps, N);
    corpus cp = {0};
    CHECK(corpus_add_text(&cp, a, len, CORPUS_EOT, "gen") == 0, "%s", fb_errmsg());
    CHECK(cp.n == N, "%zu stories read back, want %zu", cp.n, N);
    size_t bad_start = 0, bad_end = 0, braces = 0, short_ones = 0, quotes_odd = 0, with_dialogue = 0;
    for (size_t i = 0; i < cp.n; i++) {
        const char *t = cp.text[i];
        size_t l = cp.len[i];
        if (!isupper((unsigned char)t[0])) bad_start++;
        char e = t[l - 1];
        if (e != '.' && e != '!' && e != '?' && e != '"') bad_end++;
        size_t q = 0;
        for (size_t k = 0; k + 2 < l; k++) /* sentences start with a capital: ". she" is wrong */
            if ((t[k] == '.' || t[k] == '!' || t[k] == '?' || t[k] == '\n') && (t[k + 1] == ' ' || t[k + 1] == '\n') &&
                islower((unsigned char)t[k + 2]))
                bad_start++;
        for (size_t k = 0; k < l; k++) {
            if (t[k] == '{' || t[k] == '}' || t[k] == 0) braces++;
            q += t[k] == '"';
        }
        if (q % 2) quotes_odd++;
        if (q) with_dialogue++;
        if (l < 200) short_ones++;
    }
    CHECK(bad_start == 0 && bad_end == 0, "%zu stories start badly, %zu end badly", bad_start, bad_end);
    CHECK(braces == 0, "%zu unexpanded template characters", braces);
    CHECK(short_ones == 0, "%zu stories shorter than 200 bytes", short_ones);
    CHECK(quotes_odd == 0, "%zu stories with unbalanced quotes", quotes_odd);
    CHECK(with_dialogue > N / 2, "only %zu of %zu stories have dialogue", with_dialogue, N);
    /* mean length in the range of TinyStories (~700-900 bytes) */
    double mean = (double)cp.bytes / (double)cp.n;
    CHECK(mean > 400 && mean < 2000, "mean story length %.0f bytes", mean);
    /* the stories are not all the same: distinct stories and first sentences */
    char **firsts = malloc(N * sizeof *firsts);
    for (size_t i = 0; i < N; i++) {
        const char *dot = memchr(cp.text[i], '.', cp.len[i]);
        size_t l = dot ? (size_t)(dot - cp.text[i]) : cp.len[i];
        firsts[i] = strndup(cp.text[i], l);
    }
    qsort(firsts, N, sizeof *firsts, cmp_str);
    size_t distinct_first = 1;
    for (size_t i = 1; i < N; i++) distinct_first += strcmp(firsts[i], firsts[i - 1]) != 0;
    CHECK(distinct_first > N / 2, "only %zu distinct first sentences in %zu stories", distinct_first, N);
    for (size_t i = 0; i < N; i++) free(firsts[i]);
    free(firsts);
    corpus_free(&cp);

    /* vocabulary: distinct lower-cased words */
    size_t nw = 0, capw = len / 2 + 1; /* a word takes at least 2 bytes with its separator */
    char **words = malloc(capw * sizeof *words);
    for (char *p = a; *p;) {
        while (*p && !isalpha((unsigned char)*p)) p++;
        char *q = p;
        while (*q && isalpha((unsigned char)*q)) {
            *q = (char)tolower((unsigned char)*q);
            q++;
        }
        if (q > p && nw < capw) words[nw++] = strndup(p, (size_t)(q - p));
        p = q;
    }
    qsort(words, nw, sizeof *words, cmp_str);
    size_t distinct = nw ? 1 : 0;
    for (size_t i = 1; i < nw; i++) distinct += strcmp(words[i], words[i - 1]) != 0;
    size_t want = quick ? 350 : 450;
    CHECK(distinct >= want, "%zu distinct words in %zu stories (want >= %zu)", distinct, N, want);
    fprintf(stderr, "%zu stories, %zu bytes, %zu words, %zu distinct\n", N, len, nw, distinct);
    for (size_t i = 0; i < nw; i++) free(words[i]);
    free(words);
    free(a);
    return t_done("test_storygen");
}
