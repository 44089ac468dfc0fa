/* Tests for src/session/maprule.c: map_remote's rules, their syntax, the
 * first matching rule applying (every match replaced, groups), results
 * that are no http(s) URL refused, and no match left alone; map_local's,
 * the file name a URL gives under a rule's directory; modify_headers',
 * judged on requests and on responses. */
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
    char *out = reel_map_rules_apply(m, url, NULL, &err);
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
    static const char *const good[] = {"|a|b", "#^http://x/#https://y/", "|(?<p>.*)|${p}", "|a|",
                                       "|~d x|a|b"};
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
        {"|~d x|a|b|c", "more than three parts"},
        {"|~d x||b", "an empty pattern"},
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

/* map_local: the rule's path and the name under it (NULL: none matched;
 * "<out>" for a name that would leave the directory). */
static char *local(const char *const *rules, size_t n, const char *url, char path[64]) {
    reel_map_rules_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_map_local_new(rules, n, &m, &err), REEL_OK);
    char *suffix = NULL;
    const char *p = NULL;
    int hit = reel_map_local_match(m, url, NULL, &p, &suffix);
    snprintf(path, 64, "%s", p ? p : "");
    char *out = hit ? (suffix ? suffix : strdup("<out>")) : NULL;
    reel_map_rules_free(m);
    return out;
}

