/* fable CLI: subcommand entry points and a tiny option parser shared by all of them.
 *
 * Every subcommand is `int cmd_<name>(int argc, char **argv)` in its own file
 * src/cli/cmd_<name>.c; argv[0] is the subcommand name. Return 0 on success,
 * non-zero on error after printing "fable <cmd>: <message>" (cli_fail does that).
 *
 * Option parsing: options are `--name value` or `--name=value`; flags are `--name`.
 * Each getter marks what it consumed; cli_finish() rejects anything left over
 * (a misspelt option is an error, never silently ignored).
 */
#ifndef FABLE_CLI_H
#define FABLE_CLI_H

typedef struct {
    int argc;
    char **argv;
    unsigned char used[256];
    const char *cmd;
} cli_args;

void cli_args_init(cli_args *a, int argc, char **argv);
/* --name value; def when absent. */
const char *cli_str(cli_args *a, const char *name, const char *def);
long cli_int(cli_args *a, const char *name, long def);
double cli_float(cli_args *a, const char *name, double def);
/* 1 if the flag --name is present. */
int cli_flag(cli_args *a, const char *name);
/* All values of a repeated option (--input a --input b) and, if name is followed by
 * several non-option words, each of them (--input a b c). Returns the count (<= max). */
int cli_multi(cli_args *a, const char *name, const char **out, int max);
/* Positional (non-option) arguments not yet consumed, in order. */
int cli_positional(cli_args *a, const char **out, int max);
/* Error for any argument not consumed. Returns 0 or -1 (and prints). */
int cli_finish(cli_args *a);
/* Print "fable <cmd>: <fb_errmsg() or fmt>" to stderr; returns 1 (exit status). */
int cli_fail(const cli_args *a, const char *fmt, ...);
/* Was an option given at all (value or flag)? Does not consume it. */
int cli_has(const cli_args *a, const char *name);

/* The engine options every engine-running subcommand takes: --engine NAME (default
 * $FABLE_ENGINE, else cpu), --precision fp32|bf16 (default $FABLE_PRECISION, else the
 * engine's), --threads N,
 * --device N. Returns 0, or -1 after printing the error. */
int cli_engine(cli_args *a, const char **name, void *eng_opts_out);
#define CLI_ENGINE_USAGE                                                                              \
    "  --engine NAME       ref | cpu | cuda (default: $FABLE_ENGINE or cpu; `fable engines` lists them)\n" \
    "  --precision P       fp32 | bf16 (default: the engine's: fp32 on ref and cpu, bf16 on cuda)\n"      \
    "  --threads N         host threads (default: all cores)\n"

/* Subcommands. */
int cmd_sample(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);  /* fable tokenizer train ... */
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_engines(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_dash(int argc, char **argv);
int cmd_probe(int argc, char **argv);

#endif
