/* Tests for src/base/dnsmap.c: dns_overrides' entries, exact and
 * wildcard names, case and trailing dots, the first entry winning, and
 * the entries refused with their messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/dnsmap.h"

static void test_find(void **state) {
    (void)state;
    static const char *const entries[] = {"api.example.com=10.0.0.5", "*.example.com=[::1]",
                                          "example.com.=192.0.2.1", "API.example.com=10.9.9.9"};
    reel_dns_map_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_dns_map_new(entries, 4, &m, &err), REEL_OK);
    const char *entry = NULL;
    assert_string_equal(reel_dns_map_find(m, "api.example.com", &entry), "10.0.0.5");
    assert_string_equal(entry, entries[0]);
    /* case and a trailing dot do not matter; the first entry wins */
    assert_string_equal(reel_dns_map_find(m, "API.Example.COM.", NULL), "10.0.0.5");
    /* the wildcard: names under it, deeper ones too, not the name itself */
    assert_string_equal(reel_dns_map_find(m, "www.example.com", &entry), "::1");
    assert_string_equal(entry, entries[1]);
    assert_string_equal(reel_dns_map_find(m, "a.b.example.com", NULL), "::1");
    assert_string_equal(reel_dns_map_find(m, "example.com", &entry), "192.0.2.1");
    assert_string_equal(entry, entries[2]);
    assert_null(reel_dns_map_find(m, "notexample.com", NULL));
    assert_null(reel_dns_map_find(m, "example.org", NULL));
    assert_null(reel_dns_map_find(m, "", NULL));
    assert_null(reel_dns_map_find(m, NULL, NULL));
    assert_null(reel_dns_map_find(NULL, "api.example.com", NULL));
    reel_dns_map_free(m);
    assert_int_equal(reel_dns_map_new(NULL, 0, &m, &err), REEL_OK);
    assert_null(m);
}

static void test_refused(void **state) {
    (void)state;
    static const struct {
        const char *entry, *msg;
    } bad[] = {
        {"example.com", "dns_overrides entry 'example.com': not NAME=ADDRESS (as "
                        "\"api.example.com=10.0.0.5\")"},
        {"=10.0.0.1", "dns_overrides entry '=10.0.0.1': '' is not a host name, nor \"*.\" and "
                      "one"},
        {"a b=10.0.0.1", "dns_overrides entry 'a b=10.0.0.1': 'a b' is not a host name, nor "
                         "\"*.\" and one"},
        {"a..b=10.0.0.1", "dns_overrides entry 'a..b=10.0.0.1': 'a..b' is not a host name, nor "
                          "\"*.\" and one"},
        {"*.=10.0.0.1", "dns_overrides entry '*.=10.0.0.1': '*.' is not a host name, nor \"*.\" "
                        "and one"},
        {"x.test=", "dns_overrides entry 'x.test=': '' is not an IPv4 or IPv6 address"},
        {"x.test=10.0.0", "dns_overrides entry 'x.test=10.0.0': '10.0.0' is not an IPv4 or IPv6 "
                          "address"},
        {"x.test=host.test", "dns_overrides entry 'x.test=host.test': 'host.test' is not an IPv4 "
                             "or IPv6 address"},
        {"x.test=[10.0.0.1", "dns_overrides entry 'x.test=[10.0.0.1': '[10.0.0.1' is not an "
                             "IPv4 or IPv6 address"},
    };
    reel_err_t err;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_dns_override_check(bad[i].entry, &err), REEL_INVALID);
        assert_string_equal(reel_err_str(&err), bad[i].msg);
    }
    /* a list with one bad entry is refused whole */
    static const char *const some_bad[] = {"a.test=10.0.0.1", "b.test=nope"};
    reel_dns_map_t *m = (reel_dns_map_t *)(uintptr_t)1;
    reel_err_clear(&err);
    assert_int_equal(reel_dns_map_new(some_bad, 2, &m, &err), REEL_INVALID);
    assert_null(m);
    reel_err_clear(&err);
    assert_int_equal(reel_dns_override_check("*.svc.local=fe80::1", &err), REEL_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_find), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
