/* Client connections: accepting, reading (TLS pump, dispatch by state),
 * closing and lingering, the per-connection deadline timer, and the
 * per-client connection count. Part of the proxy; see core/conn.h. */

#include "core/conn.h"
#include "core/hostport.h"
#include "core/tcp.h"

static void conn_free(conn_t *c);
static void on_close_timer(uv_handle_t *h);
static bool upstream_owes(const conn_t *c);
static char *setup_timed_out(const conn_t *c, const peer_t *up);
static void upstream_timed_out(conn_t *c);
static uint64_t earlier(uint64_t a, uint64_t b);
static uint64_t conn_deadline(conn_t *c);
static void on_conn_timer(uv_timer_t *t);
static struct client_count **client_slot(struct proxy_shared *sh, const char *ip);
static bool client_admit(conn_t *c);
static void client_release(conn_t *c);
static void refuse_over_limit(conn_t *c);

/* ---- reading ---- */

/* The client's TLS handshake failed: recorded as a tunnel flow with the
 * reason, which core/tls.c words (and asks whether the client trusts
 * reel's CA only for the alerts that say so: not for a TLS version
 * refused or a client that hung up). */
void reel__client_tls_failed(conn_t *c, const char *error) {
    reel__tunnel_flow(c, c->tunnel_host ? c->tunnel_host : "", c->tunnel_port, true);
    reel__finish_tflow(c, error);
    c->ex.resp_head_sent = true;
    reel__fail_exchange(c, 0, "client TLS handshake failed");
}

void reel__client_error_ends_flows(conn_t *c, const char *error) {
    char *why = reel_asprintf("client connection error: %s", error);
    /* a raw tunnel with bytes still queued for the client ends with them
     * (one with none goes on: the client's end may be half a close) */
    if (reel__peer_queued(&c->client) > 0)
        reel__tflow_when_delivered(c);
    reel__client_gone_ends_exchange(c, why); /* its queue will not be sent */
    free(why);
}

void reel__client_lost(conn_t *c, const char *error) {
    /* after a clean end (a half-close, TLS's close_notify) the connection
     * broke: whatever was still to be sent cannot go */
    reel__client_error_ends_flows(c, error);
    reel__conn_close(c);
}

void reel__upstream_ready(peer_t *up) {
    reel__peer_flush_pend(up);
    conn_t *c = up->c;
    if (c->state == C_PROBE) {
        reel_stack_info_t info;
        reel_stack_info(&up->st, &info);
        reel__probe_done(c, info.alpn ? info.alpn : ""); /* "": no ALPN at all */
        return;
    }
    reel__record_server_conn(c);
    if (c->state == C_RAW && c->tunnel_reply) {
        c->tunnel_reply = false;
        c->ex.resp_head_sent = true;
        reel__tunnel_answer(c);
    }
    if (c->state == C_RAW)
        reel__tunnel_forward(c);
}

/* A tunnel reel answered 200 that ended before it was known what it
 * carries (the client closed or broke it while reel sniffed its first
 * bytes): no flow inside says it happened, so the tunnel's own does, with
 * what came (nothing, or bytes that were not yet a whole request or
 * ClientHello) and why: NULL for a close. */
void reel__tunnel_abandoned(conn_t *c, const char *why) {
    peer_t *cl = &c->client;
    if (c->tflow || c->tunnel_host == NULL)
        return;
    /* inside the TLS reel intercepted, what came was decrypted: a tls://
     * flow, as the client spoke (it was a tcp:// one) */
    if (c->tunnel_tls && reel_stack_has_tls(&cl->st))
        c->tls_tunnel = true;
    reel__tunnel_flow(c, c->tunnel_host, c->tunnel_port, true);
    if (cl->in.len) /* stamped when they came, not now */
        reel_capture_message_at(c->tflow, true, cl->in.data, cl->in.len, c->sniff_bytes_us);
    reel__finish_tflow(c, why);
}

