/* Tunnels: CONNECT sniffing (TLS, HTTP, anything else), raw relays
 * recorded as TCP messages (also TLS that carries something other than
 * HTTP, relayed over TLS on both legs), and WebSocket relays through the
 * core/ws.c codec recorded message by message. Part of the proxy; see
 * core/conn.h. */

#include "core/conn.h"
#include "core/h2.h"
#include "core/tls_filter.h"

static void ws_fail(conn_t *c, int dir, const reel_ws_event_t *ev);
static bool relay_dir(conn_t *c, int dir);
static void tunnel_end(conn_t *c);
static bool tls_tunnel_ready(conn_t *c);
static void begin_tls_tunnel(conn_t *c, const char *alpn);
static void start_client_tls(conn_t *c, reel_tls_t *tls, conn_state state);
static void serve_requests(conn_t *c);
static void starttls_watch(conn_t *c);
static bool starttls_hold(conn_t *c);

/* ---- raw tunnels ---- */

/* Whether c->up is the connection reel__sniff_connect_early made to host
 * and port (TLS or not), still there for the tunnel to take. */
static bool early_to(const conn_t *c, bool https, const char *host, int port) {
    const peer_t *up = c->up;
    return up && up->eager && !up->closing && up->https == https && up->port == port &&
           strcasecmp(up->host, host) == 0;
}

void reel__tunnel_codecs_free(conn_t *c) {
    for (int d = 0; d < 2; d++) {
        reel_codec_free(c->tun[d]);
        c->tun[d] = NULL;
    }
    c->websocket = false;
}

/* A peer broke the WebSocket protocol (dir 0: the client, 1: the server):
 * each peer gets a close frame with the code where its side of the
 * stream is between frames and has carried no Close yet (RFC 6455 5.5.1:
 * a Close is the last frame on its stream, so a peer that got one, passed
 * on, gets no second), the flow ends with the error, both connections
 * close once the frames are out. The offending frame is not passed on. */
static void ws_fail(conn_t *c, int dir, const reel_ws_event_t *ev) {
    peer_t *offender = dir ? c->up : &c->client, *other = dir ? &c->client : c->up;
    /* tun[dir] reads the offender's stream (toward the other peer),
     * tun[1 - dir] the stream toward the offender */
    reel_ws_t *from_offender = reel_ws_codec_ws(c->tun[dir]);
    reel_ws_t *to_offender = reel_ws_codec_ws(c->tun[1 - dir]);
    bool close_offender = !reel_ws_mid_frame(to_offender) && !reel_ws_close_seen(to_offender);
    bool close_other =
        other && !reel_ws_mid_frame(from_offender) && !reel_ws_close_seen(from_offender);
    reel_buf_t frame;
    reel_buf_init(&frame, 0);
    /* frames reel sends to a server are masked, as a client's must be */
    uint8_t key[4] = {0x5a, 0x17, 0xc3, 0x8e};
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* keep the fixed key: masking guards caches, not secrets */
    }
    if (close_offender && reel_ws_write_close(&frame, ev->error_code, ev->error_reason,
                                              dir == 1 ? key : NULL) == REEL_OK)
        reel__peer_write(offender, frame.data, frame.len);
    else
        close_offender = false;
    reel_buf_reset(&frame);
    if (close_other &&
        reel_ws_write_close(&frame, ev->error_code, "reel: the other side broke the protocol",
                            dir == 0 ? key : NULL) == REEL_OK)
        reel__peer_write(other, frame.data, frame.len);
    reel_buf_free(&frame);
    /* the record says which Close frames reel sent, as they went */
    const char *who = dir ? "server" : "client";
    char sent[96];
    if (close_offender)
        snprintf(sent, sizeof sent, "with a Close (%u) to the %s", (unsigned)ev->error_code, who);
    else
        snprintf(sent, sizeof sent, "without a Close (%u) to the %s: %s", (unsigned)ev->error_code,
                 who, reel_ws_close_seen(to_offender) ? "it had had one" : "it was inside a frame");
    char *why;
    if (reel_ws_close_seen(from_offender)) /* the only error after its Close */
        why = reel_asprintf("the %s sent a frame after its Close frame (RFC 6455 5.5.1); reel "
                            "dropped it and closed the connection%s%s",
                            who, close_offender ? ", " : "", close_offender ? sent : "");
    else if (close_offender)
        why = reel_asprintf("the %s sent an invalid WebSocket frame: %s (closed with %u)", who,
                            ev->error_reason, (unsigned)ev->error_code);
    else
        why = reel_asprintf("the %s sent an invalid WebSocket frame: %s (closed %s)", who,
                            ev->error_reason, sent);
    reel__finish_flow(c, why);
    free(why);
    reel__tunnel_codecs_free(c);
    if (c->up) {
        /* each side gets its Close, then its end, and is read to its own
         * (reel__ws_linger_step), the rest of what it sends dropped; at
         * most LINGER_IDLE_MS of silence, LINGER_TOTAL_MS in all. So too
         * where one side is an HTTP/2 stream (a lane's client, an up-lane
         * to an origin): its end is END_STREAM (RFC 8441 6), and the
         * other side is still a socket that a close with bytes unread
         * would reset, destroying its Close. */
        c->state = C_LINGER;
        c->ws_linger = true;
        c->linger_start = uv_now(c->p->loop);
        reel__conn_touch(c);
        peer_t *both[2] = {&c->client, c->up};
        for (int i = 0; i < 2; i++) {
            reel_buf_reset(&both[i]->in);
            both[i]->close_when_flushed = true;
            both[i]->paused = false;
            reel__peer_read_start(both[i]);
        }
        reel__ws_linger_step(c);
        reel__conn_arm_at(c, true);
        return;
    }
    c->state = C_DONE; /* (the origin's side is gone already) */
    c->client.close_when_flushed = true;
    reel__peer_read_stop(&c->client);
    if (reel__peer_queued(&c->client) == 0)
        reel__conn_close(c);
}

/* Moves what one side sent to the other (dir 0: client to server) while
 * the other can take it, recording it: WebSocket messages through the
 * codec (the bytes forwarded are exactly the bytes received), raw chunks
 * as TCP messages. What the codec took goes on in one write, and leaves
 * the input in one move, per call: a write and a move of the rest of the
 * input per frame made a burst of 1-byte frames cost about 7 us each, a
 * write(2) and a memmove of up to 64 KiB. Returns false when a protocol
 * error closed the connection. */
