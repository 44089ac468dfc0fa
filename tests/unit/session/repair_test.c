/* Repair tests: a hole in a flow's body is found, located and recorded
 * (flows.damaged, flow_damage), verify fails until it is recorded; user
 * data comes back from the journal (spool/journal.zst) when session.db is
 * lost, and a damaged journal is repaired. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "flow.pb-c.h"
#include "session/config.h"
#include "session/index.h"
#include "session/journal.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/store.h"

static uint8_t body_byte(uint64_t i) {
    uint64_t x = i * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return (uint8_t)(x >> 7);
}

static reel_session_t *open_flags(const char *home, int flags) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, "s", flags, &s, &err) != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    return s;
}

static reel_session_t *open_rec(const char *home) {
    return open_flags(home, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
}

/* Bytes that zstd cannot compress (splitmix64 of i). */
static uint8_t noise_byte(uint64_t i) {
    uint64_t z = (i / 8 + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint8_t)(z >> (8 * (i % 8)));
}

static uint8_t (*body_fn)(uint64_t) = body_byte;

/* Records a GET whose response body is resp_len bytes of body_fn(i),
 * fed in 10,000-byte pieces. */
static uint64_t record_get(reel_recorder_t *r, uint64_t resp_len) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    uint64_t id = reel_rflow_id(f);
    reel_request_head_t rq = {.method = "GET", .scheme = "http", .host = "example.com",
                              .port = 80, .target = "/big", .http_version = "HTTP/1.1"};
    reel_recorder_request_head(f, &rq);
    reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/1.1"};
    reel_recorder_response_head(f, &rs);
    uint8_t buf[10000];
    for (uint64_t off = 0; off < resp_len;) {
        size_t n = resp_len - off < sizeof buf ? (size_t)(resp_len - off) : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = body_fn(off + i);
        reel_recorder_response_body(f, buf, n);
        off += n;
    }
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return id;
}

static void build_blocks(const char *home, uint64_t big, size_t block_size) {
    reel_session_t *s = open_rec(home);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = block_size;
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.fsync = REEL_FSYNC_NEVER;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    record_get(r, 1000);
    record_get(r, big);
    record_get(r, 2000);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
}

/* Frames of 256 KiB, those of schema 11: many in little data. */
static void build(const char *home, uint64_t big) {
    build_blocks(home, big, 256u << 10);
}

