/* WebSocket frame codec and permessage-deflate; see ws.h for the contract.
 *
 * One pass over the input, no copy of it: a frame header (2 to 14 bytes)
 * is collected in hdr[] and validated as soon as its first two bytes are
 * there (opcode, RSV bits, masking, control-frame rules, continuation
 * state), its length once whole. Payload bytes are then taken as they come,
 * unmasked through a small scratch buffer and
 *   - control frames: copied to ctl[] (at most 125 bytes);
 *   - data frames: inflated when the message is compressed, then counted,
 *     UTF-8-checked (text) and appended to the message buffer up to the cap
 *     the message started with. Inflate output goes through a fixed scratch
 *     buffer, so its size never depends on the compression ratio.
 * A frame's event is made when its last payload byte is taken, so a call
 * that reports an event has consumed exactly up to the end of that frame.
 *
 * Inflating (RFC 7692 7.2.2): one raw inflate stream per codec, made on the
 * first compressed message, with window max(negotiated bits, 9) -- zlib's
 * deflate cannot make an 8-bit window and silently uses 9, so a zlib peer
 * that agreed to 8 sends 9. At the end of each compressed message the four
 * bytes 00 00 ff ff are inflated too; the stream is reset after the message
 * when the sender does not take its context over. A sender may also end a
 * message with a final block (BFINAL, RFC 7692 7.2.3.4): the stream then
 * ended, the tail is not fed, and the next compressed bytes start a new
 * stream primed with the old window (the sender may refer back to it). */
#include "core/ws.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/wsclose.h"

#define SCRATCH 4096
/* message buffers larger than this are released after their event */
#define KEEP_STORAGE (64 * 1024)

typedef enum { ST_HEADER, ST_PAYLOAD, ST_CLOSED, ST_EOF, ST_FAILED } state_t;

/* Incremental UTF-8 check: continuation bytes still due, and the range the
 * next one must fall in (excludes overlongs, surrogates, > U+10FFFF). */
typedef struct {
    uint8_t need, lo, hi;
} utf8_t;

struct reel_ws {
    reel_ws_role role;
    size_t max_message;
    bool deflate;     /* permessage-deflate in use */
    bool no_takeover; /* the sender resets its window per message */
    int window_bits;
    state_t st;
    uint16_t close_code; /* of the Close frame received (1005: without one), 0: none */

    /* the frame being parsed */
    uint8_t hdr[REEL_WS_MAX_HEADER];
    size_t hdr_len;
    bool fin, rsv1, masked;
    unsigned op;
    uint8_t key[4];
    unsigned key_pos;
    uint64_t payload_len; /* of the frame */
    uint64_t remaining;   /* payload bytes still to come */
    uint64_t frame_bytes; /* of this frame consumed so far (header included) */
    bool hold_header;     /* an unfinished header is left unconsumed (opts) */
    size_t held;          /* bytes of one the last call left so */

    /* a control frame's payload, NUL-terminated */
    uint8_t ctl[REEL_WS_MAX_CONTROL + 1];
    size_t ctl_len;

    /* the data message being reassembled */
    bool in_msg;
    unsigned msg_op;
    bool msg_compressed;
    size_t msg_cap;
    reel_buf_t msg;
    uint64_t msg_length, msg_wire, msg_frames;
    utf8_t utf8;
    bool release; /* msg holds a delivered event's payload */

    /* inflate state of this direction */
    z_stream z;
    bool z_init;
    bool z_ended; /* the deflate stream ended inside the current message */

    /* error */
    uint16_t err_code;
    const char *err_reason;
    bool err_mid;
};

/* ---- UTF-8 ---- */

static bool utf8_feed(utf8_t *u, const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (u->need == 0) {
            /* ASCII runs eight bytes at a time */
            while (i + 8 <= n) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                if (v & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i == n)
                break;
        }
        uint8_t c = p[i++];
        if (u->need) {
            if (c < u->lo || c > u->hi)
                return false;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xbf;
            continue;
        }
        if (c < 0x80)
            continue;
        u->lo = 0x80;
        u->hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1;
        } else if (c == 0xe0) {
            u->need = 2;
            u->lo = 0xa0;
        } else if (c == 0xed) {
            u->need = 2;
            u->hi = 0x9f;
        } else if (c >= 0xe1 && c <= 0xef) {
            u->need = 2;
        } else if (c == 0xf0) {
            u->need = 3;
            u->lo = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            u->need = 3;
        } else if (c == 0xf4) {
            u->need = 3;
            u->hi = 0x8f;
        } else {
            return false;
        }
    }
    return true;
}

