/* Salvage tests (docs/format.md section 6): a torn or damaged frame keeps
 * its whole records. Two sessions, one made by HAR import and one made the
 * way the proxy records (interleaved flows, bodies, server connections),
 * every flow tagged and annotated: the segment is cut at every byte of its
 * last 3 frames (recovery on open) and a byte is flipped at every position
 * of a middle frame (repair). Each time: no tag or annotation is lost, the
 * flows that disappear (their rows kept only for their user data) are at
 * most those whose records were actually cut, and every flow whose start
 * record survived is still read from the spool. "Actually cut" is judged
 * by libzstd itself: the records whose bytes a plain streaming decode of
 * the damaged frame does not give. */
#include <dirent.h>
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
#include <zstd.h>

#include "unit/testutil.h"

#include "base/mem.h"
#include "flow.pb-c.h"
#include "session/har.h"
#include "session/index.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/spool.h"
#include "session/store.h"

static reel_session_t *open_s(const char *home, int flags) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, "s", flags, &s, &err) != REEL_OK)
        fail_msg("open %s: %s", home, reel_err_str(&err));
    return s;
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

static void exec(reel_session_t *s, const char *sql) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_index_exec(reel_session_db(s), sql, &err) != REEL_OK)
        fail_msg("%s: %s", sql, reel_err_str(&err));
}

static reel_recorder_t *recorder(reel_session_t *s) {
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.capture = REEL_CAPTURE_LOSSLESS;
    o.fsync = REEL_FSYNC_NEVER;
    reel_err_t err;
    reel_err_clear(&err);
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        fail_msg("recorder: %s", reel_err_str(&err));
    return r;
}

static void flush(reel_recorder_t *r) {
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_flush(r, &err), REEL_OK);
}

/* Every flow gets a tag and an annotation; a few are marked. */
static void user_data(const char *home) {
    reel_session_t *s = open_s(home, 0);
    exec(s, "BEGIN IMMEDIATE; INSERT INTO tags(flow_id, tag) SELECT id, 't' || id FROM flows; "
            "INSERT INTO annotations(flow_id, created_us, text) SELECT id, 1, 'note ' || id "
            "FROM flows; INSERT INTO marks(flow_id, created_us) SELECT id, 1 FROM flows WHERE "
            "id % 3 = 0; UPDATE flows SET marked = 1 WHERE id % 3 = 0; COMMIT");
    reel_session_close(s);
}

