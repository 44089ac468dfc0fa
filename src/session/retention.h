/* Retention: drops whole oldest spool segments, with their index rows, once
 * a session passes retention_max_bytes, retention_max_age or
 * retention_max_flows; records what it dropped in the `retention` table;
 * and `reel compact`, which rewrites the spool without the records of
 * flows the index no longer has.
 *
 * A segment is kept (skipped, not dropped) while any flow with records in
 * it is open or carries user data (a mark, a tag or an annotation): those
 * flows keep every record, in place. A flow that straddles a dropped
 * segment and a kept one is dropped whole; its records in the kept segment
 * are leftovers listed in `retired_flows` (verify and repair ignore them,
 * compact removes them). See docs/format.md, "Retention". */
#ifndef REEL_SESSION_RETENTION_H
#define REEL_SESSION_RETENTION_H

#include <sqlite3.h>
#include <stdint.h>

#include "base/error.h"
#include "session/session.h"

/** Limits; 0 = no limit. */
typedef struct {
    uint64_t max_bytes;  /* bytes of all segment files together */
    int64_t max_age_s;   /* a closed segment whose last write (or any later
                            segment's, if earlier) is older goes */
    uint64_t max_flows;  /* flows in the index */
} reel_retention_limits_t;

/** What one run dropped. */
typedef struct {
    uint32_t segments;
    uint64_t flows, bytes;
    uint32_t kept; /* segments over a limit kept for open or user-data flows */
    /* Closed segments whose last write is dated over a second after now_us
     * (the clock was set back, or the file touched), the oldest of them,
     * and how far ahead the furthest is. Their age is taken as that of the
     * newer segments after them (docs/format.md, section 6a). */
    uint32_t future, future_seg;
    int64_t future_s;
} reel_retention_result_t;

/** Called around each write transaction of reel_retention_run: take()
 * before its BEGIN IMMEDIATE, give() after its COMMIT or ROLLBACK, on the
 * thread running retention. A recorder uses them to have its index thread,
 * which otherwise holds the write lock nearly all the time under load,
 * step aside for that one transaction (SQLite's busy handler alone rarely
 * catches the lock free). */
typedef struct {
    void (*take)(void *ctx);
    void (*give)(void *ctx);
    void *ctx;
} reel_retention_lock_t;

/** Drops, oldest first, segments numbered below `below` (the segment being
 * written, or the first one not fully indexed, and everything after it is
 * never touched) while a limit is exceeded. db is a read-write connection
 * the caller owns; index rows go in transactions of at most 512 flows, so
 * other writers wait for one short transaction at a time. lock (borrowed;
 * NULL: none) brackets each of those transactions. The segment file is
 * unlinked after its rows are gone. Returns REEL_DB / REEL_IO with err
 * set; what was dropped before the error stays dropped and recorded. */
reel_rc reel_retention_run(sqlite3 *db, const char *spool_dir, uint32_t below,
                           const reel_retention_limits_t *lim, int64_t now_us,
                           const reel_retention_lock_t *lock, reel_retention_result_t *out,
                           reel_err_t *err);

/** Finishes drops a crash interrupted: for every segment in `retention`
 * whose frames are still indexed or whose file still exists, deletes the
 * rows and the file; of one compact listed, only the file (the rebuild
 * compact began, which recovery does again, replaces the rows). Called by
 * recovery before it looks at the spool. */
reel_rc reel_retention_finish(sqlite3 *db, const char *spool_dir, reel_err_t *err);

/** What reel_retention_settle did. */
typedef struct {
    unsigned compacted; /* files of compacted segments deleted */
    unsigned dropped;   /* retention's drops finished (rows and file) */
    unsigned kept;      /* segments unlisted instead: a flow in them has user data */
    uint64_t bytes;     /* size of the files deleted */
} reel_retention_settled_t;

/** For repair, around its rebuild: every segment `retention` lists whose
 * file is still there (the drop was in the journal, or listed, when the
 * process died before the file went; session.db may be lost since). With
 * before_rebuild, the ones compact listed lose their file (their records
 * are in compact's new segments, and would be indexed twice); otherwise
 * retention's are dropped as retention does (rows, then file), unless a
 * flow with records in one has annotations, tags or a mark (as it may
 * since, if the drop never reached the index): that one is kept, its
 * `retention` row deleted. Adds to *out. Returns REEL_DB / REEL_IO. */
reel_rc reel_retention_settle(sqlite3 *db, const char *spool_dir, int before_rebuild,
                              reel_retention_settled_t *out, reel_err_t *err);

/** Removes the new segments a `reel compact` that died left under their
 * temporary names (spool/.compact-NNNNNNNN): never part of the spool,
 * only taking room. Called by recovery, with the session's lock held (a
 * compact holds it while it runs). Returns how many files went; *bytes
 * (may be NULL) their size. */
unsigned reel_retention_compact_leftovers(const char *spool_dir, uint64_t *bytes);

/** Deletes the index rows of flows listed in retired_flows (a rebuild from
 * the spool brings them back from their leftover records). */
reel_rc reel_retention_reapply(sqlite3 *db, reel_err_t *err);

/** 1 if segment n was dropped on purpose (listed in `retention`). */
int reel_retention_is_retired(sqlite3 *db, uint32_t n);

/** Rewrites the spool of s (opened with REEL_OPEN_RECORD) keeping only the
 * records of flows the index has, into new segments numbered after the
 * newest (frames of reel_spool_block_size(segment_size, block_size)
 * records), then records the old ones as retired (reason 'compact'),
 * deletes them and rebuilds the index. *report (owned) says what it did. */
reel_rc reel_retention_compact(reel_session_t *s, uint64_t segment_size, size_t block_size,
                               char **report, reel_err_t *err);

#endif
