/* Tests for the body index (src/session/bodyindex.c, schema/006_body_fts.sql):
 * what a recording puts into body_text, body_fts and body_todo (text bodies
 * in every Content-Encoding, binary ones left to the spool, bodies over
 * body_index_max, messages, errors, open flows), that a body filter of a
 * plain string answered through the index finds exactly what the spool pass
 * finds, that deleted flows leave the index, that repair fills it and that
 * body_index_max = 0 turns it off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "base/mem.h"
#include "session/bodyindex.h"
#include "session/config.h"
#include "session/filter.h"
#include "session/query.h"
#include "session/recorder.h"
#include "session/session.h"
#include "unit/testutil.h"

static char *home;

static uint8_t *encode(const char *coding, const uint8_t *in, size_t len, size_t *out_len) {
    uint8_t *r = NULL;
    if (coding && strcmp(coding, "gzip") == 0) {
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
        uLong cap = deflateBound(&z, (uLong)len) + 32;
        r = reel_malloc(cap);
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = r;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        *out_len = cap - z.avail_out;
        deflateEnd(&z);
    } else if (coding && strcmp(coding, "br") == 0) {
        size_t cap = BrotliEncoderMaxCompressedSize(len) + 1024;
        r = reel_malloc(cap);
        *out_len = cap;
        assert_true(BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, in,
                                          out_len, r));
    } else if (coding && strcmp(coding, "zstd") == 0) {
        size_t cap = ZSTD_compressBound(len);
        r = reel_malloc(cap);
        *out_len = ZSTD_compress(r, cap, in, len, 3);
        assert_false(ZSTD_isError(*out_len));
    } else {
        r = reel_malloc(len + 1);
        memcpy(r, in, len);
        *out_len = len;
    }
    return r;
}

/* Feeds data in pieces of 1000 bytes, so words cross record boundaries. */
static void feed(reel_rflow_t *f, int resp, const uint8_t *d, size_t n) {
    for (size_t off = 0; off < n; off += 1000) {
        size_t k = n - off < 1000 ? n - off : 1000;
        if (resp)
            reel_recorder_response_body(f, d + off, k);
        else
            reel_recorder_request_body(f, d + off, k);
    }
}

typedef struct {
    const char *req_ct, *req_enc, *req_body;
    size_t req_len; /* 0: strlen(req_body) */
    const char *resp_ct, *resp_enc, *resp_body;
    size_t resp_len;
    int end; /* 0 end, 1 error, 2 left open, 3 messages */
} spec_t;

static reel_rflow_t *open_flows[8];
static size_t nopen;

static uint64_t record(reel_recorder_t *r, const spec_t *sp) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    uint64_t id = reel_rflow_id(f);
    reel_header_t qh[3];
    size_t nq = 0;
    qh[nq++] = (reel_header_t){"Host", 4, "b.test", 6};
    if (sp->req_ct)
        qh[nq++] = (reel_header_t){"Content-Type", 12, sp->req_ct, strlen(sp->req_ct)};
    if (sp->req_enc)
        qh[nq++] = (reel_header_t){"Content-Encoding", 16, sp->req_enc, strlen(sp->req_enc)};
    reel_request_head_t rq = {.method = sp->req_body ? "POST" : "GET",
                              .scheme = "http",
                              .host = "b.test",
                              .port = 80,
                              .target = "/x",
                              .http_version = "HTTP/1.1",
                              .headers = qh,
                              .n_headers = nq};
    reel_recorder_request_head(f, &rq);
    if (sp->req_body) {
        size_t n = sp->req_len ? sp->req_len : strlen(sp->req_body), elen;
        uint8_t *e = encode(sp->req_enc, (const uint8_t *)sp->req_body, n, &elen);
        feed(f, 0, e, elen);
        free(e);
    }
    if (sp->end == 1) {
        reel_recorder_flow_error(f, "reset", 0);
        return id;
    }
    reel_header_t sh[2];
    size_t ns = 0;
    if (sp->resp_ct)
        sh[ns++] = (reel_header_t){"Content-Type", 12, sp->resp_ct, strlen(sp->resp_ct)};
    if (sp->resp_enc)
        sh[ns++] = (reel_header_t){"Content-Encoding", 16, sp->resp_enc, strlen(sp->resp_enc)};
    reel_response_head_t rs = {
        .status = 200, .reason = "OK", .http_version = "HTTP/1.1", .headers = sh, .n_headers = ns};
    reel_recorder_response_head(f, &rs);
    if (sp->resp_body) {
        size_t n = sp->resp_len ? sp->resp_len : strlen(sp->resp_body), elen;
        uint8_t *e = encode(sp->resp_enc, (const uint8_t *)sp->resp_body, n, &elen);
        feed(f, 1, e, elen);
        free(e);
    }
    if (sp->end == 3) {
        reel_message_t m = {
            .from_client = 1, .opcode = 1, .data = "a wsword here", .len = 13, .length = 13};
        reel_recorder_message(f, &m);
    }
    if (sp->end == 2) {
        open_flows[nopen++] = f;
        return id;
    }
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return id;
}

