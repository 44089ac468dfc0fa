/* libFuzzer harness: the HTTP/1 layer (src/core/http1.h) fed as a server
 * reads requests and as a client reads responses, arbitrary bytes cut at
 * arbitrary points.
 *
 * Input: 4 control bytes, then the bytes of the connection.
 *   c[0] bit 0   0 = request parser, 1 = response parser
 *        bit 1   call reel_h1_feed_eof after the input
 *        bit 2   request parser: refuse every upgrade (parse on after it)
 *        bit 3   small limits (256-byte heads, 8 fields)
 *        bits 4-7 response parser: number of announced requests (0..15)
 *   c[1]         how to cut: bits 0-1 pick the largest piece (1, 7, 64 or
 *                1024 bytes), bits 2-7 seed the piece lengths
 *   c[2], c[3]   announcement i is HEAD if bit 2i of c[2..3] is set, CONNECT
 *                if bit 2i+1 is (both: HEAD)
 * The parser is driven exactly as the header says (feed until NEED_MORE,
 * zero-length calls included), each piece in its own heap buffer so a span
 * kept across feeds shows up under ASan. The same bytes fed whole and cut
 * into pieces must give the same event trace (the unit tests' rule), and
 * every event must keep its documented shape. At every NEED_MORE a request
 * parser is asked what a record of the head so far would hold
 * (reel_h1_partial_cut, reel_h1_partial_head: probe_partial).
 * Every request head is also judged as map_local judges one
 * (src/core/cond.h: check_cond): the answer's part of the file is within
 * it, and every field value that reads as an HTTP date is printed and read
 * back to the same time.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "core/cond.h"
#include "core/http1.h"
#include "fuzz_util.h"


typedef struct {
    reel_h1_side side;
    bool eof, refuse;
    reel_h1_limits_t lim;
    unsigned nexpect;
    unsigned expect_bits;
} opts_t;

/* A parsed string: NUL-terminated at len and, when whole, without a NUL
 * inside (methods, targets and fields refuse control bytes; a reason
 * phrase may hold any byte but CR and LF). */
static void check_str(const char *s, size_t len, const char *what, bool whole) {
    FUZZ_CHECK(s != NULL, "%s is NULL", what);
    FUZZ_CHECK(s[len] == '\0', "%s not terminated at its length %zu", what, len);
    FUZZ_CHECK(!whole || strlen(s) == len, "%s: strlen %zu != len %zu", what, strlen(s), len);
}

static void fmt_fields(reel_buf_t *t, const reel_h1_header_t *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        check_str(f[i].name, f[i].name_len, "field name", true);
        check_str(f[i].value, f[i].value_len, "field value", true);
        reel_buf_printf(t, " [%s: %s]", f[i].name, f[i].value);
    }
}

static void fmt_head(reel_buf_t *t, const reel_h1_head_t *h, reel_h1_side side) {
    if (side == REEL_H1_REQUEST) {
        check_str(h->method, h->method_len, "method", true);
        check_str(h->target, h->target_len, "target", true);
        reel_buf_printf(t, "HEAD %s %s %d.%d form=%d", h->method, h->target, h->version_major,
                        h->version_minor, (int)h->target_form);
    } else {
        check_str(h->reason, h->reason_len, "reason", false);
        FUZZ_CHECK(h->status >= 100 && h->status <= 999, "status %d", h->status);
        reel_buf_printf(t, "HEAD %d '", h->status);
        reel_buf_append(t, h->reason, h->reason_len);
        reel_buf_printf(t, "' %d.%d", h->version_major, h->version_minor);
    }
    fmt_fields(t, h->headers, h->nheaders);
    FUZZ_CHECK(h->framing != REEL_H1_BODY_LENGTH || h->content_length >= 0,
               "length framing with Content-Length %lld", (long long)h->content_length);
    FUZZ_CHECK(!h->interim || side == REEL_H1_RESPONSE, "interim request");
    reel_buf_printf(t, " fr=%d cl=%lld%s%s%s%s%s%s%s\n", (int)h->framing,
                    (long long)h->content_length, h->chunked ? " chunked" : "",
                    h->keep_alive ? " ka" : "", h->expect_continue ? " 100c" : "",
                    h->upgrade ? " upgrade" : "", h->is_connect ? " connect" : "",
                    h->is_head ? " head" : "", h->interim ? " interim" : "");
}

