/* Store tests: spool round trips, segment roll-over, crash safety
 * (truncation at many offsets, torn tails, flipped bytes), the recorder
 * lock, a reader running beside a writer, and the frame-keeping reader
 * (reel_store_reader_t) giving what reel_store_read_flow gives, its frames
 * found one flow at a time or by plans of many. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zstd.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "flow.pb-c.h"
#include "session/index.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/spool.h"
#include "session/store.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static char *tmp_home(void) {
    return reel_test_tmpdir("store");
}

static void rm_rf(const char *path) {
    reel_test_rm_rf(path);
}

__attribute__((format(printf, 1, 2))) static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* Deterministic body bytes: flow f, direction d, offset i. */
static uint8_t body_byte(uint64_t f, int d, uint64_t i) {
    uint64_t x = (f * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)d << 61) ^ (i / 7);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 29;
    return (uint8_t)(x + i);
}

static reel_session_t *open_rec(const char *home, const char *name) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    reel_rc rc = reel_session_open(home, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err);
    if (rc != REEL_OK)
        fail_msg("open: %s", reel_err_str(&err));
    return s;
}

static reel_recorder_t *start_q(reel_session_t *s, uint64_t segment_size, size_t queue_bytes) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.block_size = 256u << 10; /* the frames of schema 11: many in little data */
    if (queue_bytes)
        o.queue_bytes = queue_bytes;
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.body_limit = UINT64_MAX / 2;
    o.fsync = REEL_FSYNC_NEVER; /* tests: speed; durability is the OS's */
    if (segment_size)
        o.segment_size = segment_size;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

static reel_recorder_t *start(reel_session_t *s, uint64_t segment_size) {
    return start_q(s, segment_size, 0);
}

static void stop(reel_recorder_t *r) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_recorder_close(r, &err) != REEL_OK)
        fail_msg("close: %s", reel_err_str(&err));
}

/* Records one complete flow with bodies of the given sizes, fed in pieces
 * of `piece` bytes. */
static uint64_t record_flow(reel_recorder_t *r, uint64_t req_len, uint64_t resp_len, size_t piece) {
    reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
    uint64_t id = reel_rflow_id(f);
    reel_header_t hs[] = {{"Host", 4, "example.com", 11}, {"User-Agent", 10, "test/1", 6}};
    char target[64];
    snprintf(target, sizeof target, "/item/%llu?q=1", (unsigned long long)id);
    reel_request_head_t rq = {.method = "POST", .scheme = "http", .host = "example.com",
                              .port = 80, .target = target, .http_version = "HTTP/1.1",
                              .headers = hs, .n_headers = 2};
    reel_recorder_request_head(f, &rq);
    uint8_t *buf = reel_malloc(piece);
    for (uint64_t off = 0; off < req_len;) {
        size_t n = req_len - off < piece ? (size_t)(req_len - off) : piece;
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(id, 0, off + i);
        reel_recorder_request_body(f, buf, n);
        off += n;
    }
    reel_header_t rh[] = {{"Content-Type", 12, "text/plain", 10}};
    reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/1.1",
                               .headers = rh, .n_headers = 1};
    reel_recorder_response_head(f, &rs);
    for (uint64_t off = 0; off < resp_len;) {
        size_t n = resp_len - off < piece ? (size_t)(resp_len - off) : piece;
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(id, 1, off + i);
        reel_recorder_response_body(f, buf, n);
        off += n;
    }
    free(buf);
    reel_recorder_flow_end(f, NULL, 0, 0, 0);
    return id;
}

typedef struct {
    uint64_t id;
    uint64_t req, resp;     /* bytes checked */
    int bad, start, end, rq_head, rs_head;
    char target[64];
} check_t;

static int check_cb(void *ctx, const Reel__Record *rec) {
    check_t *c = ctx;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        c->start++;
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD:
        c->rq_head++;
        snprintf(c->target, sizeof c->target, "%.*s", (int)rec->request_head->target.len,
                 (const char *)rec->request_head->target.data);
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD:
        c->rs_head++;
        break;
    case REEL__RECORD__EVENT_REQUEST_BODY:
        for (size_t i = 0; i < rec->request_body->data.len; i++)
            c->bad |= rec->request_body->data.data[i] != body_byte(c->id, 0, c->req + i);
        c->req += rec->request_body->data.len;
        break;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        for (size_t i = 0; i < rec->response_body->data.len; i++)
            c->bad |= rec->response_body->data.data[i] != body_byte(c->id, 1, c->resp + i);
        c->resp += rec->response_body->data.len;
        break;
    case REEL__RECORD__EVENT_END:
        c->end++;
        break;
    default:
        break;
    }
    return 0;
}

/* Asserts flow id reads back complete and byte for byte. */
static void assert_flow(reel_session_t *s, uint64_t id, uint64_t req, uint64_t resp) {
    check_t c = {.id = id};
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_store_read_flow(s, id, check_cb, &c, &err);
    if (rc != REEL_OK)
        fail_msg("flow %llu: %s", (unsigned long long)id, reel_err_str(&err));
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.start, 1);
    assert_int_equal(c.rq_head, 1);
    assert_int_equal(c.rs_head, 1);
    assert_int_equal(c.end, 1);
    assert_int_equal(c.req, req);
    assert_int_equal(c.resp, resp);
    char want[64];
    snprintf(want, sizeof want, "/item/%llu?q=1", (unsigned long long)id);
    assert_string_equal(c.target, want);
}

static long long q1(reel_session_t *s, const char *sql) {
    sqlite3_stmt *st = NULL;
    long long v = -1;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s), sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void assert_verify(reel_session_t *s, int want_ok) {
    reel_err_t err;
    reel_err_clear(&err);
    char *rep = NULL;
    reel_rc rc = reel_session_verify(s, &rep, &err);
    if ((rc == REEL_OK) != want_ok)
        fail_msg("verify %s, expected %s:\n%s", rc == REEL_OK ? "passed" : "failed",
                 want_ok ? "pass" : "failure", rep ? rep : reel_err_str(&err));
    free(rep);
}

static void test_round_trip_sizes(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "rt");
    reel_recorder_t *r = start(s, 0);
    uint64_t sizes[] = {0, 1, 65536, 65537, 300000};
    uint64_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = record_flow(r, sizes[i] / 3, sizes[i], 4096);
    stop(r);
    for (int i = 0; i < 5; i++)
        assert_flow(s, ids[i], sizes[i] / 3, sizes[i]);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE state = 'complete'"), 5);
    assert_int_equal(q1(s, "SELECT response_body_size FROM flows WHERE id = 3"), 65536);
    assert_int_equal(q1(s, "SELECT status FROM flows WHERE id = 1"), 200);
    assert_verify(s, 1);
    reel_session_close(s);
    /* Reopen: nothing to recover, same answers. */
    s = open_rec(home, "rt");
    assert_string_equal(reel_session_recovery_note(s), "");
    assert_flow(s, ids[4], sizes[4] / 3, sizes[4]);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

