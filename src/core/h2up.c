/* HTTP/2 to origins: one h2 connection per origin (a *session*), shared by
 * every connection of reel that sends requests to that origin, each
 * request its own stream.
 *
 * A conn_t speaks HTTP/1.1 to its upstream peer (core/exchange.c). When the
 * origin speaks h2, that peer's stack has no socket: its bottom filter is
 * an *up-lane* (this file), which reads the HTTP/1.1 requests the conn
 * writes, sends each as a stream of the origin's session (RFC 9113 8.3:
 * Host becomes :authority, connection-specific fields are dropped, the
 * body is de-chunked, trailers go as trailers) and gives the conn the
 * stream's response as HTTP/1.1 (chunked when the origin gave no length,
 * its trailers on the last chunk, 1xx heads as they came). The conn keeps
 * doing what it does for any upstream: timeouts, the keep-alive retry,
 * reel's own 502/504, and the record. The record says what the origin
 * sent: the response is recorded with version HTTP/2.0 and the origin's
 * fields (core/exchange.c leaves out the Transfer-Encoding this file adds).
 *
 *   conn ── up-lane ─┐
 *   conn ── up-lane ─┼─ session (tcp, tls "h2", h2 client codec) ══ origin
 *   lane ── up-lane ─┘
 *
 * Which conns use it (core/peer.c): the lanes of an HTTP/2 client
 * connection (core/h2front.c), when the origin chose h2 the last time reel
 * offered it (ALPN mirrored: an HTTP/1.1 client gets HTTP/1.1 towards the
 * origin, as it would have without reel). An Upgrade: websocket request
 * goes as an extended CONNECT stream (RFC 8441) when the origin's session
 * allows it (SETTINGS_ENABLE_CONNECT_PROTOCOL): the up-lane sends
 * `CONNECT :protocol websocket` without the handshake's key, turns the
 * origin's 200 into the 101 the conn expects (Upgrade, Connection and a
 * Sec-WebSocket-Accept for the conn's key, the fields reel adds: the
 * record leaves them out and says 200, core/exchange.c), and from then on
 * the WebSocket frames go as the stream's DATA both ways. Any other
 * Upgrade, or a WebSocket to an origin whose h2 does not allow it, goes
 * over HTTP/1.1, but to an h2c origin, which speaks nothing else: every
 * WebSocket to it comes here, one that comes before the origin's SETTINGS
 * waits for them (hold_request), one they do not allow ends the up-lane
 * with why (the conn's 502). The conn's end of a WebSocket stream (its
 * client's, after the Close frames) is END_STREAM (ulane_shutdown).
 *
 * Streams beyond the origin's SETTINGS_MAX_CONCURRENT_STREAMS wait in
 * nghttp2's queue for one to close. Stream ids are the session's own; the
 * flow keeps its client's. An origin's GOAWAY moves new requests to a new
 * session; streams it did not process (above its last stream id) end
 * cleanly, so that the conn sends them again (its keep-alive retry), and
 * the others finish on the old one. Server push is refused (ENABLE_PUSH 0,
 * core/h2.c).
 *
 * Flow control end to end: a stream's DATA is acknowledged to the origin
 * (reel_h2_consume) only once its conn has taken the bytes, which it does
 * only while its client keeps up; the request body waits in the stream's
 * queue while the origin's window is closed, and the conn stops reading
 * its client meanwhile (the up-lane's queued()).
 *
 * An origin that breaks HTTP/2 for the whole connection (a WINDOW_UPDATE
 * of 0 on it, a header block that does not decode) gets reel's GOAWAY with
 * the error, and then the connection is over (RFC 9113 5.4.1): every
 * stream on it ends at once with that GOAWAY, code and why, as its error
 * (the conn answers 502 when nothing of the response came), and reel
 * closes the connection once the GOAWAY has left, or after
 * GOAWAY_FLUSH_MS, whether or not the origin closes it. An origin that
 * never did used to keep it open: its streams waited for upstream_timeout
 * and new requests went out on it.
 *
 * Lifetimes: a session belongs to the proxy (p->h2up); it closes when its
 * origin or its TLS fails, after GOAWAY once its last stream ended, once
 * reel's own GOAWAY for an error has left, after idle_timeout with no
 * up-lane attached, and at shutdown (counted in p->closing_handles until
 * its handles are closed). An up-lane belongs to its conn's peer stack;
 * detached from its session when that closes. */

#include <openssl/evp.h>

#include "core/conn.h"
#include "core/h2.h"
#include "core/tcp.h"
#include "core/tls_filter.h"

typedef struct h2sess h2sess_t;
typedef struct ulane ulane_t;

/* How long reel's GOAWAY for an origin's error may take to leave before
 * the connection is closed all the same. */
#define GOAWAY_FLUSH_MS 2000

struct ulane {
    reel_filter_t f; /* the conn's upstream bottom filter: first member */
    h2sess_t *s;     /* NULL once detached */
    ulane_t *next;   /* in s->lanes */
    bool https;
    char *host; /* for :authority when the request has no Host */
    int port;
    bool fresh; /* it opened its session: the dns/connect/TLS times are its flow's */
    /* requests from the conn */
    reel_codec_t *req;
    uint32_t sid;       /* current stream, 0: none (lane_bind / lane_unbind) */
    ulane_t *sid_next;  /* in its session's bysid bucket */
    h2sess_t *bound;    /* the session whose bysid holds it */
    bool sending;       /* request DATA may be waiting in its stream (s->nsending) */
    ulane_t *pend_next; /* in its session's pend list, when in_pend */
    bool in_pend;
    bool req_end;  /* the request's end was submitted */
    bool resp_end; /* the response's end was seen */
    bool is_head;
    /* the final response has no content by rule (to HEAD, a 204, a 304;
     * RFC 9113 8.1.1): its head is held (in `in`, from held_at) until the
     * stream's end, as DATA on it makes it malformed, which a proxy must
     * not forward: nghttp2 resets the stream then, and the conn gets that
     * error instead (its flow a 502 saying why), not the head */
    bool hold;
    size_t held_at;
    unsigned held_status;
    bool chunked; /* the response body goes to the conn chunked (REEL_LANE_LENGTH) */
    /* a WebSocket as an extended CONNECT stream (RFC 8441) */
    bool ws;       /* the stream is one */
    bool raw_req;  /* the conn's bytes go as DATA, unparsed (after its Upgrade) */
    bool raw_resp; /* the stream's DATA goes to the conn as is (after the 101) */
    unsigned synth; /* fields the 101 got from reel, at its end (core/exchange.c) */
    char *ws_key;   /* the conn's Sec-WebSocket-Key */
    /* a WebSocket's request that came before the origin's SETTINGS said
     * whether it may be a stream: its head (written as HTTP/1.1 again)
     * and every byte after it, fed again once they came
     * (sess_release_held) */
    reel_buf_t held;
    bool holding;
    /* responses for the conn, waiting until it reads */
    reel_buf_t in;
    size_t in_data;    /* DATA bytes in `in`, acknowledged once delivered... */
    uint32_t data_sid; /* ... on this stream (which may have ended meanwhile) */
    bool eof_pending;
    bool ended; /* its end was given (eof_pending, maybe delivered): once */
    char *eof_error;
    /* the stream ended after the origin had the request (a RST_STREAM
     * other than REFUSED_STREAM, a malformed response reel reset): the
     * conn must not send it again, RFC 9113 8.7 (reel__h2up_may_retry) */
    bool processed;
    /* ... or the origin said it did not process it (a GOAWAY's last stream
     * below it, REFUSED_STREAM): sent again also on a new connection
     * (reel__h2up_unprocessed) */
    bool unprocessed;
    bool reading, connected, want_close, closed;
    uv_timer_t timer;       /* deferred events */
    reel_stack_info_t info; /* the session's, kept for after it is gone */
    char remote[64], local[64], alpn[16], tls_version[32], cipher[64], sni[256];
    char via[300]; /* the session's upstream proxy ("": none) */
    char dns_override[320]; /* the dns_overrides entry its address came from ("": none) */
    /* the session's TLS refused the origin's certificate: why, and what
     * the origin's own certificate says ("": it did not) */
    char verify_error[128], peer_cert[400];
    /* ... or, made with verification off, what the check found (its
     * certificate's facts then in peer_cert) */
    char unchecked_error[128];
};

