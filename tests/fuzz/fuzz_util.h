/* Shared helpers of the libFuzzer harnesses: one scratch directory per
 * process (under $TMPDIR, removed at exit), files rewritten in place so the
 * file system does not grow, and a check that aborts with a message (a
 * harness assertion is a finding like any crash). */
#ifndef REEL_FUZZ_UTIL_H
#define REEL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/** The per-process scratch directory ($TMPDIR or /tmp, then
 * reel-fuzz-<tag>-XXXXXX), created on first call and removed by an atexit
 * handler. Returns a static string. */
const char *fuzz_tmpdir(const char *tag);

/** Returns "<tmpdir>/<name>"; the string lives as long as the process (the
 * same name always gives the same pointer; at most 32 names). */
const char *fuzz_path(const char *name);

/** Writes data[0..len) to path (created 0600, truncated). Aborts on error. */
void fuzz_write_file(const char *path, const void *data, size_t len);

/** Removes path and everything below it; a missing path is fine. */
void fuzz_rm_rf(const char *path);

/** Creates directory path (0700); an existing one is fine. Aborts on error. */
void fuzz_mkdir(const char *path);

/** Reads the file at path into a new buffer (free()); aborts on error. */
uint8_t *fuzz_read_file(const char *path, size_t *len);

/** Prints a line to stderr when $REEL_FUZZ_VERBOSE is set (for triage:
 * what a harness did with one input); silent otherwise. */
void fuzz_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Aborts with the message when cond is false: a broken contract. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#endif
