/* Data loader: window contents, coverage of the three samplers, determinism, and
 * restore-from-state continuing bit-for-bit. The shard holds ids[i] = i, so a window's
 * start offset is simply its first input. */
#include <stdint.h>

#include "fable/data.h"
#include "fable/util.h"
#include "testlib.h"

static shard make_shard(uint16_t *buf, size_t n) {
    shard s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < n; i++) buf[i] = (uint16_t)i;
    s.tokens = buf;
    s.n = n;
    s.vocab_size = 65536;
    snprintf(s.path, sizeof s.path, "mem%zu", n);
    return s;
}

/* Draw B windows; check the inputs/targets relation; return the starts. */
static int draw(loader *L, int B, int T, size_t *starts, const shard *s) {
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    int ok = loader_next(L, B, x, y) == 0;
    for (int b = 0; b < B && ok; b++) {
        starts[b] = (size_t)x[b * T];
        for (int t = 0; t < T; t++) {
            size_t p = starts[b] + (size_t)t;
            if (p + 1 >= s->n || x[b * T + t] != s->tokens[p] || y[b * T + t] != s->tokens[p + 1]) ok = 0;
        }
    }
    free(x);
    free(y);
    return ok;
}

/* Number of windows [k*T, k*T+T] that fit in n tokens, counted the slow way. */
static size_t count_windows(size_t n, size_t T) {
    size_t k = 0;
    while (k * T + T + 1 <= n) k++;
    return k;
}

static void test_sequential(void) {
    uint16_t buf[1000];
    size_t sizes[3] = {1000, 161, 17};
    for (int c = 0; c < 3; c++) {
        size_t n = sizes[c];
        int T = 16;
        shard s = make_shard(buf, n);
        loader L;
        CHECK(loader_init(&L, &s, LOADER_SEQUENTIAL, T, 5) == 0, "%s", fb_errmsg());
        size_t W = count_windows(n, T);
        CHECK(L.n_windows == W, "n=%zu: %zu windows, want %zu", n, L.n_windows, W);
        size_t st[200];
        CHECK(draw(&L, (int)(2 * W + 1), T, st, &s), "window content n=%zu", n);
        for (size_t k = 0; k < 2 * W + 1; k++)
            CHECK(st[k] == (k % W) * (size_t)T, "n=%zu window %zu starts at %zu", n, k, st[k]);
        CHECK(L.st.epoch == 2 && L.st.windows_served == 2 * W + 1, "epoch %llu", (unsigned long long)L.st.epoch);
        loader_free(&L);
    }
}

static void test_shuffled(void) {
    static uint16_t buf[5000];
    size_t n = 4999;
    int T = 32;
    shard s = make_shard(buf, n);
    loader L, L2, L3;
    CHECK(loader_init(&L, &s, LOADER_SHUFFLED, T, 1234) == 0, "%s", fb_errmsg());
    CHECK(loader_init(&L2, &s, LOADER_SHUFFLED, T, 1234) == 0, "%s", fb_errmsg());
    CHECK(loader_init(&L3, &s, LOADER_SHUFFLED, T, 99) == 0, "%s", fb_errmsg());
    size_t W = count_windows(n, T);
    CHECK(L.n_windows == W && W == 156, "windows %zu", L.n_windows);
    size_t a[3 * 156], b[3 * 156], c[3 * 156];
    CHECK(draw(&L, (int)(3 * W), T, a, &s) && draw(&L2, (int)(3 * W), T, b, &s) && draw(&L3, (int)(3 * W), T, c, &s),
          "content");
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different stream");
    CHECK(memcmp(a, c, sizeof a) != 0, "different seeds, same stream");
    for (int e = 0; e < 3; e++) {
        int seen[156] = {0}, dup = 0, off = 0, inorder = 1;
        for (size_t k = 0; k < W; k++) {
            size_t st = a[e * W + k];
            if (st % T) off++;
            else if (st / T >= W) off++;
            else if (seen[st / T]++) dup++;
            if (st != k * (size_t)T) inorder = 0;
        }
        CHECK(dup == 0 && off == 0, "epoch %d: %d duplicates, %d bad offsets", e, dup, off);
        CHECK(!inorder, "epoch %d is not shuffled", e);
    }
    CHECK(memcmp(a, a + W, W * sizeof *a) != 0, "epochs 0 and 1 have the same order");
    loader_free(&L);
    loader_free(&L2);
    loader_free(&L3);
}

static void test_random(void) {
    uint16_t buf[64];
    int T = 8;
    size_t n = (size_t)T + 3; /* offsets 0, 1, 2 only */
    shard s = make_shard(buf, n);
    loader L;
    CHECK(loader_init(&L, &s, LOADER_RANDOM, T, 7) == 0, "%s", fb_errmsg());
    int N = 30000, cnt[3] = {0}, bad = 0;
    size_t *st = malloc(sizeof(size_t) * N);
    CHECK(draw(&L, N, T, st, &s), "content");
    for (int i = 0; i < N; i++) {
        if (st[i] > n - T - 1) bad++;
        else cnt[st[i]]++;
    }
    CHECK(bad == 0, "%d offsets beyond n-T-1", bad);
    /* Expected 10000 each, sd ~82: +-600 is > 7 sd. */
    for (int k = 0; k < 3; k++) CHECK(cnt[k] > 9400 && cnt[k] < 10600, "offset %d drawn %d times", k, cnt[k]);
    free(st);
    loader_free(&L);

    /* Larger shard: offsets spread over the whole range, determinism by seed. */
    static uint16_t big[4096];
    shard s2 = make_shard(big, 4096);
    loader A, B;
    CHECK(loader_init(&A, &s2, LOADER_RANDOM, 64, 11) == 0 && loader_init(&B, &s2, LOADER_RANDOM, 64, 11) == 0, "init");
    size_t a[2000], b[2000], mx = 0, mn = SIZE_MAX;
    CHECK(draw(&A, 2000, 64, a, &s2) && draw(&B, 2000, 64, b, &s2), "content");
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different random stream");
    for (int i = 0; i < 2000; i++) {
        mx = a[i] > mx ? a[i] : mx;
        mn = a[i] < mn ? a[i] : mn;
    }
    CHECK(mx <= 4096 - 64 - 1 && mx > 3900 && mn < 100, "range [%zu, %zu]", mn, mx);
    loader_free(&A);
    loader_free(&B);
}

