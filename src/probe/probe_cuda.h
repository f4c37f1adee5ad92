/* fable probe — the cuda engine's probes (`--engine cuda`): weights and dispatch, measured on
 * the GPU by the engine's shared object (src/engine/cuda/cuda_probe.cu), shaped and printed
 * here. On a machine without the shared object, the CUDA libraries or a GPU they fail with
 * fb_err saying which. */
#ifndef FABLE_PROBE_CUDA_H
#define FABLE_PROBE_CUDA_H

#include "engine/cuda/cuda_plugin.h"
#include "fable/probe.h"
#include "probe/probe_out.h"

int probe_cuda_weights(const probe_opts *o, const eng_opts *eo, fable_cuda_weights *r);
int probe_cuda_dispatch(const probe_opts *o, const eng_opts *eo, fable_cuda_dispatch *r);
void probe_cuda_weights_print(probe_out *po, const fable_cuda_weights *r);
void probe_cuda_dispatch_print(probe_out *po, const fable_cuda_dispatch *r);

#endif
