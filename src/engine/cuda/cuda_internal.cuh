/* fable cuda engine — internals shared by its .cu files.
 *
 * Precision: every kernel that touches "act" buffers (engine.h) is a template on the act
 * type A: float (--precision fp32: fp32 everywhere, cuBLASLt without TF32) or __nv_bfloat16
 * (bf16: bf16 matmul operands and activations, fp32 accumulation). Residual streams,
 * rstd, lse, parameters, gradients and moments are always fp32.
 *
 * Determinism: no floating-point atomics anywhere; every reduction runs in a fixed order
 * (two-pass reductions with partials in fixed slots), so results are bit-identical from
 * run to run on the same GPU (resume is bit-exact).
 *
 * Queues: `main` runs the step; `side` runs the weight gradients (attn_dw, ffn_dw) when
 * FABLE_CUDA_DW_STREAM is not 0, ordered against main by events (cuda_engine.cu tracks
 * which buffers pending side work reads and writes, and makes main wait only when it
 * touches one of them).
 */
#ifndef FABLE_CUDA_INTERNAL_CUH
#define FABLE_CUDA_INTERNAL_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "engine/cuda/cuda_plugin.h"
#include "fable/engine.h"

/* Fatal CUDA errors end the program with the call, the file and the reason (a kernel that
 * faults leaves the context unusable, so there is nothing to recover). */
