/* HTTP/2 over nghttp2 as a pull-style codec. See core/h2.h.
 *
 * nghttp2 calls back as it parses; the callbacks turn frames into owned
 * events on a queue, and reel_codec_feed hands them out one at a time. The
 * input is given to nghttp2 whole (at most one read), so the queue holds
 * at most that much. */

#include "core/h2.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

/* ---- owned heads ---- */

/* A head being collected from HEADERS/CONTINUATION: strings in one buffer
 * (offsets, since it grows), pseudo headers apart. */
typedef struct {
    reel_buf_t strs;
    size_t *offs; /* name, value offsets per field */
    size_t *lens;
    size_t n, cap;
    size_t method, scheme, authority, path, status, protocol; /* +1 offsets, 0: absent */
    size_t size;                                              /* RFC 9113 6.5.2 size so far */
} hcollect_t;

typedef struct event {
    struct event *next;
    reel_codec_ev_type type;
    uint32_t stream;
    uint32_t code, last_stream;
    const char *reason; /* static, or why */
    char *why;          /* owned reason (a refused stream's) */
    bool local;         /* RESET or GOAWAY: reel sent it, the peer had broken the protocol */
    bool goaway;        /* local RESET: reel's answer was GOAWAY with code, not RST_STREAM */
    bool after_goaway;  /* local RESET: a stream opened after reel's GOAWAY, ignored */
    bool over_limit;    /* carries the head of a stream refused for the concurrency limit */
    size_t acct;        /* bytes counted in queued_bytes */
    size_t unsent;      /* RESET by the peer: the stream's submitted DATA not sent */
    reel_buf_t data;
    hcollect_t head; /* HEAD and END (trailers) */
    bool has_head;
    char *host; /* HEAD without :authority: a copy of its Host, split (owned) */
} event_t;

typedef struct stream {
    struct stream *next; /* in its bucket */
    int32_t id;
    reel_buf_t out; /* DATA submitted, not yet read by nghttp2 */
    bool end;       /* no more DATA after out */
    bool deferred;  /* the data source said DEFERRED */
    bool trailers;  /* trailers follow the data */
    hcollect_t tr;  /* ... these (lowercased names), sent when the data ends */
    size_t sent;    /* bytes read out since reel_h2_stream_take_sent */
    hcollect_t in;  /* head being received */
    bool in_trailers;
    bool reset_reported; /* one RESET event per stream, however it was reset */
    bool got_final;      /* the request head, or a final (not 1xx) response head, came */
    bool too_big;
    bool ended;        /* its END event is queued */
    bool end_check;    /* a DATA frame with END_STREAM began: see end_refused */
    bool caller_reset; /* reel_h2_reset: the caller knows */
    /* Server role: a request stream counted in open_requests, or one
     * beyond max_concurrent_streams, refused once its head has come
     * (headless: too many such heads are queued to keep this one's) */
    bool counted, over_limit, headless;
    /* Server role: the request's content-length (-1: none, or a CONNECT);
     * client role: the final response's (-1: none, or to a HEAD, or a 204
     * or 304); and the DATA bytes received, to tell why nghttp2 refuses a
     * body (it resets such a stream without a callback) */
    int64_t clen;
    uint64_t recv;
    size_t padded_len; /* the last DATA frame's length when it was padded, else 0 */
    bool head_req; /* client role: the request is a HEAD */
} stream_t;

#define BUCKETS 64

struct reel_h2 {
    reel_codec_t base;
    reel_h2_role role;
    reel_h2_opts_t o;
    nghttp2_session *s;
    event_t *head, *tail;
    event_t *current; /* handed out by the last feed; freed at the next */
    /* Streams by id: ours, from the moment a request is submitted (nghttp2
     * opens its own only when the HEADERS go out) to its close. */
    stream_t *buckets[BUCKETS];
    size_t queued_bytes, out_bytes;
    bool dead;
    bool goaway_reported; /* a GOAWAY with an error we sent is an event */
    /* RST_STREAM received, in nghttp2's token bucket terms (it tears the
     * connection down with GOAWAY INTERNAL_ERROR when it runs dry; this
     * copy lets that GOAWAY be told apart and reported as rapid reset) */
    double reset_tokens;
    uint64_t reset_last_ms;
    bool rapid_reset;
    const char *fatal; /* why the connection failed: static, or errbuf */
    char errbuf[160];  /* nghttp2's words for it (GOAWAY debug data) */
    char lasterr[256]; /* nghttp2's last error message (error_callback2) */
    bool end_check;    /* a DATA frame with END_STREAM came: see end_refused */
    /* nghttp2's outbound queue when the frame being read began: see
     * on_invalid_frame */
    size_t queued_at_frame;
    int32_t max_peer_stream; /* server: the highest request stream seen */
    /* Server: SETTINGS_MAX_CONCURRENT_STREAMS is reel's to enforce, not
     * nghttp2's (see on_begin_headers): the request streams open, the
     * highest accepted, whether the client acknowledged the limit, the
     * queued events holding a refused head, and whether the limit still
     * has to be put into the SETTINGS frame going out (take_output) */
    uint32_t open_requests;
    int32_t last_accepted;
    bool settings_acked;
    bool peer_settings; /* the peer's own SETTINGS came (not an ACK of reel's) */
    size_t over_limit_heads;
    bool settings_unpatched;
    /* a GOAWAY reel sent, and its last stream id: nghttp2 ignores the
     * HEADERS of every new stream after it, without a callback */
    bool goaway_sent;
    uint32_t goaway_last, goaway_code;
    /* Server: reel's own walk over the frames it feeds nghttp2 (the
     * preface's bytes, then each frame's header and payload), kept in step
     * across reads, so that it can tell the frames nghttp2 dropped unread.
     * Once the session is terminated (a GOAWAY with an error: reel's
     * refuse_over_limit, or nghttp2's own for a connection error, which
     * for some errors calls nothing at all), nghttp2 ignores all it has
     * not yet read and calls nothing for it (its iframe state
     * NGHTTP2_IB_IGN_ALL, nghttp2_session_mem_recv returning the whole
     * length), now and in every later read. walk_skip: bytes of the
     * preface or of a frame's payload still to pass; walk_hd: a frame
     * header as far as it came; walk_type, walk_flags, walk_id: the frame
     * being passed (walk_type 0xff: the preface); walk_block: the stream
     * whose header block is open (no END_HEADERS yet), which only its
     * CONTINUATION frames may continue. hd_begun: HEADERS frames nghttp2
     * began (on_begin_frame), hd_walked: those the walk passed; see
     * walk_headers. block_id: a header block nghttp2 began
     * (on_begin_headers) and has not finished or refused. */
    size_t walk_skip;
    uint8_t walk_hd[9];
    size_t walk_have;
    uint8_t walk_type, walk_flags;
    int32_t walk_id, walk_block;
    uint8_t walk_frames; /* frames walked, up to 2: the first must be SETTINGS */
    uint64_t hd_begun, hd_walked;
    int32_t block_id;
    /* The session is terminated (see walk_skip): term_code and term_last
     * its GOAWAY's, term_why what ended it ("" if unknown). term_before:
     * so, and that GOAWAY sent, before the current read. after_goaway_n:
     * streams reported as opened after reel's GOAWAY (at most
     * max_concurrent_streams). */
    bool terminated, term_before;
    uint32_t term_code, term_last;
    char term_why[200];
    uint32_t after_goaway_n;
};

static const reel_codec_ops_t h2_ops;

static void hc_init(hcollect_t *h) {
    memset(h, 0, sizeof *h);
    reel_buf_init(&h->strs, 0);
}

static void hc_free(hcollect_t *h) {
    reel_buf_free(&h->strs);
    free(h->offs);
    free(h->lens);
    memset(h, 0, sizeof *h);
}

static size_t hc_str(hcollect_t *h, const uint8_t *p, size_t n) {
    size_t off = h->strs.len;
    reel_buf_append(&h->strs, p, n);
    reel_buf_append(&h->strs, "", 1);
    return off;
}

static void hc_add(hcollect_t *h, const uint8_t *name, size_t nlen, const uint8_t *value,
                   size_t vlen) {
    h->size += nlen + vlen + 32;
    if (nlen && name[0] == ':') {
        size_t off = hc_str(h, value, vlen) + 1;
#define PSEUDO(lit, field)                                                                         \
    if (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0) {                                 \
        h->field = off;                                                                            \
        return;                                                                                    \
    }
        PSEUDO(":method", method)
        PSEUDO(":scheme", scheme)
        PSEUDO(":authority", authority)
        PSEUDO(":path", path)
        PSEUDO(":status", status)
        PSEUDO(":protocol", protocol)
#undef PSEUDO
        return; /* nghttp2 refuses unknown pseudo headers before we see them */
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->offs = reel_realloc(h->offs, h->cap * 2 * sizeof *h->offs);
        h->lens = reel_realloc(h->lens, h->cap * 2 * sizeof *h->lens);
    }
    h->offs[2 * h->n] = hc_str(h, name, nlen);
    h->lens[2 * h->n] = nlen;
    h->offs[2 * h->n + 1] = hc_str(h, value, vlen);
    h->lens[2 * h->n + 1] = vlen;
    h->n++;
}

/* ---- events ---- */

static event_t *ev_push(reel_h2_t *h, reel_codec_ev_type type, uint32_t stream) {
    event_t *e = reel_calloc(1, sizeof *e);
    e->type = type;
    e->stream = stream;
    reel_buf_init(&e->data, 0);
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
    return e;
}

/* Counts a complete event in the bytes the codec holds. */
static void ev_done(reel_h2_t *h, event_t *e) {
    e->acct = sizeof *e + e->data.len + e->head.strs.len + e->head.cap * 4 * sizeof(size_t);
    h->queued_bytes += e->acct;
}

static void ev_free(event_t *e) {
    if (e == NULL)
        return;
    free(e->why);
    free(e->host);
    reel_buf_free(&e->data);
    hc_free(&e->head);
    free(e);
}

