/* Tests for src/session/mitm.c: flow files built here in the layouts of
 * flow format versions 12 (mitmproxy 7 dev: marked a boolean, address /
 * ip_address / cipher_name, 5-field WebSocket messages) and 21 (current:
 * peername, cipher, comment, timestamp_created), recorded into a session
 * and read back record by record; skipped flow types; the errors for
 * versions, shapes and damage, and that every cut of a file either parses
 * to the whole flows before the cut or fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "session/mitm.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/store.h"
#include "unit/testutil.h"

/* ---- a tnetstring builder ----------------------------------------------- */

typedef struct {
    char *p;
    size_t n;
} str_t;

static str_t tn(char tag, const void *p, size_t n) {
    str_t s;
    reel_buf_t b = {0};
    reel_buf_printf(&b, "%zu:", n);
    reel_buf_append(&b, p, n);
    reel_buf_append(&b, &tag, 1);
    s.p = (char *)b.data;
    s.n = b.len;
    return s;
}
static str_t S(const char *s) { /* bytes */
    return tn(',', s, strlen(s));
}
static str_t Sn(const void *p, size_t n) {
    return tn(',', p, n);
}
static str_t U(const char *s) { /* string */
    return tn(';', s, strlen(s));
}
static str_t I(long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    return tn('#', b, strlen(b));
}
static str_t F(double v) {
    char b[64];
    snprintf(b, sizeof b, "%.6f", v);
    return tn('^', b, strlen(b));
}
static str_t B(int v) {
    return tn('!', v ? "true" : "false", v ? 4 : 5);
}
static str_t N(void) {
    return tn('~', "", 0);
}
static str_t cat(char tag, size_t n, va_list ap, int dict) {
    reel_buf_t b = {0};
    for (size_t i = 0; i < n; i++) {
        if (dict) {
            str_t k = U(va_arg(ap, const char *));
            reel_buf_append(&b, k.p, k.n);
            free(k.p);
        }
        str_t v = va_arg(ap, str_t);
        reel_buf_append(&b, v.p, v.n);
        free(v.p);
    }
    str_t s = tn(tag, b.data ? (const char *)b.data : "", b.len);
    reel_buf_free(&b);
    return s;
}
static str_t L(size_t n, ...) { /* list of n values (taken) */
    va_list ap;
    va_start(ap, n);
    str_t s = cat(']', n, ap, 0);
    va_end(ap);
    return s;
}
static str_t D(size_t n, ...) { /* dict of n key (C string), value (taken) pairs */
    va_list ap;
    va_start(ap, n);
    str_t s = cat('}', n, ap, 1);
    va_end(ap);
    return s;
}

/* ---- flows in two layouts ----------------------------------------------- */

static str_t headers2(const char *a, const char *av, const char *b, const char *bv) {
    return L(2, L(2, S(a), S(av)), L(2, S(b), S(bv)));
}

static const uint8_t gz[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03};

/* v21: an HTTP/2 POST with a gzip response, a comment and a mark. */
static str_t flow_v21(void) {
    return D(14, "version", I(21), "type", U("http"), "id",
             U("0b7e9c1e-0000-4000-8000-000000000001"), "error", N(), "client_conn",
             D(3, "peername", L(2, U("::1"), I(50000)), "sockname", L(2, U("::1"), I(8080)), "tls",
               B(1)),
             "server_conn",
             D(7, "address", L(2, U("example.com"), I(443)), "peername",
               L(2, U("93.184.216.34"), I(443)), "sni", U("example.com"), "alpn", S("h2"),
               "tls_version", U("TLSv1.3"), "cipher", U("TLS_AES_128_GCM_SHA256"), "via", N()),
             "intercepted", B(0), "is_replay", N(), "marked", U(":default:"), "metadata", D(0),
             "comment", U("first note"), "timestamp_created", F(1700000000.125), "request",
             D(12, "host", U("example.com"), "port", I(443), "method", S("POST"), "scheme",
               S("https"), "authority", S("example.com"), "path", S("/api?q=1"), "http_version",
               S("HTTP/2.0"), "headers", headers2("content-type", "application/json", "x-dup", "1"),
               "content", S("{\"a\":1}"), "trailers", N(), "timestamp_start", F(1700000000.25),
               "timestamp_end", F(1700000000.5)),
             "response",
             D(9, "http_version", S("HTTP/2.0"), "headers",
               headers2("content-encoding", "gzip", "content-length", "10"), "content",
               Sn(gz, sizeof gz), "trailers", N(), "timestamp_start", F(1700000001.0),
               "timestamp_end", F(1700000001.75), "status_code", I(201), "reason", S(""), "x",
               N()));
}

