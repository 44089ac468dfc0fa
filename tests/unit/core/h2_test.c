/* Tests for src/core/h2.c: an h2 client codec and an h2 server codec
 * talking to each other in memory. Requests and responses with bodies and
 * trailers, interim responses, translation of HTTP/1 heads (names
 * lowercased, connection-specific fields dropped, :authority from the
 * host), end-to-end flow control (nothing more arrives until the receiver
 * consumes), RST_STREAM and GOAWAY both ways, and the protections: a
 * header list over the limit resets only its stream, rapid resets get
 * a GOAWAY said to be for that, a bad preface is an error. What reel's own
 * client would never send, written as raw frames: malformed requests are
 * reset and reported as reel's resets with the rule broken and the head
 * as far as it came; a body longer or shorter than its content-length
 * (which nghttp2 resets without a callback) likewise, split at every
 * byte; a WebSocket extended CONNECT with END_STREAM is reset as
 * malformed; a frame nghttp2 answers with GOAWAY (a WINDOW_UPDATE of 0 on
 * a stream) is reported as that, not as a RST_STREAM; streams beyond
 * max_concurrent_streams are refused by reel with the heads they carried,
 * and a stream after reel's GOAWAY (which nghttp2 ignores) is reported as
 * refused. The client's first flight is also fed to the server split at
 * every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "base/mem.h"
#include "core/h2.h"

typedef struct {
    reel_codec_t *c;
    reel_h2_t *h;
    reel_buf_t trace;   /* one line per event */
    reel_buf_t body[8]; /* DATA by stream id (odd ids 1..15) */
    bool consume;       /* consume DATA as it arrives */
    reel_rc last_rc;
    char last_reason[256]; /* a copy: an event's reason lives until the next feed */
    bool last_local;       /* the last RESET or GOAWAY was reel's own */
    bool last_goaway;      /* the last RESET was answered with GOAWAY */
    bool last_after_goaway; /* the last RESET: a stream after reel's GOAWAY */
    uint32_t last_stream;   /* ... and that GOAWAY's last stream id */
    size_t reset_unsent; /* the last RESET's len */
} side_t;

static void side_init(side_t *s, reel_h2_role role, const reel_h2_opts_t *o) {
    memset(s, 0, sizeof *s);
    s->c = reel_h2_codec_new(role, o);
    s->h = reel_h2_codec_h2(s->c);
    assert_non_null(s->h);
    reel_buf_init(&s->trace, 0);
    for (int i = 0; i < 8; i++)
        reel_buf_init(&s->body[i], 0);
    s->consume = true;
    s->last_rc = REEL_OK;
}

static void side_free(side_t *s) {
    reel_codec_free(s->c);
    reel_buf_free(&s->trace);
    for (int i = 0; i < 8; i++)
        reel_buf_free(&s->body[i]);
}

static const char *trace(side_t *s) {
    reel_buf_append(&s->trace, "", 1);
    s->trace.len--;
    return (const char *)s->trace.data;
}

static void note_reason(side_t *s, const char *why) {
    snprintf(s->last_reason, sizeof s->last_reason, "%s", why ? why : "");
}

static void note_event(side_t *s, const reel_codec_event_t *ev) {
    switch (ev->type) {
    case REEL_CODEC_EV_HEAD: {
        const reel_msg_head_t *h = &ev->head;
        if (h->status)
            reel_buf_printf(&s->trace, "head %u %u", ev->stream, h->status);
        else
            reel_buf_printf(&s->trace, "head %u %s %s %s:%u %s", ev->stream, h->method, h->scheme,
                            h->host, h->port, h->path);
        for (size_t i = 0; i < h->nfields; i++)
            reel_buf_printf(&s->trace, " %.*s=%.*s", (int)h->fields[i].name_len, h->fields[i].name,
                            (int)h->fields[i].value_len, h->fields[i].value);
        reel_buf_puts(&s->trace, "\n");
        break;
    }
    case REEL_CODEC_EV_DATA:
        reel_buf_append(&s->body[(ev->stream / 2) % 8], ev->data, ev->len);
        if (s->consume)
            reel_h2_consume(s->h, ev->stream, ev->len);
        break;
    case REEL_CODEC_EV_END:
        reel_buf_printf(&s->trace, "end %u", ev->stream);
        for (size_t i = 0; i < ev->ntrailers; i++)
            reel_buf_printf(&s->trace, " %.*s=%.*s", (int)ev->trailers[i].name_len,
                            ev->trailers[i].name, (int)ev->trailers[i].value_len,
                            ev->trailers[i].value);
        reel_buf_puts(&s->trace, "\n");
        break;
    case REEL_CODEC_EV_RESET:
        reel_buf_printf(&s->trace, "reset %u %u\n", ev->stream, ev->error_code);
        note_reason(s, ev->error_reason);
        s->last_local = ev->local;
        s->last_goaway = ev->goaway;
        s->last_after_goaway = ev->after_goaway;
        s->last_stream = ev->last_stream;
        s->reset_unsent = ev->len;
        if (ev->head.version) /* a refused request's head, as far as it came */
            reel_buf_printf(&s->trace, "refused %u %s %s %s:%u %s %zu\n", ev->stream,
                            ev->head.method, ev->head.scheme, ev->head.host, ev->head.port,
                            ev->head.path, ev->head.nfields);
        break;
    case REEL_CODEC_EV_GOAWAY:
        reel_buf_printf(&s->trace, "goaway %u %u\n", ev->last_stream, ev->error_code);
        note_reason(s, ev->error_reason);
        s->last_local = ev->local;
        break;
    default:
        reel_buf_printf(&s->trace, "other %d\n", ev->type);
    }
}

/* Gives s the bytes, reporting every event. */
static void feed(side_t *s, const uint8_t *p, size_t n) {
    size_t off = 0;
    for (;;) {
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(s->c, p + off, n - off, &used, &ev);
        off += used;
        if (rc == REEL_NEED_MORE)
            return;
        if (rc != REEL_OK) {
            s->last_rc = rc;
            note_reason(s, ev.error_reason);
            return;
        }
        note_event(s, &ev);
    }
}

