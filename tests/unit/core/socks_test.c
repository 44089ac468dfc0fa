/* Tests for src/core/socks.c: the SOCKS5 messages a client sends (RFC 1928,
 * RFC 1929), each read whole, as every prefix (in its own heap buffer of
 * exactly that size, so that ASan sees a read past len) and with bytes
 * after it; the reply reel writes; and the client's side (reel through a
 * SOCKS5 upstream proxy): the messages it writes, and a proxy's answers
 * fed whole and split at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/socks.h"

/* Every proper prefix of buf[0..n) must be NEED_MORE or, once something
 * is wrong in it, the whole's own answer. */
#define PREFIXES(call_on, buf, n, whole_rc)                                                        \
    do {                                                                                           \
        for (size_t k_ = 0; k_ < (n); k_++) {                                                      \
            uint8_t *p_ = malloc(k_ ? k_ : 1);                                                     \
            memcpy(p_, (buf), k_);                                                                 \
            reel_rc r_ = call_on(p_, k_);                                                          \
            assert_true(r_ == REEL_NEED_MORE || (r_ == (whole_rc) && r_ != REEL_OK));              \
            free(p_);                                                                              \
        }                                                                                          \
    } while (0)

static size_t g_used;
static bool g_none, g_userpass;
static const char *g_why;

static reel_rc greet(const uint8_t *b, size_t n) {
    return reel_socks5_greeting(b, n, &g_used, &g_none, &g_userpass, &g_why);
}

static void test_greeting(void **state) {
    (void)state;
    static const uint8_t curl[] = {5, 2, 0, 1}; /* curl: none, GSSAPI */
    PREFIXES(greet, curl, sizeof curl, REEL_OK);
    assert_int_equal(greet(curl, sizeof curl), REEL_OK);
    assert_int_equal(g_used, 4);
    assert_true(g_none);
    assert_false(g_userpass);
    /* with a username: curl offers 0 and 2; bytes after it are not its */
    static const uint8_t both[] = {5, 2, 0, 2, 5, 1, 0};
    assert_int_equal(greet(both, sizeof both), REEL_OK);
    assert_int_equal(g_used, 4);
    assert_true(g_none && g_userpass);
    static const uint8_t gss[] = {5, 1, 1};
    assert_int_equal(greet(gss, sizeof gss), REEL_OK);
    assert_false(g_none || g_userpass);
    static const uint8_t none[] = {5, 0};
    assert_int_equal(greet(none, sizeof none), REEL_INVALID);
    assert_string_equal(g_why, "a greeting that offers no method");
    static const uint8_t v4[] = {4, 1, 0, 80};
    assert_int_equal(greet(v4, sizeof v4), REEL_INVALID);
    assert_string_equal(g_why, "not SOCKS version 5");
}

static char g_user[256], g_pass[256];

static reel_rc userpass(const uint8_t *b, size_t n) {
    return reel_socks5_userpass(b, n, &g_used, g_user, g_pass, &g_why);
}

static void test_userpass(void **state) {
    (void)state;
    static const uint8_t ok[] = {1, 3, 'a', 'n', 'n', 6, 's', '3', 'c', 'r', 'e', 't'};
    PREFIXES(userpass, ok, sizeof ok, REEL_OK);
    assert_int_equal(userpass(ok, sizeof ok), REEL_OK);
    assert_int_equal(g_used, sizeof ok);
    assert_string_equal(g_user, "ann");
    assert_string_equal(g_pass, "s3cret");
    static const uint8_t nopass[] = {1, 1, 'u', 0};
    assert_int_equal(userpass(nopass, sizeof nopass), REEL_OK);
    assert_string_equal(g_pass, "");
    static const uint8_t nouser[] = {1, 0, 1, 'p'};
    assert_int_equal(userpass(nouser, sizeof nouser), REEL_INVALID);
    assert_string_equal(g_why, "an empty username");
    static const uint8_t nul[] = {1, 2, 'a', 0, 1, 'p'};
    assert_int_equal(userpass(nul, sizeof nul), REEL_INVALID);
    static const uint8_t v2[] = {2, 1, 'u', 1, 'p'};
    assert_int_equal(userpass(v2, sizeof v2), REEL_INVALID);
    /* 255 bytes each, the most the lengths say */
    uint8_t big[1 + 1 + 255 + 1 + 255];
    big[0] = 1;
    big[1] = 255;
    memset(big + 2, 'u', 255);
    big[257] = 255;
    memset(big + 258, 'p', 255);
    assert_int_equal(userpass(big, sizeof big), REEL_OK);
    assert_int_equal(strlen(g_user), 255);
    assert_int_equal(strlen(g_pass), 255);
}

static reel_socks5_request_t g_rq;
static uint8_t g_reply;

