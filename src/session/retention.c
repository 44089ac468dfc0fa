/* Retention and compaction. See retention.h for the contract and
 * docs/format.md ("Retention") for what ends up on disk.
 *
 * Dropping a segment is two steps, both safe to repeat: a transaction that
 * records it in `retention` (from then on it is gone on purpose), then its
 * index rows in batches of DROP_BATCH flows, then the file. A crash in
 * between leaves a listed segment with rows or a file, which
 * reel_retention_finish (run by recovery) deletes. */
#include "session/retention.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "session/index.h"
#include "session/journal.h"
#include "session/spool.h"

/* Flows whose index rows one transaction deletes. */
#define DROP_BATCH 512

typedef struct {
    uint32_t n;
    uint64_t size;
    int64_t mtime_us;
} seginfo;

static int seg_cmp(const void *a, const void *b) {
    uint32_t x = ((const seginfo *)a)->n, y = ((const seginfo *)b)->n;
    return x < y ? -1 : x > y;
}

/* Segment files in dir, sorted by number. Owned. */
static seginfo *list_segs(const char *dir, size_t *count) {
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    size_t cap = 16;
    seginfo *v = reel_malloc(cap * sizeof *v);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t n;
        if (!reel_spool_segment_parse(e->d_name, &n))
            continue;
        char *p = reel_asprintf("%s/%s", dir, e->d_name);
        struct stat st;
        int ok = stat(p, &st) == 0;
        free(p);
        if (!ok)
            continue;
        if (*count == cap)
            v = reel_realloc(v, (cap *= 2) * sizeof *v);
        v[*count].n = n;
        v[*count].size = (uint64_t)st.st_size;
        v[*count].mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
        (*count)++;
    }
    closedir(d);
    qsort(v, *count, sizeof *v, seg_cmp);
    return v;
}

static void sync_dir(const char *dir);

static char *seg_path(const char *dir, uint32_t n) {
    char name[16];
    reel_spool_segment_name(n, name);
    return reel_asprintf("%s/%s", dir, name);
}

static reel_rc db_fail(sqlite3 *db, reel_err_t *err, const char *what) {
    /* A commit the journal refused reads as "constraint failed" in SQLite. */
    reel_rc rc = reel_err_set(err, REEL_DB, "retention: %s: %s", what, reel_journal_errmsg(db));
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* One statement with ?1 = n, run to completion. */
static int exec_n(sqlite3 *db, const char *sql, sqlite3_int64 n) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, n);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE;
}

static sqlite3_int64 query_n(sqlite3 *db, const char *sql, sqlite3_int64 n) {
    sqlite3_stmt *st = NULL;
    sqlite3_int64 v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, n);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

/* For tests of the readers that run beside a drop (verify, export): with
 * REEL_TEST_RETENTION_HOLD=PATH, a drop waits at `stage` ("rows": some
 * flows' rows gone, its frames not; "file": every row gone, the file not)
 * while PATH holds that word, for at most 60 s, and meanwhile PATH.held
 * says "SEGMENT STAGE". */
static int hold_says(const char *path, const char *stage) {
    char buf[16] = "";
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return strcmp(buf, stage) == 0;
}

static void test_hold(uint32_t n, const char *stage) {
    const char *path = getenv("REEL_TEST_RETENTION_HOLD");
    if (path == NULL || path[0] == '\0' || !hold_says(path, stage))
        return;
    char *held = reel_asprintf("%s.held", path);
    FILE *f = fopen(held, "w");
    if (f) {
        fprintf(f, "%u %s\n", n, stage);
        fclose(f);
    }
    for (int i = 0; i < 6000 && hold_says(path, stage); i++)
        usleep(10000);
    unlink(held);
    free(held);
}

static void lock_take(const reel_retention_lock_t *lk) {
    if (lk)
        lk->take(lk->ctx);
}

static void lock_give(const reel_retention_lock_t *lk) {
    if (lk)
        lk->give(lk->ctx);
}

/* One transaction of purge: the index rows of up to DROP_BATCH of segment
 * n's flows, or, once none is left (*more = 0), its frames and damage. */
