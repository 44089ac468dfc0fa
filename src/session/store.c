#include "session/store.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "session/index.h"
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

/* One frame of a flow, as the index lists it. */
typedef struct {
    uint64_t flow_id;
    uint32_t seg;
    uint64_t off;
    size_t clen;
} plan_row_t;

/* Flows read one after the other in id order (a spool pass, an export)
 * take their frames from a plan: the flow_frames rows of a range of flows
 * read with one statement, instead of one statement per flow. The range
 * starts small and doubles while the flows in it get read (halves when
 * they do not), up to PLAN_SPAN_MAX flows and PLAN_ROWS_MAX rows (a flow
 * with more frames is looked up alone). */
#define PLAN_SPAN_MIN 16
#define PLAN_SPAN_MAX 1024
#define PLAN_ROWS_MAX 4096

struct reel_store_reader {
    reel_session_t *s; /* borrowed */
    sqlite3_stmt *frames;
    sqlite3_stmt *plan_st; /* the frames of flows [?, ?), LIMIT ? */
    plan_row_t *plan;      /* rows of the flows [plan_lo, plan_hi) */
    size_t nplan, capplan, plan_at;
    uint64_t plan_lo, plan_hi; /* plan_hi == plan_lo: no plan */
    uint64_t plan_span;        /* flows the next plan asks for */
    uint64_t plan_served;      /* flows the plan gave so far */
    size_t plan_rows_max;      /* PLAN_ROWS_MAX but in tests */
    uint64_t queries;          /* statements run to find frames */
    unsigned plan_version;     /* SQLITE_FCNTL_DATA_VERSION it was read at */
    uint64_t last_id;          /* the flow read last (0: none yet) */
    bool dropped;              /* the last flow's read met a segment retention dropped */
    reel_buf_t comp;           /* scratch: a compressed frame */
    int fd;                    /* -1: none */
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
    r->plan_span = PLAN_SPAN_MIN;
    r->plan_rows_max = PLAN_ROWS_MAX;
    reel_buf_init(&r->comp, 0);
    for (size_t i = 0; i < nframes; i++)
        reel_buf_init(&r->frame[i].raw, 0);
    if (sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT ff.segment, ff.offset, f.clen FROM flow_frames ff "
                           "JOIN frames f ON f.segment = ff.segment AND f.offset = ff.offset "
                           "WHERE ff.flow_id = ? ORDER BY ff.segment, ff.offset",
                           -1, &r->frames, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT ff.flow_id, ff.segment, ff.offset, f.clen FROM flow_frames ff "
                           "JOIN frames f ON f.segment = ff.segment AND f.offset = ff.offset "
                           "WHERE ff.flow_id >= ? AND ff.flow_id < ? "
                           "ORDER BY ff.flow_id, ff.segment, ff.offset LIMIT ?",
                           -1, &r->plan_st, NULL) != SQLITE_OK) {
        reel_rc rc = reel_index_db_error(err, REEL_DB, reel_session_db(s));
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

uint64_t reel_store_reader_queries(const reel_store_reader_t *r) {
    return r->queries;
}

bool reel_store_reader_dropped(const reel_store_reader_t *r) {
    return r->dropped;
}

void reel_store_reader_set_plan_rows(reel_store_reader_t *r, size_t rows) {
    r->plan_rows_max = rows > 0 ? rows : 1;
}

void reel_store_reader_free(reel_store_reader_t *r) {
    if (r == NULL)
        return;
    sqlite3_finalize(r->frames);
    sqlite3_finalize(r->plan_st);
    free(r->plan);
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
        /* The index this reads (one transaction) may be older than the
         * spool directory: a segment gone since is not always damage. */
        if (r->fd < 0 && errno == ENOENT) {
            switch (reel_session_segment_gone(r->s, seg)) {
            case REEL_SEGMENT_DROPPED:
                r->dropped = true;
                return reel_err_set(err, REEL_NOTFOUND,
                                    "flow %llu was dropped by retention while this read it (its "
                                    "records in spool segment %08u.zst are gone)",
                                    (unsigned long long)id, seg);
            case REEL_SEGMENT_REMOVED:
                return reel_err_set(err, REEL_IO,
                                    "session '%s' was removed ('reel rm') while this read it",
                                    reel_session_name(r->s));
            case REEL_SEGMENT_MISSING:
                break;
            }
            return reel_err_set(err, REEL_CORRUPT,
                                "flow %llu has records in spool segment %08u.zst, which is "
                                "missing ('reel verify %s' lists what is lost)",
                                (unsigned long long)id, seg, reel_session_name(r->s));
        }
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

/* Hands cb the records of flow id in the frame at (seg, off); *stop when cb
 * asked to stop. The errors of reel_store_reader_flow_raw. */
static reel_rc visit_frame(reel_store_reader_t *r, uint64_t id, uint32_t seg, uint64_t off,
                           size_t clen, reel_record_raw_cb cb, void *ctx, bool *stop,
                           reel_err_t *err) {
    reader_frame_t *fr = NULL;
    reel_rc rc = reader_frame(r, id, seg, off, clen, &fr, err);
    if (rc != REEL_OK)
        return rc;
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
    for (; k < fr->nrecs && !*stop; k++) {
        const uint8_t *p = fr->raw.data + fr->recs[k].pos;
        size_t len = fr->recs[k].len;
        if (fr->recs[k].flow_id == UINT64_MAX) {
            /* the peek failed: unpacking tells whether the record is
             * damaged, and whose it is */
            Reel__Record *rec = reel__record__unpack(NULL, len, p);
            bool mine = rec != NULL && rec->flow_id == id;
            reel__record__free_unpacked(rec, NULL);
            if (rec == NULL)
                goto undecodable;
            if (!mine)
                continue;
        } else if (fr->recs[k].flow_id != id) {
            if (fr->sorted)
                break; /* past id's records */
            continue;
        }
        int v = cb(ctx, p, len);
        if (v < 0)
            goto undecodable;
        *stop = v != 0;
    }
    return REEL_OK;
undecodable:
    return reel_err_set(err, REEL_CORRUPT,
                        "segment %08u.zst: frame at offset %llu: undecodable record", seg,
                        (unsigned long long)off);
}

/* 1 if a plan may be used now, with the database's data version in
 * *version: within a read transaction (a caller's statement running), all
 * statements see one snapshot, which a plan read in it holds. Outside one,
 * in a write transaction, or once the data version moved (a commit of
 * another connection seen since, or of this one), a statement is asked. */
static bool plan_current(reel_store_reader_t *r, unsigned *version) {
    sqlite3 *db = reel_session_db(r->s);
    *version = 0;
    return sqlite3_txn_state(db, "main") == SQLITE_TXN_READ &&
           sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, version) == SQLITE_OK;
}

/* The rows of flow id in the plan, [*a, *b), or false if the plan does not
 * cover id (none, another range, or no longer current: then dropped). */
static bool plan_find(reel_store_reader_t *r, uint64_t id, size_t *a, size_t *b) {
    if (id < r->plan_lo || id >= r->plan_hi)
        return false;
    unsigned v;
    if (!plan_current(r, &v) || v != r->plan_version) {
        r->plan_hi = r->plan_lo;
        return false;
    }
    size_t lo = 0, hi = r->nplan;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->plan[mid].flow_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *a = lo;
    while (lo < r->nplan && r->plan[lo].flow_id == id)
        lo++;
    *b = lo;
    r->plan_served++;
    return true;
}

/* Reads the plan of the flows from id on (a plan that covers nothing when
 * flow id alone has PLAN_ROWS_MAX frames or more). REEL_DB on failure. */
static reel_rc plan_fill(reel_store_reader_t *r, uint64_t id, reel_err_t *err) {
    if (r->plan_hi > r->plan_lo) { /* the last plan: were its flows read? */
        if (r->plan_served * 2 >= r->plan_span)
            r->plan_span = r->plan_span * 2 > PLAN_SPAN_MAX ? PLAN_SPAN_MAX : r->plan_span * 2;
        else
            r->plan_span = r->plan_span / 2 < PLAN_SPAN_MIN ? PLAN_SPAN_MIN : r->plan_span / 2;
    }
    r->plan_lo = r->plan_hi = id;
    r->nplan = 0;
    r->plan_served = 0;
    uint64_t hi = id < (uint64_t)INT64_MAX - r->plan_span ? id + r->plan_span : (uint64_t)INT64_MAX;
    sqlite3_stmt *st = r->plan_st;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)hi);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->plan_rows_max);
    r->queries++;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (r->nplan == r->capplan) {
            r->capplan = r->capplan ? r->capplan * 2 : 256;
            r->plan = reel_realloc(r->plan, r->capplan * sizeof *r->plan);
        }
        r->plan[r->nplan++] = (plan_row_t){.flow_id = (uint64_t)sqlite3_column_int64(st, 0),
                                           .seg = (uint32_t)sqlite3_column_int64(st, 1),
                                           .off = (uint64_t)sqlite3_column_int64(st, 2),
                                           .clen = (size_t)sqlite3_column_int64(st, 3)};
    }
    reel_rc rc = REEL_OK;
    if (step != SQLITE_DONE) {
        r->nplan = 0;
        rc = reel_index_db_error(err, REEL_DB, reel_session_db(r->s));
    } else if (r->nplan == r->plan_rows_max) {
        /* cut at the row limit: the last flow's rows may go on */
        hi = r->plan[r->nplan - 1].flow_id;
        while (r->nplan > 0 && r->plan[r->nplan - 1].flow_id == hi)
            r->nplan--;
    }
    sqlite3_reset(st);
    if (rc == REEL_OK && plan_current(r, &r->plan_version))
        r->plan_hi = hi;
    return rc;
}

