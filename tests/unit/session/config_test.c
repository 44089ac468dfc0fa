/* Tests for src/session/config.c: validation of every option type and its
 * messages, near-match suggestions, the YAML user file, layering and the
 * overlay's storage with history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "session/config.h"

/* ---- helpers ---- */

/* Validates and returns the canonical form (owned), failing the test on error. */
static char *ok(const char *name, const char *value) {
    reel_err_t err;
    reel_err_clear(&err);
    char *canon = NULL;
    reel_rc rc = reel_config_validate(name, value, &canon, &err);
    if (rc != REEL_OK)
        fail_msg("%s=%s: unexpected error: %s", name, value, reel_err_str(&err));
    return canon;
}

static void expect_canon(const char *name, const char *value, const char *want) {
    char *got = ok(name, value);
    if (strcmp(got, want) != 0)
        fail_msg("%s='%s': canonical '%s', want '%s'", name, value, got, want);
    free(got);
}

/* Expects validation to fail with rc; returns the message (static buffer). */
static const char *bad(const char *name, const char *value, reel_rc want) {
    static reel_err_t err;
    reel_err_clear(&err);
    char *canon = NULL;
    reel_rc rc = reel_config_validate(name, value, &canon, &err);
    if (rc != want)
        fail_msg("%s='%s': rc %s, want %s (canonical '%s')", name, value, reel_rc_name(rc),
                 reel_rc_name(want), canon ? canon : "");
    assert_null(canon);
    assert_int_equal(err.code, want);
    return err.msg;
}

static void expect_msg(const char *name, const char *value, reel_rc want, const char *msg) {
    assert_string_equal(bad(name, value, want), msg);
}

static char tmpdir[4096];

static int make_tmpdir(void **state) {
    const char *base = getenv("REEL_TEST_TMP");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0700); /* ctest's directory may not exist yet */
    snprintf(tmpdir, sizeof tmpdir, "%s/config_test.XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return -1;
    }
    return 0;
}

