/* Peers: a TCP socket with an optional TLS layer (plain and intercepted
 * traffic read `in` and call reel__peer_write alike), back-pressure between
 * the two peers of a connection, and upstream connections (resolve, connect
 * address by address, TLS toward the origin). Part of the proxy; see
 * core/conn.h. */

#include "core/conn.h"

static void on_written(uv_write_t *req, int status);
static void raw_write(peer_t *pe, const void *data, size_t len);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void peer_maybe_resume_other(peer_t *pe);
static void peer_free_bufs(peer_t *pe);
static void upstream_try_next(peer_t *up);
static void on_connect(uv_connect_t *req, int status);
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* ---- peers: sockets with an optional TLS layer ---- */

typedef struct {
    uv_write_t req;
    peer_t *pe;
    size_t len;
    char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status) {
    wreq_t *w = (wreq_t *)req;
    peer_t *pe = w->pe;
    pe->wpending -= w->len;
    free(w);
    if (status < 0 || pe->closing)
        return;
    pe->progress = uv_now(pe->c->p->loop);
    if (pe->wpending < LOW_WATER)
        peer_maybe_resume_other(pe);
    if (pe->close_when_flushed && pe->wpending == 0) {
        if (pe->role == P_CLIENT)
            reel__conn_close_flushed(pe->c);
        else if (!pe->closing && pe->tcp_open) {
            pe->closing = true;
            uv_close((uv_handle_t *)&pe->tcp, reel__on_close_peer);
        }
    }
}

static void raw_write(peer_t *pe, const void *data, size_t len) {
    if (len == 0 || pe->closing || !pe->tcp_open)
        return;
    if (pe->wpending == 0) {
        /* Nothing queued: try the socket first. Usually it takes it all,
         * and the bytes need no copy and no allocation (a 64 KiB copy and
         * malloc per read were most of the cost of relaying a body). */
        uv_buf_t b0 = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&pe->tcp, &b0, 1);
        if (n > 0) {
            pe->progress = uv_now(pe->c->p->loop);
            data = (const char *)data + n;
            len -= (size_t)n;
            if (len == 0) {
                /* as on_written does: the other side may have been paused
                 * while this one's bytes waited (e.g. for the connect) */
                if (reel__peer_queued(pe) < LOW_WATER)
                    peer_maybe_resume_other(pe);
                return;
            }
        }
        /* UV_EAGAIN, a partial write or an error: uv_write queues the rest
         * and reports an error through on_written */
    }
    wreq_t *w = reel_malloc(sizeof *w + len);
    w->pe = pe;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (pe->wpending == 0)
        pe->progress = uv_now(pe->c->p->loop); /* the clock starts with the first byte queued */
    pe->wpending += len;
    if (uv_write(&w->req, (uv_stream_t *)&pe->tcp, &b, 1, on_written) != 0) {
        pe->wpending -= len;
        free(w);
    }
}

void reel__tls_flush(peer_t *pe) {
    if (pe->tls == NULL || reel_tls_cipher_pending(pe->tls) == 0)
        return;
    reel_buf_reset(&pe->cipher);
    reel_tls_take_cipher(pe->tls, &pe->cipher);
    raw_write(pe, pe->cipher.data, pe->cipher.len);
}

bool reel__peer_ready(const peer_t *pe) {
    if (!pe->connected)
        return false;
    return pe->tls == NULL || reel_tls_handshake_done(pe->tls);
}

/* Writes plaintext to a peer (queued until it is connected and its TLS
 * handshake is done). */
void reel__peer_write(peer_t *pe, const void *data, size_t len) {
    if (len == 0 || pe->closing)
        return;
    if (!reel__peer_ready(pe) || pe->pend.len) {
        reel_buf_append(&pe->pend, data, len);
        if (reel__peer_ready(pe))
            reel__peer_flush_pend(pe);
        return;
    }
    if (pe->tls == NULL) {
        raw_write(pe, data, len);
        return;
    }
    const uint8_t *p = data;
    while (len) {
        size_t n = 0;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_tls_write_plain(pe->tls, p, len, &n, &err) != REEL_OK)
            break;
        reel__tls_flush(pe);
        p += n;
        len -= n;
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
    return pe->wpending + pe->pend.len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    peer_t *pe = h->data;
    (void)suggested;
    buf->base = (char *)pe->c->p->readbuf;
    buf->len = READ_SIZE;
}

