/* Export of a session's flows: HAR 1.2, curl commands, raw HTTP, NDJSON.
 *
 * Streamed flow by flow: the ids matching the filter are read from the
 * index in order, and each flow's records are read from the spool, turned
 * into its output and written before the next is read. Memory is bounded
 * by one flow: its heads, and its bodies and messages up to
 * REEL_EXPORT_BODY_MAX bytes each direction (stored bodies are already cut
 * at the session's body_limit, 64 MiB by default); the part of a body past
 * the cap is left out and the entry says so (HAR: comment and
 * _reel.truncated; NDJSON: truncated). The top-level HAR document is
 * written by hand around entries dumped one at a time with jansson.
 *
 * Formats (docs/export.md is the user's reference):
 * - HAR: log.version "1.2", creator, one page (Firefox needs log.pages),
 *   entries with every field HAR 1.2 requires, numbers where numbers are
 *   due (-1 for unknown sizes, as Chromium's importer wants numbers),
 *   content.text decoded (Content-Encoding removed) and base64 with
 *   content.encoding "base64" when not text, postData with params for
 *   forms, WebSocket messages in _webSocketMessages as Chromium writes
 *   them (with truncated and length when body_limit cut one), annotations
 *   and tags in comment and everything reel knows in _reel (with what HAR
 *   has no field for: 1xx answers in interim, request_trailers and
 *   response_trailers, and the flow's own times, duration_ms,
 *   request_end_ms and response_start_ms, which time, the sum of the
 *   timings, connect holding ssl, is not). reel import reads it back.
 * - curl: one bash command per flow (method, headers but Content-Length
 *   and the hop-by-hop fields reel replay leaves out, the fields curl
 *   would add that the request lacked removed with -H 'Name:',
 *   exact URL, body inline, printf-piped when it holds NUL bytes or
 *   passes 64 KiB, or --data-binary @- < /ABS/FILE); request trailers,
 *   which curl cannot send, named in a comment line. An HTTP/2 WebSocket
 *   (extended CONNECT with :protocol, RFC 8441), which curl cannot send
 *   either, gets a comment line and its HTTP/1.1 handshake (GET Upgrade).
 * - raw: request and response heads and bodies as on the wire (bodies as
 *   stored: still content-encoded; re-chunked when the head says chunked,
 *   trailers in the last chunk; a body stored decoded, as reel import
 *   stores a HAR's, with Content-Encoding left out and Content-Length
 *   corrected; a body not stored whole with an X-Reel-Body-Cut field and
 *   the Content-Length of the bytes written; a Content-Length for a body
 *   with no framing, a Host from the URL for an HTTP/1 request without
 *   one), 1xx heads before the final one. An
 *   HTTP/2 head's pseudo-header fields are in its request line (absolute
 *   URL; ws:// or wss:// for :protocol websocket), never field lines.
 * - ndjson: one JSON object per line and flow, bodies decoded, as text
 *   when they are UTF-8 text, else base64, or as files in a directory;
 *   interim, trailers and each message's truncated as fields.
 *
 * With redaction rules, secrets are replaced in every format (see
 * redact.h); a redacted body that was content-encoded is written decoded,
 * its Content-Encoding removed and its Content-Length corrected. */
#ifndef REEL_SESSION_EXPORT_H
#define REEL_SESSION_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "base/error.h"
#include "session/redact.h"
#include "session/session.h"

/** Most bytes of one body (or of one flow's messages) put into an export. */
#define REEL_EXPORT_BODY_MAX ((size_t)256 * 1024 * 1024)

typedef enum {
    REEL_EXPORT_HAR,
    REEL_EXPORT_CURL,
    REEL_EXPORT_RAW,
    REEL_EXPORT_NDJSON,
} reel_export_format;

/** Parses "har", "curl", "raw", "ndjson"; -1 if unknown. */
int reel_export_format_parse(const char *name);

/** The redaction rules an export of s uses: the defaults (redact.h), and
 * the redact_headers and redact_keys of the user's config file and of s's
 * overlay. Returns owned (reel_redact_free); a config file that cannot be
 * read leaves its rules out and says why in *warning (owned, free(); NULL
 * when none). */
reel_redact_t *reel_export_redact_rules(reel_session_t *s, char **warning);

/** Called after each flow: done of total flows. */
typedef void (*reel_export_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct {
    reel_export_format format;
    const char *filter;          /* filter expression (filter.h); NULL: every flow */
    /* A JSON array of flow ids: only these flows (and of them, those the
     * filter takes); NULL: no such list. A selection of any size, where a
     * filter of "~id N | ..." stops at the filter's limit of terms. */
    const char *ids_json;
    const reel_redact_t *redact; /* NULL: no redaction (borrowed) */
    /* curl and ndjson: write bodies as files here (created if missing; curl
     * commands name them by absolute path),
     * named <flow id>.request / <flow id>.response; NULL: inline. */
    const char *body_dir;
    const char *creator_version; /* HAR log.creator.version; NULL: "0" */
    reel_export_progress_fn progress;
    void *progress_ctx;
} reel_export_opts_t;

typedef struct {
    uint64_t flows;   /* flows written */
    uint64_t skipped; /* flows with nothing to write in this format (tunnels,
                         TCP or TLS, in HAR and curl; flows without a
                         request head) */
    uint64_t dropped; /* flows retention dropped while the export ran (after
                         it had listed them): not written */
    uint64_t damaged; /* flows reel repair marked damaged that lost what an
                         entry needs: all their records, or (all formats but
                         NDJSON) the request head: not written */
    uint64_t damaged_first; /* the first of them (0: none) */
    /* flows whose tags or notes did not read (session.db damaged in those
     * tables): written without them; the first, and SQLite's reason */
    uint64_t userdata_unread, userdata_unread_first;
    char userdata_why[160];
} reel_export_stats_t;

/** Writes the flows of s that match o->filter to out (borrowed), in id
 * order. Returns REEL_INVALID / REEL_LIMIT for a bad filter, REEL_DB,
 * REEL_CORRUPT (a flow's records cannot be read), REEL_IO (out or a body
 * file cannot be written, or the session was removed meanwhile), with a
 * message. A flow retention drops after the export listed it is left out
 * and counted in stats->dropped, not an error; a flow known damaged (reel
 * repair marked it) that lost what its entry needs is left out and counted
 * in stats->damaged; a listed flow the index has no records of, and no
 * damage, is REEL_CORRUPT. stats (may be NULL) is filled
 * even on error. */
reel_rc reel_export(reel_session_t *s, FILE *out, const reel_export_opts_t *o,
                    reel_export_stats_t *stats, reel_err_t *err);

#endif
