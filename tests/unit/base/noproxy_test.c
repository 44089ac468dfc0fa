/* Tests for src/base/noproxy.c: upstream_no_proxy's entries (names and the
 * names under them, addresses however spelled, ranges, "*"), what they do
 * not match, and the check of the list's syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/noproxy.h"

static void test_names(void **state) {
    (void)state;
    const char *l = "example.com, .internal  *.corp.test,localhost";
    assert_true(reel_no_proxy_match(l, "example.com"));
    assert_true(reel_no_proxy_match(l, "WWW.Example.COM"));
    assert_true(reel_no_proxy_match(l, "a.b.example.com."));
    assert_false(reel_no_proxy_match(l, "notexample.com")); /* a label, not a suffix */
    assert_false(reel_no_proxy_match(l, "example.com.evil.test"));
    assert_true(reel_no_proxy_match(l, "internal"));
    assert_true(reel_no_proxy_match(l, "git.internal"));
    assert_true(reel_no_proxy_match(l, "corp.test"));
    assert_true(reel_no_proxy_match(l, "x.corp.test"));
    assert_true(reel_no_proxy_match(l, "localhost"));
    assert_false(reel_no_proxy_match(l, "localhost6"));
    assert_false(reel_no_proxy_match(l, "127.0.0.1")); /* no name is resolved */
    assert_false(reel_no_proxy_match("", "example.com"));
    assert_false(reel_no_proxy_match(NULL, "example.com"));
    assert_false(reel_no_proxy_match(l, ""));
    assert_true(reel_no_proxy_match(" * ", "anything.test"));
    assert_true(reel_no_proxy_match("*", "::1"));
}

static void test_addresses(void **state) {
    (void)state;
    const char *l = "127.0.0.1,[::1],10.0.0.0/8 fd00::/8,192.0.2.128/25";
    assert_true(reel_no_proxy_match(l, "127.0.0.1"));
    assert_false(reel_no_proxy_match(l, "127.0.0.2"));
    assert_true(reel_no_proxy_match(l, "::1"));
    assert_true(reel_no_proxy_match(l, "[0:0::1]"));
    assert_true(reel_no_proxy_match(l, "10.255.3.4"));
    assert_false(reel_no_proxy_match(l, "11.0.0.1"));
    assert_true(reel_no_proxy_match(l, "fd12::7"));
    assert_false(reel_no_proxy_match(l, "fe80::1"));
    assert_true(reel_no_proxy_match(l, "192.0.2.200"));
    assert_false(reel_no_proxy_match(l, "192.0.2.127"));
    assert_false(reel_no_proxy_match(l, "localhost"));
    /* /0 is every address of its family, and only of it */
    assert_true(reel_no_proxy_match("0.0.0.0/0", "203.0.113.9"));
    assert_false(reel_no_proxy_match("0.0.0.0/0", "::1"));
    assert_false(reel_no_proxy_match("0.0.0.0/0", "example.com"));
}

static void test_check(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_no_proxy_check("", &err), REEL_OK);
    assert_int_equal(reel_no_proxy_check("*, a.b, .c, *.d, 1.2.3.4, ::1, [::1], 10.0.0.0/8, "
                                         "fd00::/128",
                                         &err),
                     REEL_OK);
    static const char *const bad[] = {"a..b",      "*x.test",    "a/8",  "10.0.0.0/33", "::/129",
                                      "10.0.0.0/", "10.0.0.0/x", "a:80", "*.",          "b!c"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_no_proxy_check(bad[i], &err), REEL_INVALID);
        assert_non_null(strstr(reel_err_str(&err), "is not a host name, an address"));
        /* and it matches nothing */
        assert_false(reel_no_proxy_match(bad[i], "a"));
    }
    reel_err_clear(&err);
    reel_no_proxy_check("good.test, bad..test", &err);
    assert_string_equal(reel_err_str(&err), "'bad..test' is not a host name, an address or an "
                                            "address range (a.b.c.d/n)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
