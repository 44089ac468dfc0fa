/* The proxy's connection and exchange logic without a socket: the client
 * and every origin are in-memory pipes (core/memfilter.h) under the real
 * stacks, codecs, exchanges and recorder, on a libuv loop that has no
 * socket at all. Each scenario feeds its input split at every byte
 * boundary (two pieces, with the loop run between them) and checks what
 * reaches the other side, byte for byte where reel forwards bytes as they
 * are:
 *
 * - a request and its response through a plain HTTP proxy request;
 * - a keep-alive upstream that closes instead of answering the second
 *   request: the request is sent again on a new connection;
 * - CONNECT, then a TLS ClientHello (sniffed, intercepted with a
 *   certificate from reel's CA), a request inside, TLS to the origin;
 * - an Upgrade to WebSocket: the 101 and the frames in both directions;
 * - HTTP/2 with prior knowledge (h2c): a stream served by a lane, as
 *   HTTP/1.1 toward the origin and HTTP/2 back.
 *
 * The flows each scenario records are counted in the session it wrote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/conn.h"
#include "core/h2.h"
#include "core/memfilter.h"
#include "session/recorder.h"
#include "session/session.h"
#include "unit/testutil.h"

#define MAX_ORIGINS 64

typedef struct {
    uv_loop_t loop;
    char *home;
    reel_session_t *s;
    reel_recorder_t *rec;
    reel_ca_t *ca;
    reel_proxy_t *p;
    reel_mempipe_t *origins[MAX_ORIGINS];
    char origin_host[MAX_ORIGINS][64];
    int origin_port[MAX_ORIGINS];
    int norigins;
    bool done;
    const char *refuse; /* upstream connections fail with this */
} env_t;

static reel_filter_t *connector(void *ctx, reel_proxy_t *p, const char *host, int port) {
    env_t *e = ctx;
    (void)p;
    assert_true(e->norigins < MAX_ORIGINS);
    int i = e->norigins++;
    e->origins[i] = reel_mempipe_new(&e->loop, false, e->refuse);
    snprintf(e->origin_host[i], sizeof e->origin_host[i], "%s", host);
    e->origin_port[i] = port;
    return reel_mempipe_filter(e->origins[i]);
}

/* Runs the loop until the deferred events settle. */
static void run(env_t *e) {
    for (int i = 0; i < 8; i++)
        uv_run(&e->loop, UV_RUN_NOWAIT);
}

static void free_origins(env_t *e) {
    for (int i = 0; i < e->norigins; i++) {
        reel_mempipe_free(e->origins[i]);
        e->origins[i] = NULL;
    }
    e->norigins = 0;
    run(e);
}

static void env_start_limited(env_t *e, size_t max_head_size);

static void env_start(env_t *e) {
    env_start_limited(e, 65536);
}

