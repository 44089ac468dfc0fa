/* Allocation wrappers and capped byte buffers.
 *
 * reel_malloc and friends abort the process with a message on out-of-memory:
 * there is no useful recovery from it in a proxy, and checking every call
 * site hides real errors. Sizes controlled by a peer or a file must go
 * through reel_buf_t, whose maximum size turns a hostile length into
 * REEL_LIMIT instead of unbounded growth. */
#ifndef REEL_BASE_MEM_H
#define REEL_BASE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/** malloc that aborts on failure; never returns NULL (n == 0 gives 1 byte). */
void *reel_malloc(size_t n);
/** calloc that aborts on failure. */
void *reel_calloc(size_t count, size_t size);
/** realloc that aborts on failure. */
void *reel_realloc(void *p, size_t n);
/** strdup that aborts on failure; s may be NULL (returns NULL). */
char *reel_strdup(const char *s);
/** Copies n bytes of s into a new NUL-terminated string; aborts on failure. */
char *reel_strndup(const char *s, size_t n);
/** Copies s (NULL: "") into dst of n > 0 bytes, cut to fit, NUL-terminated:
 * snprintf(dst, n, "%s", s) without the formatter, which cost about 350
 * instructions a call on the per-request paths. */
void reel_strcpy_to(char *dst, size_t n, const char *s);
/** printf into a new string; aborts on failure. */
char *reel_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** s as one shell word, for commands printed to be pasted: unchanged when
 * it holds only characters no POSIX shell treats specially (letters,
 * digits and /._-+,:@%), else in single quotes, each ' in it written
 * '\''. Returns an owned string. */
char *reel_shell_word(const char *s);

/** Growable byte buffer with a hard maximum size. Always NUL-terminated
 * after its len bytes (the terminator is not counted), so text can be used
 * as a C string. Zero-initialize, or use reel_buf_init. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 means SIZE_MAX / 2 */
} reel_buf_t;

/** Initializes b empty with the given maximum (0: unlimited). */
void reel_buf_init(reel_buf_t *b, size_t max);
/** Frees b's storage; b is left empty and reusable. Accepts NULL. */
void reel_buf_free(reel_buf_t *b);
/** Sets len to 0, keeping storage. */
void reel_buf_reset(reel_buf_t *b);
/** Ensures room for n more bytes. Returns REEL_LIMIT if len + n > max. */
reel_rc reel_buf_reserve(reel_buf_t *b, size_t n);
/** Appends n bytes. Returns REEL_LIMIT (b unchanged) if it would exceed max. */
reel_rc reel_buf_append(reel_buf_t *b, const void *p, size_t n);
/** Appends a C string. */
reel_rc reel_buf_puts(reel_buf_t *b, const char *s);
/** Appends printf output. */
reel_rc reel_buf_printf(reel_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Appends at most max of p[0..n) in double quotes, what is not printable
 * ASCII escaped (\r, \n, \xNN; '"' and '\\' as \x22, \x5c), "..." before
 * the closing quote when cut. */
void reel_buf_put_quoted(reel_buf_t *b, const void *p, size_t n, size_t max);
/** Removes the first n bytes (n <= len). */
void reel_buf_consume(reel_buf_t *b, size_t n);

/** Standard base64 (RFC 4648, padded) of p[0..n). Returns an owned
 * NUL-terminated string; *out_len (may be NULL) gets its length. */
char *reel_base64(const void *p, size_t n, size_t *out_len);

#endif
