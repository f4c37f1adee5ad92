/* fable cuda engine — the one entry point of libfable_cuda.so, shared by the loader
 * (cuda_loader.c, plain C) and the engine (cuda_engine.cu). */
#ifndef FABLE_CUDA_PLUGIN_H
#define FABLE_CUDA_PLUGIN_H

#include "fable/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Changes whenever struct eng, this table or the probe structs change: a stale .so is refused. */
#define FABLE_CUDA_ABI ((int)(2000 + sizeof(eng) + sizeof(fable_cuda_dispatch) + sizeof(fable_cuda_weights)))

/* `fable probe dispatch --engine cuda` (cuda_probe.cu): what starting the smallest kernel
 * costs, one launch at a time against a replayed CUDA graph. Times in µs, medians. */
typedef struct {
    int nkern;                   /* kernels per batch (launched one by one, or one graph) */
    double launch_us;            /* host time to enqueue one empty kernel (a batch back to back) */
    double launch_gap_us;        /* device time per kernel in that batch (events around it) */
    double launch_sync_us;       /* one empty kernel + stream synchronize: the round trip */
    double capture_us;           /* capture the batch as a graph + instantiate it (host, once) */
    double graph_launch_us;      /* host time to launch the batch's graph */
    double graph_gap_us;         /* device time per kernel node in the replay (events around it) */
    double graph_sync_us;        /* a one-kernel graph: launch + synchronize */
} fable_cuda_dispatch;

/* `fable probe weights --engine cuda` (cuda_probe.cu): can a layer's weights change without
 * capturing its product again? Y[M,N] = X[M,K]·Wᵀ (W [N,K]) through the engine's cuBLASLt
 * product in the engine's precision, captured once as a CUDA graph. The caller fills name,
 * M, N, K of each row; the probe fills the rest. Errors: max |Y − ref| / max |ref| over
 * sampled rows, ref a double-precision product of the operands as the GPU sees them. */
typedef struct {
    char name[40];
    int M, N, K;
    double err_first;            /* the graph's output against X·W0ᵀ */
    double err_inplace;          /* W1 written over W0 (same address), the graph replayed as it was */
    double moved;                /* max |Y1 − Y0| / max |Y0|: the replay followed the new weights */
    double err_newaddr;          /* W2 at another address, the graph updated (cudaGraphExecUpdate) */
    double plain_us;             /* the product launched directly, + synchronize */
    double replay_us;            /* the captured product: graph launch + synchronize */
    double write_us;             /* writing new weights in place (device copy, as AdamW does) */
    double update_us;            /* capture again + cudaGraphExecUpdate (weights at a new address) */
    double recapture_us;         /* capture again + instantiate a new executable graph */
} fable_cuda_wrow;
typedef struct {
    int n;
    fable_cuda_wrow r[8];
    char precision[8];           /* "bf16" or "fp32" operands */
} fable_cuda_weights;

typedef struct {
    int abi;                                 /* FABLE_CUDA_ABI of the build */
    int (*probe)(char *why, size_t cap);      /* 1 = a usable GPU; else 0 and why not */
    eng *(*create)(const eng_opts *o);        /* NULL + fb_err */
    /* probes (0, or -1 + fb_err); quick: fewer repetitions */
    int (*probe_dispatch)(const eng_opts *o, int quick, fable_cuda_dispatch *r);
    int (*probe_weights)(const eng_opts *o, int quick, fable_cuda_weights *r);
} fable_cuda_api;

const fable_cuda_api *fable_cuda_entry(void);

/* In every fable binary (cuda_loader.c): the probes through the shared object, or -1 + fb_err
 * saying plainly what is missing (the .so, the CUDA libraries, a GPU). */
int eng_cuda_probe_dispatch(const eng_opts *o, int quick, fable_cuda_dispatch *r);
int eng_cuda_probe_weights(const eng_opts *o, int quick, fable_cuda_weights *r);

#ifdef __cplusplus
}
#endif
#endif
