/* TLS tests: a reel_tls server (leaves from a test CA) and a reel_tls client
 * talk through memory only. Handshake fed whole and byte by byte, plaintext
 * both ways in odd-sized pieces, close_notify and bare EOF, SNI and fallback
 * host, ALPN, verification failures (untrusted CA, self-signed, hostname and
 * IP mismatch, a chain to an untrusted root), an origin that requires a
 * client certificate, verification off, bounded buffers, garbage input. Prints the
 * in-memory handshake rate (not asserted). */
#include <ftw.h>
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

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/mem.h"
#include "core/ca.h"
#include "core/tls.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static char *tmp_dir(void) {
    return reel_test_tmpdir("tls");
}

static void rm_rf(const char *path) {
    reel_test_rm_rf(path);
}

/* A CA, a server context on it, a client context trusting only it, and a
 * client context trusting nothing. */
typedef struct {
    char *dir;
    reel_ca_t *ca;
    reel_tls_ctx_t *server;
    reel_tls_ctx_t *client;
    reel_tls_ctx_t *untrusting;
} fx_t;

static fx_t *FX; /* group fixture */

static int group_setup(void **state) {
    (void)state;
    fx_t *fx = reel_calloc(1, sizeof *fx);
    reel_err_t err;
    reel_err_clear(&err);
    fx->dir = tmp_dir();
    if (reel_ca_open(fx->dir, &fx->ca, &err) != REEL_OK ||
        reel_tls_ctx_new_server(fx->ca, &fx->server, &err) != REEL_OK ||
        reel_tls_ctx_new_client(reel_ca_cert_path(fx->ca), true, &fx->client, &err) != REEL_OK ||
        reel_tls_ctx_new_client(NULL, true, &fx->untrusting, &err) != REEL_OK) {
        fprintf(stderr, "setup: %s\n", reel_err_str(&err));
        return -1;
    }
    FX = fx;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    reel_tls_ctx_free(FX->server);
    reel_tls_ctx_free(FX->client);
    reel_tls_ctx_free(FX->untrusting);
    reel_ca_free(FX->ca);
    rm_rf(FX->dir);
    free(FX->dir);
    free(FX);
    return 0;
}

static reel_tls_t *server_new(const char *fallback) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_t *t = NULL;
    if (reel_tls_new_server(FX->server, fallback, &t, &err) != REEL_OK)
        fail_msg("server: %s", reel_err_str(&err));
    assert_true(reel_tls_is_server(t));
    return t;
}

static reel_tls_t *client_new(reel_tls_ctx_t *ctx, const char *host, bool insecure,
                              const char *alpn) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_t *t = NULL;
    reel_tls_client_opts_t o = {.host = host, .insecure = insecure, .alpn = alpn};
    if (reel_tls_new_client(ctx, &o, &t, &err) != REEL_OK)
        fail_msg("client: %s", reel_err_str(&err));
    assert_false(reel_tls_is_server(t));
    return t;
}

/* Moves all pending cipher bytes from one side to the other, in pieces of at
 * most piece bytes (0: all at once). */
static size_t shuttle(reel_tls_t *from, reel_tls_t *to, size_t piece) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    assert_int_equal(reel_tls_take_cipher(from, &b), REEL_OK);
    assert_int_equal(reel_tls_cipher_pending(from), 0);
    size_t off = 0;
    while (off < b.len) {
        size_t n = b.len - off;
        if (piece && n > piece)
            n = piece;
        size_t used = 0;
        assert_int_equal(reel_tls_feed_cipher(to, b.data + off, n, &used), REEL_OK);
        assert_int_equal(used, n);
        off += n;
    }
    size_t moved = b.len;
    reel_buf_free(&b);
    return moved;
}

typedef struct {
    reel_rc c, s;
    reel_err_t cerr, serr;
} hs_t;

/* Runs both handshakes until both finish or one fails (then lets the other
 * see the alert). piece: see shuttle; with piece 1 each side runs after
 * every byte. */
static hs_t handshake(reel_tls_t *c, reel_tls_t *s, size_t piece) {
    hs_t h;
    reel_err_clear(&h.cerr);
    reel_err_clear(&h.serr);
    h.c = h.s = REEL_NEED_MORE;
    for (int round = 0; round < 40; round++) {
        h.c = reel_tls_handshake(c, &h.cerr);
        if (piece == 1) {
            reel_buf_t b;
            reel_buf_init(&b, 0);
            reel_tls_take_cipher(c, &b);
            for (size_t i = 0; i < b.len; i++) {
                size_t used;
                reel_tls_feed_cipher(s, b.data + i, 1, &used);
                if (h.s == REEL_NEED_MORE) {
                    h.s = reel_tls_handshake(s, &h.serr);
                    if (h.s == REEL_NEED_MORE)
                        assert_int_equal(h.serr.code, REEL_OK);
                }
            }
            reel_buf_free(&b);
        } else {
            shuttle(c, s, piece);
        }
        if (h.s == REEL_NEED_MORE || piece != 1)
            h.s = reel_tls_handshake(s, &h.serr);
        size_t back = shuttle(s, c, piece);
        if (h.c != REEL_NEED_MORE && h.s != REEL_NEED_MORE && back == 0) {
            /* both settled; let the client see anything left */
            if (h.c == REEL_OK)
                h.c = reel_tls_handshake(c, &h.cerr);
            break;
        }
    }
    return h;
}

static void handshake_ok(reel_tls_t *c, reel_tls_t *s) {
    hs_t h = handshake(c, s, 0);
    if (h.c != REEL_OK || h.s != REEL_OK)
        fail_msg("handshake: client %s (%s), server %s (%s)", reel_rc_name(h.c), h.cerr.msg,
                 reel_rc_name(h.s), h.serr.msg);
    assert_true(reel_tls_handshake_done(c));
    assert_true(reel_tls_handshake_done(s));
}

static uint8_t pattern(size_t i, int dir) {
    return (uint8_t)((i * 31 + (i >> 7) + dir * 101) & 0xff);
}

/* Sends len bytes from a to b: a writes in varying pieces, cipher moves in
 * varying pieces, b reads into a small buffer. */
