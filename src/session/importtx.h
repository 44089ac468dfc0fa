/* Import transactions: what makes `reel import` all or nothing.
 *
 * An import records through an ordinary recorder while it holds the
 * session's lock, so what it adds is exactly the spool past the point where
 * it began and the flows from its first id on. Before its first record it
 * writes that point to `import` in the session directory (docs/format.md,
 * "Imports") and syncs it; once everything it recorded is in the spool and
 * indexed (and a mitmproxy file's comments and marks are applied) it
 * removes the file, synced: that is its commit. An import that stops before
 * (a signal, a disk error) undoes itself; one that was killed leaves the
 * file, and the next open of the session (recovery, or `reel repair`) undoes
 * it: segments after the point's are removed, the point's segment is cut
 * back to its offset, and the index loses the flows from the first id on,
 * with the annotations, tags and marks they got meanwhile (journaled).
 * The flows that were there before are not touched. */
#ifndef REEL_SESSION_IMPORTTX_H
#define REEL_SESSION_IMPORTTX_H

#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"
#include "session/session.h"

/** File name of the rollback point in the session directory. */
#define REEL_IMPORTTX_NAME "import"

/** Where an import began, and who ran it. */
typedef struct {
    uint32_t segment;  /* the spool's end when it began: this segment ... */
    uint64_t offset;   /* ... at this offset (its size then) */
    uint64_t first_id; /* the id its first flow got */
    int64_t started_us;
    long pid;
    int created;    /* the import made the session */
    char file[256]; /* the file it read, as given (control bytes as '?', cut) */
} reel_importtx_point_t;

/** What undoing an import took away. */
typedef struct {
    uint64_t flows;       /* flows the index had from first_id on */
    uint64_t first, last; /* their lowest and highest ids (0: none) */
    uint64_t user_rows;   /* annotations, tags and marks they had */
    uint64_t bytes;       /* spool bytes cut or removed */
    uint32_t segments;    /* segment files removed (after the point's) */
} reel_importtx_undone_t;

/** Writes p to `import` in s's directory (s opened with REEL_OPEN_RECORD,
 * nothing recorded yet) and syncs it and the directory: from now on an
 * interrupted import is undone. Returns REEL_EXISTS if the session already
 * has one (it is undone on open, so only a concurrent bug gets here) or
 * REEL_IO. */
reel_rc reel_importtx_begin(reel_session_t *s, const reel_importtx_point_t *p, reel_err_t *err);

/** The import is whole: removes `import` and syncs the directory. Returns
 * REEL_IO if it cannot (the import is then undone by the next open). */
reel_rc reel_importtx_commit(reel_session_t *s, reel_err_t *err);

/** Reads the point left in the session directory at path. *found is 0 when
 * there is none (REEL_OK). Returns REEL_IO if it cannot be read, REEL_CORRUPT
 * (the message names the file) if it does not parse. */
reel_rc reel_importtx_read(const char *session_path, reel_importtx_point_t *p, int *found,
                           reel_err_t *err);

/** Undoes the import p describes in s, whose lock this process holds with
 * no recorder running: cuts the spool back (the segment files after the
 * point's are removed, the point's is truncated to the offset; both synced),
 * deletes the index rows of the flows from p->first_id on and of the frames
 * past the point, and the annotations, tags and marks of those flows (through
 * s's journaled connection), then removes `import`. Each step is safe to
 * repeat: when one fails, `import` stays and the next open finishes. *u
 * (may be NULL) says what went. Returns REEL_IO or REEL_DB. */
reel_rc reel_importtx_undo(reel_session_t *s, const reel_importtx_point_t *p,
                           reel_importtx_undone_t *u, reel_err_t *err);

/** Appends to b a sentence saying what undoing p took away (u). */
void reel_importtx_describe(const reel_importtx_point_t *p, const reel_importtx_undone_t *u,
                            reel_buf_t *b);

#endif