/* ---- nghttp2 callbacks ---- */

static stream_t *stream_of(const reel_h2_t *h, int32_t id) {
    if (id <= 0)
        return NULL;
    for (stream_t *st = h->buckets[(uint32_t)id % BUCKETS]; st; st = st->next)
        if (st->id == id)
            return st;
    return NULL;
}

static stream_t *stream_new(reel_h2_t *h, int32_t id) {
    stream_t *st = reel_calloc(1, sizeof *st);
    st->id = id;
    st->clen = -1;
    reel_buf_init(&st->out, 0);
    hc_init(&st->in);
    st->next = h->buckets[(uint32_t)id % BUCKETS];
    h->buckets[(uint32_t)id % BUCKETS] = st;
    return st;
}

static void stream_free(reel_h2_t *h, stream_t *st) {
    stream_t **pp = &h->buckets[(uint32_t)st->id % BUCKETS];
    while (*pp && *pp != st)
        pp = &(*pp)->next;
    if (*pp)
        *pp = st->next;
    h->out_bytes -= st->out.len;
    reel_buf_free(&st->out);
    hc_free(&st->in);
    hc_free(&st->tr);
    free(st);
}

/* Submits a stream's trailers: from the data source once its last byte is
 * out (nghttp2 sends HEADERS before DATA that is still queued, so
 * submitting them earlier would end the stream first). */
static void send_trailers(reel_h2_t *h, stream_t *st) {
    hcollect_t *c = &st->tr;
    nghttp2_nv *nv = reel_calloc(c->n ? c->n : 1, sizeof *nv);
    for (size_t i = 0; i < c->n; i++)
        nv[i] = (nghttp2_nv){c->strs.data + c->offs[2 * i], c->strs.data + c->offs[2 * i + 1],
                             c->lens[2 * i], c->lens[2 * i + 1], NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_trailer(h->s, st->id, nv, c->n);
    free(nv);
    st->trailers = false;
}

/* ---- streams reel refuses ---- */

/* The value of field name (lower case) in c, NULL if absent. */
static const char *hc_find(const hcollect_t *c, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < c->n; i++)
        if (c->lens[2 * i] == n && memcmp(c->strs.data + c->offs[2 * i], name, n) == 0)
            return (const char *)c->strs.data + c->offs[2 * i + 1];
    return NULL;
}

/* Appends n bytes of p to b, quoted, what is not printable escaped (a
 * refused field may hold CR, LF or NUL), at most 80 of them. */
static void put_quoted(reel_buf_t *b, const char *p, size_t n) {
    reel_buf_put_quoted(b, p, n, 80);
}

/* Why a field was refused (NGHTTP2_ERR_HTTP_HEADER), the rule it broke
 * judged from its name (RFC 9113 8.2, 8.3). */
static const char *field_rule(const char *name, size_t n) {
    static const char *const conn[] = {"connection", "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade"};
    if (n == 0)
        return "an empty field name";
    if (name[0] == ':')
        return "a pseudo-header field that is unknown, repeated, empty, after a regular field "
               "or not for this message (RFC 9113 8.3)";
    for (size_t i = 0; i < n; i++)
        if (name[i] >= 'A' && name[i] <= 'Z')
            return "an upper-case field name (RFC 9113 8.2.1)";
    for (size_t i = 0; i < sizeof conn / sizeof *conn; i++)
        if (n == strlen(conn[i]) && memcmp(name, conn[i], n) == 0)
            return "a connection-specific field (RFC 9113 8.2.2)";
    if (n == 2 && memcmp(name, "te", 2) == 0)
        return "te other than \"trailers\" (RFC 9113 8.2.2)";
    if (n == 14 && memcmp(name, "content-length", 14) == 0)
        return "a content-length that is not a number or is repeated (RFC 9113 8.1.1)";
    if (n == 4 && memcmp(name, "host", 4) == 0)
        return "a repeated host field";
    return "characters a field name or value may not hold (RFC 9113 8.2.1)";
}

/* The reason for a refused field from nghttp2's message, which names it
 * as "name: [...], value: [...]" (its own words if it no longer does). */
static char *field_refused(const reel_h2_t *h, const char *what) {
    const char *m = h->lasterr;
    const char *n0 = strstr(m, "name: [");
    const char *n1 = n0 ? strstr(n0, "], value: [") : NULL;
    size_t mlen = strlen(m);
    if (n1 == NULL || mlen < 2 || m[mlen - 1] != ']')
        return reel_asprintf("malformed HTTP/2 %s: %s", what, m[0] ? m : "invalid header field");
    n0 += 7;
    const char *v0 = n1 + 11;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_printf(&b, "malformed HTTP/2 %s: %s: ", what, field_rule(n0, (size_t)(n1 - n0)));
    put_quoted(&b, n0, (size_t)(n1 - n0));
    reel_buf_puts(&b, ": ");
    put_quoted(&b, v0, (size_t)(m + mlen - 1 - v0));
    return (char *)b.data; /* malloc'd, NUL-terminated */
}

/* Why nghttp2 refused a whole request head (NGHTTP2_ERR_HTTP_MESSAGING:
 * RFC 9113 8.3.1, 8.5 and 8.1.1; RFC 8441 4), from what was collected;
 * NULL when none of these applies. */
static const char *head_rule(const hcollect_t *c, bool end_stream) {
#define HAS(off) ((off) != 0)
    if (!HAS(c->method))
        return "the request has no :method (RFC 9113 8.3.1)";
    const char *method = (const char *)c->strs.data + c->method - 1;
    bool connect = strcmp(method, "CONNECT") == 0;
    if (connect && !HAS(c->protocol)) {
        if (HAS(c->scheme) || HAS(c->path))
            return "a CONNECT request with :scheme or :path (RFC 9113 8.5)";
        if (!HAS(c->authority))
            return "a CONNECT request without :authority (RFC 9113 8.5)";
        return NULL;
    }
    if (!HAS(c->scheme))
        return "the request has no :scheme (RFC 9113 8.3.1)";
    if (!HAS(c->path))
        return "the request has no :path (RFC 9113 8.3.1)";
    if (!HAS(c->authority) && hc_find(c, "host") == NULL)
        return "the request has neither :authority nor host (RFC 9113 8.3.1)";
    if (HAS(c->protocol) && !connect)
        return ":protocol on a request that is not a CONNECT (RFC 8441 4)";
    if (HAS(c->protocol) && !HAS(c->authority))
        return "an extended CONNECT without :authority (RFC 8441 4)";
    const char *path = (const char *)c->strs.data + c->path - 1;
    if (path[0] != '/' && !(strcmp(path, "*") == 0 && strcmp(method, "OPTIONS") == 0))
        return "a :path that is neither absolute nor \"*\" for OPTIONS (RFC 9113 8.3.1)";
    const char *cl = hc_find(c, "content-length");
    if (end_stream && cl && strtoull(cl, NULL, 10) > 0)
        return "the request ended with its head but its content-length announces a body "
               "(RFC 9113 8.1.1)";
    return NULL;
#undef HAS
}

/* Why nghttp2 refused a response head, or either side's trailers
 * (NGHTTP2_ERR_HTTP_MESSAGING: RFC 9113 8.1 and 8.3.2), from what was
 * collected; NULL when none of these applies. in_trailers: the block came
 * after the final head. */
static const char *other_rule(const hcollect_t *c, reel_h2_role role, bool in_trailers,
                              bool end_stream) {
    if (in_trailers)
        return end_stream ? NULL : "trailers without END_STREAM (RFC 9113 8.1)";
    if (role == REEL_H2_SERVER)
        return NULL; /* a request head: head_rule's */
    if (c->status == 0)
        return "the response has no :status (RFC 9113 8.3.2)";
    const char *status = (const char *)c->strs.data + c->status - 1;
    if (status[0] == '1' && end_stream)
        return "an interim (1xx) response with END_STREAM: no final response can follow "
               "(RFC 9113 8.1)";
    return NULL;
}

/* The HTTP/2 error code nghttp2 resets a stream with for lib_error. */
static uint32_t code_of(int lib_error) {
    switch (lib_error) {
    case NGHTTP2_ERR_STREAM_CLOSED:
        return NGHTTP2_STREAM_CLOSED;
    case NGHTTP2_ERR_HEADER_COMP:
        return NGHTTP2_COMPRESSION_ERROR;
    case NGHTTP2_ERR_FRAME_SIZE_ERROR:
        return NGHTTP2_FRAME_SIZE_ERROR;
    case NGHTTP2_ERR_FLOW_CONTROL:
        return NGHTTP2_FLOW_CONTROL_ERROR;
    case NGHTTP2_ERR_REFUSED_STREAM:
        return NGHTTP2_REFUSED_STREAM;
    case NGHTTP2_ERR_PROTO:
    case NGHTTP2_ERR_HTTP_HEADER:
    case NGHTTP2_ERR_HTTP_MESSAGING:
        return NGHTTP2_PROTOCOL_ERROR;
    default:
        return NGHTTP2_INTERNAL_ERROR;
    }
}

/* Reports a stream reel resets (nghttp2 sends the RST_STREAM) because its
 * peer broke the protocol: a RESET event, local, with code and why
 * (taken). with_head: in the server role, a request head that was being
 * read and will never be reported goes with it, for the caller's record.
 * Returns the event (queued). */
static event_t *refuse(reel_h2_t *h, stream_t *st, uint32_t code, char *why, bool with_head) {
    st->reset_reported = true;
    if (h->block_id == st->id)
        h->block_id = 0; /* its block is accounted for: see walk_frame_end */
    event_t *e = ev_push(h, REEL_CODEC_EV_RESET, (uint32_t)st->id);
    e->code = code;
    e->local = true;
    e->why = why;
    e->reason = why;
    e->unsent = st->out.len;
    if (with_head && h->role == REEL_H2_SERVER && !st->got_final && !st->in_trailers) {
        e->head = st->in;
        e->has_head = true;
        hc_init(&st->in);
    }
    ev_done(h, e);
    return e;
}

