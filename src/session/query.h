/* Queries over a session's index for the user interfaces: the CLI, and the
 * terminal and web UIs to come, ask the same questions through this module
 * and never run SQL themselves.
 *
 * What it answers: a page of the flow list (filter language, sort on an
 * indexed column, limit/offset or a keyset cursor, so that a UI pages a
 * million flows in constant time per page), one flow's row, counts, the
 * session summary `reel show` prints, annotations (list, add, edit,
 * delete), tags and marks, per flow or for every flow a filter matches, and
 * the config overlay's rows and history.
 *
 * Results are plain C structs: the CLI prints them for people, and each UI
 * serialises them its own way. One JSON shape is shared on purpose:
 * reel_query_flow_json() builds the object `reel flows --json` prints, so a
 * web API can serve the same rows scripts already read.
 *
 * Errors: REEL_NOTFOUND ("no flow 7 in session 's'"), REEL_INVALID (a bad
 * filter, with its column, a bad tag or note, a bad page size), REEL_LIMIT
 * (a filter past its limits or a regex past PCRE2's), and for SQLite
 * failures REEL_CORRUPT when SQLite finds session.db damaged, else REEL_DB,
 * both with a message "session.db: <SQLite's message>" (or "filter: ..."
 * from the filter module). Writes run in one BEGIN IMMEDIATE transaction
 * each: all of it or none of it happens.
 *
 * Ownership: the session is borrowed by every call. Rows passed to a
 * callback are borrowed for that call; rows in a page or filled by
 * reel_query_flow() are owned by the page/struct until its free/clear. */
#ifndef REEL_SESSION_QUERY_H
#define REEL_SESSION_QUERY_H

#include <stdatomic.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "session/session.h"

/** A nullable integer column holds this when it is NULL (no status yet, no
 * end time, ...). */
#define REEL_QUERY_NULL INT64_MIN

/** Largest page reel_query_flows() returns. */
#define REEL_QUERY_PAGE_MAX 10000

/** Longest note, in bytes. */
#define REEL_QUERY_NOTE_MAX (64 * 1024)

/** One flow's index row. Strings are NULL when the column is NULL. */
typedef struct {
    int64_t id;
    const char *uuid;
    const char *kind;  /* "http", "websocket", "tunnel" */
    const char *state; /* "open", "complete", "error", "interrupted" */
    const char *source;
    int64_t start_us, request_end_us, response_start_us, end_us; /* REEL_QUERY_NULL if unknown */
    const char *client_addr, *server_addr;
    const char *scheme, *method, *host, *path, *url, *http_version, *reason;
    int64_t port, status; /* REEL_QUERY_NULL if unknown */
    int64_t request_body_size, response_body_size;
    int request_truncated, response_truncated;
    int64_t request_body_dropped, response_body_dropped;
    const char *request_content_type, *response_content_type;
    const char *error;
    int response_generated, damaged, marked;
    int64_t messages;           /* WebSocket / TCP messages */
    int64_t replay_of;          /* reel replay: the flow it re-sent, REEL_QUERY_NULL if none */
    const char *replay_session; /* ... in that session (NULL: this one) */
    int64_t client_conn;        /* the client connection's number in its run, or REEL_QUERY_NULL */
    int64_t stream_id;          /* its HTTP/2 stream, or REEL_QUERY_NULL */
    int64_t annotations;        /* notes on the flow (REEL_QUERY_NULL with no_note_count) */
    const char *const *tags;    /* ntags tags, ascending */
    size_t ntags;
} reel_query_flow_t;

/** Columns the flow list sorts on: each has an index, so every page costs
 * an index seek, whatever the page's position. Ties are broken by id. */
typedef enum {
    REEL_QUERY_SORT_ID,     /* id (= recording order) */
    REEL_QUERY_SORT_START,  /* start_us */
    REEL_QUERY_SORT_HOST,   /* host; flows without one first (ascending) */
    REEL_QUERY_SORT_STATUS, /* status; flows without one first (ascending) */
} reel_query_sort;

/** "id", "start", "host", "status" to *out; REEL_INVALID with the list of
 * names otherwise. */
reel_rc reel_query_sort_parse(const char *name, reel_query_sort *out, reel_err_t *err);