/* Moves frames both ways until neither side has anything to send. */
static void pump(side_t *a, side_t *b) {
    for (int round = 0; round < 64; round++) {
        reel_buf_t out;
        reel_buf_init(&out, 0);
        assert_int_equal(reel_h2_take_output(a->h, &out), REEL_OK);
        size_t moved = out.len;
        feed(b, out.data, out.len);
        reel_buf_reset(&out);
        assert_int_equal(reel_h2_take_output(b->h, &out), REEL_OK);
        moved += out.len;
        feed(a, out.data, out.len);
        reel_buf_free(&out);
        if (moved == 0)
            return;
    }
}

static const reel_field_t REQ_FIELDS[] = {
    {"User-Agent", 10, "t", 1},
    {"Connection", 10, "keep-alive", 10},
    {"Keep-Alive", 10, "timeout=5", 9},
    {"Host", 4, "origin.test", 11},
    {"TE", 2, "gzip", 4},
    {"X-Many", 6, "a", 1},
    {"Transfer-Encoding", 17, "chunked", 7},
    {"x-many", 6, "b", 1},
};

static reel_msg_head_t req_head(const char *method, const char *path) {
    reel_msg_head_t h = {.method = method,
                         .scheme = "https",
                         .host = "origin.test",
                         .port = 443,
                         .path = path,
                         .version = "HTTP/1.1",
                         .fields = REQ_FIELDS,
                         .nfields = sizeof REQ_FIELDS / sizeof *REQ_FIELDS};
    return h;
}

static void test_exchange_with_trailers(void **state) {
    (void)state;
    side_t cl, sv;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    side_init(&sv, REEL_H2_SERVER, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint32_t id = 0;
    reel_msg_head_t rq = req_head("POST", "/upload?x=1");
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, false, &id, &err), REEL_OK);
    assert_int_equal(id, 1);
    assert_int_equal(reel_h2_submit_data(cl.h, id, "hello ", 6, false), REEL_OK);
    assert_int_equal(reel_h2_submit_data(cl.h, id, "world", 5, true), REEL_OK);
    pump(&cl, &sv);
    /* names lowercased; Connection, Keep-Alive, Host, TE: gzip and
     * Transfer-Encoding are not HTTP/2's */
    assert_string_equal(trace(&sv), "head 1 POST https origin.test:443 /upload?x=1 user-agent=t "
                                    "x-many=a x-many=b\nend 1\n");
    assert_int_equal(sv.body[0].len, 11);
    assert_memory_equal(sv.body[0].data, "hello world", 11);
    /* an interim response, the final one, a body and trailers */
    reel_field_t hints[] = {{"link", 4, "</a.css>; rel=preload", 21}};
    reel_msg_head_t early = {.status = 103, .fields = hints, .nfields = 1};
    assert_int_equal(reel_h2_submit_response(sv.h, 1, &early, false, &err), REEL_OK);
    reel_field_t rf[] = {{"Content-Type", 12, "text/plain", 10}};
    reel_msg_head_t rs = {.status = 200, .fields = rf, .nfields = 1};
    assert_int_equal(reel_h2_submit_response(sv.h, 1, &rs, false, &err), REEL_OK);
    assert_int_equal(reel_h2_submit_data(sv.h, 1, "ok", 2, false), REEL_OK);
    reel_field_t tr[] = {{"grpc-status", 11, "0", 1}};
    assert_int_equal(reel_h2_submit_trailers(sv.h, 1, tr, 1, &err), REEL_OK);
    pump(&cl, &sv);
    assert_string_equal(trace(&cl), "head 1 103 link=</a.css>; rel=preload\n"
                                    "head 1 200 content-type=text/plain\n"
                                    "end 1 grpc-status=0\n");
    assert_memory_equal(cl.body[0].data, "ok", 2);
    assert_int_equal(reel_h2_memory(cl.h), 0);
    side_free(&cl);
    side_free(&sv);
}

/* The client's first flight (preface, SETTINGS, HEADERS, DATA) split at
 * every byte gives the server the same events. */
static void test_every_split(void **state) {
    (void)state;
    side_t cl;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint32_t id = 0;
    reel_msg_head_t rq = req_head("PUT", "/p");
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, false, &id, &err), REEL_OK);
    assert_int_equal(reel_h2_submit_data(cl.h, id, "0123456789", 10, true), REEL_OK);
    reel_buf_t flight;
    reel_buf_init(&flight, 0);
    assert_int_equal(reel_h2_take_output(cl.h, &flight), REEL_OK);
    assert_true(flight.len > REEL_H2_PREFACE_LEN);
    assert_memory_equal(flight.data, REEL_H2_PREFACE, REEL_H2_PREFACE_LEN);
    const char *want = NULL;
    reel_buf_t first;
    reel_buf_init(&first, 0);
    for (size_t k = 0; k <= flight.len; k++) {
        side_t sv;
        side_init(&sv, REEL_H2_SERVER, NULL);
        uint8_t *a = reel_malloc(k ? k : 1), *b = reel_malloc(flight.len - k + 1);
        memcpy(a, flight.data, k);
        memcpy(b, flight.data + k, flight.len - k);
        feed(&sv, a, k);
        feed(&sv, b, flight.len - k);
        free(a);
        free(b);
        assert_int_equal(sv.last_rc, REEL_OK);
        if (want == NULL) {
            reel_buf_puts(&first, trace(&sv));
            reel_buf_append(&first, "", 1);
            want = (const char *)first.data;
            assert_string_equal(want, "head 1 PUT https origin.test:443 /p user-agent=t "
                                      "x-many=a x-many=b\nend 1\n");
        } else {
            assert_string_equal(trace(&sv), want);
        }
        assert_int_equal(sv.body[0].len, 10);
        side_free(&sv);
    }
    reel_buf_free(&first);
    reel_buf_free(&flight);
    side_free(&cl);
}

