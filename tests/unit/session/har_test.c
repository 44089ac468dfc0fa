/* HAR import: validation messages on broken files (fixtures and generated
 * variants of a minimal entry), and a round trip of a Chromium export
 * through the recorder, the spool and the index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <ftw.h>
#include <jansson.h>

#include "base/mem.h"
#include "session/har.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/store.h"

/* ---- paths -------------------------------------------------------------- */

static char src_dir[4096];
static char tmp_dir[4096];

static void find_src_dir(void) {
    const char *env = getenv("REEL_SOURCE_DIR");
    if (env && env[0]) {
        snprintf(src_dir, sizeof src_dir, "%s", env);
        return;
    }
    /* __FILE__ is SRC/tests/unit/session/har_test.c */
    static const char tail[] = "/tests/unit/session/har_test.c";
    const char *file = __FILE__;
    size_t n = strlen(file);
    assert_true(n > strlen(tail));
    assert_string_equal(&file[n - strlen(tail)], tail);
    snprintf(src_dir, sizeof src_dir, "%.*s", (int)(n - strlen(tail)), file);
}

static char *fixture(const char *name) {
    return reel_asprintf("%s/tests/data/har/%s", src_dir, name);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static int setup(void **state) {
    find_src_dir();
    const char *base = getenv("REEL_TEST_TMP");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0700);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/har_test.XXXXXX", base);
    assert_non_null(mkdtemp(tmp_dir));
    return 0;
}

static int teardown(void **state) {
    nftw(tmp_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Checks path and expects rc with the message path + suffix. */
static void check_har(const char *path, reel_rc rc, const char *suffix) {
    reel_err_t err;
    reel_err_clear(&err);
    char *want = rc == REEL_OK ? reel_strdup("") : reel_asprintf("%s%s", path, suffix);
    reel_rc got = reel_har_check(path, &err);
    if (got != rc || strcmp(err.msg, want) != 0)
        print_error("check %s:\n  got  %s %s\n  want %s %s\n", path, reel_rc_name(got), err.msg,
                    reel_rc_name(rc), want);
    assert_int_equal(got, rc);
    assert_string_equal(err.msg, want);
    free(want);
}

/* ---- fixtures ----------------------------------------------------------- */

static void test_check_good(void **state) {
    const char *names[] = {"chromium.har", "other-schemes.har"};
    for (size_t i = 0; i < 2; i++) {
        char *p = fixture(names[i]);
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc rc = reel_har_check(p, &err);
        if (rc != REEL_OK)
            print_error("%s: %s\n", p, err.msg);
        assert_int_equal(rc, REEL_OK);
        free(p);
    }
}

static void test_check_broken_fixtures(void **state) {
    static const struct {
        const char *file;
        reel_rc rc;
        const char *suffix;
    } cases[] = {
        {"not-json.har", REEL_INVALID, ":1:1: '[' or '{' expected near '<'"},
        {"no-entries.har", REEL_INVALID, ": log.entries: missing"},
        {"entries-not-array.har", REEL_INVALID, ": log.entries: not an array"},
        {"bad-url.har", REEL_INVALID, ": entries[1].request.url: not an absolute http(s) URL"},
        {"bad-base64.har", REEL_INVALID,
         ": entries[2].response.content.text: invalid base64 at offset 8"},
        {"does-not-exist.har", REEL_IO, ": No such file or directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = fixture(cases[i].file);
        check_har(p, cases[i].rc, cases[i].suffix);
        free(p);
    }
    char *dir = reel_asprintf("%s/tests/data/har", src_dir);
    check_har(dir, REEL_IO, ": Is a directory");
    free(dir);
}

static void test_size_limit(void **state) {
    char *p = fixture("chromium.har");
    reel__har_max_file_size = 1 << 20;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_har_check(p, &err), REEL_OK);
    reel__har_max_file_size = 4096;
    check_har(p, REEL_LIMIT, ": larger than the 4096 bytes a HAR file may have");
    reel__har_max_file_size = REEL_HAR_MAX_FILE_SIZE;
    free(p);
}

/* Loads `name` through a pipe fed by a child (pipes can be read once and
 * have no size to stat). */
static reel_rc load_pipe(const char *name, reel_har_t **h, reel_err_t *err) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char *p = fixture(name);
        FILE *f = fopen(p, "rb");
        char buf[4096];
        size_t n;
        while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
            if (write(fds[1], buf, n) != (ssize_t)n)
                break;
        _exit(0);
    }
    close(fds[1]);
    char *dev = reel_asprintf("/dev/fd/%d", fds[0]);
    reel_rc rc = reel_har_load(dev, h, err);
    free(dev);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return rc;
}

static void test_load_pipe(void **state) {
    reel_har_t *h = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(load_pipe("chromium.har", &h, &err), REEL_OK);
    assert_non_null(h);
    reel_har_free(h);
    h = NULL;
    reel__har_max_file_size = 4096; /* enforced while reading: no size to stat */
    reel_rc rc = load_pipe("chromium.har", &h, &err);
    reel__har_max_file_size = REEL_HAR_MAX_FILE_SIZE;
    assert_int_equal(rc, REEL_LIMIT);
    assert_null(h);
    assert_non_null(strstr(err.msg, ": larger than the 4096 bytes a HAR file may have"));
    reel_har_free(NULL);
}

/* ---- generated variants of one minimal entry ---------------------------- */

static const char base_har[] =
    "{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":\"t\",\"version\":\"1\"},"
    "\"entries\":[{\"startedDateTime\":\"2026-01-02T03:04:05.000Z\",\"time\":1,"
    "\"request\":{\"method\":\"GET\",\"url\":\"https://example.test/\","
    "\"httpVersion\":\"HTTP/1.1\",\"headers\":[{\"name\":\"Host\",\"value\":\"example.test\"}],"
    "\"queryString\":[],\"cookies\":[],\"headersSize\":-1,\"bodySize\":0},"
    "\"response\":{\"status\":200,\"statusText\":\"OK\",\"httpVersion\":\"HTTP/1.1\","
    "\"headers\":[],\"cookies\":[],\"content\":{\"size\":0,\"mimeType\":\"text/plain\"},"
    "\"redirectURL\":\"\",\"headersSize\":-1,\"bodySize\":0},"
    "\"cache\":{},\"timings\":{\"send\":0,\"wait\":1,\"receive\":0}}]}}";

/* Writes base_har with entries[0].<field> set to the JSON `value` (NULL:
 * removed; field "" replaces the entry) to a temporary file; returns its
 * path (owned). */
static char *variant(const char *field, const char *value) {
    static int seq;
    json_error_t jerr;
    json_t *root = json_loads(base_har, 0, &jerr);
    assert_non_null(root);
    json_t *entries = json_object_get(json_object_get(root, "log"), "entries");
    json_t *v = value ? json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) : NULL;
    if (value && v == NULL)
        fail_msg("bad test value %s: %s", value, jerr.text);
    if (field[0] == '\0') {
        json_array_set_new(entries, 0, v);
    } else {
        json_t *obj = json_array_get(entries, 0);
        char *path = reel_strdup(field);
        char *key = path;
        for (char *dot; (dot = strchr(key, '.')) != NULL; key = dot + 1) {
            *dot = '\0';
            json_t *next = json_object_get(obj, key);
            if (next == NULL) {
                next = json_object();
                json_object_set_new(obj, key, next);
            }
            obj = next;
        }
        if (v)
            json_object_set_new(obj, key, v);
        else
            json_object_del(obj, key);
        free(path);
    }
    char *out = reel_asprintf("%s/variant-%d.har", tmp_dir, seq++);
    assert_int_equal(json_dump_file(root, out, 0), 0);
    json_decref(root);
    return out;
}

