/* The user-data journal, spool/journal.zst. Format and rules in
 * docs/format.md ("The journal"); the contract in journal.h. */
#include "session/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flow.pb-c.h"
#include "session/index.h"
#include "session/session.h"
#include "session/spool.h"

/* Journaling state of one connection; freed with the connection. */
typedef struct {
    char *path;
    reel_buf_t block;  /* records of the open transaction not yet in a frame */
    reel_buf_t frames; /* frames of the open transaction, compressed */
    reel_spool_enc_t *enc;
    int off; /* suspended (a replay must not journal again) */
    /* The last commit's frames went into the journal, [from, to): until a
     * statement after it runs, a rollback (the commit failed after the
     * hook: the WAL could not be written, a full disk) takes them out
     * again, or the next open would apply a change reported as not made */
    int appended;
    off_t appended_from, appended_to;
    /* Why the last commit the journal refused failed: SQLite reports such
     * a commit only as "constraint failed" (reel_journal_errmsg). */
    char fail[400];
} jstate;

static void jstate_free(void *p) {
    jstate *j = p;
    if (j == NULL)
        return;
    free(j->path);
    reel_buf_free(&j->block);
    reel_buf_free(&j->frames);
    reel_spool_enc_free(j->enc);
    free(j);
}

/* Compresses the pending block into a frame. */
static reel_rc flush_block(jstate *j, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    if (j->block.len == 0)
        return REEL_OK;
    if (j->enc == NULL)
        j->enc = reel_spool_enc_new(0);
    reel_buf_t fr;
    reel_buf_init(&fr, 0);
    rc = reel_spool_enc_frame(j->enc, j->block.data, j->block.len, &fr, err);
    if (rc == REEL_OK)
        rc = reel_buf_append(&j->frames, fr.data, fr.len);
    reel_buf_free(&fr);
    reel_buf_reset(&j->block);
    return rc;
}

static reel_rc add_record(jstate *j, const Reel__Record *rec, reel_err_t *err) {
    size_t n = reel__record__get_packed_size(rec);
    if (n > REEL_SPOOL_RECORD_MAX)
        return reel_err_set(err, REEL_LIMIT,
                            "a change of %zu bytes is larger than a journal record may be", n);
    uint8_t *buf = reel_malloc(n ? n : 1);
    reel__record__pack(rec, buf);
    reel_rc rc = REEL_OK;
    if (j->block.len && j->block.len + n + 10 > REEL_SPOOL_BLOCK_TARGET)
        rc = flush_block(j, err);
    if (rc == REEL_OK && reel_spool_block_append(&j->block, buf, n) != REEL_OK)
        rc = reel_err_set(err, REEL_LIMIT, "journal block overflow");
    free(buf);
    return rc;
}

static void drop_pending(jstate *j) {
    reel_buf_reset(&j->block);
    reel_buf_reset(&j->frames);
}

static void sync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? reel_strndup(path, (size_t)(slash - path)) : reel_strdup(".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

/* A journal file root made (at path, open as fd) goes to the session's
 * owner: the session directory is two levels up (SESSION/spool/FILE). */
static void give(int fd, const char *path) {
    char *dir = reel_strdup(path);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL) {
            free(dir);
            dir = reel_strdup(up ? "." : "..");
            break;
        }
        *slash = '\0';
    }
    reel_session_give(dir, fd, path);
    free(dir);
}

/* Opens the journal for appending with its lock held; retries when the
 * file was replaced (a rewrite) while waiting for the lock. */
static int open_locked(const char *path, int *created, reel_err_t *err) {
    for (int tries = 0;; tries++) {
        *created = 0;
        int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
            *created = 1;
            if (fd >= 0)
                give(fd, path);
        }
        if (fd < 0) {
            reel_err_errno(err, REEL_IO, errno, "cannot open %s", path);
            return -1;
        }
        if (flock(fd, LOCK_EX) != 0) {
            reel_err_errno(err, REEL_IO, errno, "cannot lock %s", path);
            close(fd);
            return -1;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return fd;
        close(fd);
        if (tries >= 10) {
            reel_err_set(err, REEL_IO, "%s keeps being replaced", path);
            return -1;
        }
    }
}

/* Appends whole frames to the journal: one write with the lock held, then
 * fdatasync. A write that fails is cut back off, so the file still ends
 * on a frame boundary. */
/* Writes all len bytes of data to fd (path: for the error). */
static reel_rc write_all(int fd, const uint8_t *data, size_t len, const char *path,
                         reel_err_t *err) {
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return reel_err_errno(err, REEL_IO, w < 0 ? errno : ENOSPC, "writing %s", path);
        done += (size_t)w;
    }
    return REEL_OK;
}

static reel_rc append_frames(const char *path, const uint8_t *data, size_t len, off_t *from,
                             reel_err_t *err) {
    int created = 0;
    int fd = open_locked(path, &created, err);
    if (fd < 0)
        return REEL_IO;
    struct stat st;
    off_t size = fstat(fd, &st) == 0 ? st.st_size : 0;
    *from = size;
    reel_rc rc = write_all(fd, data, len, path, err);
    if (rc == REEL_OK && fdatasync(fd) != 0)
        rc = reel_err_errno(err, REEL_IO, errno, "syncing %s", path);
    if (rc != REEL_OK) {
        if (ftruncate(fd, size) == 0)
            fdatasync(fd);
    } else if (created) {
        sync_dir_of(path);
    }
    close(fd);
    return rc;
}

