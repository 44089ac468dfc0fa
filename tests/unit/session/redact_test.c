/* Tests for src/session/redact.c: URLs (the query, the fragment, URLs
 * nested in a value as they are or percent-encoded, the userinfo's
 * password, hostile nesting, ';' parameters), URLs in bodies, and bodies
 * that are not JSON with keys in single quotes. The rules export
 * applies in every format are tested through export in export_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "session/redact.h"

typedef struct {
    const char *in, *out; /* out NULL: nothing to replace */
} case_t;

static void check(const char *what, int got, const reel_redacted_t *t, const case_t *c) {
    if (c->out == NULL) {
        if (got)
            fail_msg("%s %s: replaced, as %s", what, c->in, t->data);
        return;
    }
    if (!got)
        fail_msg("%s %s: nothing replaced, want %s", what, c->in, c->out);
    if (strcmp(t->data, c->out) != 0 || t->len != strlen(c->out))
        fail_msg("%s %s:\n got %s\nwant %s", what, c->in, t->data, c->out);
}

/* A body of Content-Type type (NULL: none) and what it must become. */
typedef struct {
    const char *type;
    case_t c;
} body_case_t;

static void check_bodies(const reel_redact_t *r, const char *what, const body_case_t *b, size_t n) {
    reel_redacted_t t;
    for (size_t i = 0; i < n; i++) {
        const case_t *c = &b[i].c;
        int got = reel_redact_body(r, b[i].type, (const uint8_t *)c->in, strlen(c->in), &t);
        check(what, got, &t, c);
        if (got) {
            /* redacting is a fixed point: the result has nothing left */
            reel_redacted_t again;
            if (reel_redact_body(r, b[i].type, (const uint8_t *)t.data, t.len, &again)) {
                fail_msg("%s %s: redacted again, as %s", what, t.data, again.data);
                free(again.data);
            }
            free(t.data);
        }
    }
}

static void test_url_fragment_nested_userinfo(void **state) {
    (void)state;
    static const case_t urls[] = {
        /* the fragment as a query: OAuth's implicit flow, a client route */
        {"https://client.test/cb#access_token=IMPLICITSECRET&token_type=bearer",
         "https://client.test/cb#access_token=REDACTED&token_type=REDACTED"},
        {"/cb#state=1&id_token=x", "/cb#state=1&id_token=REDACTED"},
        {"/a?x=1#token=y", "/a?x=1#token=REDACTED"},
        {"/p#/cb?state=1&access_token=x", "/p#/cb?state=1&access_token=REDACTED"},
        {"/page#section-2", NULL},
        {"/a?password=1#b?x", "/a?password=REDACTED#b?x"},
        /* a URL in a value: percent-encoded once, twice, or as it is */
        {"/?redirect_uri=https%3A%2F%2Fc.test%2Fcb%3Ftoken%3DNESTEDQSECRET",
         "/?redirect_uri=https%3A%2F%2Fc.test%2Fcb%3Ftoken%3DREDACTED"},
        {"/?r=https%253A%252F%252Fc.test%252Fcb%253Faccess_token%253Dx&n=1",
         "/?r=https%253A%252F%252Fc.test%252Fcb%253Faccess_token%253DREDACTED&n=1"},
        {"/a?next=/cb?token=x", "/a?next=/cb?token=REDACTED"},
        {"/cb?next=https%3A%2F%2Fc.test%2F%23id_token%3Dx",
         "/cb?next=https%3A%2F%2Fc.test%2F%23id_token%3DREDACTED"},
        {"/a?u=https%3A%2F%2Fc.test%2Fa%20b%3Fx%3D1%26token%3Dz",
         "/a?u=https%3A%2F%2Fc.test%2Fa%20b%3Fx%3D1%26token%3DREDACTED"},
        {"/a#u=%2Fp+q%3Ftoken%3Dz", "/a#u=%2Fp%20q%3Ftoken%3DREDACTED"},
        /* a URL in a URL in a URL (a login's return through a relay) */
        {"/l?r=%2Fb%3Fr%3D%252Fc%253Ftoken%253Dx", "/l?r=%2Fb%3Fr%3D%252Fc%253Ftoken%253DREDACTED"},
        {"/a?u=https%3A%2F%2Fc.test%2Fcb%3Fx%3D1", NULL},
        {"/a?email=a%40b.test&q=%3F", NULL},
        /* the userinfo's password, wherever the URL stands */
        {"http://user:USERINFOSECRET@127.0.0.1:8080/ui", "http://user:REDACTED@127.0.0.1:8080/ui"},
        {"http://u:p@ss@h/?a=1", "http://u:REDACTED@h/?a=1"},
        {"//u:p@h/x", "//u:REDACTED@h/x"},
        {"u:p@h:443", "u:REDACTED@h:443"}, /* CONNECT's authority form */
        {"http://user@h/", NULL},
        {"http://u:@h/", NULL},
        {"http://h/a@b:c", NULL},
        {"/path/u:p@x", NULL},
        {"/a?u=http%3A%2F%2Fa%3Ab%40c%2F", "/a?u=http%3A%2F%2Fa%3AREDACTED%40c%2F"},
        {"/a?u=http://a:b@c/", "/a?u=http://a:REDACTED@c/"},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        int got = reel_redact_target(r, urls[i].in, strlen(urls[i].in), &t);
        check("target", got, &t, &urls[i]);
        if (got)
            free(t.data);
    }
    /* Referer and Location are URLs too */
    const char *loc = "https://client.test/cb#access_token=S&x=1";
    assert_true(reel_redact_header(r, "Location", 8, loc, strlen(loc), &t));
    assert_string_equal(t.data, "https://client.test/cb#access_token=REDACTED&x=1");
    free(t.data);
    const char *ref = "http://u:S@x.test/";
    assert_true(reel_redact_header(r, "referer", 7, ref, strlen(ref), &t));
    assert_string_equal(t.data, "http://u:REDACTED@x.test/");
    free(t.data);
    reel_redact_free(r);
}

/* The value v percent-encoded (every byte but letters and digits). */
static char *enc(const char *v) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (const char *p = v; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
            reel_buf_append(&b, p, 1);
        else
            reel_buf_printf(&b, "%%%02X", (unsigned char)*p);
    }
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* A hostile URL nested, or encoded, far past any real one: the scan
 * stays bounded (each level at most once per byte) and ends. */
static void test_url_hostile_depth(void **state) {
    (void)state;
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    /* 200 URLs each in the query of the next */
    char *u = reel_strdup("/z?token=x");
    for (int i = 0; i < 200; i++) {
        char *e = enc(u);
        free(u);
        u = reel_asprintf("/a?r=%s", e);
        free(e);
        if (strlen(u) > (1u << 20))
            break; /* each level triples it: that is enough */
    }
    clock_t start = clock();
    if (reel_redact_target(r, u, strlen(u), &t))
        free(t.data);
    free(u);
    /* a value of many pairs, each encoded as often as it can be */
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (int i = 0; i < 20000; i++)
        reel_buf_puts(&b, "v=%252525252525252525253F%26&w=%3F%3F%3F@%40#&");
    if (reel_redact_target(r, (const char *)b.data, b.len, &t))
        free(t.data);
    reel_buf_free(&b);
    double s = (double)(clock() - start) / CLOCKS_PER_SEC;
    if (s > 5)
        fail_msg("hostile URLs took %.1f s", s);
    reel_redact_free(r);
}

