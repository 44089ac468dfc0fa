/* HTTP/2 as a codec (core/codec.h), sans I/O, over nghttp2.
 *
 * One reel_h2 is one side of one connection: the server role reads a
 * client's requests and writes responses, the client role writes requests
 * to an origin and reads its responses. Bytes in: reel_codec_feed, which
 * reports one event at a time (HEAD, DATA, END with trailers, RESET with
 * the HTTP/2 error code, GOAWAY), each naming its stream id. A RESET the
 * peer sent has in `len` the bytes of the stream's submitted DATA that
 * had not gone out (reel_h2_stream_queued just before; dropped with it).
 * Bytes out: the submit_* calls queue frames, reel_h2_take_output hands
 * them over.
 *
 * Heads are the neutral reel_msg_head_t (version "HTTP/2.0"): pseudo
 * headers become method, scheme, host, port and path (:authority, else
 * Host) or status; fields keep wire order. Going out, a head is translated
 * as RFC 9113 8.2 asks: names lowercased, connection-specific fields
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade,
 * TE other than "trailers") and Host (it becomes :authority) left out.
 *
 * Flow control is end to end: no WINDOW_UPDATE is sent for received DATA
 * until the caller says the bytes were passed on (reel_h2_consume), so a
 * slow reader on the other side slows this peer down instead of filling
 * memory, and one stalled stream leaves the others their windows.
 *
 * A stream reel resets because its peer broke the protocol on it is
 * reported as a RESET event marked local, with the code sent and why
 * (the rule, the field); in the server role a request head refused
 * before it was reported comes with it (codec.h), so that a malformed
 * request is recorded as one. A stream beyond max_concurrent_streams is
 * refused by reel, not nghttp2 (which would refuse it before handing
 * over any of its head), once its head came, and its RESET carries that
 * head: REFUSED_STREAM while the client has not acknowledged reel's
 * SETTINGS, GOAWAY PROTOCOL_ERROR after. A new stream's HEADERS after
 * reel sent GOAWAY, which nghttp2 ignores with no callback but the
 * frame's beginning, is a RESET marked after_goaway (nothing sent, an
 * empty head: nghttp2 hands none of it over; the reason names the
 * GOAWAY's code); so is one after a GOAWAY that terminated the session
 * (reel's or nghttp2's, for an error), in that read or any later one,
 * which nghttp2 drops without any callback: the codec finds its HEADERS
 * by walking the frames itself (at most max_concurrent_streams such
 * streams per connection). A stream whose HEADERS nghttp2 refused at the
 * frame header, or whose header block did not decode (COMPRESSION_ERROR),
 * is a RESET marked goaway, with the fields that had decoded. When
 * nghttp2 answered the stream's frame with GOAWAY rather than RST_STREAM
 * (a WINDOW_UPDATE of 0, say), the RESET is marked goaway too. A
 * WebSocket extended CONNECT with END_STREAM on its HEADERS is reset
 * (PROTOCOL_ERROR) as malformed. nghttp2 resets a body that contradicts its
 * content-length without telling: this codec tells, with the lengths.
 *
 * Protections (each reported as an error with a reason): header lists over
 * max_header_list (the stream is reset: a RESET event says why),
 * more than max_continuations CONTINUATION frames for one block, streams
 * reset faster than max_resets_per_sec (rapid reset, CVE-2023-44487: the
 * connection gets GOAWAY, with INTERNAL_ERROR as nghttp2 sends it), HPACK tables capped at 4 KiB,
 * and nghttp2's own HTTP messaging checks (pseudo headers, field names and
 * values without CR, LF or NUL, content-length against DATA). Server push
 * is refused (ENABLE_PUSH 0 toward origins).
 *
 * Memory: events own copies of what they carry (at most one read's worth
 * is queued); DATA submitted for sending waits in a per-stream buffer the
 * caller watches with reel_h2_stream_queued. reel_h2_memory reports it all. */
#ifndef REEL_CORE_H2_H
#define REEL_CORE_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"
#include "core/codec.h"
#include "core/msg.h"

typedef struct reel_h2 reel_h2_t;

typedef enum {
    REEL_H2_SERVER = 1, /* toward a client */
    REEL_H2_CLIENT = 2, /* toward an origin */
} reel_h2_role;

/** Options; a zero field means its default. */
typedef struct {
    uint32_t max_header_list;        /* bytes (RFC 9113 6.5.2 counting), 64 KiB */
    uint32_t max_concurrent_streams; /* what we accept (server), 100 */
    uint32_t stream_window;          /* receive window per stream, 1 MiB */
    uint32_t conn_window;            /* receive window of the connection, 16 MiB */
    uint32_t max_resets_per_sec;     /* RST_STREAM a client may send per second, 100 */
    uint32_t max_continuations;      /* per header block, 8 */
    bool connect_protocol;           /* server: allow extended CONNECT (RFC 8441) */
} reel_h2_opts_t;

