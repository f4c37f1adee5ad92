/* fable — fetching data files: HTTP(S) downloads with libcurl (resume, checksum,
 * progress) and local copies/links.
 *
 * A download goes to "<dest>.part" and is renamed to dest only when complete and, when a
 * checksum is given, verified; so dest never holds a partial or corrupt file. An existing
 * .part is resumed with an HTTP Range request (bytes=<size>-); a server that ignores the
 * range gets a fresh download. A checksum mismatch deletes the .part (resuming it would
 * only rebuild the same wrong file).
 */
#ifndef FABLE_DOWNLOAD_H
#define FABLE_DOWNLOAD_H

#include <stdint.h>

typedef struct {
    const char *sha256;      /* expected digest (64 hex), or NULL: not verified */
    const char *label;       /* name on the progress bar */
    int progress;            /* draw a progress bar on stderr */
    long connect_timeout_s;  /* 0 = 20 s */
    long stall_timeout_s;    /* abort when no byte arrives for this long; 0 = 60 s */
} dl_opts;

typedef struct {
    uint64_t resumed_from;   /* bytes already in the .part when the transfer started */
    uint64_t fetched;        /* bytes transferred this time */
    uint64_t size;           /* final file size */
    long http_code;          /* last HTTP status (0 for non-HTTP) */
    char sha256[65];         /* digest of the final file */
} dl_result;

/* 1 if s looks like a URL (scheme "://"), else a local path. */
int dl_is_url(const char *s);
/* Download url to dest (see above). 0, or -1 + fb_err naming the URL and the reason. */
int dl_fetch(const char *url, const char *dest, const dl_opts *o, dl_result *r);
/* Put local file src at dest: a symbolic link to its absolute path (link = 1) or an
 * atomic copy (link = 0). dest is replaced if it exists. */
int dl_local(const char *src, const char *dest, int link);

#endif
