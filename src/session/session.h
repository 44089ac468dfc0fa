/* A capture session on disk: <home>/<name>/{session.db, spool/, lock}.
 *
 * Opening a session runs recovery when no recorder holds it: frames in the
 * spool past what the index knows are verified and indexed, a torn trailing
 * frame is moved aside into recovered/, and an index that refers to spool
 * bytes that are gone is rebuilt from the spool, and so is one whose
 * rebuild (repair, compact) was interrupted. What recovery did is reported
 * by reel_session_recovery_note(). */
#ifndef REEL_SESSION_SESSION_H
#define REEL_SESSION_SESSION_H

#include <sqlite3.h>
#include <stdint.h>

#include "base/error.h"

typedef struct reel_session reel_session_t;

/** Longest session name accepted. */
#define REEL_SESSION_NAME_MAX 128

enum {
    REEL_OPEN_CREATE = 1 << 0, /* create the session if it does not exist */
    REEL_OPEN_RECORD = 1 << 1, /* take the recorder lock; fail if held */
    REEL_OPEN_NEW = 1 << 2,    /* with CREATE: fail if it already exists */
    REEL_OPEN_REPAIR = 1 << 3, /* for reel_session_repair: no recovery, and open even
                                  when session.db is unreadable (repair replaces it) */
    REEL_OPEN_READ = 1 << 4,   /* a read command: a session this user cannot write opens
                                  read-only (see reel_session_open) instead of failing */
    REEL_OPEN_REMOVE = 1 << 5, /* for reel_session_remove: the lock alone, no index,
                                  whatever this user can write in the session (removing
                                  needs its directory's permissions, not its files') */
};

/** Resolves the sessions root: override if non-NULL and non-empty, else
 * $REEL_HOME, else $XDG_DATA_HOME/reel/sessions, else
 * ~/.local/share/reel/sessions. Returns owned. */
char *reel_session_home(const char *override);

/** Checks a session name: 1..REEL_SESSION_NAME_MAX (128) bytes of ASCII
 * letters, digits, '-', '_' and '.', not starting with '.' or '-' (so never
 * "." or ".." or a path). Returns REEL_INVALID with a message naming the
 * first bad character and stating the rule. */
reel_rc reel_session_name_check(const char *name, reel_err_t *err);

/** Checks a tag by the same rule, which also allows ':' and '/'. */
reel_rc reel_session_tag_check(const char *tag, reel_err_t *err);

/** Opens (or creates, per flags) session `name` under `home` (created 0700
 * when missing). Returns REEL_NOTFOUND, REEL_EXISTS, REEL_LOCKED (another
 * process is at it: a recorder, or a rebuild that readers must wait for; the
 * message names its PID), REEL_CORRUPT (session.db is damaged, empty, not a
 * reel index, or left half rebuilt; the message says so and names `reel
 * repair`) or
 * REEL_DB with a message. With REEL_OPEN_REPAIR a damaged session.db is
 * not an error: reel_session_db() is then NULL until repair.
 *
 * A session this user cannot write (a read-only mount, another user's
 * files) opens, with REEL_OPEN_READ, read-only: no lock, no recovery (the
 * note says what it would have done), no journal, and no file created or
 * changed (reel_index_open_readonly). Without REEL_OPEN_READ it is
 * REEL_IO, the message naming what is not writable and the fix. */
reel_rc reel_session_open(const char *home, const char *name, int flags, reel_session_t **out,
                          reel_err_t *err);

/** Closes s, releasing the lock; accepts NULL. */
void reel_session_close(reel_session_t *s);

/** Borrowed accessors, valid until close. */
sqlite3 *reel_session_db(reel_session_t *s);
const char *reel_session_name(const reel_session_t *s);
const char *reel_session_path(const reel_session_t *s);
/** Path of the spool directory. */
const char *reel_session_spool_dir(const reel_session_t *s);
/** Bytes of the files of the session at path dir (session.db and its -wal
 * and -shm, spool/): what reel ls and the web UI show as its size. */
unsigned long long reel_session_dir_bytes(const char *dir);

/** 1 if this handle holds the recorder lock. */
int reel_session_is_recording(const reel_session_t *s);

/** PID of the process recording into the session, 0 if none. */
long reel_session_recorder_pid(reel_session_t *s);

/** When the process recording into the session started (microseconds
 * since the epoch: it writes its pid into the lock file then), 0 if none
 * records. */
int64_t reel_session_recorder_since(reel_session_t *s);

/** Why the session was opened read-only (the path not writable, and why),
 * or NULL if it was opened for writing; borrowed. */
