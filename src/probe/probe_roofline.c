/* fable probe roofline — the machine's two roofs and where each kernel type sits under them.
 *   roof(I) = min(peak, I · bandwidth),  I = FLOPs / compulsory bytes (probe_kernels.c)
 * peak: the probe's own FMA loop (probe_mem.c) on all threads, shown beside the engine's
 * (eng_peak_gflops, bench step's MFU denominator); bandwidth: the read bandwidth of a buffer
 * 8× the last-level cache. A kernel's fraction is its achieved GFLOP/s over roof(I). The
 * compulsory bytes assume every operand is read once, so a fraction far above 1 under the
 * memory roof would mean the count is wrong, and a kernel that re-reads from memory sits low. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fable/engine.h"
#include "fable/probe.h"
#include "fable/util.h"
#include "probe/probe_out.h"

static size_t llc_bytes(void) {
    long v = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (v <= 0) v = 32L << 20;
    return (size_t)v;
}

/* The compute roof: the FMA rate the cores deliver when the threads have them (per CPU
 * second), unless the wall-clock one is higher (then the CPU clock undercounts). */
static double roof_peak(const probe_roofline_result *r) { return r->peak_cpun > r->peakn ? r->peak_cpun : r->peakn; }
/* The memory roof: all threads' read bandwidth, unless one thread alone did better per second of
 * its CPU time (then the team was not getting its cores). */
static double roof_bw(const probe_roofline_result *r) { return r->bw_read1_cpu > r->bw_read ? r->bw_read1_cpu : r->bw_read; }

int probe_roofline(const probe_opts *o, probe_roofline_result *r) {
    memset(r, 0, sizeof *r);
    probe_kfix *f;
    if (probe_kfix_init(&f, o)) return -1;
    const int nt = probe_kfix_threads(f);
    r->threads = nt;
    r->peak1 = probe_fma_peak(1, o->quick, &r->peak_cpu1);
    r->peakn = probe_fma_peak(nt, o->quick, &r->peak_cpun);
    eng *e = eng_create("cpu", &(eng_opts){.threads = nt, .precision = -1});
    r->eng_peak = e ? eng_peak_gflops(e) : NAN;
    if (e) e->destroy(e);
    size_t big = 4 * llc_bytes();
    if (o->quick) big = 2 * llc_bytes();
    if (big > (512UL << 20)) big = 512UL << 20;
    r->bw_bytes = big;
    const int reps = o->quick ? 2 : 4;
    r->bw_read = probe_bw_read(big, nt, reps);
    r->bw_write = probe_bw_write(big, nt, reps);
    r->bw_copy = probe_bw_copy(big / 2, nt, reps);
    r->bw_read1 = probe_bw_read(big, 1, reps);
    r->bw_read1_cpu = probe_bw_read_cpu(big, reps);
    r->nk = probe_kfix_count(f);
    for (int k = 0; k < r->nk; k++) {
        const probe_kinfo *ki = probe_kfix_info(f, k);
        snprintf(r->k[k].name, PROBE_NAME, "%s", ki->name);
        r->k[k].flops = ki->flops;
        r->k[k].bytes = ki->bytes;
        r->k[k].ai = ki->flops / ki->bytes;
        r->k[k].sec = probe_kfix_time(f, k, o->quick ? 3 : 7, o->quick ? 0.1 : 0.3);
        r->k[k].gflops = ki->flops / r->k[k].sec / 1e9;
        double mem_roof = r->k[k].ai * roof_bw(r), peak = roof_peak(r);
        r->k[k].roof = mem_roof < peak ? mem_roof : peak;
        r->k[k].frac = r->k[k].gflops / r->k[k].roof;
    }
    probe_kfix_free(f);
    return 0;
}

void probe_roofline_print(probe_out *po, const probe_roofline_result *r) {
    po_begin(po, "roofline", "roofline: measured roofs, and each kernel type's intensity and fraction of its roof");
    po_num(po, "threads", "threads", r->threads, "%.0f", "");
    po_num(po, "peak_gflops_1thread", "FMA peak, 1 thread (probe's loop)", r->peak1, "%.1f", "GFLOP/s");
    po_num(po, "peak_gflops", "FMA peak, all threads (probe's loop)", r->peakn, "%.1f", "GFLOP/s");
    po_num(po, "peak_cpu_gflops_1thread", "FMA peak per CPU-second, 1 thread", r->peak_cpu1, "%.1f", "GFLOP/s");
    po_num(po, "peak_cpu_gflops", "FMA peak per CPU-second, all threads (the compute roof)", r->peak_cpun, "%.1f",
           "GFLOP/s");
    po_num(po, "engine_peak_gflops", "engine peak (bench step's MFU denominator)", r->eng_peak, "%.1f", "GFLOP/s");
    po_num(po, "bw_read_gbs", "memory bandwidth, read", r->bw_read, "%.1f", "GB/s");
    po_num(po, "bw_write_gbs", "memory bandwidth, write", r->bw_write, "%.1f", "GB/s");
    po_num(po, "bw_copy_gbs", "memory bandwidth, copy (read + write bytes)", r->bw_copy, "%.1f", "GB/s");
    po_num(po, "bw_read_1thread_gbs", "memory bandwidth, read, 1 thread", r->bw_read1, "%.1f", "GB/s");
    po_num(po, "bw_read_1thread_cpu_gbs", "memory bandwidth, read, 1 thread, per CPU-second", r->bw_read1_cpu, "%.1f",
           "GB/s");
    po_num(po, "bw_buffer_mb", "buffer", r->bw_bytes / 1048576.0, "%.0f", "MiB");
    po_num(po, "ridge_flop_per_byte", "ridge point (compute roof / memory roof)", roof_peak(r) / roof_bw(r), "%.1f",
           "FLOP/byte");
    static const char *keys[] = {"kernel", "gflop", "mbytes", "ai", "ms", "gflops", "roof_gflops", "frac", "bound"};
    static const char *heads[] = {"kernel", "GFLOP", "MB", "FLOP/B", "ms", "GFLOP/s", "roof", "of roof", "bound"};
    po_table(po, "kernels", 9, keys, heads);
    for (int k = 0; k < r->nk; k++) {
        po_cell_str(po, r->k[k].name);
        po_cell_num(po, r->k[k].flops / 1e9, "%.4f");
        po_cell_num(po, r->k[k].bytes / 1e6, "%.2f");
        po_cell_num(po, r->k[k].ai, "%.2f");
        po_cell_num(po, r->k[k].sec * 1e3, "%.3f");
        po_cell_num(po, r->k[k].gflops, "%.1f");
        po_cell_num(po, r->k[k].roof, "%.1f");
        po_cell_num(po, r->k[k].frac, "%.2f");
        po_cell_str(po, r->k[k].ai * roof_bw(r) < roof_peak(r) ? "memory" : "compute");
    }
    po_table_end(po);
    po_note(po, "bytes are compulsory traffic (each operand once); roof = min(compute roof, FLOP/B x memory "
                "roof); memory roof = the larger of the all-thread read bandwidth and one thread's per CPU-second; "
                "where the wall-clock peak is well below the per-CPU-second one, the threads were not "
                "getting their cores (a busy machine) and every wall-clock figure here is low by as much");
}