/* v12: a WebSocket flow (5-field messages), marked (a boolean), the old
 * connection field names. */
static str_t flow_v12(void) {
    return D(
        11, "version", I(12), "type", U("http"), "id", U("x"), "error", N(), "client_conn",
        D(2, "address", L(2, U("127.0.0.1"), I(40000)), "tls_established", B(0)), "server_conn",
        D(4, "address", L(2, U("ws.test"), I(80)), "ip_address", L(2, U("127.0.0.2"), I(80)), "sni",
          B(1), "cipher_name", U("AES")),
        "marked", B(1), "metadata", D(0), "request",
        D(12, "host", U("ws.test"), "port", I(80), "method", S("GET"), "scheme", S("http"),
          "authority", S(""), "path", S("/chat"), "http_version", S("HTTP/1.1"), "headers",
          headers2("Upgrade", "websocket", "Connection", "Upgrade"), "content", S(""), "trailers",
          N(), "timestamp_start", F(1600000000.0), "timestamp_end", F(1600000000.001)),
        "response",
        D(8, "http_version", S("HTTP/1.1"), "headers",
          headers2("Upgrade", "websocket", "Connection", "Upgrade"), "content", N(), "trailers",
          N(), "timestamp_start", N(), "timestamp_end", F(1600000000.003), "status_code", I(101),
          "reason", S("Switching Protocols")),
        "websocket",
        D(5, "messages",
          L(2, L(5, I(1), B(1), S("ping?"), F(1600000000.1), B(0)),
            L(5, I(2), B(0), Sn("\x00\xff", 2), F(1600000000.2), B(0))),
          "closed_by_client", B(0), "close_code", I(1001), "close_reason", U("going away"),
          "timestamp_end", F(1600000005.0)));
}

/* v17 (Debian's mitmproxy 8.1): a request that failed, no response. */
static str_t flow_v17_error(void) {
    return D(8, "version", I(17), "type", U("http"), "error",
             D(2, "msg", U("Connection refused"), "timestamp", F(1650000000.5)), "client_conn",
             D(1, "address", N()), "server_conn", D(1, "ip_address", N()), "marked", U(""),
             "comment", U(""), "request",
             D(11, "host", U("down.test"), "port", I(8081), "method", S("GET"), "scheme", S("http"),
               "authority", S(""), "path", S("/"), "http_version", S("HTTP/1.1"), "headers", L(0),
               "content", N(), "timestamp_start", F(1650000000.0), "timestamp_end", N()));
}

/* v20: a TCP flow, with a comment. */
static str_t flow_tcp(void) {
    return D(7, "version", I(20), "type", U("tcp"), "comment", U("raw"), "client_conn",
             D(2, "peername", L(2, U("127.0.0.1"), I(41000)), "timestamp_start", F(1710000000.0)),
             "server_conn",
             D(3, "address", L(2, U("db.test"), I(5432)), "peername", L(2, U("10.0.0.5"), I(5432)),
               "timestamp_end", F(1710000009.0)),
             "error", N(), "messages",
             L(2, L(3, B(1), S("SELECT 1"), F(1710000001.0)),
               L(3, B(0), Sn("\x01\x00", 2), F(1710000002.0))));
}

/* TCP flows that mitmproxy relayed over TLS (MQTT over TLS), as its
 * versions write that: v17 (mitmproxy 8, as its test.tflow.ttcpflow()
 * writes it): tls false but tls_established true and timestamp_tls_setup
 * on both connections; v21: tls true and timestamp_tls_setup, no
 * tls_established (19 dropped it). The server connection's TLS facts are
 * its ServerConn. */
static str_t flow_tls_v17(void) {
    return D(6, "version", I(17), "type", U("tcp"), "client_conn",
             D(4, "address", L(2, U("127.0.0.1"), I(41001)), "tls", B(0), "tls_established", B(1),
               "timestamp_start", F(1710000100.0)),
             "server_conn",
             D(9, "address", L(2, U("broker.test"), I(8883)), "ip_address",
               L(2, U("10.0.0.6"), I(8883)), "sni", U("broker.test"), "alpn", S("mqtt"),
               "tls_version", U("TLSv1.2"), "cipher_name", U("ECDHE-RSA-AES128-GCM-SHA256"), "tls",
               B(0), "tls_established", B(1), "timestamp_tls_setup", F(1710000100.5)),
             "error", N(), "messages", L(1, L(3, B(1), Sn("\x10\x0c", 2), F(1710000101.0))));
}

