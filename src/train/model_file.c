/* fable — model loading by content. */
#include "train/model_file.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "fable/util.h"

void openblas_set_num_threads(int);

void model_file_threads(int threads) {
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

int model_file_load(model *m, const char *path) {
    return model_load_llama2c(m, path);
}
