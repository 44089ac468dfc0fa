/* reel export: HAR 1.2 structure (every required field, with its type, and
 * no null anywhere: Chromium's importer wants numbers), a fixture full of
 * secrets of which none survives --redact in any format, and a round trip
 * export HAR -> import -> the same flows, headers and bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <ftw.h>
#include <jansson.h>
#include <zlib.h>

#include "base/mem.h"
#include "session/export.h"
#include "session/har.h"
#include "session/recorder.h"
#include "session/redact.h"
#include "session/session.h"

static char tmp_dir[4096];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static int setup(void **state) {
    const char *base = getenv("REEL_TEST_TMP");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0700);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/export_test.XXXXXX", base);
    assert_non_null(mkdtemp(tmp_dir));
    return 0;
}

static int teardown(void **state) {
    nftw(tmp_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- the fixture: flows full of secrets --------------------------------- */

/* Every one of these must be gone from a redacted export. */
static const char *const secrets[] = {
    "SECRET_BEARER1",    "SECRET_COOKIE1", "SECRET_APIKEY1",
    "SECRET_Q1",         "SECRET_JSON1",   "SECRET_JSON2",
    "SECRET_SETCOOKIE1", "SECRET_FORM1",   "SECRET_FORM2",
    "SECRET_PROXYAUTH",  "SECRET_BEARER2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
    "SECRET_WS1",        "SECRET_QJSON",
};
#define NSECRETS (sizeof secrets / sizeof secrets[0])

static const char json_body[] =
    "{\"items\":[1,2],\"session_token\":\"SECRET_JSON1\",\"nested\":{\"password\":"
    "\"SECRET_JSON2\",\"list\":[{\"ok\":true}]}}";
static const char form_body[] = "user=alice&password=SECRET_FORM1&client_secret=SECRET_FORM2";
static const char text_body[] =
    "your token: Bearer SECRET_BEARER2 and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\n";
static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I',
                              'H',  'D', 'R', 0,   0,    0,    1,    0,    0, 0, 1, 8};
static const uint8_t nul_body[] = {'a', 0, 'b', '\'', '%', '\\', 0xff, 'z'};

static size_t gzip(const void *in, size_t n, uint8_t *out, size_t cap) {
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

#define H(n, v)                                                                                    \
    { n, sizeof n - 1, v, sizeof v - 1 }

static reel_session_t *open_session(const char *name) {
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(tmp_dir, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err) != REEL_OK)
        fail_msg("open: %s", err.msg);
    return s;
}

static reel_recorder_t *recorder(reel_session_t *s) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.fsync = REEL_FSYNC_NEVER;
    reel_recorder_t *rec = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_open(s, &o, &rec, &err), REEL_OK);
    return rec;
}

static void close_recorder(reel_recorder_t *rec) {
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(rec, &err), REEL_OK);
}

static const int64_t T0 = INT64_C(1767323045123000); /* 2026-01-02T03:04:05.123Z */

static void http_flow(reel_recorder_t *rec, int64_t t, const char *method, const char *target,
                      const reel_header_t *qh, size_t nq, const void *qb, size_t qn,
                      uint32_t status, const reel_header_t *sh, size_t ns, const void *sb,
                      size_t sn) {
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP,
                             .client_addr = "127.0.0.1:5000",
                             .server_addr = "192.0.2.7:443",
                             .time_us = t};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    reel_request_head_t rh = {.method = method,
                              .scheme = "https",
                              .host = "api.example.test",
                              .port = 443,
                              .target = target,
                              .http_version = "HTTP/1.1",
                              .headers = qh,
                              .n_headers = nq,
                              .time_us = t};
    reel_recorder_request_head(f, &rh);
    if (qn)
        reel_recorder_request_body(f, qb, qn);
    reel_response_head_t sp = {.status = status,
                               .reason = "OK",
                               .http_version = "HTTP/1.1",
                               .headers = sh,
                               .n_headers = ns,
                               .time_us = t + 20000};
    reel_recorder_response_head(f, &sp);
    if (sn)
        reel_recorder_response_body(f, sb, sn);
    reel_timings_t tm = {-1, -1, -1, 100, 19000, 1000, -1};
    reel_recorder_flow_end(f, &tm, t + 30000, t + 1000, t + 20000);
}

/* Records the fixture into a new session `name`; returns it open. */
static reel_session_t *fixture(const char *name) {
    reel_session_t *s = open_session(name);
    reel_recorder_t *rec = recorder(s);
    uint8_t gz[512];
    size_t gzn = gzip(json_body, strlen(json_body), gz, sizeof gz);

    const reel_header_t q1[] = {H("Host", "api.example.test"),
                                H("Authorization", "Bearer SECRET_BEARER1"),
                                H("Cookie", "sid=SECRET_COOKIE1; theme=dark"),
                                H("X-Api-Key", "SECRET_APIKEY1"), H("Accept", "*/*")};
    const reel_header_t s1[] = {H("Content-Type", "application/json"),
                                H("Content-Encoding", "gzip"),
                                H("Set-Cookie", "sid=SECRET_SETCOOKIE1; Path=/; HttpOnly")};
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", gzn);
    reel_header_t s1b[4];
    memcpy(s1b, s1, sizeof s1);
    s1b[3] = (reel_header_t){"Content-Length", 14, cl, strlen(cl)};
    http_flow(rec, T0, "GET", "/v1/items?access_token=SECRET_Q1&page=2&q=%7B%7D", q1, 5, NULL, 0,
              200, s1b, 4, gz, gzn);

    const reel_header_t q2[] = {H("Host", "api.example.test"),
                                H("Content-Type", "application/x-www-form-urlencoded"),
                                H("Proxy-Authorization", "Basic SECRET_PROXYAUTH")};
    const reel_header_t s2[] = {H("Content-Type", "text/plain")};
    http_flow(rec, T0 + 100000, "POST", "/login?next=%2Fhome&api_key=SECRET_QJSON", q2, 3,
              form_body, strlen(form_body), 200, s2, 1, text_body, strlen(text_body));

    const reel_header_t q3[] = {H("Host", "api.example.test"),
                                H("Content-Type", "application/octet-stream")};
    const reel_header_t s3[] = {H("Content-Type", "image/png")};
    http_flow(rec, T0 + 200000, "PUT", "/upload", q3, 2, nul_body, sizeof nul_body, 200, s3, 1, png,
              sizeof png);

    /* a WebSocket flow */
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0 + 300000};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    const reel_header_t q4[] = {H("Host", "api.example.test"), H("Upgrade", "websocket"),
                                H("Connection", "Upgrade"),
                                H("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")};
    reel_request_head_t rh = {.method = "GET",
                              .scheme = "https",
                              .host = "api.example.test",
                              .port = 443,
                              .target = "/ws",
                              .http_version = "HTTP/1.1",
                              .headers = q4,
                              .n_headers = 4,
                              .time_us = T0 + 300000};
    reel_recorder_request_head(f, &rh);
    const reel_header_t s4[] = {H("Upgrade", "websocket"), H("Connection", "Upgrade")};
    reel_response_head_t sp = {.status = 101,
                               .reason = "Switching Protocols",
                               .http_version = "HTTP/1.1",
                               .headers = s4,
                               .n_headers = 2,
                               .time_us = T0 + 310000};
    reel_recorder_response_head(f, &sp);
    static const char m1[] = "{\"type\":\"auth\",\"token\":\"SECRET_WS1\"}";
    reel_message_t msg = {
        .from_client = 1, .opcode = 1, .data = m1, .len = strlen(m1), .length = strlen(m1)};
    reel_recorder_message(f, &msg);
    static const uint8_t bin[] = {1, 2, 0, 255};
    msg = (reel_message_t){.from_client = 0, .opcode = 2, .data = bin, .len = 4, .length = 4};
    reel_recorder_message(f, &msg);
    reel_recorder_flow_end(f, NULL, T0 + 400000, 0, 0);
    close_recorder(rec);

    sqlite3 *db = reel_session_db(s);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO annotations(flow_id, created_us, text) VALUES "
                                  "(1, 1767323045123000, 'login works here');"
                                  "INSERT INTO tags(flow_id, tag) VALUES (1, 'bug-42');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return s;
}

/* Exports s in format fmt (redact: default rules) into an owned string. */
static char *export_str(reel_session_t *s, reel_export_format fmt, int redact, const char *filter,
                        size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&buf, &n);
    assert_non_null(out);
    reel_redact_t *r = redact ? reel_redact_new() : NULL;
    reel_export_opts_t o = {.format = fmt, .filter = filter, .redact = r};
    reel_err_t err;
    reel_err_clear(&err);
    reel_export_stats_t st;
    reel_rc rc = reel_export(s, out, &o, &st, &err);
    if (rc != REEL_OK)
        fail_msg("export: %s", err.msg);
    fclose(out);
    reel_redact_free(r);
    if (len)
        *len = n;
    return buf;
}

static int contains(const char *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* ---- HAR 1.2 structure --------------------------------------------------- */

static json_t *get(json_t *obj, const char *key, json_type type, const char *where) {
    json_t *j = json_object_get(obj, key);
    if (j == NULL || json_typeof(j) != type)
        fail_msg("%s.%s: missing or of the wrong type", where, key);
    return j;
}

static void number(json_t *obj, const char *key, const char *where) {
    json_t *j = json_object_get(obj, key);
    if (!json_is_number(j))
        fail_msg("%s.%s: not a number", where, key);
}

static void no_nulls(json_t *j, const char *where) {
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_null(j))
        fail_msg("a null in %s", where);
    if (json_is_object(j)) {
        json_object_foreach(j, k, v) no_nulls(v, k);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) no_nulls(v, where);
    }
}

