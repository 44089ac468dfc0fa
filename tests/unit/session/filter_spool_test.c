/* Tests for the filter terms that need more than the index (src/session/
 * filter.c): every operator checked against a brute-force evaluation over a
 * recorded session of a few hundred varied flows (headers, bodies in every
 * Content-Encoding or stored decoded, flows without a response, WebSocket
 * messages, annotations, tags, marks),
 * random combinations of them with ! & | against the same truth tables, and
 * a body search over a large gzip body whose needle crosses decoder pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "base/mem.h"
#include "session/filter.h"
#include "session/recorder.h"
#include "session/session.h"
#include "unit/testutil.h"

#define NFLOWS 240
/* A flow with a large gzip body: 2 MiB decoded, the needle at a 64 KiB
 * boundary (the decoder's piece size), split across two pieces, 1.4 MiB
 * before the end. */
#define BIG_FLOW 170
#define BIG_LEN (2u << 20)
#define BIG_AT (10u * 65536u - 3u)

/* What each flow was recorded with: what a brute-force evaluation needs. */
typedef struct {
    uint64_t id;
    bool post, api, has_resp, https_dst;
    int status;
    char client[32];
    char req_headers[256], resp_headers[256]; /* "Name: value\r\n" lines */
    char req_ct[64], resp_ct[64];
    bool req_needle, resp_needle; /* decoded body holds "needle", any case */
    size_t req_len, resp_len;     /* body sizes on the wire */
    bool annotated, tagged, marked;
    bool ws; /* has a client message (searched as a request body of its own) */
} model_t;

/* In a session of its own: a 40 MiB body (gzip, made and recorded
 * piece by piece, never whole in memory) with "endmark" at its very end. */
#define HUGE_LEN (40u << 20)

static model_t M[NFLOWS + 1];
static uint64_t huge_id;
static reel_session_t *hsess; /* holds only that flow */
static char *home;
static reel_session_t *sess;