static str_t flow_tls_v21(void) {
    return D(6, "version", I(21), "type", U("tcp"), "client_conn",
             D(3, "peername", L(2, U("127.0.0.1"), I(41002)), "tls", B(1), "timestamp_tls_setup",
               F(1710000200.25)),
             "server_conn",
             D(6, "address", L(2, U("imap.test"), I(993)), "peername", L(2, U("10.0.0.7"), I(993)),
               "sni", U("imap.test"), "tls_version", U("TLSv1.3"), "tls", B(1),
               "timestamp_tls_setup", F(1710000200.5)),
             "error", N(), "messages", L(1, L(3, B(0), S("* OK IMAP ready\r\n"), F(1710000201.0))));
}

static str_t flow_dns(void) {
    return D(3, "version", I(21), "type", U("dns"), "request", D(0));
}

static uint8_t *file_of(size_t *len, size_t n, ...) {
    reel_buf_t b = {0};
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        str_t s = va_arg(ap, str_t);
        reel_buf_append(&b, s.p, s.n);
        free(s.p);
    }
    va_end(ap);
    *len = b.len;
    if (b.data == NULL)
        return reel_malloc(1);
    return b.data; /* reel_buf_t memory is plain malloc: taken by reel_mitm_parse */
}

/* Size of the first top-level value of buf: digits, ':', payload, tag. */
static size_t first_len(const uint8_t *buf) {
    size_t digits = strspn((const char *)buf, "0123456789");
    return digits + 1 + (size_t)strtoul((const char *)buf, NULL, 10) + 1;
}

/* ---- reading a recorded flow back as a transcript ------------------------ */

static void hdrs(reel_buf_t *b, Reel__Header **h, size_t n) {
    reel_buf_puts(b, " [");
    for (size_t i = 0; i < n; i++)
        reel_buf_printf(b, "%s%.*s: %.*s", i ? "|" : "", (int)h[i]->name.len,
                        (const char *)h[i]->name.data, (int)h[i]->value.len,
                        (const char *)h[i]->value.data);
    reel_buf_puts(b, "]");
}

static void hex(reel_buf_t *b, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        reel_buf_printf(b, "%02x", p[i]);
}

static int collect(void *ctx, const Reel__Record *r) {
    reel_buf_t *b = ctx;
    switch (r->event_case) {
    case REEL__RECORD__EVENT_START:
        reel_buf_printf(b, "start %lld %s client=%s server=%s\n", (long long)r->time_us,
                        r->start->source, r->start->client_addr, r->start->server_addr);
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = r->request_head;
        reel_buf_printf(b, "req %lld %.*s %s %.*s %u %.*s %s decoded=%d", (long long)r->time_us,
                        (int)h->method.len, (const char *)h->method.data, h->scheme,
                        (int)h->host.len, (const char *)h->host.data, h->port, (int)h->target.len,
                        (const char *)h->target.data, h->http_version, h->body_decoded);
        hdrs(b, h->headers, h->n_headers);
        reel_buf_puts(b, "\n");
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
        reel_buf_printf(b, "reqbody %.*s\n", (int)r->request_body->data.len,
                        (const char *)r->request_body->data.data);
        break;
    case REEL__RECORD__EVENT_SERVER_CONN:
        reel_buf_printf(b, "sconn %s sni=%s alpn=%s tls=%s cipher=%s\n", r->server_conn->address,
                        r->server_conn->sni, r->server_conn->alpn, r->server_conn->tls_version,
                        r->server_conn->cipher);
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = r->response_head;
        reel_buf_printf(b, "resp %lld %u '%.*s' %s decoded=%d", (long long)r->time_us, h->status,
                        (int)h->reason.len, (const char *)h->reason.data, h->http_version,
                        h->body_decoded);
        hdrs(b, h->headers, h->n_headers);
        reel_buf_puts(b, "\n");
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        reel_buf_puts(b, "respbody ");
        hex(b, r->response_body->data.data, r->response_body->data.len);
        reel_buf_puts(b, "\n");
        break;
    case REEL__RECORD__EVENT_MESSAGE: {
        const Reel__Message *m = r->message;
        reel_buf_printf(b, "msg %s op=%u len=%llu close=%u ", m->from_client ? "c" : "s", m->opcode,
                        (unsigned long long)m->length, m->close_code);
        hex(b, m->data.data, m->data.len);
        reel_buf_puts(b, "\n");
        break;
    }
    case REEL__RECORD__EVENT_END: {
        const Reel__FlowEnd *e = r->end;
        reel_buf_printf(b, "end %lld req_end=%lld resp_start=%lld", (long long)r->time_us,
                        (long long)e->request_end_us, (long long)e->response_start_us);
        if (e->timings)
            reel_buf_printf(b, " send=%lld wait=%lld receive=%lld", (long long)e->timings->send_us,
                            (long long)e->timings->wait_us, (long long)e->timings->receive_us);
        reel_buf_puts(b, "\n");
        break;
    }
    case REEL__RECORD__EVENT_ERROR:
        reel_buf_printf(b, "error %lld %s\n", (long long)r->time_us, r->error->message);
        break;
    default:
        reel_buf_printf(b, "event %d\n", (int)r->event_case);
    }
    return 0;
}