void reel__conn_process(conn_t *c) {
    peer_t *cl = &c->client;
    switch (c->state) {
    case C_SNIFF:
        reel__sniff_process(c);
        break;
    case C_HEAD:
        if (reel__socks_begin(c)) {
            reel__socks_process(c);
            break;
        }
        if (c->ex.flow == NULL && c->lane == NULL && reel__h2front_start(c)) {
            if (c->state == C_H2)
                reel__h2front_process(c);
            break;
        }
        /* fall through */
    case C_REQ_BODY:
        reel__req_process(c);
        /* bytes that came with a CONNECT, after its head, are the
         * tunnel's first: look at them now rather than at the next read
         * (or the sniff timeout) */
        if (c->state == C_SNIFF && cl->in.len && !cl->closing)
            reel__sniff_process(c);
        break;
    case C_RAW:
        reel__tunnel_forward(c);
        break;
    case C_SOCKS:
        reel__socks_process(c);
        break;
    case C_H2:
        reel__h2front_process(c);
        break;
    default:
        break;
    }
    if (cl->closing)
        return;
    if (cl->eof && cl->error && c->state != C_H2 && c->state != C_RAW) {
        /* the client connection broke (a reset, a write that failed, not
         * a half-close): nothing more reaches the client, so there is no
         * response to wait for (ev_eof ended the flow with why) */
        if (c->state == C_SOCKS) {
            char *why = reel_asprintf("client connection error: %s", cl->error);
            reel__socks_ended(c, why);
            free(why);
        } else if (c->state == C_SNIFF || (c->state == C_HEAD && c->ex.flow == NULL)) {
            char *why = reel_asprintf("client connection error: %s", cl->error);
            if (!reel__head_abandoned(c, why) && !reel__tls_client_left(c, why) &&
                c->state == C_SNIFF)
                reel__tunnel_abandoned(c, why);
            free(why);
        }
        reel__conn_close(c);
        return;
    }
    if (c->state == C_DONE)
        return;
    if (cl->eof && c->state == C_SNIFF && reel__sniff_hello_started(c)) {
        /* it closed with a part of a ClientHello: nothing can be verified
         * or intercepted, and its bytes are not passed on (relayed, they
         * would start a TLS handshake reel never saw) */
        reel__tunnel_abandoned(c, "the client closed the connection during its TLS ClientHello");
        reel__conn_close(c);
        return;
    }
    if (cl->eof && c->state == C_SNIFF && cl->in.len > 0 &&
        (!c->tunnel_tls || reel_stack_has_tls(&cl->st))) {
        /* The client sent bytes that do not say yet what the tunnel
         * carries, then ended its side: it says nothing more, so the
         * tunnel is a raw one now (inside its TLS, a TLS one), its bytes
         * and its end passed on (a protocol may half-close after its
         * request), not 3 s later. */
        reel__sniff_client_ended(c);
        return;
    }
    reel__conn_client_ended(c);
}

/* The client half-closed and every byte it sent has been taken (or it
 * speaks HTTP/2): act on its end for the state the connection is in. Also
 * called when a response ends with the client's pipelined requests all
 * read, since no read comes after the client's end to bring us back here:
 * without it a client that pipelined and half-closed got its answers and
 * then nothing, the connection left open. */
void reel__conn_client_ended(conn_t *c) {
    peer_t *cl = &c->client;
    if (cl->closing || c->state == C_DONE)
        return;
    if (cl->eof && (cl->in.len == 0 || c->state == C_H2)) {
        if (c->state == C_H2) {
            reel__tls_client_left(c, NULL);
            reel__h2front_eof(c);
        } else if (c->state == C_HEAD && c->ex.flow == NULL && reel__peer_queued(cl) > 0) {
            /* half-closed after its last request: the rest of the answer
             * goes out first (closing now would drop it) */
            c->state = C_DONE;
            cl->close_when_flushed = true;
            reel__peer_read_stop(cl);
        } else if (c->state == C_HEAD && c->ex.flow == NULL) {
            if (!reel__head_abandoned(c, NULL))
                reel__tls_client_left(c, NULL);
            reel__conn_close(c);
        } else if (c->state == C_SOCKS) {
            reel__socks_ended(c, NULL);
        } else if (c->state == C_REQ_BODY && c->ex.resp_done && !c->ex.upgrade) {
            /* The final response came before the body (an early 413, a
             * final answer to Expect: 100-continue), and the client ended
             * the connection without the rest, as RFC 9110 10.1.1 allows:
             * the exchange is complete once the client has the response. */
            reel__early_answer_ends(c); /* (no lingering: the client has ended) */
        } else if (c->state == C_REQ_BODY) {
            reel__finish_flow(c, "client closed the connection during the request");
            reel__conn_close(c);
        } else if (c->state == C_SNIFF || c->state == C_PROBE) {
            if (c->state == C_SNIFF && !reel__tls_client_left(c, NULL))
                reel__tunnel_abandoned(c, NULL);
            reel__conn_close(c);
        } else if (c->state == C_WAIT_RESP) {
            /* Let the response finish (the client may have half-closed);
             * when it does not come, the flow says when the client ended */
            c->client_close = true;
            if (c->ex.client_ended_us == 0)
                c->ex.client_ended_us = reel__now_us();
        }
    }
}

void reel__conn_shutdown_ends(conn_t *c) {
    static const char why[] = "the proxy shut down";
    if (c->lane || c->client.closing)
        return; /* (an HTTP/2 stream's lane: its front ends it) */
    if (c->state == C_HEAD && c->ex.flow == NULL) {
        if (!reel__head_abandoned(c, why))
            reel__tls_client_left(c, why);
    } else if (c->state == C_SOCKS) {
        reel__socks_ended(c, why);
    } else if (c->state == C_H2) {
        reel__tls_client_left(c, why); /* an HTTP/2 client that opened no stream */
    } else if (c->state == C_SNIFF && reel__sniff_hello_started(c)) {
        reel__tunnel_abandoned(c, "the proxy shut down during the client's TLS ClientHello");
    } else if (c->state == C_SNIFF && !reel__tls_client_left(c, why)) {
        reel__tunnel_abandoned(c, c->client.in.len
                                      ? "the proxy shut down before the tunnel's first bytes "
                                        "said what it carries (they were not passed on)"
                                      : "the proxy shut down before the client sent anything "
                                        "in the tunnel");
    }
}