static void test_check_variants(void **state) {
    static const struct {
        const char *field, *value;
        const char *msg; /* NULL: valid */
    } cases[] = {
        /* entry and dates */
        {"", "5", "entries[0]: not an object but a number"},
        {"startedDateTime", NULL, "entries[0].startedDateTime: missing"},
        {"startedDateTime", "5", "entries[0].startedDateTime: not a string but a number"},
        {"startedDateTime", "\"2026-01-02\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"2026-01-02T03:04:05.123\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"2026-02-29T03:04:05Z\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"2026-01-02T24:00:00Z\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"2026-01-02T03:04:05.Z\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"2026-01-02T03:04:05+1\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"1969-12-31T23:59:59Z\"",
         "entries[0].startedDateTime: not an ISO 8601 date and time with a zone after 1970"},
        {"startedDateTime", "\"2024-02-29T03:04:05.123456789+01:00\"", NULL},
        {"startedDateTime", "\"2026-01-02T03:04:05-0530\"", NULL},
        {"startedDateTime", "\"2026-01-02T03:04:05+02\"", NULL},
        /* request */
        {"request", NULL, "entries[0].request: missing"},
        {"request", "[]", "entries[0].request: not an object but an array"},
        {"request.method", "\"\"", "entries[0].request.method: not an HTTP method"},
        {"request.method", "\"GE T\"", "entries[0].request.method: not an HTTP method"},
        {"request.url", NULL, "entries[0].request.url: missing"},
        {"request.url", "\"/index.html\"", "entries[0].request.url: not an absolute http(s) URL"},
        {"request.url", "\"http:example.test\"",
         "entries[0].request.url: not an absolute http(s) URL"},
        {"request.url", "\"http://\"", "entries[0].request.url: empty host in URL"},
        {"request.url", "\"https://:443/\"", "entries[0].request.url: empty host in URL"},
        {"request.url", "\"https://example.test:0/\"", "entries[0].request.url: bad port in URL"},
        {"request.url", "\"https://example.test:65536/\"",
         "entries[0].request.url: bad port in URL"},
        {"request.url", "\"https://example.test:44x/\"", "entries[0].request.url: bad port in URL"},
        {"request.url", "\"https://[::1/\"",
         "entries[0].request.url: unterminated IPv6 address in URL"},
        {"request.url", "\"https://[::g]/\"", "entries[0].request.url: bad IPv6 address in URL"},
        {"request.url", "\"https://[::1]x/\"", "entries[0].request.url: bad host in URL"},
        {"request.url", "\"https://exa<mple.test/\"", "entries[0].request.url: bad host in URL"},
        {"request.url", "\"https://example.test/a b\"",
         "entries[0].request.url: contains a space or control character"},
        {"request.url", "\"https://example.test/a\\u0000b\"",
         "entries[0].request.url: contains a NUL byte"},
        {"request.url", "\"HTTPS://user:pw@[::1]:8443/p?q#frag\"", NULL},
        {"request.url", "\"ftp://example.test/\"", NULL}, /* skipped, not an error */
        {"request.httpVersion", NULL, "entries[0].request.httpVersion: missing"},
        {"request.httpVersion", "\"HTTP 1.1\"",
         "entries[0].request.httpVersion: not an HTTP version"},
        {"request.httpVersion", "\"\"", NULL},
        /* no HTTP has these numbers */
        {"request.httpVersion", "\"HTTP/9\"",
         "entries[0].request.httpVersion: \"HTTP/9\" is not an HTTP version (there are "
         "HTTP/0.9, 1.0, 1.1, 2 and 3)"},
        {"response.httpVersion", "\"http/1.2\"",
         "entries[0].response.httpVersion: \"http/1.2\" is not an HTTP version (there are "
         "HTTP/0.9, 1.0, 1.1, 2 and 3)"},
        {"request.httpVersion", "\"HTTP/\"",
         "entries[0].request.httpVersion: \"HTTP/\" is not an HTTP version (there are "
         "HTTP/0.9, 1.0, 1.1, 2 and 3)"},
        /* what browsers and mitmproxy write */
        {"request.httpVersion", "\"h2\"", NULL},
        {"request.httpVersion", "\"HTTP/2\"", NULL},
        {"request.httpVersion", "\"http/2.0\"", NULL},
        {"request.httpVersion", "\"h3\"", NULL},
        {"request.httpVersion", "\"h3-29\"", NULL},
        {"request.httpVersion", "\"HTTP/3\"", NULL},
        {"request.httpVersion", "\"HTTP/1.0\"", NULL},
        {"request.httpVersion", "\"http/0.9\"", NULL},
        {"request.httpVersion", "\"spdy/3.1\"", NULL},
        {"request.httpVersion", "\"http/2+quic/43\"", NULL},
        {"request.httpVersion", "\"unknown\"", NULL},
        {"request.headers", NULL, "entries[0].request.headers: missing"},
        {"request.headers", "{}", "entries[0].request.headers: not an array but an object"},
        {"request.headers", "[1]", "entries[0].request.headers[0]: not an object but a number"},
        {"request.headers", "[{\"name\":\"a\"}]", "entries[0].request.headers[0].value: missing"},
        {"request.headers", "[{\"value\":\"a\"}]", "entries[0].request.headers[0].name: missing"},
        {"request.headers", "[{\"name\":\"\",\"value\":\"a\"}]",
         "entries[0].request.headers[0].name: empty header name"},
        {"request.headers", "[{\"name\":\"a b\",\"value\":\"a\"}]",
         "entries[0].request.headers[0].name: not a header name"},
        {"request.headers", "[{\"name\":\"::x\",\"value\":\"a\"}]",
         "entries[0].request.headers[0].name: not a header name"},
        {"request.headers", "[{\"name\":\"x\",\"value\":\"a\\r\\nb\"}]",
         "entries[0].request.headers[0].value: header value with a NUL, CR or LF byte"},
        {"request.headers", "[{\"name\":\":path\",\"value\":\"/\"},{\"name\":\"x\",\"value\":1}]",
         "entries[0].request.headers[1].value: not a string but a number"},
        {"request.postData", "\"x\"", "entries[0].request.postData: not an object but a string"},
        {"request.postData", "{\"mimeType\":\"text/plain\",\"text\":5}",
         "entries[0].request.postData.text: not a string but a number"},
        {"request.postData", "{\"text\":\"eA==\",\"encoding\":\"gzip\"}",
         "entries[0].request.postData.encoding: unsupported encoding (only \"base64\")"},
        {"request.postData", "{\"text\":\"eA=\",\"encoding\":\"base64\"}",
         "entries[0].request.postData.text: invalid base64 at offset 2"},
        {"request.postData", "{\"text\":\"eA\",\"encoding\":\"base64\"}",
         "entries[0].request.postData.text: invalid base64 at offset 0"},
        {"request.postData", "{\"mimeType\":\"text/plain\",\"params\":[]}", NULL},
        /* response */
        {"response", NULL, "entries[0].response: missing"},
        {"response.status", "\"200\"", "entries[0].response.status: not an integer but a string"},
        {"response.status", "200.0", "entries[0].response.status: not an integer but a number"},
        {"response.status", "1000", "entries[0].response.status: not an HTTP status"},
        {"response.status", "-1", "entries[0].response.status: not an HTTP status"},
        {"response.status", "0", NULL},
        {"response.statusText", NULL, "entries[0].response.statusText: missing"},
        {"response.httpVersion", "null", "entries[0].response.httpVersion: not a string but null"},
        {"response.headers", "null", "entries[0].response.headers: not an array but null"},
        {"response.content", NULL, "entries[0].response.content: missing"},
        {"response.content.size", NULL, "entries[0].response.content.size: missing"},
        {"response.content.size", "\"0\"",
         "entries[0].response.content.size: not a number but a string"},
        {"response.content.mimeType", NULL, "entries[0].response.content.mimeType: missing"},
        {"response.content.text", "[]",
         "entries[0].response.content.text: not a string but an array"},
        {"response.content.encoding", "\"base64\"", NULL}, /* no text: nothing to decode */
        {"response.content",
         "{\"size\":1,\"mimeType\":\"x\",\"text\":\"QQ=A\",\"encoding\":"
         "\"base64\"}",
         "entries[0].response.content.text: invalid base64 at offset 2"},
        {"response.content",
         "{\"size\":1,\"mimeType\":\"x\",\"text\":\"QQ==QQ==\",\"encoding\":"
         "\"base64\"}",
         "entries[0].response.content.text: invalid base64 at offset 2"},
        {"response.content", /* line breaks (wrapped base64) are skipped */
         "{\"size\":1,\"mimeType\":\"x\",\"text\":\"QUJD\\r\\nREVG\\n\","
         "\"encoding\":\"base64\"}",
         NULL},
        {"response.content", /* a space is not */
         "{\"size\":1,\"mimeType\":\"x\",\"text\":\"QUJD REVG\","
         "\"encoding\":\"base64\"}",
         "entries[0].response.content.text: invalid base64 at offset 4"},
        {"response.content",
         "{\"size\":1,\"mimeType\":\"x\",\"text\":\"Q===\",\"encoding\":"
         "\"base64\"}",
         "entries[0].response.content.text: invalid base64 at offset 1"},
        {"response.content",
         "{\"size\":1,\"mimeType\":\"x\",\"text\":\"QQ==\",\"encoding\":"
         "\"base64\"}",
         NULL},
        {"response._error", "7", "entries[0].response._error: not a string but a number"},
        /* timings */
        {"timings", "[]", "entries[0].timings: not an object but an array"},
        {"timings.wait", "\"1\"", "entries[0].timings.wait: not a number but a string"},
        {"timings.dns", "1e11", "entries[0].timings.dns: out of range"},
        {"time", "true", "entries[0].time: not a number but a boolean"},
        {"timings", NULL, NULL},
        {"time", NULL, NULL},
        {"timings.ssl", "-1", NULL},
        {"serverIPAddress", "5", "entries[0].serverIPAddress: not a string but a number"},
        /* the exact bytes of text that is not UTF-8 (reel export's
         * _reel.<member>_b64): a string of base64 whose bytes the member
         * could hold; an _reel that is not an object is not reel's */
        {"request.headers", "[{\"name\":\"x\",\"value\":\"a\",\"_reel\":{\"value_b64\":5}}]",
         "entries[0].request.headers[0]._reel.value_b64: not a string but a number"},
        {"request.headers", "[{\"name\":\"x\",\"value\":\"a\",\"_reel\":{\"value_b64\":\"YQ=\"}}]",
         "entries[0].request.headers[0]._reel.value_b64: invalid base64 at offset 2"},
        {"request.headers",
         "[{\"name\":\"x\",\"value\":\"\\u00ff\\r\",\"_reel\":{\"value_b64\":\"/w0=\"}}]",
         "entries[0].request.headers[0]._reel.value_b64: header value with a NUL, CR or LF byte"},
        {"request.headers",
         "[{\"name\":\"X-\\u00ff\",\"value\":\"a\",\"_reel\":{\"name_b64\":\"WC3/\"}}]",
         "entries[0].request.headers[0]._reel.name_b64: not a header name"},
        /* ... whether or not the text wins over them (edited: "b" is not
         * the reading of "a\r\nb" or of "x y"), as docs/export.md says */
        {"request.headers",
         "[{\"name\":\"x\",\"value\":\"b\",\"_reel\":{\"value_b64\":\"YQ0KYg==\"}}]",
         "entries[0].request.headers[0]._reel.value_b64: header value with a NUL, CR or LF byte"},
        {"request.headers", "[{\"name\":\"x\",\"value\":\"b\",\"_reel\":{\"name_b64\":\"eCB5\"}}]",
         "entries[0].request.headers[0]._reel.name_b64: not a header name"},
        {"request._reel", "{\"url_b64\":\"aHR0cDovL3gvIHk=\"}",
         "entries[0].request._reel.url_b64: contains a space or control character"},
        {"response._reel", "{\"statusText_b64\":\"TwpL\"}",
         "entries[0].response._reel.statusText_b64: a status text with a NUL, CR or LF byte"},
        {"request.headers", "[{\"name\":\"x\",\"value\":\"a\",\"_reel\":1}]", NULL},
        {"response._reel", "{\"statusText_b64\":[]}",
         "entries[0].response._reel.statusText_b64: not a string but an array"},
        {"request._reel", "{\"url_b64\":\"!!!!\"}",
         "entries[0].request._reel.url_b64: invalid base64 at offset 0"},
        /* bytes that are not what the text says: the text was edited */
        {"request._reel", "{\"url_b64\":\"aHR0cDovL3gv\"}", NULL},
        /* _reel.messages, an upgrade's TCP messages (har_tcp_messages) */
        {"_reel.messages", "null", NULL},
        {"_reel.messages", "[]", NULL},
        {"_reel.messages", "{}", "entries[0]._reel.messages: not an array but an object"},
        {"_reel.messages", "[[]]", "entries[0]._reel.messages[0]: not an object but an array"},
        {"_reel.messages", "[{\"time\":1,\"data\":\"\"}]",
         "entries[0]._reel.messages[0].type: missing"},
        {"_reel.messages", "[{\"type\":\"Send\",\"time\":1,\"data\":\"\"}]",
         "entries[0]._reel.messages[0].type: not \"send\" or \"receive\""},
        {"_reel.messages", "[{\"type\":\"send\",\"data\":\"\"}]",
         "entries[0]._reel.messages[0].time: missing"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":0,\"data\":\"\"}]",
         "entries[0]._reel.messages[0].time: not a time in seconds since 1970 (before the year "
         "10000)"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":1e12,\"data\":\"\"}]",
         "entries[0]._reel.messages[0].time: not a time in seconds since 1970 (before the year "
         "10000)"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":1}]",
         "entries[0]._reel.messages[0].data: missing"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":1,\"data\":[]}]",
         "entries[0]._reel.messages[0].data: not a string but an array"},
        {"_reel.messages",
         "[{\"type\":\"send\",\"time\":1,\"data\":\"a\\u0000\\u00ff\",\"encoding\":\"\"}]", NULL},
        {"_reel.messages",
         "[{\"type\":\"send\",\"time\":1,\"data\":\"QUJD\\nREVG\",\"encoding\":\"base64\"}]",
         "entries[0]._reel.messages[0].data: invalid base64 at offset 4"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":1,\"data\":\"x\",\"encoding\":7}]",
         "entries[0]._reel.messages[0].encoding: not a string but a number"},
        {"_reel.messages",
         "[{\"type\":\"send\",\"time\":1,\"data\":\"eA==\",\"encoding\":\"base64\","
         "\"truncated\":false,\"length\":1}]",
         NULL},
        {"_reel.messages",
         "[{\"type\":\"send\",\"time\":1,\"data\":\"eA==\",\"encoding\":\"base64\","
         "\"length\":2}]",
         "entries[0]._reel.messages[0].length: 2 bytes, more than the 1 of data, but not "
         "truncated"},
        {"_reel.messages",
         "[{\"type\":\"send\",\"time\":1,\"data\":\"xy\",\"truncated\":true,\"length\":-1}]",
         "entries[0]._reel.messages[0].length: less than the 2 bytes of data"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":1,\"data\":\"xy\",\"length\":2.0}]",
         "entries[0]._reel.messages[0].length: not an integer but a number"},
        {"_reel.messages", "[{\"type\":\"send\",\"time\":1,\"data\":\"xy\",\"truncated\":1}]",
         "entries[0]._reel.messages[0].truncated: not a boolean but a number"},
        /* _webSocketMessages, as Chromium and reel export write them */
        {"_webSocketMessages", "null", NULL},
        {"_webSocketMessages", "[]", NULL},
        {"_webSocketMessages", "\"x\"", "entries[0]._webSocketMessages: not an array but a string"},
        {"_webSocketMessages", "[1]",
         "entries[0]._webSocketMessages[0]: not an object but a number"},
        {"_webSocketMessages", "[{\"type\":\"sent\",\"time\":1,\"opcode\":1,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].type: not \"send\", \"receive\" or \"error\""},
        {"_webSocketMessages", "[{\"type\":\"send\",\"opcode\":1,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].time: missing"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":-5,\"opcode\":1,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].time: not a time in seconds since 1970 (before the "
         "year 10000)"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].opcode: missing"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":1.0,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].opcode: not an integer but a number"},
        /* 0: bytes reel did not read as frames (extensions it cannot read) */
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":0,\"data\":\"AAE=\"}]",
         NULL},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":11,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].opcode: 11 is not the opcode of a WebSocket message (1 "
         "text, 2 binary, 8 close, 9 ping, 10 pong) nor 0 (bytes reel did not read as frames)"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":-1,\"data\":\"\"}]",
         "entries[0]._webSocketMessages[0].opcode: -1 is not the opcode of a WebSocket message (1 "
         "text, 2 binary, 8 close, 9 ping, 10 pong) nor 0 (bytes reel did not read as frames)"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":1}]",
         "entries[0]._webSocketMessages[0].data: missing"},
        /* text as it is; other opcodes base64, as Chromium gives them */
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":1,\"data\":\"a=b!\"}]",
         NULL},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":2,\"data\":\"a=b!\"}]",
         "entries[0]._webSocketMessages[0].data: invalid base64 at offset 1"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":9,\"data\":\"ping\"}]",
         NULL},
        {"_webSocketMessages",
         "[{\"type\":\"send\",\"time\":1,\"opcode\":2,\"data\":\"\",\"encoding\":\"utf-8\"}]",
         "entries[0]._webSocketMessages[0].encoding: unsupported encoding (only \"base64\")"},
        {"_webSocketMessages",
         "[{\"type\":\"send\",\"time\":1,\"opcode\":1,\"data\":\"abc\",\"length\":4}]",
         "entries[0]._webSocketMessages[0].length: 4 bytes, more than the 3 of data, but not "
         "truncated"},
        {"_webSocketMessages",
         "[{\"type\":\"send\",\"time\":1,\"opcode\":1,\"data\":\"abc\",\"truncated\":true}]",
         "entries[0]._webSocketMessages[0].length: missing (a truncated message has its whole "
         "length)"},
        /* control frames: 125 bytes at most; a close none or 2 and more */
        {"_webSocketMessages",
         "[{\"type\":\"send\",\"time\":1,\"opcode\":9,\"data\":\"\",\"truncated\":true,"
         "\"length\":126}]",
         "entries[0]._webSocketMessages[0].length: 126 bytes: a control message (close, ping, "
         "pong) has at most 125"},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":8,\"data\":\"\"}]", NULL},
        {"_webSocketMessages", "[{\"type\":\"send\",\"time\":1,\"opcode\":8,\"data\":\"eA==\"}]",
         "entries[0]._webSocketMessages[0].data: 1 byte: a close message has none or at least "
         "the 2 of its code"},
        /* Chromium's errors: a text, no message */
        {"_webSocketMessages",
         "[{\"type\":\"error\",\"time\":1,\"opcode\":-1,\"data\":\"Invalid frame header\"}]", NULL},
        {"_webSocketMessages", "[{\"type\":\"error\",\"time\":1,\"opcode\":-1}]",
         "entries[0]._webSocketMessages[0].data: missing"},
        {"_webSocketMessages",
         "[{\"type\":\"error\",\"time\":1,\"opcode\":-1,\"data\":\"a\\u0000\"}]",
         "entries[0]._webSocketMessages[0].data: contains a NUL byte"},
        {"_reel.messages", "[{\"type\":\"error\",\"time\":1,\"data\":\"\"}]",
         "entries[0]._reel.messages[0].type: not \"send\" or \"receive\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = variant(cases[i].field, cases[i].value);
        if (cases[i].msg) {
            char *suffix = reel_asprintf(": %s", cases[i].msg);
            check_har(p, REEL_INVALID, suffix);
            free(suffix);
        } else {
            check_har(p, REEL_OK, "");
        }
        free(p);
    }
}

