/* fable — a standalone SVG line chart: nice ticks, polylines, legend. */
#include "fable/svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fable/util.h"

/* ---- ticks ----------------------------------------------------------------------------- */
/* The smallest of 1, 2, 5 × 10^k that is >= raw. */
static double nice_step(double raw) {
    double p = pow(10.0, floor(log10(raw)));
    const double m[] = {1, 2, 5, 10};
    for (int i = 0; i < 4; i++)
        if (m[i] * p >= raw * (1 - 1e-9)) return m[i] * p;
    return 10 * p;
}

int svg_nice_ticks(double lo, double hi, int target, double *ticks, int max, double *step, double *axis_lo,
                   double *axis_hi) {
    if (!(hi - lo > 1e-9 * fmax(fabs(lo), fabs(hi)))) { /* one value: a unit (or 10%) around it */
        double d = lo != 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d;
        hi += d;
    }
    if (target < 2) target = 2;
    double st = nice_step((hi - lo) / (target - 1));
    double a = floor(lo / st) * st, b = ceil(hi / st) * st;
    int n = 0;
    for (long long k = llround(a / st); n < max; k++) {
        double v = (double)k * st;
        if (v > b + st * 1e-6) break;
        ticks[n++] = fabs(v) < st * 1e-9 ? 0.0 : v;
    }
    *step = st;
    *axis_lo = a;
    *axis_hi = b;
    return n;
}

int svg_log_ticks(double lo, double hi, double *ticks, int max) {
    static const double sets[3][9] = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
    static const int sizes[3] = {1, 3, 9};
    int n = 0;
    for (int s = 0; s < 3; s++) {
        n = 0;
        for (int e = (int)floor(log10(lo)) - 1; e <= (int)ceil(log10(hi)) && n < max; e++)
            for (int i = 0; i < sizes[s] && n < max; i++) {
                double v = sets[s][i] * pow(10.0, e);
                if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks[n++] = v;
            }
        if (n >= 3) return n;
    }
    /* less than a factor of ~2.5: linear nice values, placed on the log axis */
    for (int target = 5; target <= 12; target++) {
        double lin[64], step, a, b;
        int m = svg_nice_ticks(lo, hi, target, lin, 64, &step, &a, &b);
        n = 0;
        for (int i = 0; i < m && n < max; i++)
            if (lin[i] >= lo * (1 - 1e-9) && lin[i] <= hi * (1 + 1e-9) && lin[i] > 0) ticks[n++] = lin[i];
        if (n >= 3) break;
    }
    return n;
}

/* A tick label: the step decides the decimals; large values get k, M or G. */
static void tick_label(char *out, size_t cap, double v, double step, double maxabs) {
    const char *suffix = "";
    double unit = 1;
    if (maxabs >= 1e10) { unit = 1e9; suffix = "G"; }
    else if (maxabs >= 1e7) { unit = 1e6; suffix = "M"; }
    else if (maxabs >= 1e4) { unit = 1e3; suffix = "k"; }
    int dec = (int)ceil(-log10(step / unit) - 1e-9);
    if (dec < 0) dec = 0;
    if (dec > 6) dec = 6;
    snprintf(out, cap, "%.*f%s", dec, v / unit, v == 0 ? "" : suffix);
}

static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* The nice ticks, for 4 to 8 wanted, whose axis wastes the least width around the data. */
static int tight_ticks(double lo, double hi, double *ticks, int max, double *step, double *a, double *b) {
    int best = 0;
    double bspan = INFINITY;
    for (int target = 4; target <= 8; target++) {
        double t[64], st, x0, x1;
        int n = svg_nice_ticks(lo, hi, target, t, 64, &st, &x0, &x1);
        if (x1 - x0 < bspan * (1 - 1e-9) && n <= max) {
            bspan = x1 - x0;
            best = n;
            memcpy(ticks, t, (size_t)n * sizeof *t);
            *step = st;
            *a = x0;
            *b = x1;
        }
    }
    return best;
}

/* ---- the chart --------------------------------------------------------------------------- */
typedef struct {
    double x0, x1, y0, y1;   /* axis ranges (y in log10 units on a log axis) */
    double L, T, W, H;       /* plot area in pixels */
    int log_y;
} frame;

static int usable(const frame *fr, double x, double y) { return isfinite(x) && isfinite(y) && (!fr->log_y || y > 0); }
static double px(const frame *fr, double x) { return fr->L + (x - fr->x0) / (fr->x1 - fr->x0) * fr->W; }
static double py(const frame *fr, double y) {
    double v = fr->log_y ? log10(y) : y;
    return fr->T + fr->H - (v - fr->y0) / (fr->y1 - fr->y0) * fr->H;
}

