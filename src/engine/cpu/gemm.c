/* fable — cpu engine: single-precision GEMM built the BLIS way (see include/fable/gemm.h).
 *
 *   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C
 *
 * Five loops around one micro-kernel (BLIS's structure; our own code), per thread:
 *
 *   for jc in N, step NC           B block  op(B)[pc:pc+kc, jc:jc+nc] packed → lives in L3
 *    for pc in K, step KC
 *     for ic in M, step MC          A block  op(A)[ic:ic+mc, pc:pc+kc] packed → lives in L2
 *      for jr in nc, step NR          B micro-panel kc×NR → stays in L1 across the ir loop
 *       for ir in mc, step MR           A micro-panel MR×kc streams from L2
 *        micro-kernel: C[MR,NR] (+)= A_panel · B_panel, MR·NR accumulators in registers
 *
 * and, when all of M fits one A block (the 256-token forward/dx forms), Goto's order for a
 * short, wide product instead (seq_small): A packed once per L2-sized K super-block, then
 * for each NR panel of C all the super-block's KC blocks, each B micro-panel packed just
 * before use, so C is written once per super-block and packed B never leaves L1.
 * Two more orders serve narrow layers (stories260K's), where packing costs about what it
 * saves: tall, narrow, short products (no transA, N ≤ 256, K ≤ 256) pack only B and read A
 * from its rows (run_direct_a); weight gradients with M, N ≤ 256 over a long K read both
 * operands in place (seq_direct_ab).
 *
 * Packed layouts (w = MR for A, NR for B; zero-padded to w when the matrix edge cuts a panel):
 *   A micro-panel: pa[p*MR + i] = op(A)[ic+ir+i][pc+p]     (one column of MR values per k)
 *   B micro-panel: pb[p*NR + j] = op(B)[pc+p][jc+jr+j]     (one row of NR values per k)
 * so the kernel's inner step is: load NR floats of B, broadcast each of the MR floats of A,
 * MR·NR/lanes FMAs. Per k step it loads MR + NR floats for 2·MR·NR flops.
 *
 * Micro-kernels and packing (gemm_kernels.c, chosen at compile time by what the target
 * has, switchable at run time): AVX-512 8×32 and AVX2 6×16 register tiles.
 *
 * Cache blocking. The machine fable was tuned on reports AMD family 26 (Zen 5 class:
 * 48 KB L1d, 1 MB L2 per core, AVX-512 with two 512-bit FMA pipes); Zen 3 has a 32 KB L1d
 * and a 512 KB L2. For the AVX-512 kernel:
 *   KC = 256: B micro-panel 256·32·4 B = 32 KB stays in L1 across the ir loop, A
 *             micro-panel 8·256·4 = 8 KB streams beside it.
 *   MC = 384: A block 384·256·4 = 384 KB, well inside the L2 with room for B panels and
 *             C lines passing through.
 *   NC = 4096: B block 256·4096·4 = 4 MB, inside the L3.
 * A sweep of MC ∈ {192, 384, 768}, KC ∈ {192, 256, 384, 512}, NC ∈ {1024, 4096, 16384}
 * moved the training shapes by less than the ±5% run-to-run noise of this shared machine
 * (bench/RESULTS.md), so these stay at the values the arithmetic above gives.
 * For AVX2 6×16: KC = 256 (B micro-panel 16 KB, half of a 32 KB L1), MC = 144 (A block
 * 144 KB in a 512 KB L2), NC = 4096. Each dimension is split into equal blocks rounded to
 * the panel width (K = 288 → 2×144, not 256 + 32) so no block is a sliver.
 *
 * Threads (OpenMP; libgomp keeps its pool, so no threads are created per call): C is cut
 * into one part per thread — rows, columns, or K with a reduction, whichever an estimate
 * says is cheapest — and each thread runs the one-thread algorithm on its part, packing
 * what it reads into its own buffers: no shared packed data, no barrier (see "threads"
 * below for why and the estimate). Row and column parts are handed out at run time where
 * the sequential order allows it: a thread that finishes early takes over the end of a
 * slower thread's part ("work shared at run time"). A pre-packed B is read-only and shared
 * by all threads. Called inside a parallel region: one thread.
 *
 * Edges: packing zero-pads partial panels; a partial C tile is computed into a local MR×NR
 * buffer and merged, so the kernel itself only ever sees full tiles. K needs no padding.
 */
#include "fable/gemm.h"
#include "fable/util.h"
#include "engine/cpu/gemm_kernels.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------------ */
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Split n into equal blocks of at most about `target`, each a multiple of `mult`. */
static int block_size(int n, int target, int mult) {
    if (n <= 0) return mult;
    int nb = ceil_div(n, target);
    return round_up(ceil_div(n, nb), mult);
}

static _Atomic int g_threads = 0;
void gemm_set_threads(int n) { g_threads = n > 0 ? n : 0; }

/* C = beta·C over M×N (beta == 0 writes zeros without reading: NaN-safe). */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (ptrdiff_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f) for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

static void blas_gemm(int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}


/* ---- pre-packed B ------------------------------------------------------------------ */
struct gemm_packed {
    const gemm_arch *ar;
    int transB, K, N;
    int kcb;          /* K block used when packing: block p starts at data + p0·npad */
    int npan;         /* NR panels across N; npad = npan·NR */
    float *data;
    size_t nfloats;
};

#ifdef GEMM_AVX2
/* ---- scratch ----------------------------------------------------------------------- */
/* Per thread: each OpenMP worker packs into its own buffers, kept between calls
 * (allocating a fresh 4 MB block each call costs ~1000 page faults, ~0.3 ms). */
typedef struct { float *p; size_t n; } tl_buf;

static _Thread_local tl_buf tl_scratch; /* packing buffers */
static _Thread_local tl_buf tl_ktemp;   /* partial products of a K split */

/* Freed when their thread exits (a larger team's extra threads may be let go by the
 * OpenMP runtime): a pthread key whose destructor runs in the exiting thread. */
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static void tl_release(void *unused) {
    (void)unused;
    fb_free(tl_scratch.p);
    fb_free(tl_ktemp.p);
    tl_scratch = tl_ktemp = (tl_buf){0};
}
static void tl_key_make(void) { pthread_key_create(&tl_key, tl_release); }

/* buf grown to at least nfloats (contents not kept); NULL when that cannot be allocated */
static float *tl_grow(tl_buf *buf, size_t nfloats) {
    if (nfloats <= buf->n) return buf->p;
    pthread_once(&tl_once, tl_key_make);
    pthread_setspecific(tl_key, buf);   /* any non-NULL value: the destructor frees both */
    fb_free(buf->p);
    buf->p = fb_alloc(nfloats * sizeof(float));
    buf->n = buf->p ? nfloats : 0;
    return buf->p;
}

