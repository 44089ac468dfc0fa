/* HAR 1.2 import (as exported by browsers' devtools).
 *
 * The whole file is parsed with jansson (at most REEL_HAR_MAX_FILE_SIZE
 * bytes), every entry is validated, and only then are entries recorded, in
 * file order, one flow each. Bodies are fed to the recorder straight from
 * the parsed document (base64 bodies are decoded in bounded pieces), so the
 * import holds no copy of a body beyond jansson's.
 *
 * Mapping of one entry:
 * - flow: source "har-import", start time = startedDateTime, server_addr
 *   from serverIPAddress when present;
 * - request head: method, scheme/host/port/target from the URL (ws:// and
 *   wss:// are the HTTP/1.1 Upgrade requests they are, recorded as http and
 *   https; IPv6 hosts without brackets), headers in order without HTTP/2
 *   pseudo-headers (":authority", ...: the method and URL say them) but
 *   for a CONNECT's ":protocol" (an HTTP/2 WebSocket, RFC 8441, which
 *   reel records, and reel export writes, as method CONNECT with
 *   ":protocol" among its headers and a ws(s) URL), http_version from
 *   httpVersion ("h2", "h2c", "HTTP/2" -> "HTTP/2.0", "h3", "h3-29",
 *   "HTTP/3" -> "HTTP/3.0", otherwise uppercased, empty -> "HTTP/1.1";
 *   "HTTP/" with a number no HTTP has, such as "HTTP/9", is refused);
 *   body = postData.text (base64-decoded when postData.encoding is "base64");
 * - response head: status, statusText, headers as above, body_decoded set
 *   (HAR content.text is decoded; Content-Encoding is kept as recorded);
 *   body = content.text, base64-decoded when content.encoding is "base64";
 * - a body cut before it was written to the HAR is recorded as truncated,
 *   as a capture's body_limit cut is (reel_recorder_body_truncated), with
 *   its size on the wire when the HAR gives one: the entry's
 *   _reel.request_truncated / _reel.response_truncated (what reel export
 *   writes) say so, and so does a bodySize larger than the body given (not
 *   compared under a Content-Encoding or Transfer-Encoding: bodySize then
 *   counts encoded bytes or chunk framing) or a content.size larger than
 *   the part of the response text given;
 * - a body under a Content-Encoding, given decoded, has its size on the
 *   wire (reel_recorder_body_wire_size) from bodySize when it is >= 0,
 *   else content.size - content.compression (a response), else the bytes
 *   given; other bodies are their bytes, as captured;
 * - status 0 (browser: blocked or failed) ends the flow with the error
 *   "no response (HAR status 0)" plus ": <_error>" when the entry has one;
 * - _webSocketMessages (Chromium's, and reel export's for a WebSocket)
 *   are the flow's WebSocket messages, recorded after the response as
 *   reel's codec gives them: direction, time, opcode (1, 2, 8, 9, 10;
 *   0 for bytes reel did not read as frames),
 *   data (text for opcode 1, base64 for the others), length and
 *   truncated, a close's code from its first two bytes (1005 without,
 *   0 when cut off); Chromium's {"type": "error"} is no message but ends
 *   the flow with "the browser reported a WebSocket error: <data>";
 * - what reel export writes under _reel comes back: _reel.error ends the
 *   flow with that error (with or without a response), _reel.generated
 *   marks the response as reel's own, _reel.client_addr and server_addr
 *   are the flow's addresses, the entry's "connection" with _reel's
 *   tls_version and alpn its origin connection (server_conn), _reel.interim
 *   its 1xx answers before the response, _reel.request_trailers and
 *   response_trailers its trailer fields, _reel.messages the TCP
 *   messages after a 101 to a protocol other than WebSocket (opcode 0,
 *   direction, time, data, length, truncated; recorded after the
 *   response); _reel.annotations, tags and
 *   marked are added by reel_har_apply_user_data. Each must have the
 *   shape reel writes, else the entry is refused;
 * - text that reel export wrote with its exact bytes (not UTF-8: a
 *   header's name or value, the URL, a status text; the object holding it
 *   has _reel.<member>_b64) is recorded as those bytes when the string is
 *   still their ISO-8859-1 reading (reel_har_text), else (edited since)
 *   as the string;
 * - timings (ms, -1 unknown) become reel_timings_t in microseconds,
 *   connect less ssl (HAR 1.2 counts ssl inside connect; reel records TCP
 *   alone), but in an entry reel export wrote before _reel.duration_ms
 *   (connect TCP alone there); request end = start + blocked + dns +
 *   connect + send, response start = request end + wait, end = start +
 *   time (or the sum of known timings); an entry with _reel.duration_ms
 *   (what reel export writes) has its end, request end and response start
 *   from _reel.duration_ms, request_end_ms and response_start_ms instead
 *   (-1: unknown, recorded as 0 but for the end).
 * Entries whose URL has another scheme (data:, blob:, chrome-extension:, ...)
 * are not HTTP exchanges: they are skipped and counted. */
#ifndef REEL_SESSION_HAR_H
#define REEL_SESSION_HAR_H

#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>

#include "base/error.h"
#include "session/recorder.h"

