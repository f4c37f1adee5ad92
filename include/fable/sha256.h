/* fable — SHA-256 (FIPS 180-4), for verifying downloaded data files. */
#ifndef FABLE_SHA256_H
#define FABLE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];        /* chaining value */
    uint64_t bytes;       /* message length so far */
    unsigned char buf[64];
    size_t fill;          /* bytes pending in buf */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, unsigned char out[32]);
/* One-shot digest as 64 lowercase hex digits + NUL. */
void sha256_hex(const void *data, size_t len, char hex[65]);
/* Digest of a file's contents (streamed); -1 + fb_err if it cannot be read. */
int sha256_file(const char *path, char hex[65]);
/* Is s 64 hex digits? (case-insensitive) */
int sha256_valid_hex(const char *s);

#endif
