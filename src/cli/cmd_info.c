/* fable info — a model's shape and parameter count (preset, llama2.c .bin, or checkpoint). */
#include <stdio.h>

#include "cli/cli.h"
#include "fable/model.h"
#include "train/model_file.h"

int cmd_info(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) {
        puts("usage: fable info (--preset NAME | --model FILE)");
        return 0;
    }
    const char *preset = cli_str(&a, "--preset", NULL);
    const char *path = cli_str(&a, "--model", NULL);
    if (cli_finish(&a)) return 2;
    model_config c;
    model m = {0};
    if (preset) {
        if (model_preset(preset, &c)) return cli_fail(&a, NULL);
    } else if (path) {
        if (model_file_load(&m, path)) return cli_fail(&a, NULL);
        c = m.cfg;
    } else {
        return cli_fail(&a, "give --preset NAME or --model FILE");
    }
    printf("dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d, %s classifier\n",
           c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
           c.tied ? "tied" : "untied");
    printf("parameters %zu\n", model_num_params(&c));
    printf("training FLOPs per token at seq_len %d: %.4g\n", c.seq_len, model_flops_per_token(&c, c.seq_len));
    model_free(&m);
    return 0;
}