static bool utf8_valid(const uint8_t *p, size_t n) {
    utf8_t u = {0, 0x80, 0xbf};
    return utf8_feed(&u, p, n) && u.need == 0;
}

/* ---- errors ---- */

static reel_rc fail(reel_ws_t *w, uint16_t code, const char *reason) {
    if (!w->err_reason) {
        w->err_code = code;
        w->err_reason = reason;
    }
    return REEL_INVALID;
}

static reel_rc error_out(reel_ws_t *w, reel_ws_event_t *ev) {
    w->st = ST_FAILED;
    memset(ev, 0, sizeof(*ev));
    ev->error_code = w->err_code;
    ev->error_reason = w->err_reason;
    return REEL_INVALID;
}

/* ---- message bytes ---- */

/* Takes n bytes of a data message's (inflated) payload. */
static reel_rc message_bytes(reel_ws_t *w, const uint8_t *p, size_t n) {
    if (w->msg_op == REEL_WS_OP_TEXT && !utf8_feed(&w->utf8, p, n))
        return fail(w, REEL_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message");
    w->msg_length += n;
    size_t room = w->msg_cap - w->msg.len;
    if (room > n)
        room = n;
    if (room == 0)
        return REEL_OK;
    /* grow by doubling, but never past the cap (+ the NUL): reel_buf's own
     * doubling could reserve twice max_message */
    size_t need = w->msg.len + room + 1;
    if (need > w->msg.cap) {
        size_t cap = w->msg.cap ? w->msg.cap : 256;
        while (cap < need)
            cap *= 2;
        if (cap > w->msg_cap + 1)
            cap = w->msg_cap + 1;
        w->msg.data = reel_realloc(w->msg.data, cap);
        w->msg.cap = cap;
    }
    memcpy(w->msg.data + w->msg.len, p, room);
    w->msg.len += room;
    w->msg.data[w->msg.len] = 0;
    return REEL_OK;
}

static void inflate_start(reel_ws_t *w) {
    memset(&w->z, 0, sizeof(w->z));
    if (inflateInit2(&w->z, -w->window_bits) != Z_OK)
        abort(); /* out of memory; bad parameters are clamped in reel_ws_new */
    w->z_init = true;
}

/* A new stream after the old one ended, keeping its window as dictionary
 * unless the sender drops its context per message anyway. */
static void inflate_restart(reel_ws_t *w, bool keep_window) {
    uint8_t *dict = NULL;
    uInt dlen = 0;
    if (keep_window) {
        dict = reel_malloc(1u << 15);
        if (inflateGetDictionary(&w->z, dict, &dlen) != Z_OK)
            dlen = 0;
    }
    inflateReset(&w->z);
    if (dlen)
        inflateSetDictionary(&w->z, dict, dlen);
    free(dict);
    w->z_ended = false;
}

/* Inflates n compressed bytes into the message. */
static reel_rc inflate_bytes(reel_ws_t *w, const uint8_t *p, size_t n, bool tail) {
    uint8_t out[SCRATCH];
    if (n == 0)
        return REEL_OK;
    if (w->z_ended) {
        if (tail)
            return REEL_OK; /* the stream ended with a final block: no tail */
        inflate_restart(w, !w->no_takeover);
    }
    w->z.next_in = (Bytef *)(uintptr_t)p;
    w->z.avail_in = (uInt)n;
    for (;;) {
        w->z.next_out = out;
        w->z.avail_out = sizeof(out);
        int zr = inflate(&w->z, Z_SYNC_FLUSH);
        size_t got = sizeof(out) - w->z.avail_out;
        if (got) {
            reel_rc rc = message_bytes(w, out, got);
            if (rc != REEL_OK)
                return rc;
        }
        if (zr == Z_STREAM_END) {
            w->z_ended = true;
            if (w->z.avail_in == 0 || tail)
                break;
            inflate_restart(w, !w->no_takeover); /* more data after a final block */
            continue;
        }
        if (zr == Z_BUF_ERROR)
            break; /* no progress possible: input used up, output flushed */
        if (zr != Z_OK)
            return fail(w, REEL_WS_CLOSE_INVALID_DATA, "invalid compressed data");
        if (w->z.avail_in == 0 && w->z.avail_out != 0)
            break;
    }
    w->z.next_in = NULL;
    w->z.avail_in = 0;
    return REEL_OK;
}

/* Payload bytes of the current frame (masked as on the wire). */
static reel_rc payload_bytes(reel_ws_t *w, const uint8_t *p, size_t n) {
    uint8_t tmp[SCRATCH];
    bool control = w->op >= REEL_WS_OP_CLOSE;
    while (n) {
        size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
        const uint8_t *src = p;
        if (w->masked) {
            for (size_t i = 0; i < k; i++)
                tmp[i] = p[i] ^ w->key[(w->key_pos + i) & 3];
            w->key_pos = (unsigned)((w->key_pos + k) & 3);
            src = tmp;
        }
        reel_rc rc = REEL_OK;
        if (control) {
            memcpy(w->ctl + w->ctl_len, src, k); /* k <= 125 - ctl_len: checked in the header */
            w->ctl_len += k;
        } else if (w->msg_compressed) {
            rc = inflate_bytes(w, src, k, false);
        } else {
            rc = message_bytes(w, src, k);
        }
        if (rc != REEL_OK)
            return rc;
        p += k;
        n -= k;
    }
    return REEL_OK;
}

/* ---- frames ---- */

static size_t header_size(const uint8_t *h) {
    size_t n = 2;
    unsigned len7 = h[1] & 0x7f;
    if (len7 == 126)
        n += 2;
    else if (len7 == 127)
        n += 8;
    if (h[1] & 0x80)
        n += 4;
    return n;
}

/* The first two bytes of a header: everything but the extended length. */
static reel_rc check_start(reel_ws_t *w) {
    uint8_t b0 = w->hdr[0], b1 = w->hdr[1];
    unsigned op = b0 & 0x0f;
    bool fin = b0 & 0x80, rsv1 = b0 & 0x40, masked = b1 & 0x80;
    unsigned len7 = b1 & 0x7f;
    bool control = op >= REEL_WS_OP_CLOSE;
    if (op != REEL_WS_OP_CONTINUATION && op != REEL_WS_OP_TEXT && op != REEL_WS_OP_BINARY &&
        op != REEL_WS_OP_CLOSE && op != REEL_WS_OP_PING && op != REEL_WS_OP_PONG)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "reserved opcode");
    if (b0 & 0x30)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "RSV2 or RSV3 set");
    if (rsv1 && !w->deflate)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "RSV1 set without permessage-deflate");
    if (rsv1 && control)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "RSV1 set on a control frame");
    if (rsv1 && op == REEL_WS_OP_CONTINUATION)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "RSV1 set on a continuation frame");
    if (control && !fin)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "fragmented control frame");
    if (control && len7 > REEL_WS_MAX_CONTROL)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes");
    if (op == REEL_WS_OP_CLOSE && len7 == 1)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
    if (op == REEL_WS_OP_CONTINUATION && !w->in_msg)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "continuation frame without a message");
    if (!control && op != REEL_WS_OP_CONTINUATION && w->in_msg)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "new message inside a fragmented message");
    if (w->role == REEL_WS_FROM_CLIENT && !masked)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "unmasked frame from a client");
    if (w->role == REEL_WS_FROM_SERVER && masked)
        return fail(w, REEL_WS_CLOSE_PROTOCOL, "masked frame from a server");
    return REEL_OK;
}

