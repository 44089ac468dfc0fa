/* The user-data journal: spool/journal.zst (docs/format.md, "The journal").
 *
 * Annotations, tags, marks, the config overlay and its history live in
 * session.db, which the spool cannot rebuild. So every change to them is
 * also appended to the journal, a file in the spool's own format (zstd
 * frames of length-delimited Records, here with the `edit` event), by
 * whichever process makes it: a CLI command writes beside a running
 * recorder, which owns the segments. An index rebuilt from the spool then
 * gets its user data back by replaying the journal.
 *
 * Journaling hangs off the SQLite connection: temporary triggers on the
 * user-data tables collect the changes, and the commit appends them as one
 * frame (one O_APPEND write under flock, then fdatasync) before it
 * completes; if the append fails, the transaction is rolled back. Every
 * writer of user data on an attached connection is journaled without
 * knowing it. */
#ifndef REEL_SESSION_JOURNAL_H
#define REEL_SESSION_JOURNAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"

/** File name of the journal in the spool directory. */
#define REEL_JOURNAL_NAME "journal.zst"

/** Journals from now on every change db makes to annotations, tags, marks,
 * config_overlay and config_history, and to retention and retired_flows
 * (the drops of retention and compact), into the journal at path
 * (borrowed; copied). If db's meta has no `journal` key (an index made by
 * an older reel, whose user data was never journaled), first appends what
 * db holds now, and sets it; likewise its drops without `journal_drops`.
 * Returns REEL_DB if the triggers cannot be made, or the error of that
 * first append (journaling is attached all the same). */
reel_rc reel_journal_attach(sqlite3 *db, const char *path, reel_err_t *err);

/** Whether the last statement on db failed because its commit could not
 * append to the journal (SQLite itself says only "constraint failed"). */
int reel_journal_failed(sqlite3 *db);

/** Why the last statement on db failed, for an error message: what the
 * journal append said (e.g. "writing .../journal.zst: No space left on
 * device; the change was not made") when reel_journal_failed(db), else
 * sqlite3_errmsg(db). Borrowed: valid until the next statement on db. */
const char *reel_journal_errmsg(sqlite3 *db);

/** What a replay or a check found. */
typedef struct {
    uint64_t frames;     /* valid frames */
    uint64_t records;    /* edit records applied (replay) or read (check) */
    uint64_t drops;      /* of those, drops of retention and compact (not in records) */
    uint64_t bad_ranges; /* damaged byte ranges skipped */
    uint64_t bad_bytes;
    uint64_t bad_off;    /* offset of the first damaged range */
    char reason[200];    /* what was wrong there */
} reel_journal_stats_t;

/** Applies the journal at path to db's user-data tables (and retention,
 * retired_flows), oldest change first, in one transaction; flows.marked
 * follows the marks. Damaged frames are skipped (counted in *st). A
 * missing journal applies nothing. db's own journaling, if attached, is
 * off meanwhile: nothing is journaled twice. Returns REEL_IO if the file
 * cannot be read, REEL_DB on SQLite errors. */
reel_rc reel_journal_replay(sqlite3 *db, const char *path, reel_journal_stats_t *st,
                            reel_err_t *err);

/** Reads every frame of the journal at path and checks that it decodes to
 * edit records (*st). Returns REEL_OK (a missing file is an empty
 * journal), or REEL_IO if it cannot be read. */
reel_rc reel_journal_check(const char *path, reel_journal_stats_t *st, reel_err_t *err);

/** If the journal at path has damaged ranges, writes it anew with only its
 * valid frames; the old file is kept as `aside` (hard link). *fixed is set
 * to 1 when it did. Writers wait on the journal's lock meanwhile. */
reel_rc reel_journal_rewrite(const char *path, const char *aside, int *fixed,
                             reel_journal_stats_t *st, reel_err_t *err);

/** How the user data a journal gives, replayed onto empty tables, differs
 * from an index's: per table (annotations, tags, marks, config_overlay,
 * config_history, in that order), the index's rows the journal does not
 * give (`lacking`), and the rows it gives that the index does not have
 * (`extra`). */
typedef struct {
    uint64_t lacking[5], extra[5];
    int missing; /* there is no journal file */
} reel_journal_diff_t;

/** Names of the tables of reel_journal_diff_t, singular ("annotation",
 * "tag", "mark", "overlay key", "config change"). */
extern const char *const reel_journal_what[5];

/** Compares the journal at path, replayed into a scratch in-memory
 * database, with db's user data (*d). Damaged frames are skipped, as a
 * replay does. Returns REEL_IO if the file cannot be read, REEL_DB on
 * SQLite errors. */
reel_rc reel_journal_compare(sqlite3 *db, const char *path, reel_journal_diff_t *d,
                             reel_err_t *err);

/** Writes the journal at path anew from the user data and drops db holds
 * now (as the changes that make it, as the first journal of an older index
 * does);
 * the old file, if any, is kept as `aside` (hard link). Writers wait on the
 * old journal's lock meanwhile and then append to the new one. */
reel_rc reel_journal_write_from(sqlite3 *db, const char *path, const char *aside, reel_err_t *err);

#endif
