/* Tests for src/core/http1.c: requests and responses of every kind, every
 * framing error with its status and reason, serialization helpers. Every
 * parser input is replayed whole, split at every byte boundary and fed one
 * byte at a time (each piece in its own heap buffer, so a span kept across
 * feeds shows up under ASan), and must give the same event trace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "core/http1.h"

/* ---- the trace of a run ---- */

typedef struct {
    reel_h1_side side;
    const char *expect;  /* response parsers: per response 'G', 'H' (HEAD), 'C' (CONNECT) */
    bool eof;            /* call reel_h1_feed_eof after the input */
    bool refuse_upgrade; /* request parsers: refuse each upgrade and go on */
    bool resume_refused; /* request parsers: go on past each head refused whole */
    const reel_h1_limits_t *lim;
} run_opts_t;

static void fmt_head(reel_buf_t *b, const reel_h1_head_t *h, reel_h1_side side) {
    if (side == REEL_H1_REQUEST)
        reel_buf_printf(b, "HEAD %s %s HTTP/%d.%d form=%d", h->method, h->target, h->version_major,
                        h->version_minor, (int)h->target_form);
    else
        reel_buf_printf(b, "HEAD %d '%s' HTTP/%d.%d", h->status, h->reason, h->version_major,
                        h->version_minor);
    assert_int_equal(strlen(h->method), h->method_len);
    assert_int_equal(strlen(h->target), h->target_len);
    assert_int_equal(strlen(h->reason), h->reason_len);
    for (size_t i = 0; i < h->nheaders; i++) {
        assert_int_equal(strlen(h->headers[i].name), h->headers[i].name_len);
        assert_int_equal(strlen(h->headers[i].value), h->headers[i].value_len);
        reel_buf_printf(b, " [%s: %s]", h->headers[i].name, h->headers[i].value);
    }
    reel_buf_printf(b, " fr=%d cl=%lld%s%s%s%s%s%s%s\n", (int)h->framing,
                    (long long)h->content_length, h->chunked ? " chunked" : "",
                    h->keep_alive ? " ka" : "", h->expect_continue ? " 100c" : "",
                    h->upgrade ? " upgrade" : "", h->is_connect ? " connect" : "",
                    h->is_head ? " head" : "", h->interim ? " interim" : "");
}

typedef struct {
    reel_buf_t log;
    bool in_data; /* last record is BODY/TUNNEL data, merged with the next */
    reel_h1_event_t last_head;
    reel_buf_t head_text;
    bool stopped;
    bool refused; /* the message's head was refused: no HEAD to recheck */
} trace_t;

static void log_event(trace_t *t, const run_opts_t *o, const reel_h1_event_t *ev) {
    bool data = ev->type == REEL_H1_EV_BODY || ev->type == REEL_H1_EV_TUNNEL;
    if (data) {
        assert_true(ev->len > 0);
        if (!t->in_data)
            reel_buf_puts(&t->log, ev->type == REEL_H1_EV_BODY ? "BODY " : "TUNNEL ");
        reel_buf_append(&t->log, ev->data, ev->len);
        t->in_data = true;
        return;
    }
    if (t->in_data)
        reel_buf_puts(&t->log, "\n");
    t->in_data = false;
    switch (ev->type) {
    case REEL_H1_EV_HEAD:
        t->refused = false;
        fmt_head(&t->log, &ev->head, o->side);
        t->last_head = *ev;
        reel_buf_reset(&t->head_text);
        fmt_head(&t->head_text, &ev->head, o->side);
        break;
    case REEL_H1_EV_END: {
        /* the head must still be readable at END */
        if (!t->refused) {
            reel_buf_t again;
            reel_buf_init(&again, 0);
            fmt_head(&again, &t->last_head.head, o->side);
            assert_string_equal((char *)again.data, (char *)t->head_text.data);
            reel_buf_free(&again);
        }
        reel_buf_puts(&t->log, "END");
        for (size_t i = 0; i < ev->ntrailers; i++)
            reel_buf_printf(&t->log, " [%s: %s]", ev->trailers[i].name, ev->trailers[i].value);
        reel_buf_puts(&t->log, "\n");
        break;
    }
    case REEL_H1_EV_UPGRADE:
        reel_buf_puts(&t->log, "UPGRADE\n");
        break;
    default:
        fail_msg("unexpected event type %d", (int)ev->type);
    }
}

static void log_error(trace_t *t, reel_rc rc, const reel_h1_event_t *ev) {
    assert_int_equal(rc, REEL_INVALID);
    if (t->in_data)
        reel_buf_puts(&t->log, "\n");
    t->in_data = false;
    assert_non_null(ev->error_reason);
    reel_buf_printf(&t->log, "ERR %d %s\n", ev->error_status, ev->error_reason);
    t->stopped = true;
}

/* Feeds in[0..len) cut at cuts[0..ncuts) (increasing), each piece copied to
 * its own heap buffer; returns the trace (owned). */
static char *run(const run_opts_t *o, const char *in, size_t len, const size_t *cuts,
                 size_t ncuts) {
    trace_t t;
    memset(&t, 0, sizeof(t));
    reel_buf_init(&t.log, 0);
    reel_buf_init(&t.head_text, 0);
    reel_buf_puts(&t.log, "");
    reel_h1_t *p = reel_h1_new(o->side, o->lim);
    for (const char *e = o->expect; e && *e; e++)
        assert_int_equal(reel_h1_expect_response(p, *e == 'H', *e == 'C'), REEL_OK);

    size_t start = 0;
    for (size_t k = 0; k <= ncuts && !t.stopped; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t n = end - start;
        uint8_t *piece = reel_malloc(n);
        memcpy(piece, in + start, n);
        size_t off = 0;
        for (;;) {
            reel_h1_event_t ev;
            size_t used = 12345;
            reel_rc rc = reel_h1_feed(p, piece + off, n - off, &used, &ev);
            if (rc == REEL_NEED_MORE) {
                assert_int_equal(used, n - off);
                assert_int_equal(ev.type, REEL_H1_EV_NONE);
                break;
            }
            if (rc != REEL_OK) {
                reel_h1_head_t ph;
                bool whole = reel_h1_partial_head(p, &ph);
                if (o->resume_refused && reel_h1_resume_refused(p, &used) == REEL_OK) {
                    assert_true(whole);
                    assert_true(used <= n - off);
                    off += used;
                    if (t.in_data)
                        reel_buf_puts(&t.log, "\n");
                    t.in_data = false;
                    t.refused = true;
                    reel_buf_printf(&t.log, "REFUSED %d %s: %.*s %.*s fields=%zu\n",
                                    ev.error_status, ev.error_reason, (int)ph.method_len, ph.method,
                                    (int)ph.target_len, ph.target, ph.nheaders);
                    continue;
                }
                log_error(&t, rc, &ev);
                break;
            }
            assert_true(used <= n - off);
            off += used;
            log_event(&t, o, &ev);
            if (ev.type == REEL_H1_EV_UPGRADE && o->refuse_upgrade)
                assert_int_equal(reel_h1_upgrade_refused(p), REEL_OK);
        }
        free(piece);
        start = end;
    }
    if (o->eof && !t.stopped) {
        for (int guard = 0; guard < 10; guard++) {
            reel_h1_event_t ev;
            reel_rc rc = reel_h1_feed_eof(p, &ev);
            if (rc != REEL_OK) {
                log_error(&t, rc, &ev);
                break;
            }
            if (ev.type == REEL_H1_EV_NONE) {
                if (t.in_data)
                    reel_buf_puts(&t.log, "\n");
                reel_buf_puts(&t.log, "EOF\n");
                break;
            }
            log_event(&t, o, &ev);
        }
    } else if (t.in_data) {
        reel_buf_puts(&t.log, "\n");
    }
    reel_h1_free(p);
    reel_buf_free(&t.head_text);
    return (char *)t.log.data;
}