static char *tmp;

static int setup(void **state) {
    (void)state;
    tmp = reel_test_tmpdir("mitm_test");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    reel_test_rm_rf(tmp);
    free(tmp);
    return 0;
}

static reel_mitm_t *parse_ok(uint8_t *buf, size_t len) {
    reel_mitm_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_mitm_parse(buf, len, "t.mitm", &m, &err) != REEL_OK)
        fail_msg("%s", reel_err_str(&err));
    return m;
}

static void parse_bad(uint8_t *buf, size_t len, reel_rc want, const char *msg) {
    reel_mitm_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_mitm_parse(buf, len, "t.mitm", &m, &err);
    if (rc != want)
        fail_msg("rc %s, want %s: %s", reel_rc_name(rc), reel_rc_name(want), reel_err_str(&err));
    assert_null(m);
    if (strstr(reel_err_str(&err), msg) == NULL)
        fail_msg("'%s' lacks '%s'", reel_err_str(&err), msg);
}

/* ---- tests -------------------------------------------------------------- */

static void test_record_versions(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf =
        file_of(&len, 5, flow_v21(), flow_dns(), flow_v12(), flow_v17_error(), flow_tcp());
    reel_mitm_t *m = parse_ok(buf, len);
    assert_int_equal(reel_mitm_count(m), 5);

    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(tmp, "s", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err),
                     REEL_OK);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.body_limit = UINT64_MAX / 2;
    o.fsync = REEL_FSYNC_NEVER;
    reel_recorder_t *rec = NULL;
    assert_int_equal(reel_recorder_open(s, &o, &rec, &err), REEL_OK);
    reel_mitm_stats_t st;
    assert_int_equal(reel_mitm_record(rec, m, &st, &err), REEL_OK);
    assert_int_equal(reel_recorder_close(rec, &err), REEL_OK);
    assert_int_equal(st.flows, 4);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.first_id, 1);
    assert_int_equal(st.last_id, 4);
    assert_int_equal(reel_mitm_apply_user_data(reel_session_db(s), m, &st, &err), REEL_OK);
    assert_int_equal(st.annotated, 2);
    assert_int_equal(st.marked, 2);

    static const char *want[] = {
        "start 1700000000125000 mitm-import client=[::1]:50000 server=93.184.216.34:443\n"
        "req 1700000000250000 POST https example.com 443 /api?q=1 HTTP/2.0 decoded=0 "
        "[content-type: application/json|x-dup: 1]\n"
        "reqbody {\"a\":1}\n"
        "sconn 93.184.216.34:443 sni=example.com alpn=h2 tls=TLSv1.3 "
        "cipher=TLS_AES_128_GCM_SHA256\n"
        "resp 1700000001000000 201 '' HTTP/2.0 decoded=0 "
        "[content-encoding: gzip|content-length: 10]\n"
        "respbody 1f8b0800000000000003\n"
        "end 1700000001750000 req_end=1700000000500000 resp_start=1700000001000000 "
        "send=250000 wait=500000 receive=750000\n",

        "start 1600000000000000 mitm-import client=127.0.0.1:40000 server=127.0.0.2:80\n"
        "req 1600000000000000 GET http ws.test 80 /chat HTTP/1.1 decoded=0 "
        "[Upgrade: websocket|Connection: Upgrade]\n"
        "sconn 127.0.0.2:80 sni=ws.test alpn= tls= cipher=AES\n"
        "resp 1600000000001000 101 'Switching Protocols' HTTP/1.1 decoded=0 "
        "[Upgrade: websocket|Connection: Upgrade]\n"
        "msg c op=1 len=5 close=0 70696e673f\n"
        "msg s op=2 len=2 close=0 00ff\n"
        "msg s op=8 len=12 close=1001 03e9676f696e672061776179\n"
        "end 1600000005000000 req_end=1600000000001000 resp_start=1600000000001000 "
        "send=1000 wait=0 receive=2000\n",

        "start 1650000000000000 mitm-import client= server=\n"
        "req 1650000000000000 GET http down.test 8081 / HTTP/1.1 decoded=0 []\n"
        "error 1650000000500000 Connection refused\n",

        "start 1710000000000000 mitm-import client=127.0.0.1:41000 server=10.0.0.5:5432\n"
        "req 1710000000000000 CONNECT tcp db.test 5432  HTTP/1.1 decoded=0 []\n"
        "sconn 10.0.0.5:5432 sni= alpn= tls= cipher=\n"
        "msg c op=0 len=8 close=0 53454c4543542031\n"
        "msg s op=0 len=2 close=0 0100\n"
        "end 1710000009000000 req_end=0 resp_start=0 send=-1 wait=-1 receive=-1\n",
    };
    for (uint64_t id = 1; id <= 4; id++) {
        reel_buf_t b = {0};
        assert_int_equal(reel_store_read_flow(s, id, collect, &b, &err), REEL_OK);
        if (strcmp((const char *)b.data, want[id - 1]) != 0)
            fail_msg("flow %llu:\n%s\nwant:\n%s", (unsigned long long)id, (const char *)b.data,
                     want[id - 1]);
        reel_buf_free(&b);
    }
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT (SELECT group_concat(flow_id || ':' || text) FROM "
                                        "annotations), (SELECT group_concat(id) FROM flows WHERE "
                                        "marked), (SELECT group_concat(flow_id) FROM marks)",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "1:first note,4:raw");
    assert_string_equal((const char *)sqlite3_column_text(q, 1), "1,2");
    assert_string_equal((const char *)sqlite3_column_text(q, 2), "1,2");
    sqlite3_finalize(q);
    reel_session_close(s);
    reel_mitm_free(m);
}

