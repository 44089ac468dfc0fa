/* The web API without sockets: reel__web_api answers requests against a
 * session on disk (statuses, error bodies, writes reaching the session),
 * the query-string helpers decode what browsers send, and the flow list
 * pages by cursor (every sort and order, with a filter, with flows added
 * between pages) without a duplicate or a gap; a replay request is checked
 * and handed to the server (which runs the child), and the child's output
 * becomes the right answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "session/query.h"
#include "session/recorder.h"
#include "session/session.h"
#include "unit/testutil.h"
#include "web/web_int.h"

static char *home;
/* The replay the last call handed to the server (owned), and its flow. */
static char *last_replay;
static int64_t last_replay_id;

/* Answers method path?query with body; returns the status, *out the JSON
 * (owned, NULL if not JSON). */
static int call(const char *method, const char *target, const char *body, json_t **out,
                int read_only) {
    reel__web_ctx_t w = {.home = home, .read_only = read_only};
    char *path = reel_strdup(target);
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    reel__web_req_t rq = {.method = method,
                          .path = path,
                          .query = q ? q : "",
                          .body = (const uint8_t *)body,
                          .body_len = body ? strlen(body) : 0};
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    rs.status = 200;
    reel__web_api(&w, &rq, &rs);
    json_t *j = rs.body.len ? json_loadb((const char *)rs.body.data, rs.body.len, 0, NULL) : NULL;
    if (out)
        *out = j;
    else
        json_decref(j);
    reel_buf_free(&rs.body);
    free(rs.headers);
    if (rs.file)
        fclose(rs.file);
    reel__web_sse_free(rs.sse);
    free(last_replay);
    last_replay = rs.replay_session;
    last_replay_id = rs.replay_id;
    free(path);
    return rs.status;
}

static int setup(void **state) {
    (void)state;
    home = reel_test_tmpdir("webapi");
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "s1", REEL_OPEN_CREATE, &s, &err), REEL_OK);
    reel_session_close(s);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    reel_test_rm_rf(home);
    free(home);
    free(last_replay);
    last_replay = NULL;
    return 0;
}

static void test_params(void **state) {
    (void)state;
    char *v = reel__web_param("a=1&filter=~c%20404%20%26%20~d+x&b", "filter");
    assert_string_equal(v, "~c 404 & ~d x");
    free(v);
    v = reel__web_param("a=1&b", "b");
    assert_string_equal(v, "");
    free(v);
    assert_null(reel__web_param("ab=1", "a"));
    assert_null(reel__web_param("a=%00", "a")); /* a NUL is refused */
    v = reel__web_unescape("%zz%4", 5, 1);      /* bad escapes stay as they are */
    assert_string_equal(v, "%zz%4");
    free(v);
    v = reel__web_unescape("a+b%2B", 6, 0); /* a path's '+' is itself */
    assert_string_equal(v, "a+b+");
    free(v);
}

