/* fable probe — one printer for both forms of a probe's report: a readable text table
 * (the default) and one JSON object (--json). Each probe's print function makes the same
 * calls for both; the printer decides how they look.
 *
 *   po_begin(po, "weights", "weight swap: repack in place vs prepare afresh")
 *     text: a titled section;       json: "weights":{
 *   po_num(po, "peak_gflops", "FMA peak, all threads", v, "%.1f", "GFLOP/s")
 *     text: "  FMA peak, all threads: 431.2 GFLOP/s";   json: "peak_gflops":431.2 (NaN: null)
 *   po_table(po, "kernels", n, keys, heads); po_cell_*(...) row by row; po_table_end(po)
 *     text: aligned columns under the heads;   json: "kernels":[{key:value,...},...]
 *   po_note(po, "...")  text: an indented line;   json: appended to the section's "notes" array
 */
#ifndef FABLE_PROBE_OUT_H
#define FABLE_PROBE_OUT_H

#include <stdio.h>

#define PO_MAX_COLS 24
#define PO_MAX_NOTES 16

typedef struct probe_out {
    FILE *f;
    int json;
    int depth;                /* json: open objects */
    int need_comma[8];        /* json: a member was written at this depth */
    /* the table being built (text mode keeps its cells to size the columns) */
    int ncol, col, nrow;
    const char *const *keys;
    char **cells;             /* text: nrow × ncol strings */
    int cap_rows;
    char *notes[PO_MAX_NOTES]; /* json: notes of the open section */
    int nnotes;
} probe_out;

void po_init(probe_out *po, FILE *f, int json);
void po_open(probe_out *po);               /* json: the outer "{" */
void po_close(probe_out *po);              /* json: the outer "}\n" */
void po_begin(probe_out *po, const char *key, const char *title);
void po_end(probe_out *po);
void po_num(probe_out *po, const char *key, const char *label, double v, const char *fmt, const char *unit);
void po_str(probe_out *po, const char *key, const char *label, const char *s);
void po_note(probe_out *po, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void po_table(probe_out *po, const char *key, int ncol, const char *const *keys, const char *const *heads);
void po_cell_str(probe_out *po, const char *s);
void po_cell_num(probe_out *po, double v, const char *fmt);   /* NaN: "n/a" / null */
void po_table_end(probe_out *po);

/* JSON string body of s (no quotes) into f. */
void po_json_escape(FILE *f, const char *s);

#endif
