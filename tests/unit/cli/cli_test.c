/* Tests for the shared helpers of src/cli/cli.c: the escaper that keeps
 * captured bytes from driving a terminal (every split of its input gives
 * the same output), cutting to a width, the getopt wrapper that takes
 * negative numbers as positional arguments, and the flow id parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/cli.h"

/* p[0..n) through the streaming writer, fed in pieces cut at `cuts`
 * (ascending offsets, -1 terminated). Owned. */
static char *stream(const char *p, size_t n, int flags, const int *cuts) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    reel_cli_esc_t e = {.flags = flags};
    size_t at = 0;
    for (; cuts && *cuts >= 0; cuts++) {
        reel_cli_esc_write(&e, f, p + at, (size_t)*cuts - at);
        at = (size_t)*cuts;
    }
    reel_cli_esc_write(&e, f, p + at, n - at);
    reel_cli_esc_end(&e, f);
    fclose(f);
    return buf;
}

static void expect(const char *in, int flags, const char *want) {
    size_t n = strlen(in);
    char *got = reel_cli_escaped(in, n, flags);
    assert_string_equal(got, want);
    free(got);
    /* The same output for the input split at every pair of places. */
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j++) {
            int cuts[] = {(int)i, (int)j, -1};
            got = stream(in, n, flags, cuts);
            if (strcmp(got, want) != 0)
                fail_msg("split at %zu,%zu: '%s' != '%s'", i, j, got, want);
            free(got);
        }
}

static void test_escape(void **state) {
    (void)state;
    const int E = REEL_CLI_ESC, L = REEL_CLI_ESC | REEL_CLI_ESC_LINES;
    /* The attack of issue 9: retitle the window, clear the screen. */
    expect("a\x1b]0;pwned\x07\x1b[2Jb", E, "a\\x1b]0;pwned\\x07\\x1b[2Jb");
    expect("a\x1b]0;pwned\x07\x1b[2Jb", 0, "a\x1b]0;pwned\x07\x1b[2Jb");
    /* One line: every C0 control, DEL; lines: LF, tab, CR LF kept. */
    expect("x\ty\nz\r\n\x7f", E, "x\\x09y\\x0az\\x0d\\x0a\\x7f");
    expect("x\ty\nz\r\n\x7f", L, "x\ty\nz\r\n\\x7f");
    expect("over\rwrite", L, "over\\x0dwrite");
    expect("end\r", L, "end\\x0d");
    /* UTF-8 passes; C1 controls (CSI is U+009B) and broken UTF-8 do not. */
    expect("caf\xc3\xa9 \xe2\x80\xa6 \xf0\x9f\x98\x80", E,
           "caf\xc3\xa9 \xe2\x80\xa6 \xf0\x9f\x98\x80");
    expect("a\xc2\x9b"
           "2Jb",
           E, "a\\xc2\\x9b2Jb");
    expect("\x9b"
           "2J",
           E, "\\x9b2J");
    expect("\xe2\x80", E, "\\xe2\\x80");
    expect("\xc0\xaf \xed\xa0\x80", E, "\\xc0\\xaf \\xed\\xa0\\x80");
    expect("\xe2\x80"
           "A",
           E, "\\xe2\\x80A");
    expect("", E, "");
}

static void test_cut(void **state) {
    (void)state;
    char *s = reel_cli_cut("https://example.test/long/path", 12);
    assert_string_equal(s, "https://exa\xe2\x80\xa6");
    assert_int_equal(reel_cli_columns(s), 12);
    free(s);
    s = reel_cli_cut("short", 12);
    assert_string_equal(s, "short");
    free(s);
    s = reel_cli_cut("caf\xc3\xa9s", 4);
    assert_string_equal(s, "caf\xe2\x80\xa6");
    free(s);
    s = reel_cli_cut("exact", 5);
    assert_string_equal(s, "exact");
    free(s);
}

static int parse(int argc, char **argv, char *got, size_t got_size) {
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'n'}, {"json", no_argument, NULL, 'j'}, {0}};
    reel_cli_getopt_reset();
    opterr = 0;
    int c;
    got[0] = '\0';
    while ((c = reel_cli_getopt(argc, argv, "hn:", opts)) != -1) {
        size_t k = strlen(got);
        snprintf(got + k, got_size - k, "%c%s%s;", c, optarg ? "=" : "", optarg ? optarg : "");
    }
    for (int i = optind; i < argc; i++) {
        size_t k = strlen(got);
        snprintf(got + k, got_size - k, "[%s]", argv[i]);
    }
    return optind;
}

static void test_getopt_negative(void **state) {
    (void)state;
    char got[256];
    char *a1[] = {"config", "S", "set", "body_limit", "-5", "--json", NULL};
    parse(6, a1, got, sizeof got);
    assert_string_equal(got, "j;[S][set][body_limit][-5]");
    char *a2[] = {"flow", "S", "-1", NULL};
    parse(3, a2, got, sizeof got);
    assert_string_equal(got, "[S][-1]");
    /* The value of an option that takes one stays its value. */
    char *a3[] = {"flows", "--limit", "-5", "S", NULL};
    parse(4, a3, got, sizeof got);
    assert_string_equal(got, "n=-5;[S]");
    char *a4[] = {"flows", "-n", "-5", "S", "--lim", "-2", NULL};
    parse(6, a4, got, sizeof got);
    assert_string_equal(got, "n=-5;n=-2;[S]");
    /* Other options are still options; unknown ones still '?'. */
    char *a5[] = {"flows", "S", "-x", NULL};
    parse(3, a5, got, sizeof got);
    assert_string_equal(got, "?;[S]");
    char *a6[] = {"flows", "--", "-7", "S", NULL};
    parse(4, a6, got, sizeof got);
    assert_string_equal(got, "[-7][S]");
}

/* One flow id rule for every subcommand: ASCII digits only, 1 to INT64_MAX. */
static void test_flow_id(void **state) {
    (void)state;
    uint64_t id = 0;
    assert_int_equal(reel_cli_parse_flow_id("1", &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(reel_cli_parse_flow_id("007", &id), 0);
    assert_int_equal(id, 7);
    assert_int_equal(reel_cli_parse_flow_id("9223372036854775807", &id), 0);
    assert_int_equal(id, (uint64_t)INT64_MAX);
    /* strtoull took the first five as 1 (or as a huge number for "-1") */
    const char *bad[] = {" 1",
                         "+1",
                         "-1",
                         "1 ",
                         "\t1",
                         "0",
                         "00",
                         "",
                         "1x",
                         "0x1",
                         "1-2",
                         "9223372036854775808",
                         "18446744073709551616",
                         "1.0",
                         NULL};
    for (const char **b = bad; *b; b++) {
        id = 42;
        if (reel_cli_parse_flow_id(*b, &id) != -1)
            fail_msg("'%s' taken as flow %llu", *b, (unsigned long long)id);
        assert_int_equal(id, 42); /* untouched */
    }
    assert_int_equal(reel_cli_parse_flow_id(NULL, &id), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_id),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_getopt_negative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
