#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: reel verify [--home DIR] [--json] SESSION\n"
    "\n"
    "Checks every spool frame (zstd checksum, record framing) against the index\n"
    "and the index against the spool, that no flow lost records the index does\n"
    "not record (a body shorter than its end record says, say), the journal of\n"
    "user data (that it is there and holds all the annotations, tags, marks and\n"
    "config the index does), and runs SQLite's quick_check. Names each bad\n"
    "frame by segment and offset; lists known damage without failing. Exit 0\n"
    "if the session is consistent, 1 if not ('reel repair SESSION' rebuilds\n"
    "the index, skipping damaged frames and marking the flows that lost\n"
    "records).\n"
    "\n"
    "Like every command that opens a writable session no recorder is running\n"
    "on, it first indexes the frames a crash left unindexed and says so on\n"
    "stderr; beside a running recorder, or on a session it cannot write, it\n"
    "reads without writing.\n";

int reel_cmd_verify(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 1, 1, "expected one SESSION");
    if (arc >= 0)
        return arc;
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    reel_err_t err;
    reel_err_clear(&err);
    char *report = NULL;
    reel_rc rc = reel_session_verify(s, &report, &err);
    int ok = rc == REEL_OK;
    if (rc != REEL_OK && rc != REEL_CORRUPT) {
        free(report);
        reel_session_close(s);
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    }
    if (cli->json) {
        json_t *lines = json_array();
        char *save = NULL;
        for (char *l = strtok_r(report, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            json_array_append_new(lines, json_string(l));
        reel_cli_json_out(json_pack("{s:s, s:b, s:o}", "session", reel_session_name(s), "ok", ok,
                                    "report", lines));
    } else {
        fputs(report, ok ? stdout : stderr);
        if (ok)
            printf("session '%s' is consistent\n", reel_session_name(s));
        else if (reel_session_readonly(s))
            fprintf(stderr, "reel verify: session '%s' has problems; it is read-only here: copy "
                            "it to a writable directory, where opening it recovers what can be "
                            "and 'reel repair %s' rebuilds the index from the spool\n",
                    reel_session_name(s), reel_session_name(s));
        else
            fprintf(stderr, "reel verify: session '%s' has problems; 'reel repair %s' rebuilds "
                            "the index from the spool\n",
                    reel_session_name(s), reel_session_name(s));
    }
    free(report);
    reel_session_close(s);
    return ok ? REEL_EXIT_OK : REEL_EXIT_ERROR;
}