static reel_rc purge_batch(sqlite3 *db, uint32_t n, int *more, reel_err_t *err) {
    *more = 0;
    if (reel_index_exec(db, "BEGIN IMMEDIATE; DELETE FROM temp.ret_batch", err) != REEL_OK)
        return db_fail(db, err, "begin");
    if (!exec_n(db,
                "INSERT INTO temp.ret_batch SELECT DISTINCT flow_id FROM flow_frames WHERE "
                "segment = ?1 LIMIT 512",
                n))
        return db_fail(db, err, "listing flows");
    *more = sqlite3_changes(db) > 0;
    int ok = 1;
    if (*more)
        ok = exec_n(db,
                    "INSERT OR IGNORE INTO retired_flows SELECT id FROM temp.ret_batch b "
                    "WHERE EXISTS (SELECT 1 FROM flow_frames ff WHERE ff.flow_id = b.id AND "
                    "ff.segment != ?1)",
                    n) &&
             exec_n(db, "DELETE FROM flow_frames WHERE flow_id IN (SELECT id FROM temp.ret_batch)",
                    n) &&
             exec_n(db,
                    "DELETE FROM flow_damage WHERE flow_id IN (SELECT id FROM "
                    "temp.ret_batch)",
                    n) &&
             exec_n(db, "DELETE FROM flows WHERE id IN (SELECT id FROM temp.ret_batch) ", n);
    else
        ok = exec_n(db, "DELETE FROM frames WHERE segment = ?1", n) &&
             exec_n(db, "DELETE FROM damage WHERE segment = ?1", n);
    if (!ok)
        return db_fail(db, err, "deleting rows");
    if (reel_index_exec(db, "COMMIT", err) != REEL_OK)
        return db_fail(db, err, "commit");
    return REEL_OK;
}

/* Deletes the index rows of segment n's flows, DROP_BATCH flows a
 * transaction, then its frames, then the file. Flows that also have
 * records elsewhere go into retired_flows. lk: as reel_retention_run's. */
static reel_rc purge(sqlite3 *db, const char *dir, uint32_t n, const reel_retention_lock_t *lk,
                     reel_err_t *err) {
    if (reel_index_exec(db, "CREATE TEMP TABLE IF NOT EXISTS ret_batch(id INTEGER PRIMARY KEY)",
                        err) != REEL_OK)
        return REEL_DB;
    for (int more = 1; more;) {
        lock_take(lk);
        reel_rc rc = purge_batch(db, n, &more, err);
        lock_give(lk);
        if (rc != REEL_OK)
            return rc;
        if (more)
            test_hold(n, "rows");
    }
    test_hold(n, "file");
    char *p = seg_path(dir, n);
    int gone = unlink(p) == 0 || errno == ENOENT;
    int e = errno;
    free(p);
    if (!gone)
        return reel_err_errno(err, REEL_IO, e, "retention: removing segment %08u.zst", n);
    return REEL_OK;
}

/* Whether a flow with records in segment n is open or has user data. */
static int pinned(sqlite3 *db, uint32_t n) {
    return query_n(db,
                   "SELECT 1 FROM flow_frames ff JOIN flows f ON f.id = ff.flow_id WHERE "
                   "ff.segment = ?1 AND (f.state = 'open' OR f.marked OR EXISTS (SELECT 1 FROM "
                   "tags t WHERE t.flow_id = f.id) OR EXISTS (SELECT 1 FROM annotations a WHERE "
                   "a.flow_id = f.id) OR EXISTS (SELECT 1 FROM marks m WHERE m.flow_id = f.id)) "
                   "LIMIT 1",
                   n) == 1;
}

/* The transaction that lists segment sg in `retention`; *flows: its flows.
 * *kept: it was not, a flow there being open or having user data (checked
 * in the transaction: a tag written between a check before it and the
 * drop was lost with its flow; user data writers check in theirs that the
 * flow's segment is not listed, reel_query_tag and the others). */