/* Flows of the main session, by what they are. */
enum {
    F_GZIP_JSON,
    F_BR_HTML,
    F_ZSTD_REQ,
    F_PNG,
    F_NUL,
    F_BIG,
    F_EMPTY,
    F_WS,
    F_ERR,
    F_UNKNOWN_ENC,
    F_OPEN,
    F_SPLIT,
    F_FORM,
    F_N
};
static uint64_t ids[F_N];
static reel_session_t *sess;
static char *big;

static void expect_reason(reel_session_t *s, uint64_t id, const char *want);
static long long q1(reel_session_t *s, const char *sql, uint64_t id);
static void same(reel_session_t *s, const char *op, const char *word, const char *expect);
static char *one(uint64_t id);

static void session_with_flows(const char *name, reel_session_t **out) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(home, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD, out, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
}

static void record_all(reel_session_t *s) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR PNGSECRET \0\1\2";
    static const char nul[] = "binsecret \0 more \0 bytes";
    free(big); /* from the previous session's recording */
    big = reel_malloc(3u << 20);
    for (size_t k = 0; k < (3u << 20); k++)
        big[k] = (char)('a' + (k * 7 + k / 11) % 26 % 4); /* a..d */
    memcpy(big, "headtoken ", 10);
    memcpy(big + (3u << 20) - 10, " tailtoken", 10);
    char split[5000];
    memset(split, 'x', sizeof split);
    memcpy(split + 995, "Splitword", 9); /* across the 1000-byte records */
    split[sizeof split - 1] = '\0';
    nopen = 0;
    ids[F_GZIP_JSON] = record(r, &(spec_t){.resp_ct = "application/json",
                                           .resp_enc = "gzip",
                                           .resp_body = "{\"token\": \"Tok_Alpha 42\"}"});
    ids[F_BR_HTML] = record(r, &(spec_t){.resp_ct = "text/html",
                                         .resp_enc = "br",
                                         .resp_body = "<p>Hello WORLD, needle</p>"});
    ids[F_ZSTD_REQ] = record(r, &(spec_t){.req_ct = "application/json",
                                          .req_enc = "zstd",
                                          .req_body = "{\"q\": \"needle in request\"}",
                                          .resp_ct = "text/plain",
                                          .resp_body = "ok needle"});
    ids[F_PNG] =
        record(r, &(spec_t){.resp_ct = "image/png", .resp_body = png, .resp_len = sizeof png - 1});
    ids[F_NUL] = record(r, &(spec_t){.resp_body = nul, .resp_len = sizeof nul - 1});
    ids[F_BIG] = record(r, &(spec_t){.resp_ct = "text/plain",
                                     .resp_enc = "gzip",
                                     .resp_body = big,
                                     .resp_len = 3u << 20});
    ids[F_EMPTY] = record(r, &(spec_t){.resp_ct = "text/plain"});
    ids[F_WS] = record(r, &(spec_t){.resp_ct = "text/plain", .resp_body = "upgrade", .end = 3});
    ids[F_ERR] =
        record(r, &(spec_t){.req_ct = "text/plain", .req_body = "an errword body", .end = 1});
    ids[F_UNKNOWN_ENC] = record(r, &(spec_t){.resp_ct = "text/plain",
                                             .resp_enc = "compress",
                                             .resp_body = "oddword in odd coding"});
    ids[F_OPEN] =
        record(r, &(spec_t){.resp_ct = "text/plain", .resp_body = "openword so far", .end = 2});
    ids[F_SPLIT] = record(r, &(spec_t){.resp_ct = "text/plain", .resp_body = split});
    ids[F_FORM] = record(r, &(spec_t){.req_ct = "application/x-www-form-urlencoded",
                                      .req_body = "user=alice&q=needle+x",
                                      .resp_ct = "text/css",
                                      .resp_enc = "gzip",
                                      .resp_body = "p{color:red}"});
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    /* an open flow is left to the spool until it ends (with the index
     * off, every flow is: its id is in body_off) */
    if (reel_bodyindex_configured_max(reel_session_db(s)) == 0)
        assert_int_equal(
            q1(s, "SELECT count(*) FROM body_off WHERE ? BETWEEN lo AND hi", ids[F_OPEN]), 1);
    else
        expect_reason(s, ids[F_OPEN], "open");
    /* (an earlier run's open flow has the word too) */
    int first_run = q1(s, "SELECT count(*) FROM flows WHERE id < ?", ids[F_GZIP_JSON]) == 0;
    same(s, "~bs", "openword", first_run ? one(ids[F_OPEN]) : NULL);
    for (size_t i = 0; i < nopen; i++)
        reel_recorder_flow_error(open_flows[i], "cut", 0);
    if (reel_recorder_close(r, &err) != REEL_OK)
        fail_msg("close: %s", reel_err_str(&err));
}