struct h2sess {
    reel_proxy_t *p;
    h2sess_t *next;
    char *key; /* "https host:port sni" */
    char *host, *sni;
    int port;
    bool https;
    reel_stack_t st;
    reel_codec_t *codec;
    reel_h2_t *h2;
    reel_buf_t in;
    ulane_t *lanes;
    size_t nlanes;
    /* up-lanes by stream id (a session may carry hundreds of streams: the
     * per-event lookup and the per-read passes must not walk them all) */
    ulane_t *bysid[64];
    size_t nsending; /* up-lanes with request DATA maybe queued */
    size_t nholding; /* up-lanes holding a WebSocket's request (ulane_t.held) */
    ulane_t *pend;   /* up-lanes that got response bytes in this read */
    size_t in_held;  /* response bytes its up-lanes hold for their conns */
    bool ready, dead, goaway, closing, processing;
    bool cut;          /* reel sent GOAWAY for an error: closes once that has left */
    bool flush_queued; /* its output waits for the end of a batch */
    int handles;       /* the stack and the idle timer, until their close callbacks */
    char *error;       /* why it ended */
    uint64_t id;
    uint64_t streams; /* opened so far */
    uv_timer_t idle;
};

static void sess_close(h2sess_t *s);
static void sess_cut(h2sess_t *s);
static void on_idle(uv_timer_t *t);
static void sess_idle_arm(h2sess_t *s);
static void sess_flush(h2sess_t *s);
static void sess_kick(h2sess_t *s);
static void ulane_later(ulane_t *l);
static void ulane_deliver(ulane_t *l);
static void lane_unbind(ulane_t *l);
static void ulane_send(reel_filter_t *f, const uint8_t *data, size_t len);

/* ---- the up-lane's response side: what goes to the conn ---- */

static void ulane_end(ulane_t *l, const char *error) {
    l->hold = false;
    if (l->ended) /* the first end says why; a lane is never used after it */
        return;
    l->ended = l->eof_pending = true;
    l->eof_error = error ? reel_strdup(error) : NULL;
    if (l->reading)
        ulane_later(l);
}

/* The fields as HTTP/1.1 lines; a content-length under REEL_LANE_LENGTH
 * when length_renamed. */
static void write_fields(reel_buf_t *b, const reel_field_t *fs, size_t n, bool length_renamed) {
    for (size_t i = 0; i < n; i++) {
        bool len = length_renamed && fs[i].name_len == 14 &&
                   strncasecmp(fs[i].name, "content-length", 14) == 0;
        reel_h1_append_field(b, len ? REEL_LANE_LENGTH : fs[i].name,
                             len ? sizeof REEL_LANE_LENGTH - 1 : fs[i].name_len, fs[i].value,
                             fs[i].value_len);
    }
}

/* Sec-WebSocket-Accept for key (RFC 6455 4.2.2), owned. */
static char *ws_accept(const char *key) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    if (x == NULL || EVP_DigestInit_ex(x, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(x, key, strlen(key)) != 1 ||
        EVP_DigestUpdate(x, guid, sizeof guid - 1) != 1 || EVP_DigestFinal_ex(x, md, &n) != 1)
        abort(); /* out of memory */
    EVP_MD_CTX_free(x);
    return reel_base64(md, n, NULL);
}

/* The origin's answer to a WebSocket stream: a 2xx is the switch (the 101
 * the conn waits for, with the fields HTTP/1.1 needs added at its end);
 * anything else an ordinary answer, and the stream's request is over. */
