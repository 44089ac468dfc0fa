#include <stdlib.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: reel repair [--home DIR] [--json] SESSION\n"
    "\n"
    "Rebuilds the session's index (flows, frames) from its spool. Annotations,\n"
    "tags, marks and the config overlay are kept. Damaged frames are skipped\n"
    "and recorded, so 'reel verify' reports them as known damage, and the\n"
    "flows that lost records in them are marked damaged with the byte ranges\n"
    "missing ('reel flows SESSION ~damaged', 'reel flow'); a damaged tail of\n"
    "the newest segment is moved aside into recovered/. A missing segment is\n"
    "recorded too, and the flows that had records in it are marked with an\n"
    "error. If session.db itself is damaged or missing, it is moved aside into\n"
    "recovered/ and a new index is built: the user data that can still be read\n"
    "from the old one is copied over, and every change to it comes back from\n"
    "the spool's journal (spool/journal.zst); the report says what was kept.\n"
    "Refused while a proxy is recording into the session.\n";

int reel_cmd_repair(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 1, 1, "expected one SESSION");
    if (arc >= 0)
        return arc;
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_RECORD | REEL_OPEN_REPAIR);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    reel_err_t err;
    reel_err_clear(&err);
    char *report = NULL;
    reel_rc rc = reel_session_repair(s, &report, &err);
    int exit_code = REEL_EXIT_OK;
    if (rc != REEL_OK)
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
    else if (cli->json)
        reel_cli_json_out(json_pack("{s:s, s:s}", "session", reel_session_name(s), "report",
                                    report ? report : ""));
    else
        printf("repaired session '%s': %s\n", reel_session_name(s), report ? report : "");
    free(report);
    reel_session_close(s);
    return exit_code;
}
