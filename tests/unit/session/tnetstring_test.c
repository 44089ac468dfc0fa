/* Tests for src/session/tnetstring.c: every type, nesting and lookups, the
 * caps, every kind of malformed input with the offset it is reported at,
 * every prefix of valid input (NEED_MORE, never an error), a stream of
 * values fed in two pieces split at every byte, and random mutations (no
 * crash, and what parses re-serializes to the bytes it came from). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "session/tnetstring.h"

/* ---- helpers ------------------------------------------------------------ */

/* Re-serializes t the way mitmproxy writes it (payloads as parsed), so a
 * canonical input must come back byte for byte. */
static void dump(const reel_tns_t *t, reel_buf_t *b) {
    reel_buf_t inner = {0};
    char tag = '?';
    switch (t->type) {
    case REEL_TNS_NULL:
        tag = '~';
        break;
    case REEL_TNS_BOOL:
        reel_buf_puts(&inner, t->i ? "true" : "false");
        tag = '!';
        break;
    case REEL_TNS_INT:
        reel_buf_printf(&inner, "%lld", (long long)t->i);
        tag = '#';
        break;
    case REEL_TNS_FLOAT:
        reel_buf_append(&inner, t->data, t->len); /* the literal as written */
        tag = '^';
        break;
    case REEL_TNS_BYTES:
    case REEL_TNS_STRING:
        reel_buf_append(&inner, t->data, t->len);
        tag = t->type == REEL_TNS_BYTES ? ',' : ';';
        break;
    case REEL_TNS_LIST:
    case REEL_TNS_DICT:
        for (size_t i = 0; i < (t->type == REEL_TNS_DICT ? 2 * t->n : t->n); i++)
            dump(&t->item[i], &inner);
        tag = t->type == REEL_TNS_LIST ? ']' : '}';
        break;
    }
    reel_buf_printf(b, "%zu:", inner.len);
    reel_buf_append(b, inner.data, inner.len);
    reel_buf_append(b, &tag, 1);
    reel_buf_free(&inner);
}

static reel_rc parse(const char *s, size_t n, reel_tns_t **t, size_t *used, reel_err_t *err) {
    reel_err_clear(err);
    return reel_tns_parse((const uint8_t *)s, n, 0, NULL, t, used, err);
}

/* Parses s (whole), checks it re-serializes to itself, returns the tree. */
static reel_tns_t *ok(const char *s) {
    reel_tns_t *t = NULL;
    size_t used = 0;
    reel_err_t err;
    reel_rc rc = parse(s, strlen(s), &t, &used, &err);
    if (rc != REEL_OK)
        fail_msg("%s: %s", s, reel_err_str(&err));
    assert_int_equal(used, strlen(s));
    reel_buf_t b = {0};
    dump(t, &b);
    assert_int_equal(b.len, strlen(s));
    assert_memory_equal(b.data, s, b.len);
    reel_buf_free(&b);
    return t;
}

/* Parses s and expects rc with a message containing want. */
static void bad(const char *s, size_t n, reel_rc want_rc, const char *want) {
    reel_tns_t *t = (reel_tns_t *)1;
    size_t used = 0;
    reel_err_t err;
    reel_rc rc = parse(s, n, &t, &used, &err);
    if (rc != want_rc)
        fail_msg("'%.*s': rc %s, want %s (%s)", (int)n, s, reel_rc_name(rc), reel_rc_name(want_rc),
                 reel_err_str(&err));
    assert_null(t);
    if (want && strstr(reel_err_str(&err), want) == NULL)
        fail_msg("'%.*s': message '%s' lacks '%s'", (int)n, s, reel_err_str(&err), want);
}

/* ---- tests -------------------------------------------------------------- */

