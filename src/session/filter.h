/* Flow filter expressions (a subset of mitmproxy's language), compiled to SQL
 * over the flows table.
 *
 *   ~d REGEX    domain (flows.host)        ~u REGEX  URL (flows.url)
 *   ~m REGEX    method                     ~c CODE   response status
 *   ~tag NAME   has tag NAME (exact)       ~marked   marked flows
 *   !X  X & Y  X | Y  (X)   and a bare word W means ~u W, as in mitmproxy.
 *   Juxtaposition "X Y" means "X & Y". Precedence: ! > & > |.
 *   REGEX/NAME may be quoted with '...' or "..." (backslash escapes the quote).
 *
 * Regexes are PCRE2, case-insensitive like mitmproxy, matched with an SQL
 * function regexp() that reel_filter_register() installs. */
#ifndef REEL_SESSION_FILTER_H
#define REEL_SESSION_FILTER_H

#include <sqlite3.h>

#include "base/error.h"

typedef struct reel_filter reel_filter_t;

/** Compiles expr. On a syntax error or a bad regex returns REEL_INVALID with a
 * message naming the position ("filter: expected ')' at column 7"). */
reel_rc reel_filter_compile(const char *expr, reel_filter_t **out, reel_err_t *err);

void reel_filter_free(reel_filter_t *f);

/** SQL boolean expression over columns of `flows` (alias-free), with `?`
 * placeholders; borrowed, valid until free. "1" for the empty filter. */
const char *reel_filter_sql(const reel_filter_t *f);

/** Binds the filter's parameters starting at placeholder index `first`;
 * returns the next free index. */
int reel_filter_bind(const reel_filter_t *f, sqlite3_stmt *st, int first);

/** Registers regexp(pattern, text) on db (PCRE2, caseless, compiled
 * patterns cached). Called by reel_index_open. */
reel_rc reel_filter_register(sqlite3 *db, reel_err_t *err);

#endif
