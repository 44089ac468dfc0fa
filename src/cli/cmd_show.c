#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/config.h"
#include "session/index.h"
#include "session/spool.h"

static const char usage[] = "usage: reel show [--home DIR] [--json] SESSION\n"
                            "\n"
                            "Summary of a session: where it is, when it was created, flow counts\n"
                            "by state, time span, spool and index sizes, overlay keys, and the\n"
                            "PID of the proxy recording into it, if any, and why it was\n"
                            "opened read-only if this user cannot write it.\n";

/* The first failing query: a damaged index must not show as zeros. */
typedef struct {
    int code;
    char msg[256];
} qerr_t;

static void qfail(sqlite3 *db, qerr_t *bad) {
    if (bad->code == SQLITE_OK) {
        bad->code = sqlite3_errcode(db);
        if (bad->code == SQLITE_OK)
            bad->code = SQLITE_ERROR;
        snprintf(bad->msg, sizeof bad->msg, "%s", sqlite3_errmsg(db));
    }
}

/* One number; a failure goes into *bad. */
static long long q1(sqlite3 *db, const char *sql, qerr_t *bad) {
    sqlite3_stmt *st = NULL;
    long long v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        qfail(db, bad);
    sqlite3_finalize(st);
    return v;
}

/* Retention: the settings (user file and overlay; a --set given to a running
 * `reel record` is not visible here), what it dropped in all, and its last
 * drop. A session older than the retention table shows nothing dropped. */
typedef struct {
    long long max_bytes, max_age, max_flows;
    const char *hook;
    long long segments, flows, bytes, compacted;
    long long last_seg, last_us, last_flows, last_bytes;
    char last_reason[32];
} retention_t;

static void retention_load(sqlite3 *db, reel_config_t *c, retention_t *r) {
    memset(r, 0, sizeof *r);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_config_load_user(c, NULL, &err) == REEL_OK) {
        char *warnings = NULL;
        reel_config_load_overlay(c, db, &warnings, &err);
        free(warnings);
    }
    r->max_bytes = reel_config_get_int(c, "retention_max_bytes");
    r->max_age = reel_config_get_int(c, "retention_max_age");
    r->max_flows = reel_config_get_int(c, "retention_max_flows");
    r->hook = reel_config_get(c, "on_segment_closed", NULL);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), coalesce(sum(flows), 0), coalesce(sum(bytes), 0), "
                           "(SELECT count(*) FROM retention WHERE reason = 'compact') FROM "
                           "retention WHERE reason != 'compact'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        r->segments = sqlite3_column_int64(st, 0);
        r->flows = sqlite3_column_int64(st, 1);
        r->bytes = sqlite3_column_int64(st, 2);
        r->compacted = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT segment, time_us, flows, bytes, reason FROM retention WHERE "
                           "reason != 'compact' ORDER BY time_us DESC, segment DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        r->last_seg = sqlite3_column_int64(st, 0);
        r->last_us = sqlite3_column_int64(st, 1);
        r->last_flows = sqlite3_column_int64(st, 2);
        r->last_bytes = sqlite3_column_int64(st, 3);
        snprintf(r->last_reason, sizeof r->last_reason, "%s", sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
}

static json_t *retention_json(const retention_t *r) {
    json_t *o = json_pack("{s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I}", "max_bytes",
                          (json_int_t)r->max_bytes, "max_age", (json_int_t)r->max_age,
                          "max_flows", (json_int_t)r->max_flows, "on_segment_closed", r->hook,
                          "dropped_segments", (json_int_t)r->segments, "dropped_flows",
                          (json_int_t)r->flows, "dropped_bytes", (json_int_t)r->bytes,
                          "compacted_segments", (json_int_t)r->compacted);
    json_object_set_new(o, "last",
                        r->segments ? json_pack("{s:I, s:I, s:I, s:I, s:s}", "segment",
                                                (json_int_t)r->last_seg, "time_us",
                                                (json_int_t)r->last_us, "flows",
                                                (json_int_t)r->last_flows, "bytes",
                                                (json_int_t)r->last_bytes, "reason",
                                                r->last_reason)
                                    : json_null());
    return o;
}