static reel_rc request(const uint8_t *b, size_t n) {
    g_reply = 0xee;
    return reel_socks5_request(b, n, &g_used, &g_rq, &g_reply, &g_why);
}

static void test_request(void **state) {
    (void)state;
    static const uint8_t v4[] = {5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, 'x'};
    PREFIXES(request, v4, sizeof v4 - 1, REEL_OK);
    assert_int_equal(request(v4, sizeof v4), REEL_OK);
    assert_int_equal(g_used, 10);
    assert_int_equal(g_rq.cmd, REEL_SOCKS5_CONNECT);
    assert_string_equal(g_rq.host, "127.0.0.1");
    assert_int_equal(g_rq.port, 8080);
    static const uint8_t name[] = {5,   1,   0,   3,   11,  'e', 'x', 'a', 'm',
                                   'p', 'l', 'e', '.', 'c', 'o', 'm', 1,   187};
    PREFIXES(request, name, sizeof name, REEL_OK);
    assert_int_equal(request(name, sizeof name), REEL_OK);
    assert_string_equal(g_rq.host, "example.com");
    assert_int_equal(g_rq.port, 443);
    uint8_t v6[4 + 16 + 2] = {5, 1, 0, 4};
    v6[4] = 0x20;
    v6[5] = 0x01;
    v6[4 + 15] = 1;
    v6[21] = 80;
    assert_int_equal(request(v6, sizeof v6), REEL_OK);
    assert_string_equal(g_rq.host, "2001::1");
    /* BIND parses: the caller refuses it */
    static const uint8_t bind[] = {5, 2, 0, 1, 10, 0, 0, 1, 0, 21};
    assert_int_equal(request(bind, sizeof bind), REEL_OK);
    assert_int_equal(g_rq.cmd, REEL_SOCKS5_BIND);
    /* refused, each with its reply */
    static const uint8_t atyp[] = {5, 1, 0, 2, 1, 2, 3, 4, 0, 80};
    PREFIXES(request, atyp, sizeof atyp, REEL_INVALID);
    assert_int_equal(request(atyp, sizeof atyp), REEL_INVALID);
    assert_int_equal(g_reply, REEL_SOCKS5_BAD_ADDRESS);
    assert_string_equal(g_why, "an unknown address type");
    static const uint8_t empty[] = {5, 1, 0, 3, 0, 0, 80};
    assert_int_equal(request(empty, sizeof empty), REEL_INVALID);
    assert_int_equal(g_reply, REEL_SOCKS5_BAD_ADDRESS);
    static const uint8_t slash[] = {5, 1, 0, 3, 3, 'a', '/', 'b', 0, 80};
    assert_int_equal(request(slash, sizeof slash), REEL_INVALID);
    assert_int_equal(g_reply, REEL_SOCKS5_BAD_ADDRESS);
    static const uint8_t port0[] = {5, 1, 0, 1, 1, 2, 3, 4, 0, 0};
    assert_int_equal(request(port0, sizeof port0), REEL_INVALID);
    assert_int_equal(g_reply, REEL_SOCKS5_FAILURE);
    static const uint8_t rsv[] = {5, 1, 7, 1, 1, 2, 3, 4, 0, 80};
    assert_int_equal(request(rsv, sizeof rsv), REEL_INVALID);
    static const uint8_t v4ver[] = {4, 1, 0, 1, 1, 2, 3, 4, 0, 80};
    assert_int_equal(request(v4ver, sizeof v4ver), REEL_INVALID);
}

static void test_reply(void **state) {
    (void)state;
    uint8_t r[10];
    reel_socks5_reply(r, REEL_SOCKS5_REFUSED);
    static const uint8_t want[10] = {5, 5, 0, 1, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(r, want, 10);
    assert_string_equal(reel_socks5_reply_name(REEL_SOCKS5_OK), "succeeded");
    assert_string_equal(reel_socks5_reply_name(REEL_SOCKS5_BAD_COMMAND), "command not supported");
    assert_string_equal(reel_socks5_reply_name(9), "unassigned");
}

static void test_client_messages(void **state) {
    (void)state;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_socks5_client_greeting(&b, false);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "\x05\x01\x00", 3);
    reel_buf_reset(&b);
    reel_socks5_client_greeting(&b, true);
    assert_memory_equal(b.data, "\x05\x02\x00\x02", 4);
    reel_buf_reset(&b);
    assert_true(reel_socks5_client_userpass(&b, "ann", "pw"));
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data,
                        "\x01\x03"
                        "ann"
                        "\x02"
                        "pw",
                        8);
    reel_buf_reset(&b);
    assert_false(reel_socks5_client_userpass(&b, "", "pw"));
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_false(reel_socks5_client_userpass(&b, "ann", big));
    assert_false(reel_socks5_client_connect(&b, big, 80));
    assert_int_equal(b.len, 0);
    /* each address type, and what the server side reads back */
    static const char *const hosts[] = {"192.0.2.7", "2001:db8::1", "example.test"};
    static const uint8_t atyps[] = {1, 4, 3};
    for (int i = 0; i < 3; i++) {
        reel_buf_reset(&b);
        assert_true(reel_socks5_client_connect(&b, hosts[i], 8443));
        reel_socks5_request_t rq;
        size_t used;
        uint8_t reply;
        const char *why;
        assert_int_equal(reel_socks5_request(b.data, b.len, &used, &rq, &reply, &why), REEL_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(rq.atyp, atyps[i]);
        assert_string_equal(rq.host, hosts[i]);
        assert_int_equal(rq.port, 8443);
    }
    reel_buf_free(&b);
}