static uint8_t *encode(int coding, const uint8_t *in, size_t len, size_t *out_len) {
    uint8_t *r = NULL;
    if (coding == 1 || coding == 2) { /* gzip, deflate (zlib) */
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(
            deflateInit2(&z, 6, Z_DEFLATED, coding == 1 ? 31 : 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        uLong cap = deflateBound(&z, (uLong)len) + 32;
        r = reel_malloc(cap);
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = r;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        *out_len = cap - z.avail_out;
        deflateEnd(&z);
    } else if (coding == 3) {
        size_t cap = BrotliEncoderMaxCompressedSize(len) + 1024;
        r = reel_malloc(cap);
        *out_len = cap;
        assert_true(BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, in,
                                          out_len, r));
    } else if (coding == 4) {
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

static const char *const CODINGS[] = {NULL, "gzip", "deflate", "br", "zstd"};

/* Feeds data to the recorder in 16 KiB pieces. */
static void feed(reel_rflow_t *f, int resp, const uint8_t *d, size_t n) {
    for (size_t off = 0; off < n; off += 16384) {
        size_t k = n - off < 16384 ? n - off : 16384;
        if (resp)
            reel_recorder_response_body(f, d + off, k);
        else
            reel_recorder_request_body(f, d + off, k);
    }
}

static void headers_text(char *out, size_t cap, const reel_header_t *h, size_t n) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, cap - o, "%.*s: %.*s\r\n", (int)h[i].name_len, h[i].name,
                              (int)h[i].value_len, h[i].value);
}

static void record_one(reel_recorder_t *r, int i) {
    model_t *m = &M[i];
    snprintf(m->client, sizeof m->client, "10.0.%d.1:%d", i % 7, 40000 + i);
    m->https_dst = i % 2 == 0;
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP,
                             .client_addr = m->client,
                             .server_addr = m->https_dst ? "192.0.2.4:443" : "192.0.2.4:80"};
    reel_rflow_t *f = reel_recorder_flow_start(r, &info);
    m->id = reel_rflow_id(f);
    m->post = i % 3 == 0;
    m->api = i % 4 == 0;
    char trace[32], target[32];
    snprintf(trace, sizeof trace, "abc-%d", i);
    snprintf(target, sizeof target, "/p/%d", i);
    const char *host = m->api ? "api.test" : "www.test";
    reel_header_t rq_h[3];
    size_t nq = 0;
    rq_h[nq++] = (reel_header_t){"Host", 4, host, strlen(host)};
    if (i % 5 == 0)
        rq_h[nq++] = (reel_header_t){"X-Trace", 7, trace, strlen(trace)};
    if (m->post) {
        const char *ct = i % 2 ? "application/json" : "application/x-www-form-urlencoded";
        rq_h[nq++] = (reel_header_t){"Content-Type", 12, ct, strlen(ct)};
        snprintf(m->req_ct, sizeof m->req_ct, "%s", ct);
    }
    headers_text(m->req_headers, sizeof m->req_headers, rq_h, nq);
    reel_request_head_t rq = {.method = m->post ? "POST" : "GET",
                              .scheme = "http",
                              .host = host,
                              .port = 80,
                              .target = target,
                              .http_version = "HTTP/1.1",
                              .headers = rq_h,
                              .n_headers = nq};
    reel_recorder_request_head(f, &rq);
    if (m->post) {
        char body[64];
        m->req_needle = i % 11 == 0;
        int n = snprintf(body, sizeof body, "payload %d%s", i, m->req_needle ? " NeEdLe!" : "");
        m->req_len = (size_t)n;
        feed(f, 0, (const uint8_t *)body, (size_t)n);
    }
    if (i % 13 == 0) {
        reel_recorder_flow_error(f, "connection reset by peer", 0);
        return;
    }
    m->has_resp = true;
    m->status = i % 6 == 5 ? 404 : 200;
    int coding = i % 5;
    const char *ct = i % 3 == 1 ? "text/html; charset=utf-8" : "application/json";
    snprintf(m->resp_ct, sizeof m->resp_ct, "%s", ct);
    reel_header_t rs_h[3];
    size_t ns = 0;
    rs_h[ns++] = (reel_header_t){"Content-Type", 12, ct, strlen(ct)};
    if (coding)
        rs_h[ns++] =
            (reel_header_t){"Content-Encoding", 16, CODINGS[coding], strlen(CODINGS[coding])};
    if (i % 9 == 0)
        rs_h[ns++] = (reel_header_t){"Set-Cookie", 10, "sid=1", 5};
    headers_text(m->resp_headers, sizeof m->resp_headers, rs_h, ns);
    /* Some bodies were stored decoded (body_decoded): their
     * Content-Encoding is not undone again. */
    bool stored_decoded = coding != 0 && i % 19 == 4;
    reel_response_head_t rs = {.status = (uint32_t)m->status,
                               .reason = "R",
                               .http_version = "HTTP/1.1",
                               .headers = rs_h,
                               .n_headers = ns,
                               .body_decoded = stored_decoded};
    reel_recorder_response_head(f, &rs);
    uint8_t *body;
    size_t len;
    if (i == BIG_FLOW) {
        len = BIG_LEN;
        body = reel_malloc(len);
        for (size_t k = 0; k < len; k++)
            body[k] = (uint8_t)('a' + (k * 7 + k / 13) % 26 % 5); /* a..e: no "needle" */
        memcpy(body + BIG_AT, "nEEdle", 6);
        m->resp_needle = true;
    } else {
        len = (size_t)(40 + (i * 37) % 2000);
        body = reel_malloc(len);
        for (size_t k = 0; k < len; k++)
            body[k] = (uint8_t)('a' + (k + (size_t)i) % 5);
        m->resp_needle = i % 7 == 0;
        if (m->resp_needle)
            memcpy(body + len / 2, "Needle", 6);
    }
    size_t elen;
    uint8_t *enc = encode(stored_decoded ? 0 : coding, body, len, &elen);
    m->resp_len = elen;
    feed(f, 1, enc, elen);
    free(enc);
    free(body);
    if (i % 17 == 3) {
        /* messages (as after a WebSocket upgrade): each searched as a body
         * of its own, the client's as the request side */
        const char *cm = i % 2 ? "ws NeEdLe! c" : "ws plain c";
        const char *sm = i % 3 == 0 ? "srv needle" : "srv plain";
        reel_message_t msg = {.from_client = 1, .opcode = 1, .data = cm, .len = strlen(cm)};
        msg.length = msg.len;
        reel_recorder_message(f, &msg);
        msg = (reel_message_t){.from_client = 0, .opcode = 1, .data = sm, .len = strlen(sm)};
        msg.length = msg.len;
        reel_recorder_message(f, &msg);
        m->ws = true;
        m->req_needle |= i % 2 == 1;
        m->resp_needle |= i % 3 == 0;
        m->req_len += strlen(cm);
        m->resp_len += strlen(sm);
    }
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
}