/* The commit appends the transaction's changes; a non-zero return turns
 * the commit into a rollback. SQLite holds the write lock here, so the
 * journal's order is the commit order. */
static int commit_hook(void *p) {
    jstate *j = p;
    j->fail[0] = '\0';
    if (j->block.len == 0 && j->frames.len == 0)
        return 0;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = flush_block(j, &err);
    off_t from = 0;
    size_t len = j->frames.len;
    if (rc == REEL_OK)
        rc = append_frames(j->path, j->frames.data, len, &from, &err);
    drop_pending(j);
    if (rc == REEL_OK) {
        j->appended = 1;
        j->appended_from = from;
        j->appended_to = from + (off_t)len;
    }
    if (rc != REEL_OK) {
        /* SQLite reports a refused commit only as "constraint failed":
         * the cause is kept for reel_journal_errmsg, which every error
         * message about a failed statement asks. */
        snprintf(j->fail, sizeof j->fail, "%s; the change was not made", reel_err_str(&err));
        return 1;
    }
    return 0;
}

/* The journal attached to db, or NULL: the commit hook's argument (only
 * the journal sets one), which sqlite3_commit_hook returns when it is
 * replaced; put back at once. */
static jstate *attached(sqlite3 *db) {
    jstate *j = sqlite3_commit_hook(db, NULL, NULL);
    if (j)
        sqlite3_commit_hook(db, commit_hook, j);
    return j;
}

int reel_journal_failed(sqlite3 *db) {
    if (sqlite3_extended_errcode(db) != SQLITE_CONSTRAINT_COMMITHOOK)
        return 0;
    jstate *j = attached(db);
    return j && j->fail[0];
}

const char *reel_journal_errmsg(sqlite3 *db) {
    if (reel_journal_failed(db))
        return attached(db)->fail;
    return sqlite3_errmsg(db);
}

static void rollback_hook(void *p) {
    jstate *j = p;
    drop_pending(j);
    if (!j->appended)
        return;
    /* The commit the hook journaled failed after it: its frames go, as
     * the change did. SQLite still holds the write lock, under which
     * every append is made: they are the journal's last bytes. */
    j->appended = 0;
    int fd = open(j->path, O_WRONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size == j->appended_to &&
        ftruncate(fd, j->appended_from) == 0)
        fdatasync(fd);
    if (fd >= 0)
        close(fd);
}

/* A statement begins: the commit before it, if the hook journaled one,
 * succeeded (a failed one is rolled back before any other statement). */
static int trace_stmt(unsigned type, void *p, void *stmt, void *x) {
    (void)type;
    (void)stmt;
    (void)x;
    ((jstate *)p)->appended = 0;
    return 0;
}

static ProtobufCBinaryData arg_bytes(sqlite3_value *v) {
    ProtobufCBinaryData b = {0, NULL};
    if (sqlite3_value_type(v) == SQLITE_NULL)
        return b;
    b.data = (uint8_t *)sqlite3_value_text(v);
    b.len = (size_t)sqlite3_value_bytes(v);
    return b;
}

/* One change into j's pending block, from the values of reel_journal()
 * below (v[0..7]). */
static reel_rc journal_values(jstate *j, sqlite3_value **v, reel_err_t *err) {
    Reel__UserEdit ue = REEL__USER_EDIT__INIT;
    Reel__Record rec = REEL__RECORD__INIT;
    ue.op = (Reel__UserEdit__Op)sqlite3_value_int(v[0]);
    rec.flow_id = (uint64_t)sqlite3_value_int64(v[1]);
    rec.time_us =
        sqlite3_value_type(v[2]) == SQLITE_NULL ? reel_now_us() : sqlite3_value_int64(v[2]);
    ue.id = sqlite3_value_int64(v[3]);
    switch (ue.op) {
    case REEL__USER_EDIT__OP__ANNOTATE:
        ue.text = arg_bytes(v[4]);
        break;
    case REEL__USER_EDIT__OP__TAG:
    case REEL__USER_EDIT__OP__UNTAG:
        ue.tag = arg_bytes(v[4]);
        break;
    case REEL__USER_EDIT__OP__CONFIG_SET:
        ue.key = arg_bytes(v[4]);
        ue.value = arg_bytes(v[5]);
        break;
    case REEL__USER_EDIT__OP__CONFIG_UNSET:
        ue.key = arg_bytes(v[4]);
        break;
    case REEL__USER_EDIT__OP__CONFIG_HISTORY:
        ue.key = arg_bytes(v[4]);
        ue.old_value = arg_bytes(v[5]);
        ue.old_value_set = sqlite3_value_type(v[5]) != SQLITE_NULL;
        ue.value = arg_bytes(v[6]);
        ue.value_set = sqlite3_value_type(v[6]) != SQLITE_NULL;
        ue.actor = arg_bytes(v[7]);
        break;
    case REEL__USER_EDIT__OP__SEGMENT_DROPPED:
        ue.reason = arg_bytes(v[4]);
        ue.flows = (uint64_t)sqlite3_value_int64(v[5]);
        ue.size = (uint64_t)sqlite3_value_int64(v[6]);
        break;
    default:
        break;
    }
    rec.event_case = REEL__RECORD__EVENT_EDIT;
    rec.edit = &ue;
    return add_record(j, &rec, err);
}