static void env_start_limited(env_t *e, size_t max_head_size) {
    memset(e, 0, sizeof *e);
    uv_loop_init(&e->loop);
    e->home = reel_test_tmpdir("exchange");
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(e->home, "x", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &e->s, &err) !=
        REEL_OK)
        fail_msg("session: %s", reel_err_str(&err));
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    if (reel_recorder_open(e->s, &o, &e->rec, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    char *cadir = reel_asprintf("%s/ca", e->home);
    if (reel_ca_open(cadir, &e->ca, &err) != REEL_OK)
        fail_msg("ca: %s", reel_err_str(&err));
    free(cadir);
    reel_proxy_settings_t cfg = {.listen_host = NULL,
                                 .upstream_cert_verify = false,
                                 .idle_timeout_s = 60,
                                 .head_timeout_s = 60,
                                 .upstream_timeout_s = 60,
                                 .max_head_size = max_head_size};
    if (reel_proxy_start(&e->loop, &cfg, e->rec, e->ca, &e->p, &err) != REEL_OK)
        fail_msg("proxy: %s", reel_err_str(&err));
    reel__proxy_set_connector(e->p, connector, e);
}

static void on_done(void *ctx) {
    ((env_t *)ctx)->done = true;
}

/* Closes everything; returns how many flows the session recorded, all of
 * which must have ended complete (kind: "http" or "tunnel"). */
static uint64_t env_stop_full(env_t *e, const char *kind, const char *want_error);

static uint64_t env_stop_kind(env_t *e, const char *kind) {
    return env_stop_full(e, kind, NULL);
}

/* ... or, with want_error, every flow ended with that error. */
static uint64_t env_stop_full(env_t *e, const char *kind, const char *want_error) {
    reel_proxy_shutdown(e->p, 0, on_done, e);
    for (int i = 0; i < 100 && !e->done; i++)
        uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_true(e->done);
    reel_proxy_free(e->p);
    free_origins(e);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(e->rec, &err), REEL_OK);
    reel_session_close(e->s);
    reel_session_t *s = NULL;
    assert_int_equal(reel_session_open(e->home, "x", REEL_OPEN_READ, &s, &err), REEL_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT count(*), sum(state = 'complete'), "
                                        "sum(kind = ?), group_concat(DISTINCT error) FROM flows",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, kind ? kind : "", -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    uint64_t flows = (uint64_t)sqlite3_column_int64(st, 0);
    const char *errors = (const char *)sqlite3_column_text(st, 3);
    if (want_error) {
        assert_non_null(errors);
        assert_string_equal(errors, want_error);
    } else {
        if (errors)
            fail_msg("flows ended with errors: %s", errors);
        assert_int_equal(sqlite3_column_int64(st, 1), flows);
    }
    if (kind)
        assert_int_equal(sqlite3_column_int64(st, 2), flows);
    sqlite3_finalize(st);
    reel_session_close(s);
    reel_ca_free(e->ca);
    reel_test_rm_rf(e->home);
    free(e->home);
    return flows;
}

static uint64_t env_stop(env_t *e) {
    return env_stop_kind(e, "http");
}

static reel_mempipe_t *client_open(env_t *e) {
    reel_mempipe_t *c = reel_mempipe_new(&e->loop, true, NULL);
    reel__conn_open(e->p, reel_mempipe_filter(c), "127.0.0.1");
    run(e);
    return c;
}

/* Feeds data to a pipe in two pieces split at k, running the loop between. */
static void feed_split(env_t *e, reel_mempipe_t *mp, const char *data, size_t len, size_t k) {
    reel_mempipe_feed(mp, data, k);
    run(e);
    reel_mempipe_feed(mp, data + k, len - k);
    run(e);
}

static bool has(const reel_buf_t *b, const char *needle) {
    return b->len && memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

static void client_close(env_t *e, reel_mempipe_t *c) {
    reel_mempipe_feed_eof(c);
    run(e);
    assert_true(reel_mempipe_closed(c));
    reel_mempipe_free(c);
    run(e);
}

/* ---- a request and its response ---- */

static const char REQ[] = "GET http://origin.test/a?q=1 HTTP/1.1\r\n"
                          "Host: origin.test\r\n"
                          "User-Agent: t\r\n"
                          "Proxy-Connection: keep-alive\r\n"
                          "\r\n";
static const char RESP[] = "HTTP/1.1 200 OK\r\n"
                           "Content-Length: 5\r\n"
                           "X-Origin: yes\r\n"
                           "\r\n"
                           "hello";

static void check_forwarded_request(reel_mempipe_t *o) {
    reel_buf_t *got = reel_mempipe_sent(o);
    assert_true(has(got, "GET /a?q=1 HTTP/1.1\r\n"));
    assert_true(has(got, "Host: origin.test\r\n"));
    assert_true(has(got, "User-Agent: t\r\n"));
    assert_false(has(got, "Proxy-Connection")); /* hop-by-hop: removed */
    assert_true(got->len > 4 && memcmp(got->data + got->len - 4, "\r\n\r\n", 4) == 0);
}

static void check_response(reel_mempipe_t *c) {
    reel_buf_t *got = reel_mempipe_sent(c);
    assert_true(got->len > 17 && memcmp(got->data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_true(has(got, "X-Origin: yes\r\n"));
    assert_true(got->len > 9 && memcmp(got->data + got->len - 9, "\r\n\r\nhello", 9) == 0);
}

static void request_once(env_t *e, size_t k_req, size_t k_resp) {
    reel_mempipe_t *c = client_open(e);
    feed_split(e, c, REQ, sizeof REQ - 1, k_req);
    assert_int_equal(e->norigins, 1);
    reel_mempipe_t *o = e->origins[0];
    assert_string_equal(e->origin_host[0], "origin.test");
    assert_int_equal(e->origin_port[0], 80);
    check_forwarded_request(o);
    feed_split(e, o, RESP, sizeof RESP - 1, k_resp);
    check_response(c);
    client_close(e, c);
    free_origins(e);
}

static void test_request_every_split(void **state) {
    (void)state;
    env_t e;
    env_start(&e);
    size_t rq = sizeof REQ - 1, rs = sizeof RESP - 1;
    for (size_t k = 0; k <= rq; k++)
        request_once(&e, k, rs);
    for (size_t k = 0; k <= rs; k++)
        request_once(&e, rq, k);
    reel_proxy_stats_t st;
    reel_proxy_stats(e.p, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(env_stop(&e), (rq + 1) + (rs + 1));
}

/* ---- fields the Connection field names are not forwarded ---- */

/* One Connection field, then two (a field named in either goes); the
 * response's are dropped the same way on the way back. */
static void test_connection_named_fields_removed(void **state) {
    (void)state;
    static const char *const reqs[] = {
        "GET http://origin.test/c HTTP/1.1\r\n"
        "Host: origin.test\r\n"
        "X-Drop: 1\r\n"
        "Connection: keep-alive, X-Drop\r\n"
        "X-Keep: 1\r\n"
        "\r\n",
        "GET http://origin.test/c HTTP/1.1\r\n"
        "Host: origin.test\r\n"
        "Connection: X-Drop\r\n"
        "X-Drop: 1\r\n"
        "X-Keep: 1\r\n"
        "X-Two: 2\r\n"
        "connection: x-two\r\n"
        "\r\n",
    };
    static const char RESP_C[] = "HTTP/1.1 200 OK\r\n"
                                 "Content-Length: 5\r\n"
                                 "Connection: X-Secret\r\n"
                                 "X-Secret: s\r\n"
                                 "X-Origin: yes\r\n"
                                 "\r\n"
                                 "hello";
    for (size_t i = 0; i < 2; i++) {
        env_t e;
        env_start(&e);
        reel_mempipe_t *c = client_open(&e);
        reel_mempipe_feed(c, reqs[i], strlen(reqs[i]));
        run(&e);
        assert_int_equal(e.norigins, 1);
        reel_buf_t *got = reel_mempipe_sent(e.origins[0]);
        assert_true(has(got, "X-Keep: 1\r\n"));
        assert_false(has(got, "X-Drop"));
        assert_false(has(got, "X-Two"));
        assert_false(has(got, "onnection"));
        reel_mempipe_feed(e.origins[0], RESP_C, sizeof RESP_C - 1);
        run(&e);
        got = reel_mempipe_sent(c);
        assert_true(has(got, "X-Origin: yes\r\n"));
        assert_false(has(got, "X-Secret"));
        client_close(&e, c);
        free_origins(&e);
        env_stop(&e);
    }
}

/* ---- a reused upstream that closes instead of answering ---- */

static const char REQ2[] = "GET http://origin.test/b HTTP/1.1\r\n"
                           "Host: origin.test\r\n"
                           "\r\n";

static void test_retry_every_split(void **state) {
    (void)state;
    env_t e;
    env_start(&e);
    size_t rq = sizeof REQ - 1, rq2 = sizeof REQ2 - 1, rs = sizeof RESP - 1;
    for (size_t k = 0; k <= rq2; k++) {
        reel_mempipe_t *c = client_open(&e);
        reel_mempipe_feed(c, REQ, rq);
        run(&e);
        assert_int_equal(e.norigins, 1);
        reel_mempipe_feed(e.origins[0], RESP, rs);
        run(&e);
        check_response(c);
        reel_buf_reset(reel_mempipe_sent(c));
        reel_buf_reset(reel_mempipe_sent(e.origins[0]));
        /* the second request goes to the same (kept-alive) upstream */
        feed_split(&e, c, REQ2, rq2, k);
        assert_int_equal(e.norigins, 1);
        assert_true(has(reel_mempipe_sent(e.origins[0]), "GET /b HTTP/1.1\r\n"));
        /* which closes without a byte of answer: a keep-alive race */
        reel_mempipe_feed_eof(e.origins[0]);
        run(&e);
        assert_int_equal(e.norigins, 2);
        assert_true(reel_mempipe_closed(e.origins[0]));
        assert_true(has(reel_mempipe_sent(e.origins[1]), "GET /b HTTP/1.1\r\n"));
        assert_int_equal(reel_mempipe_sent(c)->len, 0); /* nothing said to the client yet */
        reel_mempipe_feed(e.origins[1], RESP, rs);
        run(&e);
        check_response(c);
        client_close(&e, c);
        free_origins(&e);
    }
    reel_proxy_stats_t st;
    reel_proxy_stats(e.p, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(env_stop(&e), 2 * (rq2 + 1));
}

/* ---- CONNECT, sniffing, TLS on both sides ---- */

/* Moves bytes between a test TLS endpoint and its pipe: what it writes is
 * fed to the pipe, what the proxy wrote to the pipe is given to it, and
 * the plaintext it decrypts is appended to `plain`. */
static void tls_pump(env_t *e, reel_tls_t *t, reel_mempipe_t *mp, bool pipe_is_client,
                     reel_buf_t *plain) {
    for (int round = 0; round < 20; round++) {
        reel_err_t err;
        reel_err_clear(&err);
        reel_buf_t *in = reel_mempipe_sent(mp);
        if (in->len) {
            size_t n = 0;
            reel_tls_feed_cipher(t, in->data, in->len, &n);
            reel_buf_consume(in, n);
        }
        if (!reel_tls_handshake_done(t))
            reel_tls_handshake(t, &err);
        if (reel_tls_handshake_done(t)) {
            uint8_t buf[4096];
            size_t n = 0;
            while (reel_tls_read_plain(t, buf, sizeof buf, &n, &err) == REEL_OK && n)
                reel_buf_append(plain, buf, n);
        }
        reel_buf_t out;
        reel_buf_init(&out, 0);
        reel_tls_take_cipher(t, &out);
        if (out.len)
            reel_mempipe_feed(mp, out.data, out.len);
        reel_buf_free(&out);
        run(e);
        (void)pipe_is_client;
    }
}

static void test_connect_tls_every_split(void **state) {
    (void)state;
    env_t e;
    env_start(&e);
    static const char CONNECT[] =
        "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n";
    static const char INNER[] = "GET /secret HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_ctx_t *cctx = NULL, *sctx = NULL;
    assert_int_equal(reel_tls_ctx_new_client(reel_ca_cert_path(e.ca), true, &cctx, &err), REEL_OK);
    assert_int_equal(reel_tls_ctx_new_server(e.ca, &sctx, &err), REEL_OK);
    /* The ClientHello's length is known after the first handshake. */
    size_t hello_len = 0;
    uint64_t runs = 0;
    for (size_t k = 0;; k++) {
        size_t origin_base = 0;
        reel_mempipe_t *c = client_open(&e);
        if (k <= sizeof CONNECT - 1)
            feed_split(&e, c, CONNECT, sizeof CONNECT - 1, k);
        else
            reel_mempipe_feed(c, CONNECT, sizeof CONNECT - 1);
        run(&e);
        reel_buf_t *got = reel_mempipe_sent(c);
        assert_true(has(got, "HTTP/1.1 200 "));
        reel_buf_reset(got);
        /* the client's TLS, trusting reel's CA only */
        reel_tls_client_opts_t co = {.host = "origin.test"};
        reel_tls_t *ct = NULL;
        assert_int_equal(reel_tls_new_client(cctx, &co, &ct, &err), REEL_OK);
        reel_tls_handshake(ct, &err);
        reel_buf_t hello;
        reel_buf_init(&hello, 0);
        reel_tls_take_cipher(ct, &hello);
        hello_len = hello.len;
        size_t split = k > sizeof CONNECT - 1 ? k - (sizeof CONNECT - 1) : hello.len / 2;
        if (split > hello.len)
            split = hello.len;
        feed_split(&e, c, (const char *)hello.data, hello.len, split);
        reel_buf_free(&hello);
        reel_buf_t plain;
        reel_buf_init(&plain, 0);
        tls_pump(&e, ct, c, true, &plain);
        assert_true(reel_tls_handshake_done(ct)); /* verified against reel's CA */
        size_t n = 0;
        assert_int_equal(
            reel_tls_write_plain(ct, (const uint8_t *)INNER, sizeof INNER - 1, &n, &err), REEL_OK);
        tls_pump(&e, ct, c, true, &plain);
        /* the origin, over TLS too */
        assert_int_equal((size_t)e.norigins, origin_base + 1);
        reel_mempipe_t *o = e.origins[origin_base];
        assert_string_equal(e.origin_host[origin_base], "origin.test");
        assert_int_equal(e.origin_port[origin_base], 443);
        reel_tls_t *ot = NULL;
        assert_int_equal(reel_tls_new_server(sctx, "origin.test", &ot, &err), REEL_OK);
        reel_buf_t oplain;
        reel_buf_init(&oplain, 0);
        tls_pump(&e, ot, o, false, &oplain);
        assert_true(reel_tls_handshake_done(ot));
        assert_true(has(&oplain, "GET /secret HTTP/1.1\r\n"));
        assert_int_equal(reel_tls_write_plain(ot, (const uint8_t *)RESP, sizeof RESP - 1, &n, &err),
                         REEL_OK);
        tls_pump(&e, ot, o, false, &oplain);
        tls_pump(&e, ct, c, true, &plain);
        assert_true(plain.len >= 5 && memcmp(plain.data + plain.len - 5, "hello", 5) == 0);
        assert_true(has(&plain, "HTTP/1.1 200 OK\r\n"));
        reel_buf_free(&plain);
        reel_buf_free(&oplain);
        reel_tls_free(ct);
        reel_tls_free(ot);
        client_close(&e, c);
        runs++;
        if (k >= sizeof CONNECT - 1 + hello_len)
            break;
        free_origins(&e);
    }
    reel_tls_ctx_free(cctx);
    reel_tls_ctx_free(sctx);
    reel_proxy_stats_t st;
    reel_proxy_stats(e.p, &st);
    assert_int_equal(st.errors, 0);
    /* one HTTP flow inside each tunnel */
    assert_int_equal(env_stop(&e), runs);
}

/* ---- Upgrade to WebSocket ---- */

static void test_upgrade_every_split(void **state) {
    (void)state;
    env_t e;
    env_start(&e);
    static const char UP[] = "GET http://origin.test/ws HTTP/1.1\r\n"
                             "Host: origin.test\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "\r\n";
    /* the 101 and a first server frame ("hello", text) in one read */
    static const char R101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "\r\n"
                               "\x81\x05hello";
    /* a masked client text frame "Hello" (RFC 6455 5.7) and a close */
    static const char CF[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
                             "\x88\x82\x11\x22\x33\x44\x12\xca";
    size_t up = sizeof UP - 1, r = sizeof R101 - 1, cf = sizeof CF - 1;
    size_t total = up + r + cf, flows = 0;
    for (size_t k = 0; k <= total; k++) {
        reel_mempipe_t *c = client_open(&e);
        feed_split(&e, c, UP, up, k <= up ? k : up);
        assert_int_equal(e.norigins, 1);
        reel_mempipe_t *o = e.origins[0];
        reel_buf_t *og = reel_mempipe_sent(o);
        assert_true(has(og, "GET /ws HTTP/1.1\r\n"));
        assert_true(has(og, "Upgrade: websocket\r\n"));
        assert_true(has(og, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        reel_buf_reset(og);
        size_t k2 = k > up && k - up <= r ? k - up : r / 2;
        feed_split(&e, o, R101, r, k2);
        reel_buf_t *cg = reel_mempipe_sent(c);
        assert_true(has(cg, "HTTP/1.1 101 Switching Protocols\r\n"));
        assert_true(has(cg, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert_true(cg->len > 11 &&
                    memcmp(cg->data + cg->len - 11, "\r\n\r\n\x81\x05hello", 11) == 0);
        size_t k3 = k > up + r ? k - up - r : cf / 2;
        feed_split(&e, c, CF, cf, k3);
        /* frames pass byte for byte */
        assert_int_equal(og->len, cf);
        assert_memory_equal(og->data, CF, cf);
        /* the server answers the close; both ends go */
        static const char SC[] = "\x88\x02\x03\xe8";
        reel_mempipe_feed(o, SC, sizeof SC - 1);
        reel_mempipe_feed_eof(o);
        run(&e);
        assert_true(cg->len >= 4 && memcmp(cg->data + cg->len - 4, SC, 4) == 0);
        client_close(&e, c);
        free_origins(&e);
        flows++;
    }
    assert_int_equal(env_stop_kind(&e, "websocket"), flows);
}

/* ---- HTTP/2 from a client (prior-knowledge h2c), served by a lane ---- */

/* A client's bytes: the preface, SETTINGS and one request on stream 1
 * (a POST with a 5-byte body when post), made by reel's own h2 codec in
 * the client role (its output is nghttp2's). */
static reel_codec_t *h2_client(bool post, reel_buf_t *out) {
    reel_codec_t *cc = reel_h2_codec_new(REEL_H2_CLIENT, NULL);
    reel_h2_t *h = reel_h2_codec_h2(cc);
    reel_field_t f[2] = {{"user-agent", 10, "t", 1}, {"cookie", 6, "a=1", 3}};
    reel_msg_head_t rq = {.method = post ? "POST" : "GET",
                          .scheme = "http",
                          .host = "origin.test",
                          .port = 80,
                          .path = "/h2?x=1",
                          .fields = f,
                          .nfields = 2};
    uint32_t sid = 0;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_h2_submit_request(h, &rq, !post, &sid, &err), REEL_OK);
    assert_int_equal(sid, 1);
    if (post)
        assert_int_equal(reel_h2_submit_data(h, sid, "12345", 5, true), REEL_OK);
    reel_buf_init(out, 0);
    assert_int_equal(reel_h2_take_output(h, out), REEL_OK);
    return cc;
}

/* What the client codec makes of reel's answer: status, body, ended. */
static void h2_answer(reel_codec_t *cc, reel_buf_t *in, uint32_t *status, reel_buf_t *body,
                      bool *ended) {
    size_t off = 0;
    for (;;) {
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(cc, in->data + off, in->len - off, &used, &ev);
        off += used;
        if (rc == REEL_NEED_MORE)
            break;
        assert_int_equal(rc, REEL_OK);
        if (ev.type == REEL_CODEC_EV_HEAD && ev.stream == 1)
            *status = ev.head.status;
        else if (ev.type == REEL_CODEC_EV_DATA && ev.stream == 1)
            reel_buf_append(body, ev.data, ev.len);
        else if (ev.type == REEL_CODEC_EV_END && ev.stream == 1)
            *ended = true;
    }
    reel_buf_reset(in);
}

static void h2_once(env_t *e, bool post, size_t k_req, size_t k_resp) {
    reel_buf_t req;
    reel_codec_t *cc = h2_client(post, &req);
    reel_mempipe_t *c = client_open(e);
    feed_split(e, c, (const char *)req.data, req.len, k_req);
    assert_int_equal(e->norigins, 1);
    reel_mempipe_t *o = e->origins[0];
    reel_buf_t *og = reel_mempipe_sent(o);
    /* the stream as HTTP/1.1: Host from :authority, origin form upstream */
    assert_true(has(og, post ? "POST /h2?x=1 HTTP/1.1\r\n" : "GET /h2?x=1 HTTP/1.1\r\n"));
    assert_true(has(og, "Host: origin.test\r\n"));
    assert_true(has(og, "user-agent: t\r\n"));
    assert_true(has(og, "cookie: a=1\r\n"));
    if (post) { /* no length: chunked, cut wherever the DATA was */
        assert_true(has(og, "transfer-encoding: chunked\r\n"));
        const char *p = memmem(og->data, og->len, "\r\n\r\n", 4);
        assert_non_null(p);
        p += 4;
        const char *end = (const char *)og->data + og->len;
        char got[16];
        size_t n = 0;
        for (;;) {
            char *eol = NULL;
            unsigned long sz = strtoul(p, &eol, 16);
            assert_true(eol + 2 <= end && eol[0] == '\r' && eol[1] == '\n');
            p = eol + 2;
            if (sz == 0)
                break;
            assert_true(n + sz <= sizeof got && p + sz + 2 <= end);
            memcpy(got + n, p, sz);
            n += sz;
            p += sz + 2;
        }
        assert_true(p + 2 == end && memcmp(p, "\r\n", 2) == 0);
        assert_int_equal(n, 5);
        assert_memory_equal(got, "12345", 5);
    }
    else
        assert_true(og->len > 4 && memcmp(og->data + og->len - 4, "\r\n\r\n", 4) == 0);
    feed_split(e, o, RESP, sizeof RESP - 1, k_resp);
    uint32_t status = 0;
    bool ended = false;
    reel_buf_t body;
    reel_buf_init(&body, 0);
    h2_answer(cc, reel_mempipe_sent(c), &status, &body, &ended);
    assert_int_equal(status, 200);
    assert_int_equal(body.len, 5);
    assert_memory_equal(body.data, "hello", 5);
    assert_true(ended);
    reel_buf_free(&body);
    reel_buf_free(&req);
    reel_codec_free(cc);
    client_close(e, c);
    free_origins(e);
}

static void test_h2c_every_split(void **state) {
    (void)state;
    env_t e;
    env_start(&e);
    e.p->http2 = true;
    reel_buf_t b;
    reel_codec_free(h2_client(false, &b));
    size_t get = b.len;
    reel_buf_free(&b);
    reel_codec_free(h2_client(true, &b));
    size_t post = b.len;
    reel_buf_free(&b);
    size_t rs = sizeof RESP - 1, flows = 0;
    for (size_t k = 0; k <= get; k++, flows++)
        h2_once(&e, false, k, rs);
    for (size_t k = 0; k <= post; k++, flows++)
        h2_once(&e, true, k, rs / 2);
    for (size_t k = 0; k <= rs; k++, flows++)
        h2_once(&e, false, get, k);
    assert_int_equal(env_stop(&e), flows);
}

/* ---- errors ---- */

/* An unreachable origin: the client gets a 502 naming why, the flow ends
 * with that error (and reel's answer as its response), counted once; the
 * same for a raw tunnel whose origin is unreachable. */
static void test_refused_counted_once(void **state) {
    (void)state;
    env_t e;
    env_start(&e);
    e.refuse = "cannot connect to origin.test:80 (mem): refused";
    reel_mempipe_t *c = client_open(&e);
    reel_mempipe_feed(c, REQ, sizeof REQ - 1);
    run(&e);
    reel_buf_t *got = reel_mempipe_sent(c);
    assert_true(has(got, "HTTP/1.1 502 "));
    assert_true(has(got, "refused"));
    client_close(&e, c);
    free_origins(&e);
    reel_proxy_stats_t st;
    reel_proxy_stats(e.p, &st);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.flows, 1);
    /* a CONNECT whose first bytes are neither TLS nor HTTP: a raw tunnel,
     * its upstream refused after the 200 */
    c = client_open(&e);
    static const char CONNECT[] = "CONNECT origin.test:7 HTTP/1.1\r\nHost: origin.test:7\r\n\r\n"
                                  "\x00\x01binary";
    reel_mempipe_feed(c, CONNECT, sizeof CONNECT - 1);
    run(&e);
    assert_true(has(reel_mempipe_sent(c), "HTTP/1.1 200 "));
    assert_true(reel_mempipe_closed(c));
    reel_mempipe_free(c);
    free_origins(&e);
    reel_proxy_stats(e.p, &st);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.flows, 2);
    assert_int_equal(env_stop_full(&e, NULL, e.refuse), 2);
}

/* max_head_size holds inside an intercepted tunnel too: a request head
 * over it gets a 431 through the client's TLS. */
static void test_head_limit_inside_tunnel(void **state) {
    (void)state;
    env_t e;
    env_start_limited(&e, 2048);
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_ctx_t *cctx = NULL;
    assert_int_equal(reel_tls_ctx_new_client(reel_ca_cert_path(e.ca), true, &cctx, &err), REEL_OK);
    reel_mempipe_t *c = client_open(&e);
    static const char CONNECT[] =
        "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n";
    reel_mempipe_feed(c, CONNECT, sizeof CONNECT - 1);
    run(&e);
    reel_buf_reset(reel_mempipe_sent(c));
    reel_tls_client_opts_t co = {.host = "origin.test"};
    reel_tls_t *ct = NULL;
    assert_int_equal(reel_tls_new_client(cctx, &co, &ct, &err), REEL_OK);
    reel_buf_t plain;
    reel_buf_init(&plain, 0);
    tls_pump(&e, ct, c, true, &plain);
    assert_true(reel_tls_handshake_done(ct));
    reel_buf_t big;
    reel_buf_init(&big, 0);
    reel_buf_puts(&big, "GET / HTTP/1.1\r\nHost: origin.test\r\nX-Big: ");
    for (int i = 0; i < 3000; i++)
        reel_buf_append(&big, "a", 1);
    reel_buf_puts(&big, "\r\n\r\n");
    size_t n = 0, off = 0;
    while (off < big.len) {
        assert_int_equal(reel_tls_write_plain(ct, big.data + off, big.len - off, &n, &err),
                         REEL_OK);
        off += n;
        tls_pump(&e, ct, c, true, &plain);
    }
    tls_pump(&e, ct, c, true, &plain);
    assert_true(has(&plain, "HTTP/1.1 431 "));
    assert_int_equal(e.norigins, 0);
    reel_buf_free(&big);
    reel_buf_free(&plain);
    reel_tls_free(ct);
    reel_tls_ctx_free(cctx);
    client_close(&e, c);
    /* with the head's first 1,024 bytes as they came */
    reel_buf_t want;
    reel_buf_init(&want, 0);
    reel_buf_puts(&want, "header section too large (the request head as it came: \"GET / "
                         "HTTP/1.1\\r\\nHost: origin.test\\r\\nX-Big: ");
    for (int i = 0; i < 1024 - 42; i++)
        reel_buf_append(&want, "a", 1);
    reel_buf_puts(&want, "...\")");
    assert_int_equal(env_stop_full(&e, "http", (const char *)want.data), 1);
    reel_buf_free(&want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_every_split),
        cmocka_unit_test(test_connection_named_fields_removed),
        cmocka_unit_test(test_retry_every_split),
        cmocka_unit_test(test_connect_tls_every_split),
        cmocka_unit_test(test_upgrade_every_split),
        cmocka_unit_test(test_h2c_every_split),
        cmocka_unit_test(test_refused_counted_once),
        cmocka_unit_test(test_head_limit_inside_tunnel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