static void test_single_quotes(void **state) {
    (void)state;
    static const case_t bodies[] = {
        {"{'api_key': 'SQ4SECRET', 'ok': 1}", "{'api_key': 'REDACTED', 'ok': 1}"},
        {"{\"api_key\": \"DQSECRET\", 'ok': 1}", "{\"api_key\": \"REDACTED\", 'ok': 1}"},
        {"{\"token\": 'two words', 'password': \"y\"}",
         "{\"token\": 'REDACTED', 'password': \"REDACTED\"}"},
        {"{'user': 'bob', 'password': 'hunter2'}", "{'user': 'bob', 'password': 'REDACTED'}"},
        {"{'a': 'say \"token\": 1', 'token': 'x'}",
         "{'a': 'say \"token\": 1', 'token': 'REDACTED'}"},
        {"{'session': {'id': 'a}b'}, 'n': 1}", "{'session': \"REDACTED\", 'n': 1}"},
        {"{'api\\'s key': 'x\\'y', 'n': 'it\\'s'}", "{'api\\'s key': 'REDACTED', 'n': 'it\\'s'}"},
        {"{'token': 'unclosed\n, 'n': 1}", "{'token': 'REDACTED'\n, 'n': 1}"},
        {"{'secret': 7}", "{'secret': \"REDACTED\"}"},
        /* apostrophes that open no string leave the keys after them found */
        {"{'user': 1, \"api_key\" : \"k\" \"n\": 2}",
         "{'user': 1, \"api_key\" : \"REDACTED\" \"n\": 2}"},
        {"{\"n\": it's, \"token\": 1}", "{\"n\": it's, \"token\": \"REDACTED\"}"},
        {"{'monkey': 'x', 'it': 'don't'}", NULL},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        const char *in = bodies[i].in;
        int got = reel_redact_body(r, "application/json", (const uint8_t *)in, strlen(in), &t);
        check("body", got, &t, &bodies[i]);
        if (got)
            free(t.data);
    }
    /* a note in prose: "don't" opens no string before the key */
    const char *note = "don't send 'token': abc again";
    assert_true(reel_redact_note(r, note, strlen(note), &t));
    assert_string_equal(t.data, "don't send 'token': \"REDACTED\" again");
    free(t.data);
    /* many escaped single quotes on one line: read once, not once each */
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "{'");
    for (int i = 0; i < 200000; i++)
        reel_buf_puts(&b, "\\'\"");
    clock_t start = clock();
    if (reel_redact_body(r, NULL, b.data, b.len, &t))
        free(t.data);
    double s = (double)(clock() - start) / CLOCKS_PER_SEC;
    if (s > 5)
        fail_msg("escaped quotes took %.1f s", s);
    reel_buf_free(&b);
    reel_redact_free(r);
}

/* What the fuzzer (tests/fuzz/fuzz_redact.c) found when it ran each
 * output through again: cases one pass left readable or marked twice. */
static void test_found_by_fuzzing(void **state) {
    (void)state;
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    /* a bearer token with an '=' inside: all of it (the rest was left) */
    static const case_t texts[] = {
        {"Bearer x9=http2Fsecret rest", "Bearer REDACTED rest"},
        {"Bearer abc== next", "Bearer REDACTED next"},
        /* the marker itself is nothing to replace */
        {"Authorization was Bearer REDACTED", NULL},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int got = reel_redact_text(r, texts[i].in, strlen(texts[i].in), &t);
        check("text", got, &t, &texts[i]);
        if (got)
            free(t.data);
    }
    static const case_t lists[] = {
        /* a bearer token in a key of a nested URL's query */
        {"u=https://c.test/cb?Bearer abc=1&password=2",
         "u=https://c.test/cb?Bearer REDACTED=1&password=REDACTED"},
        /* a value redacted already: not a replacement (so a URL holding
         * it is not encoded again) */
        {"password=REDACTED", NULL},
        {"u=https%3A%2F%2Fc.test%2F%3Ftoken%3DREDACTED", NULL},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        int got = reel_redact_urlencoded(r, lists[i].in, strlen(lists[i].in), &t);
        check("urlencoded", got, &t, &lists[i]);
        if (got)
            free(t.data);
    }
    /* a value on the line after its key's colon, in JSON with a syntax
     * error (found by a tester: the scan skipped only spaces and tabs) */
    static const case_t broken[] = {
        {"{\"token\":\n \"SEC60\",}", "{\"token\":\n \"REDACTED\",}"},
        {"{'token':\n'SEC38'}x", "{'token':\n'REDACTED'}x"},
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        int got = reel_redact_note(r, broken[i].in, strlen(broken[i].in), &t);
        check("note", got, &t, &broken[i]);
        if (got)
            free(t.data);
    }
    /* URLs in Link and Refresh (found by a tester) */
    static const struct {
        const char *name;
        case_t c;
    } hdrs[] = {
        {"Link",
         {"<https://c.test/a?token=S1>; rel=preload, </b?x=1>; rel=next",
          "<https://c.test/a?token=REDACTED>; rel=preload, </b?x=1>; rel=next"}},
        {"Link", {"<https://c.test/a>; rel=preload", NULL}},
        {"Refresh", {"0; url=/cb?access_token=S2&n=1", "0; url=/cb?access_token=REDACTED&n=1"}},
        {"Refresh",
         {"5; URL='https://c.test/#id_token=S3'", "5; URL='https://c.test/#id_token=REDACTED'"}},
        {"Refresh", {"5", NULL}},
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        const case_t *c = &hdrs[i].c;
        int got =
            reel_redact_header(r, hdrs[i].name, strlen(hdrs[i].name), c->in, strlen(c->in), &t);
        check(hdrs[i].name, got, &t, c);
        if (got)
            free(t.data);
    }
    /* JSON cut right after a secret's key: no value came, none to hide */
    static const case_t cut[] = {
        {"{\"a\": [0, {\"token\":", NULL},
        {"{\"a\": [0, {\"token\": \"ab", "{\"a\": [0, {\"token\": \"REDACTED"},
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        int got = reel_redact_body(r, "application/json", (const uint8_t *)cut[i].in,
                                   strlen(cut[i].in), &t);
        check("cut body", got, &t, &cut[i]);
        if (got)
            free(t.data);
    }
    reel_redact_free(r);
}

/* Query parameters split at ';' as at '&', and path parameters
 * (";jsessionid=" of Java servers). */
static void test_semicolon_params(void **state) {
    (void)state;
    static const case_t urls[] = {
        {"/path?a=1;token=SEMISECRET", "/path?a=1;token=REDACTED"},
        {"/path?token=S;a=1&b=2", "/path?token=REDACTED;a=1&b=2"},
        {"/a?x=1;y;token=s", "/a?x=1;y;token=REDACTED"},
        /* a ';' with no name= after it is a part of the value */
        {"/a?token=ab;cd&x=1", "/a?token=REDACTED&x=1"},
        {"/a#a=1;access_token=s", "/a#a=1;access_token=REDACTED"},
        {"/a?next=%2Fcb%3Fx%3D1%3Btoken%3Ds", "/a?next=%2Fcb%3Fx%3D1%3Btoken%3DREDACTED"},
        /* path parameters */
        {"/shop;jsessionid=PATHSECRET?x=1", "/shop;jsessionid=REDACTED?x=1"},
        {"/a;jsessionid=S/b;v=1;JSESSIONID=T;flag/c",
         "/a;jsessionid=REDACTED/b;v=1;JSESSIONID=REDACTED;flag/c"},
        {"https://h.test/x;jsessionid=S", "https://h.test/x;jsessionid=REDACTED"},
        {"http://u:p@h.test/a;session=1", "http://u:REDACTED@h.test/a;session=REDACTED"},
        {"/a;v=1;lang=en/b?q=1;r=2", NULL},
        /* a ';' in the authority is the userinfo's (RFC 5092) */
        {"imap://u;AUTH=*@h.test/", NULL},
        /* redacted already: no replacement, so nothing is counted twice */
        {"/a;jsessionid=REDACTED?token=REDACTED;b=1", NULL},
        {"http://u:REDACTED@h.test/", NULL},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        int got = reel_redact_target(r, urls[i].in, strlen(urls[i].in), &t);
        check("target", got, &t, &urls[i]);
        if (got)
            free(t.data);
    }
    /* a form is split at '&' only, as browsers write it */
    const char *form = "a=1;token=x&b=2";
    assert_false(reel_redact_urlencoded(r, form, strlen(form), &t));
    reel_redact_free(r);
}

/* URLs in JSON string values, in JSON with a syntax error, in text bodies
 * and notes: their query's secrets, the JSON and its escaping kept. */
