/* libFuzzer harness: export's redaction (src/session/redact.h), which
 * takes hostile bytes from a recorded flow and must never let a secret out
 * nor blow up on nesting (URLs percent-encoded inside query values,
 * fragments, userinfo, JSON at any depth, quotes that close nothing).
 *
 * Input: 1 control byte, then the text.
 *   c[0] bits 0-2  what the text is: a request target or URL, an
 *                  urlencoded list, a body (its Content-Type by bits
 *                  3-5: none, application/json,
 *                  application/x-www-form-urlencoded, text/event-stream,
 *                  multipart with a boundary "b" or "b c", text/xml,
 *                  text/html; for the second body kind YAML, properties,
 *                  SOAP, GraphQL, multipart with an empty boundary,
 *                  "b c", NDJSON, text/html), a
 *                  header value (Location, Authorization, Cookie,
 *                  Set-Cookie, X-Api-Key, Refresh, X-Fuzz or Link by
 *                  bits 3-5), a note, free text
 *        bit 6     an extra key word ("fuzzkey") and header (X-Fuzz)
 *        bit 7     planted: the text is the parts of a body or note that
 *                  holds a URL with a secret (see plant() below)
 * Checks, besides memory safety (every call gets a heap buffer of exactly
 * the text's bytes) and libFuzzer's time limit per input (linear scans):
 * - an output is NUL-terminated at its length;
 * - something said replaced changed the text: a value redacted already
 *   ("token=REDACTED", "\"token\": \"REDACTED\"") is no replacement,
 *   else an export of a redacted export would count it again (header
 *   values whose whole value is replaced are the exception: they are
 *   written as the marker whatever they held);
 * - (no fixed-point check on any input: a second pass over the output can
 *   read it differently on garbage input, a token holding '/' or '='
 *   replaced moving where it sees a URL's authority or a pair's end, a
 *   JWT's minimum length met by the marker; the inputs where it found real
 *   gaps, a bearer token cut at an inner '=', a bearer token in a nested
 *   query's key, a URL value given the rules for text whole, are kept
 *   in regress/redact-*)
 * - planted: the secret is gone, a JSON body is still JSON that has it
 *   nowhere (escaped or not), the text after a URL in CSS, a Markdown
 *   link or a template string is as it was, byte for byte, and a second
 *   pass finds nothing to replace;
 * - an output is at most a bounded multiple of the input (re-encoding a
 *   nested URL may escape every byte, three times). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/redact.h"

static const char *const types[] = {NULL,
                                    "application/json",
                                    "application/x-www-form-urlencoded",
                                    "text/event-stream",
                                    "multipart/form-data; boundary=b",
                                    "multipart/mixed; boundary=\"b c\"",
                                    "text/xml",
                                    "text/html"};
/* the bodies of c[0] & 7 == 3 (5 and 7 as above) */
static const char *const types3[] = {"application/x-yaml",
                                     "text/x-java-properties",
                                     "application/soap+xml",
                                     "application/graphql",
                                     "multipart/form-data; boundary=",
                                     "multipart/mixed; boundary=\"b c\"",
                                     "application/x-ndjson",
                                     "text/html"};
static const char *const headers[] = {"Location",  "Authorization", "Cookie", "Set-Cookie",
                                      "X-Api-Key", "Refresh",       "X-Fuzz", "Link"};

static int redact(const reel_redact_t *r, uint8_t c, const char *s, size_t n, reel_redacted_t *o) {
    switch (c & 7) {
    case 0:
        return reel_redact_target(r, s, n, o);
    case 1:
        return reel_redact_urlencoded(r, s, n, o);
    case 2:
    case 3:
        return reel_redact_body(r, ((c & 7) == 2 ? types : types3)[(c >> 3) & 7],
                                (const uint8_t *)s, n, o);
    case 4: {
        const char *h = headers[(c >> 3) & 7];
        return reel_redact_header(r, h, strlen(h), s, n, o);
    }
    case 5:
    case 6:
        return reel_redact_note(r, s, n, o);
    default:
        return reel_redact_text(r, s, n, o);
    }
}

/* ---- planted secrets ---- */

#define CANARY "CANARY" /* upper case: no byte of the parts below makes it */

/* The byte p as a character of a URL: lower case letters, digits and the
 * punctuation URLs hold, so that neither a bearer token nor a JWT (which
 * need a space or upper case) nor a quote ends or hides the URL by
 * accident; with space, for prose around it. */
static char url_char(uint8_t p, int space) {
    static const char set[] = "abcdefghijklmnopqrstuvwxyz0123456789/?#&=;%:@.-_~+,!()[]$* ";
    return set[p % (sizeof set - 1 - (space ? 0 : 1))];
}