/* log.version: 1.x and an empty or missing one (HAR 1.2: empty means 1.1)
 * are read; another major version is refused, naming it. */
static void test_log_version(void **state) {
    (void)state;
    static const struct {
        const char *value; /* JSON; NULL: removed */
        reel_rc rc;
        const char *msg;
    } cases[] = {
        {"\"1.2\"", REEL_OK, NULL},
        {"\"1.1\"", REEL_OK, NULL},
        {"\"\"", REEL_OK, NULL},
        {NULL, REEL_OK, NULL},
        {"\"9.9\"", REEL_UNSUPPORTED,
         ": log.version: HAR version 9.9 is not supported (reel reads HAR 1.x: 1.1 and 1.2)"},
        {"\"2.0\"", REEL_UNSUPPORTED,
         ": log.version: HAR version 2.0 is not supported (reel reads HAR 1.x: 1.1 and 1.2)"},
        {"\"1.2 beta\"", REEL_INVALID,
         ": log.version: \"1.2 beta\" is not a HAR version (such as \"1.2\")"},
        {"1.2", REEL_INVALID, ": log.version: not a string but a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t jerr;
        json_t *root = json_loads(base_har, 0, &jerr);
        assert_non_null(root);
        json_t *log = json_object_get(root, "log");
        if (cases[i].value)
            json_object_set_new(log, "version", json_loads(cases[i].value, JSON_DECODE_ANY, &jerr));
        else
            json_object_del(log, "version");
        char *p = reel_asprintf("%s/version-%zu.har", tmp_dir, i);
        assert_int_equal(json_dump_file(root, p, 0), 0);
        json_decref(root);
        check_har(p, cases[i].rc, cases[i].msg ? cases[i].msg : "");
        free(p);
    }
}

/* ---- round trip --------------------------------------------------------- */

typedef struct {
    char method[16], scheme[8], host[64], target[128], req_version[16];
    uint32_t port;
    int req_decoded, resp_decoded, has_resp, ended, has_timings;
    int64_t start_time, req_head_time, resp_head_time, end_time, req_end, resp_start;
    reel_buf_t req_headers, req_body, resp_headers, resp_body; /* headers "n: v\n" */
    uint32_t status;
    char reason[64], resp_version[16], error[256], source[32], server[64];
    reel_timings_t timings;
    uint64_t size[2]; /* request, response body size, from the end or error record */
    int truncated[2]; /* from the end record */
    int order_ok; /* records came as start, req head, req body*, resp head, ... */
    int last;     /* event of the previous record */
    /* Message records, in order (at most 12), their data in msg_data */
    size_t nmsg;
    struct {
        int from_client, truncated, continued;
        uint32_t opcode, close_code;
        int64_t time_us;
        uint64_t length;
        size_t len;
    } msg[12];
    reel_buf_t msg_data;
} flow_t;

static void str_of(char *out, size_t cap, const ProtobufCBinaryData *b) {
    snprintf(out, cap, "%.*s", (int)b->len, (const char *)b->data);
}

static void headers_of(reel_buf_t *b, Reel__Header **h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        reel_buf_append(b, h[i]->name.data, h[i]->name.len);
        reel_buf_puts(b, ": ");
        reel_buf_append(b, h[i]->value.data, h[i]->value.len);
        reel_buf_puts(b, "\n");
    }
}