static int remove_tmpdir(void **state) {
    char *cmd = reel_asprintf("rm -rf '%s'", tmpdir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

/* Writes text to <tmpdir>/<name> and returns the path (owned). */
static char *write_file(const char *name, const char *text) {
    char *path = reel_asprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static sqlite3 *open_db(void) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE config_overlay (key TEXT PRIMARY KEY, value TEXT "
                                  "NOT NULL, updated_us INTEGER NOT NULL) WITHOUT ROWID;"
                                  "CREATE TABLE config_history (id INTEGER PRIMARY KEY, time_us "
                                  "INTEGER NOT NULL, key TEXT NOT NULL, old_value TEXT, new_value "
                                  "TEXT, actor TEXT NOT NULL);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static int64_t count(sqlite3 *db, const char *table) {
    char *sql = reel_asprintf("SELECT count(*) FROM %s", table);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    free(sql);
    return n;
}

/* One config_history row as "key|old|new|actor" with NULL shown as "-". */
static char *history_row(sqlite3 *db, int64_t id) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT key, coalesce(old_value, '-'), "
                                        "coalesce(new_value, '-'), actor, time_us "
                                        "FROM config_history WHERE id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_true(sqlite3_column_int64(st, 4) > 0);
    char *row = reel_asprintf("%s|%s|%s|%s", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                              sqlite3_column_text(st, 2), sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    return row;
}

static void expect_history(sqlite3 *db, int64_t id, const char *want) {
    char *row = history_row(db, id);
    assert_string_equal(row, want);
    free(row);
}

static void expect_effective(const reel_config_t *c, const char *name, const char *value,
                             reel_layer layer) {
    reel_layer got;
    assert_string_equal(reel_config_get(c, name, &got), value);
    assert_string_equal(reel_layer_name(got), reel_layer_name(layer));
}

/* ---- the table ---- */

static void test_table(void **state) {
    size_t n = 0;
    for (const reel_option_t *o = reel_options(); o->name; o++, n++) {
        /* every default is valid and already canonical */
        expect_canon(o->name, o->def, o->def);
        assert_ptr_equal(reel_option_find(o->name), o);
        assert_non_null(o->help);
        for (const reel_option_t *p = o + 1; p->name; p++)
            assert_string_not_equal(o->name, p->name);
    }
    assert_int_equal(n, 43);
    /* the names the proxy reads */
    const char *names[] = {"listen_host",
                           "listen_port",
                           "body_limit",
                           "ignore_hosts",
                           "upstream_cert_verify",
                           "upstream_trusted_ca",
                           "capture",
                           "fsync",
                           "http2",
                           "fsync_interval_ms",
                           "segment_size",
                           "proxyauth",
                           "idle_timeout",
                           "head_timeout",
                           "max_head_size",
                           "upstream_timeout",
                           "capture_buffer",
                           "max_client_conns",
                           "workers",
                           "zstd_level",
                           "upstream_proxy",
                           "spool_block_size",
                           "upstream_proxyauth"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_non_null(reel_option_find(names[i]));
    assert_null(reel_option_find("LISTEN_PORT"));
    assert_string_equal(reel_layer_name(REEL_LAYER_DEFAULT), "default");
    assert_string_equal(reel_layer_name(REEL_LAYER_USER), "user");
    assert_string_equal(reel_layer_name(REEL_LAYER_SESSION), "session");
    assert_string_equal(reel_layer_name(REEL_LAYER_CLI), "cli");

    const char *describe[][2] = {
        {"listen_port", "integer 0..65535"},
        {"segment_size", "size 1 MiB..4 GiB"},
        {"body_limit", "size 0..4 EiB"},
        {"max_head_size", "size 1 KiB..248 KiB"},
        {"capture", "on|off|lossless"},
        {"upstream_cert_verify", "true|false"},
        {"listen_host", "text"},
        {"ignore_hosts", "list (JSON array or comma-separated)"},
    };
    for (size_t i = 0; i < sizeof describe / sizeof describe[0]; i++) {
        char *d = reel_option_describe(reel_option_find(describe[i][0]));
        assert_string_equal(d, describe[i][1]);
        free(d);
    }
}

/* ---- validation, per type ---- */

static void test_bool(void **state) {
    const char *yes[] = {"true", "TRUE", "on", "On", "yes", "YES", "1", " true\n"};
    const char *no[] = {"false", "False", "off", "OFF", "no", "No", "0", "\tno "};
    for (size_t i = 0; i < 8; i++) {
        expect_canon("upstream_cert_verify", yes[i], "true");
        expect_canon("upstream_cert_verify", no[i], "false");
    }
    expect_msg("upstream_cert_verify", "maybe", REEL_INVALID,
               "invalid value 'maybe' for upstream_cert_verify: expected true or false (or "
               "on/off, yes/no, 1/0)");
    bad("upstream_cert_verify", "", REEL_INVALID);
    bad("upstream_cert_verify", "2", REEL_INVALID);
    bad("upstream_cert_verify", "truee", REEL_INVALID);
    bad("upstream_cert_verify", "t", REEL_INVALID);
}

static void test_int(void **state) {
    expect_canon("listen_port", "8080", "8080");
    expect_canon("listen_port", " 9090 ", "9090");
    expect_canon("listen_port", "0", "0");
    expect_canon("listen_port", "65535", "65535");
    expect_canon("listen_port", "00080", "80");
    expect_canon("fsync_interval_ms", "10", "10");
    expect_canon("idle_timeout", "86400", "86400");
    expect_msg("listen_port", "65536", REEL_INVALID,
               "invalid value '65536' for listen_port: expected an integer from 0 to 65535");
    expect_msg("listen_port", "-1", REEL_INVALID,
               "invalid value '-1' for listen_port: expected an integer from 0 to 65535");
    expect_msg("fsync_interval_ms", "9", REEL_INVALID,
               "invalid value '9' for fsync_interval_ms: expected an integer from 10 to 60000");
    expect_canon("workers", "0", "0"); /* one per core */
    expect_msg("workers", "1025", REEL_INVALID,
               "invalid value '1025' for workers: expected an integer from 0 to 1024");
    const char *garbage[] = {"",    "80a", "+80", "8 0", "0x50",
                             "1e3", "8.0", "-",   "--1", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        bad("listen_port", garbage[i], REEL_INVALID);
    bad("head_timeout", "0", REEL_INVALID);
    bad("head_timeout", "3601", REEL_INVALID);
    bad("idle_timeout", "86401", REEL_INVALID);
}

static void test_size(void **state) {
    expect_canon("body_limit", "0", "0");
    expect_canon("body_limit", "1048576", "1048576");
    expect_canon("body_limit", "64m", "67108864");
    expect_canon("body_limit", "64 MiB", "67108864");
    expect_canon("body_limit", "1KB", "1024");
    expect_canon("body_limit", "1kib", "1024");
    expect_canon("body_limit", "2g", "2147483648");
    expect_canon("body_limit", "2GB", "2147483648");
    expect_canon("body_limit", "1t", "1099511627776");
    expect_canon("body_limit", "7b", "7");
    expect_canon("body_limit", "4194304t", "4611686018427387904"); /* 2^62, the maximum */
    expect_canon("body_limit", "4EiB", "4611686018427387904");     /* as the help says it */
    expect_canon("body_limit", "2p", "2251799813685248");
    expect_msg("body_limit", "5e", REEL_INVALID,
               "invalid value '5e' for body_limit: expected a size in bytes from 0 to "
               "4611686018427387904 (4 EiB); suffixes k, m, g, t, p, e (1024-based) are "
               "accepted");
    expect_msg("body_limit", "8e", REEL_INVALID,
               "invalid value '8e' for body_limit: expected a size in bytes from 0 to "
               "4611686018427387904 (4 EiB); suffixes k, m, g, t, p, e (1024-based) are "
               "accepted");
    expect_canon("segment_size", "4g", "4294967296");
    expect_canon("segment_size", "1m", "1048576");
    expect_canon("max_head_size", "1k", "1024");
    expect_canon("spool_block_size", "256k", "262144");
    expect_msg("spool_block_size", "100", REEL_INVALID,
               "invalid value '100' for spool_block_size: expected a size in bytes from 65536 "
               "(64 KiB) to 4194304 (4 MiB); suffixes k, m, g, t, p, e (1024-based) are "
               "accepted");
    expect_msg("spool_block_size", "8MiB", REEL_INVALID,
               "invalid value '8MiB' for spool_block_size: expected a size in bytes from 65536 "
               "(64 KiB) to 4194304 (4 MiB); suffixes k, m, g, t, p, e (1024-based) are "
               "accepted");
    expect_canon("max_head_size", " 248 KiB ", "253952");
    expect_msg("segment_size", "512k", REEL_INVALID,
               "invalid value '512k' for segment_size: expected a size in bytes from 1048576 "
               "(1 MiB) to 4294967296 (4 GiB); suffixes k, m, g, t, p, e (1024-based) are "
               "accepted");
    expect_msg("max_head_size", "-1", REEL_INVALID,
               "invalid value '-1' for max_head_size: a size cannot be negative; expected a "
               "size in bytes from 1024 (1 KiB) to 253952 (248 KiB); suffixes k, m, g, t, p, e "
               "(1024-based) are accepted");
    expect_msg("body_limit", " -5", REEL_INVALID,
               "invalid value ' -5' for body_limit: a size cannot be negative; expected a size "
               "in bytes from 0 to 4611686018427387904 (4 EiB); suffixes k, m, g, t, p, e "
               "(1024-based) are accepted");
    expect_msg("body_limit", "4194305t", REEL_INVALID,
               "invalid value '4194305t' for body_limit: expected a size in bytes from 0 to "
               "4611686018427387904 (4 EiB); suffixes k, m, g, t, p, e (1024-based) are "
               "accepted");
    const char *garbage[] = {"",
                             "m",
                             "12q",
                             "1.5m",
                             "1mm",
                             "1 m b",
                             "0x10",
                             "8388608t", /* 2^63: overflows int64 */
                             "99999999999999999999",
                             "1e6",
                             "+1"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        bad("body_limit", garbage[i], REEL_INVALID);
    bad("segment_size", "5g", REEL_INVALID);
    bad("segment_size", "4294967297", REEL_INVALID);
    bad("max_head_size", "1023", REEL_INVALID);
    /* a head over 248 KiB might not fit in one spool record (spool.h) */
    bad("max_head_size", "253953", REEL_INVALID);
    bad("max_head_size", "1m", REEL_INVALID);
}

static void test_enum(void **state) {
    expect_canon("capture", "on", "on");
    expect_canon("capture", "OFF", "off");
    expect_canon("capture", " Lossless ", "lossless");
    expect_canon("fsync", "interval", "interval");
    expect_canon("fsync", "never", "never");
    expect_msg("capture", "full", REEL_INVALID,
               "invalid value 'full' for capture: expected one of on, off, lossless");
    expect_msg("fsync", "", REEL_INVALID,
               "invalid value '' for fsync: expected one of block, interval, never");
    bad("capture", "o", REEL_INVALID);
    bad("capture", "onn", REEL_INVALID);
    bad("fsync", "block|never", REEL_INVALID);
}

static void test_string(void **state) {
    expect_canon("listen_host", "0.0.0.0", "0.0.0.0");
    expect_canon("listen_host", "::1", "::1");
    expect_canon("listen_host", "localhost", "localhost");
    expect_msg("listen_host", "", REEL_INVALID,
               "invalid value '' for listen_host: expected a host name or IP address (0.0.0.0 "
               "or :: for every interface)");
    bad("listen_host", "a b", REEL_INVALID);
    /* what no socket can listen on is refused when set, not when the
     * proxy starts (and resume's hint is not built on it) */
    expect_canon("listen_host", "my-host.example", "my-host.example");
    expect_canon("listen_host", "fe80::1%eth0", "fe80::1%eth0");
    bad("listen_host", "a:b:c", REEL_INVALID);
    expect_msg("listen_host", "999.1.1.1", REEL_INVALID,
               "invalid value '999.1.1.1' for listen_host: expected a host name or IP address "
               "(0.0.0.0 or :: for every interface)");
    bad("listen_host", "1.2.3", REEL_INVALID);
    bad("listen_host", "-x.example", REEL_INVALID);
    expect_canon("listen_host", "x_y.example", "x_y.example"); /* not RFC 1123, but seen */
    bad("listen_host", "fe80::1%", REEL_INVALID);
    expect_msg("listen_host", "a\nb", REEL_INVALID,
               "invalid value 'a\\x0ab' for listen_host: control characters are not allowed");
    expect_canon("upstream_trusted_ca", "", "");
    expect_canon("h2c_upstreams", "api:8080, [::1]:81", "api:8080, [::1]:81");
    expect_msg("h2c_upstreams", "api:8080, localhost", REEL_INVALID,
               "invalid value for h2c_upstreams: 'localhost' is not host:port");
    expect_msg("h2c_upstreams", "api:0", REEL_INVALID,
               "invalid value for h2c_upstreams: 'api:0' is not host:port");
    expect_msg("h2c_upstreams", ":80", REEL_INVALID,
               "invalid value for h2c_upstreams: ':80' is not host:port");
    expect_canon("upstream_trusted_ca", "/etc/ssl/extra ca.pem", "/etc/ssl/extra ca.pem");
    expect_canon("proxyauth", "", "");
    expect_canon("proxyauth", "alice:s3cret", "alice:s3cret");
    expect_canon("proxyauth", "alice:pa:ss", "alice:pa:ss");
    /* the message must not echo what may be a password */
    expect_msg("proxyauth", "s3cret", REEL_INVALID,
               "invalid value for proxyauth: expected \"user:pass\" or empty");
    bad("proxyauth", ":s3cret", REEL_INVALID);
    expect_msg("proxyauth", "a:\tb", REEL_INVALID,
               "invalid value for proxyauth: control characters are not allowed");
}

static void test_list(void **state) {
    expect_canon("ignore_hosts", "", "[]");
    expect_canon("ignore_hosts", "  ", "[]");
    expect_canon("ignore_hosts", "[]", "[]");
    expect_canon("ignore_hosts", "example\\.com:443", "[\"example\\\\.com:443\"]");
    expect_canon("ignore_hosts", "a.com:443, b.com ,, c", "[\"a.com:443\",\"b.com\",\"c\"]");
    /* a JSON array keeps commas inside items */
    expect_canon("ignore_hosts", " [\"x{1,3}\", \"y\"] ", "[\"x{1,3}\",\"y\"]");
    expect_canon("ignore_hosts", "[\"caf\xc3\xa9\"]", "[\"caf\xc3\xa9\"]");
    expect_msg("ignore_hosts", "ok, foo(", REEL_INVALID,
               "invalid value for ignore_hosts: bad regex 'foo(': missing closing parenthesis "
               "at offset 4");
    expect_msg("ignore_hosts", "[1]", REEL_INVALID,
               "invalid value '[1]' for ignore_hosts: expected a JSON array of strings");
    expect_msg("ignore_hosts", "[\"\"]", REEL_INVALID,
               "invalid value for ignore_hosts: empty list item");
    const char *m = bad("ignore_hosts", "[\"a\"", REEL_INVALID);
    assert_non_null(strstr(m, "invalid value '[\"a\"' for ignore_hosts: expected a JSON array "
                              "of strings or comma-separated text ("));
    bad("ignore_hosts", "[\"a\\u0000b\"]", REEL_INVALID);
    bad("ignore_hosts", "a\x01", REEL_INVALID);
    bad("ignore_hosts", "caf\xe9", REEL_INVALID); /* not UTF-8 */
    bad("ignore_hosts", "[\"a\", \"[\"]", REEL_INVALID);

    /* values are bounded, and long ones are cut in messages */
    char *big = reel_malloc(REEL_CONFIG_VALUE_MAX + 2);
    memset(big, 'a', REEL_CONFIG_VALUE_MAX + 1);
    big[REEL_CONFIG_VALUE_MAX + 1] = '\0';
    expect_msg("ignore_hosts", big, REEL_INVALID,
               "invalid value for ignore_hosts: 65537 bytes, at most 65536");
    big[100] = '\0';
    m = bad("listen_port", big, REEL_INVALID);
    assert_string_equal(m, "invalid value "
                           "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' "
                           "for listen_port: expected an integer from 0 to 65535");
    free(big);
}

/* ---- unknown keys ---- */

static void test_unknown(void **state) {
    expect_msg("body_limt", "1", REEL_NOTFOUND,
               "unknown option 'body_limt'; did you mean: body_limit?");
    expect_msg("listen-port", "1", REEL_NOTFOUND,
               "unknown option 'listen-port'; did you mean: listen_port?");
    expect_msg("LISTEN_PORT", "1", REEL_NOTFOUND,
               "unknown option 'LISTEN_PORT'; did you mean: listen_port?");
    expect_msg("timeout", "1", REEL_NOTFOUND,
               "unknown option 'timeout'; did you mean: idle_timeout, head_timeout, "
               "upstream_timeout?");
    expect_msg("port", "1", REEL_NOTFOUND, "unknown option 'port'; did you mean: listen_port?");
    expect_msg("fsynk", "1", REEL_NOTFOUND, "unknown option 'fsynk'; did you mean: fsync?");
    expect_msg("reel.capture", "1", REEL_NOTFOUND,
               "unknown option 'reel.capture'; did you mean: capture?");
    expect_msg("zzzzzz", "1", REEL_NOTFOUND,
               "unknown option 'zzzzzz'; valid options: listen_host, listen_port, body_limit, "
               "body_index_max, ignore_hosts, upstream_cert_verify, intercept_starttls, "
               "upstream_insecure_hosts, "
               "http2, h2c_upstreams, "
               "upstream_trusted_ca, upstream_client_certs, capture, "
               "capture_buffer, "
               "fsync, fsync_interval_ms, segment_size, spool_block_size, zstd_level, "
               "retention_max_bytes, "
               "retention_max_age, "
               "retention_max_flows, on_segment_closed, proxyauth, upstream_proxy, "
               "upstream_proxyauth, reverse_to, transparent, upstream_no_proxy, idle_timeout, "
               "head_timeout, "
               "max_head_size, upstream_timeout, workers, max_client_conns, map_remote, "
               "map_local, block_list, modify_headers, modify_body, dns_overrides, redact_headers, "
               "redact_keys");
    const char *m = bad("", "1", REEL_NOTFOUND);
    assert_non_null(strstr(m, "unknown option ''; valid options: listen_host,"));

    reel_err_t err;
    reel_err_clear(&err);
    assert_null(reel_option_lookup("body_limt", &err));
    assert_int_equal(err.code, REEL_NOTFOUND);
    assert_string_equal(err.msg, "unknown option 'body_limt'; did you mean: body_limit?");
    reel_err_clear(&err);
    assert_non_null(reel_option_lookup("body_limit", &err));
    assert_int_equal(err.code, REEL_OK);
}

/* ---- the config object and the cli layer ---- */

static void test_config_cli(void **state) {
    reel_config_t *c = reel_config_new();
    expect_effective(c, "listen_port", "8080", REEL_LAYER_DEFAULT);
    assert_int_equal(reel_config_get_int(c, "listen_port"), 8080);
    assert_int_equal(reel_config_get_int(c, "body_limit"), 64 * 1024 * 1024);
    assert_int_equal(reel_config_get_bool(c, "upstream_cert_verify"), 1);
    size_t n = 99;
    char **list = reel_config_get_list(c, "ignore_hosts", &n);
    assert_int_equal(n, 0);
    assert_null(list[0]);
    free(list);

    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_config_set_cli(c, "listen_port=9", &err), REEL_OK);
    expect_effective(c, "listen_port", "9", REEL_LAYER_CLI);
    assert_int_equal(reel_config_set_cli(c, "proxyauth=u:p=w", &err), REEL_OK);
    expect_effective(c, "proxyauth", "u:p=w", REEL_LAYER_CLI);
    assert_int_equal(reel_config_set_cli(c, "upstream_cert_verify=off", &err), REEL_OK);
    assert_int_equal(reel_config_get_bool(c, "upstream_cert_verify"), 0);
    assert_int_equal(reel_config_set_cli(c, "ignore_hosts=a,b\\.c", &err), REEL_OK);
    list = reel_config_get_list(c, "ignore_hosts", &n);
    assert_int_equal(n, 2);
    assert_string_equal(list[0], "a");
    assert_string_equal(list[1], "b\\.c");
    assert_null(list[2]);
    free(list);

    assert_int_equal(reel_config_set_cli(c, "listen_port", &err), REEL_INVALID);
    assert_string_equal(err.msg, "expected KEY=VALUE, got 'listen_port'");
    reel_err_clear(&err);
    assert_int_equal(reel_config_set_cli(c, "nope=1", &err), REEL_NOTFOUND);
    reel_err_clear(&err);
    assert_int_equal(reel_config_set_cli(c, "listen_port=x", &err), REEL_INVALID);
    expect_effective(c, "listen_port", "9", REEL_LAYER_CLI); /* unchanged */
    reel_config_free(c);
    reel_config_free(NULL);
}

/* ---- the user file ---- */

static void test_user_file(void **state) {
    char *path = write_file("good.yaml", "# reel user config\n"
                                         "listen_port: 9000\n"
                                         "body_limit: 1m\n"
                                         "upstream_cert_verify: no\n"
                                         "capture: \"lossless\"\n"
                                         "ignore_hosts:\n"
                                         "  - '^example\\.com:443$'\n"
                                         "  - internal\n"
                                         "proxyauth:\n");
    reel_config_t *c = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_config_load_user(c, path, &err), REEL_OK);
    expect_effective(c, "listen_port", "9000", REEL_LAYER_USER);
    expect_effective(c, "body_limit", "1048576", REEL_LAYER_USER);
    expect_effective(c, "upstream_cert_verify", "false", REEL_LAYER_USER);
    expect_effective(c, "capture", "lossless", REEL_LAYER_USER);
    expect_effective(c, "ignore_hosts", "[\"^example\\\\.com:443$\",\"internal\"]",
                     REEL_LAYER_USER);
    expect_effective(c, "proxyauth", "", REEL_LAYER_USER);
    expect_effective(c, "fsync", "block", REEL_LAYER_DEFAULT);
    free(path);

    /* comma-separated text and a flow sequence work for lists too */
    path = write_file("lists.yaml", "ignore_hosts: [a, 'b{1,2}']\n");
    assert_int_equal(reel_config_load_user(c, path, &err), REEL_OK);
    expect_effective(c, "ignore_hosts", "[\"a\",\"b{1,2}\"]", REEL_LAYER_USER);
    free(path);
    path = write_file("lists2.yaml", "ignore_hosts: a, b\n");
    assert_int_equal(reel_config_load_user(c, path, &err), REEL_OK);
    expect_effective(c, "ignore_hosts", "[\"a\",\"b\"]", REEL_LAYER_USER);
    free(path);

    /* missing and empty files are fine and change nothing */
    path = reel_asprintf("%s/does-not-exist.yaml", tmpdir);
    assert_int_equal(reel_config_load_user(c, path, &err), REEL_OK);
    free(path);
    path = write_file("empty.yaml", "# nothing yet\n");
    assert_int_equal(reel_config_load_user(c, path, &err), REEL_OK);
    free(path);
    expect_effective(c, "listen_port", "9000", REEL_LAYER_USER);
    assert_int_equal(err.code, REEL_OK);
    reel_config_free(c);
}

/* Loads text as a user file, expects REEL_INVALID (or want) with message
 * "<path>:<msg>", and checks the config was left as it was. */
static void expect_user_error(const char *text, reel_rc want, const char *msg) {
    char *path = write_file("bad.yaml", text);
    reel_config_t *c = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_config_load_user(c, path, &err), want);
    char *full = reel_asprintf("%s:%s", path, msg);
    if (msg[strlen(msg) - 1] == '*') { /* prefix match */
        full[strlen(full) - 1] = '\0';
        if (strncmp(err.msg, full, strlen(full)) != 0)
            fail_msg("message '%s' does not start with '%s'", err.msg, full);
    } else {
        assert_string_equal(err.msg, full);
    }
    for (const reel_option_t *o = reel_options(); o->name; o++)
        expect_effective(c, o->name, o->def, REEL_LAYER_DEFAULT);
    free(full);
    free(path);
    reel_config_free(c);
}

static void test_user_file_errors(void **state) {
    expect_user_error("listen_port: 9000\n"
                      "capture: on\n"
                      "body_limt: 1m\n",
                      REEL_INVALID, "3: unknown option 'body_limt'; did you mean: body_limit?");
    expect_user_error("listen_port: 9000\n"
                      "segment_size: 1k\n",
                      REEL_INVALID,
                      "2: invalid value '1k' for segment_size: expected a size in bytes from "
                      "1048576 (1 MiB) to 4294967296 (4 GiB); suffixes k, m, g, t, p, e "
                      "(1024-based) are accepted");
    expect_user_error("listen_port: [1\n", REEL_INVALID, "2: invalid YAML: *");
    expect_user_error("listen_port: 1\n  bad indent: 2\n", REEL_INVALID, "2: invalid YAML: *");
    expect_user_error("- listen_port\n- 1\n", REEL_INVALID,
                      "1: expected a mapping of option names to values");
    expect_user_error("just text\n", REEL_INVALID,
                      "1: expected a mapping of option names to values");
    expect_user_error("\nlisten_port:\n  - 1\n", REEL_INVALID,
                      "3: option 'listen_port' takes a single value, not a list");
    expect_user_error("capture:\n  a: b\n", REEL_INVALID,
                      "2: option 'capture' takes a single value, not a mapping");
    expect_user_error("ignore_hosts:\n  - a\n  - [b]\n", REEL_INVALID,
                      "3: items of 'ignore_hosts' must be non-empty strings");
    expect_user_error("ignore_hosts:\n  - a\n  - foo(\n", REEL_INVALID,
                      "2: invalid value for ignore_hosts: bad regex 'foo(': missing closing "
                      "parenthesis at offset 4");
    expect_user_error("fsync: never\nfsync: block\n", REEL_INVALID,
                      "2: option 'fsync' given twice (first on line 1)");
    expect_user_error("[a]: 1\n", REEL_INVALID, "1: option names must be plain strings");
    expect_user_error("fsync: never\n---\nfsync: block\n", REEL_INVALID,
                      "3: more than one YAML document; put every option in one mapping");
    expect_user_error("upstream_cert_verify: \"yes\\0\"\n", REEL_INVALID,
                      "1: value of 'upstream_cert_verify' contains a NUL byte");

    /* a directory where the file should be is an I/O error */
    reel_config_t *c = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_config_load_user(c, tmpdir, &err), REEL_IO);
    reel_config_free(c);
}

static void test_user_path(void **state) {
    char *old_xdg = reel_strdup(getenv("XDG_CONFIG_HOME"));
    char *old_home = reel_strdup(getenv("HOME"));
    setenv("XDG_CONFIG_HOME", "/x/cfg", 1);
    char *p = reel_config_user_path();
    assert_string_equal(p, "/x/cfg/reel/config.yaml");
    free(p);
    setenv("XDG_CONFIG_HOME", "relative", 1); /* XDG says: ignore relative paths */
    setenv("HOME", "/home/u", 1);
    p = reel_config_user_path();
    assert_string_equal(p, "/home/u/.config/reel/config.yaml");
    free(p);

    /* path NULL reads the user path */
    setenv("XDG_CONFIG_HOME", tmpdir, 1);
    char *dir = reel_asprintf("%s/reel", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    free(dir);
    char *f = write_file("reel/config.yaml", "head_timeout: 5\n");
    reel_config_t *c = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_config_load_user(c, NULL, &err), REEL_OK);
    expect_effective(c, "head_timeout", "5", REEL_LAYER_USER);
    reel_config_free(c);
    free(f);

    if (old_xdg)
        setenv("XDG_CONFIG_HOME", old_xdg, 1);
    else
        unsetenv("XDG_CONFIG_HOME");
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_xdg);
    free(old_home);
}

/* ---- layering ---- */

static void test_layers(void **state) {
    sqlite3 *db = open_db();
    reel_err_t err;
    reel_err_clear(&err);
    char *path = write_file("layers.yaml", "listen_port: 1000\n"
                                           "body_limit: 1k\n"
                                           "capture: off\n");
    reel_config_t *c = reel_config_new();
    assert_int_equal(reel_config_load_user(c, path, &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "listen_port", "2000", "test", &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "body_limit", "2k", "test", &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "fsync", "never", "test", &err), REEL_OK);
    char *warnings = (char *)"unchanged";
    assert_int_equal(reel_config_load_overlay(c, db, &warnings, &err), REEL_OK);
    assert_null(warnings);
    assert_int_equal(reel_config_set_cli(c, "listen_port=3000", &err), REEL_OK);

    expect_effective(c, "listen_port", "3000", REEL_LAYER_CLI);
    expect_effective(c, "body_limit", "2048", REEL_LAYER_SESSION);
    expect_effective(c, "fsync", "never", REEL_LAYER_SESSION);
    expect_effective(c, "capture", "off", REEL_LAYER_USER);
    expect_effective(c, "head_timeout", "30", REEL_LAYER_DEFAULT);

    /* rows this build refuses are skipped, with a warning each */
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO config_overlay VALUES ('capture', 'turbo', 1);"
                                  "INSERT INTO config_overlay VALUES ('future_opt', 'x', 1);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    reel_config_t *c2 = reel_config_new();
    assert_int_equal(reel_config_load_overlay(c2, db, &warnings, &err), REEL_OK);
    assert_string_equal(
        warnings,
        "session overlay: ignoring 'capture': invalid value 'turbo' for capture: "
        "expected one of on, off, lossless\n"
        "session overlay: ignoring 'future_opt': unknown option 'future_opt'; "
        "valid options: listen_host, listen_port, body_limit, body_index_max, "
        "ignore_hosts, "
        "upstream_cert_verify, intercept_starttls, upstream_insecure_hosts, http2, h2c_upstreams, "
        "upstream_trusted_ca, upstream_client_certs, "
        "capture, capture_buffer, "
        "fsync, fsync_interval_ms, segment_size, spool_block_size, zstd_level, "
        "retention_max_bytes, "
        "retention_max_age, "
        "retention_max_flows, on_segment_closed, proxyauth, upstream_proxy, upstream_proxyauth, "
        "reverse_to, transparent, upstream_no_proxy, idle_timeout, head_timeout, max_head_size, "
        "upstream_timeout, workers, "
        "max_client_conns, map_remote, map_local, block_list, modify_headers, modify_body, "
        "dns_overrides, "
        "redact_headers, redact_keys");
    free(warnings);
    expect_effective(c2, "capture", "on", REEL_LAYER_DEFAULT);
    expect_effective(c2, "listen_port", "2000", REEL_LAYER_SESSION);
    assert_int_equal(reel_config_load_overlay(c2, db, NULL, &err), REEL_OK);

    /* a database without the table is an error, and changes nothing */
    sqlite3 *empty = NULL;
    assert_int_equal(sqlite3_open(":memory:", &empty), SQLITE_OK);
    reel_config_t *c3 = reel_config_new();
    assert_int_equal(reel_config_load_overlay(c3, empty, &warnings, &err), REEL_DB);
    assert_non_null(strstr(err.msg, "reading the config overlay: no such table"));
    expect_effective(c3, "listen_port", "8080", REEL_LAYER_DEFAULT);
    sqlite3_close(empty);

    reel_config_free(c);
    reel_config_free(c2);
    reel_config_free(c3);
    free(path);
    sqlite3_close(db);
}

/* ---- overlay storage ---- */

static void test_overlay(void **state) {
    sqlite3 *db = open_db();
    reel_err_t err;
    reel_err_clear(&err);

    assert_int_equal(reel_overlay_set(db, "listen_port", "9090", "alice@box pid 1", &err), REEL_OK);
    assert_int_equal(count(db, "config_overlay"), 1);
    assert_int_equal(count(db, "config_history"), 1);
    expect_history(db, 1, "listen_port|-|9090|alice@box pid 1");

    /* same value again, in any spelling: no-op, no history row */
    assert_int_equal(reel_overlay_set(db, "listen_port", "9090", "bob", &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "listen_port", " 09090 ", "bob", &err), REEL_OK);
    assert_int_equal(count(db, "config_history"), 1);

    /* values are stored canonical */
    assert_int_equal(reel_overlay_set(db, "listen_port", "9091", "bob", &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "body_limit", "2m", "bob", &err), REEL_OK);
    expect_history(db, 2, "listen_port|9090|9091|bob");
    expect_history(db, 3, "body_limit|-|2097152|bob");
    assert_int_equal(count(db, "config_overlay"), 2);

    /* refused values and keys change nothing */
    assert_int_equal(reel_overlay_set(db, "listen_port", "99999", "bob", &err), REEL_INVALID);
    assert_string_equal(err.msg,
                        "invalid value '99999' for listen_port: expected an integer from 0 to "
                        "65535");
    reel_err_clear(&err);
    assert_int_equal(reel_overlay_set(db, "listen_prot", "1", "bob", &err), REEL_NOTFOUND);
    assert_string_equal(err.msg, "unknown option 'listen_prot'; did you mean: listen_port?");
    reel_err_clear(&err);
    assert_int_equal(count(db, "config_history"), 3);

    /* unset */
    assert_int_equal(reel_overlay_unset(db, "listen_port", "carol", &err), REEL_OK);
    expect_history(db, 4, "listen_port|9091|-|carol");
    assert_int_equal(count(db, "config_overlay"), 1);
    assert_int_equal(reel_overlay_unset(db, "listen_port", "carol", &err), REEL_NOTFOUND);
    assert_string_equal(err.msg, "option 'listen_port' is not set in this session's overlay");
    reel_err_clear(&err);
    assert_int_equal(reel_overlay_unset(db, "body_limt", "carol", &err), REEL_NOTFOUND);
    assert_string_equal(err.msg, "unknown option 'body_limt'; did you mean: body_limit?");
    reel_err_clear(&err);
    assert_int_equal(count(db, "config_history"), 4);

    /* a row another version wrote can still be unset */
    assert_int_equal(sqlite3_exec(db, "INSERT INTO config_overlay VALUES ('future_opt', 'x', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(reel_overlay_unset(db, "future_opt", "carol", &err), REEL_OK);
    expect_history(db, 5, "future_opt|x|-|carol");

    /* set over an invalid row replaces it */
    assert_int_equal(sqlite3_exec(db, "INSERT INTO config_overlay VALUES ('capture', 'turbo', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(reel_overlay_set(db, "capture", "lossless", "dave", &err), REEL_OK);
    expect_history(db, 6, "capture|turbo|lossless|dave");

    /* the default actor */
    assert_int_equal(reel_overlay_set(db, "fsync", "never", NULL, &err), REEL_OK);
    char *row = history_row(db, 7);
    char *actor = reel_config_actor();
    char *want = reel_asprintf("fsync|-|never|%s", actor);
    assert_string_equal(row, want);
    char *want_pid = reel_asprintf(" pid %ld", (long)getpid());
    assert_non_null(strchr(actor, '@'));
    assert_non_null(strstr(actor, want_pid));
    free(want_pid);
    free(want);
    free(actor);
    free(row);

    /* a failure inside the transaction rolls it back */
    assert_int_equal(sqlite3_exec(db, "DROP TABLE config_history", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(reel_overlay_set(db, "idle_timeout", "5", "x", &err), REEL_DB);
    assert_non_null(strstr(err.msg, "no such table: config_history"));
    reel_err_clear(&err);
    assert_int_equal(count(db, "config_overlay"), 3); /* body_limit, capture, fsync */
    assert_int_equal(sqlite3_get_autocommit(db), 1);
    sqlite3_close(db);
}

/* A self-signed certificate (openssl req -x509 -newkey ec), for the CA
 * file checks. */
static const char test_cert[] = "-----BEGIN CERTIFICATE-----\n"
                                "MIIBjDCCATOgAwIBAgIUSnjiwi421t6QL6hYAN32Poqd5i8wCgYIKoZIzj0EAwIw\n"
                                "GzEZMBcGA1UEAwwQcmVlbC1jb25maWctdGVzdDAgFw0yNjEyMDQyMTU5MjRaGA8y\n"
                                "MTI2MTExMDIxNTkyNFowGzEZMBcGA1UEAwwQcmVlbC1jb25maWctdGVzdDBZMBMG\n"
                                "ByqGSM49AgEGCCqGSM49AwEHA0IABC4VC9FiwwSwZM3S8tGxxY4BO8PKQ46xr6w0\n"
                                "m7tt862Vx/XN0jwwBBkVN9RPEsOcIxXn0HCgOvtPypZiQpaToXGjUzBRMB0GA1Ud\n"
                                "DgQWBBSVLVngtqwF5mw7YLiuQcxSYUmN0DAfBgNVHSMEGDAWgBSVLVngtqwF5mw7\n"
                                "YLiuQcxSYUmN0DAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIDBx\n"
                                "ii8hkRO2ZoFXlLjMqraTHq+HR1DxJHzZSrsW7nZFAiBsKkbXHS2O/nLO3r3psvha\n"
                                "meAzmD7rkNSrFqTVzw9IYw==\n"
                                "-----END CERTIFICATE-----\n";

/* What `reel config set` and the web UI store: upstream_trusted_ca must be
 * a readable file of PEM certificates now, and is stored absolute. */
static void test_validate_set(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    char *canon = NULL;
    /* other options: as reel_config_validate */
    assert_int_equal(reel_config_validate_set("body_limit", "2m", &canon, &err), REEL_OK);
    assert_string_equal(canon, "2097152");
    free(canon);
    canon = NULL;
    assert_int_equal(reel_config_validate_set("nope", "1", &canon, &err), REEL_NOTFOUND);
    assert_null(canon);
    reel_err_clear(&err);
    /* "" is no CA file */
    assert_int_equal(reel_config_validate_set("upstream_trusted_ca", "", &canon, &err), REEL_OK);
    assert_string_equal(canon, "");
    free(canon);
    canon = NULL;
    char *junk = write_file("junk.pem", "not a certificate\n");
    char *bad_cert = reel_strdup(test_cert);
    bad_cert[100] = '!'; /* inside the base64 */
    char *both = reel_asprintf("%s%s", test_cert, bad_cert);
    char *cut = write_file("cut.pem", both);
    struct {
        const char *value, *msg;
    } bad[] = {
        {"/nonexistent-reel-ca.pem", "invalid value '/nonexistent-reel-ca.pem' for "
                                     "upstream_trusted_ca: No such file or directory"},
        {tmpdir, NULL},
        {junk, NULL},
        {cut, NULL},
    };
    const char *why[] = {NULL, "not a file",
                         "no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                         "a certificate in it does not parse"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_clear(&err);
        assert_int_equal(
            reel_config_validate_set("upstream_trusted_ca", bad[i].value, &canon, &err),
            REEL_INVALID);
        assert_null(canon);
        char *want = bad[i].msg ? reel_strdup(bad[i].msg)
                                : reel_asprintf("invalid value '%s' for upstream_trusted_ca: %s",
                                                bad[i].value, why[i]);
        if (strncmp(err.msg, want, strlen(want)) != 0)
            fail_msg("got '%s', want '%s...'", err.msg, want);
        free(want);
    }
    /* a PEM file named relative to the current directory: stored absolute */
    char *good = write_file("ca.pem", test_cert);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmpdir), 0);
    reel_err_clear(&err);
    reel_rc rc = reel_config_validate_set("upstream_trusted_ca", "ca.pem", &canon, &err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, REEL_OK);
    char *real = realpath(good, NULL);
    assert_string_equal(canon, real);
    free(real);
    free(canon);
    free(good);
    free(junk);
    free(cut);
    free(bad_cert);
    free(both);
}

/* The proxy-mode options: each refusal, word for word. */
static void test_proxy_modes(void **state) {
    (void)state;
    static const struct {
        const char *name, *value, *msg;
    } cases[] = {
        {"reverse_to", "example.com",
         "invalid value 'example.com' for reverse_to: expected http://host[:port] or "
         "https://host[:port]"},
        {"reverse_to", "https://", "invalid value 'https://' for reverse_to: no host"},
        {"reverse_to", "https://h/api",
         "invalid value 'https://h/api' for reverse_to: a path, user or query is not taken: only "
         "the origin (scheme, host, port)"},
        {"reverse_to", "http://[::1:80",
         "invalid value 'http://[::1:80' for reverse_to: an IPv6 address without its ']'"},
        {"reverse_to", "http://h:8x",
         "invalid value 'http://h:8x' for reverse_to: the port is not a number"},
        {"reverse_to", "http://h:70000",
         "invalid value 'http://h:70000' for reverse_to: the port is not 1..65535"},
        {"reverse_to",
         "http://h:", "invalid value 'http://h:' for reverse_to: the port is not 1..65535"},
        {"upstream_insecure_hosts", "ok.test, 10.0.0.0/33",
         "invalid value for upstream_insecure_hosts: '10.0.0.0/33' is not a host name, an address "
         "or an address range (a.b.c.d/n)"},
        {"upstream_no_proxy", "a..b",
         "invalid value for upstream_no_proxy: 'a..b' is not a host name, an address or an "
         "address range (a.b.c.d/n)"},
        {"map_remote", "[\"abc\"]",
         "map_remote rule 'abc': a rule starts with its separator (\"|regex|replacement\")"},
        {"map_local", "[\"|x|rel/file\"]",
         "map_local rule '|x|rel/file': the path 'rel/file' is not absolute (it must start with "
         "/)"},
        {"map_local", "[\"|x\"]",
         "map_local rule '|x': no path after the pattern (\"|regex|/path\")"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_msg(cases[i].name, cases[i].value, REEL_INVALID, cases[i].msg);
    /* and what is taken */
    static const char *const good[][2] = {{"reverse_to", "https://[::1]:8443/"},
                                          {"reverse_to", "http://h"},
                                          {"upstream_proxy", "socks5h://p:1080"},
                                          {"upstream_insecure_hosts", "*.corp.test, fd00::/8"},
                                          {"map_local", "|example\\.com/app\\.js$|/srv/app.js"}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        char *canon = NULL;
        assert_int_equal(reel_config_validate(good[i][0], good[i][1], &canon, &err), REEL_OK);
        free(canon);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_config_cli),
        cmocka_unit_test(test_user_file),
        cmocka_unit_test(test_user_file_errors),
        cmocka_unit_test(test_user_path),
        cmocka_unit_test(test_layers),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_validate_set),
        cmocka_unit_test(test_proxy_modes),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
