/* Recorder fault tests: a disk that fails writes (ENOSPC) and comes back,
 * an index whose commits fail (as with SQLITE_FULL) and catches up, a
 * segment deleted under the writer, a disk that falls behind (bodies shed,
 * heads and ends kept, bursts within the budget kept whole), a slow
 * fdatasync (group commit) and producers on several threads. Faults are injected through the
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/spool.h"
#include "session/store.h"

/* ---- fault hook and warning capture, shared with the recorder's threads ---- */

typedef struct {
    int write, sync, probe, commit; /* errno to fail with, 0 = works */
    int write_ok;                   /* frame writes that work before `write` applies */
    int hold, held;                 /* hold: frame writes wait; held: one is waiting */
    int hold_sync, held_sync;       /* the same for fdatasync */
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
    while (op == REEL_FAULT_SYNC && e->hold_sync) {
        e->held_sync = 1;
        pthread_mutex_unlock(&e->mu);
        sleep_ms(2);
        pthread_mutex_lock(&e->mu);
    }
    e->held_sync = 0;
    if (op == REEL_FAULT_WRITE && e->write_ok > 0) {
        e->write_ok--;
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
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
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
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
    uint64_t resp_size, resp_dropped; /* from the end or error record */
    uint64_t records_lost, resp_lost; /* from the error record */
    int resp_truncated;
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
        c->resp_size = rec->end->response_body_size;
        c->resp_dropped = rec->end->response_body_dropped;
        c->resp_truncated = rec->end->response_truncated;
        break;
    case REEL__RECORD__EVENT_ERROR:
        c->error++;
        c->resp_size = rec->error->response_body_size;
        c->resp_dropped = rec->error->response_body_dropped;
        c->records_lost = rec->error->records_lost;
        c->resp_lost = rec->error->response_body_lost;
        c->resp_truncated = rec->error->response_truncated;
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

/* The flow's damaged flag and its flow_damage rows, one line each:
 * "DIRECTION OFFSET LENGTH". */
static int flow_damage(reel_session_t *s, uint64_t id, char *rows, size_t n) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT direction, offset, length FROM flow_damage WHERE "
                                        "flow_id = ?1 ORDER BY rowid",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    size_t used = 0;
    rows[0] = 0;
    while (sqlite3_step(st) == SQLITE_ROW && used < n)
        used += (size_t)snprintf(
            rows + used, n - used, "%s %lld %lld\n", (const char *)sqlite3_column_text(st, 0),
            (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT damaged FROM flows WHERE id = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int damaged = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return damaged;
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
    /* Their error records say what was lost, so the index marks them
     * damaged with the body holes: the wire had the bytes (the sizes say
     * so), the spool does not. */
    assert_int_equal(sb.resp_size, 60000);
    assert_int_equal(sb.resp_lost, 60000);
    assert_true(sb.records_lost > 0);
    assert_int_equal(sc.resp_size, 1000);
    assert_int_equal(sc.resp_lost, 1000);
    assert_true(sc.records_lost > 0);
    char rows[256];
    assert_int_equal(flow_damage(s, bid, rows, sizeof rows), 1);
    assert_string_equal(rows, "response 0 60000\nflow 0 -1\n");
    assert_int_equal(flow_damage(s, cid, rows, sizeof rows), 1);
    assert_string_equal(rows, "response 0 1000\nflow 0 -1\n");
    assert_int_equal(flow_damage(s, a, rows, sizeof rows), 0);
    assert_string_equal(rows, "");
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

/* Holds frame writes (a disk that has fallen behind) until the writer is
 * stuck in one: the queue then only grows. Returns the id of the flow
 * whose block the writer holds. */
static uint64_t stall_writer(reel_recorder_t *r, env_t *e) {
    set_fault(e, &e->hold, 1);
    uint64_t w = whole_flow(r, "/w", 300 << 10); /* fills a block */
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&e->mu);
        int held = e->held;
        pthread_mutex_unlock(&e->mu);
        if (held)
            return w;
        sleep_ms(2);
    }
    fail_msg("the writer did not reach a frame write");
    return 0;
}

/* A flows row's integer column. */
static int64_t flow_col(reel_session_t *s, uint64_t id, const char *col) {
    char *sql = reel_asprintf("SELECT %s FROM flows WHERE id = ?", col);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s), sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    free(sql);
    return v;
}

/* Capture on, the disk falling behind (the writer is held in a frame
 * write, with at most 300 KiB of records behind it; queue of 1 MiB:
 * 896 KiB for bodies, bodies that begin past 672 KiB are shed from the
 * start). Bodies are shed, never heads or ends:
 * a flow whose body began in time is stored whole, one whose body filled
 * the body share keeps a prefix, one that began too late keeps no body;
 * all of them end normally, saying how many bytes were left out, and the
 * heads of flows that came after are all there. */
static void test_behind_sheds_bodies_keeps_heads_and_ends(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-behind");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "behind", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start_q(s, &e, 1 << 20);
    uint64_t w = stall_writer(r, &e);
    uint64_t a = whole_flow(r, "/a", 300 << 10); /* fits: whole */
    reel_rflow_t *b = begin(r, "/b");            /* begins below 672 KiB, fills the share */
    uint64_t bid = reel_rflow_id(b);
    respond(b, 0, 600 << 10, 1);
    reel_recorder_flow_end(b, NULL, 0, 0, 0);
    reel_rflow_t *c = begin(r, "/c"); /* begins past it: no body */
    uint64_t cid = reel_rflow_id(c);
    respond(c, 0, 100 << 10, 1);
    reel_recorder_flow_end(c, NULL, 0, 0, 0);
    reel_rflow_t *d = begin(r, "/d"); /* no body either, and the exchange failed */
    uint64_t did = reel_rflow_id(d);
    respond(d, 0, 50 << 10, 1);
    reel_recorder_flow_error(d, "upstream closed the connection", 0);
    uint64_t h[40]; /* heads and ends of flows without bodies still fit */
    for (int i = 0; i < 40; i++) {
        reel_rflow_t *f = begin(r, "/h");
        h[i] = reel_rflow_id(f);
        respond(f, 0, 0, 1);
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_true(st.queue_peak <= 1 << 20);
    assert_int_equal(st.dropped_records, 0);
    set_fault(&e, &e.hold, 0);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    reel_recorder_stats(r, &st);
    assert_int_equal(st.unrecorded_bodies, 3);
    assert_int_equal(st.dropped_records, 0);
    assert_int_equal(warned(&e, "some bodies are not stored in full"), 1);
    assert_int_equal(warned(&e, "records are being dropped"), 0);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);

    assert_complete(s, w, 300 << 10);
    assert_complete(s, a, 300 << 10);
    seen_t sb = read_flow(s, bid);
    assert_int_equal(sb.rs_head, 1);
    assert_int_equal(sb.end, 1);
    assert_int_equal(sb.error, 0);
    assert_true(sb.resp > 0 && sb.resp < 600 << 10); /* a prefix, checked byte by byte */
    assert_int_equal(sb.resp_size, 600 << 10);
    assert_int_equal(sb.resp_dropped, (600 << 10) - sb.resp);
    assert_true(sb.resp_truncated);
    seen_t sc = read_flow(s, cid);
    assert_int_equal(sc.start, 1);
    assert_int_equal(sc.rq_head, 1);
    assert_int_equal(sc.rs_head, 1);
    assert_int_equal(sc.resp, 0);
    assert_int_equal(sc.end, 1);
    assert_int_equal(sc.error, 0);
    assert_int_equal(sc.resp_dropped, 100 << 10);
    seen_t sd = read_flow(s, did);
    assert_int_equal(sd.rs_head, 1);
    assert_int_equal(sd.error, 1);
    assert_string_equal(sd.message, "upstream closed the connection"); /* not about capture */
    assert_int_equal(sd.resp_dropped, 50 << 10);
    assert_true(sd.resp_truncated); /* as an end would say: the error record says so too */
    for (int i = 0; i < 40; i++) {
        seen_t sh = read_flow(s, h[i]);
        assert_int_equal(sh.rq_head + sh.rs_head + sh.end, 3);
    }
    char state_b[32] = "", state_c[32] = "";
    assert_true(flow_in_index(s, bid, state_b, sizeof state_b));
    assert_true(flow_in_index(s, cid, state_c, sizeof state_c));
    assert_string_equal(state_b, "complete");
    assert_string_equal(state_c, "complete");
    assert_int_equal(flow_col(s, bid, "response_body_dropped"), (600 << 10) - sb.resp);
    assert_int_equal(flow_col(s, cid, "response_body_dropped"), 100 << 10);
    assert_int_equal(flow_col(s, cid, "response_truncated"), 1);
    assert_int_equal(flow_col(s, did, "response_truncated"), 1);
    assert_int_equal(flow_col(s, a, "response_body_dropped"), 0);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* A flow that capture, falling behind, had already shed body bytes of,
 * then runs into a disk outage: the error record that replaces its end
 * keeps the shed count its dropped end gave, so stored + lost + dropped is
 * the body's size on the wire (the shed bytes were in neither before). */
static void test_outage_after_shedding_keeps_the_dropped_count(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-shed-out");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "shedout", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start_q(s, &e, 1 << 20);
    reel_err_t err;
    reel_err_clear(&err);
    reel_rflow_t *b = begin(r, "/b");
    uint64_t bid = reel_rflow_id(b);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK); /* its start is on disk */
    stall_writer(r, &e);
    const uint64_t size = 900 << 10;
    respond(b, 0, size, 1); /* the body share fills: the rest is shed */
    set_fault(&e, &e.write, ENOSPC);
    set_fault(&e, &e.probe, ENOSPC);
    set_fault(&e, &e.hold, 0); /* the held write fails: the queue is dropped */
    reel_recorder_flow_end(b, NULL, 0, 0, 0);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_IO);
    set_fault(&e, &e.write, 0);
    set_fault(&e, &e.probe, 0);
    wait_warned(&e, "capture resumed");
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_IO);
    reel_session_close(s);

    s = open_session(home, "shedout", 0);
    seen_t sb = read_flow(s, bid);
    assert_int_equal(sb.error, 1);
    assert_int_equal(sb.resp_size, size);
    assert_true(sb.resp_lost > 0);
    assert_true(sb.resp_dropped > 0);
    assert_int_equal(sb.resp + sb.resp_lost + sb.resp_dropped, size);
    assert_true(sb.resp_truncated); /* as the dropped end said */
    assert_int_equal(flow_col(s, bid, "response_truncated"), 1);
    assert_int_equal(flow_col(s, bid, "response_body_dropped"), sb.resp_dropped);
    char rows[256], want[256];
    assert_int_equal(flow_damage(s, bid, rows, sizeof rows), 1);
    snprintf(want, sizeof want, "response %llu %llu\nflow 0 -1\n", (unsigned long long)sb.resp,
             (unsigned long long)sb.resp_lost);
    assert_string_equal(rows, want);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* Memory stays bounded by the budget however long the disk stalls: 4 MiB
 * of bodies from 64 flows at once into a 256 KiB queue; the queue never
 * holds more than its budget, and every flow keeps its heads and its end. */
