#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "session/filter.h"
#include "session/index.h"

static const char usage[] =
    "usage: reel annotate [--home DIR] [--json] SESSION ID [TEXT]\n"
    "       reel annotate [--home DIR] SESSION ID --delete N\n"
    "       reel annotate [--home DIR] [--json] SESSION --filter FILTER TEXT\n"
    "\n"
    "Adds TEXT as a note on flow ID (a flow can have many), or, without TEXT,\n"
    "lists the flow's notes with their numbers and times. --delete N removes\n"
    "note number N of that flow. With --filter, adds TEXT to every flow FILTER\n"
    "matches (docs/filters.md) and says how many ({\"annotated\": N} with --json).\n"
    "Works while the session is recording.\n"
    "On a terminal, control characters in listed notes are shown as \\xNN.\n";

#define MAX_NOTE (64 * 1024)

/* reel annotate SESSION --filter FILTER TEXT */
static int annotate_filter(reel_cli_t *cli, int argc, char **argv, const char *filter,
                           long long del) {
    if (del)
        return reel_cli_usage(cli, "--delete takes a flow ID, not --filter");
    if (argc - optind != 2)
        return reel_cli_usage(cli, "expected SESSION and one TEXT argument with --filter");
    const char *text = argv[optind + 1];
    if (text[0] == '\0')
        return reel_cli_fail(cli, "empty note");
    if (strlen(text) > MAX_NOTE)
        return reel_cli_fail(cli, "note longer than %d bytes", MAX_NOTE);
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_t *f = NULL;
    if (reel_filter_compile(filter, &f, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    reel_session_t *s = reel_cli_open(cli, argv[optind], 0);
    if (s == NULL) {
        reel_filter_free(f);
        return REEL_EXIT_ERROR;
    }
    int rc = REEL_EXIT_OK;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    int64_t *ids = NULL;
    size_t nids = 0;
    if (reel_filter_ids(f, s, &ids, &nids, &err) != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO annotations(flow_id, created_us, text) VALUES(?, ?, ?)",
                       -1, &st, NULL);
    for (size_t i = 0; i < nids && rc == REEL_EXIT_OK; i++) {
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, reel_now_us());
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = reel_cli_fail(cli, "session.db: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    if (rc == REEL_EXIT_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = reel_cli_fail(cli, "session.db: %s", sqlite3_errmsg(db));
    if (rc != REEL_EXIT_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    else if (cli->json)
        reel_cli_json_out(json_pack("{s:I}", "annotated", (json_int_t)nids));
    else
        printf("added a note to %zu matching flow%s\n", nids, nids == 1 ? "" : "s");
out:
    sqlite3_finalize(st);
    free(ids);
    reel_filter_free(f);
    reel_session_close(s);
    return rc;
}

int reel_cmd_annotate(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"delete", required_argument, NULL, 'd'},
                                         {"filter", required_argument, NULL, 'F'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    long long del = 0;
    const char *filter = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "hd:", opts)) != -1) {
        if (c == 'F') {
            filter = optarg;
            continue;
        }
        if (c == 'd') {
            char *end = NULL;
            errno = 0;
            del = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end || errno || del <= 0)
                return reel_cli_usage(cli, "--delete takes a note number, not '%s'", optarg);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    int nargs = argc - optind;
    if (filter)
        return annotate_filter(cli, argc, argv, filter, del);
    if (nargs < 2 || nargs > 3 || (del && nargs != 2))
        return reel_cli_usage(cli, nargs < 2 ? "expected SESSION and flow ID"
                                             : "expected one TEXT argument (quote it)");
    unsigned long long id = reel_cli_flow_id(cli, argv[optind + 1]);
    if (id == 0)
        return REEL_EXIT_ERROR;
    const char *text = nargs == 3 ? argv[optind + 2] : NULL;
    if (text && text[0] == '\0')
        return reel_cli_fail(cli, "empty note");
    if (text && strlen(text) > MAX_NOTE)
        return reel_cli_fail(cli, "note longer than %d bytes", MAX_NOTE);
    /* listing a flow's notes only reads (works on a read-only session) */
    reel_session_t *s = reel_cli_open(cli, argv[optind], text || del ? 0 : REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    int rc = REEL_EXIT_OK;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    if (!reel_cli_flow_exists(cli, s, id)) {
        rc = REEL_EXIT_ERROR;
        goto out;
    }
    if (del) {
        sqlite3_prepare_v2(db, "DELETE FROM annotations WHERE id = ? AND flow_id = ?", -1, &st,
                           NULL);
        sqlite3_bind_int64(st, 1, del);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = reel_cli_fail(cli, "session.db: %s", sqlite3_errmsg(db));
        else if (sqlite3_changes(db) == 0)
            rc = reel_cli_fail(cli, "flow %llu has no note %lld", id, del);
        else if (!cli->json)
            printf("deleted note %lld of flow %llu\n", del, id);
        else
            reel_cli_json_out(json_pack("{s:I, s:I}", "flow", (json_int_t)id, "deleted",
                                        (json_int_t)del));
    } else if (text) {
        sqlite3_prepare_v2(db,
                           "INSERT INTO annotations(flow_id, created_us, text) VALUES(?, ?, ?)",
                           -1, &st, NULL);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_int64(st, 2, reel_now_us());
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = reel_cli_fail(cli, "session.db: %s", sqlite3_errmsg(db));
        else if (cli->json)
            reel_cli_json_out(json_pack("{s:I, s:I}", "flow", (json_int_t)id, "note",
                                        (json_int_t)sqlite3_last_insert_rowid(db)));
        else
            printf("added note %lld to flow %llu\n", (long long)sqlite3_last_insert_rowid(db), id);
    } else {
        sqlite3_prepare_v2(db,
                           "SELECT id, created_us, text FROM annotations WHERE flow_id = ? "
                           "ORDER BY id",
                           -1, &st, NULL);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        json_t *arr = json_array();
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            long long nid = sqlite3_column_int64(st, 0), t = sqlite3_column_int64(st, 1);
            const char *txt = (const char *)sqlite3_column_text(st, 2);
            n++;
            if (cli->json) {
                json_array_append_new(arr, json_pack("{s:I, s:I, s:s}", "note", (json_int_t)nid,
                                                     "created_us", (json_int_t)t, "text", txt));
            } else {
                char ts[32];
                reel_cli_time(t, ts);
                printf("%4lld  %s  ", nid, ts);
                reel_cli_put_lines(txt);
                putchar('\n');
            }
        }
        if (cli->json)
            reel_cli_json_out(arr);
        else {
            json_decref(arr);
            if (n == 0)
                printf("flow %llu has no notes\n", id);
        }
    }
out:
    sqlite3_finalize(st);
    reel_session_close(s);
    return rc;
}
