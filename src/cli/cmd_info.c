/* placeholder */
#include <stdio.h>

#include "cli/cli.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "fable info: not available in this build yet\n");
    return 2;
}