static void transfer(reel_tls_t *a, reel_tls_t *b, size_t len, int dir) {
    uint8_t *src = reel_malloc(len);
    uint8_t *dst = reel_malloc(len);
    for (size_t i = 0; i < len; i++)
        src[i] = pattern(i, dir);
    size_t wrote = 0, got = 0, step = 0;
    reel_err_t err;
    reel_err_clear(&err);
    while (got < len) {
        step++;
        if (wrote < len) {
            size_t piece = 1 + (step * 977) % 5000;
            if (piece > len - wrote)
                piece = len - wrote;
            size_t n = 0;
            assert_int_equal(reel_tls_write_plain(a, src + wrote, piece, &n, &err), REEL_OK);
            assert_int_equal(n, piece);
            wrote += n;
        }
        shuttle(a, b, 1 + (step * 613) % 3000);
        for (;;) {
            uint8_t tmp[777];
            size_t n = 0;
            reel_rc rc = reel_tls_read_plain(b, tmp, sizeof tmp, &n, &err);
            if (rc == REEL_NEED_MORE)
                break;
            if (rc != REEL_OK)
                fail_msg("read: %s", reel_err_str(&err));
            assert_true(n > 0);
            assert_true(got + n <= len);
            memcpy(dst + got, tmp, n);
            got += n;
        }
        shuttle(b, a, 0); /* e.g. TLS 1.3 key updates, none expected */
        assert_true(step < 100000);
    }
    assert_memory_equal(src, dst, len);
    free(src);
    free(dst);
}

