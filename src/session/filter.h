/* Flow filter expressions (mitmproxy's language and reel's own operators),
 * compiled to SQL over the flows table, plus a per-flow pass over the spool
 * for header and body terms. docs/filters.md is the user's reference.
 *
 *   ~d REGEX    domain (flows.host)        ~u REGEX  URL (flows.url)
 *   ~m REGEX    method                     ~c CODE   response status
 *   ~t/~tq/~ts REGEX content type (either, request, response)
 *   ~src/~dst REGEX client/server address  ~comment REGEX annotation text
 *   ~e error    ~s has a response   ~q HTTP flow without one   ~all
 *   ~h/~hq/~hs REGEX headers ("Name: value" lines; spool)
 *   ~b/~bq/~bs REGEX decoded bodies and messages (spool, streamed)
 *   ~tag NAME   has tag NAME (exact)       ~marked   marked flows
 *   ~id N[-M]   ~since WHEN  ~until WHEN   ~size [<|<=|>|>=|=]N[k|m|g|t]
 *   ~damaged    flows.damaged != 0 (part of the record known lost)
 *   !X  X & Y  X | Y  (X)   and a bare word W means ~u W, as in mitmproxy.
 *   Juxtaposition "X Y" means "X & Y" but, as in mitmproxy, binds loosest:
 *   precedence ! > & > | > juxtaposition, so "~d a ~c 200 | ~c 500" is
 *   "~d a & (~c 200 | ~c 500)".
 *   An unquoted REGEX/NAME runs until whitespace or one of ( ) ~ ' " (so
 *   "~d a|b" is the regex "a|b"), an unquoted CODE also until & or |; any
 *   may be quoted with '...' or "...", where a backslash before the quote
 *   stands for the quote and any other backslash is kept, so regex escapes
 *   pass through ("~u 'a\.b c'").
 *   What mitmproxy reads other than written is refused with its column: an
 *   unquoted argument that starts with ! & | or ends in & | ("~m POST|~m
 *   PUT"), or is cut short by ( ~ or a quote ("~m ^(GET|POST)$"); a quoted
 *   argument or CODE followed by anything but whitespace ) & | or the end.
 *   CODE is 1 to 9 decimal digits; a flow without a response has no code.
 *   An empty or all-blank expression matches every flow.
 *
 * Regexes are PCRE2, case-insensitive like mitmproxy, matched with an SQL
 * function regexp() that reel_filter_register() installs. They match bytes
 * (no UTF mode): "." is one byte and only ASCII letters fold case.
 *
 * Limits, since expressions come from users: 64 KiB of text, 32 levels of
 * "(" and "!", 256 terms (REEL_LIMIT). They keep the SQL within SQLite's
 * parser stack and expression depth limits, with room for the caller's
 * statement (tested inside a CTE and two levels of subquery). */
#ifndef REEL_SESSION_FILTER_H
#define REEL_SESSION_FILTER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "session/session.h"

typedef struct reel_filter reel_filter_t;

/** Compiles expr (borrowed; NULL is the empty filter) into *out (returns
 * owned, free with reel_filter_free). On a syntax error or a bad regex
 * returns REEL_INVALID, past a limit REEL_LIMIT, with a message naming the
 * 1-based byte column ("filter: expected ')' at column 7, got end of
 * expression"); *out is then NULL. */
reel_rc reel_filter_compile(const char *expr, reel_filter_t **out, reel_err_t *err);

/** Frees f; accepts NULL. */
void reel_filter_free(reel_filter_t *f);

/* ---- a request about to be sent (map_remote's and map_local's rules) ---- */

typedef struct reel_filter_live reel_filter_live_t;

/** A header field as bytes (the layout of core/msg.h's reel_field_t). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} reel_filter_field_t;

/** What is known of a request before it is sent: its method, URL, host,
 * Content-Type (NULL: none) and client address ("ip:port"), its fields,
 * whether its client spoke HTTP/2 and whether it asks for a WebSocket.
 * response: it is judged with its response's head (modify_headers), the
 * status, Content-Type (NULL: none) and fields below; false: before it is
 * sent, as every other rule judges it. */
typedef struct {
    const char *method, *url, *host, *content_type, *client_addr;
    const reel_filter_field_t *headers;
    size_t nheaders;
    bool http2, websocket;
    bool response;
    uint32_t status;
    const char *resp_content_type;
    const reel_filter_field_t *resp_headers;
    size_t nresp_headers;
} reel_filter_request_t;

/** Compiles expr for reel_filter_live_match: the language of
 * reel_filter_compile, its terms limited to what a request says before it
 * is sent (~d ~u ~m ~h ~hq ~t ~tq ~src, ~http ~h2 ~websocket ~tcp ~all ~q
 * ~s, and ! & | ( )); any other term is REEL_INVALID naming it. */