/* After the bytes (and maybe the end) of one read reached pe->in. */
void reel__peer_read_done(peer_t *pe) {
    conn_t *c = pe->c;
    reel__conn_touch(c);
    pe->progress = c->last_activity;
    if (c->state == C_LINGER) {
        if (pe->role == P_CLIENT && c->h2)
            reel__h2front_linger(c);
        return;
    }
    if (pe->role == P_CLIENT) {
        reel__conn_process(c);
    } else if (pe->held && c->up == pe) {
        /* the origin spoke (or closed) on the connection held for reel's
         * TLS to it (core/tunnel.c) before reel began that TLS: it is not
         * taken, and reel's TLS goes on one of its own */
        reel__upstream_close(c);
        reel__conn_arm(c);
        return;
    } else if (c->state == C_SNIFF && pe->eager && c->up == pe) {
        if (pe->in.len) {                /* (a read of TLS records alone brings nothing) */
            reel__sniff_origin_first(c); /* it spoke before the client */
        } else if (pe->eof) {
            /* it closed the early connection having said nothing (its idle
             * timeout, a refusal): forgotten, as an early connect that
             * failed (core/peer.c), and it is no server that speaks first:
             * the client's bytes decide, however late (its silence made a
             * raw tunnel at SNIFF_WAIT_MS, so a slow client's ClientHello
             * was relayed, not intercepted, and its HTTP not parsed) */
            c->origin_closed_silent = true;
            reel__upstream_close(c);
            reel__conn_arm(c);
            return;
        }
        if (c->state == C_SNIFF) { /* a ClientHello begun: its reading stays stopped */
            reel__conn_arm(c);
            return;
        }
    } else if (c->state == C_RAW) {
        reel__tunnel_forward(c);
    } else {
        /* the head, body and end of a short response leave in one write */
        reel__peer_cork(&c->client);
        reel__resp_process(c);
        reel__peer_uncork(&c->client);
    }
    if (!pe->closing && c->up == pe)
        reel__peer_update_reading(pe);
    else if (pe->role == P_CLIENT && !pe->closing && c->state != C_DONE)
        reel__peer_update_reading(pe);
    reel__conn_arm(c);
}

/* ---- connection lifecycle ---- */

static void conn_free(conn_t *c) {
    reel_proxy_t *p = c->p;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    client_release(c);
    reel__tunnel_codecs_free(c);
    reel__h2front_free(c);
    reel_tls_free(c->probe_tls);
    reel_codec_free(c->reqc);
    reel_codec_free(c->respc);
    reel_buf_free(&c->ex.retry_head);
    reel_buf_free(&c->ex.head_raw);
    reel_buf_free(&c->ex.rule_req);
    reel__hold_clear(c); /* (its buffers too) */
    reel__local_free(c);
    if (c->cut_fin) /* (reel__conn_close ends it first: not expected) */
        reel__fin_end(c->cut_fin, c->cut_why);
    free(c->cut_why);
    free(c->tunnel_host);
    free(c->tunnel_sni);
    free(c->connect_head);
    free(c->probe_error);
    free(c->probe_sni);
    free(c->probe_via);
    free(c->probe_dns);
    free(c);
    STAT_SUB(p, active_connections, 1);
    if (p->shutting_down && p->conns == NULL)
        reel__shutdown_finish(p);
}

void reel__conn_unref(conn_t *c) {
    if (--c->handles == 0)
        conn_free(c);
}

static void on_close_timer(uv_handle_t *h) {
    reel__conn_unref(h->data);
}

/* The client's answer is out: close, or, after an error answer, half-close
 * and drop what the client still sends until it closes or goes quiet
 * (LINGER_IDLE_MS, at most LINGER_TOTAL_MS). Closing at once with its
 * bytes unread would make the kernel send a reset, which can destroy the
 * answer before the client reads it. */
void reel__conn_close_flushed(conn_t *c) {
    peer_t *cl = &c->client;
    if (!cl->closing && !c->p->shutting_down && reel__peer_notify_first(cl))
        return; /* here again once it has left */
    if (!c->linger || cl->closing || !cl->open || cl->eof || c->p->shutting_down) {
        reel__conn_close(c);
        return;
    }
    c->linger = false;
    reel_stack_end_transport(&cl->st);
    c->state = C_LINGER;
    c->linger_start = uv_now(c->p->loop);
    reel__conn_touch(c);
    reel_buf_reset(&cl->in);
    cl->paused = false;
    reel__peer_read_start(cl);
    reel__conn_arm(c);
}