static void pairs(json_t *obj, const char *key, const char *where) {
    json_t *a = get(obj, key, JSON_ARRAY, where);
    size_t i;
    json_t *p;
    json_array_foreach(a, i, p) {
        get(p, "name", JSON_STRING, key);
        get(p, "value", JSON_STRING, key);
    }
}

static void check_har(json_t *root) {
    no_nulls(root, "log");
    json_t *log = get(root, "log", JSON_OBJECT, "");
    assert_string_equal(json_string_value(get(log, "version", JSON_STRING, "log")), "1.2");
    json_t *creator = get(log, "creator", JSON_OBJECT, "log");
    get(creator, "name", JSON_STRING, "creator");
    get(creator, "version", JSON_STRING, "creator");
    json_t *pages = get(log, "pages", JSON_ARRAY, "log");
    assert_int_equal(json_array_size(pages), 1);
    json_t *page = json_array_get(pages, 0);
    get(page, "startedDateTime", JSON_STRING, "page");
    get(page, "id", JSON_STRING, "page");
    get(page, "title", JSON_STRING, "page");
    get(page, "pageTimings", JSON_OBJECT, "page");
    json_t *entries = get(log, "entries", JSON_ARRAY, "log");
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        assert_string_equal(json_string_value(get(e, "pageref", JSON_STRING, "entry")), "page_1");
        const char *sd = json_string_value(get(e, "startedDateTime", JSON_STRING, "entry"));
        assert_int_equal(strlen(sd), 24); /* YYYY-MM-DDTHH:MM:SS.mmmZ */
        assert_int_equal(sd[23], 'Z');
        number(e, "time", "entry");
        get(e, "cache", JSON_OBJECT, "entry");
        json_t *req = get(e, "request", JSON_OBJECT, "entry");
        get(req, "method", JSON_STRING, "request");
        get(req, "url", JSON_STRING, "request");
        get(req, "httpVersion", JSON_STRING, "request");
        pairs(req, "cookies", "request");
        pairs(req, "headers", "request");
        pairs(req, "queryString", "request");
        get(req, "headersSize", JSON_INTEGER, "request");
        get(req, "bodySize", JSON_INTEGER, "request");
        json_t *post = json_object_get(req, "postData");
        if (post) {
            get(post, "mimeType", JSON_STRING, "postData");
            get(post, "text", JSON_STRING, "postData");
            pairs(post, "params", "postData");
        }
        json_t *resp = get(e, "response", JSON_OBJECT, "entry");
        get(resp, "status", JSON_INTEGER, "response");
        get(resp, "statusText", JSON_STRING, "response");
        get(resp, "httpVersion", JSON_STRING, "response");
        pairs(resp, "cookies", "response");
        pairs(resp, "headers", "response");
        get(resp, "redirectURL", JSON_STRING, "response");
        get(resp, "headersSize", JSON_INTEGER, "response");
        get(resp, "bodySize", JSON_INTEGER, "response");
        json_t *c = get(resp, "content", JSON_OBJECT, "response");
        get(c, "size", JSON_INTEGER, "content");
        get(c, "mimeType", JSON_STRING, "content");
        json_t *t = get(e, "timings", JSON_OBJECT, "entry");
        static const char *const keys[] = {"blocked", "dns",     "connect", "send",
                                           "wait",    "receive", "ssl"};
        for (int k = 0; k < 7; k++) {
            number(t, keys[k], "timings");
            double v = json_number_value(json_object_get(t, keys[k]));
            assert_true(k >= 3 && k <= 5 ? v >= 0 : v >= -1);
        }
        get(e, "_reel", JSON_OBJECT, "entry");
    }
}

static void test_har_structure(void **state) {
    reel_session_t *s = fixture("structure");
    size_t n;
    char *har = export_str(s, REEL_EXPORT_HAR, 0, NULL, &n);
    json_error_t jerr;
    json_t *root = json_loadb(har, n, 0, &jerr);
    if (root == NULL)
        fail_msg("HAR is not JSON: %s at %d:%d", jerr.text, jerr.line, jerr.column);
    check_har(root);
    json_t *entries = json_object_get(json_object_get(root, "log"), "entries");
    assert_int_equal(json_array_size(entries), 4);

    /* flow 1: decoded JSON body, cookies, query, annotation and tag */
    json_t *e = json_array_get(entries, 0);
    json_t *req = json_object_get(e, "request");
    assert_string_equal(json_string_value(json_object_get(req, "url")),
                        "https://api.example.test/v1/items?access_token=SECRET_Q1&page=2&q=%7B%7D");
    json_t *qs = json_object_get(req, "queryString");
    assert_int_equal(json_array_size(qs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(qs, 1), "name")), "page");
    json_t *ck = json_object_get(req, "cookies");
    assert_int_equal(json_array_size(ck), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ck, 1), "value")), "dark");
    json_t *content = json_object_get(json_object_get(e, "response"), "content");
    assert_string_equal(json_string_value(json_object_get(content, "text")), json_body);
    assert_null(json_object_get(content, "encoding"));
    json_t *sc = json_array_get(json_object_get(json_object_get(e, "response"), "cookies"), 0);
    assert_string_equal(json_string_value(json_object_get(sc, "path")), "/");
    assert_true(json_is_true(json_object_get(sc, "httpOnly")));
    assert_string_equal(json_string_value(json_object_get(e, "comment")),
                        "login works here\ntags: bug-42");
    json_t *r = json_object_get(e, "_reel");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "tags"), 0)), "bug-42");
    assert_string_equal(json_string_value(json_object_get(e, "startedDateTime")),
                        "2026-01-02T03:04:05.123Z");
    assert_string_equal(json_string_value(json_object_get(e, "serverIPAddress")), "192.0.2.7");
    json_t *t = json_object_get(e, "timings");
    assert_true(json_number_value(json_object_get(t, "wait")) == 19.0);

    /* flow 2: form params */
    e = json_array_get(entries, 1);
    json_t *post = json_object_get(json_object_get(e, "request"), "postData");
    assert_string_equal(json_string_value(json_object_get(post, "text")), form_body);
    json_t *params = json_object_get(post, "params");
    assert_int_equal(json_array_size(params), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(params, 1), "value")),
                        "SECRET_FORM1");

    /* flow 3: binary both ways, base64 */
    e = json_array_get(entries, 2);
    content = json_object_get(json_object_get(e, "response"), "content");
    assert_string_equal(json_string_value(json_object_get(content, "encoding")), "base64");
    assert_string_equal(json_string_value(json_object_get(content, "text")),
                        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCA==");
    post = json_object_get(json_object_get(e, "request"), "postData");
    assert_string_equal(json_string_value(json_object_get(post, "encoding")), "base64");

    /* flow 4: WebSocket messages as Chromium writes them */
    e = json_array_get(entries, 3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "request"), "url")),
                        "wss://api.example.test/ws");
    assert_string_equal(json_string_value(json_object_get(e, "_resourceType")), "websocket");
    json_t *msgs = json_object_get(e, "_webSocketMessages");
    assert_int_equal(json_array_size(msgs), 2);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "send");
    assert_int_equal(json_integer_value(json_object_get(m, "opcode")), 1);
    assert_true(json_is_real(json_object_get(m, "time")));
    assert_string_equal(json_string_value(json_object_get(m, "data")),
                        "{\"type\":\"auth\",\"token\":\"SECRET_WS1\"}");
    m = json_array_get(msgs, 1);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "receive");
    assert_string_equal(json_string_value(json_object_get(m, "data")), "AQIA/w==");

    /* a filter narrows the export */
    free(har);
    har = export_str(s, REEL_EXPORT_HAR, 0, "~m PUT", &n);
    json_decref(root);
    root = json_loadb(har, n, 0, &jerr);
    assert_non_null(root);
    check_har(root);
    assert_int_equal(json_array_size(json_object_get(json_object_get(root, "log"), "entries")), 1);
    json_decref(root);
    free(har);
    reel_session_close(s);
}

/* ---- redaction ----------------------------------------------------------- */

static void test_redaction_every_format(void **state) {
    reel_session_t *s = fixture("secrets");
    /* without --redact the fixture carries every secret (HAR has all bodies decoded) */
    size_t n;
    char *plain = export_str(s, REEL_EXPORT_HAR, 0, NULL, &n);
    for (size_t k = 0; k < NSECRETS; k++)
        if (!contains(plain, n, secrets[k]))
            fail_msg("fixture lacks %s", secrets[k]);
    free(plain);
    static const char *const names[] = {"har", "curl", "raw", "ndjson"};
    for (int fmt = 0; fmt < 4; fmt++) {
        char *out = export_str(s, (reel_export_format)fmt, 1, NULL, &n);
        for (size_t k = 0; k < NSECRETS; k++)
            if (contains(out, n, secrets[k]))
                fail_msg("%s export with redaction still holds %s:\n%.*s", names[fmt], secrets[k],
                         (int)n, out);
        assert_true(contains(out, n, REEL_REDACT_MARKER));
        /* what is not a secret stays */
        assert_true(contains(out, n, "theme="));
        assert_true(contains(out, n, "page=2"));
        assert_true(contains(out, n, "alice"));
        if (fmt == REEL_EXPORT_HAR) {
            json_t *root = json_loadb(out, n, 0, NULL);
            assert_non_null(root);
            check_har(root);
            json_t *e = json_array_get(json_object_get(json_object_get(root, "log"), "entries"), 0);
            json_t *content = json_object_get(json_object_get(e, "response"), "content");
            json_t *body = json_loads(json_string_value(json_object_get(content, "text")), 0, NULL);
            assert_non_null(body); /* still JSON */
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(body, "nested"), "password")),
                REEL_REDACT_MARKER);
            assert_int_equal(json_array_size(json_object_get(body, "items")), 2);
            json_decref(body);
            json_decref(root);
        }
        free(out);
    }
    reel_session_close(s);
}