static void test_scalars(void **state) {
    (void)state;
    reel_tns_t *t = ok("0:~");
    assert_int_equal(t->type, REEL_TNS_NULL);
    reel_tns_free(t);
    t = ok("4:true!");
    assert_int_equal(t->type, REEL_TNS_BOOL);
    assert_int_equal(t->i, 1);
    reel_tns_free(t);
    t = ok("5:false!");
    assert_int_equal(t->i, 0);
    reel_tns_free(t);
    t = ok("5:12345#");
    assert_int_equal(t->type, REEL_TNS_INT);
    assert_int_equal(t->i, 12345);
    reel_tns_free(t);
    t = ok("2:-7#");
    assert_int_equal(t->i, -7);
    reel_tns_free(t);
    t = ok("19:9223372036854775807#");
    assert_true(t->i == INT64_MAX);
    reel_tns_free(t);
    t = ok("20:-9223372036854775808#");
    assert_true(t->i == INT64_MIN);
    reel_tns_free(t);
    t = ok("18:1796174993.0472376^");
    assert_int_equal(t->type, REEL_TNS_FLOAT);
    assert_true(t->f > 1796174993.047237 && t->f < 1796174993.047238);
    reel_tns_free(t);
    t = ok("5:1e+16^");
    assert_true(t->f == 1e16);
    reel_tns_free(t);
    t = ok("11:hello world,");
    assert_int_equal(t->type, REEL_TNS_BYTES);
    assert_int_equal(t->len, 11);
    assert_memory_equal(t->data, "hello world", 11);
    reel_tns_free(t);
    t = ok("0:,");
    assert_int_equal(t->len, 0);
    reel_tns_free(t);
    t = ok("6:h\xc3\xa9llo;");
    assert_int_equal(t->type, REEL_TNS_STRING);
    assert_true(reel_tns_is_text(t));
    reel_tns_free(t);
    /* bytes may hold anything, the tag characters included */
    static const char bin[] = "5:\x00:]}\xff,";
    reel_tns_t *b = NULL;
    size_t used;
    reel_err_t err;
    assert_int_equal(parse(bin, sizeof bin - 1, &b, &used, &err), REEL_OK);
    assert_int_equal(b->len, 5);
    assert_memory_equal(b->data, "\x00:]}\xff", 5);
    reel_tns_free(b);
}

static void test_containers(void **state) {
    (void)state;
    reel_tns_t *t = ok("0:]");
    assert_int_equal(t->type, REEL_TNS_LIST);
    assert_int_equal(t->n, 0);
    reel_tns_free(t);
    t = ok("0:}");
    assert_int_equal(t->type, REEL_TNS_DICT);
    assert_int_equal(t->n, 0);
    assert_null(reel_tns_get(t, "x"));
    reel_tns_free(t);
    t = ok("18:5:12345#4:true!0:~]");
    assert_int_equal(t->n, 3);
    assert_int_equal(t->item[0].i, 12345);
    assert_int_equal(t->item[1].type, REEL_TNS_BOOL);
    assert_int_equal(t->item[2].type, REEL_TNS_NULL);
    assert_int_equal(t->item[1].off, 11);
    reel_tns_free(t);
    /* nesting, bytes and string keys, lookups */
    const char *s = "56:4:list;16:0:]0:}7:4:1:1#]]]7:version,2:21#4:type;4:http;}";
    t = ok(s);
    assert_int_equal(t->n, 3);
    const reel_tns_t *v = reel_tns_get(t, "version");
    assert_non_null(v);
    assert_int_equal(v->i, 21);
    v = reel_tns_get(t, "type");
    assert_int_equal(v->len, 4);
    assert_memory_equal(v->data, "http", 4);
    v = reel_tns_get(t, "list");
    assert_int_equal(v->type, REEL_TNS_LIST);
    assert_int_equal(v->n, 3);
    assert_int_equal(v->item[2].item[0].item[0].i, 1);
    assert_null(reel_tns_get(t, "typ"));
    assert_null(reel_tns_get(v, "type")); /* not a dict */
    reel_tns_free(t);
    /* many items: the item array grows */
    reel_buf_t in = {0}, body = {0};
    for (int i = 0; i < 1000; i++)
        reel_buf_printf(&body, "%d:%d#", i < 10 ? 1 : i < 100 ? 2 : 3, i);
    reel_buf_printf(&in, "%zu:", body.len);
    reel_buf_append(&in, body.data, body.len);
    reel_buf_puts(&in, "]");
    t = ok((const char *)in.data);
    assert_int_equal(t->n, 1000);
    assert_int_equal(t->item[999].i, 999);
    reel_tns_free(t);
    reel_buf_free(&in);
    reel_buf_free(&body);
}

/* A value followed by more bytes: consumed says where it ended. */
static void test_trailing(void **state) {
    (void)state;
    reel_tns_t *t = NULL;
    size_t used = 0;
    reel_err_t err;
    const char *s = "3:abc,0:~garbage";
    assert_int_equal(parse(s, strlen(s), &t, &used, &err), REEL_OK);
    assert_int_equal(used, 6);
    reel_tns_free(t);
    assert_int_equal(reel_tns_parse((const uint8_t *)s, strlen(s), 6, NULL, &t, &used, &err),
                     REEL_OK);
    assert_int_equal(t->type, REEL_TNS_NULL);
    assert_int_equal(t->off, 6);
    assert_int_equal(used, 3);
    reel_tns_free(t);
    /* an offset past the end is refused */
    assert_int_equal(reel_tns_parse((const uint8_t *)s, 3, 4, NULL, &t, &used, &err), REEL_INVALID);
}