/* Closing a socket whose peer's bytes are still unread makes the kernel
 * send a reset, which can destroy what reel wrote before (here a Close
 * frame) before the peer reads it: so each side is read to its end. */
static bool ws_linger_done(peer_t *pe) {
    if (pe->closing || !pe->open)
        return true;
    if (reel_stack_queued(&pe->st) || pe->pend.len || pe->corked.len)
        return false;
    if (!pe->fin_sent) {
        if (reel__peer_notify_first(pe))
            return false; /* its close_notify first (ev_written: here again) */
        pe->fin_sent = true;
        reel_stack_end_transport(&pe->st);
    }
    return pe->eof;
}

void reel__ws_linger_step(conn_t *c) {
    if (c->client.closing)
        return;
    if (c->up && ws_linger_done(c->up))
        reel__upstream_close(c);
    if (c->up == NULL && ws_linger_done(&c->client))
        reel__conn_close(c);
}

void reel__conn_close(conn_t *c) {
    if (c->client.closing)
        return;
    /* A body read until the close and passed on that way, not whole (the
     * origin's reset or TLS close without close_notify, a timeout, a
     * shutdown): a clean close would tell the client it has it all (RFC
     * 9112 9.8), a reset tells it not. (An HTTP/2 client's stream is
     * reset by its lane: core/h2front.c.) */
    bool cut = c->ex.resp_until_close && c->ex.resp_head_sent && !c->ex.resp_done;
    /* a cut response whose last bytes were on their way to the client */
    reel__cut_end(c, NULL);
    /* a close planned once the client had its answer: a close_notify first */
    if (!cut && c->client.close_when_flushed && !c->p->shutting_down &&
        reel__peer_queued(&c->client) == 0 && reel__peer_notify_first(&c->client))
        return;
    /* a relayed tunnel whose origin had not ended it: reel's shutdown
     * ended it, and its record says so (it said "complete"); one the
     * origin ended waits for its last bytes to reach the client, and
     * says whether they did, below */
    if (c->p->shutting_down && c->state == C_RAW && c->tflow && !c->websocket && !c->lane &&
        c->up && !c->up->eof) {
        char queued[96] = "";
        if (reel__peer_queued(&c->client))
            snprintf(queued, sizeof queued,
                     " (%zu bytes of the connection's output were still queued in reel)",
                     reel__peer_queued(&c->client));
        char *why =
            reel_asprintf("proxy shut down before the tunnel ended: reel closed it%s", queued);
        reel__finish_tflow(c, why);
        free(why);
    }
    /* (ended normally if nothing of theirs was left to send; a raw
     * tunnel's too) */
    reel__tflow_when_delivered(c);
    reel__fins_undelivered(c,
                           c->p->shutting_down ? "proxy shut down" : "the connection was closed");
    /* (and the requests pipelined behind it, at a shutdown's end of grace
     * among others) */
    reel__exchange_ends_cut(c, c->p->shutting_down ? "proxy shut down before the flow ended"
                                                   : "connection closed before the flow ended");
    reel__finish_tflow(c, NULL);
    reel__h2front_free(c); /* its lanes close too */
    c->state = C_DONE;
    client_release(c); /* no longer counts against its client's limit */
    reel__upstream_close(c);
    if (cut)
        reel__peer_reset(&c->client);
    else
        reel__peer_close(&c->client);
    if (c->timer_open) {
        c->timer_open = false;
        uv_close((uv_handle_t *)&c->timer, on_close_timer);
    }
}

/* Whether the upstream is expected to make progress: it is connecting or
 * handshaking, has bytes of ours to read, or owes (the rest of) a response.
 * A request body the client is slow to send does not count. */
static bool upstream_owes(const conn_t *c) {
    const peer_t *up = c->up;
    if (up == NULL || up->closing || (c->state != C_REQ_BODY && c->state != C_WAIT_RESP) ||
        c->ex.resp_done)
        return false;
    return !reel__peer_ready(up) || reel__peer_queued(up) > 0 || c->ex.req_done ||
           c->ex.resp_head_sent;
}

/* A connection whose request waits on the origin (not on a client that
 * stopped reading) is not idle: upstream_timeout, not idle_timeout, ends
 * that wait, with the client's 504. A shorter idle_timeout used to cut
 * it first: a bare close, and a flow saying only "idle timeout". */
static bool waits_on_origin(const conn_t *c) {
    return upstream_owes(c) && !c->up->paused;
}

/* A tunnel whose upstream connection is not set up yet (its connect, or
 * a TLS tunnel's handshake with the origin): upstream_timeout ends that. */
static bool tunnel_setting_up(const conn_t *c) {
    return c->state == C_RAW && c->up && !c->up->closing && !reel__peer_ready(c->up);
}