static reel_rc record_drop(sqlite3 *db, const seginfo *sg, const char *reason, int64_t now_us,
                           uint64_t *flows, int *kept, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    *kept = 0;
    if (reel_index_exec(db, "BEGIN IMMEDIATE", err) != REEL_OK)
        return db_fail(db, err, "begin");
    if (pinned(db, sg->n)) {
        *kept = 1;
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return REEL_OK;
    }
    /* Dropped flows keep their ids: a new flow never gets a dropped one's. */
    if (reel_index_exec(db,
                        "INSERT OR REPLACE INTO meta(key, value) SELECT 'max_flow_id', "
                        "CAST(max(coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
                        "'max_flow_id'), 0), coalesce((SELECT max(id) FROM flows), 0)) AS TEXT)",
                        err) != REEL_OK)
        return db_fail(db, err, "max_flow_id");
    if (sqlite3_prepare_v2(db,
                           "INSERT OR IGNORE INTO retention(segment, time_us, flows, bytes, "
                           "reason) VALUES(?1, ?2, (SELECT count(DISTINCT flow_id) FROM "
                           "flow_frames WHERE segment = ?1), ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "recording the drop");
    sqlite3_bind_int64(st, 1, sg->n);
    sqlite3_bind_int64(st, 2, now_us);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)sg->size);
    sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    int sr = sqlite3_step(st);
    sqlite3_finalize(st);
    if (sr != SQLITE_DONE)
        return db_fail(db, err, "recording the drop");
    sqlite3_int64 nf = query_n(db, "SELECT flows FROM retention WHERE segment = ?1", sg->n);
    if (reel_index_exec(db, "COMMIT", err) != REEL_OK)
        return db_fail(db, err, "commit");
    *flows = nf > 0 ? (uint64_t)nf : 0;
    return REEL_OK;
}

static reel_rc drop_segment(sqlite3 *db, const char *dir, const seginfo *sg, const char *reason,
                            int64_t now_us, const reel_retention_lock_t *lk, uint64_t *flows,
                            int *kept, reel_err_t *err) {
    lock_take(lk);
    reel_rc rc = record_drop(db, sg, reason, now_us, flows, kept, err);
    lock_give(lk);
    if (rc != REEL_OK || *kept)
        return rc;
    test_hold(sg->n, "listed");
    return purge(db, dir, sg->n, lk, err);
}

reel_rc reel_retention_run(sqlite3 *db, const char *spool_dir, uint32_t below,
                           const reel_retention_limits_t *lim, int64_t now_us,
                           const reel_retention_lock_t *lock, reel_retention_result_t *out,
                           reel_err_t *err) {
    reel_rc rc = REEL_OK;
    memset(out, 0, sizeof *out);
    if (lim->max_bytes == 0 && lim->max_age_s <= 0 && lim->max_flows == 0)
        return REEL_OK;
    size_t nseg = 0;
    seginfo *segs = list_segs(spool_dir, &nseg);
    uint64_t total = 0;
    for (size_t i = 0; i < nseg; i++) {
        total += segs[i].size;
        int64_t ahead = segs[i].mtime_us - now_us;
        if (ahead > 1000000 && segs[i].n < below) {
            if (out->future++ == 0)
                out->future_seg = segs[i].n;
            if (ahead / 1000000 > out->future_s)
                out->future_s = ahead / 1000000;
        }
    }
    /* A segment was last written before the next one was begun: its age
     * is at least that of every later one. Taken so, a segment dated after
     * later ones (the clock was set back while it was written, or it was
     * touched) no longer holds back the older ones behind it, which age
     * retention, stopping at the first segment too young, never reached. */
    for (size_t i = nseg; i-- > 1;)
        if (segs[i - 1].mtime_us > segs[i].mtime_us)
            segs[i - 1].mtime_us = segs[i].mtime_us;
    sqlite3_int64 nflows = lim->max_flows ? query_n(db, "SELECT count(*) FROM flows", 0)
                                          : 0;
    for (size_t i = 0; i < nseg && segs[i].n < below; i++) {
        const char *reason = NULL;
        if (lim->max_bytes && total > lim->max_bytes)
            reason = "max_bytes";
        else if (lim->max_flows && nflows > (sqlite3_int64)lim->max_flows)
            reason = "max_flows";
        else if (lim->max_age_s > 0 && now_us - segs[i].mtime_us > lim->max_age_s * 1000000)
            reason = "max_age";
        else
            break;
        uint64_t f = 0;
        int kept = 0;
        if ((rc = drop_segment(db, spool_dir, &segs[i], reason, now_us, lock, &f, &kept, err)) !=
            REEL_OK)
            goto out;
        if (kept) {
            out->kept++;
            continue;
        }
        total -= segs[i].size;
        nflows -= (sqlite3_int64)f;
        out->segments++;
        out->flows += f;
        out->bytes += segs[i].size;
    }
out:
    free(segs);
    return rc;
}

