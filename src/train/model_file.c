/* fable — model loading by content: a fable checkpoint (magic FBLCKPT1) or a llama2.c .bin. */
#include "train/model_file.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "fable/ckpt.h"
#include "fable/util.h"

void openblas_set_num_threads(int);

void model_file_threads(int threads) {
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

int model_file_load(model *m, const char *path) {
    memset(m, 0, sizeof *m);
    if (!ckpt_is_checkpoint(path)) {
        if (ckpt_magic_damaged(path))
            return fb_err("%s: corrupt checkpoint: its magic number is damaged (a few bits differ from \"%s\")", path,
                          CKPT_MAGIC);
        return model_load_llama2c(m, path);
    }
    ckpt_header h;
    float *params = NULL;
    if (ckpt_load(path, &h, &params, NULL, NULL)) return -1;
    ckpt_cfg_unpack(h.cfg, &m->cfg);
    m->data = params;
    model_params_view(&m->cfg, m->data, &m->w);
    return 0;
}