int svg_chart_write(FILE *f, const svg_chart *c, const svg_series *s, int ns) {
    const int Wd = c->width > 0 ? c->width : 800, Ht = c->height > 0 ? c->height : 450;
    frame fr = {.L = 70, .T = c->title ? 40 : 20, .log_y = c->log_y};
    fr.W = Wd - fr.L - 20;
    fr.H = Ht - fr.T - 55;
    /* data ranges */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < ns; i++)
        for (size_t k = 0; k < s[i].n; k++) {
            double x = s[i].x[k], y = s[i].y[k];
            if (!usable(&fr, x, y)) continue;
            xmin = fmin(xmin, x); xmax = fmax(xmax, x);
            ymin = fmin(ymin, y); ymax = fmax(ymax, y);
        }
    if (!(xmin <= xmax)) return fb_err("nothing to plot: no finite data point%s", c->log_y ? " above 0 (log scale)" : "");
    double xt[64], yt[64], xstep, ystep = 0;
    int nx = tight_ticks(xmin, xmax, xt, 64, &xstep, &fr.x0, &fr.x1), ny;
    if (c->log_y) {
        if (!(ymax > ymin)) { ymin /= 1.5; ymax *= 1.5; }
        double pad = pow(ymax / ymin, 0.04);
        ny = svg_log_ticks(ymin / pad, ymax * pad, yt, 64);
        fr.y0 = log10(ymin / pad);
        fr.y1 = log10(ymax * pad);
    } else {
        ny = tight_ticks(ymin, ymax, yt, 64, &ystep, &fr.y0, &fr.y1);
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n", Wd, Ht, Wd, Ht);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", Wd, Ht);
    fprintf(f, "<defs><clipPath id=\"plot\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/></clipPath></defs>\n",
            fr.L, fr.T, fr.W, fr.H);
    if (c->title) {
        fprintf(f, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", fr.L + fr.W / 2);
        xml_text(f, c->title);
        fputs("</text>\n", f);
    }
    /* grid and ticks */
    double xmaxabs = fmax(fabs(fr.x0), fabs(fr.x1)), ymaxabs = fmax(fabs(yt[0]), fabs(yt[ny > 0 ? ny - 1 : 0]));
    char lab[64];
    for (int i = 0; i < nx; i++) {
        double X = px(&fr, xt[i]);
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#e5e5e5\"/>\n", X, X, fr.T, fr.T + fr.H);
        tick_label(lab, sizeof lab, xt[i], xstep, xmaxabs);
        fprintf(f, "<text class=\"xtick\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", X, fr.T + fr.H + 17,
                lab);
    }
    for (int i = 0; i < ny; i++) {
        double Y = py(&fr, yt[i]);
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#e5e5e5\"/>\n", fr.L, fr.L + fr.W, Y, Y);
        if (c->log_y) snprintf(lab, sizeof lab, "%g", yt[i]);
        else tick_label(lab, sizeof lab, yt[i], ystep, ymaxabs);
        /* y: the tick's pixel row; the baseline shift centres the digits on it */
        fprintf(f, "<text class=\"ytick\" x=\"%.2f\" y=\"%.2f\" dy=\"4\" text-anchor=\"end\">%s</text>\n", fr.L - 6, Y,
                lab);
    }
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#444\"/>\n", fr.L,
            fr.T, fr.W, fr.H);
    if (c->xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", fr.L + fr.W / 2, Ht - 12);
        xml_text(f, c->xlabel);
        fputs("</text>\n", f);
    }
    if (c->ylabel) {
        fprintf(f, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">", fr.T + fr.H / 2);
        xml_text(f, c->ylabel);
        fputs("</text>\n", f);
    }
    /* the series */
    for (int i = 0; i < ns; i++) {
        const double w = s[i].width > 0 ? s[i].width : 1.5;
        fprintf(f, "<polyline class=\"series\" data-label=\"");
        xml_text(f, s[i].label ? s[i].label : "");
        fprintf(f, "\" clip-path=\"url(#plot)\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" "
                   "stroke-linejoin=\"round\"%s points=\"",
                s[i].color, w, s[i].dashed ? " stroke-dasharray=\"6 4\"" : "");
        int first = 1;
        for (size_t k = 0; k < s[i].n; k++) {
            if (!usable(&fr, s[i].x[k], s[i].y[k])) continue;
            fprintf(f, "%s%.2f,%.2f", first ? "" : " ", px(&fr, s[i].x[k]), py(&fr, s[i].y[k]));
            first = 0;
        }
        fputs("\"/>\n", f);
        if (s[i].markers)
            for (size_t k = 0; k < s[i].n; k++)
                if (usable(&fr, s[i].x[k], s[i].y[k]))
                    fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.1f\" fill=\"%s\"/>\n", px(&fr, s[i].x[k]),
                            py(&fr, s[i].y[k]), w + 1.5, s[i].color);
    }
    /* the legend: top right, inside the plot */
    int nl = 0;
    size_t longest = 0;
    for (int i = 0; i < ns; i++)
        if (s[i].label) { nl++; longest = strlen(s[i].label) > longest ? strlen(s[i].label) : longest; }
    if (nl > 0) {
        double lw = 40 + 7.0 * (double)longest, lh = 8 + 18.0 * nl;
        double lx = fr.L + fr.W - lw - 10, ly = fr.T + 10;
        fprintf(f, "<g class=\"legend\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" "
                   "fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n", lx, ly, lw, lh);
        int j = 0;
        for (int i = 0; i < ns; i++) {
            if (!s[i].label) continue;
            double yy = ly + 16 + 18.0 * j++;
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.1f\"%s/>\n",
                    lx + 8, lx + 30, yy - 4, yy - 4, s[i].color, s[i].width > 0 ? s[i].width : 1.5,
                    s[i].dashed ? " stroke-dasharray=\"6 4\"" : "");
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", lx + 36, yy);
            xml_text(f, s[i].label);
            fputs("</text>\n", f);
        }
        fputs("</g>\n", f);
    }
    fputs("</svg>\n", f);
    return 0;
}

int svg_chart_save(const char *path, const svg_chart *c, const svg_series *s, int ns) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return fb_errno("%s: cannot write", tmp);
    int rc = svg_chart_write(f, c, s, ns);
    if (ferror(f)) rc = rc ? rc : fb_errno("%s: write failed", tmp);
    if (fclose(f) && !rc) rc = fb_errno("%s: write failed", tmp);
    if (!rc && rename(tmp, path)) rc = fb_errno("%s: cannot rename to %s", tmp, path);
    if (rc) remove(tmp);
    return rc;
}