static void test_sessions_and_errors(void **state) {
    (void)state;
    json_t *j = NULL;
    assert_int_equal(call("GET", "/api/sessions", NULL, &j, 0), 200);
    json_t *s0 = json_array_get(json_object_get(j, "sessions"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "name")), "s1");
    assert_int_equal(json_integer_value(json_object_get(s0, "flows")), 0);
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/nope/flows", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/..%2Fx/flows", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/s1/flows/1", NULL, NULL, 0), 404);
    /* a malformed flow id (not digits only, 1 and up) is a bad request */
    assert_int_equal(call("GET", "/api/sessions/s1/flows/-1", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=0", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=1001", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=12abc", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?order=up", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=1000", NULL, NULL, 0), 200);
    assert_int_equal(call("POST", "/api/sessions/s1/flows", NULL, NULL, 0), 405);
    assert_int_equal(call("GET", "/api/sessions//flows", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/a/b/c/d/e/f/g/h/i/j", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?filter=~c%20(", NULL, &j, 0), 400);
    assert_int_equal(json_integer_value(json_object_get(j, "column")), 4);
    json_decref(j);
    assert_int_equal(call("POST", "/api/sessions/s1/marks", "{", NULL, 0), 400);
    assert_int_equal(call("POST", "/api/sessions/s1/marks", "{\"ids\": [5]}", NULL, 0), 404);
    assert_int_equal(call("POST", "/api/sessions/s1/marks", "{\"ids\": [\"x\"]}", NULL, 0), 400);
    assert_int_equal(
        call("POST", "/api/sessions/s1/tags", "{\"filter\": \"\", \"tags\": []}", NULL, 0), 400);
}

static void test_config(void **state) {
    (void)state;
    json_t *j = NULL;
    assert_int_equal(call("POST", "/api/sessions/s1/config",
                          "{\"name\": \"body_limit\", \"value\": \"x\"}", &j, 0),
                     400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "body_limit"));
    json_decref(j);
    assert_int_equal(call("POST", "/api/sessions/s1/config",
                          "{\"name\": \"body_limit\", \"value\": \"1k\"}", &j, 0),
                     200);
    assert_string_equal(json_string_value(json_object_get(j, "value")), "1024");
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/s1/config", NULL, &j, 0), 200);
    json_t *o;
    size_t i;
    int found = 0;
    json_array_foreach(json_object_get(j, "options"), i, o) {
        if (strcmp(json_string_value(json_object_get(o, "name")), "body_limit") == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "layer")), "session");
            assert_string_equal(json_string_value(json_object_get(o, "value")), "1024");
            found = 1;
        }
    }
    assert_true(found);
    json_decref(j);
    assert_int_equal(call("POST", "/api/sessions/s1/config",
                          "{\"name\": \"body_limit\", \"value\": null}", NULL, 0),
                     200);
}

static void test_delete_needs_confirmation(void **state) {
    (void)state;
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "gone", REEL_OPEN_CREATE, &s, &err), REEL_OK);
    reel_session_close(s);
    assert_int_equal(call("POST", "/api/sessions/gone/delete", NULL, NULL, 0), 400);
    assert_int_equal(call("POST", "/api/sessions/gone/delete?confirm=s1", NULL, NULL, 0), 400);
    assert_int_equal(call("POST", "/api/sessions/gone/delete?confirm=gone", NULL, NULL, 0), 200);
    assert_int_equal(call("GET", "/api/sessions/gone", NULL, NULL, 0), 404);
}

/* ---- cursor paging ---- */

static int nrecorded;

/* Records n flows into session "big": hosts h0..h4.test, a few without a
 * host (CONNECT-less error flows have one, so the host is blanked by
 * giving none to the request head), statuses 200/404/301.., every 6th with
 * no response (status NULL); ids, hosts and statuses give ties to break. */
static void record_flows(int n) {
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "big", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err),
                     REEL_OK);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    reel_recorder_t *r = NULL;
    assert_int_equal(reel_recorder_open(s, &o, &r, &err), REEL_OK);
    for (int k = 0; k < n; k++) {
        int i = nrecorded++;
        reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .client_addr = "127.0.0.1:5000"};
        reel_rflow_t *f = reel_recorder_flow_start(r, &info);
        char host[16], target[32];
        snprintf(host, sizeof host, "h%d.test", (i * 7) % 5);
        snprintf(target, sizeof target, "/p/%d", i);
        reel_request_head_t rq = {.method = i % 2 ? "GET" : "POST",
                                  .scheme = "http",
                                  .host = i % 9 == 4 ? NULL : host,
                                  .port = 80,
                                  .target = target,
                                  .http_version = "HTTP/1.1"};
        reel_recorder_request_head(f, &rq);
        if (i % 6 == 5) {
            reel_recorder_flow_error(f, "connection reset", 0);
            continue;
        }
        reel_response_head_t rs = {.status = i % 4 == 0   ? 404u
                                             : i % 4 == 1 ? 200u
                                                          : 301u,
                                   .reason = "R",
                                   .http_version = "HTTP/1.1"};
        reel_recorder_response_head(f, &rs);
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
}

