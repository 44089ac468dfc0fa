/* HTTP/2 from clients: a connection whose client speaks h2 (ALPN "h2" on an
 * intercepted TLS connection, or the prior-knowledge preface on plain
 * HTTP) is read by the h2 codec (core/h2.c, server role), and each of its
 * streams is served by a *lane*: an HTTP/1.1 connection inside reel whose
 * bottom filter is this file instead of a socket. A lane is an ordinary
 * conn_t (core/conn.h) with everything that comes with it: upstream
 * connections with keep-alive and TLS, the keep-alive retry, timeouts,
 * reel's own answers (502, 504, 407) and the recording of the flow. The
 * stream's request goes into the lane as HTTP/1.1 (RFC 9113 8.3: :authority
 * becomes Host, Cookie crumbs are joined, a body without content-length is
 * sent chunked, trailers ride on the last chunk); what the lane answers is
 * parsed as HTTP/1.1 and sent back as the stream's HEADERS, DATA and
 * trailers (1xx interim answers, 103 Early Hints included, pass through).
 *
 *   client ══h2══ front ─┬─ lane (conn_t, HTTP/1.1) ── upstream ── origin
 *                        ├─ lane ...
 *
 * A lane serves one stream at a time and is kept for the next (so one
 * client connection reuses a handful of origin connections, as a browser's
 * HTTP/1.1 pool would), until the lane's own idle timeout closes it; a
 * client connection has at most MAX_LANES, and streams beyond wait, oldest
 * first, for a lane to finish. A stream's flow starts when its HEADERS came
 * (h2s_t.came_us, handed to the lane): the wait is in its `blocked`.
 * A lane whose origin speaks h2 sends its requests as streams of the
 * proxy's shared HTTP/2 session to that origin (core/h2up.c).
 *
 * The record says what the client did: the flow's request is recorded with
 * version HTTP/2.0 and the fields the client sent (lowercase, no pseudo
 * headers but an extended CONNECT's :protocol, recorded as CONNECT); the
 * response with the origin's version (HTTP/2.0 over a session), or
 * HTTP/2.0 when reel answered itself. A stream the client resets ends its flow with that
 * error, a stream the lane could not finish is reset (INTERNAL_ERROR; one
 * whose origin cut the body short, once what reel held for it went out:
 * reel__h2front_cut). A
 * stream reel resets because the client broke HTTP/2 on it (the codec's
 * local RESET: a malformed request, a body against its content-length,
 * a stream beyond the concurrency limit, refused once its head came) is
 * a flow too, ended with that reset and why, or with the GOAWAY that was
 * reel's answer instead; a request that had gone to a lane is cut there.
 * A WebSocket's flow, or a CONNECT tunnel's, like a response's, ends
 * complete only once the stream's last DATA went out: one over while the
 * client's window still holds its last bytes back waits for them in its
 * stream. A response whole before the client ended its request body (an
 * early 413) cuts the stream (stream_cut): the flow complete, the body as
 * far as it went, RST_STREAM NO_ERROR after the response (RFC 9113 8.1).
 * So is a stream the client opened after reel's GOAWAY, which reel
 * ignores unanswered: its flow says so (nghttp2 hands over no head of
 * it, only its id).
 *
 * Flow control end to end: a stream's DATA is acknowledged to the client
 * (reel_h2_consume) only when its lane took the bytes, and a lane takes
 * them only while its upstream keeps up; a response waits in the lane
 * (whose upstream then stops being read) while the client's window for
 * that stream is closed or the client's socket is full. One stalled stream
 * holds only its own lane.
 *
 * Lifetimes: the front belongs to its conn (c->h2) and goes when the conn
 * closes; it closes its lanes then. A lane's memory is its filter's: freed
 * when the lane conn's stack reports closed (after the timer used for
 * deferred events is closed), whether or not the front still exists. */

#include "core/conn.h"
#include "core/h2.h"

/* Lanes of one client connection at most: more streams wait for one to
 * finish (nghttpx keeps 8 backend connections per host by default, a
 * browser 6 for HTTP/1.1), so a page of 100 resources does not open 100
 * connections to its origin. */
#define MAX_LANES 16

typedef struct h2front h2front_t;
typedef struct lane lane_t;
typedef struct h2s h2s_t;

/* One client stream. */
struct h2s {
    h2s_t *next;
    uint32_t sid;
    lane_t *lane; /* serving it; NULL: waiting for one, or done */
    /* when its HEADERS came: its flow's start, however long it then
     * waited for a lane (the wait is in the flow's `blocked`) */
    int64_t came_us;
    /* the client's head, kept for the lane's record */
    reel_field_t *fields;
    size_t nfields;
    char *store; /* every string of the head, NUL-terminated */
    const char *method, *scheme, *host, *path;
    uint32_t port;
    bool has_length;   /* content-length given */
    bool head_built;   /* the HTTP/1.1 head is in req */
    bool chunked;      /* the body goes chunked */
    bool req_end;      /* the client's END was seen */
    bool req_sent;     /* ... and everything went into the lane */
    bool resp_started; /* a final response head went to the client */
    bool resp_end;
    /* The response went whole while the client was still sending the
     * body (an early 413): the lane is let go, the body's DATA is
     * dropped, and once the response's END_STREAM has gone out the stream
     * is reset with NO_ERROR (RFC 9113 8.1) so that the client stops
     * sending, unless its own END_STREAM came meanwhile (stream_cut). */
    bool req_cut;
    /* RFC 8441: an extended CONNECT for a WebSocket, sent to the lane as an
     * HTTP/1.1 Upgrade; once the origin switched (101, answered 200 here)
     * DATA carries the frames both ways as they are. A plain CONNECT
     * (RFC 9113 8.5) goes to the lane as an HTTP/1.1 CONNECT, and after
     * its 2xx DATA carries the tunnel's bytes, which the lane handles as
     * for any CONNECT (interception, raw relay). */
    bool ws, connect, tunnel; /* tunnel: ws or connect */
    bool raw_open, eof_pending;
    bool tunnel_ended; /* END_STREAM sent: the origin half-closed a CONNECT's tunnel */
    bool ws_fin;       /* fin (below) is a WebSocket's */
    /* Its flow, once the response is whole (taken from the lane, which is
     * free for another stream then), or once its WebSocket is over with
     * frames still to send (reel__h2front_ws_end; the lane goes): ended
     * when the codec has sent the last of the stream's DATA, or with an
     * error if the client resets the stream or the connection goes first. */
    reel_fin_t *fin;
    /* The origin cut the response short (reel__h2front_cut): fin waits
     * here for the DATA reel held for the stream to go out, then the
     * stream is reset (INTERNAL_ERROR), by cut_until at the latest. Why it
     * was cut (owned), and how many bytes the stream held then. */
    char *cut_why;
    size_t cut_held;
    uint64_t cut_until;
    /* trailers after a body framed by its content-length (one allocation:
     * the fields, then their strings), for the record alone
     * (stream_trailers) */
    reel_field_t *trailers;
    size_t ntrailers;
    reel_buf_t req;  /* HTTP/1.1 bytes for the lane */
    size_t req_body; /* DATA bytes in req (consumed once delivered) */
    /* A tunnel's DATA before its answer opened it (raw_open): it goes to
     * the lane once open (tunnel_open), and nowhere if the answer was a
     * refusal (a 404 to a WebSocket), where the lane took it for its next
     * request (and recorded a 400 reel never sent). */
    reel_buf_t early;
};

struct lane {
    reel_filter_t f; /* the lane conn's bottom filter: first member */
    h2front_t *fr;   /* NULL once the front is gone */
    lane_t *next;
    conn_t *inner;
    h2s_t *s;           /* the stream it serves, NULL: idle */
    reel_codec_t *resp; /* HTTP/1.1 responses the lane conn writes */
    reel_buf_t out;     /* ... not parsed yet */
    uv_timer_t timer;   /* deferred events */
    bool reading, want_close, closed;
    /* its conn was left in the middle of a request body (stream_cut):
     * closed on the timer, with its origin connection, never reused */
    bool cut;
    char remote[64];
};

struct h2front {
    conn_t *c;
    reel_codec_t *codec;
    reel_h2_t *h2;
    h2s_t *streams;
    lane_t *lanes;
    size_t nlanes;
    bool goaway;  /* the client sent GOAWAY */
    bool pumping;     /* inside kick(): no recursion */
    bool dispatching; /* inside dispatch() ... */
    bool again;       /* ... and a lane freed up meanwhile */
    bool failing;     /* every stream is being ended: no new lanes */
    bool flush_queued; /* its output waits for the end of a batch */
    bool resets_queued; /* stream_settle submitted a RST_STREAM: flush again */
};

static void kick(h2front_t *fr);
static void dispatch(h2front_t *fr);
static void flush_output(h2front_t *fr);
static void lane_pump(lane_t *l);
static void lane_pump_upto(lane_t *l, size_t high);
static void lane_later(lane_t *l);

/* ---- streams ---- */

static h2s_t *stream_find(h2front_t *fr, uint32_t sid) {
    for (h2s_t *s = fr->streams; s; s = s->next)
        if (s->sid == sid)
            return s;
    return NULL;
}

