/* Tests for src/core/connect_filter.c: the CONNECT asked of an upstream
 * proxy, over an in-memory pipe (core/memfilter.h) standing for the proxy.
 * The proxy's answer comes split at every byte; the stack opens for the
 * layers above only on a 2xx, with the bytes behind the answer passed up,
 * and fails with what the proxy said otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "core/connect_filter.h"
#include "core/memfilter.h"

typedef struct {
    reel_stack_t st;
    reel_buf_t data;
    char *error;
    int connected, ready, eof, closed;
} rig_t;

static void ev_data(void *ud, const uint8_t *d, size_t n) {
    reel_buf_append(&((rig_t *)ud)->data, d, n);
}
static void ev_eof(void *ud, const char *error) {
    (void)error;
    ((rig_t *)ud)->eof++;
}
static void ev_read_done(void *ud) {
    (void)ud;
}
static void ev_connected(void *ud) {
    ((rig_t *)ud)->connected++;
}
static void ev_ready(void *ud) {
    ((rig_t *)ud)->ready++;
}
static void ev_error(void *ud, const char *why) {
    rig_t *r = ud;
    free(r->error);
    r->error = reel_strdup(why);
}
static void ev_closed(void *ud) {
    ((rig_t *)ud)->closed++;
}

static const reel_stack_events_t events = {.data = ev_data,
                                           .eof = ev_eof,
                                           .read_done = ev_read_done,
                                           .connected = ev_connected,
                                           .ready = ev_ready,
                                           .error = ev_error,
                                           .closed = ev_closed};

static void run(uv_loop_t *loop) {
    for (int i = 0; i < 5; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

/* A stack [pipe, connect filter], connected to the "proxy" and reading;
 * auth: the Basic credentials, NULL for none. */
static reel_mempipe_t *start(uv_loop_t *loop, rig_t *r, const char *auth) {
    memset(r, 0, sizeof *r);
    reel_buf_init(&r->data, 0);
    reel_mempipe_t *mp = reel_mempipe_new(loop, false, NULL);
    reel_stack_init(&r->st, &events, r);
    reel_stack_push(&r->st, reel_mempipe_filter(mp), NULL, 0);
    reel_stack_push(&r->st,
                    reel_connect_filter_new("proxy.test:3128", "example.com", 443, auth, false),
                    NULL, 0);
    reel_stack_connect(&r->st);
    run(loop);
    reel_stack_set_reading(&r->st, true); /* (as a peer does once connected) */
    assert_int_equal(r->connected, 1);    /* the proxy's connection */
    assert_int_equal(r->ready, 0);        /* not the tunnel yet */
    assert_false(reel_stack_open(&r->st));
    return mp;
}

static void finish(uv_loop_t *loop, rig_t *r, reel_mempipe_t *mp) {
    reel_stack_close(&r->st);
    run(loop);
    assert_int_equal(r->closed, 1);
    reel_mempipe_free(mp);
    run(loop);
    reel_buf_free(&r->data);
    free(r->error);
}

static void feed_split(uv_loop_t *loop, reel_mempipe_t *mp, const char *s, size_t split) {
    size_t n = strlen(s);
    if (split == 0 || split >= n) {
        reel_mempipe_feed(mp, s, n);
    } else {
        reel_mempipe_feed(mp, s, split);
        run(loop);
        reel_mempipe_feed(mp, s + split, n - split);
    }
    run(loop);
}

