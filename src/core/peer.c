/* Peers: a stack of transport filters (core/filter.h: tcp, plus tls when
 * intercepted or toward an https origin; plain and intercepted traffic read
 * `in` and call reel__peer_write alike), the stack's events turned into
 * the connection's, back-pressure between the two peers of a connection,
 * and opening upstream connections. Part of the proxy; see core/conn.h. */

#include "core/conn.h"
#include "base/noproxy.h"
#include "core/connect_filter.h"
#include "core/hostport.h"
#include "core/tcp.h"
#include "core/tls_filter.h"

static void peer_maybe_resume_other(peer_t *pe);
static void peer_free_bufs(peer_t *pe);

/* ---- peers: a stack of transport filters ---- */

static void ev_data(void *ud, const uint8_t *d, size_t n) {
    peer_t *pe = ud;
    if (pe->c->state == C_LINGER && pe->c->h2 == NULL)
        return; /* dropped unread; the client's close ends the connection */
    reel_buf_append(&pe->in, d, n);
}

static void ev_eof(void *ud, const char *error) {
    peer_t *pe = ud;
    conn_t *c = pe->c;
    if (c->state == C_LINGER && c->ws_linger) {
        pe->eof = true;
        reel__ws_linger_step(c);
        return;
    }
    if (c->state == C_LINGER) {
        reel__conn_close(c);
        return;
    }
    pe->eof = true;
    if (error && pe->error == NULL)
        pe->error = reel_strdup(error); /* upstream: why a response is cut short */
    if (error && pe->role == P_CLIENT && (c->ex.flow || c->fins || c->tflow))
        reel__client_error_ends_flows(c, error);
}

static void ev_read_done(void *ud) {
    reel__peer_read_done(ud);
}

static void ev_connected(void *ud) {
    peer_t *up = ud;
    conn_t *c = up->c;
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    up->connected = true;
    reel_strcpy_to(up->addr, sizeof up->addr, info.remote);
    if (info.t_dns0)
        up->t_dns0 = info.t_dns0;
    up->t_dns1 = info.t_dns1;
    up->t_connected = info.t_connected;
    if (!up->https) /* a stream of an HTTP/2 session already up has no t_connected */
        up->t_ready = up->t_connected ? up->t_connected : reel__now_us();
    up->progress = uv_now(c->p->loop);
    reel__peer_read_start(up);
    reel__conn_arm(c);
}

static void ev_ready(void *ud) {
    peer_t *pe = ud;
    if (pe->role == P_UPSTREAM) {
        conn_t *c = pe->c; /* pe may be gone after: a probe became a session */
        reel_stack_info_t tinfo;
        reel_stack_info(&pe->st, &tinfo);
        if (pe->t_connected && tinfo.setup_tunnel_open > pe->t_connected) {
            /* through an upstream proxy, the origin is reached when its
             * tunnel opens: the flow's `connect` counts to then, its TLS
             * from then (the wait for the proxy's answer was in `ssl` for
             * HTTPS, and in no phase for HTTP) */
            pe->t_connected = tinfo.setup_tunnel_open;
            if (!pe->https)
                pe->t_ready = pe->t_connected;
        }
        if (pe->https) {
            /* the handshake's end as its filter stamped it, which
             * ServerConn's ssl_us counts to: a stamp of its own here, a
             * moment later, made the flow's ssl 1 us longer than its
             * connection's (a stream of a session already up, with no
             * t_connected, is ready now) */
            pe->t_ready = pe->t_connected && tinfo.setup_tls_done >= pe->t_connected
                              ? tinfo.setup_tls_done
                              : reel__now_us();
        }
        reel__upstream_ready(pe);
        reel__conn_arm(c);
    } else {
        reel__peer_flush_pend(pe);
    }
}

static void ev_error(void *ud, const char *why) {
    peer_t *pe = ud;
    if (pe->role == P_UPSTREAM) {
        reel_stack_info_t info;
        reel_stack_info(&pe->st, &info);
        if (info.t_dns1)
            pe->t_dns1 = info.t_dns1;
        /* its upstream proxy could not be reached: said so, not as
         * though the origin were at the proxy's address (but not of one
         * reached: a stream of an HTTP/2 session is never connected when
         * its session's CONNECT fails, and its reason names the proxy) */
        char *proxied = reel__via_failed(&info, pe->connected || info.setup_connected, why);
        reel__upstream_failed(pe, proxied ? proxied : why);
        free(proxied);
    } else {
        reel_stack_info_t info;
        reel_stack_info(&pe->st, &info);
        if (info.tls && !info.tls_done)
            reel__client_tls_failed(pe->c, why);
        else
            reel__client_lost(pe->c, why);
    }
}

/* A client whose queue is empty has taken every byte of the responses
 * waiting for it: their flows end (core/exchange.c). */
static void client_drained(peer_t *pe) {
    if (pe->role == P_CLIENT && pe->c->fins && reel__peer_queued(pe) == 0)
        reel__fins_delivered(pe->c);
}