reel_rc reel_filter_live_compile(const char *expr, reel_filter_live_t **out, reel_err_t *err);
/** The same, also taking the terms a response's head answers (~c ~hs ~ts,
 * and ~h ~t on either side), for rules judged on requests and again on
 * their responses (modify_headers): ~q matches the request, ~s its
 * response, and a response term never matches a request. */
reel_rc reel_filter_live_compile_both(const char *expr, reel_filter_live_t **out, reel_err_t *err);
/** Whether rq matches f (the empty filter matches every request). */
bool reel_filter_live_match(const reel_filter_live_t *f, const reel_filter_request_t *rq);
void reel_filter_live_free(reel_filter_live_t *f);

/** SQL boolean expression over columns of `flows` (alias-free; it also reads
 * tables `tags` as t and `annotations` as a in subqueries), parenthesized as
 * a whole, with `?` placeholders; borrowed, valid until free. It is 0 or 1
 * for every row, never NULL. "1" for the empty filter and for f == NULL.
 * When reel_filter_needs_spool(f), it over-approximates (header and body
 * terms count as true): check each row with reel_filter_match_flow(). */
const char *reel_filter_sql(const reel_filter_t *f);

/** Binds the filter's parameters (copies) starting at placeholder index
 * `first`; returns the next free index, or -1 if a bind failed (the
 * statement lacks those placeholders). f == NULL binds nothing. */
int reel_filter_bind(const reel_filter_t *f, sqlite3_stmt *st, int first);

/** 1 if f has header or body terms, which the SQL cannot decide. */
int reel_filter_needs_spool(const reel_filter_t *f);

/** A body whose Content-Encoding breaks off is shown by `reel flow` and
 * searched by ~b, ~bq and ~bs alike (mitmproxy falls back to the raw bytes,
 * get_content(strict=False)): decoded as far as decoding went, then the
 * stored bytes from the start of the stored chunk the decoder failed on;
 * but the whole body as stored, and nothing decoded, when it failed with
 * at most REEL_FILTER_UNDECODED_STORED bytes stored so far (that chunk
 * included) and fewer than REEL_FILTER_UNDECODED_OUT bytes decoded (a
 * Content-Encoding header over a body that is not so coded). A stream
 * that only ends too soon keeps what was decoded. */
#define REEL_FILTER_UNDECODED_STORED (64 * 1024)
#define REEL_FILTER_UNDECODED_OUT 4096

/** The final verdict on flow id of session s, a row that matched
 * reel_filter_sql(f): *match is 1 or 0. Without spool terms, 1 at once;
 * with them, reads the flow's records (bodies decoded as a stream by their
 * Content-Encoding, as stored where that breaks off, see above; a body of
 * no stored bytes is not searched, as mitmproxy skips empty content, but
 * every WebSocket or TCP message is; memory bounded: a match longer than
 * 512 KiB to 1 MiB may be missed; less with over 16 body terms) and asks
 * the index for the
 * rest. A flow whose records cannot all be read is judged on those read.
 * REEL_DB or REEL_LIMIT (a regex past PCRE2's match limit) on failure. */
reel_rc reel_filter_match_flow(const reel_filter_t *f, reel_session_t *s, uint64_t id, int *match,
                               reel_err_t *err);

/** The ids of every flow of s that f matches, ascending, as an owned array
 * of *n entries in *out (NULL when none; release with free()): the SQL part,
 * then reel_filter_match_flow() on each row. For the bulk actions (tag,
 * mark, annotate). REEL_DB or REEL_LIMIT on failure. */
reel_rc reel_filter_ids(const reel_filter_t *f, reel_session_t *s, int64_t **out, size_t *n,
                        reel_err_t *err);

/** Parses a time as `reel flows --since` takes it: a duration back from now
 * (30s, 15m, 2h, 7d), 'YYYY-MM-DD[ HH:MM[:SS]]' (local time; T also
 * separates) or '@SECONDS' since the epoch, into µs since the epoch.
 * REEL_INVALID if s is none of these. */
reel_rc reel_filter_parse_time(const char *s, int64_t *out);

/** Registers regexp(pattern, text) on db (PCRE2, caseless, bytes, JIT where
 * available, a constant pattern compiled once per statement), which also
 * serves "text REGEXP pattern", and regexp(pattern, text, term, flow id),
 * which the filter's SQL calls: term ('a URL regex (~u)') and flow id name
 * what failed in the error. NULL pattern or text gives 0; a bad pattern or
 * a match past PCRE2's limits is an SQL error. Returns REEL_DB if SQLite
 * refuses. Called by reel_index_open. */
reel_rc reel_filter_register(sqlite3 *db, reel_err_t *err);

/** true if msg, the error message of a statement (sqlite3_errmsg), is one
 * regexp() raised for a filter's term: a regex that failed on a flow,
 * "filter: a URL regex (~u) ran into PCRE2's match limit (flow 14)". Such
 * a message is whole: report it as REEL_LIMIT, without "session.db: ". */
bool reel_filter_regexp_error(const char *msg);

#endif