static void test_behind_memory_bounded(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-bound");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "bound", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start_q(s, &e, 256 << 10);
    stall_writer(r, &e);
    enum { N = 64, SIZE = 64 << 10 };
    reel_rflow_t *f[N];
    uint64_t id[N];
    for (int i = 0; i < N; i++) {
        f[i] = begin(r, "/m");
        id[i] = reel_rflow_id(f[i]);
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f[i], &rs);
    }
    for (uint64_t off = 0; off < SIZE; off += 4096)
        for (int i = 0; i < N; i++)
            respond(f[i], off, off + 4096, 0);
    for (int i = 0; i < N; i++)
        reel_recorder_flow_end(f[i], NULL, 0, 0, 0);
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_true(st.queue_peak <= 256 << 10);
    assert_true(st.queue_peak > 128 << 10);
    set_fault(&e, &e.hold, 0);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    uint64_t stored = 0;
    for (int i = 0; i < N; i++) {
        seen_t c = read_flow(s, id[i]);
        assert_int_equal(c.rq_head + c.rs_head + c.end, 3);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.resp + c.resp_dropped, SIZE);
        stored += c.resp;
    }
    assert_true(stored <= 256 << 10);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The queue's memory follows the record bytes it counts against its
 * budget: flows shaped like browser traffic (start and heads, then a body
 * of 10 KiB in records of 4 KiB) wait in a stalled queue. When each body
 * record joined the queue as a chunk of its own, the next flow's small
 * records each started a chunk of 64 KiB, and the chunks took five times
 * the bytes counted. */