/* The session is terminated: nghttp2 reads nothing more (see walk_skip).
 * The first cause known wins: code and last stream of its GOAWAY, why
 * (NULL with code 0: not known yet) what ended it. */
static void term(reel_h2_t *h, uint32_t code, uint32_t last, const char *why) {
    if (h->terminated && (h->term_code || h->term_why[0]))
        return;
    h->terminated = true;
    h->term_code = code;
    h->term_last = last;
    snprintf(h->term_why, sizeof h->term_why, "%s", why ? why : "");
}

/* A header block nghttp2 began and neither finished nor refused
 * (block_id) when the session ended: if it was a request's head, that
 * stream is reported refused with the session's GOAWAY, with the fields
 * that had decoded and why (static). */
static void refuse_open_block(reel_h2_t *h, const char *why) {
    stream_t *st = h->block_id ? stream_of(h, h->block_id) : NULL;
    h->block_id = 0;
    if (st == NULL || st->reset_reported || st->got_final || st->in_trailers || st->headless)
        return;
    refuse(h, st, h->term_code ? h->term_code : REEL_H2_PROTOCOL_ERROR,
           reel_asprintf("%s; the request is as far as its header block had decoded", why), true)
        ->goaway = true;
}

/* A request stream beyond max_concurrent_streams whose head has come
 * (see on_begin_headers): reported as refused with that head, and refused
 * as nghttp2 would have. While the client has not acknowledged reel's
 * SETTINGS it could not know the limit: RST_STREAM REFUSED_STREAM, which
 * tells it to send the request again. Once it has, the limit is broken on
 * purpose: GOAWAY PROTOCOL_ERROR (RFC 9113 5.1.2 allows a stream error,
 * but a client that ignores the limit would keep reel refusing, and
 * recording, stream after stream). */