static void record_huge(reel_recorder_t *r) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    huge_id = reel_rflow_id(f);
    reel_header_t rq_h[] = {{"Host", 4, "huge.test", 9}};
    reel_request_head_t rq = {.method = "GET",
                              .scheme = "http",
                              .host = "huge.test",
                              .port = 80,
                              .target = "/huge",
                              .http_version = "HTTP/1.1",
                              .headers = rq_h,
                              .n_headers = 1};
    reel_recorder_request_head(f, &rq);
    reel_header_t rs_h[] = {{"Content-Encoding", 16, "gzip", 4}};
    reel_response_head_t rs = {
        .status = 200, .reason = "OK", .http_version = "HTTP/1.1", .headers = rs_h, .n_headers = 1};
    reel_recorder_response_head(f, &rs);
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    static uint8_t in[65536], out[65536];
    for (size_t k = 0; k < sizeof in; k++)
        in[k] = (uint8_t)('a' + k % 3);
    for (size_t done = 0; done < HUGE_LEN; done += sizeof in) {
        bool last = done + sizeof in >= HUGE_LEN;
        if (last)
            memcpy(in + sizeof in - 7, "endmark", 7);
        z.next_in = in;
        z.avail_in = sizeof in;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            assert_true(deflate(&z, last ? Z_FINISH : Z_NO_FLUSH) != Z_STREAM_ERROR);
            reel_recorder_response_body(f, out, sizeof out - z.avail_out);
        } while (z.avail_out == 0);
    }
    deflateEnd(&z);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
}