/* A session made by import: three imports of 3 entries, a frame each. */
static void make_import(const char *home) {
    char *har = reel_asprintf("%s/in.har", home);
    FILE *f = fopen(har, "w");
    assert_non_null(f);
    fputs("{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":\"t\",\"version\":\"1\"},"
          "\"entries\":[",
          f);
    for (int i = 0; i < 3; i++)
        fprintf(f,
                "%s{\"startedDateTime\":\"2024-01-01T00:00:0%d.000Z\",\"time\":1,"
                "\"request\":{\"method\":\"POST\",\"url\":\"http://example.com/p%d\","
                "\"httpVersion\":\"HTTP/1.1\",\"headers\":[{\"name\":\"Host\",\"value\":"
                "\"example.com\"}],\"queryString\":[],\"cookies\":[],\"headersSize\":-1,"
                "\"bodySize\":9,\"postData\":{\"mimeType\":\"text/plain\",\"text\":\"q=%d&x=yz\"}},"
                "\"response\":{\"status\":200,\"statusText\":\"OK\",\"httpVersion\":\"HTTP/1.1\","
                "\"headers\":[{\"name\":\"Content-Type\",\"value\":\"text/plain\"}],\"cookies\":[],"
                "\"content\":{\"size\":24,\"mimeType\":\"text/plain\",\"text\":\"response body "
                "number %04d\"},\"redirectURL\":\"\",\"headersSize\":-1,\"bodySize\":24},"
                "\"cache\":{},\"timings\":{\"send\":0,\"wait\":1,\"receive\":0}}",
                i ? "," : "", i, i, i, i * 7919);
    fputs("]}}", f);
    fclose(f);
    reel_session_t *s = open_s(home, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = recorder(s);
    reel_err_t err;
    reel_err_clear(&err);
    for (int k = 0; k < 3; k++) {
        if (reel_har_import(r, har, NULL, &err) != REEL_OK)
            fail_msg("import: %s", reel_err_str(&err));
        flush(r);
    }
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    unlink(har);
    free(har);
    user_data(home);
}

/* A session made as the proxy makes one: flows overlap, bodies come in
 * pieces, frames end wherever the writer happened to be. */
static void make_proxy(const char *home) {
    reel_session_t *s = open_s(home, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = recorder(s);
    reel_rflow_t *open[3] = {NULL, NULL, NULL};
    char buf[300];
    for (int step = 0; step < 12; step++) {
        int k = step % 3;
        if (open[k] == NULL) {
            open[k] = reel_recorder_flow_start(r, NULL);
            snprintf(buf, sizeof buf, "/item/%d", step);
            reel_request_head_t rq = {.method = "GET", .scheme = "https", .host = "api.example",
                                      .port = 443, .target = buf, .http_version = "HTTP/1.1"};
            reel_recorder_request_head(open[k], &rq);
            reel_response_head_t rs = {.status = 200, .reason = "OK",
                                       .http_version = "HTTP/1.1"};
            reel_recorder_response_head(open[k], &rs);
        }
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (char)('a' + (i * 7 + (size_t)step * 13) % 26);
        reel_recorder_response_body(open[k], buf, 120 + (size_t)step * 10);
        if (step % 2 == 1) {
            reel_recorder_flow_end(open[k], NULL, 0, 0, 0);
            open[k] = NULL;
        }
        if (step % 3 == 2)
            flush(r);
    }
    for (int k = 0; k < 3; k++)
        if (open[k])
            reel_recorder_flow_end(open[k], NULL, 0, 0, 0);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    user_data(home);
}

/* A session whose frames are made of several zstd blocks (the writer
 * ends one every eighth of the content): bodies of text and of bytes
 * that do not compress, so a damaged block can come after good ones, and
 * a flipped byte can decode to other bytes before zstd notices. */
static void make_big(const char *home) {
    reel_session_t *s = open_s(home, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    reel_recorder_t *r = recorder(s);
    char buf[3000];
    uint32_t x = 4242;
    for (int i = 0; i < 6; i++) {
        reel_rflow_t *fl = reel_recorder_flow_start(r, NULL);
        snprintf(buf, sizeof buf, "/big/%d", i);
        reel_request_head_t rq = {.method = "GET",
                                  .scheme = "https",
                                  .host = "big.example",
                                  .port = 443,
                                  .target = buf,
                                  .http_version = "HTTP/1.1"};
        reel_recorder_request_head(fl, &rq);
        reel_response_head_t rs = {.status = 200, .reason = "OK", .http_version = "HTTP/1.1"};
        reel_recorder_response_head(fl, &rs);
        for (int c = 0; c < 3; c++) {
            for (size_t k = 0; k < sizeof buf; k++) {
                x = x * 1103515245u + 12345u;
                buf[k] = (c + i) % 2 ? (char)(x >> 16) : (char)('a' + (k * 7 + (size_t)c) % 26);
            }
            reel_recorder_response_body(fl, buf, sizeof buf);
        }
        reel_recorder_flow_end(fl, NULL, 0, 0, 0);
        if (i % 2 == 1)
            flush(r);
    }
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_recorder_close(r, &err), REEL_OK);
    reel_session_close(s);
    user_data(home);
}

/* Offsets of the bytes of the zstd block headers of the frame at p[0..n)
 * (RFC 8878 3.1.1.2) into at[], at most max; returns how many. */
static size_t block_headers(const uint8_t *p, size_t n, uint64_t base, uint64_t *at, size_t max) {
    uint8_t fhd = p[4];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did_flag = fhd & 3;
    static const size_t did_size[4] = {0, 1, 2, 4}, fcs_size[4] = {0, 2, 4, 8};
    size_t pos = 4 + 1 + (single ? 0 : 1) + did_size[did_flag] +
                 (fcs_flag == 0 ? (single ? 1 : 0) : fcs_size[fcs_flag]);
    size_t k = 0;
    while (pos + 3 <= n && k + 3 <= max) {
        uint32_t h = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8 | (uint32_t)p[pos + 2] << 16;
        for (int b = 0; b < 3; b++)
            at[k++] = base + pos + (size_t)b;
        size_t size = h >> 3, type = (h >> 1) & 3;
        pos += 3 + (type == 1 ? 1 : size);
        if (h & 1)
            break;
    }
    return k;
}

/* ---- copies of a session ---- */

static void copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

static void copy_dir(const char *from, const char *to) {
    mkdir(to, 0700);
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "recovered") == 0)
            continue;
        char *a = reel_asprintf("%s/%s", from, e->d_name), *b = reel_asprintf("%s/%s", to,
                                                                              e->d_name);
        struct stat st;
        assert_int_equal(stat(a, &st), 0);
        if (S_ISDIR(st.st_mode))
            copy_dir(a, b);
        else
            copy_file(a, b);
        free(a);
        free(b);
    }
    closedir(d);
}