/* A TCP flow over TLS is a tunnel of scheme tls (its URL tls://host:port),
 * as reel record makes one of TLS that is not HTTP; the plain TCP flow
 * stays tcp (test_record_versions). */
static void test_tcp_over_tls(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = file_of(&len, 2, flow_tls_v17(), flow_tls_v21());
    reel_mitm_t *m = parse_ok(buf, len);
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(tmp, "tls", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err),
                     REEL_OK);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.fsync = REEL_FSYNC_NEVER;
    reel_recorder_t *rec = NULL;
    assert_int_equal(reel_recorder_open(s, &o, &rec, &err), REEL_OK);
    reel_mitm_stats_t st;
    assert_int_equal(reel_mitm_record(rec, m, &st, &err), REEL_OK);
    assert_int_equal(reel_recorder_close(rec, &err), REEL_OK);
    assert_int_equal(st.flows, 2);

    static const char *want[] = {
        "start 1710000100000000 mitm-import client=127.0.0.1:41001 server=10.0.0.6:8883\n"
        "req 1710000100000000 CONNECT tls broker.test 8883  HTTP/1.1 decoded=0 []\n"
        "sconn 10.0.0.6:8883 sni=broker.test alpn=mqtt tls=TLSv1.2 "
        "cipher=ECDHE-RSA-AES128-GCM-SHA256\n"
        "msg c op=0 len=2 close=0 100c\n"
        "end 1710000101000000 req_end=0 resp_start=0 send=-1 wait=-1 receive=-1\n",

        "start 1710000201000000 mitm-import client=127.0.0.1:41002 server=10.0.0.7:993\n"
        "req 1710000201000000 CONNECT tls imap.test 993  HTTP/1.1 decoded=0 []\n"
        "sconn 10.0.0.7:993 sni=imap.test alpn= tls=TLSv1.3 cipher=\n"
        "msg s op=0 len=17 close=0 2a204f4b20494d41502072656164790d0a\n"
        "end 1710000201000000 req_end=0 resp_start=0 send=-1 wait=-1 receive=-1\n",
    };
    for (uint64_t id = 1; id <= 2; id++) {
        reel_buf_t b = {0};
        assert_int_equal(reel_store_read_flow(s, id, collect, &b, &err), REEL_OK);
        if (strcmp((const char *)b.data, want[id - 1]) != 0)
            fail_msg("flow %llu:\n%s\nwant:\n%s", (unsigned long long)id, (const char *)b.data,
                     want[id - 1]);
        reel_buf_free(&b);
    }
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT group_concat(url, ' ') FROM flows ORDER BY id", -1,
                                        &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0),
                        "tls://broker.test:8883/ tls://imap.test:993/");
    sqlite3_finalize(q);
    reel_session_close(s);
    reel_mitm_free(m);

    /* a flag that is not a boolean is refused, naming it */
    buf = file_of(&len, 1,
                  D(6, "version", I(21), "type", U("tcp"), "client_conn", D(1, "tls", S("yes")),
                    "server_conn", D(0), "error", N(), "messages", L(0)));
    parse_bad(buf, len, REEL_INVALID, "client_conn.tls: not a boolean but bytes");
}

