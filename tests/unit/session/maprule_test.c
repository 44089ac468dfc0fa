/* Tests for src/session/maprule.c: map_remote's rules, their syntax, the
 * first matching rule applying (every match replaced, groups), results
 * that are no http(s) URL refused, and no match left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session/maprule.h"

static char *apply(const char *const *rules, size_t n, const char *url, char *why, size_t whylen) {
    reel_map_rules_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_map_rules_new(rules, n, &m, &err), REEL_OK);
    char *out = reel_map_rules_apply(m, url, &err);
    if (why)
        snprintf(why, whylen, "%s", reel_err_str(&err));
    reel_map_rules_free(m);
    return out;
}

static void test_apply(void **state) {
    (void)state;
    static const char *const rules[] = {
        "|^https://api\\.example\\.com/|https://staging.example.com/",
        "#^http://localhost:3000/v1/(.*)#http://[::1]:4000/v2/$1",
        "|x|y", /* every match: after the two above */
    };
    char *out = apply(rules, 3, "https://api.example.com/users?id=1", NULL, 0);
    assert_string_equal(out, "https://staging.example.com/users?id=1");
    free(out);
    out = apply(rules, 3, "http://localhost:3000/v1/a/b", NULL, 0);
    assert_string_equal(out, "http://[::1]:4000/v2/a/b");
    free(out);
    out = apply(rules, 3, "http://xx.test/x", NULL, 0);
    assert_string_equal(out, "http://yy.test/y");
    free(out);
    /* a URL with bytes that are no UTF-8 is matched all the same */
    out = apply(rules, 3, "https://api.example.com/\xff\xfe?x", NULL, 0);
    assert_string_equal(out, "https://staging.example.com/\xff\xfe?x");
    free(out);
    /* no rule matches: NULL, no error */
    char why[300] = "";
    assert_null(apply(rules, 3, "http://other.test/", why, sizeof why));
    assert_string_equal(why, "success"); /* (no error) */
    assert_null(apply(NULL, 0, "http://other.test/", NULL, 0));
    /* a result that is no http(s) URL is refused, naming the rule */
    static const char *const bad[] = {"|^http://a\\.test/|ftp://b.test/"};
    assert_null(apply(bad, 1, "http://a.test/f", why, sizeof why));
    assert_string_equal(why, "map_remote rule '|^http://a\\.test/|ftp://b.test/' made "
                             "'ftp://b.test/f' of the URL, which is not an http:// or https:// "
                             "URL");
}

static void test_check(void **state) {
    (void)state;
    reel_err_t err;
    static const char *const good[] = {"|a|b", "#^http://x/#https://y/", "|(?<p>.*)|${p}", "|a|"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_map_rule_check(good[i], &err), REEL_OK);
    }
    static const struct {
        const char *rule, *why;
    } bad[] = {
        {"abc", "a rule starts with its separator"},
        {"", "a rule starts with its separator"},
        {"|abc", "no replacement after the pattern"},
        {"||b", "an empty pattern"},
        {"|~d x|a|b", "three parts: a flow filter before the pattern is not taken"},
        {"|(|b", "bad pattern at 1: missing closing parenthesis"},
        {"|a|${x", "bad replacement"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_map_rule_check(bad[i].rule, &err), REEL_INVALID);
        assert_non_null(strstr(reel_err_str(&err), bad[i].why));
        reel_map_rules_t *m = (reel_map_rules_t *)1;
        const char *one[] = {bad[i].rule};
        reel_err_clear(&err);
        assert_int_equal(reel_map_rules_new(one, 1, &m, &err), REEL_INVALID);
        assert_null(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
