#include <signal.h>

#include "cli/cli.h"

int main(int argc, char **argv) {
    /* A file-size limit (ulimit -f, systemd's LimitFSIZE=) sends SIGXFSZ
     * to a write past it, and by default that kills the process: the
     * proxy stopped forwarding, and import, compact or repair died with a
     * torn frame in the file. Ignored, the write fails with EFBIG instead,
     * which every command handles like a full disk (docs/reliability.md).
     * Here, before any command runs, so no entry point can miss it. */
    signal(SIGXFSZ, SIG_IGN);
    return reel_cli_main(argc, argv);
}
