/* Tests for src/base/dnsmap.c: dns_overrides' entries, exact and
 * wildcard names, case and trailing dots, the first entry winning, ports
 * on either side, and the entries refused with their messages. */
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
    assert_string_equal(reel_dns_map_find(m, "api.example.com", 443, &entry, NULL), "10.0.0.5");
    assert_string_equal(entry, entries[0]);
    /* case and a trailing dot do not matter; the first entry wins */
    assert_string_equal(reel_dns_map_find(m, "API.Example.COM.", 443, NULL, NULL), "10.0.0.5");
    /* the wildcard: names under it, deeper ones too, not the name itself */
    assert_string_equal(reel_dns_map_find(m, "www.example.com", 443, &entry, NULL), "::1");
    assert_string_equal(entry, entries[1]);
    assert_string_equal(reel_dns_map_find(m, "a.b.example.com", 443, NULL, NULL), "::1");
    assert_string_equal(reel_dns_map_find(m, "example.com", 443, &entry, NULL), "192.0.2.1");
    assert_string_equal(entry, entries[2]);
    assert_null(reel_dns_map_find(m, "notexample.com", 443, NULL, NULL));
    assert_null(reel_dns_map_find(m, "example.org", 443, NULL, NULL));
    assert_null(reel_dns_map_find(m, "", 443, NULL, NULL));
    assert_null(reel_dns_map_find(m, NULL, 443, NULL, NULL));
    assert_null(reel_dns_map_find(NULL, "api.example.com", 443, NULL, NULL));
    reel_dns_map_free(m);
    assert_int_equal(reel_dns_map_new(NULL, 0, &m, &err), REEL_OK);
    assert_null(m);
}

/* Ports: an entry for one port of a name (curl's --resolve), one that
 * connects to another port (--connect-to), IPv6 with a port in brackets. */
static void test_ports(void **state) {
    (void)state;
    static const char *const entries[] = {"api.test:8080=10.0.0.8", "api.test=10.0.0.1:8443",
                                          "*.v6.test:443=[::1]:9443", "b.test=[fe80::1]",
                                          "c.test=::ffff:10.0.0.3"};
    reel_dns_map_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_dns_map_new(entries, 5, &m, &err), REEL_OK);
    const char *entry = NULL;
    int to = 0;
    assert_string_equal(reel_dns_map_find(m, "api.test", 8080, &entry, &to), "10.0.0.8");
    assert_string_equal(entry, entries[0]);
    assert_int_equal(to, 8080);
    assert_string_equal(reel_dns_map_find(m, "api.test", 443, &entry, &to), "10.0.0.1");
    assert_string_equal(entry, entries[1]);
    assert_int_equal(to, 8443);
    assert_string_equal(reel_dns_map_find(m, "x.v6.test", 443, NULL, &to), "::1");
    assert_int_equal(to, 9443);
    assert_null(reel_dns_map_find(m, "x.v6.test", 80, NULL, &to)); /* (another port) */
    assert_string_equal(reel_dns_map_find(m, "b.test", 80, NULL, &to), "fe80::1");
    assert_int_equal(to, 80);
    assert_string_equal(reel_dns_map_find(m, "c.test", 80, NULL, &to), "::ffff:10.0.0.3");
    assert_int_equal(to, 80);
    reel_dns_map_free(m);
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
        {"x.test=", "dns_overrides entry 'x.test=': '' is not an IPv4 or IPv6 address, nor "
                    "one with a port (10.0.0.5:8443, [::1]:8443)"},
        {"x.test=10.0.0", "dns_overrides entry 'x.test=10.0.0': '10.0.0' is not an IPv4 or IPv6 "
                          "address, nor one with a port (10.0.0.5:8443, [::1]:8443)"},
        {"x.test=host.test", "dns_overrides entry 'x.test=host.test': 'host.test' is not an IPv4 "
                             "or IPv6 address, nor one with a port (10.0.0.5:8443, [::1]:8443)"},
        {"x.test=[10.0.0.1", "dns_overrides entry 'x.test=[10.0.0.1': '[10.0.0.1' is not an "
                             "IPv4 or IPv6 address, nor one with a port (10.0.0.5:8443, "
                             "[::1]:8443)"},
        {"x.test:0=10.0.0.1", "dns_overrides entry 'x.test:0=10.0.0.1': '0' is not a port "
                              "(1-65535)"},
        {"x.test:http=10.0.0.1", "dns_overrides entry 'x.test:http=10.0.0.1': 'http' is not a "
                                 "port (1-65535)"},
        {"x.test=10.0.0.1:65536", "dns_overrides entry 'x.test=10.0.0.1:65536': '65536' is not "
                                  "a port (1-65535)"},
        {"x.test=10.0.0.1:", "dns_overrides entry 'x.test=10.0.0.1:': '' is not a port "
                             "(1-65535)"},
        {"x.test=[::1]8443", "dns_overrides entry 'x.test=[::1]8443': '[::1]8443' is not an IPv4 "
                             "or IPv6 address, nor one with a port (10.0.0.5:8443, [::1]:8443)"},
        {"x y:80=10.0.0.1", "dns_overrides entry 'x y:80=10.0.0.1': 'x y' is not a host name, "
                            "nor \"*.\" and one"},
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_find), cmocka_unit_test(test_ports),
                                       cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
