/* fable cuda engine — the one entry point of libfable_cuda.so, shared by the loader
 * (cuda_loader.c, plain C) and the engine (cuda_engine.cu). */
#ifndef FABLE_CUDA_PLUGIN_H
#define FABLE_CUDA_PLUGIN_H

#include "fable/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Changes whenever struct eng or this table changes: a stale .so is refused. */
#define FABLE_CUDA_ABI ((int)(1000 + sizeof(eng)))

typedef struct {
    int abi;                                 /* FABLE_CUDA_ABI of the build */
    int (*probe)(char *why, size_t cap);      /* 1 = a usable GPU; else 0 and why not */
    eng *(*create)(const eng_opts *o);        /* NULL + fb_err */
} fable_cuda_api;

const fable_cuda_api *fable_cuda_entry(void);

#ifdef __cplusplus
}
#endif
#endif