static bool relay_dir(conn_t *c, int dir) {
    peer_t *src = dir ? c->up : &c->client, *dst = dir ? &c->client : c->up;
    if (c->tun[dir] == NULL)
        c->tun[dir] = reel_tcp_codec_new();
    size_t off = 0, queued = reel__peer_queued(dst);
    reel_rc rc = REEL_OK;
    reel_codec_event_t ev;
    while (off < src->in.len && queued + off < HIGH_WATER) {
        size_t consumed = 0;
        rc = reel_codec_feed(c->tun[dir], src->in.data + off, src->in.len - off, &consumed, &ev);
        off += consumed;
        if (rc == REEL_OK && ev.type == REEL_CODEC_EV_MESSAGE) {
            const reel_ws_event_t *w = &ev.ws;
            if (c->websocket && c->ex.flow)
                reel_capture_message(c->ex.flow, dir == 0, (uint32_t)w->opcode, w->data, w->len,
                                     w->length, w->truncated, w->compressed,
                                     w->opcode == REEL_WS_OP_CLOSE ? w->close_code : 0);
            else if (!c->websocket && c->tflow)
                reel_capture_message(c->tflow, dir == 0, 0, ev.data, ev.len, ev.len, false, false,
                                     0);
        }
        if (rc != REEL_OK)
            break;
    }
    if (off)
        reel__peer_write(dst, src->in.data, off);
    reel_buf_consume(&src->in, off);
    /* A WebSocket codec leaves the start of a frame header unconsumed
     * until it is whole (and judged): after the sender's end it never
     * will be. Dropped, not passed on; the end of the tunnel says the
     * frame was cut (reel_ws_feed_eof). */
    if (rc == REEL_NEED_MORE && src->eof && src->in.len && c->websocket)
        reel_buf_reset(&src->in);
    if (rc == REEL_OK || rc == REEL_NEED_MORE)
        return true;
    ws_fail(c, dir, &ev.ws);
    return false;
}

/* Why a tunnel whose origin's connection failed (a reset) ends, owned:
 * the error, and how many of the bytes reel relayed from the client the
 * origin never acknowledged, which the failure dropped: those still queued
 * in reel for its connection and those its socket had sent unacknowledged
 * (TIOCOUTQ, which still counts them after the reset: asked before reel
 * closes the socket). Bytes the origin's kernel acknowledged but the origin
 * never read cannot be seen. Over TLS they count TLS records. */
char *reel__tunnel_origin_failed(conn_t *c, const char *error) {
    peer_t *up = c->up;
    size_t queued = reel__peer_queued(up), unsent = reel_stack_unsent(&up->st);
    if (queued + unsent == 0)
        return reel_asprintf("the connection to the origin failed: %s", error);
    return reel_asprintf("the connection to the origin failed: %s (%zu of the bytes relayed "
                         "from the client were not delivered: %zu still queued in reel, %zu in "
                         "the socket not acknowledged by the origin)",
                         error, queued + unsent, queued, unsent);
}

static char *origin_failed(conn_t *c) {
    return reel__tunnel_origin_failed(c, c->up->error);
}

/* Both sides closed: the tunnel's flow (or the WebSocket flow) ends; a
 * WebSocket cut in the middle of a frame or message ends with that error,
 * and so does one a side ended without a Close frame (RFC 6455 7.1.5:
 * abnormal closure, 1006): the side whose end came first, not one that
 * only followed it (reel passes a client's end on to the server) nor one
 * reel closed after the other's end. */
static void tunnel_end(conn_t *c) {
    if (c->websocket) {
        const char *why = NULL;
        bool dropped[2] = {false, false};
        for (int d = 0; d < 2 && !why; d++) {
            reel_codec_event_t ev;
            if (reel_codec_feed_eof(c->tun[d], &ev) != REEL_OK)
                why = d ? "the server closed the connection in the middle of a WebSocket frame"
                        : "the client closed the connection in the middle of a WebSocket frame";
            else
                dropped[d] =
                    ev.ws.close_code == REEL_WS_CLOSE_ABNORMAL && (c->ws_eof_first & (d ? 2 : 1));
        }
        char *failed = NULL;
        if (why == NULL && dropped[1] && c->up && c->up->error) {
            /* the origin's connection failed (a reset), not closed: so it
             * says, and a lane's stream is reset with CONNECT_ERROR (RFC
             * 8441 5, RFC 9113 8.5), not ended as by a close */
            char *o = origin_failed(c);
            why = failed = reel_asprintf("%s, without a WebSocket Close frame (1006, abnormal "
                                         "closure)",
                                         o);
            free(o);
            c->tunnel_failed = true;
        } else if (why == NULL && dropped[0] && dropped[1]) {
            why = "the client and the server closed the connection without a WebSocket Close "
                  "frame (1006, abnormal closure)";
        } else if (why == NULL && (dropped[0] || dropped[1])) {
            why = dropped[1] ? "the server closed the connection without a WebSocket Close frame "
                               "(1006, abnormal closure)"
                             : "the client closed the connection without a WebSocket Close frame "
                               "(1006, abnormal closure)";
        }
        /* The server's last frames may still be queued for the client: the
         * flow ends complete once they are sent, as a response's does, or
         * with how many bytes were not if the client goes first (HTTP/1:
         * the client's queue, core/exchange.c; a lane: its stream,
         * core/h2front.c). */
        if (why != NULL)
            reel__finish_flow(c, why);
        else if (!c->lane)
            reel__finish_when_delivered(c);
        else if (!reel__h2front_ws_end(c))
            reel__finish_flow(c, NULL);
        free(failed);
        reel__tunnel_codecs_free(c);
    } else if (c->up && c->up->error) { /* the origin's end was a failure (a reset) */
        char *why = origin_failed(c);
        reel__finish_tflow(c, why);
        free(why);
        c->tunnel_failed = true;
    } else if (c->up && reel__peer_queued(c->up) > 0) {
        /* what the client sent last is still queued for a server that has
         * ended its side: the connection to it closes with them unsent */
        char *why = reel_asprintf("the server closed the connection before it received the whole "
                                  "tunnel (%zu bytes of the connection's output were still "
                                  "queued in reel)",
                                  reel__peer_queued(c->up));
        reel__finish_tflow(c, why);
        free(why);
    } else if (!c->lane) {
        /* The server's last bytes may still be queued for the client: the
         * flow ends complete once they are sent, or with how many were not
         * if the client goes first, as a WebSocket's does
         * (core/exchange.c) */
        reel__tflow_when_delivered(c);
    } else if (!reel__h2front_tunnel_end(c)) {
        /* (a lane's CONNECT stream may still hold bytes for its client:
         * the flow ends once they are sent, as for a WebSocket) */
        reel__finish_tflow(c, NULL);
    }
}

/* Whether the client's side of a WebSocket ended where it may: after its
 * Close frame, not inside a frame. */
static bool ws_client_closed_cleanly(conn_t *c) {
    reel_ws_t *w = reel_ws_codec_ws(c->tun[0]);
    return reel_ws_close_seen(w) && !reel_ws_mid_frame(w);
}

