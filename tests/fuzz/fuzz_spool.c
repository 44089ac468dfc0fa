/* libFuzzer harness: the spool reader (src/session/spool.h) on arbitrary
 * segment files, and the indexer that turns their records into rows.
 *
 * Input: one mode byte, then
 *   mode bit 0 clear: the bytes of a segment file, as found on disk;
 *   mode bit 0 set:   a decompressed block, which the harness compresses
 *                     into a valid frame first (checksums are out of the
 *                     fuzzer's reach, so this is how arbitrary records get
 *                     past zstd); bit 1 appends a second copy cut short (a
 *                     torn tail), bit 2 puts garbage between the two.
 * Each input goes through the in-memory codec (frame_size, frame_decode,
 * block_next, Record unpacking, which reel_pbwire_check must agree with),
 * through reel_spool_scan / resync / read_frame on a file, and through
 * reel_indexer_add_frame + commit into an in-memory index. The two readers
 * must agree on where the valid frames end, and resync must land on a frame
 * that decodes (resync does not look at the records inside, so a scan from
 * there may still stop at once). */
#include <sqlite3.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/mem.h"
#include "flow.pb-c.h"
#include "fuzz_util.h"
#include "session/index.h"
#include "session/pbwire.h"
#include "session/spool.h"

static sqlite3 *db;
static reel_spool_enc_t *enc;
static int seg_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_tmpdir("spool");
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_index_open(":memory:", 1, &db, &err) != REEL_OK) {
        fprintf(stderr, "fuzz_spool: %s\n", reel_err_str(&err));
        abort();
    }
    enc = reel_spool_enc_new(1);
    seg_fd = memfd_create("segment", MFD_CLOEXEC);
    if (seg_fd < 0) {
        const char *p = fuzz_path("segment");
        fuzz_write_file(p, "", 0);
        seg_fd = open(p, O_RDWR | O_CLOEXEC);
        FUZZ_CHECK(seg_fd >= 0, "cannot open %s", p);
    }
    return 0;
}

/* What the in-memory walk found: where valid frames end, and where they are. */
typedef struct {
    size_t good_end, nframes;
    size_t off[64], clen[64];
} walk_t;

/* Is there a whole valid frame with only well-framed records at buf? */
static int frame_ok(const uint8_t *buf, size_t len, size_t *fl, reel_buf_t *raw) {
    if (reel_spool_frame_size(buf, len, fl) != REEL_OK)
        return 0;
    FUZZ_CHECK(*fl > 0 && *fl <= len && *fl <= REEL_SPOOL_FRAME_MAX, "frame_size %zu of %zu", *fl,
               len);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_spool_frame_decode(buf, *fl, raw, &err) != REEL_OK) {
        FUZZ_CHECK(err.msg[0] != '\0', "decode failed without a message");
        return 0;
    }
    FUZZ_CHECK(raw->len <= REEL_SPOOL_BLOCK_MAX, "block of %zu bytes", raw->len);
    size_t pos = 0, rl = 0;
    const uint8_t *r = NULL;
    reel_rc rc;
    while ((rc = reel_spool_block_next(raw->data, raw->len, &pos, &r, &rl)) == REEL_OK) {
        FUZZ_CHECK(r >= raw->data && r + rl <= raw->data + raw->len && pos <= raw->len,
                   "record outside its block");
        Reel__Record *rec = reel__record__unpack(NULL, rl, r);
        /* the spool pass reads records in place once this check passes */
        FUZZ_CHECK(reel_pbwire_check(&reel__record__descriptor, r, rl) == (rec != NULL),
                   "reel_pbwire_check disagrees with unpacking");
        reel__record__free_unpacked(rec, NULL);
    }
    return rc == REEL_NOTFOUND;
}

static void walk(const uint8_t *seg, size_t len, walk_t *w, reel_buf_t *raw) {
    memset(w, 0, sizeof *w);
    size_t pos = 0, fl = 0;
    while (pos < len && frame_ok(seg + pos, len - pos, &fl, raw)) {
        if (w->nframes < 64) {
            w->off[w->nframes] = pos;
            w->clen[w->nframes] = fl;
        }
        w->nframes++;
        pos += fl;
    }
    w->good_end = pos;
}

