/* Tests for src/core/ws.c: the RFC 6455 5.7 and RFC 7692 7.2.3 examples,
 * length boundaries, fragmentation with interleaved control frames, every
 * validation error with its close code, UTF-8 across fragments,
 * permessage-deflate with and without context takeover, a compression bomb
 * against max_message, end of stream, the Sec-WebSocket-Extensions parser
 * and the frame writers.
 *
 * Every codec input is replayed whole, split at every byte boundary (inputs
 * over 4 KiB: at the first and last 300 boundaries and every 997th) and fed
 * one byte at a time, each piece in its own heap buffer, and must give the
 * same trace; each event line carries the input offset its frame ends at,
 * so the bytes consumed are checked as well. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <zlib.h>

#include "base/mem.h"
#include "core/ws.h"

/* ---- the trace of a run ---- */

typedef struct {
    reel_ws_role role;
    reel_ws_opts_t opts;
    bool eof; /* call reel_ws_feed_eof after the input */
} run_opts_t;

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

static void fmt_bytes(reel_buf_t *b, const uint8_t *p, size_t n) {
    if (n > 64) {
        reel_buf_printf(b, " fnv=%016llx", (unsigned long long)fnv(p, n));
        return;
    }
    reel_buf_puts(b, " '");
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\' && p[i] != '\'')
            reel_buf_append(b, p + i, 1);
        else
            reel_buf_printf(b, "\\x%02x", p[i]);
    }
    reel_buf_puts(b, "'");
}

static const char *op_name(reel_ws_opcode op) {
    switch (op) {
    case REEL_WS_OP_TEXT:
        return "text";
    case REEL_WS_OP_BINARY:
        return "binary";
    case REEL_WS_OP_CLOSE:
        return "CLOSE";
    case REEL_WS_OP_PING:
        return "PING";
    case REEL_WS_OP_PONG:
        return "PONG";
    default:
        return "?";
    }
}

static void log_event(reel_buf_t *t, const run_opts_t *o, const reel_ws_event_t *ev, size_t at) {
    assert_non_null(ev->data);
    assert_int_equal(ev->data[ev->len], 0);
    if (ev->type == REEL_WS_EV_MESSAGE) {
        assert_true(ev->opcode == REEL_WS_OP_TEXT || ev->opcode == REEL_WS_OP_BINARY);
        size_t keep = ev->length < o->opts.max_message ? (size_t)ev->length : o->opts.max_message;
        assert_int_equal(ev->len, keep);
        assert_int_equal(ev->truncated, ev->length > ev->len);
        reel_buf_printf(t, "MSG %s %zu/%llu wire=%llu frames=%llu%s%s @%zu", op_name(ev->opcode),
                        ev->len, (unsigned long long)ev->length,
                        (unsigned long long)ev->wire_length, (unsigned long long)ev->frames,
                        ev->compressed ? " z" : "", ev->truncated ? " trunc" : "", at);
        fmt_bytes(t, ev->data, ev->len);
    } else {
        assert_int_equal(ev->type, REEL_WS_EV_CONTROL);
        assert_int_equal(ev->frames, 1);
        assert_int_equal(ev->length, ev->len);
        assert_false(ev->truncated);
        reel_buf_printf(t, "%s @%zu", op_name(ev->opcode), at);
        if (ev->opcode == REEL_WS_OP_CLOSE) {
            reel_buf_printf(t, " %u", ev->close_code);
            fmt_bytes(t, (const uint8_t *)ev->close_reason, ev->close_reason_len);
        } else {
            fmt_bytes(t, ev->data, ev->len);
        }
    }
    reel_buf_puts(t, "\n");
}

static void log_error(reel_buf_t *t, reel_rc rc, const reel_ws_event_t *ev) {
    assert_int_equal(rc, REEL_INVALID);
    assert_int_equal(ev->type, REEL_WS_EV_NONE);
    assert_non_null(ev->error_reason);
    assert_true(strlen(ev->error_reason) <= 123);
    reel_buf_printf(t, "ERR %u %s\n", ev->error_code, ev->error_reason);
}

/* Feeds in[0..len) cut at cuts[0..ncuts) (increasing), each piece copied to
 * its own heap buffer; returns the trace (owned). */
static char *run(const run_opts_t *o, const uint8_t *in, size_t len, const size_t *cuts,
                 size_t ncuts) {
    reel_buf_t t;
    reel_buf_init(&t, 0);
    reel_buf_puts(&t, "");
    reel_ws_t *w = reel_ws_new(o->role, &o->opts);
    bool dead = false;
    size_t start = 0; /* where the next piece begins in the input */
    size_t from = 0;  /* where the bytes fed next begin: what a held header left */
    for (size_t k = 0; k <= ncuts && !dead; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t n = end - from;
        uint8_t *piece = reel_malloc(n ? n : 1);
        memcpy(piece, in + from, n);
        size_t off = 0;
        for (;;) {
            reel_ws_event_t ev;
            size_t used = 12345;
            reel_rc rc = reel_ws_feed(w, piece + off, n - off, &used, &ev);
            if (rc == REEL_NEED_MORE) {
                if (o->opts.hold_header) /* at most an unfinished header left */
                    assert_true(used <= n - off && n - off - used < REEL_WS_MAX_HEADER);
                else
                    assert_int_equal(used, n - off);
                off += used;
                assert_int_equal(ev.type, REEL_WS_EV_NONE);
                break;
            }
            if (rc != REEL_OK) {
                assert_true(used <= n - off);
                log_error(&t, rc, &ev);
                reel_ws_event_t ev2; /* dead for good */
                assert_int_equal(reel_ws_feed(w, NULL, 0, &used, &ev2), REEL_INVALID);
                assert_int_equal(used, 0);
                assert_int_equal(ev2.error_code, ev.error_code);
                dead = true;
                break;
            }
            assert_true(used <= n - off);
            off += used;
            log_event(&t, o, &ev, from + off);
        }
        free(piece);
        from += off;
        start = end;
    }
    assert_true(dead || from == start || o->opts.hold_header);
    if (o->eof && !dead) {
        reel_ws_event_t ev;
        reel_rc rc = reel_ws_feed_eof(w, &ev);
        if (rc == REEL_OK) {
            assert_int_equal(ev.type, REEL_WS_EV_NONE);
            reel_buf_printf(&t, "EOF %u\n", ev.close_code); /* how the peer closed */
        } else {
            log_error(&t, rc, &ev);
        }
    }
    reel_ws_free(w);
    return (char *)t.data;
}

