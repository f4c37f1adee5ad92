/* fable — small shared utilities: error reporting, aligned memory, RNG, timing, files.
 *
 * Error convention for the whole library: a function that can fail returns int
 * (0 = ok, -1 = error) or NULL, after calling fb_err() with a message that names
 * what failed and why ("model.bin: truncated: header says 264128 floats, file
 * holds 1000"). The CLI prints fb_errmsg() and exits non-zero. Library code never
 * calls exit().
 */
#ifndef FABLE_UTIL_H
#define FABLE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __GNUC__
#define FB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FB_PRINTF(a, b)
#endif

/* ---- errors ---------------------------------------------------------------- */
/* Record the current error message (thread-local). Always returns -1. */
int fb_err(const char *fmt, ...) FB_PRINTF(1, 2);
/* Like fb_err but appends ": strerror(errno)". */
int fb_errno(const char *fmt, ...) FB_PRINTF(1, 2);
const char *fb_errmsg(void);
/* Print "fable: <msg>" to stderr and exit(1). For the CLI only. */
void fb_die(const char *fmt, ...) FB_PRINTF(1, 2) __attribute__((noreturn));

/* ---- memory ---------------------------------------------------------------- */
/* 64-byte aligned, zeroed allocation; NULL + fb_err on failure. Free with fb_free. */
void *fb_alloc(size_t bytes);
void fb_free(void *p);
/* Bytes of memory available to new allocations (MemAvailable of /proc/meminfo), or 0 when
 * unknown. FABLE_MEM_AVAILABLE_MB (may be fractional) overrides it (tests use it to simulate a
 * small machine).
 * Large buffers are checked against it first: Linux may grant more than it can back, and
 * then the process is killed when fb_alloc zeroes the pages instead of seeing NULL. */
size_t fb_mem_available(void);

/* ---- random numbers ---------------------------------------------------------- */
/* xorshift64* (Vigna): the generator llama2.c's run.c uses for sampling, so that
 * `fable sample --seed S` reproduces run.c's samples. State must be non-zero. */
typedef struct { uint64_t s; } fb_rng;
void fb_rng_seed(fb_rng *r, uint64_t seed);   /* state = seed (0 mapped to a constant) */
uint32_t fb_rng_u32(fb_rng *r);               /* (s * 0x2545F4914F6CDD1D) >> 32 after xorshift */
float fb_rng_f32(fb_rng *r);                  /* uniform [0,1): u32 >> 8 / 2^24 */
double fb_rng_normal(fb_rng *r);              /* N(0,1) by Box–Muller from two f64 uniforms */
void fb_rng_normal2(fb_rng *r, double *z0, double *z1); /* two independent N(0,1): both Box–Muller outputs */
uint64_t fb_rng_u64(fb_rng *r);

/* ---- time ------------------------------------------------------------------ */
double fb_now(void);                          /* monotonic seconds */
/* The median of x[0..n) (n >= 1; the mean of the two middle values when n is even). Sorts x
 * in place, so afterwards x[0] is the minimum and x[n − 1] the maximum. */
double fb_median(double *x, int n);

/* ---- files ----------------------------------------------------------------- */
/* Read a whole file into a malloc'd buffer (+1 NUL byte, not counted). */
int fb_read_file(const char *path, char **data, size_t *len);
/* Write atomically: path.tmp, fsync, rename, fsync dir. Reports ENOSPC clearly. */
int fb_write_file_atomic(const char *path, const void *data, size_t len);
/* fwrite that reports short writes (disk full) with the path in the message. */
int fb_fwrite(FILE *f, const void *p, size_t n, const char *path);
int fb_mkdir_p(const char *path);

/* One run per folder: an exclusive, non-blocking flock on "<dir>/.lock", which then holds the
 * holder's pid. Returns the lock's file descriptor (keep it open for the whole run; closing it,
 * or the process ending in any way, crashes and SIGKILL included, releases the lock), or -1 +
 * fb_err naming the folder and the pid that holds it. The file itself stays behind: removing it
 * would let two runs lock two different files of the same name. */
int fb_lock_dir(const char *dir);
void fb_unlock_dir(int fd);

/* Streaming atomic write: data goes to "<path>.tmp.<pid>"; commit = flush, fsync, rename,
 * fsync the directory. On any error the temp file is removed and the old file is intact. */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4200];
} fb_atomic;
int fb_atomic_begin(fb_atomic *a, const char *path);
int fb_atomic_write(fb_atomic *a, const void *p, size_t n);
int fb_atomic_commit(fb_atomic *a);
void fb_atomic_abort(fb_atomic *a);

/* 64-bit FNV-1a-style checksum over bytes (for checkpoint integrity).
 * fb_hash64(h, p, n) = fb_hash64_final(fb_hash64_raw(h, p, n)). To hash one array in pieces,
 * chain fb_hash64_raw over pieces whose lengths (all but the last) are multiples of 8 bytes,
 * then apply fb_hash64_final once: the result equals fb_hash64 over the whole array. */
uint64_t fb_hash64(uint64_t h, const void *data, size_t len);
uint64_t fb_hash64_raw(uint64_t h, const void *data, size_t len);
uint64_t fb_hash64_final(uint64_t h);
#define FB_HASH_INIT 0xcbf29ce484222325ULL

#ifdef __cplusplus
}
#endif
#endif