/* reel_journal(op, flow_id, time_us, id, a, b, c, d): one change, from
 * the triggers below (a..d by op: ANNOTATE text; TAG/UNTAG tag; CONFIG_SET
 * key, value; CONFIG_UNSET key; CONFIG_HISTORY key, old, new, actor;
 * SEGMENT_DROPPED reason, flows, size). A NULL time is now. */
static void fn_journal(sqlite3_context *ctx, int argc, sqlite3_value **v) {
    jstate *j = sqlite3_user_data(ctx);
    (void)argc;
    if (j->off)
        return;
    reel_err_t err;
    reel_err_clear(&err);
    if (journal_values(j, v, &err) != REEL_OK)
        sqlite3_result_error(ctx, reel_err_str(&err), -1);
}

/* reel_journal_enable(on): suspends or resumes journaling. */
static void fn_enable(sqlite3_context *ctx, int argc, sqlite3_value **v) {
    jstate *j = sqlite3_user_data(ctx);
    (void)argc;
    j->off = !sqlite3_value_int(v[0]);
}

/* The triggers: op numbers are Reel__UserEdit__Op's. */
static const char triggers[] =
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ann_i AFTER INSERT ON main.annotations BEGIN "
    "SELECT reel_journal(1, new.flow_id, new.created_us, new.id, new.text, NULL, NULL, NULL); "
    "END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ann_u AFTER UPDATE ON main.annotations BEGIN "
    "SELECT reel_journal(2, old.flow_id, NULL, old.id, NULL, NULL, NULL, NULL); "
    "SELECT reel_journal(1, new.flow_id, new.created_us, new.id, new.text, NULL, NULL, NULL); "
    "END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ann_d AFTER DELETE ON main.annotations BEGIN "
    "SELECT reel_journal(2, old.flow_id, NULL, old.id, NULL, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_tag_i AFTER INSERT ON main.tags BEGIN "
    "SELECT reel_journal(3, new.flow_id, NULL, 0, new.tag, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_tag_d AFTER DELETE ON main.tags BEGIN "
    "SELECT reel_journal(4, old.flow_id, NULL, 0, old.tag, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_mark_i AFTER INSERT ON main.marks BEGIN "
    "SELECT reel_journal(5, new.flow_id, new.created_us, 0, NULL, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_mark_d AFTER DELETE ON main.marks BEGIN "
    "SELECT reel_journal(6, old.flow_id, NULL, 0, NULL, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ov_i AFTER INSERT ON main.config_overlay BEGIN "
    "SELECT reel_journal(7, 0, new.updated_us, 0, new.key, new.value, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ov_u AFTER UPDATE ON main.config_overlay BEGIN "
    "SELECT reel_journal(8, 0, NULL, 0, old.key, NULL, NULL, NULL); "
    "SELECT reel_journal(7, 0, new.updated_us, 0, new.key, new.value, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ov_d AFTER DELETE ON main.config_overlay BEGIN "
    "SELECT reel_journal(8, 0, NULL, 0, old.key, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_hist_i AFTER INSERT ON main.config_history BEGIN "
    "SELECT reel_journal(9, 0, new.time_us, new.id, new.key, new.old_value, new.new_value, "
    "new.actor); END;";

/* Retention's drops (ops 10-13), in their own statement: see attach. */
static const char drop_triggers[] =
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ret_i AFTER INSERT ON main.retention BEGIN "
    "SELECT reel_journal(10, 0, new.time_us, new.segment, new.reason, new.flows, new.bytes, "
    "NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_ret_d AFTER DELETE ON main.retention BEGIN "
    "SELECT reel_journal(11, 0, NULL, old.segment, NULL, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_rf_i AFTER INSERT ON main.retired_flows BEGIN "
    "SELECT reel_journal(12, new.flow_id, NULL, 0, NULL, NULL, NULL, NULL); END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS reel_j_rf_d AFTER DELETE ON main.retired_flows BEGIN "
    "SELECT reel_journal(13, old.flow_id, NULL, 0, NULL, NULL, NULL, NULL); END;";

/* The user data db holds, as the changes (reel_journal()'s arguments)
 * that make it. */
static const char *const snapshot_q[] = {
    ("SELECT 9, 0, time_us, id, key, old_value, new_value, actor FROM config_history "
     "ORDER BY id"), /* parenthesised: one element (clang -Wstring-concatenation) */
    "SELECT 7, 0, updated_us, 0, key, value, NULL, NULL FROM config_overlay",
    "SELECT 1, flow_id, created_us, id, text, NULL, NULL, NULL FROM annotations ORDER BY id",
    "SELECT 3, flow_id, NULL, 0, tag, NULL, NULL, NULL FROM tags",
    "SELECT 5, flow_id, created_us, 0, NULL, NULL, NULL, NULL FROM marks",
};

