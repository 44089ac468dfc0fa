#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[4096];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void fuzz_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void) {
    if (tmpdir[0])
        fuzz_rm_rf(tmpdir);
}

const char *fuzz_tmpdir(const char *tag) {
    if (tmpdir[0])
        return tmpdir;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/reel-fuzz-%s-XXXXXX", base, tag);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "fuzz: mkdtemp %s: %s\n", tmpdir, strerror(errno));
        abort();
    }
    atexit(cleanup);
    return tmpdir;
}

const char *fuzz_path(const char *name) {
    /* interned: the same name gives the same pointer, valid for good */
    static struct {
        char *name, *path;
    } paths[32];
    size_t i = 0;
    for (; i < 32 && paths[i].name; i++)
        if (strcmp(paths[i].name, name) == 0)
            return paths[i].path;
    if (i == 32) {
        fprintf(stderr, "fuzz: too many paths\n");
        abort();
    }
    size_t n = strlen(fuzz_tmpdir("x")) + strlen(name) + 2;
    paths[i].name = strdup(name);
    paths[i].path = malloc(n);
    snprintf(paths[i].path, n, "%s/%s", fuzz_tmpdir("x"), name);
    return paths[i].path;
}

void fuzz_write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: open %s: %s\n", path, strerror(errno));
        abort();
    }
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "fuzz: write %s: %s\n", path, strerror(errno));
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
}

void fuzz_mkdir(const char *path) {
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz: mkdir %s: %s\n", path, strerror(errno));
        abort();
    }
}

uint8_t *fuzz_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz: open %s: %s\n", path, strerror(errno));
        abort();
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (n == cap)
            buf = realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "\n%s:%d: check failed: %s\n  ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

void fuzz_log(const char *fmt, ...) {
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("REEL_FUZZ_VERBOSE") != NULL;
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
