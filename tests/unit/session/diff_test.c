/* Line diff (session/diff.c): unified output as GNU diff -u writes it
 * (expected texts made with diff -u), scripts that rebuild both sides and
 * are minimal (checked against an LCS table on random inputs), the bounds
 * (max_lines, max_d), and header comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session/diff.h"

static char *unified(const char *a, const char *b, unsigned ctx) {
    reel_diff_t d;
    reel_diff_lines(a, strlen(a), b, strlen(b), 0, 0, &d);
    reel_buf_t out;
    reel_buf_init(&out, 0);
    reel_diff_unified(&d, ctx, &out);
    reel_buf_append(&out, "", 1);
    reel_diff_free(&d);
    return (char *)out.data;
}

static void check(const char *a, const char *b, const char *want) {
    char *got = unified(a, b, 3);
    assert_string_equal(got, want);
    free(got);
}

static void test_gnu_outputs(void **state) {
    (void)state;
    check("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n", "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\n",
          "@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n"
          "@@ -11,3 +11,4 @@\n k\n l\n m\n+n\n");
    check("x\ny", "x\ny\n", "@@ -1,2 +1,2 @@\n x\n-y\n\\ No newline at end of file\n+y\n");
    check("", "one\ntwo\n", "@@ -0,0 +1,2 @@\n+one\n+two\n");
    check("one\ntwo\n", "", "@@ -1,2 +0,0 @@\n-one\n-two\n");
    check("1\n2\n3\n4\n5\n6\n7\n8\n", "1\n2\n3\n5\n6\n7\n8\n",
          "@@ -1,7 +1,6 @@\n 1\n 2\n 3\n-4\n 5\n 6\n 7\n");
    check("same\n", "same\n", "");
    check("", "", "");
    /* two changes 6 equal lines apart (2 * context) share one hunk */
    check("a\n1\n2\n3\n4\n5\n6\nb\n", "A\n1\n2\n3\n4\n5\n6\nB\n",
          "@@ -1,8 +1,8 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n 6\n-b\n+B\n");
    /* context 0 */
    char *got = unified("a\nb\nc\n", "a\nX\nc\n", 0);
    assert_string_equal(got, "@@ -2 +2 @@\n-b\n+X\n");
    free(got);
}

/* Rebuilds a (EQ + DEL) and b (EQ + ADD) from the script. */
static void rebuild(const reel_diff_t *d, int side, reel_buf_t *out) {
    for (size_t i = 0; i < d->n; i++) {
        const reel_diff_line_t *l = &d->v[i];
        if (l->op == (side ? REEL_DIFF_DEL : REEL_DIFF_ADD))
            continue;
        reel_buf_append(out, l->p, l->len);
        if (!l->nonl)
            reel_buf_append(out, "\n", 1);
    }
}

/* Lines of t, as offsets; returns the count. */
static size_t lines(const char *t, const char **v, size_t *len) {
    size_t n = 0, i = 0, tl = strlen(t);
    while (i < tl) {
        const char *nl = strchr(t + i, '\n');
        size_t l = nl ? (size_t)(nl - (t + i)) + 1 : tl - i; /* with the '\n' */
        v[n] = t + i;
        len[n++] = l;
        i += l;
    }
    return n;
}

/* Minimal number of deletions + additions, by an LCS table. */
static size_t min_edits(const char *a, const char *b) {
    const char *va[64], *vb[64];
    size_t la[64], lb[64];
    size_t n = lines(a, va, la), m = lines(b, vb, lb);
    static size_t t[65][65];
    for (size_t i = 0; i <= n; i++)
        for (size_t j = 0; j <= m; j++) {
            if (i == 0 || j == 0)
                t[i][j] = 0;
            else if (la[i - 1] == lb[j - 1] && memcmp(va[i - 1], vb[j - 1], la[i - 1]) == 0)
                t[i][j] = t[i - 1][j - 1] + 1;
            else
                t[i][j] = t[i - 1][j] > t[i][j - 1] ? t[i - 1][j] : t[i][j - 1];
        }
    return n + m - 2 * t[n][m];
}

static void random_text(char *out, unsigned *seed) {
    size_t n = (size_t)(rand_r(seed) % 40), k = 0;
    for (size_t i = 0; i < n; i++) {
        out[k++] = (char)('a' + rand_r(seed) % 4);
        if (rand_r(seed) % 3 == 0)
            out[k++] = 'x';
        out[k++] = '\n';
    }
    if (k && rand_r(seed) % 5 == 0)
        k--; /* no newline at the end */
    out[k] = '\0';
}