static float *scratch(size_t nfloats) { return tl_grow(&tl_scratch, nfloats); }
static float *ktemp(size_t nfloats) { return tl_grow(&tl_ktemp, nfloats); }

/* Bytes of L2 per core (sysconf; 512 KB, Zen 3's, when unknown). */
static size_t l2_bytes(void) {
    static _Atomic long cached = 0;
    long v = cached;
    if (v) return (size_t)v;
#ifdef _SC_LEVEL2_CACHE_SIZE
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (v < 65536 || v > (64L << 20)) v = 512 * 1024;
    cached = v;
    return (size_t)v;
}

/* ---- one thread's product ------------------------------------------------------------ */
typedef struct {
    const gemm_arch *ar;
    int transA, transB, M, N, K;
    float alpha, beta;
    const float *A; ptrdiff_t lda;
    const float *B; ptrdiff_t ldb;      /* unpacked B (NULL when Bp is used) */
    const gemm_packed *Bp;              /* pre-packed B, or NULL */
    int bp_j, bp_k;                     /* this job's first NR panel / first k in Bp */
    float *C; ptrdiff_t ldc;
    struct gemm_claims *cl;             /* shared work list (dynamic split), or NULL */
} gemm_job;

/* ---- work shared at run time (dynamic split) -----------------------------------------
 * A product is cut into units (seq_small: the NR column panels of C; seq_blis: row blocks of
 * C). Each thread of the team owns the units the static split would give it, a contiguous
 * range, and takes them from the front; a thread that has finished its own range takes
 * units from the back of another's. When the cores run evenly nobody steals and each thread
 * reads exactly what it would in the static split; when one runs slower (on this shared VM
 * one vCPU often runs 20–40% behind the other for minutes) its partner takes over the end of
 * its range instead of idling at the join. Each thread still packs everything it reads
 * itself; a unit is computed exactly as in the static split (same blocks, same order of
 * sums), so results are bit-identical, whichever thread takes it.
 * The K blocks of a unit (seq_small's super-blocks, seq_blis's (jc, pc) blocks) are passes,
 * each with its own ranges; a unit's pass s may start only after its pass s − 1 has finished
 * (C is accumulated over the passes): done[u] counts the finished passes, and a thread that
 * takes a unit whose previous pass is still running on another core waits for it. */
#define GEMM_CLAIM_UNITS 512
#define GEMM_CLAIM_PASSES 32
#define GEMM_CLAIM_THREADS 8
typedef struct gemm_claims {
    /* per owner (each on its own cache lines: the owner's claims do not disturb the other
     * cores) and pass: the range left, front | back << 16 (units < 65536) */
    struct { _Alignas(64) _Atomic uint32_t pass[GEMM_CLAIM_PASSES]; } range[GEMM_CLAIM_THREADS];
    _Atomic int done[GEMM_CLAIM_UNITS];     /* per unit: passes finished (kept only when passes > 1) */
    int units, unit_rows, nt, passes;       /* unit_rows: seq_blis's rows per unit */
} gemm_claims;

/* Take up to `maxrun` contiguous units of range r: from the front (the owner: 3/4 of what
 * is left, so the rest stays open to others) or one from the back (another thread).
 * Returns the first unit, *n the count; −1 when the range is empty. */
static int take_range(_Atomic uint32_t *r, int own, int maxrun, int *n) {
    uint32_t v = atomic_load_explicit(r, memory_order_relaxed);
    for (;;) {
        const int f = (int)(v & 0xffff), b = (int)(v >> 16);
        if (f >= b) return -1;
        const int k = own ? imin(maxrun, imax(1, (b - f) * 3 / 4)) : 1;
        const uint32_t nv = own ? (uint32_t)(f + k) | (uint32_t)b << 16 : (uint32_t)f | (uint32_t)(b - k) << 16;
        if (atomic_compare_exchange_weak_explicit(r, &v, nv, memory_order_relaxed, memory_order_relaxed)) {
            *n = k;
            return own ? f : b - k;
        }
    }
}

static _Atomic int g_skew_us = 0;      /* gemm_test_skew */
static _Atomic long g_steals = 0;

/* The next units to work on in pass `pass` after unit `prev` (−1: the first): *n contiguous
 * units from the returned one, −1 when none is left. Without shared ranges, the units in
 * order, one at a time (one thread's whole part). */
/* gemm_test_skew: thread t > 0 is held back until thread 0 has taken over a unit, or skew µs */
static void skew_hold(int t) {
    const int skew = atomic_load_explicit(&g_skew_us, memory_order_relaxed);
    if (skew && t > 0)
        for (double t0 = fb_now(); atomic_load_explicit(&g_steals, memory_order_relaxed) == 0 &&
                                   fb_now() - t0 < skew * 1e-6;)
            _mm_pause();
}

static int claim_units(const gemm_job *jb, int pass, int prev, int units, int maxrun, int *n) {
    *n = 1;
    if (!jb->cl) return prev + 1 < units ? prev + 1 : -1;
    gemm_claims *cl = jb->cl;
    const int t = omp_get_thread_num();
    skew_hold(t);
    int u = t < cl->nt ? take_range(&cl->range[t].pass[pass], 1, maxrun, n) : -1;
    for (int i = 1; u < 0 && i < cl->nt; i++) {
        u = take_range(&cl->range[(t + i) % cl->nt].pass[pass], 0, maxrun, n);
        if (u >= 0) atomic_fetch_add_explicit(&g_steals, 1, memory_order_relaxed);
    }
    return u;
}

static int claim_unit(const gemm_job *jb, int pass, int prev, int units) {
    int n;
    return claim_units(jb, pass, prev, units, 1, &n);
}

/* Before unit u's pass `pass`: wait for its pass − 1 (another thread may still run it). */
static void unit_wait(const gemm_job *jb, int u, int pass) {
    if (!jb->cl || pass == 0) return;
    while (atomic_load_explicit(&jb->cl->done[u], memory_order_acquire) < pass) _mm_pause();
}

static void unit_done(const gemm_job *jb, int u, int pass) {
    if (jb->cl && jb->cl->passes > 1) atomic_store_explicit(&jb->cl->done[u], pass + 1, memory_order_release);
}