/* The client of a WebSocket that is a stream of an HTTP/2 session to its
 * origin (core/h2up.c) ended its connection without its Close frame, or
 * inside a frame: the WebSocket is over (RFC 6455 7.1.5: abnormal
 * closure), the flow ends now with that error, and the up-lane leaves its
 * session, which resets the stream (CANCEL). A socket to an HTTP/1.1
 * origin gets the client's FIN, and the origin's close ends the flow
 * (tunnel_end); a stream's END_STREAM is that FIN (RFC 8441 6), which
 * reel sends after a Close (the half-close below) but which an origin
 * need not answer: the flow stayed open, the client's socket in
 * CLOSE-WAIT, until reel stopped or the origin went. */
static void ws_client_gone(conn_t *c) {
    reel_codec_event_t ev;
    const char *why =
        reel_codec_feed_eof(c->tun[0], &ev) != REEL_OK
            ? "the client closed the connection in the middle of a WebSocket frame"
            : "the client closed the connection without a WebSocket Close frame (1006, abnormal "
              "closure)";
    reel__finish_flow(c, why);
    reel__tunnel_codecs_free(c);
    c->client.close_when_flushed = true;
    reel__upstream_close(c);
    if (reel__peer_queued(&c->client) == 0)
        reel__conn_close(c);
}

void reel__tunnel_forward(conn_t *c) {
    peer_t *cl = &c->client, *up = c->up;
    if (up == NULL)
        return;
    bool hold = c->starttls && starttls_hold(c); /* (its TLS may begin here) */
    if (c->tls_tunnel && !tls_tunnel_ready(c))
        return;
    if (c->websocket && c->ws_eof_first == 0)
        c->ws_eof_first = (uint8_t)((cl->eof ? 1 : 0) | (up->eof ? 2 : 0));
    starttls_watch(c);
    if ((!hold && !relay_dir(c, 0)) || !relay_dir(c, 1))
        return;
    reel__peer_update_reading(cl);
    reel__peer_update_reading(up);
    if ((cl->eof && up->eof) || (cl->eof && up->in.len == 0 && !up->open)) {
        tunnel_end(c);
        c->client.close_when_flushed = true;
        reel__upstream_close(c);
        if (reel__peer_queued(cl) == 0)
            reel__conn_close(c);
        return;
    }
    if (c->websocket && up->h2 && cl->eof && cl->in.len == 0 && !up->eof &&
        !c->client.close_when_flushed && !ws_client_closed_cleanly(c)) {
        ws_client_gone(c);
        return;
    }
    /* TLS to the origin (a TLS tunnel, or an upgrade or a WebSocket inside
     * an intercepted CONNECT): the client's end, its close_notify or its
     * close, is passed on as a close_notify once what it sent before is
     * out; the origin's answer (its own, or its close) ends the tunnel
     * below. Without it an intercepted wss or Upgrade kept its origin
     * connection, and its flow open, after the client had gone: until
     * idle_timeout, or for a WebSocket until the origin spoke. */
    if ((c->tls_tunnel || reel_stack_has_tls(&up->st)) && cl->eof && !c->tls_client_ended &&
        cl->in.len == 0 && up->open && !up->closing && reel__peer_ready(up)) {
        c->tls_client_ended = true;
        reel_stack_end(&up->st);
    }
    /* Half-close: pass the EOF on once the other side's data is out. */
    if (cl->eof && up->connected && !reel_stack_has_tls(&up->st) && up->in.len == 0 &&
        cl->in.len == 0 && up->open && !up->closing)
        reel_stack_end(&up->st);
    if (up->eof && up->error && !c->websocket && up->in.len == 0 && cl->open && !cl->closing &&
        !c->client.close_when_flushed) {
        /* The origin's connection failed mid-tunnel (a reset): the tunnel
         * ends with that error and its client is cut, not half-closed as
         * by a clean end (a lane's CONNECT stream is reset with
         * CONNECT_ERROR, RFC 9113 8.5) */
        char *why = origin_failed(c);
        reel__finish_tflow(c, why);
        free(why);
        c->tunnel_failed = true;
        c->client.close_when_flushed = true;
        reel__upstream_close(c);
        if (reel__peer_queued(cl) == 0)
            reel__conn_close(c);
        return;
    }
    if (up->eof && !c->websocket && !reel_stack_has_tls(&cl->st) && !reel_stack_has_tls(&up->st) &&
        cl->open && !cl->closing && up->in.len == 0 && !c->client.close_when_flushed) {
        /* A plain TCP tunnel: the server's half-close is passed on as the
         * client's is (it closed the client's connection, and what the
         * client still sent was neither relayed nor recorded); the tunnel
         * ends once the client closes too (or idle_timeout). */
        if (!c->tun_half_closed) {
            c->tun_half_closed = true;
            reel_stack_end(&cl->st);
        }
        return;
    }
    if (up->eof && cl->open && !cl->closing && up->in.len == 0) {
        /* The server closed: so does the client's connection, after a TLS
         * close_notify when reel speaks TLS to it (wss, intercepted
         * tunnels; it used to stay open until the client gave up). */
        /* close_notify before the flow's end: it goes the way of the
         * server's last bytes (a lane's stream may take them, and the
         * flow, in tunnel_end) */
        if (reel_stack_has_tls(&cl->st))
            reel_stack_end(&cl->st);
        tunnel_end(c);
        c->client.close_when_flushed = true;
        if (reel__peer_queued(cl) == 0)
            reel__conn_close(c);
    }
}

void reel__tunnel_flow(conn_t *c, const char *host, int port, bool answered) {
    if (c->tflow)
        return; /* a TLS tunnel's, begun before its client's handshake failed */
    /* the CONNECT as its client sent it (version, fields, when) */
    const reel_connect_head_t *k = c->connect_head;
    int64_t t0 = k ? k->head_us : 0;
    /* a lane's tunnel is its CONNECT stream's */
    c->tflow = reel__flow_start(c, REEL_CAPTURE_TUNNEL, NULL, c->lane ? c->lane_stream : 0, t0);
    STAT_ADD(c->p, flows, 1);
    reel_msg_head_t rq = {.method = "CONNECT",
                          .scheme = c->tls_tunnel ? "tls" : "tcp",
                          .host = host,
                          .port = (uint32_t)port,
                          .path = "",
                          /* (reel as a reverse proxy, or a redirected
                           * connection: no CONNECT came) */
                          .version = k                ? k->version
                                     : c->reverse     ? "reverse"
                                     : c->transparent ? "transparent"
                                                      : "HTTP/1.1",
                          .fields = k ? k->fields : NULL,
                          .nfields = k ? k->nfields : 0};
    reel_capture_request_at(c->tflow, &rq, t0);
    int64_t answered_us = k ? k->answered_us : 0;
    reel__connect_head_drop(c); /* written: a long tunnel need not hold it */
    if (answered && !c->reverse && !c->transparent) {
        /* what the client was told before reel knew what the tunnel
         * carries (or whether its host can be reached): part of the record */
        /* (SOCKS5's success, reply 00, as a 200 of version SOCKS5) */
        reel_msg_head_t rs = {.status = 200,
                              .reason = c->socks ? "succeeded" : "Connection established",
                              .version = c->socks  ? "SOCKS5"
                                         : c->lane ? "HTTP/2.0"
                                                   : "HTTP/1.1"};
        reel_capture_response(c->tflow, &rs, true, answered_us);
    }
}