static void test_queue_memory_follows_its_bytes(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-qmem");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "qmem", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start_q(s, &e, 2 << 20);
    stall_writer(r, &e);
    enum { N = 100, SIZE = 10 << 10 };
    uint64_t id[N];
    for (int i = 0; i < N; i++)
        id[i] = whole_flow(r, "/10k", SIZE);
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_true(st.queue_peak >= (uint64_t)N * SIZE); /* all of it waited */
    assert_true(st.queue_mem_peak >= st.queue_peak);
    assert_true(st.queue_mem_peak <= st.queue_peak + st.queue_peak / 4 + (64 << 10));
    set_fault(&e, &e.hold, 0);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    for (int i = 0; i < N; i++)
        assert_complete(s, id[i], SIZE);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The process's resident set in KiB (0 if unknown). */
static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

/* After a burst the memory it took goes back to the system once the queue
 * is quiet again: 32 downloads of 1 MiB wait in a stalled queue, then the
 * disk catches up; a second after the queue fell under 1 MiB the recorder
 * trims, once, though light traffic goes on, and the resident set is back
 * near where it was (checked without the
 * sanitizers or valgrind, whose allocators keep freed memory on purpose;
 * it fails when the trim is left out). A trim that
 * never came would leave trims at 0. */
static void test_memory_handed_back_after_a_burst(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-trim");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "trim", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    long before = vm_rss_kib();
    stall_writer(r, &e);
    enum { N = 32, SIZE = 1 << 20, STEP = 64 << 10 };
    reel_rflow_t *f[N];
    uint64_t id[N];
    for (int i = 0; i < N; i++) {
        f[i] = begin(r, "/1m");
        id[i] = reel_rflow_id(f[i]);
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f[i], &rs);
    }
    /* Small allocations that outlive the burst, as a proxy's are made
     * between its records: they pin the heap, so the allocator cannot give
     * the burst's memory back by itself. */
    enum { NPIN = N * (SIZE / STEP) };
    char **pin = reel_calloc(NPIN, sizeof *pin);
    int npin = 0;
    for (uint64_t off = 0; off < SIZE; off += STEP)
        for (int i = 0; i < N; i++) {
            respond(f[i], off, off + STEP, 0);
            pin[npin] = reel_malloc(64);
            memset(pin[npin++], 1, 64);
        }
    for (int i = 0; i < N; i++)
        reel_recorder_flow_end(f[i], NULL, 0, 0, 0);
    long peak = vm_rss_kib();
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_true(st.queue_mem_peak >= (uint64_t)N * SIZE);
    assert_int_equal(st.trims, 0); /* not while records come */
    set_fault(&e, &e.hold, 0);
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    /* Light traffic goes on meanwhile (a small flow every 50 ms): it must
     * not put the trim off for good. */
    for (int i = 0; i < 500 && st.trims == 0; i++) {
        sleep_ms(10);
        if (i % 5 == 0)
            whole_flow(r, "/light", 100);
        reel_recorder_stats(r, &st);
    }
    assert_int_equal(st.trims, 1);
    long after = vm_rss_kib();
    fprintf(stderr,
            "resident: %ld KiB before, %ld KiB with the burst queued, %ld KiB after the trim\n",
            before, peak, after);
    const char *pre = getenv("LD_PRELOAD"); /* valgrind's malloc is not glibc's */
    if (getenv("REEL_SANITIZED") == NULL && !(pre && strstr(pre, "vgpreload")) && before > 0) {
        assert_true(peak - before >= 24 << 10);
        assert_true(after - before < 16 << 10);
    }
    for (int k = 0; k < npin; k++)
        free(pin[k]);
    free(pin);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    for (int i = 0; i < N; i++)
        assert_complete(s, id[i], SIZE);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* A burst within the budget is recorded whole, however slow the disk is
 * meanwhile: 50 downloads of 2 MiB at once (100 MiB, as in issue 9) while
 * the writer is stalled, with the default budget. */
static void test_burst_within_budget_recorded_whole(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-burst");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "burst", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    stall_writer(r, &e);
    enum { N = 50, SIZE = 2 << 20, STEP = 64 << 10 };
    reel_rflow_t *f[N];
    uint64_t id[N];
    for (int i = 0; i < N; i++) {
        f[i] = begin(r, "/2m");
        id[i] = reel_rflow_id(f[i]);
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f[i], &rs);
    }
    for (uint64_t off = 0; off < SIZE; off += STEP)
        for (int i = 0; i < N; i++)
            respond(f[i], off, off + STEP, 0);
    for (int i = 0; i < N; i++)
        reel_recorder_flow_end(f[i], NULL, 0, 0, 0);
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    assert_true(st.queue_peak >= (uint64_t)N * SIZE); /* all of it waited in memory */
    set_fault(&e, &e.hold, 0);
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    reel_recorder_stats(r, &st);
    /* The writer was behind: on more than one core, the second compressor
     * took some of the frames, and they went out in order (every body's
     * bytes are checked below, and they span many frames). */
    if (sysconf(_SC_NPROCESSORS_ONLN) > 1)
        assert_true(st.helped_frames > 0);
    assert_true(st.helped_frames < st.frames);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    assert_int_equal(warned(&e, "falling behind"), 0);
    for (int i = 0; i < N; i++)
        assert_complete(s, id[i], SIZE);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The disk fails while the second compressor holds a block: that block
 * and every later one are dropped in order, and after the outage each flow
 * is either whole or ends with an error, its body without a hole. */
static void test_outage_while_a_block_is_held(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-held");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "held", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start_q(s, &e, 32 << 20); /* behind past 2 MiB queued */
    uint64_t w = stall_writer(r, &e);
    enum { N = 20, SIZE = 1 << 20, STEP = 32 << 10 };
    reel_rflow_t *f[N];
    uint64_t id[N];
    for (int i = 0; i < N; i++) {
        f[i] = begin(r, "/1m");
        id[i] = reel_rflow_id(f[i]);
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f[i], &rs);
    }
    for (uint64_t off = 0; off < SIZE / 2; off += STEP)
        for (int i = 0; i < N; i++)
            respond(f[i], off, off + STEP, 0);
    /* 10 MiB queued: the held write and 16 more go out, then the disk is
     * full (the writer is behind all along, so blocks alternate between
     * the two compressors) */
    pthread_mutex_lock(&e.mu);
    e.write_ok = 17;
    e.write = ENOSPC;
    e.probe = ENOSPC;
    e.hold = 0;
    pthread_mutex_unlock(&e.mu);
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_IO);
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    if (sysconf(_SC_NPROCESSORS_ONLN) > 1)
        assert_true(st.helped_frames > 0);
    set_fault(&e, &e.write, 0);
    set_fault(&e, &e.probe, 0);
    wait_warned(&e, "capture resumed");
    for (uint64_t off = SIZE / 2; off < SIZE; off += STEP)
        for (int i = 0; i < N; i++)
            respond(f[i], off, off + STEP, 0);
    for (int i = 0; i < N; i++)
        reel_recorder_flow_end(f[i], NULL, 0, 0, 0);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_IO);
    reel_session_close(s);

    s = open_session(home, "held", 0);
    assert_complete(s, w, 300 << 10);
    int errors = 0;
    for (int i = 0; i < N; i++) {
        seen_t c = read_flow(s, id[i]); /* fails on a byte out of place */
        assert_int_equal(c.start, 1);
        assert_int_equal(c.end + c.error, 1);
        assert_true(c.resp < SIZE / 2); /* cut at the outage, not later */
        errors += c.error;
    }
    assert_int_equal(errors, N);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The queue holds records in chunks of 64 KiB: records that straddle a
 * chunk's end, and heads bigger than a chunk (a chunk of their own), all
 * reach the spool whole and in order, queued while the writer waits. */