/* ---- what the pristine session holds ---- */

typedef struct {
    uint64_t off, clen;
} frame_t;

typedef struct {
    char *dir;               /* <home>/s of the pristine session */
    frame_t frames[64];
    size_t nframes;
    uint8_t *seg;            /* the pristine segment */
    size_t seg_len;
    long long nflows, ntags, nnotes, nmarks;
    reel_buf_t *recs; /* recs[id]: flow id's records, each packed anew */
} pristine_t;

/* Appends a record, packed anew (so bytes compare whatever frame held it). */
static int pack_cb(void *ctx, const Reel__Record *rec) {
    reel_buf_t *b = ctx;
    size_t n = reel__record__get_packed_size(rec);
    uint8_t *tmp = reel_malloc(n + 1);
    reel__record__pack(rec, tmp);
    assert_int_equal(reel_spool_block_append(b, tmp, n), REEL_OK);
    free(tmp);
    return 0;
}

/* The records of flow id as the spool of s gives them back. */
static void flow_records(reel_session_t *s, long long id, reel_buf_t *out) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_buf_reset(out);
    reel_rc rc = reel_store_read_flow(s, (uint64_t)id, pack_cb, out, &err);
    if (rc != REEL_OK && rc != REEL_NOTFOUND)
        fail_msg("reading flow %lld: %s", id, reel_err_str(&err));
}

static void load(pristine_t *p, const char *home) {
    memset(p, 0, sizeof *p);
    p->dir = reel_asprintf("%s/s", home);
    reel_session_t *s = open_s(home, 0);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT offset, clen FROM frames WHERE segment = 1 "
                                        "ORDER BY offset",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW && p->nframes < 64)
        p->frames[p->nframes++] = (frame_t){(uint64_t)sqlite3_column_int64(st, 0),
                                            (uint64_t)sqlite3_column_int64(st, 1)};
    sqlite3_finalize(st);
    p->nflows = q1(s, "SELECT count(*) FROM flows");
    p->ntags = q1(s, "SELECT count(*) FROM tags");
    p->nnotes = q1(s, "SELECT count(*) FROM annotations");
    p->nmarks = q1(s, "SELECT count(*) FROM marks");
    p->recs = reel_calloc((size_t)p->nflows + 1, sizeof *p->recs);
    for (long long id = 1; id <= p->nflows; id++) {
        reel_buf_init(&p->recs[id], 0);
        flow_records(s, id, &p->recs[id]);
        assert_true(p->recs[id].len > 0);
    }
    reel_session_close(s);
    assert_true(p->nframes >= 3);
    char *seg = reel_asprintf("%s/spool/00000001.zst", p->dir);
    int fd = open(seg, O_RDONLY);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    p->seg_len = (size_t)sb.st_size;
    p->seg = reel_malloc(p->seg_len);
    assert_int_equal(pread(fd, p->seg, p->seg_len, 0), (ssize_t)p->seg_len);
    close(fd);
    free(seg);
    /* Every frame ends at a frame: the segment is exactly its frames. */
    frame_t *l = &p->frames[p->nframes - 1];
    assert_int_equal(l->off + l->clen, p->seg_len);
}

static void unload(pristine_t *p) {
    for (long long id = 1; id <= p->nflows; id++)
        reel_buf_free(&p->recs[id]);
    free(p->recs);
    free(p->seg);
    free(p->dir);
}