static void test_redact_rules(void **state) {
    reel_redact_t *r = reel_redact_new();
    reel_redacted_t t;
    assert_true(reel_redact_header(r, "authorization", 13, "Bearer abc.def", 14, &t));
    assert_string_equal(t.data, "Bearer REDACTED");
    free(t.data);
    assert_true(reel_redact_header(r, "Set-Cookie", 10, "a=1; Path=/; Secure", 19, &t));
    assert_string_equal(t.data, "a=REDACTED; Path=/; Secure");
    free(t.data);
    assert_false(reel_redact_header(r, "Accept", 6, "text/html", 9, &t));
    assert_true(reel_redact_header(r, "X-Custom", 8, "see bearer zzz9", 15, &t));
    assert_string_equal(t.data, "see bearer REDACTED");
    free(t.data);
    /* configured rules */
    assert_false(reel_redact_header(r, "X-Tenant", 8, "acme", 4, &t));
    reel_redact_add_header(r, "X-Tenant");
    assert_true(reel_redact_header(r, "x-tenant", 8, "acme", 4, &t));
    assert_string_equal(t.data, "REDACTED");
    free(t.data);
    assert_false(reel_redact_urlencoded(r, "pin=1234&a=b", 12, &t));
    reel_redact_add_key(r, "pin");
    assert_true(reel_redact_urlencoded(r, "pin=1234&a=b", 12, &t));
    assert_string_equal(t.data, "pin=REDACTED&a=b");
    free(t.data);
    assert_true(reel_redact_target(r, "/x?Pass%77ord=1&y=2", 19, &t));
    assert_string_equal(t.data, "/x?Pass%77ord=REDACTED&y=2");
    free(t.data);
    /* JSON: the secrets replaced, everything else byte for byte */
    const char *js = "[{\"apiKey\": {\"deep\": 1}, \"n\": 2}]";
    assert_true(reel_redact_body(r, "application/json", (const uint8_t *)js, strlen(js), &t));
    assert_string_equal(t.data, "[{\"apiKey\": \"REDACTED\", \"n\": 2}]");
    free(t.data);
    static const struct {
        const char *in, *out; /* out NULL: nothing to replace */
    } json[] = {
        /* valid JSON jansson could not hold kept every secret */
        {"{\"user_id\":18446744073709551615,\"password\":\"hunter2\"}",
         "{\"user_id\":18446744073709551615,\"password\":\"REDACTED\"}"},
        {"{\"big\": 1e400, \"token\": [1, {\"a\": []}] }",
         "{\"big\": 1e400, \"token\": \"REDACTED\" }"},
        /* numbers and duplicate keys as they were */
        {"{\"a\":0.1,\"a\":-0,\"b\":1.5e3,\"secret\":null}",
         "{\"a\":0.1,\"a\":-0,\"b\":1.5e3,\"secret\":\"REDACTED\"}"},
        /* escaped key, escaped quote inside a value, a bearer token in a string */
        {"{\"pass\\u0077ord\":\"x\\\"y\", \"note\": \"Bearer abc\"}",
         "{\"pass\\u0077ord\":\"REDACTED\", \"note\": \"Bearer REDACTED\"}"},
        /* "key" as a word of the name, not inside one */
        {"{\"key\":1,\"monkey\":2,\"keyboard\":3,\"x-key\":4,\"keyId\":5}",
         "{\"key\":\"REDACTED\",\"monkey\":2,\"keyboard\":3,\"x-key\":\"REDACTED\","
         "\"keyId\":\"REDACTED\"}"},
        /* cut short (body_limit): redacted as far as it goes */
        {"{\"a\": [1, 2], \"password\": \"hun", "{\"a\": [1, 2], \"password\": \"REDACTED"},
        {"{\"session\": {\"id\": 1}, \"x\": \"Bearer abc",
         "{\"session\": \"REDACTED\", \"x\": \"Bearer REDACTED"},
        {"[1, 2, 3", NULL},
        /* not JSON (a syntax error): the value after each quoted secret
         * key and a colon, then the rules for text */
        {"{\"password\": hunter2}", "{\"password\": \"REDACTED\"}"},
        {"{\"a\": 1} trailing", NULL},
        {"{\"password\":\"x\",}", "{\"password\":\"REDACTED\",}"},
        {"{'user': 1, \"api_key\" : \"k\\\"q\" \"n\": \"Bearer abc\"}",
         "{'user': 1, \"api_key\" : \"REDACTED\" \"n\": \"Bearer REDACTED\"}"},
        {"[{\"auth\": {\"u\": \"a}\", \"p\": [1]}, x]", "[{\"auth\": \"REDACTED\", x]"},
        {"{\"token\": \"unclosed\n, \"n\": 1}}", "{\"token\": \"REDACTED\"\n, \"n\": 1}}"},
        {"{\"tokenless\"}: \"x\" \"monkey\": 1 oops", NULL},
        /* NDJSON (JSON Lines), values one after another, a byte order mark */
        {"{\"a\": 1} {\"token\": 2}", "{\"a\": 1} {\"token\": \"REDACTED\"}"},
        {"{\"password\":\"a\"}\n{\"token\":\"b\"}\n",
         "{\"password\":\"REDACTED\"}\n{\"token\":\"REDACTED\"}\n"},
        {"\xef\xbb\xbf{\"password\": \"bom\"}", "\xef\xbb\xbf{\"password\": \"REDACTED\"}"},
    };
    for (size_t i = 0; i < sizeof json / sizeof json[0]; i++) {
        int got = reel_redact_body(r, NULL, (const uint8_t *)json[i].in, strlen(json[i].in), &t);
        if (json[i].out == NULL) {
            if (got)
                fail_msg("%s: redacted as %s", json[i].in, t.data);
            continue;
        }
        if (!got)
            fail_msg("%s: not redacted", json[i].in);
        if (strcmp(t.data, json[i].out) != 0)
            fail_msg("%s: %s, not %s", json[i].in, t.data, json[i].out);
        free(t.data);
    }
    /* a note: JSON it quotes, and the rules for text */
    const char *note = "saw {\"password\":\"hunter2\"} and Bearer abc in the log";
    assert_true(reel_redact_note(r, note, strlen(note), &t));
    assert_string_equal(t.data, "saw {\"password\":\"REDACTED\"} and Bearer REDACTED in the log");
    free(t.data);
    note = "the \"password\" field was empty";
    assert_false(reel_redact_note(r, note, strlen(note), &t));
    /* many escaped quotes and no closing one: read once, not once per quote */
    size_t nq = 200000;
    char *q = malloc(nq * 2 + 2);
    q[0] = '{';
    for (size_t i = 0; i < nq; i++)
        memcpy(q + 1 + 2 * i, "\\\"", 2);
    q[1 + 2 * nq] = '\0';
    assert_false(reel_redact_body(r, NULL, (const uint8_t *)q, 1 + 2 * nq, &t));
    free(q);
    /* nesting deeper than any recursion (or jansson) would take */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 32);
    size_t k = 0;
    for (size_t i = 0; i < depth; i++)
        deep[k++] = '[';
    k += (size_t)sprintf(deep + k, "{\"token\":\"t\"}");
    for (size_t i = 0; i < depth; i++)
        deep[k++] = ']';
    assert_true(reel_redact_body(r, NULL, (const uint8_t *)deep, k, &t));
    assert_non_null(strstr(t.data, "{\"token\":\"REDACTED\"}"));
    assert_int_equal(t.len, k + strlen("REDACTED") - 1);
    free(t.data);
    free(deep);
    /* URLs in Location, Content-Location and Referer: their queries */
    assert_true(reel_redact_header(r, "Location", 8, "/cb?token=abc&x=1", 17, &t));
    assert_string_equal(t.data, "/cb?token=REDACTED&x=1");
    free(t.data);
    const char *ref = "http://x.test/cb?access_token=SECRET";
    assert_true(reel_redact_header(r, "referer", 7, ref, strlen(ref), &t));
    assert_string_equal(t.data, "http://x.test/cb?access_token=REDACTED");
    free(t.data);
    assert_true(reel_redact_target(r, "/m?key=SECRET&keyboard=us", 25, &t));
    assert_string_equal(t.data, "/m?key=REDACTED&keyboard=us");
    free(t.data);
    reel_redact_free(r);
}

/* ---- round trip ------------------------------------------------------------ */

/* The request and response of every flow, without what is expected to
 * differ after a trip through HAR (ids, uuids, wire sizes, sources). */
static json_t *essence(const char *ndjson, size_t n) {
    json_t *all = json_array();
    const char *p = ndjson, *end = ndjson + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *j = json_loadb(p, len, 0, NULL);
        assert_non_null(j);
        json_t *x = json_object();
        static const char *const keep[] = {"method",   "scheme",       "host",    "port",
                                           "target",   "http_version", "headers", "body",
                                           "body_b64", "status",       "reason"};
        for (int d = 0; d < 2; d++) {
            json_t *src = json_object_get(j, d ? "response" : "request");
            json_t *dst = json_object();
            for (size_t k = 0; src && k < sizeof keep / sizeof keep[0]; k++) {
                json_t *v = json_object_get(src, keep[k]);
                if (v)
                    json_object_set(dst, keep[k], v);
            }
            json_object_set_new(x, d ? "response" : "request", dst);
        }
        json_object_set(x, "start", json_object_get(j, "start"));
        json_array_append_new(all, x);
        json_decref(j);
        p += len + 1;
    }
    return all;
}

