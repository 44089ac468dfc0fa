/* reel diff: being written; see the issue tracker. */
#include "cli/cli.h"

static const char usage[] = "usage: reel diff [--home DIR] [--json] SESSION ID1 ID2\n"
                            "\n"
                            "Not implemented yet.\n";

int reel_cmd_diff(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 0, 100, "");
    if (arc >= 0)
        return arc;
    fprintf(stderr, "reel diff: not implemented yet\n");
    return REEL_EXIT_ERROR;
}