static __attribute__((format(printf, 2, 3))) long long q1(reel_session_t *s, const char *fmt,
                                                         ...) {
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(reel_session_db(s), sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(reel_session_db(s)));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Verify's verdict, and its report (owned) if want is non-NULL. */
static int verify_ok(reel_session_t *s, char **want) {
    char *rep = NULL;
    reel_rc rc = reel_session_verify(s, &rep, NULL);
    if (want)
        *want = rep;
    else
        free(rep);
    return rc == REEL_OK;
}

static void repair(reel_session_t *s, char **report) {
    reel_err_t err;
    reel_err_clear(&err);
    char *rep = NULL;
    if (reel_session_repair(s, &rep, &err) != REEL_OK)
        fail_msg("repair: %s", reel_err_str(&err));
    if (report)
        *report = rep;
    else
        free(rep);
}

typedef struct {
    reel_buf_t body;
} body_t;

static int body_cb(void *ctx, const Reel__Record *rec) {
    body_t *b = ctx;
    if (rec->event_case == REEL__RECORD__EVENT_RESPONSE_BODY)
        reel_buf_append(&b->body, rec->response_body->data.data, rec->response_body->data.len);
    return 0;
}

/* Damages the frame in the middle of flow id's frames; returns that
 * frame's offset. `header`: the header of the zstd block in the middle of
 * the frame is made one that does not decode (the blocks before it still
 * do); else 8 bytes near the start of that block's content are
 * overwritten: the body does not compress, so they are among its literal
 * bytes, stored as they are: the frame decodes, to other bytes, and only
 * its checksum fails. */
static long long damage_middle_frame(const char *home, uint64_t id, int header) {
    reel_session_t *s = open_flags(home, 0);
    long long n = q1(s, "SELECT count(*) FROM flow_frames WHERE flow_id = %llu",
                     (unsigned long long)id);
    long long off = q1(s,
                       "SELECT offset FROM flow_frames WHERE flow_id = %llu ORDER BY offset "
                       "LIMIT 1 OFFSET %lld",
                       (unsigned long long)id, n / 2);
    long long clen = q1(s, "SELECT clen FROM frames WHERE offset = %lld", off);
    reel_session_close(s);
    char *seg = reel_asprintf("%s/s/spool/00000001.zst", home);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    uint8_t *fr = reel_malloc((size_t)clen);
    assert_int_equal(pread(fd, fr, (size_t)clen, (off_t)off), clen);
    /* The zstd blocks (RFC 8878 3.1.1.2): the one that holds the middle. */
    uint8_t fhd = fr[4];
    static const size_t did_size[4] = {0, 1, 2, 4}, fcs_size[4] = {0, 2, 4, 8};
    size_t pos = 4 + 1 + ((fhd >> 5) & 1 ? 0 : 1) + did_size[fhd & 3] +
                 ((fhd >> 6) == 0 ? ((fhd >> 5) & 1) : fcs_size[fhd >> 6]);
    for (;;) {
        uint32_t h = (uint32_t)fr[pos] | (uint32_t)fr[pos + 1] << 8 | (uint32_t)fr[pos + 2] << 16;
        size_t size = (h >> 1 & 3) == 1 ? 1 : h >> 3;
        if (pos + 3 + size > (size_t)clen / 2 || (h & 1))
            break;
        pos += 3 + size;
    }
    if (header)
        assert_int_equal(pwrite(fd, "\xff\xff\xff", 3, (off_t)(off + (long long)pos)), 3);
    else
        assert_int_equal(
            pwrite(fd, "\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5", 8, (off_t)(off + (long long)pos + 100)),
            8);
    free(fr);
    close(fd);
    free(seg);
    return off;
}

static void test_hole_in_large_body(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    const uint64_t big = 3000000;
    build(home, big);
    damage_middle_frame(home, 2, 1);
    reel_session_t *s = open_rec(home);
    /* The damaged frame fails verify until repair records it. */
    assert_false(verify_ok(s, NULL));
    char *rep = NULL;
    repair(s, &rep);
    assert_non_null(strstr(rep, "1 flow lost records in the damaged ranges"));
    free(rep);
    assert_int_equal(q1(s, "SELECT damaged FROM flows WHERE id = 2"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE damaged != 0"), 1);
    /* The hole, and the records kept from the blocks of the frame before
     * the one that did not decode: nothing checks them, they are marked. */
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_damage"), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_damage WHERE flow_id = 2 AND direction = "
                           "'flow' AND reason LIKE '%%unverified%%'"),
                     1);
    /* The flow still says what its end record says. */
    assert_int_equal(q1(s, "SELECT state = 'complete' AND response_body_size = %llu FROM flows "
                           "WHERE id = 2",
                        (unsigned long long)big),
                     1);
    reel_store_damage_t *dm = NULL;
    size_t n = 0;
    assert_int_equal(reel_store_flow_damage(s, 2, &dm, &n, NULL), REEL_OK);
    assert_int_equal(n, 2);
    if (dm[0].direction != 1) { /* the body hole first */
        reel_store_damage_t t = dm[0];
        dm[0] = dm[1];
        dm[1] = t;
    }
    assert_int_equal(dm[0].direction, 1);
    body_t b;
    reel_buf_init(&b.body, 0);
    assert_int_equal(reel_store_read_flow(s, 2, body_cb, &b, NULL), REEL_OK);
    /* The range is the missing bytes: stored + missing = the body, and the
     * bytes on both sides are the right ones. */
    assert_true(dm[0].length > 0);
    assert_int_equal(b.body.len + (uint64_t)dm[0].length, big);
    assert_true(dm[0].offset > 0 && (uint64_t)dm[0].offset < b.body.len);
    for (uint64_t i = 0; i < b.body.len; i++) {
        uint64_t orig = i < (uint64_t)dm[0].offset ? i : i + (uint64_t)dm[0].length;
        if (b.body.data[i] != body_byte(orig))
            fail_msg("byte %llu of the stored body is not byte %llu of the original",
                     (unsigned long long)i, (unsigned long long)orig);
    }
    reel_buf_free(&b.body);
    free(dm);
    /* Known damage: verify passes and lists it. */
    char *vr = NULL;
    if (!verify_ok(s, &vr))
        fail_msg("verify after repair:\n%s", vr);
    assert_non_null(strstr(vr, "flow 2: known damage: response body bytes"));
    free(vr);
    /* A hole the index does not record fails verify (an older repair
     * left it so); repair records it again. */
    assert_int_equal(reel_index_exec(reel_session_db(s),
                                     "DELETE FROM flow_damage; UPDATE flows SET damaged = 0", NULL),
                     REEL_OK);
    assert_false(verify_ok(s, &vr));
    if (strstr(vr, "flow 2 lost records that the index does not record") == NULL)
        fail_msg("verify does not name flow 2:\n%s", vr);
    free(vr);
    repair(s, NULL);
    assert_true(verify_ok(s, NULL));
    assert_int_equal(q1(s, "SELECT damaged FROM flows WHERE id = 2"), 1);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

/* Frames of the default size (4 MiB of records) of bytes that do not
 * compress, each larger than what a scan reads at once (2 MiB): the
 * rebuild reads each again from its start, whole, and finds every flow;
 * a frame cut short at the end is torn there, the flows before it kept. */
static void test_frames_larger_than_a_scan_window(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    const uint64_t big = 11000000;
    body_fn = noise_byte;
    build_blocks(home, big, 0);
    body_fn = body_byte;
    reel_session_t *s = open_rec(home);
    assert_true(q1(s, "SELECT count(*) FROM frames") >= 3);
    assert_true(q1(s, "SELECT max(rlen) FROM frames") > 3 * (1 << 20));
    assert_true(q1(s, "SELECT max(rlen) FROM frames") <= 4 * (1 << 20));
    assert_true(q1(s, "SELECT max(clen) FROM frames") > 2 * (1 << 20));
    repair(s, NULL);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE state = 'complete'"), 3);
    assert_int_equal(q1(s, "SELECT response_body_size FROM flows WHERE id = 2"), (long long)big);
    assert_true(verify_ok(s, NULL));
    body_t b;
    reel_buf_init(&b.body, 0);
    assert_int_equal(reel_store_read_flow(s, 2, body_cb, &b, NULL), REEL_OK);
    assert_int_equal(b.body.len, big);
    for (uint64_t i = 0; i < big; i++)
        if (b.body.data[i] != noise_byte(i))
            fail_msg("byte %llu of the body read back is wrong", (unsigned long long)i);
    reel_buf_free(&b.body);
    /* the last frame cut in its middle, as a crash while it was written */
    long long seg = q1(s, "SELECT segment FROM frames ORDER BY segment DESC, offset DESC LIMIT 1");
    long long off = q1(s, "SELECT offset FROM frames ORDER BY segment DESC, offset DESC LIMIT 1");
    long long clen = q1(s, "SELECT clen FROM frames ORDER BY segment DESC, offset DESC LIMIT 1");
    long long before = q1(s, "SELECT count(*) FROM frames");
    reel_session_close(s);
    char path[4096];
    snprintf(path, sizeof path, "%s/s/spool/%08lld.zst", home, seg);
    assert_int_equal(truncate(path, (off_t)(off + clen / 2)), 0);
    s = open_rec(home);
    repair(s, NULL);
    /* the frames before it, and what was salvaged of it */
    assert_true(q1(s, "SELECT count(*) FROM frames") >= before - 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE id = 1 AND state = 'complete'"), 1);
    assert_int_equal(q1(s, "SELECT damaged FROM flows WHERE id = 2"), 1);
    assert_true(verify_ok(s, NULL));
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

/* A frame whose content decodes whole but whose checksum fails is kept
 * whole (docs/format.md section 6): no hole, but the flow is marked
 * damaged, as the bytes where the damage is are not the ones recorded. */
static void test_checksum_only_kept_whole(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    const uint64_t big = 3000000;
    build(home, big);
    damage_middle_frame(home, 2, 0);
    reel_session_t *s = open_rec(home);
    char *rep = NULL;
    assert_false(verify_ok(s, &rep));
    if (strstr(rep, "can be salvaged (unverified: their flows are then marked damaged") == NULL)
        fail_msg("verify before repair:\n%s", rep);
    free(rep);
    repair(s, &rep);
    if (strstr(rep, "checksum failed") == NULL || strstr(rep, "dropped") != NULL)
        fail_msg("repair:\n%s", rep);
    free(rep);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE damaged != 0"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_damage WHERE flow_id = 2 AND direction = "
                           "'flow' AND reason LIKE '%%checksum failed are unverified%%'"),
                     1);
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_damage"), 1);
    /* Every body byte is there, 8 of them not the ones recorded. */
    body_t b;
    reel_buf_init(&b.body, 0);
    assert_int_equal(reel_store_read_flow(s, 2, body_cb, &b, NULL), REEL_OK);
    assert_int_equal(b.body.len, big);
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < b.body.len; i++)
        wrong += b.body.data[i] != body_byte(i);
    assert_true(wrong > 0 && wrong <= 8);
    reel_buf_free(&b.body);
    char *vr = NULL;
    if (!verify_ok(s, &vr))
        fail_msg("verify after repair:\n%s", vr);
    free(vr);
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

/* Every row of the user data, as one string. */
static char *user_data(reel_session_t *s) {
    static const char *const q[] = {
        "SELECT group_concat(id || ':' || flow_id || ':' || created_us || ':' || text, '|') "
        "FROM (SELECT * FROM annotations ORDER BY id)",
        "SELECT group_concat(flow_id || ':' || tag, '|') FROM (SELECT * FROM tags ORDER BY 1, 2)",
        "SELECT group_concat(flow_id || ':' || created_us, '|') FROM (SELECT * FROM marks ORDER "
        "BY 1)",
        "SELECT group_concat(id, '|') FROM flows WHERE marked",
        "SELECT group_concat(key || '=' || value || '@' || updated_us, '|') FROM (SELECT * FROM "
        "config_overlay ORDER BY key)",
        "SELECT group_concat(id || ':' || time_us || ':' || key || ':' || coalesce(old_value, "
        "'NULL') || ':' || coalesce(new_value, 'NULL') || ':' || actor, '|') FROM (SELECT * FROM "
        "config_history ORDER BY id)",
    };
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(reel_session_db(s), q[i], -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        const char *t = (const char *)sqlite3_column_text(st, 0);
        reel_buf_printf(&b, "[%s]", t ? t : "");
        sqlite3_finalize(st);
    }
    return (char *)b.data;
}

static void edit(reel_session_t *s, const char *sql) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_index_exec(reel_session_db(s), sql, &err) != REEL_OK)
        fail_msg("%s: %s", sql, reel_err_str(&err));
}

