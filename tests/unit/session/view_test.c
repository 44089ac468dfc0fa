/* Tests for src/session/view.c: every contentview on valid content (what it
 * prints), on malformed and hostile content (it falls back to hex or text
 * with a reason, never crashes), on every prefix of its valid input (a body
 * cut anywhere), and the terminal escaping of recorded control bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <zlib.h>

#include "session/view.h"

typedef struct {
    char *text;
    size_t len;
    reel_view_kind shown;
} out_t;

static out_t render(reel_view_kind kind, const char *ct, const void *p, size_t n, int cut,
                    int flags) {
    out_t o = {0};
    FILE *f = open_memstream(&o.text, &o.len);
    assert_non_null(f);
    o.shown = reel_view_render(kind, ct, p, n, cut, flags, f);
    fclose(f);
    return o;
}

static void has(const out_t *o, const char *s) {
    if (strstr(o->text, s) == NULL)
        fail_msg("expected \"%s\" in:\n%s", s, o->text);
}

static void hasnt(const out_t *o, const char *s) {
    if (strstr(o->text, s) != NULL)
        fail_msg("did not expect \"%s\" in:\n%s", s, o->text);
}

/* Every prefix of p and every single-byte corruption must render without
 * crashing and name a kind. */
static void torture(reel_view_kind kind, const char *ct, const uint8_t *p, size_t n) {
    uint8_t *b = malloc(n + 1);
    for (size_t k = 0; k <= n; k++) {
        memcpy(b, p, k);
        out_t o = render(kind, ct, b, k, k < n, REEL_VIEW_TERM);
        assert_true(o.shown > REEL_VIEW_AUTO && o.shown < REEL_VIEW_COUNT);
        assert_null(strchr(o.text, '\033')); /* no colour asked, no raw ESC */
        free(o.text);
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(b, p, n);
        b[i] ^= 0xa5;
        out_t o = render(kind, ct, b, n, 0, REEL_VIEW_TERM);
        assert_null(strchr(o.text, '\033'));
        free(o.text);
    }
    free(b);
}

static void test_names(void **state) {
    (void)state;
    for (int i = 0; i < REEL_VIEW_COUNT; i++)
        assert_int_equal(reel_view_parse(reel_view_name((reel_view_kind)i)), i);
    assert_int_equal(reel_view_parse("js"), REEL_VIEW_JAVASCRIPT);
    assert_int_equal(reel_view_parse("nope"), -1);
    assert_int_equal(reel_view_parse(NULL), -1);
}

static void test_pick(void **state) {
    (void)state;
    const uint8_t t[] = "hello";
    assert_int_equal(reel_view_pick("application/json; charset=utf-8", t, 5), REEL_VIEW_JSON);
    assert_int_equal(reel_view_pick("application/problem+json", t, 5), REEL_VIEW_JSON);
    assert_int_equal(reel_view_pick("Text/HTML", t, 5), REEL_VIEW_HTML);
    assert_int_equal(reel_view_pick("image/svg+xml", t, 5), REEL_VIEW_XML);
    assert_int_equal(reel_view_pick("text/css", t, 5), REEL_VIEW_CSS);
    assert_int_equal(reel_view_pick("application/javascript", t, 5), REEL_VIEW_JAVASCRIPT);
    assert_int_equal(reel_view_pick("application/x-www-form-urlencoded", t, 5),
                     REEL_VIEW_URLENCODED);
    assert_int_equal(reel_view_pick("multipart/form-data; boundary=x", t, 5), REEL_VIEW_MULTIPART);
    assert_int_equal(reel_view_pick("application/grpc+proto", t, 5), REEL_VIEW_GRPC);
    assert_int_equal(reel_view_pick("application/x-protobuf", t, 5), REEL_VIEW_PROTOBUF);
    /* sniffing */
    assert_int_equal(reel_view_pick(NULL, (const uint8_t *)" {\"a\":1}", 8), REEL_VIEW_JSON);
    assert_int_equal(reel_view_pick("text/plain", (const uint8_t *)"<!DOCTYPE html><p>", 18),
                     REEL_VIEW_HTML);
    assert_int_equal(reel_view_pick(NULL, (const uint8_t *)"<a/>", 4), REEL_VIEW_XML);
    assert_int_equal(
        reel_view_pick("application/octet-stream", (const uint8_t *)"\x89PNG\r\n\x1a\n", 8),
        REEL_VIEW_IMAGE);
    assert_int_equal(reel_view_pick(NULL, t, 5), REEL_VIEW_RAW);
    assert_int_equal(reel_view_pick(NULL, (const uint8_t *)"\0\1\2\3", 4), REEL_VIEW_HEX);
    assert_int_equal(reel_view_pick(NULL, t, 0), REEL_VIEW_RAW);
}