static void test_round_trip(void **state) {
    reel_session_t *s = fixture("trip1");
    size_t n;
    char *har = export_str(s, REEL_EXPORT_HAR, 0, NULL, &n);
    char *path = reel_asprintf("%s/trip.har", tmp_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(har, 1, n, f), n);
    fclose(f);
    free(har);

    reel_session_t *s2 = open_session("trip2");
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.body_limit = UINT64_MAX / 2;
    o.fsync = REEL_FSYNC_NEVER;
    reel_recorder_t *rec = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_open(s2, &o, &rec, &err), REEL_OK);
    reel_har_stats_t st;
    if (reel_har_import(rec, path, &st, &err) != REEL_OK)
        fail_msg("import of the export: %s", err.msg);
    close_recorder(rec);
    assert_int_equal(st.entries, 4);

    size_t n1, n2;
    char *a = export_str(s, REEL_EXPORT_NDJSON, 0, NULL, &n1);
    char *b = export_str(s2, REEL_EXPORT_NDJSON, 0, NULL, &n2);
    json_t *ea = essence(a, n1), *eb = essence(b, n2);
    if (!json_equal(ea, eb)) {
        char *da = json_dumps(ea, JSON_INDENT(1)), *db = json_dumps(eb, JSON_INDENT(1));
        fail_msg("round trip differs:\n%s\n---\n%s", da, db);
    }
    /* and the decoded JSON body really is in both */
    assert_true(contains(b, n2, "SECRET_JSON2"));
    json_decref(ea);
    json_decref(eb);
    free(a);
    free(b);
    free(path);
    reel_session_close(s2);
    reel_session_close(s);
}

/* ---- 1xx answers, trailers, cut WebSocket messages ----------------------- */

/* Records flow 1: a chunked POST with Expect: 100-continue, a 100 and a 103
 * before the final 200, trailer fields on both bodies (X-Secret-Token's
 * value a secret); flow 2: the same on HTTP/2 (trailers in a HEADERS frame,
 * no chunked framing); flow 3: a WebSocket whose second message body_limit
 * cut (8 of 100 bytes stored). */
static reel_session_t *fixture_extras(const char *name) {
    reel_session_t *s = open_session(name);
    reel_recorder_t *rec = recorder(s);
    for (int v2 = 0; v2 < 2; v2++) {
        int64_t t = T0 + v2 * 100000;
        reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = t};
        reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
        const reel_header_t q1[] = {H("Host", "api.example.test"), H("Expect", "100-continue"),
                                    H("Transfer-Encoding", "chunked"), H("Trailer", "X-Req-Sum")};
        const reel_header_t q2[] = {H("Content-Type", "text/plain")};
        reel_request_head_t rh = {.method = "POST",
                                  .scheme = "https",
                                  .host = "api.example.test",
                                  .port = 443,
                                  .target = "/up",
                                  .http_version = v2 ? "HTTP/2.0" : "HTTP/1.1",
                                  .headers = v2 ? q2 : q1,
                                  .n_headers = v2 ? 1 : 4,
                                  .time_us = t};
        reel_recorder_request_head(f, &rh);
        const reel_header_t hints[] = {H("Link", "</style.css>; rel=preload; as=style")};
        reel_response_head_t i100 = {.status = 100,
                                     .reason = "Continue",
                                     .http_version = rh.http_version,
                                     .time_us = t + 1000};
        reel_recorder_interim(f, &i100);
        reel_recorder_request_body(f, "hello", 5);
        const reel_header_t qt[] = {H("X-Req-Sum", "rs1"), H("X-Secret-Token", "SECRET_TRAILER1")};
        reel_recorder_trailers(f, false, qt, 2, false);
        reel_response_head_t i103 = {.status = 103,
                                     .reason = "Early Hints",
                                     .http_version = rh.http_version,
                                     .headers = hints,
                                     .n_headers = 1,
                                     .time_us = t + 2000};
        reel_recorder_interim(f, &i103);
        const reel_header_t s1[] = {H("Content-Type", "text/plain"),
                                    H("Transfer-Encoding", "chunked"), H("Trailer", "X-Checksum")};
        reel_response_head_t sp = {.status = 200,
                                   .reason = "OK",
                                   .http_version = rh.http_version,
                                   .headers = s1,
                                   .n_headers = v2 ? 1 : 3,
                                   .time_us = t + 3000};
        reel_recorder_response_head(f, &sp);
        reel_recorder_response_body(f, "world", 5);
        const reel_header_t st[] = {H("X-Checksum", "sha1-abc")};
        reel_recorder_trailers(f, true, st, 1, false);
        reel_recorder_flow_end(f, NULL, t + 4000, t + 1500, t + 3000);
    }

    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0 + 300000};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    const reel_header_t q[] = {H("Host", "api.example.test"), H("Upgrade", "websocket"),
                               H("Connection", "Upgrade")};
    reel_request_head_t rh = {.method = "GET",
                              .scheme = "https",
                              .host = "api.example.test",
                              .port = 443,
                              .target = "/ws",
                              .http_version = "HTTP/1.1",
                              .headers = q,
                              .n_headers = 3,
                              .time_us = T0 + 300000};
    reel_recorder_request_head(f, &rh);
    const reel_header_t sh[] = {H("Upgrade", "websocket"), H("Connection", "Upgrade")};
    reel_response_head_t sp = {.status = 101,
                               .reason = "Switching Protocols",
                               .http_version = "HTTP/1.1",
                               .headers = sh,
                               .n_headers = 2,
                               .time_us = T0 + 310000};
    reel_recorder_response_head(f, &sp);
    reel_message_t m = {.from_client = 1, .opcode = 1, .data = "whole", .len = 5, .length = 5};
    reel_recorder_message(f, &m);
    m = (reel_message_t){
        .from_client = 0, .opcode = 1, .data = "cut here", .len = 8, .length = 100, .truncated = 1};
    reel_recorder_message(f, &m);
    reel_recorder_flow_end(f, NULL, T0 + 400000, 0, 0);
    close_recorder(rec);
    return s;
}

/* The [{name, value}] array a as "name: value; ..." (owned). */
static char *fields_str(json_t *a) {
    if (!json_is_array(a))
        fail_msg("fields: not an array");
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    size_t i;
    json_t *p;
    json_array_foreach(a, i, p) {
        fprintf(f, "%s%s: %s", i ? "; " : "", json_string_value(json_object_get(p, "name")),
                json_string_value(json_object_get(p, "value")));
    }
    fclose(f);
    return buf;
}

static void assert_fields(json_t *a, const char *want) {
    char *got = fields_str(a);
    assert_string_equal(got, want);
    free(got);
}