/* The client's TLS handshake waits for the origin (its protocols asked
 * first: C_PROBE, or a TLS tunnel mirroring a non-HTTP ALPN), its reading
 * stopped: its end is seen only by looking (PEER_POLL_MS), not read. */
#define PEER_POLL_MS 1000

static bool handshake_waits(const conn_t *c) {
    return !c->client.closing &&
           (c->state == C_PROBE || (c->state == C_RAW && c->probe_tls != NULL));
}

/* Why an upstream connection not ready yet timed out (returns owned). */
static char *setup_timed_out(const conn_t *c, const peer_t *up) {
    unsigned secs = (unsigned)(c->p->upstream_timeout_ms / 1000);
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    bool to_proxy = up->connected || info.setup_connected; /* (a stream's: its session's) */
    if (info.via && !to_proxy) {
        char *none = reel_asprintf("no answer within %us (upstream_timeout)", secs);
        char *why = reel__via_unreachable(info.via, none);
        free(none);
        return why;
    }
    if (info.via && !info.via_open)
        return reel_asprintf("the upstream proxy %s did not answer CONNECT " REEL_HOSTPORT_FMT
                             " within %us (upstream_timeout)",
                             info.via, REEL_HOSTPORT(up->host, up->port), secs);
    if (!up->connected)
        return reel_asprintf("cannot connect to " REEL_HOSTPORT_FMT
                             ": no answer within %us (upstream_timeout)",
                             REEL_HOSTPORT(up->host, up->port), secs);
    return reel_asprintf("TLS handshake with " REEL_HOSTPORT_FMT
                         " not done within %us (upstream_timeout)",
                         REEL_HOSTPORT(up->host, up->port), secs);
}

/* upstream_timeout expired: 504 while no response head was passed on,
 * else the client connection is cut (its response cannot be completed). */
static void upstream_timed_out(conn_t *c) {
    peer_t *up = c->up;
    unsigned secs = (unsigned)(c->p->upstream_timeout_ms / 1000);
    char *why;
    if (!reel__peer_ready(up)) {
        why = setup_timed_out(c, up);
        reel__upstream_record_failed(up); /* one reached: its ServerConn */
    } else {
        char *who = reel__upstream_name(up); /* the peer that went quiet */
        if (!c->ex.resp_head_sent && c->ex.resp_head_started)
            why = reel_asprintf("%s stalled for %us in the middle of the response head "
                                "(upstream_timeout)",
                                who, secs);
        else if (!c->ex.resp_head_sent)
            why = reel_asprintf("%s sent no response for %us (upstream_timeout)", who, secs);
        else
            why = reel_asprintf("%s stalled for %us in the middle of the response "
                                "(upstream_timeout)",
                                who, secs);
        free(who);
    }
    if (c->ex.resp_head_sent) {
        reel__exchange_cut(c, why);
    } else {
        reel__fail_exchange(c, 504, why);
    }
    free(why);
}

/* ---- deadlines ----
 *
 * Each connection has one one-shot timer armed for its earliest deadline
 * (head, response head, upstream progress, sniffing, lingering, idle), so
 * timeouts fire when due instead of on the next tick of a 1 s clock.
 * Activity only moves deadlines later, so the timer is re-armed only when
 * a new, earlier deadline appears (reel__conn_arm after each event) and when it
 * fires. */