/* ids of one answer's rows appended to ids[*n]. */
static void add_ids(json_t *page, int64_t *ids, size_t *n, size_t cap) {
    json_t *row;
    size_t i;
    json_array_foreach(json_object_get(page, "rows"), i, row) {
        assert_true(*n < cap);
        ids[(*n)++] = json_integer_value(json_object_get(row, "id"));
    }
}

/* Every row of the list by one request (the reference), then the same by
 * pages of `limit` following "next": the same ids in the same order. */
static size_t walk(const char *sort, const char *order, const char *filter, int limit, int64_t *ref,
                   int64_t *got, size_t cap) {
    json_t *j = NULL;
    size_t nref = 0, ngot = 0;
    char *t = reel_asprintf("/api/sessions/big/flows?sort=%s&order=%s&filter=%s&limit=1000", sort,
                            order, filter);
    assert_int_equal(call("GET", t, NULL, &j, 0), 200);
    free(t);
    add_ids(j, ref, &nref, cap);
    assert_false(json_is_true(json_object_get(j, "more")));
    json_decref(j);
    char *cursor = NULL;
    for (int pages = 0;; pages++) {
        assert_true(pages < 1000);
        t = reel_asprintf("/api/sessions/big/flows?sort=%s&order=%s&filter=%s&limit=%d%s%s", sort,
                          order, filter, limit, cursor ? "&cursor=" : "", cursor ? cursor : "");
        assert_int_equal(call("GET", t, NULL, &j, 0), 200);
        free(t);
        free(cursor);
        cursor = NULL;
        size_t before = ngot;
        add_ids(j, got, &ngot, cap);
        int more = json_is_true(json_object_get(j, "more"));
        if (ngot > before)
            cursor = reel_strdup(json_string_value(json_object_get(j, "next")));
        json_decref(j);
        if (!more)
            break;
        assert_true(ngot > before);
    }
    free(cursor);
    assert_int_equal(ngot, nref);
    for (size_t i = 0; i < nref; i++)
        assert_int_equal(got[i], ref[i]);
    /* no duplicates */
    for (size_t i = 0; i < ngot; i++)
        for (size_t k = i + 1; k < ngot; k++)
            assert_true(got[i] != got[k]);
    return nref;
}

