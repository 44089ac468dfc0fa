/* The SQLite index of a session (schema/NNN_*.sql, documented in docs/format.md).
 *
 * reel_index_open applies migrations; the writer turns decoded spool blocks
 * into rows: the same code indexes live recording, recovery and repair, so
 * the three can never disagree. */
#ifndef REEL_SESSION_INDEX_H
#define REEL_SESSION_INDEX_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"
#include "flow.pb-c.h"

/** Current schema version (PRAGMA user_version after migrations). */
int reel_index_schema_version(void);

/** reel_index_open's `how`: create the database if it is not there */
#define REEL_INDEX_CREATE 1
/** ... and the connection is used by one thread at a time (SQLite's
 * multi-thread mode: no mutex taken per call, which cost the recorder's
 * index thread 7% of its instructions per flow) */
#define REEL_INDEX_ONE_THREAD 2

/** Opens or creates the index at path (WAL mode, busy timeout, foreign
 * functions registered) and migrates it forward. Refuses a database whose
 * version is newer than this build and, unless REEL_INDEX_CREATE is in
 * how (1 does), one that does not read as SQLite or is a zero-length file
 * (REEL_CORRUPT), and an SQLite database without any tables (REEL_NOTFOUND:
 * its writes were lost). Returns owned db. */
reel_rc reel_index_open(const char *path, int how, sqlite3 **out, reel_err_t *err);

/** Opens the index at path for reading only, creating no file beside it
 * (docs/format.md, "Read-only sessions"): through SQLite's mode=ro when a
 * recorder is live (`live`) or session.db-wal holds changes (read through
 * its -shm file, mapped read-only), else with immutable=1 (no locks, no
 * -shm). Changes in a -wal that cannot be read that way are left out, and
 * *note says so. An index of an older schema is copied into memory and
 * migrated there. Refuses what reel_index_open refuses. Returns owned db;
 * *note is an owned sentence about what was left out or done, or NULL. */
reel_rc reel_index_open_readonly(const char *path, int live, sqlite3 **out, char **note,
                                 reel_err_t *err);

/** An index or trigger of the flows table, as the schema defines it. */
typedef struct {
    const char *type; /* "index" or "trigger" */
    const char *name;
    const char *sql; /* its CREATE statement */
} reel_index_object_t;

/** The indexes and triggers that the current schema (schema/NNN_*.sql, applied
 * to an empty database once per process) puts on flows, in the order they
 * are made: what a rebuild that drops them for its bulk load makes again,
 * and what recovery and verify expect. Returns a static array of *n
 * entries, valid until the process ends, or NULL (err set, *n 0) if the
 * schema could not be applied. Thread-safe. */
const reel_index_object_t *reel_index_flows_objects(size_t *n, reel_err_t *err);

/** Counts in *missing the objects of reel_index_flows_objects that db
 * lacks, appending their names, comma-separated, to names (may be NULL).
 * Returns REEL_OK, or the error of reel_index_flows_objects. */
reel_rc reel_index_flows_objects_missing(sqlite3 *db, reel_buf_t *names, size_t *missing,
                                         reel_err_t *err);

/** Makes every object of reel_index_flows_objects that db lacks, from the
 * schema's own definition; *made says how many. Returns REEL_OK, or the
 * error of the first CREATE that failed. */
reel_rc reel_index_flows_objects_restore(sqlite3 *db, size_t *made, reel_err_t *err);

/** Sets err to "session.db: " and db's last error, with the errno behind
 * an I/O error (SQLite's, or the file-size limit or full file system the
 * files' sizes and the free space show); returns rc. */
reel_rc reel_index_db_error(reel_err_t *err, reel_rc rc, sqlite3 *db);

/** Runs sql (no results). Returns REEL_CORRUPT if SQLite finds the file
 * damaged, REEL_DB on other errors. */
reel_rc reel_index_exec(sqlite3 *db, const char *sql, reel_err_t *err);

/** Prepares sql, reporting SQLite's message in err (REEL_CORRUPT or REEL_DB
 * as for reel_index_exec). */
reel_rc reel_index_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, reel_err_t *err);

/* ---- a writer beside a recorder (docs/format.md, section 5) ----
 *
 * A live recorder's index thread holds session.db's write lock nearly all
 * the time under load, committing and beginning again at once, and SQLite's
 * own busy handler (which sleeps 1 to 100 ms between tries) seldom found it
 * free: `reel tag` took seconds and could fail "database is locked". So a
 * process that writes beside a recorder says so with an open file
 * description lock on one byte of the session's lock file
 * (REEL_INDEX_WRITER_BYTE, past the readers' lock) while it waits, and the
 * recorder commits at its next batch end and begins its next transaction
 * only once the writer has the lock (or REEL_INDEX_WRITER_YIELD_MS have
 * passed). */
#define REEL_INDEX_WRITER_BYTE ((off_t)1 << 40)
#define REEL_INDEX_WRITER_YIELD_MS 250

/** Makes the write transactions of db (reel_index_begin_write) say that
 * they wait on lock_fd, the session's lock file opened for writing; a
 * negative lock_fd forgets db. */
void reel_index_writer_signal(sqlite3 *db, int lock_fd);
/** BEGIN IMMEDIATE on db, waiting up to 10 s for the write lock, and
 * saying so while it waits if db was given a lock file. Returns SQLite's
 * result code. */
