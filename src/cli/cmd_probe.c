/* fable probe — characterise the machine and the engine (SPEC §7, include/fable/probe.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fable/engine.h"
#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_cuda.h"
#include "probe/probe_out.h"

static const char *usage =
    "usage: fable probe weights|counters|sched|roofline|cache|dispatch|all [--preset P] [--batch B] [--seq T]\n"
    "                   [--json] [--svg FILE] [--quick] [engine options]\n"
    "  weights   change a layer's weights without re-preparing the kernels: repack in place vs pack afresh,\n"
    "            the output checked against a double-precision product and the ref engine\n"
    "  counters  perf_event_open counters per kernel type; which are unavailable and why\n"
    "  sched     latency per kernel type across thread counts, nice levels, a competing busy process\n"
    "  roofline  measured FMA peak and memory bandwidth; each kernel's intensity and fraction of its roof\n"
    "            (--svg FILE: the roofline plot)\n"
    "  cache     streaming and GEMM throughput against working-set size; cliffs vs the reported caches\n"
    "  dispatch  the cost of starting the smallest kernel: team wake-up, barrier, empty parallel region\n"
    "  all       every probe (sched last: it changes nice levels), one JSON object with --json\n"
    "Kernel types run at the preset's shapes (default stories15M, batch 1 x its seq_len).\n"
    "--quick (or FABLE_PROBE_QUICK=1) shrinks sweeps and repetitions (tests).\n"
    "With --engine cuda (a GPU): weights (a weight update inside a captured CUDA graph vs capturing again) and\n"
    "dispatch (a kernel launch vs a graph replay); `all` runs those two.\n"
    "engine options:\n" CLI_ENGINE_USAGE;

static const char *const names[] = {"weights", "counters", "roofline", "cache", "dispatch", "sched"};
enum { P_WEIGHTS, P_COUNTERS, P_ROOFLINE, P_CACHE, P_DISPATCH, P_SCHED, P_COUNT };

int cmd_probe(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *which = argv[1];
    int sel = -1;
    if (!strcmp(which, "all")) sel = P_COUNT;
    for (int i = 0; i < P_COUNT; i++)
        if (!strcmp(which, names[i])) sel = i;
    if (sel < 0) {
        fprintf(stderr, "fable probe: unknown probe '%s' (weights|counters|sched|roofline|cache|dispatch|all)\n", which);
        return 2;
    }
    cli_args a;
    cli_args_init(&a, argc - 1, argv + 1);
    a.cmd = "probe";
    probe_opts o = {0};
    o.preset = cli_str(&a, "--preset", "stories15M");
    if (model_preset(o.preset, &o.cfg)) return cli_fail(&a, NULL);
    o.B = (int)cli_int(&a, "--batch", 1);
    o.T = (int)cli_int(&a, "--seq", o.cfg.seq_len);
    int json = cli_flag(&a, "--json");
    const char *svg = cli_str(&a, "--svg", NULL);
    const char *q = getenv("FABLE_PROBE_QUICK");
    o.quick = cli_flag(&a, "--quick") || (q && *q && strcmp(q, "0"));
    eng_opts eo;
    if (cli_engine(&a, &o.engine, &eo)) return 2;
    if (cli_finish(&a)) return 2;
    o.threads = eo.threads;
    if (o.B <= 0 || o.T <= 0) return cli_fail(&a, "--batch and --seq must be positive"), 2;
    const int on_cuda = !strcmp(o.engine, "cuda");
    if (strcmp(o.engine, "cpu") && !on_cuda)
        return cli_fail(&a, "engine '%s' is not probed: the probes run on the cpu engine, and weights and dispatch "
                            "also on cuda", o.engine),
               2;
    if (on_cuda && sel != P_WEIGHTS && sel != P_DISPATCH && sel != P_COUNT)
        return cli_fail(&a, "probe %s measures the CPU; with --engine cuda only weights and dispatch run (`probe all` "
                            "runs those two; a GPU's counters are Nsight Compute's)", which),
               2;
    if (svg && (on_cuda || (sel != P_ROOFLINE && sel != P_COUNT)))
        return cli_fail(&a, "--svg draws the roofline: use it with `probe roofline` or `probe all` on the cpu engine"), 2;
    eng *e = eng_create(o.engine, &eo); /* cuda: says plainly what is missing (the .so, libraries, a GPU) */
    if (!e) return cli_fail(&a, NULL);
    char device[128];
    snprintf(device, sizeof device, "%s", e->device);
    e->destroy(e);

    probe_out po;
    po_init(&po, stdout, json);
    po_open(&po);
    double t0 = fb_now();
    if (json) {
        fprintf(stdout, "\"probe\":\"%s\",\"engine\":\"%s\",\"preset\":\"%s\",\"batch\":%d,\"seq\":%d,\"quick\":%s,\"device\":\"",
                which, o.engine, o.preset, o.B, o.T, o.quick ? "true" : "false");
        po_json_escape(stdout, device);
        fputc('"', stdout);
        po.need_comma[0] = 1;
    } else {
        printf("fable probe %s: engine %s on %s; kernel types at %s, batch %d x seq %d%s\n", which, o.engine, device,
               o.preset, o.B, o.T, o.quick ? " (quick)" : "");
    }
    int rc = 0;
    for (int p = 0; p < P_COUNT && !rc; p++) {
        if (sel != P_COUNT && sel != p) continue;
        fflush(stdout);
        const double tp = fb_now();
        if (on_cuda && p != P_WEIGHTS && p != P_DISPATCH) continue;
        if (on_cuda) {
            if (p == P_WEIGHTS) {
                fable_cuda_weights r;
                if ((rc = probe_cuda_weights(&o, &eo, &r))) break;
                probe_cuda_weights_print(&po, &r);
            } else {
                fable_cuda_dispatch r;
                if ((rc = probe_cuda_dispatch(&o, &eo, &r))) break;
                probe_cuda_dispatch_print(&po, &r);
            }
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            continue;
        }
        switch (p) {
        case P_WEIGHTS: {
            probe_weights_result r;
            if ((rc = probe_weights(&o, &r))) break;
            probe_weights_print(&po, &r);
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            break;
        }
        case P_COUNTERS: {
            probe_counters_result *r = malloc(sizeof *r);
            if (!r || (rc = probe_counters(&o, r))) { rc = -1; free(r); break; }
            probe_counters_print(&po, r);
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            free(r);
            break;
        }
        case P_ROOFLINE: {
            probe_roofline_result r;
            if ((rc = probe_roofline(&o, &r))) break;
            probe_roofline_print(&po, &r);
            if (svg) {
                if ((rc = probe_roofline_svg(&r, svg))) break;
                po_str(&po, "svg", "roofline plot written to", svg);
            }
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            break;
        }
        case P_CACHE: {
            probe_cache_result r;
            if ((rc = probe_cache(&o, &r))) break;
            probe_cache_print(&po, &r);
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            break;
        }
        case P_DISPATCH: {
            probe_dispatch_result r;
            if ((rc = probe_dispatch(&o, &r))) break;
            probe_dispatch_print(&po, &r);
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            break;
        }
        case P_SCHED: {
            probe_sched_result r;
            if ((rc = probe_sched(&o, &r))) break;
            probe_sched_print(&po, &r);
            po_num(&po, "seconds", "probe time", fb_now() - tp, "%.1f", "s");
            po_end(&po);
            break;
        }
        }
    }
    if (rc) {
        fflush(stdout);
        if (json) fputs("}\n", stdout);
        return cli_fail(&a, NULL);
    }
    if (json) {
        fprintf(stdout, ",\"seconds\":%.2f", fb_now() - t0);
    } else {
        printf("\nprobe %s took %.1f s\n", which, fb_now() - t0);
    }
    po_close(&po);
    return 0;
}