/* Nothing past the receive window arrives until the receiver consumes;
 * another stream is not held up by the stalled one. */
static void test_flow_control(void **state) {
    (void)state;
    reel_h2_opts_t o = {.stream_window = 65535, .conn_window = 1u << 20};
    side_t cl, sv;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    side_init(&sv, REEL_H2_SERVER, &o);
    sv.consume = false;
    reel_err_t err;
    reel_err_clear(&err);
    uint32_t a = 0, b = 0;
    reel_msg_head_t rq = req_head("POST", "/a");
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, false, &a, &err), REEL_OK);
    size_t big = 300 * 1024;
    uint8_t *blob = reel_malloc(big);
    memset(blob, 'x', big);
    assert_int_equal(reel_h2_submit_data(cl.h, a, blob, big, true), REEL_OK);
    pump(&cl, &sv);
    size_t got = sv.body[0].len;
    assert_true(got <= 65535);
    assert_true(got > 0);
    assert_true(reel_h2_stream_queued(cl.h, a) >= big - 65535);
    /* a second stream still gets through */
    reel_msg_head_t rq2 = req_head("POST", "/b");
    assert_int_equal(reel_h2_submit_request(cl.h, &rq2, false, &b, &err), REEL_OK);
    assert_int_equal(reel_h2_submit_data(cl.h, b, "small", 5, true), REEL_OK);
    pump(&cl, &sv);
    assert_int_equal(sv.body[1].len, 5);
    assert_int_equal(sv.body[0].len, got); /* still stalled */
    /* consuming what arrived lets the rest come */
    sv.consume = true;
    reel_h2_consume(sv.h, a, got);
    for (int i = 0; i < 20 && sv.body[0].len < big; i++)
        pump(&cl, &sv);
    assert_int_equal(sv.body[0].len, big);
    assert_int_equal(reel_h2_stream_queued(cl.h, a), 0);
    free(blob);
    side_free(&cl);
    side_free(&sv);
}

/* A RESET from the peer says how much of the stream's submitted DATA had
 * not gone out (what the front records as never sent to its client). */
static void test_reset_reports_unsent(void **state) {
    (void)state;
    reel_h2_opts_t o = {.stream_window = 65535, .conn_window = 1u << 20};
    side_t cl, sv;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    side_init(&sv, REEL_H2_SERVER, &o);
    sv.consume = false;
    reel_err_t err;
    reel_err_clear(&err);
    uint32_t a = 0;
    reel_msg_head_t rq = req_head("POST", "/a");
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, false, &a, &err), REEL_OK);
    size_t big = 200 * 1024;
    uint8_t *blob = reel_malloc(big);
    memset(blob, 'x', big);
    assert_int_equal(reel_h2_submit_data(cl.h, a, blob, big, true), REEL_OK);
    pump(&cl, &sv);
    size_t unsent = reel_h2_stream_queued(cl.h, a);
    assert_int_equal(unsent, big - sv.body[0].len);
    assert_true(unsent > 0);
    reel_h2_reset(sv.h, a, REEL_H2_CANCEL);
    pump(&cl, &sv);
    assert_non_null(strstr(trace(&cl), "reset 1 8\n"));
    assert_int_equal(cl.reset_unsent, unsent);
    assert_int_equal(reel_h2_stream_queued(cl.h, a), 0); /* gone with the stream */
    free(blob);
    side_free(&cl);
    side_free(&sv);
}

static void test_reset_and_goaway(void **state) {
    (void)state;
    side_t cl, sv;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    side_init(&sv, REEL_H2_SERVER, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    uint32_t a = 0, b = 0;
    reel_msg_head_t rq = req_head("GET", "/a");
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, false, &a, &err), REEL_OK);
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, true, &b, &err), REEL_OK);
    pump(&cl, &sv);
    reel_h2_reset(cl.h, a, REEL_H2_CANCEL);
    pump(&cl, &sv);
    assert_non_null(strstr(trace(&sv), "reset 1 8\n"));
    reel_msg_head_t rs = {.status = 200};
    assert_int_equal(reel_h2_submit_response(sv.h, b, &rs, false, &err), REEL_OK);
    pump(&cl, &sv);
    reel_h2_goaway(sv.h, REEL_H2_NO_ERROR);
    pump(&cl, &sv);
    assert_non_null(strstr(trace(&cl), "head 3 200\n"));
    assert_non_null(strstr(trace(&cl), "goaway 3 0\n"));
    side_free(&cl);
    side_free(&sv);
}

/* A header list over the limit resets its stream and only it. */
static void test_header_list_limit(void **state) {
    (void)state;
    reel_h2_opts_t o = {.max_header_list = 4096};
    side_t cl, sv;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    side_init(&sv, REEL_H2_SERVER, &o);
    reel_err_t err;
    reel_err_clear(&err);
    char *big = reel_malloc(6000);
    memset(big, 'v', 6000);
    reel_field_t f[] = {{"x-big", 5, big, 6000}};
    reel_msg_head_t rq = {.method = "GET",
                          .scheme = "https",
                          .host = "origin.test",
                          .port = 443,
                          .path = "/big",
                          .fields = f,
                          .nfields = 1};
    uint32_t a = 0, b = 0;
    assert_int_equal(reel_h2_submit_request(cl.h, &rq, true, &a, &err), REEL_OK);
    reel_msg_head_t ok = req_head("GET", "/ok");
    assert_int_equal(reel_h2_submit_request(cl.h, &ok, true, &b, &err), REEL_OK);
    pump(&cl, &sv);
    const char *t = trace(&sv);
    assert_non_null(strstr(t, "reset 1 2\n"));
    assert_non_null(strstr(t, "head 3 GET https origin.test:443 /ok"));
    assert_null(strstr(t, "head 1 "));
    /* what was read of it comes with the reset, for the record */
    assert_non_null(strstr(t, "refused 1 GET https origin.test:443 /big 0\n"));
    assert_true(sv.last_local);
    assert_non_null(strstr(sv.last_reason, "max_header_list"));
    free(big);
    side_free(&cl);
    side_free(&sv);
}