typedef struct {
    reel_indexer_t *ix;
    size_t frames;
} scan_ctx;

static int scan_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    scan_ctx *c = ctx;
    c->frames++;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_indexer_add_frame(c->ix, 1, off, clen, raw, rlen, &err);
    FUZZ_CHECK(rc == REEL_OK || rc == REEL_CORRUPT, "add_frame: %s", reel_err_str(&err));
    return 0;
}

/* The scan of recovery and repair: every record of a frame checked on the
 * decoding threads (reel_indexer_vet_frame), a frame that fails the check
 * ending the run as a damaged one, the others indexed in place unchecked. */
static int vetted_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    scan_ctx *c = ctx;
    c->frames++;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_indexer_add_own_frame(c->ix, 1, off, clen, raw, rlen, &err);
    FUZZ_CHECK(rc == REEL_OK, "add_own_frame of a vetted frame: %s", reel_err_str(&err));
    return 0;
}

static void build(const uint8_t *data, size_t size, reel_buf_t *seg) {
    uint8_t mode = data[0];
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    if (!(mode & 1)) {
        reel_buf_append(seg, body, n);
        return;
    }
    reel_buf_t frame;
    reel_buf_init(&frame, 0);
    reel_err_t err;
    reel_err_clear(&err);
    FUZZ_CHECK(reel_spool_enc_frame(enc, body, n, &frame, &err) == REEL_OK, "compress: %s",
               reel_err_str(&err));
    reel_buf_append(seg, frame.data, frame.len);
    if (mode & 4)
        reel_buf_append(seg, "\x28\xb5\x2f\xfd garbage", 12);
    if (mode & 2)
        reel_buf_append(seg, frame.data, frame.len - (frame.len > 1 ? 1 + mode / 8 % (frame.len - 1) : 0));
    reel_buf_free(&frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 2 * REEL_SPOOL_BLOCK_MAX)
        return 0;
    reel_buf_t seg, raw, comp, raw2;
    reel_buf_init(&seg, 0);
    reel_buf_init(&raw, 0);
    reel_buf_init(&comp, 0);
    reel_buf_init(&raw2, 0);
    build(data, size, &seg);

    walk_t w;
    walk(seg.data, seg.len, &w, &raw);

    FUZZ_CHECK(ftruncate(seg_fd, 0) == 0, "ftruncate");
    FUZZ_CHECK(pwrite(seg_fd, seg.data, seg.len, 0) == (ssize_t)seg.len, "pwrite");

    reel_err_t err;
    reel_err_clear(&err);
    scan_ctx c = {0};
    FUZZ_CHECK(reel_indexer_new(db, &c.ix, &err) == REEL_OK, "indexer: %s", reel_err_str(&err));
    FUZZ_CHECK(reel_indexer_begin(c.ix, &err) == REEL_OK, "begin: %s", reel_err_str(&err));
    reel_spool_scan_t sc;
    FUZZ_CHECK(reel_spool_scan(seg_fd, 0, scan_cb, &c, &sc, &err) == REEL_OK, "scan: %s",
               reel_err_str(&err));
    FUZZ_CHECK(sc.file_size == seg.len, "file_size");
    FUZZ_CHECK(sc.good_end == w.good_end && c.frames == w.nframes,
               "scan: %zu frames to %llu, in memory: %zu frames to %zu", c.frames,
               (unsigned long long)sc.good_end, w.nframes, w.good_end);
    FUZZ_CHECK((sc.reason[0] == '\0') == (w.good_end == seg.len), "reason '%s' at %llu of %zu",
               sc.reason, (unsigned long long)sc.bad_off, seg.len);
    FUZZ_CHECK(sc.bad_off == sc.good_end, "bad_off %llu, good_end %llu",
               (unsigned long long)sc.bad_off, (unsigned long long)sc.good_end);

    /* After a bad range: resync and scan on, as recovery does. */
    uint64_t pos = sc.bad_off;
    for (int rounds = 0; sc.reason[0] && rounds < 8; rounds++) {
        uint64_t next = 0;
        reel_rc rc = reel_spool_resync(seg_fd, pos + 1, &next, &err);
        if (rc == REEL_NOTFOUND)
            break;
        FUZZ_CHECK(rc == REEL_OK, "resync: %s", reel_err_str(&err));
        FUZZ_CHECK(next > pos && next < seg.len, "resync to %llu from %llu",
                   (unsigned long long)next, (unsigned long long)pos);
        size_t fl = 0;
        FUZZ_CHECK(reel_spool_frame_size(seg.data + next, seg.len - next, &fl) == REEL_OK &&
                       reel_spool_frame_decode(seg.data + next, fl, &raw, NULL) == REEL_OK,
                   "resync landed on %llu, which does not decode", (unsigned long long)next);
        FUZZ_CHECK(reel_spool_scan(seg_fd, next, scan_cb, &c, &sc, &err) == REEL_OK, "scan: %s",
                   reel_err_str(&err));
        pos = sc.bad_off;
    }
    if (reel_indexer_commit(c.ix, &err) != REEL_OK)
        FUZZ_CHECK(err.code == REEL_DB, "commit: %s", reel_err_str(&err));
    reel_indexer_free(c.ix);
    sqlite3_exec(db, "DELETE FROM flow_frames; DELETE FROM frames; DELETE FROM flows;", NULL, NULL,
                 NULL);

    /* The vetted scan stops where the plain one does, or at an earlier
     * frame with a record that does not unpack. */
    FUZZ_CHECK(reel_indexer_new(db, &c.ix, &err) == REEL_OK, "indexer: %s", reel_err_str(&err));
    FUZZ_CHECK(reel_indexer_begin(c.ix, &err) == REEL_OK, "begin: %s", reel_err_str(&err));
    c.frames = 0;
    FUZZ_CHECK(reel_spool_scan_ahead_vet(seg_fd, 0, vetted_cb, reel_indexer_vet_frame, &c, &sc,
                                         &err) == REEL_OK,
               "vetted scan: %s", reel_err_str(&err));
    FUZZ_CHECK(c.frames <= w.nframes && sc.good_end <= w.good_end && sc.bad_off == sc.good_end,
               "vetted scan: %zu frames to %llu, plain: %zu frames to %zu", c.frames,
               (unsigned long long)sc.good_end, w.nframes, w.good_end);
    FUZZ_CHECK(c.frames == w.nframes || sc.reason[0] != '\0',
               "vetted scan stopped without a reason");
    if (reel_indexer_commit(c.ix, &err) != REEL_OK)
        FUZZ_CHECK(err.code == REEL_DB, "commit: %s", reel_err_str(&err));
    reel_indexer_free(c.ix);
    sqlite3_exec(db, "DELETE FROM flow_frames; DELETE FROM frames; DELETE FROM flows;", NULL, NULL,
                 NULL);

    /* Random access by (offset, length), as reading a flow does. */
    for (size_t i = 0; i < w.nframes && i < 64; i++) {
        reel_err_clear(&err);
        FUZZ_CHECK(reel_spool_read_frame(seg_fd, w.off[i], w.clen[i], &comp, &raw2, &err) == REEL_OK,
                   "read_frame %zu: %s", i, reel_err_str(&err));
    }
    if (seg.len > 2) { /* and at a wrong place */
        reel_err_clear(&err);
        reel_rc rc = reel_spool_read_frame(seg_fd, data[0] % seg.len, seg.len / 2, &comp, &raw2, &err);
        FUZZ_CHECK(rc == REEL_OK || rc == REEL_CORRUPT, "read_frame: %s", reel_err_str(&err));
    }

    reel_buf_free(&seg);
    reel_buf_free(&raw);
    reel_buf_free(&comp);
    reel_buf_free(&raw2);
    return 0;
}
