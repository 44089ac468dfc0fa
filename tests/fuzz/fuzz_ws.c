/* libFuzzer harness: the WebSocket codec (src/core/ws.h) reading what a
 * client sends and what a server sends, with and without permessage-deflate,
 * arbitrary bytes cut at arbitrary points.
 *
 * Input: 3 control bytes, then the bytes of one direction of a connection.
 *   c[0] bit 0    0 = frames from a client (masked), 1 = from a server
 *        bit 1    permessage-deflate negotiated
 *        bit 2    the sender does not take its context over
 *        bit 3    call reel_ws_feed_eof after the input
 *        bits 4-7 the sender's max window bits: 0 = absent, else 8 + v % 8
 *   c[1]          how to cut: bits 0-1 pick the largest piece (1, 7, 64 or
 *                 1024 bytes), bits 2-7 seed the piece lengths
 *   c[2]          max_message: 0, 1, 16, 125, 4096 or 1 MiB (c[2] % 6)
 * The codec is driven exactly as the header says (feed until NEED_MORE),
 * each piece in its own heap buffer. The same bytes fed whole and cut into
 * pieces, the codec consuming everything or holding unfinished headers
 * back (hold_header: the relay's way), must give the same event trace, including the input offset
 * at which each event's frame ends, and every event must keep its documented shape: kept payload =
 * min(length, max_message), text is UTF-8, a close code is one that may be sent, nothing after an
 * error or a close.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "core/ws.h"
#include "fuzz_util.h"

typedef struct {
    reel_ws_role role;
    reel_ws_opts_t opts;
    bool eof;
} opts_t;

/* data[0..n) is a prefix of valid UTF-8 (whole: valid UTF-8). */
static bool utf8_prefix(const uint8_t *p, size_t n, bool whole) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c < 0x80)
            need = 0;
        else if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c == 0xe0)
            need = 2, lo = 0xa0;
        else if (c == 0xed)
            need = 2, hi = 0x9f;
        else if (c >= 0xe1 && c <= 0xef)
            need = 2;
        else if (c == 0xf0)
            need = 3, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            need = 3;
        else if (c == 0xf4)
            need = 3, hi = 0x8f;
        else
            return false;
        i++;
        for (size_t k = 0; k < need; k++, i++) {
            if (i == n)
                return !whole;
            if (p[i] < lo || p[i] > hi)
                return false;
            lo = 0x80;
            hi = 0xbf;
        }
    }
    return true;
}

static void check_event(const opts_t *o, const reel_ws_event_t *ev) {
    FUZZ_CHECK(ev->data != NULL, "event without data");
    FUZZ_CHECK(ev->data[ev->len] == 0, "payload not NUL-terminated");
    FUZZ_CHECK(ev->frames >= 1, "event of %llu frames", (unsigned long long)ev->frames);
    if (ev->type == REEL_WS_EV_MESSAGE) {
        FUZZ_CHECK(ev->opcode == REEL_WS_OP_TEXT || ev->opcode == REEL_WS_OP_BINARY, "opcode %d",
                   (int)ev->opcode);
        size_t keep = ev->length < o->opts.max_message ? (size_t)ev->length : o->opts.max_message;
        FUZZ_CHECK(ev->len == keep, "kept %zu of %llu (max %zu)", ev->len,
                   (unsigned long long)ev->length, o->opts.max_message);
        FUZZ_CHECK(ev->truncated == (ev->length > ev->len), "truncated flag");
        FUZZ_CHECK(!ev->compressed || o->opts.deflate.enabled, "compressed without deflate");
        FUZZ_CHECK(ev->compressed || ev->wire_length == ev->length, "wire %llu != length %llu",
                   (unsigned long long)ev->wire_length, (unsigned long long)ev->length);
        if (ev->opcode == REEL_WS_OP_TEXT)
            FUZZ_CHECK(utf8_prefix(ev->data, ev->len, !ev->truncated), "text is not UTF-8");
    } else {
        FUZZ_CHECK(ev->type == REEL_WS_EV_CONTROL, "event type %d", (int)ev->type);
        FUZZ_CHECK(ev->opcode == REEL_WS_OP_CLOSE || ev->opcode == REEL_WS_OP_PING ||
                       ev->opcode == REEL_WS_OP_PONG,
                   "control opcode %d", (int)ev->opcode);
        FUZZ_CHECK(ev->len <= REEL_WS_MAX_CONTROL && ev->length == ev->len && ev->frames == 1,
                   "control frame shape");
        if (ev->opcode == REEL_WS_OP_CLOSE) {
            unsigned c = ev->close_code;
            FUZZ_CHECK(c == 1005
                           ? ev->len == 0
                           : ev->len >= 2 && ((c >= 1000 && c <= 1003) ||
                                              (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)),
                       "close code %u with %zu bytes", c, ev->len);
            FUZZ_CHECK(utf8_prefix((const uint8_t *)ev->close_reason, ev->close_reason_len, true),
                       "close reason is not UTF-8");
        }
    }
}