static int setup(void **state) {
    (void)state;
    home = reel_test_tmpdir("bodyindex");
    session_with_flows("s", &sess);
    record_all(sess);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    reel_session_close(sess);
    reel_test_rm_rf(home);
    free(home);
    free(big);
    return 0;
}

static long long q1(reel_session_t *s, const char *sql, uint64_t id) {
    sqlite3_stmt *st = NULL;
    sqlite3 *db = reel_session_db(s);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_bind_parameter_count(st) > 0)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    long long v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static char *reason(reel_session_t *s, uint64_t id) {
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(reel_session_db(s), "SELECT reason FROM body_todo WHERE flow_id = ?", -1,
                       &st, NULL);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    char *v = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = reel_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

static void expect_reason(reel_session_t *s, uint64_t id, const char *want) {
    char *got = reason(s, id);
    if (want == NULL && got != NULL)
        fail_msg("flow %llu: in body_todo (%s), expected indexed", (unsigned long long)id, got);
    if (want != NULL && (got == NULL || strcmp(got, want) != 0))
        fail_msg("flow %llu: body_todo reason %s, expected %s", (unsigned long long)id,
                 got ? got : "(none)", want);
    free(got);
}

/* 1 if flow id's text in body_fts matches query q. */
static int fts_has(reel_session_t *s, uint64_t id, const char *q) {
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(reel_session_db(s),
                       "SELECT count(*) FROM body_fts WHERE body_fts MATCH ? AND rowid = ?", -1,
                       &st, NULL);
    sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    int v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_what_is_indexed(void **state) {
    (void)state;
    expect_reason(sess, ids[F_GZIP_JSON], NULL);
    expect_reason(sess, ids[F_BR_HTML], NULL);
    expect_reason(sess, ids[F_ZSTD_REQ], NULL);
    expect_reason(sess, ids[F_PNG], "binary");
    expect_reason(sess, ids[F_NUL], "binary");
    expect_reason(sess, ids[F_BIG], "cap");
    expect_reason(sess, ids[F_EMPTY], NULL);
    expect_reason(sess, ids[F_WS], "messages");
    expect_reason(sess, ids[F_ERR], NULL);
    expect_reason(sess, ids[F_UNKNOWN_ENC], "encoding");
    expect_reason(sess, ids[F_SPLIT], NULL);
    expect_reason(sess, ids[F_FORM], NULL);
    /* decoded text, case folded, substrings, the right side */
    assert_int_equal(fts_has(sess, ids[F_GZIP_JSON], "resp : \"tok_alpha 42\""), 1);
    assert_int_equal(fts_has(sess, ids[F_GZIP_JSON], "req : \"tok_alpha\""), 0);
    assert_int_equal(fts_has(sess, ids[F_BR_HTML], "\"ello worl\""), 1);
    assert_int_equal(fts_has(sess, ids[F_ZSTD_REQ], "req : \"NEEDLE IN REQ\""), 1);
    assert_int_equal(fts_has(sess, ids[F_SPLIT], "\"splitword\""), 1);
    assert_int_equal(fts_has(sess, ids[F_FORM], "resp : \"color:red\""), 1);
    assert_int_equal(fts_has(sess, ids[F_ERR], "req : \"errword\""), 1);
    /* binary bodies are not indexed; a big one up to body_index_max */
    assert_int_equal(fts_has(sess, ids[F_PNG], "\"pngsecret\""), 0);
    assert_int_equal(q1(sess, "SELECT resp IS NULL FROM body_text WHERE flow_id = ?", ids[F_NUL]),
                     -1);
    assert_int_equal(fts_has(sess, ids[F_BIG], "\"headtoken\""), 1);
    assert_int_equal(fts_has(sess, ids[F_BIG], "\"tailtoken\""), 0);
    assert_int_equal(q1(sess, "SELECT length(resp) FROM body_text WHERE flow_id = ?", ids[F_BIG]),
                     1048576); /* body_index_max, from index_on() */
    /* a flow without a body has no row at all */
    assert_int_equal(q1(sess, "SELECT count(*) FROM body_text WHERE flow_id = ?", ids[F_EMPTY]), 0);
}

/* Ids (comma-separated) of the flows of s that expr matches, as `reel flows`
 * finds them; *fts says whether its SQL asked the body index. */
static char *ids_of(reel_session_t *s, const char *expr, bool *fts) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_t *f = NULL;
    if (reel_filter_compile(expr, &f, &err) != REEL_OK)
        fail_msg("compile %s: %s", expr, reel_err_str(&err));
    *fts = strstr(reel_filter_sql(f), "body_fts") != NULL;
    int64_t *v = NULL;
    size_t n = 0;
    if (reel_filter_ids(f, s, &v, &n, &err) != REEL_OK)
        fail_msg("ids %s: %s", expr, reel_err_str(&err));
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++)
        reel_buf_printf(&b, "%s%lld", i ? "," : "", (long long)v[i]);
    reel_buf_append(&b, "", 1);
    free(v);
    reel_filter_free(f);
    return (char *)b.data;
}