static void test_urls_in_bodies(void **state) {
    (void)state;
    static const body_case_t bodies[] = {
        {"application/json",
         {"{\"next\": \"https://api.example/cb?access_token=JSONURLSECRET&x=1\"}",
          "{\"next\": \"https://api.example/cb?access_token=REDACTED&x=1\"}"}},
        /* escaped slashes (PHP, JavaScript) and Go's \u0026 stay so */
        {NULL,
         {"{\"redirect\":\"https:\\/\\/a.example\\/?token=ESCSECRET&b=1\"}",
          "{\"redirect\":\"https:\\/\\/a.example\\/?token=REDACTED&b=1\"}"}},
        {NULL,
         {"{\"u\":\"https://a.test/?x=1\\u0026token=S1\\u0026password=S2\\u0026y=2\"}",
          "{\"u\":\"https://a.test/"
          "?x=1\\u0026token=REDACTED\\u0026password=REDACTED\\u0026y=2\"}"}},
        /* in prose, a sentence's punctuation after it kept */
        {NULL,
         {"[\"see https://a.test/?token=S. Or (https://b.test/?token=T)\"]",
          "[\"see https://a.test/?token=REDACTED. Or (https://b.test/?token=REDACTED)\"]"}},
        /* a relative URL as the whole value; one percent-encoded */
        {NULL, {"{\"n\":\"/cb?token=S&a=1\"}", "{\"n\":\"/cb?token=REDACTED&a=1\"}"}},
        {NULL,
         {"{\"s\":\"https%3A%2F%2Fa.test%2F%3Ftoken%3DS\"}",
          "{\"s\":\"https%3A%2F%2Fa.test%2F%3Ftoken%3DREDACTED\"}"}},
        /* JSON in a JSON string, and quoted twice */
        {NULL,
         {"{\"p\":\"{\\\"u\\\":\\\"https://a.test/?token=X\\\"}\"}",
          "{\"p\":\"{\\\"u\\\":\\\"https://a.test/?token=REDACTED\\\"}\"}"}},
        {NULL,
         {"{\"p\":\"{\\\"u\\\":\\\"https:\\\\\\/\\\\\\/a\\\\\\/?token=X\\\"}\"}",
          "{\"p\":\"{\\\"u\\\":\\\"https:\\\\\\/\\\\\\/a\\\\\\/?token=REDACTED\\\"}\"}"}},
        /* characters escaped as \u: as they were */
        {NULL,
         {"{\"s\":\"caf\\u00e9 https://a.test/\\u00e9?token=S\\u00e9&x=\\ud83d\\ude00\"}",
          "{\"s\":\"caf\\u00e9 https://a.test/\\u00e9?token=REDACTED&x=\\ud83d\\ude00\"}"}},
        {NULL,
         {"{\"u\":\"see https://u:pw@a.test/\"}", "{\"u\":\"see https://u:REDACTED@a.test/\"}"}},
        {NULL,
         {"{\"u\":\"/shop;jsessionid=S?a=1;token=T\"}",
          "{\"u\":\"/shop;jsessionid=REDACTED?a=1;token=REDACTED\"}"}},
        /* cut short inside the URL */
        {NULL, {"{\"x\": \"https://a.test/?token=CUT", "{\"x\": \"https://a.test/?token=REDACTED"}},
        /* a syntax error: URLs in the quoted strings all the same */
        {NULL,
         {"{\"x\": \"https://a.test/?token=S\", \"r\": \"/cb?password=P\",}",
          "{\"x\": \"https://a.test/?token=REDACTED\", \"r\": \"/cb?password=REDACTED\",}"}},
        /* text bodies: HTML, a script's escaped URL */
        {"text/html",
         {"<a href=\"https://a.test/?x=1&amp;token=S\">x</a> <a href='/cb?token=T'>y</a>",
          "<a href=\"https://a.test/?x=1&amp;token=REDACTED\">x</a> <a "
          "href='/cb?token=REDACTED'>y</a>"}},
        {"text/html",
         {"var u = \"https:\\/\\/a\\/?token=S\";", "var u = \"https:\\/\\/a\\/?token=REDACTED\";"}},
        {"text/plain", {"/cb?token=S", "/cb?token=REDACTED"}},
        /* innocent text: no URL, a URL with nothing secret, one redacted */
        {NULL,
         {"{\"a\": \"time: 10:30, ratio 1:2, mailto:x@y\", \"b\": \"/path/only?q=1\", \"c\": "
          "\"https://a.test/?monkey=1#x\"}",
          NULL}},
        {NULL,
         {"{\"n\":\"/cb?token=REDACTED&a=1\", \"m\": \"https:\\/\\/a\\/?token=REDACTED\"}", NULL}},
        {"text/plain", {"see https://a.test/?token=REDACTED. ok", NULL}},
        {"text/plain", {"a://b c:\\/\\/ %3A%2F%2F https:// ://x", NULL}},
        /* values redacted already are no replacement */
        {NULL, {"{\"token\":\"REDACTED\"}", NULL}},
        {NULL, {"{\"token\": \"REDACTED", NULL}},
        {NULL, {"{'token': 'REDACTED', \"x\": 1,}", NULL}},
        /* the fragment's pairs before a '?' in it */
        {NULL,
         {"{\"u\":\"https://c.test/#access_token=S&state=/p?y=1\"}",
          "{\"u\":\"https://c.test/#access_token=REDACTED&state=/p?y=1\"}"}},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    check_bodies(r, "body", bodies, sizeof bodies / sizeof bodies[0]);
    /* a note: the same */
    const char *note = "the callback was https://a.test/cb?code=1&access_token=NOTESECRET, see";
    assert_true(reel_redact_note(r, note, strlen(note), &t));
    assert_string_equal(t.data,
                        "the callback was https://a.test/cb?code=1&access_token=REDACTED, see");
    free(t.data);
    /* a long run of closing brackets and URLs: linear */
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "{\"a\":\"");
    for (int i = 0; i < 20000; i++)
        reel_buf_puts(&b, "x://a/?token=1))]]...\\/");
    reel_buf_puts(&b, "\"}");
    clock_t start = clock();
    if (reel_redact_body(r, NULL, b.data, b.len, &t))
        free(t.data);
    double sec = (double)(clock() - start) / CLOCKS_PER_SEC;
    if (sec > 5)
        fail_msg("many URLs took %.1f s", sec);
    reel_buf_free(&b);
    reel_redact_free(r);
}

/* The text around a URL in a body or note: it ends where CSS, Markdown, a
 * template string or a bracket it did not open ends it, so that only the
 * secret's value is replaced and the text after it stays byte for byte;
 * path parameters and template strings count as URLs. */
