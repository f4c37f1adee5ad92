/* fable — downloads (libcurl) and local copies; semantics in include/fable/download.h.
 *
 * Resume: libcurl's CURLOPT_RESUME_FROM_LARGE sends "Range: bytes=<have>-" and appends to
 * the .part. When the server ignores the range (200 instead of 206) libcurl stops with
 * CURLE_RANGE_ERROR and we start over once; a 416 (range not satisfiable: the .part is
 * as long as the file or longer) is accepted only if the checksum proves the .part
 * complete, else it too starts over.
 */
#include "fable/download.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fable/sha256.h"
#include "fable/util.h"

int dl_is_url(const char *s) {
    const char *p = strstr(s, "://");
    if (!p || p == s) return 0;
    for (const char *q = s; q < p; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '+' ||
              *q == '-' || *q == '.'))
            return 0;
    return 1;
}

/* ---- transfer callbacks ------------------------------------------------------------------ */
typedef struct {
    FILE *f;
    int write_errno;
    uint64_t base, got;
    int progress;
    const char *label;
    double t0, last;
} xfer;

static size_t on_write(char *p, size_t sz, size_t n, void *u) {
    xfer *x = u;
    size_t k = sz * n;
    if (fwrite(p, 1, k, x->f) != k) {
        x->write_errno = errno ? errno : EIO;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    x->got += k;
    return k;
}

static void draw(xfer *x, uint64_t now, uint64_t total, int final) {
    double t = fb_now();
    if (!final && t - x->last < 0.1) return;
    x->last = t;
    double rate = t > x->t0 ? (double)(now - x->base) / (t - x->t0) : 0;
    if (total > 0) {
        double frac = (double)now / (double)total;
        if (frac > 1) frac = 1;
        int w = 28, k = (int)(frac * w + 0.5);
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\r%-22.22s [%s] %5.1f%% %8.1f/%.1f MB %6.1f MB/s ", x->label, bar, 100 * frac, now / 1e6,
                total / 1e6, rate / 1e6);
    } else {
        fprintf(stderr, "\r%-22.22s %8.1f MB %6.1f MB/s ", x->label, now / 1e6, rate / 1e6);
    }
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

static int on_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)ultotal;
    (void)ulnow;
    xfer *x = u;
    /* dltotal/dlnow count this transfer only; a resumed one starts at base */
    draw(x, x->base + (uint64_t)dlnow, dltotal > 0 ? x->base + (uint64_t)dltotal : 0, 0);
    return 0;
}

static void curl_init_once(void) {
    static int done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = 1;
    }
}

/* One attempt. Returns the curl code; *code gets the HTTP status. */
static CURLcode transfer(const char *url, uint64_t have, const dl_opts *o, xfer *x, long *code, char *errbuf) {
    CURL *h = curl_easy_init();
    if (!h) return CURLE_FAILED_INIT;
    errbuf[0] = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L); /* Hugging Face redirects to its CDN */
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);    /* no error page in the .part */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s > 0 ? o->connect_timeout_s : 20L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s > 0 ? o->stall_timeout_s : 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "fable/1 (libcurl)");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (have) curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
    if (o->progress) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    }
    CURLcode rc = curl_easy_perform(h);
    *code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    curl_easy_cleanup(h);
    return rc;
}