static void test_bad_lengths(void **state) {
    (void)state;
    bad("a:", 2, REEL_CORRUPT, "byte 0: value: expected a length digit, found 'a'");
    bad(":", 1, REEL_CORRUPT, "expected a length digit");
    bad("01:a,", 5, REEL_CORRUPT, "leading zero");
    bad("5x", 2, REEL_CORRUPT, "byte 1: value: expected ':' after the length, found 'x'");
    bad("1234567890123:", 14, REEL_CORRUPT, "longer than 12 digits");
    bad("-1:a,", 5, REEL_CORRUPT, "found '-'");
    /* an item whose length runs past its list */
    bad("5:4:abc]", 8, REEL_CORRUPT, "byte 2: list item: length 4 runs past the end");
    /* an item whose prefix is cut by the end of its list */
    bad("2:12]", 5, REEL_CORRUPT, "byte 2: list item: length prefix cut off");
    /* the right length, the wrong tag position: the payload holds no whole value */
    bad("3:1:a]", 6, REEL_CORRUPT, "byte 2: list item: length 1 runs past");
    bad("12:3:abc,2:xy,x}", 16, REEL_CORRUPT,
        "byte 14: dict key: expected a length digit, found 'x'");
}

static void test_bad_values(void **state) {
    (void)state;
    bad("1:a?", 4, REEL_CORRUPT, "byte 3: value: unknown type tag '?'");
    bad("3:abc#", 6, REEL_CORRUPT, "not an integer literal");
    bad("0:#", 3, REEL_CORRUPT, "not an integer literal");
    bad("1:-#", 4, REEL_CORRUPT, "not an integer literal");
    bad("19:9223372036854775808#", 23, REEL_CORRUPT, "out of range");
    bad("3: 12#", 6, REEL_CORRUPT, "not an integer literal");
    bad("4:True!", 7, REEL_CORRUPT, "not a boolean literal");
    bad("1:x~", 4, REEL_CORRUPT, "null with a payload");
    bad("3:1.x^", 6, REEL_CORRUPT, "not a float literal");
    bad("0:^", 3, REEL_CORRUPT, "not a float literal");
    bad("3: 1.^", 6, REEL_CORRUPT, "not a float literal");
    bad("2:\xc3\x28;", 5, REEL_CORRUPT, "not valid UTF-8");
    bad("3:\xed\xa0\x80;", 6, REEL_CORRUPT, "not valid UTF-8"); /* a surrogate */
    bad("2:\xc0\xaf;", 5, REEL_CORRUPT, "not valid UTF-8");     /* overlong */
    bad("4:1:a,}", 7, REEL_CORRUPT, "dict key without a value");
    /* an error deep inside names its byte */
    bad("7:4:1:ax]]", 10, REEL_CORRUPT, "byte 7: list item: unknown type tag 'x'");
}

static void test_limits(void **state) {
    (void)state;
    /* depth: n nested lists around a null */
    char s[512];
    reel_buf_t b = {0}, inner = {0};
    reel_buf_puts(&inner, "0:~");
    for (int d = 0; d < 40; d++) {
        reel_buf_reset(&b);
        reel_buf_printf(&b, "%zu:", inner.len);
        reel_buf_append(&b, inner.data, inner.len);
        reel_buf_puts(&b, "]");
        reel_buf_reset(&inner);
        reel_buf_append(&inner, b.data, b.len);
    }
    reel_tns_t *t = NULL;
    size_t used;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_tns_parse(b.data, b.len, 0, NULL, &t, &used, &err), REEL_LIMIT);
    assert_non_null(strstr(reel_err_str(&err), "nested deeper than 32"));
    reel_tns_limits_t lim = {.max_depth = 64};
    assert_int_equal(reel_tns_parse(b.data, b.len, 0, &lim, &t, &used, &err), REEL_OK);
    reel_tns_free(t);
    reel_buf_free(&b);
    reel_buf_free(&inner);
    /* nodes */
    snprintf(s, sizeof s, "12:0:~0:~0:~0:~]");
    lim = (reel_tns_limits_t){.max_nodes = 4};
    reel_err_clear(&err);
    assert_int_equal(reel_tns_parse((const uint8_t *)s, strlen(s), 0, &lim, &t, &used, &err),
                     REEL_LIMIT);
    assert_non_null(strstr(reel_err_str(&err), "more than 4 values"));
    lim.max_nodes = 5;
    assert_int_equal(reel_tns_parse((const uint8_t *)s, strlen(s), 0, &lim, &t, &used, &err),
                     REEL_OK);
    reel_tns_free(t);
}