static void retention_print(const retention_t *r) {
    if (r->max_bytes || r->max_age || r->max_flows) {
        char b[16];
        reel_cli_size((unsigned long long)r->max_bytes, b);
        printf("retention   max_bytes %s, max_age %llds, max_flows %lld (0: no limit)\n",
               r->max_bytes ? b : "0", r->max_age, r->max_flows);
    }
    if (r->hook && r->hook[0])
        printf("on closed   %s\n", r->hook);
    if (r->segments) {
        char b[16], lb[16], t[32];
        reel_cli_size((unsigned long long)r->bytes, b);
        reel_cli_size((unsigned long long)r->last_bytes, lb);
        reel_cli_time(r->last_us, t);
        printf("dropped     %lld segment%s, %lld flow%s, %s by retention; last: %08lld.zst "
               "(%lld flow%s, %s) at %s, %s exceeded\n",
               r->segments, r->segments == 1 ? "" : "s", r->flows, r->flows == 1 ? "" : "s", b,
               r->last_seg, r->last_flows, r->last_flows == 1 ? "" : "s", lb, t, r->last_reason);
    }
    if (r->compacted)
        printf("compacted   %lld old segment%s rewritten by 'reel compact'\n", r->compacted,
               r->compacted == 1 ? "" : "s");
}