/* Runs the input whole, split at every byte boundary and byte by byte;
 * every trace must equal want. */
static void check_n(const run_opts_t *o, const char *in, size_t len, const char *want) {
    char *whole = run(o, in, len, NULL, 0);
    if (strcmp(whole, want) != 0)
        fail_msg("trace:\n%s\nwant:\n%s", whole, want);
    free(whole);
    for (size_t k = 1; k < len; k++) {
        char *got = run(o, in, len, &k, 1);
        if (strcmp(got, want) != 0)
            fail_msg("split at %zu, trace:\n%s\nwant:\n%s", k, got, want);
        free(got);
    }
    size_t *cuts = reel_malloc((len ? len : 1) * sizeof(*cuts));
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    char *got = run(o, in, len, cuts, len ? len - 1 : 0);
    if (strcmp(got, want) != 0)
        fail_msg("byte by byte, trace:\n%s\nwant:\n%s", got, want);
    free(got);
    free(cuts);
}

static void check(const run_opts_t *o, const char *in, const char *want) {
    check_n(o, in, strlen(in), want);
}

static const run_opts_t REQ = {.side = REEL_H1_REQUEST};
static const run_opts_t REQ_EOF = {.side = REEL_H1_REQUEST, .eof = true};
static const run_opts_t RESP = {.side = REEL_H1_RESPONSE};
static const run_opts_t RESP_EOF = {.side = REEL_H1_RESPONSE, .eof = true};

/* ---- requests ---- */

static void test_get(void **state) {
    (void)state;
    check(&REQ_EOF,
          "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t/1  \r\n"
          "X-Empty:\r\n\r\n",
          "HEAD GET /index.html?q=1 HTTP/1.1 form=0 [Host: example.com] [User-Agent: t/1] "
          "[X-Empty: ] fr=0 cl=-1 ka\n"
          "END\n"
          "EOF\n");
}

static void test_post_content_length(void **state) {
    (void)state;
    check(&REQ, "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
          "HEAD POST /form HTTP/1.1 form=0 [Host: h] [Content-Length: 11] fr=1 cl=11 ka\n"
          "BODY hello world\n"
          "END\n");
}

static void test_chunked_trailers(void **state) {
    (void)state;
    check(&REQ,
          "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
          "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: abc\r\nX-Other:  d \r\n\r\n",
          "HEAD POST /up HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] "
          "[Trailer: X-Sum] fr=2 cl=-1 chunked ka\n"
          "BODY hello world\n"
          "END [X-Sum: abc] [X-Other: d]\n");
}

static void test_expect_continue(void **state) {
    (void)state;
    check(&REQ,
          "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
          "HEAD PUT /f HTTP/1.1 form=0 [Host: h] [Expect: 100-Continue] [Content-Length: 3] "
          "fr=1 cl=3 ka 100c\n"
          "BODY abc\n"
          "END\n");
}

static void test_pipelined(void **state) {
    (void)state;
    check(&REQ,
          "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
          "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
          "HEAD /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
          "HEAD GET /a HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n"
          "HEAD POST /b HTTP/1.1 form=0 [Host: h] [Content-Length: 3] fr=1 cl=3 ka\n"
          "BODY xyz\n"
          "END\n"
          "HEAD HEAD /c HTTP/1.1 form=0 [Host: h] [Connection: close] fr=0 cl=-1 head\n"
          "END\n");
}

static void test_http10_request(void **state) {
    (void)state;
    check(&REQ, "GET / HTTP/1.0\r\n\r\n",
          "HEAD GET / HTTP/1.0 form=0 fr=0 cl=-1\n"
          "END\n");
    check(&REQ, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
          "HEAD GET / HTTP/1.0 form=0 [Connection: keep-alive] fr=0 cl=-1 ka\n"
          "END\n");
}

static void test_absolute_form(void **state) {
    (void)state;
    check(&REQ,
          "GET http://example.com:8080/a?b=c HTTP/1.1\r\nHost: example.com:8080\r\n"
          "Proxy-Connection: keep-alive\r\n\r\n",
          "HEAD GET http://example.com:8080/a?b=c HTTP/1.1 form=1 [Host: example.com:8080] "
          "[Proxy-Connection: keep-alive] fr=0 cl=-1 ka\n"
          "END\n");
    check(&REQ, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
          "HEAD OPTIONS * HTTP/1.1 form=3 [Host: h] fr=0 cl=-1 ka\n"
          "END\n");
}

static void test_connect(void **state) {
    (void)state;
    check(&REQ_EOF,
          "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
          "\n \x16\x03\x01 raw\r tls",
          "HEAD CONNECT example.com:443 HTTP/1.1 form=2 [Host: example.com:443] fr=0 cl=-1 ka "
          "upgrade connect\n"
          "END\n"
          "UPGRADE\n"
          "TUNNEL \n \x16\x03\x01 raw\r tls\n"
          "EOF\n");
}

static void test_upgrade_websocket(void **state) {
    (void)state;
    check(&REQ,
          "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
          "\x81\x05hello",
          "HEAD GET /chat HTTP/1.1 form=0 [Host: h] [Upgrade: websocket] [Connection: Upgrade] "
          "[Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==] [Sec-WebSocket-Version: 13] "
          "fr=0 cl=-1 ka upgrade\n"
          "END\n"
          "UPGRADE\n"
          "TUNNEL \x81\x05hello\n");
}

static void test_upgrade_refused(void **state) {
    (void)state;
    run_opts_t o = {.side = REEL_H1_REQUEST, .refuse_upgrade = true};
    check(&o,
          "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
          "GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
          "HEAD GET /chat HTTP/1.1 form=0 [Host: h] [Upgrade: websocket] [Connection: Upgrade] "
          "fr=0 cl=-1 ka upgrade\n"
          "END\n"
          "UPGRADE\n"
          "HEAD GET /next HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n");
}

static void test_request_cut_short(void **state) {
    (void)state;
    check(&REQ_EOF, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
          "HEAD POST / HTTP/1.1 form=0 [Host: h] [Content-Length: 10] fr=1 cl=10 ka\n"
          "BODY abc\n"
          "ERR 400 request cut short\n");
    check(&REQ_EOF, "GET / HTTP/1.1\r\nHo", "ERR 400 request cut short\n");
}

/* ---- responses ---- */

static void test_response_length(void **state) {
    (void)state;
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
          "HEAD 200 'OK' HTTP/1.1 [Content-Length: 5] fr=1 cl=5 ka\n"
          "BODY hello\n"
          "END\n"
          "EOF\n");
}

static void test_response_to_head(void **state) {
    (void)state;
    run_opts_t o = {.side = REEL_H1_RESPONSE, .expect = "HG"};
    check(&o,
          "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
          "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
          "HEAD 200 'OK' HTTP/1.1 [Content-Length: 1000] fr=0 cl=1000 ka head\n"
          "END\n"
          "HEAD 404 'Not Found' HTTP/1.1 [Content-Length: 2] fr=1 cl=2 ka\n"
          "BODY no\n"
          "END\n");
}