/* Likewise the drops of retention and compact. */
static const char *const drops_q[] = {
    "SELECT 10, 0, time_us, segment, reason, flows, bytes, NULL FROM retention ORDER BY segment",
    "SELECT 12, flow_id, NULL, 0, NULL, NULL, NULL, NULL FROM retired_flows",
};

/* Appends, as changes, all the user data db holds: the journal of an index
 * made before there was one starts with it. */
static reel_rc snapshot(sqlite3 *db, const char *const *q, size_t nq, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    for (size_t i = 0; rc == REEL_OK && i < nq; i++) {
        char *sql = reel_asprintf("WITH s(op, f, t, i, a, b, c, d) AS (%s) SELECT "
                                  "reel_journal(op, f, t, i, a, b, c, d) FROM s",
                                  q[i]);
        sqlite3_stmt *st = NULL;
        if ((rc = reel_index_prepare(db, sql, &st, err)) == REEL_OK) {
            int step;
            while ((step = sqlite3_step(st)) == SQLITE_ROW)
                ;
            if (step != SQLITE_DONE)
                rc = reel_err_set(err, REEL_DB, "session.db: journal: %s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(st);
        free(sql);
    }
    return rc;
}

reel_rc reel_journal_attach(sqlite3 *db, const char *path, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    jstate *j = reel_calloc(1, sizeof *j);
    j->path = reel_strdup(path);
    reel_buf_init(&j->block, 0);
    reel_buf_init(&j->frames, 0);
    /* The function owns j: SQLite frees it with the connection. */
    if (sqlite3_create_function_v2(db, "reel_journal", 8, SQLITE_UTF8, j, fn_journal, NULL, NULL,
                                   jstate_free) != SQLITE_OK)
        return reel_index_db_error(err, REEL_DB, db);
    if (sqlite3_create_function_v2(db, "reel_journal_enable", 1, SQLITE_UTF8, j, fn_enable, NULL,
                                   NULL, NULL) != SQLITE_OK)
        return reel_index_db_error(err, REEL_DB, db);
    sqlite3_commit_hook(db, commit_hook, j);
    sqlite3_rollback_hook(db, rollback_hook, j);
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT, trace_stmt, j);
    if ((rc = reel_index_exec(db, triggers, err)) != REEL_OK)
        return rc;
    /* An index of a schema before retention has no drops to journal; its
     * migration (on a writable open) adds the tables and their triggers
     * come with the next attach. */
    int drops = sqlite3_exec(db, drop_triggers, NULL, NULL, NULL) == SQLITE_OK;
    char *v = reel_index_meta_get(db, "journal");
    char *vd = drops ? reel_index_meta_get(db, "journal_drops") : reel_strdup("1");
    int done = v && vd;
    free(v);
    free(vd);
    if (done)
        return REEL_OK;
    /* An index from before the journal: its user data goes in first, once
     * (the transaction makes a second process wait, and it then finds the
     * key set). Likewise the drops of an index from before they were
     * journaled (`journal_drops`). */
    if ((rc = reel_index_exec(db, "BEGIN IMMEDIATE", err)) != REEL_OK)
        return rc;
    v = reel_index_meta_get(db, "journal");
    if (v == NULL &&
        (rc = snapshot(db, snapshot_q, sizeof snapshot_q / sizeof *snapshot_q, err)) == REEL_OK)
        rc = reel_index_meta_set(db, "journal", "1", err);
    free(v);
    vd = drops ? reel_index_meta_get(db, "journal_drops") : reel_strdup("1");
    if (rc == REEL_OK && vd == NULL &&
        (rc = snapshot(db, drops_q, sizeof drops_q / sizeof *drops_q, err)) == REEL_OK)
        rc = reel_index_meta_set(db, "journal_drops", "1", err);
    free(vd);
    if (rc == REEL_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = reel_err_set(err, REEL_IO, "cannot start the journal %s: %s", path,
                          reel_journal_errmsg(db));
    if (rc != REEL_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* ---- reading ---- */

/* Frames of the journal open on fd, passed to cb; damaged ranges are
 * skipped and counted in st. */
static reel_rc walk(int fd, reel_spool_frame_cb cb, void *ctx, reel_journal_stats_t *st,
                    reel_err_t *err) {
    reel_rc rc = REEL_OK;
    for (uint64_t pos = 0;;) {
        reel_spool_scan_t sc;
        if ((rc = reel_spool_scan(fd, pos, cb, ctx, &sc, err)) != REEL_OK)
            break;
        if (sc.reason[0] == '\0')
            break;
        uint64_t next = 0;
        reel_err_t e2;
        reel_err_clear(&e2);
        reel_rc r2 = reel_spool_resync(fd, sc.bad_off + 1, &next, &e2);
        if (r2 == REEL_NOTFOUND)
            next = sc.file_size;
        else if (r2 != REEL_OK)
            return reel_err_set(err, r2, "%s", reel_err_str(&e2));
        if (st->bad_ranges++ == 0) {
            st->bad_off = sc.bad_off;
            snprintf(st->reason, sizeof st->reason, "%s", sc.reason);
        }
        st->bad_bytes += next - sc.bad_off;
        if (next >= sc.file_size)
            break;
        pos = next;
    }
    return rc;
}

enum {
    S_ANN_DEL,
    S_ANN,
    S_TAG,
    S_UNTAG,
    S_MARK,
    S_UNMARK,
    S_SET,
    S_UNSET,
    S_HIST,
    S_DROP,
    S_KEEP,
    S_RETIRE,
    S_UNRETIRE,
    S_N
};

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *st[S_N];
    reel_journal_stats_t *stats;
    reel_err_t *err;
    reel_rc rc;
} replay_ctx;

static void bind_bytes(sqlite3_stmt *st, int k, ProtobufCBinaryData b, int set) {
    if (!set)
        sqlite3_bind_null(st, k);
    else
        sqlite3_bind_text(st, k, b.len ? (const char *)b.data : "", (int)b.len,
                          SQLITE_TRANSIENT);
}

static int run(replay_ctx *c, int k) {
    int s = sqlite3_step(c->st[k]);
    sqlite3_reset(c->st[k]);
    sqlite3_clear_bindings(c->st[k]);
    if (s != SQLITE_DONE) {
        c->rc = reel_err_set(c->err, REEL_DB, "session.db: replaying the journal: %s",
                             sqlite3_errmsg(c->db));
        return 1;
    }
    return 0;
}

static int apply(replay_ctx *c, const Reel__Record *r) {
    const Reel__UserEdit *e = r->edit;
    sqlite3_int64 fid = (sqlite3_int64)r->flow_id;
    sqlite3_stmt **st = c->st;
    switch (e->op) {
    case REEL__USER_EDIT__OP__ANNOTATE:
        sqlite3_bind_int64(st[S_ANN_DEL], 1, e->id);
        if (run(c, S_ANN_DEL))
            return 1;
        sqlite3_bind_int64(st[S_ANN], 1, e->id);
        sqlite3_bind_int64(st[S_ANN], 2, fid);
        sqlite3_bind_int64(st[S_ANN], 3, r->time_us);
        bind_bytes(st[S_ANN], 4, e->text, 1);
        return run(c, S_ANN);
    case REEL__USER_EDIT__OP__ANNOTATION_DELETE:
        sqlite3_bind_int64(st[S_ANN_DEL], 1, e->id);
        return run(c, S_ANN_DEL);
    case REEL__USER_EDIT__OP__TAG:
    case REEL__USER_EDIT__OP__UNTAG: {
        int k = e->op == REEL__USER_EDIT__OP__TAG ? S_TAG : S_UNTAG;
        sqlite3_bind_int64(st[k], 1, fid);
        bind_bytes(st[k], 2, e->tag, 1);
        return run(c, k);
    }
    case REEL__USER_EDIT__OP__MARK:
        sqlite3_bind_int64(st[S_MARK], 1, fid);
        sqlite3_bind_int64(st[S_MARK], 2, r->time_us);
        return run(c, S_MARK);
    case REEL__USER_EDIT__OP__UNMARK:
        sqlite3_bind_int64(st[S_UNMARK], 1, fid);
        return run(c, S_UNMARK);
    case REEL__USER_EDIT__OP__CONFIG_SET:
        bind_bytes(st[S_SET], 1, e->key, 1);
        bind_bytes(st[S_SET], 2, e->value, 1);
        sqlite3_bind_int64(st[S_SET], 3, r->time_us);
        return run(c, S_SET);
    case REEL__USER_EDIT__OP__CONFIG_UNSET:
        bind_bytes(st[S_UNSET], 1, e->key, 1);
        return run(c, S_UNSET);
    case REEL__USER_EDIT__OP__CONFIG_HISTORY:
        sqlite3_bind_int64(st[S_HIST], 1, e->id);
        sqlite3_bind_int64(st[S_HIST], 2, r->time_us);
        bind_bytes(st[S_HIST], 3, e->key, 1);
        bind_bytes(st[S_HIST], 4, e->old_value, e->old_value_set);
        bind_bytes(st[S_HIST], 5, e->value, e->value_set);
        bind_bytes(st[S_HIST], 6, e->actor, 1);
        return run(c, S_HIST);
    case REEL__USER_EDIT__OP__SEGMENT_DROPPED:
        sqlite3_bind_int64(st[S_DROP], 1, e->id);
        sqlite3_bind_int64(st[S_DROP], 2, r->time_us);
        sqlite3_bind_int64(st[S_DROP], 3, (sqlite3_int64)e->flows);
        sqlite3_bind_int64(st[S_DROP], 4, (sqlite3_int64)e->size);
        bind_bytes(st[S_DROP], 5, e->reason, 1);
        return run(c, S_DROP);
    case REEL__USER_EDIT__OP__SEGMENT_KEPT:
        sqlite3_bind_int64(st[S_KEEP], 1, e->id);
        return run(c, S_KEEP);
    case REEL__USER_EDIT__OP__FLOW_RETIRED:
    case REEL__USER_EDIT__OP__FLOW_UNRETIRED: {
        int k = e->op == REEL__USER_EDIT__OP__FLOW_RETIRED ? S_RETIRE : S_UNRETIRE;
        sqlite3_bind_int64(st[k], 1, fid);
        return run(c, k);
    }
    default:
        return 0; /* an op this build does not know: skipped */
    }
}

static int replay_frame_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw,
                           size_t rlen) {
    replay_ctx *c = ctx;
    (void)off;
    (void)clen;
    c->stats->frames++;
    size_t pos = 0, len = 0;
    const uint8_t *p = NULL;
    while (reel_spool_block_next(raw, rlen, &pos, &p, &len) == REEL_OK) {
        Reel__Record *r = reel__record__unpack(NULL, len, p);
        int stop = 0;
        if (r && r->event_case == REEL__RECORD__EVENT_EDIT) {
            stop = apply(c, r);
            if (r->edit->op >= REEL__USER_EDIT__OP__SEGMENT_DROPPED &&
                r->edit->op <= REEL__USER_EDIT__OP__FLOW_UNRETIRED)
                c->stats->drops++;
            else
                c->stats->records++;
        }
        reel__record__free_unpacked(r, NULL);
        if (stop)
            return 1;
    }
    return 0;
}

reel_rc reel_journal_replay(sqlite3 *db, const char *path, reel_journal_stats_t *st,
                            reel_err_t *err) {
    static const char *const sql[S_N] = {
        [S_ANN_DEL] = "DELETE FROM annotations WHERE id = ?1",
        [S_ANN] = "INSERT INTO annotations(id, flow_id, created_us, text) VALUES(?1, ?2, ?3, ?4)",
        [S_TAG] = "INSERT OR IGNORE INTO tags(flow_id, tag) VALUES(?1, ?2)",
        [S_UNTAG] = "DELETE FROM tags WHERE flow_id = ?1 AND tag = ?2",
        [S_MARK] = "INSERT OR IGNORE INTO marks(flow_id, created_us) VALUES(?1, ?2)",
        [S_UNMARK] = "DELETE FROM marks WHERE flow_id = ?1",
        [S_SET] = "INSERT OR REPLACE INTO config_overlay(key, value, updated_us) VALUES(?1, ?2, "
                  "?3)",
        [S_UNSET] = "DELETE FROM config_overlay WHERE key = ?1",
        [S_HIST] = "INSERT OR REPLACE INTO config_history(id, time_us, key, old_value, "
                   "new_value, actor) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        [S_DROP] = "INSERT OR REPLACE INTO retention(segment, time_us, flows, bytes, reason) "
                   "VALUES(?1, ?2, ?3, ?4, ?5)",
        [S_KEEP] = "DELETE FROM retention WHERE segment = ?1",
        [S_RETIRE] = "INSERT OR IGNORE INTO retired_flows(flow_id) VALUES(?1)",
        [S_UNRETIRE] = "DELETE FROM retired_flows WHERE flow_id = ?1",
    };
    memset(st, 0, sizeof *st);
    replay_ctx c = {.db = db, .stats = st, .err = err, .rc = REEL_OK};
    reel_rc rc = REEL_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? REEL_OK : reel_err_errno(err, REEL_IO, errno, "opening %s", path);
    int began = 0;
    /* Not an error when db is not attached: there is nothing to suspend. */
    sqlite3_exec(db, "SELECT reel_journal_enable(0)", NULL, NULL, NULL);
    for (int k = 0; rc == REEL_OK && k < S_N; k++)
        rc = reel_index_prepare(db, sql[k], &c.st[k], err);
    if (rc == REEL_OK && (rc = reel_index_exec(db, "BEGIN IMMEDIATE", err)) == REEL_OK)
        began = 1;
    if (rc == REEL_OK)
        rc = walk(fd, replay_frame_cb, &c, st, err);
    if (rc == REEL_OK)
        rc = c.rc;
    if (rc == REEL_OK)
        rc = reel_index_exec(db,
                             "UPDATE flows SET marked = 1 WHERE marked = 0 AND id IN (SELECT "
                             "flow_id FROM marks);"
                             "UPDATE flows SET marked = 0 WHERE marked != 0 AND id NOT IN "
                             "(SELECT flow_id FROM marks);",
                             err);
    if (began)
        rc = rc == REEL_OK ? reel_index_exec(db, "COMMIT", err) : rc;
    if (began && rc != REEL_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_exec(db, "SELECT reel_journal_enable(1)", NULL, NULL, NULL);
    for (int k = 0; k < S_N; k++)
        sqlite3_finalize(c.st[k]);
    close(fd);
    return rc;
}

typedef struct {
    reel_journal_stats_t *stats;
    uint64_t (*good)[2]; /* offset, length of each valid frame (rewrite) */
    size_t ngood, cap;
} check_ctx;

/* Whether the edit record p (len bytes) is a drop of retention or compact. */
static int is_drop(const uint8_t *p, size_t len) {
    Reel__Record *r = reel__record__unpack(NULL, len, p);
    int drop = r && r->event_case == REEL__RECORD__EVENT_EDIT &&
               r->edit->op >= REEL__USER_EDIT__OP__SEGMENT_DROPPED &&
               r->edit->op <= REEL__USER_EDIT__OP__FLOW_UNRETIRED;
    reel__record__free_unpacked(r, NULL);
    return drop;
}

static int check_frame_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    check_ctx *c = ctx;
    c->stats->frames++;
    size_t pos = 0, len = 0;
    const uint8_t *p = NULL;
    int ok = 1;
    reel_rc r;
    while ((r = reel_spool_block_next(raw, rlen, &pos, &p, &len)) == REEL_OK) {
        reel_spool_peek_t pk;
        if (!reel_spool_peek_record(p, len, &pk) || pk.event != 17)
            ok = 0;
        else if (is_drop(p, len))
            c->stats->drops++;
        else
            c->stats->records++;
    }
    if (r != REEL_NOTFOUND)
        ok = 0;
    if (!ok) {
        /* A frame with a good checksum whose records are not edits. */
        if (c->stats->bad_ranges++ == 0) {
            c->stats->bad_off = off;
            snprintf(c->stats->reason, sizeof c->stats->reason,
                     "a frame holds records that are not user-data changes");
        }
        c->stats->bad_bytes += clen;
        return 0;
    }
    if (c->ngood == c->cap)
        c->good = reel_realloc(c->good, (c->cap = c->cap ? c->cap * 2 : 64) * sizeof *c->good);
    c->good[c->ngood][0] = off;
    c->good[c->ngood][1] = clen;
    c->ngood++;
    return 0;
}

reel_rc reel_journal_check(const char *path, reel_journal_stats_t *st, reel_err_t *err) {
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? REEL_OK : reel_err_errno(err, REEL_IO, errno, "opening %s", path);
    check_ctx c = {.stats = st};
    reel_rc rc = walk(fd, check_frame_cb, &c, st, err);
    free(c.good);
    close(fd);
    return rc;
}

reel_rc reel_journal_rewrite(const char *path, const char *aside, int *fixed,
                             reel_journal_stats_t *st, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *fixed = 0;
    memset(st, 0, sizeof *st);
    char *newpath = reel_asprintf("%s.new", path);
    check_ctx c = {.stats = st};
    uint8_t *buf = NULL;
    int out = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            rc = reel_err_errno(err, REEL_IO, errno, "opening %s", path);
        goto out;
    }
    if (flock(fd, LOCK_EX) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "locking %s", path);
        goto out;
    }
    if ((rc = walk(fd, check_frame_cb, &c, st, err)) != REEL_OK || st->bad_ranges == 0)
        goto out;
    out = open(newpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", newpath);
        goto out;
    }
    give(out, newpath);
    buf = reel_malloc(REEL_SPOOL_FRAME_MAX);
    for (size_t i = 0; i < c.ngood; i++) {
        size_t n = (size_t)c.good[i][1];
        if (n > REEL_SPOOL_FRAME_MAX || pread(fd, buf, n, (off_t)c.good[i][0]) != (ssize_t)n ||
            write(out, buf, n) != (ssize_t)n) {
            rc = reel_err_errno(err, REEL_IO, errno, "copying %s", path);
            goto out;
        }
    }
    if (fsync(out) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "syncing %s", newpath);
        goto out;
    }
    if (link(path, aside) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "keeping the damaged journal as %s", aside);
        goto out;
    }
    if (rename(newpath, path) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "replacing %s", path);
        goto out;
    }
    sync_dir_of(path);
    *fixed = 1;