/* The records of the frame at f, decoded by plain libzstd streaming from
 * the bytes `in` (the frame as it is now, n bytes of it): sets cut[id] for
 * every flow with a record not wholly in what it decodes, and starts[id]
 * for every flow whose start record is wholly there. */
static void judge_frame(const pristine_t *p, const frame_t *f, const uint8_t *in, size_t n,
                        uint8_t *cut, uint8_t *starts, size_t maxid) {
    reel_buf_t full;
    reel_buf_init(&full, 0);
    assert_int_equal(reel_spool_frame_decode(p->seg + f->off, f->clen, &full, NULL), REEL_OK);
    uint8_t *part = reel_malloc(full.len + 1);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer ib = {in, n, 0};
    ZSTD_outBuffer ob = {part, full.len, 0};
    while (ib.pos < ib.size) {
        size_t before = ib.pos, bo = ob.pos;
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r) || r == 0 || (ib.pos == before && ob.pos == bo))
            break;
    }
    ZSTD_freeDCtx(d);
    /* Bytes decoded that differ from the original are cut from there. */
    size_t good = 0;
    while (good < ob.pos && part[good] == full.data[good])
        good++;
    size_t pos = 0, rl = 0;
    const uint8_t *rec = NULL;
    while (reel_spool_block_next(full.data, full.len, &pos, &rec, &rl) == REEL_OK) {
        reel_spool_peek_t pk;
        assert_true(reel_spool_peek_record(rec, rl, &pk));
        assert_true(pk.flow_id <= maxid);
        if (pos > good)
            cut[pk.flow_id] = 1;
        else if (pk.event == 10)
            starts[pk.flow_id] = 1;
    }
    free(part);
    reel_buf_free(&full);
}

/* Checks a damaged copy after recovery or repair against the pristine
 * session; cut/starts as judge_frame left them. */
static void check(const pristine_t *p, reel_session_t *s, const uint8_t *cut,
                  const uint8_t *starts, const char *what) {
    long long ncut = 0;
    for (long long id = 1; id <= p->nflows; id++)
        ncut += cut[id];
    assert_int_equal(q1(s, "SELECT count(*) FROM tags"), p->ntags);
    assert_int_equal(q1(s, "SELECT count(*) FROM annotations"), p->nnotes);
    assert_int_equal(q1(s, "SELECT count(*) FROM marks"), p->nmarks);
    /* No tag or note points at a flow the index no longer lists. */
    assert_int_equal(q1(s, "SELECT count(*) FROM tags WHERE flow_id NOT IN (SELECT id FROM "
                           "flows)"),
                     0);
    long long lost = q1(s, "SELECT count(*) FROM flows f WHERE NOT EXISTS (SELECT 1 FROM "
                           "flow_frames ff WHERE ff.flow_id = f.id)");
    if (lost > ncut)
        fail_msg("%s: %lld flows lost, only %lld had records cut", what, lost, ncut);
    for (long long id = 1; id <= p->nflows; id++) {
        if (starts[id] || !cut[id]) {
            if (q1(s, "SELECT count(*) FROM flow_frames WHERE flow_id = %lld", id) == 0)
                fail_msg("%s: flow %lld lost, though its start record is whole", what, id);
            if (q1(s, "SELECT uuid != '' FROM flows WHERE id = %lld", id) != 1)
                fail_msg("%s: flow %lld lost its start record", what, id);
        }
        /* A flow that lost records and is not marked damaged must be one
         * cut off by the end (open: it has no end record, interrupted). */
        if (cut[id] && q1(s, "SELECT damaged = 0 AND state NOT IN ('interrupted', 'open') "
                             "FROM flows WHERE id = %lld",
                          id) == 1)
            fail_msg("%s: flow %lld lost records but is neither damaged nor interrupted", what,
                     id);
    }
    /* Nothing the damage changed is presented as good: every flow not
     * marked damaged reads back exactly as it was recorded (its first
     * records only, if it was cut off by the end: interrupted), and a flow
     * id the pristine session did not have (decoded from damaged bytes)
     * is marked damaged. */
    reel_buf_t now;
    reel_buf_init(&now, 0);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(reel_session_db(s),
                                        "SELECT id, state FROM flows WHERE damaged = 0", -1, &st,
                                        NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        int cutoff = strcmp((const char *)sqlite3_column_text(st, 1), "interrupted") == 0;
        if (id < 1 || id > p->nflows)
            fail_msg("%s: flow %lld, which was never recorded, is not marked damaged", what, id);
        flow_records(s, id, &now);
        const reel_buf_t *was = &p->recs[id];
        if (now.len > was->len || (!cutoff && now.len != was->len) ||
            memcmp(now.data, was->data, now.len) != 0)
            fail_msg("%s: flow %lld reads back other records than were recorded (%zu bytes, "
                     "were %zu), but is not marked damaged",
                     what, id, now.len, was->len);
    }
    sqlite3_finalize(st);
    reel_buf_free(&now);
}