static uint64_t earlier(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

static uint64_t conn_deadline(conn_t *c) {
    reel_proxy_t *p = c->p;
    if (c->state == C_LINGER)
        return earlier(c->linger_start + LINGER_TOTAL_MS, c->last_activity + LINGER_IDLE_MS);
    if (c->cut_fin) /* reel__exchange_cut: a look at the client's queue */
        return earlier(c->cut_until, uv_now(p->loop) + CUT_POLL_MS);
    /* a WebSocket may stay quiet for hours: no idle timeout */
    uint64_t d = c->websocket || reel__h2front_busy(c) || waits_on_origin(c)
                     ? UINT64_MAX
                     : c->last_activity + p->idle_timeout_ms;
    d = earlier(d, reel__h2front_cut_due(c)); /* a cut stream's last bytes' wait */
    if ((c->state == C_HEAD || c->state == C_SOCKS) && c->ex.head_started)
        d = earlier(d, c->ex.head_started + p->head_timeout_ms);
    if (upstream_owes(c))
        d = earlier(d, c->up->progress + p->upstream_timeout_ms);
    if ((c->state == C_REQ_BODY || c->state == C_WAIT_RESP) && !c->ex.resp_head_sent &&
        c->ex.resp_head_started)
        d = earlier(d, c->ex.resp_head_started + p->head_timeout_ms);
    if (c->state == C_SNIFF && c->sniff_bytes_at)
        d = earlier(d, c->sniff_bytes_at + p->head_timeout_ms);
    else if (c->state == C_SNIFF && !p->shutting_down && !reel__sniff_origin_silent(c) &&
             !c->origin_closed_silent)
        d = earlier(d, c->sniff_started + /* (no new tunnel at shutdown) */
                           (reel__sniff_may_connect_early(c) ? EAGER_CONNECT_MS : SNIFF_WAIT_MS));
    if ((c->state == C_PROBE && c->up) || tunnel_setting_up(c))
        d = earlier(d, c->up->progress + p->upstream_timeout_ms);
    if (handshake_waits(c))
        d = earlier(d, uv_now(p->loop) + PEER_POLL_MS);
    return d;
}

/* Arms the timer for the connection's earliest deadline if that is sooner
 * than the one it is armed for (or if force: it just fired). */
void reel__conn_arm_at(conn_t *c, bool force) {
    if (!c->timer_open || c->client.closing)
        return;
    uint64_t due = conn_deadline(c);
    if (!force && c->timer_due && c->timer_due <= due)
        return;
    uint64_t now = uv_now(c->p->loop);
    c->timer_due = due > now ? due : now + 1;
    uv_timer_start(&c->timer, on_conn_timer, c->timer_due - now, 0);
}

void reel__conn_arm(conn_t *c) {
    reel__conn_arm_at(c, false);
}

static void on_conn_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    reel_proxy_t *p = c->p;
    uint64_t now = uv_now(p->loop);
    c->timer_due = 0;
    if (c->cut_fin) {
        reel__cut_poll(c);
        return;
    }
    if (handshake_waits(c) && reel_stack_peer_ended(&c->client.st)) {
        /* it left (a timeout of its own) while the origin had not
         * answered: said now, not at upstream_timeout as the origin's */
        static const char why[] = "the client closed the connection while its TLS handshake "
                                  "waited for the origin's (reel asks the origin which protocol "
                                  "to offer it first)";
        if (c->tflow) /* (a TLS tunnel's: tls://) */
            reel__finish_tflow(c, why);
        else /* the raw ClientHello is what came: tcp://, as for one cut */
            reel__tunnel_abandoned(c, why);
        reel__upstream_close(c);
        reel__conn_close(c);
        return;
    }
    if (c->state == C_LINGER) {
        if (now >= c->linger_start + LINGER_TOTAL_MS || now >= c->last_activity + LINGER_IDLE_MS) {
            reel__conn_close(c);
            return;
        }
        reel__conn_arm_at(c, true);
        return;
    }
    if (c->state == C_SOCKS && now - c->ex.head_started >= p->head_timeout_ms) {
        reel__socks_ended(c, "the SOCKS5 negotiation did not end in time (head_timeout): it "
                             "stopped");
        return;
    }
    if (c->state == C_HEAD && c->ex.head_started &&
        now - c->ex.head_started >= p->head_timeout_ms) {
        char *cut = reel__head_cut_note(c, true);
        char *why = reel_asprintf("request head not received in time (head_timeout)%s%s",
                                  cut[0] ? ": " : "", cut);
        reel__record_rejected(c);
        reel__fail_exchange(c, 408, why);
        free(why);
        free(cut);
        return;
    }
    /* A stalled upstream first: when a head stalls, both timeouts may have
     * expired at this tick and "sent nothing for N s" says more. */
    if (upstream_owes(c)) {
        peer_t *up = c->up;
        if (up->paused) {
            up->progress = now; /* not its fault: the client is not reading */
        } else if (now - up->progress >= p->upstream_timeout_ms) {
            upstream_timed_out(c);
            return;
        }
    }
    if ((c->state == C_REQ_BODY || c->state == C_WAIT_RESP) && !c->ex.resp_head_sent &&
        c->ex.resp_head_started && now - c->ex.resp_head_started >= p->head_timeout_ms) {
        reel__fail_exchange(c, 504, "response head not received in time (head_timeout)");
        return;
    }
    if (tunnel_setting_up(c) && now - c->up->progress >= p->upstream_timeout_ms) {
        /* a tunnel's origin that never finished its connect or TLS
         * handshake: it waited until the origin itself closed */
        char *why = setup_timed_out(c, c->up);
        reel__upstream_failed(c->up, why);
        free(why);
        return;
    }
    if (c->state == C_PROBE && c->up && now - c->up->progress >= p->upstream_timeout_ms) {
        /* the origin is silent: no h2 for this client, and its first
         * request is answered with this at once rather than waiting for
         * the same origin as long again (core/exchange.c) */
        reel__probe_failed(c, 504, setup_timed_out(c, c->up));
        reel__upstream_close(c);
        reel__probe_done(c, NULL);
        reel__conn_arm(c);
        return;
    }
    if (c->state == C_SNIFF && c->sniff_bytes_at && now - c->sniff_bytes_at >= p->head_timeout_ms) {
        if (reel__sniff_hello_started(c)) {
            /* never relayed raw: that would pass on TLS reel neither
             * intercepted nor verified, only because the client was slow */
            char *why = reel_asprintf("the client did not finish its TLS ClientHello within %us "
                                      "(head_timeout): %zu bytes of it came",
                                      (unsigned)(p->head_timeout_ms / 1000), c->client.in.len);
            reel__tunnel_abandoned(c, why);
            free(why);
            reel__conn_close(c);
            return;
        }
        /* bytes that are not TLS and that still say nothing after this
         * long: some other protocol, relayed raw */
        reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
        reel__conn_arm(c);
        return;
    }
    /* (a client that sent bytes is not silent: the clock above is its) */
    if (c->state == C_SNIFF && !c->sniff_bytes_at && now - c->sniff_started >= SNIFF_WAIT_MS &&
        c->sniff_grace < 200 && reel_stack_unread(&c->client.st) > 0) {
        /* Not silent: its bytes wait in the kernel, which a long turn of
         * the loop (a burst of new connections, each minting a leaf) has
         * not read yet. Deciding on the clock alone relayed such TLS raw,
         * not intercepted. Looked at again once the loop has read (for at
         * most 2 s more: bytes nobody reads would not wait forever). */
        c->sniff_grace++;
        c->sniff_started = now - SNIFF_WAIT_MS + 10;
        reel__conn_arm(c);
        return;
    }
    if (c->state == C_SNIFF && !c->sniff_bytes_at && now - c->sniff_started >= SNIFF_WAIT_MS &&
        !p->shutting_down && !reel__sniff_origin_silent(c) && !c->origin_closed_silent) {
        /* The client is silent: maybe a server-speaks-first protocol (not
         * relayed once the proxy shuts down: its grace is for flows under
         * way, and the tunnel's flow says the shutdown ended it). Not when
         * the origin, connected to early, is silent too: then the client
         * speaks first, whenever it does, and its bytes decide. */
        reel__begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
        reel__conn_arm(c);
        return;
    }
    if (reel__sniff_may_connect_early(c) && now - c->sniff_started >= EAGER_CONNECT_MS) {
        /* (bytes unread in the kernel: the client has spoken, they decide) */
        if (reel_stack_unread(&c->client.st) == 0)
            reel__sniff_connect_early(c);
        else
            c->eager_tried = true;
        reel__conn_arm(c);
        return;
    }
    if (reel__h2front_cut_due(c) <= now) {
        reel__h2front_cut_expire(c);
        if (c->client.closing)
            return;
    }
    if (!c->websocket && !reel__h2front_busy(c) && !waits_on_origin(c) &&
        now - c->last_activity >= p->idle_timeout_ms) {
        reel_stack_info_t info;
        reel_stack_info(&c->client.st, &info);
        if (info.tls && !info.tls_done && c->ex.flow == NULL) {
            /* a client that began its TLS handshake and never finished
             * it: recorded as any client handshake that failed */
            reel__client_tls_failed(c, "the client did not finish its TLS handshake within "
                                       "idle_timeout");
            return;
        }
        /* one that finished it and sent no request is a tls:// flow, as
         * when it closes (left no flow at all) */
        if (c->ex.flow == NULL &&
            !reel__tls_client_left(c, "the client sent no request within idle_timeout: reel "
                                      "closed the connection") &&
            c->state == C_SNIFF) {
            /* a tunnel still undecided: its client and origin (connected
             * to early) both silent, or the client's bytes saying nothing
             * yet (an idle_timeout below head_timeout): the tunnel's flow
             * says so, with those bytes (it left none) */
            unsigned long long secs = p->idle_timeout_ms / 1000;
            char *why = c->client.in.len
                            ? reel_asprintf("idle timeout: nothing came for %llu s (idle_timeout) "
                                            "after the client's first %zu bytes, which did not say "
                                            "what the tunnel carries (they were not passed on), "
                                            "and reel closed the tunnel",
                                            secs, c->client.in.len)
                            : reel_asprintf("idle timeout: neither the client nor the origin sent "
                                            "anything for %llu s (idle_timeout), and reel closed "
                                            "the tunnel",
                                            secs);
            reel__tunnel_abandoned(c, why);
            free(why);
        }
        if (c->state == C_RAW && c->tflow) {
            /* a relayed tunnel that went quiet: reel ended it, neither
             * side did, and its record says so (its end was "complete") */
            char *why = reel_asprintf("idle timeout: no byte came from either side for %llu s "
                                      "(idle_timeout), and reel closed the tunnel",
                                      (unsigned long long)(p->idle_timeout_ms / 1000));
            reel__finish_tflow(c, why);
            free(why);
        }
        reel__exchange_cut(c, "idle timeout");
        return;
    }
    reel__conn_arm_at(c, true);
}

