#include "cli/cli.h"

static const char usage[] = "usage: reel new [--home DIR] [--json] SESSION\n"
                            "\n"
                            "Creates an empty session named SESSION.\n";

int reel_cmd_new(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {REEL_CLI_COMMON_OPTS, {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (argc - optind != 1)
        return reel_cli_usage(cli, "expected one SESSION name");
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_CREATE | REEL_OPEN_NEW);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    if (cli->json)
        reel_cli_json_out(json_pack("{s:s, s:s}", "session", reel_session_name(s), "path",
                                    reel_session_path(s)));
    else
        printf("created session '%s' in %s\n", reel_session_name(s), reel_session_path(s));
    reel_session_close(s);
    return REEL_EXIT_OK;
}