/* How many of the frame at f's records a stream decode of `in` (the frame
 * as it is now, n bytes), fed a byte at a time, hands out unchanged before
 * the damage stops it: what salvage can keep at most, unverified. */
static size_t intact_records(const pristine_t *p, const frame_t *f, const uint8_t *in, size_t n) {
    reel_buf_t full;
    reel_buf_init(&full, 0);
    assert_int_equal(reel_spool_frame_decode(p->seg + f->off, f->clen, &full, NULL), REEL_OK);
    uint8_t *part = reel_malloc(full.len + 1);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_outBuffer ob = {part, full.len, 0};
    for (size_t k = 0; k < n; k++) {
        ZSTD_inBuffer ib = {in + k, 1, 0};
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r) || r == 0)
            break;
    }
    ZSTD_freeDCtx(d);
    size_t good = 0;
    while (good < ob.pos && part[good] == full.data[good])
        good++;
    size_t pos = 0, rl = 0, count = 0;
    const uint8_t *rec = NULL;
    while (reel_spool_block_next(full.data, full.len, &pos, &rec, &rl) == REEL_OK && pos <= good)
        count++;
    free(part);
    reel_buf_free(&full);
    return count;
}

/* Records in the frame at f of the pristine session. */
static size_t frame_records(const pristine_t *p, const frame_t *f) {
    reel_buf_t full;
    reel_buf_init(&full, 0);
    assert_int_equal(reel_spool_frame_decode(p->seg + f->off, f->clen, &full, NULL), REEL_OK);
    size_t pos = 0, rl = 0, count = 0;
    const uint8_t *rec = NULL;
    while (reel_spool_block_next(full.data, full.len, &pos, &rec, &rl) == REEL_OK)
        count++;
    reel_buf_free(&full);
    return count;
}