reel_rc reel_retention_finish(sqlite3 *db, const char *spool_dir, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3_stmt *st = NULL;
    uint32_t *todo = NULL;
    uint8_t *compacted = NULL;
    size_t n = 0, cap = 0;
    /* Only the newest drops can be unfinished: drops go oldest first, one at a time. */
    if (sqlite3_prepare_v2(db,
                           "SELECT segment, reason = 'compact' FROM retention r WHERE EXISTS "
                           "(SELECT 1 FROM frames f WHERE f.segment = r.segment) OR r.segment >= "
                           "(SELECT max(segment) - 2 FROM retention WHERE reason != 'compact')",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return REEL_OK; /* an older schema: nothing was ever dropped */
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint32_t seg = (uint32_t)sqlite3_column_int64(st, 0);
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            todo = reel_realloc(todo, cap * sizeof *todo);
            compacted = reel_realloc(compacted, cap);
        }
        compacted[n] = (uint8_t)sqlite3_column_int(st, 1);
        todo[n++] = seg;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; rc == REEL_OK && i < n; i++) {
        char *p = seg_path(spool_dir, todo[i]);
        int present = access(p, F_OK) == 0;
        if (compacted[i]) {
            /* A compact that died after listing it: the index is still the
             * old spool's, and the rebuild compact began is done again
             * next (meta `rebuilding`). Its flows' rows must not be purged
             * here: one with records in another old segment would go into
             * retired_flows, and that rebuild would then drop it from the
             * new segments, which hold it whole. */
            if (present && unlink(p) != 0 && errno != ENOENT)
                rc = reel_err_errno(err, REEL_IO, errno, "removing compacted segment %08u.zst",
                                    todo[i]);
        } else if (present ||
                   query_n(db, "SELECT count(*) FROM frames WHERE segment = ?1", todo[i]) > 0) {
            rc = purge(db, spool_dir, todo[i], NULL, err);
        }
        free(p);
    }
    free(todo);
    free(compacted);
    return rc;
}