/** A keyset cursor by value: the sort value and id of a row, so that the
 * flow need not exist any more (retention may have dropped it since). For
 * REEL_QUERY_SORT_ID only id counts. */
typedef struct {
    int64_t id;      /* >= 0 (0: before every flow with this value) */
    int null;        /* the sort value is NULL (host, status) */
    int64_t num;     /* start_us or status */
    const char *str; /* host (borrowed) */
} reel_query_cursor_t;

/** Fills *out with row's cursor for sort (str borrows row->host). */
void reel_query_cursor_of(const reel_query_flow_t *row, reel_query_sort sort,
                          reel_query_cursor_t *out);

/** What to list. Zero-initialised: every flow by id ascending. */
typedef struct {
    const char *filter; /* filter expression (docs/filters.md); NULL or "" = every flow */
    int64_t since_us;   /* with has_since: only flows with start_us >= since_us */
    int has_since;
    reel_query_sort sort;
    int desc;         /* descending order */
    size_t limit;     /* rows wanted; 0 = no limit (not for reel_query_flows) */
    size_t offset;    /* matching rows skipped first */
    int64_t after_id; /* keyset cursor, 0 = none: only rows that come after flow after_id in
                       * this order. With REEL_QUERY_SORT_ID any id works; with another sort
                       * the flow must exist (REEL_NOTFOUND otherwise: start over) */
    /* Optional, instead of after_id: only rows that come after this cursor
     * in this order (borrowed). With the order flipped, the rows before it,
     * nearest first: a UI's previous page. */
    const reel_query_cursor_t *cursor;
    /* Optional: restrict the result to these ids (ascending, borrowed; a
     * non-NULL array with n_only_ids 0 selects nothing), which
     * reel_query_ids() found with the same filter: the filter's SQL still
     * applies but its header and body terms are not run again. */
    const int64_t *only_ids;
    size_t n_only_ids;
    /* Only flows still open (state "open"): found through the index of
     * unfinished flows, whatever the session's size. */
    int open_only;
    /* Leave each row's `annotations` at REEL_QUERY_NULL: saves an index
     * probe per row, a tenth of the CPU of listing every flow (the CLI
     * does not show the count). */
    int no_note_count;
    /* Optional: when it turns non-zero, the walk stops at its next row or
     * SQLite step and returns REEL_INTERRUPTED (a web request whose client
     * left: a filter that reads the spool can take minutes on millions of
     * flows, and holds one of the web server's two walk threads until it
     * ends). */
    const atomic_int *cancel;
} reel_query_opts_t;

/** Called with each row in order; the row is borrowed for the call. Return
 * 0 to go on, anything else to stop (the query then returns REEL_OK). */
typedef int (*reel_query_flow_cb)(void *ctx, const reel_query_flow_t *row);

/** Streams every row q selects (q->limit 0 = all) to cb, in one statement
 * (two, one index range after the other, for a cursor on host or status
 * where the rows after it span NULLs and values): memory stays bounded by
 * one row whatever the session's size. A filter with header or body terms
 * reads each candidate flow's records. */
reel_rc reel_query_flows_each(reel_session_t *s, const reel_query_opts_t *q, reel_query_flow_cb cb,
                              void *ctx, reel_err_t *err);

/** A page of the flow list. */
typedef struct {
    reel_query_flow_t *rows; /* n rows, owned */
    size_t n;
    int more; /* 1 when at least one more row matches after the last */
} reel_query_page_t;

/** One page: q->limit rows (1 to REEL_QUERY_PAGE_MAX, else REEL_INVALID)
 * into *page (returns owned; free with reel_query_page_free). The next page
 * is q with after_id = the last row's id (keyset: stable while flows are
 * added) or offset + limit. */
reel_rc reel_query_flows(reel_session_t *s, const reel_query_opts_t *q, reel_query_page_t *page,
                         reel_err_t *err);

/** Frees the rows of page and zeroes it; accepts NULL and a zeroed page. */
void reel_query_page_free(reel_query_page_t *page);

/** The ids q selects, in its order, as an owned array (free()) of *n
 * entries (*out NULL when none). */