/* The changes the CLI makes (annotate, --delete, tag, untag, mark, unmark,
 * config set/unset), made the way it makes them. */
static void make_user_data(reel_session_t *s) {
    sqlite3 *db = reel_session_db(s);
    edit(s, "INSERT INTO annotations(flow_id, created_us, text) VALUES(1, 11, 'first note')");
    edit(s, "INSERT INTO annotations(flow_id, created_us, text) VALUES(2, 12, 'gone')");
    edit(s, "INSERT INTO annotations(flow_id, created_us, text) VALUES(2, 13, x'c3a9e282ac00ff')");
    edit(s, "DELETE FROM annotations WHERE id = 2");
    edit(s, "INSERT INTO annotations(flow_id, created_us, text) VALUES(3, 14, 'reuses id 2?')");
    edit(s, "BEGIN IMMEDIATE; INSERT OR IGNORE INTO tags(flow_id, tag) VALUES(1, 'alpha'), "
            "(1, 'beta'), (3, 'alpha'); COMMIT");
    edit(s, "DELETE FROM tags WHERE flow_id = 1 AND tag = 'beta'");
    edit(s, "BEGIN IMMEDIATE; INSERT OR IGNORE INTO marks(flow_id, created_us) VALUES(2, 21), "
            "(3, 22); UPDATE flows SET marked = 1 WHERE id IN (2, 3); COMMIT");
    edit(s, "DELETE FROM marks WHERE flow_id = 3; UPDATE flows SET marked = 0 WHERE id = 3");
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_overlay_set(db, "body_limit", "1048576", "tester", &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "body_limit", "2097152", "tester", &err), REEL_OK);
    assert_int_equal(reel_overlay_set(db, "idle_timeout", "30", NULL, &err), REEL_OK);
    assert_int_equal(reel_overlay_unset(db, "idle_timeout", "tester", &err), REEL_OK);
    /* A change that fails is not journaled. */
    assert_int_not_equal(
        reel_index_exec(db,
                        "BEGIN; INSERT INTO tags(flow_id, tag) VALUES(2, 'rolled-back'); "
                        "INSERT INTO tags(flow_id, tag) VALUES(1, 'alpha'); COMMIT",
                        NULL),
        REEL_OK);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static void delete_db(const char *home) {
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char *p = reel_asprintf("%s/s/session.db%s", home, sfx[i]);
        unlink(p);
        free(p);
    }
}