/** HTTP/2 error codes (RFC 9113 7) reel uses by name. */
enum {
    REEL_H2_NO_ERROR = 0x0,
    REEL_H2_PROTOCOL_ERROR = 0x1,
    REEL_H2_INTERNAL_ERROR = 0x2,
    REEL_H2_REFUSED_STREAM = 0x7,
    REEL_H2_CANCEL = 0x8,
    REEL_H2_CONNECT_ERROR = 0xa,
    REEL_H2_ENHANCE_YOUR_CALM = 0xb,
};

/** A codec for one side of a connection. A client starts with its preface
 * and SETTINGS queued, a server with its SETTINGS (it expects the client's
 * preface first). opts may be NULL. */
reel_codec_t *reel_h2_codec_new(reel_h2_role role, const reel_h2_opts_t *opts);
/** The HTTP/2 state behind an h2 codec (NULL for another codec). */
reel_h2_t *reel_h2_codec_h2(reel_codec_t *c);

/** Client: opens a stream with head (method, scheme, host, port, path,
 * fields); end: no body follows. *stream gets its id. */
reel_rc reel_h2_submit_request(reel_h2_t *h, const reel_msg_head_t *head, bool end,
                               uint32_t *stream, reel_err_t *err);
/** Server: answers stream with head (status, fields; connection-specific
 * ones are left out, and so is a Content-Length of a 1xx or 204); an
 * interim (1xx) head may come before the final one. */
reel_rc reel_h2_submit_response(reel_h2_t *h, uint32_t stream, const reel_msg_head_t *head,
                                bool end, reel_err_t *err);
/** Body bytes for stream (copied; sent as the peer's windows allow); end:
 * the last ones. REEL_NOTFOUND for a stream that is gone. */
reel_rc reel_h2_submit_data(reel_h2_t *h, uint32_t stream, const void *data, size_t len, bool end);
/** Trailers end the stream after its queued data. */
reel_rc reel_h2_submit_trailers(reel_h2_t *h, uint32_t stream, const reel_field_t *fields, size_t n,
                                reel_err_t *err);
/** The name of an HTTP/2 error code ("PROTOCOL_ERROR"; static). */
const char *reel_h2_error_name(uint32_t code);
/** RST_STREAM with code. */
void reel_h2_reset(reel_h2_t *h, uint32_t stream, uint32_t code);
/** GOAWAY with code (last stream: the last one accepted, not counting
 * streams refused over the concurrency limit). */
void reel_h2_goaway(reel_h2_t *h, uint32_t code);
/** n bytes of stream's received DATA were passed on: let the peer send
 * that much more (stream and connection windows). */
void reel_h2_consume(reel_h2_t *h, uint32_t stream, size_t n);

/** Frames waiting to be sent, appended to out. */
reel_rc reel_h2_take_output(reel_h2_t *h, reel_buf_t *out);
/** Submitted DATA of stream not yet handed to take_output. */
size_t reel_h2_stream_queued(const reel_h2_t *h, uint32_t stream);
/** Whether this side's END_STREAM of stream went out in a take_output
 * (true too once the stream is closed and gone). An empty last DATA frame
 * waits for the peer's window like any other, so an empty queue alone
 * does not say it. */
bool reel_h2_stream_end_sent(const reel_h2_t *h, uint32_t stream);
/** Bytes of stream's submitted DATA that went out since the last call
 * (what the other side may now consume). */
size_t reel_h2_stream_take_sent(reel_h2_t *h, uint32_t stream);
/** Bytes this side holds: queued events and unsent DATA. */
size_t reel_h2_memory(const reel_h2_t *h);
/** The peer's SETTINGS allow extended CONNECT (RFC 8441 3): a client
 * may send WebSockets as streams. False until its SETTINGS came. */
bool reel_h2_peer_connect_protocol(const reel_h2_t *h);
/** The peer's first SETTINGS came: what they allow is known (extended
 * CONNECT among them). */
bool reel_h2_peer_settings_seen(const reel_h2_t *h);
/** False once the connection is over (GOAWAY both ways, or a fatal error)
 * and nothing is left to send. */
bool reel_h2_alive(const reel_h2_t *h);

/** Whether events wait to be handed out (reel_codec_feed with no input
 * gives them): also those output made (a reset nghttp2 sent of its own). */
bool reel_h2_has_events(const reel_h2_t *h);

/** The client connection preface (24 bytes): how a prior-knowledge h2c
 * client starts. */
#define REEL_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define REEL_H2_PREFACE_LEN 24

#endif