const char *reel_session_readonly(const reel_session_t *s);

/** What recovery did on open ("" if nothing); borrowed. */
const char *reel_session_recovery_note(const reel_session_t *s);

/** Root (euid 0) making a file or directory in a session that another
 * user owns gives it to that user, the owner of session_dir (the session's
 * directory): a root-owned journal, segment, recovered/ or session.db in
 * it would keep the owner out ("Permission denied"). fd is the file open
 * (or -1: path is used). Does nothing for other users, when the session
 * directory is root's, or for a file that is not root's; if chown fails
 * the file stays root's. */
void reel_session_give(const char *session_dir, int fd, const char *path);

/** Opens segment n of s's spool for reading; returns the fd or -1 (errno). */
int reel_session_open_segment(const reel_session_t *s, uint32_t n);

/** Why a segment the index lists could not be opened (ENOENT). */
typedef enum {
    REEL_SEGMENT_MISSING, /* lost: damage ('reel verify' lists it) */
    REEL_SEGMENT_DROPPED, /* retention or compact has dropped it since */
    REEL_SEGMENT_REMOVED, /* the session has been deleted ('reel rm') */
} reel_segment_gone_t;

/** Why segment n of s, listed by the index as a reader's transaction sees
 * it, is not there: looks at the session directory and at `retention` as
 * committed now, through a connection of its own (s's may be inside a
 * read transaction that began before the drop). */
reel_segment_gone_t reel_session_segment_gone(const reel_session_t *s, uint32_t n);

/** Rebuilds the index (flows, frames) from the spool, keeping annotations,
 * tags, marks and the config overlay. Corrupt frames are skipped and
 * recorded in the damage table, and so are missing segments; flows that
 * had records in a missing segment are marked with an error. If session.db
 * itself is damaged (unreadable, or SQLite's quick_check fails) it is moved
 * aside into recovered/ and replaced by a new index, into which the user
 * data that still reads is copied (the report says what was lost).
 * A process killed while it rebuilds leaves what the next one to hold the
 * lock needs to rebuild again (docs/format.md, "Rebuilding").
 * *report receives an owned summary. Needs the session opened with
 * REEL_OPEN_RECORD (and REEL_OPEN_REPAIR to get past a damaged index) or
 * unlocked (it takes the lock). */
reel_rc reel_session_repair(reel_session_t *s, char **report, reel_err_t *err);

/** Problems found by verify, one per line in *report (owned). Returns
 * REEL_OK when the spool and index agree (known, repaired damage is listed
 * but does not fail), REEL_CORRUPT otherwise. */
reel_rc reel_session_verify(reel_session_t *s, char **report, reel_err_t *err);

/** Deletes the session directory: renames it to a hidden name first, so
 * that a reader still in it finds the whole session gone (not a segment
 * missing), then deletes that. Refuses (REEL_LOCKED) while recording. */
reel_rc reel_session_remove(const char *home, const char *name, reel_err_t *err);

/** How the error of a flow that lost records to a disk outage begins, in
 * the recorder's CaptureGap and FlowError in place of its end; recovery
 * finds such a flow by it. */
#define REEL_GAP_MSG "capture was stopped while this flow was running"

/* Internal, for reel compact (retention.c) and the rebuild: */

/** Takes the readers' lock exclusively (docs/format.md, section 5),
 * waiting up to a minute for the processes that read the index to close
 * it; nests. Returns REEL_LOCKED (the message says why) if they do not. */
reel_rc reel__session_readers_exclude(reel_session_t *s, reel_err_t *err);
/** Undoes one reel__session_readers_exclude. */
void reel__session_readers_allow(reel_session_t *s);
/** The session's lock file (-1 if it has none), for the recorder to see
 * a writer wait (reel_index_writer_waiting). */
int reel__session_lock_fd(const reel_session_t *s);
/** Before a change that leaves the index out of step with the spool until
 * a rebuild (reel compact deleting segments): sets meta `rebuilding`, so
 * that readers stay away and the next open rebuilds if this process dies,
 * and excludes readers as above. */
reel_rc reel__session_rebuild_begin(reel_session_t *s, reel_err_t *err);
/** Ends what reel__session_rebuild_begin began: with undo (nothing was
 * changed) it removes meta `rebuilding`; without, it is left to the
 * rebuild, which removes it when it is done. */
void reel__session_rebuild_end(reel_session_t *s, int undo);

/** Current wall-clock time in microseconds since the epoch. */
int64_t reel_now_us(void);

#endif