reel_rc reel_store_reader_flow_raw(reel_store_reader_t *r, uint64_t id, reel_record_raw_cb cb,
                                   void *ctx, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    bool stop = false;
    size_t a = 0, b = 0;
    /* the next flow or the one after: a pass in id order */
    bool next = r->last_id != 0 && id > r->last_id && id - r->last_id <= 2;
    unsigned v;
    r->last_id = id;
    r->dropped = false;
    bool planned = plan_find(r, id, &a, &b);
    if (!planned && next && plan_current(r, &v)) {
        if ((rc = plan_fill(r, id, err)) != REEL_OK)
            return rc;
        planned = plan_find(r, id, &a, &b);
    }
    if (planned) {
        if (a == b)
            return reel_err_set(err, REEL_NOTFOUND, "no flow %llu in session '%s'",
                                (unsigned long long)id, reel_session_name(r->s));
        for (size_t i = a; i < b && !stop; i++) {
            /* copied: a failed frame read leaves the plan as it is, but be
             * safe against any later change to that */
            plan_row_t row = r->plan[i];
            if ((rc = visit_frame(r, id, row.seg, row.off, row.clen, cb, ctx, &stop, err)) !=
                REEL_OK)
                return rc;
        }
        return REEL_OK;
    }
    sqlite3_stmt *st = r->frames;
    bool any = false;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    r->queries++;
    int step = SQLITE_DONE;
    while (!stop && (step = sqlite3_step(st)) == SQLITE_ROW) {
        any = true;
        uint32_t seg = (uint32_t)sqlite3_column_int64(st, 0);
        uint64_t off = (uint64_t)sqlite3_column_int64(st, 1);
        size_t clen = (size_t)sqlite3_column_int64(st, 2);
        if ((rc = visit_frame(r, id, seg, off, clen, cb, ctx, &stop, err)) != REEL_OK)
            goto out;
    }
    if (!stop && step != SQLITE_DONE) {
        rc = reel_index_db_error(err, REEL_DB, reel_session_db(r->s));
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

/* reel_store_reader_flow through the raw records: each unpacked for cb. */
typedef struct {
    uint64_t id;
    reel_record_cb cb;
    void *ctx;
} unpack_ctx_t;

static int unpack_cb(void *ctx, const uint8_t *p, size_t len) {
    unpack_ctx_t *u = ctx;
    Reel__Record *rec = reel__record__unpack(NULL, len, p);
    if (rec == NULL)
        return -1;
    int stop = rec->flow_id == u->id && u->cb(u->ctx, rec) != 0;
    reel__record__free_unpacked(rec, NULL);
    return stop;
}

reel_rc reel_store_reader_flow(reel_store_reader_t *r, uint64_t id, reel_record_cb cb, void *ctx,
                               reel_err_t *err) {
    unpack_ctx_t u = {.id = id, .cb = cb, .ctx = ctx};
    return reel_store_reader_flow_raw(r, id, unpack_cb, &u, err);
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
        rc = reel_index_db_error(err, REEL_DB, db);
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
        rc = reel_index_db_error(err, REEL_DB, db);
out:
    sqlite3_finalize(st);
    return rc;
}
