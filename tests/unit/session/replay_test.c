/* Replay, the session side (session/replay.c): a recorded request read back
 * whole (head, headers, body), each kind of flow that cannot be sent again
 * and why, ids by number, range and filter, and the replay_of link written
 * by the recorder, kept by the index and rebuilt by repair. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "session/recorder.h"
#include "session/replay.h"
#include "session/session.h"

static reel_session_t *open_rec(const char *home, const char *name) {
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(home, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    return s;
}

static reel_recorder_t *start(reel_session_t *s, uint64_t body_limit) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.fsync = REEL_FSYNC_NEVER;
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.body_limit = body_limit;
    reel_recorder_t *r = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

#define H(n, v)                                                                                    \
    { n, sizeof n - 1, v, sizeof v - 1 }

/* A POST with headers and a body; ended unless `open` is given (then the
 * flow is left open there). */
static uint64_t post(reel_recorder_t *r, const char *body, reel_rflow_t **open,
                     const reel_flow_info_t *info) {
    reel_flow_info_t def = {.kind = REEL_FLOW_HTTP};
    reel_rflow_t *f = reel_recorder_flow_start(r, info ? info : &def);
    reel_header_t h[] = {H("Host", "api.test:8443"), H("Content-Type", "text/plain"),
                         H("Connection", "keep-alive"), H("X-A", "1"), H("X-A", "2")};
    reel_request_head_t rq = {.method = "POST",
                              .scheme = "https",
                              .host = "api.test",
                              .port = 8443,
                              .target = "/p?q=1",
                              .http_version = "HTTP/1.1",
                              .headers = h,
                              .n_headers = 5};
    reel_recorder_request_head(f, &rq);
    reel_recorder_request_body(f, body, strlen(body));
    uint64_t id = reel_rflow_id(f);
    if (open) {
        *open = f;
        return id;
    }
    reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/1.1"};
    reel_recorder_response_head(f, &rs);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return id;
}

static void flush(reel_recorder_t *r) {
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
}