/* A tunnel to host:port relayed byte for byte, recorded as one flow if
 * `record`. With reply_200 the CONNECT is answered once the upstream is
 * connected (a 502 if it cannot be). */
void reel__begin_raw_tunnel(conn_t *c, const char *host, int port, bool reply_200, bool record) {
    if (c->state == C_SNIFF && reel_stack_has_tls(&c->client.st)) {
        /* The sniff timeout inside the client's TLS: silence is a protocol
         * whose server speaks first; the start of an HTTP/1 request line
         * ("GE") stays HTTPS, as it was before TLS tunnels, its
         * head_timeout running. */
        reel_stack_info_t info;
        reel_stack_info(&c->client.st, &info);
        if (!info.tls_done)
            c->sniff_started = uv_now(c->p->loop); /* its handshake first */
        else if (c->client.in.len)
            serve_requests(c);
        else
            begin_tls_tunnel(c, "");
        return;
    }
    c->state = C_RAW;
    if (record)
        reel__tunnel_flow(c, host, port, !reply_200);
    else
        reel__connect_head_drop(c); /* an ignored host: nothing recorded */
    c->tunnel_reply = reply_200;
    if (early_to(c, false, host, port))
        c->up->eager = false; /* connected early: the tunnel's, with what it said and its end */
    else
        reel__upstream_for(c, false, host, port, NULL);
    if (c->state == C_RAW)
        reel__tunnel_forward(c);
}

void reel__start_upgraded_tunnel(conn_t *c) {
    c->state = C_RAW;
    if (c->ex.ws_ok && c->ex.flow) {
        /* WebSocket: the flow goes on, its messages recorded as they pass
         * (each kept up to body_limit). */
        size_t limit = reel_capture_body_limit(c->ex.flow);
        /* (a header is passed on once it is whole and valid: relay_dir) */
        reel_ws_opts_t o = {.max_message = limit, .deflate = c->ex.ws_deflate, .hold_header = true};
        c->tun[0] = reel_ws_codec_new(REEL_WS_FROM_CLIENT, &o);
        c->tun[1] = reel_ws_codec_new(REEL_WS_FROM_SERVER, &o);
        c->websocket = true;
    } else if (c->ex.flow) {
        /* Another protocol (or WebSocket extensions reel cannot read): the
         * bytes that follow are TCP messages of the upgrade's own flow,
         * which ends with the tunnel (with the timings of its request and
         * 101, taken now). It is the tunnel flow from here on. */
        reel_capture_flow_t *f = c->ex.flow;
        c->upgrade_fin = reel__fin_take(c);
        c->tflow = f;
    }
    /* Bytes the parsers hold beyond the head are still in the buffers. */
    reel__tunnel_forward(c);
}

/* ---- STARTTLS ----
 *
 * SMTP (RFC 3207), IMAP (RFC 3501 6.2.1), POP3 (RFC 2595 4) and FTP (RFC
 * 4217) sessions in a plain TCP tunnel can switch to TLS mid-stream, and a
 * PostgreSQL client asks for TLS first. With intercept_starttls reel
 * watches for that: the client's command (STARTTLS; TAG STARTTLS; STLS;
 * AUTH TLS or SSL) as the last line of what it sent, and the server's yes
 * (220; TAG OK; +OK; 234) as the first line of its answer, or
 * PostgreSQL's SSLRequest (8 bytes) and its one-byte 'S', the two relayed
 * as any bytes. The client's next bytes are then its ClientHello: held, reel's
 * TLS to the server goes on the same connection (verified as for
 * HTTPS), and the client's handshake with reel's leaf follows, offered
 * what the server chose by ALPN: from there on the tunnel is a TLS
 * tunnel (tls_tunnel), its messages recorded decrypted, with a
 * ServerConn record at that point. Anything else (a refusal, a command
 * that is not the last line, a client that does not start TLS, a host
 * in ignore_hosts) leaves the bytes relayed as they come. */

enum { ST_NONE, ST_ASKED, ST_AGREED, ST_BEGUN, ST_OFF };
enum { ST_SMTP = 1, ST_IMAP, ST_POP3, ST_FTP, ST_POSTGRES };

/* PostgreSQL's SSLRequest (its protocol's 8 bytes: length 8, code
 * 80877103), which a client sends first for TLS; the server answers one
 * byte, 'S' (yes) or 'N' */
static const uint8_t pg_ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};

static bool line_is(const uint8_t *l, size_t n, const char *word) {
    size_t k = strlen(word);
    return n == k && strncasecmp((const char *)l, word, k) == 0;
}

/* The last line of d[0..n), if d ends with one (*l, *len without its
 * CR LF). */
static bool last_line(const uint8_t *d, size_t n, const uint8_t **l, size_t *len) {
    if (n == 0 || d[n - 1] != '\n')
        return false;
    size_t e = n - 1;
    if (e && d[e - 1] == '\r')
        e--;
    size_t s = e;
    while (s > 0 && d[s - 1] != '\n')
        s--;
    *l = d + s;
    *len = e - s;
    return true;
}

/* Whether the tunnel is one STARTTLS may be watched in: plain TCP both
 * ways, not a WebSocket or an Upgrade's protocol. */
static bool starttls_tunnel(const conn_t *c) {
    return c->p->starttls && c->tflow && c->tunnel_host && !c->websocket && !c->tls_tunnel &&
           c->upgrade_fin == NULL && c->up && !reel_stack_has_tls(&c->client.st) &&
           !reel_stack_has_tls(&c->up->st) && c->starttls != ST_OFF && c->starttls != ST_BEGUN;
}

/* Looks at what each side sent before it is relayed: the client's
 * command, then the server's answer. */