/* Streams opened and reset in a burst (CVE-2023-44487): GOAWAY, reported
 * with its reason. */
static void test_rapid_reset(void **state) {
    (void)state;
    reel_h2_opts_t o = {.max_resets_per_sec = 20};
    side_t cl, sv;
    side_init(&cl, REEL_H2_CLIENT, NULL);
    side_init(&sv, REEL_H2_SERVER, &o);
    reel_err_t err;
    reel_err_clear(&err);
    for (int i = 0; i < 200; i++) {
        uint32_t id = 0;
        reel_msg_head_t rq = req_head("GET", "/r");
        if (reel_h2_submit_request(cl.h, &rq, true, &id, &err) != REEL_OK)
            break;
        pump(&cl, &sv); /* the HEADERS go out */
        reel_h2_reset(cl.h, id, REEL_H2_CANCEL);
        pump(&cl, &sv);
    }
    pump(&cl, &sv);
    /* nghttp2 sends GOAWAY INTERNAL_ERROR (2) once its bucket is dry */
    assert_non_null(strstr(trace(&sv), "goaway "));
    assert_non_null(strstr(trace(&sv), " 2\n"));
    assert_non_null(strstr(sv.last_reason, "rapid reset"));
    assert_non_null(strstr(trace(&cl), "goaway "));      /* the client got it */
    assert_true(strstr(trace(&sv), "head 81 ") == NULL); /* far fewer than 200 got in */
    side_free(&cl);
    side_free(&sv);
}

/* ---- what a client may send and reel's client would not: raw frames ---- */