/* The same search, indexed and scanning ("x[y]" is no plain string: the
 * spool pass reads every flow), must find the same flows. */
static void same(reel_session_t *s, const char *op, const char *word, const char *expect) {
    char *indexed = reel_asprintf("%s '%s'", op, word);
    size_t n = strlen(word);
    char *scan = reel_asprintf("%s '%.*s[%c]'", op, (int)(n - 1), word, word[n - 1]);
    bool fts_a = false, fts_b = true;
    char *a = ids_of(s, indexed, &fts_a), *b = ids_of(s, scan, &fts_b);
    assert_true(fts_a);
    assert_false(fts_b);
    if (strcmp(a, b) != 0)
        fail_msg("%s found %s, the scan %s found %s", indexed, a, scan, b);
    if (expect && strcmp(a, expect) != 0)
        fail_msg("%s found %s, expected %s", indexed, a, expect);
    free(a);
    free(b);
    free(indexed);
    free(scan);
}

static char *one(uint64_t id) {
    static char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)id);
    return buf;
}

static void test_indexed_equals_scan(void **state) {
    (void)state;
    static const char *const ops[] = {"~b", "~bq", "~bs"};
    static const char *const words[] = {
        "tok_alpha 42", "hello world",    "needle",    "NEEDLE in",       "pngsecret",
        "binsecret",    "headtoken",      "tailtoken", "wsword",          "errword",
        "oddword",      "openword",       "splitword", "color:red",       "user=alice&q",
        "o\"k",         "nowhere-at-all", "abcd",      "\"token\": \"tok"};
    for (size_t o = 0; o < 3; o++)
        for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
            same(sess, ops[o], words[w], NULL);
    /* what the index alone could not say is still found */
    same(sess, "~b", "tailtoken", one(ids[F_BIG]));
    same(sess, "~b", "pngsecret", one(ids[F_PNG]));
    same(sess, "~bq", "wsword", one(ids[F_WS]));
    same(sess, "~bs", "oddword", one(ids[F_UNKNOWN_ENC]));
    same(sess, "~b", "openword", one(ids[F_OPEN]));
    /* in combinations, and negated (where the index cannot help) */
    bool fts;
    char *a = ids_of(sess, "~b needle & !~bq needle", &fts);
    char *b = ids_of(sess, "~b needl[e] & !~bq needl[e]", &fts);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_plain_and_queries(void **state) {
    (void)state;
    assert_true(reel_bodyindex_plain("abc", 3));
    assert_true(reel_bodyindex_plain("a b-c:\"d\"", 9));
    assert_false(reel_bodyindex_plain("ab", 2));
    assert_false(reel_bodyindex_plain("a.c", 3));
    assert_false(reel_bodyindex_plain("ab\\d", 4));
    assert_false(reel_bodyindex_plain("a(b)", 4));
    assert_false(reel_bodyindex_plain("caf\xc3\xa9", 5));
    char *q = reel_bodyindex_fts_query("say \"hi\"", 8, 1);
    assert_string_equal(q, "req : \"say \"\"hi\"\"\"");
    free(q);
    const char *w1[] = {"hello", "a-b.c"};
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_bodyindex_search_query(w1, 2, &q, &err), REEL_OK);
    assert_string_equal(q, "\"hello\" AND \"a-b.c\"");
    free(q);
    const char *w2[] = {"\"user id\"", "OR", "req:token"};
    assert_int_equal(reel_bodyindex_search_query(w2, 3, &q, &err), REEL_OK);
    assert_string_equal(q, "\"user id\" OR req:token");
    free(q);
    /* the same typed in a shell without the inner quotes: the words the
     * shell gives are a phrase, and a short one is refused as ever */
    const char *w4[] = {"user id", "OR", "req:token"};
    assert_int_equal(reel_bodyindex_search_query(w4, 3, &q, &err), REEL_OK);
    assert_string_equal(q, "\"user id\" OR req:token");
    free(q);
    const char *w5[] = {"id", "OR", "req:token"};
    assert_int_equal(reel_bodyindex_search_query(w5, 3, &q, &err), REEL_INVALID);
    assert_null(q);
    assert_non_null(strstr(reel_err_str(&err), "'id' is too short"));
    reel_err_clear(&err);
    const char *w3[] = {"hello", "ab"};
    assert_int_equal(reel_bodyindex_search_query(w3, 2, &q, &err), REEL_INVALID);
    assert_null(q);
    assert_non_null(strstr(reel_err_str(&err), "'ab' is too short"));
    reel_err_clear(&err);
    /* characters, not bytes (the trigram tokenizer counts characters): '日本'
     * is 6 bytes and found nothing, said as "no flow has that" */
    const char *w6[] = {"\xe6\x97\xa5\xe6\x9c\xac"};
    assert_int_equal(reel_bodyindex_search_query(w6, 1, &q, &err), REEL_INVALID);
    assert_non_null(strstr(reel_err_str(&err), "' is too short"));
    reel_err_clear(&err);
    const char *w7[] = {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"};
    assert_int_equal(reel_bodyindex_search_query(w7, 1, &q, &err), REEL_OK);
    free(q);
    /* and the strings of FTS5 syntax: a term after a column, a quoted
     * phrase as a whole; not operators, columns or NEAR's distance */
    static const struct {
        const char *w, *short_one;
    } fts[] = {
        {"req:pa", "'pa' in 'req:pa'"},
        {"\"ab\"", "'ab' in '\"ab\"'"},
        {"NEAR(pa grant)", "'pa' in"},
        {"{req resp}: xy", "'xy' in"},
        {"\"a\"\"\"", "'a\"\"' in"},
        {"\"a\"\"b\"", NULL},
        {"req:token", NULL},
        {"\"ab cd\"", NULL},
        {"NEAR(password grant, 10)", NULL},
        {"{req resp}: token", NULL},
        {"-resp:token", NULL},
        {"(token OR secret) NOT req:abc", NULL},
    };
    for (size_t i = 0; i < sizeof fts / sizeof fts[0]; i++) {
        const char *w[] = {fts[i].w};
        reel_err_clear(&err);
        reel_rc rc = reel_bodyindex_search_query(w, 1, &q, &err);
        if (fts[i].short_one == NULL) {
            if (rc != REEL_OK)
                fail_msg("%s: %s", fts[i].w, reel_err_str(&err));
            free(q);
        } else {
            assert_int_equal(rc, REEL_INVALID);
            if (strstr(reel_err_str(&err), fts[i].short_one) == NULL)
                fail_msg("%s: %s", fts[i].w, reel_err_str(&err));
        }
    }
}

/* Dropping flows (retention) takes them out of the index. */
static void test_delete_leaves_index(void **state) {
    (void)state;
    reel_session_t *s = NULL;
    session_with_flows("del", &s);
    record_all(s);
    uint64_t id = ids[F_GZIP_JSON];
    assert_int_equal(fts_has(s, id, "\"tok_alpha\""), 1);
    char *sql = reel_asprintf("DELETE FROM flows WHERE id IN (%llu, %llu)", (unsigned long long)id,
                              (unsigned long long)ids[F_PNG]);
    assert_int_equal(sqlite3_exec(reel_session_db(s), sql, NULL, NULL, NULL), SQLITE_OK);
    free(sql);
    assert_int_equal(fts_has(s, id, "\"tok_alpha\""), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_fts WHERE body_fts MATCH 'tok_alpha'", 0), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_text WHERE flow_id = ?", id), 0);
    assert_null(reason(s, ids[F_PNG]));
    /* the FTS stays consistent with its content table */
    assert_int_equal(
        sqlite3_exec(reel_session_db(s),
                     "INSERT INTO body_fts(body_fts, rank) VALUES('integrity-check', 1)", NULL,
                     NULL, NULL),
        SQLITE_OK);
    reel_session_close(s);
}

