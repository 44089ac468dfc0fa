/* Recorder fault tests: a disk that fails writes (ENOSPC) and comes back,
 * an index whose commits fail (as with SQLITE_FULL) and catches up, and a
 * segment deleted under the writer. Faults are injected through the
 * recorder's fault hook; the session lives in a normal temp directory. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/store.h"

/* ---- fault hook and warning capture, shared with the recorder's threads ---- */

typedef struct {
    int write, sync, probe, commit; /* errno to fail with, 0 = works */
    int hold, held;                 /* hold: frame writes wait; held: one is waiting */
    pthread_mutex_t mu;
    reel_buf_t warnings; /* one line per warning */
} env_t;

static void sleep_ms(int ms);

static int fault_cb(void *ctx, reel_recorder_fault_op op) {
    env_t *e = ctx;
    pthread_mutex_lock(&e->mu);
    while (op == REEL_FAULT_WRITE && e->hold) {
        e->held = 1;
        pthread_mutex_unlock(&e->mu);
        sleep_ms(2);
        pthread_mutex_lock(&e->mu);
    }
    e->held = 0;
    int v = op == REEL_FAULT_WRITE   ? e->write
            : op == REEL_FAULT_SYNC  ? e->sync
            : op == REEL_FAULT_PROBE ? e->probe
                                     : e->commit;
    pthread_mutex_unlock(&e->mu);
    return v;
}

static void set_fault(env_t *e, int *field, int v) {
    pthread_mutex_lock(&e->mu);
    *field = v;
    pthread_mutex_unlock(&e->mu);
}

static void warn_cb(void *ctx, const char *msg) {
    env_t *e = ctx;
    pthread_mutex_lock(&e->mu);
    reel_buf_printf(&e->warnings, "%s\n", msg);
    pthread_mutex_unlock(&e->mu);
}

/* Occurrences of needle in the warnings so far. */
static int warned(env_t *e, const char *needle) {
    pthread_mutex_lock(&e->mu);
    int n = 0;
    const char *p = e->warnings.len ? (const char *)e->warnings.data : "";
    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void wait_warned(env_t *e, const char *needle) {
    for (int i = 0; i < 500 && !warned(e, needle); i++)
        sleep_ms(10);
    if (!warned(e, needle))
        fail_msg("no warning '%s'; got:\n%s", needle,
                 e->warnings.len ? (const char *)e->warnings.data : "");
}

static void env_init(env_t *e) {
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    reel_buf_init(&e->warnings, 0);
}

static void env_free(env_t *e) {
    reel_buf_free(&e->warnings);
    pthread_mutex_destroy(&e->mu);
}

/* ---- sessions and flows ---- */

static reel_session_t *open_session(const char *home, const char *name, int flags) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, name, flags, &s, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    return s;
}

static reel_recorder_t *start_q(reel_session_t *s, env_t *e, size_t queue_bytes) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    if (queue_bytes)
        o.queue_bytes = queue_bytes;
    o.retry_ms = 20;
    o.fault = fault_cb;
    o.fault_ctx = e;
    o.warn = warn_cb;
    o.warn_ctx = e;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

static reel_recorder_t *start(reel_session_t *s, env_t *e) {
    return start_q(s, e, 0);
}

static uint8_t body_byte(uint64_t f, uint64_t i) {
    return (uint8_t)(f * 131 + i * 7 + (i >> 9));
}

static reel_rflow_t *begin(reel_recorder_t *r, const char *target) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    reel_request_head_t rq = {
        .method = "GET", .scheme = "http", .host = "example.com", .port = 80, .target = target};
    reel_recorder_request_head(f, &rq);
    return f;
}

static void respond(reel_rflow_t *f, uint64_t from, uint64_t to, int head) {
    if (head) {
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f, &rs);
    }
    uint8_t buf[4096];
    for (uint64_t off = from; off < to;) {
        size_t n = to - off < sizeof buf ? (size_t)(to - off) : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(reel_rflow_id(f), off + i);
        reel_recorder_response_body(f, buf, n);
        off += n;
    }
}