static void refuse_over_limit(reel_h2_t *h, stream_t *st) {
    const char *kept = st->headless ? "; reel did not keep its head (too many refused streams at "
                                      "once)"
                                    : "";
    if (!h->settings_acked) {
        refuse(h, st, REEL_H2_REFUSED_STREAM,
               reel_asprintf("refused: the client opened more than %u concurrent streams "
                             "(SETTINGS_MAX_CONCURRENT_STREAMS) before it had acknowledged the "
                             "limit%s (the client may send it again)",
                             h->o.max_concurrent_streams, kept),
               true)
            ->over_limit = !st->headless;
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
    } else {
        event_t *e = refuse(h, st, REEL_H2_PROTOCOL_ERROR,
                            reel_asprintf("refused: the client opened more than %u concurrent "
                                          "streams (SETTINGS_MAX_CONCURRENT_STREAMS)%s",
                                          h->o.max_concurrent_streams, kept),
                            true);
        e->goaway = true;
        e->over_limit = !st->headless;
        if (h->fatal == NULL) /* the words nghttp2 used when it enforced the limit */
            h->fatal = "HTTP/2 protocol error (request HEADERS: max concurrent streams "
                       "exceeded), GOAWAY sent";
        nghttp2_session_terminate_session2(h->s, h->last_accepted, NGHTTP2_PROTOCOL_ERROR);
        term(h, REEL_H2_PROTOCOL_ERROR, (uint32_t)h->last_accepted,
             "the client opened more streams than SETTINGS_MAX_CONCURRENT_STREAMS allows");
    }
    if (!st->headless)
        h->over_limit_heads++;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
    reel_h2_t *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    (void)s;
    stream_t *st = stream_of(h, f->hd.stream_id);
    if (st == NULL)
        st = stream_new(h, f->hd.stream_id);
    if (h->role == REEL_H2_SERVER && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
        f->hd.stream_id > h->max_peer_stream) {
        h->max_peer_stream = f->hd.stream_id;
        /* SETTINGS_MAX_CONCURRENT_STREAMS, enforced here rather than by
         * nghttp2 (which is never told the limit: reel_h2_take_output puts
         * it in the SETTINGS frame): nghttp2 refuses a stream over its
         * limit before it hands over any of the head, and the flow of such
         * a stream had no method or URL. This one is refused once its head
         * has come (on_frame_recv), so that the record has it. */
        if (h->open_requests >= h->o.max_concurrent_streams) {
            st->over_limit = true;
            /* each refused head waits in an event until the caller takes
             * it; a client sending stream after stream in one read must not
             * make reel hold them all (64 KiB each, and HPACK amplifies) */
            st->headless = h->over_limit_heads >= h->o.max_concurrent_streams;
        } else {
            st->counted = true;
            h->open_requests++;
            h->last_accepted = f->hd.stream_id;
        }
    }
    h->block_id = f->hd.stream_id; /* see walk_frame_end */
    hc_free(&st->in);
    hc_init(&st->in);
    /* after a 1xx nghttp2 files the final response under HCAT_HEADERS
     * too: trailers are HEADERS after the final head */
    st->in_trailers = st->got_final;
    st->too_big = false;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
    reel_h2_t *h = ud;
    (void)s;
    (void)flags;
    stream_t *st = stream_of(h, f->hd.stream_id);
    if (st == NULL || st->too_big || st->reset_reported || st->headless)
        return 0;
    if (st->in.size + nlen + vlen + 32 > h->o.max_header_list) {
        st->too_big = true;
        /* INTERNAL_ERROR: what nghttp2 resets it with */
        refuse(h, st, REEL_H2_INTERNAL_ERROR,
               reel_asprintf("the header list is over max_header_list (%u bytes), stream reset",
                             h->o.max_header_list),
               true);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    }
    hc_add(&st->in, name, nlen, value, vlen);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud) {
    reel_h2_t *h = ud;
    (void)s;
    (void)flags;
    stream_t *st = stream_of(h, id);
    if (st == NULL)
        return 0;
    st->recv += len;
    st->padded_len = 0; /* (its bytes came: not refused) */
    event_t *e = ev_push(h, REEL_CODEC_EV_DATA, (uint32_t)id);
    reel_buf_append(&e->data, data, len);
    ev_done(h, e);
    return 0;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void reset_seen(reel_h2_t *h) {
    uint64_t now = now_ms();
    double rate = h->o.max_resets_per_sec;
    h->reset_tokens += (double)(now - h->reset_last_ms) * rate / 1000.0;
    if (h->reset_tokens > rate)
        h->reset_tokens = rate;
    h->reset_last_ms = now;
    if (h->reset_tokens >= 1)
        h->reset_tokens -= 1;
    else
        h->rapid_reset = true;
}

/* A request head that is an extended CONNECT for a WebSocket (RFC 8441 4)
 * with END_STREAM on its HEADERS. Its stream carries the WebSocket's
 * frames both ways (RFC 8441 5) and the client has closed its side before
 * the first: it opens nothing, and taken as it came it was a WebSocket
 * opened to the origin and never ended, on either side. nghttp2 lets it
 * through (it checks a CONNECT's pseudo headers, not its END_STREAM). */
static bool ws_ended_at_once(const reel_h2_t *h, const stream_t *st, const nghttp2_frame *f) {
    const hcollect_t *c = &st->in;
    if (h->role != REEL_H2_SERVER || st->in_trailers || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        !c->method || !c->protocol)
        return false;
    return strcmp((const char *)c->strs.data + c->method - 1, "CONNECT") == 0 &&
           strcmp((const char *)c->strs.data + c->protocol - 1, "websocket") == 0;
}

/* Whether authorities a and b name the same server: equal but for case
 * and a port that is the scheme's default ("a.test" is "a.test:443" in
 * https). */
static bool same_authority(const char *a, const char *b, const char *scheme) {
    const char *def = strcmp(scheme, "http") == 0 ? ":80" : ":443";
    size_t la = strlen(a), lb = strlen(b), ld = strlen(def);
    if (la > ld && strcmp(a + la - ld, def) == 0)
        la -= ld;
    if (lb > ld && strcmp(b + lb - ld, def) == 0)
        lb -= ld;
    return la == lb && strncasecmp(a, b, la) == 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
    reel_h2_t *h = ud;
    (void)s;
    int32_t id = f->hd.stream_id;
    stream_t *st = stream_of(h, id);
    switch (f->hd.type) {
    case NGHTTP2_HEADERS: {
        if (h->block_id == id)
            h->block_id = 0; /* it decoded: see walk_frame_end */
        if (st == NULL || st->too_big || st->reset_reported)
            return 0;
        if (st->over_limit) {
            refuse_over_limit(h, st);
            return 0;
        }
        if (ws_ended_at_once(h, st, f)) {
            /* RFC 9113 8.1.1: a malformed request is a stream error
             * PROTOCOL_ERROR; a 400 instead would end the stream without
             * it (the client has closed its side), so no answer goes first */
            refuse(h, st, REEL_H2_PROTOCOL_ERROR,
                   reel_asprintf("malformed HTTP/2 request: an extended CONNECT for a WebSocket "
                                 "with END_STREAM on its HEADERS: the client could never send a "
                                 "frame (RFC 8441 5)"),
                   true);
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
            return 0;
        }
        const char *host = h->role == REEL_H2_SERVER && !st->in_trailers && st->in.authority
                               ? hc_find(&st->in, "host")
                               : NULL;
        const char *auth = host ? (const char *)st->in.strs.data + st->in.authority - 1 : NULL;
        if (host && !same_authority(
                        host, auth,
                        st->in.scheme ? (const char *)st->in.strs.data + st->in.scheme - 1 : "")) {
            /* RFC 9113 8.3.1: a request whose Host names another server
             * than its :authority is malformed (reel forwarded :authority,
             * and the record showed a Host that had not gone anywhere) */
            reel_buf_t why;
            reel_buf_init(&why, 0);
            reel_buf_puts(&why, "malformed HTTP/2 request: its host field ");
            put_quoted(&why, host, strlen(host));
            reel_buf_puts(&why, " names another server than its :authority ");
            put_quoted(&why, auth, strlen(auth));
            reel_buf_puts(&why, " (RFC 9113 8.3.1)");
            refuse(h, st, REEL_H2_PROTOCOL_ERROR, (char *)why.data, true);
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
            return 0;
        }
        event_t *e =
            ev_push(h, st->in_trailers ? REEL_CODEC_EV_END : REEL_CODEC_EV_HEAD, (uint32_t)id);
        e->head = st->in;
        e->has_head = true;
        if (!st->in_trailers) {
            const char *status =
                e->head.status ? (const char *)e->head.strs.data + e->head.status - 1 : NULL;
            st->got_final = status == NULL || status[0] != '1';
            const char *method =
                e->head.method ? (const char *)e->head.strs.data + e->head.method - 1 : "";
            const char *cl = hc_find(&e->head, "content-length");
            /* nghttp2 checked it is a number; a CONNECT's has no say */
            if (h->role == REEL_H2_SERVER && cl &&
                !(strcmp(method, "CONNECT") == 0 && !e->head.protocol))
                st->clen = (int64_t)strtoll(cl, NULL, 10);
            else if (h->role == REEL_H2_CLIENT && cl && status && st->got_final && !st->head_req &&
                     strcmp(status, "204") != 0 && strcmp(status, "304") != 0)
                st->clen = (int64_t)strtoll(cl, NULL, 10);
        }
        hc_init(&st->in);
        ev_done(h, e);
        if (st->in_trailers || (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            st->ended = true;
        if (!st->in_trailers && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            ev_done(h, ev_push(h, REEL_CODEC_EV_END, (uint32_t)id));
        break;
    }
    case NGHTTP2_DATA:
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            st->ended = true;
            ev_done(h, ev_push(h, REEL_CODEC_EV_END, (uint32_t)id));
        }
        break;
    case NGHTTP2_SETTINGS:
        /* reel sends one SETTINGS frame: this acknowledges its limit */
        if (f->hd.flags & NGHTTP2_FLAG_ACK)
            h->settings_acked = true;
        else
            h->peer_settings = true;
        break;
    case NGHTTP2_GOAWAY: {
        event_t *e = ev_push(h, REEL_CODEC_EV_GOAWAY, 0);
        e->code = f->goaway.error_code;
        e->last_stream = (uint32_t)f->goaway.last_stream_id;
        e->reason = "the peer sent GOAWAY";
        ev_done(h, e);
        break;
    }
    case NGHTTP2_RST_STREAM:
        reset_seen(h);
        if (st && !st->reset_reported) {
            st->reset_reported = true;
            event_t *e = ev_push(h, REEL_CODEC_EV_RESET, (uint32_t)id);
            e->code = f->rst_stream.error_code;
            e->reason = "the peer reset the stream (RST_STREAM)";
            e->unsent = st->out.len; /* dropped with the stream: the caller may say so */
            ev_done(h, e);
        }
        break;
    default:
        break;
    }
    return 0;
}

/* The frame type's name, as RFC 9113 6 spells it. */
static const char *frame_name(uint8_t type) {
    static const char *const names[] = {"DATA",          "HEADERS",      "PRIORITY", "RST_STREAM",
                                        "SETTINGS",      "PUSH_PROMISE", "PING",     "GOAWAY",
                                        "WINDOW_UPDATE", "CONTINUATION"};
    return type < sizeof names / sizeof *names ? names[type] : "extension";
}

/* Why nghttp2 refused frame f with a connection error (owned): the cases
 * reel can tell, else the frame's type and nghttp2's word for it. */
static char *conn_refusal(const nghttp2_frame *f, int lib_error) {
    if (f->hd.type == NGHTTP2_WINDOW_UPDATE && f->window_update.window_size_increment == 0)
        return reel_asprintf("a WINDOW_UPDATE with an increment of 0 (RFC 9113 6.9)");
    return reel_asprintf("a %s frame that broke HTTP/2 (%s)", frame_name(f->hd.type),
                         nghttp2_strerror(lib_error));
}

/* A request stream nghttp2 refused at its HEADERS, before it opened it:
 * no callback had the head (nghttp2 decodes the block, for HPACK's sake,
 * but hands none of it over), so the event has an empty head (version
 * set) and says why. conn: the refusal was a GOAWAY. (Streams beyond the
 * concurrency limit are no longer among them: on_begin_headers.) */
static void refuse_unopened(reel_h2_t *h, const nghttp2_frame *f, int lib_error, bool conn) {
    int32_t id = f->hd.stream_id;
    h->max_peer_stream = id;
    char *why;
    if (f->headers.pri_spec.stream_id == id)
        why = reel_asprintf("malformed HTTP/2 request: its HEADERS make the stream depend on "
                            "itself (RFC 9113 5.3.1); reel did not read its head");
    else
        why = reel_asprintf("malformed HTTP/2 request: nghttp2 refused its HEADERS (%s); reel "
                            "did not read its head",
                            nghttp2_strerror(lib_error));
    stream_t *st = stream_new(h, id); /* for refuse() only: nghttp2 has no such stream */
    event_t *e = refuse(h, st, code_of(lib_error), why, true);
    e->goaway = conn;
    stream_free(h, st);
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud) {
    reel_h2_t *h = ud;
    /* A stream error or the connection's? nghttp2 queues a stream
     * error's RST_STREAM before it calls this, a connection error's
     * GOAWAY after (session_handle_invalid_stream2, _connection): nothing
     * queued since the frame began means GOAWAY. RFC 9113 makes some
     * stream errors (a WINDOW_UPDATE of 0 on a stream) that nghttp2 takes
     * for the connection's, and the record must say which went out. */
    bool conn = nghttp2_session_get_outbound_queue_size(s) <= h->queued_at_frame;
    int32_t id = f->hd.stream_id;
    stream_t *st = stream_of(h, id);
    if (f->hd.type == NGHTTP2_HEADERS && h->block_id == id)
        h->block_id = 0; /* refused, not lost: see walk_frame_end */
    if (conn) {          /* nghttp2 terminates the session next: see walk */
        char *why = conn_refusal(f, lib_error);
        term(h, code_of(lib_error), (uint32_t)nghttp2_session_get_last_proc_stream_id(s), why);
        free(why);
    }
    if (st == NULL) {
        if (h->role == REEL_H2_SERVER && f->hd.type == NGHTTP2_HEADERS &&
            f->headers.cat == NGHTTP2_HCAT_REQUEST && (id & 1) && id > h->max_peer_stream)
            refuse_unopened(h, f, lib_error, conn);
        return 0;
    }
    if (st->reset_reported)
        return 0;
    bool headers = f->hd.type == NGHTTP2_HEADERS;
    const char *what = h->role == REEL_H2_SERVER ? "request" : "response";
    const char *rule = NULL;
    char *why;
    if (conn) {
        why = conn_refusal(f, lib_error);
    } else if (lib_error == NGHTTP2_ERR_HTTP_HEADER) {
        why = field_refused(h, what);
        h->lasterr[0] = '\0';
    } else if (lib_error == NGHTTP2_ERR_HTTP_MESSAGING && headers && h->role == REEL_H2_SERVER &&
               !st->got_final &&
               (rule = head_rule(&st->in, (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0))) {
        why = reel_asprintf("malformed HTTP/2 request: %s", rule);
    } else if (lib_error == NGHTTP2_ERR_HTTP_MESSAGING && headers &&
               (rule = other_rule(&st->in, h->role, st->in_trailers,
                                  (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0))) {
        why = reel_asprintf("malformed HTTP/2 %s: %s", what, rule);
    } else {
        why = reel_asprintf("malformed HTTP/2 %s: %s", what, nghttp2_strerror(lib_error));
    }
    refuse(h, st, code_of(lib_error), why, headers)->goaway = conn;
    return 0;
}

/* A new stream's HEADERS after reel sent GOAWAY: nghttp2 ignores them
 * (RFC 9113 6.8) and calls nothing for them but on_begin_frame (its
 * nghttp2_session_on_request_headers_received returns
 * NGHTTP2_ERR_IGN_HEADER_BLOCK before on_begin_headers, and the block is
 * decoded, for HPACK's sake, without on_header); once the GOAWAY
 * terminated the session, not even that (see walk_skip). The client sent
 * a request reel never answered: reported as a stream reel refused, as
 * far as it is known, its id (the head is not). why: taken. At most
 * max_concurrent_streams of them per connection: a client sending HEADERS
 * frames of 9 bytes after the GOAWAY must not make reel record a flow for
 * each. */
static void refuse_after_goaway(reel_h2_t *h, int32_t id, uint32_t last, char *why) {
    h->max_peer_stream = id;
    if (h->after_goaway_n >= h->o.max_concurrent_streams) {
        free(why);
        return;
    }
    h->after_goaway_n++;
    stream_t *st = stream_new(h, id); /* for refuse() only: nghttp2 has no such stream */
    event_t *e = refuse(h, st, REEL_H2_REFUSED_STREAM, why, true);
    e->after_goaway = true;
    e->last_stream = last;
    stream_free(h, st);
}

/* The GOAWAY that terminated the session, for a reason: "reel's GOAWAY
 * was PROTOCOL_ERROR (0x1): why" (owned by b). */
static void put_term(const reel_h2_t *h, reel_buf_t *b) {
    if (h->term_code == 0 && h->term_why[0] == '\0') {
        reel_buf_puts(b, "reel's GOAWAY ended the connection for an earlier frame");
        return;
    }
    reel_buf_printf(b, "reel's GOAWAY was %s (0x%x)", reel_h2_error_name(h->term_code),
                    h->term_code);
    if (h->term_why[0])
        reel_buf_printf(b, ": %s", h->term_why);
}

/* Why nghttp2 refuses the frame whose header the walk has just read
 * before any callback (nghttp2_session_mem_recv's checks at
 * NGHTTP2_IB_READ_FIRST_SETTINGS, _READ_HEAD and _EXPECT_CONTINUATION,
 * which terminate the session), with its GOAWAY's code; NULL if it does
 * not. Only the checks that leave a HEADERS frame unbegun: see
 * walk_headers. */
static const char *frame_refusal(const reel_h2_t *h, size_t len, uint32_t *code) {
    uint8_t t = h->walk_type, fl = h->walk_flags;
    *code = REEL_H2_PROTOCOL_ERROR;
    if (h->walk_block)
        return t == NGHTTP2_CONTINUATION && h->walk_id == h->walk_block
                   ? NULL
                   : "it came inside another stream's header block, which only that stream's "
                     "CONTINUATION frames may continue (RFC 9113 6.10)";
    if (h->walk_frames == 1)
        return "it came before the client's SETTINGS, which must be its first frame (RFC 9113 "
               "3.4)";
    if (t != NGHTTP2_HEADERS)
        return NULL;
    /* reel leaves SETTINGS_MAX_FRAME_SIZE at its initial 16384 */
    if (len > 16384) {
        *code = NGHTTP2_FRAME_SIZE_ERROR;
        return "its HEADERS frame is longer than SETTINGS_MAX_FRAME_SIZE (16384 bytes)";
    }
    if ((fl & NGHTTP2_FLAG_PADDED) && len < 1)
        return "its HEADERS frame has the PADDED flag and no room for the pad length";
    if (!(fl & NGHTTP2_FLAG_PADDED) && (fl & NGHTTP2_FLAG_PRIORITY) && len < 5) {
        *code = NGHTTP2_FRAME_SIZE_ERROR;
        return "its HEADERS frame has the PRIORITY flag and no room for the priority";
    }
    return NULL;
}

/* A HEADERS frame header the walk has just read, len bytes of payload.
 * nghttp2 calls on_begin_frame for every HEADERS frame it reads (before
 * session_process_headers_frame) except one it refuses at its header
 * (frame_refusal) and every one after the session was terminated; and
 * the walk reads the same headers nghttp2 read, in the same order, after
 * it. So once the walk has read more HEADERS frames than nghttp2 began,
 * this one and all after it went unread: a frame nghttp2 refused, or a
 * stream opened after reel's GOAWAY. A new stream's HEADERS that nghttp2
 * did read raised max_peer_stream (on_begin_headers, refuse_unopened,
 * refuse_after_goaway), and stream ids only grow, so the ids above it are
 * exactly the streams nothing reported. */
static void walk_headers(reel_h2_t *h, size_t len) {
    int32_t id = h->walk_id;
    if (++h->hd_walked <= h->hd_begun)
        return;
    bool fresh = (id & 1) && id > h->max_peer_stream;
    uint32_t code;
    const char *refusal = h->terminated ? NULL : frame_refusal(h, len, &code);
    if (refusal) {
        /* this frame ended the session */
        uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(h->s);
        term(h, code, last, refusal);
        if (h->walk_block)
            refuse_open_block(h, "its header block was cut short by another frame (RFC 9113 6.10)");
        if (!fresh)
            return;
        h->max_peer_stream = id;
        stream_t *st = stream_new(h, id); /* for refuse() only: nghttp2 has no such stream */
        refuse(h, st, code, reel_asprintf("%s; nghttp2 read none of its head", refusal), true)
            ->goaway = true;
        stream_free(h, st);
        return;
    }
    if (!h->terminated) { /* by a frame whose end nghttp2 told nothing of */
        term(h, 0, (uint32_t)nghttp2_session_get_last_proc_stream_id(h->s), NULL);
        refuse_open_block(h, "reel ended the connection while its header block was being read");
    }
    if (!fresh)
        return;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    put_term(h, &b);
    reel_buf_puts(&b, h->term_before
                          ? "; the stream came after reel had sent that GOAWAY (reel reads on for "
                            "a while only to record such streams): nghttp2 reads nothing after a "
                            "GOAWAY with an error, so none of its head was decoded"
                          : "; the stream came after the frame that made reel send that GOAWAY, "
                            "and nghttp2 reads nothing after that frame: none of its head was "
                            "decoded");
    reel_buf_append(&b, "", 1);
    refuse_after_goaway(h, id, h->term_last, (char *)b.data); /* takes the malloc'd bytes */
}

/* The walk has passed the whole payload of the frame it read last. A
 * header block nghttp2 began, whose last frame it has now read, and that
 * it neither finished (on_frame_recv) nor refused (on_invalid_frame,
 * refuse): it failed to decode, nghttp2 sent GOAWAY COMPRESSION_ERROR
 * and reads nothing more (inflate_header_block calls nothing). */
static void walk_frame_end(reel_h2_t *h) {
    if ((h->walk_type != NGHTTP2_HEADERS && h->walk_type != NGHTTP2_CONTINUATION) ||
        !(h->walk_flags & NGHTTP2_FLAG_END_HEADERS) || h->block_id != h->walk_id || h->terminated)
        return;
    term(h, NGHTTP2_COMPRESSION_ERROR, (uint32_t)nghttp2_session_get_last_proc_stream_id(h->s),
         "a header block did not decode (HPACK)");
    refuse_open_block(h, "its header block did not decode (HPACK)");
}

/* A frame other than a HEADERS inside a header block (the walk's
 * walk_block): nghttp2 ends the session there, calling nothing. */
static void walk_cut(reel_h2_t *h) {
    h->walk_block = 0;
    if (h->terminated)
        return;
    term(h, REEL_H2_PROTOCOL_ERROR, (uint32_t)nghttp2_session_get_last_proc_stream_id(h->s),
         "a frame came inside a header block, which only its stream's CONTINUATION frames may "
         "continue (RFC 9113 6.10)");
    refuse_open_block(h, "its header block was cut short by another frame (RFC 9113 6.10)");
}

/* Server: the bytes nghttp2 took in one nghttp2_session_mem_recv, walked
 * frame by frame (see walk_skip): after it, so that what nghttp2 read of
 * them has been reported. Every read is walked, those after the session
 * ended too: the client may open streams in them, and they are on the
 * record as streams reel refused (the caller reads on for a while after
 * a GOAWAY with an error, for them). */
static void walk(reel_h2_t *h, const uint8_t *p, size_t len) {
    while (len) {
        if (h->walk_skip) {
            size_t k = len < h->walk_skip ? len : h->walk_skip;
            h->walk_skip -= k;
            p += k;
            len -= k;
            if (h->walk_skip == 0)
                walk_frame_end(h);
            continue;
        }
        size_t k = sizeof h->walk_hd - h->walk_have;
        if (k > len)
            k = len;
        memcpy(h->walk_hd + h->walk_have, p, k);
        h->walk_have += k;
        p += k;
        len -= k;
        if (h->walk_have < sizeof h->walk_hd)
            break;
        h->walk_have = 0;
        const uint8_t *hd = h->walk_hd;
        size_t n = (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
        h->walk_type = hd[3];
        h->walk_flags = hd[4];
        h->walk_id = (int32_t)(((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 |
                                (uint32_t)hd[7] << 8 | hd[8]) &
                               0x7fffffff);
        if (h->walk_frames < 2)
            h->walk_frames++;
        if (h->walk_type == NGHTTP2_HEADERS)
            walk_headers(h, n);
        if (h->walk_type == NGHTTP2_HEADERS || h->walk_type == NGHTTP2_PUSH_PROMISE ||
            h->walk_type == NGHTTP2_CONTINUATION)
            h->walk_block = h->walk_flags & NGHTTP2_FLAG_END_HEADERS ? 0 : h->walk_id;
        else if (h->walk_block)
            walk_cut(h);
        h->walk_skip = n;
        if (n == 0)
            walk_frame_end(h);
    }
}

/* Every frame: what nghttp2 has queued to send, for on_invalid_frame.
 * nghttp2 refuses a body that contradicts the request's content-length
 * (RFC 9113 8.1.1) with RST_STREAM and no callback: a DATA frame that
 * would make it longer is told here, before its bytes (a padded frame's
 * data length is not known yet: see end_refused). */
static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud) {
    reel_h2_t *h = ud;
    h->queued_at_frame = nghttp2_session_get_outbound_queue_size(s);
    if (hd->type == NGHTTP2_HEADERS && h->role == REEL_H2_SERVER)
        h->hd_begun++; /* see walk_headers */
    if (hd->type == NGHTTP2_HEADERS && h->role == REEL_H2_SERVER && h->goaway_sent &&
        (hd->stream_id & 1) && hd->stream_id > h->max_peer_stream) {
        refuse_after_goaway(h, hd->stream_id, h->goaway_last,
                            reel_asprintf("reel's GOAWAY was %s (0x%x); nghttp2 ignores such a "
                                          "stream's HEADERS and hands over none of its head",
                                          reel_h2_error_name(h->goaway_code), h->goaway_code));
        return 0;
    }
    if (hd->type != NGHTTP2_DATA)
        return 0;
    stream_t *st = stream_of(h, hd->stream_id);
    if (st && !st->reset_reported && !st->caller_reset && h->role == REEL_H2_CLIENT &&
        !st->got_final && (hd->length > 0 || (hd->flags & NGHTTP2_FLAG_END_STREAM))) {
        /* refused the same way, with no callback (RFC 9113 8.1; an empty
         * frame without END_STREAM passes) */
        refuse(h, st, REEL_H2_PROTOCOL_ERROR,
               reel_asprintf("malformed HTTP/2 response: DATA before its final head "
                             "(RFC 9113 8.1)"),
               false);
        return 0;
    }
    if (st == NULL || st->reset_reported || st->clen < 0)
        return 0;
    if (h->role == REEL_H2_SERVER && (hd->flags & NGHTTP2_FLAG_END_STREAM))
        h->end_check = st->end_check = true;
    /* a padded frame's data length is known only once its bytes come: its
     * length, padding included, says the most it can add */
    st->padded_len = hd->flags & NGHTTP2_FLAG_PADDED ? hd->length : 0;
    if (!(hd->flags & NGHTTP2_FLAG_PADDED) && st->recv + hd->length > (uint64_t)st->clen)
        refuse(h, st, REEL_H2_PROTOCOL_ERROR,
               reel_asprintf("the %s body is longer than its content-length (%lld bytes; "
                             "%llu and then a DATA frame of %zu)",
                             h->role == REEL_H2_SERVER ? "request" : "response",
                             (long long)st->clen, (unsigned long long)st->recv, hd->length),
               false);
    return 0;
}

/* After input: a stream whose END_STREAM nghttp2 refused (the body short
 * of its content-length) is closed for reading with no END reported. */
static void end_refused(reel_h2_t *h) {
    if (!h->end_check)
        return;
    h->end_check = false;
    for (int i = 0; i < BUCKETS; i++)
        for (stream_t *st = h->buckets[i]; st; st = st->next) {
            if (!st->end_check)
                continue;
            if (st->ended || st->reset_reported || st->caller_reset) {
                st->end_check = false;
                continue;
            }
            if (nghttp2_session_get_stream_remote_close(h->s, st->id) != 1) {
                h->end_check = true; /* its frame has not all come yet */
                continue;
            }
            st->end_check = false;
            char *why =
                st->clen >= 0 && st->recv < (uint64_t)st->clen
                    ? reel_asprintf("the request body ended after %llu bytes, short of its "
                                    "content-length (%lld bytes)",
                                    (unsigned long long)st->recv, (long long)st->clen)
                : st->clen >= 0
                    ? reel_asprintf("the request body is longer than its content-length "
                                    "(%lld bytes; %llu received)",
                                    (long long)st->clen, (unsigned long long)st->recv)
                    : reel_asprintf("malformed HTTP/2 request: its end broke HTTP/2 messaging "
                                    "rules");
            refuse(h, st, REEL_H2_PROTOCOL_ERROR, why, false);
        }
}

static int on_error(nghttp2_session *s, int lib_error, const char *msg, size_t len, void *ud) {
    reel_h2_t *h = ud;
    (void)s;
    (void)lib_error;
    snprintf(h->lasterr, sizeof h->lasterr, "%.*s", (int)(len < 255 ? len : 255), msg);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
    reel_h2_t *h = ud;
    (void)s;
    (void)code;
    stream_t *st = stream_of(h, id);
    if (st && st->counted)
        h->open_requests--;
    if (st)
        stream_free(h, st);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
    reel_h2_t *h = ud;
    (void)s;
    stream_t *st = f->hd.type == NGHTTP2_RST_STREAM ? stream_of(h, f->hd.stream_id) : NULL;
    if (st && !st->reset_reported && !st->caller_reset) {
        /* one nghttp2 sent of its own with no callback before (a padded
         * DATA frame over content-length): reported late rather than not */
        const char *what = h->role == REEL_H2_SERVER ? "request" : "response";
        /* (what reel did, the callers' prefix says: "reel reset ...") */
        char *why =
            st->clen >= 0 && st->recv > (uint64_t)st->clen
                ? reel_asprintf("the %s body is longer than its content-length (%lld "
                                "bytes; %llu received)",
                                what, (long long)st->clen, (unsigned long long)st->recv)
            : st->clen >= 0 && st->padded_len && st->recv + st->padded_len - 1 > (uint64_t)st->clen
                ? reel_asprintf("the %s body is longer than its content-length (%lld "
                                "bytes; %llu and then a padded DATA frame of %zu bytes, "
                                "its padding included)",
                                what, (long long)st->clen, (unsigned long long)st->recv,
                                st->padded_len)
            /* (a request's short body is end_refused's) */
            : st->clen >= 0 && st->recv < (uint64_t)st->clen && h->role == REEL_H2_CLIENT &&
                    nghttp2_session_get_stream_remote_close(h->s, st->id) == 1
                ? reel_asprintf("the response body ended after %llu bytes, short of its "
                                "content-length (%lld bytes)",
                                (unsigned long long)st->recv, (long long)st->clen)
                : reel_asprintf("the peer broke HTTP/2 on it (nghttp2 reset the stream "
                                "and said no more)");
        refuse(h, st, f->rst_stream.error_code, why, false);
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->goaway_sent = true;
        h->goaway_last = (uint32_t)f->goaway.last_stream_id;
        h->goaway_code = f->goaway.error_code;
    }
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR &&
        !h->goaway_reported) {
        h->goaway_reported = true;
        /* nghttp2 puts its reason in the GOAWAY's debug data; that of a
         * response's DATA before its head, which nghttp2 takes for the
         * connection's error (a stream reel opened is not "opened" to it
         * until a head came), in the words of the rule it broke */
        static const char not_opened[] = "DATA: stream not opened";
        if (h->role == REEL_H2_CLIENT && f->goaway.opaque_data_len == sizeof not_opened - 1 &&
            memcmp(f->goaway.opaque_data, not_opened, sizeof not_opened - 1) == 0)
            snprintf(h->errbuf, sizeof h->errbuf,
                     "HTTP/2 protocol error (a response's DATA before its head (RFC 9113 8.1)), "
                     "GOAWAY sent");
        else if (f->goaway.opaque_data_len)
            snprintf(h->errbuf, sizeof h->errbuf, "HTTP/2 protocol error (%.*s), GOAWAY sent",
                     (int)(f->goaway.opaque_data_len < 100 ? f->goaway.opaque_data_len : 100),
                     (const char *)f->goaway.opaque_data);
        else if (f->goaway.error_code == NGHTTP2_COMPRESSION_ERROR)
            snprintf(h->errbuf, sizeof h->errbuf,
                     "HTTP/2 protocol error (COMPRESSION_ERROR: a header block did not decode "
                     "(HPACK)), GOAWAY sent");
        else
            snprintf(h->errbuf, sizeof h->errbuf, "HTTP/2 protocol error (%s), GOAWAY sent",
                     nghttp2_http2_strerror(f->goaway.error_code));
        h->fatal = h->rapid_reset || f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM
                       ? "the client reset streams faster than max_resets_per_sec (rapid "
                         "reset, CVE-2023-44487): GOAWAY sent"
                   : h->fatal     ? h->fatal
                   : h->errbuf[0] ? h->errbuf
                                  : "HTTP/2 protocol error, GOAWAY sent";
        event_t *e = ev_push(h, REEL_CODEC_EV_GOAWAY, 0);
        e->code = f->goaway.error_code;
        e->last_stream = (uint32_t)f->goaway.last_stream_id;
        e->reason = h->fatal;
        e->local = true;
        ev_done(h, e);
        /* nghttp2 reads nothing more: see walk (a cause found earlier,
         * in other words, wins) */
        char why[101] = "";
        if (f->goaway.opaque_data_len)
            snprintf(why, sizeof why, "%.*s",
                     (int)(f->goaway.opaque_data_len < 100 ? f->goaway.opaque_data_len : 100),
                     (const char *)f->goaway.opaque_data);
        term(h, f->goaway.error_code, (uint32_t)f->goaway.last_stream_id,
             f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM || h->rapid_reset
                 ? "the client reset streams faster than max_resets_per_sec"
                 : why);
    }
    return 0;
}

/* Data source for a stream's submitted bytes. */
static ssize_t read_data(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud) {
    reel_h2_t *h = ud;
    (void)src;
    stream_t *st = stream_of(h, id);
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = st->out.len < length ? st->out.len : length;
    if (n)
        memcpy(buf, st->out.data, n);
    reel_buf_consume(&st->out, n);
    h->out_bytes -= n;
    st->sent += n;
    if (st->out.len == 0) {
        if (st->end) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            if (st->trailers) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                send_trailers(h, st);
            }
        } else if (n == 0) {
            st->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    (void)s;
    return (ssize_t)n;
}

/* ---- the codec ---- */

static void fill_event(reel_h2_t *h, event_t *e, reel_codec_event_t *ev) {
    (void)h;
    ev->type = e->type;
    ev->stream = e->stream;
    ev->error_code = e->code;
    ev->error_reason = e->reason;
    ev->last_stream = e->last_stream;
    ev->local = e->local;
    ev->goaway = e->goaway;
    ev->after_goaway = e->after_goaway;
    if (e->type == REEL_CODEC_EV_DATA) {
        ev->data = e->data.data;
        ev->len = e->data.len;
    }
    if (e->type == REEL_CODEC_EV_RESET)
        ev->len = e->unsent;
    if (!e->has_head)
        return;
    hcollect_t *c = &e->head;
    /* fields point into strs now that it no longer grows; the array of
     * reel_field_t goes at the end of e->data */
    reel_buf_reset(&e->data);
    reel_buf_reserve(&e->data, (c->n ? c->n : 1) * sizeof(reel_field_t));
    reel_field_t *fl = (reel_field_t *)e->data.data;
    const char *base = (const char *)c->strs.data;
    for (size_t i = 0; i < c->n; i++) {
        fl[i].name = base + c->offs[2 * i];
        fl[i].name_len = c->lens[2 * i];
        fl[i].value = base + c->offs[2 * i + 1];
        fl[i].value_len = c->lens[2 * i + 1];
    }
    if (e->type == REEL_CODEC_EV_END) {
        ev->trailers = fl;
        ev->ntrailers = c->n;
        return;
    }
    reel_msg_head_t *hd = &ev->head;
#define STR(off) ((off) ? base + (off)-1 : "")
    hd->method = STR(c->method);
    hd->scheme = STR(c->scheme);
    hd->path = STR(c->path);
    hd->version = "HTTP/2.0";
    hd->reason = "";
    hd->fields = fl;
    hd->nfields = c->n;
    if (c->status)
        hd->status = (uint32_t)strtoul(base + c->status - 1, NULL, 10);
    /* host and port from :authority, else Host */
    const char *auth = c->authority ? base + c->authority - 1 : NULL;
    for (size_t i = 0; auth == NULL && i < c->n; i++)
        if (fl[i].name_len == 4 && memcmp(fl[i].name, "host", 4) == 0) {
            /* a copy: the field is recorded as it came (split in place,
             * its ':' became a NUL in the record) */
            free(e->host);
            auth = e->host = reel_strndup(fl[i].value, fl[i].value_len);
        }
    hd->host = "";
    hd->port = 0;
    if (auth) {
        /* split in place: :authority is no field, and Host a copy */
        char *a = (char *)auth;
        char *colon = NULL;
        if (a[0] == '[') {
            char *rb = strchr(a, ']');
            if (rb) {
                *rb = 0;
                a++;
                colon = rb[1] == ':' ? rb + 1 : NULL;
            }
        } else {
            colon = strrchr(a, ':');
        }
        if (colon) {
            *colon = 0;
            hd->port = (uint32_t)strtoul(colon + 1, NULL, 10);
        }
        hd->host = a;
    }
    if (hd->port == 0 && hd->host[0])
        hd->port = strcmp(hd->scheme, "http") == 0 ? 80 : 443;
    if (c->protocol) /* RFC 8441: the protocol of an extended CONNECT */
        hd->scheme = STR(c->protocol);
#undef STR
}

static reel_rc pop(reel_h2_t *h, reel_codec_event_t *ev) {
    event_t *e = h->head;
    if (e == NULL)
        return REEL_NEED_MORE;
    h->head = e->next;
    if (h->head == NULL)
        h->tail = NULL;
    h->current = e;
    fill_event(h, e, ev);
    return REEL_OK;
}

static void drop_current(reel_h2_t *h) {
    if (h->current) {
        if (h->current->over_limit)
            h->over_limit_heads--;
        h->queued_bytes -= h->current->acct;
        ev_free(h->current);
        h->current = NULL;
    }
}

static reel_rc h2_feed(reel_codec_t *c, const uint8_t *buf, size_t len, size_t *consumed,
                       reel_codec_event_t *ev) {
    reel_h2_t *h = (reel_h2_t *)c;
    memset(ev, 0, sizeof *ev);
    *consumed = 0;
    drop_current(h);
    if (h->head)
        return pop(h, ev);
    if (h->dead) {
        ev->error_reason = h->fatal ? h->fatal : "HTTP/2 connection failed";
        ev->error_code = REEL_H2_PROTOCOL_ERROR;
        return REEL_INVALID;
    }
    if (len) {
        h->term_before = h->terminated && h->goaway_sent; /* for the words: walk_headers */
        ssize_t n = nghttp2_session_mem_recv(h->s, buf, len);
        if (n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
            /* a header block split over more CONTINUATION frames than
             * max_continuations (a CONTINUATION flood, CVE-2024-27316's
             * kind): nghttp2 stops with no GOAWAY and no callback, so the
             * stream whose block was open is refused here, and recorded,
             * and the GOAWAY is queued (RFC 9113 5.4.1) */
            static const char why[] = "the client split a header block over more than "
                                      "max_continuations CONTINUATION frames (a CONTINUATION "
                                      "flood?): GOAWAY sent";
            term(h, REEL_H2_ENHANCE_YOUR_CALM, (uint32_t)h->max_peer_stream, why);
            nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, h->max_peer_stream,
                                  NGHTTP2_ENHANCE_YOUR_CALM, NULL, 0);
            refuse_open_block(h, why);
            h->fatal = why;
        }
        if (n < 0) {
            h->dead = true;
            if (h->fatal == NULL)
                h->fatal = n == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? "not an HTTP/2 connection preface"
                                                             : nghttp2_strerror((int)n);
            /* nghttp2 has queued a GOAWAY where it could: events first */
            if (h->head)
                return pop(h, ev);
            ev->error_reason = h->fatal;
            ev->error_code = REEL_H2_PROTOCOL_ERROR;
            return REEL_INVALID;
        }
        *consumed = (size_t)n;
        if (h->role == REEL_H2_SERVER)
            walk(h, buf, (size_t)n);
        end_refused(h);
    }
    return pop(h, ev);
}

static reel_rc h2_feed_eof(reel_codec_t *c, reel_codec_event_t *ev) {
    reel_h2_t *h = (reel_h2_t *)c;
    memset(ev, 0, sizeof *ev);
    drop_current(h);
    if (h->head)
        return pop(h, ev);
    h->dead = true; /* the caller ends the exchanges still open */
    return REEL_OK;
}

static void h2_free(reel_codec_t *c) {
    reel_h2_t *h = (reel_h2_t *)c;
    drop_current(h);
    while (h->head) {
        event_t *e = h->head;
        h->head = e->next;
        ev_free(e);
    }
    nghttp2_session_del(h->s); /* calls on_stream_close for open streams */
    for (int i = 0; i < BUCKETS; i++)
        while (h->buckets[i])
            stream_free(h, h->buckets[i]);
    free(h);
}

static const reel_codec_ops_t h2_ops = {
    .name = "h2", .feed = h2_feed, .feed_eof = h2_feed_eof, .free = h2_free};

reel_codec_t *reel_h2_codec_new(reel_h2_role role, const reel_h2_opts_t *opts) {
    reel_h2_t *h = reel_calloc(1, sizeof *h);
    h->base.ops = &h2_ops;
    h->role = role;
    if (opts)
        h->o = *opts;
    if (!h->o.max_header_list)
        h->o.max_header_list = 64 * 1024;
    if (!h->o.max_concurrent_streams)
        h->o.max_concurrent_streams = 100;
    if (!h->o.stream_window)
        h->o.stream_window = 1u << 20;
    if (!h->o.conn_window)
        h->o.conn_window = 16u << 20;
    if (!h->o.max_resets_per_sec)
        h->o.max_resets_per_sec = 100;
    if (!h->o.max_continuations)
        h->o.max_continuations = 8;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, h->o.max_continuations);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    /* nghttp2 keeps closed streams for RFC 7540 priorities up to its
     * idea of the concurrency limit, unbounded when it has none (server
     * role: see on_begin_headers); reel has no use for them */
    nghttp2_option_set_no_closed_streams(opt, 1);
    h->reset_tokens = h->o.max_resets_per_sec;
    h->reset_last_ms = now_ms();
    if (role == REEL_H2_SERVER) {
        nghttp2_option_set_stream_reset_rate_limit(opt, h->o.max_resets_per_sec,
                                                   h->o.max_resets_per_sec);
        nghttp2_session_server_new2(&h->s, cb, h, opt);
        h->walk_skip = NGHTTP2_CLIENT_MAGIC_LEN; /* the client's preface comes first */
        h->walk_type = 0xff;                     /* (not a frame) */
    } else {
        nghttp2_session_client_new2(&h->s, cb, h, opt);
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[6];
    size_t niv = 0;
    iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->o.stream_window};
    iv[niv++] =
        (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, h->o.max_header_list};
    iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096};
    if (role == REEL_H2_SERVER) {
        /* SETTINGS_MAX_CONCURRENT_STREAMS goes in on its way out
         * (take_output): told here, nghttp2 would enforce it itself */
        h->settings_unpatched = true;
        if (h->o.connect_protocol)
            iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1};
    } else {
        iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    }
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, niv);
    if (h->o.conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
        nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)h->o.conn_window);
    return &h->base;
}