typedef struct {
    uint64_t id;
    size_t value_len;
    int heads, ok;
} bighead_t;

static int bighead_cb(void *ctx, const Reel__Record *rec) {
    bighead_t *c = ctx;
    if (rec->event_case != REEL__RECORD__EVENT_REQUEST_HEAD)
        return 0;
    c->heads++;
    const Reel__RequestHead *h = rec->request_head;
    c->ok = h->n_headers == 1 && h->headers[0]->value.len == c->value_len;
    for (size_t i = 0; c->ok && i < c->value_len; i++)
        c->ok = h->headers[0]->value.data[i] == (uint8_t)('a' + (c->id + i) % 26);
    return 0;
}

static void test_records_across_queue_chunks(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-chunks");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "chunks", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    stall_writer(r, &e);
    /* then heads whose records sweep the sizes that just fill a chunk */
    enum { N = 40 + 200 };
    static const size_t sizes[] = {10, 30000, 65400, 70000, 300000, 1};
    uint64_t id[N];
    size_t len[N];
    char *value = malloc(300000);
    for (int i = 0; i < N; i++) {
        reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
        id[i] = reel_rflow_id(f);
        len[i] = i < 40 ? sizes[i % 6] : (size_t)(65350 + i - 40);
        for (size_t k = 0; k < len[i]; k++)
            value[k] = (char)('a' + (id[i] + k) % 26);
        reel_header_t hd = {.name = "x-big", .name_len = 5, .value = value, .value_len = len[i]};
        reel_request_head_t rq = {.method = "GET",
                                  .scheme = "http",
                                  .host = "example.com",
                                  .port = 80,
                                  .target = "/",
                                  .headers = &hd,
                                  .n_headers = 1};
        reel_recorder_request_head(f, &rq);
        respond(f, 0, 100, 1);
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    free(value);
    set_fault(&e, &e.hold, 0);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    for (int i = 0; i < N; i++) {
        assert_complete(s, id[i], 100);
        bighead_t c = {.id = id[i], .value_len = len[i]};
        reel_err_t err;
        reel_err_clear(&err);
        assert_int_equal(reel_store_read_flow(s, id[i], bighead_cb, &c, &err), REEL_OK);
        assert_int_equal(c.heads, 1);
        assert_true(c.ok);
    }
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

typedef struct {
    reel_recorder_t *r;
    reel_rc rc;
    int done;
    pthread_mutex_t mu;
} flusher_t;

static void *flusher_main(void *arg) {
    flusher_t *fl = arg;
    reel_rc rc = reel_recorder_flush(fl->r, NULL);
    pthread_mutex_lock(&fl->mu);
    fl->rc = rc;
    fl->done = 1;
    pthread_mutex_unlock(&fl->mu);
    return NULL;
}

static int flusher_done(flusher_t *fl) {
    pthread_mutex_lock(&fl->mu);
    int d = fl->done;
    pthread_mutex_unlock(&fl->mu);
    return d;
}

/* fsync block is a group commit: while one fdatasync is slow (held), the
 * writer goes on writing frames, nothing counts as done (flush waits, the
 * index does not show the flow), and once it returns one more fdatasync
 * covers every frame written meanwhile. */
static void test_slow_sync_does_not_stall_writer(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-sync");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "gsync", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    set_fault(&e, &e.hold_sync, 1);
    uint64_t a = whole_flow(r, "/a", 10000);
    flusher_t fl = {.r = r};
    pthread_mutex_init(&fl.mu, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flusher_main, &fl), 0);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&e.mu);
        int held = e.held_sync;
        pthread_mutex_unlock(&e.mu);
        if (held)
            break;
        sleep_ms(2);
    }
    reel_recorder_stats_t st;
    reel_recorder_stats(r, &st);
    uint64_t frames0 = st.frames;
    uint64_t ids[8];
    for (int i = 0; i < 8; i++)
        ids[i] = whole_flow(r, "/b", 1 << 20); /* 32 frames or more */
    for (int i = 0; i < 1000; i++) {
        reel_recorder_stats(r, &st);
        if (st.frames >= frames0 + 32)
            break;
        sleep_ms(5);
    }
    if (st.frames < frames0 + 32)
        fail_msg("frames %llu -> %llu", (unsigned long long)frames0, (unsigned long long)st.frames);
    assert_false(flusher_done(&fl));
    assert_false(flow_in_index(s, a, NULL, 0)); /* not committed before it is synced */
    uint64_t syncs0 = st.syncs;
    set_fault(&e, &e.hold_sync, 0);
    pthread_join(t, NULL);
    assert_int_equal(fl.rc, REEL_OK);
    assert_true(flow_in_index(s, a, NULL, 0));
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    reel_recorder_stats(r, &st);
    /* the held sync, then one (maybe two, if a frame came in as it began)
     * for the 32 frames or more written meanwhile */
    assert_true(st.syncs - syncs0 <= 3);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    assert_complete(s, a, 10000);
    for (int i = 0; i < 8; i++)
        assert_complete(s, ids[i], 1 << 20);
    pthread_mutex_destroy(&fl.mu);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The segment is deleted under the writer (the session directory was
 * removed): capture stops for good, even though writing "works". */
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