static void frame(reel_buf_t *b, uint8_t type, uint8_t flags, uint32_t sid, const void *p,
                  size_t n) {
    uint8_t hd[9] = {
        (uint8_t)(n >> 16),   (uint8_t)(n >> 8),    (uint8_t)n,          type,        flags,
        (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    reel_buf_append(b, hd, sizeof hd);
    reel_buf_append(b, p, n);
}

/* A HEADERS frame of nv (name, value pairs, NULL-terminated) on stream
 * sid, its block from deflater d; flags: END_HEADERS and more. */
static void raw_headers(reel_buf_t *b, nghttp2_hd_deflater *d, uint32_t sid, const char *const *nv,
                        uint8_t flags) {
    nghttp2_nv v[16];
    size_t n = 0;
    for (; nv[2 * n]; n++)
        v[n] = (nghttp2_nv){(uint8_t *)nv[2 * n], (uint8_t *)nv[2 * n + 1], strlen(nv[2 * n]),
                            strlen(nv[2 * n + 1]), NGHTTP2_NV_FLAG_NONE};
    uint8_t blk[1024];
    ssize_t len = nghttp2_hd_deflate_hd(d, blk, sizeof blk, v, n);
    assert_true(len > 0);
    frame(b, NGHTTP2_HEADERS, (uint8_t)(NGHTTP2_FLAG_END_HEADERS | flags), sid, blk, (size_t)len);
}

/* The preface, empty SETTINGS and a HEADERS frame of nv on stream 1. */
static void raw_request(reel_buf_t *b, const char *const *nv, uint8_t flags) {
    reel_buf_puts(b, REEL_H2_PREFACE);
    frame(b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    nghttp2_hd_deflater *d;
    assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
    raw_headers(b, d, 1, nv, flags);
    nghttp2_hd_deflate_del(d);
}

/* What the server has to send contains the frame header of type on sid. */
static bool sends_frame(side_t *sv, uint8_t type, uint32_t sid) {
    reel_buf_t out;
    reel_buf_init(&out, 0);
    assert_int_equal(reel_h2_take_output(sv->h, &out), REEL_OK);
    bool found = false;
    for (size_t at = 0; at + 9 <= out.len;) {
        const uint8_t *p = out.data + at;
        size_t n = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
        uint32_t id = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
        if (p[3] == type && id == sid)
            found = true;
        at += 9 + n;
    }
    reel_buf_free(&out);
    return found;
}

/* A request nghttp2 refuses (RFC 9113 8.2, 8.3) is a RESET that reel sent,
 * saying which rule broke, with the head as far as it was read. */
static void test_malformed_request_refused(void **state) {
    (void)state;
    static const char *const no_path[] = {":method",    "GET",    ":scheme", "http",
                                          ":authority", "a.test", NULL};
    static const char *const upper[] = {":method", "GET",   ":scheme", "http", ":authority",
                                        "a.test",  ":path", "/u",      "x-ok", "1",
                                        "X-Upper", "1",     NULL};
    static const char *const conn[] = {":method",    "GET",    ":scheme", "http",
                                       ":authority", "a.test", ":path",   "/c",
                                       "connection", "close",  NULL};
    static const char *const host[] = {":method",    "GET",    ":scheme", "http",
                                       ":authority", "a.test", ":path",   "/h",
                                       "host",       "b.test", NULL};
    struct {
        const char *const *nv;
        const char *refused, *why;
    } cases[] = {
        {host, "refused 1 GET http a.test:80 /h 1\n",
         "its host field \"b.test\" names another server than its :authority \"a.test\" (RFC "
         "9113 8.3.1)"},
        {no_path, "refused 1 GET http a.test:80  0\n", "the request has no :path"},
        {upper, "refused 1 GET http a.test:80 /u 1\n",
         "an upper-case field name (RFC 9113 8.2.1): \"X-Upper\": \"1\""},
        {conn, "refused 1 GET http a.test:80 /c 0\n",
         "a connection-specific field (RFC 9113 8.2.2): \"connection\": \"close\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        side_t sv;
        side_init(&sv, REEL_H2_SERVER, NULL);
        reel_buf_t in;
        reel_buf_init(&in, 0);
        raw_request(&in, cases[i].nv, NGHTTP2_FLAG_END_STREAM);
        feed(&sv, in.data, in.len);
        assert_non_null(strstr(trace(&sv), "reset 1 1\n"));
        assert_non_null(strstr(trace(&sv), cases[i].refused));
        assert_null(strstr(trace(&sv), "head 1"));
        assert_true(sv.last_local);
        assert_false(sv.last_goaway);
        assert_non_null(strstr(sv.last_reason, cases[i].why));
        /* and the RST_STREAM goes out */
        reel_buf_t out;
        reel_buf_init(&out, 0);
        assert_int_equal(reel_h2_take_output(sv.h, &out), REEL_OK);
        static const uint8_t rst[] = {0, 0, 4, NGHTTP2_RST_STREAM, 0, 0, 0, 0, 1, 0, 0, 0, 1};
        assert_non_null(memmem(out.data, out.len, rst, sizeof rst));
        reel_buf_free(&out);
        reel_buf_free(&in);
        side_free(&sv);
    }
}

/* Host in place of :authority (RFC 9113 8.3.1) gives the request's host
 * and port, and stays the field it came as (split in place, its ':' was
 * a NUL in the record) */
static void test_host_without_authority(void **state) {
    (void)state;
    static const char *const nv[] = {":method", "GET",  ":scheme",     "http", ":path",
                                     "/h",      "host", "a.test:8080", NULL};
    /* and beside an :authority that names the same server */
    static const char *const both[] = {":method",    "GET",        ":scheme", "https",
                                       ":authority", "A.test",     ":path",   "/b",
                                       "host",       "a.test:443", NULL};
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, NULL);
    reel_buf_t in;
    reel_buf_init(&in, 0);
    raw_request(&in, nv, NGHTTP2_FLAG_END_STREAM);
    feed(&sv, in.data, in.len);
    assert_non_null(strstr(trace(&sv), "head 1 GET http a.test:8080 /h host=a.test:8080\n"));
    reel_buf_free(&in);
    side_free(&sv);
    side_init(&sv, REEL_H2_SERVER, NULL);
    reel_buf_init(&in, 0);
    raw_request(&in, both, NGHTTP2_FLAG_END_STREAM);
    feed(&sv, in.data, in.len);
    assert_non_null(strstr(trace(&sv), "head 1 GET https A.test:443 /b host=a.test:443\n"));
    reel_buf_free(&in);
    side_free(&sv);
}

/* A body that contradicts its content-length: nghttp2 resets the stream
 * without a callback; the codec tells, with the lengths, whether the
 * DATA comes at once or split at any byte. */
static void test_body_against_content_length(void **state) {
    (void)state;
    static const char *const post10[] = {":method",        "POST",   ":scheme", "http",
                                         ":authority",     "a.test", ":path",   "/p",
                                         "content-length", "10",     NULL};
    static const char *const post2[] = {":method",        "POST",   ":scheme", "http",
                                        ":authority",     "a.test", ":path",   "/p",
                                        "content-length", "2",      NULL};
    struct {
        const char *const *nv;
        const char *why;
    } cases[] = {
        {post10, "the request body ended after 3 bytes, short of its content-length (10 bytes)"},
        {post2, "the request body is longer than its content-length (2 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reel_buf_t in;
        reel_buf_init(&in, 0);
        raw_request(&in, cases[i].nv, 0);
        frame(&in, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "abc", 3);
        for (size_t cut = 0; cut <= in.len; cut++) {
            side_t sv;
            side_init(&sv, REEL_H2_SERVER, NULL);
            feed(&sv, in.data, cut);
            feed(&sv, in.data + cut, in.len - cut);
            const char *t = trace(&sv);
            assert_non_null(strstr(t, "head 1 POST http a.test:80 /p content-length="));
            assert_non_null(strstr(t, "reset 1 1\n"));
            assert_null(strstr(t, "end 1"));
            assert_null(strstr(t, "refused")); /* its head was reported */
            assert_true(sv.last_local);
            assert_non_null(strstr(sv.last_reason, cases[i].why));
            assert_null(strstr(strstr(t, "reset") + 1, "reset")); /* one */
            side_free(&sv);
        }
        reel_buf_free(&in);
    }
    /* the right length is no error */
    reel_buf_t in;
    reel_buf_init(&in, 0);
    static const char *const post3[] = {":method",        "POST",   ":scheme", "http",
                                        ":authority",     "a.test", ":path",   "/p",
                                        "content-length", "3",      NULL};
    raw_request(&in, post3, 0);
    frame(&in, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "abc", 3);
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, NULL);
    feed(&sv, in.data, in.len);
    assert_string_equal(trace(&sv), "head 1 POST http a.test:80 /p content-length=3\nend 1\n");
    side_free(&sv);
    reel_buf_free(&in);
}

/* A WebSocket extended CONNECT with END_STREAM on its HEADERS: the client
 * could never send a frame; malformed, reset, reported with its head. */
static void test_websocket_connect_ended_at_once(void **state) {
    (void)state;
    static const char *const ws[] = {":method",    "CONNECT", ":protocol", "websocket",
                                     ":scheme",    "http",    ":path",     "/chat",
                                     ":authority", "a.test",  NULL};
    reel_h2_opts_t o = {.connect_protocol = true};
    reel_buf_t in;
    reel_buf_init(&in, 0);
    raw_request(&in, ws, NGHTTP2_FLAG_END_STREAM);
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, &o);
    feed(&sv, in.data, in.len);
    assert_string_equal(trace(&sv), "reset 1 1\nrefused 1 CONNECT websocket a.test:80 /chat 0\n");
    assert_true(sv.last_local);
    assert_false(sv.last_goaway);
    assert_non_null(strstr(sv.last_reason, "END_STREAM on its HEADERS"));
    assert_true(sends_frame(&sv, NGHTTP2_RST_STREAM, 1));
    side_free(&sv);
    /* without END_STREAM it is a WebSocket */
    reel_buf_reset(&in);
    raw_request(&in, ws, 0);
    side_init(&sv, REEL_H2_SERVER, &o);
    feed(&sv, in.data, in.len);
    assert_string_equal(trace(&sv), "head 1 CONNECT websocket a.test:80 /chat\n");
    side_free(&sv);
    reel_buf_free(&in);
}

/* A frame on a stream that nghttp2 answers with GOAWAY, not RST_STREAM (a
 * WINDOW_UPDATE of 0, a stream error by RFC 9113 6.9): the stream's RESET
 * says so, and the GOAWAY follows once sent. */
static void test_stream_frame_closing_the_connection(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                                      "a.test",  ":path", "/w",      NULL};
    reel_buf_t in;
    reel_buf_init(&in, 0);
    raw_request(&in, get, 0);
    static const uint8_t zero[4] = {0};
    frame(&in, NGHTTP2_WINDOW_UPDATE, 0, 1, zero, sizeof zero);
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, NULL);
    feed(&sv, in.data, in.len);
    assert_string_equal(trace(&sv), "head 1 GET http a.test:80 /w\nreset 1 1\n");
    assert_true(sv.last_local);
    assert_true(sv.last_goaway);
    assert_string_equal(sv.last_reason, "a WINDOW_UPDATE with an increment of 0 (RFC 9113 6.9)");
    assert_true(sends_frame(&sv, NGHTTP2_GOAWAY, 0));
    feed(&sv, NULL, 0); /* the GOAWAY, an event once sent */
    assert_non_null(strstr(trace(&sv), "goaway 1 1\n"));
    side_free(&sv);
    reel_buf_free(&in);
}