static void test_cursor_paging(void **state) {
    (void)state;
    record_flows(97);
    int64_t ref[200], got[200];
    static const char *const sorts[] = {"id", "start", "host", "status"};
    for (size_t si = 0; si < 4; si++) {
        for (int desc = 0; desc < 2; desc++) {
            const char *order = desc ? "desc" : "asc";
            assert_int_equal(walk(sorts[si], order, "", 7, ref, got, 200), 97);
            size_t n = walk(sorts[si], order, "~m%20GET%20%26%20!~c%20404", 5, ref, got, 200);
            assert_true(n > 10 && n < 60);
        }
    }
    /* a page backwards: "prev" of a page with the order flipped gives the
     * rows before it, nearest first */
    json_t *j = NULL, *k = NULL;
    assert_int_equal(call("GET", "/api/sessions/big/flows?sort=host&limit=1000", NULL, &j, 0), 200);
    json_t *all = json_object_get(j, "rows");
    assert_int_equal(call("GET", "/api/sessions/big/flows?sort=host&limit=10", NULL, &k, 0), 200);
    char *t = reel_asprintf("/api/sessions/big/flows?sort=host&limit=10&cursor=%s",
                            json_string_value(json_object_get(k, "next")));
    json_decref(k);
    assert_int_equal(call("GET", t, NULL, &k, 0), 200);
    free(t);
    t = reel_asprintf("/api/sessions/big/flows?sort=host&order=desc&limit=4&cursor=%s",
                      json_string_value(json_object_get(k, "prev")));
    json_decref(k);
    assert_int_equal(call("GET", t, NULL, &k, 0), 200);
    free(t);
    assert_int_equal(json_array_size(json_object_get(k, "rows")), 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(json_integer_value(
                             json_object_get(json_array_get(json_object_get(k, "rows"), i), "id")),
                         json_integer_value(json_object_get(json_array_get(all, 9 - i), "id")));
    json_decref(k);
    json_decref(j);
}

/* A cursor holds the sort value: it works when its flow does not exist
 * (dropped by retention), and a cursor of another sort or a bad one is
 * refused, as is the old offset. */
static void test_cursor_by_value(void **state) {
    (void)state;
    json_t *j = NULL;
    /* "h0.test" in hex, with an id past every flow: the rows after every
     * h0.test flow, i.e. the first h1.test one */
    assert_int_equal(call("GET",
                          "/api/sessions/big/flows?sort=host&limit=1&cursor=h999999.68302e74657374",
                          NULL, &j, 0),
                     200);
    const char *host =
        json_string_value(json_object_get(json_array_get(json_object_get(j, "rows"), 0), "host"));
    assert_string_equal(host, "h1.test");
    json_decref(j);
    /* status NULL comes first ascending: after (NULL, big id) come the 200s */
    assert_int_equal(
        call("GET", "/api/sessions/big/flows?sort=status&limit=1&cursor=t999999.-", NULL, &j, 0),
        200);
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(json_object_get(j, "rows"), 0), "status")),
                     200);
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/big/flows?sort=id&cursor=h3.6869", NULL, NULL, 0),
                     400);
    assert_int_equal(call("GET", "/api/sessions/big/flows?sort=host&cursor=h3.6", NULL, NULL, 0),
                     400);
    assert_int_equal(call("GET", "/api/sessions/big/flows?sort=start&cursor=s3.-", NULL, NULL, 0),
                     400);
    assert_int_equal(call("GET", "/api/sessions/big/flows?cursor=i-1", NULL, NULL, 0), 400);
    /* id 0: before every flow of the value (the UI's jumps make these up) */
    assert_int_equal(call("GET", "/api/sessions/big/flows?limit=1&cursor=i0", NULL, &j, 0), 200);
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(json_object_get(j, "rows"), 0), "id")),
                     1);
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/big/flows?cursor=i5x", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/big/flows?offset=10", NULL, NULL, 0), 400);
    /* the count, capped or exact */
    assert_int_equal(call("GET", "/api/sessions/big/count?max=10", NULL, &j, 0), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 10);
    assert_true(json_is_true(json_object_get(j, "capped")));
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/big/count?max=1000&filter=~m%20GET", NULL, &j, 0),
                     200);
    int64_t gets = json_integer_value(json_object_get(j, "count"));
    assert_false(json_is_true(json_object_get(j, "capped")));
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/big/count?filter=~m%20GET", NULL, &j, 0), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), gets);
    assert_true(gets > 30);
    json_decref(j);
}

/* Flows recorded between two pages: the pages after the cursor bring the
 * new ones (in id order at the end, in host order where they sort), and
 * nothing comes twice. */
static void test_cursor_with_appends(void **state) {
    (void)state;
    static const char *const sorts[] = {"id", "host"};
    for (size_t si = 0; si < 2; si++) {
        int64_t ids[400];
        size_t n = 0;
        json_t *j = NULL;
        char *t = reel_asprintf("/api/sessions/big/flows?sort=%s&limit=30", sorts[si]);
        assert_int_equal(call("GET", t, NULL, &j, 0), 200);
        free(t);
        add_ids(j, ids, &n, 400);
        char *cursor = reel_strdup(json_string_value(json_object_get(j, "next")));
        json_decref(j);
        int before = nrecorded;
        record_flows(23);
        for (;;) {
            t = reel_asprintf("/api/sessions/big/flows?sort=%s&limit=30&cursor=%s", sorts[si],
                              cursor);
            assert_int_equal(call("GET", t, NULL, &j, 0), 200);
            free(t);
            free(cursor);
            cursor = NULL;
            size_t was = n;
            add_ids(j, ids, &n, 400);
            int more = json_is_true(json_object_get(j, "more"));
            if (n > was)
                cursor = reel_strdup(json_string_value(json_object_get(j, "next")));
            json_decref(j);
            if (!more)
                break;
        }
        free(cursor);
        /* every flow but those the first page's cursor had passed (a new
         * flow sorting before it, by host), each once */
        for (size_t i = 0; i < n; i++)
            for (size_t k = i + 1; k < n; k++)
                assert_true(ids[i] != ids[k]);
        int64_t maxid = 0;
        for (size_t i = 0; i < n; i++)
            maxid = ids[i] > maxid ? ids[i] : maxid;
        if (si == 0) {
            assert_int_equal(n, (size_t)nrecorded);
            assert_int_equal(maxid, nrecorded);
        } else {
            assert_true(n > (size_t)before && n <= (size_t)nrecorded);
            assert_true(maxid > before);
        }
    }
}