/* The proxy's answers fed to a handshake in pieces of `step` bytes (0:
 * whole), as they would come: returns its last result, *what its words
 * and *rest the bytes after the handshake; *sent what it asked to send
 * after the greeting. */
static reel_rc handshake(const char *user, const uint8_t *in, size_t n, size_t step, char **what,
                         size_t *rest, reel_buf_t *sent) {
    reel_socks5_client_t s;
    reel_buf_t have;
    reel_buf_init(&have, 0);
    reel_buf_reset(sent);
    reel_socks5_client_start(&s, "example.test", 443, user, "pw", sent);
    reel_buf_reset(sent);
    reel_rc rc = REEL_NEED_MORE;
    size_t at = 0;
    *what = NULL;
    while (rc == REEL_NEED_MORE && at < n) {
        size_t k = step && n - at > step ? step : n - at;
        reel_buf_append(&have, in + at, k);
        at += k;
        size_t used;
        rc = reel_socks5_client_feed(&s, have.data, have.len, &used, sent, what);
        reel_buf_consume(&have, used);
    }
    *rest = have.len + (n - at);
    reel_buf_free(&have);
    return rc;
}

static void test_client_handshake(void **state) {
    (void)state;
    /* no authentication; a reply with a domain name; then the origin's */
    static const uint8_t plain[] = "\x05\x00"
                                   "\x05\x00\x00\x03\x04host\x01\xbb"
                                   "ORIGIN";
    /* username and password; a reply with an IPv6 address */
    static const uint8_t auth[] = "\x05\x02"
                                  "\x01\x00"
                                  "\x05\x00\x00\x04"
                                  "AAAAAAAAAAAAAAAA"
                                  "\x00\x50";
    reel_buf_t sent;
    reel_buf_init(&sent, 0);
    for (size_t step = 0; step < 8; step++) {
        char *what;
        size_t rest;
        assert_int_equal(handshake(NULL, plain, sizeof plain - 1, step, &what, &rest, &sent),
                         REEL_OK);
        assert_null(what);
        assert_int_equal(rest, 6);
        assert_int_equal(sent.len, 7 + 12); /* the CONNECT for example.test:443 */
        assert_int_equal(handshake("ann", auth, sizeof auth - 1, step, &what, &rest, &sent),
                         REEL_OK);
        assert_int_equal(rest, 0);
        assert_int_equal(sent.len, 8 + 7 + 12); /* the password, then the CONNECT */
    }
#define IN(s) (const uint8_t *)(s), sizeof(s) - 1
    static const struct {
        const char *user;
        const uint8_t *in;
        size_t n;
        const char *what;
    } refused[] = {
        {NULL, IN("\x05\x02"), "asks for a username and password (upstream_proxyauth) before"},
        {NULL, IN("\x05\xff"), "asks for a username and password (upstream_proxyauth) before"},
        {"ann", IN("\x05\xff"),
         "accepted none of the methods reel offers (none, username and password) before"},
        {"ann", IN("\x05\x02\x01\x01"),
         "refused upstream_proxyauth's username and password before"},
        {NULL, IN("\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"),
         "answered 05 (connection refused) to"},
        {NULL, IN("\x05\x00\x05\x00\x00\x09\x00"), "answered with an unknown address type to"},
        {NULL, IN("HTTP/1.1 400"),
         "answered the greeting with what is not SOCKS version 5, before"},
        {NULL, IN("\x05\x00HTTP"), "answered what is not SOCKS version 5 to"},
    };
#undef IN
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char *what;
        size_t rest;
        assert_int_equal(
            handshake(refused[i].user, refused[i].in, refused[i].n, 0, &what, &rest, &sent),
            REEL_INVALID);
        assert_non_null(what);
        assert_string_equal(what, refused[i].what);
        free(what);
    }
    reel_buf_free(&sent);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting),        cmocka_unit_test(test_userpass),
        cmocka_unit_test(test_request),         cmocka_unit_test(test_reply),
        cmocka_unit_test(test_client_messages), cmocka_unit_test(test_client_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