/* Pack the NR panels [j0, j1) of B block (jc, pc) into bblk. */
static void pack_b_panels(const gemm_arch *ar, int transB, const float *B, ptrdiff_t ldb,
                          int jc, int nc, int pc, int kc, int j0, int j1, float *bblk) {
    const int nr = ar->nr;
    if (j0 >= j1) return;
    if (!transB) {
        int col = jc + j0 * nr, n = imin(nc - j0 * nr, (j1 - j0) * nr);
        gemm_pack_contig(nr, n, kc, B + (ptrdiff_t)pc * ldb + col, ldb, bblk + (ptrdiff_t)j0 * kc * nr);
        return;
    }
    for (int j = j0; j < j1; j++) {
        int col = jc + j * nr, we = imin(nr, nc - j * nr);
        gemm_pack_transposed(nr, we, kc, B + (ptrdiff_t)col * ldb + pc, ldb, bblk + (ptrdiff_t)j * kc * nr);
    }
}

/* Pack MR panels [i0, i1) of op(A) rows [row0, row0 + m) × [pc, pc + kc) into ablk
 * (panel i at ablk + i·kc·MR, rows counted from row0). */
static void pack_a_panels(const gemm_arch *ar, int transA, const float *A, ptrdiff_t lda,
                          int row0, int m, int pc, int kc, int i0, int i1, float *ablk) {
    const int mr = ar->mr;
    if (i0 >= i1) return;
    if (transA) {
        int row = row0 + i0 * mr, n = imin(m - i0 * mr, (i1 - i0) * mr);
        gemm_pack_contig(mr, n, kc, A + (ptrdiff_t)pc * lda + row, lda, ablk + (ptrdiff_t)i0 * kc * mr);
        return;
    }
    for (int i = i0; i < i1; i++) {
        int row = row0 + i * mr, we = imin(mr, m - i * mr);
        gemm_pack_transposed(mr, we, kc, A + (ptrdiff_t)row * lda + pc, lda, ablk + (ptrdiff_t)i * kc * mr);
    }
}

/* C[0:me, 0:ne] = alpha·t + beta·C for a tile t computed into a local buffer (row stride w) */
static inline void merge_tile(const float *t, int w, float *c, ptrdiff_t ldc, int me, int ne, float alpha,
                              float beta) {
    for (int i = 0; i < me; i++) {
        float *cr = c + (ptrdiff_t)i * ldc;
        const float *tr = t + i * w;
        if (beta == 0.0f) for (int j = 0; j < ne; j++) cr[j] = alpha * tr[j];
        else              for (int j = 0; j < ne; j++) cr[j] = alpha * tr[j] + beta * cr[j];
    }
}

/* One MR×NR tile; partial tiles go through a local buffer so the kernel sees full tiles. */
static inline void tile(const gemm_arch *ar, int kc, const float *pa, const float *pb,
                        float *c, ptrdiff_t ldc, int me, int ne, float alpha, float beta) {
    if (me == ar->mr && ne == ar->nr) { ar->kern(kc, pa, pb, c, ldc, alpha, beta); return; }
    float t[GEMM_MAX_TILE] __attribute__((aligned(64)));
    ar->kern(kc, pa, pb, t, ar->nr, 1.0f, 0.0f);
    merge_tile(t, ar->nr, c, ldc, me, ne, alpha, beta);
}

/* K super-block of the short-product orders (seq_small, seq_pp): as many KC blocks as keep
 * all mpad rows of packed A within 3/4 of the L2 (at least one). */
static int super_block(size_t mpad, int K, int kcb) {
    const int nkb = (int)(l2_bytes() * 3 / 4 / sizeof(float) / (mpad * kcb));
    return kcb * imin(nkb < 1 ? 1 : nkb, ceil_div(K, kcb));
}

/* The packed-B micro-panel for the job's K block at pc (length kc) and its NR panel j. */
static inline const float *bp_panel(const gemm_job *jb, int pc, int kc, int j) {
    const int nr = jb->ar->nr;
    return jb->Bp->data + (size_t)(jb->bp_k + pc) * jb->Bp->npan * nr + (size_t)(jb->bp_j + j) * kc * nr;
}

/* Big M: the BLIS order of the header comment. Returns -1 (before writing C) when its
 * scratch cannot be allocated. */
static int seq_blis(const gemm_job *jb, int kcb) {
    const gemm_arch *ar = jb->ar;
    const int mr = ar->mr, nr = ar->nr, M = jb->M, N = jb->N, K = jb->K;
    const int mcb = block_size(M, ar->mc, mr), ncb = block_size(N, ar->nc, nr);
    size_t bsz = jb->Bp ? 0 : (size_t)kcb * round_up(ncb, nr), asz = (size_t)mcb * kcb;
    float *s = scratch(bsz + asz + 16);
    if (!s) return -1;
    float *bbuf = s, *abuf = s + bsz;
    /* units: row blocks of ub rows (MC blocks; when shared, 4·MR rows, taken several at a
     * time up to an MC block: claim_units); pass: the (jc, pc) block */
    const int ub = jb->cl ? jb->cl->unit_rows : mcb, units = ceil_div(M, ub), maxrun = mcb / ub;
    for (int jc = 0, pass = 0; jc < N; jc += ncb) {
        int nc = imin(ncb, N - jc), njr = ceil_div(nc, nr);
        for (int pc = 0; pc < K; pc += kcb, pass++) {
            int kc = imin(kcb, K - pc);
            float beta = pc == 0 ? jb->beta : 1.0f;
            int n, u = claim_units(jb, pass, -1, units, maxrun, &n);
            if (u < 0) continue;     /* the other threads took every row block of this pass */
            const float *bblk;
            if (jb->Bp) {
                bblk = bp_panel(jb, pc, kc, jc / nr);
            } else {
                pack_b_panels(ar, jb->transB, jb->B, jb->ldb, jc, nc, pc, kc, 0, njr, bbuf);
                bblk = bbuf;
            }
            for (; u >= 0; u = claim_units(jb, pass, u + n - 1, units, maxrun, &n)) {
                for (int i = 0; i < n; i++) unit_wait(jb, u + i, pass);
                int ic = u * ub, mc = imin(n * ub, M - ic), nir = ceil_div(mc, mr);
                pack_a_panels(ar, jb->transA, jb->A, jb->lda, ic, mc, pc, kc, 0, nir, abuf);
                for (int jr = 0; jr < njr; jr++) {
                    const float *pb = bblk + (ptrdiff_t)jr * kc * nr;
                    int ne = imin(nr, nc - jr * nr);
                    float *cc = jb->C + (ptrdiff_t)ic * jb->ldc + jc + jr * nr;
                    for (int ir = 0; ir < nir; ir++)
                        tile(ar, kc, abuf + (ptrdiff_t)ir * kc * mr, pb,
                             cc + (ptrdiff_t)ir * mr * jb->ldc, jb->ldc,
                             imin(mr, mc - ir * mr), ne, jb->alpha, beta);
                }
                for (int i = 0; i < n; i++) unit_done(jb, u + i, pass);
            }
        }
    }
    return 0;
}

