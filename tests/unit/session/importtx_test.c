/* Import transactions (session/importtx.h): an import recorded past its
 * rollback point, over several segments, with user data on its flows, is
 * undone (in process, and by the recovery of the next open when it was
 * killed) down to the bytes and rows the session had before; undoing twice
 * is undoing once; a committed import stays; a damaged `import` file stops
 * the open with a message naming it. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "session/importtx.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/spool.h"

static reel_session_t *open_session(const char *home, const char *name, int flags) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, name, flags, &s, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    return s;
}

static reel_recorder_t *start(reel_session_t *s) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
    o.segment_size = 1u << 20; /* the smallest: an import over several */
    o.fsync = REEL_FSYNC_NEVER;
    o.zstd_level = 1;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

/* n flows of `size` incompressible response bytes each. */
static void flows(reel_recorder_t *r, int n, size_t size) {
    for (int k = 0; k < n; k++) {
        reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
        reel_request_head_t rq = {
            .method = "GET", .scheme = "http", .host = "example.com", .port = 80, .target = "/"};
        reel_recorder_request_head(f, &rq);
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f, &rs);
        uint8_t buf[8192];
        for (size_t off = 0; off < size; off += sizeof buf) {
            for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (uint8_t)reel_test_rnd();
            reel_recorder_response_body(f, buf, sizeof buf);
        }
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
}

