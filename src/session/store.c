#include "session/store.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "session/spool.h"

const char *reel_store_opcode_name(uint32_t op) {
    switch (op) {
    case 0:
        return "tcp";
    case 1:
        return "text";
    case 2:
        return "binary";
    case 8:
        return "close";
    case 9:
        return "ping";
    case 10:
        return "pong";
    default:
        return NULL;
    }
}

/* One decompressed frame a reader keeps, and the index of its records. */
typedef struct {
    uint32_t seg;
    uint64_t off;
    uint64_t used; /* the reader's tick when last used; 0: the slot is empty */
    reel_buf_t raw;
    /* the records of raw: flow id (UINT64_MAX: unknown, unpack to see),
     * start and length; framing stops at the first bad record. Sorted by
     * flow id, then position, once the frame is used again with every id
     * known (a frame holds thousands of records of hundreds of small
     * flows): a flow's records are then found by binary search, still in
     * spool order. A frame used once is scanned, not sorted. */
    struct reader_rec {
        uint64_t flow_id;
        size_t pos, len;
    } * recs;
    size_t nrecs, caprecs;
    bool known, sorted;
} reader_frame_t;

struct reel_store_reader {
    reel_session_t *s; /* borrowed */
    sqlite3_stmt *frames;
    reel_buf_t comp; /* scratch: a compressed frame */
    int fd;          /* -1: none */
    uint32_t fd_seg;
    uint64_t tick;
    uint64_t frames_read; /* frames decompressed */
    size_t nframes;
    reader_frame_t frame[REEL_STORE_READER_FRAMES];
};

static reel_rc reader_new(reel_session_t *s, size_t nframes, reel_store_reader_t **out,
                          reel_err_t *err) {
    *out = NULL;
    reel_store_reader_t *r = reel_calloc(1, sizeof *r);
    r->s = s;
    r->fd = -1;
    r->nframes = nframes;
    reel_buf_init(&r->comp, 0);
    for (size_t i = 0; i < nframes; i++)
        reel_buf_init(&r->frame[i].raw, 0);
    if (sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT ff.segment, ff.offset, f.clen FROM flow_frames ff "
                           "JOIN frames f ON f.segment = ff.segment AND f.offset = ff.offset "
                           "WHERE ff.flow_id = ? ORDER BY ff.segment, ff.offset",
                           -1, &r->frames, NULL) != SQLITE_OK) {
        reel_rc rc =
            reel_err_set(err, REEL_DB, "session.db: %s", sqlite3_errmsg(reel_session_db(s)));
        reel_store_reader_free(r);
        return rc;
    }
    *out = r;
    return REEL_OK;
}

reel_rc reel_store_reader_open(reel_session_t *s, reel_store_reader_t **out, reel_err_t *err) {
    return reader_new(s, REEL_STORE_READER_FRAMES, out, err);
}

reel_session_t *reel_store_reader_session(const reel_store_reader_t *r) {
    return r->s;
}

uint64_t reel_store_reader_frames_read(const reel_store_reader_t *r) {
    return r->frames_read;
}

void reel_store_reader_free(reel_store_reader_t *r) {
    if (r == NULL)
        return;
    sqlite3_finalize(r->frames);
    if (r->fd >= 0)
        close(r->fd);
    reel_buf_free(&r->comp);
    for (size_t i = 0; i < r->nframes; i++) {
        reel_buf_free(&r->frame[i].raw);
        free(r->frame[i].recs);
    }
    free(r);
}