/* A session indexed before body search (emptied the way migration 006
 * leaves one): the flows are left to the spool, and repair indexes them. */
static void test_repair_fills(void **state) {
    (void)state;
    reel_session_t *s = NULL;
    session_with_flows("rep", &s);
    record_all(s);
    assert_int_equal(
        sqlite3_exec(reel_session_db(s),
                     "INSERT INTO body_fts(body_fts) VALUES('delete-all'); DELETE FROM body_text;"
                     "DELETE FROM body_todo; INSERT INTO body_todo SELECT id, 'indexed before "
                     "body search' FROM flows WHERE request_body_size > 0 OR "
                     "response_body_size > 0",
                     NULL, NULL, NULL),
        SQLITE_OK);
    same(s, "~b", "needle", NULL);
    expect_reason(s, ids[F_GZIP_JSON], "indexed before body search");
    char *rep = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_repair(s, &rep, &err) != REEL_OK)
        fail_msg("repair: %s", reel_err_str(&err));
    free(rep);
    expect_reason(s, ids[F_GZIP_JSON], NULL);
    expect_reason(s, ids[F_PNG], "binary");
    assert_int_equal(fts_has(s, ids[F_GZIP_JSON], "\"tok_alpha\""), 1);
    same(s, "~b", "needle", NULL);
    /* Again, over a full index: repair empties the body tables and the FTS
     * at once (not flow by flow through the trigger it drops), and fills
     * them again, without an entry left over or twice. */
    reel_err_clear(&err);
    if (reel_session_repair(s, &rep, &err) != REEL_OK)
        fail_msg("repair: %s", reel_err_str(&err));
    free(rep);
    assert_int_equal(
        sqlite3_exec(reel_session_db(s),
                     "INSERT INTO body_fts(body_fts, rank) VALUES('integrity-check', 1)", NULL,
                     NULL, NULL),
        SQLITE_OK);
    assert_int_equal(fts_has(s, ids[F_GZIP_JSON], "\"tok_alpha\""), 1);
    expect_reason(s, ids[F_PNG], "binary");
    same(s, "~b", "needle", NULL);
    reel_session_close(s);
}