static void test_journal_rebuilds_user_data(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    build(home, 50000);
    reel_session_t *s = open_rec(home);
    make_user_data(s);
    char *before = user_data(s);
    assert_non_null(strstr(before, "[1:alpha|3:alpha]"));
    assert_null(strstr(before, "rolled-back"));
    long long flows = q1(s, "SELECT count(*) FROM flows");
    reel_session_close(s);
    delete_db(home);
    /* Without session.db: damaged, and repair is named. */
    reel_err_t err;
    reel_err_clear(&err);
    s = NULL;
    assert_int_equal(reel_session_open(home, "s", 0, &s, &err), REEL_CORRUPT);
    assert_non_null(strstr(reel_err_str(&err), "session.db is missing"));
    assert_non_null(strstr(reel_err_str(&err), "reel repair s"));
    s = open_flags(home, REEL_OPEN_RECORD | REEL_OPEN_REPAIR);
    char *rep = NULL;
    repair(s, &rep);
    if (strstr(rep, "user data replayed from spool/journal.zst") == NULL)
        fail_msg("repair report:\n%s", rep);
    free(rep);
    char *after = user_data(s);
    assert_string_equal(after, before);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), flows);
    assert_true(verify_ok(s, NULL));
    /* The rebuilt index journals on, without writing it all again. */
    struct stat a, b;
    char *jp = reel_asprintf("%s/s/spool/journal.zst", home);
    assert_int_equal(stat(jp, &a), 0);
    edit(s, "INSERT INTO tags(flow_id, tag) VALUES(2, 'later')");
    assert_int_equal(stat(jp, &b), 0);
    assert_true(b.st_size > a.st_size && b.st_size < 2 * a.st_size);
    free(after);
    before = (free(before), user_data(s));
    reel_session_close(s);
    /* And an unreadable session.db comes back the same way. */
    char *db = reel_asprintf("%s/s/session.db", home);
    FILE *f = fopen(db, "w");
    fputs("this is not an SQLite database, not at all; it is long enough to look like one", f);
    fclose(f);
    free(db);
    s = open_flags(home, REEL_OPEN_RECORD | REEL_OPEN_REPAIR);
    repair(s, NULL);
    after = user_data(s);
    assert_string_equal(after, before);
    reel_session_close(s);
    free(after);
    free(before);
    free(jp);
    reel_test_rm_rf(home);
    free(home);
}