/* ---- per-client connection counts ---- */

static struct client_count **client_slot(struct proxy_shared *sh, const char *ip) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *q = ip; *q; q++)
        h = (h ^ (unsigned char)*q) * 1099511628211ull;
    struct client_count **pp = &sh->clients[h % sh->nclient_buckets];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Counts a new connection from c's client address; false when that would
 * go over max_client_conns (then it is not counted). The table is the
 * workers' (a client's connections land on any of them), under its lock:
 * one uncontended lock per accepted connection. */
static bool client_admit(conn_t *c) {
    reel_proxy_t *p = c->p;
    struct proxy_shared *sh = p->shared;
    bool ok = false;
    pthread_mutex_lock(&sh->mu);
    if (sh->clients == NULL) {
        sh->nclient_buckets = 1024;
        sh->clients = reel_calloc(sh->nclient_buckets, sizeof *sh->clients);
    }
    struct client_count **pp = client_slot(sh, c->client_ip);
    if (!(*pp && p->max_client_conns && (*pp)->n >= p->max_client_conns)) {
        if (*pp == NULL) {
            *pp = reel_calloc(1, sizeof **pp);
            snprintf((*pp)->ip, sizeof(*pp)->ip, "%s", c->client_ip);
        }
        (*pp)->n++;
        c->counted = ok = true;
    }
    pthread_mutex_unlock(&sh->mu);
    return ok;
}