static void test_random_minimal(void **state) {
    (void)state;
    unsigned seed = 12345;
    for (int round = 0; round < 3000; round++) {
        char a[200], b[200];
        random_text(a, &seed);
        random_text(b, &seed);
        reel_diff_t d;
        reel_diff_lines(a, strlen(a), b, strlen(b), 0, 0, &d);
        assert_false(d.rough);
        assert_false(d.cut);
        reel_buf_t ra, rb;
        reel_buf_init(&ra, 0);
        reel_buf_init(&rb, 0);
        rebuild(&d, 0, &ra);
        rebuild(&d, 1, &rb);
        assert_int_equal(ra.len, strlen(a));
        assert_memory_equal(ra.data ? (const char *)ra.data : "", a, ra.len);
        assert_int_equal(rb.len, strlen(b));
        assert_memory_equal(rb.data ? (const char *)rb.data : "", b, rb.len);
        assert_int_equal(d.changes, min_edits(a, b));
        reel_buf_free(&ra);
        reel_buf_free(&rb);
        reel_diff_free(&d);
    }
}

static void test_bounds(void **state) {
    (void)state;
    /* max_d: every line differs; the script is rough but still right */
    reel_buf_t a, b;
    reel_buf_init(&a, 0);
    reel_buf_init(&b, 0);
    for (int i = 0; i < 300; i++) {
        reel_buf_printf(&a, "a%d\n", i);
        reel_buf_printf(&b, "b%d\n", i);
    }
    reel_buf_puts(&a, "common\n");
    reel_buf_puts(&b, "common\n");
    reel_diff_t d;
    reel_diff_lines((const char *)a.data, a.len, (const char *)b.data, b.len, 0, 100, &d);
    assert_true(d.rough);
    assert_int_equal(d.changes, 600);
    assert_int_equal(d.n, 601);
    assert_int_equal(d.v[0].op, REEL_DIFF_DEL);
    assert_int_equal(d.v[300].op, REEL_DIFF_ADD);
    assert_int_equal(d.v[600].op, REEL_DIFF_EQ);
    reel_diff_free(&d);
    /* the same with room: minimal, and not rough */
    reel_diff_lines((const char *)a.data, a.len, (const char *)b.data, b.len, 0, 0, &d);
    assert_false(d.rough);
    assert_int_equal(d.changes, 600);
    reel_diff_free(&d);
    /* max_lines: the rest is left out and said */
    reel_diff_lines((const char *)a.data, a.len, (const char *)a.data, a.len, 10, 0, &d);
    assert_true(d.cut);
    assert_int_equal(d.n, 10);
    assert_int_equal(d.changes, 0);
    reel_diff_free(&d);
    reel_buf_free(&a);
    reel_buf_free(&b);
}

#define H(n, v)                                                                                    \
    { n, sizeof n - 1, v, sizeof v - 1 }

static void test_headers(void **state) {
    (void)state;
    reel_header_t a[] = {H("Host", "x"),       H("Accept", "a"), H("Set-Cookie", "1"),
                         H("Set-Cookie", "2"), H("X-Old", "o"),  H("Same", "s")};
    reel_header_t b[] = {H("host", "x"), H("ACCEPT", "b"), H("Set-Cookie", "1"),
                         H("same", "s"), H("X-New", "n"),  H("Set-Cookie", "3")};
    size_t n = 0;
    reel_diff_header_t *v = reel_diff_headers(a, 6, b, 6, &n);
    assert_int_equal(n, 4);
    assert_string_equal(v[0].name, "Accept");
    assert_int_equal(v[0].na, 1);
    assert_string_equal(v[0].a[0], "a");
    assert_string_equal(v[0].b[0], "b");
    assert_string_equal(v[1].name, "Set-Cookie");
    assert_int_equal(v[1].na, 2);
    assert_int_equal(v[1].nb, 2);
    assert_string_equal(v[1].b[1], "3");
    assert_string_equal(v[2].name, "X-Old");
    assert_int_equal(v[2].nb, 0);
    assert_string_equal(v[3].name, "X-New");
    assert_int_equal(v[3].na, 0);
    reel_diff_headers_free(v, n);
    v = reel_diff_headers(a, 6, a, 6, &n);
    assert_int_equal(n, 0);
    assert_null(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gnu_outputs),
        cmocka_unit_test(test_random_minimal),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
