/* Tests for src/session/query.c over a recorded session: keyset and offset
 * paging in every sort order (every flow once, in order), filters (index
 * and spool terms), since, counts, the flow row and its JSON, the summary,
 * notes, tags and marks per id and per filter with their counts, the config
 * overlay, and bad input (unknown ids, bad filters with their column, bad
 * page sizes, bad tags and notes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "session/config.h"
#include "session/query.h"
#include "session/recorder.h"
#include "session/session.h"
#include "unit/testutil.h"

#define NFLOWS 61

/* What each flow is, to compute the expected answers independently. */
typedef struct {
    int64_t id;
    int64_t start_us;
    char host[16];  /* "" = NULL in the index */
    int64_t status; /* REEL_QUERY_NULL = none */
    int needle;     /* response body holds "needle" */
} model_t;

static model_t M[NFLOWS];
static char *home;
static reel_session_t *sess;

static void exec(const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(reel_session_db(sess), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static void record_one(reel_recorder_t *r, int i) {
    model_t *m = &M[i];
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .client_addr = "127.0.0.1:5000"};
    reel_rflow_t *f = reel_recorder_flow_start(r, &info);
    m->id = (int64_t)reel_rflow_id(f);
    snprintf(m->host, sizeof m->host, "h%d.test", (i * 7) % 5);
    char target[32];
    snprintf(target, sizeof target, "/p/%d", i);
    reel_request_head_t rq = {.method = i % 2 ? "GET" : "POST",
                              .scheme = "http",
                              .host = m->host,
                              .port = 80,
                              .target = target,
                              .http_version = "HTTP/1.1"};
    reel_recorder_request_head(f, &rq);
    if (i % 6 == 5) { /* no response: status NULL */
        m->status = REEL_QUERY_NULL;
        reel_recorder_flow_error(f, "connection reset", 0);
        return;
    }
    m->status = i % 4 == 0 ? 404 : i % 4 == 1 ? 200 : 301 + i % 3;
    reel_response_head_t rs = {
        .status = (uint32_t)m->status, .reason = "R", .http_version = "HTTP/1.1"};
    reel_recorder_response_head(f, &rs);
    m->needle = i % 3 == 0;
    char body[64];
    int n = snprintf(body, sizeof body, "body %d %s", i, m->needle ? "a needle here" : "hay");
    reel_recorder_response_body(f, body, (size_t)n);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
}

static int setup(void **state) {
    (void)state;
    home = reel_test_tmpdir("query");
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(home, "s", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &sess, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(sess, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    for (int i = 0; i < NFLOWS; i++)
        record_one(r, i);
    if (reel_recorder_close(r, &err) != REEL_OK)
        fail_msg("close: %s", reel_err_str(&err));
    /* Start times with ties (four flows per value, not in id order) and
     * some flows without a host, so that sorts must break ties by id and
     * place NULLs. */
    for (int i = 0; i < NFLOWS; i++) {
        model_t *m = &M[i];
        m->start_us = 1000000 * (int64_t)((i * 13) % 16);
        if (i % 8 == 3)
            m->host[0] = '\0';
        char *sql =
            reel_asprintf("UPDATE flows SET start_us = %lld, host = %s%s%s WHERE id = %lld",
                          (long long)m->start_us, m->host[0] ? "'" : "",
                          m->host[0] ? m->host : "NULL", m->host[0] ? "'" : "", (long long)m->id);
        exec(sql);
        free(sql);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    reel_session_close(sess);
    reel_test_rm_rf(home);
    free(home);
    return 0;
}

/* ---- the model's answers ---- */

static reel_query_sort g_sort;
static int g_desc;

/* NULL (REEL_QUERY_NULL or "") sorts first ascending, as in SQLite. */
static int cmp_model(const void *pa, const void *pb) {
    const model_t *a = pa, *b = pb;
    int c = 0;
    switch (g_sort) {
    case REEL_QUERY_SORT_ID:
        break;
    case REEL_QUERY_SORT_START:
        c = a->start_us < b->start_us ? -1 : a->start_us > b->start_us;
        break;
    case REEL_QUERY_SORT_HOST:
        if (!a->host[0] || !b->host[0])
            c = (a->host[0] != 0) - (b->host[0] != 0);
        else
            c = strcmp(a->host, b->host);
        break;
    case REEL_QUERY_SORT_STATUS:
        c = a->status < b->status ? -1 : a->status > b->status;
        break;
    }
    if (c == 0)
        c = a->id < b->id ? -1 : a->id > b->id;
    return g_desc ? -c : c;
}

/* The ids a query should give, in order; returns how many. pick: which
 * flows match (NULL: all). */
static size_t expect(reel_query_sort sort, int desc, int (*pick)(const model_t *), int64_t *out) {
    model_t v[NFLOWS];
    size_t n = 0;
    for (int i = 0; i < NFLOWS; i++)
        if (pick == NULL || pick(&M[i]))
            v[n++] = M[i];
    g_sort = sort;
    g_desc = desc;
    qsort(v, n, sizeof v[0], cmp_model);
    for (size_t i = 0; i < n; i++)
        out[i] = v[i].id;
    return n;
}

/* Pages through q with the keyset cursor (or offset) and returns every id
 * seen in order. Each page but the last must be full and say `more`. */
static size_t page_all(reel_query_opts_t q, int use_offset, int64_t *out) {
    size_t n = 0;
    for (int pages = 0;; pages++) {
        assert_true(pages <= NFLOWS + 1);
        reel_query_page_t page;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_query_flows(sess, &q, &page, &err) != REEL_OK)
            fail_msg("page: %s", reel_err_str(&err));
        for (size_t i = 0; i < page.n; i++) {
            assert_true(n < NFLOWS);
            out[n++] = page.rows[i].id;
        }
        int more = page.more;
        if (more)
            assert_int_equal(page.n, q.limit);
        if (page.n)
            q.after_id = page.rows[page.n - 1].id;
        reel_query_page_free(&page);
        if (!more)
            break;
        if (use_offset) {
            q.after_id = 0;
            q.offset += q.limit;
        }
    }
    return n;
}

static void assert_ids(const int64_t *want, size_t nwant, const int64_t *got, size_t ngot) {
    assert_int_equal(ngot, nwant);
    for (size_t i = 0; i < nwant; i++)
        if (want[i] != got[i])
            fail_msg("position %zu: want flow %lld, got %lld", i, (long long)want[i],
                     (long long)got[i]);
}

/* ---- paging and sorting ---- */

static void test_keyset_every_sort(void **state) {
    (void)state;
    const size_t sizes[] = {1, 4, 7, NFLOWS, REEL_QUERY_PAGE_MAX};
    for (int sort = REEL_QUERY_SORT_ID; sort <= REEL_QUERY_SORT_STATUS; sort++)
        for (int desc = 0; desc < 2; desc++)
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                int64_t want[NFLOWS], got[NFLOWS];
                size_t nw = expect((reel_query_sort)sort, desc, NULL, want);
                reel_query_opts_t q = {
                    .sort = (reel_query_sort)sort, .desc = desc, .limit = sizes[k]};
                size_t ng = page_all(q, 0, got);
                assert_ids(want, nw, got, ng);
                ng = page_all(q, 1, got); /* the same with limit/offset */
                assert_ids(want, nw, got, ng);
            }
}

static int has_needle(const model_t *m) {
    return m->needle;
}

static int host_h1(const model_t *m) {
    return strcmp(m->host, "h1.test") == 0;
}

static int no_status(const model_t *m) {
    return m->status == REEL_QUERY_NULL;
}

static int late(const model_t *m) {
    return m->start_us >= 9000000;
}

static void test_filter_paging(void **state) {
    (void)state;
    struct {
        const char *filter;
        int (*pick)(const model_t *);
    } cases[] = {{"~d h1", host_h1}, {"~bs needle", has_needle}, {"!~s", no_status}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int sort = REEL_QUERY_SORT_ID; sort <= REEL_QUERY_SORT_STATUS; sort++)
            for (int desc = 0; desc < 2; desc++) {
                int64_t want[NFLOWS], got[NFLOWS];
                size_t nw = expect((reel_query_sort)sort, desc, cases[c].pick, want);
                assert_true(nw > 0 && nw < NFLOWS);
                reel_query_opts_t q = {.filter = cases[c].filter,
                                       .sort = (reel_query_sort)sort,
                                       .desc = desc,
                                       .limit = 3};
                assert_ids(want, nw, got, page_all(q, 0, got));
                assert_ids(want, nw, got, page_all(q, 1, got));
                /* the same through the streaming call and the id list */
                int64_t *ids = NULL;
                size_t n = 0;
                q.limit = 0;
                reel_err_t err;
                reel_err_clear(&err);
                assert_int_equal(reel_query_ids(sess, &q, &ids, &n, &err), REEL_OK);
                assert_ids(want, nw, ids, n);
                free(ids);
                int64_t count = 0;
                assert_int_equal(reel_query_count(sess, &q, &count, &err), REEL_OK);
                assert_int_equal(count, (int64_t)nw);
            }
}

static void test_since_and_count(void **state) {
    (void)state;
    int64_t want[NFLOWS], got[NFLOWS];
    size_t nw = expect(REEL_QUERY_SORT_START, 0, late, want);
    reel_query_opts_t q = {
        .since_us = 9000000, .has_since = 1, .sort = REEL_QUERY_SORT_START, .limit = 5};
    assert_ids(want, nw, got, page_all(q, 0, got));
    int64_t all = 0;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_query_count(sess, NULL, &all, &err), REEL_OK);
    assert_int_equal(all, NFLOWS);
    q.limit = 0; /* one count(*) */
    assert_int_equal(reel_query_count(sess, &q, &all, &err), REEL_OK);
    assert_int_equal(all, (int64_t)nw);
    q.filter = "~bs needle"; /* rows read from the spool */
    assert_int_equal(reel_query_count(sess, &q, &all, &err), REEL_OK);
    int64_t both = 0;
    for (int i = 0; i < NFLOWS; i++)
        both += late(&M[i]) && has_needle(&M[i]);
    assert_int_equal(all, both);
    q.limit = 2; /* limit applies */
    assert_int_equal(reel_query_count(sess, &q, &all, &err), REEL_OK);
    assert_int_equal(all, both < 2 ? both : 2);
}

typedef struct {
    atomic_int *cancel;
    int rows;
} cancel_ctx_t;

static int cancel_after_three(void *ctx, const reel_query_flow_t *row) {
    (void)row;
    cancel_ctx_t *c = ctx;
    if (++c->rows == 3)
        atomic_store(c->cancel, 1);
    return 0;
}

/* A walk whose client has left (the web server sets the flag) stops at its
 * next row with REEL_INTERRUPTED; one cancelled before it starts does not
 * start, also a count SQL alone would answer. */
static void test_cancel(void **state) {
    (void)state;
    atomic_int cancel;
    atomic_init(&cancel, 0);
    reel_err_t err;
    reel_err_clear(&err);
    int64_t n = 0;
    reel_query_opts_t q = {.filter = "~bs needle", .cancel = &cancel};
    assert_int_equal(reel_query_count(sess, &q, &n, &err), REEL_OK);
    assert_true(n > 3);
    for (int spool = 0; spool < 2; spool++) {
        atomic_store(&cancel, 0);
        cancel_ctx_t c = {&cancel, 0};
        q.filter = spool ? "~bs needle" : "";
        assert_int_equal(reel_query_flows_each(sess, &q, cancel_after_three, &c, &err),
                         REEL_INTERRUPTED);
        assert_int_equal(c.rows, 3);
        assert_non_null(strstr(reel_err_str(&err), "cancelled"));
        reel_err_clear(&err);
    }
    q.filter = "~s 200"; /* one count(*) */
    assert_int_equal(reel_query_count(sess, &q, &n, &err), REEL_INTERRUPTED);
    reel_err_clear(&err);
    q.filter = "~bs needle";
    assert_int_equal(reel_query_count(sess, &q, &n, &err), REEL_INTERRUPTED);
    reel_err_clear(&err);
    atomic_store(&cancel, 0);
    assert_int_equal(reel_query_count(sess, &q, &n, &err), REEL_OK);
}

/* The newest three needle flows, listed oldest first, as `reel flows
 * --limit 3 '~bs needle'` does: ids first, then the rows of those ids. */
static void test_only_ids(void **state) {
    (void)state;
    int64_t want[NFLOWS];
    size_t nw = expect(REEL_QUERY_SORT_ID, 1, has_needle, want);
    assert_true(nw > 3);
    reel_query_opts_t q = {.filter = "~bs needle", .desc = 1, .limit = 3};
    int64_t *ids = NULL;
    size_t n = 0;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_query_ids(sess, &q, &ids, &n, &err), REEL_OK);
    assert_ids(want, 3, ids, n);
    int64_t asc[3] = {ids[2], ids[1], ids[0]};
    free(ids);
    reel_query_opts_t list = {
        .filter = "~bs needle", .only_ids = asc, .n_only_ids = 3, .limit = 10};
    reel_query_page_t page;
    assert_int_equal(reel_query_flows(sess, &list, &page, &err), REEL_OK);
    assert_int_equal(page.n, 3);
    assert_false(page.more);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(page.rows[i].id, asc[i]);
    reel_query_page_free(&page);
}

