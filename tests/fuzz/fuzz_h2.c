/* libFuzzer harness: the HTTP/2 codec (src/core/h2.h) in both roles,
 * arbitrary bytes cut at arbitrary points.
 *
 * Input: 2 control bytes, then the bytes the peer sends.
 *   c[0] bit 0   0 = server role (reads a client's frames), 1 = client role
 *                (reads an origin's frames, after submitting 3 requests)
 *        bit 1   server role: start with a valid preface and SETTINGS, so
 *                that the fuzzer's bytes reach the frame parser
 *        bit 2   consume received DATA at once (else never: windows close)
 *        bit 3   small limits (header list 256 B, windows 1 KiB, 2 resets/s)
 *   c[1]         how to cut: seed of the piece lengths (1 to 64 bytes)
 * After every piece the codec's output is taken, as the proxy would send
 * it. The same bytes fed whole and cut must give the same events (DATA
 * compared as the total per stream, since a cut splits a chunk), every
 * event must have its documented shape, and once every event is handed
 * out the codec holds no event bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "core/h2.h"
#include "fuzz_util.h"

static const uint8_t SETTINGS[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};

typedef struct {
    reel_buf_t trace;
    uint64_t data[64]; /* bytes per stream id % 64 */
} run_t;

static void note(run_t *r, reel_h2_t *h, const reel_codec_event_t *ev, bool consume) {
    switch (ev->type) {
    case REEL_CODEC_EV_HEAD:
        FUZZ_CHECK(ev->stream > 0, "HEAD on stream 0");
        FUZZ_CHECK(ev->head.method && ev->head.path && ev->head.host && ev->head.scheme,
                   "a head string is NULL");
        for (size_t i = 0; i < ev->head.nfields; i++)
            FUZZ_CHECK(ev->head.fields[i].name[ev->head.fields[i].name_len] == 0 &&
                           ev->head.fields[i].value[ev->head.fields[i].value_len] == 0,
                       "a field is not NUL-terminated");
        reel_buf_printf(&r->trace, "head %u %u %s %zu\n", ev->stream, ev->head.status,
                        ev->head.method, ev->head.nfields);
        break;
    case REEL_CODEC_EV_DATA:
        FUZZ_CHECK(ev->stream > 0 && ev->len > 0, "empty DATA event or stream 0");
        r->data[ev->stream % 64] += ev->len;
        if (consume)
            reel_h2_consume(h, ev->stream, ev->len);
        break;
    case REEL_CODEC_EV_END:
        reel_buf_printf(&r->trace, "end %u %zu\n", ev->stream, ev->ntrailers);
        break;
    case REEL_CODEC_EV_RESET:
        FUZZ_CHECK(ev->error_reason != NULL, "RESET without a reason");
        reel_buf_printf(&r->trace, "reset %u %u\n", ev->stream, ev->error_code);
        break;
    case REEL_CODEC_EV_GOAWAY:
        FUZZ_CHECK(ev->error_reason != NULL, "GOAWAY without a reason");
        reel_buf_printf(&r->trace, "goaway %u %u\n", ev->last_stream, ev->error_code);
        break;
    default:
        FUZZ_CHECK(0, "unexpected event type %d", ev->type);
    }
}

static void run(uint8_t ctl, uint8_t seed, const uint8_t *in, size_t n, bool cut, run_t *r) {
    reel_h2_opts_t o = {0};
    if (ctl & 8)
        o = (reel_h2_opts_t){.max_header_list = 256,
                             .stream_window = 1024,
                             .conn_window = 1024,
                             .max_resets_per_sec = 2};
    bool client = ctl & 1;
    reel_codec_t *c = reel_h2_codec_new(client ? REEL_H2_CLIENT : REEL_H2_SERVER, &o);
    reel_h2_t *h = reel_h2_codec_h2(c);
    reel_buf_t out;
    reel_buf_init(&out, 0);
    if (client) {
        reel_msg_head_t rq = {.method = "GET",
                              .scheme = "https",
                              .host = "a.test",
                              .port = 443,
                              .path = "/",
                              .version = "HTTP/1.1"};
        reel_err_t err;
        reel_err_clear(&err);
        for (int i = 0; i < 3; i++) {
            uint32_t id;
            FUZZ_CHECK(reel_h2_submit_request(h, &rq, i != 1, &id, &err) == REEL_OK,
                       "submit_request: %s", reel_err_str(&err));
            if (i == 1)
                reel_h2_submit_data(h, id, "body", 4, true);
        }
    }
    reel_buf_t all;
    reel_buf_init(&all, 0);
    if (!client && (ctl & 2)) {
        reel_buf_append(&all, REEL_H2_PREFACE, REEL_H2_PREFACE_LEN);
        reel_buf_append(&all, SETTINGS, sizeof SETTINGS);
    }
    reel_buf_append(&all, in, n);
    uint32_t rnd = seed * 2654435761u + 1;
    size_t off = 0;
    bool dead = false;
    while (off < all.len && !dead) {
        size_t piece = all.len - off;
        if (cut) {
            rnd = rnd * 1103515245u + 12345u;
            size_t want = 1 + (rnd >> 16) % 64;
            if (want < piece)
                piece = want;
        }
        uint8_t *p = reel_malloc(piece);
        memcpy(p, all.data + off, piece);
        size_t pos = 0;
        for (;;) {
            size_t used = 0;
            reel_codec_event_t ev;
            reel_rc rc = reel_codec_feed(c, p + pos, piece - pos, &used, &ev);
            pos += used;
            if (rc == REEL_NEED_MORE)
                break;
            if (rc != REEL_OK) {
                FUZZ_CHECK(ev.error_reason != NULL, "error without a reason");
                reel_buf_printf(&r->trace, "error\n");
                dead = true;
                break;
            }
            note(r, h, &ev, ctl & 4);
        }
        free(p);
        off += piece;
        reel_buf_reset(&out);
        if (reel_h2_take_output(h, &out) != REEL_OK)
            dead = true;
    }
    reel_codec_event_t ev;
    size_t used;
    while (!dead && reel_codec_feed(c, NULL, 0, &used, &ev) == REEL_OK)
        note(r, h, &ev, ctl & 4);
    reel_buf_free(&all);
    reel_buf_free(&out);
    reel_codec_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    run_t whole = {0}, cut = {0};
    reel_buf_init(&whole.trace, 0);
    reel_buf_init(&cut.trace, 0);
    run(data[0], data[1], data + 2, size - 2, false, &whole);
    run(data[0], data[1], data + 2, size - 2, true, &cut);
    reel_buf_append(&whole.trace, "", 1);
    reel_buf_append(&cut.trace, "", 1);
    /* Compared only when neither run failed nor sent GOAWAY: a GOAWAY of
     * ours is reported when the output is taken (after each piece, or at
     * the end), and the reset rate limit depends on the clock. */
    const char *w = (const char *)whole.trace.data, *k = (const char *)cut.trace.data;
    if (!strstr(w, "error") && !strstr(k, "error") && !strstr(w, "goaway") &&
        !strstr(k, "goaway")) {
        FUZZ_CHECK(strcmp((const char *)whole.trace.data, (const char *)cut.trace.data) == 0,
                   "whole and cut traces differ:\n%s\n---\n%s", (const char *)whole.trace.data,
                   (const char *)cut.trace.data);
        FUZZ_CHECK(memcmp(whole.data, cut.data, sizeof whole.data) == 0,
                   "DATA totals differ between whole and cut");
    }
    reel_buf_free(&whole.trace);
    reel_buf_free(&cut.trace);
    return 0;
}