static void test_journal_starts_with_old_user_data(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    build(home, 1000);
    /* An index from before the journal: user data written past it. */
    char *dbpath = reel_asprintf("%s/s/session.db", home);
    sqlite3 *db = NULL;
    assert_int_equal(reel_index_open(dbpath, 0, &db, NULL), REEL_OK);
    assert_int_equal(reel_index_exec(db,
                                     "DELETE FROM meta WHERE key = 'journal';"
                                     "INSERT INTO annotations(flow_id, created_us, text) VALUES(1, "
                                     "5, 'old note'); INSERT INTO tags VALUES(2, 'old');"
                                     "INSERT INTO marks VALUES(3, 6); UPDATE flows SET marked = 1 "
                                     "WHERE id = 3;"
                                     "INSERT INTO config_overlay VALUES('capture', 'lossless', 7);",
                                     NULL),
                     REEL_OK);
    sqlite3_close(db);
    char *jp = reel_asprintf("%s/s/spool/journal.zst", home);
    unlink(jp);
    reel_session_t *s = open_flags(home, 0); /* starts the journal with what is there */
    char *before = user_data(s);
    reel_session_close(s);
    struct stat st;
    assert_int_equal(stat(jp, &st), 0);
    reel_journal_stats_t js;
    assert_int_equal(reel_journal_check(jp, &js, NULL), REEL_OK);
    assert_int_equal(js.records, 4);
    delete_db(home);
    s = open_flags(home, REEL_OPEN_RECORD | REEL_OPEN_REPAIR);
    repair(s, NULL);
    char *after = user_data(s);
    assert_string_equal(after, before);
    assert_non_null(strstr(after, "old note"));
    reel_session_close(s);
    free(before);
    free(after);
    free(jp);
    free(dbpath);
    reel_test_rm_rf(home);
    free(home);
}