static int collect(void *ctx, const Reel__Record *rec) {
    flow_t *f = ctx;
    int ev = (int)rec->event_case;
    /* allowed predecessors, by the numbering of the oneof (10..16) */
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        f->order_ok &= f->last == 0;
        f->start_time = rec->time_us;
        snprintf(f->source, sizeof f->source, "%s", rec->start->source);
        snprintf(f->server, sizeof f->server, "%s", rec->start->server_addr);
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        f->order_ok &= f->last == REEL__RECORD__EVENT_START;
        f->req_head_time = rec->time_us;
        str_of(f->method, sizeof f->method, &h->method);
        snprintf(f->scheme, sizeof f->scheme, "%s", h->scheme);
        str_of(f->host, sizeof f->host, &h->host);
        str_of(f->target, sizeof f->target, &h->target);
        snprintf(f->req_version, sizeof f->req_version, "%s", h->http_version);
        f->port = h->port;
        f->req_decoded = h->body_decoded;
        headers_of(&f->req_headers, h->headers, h->n_headers);
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
        f->order_ok &= f->last == REEL__RECORD__EVENT_REQUEST_HEAD || f->last == ev;
        reel_buf_append(&f->req_body, rec->request_body->data.data, rec->request_body->data.len);
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        f->order_ok &= f->last == REEL__RECORD__EVENT_REQUEST_HEAD ||
                       f->last == REEL__RECORD__EVENT_REQUEST_BODY;
        f->has_resp = 1;
        f->resp_head_time = rec->time_us;
        f->status = h->status;
        str_of(f->reason, sizeof f->reason, &h->reason);
        snprintf(f->resp_version, sizeof f->resp_version, "%s", h->http_version);
        f->resp_decoded = h->body_decoded;
        headers_of(&f->resp_headers, h->headers, h->n_headers);
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        f->order_ok &= f->last == REEL__RECORD__EVENT_RESPONSE_HEAD || f->last == ev;
        reel_buf_append(&f->resp_body, rec->response_body->data.data, rec->response_body->data.len);
        break;
    case REEL__RECORD__EVENT_MESSAGE: {
        const Reel__Message *m = rec->message;
        /* after the 101 (and its empty body), before the end */
        f->order_ok &=
            f->has_resp && (f->last == REEL__RECORD__EVENT_RESPONSE_HEAD ||
                            f->last == REEL__RECORD__EVENT_RESPONSE_BODY || f->last == ev);
        if (f->nmsg < sizeof f->msg / sizeof f->msg[0]) {
            f->msg[f->nmsg].from_client = m->from_client;
            f->msg[f->nmsg].truncated = m->truncated;
            f->msg[f->nmsg].continued = m->continued;
            f->msg[f->nmsg].opcode = m->opcode;
            f->msg[f->nmsg].close_code = m->close_code;
            f->msg[f->nmsg].time_us = rec->time_us;
            f->msg[f->nmsg].length = m->length;
            f->msg[f->nmsg].len = m->data.len;
            f->nmsg++;
        }
        reel_buf_append(&f->msg_data, m->data.data, m->data.len);
        break;
    }
    case REEL__RECORD__EVENT_END:
        f->order_ok &= f->has_resp;
        f->ended = 1;
        f->end_time = rec->time_us;
        f->req_end = rec->end->request_end_us;
        f->resp_start = rec->end->response_start_us;
        f->size[0] = rec->end->request_body_size;
        f->size[1] = rec->end->response_body_size;
        f->truncated[0] = rec->end->request_truncated;
        f->truncated[1] = rec->end->response_truncated;
        if (rec->end->timings) {
            const Reel__Timings *t = rec->end->timings;
            f->has_timings = 1;
            f->timings = (reel_timings_t){t->blocked_us, t->dns_us,     t->connect_us, t->send_us,
                                          t->wait_us,    t->receive_us, t->ssl_us};
        }
        break;
    case REEL__RECORD__EVENT_ERROR:
        f->order_ok &= f->last != 0;
        snprintf(f->error, sizeof f->error, "%s", rec->error->message);
        f->size[0] = rec->error->request_body_size;
        f->size[1] = rec->error->response_body_size;
        break;
    default:
        f->order_ok = 0;
        break;
    }
    f->last = ev;
    return 0;
}

static void flow_read(reel_session_t *s, uint64_t id, flow_t *f) {
    memset(f, 0, sizeof *f);
    f->order_ok = 1;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_store_read_flow(s, id, collect, f, &err);
    if (rc != REEL_OK)
        fail_msg("flow %llu: %s", (unsigned long long)id, err.msg);
    assert_true(f->order_ok);
}

static void flow_free(flow_t *f) {
    reel_buf_free(&f->req_headers);
    reel_buf_free(&f->req_body);
    reel_buf_free(&f->resp_headers);
    reel_buf_free(&f->resp_body);
    reel_buf_free(&f->msg_data);
}

static void assert_bytes(const reel_buf_t *b, const void *want, size_t len) {
    if (b->len != len)
        fail_msg("body length %zu, want %zu", b->len, len);
    assert_memory_equal(b->data, want, len);
}

static reel_session_t *open_session(const char *name) {
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_open(tmp_dir, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err) != REEL_OK)
        fail_msg("open: %s", err.msg);
    return s;
}

static reel_rc import(reel_session_t *s, const char *path, reel_har_stats_t *st, reel_err_t *err) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.body_limit = UINT64_MAX / 2;
    o.fsync = REEL_FSYNC_NEVER;
    reel_recorder_t *rec = NULL;
    assert_int_equal(reel_recorder_open(s, &o, &rec, err), REEL_OK);
    reel_rc rc = reel_har_import(rec, path, st, err);
    reel_rc rc2 = reel_recorder_close(rec, err);
    return rc != REEL_OK ? rc : rc2;
}

