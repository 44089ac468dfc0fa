#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "cli/cli.h"

int main(int argc, char **argv) {
    /* A file-size limit (ulimit -f, systemd's LimitFSIZE=) sends SIGXFSZ
     * to a write past it, and by default that kills the process: the
     * proxy stopped forwarding, and import, compact or repair died with a
     * torn frame in the file. Ignored, the write fails with EFBIG instead,
     * which every command handles like a full disk (docs/reliability.md).
     * Here, before any command runs, so no entry point can miss it. */
    signal(SIGXFSZ, SIG_IGN);
    /* A standard descriptor left closed (reel ... >&-) would be the next
     * file opened: a session's lock file got the command's output, its
     * recorder's PID overwritten. Such a one is /dev/null. */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) /* (cannot be: the lowest free is fd) */
                close(n);
        }
    return reel_cli_main(argc, argv);
}