static uint64_t whole_flow(reel_recorder_t *r, const char *target, uint64_t size) {
    reel_rflow_t *f = begin(r, target);
    uint64_t id = reel_rflow_id(f);
    respond(f, 0, size, 1);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return id;
}

typedef struct {
    uint64_t id, resp;
    int start, rq_head, rs_head, end, error, bad;
    char message[1024];
} seen_t;

static int seen_cb(void *ctx, const Reel__Record *rec) {
    seen_t *c = ctx;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        c->start++;
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD:
        c->rq_head++;
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD:
        c->rs_head++;
        break;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        for (size_t i = 0; i < rec->response_body->data.len; i++)
            c->bad |= rec->response_body->data.data[i] != body_byte(c->id, c->resp + i);
        c->resp += rec->response_body->data.len;
        break;
    case REEL__RECORD__EVENT_END:
        c->end++;
        break;
    case REEL__RECORD__EVENT_ERROR:
        c->error++;
        snprintf(c->message, sizeof c->message, "%s", rec->error->message);
        break;
    default:
        break;
    }
    return 0;
}

static seen_t read_flow(reel_session_t *s, uint64_t id) {
    seen_t c = {.id = id};
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_store_read_flow(s, id, seen_cb, &c, &err) != REEL_OK)
        fail_msg("flow %llu: %s", (unsigned long long)id, reel_err_str(&err));
    assert_int_equal(c.bad, 0);
    return c;
}

static void assert_complete(reel_session_t *s, uint64_t id, uint64_t size) {
    seen_t c = read_flow(s, id);
    assert_int_equal(c.start, 1);
    assert_int_equal(c.rq_head, 1);
    assert_int_equal(c.rs_head, 1);
    assert_int_equal(c.end, 1);
    assert_int_equal(c.error, 0);
    assert_int_equal(c.resp, size);
}

static int flow_in_index(reel_session_t *s, uint64_t id, char *state, size_t n) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s), "SELECT state FROM flows WHERE id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found && state)
        snprintf(state, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return found;
}

static void assert_verify(reel_session_t *s) {
    reel_err_t err;
    reel_err_clear(&err);
    char *rep = NULL;
    if (reel_session_verify(s, &rep, &err) != REEL_OK)
        fail_msg("verify failed:\n%s", rep ? rep : reel_err_str(&err));
    free(rep);
}

/* ---- tests ---- */

/* The disk fails, then works again. Flows before and after are whole;
 * flows that started during the outage are left out entirely; flows that
 * ran across it end with an error naming the outage, and hold no hole. */