static void test_big_body_bounded_memory(void **state) {
    char *home = tmp_home();
    const uint64_t big = 100ull << 20;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        reel_session_t *s = open_rec(home, "big");
        /* memory is bounded by the capture buffer (256 MiB by default, which
         * a 100 MiB body fits in whole): bound it at 16 MiB here */
        reel_recorder_t *r = start_q(s, 4ull << 20, 16u << 20);
        uint64_t id = record_flow(r, 0, big, 65536);
        stop(r);
        check_t c = {.id = id};
        int rc = reel_store_read_flow(s, id, check_cb, &c, NULL);
        reel_session_close(s);
        _exit(rc == REEL_OK && !c.bad && c.resp == big && c.end == 1 ? 0 : 3);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    long peak_mib = ru.ru_maxrss / 1024;
    print_message("100 MiB body: peak RSS of the recording process %ld MiB\n", peak_mib);
    if (!UNDER_ASAN)
        assert_true(peak_mib < 64);
    /* Several segments were used. */
    reel_session_t *s = open_rec(home, "big");
    assert_true(q1(s, "SELECT count(DISTINCT segment) FROM frames") >= 3);
    assert_verify(s, 1);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

static void test_rollover_and_interleaving(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "il");
    reel_recorder_t *r = start(s, 1u << 20);
    enum { N = 60 };
    reel_rflow_t *f[N];
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        f[i] = reel_recorder_flow_start(r, NULL);
        ids[i] = reel_rflow_id(f[i]);
        char target[64];
        snprintf(target, sizeof target, "/item/%llu?q=1", (unsigned long long)ids[i]);
        reel_request_head_t rq = {.method = "GET", .scheme = "https", .host = "h.test",
                                  .port = 443, .target = target};
        reel_recorder_request_head(f[i], &rq);
    }
    /* Interleave response bodies across all flows, 40 rounds of 3000 bytes. */
    uint8_t buf[3000];
    for (int i = 0; i < N; i++) {
        reel_response_head_t rs = {.status = 200 + (uint32_t)i % 3};
        reel_recorder_response_head(f[i], &rs);
    }
    for (int round = 0; round < 40; round++)
        for (int i = 0; i < N; i++) {
            for (size_t k = 0; k < sizeof buf; k++)
                buf[k] = body_byte(ids[i], 1, (uint64_t)round * sizeof buf + k);
            reel_recorder_response_body(f[i], buf, sizeof buf);
        }
    for (int i = 0; i < N; i++)
        reel_recorder_flow_end(f[i], NULL, 0, 0, 0);
    stop(r);
    assert_true(q1(s, "SELECT count(DISTINCT segment) FROM frames") >= 3);
    for (int i = 0; i < N; i++)
        assert_flow(s, ids[i], 0, 40 * sizeof buf);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE url LIKE 'https://h.test/item/%'"), N);
    assert_verify(s, 1);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* Builds a session of `n` small flows, frames kept small by flushing. */
static void build_session(const char *home, const char *name, int n, uint64_t *ids) {
    reel_session_t *s = open_rec(home, name);
    reel_recorder_t *r = start(s, 0);
    for (int i = 0; i < n; i++) {
        ids[i] = record_flow(r, 100 + (uint64_t)i * 37, 5000 + (uint64_t)i * 1500, 1000);
        if (i % 3 == 2)
            assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    }
    stop(r);
    reel_session_close(s);
}

static void test_truncation_offsets(void **state) {
    char *home = tmp_home();
    enum { N = 24 };
    uint64_t ids[N];
    build_session(home, "pristine", N, ids);
    reel_session_t *s = open_rec(home, "pristine");
    /* Frame ends, to know which flows are complete at a given size. */
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(reel_session_db(s), "SELECT offset + clen FROM frames ORDER BY offset", -1,
                       &st, NULL);
    uint64_t ends[256];
    int nf = 0;
    while (sqlite3_step(st) == SQLITE_ROW && nf < 256)
        ends[nf++] = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    /* For each flow, the end of its last frame. */
    uint64_t flow_end[N];
    for (int i = 0; i < N; i++) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "SELECT max(f.offset + f.clen) FROM flow_frames ff JOIN frames f USING (segment, "
                 "offset) WHERE ff.flow_id = %llu",
                 (unsigned long long)ids[i]);
        flow_end[i] = (uint64_t)q1(s, sql);
    }
    reel_session_close(s);
    assert_true(nf >= 4);
    uint64_t size = ends[nf - 1];
    uint64_t from = nf >= 4 ? ends[nf - 4] : 0; /* inside the last three frames */
    int trials = 200;
    for (int t = 0; t < trials; t++) {
        uint64_t cut = from + (size - from) * (uint64_t)t / (uint64_t)trials;
        if (t == 0)
            cut = from + 1;
        sh("rm -rf '%s/c' && cp -a '%s/pristine' '%s/c' && truncate -s %llu '%s/c/spool/00000001.zst'",
           home, home, home, (unsigned long long)cut, home);
        reel_err_t err;
        reel_err_clear(&err);
        reel_session_t *c = NULL;
        if (reel_session_open(home, "c", 0, &c, &err) != REEL_OK)
            fail_msg("open after truncation at %llu: %s", (unsigned long long)cut,
                     reel_err_str(&err));
        assert_verify(c, 1);
        for (int i = 0; i < N; i++)
            if (flow_end[i] <= cut)
                assert_flow(c, ids[i], 100 + (uint64_t)i * 37, 5000 + (uint64_t)i * 1500);
        /* Nothing is silently discarded: a torn tail was moved aside. */
        int on_boundary = 0;
        for (int k = 0; k < nf; k++)
            on_boundary |= ends[k] == cut;
        if (!on_boundary) {
            char *p = reel_asprintf("%s/c/recovered", home);
            struct stat sb;
            assert_int_equal(stat(p, &sb), 0);
            free(p);
        }
        reel_session_close(c);
    }
    rm_rf(home);
    free(home);
}