static void starttls_watch(conn_t *c) {
    if (!starttls_tunnel(c) || c->starttls == ST_AGREED)
        return;
    peer_t *cl = &c->client, *up = c->up;
    const uint8_t *l;
    size_t n;
    if (cl->in.len) {
        c->starttls = ST_NONE;
        if (cl->in.len == sizeof pg_ssl_request &&
            memcmp(cl->in.data, pg_ssl_request, sizeof pg_ssl_request) == 0) {
            c->starttls_proto = ST_POSTGRES;
            c->starttls = ST_ASKED;
            return;
        }
        if (cl->in.len > 256 || !last_line(cl->in.data, cl->in.len, &l, &n))
            return;
        const uint8_t *sp = memchr(l, ' ', n);
        if (line_is(l, n, "STARTTLS")) {
            c->starttls_proto = ST_SMTP;
        } else if (line_is(l, n, "STLS")) {
            c->starttls_proto = ST_POP3;
        } else if (line_is(l, n, "AUTH TLS") || line_is(l, n, "AUTH SSL")) {
            c->starttls_proto = ST_FTP; /* RFC 4217 4 */
        } else if (sp && sp > l && (size_t)(sp - l) < sizeof c->starttls_tag &&
                   line_is(sp + 1, n - (size_t)(sp - l) - 1, "STARTTLS")) {
            c->starttls_proto = ST_IMAP;
            memcpy(c->starttls_tag, l, (size_t)(sp - l));
            c->starttls_tag[sp - l] = '\0';
        } else {
            return;
        }
        c->starttls = ST_ASKED;
        return;
    }
    if (c->starttls != ST_ASKED || up->in.len == 0)
        return;
    const uint8_t *d = up->in.data, *end = d + up->in.len;
    c->starttls = ST_NONE;
    if (c->starttls_proto == ST_POSTGRES) { /* one byte, nothing after it */
        if (up->in.len == 1 && d[0] == 'S')
            c->starttls = ST_AGREED;
        return;
    }
    /* its answer's lines (IMAP's untagged ones before the tagged) */
    while (d < end) {
        const uint8_t *nl = memchr(d, '\n', (size_t)(end - d));
        if (nl == NULL)
            return; /* (an answer cut across reads: not intercepted) */
        size_t len = (size_t)(nl - d);
        if (c->starttls_proto == ST_SMTP) {
            if (len >= 4 && memcmp(d, "220", 3) == 0 && (d[3] == ' ' || d[3] == '\r'))
                c->starttls = ST_AGREED;
            return;
        }
        if (c->starttls_proto == ST_POP3) {
            if (len >= 3 && memcmp(d, "+OK", 3) == 0)
                c->starttls = ST_AGREED;
            return;
        }
        if (c->starttls_proto == ST_FTP) {
            if (len >= 4 && memcmp(d, "234", 3) == 0 && (d[3] == ' ' || d[3] == '\r'))
                c->starttls = ST_AGREED;
            return;
        }
        size_t tl = strlen(c->starttls_tag);
        if (len > tl + 3 && memcmp(d, c->starttls_tag, tl) == 0 && d[tl] == ' ') {
            if (strncasecmp((const char *)d + tl + 1, "OK", 2) == 0)
                c->starttls = ST_AGREED;
            return;
        }
        if (len < 2 || d[0] != '*' || d[1] != ' ')
            return;
        d = nl + 1;
    }
    c->starttls = ST_ASKED; /* untagged lines only, so far */
}

size_t reel__starttls_held(const conn_t *c) {
    bool holding = c->starttls == ST_AGREED || (c->starttls == ST_BEGUN && c->probe_tls);
    return holding ? c->client.in.len : 0;
}

/* Once the server agreed: whether the client's bytes are held (its
 * ClientHello, whole or not yet), reel's TLS to the server begun when it
 * is whole. False: relayed as they come. */
static bool starttls_hold(conn_t *c) {
    peer_t *cl = &c->client;
    if (c->starttls != ST_AGREED)
        return false;
    if (cl->eof) { /* it ended before its TLS began: what it sent goes on, then its end */
        c->starttls = ST_OFF;
        return false;
    }
    if (cl->in.len == 0)
        return true;
    reel_sniff_kind k = reel_sniff(cl->in.data, cl->in.len);
    if (k == REEL_SNIFF_NEED_MORE)
        return true;
    c->starttls = ST_OFF; /* whatever comes: decided now */
    if (k != REEL_SNIFF_TLS || c->p->server_ctx == NULL)
        return false;
    reel_clienthello_t ch;
    reel_rc rc = reel_clienthello_parse(cl->in.data, cl->in.len, &ch);
    if (rc == REEL_NEED_MORE) {
        c->starttls = ST_AGREED;
        return true;
    }
    const char *sni = rc == REEL_OK && ch.sni[0] ? ch.sni : NULL;
    if (sni && reel__host_ignored(c->p, sni, c->tunnel_port))
        return false;
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_t *tls = NULL;
    if (reel_tls_new_server(c->p->server_ctx, c->tunnel_host, &tls, &err) != REEL_OK)
        return false;
    free(c->tunnel_sni);
    c->tunnel_sni = sni ? reel_strdup(sni) : NULL;
    char alpn[REEL_CH_ALPN_LIST_MAX] = "";
    if (rc == REEL_OK)
        reel_clienthello_alpn(&ch, alpn, sizeof alpn);
    /* as a TLS tunnel whose client's ALPN is mirrored: the client's
     * handshake (its hello held in cl->in) once the server's is done
     * (tls_tunnel_ready) */
    c->starttls = ST_BEGUN;
    c->tls_tunnel = true;
    c->probe_tls = tls;
    reel__peer_read_stop(cl);
    c->upstream_alpn = alpn;
    reel__upstream_starttls(c);
    c->upstream_alpn = NULL;
    return true;
}

/* The origin's ALPN key: "host:port name", the name sent as SNI (the host
 * when none was given: the same origin either way). */
static void alpn_key(const char *host, int port, const char *sni, char *out, size_t n) {
    snprintf(out, n, "%s:%d %s", host ? host : "", port, sni ? sni : host ? host : "");
}

int reel__alpn_seen(const reel_proxy_t *p, const char *host, int port, const char *sni) {
    char key[300];
    alpn_key(host, port, sni, key, sizeof key);
    for (size_t i = 0; i < sizeof p->alpn_seen / sizeof p->alpn_seen[0]; i++)
        if (strcmp(p->alpn_seen[i].key, key) == 0)
            return p->alpn_seen[i].h2;
    return -1;
}

void reel__alpn_note(reel_proxy_t *p, const char *host, int port, const char *sni, bool h2) {
    struct alpn_seen *slot = NULL;
    char key[300];
    alpn_key(host, port, sni, key, sizeof key);
    for (size_t i = 0; i < sizeof p->alpn_seen / sizeof p->alpn_seen[0] && !slot; i++)
        if (strcmp(p->alpn_seen[i].key, key) == 0)
            slot = &p->alpn_seen[i];
    if (slot == NULL)
        slot = &p->alpn_seen[p->alpn_next++ % (sizeof p->alpn_seen / sizeof p->alpn_seen[0])];
    snprintf(slot->key, sizeof slot->key, "%s", key);
    slot->h2 = h2;
}

/* The client's TLS starts: a TLS filter goes on top of the client's stack;
 * the buffered ClientHello is its first input, and what it decrypts is
 * processed as any read (reel__peer_read_done) in `state` (C_HEAD: HTTP;
 * C_SNIFF: whether it is HTTP is decided by the first bytes; C_RAW: a
 * TLS tunnel). */