reel_h2_t *reel_h2_codec_h2(reel_codec_t *c) {
    return c && c->ops == &h2_ops ? (reel_h2_t *)c : NULL;
}

/* ---- sending ---- */

/* Connection-specific fields (RFC 9113 8.2.2) and Host are not sent. */
static bool skip_field(const reel_field_t *f) {
    static const char *const drop[] = {"connection",        "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade",    "host"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++)
        if (f->name_len == strlen(drop[i]) && strncasecmp(f->name, drop[i], f->name_len) == 0)
            return true;
    if (f->name_len == 2 && strncasecmp(f->name, "te", 2) == 0)
        return !(f->value_len == 8 && strncasecmp(f->value, "trailers", 8) == 0);
    return false;
}

typedef struct {
    nghttp2_nv *nv;
    size_t n, cap;
    reel_buf_t lower; /* lowercased names */
    size_t *lower_off;
} nvs_t;

static void nvs_add(nvs_t *v, const char *name, size_t nlen, const char *value, size_t vlen,
                    bool lower) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->nv = reel_realloc(v->nv, v->cap * sizeof *v->nv);
        v->lower_off = reel_realloc(v->lower_off, v->cap * sizeof *v->lower_off);
    }
    v->lower_off[v->n] = (size_t)-1;
    if (lower && reel_buf_reserve(&v->lower, nlen) == REEL_OK) {
        v->lower_off[v->n] = v->lower.len;
        uint8_t *d = v->lower.data + v->lower.len;
        for (size_t i = 0; i < nlen; i++)
            d[i] = (uint8_t)tolower((unsigned char)name[i]);
        v->lower.len += nlen;
        d[nlen] = 0;
    }
    v->nv[v->n] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
    v->n++;
}

