#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char usage[] = "usage: reel rm [--home DIR] [--yes] SESSION...\n"
                            "\n"
                            "Deletes sessions with everything in them. Asks first unless --yes\n"
                            "is given; without a terminal to ask on, --yes is required.\n"
                            "Refused for a session a proxy is recording into.\n";

int reel_cmd_rm(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"yes", no_argument, NULL, 'y'}, REEL_CLI_COMMON_OPTS,
                                         {0}};
    int yes = 0, c;
    while ((c = getopt_long(argc, argv, "hy", opts, NULL)) != -1) {
        if (c == 'y') {
            yes = 1;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (argc - optind < 1)
        return reel_cli_usage(cli, "expected at least one SESSION");
    int rc = REEL_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_session_name_check(argv[i], &err) != REEL_OK) {
            rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
            continue;
        }
        if (!yes) {
            if (!isatty(STDIN_FILENO)) {
                return reel_cli_fail(cli, "not deleting '%s' without confirmation: stdin is "
                                          "not a terminal; pass --yes",
                                     argv[i]);
            }
            fprintf(stderr, "delete session '%s' and all its flows? [y/N] ", argv[i]);
            char ans[16] = "";
            if (fgets(ans, sizeof ans, stdin) == NULL || (ans[0] != 'y' && ans[0] != 'Y')) {
                fprintf(stderr, "kept '%s'\n", argv[i]);
                continue;
            }
        }
        if (reel_session_remove(reel_cli_home(cli), argv[i], &err) != REEL_OK) {
            rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
            continue;
        }
        if (!cli->json)
            printf("deleted session '%s'\n", argv[i]);
    }
    return rc;
}