/* ---- replay ---- */

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define IGNORE_LEAK(p) __lsan_ignore_object(p)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define IGNORE_LEAK(p) __lsan_ignore_object(p)
#endif
#endif
#ifndef IGNORE_LEAK
#define IGNORE_LEAK(p) (void)(p)
#endif

/* Session "rpl": flow 1 a whole GET (can be replayed), flow 2 a TCP tunnel,
 * flow 3 a request still open. */
static void record_replayable(void) {
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "rpl", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err),
                     REEL_OK);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    reel_recorder_t *r = NULL;
    assert_int_equal(reel_recorder_open(s, &o, &r, &err), REEL_OK);
    reel_request_head_t rq = {.method = "GET",
                              .scheme = "http",
                              .host = "a.test",
                              .port = 80,
                              .target = "/x",
                              .http_version = "HTTP/1.1"};
    reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/1.1"};
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .client_addr = "127.0.0.1:5000"};
    reel_rflow_t *f = reel_recorder_flow_start(r, &info);
    reel_recorder_request_head(f, &rq);
    reel_header_t link = {"Link", 4, "</a.css>; rel=preload", 21};
    reel_response_head_t hint = {.status = 103,
                                 .reason = "Early Hints",
                                 .http_version = "HTTP/1.1",
                                 .headers = &link,
                                 .n_headers = 1};
    reel_recorder_interim(f, &hint);
    reel_recorder_response_head(f, &rs);
    reel_header_t tr = {"grpc-status", 11, "0", 1};
    reel_recorder_trailers(f, true, &tr, 1, false);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    reel_flow_info_t tinfo = {.kind = REEL_FLOW_TUNNEL, .client_addr = "127.0.0.1:5001"};
    f = reel_recorder_flow_start(r, &tinfo);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    f = reel_recorder_flow_start(r, &info);
    reel_recorder_request_head(f, &rq);
    /* flow 3 stays open on purpose: its handle is never ended, which the
     * leak checker would otherwise report */
    IGNORE_LEAK(f);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
}