/* The SETTINGS_MAX_CONCURRENT_STREAMS value in the first frame of sv's
 * output, a SETTINGS frame (0: absent). */
static uint32_t sent_max_streams(side_t *sv) {
    reel_buf_t out;
    reel_buf_init(&out, 0);
    assert_int_equal(reel_h2_take_output(sv->h, &out), REEL_OK);
    assert_true(out.len >= 9);
    assert_int_equal(out.data[3], NGHTTP2_SETTINGS);
    size_t n = (size_t)out.data[0] << 16 | (size_t)out.data[1] << 8 | out.data[2];
    assert_true(9 + n <= out.len);
    uint32_t v = 0;
    for (size_t at = 9; at + 6 <= 9 + n; at += 6) {
        const uint8_t *e = out.data + at;
        if ((e[0] << 8 | e[1]) == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
            v = (uint32_t)e[2] << 24 | (uint32_t)e[3] << 16 | (uint32_t)e[4] << 8 | e[5];
    }
    reel_buf_free(&out);
    return v;
}

/* Streams beyond max_concurrent_streams (which reel's SETTINGS announce)
 * are refused by reel once their heads came: REFUSED_STREAM while the
 * client has not acknowledged the limit, GOAWAY once it has; either way a
 * RESET that carries the head the client sent (nghttp2, enforcing the
 * limit itself, refused them unread). */
static void test_streams_beyond_the_limit(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET", ":scheme", "http", ":authority", "a.test",
                                      ":path",   "/l",  "x-n",     "1",    NULL};
    reel_h2_opts_t o = {.max_concurrent_streams = 2};
    for (int acked = 0; acked < 2; acked++) {
        side_t sv;
        side_init(&sv, REEL_H2_SERVER, &o);
        assert_int_equal(sent_max_streams(&sv), 2);
        reel_buf_t in;
        reel_buf_init(&in, 0);
        reel_buf_puts(&in, REEL_H2_PREFACE);
        frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        if (acked)
            frame(&in, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
        nghttp2_hd_deflater *d;
        assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
        for (uint32_t sid = 1; sid <= 5; sid += 2)
            raw_headers(&in, d, sid, get, NGHTTP2_FLAG_END_STREAM);
        feed(&sv, in.data, in.len);
        const char *t = trace(&sv);
        assert_non_null(strstr(t, "head 3 GET"));
        assert_null(strstr(t, "head 5"));
        assert_non_null(strstr(t, acked ? "reset 5 1\nrefused 5 GET http a.test:80 /l 1\n"
                                        : "reset 5 7\nrefused 5 GET http a.test:80 /l 1\n"));
        assert_true(sv.last_local);
        assert_int_equal(sv.last_goaway, acked);
        assert_non_null(strstr(sv.last_reason, "more than 2 concurrent streams"));
        assert_true(sends_frame(&sv, acked ? NGHTTP2_GOAWAY : NGHTTP2_RST_STREAM, acked ? 0 : 5));
        if (!acked) {
            /* a stream that ended makes room for the next: the refused one
             * did not count */
            reel_msg_head_t ok = {.status = 204, .version = "HTTP/2.0", .reason = ""};
            reel_err_t err = {0};
            assert_int_equal(reel_h2_submit_response(sv.h, 1, &ok, true, &err), REEL_OK);
            assert_true(sends_frame(&sv, NGHTTP2_HEADERS, 1));
            reel_buf_reset(&in);
            reel_buf_reset(&sv.trace);
            raw_headers(&in, d, 7, get, NGHTTP2_FLAG_END_STREAM);
            feed(&sv, in.data, in.len);
            assert_string_equal(trace(&sv), "head 7 GET http a.test:80 /l x-n=1\nend 7\n");
        }
        nghttp2_hd_deflate_del(d);
        side_free(&sv);
        reel_buf_free(&in);
    }
}

/* A new stream after reel's GOAWAY: nghttp2 ignores its HEADERS and
 * calls nothing with its head; it is reported all the same, as a stream
 * reel refused after its GOAWAY (its last stream id), with an empty head. */
static void test_stream_after_goaway(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                                      "a.test",  ":path", "/g",      NULL};
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, NULL);
    reel_buf_t in;
    reel_buf_init(&in, 0);
    reel_buf_puts(&in, REEL_H2_PREFACE);
    frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    nghttp2_hd_deflater *d;
    assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
    raw_headers(&in, d, 1, get, NGHTTP2_FLAG_END_STREAM);
    feed(&sv, in.data, in.len);
    reel_h2_goaway(sv.h, REEL_H2_NO_ERROR);
    assert_true(sends_frame(&sv, NGHTTP2_GOAWAY, 0));
    reel_buf_reset(&in);
    raw_headers(&in, d, 3, get, NGHTTP2_FLAG_END_STREAM);
    nghttp2_hd_deflate_del(d);
    feed(&sv, in.data, in.len);
    assert_string_equal(trace(&sv), "head 1 GET http a.test:80 /g\nend 1\n"
                                    "reset 3 7\nrefused 3   :0  0\n");
    assert_true(sv.last_local);
    assert_true(sv.last_after_goaway);
    assert_int_equal(sv.last_stream, 1);
    assert_false(sends_frame(&sv, NGHTTP2_RST_STREAM, 3)); /* ignored: nothing sent */
    side_free(&sv);
    reel_buf_free(&in);
}