/* Names point into v->lower once it no longer grows. */
static void nvs_fix(nvs_t *v) {
    for (size_t i = 0; i < v->n; i++)
        if (v->lower_off[i] != (size_t)-1)
            v->nv[i].name = v->lower.data + v->lower_off[i];
}

static void nvs_free(nvs_t *v) {
    free(v->nv);
    free(v->lower_off);
    reel_buf_free(&v->lower);
}

static void nvs_fields(nvs_t *v, const reel_field_t *f, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!skip_field(&f[i]))
            nvs_add(v, f[i].name, f[i].name_len, f[i].value, f[i].value_len, true);
}

static stream_t *stream_for_send(reel_h2_t *h, int32_t id) {
    stream_t *st = stream_of(h, id);
    if (st == NULL && id > 0)
        st = stream_new(h, id);
    return st;
}

reel_rc reel_h2_submit_request(reel_h2_t *h, const reel_msg_head_t *head, bool end,
                               uint32_t *stream, reel_err_t *err) {
    nvs_t v = {0};
    reel_buf_init(&v.lower, 0);
    char auth[300];
    bool default_port = (strcmp(head->scheme, "https") == 0 && head->port == 443) ||
                        (strcmp(head->scheme, "http") == 0 && head->port == 80) || !head->port;
    if (strchr(head->host, ':'))
        snprintf(auth, sizeof auth, default_port ? "[%s]" : "[%s]:%u", head->host, head->port);
    else
        snprintf(auth, sizeof auth, default_port ? "%s" : "%s:%u", head->host, head->port);
    /* an extended CONNECT (RFC 8441 4) has :scheme and :path as any request */
    bool ext = head->protocol != NULL;
    bool connect = strcmp(head->method, "CONNECT") == 0 && !ext;
    nvs_add(&v, ":method", 7, head->method, strlen(head->method), false);
    if (ext)
        nvs_add(&v, ":protocol", 9, head->protocol, strlen(head->protocol), false);
    if (!connect) {
        nvs_add(&v, ":scheme", 7, head->scheme, strlen(head->scheme), false);
        nvs_add(&v, ":path", 5, head->path[0] ? head->path : "/",
                head->path[0] ? strlen(head->path) : 1, false);
    }
    nvs_add(&v, ":authority", 10, auth, strlen(auth), false);
    nvs_fields(&v, head->fields, head->nfields);
    nvs_fix(&v);
    nghttp2_data_provider prd = {.read_callback = read_data};
    int32_t id = nghttp2_submit_request(h->s, NULL, v.nv, v.n, end ? NULL : &prd, NULL);
    nvs_free(&v);
    if (id < 0)
        return reel_err_set(err, REEL_INVALID, "cannot send the request on HTTP/2: %s",
                            nghttp2_strerror(id));
    stream_t *st = stream_new(h, id);
    st->end = end;
    st->head_req = strcmp(head->method, "HEAD") == 0;
    *stream = (uint32_t)id;
    return REEL_OK;
}