int reel_index_begin_write(sqlite3 *db);
/** Whether another process waits to write (see above), by the session's
 * lock file. */
int reel_index_writer_waiting(int lock_fd);

/** Reads meta value for key into an owned string (NULL if absent). */
char *reel_index_meta_get(sqlite3 *db, const char *key);
reel_rc reel_index_meta_set(sqlite3 *db, const char *key, const char *value, reel_err_t *err);

/** Indexer: turns frames into rows. Owned by one thread. */
typedef struct reel_indexer reel_indexer_t;

reel_rc reel_indexer_new(sqlite3 *db, reel_indexer_t **out, reel_err_t *err);
void reel_indexer_free(reel_indexer_t *ix);

/** Bulk load (repair): the body index fills its FTS without a budget. */
void reel_indexer_bulk(reel_indexer_t *ix);
/** Yields the core after every ns of writing rows (base/pace.h), so that
 * a thread waiting for it (the proxy's event loop) runs within about ns
 * rather than after the whole frame; 0 (the default) never yields. */
void reel_indexer_pace(reel_indexer_t *ix, int64_t ns);
/** Says that nothing on the indexer's connection adds marks (the
 * recorder's own connection): a transaction begun while the marks table is
 * empty then writes new rows unmarked without looking for their marks. */
void reel_indexer_marks_fixed(reel_indexer_t *ix);
/** Checks every record of a decoded frame against the schema, as
 * unpacking would (reel_pbwire_check): 0 if all pass, else -1 with the
 * first that does not named in reason. Touches no indexer: a rebuild's
 * scan runs it on the threads that decode (reel_spool_scan_ahead_vet),
 * takes a frame it refuses for a damaged one, and indexes the others with
 * reel_indexer_add_own_frame. */
int reel_indexer_vet_frame(const uint8_t *raw, size_t rlen, char reason[static 200]);
/** Begins a transaction. */
reel_rc reel_indexer_begin(reel_indexer_t *ix, reel_err_t *err);
/** Indexes one decoded frame at (segment, off) with its records. */
reel_rc reel_indexer_add_frame(reel_indexer_t *ix, uint32_t segment, uint64_t off, size_t clen,
                               const uint8_t *raw, size_t rlen, reel_err_t *err);
/** The same for a frame this process's recorder has just written, from
 * the records in memory rather than read back: its records are read in
 * place without first being checked against the schema as unpacking would
 * check them (they come from protobuf-c's packing or from the hand
 * encoders that pbhead_test holds to it; the check was an eighth of the
 * indexer's instructions per small flow). Also for a frame read from disk
 * that reel_indexer_vet_frame passed. Other frames read from disk go
 * through reel_indexer_add_frame. */
reel_rc reel_indexer_add_own_frame(reel_indexer_t *ix, uint32_t segment, uint64_t off, size_t clen,
                                   const uint8_t *raw, size_t rlen, reel_err_t *err);
/** Writes the pending flow rows and commits. */
reel_rc reel_indexer_commit(reel_indexer_t *ix, reel_err_t *err);
/** Rolls back the open transaction, forgetting pending rows. */
void reel_indexer_rollback(reel_indexer_t *ix);

/** Appends the URL of a request head to out, as the index stores it:
 * scheme://host[:port]target, the port left out when it is the scheme's
 * default or 0, an IPv6 host in brackets, "/" for an empty target; the
 * target alone when there is no host (a request refused before reel knew
 * it). */
void reel_index_url(const Reel__RequestHead *h, reel_buf_t *out);

/** The value of the first header named name (any case) of h[0..n), or NULL. */
const ProtobufCBinaryData *reel_index_header(Reel__Header **h, size_t n, const char *name);

/** Whether an Upgrade field's value v (NULL: none) names websocket among
 *  its tokens. */
int reel_index_upgrade_is_websocket(const ProtobufCBinaryData *v);

/** Highest flow id the index has held (0 if none): the highest in flows,
 * or meta max_flow_id if repair dropped flows above that. */
uint64_t reel_index_max_flow_id(sqlite3 *db);
/** The highest client connection number of the session's flows (0: none):
 * a resumed proxy numbers its connections after it. */
uint64_t reel_index_max_client_conn(sqlite3 *db);
/* Makes client_conns (schema 11: each client connection's range of flow
 * ids, for ~conn) again from flows, in a transaction of its own: the end
 * of a rebuild, which writes rows in bulk and keeps old ones by SQL. */
reel_rc reel_index_client_conns_remake(sqlite3 *db, reel_err_t *err);
/* Each client connection's range of flow ids as flows holds it: what
 * client_conns must cover (rows conn, lo, hi), for the remake and for
 * `reel verify`'s check of it. */
#define REEL_INDEX_CONN_RANGES                                                                     \
    "SELECT client_conn AS conn, min(id) AS lo, max(id) AS hi FROM flows WHERE client_conn IS "    \
    "NOT NULL GROUP BY client_conn"

/** End offset (offset + clen) of the last indexed frame of segment, 0 if none. */
uint64_t reel_index_segment_end(sqlite3 *db, uint32_t segment);

/** Highest segment number with indexed frames, 0 if none. */
uint32_t reel_index_last_segment(sqlite3 *db);

#endif