/* A record larger than the spool takes in one (a head of 600 KB: the
 * proxy's max_head_size keeps them out, an import may not) is not dropped
 * in silence: the recorder says so, the flow records nothing after it and
 * ends with an error that marks it damaged (verify passes, and ~damaged
 * finds it), reel_rflow_too_large tells an importer, and the flows around
 * it are whole. Before, block_add dropped the record with "internal
 * error" and the flow looked whole without its request. */
static void test_record_too_large_marks_the_flow(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "big", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    uint64_t before = whole_flow(r, "/before", 1000);

    size_t n = 600000;
    char *target = reel_malloc(n + 1);
    target[0] = '/';
    memset(target + 1, 'x', n - 1);
    target[n] = '\0';
    reel_rflow_t *f = begin(r, target);
    uint64_t big = reel_rflow_id(f);
    const char *what = NULL;
    assert_true(reel_rflow_too_large(f, &what) > n);
    assert_string_equal(what, "request head");
    respond(f, 0, 1000, 1); /* not recorded: nothing after the lost head */
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    free(target);

    /* one just under the limit is whole */
    target = reel_malloc(REEL_SPOOL_RECORD_MAX - 200);
    memset(target, 'y', REEL_SPOOL_RECORD_MAX - 201);
    target[0] = '/';
    target[REEL_SPOOL_RECORD_MAX - 201] = '\0';
    f = begin(r, target);
    uint64_t fits = reel_rflow_id(f);
    assert_int_equal(reel_rflow_too_large(f, NULL), 0);
    respond(f, 0, 1000, 1);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    free(target);
    uint64_t after = whole_flow(r, "/after", 1000);

    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_int_equal(warned(&e, "request head takes"), 1);
    assert_int_equal(warned(&e, "internal error"), 0);
    assert_complete(s, before, 1000);
    assert_complete(s, fits, 1000);
    assert_complete(s, after, 1000);
    seen_t c = read_flow(s, big);
    assert_int_equal(c.start, 1);
    assert_int_equal(c.rq_head, 0);
    assert_int_equal(c.rs_head, 0);
    assert_int_equal(c.resp, 0);
    assert_int_equal(c.end, 0);
    assert_int_equal(c.error, 1);
    assert_int_equal(c.records_lost, 1);
    assert_non_null(strstr(c.message, "its request head took"));
    assert_int_equal(c.resp_size, 1000); /* seen on the wire, as sizes are */
    char st[32], rows[256];
    assert_true(flow_in_index(s, big, st, sizeof st));
    assert_string_equal(st, "error");
    assert_int_equal(flow_damage(s, big, rows, sizeof rows), 1);
    assert_int_equal(flow_damage(s, fits, rows, sizeof rows), 0);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* A new row is marked when a mark for its id is already there (marks are
 * kept apart from flows, for rebuilds), whether or not the marks table was
 * empty when the recorder's transaction began (index.c looks marks up
 * only when it is not). */