static void test_text_around_urls(void **state) {
    (void)state;
    static const body_case_t bodies[] = {
        {"text/css",
         {"a{background:url(https://cdn.test/a.png?signature=abc);}b{color:red}",
          "a{background:url(https://cdn.test/a.png?signature=REDACTED);}b{color:red}"}},
        {"text/markdown",
         {"[log](https://ci.test/log?token=abc)**bold** and more",
          "[log](https://ci.test/log?token=REDACTED)**bold** and more"}},
        {"text/plain",
         {"see [x](https://h.test/a?token=S]x) ok",
          "see [x](https://h.test/a?token=REDACTED]x) ok"}},
        /* brackets the URL opened are its own (a Wikipedia title) */
        {"text/plain",
         {"(https://en.test/wiki/A_(b)?token=S).", "(https://en.test/wiki/A_(b)?token=REDACTED)."}},
        {"text/plain",
         {"https://h.test/?q=(a)&token=S)x", "https://h.test/?q=(a)&token=REDACTED)x"}},
        /* a bracket opened before the secret's value is not the value's */
        {"text/plain", {"https://h.test/p_(a?token=S)y", "https://h.test/p_(a?token=REDACTED)y"}},
        {"text/plain",
         {"https://h.test/p_(a;jsessionid=S)y", "https://h.test/p_(a;jsessionid=REDACTED)y"}},
        /* nor one it leaves open: its closer outside would end the URL
         * elsewhere once the value is gone */
        {"text/plain",
         {"https://h.test/?token=a[b;x=1]c d", "https://h.test/?token=REDACTED[b;x=1]c d"}},
        {"text/plain", {"https://h.test/?token=a(b)c", "https://h.test/?token=REDACTED"}},
        /* bytes no URL holds unencoded end it */
        {"text/plain",
         {"https://h.test/?token=S{x}|y^z\\q w", "https://h.test/?token=REDACTED{x}|y^z\\q w"}},
        {"application/javascript",
         {"fetch(`/api?token=SEC23`).then(f); g(`https://h.test/?token=T${v}`)",
          "fetch(`/api?token=REDACTED`).then(f); g(`https://h.test/?token=REDACTED${v}`)"}},
        /* path parameters with no '?' after them */
        {"text/html",
         {"<a href=\"/shop;jsessionid=SECRET1\">x</a>",
          "<a href=\"/shop;jsessionid=REDACTED\">x</a>"}},
        {"application/json",
         {"{\"next\":\"/shop;jsessionid=SECRET3\",\"u\":\"https://h.test/x;jsessionid=SECRET4\"}",
          "{\"next\":\"/shop;jsessionid=REDACTED\",\"u\":\"https://h.test/"
          "x;jsessionid=REDACTED\"}"}},
        {"application/json", {"{\"a\":\"x;y=1\",\"b\":\"/p;q\"}", NULL}},
        /* redacted already: a second pass replaces nothing */
        {"text/css", {"a{background:url(https://cdn.test/a.png?signature=REDACTED);}", NULL}},
        {"text/plain", {"https://h.test/p_(a?token=REDACTED)y", NULL}},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    check_bodies(r, "body", bodies, sizeof bodies / sizeof bodies[0]);
    static const case_t notes[] = {
        {"url(https://h.test/i?token=X)}}", "url(https://h.test/i?token=REDACTED)}}"},
        {"went to \"/x;jsessionid=ANNSEC2\" twice", "went to \"/x;jsessionid=REDACTED\" twice"},
    };
    for (size_t i = 0; i < sizeof notes / sizeof notes[0]; i++) {
        int got = reel_redact_note(r, notes[i].in, strlen(notes[i].in), &t);
        check("note", got, &t, &notes[i]);
        if (got)
            free(t.data);
    }
    /* a nested URL in a request target whose secret is a path parameter */
    static const case_t targets[] = {
        {"/l?next=https%3A%2F%2Fh.test%2Fshop%3Bjsessionid%3DNSEC2&a=1",
         "/l?next=https%3A%2F%2Fh.test%2Fshop%3Bjsessionid%3DREDACTED&a=1"},
        {"/l?next=%2Fshop%3Bjsessionid%3DNSEC1", "/l?next=%2Fshop%3Bjsessionid%3DREDACTED"},
        /* a header's or target's URL is whole: its brackets are its own */
        {"/a?token=ab)cd", "/a?token=REDACTED"},
    };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int got = reel_redact_target(r, targets[i].in, strlen(targets[i].in), &t);
        check("target", got, &t, &targets[i]);
        if (got)
            free(t.data);
    }
    reel_redact_free(r);
}

/* Every cookie's value, a nameless one too: browsers read a pair without
 * '=' as the value of the cookie named "" (RFC 6265bis 5.6, 5.7), so
 * "SID" alone is a secret like "sid=SID". In Set-Cookie only the first
 * pair is the cookie; the attributes after it stay. */
static void test_cookies(void **state) {
    (void)state;
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    static const case_t cookie[] = {
        {"sid=abc", "sid=REDACTED"},
        {"SECRETNOEQ1; sid=abc", "REDACTED; sid=REDACTED"},
        {"sid=abc; SECRETNOEQ2", "sid=REDACTED; REDACTED"},
        {"a=1;  SECRET NOEQ3 \t; b=2", "a=REDACTED;  REDACTED \t; b=REDACTED"},
        {"a=1;; b=", "a=REDACTED;; b=REDACTED"},
        {"SECRETALONE", "REDACTED"},
    };
    static const case_t set_cookie[] = {
        {"SECRETSCNOEQ; Path=/", "REDACTED; Path=/"},
        {"SECRETSCNOEQ2; Path=/; Domain=a.test; HttpOnly; Secure; SameSite=Lax",
         "REDACTED; Path=/; Domain=a.test; HttpOnly; Secure; SameSite=Lax"},
        {"id=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure",
         "id=REDACTED; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure"},
        {" SECRETSC3", " REDACTED"},
    };
    for (size_t i = 0; i < sizeof cookie / sizeof cookie[0]; i++) {
        int got = reel_redact_header(r, "Cookie", 6, cookie[i].in, strlen(cookie[i].in), &t);
        check("Cookie", got, &t, &cookie[i]);
        if (got)
            free(t.data);
    }
    for (size_t i = 0; i < sizeof set_cookie / sizeof set_cookie[0]; i++) {
        int got =
            reel_redact_header(r, "set-cookie", 10, set_cookie[i].in, strlen(set_cookie[i].in), &t);
        check("Set-Cookie", got, &t, &set_cookie[i]);
        if (got)
            free(t.data);
    }
    reel_redact_free(r);
}

/* Tokens known by their prefix, anywhere the rules for text go (header
 * values, bodies, URL paths, messages, notes): the prefix stays, what
 * follows is replaced; and a PEM private key's lines */
static void test_known_tokens(void **state) {
    (void)state;
    static const case_t texts[] = {
        {"token ghp_0123456789abcdefghijABCDEFGHIJ012345 and", "token ghp_REDACTED and"},
        {"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_REDACTED"},
        {"glpat-abcdefghij0123456789", "glpat-REDACTED"},
        {"Slack: xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp.", "Slack: xoxb-REDACTED."},
        {"key=sk_live_51H8abcdefghijKLMNOP&x=1", "key=sk_live_REDACTED&x=1"},
        {"aws AKIAIOSFODNN7EXAMPLE,", "aws AKIAREDACTED,"},
        {"AIzaSyA-0123456789abcdefghijklmnopqrstu", "AIzaREDACTED"},
        {"\"sk-proj-abcDEF0123456789_xyzXYZ-0123\"", "\"sk-REDACTED\""},
        {"npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_REDACTED"},
        {"/bot/hf_abcdefghijklmnopqrstuvwxyzABCD/x", "/bot/hf_REDACTED/x"},
        /* a PEM private key: its lines, between its BEGIN and END lines
         * (LF, CRLF, JSON's \n); one cut short to the end */
        {"-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA==\n-----END RSA PRIVATE KEY-----\n",
         "-----BEGIN RSA PRIVATE KEY-----\nREDACTED\n-----END RSA PRIVATE KEY-----\n"},
        {"k: -----BEGIN PRIVATE KEY-----\\nMIIE\\nBBB\\n-----END PRIVATE KEY-----\\n",
         "k: -----BEGIN PRIVATE KEY-----\\nREDACTED\\n-----END PRIVATE KEY-----\\n"},
        {"-----BEGIN EC PRIVATE KEY-----\r\nMHcC", "-----BEGIN EC PRIVATE KEY-----\r\nREDACTED"},
        /* not tokens: inside a word, too short, another alphabet; public
         * keys and certificates; redacted already */
        {"task-0123456789abcdefghijklmnop mask_live_0123456789abcdef", NULL},
        {"ghp_short sk-short AKIAIOSFODNN7EXAMPLEX AKIAiosfodnn7example", NULL},
        {"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", NULL},
        {"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", NULL},
        {"ghp_REDACTED sk-REDACTED AKIAREDACTED", NULL},
        {"-----BEGIN PRIVATE KEY-----\nREDACTED\n-----END PRIVATE KEY-----", NULL},
        {"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----", NULL},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int got = reel_redact_text(r, texts[i].in, strlen(texts[i].in), &t);
        check("text", got, &t, &texts[i]);
        if (got)
            free(t.data);
    }
    /* in a URL's path, a header's value and a JSON body too */
    const char *u = "/services/ghp_0123456789abcdefghijABCDEFGHIJ012345/x?a=1";
    assert_true(reel_redact_target(r, u, strlen(u), &t));
    assert_string_equal(t.data, "/services/ghp_REDACTED/x?a=1");
    free(t.data);
    const char *h = "token xoxp-0123456789-abcdef";
    assert_true(reel_redact_header(r, "X-Forwarded-Slack", 17, h, strlen(h), &t));
    assert_string_equal(t.data, "token xoxp-REDACTED");
    free(t.data);
    const char *j = "{\"msg\": \"use sk_test_0123456789abcdefXYZ now\"}";
    assert_true(reel_redact_body(r, "application/json", (const uint8_t *)j, strlen(j), &t));
    assert_string_equal(t.data, "{\"msg\": \"use sk_test_REDACTED now\"}");
    free(t.data);
    reel_redact_free(r);
}

