/* fable eval — placeholder until its issue lands; owned by the module that implements it. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "fable eval: not available in this build yet\n");
    return 2;
}
