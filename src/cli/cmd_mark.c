/* `reel mark` and `reel unmark`: one feature, one file. Marks live in the
 * marks table (user data, kept by repair) and are mirrored in flows.marked
 * for filtering. */
#include <stdlib.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/filter.h"
#include "session/index.h"

static const char mark_usage[] =
    "usage: reel mark [--home DIR] [--json] SESSION ID...\n"
    "       reel mark [--home DIR] [--json] SESSION --filter FILTER\n"
    "\n"
    "Marks flows (shown with * in 'reel flows'; filter: ~marked): the IDs given,\n"
    "or every flow FILTER matches (docs/filters.md), saying how many.\n"
    "\n"
    "  --json   print {\"marked\": N} (N: flow IDs given, or flows matched)\n";
static const char unmark_usage[] =
    "usage: reel unmark [--home DIR] [--json] SESSION ID...\n"
    "       reel unmark [--home DIR] [--json] SESSION --filter FILTER\n"
    "\n"
    "Removes the mark from flows: the IDs given, or every flow FILTER matches.\n"
    "\n"
    "  --json   print {\"unmarked\": N}\n";

static int run(reel_cli_t *cli, int argc, char **argv, int mark) {
    static const struct option opts[] = {{"filter", required_argument, NULL, 'F'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *filter = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == 'F') {
            filter = optarg;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, mark ? mark_usage : unmark_usage);
        if (rc >= 0)
            return rc;
    }
    if (filter ? argc - optind != 1 : argc - optind < 2)
        return reel_cli_usage(cli, filter ? "expected SESSION and no flow ID with --filter"
                                          : "expected SESSION and at least one flow ID");
    for (int i = optind + 1; i < argc; i++)
        if (reel_cli_flow_id(cli, argv[i]) == 0)
            return REEL_EXIT_ERROR;
    reel_filter_t *f = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (filter && reel_filter_compile(filter, &f, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    reel_session_t *s = reel_cli_open(cli, argv[optind], 0);
    if (s == NULL) {
        reel_filter_free(f);
        return REEL_EXIT_ERROR;
    }
    sqlite3 *db = reel_session_db(s);
    int rc = REEL_EXIT_OK;
    int64_t *ids = NULL;
    size_t nids = 0;
    if (filter) {
        if (reel_filter_ids(f, s, &ids, &nids, &err) != REEL_OK)
            rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
    } else {
        ids = reel_calloc((size_t)(argc - optind - 1), sizeof *ids);
        for (int i = optind + 1; i < argc && rc == REEL_EXIT_OK; i++) {
            ids[nids] = (int64_t)reel_cli_flow_id(cli, argv[i]);
            if (!reel_cli_flow_exists(cli, s, (unsigned long long)ids[nids++]))
                rc = REEL_EXIT_ERROR;
        }
    }
    sqlite3_stmt *a = NULL, *b = NULL;
    if (rc == REEL_EXIT_OK) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_prepare_v2(db,
                           mark ? "INSERT OR IGNORE INTO marks(flow_id, created_us) VALUES(?1, ?2)"
                                : "DELETE FROM marks WHERE flow_id = ?1 AND ?2 IS NOT NULL",
                           -1, &a, NULL);
        sqlite3_prepare_v2(db, "UPDATE flows SET marked = ?2 WHERE id = ?1", -1, &b, NULL);
        for (size_t i = 0; i < nids && rc == REEL_EXIT_OK; i++) {
            long long id = (long long)ids[i];
            sqlite3_bind_int64(a, 1, id);
            sqlite3_bind_int64(a, 2, reel_now_us());
            sqlite3_bind_int64(b, 1, id);
            sqlite3_bind_int(b, 2, mark);
            if (sqlite3_step(a) != SQLITE_DONE || sqlite3_step(b) != SQLITE_DONE)
                rc = reel_cli_fail(cli, "session.db: %s", sqlite3_errmsg(db));
            sqlite3_reset(a);
            sqlite3_reset(b);
        }
        if (rc == REEL_EXIT_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            rc = reel_cli_fail(cli, "session.db: %s", sqlite3_errmsg(db));
        if (rc != REEL_EXIT_OK)
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        else if (!cli->json)
            printf("%s %zu %sflow%s\n", mark ? "marked" : "unmarked", nids,
                   filter ? "matching " : "", nids == 1 ? "" : "s");
        else
            reel_cli_json_out(json_pack("{s:I}", mark ? "marked" : "unmarked", (json_int_t)nids));
    }
    free(ids);
    reel_filter_free(f);
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    reel_session_close(s);
    return rc;
}

int reel_cmd_mark(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 1);
}

int reel_cmd_unmark(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 0);
}
