#include "cli/cli.h"

static const char usage[] = "usage: reel new [--home DIR] [--json] SESSION\n"
                            "\n"
                            "Creates an empty session named SESSION.\n";

int reel_cmd_new(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 1, 1, "expected one SESSION name");
    if (arc >= 0)
        return arc;
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