static void test_100_continue(void **state) {
    (void)state;
    check(&RESP,
          "HTTP/1.1 100 Continue\r\n\r\n"
          "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
          "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
          "HEAD 100 'Continue' HTTP/1.1 fr=0 cl=-1 ka interim\n"
          "HEAD 103 'Early Hints' HTTP/1.1 [Link: </s.css>] fr=0 cl=-1 ka interim\n"
          "HEAD 201 'Created' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "BODY abc\n"
          "END\n");
}

static void test_204_304(void **state) {
    (void)state;
    check(&RESP,
          "HTTP/1.1 204 No Content\r\n\r\n"
          "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"x\"\r\n\r\n"
          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!",
          "HEAD 204 'No Content' HTTP/1.1 fr=0 cl=-1 ka\n"
          "END\n"
          "HEAD 304 'Not Modified' HTTP/1.1 [Content-Length: 50] [ETag: \"x\"] fr=0 cl=50 ka\n"
          "END\n"
          "HEAD 200 'OK' HTTP/1.1 [Content-Length: 1] fr=1 cl=1 ka\n"
          "BODY !\n"
          "END\n");
}

static void test_close_delimited(void **state) {
    (void)state;
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall the rest\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Content-Type: text/plain] fr=3 cl=-1\n"
          "BODY all the rest\r\n\n"
          "END\n"
          "EOF\n");
    check(&RESP_EOF, "HTTP/1.0 200 OK\r\n\r\nold",
          "HEAD 200 'OK' HTTP/1.0 fr=3 cl=-1\n"
          "BODY old\n"
          "END\n"
          "EOF\n");
    /* empty body, EOF right after the head */
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Connection: close] fr=3 cl=-1\n"
          "END\n"
          "EOF\n");
    /* a response Transfer-Encoding not ending in chunked is read to EOF */
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: gzip] fr=3 cl=-1\n"
          "BODY zz\n"
          "END\n"
          "EOF\n");
}

static void test_response_cut_short(void **state) {
    (void)state;
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
          "HEAD 200 'OK' HTTP/1.1 [Content-Length: 10] fr=1 cl=10 ka\n"
          "BODY hello\n"
          "ERR 502 response cut short\n");
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "BODY hel\n"
          "ERR 502 response cut short\n");
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nContent-Le", "ERR 502 response cut short\n");
    /* the end right after a head: llhttp, still paused at the head, took
     * the end for a whole message (an HTTP/2 origin's RST_STREAM right
     * after its HEADERS, core/h2up.c, was a response complete and empty) */
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "ERR 502 response cut short\n");
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "BODY hello\n"
          "ERR 502 response cut short\n");
    check(&RESP_EOF, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Content-Length: 10] fr=1 cl=10 ka\n"
          "ERR 502 response cut short\n");
}

static void test_connect_response(void **state) {
    (void)state;
    run_opts_t o = {.side = REEL_H1_RESPONSE, .expect = "C"};
    check(&o, "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03server",
          "HEAD 200 'Connection established' HTTP/1.1 fr=0 cl=-1 upgrade connect\n"
          "END\n"
          "UPGRADE\n"
          "TUNNEL \x16\x03\x03server\n");
    /* refused CONNECT: an ordinary response */
    check(&o, "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno",
          "HEAD 407 'Proxy Auth' HTTP/1.1 [Content-Length: 2] fr=1 cl=2 ka connect\n"
          "BODY no\n"
          "END\n");
}

static void test_switching_protocols(void **state) {
    (void)state;
    check(&RESP,
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
          "\x81\x02hi",
          "HEAD 101 'Switching Protocols' HTTP/1.1 [Upgrade: websocket] [Connection: Upgrade] "
          "fr=0 cl=-1 upgrade\n"
          "END\n"
          "UPGRADE\n"
          "TUNNEL \x81\x02hi\n");
}

/* ---- errors ---- */

static void test_smuggling_requests(void **state) {
    (void)state;
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
          "ERR 400 duplicate Content-Length\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
          "ERR 400 duplicate Content-Length\n");
    check(&REQ,
          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
          "ERR 400 both Transfer-Encoding and Content-Length\n");
    check(&REQ,
          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
          "ERR 400 both Transfer-Encoding and Content-Length\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
          "ERR 400 Transfer-Encoding not ending in chunked\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
          "ERR 400 invalid Transfer-Encoding\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
          "ERR 501 unsupported Transfer-Encoding\n");
    check(&REQ,
          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: chunked\r\n\r\n",
          "ERR 400 invalid Transfer-Encoding\n");
    check(&REQ, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
          "ERR 400 Transfer-Encoding in HTTP/1.0 message\n");
    check(&REQ, "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n  folded\r\n\r\n",
          "ERR 400 obs-fold in header\n");
    check(&REQ, "GET / HTTP/1.1\r\nHost : h\r\n\r\n", "ERR 400 whitespace before colon\n");
    check(&REQ, "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", "ERR 400 whitespace before colon\n");
    check(&REQ, "GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", "ERR 400 invalid character in header name\n");
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    check_n(&REQ, nul, sizeof(nul) - 1, "ERR 400 invalid character in header value\n");
    check(&REQ, "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", "ERR 400 bare CR\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
          "ERR 400 Content-Length too large\n");
    check(&RESP, "HTTP/1.1 200 OK\r100 Continue\r\n\r\n", "ERR 502 bare CR\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nLast-Mod Tue\r\n\r\n",
          "ERR 502 header line without a colon\n");
    check(&REQ, "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nb\r\n\r\n", "ERR 400 bare LF\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
          "HEAD POST / HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] fr=2 cl=-1 "
          "chunked ka\n"
          "ERR 400 invalid chunk size\n");
    check(&REQ,
          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
          "10000000000000000\r\n",
          "HEAD POST / HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] fr=2 cl=-1 "
          "chunked ka\n"
          "ERR 400 chunk size too large\n");
    /* an empty Transfer-Encoding field or element: a next hop taking the
     * last field alone would see no coding */
    check(&REQ,
          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
          "ERR 400 empty Transfer-Encoding field or element\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n",
          "ERR 400 empty Transfer-Encoding field or element\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
          "ERR 502 empty Transfer-Encoding field or element\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
          "ERR 400 Transfer-Encoding not ending in chunked\n");
    /* obs-fold after an empty value, whitespace before the first field */
    check(&REQ, "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n b\r\n\r\n", "ERR 400 obs-fold in header\n");
    check(&REQ, "GET / HTTP/1.1\r\n Host: h\r\n\r\n", "ERR 400 obs-fold in header\n");
    check(&REQ, "GET / HTTP/1.1\nHost: h\n\n", "ERR 400 bare LF\n");
    /* nothing but stray line ends may follow a message without keep-alive */
    check(&REQ,
          "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n\r\n"
          "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
          "HEAD GET / HTTP/1.1 form=0 [Host: h] [Connection: close] fr=0 cl=-1\n"
          "END\n"
          "ERR 400 data after Connection: close\n");
    /* stray line ends between messages are fine */
    check(&REQ,
          "\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab\r\n"
          "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
          "HEAD POST / HTTP/1.1 form=0 [Host: h] [Content-Length: 2] fr=1 cl=2 ka\n"
          "BODY ab\n"
          "END\n"
          "HEAD GET / HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
          "ERR 400 invalid Content-Length\n");
    check(&REQ, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n",
          "ERR 400 invalid Content-Length\n");
}