/* A client past the acknowledged limit sends more streams in the same
 * read: reel's GOAWAY for the first over it makes nghttp2 drop the rest of
 * the read unread (no callback at all), and the later streams are
 * reported as opened after that GOAWAY, found by reel's own walk over the
 * frames. The read is split at every byte before the refused stream's
 * HEADERS end, so that the walk must keep its place across reads. */
static void test_streams_after_goaway_in_one_read(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                                      "a.test",  ":path", "/l",      NULL};
    static const uint8_t ping[8] = {0};
    reel_h2_opts_t o = {.max_concurrent_streams = 2};
    reel_buf_t in;
    reel_buf_init(&in, 0);
    reel_buf_puts(&in, REEL_H2_PREFACE);
    frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    frame(&in, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
    nghttp2_hd_deflater *d;
    assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
    for (uint32_t sid = 1; sid <= 5; sid += 2)
        raw_headers(&in, d, sid, get, NGHTTP2_FLAG_END_STREAM);
    size_t refused_end = in.len;
    frame(&in, NGHTTP2_PING, 0, 0, ping, sizeof ping); /* a payload to step over */
    raw_headers(&in, d, 7, get, NGHTTP2_FLAG_END_STREAM);
    raw_headers(&in, d, 9, get, NGHTTP2_FLAG_END_STREAM);
    nghttp2_hd_deflate_del(d);
    for (size_t split = 0; split < refused_end; split++) {
        side_t sv;
        side_init(&sv, REEL_H2_SERVER, &o);
        feed(&sv, in.data, split);
        feed(&sv, in.data + split, in.len - split);
        const char *t = trace(&sv);
        assert_non_null(strstr(t, "reset 5 1\nrefused 5 GET http a.test:80 /l 0\n"
                                  "reset 7 7\nrefused 7   :0  0\n"
                                  "reset 9 7\nrefused 9   :0  0\n"));
        assert_true(sv.last_after_goaway);
        assert_int_equal(sv.last_stream, 3);
        assert_non_null(strstr(sv.last_reason, "after the frame that made reel send that GOAWAY"));
        assert_true(sends_frame(&sv, NGHTTP2_GOAWAY, 0));
        side_free(&sv);
    }
    reel_buf_free(&in);
}

/* A header block that does not decode (HPACK) makes nghttp2 send GOAWAY
 * COMPRESSION_ERROR and read nothing more, calling nothing for the block
 * nor for the rest of the read: the block's stream is refused with that
 * GOAWAY, and each stream after it as opened after reel's GOAWAY. Split at
 * every byte: the walk finds the block's end in whichever read has it. */
static void test_streams_after_a_block_that_does_not_decode(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                                      "a.test",  ":path", "/h",      NULL};
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; /* index 2^35 */
    reel_buf_t in;
    reel_buf_init(&in, 0);
    reel_buf_puts(&in, REEL_H2_PREFACE);
    frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    nghttp2_hd_deflater *d;
    assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
    raw_headers(&in, d, 1, get, 0);
    frame(&in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3, bad,
          sizeof bad);
    raw_headers(&in, d, 5, get, NGHTTP2_FLAG_END_STREAM);
    raw_headers(&in, d, 7, get, NGHTTP2_FLAG_END_STREAM);
    nghttp2_hd_deflate_del(d);
    for (size_t split = 0; split <= in.len; split++) {
        side_t sv;
        side_init(&sv, REEL_H2_SERVER, NULL);
        feed(&sv, in.data, split);
        feed(&sv, in.data + split, in.len - split);
        const char *t = trace(&sv);
        assert_non_null(strstr(t, "reset 3 9\nrefused 3   :0  0\n"
                                  "reset 5 7\nrefused 5   :0  0\n"
                                  "reset 7 7\nrefused 7   :0  0\n"));
        assert_true(sv.last_after_goaway);
        assert_int_equal(sv.last_stream, 3);
        assert_non_null(strstr(sv.last_reason, "reel's GOAWAY was COMPRESSION_ERROR (0x9): a "
                                               "header block did not decode (HPACK); the stream "
                                               "came after the frame that made reel send"));
        assert_true(sends_frame(&sv, NGHTTP2_GOAWAY, 0));
        side_free(&sv);
    }
    reel_buf_free(&in);
}

/* After reel's GOAWAY for a connection error has gone out, nghttp2 reads
 * nothing: streams in later reads are reported as opened after it, with
 * its code and cause. */