reel_rc reel_retention_settle(sqlite3 *db, const char *spool_dir, int before_rebuild,
                              reel_retention_settled_t *out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3_stmt *st = NULL;
    uint32_t *todo = NULL;
    size_t n = 0, cap = 0;
    if (sqlite3_prepare_v2(db,
                           before_rebuild ? "SELECT segment FROM retention WHERE reason = 'compact'"
                                          : "SELECT segment FROM retention WHERE reason != "
                                            "'compact'",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return REEL_OK; /* an older schema: nothing was ever dropped */
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap)
            todo = reel_realloc(todo, (cap = cap ? cap * 2 : 8) * sizeof *todo);
        todo[n++] = (uint32_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    for (size_t i = 0; rc == REEL_OK && i < n; i++) {
        char *p = seg_path(spool_dir, todo[i]);
        struct stat sb;
        int present = stat(p, &sb) == 0;
        if (present && before_rebuild) {
            if (unlink(p) != 0 && errno != ENOENT)
                rc = reel_err_errno(err, REEL_IO, errno, "removing compacted segment %08u.zst",
                                    todo[i]);
            else {
                out->compacted++;
                out->bytes += (uint64_t)sb.st_size;
            }
        } else if (present && pinned(db, todo[i])) {
            /* The user has kept one of its flows since: retention would
             * not drop it now either. */
            if (!exec_n(db, "DELETE FROM retention WHERE segment = ?1", todo[i]))
                rc = db_fail(db, err, "unlisting a kept segment");
            else
                out->kept++;
        } else if (present) {
            rc = purge(db, spool_dir, todo[i], NULL, err);
            if (rc == REEL_OK) {
                out->dropped++;
                out->bytes += (uint64_t)sb.st_size;
            }
        }
        free(p);
    }
    if (rc == REEL_OK && out->compacted)
        sync_dir(spool_dir);
    free(todo);
    return rc;
}

reel_rc reel_retention_reapply(sqlite3 *db, reel_err_t *err) {
    return reel_index_exec(db,
                           "BEGIN IMMEDIATE;"
                           "DELETE FROM flow_frames WHERE flow_id IN (SELECT flow_id FROM "
                           "retired_flows);"
                           "DELETE FROM flow_damage WHERE flow_id IN (SELECT flow_id FROM "
                           "retired_flows);"
                           "DELETE FROM flows WHERE id IN (SELECT flow_id FROM retired_flows);"
                           "COMMIT;",
                           err);
}

int reel_retention_is_retired(sqlite3 *db, uint32_t n) {
    return query_n(db, "SELECT 1 FROM retention WHERE segment = ?1", n) == 1;
}

/* ---- compact ---- */

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *has_flow;
    const char *dir;
    uint64_t segment_size;
    size_t block_size; /* records per frame */
    reel_spool_enc_t *enc;
    reel_buf_t block, frame;
    uint32_t next_n, first_n;
    int fd;
    uint64_t out_size, out_total, kept_records, dropped_records;
    uint64_t last_id;
    int last_keep;
    reel_rc rc;
    reel_err_t *err;
    const char *session_dir; /* whose owner gets the new segments */
} compact_ctx;

static char *tmp_path(const char *dir, uint32_t n) {
    return reel_asprintf("%s/.compact-%08u", dir, n);
}

/* Adds text to err's message (first error wins: reel_err_set would not). */
static void err_append(reel_err_t *err, const char *text) {
    if (err == NULL)
        return;
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len, "%s", text);
}

static reel_rc c_frame_out(compact_ctx *c) {
    if (c->block.len == 0)
        return REEL_OK;
    reel_rc rc = reel_spool_enc_frame(c->enc, c->block.data, c->block.len, &c->frame, c->err);
    if (rc != REEL_OK)
        return rc;
    reel_buf_reset(&c->block);
    if (c->fd >= 0 && c->out_size > 0 && c->out_size + c->frame.len > c->segment_size) {
        if (fdatasync(c->fd) != 0)
            return reel_err_errno(c->err, REEL_IO, errno, "compact: syncing %s/.compact-%08u",
                                  c->dir, c->next_n);
        close(c->fd);
        c->fd = -1;
        c->next_n++;
    }
    if (c->fd < 0) {
        char *p = tmp_path(c->dir, c->next_n);
        c->fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int e = errno;
        if (c->fd >= 0)
            reel_session_give(c->session_dir, c->fd, p); /* root compacting another's */
        free(p);
        if (c->fd < 0)
            return reel_err_errno(c->err, REEL_IO, e, "compact: creating %s/.compact-%08u", c->dir,
                                  c->next_n);
        c->out_size = 0;
    }
    const uint8_t *q = c->frame.data;
    size_t left = c->frame.len;
    while (left) {
        ssize_t w = write(c->fd, q, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return reel_err_errno(c->err, REEL_IO, w < 0 ? errno : ENOSPC,
                                  "compact: writing %s/.compact-%08u", c->dir, c->next_n);
        q += w;
        left -= (size_t)w;
    }
    c->out_size += c->frame.len;
    c->out_total += c->frame.len;
    return REEL_OK;
}

static int compact_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    compact_ctx *c = ctx;
    (void)off;
    (void)clen;
    size_t pos = 0, len = 0;
    const uint8_t *rec = NULL;
    while (reel_spool_block_next(raw, rlen, &pos, &rec, &len) == REEL_OK) {
        reel_spool_peek_t pk;
        if (!reel_spool_peek_record(rec, len, &pk))
            continue;
        if (pk.flow_id != c->last_id || c->last_id == 0) {
            c->last_id = pk.flow_id;
            sqlite3_bind_int64(c->has_flow, 1, (sqlite3_int64)pk.flow_id);
            c->last_keep = sqlite3_step(c->has_flow) == SQLITE_ROW;
            sqlite3_reset(c->has_flow);
        }
        if (!c->last_keep) {
            c->dropped_records++;
            continue;
        }
        if (c->block.len && c->block.len + len + 10 > c->block_size &&
            (c->rc = c_frame_out(c)) != REEL_OK)
            return 1;
        if ((c->rc = reel_spool_block_append(&c->block, rec, len)) != REEL_OK) {
            reel_err_set(c->err, c->rc, "compact: a record does not fit in a block");
            return 1;
        }
        c->kept_records++;
    }
    return 0;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0) {
            /* best effort: the renames are in the page cache either way */
        }
        close(fd);
    }
}