/* A close that waited for the peer's bytes to leave (q: what is still
 * queued) happens now. */
bool reel__peer_notify_first(peer_t *pe) {
    if (pe->notified || !pe->open || pe->closing)
        return false;
    pe->notified = true;
    reel_stack_info_t info;
    reel_stack_info(&pe->st, &info);
    if (!info.tls_done)
        return false;
    reel_stack_end(&pe->st);
    if (reel_stack_queued(&pe->st) == 0)
        return false;
    pe->close_when_flushed = true; /* ev_written comes back here */
    return true;
}

static void close_if_flushed(peer_t *pe, size_t q) {
    if (q == 0)
        client_drained(pe);
    if (!pe->close_when_flushed || q != 0 || reel__peer_notify_first(pe))
        return;
    if (pe->c->ws_linger) {
        reel__ws_linger_step(pe->c);
        return;
    }
    if (pe->role == P_CLIENT)
        reel__conn_close_flushed(pe->c);
    else
        reel__peer_close(pe);
}

static void ev_written(void *ud) {
    peer_t *pe = ud;
    if (pe->closing)
        return;
    pe->progress = uv_now(pe->c->p->loop);
    size_t q = reel_stack_queued(&pe->st);
    if (q < LOW_WATER)
        peer_maybe_resume_other(pe);
    if (q < LOW_WATER && pe->role == P_CLIENT && pe->c->ex.local)
        reel__local_pump(pe->c); /* map_local's file, as an origin's body would come */
    if (pe->role == P_CLIENT && pe->c->h2 && q < HIGH_WATER)
        reel__h2front_written(pe->c);
    close_if_flushed(pe, q);
    /* A relay stops at HIGH_WATER with the rest of the other side's bytes
     * in its input, to go on at its next read; a side that had sent its
     * last ones gave none, and they stayed (a WebSocket burst's tail, its
     * client waiting for it, its server for the client's Close): they go
     * on now that there is room. */
    peer_t *o = reel__peer_other(pe);
    if (q < LOW_WATER && !pe->closing && o && o->in.len && pe->c->state == C_RAW)
        reel__tunnel_forward(pe->c);
}

static void ev_closed(void *ud) {
    peer_t *pe = ud;
    conn_t *c = pe->c;
    pe->open = false;
    if (pe->role == P_UPSTREAM) {
        if (c->up == pe)
            c->up = NULL;
        peer_free_bufs(pe);
        free(pe);
    } else {
        peer_free_bufs(pe);
    }
    reel__conn_unref(c);
}

static const reel_stack_events_t peer_events = {
    .data = ev_data,
    .eof = ev_eof,
    .read_done = ev_read_done,
    .connected = ev_connected,
    .ready = ev_ready,
    .error = ev_error,
    .written = ev_written,
    .closed = ev_closed,
};

/* A peer of c with an empty stack (the caller pushes its bottom filter and
 * counts it in c->handles until `closed`). */
void reel__peer_init(peer_t *pe, conn_t *c, peer_role role) {
    pe->c = c;
    pe->role = role;
    reel_stack_init(&pe->st, &peer_events, pe);
    reel_buf_init(&pe->in, 0);
    reel_buf_init(&pe->pend, 0);
    reel_buf_init(&pe->corked, 0);
}

static void send_corked(peer_t *pe) {
    if (pe->corked.len == 0)
        return;
    reel_buf_t b = pe->corked;
    reel_buf_init(&pe->corked, 0);
    int cork = pe->cork;
    pe->cork = 0;
    reel__peer_write(pe, b.data, b.len);
    pe->cork = cork;
    reel_buf_free(&b);
}

void reel__peer_cork(peer_t *pe) {
    pe->cork++;
}

void reel__peer_uncork(peer_t *pe) {
    if (--pe->cork > 0 || pe->corked.len == 0 || pe->closing)
        return;
    send_corked(pe);
    /* what a `written` event does when the socket took everything at once
     * (it then reports nothing): a close waiting for the flush */
    close_if_flushed(pe, reel__peer_queued(pe));
}

void reel__peer_close(peer_t *pe) {
    if (pe->closing)
        return;
    send_corked(pe); /* written before the close, as without the cork */
    pe->closing = true;
    reel_stack_close(&pe->st);
}

void reel__peer_reset(peer_t *pe) {
    if (pe->closing)
        return;
    send_corked(pe);
    pe->closing = true;
    reel_stack_abort(&pe->st);
}

bool reel__peer_ready(const peer_t *pe) {
    return pe->open && reel_stack_open(&pe->st);
}

/* Writes plaintext to a peer (queued until it is connected and its TLS
 * handshake is done). */
