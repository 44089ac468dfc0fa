#include <stdint.h>

#include "cli/cli.h"
#include "session/har.h"
#include "session/recorder.h"

static const char usage[] =
    "usage: reel import [--home DIR] [--json] FILE --into SESSION\n"
    "\n"
    "Imports a HAR 1.2 file (as exported by browsers' devtools) into SESSION,\n"
    "creating the session if it does not exist. Every entry becomes one flow,\n"
    "in file order, with its headers, whole bodies (base64 bodies decoded),\n"
    "start time and timings; entries with status 0 (blocked or failed in the\n"
    "browser) become flows with an error, and entries whose URL is not\n"
    "http(s) or ws(s) (data:, blob:, ...) are skipped. The file is checked\n"
    "first: if any entry is malformed nothing is imported.\n"
    "\n"
    "  --into SESSION  session to import into (created if missing; must not be\n"
    "                  recording)\n"
    "  --home DIR      sessions root (default $REEL_HOME, else the XDG data dir)\n"
    "  --json          print {session, imported, first_id, last_id, skipped}\n";

int reel_cmd_import(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_INTO = 0x2001 };
    static const struct option opts[] = {
        {"into", required_argument, NULL, OPT_INTO}, REEL_CLI_COMMON_OPTS, {0}};
    const char *into = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == OPT_INTO) {
            into = optarg;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (optind >= argc)
        return reel_cli_usage(cli, "missing FILE");
    if (argc - optind > 1)
        return reel_cli_usage(cli, "unexpected argument '%s'", argv[optind + 1]);
    if (into == NULL)
        return reel_cli_usage(cli, "missing --into SESSION");
    const char *file = argv[optind];

    reel_err_t err;
    reel_err_clear(&err);
    reel_har_t *har = NULL; /* parsed and checked before the session is touched */
    if (reel_har_load(file, &har, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));

    reel_session_t *s = reel_cli_open(cli, into, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    if (s == NULL) {
        reel_har_free(har);
        return REEL_EXIT_ERROR;
    }
    reel_recorder_opts_t ro;
    reel_recorder_opts_default(&ro);
    ro.capture = REEL_CAPTURE_LOSSLESS;
    ro.body_limit = UINT64_MAX / 2; /* an import stores whole bodies */
    reel_recorder_t *rec = NULL;
    reel_har_stats_t st = {0};
    int rc = REEL_EXIT_OK;
    if (reel_recorder_open(s, &ro, &rec, &err) != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    reel_rc imp = reel_har_record(rec, har, &st, &err);
    reel_rc closed = reel_recorder_close(rec, &err); /* first error wins in err */
    if (imp != REEL_OK || closed != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        if (st.entries == 1)
            fprintf(stderr, "reel import: 1 flow (id %llu) may be incomplete\n",
                    (unsigned long long)st.first_id);
        else if (st.entries)
            fprintf(stderr, "reel import: %llu flows (ids %llu-%llu) may be incomplete\n",
                    (unsigned long long)st.entries, (unsigned long long)st.first_id,
                    (unsigned long long)st.last_id);
        goto out;
    }
    if (cli->json) {
        rc = reel_cli_json_out(json_pack("{s:s, s:I, s:I, s:I, s:I}", "session", into, "imported",
                                         (json_int_t)st.entries, "first_id",
                                         (json_int_t)st.first_id, "last_id", (json_int_t)st.last_id,
                                         "skipped", (json_int_t)st.skipped));
    } else {
        printf("imported %llu %s into %s", (unsigned long long)st.entries,
               st.entries == 1 ? "flow" : "flows", into);
        if (st.entries == 1)
            printf(" (id %llu)", (unsigned long long)st.first_id);
        else if (st.entries)
            printf(" (ids %llu-%llu)", (unsigned long long)st.first_id,
                   (unsigned long long)st.last_id);
        if (st.skipped)
            printf("; skipped %llu non-HTTP %s", (unsigned long long)st.skipped,
                   st.skipped == 1 ? "entry" : "entries");
        printf("\n");
    }
out:
    reel_session_close(s);
    reel_har_free(har);
    return rc;
}