/* A flow whose request head cannot be one spool record (a 600 KB path) is
 * refused, naming it, rather than recorded without its request (which
 * reel_mitm_record did, returning REEL_OK). */
static void test_head_too_large(void **state) {
    (void)state;
    size_t n = 600000;
    char *path = reel_malloc(n + 1);
    path[0] = '/';
    memset(path + 1, 'p', n - 1);
    path[n] = '\0';
    str_t big = D(9, "version", I(21), "type", U("http"), "id",
                  U("0b7e9c1e-0000-4000-8000-000000000002"), "error", N(), "client_conn", D(0),
                  "server_conn", D(0), "timestamp_created", F(1700000000.125), "request",
                  D(12, "host", U("example.com"), "port", I(443), "method", S("GET"), "scheme",
                    S("https"), "authority", S("example.com"), "path", S(path), "http_version",
                    S("HTTP/1.1"), "headers", L(0), "content", S(""), "trailers", N(),
                    "timestamp_start", F(1700000000.25), "timestamp_end", F(1700000000.5)),
                  "response", N());
    free(path);
    size_t len;
    uint8_t *buf = file_of(&len, 2, flow_v21(), big);
    reel_mitm_t *m = parse_ok(buf, len);
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(tmp, "big", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err),
                     REEL_OK);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.fsync = REEL_FSYNC_NEVER;
    reel_recorder_t *rec = NULL;
    assert_int_equal(reel_recorder_open(s, &o, &rec, &err), REEL_OK);
    reel_mitm_stats_t st;
    assert_int_equal(reel_mitm_record(rec, m, &st, &err), REEL_INVALID);
    if (strstr(reel_err_str(&err), "t.mitm: flow 2: its request head would take") == NULL)
        fail_msg("%s", reel_err_str(&err));
    reel_recorder_close(rec, NULL);
    reel_session_close(s);
    reel_mitm_free(m);
}

static void test_empty(void **state) {
    (void)state;
    reel_mitm_t *m = parse_ok(reel_malloc(1), 0);
    assert_int_equal(reel_mitm_count(m), 0);
    reel_mitm_free(m);
    assert_int_equal(reel_mitm_sniff((const uint8_t *)"1953:4:type;", 12), 1);
    assert_int_equal(reel_mitm_sniff((const uint8_t *)"{\"log\"", 6), 0);
    /* a length digit is mitmproxy's, whatever follows: the loader says
     * what is wrong with it (a JSON parser said "too big integer") */
    assert_int_equal(reel_mitm_sniff((const uint8_t *)"12", 2), 1);
    assert_int_equal(reel_mitm_sniff((const uint8_t *)"99999999999999999999999:x", 25), 1);
    assert_int_equal(reel_mitm_sniff((const uint8_t *)"", 0), 0);
}