void reel__peer_write(peer_t *pe, const void *data, size_t len) {
    if (len == 0 || pe->closing)
        return;
    if (pe->cork) {
        if (pe->corked.len + len <= CORK_MAX) {
            reel_buf_append(&pe->corked, data, len);
            return;
        }
        send_corked(pe); /* then this one, without a copy */
    }
    if (!reel__peer_ready(pe) || pe->pend.len) {
        reel_buf_append(&pe->pend, data, len);
        if (reel__peer_ready(pe))
            reel__peer_flush_pend(pe);
        return;
    }
    bool idle = reel_stack_queued(&pe->st) == 0;
    reel_stack_send(&pe->st, data, len);
    if (idle)
        pe->progress = uv_now(pe->c->p->loop); /* the clock starts with the first byte queued */
    /* as `written` does: the other side may have been paused while this
     * one's bytes waited (e.g. for the connect) */
    if (reel_stack_queued(&pe->st) == 0) {
        peer_maybe_resume_other(pe);
        client_drained(pe);
    }
}

void reel__peer_flush_pend(peer_t *pe) {
    if (!reel__peer_ready(pe) || pe->pend.len == 0)
        return;
    reel_buf_t b = pe->pend;
    reel_buf_init(&pe->pend, 0);
    reel__peer_write(pe, b.data, b.len);
    reel_buf_free(&b);
}

size_t reel__peer_queued(const peer_t *pe) {
    return reel_stack_queued(&pe->st) + pe->pend.len + pe->corked.len;
}

void reel__peer_read_start(peer_t *pe) {
    if (pe->closing || !pe->open || pe->eof)
        return;
    reel_stack_set_reading(&pe->st, true);
}

void reel__peer_read_stop(peer_t *pe) {
    if (pe->open)
        reel_stack_set_reading(&pe->st, false);
}

peer_t *reel__peer_other(peer_t *pe) {
    return pe->role == P_CLIENT ? pe->c->up : &pe->c->client;
}

/* Reading from `pe` is paused while the other side is full, or while its
 * input buffer already holds too much unconsumed data. */
void reel__peer_update_reading(peer_t *pe) {
    if (pe == NULL || pe->closing)
        return;
    peer_t *o = reel__peer_other(pe);
    if (pe->c->ws_linger) { /* read to its end, what comes dropped */
        reel__peer_read_start(pe);
        return;
    }
    bool full = (o && reel__peer_queued(o) >= HIGH_WATER) || pe->in.len >= CLIENT_IN_MAX;
    if (full) {
        reel__peer_read_stop(pe);
        pe->paused = true;
    } else {
        pe->paused = false;
        reel__peer_read_start(pe);
    }
}

static void peer_maybe_resume_other(peer_t *pe) {
    peer_t *o = reel__peer_other(pe);
    if (o && o->paused)
        reel__peer_update_reading(o);
}

static void peer_free_bufs(peer_t *pe) {
    reel_buf_free(&pe->in);
    reel_buf_free(&pe->pend);
    reel_buf_free(&pe->corked);
    free(pe->host);
    free(pe->sni);
    free(pe->error);
    free(pe->via);
    free(pe->dns_entry);
    pe->host = pe->sni = pe->error = pe->via = pe->dns_entry = NULL;
}

/* An upstream peer whose stack went elsewhere (reel__h2up_adopt): freed
 * without closing anything. */
void reel__peer_forget(peer_t *pe) {
    conn_t *c = pe->c;
    memset(&pe->st, 0, sizeof pe->st);
    pe->open = false;
    peer_free_bufs(pe);
    free(pe);
    reel__conn_unref(c); /* the stack's `closed` will not come here */
}

void reel__upstream_close(conn_t *c) {
    peer_t *up = c->up;
    if (up == NULL)
        return;
    c->up = NULL;
    reel__peer_close(up);
}

/* ---- upstream connections ---- */

int64_t reel__span_us(int64_t from, int64_t to) {
    return from && to ? (to >= from ? to - from : 0) : -1;
}

reel_capture_conn_t reel__conn_facts(const peer_t *up, const reel_stack_info_t *info) {
    /* the set-up as the stack stamped it, the same for every flow on the
     * connection: also for a reused one, one set up before its request
     * (the ALPN probe, core/tunnel.c) and a stream of a shared HTTP/2
     * session, whose flows' timings have none of it */
    int64_t dns0 = info->setup_dns0, dns1 = info->setup_dns1, conn = info->setup_connected;
    if (conn && info->setup_tunnel_open > conn)
        conn = info->setup_tunnel_open; /* the origin reached: the proxy's tunnel open */
    /* TLS begun by STARTTLS: its handshake from then, not from the connect */
    int64_t tls0 = up->t_starttls > conn ? up->t_starttls : conn;
    /* the check refused the certificate, or (unverified) would have */
    const char *bad = info->verify_error ? info->verify_error : info->unchecked_error;
    const char *cert = info->verify_error ? info->peer_cert : info->unchecked_cert;
    return (reel_capture_conn_t){.conn_id = up->id,
                                 .address = up->addr,
                                 .sni = info->sni, /* as sent: none to an IP address */
                                 .alpn = info->alpn,
                                 .tls_version = info->tls_version,
                                 .cipher = info->cipher,
                                 .verify_error = bad,
                                 .peer_cert = cert,
                                 .via = info->via,
                                 .via_forward = info->via_forward,
                                 .client_cert_asked = info->client_cert_asked,
                                 .client_cert = info->client_cert,
                                 .resumed = info->tls && info->tls_resumed,
                                 .dns_override = info->dns_override,
                                 .opened_us = dns0,
                                 .dns_us = reel__span_us(dns0, dns1),
                                 .connect_us = reel__span_us(dns1, conn),
                                 .ssl_us =
                                     info->tls ? reel__span_us(tls0, info->setup_tls_done) : -1};
}