static void test_torn_tail_past_index(void **state) {
    char *home = tmp_home();
    enum { N = 6 };
    uint64_t ids[N];
    build_session(home, "s", N, ids);
    /* A crash after a partial frame write: garbage after the last frame. */
    sh("head -c 3000 /dev/urandom > '%s/junk' && printf '\\x28\\xb5\\x2f\\xfd\\x24' >> '%s/s/spool/00000001.zst' && cat '%s/junk' >> '%s/s/spool/00000001.zst'",
       home, home, home, home);
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    assert_int_equal(reel_session_open(home, "s", 0, &s, &err), REEL_OK);
    assert_non_null(strstr(reel_session_recovery_note(s), "moved the bytes from there to the end aside"));
    assert_verify(s, 1);
    for (int i = 0; i < N; i++)
        assert_flow(s, ids[i], 100 + (uint64_t)i * 37, 5000 + (uint64_t)i * 1500);
    reel_session_close(s);
    /* The session keeps recording after recovery. */
    s = open_rec(home, "s");
    reel_recorder_t *r = start(s, 0);
    uint64_t id = record_flow(r, 10, 20, 5);
    stop(r);
    assert_int_equal(id, ids[N - 1] + 1);
    assert_flow(s, id, 10, 20);
    assert_verify(s, 1);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* A tail torn at an offset whose bytes were saved before (another crash,
 * the segment grown back past it since) gets a name of its own: the bytes
 * saved first are never overwritten. */
static void test_torn_tail_saved_twice_keeps_both(void **state) {
    char *home = tmp_home();
    enum { N = 3 };
    uint64_t ids[N];
    build_session(home, "s", N, ids);
    sh("cd '%s/s' && mkdir -p recovered && s=$(stat -c %%s spool/00000001.zst) && "
       "printf first > recovered/00000001.zst.$s.torn && "
       "printf '\x28\xb5\x2f\xfd\x24second' >> spool/00000001.zst",
       home);
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    assert_int_equal(reel_session_open(home, "s", 0, &s, &err), REEL_OK);
    const char *note = reel_session_recovery_note(s);
    assert_non_null(strstr(note, ".1.torn"));
    reel_session_close(s);
    sh("cd '%s/s/recovered' && test $(ls 00000001.zst.*.torn | wc -l) = 2 && "
       "grep -qx first 00000001.zst.*.torn && grep -q second 00000001.zst.*.1.torn",
       home);
    rm_rf(home);
    free(home);
}

static void test_frames_past_index_are_indexed(void **state) {
    char *home = tmp_home();
    enum { N = 9 };
    uint64_t ids[N];
    build_session(home, "s", N, ids);
    /* Simulate a crash between the spool write and the index commit: drop
     * the index rows of the last frames. */
    reel_session_t *s = open_rec(home, "s");
    assert_int_equal(reel_index_exec(reel_session_db(s),
                                     "DELETE FROM flow_frames WHERE offset >= (SELECT max(offset) "
                                     "FROM frames); DELETE FROM frames WHERE offset >= (SELECT "
                                     "max(offset) FROM frames);",
                                     NULL),
                     REEL_OK);
    reel_session_close(s);
    s = open_rec(home, "s");
    assert_non_null(strstr(reel_session_recovery_note(s), "that the index had not seen"));
    for (int i = 0; i < N; i++)
        assert_flow(s, ids[i], 100 + (uint64_t)i * 37, 5000 + (uint64_t)i * 1500);
    assert_verify(s, 1);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* reel_spool_scan_ahead gives what reel_spool_scan gives: the same frames in
 * the same order, and the same outcome, when cb stops the scan at any
 * frame, at a flipped byte and at a torn tail. */
typedef struct {
    uint64_t offs[512];
    uint64_t sum[512];
    int n, stop_at;
} scan_log_t;

static int scan_log_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    scan_log_t *l = ctx;
    uint64_t h = 1469598103934665603ull ^ clen;
    for (size_t i = 0; i < rlen; i++)
        h = (h ^ raw[i]) * 1099511628211ull;
    if (l->n < 512) {
        l->offs[l->n] = off;
        l->sum[l->n] = h;
    }
    l->n++;
    return l->stop_at >= 0 && l->n > l->stop_at;
}

static void compare_scans(int fd, int stop_at) {
    scan_log_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    a->stop_at = b->stop_at = stop_at;
    reel_spool_scan_t sa, sb;
    assert_int_equal(reel_spool_scan(fd, 0, scan_log_cb, a, &sa, NULL), REEL_OK);
    assert_int_equal(reel_spool_scan_ahead(fd, 0, scan_log_cb, b, &sb, NULL), REEL_OK);
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->offs, b->offs, sizeof a->offs);
    assert_memory_equal(a->sum, b->sum, sizeof a->sum);
    assert_int_equal(sa.good_end, sb.good_end);
    assert_int_equal(sa.bad_off, sb.bad_off);
    assert_int_equal(sa.file_size, sb.file_size);
    assert_int_equal(sa.torn, sb.torn);
    assert_string_equal(sa.reason, sb.reason);
    free(a);
    free(b);
}

static void test_scan_ahead_same_as_scan(void **state) {
    char *home = tmp_home();
    enum { N = 40 };
    uint64_t ids[N];
    build_session(home, "s", N, ids); /* a frame per three flows */
    char *seg = reel_asprintf("%s/s/spool/00000001.zst", home);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    scan_log_t *all = calloc(1, sizeof *all);
    all->stop_at = -1;
    reel_spool_scan_t sc;
    assert_int_equal(reel_spool_scan(fd, 0, scan_log_cb, all, &sc, NULL), REEL_OK);
    assert_true(all->n >= 10);
    for (int k = -1; k < all->n; k++)
        compare_scans(fd, k);
    /* A flipped byte in a frame the walking thread decodes and in one the
     * second decoder does (every other frame), then a torn tail. */
    uint8_t b;
    off_t pos = 0;
    for (int k = all->n / 2; k <= all->n / 2 + 1; k++) {
        for (pos = (off_t)all->offs[k] + 20;; pos++) {
            assert_true(pos < (off_t)all->offs[k + 1]);
            assert_int_equal(pread(fd, &b, 1, pos), 1);
            b ^= 0x5a;
            assert_int_equal(pwrite(fd, &b, 1, pos), 1);
            reel_spool_scan_t bad;
            assert_int_equal(reel_spool_scan(fd, 0, NULL, NULL, &bad, NULL), REEL_OK);
            if (bad.reason[0]) { /* some bits change nothing zstd decodes */
                assert_int_equal(bad.bad_off, all->offs[k]);
                break;
            }
            b ^= 0x5a;
            assert_int_equal(pwrite(fd, &b, 1, pos), 1);
        }
        compare_scans(fd, -1);
        compare_scans(fd, 2);
        compare_scans(fd, k - 1);
        compare_scans(fd, k);
        if (k == all->n / 2) {
            b ^= 0x5a;
            assert_int_equal(pwrite(fd, &b, 1, pos), 1);
        }
    }
    assert_int_equal(ftruncate(fd, (off_t)sc.file_size - 7), 0);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, pos), 1);
    compare_scans(fd, -1);
    compare_scans(fd, all->n - 2);
    close(fd);
    free(all);
    free(seg);
    rm_rf(home);
    free(home);
}

/* Flips one byte of the frame at (off, clen) of segment 1 of session name:
 * the first byte from the middle on whose flip changes what the frame
 * decodes to (zstd ignores some bits: a flip there is no damage, and with
 * random bodies the middle byte was such a one in 1 run in 4). */
static void damage_frame(const char *home, const char *name, long long off, long long clen) {
    char *seg = reel_asprintf("%s/%s/spool/00000001.zst", home, name);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    uint8_t *frame = reel_malloc((size_t)clen);
    assert_int_equal(pread(fd, frame, (size_t)clen, (off_t)off), clen);
    size_t cap = (size_t)ZSTD_getFrameContentSize(frame, (size_t)clen);
    uint8_t *want_out = reel_malloc(cap), *got_out = reel_malloc(cap);
    assert_int_equal(ZSTD_decompress(want_out, cap, frame, (size_t)clen), cap);
    size_t k = (size_t)clen / 2;
    for (;; k++) {
        assert_true(k < (size_t)clen - 4);
        frame[k] ^= 0x5a;
        size_t n = ZSTD_decompress(got_out, cap, frame, (size_t)clen);
        if (ZSTD_isError(n) || n != cap || memcmp(got_out, want_out, cap) != 0)
            break;
        frame[k] ^= 0x5a;
    }
    assert_int_equal(pwrite(fd, &frame[k], 1, (off_t)off + (off_t)k), 1);
    close(fd);
    free(frame);
    free(want_out);
    free(got_out);
    free(seg);
}