static const char *valid[] = {
    "0:~",
    "5:12345#",
    "11:hello world,",
    "18:1796174993.0472376^",
    "18:5:12345#4:true!0:~]",
    "56:4:list;16:0:]0:}7:4:1:1#]]]7:version,2:21#4:type;4:http;}",
};

/* Every proper prefix of a valid value needs more; the frame says so too
 * until the prefix is whole, then gives the full size. */
static void test_prefixes(void **state) {
    (void)state;
    for (size_t v = 0; v < sizeof valid / sizeof *valid; v++) {
        size_t n = strlen(valid[v]);
        for (size_t k = 0; k < n; k++) {
            reel_tns_t *t = NULL;
            size_t used = 0;
            reel_err_t err;
            reel_rc rc = parse(valid[v], k, &t, &used, &err);
            if (rc != REEL_NEED_MORE)
                fail_msg("%s cut at %zu: %s (%s)", valid[v], k, reel_rc_name(rc),
                         reel_err_str(&err));
            size_t total = 0;
            rc = reel_tns_frame((const uint8_t *)valid[v], k, &total, &err);
            assert_true(rc == REEL_NEED_MORE || (rc == REEL_OK && total == n));
        }
    }
}

/* A stream of all the valid values fed as two pieces, split at every byte:
 * a reader that buffers and parses what is complete gets the same values. */
static void test_every_split(void **state) {
    (void)state;
    reel_buf_t all = {0};
    for (size_t v = 0; v < sizeof valid / sizeof *valid; v++)
        reel_buf_puts(&all, valid[v]);
    for (size_t k = 0; k <= all.len; k++) {
        reel_buf_t in = {0}, out = {0};
        size_t got = 0;
        for (int piece = 0; piece < 2; piece++) {
            if (piece == 0)
                reel_buf_append(&in, all.data, k);
            else
                reel_buf_append(&in, all.data + k, all.len - k);
            for (;;) {
                size_t total = 0, used = 0;
                reel_err_t err;
                reel_err_clear(&err);
                reel_rc rc = reel_tns_frame(in.data, in.len, &total, &err);
                if (rc == REEL_NEED_MORE || (rc == REEL_OK && total > in.len))
                    break;
                assert_int_equal(rc, REEL_OK);
                reel_tns_t *t = NULL;
                rc = reel_tns_parse(in.data, in.len, 0, NULL, &t, &used, &err);
                assert_int_equal(rc, REEL_OK);
                assert_int_equal(used, total);
                dump(t, &out);
                reel_tns_free(t);
                reel_buf_consume(&in, used);
                got++;
            }
        }
        assert_int_equal(got, sizeof valid / sizeof *valid);
        assert_int_equal(in.len, 0);
        assert_int_equal(out.len, all.len);
        assert_memory_equal(out.data, all.data, all.len);
        reel_buf_free(&in);
        reel_buf_free(&out);
    }
    reel_buf_free(&all);
}

/* Random byte flips, cuts and insertions of valid input: never a crash or
 * an out-of-bounds read (ASan builds), and anything that parses
 * re-serializes within the bytes it consumed. */
static void test_mutations(void **state) {
    (void)state;
    srand(12345);
    const char *base = valid[5];
    size_t n = strlen(base);
    static const char alphabet[] = "0123456789:,;#^!~]}x-";
    for (int iter = 0; iter < 20000; iter++) {
        char buf[128];
        memcpy(buf, base, n);
        size_t len = n;
        int edits = 1 + rand() % 3;
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)rand() % len;
            switch (rand() % 3) {
            case 0:
                buf[at] = alphabet[rand() % (int)(sizeof alphabet - 1)];
                break;
            case 1:
                len = at;
                break;
            default:
                if (len + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = alphabet[rand() % (int)(sizeof alphabet - 1)];
                    len++;
                }
            }
            if (len == 0)
                break;
        }
        reel_tns_t *t = NULL;
        size_t used = 0;
        reel_err_t err;
        reel_rc rc = parse(buf, len, &t, &used, &err);
        if (rc == REEL_OK) {
            assert_true(used <= len);
            reel_buf_t b = {0};
            dump(t, &b);
            /* ints may be re-spelled ("+1" -> "1"): only the size is bounded */
            assert_true(b.len <= used + 64);
            reel_buf_free(&b);
            reel_tns_free(t);
        } else {
            assert_null(t);
            assert_true(rc == REEL_NEED_MORE || rc == REEL_CORRUPT || rc == REEL_LIMIT);
            if (rc != REEL_NEED_MORE)
                assert_true(strstr(reel_err_str(&err), "byte ") != NULL);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),    cmocka_unit_test(test_containers),
        cmocka_unit_test(test_trailing),   cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_bad_values), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_prefixes),   cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
