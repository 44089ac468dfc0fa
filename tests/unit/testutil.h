/* Helpers shared by the unit tests. Header-only: each test is one program. */
#ifndef REEL_TESTS_TESTUTIL_H
#define REEL_TESTS_TESTUTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/mem.h"

/** A fixed xorshift64 sequence (the same on every run, its own in each
 * test program), for reproducible random tests. */
static inline uint64_t reel_test_rnd(void) {
    static uint64_t state = 88172645463325252ull;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/** Makes a fresh directory under $REEL_TEST_TMP (or /tmp) named
 * <prefix>-XXXXXX and returns its path (owned); aborts on failure. */
static inline char *reel_test_tmpdir(const char *prefix) {
    const char *base = getenv("REEL_TEST_TMP");
    char *tmpl;
    if (base && base[0]) {
        mkdir(base, 0700);
        tmpl = reel_asprintf("%s/%s-XXXXXX", base, prefix);
    } else {
        tmpl = reel_asprintf("/tmp/reel-%s-XXXXXX", prefix);
    }
    if (mkdtemp(tmpl) == NULL) {
        perror(tmpl);
        abort();
    }
    return tmpl;
}

static inline int reel_test__rm_one(const char *path, const struct stat *st, int flag,
                                    struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/** Removes path and everything below it. */
static inline void reel_test_rm_rf(const char *path) {
    nftw(path, reel_test__rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Points XDG_CONFIG_HOME at a new directory whose reel/config.yaml holds
 * yaml (a line such as "body_index_max: 1048576\n"): the user config file
 * every session of the test then reads. */
static inline void reel_test_user_config(const char *yaml) {
    char *dir = reel_test_tmpdir("config");
    char *sub = reel_asprintf("%s/reel", dir);
    mkdir(sub, 0700);
    char *file = reel_asprintf("%s/config.yaml", sub);
    FILE *f = fopen(file, "w");
    if (f == NULL || fputs(yaml, f) < 0)
        abort();
    fclose(f);
    setenv("XDG_CONFIG_HOME", dir, 1);
    free(dir);
    free(sub);
    free(file);
}

#endif