/* A connection that failed the check of the origin's certificate is
 * recorded as the flow's ServerConn all the same: the address reel
 * reached, the TLS the server had chosen, its certificate and why the
 * check refused it, beside the error that ends the flow. So is one whose
 * TLS handshake failed after the connect: the address, the SNI sent, no
 * TLS (ssl_us -1). Other failures leave none (the connection never was),
 * but for a retry's (record_unmade_retry). A stream of an HTTP/2 session
 * (core/h2up.c) is never connected when the session's TLS fails: its
 * up-lane says what the session reached, address included. */
static void record_refused_conn(peer_t *up) {
    conn_t *c = up->c;
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    bool refused = info.verify_error != NULL && (up->connected || up->h2);
    bool no_tls = info.verify_error == NULL && up->connected && info.tls && !info.tls_done;
    if (!refused && !no_tls)
        return;
    reel_capture_flow_t *f = NULL;
    if (c->state == C_RAW && c->tflow && !c->tls_conn_recorded) {
        f = c->tflow;
        c->tls_conn_recorded = true;
    } else if (c->state != C_RAW && c->ex.flow && c->ex.flow_upstream && !c->ex.conn_recorded) {
        f = c->ex.flow;
        c->ex.conn_recorded = true;
    }
    if (f == NULL)
        return;
    reel_capture_conn_t sc = reel__conn_facts(up, &info);
    if (!up->connected && info.remote[0])
        sc.address = info.remote;
    sc.retried = c->state != C_RAW && reel__ex_sent_again(c);
    reel_capture_server_conn(f, &sc);
}

/* The new connection of a keep-alive retry that failed before it could
 * send (its DNS lookup or TCP connect failed: no address, connect_us -1;
 * or its TLS handshake did: the address it reached, ssl_us -1) is the
 * flow's last ServerConn all the same, retried: without it the flow's
 * last word on its connection would be the reused one, as if the request
 * had not been retried. One whose handshake failed the certificate check
 * has its record already (record_refused_conn). */
static void record_unmade_retry(peer_t *up) {
    conn_t *c = up->c;
    if (c->ex.conn_recorded || !c->ex.flow_upstream)
        return;
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    reel_capture_conn_t sc = reel__conn_facts(up, &info);
    if (!up->connected) {
        sc.address = sc.sni = sc.alpn = sc.tls_version = sc.cipher = ""; /* none was reached */
        sc.connect_us = -1;
    }
    sc.ssl_us = -1;
    sc.retried = reel__ex_sent_again(c);
    c->ex.conn_recorded = true;
    reel_capture_server_conn(c->ex.flow, &sc);
}

void reel__probe_failed(conn_t *c, int status, char *why) {
    free(c->probe_error);
    c->probe_error = why;
    c->probe_status = status;
    free(c->probe_sni);
    free(c->probe_via);
    free(c->probe_dns);
    c->probe_sni = c->probe_via = c->probe_dns = NULL;
    memset(&c->probe_upf, 0, sizeof c->probe_upf);
    peer_t *up = c->up;
    if (up == NULL || !up->connected)
        return;
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    c->probe_upf = (upstream_facts_t){.known = true,
                                      .id = up->id,
                                      .https = up->https,
                                      .dns0 = up->t_dns0,
                                      .dns1 = up->t_dns1,
                                      .connected = up->t_connected};
    reel_strcpy_to(c->probe_upf.addr, sizeof c->probe_upf.addr, up->addr);
    c->probe_sni = reel_strdup(info.sni ? info.sni : "");
    /* (its address is then the proxy's: said so, as for any other) */
    c->probe_via = info.via ? reel_strdup(info.via) : NULL;
    c->probe_dns = info.dns_override ? reel_strdup(info.dns_override) : NULL;
}