static long long count_flows(reel_session_t *s) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(reel_session_db(s), "SELECT count(*) FROM flows", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static const char html[] =
    "<!doctype html>\n<html><head><title>Example</title><link rel=\"stylesheet\" "
    "href=\"http://example.test:8080/style.css?v=3\"></head>\n<body><h1>Bonjour, caf\xc3\xa9</h1>"
    "<img src=\"/img/logo.png\"></body></html>\n";

static const uint8_t png[70] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
    0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xd0, 0x00, 0x00, 0x04, 0x81, 0x01, 0x80, 0x2c, 0x55,
    0xce, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

#define UA                                                                                         \
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "     \
    "Safari/537.36"
#define T0 INT64_C(1767323045000000) /* 2026-01-02T03:04:05Z */

static const struct {
    const char *method, *scheme, *host;
    uint32_t port;
    const char *target, *url, *req_version;
    const char *req_headers;
    const char *req_body;
    uint32_t status; /* 0: error flow */
    const char *reason, *resp_version, *resp_headers;
    const void *resp_body;
    size_t resp_body_len;
    const char *server, *error;
    int64_t start, req_end, resp_start, end;
    reel_timings_t timings;
    /* the bytes of the WebSocket messages each way, which the index's
     * sizes count, as a capture's */
    uint64_t msg_bytes[2];
    /* the response body's size on the wire when the body is given decoded
     * (under a Content-Encoding: the entry's bodySize); 0: resp_body_len */
    uint64_t resp_wire;
} expect[] = {
    {"GET",
     "https",
     "example.test",
     443,
     "/",
     "https://example.test/",
     "HTTP/2.0",
     "accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\n"
     "accept-encoding: gzip, deflate, br, zstd\n"
     "accept-language: en-US,en;q=0.9\n"
     "user-agent: " UA "\n",
     "",
     200,
     "",
     "HTTP/2.0",
     "cache-control: max-age=600\ncontent-encoding: gzip\n"
     "content-type: text/html; charset=utf-8\ndate: Fri, 02 Jan 2026 03:04:05 GMT\n"
     "vary: Accept-Encoding\n",
     html,
     sizeof html - 1,
     "93.184.215.14:443",
     NULL,
     T0 + 123000,
     T0 + 123000 + 48450,
     T0 + 123000 + 78450,
     T0 + 123000 + 85123,
     /* Chromium's connect, 35.5 ms, holds its ssl (HAR 1.2): reel's
      * connect is TCP alone */
     {2500, 10250, 15500, 200, 30000, 6673, 20000},
     {0, 0},
     127}, /* bodySize: gzip, 196 bytes decoded, 61 saved */
    {"POST",
     "https",
     "example.test",
     443,
     "/api/login",
     "https://example.test/api/login",
     "HTTP/2.0",
     "accept: application/json\ncontent-length: 31\ncontent-type: application/json\n"
     "origin: https://example.test\nuser-agent: " UA "\n",
     "{\"user\":\"an\xc3\xa9\",\"remember\":true}",
     200,
     "",
     "HTTP/2.0",
     "content-type: application/json\nset-cookie: sid=abc123; Path=/; Secure; HttpOnly\n"
     "date: Fri, 02 Jan 2026 03:04:05 GMT\n",
     "{\"ok\":true,\"token\":\"t-42\"}",
     26,
     "93.184.215.14:443",
     NULL,
     T0 + 200000,
     T0 + 201000,
     T0 + 239000,
     T0 + 241500,
     {750, -1, -1, 250, 38000, 2500, -1},
     {0, 0},
     0},
    {"GET",
     "https",
     "example.test",
     443,
     "/img/logo.png",
     "https://example.test/img/logo.png",
     "HTTP/2.0",
     "accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\n"
     "referer: https://example.test/\nuser-agent: " UA "\n",
     "",
     200,
     "",
     "HTTP/2.0",
     "content-length: 70\ncontent-type: image/png\ncache-control: max-age=86400\n",
     png,
     sizeof png,
     "93.184.215.14:443",
     NULL,
     T0 + 250000,
     T0 + 251500,
     T0 + 261000,
     T0 + 262000,
     {1000, -1, -1, 500, 9500, 1000, -1},
     {0, 0},
     0},
    {"GET",
     "http",
     "example.test",
     8080,
     "/style.css?v=3",
     "http://example.test:8080/style.css?v=3",
     "HTTP/1.1",
     "Accept: text/css,*/*;q=0.1\nAccept-Encoding: gzip, deflate\nConnection: keep-alive\n"
     "Host: example.test:8080\nIf-Modified-Since: Thu, 01 Jan 2026 00:00:00 GMT\n"
     "If-None-Match: \"css-v3\"\nReferer: https://example.test/\nUser-Agent: " UA "\n",
     "",
     304,
     "Not Modified",
     "HTTP/1.1",
     "Date: Fri, 02 Jan 2026 03:04:05 GMT\nETag: \"css-v3\"\nConnection: keep-alive\n",
     "",
     0,
     "93.184.215.14:8080",
     NULL,
     T0 + 255000,
     T0 + 264750,
     T0 + 273750,
     T0 + 275250,
     {500, 1000, 8000, 250, 9000, 1500, -1},
     {0, 0},
     0},
    {"POST",
     "https",
     "2001:db8::1",
     8443,
     "/beacon?e=view&t=1",
     "https://[2001:db8::1]:8443/beacon?e=view&t=1",
     "HTTP/2.0",
     "content-type: text/plain;charset=UTF-8\nuser-agent: " UA "\n",
     "view=home",
     204,
     "",
     "HTTP/2.0",
     "date: Fri, 02 Jan 2026 03:04:06 GMT\n",
     "",
     0,
     "[2001:db8::1]:8443",
     NULL,
     T0 + 1002000,
     T0 + 1011500,
     T0 + 1016500,
     T0 + 1017000,
     {500, 500, 3000, 500, 5000, 500, 5000},
     {0, 0},
     0}, /* connect 8 ms, ssl 5 of them */
    {"GET",
     "https",
     "ads.example.test",
     443,
     "/track.js",
     "https://ads.example.test/track.js",
     "HTTP/1.1",
     "Referer: https://example.test/\nUser-Agent: " UA "\n",
     "",
     0,
     NULL,
     NULL,
     NULL,
     NULL,
     0,
     "",
     "no response (HAR status 0): net::ERR_BLOCKED_BY_CLIENT",
     T0 + 1050000,
     0,
     0,
     0,
     {0},
     {0, 0},
     0},
    {"GET",
     "https",
     "example.test",
     443,
     "/socket",
     "https://example.test/socket",
     "HTTP/1.1",
     "Host: example.test\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nOrigin: https://example.test\n",
     "",
     101,
     "Switching Protocols",
     "HTTP/1.1",
     "Upgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: "
     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n",
     "",
     0,
     "93.184.215.14:443",
     NULL,
     T0 + 1100000,
     T0 + 1100500 + 500,
     T0 + 1101000 + 29000,
     T0 + 1130000,
     {500, -1, -1, 500, 29000, -1, -1},
     {5, 2},
     0}, /* "hello", "hi" */
};

static void test_import_chromium(void **state) {
    reel_session_t *s = open_session("chromium");
    char *p = fixture("chromium.har");
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = import(s, p, &st, &err);
    if (rc != REEL_OK)
        fail_msg("import: %s", err.msg);
    size_t n = sizeof expect / sizeof expect[0];
    assert_int_equal(st.entries, n);
    assert_int_equal(st.first_id, 1);
    assert_int_equal(st.last_id, n);
    assert_int_equal(st.skipped, 0);

    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT id, source, state, method, url, host, port, path, "
                           "http_version, status, error, start_us, request_end_us, "
                           "response_start_us, end_us, server_addr, request_body_size, "
                           "response_body_size FROM flows ORDER BY id",
                           -1, &q, NULL),
        SQLITE_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        const char *tag = expect[i].url;
        print_message("flow %zu: %s\n", i + 1, tag);
        assert_int_equal(sqlite3_column_int64(q, 0), (long long)i + 1);
        assert_string_equal((const char *)sqlite3_column_text(q, 1), "har-import");
        assert_string_equal((const char *)sqlite3_column_text(q, 2),
                            expect[i].status ? "complete" : "error");
        assert_string_equal((const char *)sqlite3_column_text(q, 3), expect[i].method);
        assert_string_equal((const char *)sqlite3_column_text(q, 4), expect[i].url);
        assert_string_equal((const char *)sqlite3_column_text(q, 5), expect[i].host);
        assert_int_equal(sqlite3_column_int64(q, 6), expect[i].port);
        assert_string_equal((const char *)sqlite3_column_text(q, 7), expect[i].target);
        assert_string_equal((const char *)sqlite3_column_text(q, 8), expect[i].req_version);
        if (expect[i].status) {
            assert_int_equal(sqlite3_column_int64(q, 9), expect[i].status);
            assert_int_equal(sqlite3_column_type(q, 10), SQLITE_NULL);
            assert_int_equal(sqlite3_column_int64(q, 12), expect[i].req_end);
            assert_int_equal(sqlite3_column_int64(q, 13), expect[i].resp_start);
            assert_int_equal(sqlite3_column_int64(q, 14), expect[i].end);
        } else {
            assert_int_equal(sqlite3_column_type(q, 9), SQLITE_NULL);
            assert_string_equal((const char *)sqlite3_column_text(q, 10), expect[i].error);
        }
        assert_int_equal(sqlite3_column_int64(q, 11), expect[i].start);
        if (expect[i].server[0])
            assert_string_equal((const char *)sqlite3_column_text(q, 15), expect[i].server);
        else
            assert_int_equal(sqlite3_column_type(q, 15), SQLITE_NULL);
        assert_int_equal(sqlite3_column_int64(q, 16),
                         strlen(expect[i].req_body) + expect[i].msg_bytes[0]);
        assert_int_equal(sqlite3_column_int64(q, 17),
                         (expect[i].resp_wire ? expect[i].resp_wire : expect[i].resp_body_len) +
                             expect[i].msg_bytes[1]);

        flow_t f;
        flow_read(s, i + 1, &f);
        assert_string_equal(f.source, "har-import");
        assert_string_equal(f.server, expect[i].server);
        assert_int_equal(f.start_time, expect[i].start);
        assert_int_equal(f.req_head_time, expect[i].start);
        assert_string_equal(f.method, expect[i].method);
        assert_string_equal(f.scheme, expect[i].scheme);
        assert_string_equal(f.host, expect[i].host);
        assert_int_equal(f.port, expect[i].port);
        assert_string_equal(f.target, expect[i].target);
        assert_string_equal(f.req_version, expect[i].req_version);
        assert_int_equal(f.req_decoded, 0);
        assert_bytes(&f.req_headers, expect[i].req_headers, strlen(expect[i].req_headers));
        assert_bytes(&f.req_body, expect[i].req_body, strlen(expect[i].req_body));
        if (expect[i].status == 0) {
            assert_false(f.has_resp);
            assert_false(f.ended);
            assert_string_equal(f.error, expect[i].error);
        } else {
            assert_true(f.has_resp);
            assert_true(f.ended);
            assert_string_equal(f.error, "");
            assert_int_equal(f.status, expect[i].status);
            assert_string_equal(f.reason, expect[i].reason);
            assert_string_equal(f.resp_version, expect[i].resp_version);
            assert_int_equal(f.resp_decoded, 1);
            assert_bytes(&f.resp_headers, expect[i].resp_headers, strlen(expect[i].resp_headers));
            assert_bytes(&f.resp_body, expect[i].resp_body, expect[i].resp_body_len);
            assert_int_equal(f.resp_head_time, expect[i].resp_start);
            assert_int_equal(f.end_time, expect[i].end);
            assert_int_equal(f.req_end, expect[i].req_end);
            assert_int_equal(f.resp_start, expect[i].resp_start);
            assert_true(f.has_timings);
            assert_memory_equal(&f.timings, &expect[i].timings, sizeof f.timings);
        }
        flow_free(&f);
    }
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);

    /* a second import appends with the next ids */
    reel_err_clear(&err);
    assert_int_equal(import(s, p, &st, &err), REEL_OK);
    assert_int_equal(st.first_id, n + 1);
    assert_int_equal(st.last_id, 2 * n);
    assert_int_equal(count_flows(s), 2 * n);
    free(p);
    reel_session_close(s);
}