static void start_client_tls(conn_t *c, reel_tls_t *tls, conn_state state) {
    peer_t *cl = &c->client;
    c->state = state;
    c->sniff_bytes_at = 0; /* (sniffing inside TLS has its handshake's clock) */
    c->sniff_bytes_us = 0;
    if (state == C_SNIFF) {
        c->sniff_started = uv_now(c->p->loop);
        c->eager_tried = false; /* (inside its TLS: its own early connect) */
        c->origin_closed_silent = false;
    }
    if (state != C_RAW)
        c->ex.resp_head_sent = false; /* requests inside the tunnel get their own answers */
    reel_buf_t hello = cl->in;
    reel_buf_init(&cl->in, 0);
    reel_stack_push(&cl->st, reel_tls_filter_new(tls), hello.data, hello.len);
    c->client_tls = true;
    reel_buf_free(&hello);
}

/* The origin answered the probe (alpn: what it chose, "" for nothing) or
 * could not (NULL): the client's handshake goes on, offering h2 only if
 * the origin chose it. An origin that chose h2 has this connection become
 * the proxy's shared HTTP/2 session to it (core/h2up.c), over which the
 * lanes' requests go; one that chose HTTP/1.1 keeps it for the client's
 * first request. */
void reel__probe_done(conn_t *c, const char *alpn) {
    if (c->state != C_PROBE)
        return;
    reel_proxy_t *p = c->p;
    bool h2 = alpn && strcmp(alpn, "h2") == 0;
    if (alpn)
        reel__alpn_note(p, c->tunnel_host, c->tunnel_port, c->tunnel_sni, h2);
    if (h2 && p->http2 && c->up && reel__peer_ready(c->up)) {
        /* the lanes' requests go over this connection: it becomes the
         * origin's shared session (no second handshake) */
        peer_t *up = c->up;
        c->up = NULL;
        reel__h2up_adopt(p, &up->st, &up->in, c->tunnel_host, c->tunnel_port, c->tunnel_sni);
        reel__peer_forget(up);
    } else if (h2) {
        reel__upstream_close(c);
    }
    reel_tls_t *tls = c->probe_tls;
    c->probe_tls = NULL;
    reel_tls_offer_h2(tls, h2);
    start_client_tls(c, tls, C_HEAD);
    reel__peer_read_start(&c->client);
}

/* ---- TLS that is not HTTP ----
 *
 * Intercepted TLS whose client does not speak HTTP inside (MQTT over TLS,
 * IMAPS, a custom protocol) is relayed as mitmproxy does: a tunnel flow
 * (scheme "tls") of TCP messages, the plaintext of both TLS legs, with TLS
 * toward the origin verified as for HTTPS. Decided by the ClientHello
 * (reel_clienthello_alpn) when its ALPN offer names only protocols that
 * are not HTTP (the origin is connected first, offered the same list, and
 * the client is given what the origin chose); otherwise, when its offer
 * selects no HTTP protocol, by the first bytes the client sends inside
 * its TLS (not an HTTP/1 request line nor the HTTP/2 preface), or by the
 * origin speaking first (connected to once the client has been silent
 * for EAGER_CONNECT_MS; both silent for SNIFF_WAIT_MS, at that). */

/* A TLS tunnel begins: its flow (the CONNECT, answered) and TLS to the
 * origin offering alpn (comma-separated, "": none). The client's TLS is
 * running already, or (c->probe_tls) starts once the origin has chosen. */
static void begin_tls_tunnel(conn_t *c, const char *alpn) {
    c->state = C_RAW;
    c->tls_tunnel = true;
    /* nothing in HTTP is said inside: an origin that cannot be reached
     * ends the tunnel and its flow with the reason, no 502 */
    c->ex.resp_head_sent = true;
    reel__tunnel_flow(c, c->tunnel_host, c->tunnel_port, true);
    if (early_to(c, true, c->tunnel_host, c->tunnel_port)) {
        c->up->eager = false; /* connected early (reel__sniff_connect_early), offered no ALPN */
    } else {
        reel__upstream_close(c);
        c->upstream_alpn = alpn;
        reel__upstream_for(c, true, c->tunnel_host, c->tunnel_port, c->tunnel_sni);
        c->upstream_alpn = NULL;
    }
    if (c->state == C_RAW)
        reel__tunnel_forward(c);
}

/* Whether a TLS tunnel may relay: its origin's TLS is up (recorded as the
 * flow's ServerConn) and the client's TLS has started, with the protocol
 * the origin chose if the client's waited for it. */
static bool tls_tunnel_ready(conn_t *c) {
    peer_t *up = c->up;
    if (!reel__peer_ready(up))
        return false;
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    if (!c->tls_conn_recorded && c->tflow) {
        c->tls_conn_recorded = true;
        reel_capture_conn_t sc = reel__conn_facts(up, &info);
        sc.unverified = up->insecure;
        up->flows++;
        reel_capture_server_conn(c->tflow, &sc);
    }
    if (c->probe_tls) {
        reel_tls_t *tls = c->probe_tls;
        c->probe_tls = NULL;
        reel_tls_mirror_alpn(tls, info.alpn ? info.alpn : "");
        start_client_tls(c, tls, C_RAW);
        if (c->state != C_RAW || c->client.closing)
            return false; /* its handshake failed at once */
        reel__peer_read_start(&c->client);
    }
    return true;
}

bool reel__tls_client_left(conn_t *c, const char *error) {
    peer_t *cl = &c->client;
    /* connect_head is dropped at the first request head inside, an
     * HTTP/2 client's first stream (and by a lane, whose CONNECT stream
     * records its own end); bytes short of a request are the tunnel's
     * own to record (tunnel_abandoned), but an HTTP/2 client's preface
     * and settings, which h2front has read */
    if (!c->in_tunnel || !c->tunnel_tls || c->connect_head == NULL || c->tflow ||
        c->tunnel_host == NULL || (cl->in.len > 0 && c->state != C_H2))
        return false;
    reel_stack_info_t info;
    reel_stack_info(&cl->st, &info);
    if (!info.tls_done)
        return false;     /* a handshake that failed says so (reel__client_tls_failed) */
    c->tls_tunnel = true; /* a tls:// flow: TLS is all the client spoke */
    reel__tunnel_flow(c, c->tunnel_host, c->tunnel_port, true);
    const char *v = info.tls_version ? info.tls_version : "TLS",
               *sni = info.sni ? info.sni : "none", *alpn = info.alpn ? info.alpn : "none";
    char *why = error ? reel_asprintf("%s, after the client's TLS handshake with reel (%s, SNI %s, "
                                      "ALPN %s), before it sent a request",
                                      error, v, sni, alpn)
                      : reel_asprintf("the client closed the connection after its TLS handshake "
                                      "with reel (%s, SNI %s, ALPN %s), before sending a request "
                                      "(a connection opened ahead and not used, as browsers do, "
                                      "or a client that refused reel's certificate after the "
                                      "handshake, as certificate pinning does)",
                                      v, sni, alpn);
    reel__finish_tflow(c, why);
    free(why);
    return true;
}