static void test_damaged_journal(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    build(home, 1000);
    reel_session_t *s = open_rec(home);
    edit(s, "INSERT INTO tags(flow_id, tag) VALUES(1, 'one')");
    char *jp = reel_asprintf("%s/s/spool/journal.zst", home);
    struct stat st;
    assert_int_equal(stat(jp, &st), 0);
    off_t mid = st.st_size;
    edit(s, "INSERT INTO tags(flow_id, tag) VALUES(1, 'two')");
    edit(s, "INSERT INTO tags(flow_id, tag) VALUES(1, 'three')");
    reel_session_close(s);
    /* Break the frame of 'two'. */
    int fd = open(jp, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\xff\xff\xff\xff", 4, mid + 6), 4);
    close(fd);
    s = open_rec(home);
    char *rep = NULL;
    assert_false(verify_ok(s, &rep));
    assert_non_null(strstr(rep, "spool/journal.zst: "));
    free(rep);
    repair(s, &rep);
    assert_non_null(strstr(rep, "spool/journal.zst: "));
    /* The index still has 'two': the journal is written anew from it
     * (it was left without the change in the damaged frame). */
    if (strstr(rep, "spool/journal.zst lacked 1 tag that the index holds") == NULL ||
        strstr(rep, "written anew from the index's user data") == NULL)
        fail_msg("repair:\n%s", rep);
    free(rep);
    assert_true(verify_ok(s, NULL));
    reel_session_close(s);
    delete_db(home);
    s = open_flags(home, REEL_OPEN_RECORD | REEL_OPEN_REPAIR);
    repair(s, NULL);
    assert_int_equal(q1(s, "SELECT count(*) FROM tags WHERE tag IN ('one', 'two', 'three')"), 3);
    reel_session_close(s);
    free(jp);
    reel_test_rm_rf(home);
    free(home);
}

static void test_remove_without_db(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    build(home, 1000);
    delete_db(home);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_remove(home, "s", &err), REEL_OK);
    char *p = reel_asprintf("%s/s", home);
    struct stat st;
    assert_int_not_equal(stat(p, &st), 0);
    free(p);
    reel_test_rm_rf(home);
    free(home);
}

/* A rebuild frees the old index's pages without secure_delete's zeros
 * (everything it drops is made again from the spool) and gives the
 * connection back with the secure_delete it had, whichever it was. */
static void test_rebuild_gives_secure_delete_back(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair");
    build(home, 1000);
    static const char *const set[] = {"ON", "OFF", "FAST"};
    for (int was = 0; was < 3; was++) {
        reel_session_t *s = open_flags(home, REEL_OPEN_REPAIR);
        char *sql = reel_asprintf("PRAGMA secure_delete = %s", set[was]);
        assert_int_equal(sqlite3_exec(reel_session_db(s), sql, NULL, NULL, NULL), SQLITE_OK);
        free(sql);
        long long want = q1(s, "PRAGMA secure_delete");
        assert_int_equal(want, was == 0 ? 1 : was == 1 ? 0 : 2);
        repair(s, NULL);
        assert_int_equal(q1(s, "PRAGMA secure_delete"), want);
        assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE state = 'complete'"), 3);
        reel_session_close(s);
    }
    reel_test_rm_rf(home);
    free(home);
}

/* Records an RFC 8441 WebSocket as core/h2front.c does (CONNECT, its first
 * field ':protocol: websocket') answered `status`, that ends with an error
 * before any message; returns its id. */
static uint64_t record_h2_websocket(reel_recorder_t *r, unsigned status) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    uint64_t id = reel_rflow_id(f);
    const reel_header_t q[] = {{":protocol", 9, "websocket", 9},
                               {"sec-websocket-version", 21, "13", 2}};
    reel_request_head_t rq = {.method = "CONNECT",
                              .scheme = "https",
                              .host = "example.com",
                              .port = 443,
                              .target = "/chat",
                              .http_version = "HTTP/2.0",
                              .headers = q,
                              .n_headers = 2};
    reel_recorder_request_head(f, &rq);
    reel_response_head_t rs = {.status = status, .http_version = "HTTP/2.0"};
    reel_recorder_response_head(f, &rs);
    reel_recorder_flow_error(f, "the client reset the HTTP/2 stream", 0);
    return id;
}