/* ---- one flow ---- */

static void test_flow_row_and_json(void **state) {
    (void)state;
    const model_t *m = &M[4]; /* 404, response body "hay" */
    reel_query_flow_t f;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_query_flow(sess, m->id, &f, &err), REEL_OK);
    assert_int_equal(f.id, m->id);
    assert_int_equal(f.status, 404);
    assert_string_equal(f.method, "POST");
    assert_string_equal(f.url, "http://h3.test/p/4");
    assert_string_equal(f.state, "complete");
    assert_int_equal(f.ntags, 0);
    json_t *j = reel_query_flow_json(&f);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "http");
    assert_true(json_is_array(json_object_get(j, "tags")));
    assert_int_equal(json_integer_value(json_object_get(j, "duration_us")), f.end_us - f.start_us);
    json_decref(j);
    reel_query_flow_clear(&f);
    /* no response: status NULL, null in JSON */
    assert_int_equal(reel_query_flow(sess, M[5].id, &f, &err), REEL_OK);
    assert_int_equal(f.status, REEL_QUERY_NULL);
    assert_string_equal(f.state, "error");
    j = reel_query_flow_json(&f);
    assert_true(json_is_null(json_object_get(j, "status")));
    json_decref(j);
    reel_query_flow_clear(&f);
}