static void test_replay_request(void **state) {
    (void)state;
    record_replayable();
    json_t *j = NULL;
    /* the detail carries interim answers and trailers */
    assert_int_equal(call("GET", "/api/sessions/rpl/flows/1", NULL, &j, 0), 200);
    json_t *in = json_array_get(json_object_get(j, "interim"), 0);
    assert_int_equal(json_integer_value(json_object_get(in, "status")), 103);
    json_t *h0 = json_array_get(json_object_get(in, "headers"), 0);
    assert_string_equal(json_string_value(json_array_get(h0, 0)), "Link");
    json_t *t0 = json_array_get(json_object_get(j, "response_trailers"), 0);
    assert_string_equal(json_string_value(json_array_get(t0, 0)), "grpc-status");
    assert_string_equal(json_string_value(json_array_get(t0, 1)), "0");
    assert_null(json_object_get(j, "request_trailers"));
    json_decref(j);
    j = NULL;
    assert_int_equal(call("POST", "/api/sessions/rpl/flows/1/replay", NULL, NULL, 0), 200);
    assert_non_null(last_replay);
    assert_string_equal(last_replay, "rpl");
    assert_int_equal(last_replay_id, 1);
    assert_int_equal(call("GET", "/api/sessions/rpl/flows/1/replay", NULL, NULL, 0), 405);
    assert_null(last_replay);
    assert_int_equal(call("POST", "/api/sessions/rpl/flows/99/replay", NULL, NULL, 0), 404);
    assert_null(last_replay);
    assert_int_equal(call("POST", "/api/sessions/rpl/flows/2/replay", NULL, &j, 0), 422);
    assert_null(last_replay);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "TCP tunnel"));
    json_decref(j);
    int st = call("POST", "/api/sessions/rpl/flows/3/replay", NULL, &j, 0);
    assert_null(last_replay);
    assert_int_equal(st, 422);
    json_decref(j);
    /* the session this process records: the child could not record into it */
    reel__web_ctx_t w = {.home = home, .live = "rpl"};
    reel__web_req_t rq = {
        .method = "POST", .path = "/api/sessions/rpl/flows/1/replay", .query = ""};
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    reel__web_api(&w, &rq, &rs);
    assert_int_equal(rs.status, 409);
    assert_null(rs.replay_session);
    reel_buf_free(&rs.body);
    /* ... unless the server sends live replays itself: it gets the loaded
     * request, checked first */
    w.live_replay = 1;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    rs.status = 200;
    reel__web_api(&w, &rq, &rs);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.replay_session, "rpl");
    assert_non_null(rs.replay_req);
    assert_int_equal(rs.replay_req->id, 1);
    assert_string_equal(rs.replay_req->method, "GET");
    assert_string_equal(rs.replay_req->target, "/x");
    assert_null(rs.replay_req->why_not);
    free(rs.replay_session);
    reel_replay_req_free(rs.replay_req);
    free(rs.replay_req);
    reel_buf_free(&rs.body);
    rq.path = "/api/sessions/rpl/flows/2/replay";
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    reel__web_api(&w, &rq, &rs);
    assert_int_equal(rs.status, 422);
    assert_null(rs.replay_req);
    assert_null(rs.replay_session);
    reel_buf_free(&rs.body);
}

/* reel__web_replay_live_answer; returns the status, *j the body. */
static int live_answer(uint64_t id, uint32_t status, const char *error, int timed_out, json_t **j) {
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    reel__web_replay_live_answer(&rs, "rpl", 1, id, status, error, timed_out);
    *j = json_loadb((const char *)rs.body.data, rs.body.len, 0, NULL);
    assert_non_null(*j);
    reel_buf_free(&rs.body);
    return rs.status;
}

static void test_replay_live_answer(void **state) {
    (void)state;
    json_t *j = NULL;
    assert_int_equal(live_answer(7, 200, NULL, 0, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "of")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_true(json_is_null(json_object_get(j, "error")));
    json_decref(j);
    assert_int_equal(live_answer(8, 0, "connecting to x: refused", 0, &j), 502);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 8);
    assert_true(json_is_null(json_object_get(j, "status")));
    assert_string_equal(json_string_value(json_object_get(j, "error")), "connecting to x: refused");
    json_decref(j);
    assert_int_equal(live_answer(9, 0, "replay timed out after 2 s waiting", 1, &j), 504);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 9);
    json_decref(j);
    /* capture off: sent, nothing recorded */
    assert_int_equal(live_answer(0, 200, NULL, 0, &j), 409);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "capture is off"));
    json_decref(j);
}

/* reel__web_replay_answer on out/err; returns the status, *j the body. */
static int answer(int code, const char *why, const char *out, const char *errout, json_t **j) {
    reel_buf_t o, e;
    reel_buf_init(&o, 0);
    reel_buf_init(&e, 0);
    reel_buf_puts(&o, out);
    reel_buf_puts(&e, errout);
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    reel__web_replay_answer(&rs, code, why, &o, &e);
    *j = json_loadb((const char *)rs.body.data, rs.body.len, 0, NULL);
    assert_non_null(*j);
    reel_buf_free(&rs.body);
    reel_buf_free(&o);
    reel_buf_free(&e);
    return rs.status;
}