static void test_tunnel_opens_on_2xx(void **state) {
    (void)state;
    static const char answer[] = "HTTP/1.1 200 Connection established\r\nVia: t\r\n\r\nORIGIN";
    for (size_t split = 0; split < sizeof answer - 1; split++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        rig_t r;
        reel_mempipe_t *mp = start(&loop, &r, "YW5uOnMzY3JldA==");
        reel_buf_t *sent = reel_mempipe_sent(mp);
        static const char want[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                                   "Proxy-Authorization: Basic YW5uOnMzY3JldA==\r\n\r\n";
        assert_int_equal(sent->len, sizeof want - 1);
        assert_memory_equal(sent->data, want, sizeof want - 1);
        reel_buf_reset(sent);
        feed_split(&loop, mp, answer, split);
        assert_null(r.error);
        assert_int_equal(r.ready, 1);
        assert_true(reel_stack_open(&r.st));
        /* what came behind the answer is the origin's */
        assert_int_equal(r.data.len, 6);
        assert_memory_equal(r.data.data, "ORIGIN", 6);
        /* and bytes go through both ways */
        reel_stack_send(&r.st, "hi", 2);
        assert_int_equal(sent->len, 2);
        reel_stack_info_t info;
        reel_stack_info(&r.st, &info);
        assert_string_equal(info.via, "proxy.test:3128");
        assert_true(info.via_open);
        finish(&loop, &r, mp);
        uv_loop_close(&loop);
    }
}

static void refused(const char *answer, const char *why, bool eof) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    rig_t r;
    reel_mempipe_t *mp = start(&loop, &r, NULL);
    reel_buf_t *sent = reel_mempipe_sent(mp);
    static const char want[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    assert_int_equal(sent->len, sizeof want - 1);
    reel_mempipe_feed(mp, answer, strlen(answer));
    if (eof)
        reel_mempipe_feed_eof(mp);
    run(&loop);
    assert_int_equal(r.ready, 0);
    assert_non_null(r.error);
    assert_string_equal(r.error, why);
    assert_int_equal(r.data.len, 0);
    finish(&loop, &r, mp);
    uv_loop_close(&loop);
}

static void test_refusals(void **state) {
    (void)state;
    refused("HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
            "the upstream proxy proxy.test:3128 answered \"HTTP/1.0 407 Proxy Authentication "
            "Required\" to CONNECT example.com:443",
            false);
    refused("HTTP/1.1 502 Bad Gateway\n\nno route", /* bare LF lines */
            "the upstream proxy proxy.test:3128 answered \"HTTP/1.1 502 Bad Gateway\" to CONNECT "
            "example.com:443",
            false);
    refused("SSH-2.0-OpenSSH\r\n\r\n",
            "the upstream proxy proxy.test:3128 answered what is no HTTP status line "
            "(\"SSH-2.0-OpenSSH\") to CONNECT example.com:443",
            false);
    refused("HTTP/1.1 200", /* then gone before the head's end */
            "the upstream proxy proxy.test:3128 closed the connection (a clean close) before it "
            "answered CONNECT example.com:443",
            true);
    /* an answer head that never ends */
    reel_buf_t big;
    reel_buf_init(&big, 0);
    reel_buf_puts(&big, "HTTP/1.1 200 OK\r\n");
    while (big.len <= REEL_CONNECT_HEAD_MAX)
        reel_buf_puts(&big, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    reel_buf_append(&big, "", 1);
    refused((const char *)big.data,
            "the upstream proxy proxy.test:3128 sent an answer head over 16 KiB to CONNECT "
            "example.com:443",
            false);
    reel_buf_free(&big);
}

/* Forwarding (absolute-form requests): no CONNECT; open as soon as the
 * proxy's connection is, bytes passed through as they are both ways (an
 * answer that looks like a refused CONNECT is the response above's), and
 * the info says the proxy and the mode. */
static void test_forward(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    rig_t r;
    memset(&r, 0, sizeof r);
    reel_buf_init(&r.data, 0);
    reel_mempipe_t *mp = reel_mempipe_new(&loop, false, NULL);
    reel_stack_init(&r.st, &events, &r);
    reel_stack_push(&r.st, reel_mempipe_filter(mp), NULL, 0);
    reel_stack_push(&r.st,
                    reel_connect_filter_new("proxy.test:3128", "example.com", 80, "eA==", true),
                    NULL, 0);
    reel_stack_info_t info;
    reel_stack_info(&r.st, &info);
    assert_string_equal(info.via, "proxy.test:3128");
    assert_true(info.via_forward);
    assert_false(info.via_open);
    reel_stack_connect(&r.st);
    run(&loop);
    reel_stack_set_reading(&r.st, true);
    assert_int_equal(r.connected, 1);
    assert_int_equal(r.ready, 1);
    assert_true(reel_stack_open(&r.st));
    reel_buf_t *sent = reel_mempipe_sent(mp);
    assert_int_equal(sent->len, 0); /* nothing of its own */
    static const char req[] = "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
    reel_stack_send(&r.st, req, sizeof req - 1);
    assert_int_equal(sent->len, sizeof req - 1);
    assert_memory_equal(sent->data, req, sizeof req - 1);
    static const char answer[] = "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
    reel_mempipe_feed(mp, answer, sizeof answer - 1);
    run(&loop);
    assert_null(r.error);
    assert_int_equal(r.data.len, sizeof answer - 1);
    assert_memory_equal(r.data.data, answer, sizeof answer - 1);
    reel_stack_info(&r.st, &info);
    assert_true(info.via_open);
    assert_true(info.via_forward);
    finish(&loop, &r, mp);
    uv_loop_close(&loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tunnel_opens_on_2xx),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