void reel__probe_conn(conn_t *c) {
    const upstream_facts_t *u = &c->probe_upf;
    if (!u->known || c->ex.flow == NULL)
        return;
    /* the address it reached and how long that took; no TLS was made */
    reel_capture_conn_t sc = {.conn_id = u->id,
                              .address = u->addr,
                              .sni = c->probe_sni,
                              .via = c->probe_via,
                              .dns_override = c->probe_dns,
                              .opened_us = u->dns0,
                              .dns_us = reel__span_us(u->dns0, u->dns1),
                              .connect_us = reel__span_us(u->dns1, u->connected),
                              .ssl_us = -1};
    reel_capture_server_conn(c->ex.flow, &sc);
    c->ex.conn_recorded = true;
    c->ex.upf = *u; /* its end's server address */
    c->ex.flow_upstream = true;
    memset(&c->probe_upf, 0, sizeof c->probe_upf);
}

void reel__upstream_record_failed(peer_t *up) {
    record_refused_conn(up);
}

void reel__upstream_failed(peer_t *up, const char *why) {
    conn_t *c = up->c;
    if (c->up != up)
        return;
    if (up->held || (c->state == C_SNIFF && up->eager)) {
        /* The early connect failed (core/tunnel.c; held: still under way
         * when the client spoke TLS): as though it had not been tried.
         * The client's bytes decide, however late: a slow TLS client gets
         * its 502 with the reason inside its TLS when its request's own
         * connect fails (before, it was cut at once); its silence for
         * SNIFF_WAIT_MS makes a raw (TLS) tunnel, whose own connect fails
         * again, the flow saying why. */
        reel__upstream_close(c);
        reel__conn_arm(c);
        return;
    }
    record_refused_conn(up);
    if (c->state == C_PROBE) {
        /* the origin cannot say: the client is offered HTTP/1.1 only, and
         * its first request gets the 502 with the reason at once
         * (core/exchange.c). Not for a certificate refused: that request's
         * own connection then records what the origin showed. */
        reel_stack_info_t info;
        reel_stack_info(&up->st, &info);
        if (info.verify_error == NULL)
            reel__probe_failed(c, 502, reel_strdup(why));
        reel__upstream_close(c);
        reel__probe_done(c, NULL);
        return;
    }
    if (c->state == C_RAW) {
        /* A tunnel: a 502 if the CONNECT is still unanswered (an reel__host_ignored
         * host is connected before the 200), else the client is cut. */
        /* once it carries bytes, the origin's side named (a write that
         * met its reset after its FIN said only "broken pipe") */
        char *said = c->ex.resp_head_sent && reel__peer_ready(up)
                         ? reel__tunnel_origin_failed(c, why)
                         : NULL; /* (a set-up that failed says so itself) */
        reel__finish_tflow(c, said ? said : why);
        free(said);
        if (!c->ex.resp_head_sent) {
            reel__tunnel_refuse(c, why);
        } else {
            c->tunnel_failed = true;
            reel__conn_close(c);
        }
        return;
    }
    if (c->ex.retried && c->ex.flow && c->ex.upf.known) {
        /* the request went out on the reused connection before this one
         * was made to send it again: the flow says both */
        record_unmade_retry(up);
        char *both = reel_asprintf(c->ex.retry_held
                                       ? "the kept-alive connection #%llu closed while reel held "
                                         "the request for modify_body, before any of it went, "
                                         "and a new connection failed: %s"
                                       : "the kept-alive connection #%llu closed without "
                                         "answering, and retrying on a new connection failed: %s",
                                   (unsigned long long)c->ex.upf.id, why);
        reel__fail_exchange(c, 502, both);
        free(both);
        return;
    }
    reel__fail_exchange(c, 502, why);
}

/* Whether host:port is in the h2c_upstreams list. */
static bool h2c_listed(const reel_proxy_t *p, const char *host, int port) {
    if (p->h2c_upstreams == NULL)
        return false;
    /* an item is "host:port": compared without printing host:port for
     * every request */
    char digits[12];
    size_t dl = 0;
    for (unsigned v = port > 0 ? (unsigned)port : 0;; v /= 10) {
        digits[sizeof digits - 1 - dl++] = (char)('0' + v % 10);
        if (v < 10)
            break;
    }
    size_t hl = strlen(host);
    for (const char *at = p->h2c_upstreams; *at;) {
        while (*at == ',' || *at == ' ')
            at++;
        size_t n = strcspn(at, ", ");
        if (n && n == hl + 1 + dl && strncasecmp(at, host, hl) == 0 && at[hl] == ':' &&
            memcmp(at + hl + 1, digits + sizeof digits - dl, dl) == 0)
            return true;
        at += n;
    }
    return false;
}

/* Whether a request to host:port (https, sni) goes to the origin over
 * HTTP/2: for the streams of an HTTP/2 client (ALPN mirrored: an HTTP/1.1
 * client gets HTTP/1.1) when the origin chose h2 when last offered it, and
 * h2c to a plain origin configured so for every client; an Upgrade stays
 * HTTP/1.1 but for a WebSocket to an origin whose session allows it as a
 * stream (RFC 8441), which to an h2c origin it always goes as: that origin
 * speaks nothing else, and its up-lane waits for the SETTINGS that say
 * whether it may (core/h2up.c: if not, a 502 saying so; before, a session
 * not up yet sent it an HTTP/1.1 Upgrade, which it could only refuse); a
 * TLS tunnel or a raw one (not HTTP: core/tunnel.c) never */