static void test_streams_after_an_error_goaway_in_a_later_read(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                                      "a.test",  ":path", "/w",      NULL};
    reel_buf_t in;
    reel_buf_init(&in, 0);
    reel_buf_puts(&in, REEL_H2_PREFACE);
    frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    nghttp2_hd_deflater *d;
    assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
    raw_headers(&in, d, 1, get, 0);
    static const uint8_t zero[4] = {0};
    frame(&in, NGHTTP2_WINDOW_UPDATE, 0, 1, zero, sizeof zero);
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, NULL);
    feed(&sv, in.data, in.len);
    assert_true(sends_frame(&sv, NGHTTP2_GOAWAY, 0));
    feed(&sv, NULL, 0); /* the GOAWAY, an event once sent */
    reel_buf_reset(&in);
    raw_headers(&in, d, 3, get, NGHTTP2_FLAG_END_STREAM);
    static const uint8_t ping[8] = {0};
    frame(&in, NGHTTP2_PING, 0, 0, ping, sizeof ping);
    raw_headers(&in, d, 5, get, NGHTTP2_FLAG_END_STREAM);
    raw_headers(&in, d, 5, get, NGHTTP2_FLAG_END_STREAM); /* not a new stream: nothing */
    nghttp2_hd_deflate_del(d);
    feed(&sv, in.data, 7);
    feed(&sv, in.data + 7, in.len - 7);
    assert_non_null(strstr(trace(&sv), "goaway 1 1\nreset 3 7\nrefused 3   :0  0\n"
                                       "reset 5 7\nrefused 5   :0  0\n"));
    assert_null(strstr(strstr(trace(&sv), "reset 5 7"), "reset 5 7\nrefused 5   :0  0\nreset"));
    assert_true(sv.last_after_goaway);
    assert_int_equal(sv.last_stream, 1);
    assert_non_null(strstr(sv.last_reason,
                           "reel's GOAWAY was PROTOCOL_ERROR (0x1): a WINDOW_UPDATE with an "
                           "increment of 0 (RFC 9113 6.9); the stream came after reel had sent "
                           "that GOAWAY (reel reads on for a while only to record such streams)"));
    assert_false(sends_frame(&sv, NGHTTP2_RST_STREAM, 3));
    side_free(&sv);
    reel_buf_free(&in);
}

/* HEADERS frames nghttp2 refuses at their frame header, calling nothing
 * (too short for the PRIORITY flag; one inside another stream's header
 * block): the stream is refused with the GOAWAY, and the streams after it
 * as opened after it. */
static void test_headers_refused_at_the_frame_header(void **state) {
    (void)state;
    static const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                                      "a.test",  ":path", "/p",      NULL};
    for (int cut = 0; cut < 2; cut++) {
        reel_buf_t in;
        reel_buf_init(&in, 0);
        reel_buf_puts(&in, REEL_H2_PREFACE);
        frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        nghttp2_hd_deflater *d;
        assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
        if (cut) { /* stream 1's block never ends: HEADERS 3 cuts it */
            reel_buf_t b;
            reel_buf_init(&b, 0);
            raw_headers(&b, d, 1, get, 0);
            b.data[4] = 0; /* no END_HEADERS */
            reel_buf_append(&in, b.data, b.len);
            reel_buf_free(&b);
            raw_headers(&in, d, 3, get, NGHTTP2_FLAG_END_STREAM);
        } else {
            raw_headers(&in, d, 1, get, 0);
            static const uint8_t two[2] = {0};
            frame(&in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_PRIORITY, 3, two,
                  sizeof two);
        }
        raw_headers(&in, d, 5, get, NGHTTP2_FLAG_END_STREAM);
        nghttp2_hd_deflate_del(d);
        for (size_t split = 0; split <= in.len; split++) {
            side_t sv;
            side_init(&sv, REEL_H2_SERVER, NULL);
            feed(&sv, in.data, split);
            feed(&sv, in.data + split, in.len - split);
            const char *t = trace(&sv);
            if (cut)
                assert_non_null(strstr(t, "reset 1 1\nrefused 1 GET http a.test:80 /p 0\n"
                                          "reset 3 1\nrefused 3   :0  0\n"
                                          "reset 5 7\nrefused 5   :0  0\n"));
            else
                assert_non_null(strstr(t, "head 1 GET http a.test:80 /p\n"
                                          "reset 3 6\nrefused 3   :0  0\n"
                                          "reset 5 7\nrefused 5   :0  0\n"));
            assert_true(sv.last_after_goaway);
            assert_int_equal(sv.last_stream, 1);
            assert_non_null(strstr(sv.last_reason, cut ? "inside another stream's header block"
                                                       : "no room for the priority"));
            side_free(&sv);
        }
        reel_buf_free(&in);
    }
}

static void test_bad_preface(void **state) {
    (void)state;
    side_t sv;
    side_init(&sv, REEL_H2_SERVER, NULL);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    feed(&sv, (const uint8_t *)junk, sizeof junk - 1);
    assert_int_equal(sv.last_rc, REEL_INVALID);
    assert_non_null(strstr(sv.last_reason, "preface"));
    side_free(&sv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange_with_trailers),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_flow_control),
        cmocka_unit_test(test_reset_and_goaway),
        cmocka_unit_test(test_reset_reports_unsent),
        cmocka_unit_test(test_header_list_limit),
        cmocka_unit_test(test_rapid_reset),
        cmocka_unit_test(test_bad_preface),
        cmocka_unit_test(test_malformed_request_refused),
        cmocka_unit_test(test_host_without_authority),
        cmocka_unit_test(test_body_against_content_length),
        cmocka_unit_test(test_websocket_connect_ended_at_once),
        cmocka_unit_test(test_stream_frame_closing_the_connection),
        cmocka_unit_test(test_streams_beyond_the_limit),
        cmocka_unit_test(test_stream_after_goaway),
        cmocka_unit_test(test_streams_after_goaway_in_one_read),
        cmocka_unit_test(test_streams_after_a_block_that_does_not_decode),
        cmocka_unit_test(test_streams_after_an_error_goaway_in_a_later_read),
        cmocka_unit_test(test_headers_refused_at_the_frame_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
