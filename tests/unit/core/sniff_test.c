/* Tests for src/core/sniff.c: tunnel sniffing (TLS, HTTP/1, anything else)
 * and ClientHello parsing, on real ClientHellos made by OpenSSL (TLS 1.2 and
 * 1.3 clients, with and without SNI and ALPN) and on hand-made hostile ones.
 *
 * Both functions are stateless: the caller keeps what the client sent and
 * calls again on all of it after every read. So "split at every byte
 * boundary" means here: every prefix of an input, each in its own heap
 * buffer of exactly that size (ASan catches a read past len), must answer
 * NEED_MORE or the final answer, and once a prefix answers something other
 * than NEED_MORE every longer one gives the same answer -- which is what a
 * caller receiving the input in any two (or more) pieces sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/ssl.h>

#include "base/mem.h"
#include "core/sniff.h"

/* ---- byte building ---- */

static void put8(reel_buf_t *b, size_t v) {
    uint8_t c = (uint8_t)v;
    assert_int_equal(reel_buf_append(b, &c, 1), REEL_OK);
}

static void put16(reel_buf_t *b, size_t v) {
    put8(b, v >> 8);
    put8(b, v);
}

static void put24(reel_buf_t *b, size_t v) {
    put8(b, v >> 16);
    put16(b, v & 0xffff);
}

static void put(reel_buf_t *b, const void *p, size_t n) {
    if (n == 0)
        return;
    assert_int_equal(reel_buf_append(b, p, n), REEL_OK);
}

static void puts_(reel_buf_t *b, const char *s) {
    put(b, s, strlen(s));
}

/* Starts a vector with a 1-, 2- or 3-byte length; returns where it starts. */
static size_t open_vec(reel_buf_t *b, int width) {
    size_t at = b->len;
    for (int i = 0; i < width; i++)
        put8(b, 0);
    return at;
}

static void close_vec(reel_buf_t *b, size_t at, int width) {
    size_t n = b->len - at - (size_t)width;
    for (int i = width - 1; i >= 0; i--, n >>= 8)
        b->data[at + (size_t)i] = (uint8_t)n;
}

/* One extension: type, then data. */
static void put_ext(reel_buf_t *b, size_t type, const void *data, size_t n) {
    put16(b, type);
    put16(b, n);
    put(b, data, n);
}

/* server_name data with one host_name. */
static void sni_data(reel_buf_t *d, const char *host, size_t host_len) {
    size_t l = open_vec(d, 2);
    put8(d, 0);
    put16(d, host_len);
    put(d, host, host_len);
    close_vec(d, l, 2);
}

/* A ClientHello handshake message (header included) around the given
 * extensions block contents; exts == NULL leaves the block out. */
static void hello_msg(reel_buf_t *m, const reel_buf_t *exts) {
    put8(m, 1);
    size_t l = open_vec(m, 3);
    put16(m, 0x0303);
    for (int i = 0; i < 32; i++)
        put8(m, (size_t)i);
    put8(m, 0); /* session id */
    put16(m, 4);
    put16(m, 0x1301);
    put16(m, 0xc02f);
    put8(m, 1);
    put8(m, 0); /* null compression */
    if (exts) {
        size_t e = open_vec(m, 2);
        put(m, exts->data, exts->len);
        close_vec(m, e, 2);
    }
    close_vec(m, l, 3);
}

/* Frames a handshake message into records cut at the given offsets. */
static void frame(reel_buf_t *out, const uint8_t *msg, size_t n, const size_t *cuts, size_t ncuts) {
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        put8(out, 22);
        put16(out, 0x0301);
        put16(out, to - from);
        put(out, msg + from, to - from);
        from = to;
    }
}

/* A one-record ClientHello with these extensions (NULL: none). */
static void hello(reel_buf_t *out, const reel_buf_t *exts) {
    reel_buf_t m = {0};
    hello_msg(&m, exts);
    frame(out, m.data, m.len, NULL, 0);
    reel_buf_free(&m);
}

/* ---- ClientHellos from OpenSSL ---- */

typedef struct {
    int min_version, max_version; /* 0: OpenSSL's default */
    const char *sni;
    const uint8_t *alpn; /* wire format */
    size_t alpn_len;
} ossl_opts_t;

static void openssl_hello(const ossl_opts_t *o, reel_buf_t *out) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (o->min_version)
        assert_int_equal(SSL_CTX_set_min_proto_version(ctx, o->min_version), 1);
    if (o->max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, o->max_version), 1);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    assert_non_null(rb);
    assert_non_null(wb);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    if (o->sni)
        assert_int_equal(SSL_set_tlsext_host_name(ssl, o->sni), 1);
    if (o->alpn) /* returns 0 on success */
        assert_int_equal(SSL_set_alpn_protos(ssl, o->alpn, (unsigned)o->alpn_len), 0);
    int r = SSL_do_handshake(ssl);
    assert_true(r <= 0);
    assert_int_equal(SSL_get_error(ssl, r), SSL_ERROR_WANT_READ);
    char *data = NULL;
    long n = BIO_get_mem_data(wb, &data);
    assert_true(n > 0);
    put(out, data, (size_t)n);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static const uint8_t alpn_h2_h1[] = "\x02h2\x08http/1.1";

/* ---- replay checks ---- */