static int rec_cmp(const void *a, const void *b) {
    const struct reader_rec *x = a, *y = b;
    if (x->flow_id != y->flow_id)
        return x->flow_id < y->flow_id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The kept frame at (seg, off), decompressed and indexed into the least
 * recently used slot if it is not kept yet, in *out. The errors of
 * reel_store_read_flow for flow id; a frame that fails is not kept. */
static reel_rc reader_frame(reel_store_reader_t *r, uint64_t id, uint32_t seg, uint64_t off,
                            size_t clen, reader_frame_t **out, reel_err_t *err) {
    reader_frame_t *fr = NULL;
    for (size_t i = 0; i < r->nframes; i++) {
        reader_frame_t *c = &r->frame[i];
        if (c->used && c->seg == seg && c->off == off) {
            c->used = ++r->tick;
            if (c->known && !c->sorted) {
                qsort(c->recs, c->nrecs, sizeof *c->recs, rec_cmp);
                c->sorted = true;
            }
            *out = c;
            return REEL_OK;
        }
        if (fr == NULL || c->used < fr->used)
            fr = c;
    }
    fr->used = 0;
    if (r->fd < 0 || r->fd_seg != seg) {
        if (r->fd >= 0)
            close(r->fd);
        r->fd = reel_session_open_segment(r->s, seg);
        r->fd_seg = seg;
        if (r->fd < 0 && errno == ENOENT)
            return reel_err_set(err, REEL_CORRUPT,
                                "flow %llu has records in spool segment %08u.zst, which is "
                                "missing ('reel verify %s' lists what is lost)",
                                (unsigned long long)id, seg, reel_session_name(r->s));
        if (r->fd < 0)
            return reel_err_errno(err, REEL_IO, errno, "opening spool segment %08u.zst", seg);
    }
    reel_err_t e2;
    reel_err_clear(&e2);
    r->frames_read++;
    reel_rc rc = reel_spool_read_frame(r->fd, off, clen, &r->comp, &fr->raw, &e2);
    if (rc != REEL_OK)
        return reel_err_set(err, rc, "segment %08u.zst: %s (run 'reel verify')", seg,
                            reel_err_str(&e2));
    fr->nrecs = 0;
    fr->known = true;
    fr->sorted = false;
    size_t pos = 0, len = 0;
    const uint8_t *p = NULL;
    while (reel_spool_block_next(fr->raw.data, fr->raw.len, &pos, &p, &len) == REEL_OK) {
        /* field 1 (flow_id) comes first in a packed Record: records of
         * other flows are skipped without unpacking them */
        reel_spool_peek_t pk;
        if (fr->nrecs == fr->caprecs) {
            fr->caprecs = fr->caprecs ? fr->caprecs * 2 : 256;
            fr->recs = reel_realloc(fr->recs, fr->caprecs * sizeof *fr->recs);
        }
        fr->recs[fr->nrecs++] = (struct reader_rec){
            .flow_id = reel_spool_peek_record(p, len, &pk) ? pk.flow_id : UINT64_MAX,
            .pos = (size_t)(p - fr->raw.data),
            .len = len};
        fr->known &= fr->recs[fr->nrecs - 1].flow_id != UINT64_MAX;
    }
    fr->seg = seg;
    fr->off = off;
    fr->used = ++r->tick;
    *out = fr;
    return REEL_OK;
}

reel_rc reel_store_reader_flow(reel_store_reader_t *r, uint64_t id, reel_record_cb cb, void *ctx,
                               reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3_stmt *st = r->frames;
    bool any = false, stop = false;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int step = SQLITE_DONE;
    while (!stop && (step = sqlite3_step(st)) == SQLITE_ROW) {
        any = true;
        uint32_t seg = (uint32_t)sqlite3_column_int64(st, 0);
        uint64_t off = (uint64_t)sqlite3_column_int64(st, 1);
        size_t clen = (size_t)sqlite3_column_int64(st, 2);
        reader_frame_t *fr = NULL;
        if ((rc = reader_frame(r, id, seg, off, clen, &fr, err)) != REEL_OK)
            goto out;
        size_t k = 0;
        if (fr->sorted) { /* the first record of id */
            size_t hi = fr->nrecs;
            while (k < hi) {
                size_t mid = k + (hi - k) / 2;
                if (fr->recs[mid].flow_id < id)
                    k = mid + 1;
                else
                    hi = mid;
            }
        }
        for (; k < fr->nrecs && !stop; k++) {
            if (fr->recs[k].flow_id != id && fr->recs[k].flow_id != UINT64_MAX) {
                if (fr->sorted)
                    break; /* past id's records */
                continue;
            }
            Reel__Record *rec =
                reel__record__unpack(NULL, fr->recs[k].len, fr->raw.data + fr->recs[k].pos);
            if (rec == NULL) {
                rc = reel_err_set(err, REEL_CORRUPT,
                                  "segment %08u.zst: frame at offset %llu: undecodable record", seg,
                                  (unsigned long long)off);
                goto out;
            }
            if (rec->flow_id == id)
                stop = cb(ctx, rec) != 0;
            reel__record__free_unpacked(rec, NULL);
        }
    }
    if (!stop && step != SQLITE_DONE) {
        rc = reel_err_set(err, REEL_DB, "session.db: %s", sqlite3_errmsg(reel_session_db(r->s)));
        goto out;
    }
    if (!any)
        rc = reel_err_set(err, REEL_NOTFOUND, "no flow %llu in session '%s'",
                          (unsigned long long)id, reel_session_name(r->s));
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

reel_rc reel_store_read_flow(reel_session_t *s, uint64_t id, reel_record_cb cb, void *ctx,
                             reel_err_t *err) {
    /* one frame: memory as low as a flow read alone needs */
    reel_store_reader_t *r = NULL;
    reel_rc rc = reader_new(s, 1, &r, err);
    if (rc == REEL_OK)
        rc = reel_store_reader_flow(r, id, cb, ctx, err);
    reel_store_reader_free(r);
    return rc;
}

const char *reel_store_damage_direction(int direction) {
    static const char *const names[3] = {"request", "response", "flow"};
    return direction >= 0 && direction < 3 ? names[direction] : "flow";
}

reel_rc reel_store_flow_damage(reel_session_t *s, uint64_t id, reel_store_damage_t **out, size_t *n,
                               reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT direction, offset, length, reason FROM flow_damage WHERE "
                           "flow_id = ? ORDER BY rowid",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = reel_err_set(err, REEL_DB, "session.db: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap)
            *out = reel_realloc(*out, (cap = cap ? cap * 2 : 4) * sizeof **out);
        reel_store_damage_t *d = &(*out)[(*n)++];
        const char *dir = (const char *)sqlite3_column_text(st, 0);
        d->direction = dir && strcmp(dir, "request") == 0    ? 0
                       : dir && strcmp(dir, "response") == 0 ? 1
                                                             : 2;
        d->offset = sqlite3_column_int64(st, 1);
        d->length = sqlite3_column_int64(st, 2);
        const char *why = (const char *)sqlite3_column_text(st, 3);
        snprintf(d->reason, sizeof d->reason, "%s", why ? why : "");
    }
    if (step != SQLITE_DONE)
        rc = reel_err_set(err, REEL_DB, "session.db: %s", sqlite3_errmsg(db));
out:
    sqlite3_finalize(st);
    return rc;
}
