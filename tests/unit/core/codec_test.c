/* Tests for src/core/codec.c: the stream ids each codec gives its events
 * (HTTP/1 pipelined requests 1, 2, 3; a response's interim heads on the
 * stream of its final head; the bytes after an upgrade), the bytes each
 * event covers, and the WebSocket and TCP codecs' messages, with every
 * input fed whole and split at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "core/codec.h"

/* Feeds input in two pieces split at k (each piece copied to its own heap
 * buffer, the unconsumed rest carried over) and writes one line per event:
 * "<type> <stream> <len>". */
static void trace(reel_codec_t *c, const char *in, size_t len, size_t k, reel_buf_t *out) {
    reel_buf_t pend;
    reel_buf_init(&pend, 0);
    static const char *names[] = {"none", "head", "data", "end", "upgrade", "raw", "message"};
    for (int piece = 0; piece < 2; piece++) {
        if (piece == 0)
            reel_buf_append(&pend, in, k);
        else
            reel_buf_append(&pend, in + k, len - k);
        for (;;) {
            size_t used = 0;
            reel_codec_event_t ev;
            reel_rc rc = reel_codec_feed(c, pend.data, pend.len, &used, &ev);
            if (rc == REEL_OK && ev.type != REEL_CODEC_EV_NONE)
                reel_buf_printf(out, "%s %u %zu\n", names[ev.type], ev.stream,
                                ev.type == REEL_CODEC_EV_HEAD ? 0 : ev.len);
            if (rc != REEL_OK && rc != REEL_NEED_MORE) {
                reel_buf_printf(out, "error %u %d\n", ev.stream, ev.error_status);
                reel_buf_free(&pend);
                return;
            }
            reel_buf_consume(&pend, used);
            if (rc == REEL_NEED_MORE)
                break;
        }
    }
    reel_buf_free(&pend);
}

/* Every split gives the same trace, with DATA (and RAW) events merged (a
 * split cuts a body into more events): compared on heads, ends and total
 * body bytes. */
static void check_all_splits(reel_codec_t *(*make)(void), const char *in, size_t len,
                             const char *want) {
    for (size_t k = 0; k <= len; k++) {
        reel_codec_t *c = make();
        reel_buf_t out;
        reel_buf_init(&out, 0);
        trace(c, in, len, k, &out);
        reel_buf_append(&out, "", 1);
        /* merge consecutive data lines of one stream */
        reel_buf_t merged;
        reel_buf_init(&merged, 0);
        unsigned dstream = 0;
        size_t dlen = 0;
        bool indata = false;
        char kind[8] = "data";
        for (char *line = (char *)out.data; *line;) {
            char *nl = strchr(line, '\n');
            *nl = 0;
            unsigned st;
            size_t n;
            char k2[8];
            if (sscanf(line, "%7s %u %zu", k2, &st, &n) == 3 &&
                (strcmp(k2, "data") == 0 || strcmp(k2, "raw") == 0)) {
                if (indata && (st != dstream || strcmp(k2, kind) != 0))
                    reel_buf_printf(&merged, "%s %u %zu\n", kind, dstream, dlen), dlen = 0;
                indata = true;
                dstream = st;
                dlen += n;
                snprintf(kind, sizeof kind, "%s", k2);
            } else {
                if (indata)
                    reel_buf_printf(&merged, "%s %u %zu\n", kind, dstream, dlen);
                indata = false;
                dlen = 0;
                reel_buf_printf(&merged, "%s\n", line);
            }
            line = nl + 1;
        }
        if (indata)
            reel_buf_printf(&merged, "%s %u %zu\n", kind, dstream, dlen);
        reel_buf_append(&merged, "", 1);
        if (strcmp((const char *)merged.data, want) != 0)
            fail_msg("split at %zu:\n%s\nwant:\n%s", k, (const char *)merged.data, want);
        reel_buf_free(&out);
        reel_buf_free(&merged);
        reel_codec_free(c);
    }
}

static reel_codec_t *h1_requests(void) {
    return reel_h1_codec_new(REEL_H1_REQUEST, NULL);
}

static reel_codec_t *h1_responses(void) {
    return reel_h1_codec_new(REEL_H1_RESPONSE, NULL);
}

static void test_h1_pipelined_requests(void **state) {
    (void)state;
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                             "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                             "PUT /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n0\r\n\r\n";
    check_all_splits(h1_requests, in, sizeof in - 1,
                     "head 1 0\nend 1 0\n"
                     "head 2 0\ndata 2 5\nend 2 0\n"
                     "head 3 0\ndata 3 3\nend 3 0\n");
}

static void test_h1_interim_and_upgrade(void **state) {
    (void)state;
    /* a 100 Continue before the answer to request 1, then a 101 for
     * request 2 and bytes of the new protocol */
    static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: "
                             "Upgrade\r\n\r\nRAW";
    check_all_splits(h1_responses, in, sizeof in - 1,
                     "head 1 0\nhead 1 0\ndata 1 2\nend 1 0\n"
                     "head 2 0\nend 2 0\nupgrade 2 0\nraw 2 3\n");
}

static void test_h1_error_names_stream(void **state) {
    (void)state;
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/9.9\r\n\r\n";
    check_all_splits(h1_requests, in, sizeof in - 1, "head 1 0\nend 1 0\nerror 2 400\n");
    reel_codec_t *c = h1_requests();
    assert_non_null(reel_h1_codec_parser(c));
    assert_null(reel_ws_codec_ws(c));
    reel_codec_free(c);
}

static reel_codec_t *ws_from_client(void) {
    reel_ws_opts_t o = {.max_message = 1024};
    return reel_ws_codec_new(REEL_WS_FROM_CLIENT, &o);
}

static void test_ws_messages(void **state) {
    (void)state;
    /* RFC 6455 5.7's masked "Hello", then "Hel" + "lo" in two fragments
     * with a ping between them (reported before the message it cuts) */
    static const char in[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
                             "\x01\x83\x00\x00\x00\x00Hel"
                             "\x89\x80\x00\x00\x00\x00"
                             "\x80\x82\x00\x00\x00\x00lo";
    check_all_splits(ws_from_client, in, sizeof in - 1, "message 0 5\nmessage 0 0\nmessage 0 5\n");
    reel_codec_t *c = ws_from_client();
    assert_non_null(reel_ws_codec_ws(c));
    assert_null(reel_h1_codec_parser(c));
    reel_codec_free(c);
}

static void test_tcp_chunks(void **state) {
    (void)state;
    reel_codec_t *c = reel_tcp_codec_new();
    size_t used = 0;
    reel_codec_event_t ev;
    assert_int_equal(reel_codec_feed(c, (const uint8_t *)"abc", 3, &used, &ev), REEL_OK);
    assert_int_equal(ev.type, REEL_CODEC_EV_MESSAGE);
    assert_int_equal(used, 3);
    assert_int_equal(ev.len, 3);
    assert_int_equal(ev.stream, 0);
    assert_int_equal(reel_codec_feed(c, NULL, 0, &used, &ev), REEL_NEED_MORE);
    assert_int_equal(reel_codec_feed_eof(c, &ev), REEL_OK);
    reel_codec_free(c);
    reel_codec_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h1_pipelined_requests),
        cmocka_unit_test(test_h1_interim_and_upgrade),
        cmocka_unit_test(test_h1_error_names_stream),
        cmocka_unit_test(test_ws_messages),
        cmocka_unit_test(test_tcp_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