/* The source region of one B micro-panel, the bytes that pack_b_panels (or, pre-packed,
 * the kernel) reads for it: nrows rows of row_bytes, stride apart. A panel is 32 weight
 * rows × kc floats (transB), kc rows × 32 floats (not), or one contiguous pre-packed run. */
typedef struct { const char *base; ptrdiff_t stride; int nrows, row_bytes; } b_src;

static b_src b_panel_src(const gemm_job *jb, int col, int pc, int kc) {
    const int nr = jb->ar->nr, ncols = imin(nr, jb->N - col), fs = (int)sizeof(float);
    const ptrdiff_t ld = jb->ldb * (ptrdiff_t)fs;
    if (jb->Bp) return (b_src){(const char *)bp_panel(jb, pc, kc, col / nr), 0, 1, kc * nr * fs};
    if (jb->transB) return (b_src){(const char *)(jb->B + (ptrdiff_t)col * jb->ldb + pc), ld, ncols, kc * fs};
    return (b_src){(const char *)(jb->B + (ptrdiff_t)pc * jb->ldb + col), ld, kc, ncols * fs};
}

/* Prefetch rows [r0, r1) of a panel's source into L2 (addresses stay inside each row). */
static inline void prefetch_rows(const b_src *s, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        const char *row = s->base + r * s->stride;
        for (int off = 0; off < s->row_bytes; off += 64) __builtin_prefetch(row + off, 0, 2);
        __builtin_prefetch(row + s->row_bytes - 1, 0, 2); /* a row need not start on a line */
    }
}

/* Small M (all of op(A) fits one A block, the forward/dx forms at 256 tokens): Goto's
 * order for a short, wide product.
 *   for each K super-block (ksb = several KC blocks; all M rows × ksb packed ≤ 3/4 L2):
 *     pack the A super-block
 *     for each NR panel of C:
 *       for each KC block in the super-block:
 *         pack the B micro-panel (kc × NR) into a 32 KB buffer (stays in L1)
 *         run the MR×NR tiles down the M rows
 * The C strip (M × NR, 32 KB at M = 256) stays in L1/L2 across the super-block's KC
 * blocks, so C goes to memory once per super-block instead of once per KC block: for the
 * classifier forward (C = 256 × 32000 floats, K = 768) that is 1 pass over 33 MB instead
 * of 3. Packed B never goes out to L3 and back (the big-M order writes a 4 MB B block and
 * reads it again). */
static int seq_small(const gemm_job *jb, int kcb) {
    const gemm_arch *ar = jb->ar;
    const int mr = ar->mr, nr = ar->nr, M = jb->M, N = jb->N, K = jb->K;
    const int mp = ceil_div(M, mr), np = ceil_div(N, nr);
    const size_t mpad = (size_t)mp * mr;
    const int ksb = super_block(mpad, K, kcb);
    float *s = scratch(mpad * ksb + (size_t)kcb * nr + 16);
    if (!s) return -1;
    float *asb = s, *bpan = s + mpad * ksb;
    /* panels are taken one ahead (jn), so the next panel's source can be prefetched while
     * the current one computes; pass = super-block index (claim_unit) */
    int jn = claim_unit(jb, 0, -1, np);
    for (int k0 = 0, pass = 0; k0 < K; k0 += ksb, pass++) {
        const int k1 = imin(K, k0 + ksb);
        if (jn < 0) {       /* no panel of this super-block left for this thread */
            if (k1 < K) jn = claim_unit(jb, pass + 1, -1, np);
            continue;
        }
        /* KC block pc of the super-block sits at asb + (pc - k0)·mpad */
        for (int pc = k0; pc < k1; pc += kcb)
            pack_a_panels(ar, jb->transA, jb->A, jb->lda, 0, M, pc, imin(kcb, K - pc), 0, mp,
                          asb + (size_t)(pc - k0) * mpad);
        int nf = -1;        /* the next super-block's first panel, taken early to prefetch it */
        while (jn >= 0) {
            const int jr = jn, ne = imin(nr, N - jr * nr);
            float *cc = jb->C + jr * nr;
            unit_wait(jb, jr, pass);
            for (int pc = k0; pc < k1; pc += kcb) {
                const int kc = imin(kcb, K - pc);
                const float beta = pc == 0 ? jb->beta : 1.0f;
                const float *ablk = asb + (size_t)(pc - k0) * mpad, *pb;
                if (jb->Bp) {
                    pb = bp_panel(jb, pc, kc, jr);
                } else {
                    pack_b_panels(ar, jb->transB, jb->B, jb->ldb, jr * nr, N - jr * nr, pc, kc, 0, 1, bpan);
                    pb = bpan;
                }
                /* the next panel's source, spread over this panel's tiles: its pack then reads
                 * L2 instead of waiting on memory (weights arrive cold: their last touch was
                 * the previous step's AdamW). Measured with huge pages: dx forms +5–8% with cold
                 * caches, the 110M step's dx phase −3% (bench/RESULTS.md); on 4 KB pages it
                 * gained nothing. The next panel is this one's next K block, else the next
                 * panel taken (of this super-block, else of the next). */
                int nj = jr, npc = pc + kcb;
                if (npc >= k1) {
                    jn = claim_unit(jb, pass, jr, np);
                    nj = jn, npc = k0;
                    if (jn < 0 && k1 < K) nf = nj = claim_unit(jb, pass + 1, -1, np), npc = k1;
                }
                const int pf = nj >= 0 && npc < K;
                const b_src nsrc = pf ? b_panel_src(jb, nj * nr, npc, imin(kcb, K - npc)) : (b_src){0};
                for (int ir = 0, r0 = 0; ir < mp; ir++) {
                    const int r1 = nsrc.nrows * (ir + 1) / mp;
                    prefetch_rows(&nsrc, r0, r1);
                    r0 = r1;
                    tile(ar, kc, ablk + (ptrdiff_t)ir * kc * mr, pb, cc + (ptrdiff_t)ir * mr * jb->ldc,
                         jb->ldc, imin(mr, M - ir * mr), ne, jb->alpha, beta);
                }
            }
            unit_done(jb, jr, pass);
        }
        jn = nf;
    }
    return 0;
}

#ifdef GEMM_AVX512
/* One 8×32 tile on operands read in place (ukernel_avx512_8x32_strided's strides); a partial
 * tile (me < 8 rows or ne < 32 columns, its operands zero-padded by the caller) goes through
 * a local buffer: the strided counterpart of tile(). */