static void test_flipped_byte_verify_and_repair(void **state) {
    char *home = tmp_home();
    enum { N = 15 };
    uint64_t ids[N];
    build_session(home, "s", N, ids);
    reel_session_t *s = open_rec(home, "s");
    /* User data that repair must keep. */
    assert_int_equal(reel_index_exec(reel_session_db(s),
                                     "INSERT INTO annotations(flow_id, created_us, text) VALUES "
                                     "(1, 1, 'first'), (15, 2, 'last');"
                                     "INSERT INTO tags VALUES (2, 'keep'), (14, 'keep');"
                                     "INSERT INTO marks VALUES (3, 1); UPDATE flows SET marked = 1 "
                                     "WHERE id = 3;",
                                     NULL),
                     REEL_OK);
    /* The frame in the middle. */
    long long nframes = q1(s, "SELECT count(*) FROM frames");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT offset FROM frames ORDER BY offset LIMIT 1 OFFSET %lld",
             nframes / 2);
    long long off = q1(s, sql);
    snprintf(sql, sizeof sql, "SELECT clen FROM frames WHERE offset = %lld", off);
    long long clen = q1(s, sql);
    reel_session_close(s);
    damage_frame(home, "s", off, clen);

    s = open_rec(home, "s");
    char *rep = NULL;
    assert_int_equal(reel_session_verify(s, &rep, NULL), REEL_CORRUPT);
    char want[96];
    snprintf(want, sizeof want, "segment 00000001.zst: frame at offset %lld:", off);
    if (strstr(rep, want) == NULL)
        fail_msg("verify report does not name the frame (%s):\n%s", want, rep);
    free(rep);
    rep = NULL;
    assert_int_equal(reel_session_repair(s, &rep, NULL), REEL_OK);
    assert_non_null(strstr(rep, "skipped"));
    free(rep);
    assert_verify(s, 1);
    /* Flows not in the damaged frame are intact; user data survived. */
    int intact = 0;
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM flow_frames WHERE flow_id = %llu AND offset = %lld",
                 (unsigned long long)ids[i], off);
        if (q1(s, sql) == 0) {
            /* Flows never in the bad frame are complete byte for byte. */
            snprintf(sql, sizeof sql, "SELECT count(*) FROM flows WHERE id = %llu",
                     (unsigned long long)ids[i]);
            if (q1(s, sql) == 1) {
                check_t c = {.id = ids[i]};
                if (reel_store_read_flow(s, ids[i], check_cb, &c, NULL) == REEL_OK && c.end == 1 &&
                    !c.bad && c.resp == 5000 + (uint64_t)i * 1500) {
                    intact++;
                }
            }
        }
    }
    assert_true(intact >= N - 3);
    assert_int_equal(q1(s, "SELECT count(*) FROM annotations"), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM tags WHERE tag = 'keep'"), 2);
    assert_int_equal(q1(s, "SELECT marked FROM flows WHERE id = 3"), 1);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* flows holds the urls however the rows came: in one transaction with
 * their url, url known only in a later transaction than the row, in a
 * later recorder run on the same session, and after repair. */
static void assert_urls(reel_session_t *s, long long items, long long late) {
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE url LIKE '%/item%'"), items);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE url = 'http://example.com/late/one'"),
                     late);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE url IS NULL"), 0);
}

/* reel_spool_peek_record reads what protobuf-c reads: the flow id, the
 * event (the last one if a forged record has two) and the event's bytes. */
static void test_peek_record(void **state) {
    uint8_t data[300];
    memset(data, 'x', sizeof data);
    Reel__BodyChunk bc = REEL__BODY_CHUNK__INIT;
    bc.data.data = data;
    bc.data.len = sizeof data;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = 1234567;
    rec.time_us = 99;
    rec.event_case = REEL__RECORD__EVENT_RESPONSE_BODY;
    rec.response_body = &bc;
    uint8_t buf[512];
    size_t n = reel__record__pack(&rec, buf);
    reel_spool_peek_t pk;
    assert_int_equal(reel_spool_peek_record(buf, n, &pk), 1);
    assert_int_equal(pk.flow_id, 1234567);
    assert_int_equal(pk.event, REEL__RECORD__EVENT_RESPONSE_BODY);
    assert_int_equal(pk.ev_len, reel__body_chunk__get_packed_size(&bc));
    Reel__BodyChunk *back = reel__body_chunk__unpack(NULL, pk.ev_len, buf + pk.ev_off);
    assert_non_null(back);
    assert_int_equal(back->data.len, sizeof data);
    reel__body_chunk__free_unpacked(back, NULL);
    /* Cut anywhere inside, it does not parse (or parses as less). */
    for (size_t k = 0; k < n; k++) {
        if (reel_spool_peek_record(buf, k, &pk))
            assert_true(pk.event == 0 || pk.ev_off + pk.ev_len <= k);
    }
    /* Two events: the last one wins, as for protobuf-c. */
    Reel__FlowEnd fe = REEL__FLOW_END__INIT;
    Reel__Record end = REEL__RECORD__INIT;
    end.flow_id = 1234567;
    end.event_case = REEL__RECORD__EVENT_END;
    end.end = &fe;
    size_t m = reel__record__pack(&end, buf + n);
    assert_int_equal(reel_spool_peek_record(buf, n + m, &pk), 1);
    Reel__Record *u = reel__record__unpack(NULL, n + m, buf);
    assert_non_null(u);
    assert_int_equal(pk.event, (unsigned)u->event_case);
    reel__record__free_unpacked(u, NULL);
}

/* Appends a start record of flow id to block. */
static void add_start(reel_buf_t *block, uint64_t id) {
    Reel__FlowStart fs = REEL__FLOW_START__INIT;
    fs.uuid = "u";
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = id;
    rec.time_us = 1000 + (int64_t)id;
    rec.event_case = REEL__RECORD__EVENT_START;
    rec.start = &fs;
    uint8_t buf[128];
    size_t n = reel__record__pack(&rec, buf);
    assert_int_equal(reel_spool_block_append(block, buf, n), REEL_OK);
}

/* The indexer links every flow with records in a frame to it, however
 * many (they are written in batches of 64, 16, 4 and 1), and when a frame
 * holds a record that does not decode, still the flows of the records
 * before it (recovery and repair index what such a frame says). */
static void test_frame_links(void **state) {
    (void)state;
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "links");
    sqlite3 *db = reel_session_db(s);
    reel_err_t err;
    reel_err_clear(&err);
    reel_indexer_t *ix = NULL;
    assert_int_equal(reel_indexer_new(db, &ix, &err), REEL_OK);
    reel_buf_t block;
    reel_buf_init(&block, 0);
    for (uint64_t id = 1; id <= 150; id++)
        add_start(&block, id);
    for (uint64_t id = 150; id >= 1; id--) /* a flow's second record: one link */
        add_start(&block, id);
    assert_int_equal(reel_indexer_begin(ix, &err), REEL_OK);
    assert_int_equal(reel_indexer_add_frame(ix, 1, 0, 100, block.data, block.len, &err), REEL_OK);
    reel_buf_reset(&block);
    for (uint64_t id = 151; id <= 155; id++)
        add_start(&block, id);
    static const uint8_t bad[] = {0x08}; /* field 1 without its varint */
    assert_int_equal(reel_spool_block_append(&block, bad, sizeof bad), REEL_OK);
    add_start(&block, 156);
    assert_int_equal(reel_indexer_add_frame(ix, 1, 100, 100, block.data, block.len, &err),
                     REEL_CORRUPT);
    assert_int_equal(reel_indexer_commit(ix, &err), REEL_OK);
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_frames WHERE segment = 1 AND offset = 0"),
                     150);
    assert_int_equal(q1(s, "SELECT count(DISTINCT flow_id) FROM flow_frames WHERE offset = 0 AND "
                           "flow_id BETWEEN 1 AND 150"),
                     150);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT group_concat(flow_id) FROM (SELECT flow_id FROM "
                                        "flow_frames WHERE offset = 100 ORDER BY flow_id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *linked = (const char *)sqlite3_column_text(st, 0);
    assert_non_null(linked);
    assert_string_equal(linked, "151,152,153,154,155");
    sqlite3_finalize(st);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 155);
    reel_buf_free(&block);
    reel_indexer_free(ix);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* reel_indexer_vet_frame passes a frame whose records all unpack, and
 * refuses one with a record that does not, naming it, or with broken
 * framing: a rebuild takes such a frame for a damaged one. */
