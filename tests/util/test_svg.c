/* The SVG chart: nice ticks are what they claim, and every drawn point maps back, through
 * the tick labels printed in the file (read here as a viewer would: text at a pixel position),
 * to the data value it came from, to within the file's 0.01-pixel precision. Linear and
 * logarithmic axes, SI-suffixed labels, skipped non-finite points, escaped text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fable/svg.h"
#include "fable/util.h"
#include "testlib.h"

/* ---- reading the SVG back ----------------------------------------------------------------- */
typedef struct { double pos, val; } tick; /* pixel position, value of the label */

static double label_value(const char *s) {
    char *e;
    double v = strtod(s, &e);
    if (*e == 'k') v *= 1e3;
    else if (*e == 'M') v *= 1e6;
    else if (*e == 'G') v *= 1e9;
    return v;
}

/* <text class="xtick" x=".." y="..">LABEL</text>: position x (xtick) or y (ytick). */
static int read_ticks(const char *svg, const char *cls, tick *t, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "class=\"%s\"", cls);
    int n = 0;
    for (const char *p = strstr(svg, pat); p && n < max; p = strstr(p + 1, pat)) {
        const char *a = strstr(p, !strcmp(cls, "xtick") ? " x=\"" : " y=\"");
        const char *gt = strchr(p, '>');
        t[n].pos = strtod(a + 4, NULL);
        t[n].val = label_value(gt + 1);
        n++;
    }
    return n;
}

/* The points of the i-th <polyline class="series">. */
static int read_points(const char *svg, int which, double *px, double *py, int max) {
    const char *p = svg;
    for (int i = 0; i <= which; i++) {
        p = strstr(p, "class=\"series\"");
        if (!p) return -1;
        p++;
    }
    p = strstr(p, "points=\"") + 8;
    int n = 0;
    while (*p != '"' && n < max) {
        char *e;
        px[n] = strtod(p, &e);
        py[n] = strtod(e + 1, &e);
        n++;
        p = e;
        while (*p == ' ') p++;
    }
    return n;
}

/* Value at pixel `pos` from the first and last tick (f = log10 on a log axis). */
static double unmap(const tick *t, int n, double pos, int logv) {
    double v0 = logv ? log10(t[0].val) : t[0].val, v1 = logv ? log10(t[n - 1].val) : t[n - 1].val;
    double v = v0 + (pos - t[0].pos) / (t[n - 1].pos - t[0].pos) * (v1 - v0);
    return logv ? pow(10, v) : v;
}

static char *render(const svg_chart *c, const svg_series *s, int ns, int *rc) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    *rc = svg_chart_write(f, c, s, ns);
    fclose(f);
    return buf;
}

/* The drawn points of series `which` against the data (x[i], y[i]) with finite values. */
static void check_roundtrip(const char *what, const char *svg, int which, const double *x, const double *y, int n,
                            int log_y) {
    tick xt[64], yt[64];
    int nx = read_ticks(svg, "xtick", xt, 64), ny = read_ticks(svg, "ytick", yt, 64);
    CHECK(nx >= 3 && ny >= 3, "%s: %d x ticks, %d y ticks", what, nx, ny);
    if (nx < 2 || ny < 2) return;
    double px[4096], py[4096];
    int m = read_points(svg, which, px, py, 4096);
    int k = 0;
    double xerr = 0, yerr = 0;
    /* one pixel of each axis in data units (log10 units for a log axis) */
    double xpix = fabs((xt[nx - 1].val - xt[0].val) / (xt[nx - 1].pos - xt[0].pos));
    double ypix = log_y ? fabs((log10(yt[ny - 1].val) - log10(yt[0].val)) / (yt[ny - 1].pos - yt[0].pos))
                        : fabs((yt[ny - 1].val - yt[0].val) / (yt[ny - 1].pos - yt[0].pos));
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]) || (log_y && y[i] <= 0)) continue;
        if (k >= m) break;
        double vx = unmap(xt, nx, px[k], 0), vy = unmap(yt, ny, py[k], log_y);
        xerr = fmax(xerr, fabs(vx - x[i]) / xpix);
        yerr = fmax(yerr, (log_y ? fabs(log10(vy) - log10(y[i])) : fabs(vy - y[i])) / ypix);
        k++;
    }
    int expect = 0;
    for (int i = 0; i < n; i++) expect += isfinite(x[i]) && isfinite(y[i]) && (!log_y || y[i] > 0);
    CHECK(m == expect && k == expect, "%s: %d points drawn, %d expected", what, m, expect);
    /* coordinates are written with 2 decimals: 0.005 px, plus a little for the tick positions */
    CHECK(xerr <= 0.011 && yerr <= 0.011, "%s: largest error %.4f px (x), %.4f px (y)", what, xerr, yerr);
}