/* ---- bad input ---- */

static void test_bad_input(void **state) {
    (void)state;
    reel_err_t err;
    reel_query_flow_t f;
    reel_err_clear(&err);
    assert_int_equal(reel_query_flow(sess, 999999, &f, &err), REEL_NOTFOUND);
    assert_string_equal(reel_err_str(&err), "no flow 999999 in session 's'");
    reel_err_clear(&err);
    assert_int_equal(reel_query_flow_exists(sess, 999999, &err), REEL_NOTFOUND);

    reel_query_page_t page;
    reel_query_opts_t q = {.filter = "~d (a", .limit = 10};
    reel_err_clear(&err);
    assert_int_equal(reel_query_flows(sess, &q, &page, &err), REEL_INVALID);
    assert_non_null(strstr(reel_err_str(&err), "column"));
    assert_null(page.rows);
    q.filter = "~c 200 &";
    reel_err_clear(&err);
    assert_int_equal(reel_query_flows(sess, &q, &page, &err), REEL_INVALID);
    assert_non_null(strstr(reel_err_str(&err), "column 9"));

    q.filter = NULL;
    q.limit = 0;
    reel_err_clear(&err);
    assert_int_equal(reel_query_flows(sess, &q, &page, &err), REEL_INVALID);
    q.limit = REEL_QUERY_PAGE_MAX + 1;
    reel_err_clear(&err);
    assert_int_equal(reel_query_flows(sess, &q, &page, &err), REEL_INVALID);

    /* a cursor that is gone: an error, not a silent restart */
    q.limit = 5;
    q.sort = REEL_QUERY_SORT_HOST;
    q.after_id = 999999;
    reel_err_clear(&err);
    assert_int_equal(reel_query_flows(sess, &q, &page, &err), REEL_NOTFOUND);
    /* by id any cursor works: past the end is an empty last page */
    q.sort = REEL_QUERY_SORT_ID;
    reel_err_clear(&err);
    assert_int_equal(reel_query_flows(sess, &q, &page, &err), REEL_OK);
    assert_int_equal(page.n, 0);
    assert_false(page.more);
    reel_query_page_free(&page);

    reel_query_sort s;
    reel_err_clear(&err);
    assert_int_equal(reel_query_sort_parse("status", &s, &err), REEL_OK);
    assert_int_equal(s, REEL_QUERY_SORT_STATUS);
    assert_int_equal(reel_query_sort_parse("url", &s, &err), REEL_INVALID);
    assert_non_null(strstr(reel_err_str(&err), "id, start, host and status"));

    int64_t missing[] = {M[1].id, 999999};
    reel_query_target_t t = {.ids = missing, .n = 2};
    reel_query_result_t res;
    reel_err_clear(&err);
    assert_int_equal(reel_query_mark(sess, &t, 1, &res, &err), REEL_NOTFOUND);
    assert_string_equal(reel_err_str(&err), "no flow 999999 in session 's'");
    reel_query_flow_clear(&f);
    assert_int_equal(reel_query_flow(sess, M[1].id, &f, &err), REEL_OK);
    assert_false(f.marked); /* nothing changed */
    reel_query_flow_clear(&f);

    const char *bad_tag[] = {"-x"};
    t = (reel_query_target_t){.ids = missing, .n = 1};
    reel_err_clear(&err);
    assert_int_equal(reel_query_tag(sess, &t, bad_tag, 1, 1, &res, &err), REEL_INVALID);
    reel_err_clear(&err);
    assert_int_equal(reel_query_annotate(sess, &t, "", &res, &err), REEL_INVALID);
    assert_string_equal(reel_err_str(&err), "empty note");
    t.filter = "(";
    t.ids = NULL;
    reel_err_clear(&err);
    assert_int_equal(reel_query_annotate(sess, &t, "x", &res, &err), REEL_INVALID);
    assert_non_null(strstr(reel_err_str(&err), "column"));
    reel_query_note_t *notes = NULL;
    size_t n = 0;
    reel_err_clear(&err);
    assert_int_equal(reel_query_notes(sess, 999999, &notes, &n, &err), REEL_NOTFOUND);
    reel_err_clear(&err);
    assert_int_equal(reel_query_note_delete(sess, M[1].id, 424242, &err), REEL_NOTFOUND);
    assert_non_null(strstr(reel_err_str(&err), "has no note 424242"));
}