/* The head-derived columns of the flows with ids in (lo, hi], in id
 * order, as one string; owned. */
static char *rows_text(reel_session_t *s, uint64_t lo, uint64_t hi) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT group_concat(v, '|') FROM (SELECT quote(method) || ',' || "
                           "quote(scheme) || ',' || quote(host) || ',' || quote(port) || ',' || "
                           "quote(path) || ',' || quote(url) || ',' || quote(http_version) || ',' "
                           "|| quote(status) || ',' || quote(reason) || ',' || "
                           "quote(request_content_type) || ',' || quote(response_content_type) || "
                           "',' || quote(response_generated) || ',' || quote(request_body_size) || "
                           "',' || quote(response_body_size) || ',' || quote(state) || ',' || "
                           "quote(kind) AS v FROM flows WHERE id > ?1 AND id <= ?2 ORDER BY id)",
                           -1, &st, NULL) != SQLITE_OK)
        fail_msg("rows_text: %s", sqlite3_errmsg(reel_session_db(s)));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)lo);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)hi);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = reel_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out ? out : reel_strdup("");
}

/* body_index_max = 0 (session overlay): nothing indexed and no flow tracked
 * in body_todo, the run's flows are one range in body_off, and a body
 * filter still finds all, also with runs with the index on and off mixed,
 * and after a repair with the index off. */
