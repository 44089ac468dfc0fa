/* libFuzzer harness: the flow filter language (src/session/filter.h).
 *
 * The input is the expression text (a NUL inside ends it, as on a command
 * line). A compiled filter's SQL runs against an in-memory database with
 * the flows and tags tables and the regexp() function, in the three shapes
 * the header promises room for: plain, the `reel flows` query, and inside a
 * CTE under two levels of subquery. A filter that compiles must give SQL
 * that prepares and binds; running it may only fail on a regex that hits
 * PCRE2's match limits. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/filter.h"

static sqlite3 *db;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    reel_err_t err;
    reel_err_clear(&err);
    if (sqlite3_open(":memory:", &db) != SQLITE_OK || reel_filter_register(db, &err) != REEL_OK)
        abort();
    char *msg = NULL;
    if (sqlite3_exec(
            db,
            "CREATE TABLE flows (id INTEGER PRIMARY KEY, host TEXT, url TEXT, method TEXT,"
            " status INTEGER, marked INTEGER NOT NULL DEFAULT 0,"
            " damaged INTEGER NOT NULL DEFAULT 0, kind TEXT NOT NULL DEFAULT 'http',"
            " start_us INTEGER NOT NULL DEFAULT 0, error TEXT, client_addr TEXT,"
            " server_addr TEXT, request_content_type TEXT, response_content_type TEXT,"
            " request_body_size INTEGER NOT NULL DEFAULT 0,"
            " response_body_size INTEGER NOT NULL DEFAULT 0, replay_of INTEGER,"
            " client_conn INTEGER, stream_id INTEGER,"
            " replay_session TEXT, http_version TEXT);"
            "CREATE TABLE body_text (flow_id INTEGER PRIMARY KEY, req TEXT, resp TEXT,"
            " fts INTEGER NOT NULL DEFAULT 0);"
            "CREATE VIRTUAL TABLE body_fts USING fts5(req, resp, content='body_text',"
            " content_rowid='flow_id', tokenize='trigram', columnsize=0);"
            "CREATE TABLE body_todo (flow_id INTEGER PRIMARY KEY, reason TEXT NOT NULL);"
            "INSERT INTO body_text (flow_id, req, resp, fts) VALUES (1, 'user=7', '{\"id\": 7}', 1);"
            "INSERT INTO body_fts (rowid, req, resp) VALUES (1, 'user=7', '{\"id\": 7}');"
            "INSERT INTO body_todo VALUES (3, 'binary');"
            "CREATE TABLE body_off (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL);"
            "INSERT INTO body_off VALUES (4, 4);"
            "CREATE TABLE annotations (id INTEGER PRIMARY KEY, flow_id INTEGER NOT NULL,"
            " created_us INTEGER NOT NULL, text TEXT NOT NULL);"
            "INSERT INTO annotations (flow_id, created_us, text) VALUES (2, 1, 'login bug'),"
            " (4, 2, 'caf\xc3\xa9');"
            "CREATE INDEX flows_status ON flows(status);"
            /* ~conn N reads the connection's range of ids (schema 11) */
            "CREATE TABLE client_conns (conn INTEGER PRIMARY KEY, first_flow INTEGER NOT NULL,"
            " last_flow INTEGER NOT NULL);"
            "INSERT INTO client_conns VALUES (1, 1, 4), (2, 2, 2), (5, 5, 7);"
            "CREATE TABLE tags (flow_id INTEGER NOT NULL, tag TEXT NOT NULL,"
            " PRIMARY KEY (flow_id, tag)) WITHOUT ROWID;"
            "INSERT INTO flows (id, host, url, method, status, marked) VALUES"
            " (1, 'api.example.com', 'https://api.example.com/v1/users?id=7', 'GET', 200, 0),"
            " (2, 'API.Example.COM', 'https://API.Example.COM/v1/Login', 'POST', 401, 1),"
            " (3, 'cdn.other.net', 'http://cdn.other.net/static/app.js', 'GET', 304, 0),"
            " (4, '::1', 'http://[::1]:8080/caf%C3%A9', 'PUT', 500, 1),"
            " (5, 'b.test', 'http://b.test/y', 'DELETE', NULL, 0),"
            " (6, NULL, NULL, 'CONNECT', NULL, 0),"
            " (7, 'xn--bcher-kva.example', 'https://xn--bcher-kva.example/\xc3\xa9t\xc3\xa9', 'GET',"
            " 404, 0);"
            "INSERT INTO tags VALUES (1, 'auth'), (2, 'auth'), (2, 'bug'), (4, 'b u g');"
            "UPDATE flows SET damaged = 1 WHERE id IN (3, 6);"
            "UPDATE flows SET client_conn = 1 WHERE id IN (1, 3, 4);"
            "UPDATE flows SET client_conn = 2 WHERE id = 2;"
            "UPDATE flows SET client_conn = 5 WHERE id IN (5, 7);"
            "UPDATE flows SET http_version = 'HTTP/2.0' WHERE id IN (1, 4);"
            "UPDATE flows SET http_version = 'HTTP/1.1' WHERE id IN (2, 3, 5);"
            "UPDATE flows SET error = 'reset', client_addr = '10.0.0.1:5000',"
            " server_addr = '[::1]:443', request_content_type = 'application/json',"
            " response_content_type = 'text/html', request_body_size = id * 100,"
            " response_body_size = id * 1000, start_us = id * 1000000 WHERE id % 2 = 1;",
            NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "fuzz_filter: %s\n", msg);
        abort();
    }
    return 0;
}