static uint8_t *heap_copy(const uint8_t *p, size_t n) {
    uint8_t *c = reel_malloc(n);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* Sniffs buf whole and every prefix of it (see the top of the file).
 * Returns how many bytes the answer took. */
static size_t check_sniff(const void *buf, size_t len, reel_sniff_kind want) {
    size_t decided_at = 0;
    reel_sniff_kind prev = REEL_SNIFF_NEED_MORE;
    for (size_t k = 0; k <= len; k++) {
        uint8_t *c = heap_copy(buf, k);
        reel_sniff_kind got = reel_sniff(c, k);
        free(c);
        if (prev != REEL_SNIFF_NEED_MORE && got != prev)
            fail_msg("sniff changed its mind at %zu: %s after %s", k, reel_sniff_kind_name(got),
                     reel_sniff_kind_name(prev));
        if (got != REEL_SNIFF_NEED_MORE && got != want)
            fail_msg("sniff of %zu bytes: %s, want %s", k, reel_sniff_kind_name(got),
                     reel_sniff_kind_name(want));
        if (prev == REEL_SNIFF_NEED_MORE && got != REEL_SNIFF_NEED_MORE)
            decided_at = k;
        prev = got;
    }
    if (prev != want)
        fail_msg("sniff of all %zu bytes: %s, want %s", len, reel_sniff_kind_name(prev),
                 reel_sniff_kind_name(want));
    return decided_at;
}

static void check_sniff_str(const char *s, reel_sniff_kind want) {
    check_sniff(s, strlen(s), want);
}

static void assert_same_hello(const reel_clienthello_t *a, const reel_clienthello_t *b) {
    assert_int_equal(a->consumed, b->consumed);
    assert_int_equal(a->records, b->records);
    assert_int_equal(a->record_version, b->record_version);
    assert_int_equal(a->legacy_version, b->legacy_version);
    assert_int_equal(a->sni_status, b->sni_status);
    assert_string_equal(a->sni, b->sni);
    assert_ptr_equal(a->sni_problem, b->sni_problem);
    assert_int_equal(a->has_alpn, b->has_alpn);
    assert_int_equal(a->alpn_count, b->alpn_count);
    for (size_t i = 0; i < a->alpn_count; i++) {
        assert_int_equal(a->alpn_len[i], b->alpn_len[i]);
        assert_memory_equal(a->alpn[i], b->alpn[i], a->alpn_len[i] + 1u);
    }
    assert_int_equal(a->alpn_truncated, b->alpn_truncated);
    assert_int_equal(a->has_supported_versions, b->has_supported_versions);
    assert_int_equal(a->max_supported_version, b->max_supported_version);
    assert_int_equal(a->tls13, b->tls13);
    assert_ptr_equal(a->reason, b->reason);
}

/* Parses buf whole, then every prefix (all of them up to 4 KiB of input,
 * beyond that every 61st and those near record boundaries), each of which
 * must give NEED_MORE or exactly the final result, and never go back to
 * NEED_MORE once decided. Fills *out with the whole-input result. */
static reel_rc check_parse(const void *buf, size_t len, reel_rc want, reel_clienthello_t *out) {
    uint8_t *c = heap_copy(buf, len);
    reel_rc rc = reel_clienthello_parse(c, len, out);
    free(c);
    if (rc != want)
        fail_msg("parse of %zu bytes: %s (%s), want %s", len, reel_rc_name(rc),
                 out->reason ? out->reason : "-", reel_rc_name(want));
    if (rc == REEL_OK)
        assert_null(out->reason);
    else
        assert_non_null(out->reason);
    if (rc == REEL_OK || rc == REEL_NEED_MORE)
        assert_true(out->consumed <= len);

    bool decided = false;
    for (size_t k = 0; k < len; k++) {
        if (len > 4096 && k % 61 != 0 && k + 8 < len) {
            /* sample: keep prefixes within 8 bytes of a record boundary */
            bool near = false;
            for (size_t p = 0; p + 5 <= len && p <= k + 8;) {
                if (k + 8 >= p && k <= p + 8)
                    near = true;
                size_t rl =
                    (size_t)((const uint8_t *)buf)[p + 3] << 8 | ((const uint8_t *)buf)[p + 4];
                p += 5 + rl;
            }
            if (!near)
                continue;
        }
        reel_clienthello_t part;
        c = heap_copy(buf, k);
        reel_rc prc = reel_clienthello_parse(c, k, &part);
        free(c);
        if (prc == REEL_NEED_MORE) {
            if (decided)
                fail_msg("prefix of %zu bytes went back to NEED_MORE", k);
            assert_non_null(part.reason);
            continue;
        }
        if (prc != rc)
            fail_msg("prefix of %zu of %zu bytes: %s (%s), want NEED_MORE or %s", k, len,
                     reel_rc_name(prc), part.reason ? part.reason : "-", reel_rc_name(rc));
        decided = true;
        assert_same_hello(&part, out);
    }
    return rc;
}

/* ---- sniffing ---- */

static void test_sniff_openssl_hellos(void **state) {
    (void)state;
    const ossl_opts_t opts[] = {
        {.max_version = TLS1_2_VERSION},
        {.max_version = TLS1_2_VERSION, .sni = "example.com", .alpn = alpn_h2_h1, .alpn_len = 12},
        {.min_version = TLS1_3_VERSION, .sni = "example.com", .alpn = alpn_h2_h1, .alpn_len = 12},
        {.min_version = TLS1_3_VERSION},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        reel_buf_t b = {0};
        openssl_hello(&opts[i], &b);
        assert_int_equal(check_sniff(b.data, b.len, REEL_SNIFF_TLS), 6);
        reel_buf_free(&b);
    }
}

static void test_sniff_tls_edges(void **state) {
    (void)state;
    /* handshake type 2 (ServerHello), record versions 3.0 and 3.5, 2.x */
    assert_int_equal(check_sniff("\x16\x03\x01\x00\x05\x02", 6, REEL_SNIFF_OTHER), 6);
    assert_int_equal(check_sniff("\x16\x03\x00\x00\x05\x01", 6, REEL_SNIFF_OTHER), 3);
    assert_int_equal(check_sniff("\x16\x03\x05\x00\x05\x01", 6, REEL_SNIFF_OTHER), 3);
    assert_int_equal(check_sniff("\x16\x02\x01\x00\x05\x01", 6, REEL_SNIFF_OTHER), 2);
    /* record length 0, 16385, and far too long */
    assert_int_equal(check_sniff("\x16\x03\x01\x00\x00\x01", 6, REEL_SNIFF_OTHER), 5);
    assert_int_equal(check_sniff("\x16\x03\x01\x40\x01\x01", 6, REEL_SNIFF_OTHER), 5);
    assert_int_equal(check_sniff("\x16\x03\x03\x40\x00\x01", 6, REEL_SNIFF_TLS), 6);
    assert_int_equal(check_sniff("\x16\x03\x01\x41\x00\x01", 6, REEL_SNIFF_OTHER), 4);
    /* TLS 1.3 record version, minimal */
    assert_int_equal(check_sniff("\x16\x03\x04\x00\x01\x01", 6, REEL_SNIFF_TLS), 6);
    /* application data, alert, SSLv2 hello */
    assert_int_equal(check_sniff("\x17\x03\x03\x00\x05", 5, REEL_SNIFF_OTHER), 1);
    assert_int_equal(check_sniff("\x15\x03\x03\x00\x02\x02\x28", 7, REEL_SNIFF_OTHER), 1);
    assert_int_equal(check_sniff("\x80\x2e\x01\x03\x01", 5, REEL_SNIFF_OTHER), 1);
    assert_int_equal(reel_sniff(NULL, 0), REEL_SNIFF_NEED_MORE);
}

static void test_sniff_http(void **state) {
    (void)state;
    const char *ws = "GET /chat HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(check_sniff(ws, strlen(ws), REEL_SNIFF_HTTP), 4);
    const char *std[] = {
        "GET / HTTP/1.1\r\n",     "HEAD / HTTP/1.1\r\n",    "POST /x HTTP/1.0\r\n",
        "PUT /x HTTP/1.1\r\n",    "DELETE /x HTTP/1.1\r\n", "CONNECT a.example:443 HTTP/1.1\r\n",
        "OPTIONS * HTTP/1.1\r\n", "TRACE / HTTP/1.1\r\n",   "PATCH /x HTTP/1.1\r\n"};
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++) {
        size_t method = (size_t)(strchr(std[i], ' ') - std[i]);
        assert_int_equal(check_sniff(std[i], strlen(std[i]), REEL_SNIFF_HTTP), method + 1);
    }
    /* extension methods need the whole "target HTTP/1." */
    const char *ext = "PROPFIND /dav/ HTTP/1.1\r\n";
    assert_int_equal(check_sniff(ext, strlen(ext), REEL_SNIFF_HTTP),
                     strlen("PROPFIND /dav/ HTTP/1."));
    check_sniff_str("get / HTTP/1.0\r\n", REEL_SNIFF_HTTP);
    check_sniff_str("M-SEARCH * HTTP/1.1\r\n", REEL_SNIFF_HTTP);
    check_sniff_str("BASELINE-CONTROL /a HTTP/1.1\r\n", REEL_SNIFF_HTTP);
    check_sniff_str("GETX /caf\xc3\xa9 HTTP/1.1\r\n", REEL_SNIFF_HTTP);
    /* after empty lines (RFC 9112 2.2: at least one is ignored) */
    check_sniff_str("\r\nGET / HTTP/1.1\r\n", REEL_SNIFF_HTTP);
    check_sniff_str("\n\r\n\r\nPOST /x HTTP/1.1\r\n", REEL_SNIFF_HTTP);
    /* not yet sure */
    const char *pending[] = {"G", "GE", "GET",  "GETX",      "FOO /", "FOO /x", "FOO /x HTTP/1",
                             "P", "\r", "\r\n", "\r\n\r\nGE"};
    for (size_t i = 0; i < sizeof pending / sizeof pending[0]; i++)
        assert_int_equal(reel_sniff((const uint8_t *)pending[i], strlen(pending[i])),
                         REEL_SNIFF_NEED_MORE);
}