static inline void strided_tile(int kc, const float *a, ptrdiff_t ars, ptrdiff_t aks, const float *b, ptrdiff_t bks,
                                float *c, ptrdiff_t ldc, int me, int ne, float alpha, float beta) {
    if (me == 8 && ne == 32) {
        gemm_ukernel_avx512_8x32_strided(kc, a, ars, aks, b, bks, c, ldc, alpha, beta);
        return;
    }
    float t[8 * 32] __attribute__((aligned(64)));
    gemm_ukernel_avx512_8x32_strided(kc, a, ars, aks, b, bks, t, 32, 1.0f, 0.0f);
    merge_tile(t, 32, c, ldc, me, ne, alpha, beta);
}

/* Weight gradients of narrow layers, dW[M,N] = dYᵀ·X with M, N ≤ 256 and a long K (the
 * tokens): stories260K's dW products are 32..172 × 64..172 over 8192 tokens. Both operands
 * are read in place, K block by K block (kc ≤ 256 rows of dY and X: ≤ 240 KB, in L2): A(i, p)
 * = dY[p][i] by broadcasts along a row of dY (ars = 1, aks = lda), B's row p = X[p][j0:j0+32].
 * Only a partial row strip (M mod 8) or column panel (N mod 32) is packed, zero-padded, so no
 * read goes past the matrices. Each C element sums its products in the same order as the
 * packed path (bench/RESULTS.md, session 5). */
static int direct_ab_fits(const gemm_job *jb) {
    return jb->ar->kern == gemm_ukernel_avx512_8x32 && jb->transA && !jb->transB && !jb->Bp && jb->M <= 256 &&
           jb->N <= 256 && jb->K >= 512;
}

static int seq_direct_ab(const gemm_job *jb, int kcb) {
    const gemm_arch *ar = jb->ar;
    const int M = jb->M, N = jb->N, K = jb->K, jl = N / 32 * 32;   /* jl: the partial panel's column */
    float *buf = scratch((size_t)kcb * 32 + (size_t)kcb * 8 + 16);
    if (!buf) return -1;
    float *pbe = buf, *pae = buf + (size_t)kcb * 32;   /* edge panel of B [kc][32], edge strip of A [kc][8] */
    for (int pc = 0; pc < K; pc += kcb) {
        const int kc = imin(kcb, K - pc);
        const float beta = pc == 0 ? jb->beta : 1.0f;
        const float *Ak = jb->A + (ptrdiff_t)pc * jb->lda, *Bk = jb->B + (ptrdiff_t)pc * jb->ldb;
        if (jl < N) pack_b_panels(ar, 0, jb->B, jb->ldb, jl, N - jl, pc, kc, 0, 1, pbe);
        for (int i0 = 0; i0 < M; i0 += 8) {
            const int me = imin(8, M - i0);
            const float *a = Ak + i0;
            ptrdiff_t ars = 1, aks = jb->lda;
            if (me < 8) {
                pack_a_panels(ar, 1, jb->A, jb->lda, i0, me, pc, kc, 0, 1, pae);
                a = pae, aks = 8;
            }
            for (int j0 = 0; j0 < N; j0 += 32) {
                const int ne = imin(32, N - j0);
                const float *b = j0 < jl ? Bk + j0 : pbe;
                const ptrdiff_t bks = j0 < jl ? jb->ldb : 32;
                strided_tile(kc, a, ars, aks, b, bks, jb->C + (ptrdiff_t)i0 * jb->ldc + j0, jb->ldc, me, ne,
                             jb->alpha, beta);
            }
        }
    }
    return 0;
}
#endif

/* Both operands packed by the caller (gemm_f32_pp): per K super-block (all M rows of as
 * many KC blocks as fit 3/4 of the L2), each NR panel of C runs through the super-block's KC
 * blocks down the M rows, as in seq_small, so a C strip is finished while it is in cache. */
static void seq_pp(const gemm_arch *ar, int M, int N, int K, int kcb, float alpha, const float *pa,
                   const float *pb, float beta, float *C, ptrdiff_t ldc) {
    const int mr = ar->mr, nr = ar->nr, mp = ceil_div(M, mr), np = ceil_div(N, nr);
    const size_t mpad = (size_t)mp * mr, npad = (size_t)np * nr;
    const int ksb = super_block(mpad, K, kcb);
    for (int k0 = 0; k0 < K; k0 += ksb) {
        const int k1 = imin(K, k0 + ksb);
        for (int jr = 0; jr < np; jr++) {
            const int ne = imin(nr, N - jr * nr);
            for (int pc = k0; pc < k1; pc += kcb) {
                const int kc = imin(kcb, K - pc);
                const float *ablk = pa + (size_t)pc * mpad, *pbp = pb + (size_t)pc * npad + (size_t)jr * kc * nr;
                for (int ir = 0; ir < mp; ir++)
                    tile(ar, kc, ablk + (ptrdiff_t)ir * kc * mr, pbp, C + (ptrdiff_t)ir * mr * ldc + jr * nr, ldc,
                         imin(mr, M - ir * mr), ne, alpha, pc == 0 ? beta : 1.0f);
            }
        }
    }
}

static int seq_job(const gemm_job *jb) {
    int kcb = jb->Bp ? jb->Bp->kcb : block_size(jb->K, jb->ar->kc, 8);
#ifdef GEMM_AVX512
    if (direct_ab_fits(jb)) return seq_direct_ab(jb, kcb);
#endif
    if (jb->M <= round_up(jb->ar->mc, jb->ar->mr)) return seq_small(jb, kcb);
    return seq_blis(jb, kcb);
}

/* A job that could not get scratch memory (it has written nothing yet) goes to cblas. */
static int run_job(const gemm_job *jb) {
    if (seq_job(jb) == 0) return 0;
    if (jb->Bp) return -1;
    blas_gemm(jb->transA, jb->transB, jb->M, jb->N, jb->K, jb->alpha, jb->A, (int)jb->lda,
              jb->B, (int)jb->ldb, jb->beta, jb->C, (int)jb->ldc);
    return 0;
}

#ifdef GEMM_AVX512
/* ---- tall, narrow, short products: A read in place ----------------------------------
 * C[M,N] = alpha·A·op(B) + beta·C with A row-major (no transA), N ≤ 256 and K ≤ 256, as in
 * stories260K's projections (M = 8192 tokens; N and K 32..172). The usual path packs all of
 * A (M·K floats) for only ceil(N/32) ≤ 8 column panels, so the pack weighs about as much as
 * the product. Here the kernel reads A straight from its rows (ukernel_avx512_8x32_strided) and
 * only B is packed, once per call by the calling thread (K·N floats, ≤ 256 KB, then read by
 * every thread); the threads take equal runs of 8-row strips. K is one block, so every C
 * element sums the same products in the same order as the packed path: bit-identical
 * results (bench/RESULTS.md, session 5, has the measurements). */
