/* WebSocket frames (RFC 6455) and permessage-deflate (RFC 7692), sans I/O.
 *
 * A reel_ws_t reads one direction of one WebSocket connection: the frames a
 * client sends (REEL_WS_FROM_CLIENT, which must be masked) or the frames a
 * server sends (REEL_WS_FROM_SERVER, which must not be). It is fed bytes and
 * hands back one event per call; it never touches a socket, a timer or the
 * event loop, and never changes the bytes: a proxy forwards exactly the
 * bytes the codec reports consumed, as they were received, and records the
 * events.
 *
 * Driving it is as for reel_h1_feed(): call reel_ws_feed() with the
 * unconsumed bytes, act on the event, advance by *consumed, and call again
 * until it returns REEL_NEED_MORE (everything consumed, nothing to report).
 * The event of a frame is reported by the call that consumes the frame's
 * last byte, so the bytes consumed up to and including that call are the
 * whole frame.
 *
 * Events, per direction:
 *     ( MESSAGE | CONTROL )*
 * A MESSAGE is a complete data message (text or binary), reassembled from
 * its frames, unmasked and, when compressed, inflated. Control frames
 * (ping, pong, close) are CONTROL events, also when they arrive between the
 * fragments of a data message: then the CONTROL comes before the MESSAGE.
 *
 * Memory is bounded by the options, whatever the peer sends: a message keeps
 * at most max_message bytes (the rest is counted, validated and dropped;
 * this holds for the inflated size too, so a compression bomb costs time
 * but not memory), a frame header or a control frame at most 14 and 125
 * bytes, the inflater its negotiated window.
 *
 * Validation per RFC 6455 5 and RFC 7692 6: reserved opcodes and RSV bits,
 * masking per direction, control frames over 125 bytes or fragmented,
 * continuation without a message, a new message inside a fragmented one, a
 * 64-bit length with its top bit set, UTF-8 of text messages (checked
 * incrementally across frames, the whole message even past max_message,
 * failing at the first bad byte) and of close reasons, close payloads of
 * one byte and close codes that may not be sent, undecodable compressed
 * data, and frames after a close frame. A non-minimal length encoding is
 * accepted, as browsers do. Each is an error with the close code an
 * endpoint would send (1002 protocol error, 1007 invalid data) and a static
 * reason; the codec is dead after it. */
#ifndef REEL_CORE_WS_H
#define REEL_CORE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"

/** Which direction a codec reads. */
typedef enum {
    REEL_WS_FROM_CLIENT = 1, /**< frames a client sends: must be masked */
    REEL_WS_FROM_SERVER = 2, /**< frames a server sends: must not be masked */
} reel_ws_role;

/** Frame opcodes (RFC 6455 5.2); the others are reserved. */
typedef enum {
    REEL_WS_OP_CONTINUATION = 0x0,
    REEL_WS_OP_TEXT = 0x1,
    REEL_WS_OP_BINARY = 0x2,
    REEL_WS_OP_CLOSE = 0x8,
    REEL_WS_OP_PING = 0x9,
    REEL_WS_OP_PONG = 0xa,
} reel_ws_opcode;

/** Close codes the codec reports (RFC 6455 7.4.1). */
#define REEL_WS_CLOSE_NORMAL 1000
#define REEL_WS_CLOSE_PROTOCOL 1002     /**< protocol error */
#define REEL_WS_CLOSE_NO_STATUS 1005    /**< a close frame without a code */
#define REEL_WS_CLOSE_ABNORMAL 1006     /**< connection cut (never sent) */
#define REEL_WS_CLOSE_INVALID_DATA 1007 /**< bad UTF-8 or compressed data */

/** Longest payload of a control frame. */
#define REEL_WS_MAX_CONTROL 125

/** permessage-deflate as the server accepted it (RFC 7692 7.1): the
 * parameters of its Sec-WebSocket-Extensions answer. Both directions' codecs
 * take the same struct and use their own half. Window bits 0 mean 15. */
typedef struct {
    bool enabled;                    /**< permessage-deflate is in use */
    bool server_no_context_takeover; /**< the server resets its window per message */
    bool client_no_context_takeover; /**< the client resets its window per message */
    uint8_t server_max_window_bits;  /**< window of what the server sends, 8..15 */
    uint8_t client_max_window_bits;  /**< window of what the client sends, 8..15 */
} reel_ws_deflate_t;