static void expect_trace(const char *got, const char *want, const char *how, size_t k) {
    if (strcmp(got, want) != 0)
        fail_msg("%s %zu, trace:\n%s\nwant:\n%s", how, k, got, want);
}

/* Runs the input whole, split at every byte boundary (or a sample, see the
 * top) and byte by byte; every trace must equal want. */
static void check_mode(const run_opts_t *o, const void *data, size_t len, const char *want);

/* ... with the codec consuming every byte, then holding back unfinished
 * headers (reel's relay): the same trace, the same offsets. */
static void check_n(const run_opts_t *o, const void *data, size_t len, const char *want) {
    check_mode(o, data, len, want);
    run_opts_t held = *o;
    held.opts.hold_header = true;
    check_mode(&held, data, len, want);
}

static void check_mode(const run_opts_t *o, const void *data, size_t len, const char *want) {
    const uint8_t *in = data;
    char *got = run(o, in, len, NULL, 0);
    expect_trace(got, want, "whole", 0);
    free(got);
    for (size_t k = 1; k < len; k++) {
        if (len > 4096 && k > 300 && k < len - 300 && k % 997 != 0)
            continue;
        got = run(o, in, len, &k, 1);
        expect_trace(got, want, "split at", k);
        free(got);
    }
    size_t *cuts = reel_malloc((len ? len : 1) * sizeof(*cuts));
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    got = run(o, in, len, cuts, len ? len - 1 : 0);
    expect_trace(got, want, "byte by byte", 0);
    free(got);
    free(cuts);
}

#define CHECK(o, lit, want) check_n((o), (lit), sizeof(lit) - 1, (want))

static const run_opts_t SRV = {.role = REEL_WS_FROM_SERVER, .opts = {.max_message = 1 << 20}};
static const run_opts_t CLI = {.role = REEL_WS_FROM_CLIENT, .opts = {.max_message = 1 << 20}};
static const run_opts_t SRV_EOF = {
    .role = REEL_WS_FROM_SERVER, .opts = {.max_message = 1 << 20}, .eof = true};

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Appends one frame built by the codec's writer (checked against the RFC
 * bytes in test_write_frame_rfc). */
static void frame(reel_buf_t *b, unsigned op, bool fin, bool rsv1, const void *p, size_t n,
                  const uint8_t *key) {
    assert_int_equal(reel_ws_write_frame(b, op, fin, rsv1, p, n, key), REEL_OK);
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed + (i >> 8));
}

/* ---- RFC 6455 5.7 ---- */

static void test_rfc_single_unmasked(void **state) {
    (void)state;
    CHECK(&SRV, "\x81\x05\x48\x65\x6c\x6c\x6f", "MSG text 5/5 wire=5 frames=1 @7 'Hello'\n");
}

static void test_rfc_single_masked(void **state) {
    (void)state;
    CHECK(&CLI, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
          "MSG text 5/5 wire=5 frames=1 @11 'Hello'\n");
}

static void test_rfc_fragmented(void **state) {
    (void)state;
    CHECK(&SRV, "\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f",
          "MSG text 5/5 wire=5 frames=2 @9 'Hello'\n");
}

static void test_rfc_ping_pong(void **state) {
    (void)state;
    CHECK(&SRV, "\x89\x05\x48\x65\x6c\x6c\x6f", "PING @7 'Hello'\n");
    CHECK(&CLI, "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", "PONG @11 'Hello'\n");
}

static void test_rfc_256_and_64k(void **state) {
    (void)state;
    static uint8_t body[65536];
    fill(body, sizeof(body), 7);
    reel_buf_t in, want;
    reel_buf_init(&in, 0);
    reel_buf_init(&want, 0);

    /* 0x82 0x7E 0x0100 [256 bytes] */
    reel_buf_append(&in, "\x82\x7e\x01\x00", 4);
    reel_buf_append(&in, body, 256);
    reel_buf_printf(&want, "MSG binary 256/256 wire=256 frames=1 @260 fnv=%016llx\n",
                    (unsigned long long)fnv(body, 256));
    check_n(&SRV, in.data, in.len, (char *)want.data);

    /* 0x82 0x7F 0x0000000000010000 [65536 bytes] */
    reel_buf_reset(&in);
    reel_buf_reset(&want);
    reel_buf_append(&in, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    reel_buf_append(&in, body, sizeof(body));
    reel_buf_printf(&want, "MSG binary 65536/65536 wire=65536 frames=1 @65546 fnv=%016llx\n",
                    (unsigned long long)fnv(body, sizeof(body)));
    check_n(&SRV, in.data, in.len, (char *)want.data);
    reel_buf_free(&in);
    reel_buf_free(&want);
}

/* ---- lengths ---- */

static void test_length_boundaries(void **state) {
    (void)state;
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    static uint8_t body[70000];
    fill(body, sizeof(body), 3);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int masked = 0; masked < 2; masked++) {
            size_t n = lens[i];
            reel_buf_t in, want;
            reel_buf_init(&in, 0);
            reel_buf_init(&want, 0);
            frame(&in, REEL_WS_OP_BINARY, true, false, body, n, masked ? KEY : NULL);
            size_t hlen = (n < 126 ? 2 : n < 65536 ? 4 : 10) + (masked ? 4 : 0);
            assert_int_equal(in.len, hlen + n);
            /* a second frame right behind: the boundary is exact */
            frame(&in, REEL_WS_OP_PING, true, false, "x", 1, masked ? KEY : NULL);
            reel_buf_printf(&want, "MSG binary %zu/%zu wire=%zu frames=1 @%zu", n, n, n, hlen + n);
            fmt_bytes(&want, body, n);
            reel_buf_printf(&want, "\nPING @%zu 'x'\n", in.len);
            check_n(masked ? &CLI : &SRV, in.data, in.len, (char *)want.data);
            reel_buf_free(&in);
            reel_buf_free(&want);
        }
    }
}

static void test_non_minimal_length_accepted(void **state) {
    (void)state;
    CHECK(&SRV, "\x82\x7e\x00\x02hi\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x01!",
          "MSG binary 2/2 wire=2 frames=1 @6 'hi'\n"
          "MSG binary 1/1 wire=1 frames=1 @17 '!'\n");
}

/* ---- fragmentation ---- */