static bool upstream_h2(conn_t *c, bool https, const char *host, int port, const char *sni) {
    reel_proxy_t *p = c->p;
    return p->http2 &&
           (!c->ex.upgrade ||
            (c->ex.ws_requested && (!https || reel__h2up_ws_ok(p, https, host, port, sni)))) &&
           c->state != C_PROBE && c->state != C_RAW && c->state != C_SNIFF && !c->tls_tunnel &&
           (https ? c->lane && reel__alpn_seen(p, host, port, sni) == 1
                  : h2c_listed(p, host, port));
}

/* Whether a request to a plain-HTTP origin goes to upstream_proxy as it
 * came, in absolute form (RFC 9112 3.2.2), as a client set for that proxy
 * would send it, rather than through a CONNECT tunnel: squid and
 * tinyproxy allow CONNECT only to port 443 as installed. So the requests
 * a client sent reel in absolute form; not those inside a CONNECT or
 * SOCKS5 tunnel (the client asked for a tunnel), nor an Upgrade (a
 * WebSocket's bytes after the switch: browsers ask their proxy for a
 * tunnel for it too), nor HTTP/2 (h2c_upstreams: prior knowledge needs a
 * tunnel); and never through a SOCKS5 proxy, which knows only tunnels */
static bool upstream_forward(const conn_t *c, bool https, bool h2, const char *host) {
    const reel_proxy_t *p = c->p;
    return reel__proxy_for(p, host) != NULL && !p->upstream_proxy_socks && !https && !h2 &&
           !c->in_tunnel && c->lane == NULL && !c->ex.upgrade && c->state != C_PROBE &&
           c->state != C_RAW && c->state != C_SNIFF;
}

/* sni as up->sni keeps it: only when it differs from the host */
static const char *other_sni(const char *sni, const char *host) {
    return sni && strcasecmp(sni, host) != 0 ? sni : NULL;
}

static bool upstream_fits(conn_t *c, bool h2, bool https, const char *host, int port,
                          const char *other) {
    peer_t *up = c->up;
    /* up->sni compared as it is kept, or a tunnel's SNI naming its own
     * host (every HTTPS request through a CONNECT to a name) never matched,
     * and each request of a kept-alive client connection paid a new TCP
     * and TLS handshake */
    /* (nor one made through another upstream proxy, or none, than
     * upstream_proxy names now) */
    const char *now = reel__proxy_for(c->p, host);
    bool same_via = up && (up->h2 || (up->via == NULL && now == NULL) ||
                           (up->via && now && strcmp(up->via, now) == 0));
    /* (nor one whose address another dns_overrides entry, or DNS, gave
     * than would now: requests go where the entries say from the moment
     * they change) */
    const char *dns = up && !up->h2 ? reel__dns_entry(c->p, host, port, NULL, NULL) : NULL;
    same_via = same_via && (up->h2 || (dns == NULL && up->dns_entry == NULL) ||
                            (dns && up->dns_entry && strcmp(dns, up->dns_entry) == 0));
    return up && !up->closing && !up->eof && up->h2 == h2 && up->https == https &&
           up->port == port && (!up->insecure || !reel__verify_host(c->p, host)) && same_via &&
           up->forward == upstream_forward(c, https, h2, host) && strcasecmp(up->host, host) == 0 &&
           ((other == NULL && up->sni == NULL) ||
            (other && up->sni && strcasecmp(other, up->sni) == 0));
}

bool reel__upstream_would_reuse(conn_t *c, bool https, const char *host, int port,
                                const char *sni) {
    return upstream_fits(c, upstream_h2(c, https, host, port, sni), https, host, port,
                         other_sni(sni, host));
}

static bool upstream_open(conn_t *c, bool h2, bool https, const char *host, int port,
                          const char *sni, const char *other);

char *reel__upstream_name(const peer_t *up) {
    if (up->forward)
        return reel_asprintf("the upstream proxy %s (forwarding to " REEL_HOSTPORT_FMT ")", up->via,
                             REEL_HOSTPORT(up->host, up->port));
    return reel_asprintf(REEL_HOSTPORT_FMT, REEL_HOSTPORT(up->host, up->port));
}

char *reel__via_unreachable(const char *via, const char *why) {
    return reel_asprintf("the upstream proxy (upstream_proxy %s) could not be reached: %s", via,
                         why);
}

char *reel__via_failed(const reel_stack_info_t *info, bool connected, const char *why) {
    if (info->via == NULL)
        return NULL;
    if (info->via_tls && !info->via_tls_done) /* (its certificate refused, say) */
        return reel_asprintf("the upstream proxy (upstream_proxy %s) could not be reached: the TLS "
                             "with it failed: %s",
                             info->via, why);
    return connected ? NULL : reel__via_unreachable(info->via, why);
}

