/* HTTP/1.x protocol layer, sans I/O, on llhttp.
 *
 * A reel_h1_t parses one direction of one connection: what a client sends
 * (REEL_H1_REQUEST) or what a server sends (REEL_H1_RESPONSE). It is fed
 * bytes and hands back one event per call; it never touches a socket, a
 * timer or the event loop.
 *
 * Driving it: call reel_h1_feed() with the unconsumed bytes, act on the
 * event, advance by *consumed, and call again -- also with zero bytes left --
 * until it returns REEL_NEED_MORE (everything consumed, nothing to report).
 * Some events are reported without consuming anything (END after the last
 * BODY, END of a body-less message, UPGRADE), which is why the zero-length
 * call matters.
 *
 * Per message the events are
 *     HEAD  (BODY)*  END  [UPGRADE  (TUNNEL)*]
 * with three exceptions: an interim 1xx response (not 101) is a lone HEAD
 * with head.interim set, followed by the HEAD of the next response; after an
 * error nothing follows; after UPGRADE every byte is TUNNEL data unless the
 * caller calls reel_h1_upgrade_refused().
 *
 * Framing is checked against request smuggling per RFC 9112: both
 * Transfer-Encoding and Content-Length, duplicate Content-Length, request
 * Transfer-Encoding other than exactly "chunked", obs-fold, whitespace
 * between a field name and its colon, control bytes in field values, bad
 * chunk sizes and chunk-size lines outside RFC 9112 7.1.1 are all errors.
 * Chunk extensions are checked and otherwise ignored. All llhttp leniency
 * flags are off. */
#ifndef REEL_CORE_HTTP1_H
#define REEL_CORE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"
#include "core/msg.h"

/** Which direction a parser reads. */
typedef enum {
    REEL_H1_REQUEST = 1,  /**< parses requests, as a server reads them */
    REEL_H1_RESPONSE = 2, /**< parses responses, as a client reads them */
} reel_h1_side;

/** Default cap on one head (request/status line + header fields + final
 * CRLF) and, separately, on one trailer section, in raw bytes. */
#define REEL_H1_DEFAULT_MAX_HEAD_SIZE (64 * 1024)
/** Default cap on the number of header fields (and trailer fields). */
#define REEL_H1_DEFAULT_MAX_HEADERS 200
/* The longest request method the parser takes that llhttp does not know
 * (a token: RFC 9110 9.1); a longer unknown one is a 400. */
#define REEL_H1_EXT_METHOD_MAX 64

/** Limits of a parser; a zero field means its default. */
typedef struct {
    size_t max_head_size; /**< raw bytes of a head or trailer section */
    size_t max_headers;   /**< fields in a head or trailer section */
} reel_h1_limits_t;

/** What reel_h1_feed() reports. */
typedef enum {
    REEL_H1_EV_NONE = 0, /**< nothing (NEED_MORE, error, or clean EOF) */
    REEL_H1_EV_HEAD,     /**< a message head: ev->head */
    REEL_H1_EV_BODY,     /**< body bytes, framing removed: ev->data/len */
    REEL_H1_EV_END,      /**< message complete; trailers in ev->trailers */
    REEL_H1_EV_UPGRADE,  /**< the connection leaves HTTP (CONNECT, 101, Upgrade) */
    REEL_H1_EV_TUNNEL,   /**< raw bytes after UPGRADE: ev->data/len */
} reel_h1_ev_type;

/** How the body of a message is delimited. */
typedef enum {
    REEL_H1_BODY_NONE = 0, /**< no body (GET, 204, 304, HEAD response, 1xx...) */
    REEL_H1_BODY_LENGTH,   /**< Content-Length bytes */
    REEL_H1_BODY_CHUNKED,  /**< chunked (the events carry it de-chunked) */
    REEL_H1_BODY_EOF,      /**< response read until the server closes */
} reel_h1_framing;