/* Runs pre + the filter's SQL + post. */
static void run(const reel_filter_t *f, const char *pre, const char *post) {
    char *sql = reel_asprintf("%s%s%s", pre, reel_filter_sql(f), post);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    FUZZ_CHECK(rc == SQLITE_OK, "compiled filter gives SQL that does not prepare: %s\n%s",
               sqlite3_errmsg(db), sql);
    int next = reel_filter_bind(f, st, 1);
    FUZZ_CHECK(next >= 1, "bind failed");
    FUZZ_CHECK(next - 1 == sqlite3_bind_parameter_count(st), "bound %d of %d parameters",
               next - 1, sqlite3_bind_parameter_count(st));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int v = sqlite3_column_int(st, 1);
        FUZZ_CHECK(sqlite3_column_type(st, 1) != SQLITE_NULL && (v == 0 || v == 1),
                   "filter value is not 0 or 1");
    }
    if (rc != SQLITE_DONE) {
        const char *m = sqlite3_errmsg(db);
        FUZZ_CHECK(reel_filter_regexp_error(m) && strstr(m, "bad pattern") == NULL,
                   "running the filter: %s\n%s", m, sql);
    }
    sqlite3_finalize(st);
    free(sql);
}

/* The same expression as a map rule's filter (reel_filter_live_compile),
 * or with both, a modify_headers rule's (reel_filter_live_compile_both):
 * refused with a message, or judged on two requests (and, both, on a
 * response) without fault. */
static void live(const char *expr, bool both) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_live_t *f = (reel_filter_live_t *)(uintptr_t)1;
    reel_rc rc = both ? reel_filter_live_compile_both(expr, &f, &err)
                      : reel_filter_live_compile(expr, &f, &err);
    if (rc != REEL_OK) {
        FUZZ_CHECK(f == NULL, "failed live compile left *out set");
        FUZZ_CHECK(strncmp(err.msg, "filter: ", 8) == 0, "message: %s", err.msg);
        return;
    }
    static const reel_filter_field_t hs[] = {{"Host", 4, "api.test", 8},
                                             {"Content-Type", 12, "application/json", 16}};
    reel_filter_request_t rq = {.method = "POST",
                                .url = "https://api.test/v1/users?id=1",
                                .host = "api.test",
                                .content_type = "application/json",
                                .client_addr = "127.0.0.1:5000",
                                .headers = hs,
                                .nheaders = 2,
                                .http2 = true};
    bool a = reel_filter_live_match(f, &rq);
    FUZZ_CHECK(a == reel_filter_live_match(f, &rq), "live match not the same twice");
    reel_filter_request_t bare = {.method = "GET", .url = "http://x/", .host = "x"};
    (void)reel_filter_live_match(f, &bare);
    if (both) {
        static const reel_filter_field_t rs[] = {{"Content-Type", 12, "text/html", 9},
                                                 {"X-Empty", 7, "", 0}};
        rq.response = true;
        rq.status = 404;
        rq.resp_content_type = "text/html";
        rq.resp_headers = rs;
        rq.nresp_headers = 2;
        a = reel_filter_live_match(f, &rq);
        FUZZ_CHECK(a == reel_filter_live_match(f, &rq), "response match not the same twice");
    }
    reel_filter_live_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *expr = reel_strndup((const char *)data, size);
    live(expr, false);
    live(expr, true);
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_t *f = (reel_filter_t *)(uintptr_t)1;
    reel_rc rc = reel_filter_compile(expr, &f, &err);
    if (rc != REEL_OK) {
        FUZZ_CHECK(f == NULL, "failed compile left *out set");
        FUZZ_CHECK(rc == REEL_INVALID || rc == REEL_LIMIT, "compile rc %d", (int)rc);
        FUZZ_CHECK(strncmp(err.msg, "filter: ", 8) == 0, "message: %s", err.msg);
        free(expr);
        return 0;
    }
    const char *sql = reel_filter_sql(f);
    FUZZ_CHECK(sql && sql[0], "empty SQL");
    run(f, "SELECT id, (", ") FROM flows");
    run(f, "SELECT * FROM (SELECT id, (",
        ") AS m, (SELECT group_concat(tag, ',') FROM tags t WHERE t.flow_id = flows.id) FROM "
        "flows ORDER BY id DESC LIMIT 100) ORDER BY id");
    run(f, "WITH c AS (SELECT id, m FROM (SELECT id, m FROM (SELECT id, (",
        ") AS m FROM flows))) SELECT id, m FROM c");
    reel_filter_free(f);
    free(expr);
    return 0;
}
