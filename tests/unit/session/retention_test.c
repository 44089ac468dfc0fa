/* Retention: a recorder with 1 MiB segments and retention_max_bytes keeps a
 * bounded spool, drops whole oldest segments with their index rows, keeps
 * segments holding an open or a tagged flow, records every drop, and the
 * session then recovers, verifies and repairs clean (dropped segments are
 * not damage); `reel compact` removes the leftovers; on_segment_closed runs
 * for every closed segment and its failure is only a warning. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "session/recorder.h"
#include "session/retention.h"
#include "session/session.h"
#include "session/spool.h"

typedef struct {
    pthread_mutex_t mu;
    reel_buf_t warnings;
} env_t;

static void warn_cb(void *ctx, const char *msg) {
    env_t *e = ctx;
    pthread_mutex_lock(&e->mu);
    reel_buf_printf(&e->warnings, "%s\n", msg);
    pthread_mutex_unlock(&e->mu);
}

static int warned(env_t *e, const char *needle) {
    pthread_mutex_lock(&e->mu);
    reel_buf_append(&e->warnings, "", 1);
    e->warnings.len--;
    int r = strstr((const char *)e->warnings.data, needle) != NULL;
    pthread_mutex_unlock(&e->mu);
    return r;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static reel_session_t *open_session(const char *home, const char *name, int flags) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, name, flags, &s, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    return s;
}

static reel_recorder_t *start(reel_session_t *s, env_t *e, const reel_retention_limits_t *lim,
                              const char *hook) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
    o.segment_size = 1u << 20; /* the smallest */
    o.fsync = REEL_FSYNC_NEVER;
    o.zstd_level = 1;
    o.warn = warn_cb;
    o.warn_ctx = e;
    o.maint_ms = 50;
    if (lim)
        o.retention = *lim;
    o.on_segment_closed = hook;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

/* A flow with `size` incompressible response bytes; left open if !end. */
static reel_rflow_t *flow(reel_recorder_t *r, size_t size, int end, uint64_t *id) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    *id = reel_rflow_id(f);
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
    if (!end)
        return f;
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return NULL;
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

static uint64_t spool_bytes(reel_session_t *s, int *nseg) {
    DIR *d = opendir(reel_session_spool_dir(s));
    assert_non_null(d);
    uint64_t total = 0;
    *nseg = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t n;
        if (!reel_spool_segment_parse(de->d_name, &n))
            continue;
        char *p = reel_asprintf("%s/%s", reel_session_spool_dir(s), de->d_name);
        struct stat st;
        if (stat(p, &st) == 0)
            total += (uint64_t)st.st_size;
        free(p);
        (*nseg)++;
    }
    closedir(d);
    return total;
}

static void assert_verify(reel_session_t *s) {
    reel_err_t err;
    reel_err_clear(&err);
    char *rep = NULL;
    if (reel_session_verify(s, &rep, &err) != REEL_OK)
        fail_msg("verify failed:\n%s", rep ? rep : reel_err_str(&err));
    free(rep);
}