static void fmt_event(reel_buf_t *t, const reel_ws_event_t *ev, size_t at) {
    reel_buf_printf(
        t, "EV %d op=%d len=%zu length=%llu wire=%llu frames=%llu z=%d tr=%d code=%u @%zu ",
        (int)ev->type, (int)ev->opcode, ev->len, (unsigned long long)ev->length,
        (unsigned long long)ev->wire_length, (unsigned long long)ev->frames, ev->compressed,
        ev->truncated, ev->close_code, at);
    reel_buf_append(t, ev->data, ev->len);
    reel_buf_puts(t, "\n");
}

/* Runs the codec over in[0..len) cut into pieces by the generator seeded
 * with seed (max_piece 0: one piece). Returns the trace (owned; *tlen is its
 * length, it may hold NULs). */
static char *run(const opts_t *o, const uint8_t *in, size_t len, size_t max_piece, uint32_t seed,
                 size_t *tlen) {
    reel_buf_t t;
    reel_buf_init(&t, 0);
    reel_buf_puts(&t, "");
    reel_ws_t *w = reel_ws_new(o->role, &o->opts);
    bool dead = false, closed = false;
    uint32_t x = seed | 1;
    size_t from = 0; /* the first byte not consumed (hold_header: a header's start) */
    for (size_t start = 0; start < len && !dead;) {
        size_t n = len - start;
        if (max_piece) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            size_t want = 1 + x % max_piece;
            if (want < n)
                n = want;
        }
        start += n;
        n = start - from; /* with what a held header left */
        uint8_t *piece = reel_malloc(n);
        memcpy(piece, in + from, n);
        size_t off = 0;
        for (;;) {
            reel_ws_event_t ev;
            size_t used = 12345;
            reel_rc rc = reel_ws_feed(w, piece + off, n - off, &used, &ev);
            if (rc == REEL_NEED_MORE) {
                if (o->opts.hold_header)
                    FUZZ_CHECK(used <= n - off && n - off - used < REEL_WS_MAX_HEADER,
                               "NEED_MORE left %zu of %zu", n - off - used, n - off);
                else
                    FUZZ_CHECK(used == n - off, "NEED_MORE consumed %zu of %zu", used, n - off);
                off += used;
                FUZZ_CHECK(ev.type == REEL_WS_EV_NONE, "NEED_MORE with event %d", (int)ev.type);
                break;
            }
            if (rc != REEL_OK) {
                FUZZ_CHECK(rc == REEL_INVALID, "feed returned %d", (int)rc);
                FUZZ_CHECK(ev.error_reason != NULL && strlen(ev.error_reason) <= 123,
                           "error reason");
                FUZZ_CHECK(ev.error_code == 1002 || ev.error_code == 1007, "error code %u",
                           ev.error_code);
                FUZZ_CHECK(used <= n - off, "error consumed %zu of %zu", used, n - off);
                FUZZ_CHECK(!(used > 0 && reel_ws_mid_frame(w)),
                           "frames consumed before an error in a frame begun earlier");
                reel_buf_printf(&t, "ERR %u %s\n", ev.error_code, ev.error_reason);
                reel_ws_event_t ev2; /* the codec stays dead */
                FUZZ_CHECK(reel_ws_feed(w, NULL, 0, &used, &ev2) == REEL_INVALID && used == 0,
                           "feed after an error accepted");
                dead = true;
                break;
            }
            FUZZ_CHECK(!closed, "event after a close frame");
            FUZZ_CHECK(used <= n - off, "consumed %zu of %zu", used, n - off);
            FUZZ_CHECK(!reel_ws_mid_frame(w), "mid-frame right after an event");
            off += used;
            check_event(o, &ev);
            fmt_event(&t, &ev, from + off);
            if (ev.type == REEL_WS_EV_CONTROL && ev.opcode == REEL_WS_OP_CLOSE)
                closed = true;
        }
        free(piece);
        from += off;
    }
    if (o->eof && !dead) {
        reel_ws_event_t ev;
        reel_rc rc = reel_ws_feed_eof(w, &ev);
        if (rc == REEL_OK) {
            FUZZ_CHECK(ev.type == REEL_WS_EV_NONE, "feed_eof event %d", (int)ev.type);
            reel_buf_puts(&t, "EOF\n");
            size_t used;
            FUZZ_CHECK(reel_ws_feed(w, (const uint8_t *)"x", 1, &used, &ev) == REEL_INVALID,
                       "feed after EOF accepted");
        } else {
            FUZZ_CHECK(rc == REEL_INVALID && ev.error_code == 1006 && ev.error_reason,
                       "feed_eof returned %d", (int)rc);
            reel_buf_printf(&t, "ERR %u %s\n", ev.error_code, ev.error_reason);
        }
    }
    reel_ws_free(w);
    *tlen = t.len;
    return (char *)t.data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    opts_t o;
    memset(&o, 0, sizeof o);
    o.role = (data[0] & 1) ? REEL_WS_FROM_SERVER : REEL_WS_FROM_CLIENT;
    o.opts.deflate.enabled = data[0] & 2;
    o.opts.deflate.server_no_context_takeover = data[0] & 4;
    o.opts.deflate.client_no_context_takeover = data[0] & 4;
    unsigned bits = data[0] >> 4;
    if (bits)
        o.opts.deflate.server_max_window_bits = o.opts.deflate.client_max_window_bits =
            (uint8_t)(8 + bits % 8);
    o.eof = data[0] & 8;
    static const size_t max_pieces[4] = {1, 7, 64, 1024};
    size_t max_piece = max_pieces[data[1] & 3];
    uint32_t seed = (uint32_t)(data[1] >> 2) * 2654435761u;
    static const size_t max_messages[6] = {0, 1, 16, 125, 4096, 1 << 20};
    o.opts.max_message = max_messages[data[2] % 6];
    const uint8_t *in = data + 3;
    size_t len = size - 3;

    size_t wlen = 0, clen = 0;
    char *whole = run(&o, in, len, 0, 0, &wlen);
    char *cut = run(&o, in, len, max_piece, seed, &clen);
    FUZZ_CHECK(wlen == clen && memcmp(whole, cut, wlen) == 0,
               "trace depends on how the input is cut:\nwhole:\n%s\ncut:\n%s", whole, cut);
    free(cut);
    /* the relay's way: an unfinished header left for the next piece */
    o.opts.hold_header = true;
    cut = run(&o, in, len, max_piece, seed, &clen);
    FUZZ_CHECK(wlen == clen && memcmp(whole, cut, wlen) == 0,
               "trace depends on how the input is cut (headers held):\nwhole:\n%s\ncut:\n%s", whole,
               cut);
    free(whole);
    free(cut);
    return 0;
}