/* What a request head that stopped here gives a record (reel_h1_partial_cut,
 * then reel_h1_partial_head, in the order reel calls them): every byte they
 * point at is read (ASan), and the field partial_cut names is the last one
 * partial_head gives. */
static void check_cond(const reel_h1_head_t *h) {
    static const uint64_t sizes[] = {0, 1, 1000, UINT64_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        reel_cond_repr_t r = {.size = sizes[i],
                              .mtime = 784111777,
                              .etag = "\"3e8-1\"",
                              .now = 784111777 + (int64_t)i};
        reel_cond_answer_t a;
        reel_cond_evaluate(h->method, h->headers, h->nheaders, &r, &a);
        bool get = strcmp(h->method, "GET") == 0;
        switch (a.status) {
        case 200:
            FUZZ_CHECK(a.first == 0 && a.length == r.size, "200 of %llu+%llu",
                       (unsigned long long)a.first, (unsigned long long)a.length);
            break;
        case 206:
            FUZZ_CHECK(get && a.length >= 1 && a.first < r.size && a.length <= r.size - a.first,
                       "206 of %llu+%llu in %llu", (unsigned long long)a.first,
                       (unsigned long long)a.length, (unsigned long long)r.size);
            break;
        case 304:
        case 412:
            FUZZ_CHECK(a.length == 0, "%d with a body", a.status);
            break;
        case 416:
            FUZZ_CHECK(get && a.length == 0, "416 of a %s", h->method);
            break;
        default:
            FUZZ_CHECK(false, "status %d", a.status);
        }
    }
    for (size_t i = 0; i < h->nheaders; i++) {
        int64_t t = 0, back = -1;
        if (!reel_http_date_parse(h->headers[i].value, h->headers[i].value_len, &t))
            continue;
        char out[30];
        reel_http_date_format(t, out);
        FUZZ_CHECK(reel_http_date_parse(out, strlen(out), &back) && back == t,
                   "date %lld printed as %s", (long long)t, out);
    }
}

static void probe_partial(reel_h1_t *p) {
    const char *name = NULL;
    size_t name_len = 0;
    const char *where = reel_h1_partial_cut(p, &name, &name_len);
    reel_h1_head_t h;
    bool any = reel_h1_partial_head(p, &h);
    FUZZ_CHECK(where == NULL || any, "partial_cut says '%s' with no partial head", where);
    volatile unsigned sum = 0;
    if (any) {
        for (size_t i = 0; i < h.method_len; i++)
            sum += (unsigned char)h.method[i];
        for (size_t i = 0; i < h.target_len; i++)
            sum += (unsigned char)h.target[i];
        for (size_t k = 0; k < h.nheaders; k++) {
            for (size_t i = 0; i < h.headers[k].name_len; i++)
                sum += (unsigned char)h.headers[k].name[i];
            for (size_t i = 0; i < h.headers[k].value_len; i++)
                sum += (unsigned char)h.headers[k].value[i];
        }
    }
    if (name) {
        FUZZ_CHECK(any && h.nheaders > 0 && h.headers[h.nheaders - 1].name == name &&
                       h.headers[h.nheaders - 1].name_len == name_len,
                   "partial_cut names a field that is not the last one partial_head gives");
        FUZZ_CHECK(where && strcmp(where, "in the value of a field") == 0, "a name with '%s'",
                   where ? where : "(none)");
    }
    (void)sum;
}

/* Runs the parser over in[0..len) cut into pieces by the generator seeded
 * with seed (max_piece 0: one piece). Returns the trace (owned; it may hold
 * NULs: *tlen is its length). */