/** Options of a codec. Zeroed options: messages keep nothing, no deflate. */
typedef struct {
    /** Bytes of a reassembled (and inflated) message kept for its event;
     * the rest is counted (MESSAGE length, truncated). 0 keeps nothing. */
    size_t max_message;
    /** Compression in use on the connection. */
    reel_ws_deflate_t deflate;
    /** Leave a frame header that is not yet whole unconsumed (NEED_MORE
     * with *consumed short of len by at most REEL_WS_MAX_HEADER - 1
     * bytes): the caller keeps those bytes and feeds them again with what
     * follows. A relay that forwards what the codec consumed then never
     * passes on the start of a header it cannot judge yet, so a frame
     * refused for its header (a reserved opcode, a masked frame from a
     * server) is refused whole, however the bytes were cut on the way, and
     * the other peer can still be sent a Close. At the end of the stream
     * reel_ws_feed_eof() counts such bytes as a frame cut short. */
    bool hold_header;
} reel_ws_opts_t;

/** What reel_ws_feed() reports. */
typedef enum {
    REEL_WS_EV_NONE = 0, /**< nothing (NEED_MORE, error) */
    REEL_WS_EV_MESSAGE,  /**< a complete text or binary message */
    REEL_WS_EV_CONTROL,  /**< a ping, pong or close frame */
} reel_ws_ev_type;

/** One event. Fields not named by the type are zero. */
typedef struct {
    reel_ws_ev_type type;
    /** MESSAGE: TEXT or BINARY; CONTROL: CLOSE, PING or PONG. */
    reel_ws_opcode opcode;
    /** The payload, unmasked and inflated: MESSAGE the first
     * min(length, max_message) bytes, CONTROL all of it. Owned by the codec
     * (never NULL, NUL-terminated after len), valid until the next call. */
    const uint8_t *data;
    size_t len;
    /** MESSAGE: full payload length (inflated when compressed); CONTROL: len. */
    uint64_t length;
    /** Payload bytes on the wire, summed over the frames (compressed size). */
    uint64_t wire_length;
    /** MESSAGE: length > max_message, data holds only the first bytes. */
    bool truncated;
    /** MESSAGE: sent compressed (RSV1 on its first frame) and inflated here. */
    bool compressed;
    /** Frames the message came in (1 for a control frame). */
    uint64_t frames;
    /** CLOSE: the code, REEL_WS_CLOSE_NO_STATUS (1005) for an empty payload,
     * and the reason (inside data, not NUL-terminated; may be empty).
     * From reel_ws_feed_eof: how the peer closed (see there). */
    uint16_t close_code;
    const char *close_reason;
    size_t close_reason_len;
    /** On error: the close code an endpoint would fail the connection with
     * (1002, 1007; 1006 from reel_ws_feed_eof) and a static reason of at
     * most 123 bytes of ASCII, fit for reel_ws_write_close. */
    uint16_t error_code;
    const char *error_reason;
} reel_ws_event_t;

/** Opaque codec. */
typedef struct reel_ws reel_ws_t;

/** Creates a codec for one direction of one connection. opts may be NULL
 * (zeroed options). Returns owned (free with reel_ws_free); never NULL
 * (allocation aborts). Window bits out of 8..15 are taken as 15, and 8 as 9
 * (what zlib's deflate makes of 8). */
reel_ws_t *reel_ws_new(reel_ws_role role, const reel_ws_opts_t *opts);

/** Frees w and everything its events point to. Accepts NULL. */
void reel_ws_free(reel_ws_t *w);

/** Changes max_message from the next message on (the one in progress
 * keeps the cap it started with). */
void reel_ws_set_max_message(reel_ws_t *w, size_t max_message);