static void test_disabled(void **state) {
    (void)state;
    reel_session_t *s = NULL;
    session_with_flows("off", &s);
    reel_err_t err;
    reel_err_clear(&err);
    sqlite3 *db = reel_session_db(s);
    assert_int_equal(reel_overlay_set(db, "body_index_max", "0", "test", &err), REEL_OK);
    record_all(s);
    uint64_t off_json = ids[F_GZIP_JSON];
    uint64_t run1_max = (uint64_t)q1(s, "SELECT max(id) FROM flows", 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_text", 0), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_todo", 0), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_off", 0), 1);
    assert_int_equal(q1(s, "SELECT lo FROM body_off", 0), q1(s, "SELECT min(id) FROM flows", 0));
    assert_int_equal(q1(s, "SELECT hi FROM body_off", 0), q1(s, "SELECT max(id) FROM flows", 0));
    same(s, "~b", "tok_alpha", one(off_json));
    int64_t before = -1, pending = -1, off = -1;
    assert_int_equal(reel_query_search_missing(s, &before, &pending, &off, &err), REEL_OK);
    assert_int_equal(off, q1(s, "SELECT count(*) FROM flows", 0));

    /* a second run with the index on: its flows are indexed, the first
     * run's are still read from the spool */
    assert_int_equal(reel_overlay_set(db, "body_index_max", "1048576", "test", &err), REEL_OK);
    record_all(s);
    assert_true(ids[F_GZIP_JSON] > off_json);
    expect_reason(s, ids[F_GZIP_JSON], NULL);
    assert_int_equal(fts_has(s, ids[F_GZIP_JSON], "\"tok_alpha\""), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_off WHERE hi >= ?", ids[F_GZIP_JSON]), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_off", 0), 1);
    /* the two runs' rows agree: with the index off the indexer reads heads
     * in place (index.c head_in_place), with it on it unpacks them */
    char *run1 = rows_text(s, 0, run1_max), *run2 = rows_text(s, run1_max, UINT64_MAX / 2);
    assert_true(strlen(run1) > 100);
    assert_string_equal(run1, run2);
    free(run1);
    free(run2);
    char both[64];
    snprintf(both, sizeof both, "%llu,%llu", (unsigned long long)off_json,
             (unsigned long long)ids[F_GZIP_JSON]);
    same(s, "~b", "tok_alpha", both);

    /* repair with the index off: every flow in one range, none indexed */
    assert_int_equal(reel_overlay_set(db, "body_index_max", "0", "test", &err), REEL_OK);
    char *rep = NULL;
    if (reel_session_repair(s, &rep, &err) != REEL_OK)
        fail_msg("repair: %s", reel_err_str(&err));
    free(rep);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_text", 0), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM body_off", 0), 1);
    assert_int_equal(q1(s,
                        "SELECT count(*) FROM flows WHERE id NOT IN (SELECT f.id FROM flows f "
                        "JOIN body_off o ON f.id BETWEEN o.lo AND o.hi)",
                        0),
                     0);
    same(s, "~b", "tok_alpha", both);
    reel_session_close(s);
}

/* Every column of every row, in id order. */
static char *all_rows(reel_session_t *s) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(reel_session_db(s), "SELECT * FROM flows ORDER BY id", -1, &st, NULL) !=
        SQLITE_OK)
        fail_msg("all_rows: %s", sqlite3_errmsg(reel_session_db(s)));
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "");
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int k = 0; k < sqlite3_column_count(st); k++) {
            const unsigned char *v = sqlite3_column_text(st, k);
            reel_buf_printf(&b, "%s=%s%s", sqlite3_column_name(st, k), v ? (const char *)v : "NULL",
                            k + 1 < sqlite3_column_count(st) ? "," : "\n");
        }
    }
    sqlite3_finalize(st);
    return (char *)b.data;
}

/* The indexer reads heads and start, end and server-connection records in
 * place with the body index off (index.c head_in_place, small_in_place),
 * without checking them first while recording (its own frames), and
 * unpacks them with it on: the rows recorded with the index off and those
 * of a repair each way are the same, every column, for flows that use
 * every field those records have. */