static char *run(const opts_t *o, const uint8_t *in, size_t len, size_t max_piece, uint32_t seed,
                 size_t *tlen) {
    reel_buf_t t;
    reel_buf_init(&t, 0);
    reel_buf_puts(&t, "");
    reel_h1_t *p = reel_h1_new(o->side, &o->lim);
    for (unsigned i = 0; i < o->nexpect; i++) {
        bool head = (o->expect_bits >> (2 * i)) & 1, conn = (o->expect_bits >> (2 * i + 1)) & 1;
        FUZZ_CHECK(reel_h1_expect_response(p, head, conn && !head) == REEL_OK, "announce %u", i);
    }
    bool dead = false, in_data = false, have_head = false;
    reel_buf_t head_text; /* the head as formatted at HEAD, compared at END */
    reel_buf_init(&head_text, 0);
    reel_h1_head_t last_head;
    memset(&last_head, 0, sizeof last_head);
    uint32_t x = seed | 1;
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
        uint8_t *piece = reel_malloc(n);
        memcpy(piece, in + start, n);
        size_t off = 0;
        for (;;) {
            reel_h1_event_t ev;
            size_t used = 12345;
            reel_rc rc = reel_h1_feed(p, piece + off, n - off, &used, &ev);
            if (rc == REEL_NEED_MORE) {
                FUZZ_CHECK(used == n - off, "NEED_MORE consumed %zu of %zu", used, n - off);
                FUZZ_CHECK(ev.type == REEL_H1_EV_NONE, "NEED_MORE with event %d", (int)ev.type);
                if (o->side == REEL_H1_REQUEST)
                    probe_partial(p);
                break;
            }
            if (rc != REEL_OK) {
                FUZZ_CHECK(rc == REEL_INVALID, "feed returned %d", (int)rc);
                FUZZ_CHECK(ev.error_reason != NULL, "error without a reason");
                FUZZ_CHECK(used == 0, "error consumed %zu", used);
                reel_buf_printf(&t, "%sERR %d %s\n", in_data ? "\n" : "", ev.error_status,
                                ev.error_reason);
                dead = true;
                reel_h1_event_t ev2; /* the parser stays dead */
                FUZZ_CHECK(reel_h1_feed(p, NULL, 0, &used, &ev2) == REEL_INVALID,
                           "feed after an error accepted");
                break;
            }
            FUZZ_CHECK(used <= n - off, "consumed %zu of %zu", used, n - off);
            bool data = ev.type == REEL_H1_EV_BODY || ev.type == REEL_H1_EV_TUNNEL;
            if (data) {
                FUZZ_CHECK(ev.len > 0, "empty data event");
                FUZZ_CHECK(ev.data >= piece + off && ev.data + ev.len <= piece + off + used,
                           "data outside the bytes consumed");
                if (!in_data)
                    reel_buf_puts(&t, ev.type == REEL_H1_EV_BODY ? "BODY " : "TUNNEL ");
                reel_buf_append(&t, ev.data, ev.len);
                in_data = true;
            } else {
                if (in_data)
                    reel_buf_puts(&t, "\n");
                in_data = false;
                switch (ev.type) {
                case REEL_H1_EV_HEAD:
                    if (o->side == REEL_H1_REQUEST)
                        check_cond(&ev.head);
                    fmt_head(&t, &ev.head, o->side);
                    reel_buf_reset(&head_text);
                    fmt_head(&head_text, &ev.head, o->side);
                    last_head = ev.head;
                    have_head = !ev.head.interim;
                    break;
                case REEL_H1_EV_END: {
                    FUZZ_CHECK(have_head, "END without a head");
                    reel_buf_t again; /* the head is still valid at END */
                    reel_buf_init(&again, 0);
                    fmt_head(&again, &last_head, o->side);
                    FUZZ_CHECK(again.len == head_text.len &&
                                   memcmp(again.data, head_text.data, again.len) == 0,
                               "head changed before END:\n%s\nvs\n%s", (char *)again.data,
                               (char *)head_text.data);
                    reel_buf_free(&again);
                    reel_buf_puts(&t, "END");
                    fmt_fields(&t, ev.trailers, ev.ntrailers);
                    reel_buf_puts(&t, "\n");
                    have_head = false;
                    break;
                }
                case REEL_H1_EV_UPGRADE:
                    reel_buf_puts(&t, "UPGRADE\n");
                    if (o->refuse && o->side == REEL_H1_REQUEST)
                        FUZZ_CHECK(reel_h1_upgrade_refused(p) == REEL_OK, "refuse");
                    break;
                default:
                    FUZZ_CHECK(0, "unexpected event %d", (int)ev.type);
                }
            }
            off += used;
        }
        free(piece);
        start += n;
    }
    if (o->eof && !dead) {
        for (int guard = 0;; guard++) {
            FUZZ_CHECK(guard < 16, "feed_eof keeps reporting events");
            reel_h1_event_t ev;
            reel_rc rc = reel_h1_feed_eof(p, &ev);
            if (in_data && (rc != REEL_OK || ev.type != REEL_H1_EV_BODY))
                reel_buf_puts(&t, "\n");
            in_data = false;
            if (rc != REEL_OK) {
                FUZZ_CHECK(rc == REEL_INVALID && ev.error_reason, "feed_eof returned %d", (int)rc);
                reel_buf_printf(&t, "ERR %d %s\n", ev.error_status, ev.error_reason);
                break;
            }
            if (ev.type == REEL_H1_EV_NONE) {
                reel_buf_puts(&t, "EOF\n");
                break;
            }
            FUZZ_CHECK(ev.type == REEL_H1_EV_END || ev.type == REEL_H1_EV_UPGRADE ||
                           ev.type == REEL_H1_EV_HEAD,
                       "feed_eof event %d", (int)ev.type);
            reel_buf_printf(&t, "EOF-EV %d\n", (int)ev.type);
            if (ev.type == REEL_H1_EV_END)
                have_head = false;
        }
        /* after EOF every feed is an error */
        reel_h1_event_t ev;
        size_t used = 0;
        FUZZ_CHECK(reel_h1_feed(p, (const uint8_t *)"x", 1, &used, &ev) != REEL_OK,
                   "feed after EOF accepted");
    } else if (in_data) {
        reel_buf_puts(&t, "\n");
    }
    reel_h1_free(p);
    reel_buf_free(&head_text);
    *tlen = t.len;
    return (char *)t.data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4)
        return 0;
    opts_t o;
    memset(&o, 0, sizeof o);
    o.side = (data[0] & 1) ? REEL_H1_RESPONSE : REEL_H1_REQUEST;
    o.eof = data[0] & 2;
    o.refuse = data[0] & 4;
    if (data[0] & 8) {
        o.lim.max_head_size = 256;
        o.lim.max_headers = 8;
    }
    if (o.side == REEL_H1_RESPONSE) {
        o.nexpect = data[0] >> 4;
        o.expect_bits = (unsigned)data[2] | (unsigned)data[3] << 8;
    }
    static const size_t max_pieces[4] = {1, 7, 64, 1024};
    size_t max_piece = max_pieces[data[1] & 3];
    uint32_t seed = (uint32_t)(data[1] >> 2) * 2654435761u;
    const uint8_t *in = data + 4;
    size_t len = size - 4;

    size_t wlen = 0, clen = 0;
    char *whole = run(&o, in, len, 0, 0, &wlen);
    char *cut = run(&o, in, len, max_piece, seed, &clen);
    FUZZ_CHECK(wlen == clen && memcmp(whole, cut, wlen) == 0,
               "trace depends on how the input is cut:\nwhole:\n%s\ncut:\n%s", whole, cut);
    free(whole);
    free(cut);
    return 0;
}
