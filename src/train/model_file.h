/* fable — open a model from any file fable understands (llama2.c .bin or checkpoint). */
#ifndef FABLE_MODEL_FILE_H
#define FABLE_MODEL_FILE_H

#include "fable/model.h"

/* Load weights from a llama2.c version-0 .bin or a fable checkpoint (detected by content). */
int model_file_load(model *m, const char *path);
/* Set the thread count for the process (0 = all cores). */
void model_file_threads(int threads);

#endif
