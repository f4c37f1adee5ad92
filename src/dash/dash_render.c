/* fable dash — the panels, drawn into an off-screen grid of cells (no curses here).
 *
 * Layout at the minimum 80×24 (rows):
 *   0-1    header: model shape, preset, parameters, recipe, engine, threads, run folder
 *   2-12   loss curve (braille, 2×4 dots a cell) | stats
 *   13-14  phase times of the last update: a stacked bar and its legend
 *   15-16  the trainer's CPU % and resident memory (sparklines); power (+ a GPU row on cuda)
 *   17-19  the newest sample
 *   20-22  the log (its title turns into the "training finished" summary at the end)
 *   23     keys and messages
 * Taller terminals give the extra rows to the curve, a bar per phase, the sample and the log;
 * wider ones to the curve and the sparklines.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dash/dash.h"
#include "fable/model.h"

int dash_screen_init(dash_screen *s, int w, int h) {
    s->w = w;
    s->h = h;
    s->c = calloc((size_t)w * (size_t)h, sizeof *s->c);
    return s->c ? 0 : -1;
}

void dash_screen_free(dash_screen *s) {
    free(s->c);
    s->c = NULL;
}

static dash_cell *cell(dash_screen *s, int x, int y) {
    return x >= 0 && y >= 0 && x < s->w && y < s->h ? &s->c[(size_t)y * s->w + x] : NULL;
}

static void clear(dash_screen *s) {
    for (int i = 0; i < s->w * s->h; i++) s->c[i] = (dash_cell){' ', DASH_C_NORMAL, 0};
}

static void put_ch(dash_screen *s, int x, int y, uint32_t ch, int color, int bold) {
    dash_cell *c = cell(s, x, y);
    if (c) *c = (dash_cell){ch, (uint8_t)color, (uint8_t)bold};
}

/* Decode one UTF-8 sequence; code points that might not be one column wide become '?'. */
static uint32_t utf8_next(const unsigned char **pp) {
    const unsigned char *p = *pp;
    uint32_t cp;
    int n;
    if (p[0] < 0x80) { cp = p[0]; n = 1; }
    else if ((p[0] & 0xE0) == 0xC0) { cp = p[0] & 0x1F; n = 2; }
    else if ((p[0] & 0xF0) == 0xE0) { cp = p[0] & 0x0F; n = 3; }
    else if ((p[0] & 0xF8) == 0xF0) { cp = p[0] & 0x07; n = 4; }
    else { *pp = p + 1; return '?'; }
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) { *pp = p + i; return '?'; }
        cp = cp << 6 | (p[i] & 0x3F);
    }
    *pp = p + n;
    if (cp < 0x20 || cp == 0x7F) return ' ';
    int narrow = cp < 0x300 || (cp >= 0x2000 && cp <= 0x25FF) || (cp >= 0x2800 && cp <= 0x28FF);
    return narrow ? cp : '?';
}

/* Text at (x, y), at most maxw columns; returns the columns used. */
static int put(dash_screen *s, int x, int y, int maxw, int color, int bold, const char *text) {
    const unsigned char *p = (const unsigned char *)text;
    int n = 0;
    while (*p && n < maxw) put_ch(s, x + n++, y, utf8_next(&p), color, bold);
    return n;
}