static void test_load_and_links(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("replay");
    reel_session_t *s = open_rec(home, "r");
    reel_recorder_t *r = start(s, 1 << 20);
    uint64_t a = post(r, "hello body", NULL, NULL);
    /* a tunnel, a WebSocket flow, an open flow, a flow without a head */
    reel_flow_info_t ti = {.kind = REEL_FLOW_TUNNEL};
    reel_rflow_t *t = reel_recorder_flow_start(r, &ti);
    uint64_t tunnel = reel_rflow_id(t);
    reel_recorder_flow_end(t, NULL, 0, 0, 0);
    reel_rflow_t *w = reel_recorder_flow_start(r, &(reel_flow_info_t){.kind = REEL_FLOW_HTTP});
    reel_request_head_t wq = {.method = "GET",
                              .scheme = "http",
                              .host = "ws.test",
                              .port = 80,
                              .target = "/",
                              .http_version = "HTTP/1.1"};
    reel_recorder_request_head(w, &wq);
    reel_message_t m = {.from_client = 1, .opcode = 1, .data = "hi", .len = 2, .length = 2};
    reel_recorder_message(w, &m);
    uint64_t ws = reel_rflow_id(w);
    reel_recorder_flow_end(w, NULL, 0, 0, 0);
    reel_rflow_t *of_open = NULL;
    uint64_t open = post(r, "x", &of_open, NULL);
    reel_rflow_t *nh = reel_recorder_flow_start(r, &(reel_flow_info_t){.kind = REEL_FLOW_HTTP});
    uint64_t nohead = reel_rflow_id(nh);
    reel_recorder_flow_error(nh, "refused", 0);
    /* two replays of a: one into this session, one naming another */
    reel_flow_info_t ri = {
        .kind = REEL_FLOW_HTTP, .source = "replay", .replay_of = a, .replay_uuid = "u-1"};
    uint64_t rep = post(r, "hello body", NULL, &ri);
    ri.replay_session = "elsewhere";
    ri.replay_of = 7;
    uint64_t rep2 = post(r, "hello body", NULL, &ri);
    flush(r);

    reel_err_t err;
    reel_err_clear(&err);
    reel_replay_req_t q;
    assert_int_equal(reel_replay_load(s, a, &q, &err), REEL_OK);
    assert_null(q.why_not);
    assert_string_equal(q.method, "POST");
    assert_string_equal(q.scheme, "https");
    assert_string_equal(q.host, "api.test");
    assert_int_equal(reel_replay_port(&q), 8443);
    assert_string_equal(q.target, "/p?q=1");
    assert_int_equal(q.n_headers, 5);
    assert_string_equal(q.headers[4].value, "2");
    assert_int_equal(q.body.len, 10);
    assert_memory_equal(q.body.data, "hello body", 10);
    assert_int_not_equal(q.uuid[0], '\0');
    reel_replay_req_free(&q);

    struct {
        uint64_t id;
        const char *why;
    } cases[] = {{tunnel, "it is a TCP tunnel, not an HTTP exchange"},
                 {ws, "it is a WebSocket flow"},
                 {open, "it is still open (its request body may not be whole yet)"},
                 {nohead, "it has no request head"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(reel_replay_load(s, cases[i].id, &q, &err), REEL_OK);
        assert_non_null(q.why_not);
        assert_string_equal(q.why_not, cases[i].why);
        reel_replay_req_free(&q);
    }
    reel_recorder_flow_end(of_open, NULL, 0, 0, 0);
    assert_int_equal(reel_replay_load(s, 999, &q, &err), REEL_NOTFOUND);
    assert_string_equal(reel_err_str(&err), "no flow 999 in session 'r'");
    reel_replay_req_free(&q);

    /* ids: one, a range, a filter */
    uint64_t *ids = NULL;
    size_t n = 0;
    reel_err_clear(&err);
    assert_int_equal(reel_replay_select(s, "3", &ids, &n, &err), REEL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 3);
    free(ids);
    assert_int_equal(reel_replay_select(s, "2-4", &ids, &n, &err), REEL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 4);
    free(ids);
    assert_int_equal(reel_replay_select(s, "~m POST & ~d api", &ids, &n, &err), REEL_OK);
    assert_int_equal(n, 4); /* a, open, rep, rep2 */
    free(ids);
    assert_int_equal(reel_replay_select(s, "77", &ids, &n, &err), REEL_NOTFOUND);
    reel_err_clear(&err);
    assert_int_equal(reel_replay_select(s, "~m (", &ids, &n, &err), REEL_INVALID);

    /* links, from the index, and again after repair rebuilt it */
    for (int round = 0; round < 2; round++) {
        uint64_t of = 0, *reps = NULL;
        char *sess = NULL;
        reel_err_clear(&err);
        assert_int_equal(reel_replay_links(s, rep, &of, &sess, &reps, &n, &err), REEL_OK);
        assert_int_equal(of, a);
        assert_null(sess);
        assert_int_equal(n, 0);
        assert_int_equal(reel_replay_links(s, rep2, &of, &sess, &reps, &n, &err), REEL_OK);
        assert_int_equal(of, 7);
        assert_string_equal(sess, "elsewhere");
        free(sess);
        assert_int_equal(reel_replay_links(s, a, &of, &sess, &reps, &n, &err), REEL_OK);
        assert_int_equal(of, 0);
        assert_int_equal(n, 1);
        assert_int_equal(reps[0], rep);
        free(reps);
        if (round == 0) {
            assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
            r = NULL;
            char *report = NULL;
            assert_int_equal(reel_session_repair(s, &report, &err), REEL_OK);
            free(report);
        }
    }
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

static void test_body_limit(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("replay");
    reel_session_t *s = open_rec(home, "cut");
    reel_recorder_t *r = start(s, 4);
    uint64_t id = post(r, "0123456789", NULL, NULL);
    flush(r);
    reel_err_t err;
    reel_err_clear(&err);
    reel_replay_req_t q;
    assert_int_equal(reel_replay_load(s, id, &q, &err), REEL_OK);
    assert_string_equal(q.why_not,
                        "its request body was not stored whole (4 of 10 bytes): body_limit cut it");
    assert_int_equal(q.body.len, 4);
    reel_replay_req_free(&q);
    /* imported from a HAR that held part of the body (har.c marks it so):
     * the cut was made before the import, by whatever wrote the HAR */
    reel_flow_info_t hi = {.kind = REEL_FLOW_HTTP, .source = "har-import"};
    reel_rflow_t *h = NULL;
    uint64_t har = post(r, "abc", &h, &hi);
    reel_recorder_body_truncated(h, 0, 8);
    reel_recorder_flow_end(h, NULL, 0, 0, 0);
    flush(r);
    assert_int_equal(reel_replay_load(s, har, &q, &err), REEL_OK);
    assert_string_equal(q.why_not, "its request body was not stored whole (3 of 8 bytes): the HAR "
                                   "it was imported from held no more");
    reel_replay_req_free(&q);
    /* ... with no size on the wire (a HAR without bodySize) */
    har = post(r, "abc", &h, &hi);
    reel_recorder_body_truncated(h, 0, 0);
    reel_recorder_flow_end(h, NULL, 0, 0, 0);
    flush(r);
    assert_int_equal(reel_replay_load(s, har, &q, &err), REEL_OK);
    assert_string_equal(q.why_not, "its request body was not stored whole (its first 3 bytes): "
                                   "the HAR it was imported from held no more");
    reel_replay_req_free(&q);
    /* a body stored decoded (a HAR import of a gzip body) is whole though
     * its size on the wire, still encoded, is larger than the bytes stored */
    reel_rflow_t *g = reel_recorder_flow_start(r, &hi);
    reel_header_t gh[] = {H("Host", "api.test"), H("Content-Encoding", "gzip")};
    reel_request_head_t grq = {.method = "POST",
                               .scheme = "https",
                               .host = "api.test",
                               .port = 443,
                               .target = "/g",
                               .http_version = "HTTP/1.1",
                               .headers = gh,
                               .n_headers = 2,
                               .body_decoded = true};
    reel_recorder_request_head(g, &grq);
    reel_recorder_request_body(g, "abc", 3);
    reel_recorder_body_wire_size(g, 0, 23);
    uint64_t gid = reel_rflow_id(g);
    reel_recorder_flow_end(g, NULL, 0, 0, 0);
    flush(r);
    assert_int_equal(reel_replay_load(s, gid, &q, &err), REEL_OK);
    assert_null(q.why_not);
    assert_true(q.body_decoded);
    assert_int_equal(q.body.len, 3);
    reel_replay_req_free(&q);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

/* ---- a disk that fails or falls behind (the recorder's fault hook) ---- */

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static int fault_errno; /* frame writes and the resume probe fail with it */
static int fault_hold;  /* frame writes wait (a disk that has fallen behind) */
static int fault_held;  /* one is waiting */
static int resumed;     /* the recorder said "capture resumed" */

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int fault_cb(void *ctx, reel_recorder_fault_op op) {
    (void)ctx;
    pthread_mutex_lock(&fault_mu);
    while (op == REEL_FAULT_WRITE && fault_hold) {
        fault_held = 1;
        pthread_mutex_unlock(&fault_mu);
        sleep_ms(2);
        pthread_mutex_lock(&fault_mu);
    }
    fault_held = 0;
    int v = op == REEL_FAULT_WRITE || op == REEL_FAULT_PROBE ? fault_errno : 0;
    pthread_mutex_unlock(&fault_mu);
    return v;
}

static void warn_cb(void *ctx, const char *msg) {
    (void)ctx;
    pthread_mutex_lock(&fault_mu);
    if (strstr(msg, "capture resumed"))
        resumed = 1;
    pthread_mutex_unlock(&fault_mu);
}

static void set_int(int *field, int v) {
    pthread_mutex_lock(&fault_mu);
    *field = v;
    pthread_mutex_unlock(&fault_mu);
}

/* Waits up to 5 s for *field to be set. */
static void wait_int(int *field, const char *what) {
    for (int i = 0; i < 2500; i++) {
        pthread_mutex_lock(&fault_mu);
        int v = *field;
        pthread_mutex_unlock(&fault_mu);
        if (v)
            return;
        sleep_ms(2);
    }
    fail_msg("timed out waiting for %s", what);
}

static reel_recorder_t *start_faulty(reel_session_t *s, reel_capture_mode capture,
                                     size_t queue_bytes) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.fsync = REEL_FSYNC_NEVER;
    o.capture = capture;
    o.body_limit = 8 << 20;
    o.queue_bytes = queue_bytes;
    o.retry_ms = 20;
    o.fault = fault_cb;
    o.warn = warn_cb;
    reel_recorder_t *r = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

/* A request body that was not stored whole names the cause the flow's
 * records give, and says how much of it is there: a disk error that
 * stopped capture while the flow ran (its FlowError's request_body_lost;
 * the flow is damaged), capture falling behind the disk (its end's
 * request_body_dropped). Neither is body_limit. */
static void test_not_whole_names_the_cause(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("replay");
    reel_session_t *s = open_rec(home, "disk");
    reel_recorder_t *r = start_faulty(s, REEL_CAPTURE_ON, 0);
    reel_err_t err;
    reel_err_clear(&err);

    /* the disk fills up after the request head was written */
    reel_rflow_t *f = NULL;
    uint64_t id = post(r, "", &f, NULL);
    flush(r);
    set_int(&fault_errno, ENOSPC);
    reel_recorder_request_body(f, "0123456789", 10);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_IO);
    set_int(&fault_errno, 0);
    wait_int(&resumed, "capture resumed");
    reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/1.1"};
    reel_recorder_response_head(f, &rs);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    reel_err_clear(&err);
    reel_recorder_flush(r, &err); /* REEL_IO: records were lost (sticky) */
    reel_err_clear(&err);
    reel_recorder_close(r, &err);
    reel_replay_req_t q;
    reel_err_clear(&err);
    assert_int_equal(reel_replay_load(s, id, &q, &err), REEL_OK);
    assert_string_equal(q.why_not, "its request body was not stored whole (0 of 10 bytes): capture "
                                   "was stopped by a disk error while the flow ran");
    reel_replay_req_free(&q);
    reel_session_close(s);

    /* the disk falls behind (capture on, 1 MiB queue, the writer held in
     * a frame write): the 2 MiB body is shed from some point on */
    s = open_rec(home, "behind");
    r = start_faulty(s, REEL_CAPTURE_ON, 1 << 20);
    set_int(&fault_hold, 1);
    size_t big = 2 << 20;
    char *body = reel_malloc(big + 1);
    memset(body, 'b', big);
    body[300 << 10] = '\0';
    post(r, body, NULL, NULL); /* 300 KiB: fills a block, the writer takes it */
    wait_int(&fault_held, "the writer in a frame write");
    body[300 << 10] = 'b';
    body[big] = '\0';
    id = post(r, body, NULL, NULL);
    free(body);
    set_int(&fault_hold, 0);
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
    assert_int_equal(reel_replay_load(s, id, &q, &err), REEL_OK);
    char want[128];
    snprintf(want, sizeof want, "(%zu of %zu bytes): capture fell behind the disk", q.body.len,
             big);
    assert_true(q.body.len < big);
    assert_non_null(q.why_not);
    assert_non_null(strstr(q.why_not, "its request body was not stored whole "));
    if (strstr(q.why_not, want) == NULL)
        fail_msg("why_not: %s", q.why_not);
    reel_replay_req_free(&q);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_links),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_not_whole_names_the_cause),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
