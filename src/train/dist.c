/* fable — data-parallel training across processes (see include/fable/dist.h).
 * Every MPI call lives in this file, behind FABLE_MPI; without it (or without mpirun) the
 * functions are those of a job of one process. */
#include "fable/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

#ifdef FABLE_MPI
#include <mpi.h>
#endif

#define DIST_BUCKET_FLOATS ((size_t)4 << 20) /* 16 MB of fp32 gradients per bucket */

int dist_built(void) {
#ifdef FABLE_MPI
    return 1;
#else
    return 0;
#endif
}

/* Launched by mpirun (Open MPI sets OMPI_COMM_WORLD_*, PMIx launchers PMIX_RANK)? A plain
 * `fable train` never initialises MPI: no singleton start-up, no daemon, no network probe. */
static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int dist_init(dist *d) {
    memset(d, 0, sizeof *d);
    d->world = d->local_world = 1;
    if (!launched_by_mpirun()) return 0;
#ifdef FABLE_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return fb_err("MPI_Init failed");
        d->mpi = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &d->local_world);
    MPI_Comm_free(&local);
    return 0;
#else
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1)
        return fb_err("launched by mpirun with %s processes, but this fable was built without MPI (no mpicc at "
                      "build time): install libopenmpi-dev and rebuild, or run without mpirun", n);
    return 0;
#endif
}

void dist_free(dist *d) {
    fb_free(d->bucket);
    fb_free(d->recv);
#ifdef FABLE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    memset(d, 0, sizeof *d);
}

int dist_agree(dist *d, int err) {
    int first = err ? d->rank : d->world;
#ifdef FABLE_MPI
    if (d->world > 1) MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
#endif
    return first < d->world ? first + 1 : 0;
}

int dist_agree_why(dist *d, int err, char *why, size_t cap) {
    const int bad = dist_agree(d, err);
    if (!bad || cap == 0) return bad;
    if (d->rank == bad - 1) snprintf(why, cap, "%s", fb_errmsg());
#ifdef FABLE_MPI
    if (d->world > 1) MPI_Bcast(why, (int)cap, MPI_CHAR, bad - 1, MPI_COMM_WORLD);
#endif
    why[cap - 1] = 0;
    return bad;
}

unsigned dist_or(dist *d, unsigned bits) {
#ifdef FABLE_MPI
    if (d->world > 1) MPI_Allreduce(MPI_IN_PLACE, &bits, 1, MPI_UNSIGNED, MPI_BOR, MPI_COMM_WORLD);
#endif
    return bits;
}

void dist_allgather(dist *d, const void *mine, void *all, size_t bytes) {
#ifdef FABLE_MPI
    if (d->world > 1) {
        MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
        return;
    }
#endif
    memmove(all, mine, bytes);
}

int dist_same(dist *d, uint64_t h) {
    if (d->world == 1) return 0;
    uint64_t *all = malloc(d->world * sizeof *all);
    if (!all) fb_die("out of memory");
    dist_allgather(d, &h, all, sizeof h);
    int bad = 0;
    for (int r = 1; r < d->world && !bad; r++)
        if (all[r] != all[0]) bad = r + 1;
    free(all);
    return bad;
}

void dist_merge(dist *d, double *x, int n) {
#ifdef FABLE_MPI
    if (d->world > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
    (void)d, (void)x, (void)n;
}

/* ---- gradients ---------------------------------------------------------------------- */
#ifdef FABLE_MPI
/* Slice j of a bucket of nb floats: [j·nb/N, (j+1)·nb/N). */
static size_t slice_lo(size_t nb, int N, int j) { return nb * (size_t)j / (size_t)N; }

/* One bucket, in place on every rank: b ← Σ_r b_r, each element summed in rank order. */
static void reduce_bucket(dist *d, float *b, size_t nb) {
    const int N = d->world, me = d->rank;
    int sc[N], sd[N], rc[N], rd[N];
    const size_t lo = slice_lo(nb, N, me), len = slice_lo(nb, N, me + 1) - lo;
    for (int j = 0; j < N; j++) {
        sd[j] = (int)slice_lo(nb, N, j);
        sc[j] = (int)(slice_lo(nb, N, j + 1) - slice_lo(nb, N, j));
        rc[j] = (int)len;             /* my slice, from every rank j */
        rd[j] = (int)(len * (size_t)j);
    }
    double t0 = fb_now();
    MPI_Alltoallv(b, sc, sd, MPI_FLOAT, d->recv, rc, rd, MPI_FLOAT, MPI_COMM_WORLD); /* reduce-scatter, part 1 */
    double t1 = fb_now();
    float *out = b + lo;              /* part 2: Σ over ranks in rank order, the same bracketing everywhere */
    memcpy(out, d->recv, len * sizeof(float));
    for (int r = 1; r < N; r++) {
        const float *x = d->recv + len * (size_t)r;
        for (size_t i = 0; i < len; i++) out[i] += x[i];
    }
    double t2 = fb_now();
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b, sc, sd, MPI_FLOAT, MPI_COMM_WORLD);
    d->t_comm += (t1 - t0) + (fb_now() - t2);
    d->t_sum += t2 - t1;
    d->bytes += 2.0 * (double)(nb - len) * sizeof(float); /* sent: others' slices, then mine to each */
}
#endif

int dist_reduce_grads(dist *d, step_ctx *s) {
    d->t_wait = d->t_copy = d->t_comm = d->t_sum = d->bytes = 0;
    if (d->world == 1) return 0;
#ifdef FABLE_MPI
    eng *e = s->e;
    if (!d->bucket) {
        d->bucket_floats = s->n < DIST_BUCKET_FLOATS ? s->n : DIST_BUCKET_FLOATS;
        const size_t slice = d->bucket_floats / (size_t)d->world + 1;
        d->bucket = fb_alloc(d->bucket_floats * sizeof(float));
        d->recv = fb_alloc(slice * (size_t)d->world * sizeof(float));
        if (!d->bucket || !d->recv) return fb_err("out of memory for the gradient all-reduce buffers");
    }
    e->sync(e); /* the backward pass ends here: what follows is the reduction's own time */
    /* A barrier, so that t_comm measures moving bytes and t_wait the ranks' imbalance (without
     * it, the first collective absorbs the wait); it costs one latency per update. */
    double t0 = fb_now();
    MPI_Barrier(MPI_COMM_WORLD);
    d->t_wait = fb_now() - t0;
    for (size_t off = 0; off < s->n; off += d->bucket_floats) {
        const size_t nb = s->n - off < d->bucket_floats ? s->n - off : d->bucket_floats;
        t0 = fb_now();
        e->download(e, d->bucket, s->grads + off, nb * sizeof(float));
        d->t_copy += fb_now() - t0;
        reduce_bucket(d, d->bucket, nb);
        t0 = fb_now();
        e->upload(e, s->grads + off, d->bucket, nb * sizeof(float));
        d->t_copy += fb_now() - t0;
    }
    return 0;
#else
    (void)s;
    return fb_err("a job of %d processes in a build without MPI", d->world);
#endif
}