/* What the client sends inside the tunnel (inside its TLS, or in the
 * clear) is served as HTTP, as reel__conn_process serves C_HEAD: HTTP/2
 * when it starts with the preface, else HTTP/1. */
static void serve_requests(conn_t *c) {
    c->state = C_HEAD;
    if (c->ex.flow == NULL && c->lane == NULL && reel__h2front_start(c)) {
        if (c->up && c->up->eager) /* (HTTP/2's streams have connections of their own) */
            reel__upstream_close(c);
        if (c->state == C_H2)
            reel__h2front_process(c);
        return;
    }
    if (c->up) /* a connection made early is now the requests' (or closed by them) */
        c->up->eager = false;
    reel__req_process(c);
}

/* C_SNIFF inside the client's TLS: HTTP (an HTTP/1 request line, the
 * HTTP/2 preface) is served as HTTPS; anything else is a TLS tunnel. */
static void sniff_inside_tls(conn_t *c) {
    peer_t *cl = &c->client;
    size_t n = cl->in.len;
    reel_sniff_kind k;
    if (n && memcmp(cl->in.data, REEL_H2_PREFACE,
                    n < REEL_H2_PREFACE_LEN ? n : REEL_H2_PREFACE_LEN) == 0)
        k = n < REEL_H2_PREFACE_LEN ? REEL_SNIFF_NEED_MORE : REEL_SNIFF_HTTP;
    else
        k = reel_sniff(cl->in.data, n);
    if (k == REEL_SNIFF_NEED_MORE)
        return;
    if (k == REEL_SNIFF_HTTP)
        serve_requests(c);
    else
        begin_tls_tunnel(c, "");
}

void reel__sniff_client_ended(conn_t *c) {
    /* As at the sniffer's timeout, but now: no byte more comes to say. Not
     * TLS, a raw tunnel; inside TLS, a TLS one (its bytes would otherwise
     * wait for the timeout and then for head_timeout as an HTTP head, and
     * the flow would say reel answered a 408 to a client long gone) */
    if (reel_stack_has_tls(&c->client.st)) {
        reel_stack_info_t info;
        reel_stack_info(&c->client.st, &info);
        if (info.tls_no_close_notify) {
            /* its TLS ended without close_notify: what came may be cut
             * short, and nothing would vouch for the end passed on; its
             * bytes are the flow's, not passed on (relayed, they were lost
             * with the tunnel, the flow complete and empty) */
            char *why = reel_asprintf("the client closed its TLS connection without close_notify "
                                      "after %zu bytes that did not say what the tunnel carries "
                                      "(they were not passed on)",
                                      c->client.in.len);
            reel__tunnel_abandoned(c, why);
            free(why);
            reel__conn_close(c);
            return;
        }
        begin_tls_tunnel(c, "");
    } else {
        reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
    }
}

bool reel__sniff_hello_started(conn_t *c) {
    peer_t *cl = &c->client;
    if (c->state != C_SNIFF || reel_stack_has_tls(&cl->st) || cl->in.len == 0 ||
        cl->in.data[0] != 22)
        return false;
    /* a TLS prefix that reel__sniff_process could not act on yet: its
     * ClientHello is not whole */
    reel_sniff_kind k = reel_sniff(cl->in.data, cl->in.len);
    return k == REEL_SNIFF_NEED_MORE || k == REEL_SNIFF_TLS;
}

bool reel__sniff_may_connect_early(const conn_t *c) {
    if (c->state != C_SNIFF || c->eager_tried || c->sniff_bytes_at != 0 || c->tunnel_host == NULL ||
        c->p->shutting_down || c->client.in.len)
        return false;
    if (!reel_stack_has_tls(&c->client.st))
        return true;
    reel_stack_info_t info; /* inside the client's TLS: once its handshake is done */
    reel_stack_info(&c->client.st, &info);
    return info.tls_done;
}

/* The client has said nothing EAGER_CONNECT_MS after its 200 (or after
 * its TLS handshake with reel, offering no ALPN that says HTTP): reel
 * connects to the origin meanwhile (core/peer.c marks the connection
 * eager; TLS inside the client's TLS, offering no ALPN, as a TLS tunnel
 * does), as mitmproxy's eager connection strategy does. If the origin
 * speaks before the client does, it is a protocol whose server
 * speaks first (SMTP; IMAPS), and the tunnel is a raw (TLS) one at once
 * (reel__sniff_origin_first), with that connection; a client that speaks
 * first decides as before: HTTP to that origin takes the connection, and
 * so does reel's own TLS to the origin when the client speaks TLS (held
 * until then: core/peer.c's upstream_take_held). Before,
 * such a tunnel waited SNIFF_WAIT_MS for nothing. An early connect that
 * fails (core/peer.c's reel__upstream_failed), or that the origin closes
 * having said nothing (conn.c), is closed and forgotten. */
void reel__sniff_connect_early(conn_t *c) {
    c->eager_tried = true;
    if (reel_stack_has_tls(&c->client.st)) {
        c->upstream_alpn = "";
        reel__upstream_open(c, true, c->tunnel_host, c->tunnel_port, c->tunnel_sni);
        c->upstream_alpn = NULL;
    } else {
        reel__upstream_open(c, false, c->tunnel_host, c->tunnel_port, NULL);
    }
}

bool reel__sniff_origin_silent(const conn_t *c) {
    return c->state == C_SNIFF && c->client.in.len == 0 && c->up && c->up->eager &&
           !c->up->closing && !c->up->eof && reel__peer_ready(c->up);
}

void reel__sniff_origin_first(conn_t *c) {
    peer_t *cl = &c->client;
    bool in_tls = reel_stack_has_tls(&cl->st);
    if (reel__sniff_hello_started(c) || (in_tls && cl->in.len)) {
        /* the client has begun a ClientHello, which is never relayed raw
         * (conn.c), or inside its TLS what may be the start of a request
         * line: its bytes decide, the origin's wait, unread */
        reel__peer_read_stop(c->up);
        return;
    }
    if (in_tls)
        begin_tls_tunnel(c, "");
    else
        reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
}

/* A tunnel to host:port that no CONNECT asked for (reel as a reverse
 * proxy, a redirected connection): sniffed as one answered would be. */
static void sniff_unasked(conn_t *c, const char *host, int port) {
    c->in_tunnel = true;
    free(c->tunnel_host);
    c->tunnel_host = reel_strdup(host);
    c->tunnel_port = port;
    c->state = C_SNIFF;
    c->sniff_started = uv_now(c->p->loop);
    c->sniff_bytes_at = 0;
    c->sniff_bytes_us = 0;
    c->eager_tried = c->origin_closed_silent = false;
    reel__conn_arm(c); /* the sniff's deadlines */
}