/* An HTTP/2 WebSocket whose CONNECT got its 200, then ended before any
 * message, is kind websocket (~websocket finds it), live and after the
 * index is rebuilt from the spool; one refused (400) stays http. */
static void test_h2_websocket_kind_before_a_message(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair-h2ws");
    reel_session_t *s = open_rec(home);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.fsync = REEL_FSYNC_NEVER;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    uint64_t ok = record_h2_websocket(r, 200), refused = record_h2_websocket(r, 400);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            repair(s, NULL);
        assert_int_equal(
            q1(s, "SELECT kind = 'websocket' FROM flows WHERE id = %llu", (unsigned long long)ok),
            1);
        assert_int_equal(
            q1(s, "SELECT kind = 'http' FROM flows WHERE id = %llu", (unsigned long long)refused),
            1);
    }
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

/* Records an HTTP/1.1 client's GET (a WebSocket handshake when `ws`)
 * answered `status` over `version`, as core/exchange.c records one that
 * went to an HTTP/2 origin as an extended CONNECT: the request as the
 * client sent it, the origin's answer as it came; it ends with an error
 * before any message. Returns its id. */
static uint64_t record_h1_websocket(reel_recorder_t *r, bool ws, unsigned status,
                                    const char *version) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    uint64_t id = reel_rflow_id(f);
    const reel_header_t q[] = {{"Host", 4, "example.com", 11},
                               {"Content-Type", 12, "text/plain", 10},
                               {"Upgrade", 7, "websocket", 9},
                               {"Connection", 10, "Upgrade", 7}};
    reel_request_head_t rq = {.method = "GET",
                              .scheme = "http",
                              .host = "example.com",
                              .port = 80,
                              .target = "/chat",
                              .http_version = "HTTP/1.1",
                              .headers = q,
                              .n_headers = ws ? 4 : 2};
    reel_recorder_request_head(f, &rq);
    reel_response_head_t rs = {.status = status, .http_version = version};
    reel_recorder_response_head(f, &rs);
    reel_recorder_flow_error(f, "the client sent an invalid WebSocket frame", 0);
    return id;
}

/* An HTTP/1.1 client's WebSocket that reel sent to an HTTP/2 origin as an
 * extended CONNECT: the record keeps the origin's 200 (the client got a
 * 101), and the flow is kind websocket from it, before any message, live
 * and after the index is rebuilt; it was http, and ~websocket missed it.
 * A 200 over HTTP/1.1 (an origin that did not switch) and a plain GET's
 * 200 over HTTP/2 stay http. */
static void test_h1_websocket_to_h2_origin_kind(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("repair-h1h2ws");
    reel_session_t *s = open_rec(home);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.fsync = REEL_FSYNC_NEVER;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    uint64_t ok = record_h1_websocket(r, true, 200, "HTTP/2.0");
    uint64_t h1 = record_h1_websocket(r, true, 200, "HTTP/1.1");
    uint64_t plain = record_h1_websocket(r, false, 200, "HTTP/2.0");
    uint64_t refused = record_h1_websocket(r, true, 403, "HTTP/2.0");
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            repair(s, NULL);
        assert_int_equal(
            q1(s, "SELECT kind = 'websocket' FROM flows WHERE id = %llu", (unsigned long long)ok),
            1);
        uint64_t others[] = {h1, plain, refused};
        for (size_t i = 0; i < 3; i++)
            assert_int_equal(q1(s, "SELECT kind = 'http' FROM flows WHERE id = %llu",
                                (unsigned long long)others[i]),
                             1);
    }
    reel_session_close(s);
    reel_test_rm_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hole_in_large_body),
        cmocka_unit_test(test_frames_larger_than_a_scan_window),
        cmocka_unit_test(test_checksum_only_kept_whole),
        cmocka_unit_test(test_journal_rebuilds_user_data),
        cmocka_unit_test(test_journal_starts_with_old_user_data),
        cmocka_unit_test(test_damaged_journal),
        cmocka_unit_test(test_remove_without_db),
        cmocka_unit_test(test_rebuild_gives_secure_delete_back),
        cmocka_unit_test(test_h2_websocket_kind_before_a_message),
        cmocka_unit_test(test_h1_websocket_to_h2_origin_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