static void test_max_bytes_keeps_open_and_tagged(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-ret");
    env_t e = {.mu = PTHREAD_MUTEX_INITIALIZER};
    reel_buf_init(&e.warnings, 0);
    reel_session_t *s = open_session(home, "r", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e, NULL, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t open_id, tagged_id, id;
    reel_rflow_t *open_f = flow(r, 64 << 10, 0, &open_id); /* open all along: segment 1 */
    flow(r, 64 << 10, 1, &tagged_id);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO tags VALUES(%llu, 'keep')",
             (unsigned long long)tagged_id);
    assert_int_equal(sqlite3_exec(reel_session_db(s), sql, NULL, NULL, NULL), SQLITE_OK);
    /* Flows up to segment 3 before retention is on, then 3 MiB at most:
     * ~10 MiB pass through. */
    for (int i = 0; i < 40; i++)
        flow(r, 64 << 10, 1, &id);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    reel_retention_limits_t lim = {.max_bytes = 3u << 20};
    reel_recorder_set_retention(r, &lim, NULL);
    for (int i = 0; i < 120; i++) {
        flow(r, 64 << 10, 1, &id);
        if (i % 16 == 0)
            assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    }
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    int nseg = 0;
    uint64_t total = 0;
    for (int i = 0; i < 100; i++) { /* retention runs on its own thread */
        total = spool_bytes(s, &nseg);
        if (total <= (5u << 20))
            break;
        sleep_ms(50);
    }
    /* Bounded: the limit, the segment being written and segment 1 (the
     * open and the tagged flow keep it). */
    assert_true(total <= (5u << 20));
    assert_true(warned(&e, "retention dropped"));
    reel_recorder_flow_end(open_f, NULL, 0, 0, 0);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_true(q1(s, "SELECT count(*) FROM retention WHERE reason = 'max_bytes'") >= 5);
    assert_int_equal(q1(s, "SELECT count(*) FROM retention WHERE segment = 1"), 0);
    long long dropped = q1(s, "SELECT sum(flows) FROM retention");
    long long left = q1(s, "SELECT count(*) FROM flows");
    assert_true(dropped > 50);
    assert_true(left + dropped >= 162);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM flows WHERE id IN (%llu, %llu)",
             (unsigned long long)open_id, (unsigned long long)tagged_id);
    assert_int_equal(q1(s, sql), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM frames f WHERE EXISTS (SELECT 1 FROM retention "
                           "r WHERE r.segment = f.segment)"),
                     0);
    reel_session_close(s);

    /* Reopened: recovery sees no missing segment, verify passes. */
    s = open_session(home, "r", 0);
    const char *note = reel_session_recovery_note(s);
    if (note && strstr(note, "missing"))
        fail_msg("recovery: %s", note);
    assert_verify(s);
    reel_session_close(s);

    /* Repair rebuilds the same flows (not the dropped ones), no damage. */
    s = open_session(home, "r", REEL_OPEN_RECORD);
    char *rep = NULL;
    assert_int_equal(reel_session_repair(s, &rep, &err), REEL_OK);
    free(rep);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), left);
    assert_int_equal(q1(s, "SELECT count(*) FROM damage"), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE damaged"), 0);
    assert_verify(s);

    /* Compact: fewer bytes, same flows, the tag kept, verify clean. */
    uint64_t before = spool_bytes(s, &nseg);
    assert_int_equal(reel_retention_compact(s, 1u << 20, 0, &rep, &err), REEL_OK);
    free(rep);
    uint64_t after = spool_bytes(s, &nseg);
    assert_true(after <= before);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), left);
    assert_int_equal(q1(s, "SELECT count(*) FROM tags WHERE tag = 'keep'"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM damage"), 0);
    assert_verify(s);
    reel_session_close(s);
    s = open_session(home, "r", 0);
    note = reel_session_recovery_note(s);
    if (note && strstr(note, "missing"))
        fail_msg("recovery after compact: %s", note);
    assert_verify(s);
    reel_session_close(s);
    reel_buf_free(&e.warnings);
    reel_test_rm_rf(home);
    free(home);
}

static void test_hook_and_max_flows(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-ret");
    char *ship = reel_asprintf("%s/shipped", home);
    assert_int_equal(mkdir(ship, 0700), 0);
    char *cmd = reel_asprintf("cp -t %s", ship);
    env_t e = {.mu = PTHREAD_MUTEX_INITIALIZER};
    reel_buf_init(&e.warnings, 0);
    reel_session_t *s = open_session(home, "h", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_retention_limits_t lim = {.max_flows = 20};
    reel_recorder_t *r = start(s, &e, &lim, cmd);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t id;
    for (int i = 0; i < 60; i++)
        flow(r, 64 << 10, 1, &id); /* ~4 segments */
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    char *third = reel_asprintf("%s/00000003.zst", ship);
    for (int i = 0; i < 200 && access(third, F_OK) != 0; i++)
        sleep_ms(10); /* the hook runs on the maintenance thread */
    free(third);
    /* A failing hook is a warning; capture goes on. */
    reel_recorder_set_retention(r, &lim, "exit 3;");
    for (int i = 0; i < 20; i++)
        flow(r, 64 << 10, 1, &id);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    for (int i = 0; i < 100 && !warned(&e, "exit status 3"); i++)
        sleep_ms(20);
    assert_true(warned(&e, "on_segment_closed: 'exit 3;' failed for"));
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    /* Segments 1..3 were closed before the hook changed: all shipped whole. */
    for (uint32_t n = 1; n <= 3; n++) {
        char name[16];
        reel_spool_segment_name(n, name);
        char *p = reel_asprintf("%s/%s", ship, name);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > (900 << 10));
        free(p);
    }
    assert_int_equal(q1(s, "SELECT max(id) FROM flows"), 80);
    assert_true(q1(s, "SELECT count(*) FROM flows") < 50);
    assert_true(q1(s, "SELECT count(*) FROM retention WHERE reason = 'max_flows'") >= 2);
    reel_session_close(s);
    /* Ids of dropped flows are never given again. */
    s = open_session(home, "h", REEL_OPEN_RECORD);
    lim.max_flows = 0;
    r = start(s, &e, &lim, NULL);
    reel_rflow_t *f = flow(r, 0, 1, &id);
    (void)f;
    assert_int_equal(id, 81);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_verify(s);
    reel_session_close(s);
    reel_buf_free(&e.warnings);
    reel_test_rm_rf(home);
    free(cmd);
    free(ship);
    free(home);
}

static void exec_ok(reel_session_t *s, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(reel_session_db(s), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* session.db and its -wal and -shm deleted, then `reel repair`; returns
 * the session and its report (owned). */
static reel_session_t *lose_index(const char *home, const char *name, char **rep) {
    for (int i = 0; i < 3; i++) {
        char *p = reel_asprintf("%s/%s/session.db%s", home, name,
                                (const char *[]){"", "-wal", "-shm"}[i]);
        unlink(p);
        free(p);
    }
    reel_session_t *s = open_session(home, name, REEL_OPEN_RECORD | REEL_OPEN_REPAIR);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_repair(s, rep, &err) != REEL_OK)
        fail_msg("repair: %s", reel_err_str(&err));
    return s;
}

static int seg_exists(const char *home, const char *name, uint32_t n) {
    char seg[16];
    reel_spool_segment_name(n, seg);
    char *p = reel_asprintf("%s/%s/spool/%s", home, name, seg);
    int r = access(p, F_OK) == 0;
    free(p);
    return r;
}

/* Killed after a drop's journal record and before its commit: the index
 * keeps the segment. session.db lost later, repair finds the drop in the
 * journal and the file still there: it drops the segment as retention
 * would, but keeps one holding a flow the user marked since. */
static void test_journaled_drop_without_commit(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-ret");
    env_t e = {.mu = PTHREAD_MUTEX_INITIALIZER};
    reel_buf_init(&e.warnings, 0);
    reel_session_t *s = open_session(home, "j", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e, NULL, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t id;
    for (int i = 0; i < 60; i++)
        flow(r, 64 << 10, 1, &id); /* ~4 segments */
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_true(seg_exists(home, "j", 3));
    /* What the dying process left: the journal's records, not the rows. */
    exec_ok(s, "INSERT INTO retention VALUES(1, 1000000, 9, 1048576, 'max_bytes');"
               "INSERT INTO retention VALUES(2, 2000000, 9, 1048576, 'max_bytes')");
    exec_ok(s, "SELECT reel_journal_enable(0); DELETE FROM retention; "
               "SELECT reel_journal_enable(1)");
    long long only2 = q1(s, "SELECT min(flow_id) FROM flow_frames WHERE segment = 2 AND flow_id "
                            "NOT IN (SELECT flow_id FROM flow_frames WHERE segment != 2)");
    assert_true(only2 > 0);
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO marks(flow_id, created_us) VALUES(%lld, 1)", only2);
    exec_ok(s, sql);
    long long total = q1(s, "SELECT count(*) FROM flows");
    long long in1 = q1(s, "SELECT count(DISTINCT flow_id) FROM flow_frames WHERE segment = 1");
    reel_session_close(s);

    char *rep = NULL;
    s = lose_index(home, "j", &rep);
    if (!strstr(rep, "finished 1 drop by retention") || !strstr(rep, "kept 1 segment") ||
        strstr(rep, "zst is missing") || strstr(rep, "are missing") || strstr(rep, "records lost"))
        fail_msg("repair: %s", rep);
    free(rep);
    assert_false(seg_exists(home, "j", 1));
    assert_true(seg_exists(home, "j", 2));
    assert_int_equal(q1(s, "SELECT group_concat(segment) FROM retention"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), total - in1);
    snprintf(sql, sizeof sql, "SELECT marked FROM flows WHERE id = %lld", only2);
    assert_int_equal(q1(s, sql), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE damaged"), 0);
    assert_verify(s);
    reel_session_close(s);
    /* The journal says all that: lost again, the same. */
    s = lose_index(home, "j", &rep);
    if (strstr(rep, "zst is missing") || strstr(rep, "are missing") ||
        strstr(rep, "records lost") || strstr(rep, "finished ") || strstr(rep, "kept 1 segment"))
        fail_msg("repair again: %s", rep);
    free(rep);
    assert_int_equal(q1(s, "SELECT group_concat(segment) FROM retention"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), total - in1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE damaged"), 0);
    assert_verify(s);
    reel_session_close(s);
    reel_buf_free(&e.warnings);
    reel_test_rm_rf(home);
    free(home);
}

static void set_mtime(const char *home, const char *name, uint32_t n, time_t t) {
    char seg[16];
    reel_spool_segment_name(n, seg);
    char *p = reel_asprintf("%s/%s/spool/%s", home, name, seg);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    free(p);
}

/* Age retention with a segment dated in the future (the clock was set back
 * after it was written): it used to stop there, the first segment too
 * young, and drop none of the old ones after it. A segment is as old as
 * any later one, so all go, and the future date is reported. */
static void test_max_age_past_a_future_segment(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-ret");
    env_t e = {.mu = PTHREAD_MUTEX_INITIALIZER};
    reel_buf_init(&e.warnings, 0);
    reel_session_t *s = open_session(home, "a", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e, NULL, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t id;
    for (int i = 0; i < 75; i++)
        flow(r, 64 << 10, 1, &id); /* ~5 segments */
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_true(seg_exists(home, "a", 5));
    long long nseg = q1(s, "SELECT max(segment) FROM frames");
    set_mtime(home, "a", 1, 1893456000); /* 2030-01-01 */
    for (uint32_t n = 2; n <= (uint32_t)nseg; n++)
        set_mtime(home, "a", n, 1577836800); /* 2020-01-01 */
    reel_retention_limits_t lim = {.max_age_s = 60};
    reel_retention_result_t res;
    int64_t now = (int64_t)1700000000 * 1000000; /* 2023 */
    assert_int_equal(reel_retention_run(reel_session_db(s), reel_session_spool_dir(s), UINT32_MAX,
                                        &lim, now, NULL, &res, &err),
                     REEL_OK);
    assert_int_equal(res.segments, nseg);
    assert_int_equal(res.future, 1);
    assert_int_equal(res.future_seg, 1);
    assert_true(res.future_s > 6 * 365 * 86400LL);
    assert_false(seg_exists(home, "a", 1));
    assert_false(seg_exists(home, "a", 2));
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM retention WHERE reason = 'max_age'"), nseg);
    reel_session_close(s);
    reel_buf_free(&e.warnings);
    reel_test_rm_rf(home);
    free(home);
}

/* Compact that cannot write its new segments (a full disk; here a file
 * size limit) names the file and says nothing changed, and nothing did. */
static void test_compact_write_fails(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("reel-ret");
    env_t e = {.mu = PTHREAD_MUTEX_INITIALIZER};
    reel_buf_init(&e.warnings, 0);
    reel_session_t *s = open_session(home, "c", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e, NULL, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t id;
    for (int i = 0; i < 40; i++)
        flow(r, 64 << 10, 1, &id);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    long long flows = q1(s, "SELECT count(*) FROM flows");
    struct rlimit old, lim = {256 << 10, 256 << 10};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char *rep = NULL;
    reel_rc rc = reel_retention_compact(s, 1u << 20, 0, &rep, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, was);
    assert_int_equal(rc, REEL_IO);
    const char *msg = reel_err_str(&err);
    if (!strstr(msg, "compact: writing ") || !strstr(msg, "/spool/.compact-000000") ||
        !strstr(msg, "File too large") || !strstr(msg, "; nothing was changed"))
        fail_msg("message: %s", msg);
    free(rep);
    DIR *d = opendir(reel_session_spool_dir(s));
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, ".compact-", 9) == 0)
            fail_msg("left %s", de->d_name);
    closedir(d);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), flows);
    assert_int_equal(q1(s, "SELECT count(*) FROM retention"), 0);
    assert_verify(s);
    reel_session_close(s);
    reel_buf_free(&e.warnings);
    reel_test_rm_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_bytes_keeps_open_and_tagged),
        cmocka_unit_test(test_hook_and_max_flows),
        cmocka_unit_test(test_journaled_drop_without_commit),
        cmocka_unit_test(test_max_age_past_a_future_segment),
        cmocka_unit_test(test_compact_write_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
