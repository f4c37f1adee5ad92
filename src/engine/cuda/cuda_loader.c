/* fable cuda engine — its registry entry, built into every fable binary (plain C, no CUDA
 * headers). The engine itself is a shared object, libfable_cuda.so, that `make` builds with
 * nvcc when the CUDA toolkit is found ($CUDA_HOME or /usr/local/cuda). It is loaded on first
 * use, so fable starts and runs its other engines on a machine without CUDA libraries or a
 * GPU; there `--engine cuda` says which of the three is missing: the shared object (a build
 * without nvcc), the CUDA libraries it needs (cuBLASLt, the driver), or a GPU.
 *
 * Where it is looked for: $FABLE_CUDA_LIB, else libfable_cuda.so in the directory of the
 * running binary or in build/ beside it, or in up to four parent directories of it (the test
 * binaries live in build/rel/tests/...). The shared object resolves fb_err and fb_now from
 * the binary (linked with -rdynamic). */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/cuda/cuda_plugin.h"
#include "fable/util.h"

static void *lib;
static const fable_cuda_api *api;
static char load_error[8192];

static int try_open(const char *path) {
    if (access(path, R_OK)) return 0;
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error, "%s cannot be loaded: %s%s", path, why ? why : "?",
                 why && strstr(why, "libcu") ? " (the CUDA libraries are not installed or not on LD_LIBRARY_PATH)" : "");
    }
    return 1; /* found: stop looking, loaded or not */
}

static int load(void) {
    if (api) return 1;
    if (load_error[0]) return 0;
    const char *env = getenv("FABLE_CUDA_LIB");
    int found = 0;
    if (env && *env) found = try_open(env);
    char dir[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (!found && n > 0) {
        dir[n] = 0;
        for (int up = 0; up <= 5 && !found; up++) {
            char *slash = strrchr(dir, '/');
            if (!slash) break;
            *slash = 0;
            snprintf(path, sizeof path, "%s/libfable_cuda.so", dir);
            found = try_open(path);
            if (!found) {
                snprintf(path, sizeof path, "%s/build/libfable_cuda.so", dir);
                found = try_open(path);
            }
        }
    }
    if (!found) {
        snprintf(load_error, sizeof load_error,
                 "this fable was built without CUDA (no libfable_cuda.so beside the binary; `make` builds it when "
                 "nvcc is found in $CUDA_HOME or /usr/local/cuda)");
        return 0;
    }
    if (!lib) return 0;
    const fable_cuda_api *(*entry)(void) = (const fable_cuda_api *(*)(void))dlsym(lib, "fable_cuda_entry");
    const fable_cuda_api *a = entry ? entry() : NULL;
    if (!a || a->abi != FABLE_CUDA_ABI) {
        snprintf(load_error, sizeof load_error, "libfable_cuda.so does not match this fable binary (rebuild both with make)");
        return 0;
    }
    api = a;
    return 1;
}

static int cuda_available(char *why, size_t cap) {
    if (!load()) {
        size_t l = strlen(load_error) < cap ? strlen(load_error) : cap - 1;
        memcpy(why, load_error, l);
        why[l] = 0;
        return 0;
    }
    return api->probe(why, cap);
}

static eng *cuda_create(const eng_opts *o) {
    char why[1024];
    if (!cuda_available(why, sizeof why)) {
        fb_err("engine 'cuda' cannot run on this machine: %s", why);
        return NULL;
    }
    return api->create(o);
}

int eng_cuda_probe_dispatch(const eng_opts *o, int quick, fable_cuda_dispatch *r) {
    char why[1024];
    if (!cuda_available(why, sizeof why)) return fb_err("the cuda probes cannot run on this machine: %s", why);
    return api->probe_dispatch(o, quick, r);
}

int eng_cuda_probe_weights(const eng_opts *o, int quick, fable_cuda_weights *r) {
    char why[1024];
    if (!cuda_available(why, sizeof why)) return fb_err("the cuda probes cannot run on this machine: %s", why);
    return api->probe_weights(o, quick, r);
}

const eng_backend eng_backend_cuda = {"cuda", "NVIDIA GPU: bf16 tensor-core matmuls (fp32 master weights), fused kernels",
                                      cuda_available, cuda_create};