/* The header is whole: take its length and key, start the frame. */
static reel_rc start_frame(reel_ws_t *w) {
    const uint8_t *h = w->hdr;
    unsigned len7 = h[1] & 0x7f;
    size_t at = 2;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        if (len >> 63)
            return fail(w, REEL_WS_CLOSE_PROTOCOL, "frame length over 2^63 - 1");
    }
    w->fin = h[0] & 0x80;
    w->rsv1 = h[0] & 0x40;
    w->op = h[0] & 0x0f;
    w->masked = h[1] & 0x80;
    if (w->masked)
        memcpy(w->key, h + at, 4);
    w->key_pos = 0;
    w->payload_len = w->remaining = len;
    if (w->op >= REEL_WS_OP_CLOSE) {
        w->ctl_len = 0;
        return REEL_OK;
    }
    if (w->op != REEL_WS_OP_CONTINUATION) {
        w->in_msg = true;
        w->msg_op = w->op;
        w->msg_compressed = w->rsv1;
        w->msg_cap = w->max_message;
        reel_buf_reset(&w->msg);
        w->msg_length = w->msg_wire = w->msg_frames = 0;
        w->utf8 = (utf8_t){0, 0x80, 0xbf};
        if (w->msg_compressed && !w->z_init)
            inflate_start(w);
    }
    w->msg_frames++;
    w->msg_wire += len;
    return REEL_OK;
}