/* GraphQL: the arguments that hold a key word, in a JSON body's "query"
 * and in an application/graphql body */
static void test_graphql(void **state) {
    (void)state;
    static const body_case_t bodies[] = {
        {"application/json",
         {"{\"query\":\"mutation { login(email: \\\"a@b.c\\\", password: \\\"hunter2\\\") { token "
          "} }\",\"variables\":{}}",
          "{\"query\":\"mutation { login(email: \\\"a@b.c\\\", password: \\\"REDACTED\\\") { "
          "token } }\",\"variables\":{}}"}},
        /* an alias stays; a number, an input object's field, a list, a
         * block string; an escaped quote inside a string; a comment */
        {NULL,
         {"[{\"query\": \"{ token: createToken(secret: 42, input: {apiKey: \\\"k\\\\\\\"q\\\", n: "
          "1}, tokens: [\\\"a\\\", \\\"b\\\"], pwd: \\\"\\\"\\\"x\\ny\\\"\\\"\\\") { id } # "
          "password: \\\"c\\\"\\n}\"}]",
          "[{\"query\": \"{ token: createToken(secret: REDACTED, input: {apiKey: "
          "\\\"REDACTED\\\", n: 1}, tokens: REDACTED, pwd: \\\"\\\"\\\"REDACTED\\\"\\\"\\\") { id "
          "} "
          "# password: \\\"c\\\"\\n}\"}]"}},
        {"application/graphql; charset=utf-8",
         {"mutation {\n  login(password: \"x\", remember: true) { session }\n}\n",
          "mutation {\n  login(password: \"REDACTED\", remember: true) { session }\n}\n"}},
        /* a variable stays (its value is in "variables", by its own name);
         * redacted already; "query" under another key, or not GraphQL */
        {NULL, {"{\"query\": \"query($pw: String) { login(password: $pw) { id } }\"}", NULL}},
        {NULL, {"{\"query\": \"{ login(password: \\\"REDACTED\\\") }\"}", NULL}},
        {NULL, {"{\"q\": \"{ login(password: \\\"x\\\") }\"}", NULL}},
        {"text/plain", {"mutation { login(password: \"x\") }", NULL}},
        /* a variable given for a secret: its value in "variables", which
         * may come first; one of that name deeper in it stays */
        {"application/json",
         {"{\"query\":\"mutation($p: String!, $u: String) { login(password: $p, user: $u) { id "
          "} }\",\"variables\":{\"p\":\"hunter2\",\"u\":\"alice\",\"x\":{\"p\":1}}}",
          "{\"query\":\"mutation($p: String!, $u: String) { login(password: $p, user: $u) { id "
          "} }\",\"variables\":{\"p\":\"REDACTED\",\"u\":\"alice\",\"x\":{\"p\":1}}}"}},
        {NULL,
         {"{\"variables\": {\"a\": [1], \"b\": {\"n\": 2}, \"c\": 3}, \"Query\": "
          "\"query($a: [Int], $b: In) { f(tokens: [$a], input: {secret: $b}) }\"}",
          "{\"variables\": {\"a\": \"REDACTED\", \"b\": \"REDACTED\", \"c\": 3}, "
          "\"Query\": \"query($a: [Int], $b: In) { f(tokens: REDACTED, input: {secret: $b}) "
          "}\"}"}},
        /* "variables" sent as a string of JSON (some clients do): the
         * secret variable in it as in an object; a key word's value too */
        {"application/json",
         {"{\"query\":\"mutation($p: String!, $u: String) { login(password: $p, user: $u) { id "
          "} }\",\"variables\":\"{\\\"p\\\":\\\"hunter2\\\",\\\"u\\\":\\\"alice\\\","
          "\\\"token\\\":\\\"t\\\"}\"}",
          "{\"query\":\"mutation($p: String!, $u: String) { login(password: $p, user: $u) { id "
          "} }\",\"variables\":\"{\\\"p\\\":\\\"REDACTED\\\",\\\"u\\\":\\\"alice\\\","
          "\\\"token\\\":\\\"REDACTED\\\"}\"}"}},
        /* a variable named for a secret: its type stays, its default
         * value goes */
        {"application/graphql",
         {"query($password: String! = \"hunter2\", $n: Int = 1) { login(password: $password) }",
          "query($password: String! = \"REDACTED\", $n: Int = 1) { login(password: $password) "
          "}"}},
        {"application/graphql", {"query($password: String) { login(password: $password) }", NULL}},
    };
    reel_redact_t *r = reel_redact_new();
    check_bodies(r, "graphql", bodies, sizeof bodies / sizeof bodies[0]);
    reel_redact_free(r);
}

/* GraphQL over HTTP's GET, and JSON in a query parameter: their secrets,
 * percent-encoded again; a variable a query= gives for a secret is one in
 * variables= whatever its name (they passed through whole) */
static void test_documents_in_queries(void **state) {
    (void)state;
    static const case_t urls[] = {
        {"/graphql?query=mutation%7Blogin(password%3A%22hunter2%22)%7Bid%7D%7D",
         "/graphql?query=mutation%7Blogin%28password%3A%22REDACTED%22%29%7Bid%7D%7D"},
        {"/graphql?query=query(%24p%3AString)%7Blogin(password%3A%24p)%7D"
         "&variables=%7B%22p%22%3A%22hunter2%22%2C%22u%22%3A%22al%22%7D",
         "/graphql?query=query(%24p%3AString)%7Blogin(password%3A%24p)%7D"
         "&variables=%7B%22p%22%3A%22REDACTED%22%2C%22u%22%3A%22al%22%7D"},
        /* JSON in any parameter, unencoded braces too; by its key words */
        {"/s?filter={\"api_key\":\"k1\",\"n\":1}&x=1",
         "/s?filter=%7B%22api_key%22%3A%22REDACTED%22%2C%22n%22%3A1%7D&x=1"},
        {"/s?state=%7B%22token%22%3A%22t%22", "/s?state=%7B%22token%22%3A%22REDACTED%22"},
        /* with a syntax error: its quoted pairs */
        {"/s?d=%7B%22password%22%3A%22p%22%2C%7D", "/s?d=%7B%22password%22%3A%22REDACTED%22%2C%7D"},
        /* nothing to replace: byte for byte; not GraphQL, not JSON */
        {"/graphql?query=%7Bme%7Bid%7D%7D&variables=%7B%7D", NULL},
        {"/search?query=shoes&q=%7Bbrace", NULL},
        {"/s?filter=%7B%22n%22%3A1%7D", NULL},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        int got = reel_redact_target(r, urls[i].in, strlen(urls[i].in), &t);
        check("target", got, &t, &urls[i]);
        if (!got)
            continue;
        reel_redacted_t again; /* a fixed point */
        if (reel_redact_target(r, t.data, t.len, &again))
            fail_msg("%s: redacted again: %.*s", t.data, (int)again.len, again.data);
        free(t.data);
    }
    /* a form POST of a GraphQL request the same */
    const char *form = "query=mutation+%7Blogin%28password%3A+%22x%22%29%7D";
    assert_true(reel_redact_urlencoded(r, form, strlen(form), &t));
    assert_true(t.len == strlen("query=mutation%20%7Blogin%28password%3A%20%22REDACTED%22%29%7D") &&
                memcmp(t.data, "query=mutation%20%7Blogin%28password%3A%20%22REDACTED%22%29%7D",
                       t.len) == 0);
    free(t.data);
    reel_redact_free(r);
}