unsigned reel_retention_compact_leftovers(const char *spool_dir, uint64_t *bytes) {
    unsigned n = 0;
    uint64_t total = 0;
    DIR *d = opendir(spool_dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".compact-", 9) != 0)
            continue;
        char *p = reel_asprintf("%s/%s", spool_dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && unlink(p) == 0) {
            n++;
            total += (uint64_t)st.st_size;
        }
        free(p);
    }
    closedir(d);
    if (n)
        sync_dir(spool_dir);
    if (bytes)
        *bytes = total;
    return n;
}

reel_rc reel_retention_compact(reel_session_t *s, uint64_t segment_size, size_t block_size,
                               char **report, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *report = NULL;
    sqlite3 *db = reel_session_db(s);
    const char *dir = reel_session_spool_dir(s);
    size_t nseg = 0;
    seginfo *segs = list_segs(dir, &nseg);
    compact_ctx c = {0};
    int began = 0, listed = 0;
    c.db = db;
    c.dir = dir;
    c.session_dir = reel_session_path(s);
    c.fd = -1;
    c.err = err;
    c.segment_size = segment_size < (1u << 20) ? (1u << 20) : segment_size;
    c.block_size = reel_spool_block_size(c.segment_size, block_size);
    reel_buf_init(&c.block, 0);
    reel_buf_init(&c.frame, 0);
    if (nseg == 0) {
        *report = reel_asprintf("nothing to compact (no spool segments)");
        goto out;
    }
    if (query_n(db, "SELECT count(*) FROM damage", 0) > 0) {
        rc = reel_err_set(err, REEL_INVALID,
                          "the spool has known damage ('reel verify' lists it): compact keeps "
                          "only what reads whole, and would drop the damaged bytes with the "
                          "record of what they held, so it refuses to run on a damaged spool; "
                          "a repair does not clear that record, but retention dropping the "
                          "segments that hold the damage does");
        goto out;
    }
    uint64_t old_total = 0;
    for (size_t i = 0; i < nseg; i++)
        old_total += segs[i].size;
    c.first_n = c.next_n = segs[nseg - 1].n + 1;
    c.enc = reel_spool_enc_new(0);
    if ((rc = reel_index_prepare(db, "SELECT 1 FROM flows WHERE id = ?1", &c.has_flow, err)) !=
        REEL_OK)
        goto out;
    for (size_t i = 0; rc == REEL_OK && i < nseg; i++) {
        char *p = seg_path(dir, segs[i].n);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        int e = errno;
        free(p);
        if (fd < 0) {
            rc = reel_err_errno(err, REEL_IO, e, "compact: opening segment %08u.zst", segs[i].n);
            break;
        }
        reel_spool_scan_t sc;
        c.last_id = 0;
        rc = reel_spool_scan_ahead(fd, 0, compact_cb, &c, &sc, err);
        close(fd);
        if (rc == REEL_OK)
            rc = c.rc;
        if (rc == REEL_OK && sc.bad_off < sc.file_size)
            rc = reel_err_set(err, REEL_CORRUPT,
                              "compact: segment %08u.zst does not read whole at offset %llu (%s); "
                              "run 'reel repair' first",
                              segs[i].n, (unsigned long long)sc.bad_off, sc.reason);
    }
    if (rc == REEL_OK)
        rc = c_frame_out(&c);
    if (rc == REEL_OK && c.fd >= 0 && fdatasync(c.fd) != 0)
        rc =
            reel_err_errno(err, REEL_IO, errno, "compact: syncing %s/.compact-%08u", dir, c.next_n);
    if (c.fd >= 0)
        close(c.fd);
    c.fd = -1;
    uint32_t nnew = c.out_total ? c.next_n - c.first_n + 1 : 0;
    if (rc != REEL_OK) {
        for (uint32_t n = c.first_n; n <= c.next_n; n++) {
            char *p = tmp_path(dir, n);
            unlink(p);
            free(p);
        }
        /* The old segments and the index have not been touched yet: say
         * so, or a full disk reads as a half-done compact. */
        err_append(err, "; nothing was changed (the new segments written so far were deleted, "
                        "the spool and the index are as they were)");
        goto out;
    }
    /* From here until the index is rebuilt from the new segments, it does
     * not match the spool: readers are kept away, and if this process
     * dies, the next open rebuilds the index (meta `rebuilding`). */
    if ((rc = reel__session_rebuild_begin(s, err)) != REEL_OK) {
        for (uint32_t n = c.first_n; n < c.first_n + nnew; n++) {
            char *p = tmp_path(dir, n);
            unlink(p);
            free(p);
        }
        goto out;
    }
    began = 1;
    /* The new segments take their names, then the old ones are listed as
     * retired and removed, then the index is rebuilt from the new ones. */
    for (uint32_t n = c.first_n; n < c.first_n + nnew; n++) {
        char *from = tmp_path(dir, n), *to = seg_path(dir, n);
        int ok = rename(from, to) == 0;
        int e = errno;
        free(from);
        free(to);
        if (!ok) {
            rc = reel_err_errno(err, REEL_IO, e, "compact: renaming segment %08u.zst", n);
            goto out;
        }
    }
    sync_dir(dir);
    if ((rc = reel_index_exec(db, "BEGIN IMMEDIATE; DELETE FROM retired_flows", err)) != REEL_OK)
        goto out;
    for (size_t i = 0; i < nseg; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db,
                               "INSERT OR REPLACE INTO retention(segment, time_us, flows, bytes, "
                               "reason) VALUES(?1, ?2, 0, ?3, 'compact')",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = db_fail(db, err, "recording compacted segments");
            goto out;
        }
        sqlite3_bind_int64(st, 1, segs[i].n);
        sqlite3_bind_int64(st, 2, reel_now_us());
        sqlite3_bind_int64(st, 3, (sqlite3_int64)segs[i].size);
        int sr = sqlite3_step(st);
        sqlite3_finalize(st);
        if (sr != SQLITE_DONE) {
            rc = db_fail(db, err, "recording compacted segments");
            goto out;
        }
    }
    if ((rc = reel_index_exec(db, "COMMIT", err)) != REEL_OK) {
        db_fail(db, err, "commit");
        goto out;
    }
    listed = 1;
    for (size_t i = 0; i < nseg; i++) {
        char *p = seg_path(dir, segs[i].n);
        unlink(p);
        free(p);
    }
    sync_dir(dir);
    char *rep = NULL;
    if ((rc = reel_session_repair(s, &rep, err)) != REEL_OK)
        goto out;
    free(rep);
    *report = reel_asprintf("%zu segment%s (%llu bytes) rewritten as %u (%llu bytes): %llu records "
                            "kept, %llu records of dropped flows removed",
                            nseg, nseg == 1 ? "" : "s", (unsigned long long)old_total, nnew,
                            (unsigned long long)c.out_total, (unsigned long long)c.kept_records,
                            (unsigned long long)c.dropped_records);
out:
    if (began && !listed) /* nothing needs a rebuild: the old segments are all there */
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (began)
        reel__session_rebuild_end(s, !listed);
    if (c.fd >= 0)
        close(c.fd);
    sqlite3_finalize(c.has_flow);
    reel_spool_enc_free(c.enc);
    reel_buf_free(&c.block);
    reel_buf_free(&c.frame);
    free(segs);
    return rc;
}
