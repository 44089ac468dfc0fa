/* Tests for src/core/socks.c: the SOCKS5 messages a client sends (RFC 1928,
 * RFC 1929), each read whole, as every prefix (in its own heap buffer of
 * exactly that size, so that ASan sees a read past len) and with bytes
 * after it; the reply reel writes. */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting),
        cmocka_unit_test(test_userpass),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