static void test_interim_trailers_truncated(void **state) {
    reel_session_t *s = fixture_extras("extras");
    size_t n;

    /* HAR: in _reel (HAR 1.2 has no field for them), and the cut message
     * says so in _webSocketMessages */
    char *har = export_str(s, REEL_EXPORT_HAR, 0, NULL, &n);
    json_error_t je;
    json_t *root = json_loadb(har, n, 0, &je);
    if (root == NULL)
        fail_msg("HAR does not parse: %s", je.text);
    check_har(root);
    json_t *entries = json_object_get(json_object_get(root, "log"), "entries");
    assert_int_equal(json_array_size(entries), 3);
    for (int k = 0; k < 2; k++) {
        json_t *r = json_object_get(json_array_get(entries, (size_t)k), "_reel");
        json_t *in = get(r, "interim", JSON_ARRAY, "_reel");
        assert_int_equal(json_array_size(in), 2);
        json_t *c = json_array_get(in, 0), *eh = json_array_get(in, 1);
        assert_int_equal(json_integer_value(json_object_get(c, "status")), 100);
        assert_string_equal(json_string_value(json_object_get(c, "statusText")), "Continue");
        assert_fields(get(c, "headers", JSON_ARRAY, "interim"), "");
        assert_int_equal(json_integer_value(json_object_get(eh, "status")), 103);
        assert_string_equal(json_string_value(json_object_get(eh, "httpVersion")),
                            k ? "HTTP/2.0" : "HTTP/1.1");
        assert_string_equal(json_string_value(json_object_get(eh, "time")),
                            k ? "2026-01-02T03:04:05.225Z" : "2026-01-02T03:04:05.125Z");
        assert_fields(json_object_get(eh, "headers"), "Link: </style.css>; rel=preload; as=style");
        assert_fields(json_object_get(r, "request_trailers"),
                      "X-Req-Sum: rs1; X-Secret-Token: SECRET_TRAILER1");
        assert_fields(json_object_get(r, "response_trailers"), "X-Checksum: sha1-abc");
    }
    json_t *wsm = json_object_get(json_array_get(entries, 2), "_webSocketMessages");
    assert_int_equal(json_array_size(wsm), 2);
    assert_null(json_object_get(json_array_get(wsm, 0), "truncated"));
    json_t *cut = json_array_get(wsm, 1);
    assert_true(json_is_true(json_object_get(cut, "truncated")));
    assert_int_equal(json_integer_value(json_object_get(cut, "length")), 100);
    assert_string_equal(json_string_value(json_object_get(cut, "data")), "cut here");
    json_decref(root);
    free(har);

    /* NDJSON: interim at the top, trailers in their side, truncated on
     * every message */
    char *nd = export_str(s, REEL_EXPORT_NDJSON, 0, NULL, &n);
    char *line = nd;
    for (int k = 0; k < 3; k++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &je);
        if (o == NULL)
            fail_msg("ndjson line %d: %s", k + 1, je.text);
        if (k < 2) {
            json_t *in = get(o, "interim", JSON_ARRAY, "ndjson");
            assert_int_equal(json_array_size(in), 2);
            json_t *eh = json_array_get(in, 1);
            assert_int_equal(json_integer_value(json_object_get(eh, "status")), 103);
            assert_string_equal(json_string_value(json_object_get(eh, "reason")), "Early Hints");
            assert_int_equal(json_integer_value(json_object_get(eh, "time_us")),
                             T0 + k * 100000 + 2000);
            assert_fields(json_object_get(eh, "headers"),
                          "Link: </style.css>; rel=preload; as=style");
            assert_fields(json_object_get(json_object_get(o, "request"), "trailers"),
                          "X-Req-Sum: rs1; X-Secret-Token: SECRET_TRAILER1");
            assert_fields(json_object_get(json_object_get(o, "response"), "trailers"),
                          "X-Checksum: sha1-abc");
        } else {
            assert_null(json_object_get(o, "interim"));
            assert_null(json_object_get(json_object_get(o, "response"), "trailers"));
            json_t *msgs = get(o, "messages", JSON_ARRAY, "ndjson");
            assert_true(json_is_false(json_object_get(json_array_get(msgs, 0), "truncated")));
            json_t *c = json_array_get(msgs, 1);
            assert_true(json_is_true(json_object_get(c, "truncated")));
            assert_int_equal(json_integer_value(json_object_get(c, "length")), 100);
            assert_string_equal(json_string_value(json_object_get(c, "data")), "cut here");
        }
        json_decref(o);
        line = nl + 1;
    }
    free(nd);

    /* raw: as on the wire (HTTP/1.1: in the last chunk; HTTP/2: after the
     * body), the 1xx heads before the final one */
    char *raw = export_str(s, REEL_EXPORT_RAW, 0, "~id 1", &n);
    static const char want1[] =
        "POST /up HTTP/1.1\r\nHost: api.example.test\r\nExpect: 100-continue\r\n"
        "Transfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n\r\n"
        "5\r\nhello\r\n0\r\nX-Req-Sum: rs1\r\nX-Secret-Token: SECRET_TRAILER1\r\n\r\n"
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        "Trailer: X-Checksum\r\n\r\n5\r\nworld\r\n0\r\nX-Checksum: sha1-abc\r\n\r\n";
    assert_int_equal(n, sizeof want1 - 1);
    assert_memory_equal(raw, want1, n);
    free(raw);
    raw = export_str(s, REEL_EXPORT_RAW, 0, "~id 2", &n);
    /* (a Content-Length of the body's bytes: HTTP/2 framed it, raw must) */
    static const char want2[] =
        "POST https://api.example.test/up HTTP/2.0\r\nContent-Type: text/plain\r\n"
        "Content-Length: 5\r\n\r\n"
        "hello"
        "X-Req-Sum: rs1\r\nX-Secret-Token: SECRET_TRAILER1\r\n\r\n"
        "HTTP/2.0 100 Continue\r\n\r\n"
        "HTTP/2.0 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
        "HTTP/2.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nworld"
        "X-Checksum: sha1-abc\r\n\r\n";
    if (n != sizeof want2 - 1 || memcmp(raw, want2, n) != 0)
        fail_msg("raw HTTP/2 flow:\n%.*s", (int)n, raw);
    free(raw);

    /* curl: cannot send trailers: the command says so */
    char *cu = export_str(s, REEL_EXPORT_CURL, 0, "~id 1", &n);
    assert_true(contains(cu, n,
                         "# not sent: curl cannot send the request's trailer fields "
                         "(X-Req-Sum, X-Secret-Token)\n"));
    free(cu);

    /* --redact reaches trailers (and 1xx fields): the secret is gone from
     * every format */
    for (int fmt = REEL_EXPORT_HAR; fmt <= REEL_EXPORT_NDJSON; fmt++) {
        char *plain = export_str(s, (reel_export_format)fmt, 0, NULL, &n);
        if (fmt != REEL_EXPORT_CURL)
            assert_true(contains(plain, n, "SECRET_TRAILER1"));
        free(plain);
        char *red = export_str(s, (reel_export_format)fmt, 1, NULL, &n);
        if (contains(red, n, "SECRET_TRAILER1"))
            fail_msg("format %d: a trailer's secret survived --redact", fmt);
        if (fmt != REEL_EXPORT_CURL)
            assert_true(contains(red, n, "X-Secret-Token"));
        free(red);
    }
    reel_session_close(s);
}

/* ---- an HTTP/2 WebSocket and TLS tunnels ---------------------------------- */

/* Flow 1: an RFC 8441 WebSocket as core/h2front.c records it (method
 * CONNECT, ':protocol: websocket' first, its :path as target), answered by
 * an HTTP/1.1 origin's 101; flow 2: a TCP tunnel; flow 3: a TLS tunnel
 * (scheme tls) with the origin's TLS as its server connection. */
static reel_session_t *fixture_h2ws_tunnels(const char *name) {
    reel_session_t *s = open_session(name);
    reel_recorder_t *rec = recorder(s);
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    const reel_header_t q[] = {H(":protocol", "websocket"), H("sec-websocket-version", "13"),
                               H("origin", "https://api.example.test")};
    reel_request_head_t rh = {.method = "CONNECT",
                              .scheme = "https",
                              .host = "api.example.test",
                              .port = 443,
                              .target = "/chat?room=1",
                              .http_version = "HTTP/2.0",
                              .headers = q,
                              .n_headers = 3,
                              .time_us = T0};
    reel_recorder_request_head(f, &rh);
    const reel_header_t sh[] = {H("Upgrade", "websocket"), H("Connection", "Upgrade"),
                                H("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")};
    reel_response_head_t sp = {.status = 101,
                               .reason = "Switching Protocols",
                               .http_version = "HTTP/1.1",
                               .headers = sh,
                               .n_headers = 3,
                               .time_us = T0 + 1000};
    reel_recorder_response_head(f, &sp);
    reel_message_t m = {.from_client = 1, .opcode = 1, .data = "hi", .len = 2, .length = 2};
    reel_recorder_message(f, &m);
    reel_recorder_flow_end(f, NULL, T0 + 2000, 0, 0);

    for (int tls = 0; tls < 2; tls++) {
        int64_t t = T0 + (1 + tls) * 100000;
        info = (reel_flow_info_t){.kind = REEL_FLOW_TUNNEL, .time_us = t};
        f = reel_recorder_flow_start(rec, &info);
        rh = (reel_request_head_t){.method = "CONNECT",
                                   .scheme = tls ? "tls" : "tcp",
                                   .host = "broker.example.test",
                                   .port = 8883,
                                   .target = "",
                                   .http_version = "HTTP/1.1",
                                   .time_us = t};
        reel_recorder_request_head(f, &rh);
        sp = (reel_response_head_t){.status = 200,
                                    .reason = "Connection established",
                                    .http_version = "HTTP/1.1",
                                    .time_us = t};
        reel_recorder_response_head(f, &sp);
        if (tls) {
            reel_server_conn_t sc = {.address = "192.0.2.9:8883",
                                     .sni = "broker.example.test",
                                     .alpn = "mqtt",
                                     .tls_version = "TLSv1.3",
                                     .cipher = "TLS_AES_128_GCM_SHA256"};
            reel_recorder_server_conn(f, &sc);
        }
        m = (reel_message_t){
            .from_client = 1, .opcode = 0, .data = "\x10\x02", .len = 2, .length = 2};
        reel_recorder_message(f, &m);
        reel_recorder_flow_end(f, NULL, t + 1000, 0, 0);
    }
    close_recorder(rec);
    return s;
}

static char *export_stats(reel_session_t *s, reel_export_format fmt, const char *filter,
                          size_t *len, reel_export_stats_t *st) {
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len);
    assert_non_null(out);
    reel_export_opts_t o = {.format = fmt, .filter = filter};
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_export(s, out, &o, st, &err) != REEL_OK)
        fail_msg("export: %s", err.msg);
    fclose(out);
    return buf;
}

