/* fable — shared utilities (see include/fable/util.h). */
#include "fable/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------------ */
static _Thread_local char err_buf[2048];

int fb_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int fb_errno(const char *fmt, ...) {
    int e = errno;
    char tmp[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    /* what the errno means for whoever runs fable, and what to do about it */
    const char *hint = "";
    if (e == ENOSPC) hint = " (disk full: free space or choose another folder)";
    else if (e == EDQUOT) hint = " (disk quota exceeded: free space or choose another folder)";
    else if (e == EFBIG) hint = " (file too large: the file-size limit of this process, ulimit -f, or of the file system)";
    else if (e == EROFS) hint = " (read-only file system: choose another folder)";
    else if (e == EACCES || e == EPERM) hint = " (not writable: choose another path)";
    snprintf(err_buf, sizeof err_buf, "%s: %s%s", tmp, strerror(e), hint);
    return -1;
}

const char *fb_errmsg(void) { return err_buf[0] ? err_buf : "unknown error"; }

void fb_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fable: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---- memory ------------------------------------------------------------------ */
/* Buffers of 2 MB and more (weights, gradients, Adam moments, activations, packed panels)
 * are 2 MB aligned and asked for transparent huge pages (madvise: this kernel's THP mode
 * serves only regions that ask) before the zeroing touches them. The training step streams
 * hundreds of MB per step through the GEMM packing and AdamW; with 4 KB pages every 4 KB of
 * a cold weight costs a TLB miss whose page walk is itself cold (bench/RESULTS.md).
 * FABLE_HUGEPAGES=0 turns this off. */
#define FB_HUGE ((size_t)2 << 20)

static int want_huge(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("FABLE_HUGEPAGES");
        v = !(e && !strcmp(e, "0"));
    }
    return v;
}

void *fb_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    const int huge = rounded >= FB_HUGE && want_huge();
    if (huge) rounded = (rounded + FB_HUGE - 1) & ~(FB_HUGE - 1);
    if (posix_memalign(&p, huge ? FB_HUGE : 64, rounded) != 0) {
        fb_err("out of memory allocating %zu bytes", bytes);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (huge) madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure leaves 4 KB pages */
#endif
    memset(p, 0, rounded);
    return p;
}

void fb_free(void *p) { free(p); }

size_t fb_mem_available(void) {
    const char *o = getenv("FABLE_MEM_AVAILABLE_MB");
    if (o && *o) return (size_t)(strtod(o, NULL) * 1048576.0);
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb << 10;
}

/* ---- RNG ---------------------------------------------------------------------- */
void fb_rng_seed(fb_rng *r, uint64_t seed) { r->s = seed ? seed : 0x9E3779B97F4A7C15ULL; }

uint32_t fb_rng_u32(fb_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 0x2545F4914F6CDD1DULL) >> 32);
}

uint64_t fb_rng_u64(fb_rng *r) { return ((uint64_t)fb_rng_u32(r) << 32) | fb_rng_u32(r); }

float fb_rng_f32(fb_rng *r) { return (fb_rng_u32(r) >> 8) / 16777216.0f; }