/* ---- SVG: log-log axes, the two roofs, one labelled point per kernel ------------------------ */
int probe_roofline_svg(const probe_roofline_result *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return fb_errno("%s: cannot write the roofline plot", path);
    const double BW = roof_bw(r), BW1 = r->bw_read1_cpu > r->bw_read1 ? r->bw_read1_cpu : r->bw_read1;
    const double P = roof_peak(r), P1 = r->peak_cpu1 > r->peak1 ? r->peak_cpu1 : r->peak1;
    const double W = 860, H = 560, x0 = 80, y0 = 40, pw = 620, ph = 440; /* plot box */
    double xmin = 1.0 / 16, xmax = 1024, ymin = 0.5, ymax = 1024;
    while (ymax < 2 * P) ymax *= 2;
    for (int k = 0; k < r->nk; k++) {
        while (r->k[k].ai < xmin) xmin /= 2;
        while (r->k[k].ai > xmax) xmax *= 2;
        while (r->k[k].gflops > 0 && r->k[k].gflops < ymin) ymin /= 2;
    }
#define PX(v) (x0 + pw * (log(v) - log(xmin)) / (log(xmax) - log(xmin)))
#define PY(v) (y0 + ph - ph * (log(v) - log(ymin)) / (log(ymax) - log(ymin)))
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"14\">fable probe roofline: %d threads, peak %.0f GFLOP/s, "
               "read %.1f GB/s</text>\n",
            x0, r->threads, P, BW);
    /* grid at powers of ten (y) and of two (x) */
    for (double v = pow(10, floor(log10(ymin))); v <= ymax; v *= 10)
        if (v >= ymin) {
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, PY(v), x0 + pw, PY(v));
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", x0 - 6, PY(v) + 4, v);
        }
    for (double v = xmin; v <= xmax * 1.001; v *= 4) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", PX(v), y0, PX(v), y0 + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(v), y0 + ph + 16, v);
    }
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", x0, y0,
            pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">arithmetic intensity (FLOP / byte)</text>\n",
            x0 + pw / 2, y0 + ph + 36);
    fprintf(f, "<text transform=\"translate(22 %.1f) rotate(-90)\" text-anchor=\"middle\">GFLOP/s</text>\n", y0 + ph / 2);
    /* roofs: memory slope up to the ridge, then flat; the 1-thread peak dashed */
    const double ridge = P / BW;
    double xa = xmin, ya = xa * BW;
    if (ya < ymin) { ya = ymin; xa = ymin / BW; }
    fprintf(f, "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\"/>\n",
            PX(xa), PY(ya), PX(ridge), PY(P), PX(xmax), PY(P));
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c0392b\" stroke-dasharray=\"5,4\"/>\n",
            PX(P1 / BW1), PY(P1), PX(xmax), PY(P1));
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c0392b\" text-anchor=\"end\">peak %.0f (all threads)</text>\n",
            x0 + pw - 4, PY(P) - 5, P);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c0392b\" text-anchor=\"end\">1 thread %.0f</text>\n", x0 + pw - 4,
            PY(P1) + 14, P1);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c0392b\">%.1f GB/s</text>\n", PX(xa) + 6, PY(ya) - 8, BW);
    /* kernels, with a legend on the right */
    static const char *col[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
    for (int k = 0; k < r->nk; k++) {
        const char *c = col[k % 12];
        if (r->k[k].gflops > 0 && isfinite(r->k[k].gflops))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>%s: %.2f FLOP/B, %.1f GFLOP/s (%.0f%% of roof)</title></circle>\n",
                    PX(r->k[k].ai), PY(r->k[k].gflops), c, r->k[k].name, r->k[k].ai, r->k[k].gflops, 100 * r->k[k].frac);
        double ly = y0 + 10 + 18 * k;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>\n", x0 + pw + 18, ly, c);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s (%.0f%%)</text>\n", x0 + pw + 28, ly + 4, r->k[k].name,
                100 * r->k[k].frac);
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    if (fclose(f)) return fb_errno("%s: write failed", path);
    return 0;
}