reel_rc reel_query_ids(reel_session_t *s, const reel_query_opts_t *q, int64_t **out, size_t *n,
                       reel_err_t *err);

/** Number of flows q selects (q NULL: all, one count(*)); limit, offset,
 * after_id and cursor apply (a limit caps the count: a UI's "10,000+"
 * costs at most that many index steps). */
reel_rc reel_query_count(reel_session_t *s, const reel_query_opts_t *q, int64_t *n,
                         reel_err_t *err);

/** Flow id's row into *out (owned strings; reel_query_flow_clear frees).
 * REEL_NOTFOUND "no flow ID in session 'S'" if there is none. */
reel_rc reel_query_flow(reel_session_t *s, int64_t id, reel_query_flow_t *out, reel_err_t *err);

/** Frees what reel_query_flow or a page filled in f; accepts NULL. */
void reel_query_flow_clear(reel_query_flow_t *f);

/** REEL_OK if flow id exists, else as reel_query_flow. */
reel_rc reel_query_flow_exists(reel_session_t *s, int64_t id, reel_err_t *err);

/** The object `reel flows --json` prints for a row. Returns owned. */
json_t *reel_query_flow_json(const reel_query_flow_t *f);

/** A flow id as every user interface reads one (the CLI's arguments, the
 * web API's paths): ASCII digits only, 1 to INT64_MAX. strtoll would also
 * take " 1", "+1" and "1 " for flow 1: typing slips, not ids. Returns 0
 * and sets *id, or -1. */
int reel_query_parse_flow_id(const char *arg, int64_t *id);

/* ---- the session summary (`reel show`) ---- */

typedef struct {
    int64_t created_us;
    int64_t flows, complete, errors, open, interrupted; /* flows by state */
    int64_t first_us, last_us;                          /* start of the first, last flow; 0 */
    int64_t frames, spool_bytes, raw_bytes, segments;   /* spool, as indexed */
    int64_t index_bytes;                                /* size of session.db */
    int64_t annotations, tagged_flows, marked_flows, overlay_keys, damaged_ranges;
    int64_t ignored_connections; /* CONNECTs to ignore_hosts, relayed unrecorded */
    struct {
        int64_t segments, flows, bytes; /* dropped by retention in all */
        int64_t compacted;              /* segments replaced by `reel compact` */
        int64_t last_segment, last_us, last_flows, last_bytes; /* the last drop */
        char last_reason[32];
    } retention; /* zeros if the retention table cannot be read */
} reel_query_summary_t;

/** Fills *out. Every query is an index lookup or a scan of a small table,
 * so this costs the same on a session of a million flows. A failing query
 * fails the call (a damaged index must not show as zeros). */
reel_rc reel_query_summary(reel_session_t *s, reel_query_summary_t *out, reel_err_t *err);

/* ---- user data: notes, tags, marks ---- */

typedef struct {
    int64_t id; /* the note's number, unique in the session */
    int64_t created_us;
    char *text; /* owned */
} reel_query_note_t;

/** Notes of flow id, oldest first, as an owned array of *n (free with
 * reel_query_notes_free). REEL_NOTFOUND if the flow does not exist. */
reel_rc reel_query_notes(reel_session_t *s, int64_t id, reel_query_note_t **out, size_t *n,
                         reel_err_t *err);
void reel_query_notes_free(reel_query_note_t *notes, size_t n);

/** Checks a note: REEL_INVALID "empty note" or "note longer than 65536
 * bytes". */
reel_rc reel_query_note_check(const char *text, reel_err_t *err);

/** Replaces the text of note `note` of flow id (number and time kept).
 * REEL_NOTFOUND "flow 3 has no note 9" / "no flow ...". */
reel_rc reel_query_note_edit(reel_session_t *s, int64_t id, int64_t note, const char *text,
                             reel_err_t *err);

/** Deletes note `note` of flow id; REEL_NOTFOUND as for edit. */
reel_rc reel_query_note_delete(reel_session_t *s, int64_t id, int64_t note, reel_err_t *err);

/** The flows a write applies to: the ids given (each must exist, else
 * REEL_NOTFOUND and nothing changes; borrowed), or, when ids is NULL,
 * every flow `filter` matches (NULL or "" = every flow). */