static char *san_of(X509 *x) {
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(g);
    GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, 0);
    char *s;
    if (gn->type == GEN_DNS) {
        s = reel_strdup((const char *)ASN1_STRING_get0_data(gn->d.dNSName));
    } else {
        assert_int_equal(gn->type, GEN_IPADD);
        s = reel_asprintf("IP/%d", ASN1_STRING_length(gn->d.iPAddress));
    }
    GENERAL_NAMES_free(g);
    return s;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_handshake_and_data(void **state) {
    (void)state;
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "www.example.com", false, NULL);
    assert_null(reel_tls_version(c));
    handshake_ok(c, s);
    assert_string_equal(reel_tls_alpn(c), "http/1.1");
    assert_string_equal(reel_tls_alpn(s), "http/1.1");
    assert_string_equal(reel_tls_sni(s), "www.example.com");
    assert_string_equal(reel_tls_sni(c), "www.example.com");
    assert_string_equal(reel_tls_cert_host(s), "www.example.com");
    assert_string_equal(reel_tls_version(c), "TLSv1.3");
    assert_string_equal(reel_tls_version(s), "TLSv1.3");
    assert_non_null(reel_tls_cipher(c));
    assert_int_equal(reel_tls_verify_result(c), X509_V_OK);
    assert_null(reel_tls_unchecked_error(c, NULL)); /* verified, and it passed */
    X509 *peer = reel_tls_peer_cert(c);
    assert_non_null(peer);
    char *san = san_of(peer);
    assert_string_equal(san, "www.example.com");
    free(san);

    /* Plaintext both ways, several times, in pieces. */
    transfer(c, s, 100000, 0);
    transfer(s, c, 150000, 1);
    transfer(c, s, 1, 2);
    transfer(s, c, 17, 3);

    /* Nothing more to read. */
    reel_err_t err;
    reel_err_clear(&err);
    uint8_t buf[64];
    size_t n = 99;
    assert_int_equal(reel_tls_read_plain(s, buf, sizeof buf, &n, &err), REEL_NEED_MORE);
    assert_int_equal(n, 0);

    /* close_notify from the client ends the server's stream, cleanly. */
    assert_int_equal(reel_tls_close_notify(c, &err), REEL_OK);
    assert_true(shuttle(c, s, 0) > 0);
    assert_int_equal(reel_tls_read_plain(s, buf, sizeof buf, &n, &err), REEL_OK);
    assert_int_equal(n, 0);
    assert_true(reel_tls_peer_closed(s));
    assert_int_equal(reel_tls_read_plain(s, buf, sizeof buf, &n, &err), REEL_OK); /* sticky */
    assert_int_equal(n, 0);
    /* Writing after our own close_notify fails. */
    size_t w = 0;
    assert_int_equal(reel_tls_write_plain(c, (const uint8_t *)"x", 1, &w, &err), REEL_ERROR);
    assert_int_equal(err.code, REEL_ERROR);

    /* The server can still answer and close (half close). */
    reel_err_clear(&err);
    assert_int_equal(reel_tls_write_plain(s, (const uint8_t *)"bye", 3, &w, &err), REEL_OK);
    assert_int_equal(reel_tls_close_notify(s, &err), REEL_OK);
    shuttle(s, c, 0);
    if (reel_tls_read_plain(c, buf, sizeof buf, &n, &err) != REEL_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(reel_tls_read_plain(c, buf, sizeof buf, &n, &err), REEL_OK);
    assert_int_equal(n, 0);
    assert_true(reel_tls_peer_closed(c));
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_handshake_bytewise(void **state) {
    (void)state;
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "bytes.test", false, NULL);
    hs_t h = handshake(c, s, 1);
    if (h.c != REEL_OK || h.s != REEL_OK)
        fail_msg("client %s (%s), server %s (%s)", reel_rc_name(h.c), h.cerr.msg, reel_rc_name(h.s),
                 h.serr.msg);
    transfer(c, s, 3000, 0);
    transfer(s, c, 3000, 1);
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_write_before_handshake(void **state) {
    (void)state;
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "early.test", false, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    size_t n = 7;
    /* The client's write starts its handshake and waits. */
    assert_int_equal(reel_tls_write_plain(c, (const uint8_t *)"hi", 2, &n, &err), REEL_NEED_MORE);
    assert_int_equal(n, 0);
    assert_true(reel_tls_cipher_pending(c) > 0); /* ClientHello */
    /* A read on the server drives its handshake too. */
    shuttle(c, s, 0);
    uint8_t buf[16];
    assert_int_equal(reel_tls_read_plain(s, buf, sizeof buf, &n, &err), REEL_NEED_MORE);
    shuttle(s, c, 0);
    assert_int_equal(reel_tls_read_plain(c, buf, sizeof buf, &n, &err), REEL_NEED_MORE);
    assert_true(reel_tls_handshake_done(c));
    assert_int_equal(reel_tls_write_plain(c, (const uint8_t *)"hi", 2, &n, &err), REEL_OK);
    assert_int_equal(n, 2);
    shuttle(c, s, 0);
    assert_int_equal(reel_tls_read_plain(s, buf, sizeof buf, &n, &err), REEL_OK);
    assert_true(reel_tls_handshake_done(s));
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "hi", 2);
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_sni_selects_leaf(void **state) {
    (void)state;
    const char *hosts[] = {"a.test", "B.Test", "a.test"};
    const char *want[] = {"a.test", "b.test", "a.test"};
    for (int i = 0; i < 3; i++) {
        reel_tls_t *s = server_new("fallback.test"); /* SNI wins over fallback */
        reel_tls_t *c = client_new(FX->client, hosts[i], false, NULL);
        handshake_ok(c, s);
        char *san = san_of(reel_tls_peer_cert(c));
        assert_string_equal(san, want[i]);
        free(san);
        assert_string_equal(reel_tls_sni(s), hosts[i]);
        assert_string_equal(reel_tls_cert_host(s), hosts[i]);
        reel_tls_free(c);
        reel_tls_free(s);
    }

    /* IP literals send no SNI: the fallback host (the CONNECT target) is used. */
    const char *ips[] = {"127.0.0.1", "::1", "[::1]"};
    const int iplen[] = {4, 16, 16};
    for (int i = 0; i < 3; i++) {
        reel_tls_t *s = server_new(ips[i]);
        reel_tls_t *c = client_new(FX->client, ips[i], false, NULL);
        assert_null(reel_tls_sni(c));
        handshake_ok(c, s);
        assert_null(reel_tls_sni(s));
        assert_string_equal(reel_tls_cert_host(s), ips[i]);
        assert_int_equal(reel_tls_verify_result(c), X509_V_OK);
        char *san = san_of(reel_tls_peer_cert(c));
        char *exp = reel_asprintf("IP/%d", iplen[i]);
        assert_string_equal(san, exp);
        free(exp);
        free(san);
        reel_tls_free(c);
        reel_tls_free(s);
    }

    /* No SNI and no fallback: the server refuses with a clear message. */
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "10.1.2.3", false, NULL);
    hs_t h = handshake(c, s, 0);
    assert_int_equal(h.s, REEL_ERROR);
    assert_string_equal(h.serr.msg, "no certificate for the client: no SNI and no fallback host");
    assert_int_equal(h.c, REEL_ERROR);
    assert_non_null(strstr(h.cerr.msg, "upstream TLS handshake failed"));
    /* Failures are sticky. */
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_tls_handshake(s, &err), REEL_ERROR);
    assert_string_equal(err.msg, h.serr.msg);
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_alpn(void **state) {
    (void)state;
    struct {
        const char *offer, *want;
    } cases[] = {{"h2", NULL}, {"h2,http/1.1", "http/1.1"}, {"http/1.1,h2", "http/1.1"},
                 {"", NULL},   {NULL, "http/1.1"},          {"spdy/3,http/1.0", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reel_tls_t *s = server_new(NULL);
        reel_tls_t *c = client_new(FX->client, "alpn.test", false, cases[i].offer);
        handshake_ok(c, s);
        if (cases[i].want) {
            assert_string_equal(reel_tls_alpn(c), cases[i].want);
            assert_string_equal(reel_tls_alpn(s), cases[i].want);
        } else {
            assert_null(reel_tls_alpn(c));
            assert_null(reel_tls_alpn(s));
        }
        reel_tls_free(c);
        reel_tls_free(s);
    }
    /* Malformed lists are refused up front. */
    const char *bad[] = {",", "h2,", "h2,,http/1.1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        reel_tls_t *t = NULL;
        reel_tls_client_opts_t o = {.host = "x.test", .alpn = bad[i]};
        assert_int_equal(reel_tls_new_client(FX->client, &o, &t, &err), REEL_INVALID);
        assert_null(t);
    }
}

/* TLS that is not HTTP: the client is given the protocol the origin chose,
 * if it offered it, and never http/1.1 in its place. */
static void test_alpn_mirror(void **state) {
    (void)state;
    struct {
        const char *mirror, *offer, *want;
    } cases[] = {
        {"x-echo", "mqtt,x-echo", "x-echo"}, {"mqtt", "mqtt", "mqtt"},   {"mqtt", "x-echo", NULL},
        {"", "mqtt,http/1.1", NULL},         {"imap", "http/1.1", NULL}, {"x-echo", "", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reel_tls_t *s = server_new(NULL);
        reel_tls_mirror_alpn(s, "h2");
        reel_tls_mirror_alpn(s, cases[i].mirror); /* the last call counts */
        reel_tls_t *c = client_new(FX->client, "alpn.test", false, cases[i].offer);
        handshake_ok(c, s);
        if (cases[i].want) {
            assert_string_equal(reel_tls_alpn(c), cases[i].want);
            assert_string_equal(reel_tls_alpn(s), cases[i].want);
        } else {
            assert_null(reel_tls_alpn(c));
            assert_null(reel_tls_alpn(s));
        }
        reel_tls_free(c);
        reel_tls_free(s);
    }
    /* NULL: back to the HTTP choice */
    reel_tls_t *s = server_new(NULL);
    reel_tls_mirror_alpn(s, "mqtt");
    reel_tls_mirror_alpn(s, NULL);
    reel_tls_t *c = client_new(FX->client, "alpn.test", false, "mqtt,http/1.1");
    handshake_ok(c, s);
    assert_string_equal(reel_tls_alpn(s), "http/1.1");
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_verify_untrusted_ca(void **state) {
    (void)state;
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->untrusting, "example.com", false, NULL);
    hs_t h = handshake(c, s, 0);
    assert_int_equal(h.c, REEL_ERROR);
    assert_non_null(strstr(h.cerr.msg, "upstream certificate verify failed: unable to get local "
                                       "issuer certificate (certificate for example.com, by "));
    assert_int_equal(reel_tls_verify_result(c), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    /* The server learns that its client does not trust the CA. */
    assert_int_equal(h.s, REEL_ERROR);
    assert_non_null(strstr(h.serr.msg, "client TLS handshake failed"));
    assert_non_null(strstr(h.serr.msg, "unknown ca"));
    assert_non_null(strstr(h.serr.msg, "does the client trust the reel CA?"));
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_verify_off(void **state) {
    (void)state;
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->untrusting, "example.com", true, NULL);
    handshake_ok(c, s);
    /* The result is still known, for recording, with the certificate. */
    assert_int_equal(reel_tls_verify_result(c), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    const char *cert = NULL;
    assert_string_equal(reel_tls_unchecked_error(c, &cert),
                        "unable to get local issuer certificate");
    assert_non_null(strstr(cert, "certificate for example.com, by "));
    assert_null(reel_tls_verify_error(c, NULL)); /* it ended nothing */
    transfer(c, s, 1000, 0);
    reel_tls_free(c);
    reel_tls_free(s);
}

/* A plain OpenSSL server on memory BIOs presenting a chosen cert and key, for
 * certificates reel's server would never present. */
typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
} raw_t;

/* A fresh server connection on r's SSL_CTX. */
static void raw_accept(raw_t *r) {
    r->ssl = SSL_new(r->ctx);
    r->in = BIO_new(BIO_s_mem());
    r->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(r->in, -1);
    SSL_set_bio(r->ssl, r->in, r->out);
    SSL_set_accept_state(r->ssl);
}

static raw_t raw_server(X509 *cert, EVP_PKEY *key) {
    raw_t r;
    r.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(r.ctx);
    assert_int_equal(SSL_CTX_use_certificate(r.ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(r.ctx, key), 1);
    raw_accept(&r);
    return r;
}

static void raw_free(raw_t *r) {
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
}

static reel_rc raw_handshake(raw_t *r, reel_tls_t *c, reel_err_t *err) {
    reel_rc rc = REEL_NEED_MORE;
    for (int i = 0; i < 20 && rc == REEL_NEED_MORE; i++) {
        rc = reel_tls_handshake(c, err);
        reel_buf_t b;
        reel_buf_init(&b, 0);
        reel_tls_take_cipher(c, &b);
        if (b.len)
            BIO_write(r->in, b.data, (int)b.len);
        reel_buf_free(&b);
        SSL_do_handshake(r->ssl);
        ERR_clear_error();
        char buf[16384];
        int n;
        while ((n = BIO_read(r->out, buf, sizeof buf)) > 0) {
            size_t used;
            reel_tls_feed_cipher(c, (const uint8_t *)buf, (size_t)n, &used);
        }
    }
    return rc;
}

static EVP_PKEY *load_ca_key(void) {
    FILE *f = fopen(reel_ca_key_path(FX->ca), "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

static void test_verify_self_signed(void **state) {
    (void)state;
    /* The CA certificate itself is a self-signed certificate. */
    EVP_PKEY *key = load_ca_key();
    raw_t r = raw_server(reel_ca_cert(FX->ca), key);
    reel_tls_t *c = client_new(FX->untrusting, "reel.test", false, NULL);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(raw_handshake(&r, c, &err), REEL_ERROR);
    /* what the certificate says comes with the reason: here, no name */
    assert_non_null(strstr(err.msg, "upstream certificate verify failed: self-signed certificate "
                                    "(certificate for reel CA, by reel CA, valid "));
    reel_tls_free(c);
    raw_free(&r);
    EVP_PKEY_free(key);
}

static void test_hostname_mismatch(void **state) {
    (void)state;
    X509 *leaf = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_ca_leaf(FX->ca, "other.test", &leaf, &err), REEL_OK);
    raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
    reel_tls_t *c = client_new(FX->client, "wanted.test", false, NULL);
    assert_int_equal(raw_handshake(&r, c, &err), REEL_ERROR);
    /* the name the certificate is for, beside the one wanted */
    assert_non_null(strstr(err.msg, "upstream certificate verify failed: hostname mismatch "
                                    "(certificate for other.test, by reel CA, valid 20"));
    assert_int_equal(reel_tls_verify_result(c), X509_V_ERR_HOSTNAME_MISMATCH);
    reel_tls_free(c);
    raw_free(&r);

    /* The same certificate is fine for its own name... */
    r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
    c = client_new(FX->client, "other.test", false, NULL);
    reel_err_clear(&err);
    assert_int_equal(raw_handshake(&r, c, &err), REEL_OK);
    reel_tls_free(c);
    raw_free(&r);

    /* ...and, with verification off, for any name. */
    r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
    c = client_new(FX->client, "wanted.test", true, NULL);
    assert_int_equal(raw_handshake(&r, c, &err), REEL_OK);
    assert_int_equal(reel_tls_verify_result(c), X509_V_ERR_HOSTNAME_MISMATCH);
    const char *cert = NULL;
    assert_string_equal(reel_tls_unchecked_error(c, &cert), "hostname mismatch");
    assert_non_null(strstr(cert, "certificate for other.test, by reel CA, valid 20"));
    reel_tls_free(c);
    raw_free(&r);
    X509_free(leaf);

    /* IP mismatch through reel's server: no SNI, fallback names a host. */
    reel_tls_t *s = server_new("example.com");
    c = client_new(FX->client, "127.0.0.1", false, NULL);
    hs_t h = handshake(c, s, 0);
    assert_int_equal(h.c, REEL_ERROR);
    assert_non_null(strstr(h.cerr.msg, "upstream certificate verify failed: IP address mismatch "
                                       "(certificate for example.com, by reel CA, valid "));
    reel_tls_free(c);
    reel_tls_free(s);
}

/* A certificate for cn (also its DNS SAN unless is_ca), signed by
 * issuer/ikey (self-signed when issuer is NULL); its new key in *key. */
static X509 *make_cert(const char *cn, bool is_ca, X509 *issuer, EVP_PKEY *ikey, EVP_PKEY **key) {
    *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(*key);
    assert_non_null(x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(uintptr_t)x & 0x7fffffff);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400 * 30);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509_set_pubkey(x, *key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    char san[128];
    snprintf(san, sizeof san, "DNS:%s", cn);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints,
                                               is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!is_ca) {
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_alt_name, san);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, issuer ? ikey : *key, EVP_sha256()) > 0);
    return x;
}

/* An origin whose leaf is issued by an intermediate under a root the client
 * does not trust: the error describes the origin's leaf (as the flow's
 * ServerConn does) and says where the chain fails. */
static void test_verify_chain_untrusted_root(void **state) {
    (void)state;
    EVP_PKEY *rk, *ik, *lk;
    X509 *root = make_cert("Test Root", true, NULL, NULL, &rk);
    X509 *inter = make_cert("Test Intermediate", true, root, rk, &ik);
    X509 *leaf = make_cert("chain.test", false, inter, ik, &lk);
    for (int with_root = 0; with_root < 2; with_root++) {
        raw_t r = raw_server(leaf, lk);
        assert_int_equal(SSL_add1_chain_cert(r.ssl, inter), 1);
        if (with_root)
            assert_int_equal(SSL_add1_chain_cert(r.ssl, root), 1);
        reel_tls_t *c = client_new(FX->client, "chain.test", false, NULL);
        reel_err_t err;
        reel_err_clear(&err);
        assert_int_equal(raw_handshake(&r, c, &err), REEL_ERROR);
        const char *cert = NULL;
        assert_non_null(reel_tls_verify_error(c, &cert));
        assert_non_null(cert);
        assert_non_null(strstr(cert, "certificate for chain.test, by Test Intermediate, valid "));
        assert_non_null(
            strstr(err.msg, "(certificate for chain.test, by Test Intermediate, valid "));
        assert_non_null(strstr(err.msg, with_root ? "; Test Intermediate chains to Test Root, "
                                                    "not trusted)"
                                                  : "; Test Intermediate chains to Test Root, "
                                                    "which is not trusted)"));
        assert_non_null(strstr(err.msg, with_root ? "self-signed certificate in certificate chain"
                                                  : "unable to get local issuer certificate"));
        reel_tls_free(c);
        raw_free(&r);
    }
    X509_free(leaf);
    X509_free(inter);
    X509_free(root);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(rk);
}

/* A server's check of a client certificate that takes any. */
static int accept_any(int ok, X509_STORE_CTX *x) {
    (void)ok;
    (void)x;
    return 1;
}

/* An origin that requires a client certificate (mutual TLS): reel has none
 * to give, and the error says that the origin asked for one. TLS 1.2 ends
 * the handshake; TLS 1.3 lets the client finish its side first, and the
 * alert comes with the first read. */
static void test_client_cert_required(void **state) {
    (void)state;
    X509 *leaf = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_ca_leaf(FX->ca, "mtls.test", &leaf, &err), REEL_OK);
    for (int v13 = 0; v13 < 2; v13++) {
        raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
        SSL_set_verify(r.ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_set_max_proto_version(r.ssl, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
        reel_tls_t *c = client_new(FX->client, "mtls.test", false, NULL);
        reel_err_clear(&err);
        reel_rc rc = raw_handshake(&r, c, &err);
        if (v13) {
            assert_int_equal(rc, REEL_OK);
            uint8_t buf[64];
            size_t n = 0;
            rc = reel_tls_read_plain(c, buf, sizeof buf, &n, &err);
        }
        assert_int_equal(rc, REEL_ERROR);
        assert_non_null(strstr(err.msg, v13 ? "certificate required" : "handshake failure"));
        assert_non_null(strstr(err.msg, ": the origin asked for a client certificate, which reel "
                                        "does not have: give it one (upstream_client_certs), or "
                                        "put the host in ignore_hosts"));
        const char *sent = "?";
        assert_true(reel_tls_client_cert_asked(c, &sent));
        assert_null(sent);
        reel_tls_free(c);
        raw_free(&r);
    }
    /* with upstream_client_certs: a file (certificate, then key) that a
     * server trusting reel's CA takes, and the record says what was sent */
    X509 *mine = NULL;
    assert_int_equal(reel_ca_leaf(FX->ca, "client.test", &mine, &err), REEL_OK);
    char *pem = reel_asprintf("%s/client.pem", FX->dir);
    FILE *f = fopen(pem, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, mine), 1);
    assert_int_equal(PEM_write_PrivateKey(f, reel_ca_leaf_key(FX->ca), NULL, NULL, 0, NULL, NULL),
                     1);
    fclose(f);
    reel_tls_identities_t *ids = NULL;
    assert_int_equal(reel_tls_identities_load(pem, &ids, &err), REEL_OK);
    const reel_tls_identity_t *id = reel_tls_identities_find(ids, "mtls.test");
    assert_non_null(id);
    /* (reel's leaves are for servers: a server that checks the purpose
     * refuses this one, and the error says which certificate it refused) */
    {
        raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
        X509_STORE_add_cert(SSL_CTX_get_cert_store(r.ctx), reel_ca_cert(FX->ca));
        SSL_set_verify(r.ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        reel_tls_t *c = NULL;
        reel_tls_client_opts_t o = {.host = "mtls.test", .identity = id};
        assert_int_equal(reel_tls_new_client(FX->client, &o, &c, &err), REEL_OK);
        reel_err_clear(&err);
        reel_rc rc = raw_handshake(&r, c, &err);
        if (rc == REEL_OK) { /* (TLS 1.3: with the first read) */
            uint8_t buf[64];
            size_t n = 0;
            rc = reel_tls_read_plain(c, buf, sizeof buf, &n, &err);
        }
        assert_int_equal(rc, REEL_ERROR);
        assert_non_null(strstr(err.msg, ": the origin refused the client certificate reel "
                                        "presented (upstream_client_certs: certificate for "
                                        "client.test, by "));
        reel_tls_free(c);
        raw_free(&r);
    }
    for (int v13 = 0; v13 < 2; v13++) {
        raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
        SSL_set_verify(r.ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
        SSL_set_max_proto_version(r.ssl, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
        reel_tls_t *c = NULL;
        reel_tls_client_opts_t o = {.host = "mtls.test", .identity = id};
        assert_int_equal(reel_tls_new_client(FX->client, &o, &c, &err), REEL_OK);
        reel_err_clear(&err);
        if (raw_handshake(&r, c, &err) != REEL_OK)
            fail_msg("handshake: %s", err.msg);
        X509 *got = SSL_get1_peer_certificate(r.ssl);
        assert_non_null(got);
        assert_int_equal(X509_cmp(got, mine), 0);
        X509_free(got);
        const char *sent = NULL;
        assert_true(reel_tls_client_cert_asked(c, &sent));
        assert_non_null(sent);
        assert_non_null(strstr(sent, "certificate for client.test, by "));
        reel_tls_free(c);
        raw_free(&r);
    }
    /* a server that does not ask gets nothing, and nothing is recorded */
    {
        raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
        reel_tls_t *c = NULL;
        reel_tls_client_opts_t o = {.host = "mtls.test", .identity = id};
        assert_int_equal(reel_tls_new_client(FX->client, &o, &c, &err), REEL_OK);
        assert_int_equal(raw_handshake(&r, c, &err), REEL_OK);
        assert_null(SSL_get0_peer_certificate(r.ssl));
        const char *sent = "?";
        assert_false(reel_tls_client_cert_asked(c, &sent));
        assert_null(sent);
        reel_tls_free(c);
        raw_free(&r);
    }
    reel_tls_identities_free(ids);
    /* files that are no identity: named, with what is wrong */
    static const struct {
        const char *content, *why;
    } bad[] = {{"", "no certificate in it (PEM or PKCS#12)"}, {NULL, "no private key in it"}};
    for (size_t i = 0; i < 2; i++) {
        f = fopen(pem, "w");
        assert_non_null(f);
        if (bad[i].content)
            fputs(bad[i].content, f);
        else
            PEM_write_X509(f, mine);
        fclose(f);
        reel_err_clear(&err);
        assert_int_equal(reel_tls_identities_load(pem, &ids, &err), REEL_INVALID);
        assert_null(ids);
        char *want = reel_asprintf("upstream_client_certs: %s: %s", pem, bad[i].why);
        assert_string_equal(err.msg, want);
        free(want);
    }
    /* a key that is not the certificate's */
    EVP_PKEY *other = EVP_EC_gen("P-256");
    assert_non_null(other);
    f = fopen(pem, "w");
    assert_non_null(f);
    PEM_write_X509(f, mine);
    PEM_write_PrivateKey(f, other, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(other);
    reel_err_clear(&err);
    assert_int_equal(reel_tls_identities_load(pem, &ids, &err), REEL_INVALID);
    char *want = reel_asprintf("upstream_client_certs: %s: its private key is not the "
                               "certificate's",
                               pem);
    assert_string_equal(err.msg, want);
    free(want);
    /* a directory: the file named for the host, none for another */
    char *dir = reel_asprintf("%s/certs", FX->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    char *named = reel_asprintf("%s/Mtls.Test.pem", dir);
    f = fopen(named, "w");
    assert_non_null(f);
    PEM_write_X509(f, mine);
    PEM_write_PrivateKey(f, reel_ca_leaf_key(FX->ca), NULL, NULL, 0, NULL, NULL);
    fclose(f);
    assert_int_equal(reel_tls_identities_load(dir, &ids, &err), REEL_OK);
    assert_non_null(reel_tls_identities_find(ids, "mtls.test"));
    assert_null(reel_tls_identities_find(ids, "other.test"));
    reel_tls_identities_free(ids);
    free(named);
    free(dir);
    free(pem);
    X509_free(mine);
    /* a failure without a certificate request gets no such hint */
    raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca));
    reel_tls_t *c = client_new(FX->untrusting, "mtls.test", false, NULL);
    reel_err_clear(&err);
    assert_int_equal(raw_handshake(&r, c, &err), REEL_ERROR);
    assert_null(strstr(err.msg, "client certificate"));
    reel_tls_free(c);
    raw_free(&r);
    X509_free(leaf);
}

/* One connection of a resumption test: handshake, then a response from the
 * server so the client reads the TLS 1.3 tickets that follow the handshake.
 * Returns whether the handshake resumed a session. */
static bool resume_round(reel_tls_ctx_t *ctx, const char *host, const char *key, bool insecure) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = NULL;
    reel_tls_client_opts_t o = {.host = host, .insecure = insecure, .session_key = key};
    if (reel_tls_new_client(ctx, &o, &c, &err) != REEL_OK)
        fail_msg("client: %s", reel_err_str(&err));
    handshake_ok(c, s);
    transfer(s, c, 100, 1);
    bool resumed = reel_tls_resumed(c);
    assert_false(reel_tls_resumed(s) && !resumed);
    assert_int_equal(reel_tls_verify_result(c), X509_V_OK);
    reel_tls_free(c);
    reel_tls_free(s);
    return resumed;
}

/* A client context of its own (its own session cache) trusting reel's CA. */
static reel_tls_ctx_t *own_client_ctx(void) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_ctx_t *ctx = NULL;
    assert_int_equal(reel_tls_ctx_new_client(reel_ca_cert_path(FX->ca), true, &ctx, &err),
                     REEL_OK);
    return ctx;
}

static void test_session_resumption(void **state) {
    (void)state;
    reel_tls_ctx_t *ctx = own_client_ctx();
    /* No key: never resumed. */
    assert_false(resume_round(ctx, "a.test", NULL, false));
    assert_false(resume_round(ctx, "a.test", NULL, false));
    /* Same origin: the first connection is full, later ones resume (each
     * TLS 1.3 ticket once; every handshake brings new ones). */
    assert_false(resume_round(ctx, "a.test", "a.test:443", false));
    for (int i = 0; i < 5; i++)
        assert_true(resume_round(ctx, "a.test", "a.test:443", false));
    /* Another port, another host: their own sessions. */
    assert_false(resume_round(ctx, "a.test", "a.test:8443", false));
    assert_false(resume_round(ctx, "b.test", "b.test:443", false));
    /* A session made without verification is not offered to a verified
     * connection, nor the other way round. */
    assert_false(resume_round(ctx, "c.test", "c.test:443", true));
    assert_true(resume_round(ctx, "c.test", "c.test:443", true));
    assert_false(resume_round(ctx, "c.test", "c.test:443", false));
    assert_true(resume_round(ctx, "c.test", "c.test:443", false));
    /* Many origins: the cache stays bounded and evicts the least recently
     * used (a.test:443, used last long ago, is gone after 300 others). */
    char key[64];
    for (int i = 0; i < 300 && !UNDER_ASAN; i++) {
        snprintf(key, sizeof key, "h%d.test:443", i);
        assert_false(resume_round(ctx, "a.test", key, false));
    }
    if (!UNDER_ASAN)
        assert_false(resume_round(ctx, "a.test", "a.test:443", false));
    reel_tls_ctx_free(ctx); /* frees the cached sessions (LeakSanitizer) */
}

/* TLS 1.2 (nginx 1.22's highest by default): the cache offers one session
 * to every connection to the origin, and connections that end without
 * close_notify, as proxied ones mostly do, must not spoil it. */
static void test_resumption_tls12_unclean_close(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_ctx_t *ctx = own_client_ctx();
    X509 *leaf = NULL;
    assert_int_equal(reel_ca_leaf(FX->ca, "t12.test", &leaf, &err), REEL_OK);
    raw_t r = raw_server(leaf, reel_ca_leaf_key(FX->ca)); /* one SSL_CTX: one ticket key */
    assert_int_equal(SSL_CTX_set_max_proto_version(r.ctx, TLS1_2_VERSION), 1);
    SSL_free(r.ssl);
    for (int i = 0; i < 6; i++) {
        raw_accept(&r);
        reel_tls_t *c = NULL;
        reel_tls_client_opts_t o = {.host = "t12.test", .session_key = "t12.test:443"};
        assert_int_equal(reel_tls_new_client(ctx, &o, &c, &err), REEL_OK);
        assert_int_equal(raw_handshake(&r, c, &err), REEL_OK);
        assert_string_equal(reel_tls_version(c), "TLSv1.2");
        if (reel_tls_resumed(c) != (i > 0))
            fail_msg("connection %d: resumed %d", i, reel_tls_resumed(c));
        reel_tls_free(c); /* no close_notify */
        SSL_free(r.ssl);
    }
    r.ssl = NULL;
    raw_free(&r);
    X509_free(leaf);
    reel_tls_ctx_free(ctx);
}

static void test_client_ctx(void **state) {
    (void)state;
    /* System store plus the extra CA file: both work together. */
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_ctx_t *ctx = NULL;
    assert_int_equal(reel_tls_ctx_new_client(reel_ca_cert_path(FX->ca), false, &ctx, &err),
                     REEL_OK);
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(ctx, "sys.test", false, NULL);
    handshake_ok(c, s);
    reel_tls_free(c);
    reel_tls_free(s);
    reel_tls_ctx_free(ctx);

    char *missing = reel_asprintf("%s/nope.pem", FX->dir);
    reel_err_clear(&err);
    ctx = NULL;
    assert_int_equal(reel_tls_ctx_new_client(missing, true, &ctx, &err), REEL_IO);
    assert_null(ctx);
    /* the reason is the system's, not OpenSSL's library name */
    assert_non_null(strstr(err.msg, "cannot load trusted CA file"));
    assert_non_null(strstr(err.msg, "nope.pem: No such file or directory"));
    free(missing);
    reel_err_clear(&err);
    assert_int_equal(reel_tls_ctx_new_client(FX->dir, true, &ctx, &err), REEL_IO);
    assert_null(ctx);
    assert_non_null(strstr(err.msg, "Is a directory"));

    /* Wrong role, no host. */
    reel_tls_t *t = NULL;
    reel_err_clear(&err);
    assert_int_equal(reel_tls_new_server(FX->client, NULL, &t, &err), REEL_INVALID);
    reel_tls_client_opts_t o = {0};
    reel_err_clear(&err);
    assert_int_equal(reel_tls_new_client(FX->client, &o, &t, &err), REEL_INVALID);
    o.host = "x.test";
    reel_err_clear(&err);
    assert_int_equal(reel_tls_new_client(FX->server, &o, &t, &err), REEL_INVALID);
    assert_null(t);
    reel_tls_free(NULL);
    reel_tls_ctx_free(NULL);
}

static void test_eof(void **state) {
    (void)state;
    /* EOF without close_notify after data: end of stream, not clean. */
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "eof.test", false, NULL);
    handshake_ok(c, s);
    reel_err_t err;
    reel_err_clear(&err);
    size_t n = 0;
    assert_int_equal(reel_tls_write_plain(s, (const uint8_t *)"tail", 4, &n, &err), REEL_OK);
    shuttle(s, c, 0);
    reel_tls_feed_eof(c);
    uint8_t buf[16];
    assert_int_equal(reel_tls_read_plain(c, buf, sizeof buf, &n, &err), REEL_OK);
    assert_int_equal(n, 4);
    assert_int_equal(reel_tls_read_plain(c, buf, sizeof buf, &n, &err), REEL_OK);
    assert_int_equal(n, 0);
    assert_false(reel_tls_peer_closed(c));
    assert_int_equal(err.code, REEL_OK);
    assert_int_equal(reel_tls_read_plain(c, buf, sizeof buf, &n, &err), REEL_OK);
    assert_int_equal(n, 0);
    reel_tls_free(c);
    reel_tls_free(s);

    /* EOF in the middle of the handshake: an error. */
    s = server_new(NULL);
    c = client_new(FX->client, "eof.test", false, NULL);
    assert_int_equal(reel_tls_handshake(c, &err), REEL_NEED_MORE);
    shuttle(c, s, 0);
    reel_tls_feed_eof(s);
    reel_err_clear(&err);
    /* The server answers the ClientHello, then finds the stream closed. */
    assert_int_equal(reel_tls_handshake(s, &err), REEL_ERROR);
    assert_string_equal(err.msg, "client TLS handshake failed: unexpected eof while reading");
    reel_err_clear(&err);
    reel_tls_feed_eof(c);
    assert_int_equal(reel_tls_handshake(c, &err), REEL_ERROR);
    assert_non_null(strstr(err.msg, "upstream"));
    reel_tls_free(c);
    reel_tls_free(s);
}

static void test_garbage(void **state) {
    (void)state;
    /* A plain HTTP request to the TLS server. */
    reel_tls_t *s = server_new("example.com");
    const char *req = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    size_t used = 0;
    reel_tls_feed_cipher(s, (const uint8_t *)req, strlen(req), &used);
    assert_int_equal(used, strlen(req));
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_tls_handshake(s, &err), REEL_ERROR);
    assert_string_equal(err.msg, "client TLS handshake failed: http request");
    reel_tls_free(s);

    /* Random bytes. */
    s = server_new("example.com");
    uint8_t junk[512];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 7 + 3);
    reel_tls_feed_cipher(s, junk, sizeof junk, &used);
    reel_err_clear(&err);
    assert_int_equal(reel_tls_handshake(s, &err), REEL_ERROR);
    assert_non_null(strstr(err.msg, "client TLS handshake failed"));
    reel_tls_free(s);
}