static void test_import_broken_records_nothing(void **state) {
    reel_session_t *s = open_session("broken");
    const char *names[] = {"bad-url.har", "bad-base64.har", "not-json.har"};
    for (size_t i = 0; i < 3; i++) {
        char *p = fixture(names[i]);
        reel_har_stats_t st;
        reel_err_t err, want;
        reel_err_clear(&err);
        reel_err_clear(&want);
        reel_har_check(p, &want);
        assert_int_equal(import(s, p, &st, &err), REEL_INVALID);
        assert_string_equal(err.msg, want.msg);
        assert_int_equal(st.entries, 0);
        assert_int_equal(st.first_id, 0);
        free(p);
    }
    assert_int_equal(count_flows(s), 0);
    reel_session_close(s);
}

static void test_import_skips_other_schemes(void **state) {
    reel_session_t *s = open_session("schemes");
    char *p = fixture("other-schemes.har");
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(import(s, p, &st, &err), REEL_OK);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.skipped, 2);
    assert_int_equal(st.first_id, 1);
    assert_int_equal(st.last_id, 1);
    assert_int_equal(count_flows(s), 1);
    flow_t f;
    flow_read(s, 1, &f);
    assert_string_equal(f.target, "/x");
    assert_true(f.has_timings);
    assert_int_equal(f.end_time, T0 + 1000); /* "time": 1 */
    flow_free(&f);
    free(p);
    reel_session_close(s);
}