static void test_fragmented_with_ping(void **state) {
    (void)state;
    /* text "Hel" | ping "p" | cont "lo " | pong "" | cont FIN "world" */
    CHECK(&SRV,
          "\x01\x03Hel"
          "\x89\x01p"
          "\x00\x03lo "
          "\x8a\x00"
          "\x80\x05world",
          "PING @8 'p'\n"
          "PONG @15 ''\n"
          "MSG text 11/11 wire=11 frames=3 @22 'Hello world'\n");
    /* masked, with empty fragments */
    reel_buf_t in;
    reel_buf_init(&in, 0);
    frame(&in, REEL_WS_OP_BINARY, false, false, NULL, 0, KEY);
    frame(&in, REEL_WS_OP_CONTINUATION, false, false, "ab", 2, KEY);
    frame(&in, REEL_WS_OP_PING, true, false, NULL, 0, KEY);
    frame(&in, REEL_WS_OP_CONTINUATION, false, false, NULL, 0, KEY);
    frame(&in, REEL_WS_OP_CONTINUATION, true, false, "c", 1, KEY);
    frame(&in, REEL_WS_OP_TEXT, true, false, NULL, 0, KEY);
    check_n(&CLI, in.data, in.len,
            "PING @20 ''\n"
            "MSG binary 3/3 wire=3 frames=4 @33 'abc'\n"
            "MSG text 0/0 wire=0 frames=1 @39 ''\n");
    reel_buf_free(&in);
}

static void test_max_message(void **state) {
    (void)state;
    run_opts_t o = SRV;
    o.opts.max_message = 4;
    CHECK(&o,
          "\x81\x03"
          "abc"
          "\x01\x03"
          "abc"
          "\x80\x03"
          "def"
          "\x82\x04"
          "wxyz",
          "MSG text 3/3 wire=3 frames=1 @5 'abc'\n"
          "MSG text 4/6 wire=6 frames=2 trunc @15 'abcd'\n"
          "MSG binary 4/4 wire=4 frames=1 @21 'wxyz'\n");
    o.opts.max_message = 0;
    CHECK(&o, "\x82\x03xyz\x89\x02hi",
          "MSG binary 0/3 wire=3 frames=1 trunc @5 ''\nPING @9 'hi'\n");

    /* a new cap applies from the next message on */
    reel_ws_opts_t opts = {.max_message = 2};
    reel_ws_t *w = reel_ws_new(REEL_WS_FROM_SERVER, &opts);
    reel_ws_event_t ev;
    size_t used;
    const uint8_t *in = (const uint8_t *)"\x01\x03"
                                         "abc"
                                         "\x80\x01"
                                         "d"
                                         "\x82\x04"
                                         "wxyz";
    assert_int_equal(reel_ws_feed(w, in, 5, &used, &ev), REEL_NEED_MORE);
    reel_ws_set_max_message(w, 3);
    assert_int_equal(reel_ws_feed(w, in + 5, 9, &used, &ev), REEL_OK);
    assert_int_equal(used, 3);
    assert_int_equal(ev.len, 2);
    assert_int_equal(ev.length, 4);
    assert_int_equal(reel_ws_feed(w, in + 8, 6, &used, &ev), REEL_OK);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.data, "wxy", 3);
    reel_ws_free(w);
}

/* ---- errors ---- */

typedef struct {
    reel_ws_role role;
    bool deflate;
    const char *in;
    size_t len;
    const char *want;
} err_case_t;

#define E(role, defl, lit, want)                                                                   \
    { (role), (defl), (lit), sizeof(lit) - 1, (want) }
#define S REEL_WS_FROM_SERVER
#define C REEL_WS_FROM_CLIENT