static long long q1(reel_session_t *s, const char *sql) {
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(reel_session_db(s), sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(reel_session_db(s)));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void exec(reel_session_t *s, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(reel_session_db(s), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* Sizes of segments 1..8 (-1: no file). */
static void sizes(reel_session_t *s, long long out[8]) {
    for (uint32_t n = 1; n <= 8; n++) {
        char name[16];
        reel_spool_segment_name(n, name);
        char *p = reel_asprintf("%s/%s", reel_session_spool_dir(s), name);
        struct stat st;
        out[n - 1] = stat(p, &st) == 0 ? (long long)st.st_size : -1;
        free(p);
    }
}

static void assert_verify(reel_session_t *s) {
    reel_err_t err;
    reel_err_clear(&err);
    char *rep = NULL;
    if (reel_session_verify(s, &rep, &err) != REEL_OK)
        fail_msg("verify failed:\n%s", rep ? rep : reel_err_str(&err));
    free(rep);
}

static int has_point(reel_session_t *s) {
    char *p = reel_asprintf("%s/%s", reel_session_path(s), REEL_IMPORTTX_NAME);
    int r = access(p, F_OK) == 0;
    free(p);
    return r;
}

/* A session with 5 flows in segment 1 and user data on them; then an
 * import of 30 flows of 100 KiB (about 3 MiB: segments 1 to 4) with an
 * annotation and a tag of its own, recorded and indexed, not committed.
 * *before gets the segment sizes before the import. */
static reel_session_t *imported(const char *home, reel_importtx_point_t *p, long long before[8]) {
    reel_session_t *s = open_session(home, "s", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s);
    flows(r, 5, 16 << 10);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    exec(s, "INSERT INTO annotations(flow_id, created_us, text) VALUES(2, 1, 'before');"
            "INSERT INTO tags VALUES(3, 'old'); INSERT INTO marks VALUES(4, 1)");
    sizes(s, before);

    r = start(s);
    memset(p, 0, sizeof *p);
    reel_recorder_position(r, &p->segment, &p->offset, &p->first_id);
    assert_int_equal(p->segment, 1);
    assert_int_equal(p->offset, before[0]);
    assert_int_equal(p->first_id, 6);
    p->pid = 42;
    snprintf(p->file, sizeof p->file, "big\n.har");
    assert_int_equal(reel_importtx_begin(s, p, &err), REEL_OK);
    assert_true(has_point(s));
    assert_int_equal(reel_importtx_begin(s, p, &err), REEL_EXISTS); /* one at a time */
    reel_err_clear(&err);
    flows(r, 30, 100 << 10);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    exec(s, "INSERT INTO annotations(flow_id, created_us, text) VALUES(7, 1, 'during');"
            "INSERT INTO tags VALUES(8, 'new')");
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 35);
    long long now[8];
    sizes(s, now);
    assert_true(now[3] > 0); /* the import rolled over to segment 4 */
    return s;
}

static void assert_as_before(reel_session_t *s, const long long before[8]) {
    long long now[8];
    sizes(s, now);
    assert_int_equal(now[0], before[0]);
    for (int i = 1; i < 8; i++)
        assert_int_equal(now[i], -1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 5);
    assert_int_equal(q1(s, "SELECT max(id) FROM flows"), 5);
    assert_int_equal(q1(s, "SELECT count(*) FROM frames WHERE segment > 1"), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_frames WHERE flow_id > 5"), 0);
    /* the user data of the flows that were there stays; the import's goes */
    assert_int_equal(q1(s, "SELECT count(*) FROM annotations"), 1);
    assert_int_equal(q1(s, "SELECT flow_id FROM annotations"), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM tags"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM marks"), 1);
    assert_false(has_point(s));
    assert_verify(s);
}

static void test_undo_in_process(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-itx");
    reel_importtx_point_t p;
    long long before[8];
    reel_session_t *s = imported(home, &p, before);
    reel_importtx_undone_t u;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_importtx_undo(s, &p, &u, &err), REEL_OK);
    assert_int_equal(u.flows, 30);
    assert_int_equal(u.first, 6);
    assert_int_equal(u.last, 35);
    assert_int_equal(u.user_rows, 2);
    assert_int_equal(u.segments, 3);
    assert_true(u.bytes > (3u << 20));
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_importtx_describe(&p, &u, &b);
    assert_non_null(strstr((const char *)b.data, "an import of 'big?.har' (PID 42, started at an "
                                                 "unknown time) did not finish: rolled back, "
                                                 "its 30 flows (ids 6-35) removed with 2 of "
                                                 "their annotations, tags and marks"));
    reel_buf_free(&b);
    assert_as_before(s, before);
    /* again: nothing more goes */
    assert_int_equal(reel_importtx_undo(s, &p, &u, &err), REEL_OK);
    assert_int_equal(u.flows, 0);
    assert_int_equal(u.bytes, 0);
    assert_as_before(s, before);
    /* the ids are given again */
    reel_recorder_t *r = start(s);
    flows(r, 1, 1024);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_int_equal(q1(s, "SELECT max(id) FROM flows"), 6);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

static void test_undone_on_next_open(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-itx");
    reel_importtx_point_t p;
    long long before[8];
    reel_session_t *s = imported(home, &p, before);
    reel_session_close(s); /* killed: `import` is left */
    s = open_session(home, "s", 0);
    const char *note = reel_session_recovery_note(s);
    assert_non_null(strstr(note, "did not finish: rolled back, its 30 flows (ids 6-35) removed"));
    assert_non_null(strstr(note, "(3 segments removed)"));
    assert_as_before(s, before);
    reel_session_close(s);
    /* and a repair of the result changes nothing: the journal agrees */
    s = open_session(home, "s", REEL_OPEN_RECORD);
    char *rep = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_repair(s, &rep, &err), REEL_OK);
    free(rep);
    assert_as_before(s, before);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

static void test_undone_by_repair(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-itx");
    reel_importtx_point_t p;
    long long before[8];
    reel_session_t *s = imported(home, &p, before);
    reel_session_close(s);
    s = open_session(home, "s", REEL_OPEN_RECORD | REEL_OPEN_REPAIR); /* no recovery */
    assert_true(has_point(s));
    char *rep = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_repair(s, &rep, &err), REEL_OK);
    assert_non_null(strstr(rep, "did not finish: rolled back"));
    free(rep);
    assert_as_before(s, before);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

static void test_committed_stays(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-itx");
    reel_importtx_point_t p;
    long long before[8];
    reel_session_t *s = imported(home, &p, before);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_importtx_commit(s, &err), REEL_OK);
    assert_false(has_point(s));
    reel_session_close(s);
    s = open_session(home, "s", 0);
    assert_string_equal(reel_session_recovery_note(s), "");
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 35);
    assert_int_equal(q1(s, "SELECT count(*) FROM annotations"), 2);
    assert_verify(s);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

static void test_damaged_point(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-itx");
    reel_session_t *s = open_session(home, "s", REEL_OPEN_CREATE);
    char *p = reel_asprintf("%s/%s", reel_session_path(s), REEL_IMPORTTX_NAME);
    reel_session_close(s);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("reel-import 1\nsegment 1\nfirst_id 1\n", f); /* no offset */
    fclose(f);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "s", 0, &s, &err), REEL_CORRUPT);
    assert_non_null(strstr(reel_err_str(&err), p));
    assert_non_null(strstr(reel_err_str(&err), "remove the file to keep the flows it recorded"));
    free(p);
    reel_test_rm_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_undo_in_process),  cmocka_unit_test(test_undone_on_next_open),
        cmocka_unit_test(test_undone_by_repair), cmocka_unit_test(test_committed_stays),
        cmocka_unit_test(test_damaged_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
