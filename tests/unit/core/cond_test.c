/* Tests for src/core/cond.c: HTTP dates, and what a request's conditions
 * and Range make of a file (RFC 9110 sections 13 and 14). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/cond.h"

#define ETAG "\"3e8-1\""
#define MTIME 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */

static void test_dates(void **state) {
    (void)state;
    static const char *const same[] = {
        "Sun, 06 Nov 1994 08:49:37 GMT",  /* IMF-fixdate */
        "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850 */
        "Sun Nov  6 08:49:37 1994",       /* asctime */
    };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        int64_t t = 0;
        assert_true(reel_http_date_parse(same[i], strlen(same[i]), &t));
        assert_int_equal(t, MTIME);
    }
    static const char *const bad[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37",       /* no zone */
        "Sun, 06 Nov 1994 08:49:37 UTC",   /* another zone */
        "Sun, 06 Nov 1994 08:49:37 GMT ",  /* trailing bytes */
        "Sun, 6 Nov 1994 08:49:37 GMT",    /* one digit */
        "Sun, 31 Nov 1994 08:49:37 GMT",   /* no such day */
        "Mon, 29 Feb 2100 00:00:00 GMT",   /* not a leap year */
        "Sun, 06 Nov 1994 24:00:00 GMT",   /* no such hour */
        "Sun, 06 Nov 1994 08:61:00 GMT",   /* no such minute */
        "Xyz, 06 Nov 1994 08:49:37 GMT",   /* no such day name */
        "Sun, 06 Foo 1994 08:49:37 GMT",   /* no such month */
        "Sun Nov 6 08:49:37 1994",         /* asctime's day is two wide */
        "Sunday, 06-Nov-1994 08:49:37 GMT" /* RFC 850's year is two digits */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t t = 0;
        assert_false(reel_http_date_parse(bad[i], strlen(bad[i]), &t));
    }
    int64_t t = 0;
    assert_true(reel_http_date_parse("Tue, 29 Feb 2000 12:00:00 GMT", 29, &t));
    assert_int_equal(t, 951825600);
    /* RFC 850's two-digit years: this century's, unless that is more than
     * 50 years ahead (then the last century's: 94 above is 1994 until 2044) */
    assert_true(reel_http_date_parse("Monday, 01-Jan-01 00:00:00 GMT", 30, &t));
    assert_int_equal(t, 978307200);
}