static void test_sniff_other(void **state) {
    (void)state;
    /* an SSH client banner: token chars, then a space, then CR */
    check_sniff_str("SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("SSH-2.0-Go\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("FOO / HTTP/2.0\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REEL_SNIFF_OTHER);
    /* more empty lines than a request line may follow */
    check_sniff_str("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("\r\n\x16\x03\x01", REEL_SNIFF_OTHER);
    check_sniff_str(" GET / HTTP/1.1\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("GET\t/ HTTP/1.1\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("FOO  / HTTP/1.1\r\n", REEL_SNIFF_OTHER); /* empty target */
    check_sniff_str("FOO /a\tb HTTP/1.1\r\n", REEL_SNIFF_OTHER);
    check_sniff_str("EHLO mail.example\r\n", REEL_SNIFF_OTHER);
    check_sniff("\0\0\0\0", 4, REEL_SNIFF_OTHER);
    /* method token cap: 20 bytes may still be a method, 21 not */
    char tok[64];
    memset(tok, 'A', sizeof tok);
    assert_int_equal(reel_sniff((const uint8_t *)tok, REEL_SNIFF_MAX_METHOD), REEL_SNIFF_NEED_MORE);
    assert_int_equal(check_sniff(tok, sizeof tok, REEL_SNIFF_OTHER), REEL_SNIFF_MAX_METHOD + 1);
    /* an extension method whose target never ends: decided at the cap */
    reel_buf_t b = {0};
    puts_(&b, "FOO /");
    while (b.len < REEL_SNIFF_MAX_BYTES + 100)
        put8(&b, 'a');
    assert_int_equal(check_sniff(b.data, b.len, REEL_SNIFF_OTHER), REEL_SNIFF_MAX_BYTES);
    reel_buf_free(&b);
}

#define WRONG(lit, want)                                                                           \
    assert_int_equal(reel_sniff_wrong_proxy((const uint8_t *)(lit), sizeof(lit) - 1), (want))

static void test_sniff_wrong_proxy(void **state) {
    (void)state;
    /* the bytes curl sends to a proxy given as https://, socks4:// and
     * socks4a:// (socks5:// is served: core/socks.h) */
    WRONG("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", REEL_WRONG_PROXY_TLS);
    WRONG("\x04\x01\xca\x1b\x7f\x00\x00\x01\x00", REEL_WRONG_PROXY_SOCKS4);
    WRONG("\x04\x01\x00\x50\x00\x00\x00\x01user\x00"
          "example.com\x00",
          REEL_WRONG_PROXY_SOCKS4);
    /* cut short, or more than the client sends before it waits */
    WRONG("\x16\x03\x01\x02\x00", REEL_WRONG_PROXY_NONE);
    WRONG("\x16\x03\x01\x02\x00\x02", REEL_WRONG_PROXY_NONE); /* a ServerHello */
    WRONG("\x04\x01\xca\x1b\x7f\x00\x00\x01", REEL_WRONG_PROXY_NONE);
    WRONG("\x04\x01\xca\x1b\x7f\x00\x00\x01"
          "ab",
          REEL_WRONG_PROXY_NONE);
    WRONG("\x04\x01\xca\x1b\x7f\x00\x00\x01\x00x", REEL_WRONG_PROXY_NONE);
    WRONG("\x04\x03\xca\x1b\x7f\x00\x00\x01\x00", REEL_WRONG_PROXY_NONE);     /* no command 3 */
    WRONG("\x04\x01\x00\x50\x00\x00\x00\x01\x00", REEL_WRONG_PROXY_NONE);     /* 4a, no host */
    WRONG("\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00", REEL_WRONG_PROXY_NONE); /* 4a, empty host */
    WRONG("\x04\x01\x00\x50\x00\x00\x00\x01\x00host", REEL_WRONG_PROXY_NONE); /* 4a, host cut */
    WRONG("\x05\x02\x00\x01", REEL_WRONG_PROXY_NONE);                         /* SOCKS5: served */
    WRONG("GET / HTTP/1.1\r\n\r\n", REEL_WRONG_PROXY_NONE);
    WRONG("", REEL_WRONG_PROXY_NONE);
}

static uint32_t rnd_state = 0x2545f491u;
static uint32_t rnd(void) {
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

static void test_sniff_random(void **state) {
    (void)state;
    for (int i = 0; i < 300; i++) {
        uint8_t buf[64];
        size_t n = rnd() % sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)rnd();
        if (i % 3 == 0 && n > 0)
            buf[0] = 22;
        reel_sniff_kind want = reel_sniff(buf, n);
        if (want != REEL_SNIFF_NEED_MORE)
            check_sniff(buf, n, want);
    }
    /* one fixed random-looking blob */
    check_sniff("\x9b\x3f\x00\x11\xfe\x42", 6, REEL_SNIFF_OTHER);
}

/* ---- ClientHello from OpenSSL ---- */

typedef struct {
    ossl_opts_t o;
    const char *sni;     /* expected; NULL: none */
    const char *alpn[3]; /* expected, NULL-terminated */
    bool supported_versions;
    bool tls13;
} ossl_case_t;

static const ossl_case_t ossl_cases[] = {
    {{.max_version = TLS1_2_VERSION}, NULL, {NULL}, false, false},
    {{.max_version = TLS1_2_VERSION, .sni = "example.com"}, "example.com", {NULL}, false, false},
    {{.max_version = TLS1_2_VERSION, .sni = "Www.Example.ORG", .alpn = alpn_h2_h1, .alpn_len = 12},
     "Www.Example.ORG",
     {"h2", "http/1.1", NULL},
     false,
     false},
    {{.min_version = TLS1_3_VERSION}, NULL, {NULL}, true, true},
    {{.min_version = TLS1_3_VERSION, .sni = "a.b.example", .alpn = alpn_h2_h1, .alpn_len = 12},
     "a.b.example",
     {"h2", "http/1.1", NULL},
     true,
     true},
    {{.min_version = TLS1_3_VERSION, .alpn = (const uint8_t *)"\x08http/1.1", .alpn_len = 9},
     NULL,
     {"http/1.1", NULL},
     true,
     true},
    {{.sni = "xn--bcher-kva.example"}, "xn--bcher-kva.example", {NULL}, true, true},
};

static void check_ossl_case(const ossl_case_t *c, const reel_clienthello_t *h) {
    assert_int_equal(h->record_version, 0x0301);
    assert_int_equal(h->legacy_version, 0x0303);
    if (c->sni) {
        assert_int_equal(h->sni_status, REEL_CH_SNI_OK);
        assert_string_equal(h->sni, c->sni);
        assert_null(h->sni_problem);
    } else {
        assert_int_equal(h->sni_status, REEL_CH_SNI_NONE);
        assert_string_equal(h->sni, "");
    }
    size_t n = 0;
    while (c->alpn[n])
        n++;
    assert_int_equal(h->has_alpn, n > 0);
    assert_int_equal(h->alpn_count, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(h->alpn[i], c->alpn[i]);
        assert_int_equal(h->alpn_len[i], strlen(c->alpn[i]));
    }
    assert_false(h->alpn_truncated);
    assert_int_equal(h->has_supported_versions, c->supported_versions);
    assert_int_equal(h->tls13, c->tls13);
    assert_int_equal(h->max_supported_version, c->supported_versions ? 0x0304 : 0);
}

static void test_hello_openssl(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof ossl_cases / sizeof ossl_cases[0]; i++) {
        reel_buf_t b = {0};
        openssl_hello(&ossl_cases[i].o, &b);
        reel_clienthello_t h;
        check_parse(b.data, b.len, REEL_OK, &h);
        assert_int_equal(h.consumed, b.len);
        assert_int_equal(h.records, 1);
        check_ossl_case(&ossl_cases[i], &h);

        /* what the client sends next stays outside: a CCS record, then data */
        put(&b, "\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x10", 11);
        reel_clienthello_t h2;
        check_parse(b.data, b.len, REEL_OK, &h2);
        assert_int_equal(h2.consumed, h.consumed);
        check_ossl_case(&ossl_cases[i], &h2);
        reel_buf_free(&b);
    }
}

/* The OpenSSL ClientHello reframed: two records cut at every offset (also
 * inside the 4-byte handshake header), three records, one byte per record. */
static void test_hello_fragmented(void **state) {
    (void)state;
    const ossl_case_t *c = &ossl_cases[4];
    reel_buf_t b = {0};
    openssl_hello(&c->o, &b);
    const uint8_t *msg = b.data + 5;
    size_t n = b.len - 5;
    assert_int_equal(n, (size_t)b.data[3] << 8 | b.data[4]);

    for (size_t cut = 1; cut < n; cut++) {
        reel_buf_t f = {0};
        frame(&f, msg, n, &cut, 1);
        reel_clienthello_t h;
        check_parse(f.data, f.len, REEL_OK, &h);
        assert_int_equal(h.records, 2);
        assert_int_equal(h.consumed, f.len);
        check_ossl_case(c, &h);
        assert_int_equal(reel_sniff(f.data, f.len), REEL_SNIFF_TLS);
        reel_buf_free(&f);
    }

    size_t three[] = {2, n / 2};
    reel_buf_t f = {0};
    frame(&f, msg, n, three, 2);
    reel_clienthello_t h;
    check_parse(f.data, f.len, REEL_OK, &h);
    assert_int_equal(h.records, 3);
    check_ossl_case(c, &h);
    reel_buf_free(&f);

    size_t *cuts = reel_malloc(n * sizeof *cuts);
    for (size_t i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    frame(&f, msg, n, cuts, n - 1);
    check_parse(f.data, f.len, REEL_OK, &h);
    assert_int_equal(h.records, n);
    assert_int_equal(h.consumed, f.len);
    check_ossl_case(c, &h);
    free(cuts);
    reel_buf_free(&f);
    reel_buf_free(&b);
}

/* Every single-byte change of a real ClientHello: no crash, no read out of
 * bounds (ASan), and a result that is one of the documented ones. */
static void test_hello_mutations(void **state) {
    (void)state;
    reel_buf_t b = {0};
    openssl_hello(&ossl_cases[4].o, &b);
    const uint8_t vals[] = {0x00, 0x01, 0x7f, 0xff};
    for (size_t i = 0; i < b.len; i++) {
        uint8_t *c = heap_copy(b.data, b.len);
        for (size_t v = 0; v < sizeof vals; v++) {
            c[i] = vals[v];
            reel_clienthello_t h;
            reel_rc rc = reel_clienthello_parse(c, b.len, &h);
            assert_true(rc == REEL_OK || rc == REEL_NEED_MORE || rc == REEL_INVALID ||
                        rc == REEL_CORRUPT || rc == REEL_LIMIT);
            assert_true((rc == REEL_OK) == (h.reason == NULL));
            if (rc == REEL_OK)
                assert_true(h.consumed <= b.len);
            (void)reel_sniff(c, b.len);
        }
        free(c);
    }
    reel_buf_free(&b);
}

/* ---- hand-made ClientHellos ---- */

static void test_hello_minimal(void **state) {
    (void)state;
    /* no extensions block at all (allowed before TLS 1.3) */
    reel_buf_t b = {0};
    hello(&b, NULL);
    reel_clienthello_t h;
    check_parse(b.data, b.len, REEL_OK, &h);
    assert_int_equal(h.sni_status, REEL_CH_SNI_NONE);
    assert_false(h.has_alpn);
    assert_false(h.has_supported_versions);
    assert_false(h.tls13);
    check_sniff(b.data, b.len, REEL_SNIFF_TLS);
    reel_buf_free(&b);

    /* an empty extensions block */
    reel_buf_t e = {0};
    hello(&b, &e);
    check_parse(b.data, b.len, REEL_OK, &h);
    reel_buf_free(&b);
}

/* A hello with one extension of this type and data. */
static reel_rc parse_one_ext(size_t type, const reel_buf_t *data, reel_rc want,
                             reel_clienthello_t *h) {
    reel_buf_t e = {0}, b = {0};
    put_ext(&e, type, data->data, data->len);
    hello(&b, &e);
    reel_rc rc = check_parse(b.data, b.len, want, h);
    reel_buf_free(&e);
    reel_buf_free(&b);
    return rc;
}

static void sni_case(const char *host, size_t host_len, reel_ch_sni_status want,
                     const char *problem) {
    reel_buf_t d = {0};
    sni_data(&d, host, host_len);
    reel_clienthello_t h;
    parse_one_ext(0, &d, REEL_OK, &h);
    if (h.sni_status != want)
        fail_msg("SNI '%.*s': status %d, want %d", (int)host_len, host, (int)h.sni_status,
                 (int)want);
    if (want == REEL_CH_SNI_OK) {
        assert_memory_equal(h.sni, host, host_len);
        assert_int_equal(strlen(h.sni), host_len);
    } else {
        assert_string_equal(h.sni, "");
        assert_non_null(h.sni_problem);
        if (problem)
            assert_string_equal(h.sni_problem, problem);
    }
    reel_buf_free(&d);
}

static void test_hello_sni(void **state) {
    (void)state;
    sni_case("example.com", 11, REEL_CH_SNI_OK, NULL);
    sni_case("EXAMPLE.com", 11, REEL_CH_SNI_OK, NULL);
    sni_case("a-b.c0", 6, REEL_CH_SNI_OK, NULL);
    sni_case("localhost", 9, REEL_CH_SNI_OK, NULL);
    sni_case("", 0, REEL_CH_SNI_INVALID, "empty host name");
    /* the absolute form is the same name, without its dot (the CA's leaf
     * is for that name, so the origin must be checked against it) */
    {
        reel_buf_t d = {0};
        sni_data(&d, "example.com.", 12);
        reel_clienthello_t h;
        parse_one_ext(0, &d, REEL_OK, &h);
        assert_int_equal(h.sni_status, REEL_CH_SNI_OK);
        assert_string_equal(h.sni, "example.com");
        reel_buf_free(&d);
    }
    sni_case("example.com..", 13, REEL_CH_SNI_INVALID, "empty label in host name");
    sni_case(".", 1, REEL_CH_SNI_INVALID, "empty label in host name");
    sni_case(".example.com", 12, REEL_CH_SNI_INVALID, "empty label in host name");
    sni_case("a..b", 4, REEL_CH_SNI_INVALID, "empty label in host name");
    sni_case("my_host.example", 15, REEL_CH_SNI_OK, NULL);
    sni_case("my=host.example", 15, REEL_CH_SNI_INVALID, "byte not allowed in a host name");
    sni_case("a b", 3, REEL_CH_SNI_INVALID, "byte not allowed in a host name");
    sni_case("evil.com\0.good.com", 18, REEL_CH_SNI_INVALID, "byte not allowed in a host name");
    sni_case("caf\xc3\xa9.example", 13, REEL_CH_SNI_INVALID, "byte not allowed in a host name");

    /* lengths: 63-byte labels, 253 bytes total; 64-byte label; 254, 255, 300 */
    char name[400];
    memset(name, 'a', sizeof name);
    for (size_t i = 63; i < sizeof name; i += 64)
        name[i] = '.';
    sni_case(name, 253, REEL_CH_SNI_OK, NULL);
    name[253] = 'a';
    sni_case(name, 254, REEL_CH_SNI_INVALID, "host name longer than 253 bytes");
    sni_case(name, 255, REEL_CH_SNI_INVALID, "host name longer than 253 bytes");
    sni_case(name, 300, REEL_CH_SNI_INVALID, "host name longer than 253 bytes");
    memset(name, 'a', 70);
    sni_case(name, 70, REEL_CH_SNI_INVALID, "host name label longer than 63 bytes");

    reel_clienthello_t h;
    reel_buf_t d = {0};

    /* two host_name entries */
    size_t l = open_vec(&d, 2);
    put8(&d, 0);
    put16(&d, 8);
    puts_(&d, "good.com");
    put8(&d, 0);
    put16(&d, 8);
    puts_(&d, "evil.com");
    close_vec(&d, l, 2);
    parse_one_ext(0, &d, REEL_OK, &h);
    assert_int_equal(h.sni_status, REEL_CH_SNI_INVALID);
    assert_string_equal(h.sni_problem, "more than one host_name in server_name");
    assert_string_equal(h.sni, "");
    reel_buf_reset(&d);

    /* an unknown name type alone: no host name; with a host_name: that one */
    l = open_vec(&d, 2);
    put8(&d, 7);
    put16(&d, 3);
    puts_(&d, "xyz");
    close_vec(&d, l, 2);
    parse_one_ext(0, &d, REEL_OK, &h);
    assert_int_equal(h.sni_status, REEL_CH_SNI_NONE);
    reel_buf_reset(&d);
    l = open_vec(&d, 2);
    put8(&d, 7);
    put16(&d, 3);
    puts_(&d, "xyz");
    put8(&d, 0);
    put16(&d, 5);
    puts_(&d, "a.org");
    close_vec(&d, l, 2);
    parse_one_ext(0, &d, REEL_OK, &h);
    assert_int_equal(h.sni_status, REEL_CH_SNI_OK);
    assert_string_equal(h.sni, "a.org");
    reel_buf_reset(&d);

    /* an empty server_name list */
    put16(&d, 0);
    parse_one_ext(0, &d, REEL_OK, &h);
    assert_int_equal(h.sni_status, REEL_CH_SNI_INVALID);
    assert_string_equal(h.sni_problem, "empty server_name list");
    reel_buf_reset(&d);

    /* structure broken: CORRUPT */
    parse_one_ext(0, &d, REEL_CORRUPT, &h); /* no list length at all */
    put16(&d, 9);                           /* list longer than the extension */
    put8(&d, 0);
    put16(&d, 1);
    put8(&d, 'a');
    parse_one_ext(0, &d, REEL_CORRUPT, &h);
    reel_buf_reset(&d);
    put16(&d, 4); /* name longer than the list */
    put8(&d, 0);
    put16(&d, 9);
    put8(&d, 'a');
    parse_one_ext(0, &d, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "server_name entry longer than its list");
    reel_buf_reset(&d);
    put16(&d, 2); /* entry header cut short */
    put8(&d, 0);
    put8(&d, 0);
    parse_one_ext(0, &d, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "truncated server_name entry");
    reel_buf_free(&d);
}

static void test_hello_alpn(void **state) {
    (void)state;
    reel_clienthello_t h;
    reel_buf_t d = {0};

    /* 10 names: 8 kept */
    size_t l = open_vec(&d, 2);
    for (int i = 0; i < 10; i++) {
        char name[8];
        int n = snprintf(name, sizeof name, "p%d", i);
        put8(&d, (size_t)n);
        put(&d, name, (size_t)n);
    }
    close_vec(&d, l, 2);
    parse_one_ext(16, &d, REEL_OK, &h);
    assert_true(h.has_alpn);
    assert_int_equal(h.alpn_count, REEL_CH_ALPN_MAX);
    assert_true(h.alpn_truncated);
    assert_string_equal(h.alpn[0], "p0");
    assert_string_equal(h.alpn[7], "p7");
    reel_buf_reset(&d);

    /* 32 bytes kept, 33 left out, a NUL inside kept with its length */
    char big[40];
    memset(big, 'x', sizeof big);
    l = open_vec(&d, 2);
    put8(&d, 33);
    put(&d, big, 33);
    put8(&d, 32);
    put(&d, big, 32);
    put8(&d, 3);
    put(&d, "a\0b", 3);
    close_vec(&d, l, 2);
    parse_one_ext(16, &d, REEL_OK, &h);
    assert_int_equal(h.alpn_count, 2);
    assert_true(h.alpn_truncated);
    assert_int_equal(h.alpn_len[0], 32);
    assert_int_equal(strlen(h.alpn[0]), 32);
    assert_int_equal(h.alpn_len[1], 3);
    assert_memory_equal(h.alpn[1], "a\0b", 4);
    reel_buf_reset(&d);

    /* broken: empty list, empty name, name past the list, list length off */
    put16(&d, 0);
    parse_one_ext(16, &d, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "empty ALPN list");
    reel_buf_reset(&d);
    put16(&d, 3);
    put8(&d, 0);
    put16(&d, 0x0161);
    parse_one_ext(16, &d, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "empty ALPN protocol name");
    reel_buf_reset(&d);
    put16(&d, 3);
    put8(&d, 5);
    put16(&d, 0x6832);
    parse_one_ext(16, &d, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "ALPN protocol name longer than its list");
    reel_buf_reset(&d);
    put16(&d, 4);
    put8(&d, 2);
    put16(&d, 0x6832);
    parse_one_ext(16, &d, REEL_CORRUPT, &h);
    reel_buf_free(&d);
}

/* An offer of names (NULL-terminated) as a parse would leave it. */
static void offer(reel_clienthello_t *h, const char *const *names) {
    memset(h, 0, sizeof *h);
    for (size_t i = 0; names[i]; i++) {
        size_t n = strlen(names[i]);
        memcpy(h->alpn[i], names[i], n);
        h->alpn_len[i] = (uint8_t)n;
        h->alpn_count++;
    }
    h->has_alpn = h->alpn_count > 0;
}

static void test_hello_alpn_kind(void **state) {
    (void)state;
    struct {
        const char *names[5];
        reel_ch_alpn_kind want;
        const char *list;
    } cases[] = {
        {{NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"mqtt", NULL}, REEL_CH_ALPN_OTHER, "mqtt"},
        {{"x-echo", "imap", "smb", NULL}, REEL_CH_ALPN_OTHER, "x-echo,imap,smb"},
        {{"h2", "http/1.1", NULL}, REEL_CH_ALPN_HTTP, ""},
        {{"mqtt", "http/1.1", NULL}, REEL_CH_ALPN_HTTP, ""},
        {{"h2", NULL}, REEL_CH_ALPN_HTTP, ""},
        {{"mqtt", "h2", NULL}, REEL_CH_ALPN_HTTP, ""},
        {{"http/1.0", NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"mqtt", "h3", NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"h2c", NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"h2-16", "mqtt", NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"h3-29", NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"a,b", NULL}, REEL_CH_ALPN_UNKNOWN, ""},
        {{"h2x", "h3x", "http", NULL}, REEL_CH_ALPN_OTHER, "h2x,h3x,http"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reel_clienthello_t h;
        offer(&h, cases[i].names);
        char list[REEL_CH_ALPN_LIST_MAX];
        memset(list, '#', sizeof list);
        assert_int_equal(reel_clienthello_alpn(&h, list, sizeof list), cases[i].want);
        assert_string_equal(list, cases[i].list);
    }
    /* names left out: what they were cannot be known, nor passed on */
    reel_clienthello_t h;
    const char *const mqtt[] = {"mqtt", NULL};
    offer(&h, mqtt);
    h.alpn_truncated = true;
    char list[REEL_CH_ALPN_LIST_MAX];
    assert_int_equal(reel_clienthello_alpn(&h, list, sizeof list), REEL_CH_ALPN_UNKNOWN);
    /* a NUL inside a name cannot be passed on either */
    offer(&h, mqtt);
    h.alpn_len[0] = 5; /* "mqtt\0" */
    assert_int_equal(reel_clienthello_alpn(&h, list, sizeof list), REEL_CH_ALPN_UNKNOWN);
    /* eight names of 32 bytes fill REEL_CH_ALPN_LIST_MAX exactly; one byte
     * less does not hold them */
    memset(&h, 0, sizeof h);
    for (size_t i = 0; i < REEL_CH_ALPN_MAX; i++) {
        memset(h.alpn[i], 'a' + (int)i, REEL_CH_ALPN_NAME_MAX);
        h.alpn_len[i] = REEL_CH_ALPN_NAME_MAX;
    }
    h.alpn_count = REEL_CH_ALPN_MAX;
    assert_int_equal(reel_clienthello_alpn(&h, list, sizeof list), REEL_CH_ALPN_OTHER);
    assert_int_equal(strlen(list), REEL_CH_ALPN_LIST_MAX - 1);
    assert_int_equal(reel_clienthello_alpn(&h, list, sizeof list - 1), REEL_CH_ALPN_UNKNOWN);
    assert_string_equal(list, "");
}

static void test_hello_supported_versions(void **state) {
    (void)state;
    reel_clienthello_t h;
    reel_buf_t d = {0};
    put8(&d, 6);
    put16(&d, 0x7a7a); /* GREASE */
    put16(&d, 0x0304);
    put16(&d, 0x0303);
    parse_one_ext(43, &d, REEL_OK, &h);
    assert_true(h.has_supported_versions);
    assert_true(h.tls13);
    assert_int_equal(h.max_supported_version, 0x0304);
    reel_buf_reset(&d);

    put8(&d, 4);
    put16(&d, 0x0303);
    put16(&d, 0x0302);
    parse_one_ext(43, &d, REEL_OK, &h);
    assert_true(h.has_supported_versions);
    assert_false(h.tls13);
    assert_int_equal(h.max_supported_version, 0x0303);
    reel_buf_reset(&d);

    put8(&d, 3); /* odd */
    put16(&d, 0x0304);
    put8(&d, 3);
    parse_one_ext(43, &d, REEL_CORRUPT, &h);
    reel_buf_reset(&d);
    put8(&d, 0);
    parse_one_ext(43, &d, REEL_CORRUPT, &h);
    reel_buf_reset(&d);
    put8(&d, 4); /* longer than the extension */
    put16(&d, 0x0304);
    parse_one_ext(43, &d, REEL_CORRUPT, &h);
    reel_buf_free(&d);
}

/* Patches byte at offset `at` of a minimal one-record hello (with one empty
 * extension 0xffff) and expects want. */
static void patched(size_t at, uint8_t v, reel_rc want, const char *reason) {
    reel_buf_t e = {0}, b = {0};
    put_ext(&e, 0xffff, NULL, 0);
    hello(&b, &e);
    assert_true(at < b.len);
    b.data[at] = v;
    reel_clienthello_t h;
    check_parse(b.data, b.len, want, &h);
    if (reason)
        assert_string_equal(h.reason, reason);
    reel_buf_free(&e);
    reel_buf_free(&b);
}

/* Offsets in the hello built by hello(): record header 0..4, handshake
 * header 5..8, version 9..10, random 11..42, session id length 43, cipher
 * suites length 44..45 (4 bytes of suites 46..49), compression length 50
 * (51), extensions length 52..53, then the extension 54..57. */
static void test_hello_structure(void **state) {
    (void)state;
    patched(0, 23, REEL_INVALID, "not a handshake record");
    patched(1, 2, REEL_INVALID, "record version is not 3.x");
    patched(2, 0, REEL_INVALID, "record version is not 3.1 to 3.4");
    patched(2, 5, REEL_INVALID, "record version is not 3.1 to 3.4");
    patched(5, 2, REEL_INVALID, "handshake message is not a ClientHello");
    patched(43, 33, REEL_CORRUPT, "bad legacy_session_id");
    patched(43, 1, REEL_CORRUPT, NULL); /* shifts everything after it */
    patched(45, 3, REEL_CORRUPT, "bad cipher_suites");
    patched(45, 0, REEL_CORRUPT, "bad cipher_suites");
    patched(44, 1, REEL_CORRUPT, "bad cipher_suites"); /* past the message */
    patched(50, 0, REEL_CORRUPT, NULL);
    patched(53, 5, REEL_CORRUPT, "extensions length does not match the message");
    patched(53, 3, REEL_CORRUPT, "extensions length does not match the message");
    patched(57, 1, REEL_CORRUPT, "extension longer than the extensions block");

    /* handshake length past the record: waits for the next record */
    patched(8, 0xff, REEL_NEED_MORE, NULL);
    /* handshake length shorter than the record: bytes after the hello */
    reel_buf_t e = {0}, b = {0};
    hello(&b, &e);
    put8(&b, 0);
    b.data[4]++; /* record one byte longer */
    reel_clienthello_t h;
    check_parse(b.data, b.len, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "bytes after the ClientHello in its last record");
    reel_buf_reset(&b);

    /* record length 0 and 16385 */
    put(&b, "\x16\x03\x01\x00\x00", 5);
    check_parse(b.data, b.len, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "empty handshake record");
    reel_buf_reset(&b);
    puts_(&b, "\x16\x03\x01\x40\x01\x01");
    check_parse(b.data, b.len, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "record longer than 16384 bytes");
    reel_buf_reset(&b);

    /* handshake message over 64 KiB: LIMIT as soon as its header is in */
    put(&b, "\x16\x03\x01\x40\x00\x01\x01\x00\x00", 9);
    check_parse(b.data, b.len, REEL_LIMIT, &h);
    assert_string_equal(h.reason, "ClientHello longer than 64 KiB");
    reel_buf_reset(&b);

    /* the second record of a split hello is of another type */
    reel_buf_t m = {0};
    hello_msg(&m, &e);
    size_t cut = 20;
    frame(&b, m.data, m.len, &cut, 1);
    b.data[5 + cut] = 23;
    check_parse(b.data, b.len, REEL_INVALID, &h);
    assert_string_equal(h.reason, "not a handshake record");
    assert_int_equal(reel_sniff(b.data, b.len), REEL_SNIFF_TLS);
    reel_buf_reset(&b);

    /* duplicate extension */
    put_ext(&e, 0, "\x00\x04\x00\x00\x01\x61", 6);
    put_ext(&e, 0, "\x00\x04\x00\x00\x01\x62", 6);
    hello(&b, &e);
    check_parse(b.data, b.len, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "duplicate extension");
    reel_buf_reset(&b);

    /* message cut inside the fixed fields or inside an extension header */
    reel_buf_reset(&m);
    put8(&m, 1);
    put24(&m, 20);
    put16(&m, 0x0303);
    for (int i = 0; i < 18; i++)
        put8(&m, 0);
    frame(&b, m.data, m.len, NULL, 0);
    check_parse(b.data, b.len, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "truncated random");
    reel_buf_reset(&b);
    reel_buf_reset(&e);
    put16(&e, 0xffff);
    put8(&e, 0);
    hello(&b, &e);
    check_parse(b.data, b.len, REEL_CORRUPT, &h);
    assert_string_equal(h.reason, "truncated extension header");

    reel_buf_free(&m);
    reel_buf_free(&e);
    reel_buf_free(&b);
}

/* Not TLS at all: HTTP, SSH, random bytes. */
static void test_hello_not_tls(void **state) {
    (void)state;
    reel_clienthello_t h;
    const char *s = "GET / HTTP/1.1\r\n\r\n";
    check_parse(s, strlen(s), REEL_INVALID, &h);
    s = "SSH-2.0-OpenSSH_9.6\r\n";
    check_parse(s, strlen(s), REEL_INVALID, &h);
    for (int i = 0; i < 500; i++) {
        uint8_t buf[128];
        size_t n = 1 + rnd() % (sizeof buf - 1);
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)rnd();
        if (i % 2 == 0) { /* a plausible record header, random inside */
            buf[0] = 22;
            if (n > 1)
                buf[1] = 3;
            if (n > 2)
                buf[2] = 1;
            if (n > 3)
                buf[3] = 0;
            if (n > 5)
                buf[5] = 1;
        }
        reel_rc want = reel_clienthello_parse(buf, n, &h);
        check_parse(buf, n, want, &h);
    }
}

/* A big hello (a 40000-byte padding extension) over three full records. */
static void test_hello_big(void **state) {
    (void)state;
    reel_buf_t e = {0}, m = {0}, b = {0};
    uint8_t *pad = calloc(40000, 1);
    assert_non_null(pad);
    sni_data(&e, "big.example", 11);
    reel_buf_t sni = e;
    e = (reel_buf_t){0};
    put_ext(&e, 0, sni.data, sni.len);
    put_ext(&e, 21, pad, 40000);
    hello_msg(&m, &e);
    size_t cuts[] = {16384, 32768};
    frame(&b, m.data, m.len, cuts, 2);
    reel_clienthello_t h;
    check_parse(b.data, b.len, REEL_OK, &h);
    assert_int_equal(h.records, 3);
    assert_string_equal(h.sni, "big.example");
    check_sniff(b.data, b.len, REEL_SNIFF_TLS);

    /* right at the cap: 65536 bytes of message, header included */
    reel_buf_reset(&e);
    reel_buf_reset(&m);
    reel_buf_reset(&b);
    free(pad);
    size_t base;
    {
        reel_buf_t probe = {0};
        put_ext(&e, 21, NULL, 0);
        hello_msg(&probe, &e);
        base = probe.len;
        reel_buf_free(&probe);
        reel_buf_reset(&e);
    }
    size_t padlen = REEL_CH_MAX_SIZE - base;
    pad = calloc(padlen + 1, 1);
    assert_non_null(pad);
    put_ext(&e, 21, pad, padlen);
    hello_msg(&m, &e);
    assert_int_equal(m.len, REEL_CH_MAX_SIZE);
    size_t cuts4[] = {16384, 32768, 49152, 65535};
    frame(&b, m.data, m.len, cuts4, 4);
    check_parse(b.data, b.len, REEL_OK, &h);
    assert_int_equal(h.records, 5);

    /* one byte more: LIMIT */
    reel_buf_reset(&e);
    reel_buf_reset(&m);
    reel_buf_reset(&b);
    put_ext(&e, 21, pad, padlen + 1);
    hello_msg(&m, &e);
    frame(&b, m.data, m.len, cuts4, 4);
    check_parse(b.data, b.len, REEL_LIMIT, &h);

    free(pad);
    reel_buf_free(&sni);
    reel_buf_free(&e);
    reel_buf_free(&m);
    reel_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff_openssl_hellos),
        cmocka_unit_test(test_sniff_tls_edges),
        cmocka_unit_test(test_sniff_http),
        cmocka_unit_test(test_sniff_other),
        cmocka_unit_test(test_sniff_wrong_proxy),
        cmocka_unit_test(test_sniff_random),
        cmocka_unit_test(test_hello_openssl),
        cmocka_unit_test(test_hello_fragmented),
        cmocka_unit_test(test_hello_mutations),
        cmocka_unit_test(test_hello_minimal),
        cmocka_unit_test(test_hello_sni),
        cmocka_unit_test(test_hello_alpn),
        cmocka_unit_test(test_hello_alpn_kind),
        cmocka_unit_test(test_hello_supported_versions),
        cmocka_unit_test(test_hello_structure),
        cmocka_unit_test(test_hello_not_tls),
        cmocka_unit_test(test_hello_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