static void test_vet_frame(void **state) {
    (void)state;
    char why[200] = "";
    reel_buf_t block;
    reel_buf_init(&block, 0);
    for (uint64_t id = 1; id <= 20; id++)
        add_start(&block, id);
    assert_int_equal(reel_indexer_vet_frame(block.data, block.len, why), 0);
    assert_int_equal(reel_indexer_vet_frame(block.data, 0, why), 0);
    /* a start whose uuid (a string) is given as a varint: it peeks as a
     * start, and protobuf-c refuses it */
    const uint8_t bad_start[] = {0x08, 0x15, (REEL__RECORD__EVENT_START << 3) | 2, 2, 0x08, 1};
    Reel__Record *u = reel__record__unpack(NULL, sizeof bad_start, bad_start);
    assert_null(u);
    reel_buf_t bad;
    reel_buf_init(&bad, 0);
    reel_buf_append(&bad, block.data, block.len);
    assert_int_equal(reel_spool_block_append(&bad, bad_start, sizeof bad_start), REEL_OK);
    add_start(&bad, 22);
    assert_int_equal(reel_indexer_vet_frame(bad.data, bad.len, why), -1);
    assert_string_equal(why, "record 20 does not unpack as a Record (the checksum held)");
    /* one that does not even peek */
    static const uint8_t junk[] = {0x08}; /* field 1 without its varint */
    reel_buf_reset(&bad);
    reel_buf_append(&bad, block.data, block.len);
    assert_int_equal(reel_spool_block_append(&bad, junk, sizeof junk), REEL_OK);
    assert_int_equal(reel_indexer_vet_frame(bad.data, bad.len, why), -1);
    assert_string_equal(why, "record 20 does not unpack as a Record (the checksum held)");
    /* framing cut inside a record */
    assert_int_equal(reel_indexer_vet_frame(block.data, block.len - 1, why), -1);
    assert_string_equal(why, "bad record length inside the block");
    reel_buf_free(&bad);
    reel_buf_free(&block);
}

/* Rows of flows the table does not have are written by plain inserts; a
 * row that another writer put there after the indexer began (its highest
 * id then said the flow was new) makes the insert fail, and the rows from
 * that statement on are written by upsert: nothing is lost or doubled. */
static void test_rows_another_writer_added(void **state) {
    (void)state;
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "other");
    sqlite3 *db = reel_session_db(s);
    reel_err_t err;
    reel_err_clear(&err);
    reel_indexer_t *ix = NULL;
    assert_int_equal(reel_indexer_new(db, &ix, &err), REEL_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO flows(id, uuid, state, start_us) VALUES "
                                  "(200, 'x', 'complete', 1), (205, 'x', 'complete', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    reel_buf_t block;
    reel_buf_init(&block, 0);
    for (uint64_t id = 190; id <= 210; id++) /* 21 rows: statements of 16, 4, 1 */
        add_start(&block, id);
    assert_int_equal(reel_indexer_begin(ix, &err), REEL_OK);
    assert_int_equal(reel_indexer_add_frame(ix, 1, 0, 100, block.data, block.len, &err), REEL_OK);
    assert_int_equal(reel_indexer_commit(ix, &err), REEL_OK);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 21);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE uuid = 'u' AND state = 'open' AND "
                           "start_us = 1000 + id AND id BETWEEN 190 AND 210"),
                     21);
    /* later records of the same flows: rows the indexer knows, by upsert */
    reel_buf_reset(&block);
    for (uint64_t id = 185; id <= 212; id++)
        add_start(&block, id);
    assert_int_equal(reel_indexer_begin(ix, &err), REEL_OK);
    assert_int_equal(reel_indexer_add_frame(ix, 1, 100, 100, block.data, block.len, &err), REEL_OK);
    assert_int_equal(reel_indexer_commit(ix, &err), REEL_OK);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows"), 28);
    assert_int_equal(q1(s, "SELECT count(*) FROM flow_frames"), 21 + 28);
    reel_buf_free(&block);
    reel_indexer_free(ix);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* The url column: scheme, host (bracketed when IPv6), the port unless it
 * is the scheme's default, then the target ("/" when empty). */