static void test_disk_outage_and_resume(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "out", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    reel_err_t err;
    reel_err_clear(&err);

    uint64_t a = whole_flow(r, "/a", 50000);
    reel_rflow_t *b = begin(r, "/b"); /* across the outage */
    reel_rflow_t *c = begin(r, "/c"); /* ends during the outage */
    uint64_t bid = reel_rflow_id(b), cid = reel_rflow_id(c);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);

    set_fault(&e, &e.write, ENOSPC);
    set_fault(&e, &e.probe, ENOSPC);
    respond(b, 0, 40000, 1);
    respond(c, 0, 1000, 1);
    reel_recorder_flow_end(c, NULL, 0, 0, 0);
    uint64_t d = whole_flow(r, "/d", 30000); /* all within the outage */
    reel_rflow_t *f = begin(r, "/f");        /* starts in it, ends after */
    uint64_t fid = reel_rflow_id(f);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_IO);
    assert_non_null(strstr(reel_err_str(&err), "No space left on device"));
    assert_int_equal(warned(&e, "capture stopped"), 1);
    assert_int_equal(warned(&e, "No space left on device"), 1);

    /* Writes work, but the check before resuming does not yet pass. */
    set_fault(&e, &e.write, 0);
    sleep_ms(150);
    assert_int_equal(warned(&e, "capture resumed"), 0);
    set_fault(&e, &e.probe, 0);
    wait_warned(&e, "capture resumed");
    assert_int_equal(warned(&e, "2 flows that started meanwhile are not in the session, 2 flows "
                                "in progress are marked with an error"),
                     1);

    respond(b, 40000, 60000, 0);
    reel_recorder_flow_end(b, NULL, 0, 0, 0);
    respond(f, 0, 5000, 1);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    uint64_t g = whole_flow(r, "/g", 70000);
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_IO); /* records were lost: sticky */
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_int_equal(st.flows, 6);
    assert_int_equal(st.lost_flows, 2);
    assert_true(st.dropped_records > 0);
    assert_int_equal(warned(&e, "capture stopped"), 1);
    assert_int_equal(warned(&e, "capture resumed"), 1);
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_IO);
    assert_non_null(strstr(reel_err_str(&err), "capture was stopped during this run"));
    reel_session_close(s);

    s = open_session(home, "out", 0);
    assert_string_equal(reel_session_recovery_note(s), "");
    assert_complete(s, a, 50000);
    assert_complete(s, g, 70000);
    char st_b[32] = "", st_c[32] = "";
    assert_true(flow_in_index(s, bid, st_b, sizeof st_b));
    assert_true(flow_in_index(s, cid, st_c, sizeof st_c));
    assert_string_equal(st_b, "error");
    assert_string_equal(st_c, "error");
    seen_t sb = read_flow(s, bid), sc = read_flow(s, cid);
    /* b: what was on disk before (start, request head), nothing of the
     * outage, nothing after it but the error record: no hole. */
    assert_int_equal(sb.start, 1);
    assert_int_equal(sb.rq_head, 1);
    assert_int_equal(sb.rs_head, 0);
    assert_int_equal(sb.resp, 0);
    assert_int_equal(sb.end, 0);
    assert_int_equal(sb.error, 1);
    assert_non_null(strstr(sb.message, "capture was stopped while this flow was running"));
    assert_non_null(strstr(sb.message, "No space left on device"));
    assert_int_equal(sc.start, 1);
    assert_int_equal(sc.end, 0);
    assert_int_equal(sc.error, 1);
    assert_non_null(strstr(sc.message, "capture was stopped while this flow was running"));
    /* d and f started during the outage: not in the session at all. */
    assert_false(flow_in_index(s, d, NULL, 0));
    assert_false(flow_in_index(s, fid, NULL, 0));
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* fdatasync failing is a disk error too; capture resumes the same way. */
static void test_sync_failure_and_resume(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "sync", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t a = whole_flow(r, "/a", 1000);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    set_fault(&e, &e.sync, EIO);
    whole_flow(r, "/b", 1000);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_IO);
    wait_warned(&e, "capture stopped");
    assert_int_equal(warned(&e, "Input/output error"), 1);
    set_fault(&e, &e.sync, 0);
    wait_warned(&e, "capture resumed");
    uint64_t c = whole_flow(r, "/c", 2000);
    reel_recorder_close(r, NULL);
    reel_session_close(s);
    s = open_session(home, "sync", 0);
    assert_complete(s, a, 1000);
    assert_complete(s, c, 2000);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* Index commits fail (as with SQLITE_FULL): the spool goes on, flush says
 * the index is behind, and once commits work the index catches up from
 * the spool, with nothing lost. */
