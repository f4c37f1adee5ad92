/* fable cuda engine — the kernels of engine.h (cuda_layers.cu) and the KV-cache decoder
 * (cuda_infer.cu), wired into an engine's function table. */
#ifndef FABLE_CUDA_LAYERS_CUH
#define FABLE_CUDA_LAYERS_CUH

#include "fable/engine.h"

/* Fills the kernel entries of e (everything but memory, streams and timers). */
void cu_layers_install(eng *e);
/* Fills e->infer_open / infer_step / infer_close. */
void cu_infer_install(eng *e);

#endif
