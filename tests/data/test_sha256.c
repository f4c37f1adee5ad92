/* SHA-256 against the FIPS 180-2 Appendix B examples, the empty message, every padding
 * boundary length (checked against incremental feeding) and a real file whose digest is
 * recorded independently in shared/data/PROVENANCE.md. */
#include "fable/sha256.h"
#include "fable/util.h"
#include "testlib.h"

int main(void) {
    char hex[65];
    /* FIPS 180-2 B.1: one-block message "abc" */
    sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "abc: %s", hex);
    /* FIPS 180-2 B.2: two-block message */
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m2, strlen(m2), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "abcdbcd...: %s", hex);
    /* empty message */
    sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "empty: %s", hex);
    /* FIPS 180-2 B.3: one million 'a', fed in uneven pieces */
    sha256_ctx c;
    sha256_init(&c);
    char a[1000];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, k = 1;
    while (left) {
        size_t n = k < left ? k : left;
        sha256_update(&c, a, n);
        left -= n;
        k = k % 987 + 13; /* 13..999: within a[] */
    }
    unsigned char d[32];
    sha256_final(&c, d);
    static const unsigned char want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
                                           0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
                                           0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    CHECK(memcmp(d, want, 32) == 0, "million a");
    /* Around the padding boundary (55/56/64 bytes); digests from coreutils sha256sum. */
    char b[64];
    memset(b, 'a', sizeof b);
    sha256_hex(b, 55, hex);
    CHECK(!strcmp(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"), "55 a: %s", hex);
    sha256_hex(b, 56, hex);
    CHECK(!strcmp(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"), "56 a: %s", hex);
    sha256_hex(b, 64, hex);
    CHECK(!strcmp(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"), "64 a: %s", hex);
    /* byte-at-a-time equals one-shot for lengths 0..200 */
    unsigned char msg[200];
    for (int i = 0; i < 200; i++) msg[i] = (unsigned char)(i * 37 + 11);
    int diff = 0;
    for (int n = 0; n <= 200; n++) {
        char h1[65], h2[65];
        sha256_hex(msg, (size_t)n, h1);
        sha256_init(&c);
        for (int i = 0; i < n; i++) sha256_update(&c, msg + i, 1);
        sha256_final(&c, d);
        static const char dg[] = "0123456789abcdef";
        for (int i = 0; i < 32; i++) {
            h2[2 * i] = dg[d[i] >> 4];
            h2[2 * i + 1] = dg[d[i] & 15];
        }
        h2[64] = 0;
        diff += strcmp(h1, h2) != 0;
    }
    CHECK(diff == 0, "%d lengths differ between incremental and one-shot", diff);
    /* A real file: PROVENANCE.md records tokenizer.model's sha256. */
    CHECK(sha256_file(t_data_path("tokenizer/tokenizer.model"), hex) == 0, "%s", fb_errmsg());
    CHECK(!strcmp(hex, "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"), "tokenizer.model: %s", hex);
    CHECK(sha256_file("/nonexistent/file", hex) != 0 && strstr(fb_errmsg(), "/nonexistent/file"), "missing file");
    CHECK(sha256_valid_hex("9E556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"), "valid hex");
    CHECK(!sha256_valid_hex("9e556afd"), "short hex");
    CHECK(!sha256_valid_hex("ze556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"), "bad digit");
    return t_done("test_sha256");
}