static void test_index_commit_fails_then_catches_up(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "ix", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t ids[8];
    ids[0] = whole_flow(r, "/0", 10000);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    set_fault(&e, &e.commit, ENOSPC);
    for (int i = 1; i < 6; i++)
        ids[i] = whole_flow(r, "/x", 300000); /* more than one block each */
    assert_int_equal(reel_recorder_flush(r, &err), REEL_DB);
    assert_non_null(strstr(reel_err_str(&err), "the index is behind the spool"));
    sleep_ms(100); /* retries meanwhile must not repeat the warning */
    assert_int_equal(warned(&e, "indexing paused"), 1);
    assert_int_equal(warned(&e, "capture stopped"), 0);
    set_fault(&e, &e.commit, 0);
    wait_warned(&e, "indexing resumed");
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    ids[6] = whole_flow(r, "/6", 20000);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    s = open_session(home, "ix", 0);
    assert_string_equal(reel_session_recovery_note(s), ""); /* nothing left for recovery */
    assert_complete(s, ids[0], 10000);
    for (int i = 1; i < 6; i++)
        assert_complete(s, ids[i], 300000);
    assert_complete(s, ids[6], 20000);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The index still cannot be written when the recorder closes: close says
 * so, and the next open indexes the spool. */
static void test_index_behind_at_close(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "ixc", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    reel_err_t err;
    reel_err_clear(&err);
    set_fault(&e, &e.commit, ENOSPC);
    uint64_t a = whole_flow(r, "/a", 40000);
    assert_int_equal(reel_recorder_close(r, &err), REEL_DB);
    assert_non_null(strstr(reel_err_str(&err), "the next open of the session indexes the rest"));
    reel_session_close(s);
    s = open_session(home, "ixc", 0);
    assert_non_null(strstr(reel_session_recovery_note(s), "that the index had not seen"));
    assert_complete(s, a, 40000);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The segment is deleted under the writer (the session directory was
 * removed): capture stops for good, even though writing "works". */
/* Capture on, the disk falling behind (the writer is held in a frame
 * write): a flow whose bodies begin while the queue is more than half full
 * keeps its heads and its outcome, not its bodies, and says so; flows that
 * got in are recorded whole. */
static void test_behind_flows_lose_bodies_not_parts(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-behind");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "behind", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start_q(s, &e, 512 << 10);
    set_fault(&e, &e.hold, 1);
    uint64_t w = whole_flow(r, "/w", 300 << 10); /* fills a block: the writer is held */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&e.mu);
        int held = e.held;
        pthread_mutex_unlock(&e.mu);
        if (held)
            break;
        sleep_ms(2);
    }
    uint64_t a = whole_flow(r, "/a", 300 << 10); /* queue was below half: recorded */
    reel_rflow_t *b = begin(r, "/b");            /* now above half: no bodies */
    uint64_t bid = reel_rflow_id(b);
    respond(b, 0, 100 << 10, 1);
    reel_recorder_flow_end(b, NULL, 0, 0, 0);
    set_fault(&e, &e.hold, 0);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_int_equal(st.unrecorded_bodies, 1);
    assert_int_equal(warned(&e, "recorded without their bodies"), 1);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_complete(s, w, 300 << 10);
    assert_complete(s, a, 300 << 10);
    seen_t c = read_flow(s, bid);
    assert_int_equal(c.start, 1);
    assert_int_equal(c.rs_head, 1);
    assert_int_equal(c.resp, 0);
    assert_int_equal(c.error, 1);
    assert_non_null(strstr(c.message, "the bodies of this flow were not recorded"));
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

static void test_segment_deleted(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "del", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    reel_err_t err;
    reel_err_clear(&err);
    whole_flow(r, "/a", 1000);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    char *seg = reel_asprintf("%s/spool/00000001.zst", reel_session_path(s));
    assert_int_equal(unlink(seg), 0);
    free(seg);
    whole_flow(r, "/b", 1000);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_IO);
    assert_int_equal(warned(&e, "was deleted"), 1);
    sleep_ms(150);
    whole_flow(r, "/c", 1000);
    reel_recorder_flush(r, NULL);
    assert_int_equal(warned(&e, "capture resumed"), 0);
    assert_int_equal(warned(&e, "capture stopped"), 1);
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_int_equal(st.lost_flows, 2); /* b and c: nothing went into the deleted file */
    assert_int_equal(reel_recorder_close(r, NULL), REEL_IO);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_outage_and_resume),
        cmocka_unit_test(test_sync_failure_and_resume),
        cmocka_unit_test(test_index_commit_fails_then_catches_up),
        cmocka_unit_test(test_index_behind_at_close),
        cmocka_unit_test(test_segment_deleted),
        cmocka_unit_test(test_behind_flows_lose_bodies_not_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
