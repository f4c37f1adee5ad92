/* fable — one binary, many subcommands (SPEC §4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"data", cmd_data, "obtain TinyStories and the Llama-2 tokenizer (download or local paths)"},
    {"tokenizer", cmd_tokenizer, "tokenizer train: train a BPE vocabulary (.model + tokenizer.bin)"},
    {"tokenize", cmd_tokenize, "text (JSON / <|endoftext|> / lines) -> token shards"},
    {"encode", cmd_encode, "text on stdin -> ids, one line per input line"},
    {"decode", cmd_decode, "ids on stdin -> text"},
    {"train", cmd_train, "train or resume a model"},
    {"eval", cmd_eval, "mean loss and perplexity of a model on a token shard"},
    {"sample", cmd_sample, "generate text from a checkpoint or a llama2.c .bin"},
    {"export", cmd_export, "checkpoint -> llama2.c .bin (+ tokenizer.bin)"},
    {"bench", cmd_bench, "benchmark training steps and kernels"},
    {"probe", cmd_probe, "characterise the machine and engine: weights, counters, sched, roofline, cache, dispatch"},
    {"engines", cmd_engines, "list the engines of this build and whether each can run here"},
    {"plot", cmd_plot, "loss curves of training logs as an SVG chart"},
    {"dash", cmd_dash, "live terminal dashboard: launch a training run, or follow a log"},
    {"info", cmd_info, "print a model's configuration and parameter count"},
};

/* ---- how idle OpenMP threads wait (issue 21: steady under contention) -----------------
 * libgomp's default is to spin up to 300,000 rounds (milliseconds) at every barrier and
 * between parallel regions before it sleeps. On an idle machine that makes the next region
 * start in ~3 us. Beside another CPU-bound process it is the cause of a 3-4x slowdown: the
 * thread that arrives first spins through its time slice while the partner it waits for sits
 * descheduled behind the other process (bench/RESULTS.md, 2026-12-05). A short spin (1000
 * rounds) keeps the idle speed (a warm region still starts in ~3 us: `fable probe dispatch`)
 * and sleeps soon enough to give the CPU back; passive waiting (no spin) costs ~20 us a region.
 * libgomp reads its settings once, in its constructor, before main() runs, and even a
 * .preinit_array function is too early: libc's own start-up then resets the environment to
 * the one the process was given. So fable sets GOMP_SPINCOUNT and executes itself again
 * (~30 ms, once). A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins, and no exec happens;
 * where /proc/self/exe cannot be executed, fable runs on with libgomp's default. */
#define FABLE_GOMP_SPINCOUNT "1000"

static void omp_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", FABLE_GOMP_SPINCOUNT, 0) != 0) return;
    execv("/proc/self/exe", argv);
}

static void usage(FILE *f) {
    fprintf(f, "usage: fable <command> [options]   (fable <command> --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    omp_wait_policy(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "fable: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