static int direct_a_fits(const gemm_job *jb) {
    return jb->ar->kern == gemm_ukernel_avx512_8x32 && !jb->transA && !jb->Bp && jb->N <= 256 && jb->K <= 256 &&
           jb->M >= 64;
}

/* 8-row strips [s0, s1) of C against the packed B panels pb (panel j at pb + j·K·32) */
static void direct_a_strips(const gemm_job *jb, const float *pb, int s0, int s1) {
    const int M = jb->M, N = jb->N, K = jb->K, np = ceil_div(N, 32);
    float pa[8 * 256] __attribute__((aligned(64)));   /* the last strip when M is not a multiple of 8 */
    for (int st = s0; st < s1; st++) {
        const int i0 = st * 8, me = imin(8, M - i0);
        const float *a = jb->A + (ptrdiff_t)i0 * jb->lda;
        ptrdiff_t ars = jb->lda, aks = 1;
        if (me < 8) {   /* packed and zero-padded: A(i, p) at pa[p·8 + i] */
            pack_a_panels(jb->ar, 0, jb->A, jb->lda, i0, me, 0, K, 0, 1, pa);
            a = pa, ars = 1, aks = 8;
        }
        for (int j = 0; j < np; j++)
            strided_tile(K, a, ars, aks, pb + (size_t)j * K * 32, 32, jb->C + (ptrdiff_t)i0 * jb->ldc + j * 32,
                         jb->ldc, me, imin(32, N - j * 32), jb->alpha, jb->beta);
    }
}

static int run_direct_a(const gemm_job *jb, int nt) {
    const int np = ceil_div(jb->N, 32), ms = ceil_div(jb->M, 8);
    float *pb = scratch((size_t)jb->K * np * 32 + 16);
    if (!pb) return -1;
    pack_b_panels(jb->ar, jb->transB, jb->B, jb->ldb, 0, jb->N, 0, jb->K, 0, np, pb);
    if (nt <= 1) {
        direct_a_strips(jb, pb, 0, ms);
        return 0;
    }
    /* Each thread owns the strips of the static split and takes them from the front (take_range:
     * runs of up to an eighth of its range); one that has finished takes single strips from
     * the back of another's range. A strip's result does not depend on who computes it, so
     * the output is the static split's; a thread that runs behind, or that the scheduler
     * took away, leaves the end of its range to the others instead of holding up the join. */
    if (nt > GEMM_CLAIM_THREADS || ms > 65535) {   /* beyond the ranges' 16-bit ends: static */
#pragma omp parallel num_threads(nt)
        {
            const int id = omp_get_thread_num(), n = omp_get_num_threads();
            direct_a_strips(jb, pb, (int)((long)ms * id / n), (int)((long)ms * (id + 1) / n));
        }
        return 0;
    }
    struct { _Alignas(64) _Atomic uint32_t r; } own[GEMM_CLAIM_THREADS];
    for (int t = 0; t < nt; t++)
        atomic_init(&own[t].r, (uint32_t)((long)ms * t / nt) | (uint32_t)((long)ms * (t + 1) / nt) << 16);
    const int maxrun = imax(1, ms / (8 * nt));
#pragma omp parallel num_threads(nt)
    {
        const int id = omp_get_thread_num(); /* a short team leaves ranges without owner: taken by the others */
        skew_hold(id);
        for (int i = 0, k; i < nt; i++) {
            const int o = (id + i) % nt;
            for (int s0; (s0 = take_range(&own[o].r, i == 0, maxrun, &k)) >= 0;) {
                if (i) atomic_fetch_add_explicit(&g_steals, 1, memory_order_relaxed);
                direct_a_strips(jb, pb, s0, s0 + k);
            }
        }
    }
    return 0;
}
#endif

/* ---- threads ------------------------------------------------------------------------
 * Each thread computes its own part of C with the one-thread algorithm above and packs
 * everything it reads itself: no packed panel is shared, no barrier is needed. On this
 * machine sharing costs more than it saves: two independent half-products (each packing
 * all of A) ran 256×768×768 at 390 GFLOP/s where a team sharing packed A and B with
 * barriers ran it at 337 — the other core's freshly packed lines are slow to fetch.
 * The part is chosen by an estimate of each thread's time (ns):
 *   compute  2·M·N·K / nt / 200 GFLOP/s × (largest share / mean share)
 *   split M  + every thread packs all of B:  K·N × 0.1 ns   (pre-packed: reads all of it,
 *                                            K·N × 0.05 ns, instead of its half)
 *   split N  + every thread packs all of A:  M·K × 0.1 ns
 *   split K  + partial products to a buffer and a reduction: M·N × 0.4 ns
 * e.g. forward 256×768×768 splits N, dW 32000×768×256 splits M, the 15M/260K dW shapes
 * (288×288×2048, 64×64×8192) split K. The M and N splits then run with their parts shared
 * at run time (run_shared) where they can; a K split stays static (its reduction order
 * would otherwise depend on who computed what). */
enum { SPLIT_M, SPLIT_N, SPLIT_K };

/* largest share / mean share when `units` are dealt out to nt threads (∞: some get none) */
static double imbalance(int units, int nt) {
    return units >= nt ? (double)ceil_div(units, nt) * nt / units : INFINITY;
}

/* Below this many flops a second thread costs more (wake-up) than it saves. */
#define GEMM_MT_MIN_FLOPS 4e6

/* The M or N split with the work claimed at run time (gemm_claims), where the sequential
 * order that the split's operand reuse needs is the one that supports it: N split on a short
 * product (seq_small: units are C's NR panels, every thread packs all of A per super-block,
 * as in the static N split), M split on a tall one (seq_blis: units are row blocks, every
 * thread packs each B block, as in the static M split). Returns -1 where it does not apply
 * (the caller splits statically). */