/* The stream lets go of its lane (which may serve another). */
static void stream_unlane(h2s_t *s) {
    if (s->lane) {
        s->lane->s = NULL;
        if (s->lane->inner) {
            s->lane->inner->lane_fields = NULL;
            s->lane->inner->lane_nfields = 0;
            s->lane->inner->lane_stream = 0;
            s->lane->inner->lane_came_us = 0;
            s->lane->inner->lane_trailers = NULL;
            s->lane->inner->lane_ntrailers = 0;
        }
        s->lane = NULL;
    }
}

static void stream_free(h2front_t *fr, h2s_t *s) {
    for (h2s_t **pp = &fr->streams; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    stream_unlane(s);
    if (s->fin) { /* every path that frees one says how it ended; this one did not */
        reel__fin_end(s->fin, "the HTTP/2 stream ended before its response was sent whole");
        STAT_ADD(fr->c->p, errors, 1);
    }
    free(s->cut_why);
    free(s->trailers);
    free(s->fields);
    free(s->store);
    reel_buf_free(&s->req);
    reel_buf_free(&s->early);
    free(s);
}

/* Trailers after a body with a content-length (HTTP/2 allows them after
 * any body): the stream's HTTP/1.1 request, framed by that length, has no
 * place for them, so they do not reach the origin, but the record has
 * them. They were missing from it. The lane's exchange records them at
 * the request's end (lane_trailers), or at once if the lane has read the
 * whole request already, which it may have before the client's END. */
static void stream_trailers(h2s_t *s, const reel_field_t *f, size_t n) {
    free(s->trailers);
    s->trailers = reel_malloc(n * sizeof *f + reel__fields_bytes(f, n));
    s->ntrailers = n;
    reel__fields_copy(s->trailers, (char *)(s->trailers + n), f, n);
    conn_t *in = s->lane ? s->lane->inner : NULL;
    if (s->fin) /* the response is whole: its flow waits for this END */
        reel__fin_trailers(s->fin, false, s->trailers, n, true);
    else if (in == NULL || in->lane_stream != s->sid)
        return; /* (the lane that takes the stream gets them) */
    else if (in->ex.flow && in->ex.req_done)
        reel_capture_trailers(in->ex.flow, false, s->trailers, n, true);
    else { /* (the exchange's request end, to come, records them) */
        in->lane_trailers = s->trailers;
        in->lane_ntrailers = n;
    }
}

/* A copy of the client's head (the event's strings are the codec's). */
static h2s_t *stream_new(h2front_t *fr, uint32_t sid, const reel_msg_head_t *h) {
    /* HTTP/2 inside an intercepted CONNECT: its flows are the streams,
     * none is the CONNECT's (README) */
    reel__connect_head_drop(fr->c);
    h2s_t *s = reel_calloc(1, sizeof *s);
    s->sid = sid;
    s->came_us = reel__now_us();
    reel_buf_init(&s->req, 0);
    reel_buf_init(&s->early, 0);
    size_t total = strlen(h->method) + strlen(h->scheme) + strlen(h->host) + strlen(h->path) + 4;
    for (size_t i = 0; i < h->nfields; i++)
        total += h->fields[i].name_len + h->fields[i].value_len + 2;
    s->store = reel_malloc(total);
    char *at = s->store;
#define COPY(dst, src, n)                                                                          \
    do {                                                                                           \
        memcpy(at, (src), (n));                                                                    \
        at[n] = 0;                                                                                 \
        (dst) = at;                                                                                \
        at += (n) + 1;                                                                             \
    } while (0)
    COPY(s->method, h->method, strlen(h->method));
    COPY(s->scheme, h->scheme, strlen(h->scheme));
    COPY(s->host, h->host, strlen(h->host));
    COPY(s->path, h->path, strlen(h->path));
    s->port = h->port;
    const char *protocol = NULL;
    if (strcmp(s->method, "CONNECT") == 0 && strcmp(s->scheme, "websocket") == 0) {
        s->ws = true; /* the codec gives :protocol as the scheme */
        protocol = s->scheme;
        s->method = "GET"; /* the lane's HTTP/1.1 Upgrade; recorded as CONNECT */
        s->scheme = reel__tunnel_https(fr->c) ? "https" : "http";
    } else if (strcmp(s->method, "CONNECT") == 0) {
        s->connect = true;
    }
    s->tunnel = s->ws || s->connect;
    /* An extended CONNECT keeps its :protocol as the first field: the
     * record says what the client sent (CONNECT with :protocol, RFC 8441),
     * not the GET the lane is given (exchange.c's lane_request). */
    size_t first = protocol ? 1 : 0;
    s->fields = reel_calloc(h->nfields + first ? h->nfields + first : 1, sizeof *s->fields);
    s->nfields = h->nfields + first;
    if (protocol)
        s->fields[0] = (reel_field_t){":protocol", 9, protocol, strlen(protocol)};
    for (size_t i = 0; i < h->nfields; i++) {
        const reel_field_t *f = &h->fields[i];
        reel_field_t *d = &s->fields[first + i];
        COPY(d->name, f->name, f->name_len);
        d->name_len = f->name_len;
        COPY(d->value, f->value, f->value_len);
        d->value_len = f->value_len;
        if (f->name_len == 14 && memcmp(f->name, "content-length", 14) == 0)
            s->has_length = true;
    }
#undef COPY
    h2s_t **pp = &fr->streams; /* in arrival order: the oldest gets a lane first */
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    return s;
}

static bool field_is(const reel_field_t *f, const char *name) {
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* Writes host (in brackets when v6) and, with_port, ":port" to out as
 * snprintf would, cut to cap - 1 bytes; returns the length. Not snprintf:
 * printf was a tenth of the loop's instructions per small stream. */
static size_t format_authority(char *out, size_t cap, const char *host, bool v6, uint32_t port,
                               bool with_port) {
    char tail[16];
    size_t tl = 0;
    if (v6)
        tail[tl++] = ']';
    if (with_port) {
        char d[10];
        size_t k = 0;
        do {
            d[k++] = (char)('0' + port % 10);
            port /= 10;
        } while (port);
        tail[tl++] = ':';
        while (k)
            tail[tl++] = d[--k];
    }
    size_t o = 0;
    const struct {
        const char *p;
        size_t n;
    } parts[3] = {{"[", v6 ? 1u : 0u}, {host, strlen(host)}, {tail, tl}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = parts[i].n < cap - 1 - o ? parts[i].n : cap - 1 - o;
        memcpy(out + o, parts[i].p, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

/* The request as HTTP/1.1 (RFC 9113 8.3.1): origin form inside an
 * intercepted tunnel, absolute form to reel as a proxy; Host from
 * :authority; Cookie crumbs joined with "; "; chunked when the length is
 * not known. */
static void build_head(h2front_t *fr, h2s_t *s, bool body_follows) {
    conn_t *c = fr->c;
    reel_buf_t *b = &s->req;
    bool v6 = strchr(s->host, ':') != NULL;
    bool default_port = (strcmp(s->scheme, "https") == 0 && s->port == 443) ||
                        (strcmp(s->scheme, "http") == 0 && s->port == 80);
    char authority[600];
    /* authority form (CONNECT) names the port always */
    size_t alen = format_authority(authority, sizeof authority, s->host, v6, s->port,
                                   s->connect || !(default_port || s->port == 0));
    if (s->connect) {
        reel_buf_puts(b, "CONNECT ");
        reel_buf_append(b, authority, alen);
        body_follows = false; /* the tunnel's bytes come after the 2xx */
    } else {
        reel_buf_puts(b, s->method);
        reel_buf_puts(b, " ");
        if (!c->in_tunnel) {
            reel_buf_puts(b, s->scheme);
            reel_buf_puts(b, "://");
            reel_buf_append(b, authority, alen);
        }
        /* OPTIONS's ":path *" (RFC 9113 8.3.1) in absolute form is the
         * URL with no path at all (RFC 9112 3.2.4): exchange.c sends the
         * origin "*" again */
        if (c->in_tunnel || strcmp(s->path, "*") != 0)
            reel_buf_puts(b, s->path);
    }
    reel_buf_puts(b, " HTTP/1.1\r\nHost: ");
    reel_buf_append(b, authority, alen);
    reel_buf_puts(b, "\r\n");
    if (s->ws) {
        /* RFC 8441 5: the HTTP/1.1 handshake the origin expects; its key
         * is reel's (the h2 side has none), so is checking the answer */
        uint8_t key[16];
        if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key)
            memset(key, 0x5a, sizeof key); /* a nonce, not a secret */
        char *k = reel_base64(key, sizeof key, NULL);
        reel_buf_printf(b, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n",
                        k);
        free(k);
        body_follows = false; /* the frames come after the switch, not as a body */
    }
    bool cookie_done = false;
    for (size_t i = 0; i < s->nfields; i++) {
        const reel_field_t *f = &s->fields[i];
        if (field_is(f, "host") || (f->name_len && f->name[0] == ':'))
            continue; /* :protocol is the record's, the Upgrade says it here */
        if (field_is(f, "cookie")) {
            if (cookie_done)
                continue;
            cookie_done = true;
            reel_buf_puts(b, "cookie: ");
            bool first = true;
            for (size_t k = i; k < s->nfields; k++) {
                if (!field_is(&s->fields[k], "cookie"))
                    continue;
                if (!first)
                    reel_buf_puts(b, "; ");
                reel_buf_append(b, s->fields[k].value, s->fields[k].value_len);
                first = false;
            }
            reel_buf_puts(b, "\r\n");
            continue;
        }
        reel_h1_append_field(b, f->name, f->name_len, f->value, f->value_len);
    }
    if (!s->has_length) {
        if (body_follows) {
            s->chunked = true;
            reel_buf_puts(b, "transfer-encoding: chunked\r\n");
        } else if (strcmp(s->method, "POST") == 0 || strcmp(s->method, "PUT") == 0 ||
                   strcmp(s->method, "PATCH") == 0) {
            reel_buf_puts(b, "content-length: 0\r\n"); /* say so rather than leave it implied */
        }
    }
    reel_buf_puts(b, "\r\n");
    s->head_built = true;
}

/* ---- lanes: the filter ---- */

static void lane_send(reel_filter_t *f, const uint8_t *data, size_t len) {
    lane_t *l = (lane_t *)f;
    if (l->want_close)
        return;
    reel_buf_append(&l->out, data, len);
    lane_pump(l);
}

static void lane_shutdown(reel_filter_t *f) {
    lane_t *l = (lane_t *)f;
    h2s_t *s = l->s;
    if (l->fr && s && s->connect && s->raw_open && l->inner && l->inner->state == C_RAW) {
        /* a tunnel whose origin half-closed (its FIN): END_STREAM (RFC
         * 9113 8.5), the client may still send */
        if (!s->tunnel_ended) {
            s->tunnel_ended = true;
            reel_h2_submit_data(l->fr->h2, s->sid, NULL, 0, true);
            flush_output(l->fr);
        }
        return;
    }
    /* the lane conn half-closed (lingering after an error answer): it gets
     * its end of stream at once, nobody is left to read */
    lane_later(l);
}

static size_t lane_queued(const reel_filter_t *f) {
    const lane_t *l = (const lane_t *)f;
    size_t q = l->out.len;
    if (l->fr && l->s)
        q += reel_h2_stream_queued(l->fr->h2, l->s->sid);
    return q;
}

static bool lane_is_open(const reel_filter_t *f) {
    const lane_t *l = (const lane_t *)f;
    return !l->want_close && !f->st->closing;
}

static void lane_set_reading(reel_filter_t *f, bool on) {
    lane_t *l = (lane_t *)f;
    bool was = l->reading;
    l->reading = on;
    if (on && !was)
        lane_later(l);
}

static void lane_info(const reel_filter_t *f, reel_stack_info_t *out) {
    const lane_t *l = (const lane_t *)f;
    reel_strcpy_to(out->remote, sizeof out->remote, l->remote);
    snprintf(out->local, sizeof out->local, "h2-lane");
}

/* A stream that only waits, its lane free, for the codec to send the
 * rest of a whole response before its flow ends (stream_settle). */
static bool stream_waits_for_client(const h2s_t *s) {
    return s->lane == NULL && s->resp_end && (s->fin || s->req_cut);
}

/* The end of a cut stream's wait (reel__h2front_cut): RST_STREAM
 * INTERNAL_ERROR, and its flow ends with msg (taken), which says what of
 * the response reached the client. */
static void cut_reset(h2front_t *fr, h2s_t *s, char *msg) {
    reel_h2_reset(fr->h2, s->sid, REEL_H2_INTERNAL_ERROR);
    reel_fin_t *f = s->fin;
    s->fin = NULL;
    stream_free(fr, s);
    reel__fin_end(f, msg);
    STAT_ADD(fr->c->p, errors, 1);
    free(msg);
}

/* A stream whose response has gone whole to the codec: its flow ends
 * once the codec has sent the last of its DATA (then it goes); false
 * while it waits. */
static bool stream_settle(h2front_t *fr, h2s_t *s) {
    if ((s->fin || s->req_cut) && reel_h2_stream_queued(fr->h2, s->sid) > 0)
        return false;
    if (s->cut_why) {
        /* a cut response's last held bytes went out: now the reset that
         * says it is not whole (nghttp2 would have sent it ahead of them) */
        fr->resets_queued = true;
        cut_reset(fr, s,
                  reel_asprintf("%s (the %zu bytes of the response still queued in reel for the "
                                "HTTP/2 stream were then sent to the client before reel reset "
                                "the stream)",
                                s->cut_why, s->cut_held));
        return true;
    }
    if (s->req_cut && !reel_h2_stream_end_sent(fr->h2, s->sid))
        return false; /* the empty last DATA waits for the client's window */
    if (s->req_cut && !s->req_end) {
        /* after the END_STREAM, never before it: nghttp2 sends RST_STREAM
         * ahead of queued DATA and would drop the response's end */
        reel_h2_reset(fr->h2, s->sid, REEL_H2_NO_ERROR);
        fr->resets_queued = true;
    }
    reel_fin_t *f = s->fin;
    s->fin = NULL;
    stream_free(fr, s);
    reel__fin_end(f, NULL);
    return true;
}

/* Settles the completed streams whose DATA went out (after take_output). */
static void settle_streams(h2front_t *fr) {
    for (h2s_t *s = fr->streams, *next; s; s = next) {
        next = s->next;
        if (stream_waits_for_client(s))
            stream_settle(fr, s);
    }
}

/* The stream's response went whole to the codec and its request whole to
 * its lane: the lane is free for another stream (true), and the stream
 * waits (stream_settle) with its flow, taken from the lane's conn, for
 * its DATA to go out. While that conn has not read the whole request
 * (the rest of a body the origin answered early), the flow stays its own
 * (false): it ends it, reel__h2front_fin, then the stream completes. */
static bool stream_complete(h2front_t *fr, h2s_t *s) {
    lane_t *l = s->lane;
    conn_t *in = l ? l->inner : NULL;
    if (s->fin == NULL && in && in->ex.flow && in->lane_stream == s->sid) {
        if (!in->ex.req_done)
            return false;
        s->fin = reel__fin_take(in);
    }
    stream_unlane(s);
    stream_settle(fr, s);
    return true;
}

/* The stream's response went whole to the codec while the client had not
 * ended its request body (RFC 9113 8.1: a server may answer before the
 * request is complete, an early 413 say, then tells the client to stop
 * sending with RST_STREAM NO_ERROR). Waiting for the rest, as the lane's
 * HTTP/1.1 exchange would, left the stream, its lane and the flow open
 * for as long as the client went on uploading (or forever, when it waits
 * for window the lane no longer gives), the flow then the client's error.
 * Now the flow is taken from the lane's conn as it stands: complete once
 * the response's END_STREAM has gone out (stream_settle), its request
 * body what the lane passed on and its request_end_us 0, as an HTTP/1.1
 * early answer's (exchange.c's reel__early_answer_ends). The body bytes the
 * lane has not taken are acknowledged and dropped, so is every DATA
 * that still comes (read_frames), and the lane's conn, stopped in the
 * middle of a request body, is closed with its origin connection (its
 * timer: this runs inside that conn's write) rather than kept. */
static void stream_cut(h2front_t *fr, h2s_t *s) {
    lane_t *l = s->lane;
    conn_t *in = l ? l->inner : NULL;
    if (s->fin == NULL && in && in->ex.flow && in->lane_stream == s->sid)
        s->fin = reel__fin_take(in);
    if (s->req_body + s->early.len)
        reel_h2_consume(fr->h2, s->sid, s->req_body + s->early.len);
    s->req_body = 0;
    reel_buf_reset(&s->req);
    reel_buf_reset(&s->early);
    s->req_cut = true;
    if (l) {
        l->cut = true;
        lane_later(l);
    }
    stream_unlane(s);
}

/* The stream's response went whole to the codec: it completes (true: its
 * lane is free), is cut (stream_cut: its lane goes) when the client is
 * still sending the body, or waits (false) for the lane to take the rest
 * of a body the client has ended, or for the END_STREAM of one the lane
 * has whole (its length reached: the client may end the stream with an
 * empty DATA frame after the answer). */
static bool stream_answered(h2front_t *fr, h2s_t *s) {
    if (s->req_sent)
        return stream_complete(fr, s);
    conn_t *in = s->lane ? s->lane->inner : NULL;
    bool whole = in && in->lane_stream == s->sid && in->ex.req_done;
    /* a WebSocket or CONNECT whose answer opened nothing (a 404, a 502):
     * what its client sends after is a tunnel's bytes with no tunnel,
     * which the lane would read as its next request (and answer 400) */
    bool refused = s->tunnel && !s->raw_open;
    if (!s->req_end && (refused || (!s->tunnel && !whole)))
        stream_cut(fr, s);
    return false;
}

bool reel__h2front_fin(conn_t *in, reel_fin_t *f) {
    lane_t *l = in->lane;
    h2front_t *fr = l ? l->fr : NULL;
    h2s_t *s = fr && l->s && l->s->sid == in->lane_stream ? l->s : NULL;
    if (s && s->tunnel)
        return false; /* its bytes are the tunnel's DATA: the lane's queue says */
    if (s == NULL || s->fin) {
        reel__fin_end(f, NULL); /* no stream left to wait for */
        return true;
    }
    s->fin = f;
    if (s->resp_end && s->req_sent && stream_complete(fr, s))
        lane_later(l); /* free for a waiting stream */
    return true;
}

/* The stream of lane conn in whose WebSocket or tunnel is over without
 * error, once the lane's remaining output went into it, if it still holds
 * bytes for the client; NULL (nothing to wait for) otherwise. */
static h2s_t *tunnel_over(conn_t *in) {
    lane_t *l = in->lane;
    h2front_t *fr = l ? l->fr : NULL;
    h2s_t *s = fr && l->s && l->s->sid == in->lane_stream ? l->s : NULL;
    if (s == NULL || !s->tunnel || s->fin || l->want_close)
        return NULL;
    /* the server's last bytes the lane holds (its stream's queue was
     * full) go to the stream now: the lane goes, the stream stays */
    lane_pump_upto(l, SIZE_MAX);
    if (l->fr != fr || l->s != s || l->out.len || reel_h2_stream_queued(fr->h2, s->sid) == 0)
        return NULL; /* nothing left to send: the flow ends now */
    return s;
}

/* Stream s (tunnel_over) takes f and waits as a whole response does
 * (stream_settle, stream_end_fin): the stream ends after its frames; what
 * the client still sends goes nowhere (acknowledged, dropped:
 * read_frames), as after the lane. */
static void tunnel_wait(h2front_t *fr, h2s_t *s, reel_fin_t *f) {
    s->fin = f;
    if (!s->tunnel_ended) {
        s->tunnel_ended = true;
        reel_h2_submit_data(fr->h2, s->sid, NULL, 0, true);
    }
    if (s->req_body)
        reel_h2_consume(fr->h2, s->sid, s->req_body);
    s->req_body = 0;
    reel_buf_reset(&s->req);
    s->req_end = s->req_sent = s->resp_end = true;
    s->eof_pending = false;
    stream_unlane(s);
    flush_output(fr); /* may settle it at once */
}

bool reel__h2front_ws_end(conn_t *in) {
    if (in->ex.flow == NULL)
        return false;
    h2s_t *s = tunnel_over(in);
    if (s == NULL)
        return false;
    s->ws_fin = true; /* (a WebSocket in a CONNECT stream's tunnel too) */
    tunnel_wait(in->lane->fr, s, reel__fin_take(in));
    return true;
}

bool reel__h2front_tunnel_end(conn_t *in) {
    if (in->tflow == NULL)
        return false;
    h2s_t *s = tunnel_over(in);
    if (s == NULL)
        return false;
    tunnel_wait(in->lane->fr, s, reel__tflow_fin_take(in));
    return true;
}

/* Answers stream sid with status and a text/plain body reel writes; *rs
 * (when not NULL) the head as sent. false when it could not be sent. */
static bool answer_plain(h2front_t *fr, uint32_t sid, int status, const char *body,
                         reel_msg_head_t *rs) {
    static const reel_field_t hs[1] = {{"content-type", 12, "text/plain; charset=utf-8", 25}};
    reel_msg_head_t h = {.status = (uint32_t)status,
                         .reason = "",
                         .version = "HTTP/2.0",
                         .fields = hs,
                         .nfields = 1};
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_h2_submit_response(fr->h2, sid, &h, false, &err) != REEL_OK)
        return false;
    reel_h2_submit_data(fr->h2, sid, body, strlen(body), true);
    if (rs)
        *rs = h;
    return true;
}

/* The stream a lane leaves unfinished: reset, or answered 502 when nothing
 * was answered yet. */
static void lane_detach_unfinished(lane_t *l, const char *why) {
    h2front_t *fr = l->fr;
    h2s_t *s = l->s;
    if (fr == NULL || s == NULL)
        return;
    if (s->raw_open && l->inner && l->inner->tunnel_failed) {
        /* RFC 9113 8.5 (and RFC 8441 5 for a WebSocket): the TCP connection
         * to the origin failed (refused, reset): a stream error
         * CONNECT_ERROR, not a clean end */
        reel_h2_reset(fr->h2, s->sid, REEL_H2_CONNECT_ERROR);
    } else if (s->raw_open) {
        if (!s->tunnel_ended) /* the tunnel or WebSocket ended */
            reel_h2_submit_data(fr->h2, s->sid, NULL, 0, true);
    } else if (!s->resp_end) {
        if (!s->resp_started) {
            char *body = reel_asprintf("reel: %s\n", why);
            answer_plain(fr, s->sid, 502, body, NULL);
            free(body);
        } else {
            reel_h2_reset(fr->h2, s->sid, REEL_H2_INTERNAL_ERROR);
        }
    }
    stream_free(fr, s);
}

static void lane_unlink(lane_t *l) {
    h2front_t *fr = l->fr;
    if (fr == NULL)
        return;
    for (lane_t **pp = &fr->lanes; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            fr->nlanes--;
            break;
        }
}

/* A body without Content-Length or chunked framing ends at the close (RFC
 * 9112 6.3): a clean close of the lane conn ends the response whole,
 * END_STREAM. A cut one (the origin's reset, TLS without close_notify: the
 * conn aborts, reel_stack_abort) leaves the stream to be reset. So does
 * the origin's clean close while the exchange still passes on a request
 * body (reel__h2front_closed_answer): the lane would close only after it. */
static void lane_end_at_close(lane_t *l) {
    h2front_t *fr = l->fr;
    h2s_t *s = l->s;
    if (fr == NULL || s == NULL || l->f.st->reset || !s->resp_started || s->resp_end || s->raw_open)
        return;
    /* the rest of the body, whatever the client's window (one event a call:
     * the lane is closing) */
    for (size_t was = SIZE_MAX; l->fr && l->s && l->out.len && l->out.len < was;) {
        was = l->out.len;
        lane_pump_upto(l, SIZE_MAX);
    }
    s = l->s;
    if (l->fr == NULL || s == NULL || s->resp_end || l->out.len)
        return;
    reel_codec_event_t ev;
    if (reel_codec_feed_eof(l->resp, &ev) != REEL_OK || ev.type != REEL_CODEC_EV_END)
        return; /* a body its framing says is not whole yet */
    reel_h2_submit_data(fr->h2, s->sid, NULL, 0, true);
    s->resp_end = true;
    stream_answered(fr, s); /* its flow ends once the client has the DATA */
    flush_output(fr);
}

void reel__h2front_closed_answer(conn_t *in) {
    lane_t *l = in->lane;
    if (l && l->fr && l->s && l->s->sid == in->lane_stream)
        lane_end_at_close(l);
}

bool reel__h2front_cut(conn_t *in, const char *why) {
    lane_t *l = in->lane;
    h2front_t *fr = l ? l->fr : NULL;
    h2s_t *s = fr && l->s && l->s->sid == in->lane_stream ? l->s : NULL;
    if (s == NULL || s->tunnel || s->fin || !s->resp_started || s->resp_end || l->want_close ||
        in->ex.flow == NULL || fr->failing || fr->c->client.closing || fr->c->p->shutting_down)
        return false;
    /* the body bytes the lane still holds go to the stream first, whatever
     * the client's window (lane_end_at_close's loop): the stream's queue
     * is what waits for the client */
    for (size_t was = SIZE_MAX; l->fr == fr && l->s == s && l->out.len && l->out.len < was;) {
        was = l->out.len;
        lane_pump_upto(l, SIZE_MAX);
    }
    if (l->fr != fr || l->s != s || s->resp_end || l->want_close || in->ex.flow == NULL)
        return false; /* the lane's parser ended it meanwhile */
    size_t held = reel_h2_stream_queued(fr->h2, s->sid);
    if (held == 0)
        return false; /* nothing to wait for: reset at once */
    s->fin = reel__fin_take(in);
    s->cut_why = reel_strdup(why);
    s->cut_held = held;
    /* bounded as an HTTP/1 client's cut is (reel__exchange_cut): a client
     * whose window stays shut does not hold the stream forever */
    reel_proxy_t *p = fr->c->p;
    s->cut_until = uv_now(p->loop) +
                   (p->idle_timeout_ms < CUT_DELIVER_MS ? p->idle_timeout_ms : CUT_DELIVER_MS);
    /* what the client still sends on it goes nowhere (acknowledged and
     * dropped, read_frames), as after an early answer */
    if (s->req_body)
        reel_h2_consume(fr->h2, s->sid, s->req_body);
    s->req_body = 0;
    reel_buf_reset(&s->req);
    s->resp_end = true; /* no lane again: the origin's side is over */
    stream_unlane(s);
    reel__conn_arm(fr->c);
    return true;
}

uint64_t reel__h2front_cut_due(const conn_t *c) {
    uint64_t due = UINT64_MAX;
    if (c->h2)
        for (const h2s_t *s = c->h2->streams; s; s = s->next)
            if (s->cut_why && s->cut_until < due)
                due = s->cut_until;
    return due;
}

void reel__h2front_cut_expire(conn_t *c) {
    h2front_t *fr = c->h2;
    if (fr == NULL)
        return;
    uint64_t now = uv_now(c->p->loop);
    bool reset = false;
    for (h2s_t *s = fr->streams, *next; s; s = next) {
        next = s->next;
        if (s->cut_why == NULL || now < s->cut_until)
            continue;
        /* the client kept its window shut: the reset drops the rest */
        reset = true;
        cut_reset(fr, s,
                  reel_asprintf("%s (%zu of the %zu bytes of the response queued in reel for the "
                                "HTTP/2 stream were still not sent after waiting for the client "
                                "to take them, when reel reset the stream)",
                                s->cut_why, reel_h2_stream_queued(fr->h2, s->sid), s->cut_held));
    }
    if (reset)
        reel__h2front_written(c); /* the RST_STREAMs out; the last stream after GOAWAY closes */
}

static void lane_close(reel_filter_t *f) {
    lane_t *l = (lane_t *)f;
    if (l->want_close)
        return;
    l->want_close = true;
    l->reading = false;
    h2front_t *fr = l->fr;
    lane_end_at_close(l);
    lane_detach_unfinished(l, "the connection to the origin ended before the response");
    lane_unlink(l);
    l->fr = NULL;
    l->inner = NULL;
    lane_later(l);
    if (fr) {
        dispatch(fr); /* one lane fewer: a waiting stream may get a new one */
        kick(fr);
    }
}

static void on_lane_timer_closed(uv_handle_t *h) {
    lane_t *l = h->data;
    reel_codec_free(l->resp);
    reel_buf_free(&l->out);
    free(l);
}

static void lane_destroy(reel_filter_t *f) {
    lane_t *l = (lane_t *)f;
    uv_close((uv_handle_t *)&l->timer, on_lane_timer_closed);
}

static const reel_filter_ops_t lane_ops = {
    .name = "h2-lane",
    .send = lane_send,
    .shutdown = lane_shutdown,
    .queued = lane_queued,
    .is_open = lane_is_open,
    .set_reading = lane_set_reading,
    .info = lane_info,
    .close = lane_close,
    .destroy = lane_destroy,
};

/* Hands the stream's pending request bytes to the lane conn, if it reads. */
static void lane_deliver(lane_t *l) {
    h2front_t *fr = l->fr;
    h2s_t *s = l->s;
    if (fr == NULL || s == NULL || !l->reading || l->want_close)
        return;
    bool eof = s->tunnel && s->eof_pending && s->raw_open;
    /* an END_STREAM alone (an empty DATA frame after a body the lane had
     * whole: its content-length) ends the request too; it used to leave
     * the stream, its flow and its lane waiting until the connection
     * ended */
    bool end_only = s->req_end && !s->req_sent && !s->tunnel;
    if (s->req.len == 0 && !eof && !end_only)
        return;
    s->eof_pending = s->eof_pending && !eof;
    reel_buf_t b = s->req;
    reel_buf_init(&s->req, 0);
    if (s->req_body)
        reel_h2_consume(fr->h2, s->sid, s->req_body);
    s->req_body = 0;
    bool idle = false;
    uint32_t sid = s->sid;
    if (s->req_end) {
        s->req_sent = true;
        idle = s->resp_end; /* answered already: the lane is idle after these bytes */
    }
    /* the lane conn may answer, close or pause inside: s may be gone (its
     * conn ends the flow with the request's end, reel__h2front_fin) */
    size_t n = b.len;
    if (n)
        reel_filter_up(&l->f, b.data, n);
    reel_buf_free(&b);
    if (eof && !l->want_close)
        reel_filter_up_eof(&l->f, NULL); /* the client's side of the WebSocket ended */
    if (!l->want_close && (n || eof))
        reel_filter_read_done(&l->f);
    if (idle && !l->want_close && l->fr && l->s && l->s->sid == sid && !stream_complete(fr, l->s))
        idle = false;
    if (idle && !l->want_close)
        lane_later(l); /* then a stream waiting for a lane may have this one */
}

static void on_lane_timer(uv_timer_t *t) {
    lane_t *l = t->data;
    if (l->want_close) {
        reel_stack_closed_once(l->f.st, &l->closed); /* destroys l (after the timer's close) */
        return;
    }
    if (l->f.st->closing)
        return;
    h2front_t *fr = l->fr;
    if (l->cut && l->inner) {
        reel__conn_close(l->inner); /* (lane_close then lets the front go on) */
        return;
    }
    if (l->inner && l->inner->state == C_LINGER) {
        reel_filter_up_eof(&l->f, NULL); /* nobody is left to read: the lane ends */
        return;
    }
    lane_deliver(l);
    if (fr && !l->want_close) {
        /* the lane may be idle now (its conn is back at a request head,
         * which it was not inside the call that ended the response) */
        dispatch(fr);
        flush_output(fr);
    }
}

static void lane_later(lane_t *l) {
    uv_timer_start(&l->timer, on_lane_timer, 0, 0);
}

/* Stream s's answer opened its tunnel: the DATA that came before goes
 * to its lane l (after this write of the lane's, which is the answer). */
static void tunnel_open(lane_t *l, h2s_t *s) {
    s->raw_open = true;
    if (s->early.len == 0)
        return;
    reel_buf_append(&s->req, s->early.data, s->early.len);
    s->req_body += s->early.len;
    reel_buf_free(&s->early);
    reel_buf_init(&s->early, 0);
    lane_later(l);
}

static lane_t *lane_new(h2front_t *fr) {
    conn_t *c = fr->c;
    lane_t *l = reel_calloc(1, sizeof *l);
    l->f.ops = &lane_ops;
    l->fr = fr;
    reel_buf_init(&l->out, 0);
    l->resp = reel_h1_codec_new(REEL_H1_RESPONSE, NULL);
    uv_timer_init(c->p->loop, &l->timer);
    l->timer.data = l;
    reel_strcpy_to(l->remote, sizeof l->remote, c->client_addr);
    /* at the tail: dispatch() walks the lanes in this order, so requests
     * given lanes in one pass start (get their flow ids; their start
     * times are their HEADERS') and go to the origin in the order the
     * client sent them */
    lane_t **tail = &fr->lanes;
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
    fr->nlanes++;
    conn_t *in = reel__conn_new(c->p, &l->f, c->client_ip, false);
    l->inner = in;
    in->lane = l;
    in->id = c->id;
    in->in_tunnel = c->in_tunnel;
    in->tunnel_tls = c->tunnel_tls;
    in->reverse = c->reverse;
    in->transparent = c->transparent;
    in->tunnel_host = c->tunnel_host ? reel_strdup(c->tunnel_host) : NULL;
    in->tunnel_port = c->tunnel_port;
    in->tunnel_sni = c->tunnel_sni ? reel_strdup(c->tunnel_sni) : NULL;
    return l;
}

/* Gives waiting streams a lane, oldest first: an idle one, else a new one
 * while there are fewer than MAX_LANES. */
static void assign_lanes(h2front_t *fr) {
    for (h2s_t *s = fr->streams; s; s = s->next) {
        if (s->lane || !s->head_built || s->resp_end)
            continue;
        lane_t *l = NULL;
        for (lane_t *k = fr->lanes; k; k = k->next)
            if (k->s == NULL && !k->want_close && !k->cut && k->inner &&
                k->inner->state == C_HEAD && k->inner->ex.flow == NULL &&
                k->inner->client.in.len == 0) {
                l = k;
                break;
            }
        if (l == NULL) {
            if (fr->nlanes >= MAX_LANES)
                break; /* the rest wait for a lane to finish its stream */
            l = lane_new(fr);
        }
        l->s = s;
        s->lane = l;
        l->inner->lane_fields = s->fields;
        l->inner->lane_nfields = s->nfields;
        l->inner->lane_stream = s->sid;
        l->inner->lane_came_us = s->came_us;
        l->inner->lane_trailers = s->trailers;
        l->inner->lane_ntrailers = s->ntrailers;
        l->inner->lane_tunnel = false; /* (its conn, when it served a tunnel, closed with it) */
        reel_h1_expect_response(reel_h1_codec_parser(l->resp), strcmp(s->method, "HEAD") == 0,
                                s->connect);
    }
}

/* ---- responses: what a lane writes, to its stream ---- */

static void lane_pump(lane_t *l) {
    lane_pump_upto(l, HIGH_WATER);
}

/* Parses what the lane wrote into its stream while the stream's queue
 * holds less than high. */
static void lane_pump_upto(lane_t *l, size_t high) {
    h2front_t *fr = l->fr;
    if (fr == NULL)
        return;
    bool freed = false; /* a stream completed: its lane is idle */
    bool fed = false;   /* something was submitted: output to flush */
    while (l->out.len || l->s) {
        h2s_t *s = l->s;
        if (s == NULL) {
            reel_buf_reset(&l->out); /* nothing to answer: the lane spoke out of turn */
            break;
        }
        if (reel_h2_stream_queued(fr->h2, s->sid) >= high)
            break; /* the client's window or socket is full: wait */
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(l->resp, l->out.data, l->out.len, &used, &ev);
        if (rc == REEL_NEED_MORE) {
            reel_buf_consume(&l->out, used);
            break;
        }
        fed = true;
        reel_err_t err;
        reel_err_clear(&err);
        if (rc != REEL_OK) {
            lane_detach_unfinished(l, ev.error_reason ? ev.error_reason : "bad response");
            if (l->inner)
                reel__conn_close(l->inner);
            break;
        }
        const reel_h1_head_t *h = &ev.h1.head;
        switch (ev.type) {
        case REEL_CODEC_EV_HEAD: {
            if (!h->interim && s->resp_started)
                break;
            reel_field_t *kept = NULL;
            reel_msg_head_t rs = {.status = (uint32_t)h->status,
                                  .fields = h->headers,
                                  .nfields = h->nheaders};
            if (s->connect && !h->interim && h->status >= 200 && h->status < 300)
                tunnel_open(l, s); /* the tunnel is up: bytes both ways */
            /* (only from an up-lane: an HTTP/1.1 origin may send a field
             * of that name, which is then its own) */
            bool from_h2 = l->inner && l->inner->up && l->inner->up->h2;
            for (size_t i = 0; from_h2 && h->status != 101 && i < h->nheaders && !kept; i++) {
                if (!reel__is_lane_length(&h->headers[i]))
                    continue;
                /* an HTTP/2 origin's content-length, its body chunked for
                 * the trailers that may follow (core/h2up.c) */
                kept = reel_calloc(h->nheaders, sizeof *kept);
                memcpy(kept, h->headers, h->nheaders * sizeof *kept);
                kept[i].name = "content-length";
                kept[i].name_len = 14;
                rs.fields = kept;
            }
            if (h->status == 101) {
                if (!s->ws)
                    break; /* no Upgrade is ever sent otherwise */
                /* RFC 8441 5: the switch is a 200 on the stream; the
                 * handshake's own fields stay on the HTTP/1.1 side */
                kept = reel_calloc(h->nheaders ? h->nheaders : 1, sizeof *kept);
                size_t n = 0;
                for (size_t i = 0; i < h->nheaders; i++)
                    if (!field_is(&h->headers[i], "sec-websocket-accept"))
                        kept[n++] = h->headers[i];
                rs = (reel_msg_head_t){.status = 200, .fields = kept, .nfields = n};
                tunnel_open(l, s);
            }
            reel_rc src = reel_h2_submit_response(fr->h2, s->sid, &rs, false, &err);
            free(kept);
            if (src != REEL_OK) {
                lane_detach_unfinished(l, reel_err_str(&err));
                break;
            }
            if (!h->interim)
                s->resp_started = true;
            break;
        }
        case REEL_CODEC_EV_DATA:
        case REEL_CODEC_EV_RAW: /* WebSocket frames after the switch */
            reel_h2_submit_data(fr->h2, s->sid, ev.data, ev.len, false);
            break;
        case REEL_CODEC_EV_END:
            if (s->raw_open)
                break; /* the 101's end: the frames follow */
            if (ev.h1.ntrailers)
                reel_h2_submit_trailers(fr->h2, s->sid, ev.h1.trailers, ev.h1.ntrailers, &err);
            else
                reel_h2_submit_data(fr->h2, s->sid, NULL, 0, true);
            s->resp_end = true;
            /* the lane is idle again once the request is whole too (an
             * origin may answer before it read the body: the rest of one
             * the client has ended still goes to the lane, as it would on
             * HTTP/1.1; one it is still sending is cut, stream_cut) */
            if (stream_answered(fr, s))
                freed = true;
            break;
        default:
            break;
        }
        reel_buf_consume(&l->out, used); /* ev's data pointed into it */
        if (l->fr == NULL || l->want_close)
            break;
    }
    /* in a batch (many lanes answering after one read of the origin's),
     * one write for all of them at its end */
    if (fed && !fr->flush_queued && reel__batch_defer(fr->c->p, false, fr->c))
        fr->flush_queued = true;
    else if (fed && !fr->flush_queued)
        flush_output(fr);
    if (freed && !l->want_close)
        lane_later(l); /* its conn finishes the response first: dispatch then */
}

/* ---- the client side ---- */

static void flush_output(h2front_t *fr) {
    peer_t *cl = &fr->c->client;
    do { /* again for the RST_STREAMs of streams settled after their END */
        if (cl->closing || reel__peer_queued(cl) >= HIGH_WATER)
            return;
        fr->resets_queued = false;
        reel_buf_t out;
        reel_buf_init(&out, 0);
        reel_h2_take_output(fr->h2, &out);
        if (out.len)
            reel__peer_write(cl, out.data, out.len);
        reel_buf_free(&out);
        settle_streams(fr);
    } while (fr->resets_queued);
}

/* What the connection holds: the codec's frames and queued DATA, request
 * bytes not yet taken by lanes, response bytes lanes wrote not yet parsed. */
static void note_memory(h2front_t *fr) {
    size_t n = reel_h2_memory(fr->h2);
    for (h2s_t *s = fr->streams; s; s = s->next)
        n += s->req.len;
    for (lane_t *l = fr->lanes; l; l = l->next)
        n += l->out.len;
    reel__h2_memory_seen(fr->c->p, n);
}

/* Lets lanes go on after the client took bytes: parse what they wrote
 * meanwhile, tell their conns the queue shrank. */
static void kick(h2front_t *fr) {
    if (fr->pumping)
        return;
    fr->pumping = true;
    note_memory(fr);
    flush_output(fr);
    lane_t *next;
    for (lane_t *l = fr->lanes; l; l = next) {
        next = l->next;
        if (l->s) /* bytes to parse, or an event the parser holds (an END
                     after the bytes that made the stream's queue full) */
            lane_pump(l);
        if (l->fr && !l->want_close && lane_queued(&l->f) < LOW_WATER)
            reel_filter_written(&l->f);
    }
    fr->pumping = false;
    /* what the loop made (a conn told its queue is empty may close its
     * lane, which ends a WebSocket's stream): out now, not at the next
     * event, which may never come */
    flush_output(fr);
}

static void dispatch(h2front_t *fr) {
    if (fr->failing)
        return;
    if (fr->dispatching) {
        fr->again = true;
        return;
    }
    fr->dispatching = true;
    do {
        fr->again = false;
        assign_lanes(fr);
        for (lane_t *l = fr->lanes, *next; l; l = next) {
            next = l->next; /* a lane closed meanwhile stays allocated until its timer */
            lane_deliver(l);
        }
    } while (fr->again);
    fr->dispatching = false;
}

/* Ends s, whose response reel had read whole, and its flow: with
 * "<why> before <who> received the whole response" while unsent bytes of
 * it were still to go, else normally (the client had it all). */
static void stream_end_fin(h2front_t *fr, h2s_t *s, const char *why, const char *who,
                           size_t unsent) {
    reel_fin_t *f = s->fin;
    bool ws = s->ws || s->ws_fin, tunnel = s->tunnel;
    char *cut = s->cut_why;
    s->cut_why = NULL;
    s->fin = NULL;
    stream_free(fr, s);
    char *msg = NULL;
    /* "proxy shut down before the flow ended" says "before" once: the
     * clause below says what the flow's end was before */
    static const char ended[] = " before the flow ended";
    size_t wl = strlen(why);
    if (wl > sizeof ended - 1 && strcmp(why + wl - (sizeof ended - 1), ended) == 0)
        wl -= sizeof ended - 1;
    if (cut) {
        /* cut short by the origin, while reel still sent what it held */
        msg = reel_asprintf("%s; then %.*s before %s received the whole response (%zu bytes of "
                            "the response were still queued in reel for the HTTP/2 stream, not "
                            "sent)",
                            cut, (int)wl, why, who, unsent);
        STAT_ADD(fr->c->p, errors, 1);
        free(cut);
    } else if (unsent) {
        msg = reel_asprintf("%.*s before %s received the whole %s: the last %zu bytes of the %s "
                            "were not sent",
                            (int)wl, why, who,
                            ws       ? "WebSocket"
                            : tunnel ? "tunnel"
                                     : "response",
                            unsent, tunnel ? "stream" : "body");
        STAT_ADD(fr->c->p, errors, 1);
    }
    reel__fin_end(f, msg);
    free(msg);
}

/* Why a stream was reset: by the client, or by reel (local) because the
 * client broke HTTP/2 on it, with RST_STREAM or, when nghttp2 took the
 * offence for the connection's, with GOAWAY (owned). */
static char *reset_reason(const reel_codec_event_t *ev) {
    if (!ev->local)
        return reel_asprintf("the client reset the HTTP/2 stream (error code 0x%x %s)",
                             ev->error_code, reel_h2_error_name(ev->error_code));
    if (ev->after_goaway)
        return reel_asprintf("reel refused the HTTP/2 stream: the client opened it after reel's "
                             "GOAWAY (last_stream_id %u), and reel ignored it and never answered "
                             "(RFC 9113 6.8; the client may send it again on a new connection); "
                             "%s",
                             ev->last_stream, ev->error_reason ? ev->error_reason : "");
    if (ev->goaway)
        return reel_asprintf("reel closed the HTTP/2 connection with GOAWAY %s (0x%x) for a frame "
                             "on this stream: %s",
                             reel_h2_error_name(ev->error_code), ev->error_code,
                             ev->error_reason ? ev->error_reason : "the client broke HTTP/2");
    return reel_asprintf("reel reset the HTTP/2 stream with RST_STREAM %s (0x%x): %s",
                         reel_h2_error_name(ev->error_code), ev->error_code,
                         ev->error_reason ? ev->error_reason : "the client broke HTTP/2");
}

/* A flow for a stream reel reset before a lane's exchange had started
 * one (a malformed request the codec refused, with what it had read of
 * the head; a request whose body broke its content-length before it
 * reached a lane): the request as far as it was known and, as its error,
 * the reset reel answered and why, as an HTTP/1.1 request refused with
 * 400 is recorded (exchange.c's reel__record_rejected). */
static void record_refused(h2front_t *fr, uint32_t sid, int64_t came_us,
                           const reel_msg_head_t *head, const uint8_t *body, size_t nbody,
                           const reel_msg_head_t *answer, const char *answer_body,
                           const char *why) {
    conn_t *c = fr->c;
    reel__connect_head_drop(c); /* its tunnel's flows are its streams (stream_new) */
    /* started when its HEADERS came (came_us; 0: now), as a lane's flow
     * is (exchange.c's start_flow) */
    reel_capture_flow_t *f = reel__flow_start(c, REEL_CAPTURE_HTTP, NULL, sid, came_us);
    STAT_ADD(c->p, flows, 1);
    reel_msg_head_t m = *head;
    if (m.host[0] == '\0' && c->in_tunnel && c->tunnel_host) {
        m.host = c->tunnel_host;
        m.port = (uint32_t)c->tunnel_port;
    }
    if (m.scheme[0] == '\0')
        m.scheme = c->in_tunnel && reel__tunnel_https(c) ? "https" : "http";
    reel_capture_request(f, &m);
    if (nbody)
        reel_capture_body(f, false, body, nbody);
    if (answer) { /* what reel answered, when it answered */
        reel_capture_response(f, answer, true, 0);
        reel_capture_body(f, true, answer_body, strlen(answer_body));
    }
    reel_capture_end_t e = {.error = why};
    reel_capture_finish(f, &e);
    STAT_ADD(c->p, errors, 1);
}

/* A flow of its own for stream s, which no lane's exchange recorded: the
 * request as the client sent it, body[0..nbody) of its body, and why it
 * ended. */
static void record_stream(h2front_t *fr, const h2s_t *s, const uint8_t *body, size_t nbody,
                          const char *why) {
    reel_msg_head_t m = {.method = s->ws ? "CONNECT" : s->method,
                         .scheme = s->scheme,
                         .host = s->host,
                         .port = s->port,
                         .path = s->path,
                         .version = "HTTP/2.0",
                         .fields = s->fields,
                         .nfields = s->nfields};
    record_refused(fr, s->sid, s->came_us, &m, body, nbody, NULL, NULL, why);
}

/* record_refused for a head as the codec gives it, where an extended
 * CONNECT's :protocol is the scheme: recorded as stream_new records one,
 * :protocol the first field and the scheme the connection's. */
static void record_refused_head(h2front_t *fr, uint32_t sid, const reel_msg_head_t *h,
                                const reel_msg_head_t *answer, const char *answer_body,
                                const char *why) {
    conn_t *c = fr->c;
    if (strcmp(h->method, "CONNECT") != 0 || h->scheme[0] == '\0') {
        record_refused(fr, sid, 0, h, NULL, 0, answer, answer_body, why);
        return;
    }
    reel_field_t *fields = reel_calloc(h->nfields + 1, sizeof *fields);
    fields[0] = (reel_field_t){":protocol", 9, h->scheme, strlen(h->scheme)};
    for (size_t i = 0; i < h->nfields; i++)
        fields[i + 1] = h->fields[i];
    reel_msg_head_t m = *h;
    m.scheme = c->in_tunnel && reel__tunnel_https(c) ? "https" : "http";
    m.fields = fields;
    m.nfields = h->nfields + 1;
    record_refused(fr, sid, 0, &m, NULL, 0, answer, answer_body, why);
    free(fields);
}

/* An extended CONNECT (RFC 8441) for a protocol other than websocket
 * (connect-udp, ...): reel carries none, and taking it for a plain CONNECT
 * gave the client a 200 and a TCP tunnel for, say, its UDP. Answered 501
 * and recorded as sent, :protocol first as for a WebSocket. */
static void refuse_protocol(h2front_t *fr, uint32_t sid, const reel_msg_head_t *h) {
    char *why = reel_asprintf("an extended CONNECT for :protocol %s: reel carries websocket only "
                              "(RFC 8441)",
                              h->scheme);
    char *body = reel_asprintf("reel: %s\n", why);
    reel_msg_head_t rs;
    bool sent = answer_plain(fr, sid, 501, body, &rs);
    record_refused_head(fr, sid, h, sent ? &rs : NULL, body, why);
    free(body);
    free(why);
}

/* A stream reset by the client, or by reel (ev->local): its flow ends
 * with why at once, and its lane's conn is closed, which aborts the
 * request toward the origin. The body bytes the client had sent that
 * no lane took yet are the record's all the same (a body with a length:
 * they wait in req as they came). */
static void stream_reset(h2front_t *fr, h2s_t *s, const reel_codec_event_t *ev) {
    lane_t *l = s->lane;
    size_t unsent = ev->len;
    char *why = reset_reason(ev);
    conn_t *in = l ? l->inner : NULL;
    bool flow = s->fin || (in && in->ex.flow && in->lane_stream == s->sid);
    const uint8_t *body = NULL;
    size_t nbody = 0;
    /* a request the client cancelled while it waited for a lane (every
     * lane busy): reel had it whole, head and body as far as they came, and
     * it never went on; it is a flow all the same, ended by the reset */
    bool waiting = !ev->local && !flow && l == NULL && s->head_built && !s->tunnel && !s->resp_end;
    if ((ev->local || waiting) && !s->chunked && !s->tunnel && (!s->req_end || waiting) &&
        s->req_body <= s->req.len) {
        nbody = s->req_body;
        body = s->req.data + s->req.len - nbody;
    }
    if (ev->local && flow && !s->fin && nbody)
        reel_capture_body(in->ex.flow, false, body, nbody);
    if ((ev->local && !flow) || waiting) /* reset before its lane started a flow */
        record_stream(fr, s, body, nbody, why);
    if (s->fin) {
        /* after reel had read the whole response, before it was sent */
        stream_end_fin(fr, s, why, ev->local ? "the client" : "it", unsent);
    } else if (in) {
        if (unsent) /* a tunnel's exchanges waiting for its DATA to go */
            reel__fins_undelivered(in, why);
        if (in->state == C_SNIFF) /* a CONNECT whose bytes said nothing yet */
            reel__tunnel_abandoned(in, why);
        stream_free(fr, s);
        reel__finish_flow(in, why);
        reel__conn_close(in);
    } else {
        stream_free(fr, s);
    }
    free(why);
}

/* Ends every stream (the client connection is going): their flows end
 * with why. */
static void front_fail_all(h2front_t *fr, const char *why) {
    fr->failing = true;
    while (fr->streams) {
        h2s_t *s = fr->streams;
        lane_t *l = s->lane;
        conn_t *in = l ? l->inner : NULL;
        if (s->fin) { /* whole from the origin, not all sent to the client */
            stream_end_fin(fr, s, why, "the client", reel_h2_stream_queued(fr->h2, s->sid));
            continue;
        }
        if (in && reel_h2_stream_queued(fr->h2, s->sid)) /* as in a reset */
            reel__fins_undelivered(in, why);
        if (l == NULL && s->head_built && !s->tunnel && !s->resp_end) {
            /* it waited for a lane (every one busy) when the connection
             * ended: reel had the request, which never went on */
            bool whole = !s->chunked && s->req_body <= s->req.len;
            record_stream(fr, s, whole ? s->req.data + s->req.len - s->req_body : NULL,
                          whole ? s->req_body : 0, why);
        }
        if (in && in->state == C_SNIFF) /* a CONNECT whose bytes said nothing yet */
            reel__tunnel_abandoned(in, why);
        stream_free(fr, s);
        if (in) {
            reel__finish_flow(in, why);
            reel__conn_close(in);
        }
    }
}

conn_t *reel__h2front_conn(conn_t *lane_conn) {
    lane_t *l = lane_conn->lane;
    return l && l->fr ? l->fr->c : NULL;
}

bool reel__h2front_start(conn_t *c) {
    peer_t *cl = &c->client;
    if (c->h2 || !c->p->http2)
        return c->h2 != NULL;
    bool h2 = false, alpn = false;
    bool tls = c->in_tunnel && c->tunnel_tls; /* (the CONNECT was its request 1) */
    if (tls) {
        reel_stack_info_t info;
        reel_stack_info(&cl->st, &info);
        h2 = info.alpn && strcmp(info.alpn, "h2") == 0;
        alpn = info.alpn && info.alpn[0];
    }
    /* Without ALPN (a client that offered none, or only h2 to an origin
     * that speaks HTTP/1.1, which reel then declines) the first bytes
     * say, as they do in the clear: the HTTP/2 preface is HTTP/2. It used
     * to be fed to the HTTP/1 parser, which answered 505. */
    if (!h2 && !alpn && (c->ex.client_sid == 0 || tls) && cl->in.len) {
        size_t n = cl->in.len < REEL_H2_PREFACE_LEN ? cl->in.len : REEL_H2_PREFACE_LEN;
        if (memcmp(cl->in.data, REEL_H2_PREFACE, n) != 0)
            return false;
        if (n < REEL_H2_PREFACE_LEN)
            return true; /* maybe: wait for the rest (state stays C_HEAD) */
        h2 = true;
    }
    if (!h2)
        return false;
    h2front_t *fr = reel_calloc(1, sizeof *fr);
    fr->c = c;
    reel_h2_opts_t o = {.connect_protocol = true}; /* RFC 8441 WebSockets */
    fr->codec = reel_h2_codec_new(REEL_H2_SERVER, &o);
    fr->h2 = reel_h2_codec_h2(fr->codec);
    c->h2 = fr;
    c->state = C_H2;
    STAT_ADD(c->p, h2_connections, 1);
    flush_output(fr); /* our SETTINGS */
    return true;
}

bool reel__h2front_busy(const conn_t *c) {
    /* a stream only waiting for the client to take its DATA does not
     * count: a client that stops reading is let go at idle_timeout */
    if (c->h2 == NULL)
        return false;
    for (const h2s_t *s = c->h2->streams; s; s = s->next)
        if (!stream_waits_for_client(s) || s->cut_why) /* a cut one: its own deadline */
            return true;
    return false;
}

/* Reads the client's frames in cl->in (input false: only the events still
 * queued, such as the GOAWAY reel just sent). Returns why the connection
 * must end (owned), or NULL. */
static char *read_frames(h2front_t *fr, bool input) {
    peer_t *cl = &fr->c->client;
    char *fatal = NULL;
    for (;;) {
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(fr->codec, input ? cl->in.data : NULL,
                                     input ? cl->in.len : 0, &used, &ev);
        reel_buf_consume(&cl->in, used);
        if (rc == REEL_NEED_MORE)
            break;
        if (rc != REEL_OK) {
            if (fatal == NULL)
                fatal = reel_asprintf("HTTP/2 protocol error from the client: %s",
                                      ev.error_reason ? ev.error_reason : "unknown");
            break;
        }
        h2s_t *s = ev.stream ? stream_find(fr, ev.stream) : NULL;
        switch (ev.type) {
        case REEL_CODEC_EV_HEAD:
            if (s == NULL && strcmp(ev.head.method, "CONNECT") == 0 && ev.head.scheme &&
                ev.head.scheme[0] && strcmp(ev.head.scheme, "websocket") != 0)
                refuse_protocol(fr, ev.stream, &ev.head); /* :protocol comes as the scheme */
            else if (s == NULL)
                stream_new(fr, ev.stream, &ev.head);
            break;
        case REEL_CODEC_EV_DATA:
            if (s == NULL || s->req_end || s->req_cut || s->cut_why) { /* answered already */
                reel_h2_consume(fr->h2, ev.stream, ev.len);
                break;
            }
            if (!s->head_built)
                build_head(fr, s, true);
            if (s->tunnel && !s->raw_open) { /* held until the answer opens it */
                reel_buf_append(&s->early, ev.data, ev.len);
                break;
            }
            if (s->tunnel) { /* frames or tunnel bytes, as they are */
                reel_buf_append(&s->req, ev.data, ev.len);
                s->req_body += ev.len;
                break;
            }
            if (s->chunked && ev.len)
                reel_buf_printf(&s->req, "%zx\r\n", ev.len);
            reel_buf_append(&s->req, ev.data, ev.len);
            if (s->chunked && ev.len)
                reel_buf_puts(&s->req, "\r\n");
            s->req_body += ev.len;
            break;
        case REEL_CODEC_EV_END:
            if (s == NULL || s->req_end)
                break;
            if (s->req_cut || s->cut_why) {
                s->req_end = true; /* (req_cut: no RST_STREAM needed, the stream is closed) */
                break;
            }
            if (!s->head_built)
                build_head(fr, s, false);
            if (s->tunnel) {
                s->eof_pending = true; /* the client ended its side of the tunnel */
                break;
            }
            if (!s->chunked && ev.ntrailers)
                stream_trailers(s, ev.trailers, ev.ntrailers);
            if (s->chunked) {
                reel_buf_puts(&s->req, "0\r\n");
                for (size_t i = 0; i < ev.ntrailers; i++) {
                    reel_buf_append(&s->req, ev.trailers[i].name, ev.trailers[i].name_len);
                    reel_buf_puts(&s->req, ": ");
                    reel_buf_append(&s->req, ev.trailers[i].value, ev.trailers[i].value_len);
                    reel_buf_puts(&s->req, "\r\n");
                }
                reel_buf_puts(&s->req, "\r\n");
            }
            s->req_end = true;
            break;
        case REEL_CODEC_EV_RESET:
            if (s)
                stream_reset(fr, s, &ev);
            else if (ev.local && ev.head.version) {
                /* refused before its head was reported: malformed, one
                 * stream too many, or one after reel's GOAWAY (then with
                 * no head at all) */
                char *why = reset_reason(&ev);
                record_refused_head(fr, ev.stream, &ev.head, NULL, NULL, why);
                free(why);
            }
            break;
        case REEL_CODEC_EV_GOAWAY:
            fr->goaway = true;
            if (ev.error_code != REEL_H2_NO_ERROR && fatal == NULL) {
                /* sent by the client (it says reel erred) or by reel (the
                 * client broke the protocol): either way the end */
                fatal = ev.local ? reel_asprintf("the client broke HTTP/2: %s (error code 0x%x %s)",
                                                 ev.error_reason, ev.error_code,
                                                 reel_h2_error_name(ev.error_code))
                                 : reel_asprintf("the client sent GOAWAY with error code 0x%x %s",
                                                 ev.error_code, reel_h2_error_name(ev.error_code));
            }
            break;
        default:
            break;
        }
    }
    /* heads whose END did not come with them: a body may follow */
    for (h2s_t *s = fr->streams; s; s = s->next)
        if (!s->head_built)
            build_head(fr, s, true);
    return fatal;
}

void reel__h2front_flush_deferred(conn_t *c) {
    h2front_t *fr = c->h2;
    if (fr == NULL || !fr->flush_queued)
        return;
    fr->flush_queued = false;
    if (!c->client.closing)
        kick(fr); /* writes, and tells lanes their stream's queue shrank */
}

/* Reads the codec's events (with the client's bytes if input) and hands
 * them to lanes; the fatal error it met, owned, or NULL. *gone: the
 * connection went meanwhile (then nothing is returned). */
static char *read_and_dispatch(h2front_t *fr, bool input, bool *gone) {
    conn_t *c = fr->c;
    char *fatal = read_frames(fr, input);
    if (input)
        note_memory(fr);
    reel__batch_begin(c->p);
    dispatch(fr);
    reel__batch_end(c->p);
    *gone = c->client.closing || c->h2 != fr;
    if (*gone) {
        free(fatal);
        fatal = NULL;
    }
    return fatal;
}

void reel__h2front_process(conn_t *c) {
    h2front_t *fr = c->h2;
    peer_t *cl = &c->client;
    bool gone = false;
    char *fatal = read_and_dispatch(fr, true, &gone);
    if (gone)
        return;
    /* WINDOW_UPDATEs may have let queued DATA go: lanes waiting on their
     * stream's queue go on (a socket write that completes at once reports
     * no `written`) */
    kick(fr);
    if (fatal == NULL && !reel_h2_alive(fr->h2)) {
        fatal = read_frames(fr, false); /* the GOAWAY reel just sent is an event now */
    } else if (fatal == NULL && reel_h2_has_events(fr->h2)) {
        /* so is an RST_STREAM nghttp2 sent of its own accord (a padded
         * DATA frame over content-length, seen only when it goes out):
         * its stream ends now, not at the client's next frame */
        fatal = read_and_dispatch(fr, false, &gone);
        if (gone)
            return;
    }
    if (fatal) {
        front_fail_all(fr, fatal);
        free(fatal);
        flush_output(fr); /* the GOAWAY nghttp2 queued */
        c->state = C_DONE;
        c->client.close_when_flushed = true;
        /* once the GOAWAY is out, read on for a while (C_LINGER, as
         * after an HTTP/1 error answer): streams the client opens
         * before it has read the GOAWAY are on the record, and a close
         * with its bytes unread would reset the connection, which can
         * destroy the GOAWAY before the client reads it */
        c->linger = !c->p->shutting_down;
        reel__peer_read_stop(cl);
        if (reel__peer_queued(cl) == 0)
            reel__conn_close_flushed(c);
        return;
    }
    if ((fr->goaway && fr->streams == NULL) || !reel_h2_alive(fr->h2)) {
        c->state = C_DONE;
        c->client.close_when_flushed = true;
        if (reel__peer_queued(cl) == 0)
            reel__conn_close(c);
    }
}

void reel__h2front_written(conn_t *c) {
    h2front_t *fr = c->h2;
    if (fr == NULL)
        return;
    kick(fr);
    /* after GOAWAY (either way) the connection ends with its last stream
     * (once flushed, a close planned already is close_if_flushed's: it
     * may linger) */
    if (fr->goaway && fr->streams == NULL && reel__peer_queued(&c->client) == 0 &&
        !c->client.closing && !c->client.close_when_flushed)
        reel__conn_close(c);
}

void reel__h2front_eof(conn_t *c) {
    if (c->h2)
        front_fail_all(c->h2, "the client closed the HTTP/2 connection");
    reel__conn_close(c);
}

void reel__h2front_linger(conn_t *c) {
    if (c->h2)
        free(read_frames(c->h2, true)); /* the connection is over already */
    reel_buf_reset(&c->client.in);
}

void reel__h2front_drain(conn_t *c) {
    h2front_t *fr = c->h2;
    if (fr == NULL)
        return;
    reel_h2_goaway(fr->h2, REEL_H2_NO_ERROR);
    fr->goaway = true;
    flush_output(fr);
    if (fr->streams == NULL) {
        c->client.close_when_flushed = true;
        if (reel__peer_queued(&c->client) == 0)
            reel__conn_close(c);
    }
}

void reel__h2front_free(conn_t *c) {
    h2front_t *fr = c->h2;
    if (fr == NULL)
        return;
    c->h2 = NULL;
    front_fail_all(fr, c->p->shutting_down ? "proxy shut down before the flow ended"
                                           : "the client's HTTP/2 connection closed");
    while (fr->lanes) {
        lane_t *l = fr->lanes;
        fr->lanes = l->next;
        l->fr = NULL;
        conn_t *in = l->inner;
        if (in && !in->client.closing)
            reel__conn_close(in);
    }
    reel_codec_free(fr->codec);
    free(fr);
}
