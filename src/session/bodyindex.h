/* Indexed body search: the indexer's side that fills body_text, body_fts and
 * body_todo (schema/006_body_fts.sql), and the helpers the filter and
 * `reel search` use to query them.
 *
 * The indexer hands every record of every frame here, in spool order; body
 * chunks come raw (not unpacked). Per flow, the bodies are decoded by their
 * Content-Encoding as the spool pass of the filter decodes them (the same
 * side rules: a body belongs to the last head read), kept if they look like
 * text, up to body_index_max bytes a side, and written when the flow ends.
 * The text goes into body_text first and into the FTS within a CPU budget
 * (reel_bodyindex_fill): an FTS5 trigram insert costs ten to twenty times
 * the rest of indexing, and capture must not wait for it. A flow whose text
 * the FTS does not hold in full (yet) stays in body_todo with a reason, so
 * a body filter still reads it from the spool: the FTS is a prefilter that
 * never loses a match. With the index off, flows are not tracked one by one:
 * body_off holds the range of ids each such run indexed. Memory: at most 64 MiB of text and 64
 * decoders across all open flows; a flow past either is left to the spool
 * (reason 'busy'). Owned by the indexer's thread. */
#ifndef REEL_SESSION_BODYINDEX_H
#define REEL_SESSION_BODYINDEX_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "flow.pb-c.h"

/** Default of the option body_index_max: bytes of decoded text indexed per
 * body (request and response each). */
#define REEL_BODYINDEX_DEFAULT_MAX 0 /* off unless body_index_max says */

typedef struct reel_bodyindex reel_bodyindex_t;

/** Prepares the statements on db (borrowed; it must outlive the result).
 * max is body_index_max: 0 indexes nothing and tracks no flow in body_todo:
 * the ids of the flows seen go into body_off as one range per run (schema
 * 9), which a body filter reads from the spool. Returns owned *out, REEL_DB
 * on failure. */
reel_rc reel_bodyindex_new(sqlite3 *db, uint64_t max, reel_bodyindex_t **out, reel_err_t *err);

/** Frees bx and every flow state; accepts NULL. */
void reel_bodyindex_free(reel_bodyindex_t *bx);

/** body_index_max as configured: the session's overlay over the user's
 * config file over the default; a value that does not parse is the
 * default. */
uint64_t reel_bodyindex_configured_max(sqlite3 *db);

/** An unpacked record (not a body chunk) of flow rec->flow_id != 0: starts,
 * ends or marks a flow's state, writing its rows when it ends. Must be
 * called inside the indexer's transaction. REEL_DB on failure. */
reel_rc reel_bodyindex_record(reel_bodyindex_t *bx, const Reel__Record *rec, reel_err_t *err);

/** A body chunk of flow fid (request, or response if `response`); data is
 * borrowed for the call. */
void reel_bodyindex_chunk(reel_bodyindex_t *bx, uint64_t fid, int response, const uint8_t *data,
                          size_t len);

/** Puts text that reel_bodyindex_record stored into body_fts, and takes
 * those flows out of body_todo: all of it in bulk mode, else for as long
 * as the budget allows (a quarter of the wall time since the last call, at
 * most a second saved up). With the index off, writes the range of flows
 * seen to body_off. Called at each commit, inside the indexer's
 * transaction. REEL_DB on failure. */
reel_rc reel_bodyindex_fill(reel_bodyindex_t *bx, reel_err_t *err);

/** 1 if the index is on (body_index_max > 0): it then reads the headers of
 * every head; off, it needs only the flow id of each record. */
int reel_bodyindex_on(const reel_bodyindex_t *bx);
/** Bulk mode (repair): reel_bodyindex_fill has no budget. */
void reel_bodyindex_bulk(reel_bodyindex_t *bx);

/** The transaction was rolled back: every flow in progress has lost records
 * it saw, so each is left to the spool when it ends (reason 'lost'). */
void reel_bodyindex_rollback(reel_bodyindex_t *bx);

/** 1 if a body regex of len bytes is a plain string that body_fts answers
 * exactly as a prefilter: 3 to 1024 printable ASCII bytes without a regex
 * metacharacter (\ ^ $ . | ? * + ( ) [ ] { }), so it matches itself only,
 * as a substring, ASCII case folded. */
int reel_bodyindex_plain(const char *re, size_t len);

/** The FTS5 query for plain string s on sides (1 request, 2 response, 3
 * both): a quoted phrase, with a column filter for one side. Returns owned. */
char *reel_bodyindex_fts_query(const char *s, size_t len, int sides);

/** The FTS5 query `reel search` runs for words[0..n) (borrowed): words
 * that hold FTS5 syntax (a '"', '(' or ')', AND, OR, NOT or NEAR, a req: or
 * resp: column filter) are joined as one query, as they are; else each word
 * is a quoted phrase (a substring) and all must be found. A plain word of
 * fewer than 3 characters is REEL_INVALID (the trigram index cannot find
 * it), as are no words. Returns owned *out. */
reel_rc reel_bodyindex_search_query(const char *const *words, size_t n, char **out,
                                    reel_err_t *err);

/** Registers the FTS5 function reel_snippet(body_fts, COLUMN, ON, OFF,
 * ELLIPSIS, TOKENS) on db: the text of COLUMN around its first match,
 * about TOKENS tokens, each match in it whole between ON and OFF,
 * ELLIPSIS where the text goes on, its control bytes as spaces (so that
 * markers that are control bytes are the only ones). FTS5's snippet() scores every match
 * against every other, so a body with tens of thousands of matches took
 * seconds, and `reel search` minutes; this reads each match once. Does
 * nothing where SQLite has no FTS5 (nor has the index its body_fts). */
void reel_bodyindex_register(sqlite3 *db);

#endif