out:
    if (out >= 0)
        close(out);
    if (*fixed == 0)
        unlink(newpath);
    if (fd >= 0)
        close(fd); /* releases the lock: waiting writers find the new file */
    free(buf);
    free(c.good);
    free(newpath);
    return rc;
}

/* ---- comparing, and writing anew ---- */

const char *const reel_journal_what[5] = {"annotation", "tag", "mark", "overlay key",
                                          "config change"};

/* The user-data tables, and the columns a comparison looks at. */
static const char *const ud_table[5] = {"annotations", "tags", "marks", "config_overlay",
                                        "config_history"};
static const char *const ud_cols[5] = {"id, flow_id, created_us, text", "flow_id, tag", "flow_id",
                                       "key, value", "id, key, old_value, new_value, actor"};

reel_rc reel_journal_compare(sqlite3 *db, const char *path, reel_journal_diff_t *d,
                             reel_err_t *err) {
    reel_rc rc = REEL_OK;
    memset(d, 0, sizeof *d);
    struct stat sb;
    d->missing = stat(path, &sb) != 0 && errno == ENOENT;
    /* A scratch index with the schema a replay writes into, and the
     * index's rows beside it (idx_*). */
    sqlite3 *m = NULL;
    if ((rc = reel_index_open(":memory:", REEL_INDEX_CREATE, &m, err)) != REEL_OK)
        return rc;
    for (int k = 0; rc == REEL_OK && k < 5; k++) {
        char *sql = reel_asprintf("CREATE TABLE idx_%s AS SELECT %s FROM %s WHERE 0", ud_table[k],
                                  ud_cols[k], ud_table[k]);
        rc = reel_index_exec(m, sql, err);
        free(sql);
        /* Copied row by row from db (another connection). */
        sqlite3_stmt *from = NULL, *to = NULL;
        char *q = reel_asprintf("SELECT %s FROM %s", ud_cols[k], ud_table[k]);
        char *ins = NULL;
        int ncols = 0;
        if (rc == REEL_OK && (rc = reel_index_prepare(db, q, &from, err)) == REEL_OK) {
            ncols = sqlite3_column_count(from); /* up to 5 */
            ins = reel_asprintf("INSERT INTO idx_%s VALUES(?%.*s)", ud_table[k], 2 * (ncols - 1),
                                ",?,?,?,?,?,?,?,?");
            rc = reel_index_prepare(m, ins, &to, err);
        }
        while (rc == REEL_OK && sqlite3_step(from) == SQLITE_ROW) {
            for (int c = 0; c < ncols; c++)
                sqlite3_bind_value(to, c + 1, sqlite3_column_value(from, c));
            if (sqlite3_step(to) != SQLITE_DONE)
                rc = reel_err_set(err, REEL_DB, "scratch database: %s", sqlite3_errmsg(m));
            sqlite3_reset(to);
        }
        sqlite3_finalize(from);
        sqlite3_finalize(to);
        free(q);
        free(ins);
    }
    reel_journal_stats_t st;
    if (rc == REEL_OK)
        rc = reel_journal_replay(m, path, &st, err);
    for (int k = 0; rc == REEL_OK && k < 5; k++) {
        for (int side = 0; side < 2; side++) {
            char *sql = reel_asprintf("SELECT count(*) FROM (SELECT %s FROM %s%s EXCEPT SELECT "
                                      "%s FROM %s%s)",
                                      ud_cols[k], side ? "" : "idx_", ud_table[k], ud_cols[k],
                                      side ? "idx_" : "", ud_table[k]);
            sqlite3_stmt *c = NULL;
            if ((rc = reel_index_prepare(m, sql, &c, err)) == REEL_OK &&
                sqlite3_step(c) == SQLITE_ROW)
                (side ? d->extra : d->lacking)[k] = (uint64_t)sqlite3_column_int64(c, 0);
            sqlite3_finalize(c);
            free(sql);
        }
    }
    sqlite3_close(m);
    return rc;
}