static void test_replay_answer(void **state) {
    (void)state;
    json_t *j = NULL;
    assert_int_equal(answer(0, NULL,
                            "{\"replays\": [{\"of\": 1, \"id\": 7, \"status\": 200, "
                            "\"error\": null}], \"skipped\": []}\n",
                            "", &j),
                     200);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "of")), 1);
    assert_true(json_is_null(json_object_get(j, "error")));
    json_decref(j);
    /* the replay failed upstream: its flow exists and holds the error */
    assert_int_equal(answer(1, NULL,
                            "{\"replays\": [{\"of\": 1, \"id\": 8, \"status\": null, "
                            "\"error\": \"connecting to x: refused\"}], \"skipped\": []}",
                            "", &j),
                     502);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 8);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "connecting to x: refused");
    json_decref(j);
    assert_int_equal(answer(1, NULL,
                            "{\"replays\": [], \"skipped\": [{\"of\": 2, \"why\": "
                            "\"it is a WebSocket flow\"}]}",
                            "", &j),
                     422);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "flow 2 cannot be replayed: it is a WebSocket flow");
    json_decref(j);
    /* another proxy records the session: what the web user can do, not
     * the command line's --into */
    assert_int_equal(answer(1, NULL, "",
                            "reel: session 'x': recovered\nreel replay: session 'x' is being "
                            "recorded by PID 12; replay records into a session no proxy is "
                            "recording: stop that proxy, or replay into another session with "
                            "--into\n",
                            &j),
                     409);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "session 'x' is being recorded by PID 12, and only that proxy can record "
                        "the replay into it while it runs: stop it and replay again here, or "
                        "replay from that proxy's own web UI (started with --web: the URL it "
                        "printed), which records the replay into its live capture");
    json_decref(j);
    /* locked for another reason: that reason */
    assert_int_equal(answer(1, NULL, "",
                            "reel replay: session 'x' is being repaired: try again; replay "
                            "records into a session no proxy is recording: stop it\n",
                            &j),
                     409);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "session 'x' is being repaired: try again");
    json_decref(j);
    assert_int_equal(answer(2, NULL, "", "reel replay: bad thing\nTry 'reel replay --help'.\n", &j),
                     500);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "bad thing");
    json_decref(j);
    assert_int_equal(answer(-1, "replay timed out after 2 s", "", "", &j), 504);
    json_decref(j);
    assert_int_equal(answer(-1, "killed by signal 9", "", "", &j), 500);
    json_decref(j);
}

/* A body download's decoded= takes 0, 1, true or false and nothing else;
 * an export takes ids or a filter, not both (as tags and marks). */
static void test_body_and_export_params(void **state) {
    (void)state;
    if (nrecorded == 0)
        record_flows(2);
    static const char *const ok[] = {"", "?decoded=0", "?decoded=1", "?decoded=true",
                                     "?decoded=false"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char *t = reel_asprintf("/api/sessions/big/flows/2/body/response/raw%s", ok[i]);
        assert_int_equal(call("GET", t, NULL, NULL, 0), 200);
        free(t);
    }
    static const char *const bad[] = {"decoded=2", "decoded=abc", "decoded=", "decoded=TRUE"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *j = NULL;
        char *t = reel_asprintf("/api/sessions/big/flows/2/body/request/raw?%s", bad[i]);
        assert_int_equal(call("GET", t, NULL, &j, 0), 400);
        assert_string_equal(json_string_value(json_object_get(j, "error")),
                            "decoded: 0, 1, true or false");
        json_decref(j);
        free(t);
    }
    json_t *j = NULL;
    assert_int_equal(call("GET", "/api/sessions/big/export?ids=1,2&filter=~m%20GET", NULL, &j, 0),
                     400);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "give ids or filter, not both");
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/big/export?ids=1,2", NULL, NULL, 0), 200);
    assert_int_equal(call("GET", "/api/sessions/big/export?filter=~m%20GET", NULL, NULL, 0), 200);
    assert_int_equal(call("GET", "/api/sessions/big/export", NULL, NULL, 0), 200);
}

