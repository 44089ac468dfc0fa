#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "session/config.h"
#include "session/retention.h"

static const char usage[] =
    "usage: reel compact [--home DIR] [--json] SESSION\n"
    "\n"
    "Rewrites the session's spool keeping only the records of flows its index\n"
    "still has: records left behind by flows that retention dropped\n"
    "(retention_max_bytes, retention_max_age, retention_max_flows), or that\n"
    "repair dropped, are removed. The records are copied into new segments\n"
    "(segment_size from the session's config), the old segments are recorded\n"
    "as retired and deleted, and the index is rebuilt from the new ones.\n"
    "Annotations, tags, marks and the config overlay are kept. Refused while\n"
    "a proxy is recording into the session, and on a spool with known damage\n"
    "('reel verify' lists it), which stays on record after a repair, until\n"
    "retention drops the segments that hold it.\n";

int reel_cmd_compact(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 1, 1, "expected one SESSION");
    if (arc >= 0)
        return arc;
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_RECORD);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    reel_err_t err;
    reel_err_clear(&err);
    reel_config_t *c = reel_config_new();
    if (reel_config_load_user(c, NULL, &err) == REEL_OK) {
        char *warnings = NULL;
        reel_config_load_overlay(c, reel_session_db(s), &warnings, &err);
        free(warnings);
    }
    uint64_t segment_size = (uint64_t)reel_config_get_int(c, "segment_size");
    size_t block_size = (size_t)reel_config_get_int(c, "spool_block_size");
    reel_config_free(c);
    reel_err_clear(&err);
    char *report = NULL;
    reel_rc rc = reel_retention_compact(s, segment_size, block_size, &report, &err);
    int exit_code = REEL_EXIT_OK;
    if (rc != REEL_OK) {
        /* retention.c says "compact: ..." for the proxy's log, where
         * compaction runs unasked; here "reel compact: " already says it */
        const char *msg = reel_err_str(&err);
        if (strncmp(msg, "compact: ", 9) == 0)
            msg += 9;
        exit_code = reel_cli_fail(cli, "%s", msg);
    } else if (cli->json)
        reel_cli_json_out(json_pack("{s:s, s:s}", "session", reel_session_name(s), "report",
                                    report ? report : ""));
    else
        printf("compacted session '%s': %s\n", reel_session_name(s), report ? report : "");
    free(report);
    reel_session_close(s);
    return exit_code;
}