static void exec(const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(reel_session_db(sess), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static int setup(void **state) {
    (void)state;
    home = reel_test_tmpdir("filter_spool");
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(home, "s", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &sess, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(sess, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    for (int i = 1; i <= NFLOWS; i++)
        record_one(r, i);
    if (reel_recorder_close(r, &err) != REEL_OK)
        fail_msg("close: %s", reel_err_str(&err));
    if (reel_session_open(home, "h", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &hsess, &err) !=
            REEL_OK ||
        reel_recorder_open(hsess, &o, &r, &err) != REEL_OK)
        fail_msg("open h: %s", reel_err_str(&err));
    record_huge(r);
    if (reel_recorder_close(r, &err) != REEL_OK)
        fail_msg("close h: %s", reel_err_str(&err));
    for (int i = 1; i <= NFLOWS; i++) {
        model_t *m = &M[i];
        char *sql = NULL;
        m->annotated = i % 10 == 0;
        m->tagged = i % 8 == 0;
        m->marked = i % 12 == 0;
        if (m->annotated) {
            sql = reel_asprintf("INSERT INTO annotations(flow_id, created_us, text) VALUES "
                                "(%llu, 1, 'Hello from %d')",
                                (unsigned long long)m->id, i);
            exec(sql);
            free(sql);
        }
        if (m->tagged) {
            sql = reel_asprintf("INSERT INTO tags VALUES (%llu, 't1')", (unsigned long long)m->id);
            exec(sql);
            free(sql);
        }
        if (m->marked) {
            sql = reel_asprintf("UPDATE flows SET marked = 1 WHERE id = %llu",
                                (unsigned long long)m->id);
            exec(sql);
            free(sql);
        }
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    reel_session_close(sess);
    reel_session_close(hsess);
    reel_test_rm_rf(home);
    free(home);
    return 0;
}

/* Runs expr the way `reel flows` does (its SQL, then the spool verdict for
 * every row); sets got[i] for the flows of model index i that match. */
static void run(const char *expr, bool *got) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_t *f = NULL;
    if (reel_filter_compile(expr, &f, &err) != REEL_OK)
        fail_msg("compile \"%s\": %s", expr, reel_err_str(&err));
    sqlite3 *db = reel_session_db(sess);
    char *sql = reel_asprintf("SELECT id FROM flows WHERE %s ORDER BY id", reel_filter_sql(f));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("prepare \"%s\": %s", sql, sqlite3_errmsg(db));
    assert_int_equal(reel_filter_bind(f, st, 1), sqlite3_bind_parameter_count(st) + 1);
    memset(got, 0, (NFLOWS + 1) * sizeof *got);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
        int match = 0;
        if (reel_filter_match_flow(f, sess, id, &match, &err) != REEL_OK)
            fail_msg("match \"%s\" flow %llu: %s", expr, (unsigned long long)id,
                     reel_err_str(&err));
        for (int i = 1; i <= NFLOWS; i++)
            if (M[i].id == id)
                got[i] = match;
    }
    sqlite3_finalize(st);
    free(sql);
    reel_filter_free(f);
}

typedef bool (*pred_fn)(const model_t *m);

static bool p_b(const model_t *m) {
    return m->req_needle || m->resp_needle;
}
static bool p_bq(const model_t *m) {
    return m->req_needle;
}
static bool p_bs(const model_t *m) {
    return m->resp_needle;
}
static bool p_h_trace(const model_t *m) {
    return strcasestr(m->req_headers, "x-trace: abc") ||
           strcasestr(m->resp_headers, "x-trace: abc");
}
static bool p_hs_cookie(const model_t *m) {
    return strcasestr(m->resp_headers, "set-cookie") != NULL;
}
static bool p_hq_json(const model_t *m) {
    return strstr(m->req_headers, "json") != NULL;
}
static bool p_h_anchor(const model_t *m) { /* ^ and $ at line ends (multiline) */
    return strstr(m->req_headers, "Host: api.test\r\n") ||
           strstr(m->resp_headers, "Host: api.test\r\n");
}
static bool p_c404(const model_t *m) {
    return m->has_resp && m->status == 404;
}
static bool p_s(const model_t *m) {
    return m->has_resp;
}
static bool p_q(const model_t *m) {
    return !m->has_resp;
}
static bool p_e(const model_t *m) {
    return !m->has_resp;
}
static bool p_t_json(const model_t *m) {
    return strstr(m->req_ct, "json") || strstr(m->resp_ct, "json");
}
static bool p_tq_form(const model_t *m) {
    return strstr(m->req_ct, "form") != NULL;
}
static bool p_ts_html(const model_t *m) {
    return strstr(m->resp_ct, "html") != NULL;
}
static bool p_d(const model_t *m) {
    return m->api;
}
static bool p_m(const model_t *m) {
    return m->post;
}
static bool p_src(const model_t *m) {
    return strncmp(m->client, "10.0.3.", 7) == 0;
}
static bool p_dst(const model_t *m) {
    return m->https_dst;
}
static bool p_comment(const model_t *m) {
    return m->annotated;
}
static bool p_tag(const model_t *m) {
    return m->tagged;
}
static bool p_marked(const model_t *m) {
    return m->marked;
}
static bool p_all(const model_t *m) {
    (void)m;
    return true;
}
static bool p_id(const model_t *m) {
    return m->id >= 10 && m->id <= 50;
}
static bool p_size(const model_t *m) {
    return m->req_len + m->resp_len > 1024;
}
static bool p_size_le(const model_t *m) {
    return m->req_len + m->resp_len <= 100;
}
static bool p_http(const model_t *m) {
    (void)m;
    return true;
}
static bool p_since(const model_t *m) {
    (void)m;
    return true;
}
static bool p_until(const model_t *m) {
    (void)m;
    return false;
}
static bool p_u(const model_t *m) {
    return m->id % 10 == 7;
} /* "/p/…7" with id == i */

typedef struct {
    const char *expr;
    pred_fn pred;
} atom_t;

static const atom_t ATOMS[] = {
    {"~b needle", p_b},
    {"~bq 'needle!'", p_bq},
    {"~bs NEEDLE", p_bs},
    {"~h 'x-trace: abc'", p_h_trace},
    {"~hs set-cookie", p_hs_cookie},
    {"~hq json", p_hq_json},
    {"~h '^host: api\\.test$'", p_h_anchor},
    {"~c 404", p_c404},
    {"~s", p_s},
    {"~q", p_q},
    {"~e", p_e},
    {"~t json", p_t_json},
    {"~tq form", p_tq_form},
    {"~ts html", p_ts_html},
    {"~d ^api", p_d},
    {"~m post", p_m},
    {"~src '^10\\.0\\.3\\.'", p_src},
    {"~dst ':443$'", p_dst},
    {"~comment 'hello from'", p_comment},
    {"~tag t1", p_tag},
    {"~marked", p_marked},
    {"~all", p_all},
    {"~id 10-50", p_id},
    {"~size >1k", p_size},
    {"~size <=100", p_size_le},
    {"~http", p_http},
    {"~since 2000-01-01", p_since},
    {"~until @1000", p_until},
    {"~u '7$'", p_u},
};
#define NATOMS (sizeof ATOMS / sizeof ATOMS[0])

/* Every operator on its own, and negated, against the model. */
static void test_atoms(void **state) {
    (void)state;
    bool got[NFLOWS + 1];
    for (size_t a = 0; a < NATOMS; a++) {
        for (int neg = 0; neg < 2; neg++) {
            char *expr = reel_asprintf("%s%s", neg ? "!" : "", ATOMS[a].expr);
            run(expr, got);
            for (int i = 1; i <= NFLOWS; i++) {
                bool want = ATOMS[a].pred(&M[i]) != (neg == 1);
                if (got[i] != want)
                    fail_msg("\"%s\" on flow %d: got %d, want %d", expr, i, got[i], want);
            }
            free(expr);
        }
    }
    /* the model's sanity: the needle is found in every coding */
    int codings[5] = {0};
    for (int i = 1; i <= NFLOWS; i++)
        if (M[i].resp_needle)
            codings[i % 5]++;
    for (int c = 0; c < 5; c++)
        assert_true(codings[c] > 0);
}

/* Random combinations of atoms with ! & | and parentheses, against the same
 * combination of the atoms' truth tables. */
static bool eval_rand(unsigned *seed, int depth, reel_buf_t *b, bool *truth) {
    unsigned r = (unsigned)rand_r(seed);
    if (depth == 0 || r % 3 == 0) {
        size_t a = (size_t)rand_r(seed) % NATOMS;
        bool neg = rand_r(seed) % 3 == 0;
        reel_buf_printf(b, "%s%s", neg ? "!" : "", ATOMS[a].expr);
        for (int i = 1; i <= NFLOWS; i++)
            truth[i] = ATOMS[a].pred(&M[i]) != neg;
        return true;
    }
    bool l[NFLOWS + 1], rr[NFLOWS + 1];
    bool neg = rand_r(seed) % 4 == 0;
    bool and = rand_r(seed) % 2 == 0;
    reel_buf_puts(b, neg ? "!(" : "(");
    eval_rand(seed, depth - 1, b, l);
    reel_buf_puts(b, and? " & " : " | ");
    eval_rand(seed, depth - 1, b, rr);
    reel_buf_puts(b, ")");
    for (int i = 1; i <= NFLOWS; i++)
        truth[i] = (and? (l[i] && rr[i]) : (l[i] || rr[i])) != neg;
    return true;
}

static void test_combinations(void **state) {
    (void)state;
    unsigned seed = 12345;
    bool want[NFLOWS + 1], got[NFLOWS + 1];
    for (int k = 0; k < 40; k++) {
        reel_buf_t b;
        reel_buf_init(&b, 0);
        eval_rand(&seed, 3, &b, want);
        reel_buf_puts(&b, "");
        run((const char *)b.data, got);
        for (int i = 1; i <= NFLOWS; i++)
            if (got[i] != want[i])
                fail_msg("\"%s\" on flow %d: got %d, want %d", (const char *)b.data, i, got[i],
                         want[i]);
        reel_buf_free(&b);
    }
}

/* The big gzip body: found across the decoder's pieces; a regex that needs
 * the start of the body (^) is not fooled by later windows. */
static void test_big_body(void **state) {
    (void)state;
    bool got[NFLOWS + 1];
    run("~bs 'nee.le' & ~id 170", got);
    assert_true(got[BIG_FLOW]);
    run("~bs '^needle'", got);
    for (int i = 1; i <= NFLOWS; i++)
        assert_false(got[i]);
    run("~bs '^[a-e]{100}'", got);
    assert_true(got[BIG_FLOW]);
    run("~bs 'needle[a-e]{1000}' & ~id 170", got);
    assert_true(got[BIG_FLOW]);
    run("~bs '[a-e]{10}$' & ~id 170", got);
    assert_true(got[BIG_FLOW]);
    /* The documented limit: a match longer than the search window (from
     * the needle to the end: 1.4 MiB) is not found. */
    run("~bs 'needle[a-e]+$' & ~id 170", got);
    assert_false(got[BIG_FLOW]);
    run("~bs 'zzz' & ~id 170", got);
    assert_false(got[BIG_FLOW]);
    /* a GET's request has no body to search (as in mitmproxy), a POST's
     * is not empty: test_as_shown has more */
    run("~bq '^$'", got);
    for (int i = 1; i <= NFLOWS; i++)
        assert_false(got[i]);
    run("~h '^$' | ~bq '(?s)^.+$' & !~m post", got);
    for (int i = 1; i <= NFLOWS; i++)
        assert_int_equal(got[i], M[i].ws && !M[i].post);
}

static long max_rss_kib(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* A 40 MiB decoded body is searched in bounded memory: the peak RSS grows
 * by far less than the body (by 40 MiB if the body were kept whole), and a
 * needle at its very end is found. */
static void test_huge_body_memory(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    long before = max_rss_kib();
    static const char *const exprs[] = {"~bs 'endmark$'", "~b ENDMARK", "!~bs zzz", "~bs 'c{2}'"};
    for (size_t i = 0; i < sizeof exprs / sizeof *exprs; i++) {
        reel_filter_t *f = NULL;
        assert_int_equal(reel_filter_compile(exprs[i], &f, &err), REEL_OK);
        int match = 0;
        if (reel_filter_match_flow(f, hsess, huge_id, &match, &err) != REEL_OK)
            fail_msg("%s: %s", exprs[i], reel_err_str(&err));
        assert_int_equal(match, i < 3);
        reel_filter_free(f);
    }
    long grew = max_rss_kib() - before;
    if (grew > 12 * 1024)
        fail_msg("peak RSS grew by %ld KiB searching a 40 MiB body", grew);
}

/* One flow of the session of test_as_shown: a GET (a HEAD if head) whose
 * response has Content-Encoding enc (NULL: none) and body[0..len), fed in
 * 16 KiB pieces; a client message cmsg and a server one after it, if
 * given. Returns its id. */
static uint64_t shown_flow(reel_recorder_t *r, bool head, const char *enc, const uint8_t *body,
                           size_t len, const char *cmsg, const char *smsg) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    uint64_t id = reel_rflow_id(f);
    reel_header_t rq_h[] = {{"Host", 4, "shown.test", 10}};
    reel_request_head_t rq = {.method = head ? "HEAD" : "GET",
                              .scheme = "http",
                              .host = "shown.test",
                              .port = 80,
                              .target = "/",
                              .http_version = "HTTP/1.1",
                              .headers = rq_h,
                              .n_headers = 1};
    reel_recorder_request_head(f, &rq);
    reel_header_t rs_h[] = {{"Content-Encoding", 16, enc, enc ? strlen(enc) : 0}};
    reel_response_head_t rs = {.status = 200,
                               .reason = "OK",
                               .http_version = "HTTP/1.1",
                               .headers = rs_h,
                               .n_headers = enc ? 1 : 0};
    reel_recorder_response_head(f, &rs);
    feed(f, 1, body, len);
    for (int k = 0; k < 2; k++) {
        const char *m = k ? smsg : cmsg;
        if (m == NULL)
            continue;
        reel_message_t msg = {.from_client = !k, .opcode = 1, .data = m, .len = strlen(m)};
        msg.length = msg.len;
        reel_recorder_message(f, &msg);
    }
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return id;
}

/* gzip of text, then tail (NULL: none) after the member; owned. */
static uint8_t *gzip_then(const char *text, size_t tlen, const char *tail, size_t *out_len) {
    size_t glen;
    uint8_t *g = encode(1, (const uint8_t *)text, tlen, &glen);
    size_t n = tail ? strlen(tail) : 0;
    g = reel_realloc(g, glen + n);
    memcpy(g + glen, tail ? tail : "", n);
    *out_len = glen + n;
    return g;
}

/* Body filters search what `reel flow` shows (session/filter.h): a body
 * whose Content-Encoding breaks off early as stored, whole; one that breaks
 * off late decoded, then as stored from the chunk it broke in; and a body
 * of no bytes is not searched at all, as mitmproxy skips empty content
 * (but an empty message is). */
static void test_as_shown(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *us = NULL;
    reel_recorder_t *r = NULL;
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    if (reel_session_open(home, "u", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &us, &err) != REEL_OK ||
        reel_recorder_open(us, &o, &r, &err) != REEL_OK)
        fail_msg("open u: %s", reel_err_str(&err));
    uint64_t id[9];
    /* 1: a coding the body does not have */
    const char *lie = "this is not gzip at all MANGO";
    id[1] = shown_flow(r, false, "gzip", (const uint8_t *)lie, strlen(lie), NULL, NULL);
    /* 2: garbage after a short gzip member: the whole body as stored */
    size_t n;
    uint8_t *b = gzip_then("good part KIWI\n", 15, "garbage after it PAPAYA", &n);
    id[2] = shown_flow(r, false, "gzip", b, n, NULL, NULL);
    free(b);
    /* 3: garbage after 100 KiB of decoded text: those, then the chunk the
     * decoder failed in as stored */
    reel_buf_t t;
    reel_buf_init(&t, 0);
    for (int i = 0; t.len < 100000; i++)
        reel_buf_printf(&t, "line %d of the good part\n", i);
    b = gzip_then((const char *)t.data, t.len, "garbage LYCHEE", &n);
    id[3] = shown_flow(r, false, "gzip", b, n, NULL, NULL);
    free(b);
    /* 4: a plain body of 100 KiB that says gzip: as stored, to its end */
    memcpy(t.data + t.len - 7, "DURIAN\n", 7);
    id[4] = shown_flow(r, false, "gzip", t.data, t.len, NULL, NULL);
    reel_buf_free(&t);
    /* 5: a gzip stream cut short: decoded as far as it goes */
    b = gzip_then("cut short GUAVA and more text after it", 38, NULL, &n);
    id[5] = shown_flow(r, false, "gzip", b, n - 12, NULL, NULL);
    free(b);
    /* 6: no body either way (a HEAD) */
    id[6] = shown_flow(r, true, NULL, NULL, 0, NULL, NULL);
    /* 7: stored bytes that decode to nothing: an empty body all the same */
    b = gzip_then("", 0, NULL, &n);
    id[7] = shown_flow(r, false, "gzip", b, n, NULL, NULL);
    free(b);
    /* 8: no response body, an empty client message and a server one */
    id[8] = shown_flow(r, false, NULL, NULL, 0, "", "hi");
    if (reel_recorder_close(r, &err) != REEL_OK)
        fail_msg("close u: %s", reel_err_str(&err));
    static const struct {
        const char *expr;
        unsigned want; /* bit k: flow k of id[] matches */
    } cases[] = {
        {"~bs MANGO", 1u << 1},       {"~b 'not gzip'", 1u << 1},
        {"~bs PAPAYA", 1u << 2},      {"~bs KIWI", 0},
        {"~bs LYCHEE", 1u << 3},      {"~bs 'line 3000 of the good part'", 1u << 3 | 1u << 4},
        {"~bs DURIAN", 1u << 4},      {"~bs '^line 0 of'", 1u << 3 | 1u << 4},
        {"~bs GUAVA", 1u << 5},       {"~b ''", 0x1be},     /* all but 6 */
        {"~bs '^$'", 1u << 7},                              /* decoded to nothing; 6 has no body */
        {"~bq '^$'", 1u << 8},                              /* the empty message; no GET's body */
        {"!~b .", 1u << 6 | 1u << 7}, {"!~bs ''", 1u << 6}, /* 8 has a server message */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        reel_filter_t *f = NULL;
        if (reel_filter_compile(cases[c].expr, &f, &err) != REEL_OK)
            fail_msg("compile %s: %s", cases[c].expr, reel_err_str(&err));
        for (int k = 1; k <= 8; k++) {
            int match = -1;
            if (reel_filter_match_flow(f, us, id[k], &match, &err) != REEL_OK)
                fail_msg("%s: %s", cases[c].expr, reel_err_str(&err));
            if (match != (int)(cases[c].want >> k & 1))
                fail_msg("\"%s\" on flow %d: got %d", cases[c].expr, k, match);
        }
        reel_filter_free(f);
    }
    reel_session_close(us);
}

/* API edges: no spool terms, NULL filter, a flow that is not there. */
static void test_api(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_t *f = NULL;
    int match = -1;
    assert_int_equal(reel_filter_compile("~d x", &f, &err), REEL_OK);
    assert_false(reel_filter_needs_spool(f));
    assert_int_equal(reel_filter_match_flow(f, sess, 1, &match, &err), REEL_OK);
    assert_int_equal(match, 1);
    reel_filter_free(f);
    assert_false(reel_filter_needs_spool(NULL));
    assert_int_equal(reel_filter_match_flow(NULL, sess, 1, &match, &err), REEL_OK);
    assert_int_equal(match, 1);
    assert_int_equal(reel_filter_compile("!~b needle", &f, &err), REEL_OK);
    assert_true(reel_filter_needs_spool(f));
    assert_string_equal(reel_filter_sql(f), "(1)");
    assert_int_equal(reel_filter_match_flow(f, sess, 999999, &match, &err), REEL_OK);
    assert_int_equal(match, 0); /* no such row */
    reel_filter_free(f);
}

int main(void) {
    /* the body index is off by default: on, 1 MiB per body */
    reel_test_user_config("body_index_max: 1048576\n");
    const struct CMUnitTest tests[] = {
        /* first: the peak RSS before it is the set-up's */
        cmocka_unit_test(test_huge_body_memory),
        cmocka_unit_test(test_atoms),
        cmocka_unit_test(test_combinations),
        cmocka_unit_test(test_big_body),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_as_shown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