static void test_local(void **state) {
    (void)state;
    static const char *const rules[] = {
        "|example\\.com/app\\.js|/srv/app.js",
        "|^https://site\\.test/static/|/srv/site",
        "|^http://grp\\.test/v\\d/(.*)\\.json|/srv/site",
    };
    char path[64];
    static const struct {
        const char *url, *path, *suffix;
    } cases[] = {
        {"https://example.com/app.js?v=3", "/srv/app.js", ""},
        /* what follows the match: no query, decoded, no slashes at the ends */
        {"https://site.test/static/css/a%20b.css?x=1#f", "/srv/site", "css/a b.css"},
        {"https://site.test/static/", "/srv/site", ""},
        {"https://site.test/static//dir//", "/srv/site", "dir"},
        /* the first group, when the pattern has one */
        {"http://grp.test/v2/users/1.json?pretty", "/srv/site", "users/1"},
        /* names that would leave the directory */
        {"https://site.test/static/../etc/passwd", "/srv/site", "<out>"},
        {"https://site.test/static/a/%2e%2e/%2E%2E/x", "/srv/site", "<out>"},
        {"https://site.test/static/..", "/srv/site", "<out>"},
        {"https://site.test/static/a%00b", "/srv/site", "<out>"},
        /* ".." inside a name, a bad escape, are names */
        {"https://site.test/static/a..b/%zz", "/srv/site", "a..b/%zz"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = local(rules, 3, cases[i].url, path);
        assert_non_null(got);
        assert_string_equal(path, cases[i].path);
        assert_string_equal(got, cases[i].suffix);
        free(got);
    }
    assert_null(local(rules, 3, "https://other.test/app.js", path));
    assert_null(local(NULL, 0, "https://example.com/app.js", path));
    /* the path must be absolute; the map_remote checks apply, by name */
    static const struct {
        const char *rule, *msg;
    } bad[] = {
        {"|x|srv/a", "map_local rule '|x|srv/a': the path 'srv/a' is not absolute (it must start "
                     "with /)"},
        {"|x|", "map_local rule '|x|': the path '' is not absolute (it must start with /)"},
        {"|(|/a", "map_local rule '|(|/a': bad pattern at 1: missing closing parenthesis"},
        {"|a|b|/c|d", "map_local rule '|a|b|/c|d': more than three parts (\"|regex|/path\" or "
                      "\"|filter|regex|/path\")"},
        {"|~bs x|a|/c", "map_local rule '|~bs x|a|/c': filter: ~bs is not known before the "
                        "request is sent (a rule's filter takes ~d ~u ~m ~h ~hq ~t ~tq ~src ~http "
                        "~h2 ~websocket ~all ~q, and ! & |)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        assert_int_equal(reel_map_local_check(bad[i].rule, &err), REEL_INVALID);
        assert_string_equal(reel_err_str(&err), bad[i].msg);
        reel_map_rules_t *m = (reel_map_rules_t *)1;
        const char *one[] = {bad[i].rule};
        assert_int_equal(reel_map_local_new(one, 1, &m, &err), REEL_INVALID);
        assert_null(m);
    }
}

/* A rule's flow filter (|filter|regex|replacement): the rule applies to
 * the requests it matches, judged on what is known before one is sent. */
static void test_filters(void **state) {
    (void)state;
    static const char *const rules[] = {
        "|~m POST & ~hq x-mock:\\s*yes|^http://api\\.test/|http://mock.test/",
        "|!~d ^api\\.|^http://|https://",
        "|~tq json & ~h2|^https://api\\.test/|https://json.test/",
    };
    reel_map_rules_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_map_rules_new(rules, 3, &m, &err), REEL_OK);
    reel_filter_field_t hs[2] = {{"Host", 4, "api.test", 8}, {"X-Mock", 6, "yes", 3}};
    reel_filter_request_t rq = {.method = "POST",
                                .url = "http://api.test/v1",
                                .host = "api.test",
                                .client_addr = "127.0.0.1:5000",
                                .headers = hs,
                                .nheaders = 2};
    char *out = reel_map_rules_apply(m, rq.url, &rq, &err);
    assert_string_equal(out, "http://mock.test/v1");
    free(out);
    rq.method = "GET"; /* the first rule's filter fails; the second's (host api.) too */
    assert_null(reel_map_rules_apply(m, rq.url, &rq, &err));
    rq.method = "POST";
    rq.nheaders = 1; /* no X-Mock */
    assert_null(reel_map_rules_apply(m, rq.url, &rq, &err));
    /* !~d: another host's plain URL goes to https */
    rq.url = "http://www.test/";
    rq.host = "www.test";
    out = reel_map_rules_apply(m, rq.url, &rq, &err);
    assert_string_equal(out, "https://www.test/");
    free(out);
    /* content type and HTTP/2 */
    rq.url = "https://api.test/x";
    rq.host = "api.test";
    rq.content_type = "application/json";
    assert_null(reel_map_rules_apply(m, rq.url, &rq, &err));
    rq.http2 = true;
    out = reel_map_rules_apply(m, rq.url, &rq, &err);
    assert_string_equal(out, "https://json.test/x");
    free(out);
    /* no request given: rules with a filter never apply */
    assert_null(reel_map_rules_apply(m, rq.url, NULL, &err));
    assert_int_equal(err.code, REEL_OK);
    reel_map_rules_free(m);
    /* a filter of terms a request cannot say: refused, named */
    static const struct {
        const char *rule, *msg;
    } bad[] = {
        {"|~c 200|a|http://b/", "map_remote rule '|~c 200|a|http://b/': filter: ~c is not known "
                                "before the request is sent (a rule's filter takes ~d ~u ~m ~h ~hq "
                                "~t ~tq ~src ~http ~h2 ~websocket ~all ~q, and ! & |)"},
        {"|~hs x|a|http://b/", "map_remote rule '|~hs x|a|http://b/': filter: ~hs is not known "
                               "before the request is sent (a rule's filter takes ~d ~u ~m ~h "
                               "~hq ~t ~tq ~src ~http ~h2 ~websocket ~all ~q, and ! & |)"},
        {"|~m (|a|http://b/", "map_remote rule '|~m (|a|http://b/': filter: "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_map_rule_check(bad[i].rule, &err), REEL_INVALID);
        assert_int_equal(strncmp(reel_err_str(&err), bad[i].msg, strlen(bad[i].msg)), 0);
    }
    /* map_local's too */
    static const char *const local_rules[] = {"|~m GET|/app\\.js|/srv/app.js"};
    assert_int_equal(reel_map_local_new(local_rules, 1, &m, &err), REEL_OK);
    const char *path = NULL;
    char *suffix = NULL;
    rq.method = "GET";
    assert_int_equal(reel_map_local_match(m, "https://a.test/app.js", &rq, &path, &suffix), 1);
    free(suffix);
    rq.method = "HEAD";
    assert_int_equal(reel_map_local_match(m, "https://a.test/app.js", &rq, &path, &suffix), 0);
    reel_map_rules_free(m);
}

/* block_list: the first rule whose filter matches gives its status. */
static void test_block(void **state) {
    (void)state;
    static const char *const rules[] = {"|~d ^ads\\.|444", "!~m DELETE | ~m PUT!403", "||204"};
    reel_block_rules_t *b = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_block_rules_new(rules, 3, &b, &err), REEL_OK);
    reel_filter_request_t rq = {.method = "GET", .url = "http://ads.test/x", .host = "ads.test"};
    const char *rule = NULL;
    assert_int_equal(reel_block_match(b, &rq, &rule), 444);
    assert_string_equal(rule, rules[0]);
    rq.host = "api.test";
    rq.method = "PUT";
    assert_int_equal(reel_block_match(b, &rq, &rule), 403);
    rq.method = "GET"; /* the empty filter: every request */
    assert_int_equal(reel_block_match(b, &rq, &rule), 204);
    assert_int_equal(reel_block_match(NULL, &rq, &rule), 0);
    reel_block_rules_free(b);
    static const struct {
        const char *rule, *msg;
    } bad[] = {
        {"|~d x|199", "block_list rule '|~d x|199': the status '199' is not 200..599, or 444 "
                      "(close the connection without an answer)"},
        {"|~d x|404 ", "block_list rule '|~d x|404 ': the status '404 ' is not 200..599, or 444 "
                       "(close the connection without an answer)"},
        {"|~d x|4|0", "block_list rule '|~d x|4|0': more than two parts (\"|filter|status\")"},
        {"d x|404", "block_list rule 'd x|404': a rule starts with its separator "
                    "(\"|filter|status\")"},
        {"~d x", "block_list rule '~d x': no status after the filter (\"|filter|status\")"},
        {"|~b x|404", "block_list rule '|~b x|404': filter: ~b is not known before the request "
                      "is sent (a rule's filter takes ~d ~u ~m ~h ~hq ~t ~tq ~src ~http ~h2 "
                      "~websocket ~all ~q, and ! & |)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        reel_rc rc = reel_block_rule_check(bad[i].rule, &err);
        assert_int_equal(rc, REEL_INVALID);
        assert_string_equal(reel_err_str(&err), bad[i].msg);
    }
}

/* modify_headers: which rules match a request and its response, the
 * changes they make, and the rules refused */
static void test_headers(void **state) {
    (void)state;
    static const char *const rules[] = {
        "|X-All|1",                           /* no filter: both sides */
        "|~q|X-Req|2",                        /* the request only */
        "|~s & ~c 404|X-Gone|3",              /* a 404 response only */
        "!~hs 'x-origin: a'!X-Origin!",       /* removed from a response that has it */
        "|~ts json & ~hq '^accept: x'|X-J|4", /* both sides' terms at once */
        "|!~s|X-Not-Resp|5",
    };
    reel_header_rules_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_header_rules_new(rules, 6, &m, &err), REEL_OK);
    reel_filter_field_t req_fields[] = {{"Accept", 6, "x/y", 3}};
    reel_filter_field_t resp_fields[] = {{"X-Origin", 8, "a", 1},
                                         {"Content-Type", 12, "a/json", 6}};
    reel_filter_request_t rq = {.method = "GET",
                                .url = "http://a.test/",
                                .host = "a.test",
                                .headers = req_fields,
                                .nheaders = 1};
    reel_header_edit_t e[8];
    size_t n = reel_header_rules_match(m, &rq, e, 8);
    assert_int_equal(n, 3);
    assert_string_equal(e[0].name, "X-All");
    assert_string_equal(e[0].value, "1");
    assert_string_equal(e[0].rule, rules[0]);
    assert_string_equal(e[1].name, "X-Req");
    assert_string_equal(e[2].name, "X-Not-Resp");
    rq.response = true;
    rq.status = 200;
    rq.resp_headers = resp_fields;
    rq.nresp_headers = 2;
    rq.resp_content_type = "a/json";
    n = reel_header_rules_match(m, &rq, e, 8);
    assert_int_equal(n, 3);
    assert_string_equal(e[0].name, "X-All");
    assert_string_equal(e[1].name, "X-Origin");
    assert_null(e[1].value); /* removed */
    assert_string_equal(e[2].name, "X-J");
    rq.status = 404;
    rq.nresp_headers = 0;
    rq.resp_content_type = NULL;
    assert_int_equal(reel_header_rules_match(m, &rq, e, 1), 2); /* more than cap: counted */
    assert_string_equal(e[0].name, "X-All");
    assert_int_equal(reel_header_edits_name(e, 1, "x-all", 5), 1);
    assert_int_equal(reel_header_edits_name(e, 1, "x-al", 4), 0);
    assert_int_equal(reel_header_rules_match(NULL, &rq, e, 8), 0);
    reel_header_rules_free(m);
    static const struct {
        const char *rule, *msg;
    } bad[] = {
        {"|Content-Length|5", "modify_headers rule '|Content-Length|5': reel writes "
                              "Content-Length itself (it frames the message or belongs to one "
                              "hop)"},
        {"|HOST|x", "modify_headers rule '|HOST|x': reel writes HOST itself (map_remote sends a "
                    "request to another host)"},
        {"|a b|x", "modify_headers rule '|a b|x': 'a b' is not a field name (letters, digits "
                   "and !#$%&'*+-.^_`|~)"},
        {"||x", "modify_headers rule '||x': '' is not a field name (letters, digits and "
                "!#$%&'*+-.^_`|~)"},
        {"|X|a\r\nY: b", "modify_headers rule '|X|a\r\nY: b': the value has a control "
                         "character, white space at an end, or more than 8192 bytes"},
        {"|X|@/etc/passwd", "modify_headers rule '|X|@/etc/passwd': a value from a file "
                            "(\"@path\", mitmproxy's) is not read; write the value itself"},
        {"X|1", "modify_headers rule 'X|1': a rule starts with its separator (\"|name|value\")"},
        {"|X", "modify_headers rule '|X': no value after the name (\"|name|value\", \"|name|\" "
               "to remove the field)"},
        {"|~q|X|1|2", "modify_headers rule '|~q|X|1|2': more than three parts (\"|name|value\" "
                      "or \"|filter|name|value\"; choose a separator that is not in the value)"},
        {"|~dst x|X|1", "modify_headers rule '|~dst x|X|1': filter: ~dst is not known when a "
                        "head is sent on (a rule's filter takes ~d ~u ~m ~c ~h ~hq ~hs ~t ~tq "
                        "~ts ~src ~http ~h2 ~websocket ~all ~q ~s, and ! & |)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_header_rule_check(bad[i].rule, &err), REEL_INVALID);
        assert_string_equal(reel_err_str(&err), bad[i].msg);
    }
    /* a list with a bad rule is refused whole, naming it */
    static const char *const some_bad[] = {"|X|1", "|Connection|close"};
    reel_err_clear(&err);
    assert_int_equal(reel_header_rules_new(some_bad, 2, &m, &err), REEL_INVALID);
    assert_null(m);
    assert_non_null(strstr(reel_err_str(&err), "'|Connection|close'"));
}

/* modify_body: the rules matching a response, applied in order to bytes
 * (a NUL among them), groups, the count, and the rules refused */
static void test_body(void **state) {
    (void)state;
    static const char *const rules[] = {"|a(b)|[$1]", "|~c 404|x|y", "|~s|\\[b\\]|B"};
    reel_body_rules_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_body_rules_new(rules, 3, &m, &err), REEL_OK);
    reel_filter_request_t rq = {.method = "GET",
                                .url = "http://a.test/",
                                .host = "a.test",
                                .response = true,
                                .status = 200};
    uint64_t mask = reel_body_rules_match(m, &rq);
    assert_int_equal(mask, 5); /* rules 0 and 2 */
    static const uint8_t body[] = {'a', 'b', 0, 'x', 'a', 'b'};
    uint8_t *out = NULL;
    size_t len = 0;
    uint64_t count = 0;
    assert_int_equal(reel_body_rules_apply(m, mask, body, sizeof body, &out, &len, &count, &err),
                     REEL_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "B\0xB", 4); /* the second rule saw the first's result */
    assert_int_equal(count, 4);
    free(out);
    const char *texts[64];
    assert_int_equal(reel_body_rules_texts(m, mask, texts), 2);
    assert_string_equal(texts[1], rules[2]);
    /* an empty body, and no rule */
    assert_int_equal(reel_body_rules_apply(m, mask, NULL, 0, &out, &len, &count, &err), REEL_OK);
    assert_int_equal(len, 0);
    free(out);
    assert_int_equal(reel_body_rules_match(NULL, &rq), 0);
    /* a reference kept outlives the list's own */
    reel_body_rules_t *kept = reel_body_rules_ref(m);
    reel_body_rules_free(m);
    assert_int_equal(reel_body_rules_texts(kept, 1, texts), 1);
    reel_body_rules_free(kept);
    static const struct {
        const char *rule, *msg;
    } bad[] = {
        {"|(|x", "modify_body rule '|(|x': bad pattern at 1: missing closing parenthesis"},
        {"|a|${x", "modify_body rule '|a|${x': bad replacement: "},
        {"a|b", "modify_body rule 'a|b': a rule starts with its separator (\"|regex|"
                "replacement\")"},
        {"|~b x|a|b", "modify_body rule '|~b x|a|b': filter: ~b is not known when a head is "
                      "sent on"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(reel_body_rule_check(bad[i].rule, &err), REEL_INVALID);
        assert_true(strncmp(reel_err_str(&err), bad[i].msg, strlen(bad[i].msg)) == 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply), cmocka_unit_test(test_check),
        cmocka_unit_test(test_local), cmocka_unit_test(test_filters),
        cmocka_unit_test(test_block), cmocka_unit_test(test_headers),
        cmocka_unit_test(test_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