static void set_bytes(const char *seg, const uint8_t *data, size_t len) {
    int fd = open(seg, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Every byte position, or every third under the sanitizers (scripts/test
 * --sanitize sets REEL_SANITIZED): the plain build covers each position,
 * the sanitizer run looks for memory errors on the same paths, and the
 * whole CI run must fit in 15 minutes. */
static unsigned position_step(void) {
    const char *e = getenv("REEL_SANITIZED");
    return e && *e && strcmp(e, "0") != 0 ? 3 : 1;
}

/* Cuts the segment at every byte of the last 3 frames; recovery on open. */
static void tail_cuts(const char *home, const char *what) {
    pristine_t p;
    load(&p, home);
    char *work = reel_asprintf("%s/w", home);
    char *wdir = reel_asprintf("%s/s", work);
    char *seg = reel_asprintf("%s/spool/00000001.zst", wdir);
    mkdir(work, 0700);
    copy_dir(p.dir, wdir);
    size_t maxid = (size_t)p.nflows + 1;
    uint8_t *cut = reel_calloc(maxid + 1, 1), *starts = reel_calloc(maxid + 1, 1);
    unsigned runs = 0;
    long long damaged_total = 0;
    for (size_t fi = p.nframes - 3; fi < p.nframes; fi++) {
        const frame_t *f = &p.frames[fi];
        for (uint64_t at = f->off; at < f->off + f->clen; at += position_step()) {
            /* Back to the pristine session, then the cut. */
            reel_test_rm_rf(wdir);
            copy_dir(p.dir, wdir);
            set_bytes(seg, p.seg, (size_t)at);
            memset(cut, 0, maxid + 1);
            memset(starts, 0, maxid + 1);
            for (size_t k = fi + 1; k < p.nframes; k++)
                judge_frame(&p, &p.frames[k], p.seg, 0, cut, starts, maxid);
            judge_frame(&p, f, p.seg + f->off, (size_t)(at - f->off), cut, starts, maxid);
            for (size_t k = 0; k < fi; k++)
                judge_frame(&p, &p.frames[k], p.seg + p.frames[k].off, p.frames[k].clen, cut,
                            starts, maxid);
            reel_session_t *s = open_s(work, 0);
            char label[120];
            snprintf(label, sizeof label, "%s: cut at byte %llu (frame %zu)", what,
                     (unsigned long long)at, fi);
            check(&p, s, cut, starts, label);
            damaged_total += q1(s, "SELECT count(*) FROM flows WHERE damaged != 0");
            reel_session_close(s);
            runs++;
            if (runs % 8 != 1)
                continue;
            /* Opening again changes nothing (the mark is known damage). */
            s = open_s(work, 0);
            check(&p, s, cut, starts, label);
            char *rep = NULL;
            if (reel_session_verify(s, &rep, NULL) != REEL_OK)
                fail_msg("%s: verify after recovery:\n%s", label, rep);
            free(rep);
            reel_session_close(s);
        }
    }
    print_message("%s: %u tail cuts, %lld damaged flows in all\n", what, runs, damaged_total);
    assert_true(damaged_total > 0);
    free(cut);
    free(starts);
    free(seg);
    free(wdir);
    reel_test_rm_rf(work);
    free(work);
    unload(&p);
}

/* Flips a byte at every position of the middle frame (if `sparse`, at
 * every byte of its zstd block headers and every 151st other); repair. */
static void flips(const char *home, const char *what, int sparse) {
    pristine_t p;
    load(&p, home);
    char *work = reel_asprintf("%s/w", home);
    char *wdir = reel_asprintf("%s/s", work);
    char *seg = reel_asprintf("%s/spool/00000001.zst", wdir);
    mkdir(work, 0700);
    size_t maxid = (size_t)p.nflows + 1;
    uint8_t *cut = reel_calloc(maxid + 1, 1), *starts = reel_calloc(maxid + 1, 1);
    uint8_t *bytes = reel_malloc(p.seg_len);
    const frame_t *f = &p.frames[p.nframes / 2];
    unsigned runs = 0, salvaged = 0, tight = 0;
    uint64_t hdrs[256];
    size_t nh = sparse ? block_headers(p.seg + f->off, f->clen, f->off, hdrs, 256) : 0, hi = 0;
    if (sparse)
        assert_true(nh >= 3 * 4); /* several blocks */
    for (uint64_t at = f->off; at < f->off + f->clen; at += sparse ? 1 : position_step()) {
        if (sparse) {
            if (hi < nh && hdrs[hi] == at)
                hi++;
            else if ((at - f->off) % 151 != 0)
                continue;
        }
        reel_test_rm_rf(wdir);
        copy_dir(p.dir, wdir);
        memcpy(bytes, p.seg, p.seg_len);
        bytes[at] ^= 0x5a;
        set_bytes(seg, bytes, p.seg_len);
        memset(cut, 0, maxid + 1);
        memset(starts, 0, maxid + 1);
        for (size_t k = 0; k < p.nframes; k++)
            judge_frame(&p, &p.frames[k], bytes + p.frames[k].off, p.frames[k].clen, cut, starts,
                        maxid);
        reel_session_t *s = open_s(work, 0);
        char *rep = NULL;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_session_repair(s, &rep, &err) != REEL_OK)
            fail_msg("%s: repair after a flip at %llu: %s", what, (unsigned long long)at,
                     reel_err_str(&err));
        if (strstr(rep, "whole record"))
            salvaged++;
        char label[120];
        snprintf(label, sizeof label, "%s: byte %llu flipped", what, (unsigned long long)at);
        /* The most is kept: every record that decoded unchanged before the
         * damage (a decode fed a byte at a time says which), in the fresh
         * frame, or dropped from its end to leave room for the mark. */
        size_t intact = intact_records(&p, f, bytes + f->off, f->clen);
        const char *k = strstr(rep, "kept ");
        size_t kept = k ? strtoull(k + 5, NULL, 10) : frame_records(&p, f), dropped = 0;
        const char *m = strstr(rep, " more record");
        if (m) {
            while (m > rep && m[-1] >= '0' && m[-1] <= '9')
                m--;
            dropped = strtoull(m, NULL, 10);
        }
        if (kept + dropped < intact)
            fail_msg("%s: %zu records kept (%zu dropped for room), %zu decoded unchanged:\n%s",
                     label, kept, dropped, intact, rep);
        tight += dropped > 0;
        free(rep);
        check(&p, s, cut, starts, label);
        if (runs % 4 == 0 && reel_session_verify(s, &rep, NULL) != REEL_OK)
            fail_msg("%s: verify after repair:\n%s", label, rep);
        if (runs % 4 == 0)
            free(rep);
        reel_session_close(s);
        runs++;
    }
    print_message("%s: %u flipped bytes, %u salvaged frames, %u dropped records to make room "
                  "for the mark\n",
                  what, runs, salvaged, tight);
    assert_true(salvaged > 0);
    free(bytes);
    free(cut);
    free(starts);
    free(seg);
    free(wdir);
    reel_test_rm_rf(work);
    free(work);
    unload(&p);
}

static void test_import_tail_cuts(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("salvage");
    make_import(home);
    tail_cuts(home, "import");
    reel_test_rm_rf(home);
    free(home);
}

static void test_proxy_tail_cuts(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("salvage");
    make_proxy(home);
    tail_cuts(home, "proxy");
    reel_test_rm_rf(home);
    free(home);
}

static void test_import_flips(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("salvage");
    make_import(home);
    flips(home, "import", 0);
    reel_test_rm_rf(home);
    free(home);
}

static void test_proxy_flips(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("salvage");
    make_proxy(home);
    flips(home, "proxy", 0);
    reel_test_rm_rf(home);
    free(home);
}

static void test_big_flips(void **state) {
    (void)state;
    char *home = reel_test_tmpdir("salvage");
    make_big(home);
    flips(home, "big", 1);
    reel_test_rm_rf(home);
    free(home);
}

/* The salvage primitive: a frame written in pieces gives back its whole
 * records up to a cut, and nothing past them. */
static void test_salvage_prefix(void **state) {
    (void)state;
    reel_buf_t block, frame, out;
    reel_buf_init(&block, 0);
    reel_buf_init(&frame, 0);
    reel_buf_init(&out, 0);
    /* 1000 records of 100 bytes that do not compress: a frame of many
     * zstd blocks (one per REEL_SPOOL_FLUSH bytes of content) */
    const size_t total = 1000;
    uint32_t x = 12345;
    for (unsigned i = 1; i <= total; i++) {
        Reel__Record r = REEL__RECORD__INIT;
        Reel__BodyChunk b = REEL__BODY_CHUNK__INIT;
        uint8_t data[100];
        for (size_t k = 0; k < sizeof data; k++) {
            x = x * 1103515245u + 12345u;
            data[k] = (uint8_t)(x >> 16);
        }
        b.data.data = data;
        b.data.len = sizeof data;
        r.flow_id = i;
        r.event_case = REEL__RECORD__EVENT_RESPONSE_BODY;
        r.response_body = &b;
        uint8_t enc[256];
        size_t n = reel__record__pack(&r, enc);
        assert_int_equal(reel_spool_block_append(&block, enc, n), REEL_OK);
    }
    reel_spool_enc_t *e = reel_spool_enc_new(3);
    assert_int_equal(reel_spool_enc_frame(e, block.data, block.len, &frame, NULL), REEL_OK);
    reel_spool_enc_free(e);
    reel_spool_salvage_t si;
    /* Whole: everything, verified. */
    assert_int_equal(reel_spool_salvage(frame.data, frame.len, &out, &si), REEL_OK);
    assert_int_equal(si.records, total);
    assert_true(si.complete);
    /* Cut before the checksum: all but the last zstd block's records. */
    size_t prev = total;
    for (size_t cutb = frame.len - 4; cutb > frame.len / 2; cutb -= 97) {
        assert_int_equal(reel_spool_salvage(frame.data, cutb, &out, &si), REEL_OK);
        assert_false(si.complete);
        assert_true(si.records <= prev);
        prev = si.records;
        assert_int_equal(memcmp(out.data, block.data, out.len), 0);
        /* at most what was cut, a flush interval and a record lost, as content */
        assert_true(block.len - out.len <=
                    (frame.len - cutb) * 64 + reel_spool_flush_every(block.len) + 256);
    }
    if (prev < total / 4 || prev >= total)
        fail_msg("%zu records kept from the first half of a %zu-byte frame", prev, frame.len);
    /* Bytes flipped in the middle of these raw (incompressible) blocks
     * decode, and the checksum finds them: every record is kept, the
     * frame marked (none was: the frame was decoded in one call, which
     * hands out nothing when it fails). */
    reel_buf_t bad;
    reel_buf_init(&bad, 0);
    assert_int_equal(reel_buf_append(&bad, frame.data, frame.len), REEL_OK);
    for (size_t k = 0; k < 16; k++)
        bad.data[bad.len / 2 + k] ^= 0x5a;
    assert_int_equal(reel_spool_salvage(bad.data, bad.len, &out, &si), REEL_OK);
    assert_false(si.complete);
    assert_true(si.bad_checksum);
    assert_int_equal(si.records, total);
    /* A wrong checksum only: every record decodes, and is kept. */
    memcpy(bad.data, frame.data, frame.len);
    bad.data[bad.len - 1] ^= 0xff;
    assert_int_equal(reel_spool_salvage(bad.data, bad.len, &out, &si), REEL_OK);
    assert_true(si.bad_checksum);
    assert_false(si.complete);
    assert_int_equal(si.records, total);
    assert_int_equal(out.len, block.len);
    assert_int_equal(memcmp(out.data, block.data, out.len), 0);
    /* A record that does not unpack put before record 400 and another
     * before record 700, in a frame whose checksum holds: the 399 records
     * before the first are kept, and the 300 between the two apart
     * (`after`), as they were written; the rest not. */
    reel_buf_t blk2;
    reel_buf_init(&blk2, 0);
    static const uint8_t junk[] = {0x08}; /* field 1 without its varint */
    size_t pos = 0, rl = 0, k = 0, cut1 = 0, from2 = 0, cut2 = 0;
    const uint8_t *rec = NULL;
    while (reel_spool_block_next(block.data, block.len, &pos, &rec, &rl) == REEL_OK) {
        if (++k == 400 || k == 700) {
            if (k == 400)
                cut1 = blk2.len;
            else
                cut2 = blk2.len;
            assert_int_equal(reel_spool_block_append(&blk2, junk, sizeof junk), REEL_OK);
            if (k == 400)
                from2 = blk2.len;
        }
        assert_int_equal(reel_spool_block_append(&blk2, rec, rl), REEL_OK);
    }
    e = reel_spool_enc_new(3);
    assert_int_equal(reel_spool_enc_frame(e, blk2.data, blk2.len, &frame, NULL), REEL_OK);
    reel_spool_enc_free(e);
    assert_int_equal(reel_spool_salvage(frame.data, frame.len, &out, &si), REEL_OK);
    assert_false(si.complete);
    assert_false(si.bad_checksum);
    assert_false(si.bad_block);
    assert_true(si.checked);
    assert_int_equal(si.records, 399);
    assert_int_equal(si.after, 300);
    assert_int_equal(si.after_len, cut2 - from2);
    assert_int_equal(out.len, cut1 + si.after_len);
    assert_int_equal(memcmp(out.data, blk2.data, cut1), 0);
    assert_int_equal(memcmp(out.data + cut1, blk2.data + from2, si.after_len), 0);
    assert_int_equal(si.lost, blk2.len - out.len);
    reel_buf_free(&blk2);
    reel_buf_free(&bad);
    reel_buf_free(&block);
    reel_buf_free(&frame);
    reel_buf_free(&out);
}

int main(void) {
    /* Thousands of recoveries, each syncing what it rewrites: on tmpfs. */
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        setenv("REEL_TEST_TMP", "/dev/shm/reel-unit", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_salvage_prefix),  cmocka_unit_test(test_import_tail_cuts),
        cmocka_unit_test(test_proxy_tail_cuts), cmocka_unit_test(test_import_flips),
        cmocka_unit_test(test_proxy_flips),     cmocka_unit_test(test_big_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