static int run_shared(const gemm_job *jb, int kind, int nt, int kcb) {
    const gemm_arch *ar = jb->ar;
#ifdef GEMM_AVX512
    if (direct_ab_fits(jb)) return -1;
#endif
    const int small = jb->M <= round_up(ar->mc, ar->mr);
    gemm_claims cl;
    int passes;
    if (kind == SPLIT_N && small) {
        cl.units = ceil_div(jb->N, ar->nr);
        cl.unit_rows = 0;
        passes = ceil_div(jb->K, super_block((size_t)round_up(jb->M, ar->mr), jb->K, kcb));
    } else if (kind == SPLIT_M && !small) {
        cl.unit_rows = 4 * ar->mr;                          /* an owner takes several at once */
        cl.units = ceil_div(jb->M, cl.unit_rows);
        passes = ceil_div(jb->N, block_size(jb->N, ar->nc, ar->nr)) * ceil_div(jb->K, kcb);
    } else {
        return -1;
    }
    if (cl.units > GEMM_CLAIM_UNITS || passes > GEMM_CLAIM_PASSES || nt > GEMM_CLAIM_THREADS) return -1;
    cl.nt = nt;
    for (int p = 0; p < passes; p++)   /* thread t owns the units of the static split */
        for (int t = 0; t < nt; t++)
            atomic_init(&cl.range[t].pass[p], (uint32_t)(cl.units * t / nt) | (uint32_t)(cl.units * (t + 1) / nt) << 16);
    cl.passes = passes;
    for (int i = 0; i < cl.units; i++) atomic_init(&cl.done[i], 0);
    gemm_job job = *jb;
    job.cl = &cl;
    int failed = 0, team = 0;
    /* a thread without scratch memory fails before it takes a unit: the others take them all */
#pragma omp parallel num_threads(nt) reduction(+ : failed)
    {
        if (omp_get_thread_num() == 0) team = omp_get_num_threads();
        failed += seq_job(&job) != 0;
    }
    if (failed < team) return 0;
    return run_job(jb);                                     /* nobody could: one thread, or cblas */
}

static int run_job_threads(const gemm_job *jb) {
    const gemm_arch *ar = jb->ar;
    const int M = jb->M, N = jb->N, K = jb->K;
    int nt = g_threads ? g_threads : omp_get_max_threads();
    if (omp_in_parallel() || 2.0 * M * N * K < GEMM_MT_MIN_FLOPS) nt = 1;
#ifdef GEMM_AVX512
    if (direct_a_fits(jb) && run_direct_a(jb, nt) == 0) return 0;
#endif
    if (nt <= 1) return run_job(jb);

    const int mp = ceil_div(M, ar->mr), np = ceil_div(N, ar->nr);
    const int kcb = jb->Bp ? jb->Bp->kcb : block_size(K, ar->kc, 8), nkb = ceil_div(K, kcb);
    const double tf = 2.0 * M * N * K / nt / 200.0;
    double t[3] = {
        tf * imbalance(mp, nt) + (jb->Bp ? 0.05 : 0.1) * K * N,
        tf * imbalance(np, nt) + 0.1 * (double)M * K,
        tf * imbalance(nkb, nt) + 0.4 * (double)M * N,
    };
    float *temp = NULL;
    if (t[SPLIT_K] < t[SPLIT_M] && t[SPLIT_K] < t[SPLIT_N] && (double)M * N * (nt - 1) <= 4e6)
        temp = ktemp((size_t)M * N * (nt - 1));
    int kind = temp ? SPLIT_K : t[SPLIT_M] <= t[SPLIT_N] ? SPLIT_M : SPLIT_N;
    if (isinf(t[kind])) return run_job(jb);                 /* too few panels to share */
    if (kind != SPLIT_K && run_shared(jb, kind, nt, kcb) == 0) return 0;

    int err = 0, split = 0;
#pragma omp parallel num_threads(nt) reduction(| : err)
    {
        const int id = omp_get_thread_num();
        if (id == 0) split = omp_get_num_threads() == nt;
        if (omp_get_num_threads() != nt) {                  /* a short team: no split */
            if (id == 0) err |= run_job(jb);
        } else {
            gemm_job sub = *jb;
            if (kind == SPLIT_M) {
                int r0 = imin(M, mp * id / nt * ar->mr), r1 = imin(M, mp * (id + 1) / nt * ar->mr);
                sub.M = r1 - r0;
                sub.A += jb->transA ? r0 : (ptrdiff_t)r0 * jb->lda;
                sub.C += (ptrdiff_t)r0 * jb->ldc;
            } else if (kind == SPLIT_N) {
                int p0 = np * id / nt, c0 = imin(N, p0 * ar->nr), c1 = imin(N, np * (id + 1) / nt * ar->nr);
                sub.N = c1 - c0;
                if (jb->Bp) sub.bp_j += p0;
                else sub.B += jb->transB ? (ptrdiff_t)c0 * jb->ldb : c0;
                sub.C += c0;
            } else {
                int k0 = imin(K, nkb * id / nt * kcb), k1 = imin(K, nkb * (id + 1) / nt * kcb);
                sub.K = k1 - k0;
                sub.A += jb->transA ? (ptrdiff_t)k0 * jb->lda : k0;
                if (jb->Bp) sub.bp_k += k0;
                else sub.B += jb->transB ? k0 : (ptrdiff_t)k0 * jb->ldb;
                if (id > 0) {                               /* partial product, added below */
                    sub.C = temp + (size_t)(id - 1) * M * N;
                    sub.ldc = N;
                    sub.beta = 0.0f;
                }
            }
            err |= run_job(&sub);
        }
    }
    /* K split: add the partial products after the join. Serial, but it is chosen only when
     * M·N is small (≤ 4M floats; 15M dW: 83K floats, ~20 µs), and another barrier inside
     * the team would be one more place for a descheduled partner to stall everyone. */
    if (kind == SPLIT_K && split)
        for (int i = 0; i < M; i++) {
            float *c = jb->C + (ptrdiff_t)i * jb->ldc;
            for (int u = 0; u < nt - 1; u++) {
                const float *tp = temp + (size_t)u * M * N + (size_t)i * N;
                for (int j = 0; j < N; j++) c[j] += tp[j];
            }
        }
    return err ? fb_err("gemm: out of memory for packing buffers") : 0;
}
#endif /* GEMM_AVX2 */

/* ---- public entry points ------------------------------------------------------------ */
void gemm_test_skew(int us) {
#ifdef GEMM_AVX2
    atomic_store(&g_skew_us, us > 0 ? us : 0);
#else
    (void)us;
#endif
}

long gemm_test_steals(void) {
#ifdef GEMM_AVX2
    return atomic_exchange(&g_steals, 0);
#else
    return 0;
#endif
}