double fb_rng_normal(fb_rng *r) {
    /* Box–Muller; u1 in (0,1] so log is finite. */
    double u1 = ((fb_rng_u64(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (fb_rng_u64(r) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void fb_rng_normal2(fb_rng *r, double *z0, double *z1) {
    double u1 = ((fb_rng_u64(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (fb_rng_u64(r) >> 11) / 9007199254740992.0;
    double rad = sqrt(-2.0 * log(u1)), s, c;
    sincos(2.0 * M_PI * u2, &s, &c);
    *z0 = rad * c;
    *z1 = rad * s;
}

/* ---- time --------------------------------------------------------------------- */
double fb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double fb_median(double *x, int n) {
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* ---- files -------------------------------------------------------------------- */
int fb_read_file(const char *path, char **data, size_t *len) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) return fb_err("%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return fb_errno("%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return fb_errno("%s: cannot seek", path); }
    long sz = ftell(f);
    if (sz < 0) { fclose(f); return fb_errno("%s: cannot tell size", path); }
    rewind(f);
    char *buf = malloc((size_t)sz + 1);
    if (!buf) { fclose(f); return fb_err("%s: out of memory (%ld bytes)", path, sz); }
    if (sz > 0 && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        fclose(f);
        return fb_errno("%s: read failed", path);
    }
    fclose(f);
    buf[sz] = 0;
    *data = buf;
    *len = (size_t)sz;
    return 0;
}

int fb_fwrite(FILE *f, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) return fb_errno("%s: write failed", path);
    return 0;
}

static int fsync_dir_of(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return 0; /* best effort */
    fsync(fd);
    close(fd);
    return 0;
}

/* Creating or renaming a file failed: when its folder has vanished (deleted under a running
 * program), say so rather than the bare "No such file or directory". */
static int file_failed(const char *file, const char *what) {
    const int e = errno;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    struct stat st;
    if (e == ENOENT && stat(dirname(dir), &st) != 0)
        return fb_err("%s: %s: its folder %s is gone (deleted or unmounted while fable was running)", file, what, dir);
    if (e == ENOENT && stat(file, &st) != 0 && strstr(what, "rename"))
        return fb_err("%s: %s: the file was deleted while fable wrote it (something is removing files in %s)", file,
                      what, dir);
    errno = e;
    return fb_errno("%s: %s", file, what);
}
static int create_failed(const char *file) { return file_failed(file, "cannot create"); }

int fb_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return create_failed(tmp);
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            fb_errno("%s: write failed", tmp);
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        fb_errno("%s: fsync failed", tmp);
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        file_failed(tmp, "cannot rename it to the final name");
        unlink(tmp);
        return -1;
    }
    return fsync_dir_of(path);
}

int fb_mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    if (n == 0) return 0;
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return fb_errno("%s: cannot create directory", tmp);
            tmp[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return fb_err("%s: not a directory", path);
    return 0;
}

/* Word-at-a-time multiply-xor hash (fast enough for GB-sized checkpoints). */
uint64_t fb_hash64_raw(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    while (len--) {
        h = (h ^ *p++) * 0x100000001B3ULL;
    }
    return h;
}

uint64_t fb_hash64_final(uint64_t h) { return h ^ (h >> 32); }

uint64_t fb_hash64(uint64_t h, const void *data, size_t len) { return fb_hash64_final(fb_hash64_raw(h, data, len)); }

/* ---- streaming atomic write --------------------------------------------------- */
int fb_atomic_begin(fb_atomic *a, const char *path) {
    snprintf(a->path, sizeof a->path, "%s", path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%d", path, (int)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) return create_failed(a->tmp);
    return 0;
}

int fb_atomic_write(fb_atomic *a, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, a->f) != n) {
        fb_errno("%s: write failed", a->tmp);
        fb_atomic_abort(a);
        return -1;
    }
    return 0;
}

void fb_atomic_abort(fb_atomic *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    unlink(a->tmp);
}

int fb_atomic_commit(fb_atomic *a) {
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0) {
        fb_errno("%s: flush failed", a->tmp);
        fb_atomic_abort(a);
        return -1;
    }
    if (fclose(a->f) != 0) {
        a->f = NULL;
        fb_errno("%s: close failed", a->tmp);
        unlink(a->tmp);
        return -1;
    }
    a->f = NULL;
    if (rename(a->tmp, a->path) != 0) {
        file_failed(a->tmp, "cannot rename it to the final name");
        unlink(a->tmp);
        return -1;
    }
    return fsync_dir_of(a->path);
}

/* ---- one run per folder ------------------------------------------------------- */
int fb_lock_dir(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return fb_errno("%s: cannot create the lock file of the folder %s", path, dir);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK) {
            errno = e;
            return fb_errno("%s: cannot lock", path);
        }
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        return fb_err("%s is in use by another run (%s%s holds %s): two runs in one folder would overwrite each "
                      "other's checkpoints; wait for it to finish, stop it, or choose another --out",
                      dir, pid[0] ? "process " : "another process", pid, path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) { /* the pid is for messages only */ }
    return fd;
}

void fb_unlock_dir(int fd) {
    if (fd >= 0) close(fd);
}
