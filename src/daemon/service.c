#include "daemon/service.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef REEL_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "base/mem.h"

reel_rc reel_service_pidfile_write(const char *path, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char *tmp = reel_asprintf("%s.%ld.tmp", path, (long)getpid());
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "pid file %s", path);
        goto out;
    }
    if (write(fd, buf, (size_t)n) != n) {
        rc = reel_err_errno(err, REEL_IO, errno, "pid file %s", path);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = reel_err_errno(err, REEL_IO, errno, "pid file %s", path);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        rc = reel_err_errno(err, REEL_IO, errno, "pid file %s", path);
out:
    if (fd >= 0)
        close(fd);
    if (rc != REEL_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

void reel_service_pidfile_remove(const char *path) {
    char buf[32] = "", want[32];
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && (size_t)n == strlen(want) && memcmp(buf, want, (size_t)n) == 0)
        unlink(path);
}

int reel_service_notify(const char *state) {
#ifdef REEL_HAVE_LIBSYSTEMD
    int r = sd_notify(0, state);
    return r > 0 ? 1 : r == 0 ? 0 : -1;
#else
    (void)state;
    return 0;
#endif
}

int reel_service_can_notify(void) {
#ifdef REEL_HAVE_LIBSYSTEMD
    return 1;
#else
    return 0;
#endif
}