void gemm_f32(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
#ifdef GEMM_AVX2
    const gemm_arch *ar = gemm_arch_current();
    if (ar->kern) {
        gemm_job jb = {
            .ar = ar, .transA = transA, .transB = transB, .M = M, .N = N, .K = K,
            .alpha = alpha, .beta = beta, .A = A, .lda = lda, .B = B, .ldb = ldb, .C = C, .ldc = ldc,
        };
        run_job_threads(&jb);   /* without Bp every failure has already fallen back to cblas */
        return;
    }
#endif
    blas_gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void pack_all(gemm_packed *p, const float *B, int ldb) {
    if (!p->ar->kern) {   /* cblas layout: op(B) as a dense K×N matrix */
        for (int k = 0; k < p->K; k++)
            for (int j = 0; j < p->N; j++)
                p->data[(size_t)k * p->N + j] = p->transB ? B[(ptrdiff_t)j * ldb + k]
                                                          : B[(ptrdiff_t)k * ldb + j];
        return;
    }
#ifdef GEMM_AVX2
    const gemm_arch *ar = p->ar;
    const int nr = ar->nr, npan = p->npan, nkb = ceil_div(p->K, p->kcb);
    /* One task per (K block, panel); the whole matrix is one "B block" of width N. */
    int ntask = nkb * npan;
    int nt = omp_in_parallel() ? 1 : (g_threads ? g_threads : omp_get_max_threads());
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < ntask; t++) {
        int kb = t / npan, j = t % npan;
        int pc = kb * p->kcb, kc = imin(p->kcb, p->K - pc);
        float *blk = p->data + (size_t)pc * npan * nr;
        pack_b_panels(ar, p->transB, B, ldb, 0, p->N, pc, kc, j, j + 1, blk);
    }
#endif
}

gemm_packed *gemm_pack_b(int transB, int K, int N, const float *B, int ldb) {
    if (K <= 0 || N <= 0) { fb_err("gemm_pack_b: empty matrix %d×%d", K, N); return NULL; }
    gemm_packed *p = fb_alloc(sizeof *p);
    if (!p) return NULL;
    p->ar = gemm_arch_current();
    p->transB = transB ? 1 : 0;
    p->K = K;
    p->N = N;
    if (p->ar->kern) {
        p->kcb = block_size(K, p->ar->kc, 8);
        p->npan = ceil_div(N, p->ar->nr);
        p->nfloats = (size_t)K * p->npan * p->ar->nr;
    } else {
        p->kcb = K;
        p->npan = N;
        p->nfloats = (size_t)K * N;
    }
    p->data = fb_alloc(p->nfloats * sizeof(float));
    if (!p->data) { fb_free(p); return NULL; }
    pack_all(p, B, ldb);
    return p;
}

void gemm_repack_b(gemm_packed *p, const float *B, int ldb) { pack_all(p, B, ldb); }

void gemm_packed_free(gemm_packed *p) {
    if (!p) return;
    fb_free(p->data);
    fb_free(p);
}

size_t gemm_packed_bytes(const gemm_packed *p) { return p ? p->nfloats * sizeof(float) : 0; }

int gemm_f32_prepacked(int transA, int M, float alpha, const float *A, int lda,
                       const gemm_packed *Bp, float beta, float *C, int ldc) {
    int N = Bp->N, K = Bp->K;
    if (M <= 0) return 0;
    if (alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return 0; }
#ifdef GEMM_AVX2
    if (Bp->ar->kern) {
        gemm_job jb = {
            .ar = Bp->ar, .transA = transA, .transB = Bp->transB, .M = M, .N = N, .K = K,
            .alpha = alpha, .beta = beta, .A = A, .lda = lda, .Bp = Bp, .C = C, .ldc = ldc,
        };
        return run_job_threads(&jb);
    }
#endif
    blas_gemm(transA, 0, M, N, K, alpha, A, lda, Bp->data, N, beta, C, ldc);
    return 0;
}

/* ---- operands packed by the caller -------------------------------------------------- */
gemm_layout gemm_layout_get(int own) {
    const gemm_arch *ar = own ? gemm_arch_current() : gemm_arch_find("blas");
    return (gemm_layout){.arch = ar, .mr = ar->mr, .nr = ar->nr};
}

int gemm_layout_kc(const gemm_layout *lo, int K) {
    const gemm_arch *ar = lo->arch;
    return ar->kern ? block_size(K, ar->kc, 8) : (K > 0 ? K : 1);
}

size_t gemm_packed_a_floats(const gemm_layout *lo, int M, int K) {
    return (size_t)ceil_div(M, lo->mr) * lo->mr * (size_t)K;
}

size_t gemm_packed_b_floats(const gemm_layout *lo, int K, int N) {
    return (size_t)ceil_div(N, lo->nr) * lo->nr * (size_t)K;
}

/* The cblas layout (w = 1, one K block): rows i < n of X as stored (t = 0: X[i][p]) or of
 * its transpose (t = 1: X[p][i]), dst[i·K + p]. op(A) for A; op(B)ᵀ for B. */
static void copy_rows(int n, int K, int t, const float *X, int ld, float *dst) {
    for (int i = 0; i < n; i++)
        for (int p = 0; p < K; p++) dst[(size_t)i * K + p] = t ? X[(ptrdiff_t)p * ld + i] : X[(ptrdiff_t)i * ld + p];
}

/* Either operand, K block by K block (block pc at dst + pc·npad·w, as gemm.h lays out): the
 * n rows of op(A) in MR-wide panels, or the n columns of op(B) in NR-wide panels. */
static void pack_k_blocks(const gemm_layout *lo, int is_b, int trans, int n, int K, int kcb, const float *X, int ld,
                          float *dst) {
    const gemm_arch *ar = lo->arch;
#ifdef GEMM_AVX2
    if (ar->kern) {
        const int w = is_b ? ar->nr : ar->mr, np = ceil_div(n, w);
        for (int pc = 0; pc < K; pc += kcb) {
            float *blk = dst + (size_t)pc * np * w;
            if (is_b) pack_b_panels(ar, trans, X, ld, 0, n, pc, imin(kcb, K - pc), 0, np, blk);
            else      pack_a_panels(ar, trans, X, ld, 0, n, pc, imin(kcb, K - pc), 0, np, blk);
        }
        return;
    }
#endif
    (void)ar; (void)kcb;
    copy_rows(n, K, is_b ? !trans : trans, X, ld, dst);
}

void gemm_pack_a_into(const gemm_layout *lo, int transA, int M, int K, int kcb, const float *A, int lda,
                      float *dst) {
    pack_k_blocks(lo, 0, transA, M, K, kcb, A, lda, dst);
}

void gemm_pack_b_into(const gemm_layout *lo, int transB, int K, int N, int kcb, const float *B, int ldb,
                      float *dst) {
    pack_k_blocks(lo, 1, transB, N, K, kcb, B, ldb, dst);
}

void gemm_f32_pp(const gemm_layout *lo, int M, int N, int K, int kcb, float alpha, const float *pa,
                 const float *pb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
    const gemm_arch *ar = lo->arch;
#ifdef GEMM_AVX2
    if (ar->kern) { seq_pp(ar, M, N, K, kcb, alpha, pa, pb, beta, C, ldc); return; }
#endif
    (void)ar; (void)kcb;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, pa, K, pb, K, beta, C, ldc);
}