/* Run k windows, save, run m more; a fresh loader restored from the saved state must
 * produce the same m windows. */
static void test_restore(loader_kind kind) {
    static uint16_t buf[3000];
    shard s = make_shard(buf, 3000);
    int T = 40;
    loader A, B;
    CHECK(loader_init(&A, &s, kind, T, 42) == 0, "%s", fb_errmsg());
    size_t skip[100], cont[150], again[150];
    CHECK(draw(&A, 100, T, skip, &s), "content"); /* 100 > 74 windows: crosses an epoch */
    loader_state saved = A.st;
    CHECK(draw(&A, 150, T, cont, &s), "content");
    CHECK(loader_init(&B, &s, kind, T, 42) == 0, "%s", fb_errmsg());
    CHECK(loader_restore(&B, &saved) == 0, "%s", fb_errmsg());
    CHECK(draw(&B, 150, T, again, &s), "content");
    CHECK(memcmp(cont, again, sizeof cont) == 0, "%s: restored stream differs", loader_kind_name(kind));
    CHECK(memcmp(&A.st, &B.st, sizeof A.st) == 0, "%s: states differ after the same draws", loader_kind_name(kind));
    loader_free(&B);
    /* mismatches are errors */
    loader_state bad = saved;
    bad.T = 41;
    CHECK(loader_init(&B, &s, kind, T, 42) == 0 && loader_restore(&B, &bad) != 0 && strstr(fb_errmsg(), "41"),
          "T mismatch accepted");
    bad = saved;
    bad.kind = kind == LOADER_RANDOM ? LOADER_SHUFFLED : LOADER_RANDOM;
    CHECK(loader_restore(&B, &bad) != 0, "kind mismatch accepted");
    bad = saved;
    bad.seed = 43;
    CHECK(loader_restore(&B, &bad) != 0, "seed mismatch accepted");
    if (kind != LOADER_RANDOM) {
        bad = saved;
        bad.pos = B.n_windows + 1;
        CHECK(loader_restore(&B, &bad) != 0, "position beyond the shard accepted");
    }
    loader_free(&B);
    loader_free(&A);
}

/* Data-parallel slices: R loaders, each skipping the others' windows (loader_skip) and
 * drawing its own, reassemble the one stream a single loader draws, across epochs, and end
 * every update in the single loader's state. */
static void test_skip(loader_kind kind) {
    static uint16_t buf[3000];
    shard s = make_shard(buf, 3000);
    const int T = 40, R = 3, KB = 7, U = 9; /* ranks, windows per rank per update, updates: 189 > 74 */
    loader one, r[3];
    CHECK(loader_init(&one, &s, kind, T, 5) == 0, "%s", fb_errmsg());
    for (int q = 0; q < R; q++) CHECK(loader_init(&r[q], &s, kind, T, 5) == 0, "%s", fb_errmsg());
    for (int u = 0; u < U; u++) {
        size_t want[3 * 7], got[7];
        CHECK(draw(&one, R * KB, T, want, &s), "content");
        for (int q = 0; q < R; q++) {
            loader_skip(&r[q], (size_t)q * KB);
            CHECK(draw(&r[q], KB, T, got, &s), "content");
            loader_skip(&r[q], (size_t)(R - 1 - q) * KB);
            CHECK(memcmp(got, want + q * KB, sizeof got) == 0, "%s: rank %d's slice of update %d differs",
                  loader_kind_name(kind), q, u);
            CHECK(memcmp(&r[q].st, &one.st, sizeof one.st) == 0, "%s: rank %d's state differs after update %d",
                  loader_kind_name(kind), q, u);
        }
    }
    for (int q = 0; q < R; q++) loader_free(&r[q]);
    loader_free(&one);
}

int main(void) {
    test_skip(LOADER_RANDOM);
    test_skip(LOADER_SHUFFLED);
    test_skip(LOADER_SEQUENTIAL);
    test_sequential();
    test_shuffled();
    test_random();
    test_restore(LOADER_RANDOM);
    test_restore(LOADER_SHUFFLED);
    test_restore(LOADER_SEQUENTIAL);

    /* Too small for one window: a clear error. */
    uint16_t buf[16];
    shard s = make_shard(buf, 16);
    loader L;
    CHECK(loader_init(&L, &s, LOADER_SHUFFLED, 16, 1) != 0 && strstr(fb_errmsg(), "16 tokens") &&
              strstr(fb_errmsg(), "17"),
          "too-small shard: %s", fb_errmsg());
    CHECK(loader_init(&L, &s, LOADER_RANDOM, 15, 1) == 0 && L.n_windows == 1, "exactly one window");
    loader_free(&L);
    loader_kind k;
    CHECK(loader_kind_parse("shuffled", &k) == 0 && k == LOADER_SHUFFLED, "parse");
    CHECK(loader_kind_parse("bogus", &k) != 0, "parse bogus");
    return t_done("test_loader");
}