void reel__peer_read_start(peer_t *pe) {
    if (pe->reading || pe->closing || !pe->tcp_open || pe->eof)
        return;
    if (uv_read_start((uv_stream_t *)&pe->tcp, on_alloc, reel__on_read) == 0)
        pe->reading = true;
}

void reel__peer_read_stop(peer_t *pe) {
    if (!pe->reading)
        return;
    uv_read_stop((uv_stream_t *)&pe->tcp);
    pe->reading = false;
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
    reel_buf_free(&pe->cipher);
    reel_tls_free(pe->tls);
    pe->tls = NULL;
    if (pe->ai)
        uv_freeaddrinfo(pe->ai);
    pe->ai = NULL;
    free(pe->host);
    free(pe->sni);
    free(pe->error);
    pe->host = pe->sni = pe->error = NULL;
}

void reel__on_close_peer(uv_handle_t *h) {
    peer_t *pe = h->data;
    conn_t *c = pe->c;
    pe->tcp_open = false;
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

void reel__upstream_close(conn_t *c) {
    peer_t *up = c->up;
    if (up == NULL)
        return;
    c->up = NULL;
    if (up->closing)
        return;
    up->closing = true;
    if (up->tcp_open) {
        uv_close((uv_handle_t *)&up->tcp, reel__on_close_peer);
    } else {
        /* still resolving: the getaddrinfo callback frees it */
    }
}

/* ---- upstream connections ---- */

static void upstream_try_next(peer_t *up) {
    conn_t *c = up->c;
    while (up->ai_next) {
        struct addrinfo *ai = up->ai_next;
        up->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        uv_tcp_init(c->p->loop, &up->tcp);
        up->tcp.data = up;
        up->tcp_open = true;
        c->handles++;
        reel__addr_string(ai->ai_addr, up->addr, sizeof up->addr);
        if (uv_tcp_connect(&up->connect_req, &up->tcp, ai->ai_addr, on_connect) == 0)
            return;
        up->closing = true;
        uv_close((uv_handle_t *)&up->tcp, reel__on_close_peer);
        return;
    }
}

void reel__upstream_failed(peer_t *up, const char *why) {
    conn_t *c = up->c;
    if (c->up != up)
        return;
    if (c->state == C_RAW) {
        /* A tunnel: a 502 if the CONNECT is still unanswered (an reel__host_ignored
         * host is connected before the 200), else the client is cut. */
        reel__finish_tflow(c, why);
        if (!c->resp_head_sent)
            reel__fail_exchange(c, 502, why);
        else
            reel__conn_close(c);
        return;
    }
    reel__fail_exchange(c, 502, why);
}

static void on_connect(uv_connect_t *req, int status) {
    peer_t *up = req->handle->data;
    conn_t *c = up->c;
    if (up->closing)
        return;
    if (status < 0) {
        if (up->ai_next) {
            /* Try the next address with a new handle once this one closed. */
            char *why = reel_asprintf("cannot connect to %s:%d (%s): %s", up->host, up->port,
                                      up->addr, uv_strerror(status));
            free(up->error);
            up->error = why;
            peer_t *next = reel_calloc(1, sizeof *next);
            *next = *up;
            /* The old handle keeps `up`; the new peer takes over the rest. */
            reel_buf_init(&up->in, 0);
            reel_buf_init(&up->pend, 0);
            reel_buf_init(&up->cipher, 0);
            up->host = up->sni = up->error = NULL;
            up->ai = NULL;
            up->tls = NULL;
            next->tcp_open = false;
            next->closing = false;
            c->up = next;
            up->closing = true;
            uv_close((uv_handle_t *)&up->tcp, reel__on_close_peer);
            upstream_try_next(next);
            return;
        }
        char *why = reel_asprintf("cannot connect to %s:%d (%s): %s", up->host, up->port, up->addr,
                                  uv_strerror(status));
        reel__upstream_failed(up, why);
        free(why);
        return;
    }
    up->connected = true;
    up->t_connected = reel__now_us();
    if (!up->https)
        up->t_ready = up->t_connected;
    up->progress = uv_now(c->p->loop);
    uv_tcp_nodelay(&up->tcp, 1);
    if (up->ai) {
        uv_freeaddrinfo(up->ai);
        up->ai = up->ai_next = NULL;
    }
    if (up->https) {
        /* sessions are resumed per origin and name: later connections to
         * it skip most of the handshake */
        const char *name = up->sni ? up->sni : up->host;
        char *origin = reel_asprintf("%s:%d %s", up->host, up->port, name);
        reel_tls_client_opts_t o = {
            .host = name, .insecure = !c->p->verify_upstream, .session_key = origin};
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc trc = reel_tls_new_client(c->p->client_ctx, &o, &up->tls, &err);
        free(origin);
        if (trc != REEL_OK) {
            reel__upstream_failed(up, reel_err_str(&err));
            return;
        }
        reel_tls_handshake(up->tls, &err);
        reel__tls_flush(up);
    }
    reel__peer_read_start(up);
    if (reel__peer_ready(up))
        reel__upstream_ready(up);
    reel__conn_arm(c);
}

/* After a failure found by the resolver's callback: reel__upstream_close
 * leaves a peer without a socket to that callback to free, and this is
 * it. (A failed lookup leaked the peer and its queued request.) */
static void free_orphan(conn_t *c, peer_t *up) {
    if (c->up != up && !up->tcp_open) {
        peer_free_bufs(up);
        free(up);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    peer_t *up = req->data;
    conn_t *c = up->c;
    if (up->closing) {
        /* Closed while resolving: nothing else references it. */
        if (res)
            uv_freeaddrinfo(res);
        peer_free_bufs(up);
        free(up);
        reel__conn_unref(c);
        return;
    }
    reel__conn_unref(c); /* the resolver's reference */
    up->t_dns1 = reel__now_us();
    if (status < 0) {
        char *why = reel_asprintf("cannot resolve %s: %s", up->host, uv_strerror(status));
        reel__upstream_failed(up, why);
        free(why);
        free_orphan(c, up);
        return;
    }
    up->ai = res;
    up->ai_next = res;
    upstream_try_next(up);
    reel__conn_arm(c);
    if (!up->tcp_open && c->up == up) {
        char *why = reel_asprintf("cannot connect to %s:%d: no usable address", up->host, up->port);
        reel__upstream_failed(up, why);
        free(why);
        free_orphan(c, up);
    }
}

/* Makes sure c->up goes to (https, host, port), reusing it when it does.
 * Returns true when it reused the connection. */
bool reel__upstream_for(conn_t *c, bool https, const char *host, int port, const char *sni) {
    peer_t *up = c->up;
    if (up && !up->closing && !up->eof && up->https == https && up->port == port &&
        strcasecmp(up->host, host) == 0 &&
        ((sni == NULL && up->sni == NULL) || (sni && up->sni && strcasecmp(sni, up->sni) == 0)))
        return true;
    reel__upstream_close(c);
    up = reel_calloc(1, sizeof *up);
    up->c = c;
    up->role = P_UPSTREAM;
    up->host = reel_strdup(host);
    up->sni = sni && strcasecmp(sni, host) != 0 ? reel_strdup(sni) : NULL;
    up->port = port;
    up->https = https;
    up->progress = uv_now(c->p->loop);
    up->t_dns0 = reel__now_us();
    up->id = ++c->p->upstream_ids;
    reel_buf_init(&up->in, 0);
    reel_buf_init(&up->pend, 0);
    reel_buf_init(&up->cipher, 0);
    c->up = up;
    reel_h1_free(c->resp);
    c->resp = reel_h1_new(REEL_H1_RESPONSE, NULL);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    up->gai.data = up;
    c->handles++; /* held until the resolver calls back */
    if (uv_getaddrinfo(c->p->loop, &up->gai, on_resolved, host, portstr, &hints) != 0) {
        c->handles--;
        char *why = reel_asprintf("cannot resolve %s", host);
        reel__upstream_failed(up, why);
        free(why);
    }
    return false;
}