reel_rc reel_journal_write_from(sqlite3 *db, const char *path, const char *aside, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char *newpath = reel_asprintf("%s.new", path);
    jstate j = {0};
    reel_buf_init(&j.block, 0);
    reel_buf_init(&j.frames, 0);
    int out = -1, fixed = 0;
    /* The old journal's lock keeps writers out until the new one is in
     * place (they then find it replaced and append to the new one). Their
     * SQLite commit waits for the journal, so what db shows now is what
     * the old journal should have held. */
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "locking %s", path);
        goto out;
    }
    if ((rc = reel_index_exec(db, "BEGIN", err)) != REEL_OK)
        goto out;
    size_t nuser = sizeof snapshot_q / sizeof *snapshot_q;
    for (size_t i = 0; rc == REEL_OK && i < nuser + sizeof drops_q / sizeof *drops_q; i++) {
        sqlite3_stmt *st = NULL;
        if ((rc = reel_index_prepare(db, i < nuser ? snapshot_q[i] : drops_q[i - nuser], &st,
                                     err)) != REEL_OK)
            break;
        int step;
        while (rc == REEL_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
            sqlite3_value *v[8];
            for (int c = 0; c < 8; c++)
                v[c] = sqlite3_column_value(st, c);
            rc = journal_values(&j, v, err);
        }
        if (rc == REEL_OK && step != SQLITE_DONE)
            rc = reel_index_db_error(err, REEL_DB, db);
        sqlite3_finalize(st);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc == REEL_OK)
        rc = flush_block(&j, err);
    if (rc != REEL_OK)
        goto out;
    out = open(newpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", newpath);
        goto out;
    }
    give(out, newpath);
    if ((rc = write_all(out, j.frames.data, j.frames.len, newpath, err)) != REEL_OK)
        goto out;
    if (fsync(out) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "syncing %s", newpath);
        goto out;
    }
    if (fd >= 0 && link(path, aside) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "keeping the old journal as %s", aside);
        goto out;
    }
    if (rename(newpath, path) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "replacing %s", path);
        goto out;
    }
    fixed = 1;
    sync_dir_of(path);
out:
    if (out >= 0)
        close(out);
    if (!fixed)
        unlink(newpath);
    if (fd >= 0)
        close(fd); /* releases the lock */
    reel_buf_free(&j.block);
    reel_buf_free(&j.frames);
    reel_spool_enc_free(j.enc);
    free(newpath);
    return rc;
}
