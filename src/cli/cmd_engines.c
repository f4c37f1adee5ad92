/* fable engines — the engines compiled into this build, and whether each can run here. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/engine.h"

static const char *usage =
    "usage: fable engines [--json]\n"
    "Lists the engines of this build (the names --engine takes), whether each can run on this machine,\n"
    "and why not when it cannot. Exit status 0.\n";

int cmd_engines(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv);
    if (cli_flag(&a, "--help")) { fputs(usage, stdout); return 0; }
    int json = cli_flag(&a, "--json");
    if (cli_finish(&a)) return 2;
    if (json) printf("[");
    int first = 1;
    for (const eng_backend *const *b = eng_list(); *b; b++) {
        char why[1024] = "";
        int ok = (*b)->available(why, sizeof why);
        if (json) {
            char esc[2100];
            size_t o = 0;
            for (const char *p = why; *p && o + 3 < sizeof esc; p++) {
                if (*p == '"' || *p == '\\') esc[o++] = '\\';
                esc[o++] = *p;
            }
            esc[o] = 0;
            printf("%s{\"name\":\"%s\",\"available\":%s,\"why\":\"%s\"}", first ? "" : ",", (*b)->name,
                   ok ? "true" : "false", esc);
        } else {
            printf("%-5s %-13s %s\n", (*b)->name, ok ? "available" : "not available", (*b)->about);
            if (!ok) printf("      why: %s\n", why);
        }
        first = 0;
    }
    if (json) printf("]\n");
    return 0;
}