static void test_index_url(void **state) {
    (void)state;
    static const struct {
        const char *scheme, *host;
        uint32_t port;
        const char *target, *want;
    } cases[] = {
        {"http", "a.test", 80, "/x?y", "http://a.test/x?y"},
        {"https", "a.test", 443, "", "https://a.test/"},
        {"http", "a.test", 443, "/", "http://a.test:443/"},
        {"https", "a.test", 80, "/", "https://a.test:80/"},
        {"http", "127.0.0.1", 8080, "/p", "http://127.0.0.1:8080/p"},
        {"http", "h", 1, "/", "http://h:1/"},
        {"http", "h", 10, "/", "http://h:10/"},
        {"http", "h", 65535, "/", "http://h:65535/"},
        {"http", "h", 4294967295u, "/", "http://h:4294967295/"},
        {"", "h", 0, "/", "http://h/"},
        {"https", "::1", 8443, "/", "https://[::1]:8443/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Reel__RequestHead h = REEL__REQUEST_HEAD__INIT;
        h.scheme = (char *)cases[i].scheme;
        h.host.data = (uint8_t *)cases[i].host;
        h.host.len = strlen(cases[i].host);
        h.port = cases[i].port;
        h.target.data = (uint8_t *)cases[i].target;
        h.target.len = strlen(cases[i].target);
        reel_buf_t b;
        reel_buf_init(&b, 0);
        reel_index_url(&h, &b);
        assert_string_equal((const char *)b.data, cases[i].want);
        reel_buf_free(&b);
    }
}

static void test_urls_and_migration(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "f");
    reel_recorder_t *r = start(s, 0);
    for (int i = 0; i < 5; i++)
        record_flow(r, 10, 20, 64);
    /* A flow whose row is committed before its request head is seen. */
    reel_rflow_t *late = reel_recorder_flow_start(r, NULL);
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    assert_int_equal(q1(s, "SELECT count(*) FROM flows WHERE url IS NULL"), 1);
    record_flow(r, 1, 1, 64);
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    reel_request_head_t rq = {.method = "GET", .scheme = "http", .host = "example.com",
                              .port = 80, .target = "/late/one", .http_version = "HTTP/1.1"};
    reel_recorder_request_head(late, &rq);
    assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    reel_recorder_flow_end(late, NULL, 0, 0, 0);
    stop(r);
    assert_urls(s, 6, 1);
    /* Make it a schema 1 session (url_fts with per-row triggers, none of
     * schema 3's columns): opening migrates it. */
    assert_int_equal(
        reel_index_exec(reel_session_db(s),
                        "CREATE VIRTUAL TABLE url_fts USING fts5(url, content='flows', "
                        "content_rowid='id', detail=none, columnsize=0);"
                        "CREATE TRIGGER flows_fts_ad AFTER DELETE ON flows WHEN old.url IS NOT "
                        "NULL BEGIN INSERT INTO url_fts(url_fts, rowid, url) VALUES ('delete', "
                        "old.id, old.url); END;"
                        "CREATE TRIGGER flows_fts_ai AFTER INSERT ON flows WHEN new.url IS NOT "
                        "NULL BEGIN INSERT INTO url_fts(rowid, url) VALUES (new.id, new.url); END;"
                        "DROP INDEX flows_damaged; DROP TABLE flow_damage;"
                        "ALTER TABLE flows DROP COLUMN response_generated;"
                        "ALTER TABLE flows DROP COLUMN request_body_dropped;"
                        "ALTER TABLE flows DROP COLUMN response_body_dropped;"
                        "ALTER TABLE flows DROP COLUMN damaged;"
                        "ALTER TABLE flows DROP COLUMN messages;"
                        "DROP TABLE retention; DROP TABLE retired_flows;"
                        "DROP INDEX flow_frames_segment;"
                        "DROP INDEX flows_replay_of; ALTER TABLE flows DROP COLUMN replay_of;"
                        "ALTER TABLE flows DROP COLUMN replay_session;"
                        "DROP TABLE client_conns; ALTER TABLE flows DROP COLUMN client_conn;"
                        "ALTER TABLE flows DROP COLUMN stream_id;"
                        "DROP TRIGGER flows_body_ad; DROP TABLE body_fts;"
                        "DROP TABLE body_text; DROP TABLE body_todo; DROP TABLE body_off;"
                        "PRAGMA user_version = 1;",
                        NULL),
        REEL_OK);
    reel_session_close(s);

    /* A second run on the same session starts from what is indexed. */
    s = open_rec(home, "f");
    r = start(s, 0);
    for (int i = 0; i < 3; i++)
        record_flow(r, 10, 20, 64);
    stop(r);
    assert_int_equal(q1(s, "PRAGMA user_version"), reel_index_schema_version());
    /* schema 10 dropped url_fts, which no reader used, and its triggers */
    assert_int_equal(q1(s, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%url_fts%' OR "
                           "name LIKE 'flows_fts_%'"),
                     0);
    /* schema 8 made an index on client_conn, 11 a table of ranges instead */
    assert_int_equal(q1(s, "SELECT count(*) FROM sqlite_master WHERE name = 'flows_client_conn'"),
                     0);
    assert_int_equal(q1(s, "SELECT count(*) FROM client_conns"), 0);
    assert_urls(s, 9, 1);
    char *rep = NULL;
    assert_int_equal(reel_session_repair(s, &rep, NULL), REEL_OK);
    free(rep);
    assert_urls(s, 9, 1);
    assert_verify(s, 1);
    /* verify notices a full-text index that disagrees with its table */
    assert_int_equal(reel_index_exec(reel_session_db(s),
                                     "INSERT INTO annotation_fts(rowid, text) VALUES (2, 'stray')",
                                     NULL),
                     REEL_OK);
    char *vrep = NULL;
    assert_int_equal(reel_session_verify(s, &vrep, NULL), REEL_CORRUPT);
    if (strstr(vrep, "annotation_fts does not match") == NULL)
        fail_msg("verify does not name annotation_fts:\n%s", vrep);
    free(vrep);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* What one read of a flow gave: its records packed back, end to end, and
 * the return code and message. */
typedef struct {
    reel_buf_t recs;
    size_t n;
    reel_rc rc;
    char msg[512];
} got_t;

static int got_cb(void *ctx, const Reel__Record *rec) {
    got_t *g = ctx;
    size_t len = reel__record__get_packed_size(rec);
    uint8_t *p = reel_malloc(len ? len : 1);
    reel__record__pack(rec, p);
    uint64_t len64 = len;
    reel_buf_append(&g->recs, &len64, sizeof len64);
    reel_buf_append(&g->recs, p, len);
    free(p);
    g->n++;
    return 0;
}

static void got_read(got_t *g, reel_session_t *s, reel_store_reader_t *r, uint64_t id) {
    memset(g, 0, sizeof *g);
    reel_buf_init(&g->recs, 0);
    reel_err_t err;
    reel_err_clear(&err);
    g->rc = r ? reel_store_reader_flow(r, id, got_cb, g, &err)
              : reel_store_read_flow(s, id, got_cb, g, &err);
    snprintf(g->msg, sizeof g->msg, "%s", g->rc == REEL_OK ? "" : reel_err_str(&err));
}

/* Reads flows ids[order[0..n)] through r and asserts each gives what
 * reel_store_read_flow gives; returns how many of them failed with
 * REEL_CORRUPT. */
static int assert_reader_same(reel_session_t *s, reel_store_reader_t *r, const uint64_t *ids,
                              const int *order, int n) {
    int corrupt = 0;
    for (int i = 0; i < n; i++) {
        uint64_t id = ids[order ? order[i] : i];
        got_t want, got;
        got_read(&want, s, NULL, id);
        got_read(&got, s, r, id);
        if (want.rc != got.rc || strcmp(want.msg, got.msg) != 0)
            fail_msg("flow %llu: read_flow %d '%s', reader %d '%s'", (unsigned long long)id,
                     (int)want.rc, want.msg, (int)got.rc, got.msg);
        assert_int_equal(got.n, want.n);
        assert_int_equal(got.recs.len, want.recs.len);
        assert_memory_equal(got.recs.data, want.recs.data, want.recs.len);
        corrupt += got.rc == REEL_CORRUPT;
        reel_buf_free(&want.recs);
        reel_buf_free(&got.recs);
    }
    return corrupt;
}

static void test_reader_same_as_read_flow(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "rd");
    reel_recorder_t *r = start(s, 0);
    enum { N = 40 };
    uint64_t ids[N + 1];
    int span = -1; /* the flow whose records span two frames */
    for (int i = 0; i < N; i++) {
        if (i == 20) {
            /* head in one frame, body and end in the next */
            reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
            ids[i] = reel_rflow_id(f);
            reel_request_head_t rq = {.method = "GET", .scheme = "http", .host = "h.test",
                                      .port = 80, .target = "/span"};
            reel_recorder_request_head(f, &rq);
            assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
            reel_response_head_t rs = {.status = 200};
            reel_recorder_response_head(f, &rs);
            uint8_t buf[700];
            memset(buf, 'x', sizeof buf);
            reel_recorder_response_body(f, buf, sizeof buf);
            reel_recorder_flow_end(f, NULL, 0, 0, 0);
            span = i;
        } else {
            /* small flows, a big one (its body spans several frames) */
            ids[i] = record_flow(r, 50, i == 30 ? 700000 : 900 + (uint64_t)i * 50, 4096);
        }
        if (i % 6 == 5)
            assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    }
    stop(r);
    ids[N] = ids[N - 1] + 1000; /* not in the session */
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM flow_frames WHERE flow_id = %llu",
             (unsigned long long)ids[span]);
    assert_int_equal(q1(s, sql), 2);
    long long nframes = q1(s, "SELECT count(*) FROM frames");
    assert_true(nframes >= 8);

    /* In id order: the same records, each frame decompressed once. */
    reel_store_reader_t *rd = NULL;
    assert_int_equal(reel_store_reader_open(s, &rd, NULL), REEL_OK);
    assert_int_equal(assert_reader_same(s, rd, ids, NULL, N + 1), 0);
    assert_int_equal(reel_store_reader_frames_read(rd), nframes);
    /* Out of order, on the same reader (frames kept from before) and on a
     * new one. */
    int order[N + 1];
    for (int i = 0; i <= N; i++)
        order[i] = (i * 17 + 5) % (N + 1);
    assert_int_equal(assert_reader_same(s, rd, ids, order, N + 1), 0);
    reel_store_reader_free(rd);
    assert_int_equal(reel_store_reader_open(s, &rd, NULL), REEL_OK);
    assert_int_equal(assert_reader_same(s, rd, ids, order, N + 1), 0);
    reel_store_reader_free(rd);

    /* Damage the second frame of the spanning flow: it fails after its
     * head, as do the other flows in that frame, each time they are read. */
    snprintf(sql, sizeof sql,
             "SELECT max(offset) FROM flow_frames WHERE flow_id = %llu AND segment = 1",
             (unsigned long long)ids[span]);
    long long off = q1(s, sql);
    snprintf(sql, sizeof sql, "SELECT clen FROM frames WHERE segment = 1 AND offset = %lld", off);
    long long clen = q1(s, sql);
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT flow_id) FROM flow_frames WHERE segment = 1 AND offset = %lld",
             off);
    long long in_frame = q1(s, sql);
    reel_session_close(s);
    damage_frame(home, "rd", off, clen);
    s = open_rec(home, "rd");
    got_t g;
    got_read(&g, s, NULL, ids[span]);
    assert_int_equal(g.rc, REEL_CORRUPT);
    assert_true(g.n >= 2); /* start and request head, before the damage */
    reel_buf_free(&g.recs);
    /* The frame that failed is not kept: after the flows before it and the
     * failure, the frames before are read back from the newest (the
     * oldest was the one given to the damaged frame). */
    assert_int_equal(reel_store_reader_open(s, &rd, NULL), REEL_OK);
    assert_int_equal(assert_reader_same(s, rd, ids, NULL, span + 1), 1);
    int back[N];
    for (int i = 0; i < span; i++)
        back[i] = span - 1 - i;
    assert_int_equal(assert_reader_same(s, rd, ids, back, span), 0);
    reel_store_reader_free(rd);
    assert_int_equal(reel_store_reader_open(s, &rd, NULL), REEL_OK);
    assert_int_equal(assert_reader_same(s, rd, ids, NULL, N + 1), in_frame);
    assert_int_equal(assert_reader_same(s, rd, ids, order, N + 1), in_frame);
    assert_int_equal(assert_reader_same(s, rd, ids, NULL, N + 1), in_frame);
    reel_store_reader_free(rd);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

