/* libFuzzer harness: opening a session whose session.db is arbitrary bytes
 * (src/session/session.h, index.h). A session directory is someone's data
 * and may come from elsewhere; whatever its index holds, reel must report
 * errors, not crash.
 *
 * Per input: a fresh session directory with the input as session.db and a
 * small valid spool segment (tests/fuzz/data/index-segment.zst, the spool
 * of the corpus's session-chromium.db) in spool/; then
 * what the CLI does with a session: open (with recovery), verify, list
 * flows with a filter, read each listed flow from the spool, load the
 * config overlay, repair, verify again. Any error is fine. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/config.h"
#include "session/filter.h"
#include "session/index.h"
#include "session/session.h"
#include "session/store.h"

static uint8_t *segment;
static size_t segment_len;
static reel_filter_t *filter;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_tmpdir("index");
    /* The segment that goes with the corpus's session.db (both written by
     * `reel import tests/data/har/chromium.har`; make_corpus.py). */
    segment = fuzz_read_file(REEL_FUZZ_INDEX_SEGMENT, &segment_len);
    reel_err_t err;
    reel_err_clear(&err);
    FUZZ_CHECK(reel_filter_compile("~d example & !~c 200 | ~m POST | ~tag x | ~marked", &filter,
                                   &err) == REEL_OK,
               "filter: %s", reel_err_str(&err));
    fuzz_mkdir(fuzz_path("home"));
    return 0;
}

static int count_cb(void *ctx, const Reel__Record *rec) {
    (void)rec;
    (*(size_t *)ctx)++;
    return 0;
}

static void list_and_read(reel_session_t *s) {
    sqlite3 *db = reel_session_db(s);
    char *sql = reel_asprintf(
        "SELECT * FROM (SELECT id, start_us, method, url, status, request_body_size, "
        "response_body_size, end_us, (SELECT group_concat(tag, ',') FROM tags t WHERE t.flow_id "
        "= flows.id), marked, state, error, kind, host, port FROM flows WHERE (%s) ORDER BY id "
        "DESC LIMIT ?) ORDER BY id",
        reel_filter_sql(filter));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        int k = reel_filter_bind(filter, st, 1);
        sqlite3_bind_int64(st, k, 8);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int col = 0; col < sqlite3_column_count(st); col++)
                (void)sqlite3_column_text(st, col);
            size_t n = 0;
            reel_err_t err;
            reel_err_clear(&err);
            reel_store_read_flow(s, (uint64_t)sqlite3_column_int64(st, 0), count_cb, &n, &err);
        }
    }
    sqlite3_finalize(st);
    free(sql);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *home = fuzz_path("home");
    const char *dir = fuzz_path("home/s");
    fuzz_rm_rf(dir);
    fuzz_mkdir(dir);
    fuzz_mkdir(fuzz_path("home/s/spool"));
    fuzz_write_file(fuzz_path("home/s/session.db"), data, size);
    fuzz_write_file(fuzz_path("home/s/spool/00000001.zst"), segment, segment_len);

    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, "s", 0, &s, &err) != REEL_OK) {
        fuzz_log("open: %s", reel_err_str(&err));
        FUZZ_CHECK(s == NULL && err.code != REEL_OK, "open failed without an error");
        return 0;
    }
    fuzz_log("recovery: %s", reel_session_recovery_note(s));
    char *report = NULL;
    reel_session_verify(s, &report, &err);
    FUZZ_CHECK(report != NULL, "verify without a report");
    fuzz_log("verify: %s", report);
    free(report);
    list_and_read(s);

    reel_config_t *cfg = reel_config_new();
    char *warnings = NULL;
    reel_err_clear(&err);
    reel_config_load_overlay(cfg, reel_session_db(s), &warnings, &err);
    free(warnings);
    for (const reel_option_t *o = reel_options(); o->name; o++)
        (void)reel_config_get(cfg, o->name, NULL);
    reel_config_free(cfg);
    free(reel_index_meta_get(reel_session_db(s), "name"));

    reel_err_clear(&err);
    report = NULL;
    reel_session_repair(s, &report, &err);
    fuzz_log("repair: %s %s", report ? report : "", reel_err_str(&err));
    free(report);
    report = NULL;
    reel_err_clear(&err);
    reel_session_verify(s, &report, &err);
    free(report);
    list_and_read(s);
    reel_session_close(s);
    return 0;
}