static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int dl_fetch(const char *url, const char *dest, const dl_opts *o_in, dl_result *r) {
    dl_opts o = o_in ? *o_in : (dl_opts){0};
    dl_result res;
    memset(&res, 0, sizeof res);
    if (!r) r = &res;
    memset(r, 0, sizeof *r);
    if (o.sha256 && !sha256_valid_hex(o.sha256))
        return fb_err("%s: expected sha256 '%s' is not 64 hex digits", url, o.sha256);
    char part[PATH_MAX];
    if (snprintf(part, sizeof part, "%s.part", dest) >= (int)sizeof part) return fb_err("%s: path too long", dest);
    curl_init_once();
    char errbuf[CURL_ERROR_SIZE];
    for (int attempt = 0;; attempt++) {
        uint64_t have = file_size(part);
        FILE *f = fopen(part, have ? "ab" : "wb");
        if (!f) return fb_errno("%s: cannot write", part);
        xfer x = {f, 0, have, 0, o.progress, o.label ? o.label : dest, fb_now(), 0};
        if (have) fprintf(stderr, "%s: resuming at byte %llu (%s)\n", o.label ? o.label : dest,
                          (unsigned long long)have, part);
        long code = 0;
        CURLcode rc = transfer(url, have, &o, &x, &code, errbuf);
        int close_err = fclose(f) != 0 ? errno : 0;
        if (o.progress && x.got) draw(&x, have + x.got, 0, 1);
        r->resumed_from = have;
        r->fetched = x.got;
        r->http_code = code;
        if (x.write_errno || close_err) {
            errno = x.write_errno ? x.write_errno : close_err;
            return fb_errno("%s: writing the download failed", part);
        }
        int cannot_resume = have && (rc == CURLE_RANGE_ERROR || (rc == CURLE_HTTP_RETURNED_ERROR && code == 416));
        if (cannot_resume && rc != CURLE_RANGE_ERROR && o.sha256) {
            /* 416: maybe the .part is already the whole file */
            char hex[65];
            if (sha256_file(part, hex) == 0 && !strcasecmp(hex, o.sha256)) {
                rc = CURLE_OK;
                cannot_resume = 0;
            }
        }
        if (cannot_resume && attempt == 0) {
            fprintf(stderr, "%s: the server cannot resume from byte %llu; downloading again from the start\n",
                    o.label ? o.label : dest, (unsigned long long)have);
            unlink(part);
            continue;
        }
        if (rc != CURLE_OK) {
            const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
            char httpinfo[32] = "";
            if (code >= 400 && !strstr(why, "returned error")) snprintf(httpinfo, sizeof httpinfo, " (HTTP %ld)", code);
            uint64_t now = file_size(part);
            if (now == 0) unlink(part);
            if (now > 0)
                return fb_err("cannot download %s: %s%s; the %llu bytes received are kept in %s: run again to resume",
                              url, why, httpinfo, (unsigned long long)now, part);
            return fb_err("cannot download %s: %s%s", url, why, httpinfo);
        }
        break;
    }
    if (sha256_file(part, r->sha256) != 0) return -1;
    r->size = file_size(part);
    if (o.sha256 && strcasecmp(r->sha256, o.sha256) != 0) {
        unlink(part);
        return fb_err("%s: sha256 mismatch: expected %s, got %s (%llu bytes); the download was deleted", url,
                      o.sha256, r->sha256, (unsigned long long)r->size);
    }
    if (rename(part, dest) != 0) return fb_errno("%s: cannot rename to %s", part, dest);
    return 0;
}

/* ---- local files --------------------------------------------------------------------------- */
int dl_local(const char *src, const char *dest, int link) {
    struct stat st;
    if (stat(src, &st) != 0) return fb_errno("%s: cannot use as a data file", src);
    if (!S_ISREG(st.st_mode)) return fb_err("%s: not a regular file", src);
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", dest, (int)getpid()) >= (int)sizeof tmp)
        return fb_err("%s: path too long", dest);
    if (link) {
        char abs[PATH_MAX];
        if (!realpath(src, abs)) return fb_errno("%s: cannot resolve path", src);
        char rdest[PATH_MAX];
        /* linking a file onto itself would destroy it */
        if (realpath(dest, rdest) && !strcmp(rdest, abs)) return 0;
        unlink(tmp);
        if (symlink(abs, tmp) != 0) return fb_errno("%s: cannot create symbolic link", tmp);
        if (rename(tmp, dest) != 0) {
            fb_errno("%s: cannot rename to %s", tmp, dest);
            unlink(tmp);
            return -1;
        }
        return 0;
    }
    FILE *in = fopen(src, "rb");
    if (!in) return fb_errno("%s: cannot open", src);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return fb_errno("%s: cannot create", tmp);
    }
    static char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fb_fwrite(out, buf, n, tmp) != 0) {
            rc = -1;
            break;
        }
    if (rc == 0 && ferror(in)) rc = fb_errno("%s: read failed", src);
    fclose(in);
    if (rc == 0 && (fflush(out) != 0 || fsync(fileno(out)) != 0)) rc = fb_errno("%s: write failed", tmp);
    if (fclose(out) != 0 && rc == 0) rc = fb_errno("%s: write failed", tmp);
    if (rc == 0 && rename(tmp, dest) != 0) rc = fb_errno("%s: cannot rename to %s", tmp, dest);
    if (rc != 0) unlink(tmp);
    return rc;
}