/* Runs sql on the session's db through a connection of its own. */
static void exec_other(const char *home, const char *name, const char *sql) {
    char *path = reel_asprintf("%s/%s/session.db", home, name);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
    free(path);
}

/* Flows read in id order while a statement runs take their frames from
 * plans (one index query for many flows): the same records and errors as
 * flows read alone, a flow missing from the index inside a plan, a flow
 * with more frames than a plan holds, and a plan read before another
 * connection changed the index is not used after. */
static void test_reader_plan(void **state) {
    (void)state;
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "pl");
    reel_recorder_t *r = start(s, 0);
    enum { N = 60, BIG = 20, GONE = 33, LATER = 46 };
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = record_flow(r, 40, i == BIG ? 900000 : 700 + (uint64_t)i * 30, 4096);
        if (i % 6 == 5)
            assert_int_equal(reel_recorder_flush(r, NULL), REEL_OK);
    }
    stop(r);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM flow_frames WHERE flow_id = %llu",
             (unsigned long long)ids[BIG]);
    long long big_frames = q1(s, sql);
    assert_true(big_frames >= 3);
    snprintf(sql, sizeof sql, "DELETE FROM flow_frames WHERE flow_id = %llu",
             (unsigned long long)ids[GONE]);
    assert_int_equal(sqlite3_exec(reel_session_db(s), sql, NULL, NULL, NULL), SQLITE_OK);
    uint64_t last = ids[N - 1] + 3; /* past the end too */

    size_t limits[] = {4096, 2};
    for (size_t li = 0; li < 2; li++) {
        reel_store_reader_t *rd = NULL;
        assert_int_equal(reel_store_reader_open(s, &rd, NULL), REEL_OK);
        reel_store_reader_set_plan_rows(rd, limits[li]);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(reel_session_db(s), "SELECT id FROM flows ORDER BY id",
                                            -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW); /* a read transaction */
        int notfound = 0;
        for (uint64_t id = ids[0]; id <= last; id++) {
            got_t want, got;
            got_read(&want, s, NULL, id);
            got_read(&got, s, rd, id);
            if (want.rc != got.rc || strcmp(want.msg, got.msg) != 0)
                fail_msg("flow %llu: read_flow %d '%s', reader %d '%s'", (unsigned long long)id,
                         (int)want.rc, want.msg, (int)got.rc, got.msg);
            assert_int_equal(got.n, want.n);
            assert_int_equal(got.recs.len, want.recs.len);
            assert_memory_equal(got.recs.data, want.recs.data, want.recs.len);
            notfound += got.rc == REEL_NOTFOUND;
            reel_buf_free(&want.recs);
            reel_buf_free(&got.recs);
        }
        assert_int_equal(notfound, 1 + 3); /* GONE and the three past the end */
        uint64_t queries = reel_store_reader_queries(rd);
        print_message("plan rows %zu: %llu queries for %llu flows\n", limits[li],
                      (unsigned long long)queries, (unsigned long long)(last - ids[0] + 1));
        if (li == 0)
            assert_true(queries <= 6); /* 16 flows, then 32, then the rest */
        else
            assert_true(queries > N / 2); /* two rows a plan: about one flow each */
        sqlite3_finalize(st);
        reel_store_reader_free(rd);
    }

    /* A plan read in one transaction, the index changed by another
     * connection, the next flows read in a new one: read afresh. */
    reel_store_reader_t *rd = NULL;
    assert_int_equal(reel_store_reader_open(s, &rd, NULL), REEL_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(reel_session_db(s), "SELECT id FROM flows", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    for (int i = LATER - 3; i < LATER; i++) {
        got_t g;
        got_read(&g, s, rd, ids[i]);
        assert_int_equal(g.rc, REEL_OK);
        reel_buf_free(&g.recs);
    }
    uint64_t queries = reel_store_reader_queries(rd);
    sqlite3_finalize(st);
    snprintf(sql, sizeof sql, "DELETE FROM flow_frames WHERE flow_id = %llu",
             (unsigned long long)ids[LATER]);
    exec_other(home, "pl", sql);
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s), "SELECT id FROM flows ORDER BY id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    got_t g;
    got_read(&g, s, rd, ids[LATER]);
    assert_int_equal(g.rc, REEL_NOTFOUND);
    reel_buf_free(&g.recs);
    assert_true(reel_store_reader_queries(rd) > queries);
    sqlite3_finalize(st);
    /* Outside a transaction flows are looked up alone. */
    queries = reel_store_reader_queries(rd);
    for (int i = LATER + 1; i < LATER + 5; i++) {
        got_read(&g, s, rd, ids[i]);
        assert_int_equal(g.rc, REEL_OK);
        reel_buf_free(&g.recs);
    }
    assert_int_equal(reel_store_reader_queries(rd), queries + 4);
    reel_store_reader_free(rd);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

static void test_lock_names_pid(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "locked");
    pid_t pid = fork();
    if (pid == 0) {
        reel_err_t err;
        reel_err_clear(&err);
        reel_session_t *t = NULL;
        reel_rc rc = reel_session_open(home, "locked", REEL_OPEN_RECORD, &t, &err);
        char want[96];
        snprintf(want, sizeof want, "session 'locked' is being recorded by PID %ld",
                 (long)getppid());
        int ok = rc == REEL_LOCKED && strcmp(reel_err_str(&err), want) == 0;
        /* A reader still opens it. */
        ok = ok && reel_session_open(home, "locked", 0, &t, NULL) == REEL_OK &&
             reel_session_recorder_pid(t) == (long)getppid();
        reel_session_close(t);
        _exit(ok ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

static void test_bad_names(void **state) {
    const char *bad[] = {"", ".", "..", "a/b", "../x", ".hidden", "-x", "a\nb", "tab\there",
                         "sp ace"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        assert_int_equal(reel_session_name_check(bad[i], &err), REEL_INVALID);
        assert_non_null(strstr(err.msg, "invalid session name"));
    }
    char longname[REEL_SESSION_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(reel_session_name_check(longname, NULL), REEL_INVALID);
    assert_int_equal(reel_session_name_check("2026-11-24_capture.v1", NULL), REEL_OK);
}

typedef struct {
    const char *home;
    atomic_int done;
    atomic_int bad;
    atomic_int reads;
} reader_ctx;

static void *reader_main(void *arg) {
    reader_ctx *rc = arg;
    while (!rc->done) {
        reel_session_t *s = NULL;
        if (reel_session_open(rc->home, "live", 0, &s, NULL) != REEL_OK) {
            rc->bad++;
            break;
        }
        /* Every flow the index calls complete reads back whole. */
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT id, request_body_size, response_body_size FROM flows WHERE "
                           "state = 'complete' ORDER BY random() LIMIT 5",
                           -1, &st, NULL);
        while (sqlite3_step(st) == SQLITE_ROW) {
            uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
            check_t c = {.id = id};
            if (reel_store_read_flow(s, id, check_cb, &c, NULL) != REEL_OK || c.bad ||
                c.end != 1 || c.req != (uint64_t)sqlite3_column_int64(st, 1) ||
                c.resp != (uint64_t)sqlite3_column_int64(st, 2))
                rc->bad++;
            rc->reads++;
        }
        sqlite3_finalize(st);
        reel_session_close(s);
    }
    return NULL;
}

static void test_reader_beside_writer(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "live");
    reel_recorder_t *r = start(s, 0);
    reader_ctx rc = {.home = home};
    pthread_t th;
    pthread_create(&th, NULL, reader_main, &rc);
    for (int i = 0; i < 400; i++) {
        record_flow(r, (uint64_t)i * 11, 2000 + (uint64_t)i * 97, 700);
        if (i % 50 == 0)
            reel_recorder_flush(r, NULL);
        /* Half way, the writes wait (10 s at most) for the reader to have
         * read a flow back: on a loaded machine the reader's thread can
         * otherwise start only after the last write, and the test would
         * read nothing beside the writer. */
        for (int w = 0; i == 200 && w < 1000 && atomic_load(&rc.reads) == 0; w++)
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    stop(r);
    rc.done = 1;
    pthread_join(th, NULL);
    print_message("reader: %d flows read back during the writes\n", atomic_load(&rc.reads));
    assert_int_equal(atomic_load(&rc.bad), 0);
    assert_true(atomic_load(&rc.reads) > 0);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

static void test_body_limit(void **state) {
    char *home = tmp_home();
    reel_session_t *s = open_rec(home, "lim");
    reel_recorder_t *r = start(s, 0);
    reel_recorder_set_limits(r, 1000, REEL_CAPTURE_LOSSLESS);
    uint64_t id = record_flow(r, 10, 5000, 333);
    stop(r);
    check_t c = {.id = id};
    assert_int_equal(reel_store_read_flow(s, id, check_cb, &c, NULL), REEL_OK);
    assert_int_equal(c.resp, 1000);
    assert_int_equal(c.bad, 0);
    assert_int_equal(q1(s, "SELECT response_body_size FROM flows"), 5000);
    assert_int_equal(q1(s, "SELECT response_truncated FROM flows"), 1);
    assert_int_equal(q1(s, "SELECT request_truncated FROM flows"), 0);
    reel_session_close(s);
    rm_rf(home);
    free(home);
}

static void test_block_codec_hostile(void **state) {
    /* Record framing: lengths past the end or absurd varints are corrupt. */
    const uint8_t bad1[] = {0x05, 'a', 'b'};
    const uint8_t bad2[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    size_t pos = 0, len;
    const uint8_t *rec;
    assert_int_equal(reel_spool_block_next(bad1, sizeof bad1, &pos, &rec, &len), REEL_CORRUPT);
    pos = 0;
    assert_int_equal(reel_spool_block_next(bad2, sizeof bad2, &pos, &rec, &len), REEL_CORRUPT);
    /* A frame cut at every byte is NEED_MORE, never OK or a crash. */
    reel_spool_enc_t *enc = reel_spool_enc_new(3);
    reel_buf_t block, frame, out;
    reel_buf_init(&block, 0);
    reel_buf_init(&frame, 0);
    reel_buf_init(&out, 0);
    uint8_t payload[500];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    assert_int_equal(reel_spool_block_append(&block, payload, sizeof payload), REEL_OK);
    assert_int_equal(reel_spool_enc_frame(enc, block.data, block.len, &frame, NULL), REEL_OK);
    for (size_t cut = 0; cut < frame.len; cut++) {
        size_t fl = 0;
        reel_rc rc = reel_spool_frame_size(frame.data, cut, &fl);
        assert_true(rc == REEL_NEED_MORE || rc == REEL_CORRUPT);
    }
    size_t fl = 0;
    assert_int_equal(reel_spool_frame_size(frame.data, frame.len, &fl), REEL_OK);
    assert_int_equal(fl, frame.len);
    assert_int_equal(reel_spool_frame_decode(frame.data, frame.len, &out, NULL), REEL_OK);
    assert_int_equal(out.len, block.len);
    assert_memory_equal(out.data, block.data, block.len);
    /* Every single-byte flip is detected (or harmless and exact). */
    for (size_t i = 0; i < frame.len; i++) {
        frame.data[i] ^= 0x01;
        reel_rc rc = reel_spool_frame_size(frame.data, frame.len, &fl);
        if (rc == REEL_OK && fl == frame.len &&
            reel_spool_frame_decode(frame.data, frame.len, &out, NULL) == REEL_OK)
            assert_memory_equal(out.data, block.data, block.len);
        frame.data[i] ^= 0x01;
    }
    reel_buf_free(&block);
    reel_buf_free(&frame);
    reel_buf_free(&out);
    reel_spool_enc_free(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_block_codec_hostile),
        cmocka_unit_test(test_round_trip_sizes),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_rollover_and_interleaving),
        cmocka_unit_test(test_big_body_bounded_memory),
        cmocka_unit_test(test_truncation_offsets),
        cmocka_unit_test(test_torn_tail_past_index),
        cmocka_unit_test(test_torn_tail_saved_twice_keeps_both),
        cmocka_unit_test(test_frames_past_index_are_indexed),
        cmocka_unit_test(test_flipped_byte_verify_and_repair),
        cmocka_unit_test(test_reader_same_as_read_flow),
        cmocka_unit_test(test_reader_plan),
        cmocka_unit_test(test_peek_record),
        cmocka_unit_test(test_urls_and_migration),
        cmocka_unit_test(test_frame_links),
        cmocka_unit_test(test_vet_frame),
        cmocka_unit_test(test_rows_another_writer_added),
        cmocka_unit_test(test_index_url),
        cmocka_unit_test(test_scan_ahead_same_as_scan),
        cmocka_unit_test(test_lock_names_pid),
        cmocka_unit_test(test_reader_beside_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
