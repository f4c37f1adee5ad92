/* fable — the training data loader: windows of T+1 tokens from one shard.
 *
 * A window starting at token s is ids[s .. s+T] (T+1 tokens); the model reads
 * inputs = ids[s .. s+T-1] and predicts targets = ids[s+1 .. s+T].
 *
 * LOADER_RANDOM (the reference): every window starts at an offset drawn uniformly from
 *   [0, n-T-1] (n-T choices, so the last window ends on the last token). Draws are
 *   independent, with replacement; "epoch" stays 0. Unbiased: rejection sampling on
 *   fb_rng_u64 (no modulo bias even for huge n).
 * LOADER_SHUFFLED (llama2.c's PretokDataset): non-overlapping windows at stride T, window
 *   k = ids[k*T .. k*T+T] (neighbouring windows share one token: the last target of window
 *   k is the first input of window k+1). There are W = floor((n-1)/T) of them, every one
 *   fully inside the shard. llama2.c computes `len(m)//max_seq_len - 1`, which is W when T
 *   divides n and W-1 otherwise (it drops a window that would fit); fable keeps it. Each
 *   epoch visits all W windows once in a fresh Fisher–Yates order whose RNG is seeded by
 *   (seed, epoch) alone, so the permutation of any epoch can be rebuilt from the state.
 * LOADER_SEQUENTIAL: the same W windows in file order, epoch after epoch.
 *
 * The state (loader_state, plain old data) is all a checkpoint needs: restoring it into
 * a loader over the same shard continues the exact same stream.
 */
#include <stdlib.h>
#include <string.h>

#include "fable/data.h"
#include "fable/util.h"

/* splitmix64 finaliser: turns (seed, epoch) into a well-mixed non-zero xorshift state. */
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x ? x : 0x9E3779B97F4A7C15ULL;
}

/* Uniform integer in [0, m), m >= 1, without modulo bias: reject the lowest 2^64 mod m
 * values so that the accepted range is a multiple of m. */
static uint64_t uniform_below(fb_rng *r, uint64_t m) {
    uint64_t threshold = (0 - m) % m;
    for (;;) {
        uint64_t x = fb_rng_u64(r);
        if (x >= threshold) return x % m;
    }
}

static void build_perm(loader *L) {
    size_t W = L->n_windows;
    for (size_t i = 0; i < W; i++) L->perm[i] = (uint32_t)i;
    fb_rng r;
    fb_rng_seed(&r, mix64(L->st.seed ^ mix64(L->st.epoch + 1)));
    for (size_t i = W; i > 1; i--) {
        size_t j = (size_t)uniform_below(&r, i);
        uint32_t t = L->perm[i - 1];
        L->perm[i - 1] = L->perm[j];
        L->perm[j] = t;
    }
}

int loader_init(loader *L, const shard *s, loader_kind kind, int T, uint64_t seed) {
    memset(L, 0, sizeof *L);
    if (kind != LOADER_RANDOM && kind != LOADER_SHUFFLED && kind != LOADER_SEQUENTIAL)
        return fb_err("loader: unknown sampler kind %d", (int)kind);
    if (T < 1) return fb_err("loader: sequence length %d must be >= 1", T);
    if (s->n < (size_t)T + 1)
        return fb_err("shard %s has %zu tokens, need T+1 = %d for one window of sequence length %d", s->path,
                      s->n, T + 1, T);
    L->s = s;
    L->st.kind = (uint32_t)kind;
    L->st.T = (uint32_t)T;
    L->st.seed = seed;
    fb_rng r;
    fb_rng_seed(&r, mix64(seed));
    L->st.rng = r.s;
    if (kind == LOADER_RANDOM) {
        L->n_windows = s->n - (size_t)T;
        return 0;
    }
    L->n_windows = (s->n - 1) / (size_t)T;
    if (kind == LOADER_SHUFFLED) {
        if (L->n_windows > UINT32_MAX)
            return fb_err("shard %s: %zu windows of %d tokens is more than the shuffler handles (2^32)", s->path,
                          L->n_windows, T);
        L->perm = malloc(L->n_windows * sizeof *L->perm);
        if (!L->perm) return fb_err("loader: out of memory for %zu window indices", L->n_windows);
        build_perm(L);
    }
    return 0;
}

void loader_free(loader *L) {
    free(L->perm);
    L->perm = NULL;
}

/* Start token of the next window; advances the state. */
static size_t next_start(loader *L) {
    size_t T = L->st.T;
    L->st.windows_served++;
    if (L->st.kind == LOADER_RANDOM) {
        fb_rng r = {L->st.rng};
        size_t s = (size_t)uniform_below(&r, L->n_windows);
        L->st.rng = r.s;
        return s;
    }
    if (L->st.pos >= L->n_windows) {
        L->st.epoch++;
        L->st.pos = 0;
        if (L->st.kind == LOADER_SHUFFLED) build_perm(L);
    }
    size_t k = (size_t)L->st.pos++;
    if (L->st.kind == LOADER_SHUFFLED) k = L->perm[k];
    return k * T;
}

int loader_next(loader *L, int B, int32_t *inputs, int32_t *targets) {
    if (!L->s) return fb_err("loader: not initialised");
    size_t T = L->st.T;
    const uint16_t *ids = L->s->tokens;
    for (int b = 0; b < B; b++) {
        const uint16_t *w = ids + next_start(L);
        int32_t *x = inputs + (size_t)b * T, *y = targets + (size_t)b * T;
        for (size_t t = 0; t < T; t++) {
            x[t] = w[t];
            y[t] = w[t + 1];
        }
    }
    return 0;
}

void loader_skip(loader *L, size_t windows) {
    for (size_t i = 0; i < windows; i++) next_start(L);
}

int loader_restore(loader *L, const loader_state *st) {
    if (!L->s) return fb_err("loader: restore before init");
    if (st->kind != L->st.kind)
        return fb_err("loader state: sampler is '%s' in the checkpoint but '%s' now",
                      loader_kind_name((loader_kind)st->kind), loader_kind_name((loader_kind)L->st.kind));
    if (st->T != L->st.T)
        return fb_err("loader state: sequence length is %u in the checkpoint but %u now", st->T, L->st.T);
    if (st->seed != L->st.seed)
        return fb_err("loader state: data seed is %llu in the checkpoint but %llu now",
                      (unsigned long long)st->seed, (unsigned long long)L->st.seed);
    if (st->kind != LOADER_RANDOM && st->pos > L->n_windows)
        return fb_err("loader state: position %llu is beyond the %zu windows of %s (is it the same data?)",
                      (unsigned long long)st->pos, L->n_windows, L->s->path);
    if (st->kind == LOADER_RANDOM && st->rng == 0)
        return fb_err("loader state: zero RNG state (corrupt checkpoint?)");
    L->st = *st;
    if (L->st.kind == LOADER_SHUFFLED) build_perm(L);
    return 0;
}

int loader_kind_parse(const char *name, loader_kind *k) {
    if (!strcmp(name, "random")) *k = LOADER_RANDOM;
    else if (!strcmp(name, "shuffled")) *k = LOADER_SHUFFLED;
    else if (!strcmp(name, "sequential")) *k = LOADER_SEQUENTIAL;
    else return fb_err("unknown data sampler '%s' (random | shuffled | sequential)", name);
    return 0;
}

const char *loader_kind_name(loader_kind k) {
    switch (k) {
    case LOADER_RANDOM: return "random";
    case LOADER_SHUFFLED: return "shuffled";
    case LOADER_SEQUENTIAL: return "sequential";
    }
    return "?";
}
