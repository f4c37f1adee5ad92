/* fable — data-parallel training across processes (SPEC §8): `mpirun -np N fable train ...`.
 *
 * Every rank holds the whole model and optimizer state, runs K micro-steps of its own data,
 * and before the optimizer the N ranks' gradient sums are added together, so that every rank
 * applies the same AdamW update to the same weights (grad_scale 1/(N·K)). The job is then the
 * same computation as one process with N·K micro-steps per update, to rounding:
 *
 *   one process, accum N·K:  g = ((g_0 + g_1) + g_2) + ... + g_{NK-1}        (engine order)
 *   N ranks, accum K each:   g = G_0 + G_1 + ... + G_{N-1},  G_r = Σ_k g_{rK+k} (engine order)
 *
 * The sum over ranks is done in that fixed order (rank 0 first) by every rank, never in the
 * order a network delivers messages: MPI_Allreduce's association is implementation-defined
 * (it depends on the algorithm Open MPI picks for the size and N), so it is not used on
 * gradients. Instead, per bucket of 16 MB: an all-to-all hands rank j the j-th slice of every
 * rank's bucket (a reduce-scatter), rank j sums its slice in rank order, and an all-gather
 * hands every rank every summed slice. Each rank sends and receives 2(N-1)/N of the bucket,
 * as a ring all-reduce does. Result: a given N is bit-identical run to run; N ranks × K and
 * 1 × N·K agree to rounding (the bracketing above), not bit for bit.
 *
 * Data: every rank draws the global window sequence (N·K·B windows per update) and keeps its
 * slice (micro-steps r·K .. r·K+K-1), so the one loader state in a checkpoint describes the
 * whole job. Stop decisions (signals, --time-limit, --stop-after, NaN, an error on one rank)
 * are agreed with one small collective, so that no rank waits in a collective for a rank
 * that has left. Rank 0 alone writes checkpoints, telemetry, samples and progress lines.
 *
 * Built with MPI when the Makefile finds mpicc (-DFABLE_MPI); otherwise, and whenever the
 * process was not launched by mpirun (no OMPI_COMM_WORLD_SIZE / PMIX_RANK in the
 * environment), every function here is the single-process version: rank 0 of 1, no MPI call.
 * A GPU engine would swap the transport (NCCL) behind the same calls; see docs/distributed.md.
 */
#ifndef FABLE_DIST_H
#define FABLE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "fable/step.h"

typedef struct {
    int rank, world;        /* this process, and the number of processes (1 without mpirun) */
    int local_world;        /* processes on this machine */
    int mpi;                /* MPI_Init was called here (and MPI_Finalize is owed) */
    /* ---- gradient reduction: scratch and the last update's measurements ---- */
    float *bucket;          /* [bucket_floats] this rank's bucket, then the summed bucket */
    float *recv;            /* [world, slice] every rank's slice of the bucket */
    size_t bucket_floats;
    double t_wait;          /* seconds waiting for the slowest rank to finish its backward (a barrier) */
    double t_copy;          /* seconds moving gradients engine ↔ host (last reduction) */
    double t_comm;          /* seconds inside the all-to-all and all-gather (last reduction) */
    double t_sum;           /* seconds adding the slices */
    double bytes;           /* bytes each rank sent in the last reduction */
} dist;

/* 1 if this binary was built with MPI support. */
int dist_built(void);
/* Join the job: MPI_Init when launched under mpirun (environment), else rank 0 of 1.
 * 0, or -1 + fb_err. */
int dist_init(dist *d);
void dist_free(dist *d);       /* MPI_Finalize if dist_init called MPI_Init */

/* Collective agreement, every rank must call it at the same point. Returns 0 when no rank
 * passed err != 0; else 1 + the lowest rank that did. */
int dist_agree(dist *d, int err);
/* dist_agree, and the first failing rank's fb_errmsg() copied into why[0..cap) on every rank
 * (cap must be the same on every rank): rank 0 can then print it itself. A failing rank's own
 * stderr may never reach the user, because mpirun ends the job when rank 0 exits non-zero. */
int dist_agree_why(dist *d, int err, char *why, size_t cap);
/* Bitwise OR of every rank's bits (stop reasons). */
unsigned dist_or(dist *d, unsigned bits);
/* Is h the same on every rank? 0 if so; else 1 + the lowest rank whose h differs from rank 0's. */
int dist_same(dist *d, uint64_t h);
/* all[r·bytes ..] = rank r's mine[0..bytes), on every rank. */
void dist_allgather(dist *d, const void *mine, void *all, size_t bytes);
/* x[i] = Σ_r x_r[i] for arrays in which at most one rank holds a non-zero x_r[i] (results
 * split across ranks): exact, hence the same as computing everything on one rank. */
void dist_merge(dist *d, double *x, int n);

/* Sum the gradients of every rank into every rank, in rank order (see above); waits for the
 * engine's queued work. Fills d->t_wait, t_copy, t_comm, t_sum, bytes. 0, or -1 + fb_err. */
int dist_reduce_grads(dist *d, step_ctx *s);

#endif
