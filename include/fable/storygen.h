/* fable — the built-in story generator: a small procedural grammar of simple stories in
 * the style of TinyStories (named characters, places, objects, feelings; a beginning, a
 * problem, dialogue and a resolution). It is fable's offline fallback corpus: when
 * TinyStories cannot be downloaded, `fable data` writes these stories instead, so the
 * whole pipeline still runs end to end. All words and templates are fable's own.
 *
 * Deterministic: story `index` of seed `seed` is always the same text, on every machine.
 */
#ifndef FABLE_STORYGEN_H
#define FABLE_STORYGEN_H

#include <stddef.h>
#include <stdint.h>

/* Story `index` (plain text, paragraphs separated by "\n\n", no trailing newline) into
 * out (NUL-terminated, truncated to cap-1). Returns the full length, like snprintf. */
size_t storygen_story(uint64_t seed, uint64_t index, char *out, size_t cap);

/* Stories first .. first+n-1, each followed by "\n<|endoftext|>\n" (the layout of the
 * TinyStories .txt files). malloc'd, NUL-terminated; *len gets the length. NULL + fb_err
 * when out of memory. */
char *storygen_corpus(uint64_t seed, uint64_t first, size_t n, size_t *len);

/* storygen_corpus written atomically to path. */
int storygen_write(const char *path, uint64_t seed, uint64_t first, size_t n);

#endif