/** Form of a request target (RFC 9112 3.2). */
typedef enum {
    REEL_H1_TARGET_ORIGIN = 0, /**< "/path?query" */
    REEL_H1_TARGET_ABSOLUTE,   /**< "http://host/path" (requests to a proxy) */
    REEL_H1_TARGET_AUTHORITY,  /**< "host:port" (CONNECT only) */
    REEL_H1_TARGET_ASTERISK,   /**< "*" (OPTIONS only) */
} reel_h1_target_form;

/** One header or trailer field: the neutral field of core/msg.h. Parsed
 * fields are NUL-terminated (the NUL is not counted in the lengths), values
 * trimmed of surrounding whitespace. */
typedef reel_field_t reel_h1_header_t;

/** A message head. In parsed heads every string is NUL-terminated and
 * points into the parser's per-message storage. The same struct describes a
 * head to serialize (reel_h1_write_*_head). */
typedef struct {
    /* request line (requests only) */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    reel_h1_target_form target_form;
    /* status line (responses only) */
    int status;
    const char *reason;
    size_t reason_len;
    /* both */
    int version_major;
    int version_minor;
    const reel_h1_header_t *headers;
    size_t nheaders;

    /* facts computed by the parser (ignored when serializing) */
    reel_h1_framing framing; /**< how the body that follows is delimited */
    int64_t content_length;  /**< declared Content-Length, -1 when absent */
    bool chunked;            /**< Transfer-Encoding: chunked */
    bool keep_alive;         /**< another message may follow on this connection */
    bool expect_continue;    /**< request carries Expect: 100-continue */
    bool upgrade;    /**< request asks to leave HTTP (Upgrade or CONNECT); response switches */
    bool is_connect; /**< request method CONNECT / response to a CONNECT */
    bool is_head;    /**< request method HEAD / response to a HEAD */
    bool interim;    /**< 1xx response other than 101: no END follows */
} reel_h1_head_t;

/** One event. Fields not named by the type are zero. */
typedef struct {
    reel_h1_ev_type type;
    /** HEAD: valid until the first reel_h1_feed/feed_eof call after this
     * message's END (for an interim head: after the next call). */
    reel_h1_head_t head;
    /** BODY, TUNNEL: bytes inside the caller's buffer (borrowed). */
    const uint8_t *data;
    size_t len;
    /** END: trailer fields of a chunked message; same lifetime as head. */
    const reel_h1_header_t *trailers;
    size_t ntrailers;
    /** On error: the status a proxy should answer with (400, 431, 501, 505
     * for requests, 502 for responses) and a static reason string. */
    int error_status;
    const char *error_reason;
} reel_h1_event_t;

/** Opaque parser. */
typedef struct reel_h1 reel_h1_t;

/** Creates a parser for one direction of one connection. lim may be NULL
 * (defaults). Returns owned (free with reel_h1_free); never NULL (allocation
 * aborts). */
reel_h1_t *reel_h1_new(reel_h1_side side, const reel_h1_limits_t *lim);

/** Frees p and everything its events point to. Accepts NULL. */
void reel_h1_free(reel_h1_t *p);

/** Parses from buf[0..len) (borrowed; may be NULL when len is 0) until there
 * is one event to report.
 *
 * Returns REEL_OK with *ev filled and *consumed <= len: act on the event and
 * call again with buf + *consumed (even when nothing is left).
 * Returns REEL_NEED_MORE with *consumed == len and ev->type NONE: all input
 * used, nothing to report yet.
 * Returns REEL_INVALID on a protocol error, with ev->error_status and
 * ev->error_reason (*consumed is 0); the parser is dead from then on and every later call
 * returns the same error. A head or trailer section over the size or count
 * limit is such an error (431 for requests, 502 for responses). */
reel_rc reel_h1_feed(reel_h1_t *p, const uint8_t *buf, size_t len, size_t *consumed,
                     reel_h1_event_t *ev);