/* llhttp's loose mode skips the two bytes after chunk data and the byte
 * after a chunk-size CR without looking at them; reel checks them itself,
 * before llhttp consumes them, so no bad byte is ever passed on. */
static void test_chunk_framing_is_strict(void **state) {
    (void)state;
    static const char head[] =
        "HEAD POST / HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] fr=2 cl=-1 "
        "chunked ka\n";
    static const char req[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    char in[256], want[512];
    snprintf(in, sizeof in, "%s5\r\nhelloXX0\r\n\r\n", req);
    snprintf(want, sizeof want, "%sBODY hello\nERR 400 missing CRLF after chunk data\n", head);
    check(&REQ, in, want);
    snprintf(in, sizeof in, "%s5\r\nhello\rX0\r\n\r\n", req);
    check(&REQ, in, want);
    snprintf(in, sizeof in, "%s5\r\nhello\n\r\n0\r\n\r\n", req);
    check(&REQ, in, want);
    snprintf(in, sizeof in, "%s5\rXhello\r\n0\r\n\r\n", req);
    snprintf(want, sizeof want, "%sERR 400 bare CR\n", head);
    check(&REQ, in, want);
    snprintf(in, sizeof in, "%s5;a=b\r\rhello\r\n0\r\n\r\n", req);
    check(&REQ, in, want);
    snprintf(in, sizeof in, "%s3\r\nabc\r\n0\rX\r\n", req);
    snprintf(want, sizeof want, "%sBODY abc\nERR 400 bare CR\n", head);
    check(&REQ, in, want);
    /* a bad response is a 502 */
    check(&RESP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokAB0\r\n\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "BODY ok\n"
          "ERR 502 missing CRLF after chunk data\n");
    /* good framing with extensions and many chunks still parses */
    snprintf(in, sizeof in, "%s1;x=\"a b\"\r\na\r\n2\r\nbc\r\n0\r\nT: v\r\n\r\n", req);
    snprintf(want, sizeof want, "%sBODY abc\nEND [T: v]\n", head);
    check(&REQ, in, want);

    /* what the caller is told it consumed stops before the bad bytes: a
     * proxy forwarding consumed bytes never passes them on */
    snprintf(in, sizeof in, "%s5\r\nhelloXX0\r\n\r\n", req);
    reel_h1_t *p = reel_h1_new(REEL_H1_REQUEST, NULL);
    size_t off = 0, len = strlen(in);
    reel_rc rc;
    for (;;) {
        reel_h1_event_t ev;
        size_t used = 0;
        rc = reel_h1_feed(p, (const uint8_t *)in + off, len - off, &used, &ev);
        if (rc != REEL_OK)
            break;
        off += used;
    }
    assert_int_equal(rc, REEL_INVALID);
    assert_int_equal(off, strstr(in, "XX") - in);
    reel_h1_free(p);
}

/* RFC 9112 7.1.1: any number of extensions, BWS around ";" and "=",
 * quoted values; llhttp 8.1 alone refused all but a single bare one. What
 * is not in the grammar stays an error, and the reason names the part of
 * the line that is wrong. */
static void test_chunk_extensions(void **state) {
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char head[] =
        "HEAD POST / HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] fr=2 cl=-1 "
        "chunked ka\n";
    static const char *const good[] = {
        "5;a=1;b=2\r\n",
        "5;a=1;name=\"q v\"\r\n",
        "5 ;a\r\n",
        "5; a\r\n",
        "5\t; a \t= \"x;y\\\"z\" ; b ;c=d\r\n",
        "0005;a=\"\"\r\n",
        "0000000000000005\r\n", /* 16 digits: as many as a 64-bit number has */
        "5;a=\"\xe9\"\r\n",
    };
    char in[256], want[512];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(in, sizeof in, "%s%shello\r\n0;last=\"1\" ; x\r\nT: v\r\n\r\n", req, good[i]);
        snprintf(want, sizeof want, "%sBODY hello\nEND [T: v]\n", head);
        check(&REQ, in, want);
    }
    static const struct {
        const char *line, *why;
    } bad[] = {
        {"5 \r\n", "invalid chunk extension"},
        {"5;\r\n", "invalid chunk extension"},
        {"5;a=\r\n", "invalid chunk extension"},
        {"5;a b\r\n", "invalid chunk extension"},
        {"5;a=b c\r\n", "invalid chunk extension"},
        {"5;a=\"b\r\n", "invalid chunk extension"},
        {"5;a=\"b\"c\r\n", "invalid chunk extension"},
        {"5;a=\"\x01\"\r\n", "invalid chunk extension"},
        {"5;a(b\r\n", "invalid chunk extension"},
        {";a\r\n", "invalid chunk size"},
        {"5x\r\n", "invalid chunk size"},
        {"0x5\r\n", "invalid chunk size"},
        {"+5\r\n", "invalid chunk size"},
        {"\r\n", "invalid chunk size"},
        {"5\n", "bare LF"},
        {"5;a=b\n", "bare LF"},
        {"5;a=\"b\n\"\r\n", "bare LF"},
        {"5;a=b\rx\n", "bare CR"},
        {"10000000000000000\r\n", "chunk size too large"},
        {"8000000000000000\r\n", "chunk size too large"}, /* past INT64_MAX */
        /* a 17th digit, even a leading zero: a next hop reading 16 could
         * take the size of its first 16 ("0...0" here, the last chunk) */
        {"00000000000000005\r\n", "chunk size longer than 16 hex digits"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(in, sizeof in, "%s%shello\r\n0\r\n\r\n", req, bad[i].line);
        snprintf(want, sizeof want, "%sERR 400 %s\n", head, bad[i].why);
        check(&REQ, in, want);
    }
    /* the largest size is one (INT64_MAX, as for Content-Length), the next
     * is not */
    snprintf(in, sizeof in, "%s7fffffffffffffff;a=b\r\nab", req);
    snprintf(want, sizeof want, "%sBODY ab\n", head);
    check(&REQ, in, want);
    /* a response is the same, refused with a 502 */
    check(&RESP,
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=1;b=2\r\nhello\r\n0\r\n\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "BODY hello\nEND\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;=1\r\nhello\r\n0\r\n\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "ERR 502 invalid chunk extension\n");
    /* a chunk-size line is capped like a head */
    static const reel_h1_limits_t small = {.max_head_size = 128};
    run_opts_t o = REQ;
    o.lim = &small;
    char longl[512];
    snprintf(longl, sizeof longl, "%s5;a=\"%0150d\"\r\nhello\r\n", req, 0);
    snprintf(want, sizeof want, "%sERR 400 chunk-size line too long\n", head);
    check(&o, longl, want);
}

/* Whitespace in a field name is refused whatever follows; the reason says
 * what the line is (RFC 9110 5.1, RFC 9112 5): whitespace before the
 * colon, whitespace inside the name, or no colon at all. It used to be
 * "whitespace before colon" for all three. */
static void test_field_name_reasons(void **state) {
    (void)state;
    static const struct {
        const char *line, *why;
    } cases[] = {
        {"Host : h", "whitespace before colon"},
        {"Host \t : h", "whitespace before colon"},
        {"Bad Name: x", "invalid character in header name"},
        {"A B C : x", "invalid character in header name"},
        {"Bad Name", "header line without a colon"},
        {"Bad Name ", "header line without a colon"},
        {"NoColon", "header line without a colon"},
        {"X-A(b): x", "invalid character in header name"},
    };
    char in[256], want[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(in, sizeof in, "GET / HTTP/1.1\r\nX-First: 1\r\n%s\r\nHost: h\r\n\r\n",
                 cases[i].line);
        snprintf(want, sizeof want, "ERR 400 %s\n", cases[i].why);
        check(&REQ, in, want);
        snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\n%s\r\nContent-Length: 0\r\n\r\n",
                 cases[i].line);
        snprintf(want, sizeof want, "ERR 502 %s\n", cases[i].why);
        check(&RESP, in, want);
        /* in a trailer section too */
        snprintf(in, sizeof in,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n%s\r\n\r\n",
                 cases[i].line);
        snprintf(want, sizeof want,
                 "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
                 "ERR 502 %s\n",
                 cases[i].why);
        check(&RESP, in, want);
    }
}

static void test_request_line_errors(void **state) {
    (void)state;
    check(&REQ, "GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n",
          "ERR 400 invalid request target\n");
    check(&REQ, "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n",
          "ERR 400 CONNECT target not in authority-form\n");
    check(&REQ, "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
          "ERR 400 asterisk-form target without OPTIONS\n");
    check(&REQ, "CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n",
          "ERR 400 invalid CONNECT target\n");
    check(&REQ, "GET / HTTP/1.1\r\n\r\n", "ERR 400 missing Host header\n");
    check(&REQ, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "ERR 400 duplicate Host header\n");
    check(&REQ, "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", "ERR 400 invalid method\n");
    check(&REQ, "\x16\x03\x01\x02\x00", "ERR 400 invalid method\n");
    check(&REQ, "GET / HTTP/2.0\r\nHost: h\r\n\r\n", "ERR 505 unsupported HTTP version\n");
    check(&REQ, "GET / RTSP/1.0\r\nHost: h\r\n\r\n", "ERR 400 invalid HTTP version\n");
    check(&REQ, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "ERR 505 HTTP/2 connection preface\n");
    check(&REQ, "GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", "ERR 400 invalid request target\n");
    check(&REQ, "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", "ERR 400 invalid HTTP version\n");
}

/* A head refused for its Host (missing, twice) is whole and its framing
 * sound: the parser goes on past it, its body and the requests after it
 * (reel records them as not answered); every other error stays fatal. */
static const run_opts_t REQ_RESUME = {.side = REEL_H1_REQUEST, .resume_refused = true};

static void test_refused_head_resumes(void **state) {
    (void)state;
    check(&REQ_RESUME,
          "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
          "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
          "POST /c HTTP/1.1\r\nHost: x\r\nHost: y\r\nTransfer-Encoding: chunked\r\n\r\n"
          "2\r\nde\r\n0\r\n\r\n"
          "GET /d HTTP/1.1\r\n\r\n",
          "REFUSED 400 missing Host header: POST /a fields=1\n"
          "BODY abc\n"
          "END\n"
          "HEAD GET /b HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n"
          "REFUSED 400 duplicate Host header: POST /c fields=3\n"
          "BODY de\n"
          "END\n"
          "REFUSED 400 missing Host header: GET /d fields=0\n"
          "END\n");
    /* an error of framing is not resumed, even with a Host missing too */
    check(&REQ_RESUME, "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
          "ERR 400 duplicate Content-Length\n");
    check(&REQ_RESUME, "GET / HTTP/1.1\r\nHost : h\r\n\r\n", "ERR 400 whitespace before colon\n");
    /* a refused head whose next error is its own */
    check(&REQ_RESUME, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
          "REFUSED 400 missing Host header: POST / fields=1\n"
          "ERR 400 invalid chunk size\n");
}

static void test_extension_methods(void **state) {
    (void)state;
    /* any token is a method (RFC 9110 9.1): llhttp's list or not, any
     * case, also after empty lines, pipelined, split anywhere (check) */
    check(&REQ, "QUERY /q HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab",
          "HEAD QUERY /q HTTP/1.1 form=0 [Host: h] [Content-Length: 2] fr=1 cl=2 ka\n"
          "BODY ab\n"
          "END\n");
    check(&REQ,
          "\r\n\nget / HTTP/1.1\r\nHost: h\r\n\r\n"
          "X-MY_METHOD.2 /b HTTP/1.1\r\nHost: h\r\n\r\n"
          "PROPFIND /c HTTP/1.1\r\nHost: h\r\n\r\n",
          "HEAD get / HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n"
          "HEAD X-MY_METHOD.2 /b HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n"
          "HEAD PROPFIND /c HTTP/1.1 form=0 [Host: h] fr=0 cl=-1 ka\n"
          "END\n");
    /* an extension method has no special framing: a CONNECT-like or a
     * HEAD-like name is just a name */
    check(&REQ, "CONNECTX h:1 HTTP/1.1\r\nHost: h\r\n\r\n", "ERR 400 invalid request target\n");
    /* a method of 64 bytes (REEL_H1_EXT_METHOD_MAX); what is not a token, a
     * longer method, a bare CR */
    check(&REQ, "G{T / HTTP/1.1\r\nHost: h\r\n\r\n", "ERR 400 invalid method\n");
    check(&REQ,
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\nHost: "
          "h\r\n\r\n",
          "HEAD AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1 form=0 "
          "[Host: h] fr=0 cl=-1 ka\n"
          "END\n");
    check(&REQ,
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n"
          "Host: h\r\n\r\n",
          "ERR 400 invalid method\n");
    check(&REQ, "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", "ERR 400 bare CR\n");
    check(&REQ_EOF, "QUER", "ERR 400 request cut short\n");
    check(&REQ_EOF, "\r\n", "EOF\n");
}

static void test_limits(void **state) {
    (void)state;
    reel_h1_limits_t lim = {.max_head_size = 64, .max_headers = 3};
    run_opts_t req = {.side = REEL_H1_REQUEST, .lim = &lim};
    run_opts_t resp = {.side = REEL_H1_RESPONSE, .lim = &lim};
    /* exactly 64 bytes passes */
    const char *fits = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\nX: 012345\r\n\r\n";
    assert_int_equal(strlen(fits), 64);
    check(&req, fits,
          "HEAD GET /aaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1 form=0 [Host: h] [X: 012345] "
          "fr=0 cl=-1 ka\n"
          "END\n");
    check(&req, "GET /aaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\nX: 0123456\r\n\r\n",
          "ERR 431 header section too large\n");
    check(&req, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
          "ERR 431 too many header fields\n");
    check(&resp, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
          "ERR 502 too many header fields\n");
    check(&resp,
          "HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
          "ERR 502 header section too large\n");
    /* trailers have their own cap */
    check(&req,
          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
          "1\r\nx\r\n0\r\nT: "
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
          "HEAD POST / HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] fr=2 cl=-1 "
          "chunked ka\n"
          "BODY x\n"
          "ERR 431 trailer section too large\n");
    /* the body is not a head: a long body passes */
    check(&req,
          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 70\r\n\r\n"
          "0123456789012345678901234567890123456789012345678901234567890123456789",
          "HEAD POST / HTTP/1.1 form=0 [Host: h] [Content-Length: 70] fr=1 cl=70 ka\n"
          "BODY 0123456789012345678901234567890123456789012345678901234567890123456789\n"
          "END\n");
}

/* What reel_h1_partial_head reports of a head that failed, fed whole and
 * split at every byte. */
static char *partial_after(const char *in, size_t cut) {
    reel_h1_limits_t lim = {.max_head_size = 64, .max_headers = 3};
    reel_h1_t *p = reel_h1_new(REEL_H1_REQUEST, &lim);
    size_t n = strlen(in), off = 0;
    reel_rc rc = REEL_NEED_MORE;
    size_t parts[2] = {cut ? cut : n, n};
    for (int k = 0; k < 2 && rc != REEL_INVALID; k++) {
        while (off < parts[k] && rc != REEL_INVALID) {
            size_t consumed = 0;
            reel_h1_event_t ev;
            rc = reel_h1_feed(p, (const uint8_t *)in + off, parts[k] - off, &consumed, &ev);
            off += consumed;
            if (rc == REEL_NEED_MORE)
                break;
        }
    }
    assert_int_equal(rc, REEL_INVALID);
    reel_h1_head_t h;
    reel_buf_t out;
    reel_buf_init(&out, 0);
    if (reel_h1_partial_head(p, &h)) {
        reel_buf_printf(&out, "%.*s|%.*s|%d.%d", (int)h.method_len, h.method ? h.method : "",
                        (int)h.target_len, h.target ? h.target : "", h.version_major,
                        h.version_minor);
        for (size_t i = 0; i < h.nheaders; i++)
            reel_buf_printf(&out, " [%.*s: %.*s]", (int)h.headers[i].name_len,
                            h.headers[i].name, (int)h.headers[i].value_len, h.headers[i].value);
    } else {
        reel_buf_puts(&out, "none");
    }
    reel_h1_free(p);
    reel_buf_append(&out, "", 1);
    return (char *)out.data;
}

static void check_partial(const char *in, const char *want) {
    for (size_t cut = 0; cut < strlen(in); cut++) {
        char *got = partial_after(in, cut);
        if (strcmp(got, want) != 0)
            fail_msg("cut at %zu: got '%s', want '%s'", cut, got, want);
        free(got);
    }
}

static void test_partial_head(void **state) {
    (void)state;
    /* fields cut by the size cap: the complete ones are kept */
    check_partial("GET /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-Big: "
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
                  "GET|/a|1.1 [Host: h] [X-A: 1] [X-Big: aaaaaaaaaaaaaaaaaaaaaaa]");
    /* too many fields */
    check_partial("POST /p HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
                  "POST|/p|1.0 [A: 1] [B: 2] [C: 3]");
    /* a request line longer than the cap: the target read so far, and no
     * version (not read: 0.0, not a guessed 1.1) */
    check_partial("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
                  "HTTP/1.1\r\n\r\n",
                  "GET|/"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa|0.0");
    check_partial("GET /x\r\n\r\n", "GET|/x|0.0");
    /* the value llhttp refused is kept as far as the input read so far
     * holds its line, not cut where llhttp stopped (12abc used to be
     * recorded as 12, which looks valid); fed whole here */
    const char *const refused[][2] = {
        {"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 12abc\r\n\r\n",
         "POST|/c|1.1 [Host: h] [Content-Length: 12abc]"},
        {"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n",
         "POST|/c|1.1 [Host: h] [Content-Length: -5]"},
        {"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
         "POST|/t|1.1 [Host: h] [Transfer-Encoding: chunked, gzip]"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *got = partial_after(refused[i][0], 0);
        assert_string_equal(got, refused[i][1]);
        free(got);
    }
    /* llhttp refuses Transfer-Encoding after Content-Length before its value */
    check_partial("POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n",
                  "POST|/s|1.1 [Host: h] [Content-Length: 1] [Transfer-Encoding: ]");
}

/* Where a head that stopped coming stopped (reel_h1_partial_cut): inside
 * which element, or at a line's end; each prefix fed in one piece and
 * byte by byte. */
static void check_cut(const char *in, const char *want_where, const char *want_name,
                      const char *want_method) {
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        reel_h1_t *p = reel_h1_new(REEL_H1_REQUEST, NULL);
        size_t n = strlen(in);
        for (size_t off = 0; off < n;) {
            size_t len = bytewise ? 1 : n - off, consumed = 0;
            reel_h1_event_t ev;
            assert_int_equal(reel_h1_feed(p, (const uint8_t *)in + off, len, &consumed, &ev),
                             REEL_NEED_MORE);
            off += consumed;
        }
        const char *name = NULL;
        size_t name_len = 0;
        const char *where = reel_h1_partial_cut(p, &name, &name_len);
        if (want_where == NULL) {
            if (where != NULL)
                fail_msg("'%s': got '%s', want none", in, where);
        } else {
            if (where == NULL || strcmp(where, want_where) != 0)
                fail_msg("'%s': got '%s', want '%s'", in, where ? where : "(none)", want_where);
        }
        if (want_name) {
            assert_non_null(name);
            assert_int_equal(name_len, strlen(want_name));
            assert_memory_equal(name, want_name, name_len);
        } else {
            assert_null(name);
        }
        reel_h1_head_t h;
        assert_true(reel_h1_partial_head(p, &h));
        assert_int_equal(h.method_len, strlen(want_method));
        assert_memory_equal(h.method, want_method, h.method_len);
        reel_h1_free(p);
    }
}

static void test_partial_cut(void **state) {
    (void)state;
    check_cut("GE", "in its method", NULL, "GE");
    check_cut("PURG", "in its method", NULL, "PURG");
    check_cut("\r\nGET", "in its method", NULL, "GET");
    check_cut("GET ", "in its request target", NULL, "GET");
    check_cut("GET /a", "in its request target", NULL, "GET");
    check_cut("GET /a HTTP/1.", "in its request line", NULL, "GET");
    check_cut("GET /a HTTP/1.1\r", "in its request line", NULL, "GET");
    check_cut("GET /a HTTP/1.1\r\n", NULL, NULL, "GET");
    check_cut("GET /a HTTP/1.1\r\nHo", "in the name of a field", NULL, "GET");
    check_cut("GET /a HTTP/1.1\r\nHost:", "in the value of a field", "Host", "GET");
    check_cut("GET /a HTTP/1.1\r\nHost: abc", "in the value of a field", "Host", "GET");
    check_cut("GET /a HTTP/1.1\r\nHost: abc\r\nX-Y: 1", "in the value of a field", "X-Y", "GET");
    check_cut("GET /a HTTP/1.1\r\nHost: abc\r\n", NULL, NULL, "GET");
    check_cut("GET /a HTTP/1.1\r\nHost: abc\r\nX-Y: 1\r\n", NULL, NULL, "GET");
}

/* A target llhttp refuses stops it before the target is stored and before
 * a field is read: the record gets the target as sent and the fields in
 * the input read so far, as for a refused field value. Fed whole, the
 * whole head; split at every byte, the target as far as it was read (the
 * part after the offending byte may be in a read not yet made) and the
 * complete fields of the first part, a prefix of them. */
static void test_partial_head_bad_target(void **state) {
    (void)state;
    const char *const cases[][3] = {
        /* input, whole, the target as sent */
        {"GET foo HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n", "GET|foo|1.1 [Host: a] [X-Y: z]", "foo"},
        {"GET /a\x1b"
         "b HTTP/1.1\r\nHost: a\r\n\r\n",
         "GET|/a\x1b"
         "b|1.1 [Host: a]",
         "/a\x1b"
         "b"},
        {"GET http://h/\x7f HTTP/1.0\r\nHost: h\r\n\r\n", "GET|http://h/\x7f|1.0 [Host: h]",
         "http://h/\x7f"},
        /* a method llhttp does not know (fed as GET) */
        {"QUERY /q\x01 HTTP/1.1\r\nHost: a\r\n\r\n", "QUERY|/q\x01|1.1 [Host: a]", "/q\x01"},
        /* the fields as the parser would take them: up to the first line
         * that is not one, at most max_headers (3 here) */
        {"GET foo HTTP/1.1\r\nHost: a\r\nBad Name: x\r\nC: d\r\n\r\n", "GET|foo|1.1 [Host: a]",
         "foo"},
        {"GET foo HTTP/1.1\r\nA: 1\r\nB:\r\nC:  3 \r\nD: 4\r\n\r\n",
         "GET|foo|1.1 [A: 1] [B: ] [C: 3]", "foo"},
        {"GET foo HTTP/1.1\r\nA: \x01\r\nB: 2\r\n\r\n", "GET|foo|1.1", "foo"},
        /* no version after the target: no fields either */
        {"GET foo\r\nHost: a\r\n\r\n", "GET|foo|0.0", "foo"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *in = cases[i][0];
        char *got = partial_after(in, 0);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("case %zu whole: got '%s', want '%s'", i, got, cases[i][1]);
        free(got);
        const char *method_end = strchr(cases[i][1], '|');
        size_t mlen = (size_t)(method_end - cases[i][1]);
        const char *target = cases[i][2];
        for (size_t cut = 1; cut < strlen(in); cut++) {
            got = partial_after(in, cut);
            /* METHOD|TARGET|... : the method, a target the sent one
             * begins with (all of it unless the cut came first), and a
             * prefix of the whole's fields */
            char *t = got + mlen + 1, *bar = strchr(t, '|');
            size_t tlen = bar ? (size_t)(bar - t) : 0;
            size_t sent_until = cut > mlen + 1 ? cut - mlen - 1 : 0;
            size_t want_tlen = strlen(target) < sent_until ? strlen(target) : sent_until;
            if (strncmp(got, cases[i][1], mlen + 1) != 0 || bar == NULL ||
                strncmp(t, target, tlen) != 0 || tlen < want_tlen)
                fail_msg("case %zu cut at %zu: got '%s'", i, cut, got);
            const char *fields = strchr(bar + 1, ' '), *wf = strchr(cases[i][1] + mlen + 1, ' ');
            if (fields && (wf == NULL || strncmp(fields, wf, strlen(fields)) != 0))
                fail_msg("case %zu cut at %zu: got '%s', not a prefix of '%s'", i, cut, got,
                         cases[i][1]);
            free(got);
        }
    }
}

static void test_default_head_limit(void **state) {
    (void)state;
    /* a 70 KiB head against the default 64 KiB cap; whole and bytewise only */
    size_t n = 70 * 1024;
    char *in = reel_malloc(n + 1);
    const char *start = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ";
    memset(in, 'a', n);
    memcpy(in, start, strlen(start));
    in[n] = 0;
    char *got = run(&REQ, in, n, NULL, 0);
    assert_string_equal(got, "ERR 431 header section too large\n");
    free(got);
    size_t *cuts = reel_malloc(n * sizeof(*cuts));
    for (size_t k = 1; k < n; k++)
        cuts[k - 1] = k;
    got = run(&REQ, in, n, cuts, n - 1);
    assert_string_equal(got, "ERR 431 header section too large\n");
    free(got);
    free(cuts);
    free(in);
}

static void test_response_errors(void **state) {
    (void)state;
    check(&RESP, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
          "ERR 502 duplicate Content-Length\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
          "ERR 502 both Transfer-Encoding and Content-Length\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "ERR 502 obs-fold in header\n");
    check(&RESP, "HTTP/1.1 2000 OK\r\n\r\n", "ERR 502 invalid status code\n");
    check(&RESP, "RTSP/1.0 200 OK\r\n\r\n", "ERR 502 invalid HTTP version\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n!extra",
          "HEAD 200 'OK' HTTP/1.1 [Content-Length: 1] [Connection: close] fr=1 cl=1\n"
          "BODY !\n"
          "END\n"
          "ERR 502 data after Connection: close\n");
    check(&RESP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\n",
          "HEAD 200 'OK' HTTP/1.1 [Transfer-Encoding: chunked] fr=2 cl=-1 chunked ka\n"
          "ERR 502 invalid chunk size\n");
}

static void test_errors_are_sticky(void **state) {
    (void)state;
    reel_h1_t *p = reel_h1_new(REEL_H1_REQUEST, NULL);
    const char *bad = "GET / HTTP/1.1\r\nHost : h\r\n\r\n";
    reel_h1_event_t ev;
    size_t used;
    assert_int_equal(reel_h1_feed(p, (const uint8_t *)bad, strlen(bad), &used, &ev), REEL_INVALID);
    assert_int_equal(reel_h1_feed(p, (const uint8_t *)"GET", 3, &used, &ev), REEL_INVALID);
    assert_string_equal(ev.error_reason, "whitespace before colon");
    assert_int_equal(reel_h1_feed_eof(p, &ev), REEL_INVALID);
    assert_int_equal(ev.error_status, 400);
    assert_int_equal(reel_h1_expect_response(p, false, false), REEL_INVALID);
    assert_int_equal(reel_h1_upgrade_refused(p), REEL_INVALID);
    assert_int_equal(reel_h1_resume_refused(p, &used), REEL_INVALID); /* not a Host's */
    assert_int_equal(used, 0);
    reel_h1_free(p);
    reel_h1_free(NULL);
}

/* ---- serialization ---- */

static void test_write_heads(void **state) {
    (void)state;
    reel_h1_header_t hs[] = {
        {"Host", 4, "example.com", 11},
        {NULL, 0, NULL, 0}, /* skipped */
        {"Accept", 6, "*/*", 3},
    };
    reel_h1_head_t h = {.method = "GET",
                        .method_len = 3,
                        .target = "/a?b",
                        .target_len = 4,
                        .version_major = 1,
                        .version_minor = 1,
                        .headers = hs,
                        .nheaders = 3};
    reel_buf_t out;
    reel_buf_init(&out, 0);
    assert_int_equal(reel_h1_write_request_head(&out, &h), REEL_OK);
    assert_string_equal((char *)out.data,
                        "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");

    /* round trip through the parser */
    char *got = run(&REQ, (char *)out.data, out.len, NULL, 0);
    assert_string_equal(got, "HEAD GET /a?b HTTP/1.1 form=0 [Host: example.com] [Accept: */*] "
                             "fr=0 cl=-1 ka\nEND\n");
    free(got);

    /* injection attempts leave out unchanged */
    size_t before = out.len;
    reel_h1_header_t evil[] = {{"X", 1, "a\r\nInjected: 1", 15}};
    h.headers = evil;
    h.nheaders = 1;
    assert_int_equal(reel_h1_write_request_head(&out, &h), REEL_INVALID);
    reel_h1_header_t evil_name[] = {{"X Y", 3, "a", 1}};
    h.headers = evil_name;
    assert_int_equal(reel_h1_write_request_head(&out, &h), REEL_INVALID);
    h.headers = NULL;
    h.nheaders = 0;
    h.target = "/a b";
    assert_int_equal(reel_h1_write_request_head(&out, &h), REEL_INVALID);
    h.target = "/ab";
    h.target_len = 3;
    h.method = "G T";
    assert_int_equal(reel_h1_write_request_head(&out, &h), REEL_INVALID);
    assert_int_equal(out.len, before);

    reel_buf_reset(&out);
    reel_h1_head_t r = {.status = 404,
                        .reason = "Not Found",
                        .reason_len = 9,
                        .version_major = 1,
                        .version_minor = 1,
                        .headers = hs,
                        .nheaders = 1};
    assert_int_equal(reel_h1_write_response_head(&out, &r), REEL_OK);
    assert_string_equal((char *)out.data, "HTTP/1.1 404 Not Found\r\nHost: example.com\r\n\r\n");
    reel_buf_reset(&out);
    r.reason = NULL;
    r.nheaders = 0;
    assert_int_equal(reel_h1_write_response_head(&out, &r), REEL_OK);
    assert_string_equal((char *)out.data, "HTTP/1.1 404 \r\n\r\n");
    r.status = 42;
    assert_int_equal(reel_h1_write_response_head(&out, &r), REEL_INVALID);
    r.status = 200;
    r.reason = "OK\r\nX: y";
    r.reason_len = 8;
    assert_int_equal(reel_h1_write_response_head(&out, &r), REEL_INVALID);

    /* a capped buffer gives REEL_LIMIT and stays as it was */
    reel_buf_t small;
    reel_buf_init(&small, 10);
    h.method = "GET";
    assert_int_equal(reel_h1_write_request_head(&small, &h), REEL_LIMIT);
    assert_int_equal(small.len, 0);
    reel_buf_free(&small);
    reel_buf_free(&out);
}

static void test_hop_by_hop(void **state) {
    (void)state;
    const char *names[] = {"Connection",
                           "keep-alive",
                           "Proxy-Connection",
                           "Proxy-Authenticate",
                           "PROXY-AUTHORIZATION",
                           "TE",
                           "Trailer",
                           "Transfer-Encoding",
                           "Upgrade"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_true(reel_h1_is_hop_by_hop(names[i], strlen(names[i]), NULL, 0));
    assert_false(reel_h1_is_hop_by_hop("Host", 4, NULL, 0));
    assert_false(reel_h1_is_hop_by_hop("Tea", 3, NULL, 0));
    const char *conn = "close, X-Private ,, x-other";
    assert_true(reel_h1_is_hop_by_hop("x-private", 9, conn, strlen(conn)));
    assert_true(reel_h1_is_hop_by_hop("X-Other", 7, conn, strlen(conn)));
    assert_false(reel_h1_is_hop_by_hop("X-Priv", 6, conn, strlen(conn)));
    assert_false(reel_h1_is_hop_by_hop("Content-Type", 12, conn, strlen(conn)));

    reel_h1_header_t hs[] = {
        {"Connection", 10, "keep-alive", 10},
        {"Connection", 10, "X-A", 3},
        {"X-A", 3, "1", 1},
    };
    assert_true(reel_h1_is_hop_by_hop_in("x-a", 3, hs, 3));
    assert_false(reel_h1_is_hop_by_hop_in("x-b", 3, hs, 3));
    assert_ptr_equal(reel_h1_find_header(hs, 3, "x-A"), &hs[2]);
    assert_null(reel_h1_find_header(hs, 3, "Host"));
}

static void test_chunk_encoder(void **state) {
    (void)state;
    char b[REEL_H1_CHUNK_HEADER_MAX];
    assert_int_equal(reel_h1_chunk_header(0, b), 0);
    assert_int_equal(reel_h1_chunk_header(1, b), 3);
    assert_string_equal(b, "1\r\n");
    assert_int_equal(reel_h1_chunk_header(0x1a2b, b), 6);
    assert_string_equal(b, "1a2b\r\n");
    assert_int_equal(reel_h1_chunk_header(SIZE_MAX, b), 18);
    assert_string_equal(b, "ffffffffffffffff\r\n");

    /* encode, then parse back */
    reel_buf_t out;
    reel_buf_init(&out, 0);
    reel_buf_puts(&out, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    const char *parts[] = {"hello", " ", "chunked world"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = reel_h1_chunk_header(strlen(parts[i]), b);
        reel_buf_append(&out, b, n);
        reel_buf_puts(&out, parts[i]);
        reel_buf_puts(&out, REEL_H1_CHUNK_END);
    }
    reel_h1_header_t tr[] = {{"X-Sum", 5, "42", 2}};
    assert_int_equal(reel_h1_write_last_chunk(&out, tr, 1), REEL_OK);
    check_n(&REQ, (char *)out.data, out.len,
            "HEAD POST / HTTP/1.1 form=0 [Host: h] [Transfer-Encoding: chunked] fr=2 cl=-1 "
            "chunked ka\n"
            "BODY hello chunked world\n"
            "END [X-Sum: 42]\n");
    reel_buf_reset(&out);
    assert_int_equal(reel_h1_write_last_chunk(&out, NULL, 0), REEL_OK);
    assert_string_equal((char *)out.data, REEL_H1_LAST_CHUNK);
    reel_buf_free(&out);
}

static void test_expect_fifo(void **state) {
    (void)state;
    reel_h1_t *p = reel_h1_new(REEL_H1_RESPONSE, NULL);
    for (int i = 0; i < 64; i++)
        assert_int_equal(reel_h1_expect_response(p, false, false), REEL_OK);
    assert_int_equal(reel_h1_expect_response(p, true, false), REEL_LIMIT);
    reel_h1_free(p);
    p = reel_h1_new(REEL_H1_REQUEST, NULL);
    assert_int_equal(reel_h1_expect_response(p, true, false), REEL_INVALID);
    reel_h1_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_http10_request),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_upgrade_websocket),
        cmocka_unit_test(test_upgrade_refused),
        cmocka_unit_test(test_request_cut_short),
        cmocka_unit_test(test_response_length),
        cmocka_unit_test(test_response_to_head),
        cmocka_unit_test(test_100_continue),
        cmocka_unit_test(test_204_304),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_response_cut_short),
        cmocka_unit_test(test_connect_response),
        cmocka_unit_test(test_switching_protocols),
        cmocka_unit_test(test_smuggling_requests),
        cmocka_unit_test(test_chunk_framing_is_strict),
        cmocka_unit_test(test_chunk_extensions),
        cmocka_unit_test(test_field_name_reasons),
        cmocka_unit_test(test_request_line_errors),
        cmocka_unit_test(test_refused_head_resumes),
        cmocka_unit_test(test_extension_methods),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_partial_head),
        cmocka_unit_test(test_partial_cut),
        cmocka_unit_test(test_partial_head_bad_target),
        cmocka_unit_test(test_default_head_limit),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_errors_are_sticky),
        cmocka_unit_test(test_write_heads),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_chunk_encoder),
        cmocka_unit_test(test_expect_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