/* JSON inside a JSON string, as AWS's events (a Lambda's "body", an SNS
 * "Message" in an SQS body), logs and WebSocket messages carry it: read
 * as JSON, up to 4 strings deep; the string keeps its own escapes */
static void test_json_in_strings(void **state) {
    (void)state;
    static const body_case_t bodies[] = {
        {"application/json",
         {"{\"body\": \"{\\\"apiKey\\\": \\\"k1\\\", \\\"n\\\": 1}\", \"isBase64Encoded\": false}",
          "{\"body\": \"{\\\"apiKey\\\": \\\"REDACTED\\\", \\\"n\\\": 1}\", \"isBase64Encoded\": "
          "false}"}},
        /* two strings deep, an escape of a character and white space
         * before the document kept as they were */
        {NULL,
         {"[{\"Message\":\"\\n "
          "{\\\"d\\\":\\\"{\\\\\\\"password\\\\\\\":\\\\\\\"p\\\\\\\"}\\\",\\\"c\\\":"
          "\\\"caf\\\\u00e9\\\"}\"}]",
          "[{\"Message\":\"\\n "
          "{\\\"d\\\":\\\"{\\\\\\\"password\\\\\\\":\\\\\\\"REDACTED\\\\\\\"}\\\","
          "\\\"c\\\":\\\"caf\\\\u00e9\\\"}\"}]"}},
        /* a secret's value that is an object in the string: whole */
        {NULL,
         {"{\"m\":\"{\\\"auth\\\":{\\\"u\\\":1}}\"}",
          "{\"m\":\"{\\\"auth\\\":\\\"REDACTED\\\"}\"}"}},
        /* not JSON once decoded (a lone surrogate's escape becomes a
         * control byte): its quoted pairs all the same, the rest as it was */
        {NULL,
         {"{\"body\":\"{\\\"token\\\":\\\"SECRET_A\\\",\\\"lone\\\":\\\"\\ud800\\\"}\"}",
          "{\"body\":\"{\\\"token\\\":\\\"REDACTED\\\",\\\"lone\\\":\\\"\\ud800\\\"}\"}"}},
        /* text that only begins like JSON, and a document cut short in
         * its string: the rules for text */
        {NULL, {"{\"t\":\"{not json} password=x\"}", NULL}},
        {NULL, {"{\"t\":\"[\\\"password\\\", \\\"x\\\"\"}", NULL}},
    };
    reel_redact_t *r = reel_redact_new();
    check_bodies(r, "json in strings", bodies, sizeof bodies / sizeof bodies[0]);
    reel_redact_free(r);
}

/* "auth" names a secret, but not a writer or a domain: author, authored,
 * authority (GitHub's commits, Atom feeds, OAuth's authority URL) */
static void test_auth_not_author(void **state) {
    (void)state;
    reel_redact_t *r = reel_redact_new();
    static const char *const secret[] = {"auth",          "Authorization", "authorize_code",
                                         "authorisation", "x-auth-token",  "oauth",
                                         "auth_or",       "authorKey",     "author_token"};
    static const char *const not_secret[] = {"author",   "authors",   "Author",       "authored_at",
                                             "coauthor", "authority", "commit_author"};
    for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++)
        if (!reel_redact_key_matches(r, secret[i], strlen(secret[i])))
            fail_msg("%s: not a secret's name", secret[i]);
    for (size_t i = 0; i < sizeof not_secret / sizeof not_secret[0]; i++)
        if (reel_redact_key_matches(r, not_secret[i], strlen(not_secret[i])))
            fail_msg("%s: taken for a secret's name", not_secret[i]);
    static const body_case_t bodies[] = {
        {"application/json",
         {"{\"author\": {\"name\": \"a\"}, \"auth\": \"x\", \"authority\": "
          "\"https://login.test/\"}",
          "{\"author\": {\"name\": \"a\"}, \"auth\": \"REDACTED\", \"authority\": "
          "\"https://login.test/\"}"}},
    };
    check_bodies(r, "auth", bodies, sizeof bodies / sizeof bodies[0]);
    /* one the user names is matched as it is written, author too */
    reel_redact_add_key(r, "auth");
    assert_true(reel_redact_key_matches(r, "author", 6));
    reel_redact_free(r);
}

/* multipart bodies: a form's fields by their name, the other parts by
 * their own Content-Type, the rest byte for byte */
