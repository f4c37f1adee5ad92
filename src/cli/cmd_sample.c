/* placeholder */
#include <stdio.h>

#include "cli/cli.h"

int cmd_sample(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "fable sample: not available in this build yet\n");
    return 2;
}