static bool ws_head(ulane_t *l, const reel_msg_head_t *h) {
    unsigned st = h->status;
    if (st < 200)
        return false;
    if (st >= 300) {
        l->ws = l->raw_req = false;
        reel_h1_upgrade_refused(reel_h1_codec_parser(l->req));
        if (!l->req_end && l->s && l->sid)
            reel_h2_submit_data(l->s->h2, l->sid, NULL, 0, true);
        l->req_end = true;
        return false;
    }
    reel_buf_puts(&l->in, "HTTP/1.1 101 Switching Protocols\r\n");
    write_fields(&l->in, h->fields, h->nfields, false);
    reel_buf_puts(&l->in, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    l->synth = 2;
    if (l->ws_key && !reel_h1_find_header(h->fields, h->nfields, "sec-websocket-accept")) {
        char *a = ws_accept(l->ws_key);
        reel_buf_printf(&l->in, "Sec-WebSocket-Accept: %s\r\n", a);
        free(a);
        l->synth = 3;
    }
    reel_buf_puts(&l->in, "\r\n");
    l->raw_resp = true;
    return true;
}

static void on_head(ulane_t *l, const reel_msg_head_t *h) {
    if (l->ws && ws_head(l, h))
        return;
    unsigned st = h->status;
    l->hold = st >= 200 && (l->is_head || st == 204 || st == 304);
    l->held_at = l->in.len;
    l->held_status = st;
    const char *reason = reel__status_text((int)st);
    /* a :status outside 100..999 (nghttp2 lets through three digits)
     * writes no status line, and the lane's parser refuses the answer */
    reel_h1_append_status_line(&l->in, (int)st, reason, strlen(reason));
    bool has_length = reel_h1_find_header(h->fields, h->nfields, "content-length") != NULL;
    bool body = st >= 200 && !l->is_head && st != 204 && st != 304;
    /* the conn parses this framing; the record leaves it out (it is
     * reel's: HTTP/2 has no Transfer-Encoding). Chunked whatever the
     * length, so that trailers after it have a place: the conn's record
     * has them, and its client, when it is a stream (a lane); an HTTP/1.1
     * client gets the body framed by the length, without them
     * (core/exchange.c, resp_head) */
    l->chunked = body;
    write_fields(&l->in, h->fields, h->nfields, body && has_length);
    if (l->chunked)
        reel_buf_puts(&l->in, "Transfer-Encoding: chunked\r\n");
    reel_buf_puts(&l->in, "\r\n");
}

static void on_data(ulane_t *l, const uint8_t *d, size_t n) {
    if (n == 0)
        return;
    if (l->chunked) {
        char hdr[REEL_H1_CHUNK_HEADER_MAX];
        size_t hl = reel_h1_chunk_header(n, hdr);
        reel_buf_append(&l->in, hdr, hl);
    }
    reel_buf_append(&l->in, d, n);
    if (l->chunked)
        reel_buf_puts(&l->in, "\r\n");
    l->in_data += n;
    l->data_sid = l->sid;
}

static void on_end(ulane_t *l, const reel_field_t *trailers, size_t n) {
    if (l->raw_resp) {
        /* the origin's side of the WebSocket is over: the conn's upstream
         * ends, as a socket's would */
        l->resp_end = true;
        ulane_end(l, NULL);
        return;
    }
    if (l->chunked)
        reel_h1_write_last_chunk(&l->in, trailers, n);
    l->resp_end = true;
    l->hold = false;
    if (l->req_end)
        lane_unbind(l); /* the stream is done: the next request opens another */
}

/* ---- sessions ---- */

static ulane_t *sess_lane(h2sess_t *s, uint32_t sid) {
    for (ulane_t *l = s->bysid[sid % 64]; l; l = l->sid_next)
        if (l->sid == sid)
            return l;
    return NULL;
}

/* The up-lane's stream is over (or it leaves its session): sid 0. */
static void lane_unbind(ulane_t *l) {
    h2sess_t *s = l->bound;
    if (s) {
        for (ulane_t **pp = &s->bysid[l->sid % 64]; *pp; pp = &(*pp)->sid_next)
            if (*pp == l) {
                *pp = l->sid_next;
                break;
            }
        if (l->sending)
            s->nsending--;
    }
    l->sending = false;
    l->bound = NULL;
    l->sid_next = NULL;
    l->sid = 0;
}

static void lane_bind(h2sess_t *s, ulane_t *l, uint32_t sid) {
    lane_unbind(l);
    l->sid = sid;
    l->bound = s;
    l->sid_next = s->bysid[sid % 64];
    s->bysid[sid % 64] = l;
}

/* Response bytes came for l in this read: delivered at its end. */
static void lane_pending(h2sess_t *s, ulane_t *l) {
    if (l->in_pend)
        return;
    l->in_pend = true;
    l->pend_next = s->pend;
    s->pend = l;
}

static void pend_clear(h2sess_t *s) {
    while (s->pend) {
        ulane_t *l = s->pend;
        s->pend = l->pend_next;
        l->in_pend = false;
    }
}

static void sess_detach(h2sess_t *s, ulane_t *l) {
    for (ulane_t **pp = &s->lanes; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            s->nlanes--;
            break;
        }
    if (l->sid && (!l->resp_end || !l->req_end) && !s->dead)
        reel_h2_reset(s->h2, l->sid, REEL_H2_CANCEL); /* its conn is gone */
    if (l->in_data && !s->dead)
        reel_h2_consume(s->h2, l->data_sid, l->in_data); /* the connection's window */
    if (l->holding)
        s->nholding--;
    l->in_data = 0;
    s->in_held -= l->in.len;
    l->s = NULL;
    lane_unbind(l);
    if (s->nlanes == 0 && !s->cut) { /* a cut one closes once its GOAWAY left */
        if (s->goaway || s->dead || s->p->shutting_down)
            sess_close(s);
        else if (!s->closing)
            sess_idle_arm(s);
    }
    if (!s->closing)
        sess_flush(s);
}

/* Keeps what the session's stack knows in the up-lane, for its info()
 * once the session is gone: the peer's ServerConn record. */
static void lane_copy_info(ulane_t *l, const reel_stack_info_t *i) {
    l->info = *i;
    reel_strcpy_to(l->remote, sizeof l->remote, i->remote);
    reel_strcpy_to(l->local, sizeof l->local, i->local);
    reel_strcpy_to(l->alpn, sizeof l->alpn, i->alpn ? i->alpn : ""); /* h2c: none */
    reel_strcpy_to(l->tls_version, sizeof l->tls_version, i->tls_version ? i->tls_version : "");
    reel_strcpy_to(l->cipher, sizeof l->cipher, i->cipher ? i->cipher : "");
    reel_strcpy_to(l->sni, sizeof l->sni, i->sni ? i->sni : "");
    reel_strcpy_to(l->via, sizeof l->via, i->via ? i->via : "");
    reel_strcpy_to(l->dns_override, sizeof l->dns_override, i->dns_override ? i->dns_override : "");
    reel_strcpy_to(l->verify_error, sizeof l->verify_error, i->verify_error ? i->verify_error : "");
    reel_strcpy_to(l->unchecked_error, sizeof l->unchecked_error,
                   i->unchecked_error ? i->unchecked_error : "");
    const char *cert = i->verify_error ? i->peer_cert : i->unchecked_cert;
    snprintf(l->peer_cert, sizeof l->peer_cert, "%s", cert ? cert : "");
}

/* The session is over: every up-lane gets its end, with why. One whose
 * connection never came up gets what the session's stack knew first:
 * when its TLS refused the origin's certificate, the flow records that
 * connection (address, TLS, certificate, why: core/peer.c) beside its
 * 502, as an HTTP/1.1 connection's flow does. */
static void sess_fail(h2sess_t *s, const char *why) {
    if (s->error == NULL)
        s->error = reel_strdup(why);
    s->dead = true;
    reel_stack_info_t info;
    reel_stack_info(&s->st, &info);
    for (ulane_t *l = s->lanes; l; l = l->next) {
        if (!l->connected)
            continue; /* told by the failure below */
        ulane_end(l, l->sid || !l->resp_end ? why : NULL);
    }
    while (s->lanes) {
        ulane_t *l = s->lanes;
        s->lanes = l->next;
        s->nlanes--;
        l->s = NULL;
        lane_unbind(l);
        if (!l->connected && !l->want_close) {
            lane_copy_info(l, &info);
            reel_filter_fail(&l->f, why); /* the connection never came up: a 502 */
        }
    }
    sess_close(s);
}

static void sess_event(h2sess_t *s, const reel_codec_event_t *ev) {
    ulane_t *l = ev->stream ? sess_lane(s, ev->stream) : NULL;
    switch (ev->type) {
    case REEL_CODEC_EV_HEAD:
    case REEL_CODEC_EV_DATA:
    case REEL_CODEC_EV_END: {
        if (l == NULL || l->resp_end) {
            if (ev->type == REEL_CODEC_EV_DATA) /* nobody is waiting for it */
                reel_h2_consume(s->h2, ev->stream, ev->len);
            break;
        }
        size_t before = l->in.len;
        if (ev->type == REEL_CODEC_EV_HEAD)
            on_head(l, &ev->head);
        else if (ev->type == REEL_CODEC_EV_DATA)
            on_data(l, ev->data, ev->len);
        else
            on_end(l, ev->trailers, ev->ntrailers);
        s->in_held += l->in.len - before;
        if (!l->hold)
            lane_pending(s, l);
        break;
    }
    case REEL_CODEC_EV_RESET:
        if (l == NULL)
            break;
        if (l->resp_end) {
            /* answered already (an origin that stops reading a body it no
             * longer needs resets with NO_ERROR, RFC 9113 8.1): the rest of
             * the body is dropped, and a conn still sending one gets the
             * end of its upstream after the response, as from an HTTP/1.1
             * origin that answered early and closed: its exchange ends
             * then (exchange.c's reel__early_answer_ends; an HTTP/2 client's
             * stream was cut at the response's end, core/h2front.c's
             * stream_cut) rather than wait for a body nobody reads. */
            bool unfinished = !l->req_end;
            l->req_end = true;
            lane_unbind(l);
            if (unfinished) {
                ulane_end(l, NULL);
                lane_pending(s, l);
            }
            break;
        }
        char *held = NULL;
        if (l->hold) {
            /* a head with no content by rule, and then DATA (nghttp2's
             * reset, malformed) or another reset: not passed on */
            s->in_held -= l->in.len - l->held_at;
            l->in.len = l->held_at;
            l->hold = false;
            if (ev->local && ev->error_code == REEL_H2_PROTOCOL_ERROR)
                held = reel_asprintf("the origin's %u response to %s came with content, which it "
                                     "may not have (RFC 9113 8.1.1): reel reset the HTTP/2 stream "
                                     "with RST_STREAM PROTOCOL_ERROR (0x1) and passed the response "
                                     "on to no one",
                                     l->held_status, l->is_head ? "HEAD" : "the request");
        }
        if (!ev->local && ev->error_code == REEL_H2_REFUSED_STREAM && l->in.len == 0) {
            /* not processed: the conn may send it again; if it does not
             * (a body, a method not idempotent, a second refusal), its 502
             * says why */
            lane_unbind(l);
            if (!l->ended)
                l->unprocessed = true;
            ulane_end(l, "the origin refused the HTTP/2 stream with RST_STREAM REFUSED_STREAM "
                         "(0x7): it did not process the request (RFC 9113 8.7)");
            lane_pending(s, l);
            break;
        }
        {
            /* local: reel reset it (or, goaway, closed the connection for
             * it), the origin having broken HTTP/2 on it */
            char *why =
                held ? held
                : ev->local && ev->goaway
                    ? reel_asprintf("reel closed the HTTP/2 connection to the origin with GOAWAY "
                                    "%s (0x%x) for a frame on this stream: %s",
                                    reel_h2_error_name(ev->error_code), ev->error_code,
                                    ev->error_reason ? ev->error_reason : "")
                : ev->local
                    ? reel_asprintf("reel reset the origin's HTTP/2 stream with RST_STREAM %s "
                                    "(0x%x): %s",
                                    reel_h2_error_name(ev->error_code), ev->error_code,
                                    ev->error_reason ? ev->error_reason : "")
                    : reel_asprintf("the origin reset the HTTP/2 stream (error code 0x%x %s)",
                                    ev->error_code, reel_h2_error_name(ev->error_code));
            lane_unbind(l);
            /* the origin had the request, and may have acted on it: also
             * when reel reset its malformed answer, which the conn, seeing
             * no response, used to send again (RFC 9113 8.7); unless an
             * end before this one said otherwise (the first end wins) */
            if (!l->ended)
                l->processed = true;
            ulane_end(l, why);
            lane_pending(s, l);
            free(why);
        }
        break;
    case REEL_CODEC_EV_GOAWAY: {
        s->goaway = true;
        free(s->error);
        if (ev->local) {
            /* reel's own, the origin having broken HTTP/2 for the whole
             * connection (the codec reports only those): the connection
             * ends (sess_process closes it), and every stream on it now,
             * with this error; nothing more will come on them. Its last
             * stream id counts the origin's streams (none: no push), not
             * reel's: the origin may have processed every request. */
            s->error =
                reel_asprintf("reel closed the HTTP/2 connection to the origin with "
                              "GOAWAY %s (0x%x): %s",
                              reel_h2_error_name(ev->error_code), ev->error_code,
                              ev->error_reason ? ev->error_reason : "the origin broke HTTP/2");
            s->cut = true;
            for (ulane_t *k = s->lanes; k; k = k->next) {
                /* idle, or answered whole: a clean end (its next request
                 * goes elsewhere); else cut short by the GOAWAY */
                bool cut_short = k->sid && !k->resp_end;
                lane_unbind(k);
                /* the origin may have processed it (nothing says it did
                 * not, as a GOAWAY of its own would): never sent again,
                 * RFC 9113 8.7 (a GET answered with DATA before its head
                 * went to the origin twice) */
                if (cut_short && !k->ended)
                    k->processed = true;
                ulane_end(k, cut_short ? s->error : NULL);
                lane_pending(s, k);
            }
            break;
        }
        s->error = reel_asprintf("the origin sent GOAWAY (error code 0x%x %s)", ev->error_code,
                                 reel_h2_error_name(ev->error_code));
        /* why, if it cannot be sent again (the exchange retries it once,
         * on a new connection, when it can): the error of such a flow
         * named no GOAWAY, only a connection closed without an answer */
        char *unprocessed = reel_asprintf(
            "the origin sent GOAWAY %s (0x%x) with last stream %u, before it processed the "
            "request (RFC 9113 6.8)",
            reel_h2_error_name(ev->error_code), ev->error_code, (unsigned)ev->last_stream);
        for (ulane_t *k = s->lanes; k; k = k->next) {
            if (k->sid > ev->last_stream && !k->resp_end && k->in.len == 0) {
                /* not processed by the origin (RFC 9113 6.8): sent again */
                lane_unbind(k);
                if (!k->ended)
                    k->unprocessed = true;
                ulane_end(k, unprocessed);
            } else if (k->sid == 0) {
                ulane_end(k, NULL); /* idle: its next request goes elsewhere */
            }
        }
        free(unprocessed);
        break;
    }
    default:
        break;
    }
}

/* Reads the events of what came (s->in), and those the codec queued
 * itself. Returns why the connection failed (owned), or NULL. */
static char *sess_read_events(h2sess_t *s) {
    for (;;) {
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(s->codec, s->in.data, s->in.len, &used, &ev);
        reel_buf_consume(&s->in, used);
        if (rc == REEL_NEED_MORE)
            return NULL;
        if (rc != REEL_OK)
            return reel_asprintf("HTTP/2 protocol error from the origin: %s",
                                 ev.error_reason ? ev.error_reason : "unknown");
        sess_event(s, &ev);
    }
}

/* The origin's SETTINGS came: the WebSocket requests that waited for
 * them go on (as streams if they allow extended CONNECT, else refused). */
static void sess_release_held(h2sess_t *s) {
    if (s->nholding == 0 || !reel_h2_peer_settings_seen(s->h2))
        return;
    for (ulane_t *l = s->lanes, *next; l; l = next) {
        next = l->next;
        if (!l->holding)
            continue;
        l->holding = false;
        s->nholding--;
        reel_buf_t b = l->held;
        reel_buf_init(&l->held, 0);
        ulane_send(&l->f, b.data, b.len);
        reel_buf_free(&b);
    }
}

static void sess_process(h2sess_t *s) {
    if (s->processing || s->closing)
        return;
    s->processing = true;
    char *fatal = sess_read_events(s);
    reel__h2_memory_seen(s->p, reel_h2_memory(s->h2) + s->in_held);
    sess_flush(s);
    if (fatal == NULL && !s->cut) {
        /* the GOAWAY nghttp2 queued for what the origin broke, and the
         * RST_STREAM it sent of its own for a stream's malformed response
         * (a body longer or shorter than its content-length), are events
         * once they went out (in the flush just above): read now, not when
         * the origin next speaks, which it may never do (the stream's
         * conn waited, its client with the head and no end) */
        fatal = sess_read_events(s);
    }
    s->processing = false;
    if (fatal) {
        pend_clear(s);
        sess_fail(s, fatal);
        free(fatal);
        return;
    }
    sess_release_held(s);
    /* responses to the conns (which may write their next requests); what
     * they write to their clients and to this session goes in one write
     * each at the end */
    reel__batch_begin(s->p);
    while (s->pend) {
        /* a lane detached meanwhile lives on until its timer: no lane in
         * the list is freed before the list is empty */
        ulane_t *l = s->pend;
        s->pend = l->pend_next;
        l->in_pend = false;
        if (l->s == s)
            ulane_deliver(l);
    }
    reel__batch_end(s->p);
    if (s->cut) {
        sess_cut(s);
        return;
    }
    if (s->closing)
        return;
    sess_flush(s);
    sess_kick(s);
    if (s->goaway && s->nlanes == 0)
        sess_close(s);
}

/* Every frame nghttp2 has queued, to the socket. */
static void sess_write(h2sess_t *s) {
    reel_buf_t out;
    reel_buf_init(&out, 0);
    reel_h2_take_output(s->h2, &out);
    if (out.len)
        reel_stack_send(&s->st, out.data, out.len);
    reel_buf_free(&out);
    if (!s->processing && !s->cut && !s->closing && !reel_h2_alive(s->h2))
        uv_timer_start(&s->idle, on_idle, 0, 0); /* its events (reel's GOAWAY) read soon */
}

/* The connection to an origin that broke HTTP/2, its streams ended with
 * reel's GOAWAY: closed once the socket has taken the GOAWAY (sess_ev_written),
 * or after GOAWAY_FLUSH_MS. RFC 9113 5.4.1: an endpoint that sends GOAWAY
 * for a connection error MUST close the TCP connection. */
static void sess_cut(h2sess_t *s) {
    if (s->closing)
        return;
    if (reel_stack_queued(&s->st) == 0) {
        sess_close(s);
        return;
    }
    uv_timer_start(&s->idle, on_idle, GOAWAY_FLUSH_MS, 0);
}

/* Frames to the origin, as far as its socket takes them. */
static void sess_flush(h2sess_t *s) {
    if (s->closing || !s->ready || reel_stack_queued(&s->st) >= HIGH_WATER)
        return;
    sess_write(s);
}

/* Conns whose request bodies went out may send more. */
static void sess_kick(h2sess_t *s) {
    if (s->nsending == 0)
        return; /* no request body in flight: nothing to walk */
    for (ulane_t *l = s->lanes, *next; l; l = next) {
        next = l->next;
        if (l->s != s || l->sid == 0 || !l->sending)
            continue;
        size_t queued = reel_h2_stream_queued(s->h2, l->sid);
        bool sent = reel_h2_stream_take_sent(s->h2, l->sid) != 0;
        if (l->req_end && queued == 0) {
            l->sending = false; /* its whole body went out */
            s->nsending--;
        }
        if (sent && queued < LOW_WATER)
            reel_filter_written(&l->f);
    }
}

static void sess_ev_data(void *ud, const uint8_t *d, size_t n) {
    h2sess_t *s = ud;
    reel_buf_append(&s->in, d, n);
}

static void sess_ev_eof(void *ud, const char *error) {
    h2sess_t *s = ud;
    char *why = reel_asprintf("the origin closed its HTTP/2 connection%s%s", error ? ": " : "",
                              error ? error : "");
    sess_process(s);
    if (!s->closing)
        sess_fail(s, s->goaway && s->error ? s->error : why);
    free(why);
}

static void sess_ev_read_done(void *ud) {
    sess_process(ud);
}

static void sess_ev_connected(void *ud) {
    h2sess_t *s = ud;
    reel_stack_set_reading(&s->st, true); /* the TLS handshake reads */
}

static void sess_ev_ready(void *ud) {
    h2sess_t *s = ud;
    reel_stack_info_t info;
    reel_stack_info(&s->st, &info);
    if (s->https && (info.alpn == NULL || strcmp(info.alpn, "h2") != 0)) {
        /* it chose otherwise this time: remembered, so the next requests
         * go over HTTP/1.1 */
        reel__alpn_note(s->p, s->host, s->port, s->sni, false);
        sess_fail(s, "the origin no longer chose h2 by ALPN");
        return;
    }
    s->ready = true;
    sess_flush(s); /* the preface, SETTINGS and the requests so far */
    for (ulane_t *l = s->lanes; l; l = l->next)
        ulane_later(l); /* each tells its conn it is connected */
}

static void sess_ev_error(void *ud, const char *why) {
    h2sess_t *s = ud;
    reel_stack_info_t info;
    reel_stack_info(&s->st, &info);
    /* its upstream proxy could not be reached (as core/peer.c says it) */
    char *proxied = reel__via_failed(&info, info.t_connected != 0, why);
    sess_fail(s, proxied ? proxied : why);
    free(proxied);
}

static void sess_ev_written(void *ud) {
    h2sess_t *s = ud;
    if (s->cut) {
        sess_cut(s); /* closes once the GOAWAY has left */
        return;
    }
    sess_flush(s);
    sess_kick(s);
}

static void sess_handle_closed(h2sess_t *s) {
    if (--s->handles > 0)
        return;
    reel_proxy_t *p = s->p;
    reel_codec_free(s->codec);
    reel_buf_free(&s->in);
    free(s->key);
    free(s->host);
    free(s->sni);
    free(s->error);
    free(s);
    reel__proxy_handle_closed(p);
}

static void sess_ev_closed(void *ud) {
    sess_handle_closed(ud);
}

static void on_idle_closed(uv_handle_t *h) {
    sess_handle_closed(h->data);
}

static const reel_stack_events_t sess_events = {
    .data = sess_ev_data,
    .eof = sess_ev_eof,
    .read_done = sess_ev_read_done,
    .connected = sess_ev_connected,
    .ready = sess_ev_ready,
    .error = sess_ev_error,
    .written = sess_ev_written,
    .closed = sess_ev_closed,
};

static void sess_close(h2sess_t *s) {
    if (s->closing)
        return;
    s->closing = true;
    for (h2sess_t **pp = &s->p->h2up; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pend_clear(s);
    while (s->lanes) { /* their conns see the end when they next read */
        ulane_t *l = s->lanes;
        s->lanes = l->next;
        l->s = NULL;
        lane_unbind(l);
        ulane_end(l, s->error ? s->error : "the HTTP/2 connection to the origin closed");
    }
    s->nlanes = 0;
    if (!s->dead && s->ready && !s->cut) { /* (a cut one had reel's GOAWAY) */
        reel_h2_goaway(s->h2, REEL_H2_NO_ERROR);
        sess_write(s);
    }
    s->p->closing_handles++; /* the proxy's `done` waits for the session's handles */
    uv_close((uv_handle_t *)&s->idle, on_idle_closed);
    reel_stack_close(&s->st);
}

/* Closes s after idle_timeout with no up-lane (the timer also serves
 * sess_write and sess_cut, which start it otherwise). */
static void sess_idle_arm(h2sess_t *s) {
    uint64_t idle = s->p->idle_timeout_ms ? s->p->idle_timeout_ms : 60000;
    uv_timer_start(&s->idle, on_idle, idle, idle);
}

static void on_idle(uv_timer_t *t) {
    h2sess_t *s = t->data;
    if (s->cut) {
        sess_close(s); /* its GOAWAY did not leave in GOAWAY_FLUSH_MS */
        return;
    }
    if (!reel_h2_alive(s->h2)) {
        sess_process(s); /* events a write made (sess_write) */
        if (s->closing || s->cut)
            return;
    }
    if (s->nlanes == 0)
        sess_close(s);
}

/* A session's name among the proxy's: one made while upstream_cert_verify
 * was off ("https!") is never taken for a verified one once it is on
 * again, since nothing checked its origin's certificate; nor one made
 * through another upstream proxy (or none) than it would go through now
 * (upstream_proxy, upstream_no_proxy). */
static char *sess_key(const reel_proxy_t *p, bool https, const char *host, int port,
                      const char *sni) {
    const char *via = reel__proxy_for(p, host);
    const char *dns = reel__dns_entry(p, host, port, NULL, NULL); /* (nor another address) */
    return reel_asprintf("%s%s %s:%d %s%s%s%s%s", https ? "https" : "http",
                         https && !reel__verify_host(p, host) ? "!" : "", host, port,
                         sni ? sni : host, via ? " via " : "", via ? via : "", dns ? " at " : "",
                         dns ? dns : "");
}

/* A session with no connection yet (in the proxy's list, its idle timer
 * running): sess_new connects it, reel__h2up_adopt gives it one. */
static h2sess_t *sess_alloc(reel_proxy_t *p, char *key, bool https, const char *host, int port,
                            const char *sni) {
    h2sess_t *s = reel_calloc(1, sizeof *s);
    s->p = p;
    s->key = key;
    s->https = https;
    s->host = reel_strdup(host);
    s->sni = sni ? reel_strdup(sni) : NULL;
    s->port = port;
    s->id = __atomic_add_fetch(&p->shared->upstream_ids, 1, __ATOMIC_RELAXED);
    STAT_ADD(p, h2_connections, 1);
    reel_buf_init(&s->in, 0);
    s->codec = reel_h2_codec_new(REEL_H2_CLIENT, NULL);
    s->h2 = reel_h2_codec_h2(s->codec);
    uv_timer_init(p->loop, &s->idle);
    s->idle.data = s;
    sess_idle_arm(s);
    s->handles = 2;
    reel_stack_init(&s->st, &sess_events, s);
    s->next = p->h2up;
    p->h2up = s;
    return s;
}

static h2sess_t *sess_new(reel_proxy_t *p, char *key, bool https, const char *host, int port,
                          const char *sni) {
    h2sess_t *s = sess_alloc(p, key, https, host, port, sni);
    char *terr = NULL;
    reel__upstream_transport(p, &s->st, host, port, false, &terr, NULL);
    if (terr) {
        s->error = terr;
        s->dead = true;
        return s; /* its up-lane fails when it opens */
    }
    if (https) {
        reel_err_t err;
        reel_err_clear(&err);
        reel_tls_t *tls = NULL;
        if (reel__origin_tls(p, host, port, sni, "h2,http/1.1", &tls, &err) != REEL_OK) {
            s->error = reel_strdup(reel_err_str(&err));
            s->dead = true;
            return s; /* its up-lane fails when it opens */
        }
        reel_stack_push(&s->st, reel_tls_filter_new(tls), NULL, 0);
    }
    reel_stack_connect(&s->st);
    return s;
}

/* ---- the up-lane filter ---- */

/* Bytes of the conn's WebSocket, as its stream's DATA. */
static void ulane_raw(ulane_t *l, const uint8_t *data, size_t len) {
    h2sess_t *s = l->s;
    if (len == 0 || l->sid == 0 || l->req_end)
        return;
    reel_h2_submit_data(s->h2, l->sid, data, len, false);
    if (!l->sending) {
        l->sending = true; /* sess_kick tells the conn when it went out */
        s->nsending++;
    }
}

/* A WebSocket's request before the origin's SETTINGS: whether it may be
 * a stream (RFC 8441 3) is not known yet, and an origin reel speaks h2c
 * to must not get it as HTTP/1.1. Its head and what follows wait in
 * `held`; the request codec starts over for when they are fed again. */
static void hold_request(ulane_t *l, const reel_h1_head_t *hd, const uint8_t *rest, size_t n) {
    reel_buf_reset(&l->held);
    if (reel_h1_write_request_head(&l->held, hd) != REEL_OK) {
        ulane_end(l, "reel could not read the request it was to send over HTTP/2");
        return;
    }
    reel_buf_append(&l->held, rest, n);
    reel_codec_free(l->req);
    l->req = reel_h1_codec_new(REEL_H1_REQUEST, NULL);
    l->holding = true;
    l->s->nholding++;
}

/* The conn's request bytes: each request becomes a stream. */
static void ulane_send(reel_filter_t *f, const uint8_t *data, size_t len) {
    ulane_t *l = (ulane_t *)f;
    h2sess_t *s = l->s;
    if (l->want_close || s == NULL || s->dead)
        return;
    if (l->holding) { /* until the origin's SETTINGS (hold_request) */
        reel_buf_append(&l->held, data, len);
        return;
    }
    size_t off = 0;
    if (l->raw_req) { /* a WebSocket's frames, after its Upgrade */
        ulane_raw(l, data, len);
        goto flush;
    }
    for (;;) { /* until the codec has nothing more: events may be pending */
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(l->req, data + off, len - off, &used, &ev);
        off += used;
        if (rc == REEL_NEED_MORE)
            break;
        reel_err_t err;
        reel_err_clear(&err);
        if (rc != REEL_OK) {
            ulane_end(l, "reel could not read the request it was to send over HTTP/2");
            break;
        }
        const reel_h1_event_t *h = &ev.h1;
        if (ev.type == REEL_CODEC_EV_HEAD) {
            const reel_h1_head_t *hd = &h->head;
            bool ws = hd->upgrade && reel__has_token(hd, "upgrade", "websocket");
            if (ws && !reel_h2_peer_settings_seen(s->h2)) {
                hold_request(l, hd, data + off, len - off);
                return;
            }
            /* :authority from Host (the client's words), else the origin;
             * the target is in origin form (core/exchange.c writes it so) */
            const reel_h1_header_t *hh = reel_h1_find_header(hd->headers, hd->nheaders, "host");
            char *host = NULL;
            int port = l->port;
            if (hh == NULL || reel__split_authority(hh->value, hh->value_len, &host, &port,
                                                    l->https ? 443 : 80) != 0) {
                host = reel_strdup(l->host);
                port = l->port;
            }
            reel_msg_head_t m = {.method = hd->method,
                                 .scheme = l->https ? "https" : "http",
                                 .host = host,
                                 .port = (uint32_t)port,
                                 .path = hd->target,
                                 .fields = hd->headers,
                                 .nfields = hd->nheaders};
            l->is_head = hd->is_head;
            l->chunked = l->raw_resp = false;
            l->synth = 0;
            l->req_end = l->resp_end = false;
            bool end = hd->framing == REEL_H1_BODY_NONE;
            reel_field_t *kept = NULL;
            l->ws = ws && reel_h2_peer_connect_protocol(s->h2);
            free(l->ws_key);
            l->ws_key = NULL;
            if (l->ws) {
                /* RFC 8441 4-5: CONNECT with :protocol, the stream stays
                 * open for the frames; the key is HTTP/1.1's only (the
                 * connection-specific fields go in core/h2.c) */
                kept = reel_calloc(hd->nheaders ? hd->nheaders : 1, sizeof *kept);
                size_t n = 0;
                for (size_t i = 0; i < hd->nheaders; i++) {
                    const reel_h1_header_t *hf = &hd->headers[i];
                    if (hf->name_len == 17 && strncasecmp(hf->name, "sec-websocket-key", 17) == 0)
                        l->ws_key = reel_strndup(hf->value, hf->value_len);
                    else
                        kept[n++] = *hf;
                }
                m.method = "CONNECT";
                m.protocol = "websocket";
                m.fields = kept;
                m.nfields = n;
                end = false;
            } else if (ws) {
                /* an origin reel reaches only over HTTP/2 (h2c_upstreams):
                 * never an HTTP/1.1 Upgrade to it; the conn answers 502 */
                free(host);
                ulane_end(l, "the origin's HTTP/2 does not allow WebSockets: its SETTINGS have no "
                             "SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441), and reel reaches it "
                             "over HTTP/2 only");
                break;
            } else if (hd->upgrade) {
                free(host);
                ulane_end(l, "reel sends an Upgrade over HTTP/2 only for a WebSocket to an origin "
                             "that allows it (RFC 8441)");
                break;
            }
            uint32_t sid = 0;
            reel_rc src = reel_h2_submit_request(s->h2, &m, end, &sid, &err);
            free(kept);
            free(host);
            if (src != REEL_OK) {
                ulane_end(l, reel_err_str(&err));
                break;
            }
            lane_bind(s, l, sid);
            l->req_end = end;
            s->streams++;
        } else if (ev.type == REEL_CODEC_EV_DATA) {
            if (l->sid && !l->req_end) {
                reel_h2_submit_data(s->h2, l->sid, ev.data, ev.len, false);
                if (!l->sending) {
                    l->sending = true; /* sess_kick tells the conn when it went out */
                    s->nsending++;
                }
            }
        } else if (ev.type == REEL_CODEC_EV_END) {
            if (l->ws)
                continue; /* the handshake's end: the stream stays open for the frames */
            if (l->sid && !l->req_end) {
                if (h->ntrailers)
                    reel_h2_submit_trailers(s->h2, l->sid, h->trailers, h->ntrailers, &err);
                else
                    reel_h2_submit_data(s->h2, l->sid, NULL, 0, true);
            }
            l->req_end = true;
            if (l->resp_end)
                lane_unbind(l);
        } else if (ev.type == REEL_CODEC_EV_UPGRADE) {
            if (!l->ws) {
                ulane_end(l, "reel does not send an HTTP/1.1 Upgrade over HTTP/2");
                break;
            }
            l->raw_req = true; /* what follows is the WebSocket's */
            ulane_raw(l, data + off, len - off);
            break;
        }
    }
flush:
    if (!s->flush_queued && reel__batch_defer(s->p, true, s))
        s->flush_queued = true; /* many requests, one write (core/proxy.c) */
    else if (!s->flush_queued)
        sess_flush(s);
}

static size_t ulane_queued(const reel_filter_t *f) {
    const ulane_t *l = (const ulane_t *)f;
    if (l->s == NULL || l->sid == 0)
        return l->held.len; /* the conn stops reading its client meanwhile */
    return reel_h2_stream_queued(l->s->h2, l->sid);
}

/* The conn's side of a WebSocket stream ended (its client's FIN after
 * the Close frames, core/tunnel.c): END_STREAM, which RFC 8441 6 makes
 * the FIN's equivalent. A request's own end is its codec's. */
static void ulane_shutdown(reel_filter_t *f) {
    ulane_t *l = (ulane_t *)f;
    h2sess_t *s = l->s;
    if (!l->raw_req || l->req_end || s == NULL || s->dead || l->sid == 0)
        return;
    reel_h2_submit_data(s->h2, l->sid, NULL, 0, true);
    l->req_end = true;
    sess_flush(s);
}

static bool ulane_is_open(const reel_filter_t *f) {
    const ulane_t *l = (const ulane_t *)f;
    return l->connected && !l->want_close && !f->st->closing;
}

static void ulane_set_reading(reel_filter_t *f, bool on) {
    ulane_t *l = (ulane_t *)f;
    bool was = l->reading;
    l->reading = on;
    if (on && !was && (l->in.len || l->eof_pending))
        ulane_later(l);
}

static void ulane_info(const reel_filter_t *f, reel_stack_info_t *out) {
    const ulane_t *l = (const ulane_t *)f;
    reel_strcpy_to(out->remote, sizeof out->remote, l->remote);
    reel_strcpy_to(out->local, sizeof out->local, l->local);
    if (l->fresh) {
        out->t_dns0 = l->info.t_dns0;
        out->t_dns1 = l->info.t_dns1;
        out->t_connected = l->info.t_connected;
    }
    out->setup_dns0 = l->info.setup_dns0; /* the session's, for every stream */
    out->setup_dns1 = l->info.setup_dns1;
    out->setup_connected = l->info.setup_connected;
    out->setup_tls_done = l->info.setup_tls_done;
    out->setup_tunnel_open = l->info.setup_tunnel_open;
    out->tls = l->https;
    out->tls_done = l->https && l->connected;
    out->tls_resumed = l->info.tls_resumed;
    out->alpn = l->alpn[0] ? l->alpn : NULL;
    out->tls_version = l->tls_version[0] ? l->tls_version : NULL;
    out->cipher = l->cipher[0] ? l->cipher : NULL;
    out->sni = l->sni[0] ? l->sni : NULL;
    out->verify_error = l->verify_error[0] ? l->verify_error : NULL;
    out->peer_cert = l->verify_error[0] ? l->peer_cert : NULL;
    out->unchecked_error = l->unchecked_error[0] ? l->unchecked_error : NULL;
    out->unchecked_cert = l->unchecked_error[0] ? l->peer_cert : NULL;
    out->via = l->via[0] ? l->via : NULL;
    out->via_open = l->info.via_open;
    out->dns_override = l->dns_override[0] ? l->dns_override : NULL;
    if (out->via == NULL && l->s) { /* its session still setting up: what its stack says */
        reel_stack_info_t si;
        reel_stack_info(&l->s->st, &si);
        out->via = si.via; /* (the session's filter's, valid while it is) */
        out->via_open = si.via_open;
        out->dns_override = si.dns_override;
        if (out->setup_connected == 0)
            out->setup_connected = si.setup_connected; /* (to the proxy) */
        if (out->setup_tunnel_open == 0)
            out->setup_tunnel_open = si.setup_tunnel_open;
    }
}

static void on_ulane_timer_closed(uv_handle_t *h) {
    ulane_t *l = h->data;
    free(l->ws_key);
    reel_codec_free(l->req);
    reel_buf_free(&l->held);
    reel_buf_free(&l->in);
    free(l->eof_error);
    free(l->host);
    free(l);
}

static void ulane_close(reel_filter_t *f) {
    ulane_t *l = (ulane_t *)f;
    if (l->want_close)
        return;
    l->want_close = true;
    l->reading = false;
    if (l->s)
        sess_detach(l->s, l);
    ulane_later(l);
}

static void ulane_destroy(reel_filter_t *f) {
    ulane_t *l = (ulane_t *)f;
    uv_close((uv_handle_t *)&l->timer, on_ulane_timer_closed);
}

/* Copies what the session's stack knows (the peer's ServerConn record and
 * the flow's timings), then tells the conn it is connected. */
static void ulane_connect(ulane_t *l) {
    h2sess_t *s = l->s;
    reel_stack_info_t i;
    reel_stack_info(&s->st, &i);
    lane_copy_info(l, &i);
    l->connected = true;
    reel_filter_connected(&l->f); /* connected, then ready */
}

/* Hands the conn what came for it, if it reads. */
static void ulane_deliver(ulane_t *l) {
    if (l->want_close || !l->reading || l->f.st->closing || l->hold)
        return;
    if (l->in.len) {
        reel_buf_t b = l->in;
        reel_buf_init(&l->in, 0);
        size_t data = l->in_data;
        l->in_data = 0;
        h2sess_t *s = l->s;
        uint32_t sid = l->data_sid;
        size_t held = b.len; /* (reel_buf_free zeroes b.len) */
        reel_filter_up(&l->f, b.data, b.len);
        reel_buf_free(&b);
        if (s)
            s->in_held -= held;
        if (data && s && !s->closing && !s->dead) {
            /* the origin may send that much more (also if the conn let
             * go of the up-lane meanwhile: the connection's window) */
            reel_h2_consume(s->h2, sid, data);
            sess_flush(s);
        }
        if (l->want_close)
            return;
        reel_filter_read_done(&l->f);
        if (l->eof_pending && !l->want_close) {
            /* the end in a read of its own, as a socket's FIN comes: the
             * exchange stops at a response's end without looking for the
             * upstream's (an origin's reset after an early answer, given
             * in the same read, went unseen and the exchange waited for
             * the rest of a body nobody reads) */
            ulane_later(l);
        }
        return;
    }
    if (l->eof_pending && !l->want_close) {
        l->eof_pending = false;
        char *why = l->eof_error;
        l->eof_error = NULL;
        reel_filter_up_eof(&l->f, why);
        free(why);
        if (!l->want_close)
            reel_filter_read_done(&l->f);
    }
}

static void on_ulane_timer(uv_timer_t *t) {
    ulane_t *l = t->data;
    if (l->want_close) {
        reel_stack_closed_once(l->f.st, &l->closed); /* destroys l (after the timer's close) */
        return;
    }
    if (l->f.st->closing)
        return;
    h2sess_t *s = l->s;
    if (!l->connected) {
        if (s && s->ready)
            ulane_connect(l);
        else if (s == NULL || s->dead)
            reel_filter_fail(&l->f, s && s->error ? s->error
                                                  : "the HTTP/2 connection to the origin failed");
        return;
    }
    ulane_deliver(l);
    if (l->s && !l->want_close)
        sess_flush(l->s);
}

static void ulane_later(ulane_t *l) {
    uv_timer_start(&l->timer, on_ulane_timer, 0, 0);
}

static void ulane_open(reel_filter_t *f) {
    ulane_t *l = (ulane_t *)f;
    ulane_later(l); /* connected now if its session is up, else when it is */
}

static const reel_filter_ops_t ulane_ops = {
    .name = "h2-upstream",
    .open = ulane_open,
    .send = ulane_send,
    /* a stream's end is its request's (but a WebSocket's: ulane_shutdown);
     * the session stays */
    .shutdown = ulane_shutdown,
    .queued = ulane_queued,
    .is_open = ulane_is_open,
    .set_reading = ulane_set_reading,
    .info = ulane_info,
    .close = ulane_close,
    .destroy = ulane_destroy,
};

reel_filter_t *reel__h2up_filter(reel_proxy_t *p, bool https, const char *host, int port,
                                 const char *sni, uint64_t *conn_id, int *flows_before) {
    char *key = sess_key(p, https, host, port, sni);
    h2sess_t *s = NULL;
    for (h2sess_t *k = p->h2up; k && s == NULL; k = k->next)
        if (!k->closing && !k->dead && !k->goaway && reel_h2_alive(k->h2) &&
            strcmp(k->key, key) == 0)
            s = k;
    ulane_t *l = reel_calloc(1, sizeof *l);
    l->f.ops = &ulane_ops;
    l->https = https;
    l->host = reel_strdup(host);
    l->port = port;
    l->req = reel_h1_codec_new(REEL_H1_REQUEST, NULL);
    reel_buf_init(&l->in, 0);
    reel_buf_init(&l->held, 0);
    uv_timer_init(p->loop, &l->timer);
    l->timer.data = l;
    if (s) {
        free(key);
    } else {
        s = sess_new(p, key, https, host, port, sni);
        l->fresh = true;
    }
    uv_timer_stop(&s->idle);
    l->s = s;
    l->next = s->lanes;
    s->lanes = l;
    s->nlanes++;
    *conn_id = s->id;
    *flows_before = (int)s->streams;
    return &l->f;
}

void reel__h2up_adopt(reel_proxy_t *p, reel_stack_t *st, reel_buf_t *in, const char *host, int port,
                      const char *sni) {
    h2sess_t *s = sess_alloc(p, sess_key(p, true, host, port, sni), true, host, port, sni);
    s->st = *st; /* the filters move over: they know their stack by pointer */
    for (reel_filter_t *f = s->st.bottom; f; f = f->above)
        f->st = &s->st;
    s->st.ev = &sess_events;
    s->st.ud = s;
    s->in = *in; /* the origin's SETTINGS may be here already */
    reel_buf_init(in, 0);
    s->ready = true;
    sess_flush(s); /* the preface and SETTINGS */
    sess_process(s);
}

bool reel__h2up_ws_ok(reel_proxy_t *p, bool https, const char *host, int port, const char *sni) {
    char *key = sess_key(p, https, host, port, sni);
    bool ok = false;
    for (h2sess_t *k = p->h2up; k; k = k->next)
        if (!k->closing && !k->dead && !k->goaway && k->ready && reel_h2_alive(k->h2) &&
            strcmp(k->key, key) == 0) {
            ok = reel_h2_peer_connect_protocol(k->h2);
            break;
        }
    free(key);
    return ok;
}

bool reel__h2up_may_retry(const peer_t *up) {
    const reel_filter_t *f = up->st.bottom;
    return !(up->h2 && f && f->ops == &ulane_ops && ((const ulane_t *)f)->processed);
}

bool reel__h2up_unprocessed(const peer_t *up) {
    const reel_filter_t *f = up->st.bottom;
    return up->h2 && f && f->ops == &ulane_ops && ((const ulane_t *)f)->unprocessed;
}

unsigned reel__h2up_synthesized(const peer_t *up) {
    const reel_filter_t *f = up->st.bottom;
    return up->h2 && f && f->ops == &ulane_ops ? ((const ulane_t *)f)->synth : 0;
}

void reel__h2up_flush_deferred(struct h2sess *s) {
    if (!s->flush_queued)
        return;
    s->flush_queued = false;
    if (s->closing)
        return;
    sess_flush(s);
    sess_kick(s);
}

void reel__h2up_shutdown(reel_proxy_t *p) {
    for (h2sess_t *s = p->h2up, *next; s; s = next) {
        next = s->next;
        s->goaway = true; /* no new streams; closes with its last one */
        if (s->nlanes == 0)
            sess_close(s);
    }
}