static void test_multipart(void **state) {
    (void)state;
    static const body_case_t bodies[] = {
        {"multipart/form-data; boundary=XyZ",
         {"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n--XyZ\r\n"
          "Content-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n--XyZ--\r\n",
          "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n--XyZ\r\n"
          "Content-Disposition: form-data; name=\"password\"\r\n\r\nREDACTED\r\n--XyZ--\r\n"}},
        /* a quoted boundary, parameters in another order and case, a
         * preamble and an epilogue, padding after a delimiter */
        {"Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b'c\"",
         {"preamble token=1\r\n--a b'c  \r\ncontent-disposition: form-data; filename=\"x\"; "
          "NAME=api_key\r\n\r\nK1\r\n--a b'c\r\nContent-Disposition: form-data; name=\"n\"\r\n"
          "\r\nv\r\n--a b'c--\r\nepilogue password=2",
          "preamble token=1\r\n--a b'c  \r\ncontent-disposition: form-data; filename=\"x\"; "
          "NAME=api_key\r\n\r\nREDACTED\r\n--a b'c\r\nContent-Disposition: form-data; "
          "name=\"n\"\r\n\r\nv\r\n--a b'c--\r\nepilogue password=2"}},
        /* a part's own Content-Type: JSON, a form; no Content-Type: JSON
         * found by its first byte (GraphQL's multipart requests), a URL */
        {"multipart/form-data; boundary=b",
         {"--b\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: "
          "application/json\r\n\r\n{\"token\": \"S\", \"a\": [1, 2]}\r\n--b\r\n"
          "Content-Disposition: form-data; name=\"f\"\r\nContent-Type: "
          "application/x-www-form-urlencoded\r\n\r\na=1&secret=T\r\n--b\r\n"
          "Content-Disposition: form-data; name=\"operations\"\r\n\r\n{\"variables\": "
          "{\"password\": \"P\"}}\r\n--b\r\nContent-Disposition: form-data; name=\"next\"\r\n\r\n"
          "https://a.test/cb?code=1&access_token=U\r\n--b--\r\n",
          "--b\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: "
          "application/json\r\n\r\n{\"token\": \"REDACTED\", \"a\": [1, 2]}\r\n--b\r\n"
          "Content-Disposition: form-data; name=\"f\"\r\nContent-Type: "
          "application/x-www-form-urlencoded\r\n\r\na=1&secret=REDACTED\r\n--b\r\n"
          "Content-Disposition: form-data; name=\"operations\"\r\n\r\n{\"variables\": "
          "{\"password\": \"REDACTED\"}}\r\n--b\r\nContent-Disposition: form-data; "
          "name=\"next\"\r\n\r\nhttps://a.test/cb?code=1&access_token=REDACTED\r\n--b--\r\n"}},
        /* name*= (RFC 8187), alone or beside a name= that names no
         * secret; a filename*= is no name */
        {"multipart/form-data; boundary=b",
         {"--b\r\nContent-Disposition: form-data; name*=UTF-8''pass%77ord\r\n\r\nhunter2\r\n"
          "--b\r\nContent-Disposition: form-data; name=\"x\"; name*=utf-8'en'api%5Fkey\r\n\r\n"
          "K\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''token\r\n"
          "\r\nv\r\n--b--\r\n",
          "--b\r\nContent-Disposition: form-data; name*=UTF-8''pass%77ord\r\n\r\nREDACTED\r\n"
          "--b\r\nContent-Disposition: form-data; name=\"x\"; name*=utf-8'en'api%5Fkey\r\n\r\n"
          "REDACTED\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; "
          "filename*=UTF-8''token\r\n\r\nv\r\n--b--\r\n"}},
        /* a part's header fields as a request's */
        {"multipart/mixed; boundary=batch_1",
         {"--batch_1\r\nAuthorization: Bearer abc.def\r\nX-Api-Key: K\r\n\r\nGET /x HTTP/1.1\r\n"
          "--batch_1--",
          "--batch_1\r\nAuthorization: Bearer REDACTED\r\nX-Api-Key: REDACTED\r\n\r\nGET /x "
          "HTTP/1.1\r\n--batch_1--"}},
        /* lines ended by LF alone; a part without header fields; the
         * boundary inside a line is no delimiter */
        {"multipart/form-data; boundary=q",
         {"--q\n\nx --q y\n--q\nContent-Disposition: form-data; name=pwd\n\nP --q\n--q--\n",
          "--q\n\nx --q y\n--q\nContent-Disposition: form-data; name=pwd\n\nREDACTED\n--q--\n"}},
        /* a line that only begins with the boundary is content, and the
         * parts after it are still read */
        {"multipart/form-data; boundary=b",
         {"--b\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nx\r\n--bc\r\n--b-x\r\ny\r\n"
          "--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nT\r\n--b--",
          "--b\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nx\r\n--bc\r\n--b-x\r\ny\r\n"
          "--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nREDACTED\r\n--b--"}},
        /* a form in a form (RFC 2388's files), to any depth */
        {"multipart/form-data; boundary=outer",
         {"--outer\r\nContent-Disposition: form-data; name=\"files\"\r\nContent-Type: "
          "multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Disposition: file; "
          "name=\"session\"\r\n\r\nS\r\n--inner--\r\n--outer--\r\n",
          "--outer\r\nContent-Disposition: form-data; name=\"files\"\r\nContent-Type: "
          "multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Disposition: file; "
          "name=\"session\"\r\n\r\nREDACTED\r\n--inner--\r\n--outer--\r\n"}},
        /* cut short (body_limit): a secret to the end, fields as far as
         * they go */
        {"multipart/form-data; boundary=z",
         {"--z\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nCUT SHORT",
          "--z\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nREDACTED"}},
        {"multipart/form-data; boundary=z",
         {"--z\r\nAuthorization: Basic dXNlcjpwYXNz", "--z\r\nAuthorization: Basic REDACTED"}},
        /* key words as elsewhere: keyId is one, monkey is not */
        {"multipart/form-data; boundary=z",
         {"--z\r\nContent-Disposition: form-data; name=keyId\r\n\r\nk\r\n--z\r\n"
          "Content-Disposition: form-data; name=monkey\r\n\r\nm\r\n--z--",
          "--z\r\nContent-Disposition: form-data; name=keyId\r\n\r\nREDACTED\r\n--z\r\n"
          "Content-Disposition: form-data; name=monkey\r\n\r\nm\r\n--z--"}},
        /* no boundary, or none in the body: the rules for text */
        {"multipart/form-data",
         {"see https://a.test/?token=S", "see https://a.test/?token=REDACTED"}},
        {"multipart/form-data; boundary=nothere",
         {"--other\r\n\r\nhttps://a.test/?token=S",
          "--other\r\n\r\nhttps://a.test/?token=REDACTED"}},
        /* nothing to replace: a redacted one, one without secrets */
        {"multipart/form-data; boundary=z",
         {"--z\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nREDACTED\r\n--z--\r\n",
          NULL}},
        {"multipart/form-data; boundary=z",
         {"--z\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nhello\r\n--z--\r\n", NULL}},
        {"multipart/mixed; boundary=z",
         {"--z\r\nAuthorization: Bearer REDACTED\r\n\r\nx\r\n--z--", NULL}},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    check_bodies(r, "multipart", bodies, sizeof bodies / sizeof bodies[0]);
    /* A file of every byte value beside a field: the file as it was, the
     * field redacted; reel_redact_reads takes such a body, not the file
     * alone. */
    reel_buf_t in, want;
    reel_buf_init(&in, 0);
    reel_buf_init(&want, 0);
    uint8_t bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (uint8_t)i;
    const char *head =
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n";
    const char *tail_in = "\r\n--B\r\nContent-Disposition: form-data; name=\"passwd\"\r\n\r\nP\r\n"
                          "--B--\r\n";
    const char *tail_want = "\r\n--B\r\nContent-Disposition: form-data; name=\"passwd\"\r\n\r\n"
                            "REDACTED\r\n--B--\r\n";
    reel_buf_puts(&in, head);
    reel_buf_append(&in, bin, sizeof bin);
    reel_buf_puts(&in, tail_in);
    reel_buf_puts(&want, head);
    reel_buf_append(&want, bin, sizeof bin);
    reel_buf_puts(&want, tail_want);
    const char *mp = "multipart/form-data; boundary=B";
    assert_true(reel_redact_reads(mp, in.data, in.len));
    assert_false(reel_redact_reads("application/octet-stream", bin, sizeof bin));
    assert_false(reel_redact_reads(mp, in.data, 0));
    assert_true(reel_redact_body(r, mp, in.data, in.len, &t));
    assert_int_equal(t.len, want.len);
    assert_memory_equal(t.data, want.data, want.len);
    free(t.data);
    /* a thousand parts, and a part that is only a delimiter's start */
    reel_buf_reset(&in);
    for (int i = 0; i < 1000; i++)
        reel_buf_puts(&in, "--B\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nT\r\n");
    reel_buf_puts(&in, "--B");
    assert_true(reel_redact_body(r, mp, in.data, in.len, &t));
    assert_null(memmem(t.data, t.len, "\r\n\r\nT\r\n", 7));
    free(t.data);
    reel_buf_free(&in);
    reel_buf_free(&want);
    reel_redact_free(r);
}

/* XML and HTML: what names a secret, its value replaced, the rest byte
 * for byte; server-sent events; YAML and properties */
static void test_markup(void **state) {
    (void)state;
    static const body_case_t bodies[] = {
        /* SOAP's WS-Security: every text inside UsernameToken (a key word) */
        {"application/soap+xml; charset=utf-8",
         {"<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"urn:s\"><s:Header><wsse:Security>"
          "<wsse:UsernameToken><wsse:Username>bob</wsse:Username><wsse:Password "
          "Type=\"urn:x#PasswordText\">hunter2</wsse:Password></wsse:UsernameToken>"
          "</wsse:Security></s:Header><s:Body><q><symbol>ACME</symbol></q></s:Body></s:Envelope>",
          "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"urn:s\"><s:Header><wsse:Security>"
          "<wsse:UsernameToken><wsse:Username>REDACTED</wsse:Username><wsse:Password "
          "Type=\"urn:x#PasswordText\">REDACTED</wsse:Password></wsse:UsernameToken>"
          "</wsse:Security></s:Header><s:Body><q><symbol>ACME</symbol></q></s:Body>"
          "</s:Envelope>"}},
        /* attributes; an empty one stays; white space around a text */
        {"text/xml",
         {"<u name=\"bob\" api_key=\"K1\" password='' x:token='T'/>\n<password>\n  pw 1\n"
          "</password><n>1</n>",
          "<u name=\"bob\" api_key=\"REDACTED\" password='' x:token='REDACTED'/>\n<password>\n  "
          "REDACTED\n</password><n>1</n>"}},
        /* CDATA; an element that names a secret (a Java properties file,
         * a .NET config); a declaration passed over; markup commented out
         * read as markup (it was passed over, its secrets with it), a
         * comment without any kept */
        {"application/xml",
         {"<!DOCTYPE p><!-- <password>c</password> --><p><!-- x --><!----><entry "
          "key=\"db.password\">"
          "<![CDATA[s3]]></entry><entry key=\"db.user\">u</entry><add key=\"ApiKey\" "
          "value=\"V\"/><secret><![CDATA[x<y]]></secret></p>",
          "<!DOCTYPE p><!-- <password>REDACTED</password> --><p><!-- x --><!----><entry "
          "key=\"db.password\">"
          "<![CDATA[REDACTED]]></entry><entry key=\"db.user\">u</entry><add key=\"ApiKey\" "
          "value=\"REDACTED\"/><secret><![CDATA[REDACTED]]></secret></p>"}},
        /* found by its declaration; cut short in a secret */
        {NULL,
         {"<?xml version=\"1.0\"?><a><b>1</b><token>abc", "<?xml version=\"1.0\"?><a><b>1</b>"
                                                          "<token>REDACTED"}},
        /* a '<' that starts no tag; the URL rules after */
        {"text/xml",
         {"<r><pwd>a < b</pwd><u>https://a.test/?token=S</u></r>",
          "<r><pwd>REDACTED < REDACTED</pwd><u>https://a.test/?token=REDACTED</u></r>"}},
        /* HTML: a form's hidden token and password, a meta's token, a data
         * attribute, unquoted values; what a script holds is passed over */
        {"text/html; charset=utf-8",
         {"<meta name=\"csrf-token\" content=\"C1\"><form><input type=\"hidden\" "
          "name=\"authenticity_token\" value=\"T1\"><input name=\"user\" value=\"bob\"><INPUT "
          "TYPE=password NAME=pw VALUE=P1></form><div data-api-key='K'>x</div><script>if (a<b) "
          "{}</script><input value=V2 name=token>",
          "<meta name=\"csrf-token\" content=\"REDACTED\"><form><input type=\"hidden\" "
          "name=\"authenticity_token\" value=\"REDACTED\"><input name=\"user\" "
          "value=\"bob\"><INPUT "
          "TYPE=password NAME=pw VALUE=REDACTED></form><div data-api-key='REDACTED'>x</div>"
          "<script>if (a<b) {}</script><input value=REDACTED name=token>"}},
        /* in HTML, an element's text is no secret */
        {"text/html", {"<p class=password>hunter2</p>", NULL}},
        /* found by its start: HTML without a Content-Type */
        {NULL,
         {"<!DOCTYPE html><input name=password value=x>", "<!DOCTYPE html><input "
                                                          "name=password value=REDACTED>"}},
        /* not markup: the rules for text only */
        {"text/plain", {"<password>x</password>", NULL}},
        /* redacted already */
        {"text/xml", {"<password>REDACTED</password><a token=\"REDACTED\"/>", NULL}},
        /* server-sent events: each data: line's JSON as JSON, the rest as
         * text; LF or CRLF kept */
        {"text/event-stream; charset=utf-8",
         {"event: login\ndata: {\"token\": \"S\", \"n\": [1]}\n\n: note https://a.test/?token=T\n"
          "data:{\"user\":{\"password\":\"P\"}}\r\nid: 7\r\n\r\ndata: see "
          "https://a.test/?secret=U\ndata\ndata: {\"token\": \"cut",
          "event: login\ndata: {\"token\": \"REDACTED\", \"n\": [1]}\n\n: note "
          "https://a.test/?token=REDACTED\ndata:{\"user\":{\"password\":\"REDACTED\"}}\r\nid: "
          "7\r\n\r\ndata: see https://a.test/?secret=REDACTED\ndata\ndata: {\"token\": "
          "\"REDACTED"}},
        {"text/event-stream", {"data: {\"token\": \"REDACTED\"}\n\ndata: {\"a\": 1}\n\n", NULL}},
        /* JSON printed over several data: lines */
        {"text/event-stream",
         {"data: {\ndata:   \"token\": \"abc\",\ndata:   \"n\": 1\ndata: }\n\n",
          "data: {\ndata:   \"token\": \"REDACTED\",\ndata:   \"n\": 1\ndata: }\n\n"}},
        /* YAML and properties (a configuration server's answers): the
         * value of a secret key, a secret's block below it */
        {"application/x-yaml",
         {"spring:\n  datasource:\n    url: jdbc:x://db/app?ssl=1\n    username: app\n"
          "    password: 'hunter2'   \n  mail: {host: m}\n\"api_key\": K1\nlist:\n  - token: T1\n"
          "  - name: x\ncredentials:\n  user: bob\n\n  # c: d\n  pass: P\nprivate_key: |\n"
          "  -----BEGIN-----\n  AAAA\nafter: 1 # password: no\nsecret:\n",
          "spring:\n  datasource:\n    url: jdbc:x://db/app?ssl=1\n    username: app\n"
          "    password: REDACTED   \n  mail: {host: m}\n\"api_key\": REDACTED\nlist:\n  - token: "
          "REDACTED\n  - name: x\ncredentials:\n  user: REDACTED\n\n  # c: d\n  pass: "
          "REDACTED\nprivate_key: |\n  REDACTED\n  REDACTED\nafter: 1 # password: no\nsecret:\n"}},
        {"text/x-java-properties; charset=ISO-8859-1",
         {"# db\r\ndb.url=jdbc:x://h/d\r\ndb.password = s3\r\napi.key: k\r\nother=1\r\n",
          "# db\r\ndb.url=jdbc:x://h/d\r\ndb.password = REDACTED\r\napi.key: REDACTED\r\n"
          "other=1\r\n"}},
        /* flow mappings on one line, nested; a list in one stays whole */
        {"application/yaml",
         {"db: {user: a, password: \"p, q\", opts: {x: 1, api_key: k}, tags: [a, b]}\n"
          "- {'token': t}\n",
          "db: {user: a, password: REDACTED, opts: {x: 1, api_key: REDACTED}, tags: [a, b]}\n"
          "- {'token': REDACTED}\n"}},
        {"text/yaml", {"password: REDACTED\ntoken:\n  REDACTED\n", NULL}},
        /* the same as text/plain: no JSON is read in it */
        {"text/plain", {"data: {\"token\": \"S\"}", NULL}},
    };
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    check_bodies(r, "markup", bodies, sizeof bodies / sizeof bodies[0]);
    /* hostile: unclosed comments, tags and quotes, deep nesting: linear */
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "<?xml?>");
    for (int i = 0; i < 50000; i++)
        reel_buf_puts(&b, "<password a='<!--<![CDATA[\"");
    clock_t start = clock();
    if (reel_redact_body(r, "text/xml", b.data, b.len, &t))
        free(t.data);
    reel_buf_reset(&b);
    for (int i = 0; i < 50000; i++)
        reel_buf_puts(&b, "<token><");
    if (reel_redact_body(r, "text/html", b.data, b.len, &t))
        free(t.data);
    /* comments in a comment, as deep as the body is long: a comment's
     * markup is read one level deep (a recursion per "<!--" ran out of
     * stack), and what it comments out is still redacted */
    reel_buf_reset(&b);
    reel_buf_puts(&b, "<a>");
    for (int i = 0; i < 200000; i++)
        reel_buf_puts(&b, "<!--");
    reel_buf_puts(&b, "<password>x</password>");
    assert_true(reel_redact_body(r, "text/xml", b.data, b.len, &t));
    assert_int_equal(t.len, b.len + strlen("REDACTED") - 1);
    assert_non_null(strstr(t.data, "<!--<password>REDACTED</password>"));
    free(t.data);
    double sec = (double)(clock() - start) / CLOCKS_PER_SEC;
    if (sec > 5)
        fail_msg("hostile markup took %.1f s", sec);
    reel_buf_free(&b);
    reel_redact_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_fragment_nested_userinfo),
        cmocka_unit_test(test_url_hostile_depth),
        cmocka_unit_test(test_single_quotes),
        cmocka_unit_test(test_found_by_fuzzing),
        cmocka_unit_test(test_semicolon_params),
        cmocka_unit_test(test_urls_in_bodies),
        cmocka_unit_test(test_known_tokens),
        cmocka_unit_test(test_auth_not_author),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_graphql),
        cmocka_unit_test(test_documents_in_queries),
        cmocka_unit_test(test_json_in_strings),
        cmocka_unit_test(test_markup),
        cmocka_unit_test(test_text_around_urls),
        cmocka_unit_test(test_cookies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