bool reel__verify_host(const reel_proxy_t *p, const char *host) {
    return p->verify_upstream && !reel_host_list_match(p->insecure_hosts, host);
}

const char *reel__proxy_for(const reel_proxy_t *p, const char *host) {
    if (p->upstream_proxy_host == NULL || p->connect != NULL ||
        reel_host_list_match(p->upstream_no_proxy, host))
        return NULL;
    return p->upstream_proxy;
}

const char *reel__dns_entry(const reel_proxy_t *p, const char *host, int port, const char **addr,
                            int *to_port) {
    const char *entry = NULL;
    int tp = port;
    const char *a = p->dns_overrides && reel__proxy_for(p, host) == NULL
                        ? reel_dns_map_find(p->dns_overrides, host, port, &entry, &tp)
                        : NULL;
    if (addr)
        *addr = a;
    if (to_port)
        *to_port = tp;
    return a ? entry : NULL;
}

bool reel__upstream_transport(reel_proxy_t *p, reel_stack_t *st, const char *host, int port,
                              bool forward, char **error, const char **dns_entry) {
    *error = NULL;
    bool via = reel__proxy_for(p, host) != NULL;
    const char *to = via ? p->upstream_proxy_host : host;
    int to_port = via ? p->upstream_proxy_port : port;
    /* dns_overrides: the address the user gave the name, the name kept
     * for the request, SNI and the certificate check */
    const char *addr = NULL;
    int addr_port = port;
    const char *entry = p->connect ? NULL : reel__dns_entry(p, host, port, &addr, &addr_port);
    reel_filter_t *bottom =
        p->connect ? p->connect(p->connect_ctx, p, host, port)
                   : reel_tcp_connect(p->loop, addr ? addr : to, addr ? addr_port : to_port,
                                      p->readbuf, READ_SIZE);
    if (addr)
        reel_tcp_set_dns_override(bottom, entry, host, port);
    if (dns_entry)
        *dns_entry = addr ? entry : NULL;
    reel_stack_push(st, bottom, NULL, 0);
    if (via && p->upstream_proxy_tls) {
        /* https:// : TLS to the proxy itself, verified as an origin's
         * (upstream_trusted_ca, upstream_insecure_hosts), below the
         * CONNECT or the forwarded requests, and the origin's TLS above */
        reel_err_t err;
        reel_err_clear(&err);
        char *key = reel_asprintf("proxy %s:%d", to, to_port);
        reel_tls_client_opts_t o = {.host = to,
                                    .insecure = !reel__verify_host(p, to),
                                    .session_key = key,
                                    .alpn = "http/1.1"};
        reel_tls_t *tls = NULL;
        if (reel_tls_new_client(p->client_ctx, &o, &tls, &err) == REEL_OK)
            reel_stack_push(st, reel_tls_filter_new_proxy(tls), NULL, 0);
        else
            *error = reel_asprintf("no TLS to the upstream proxy %s: %s", p->upstream_proxy,
                                   reel_err_str(&err));
        free(key);
    }
    if (via && p->upstream_proxy_socks)
        reel_stack_push(
            st, reel_socks_filter_new(p->upstream_proxy, host, port, p->upstream_proxy_userpass),
            NULL, 0);
    else if (via)
        reel_stack_push(
            st,
            reel_connect_filter_new(p->upstream_proxy, host, port, p->upstream_proxy_b64, forward),
            NULL, 0);
    return via;
}

/* Makes sure c->up goes to (https, host, port), reusing it when it does.
 * Returns true when it reused the connection. */
bool reel__upstream_for(conn_t *c, bool https, const char *host, int port, const char *sni) {
    bool h2 = upstream_h2(c, https, host, port, sni);
    const char *other = other_sni(sni, host);
    if (upstream_fits(c, h2, https, host, port, other))
        return true;
    return upstream_open(c, h2, https, host, port, sni, other);
}

bool reel__upstream_open(conn_t *c, bool https, const char *host, int port, const char *sni) {
    return upstream_open(c, upstream_h2(c, https, host, port, sni), https, host, port, sni,
                         other_sni(sni, host));
}

reel_rc reel__origin_tls(reel_proxy_t *p, const char *host, int port, const char *sni,
                         const char *alpn, reel_tls_t **out, reel_err_t *err) {
    /* sessions are resumed per origin and name: later connections to it
     * skip most of the handshake */
    const char *name = sni ? sni : host;
    char *origin = reel_asprintf("%s:%d %s", host, port, name);
    reel_tls_client_opts_t o = {.host = name,
                                .insecure = !reel__verify_host(p, host),
                                .session_key = origin,
                                .alpn = alpn,
                                .identity = reel_tls_identities_find(p->client_certs, name)};
    reel_rc rc = reel_tls_new_client(p->client_ctx, &o, out, err);
    free(origin);
    return rc;
}