static char *b64_encode(const uint8_t *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = reel_malloc((n + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = a[w >> 18 & 63];
        *o++ = a[w >> 12 & 63];
        *o++ = i + 1 < n ? a[w >> 6 & 63] : '=';
        *o++ = i + 2 < n ? a[w & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* Bodies larger than a base64 decoding piece and a spool chunk, a NUL in a
 * text body, and odd lengths of base64 (1 and 2 padding bytes). */
static void test_import_large_bodies(void **state) {
    static const size_t sizes[] = {300001, 300002, 0, 1};
    reel_session_t *s = open_session("large");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint8_t *bin = reel_malloc(n);
        uint32_t x = 2463534242u + (uint32_t)k;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bin[i] = (uint8_t)x;
        }
        char *b64 = b64_encode(bin, n);
        size_t tn = 100000 + k;
        char *text = reel_malloc(tn);
        for (size_t i = 0; i < tn; i++)
            text[i] = (char)('a' + i % 26);
        text[7] = '\0';

        json_error_t jerr;
        json_t *root = json_loads(base_har, 0, &jerr);
        json_t *e = json_array_get(json_object_get(json_object_get(root, "log"), "entries"), 0);
        json_object_set_new(json_object_get(e, "request"), "postData",
                            json_pack("{s:s, s:s%}", "mimeType", "text/plain", "text", text, tn));
        json_object_set_new(json_object_get(json_object_get(e, "response"), "content"), "text",
                            json_string(b64));
        json_object_set_new(json_object_get(json_object_get(e, "response"), "content"), "encoding",
                            json_string("base64"));
        char *p = reel_asprintf("%s/large-%zu.har", tmp_dir, k);
        assert_int_equal(json_dump_file(root, p, 0), 0);
        json_decref(root);

        reel_har_stats_t st;
        reel_err_t err;
        reel_err_clear(&err);
        if (import(s, p, &st, &err) != REEL_OK)
            fail_msg("import: %s", err.msg);
        assert_int_equal(st.entries, 1);
        flow_t f;
        flow_read(s, st.first_id, &f);
        assert_bytes(&f.req_body, text, tn);
        assert_bytes(&f.resp_body, bin, n);
        flow_free(&f);
        free(p);
        free(text);
        free(b64);
        free(bin);
    }
    reel_session_close(s);
}

/* Imports base_har with entries[0].request set to the JSON `req`; returns
 * the flow read back (free with flow_free). */
static void import_request(reel_session_t *s, const char *req, flow_t *f) {
    char *p = variant("request", req);
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    if (import(s, p, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    assert_int_equal(st.entries, 1);
    flow_read(s, st.first_id, f);
    free(p);
}

#define REQ_HEAD                                                                                   \
    "{\"method\":\"POST\",\"url\":\"https://example.test/p\",\"httpVersion\":\"HTTP/1.1\","        \
    "\"queryString\":[],\"cookies\":[],\"headersSize\":-1,\"bodySize\":-1,"

/* postData under a Content-Encoding is the decoded body (as reel export
 * and browsers write it): stored with body_decoded, as response content
 * is; without one (or with identity) the flag stays off. */
static void test_import_encoded_request(void **state) {
    reel_session_t *s = open_session("encoded");
    flow_t f;
    import_request(s,
                   REQ_HEAD "\"headers\":[{\"name\":\"Content-Encoding\",\"value\":\"gzip\"}],"
                            "\"postData\":{\"mimeType\":\"text/plain\",\"text\":\"hello\"}}",
                   &f);
    assert_int_equal(f.req_decoded, 1);
    assert_bytes(&f.req_body, "hello", 5);
    flow_free(&f);
    import_request(s,
                   REQ_HEAD "\"headers\":[{\"name\":\"content-encoding\",\"value\":\" br \"}],"
                            "\"postData\":{\"mimeType\":\"text/plain\",\"text\":\"hi\"}}",
                   &f);
    assert_int_equal(f.req_decoded, 1);
    flow_free(&f);
    import_request(s,
                   REQ_HEAD "\"headers\":[{\"name\":\"Content-Encoding\",\"value\":\"identity\"}],"
                            "\"postData\":{\"mimeType\":\"text/plain\",\"text\":\"hi\"}}",
                   &f);
    assert_int_equal(f.req_decoded, 0);
    flow_free(&f);
    reel_session_close(s);
}

/* postData with params and no text (HAR 1.2, form-urlencoded): the body is
 * rebuilt, encoded; multipart params without text are refused. */
static void test_import_params_only(void **state) {
    reel_session_t *s = open_session("params");
    flow_t f;
    import_request(s,
                   REQ_HEAD "\"headers\":[],\"postData\":{\"mimeType\":"
                            "\"application/x-www-form-urlencoded\",\"params\":["
                            "{\"name\":\"q\",\"value\":\"a b&c=d\"},{\"name\":\"empty\"},"
                            "{\"name\":\"x.y\",\"value\":\"caf\\u00e9+%*-_~\"}]}}",
                   &f);
    static const char want[] = "q=a+b%26c%3Dd&empty=&x.y=caf%C3%A9%2B%25*-_%7E";
    assert_bytes(&f.req_body, want, strlen(want));
    flow_free(&f);

    char *p =
        variant("request.postData", "{\"mimeType\":\"multipart/form-data; boundary=x\",\"params\":"
                                    "[{\"name\":\"f\",\"value\":\"v\"}]}");
    check_har(p, REEL_INVALID,
              ": entries[0].request.postData: multipart params without text: the body "
              "cannot be rebuilt from them");
    free(p);
    p = variant("request.postData",
                "{\"mimeType\":\"application/x-www-form-urlencoded\",\"params\":"
                "[{\"name\":\"f\",\"fileName\":\"a.txt\"}]}");
    check_har(p, REEL_INVALID,
              ": entries[0].request.postData.params[0]: a file upload without postData.text: "
              "the body cannot be rebuilt from params");
    free(p);
    p = variant("request.postData", "{\"mimeType\":\"application/x-www-form-urlencoded\","
                                    "\"params\":[{\"name\":5}]}");
    check_har(p, REEL_INVALID,
              ": entries[0].request.postData.params[0].name: not a string but a number");
    free(p);
    reel_session_close(s);
}

/* A file starting with a UTF-8 BOM, and base64 wrapped in 76-column lines
 * (tests/data/har/bom-wrapped.har, also used end to end). */
static void test_import_bom_wrapped_base64(void **state) {
    reel_session_t *s = open_session("bom");
    char *p = fixture("bom-wrapped.har");
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    unsigned char bom[3];
    assert_int_equal(fread(bom, 1, 3, fp), 3);
    fclose(fp);
    assert_memory_equal(bom, "\xEF\xBB\xBF", 3);
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    if (import(s, p, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    flow_t f;
    flow_read(s, st.first_id, &f);
    uint8_t want[100];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (uint8_t)(i * 7);
    assert_bytes(&f.resp_body, want, sizeof want);
    flow_free(&f);
    free(p);

    /* line breaks are skipped, bad bytes are still named at their offset
     * in the text as written */
    p = variant("request.postData", "{\"text\":\"eA\\r\\n==\\n\",\"encoding\":\"base64\"}");
    check_har(p, REEL_OK, "");
    free(p);
    p = variant("request.postData", "{\"text\":\"eA\\r\\n=!\",\"encoding\":\"base64\"}");
    check_har(p, REEL_INVALID, ": entries[0].request.postData.text: invalid base64 at offset 4");
    free(p);
    reel_session_close(s);
}

/* One entry with the given request fields (after the head's), response
 * headers, response bodySize and content, and entry-level extras. */
static char *cut_entry(const char *req, const char *resp_headers, int resp_body_size,
                       const char *content, const char *extra) {
    return reel_asprintf(
        "{\"startedDateTime\":\"2026-01-02T03:04:05.000Z\",\"time\":1,"
        "\"request\":{\"method\":\"POST\",\"url\":\"https://example.test/p\","
        "\"httpVersion\":\"HTTP/1.1\",\"headers\":[],\"queryString\":[],\"cookies\":[],"
        "\"headersSize\":-1%s},"
        "\"response\":{\"status\":200,\"statusText\":\"OK\",\"httpVersion\":\"HTTP/1.1\","
        "\"headers\":%s,\"cookies\":[],\"content\":%s,\"redirectURL\":\"\","
        "\"headersSize\":-1,\"bodySize\":%d},"
        "\"cache\":{},\"timings\":{\"send\":0,\"wait\":1,\"receive\":0}%s}",
        req, resp_headers, content, resp_body_size, extra);
}

/* A body that was cut before it was written to the HAR is recorded as
 * truncated, with its size on the wire, as a capture's body_limit cut is:
 * reel export's _reel.*_truncated say so, and so does a bodySize larger
 * than the body (without a Content-Encoding or Transfer-Encoding: with
 * one bodySize counts encoded bytes or chunk framing) or a content.size
 * larger than the part of the response given. A body given whole stays
 * whole. A body given decoded (under a Content-Encoding) is as long on
 * the wire as bodySize says, else content.size - compression. */
static void test_import_truncated_bodies(void **state) {
    reel_session_t *s = open_session("cut");
    const char *const gz = "[{\"name\":\"Content-Encoding\",\"value\":\"gzip\"}]";
    const char *const abc = "{\"size\":3,\"mimeType\":\"text/plain\",\"text\":\"abc\"}";
    const char *const hello = ",\"bodySize\":5,\"postData\":{\"mimeType\":\"text/plain\","
                              "\"text\":\"hello\"}";
    const struct {
        const char *req, *headers;
        int body_size;
        const char *content, *extra;
        int req_cut, resp_cut;
        uint64_t req_size, resp_size;
    } cases[] = {
        /* whole: nothing cut */
        {hello, "[]", 3, abc, "", 0, 0, 5, 3},
        /* what reel export writes for body_limit cuts (sizes unknown) */
        {hello, "[]", 3, abc, ",\"_reel\":{\"response_truncated\":true}", 0, 1, 5, 3},
        {",\"bodySize\":10,\"postData\":{\"mimeType\":\"text/plain\",\"text\":\"hello\"}", "[]", 3,
         abc, ",\"_reel\":{\"request_truncated\":true}", 1, 0, 10, 3},
        /* bodySize larger than the body */
        {hello, "[]", 100, abc, "", 0, 1, 5, 100},
        {",\"bodySize\":8,\"postData\":{\"mimeType\":\"text/plain\",\"text\":\"hello\"}", "[]", 3,
         abc, "", 1, 0, 8, 3},
        /* gzip: bodySize counts encoded bytes, the body is decoded: not
         * cut, and its size is bodySize, the wire's */
        {hello, gz, 90, "{\"size\":3,\"mimeType\":\"text/plain\",\"text\":\"abc\"}", "", 0, 0, 5,
         90},
        /* ... without bodySize: content.size less compression */
        {hello, gz, -1,
         "{\"size\":3,\"compression\":1,\"mimeType\":\"text/plain\",\"text\":\"abc\"}", "", 0, 0, 5,
         2},
        /* ... with neither: the bytes given */
        {hello, gz, -1, abc, "", 0, 0, 5, 3},
        /* chunked: a browser's bodySize may count the chunks' framing */
        {hello, "[{\"name\":\"Transfer-Encoding\",\"value\":\"chunked\"}]", 13, abc, "", 0, 0, 5,
         3},
        /* content.size larger than the text given: cut, at bodySize on
         * the wire (encoded), or content.size without one */
        {hello, gz, 40, "{\"size\":500,\"mimeType\":\"text/plain\",\"text\":\"abc\"}", "", 0, 1, 5,
         40},
        {hello, gz, -1, "{\"size\":500,\"mimeType\":\"text/plain\",\"text\":\"abc\"}", "", 0, 1, 5,
         500},
        /* no text at all (a browser that left it out): nothing said cut */
        {hello, "[]", 0, "{\"size\":500,\"mimeType\":\"text/plain\"}", "", 0, 0, 5, 0},
        /* _reel with other values: not a cut */
        {hello, "[]", 3, abc, ",\"_reel\":{\"response_truncated\":false}", 0, 0, 5, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *entry = cut_entry(cases[i].req, cases[i].headers, cases[i].body_size,
                                cases[i].content, cases[i].extra);
        char *p = variant("", entry);
        reel_har_stats_t st;
        reel_err_t err;
        reel_err_clear(&err);
        if (import(s, p, &st, &err) != REEL_OK)
            fail_msg("case %zu: import: %s", i, err.msg);
        flow_t f;
        flow_read(s, st.first_id, &f);
        if (f.truncated[0] != cases[i].req_cut || f.truncated[1] != cases[i].resp_cut ||
            f.size[0] != cases[i].req_size || f.size[1] != cases[i].resp_size)
            fail_msg("case %zu: truncated %d/%d sizes %llu/%llu, want %d/%d %llu/%llu", i,
                     f.truncated[0], f.truncated[1], (unsigned long long)f.size[0],
                     (unsigned long long)f.size[1], cases[i].req_cut, cases[i].resp_cut,
                     (unsigned long long)cases[i].req_size, (unsigned long long)cases[i].resp_size);
        assert_bytes(&f.req_body, "hello", 5);
        flow_free(&f);
        free(p);
        free(entry);
    }
    reel_session_close(s);
}

/* An HTTP/2 WebSocket (RFC 8441) as reel export writes it: method
 * CONNECT, a wss:// URL, ':protocol' among the headers (first, as reel
 * records it). The import keeps ':protocol' on the CONNECT, where it
 * stood, so the flow is the extended CONNECT the client sent, not a bare
 * CONNECT; the other pseudo-headers stay out (the method and URL hold
 * them), and a ':protocol' of a request that is not a CONNECT, or of a
 * response, is left out as before. */
static void test_import_h2_websocket_keeps_protocol(void **state) {
    reel_session_t *s = open_session("h2ws");
    flow_t f;
    import_request(s,
                   "{\"method\":\"CONNECT\",\"url\":\"wss://example.test/chat?room=1\","
                   "\"httpVersion\":\"HTTP/2.0\",\"queryString\":[],\"cookies\":[],"
                   "\"headersSize\":-1,\"bodySize\":0,\"headers\":["
                   "{\"name\":\":protocol\",\"value\":\"websocket\"},"
                   "{\"name\":\":authority\",\"value\":\"example.test\"},"
                   "{\"name\":\"sec-websocket-version\",\"value\":\"13\"},"
                   "{\"name\":\":path\",\"value\":\"/chat?room=1\"},"
                   "{\"name\":\"origin\",\"value\":\"https://example.test\"}]}",
                   &f);
    assert_string_equal(f.method, "CONNECT");
    assert_string_equal(f.scheme, "https");
    assert_string_equal(f.host, "example.test");
    assert_string_equal(f.target, "/chat?room=1");
    assert_string_equal(f.req_version, "HTTP/2.0");
    static const char want[] =
        ":protocol: websocket\nsec-websocket-version: 13\norigin: https://example.test\n";
    assert_bytes(&f.req_headers, want, strlen(want));
    flow_free(&f);

    /* not a CONNECT: no extended CONNECT, ':protocol' is left out */
    import_request(s,
                   "{\"method\":\"GET\",\"url\":\"https://example.test/\","
                   "\"httpVersion\":\"HTTP/2.0\",\"queryString\":[],\"cookies\":[],"
                   "\"headersSize\":-1,\"bodySize\":0,\"headers\":["
                   "{\"name\":\":protocol\",\"value\":\"websocket\"},"
                   "{\"name\":\"accept\",\"value\":\"*/*\"}]}",
                   &f);
    assert_string_equal(f.method, "GET");
    assert_bytes(&f.req_headers, "accept: */*\n", 12);
    flow_free(&f);

    /* a response's pseudo-headers (:status) stay out */
    char *p = variant("response.headers", "[{\"name\":\":status\",\"value\":\"200\"},"
                                          "{\"name\":\":protocol\",\"value\":\"x\"},"
                                          "{\"name\":\"server\",\"value\":\"t\"}]");
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    if (import(s, p, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    flow_read(s, st.first_id, &f);
    assert_bytes(&f.resp_headers, "server: t\n", 10);
    flow_free(&f);
    free(p);
    reel_session_close(s);
}

/* _reel.messages, what reel export writes for the bytes after a 101 to a
 * protocol other than WebSocket, come back as the Message records they
 * were: opcode 0, each direction, its time to the microsecond, text as
 * its UTF-8 bytes (a NUL too), base64 decoded, one longer than a record
 * holds in continued records, and one body_limit cut still truncated with
 * its whole length; the flow's sizes count them, as a capture's do. */
static void test_import_tcp_messages(void **state) {
    reel_session_t *s = open_session("tcpmsgs");
    size_t n = 40000; /* more than the 16 KiB a record holds */
    uint8_t *bin = reel_malloc(n);
    for (size_t i = 0; i < n; i++)
        bin[i] = (uint8_t)(i * 7 + 0x80);
    char *b64 = b64_encode(bin, n);
    json_t *msgs =
        json_pack("[{s:s, s:f, s:s#}, {s:s, s:f, s:s, s:s}, {s:s, s:f, s:s, s:b, s:i}]", "type",
                  "send", "time", 1767323045.123457, "data", "hi\0\xc3\xbf", (size_t)5, "type",
                  "receive", "time", 1767323045.2, "data", b64, "encoding", "base64", "type",
                  "send", "time", 1767323046.000001, "data", "cut", "truncated", 1, "length", 1000);
    assert_non_null(msgs);
    char *ms = json_dumps(msgs, JSON_COMPACT | JSON_REAL_PRECISION(16));
    char *reel = reel_asprintf("{\"messages\":%s}", ms);
    char *p = variant("_reel", reel);
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    if (import(s, p, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    flow_t f;
    flow_read(s, st.first_id, &f);
    assert_int_equal(f.nmsg, 5); /* 40000 bytes: 3 records */
    static const struct {
        int from_client, truncated, continued;
        int64_t time_us;
        uint64_t length;
        size_t len;
    } want[] = {
        {1, 0, 0, 1767323045123457, 5, 5},
        {0, 0, 0, 1767323045200000, 40000, 16384},
        {0, 0, 1, 1767323045200000, 40000, 16384},
        {0, 0, 1, 1767323045200000, 40000, 40000 - 2 * 16384},
        {1, 1, 0, 1767323046000001, 1000, 3},
    };
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(f.msg[i].opcode, 0);
        assert_int_equal(f.msg[i].from_client, want[i].from_client);
        assert_int_equal(f.msg[i].truncated, want[i].truncated);
        assert_int_equal(f.msg[i].continued, want[i].continued);
        assert_int_equal(f.msg[i].time_us, want[i].time_us);
        assert_int_equal(f.msg[i].length, want[i].length);
        assert_int_equal(f.msg[i].len, want[i].len);
    }
    assert_int_equal(f.msg_data.len, 5 + n + 3);
    assert_memory_equal(f.msg_data.data, "hi\0\xc3\xbf", 5);
    assert_memory_equal(f.msg_data.data + 5, bin, n);
    assert_memory_equal(f.msg_data.data + 5 + n, "cut", 3);
    assert_true(f.ended);
    assert_int_equal(f.size[0], 5 + 1000);
    assert_int_equal(f.size[1], n);
    flow_free(&f);
    free(p);
    free(reel);
    free(ms);
    json_decref(msgs);
    free(b64);
    free(bin);
    reel_session_close(s);
}

/* _webSocketMessages come back as the Message records reel's codec gives
 * the recorder: each whole, at its time to the microsecond, with its
 * opcode; text as its UTF-8 bytes, the other opcodes' data base64 decoded
 * (a binary longer than a record holds in continued records); a close's
 * code from its first two bytes (1005 without any, 0 when body_limit cut
 * them off); opcode 0 (reel's bytes of a WebSocket it could not read
 * as frames) as such; a text message body_limit cut inside a character as the
 * bytes reel export wrote the ISO-8859-1 reading of, and one cut between
 * characters as its text. Chromium's error is no message: the flow fails
 * with it. */
static void test_import_ws_messages(void **state) {
    reel_session_t *s = open_session("wsmsgs");
    size_t n = 20000; /* more than the 16 KiB a record holds */
    uint8_t *bin = reel_malloc(n);
    for (size_t i = 0; i < n; i++)
        bin[i] = (uint8_t)(i * 13 + 0x81);
    char *b64 = b64_encode(bin, n);
    char *ms = reel_asprintf(
        "[{\"type\":\"send\",\"time\":1767323045.123457,\"opcode\":1,\"data\":\"caf\\u00e9\"},"
        "{\"type\":\"receive\",\"time\":1767323045.2,\"opcode\":2,\"data\":\"%s\"},"
        "{\"type\":\"send\",\"time\":1767323045.3,\"opcode\":9,\"data\":\"AP8=\"},"
        "{\"type\":\"error\",\"time\":1767323045.35,\"opcode\":-1,\"data\":\"Invalid frame "
        "header\"},"
        "{\"type\":\"send\",\"time\":1767323045.4,\"opcode\":1,\"data\":\"x\\u00c3\\u00a9\\u00c3\","
        "\"truncated\":true,\"length\":41},"
        "{\"type\":\"receive\",\"time\":1767323045.5,\"opcode\":1,\"data\":\"caf\\u00e9 au\","
        "\"truncated\":true,\"length\":20},"
        "{\"type\":\"send\",\"time\":1767323045.6,\"opcode\":8,\"data\":\"D6BieWU=\"},"
        "{\"type\":\"receive\",\"time\":1767323045.7,\"opcode\":8,\"data\":\"\"},"
        "{\"type\":\"receive\",\"time\":1767323045.8,\"opcode\":8,\"data\":\"Aw==\","
        "\"truncated\":true,\"length\":2},"
        "{\"type\":\"send\",\"time\":1767323045.9,\"opcode\":0,\"data\":\"gAE=\"}]",
        b64);
    char *p = variant("_webSocketMessages", ms);
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    if (import(s, p, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    flow_t f;
    flow_read(s, st.first_id, &f);
    assert_int_equal(f.nmsg, 10); /* 20000 bytes: 2 records */
    static const struct {
        int from_client, truncated, continued;
        uint32_t opcode, close_code;
        int64_t time_us;
        uint64_t length;
        size_t len;
    } want[] = {
        {1, 0, 0, 1, 0, 1767323045123457, 5, 5},
        {0, 0, 0, 2, 0, 1767323045200000, 20000, 16384},
        {0, 0, 1, 2, 0, 1767323045200000, 20000, 20000 - 16384},
        {1, 0, 0, 9, 0, 1767323045300000, 2, 2},
        {1, 1, 0, 1, 0, 1767323045400000, 41, 4},
        {0, 1, 0, 1, 0, 1767323045500000, 20, 8},
        {1, 0, 0, 8, 4000, 1767323045600000, 5, 5},
        {0, 0, 0, 8, 1005, 1767323045700000, 0, 0},
        {0, 1, 0, 8, 0, 1767323045800000, 2, 1},
        {1, 0, 0, 0, 0, 1767323045900000, 2, 2},
    };
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(f.msg[i].opcode, want[i].opcode);
        assert_int_equal(f.msg[i].close_code, want[i].close_code);
        assert_int_equal(f.msg[i].from_client, want[i].from_client);
        assert_int_equal(f.msg[i].truncated, want[i].truncated);
        assert_int_equal(f.msg[i].continued, want[i].continued);
        assert_int_equal(f.msg[i].time_us, want[i].time_us);
        assert_int_equal(f.msg[i].length, want[i].length);
        assert_int_equal(f.msg[i].len, want[i].len);
    }
    static const char tail[] = "\x00\xff"
                               "x\xc3\xa9\xc3"
                               "caf\xc3\xa9 au"
                               "\x0f\xa0"
                               "bye"
                               "\x03"
                               "\x80\x01";
    assert_int_equal(f.msg_data.len, 5 + n + sizeof tail - 1);
    assert_memory_equal(f.msg_data.data, "caf\xc3\xa9", 5);
    assert_memory_equal(f.msg_data.data + 5, bin, n);
    assert_memory_equal(f.msg_data.data + 5 + n, tail, sizeof tail - 1);
    assert_string_equal(f.error, "the browser reported a WebSocket error: Invalid frame header");
    flow_free(&f);
    free(p);
    free(ms);
    free(b64);
    free(bin);
    reel_session_close(s);
}

/* Text that is not UTF-8 as reel export writes it: the Latin-1 reading in
 * the HAR's string, the bytes in _reel.<member>_b64 beside it. The import
 * records the bytes, unless the text no longer is their reading (someone
 * edited the HAR: the edit wins); text without them is recorded as it is,
 * in UTF-8. */
static void test_import_exact_bytes(void **state) {
    reel_session_t *s = open_session("exact");
    flow_t f;
    import_request(
        s,
        "{\"method\":\"GET\",\"url\":\"https://example.test/p?q=\\u00ff\\u00fe\","
        "\"_reel\":{\"url_b64\":\"aHR0cHM6Ly9leGFtcGxlLnRlc3QvcD9xPf/+\"},"
        "\"httpVersion\":\"HTTP/1.1\",\"queryString\":[],\"cookies\":[],"
        "\"headersSize\":-1,\"bodySize\":0,\"headers\":["
        "{\"name\":\"X-Bin\",\"value\":\"\\u00ff\\u00fe caf\\u00c3\\u00a9\","
        "\"_reel\":{\"value_b64\":\"//4gY2Fmw6k=\"}},"
        "{\"name\":\"X-Edited\",\"value\":\"edited\",\"_reel\":{\"value_b64\":\"/w==\"}},"
        "{\"name\":\"X-Text\",\"value\":\"\\u00ff\"}]}",
        &f);
    assert_string_equal(f.target, "/p?q=\xff\xfe");
    static const char want[] = "X-Bin: \xff\xfe caf\xc3\xa9\nX-Edited: edited\nX-Text: \xc3\xbf\n";
    assert_bytes(&f.req_headers, want, strlen(want));
    flow_free(&f);

    char *p = variant(
        "response", "{\"status\":200,\"statusText\":\"O\\u00ffK\",\"_reel\":{\"statusText_b64\":"
                    "\"T/9L\"},\"httpVersion\":\"HTTP/1.1\",\"cookies\":[],\"headers\":["
                    "{\"name\":\"X-Resp\",\"value\":\"\\u00fe\\u00ff\",\"_reel\":{\"value_b64\":"
                    "\"/v8=\"}}],\"content\":{\"size\":0,\"mimeType\":\"x\"},\"redirectURL\":\"\","
                    "\"headersSize\":-1,\"bodySize\":0}");
    reel_har_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    if (import(s, p, &st, &err) != REEL_OK)
        fail_msg("import: %s", err.msg);
    flow_read(s, st.first_id, &f);
    assert_string_equal(f.reason, "O\xffK");
    assert_bytes(&f.resp_headers, "X-Resp: \xfe\xff\n", 11);
    flow_free(&f);
    free(p);
    reel_session_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_good),
        cmocka_unit_test(test_check_broken_fixtures),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_load_pipe),
        cmocka_unit_test(test_check_variants),
        cmocka_unit_test(test_log_version),
        cmocka_unit_test(test_import_chromium),
        cmocka_unit_test(test_import_broken_records_nothing),
        cmocka_unit_test(test_import_skips_other_schemes),
        cmocka_unit_test(test_import_large_bodies),
        cmocka_unit_test(test_import_encoded_request),
        cmocka_unit_test(test_import_params_only),
        cmocka_unit_test(test_import_bom_wrapped_base64),
        cmocka_unit_test(test_import_truncated_bodies),
        cmocka_unit_test(test_import_h2_websocket_keeps_protocol),
        cmocka_unit_test(test_import_exact_bytes),
        cmocka_unit_test(test_import_tcp_messages),
        cmocka_unit_test(test_import_ws_messages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
