/* fable — a standalone SVG line chart (no dependencies): axes with "nice" ticks (1, 2, 5 ×
 * 10^k on a linear axis; 1, 2, 5 or 1..9 × 10^k on a logarithmic one), a title, axis labels,
 * one polyline per series (solid or dashed, optional point markers) and a legend. `fable plot`
 * draws its loss curves with it.
 *
 * The file is machine-readable on purpose: tick labels are <text class="xtick"|"ytick"> at the
 * tick's pixel position, each series is <polyline class="series" data-label="...">, so a test
 * (or a script) can map the points back to data values through the ticks.
 */
#ifndef FABLE_SVG_H
#define FABLE_SVG_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *label;     /* legend text (NULL: not in the legend) */
    const double *x, *y;   /* n points; non-finite ones (and y <= 0 on a log axis) are skipped */
    size_t n;
    const char *color;     /* CSS colour, e.g. "#1f77b4" */
    int dashed;            /* dashed line */
    int markers;           /* a dot at every point */
    double width;          /* stroke width in pixels (0: 1.5) */
} svg_series;

typedef struct {
    int width, height;     /* pixels (0: 800 × 450) */
    const char *title;     /* may be NULL */
    const char *xlabel, *ylabel;
    int log_y;             /* logarithmic y axis */
} svg_chart;

/* Ticks for [lo, hi] on a linear axis: about `target` of them at multiples of a step of 1, 2
 * or 5 × 10^k; the axis is widened to the enclosing multiples (*axis_lo, *axis_hi). Returns
 * the number of ticks written (<= max). */
int svg_nice_ticks(double lo, double hi, int target, double *ticks, int max, double *step, double *axis_lo,
                   double *axis_hi);
/* Ticks for [lo, hi] (lo > 0) on a log axis: powers of ten, or 1/2/5 or 1..9 times them,
 * whichever is the sparsest set that gives at least 3 ticks inside; for a narrower range,
 * linear nice values inside it. Returns the count. */
int svg_log_ticks(double lo, double hi, double *ticks, int max);

/* Writes the chart. 0, or -1 + fb_err when there is nothing to draw (no finite point). */
int svg_chart_write(FILE *f, const svg_chart *c, const svg_series *s, int ns);
/* The same into a file (written to PATH.tmp, then renamed). 0 or -1 + fb_err. */
int svg_chart_save(const char *path, const svg_chart *c, const svg_series *s, int ns);

#endif
