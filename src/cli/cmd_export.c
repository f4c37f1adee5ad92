/* fable export — placeholder until its issue lands; owned by the module that implements it. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_export(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "fable export: not available in this build yet\n");
    return 2;
}