void reel__reverse_begin(conn_t *c) {
    c->reverse = true;
    sniff_unasked(c, c->p->reverse_host, c->p->reverse_port);
}

/* The name of reel's leaf for a client of reel as a reverse proxy that
 * sends no SNI: the address it connected to (its client's view of reel),
 * else reverse_to's host. Owned. */
static char *reverse_leaf_name(conn_t *c) {
    reel_stack_info_t info;
    reel_stack_info(&c->client.st, &info);
    const char *l = info.local, *colon = strrchr(l, ':');
    if (colon == NULL || colon == l)
        return reel_strdup(c->tunnel_host);
    if (l[0] == '[' && colon[-1] == ']')
        return reel_strndup(l + 1, (size_t)(colon - l - 2));
    return reel_strndup(l, (size_t)(colon - l));
}

void reel__transparent_begin(conn_t *c, const char *host, int port) {
    c->transparent = true;
    sniff_unasked(c, host, port);
}

/* After CONNECT 200: decide what the client speaks. */
void reel__sniff_process(conn_t *c) {
    peer_t *cl = &c->client;
    if (reel_stack_has_tls(&cl->st)) {
        sniff_inside_tls(c);
        return;
    }
    if (cl->in.len && c->sniff_bytes_at == 0) {
        c->sniff_bytes_at = uv_now(c->p->loop);
        c->sniff_bytes_us = reel__now_us();
    }
    reel_sniff_kind k = reel_sniff(cl->in.data, cl->in.len);
    /* HTTP/2 in the clear (prior knowledge), which reel_sniff calls no
     * HTTP, from a client of reel as a reverse proxy for an HTTPS origin:
     * served as HTTP/2 (core/h2front.c), its requests going to the origin
     * over TLS. Elsewhere relayed raw, as before: inside a CONNECT tunnel
     * (test_http2_upstream's h2c origin), or to a plain origin, which may
     * know only h2c (gRPC) where reel would speak HTTP/1.1 to it */
    if (c->reverse && c->p->reverse_https && c->p->http2 && cl->in.len && cl->in.data[0] == 'P') {
        size_t pn = cl->in.len < REEL_H2_PREFACE_LEN ? cl->in.len : REEL_H2_PREFACE_LEN;
        if (memcmp(cl->in.data, REEL_H2_PREFACE, pn) == 0) {
            if (pn < REEL_H2_PREFACE_LEN)
                return; /* the rest of it */
            k = REEL_SNIFF_HTTP;
        }
    }
    if (k == REEL_SNIFF_NEED_MORE)
        return;
    if (k == REEL_SNIFF_TLS) {
        reel_clienthello_t ch;
        reel_rc rc = reel_clienthello_parse(cl->in.data, cl->in.len, &ch);
        if (rc == REEL_NEED_MORE)
            return;
        const char *sni = rc == REEL_OK && ch.sni[0] ? ch.sni : NULL;
        if (sni && reel__host_ignored(c->p, sni, c->tunnel_port)) {
            STAT_ADD(c->p, ignored, 1);
            reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, false);
            return;
        }
        if (c->p->server_ctx == NULL) {
            reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
            return;
        }
        free(c->tunnel_sni);
        /* (a reverse proxy's client names reel, not the origin: reel's
         * TLS to the origin names reverse_to's host) */
        c->tunnel_sni = sni && !c->reverse ? reel_strdup(sni) : NULL;
        reel_err_t err;
        reel_err_clear(&err);
        reel_tls_t *tls = NULL;
        char *leaf = c->reverse ? reverse_leaf_name(c) : NULL;
        reel_rc lrc =
            reel_tls_new_server(c->p->server_ctx, leaf ? leaf : c->tunnel_host, &tls, &err);
        free(leaf);
        if (lrc != REEL_OK) {
            reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
            return;
        }
        if (c->up && c->up->eager) {
            /* reel's TLS to the origin will go on it (core/peer.c's
             * upstream_open), and nothing else: held */
            c->up->eager = false;
            c->up->held = true;
        }
        c->tunnel_tls = true;
        char alpn[REEL_CH_ALPN_LIST_MAX];
        reel_ch_alpn_kind offer =
            rc == REEL_OK ? reel_clienthello_alpn(&ch, alpn, sizeof alpn) : REEL_CH_ALPN_HTTP;
        /* reel as a reverse proxy for a plain-HTTP origin: no TLS on the
         * other side to ask for its protocols, so HTTP/1.1, and any other
         * ALPN sniffed inside the client's TLS */
        bool plain_origin = c->reverse && !c->p->reverse_https;
        if (plain_origin && offer == REEL_CH_ALPN_OTHER)
            offer = REEL_CH_ALPN_UNKNOWN;
        if (offer == REEL_CH_ALPN_OTHER) {
            /* ALPN mirrored: the client's handshake waits for the origin's */
            c->probe_tls = tls;
            reel__peer_read_stop(cl);
            begin_tls_tunnel(c, alpn);
            return;
        }
        if (offer == REEL_CH_ALPN_UNKNOWN) {
            start_client_tls(c, tls, C_SNIFF);
            return;
        }
        bool wants_h2 = false;
        for (size_t i = 0; rc == REEL_OK && i < ch.alpn_count; i++)
            wants_h2 = wants_h2 || (ch.alpn_len[i] == 2 && memcmp(ch.alpn[i], "h2", 2) == 0);
        if (c->p->http2 && wants_h2 && c->lane == NULL && !plain_origin) {
            /* (a lane, serving a CONNECT stream of an HTTP/2 client, speaks
             * HTTP/1.1 inside: its client is offered no h2) */
            /* ALPN mirrored: the client is offered h2 only if its origin
             * speaks it, which reel asks the origin first (once per
             * origin: the answer is remembered) */
            int seen = reel__alpn_seen(c->p, c->tunnel_host, c->tunnel_port, c->tunnel_sni);
            if (seen < 0) {
                c->state = C_PROBE;
                c->probe_tls = tls;
                c->probe_started_us = reel__now_us();
                reel__peer_read_stop(cl);
                reel__upstream_for(c, true, c->tunnel_host, c->tunnel_port, c->tunnel_sni);
                return;
            }
            reel_tls_offer_h2(tls, seen == 1);
            if (seen == 1 && c->up && c->up->held) /* (its streams have connections of their own) */
                reel__upstream_close(c);
        }
        start_client_tls(c, tls, C_HEAD);
        return;
    }
    if (k == REEL_SNIFF_HTTP) {
        c->tunnel_tls = false;
        c->ex.resp_head_sent = false;
        /* (HTTP/2 in the clear too, as h2c clients of reel as a reverse
         * proxy speak it: it went to the HTTP/1 parser, which gave up on
         * its preface) */
        serve_requests(c);
        return;
    }
    reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
}