static void client_release(conn_t *c) {
    if (!c->counted)
        return;
    c->counted = false;
    struct proxy_shared *sh = c->p->shared;
    pthread_mutex_lock(&sh->mu);
    struct client_count **pp = client_slot(sh, c->client_ip);
    if (*pp && --(*pp)->n == 0) {
        struct client_count *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&sh->mu);
}

/* Over the per-client limit: answered 429 at once (the request is not
 * read: the point is to spend nothing on it), recorded, then lingering. */
static void refuse_over_limit(conn_t *c) {
    reel__record_refused(c, NULL, "http", NULL, 0, "");
    char *why = reel_asprintf("too many connections from %s (max_client_conns %u)", c->client_ip,
                              c->p->max_client_conns);
    reel__fail_exchange(c, 429, why);
    free(why);
}

/* A new client connection on `bottom` (owned from now; accepted by the
 * listener, or an in-memory pipe in tests). */
conn_t *reel__conn_open(reel_proxy_t *p, reel_filter_t *bottom, const char *client_ip) {
    char dst[48];
    int dst_port = 0;
    bool redirected = p->transparent && reel_tcp_original_dst(bottom, dst, sizeof dst, &dst_port);
    conn_t *c = reel__conn_new(p, bottom, client_ip, true);
    /* (not one refused over max_client_conns) */
    if (p->reverse_host && c->state == C_HEAD && !c->client.closing)
        reel__reverse_begin(c);
    else if (redirected && c->state == C_HEAD && !c->client.closing)
        reel__transparent_begin(c, dst, dst_port);
    return c;
}

conn_t *reel__conn_new(reel_proxy_t *p, reel_filter_t *bottom, const char *client_ip,
                       bool counted) {
    conn_t *c = reel_calloc(1, sizeof *c);
    c->p = p;
    if (counted)
        /* a lane takes its connection's (core/h2front.c) */
        c->id = __atomic_add_fetch(&p->shared->client_ids, 1, __ATOMIC_RELAXED);
    reel__peer_init(&c->client, c, P_CLIENT);
    reel_buf_init(&c->ex.retry_head, 0);
    reel_buf_init(&c->ex.head_raw, 0);
    reel_buf_init(&c->ex.rule_req, 0);
    for (int d = 0; d < 2; d++) {
        reel_buf_init(&c->ex.hold[d].head, 0);
        reel_buf_init(&c->ex.hold[d].body, 0);
    }
    reel_stack_push(&c->client.st, bottom, NULL, 0);
    c->client.open = c->client.connected = true;
    c->handles = 1;
    reel_stack_info_t info;
    reel_stack_info(&c->client.st, &info);
    reel_strcpy_to(c->client_addr, sizeof c->client_addr, info.remote);
    reel_strcpy_to(c->client_ip, sizeof c->client_ip, client_ip);
    reel_h1_limits_t lim = {.max_head_size = p->max_head_size};
    c->reqc = reel_h1_codec_new(REEL_H1_REQUEST, &lim);
    c->respc = reel_h1_codec_new(REEL_H1_RESPONSE, NULL);
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    STAT_ADD(p, connections, 1);
    STAT_ADD(p, active_connections, 1);
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->timer_open = true;
    c->handles++;
    reel__conn_touch(c);
    reel__conn_arm(c);
    reel__peer_read_start(&c->client);
    if (counted && !client_admit(c))
        refuse_over_limit(c);
    return c;
}

void reel__on_connection(uv_stream_t *server, int status) {
    reel_proxy_t *p = server->data;
    if (status < 0)
        return;
    char ip[48] = "";
    reel_filter_t *bottom = reel_tcp_accept(server, p->readbuf, READ_SIZE, ip, sizeof ip);
    if (bottom)
        reel__conn_open(p, bottom, ip);
}