/** Parses from buf[0..len) (borrowed; may be NULL when len is 0) until there
 * is one event to report.
 *
 * Returns REEL_OK with *ev filled and *consumed <= len: the frame the event
 * describes ends at buf + *consumed. Act on it and call again with
 * buf + *consumed (even when nothing is left).
 * Returns REEL_NEED_MORE with *consumed == len and ev->type NONE: all input
 * used (a partial frame header is kept inside the codec), nothing to report.
 * Returns REEL_INVALID on a protocol error, with ev->error_code and
 * ev->error_reason. Unlike reel_h1_feed, *consumed is then the bytes before
 * the offending frame (whole fragments of a message, valid: forward them);
 * none of the offending frame is counted, but its start may have been
 * consumed by an earlier call: reel_ws_mid_frame() says so. The codec is
 * dead from then on and every later call returns the same error with
 * *consumed 0. */
reel_rc reel_ws_feed(reel_ws_t *w, const uint8_t *buf, size_t len, size_t *consumed,
                     reel_ws_event_t *ev);

/** Tells the codec the peer closed its sending side. Returns REEL_OK (ev
 * NONE) between frames outside a fragmented message, REEL_INVALID with
 * error_code 1006 inside a frame or a fragmented message. Later feeds of
 * bytes are errors ("data after end of stream"). On REEL_OK,
 * ev->close_code says how this peer closed: the code of the Close frame
 * it sent (1005 for one without a code), or REEL_WS_CLOSE_ABNORMAL (1006)
 * when it sent none and just ended the connection (RFC 6455 7.1.5). */
reel_rc reel_ws_feed_eof(reel_ws_t *w, reel_ws_event_t *ev);

/** True when bytes of an unfinished frame have been reported consumed:
 * the receiving side is mid-frame, so the proxy cannot put a frame of its
 * own (a close) there, only cut the connection. After an error: whether
 * the offending frame started in an earlier call. */
bool reel_ws_mid_frame(const reel_ws_t *w);

/** True once a whole Close frame has been read on this stream (the event
 * reported: a proxy has passed it on). RFC 6455 5.5.1: a Close is the
 * last frame an endpoint sends, so the proxy may put no frame of its own,
 * a Close least of all, on the stream after it. Also after a later error
 * (a frame after that Close is one). */
bool reel_ws_close_seen(const reel_ws_t *w);

/** Parses the value of the Sec-WebSocket-Extensions field of a 101
 * response (several fields joined with ", "; value borrowed, len bytes, may
 * hold no NUL) into *out: what the server accepted of permessage-deflate
 * (out->enabled false when absent or when value is NULL). Returns REEL_OK;
 * REEL_INVALID (out zeroed) for a malformed list, permessage-deflate
 * accepted twice, or a parameter it does not define, repeats, or gives a
 * bad value (window bits outside 8..15) -- the client fails such a
 * connection (RFC 7692 5); REEL_UNSUPPORTED (out filled) when the server
 * also accepted another extension, which may give RSV bits or payloads a
 * meaning the codec does not know: relay that connection without it. */
reel_rc reel_ws_parse_extensions(const char *value, size_t len, reel_ws_deflate_t *out);

/** Largest frame header: 2 bytes, 8 of extended length, 4 of masking key. */
#define REEL_WS_MAX_HEADER 14

/** Appends one frame to out: FIN when fin, RSV1 when rsv1, opcode op (any
 * value 0..15), the shortest length encoding, and payload[0..len)
 * (borrowed; may be NULL when len is 0), masked with mask_key (4 bytes)
 * when mask_key is not NULL. Returns REEL_LIMIT (out unchanged) past out's
 * maximum, REEL_INVALID (out unchanged) when op is over 15. Writes what it
 * is told: a control frame over 125 bytes is the caller's business. */
reel_rc reel_ws_write_frame(reel_buf_t *out, unsigned op, bool fin, bool rsv1,
                            const uint8_t *payload, size_t len, const uint8_t *mask_key);

/** Appends a close frame with code and reason (a NUL-terminated string, may
 * be NULL) to out, masked with mask_key (4 bytes: frames a client sends;
 * the caller supplies unpredictable bytes, RFC 6455 10.3) or unmasked
 * (NULL: frames a server sends). code 0 sends an empty payload (and no
 * reason). Returns REEL_INVALID (out unchanged) when code is one an
 * endpoint may not send, or the reason is over 123 bytes or not UTF-8;
 * REEL_LIMIT (out unchanged) past out's maximum. */
reel_rc reel_ws_write_close(reel_buf_t *out, uint16_t code, const char *reason,
                            const uint8_t *mask_key);

#endif