static void test_h2_websocket(void **state) {
    reel_session_t *s = fixture_h2ws_tunnels("h2ws");
    size_t n;

    /* curl: the command curl can run, the HTTP/1.1 handshake, and a
     * comment saying why; no CONNECT, no ':protocol' header (curl refuses
     * it), no --http2 */
    char *cu = export_str(s, REEL_EXPORT_CURL, 0, "~id 1", &n);
    static const char want_curl[] =
        "# flow 1\n"
        "# an HTTP/2 extended CONNECT (RFC 8441, :protocol websocket) that curl cannot send: "
        "this WebSocket's HTTP/1.1 handshake instead (GET with Upgrade, as reel asks an HTTP/1.1 "
        "origin; Sec-WebSocket-Key is RFC 6455's sample)\n"
        "curl -sS -g --path-as-is --http1.1 -X 'GET' 'https://api.example.test/chat?room=1' \\\n"
        "  -H 'Upgrade: websocket' \\\n"
        "  -H 'Connection: Upgrade' \\\n"
        "  -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \\\n"
        "  -H 'sec-websocket-version: 13' \\\n"
        "  -H 'origin: https://api.example.test' \\\n"
        "  -H 'Accept:' \\\n"
        "  -H 'User-Agent:'\n";
    if (n != sizeof want_curl - 1 || memcmp(cu, want_curl, n) != 0)
        fail_msg("curl:\n%.*s", (int)n, cu);
    free(cu);

    /* raw: the request line says the :protocol by its URL (wss://); no
     * field line starts with ':' */
    char *raw = export_str(s, REEL_EXPORT_RAW, 0, "~id 1", &n);
    static const char want_raw[] =
        "CONNECT wss://api.example.test/chat?room=1 HTTP/2.0\r\n"
        "sec-websocket-version: 13\r\norigin: https://api.example.test\r\n\r\n"
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi";
    if (n != sizeof want_raw - 1 || memcmp(raw, want_raw, n) != 0)
        fail_msg("raw:\n%.*s", (int)n, raw);
    free(raw);

    /* HAR: the method the client sent, the WebSocket's URL, its messages;
     * ':protocol' among the headers as browsers write HTTP/2 pseudo-header
     * fields there */
    char *har = export_str(s, REEL_EXPORT_HAR, 0, "~id 1", &n);
    json_error_t je;
    json_t *root = json_loadb(har, n, 0, &je);
    if (root == NULL)
        fail_msg("HAR does not parse: %s", je.text);
    check_har(root);
    json_t *e = json_array_get(json_object_get(json_object_get(root, "log"), "entries"), 0);
    json_t *req = json_object_get(e, "request");
    assert_string_equal(json_string_value(json_object_get(req, "method")), "CONNECT");
    assert_string_equal(json_string_value(json_object_get(req, "url")),
                        "wss://api.example.test/chat?room=1");
    assert_string_equal(json_string_value(json_object_get(req, "httpVersion")), "HTTP/2.0");
    assert_fields(json_object_get(req, "headers"),
                  ":protocol: websocket; sec-websocket-version: 13; "
                  "origin: https://api.example.test");
    assert_string_equal(json_string_value(json_object_get(e, "_resourceType")), "websocket");
    assert_int_equal(json_array_size(json_object_get(e, "_webSocketMessages")), 1);
    json_decref(root);
    free(har);

    /* NDJSON: the record as it is (CONNECT, :protocol a header value) */
    char *nd = export_str(s, REEL_EXPORT_NDJSON, 0, "~id 1", &n);
    json_t *o = json_loadb(nd, n, 0, &je);
    if (o == NULL)
        fail_msg("ndjson: %s", je.text);
    req = json_object_get(o, "request");
    assert_string_equal(json_string_value(json_object_get(req, "method")), "CONNECT");
    assert_string_equal(json_string_value(json_object_get(req, "url")),
                        "https://api.example.test/chat?room=1");
    assert_fields(json_object_get(req, "headers"),
                  ":protocol: websocket; sec-websocket-version: 13; "
                  "origin: https://api.example.test");
    json_decref(o);
    free(nd);
    reel_session_close(s);
}

static void test_tls_tunnel(void **state) {
    reel_session_t *s = fixture_h2ws_tunnels("tunnels");
    size_t n;
    reel_export_stats_t st;

    /* HAR and curl have no place for a tunnel: both kinds skipped, counted */
    for (int fmt = REEL_EXPORT_HAR; fmt <= REEL_EXPORT_CURL; fmt++) {
        char *out = export_stats(s, (reel_export_format)fmt, "~id 2 | ~id 3", &n, &st);
        assert_int_equal(st.flows, 0);
        assert_int_equal(st.skipped, 2);
        assert_false(contains(out, n, "broker.example.test"));
        free(out);
    }

    /* NDJSON tells them apart: scheme and URL, and the TLS tunnel's origin
     * TLS (version, ALPN) */
    char *nd = export_str(s, REEL_EXPORT_NDJSON, 0, "~id 2 | ~id 3", &n);
    char *nl = memchr(nd, '\n', n);
    assert_non_null(nl);
    json_error_t je;
    json_t *tcp = json_loadb(nd, (size_t)(nl - nd), 0, &je);
    json_t *tls = json_loads(nl + 1, 0, &je);
    assert_non_null(tcp);
    assert_non_null(tls);
    json_t *q = json_object_get(tcp, "request");
    assert_string_equal(json_string_value(json_object_get(tcp, "kind")), "tunnel");
    assert_string_equal(json_string_value(json_object_get(q, "scheme")), "tcp");
    assert_string_equal(json_string_value(json_object_get(q, "url")),
                        "tcp://broker.example.test:8883/");
    assert_null(json_object_get(tcp, "tls_version"));
    q = json_object_get(tls, "request");
    assert_string_equal(json_string_value(json_object_get(tls, "kind")), "tunnel");
    assert_string_equal(json_string_value(json_object_get(q, "scheme")), "tls");
    assert_string_equal(json_string_value(json_object_get(q, "url")),
                        "tls://broker.example.test:8883/");
    assert_string_equal(json_string_value(json_object_get(tls, "tls_version")), "TLSv1.3");
    assert_string_equal(json_string_value(json_object_get(tls, "alpn")), "mqtt");
    json_decref(tcp);
    json_decref(tls);
    free(nd);

    /* raw: the CONNECT as the client sent it, then the payloads (a TLS
     * tunnel's are the plaintext inside its TLS, as an HTTPS flow's raw
     * export is its HTTP) */
    char *raw = export_str(s, REEL_EXPORT_RAW, 0, "~id 3", &n);
    static const char want_raw[] = "CONNECT broker.example.test:8883 HTTP/1.1\r\n\r\n"
                                   "HTTP/1.1 200 Connection established\r\n\r\n\x10\x02";
    if (n != sizeof want_raw - 1 || memcmp(raw, want_raw, n) != 0)
        fail_msg("raw:\n%.*s", (int)n, raw);
    free(raw);
    reel_session_close(s);
}

/* ---- HAR timings ------------------------------------------------------------ */

