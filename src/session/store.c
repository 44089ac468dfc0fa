#include "session/store.h"

#include <errno.h>
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

reel_rc reel_store_read_flow(reel_session_t *s, uint64_t id, reel_record_cb cb, void *ctx,
                             reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3_stmt *st = NULL;
    reel_buf_t comp, raw;
    reel_buf_init(&comp, 0);
    reel_buf_init(&raw, 0);
    int fd = -1;
    uint32_t fd_seg = 0;
    int any = 0, stop = 0;
    if (sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT ff.segment, ff.offset, f.clen FROM flow_frames ff "
                           "JOIN frames f ON f.segment = ff.segment AND f.offset = ff.offset "
                           "WHERE ff.flow_id = ? ORDER BY ff.segment, ff.offset",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = reel_err_set(err, REEL_DB, "session.db: %s", sqlite3_errmsg(reel_session_db(s)));
        goto out;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int step;
    while (!stop && (step = sqlite3_step(st)) == SQLITE_ROW) {
        any = 1;
        uint32_t seg = (uint32_t)sqlite3_column_int64(st, 0);
        uint64_t off = (uint64_t)sqlite3_column_int64(st, 1);
        size_t clen = (size_t)sqlite3_column_int64(st, 2);
        if (fd < 0 || fd_seg != seg) {
            if (fd >= 0)
                close(fd);
            fd = reel_session_open_segment(s, seg);
            fd_seg = seg;
            if (fd < 0 && errno == ENOENT) {
                rc = reel_err_set(err, REEL_CORRUPT,
                                  "flow %llu has records in spool segment %08u.zst, which is "
                                  "missing ('reel verify %s' lists what is lost)",
                                  (unsigned long long)id, seg, reel_session_name(s));
                goto out;
            }
            if (fd < 0) {
                rc = reel_err_errno(err, REEL_IO, errno, "opening spool segment %08u.zst", seg);
                goto out;
            }
        }
        reel_err_t e2;
        reel_err_clear(&e2);
        if ((rc = reel_spool_read_frame(fd, off, clen, &comp, &raw, &e2)) != REEL_OK) {
            reel_err_set(err, rc, "segment %08u.zst: %s (run 'reel verify')", seg,
                         reel_err_str(&e2));
            goto out;
        }
        size_t pos = 0, len = 0;
        const uint8_t *p = NULL;
        while (!stop && reel_spool_block_next(raw.data, raw.len, &pos, &p, &len) == REEL_OK) {
            /* Cheap pre-check: field 1 (flow_id) comes first in a packed
             * Record; skip records of other flows without unpacking. */
            reel_spool_peek_t pk;
            if (reel_spool_peek_record(p, len, &pk) && pk.flow_id != id)
                continue;
            Reel__Record *r = reel__record__unpack(NULL, len, p);
            if (r == NULL) {
                rc = reel_err_set(err, REEL_CORRUPT,
                                  "segment %08u.zst: frame at offset %llu: undecodable record", seg,
                                  (unsigned long long)off);
                goto out;
            }
            if (r->flow_id == id)
                stop = cb(ctx, r) != 0;
            reel__record__free_unpacked(r, NULL);
        }
    }
    if (!any)
        rc = reel_err_set(err, REEL_NOTFOUND, "no flow %llu in session '%s'",
                          (unsigned long long)id, reel_session_name(s));
out:
    if (fd >= 0)
        close(fd);
    sqlite3_finalize(st);
    reel_buf_free(&comp);
    reel_buf_free(&raw);
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