/** Tells the parser the peer closed its sending side. Returns REEL_OK with
 * END when that completes a close-delimited response (or with another event
 * still pending: call again), REEL_OK with type NONE at a clean message
 * boundary (or in a tunnel), REEL_INVALID ("response cut short" / 502,
 * "request cut short" / 400) inside a message. Later feeds are errors. */
reel_rc reel_h1_feed_eof(reel_h1_t *p, reel_h1_event_t *ev);

/** Response parsers only: announces the request the next response answers,
 * in request order (a FIFO, so pipelined requests may be announced ahead).
 * A response to HEAD has no body; a 2xx answer to CONNECT turns the
 * connection into a tunnel. Without an announcement a response is taken as
 * answering a GET. Returns REEL_INVALID on a request parser, REEL_LIMIT when
 * 64 announcements are outstanding. */
reel_rc reel_h1_expect_response(reel_h1_t *p, bool method_is_head, bool method_is_connect);

/** What is known of the head being parsed, for a head that ended in an
 * error or has not arrived whole (a 431, a 400, a head timeout): fills out
 * with the method, target (possibly cut short: the bytes read so far) and
 * the fields whose names are complete (a value still being read is empty,
 * a value refused is given as far as the bytes read hold its line),
 * version 0.0 when not yet read. A target refused (no token or path, a
 * control character) is given as sent, with the version and the fields
 * that follow it in the bytes read so far, up to the first line that is
 * not a field. Strings are NOT NUL-terminated here: use
 * the lengths. Everything is capped as the parser's head is. Returns false
 * (out zeroed) when no head is in progress. Valid until the next call on p. */
bool reel_h1_partial_head(reel_h1_t *p, reel_h1_head_t *out);

/** Where the bytes of a request head reel_h1_partial_head gives stopped,
 * when they stopped inside an element of it, whose last bytes may then be
 * missing from what it gives: "in its method", "in its request target",
 * "in its request line" (after the target: the version, or its line's
 * end), "in the name of a field" (the field is not given), or "in the
 * value of a field" (*name, *name_len: which; its value is given as far
 * as it came). NULL when they stopped at the end of a line, or no head is
 * in progress. Valid until the next call on p. */
const char *reel_h1_partial_cut(reel_h1_t *p, const char **name, size_t *name_len);

/** Request parsers only, after an error that refused a head read whole
 * whose framing is sound: a missing or duplicate Host (the bytes still say
 * where the request ends, though it is not one to forward). Sets
 * *head_used to the bytes of the failing call's buf that the head took (the
 * head's earlier bytes came in earlier calls) and revives the parser: from
 * buf + *head_used on, it reports the refused request's body (BODY, END,
 * as after its HEAD) and then the requests after it. Returns REEL_INVALID
 * (*head_used 0, the parser still dead) after any other error or none. */
reel_rc reel_h1_resume_refused(reel_h1_t *p, size_t *head_used);

/** Request parsers only, after an UPGRADE event: the server did not accept
 * the upgrade or CONNECT (it answered without 101 / 2xx), so the bytes after
 * the request are HTTP again and parsing resumes with the next request.
 * Returns REEL_INVALID when no UPGRADE was reported. */
reel_rc reel_h1_upgrade_refused(reel_h1_t *p);

/** Returns the first field named name (case-insensitive) among headers, or
 * NULL. Borrows everything. */
const reel_h1_header_t *reel_h1_find_header(const reel_h1_header_t *headers, size_t nheaders,
                                            const char *name);

/** True when the field name (name_len bytes) is hop-by-hop per RFC 9110
 * 7.6.1: Connection, Keep-Alive, Proxy-Connection, Proxy-Authenticate,
 * Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade, or one of
 * the comma-separated names in connection (the Connection field value,
 * connection_len bytes; may be NULL). */
bool reel_h1_is_hop_by_hop(const char *name, size_t name_len, const char *connection,
                           size_t connection_len);