static void test_json(void **state) {
    (void)state;
    const char *j = "{\"a\":[1,2.5,{\"b\":\"x\\u001b]0;pwn\\u0007\"}],\"t\":true,\"n\":null}";
    out_t o = render(REEL_VIEW_JSON, NULL, j, strlen(j), 0, REEL_VIEW_TERM);
    assert_int_equal(o.shown, REEL_VIEW_JSON);
    has(&o, "{\n  \"a\": [\n    1,\n    2.5,\n    {\n      \"b\": \"x\\u001b]0;pwn\\u0007\"\n");
    has(&o, "  \"t\": true,\n  \"n\": null\n}\n");
    assert_null(strchr(o.text, '\033'));
    free(o.text);
    /* colour: keys in blue */
    o = render(REEL_VIEW_JSON, NULL, j, strlen(j), 0, REEL_VIEW_TERM | REEL_VIEW_COLOR);
    has(&o, "\033[34m\"a\"\033[0m");
    free(o.text);
    /* malformed: hex with the reason; under auto, text */
    o = render(REEL_VIEW_JSON, NULL, "{\"a\":1,", 7, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(not JSON: ");
    has(&o, "a key (a string) expected, but the text ends at line 1, column 8; shown as "
            "hex)\n00000000  7b 22 61");
    free(o.text);
    o = render(REEL_VIEW_AUTO, "application/json", "{\"a\":1,", 7, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_RAW);
    has(&o, "shown as text)\n{\"a\":1,\n");
    free(o.text);
    /* what was sent: numbers as written (jansson printed 0.1 as
     * 0.10000000000000001, 1e2 as 100.0, and refused the 20-digit
     * integer), a key given twice twice, escapes read, a byte order mark
     * passed over; a value of any kind at the top */
    const char *nums = "\xef\xbb\xbf{\"p\":0.1,\"e\":1E+2,\"big\":12345678901234567890,\"z\":-0.0,"
                       "\"k\":1,\"k\":2,\"s\":\"\\u00e9\\ud83d\\ude00\\/\\u0000\"}";
    o = render(REEL_VIEW_JSON, NULL, nums, strlen(nums), 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_JSON);
    has(&o, "{\n  \"p\": 0.1,\n  \"e\": 1E+2,\n  \"big\": 12345678901234567890,\n  \"z\": -0.0,\n"
            "  \"k\": 1,\n  \"k\": 2,\n  \"s\": \"\xc3\xa9\xf0\x9f\x98\x80/\\u0000\"\n}\n");
    free(o.text);
    o = render(REEL_VIEW_JSON, NULL, " 42 ", 4, 0, 0);
    has(&o, "42\n");
    free(o.text);
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"[1,2", "',' or ']' expected, but the text ends at line 1, column 5"},
        {"{\"a\" 1}", "':' expected after a key at line 1, column 6"},
        {"[01]", "',' or ']' expected at line 1, column 3"},
        {"[1.]", "digits expected after a decimal point at line 1, column 4"},
        {"[\"\\ud800\"]", "a \\u escape of a lone surrogate inside a string"},
        {"[\"a\tb\"]", "a control character inside a string at line 1, column 4"},
        {"[\"\xff\"]", "invalid UTF-8 inside a string"},
        {"[tru]", "a value expected at line 1, column 2"},
        {"[1]\n x", "the end of the text expected after the value at line 2, column 2"},
        {"{\"a\":\"b", "the text ends inside a string at line 1, column 8"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        o = render(REEL_VIEW_JSON, NULL, bad[k].in, strlen(bad[k].in), 0, 0);
        assert_int_equal(o.shown, REEL_VIEW_HEX);
        has(&o, bad[k].why);
        free(o.text);
    }
    /* the reason quotes content: escaped on a terminal */
    o = render(REEL_VIEW_JSON, NULL, "\033[2J", 4, 0, REEL_VIEW_TERM);
    assert_null(strchr(o.text, '\033'));
    free(o.text);
    /* deep nesting: parsed or refused, never a crash; indentation capped */
    size_t deep = 100000;
    char *d = malloc(deep * 2);
    memset(d, '[', deep);
    memset(d + deep, ']', deep);
    o = render(REEL_VIEW_JSON, NULL, d, deep * 2, 0, 0);
    assert_true(o.len < 64 * deep);
    free(o.text);
    free(d);
    torture(REEL_VIEW_JSON, NULL, (const uint8_t *)j, strlen(j));
}

static void test_xml_html(void **state) {
    (void)state;
    const char *x = "<?xml version=\"1.0\"?><a><b c=\"1\">t</b><d/></a>";
    out_t o = render(REEL_VIEW_XML, NULL, x, strlen(x), 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_XML);
    assert_string_equal(o.text, "<a>\n  <b c=\"1\">t</b>\n  <d/>\n</a>\n");
    free(o.text);
    o = render(REEL_VIEW_XML, NULL, "<a><b></a>", 10, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(not XML: ");
    free(o.text);
    /* an external entity is neither fetched nor read */
    const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e SYSTEM "
                      "\"file:///etc/passwd\">]><a>&e;</a>";
    o = render(REEL_VIEW_XML, NULL, xxe, strlen(xxe), 0, 0);
    hasnt(&o, "root:");
    free(o.text);
    /* billion laughs: entities are not expanded */
    const char *lol = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
                      "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
                      "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
                      "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]><l>&d;&d;&d;</l>";
    o = render(REEL_VIEW_XML, NULL, lol, strlen(lol), 0, 0);
    assert_true(o.len < 4096);
    free(o.text);
    const char *h = "<html><body><p>hi<script>alert(1)</script>\033[31m</body></html>";
    o = render(REEL_VIEW_HTML, NULL, h, strlen(h), 0, REEL_VIEW_TERM);
    assert_int_equal(o.shown, REEL_VIEW_HTML);
    has(&o, "<script>alert(1)</script>");
    has(&o, "[31m"); /* libxml2 drops the ESC; none reaches the terminal */
    assert_null(strchr(o.text, '\033'));
    free(o.text);
    /* text as it came, not as entities (Caf&eacute; &#20013;), and
     * markup in it still escaped */
    const char *u = "<html><head><meta charset=\"utf-8\"><title>Caf\xc3\xa9 \xe4\xb8\xad</title>"
                    "</head><body><p>\xf0\x9f\x98\x80 a&lt;b</p></body></html>";
    o = render(REEL_VIEW_HTML, "text/html; charset=utf-8", u, strlen(u), 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HTML);
    has(&o, "<title>Caf\xc3\xa9 \xe4\xb8\xad</title>");
    has(&o, "<p>\xf0\x9f\x98\x80 a&lt;b</p>");
    hasnt(&o, "&eacute;");
    free(o.text);
    torture(REEL_VIEW_XML, NULL, (const uint8_t *)x, strlen(x));
    torture(REEL_VIEW_HTML, NULL, (const uint8_t *)h, strlen(h));
    torture(REEL_VIEW_HTML, NULL, (const uint8_t *)u, strlen(u));
}

static void test_code(void **state) {
    (void)state;
    const char *css = "a{color:red;b:url(\"x;{\")}/* { */p{q:r}";
    out_t o = render(REEL_VIEW_CSS, NULL, css, strlen(css), 0, 0);
    assert_string_equal(o.text, "a{\n  color:red;\n  b:url(\"x;{\")\n}\n/* { */p{\n  q:r\n}\n");
    free(o.text);
    const char *js = "function f(a){for(var i=0;i<3;i++){g('}');}// }\nreturn `a{`;}";
    o = render(REEL_VIEW_JAVASCRIPT, NULL, js, strlen(js), 0, 0);
    assert_string_equal(o.text, "function f(a){\n  for(var i=0;i<3;i++){\n    g('}');\n  }\n"
                                "  // }\n  return `a{`;\n}\n");
    free(o.text);
    o = render(REEL_VIEW_JAVASCRIPT, NULL, "\0\1\2\3\4", 5, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(not text");
    free(o.text);
    /* hostile nesting: indentation capped */
    size_t deep = 20000;
    char *d = malloc(deep);
    memset(d, '{', deep);
    o = render(REEL_VIEW_CSS, NULL, d, deep, 0, 0);
    assert_true(o.len < 80 * deep);
    free(o.text);
    free(d);
    torture(REEL_VIEW_JAVASCRIPT, NULL, (const uint8_t *)js, strlen(js));
}

static void test_urlencoded(void **state) {
    (void)state;
    const char *f = "a=1&long_name=hello+world&c=%e2%9c%93&d&e=%0a%1b&&=x";
    out_t o = render(REEL_VIEW_URLENCODED, NULL, f, strlen(f), 0, REEL_VIEW_TERM);
    assert_int_equal(o.shown, REEL_VIEW_URLENCODED);
    assert_string_equal(o.text, "a          1\n"
                                "long_name  hello world\n"
                                "c          \xe2\x9c\x93\n"
                                "d          (no value)\n"
                                "e          \\n\\x1b\n"
                                "           x\n");
    free(o.text);
    o = render(REEL_VIEW_URLENCODED, NULL, "?q=%", 4, 0, 0);
    has(&o, "q  %\n");
    free(o.text);
    o = render(REEL_VIEW_URLENCODED, NULL, "a=\0b", 4, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(not URL-encoded: control byte 0x00 at offset 2; shown as hex)");
    free(o.text);
    torture(REEL_VIEW_URLENCODED, NULL, (const uint8_t *)f, strlen(f));
}

static void test_multipart(void **state) {
    (void)state;
    static const char m[] = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue1\r\n"
                            "--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n"
                            "Content-Type: application/octet-stream\r\n\r\n\x01\x02\x03\r\n"
                            "--XyZ--\r\n";
    const char *ct = "multipart/form-data; boundary=XyZ";
    out_t o = render(REEL_VIEW_AUTO, ct, m, sizeof m - 1, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_MULTIPART);
    assert_string_equal(o.text, "part 1: 6 bytes\n"
                                "  Content-Disposition: form-data; name=\"a\"\n"
                                "  = value1\n"
                                "part 2: 3 bytes\n"
                                "  Content-Disposition: form-data; name=\"f\"\n"
                                "  Content-Type: application/octet-stream\n");
    free(o.text);
    /* boundary quoted, or found on the first line when the type has none */
    o = render(REEL_VIEW_MULTIPART, "multipart/mixed; boundary=\"XyZ\"", m, sizeof m - 1, 0, 0);
    has(&o, "part 2: 3 bytes");
    free(o.text);
    o = render(REEL_VIEW_MULTIPART, NULL, m, sizeof m - 1, 0, 0);
    has(&o, "part 2: 3 bytes");
    free(o.text);
    o = render(REEL_VIEW_MULTIPART, "multipart/form-data; boundary=nope", m, sizeof m - 1, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(not multipart: no delimiter line '--nope'; shown as hex)");
    free(o.text);
    /* cut in the second part */
    o = render(REEL_VIEW_MULTIPART, ct, m, 100, 1, 0);
    has(&o, "(cut)");
    has(&o, "(cut: the view shows the first 100 bytes of the body)");
    free(o.text);
    torture(REEL_VIEW_MULTIPART, ct, (const uint8_t *)m, sizeof m - 1);
}

static const uint8_t pb[] = {0x08, 0x96, 0x01,                        /* 1: 150 */
                             0x12, 0x05, 'h',  'e',  'l',  'l',  'o', /* 2: "hello" */
                             0x1a, 0x04, 0x08, 0x01, 0x10, 0x02,      /* 3 { 1: 1 2: 2 } */
                             0x25, 0x00, 0x00, 0x80, 0x3f,            /* 4: fixed32 1.0f */
                             0x2a, 0x02, 0xff, 0x00};                 /* 5: bytes */

static void test_protobuf(void **state) {
    (void)state;
    out_t o = render(REEL_VIEW_PROTOBUF, NULL, pb, sizeof pb, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_PROTOBUF);
    assert_string_equal(o.text, "1: 150\n"
                                "2: \"hello\"\n"
                                "3 {\n  1: 1  (sint -1)\n  2: 2\n}\n"
                                "4: fixed32 0x3f800000  (float 1)\n"
                                "5: bytes (2) ff00\n");
    free(o.text);
    o = render(REEL_VIEW_PROTOBUF, NULL, "\x0b\x01", 2, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(not protobuf: wire type 3 at offset 0; shown as hex)");
    free(o.text);
    o = render(REEL_VIEW_PROTOBUF, NULL, "\x12\xff\xff\xff\xff\x0f", 6, 0, 0);
    has(&o, "length runs past the end");
    free(o.text);
    /* nesting beyond PB_DEPTH_MAX stays bytes, no deep recursion */
    uint8_t deep[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        deep[n++] = 0x0a;
        deep[n++] = (uint8_t)(2 * (99 - i));
    }
    /* lengths: level i holds the rest; valid only in shape, checked not to crash */
    o = render(REEL_VIEW_PROTOBUF, NULL, deep, n, 0, 0);
    free(o.text);
    torture(REEL_VIEW_PROTOBUF, NULL, pb, sizeof pb);
}

static void test_grpc(void **state) {
    (void)state;
    uint8_t g[64];
    size_t n = 0;
    g[n++] = 0;
    g[n++] = 0, g[n++] = 0, g[n++] = 0, g[n++] = 3;
    g[n++] = 0x08, g[n++] = 0x96, g[n++] = 0x01;
    g[n++] = 1;
    g[n++] = 0, g[n++] = 0, g[n++] = 0, g[n++] = 2;
    g[n++] = 0xaa, g[n++] = 0xbb;
    out_t o = render(REEL_VIEW_AUTO, "application/grpc", g, n, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_GRPC);
    has(&o, "message 1: 3 bytes\n  1: 150\n");
    has(&o, "message 2: 2 bytes, compressed\n");
    has(&o, "00000000  aa bb");
    free(o.text);
    /* a compressed message (zlib here; gzip is read the same way) */
    uint8_t z[64];
    uLongf zl = sizeof z;
    assert_int_equal(compress2(z, &zl, (const Bytef *)"\x08\x96\x01", 3, 9), Z_OK);
    uint8_t gz[80] = {1, 0, 0, 0, (uint8_t)zl};
    memcpy(gz + 5, z, zl);
    o = render(REEL_VIEW_GRPC, NULL, gz, 5 + zl, 0, 0);
    has(&o, ", compressed\n  (gzip, 3 bytes inflated)\n  1: 150\n");
    free(o.text);
    /* a bomb: inflating stops at 16 MiB for the whole body */
    size_t big = 17u << 20;
    uint8_t *zeros = calloc(1, big);
    uLongf bl = compressBound(big);
    uint8_t *bomb = malloc(bl + 5);
    assert_int_equal(compress2(bomb + 5, &bl, zeros, big, 9), Z_OK);
    bomb[0] = 1;
    bomb[1] = (uint8_t)(bl >> 24), bomb[2] = (uint8_t)(bl >> 16), bomb[3] = (uint8_t)(bl >> 8),
    bomb[4] = (uint8_t)bl;
    o = render(REEL_VIEW_GRPC, NULL, bomb, bl + 5, 0, 0);
    has(&o, "more than the 16777216 bytes left to inflate in this body: shown as hex)");
    free(o.text);
    free(zeros);
    free(bomb);
    o = render(REEL_VIEW_GRPC, NULL, g, 7, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "not gRPC: message at offset 0 says 3 bytes, 2 follow");
    free(o.text);
    o = render(REEL_VIEW_GRPC, NULL, g, 7, 1, 0);
    assert_int_equal(o.shown, REEL_VIEW_GRPC);
    has(&o, "message 1: 3 bytes (cut)");
    free(o.text);
    torture(REEL_VIEW_GRPC, NULL, g, n);
}

static void test_image(void **state) {
    (void)state;
    static const uint8_t png[] = "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\x02\x80\0\0\x01\xe0\x08\x06";
    out_t o = render(REEL_VIEW_AUTO, "image/png", png, sizeof png - 1, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_IMAGE);
    has(&o, "PNG image: 640 x 480 pixels, 8-bit RGBA");
    free(o.text);
    static const uint8_t gif[] = "GIF89a\x10\0\x20\0";
    o = render(REEL_VIEW_IMAGE, NULL, gif, sizeof gif - 1, 0, 0);
    has(&o, "GIF image: 16 x 32 pixels");
    free(o.text);
    static const uint8_t jpg[] = "\xff\xd8\xff\xe0\0\x04JF\xff\xc0\0\x11\x08\x01\x00\x02\x00\x03";
    o = render(REEL_VIEW_IMAGE, NULL, jpg, sizeof jpg - 1, 0, 0);
    has(&o, "JPEG image: 512 x 256 pixels, baseline");
    free(o.text);
    static const uint8_t webp[] = "RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f\x3f\x00\x00\x00";
    o = render(REEL_VIEW_IMAGE, NULL, webp, sizeof webp - 1, 0, 0);
    has(&o, "WebP image: 64 x 1 pixels, lossless");
    free(o.text);
    static const uint8_t badj[] = "\xff\xd8\xff\xe0\xff\xff";
    o = render(REEL_VIEW_IMAGE, NULL, badj, sizeof badj - 1, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "(JPEG ");
    free(o.text);
    o = render(REEL_VIEW_IMAGE, NULL, "hello", 5, 0, 0);
    has(&o, "(not a PNG, JPEG, GIF or WebP image; shown as hex)");
    free(o.text);
    torture(REEL_VIEW_IMAGE, NULL, png, sizeof png - 1);
    torture(REEL_VIEW_IMAGE, NULL, jpg, sizeof jpg - 1);
    torture(REEL_VIEW_IMAGE, NULL, webp, sizeof webp - 1);
}

static void test_raw_hex_escape(void **state) {
    (void)state;
    /* ESC, a C1 CSI (U+009B), a lone continuation byte, CR */
    static const char s[] = "a\033[2Jb\xc2\x9b"
                            "c\x80\r\n\xe2\x9c\x93";
    out_t o = render(REEL_VIEW_RAW, NULL, s, sizeof s - 1, 0, REEL_VIEW_TERM);
    assert_string_equal(o.text, "a\\x1b[2Jb\\xc2\\x9bc\\x80\\x0d\n\xe2\x9c\x93\n");
    free(o.text);
    o = render(REEL_VIEW_RAW, NULL, s, sizeof s - 1, 0, 0); /* piped: as recorded */
    assert_memory_equal(o.text, s, sizeof s - 1);
    free(o.text);
    o = render(REEL_VIEW_HEX, NULL, "AB", 2, 0, 0);
    has(&o, "00000000  41 42");
    free(o.text);
    o = render(REEL_VIEW_AUTO, NULL, NULL, 0, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_RAW);
    assert_string_equal(o.text, "");
    free(o.text);
    /* websocket and msgpack do not crash on a body */
    o = render(REEL_VIEW_WEBSOCKET, "application/json", "{}", 2, 0, 0);
    has(&o, "{}");
    free(o.text);
}

static void test_msgpack(void **state) {
    (void)state;
    /* {"a": [1, -2, 1.5, nil, true], "b": bin 01 02, 3: "x\x1b"} */
    static const uint8_t m[] = {0x83, 0xa1, 'a',  0x95, 0x01, 0xfe, 0xcb, 0x3f, 0xf8,
                                0,    0,    0,    0,    0,    0,    0xc0, 0xc3, 0xa1,
                                'b',  0xc4, 0x02, 0x01, 0x02, 0x03, 0xa2, 'x',  0x1b};
    out_t o = render(REEL_VIEW_AUTO, "application/msgpack", m, sizeof m, 0, REEL_VIEW_TERM);
    assert_int_equal(o.shown, REEL_VIEW_MSGPACK);
    assert_string_equal(o.text,
                        "{\n  \"a\": [\n    1,\n    -2,\n    1.5,\n    null,\n    true\n  ],\n"
                        "  \"b\": bin(2) 0102,\n  3: \"x\\u001b\"\n}\n");
    free(o.text);
    /* an array that claims 4 billion elements: refused before msgpack-c allocates */
    o = render(REEL_VIEW_MSGPACK, NULL, "\xdd\xff\xff\xff\xff\xc0", 6, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "claims 4294967295 elements, 1 bytes follow");
    free(o.text);
    /* empty strings and bins (msgpack-c gives them a NULL pointer) */
    o = render(REEL_VIEW_MSGPACK, NULL, "\x82\xa0\xa0\xa1k\xc4\x00", 7, 0, REEL_VIEW_TERM);
    assert_string_equal(o.text, "{\n  \"\": \"\",\n  \"k\": bin(0) \n}\n");
    free(o.text);
    o = render(REEL_VIEW_MSGPACK, NULL, "\xc1", 1, 0, 0);
    has(&o, "(not msgpack: byte 0xc1 at offset 0; shown as hex)");
    free(o.text);
    /* nesting deeper than msgpack-c reads: refused with a reason */
    uint8_t deep[100];
    memset(deep, 0x91, sizeof deep - 1);
    deep[sizeof deep - 1] = 0xc0;
    o = render(REEL_VIEW_MSGPACK, NULL, deep, sizeof deep, 0, 0);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "not msgpack: ");
    free(o.text);
    torture(REEL_VIEW_MSGPACK, NULL, m, sizeof m);
}

static void test_random(void **state) {
    (void)state;
    /* random bytes through every view */
    uint32_t x = 12345;
    uint8_t b[512];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(round * 7) % sizeof b;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            b[i] = (uint8_t)(x >> 16);
            if (round % 3 == 0)
                b[i] = (uint8_t) "{}[]<>\"'=&%-\r\n:;/*ab"[b[i] % 21];
        }
        for (int k = 0; k < REEL_VIEW_COUNT; k++) {
            out_t o = render((reel_view_kind)k, "multipart/x; boundary=ab", b, n, round & 1,
                             REEL_VIEW_TERM);
            assert_null(strchr(o.text, '\033'));
            free(o.text);
        }
    }
}

/* A part from byte 1048560 of a body: hex addresses from there, and the
 * note names the bytes shown, not "the first N" (the web API's parts). */
static void test_part(void **state) {
    (void)state;
    static const uint8_t b[20] = "0123456789abcdefghij";
    out_t o = {0};
    FILE *f = open_memstream(&o.text, &o.len);
    assert_non_null(f);
    o.shown = reel_view_render_part(REEL_VIEW_HEX, NULL, b, sizeof b, 1048560, 1, 0, NULL, f);
    fclose(f);
    assert_int_equal(o.shown, REEL_VIEW_HEX);
    has(&o, "000ffff0  30 31");
    has(&o, "00100000  67 68 69 6a");
    has(&o, "(cut: the view shows bytes 1048560 to 1048579 of the body)\n");
    hasnt(&o, "first");
    free(o.text);
    f = open_memstream(&o.text, &o.len);
    assert_non_null(f);
    o.shown = reel_view_render_part(REEL_VIEW_RAW, NULL, b, sizeof b, 7, 0, 0, NULL, f);
    fclose(f);
    has(&o, "(the view shows bytes 7 to 26 of the body, to its end)\n");
    free(o.text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),          cmocka_unit_test(test_pick),
        cmocka_unit_test(test_json),           cmocka_unit_test(test_xml_html),
        cmocka_unit_test(test_code),           cmocka_unit_test(test_urlencoded),
        cmocka_unit_test(test_multipart),      cmocka_unit_test(test_protobuf),
        cmocka_unit_test(test_grpc),           cmocka_unit_test(test_image),
        cmocka_unit_test(test_raw_hex_escape), cmocka_unit_test(test_msgpack),
        cmocka_unit_test(test_random),         cmocka_unit_test(test_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