/* ---- user data ---- */

static void test_bulk_tags_marks_notes(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    reel_query_result_t res;
    int64_t want[NFLOWS];
    size_t nneedle = expect(REEL_QUERY_SORT_ID, 0, has_needle, want);

    const char *tags[] = {"found", "x:y/z"};
    reel_query_target_t byf = {.filter = "~bs needle"};
    assert_int_equal(reel_query_tag(sess, &byf, tags, 2, 1, &res, &err), REEL_OK);
    assert_int_equal(res.matched, nneedle);
    assert_int_equal(res.changed, 2 * nneedle);
    assert_int_equal(reel_query_tag(sess, &byf, tags, 2, 1, &res, &err), REEL_OK);
    assert_int_equal(res.matched, nneedle);
    assert_int_equal(res.changed, 0); /* they had them */
    /* the tags show in rows, in the filter language and per flow */
    int64_t cnt = 0;
    reel_query_opts_t q = {.filter = "~tag found"};
    assert_int_equal(reel_query_count(sess, &q, &cnt, &err), REEL_OK);
    assert_int_equal(cnt, (int64_t)nneedle);
    reel_query_flow_t f;
    assert_int_equal(reel_query_flow(sess, want[0], &f, &err), REEL_OK);
    assert_int_equal(f.ntags, 2);
    assert_string_equal(f.tags[0], "found");
    assert_string_equal(f.tags[1], "x:y/z");
    reel_query_flow_clear(&f);
    char **tv = NULL;
    size_t tn = 0;
    assert_int_equal(reel_query_tags(sess, want[0], &tv, &tn, &err), REEL_OK);
    assert_int_equal(tn, 2);
    assert_string_equal(tv[1], "x:y/z");
    reel_query_strings_free(tv, tn);
    /* untag one flow by id, then every flow by filter */
    reel_query_target_t one = {.ids = &want[0], .n = 1};
    assert_int_equal(reel_query_tag(sess, &one, tags, 1, 0, &res, &err), REEL_OK);
    assert_int_equal(res.matched, 1);
    assert_int_equal(res.changed, 1);
    assert_int_equal(reel_query_tag(sess, &byf, tags, 2, 0, &res, &err), REEL_OK);
    assert_int_equal(res.changed, 2 * nneedle - 1);

    /* marks: matched counts targets, changed counts flows whose mark moved */
    reel_query_target_t h1 = {.filter = "~d h1"};
    int64_t nh1w[NFLOWS];
    size_t nh1 = expect(REEL_QUERY_SORT_ID, 0, host_h1, nh1w);
    assert_int_equal(reel_query_mark(sess, &one, 1, &res, &err), REEL_OK);
    assert_int_equal(res.changed, 1);
    assert_int_equal(reel_query_mark(sess, &h1, 1, &res, &err), REEL_OK);
    assert_int_equal(res.matched, nh1);
    size_t overlap = 0; /* whether the flow marked by id is on h1 too */
    for (int i = 0; i < NFLOWS; i++)
        if (M[i].id == want[0])
            overlap = host_h1(&M[i]);
    assert_int_equal(res.changed, nh1 - overlap);
    q.filter = "~marked";
    assert_int_equal(reel_query_count(sess, &q, &cnt, &err), REEL_OK);
    assert_int_equal(cnt, (int64_t)(nh1 + 1 - overlap));
    reel_query_summary_t sum;
    assert_int_equal(reel_query_summary(sess, &sum, &err), REEL_OK);
    assert_int_equal(sum.marked_flows, cnt);
    reel_query_target_t all = {0};
    assert_int_equal(reel_query_mark(sess, &all, 0, &res, &err), REEL_OK);
    assert_int_equal(res.matched, NFLOWS);
    assert_int_equal(res.changed, (size_t)cnt);
    assert_int_equal(reel_query_count(sess, &q, &cnt, &err), REEL_OK);
    assert_int_equal(cnt, 0);

    /* notes: add per filter and per id, list, edit, delete */
    assert_int_equal(reel_query_annotate(sess, &h1, "seen on h1", &res, &err), REEL_OK);
    assert_int_equal(res.matched, nh1);
    assert_int_equal(res.changed, nh1);
    assert_int_equal(reel_query_annotate(sess, &one, "first", &res, &err), REEL_OK);
    int64_t note = res.last_note;
    assert_true(note > 0);
    assert_int_equal(reel_query_note_edit(sess, want[0], note, "edited", &err), REEL_OK);
    reel_query_note_t *notes = NULL;
    size_t n = 0;
    assert_int_equal(reel_query_notes(sess, want[0], &notes, &n, &err), REEL_OK);
    assert_true(n >= 1);
    assert_int_equal(notes[n - 1].id, note);
    assert_string_equal(notes[n - 1].text, "edited");
    reel_query_notes_free(notes, n);
    q.filter = "~comment edited";
    assert_int_equal(reel_query_count(sess, &q, &cnt, &err), REEL_OK);
    assert_int_equal(cnt, 1);
    assert_int_equal(reel_query_flow(sess, want[0], &f, &err), REEL_OK);
    assert_int_equal(f.annotations, (int64_t)n);
    reel_query_flow_clear(&f);
    assert_int_equal(reel_query_note_delete(sess, want[0], note, &err), REEL_OK);
    assert_int_equal(reel_query_count(sess, &q, &cnt, &err), REEL_OK);
    assert_int_equal(cnt, 0);
    assert_int_equal(reel_query_summary(sess, &sum, &err), REEL_OK);
    assert_int_equal(sum.annotations, (int64_t)nh1);
    assert_int_equal(sum.flows, NFLOWS);
    int64_t errors = 0;
    for (int i = 0; i < NFLOWS; i++)
        errors += M[i].status == REEL_QUERY_NULL;
    assert_int_equal(sum.errors, errors);
    assert_int_equal(sum.complete + sum.errors, NFLOWS);
    assert_true(sum.frames > 0 && sum.spool_bytes > 0 && sum.index_bytes > 0);
    /* the flow made with start_us 0 is one whose start is unknown (its
     * start record lost): the span starts at the first known start */
    assert_int_equal(sum.first_us, 1000000);
    assert_int_equal(sum.last_us, 15000000);
}