/* Imports the HAR text har (n bytes) into a new session name. */
static reel_session_t *import_har(const char *name, const char *har, size_t n) {
    char *path = reel_asprintf("%s/%s.har", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(har, 1, n, f), n);
    fclose(f);
    reel_session_t *s = open_session(name);
    reel_recorder_t *rec = recorder(s);
    reel_err_t err;
    reel_err_clear(&err);
    reel_har_stats_t st;
    if (reel_har_import(rec, path, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    close_recorder(rec);
    free(path);
    return s;
}

static double num(json_t *obj, const char *key) {
    json_t *j = json_object_get(obj, key);
    if (!json_is_number(j))
        fail_msg("%s: not a number", key);
    return json_number_value(j);
}

/* The one entry of a HAR export of s (owned; *root to json_decref). */
static json_t *one_entry(reel_session_t *s, json_t **root) {
    size_t n;
    char *har = export_str(s, REEL_EXPORT_HAR, 0, NULL, &n);
    *root = json_loadb(har, n, 0, NULL);
    free(har);
    assert_non_null(*root);
    check_har(*root);
    json_t *entries = json_object_get(json_object_get(*root, "log"), "entries");
    assert_int_equal(json_array_size(entries), 1);
    return json_array_get(entries, 0);
}

/* raw: an HTTP/2 request whose Host names the authority of its URL keeps
 * its target's origin form; one whose Host names another (beside
 * :authority, which reel forwarded) takes the absolute form, or the
 * export named the wrong server */
static void test_raw_h2_host(void **state) {
    (void)state;
    reel_session_t *s = open_session("rawh2host");
    reel_recorder_t *rec = recorder(s);
    static const char *const hosts[] = {"api.example.test", "api.example.test:443",
                                        "evil.example.test"};
    for (int i = 0; i < 3; i++) {
        reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0 + i};
        reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
        const reel_header_t q[] = {{"host", 4, hosts[i], strlen(hosts[i])}};
        reel_request_head_t rh = {.method = "GET",
                                  .scheme = "https",
                                  .host = "api.example.test",
                                  .port = 443,
                                  .target = "/h",
                                  .http_version = "HTTP/2.0",
                                  .headers = q,
                                  .n_headers = 1,
                                  .time_us = T0 + i};
        reel_recorder_request_head(f, &rh);
        reel_recorder_flow_end(f, NULL, T0 + i + 1, 0, 0);
    }
    close_recorder(rec);
    size_t n;
    char *raw = export_str(s, REEL_EXPORT_RAW, 0, NULL, &n);
    assert_non_null(strstr(raw, "GET /h HTTP/2.0\r\nhost: api.example.test\r\n"));
    assert_non_null(strstr(raw, "GET /h HTTP/2.0\r\nhost: api.example.test:443\r\n"));
    assert_non_null(
        strstr(raw, "GET https://api.example.test/h HTTP/2.0\r\nhost: evil.example.test\r\n"));
    free(raw);
    reel_session_close(s);
}

static void test_har_timings(void **state) {
    /* an HTTPS flow on a new connection: every phase, TLS 4 ms of it; its
     * own duration (45.041 ms) is not the phases' sum (29.6 ms) */
    reel_session_t *s = open_session("timings");
    reel_recorder_t *rec = recorder(s);
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    const reel_header_t q[] = {H("Host", "api.example.test")};
    reel_request_head_t rh = {.method = "GET",
                              .scheme = "https",
                              .host = "api.example.test",
                              .port = 443,
                              .target = "/t",
                              .http_version = "HTTP/1.1",
                              .headers = q,
                              .n_headers = 1,
                              .time_us = T0};
    reel_recorder_request_head(f, &rh);
    reel_response_head_t sp = {
        .status = 204, .reason = "No Content", .http_version = "HTTP/1.1", .time_us = T0 + 30000};
    reel_recorder_response_head(f, &sp);
    reel_timings_t tm = {500, 2000, 3000, 100, 19000, 1000, 4000};
    reel_recorder_flow_end(f, &tm, T0 + 45041, T0 + 1234, T0 + 30000);
    close_recorder(rec);

    json_t *root;
    json_t *e = one_entry(s, &root);
    json_t *t = json_object_get(e, "timings");
    /* HAR 1.2: ssl "is also included in connect"; time is the sum of the
     * timings but -1 ones, ssl counted inside connect */
    assert_true(num(t, "connect") == 7.0);
    assert_true(num(t, "ssl") == 4.0);
    assert_true(num(e, "time") == 29.6); /* 0.5 + 2 + 7 + 0.1 + 19 + 1 */
    /* the flow's own times are kept in _reel */
    json_t *r = json_object_get(e, "_reel");
    assert_true(num(r, "duration_ms") == 45.041);
    assert_true(num(r, "request_end_ms") == 1.234);
    assert_true(num(r, "response_start_ms") == 30.0);

    /* and come back from reel import: exported again, the same entry */
    char *har = json_dumps(root, 0);
    reel_session_t *s2 = import_har("timings2", har, strlen(har));
    free(har);
    json_t *root2;
    json_t *e2 = one_entry(s2, &root2);
    assert_true(json_equal(json_object_get(e2, "timings"), t));
    assert_true(num(e2, "time") == num(e, "time"));
    json_t *r2 = json_object_get(e2, "_reel");
    static const char *const keys[] = {"duration_ms", "request_end_ms", "response_start_ms"};
    for (int k = 0; k < 3; k++)
        assert_true(num(r2, keys[k]) == num(r, keys[k]));
    /* the imported flow's connect is TCP alone, as reel records it */
    size_t n;
    char *nd = export_str(s2, REEL_EXPORT_NDJSON, 0, NULL, &n);
    json_t *o = json_loadb(nd, n, 0, NULL);
    assert_non_null(o);
    assert_true(num(json_object_get(o, "timings"), "connect_ms") == 3.0);
    assert_true(num(o, "duration_ms") == 45.041);
    /* written as HAR writes it, not as 45.040999999999997 */
    assert_non_null(strstr(nd, "\"duration_ms\":45.041,"));
    json_decref(o);
    free(nd);
    json_decref(root2);
    reel_session_close(s2);

    /* a HAR reel wrote before: _reel without duration_ms, connect TCP
     * alone (3 ms), time the flow's duration; read as it was meant */
    json_object_del(r, "duration_ms");
    json_object_del(r, "request_end_ms");
    json_object_del(r, "response_start_ms");
    json_object_set_new(t, "connect", json_real(3.0));
    json_object_set_new(e, "time", json_real(45.041));
    har = json_dumps(root, 0);
    s2 = import_har("timings3", har, strlen(har));
    free(har);
    nd = export_str(s2, REEL_EXPORT_NDJSON, 0, NULL, &n);
    o = json_loadb(nd, n, 0, NULL);
    assert_non_null(o);
    assert_true(num(json_object_get(o, "timings"), "connect_ms") == 3.0);
    assert_true(num(o, "duration_ms") == 45.041);
    json_decref(o);
    free(nd);
    reel_session_close(s2);
    json_decref(root);
    reel_session_close(s);
}

/* ---- HAR content.compression ----------------------------------------------- */

static void test_har_compression(void **state) {
    /* flow 1: 4000 bytes of text, gzipped on the wire; flow 2: plain text
     * with a bearer token, which redaction makes shorter */
    reel_session_t *s = open_session("compression");
    reel_recorder_t *rec = recorder(s);
    static char text[4000];
    memset(text, 'a', sizeof text);
    uint8_t gz[512];
    size_t gzn = gzip(text, sizeof text, gz, sizeof gz);
    const reel_header_t q[] = {H("Host", "api.example.test")};
    const reel_header_t s1[] = {H("Content-Type", "text/plain"), H("Content-Encoding", "gzip")};
    http_flow(rec, T0, "GET", "/gz", q, 1, NULL, 0, 200, s1, 2, gz, gzn);
    const reel_header_t s2[] = {H("Content-Type", "text/plain")};
    http_flow(rec, T0 + 100000, "GET", "/plain", q, 1, NULL, 0, 200, s2, 1, text_body,
              strlen(text_body));
    close_recorder(rec);

    for (int redact = 0; redact < 2; redact++) {
        size_t n;
        char *har = export_str(s, REEL_EXPORT_HAR, redact, NULL, &n);
        json_t *root = json_loadb(har, n, 0, NULL);
        assert_non_null(root);
        check_har(root);
        json_t *entries = json_object_get(json_object_get(root, "log"), "entries");
        /* HAR 1.2: size (decoded) is bigger than bodySize (on the wire)
         * when compressed, and compression the bytes saved */
        json_t *resp = json_object_get(json_array_get(entries, 0), "response");
        json_t *c = json_object_get(resp, "content");
        assert_int_equal(json_integer_value(json_object_get(resp, "bodySize")), gzn);
        assert_int_equal(json_integer_value(json_object_get(c, "size")), sizeof text);
        assert_int_equal(json_integer_value(json_object_get(c, "compression")), sizeof text - gzn);
        /* a body never encoded saved nothing, redacted (shorter) or not;
         * redacted, its size on the wire is the redacted text's, as its
         * Content-Length is (a reader would take it for cut) */
        resp = json_object_get(json_array_get(entries, 1), "response");
        c = json_object_get(resp, "content");
        assert_int_equal(json_integer_value(json_object_get(c, "size")),
                         json_integer_value(json_object_get(resp, "bodySize")));
        if (redact)
            assert_true(json_integer_value(json_object_get(c, "size")) <
                        (json_int_t)strlen(text_body));
        json_t *comp = json_object_get(c, "compression");
        assert_true(comp == NULL || json_integer_value(comp) == 0);
        json_decref(root);
        free(har);
    }
    reel_session_close(s);
}

/* ---- HAR redirectURL ---------------------------------------------------------- */

static void test_har_redirect_url_redacted(void **state) {
    reel_session_t *s = open_session("redirect");
    reel_recorder_t *rec = recorder(s);
    const reel_header_t q[] = {H("Host", "api.example.test")};
    const reel_header_t sh[] = {
        H("Location",
          "https://app.example.test/cb?state=7&id_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
          "&access_token=SECRET_LOC1")};
    http_flow(rec, T0, "GET", "/login", q, 1, NULL, 0, 302, sh, 1, NULL, 0);
    close_recorder(rec);
    for (int redact = 0; redact < 2; redact++) {
        size_t n;
        char *har = export_str(s, REEL_EXPORT_HAR, redact, NULL, &n);
        json_t *root = json_loadb(har, n, 0, NULL);
        assert_non_null(root);
        json_t *resp = json_object_get(
            json_array_get(json_object_get(json_object_get(root, "log"), "entries"), 0),
            "response");
        const char *url = json_string_value(json_object_get(resp, "redirectURL"));
        json_t *loc = json_array_get(json_object_get(resp, "headers"), 0);
        /* redirectURL is the Location written, redacted as it is (the JWT
         * by the rule for JWTs anywhere; the query's access_token once
         * reel_redact_header redacts URL-valued fields' queries) */
        assert_string_equal(url, json_string_value(json_object_get(loc, "value")));
        if (redact) {
            assert_null(strstr(url, "eyJhbGciOiJIUzI1NiJ9"));
            assert_non_null(strstr(url, REEL_REDACT_MARKER));
        } else {
            assert_string_equal(url, sh[0].value);
        }
        json_decref(root);
        free(har);
    }
    reel_session_close(s);
}

/* ---- what curl commands send ---------------------------------------------- */

static void test_curl_sends_what_was_recorded(void **state) {
    reel_session_t *s = fixture("curlfields");
    size_t n;
    /* flow 2: Proxy-Authorization was reel's (hop-by-hop), not the
     * origin's: no command hands the user's proxy credentials to the
     * origin, redacted or not; no Accept nor User-Agent was sent, and curl
     * is told to send none of its own */
    char *cu = export_str(s, REEL_EXPORT_CURL, 0, "~id 2", &n);
    assert_false(contains(cu, n, "Proxy-Authorization"));
    assert_false(contains(cu, n, "SECRET_PROXYAUTH"));
    assert_true(contains(cu, n, "-H 'Accept:'"));
    assert_true(contains(cu, n, "-H 'User-Agent:'"));
    /* it had a Content-Type, and a short body: curl adds neither */
    assert_false(contains(cu, n, "-H 'Content-Type:'"));
    assert_false(contains(cu, n, "-H 'Expect:'"));
    free(cu);
    /* flow 1 had an Accept: kept, no removal of it */
    cu = export_str(s, REEL_EXPORT_CURL, 0, "~id 1", &n);
    assert_true(contains(cu, n, "-H 'Accept: */*'"));
    assert_false(contains(cu, n, "-H 'Accept:'"));
    free(cu);
    reel_session_close(s);

    /* a WebSocket's command is its handshake: Upgrade and Connection stay */
    s = fixture("curlws");
    cu = export_str(s, REEL_EXPORT_CURL, 0, "~id 4", &n);
    assert_true(contains(cu, n, "-H 'Upgrade: websocket'"));
    assert_true(contains(cu, n, "-H 'Connection: Upgrade'"));
    free(cu);
    reel_session_close(s);

    /* a chunked POST: Transfer-Encoding stays (curl sends the body chunked,
     * as it went), Trailer goes (curl sends no trailer fields) */
    s = fixture_extras("curlchunked");
    cu = export_str(s, REEL_EXPORT_CURL, 0, "~id 1", &n);
    assert_true(contains(cu, n, "-H 'Transfer-Encoding: chunked'"));
    assert_true(contains(cu, n, "-H 'Expect: 100-continue'"));
    assert_false(contains(cu, n, "-H 'Trailer"));
    /* no Content-Type recorded, a body sent: curl's form type removed */
    assert_true(contains(cu, n, "-H 'Content-Type:'"));
    free(cu);
    reel_session_close(s);
}

/* ---- bodies stored decoded ------------------------------------------------ */

/* A flow as reel import makes of a HAR entry whose request and response
 * had Content-Encoding: gzip: the headers kept, the bodies stored decoded
 * (body_decoded), shorter than the Content-Length that counted them
 * encoded. */
static reel_session_t *fixture_decoded(const char *name) {
    reel_session_t *s = open_session(name);
    reel_recorder_t *rec = recorder(s);
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    const reel_header_t q[] = {H("Host", "example.test"), H("Content-Encoding", "gzip"),
                               H("Content-Length", "94"), H("Content-Type", "text/plain")};
    reel_request_head_t rh = {.method = "POST",
                              .scheme = "http",
                              .host = "example.test",
                              .port = 80,
                              .target = "/p",
                              .http_version = "HTTP/1.1",
                              .headers = q,
                              .n_headers = 4,
                              .body_decoded = 1,
                              .time_us = T0};
    reel_recorder_request_head(f, &rh);
    reel_recorder_request_body(f, "plain request", 13);
    const reel_header_t sh[] = {H("Content-Encoding", "gzip"), H("Content-Length", "30"),
                                H("Content-Type", "text/plain")};
    reel_response_head_t sp = {.status = 200,
                               .reason = "OK",
                               .http_version = "HTTP/1.1",
                               .headers = sh,
                               .n_headers = 3,
                               .body_decoded = 1,
                               .time_us = T0 + 1000};
    reel_recorder_response_head(f, &sp);
    reel_recorder_response_body(f, "hello world", 11);
    reel_recorder_flow_end(f, NULL, T0 + 2000, T0 + 500, T0 + 1000);
    close_recorder(rec);
    return s;
}

static void test_decoded_bodies_on_the_wire(void **state) {
    reel_session_t *s = fixture_decoded("decoded");
    size_t n;
    /* raw: each head says what follows it: no Content-Encoding, and the
     * length of the bytes written (a gzip head over plain bytes, with the
     * encoded length, was no HTTP message) */
    char *raw = export_str(s, REEL_EXPORT_RAW, 0, NULL, &n);
    static const char want_raw[] =
        "POST /p HTTP/1.1\r\nHost: example.test\r\nContent-Length: 13\r\n"
        "Content-Type: text/plain\r\n\r\nplain request"
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n"
        "Content-Type: text/plain\r\n\r\nhello world";
    if (n != sizeof want_raw - 1 || memcmp(raw, want_raw, n) != 0)
        fail_msg("raw:\n%.*s", (int)n, raw);
    free(raw);
    /* curl sends the plain bytes: no Content-Encoding: gzip with them */
    char *cu = export_str(s, REEL_EXPORT_CURL, 0, NULL, &n);
    assert_false(contains(cu, n, "Content-Encoding"));
    assert_true(contains(cu, n, "--data-raw 'plain request'"));
    free(cu);
    /* HAR keeps the header: its bodies are decoded by definition, and
     * browsers write it so */
    char *har = export_str(s, REEL_EXPORT_HAR, 0, NULL, &n);
    assert_true(contains(har, n, "\"Content-Encoding\""));
    free(har);
    reel_session_close(s);
}

/* ---- bytes that are not UTF-8 ------------------------------------------- */

/* A flow whose request target, header values, trailer field, 1xx answer
 * and status text hold bytes that are not UTF-8 (obs-text, Latin-1, a
 * UTF-8 word beside them), as an HTTP/1.1 client and origin can send
 * them. */
static reel_session_t *fixture_bytes(const char *name) {
    reel_session_t *s = open_session(name);
    reel_recorder_t *rec = recorder(s);
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP, .time_us = T0};
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    const reel_header_t q[] = {H("Host", "api.example.test"), H("X-Bin", "\xff\xfe caf\xc3\xa9"),
                               H("X-Utf8", "caf\xc3\xa9"), H("Cookie", "a=\xe9t\xe9"),
                               H("Transfer-Encoding", "chunked")};
    reel_request_head_t rh = {.method = "POST",
                              .scheme = "https",
                              .host = "api.example.test",
                              .port = 443,
                              .target = "/p?q=\xff\xfe",
                              .http_version = "HTTP/1.1",
                              .headers = q,
                              .n_headers = 5,
                              .time_us = T0};
    reel_recorder_request_head(f, &rh);
    reel_recorder_request_body(f, "hello", 5);
    const reel_header_t qt[] = {H("X-Sum", "\x80\x81")};
    reel_recorder_trailers(f, false, qt, 1, false);
    const reel_header_t ih[] = {H("Link", "</\xe9.css>; rel=preload")};
    reel_response_head_t i103 = {.status = 103,
                                 .reason = "Early \xa0Hints",
                                 .http_version = "HTTP/1.1",
                                 .headers = ih,
                                 .n_headers = 1,
                                 .time_us = T0 + 1000};
    reel_recorder_interim(f, &i103);
    const reel_header_t sh[] = {H("Content-Type", "text/plain"), H("X-Resp", "\xfe\xff"),
                                H("Content-Length", "5")};
    reel_response_head_t sp = {.status = 200,
                               .reason = "O\xffK",
                               .http_version = "HTTP/1.1",
                               .headers = sh,
                               .n_headers = 3,
                               .time_us = T0 + 2000};
    reel_recorder_response_head(f, &sp);
    reel_recorder_response_body(f, "world", 5);
    reel_recorder_flow_end(f, NULL, T0 + 3000, T0 + 500, T0 + 2000);
    close_recorder(rec);
    return s;
}