static void put_char(reel_buf_t *b, char c, uint8_t style) {
    /* JSON's ways to write a character: "\/" (PHP, JavaScript), "\u0026"
     * (Go escapes & < >), "\u003A" for the delimiters */
    if (c == '/' && (style & 8))
        reel_buf_puts(b, "\\/");
    else if ((style & 16) && strchr("&=?", c) != NULL)
        reel_buf_printf(b, "\\u%04x", (unsigned)c);
    else if ((style & 32) && strchr(";#:", c) != NULL)
        reel_buf_printf(b, "\\u%04X", (unsigned)c);
    else
        reel_buf_append(b, &c, 1);
}

/* Text that a URL stands in, before it and after it: CSS, a Markdown
 * link, a script's template string (a relative URL after its backtick).
 * What follows the URL must come out byte for byte. */
static const char *const wraps[][2] = {
    {"a{background:url(https://h.test/", ");}b{color:red}"},
    {"[log](https://h.test/", ")**bold** and more"},
    {"fetch(`/api/", "`).then(r=>r.json())"},
};

/* A body or note planted with a secret in a URL, from the text's parts
 * (split at 0xff bytes: prose before, path, query, what follows the
 * secret in the URL, prose after) and a style byte (its first): bits 0-1
 * a JSON body {"v": "<prose> <URL> <prose>"}, a text/plain body, a form
 * v=<all of it percent-encoded>, a note in JSON with a syntax error; bit
 * 2 a URL "/path?..." alone instead of "https://h.test/path?..." in
 * prose; bits 3-5 JSON escapes (put_char), "\/" in a text body too. The
 * URL's query ends in "&token=CANARY" and what follows; the path and
 * the query before it hold no ')' or ']', which would end the URL before
 * the secret (url_end in redact.c). Bits 6-7, when
 * not 0, put the URL in wraps[] instead of prose (no prose after it, no
 * bracket opened in the URL, so that the wrap's closes it) and bit 2 then
 * puts the secret in a path parameter ";jsessionid=CANARY" with no query
 * before it. *kind: 0 JSON, 1 text, 2 form, 3 note; *tail: the text after
 * the URL as written, or NULL. */
static void plant(const uint8_t *t, size_t n, reel_buf_t *b, int *kind, reel_buf_t *tail) {
    uint8_t style = n > 0 ? t[0] : 0;
    int wrap = style >> 6;
    reel_buf_t part[5];
    for (int k = 0; k < 5; k++)
        reel_buf_init(&part[k], 0);
    int k = 0;
    for (size_t i = 1; i < n; i++) {
        if (t[i] == 0xff && k < 4) {
            k++;
            continue;
        }
        char c = url_char(t[i], k == 0 || k == 4);
        /* a closing bracket before the secret ends the URL there (one
         * no '(' in it opened); in a wrap, an opening one would take the
         * wrap's closing one into the URL */
        if ((k == 1 || k == 2) && (c == ')' || c == ']'))
            c = '_';
        if (wrap && k >= 1 && k <= 3 && (c == '(' || c == '['))
            c = '_';
        reel_buf_append(&part[k], &c, 1);
    }
    *kind = style & 3;
    int alone = (style & 4) != 0;
    reel_buf_t v; /* the text the URL is in, unescaped */
    reel_buf_init(&v, 0);
    size_t tail_at = 0;
    if (wrap) {
        reel_buf_append(&v, part[0].data, part[0].len);
        reel_buf_puts(&v, " ");
        reel_buf_puts(&v, wraps[wrap - 1][0]);
        reel_buf_append(&v, part[1].data, part[1].len);
        if (alone) {
            reel_buf_puts(&v, ";jsessionid=" CANARY);
        } else {
            reel_buf_puts(&v, "?");
            reel_buf_append(&v, part[2].data, part[2].len);
            reel_buf_puts(&v, "&token=" CANARY);
        }
        reel_buf_append(&v, part[3].data, part[3].len);
        tail_at = v.len;
        reel_buf_puts(&v, wraps[wrap - 1][1]);
    } else if (!alone) {
        reel_buf_append(&v, part[0].data, part[0].len);
        reel_buf_puts(&v, " https://h.test");
    }
    if (!wrap) {
        reel_buf_puts(&v, "/");
        reel_buf_append(&v, part[1].data, part[1].len);
        reel_buf_puts(&v, "?");
        reel_buf_append(&v, part[2].data, part[2].len);
        reel_buf_puts(&v, "&token=" CANARY);
        reel_buf_append(&v, part[3].data, part[3].len);
    }
    if (!alone && !wrap) {
        reel_buf_puts(&v, " ");
        reel_buf_append(&v, part[4].data, part[4].len);
    }
    /* a form's value is one value, read as a URL whole when it has a
     * query: what follows the secret in it is the secret's */
    if (wrap && *kind != 2) {
        for (size_t i = tail_at; i < v.len; i++)
            put_char(tail, (char)v.data[i], *kind == 1 ? style & 8 : style);
        if (*kind != 1)
            reel_buf_puts(tail, *kind == 0 ? "\"}" : "\",}");
    }
    if (*kind == 2) {
        reel_buf_puts(b, "v=");
        for (size_t i = 0; i < v.len; i++)
            reel_buf_printf(b, "%%%02X", v.data[i]);
    } else {
        if (*kind != 1)
            reel_buf_puts(b, "{\"v\": \"");
        for (size_t i = 0; i < v.len; i++)
            put_char(b, (char)v.data[i], *kind == 1 ? style & 8 : style);
        if (*kind != 1)
            reel_buf_puts(b, *kind == 0 ? "\"}" : "\",}");
    }
    reel_buf_free(&v);
    for (k = 0; k < 5; k++)
        reel_buf_free(&part[k]);
}