static void test_overlay(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_overlay_set(reel_session_db(sess), "body_limit", "1024", "test", &err),
                     REEL_OK);
    assert_int_equal(reel_overlay_unset(reel_session_db(sess), "body_limit", "test", &err),
                     REEL_OK);
    assert_int_equal(reel_overlay_set(reel_session_db(sess), "capture", "off", "test", &err),
                     REEL_OK);
    reel_query_overlay_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(reel_query_overlay(sess, &rows, &n, &err), REEL_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].key, "capture");
    assert_string_equal(rows[0].value, "off");
    reel_query_overlay_free(rows, n);
    reel_query_change_t *h = NULL;
    assert_int_equal(reel_query_history(sess, &h, &n, &err), REEL_OK);
    assert_int_equal(n, 3);
    assert_string_equal(h[0].key, "body_limit");
    assert_null(h[0].old_value);
    assert_string_equal(h[1].old_value, "1024");
    assert_null(h[1].new_value);
    assert_string_equal(h[2].actor, "test");
    reel_query_history_free(h, n);
    assert_non_null(reel_query_sqlite_version());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyset_every_sort),
        cmocka_unit_test(test_filter_paging),
        cmocka_unit_test(test_since_and_count),
        cmocka_unit_test(test_only_ids),
        cmocka_unit_test(test_flow_row_and_json),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bulk_tags_marks_notes),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