int reel_cmd_show(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 1, 1, "expected one SESSION");
    if (arc >= 0)
        return arc;
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    sqlite3 *db = reel_session_db(s);
    qerr_t bad = {SQLITE_OK, ""};
    /* Every query here is an index lookup or a scan of a small table, so
     * show costs the same on a session of a million flows. */
    long long flows = q1(db, "SELECT count(*) FROM flows", &bad);
    long long errors = 0, open_ = 0, interrupted = 0;
    sqlite3_stmt *st = NULL;
    int step = SQLITE_ERROR;
    if (sqlite3_prepare_v2(db,
                           "SELECT state, count(*) FROM flows WHERE state != 'complete' "
                           "GROUP BY state",
                           -1, &st, NULL) == SQLITE_OK)
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            const char *state = (const char *)sqlite3_column_text(st, 0);
            long long n = sqlite3_column_int64(st, 1);
            if (strcmp(state, "error") == 0)
                errors = n;
            else if (strcmp(state, "open") == 0)
                open_ = n;
            else if (strcmp(state, "interrupted") == 0)
                interrupted = n;
        }
    if (step != SQLITE_DONE)
        qfail(db, &bad);
    sqlite3_finalize(st);
    long long complete = flows - errors - open_ - interrupted;
    long long first = q1(db, "SELECT coalesce(min(start_us), 0) FROM flows", &bad);
    long long last = q1(db, "SELECT coalesce(max(start_us), 0) FROM flows", &bad);
    long long frames = 0, spool = 0, raw = 0, segments = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), coalesce(sum(clen), 0), coalesce(sum(rlen), 0), "
                           "count(DISTINCT segment) FROM frames",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        frames = sqlite3_column_int64(st, 0);
        spool = sqlite3_column_int64(st, 1);
        raw = sqlite3_column_int64(st, 2);
        segments = sqlite3_column_int64(st, 3);
    } else {
        qfail(db, &bad);
    }
    sqlite3_finalize(st);
    long long annotations = q1(db, "SELECT count(*) FROM annotations", &bad);
    long long tagged = q1(db, "SELECT count(DISTINCT flow_id) FROM tags", &bad);
    long long marked = q1(db, "SELECT count(*) FROM marks", &bad);
    long long overlay = q1(db, "SELECT count(*) FROM config_overlay", &bad);
    long long damage = q1(db, "SELECT count(*) FROM damage", &bad);
    long long index_bytes =
        q1(db, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", &bad);
    if (bad.code != SQLITE_OK) {
        int rc = reel_cli_db_error(cli, reel_session_name(s), bad.code, bad.msg);
        reel_session_close(s);
        return rc;
    }
    char *created = reel_index_meta_get(db, "created_us");
    long long cus = created ? strtoll(created, NULL, 10) : 0;
    free(created);
    /* connections to ignore_hosts are relayed, not recorded: only counted */
    char *ign = reel_index_meta_get(db, "ignored_connections");
    long long ignored = ign ? strtoll(ign, NULL, 10) : 0;
    free(ign);
    long pid = reel_session_recorder_pid(s);
    reel_config_t *cfg = reel_config_new();
    retention_t ret;
    retention_load(db, cfg, &ret);
    if (cli->json) {
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
            "s:I, s:I, s:I, s:I}",
            "session", reel_session_name(s), "path", reel_session_path(s), "created_us",
            (json_int_t)cus, "flows", (json_int_t)flows, "states", "complete",
            (json_int_t)complete, "error", (json_int_t)errors, "open", (json_int_t)open_,
            "interrupted", (json_int_t)interrupted, "first_us", (json_int_t)first, "last_us",
            (json_int_t)last, "segments", (json_int_t)segments, "frames", (json_int_t)frames,
            "spool_bytes", (json_int_t)spool, "raw_bytes", (json_int_t)raw, "index_bytes",
            (json_int_t)index_bytes, "annotations", (json_int_t)annotations, "tagged_flows",
            (json_int_t)tagged, "marked_flows", (json_int_t)marked, "overlay_keys",
            (json_int_t)overlay, "damaged_ranges", (json_int_t)damage);
        json_object_set_new(o, "recording_pid", pid ? json_integer(pid) : json_null());
        json_object_set_new(o, "ignored_connections", json_integer(ignored));
        const char *ro = reel_session_readonly(s);
        json_object_set_new(o, "read_only", ro ? json_string(ro) : json_null());
        json_object_set_new(o, "retention", retention_json(&ret));
        reel_config_free(cfg);
        reel_session_close(s);
        return reel_cli_json_out(o);
    }
    char t[32], t1[32], t2[32], sp[16], rw[16], ib[16];
    reel_cli_time(cus, t);
    reel_cli_size((unsigned long long)spool, sp);
    reel_cli_size((unsigned long long)raw, rw);
    reel_cli_size((unsigned long long)index_bytes, ib);
    printf("session     %s\n", reel_session_name(s));
    printf("path        %s\n", reel_session_path(s));
    printf("created     %s\n", t);
    if (reel_session_readonly(s))
        printf("access      read-only (%s)\n", reel_session_readonly(s));
    if (pid)
        printf("recording   yes, pid %ld\n", pid);
    else
        printf("recording   no\n");
    printf("flows       %lld (%lld complete, %lld error, %lld open, %lld interrupted)\n", flows,
           complete, errors, open_, interrupted);
    if (flows) {
        reel_cli_time(first, t1);
        reel_cli_time(last, t2);
        printf("started     %s .. %s\n", t1, t2);
    }
    printf("spool       %s in %lld frame%s, %lld segment%s (%s before compression", sp, frames,
           frames == 1 ? "" : "s", segments, segments == 1 ? "" : "s", rw);
    if (raw)
        printf(", ratio %.2f", (double)spool / (double)raw);
    printf(")\n");
    printf("index       %s\n", ib);
    printf("user data   %lld annotation%s, %lld tagged flow%s, %lld marked\n", annotations,
           annotations == 1 ? "" : "s", tagged, tagged == 1 ? "" : "s", marked);
    printf("overlay     %lld key%s set ('reel config %s list')\n", overlay, overlay == 1 ? "" : "s",
           reel_session_name(s));
    if (ignored)
        printf("ignored     %lld connection%s to ignore_hosts (relayed, not recorded)\n", ignored,
               ignored == 1 ? "" : "s");
    if (damage)
        printf("damage      %lld damaged spool range%s skipped by repair ('reel verify %s')\n",
               damage, damage == 1 ? "" : "s", reel_session_name(s));
    retention_print(&ret);
    reel_config_free(cfg);
    reel_session_close(s);
    return REEL_EXIT_OK;
}