#define CU_CHECK(call)                                                                          \
    do {                                                                                        \
        cudaError_t err_ = (call);                                                              \
        if (err_ != cudaSuccess) cu_fatal(__FILE__, __LINE__, #call, cudaGetErrorString(err_));  \
    } while (0)
#define CU_LAUNCHED()                                      \
    do {                                                   \
        CU_CHECK(cudaGetLastError());                      \
        if (cu_prof_on) cu_prof_launch(__func__, __LINE__); \
    } while (0)
#define LT_CHECK(call)                                                                          \
    do {                                                                                        \
        cublasStatus_t st_ = (call);                                                            \
        if (st_ != CUBLAS_STATUS_SUCCESS) cu_fatal(__FILE__, __LINE__, #call, cublasLtGetStatusString(st_)); \
    } while (0)
extern "C" void cu_fatal(const char *file, int line, const char *what, const char *why) __attribute__((noreturn));

/* FABLE_CUDA_PROFILE=1 (cuda_profile.cu): an event after every launch and product, a table
 * of device time per launch site at the engine's end. Forces one stream and no graphs. */
extern int cu_prof_on;
int cu_prof_start(cudaStream_t s);
void cu_prof_launch(const char *fn, int line);
void cu_prof_mark(const void *key, int line, const char *name, double flops);
void cu_prof_flush(int end_epoch);
void cu_prof_report(void);

typedef __nv_bfloat16 bf16;

/* act element <-> float */
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <typename A> __device__ __forceinline__ A from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16(x); }

static inline int cdiv(long a, long b) { return (int)((a + b - 1) / b); }

/* ---- attention (cuda_attn.cu; kernels in cuda_attn_{v2,tc,simple}.cu) ---------------------
 * Causal scaled-dot-product attention with GQA, flash-style (no T×T matrix in memory).
 * Layouts (row n = b·T + t): q [N, NH·HS], k, v [N, NKV·HS] (heads side by side within a row),
 * att [N, NH·HS], lse [B, NH, T] (natural log of Σ_{t'≤t} exp(q·k/√HS)), all act type A except
 * lse. Query head h reads kv head h / (NH/NKV).
 * fwd: att, lse. bwd (from da = dL/datt): dq [N, NH·HS], dk, dv [N, NKV·HS] (act A; dk and dv
 * summed over the query heads of their group in a fixed order), before any inverse RoPE;
 * delta [B, NH, T] fp32 is scratch (rowsum(da⊙att)). Every output element is written. */
template <typename A>
void cu_attn_fwd(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, A *att, float *lse);
template <typename A>
void cu_attn_bwd(cudaStream_t s, const eng_dims *d, const A *q, const A *k, const A *v, const A *att,
                 const float *lse, const A *da, A *dq, A *dk, A *dv, float *delta);

/* ---- engine state (cuda_engine.cu) ------------------------------------------------------- */
#define CU_MAX_REGIONS 8
#define CU_MAX_PENDING 64
#define CU_DYCOPIES 4

/* A range of engine memory an operation reads or writes. */
typedef struct {
    const void *p;
    size_t bytes;
} cu_span;

/* Weight-gradient work queued on the side stream and not yet known to be finished. */
typedef struct {
    cu_span reads[8], writes[8];
    int nr, nw;
    cudaEvent_t done;
} cu_pending;

/* A timer mark on a stream: from here on, work belongs to (rec, ph). */
typedef struct {
    int rec, ph;
    cudaEvent_t ev;
} cu_mark;

/* A side-stream interval: dW work of timer record rec between events a and b. */
struct cu_iv {
    int rec;
    cudaEvent_t a, b;
};

/* A micro-step recorded as a CUDA graph (cu_run): its executable graph, the timer marks and
 * side-stream intervals it records (events owned by it), re-registered at each launch. */
typedef struct {
    uint64_t key;
    int seen, failed;
    cudaGraphExec_t exec;
    cu_mark *marks;
    int nmarks;
    struct cu_iv *iv;
    int niv;
    cudaEvent_t *evs;
    int nevs, cap_evs;
} cu_graph;
#define CU_MAX_GRAPHS 64

typedef struct {
    int dev;
    cudaDeviceProp prop;
    int is_bf16;                     /* precision: act = bf16 */
    int dw_side;                     /* weight gradients on the side stream */
    cudaStream_t main, side;
    cublasLtHandle_t lt;
    void *ws_main, *ws_side;         /* cuBLASLt workspaces, one per stream */
    size_t ws_bytes;
    /* parameters and their bf16 mirrors */
    struct { float *f32; bf16 *b16; size_t n; } region[CU_MAX_REGIONS];
    int nregion;
    /* hazards between the main stream and pending side-stream work */
    cu_pending pend[CU_MAX_PENDING];
    int npend;
    /* timers */
    cu_mark *marks;                  /* main-stream phase marks, in order */
    int nmarks, cap_marks;
    struct cu_iv *side_iv;           /* side-stream dW intervals */
    int nside, cap_side;
    cudaEvent_t *evpool;
    int nev, cap_ev, ev_used;
    int cur_rec, cur_ph;
    /* scratch, grown on demand (never shrunk); one owner per slot */
    void *scratch[16];
    size_t scratch_bytes[16];
    /* bf16 copies of residual gradients dy (ring), keyed by the fp32 source */
    const float *dy_src[CU_DYCOPIES];
    bf16 *dy_copy[CU_DYCOPIES];
    int dy_fresh[CU_DYCOPIES];       /* filled by the producer of dy, not yet used by make = 1 */
    size_t dy_cap;
    int dy_next;
    float *host_tmp;                 /* pinned staging for act conversions */
    size_t host_tmp_bytes;
    /* recorded micro-steps (FABLE_CUDA_GRAPH=0: none) */
    int use_graphs;
    cu_graph graph[CU_MAX_GRAPHS];
    int ngraph;
    cu_graph *capturing;             /* the graph being recorded, or NULL */
} cu_state;

enum { /* scratch slots */
    CU_SCR_SUMSQ = 0, CU_SCR_NORM_DW, CU_SCR_DELTA, CU_SCR_CLS_LOGITS, CU_SCR_CLS_DL, CU_SCR_CLS_DX,
    CU_SCR_SORT_KEYS, CU_SCR_SORT_VALS, CU_SCR_SORT_TMP, CU_SCR_LOSS, CU_SCR_DGATE, CU_SCR_XN32,
    CU_SCR_COUNT
};

static inline cu_state *cu_st(eng *e) { return (cu_state *)e->impl; }
/* The engine (NULL + fb_err), as `--engine cuda` makes it; the probes (cuda_probe.cu) use it too. */
eng *cu_create(const eng_opts *o);
int cu_probe_dispatch(const eng_opts *o, int quick, fable_cuda_dispatch *r);
int cu_probe_weights(const eng_opts *o, int quick, fable_cuda_weights *r);
void *cu_scratch(cu_state *st, int slot, size_t bytes);
/* The bf16 mirror of parameter memory p (NULL if p is not in an alloc_params region). */
const bf16 *cu_mirror(cu_state *st, const float *p);
/* The main stream waits for pending side work that conflicts with these writes/reads. */
void cu_main_hazard(cu_state *st, const cu_span *writes, int nw, const cu_span *reads, int nr);
/* Queue weight-gradient work: returns the stream to launch it on (side or main) and the
 * cuBLASLt workspace for it; call cu_dw_end with what it read and wrote after launching. */
cudaStream_t cu_dw_begin(cu_state *st, void **ws);
void cu_dw_end(cu_state *st, const cu_span *writes, int nw, const cu_span *reads, int nr);
/* The act-typed view of a residual gradient dy [n] for matmuls: dy itself in fp32 mode; in
 * bf16 mode a bf16 copy made by the first caller after dy changed (make = 1 converts). */
const void *cu_dy_act(cu_state *st, const float *dy, size_t n, int make);
/* For the kernel about to write residual gradient dy [n]: the bf16 copy it should write beside
 * it (then the first cu_dy_act(make = 1) uses it instead of converting), or NULL in fp32 mode. */
bf16 *cu_dy_fill(cu_state *st, const float *dy, size_t n);

/* ---- matrix products (cuda_gemm.cu) -------------------------------------------------------
 * Row-major C[M,N] (D) = alpha·op(A)·op(B) + beta·C, op(A) [M,K], op(B) [K,N]; ta/tb: the
 * operand is stored transposed (A as [K,M], B as [N,K]). Types: CU_F32 or CU_BF16 for A and
 * B (equal), C/D (equal); fp32 accumulation (no TF32). C may differ from D (residual adds). */
enum { CU_F32 = 0, CU_BF16 = 1 };
void cu_gemm(cu_state *st, cudaStream_t s, void *ws, int ta, int tb, int M, int N, int K, const void *A, int lda,
             const void *B, int ldb, int ab_type, const void *C, void *D, int ldc, int cd_type, float alpha,
             float beta);

/* ---- element-wise and reduction kernels (cuda_kernels.cu) ---- */
template <typename A> void cu_rmsnorm_fwd(cudaStream_t s, int N, int D, const float *x, const float *w, A *out, float *rstd);
/* dx = base + rstd·(g⊙w − x̂·mean(g⊙w⊙x̂)) (base may be NULL); dw (+)= Σ_n g⊙x̂ (scratch: partials);
 * dx16: also a bf16 copy of dx (cu_dy_fill), or NULL */
void cu_rmsnorm_bwd(cu_state *st, cudaStream_t s, int N, int D, const float *x, const float *w, const float *rstd,
                    const float *g, const float *base, float *dx, bf16 *dx16, float *dw, int acc);
template <typename A> void cu_rope(cudaStream_t s, A *x, int N, int T, int heads, int HS, const float *rope, int inverse);
template <typename A> void cu_swiglu_fwd(cudaStream_t s, size_t n, const A *h1, const A *h3, A *gate);
template <typename A> void cu_swiglu_bwd(cudaStream_t s, size_t n, const A *dgate, const A *h1, const A *h3, A *dh1, A *dh3);
void cu_to_bf16(cudaStream_t s, size_t n, const float *src, bf16 *dst);
void cu_to_f32(cudaStream_t s, size_t n, const bf16 *src, float *dst);
void cu_embed_fwd(cudaStream_t s, int N, int D, float *x, const float *emb, const int32_t *tok);
void cu_embed_bwd(cu_state *st, cudaStream_t s, int N, int D, int V, float *demb, const float *dx, const int32_t *tok);
void cu_sumsq(cu_state *st, cudaStream_t s, const float *g, size_t n, double *out);
/* *out = Σ_i x[i] over n floats, in double, fixed order */
void cu_sum(cudaStream_t s, const float *x, int n, double *out);
void cu_adamw(cudaStream_t s, float *p, bf16 *mirror, const float *g, float *m, float *v, size_t n,
              const eng_adamw_args *a, const double *gsumsq);
/* per row of logits [R, V] (fp32 or bf16): loss = lse − l[target] (0 for target < 0); with dl
 * != NULL also dl = scale·(softmax − onehot) in act type A; dl may be the logits (in place) */
template <typename L, typename A> void cu_softmax_xent(cudaStream_t s, int R, int V, const L *logits,
                                                       const int32_t *tgt, float scale, float *loss, A *dl);

#endif