reel_rc reel_h2_submit_response(reel_h2_t *h, uint32_t stream, const reel_msg_head_t *head,
                                bool end, reel_err_t *err) {
    nvs_t v = {0};
    reel_buf_init(&v.lower, 0);
    char status[8];
    snprintf(status, sizeof status, "%u", head->status);
    nvs_add(&v, ":status", 7, status, strlen(status), false);
    /* An HTTP/1.1 origin may put a Content-Length on a 204 (or a 1xx),
     * which RFC 9110 8.6 forbids and an h2 client takes as a malformed
     * response (nghttp2 resets the stream unless it says 0, python-h2
     * counts the body against it): it goes no further. A 304's or a HEAD
     * answer's describes the representation, as HTTP/2 allows (RFC 9113
     * 8.1.1), and stays. The record keeps the origin's head. */
    bool no_length = head->status == 204 || (head->status >= 100 && head->status < 200);
    for (size_t i = 0; i < head->nfields; i++) {
        const reel_field_t *f = &head->fields[i];
        if (skip_field(f) ||
            (no_length && f->name_len == 14 && strncasecmp(f->name, "content-length", 14) == 0))
            continue;
        nvs_add(&v, f->name, f->name_len, f->value, f->value_len, true);
    }
    nvs_fix(&v);
    int rv;
    if (head->status >= 100 && head->status < 200) {
        rv =
            nghttp2_submit_headers(h->s, NGHTTP2_FLAG_NONE, (int32_t)stream, NULL, v.nv, v.n, NULL);
    } else {
        stream_t *st = stream_for_send(h, (int32_t)stream);
        nghttp2_data_provider prd = {.read_callback = read_data};
        if (st)
            st->end = end;
        rv = nghttp2_submit_response(h->s, (int32_t)stream, v.nv, v.n, end ? NULL : &prd);
    }
    nvs_free(&v);
    if (rv != 0)
        return reel_err_set(err, REEL_INVALID, "cannot send the response on HTTP/2: %s",
                            nghttp2_strerror(rv));
    return REEL_OK;
}