static void test_in_place_rows(void **state) {
    (void)state;
    reel_session_t *s = NULL;
    session_with_flows("inplace", &s);
    reel_err_t err;
    reel_err_clear(&err);
    sqlite3 *db = reel_session_db(s);
    assert_int_equal(reel_overlay_set(db, "body_index_max", "0", "test", &err), REEL_OK);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    for (int i = 0; i < 12; i++) {
        reel_flow_info_t info = {.kind = i % 5 == 4 ? REEL_FLOW_TUNNEL : REEL_FLOW_HTTP,
                                 .client_addr = i % 3 ? "127.0.0.1:5000" : NULL,
                                 .server_addr = i % 4 == 1 ? "10.0.0.1:443" : NULL,
                                 .source = i % 2 ? "replay" : NULL,
                                 .replay_of = i % 2 ? (uint64_t)i : 0,
                                 .replay_session = i % 4 == 1 ? "other" : NULL,
                                 .replay_uuid =
                                     i % 2 ? "5eba04b0-c0eb-40de-b841-e08c9a80d4aa" : NULL,
                                 .client_conn = (uint64_t)(i % 3) * 1000,
                                 .stream_id = (uint32_t)(i % 4) * 2 + 1};
        reel_rflow_t *f = reel_recorder_flow_start(r, &info);
        reel_request_head_t rq = {.method = "GET",
                                  .scheme = "https",
                                  .host = "c.test",
                                  .port = 443,
                                  .target = "/y",
                                  .http_version = "HTTP/2.0"};
        reel_recorder_request_head(f, &rq);
        if (i % 3 != 2) {
            reel_server_conn_t sc = {.conn_id = (uint64_t)i + 7,
                                     .address = i % 2 ? "192.0.2.1:443" : NULL,
                                     .sni = "c.test",
                                     .alpn = "h2",
                                     .reused = i % 2};
            reel_recorder_server_conn(f, &sc);
        }
        reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/2.0"};
        reel_recorder_response_head(f, &rs);
        reel_recorder_response_body(f, "abcdef", (size_t)(i % 7));
        reel_timings_t tm = {.blocked_us = -1,
                             .dns_us = 3,
                             .connect_us = 40,
                             .send_us = 1,
                             .wait_us = 900,
                             .receive_us = 2,
                             .ssl_us = i % 2 ? -1 : 70};
        reel_flow_end_t e = {.error = i % 6 == 5 ? "the origin reset the stream" : NULL,
                             .timings = i % 4 ? &tm : NULL,
                             .request_end_us = i % 2 ? 1796268231553717 + i : 0,
                             .response_start_us = i % 3 ? 1796268231553800 + i : 0,
                             .server_addr = i % 4 == 3 ? "198.51.100.2:443" : NULL};
        reel_recorder_flow_finish(f, &e);
    }
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    char *live = all_rows(s);
    char *rows[2];
    for (int on = 0; on < 2; on++) {
        assert_int_equal(reel_overlay_set(db, "body_index_max", on ? "1048576" : "0", "test", &err),
                         REEL_OK);
        char *rep = NULL;
        if (reel_session_repair(s, &rep, &err) != REEL_OK)
            fail_msg("repair: %s", reel_err_str(&err));
        free(rep);
        rows[on] = all_rows(s);
    }
    assert_int_equal(q1(s, "SELECT count(*) FROM flows", 0), 12);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE replay_of IS NOT NULL", 0), 6);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE state = 'error'", 0), 2);
    assert_non_null(strstr(rows[0], "server_addr=198.51.100.2:443"));
    assert_non_null(strstr(rows[0], "server_addr=192.0.2.1:443"));
    assert_string_equal(rows[0], rows[1]);
    assert_string_equal(live, rows[1]);
    free(live);
    free(rows[0]);
    free(rows[1]);
    reel_session_close(s);
}

int main(void) {
    /* the body index is off by default: on, 1 MiB per body */
    reel_test_user_config("body_index_max: 1048576\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_queries),   cmocka_unit_test(test_what_is_indexed),
        cmocka_unit_test(test_indexed_equals_scan), cmocka_unit_test(test_delete_leaves_index),
        cmocka_unit_test(test_repair_fills),        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_in_place_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