/** Like reel_h1_is_hop_by_hop, taking the option names from every
 * Connection field of headers. */
bool reel_h1_is_hop_by_hop_in(const char *name, size_t name_len, const reel_h1_header_t *headers,
                              size_t nheaders);

/** The same for every field of one message: reel_h1_hop_init finds its
 * Connection field(s) once, reel_h1_hop asks about a field (asking
 * reel_h1_is_hop_by_hop_in per field is quadratic in the fields). */
typedef struct {
    const reel_h1_header_t *headers;
    size_t nheaders;
    const reel_h1_header_t *connection; /* the last Connection field */
    size_t nconnection;
} reel_h1_hop_t;
void reel_h1_hop_init(reel_h1_hop_t *c, const reel_h1_header_t *headers, size_t nheaders);
bool reel_h1_hop(const reel_h1_hop_t *c, const char *name, size_t name_len);

/** Appends "METHOD target HTTP/x.y\r\n", the fields and the empty line to
 * out. Fields with a NULL name are skipped (so a caller can blank out
 * hop-by-hop fields in a copy of the array). Returns REEL_INVALID (out
 * unchanged) when the method or a field name is not a token, or the target,
 * a value or the version would inject a line (CR, LF, NUL, space in the
 * target); REEL_LIMIT (out unchanged) past out's maximum. */
reel_rc reel_h1_write_request_head(reel_buf_t *out, const reel_h1_head_t *h);

/** Appends "HTTP/x.y status reason\r\n", the fields and the empty line to
 * out; same rules and errors as reel_h1_write_request_head (status must be
 * 100..999; reason may be NULL). */
reel_rc reel_h1_write_response_head(reel_buf_t *out, const reel_h1_head_t *h);

/** Room needed by reel_h1_chunk_header: 16 hex digits, CRLF and a NUL. */
#define REEL_H1_CHUNK_HEADER_MAX 19
/** What follows the data of each chunk. */
#define REEL_H1_CHUNK_END "\r\n"
/** A last chunk without trailers, ending a chunked body. */
#define REEL_H1_LAST_CHUNK "0\r\n\r\n"

/** Writes the chunk-size line "<hex len>\r\n" for a chunk of len > 0 bytes
 * into buf (NUL-terminated) and returns its length (without the NUL), or 0
 * when len is 0 (that would be the last chunk). The chunk is the line, the
 * len data bytes and REEL_H1_CHUNK_END. */
size_t reel_h1_chunk_header(size_t len, char buf[REEL_H1_CHUNK_HEADER_MAX]);

/** Writes "HTTP/<major>.<minor>" to out (NUL-terminated; versions of one
 * digit each, as the parser gives them, without printf). */
void reel_h1_version_str(char out[16], int major, int minor);

/** Appends the field line "name: value\r\n" to out, unchecked (the
 * writers above check theirs first), with one reservation. REEL_LIMIT when
 * out would pass its maximum. */
reel_rc reel_h1_append_field(reel_buf_t *out, const char *name, size_t name_len, const char *value,
                             size_t value_len);

/** Appends the status line "HTTP/1.1 <status> <reason>\r\n" for a status of
 * 100..999 (REEL_INVALID otherwise), the reason being reason_len bytes
 * (unchecked). */
reel_rc reel_h1_append_status_line(reel_buf_t *out, int status, const char *reason,
                                   size_t reason_len);

/** Appends the last chunk "0\r\n", the trailer fields (may be none) and the
 * final CRLF to out. Errors as reel_h1_write_request_head. */
reel_rc reel_h1_write_last_chunk(reel_buf_t *out, const reel_h1_header_t *trailers,
                                 size_t ntrailers);

/** Whether a comma-separated field `field` (any of its lines in hs[0..n))
 * holds `token`, both compared without case. */
bool reel_h1_has_token(const reel_h1_header_t *hs, size_t n, const char *field, const char *token);

#endif
