/* An import's annotations, tags and marks in one transaction; see
 * userdata.h. */
#include "session/userdata.h"

#include <string.h>

#include "session/index.h"
#include "session/journal.h"

/* A commit the journal refused (no space for it, say) names the journal's
 * error, not SQLite's "constraint failed". */
static reel_rc db_error(const reel_userdata_t *u, reel_err_t *err) {
    if (reel_journal_failed(u->db))
        return reel_err_set(err, REEL_IO, "%s", reel_journal_errmsg(u->db));
    return reel_index_db_error(err, REEL_DB, u->db);
}

static reel_rc step(const reel_userdata_t *u, sqlite3_stmt *st, reel_err_t *err) {
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    return r == SQLITE_DONE ? REEL_OK : db_error(u, err);
}

reel_rc reel_userdata_begin(reel_userdata_t *u, sqlite3 *db, reel_err_t *err) {
    memset(u, 0, sizeof *u);
    u->db = db;
    if (reel_index_begin_write(db) != SQLITE_OK)
        return db_error(u, err);
    u->began = 1;
    if (sqlite3_prepare_v2(db, "INSERT INTO annotations(flow_id, created_us, text) VALUES(?, ?, ?)",
                           -1, &u->ann, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO tags(flow_id, tag) VALUES(?, ?)", -1, &u->tag,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO marks(flow_id, created_us) VALUES(?, ?)", -1,
                           &u->mark, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE flows SET marked = 1 WHERE id = ?", -1, &u->flag, NULL) !=
            SQLITE_OK)
        return db_error(u, err);
    return REEL_OK;
}

reel_rc reel_userdata_note(reel_userdata_t *u, uint64_t id, int64_t us, const char *text, size_t n,
                           reel_err_t *err) {
    sqlite3_bind_int64(u->ann, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(u->ann, 2, us);
    sqlite3_bind_text64(u->ann, 3, text, n, SQLITE_STATIC, SQLITE_UTF8);
    reel_rc rc = step(u, u->ann, err);
    if (rc == REEL_OK)
        u->annotated++;
    return rc;
}

reel_rc reel_userdata_tag(reel_userdata_t *u, uint64_t id, const char *tag, reel_err_t *err) {
    sqlite3_bind_int64(u->tag, 1, (sqlite3_int64)id);
    sqlite3_bind_text(u->tag, 2, tag, -1, SQLITE_STATIC);
    reel_rc rc = step(u, u->tag, err);
    if (rc == REEL_OK)
        u->tagged++;
    return rc;
}

reel_rc reel_userdata_mark(reel_userdata_t *u, uint64_t id, int64_t us, reel_err_t *err) {
    sqlite3_bind_int64(u->mark, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(u->mark, 2, us);
    sqlite3_bind_int64(u->flag, 1, (sqlite3_int64)id);
    reel_rc rc = step(u, u->mark, err);
    if (rc == REEL_OK)
        rc = step(u, u->flag, err);
    if (rc == REEL_OK)
        u->marked++;
    return rc;
}

reel_rc reel_userdata_end(reel_userdata_t *u, reel_rc rc, reel_err_t *err) {
    if (rc == REEL_OK && u->began && sqlite3_exec(u->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_error(u, err);
    sqlite3_finalize(u->ann);
    sqlite3_finalize(u->tag);
    sqlite3_finalize(u->mark);
    sqlite3_finalize(u->flag);
    if (rc != REEL_OK && u->began)
        sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
    u->ann = u->tag = u->mark = u->flag = NULL;
    u->began = 0;
    return rc;
}