typedef struct {
    const int64_t *ids;
    size_t n;
    const char *filter;
} reel_query_target_t;

/** What a write did. */
typedef struct {
    size_t matched;    /* flows targeted (ids given, or flows the filter matched) */
    size_t changed;    /* rows added or removed (tags a flow did not have, ...) */
    size_t flows_changed; /* reel_query_tag: flows that gained or lost a tag */
    int64_t last_note; /* reel_query_annotate: number of the last note added */
} reel_query_result_t;

/** Adds note `text` (checked as reel_query_note_check) to every target. */
reel_rc reel_query_annotate(reel_session_t *s, const reel_query_target_t *t, const char *text,
                            reel_query_result_t *res, reel_err_t *err);

/** Adds (add != 0) or removes tags[0..ntags) on every target; changed
 * counts (flow, tag) pairs added or removed, flows_changed the flows among
 * them. A tag added must pass
 * reel_session_tag_check; one removed need only be 1-128 bytes (an older
 * reel may have stored it). REEL_INVALID otherwise, before any change. */
reel_rc reel_query_tag(reel_session_t *s, const reel_query_target_t *t, const char *const *tags,
                       size_t ntags, int add, reel_query_result_t *res, reel_err_t *err);

/** Tags of flow id, ascending, as an owned array of *n owned strings (free
 * with reel_query_strings_free). REEL_NOTFOUND if the flow does not exist. */
reel_rc reel_query_tags(reel_session_t *s, int64_t id, char ***out, size_t *n, reel_err_t *err);
void reel_query_strings_free(char **v, size_t n);

/** Marks (mark != 0) or unmarks every target; changed counts flows whose
 * mark changed. */
reel_rc reel_query_mark(reel_session_t *s, const reel_query_target_t *t, int mark,
                        reel_query_result_t *res, reel_err_t *err);

/* ---- the config overlay (as stored; reel_config_* interprets it) ---- */

typedef struct {
    char *key, *value; /* owned; NULL when the row holds NULL */
} reel_query_overlay_t;

/** Rows of config_overlay by key. Free with reel_query_overlay_free. */
reel_rc reel_query_overlay(reel_session_t *s, reel_query_overlay_t **out, size_t *n,
                           reel_err_t *err);
void reel_query_overlay_free(reel_query_overlay_t *rows, size_t n);

typedef struct {
    int64_t id, time_us;
    char *key, *old_value, *new_value, *actor; /* owned; old/new NULL = unset */
} reel_query_change_t;

/** Every overlay change, oldest first. Free with reel_query_history_free. */
reel_rc reel_query_history(reel_session_t *s, reel_query_change_t **out, size_t *n,
                           reel_err_t *err);
void reel_query_history_free(reel_query_change_t *rows, size_t n);

/** Version of the SQLite library in use (static string). */
const char *reel_query_sqlite_version(void);

/* ---- indexed body search (reel search) ---- */

/** One flow whose indexed text matches: snippets of the request's and the
 * response's text around the match (NULL when the side has none), the
 * match between mark_on and mark_off. Borrowed for the callback. */
typedef struct {
    int64_t id;
    const char *method, *url;
    int64_t status; /* REEL_QUERY_NULL if none */
    const char *snippet[2];
} reel_query_hit_t;

typedef int (*reel_query_hit_cb)(void *ctx, const reel_query_hit_t *hit);

/** Runs the FTS5 query q (see reel_bodyindex_search_query) over the body
 * index, in id order, at most limit hits (0: all); cb returning non-zero
 * stops. REEL_INVALID "bad query ...: <FTS5's message>" when FTS5 refuses
 * q, REEL_DB / REEL_CORRUPT otherwise. */
reel_rc reel_query_search(reel_session_t *s, const char *q, int64_t limit, const char *mark_on,
                          const char *mark_off, reel_query_hit_cb cb, void *ctx,
                          reel_err_t *err);

/** Flows whose text the body index lacks: recorded before body search
 * existed (*before), waiting for the indexer (*pending), or recorded with
 * the index off (body_index_max 0, *off). */
reel_rc reel_query_search_missing(reel_session_t *s, int64_t *before, int64_t *pending,
                                  int64_t *off, reel_err_t *err);

#endif