static void test_versions(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = file_of(&len, 2, flow_v21(), D(2, "version", I(22), "type", U("http")));
    char want[128];
    snprintf(want, sizeof want,
             "t.mitm: flow 2 (byte %zu): flow format version 22 is not supported (reel reads 12 "
             "to 21)",
             first_len(buf));
    parse_bad(buf, len, REEL_UNSUPPORTED, want);
    buf = file_of(&len, 1, D(2, "version", I(11), "type", U("http")));
    parse_bad(buf, len, REEL_UNSUPPORTED, "flow 1 (byte 0): flow format version 11 is not");
    buf = file_of(&len, 1, D(2, "version", L(3, I(0), I(11), I(0)), "type", U("http")));
    parse_bad(buf, len, REEL_UNSUPPORTED, "a tuple, mitmproxy 2 or older");
    buf = file_of(&len, 1, D(1, "type", U("http")));
    parse_bad(buf, len, REEL_INVALID, "flow 1 (byte 0): not a flow: no \"version\"");
    buf = file_of(&len, 1, L(1, I(21)));
    parse_bad(buf, len, REEL_INVALID, "not a flow: a list, not a dict");
}

static void test_shapes(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = file_of(&len, 1, D(2, "version", I(21), "type", U("http")));
    parse_bad(buf, len, REEL_INVALID, "flow 1 (byte 0): request: missing");
    buf = file_of(
        &len, 1,
        D(3, "version", I(21), "type", U("http"), "request",
          D(9, "host", U("h"), "port", I(80), "method", S("GET"), "scheme", S("http"), "path",
            S("/"), "http_version", S("HTTP/1.1"), "headers",
            L(2, L(2, S("a"), S("b")), L(1, S("c"))), "content", N(), "timestamp_start", F(1.0))));
    parse_bad(buf, len, REEL_INVALID, "request.headers[1]: not a [name, value] pair");
    buf =
        file_of(&len, 1,
                D(3, "version", I(21), "type", U("http"), "request",
                  D(4, "host", U("h"), "port", I(70000), "method", S("GET"), "scheme", S("http"))));
    parse_bad(buf, len, REEL_INVALID, "request.port: 70000 is out of range");
    buf = file_of(&len, 1,
                  D(3, "version", I(21), "type", U("http"), "request",
                    D(3, "host", U("h"), "method", S("GET"), "scheme", S("gopher"))));
    parse_bad(buf, len, REEL_INVALID, "request.scheme: 'gopher' is not http or https");
}

/* Every cut of a two-flow file: at a flow boundary it holds the flows
 * before it, anywhere else it is truncated (never a crash or a partial flow). */
static void test_every_cut(void **state) {
    (void)state;
    size_t len;
    uint8_t *all = file_of(&len, 2, flow_v12(), flow_v21());
    size_t boundary = first_len(all);
    for (size_t k = 0; k < len; k++) {
        uint8_t *buf = reel_malloc(k ? k : 1);
        memcpy(buf, all, k);
        reel_mitm_t *m = NULL;
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc rc = reel_mitm_parse(buf, k, "cut", &m, &err);
        if (k == 0 || k == boundary) {
            assert_int_equal(rc, REEL_OK);
            assert_int_equal(reel_mitm_count(m), k ? 1 : 0);
            reel_mitm_free(m);
            continue;
        }
        if (rc != REEL_CORRUPT)
            fail_msg("cut at %zu: %s %s", k, reel_rc_name(rc), reel_err_str(&err));
        assert_non_null(strstr(reel_err_str(&err), "truncated"));
        assert_non_null(strstr(reel_err_str(&err), k < boundary ? "flow 1 (byte 0)" : "flow 2"));
    }
    free(all);
}

/* A byte damaged inside flow 2 names flow 2 and where. */
static void test_damage(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = file_of(&len, 2, flow_v12(), flow_v21());
    size_t boundary = first_len(buf);
    uint8_t *p = memmem(buf + boundary, len - boundary, "7:version;", 10);
    assert_non_null(p);
    p[0] = '8'; /* the key now swallows a byte: the dict's items no longer fit */
    char want[64];
    snprintf(want, sizeof want, "t.mitm: flow 2 (byte %zu): damaged: byte", boundary);
    parse_bad(buf, len, REEL_CORRUPT, want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_versions), cmocka_unit_test(test_empty),
        cmocka_unit_test(test_versions),        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_every_cut),       cmocka_unit_test(test_damage),
        cmocka_unit_test(test_tcp_over_tls),    cmocka_unit_test(test_head_too_large),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