/* The frame's payload is complete: an event, nothing (a fragment), or an
 * error. */
static reel_rc end_frame(reel_ws_t *w, reel_ws_event_t *ev, bool *have_ev) {
    *have_ev = false;
    if (w->op >= REEL_WS_OP_CLOSE) {
        memset(ev, 0, sizeof(*ev));
        ev->type = REEL_WS_EV_CONTROL;
        ev->opcode = (reel_ws_opcode)w->op;
        w->ctl[w->ctl_len] = 0;
        ev->data = w->ctl;
        ev->len = w->ctl_len;
        ev->length = ev->wire_length = w->ctl_len;
        ev->frames = 1;
        if (w->op == REEL_WS_OP_CLOSE) {
            ev->close_code = REEL_WS_CLOSE_NO_STATUS;
            ev->close_reason = (const char *)w->ctl + w->ctl_len;
            if (w->ctl_len >= 2) {
                ev->close_code = (uint16_t)(w->ctl[0] << 8 | w->ctl[1]);
                if (!reel_ws_close_code_ok(ev->close_code))
                    return fail(w, REEL_WS_CLOSE_PROTOCOL, "invalid close code");
                if (!utf8_valid(w->ctl + 2, w->ctl_len - 2))
                    return fail(w, REEL_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in a close reason");
                ev->close_reason = (const char *)w->ctl + 2;
                ev->close_reason_len = w->ctl_len - 2;
            }
            w->close_code = ev->close_code;
        }
        *have_ev = true;
        return REEL_OK;
    }
    if (!w->fin)
        return REEL_OK;
    if (w->msg_compressed) {
        static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
        reel_rc rc = inflate_bytes(w, tail, sizeof(tail), true);
        if (rc != REEL_OK)
            return rc;
        if (w->no_takeover)
            inflate_restart(w, false);
        else if (w->z_ended)
            inflate_restart(w, true);
    }
    if (w->msg_op == REEL_WS_OP_TEXT && w->utf8.need)
        return fail(w, REEL_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message");
    memset(ev, 0, sizeof(*ev));
    ev->type = REEL_WS_EV_MESSAGE;
    ev->opcode = (reel_ws_opcode)w->msg_op;
    ev->data = w->msg.data ? w->msg.data : (const uint8_t *)"";
    ev->len = w->msg.len;
    ev->length = w->msg_length;
    ev->wire_length = w->msg_wire;
    ev->truncated = w->msg_length > w->msg.len;
    ev->compressed = w->msg_compressed;
    ev->frames = w->msg_frames;
    w->in_msg = false;
    w->release = true;
    *have_ev = true;
    return REEL_OK;
}

static reel_rc drive(reel_ws_t *w, const uint8_t *buf, size_t len, size_t *consumed,
                     reel_ws_event_t *ev) {
    reel_rc rc = REEL_NEED_MORE;
    size_t off = 0;
    size_t boundary = 0;               /* end of the last frame finished in this call */
    w->held = 0;
    bool crossed = false;              /* a frame finished in this call */
    bool started = w->frame_bytes > 0; /* the current frame began in an earlier call */

    for (;;) {
        if (w->st == ST_CLOSED) {
            if (off < len)
                rc = fail(w, REEL_WS_CLOSE_PROTOCOL, "frame after a close frame");
            break;
        }
        if (w->st == ST_HEADER) {
            if (off == len)
                break;
            size_t want = w->hdr_len < 2 ? 2 : header_size(w->hdr);
            while (w->hdr_len < want && off < len) {
                w->hdr[w->hdr_len++] = buf[off++];
                w->frame_bytes++;
                if (w->hdr_len == 2) {
                    rc = check_start(w);
                    if (rc != REEL_OK)
                        goto out;
                    want = header_size(w->hdr);
                }
            }
            if (w->hdr_len < want) {
                if (w->hold_header) {
                    /* given back: they come again with the rest (an
                     * unfinished header only ever began in this call) */
                    off -= w->hdr_len;
                    w->frame_bytes -= w->hdr_len;
                    w->held = w->hdr_len;
                    w->hdr_len = 0;
                }
                rc = REEL_NEED_MORE;
                break;
            }
            rc = start_frame(w);
            if (rc != REEL_OK)
                goto out;
            w->st = ST_PAYLOAD;
        }
        /* ST_PAYLOAD */
        size_t n = len - off;
        if (n > w->remaining)
            n = (size_t)w->remaining;
        rc = payload_bytes(w, buf + off, n);
        if (rc != REEL_OK)
            goto out;
        off += n;
        w->remaining -= n;
        w->frame_bytes += n;
        if (w->remaining) {
            rc = REEL_NEED_MORE;
            break;
        }
        bool have_ev = false;
        bool was_close = w->op == REEL_WS_OP_CLOSE;
        rc = end_frame(w, ev, &have_ev);
        if (rc != REEL_OK)
            goto out;
        w->hdr_len = 0;
        w->frame_bytes = 0;
        w->st = was_close ? ST_CLOSED : ST_HEADER;
        crossed = true;
        boundary = off;
        if (have_ev) {
            rc = REEL_OK;
            goto out;
        }
        rc = REEL_NEED_MORE;
    }
out:
    if (rc == REEL_INVALID) {
        w->err_mid = !crossed && started;
        *consumed = crossed ? boundary : 0;
        reel_rc r = error_out(w, ev);
        return r;
    }
    *consumed = off;
    if (rc == REEL_NEED_MORE)
        memset(ev, 0, sizeof(*ev));
    return rc;
}

/* ---- public API ---- */

reel_ws_t *reel_ws_new(reel_ws_role role, const reel_ws_opts_t *opts) {
    reel_ws_t *w = reel_calloc(1, sizeof(*w));
    reel_ws_opts_t o;
    memset(&o, 0, sizeof(o));
    if (opts)
        o = *opts;
    w->role = role;
    w->deflate = o.deflate.enabled;
    w->hold_header = o.hold_header;
    bool from_server = role == REEL_WS_FROM_SERVER;
    w->no_takeover =
        from_server ? o.deflate.server_no_context_takeover : o.deflate.client_no_context_takeover;
    /* Always inflate with the largest window, whatever max_window_bits was
     * agreed: a larger window decodes every stream a smaller one does, and
     * zlib checks "distance too far back" against the window plus the output
     * of the current inflate() call, so with a small window whether a stream
     * is accepted would depend on how the bytes happened to arrive (found by
     * fuzz_ws). The endpoints enforce their own limits; the record keeps what
     * was sent. */
    w->window_bits = 15;
    w->st = ST_HEADER;
    reel_buf_init(&w->msg, 0);
    reel_ws_set_max_message(w, o.max_message);
    return w;
}

void reel_ws_free(reel_ws_t *w) {
    if (!w)
        return;
    if (w->z_init)
        inflateEnd(&w->z);
    reel_buf_free(&w->msg);
    free(w);
}

void reel_ws_set_max_message(reel_ws_t *w, size_t max_message) {
    w->max_message = max_message < SIZE_MAX / 2 ? max_message : SIZE_MAX / 2;
}

reel_rc reel_ws_feed(reel_ws_t *w, const uint8_t *buf, size_t len, size_t *consumed,
                     reel_ws_event_t *ev) {
    memset(ev, 0, sizeof(*ev));
    *consumed = 0;
    if (w->release) {
        /* the last message's payload is no longer needed */
        if (w->msg.cap > KEEP_STORAGE)
            reel_buf_free(&w->msg);
        else
            reel_buf_reset(&w->msg);
        w->release = false;
    }
    if (w->st == ST_FAILED)
        return error_out(w, ev);
    if (w->st == ST_EOF) {
        if (len == 0)
            return REEL_NEED_MORE;
        fail(w, REEL_WS_CLOSE_PROTOCOL, "data after end of stream");
        w->err_mid = false;
        return error_out(w, ev);
    }
    return drive(w, buf, len, consumed, ev);
}

reel_rc reel_ws_feed_eof(reel_ws_t *w, reel_ws_event_t *ev) {
    memset(ev, 0, sizeof(*ev));
    if (w->st == ST_FAILED)
        return error_out(w, ev);
    /* RFC 6455 7.1.5: no Close frame came, the connection closed abnormally */
    ev->close_code = w->close_code ? w->close_code : REEL_WS_CLOSE_ABNORMAL;
    if (w->st == ST_EOF || w->st == ST_CLOSED) {
        w->st = ST_EOF; /* after a close frame nothing more was due */
        return REEL_OK;
    }
    if (w->held) { /* the start of a header, never passed on */
        fail(w, REEL_WS_CLOSE_ABNORMAL, "connection cut inside a frame");
        w->err_mid = false;
        return error_out(w, ev);
    }
    if (w->frame_bytes > 0) {
        w->err_mid = true;
        fail(w, REEL_WS_CLOSE_ABNORMAL, "connection cut inside a frame");
        return error_out(w, ev);
    }
    if (w->in_msg) {
        fail(w, REEL_WS_CLOSE_ABNORMAL, "connection cut inside a fragmented message");
        return error_out(w, ev);
    }
    w->st = ST_EOF;
    return REEL_OK;
}

bool reel_ws_mid_frame(const reel_ws_t *w) {
    if (w->st == ST_FAILED)
        return w->err_mid;
    return w->frame_bytes > 0;
}

bool reel_ws_close_seen(const reel_ws_t *w) {
    return w->close_code != 0; /* set once the Close frame is whole and valid */
}

/* ---- Sec-WebSocket-Extensions ---- */

static bool is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct {
    const char *p, *end;
} scan_t;

static void skip_ows(scan_t *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
        s->p++;
}

static bool take_token(scan_t *s, const char **tok, size_t *tok_len) {
    const char *start = s->p;
    while (s->p < s->end && is_tchar((unsigned char)*s->p))
        s->p++;
    *tok = start;
    *tok_len = (size_t)(s->p - start);
    return *tok_len > 0;
}

/* A parameter value, token or quoted-string; the unescaped value goes to
 * out (cut at out_max - 1, *too_long set), NUL-terminated. */
static bool take_value(scan_t *s, char *out, size_t out_max, bool *too_long) {
    size_t n = 0;
    *too_long = false;
    if (s->p < s->end && *s->p == '"') {
        s->p++;
        for (;;) {
            if (s->p == s->end)
                return false;
            unsigned char c = (unsigned char)*s->p++;
            if (c == '"')
                break;
            if (c == '\\') {
                if (s->p == s->end)
                    return false;
                c = (unsigned char)*s->p++;
            }
            /* RFC 6455 9.1: the unescaped value must be a token */
            if (!is_tchar(c))
                return false;
            if (n + 1 < out_max)
                out[n++] = (char)c;
            else
                *too_long = true;
        }
        out[n] = 0;
        return n > 0;
    }
    const char *tok;
    size_t tok_len;
    if (!take_token(s, &tok, &tok_len))
        return false;
    if (tok_len + 1 > out_max) {
        *too_long = true;
        tok_len = out_max - 1;
    }
    memcpy(out, tok, tok_len);
    out[tok_len] = 0;
    return true;
}

static bool eq_ci(const char *a, size_t n, const char *lit) {
    size_t i = 0;
    for (; i < n && lit[i]; i++) {
        char x = a[i], y = lit[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (x != y)
            return false;
    }
    return i == n && lit[i] == 0;
}

/* "8".."15", no sign, no leading zero. */
static bool window_bits(const char *v, uint8_t *out) {
    int n = 0;
    if (v[0] == '0' || v[0] == 0)
        return false;
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9' || n > 15)
            return false;
        n = n * 10 + (*c - '0');
    }
    if (n < 8 || n > 15)
        return false;
    *out = (uint8_t)n;
    return true;
}

reel_rc reel_ws_parse_extensions(const char *value, size_t len, reel_ws_deflate_t *out) {
    reel_rc rc = REEL_OK;
    bool others = false;
    memset(out, 0, sizeof(*out));
    if (!value)
        return REEL_OK;
    scan_t s = {value, value + len};
    for (;;) {
        skip_ows(&s);
        if (s.p == s.end)
            break;
        if (*s.p == ',') { /* empty list element */
            s.p++;
            continue;
        }
        const char *name;
        size_t name_len;
        if (!take_token(&s, &name, &name_len)) {
            rc = REEL_INVALID;
            goto out;
        }
        bool pmd = eq_ci(name, name_len, "permessage-deflate");
        if (pmd && out->enabled) {
            rc = REEL_INVALID; /* accepted twice */
            goto out;
        }
        if (!pmd)
            others = true;
        unsigned seen = 0;
        reel_ws_deflate_t d;
        memset(&d, 0, sizeof(d));
        d.enabled = true;
        for (;;) {
            skip_ows(&s);
            if (s.p == s.end || *s.p == ',')
                break;
            if (*s.p != ';') {
                rc = REEL_INVALID;
                goto out;
            }
            s.p++;
            skip_ows(&s);
            const char *pn;
            size_t pn_len;
            if (!take_token(&s, &pn, &pn_len)) {
                rc = REEL_INVALID;
                goto out;
            }
            skip_ows(&s);
            char v[16];
            bool has_value = false, too_long = false;
            if (s.p < s.end && *s.p == '=') {
                s.p++;
                skip_ows(&s);
                if (!take_value(&s, v, sizeof(v), &too_long)) {
                    rc = REEL_INVALID;
                    goto out;
                }
                has_value = true;
            }
            if (!pmd)
                continue;
            static const char *const params[] = {
                "server_no_context_takeover",
                "client_no_context_takeover",
                "server_max_window_bits",
                "client_max_window_bits",
            };
            unsigned which = 0;
            while (which < 4 && !eq_ci(pn, pn_len, params[which]))
                which++;
            if (which == 4 || (seen & (1u << which))) {
                rc = REEL_INVALID; /* unknown or repeated */
                goto out;
            }
            seen |= 1u << which;
            bool ok;
            switch (which) {
            case 0:
                ok = !has_value;
                d.server_no_context_takeover = true;
                break;
            case 1:
                ok = !has_value;
                d.client_no_context_takeover = true;
                break;
            case 2:
                ok = has_value && !too_long && window_bits(v, &d.server_max_window_bits);
                break;
            default: /* a response must give the value (RFC 7692 7.1.2.2) */
                ok = has_value && !too_long && window_bits(v, &d.client_max_window_bits);
                break;
            }
            if (!ok) {
                rc = REEL_INVALID;
                goto out;
            }
        }
        if (pmd)
            *out = d;
        if (s.p < s.end)
            s.p++; /* the comma */
    }
    if (others)
        rc = REEL_UNSUPPORTED;
out:
    if (rc == REEL_INVALID)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- writing ---- */

reel_rc reel_ws_write_frame(reel_buf_t *out, unsigned op, bool fin, bool rsv1,
                            const uint8_t *payload, size_t len, const uint8_t *mask_key) {
    uint8_t h[REEL_WS_MAX_HEADER];
    size_t hn = 0;
    if (op > 15)
        return REEL_INVALID;
    h[hn++] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | op);
    uint8_t mbit = mask_key ? 0x80 : 0;
    if (len < 126) {
        h[hn++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        h[hn++] = (uint8_t)(mbit | 126);
        h[hn++] = (uint8_t)(len >> 8);
        h[hn++] = (uint8_t)len;
    } else {
        h[hn++] = (uint8_t)(mbit | 127);
        for (int i = 7; i >= 0; i--)
            h[hn++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask_key) {
        memcpy(h + hn, mask_key, 4);
        hn += 4;
    }
    size_t mark = out->len;
    if (len > SIZE_MAX / 2 || reel_buf_reserve(out, hn + len) != REEL_OK)
        return REEL_LIMIT;
    reel_buf_append(out, h, hn); /* cannot fail after the reserve */
    reel_buf_append(out, payload, len);
    if (mask_key)
        for (size_t i = 0; i < len; i++)
            out->data[mark + hn + i] ^= mask_key[i & 3];
    return REEL_OK;
}

reel_rc reel_ws_write_close(reel_buf_t *out, uint16_t code, const char *reason,
                            const uint8_t *mask_key) {
    uint8_t p[REEL_WS_MAX_CONTROL];
    size_t n = 0;
    if (code) {
        size_t rlen = reason ? strlen(reason) : 0;
        if (!reel_ws_close_code_ok(code) || rlen > REEL_WS_MAX_CONTROL - 2 ||
            !utf8_valid((const uint8_t *)reason, rlen))
            return REEL_INVALID;
        p[n++] = (uint8_t)(code >> 8);
        p[n++] = (uint8_t)code;
        if (rlen)
            memcpy(p + n, reason, rlen);
        n += rlen;
    }
    return reel_ws_write_frame(out, REEL_WS_OP_CLOSE, true, false, p, n, mask_key);
}