static void test_bounded_buffers(void **state) {
    (void)state;
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "bound.test", false, NULL);
    handshake_ok(c, s);
    reel_err_t err;
    reel_err_clear(&err);

    /* Writes stop while too much cipher waits. */
    size_t big = 1024 * 1024;
    uint8_t *data = reel_calloc(1, big);
    size_t total = 0, n = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(reel_tls_write_plain(c, data + total, big - total, &n, &err), REEL_OK);
        if (n == 0)
            break;
        total += n;
    }
    assert_true(total >= REEL_TLS_CIPHER_OUT_MAX - 1024);
    assert_true(total <= REEL_TLS_CIPHER_OUT_MAX);
    size_t pending = reel_tls_cipher_pending(c);
    assert_true(pending >= REEL_TLS_CIPHER_OUT_MAX);
    assert_true(pending < REEL_TLS_CIPHER_OUT_MAX + 4096);

    /* take_cipher respects the output buffer's maximum. */
    reel_buf_t out;
    reel_buf_init(&out, 100000);
    assert_int_equal(reel_tls_take_cipher(c, &out), REEL_LIMIT);
    assert_int_equal(out.len, 100000);
    assert_int_equal(reel_tls_cipher_pending(c), pending - 100000);
    reel_buf_t rest;
    reel_buf_init(&rest, 0);
    assert_int_equal(reel_tls_take_cipher(c, &rest), REEL_OK);
    assert_int_equal(rest.len, pending - 100000);

    /* feed_cipher accepts at most REEL_TLS_CIPHER_IN_MAX waiting bytes. */
    size_t used = 0;
    assert_int_equal(reel_tls_feed_cipher(s, out.data, out.len, &used), REEL_OK);
    assert_int_equal(used, out.len);
    assert_int_equal(reel_tls_feed_cipher(s, rest.data, rest.len, &used), REEL_OK);
    assert_int_equal(used, REEL_TLS_CIPHER_IN_MAX - out.len);
    size_t fed = out.len + used;
    assert_int_equal(reel_tls_feed_cipher(s, rest.data + used, rest.len - used, &n), REEL_OK);
    assert_int_equal(n, 0); /* full */

    /* Reading drains it; then the rest goes in. */
    size_t got = 0;
    uint8_t buf[16384];
    reel_rc rc;
    while ((rc = reel_tls_read_plain(s, buf, sizeof buf, &n, &err)) == REEL_OK && n > 0) {
        got += n;
        if (fed < out.len + rest.len) {
            size_t more = 0;
            reel_tls_feed_cipher(s, rest.data + (fed - out.len), out.len + rest.len - fed, &more);
            fed += more;
        }
    }
    assert_int_equal(rc, REEL_NEED_MORE);
    assert_int_equal(fed, out.len + rest.len);
    assert_int_equal(got, total);
    reel_buf_free(&out);
    reel_buf_free(&rest);
    free(data);
    reel_tls_free(c);
    reel_tls_free(s);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_handshake_rate(void **state) {
    (void)state;
    int n = UNDER_ASAN ? 40 : 200;
    /* Warm the leaf cache: the measurement is the steady state. */
    reel_tls_t *s = server_new(NULL);
    reel_tls_t *c = client_new(FX->client, "rate.test", false, NULL);
    handshake_ok(c, s);
    reel_tls_free(c);
    reel_tls_free(s);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        s = server_new(NULL);
        c = client_new(FX->client, "rate.test", false, NULL);
        handshake_ok(c, s);
        reel_tls_free(c);
        reel_tls_free(s);
    }
    double dt = now_s() - t0;
    print_message("in-memory TLS 1.3 handshakes (both sides, cached leaf, full verify): "
                  "%.0f/s (%.2f ms each)%s\n",
                  n / dt, dt / n * 1e3, UNDER_ASAN ? " [ASan build]" : "");
    t0 = now_s();
    for (int i = 0; i < n; i++)
        resume_round(FX->client, "rate.test", "rate.test:443", false);
    dt = now_s() - t0;
    print_message("same, client resuming a session (plus 100 bytes each way): %.0f/s (%.2f ms "
                  "each)\n",
                  n / dt, dt / n * 1e3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_handshake_bytewise),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_sni_selects_leaf),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_alpn_mirror),
        cmocka_unit_test(test_verify_untrusted_ca),
        cmocka_unit_test(test_verify_off),
        cmocka_unit_test(test_verify_self_signed),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_verify_chain_untrusted_root),
        cmocka_unit_test(test_client_cert_required),
        cmocka_unit_test(test_client_ctx),
        cmocka_unit_test(test_session_resumption),
        cmocka_unit_test(test_resumption_tls12_unclean_close),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bounded_buffers),
        cmocka_unit_test(test_handshake_rate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