static int putf(dash_screen *s, int x, int y, int maxw, int color, int bold, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static int putf(dash_screen *s, int x, int y, int maxw, int color, int bold, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return put(s, x, y, maxw, color, bold, buf);
}

static int text_cols(const char *t) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

/* "─ title ──────" across w columns. */
static void title(dash_screen *s, int x, int y, int w, int color, const char *t) {
    for (int i = 0; i < w; i++) put_ch(s, x + i, y, 0x2500, DASH_C_DIM, 0);
    if (w > 4) {
        put_ch(s, x + 1, y, ' ', DASH_C_NORMAL, 0);
        int n = put(s, x + 2, y, w - 4, color, 1, t);
        put_ch(s, x + 2 + n, y, ' ', DASH_C_NORMAL, 0);
    }
}

/* ---- number formats ------------------------------------------------------------------------ */
static void fmt_dur(char *b, size_t cap, double s) {
    if (!(s >= 0)) snprintf(b, cap, "-");
    else if (s < 60) snprintf(b, cap, "%.1fs", s);
    else if (s < 3600) snprintf(b, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else if (s < 86400 * 4) snprintf(b, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(b, cap, "%.1fd", s / 86400);
}

static void fmt_commas(char *b, size_t cap, long long v) {
    char t[32];
    snprintf(t, sizeof t, "%lld", v < 0 ? -v : v);
    size_t n = strlen(t), o = 0;
    if (v < 0 && o + 1 < cap) b[o++] = '-';
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) b[o++] = ',';
        b[o++] = t[i];
    }
    b[o] = 0;
}

static void fmt_si(char *b, size_t cap, double v) {
    if (v >= 1e9) snprintf(b, cap, "%.2fG", v / 1e9);
    else if (v >= 1e6) snprintf(b, cap, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(b, cap, "%.1fK", v / 1e3);
    else snprintf(b, cap, "%.0f", v);
}

static void fmt_loss(char *b, size_t cap, double v) {
    if (isfinite(v)) snprintf(b, cap, "%.4f", v);
    else snprintf(b, cap, "-");
}

/* ---- header --------------------------------------------------------------------------------- */
static const char *preset_name(const dash_model *m) {
    if (m->preset[0]) return m->preset;
    for (int i = 0; model_preset_names[i]; i++) { /* today's logs: recognise the shape */
        model_config c;
        if (model_preset(model_preset_names[i], &c)) continue;
        if (c.dim == m->dim && c.hidden_dim == m->hidden_dim && c.n_layers == m->n_layers && c.n_heads == m->n_heads &&
            c.n_kv_heads == m->n_kv_heads && c.vocab_size == m->vocab_size && c.seq_len == m->seq_len)
            return model_preset_names[i];
    }
    return "custom";
}

static void draw_header(dash_screen *s, const dash_model *m, const dash_view *v) {
    int w = s->w;
    for (int x = 0; x < w; x++) put_ch(s, x, 0, ' ', DASH_C_TITLE, 0);
    int x = put(s, 0, 0, w, DASH_C_TITLE, 1, " fable dash ");
    if (!m->have_start) {
        putf(s, x, 0, w - x, DASH_C_TITLE, 0, "· %s · waiting for the trainer's start record", v->mode);
        return;
    }
    char p[32], out_buf[512];
    fmt_commas(p, sizeof p, m->params);
    x += putf(s, x, 0, w - x, DASH_C_TITLE, 1, "· %s ", preset_name(m));
    if (w >= 110)
        putf(s, x, 0, w - x, DASH_C_TITLE, 0, "· %s params · dim %d · hidden %d · %d layers · %d/%d heads · vocab %d · seq %d%s",
             p, m->dim, m->hidden_dim, m->n_layers, m->n_heads, m->n_kv_heads, m->vocab_size, m->seq_len,
             m->tied ? "" : " · untied");
    else
        putf(s, x, 0, w - x, DASH_C_TITLE, 0, "· %s params · d%d f%d L%d H%d/%d V%d T%d%s", p, m->dim, m->hidden_dim,
             m->n_layers, m->n_heads, m->n_kv_heads, m->vocab_size, m->seq_len, m->tied ? "" : " untied");
    /* the run folder: the start record's, the user's, or where the checkpoints go */
    const char *out = m->out[0] ? m->out : v->out;
    if (!out && m->last_ckpt[0]) {
        snprintf(out_buf, sizeof out_buf, "%s", m->last_ckpt);
        char *sl = strrchr(out_buf, '/');
        if (sl) *sl = 0;
        out = sl ? out_buf : ".";
    }
    const char *recipe = m->recipe[0] ? m->recipe : v->recipe ? v->recipe : "?";
    char line[1024];
    int n = snprintf(line, sizeof line, " recipe %s · %s %s · %d threads · %dx%d ×%d accum · run %s", recipe, m->engine,
                     m->precision, m->threads, m->batch, m->seq, m->accum, out ? out : "?");
    if (n + 3 + (int)strlen(m->device) <= w && m->device[0])
        snprintf(line + n, sizeof line - (size_t)n, " · %s", m->device);
    put(s, 0, 1, w, DASH_C_NORMAL, 0, line);
}

/* ---- the braille loss curve ------------------------------------------------------------------ */
typedef struct {
    int dw, dh;         /* dots */
    uint8_t *dots;      /* [ph][pw] masks */
    uint8_t *color;     /* [ph][pw] */
    int pw, ph;
} canvas;

static void dot(canvas *c, int x, int y, int color) {
    if (x < 0 || y < 0 || x >= c->dw || y >= c->dh) return;
    static const uint8_t bit[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};
    size_t i = (size_t)(y / 4) * c->pw + x / 2;
    c->dots[i] |= bit[y % 4][x % 2];
    if (color == DASH_C_VAL || c->color[i] == 0) c->color[i] = (uint8_t)color;
}

static void line(canvas *c, int x0, int y0, int x1, int y1, int color) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        dot(c, x0, y0, color);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

typedef struct {
    double x0, x1, y0, y1;
    int log;
} axes;

static double ty(const axes *a, double y) { return a->log ? log(y > 1e-9 ? y : 1e-9) : y; }

static void plot(canvas *c, const axes *a, const dash_series *sr, int color) {
    int px = 0, py = 0, have = 0;
    double ylo = ty(a, a->y0), yhi = ty(a, a->y1);
    for (size_t i = 0; i < sr->n; i++) {
        if (sr->x[i] < a->x0 || sr->x[i] > a->x1) continue;
        int x = (int)lround((sr->x[i] - a->x0) / (a->x1 - a->x0) * (c->dw - 1));
        int y = (int)lround((yhi - ty(a, sr->y[i])) / (yhi - ylo) * (c->dh - 1));
        if (have) line(c, px, py, x, y, color);
        else dot(c, x, y, color);
        px = x;
        py = y;
        have = 1;
    }
}

static void draw_chart(dash_screen *s, int x0, int y0, int w, int h, const dash_model *m, const dash_view *v) {
    char t[160];
    const dash_series *tr = &m->train_curve, *va = &m->val_curve;
    int last = v->last_n && v->window > 0;
    snprintf(t, sizeof t, "loss: train ⣀ val %s%s%s", va->n ? "⣿" : "(none yet)", v->log_scale ? " · log" : "",
             last ? "" : " · whole run");
    if (last) snprintf(t + strlen(t), sizeof t - strlen(t), " · last %d", v->window);
    title(s, x0, y0, w, DASH_C_TITLE, t);
    const int lab = 7;
    canvas c = {.pw = w - lab - 1, .ph = h - 2};
    if (c.pw < 4 || c.ph < 2) return;
    c.dw = c.pw * 2;
    c.dh = c.ph * 4;
    if (!tr->n && !va->n) {
        put(s, x0 + lab + 2, y0 + 1 + c.ph / 2, c.pw - 2, DASH_C_DIM, 0, "no updates yet");
        return;
    }
    /* x: the whole run so far, or the last `window` updates */
    double xmax = tr->n ? tr->x[tr->n - 1] : va->x[va->n - 1];
    if (va->n && va->x[va->n - 1] > xmax) xmax = va->x[va->n - 1];
    axes a = {.log = v->log_scale};
    if (last) {
        a.x0 = xmax - v->window > 0 ? xmax - v->window : 0;
        a.x1 = xmax;
    } else {
        a.x0 = tr->n ? tr->x[0] : va->x[0];
        if (va->n && va->x[0] < a.x0) a.x0 = va->x[0];
        a.x1 = xmax;
    }
    if (a.x1 <= a.x0) a.x1 = a.x0 + 1;
    a.y0 = INFINITY;
    a.y1 = -INFINITY;
    const dash_series *both[2] = {tr, va};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < both[k]->n; i++)
            if (both[k]->x[i] >= a.x0 && both[k]->x[i] <= a.x1) {
                if (both[k]->y[i] < a.y0) a.y0 = both[k]->y[i];
                if (both[k]->y[i] > a.y1) a.y1 = both[k]->y[i];
            }
    if (!(a.y1 > a.y0)) { a.y0 -= 0.5; a.y1 += 0.5; }
    if (a.log && a.y0 <= 0) a.log = 0;
    uint8_t dots[c.pw * c.ph], colr[c.pw * c.ph];
    memset(dots, 0, sizeof dots);
    memset(colr, 0, sizeof colr);
    c.dots = dots;
    c.color = colr;
    plot(&c, &a, tr, DASH_C_TRAIN);
    plot(&c, &a, va, DASH_C_VAL);
    for (int r = 0; r < c.ph; r++)
        for (int q = 0; q < c.pw; q++) {
            uint8_t d = dots[r * c.pw + q];
            if (d) put_ch(s, x0 + lab + 1 + q, y0 + 1 + r, 0x2800 + d, colr[r * c.pw + q], 0);
        }
    /* y labels: top, middle, bottom of the data range (the middle one geometric on a log axis) */
    double mid = a.log ? sqrt(a.y0 * a.y1) : (a.y0 + a.y1) / 2;
    double ys[3] = {a.y1, mid, a.y0};
    int rows[3] = {0, (c.ph - 1) / 2, c.ph - 1};
    for (int i = 0; i < 3; i++) {
        if (i == 1 && c.ph < 5) continue;
        putf(s, x0, y0 + 1 + rows[i], lab, DASH_C_DIM, 0, "%*.3f", lab - 1, ys[i]);
        put_ch(s, x0 + lab, y0 + 1 + rows[i], 0x2524, DASH_C_DIM, 0);
    }
    for (int r = 0; r < c.ph; r++)
        if (r != rows[0] && r != rows[2] && !(r == rows[1] && c.ph >= 5)) put_ch(s, x0 + lab, y0 + 1 + r, 0x2502, DASH_C_DIM, 0);
    /* x labels */
    int yl = y0 + 1 + c.ph;
    put_ch(s, x0 + lab, yl, 0x2514, DASH_C_DIM, 0);
    for (int q = 0; q < c.pw; q++) put_ch(s, x0 + lab + 1 + q, yl, 0x2500, DASH_C_DIM, 0);
    char b[32];
    snprintf(b, sizeof b, " %.0f ", a.x0);
    put(s, x0 + lab + 1, yl, c.pw, DASH_C_DIM, 0, b);
    snprintf(b, sizeof b, " update %.0f ", a.x1);
    int n = text_cols(b);
    if (n < c.pw - 8) put(s, x0 + lab + 1 + c.pw - n, yl, n, DASH_C_DIM, 0, b);
}

/* ---- stats ------------------------------------------------------------------------------------ */
static void stat(dash_screen *s, int x, int y, int w, const char *label, int color, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void stat(dash_screen *s, int x, int y, int w, const char *label, int color, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    int n = put(s, x, y, w, DASH_C_DIM, 0, label);
    put(s, x + (n < 10 ? 10 : n + 1), y, w - 10, color, 1, buf);
}

static void draw_stats(dash_screen *s, int x0, int y0, int w, int h, const dash_model *m) {
    char t[64];
    snprintf(t, sizeof t, "%s", m->ended ? "stats · finished" : "stats");
    title(s, x0, y0, w, m->ended ? DASH_C_GOOD : DASH_C_TITLE, t);
    int y = y0 + 1, x = x0 + 1;
    w -= 1;
    char a[48], b[48], c[48];
    int rows = h - 1, split = rows >= 12; /* lr and grad norm on their own lines when there is room */
    double pct = m->steps > 0 ? 100.0 * (double)m->update / (double)m->steps : 0;
    stat(s, x, y++, w, "update", DASH_C_NORMAL, "%lld / %lld (%.0f%%)", m->update, m->steps, pct);
    double eta = dash_model_eta(m);
    fmt_dur(a, sizeof a, eta);
    if (m->ended) stat(s, x, y++, w, "ETA", DASH_C_GOOD, "finished (%s)", m->end_reason);
    else stat(s, x, y++, w, "ETA", DASH_C_NORMAL, "%s", a);
    fmt_loss(a, sizeof a, m->loss);
    stat(s, x, y++, w, "loss", DASH_C_TRAIN, "%s", a);
    fmt_loss(a, sizeof a, m->best_val);
    if (isfinite(m->best_val)) stat(s, x, y++, w, "best val", DASH_C_VAL, "%s @ %lld", a, m->best_val_step);
    else stat(s, x, y++, w, "best val", DASH_C_DIM, "-");
    if (split) {
        stat(s, x, y++, w, "lr", DASH_C_NORMAL, "%.2e", m->lr);
        stat(s, x, y++, w, "grad norm", DASH_C_NORMAL, "%.3f", m->grad_norm);
    } else {
        stat(s, x, y++, w, "lr", DASH_C_NORMAL, "%.2e  gn %.3f", m->lr, m->grad_norm);
    }
    stat(s, x, y++, w, "ms/update", DASH_C_NORMAL, "%.1f", m->train_ms);
    fmt_commas(a, sizeof a, llround(m->tokens_per_s));
    stat(s, x, y++, w, "tokens/s", DASH_C_NORMAL, "%s", a);
    stat(s, x, y++, w, "GFLOP/s", DASH_C_NORMAL, "%.1f  MFU %.1f%%", m->gflops, m->mfu_pct);
    fmt_si(b, sizeof b, (double)m->tokens);
    stat(s, x, y++, w, "tokens", DASH_C_NORMAL, "%s", b);
    fmt_dur(c, sizeof c, dash_model_elapsed(m));
    stat(s, x, y++, w, "elapsed", DASH_C_NORMAL, "%s", c);
    if (y < y0 + h && m->n_evals) {
        fmt_loss(a, sizeof a, m->val_loss);
        stat(s, x, y++, w, "last val", DASH_C_VAL, "%s @ %lld", a, m->val_step);
    }
    if (y < y0 + h && m->n_ckpts) stat(s, x, y++, w, "checkpoint", DASH_C_CKPT, "@ %lld", m->last_ckpt_step);
}

/* ---- phases ----------------------------------------------------------------------------------- */
static void draw_phases(dash_screen *s, int y0, int h, const dash_model *m) {
    int w = s->w;
    double tot = 0;
    for (int p = 0; p < DASH_NPH; p++) tot += m->phase[p];
    if (h >= DASH_NPH + 1) { /* one bar per phase */
        char t[96];
        snprintf(t, sizeof t, "phases of update %lld: %.1f ms (wall %.1f)", m->update, tot, m->train_ms);
        title(s, 0, y0, w, DASH_C_TITLE, t);
        int bw = w - 30;
        for (int p = 0; p < DASH_NPH; p++) {
            int y = y0 + 1 + p;
            put(s, 1, y, 8, DASH_C_DIM, 0, dash_phase_names[p]);
            int n = tot > 0 ? (int)lround(m->phase[p] / tot * bw) : 0;
            for (int i = 0; i < n; i++) put_ch(s, 10 + i, y, 0x2588, DASH_C_BAR0 + p, 0);
            if (n == 0 && m->phase[p] > 0) put_ch(s, 10, y, 0x258F, DASH_C_BAR0 + p, 0);
            putf(s, 10 + bw + 1, y, 19, DASH_C_NORMAL, 0, "%9.2f ms %5.1f%%", m->phase[p],
                 tot > 0 ? 100 * m->phase[p] / tot : 0);
        }
        return;
    }
    /* a stacked bar and a legend */
    int x = put(s, 0, y0, 8, DASH_C_TITLE, 1, "phases ");
    int bw = w - x - 1, used = 0;
    for (int p = 0; p < DASH_NPH && tot > 0; p++) {
        int n = (int)lround(m->phase[p] / tot * bw);
        if (used + n > bw) n = bw - used;
        for (int i = 0; i < n; i++) put_ch(s, x + used + i, y0, (p & 1) ? 0x2593 : 0x2588, DASH_C_BAR0 + p, 0);
        used += n;
    }
    if (tot <= 0) put(s, x, y0, bw, DASH_C_DIM, 0, "(no complete update yet)");
    x = 1;
    for (int p = 0; p < DASH_NPH; p++) {
        if (m->phase[p] <= 0 && (p == DASH_PH_DW_WAIT || p == DASH_PH_DW)) continue;
        char b[48];
        snprintf(b, sizeof b, m->phase[p] < 1 ? "%s %.2f" : "%s %.1f", dash_phase_names[p], m->phase[p]);
        int n = text_cols(b);
        if (x + n + 2 > w - 3) break;
        put_ch(s, x, y0 + 1, (p & 1) ? 0x2593 : 0x2588, DASH_C_BAR0 + p, 0);
        put(s, x + 1, y0 + 1, n, DASH_C_NORMAL, 0, b);
        x += n + 3;
    }
    if (x + 3 <= w) put(s, x - 1, y0 + 1, 3, DASH_C_DIM, 0, "ms");
}

/* ---- the machine ------------------------------------------------------------------------------ */
static void spark(dash_screen *s, int x, int y, int w, const dash_hist *h, double lo, double hi, int color) {
    int n = h->n < w ? h->n : w;
    for (int i = 0; i < n; i++) {
        float v = dash_hist_at(h, h->n - n + i);
        int k = hi > lo ? (int)lround((v - lo) / (hi - lo) * 7) : 0;
        if (k < 0) k = 0;
        if (k > 7) k = 7;
        put_ch(s, x + (w - n) + i, y, 0x2581 + (uint32_t)k, color, 0);
    }
}

static double hist_max(const dash_hist *h, double floor) {
    double m = floor;
    for (int i = 0; i < h->n; i++)
        if (dash_hist_at(h, i) > m) m = dash_hist_at(h, i);
    return m;
}

static int draw_sys(dash_screen *s, int y0, const dash_model *m, const dash_sys *sys) {
    int w = s->w, half = w / 2, y = y0;
    char b[160];
    if (sys->proc_ok) {
        int n = putf(s, 0, y, half, DASH_C_NORMAL, 0, " cpu %4.0f%% ", sys->cpu_pct);
        spark(s, n, y, half - n - 1, &sys->cpu, 0, hist_max(&sys->cpu, 100), DASH_C_TRAIN);
        n = putf(s, half, y, w - half, DASH_C_NORMAL, 0, " rss %6.0f MB ", sys->rss_mb);
        spark(s, half + n, y, w - half - n - 1, &sys->rss, 0, hist_max(&sys->rss, 1), DASH_C_VAL);
    } else {
        putf(s, 0, y, w, DASH_C_DIM, 0, " trainer cpu, rss: n/a (%s)", sys->proc_why);
    }
    y++;
    if (sys->power_off) {
        put(s, 0, y, w, DASH_C_DIM, 0, " power: off (--no-power)");
    } else {
        int x = put(s, 0, y, w, DASH_C_NORMAL, 0, " power ");
        if (sys->rapl_ok) {
            x += putf(s, x, y, w - x, DASH_C_NORMAL, 0, "cpu %.1f W ", sys->rapl_w);
            spark(s, x, y, 16, &sys->rapl, 0, hist_max(&sys->rapl, 1), DASH_C_WARN);
            x += 17;
        } else {
            snprintf(b, sizeof b, "cpu n/a (%s) ", sys->rapl_why);
            x += put(s, x, y, w - x, DASH_C_DIM, 0, b);
        }
        if (sys->nvml_ok) {
            x += putf(s, x, y, w - x, DASH_C_NORMAL, 0, "· gpu %.0f W ", sys->gpu_w);
            if (x + 16 < w) spark(s, x, y, 16, &sys->gpu_pw, 0, hist_max(&sys->gpu_pw, 1), DASH_C_WARN);
        } else {
            snprintf(b, sizeof b, "· gpu n/a (%s)", sys->nvml_why);
            put(s, x, y, w - x, DASH_C_DIM, 0, b);
        }
    }
    y++;
    if (!strcmp(m->engine, "cuda")) {
        if (sys->nvml_ok) {
            int n = putf(s, 0, y, half, DASH_C_NORMAL, 0, " gpu %4.0f%% ", sys->gpu_util);
            spark(s, n, y, half - n - 1, &sys->gpu_ut, 0, 100, DASH_C_TRAIN);
            n = putf(s, half, y, w - half, DASH_C_NORMAL, 0, " gpu mem %.1f/%.0f GB ", sys->gpu_mem_mb / 1024,
                     sys->gpu_mem_total_mb / 1024);
            spark(s, half + n, y, w - half - n - 1, &sys->gpu_mem, 0, sys->gpu_mem_total_mb, DASH_C_VAL);
        } else {
            putf(s, 0, y, w, DASH_C_DIM, 0, " gpu utilisation, memory: n/a (%s)", sys->nvml_why);
        }
        y++;
    }
    return y - y0;
}

/* ---- sample ----------------------------------------------------------------------------------- */
static void draw_sample(dash_screen *s, int y0, int h, const dash_model *m, const dash_view *v) {
    char t[160];
    if (m->sample)
        snprintf(t, sizeof t, "sample · update %lld · %s · %.0f tok/s%s", m->sample_step,
                 m->sample_by_dash ? "from the newest checkpoint (g)" : "trainer", m->sample_tps,
                 v->gen_busy ? " · generating…" : "");
    else
        snprintf(t, sizeof t, "sample%s", v->gen_busy ? " · generating…" : "");
    title(s, 0, y0, s->w, DASH_C_SAMPLE, t);
    if (!m->sample) {
        put(s, 1, y0 + 1, s->w - 2, DASH_C_DIM, 0,
            v->no_generate ? "none yet (the trainer writes one every --sample-every updates)"
                           : "none yet (the trainer writes one every --sample-every updates; g: generate now)");
        return;
    }
    /* word wrap into h-1 rows of w-2 columns */
    const char *p = m->sample;
    int w = s->w - 2;
    for (int r = 1; r < h && *p; r++) {
        int cols = 0, brk = -1, brk_cols = 0;
        const unsigned char *q = (const unsigned char *)p;
        while (*q && *q != '\n' && cols < w) {
            if (*q == ' ') { brk = (int)((const char *)q - p); brk_cols = cols; }
            utf8_next(&q);
            cols++;
        }
        int len = (int)((const char *)q - p);
        if (*q && *q != '\n' && brk > 0) { len = brk; cols = brk_cols; }
        char line[1024];
        if (len > (int)sizeof line - 1) len = (int)sizeof line - 1;
        memcpy(line, p, (size_t)len);
        line[len] = 0;
        put(s, 1, y0 + r, w, DASH_C_NORMAL, 0, line);
        p += len;
        if (*p == '\n' || *p == ' ') p++;
    }
}

/* ---- log -------------------------------------------------------------------------------------- */
static void draw_log(dash_screen *s, int y0, int h, const dash_model *m, const dash_view *v) {
    char t[1024];
    int tcolor = DASH_C_TITLE;
    if (m->ended) {
        char d[32];
        fmt_dur(d, sizeof d, m->end_seconds);
        int err = !strcmp(m->end_reason, "error");
        char l[16];
        fmt_loss(l, sizeof l, m->end_loss);
        snprintf(t, sizeof t, "%s (%s) · update %lld/%lld · last loss %s · %s%s%s",
                 err ? "training stopped" : "training finished", m->end_reason, m->end_step, m->steps, l, d,
                 m->end_ckpt[0] ? " · " : "", m->end_ckpt);
        tcolor = err ? DASH_C_ERROR : DASH_C_GOOD;
    } else {
        snprintf(t, sizeof t, "log · %lld lines%s", m->n_log, v->paused ? " · autoscroll paused (p)" : "");
    }
    title(s, 0, y0, s->w, tcolor, t);
    int rows = h - 1;
    long long first_kept = m->n_log > DASH_LOG_MAX ? m->n_log - DASH_LOG_MAX : 0;
    long long last = v->log_top >= 0 && v->log_top < m->n_log ? v->log_top : m->n_log - 1;
    long long first = last - rows + 1;
    if (first < first_kept) first = first_kept;
    static const char *tag[] = {"info", "eval", "ckpt", "smpl", "warn", "ERR ", "end "};
    static const int col[] = {DASH_C_NORMAL, DASH_C_VAL, DASH_C_CKPT, DASH_C_SAMPLE, DASH_C_WARN, DASH_C_ERROR, DASH_C_GOOD};
    for (long long i = first, r = 1; i <= last && r <= rows; i++, r++) {
        const dash_log_line *l = &m->log[i % DASH_LOG_MAX];
        put(s, 1, y0 + (int)r, 4, col[l->kind], 1, tag[l->kind]);
        put(s, 6, y0 + (int)r, s->w - 7, l->kind == DASH_LOG_INFO ? DASH_C_NORMAL : col[l->kind], 0, l->text);
    }
    if (last < m->n_log - 1) putf(s, s->w - 24, y0 + h - 1, 24, DASH_C_WARN, 1, " ↓ %lld more lines ", m->n_log - 1 - last);
}

static void draw_keys(dash_screen *s, int y, const dash_view *v) {
    for (int x = 0; x < s->w; x++) put_ch(s, x, y, ' ', DASH_C_TITLE, 0);
    char k[200];
    snprintf(k, sizeof k, " q quit%s%s · p %s · ↑↓ scroll · l log · z %s ",
             v->launch ? " · r restart" : "", v->no_generate ? "" : " · g generate", v->paused ? "resume" : "pause",
             v->last_n ? "whole run" : "last N");
    int n = text_cols(k);
    int x;
    if (v->status[0]) x = put(s, 0, y, s->w, DASH_C_TITLE, 1, v->status);
    else x = putf(s, 0, y, s->w, DASH_C_TITLE, 1, " %s%s", v->mode, v->launch ? (v->trainer_running ? " · trainer running" : " · trainer stopped") : "");
    if (x + n < s->w) put(s, s->w - n, y, n, DASH_C_TITLE, 0, k);
}

void dash_render(dash_screen *s, const dash_model *m, const dash_sys *sys, const dash_view *v) {
    clear(s);
    int w = s->w, h = s->h;
    if (w < DASH_MIN_W || h < DASH_MIN_H) {
        const char *l1 = "terminal too small";
        char l2[80];
        snprintf(l2, sizeof l2, "%dx%d, need %dx%d", w, h, DASH_MIN_W, DASH_MIN_H);
        put(s, (w - (int)strlen(l1)) / 2, h / 2 - 1, w, DASH_C_WARN, 1, l1);
        put(s, (w - (int)strlen(l2)) / 2, h / 2, w, DASH_C_NORMAL, 0, l2);
        if (h > 3) put(s, 0, h - 1, w, DASH_C_DIM, 0, "q quit");
        return;
    }
    int cuda = !strcmp(m->engine, "cuda");
    int sys_h = 2 + cuda;
    int extra = h - DASH_MIN_H - cuda;
    int top = 11, ph = 2, sample = 3, logh = 3;
    if (extra >= DASH_NPH + 1 - 2 + 4) { ph = DASH_NPH + 1; extra -= ph - 2; }
    if (extra > 0) {
        int t = extra * 4 / 10, sm = extra * 2 / 10;
        if (sm > 4) sm = 4;
        top += t;
        sample += sm;
        logh += extra - t - sm;
    } else {
        logh += extra; /* cuda at 24 rows: one log row fewer */
    }
    draw_header(s, m, v);
    int sw = w >= 120 ? 40 : 32, lw = w - sw;
    int y = 2;
    draw_chart(s, 0, y, lw - 1, top, m, v);
    for (int r = y; r < y + top; r++) put_ch(s, lw - 1, r, r == y ? 0x252C : 0x2502, DASH_C_DIM, 0);
    draw_stats(s, lw, y, sw, top, m);
    y += top;
    draw_phases(s, y, ph, m);
    y += ph;
    y += draw_sys(s, y, m, sys) + (sys_h - sys_h);
    draw_sample(s, y, sample, m, v);
    y += sample;
    draw_log(s, y, logh, m, v);
    draw_keys(s, h - 1, v);
}

char *dash_screen_text(const dash_screen *s) {
    size_t cap = (size_t)s->w * s->h * 4 + s->h + 1, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (int y = 0; y < s->h; y++) {
        size_t start = o, end = o;
        for (int x = 0; x < s->w; x++) {
            uint32_t c = s->c[(size_t)y * s->w + x].ch;
            if (c < 0x80) out[o++] = (char)c;
            else if (c < 0x800) { out[o++] = (char)(0xC0 | c >> 6); out[o++] = (char)(0x80 | (c & 0x3F)); }
            else { out[o++] = (char)(0xE0 | c >> 12); out[o++] = (char)(0x80 | (c >> 6 & 0x3F)); out[o++] = (char)(0x80 | (c & 0x3F)); }
            if (c != ' ') end = o;
        }
        (void)start;
        o = end;
        out[o++] = '\n';
    }
    out[o] = 0;
    return out;
}