static int redact_planted(const reel_redact_t *r, int kind, const char *s, size_t n,
                          reel_redacted_t *o) {
    static const char *const ct[] = {"application/json", "text/plain",
                                     "application/x-www-form-urlencoded"};
    if (kind == 3)
        return reel_redact_note(r, s, n, o);
    return reel_redact_body(r, ct[kind], (const uint8_t *)s, n, o);
}

static void check_planted(const reel_redact_t *r, const uint8_t *t, size_t n) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_t tail;
    reel_buf_init(&tail, 0);
    int kind;
    plant(t, n, &b, &kind, &tail);
    const char *in = (const char *)b.data;
    reel_redacted_t o = {0}, o2 = {0};
    json_error_t err;
    if (kind == 0) {
        json_t *doc = json_loadb(in, b.len, 0, &err);
        FUZZ_CHECK(doc != NULL, "planted JSON does not parse: %s: %.*s", err.text, (int)b.len, in);
        json_decref(doc);
    }
    FUZZ_CHECK(redact_planted(r, kind, in, b.len, &o), "nothing replaced in %.*s", (int)b.len, in);
    FUZZ_CHECK(strstr(o.data, CANARY) == NULL, "the secret stayed:\n in  %.*s\n out %s", (int)b.len,
               in, o.data);
    if (kind == 0) {
        json_t *doc = json_loadb(o.data, o.len, 0, &err);
        FUZZ_CHECK(doc != NULL, "redacted JSON does not parse (%s):\n in  %.*s\n out %s", err.text,
                   (int)b.len, in, o.data);
        const char *v = json_string_value(json_object_get(doc, "v"));
        FUZZ_CHECK(v != NULL && strstr(v, CANARY) == NULL, "the secret stayed, escaped: %s",
                   o.data);
        json_decref(doc);
    }
    FUZZ_CHECK(tail.len == 0 || (o.len >= tail.len &&
                                 memcmp(o.data + o.len - tail.len, tail.data, tail.len) == 0),
               "the text after the URL is not as it was (%.*s):\n in  %.*s\n out %s", (int)tail.len,
               (const char *)tail.data, (int)b.len, in, o.data);
    int again = redact_planted(r, kind, o.data, o.len, &o2);
    FUZZ_CHECK(!again, "a second pass replaced more:\n in  %.*s\n out %s\n out2 %s", (int)b.len, in,
               o.data, o2.data);
    free(o.data);
    reel_buf_free(&b);
    reel_buf_free(&tail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 64 * 1024)
        return 0;
    uint8_t c = data[0];
    size_t n = size - 1;
    char *text = reel_malloc(n ? n : 1);
    memcpy(text, data + 1, n);
    reel_redact_t *r = reel_redact_new();
    if (c & 0x40) {
        reel_redact_add_key(r, "fuzzkey");
        reel_redact_add_header(r, "X-Fuzz");
    }
    if (c & 0x80) {
        check_planted(r, data + 1, n);
        reel_redact_free(r);
        free(text);
        return 0;
    }
    reel_redacted_t o1 = {0};
    if (redact(r, c, text, n, &o1)) {
        FUZZ_CHECK(o1.data != NULL && o1.data[o1.len] == '\0', "output not NUL-terminated");
        FUZZ_CHECK(o1.len <= 9 * n + 64, "output %zu bytes from %zu", o1.len, n);
        /* headers written as the marker whatever they held: Authorization,
         * Cookie, Set-Cookie, X-Api-Key, X-Fuzz when it is listed */
        int h = (c >> 3) & 7;
        int whole = (c & 7) == 4 && ((h >= 1 && h <= 4) || (h == 6 && (c & 0x40)));
        FUZZ_CHECK(whole || o1.len != n || memcmp(o1.data, text, n) != 0,
                   "said replaced, but the same: %.*s", (int)n, text);
        free(o1.data);
    }
    reel_redact_free(r);
    free(text);
    return 0;
}