/** The JSON string a HAR holds for bytes p[0..n) (a header's name or
 * value, a URL, a status text): the bytes themselves when they are UTF-8,
 * else each byte as the code point of its ISO-8859-1 reading (what header
 * bytes were in RFC 9110's history, and how browsers' Fetch API reads
 * them into a string), in UTF-8. Sets *exact (may be NULL) to 1 when the
 * string holds the bytes, 0 when it does not (reel export then writes
 * them in _reel.<member>_b64, docs/export.md). Returns owned. */
json_t *reel_har_text(const char *p, size_t n, int *exact);

/** Largest HAR file accepted (jansson holds the whole document in memory). */
#define REEL_HAR_MAX_FILE_SIZE (UINT64_C(4) << 30)

typedef struct {
    uint64_t entries;  /* flows recorded */
    uint64_t first_id; /* flow id of the first, 0 if none */
    uint64_t last_id;
    uint64_t skipped; /* entries with a non-HTTP URL (data:, blob:, ...) */
    /* what reel_har_apply_user_data added: annotations, tags, marks */
    uint64_t annotated, tagged, marked;
} reel_har_stats_t;

/** A parsed and validated HAR document. */
typedef struct reel_har reel_har_t;

/** Reads and validates the HAR file at path (the checks and errors of
 * reel_har_check), parsing it once: callers that check before they record
 * (and files that can be read only once, like pipes) use this and
 * reel_har_record. Returns owned in *out (free with reel_har_free). */
reel_rc reel_har_load(const char *path, reel_har_t **out, reel_err_t *err);

/** Has reel_har_record call fn(ctx, entries done, entries) after each
 * entry (a progress line). */
void reel_har_set_progress(reel_har_t *h, void (*fn)(void *ctx, uint64_t done, uint64_t total),
                           void *ctx);

/** Has reel_har_record stop before its next entry once *stop is non-zero
 * (a signal handler sets it; borrowed, NULL: never). */
void reel_har_set_stop(reel_har_t *h, const volatile sig_atomic_t *stop);

/** Records every entry of h through rec (see the mapping above), in file
 * order, then flushes rec; remembers each entry's flow id in h for
 * reel_har_apply_user_data. stats (may be NULL) is filled even on error.
 * Returns the recorder's sticky error, if any, or REEL_INTERRUPTED when
 * the stop flag was set (the entries before are recorded). */
reel_rc reel_har_record(reel_recorder_t *rec, reel_har_t *h, reel_har_stats_t *stats,
                        reel_err_t *err);

/** Adds the annotations (with their times), tags and marks that reel
 * export wrote under _reel to the flows reel_har_record recorded from
 * those entries, in db (the session's index, journaled, after the
 * recorder has indexed the flows), in one transaction: all or nothing.
 * Counts them in stats (may be NULL). Returns REEL_DB on SQLite errors
 * (rolled back). */
reel_rc reel_har_apply_user_data(sqlite3 *db, const reel_har_t *h, reel_har_stats_t *stats,
                                 reel_err_t *err);

/** Frees h; accepts NULL. */
void reel_har_free(reel_har_t *h);

/** Checks that the file at path is a readable HAR 1.x document (JSON with
 * log.entries[], each with request and response objects of the right
 * shape) without recording anything. Returns REEL_IO (cannot read),
 * REEL_LIMIT (larger than the cap), REEL_UNSUPPORTED (log.version of
 * another major version: "capture.har: log.version: HAR version 9.9 is not
 * supported ...") or REEL_INVALID, with a message naming the file and the
 * first offending entry and field, e.g. "capture.har:
 * entries[3].request.url: not an absolute http(s) URL" or "capture.har:
 * entries[1].request.httpVersion: "HTTP/9" is not an HTTP version (...)",
 * or "capture.har:LINE:COL: <jansson's message>" for malformed JSON. */
reel_rc reel_har_check(const char *path, reel_err_t *err);

/** reel_har_load + reel_har_record + reel_har_free: records nothing if
 * validation fails. stats (may be NULL) is filled even on error. Returns
 * the validation error or the recorder's sticky error. */
reel_rc reel_har_import(reel_recorder_t *rec, const char *path, reel_har_stats_t *stats,
                        reel_err_t *err);

/** An absolute http(s)/ws(s) URL's parts (ws -> http, wss -> https). */
typedef struct {
    int skip;       /* not an HTTP URL (data:, blob:, ...): skip the entry */
    char scheme[6]; /* "http" / "https" */
    char *host;     /* owned, no brackets */
    uint32_t port;  /* the URL's, else the scheme's own */
    char *target;   /* owned, origin form */
    int no_path;    /* nothing after the authority: OPTIONS of it is OPTIONS * */
} reel_url_t;

/** Parses an absolute http(s)/ws(s) URL into *u (release with
 * reel_url_free, also after an error); its fragment is no part of the
 * target unless fragment (the target as reel recorded it: a client may
 * send one, and reel export writes what it sent). Returns NULL or why not
 * ("not an absolute http(s) URL", "bad port in URL", ...). */
const char *reel_url_parse(const char *s, size_t n, int fragment, reel_url_t *u);
void reel_url_free(reel_url_t *u);

/** Size cap used by check/import; REEL_HAR_MAX_FILE_SIZE unless a test
 * lowers it. */
extern uint64_t reel__har_max_file_size;

#endif