static void test_marks_before_rows(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "marks", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    reel_err_t err;
    reel_err_clear(&err);
    uint64_t a = whole_flow(r, "/a", 10);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    assert_int_equal(flow_col(s, a, "marked"), 0);
    /* marks for the next two ids, before their flows exist */
    char *sql = reel_asprintf("INSERT INTO marks(flow_id, created_us) VALUES(%llu, 1), (%llu, 1)",
                              (unsigned long long)a + 1, (unsigned long long)a + 3);
    assert_int_equal(sqlite3_exec(reel_session_db(s), sql, NULL, NULL, NULL), SQLITE_OK);
    free(sql);
    uint64_t b = whole_flow(r, "/b", 10), c = whole_flow(r, "/c", 10), d = whole_flow(r, "/d", 10);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    assert_int_equal(flow_col(s, b, "marked"), 1);
    assert_int_equal(flow_col(s, c, "marked"), 0);
    assert_int_equal(flow_col(s, d, "marked"), 1);
    assert_int_equal(sqlite3_exec(reel_session_db(s), "DELETE FROM marks", NULL, NULL, NULL),
                     SQLITE_OK);
    uint64_t f = whole_flow(r, "/f", 10);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    assert_int_equal(flow_col(s, f, "marked"), 0);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

/* The zstd_level option reaches the writer: the same flows recorded at
 * level 1 and at level 19 make spools of different sizes, 19 the smaller
 * (zstd's output is a function of its input and level). */
static uint64_t spool_bytes_at_level(const char *home, const char *name, int level) {
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
    o.zstd_level = level;
    o.warn = warn_cb;
    o.warn_ctx = &e;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    /* text-like bodies: words of a small vocabulary in a pseudo-random
     * order, which the levels compress differently */
    static const char *words[] = {"static", "const",  "uint64_t", "return", "reel",
                                  "flow",   "record", "frame",    "index",  "(void)",
                                  "{",      "}",      ";\n",      "struct", "if",
                                  "else",   "for",    "while",    "size_t", "->"};
    uint32_t x = 12345;
    char buf[4096];
    for (int k = 0; k < 40; k++) {
        reel_rflow_t *f = begin(r, "/text");
        reel_response_head_t rs = {.status = 200, .reason = "OK"};
        reel_recorder_response_head(f, &rs);
        for (int c = 0; c < 4; c++) {
            size_t n = 0;
            while (n < sizeof buf - 16) {
                x = x * 1103515245u + 12345u;
                const char *w = words[(x >> 16) % (sizeof words / sizeof *words)];
                size_t wl = strlen(w);
                memcpy(buf + n, w, wl);
                n += wl;
                buf[n++] = ' ';
            }
            reel_recorder_response_body(f, buf, n);
        }
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    env_free(&e);
    char *seg = reel_asprintf("%s/%s/spool/00000001.zst", home, name);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    free(seg);
    return (uint64_t)st.st_size;
}

static void test_zstd_level_reaches_writer(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("recorder");
    uint64_t fast = spool_bytes_at_level(home, "level1", 1);
    uint64_t small = spool_bytes_at_level(home, "level19", 19);
    uint64_t dflt = spool_bytes_at_level(home, "level0", 0);
    assert_true(small < fast);
    assert_true(dflt > small && dflt < fast); /* 0: the default, level 2 */
    reel_test_rm_rf(home);
    free(home);
}

/* ---- producers on several threads ---- */

typedef struct {
    reel_recorder_t *r;
    uint64_t ids[300];
    int n;
} producer_t;

static void *producer_main(void *arg) {
    producer_t *p = arg;
    for (int i = 0; i < p->n; i++) {
        reel_rflow_t *f = begin(p->r, "/p");
        p->ids[i] = reel_rflow_id(f);
        respond(f, 0, (uint64_t)(i % 7) * 1000, 1);
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    return NULL;
}

typedef struct {
    uint64_t max_id, starts, records;
    int out_of_order;
} order_t;

/* Checks that each start record's id is above every id the spool held
 * before it. */
static int order_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    (void)off;
    (void)clen;
    order_t *o = ctx;
    size_t pos = 0;
    const uint8_t *rec;
    size_t len;
    while (reel_spool_block_next(raw, rlen, &pos, &rec, &len) == REEL_OK) {
        reel_spool_peek_t pk;
        assert_true(reel_spool_peek_record(rec, len, &pk));
        o->records++;
        if (pk.event == REEL__RECORD__EVENT_START) {
            o->starts++;
            o->out_of_order |= pk.flow_id <= o->max_id;
        }
        if (pk.flow_id > o->max_id)
            o->max_id = pk.flow_id;
    }
    return 0;
}

/* Several threads record flows at once (as the proxy's loop and the web
 * UI's replays do): every flow gets its own id, 1..N with none skipped,
 * every flow is whole, and the spool holds the starts in id order, none
 * after a record of a higher id. */
static void test_producers_on_threads(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("rec-threads");
    env_t e;
    env_init(&e);
    reel_session_t *s = open_session(home, "mt", REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = start(s, &e);
    enum { T = 4, N = 300 };
    producer_t p[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        p[t] = (producer_t){.r = r, .n = N};
        assert_int_equal(pthread_create(&th[t], NULL, producer_main, &p[t]), 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(reel_recorder_close(r, NULL), REEL_OK);
    uint8_t *seen = calloc(T * N + 1, 1);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            uint64_t id = p[t].ids[i];
            assert_true(id >= 1 && id <= T * N);
            assert_int_equal(seen[id], 0);
            seen[id] = 1;
            assert_complete(s, id, (uint64_t)(i % 7) * 1000);
        }
    free(seen);
    int fd = reel_session_open_segment(s, 1);
    assert_true(fd >= 0);
    order_t o = {0};
    reel_spool_scan_t sc;
    assert_int_equal(reel_spool_scan(fd, 0, order_cb, &o, &sc, NULL), REEL_OK);
    close(fd);
    assert_int_equal(o.starts, T * N);
    assert_int_equal(o.out_of_order, 0);
    assert_int_equal(o.max_id, T * N);
    assert_verify(s);
    reel_session_close(s);
    env_free(&e);
    reel_test_rm_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_outage_and_resume),
        cmocka_unit_test(test_outage_after_shedding_keeps_the_dropped_count),
        cmocka_unit_test(test_sync_failure_and_resume),
        cmocka_unit_test(test_index_commit_fails_then_catches_up),
        cmocka_unit_test(test_index_behind_at_close),
        cmocka_unit_test(test_segment_deleted),
        cmocka_unit_test(test_record_too_large_marks_the_flow),
        cmocka_unit_test(test_behind_sheds_bodies_keeps_heads_and_ends),
        cmocka_unit_test(test_behind_memory_bounded),
        cmocka_unit_test(test_burst_within_budget_recorded_whole),
        cmocka_unit_test(test_outage_while_a_block_is_held),
        cmocka_unit_test(test_records_across_queue_chunks),
        cmocka_unit_test(test_queue_memory_follows_its_bytes),
        cmocka_unit_test(test_memory_handed_back_after_a_burst),
        cmocka_unit_test(test_slow_sync_does_not_stall_writer),
        cmocka_unit_test(test_producers_on_threads),
        cmocka_unit_test(test_marks_before_rows),
        cmocka_unit_test(test_zstd_level_reaches_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
