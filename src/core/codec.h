/* Protocol codecs: the sans-I/O layer between a peer's plaintext (what its
 * filter stack delivers, core/filter.h) and the exchanges. One interface
 * for every protocol a connection may speak:
 *
 *   h1   HTTP/1.x (core/http1.c): heads, body data, end, upgrade
 *   ws   WebSocket (core/ws.c): messages and control frames
 *   tcp  raw bytes: each read is one message (a chunk)
 *   h2   HTTP/2 (core/h2.c, nghttp2): many streams on one connection
 *
 * A codec reads one direction of one connection. Every event names the
 * stream it belongs to: HTTP/1 numbers its messages 1, 2, 3... in order (a
 * response has the number of the request it answers, as HTTP/1 answers in
 * order), a WebSocket or TCP connection is stream 0, and HTTP/2 will use
 * its own stream ids. The exchange of a stream (core/conn.h) keeps the ids
 * of both sides, so that the connection code does not care how many
 * streams a protocol runs at once.
 *
 * Pull style, as the parsers under it: feed() reports at most one event
 * and how many bytes it consumed; the caller acts on the event and calls
 * again with the rest (even when nothing is left). The bytes an event
 * covers are buf[0..consumed): a proxy that forwards bytes as they are
 * (HTTP/1 to HTTP/1, WebSocket frames) passes exactly those on.
 *
 * Ownership: buf is borrowed for the call. Event data points into buf or
 * into the codec (valid until the next call); see each protocol's header
 * for the exact lifetimes (reel_h1_event_t, reel_ws_event_t). */
#ifndef REEL_CORE_CODEC_H
#define REEL_CORE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "core/http1.h"
#include "core/ws.h"

typedef enum {
    REEL_CODEC_EV_NONE = 0,
    REEL_CODEC_EV_HEAD,    /* a message head: h1.head */
    REEL_CODEC_EV_DATA,    /* body bytes, framing removed: data/len */
    REEL_CODEC_EV_END,     /* the message is complete (h1.trailers) */
    REEL_CODEC_EV_UPGRADE, /* the connection leaves the protocol after this */
    REEL_CODEC_EV_RAW,     /* bytes after UPGRADE: data/len */
    REEL_CODEC_EV_MESSAGE, /* a WebSocket message or control frame (ws), a
                              TCP chunk (data/len) */
    REEL_CODEC_EV_RESET,   /* the stream was reset, by the peer or by reel
                              (h2: local, error_code, and error_reason
                              when reel knows why) */
    REEL_CODEC_EV_GOAWAY,  /* the connection is closing, by the peer's
                              GOAWAY or reel's (h2: local, error_code,
                              last_stream) */
} reel_codec_ev_type;

typedef struct {
    reel_codec_ev_type type;
    uint32_t stream;
    const uint8_t *data;
    size_t len;
    /* The protocol's own event, for what only it knows (HTTP/1 framing,
     * WebSocket opcodes): the member of the codec's protocol is filled. */
    reel_h1_event_t h1;
    reel_ws_event_t ws;
    /* HTTP/2: HEAD's head (neutral; strings NUL-terminated), END's
     * trailers, GOAWAY's last stream id. */
    reel_msg_head_t head;
    const reel_field_t *trailers;
    size_t ntrailers;
    uint32_t last_stream;
    /* HTTP/2 RESET or GOAWAY: reel sent it, because the peer broke the
     * protocol (error_reason says how); false: the peer sent it. The
     * RESET of a stream whose head was refused before it was reported
     * (server role) carries in head what had been read of it (version
     * set, missing parts empty), so that its flow can be recorded. */
    bool local;
    /* HTTP/2 local RESET: what reel sent for the stream's offence was not
     * RST_STREAM but GOAWAY with error_code (nghttp2 took it for a
     * connection error); the GOAWAY event follows once it is sent. */
    bool goaway;
    /* HTTP/2 local RESET (server role): the stream was opened after reel
     * had sent GOAWAY with last_stream, and ignored (RFC 9113 6.8):
     * nothing was sent for it, and its head is unknown (nghttp2 hands
     * none of it over). */
    bool after_goaway;
    /* On error: an HTTP status to answer with (HTTP), a close code
     * (WebSocket), and a static reason. */
    int error_status;
    uint32_t error_code;
    const char *error_reason;
} reel_codec_event_t;

typedef struct reel_codec reel_codec_t;

typedef struct {
    const char *name;
    /* REEL_OK with one event, REEL_NEED_MORE (all used, nothing to
     * report), or an error with error_* filled (see the protocol's feed
     * for what *consumed then means). */
    reel_rc (*feed)(reel_codec_t *c, const uint8_t *buf, size_t len, size_t *consumed,
                    reel_codec_event_t *ev);
    /* The peer ended its stream: REEL_OK (maybe with a last event) or an
     * error when that cut a message short. */
    reel_rc (*feed_eof)(reel_codec_t *c, reel_codec_event_t *ev);
    void (*free)(reel_codec_t *c);
} reel_codec_ops_t;

struct reel_codec {
    const reel_codec_ops_t *ops;
};

static inline reel_rc reel_codec_feed(reel_codec_t *c, const uint8_t *buf, size_t len,
                                      size_t *consumed, reel_codec_event_t *ev) {
    return c->ops->feed(c, buf, len, consumed, ev);
}

static inline reel_rc reel_codec_feed_eof(reel_codec_t *c, reel_codec_event_t *ev) {
    return c->ops->feed_eof(c, ev);
}

/** Frees c (accepts NULL). */
void reel_codec_free(reel_codec_t *c);

/** HTTP/1 for one side (requests as a server reads them, or responses).
 * lim may be NULL. */
reel_codec_t *reel_h1_codec_new(reel_h1_side side, const reel_h1_limits_t *lim);
/** The parser under an h1 codec, for what is HTTP/1's alone (announcing
 * the request a response answers, a refused upgrade, a partial head). */
reel_h1_t *reel_h1_codec_parser(reel_codec_t *c);

/** WebSocket frames from one side (reel_ws_new's role and options). */
reel_codec_t *reel_ws_codec_new(reel_ws_role role, const reel_ws_opts_t *opts);
/** The WebSocket codec under a ws codec (mid-frame state, ...). */
reel_ws_t *reel_ws_codec_ws(reel_codec_t *c);

/** Raw bytes: all input is one MESSAGE event (stream 0). */
reel_codec_t *reel_tcp_codec_new(void);

#endif