int main(void) {
    /* ---- nice ticks: multiples of 1, 2 or 5 × 10^k, covering the range ---- */
    fb_rng rng;
    fb_rng_seed(&rng, 7);
    int bad = 0;
    for (int it = 0; it < 2000; it++) {
        double lo = (fb_rng_f32(&rng) - 0.5) * pow(10, (int)(fb_rng_u32(&rng) % 12) - 4);
        double hi = lo + fb_rng_f32(&rng) * pow(10, (int)(fb_rng_u32(&rng) % 12) - 4) + 1e-7;
        double t[64], step, a, b;
        int n = svg_nice_ticks(lo, hi, 6, t, 64, &step, &a, &b);
        double mant = step / pow(10, floor(log10(step) + 1e-9));
        int ok = n >= 3 && n <= 12 && a <= lo && b >= hi && fabs(t[0] - a) < step * 1e-6 &&
                 fabs(t[n - 1] - b) < step * 1e-6 &&
                 (fabs(mant - 1) < 1e-6 || fabs(mant - 2) < 1e-6 || fabs(mant - 5) < 1e-6);
        for (int i = 0; i < n && ok; i++) ok = fabs(t[i] / step - llround(t[i] / step)) < 1e-6;
        if (!ok && bad++ < 5) fprintf(stderr, "ticks of [%g, %g]: n %d step %g axis [%g, %g]\n", lo, hi, n, step, a, b);
    }
    CHECK(bad == 0, "%d of 2000 random ranges got bad ticks", bad);
    double t[64], step, a, b;
    int n = svg_nice_ticks(1.42, 6.25, 6, t, 64, &step, &a, &b);
    CHECK(n == 7 && step == 1 && a == 1 && b == 7, "ticks of [1.42, 6.25]: %d, step %g, axis [%g, %g]", n, step, a, b);
    n = svg_log_ticks(1.3, 6.5, t, 64);
    CHECK(n == 5 && t[0] == 2 && t[4] == 6, "log ticks of [1.3, 6.5]: %d from %g to %g", n, t[0], t[n - 1]);
    n = svg_log_ticks(5.2, 6.3, t, 64);
    CHECK(n >= 3 && t[0] >= 5.2 && t[n - 1] <= 6.3, "log ticks of the narrow [5.2, 6.3]: %d", n);
    n = svg_log_ticks(0.03, 700, t, 64);
    CHECK(n == 4 && fabs(t[0] - 0.1) < 1e-12 && t[3] == 100, "log ticks of [0.03, 700]: %d from %g", n, t[0]);

    /* ---- a loss curve: 300 updates of a decaying loss, validation every 50, one NaN ---- */
    static double x[300], y[300], vx[6], vy[6];
    for (int i = 0; i < 300; i++) {
        x[i] = i + 1;
        y[i] = 1.5 + 4.7 * exp(-(i + 1) / 60.0) + 0.05 * sin(i * 0.7);
    }
    y[123] = NAN;
    for (int i = 0; i < 6; i++) { vx[i] = 50.0 * (i + 1); vy[i] = 1.55 + 4.7 * exp(-vx[i] / 60.0); }
    svg_series s[2] = {{.label = "train <run&1>", .x = x, .y = y, .n = 300, .color = "#1f77b4"},
                       {.label = "val", .x = vx, .y = vy, .n = 6, .color = "#d62728", .dashed = 1, .markers = 1}};
    int rc;
    char *svg = render(&(svg_chart){.title = "a \"test\"", .xlabel = "update", .ylabel = "loss"}, s, 2, &rc);
    CHECK(rc == 0, "linear chart: %s", fb_errmsg());
    check_roundtrip("linear train", svg, 0, x, y, 300, 0);
    check_roundtrip("linear val", svg, 1, vx, vy, 6, 0);
    CHECK(strstr(svg, "train &lt;run&amp;1&gt;") && strstr(svg, "a &quot;test&quot;"), "text escaped");
    CHECK(!strstr(svg, "nan") && !strstr(svg, "inf"), "no non-finite coordinate written");
    CHECK(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0 && strstr(svg, "</svg>\n"),
          "a standalone SVG document");
    free(svg);

    svg = render(&(svg_chart){.xlabel = "update", .ylabel = "loss", .log_y = 1}, s, 2, &rc);
    CHECK(rc == 0, "log chart: %s", fb_errmsg());
    check_roundtrip("log train", svg, 0, x, y, 300, 1);
    check_roundtrip("log val", svg, 1, vx, vy, 6, 1);
    free(svg);

    /* ---- tokens on x: labels with SI suffixes (k, M) still map back ---- */
    static double tx[300];
    for (int i = 0; i < 300; i++) tx[i] = 8192.0 * 37 * (i + 1);
    svg_series st = {.label = "tokens", .x = tx, .y = y, .n = 300, .color = "#000"};
    svg = render(&(svg_chart){.xlabel = "tokens"}, &st, 1, &rc);
    CHECK(rc == 0 && strstr(svg, "M</text>"), "token axis labelled in millions");
    check_roundtrip("tokens", svg, 0, tx, y, 300, 0);
    free(svg);

    /* ---- nothing to draw is an error, not an empty chart ---- */
    double nanv[2] = {NAN, NAN};
    svg_series sn = {.label = "x", .x = nanv, .y = nanv, .n = 2, .color = "#000"};
    svg = render(&(svg_chart){0}, &sn, 1, &rc);
    CHECK(rc != 0 && strstr(fb_errmsg(), "nothing to plot"), "all-NaN series refused: %s", fb_errmsg());
    free(svg);
    return t_done("test_svg");
}