/* Which requests server.c answers off the loop. */
static void test_api_long(void **state) {
    (void)state;
    static const struct {
        const char *method, *path, *query, *body;
        int want;
    } cases[] = {
        {"GET", "/api/sessions/s/export", "", NULL, 1},
        {"GET", "/api/sessions/s/export", "format=ndjson&ids=1,2", NULL, 1},
        {"GET", "/api/sessions/s/count", "filter=~b%20x&max=10000", NULL, 1},
        {"GET", "/api/sessions/s/flows", "filter=~u%20x", NULL, 1},
        {"GET", "/api/sessions/s/count", "max=10000", NULL, 0},
        {"GET", "/api/sessions/s/count", "filter=", NULL, 0},
        {"GET", "/api/sessions/s/flows", "filter=%20+", NULL, 0}, /* blank: every flow */
        {"GET", "/api/sessions/s/flows/3", "filter=~b%20x", NULL, 0},
        {"GET", "/api/sessions/s/flows/3/body/response", "", NULL, 0},
        {"POST", "/api/sessions/s/tags", "", "{\"filter\": \"~b x\", \"tags\": [\"a\"]}", 1},
        {"POST", "/api/sessions/s/marks", "", "{\"ids\": [1]}", 0},
        {"POST", "/api/sessions/s/marks", "", "not json", 0},
        {"GET", "/api/sessions", "", NULL, 1},
        {"GET", "/api/sessions", "brief=1", NULL, 0},
        {"GET", "/api/sessions/s", "", NULL, 0},
        {"GET", "/api/sessions/s/config", "", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reel__web_req_t rq = {.method = cases[i].method,
                              .path = cases[i].path,
                              .query = cases[i].query,
                              .body = (const uint8_t *)cases[i].body,
                              .body_len = cases[i].body ? strlen(cases[i].body) : 0};
        if (reel__web_api_long(&rq) != cases[i].want)
            fail_msg("%s %s?%s: want %d", cases[i].method, cases[i].path, cases[i].query,
                     cases[i].want);
    }
}

/* An export answered on a walk thread (rq.cancel set) is the same bytes as
 * one answered on the loop, and stops with an error once cancelled. Returns
 * the status, *out the exported bytes (owned). */
static int export_with(const atomic_int *cancel, reel_buf_t *out) {
    reel__web_ctx_t w = {.home = home};
    reel__web_req_t rq = {.method = "GET",
                          .path = "/api/sessions/big/export",
                          .query = "format=ndjson",
                          .cancel = cancel};
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    reel__web_api(&w, &rq, &rs);
    reel_buf_init(out, 0);
    if (rs.file) {
        rewind(rs.file);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, rs.file)) > 0)
            reel_buf_append(out, buf, n);
        fclose(rs.file);
    } else {
        reel_buf_append(out, rs.body.data, rs.body.len);
    }
    reel_buf_free(&rs.body);
    free(rs.headers);
    return rs.status;
}

static void test_export_cancel(void **state) {
    (void)state;
    if (nrecorded == 0)
        record_flows(2);
    atomic_int go = 0, stop = 1;
    reel_buf_t a, b, c;
    assert_int_equal(export_with(NULL, &a), 200);
    assert_int_equal(export_with(&go, &b), 200);
    assert_true(a.len > 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(export_with(&stop, &c), 500);
    reel_buf_append(&c, "", 1);
    assert_non_null(strstr((const char *)c.data, "writing the export"));
    reel_buf_free(&a);
    reel_buf_free(&b);
    reel_buf_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_sessions_and_errors),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_delete_needs_confirmation),
        cmocka_unit_test(test_cursor_paging),
        cmocka_unit_test(test_cursor_by_value),
        cmocka_unit_test(test_cursor_with_appends),
        cmocka_unit_test(test_replay_request),
        cmocka_unit_test(test_replay_live_answer),
        cmocka_unit_test(test_replay_answer),
        cmocka_unit_test(test_body_and_export_params),
        cmocka_unit_test(test_api_long),
        cmocka_unit_test(test_export_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