/* HAR holds strings: a header value, URL or status text that is not UTF-8
 * is written as its Latin-1 reading (what HAR readers, like browsers'
 * Fetch API, make of such bytes), and its bytes in base64 beside it in
 * _reel.<member>_b64, which reel import takes: the imported flow has the
 * recorded bytes, not the UTF-8 of their Latin-1 reading. */
static void test_har_bytes_not_utf8(void **state) {
    reel_session_t *s = fixture_bytes("bytes1");
    json_t *root;
    json_t *e = one_entry(s, &root);
    json_t *req = json_object_get(e, "request"), *resp = json_object_get(e, "response");
    json_t *x = json_array_get(json_object_get(req, "headers"), 1);
    assert_string_equal(json_string_value(json_object_get(x, "value")),
                        "\xc3\xbf\xc3\xbe caf\xc3\x83\xc2\xa9");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(x, "_reel"), "value_b64")),
        "//4gY2Fmw6k=");
    assert_null(json_object_get(json_object_get(x, "_reel"), "name_b64"));
    /* UTF-8 text needs nothing beside it */
    assert_null(json_object_get(json_array_get(json_object_get(req, "headers"), 2), "_reel"));
    assert_null(json_object_get(json_array_get(json_object_get(req, "headers"), 0), "_reel"));
    assert_string_equal(json_string_value(json_object_get(req, "url")),
                        "https://api.example.test/p?q=\xc3\xbf\xc3\xbe");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(req, "_reel"), "url_b64")),
        "aHR0cHM6Ly9hcGkuZXhhbXBsZS50ZXN0L3A/cT3//g==");
    assert_string_equal(json_string_value(json_object_get(resp, "statusText")), "O\xc3\xbfK");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(resp, "_reel"), "statusText_b64")),
        "T/9L");
    json_t *rx = json_object_get(e, "_reel");
    json_t *i0 = json_array_get(json_object_get(rx, "interim"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(i0, "_reel"), "statusText_b64")),
        "RWFybHkgoEhpbnRz");
    json_t *tr = json_array_get(json_object_get(rx, "request_trailers"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(tr, "_reel"), "value_b64")), "gIE=");
    size_t n;
    char *har = json_dumps(root, 0);
    n = strlen(har);
    json_decref(root);

    /* imported: the same bytes on the wire, every one of them */
    reel_session_t *s2 = import_har("bytes2", har, n);
    free(har);
    size_t n1, n2;
    char *a = export_str(s, REEL_EXPORT_RAW, 0, NULL, &n1);
    char *b = export_str(s2, REEL_EXPORT_RAW, 0, NULL, &n2);
    assert_true(contains(a, n1, "X-Bin: \xff\xfe caf\xc3\xa9\r\n"));
    if (n1 != n2 || memcmp(a, b, n1) != 0)
        fail_msg("round trip differs:\n%.*s\n---\n%.*s", (int)n1, a, (int)n2, b);
    free(a);
    free(b);

    /* exported again: the same HAR entry but for what says where it came from */
    json_t *r2;
    json_t *e1 = one_entry(s, &root), *e2 = one_entry(s2, &r2);
    for (int d = 0; d < 2; d++) {
        const char *side = d ? "response" : "request";
        json_t *x1 = json_object_get(e1, side), *x2 = json_object_get(e2, side);
        if (!json_equal(x1, x2)) {
            char *d1 = json_dumps(x1, JSON_INDENT(1)), *d2 = json_dumps(x2, JSON_INDENT(1));
            fail_msg("%s differs:\n%s\n---\n%s", side, d1, d2);
        }
    }
    assert_true(json_equal(json_object_get(json_object_get(e1, "_reel"), "interim"),
                           json_object_get(json_object_get(e2, "_reel"), "interim")));
    json_decref(root);
    json_decref(r2);
    reel_session_close(s2);
    reel_session_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_har_structure),
        cmocka_unit_test(test_redaction_every_format),
        cmocka_unit_test(test_redact_rules),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_interim_trailers_truncated),
        cmocka_unit_test(test_h2_websocket),
        cmocka_unit_test(test_tls_tunnel),
        cmocka_unit_test(test_decoded_bodies_on_the_wire),
        cmocka_unit_test(test_curl_sends_what_was_recorded),
        cmocka_unit_test(test_har_timings),
        cmocka_unit_test(test_raw_h2_host),
        cmocka_unit_test(test_har_compression),
        cmocka_unit_test(test_har_redirect_url_redacted),
        cmocka_unit_test(test_har_bytes_not_utf8),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
