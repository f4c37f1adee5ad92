/* fable probe — the text/JSON printer (probe_out.h). */
#include "probe/probe_out.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void po_init(probe_out *po, FILE *f, int json) {
    memset(po, 0, sizeof *po);
    po->f = f;
    po->json = json;
}

void po_json_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

/* json: the separator and "key": of the next member at the current depth */
static void member(probe_out *po, const char *key) {
    if (po->need_comma[po->depth]) fputc(',', po->f);
    po->need_comma[po->depth] = 1;
    if (key) {
        fputc('"', po->f);
        po_json_escape(po->f, key);
        fputs("\":", po->f);
    }
}

static void json_num(FILE *f, double v, const char *fmt) {
    if (!isfinite(v)) { fputs("null", f); return; }
    /* %g-style formats keep full magnitude; fixed formats of huge values are fine JSON too */
    fprintf(f, fmt ? fmt : "%.6g", v);
}

void po_open(probe_out *po) {
    if (!po->json) return;
    fputc('{', po->f);
    po->depth = 0;
    po->need_comma[0] = 0;
}

void po_close(probe_out *po) {
    if (po->json) fputs("}\n", po->f);
    fflush(po->f);
}

void po_begin(probe_out *po, const char *key, const char *title) {
    if (po->json) {
        member(po, key);
        fputc('{', po->f);
        po->depth++;
        po->need_comma[po->depth] = 0;
        po->nnotes = 0;
    } else {
        fprintf(po->f, "\n== %s ==\n", title);
    }
}

void po_end(probe_out *po) {
    if (!po->json) return;
    if (po->nnotes) {
        member(po, "notes");
        fputc('[', po->f);
        for (int i = 0; i < po->nnotes; i++) {
            fprintf(po->f, "%s\"", i ? "," : "");
            po_json_escape(po->f, po->notes[i]);
            fputc('"', po->f);
            free(po->notes[i]);
        }
        fputc(']', po->f);
        po->nnotes = 0;
    }
    fputc('}', po->f);
    po->depth--;
}

void po_num(probe_out *po, const char *key, const char *label, double v, const char *fmt, const char *unit) {
    if (po->json) {
        member(po, key);
        json_num(po->f, v, "%.10g");
        return;
    }
    fprintf(po->f, "  %s: ", label);
    if (isfinite(v)) fprintf(po->f, fmt, v);
    else fputs("n/a", po->f);
    fprintf(po->f, "%s%s\n", unit && *unit ? " " : "", unit ? unit : "");
}

void po_str(probe_out *po, const char *key, const char *label, const char *s) {
    if (po->json) {
        member(po, key);
        fputc('"', po->f);
        po_json_escape(po->f, s ? s : "");
        fputc('"', po->f);
        return;
    }
    fprintf(po->f, "  %s: %s\n", label, s ? s : "");
}

void po_note(probe_out *po, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (po->json) {
        if (po->nnotes < PO_MAX_NOTES) po->notes[po->nnotes++] = strdup(buf);
        return;
    }
    fprintf(po->f, "  %s\n", buf);
}

void po_table(probe_out *po, const char *key, int ncol, const char *const *keys, const char *const *heads) {
    po->ncol = ncol < PO_MAX_COLS ? ncol : PO_MAX_COLS;
    po->col = 0;
    po->nrow = 0;
    po->keys = keys;
    if (po->json) {
        member(po, key);
        fputc('[', po->f);
        po->depth++;
        po->need_comma[po->depth] = 0;
        return;
    }
    po->cap_rows = 16;
    po->cells = calloc((size_t)po->cap_rows * po->ncol, sizeof(char *));
    for (int c = 0; c < po->ncol; c++) po->cells[c] = strdup(heads[c]);
    po->nrow = 1; /* row 0: the heads */
}

static void cell(probe_out *po, const char *text, int is_num, double v, const char *fmt) {
    if (po->json) {
        if (po->col == 0) {
            member(po, NULL);
            fputc('{', po->f);
        }
        fprintf(po->f, "%s\"%s\":", po->col ? "," : "", po->keys[po->col]);
        if (is_num) json_num(po->f, v, "%.10g");
        else {
            fputc('"', po->f);
            po_json_escape(po->f, text);
            fputc('"', po->f);
        }
        if (++po->col == po->ncol) {
            fputc('}', po->f);
            po->col = 0;
        }
        return;
    }
    if (po->col == 0 && po->nrow == po->cap_rows) {
        po->cap_rows *= 2;
        po->cells = realloc(po->cells, (size_t)po->cap_rows * po->ncol * sizeof(char *));
    }
    char buf[64];
    if (is_num) {
        if (isfinite(v)) snprintf(buf, sizeof buf, fmt, v);
        else snprintf(buf, sizeof buf, "n/a");
        text = buf;
    }
    po->cells[(size_t)po->nrow * po->ncol + po->col] = strdup(text);
    if (++po->col == po->ncol) {
        po->col = 0;
        po->nrow++;
    }
}

void po_cell_str(probe_out *po, const char *s) { cell(po, s ? s : "", 0, 0, NULL); }
void po_cell_num(probe_out *po, double v, const char *fmt) { cell(po, NULL, 1, v, fmt); }

void po_table_end(probe_out *po) {
    if (po->json) {
        fputc(']', po->f);
        po->depth--;
        return;
    }
    int w[PO_MAX_COLS] = {0};
    for (int r = 0; r < po->nrow; r++)
        for (int c = 0; c < po->ncol; c++) {
            int l = (int)strlen(po->cells[(size_t)r * po->ncol + c]);
            if (l > w[c]) w[c] = l;
        }
    for (int r = 0; r < po->nrow; r++) {
        fputs("  ", po->f);
        for (int c = 0; c < po->ncol; c++) {
            const char *s = po->cells[(size_t)r * po->ncol + c];
            /* first column left-aligned (names), the rest right-aligned (numbers) */
            if (c == 0) fprintf(po->f, "%-*s", w[c], s);
            else fprintf(po->f, "  %*s", w[c], s);
        }
        fputc('\n', po->f);
    }
    for (int i = 0; i < po->nrow * po->ncol; i++) free(po->cells[i]);
    free(po->cells);
    po->cells = NULL;
}