static void test_date_format(void **state) {
    (void)state;
    static const struct {
        int64_t t;
        const char *s;
    } cases[] = {
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {MTIME, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {951825600, "Tue, 29 Feb 2000 12:00:00 GMT"},
        {4102444799, "Thu, 31 Dec 2099 23:59:59 GMT"},
        {1796641966, "Mon, 07 Dec 2026 11:12:46 GMT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[30];
        reel_http_date_format(cases[i].t, out);
        assert_string_equal(out, cases[i].s);
        int64_t back = -1;
        assert_true(reel_http_date_parse(out, strlen(out), &back));
        assert_int_equal(back, cases[i].t);
    }
}

/* What method with one or two fields (name NULL: none) answers for a
 * 1000-byte file of ETAG and MTIME, now a minute later. */
static reel_cond_answer_t ask2(const char *method, const char *n1, const char *v1, const char *n2,
                               const char *v2) {
    reel_field_t fs[2] = {{0}};
    size_t n = 0;
    if (n1)
        fs[n++] = (reel_field_t){n1, strlen(n1), v1, strlen(v1)};
    if (n2)
        fs[n++] = (reel_field_t){n2, strlen(n2), v2, strlen(v2)};
    reel_cond_repr_t r = {.size = 1000, .mtime = MTIME, .etag = ETAG, .now = MTIME + 60};
    reel_cond_answer_t a;
    memset(&a, 0xa5, sizeof a);
    reel_cond_evaluate(method, fs, n, &r, &a);
    return a;
}

static reel_cond_answer_t ask(const char *name, const char *value) {
    return ask2("GET", name, value, NULL, NULL);
}

#define assert_answer(a, st, fi, len)                                                              \
    do {                                                                                           \
        reel_cond_answer_t a_ = (a);                                                               \
        assert_int_equal(a_.status, st);                                                           \
        assert_int_equal(a_.first, fi);                                                            \
        assert_int_equal(a_.length, len);                                                          \
    } while (0)

static void test_ranges(void **state) {
    (void)state;
    assert_answer(ask(NULL, NULL), 200, 0, 1000);
    assert_answer(ask("Range", "bytes=0-0"), 206, 0, 1);
    assert_answer(ask("range", "bytes=10-19"), 206, 10, 10);
    assert_answer(ask("Range", "BYTES=10-19"), 206, 10, 10);
    assert_answer(ask("Range", "bytes=990-"), 206, 990, 10);
    assert_answer(ask("Range", "bytes=990-5000"), 206, 990, 10);
    assert_answer(ask("Range", "bytes=0-99999999999999999999999"), 206, 0, 1000);
    assert_answer(ask("Range", "bytes=-3"), 206, 997, 3);
    assert_answer(ask("Range", "bytes=-5000"), 206, 0, 1000);
    /* not satisfiable: past the end, or the last zero bytes */
    assert_answer(ask("Range", "bytes=1000-"), 416, 0, 0);
    assert_answer(ask("Range", "bytes=99999999999999999999999-"), 416, 0, 0);
    assert_answer(ask("Range", "bytes=-0"), 416, 0, 0);
    /* ignored: the whole file */
    static const char *const ignored[] = {
        "bytes=5-4",     "bytes=",     "bytes=-",   "bytes=a-b",  "items=0-1",
        "bytes=0-1,3-4", "bytes=0-1,", "bytes 0-1", "bytes=1-2x", "bytes=--1",
    };
    for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++)
        assert_answer(ask("Range", ignored[i]), 200, 0, 1000);
    /* GET only; two Range fields are none */
    assert_answer(ask2("HEAD", "Range", "bytes=0-1", NULL, NULL), 200, 0, 1000);
    assert_answer(ask2("POST", "Range", "bytes=0-1", NULL, NULL), 200, 0, 1000);
    assert_answer(ask2("GET", "Range", "bytes=0-1", "Range", "bytes=0-1"), 200, 0, 1000);
}

static void test_conditions(void **state) {
    (void)state;
    /* If-None-Match: weak comparison, lists, "*"; 412 for other methods */
    assert_answer(ask("If-None-Match", ETAG), 304, 0, 0);
    assert_answer(ask("If-None-Match", "W/" ETAG), 304, 0, 0);
    assert_answer(ask("If-None-Match", "\"a\", " ETAG " ,"), 304, 0, 0);
    assert_answer(ask("If-None-Match", "*"), 304, 0, 0);
    assert_answer(ask("If-None-Match", "\"a\""), 200, 0, 1000);
    assert_answer(ask2("HEAD", "If-None-Match", ETAG, NULL, NULL), 304, 0, 0);
    assert_answer(ask2("POST", "If-None-Match", ETAG, NULL, NULL), 412, 0, 0);
    assert_answer(ask2("GET", "If-None-Match", "\"a\"", "If-None-Match", ETAG), 304, 0, 0);
    /* If-Modified-Since: not after the date; ignored beside If-None-Match,
     * when it does not parse, and for other methods */
    assert_answer(ask("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"), 304, 0, 0);
    assert_answer(ask("If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT"), 304, 0, 0);
    assert_answer(ask("If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"), 200, 0, 1000);
    assert_answer(ask("If-Modified-Since", "yesterday"), 200, 0, 1000);
    assert_answer(
        ask2("GET", "If-None-Match", "\"a\"", "If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT"),
        200, 0, 1000);
    assert_answer(ask2("POST", "If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT", NULL, NULL),
                  200, 0, 1000);
    /* If-Match: strong comparison; If-Unmodified-Since */
    assert_answer(ask("If-Match", ETAG), 200, 0, 1000);
    assert_answer(ask("If-Match", "*"), 200, 0, 1000);
    assert_answer(ask("If-Match", "W/" ETAG), 412, 0, 0);
    assert_answer(ask("If-Match", "\"a\""), 412, 0, 0);
    assert_answer(ask("If-Match", "not-quoted"), 412, 0, 0);
    assert_answer(ask("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"), 412, 0, 0);
    assert_answer(ask("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"), 200, 0, 1000);
    /* If-Match first: a matching If-None-Match does not make it 304 */
    assert_answer(ask2("GET", "If-Match", "\"a\"", "If-None-Match", ETAG), 412, 0, 0);
    /* an entity-tag with a space or a control byte does not parse */
    assert_answer(ask("If-None-Match", "\"a b\""), 200, 0, 1000);
    assert_answer(ask("If-None-Match", "\"a"), 200, 0, 1000);
}

static void test_if_range(void **state) {
    (void)state;
    assert_answer(ask2("GET", "Range", "bytes=1-2", "If-Range", ETAG), 206, 1, 2);
    assert_answer(ask2("GET", "Range", "bytes=1-2", "If-Range", "W/" ETAG), 200, 0, 1000);
    assert_answer(ask2("GET", "Range", "bytes=1-2", "If-Range", "\"other\""), 200, 0, 1000);
    assert_answer(ask2("GET", "Range", "bytes=1-2", "If-Range", "Sun, 06 Nov 1994 08:49:37 GMT"),
                  206, 1, 2);
    assert_answer(ask2("GET", "Range", "bytes=1-2", "If-Range", "Sun, 06 Nov 1994 08:49:38 GMT"),
                  200, 0, 1000);
    assert_answer(ask2("GET", "Range", "bytes=1-2", "If-Range", "soon"), 200, 0, 1000);
    /* a date less than a second before the answer is no strong validator */
    reel_field_t fs[2] = {{"Range", 5, "bytes=1-2", 9},
                          {"If-Range", 8, "Sun, 06 Nov 1994 08:49:37 GMT", 29}};
    reel_cond_repr_t r = {.size = 1000, .mtime = MTIME, .etag = ETAG, .now = MTIME};
    reel_cond_answer_t a;
    reel_cond_evaluate("GET", fs, 2, &r, &a);
    assert_answer(a, 200, 0, 1000);
    /* an empty file has no range */
    r.size = 0;
    reel_cond_evaluate("GET", fs, 1, &r, &a);
    assert_answer(a, 416, 0, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),    cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_ranges),   cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_if_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