reel_rc reel_h2_submit_data(reel_h2_t *h, uint32_t stream, const void *data, size_t len, bool end) {
    stream_t *st = stream_of(h, (int32_t)stream);
    if (st == NULL)
        return REEL_NOTFOUND;
    reel_buf_append(&st->out, data, len);
    h->out_bytes += len;
    if (end)
        st->end = true;
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(h->s, (int32_t)stream);
    }
    return REEL_OK;
}

reel_rc reel_h2_submit_trailers(reel_h2_t *h, uint32_t stream, const reel_field_t *fields, size_t n,
                                reel_err_t *err) {
    stream_t *st = stream_of(h, (int32_t)stream);
    if (st == NULL)
        return reel_err_set(err, REEL_NOTFOUND, "HTTP/2 stream %u is gone", stream);
    hc_free(&st->tr);
    hc_init(&st->tr);
    for (size_t i = 0; i < n; i++) {
        if (skip_field(&fields[i]))
            continue;
        char lower[256];
        size_t nl = fields[i].name_len < sizeof lower ? fields[i].name_len : sizeof lower;
        for (size_t k = 0; k < nl; k++)
            lower[k] = (char)tolower((unsigned char)fields[i].name[k]);
        hc_add(&st->tr, (const uint8_t *)lower, nl, (const uint8_t *)fields[i].value,
               fields[i].value_len);
    }
    st->trailers = true;
    st->end = true;
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(h->s, (int32_t)stream);
    }
    return REEL_OK;
}

const char *reel_h2_error_name(uint32_t code) {
    return nghttp2_http2_strerror(code);
}

void reel_h2_reset(reel_h2_t *h, uint32_t stream, uint32_t code) {
    stream_t *st = stream_of(h, (int32_t)stream);
    if (st)
        st->caller_reset = true;
    nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, (int32_t)stream, code);
}

void reel_h2_goaway(reel_h2_t *h, uint32_t code) {
    /* nghttp2's last processed stream counts streams reel refused over
     * the limit (it opened them) */
    int32_t last = h->role == REEL_H2_SERVER ? h->last_accepted
                                             : nghttp2_session_get_last_proc_stream_id(h->s);
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, last, code, NULL, 0);
}

void reel_h2_consume(reel_h2_t *h, uint32_t stream, size_t n) {
    if (nghttp2_session_consume(h->s, (int32_t)stream, n) != 0)
        nghttp2_session_consume_connection(h->s, n); /* the stream is gone */
}

/* Appends reel's first SETTINGS frame (p, n bytes, as nghttp2 made it)
 * to out with SETTINGS_MAX_CONCURRENT_STREAMS added. nghttp2, told the
 * limit, would refuse a stream over it before any callback had its head;
 * not told, it lets reel refuse the stream once the head has come
 * (on_begin_headers). The client acknowledges the one frame it got, which
 * is the one nghttp2 expects an ACK for. */
static reel_rc put_settings(reel_h2_t *h, const uint8_t *p, size_t n, reel_buf_t *out) {
    size_t len = n >= 9 ? ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2] : 0;
    if (n < 9 || len != n - 9 || p[3] != NGHTTP2_SETTINGS || p[4] != 0 ||
        (p[5] | p[6] | p[7] | p[8]) != 0) {
        /* nghttp2 sends the SETTINGS submitted first, first: not so, the
         * limit would go unsaid and unenforced */
        h->dead = true;
        h->fatal = "HTTP/2: reel's SETTINGS frame was not the first it sent";
        return REEL_ERROR;
    }
    uint32_t v = h->o.max_concurrent_streams;
    len += 6;
    const uint8_t hd[9] = {
        (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    const uint8_t entry[6] = {0,
                              NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                              (uint8_t)(v >> 24),
                              (uint8_t)(v >> 16),
                              (uint8_t)(v >> 8),
                              (uint8_t)v};
    if (reel_buf_append(out, hd, 9) != REEL_OK || reel_buf_append(out, p + 9, n - 9) != REEL_OK ||
        reel_buf_append(out, entry, 6) != REEL_OK)
        return REEL_LIMIT;
    return REEL_OK;
}

reel_rc reel_h2_take_output(reel_h2_t *h, reel_buf_t *out) {
    for (;;) {
        const uint8_t *p = NULL;
        ssize_t n = nghttp2_session_mem_send(h->s, &p);
        if (n < 0) {
            h->dead = true;
            return REEL_ERROR;
        }
        if (n == 0)
            return REEL_OK;
        if (h->settings_unpatched) {
            h->settings_unpatched = false;
            reel_rc rc = put_settings(h, p, (size_t)n, out);
            if (rc != REEL_OK)
                return rc;
            continue;
        }
        if (reel_buf_append(out, p, (size_t)n) != REEL_OK)
            return REEL_LIMIT;
    }
}

size_t reel_h2_stream_queued(const reel_h2_t *h, uint32_t stream) {
    stream_t *st = stream_of(h, (int32_t)stream);
    return st ? st->out.len : 0;
}

bool reel_h2_stream_end_sent(const reel_h2_t *h, uint32_t stream) {
    /* 1: half-closed (local) or closed; -1: no such stream any more */
    return nghttp2_session_get_stream_local_close(h->s, (int32_t)stream) != 0;
}

size_t reel_h2_stream_take_sent(reel_h2_t *h, uint32_t stream) {
    stream_t *st = stream_of(h, (int32_t)stream);
    if (st == NULL)
        return 0;
    size_t n = st->sent;
    st->sent = 0;
    return n;
}

size_t reel_h2_memory(const reel_h2_t *h) {
    return h->queued_bytes + h->out_bytes;
}

bool reel_h2_peer_connect_protocol(const reel_h2_t *h) {
    return nghttp2_session_get_remote_settings(h->s, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1;
}

bool reel_h2_peer_settings_seen(const reel_h2_t *h) {
    return h->peer_settings;
}

bool reel_h2_has_events(const reel_h2_t *h) {
    return h->head != NULL;
}

bool reel_h2_alive(const reel_h2_t *h) {
    return !h->dead && (nghttp2_session_want_read(h->s) || nghttp2_session_want_write(h->s));
}