static void test_errors(void **state) {
    (void)state;
    static const err_case_t cases[] = {
        E(S, false, "\x83\x00", "ERR 1002 reserved opcode\n"),
        E(S, false, "\x87\x00", "ERR 1002 reserved opcode\n"),
        E(S, false, "\x8b\x00", "ERR 1002 reserved opcode\n"),
        E(S, false, "\x8f\x00", "ERR 1002 reserved opcode\n"),
        E(S, false, "\xa1\x00", "ERR 1002 RSV2 or RSV3 set\n"),
        E(S, true, "\x91\x00", "ERR 1002 RSV2 or RSV3 set\n"),
        E(S, false, "\xc1\x00", "ERR 1002 RSV1 set without permessage-deflate\n"),
        E(S, true, "\xc9\x00", "ERR 1002 RSV1 set on a control frame\n"),
        E(S, true, "\x41\x01\x00\xc0\x00", "ERR 1002 RSV1 set on a continuation frame\n"),
        E(S, false, "\x09\x00", "ERR 1002 fragmented control frame\n"),
        E(S, false, "\x08\x00", "ERR 1002 fragmented control frame\n"),
        E(S, false, "\x89\x7e\x00\x7e", "ERR 1002 control frame longer than 125 bytes\n"),
        E(S, false, "\x8a\x7f", "ERR 1002 control frame longer than 125 bytes\n"),
        E(S, false, "\x88\x01\x03", "ERR 1002 close frame with a 1-byte payload\n"),
        E(S, false, "\x80\x00", "ERR 1002 continuation frame without a message\n"),
        E(S, false, "\x81\x01x\x00\x00",
          "MSG text 1/1 wire=1 frames=1 @3 'x'\nERR 1002 continuation frame without a message\n"),
        E(S, false, "\x01\x00\x81\x00", "ERR 1002 new message inside a fragmented message\n"),
        E(S, false, "\x02\x00\x89\x00\x01\x00",
          "PING @4 ''\nERR 1002 new message inside a fragmented message\n"),
        E(C, false, "\x81\x00", "ERR 1002 unmasked frame from a client\n"),
        E(S, false, "\x81\x80\x00\x00\x00\x00", "ERR 1002 masked frame from a server\n"),
        E(S, false, "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
          "ERR 1002 frame length over 2^63 - 1\n"),
        E(S, false, "\x81\x02\xc3\x28", "ERR 1007 invalid UTF-8 in a text message\n"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_opts_t o = {.role = cases[i].role, .opts = {.max_message = 64}};
        o.opts.deflate.enabled = cases[i].deflate;
        check_n(&o, cases[i].in, cases[i].len, cases[i].want);
    }
    /* a header is judged once its second byte is there */
    CHECK(&SRV, "\x81\x01x\x83", "MSG text 1/1 wire=1 frames=1 @3 'x'\n");
}

static void test_close_frames(void **state) {
    (void)state;
    CHECK(&SRV_EOF, "\x88\x00", "CLOSE @2 1005 ''\nEOF 1005\n");
    CHECK(&SRV_EOF, "\x88\x02\x03\xe8", "CLOSE @4 1000 ''\nEOF 1000\n");
    CHECK(&SRV,
          "\x88\x05\x03\xe9"
          "bye",
          "CLOSE @7 1001 'bye'\n");
    CHECK(&SRV, "\x88\x04\x0f\xa0\xc3\xa9", "CLOSE @6 4000 '\\xc3\\xa9'\n");
    /* close inside a fragmented message ends the stream cleanly */
    CHECK(&SRV_EOF, "\x01\x01x\x88\x02\x03\xe8", "CLOSE @7 1000 ''\nEOF 1000\n");
    /* nothing may follow a close frame */
    CHECK(&SRV, "\x88\x00\x81\x00", "CLOSE @2 1005 ''\nERR 1002 frame after a close frame\n");
    CHECK(&SRV, "\x88\x02\x03\xe8\x88", "CLOSE @4 1000 ''\nERR 1002 frame after a close frame\n");
    CHECK(&SRV, "\x88\x03\x03\xe8\xff", "ERR 1007 invalid UTF-8 in a close reason\n");
    CHECK(&SRV, "\x88\x04\x03\xe8\xe2\x82", "ERR 1007 invalid UTF-8 in a close reason\n");

    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint8_t in[4] = {0x88, 0x02, (uint8_t)(ok[i] >> 8), (uint8_t)ok[i]};
        char want[64];
        snprintf(want, sizeof(want), "CLOSE @4 %u ''\n", ok[i]);
        check_n(&SRV, in, 4, want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t in[4] = {0x88, 0x02, (uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        check_n(&SRV, in, 4, "ERR 1002 invalid close code\n");
    }
}

/* ---- UTF-8 ---- */

static void test_utf8(void **state) {
    (void)state;
    /* "€" (e2 82 ac) and "𝄞" (f0 9d 84 9e) split across fragments, a ping
     * in between */
    CHECK(&SRV,
          "\x01\x02"
          "a\xe2"
          "\x89\x00"
          "\x00\x03\x82\xac\xf0"
          "\x80\x03\x9d\x84\x9e",
          "PING @6 ''\nMSG text 8/8 wire=8 frames=3 @16 'a\\xe2\\x82\\xac\\xf0\\x9d\\x84\\x9e'\n");
    /* the largest code points of each length, and U+FFFF */
    CHECK(&SRV, "\x81\x0a\x7f\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf",
          "MSG text 10/10 wire=10 frames=1 @12 "
          "'\\x7f\\xdf\\xbf\\xef\\xbf\\xbf\\xf4\\x8f\\xbf\\xbf'\n");
    /* bad: overlong, surrogate, over U+10FFFF, stray continuation, 0xff,
     * overlong 3- and 4-byte forms, cut at the end of the message */
    static const char *const bad[] = {
        "\x81\x02\xc0\x80",
        "\x81\x03\xed\xa0\x80",
        "\x81\x04\xf4\x90\x80\x80",
        "\x81\x01\x80",
        "\x81\x01\xff",
        "\x81\x03\xe0\x80\xaf",
        "\x81\x04\xf0\x80\x80\xaf",
        "\x81\x02\xe2\x82",
        "\x01\x01\xe2\x80\x01\x82",
        "\x81\x02\xc1\xbf",
        "\x81\x04\xf8\x88\x80\x80",
        "\x81\x03\xef\xbf\x00",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = 2 + ((uint8_t)bad[i][1] & 0x7f);
        if (bad[i][0] == 0x01) /* two frames */
            len += 2 + ((uint8_t)bad[i][len + 1] & 0x7f);
        check_n(&SRV, bad[i], len, "ERR 1007 invalid UTF-8 in a text message\n");
    }
    /* fail fast: the first fragment is fine, the second is bad; a binary
     * message is not checked */
    CHECK(&SRV, "\x01\x02ok\x00\x01\xff\x80\x01z", "ERR 1007 invalid UTF-8 in a text message\n");
    CHECK(&SRV, "\x82\x01\xff", "MSG binary 1/1 wire=1 frames=1 @3 '\\xff'\n");
    /* past max_message the message is still checked */
    run_opts_t o = SRV;
    o.opts.max_message = 2;
    CHECK(&o,
          "\x81\x04"
          "ab\xc3\xa9",
          "MSG text 2/4 wire=4 frames=1 trunc @6 'ab'\n");
    CHECK(&o,
          "\x81\x04"
          "abc\xff",
          "ERR 1007 invalid UTF-8 in a text message\n");
}

/* ---- end of stream, consumed bytes on errors ---- */

static void test_eof(void **state) {
    (void)state;
    /* an end between frames without a Close frame: abnormal closure,
     * 1006 (RFC 6455 7.1.5), though no frame was cut */
    CHECK(&SRV_EOF, "", "EOF 1006\n");
    CHECK(&SRV_EOF, "\x81\x01x", "MSG text 1/1 wire=1 frames=1 @3 'x'\nEOF 1006\n");
    CHECK(&SRV_EOF, "\x81", "ERR 1006 connection cut inside a frame\n");
    CHECK(&SRV_EOF, "\x81\x02x", "ERR 1006 connection cut inside a frame\n");
    CHECK(&SRV_EOF, "\x01\x01x", "ERR 1006 connection cut inside a fragmented message\n");

    reel_ws_t *w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    reel_ws_event_t ev;
    size_t used;
    assert_int_equal(reel_ws_feed_eof(w, &ev), REEL_OK);
    assert_int_equal(reel_ws_feed(w, NULL, 0, &used, &ev), REEL_NEED_MORE);
    assert_int_equal(reel_ws_feed(w, (const uint8_t *)"\x81", 1, &used, &ev), REEL_INVALID);
    assert_string_equal(ev.error_reason, "data after end of stream");
    assert_int_equal(used, 0);
    reel_ws_free(w);
}

static void test_error_consumed(void **state) {
    (void)state;
    /* two fragments, then a bad frame, in one buffer: the fragments are
     * consumed (and may be forwarded), the bad frame is not */
    const uint8_t *in = (const uint8_t *)"\x01\x02"
                                         "ab\x00\x01"
                                         "c\x83\x00";
    reel_ws_t *w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    reel_ws_event_t ev;
    size_t used = 99;
    assert_int_equal(reel_ws_feed(w, in, 9, &used, &ev), REEL_INVALID);
    assert_int_equal(used, 7);
    assert_int_equal(ev.error_code, 1002);
    assert_string_equal(ev.error_reason, "reserved opcode");
    assert_false(reel_ws_mid_frame(w));
    assert_int_equal(reel_ws_feed(w, in, 9, &used, &ev), REEL_INVALID);
    assert_int_equal(used, 0);
    reel_ws_free(w);

    /* the bad frame's first byte came in an earlier call: mid-frame */
    w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    assert_false(reel_ws_mid_frame(w));
    assert_int_equal(reel_ws_feed(w, in, 8, &used, &ev), REEL_NEED_MORE);
    assert_int_equal(used, 8);
    assert_true(reel_ws_mid_frame(w));
    assert_int_equal(reel_ws_feed(w, in + 8, 1, &used, &ev), REEL_INVALID);
    assert_int_equal(used, 0);
    assert_true(reel_ws_mid_frame(w));
    reel_ws_free(w);

    /* the same, the codec holding unfinished headers back: the bad
     * frame's first byte is given back, so it is refused whole, never
     * mid-frame, and an end there is a frame cut short */
    reel_ws_opts_t hold = {.hold_header = true};
    for (int end = 0; end < 2; end++) {
        w = reel_ws_new(REEL_WS_FROM_SERVER, &hold);
        assert_int_equal(reel_ws_feed(w, in, 8, &used, &ev), REEL_NEED_MORE);
        assert_int_equal(used, 7);
        assert_false(reel_ws_mid_frame(w));
        if (end) {
            assert_int_equal(reel_ws_feed_eof(w, &ev), REEL_INVALID);
            assert_int_equal(ev.error_code, 1006);
            assert_string_equal(ev.error_reason, "connection cut inside a frame");
        } else {
            assert_int_equal(reel_ws_feed(w, in + 7, 2, &used, &ev), REEL_INVALID);
            assert_int_equal(used, 0);
            assert_string_equal(ev.error_reason, "reserved opcode");
        }
        assert_false(reel_ws_mid_frame(w));
        reel_ws_free(w);
    }
    /* a header given back, then whole: nothing held at the end */
    w = reel_ws_new(REEL_WS_FROM_SERVER, &hold);
    assert_int_equal(reel_ws_feed(w, (const uint8_t *)"\x81", 1, &used, &ev), REEL_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(reel_ws_feed(w, (const uint8_t *)"\x81\x01x", 3, &used, &ev), REEL_OK);
    assert_int_equal(used, 3);
    assert_int_equal(reel_ws_feed_eof(w, &ev), REEL_OK);
    reel_ws_free(w);

    /* bad UTF-8 in the payload of a frame that started in this call */
    w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    in = (const uint8_t *)"\x89\x00\x81\x02o\xff";
    assert_int_equal(reel_ws_feed(w, in, 6, &used, &ev), REEL_OK);
    assert_int_equal(used, 2);
    assert_false(reel_ws_mid_frame(w));
    assert_int_equal(reel_ws_feed(w, in + 2, 3, &used, &ev), REEL_NEED_MORE);
    assert_true(reel_ws_mid_frame(w));
    assert_int_equal(reel_ws_feed(w, in + 5, 1, &used, &ev), REEL_INVALID);
    assert_int_equal(ev.error_code, 1007);
    assert_true(reel_ws_mid_frame(w));
    reel_ws_free(w);
}

/* A Close read whole is the last frame of its stream: reel may put none
 * of its own after it (RFC 6455 5.5.1), also once a frame after it failed
 * the codec; a Close cut short or refused is not one. */
static void test_close_seen(void **state) {
    (void)state;
    const uint8_t *in = (const uint8_t *)"\x81\x01x\x88\x02\x03\xe8\x81\x00";
    reel_ws_t *w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    reel_ws_event_t ev;
    size_t used;
    assert_false(reel_ws_close_seen(w));
    assert_int_equal(reel_ws_feed(w, in, 9, &used, &ev), REEL_OK); /* the text */
    assert_false(reel_ws_close_seen(w));
    in += used;
    assert_int_equal(reel_ws_feed(w, in, 3, &used, &ev), REEL_NEED_MORE); /* Close cut short */
    assert_false(reel_ws_close_seen(w));
    in += used;
    assert_int_equal(reel_ws_feed(w, in, 1, &used, &ev), REEL_OK);
    assert_int_equal(ev.opcode, REEL_WS_OP_CLOSE);
    assert_true(reel_ws_close_seen(w));
    in += used;
    assert_int_equal(reel_ws_feed(w, in, 2, &used, &ev), REEL_INVALID);
    assert_string_equal(ev.error_reason, "frame after a close frame");
    assert_true(reel_ws_close_seen(w));
    reel_ws_free(w);

    w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    assert_int_equal(reel_ws_feed(w, (const uint8_t *)"\x88\x02\x03\xed", 4, &used, &ev),
                     REEL_INVALID); /* 1005 may not be sent */
    assert_false(reel_ws_close_seen(w));
    reel_ws_free(w);
}

/* ---- permessage-deflate ---- */

static const run_opts_t SRV_Z = {.role = REEL_WS_FROM_SERVER,
                                 .opts = {.max_message = 1 << 20, .deflate = {.enabled = true}}};

static void test_deflate_rfc7692(void **state) {
    (void)state;
    /* 7.2.3.1: "Hello" in one frame and in two */
    CHECK(&SRV_Z, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",
          "MSG text 5/5 wire=7 frames=1 z @9 'Hello'\n");
    CHECK(&SRV_Z, "\x41\x03\xf2\x48\xcd\x80\x04\xc9\xc9\x07\x00",
          "MSG text 5/5 wire=7 frames=2 z @11 'Hello'\n");
    /* 7.2.3.2: the second "Hello" refers back to the first */
    CHECK(&SRV_Z, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xc1\x05\xf2\x00\x11\x00\x00",
          "MSG text 5/5 wire=7 frames=1 z @9 'Hello'\n"
          "MSG text 5/5 wire=5 frames=1 z @16 'Hello'\n");
    /* ... which a server without context takeover may not do */
    run_opts_t nt = SRV_Z;
    nt.opts.deflate.server_no_context_takeover = true;
    CHECK(&nt, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xc1\x05\xf2\x00\x11\x00\x00",
          "MSG text 5/5 wire=7 frames=1 z @9 'Hello'\n"
          "ERR 1007 invalid compressed data\n");
    /* the client's setting does not apply to the server's frames */
    nt.opts.deflate.server_no_context_takeover = false;
    nt.opts.deflate.client_no_context_takeover = true;
    CHECK(&nt, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xc1\x05\xf2\x00\x11\x00\x00",
          "MSG text 5/5 wire=7 frames=1 z @9 'Hello'\n"
          "MSG text 5/5 wire=5 frames=1 z @16 'Hello'\n");
    /* 7.2.3.3: a stored block */
    CHECK(&SRV_Z, "\xc1\x0b\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00",
          "MSG text 5/5 wire=11 frames=1 z @13 'Hello'\n");
    /* 7.2.3.4: a final block (BFINAL), twice, then a normal message */
    CHECK(&SRV_Z,
          "\xc1\x08\xf3\x48\xcd\xc9\xc9\x07\x00\x00"
          "\xc1\x08\xf3\x48\xcd\xc9\xc9\x07\x00\x00"
          "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",
          "MSG text 5/5 wire=8 frames=1 z @10 'Hello'\n"
          "MSG text 5/5 wire=8 frames=1 z @20 'Hello'\n"
          "MSG text 5/5 wire=7 frames=1 z @29 'Hello'\n");
    /* 7.2.3.5: two DEFLATE blocks in one message */
    CHECK(&SRV_Z, "\xc1\x0d\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00",
          "MSG text 5/5 wire=13 frames=1 z @15 'Hello'\n");
    /* compressed and uncompressed messages mix; a client's masked frames */
    CHECK(&SRV_Z, "\x81\x02hi\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",
          "MSG text 2/2 wire=2 frames=1 @4 'hi'\n"
          "MSG text 5/5 wire=7 frames=1 z @13 'Hello'\n");
    run_opts_t cz = SRV_Z;
    cz.role = REEL_WS_FROM_CLIENT;
    reel_buf_t in;
    reel_buf_init(&in, 0);
    frame(&in, REEL_WS_OP_TEXT, true, true, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, KEY);
    check_n(&cz, in.data, in.len, "MSG text 5/5 wire=7 frames=1 z @13 'Hello'\n");
    reel_buf_free(&in);
    /* garbage */
    CHECK(&SRV_Z, "\xc2\x03\xff\xff\xff", "ERR 1007 invalid compressed data\n");
    /* inflated bad UTF-8 */
    CHECK(&SRV_Z, "\xc1\x03\xfa\x0f\x00", "ERR 1007 invalid UTF-8 in a text message\n");
}

/* Compresses each message as a permessage-deflate sender does (raw
 * deflate, windowBits -wbits, sync flush, the 00 00 ff ff tail removed)
 * and frames it, fragmented in frag-byte frames when frag > 0. */
static void deflate_frames(reel_buf_t *out, const uint8_t *const *msgs, const size_t *lens,
                           size_t n, bool takeover, int wbits, size_t frag, const uint8_t *key) {
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    for (size_t i = 0; i < n; i++) {
        size_t cap = deflateBound(&z, lens[i]) + 64;
        uint8_t *c = reel_malloc(cap);
        z.next_in = (Bytef *)(uintptr_t)msgs[i];
        z.avail_in = (uInt)lens[i];
        z.next_out = c;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
        assert_int_equal(z.avail_in, 0);
        size_t clen = cap - z.avail_out;
        assert_true(clen >= 4);
        assert_memory_equal(c + clen - 4, "\x00\x00\xff\xff", 4);
        clen -= 4;
        if (frag == 0 || clen <= frag) {
            frame(out, REEL_WS_OP_BINARY, true, true, c, clen, key);
        } else {
            for (size_t at = 0; at < clen; at += frag) {
                size_t k = clen - at < frag ? clen - at : frag;
                frame(out, at ? REEL_WS_OP_CONTINUATION : REEL_WS_OP_BINARY, at + k == clen,
                      at == 0, c + at, k, key);
            }
        }
        free(c);
        if (!takeover)
            deflateReset(&z);
    }
    deflateEnd(&z);
}

static void test_deflate_generated(void **state) {
    (void)state;
    /* three similar messages: with takeover the later ones are tiny */
    static uint8_t m[3][3000];
    for (int i = 0; i < 3; i++) {
        for (size_t j = 0; j < sizeof(m[i]); j++)
            m[i][j] = (uint8_t)("the quick brown fox "[j % 20] + (j % 700 == 0 ? i : 0));
    }
    const uint8_t *msgs[3] = {m[0], m[1], m[2]};
    size_t lens[3] = {3000, 3000, 3000};
    for (int takeover = 0; takeover < 2; takeover++) {
        for (int role = 0; role < 2; role++) {
            for (size_t frag = 0; frag <= 7; frag += 7) {
                reel_buf_t in, want;
                reel_buf_init(&in, 0);
                reel_buf_init(&want, 0);
                deflate_frames(&in, msgs, lens, 3, takeover, 15, frag, role ? KEY : NULL);
                run_opts_t o = {.role = role ? REEL_WS_FROM_CLIENT : REEL_WS_FROM_SERVER,
                                .opts = {.max_message = 1 << 20, .deflate = {.enabled = true}}};
                if (!takeover) {
                    o.opts.deflate.server_no_context_takeover = true;
                    o.opts.deflate.client_no_context_takeover = true;
                }
                char *got = run(&o, in.data, in.len, NULL, 0);
                /* build the expected trace from the actual offsets of a whole
                 * run, checking every field but the offsets by hand */
                const char *line = got;
                for (int i = 0; i < 3; i++) {
                    char head[64];
                    int hn = snprintf(head, sizeof(head), "MSG binary 3000/3000 wire=");
                    assert_memory_equal(line, head, (size_t)hn);
                    const char *fnvp = strstr(line, " fnv=");
                    assert_non_null(fnvp);
                    char f[32];
                    snprintf(f, sizeof(f), " fnv=%016llx\n", (unsigned long long)fnv(m[i], 3000));
                    assert_memory_equal(fnvp, f, strlen(f));
                    assert_non_null(strstr(line, " z @"));
                    line = fnvp + strlen(f);
                }
                assert_string_equal(line, "");
                check_n(&o, in.data, in.len, got);
                /* with takeover, decoding without it fails, and the other
                 * way round works */
                run_opts_t other = o;
                other.opts.deflate.server_no_context_takeover = takeover;
                other.opts.deflate.client_no_context_takeover = takeover;
                char *got2 = run(&other, in.data, in.len, NULL, 0);
                if (takeover)
                    assert_non_null(strstr(got2, "ERR 1007 invalid compressed data"));
                else
                    assert_string_equal(got2, got);
                free(got2);
                free(got);
                reel_buf_free(&in);
                reel_buf_free(&want);
            }
        }
    }
}

static void test_deflate_window_bits(void **state) {
    (void)state;
    /* a 10-bit window: a repeat 900 bytes back is in it, the decoder too */
    static uint8_t a[2000];
    fill(a, 900, 1);
    memcpy(a + 900, a, 900);
    fill(a + 1800, 200, 9);
    const uint8_t *msgs[1] = {a};
    size_t lens[1] = {sizeof(a)};
    reel_buf_t in;
    reel_buf_init(&in, 0);
    deflate_frames(&in, msgs, lens, 1, true, 10, 0, NULL);
    run_opts_t o = SRV_Z;
    o.opts.deflate.server_max_window_bits = 10;
    char want[128];
    snprintf(want, sizeof(want), "MSG binary 2000/2000 wire=%zu frames=1 z @%zu fnv=%016llx\n",
             in.len - 4, in.len, (unsigned long long)fnv(a, sizeof(a)));
    check_n(&o, in.data, in.len, want);
    /* 8 bits is decoded with 9: what zlib's deflate makes of 8 */
    o.opts.deflate.server_max_window_bits = 8;
    reel_buf_reset(&in);
    deflate_frames(&in, msgs, lens, 1, true, 9, 0, NULL);
    snprintf(want, sizeof(want), "MSG binary 2000/2000 wire=%zu frames=1 z @%zu fnv=%016llx\n",
             in.len - 4, in.len, (unsigned long long)fnv(a, sizeof(a)));
    check_n(&o, in.data, in.len, want);
    reel_buf_free(&in);
}

/* A message ended with a final block (Z_FINISH), the next one compressed by
 * a new stream primed with the first: the decoder keeps the window. */
static void test_deflate_bfinal_keeps_window(void **state) {
    (void)state;
    static const char m1[] = "a window to refer back to, a window to refer back to";
    static const char m2[] = "a window to refer back to!";
    uint8_t c[256];
    reel_buf_t in;
    reel_buf_init(&in, 0);
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)m1;
    z.avail_in = sizeof(m1) - 1;
    z.next_out = c;
    z.avail_out = sizeof(c);
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    frame(&in, REEL_WS_OP_TEXT, true, true, c, sizeof(c) - z.avail_out, NULL);
    assert_int_equal(deflateReset(&z), Z_OK);
    assert_int_equal(deflateSetDictionary(&z, (const Bytef *)m1, sizeof(m1) - 1), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)m2;
    z.avail_in = sizeof(m2) - 1;
    z.next_out = c;
    z.avail_out = sizeof(c);
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t clen = sizeof(c) - z.avail_out - 4;
    assert_true(clen < 10); /* it did refer back */
    frame(&in, REEL_WS_OP_TEXT, true, true, c, clen, NULL);
    deflateEnd(&z);
    char *got = run(&SRV_Z, in.data, in.len, NULL, 0);
    assert_non_null(strstr(got, "'a window to refer back to, a window to refer back to'\n"));
    assert_non_null(strstr(got, "'a window to refer back to!'\n"));
    check_n(&SRV_Z, in.data, in.len, got);
    free(got);
    reel_buf_free(&in);
}

static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* 64 MiB of zeros in about 64 KiB: the message keeps max_message bytes and
 * counts the rest; the heap does not grow with the inflated size. */
static void test_deflate_bomb(void **state) {
    (void)state;
    const size_t total = 64u << 20;
    uint8_t *zeros = calloc(1, 1 << 20);
    assert_non_null(zeros);
    reel_buf_t in;
    reel_buf_init(&in, 0);
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t *c = reel_malloc(1 << 20);
    size_t clen = 0;
    for (size_t done = 0; done < total; done += 1 << 20) {
        z.next_in = zeros;
        z.avail_in = 1 << 20;
        do {
            z.next_out = c + clen;
            z.avail_out = (uInt)((1 << 20) - clen);
            assert_true(deflate(&z, done + (1 << 20) == total ? Z_SYNC_FLUSH : Z_NO_FLUSH) == Z_OK);
            clen = (1 << 20) - z.avail_out;
        } while (z.avail_in);
    }
    deflateEnd(&z);
    free(zeros);
    assert_true(clen < 200 * 1024);
    frame(&in, REEL_WS_OP_TEXT, false, true, c, clen / 2, NULL);
    frame(&in, REEL_WS_OP_CONTINUATION, true, false, c + clen / 2, clen - 4 - clen / 2, NULL);
    free(c);

    reel_ws_opts_t opts = {.max_message = 1000, .deflate = {.enabled = true}};
    size_t base = heap_in_use(), peak = base;
    reel_ws_t *w = reel_ws_new(REEL_WS_FROM_SERVER, &opts);
    reel_ws_event_t ev;
    size_t used, off = 0;
    reel_rc rc;
    while ((rc = reel_ws_feed(w, in.data + off, in.len - off > 4096 ? 4096 : in.len - off, &used,
                              &ev)) != REEL_OK) {
        assert_int_equal(rc, REEL_NEED_MORE);
        off += used;
        size_t now = heap_in_use();
        if (now > peak)
            peak = now;
    }
    assert_int_equal(off + used, in.len);
    assert_int_equal(ev.type, REEL_WS_EV_MESSAGE);
    assert_int_equal(ev.length, total);
    assert_int_equal(ev.len, 1000);
    assert_true(ev.truncated);
    assert_int_equal(ev.frames, 2);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(ev.data[i], 0);
    size_t now = heap_in_use();
    if (now > peak)
        peak = now;
    /* codec, zlib state and 32 KiB window, a 1 KiB message: well under 256 KiB */
    assert_true(peak - base < 256 * 1024);
    reel_ws_free(w);
    reel_buf_free(&in);
}

/* ---- Sec-WebSocket-Extensions ---- */

static reel_rc ext(const char *v, reel_ws_deflate_t *d) {
    return reel_ws_parse_extensions(v, v ? strlen(v) : 0, d);
}

static void test_parse_extensions(void **state) {
    (void)state;
    reel_ws_deflate_t d;
    assert_int_equal(ext(NULL, &d), REEL_OK);
    assert_false(d.enabled);
    assert_int_equal(ext("", &d), REEL_OK);
    assert_false(d.enabled);
    assert_int_equal(ext("permessage-deflate", &d), REEL_OK);
    assert_true(d.enabled);
    assert_false(d.server_no_context_takeover || d.client_no_context_takeover);
    assert_int_equal(d.server_max_window_bits, 0);
    assert_int_equal(ext(" Permessage-Deflate ; server_no_context_takeover;"
                         "client_no_context_takeover ;server_max_window_bits=10; "
                         "client_max_window_bits = \"9\" ",
                         &d),
                     REEL_OK);
    assert_true(d.enabled && d.server_no_context_takeover && d.client_no_context_takeover);
    assert_int_equal(d.server_max_window_bits, 10);
    assert_int_equal(d.client_max_window_bits, 9);
    assert_int_equal(ext(", permessage-deflate; client_max_window_bits=15,", &d), REEL_OK);
    assert_int_equal(d.client_max_window_bits, 15);

    /* another extension: not ours to decode */
    /* a quoted value must unescape to a token */
    assert_int_equal(ext("permessage-deflate, x-foo; a=1; b=\"q\\\"\"", &d), REEL_INVALID);
    assert_int_equal(
        ext("x-foo; a=1; b=\"q\\x\", permessage-deflate; server_max_window_bits=8", &d),
        REEL_UNSUPPORTED);
    assert_true(d.enabled);
    assert_int_equal(d.server_max_window_bits, 8);
    assert_int_equal(ext("x-webkit-deflate-frame", &d), REEL_UNSUPPORTED);
    assert_false(d.enabled);

    static const char *const bad[] = {
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1000000000000000000009",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown",
        "permessage-deflate;",
        "permessage-deflate x",
        "permessage-deflate; a=\"unterminated",
        "; permessage-deflate",
        "permessage-deflate; server_max_window_bits=\"1 0\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&d, 0xff, sizeof(d));
        if (ext(bad[i], &d) != REEL_INVALID)
            fail_msg("accepted: %s", bad[i]);
        assert_false(d.enabled);
    }
    /* the value need not be NUL-terminated */
    assert_int_equal(
        reel_ws_parse_extensions("permessage-deflate; server_max_window_bits=99",
                                 strlen("permessage-deflate; server_max_window_bits=9"), &d),
        REEL_OK);
    assert_int_equal(d.server_max_window_bits, 9);
}

/* ---- writers ---- */

static void test_write_frame_rfc(void **state) {
    (void)state;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    assert_int_equal(
        reel_ws_write_frame(&b, REEL_WS_OP_TEXT, true, false, (const uint8_t *)"Hello", 5, KEY),
        REEL_OK);
    assert_int_equal(b.len, 11);
    assert_memory_equal(b.data, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    reel_buf_reset(&b);
    assert_int_equal(
        reel_ws_write_frame(&b, REEL_WS_OP_TEXT, false, false, (const uint8_t *)"Hel", 3, NULL),
        REEL_OK);
    assert_int_equal(reel_ws_write_frame(&b, REEL_WS_OP_CONTINUATION, true, false,
                                         (const uint8_t *)"lo", 2, NULL),
                     REEL_OK);
    assert_memory_equal(b.data, "\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f", 9);
    reel_buf_reset(&b);
    static uint8_t big[65536];
    assert_int_equal(reel_ws_write_frame(&b, REEL_WS_OP_BINARY, true, false, big, 256, NULL),
                     REEL_OK);
    assert_memory_equal(b.data, "\x82\x7e\x01\x00", 4);
    reel_buf_reset(&b);
    assert_int_equal(
        reel_ws_write_frame(&b, REEL_WS_OP_BINARY, true, false, big, sizeof(big), NULL), REEL_OK);
    assert_memory_equal(b.data, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(b.len, 10 + sizeof(big));
    reel_buf_reset(&b);
    assert_int_equal(reel_ws_write_frame(&b, 16, true, false, NULL, 0, NULL), REEL_INVALID);
    reel_buf_free(&b);

    /* a capped buffer is left as it was */
    reel_buf_init(&b, 8);
    reel_buf_append(&b, "ab", 2);
    assert_int_equal(reel_ws_write_frame(&b, REEL_WS_OP_TEXT, true, false, big, 5, KEY),
                     REEL_LIMIT);
    assert_int_equal(b.len, 2);
    assert_string_equal((char *)b.data, "ab");
    reel_buf_free(&b);
}

static void test_write_close(void **state) {
    (void)state;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    assert_int_equal(reel_ws_write_close(&b, 1002, "protocol error", NULL), REEL_OK);
    assert_int_equal(b.len, 2 + 2 + 14);
    assert_memory_equal(b.data,
                        "\x88\x10\x03\xea"
                        "protocol error",
                        18);
    /* masked, read back by a client-side codec */
    reel_buf_reset(&b);
    assert_int_equal(reel_ws_write_close(&b, 1007, "bad \xc3\xa9", KEY), REEL_OK);
    check_n(&CLI, b.data, b.len, "CLOSE @14 1007 'bad \\xc3\\xa9'\n");
    reel_buf_reset(&b);
    assert_int_equal(reel_ws_write_close(&b, 0, "ignored", NULL), REEL_OK);
    assert_memory_equal(b.data, "\x88\x00", 2);
    assert_int_equal(b.len, 2);

    /* the codec's own error reasons fit */
    reel_ws_t *w = reel_ws_new(REEL_WS_FROM_SERVER, NULL);
    reel_ws_event_t ev;
    size_t used;
    assert_int_equal(reel_ws_feed(w, (const uint8_t *)"\x82\x7f\x80", 3, &used, &ev),
                     REEL_NEED_MORE);
    assert_int_equal(reel_ws_feed(w, (const uint8_t *)"\0\0\0\0\0\0\0", 7, &used, &ev),
                     REEL_INVALID);
    reel_buf_reset(&b);
    assert_int_equal(reel_ws_write_close(&b, ev.error_code, ev.error_reason, NULL), REEL_OK);
    reel_ws_free(w);

    char long_reason[125];
    memset(long_reason, 'r', 124);
    long_reason[124] = 0;
    size_t before = b.len;
    assert_int_equal(reel_ws_write_close(&b, 1000, long_reason, NULL), REEL_INVALID);
    long_reason[123] = 0;
    assert_int_equal(reel_ws_write_close(&b, 1000, long_reason, NULL), REEL_OK);
    assert_int_equal(b.len, before + 2 + 125);
    assert_int_equal(reel_ws_write_close(&b, 1005, NULL, NULL), REEL_INVALID);
    assert_int_equal(reel_ws_write_close(&b, 999, NULL, NULL), REEL_INVALID);
    assert_int_equal(reel_ws_write_close(&b, 1000, "\xff", NULL), REEL_INVALID);
    assert_int_equal(b.len, before + 2 + 125);
    reel_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_single_unmasked),
        cmocka_unit_test(test_rfc_single_masked),
        cmocka_unit_test(test_rfc_fragmented),
        cmocka_unit_test(test_rfc_ping_pong),
        cmocka_unit_test(test_rfc_256_and_64k),
        cmocka_unit_test(test_length_boundaries),
        cmocka_unit_test(test_non_minimal_length_accepted),
        cmocka_unit_test(test_fragmented_with_ping),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_error_consumed),
        cmocka_unit_test(test_close_seen),
        cmocka_unit_test(test_deflate_rfc7692),
        cmocka_unit_test(test_deflate_generated),
        cmocka_unit_test(test_deflate_window_bits),
        cmocka_unit_test(test_deflate_bfinal_keeps_window),
        cmocka_unit_test(test_deflate_bomb),
        cmocka_unit_test(test_parse_extensions),
        cmocka_unit_test(test_write_frame_rfc),
        cmocka_unit_test(test_write_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
