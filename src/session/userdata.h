/* An import's annotations, tags and marks, added to the index in one
 * transaction (the HAR and mitmproxy importers: har.c, mitm.c). The
 * session's connection journals them (journal.h). */
#ifndef REEL_SESSION_USERDATA_H
#define REEL_SESSION_USERDATA_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *ann, *tag, *mark, *flag;
    int began;
    uint64_t annotated, tagged, marked; /* rows added so far */
} reel_userdata_t;

/** Begins the transaction (BEGIN IMMEDIATE) on db and prepares its
 * statements. reel_userdata_end must follow, whatever this returns. */
reel_rc reel_userdata_begin(reel_userdata_t *u, sqlite3 *db, reel_err_t *err);

/** A note of text[0..n) on flow id, made at us. */
reel_rc reel_userdata_note(reel_userdata_t *u, uint64_t id, int64_t us, const char *text, size_t n,
                           reel_err_t *err);

/** Tag tag (NUL-terminated) on flow id (once). */
reel_rc reel_userdata_tag(reel_userdata_t *u, uint64_t id, const char *tag, reel_err_t *err);

/** Marks flow id, at us (once), and its flows row. */
reel_rc reel_userdata_mark(reel_userdata_t *u, uint64_t id, int64_t us, reel_err_t *err);

/** Commits when rc is REEL_OK (returning COMMIT's error, if any), else
 * rolls back; frees the statements. Returns the outcome. */
reel_rc reel_userdata_end(reel_userdata_t *u, reel_rc rc, reel_err_t *err);

#endif