/* Puts reel's TLS to up's origin on up (its TCP connected or under way).
 * Returns false, up failed with the reason, when it cannot be made. */
static bool push_client_tls(conn_t *c, peer_t *up) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_tls_t *tls = NULL;
    /* ALPN mirroring the client's offer (core/tunnel.c) */
    if (reel__origin_tls(c->p, up->host, up->port, up->sni,
                         c->state == C_PROBE ? "h2,http/1.1" : c->upstream_alpn, &tls,
                         &err) != REEL_OK) {
        reel__upstream_failed(up, reel_err_str(&err));
        return false;
    }
    reel_stack_push(&up->st, reel_tls_filter_new(tls), NULL, 0);
    return true;
}

/* The plain connection made early to a tunnel's origin and held when its
 * client spoke TLS (core/tunnel.c): reel's TLS to that origin goes on it,
 * so that the origin sees one connection, as with mitmproxy's eager
 * strategy, not the early one and then another. Only to that host and
 * port, while the origin has said nothing on it (conn.c drops it if it
 * speaks or closes). Returns whether it did: c->up is then that
 * connection, its TLS handshake begun (or to begin once connected). */
static bool upstream_take_held(conn_t *c, const char *host, int port, const char *other) {
    peer_t *up = c->up;
    if (up == NULL || !up->held)
        return false;
    up->held = false;
    if (up->closing || up->eof || up->in.len || up->port != port || strcasecmp(up->host, host) != 0)
        return false;
    up->https = true;
    free(up->sni);
    up->sni = other ? reel_strdup(other) : NULL;
    up->insecure = !reel__verify_host(c->p, host);
    up->eager = c->state == C_SNIFF;   /* (as a new one: reel__sniff_connect_early in its TLS) */
    up->progress = uv_now(c->p->loop); /* (upstream_timeout: its set-up goes on from here) */
    reel_codec_free(c->respc);
    c->respc = reel_h1_codec_new(REEL_H1_RESPONSE, NULL);
    push_client_tls(c, up);
    return true;
}

bool reel__upstream_starttls(conn_t *c) {
    peer_t *up = c->up;
    if (up == NULL || up->closing || up->eof || !up->connected)
        return false;
    up->https = true;
    free(up->sni);
    const char *other = other_sni(c->tunnel_sni, up->host);
    up->sni = other ? reel_strdup(other) : NULL;
    up->insecure = !reel__verify_host(c->p, up->host);
    up->progress = uv_now(c->p->loop); /* (upstream_timeout: its handshake from now) */
    up->t_starttls = reel__now_us();
    return push_client_tls(c, up);
}

/* c->up closed, and a new one to (https, host, port) opened, over HTTP/2
 * when h2 (a stream of a session to it if there is one). Returns true when
 * that session was in use already (the request may be sent again). */
static bool upstream_open(conn_t *c, bool h2, bool https, const char *host, int port,
                          const char *sni, const char *other) {
    reel_proxy_t *p = c->p;
    if (https && !h2 && upstream_take_held(c, host, port, other))
        return false;
    reel__upstream_close(c);
    peer_t *up = reel_calloc(1, sizeof *up);
    reel__peer_init(up, c, P_UPSTREAM);
    up->host = reel_strdup(host);
    up->sni = other ? reel_strdup(other) : NULL;
    up->port = port;
    up->https = https;
    up->insecure = https && !reel__verify_host(p, host);
    up->progress = uv_now(p->loop);
    up->t_dns0 = reel__now_us();
    c->up = up;
    reel_codec_free(c->respc);
    c->respc = reel_h1_codec_new(REEL_H1_RESPONSE, NULL);
    if (h2) {
        up->h2 = true;
        int before = 0; /* up->id: the session's number */
        reel_filter_t *bottom = reel__h2up_filter(p, https, host, port, sni, &up->id, &before);
        up->flows = before;
        up->timings_used = before > 0; /* no dns, connect or TLS of its own */
        reel_stack_push(&up->st, bottom, NULL, 0);
        up->open = true;
        c->handles++;
        reel_stack_connect(&up->st);
        return before > 0; /* a connection in use: its request may be sent again */
    }
    up->id = __atomic_add_fetch(&p->shared->upstream_ids, 1, __ATOMIC_RELAXED);
    up->eager = c->state == C_SNIFF; /* (reel__sniff_connect_early) */
    up->forward = upstream_forward(c, https, false, host);
    char *terr = NULL;
    const char *dns = NULL;
    if (reel__upstream_transport(p, &up->st, host, port, up->forward, &terr, &dns))
        up->via = reel_strdup(p->upstream_proxy);
    up->dns_entry = dns ? reel_strdup(dns) : NULL;
    up->open = true;
    c->handles++; /* until the stack reports `closed` */
    if (terr) {
        reel__upstream_failed(up, terr);
        free(terr);
        return false;
    }
    if (https && !push_client_tls(c, up))
        return false;
    reel_stack_connect(&up->st);
    return false;
}
