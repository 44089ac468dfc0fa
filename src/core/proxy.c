/* The proxy: sockets and timers on one libuv loop, glued to the sans-I/O
 * layers (http1, tls, sniff, ws) and to capture.
 *
 * A connection (conn_t) has a client peer and at most one upstream peer.
 * A peer is one TCP socket with an optional TLS layer; everything above it
 * reads and writes plaintext through peer_write / peer->in, so plain and
 * intercepted traffic run through the same code (STYLE.md habit 4).
 *
 * HTTP exchanges on a connection are handled one at a time: the request
 * head is rewritten for the origin (hop-by-hop fields removed), the bytes
 * of the body that follow are forwarded exactly as received (framing
 * included), and the same for the response. Pipelined requests wait in the
 * client's input buffer until the response before them is complete.
 *
 * Back-pressure: when a peer has more than HIGH_WATER bytes queued for
 * writing, the other peer stops reading until it drains below LOW_WATER. */

/* This file: the public API (start, configure, shutdown) and the
 * listener. The rest of the proxy is split by concern: peer.c, exchange.c,
 * tunnel.c, conn.c, sharing core/conn.h. */

#include "core/conn.h"

static reel_rc apply_config(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err);
static void raise_fd_limit(void);
static void on_failed_listener_closed(uv_handle_t *h);
static void on_proxy_handle_closed(uv_handle_t *h);
static void on_flush_check(uv_check_t *h);
static void on_grace(uv_timer_t *t);

/* ---- public API ---- */

static reel_rc apply_config(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err) {
    size_t n = cfg->n_ignore_hosts;
    pcre2_code **codes = reel_calloc(n ? n : 1, sizeof *codes);
    for (size_t i = 0; i < n; i++) {
        int ec;
        PCRE2_SIZE eo;
        codes[i] = pcre2_compile((PCRE2_SPTR)cfg->ignore_hosts[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_CASELESS, &ec, &eo, NULL);
        if (codes[i] == NULL) {
            PCRE2_UCHAR msg[200];
            pcre2_get_error_message(ec, msg, sizeof msg);
            reel_err_set(err, REEL_INVALID, "ignore_hosts: bad regex '%s': %s",
                         cfg->ignore_hosts[i], (const char *)msg);
            for (size_t k = 0; k < i; k++)
                pcre2_code_free(codes[k]);
            free(codes);
            return REEL_INVALID;
        }
    }
    for (size_t i = 0; i < p->nignore; i++)
        pcre2_code_free(p->ignore[i]);
    free(p->ignore);
    p->ignore = codes;
    p->nignore = n;
    p->verify_upstream = cfg->upstream_cert_verify;
    p->http2 = cfg->http2;
    free(p->h2c_upstreams);
    p->h2c_upstreams = cfg->h2c_upstreams && cfg->h2c_upstreams[0]
                           ? reel_strdup(cfg->h2c_upstreams)
                           : NULL;
    p->idle_timeout_ms = (uint64_t)cfg->idle_timeout_s * 1000;
    p->head_timeout_ms = (uint64_t)cfg->head_timeout_s * 1000;
    p->upstream_timeout_ms = (uint64_t)cfg->upstream_timeout_s * 1000;
    p->max_head_size = cfg->max_head_size;
    p->max_client_conns = cfg->max_client_conns;
    const char *auth = cfg->proxyauth;
    free(p->proxyauth_b64);
    p->proxyauth_b64 = NULL;
    if (auth && auth[0])
        p->proxyauth_b64 = reel_base64(auth, strlen(auth), NULL);
    return REEL_OK;
}

reel_rc reel_proxy_configure(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err) {
    reel_rc rc = apply_config(p, cfg, err);
    if (rc == REEL_OK)
        for (conn_t *c = p->conns; c; c = c->next)
            reel__conn_arm_at(c, true); /* timeouts may have become shorter */
    return rc;
}

/* A proxy holds one descriptor per client and one per upstream: the
 * default soft limit (often 1024) is far too low, the hard one is what the
 * administrator allows. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY)
        want = 1u << 20; /* the kernel's default nr_open */
    while (want > rl.rlim_cur) {
        struct rlimit n = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &n) == 0)
            return;
        want /= 2;
    }
}

/* A listener that failed to bind or listen is the loop's until its close
 * callback has run: the proxy struct holding it is freed only then. */
static void on_failed_listener_closed(uv_handle_t *h) {
    free(h->data);
}

reel_rc reel_proxy_start(uv_loop_t *loop, const reel_proxy_settings_t *cfg, reel_recorder_t *rec,
                         reel_ca_t *ca, reel_proxy_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    bool listener_closing = false;
    raise_fd_limit();
    reel_proxy_t *p = reel_calloc(1, sizeof *p);
    p->loop = loop;
    p->rec = rec;
    p->ca = ca;
    p->client_ids = cfg->first_client_id;
    *out = NULL;
    if ((rc = apply_config(p, cfg, err)) != REEL_OK)
        goto out;
    const char *extra = cfg->upstream_trusted_ca;
    if ((rc = reel_tls_ctx_new_client(extra && extra[0] ? extra : NULL, false, &p->client_ctx,
                                      err)) != REEL_OK)
        goto out;
    if (ca && (rc = reel_tls_ctx_new_server(ca, &p->server_ctx, err)) != REEL_OK)
        goto out;
    const char *host = cfg->listen_host;
    int port = cfg->listen_port;
    if (host == NULL) {
        /* no listener: connections are handed in (tests) */
        uv_timer_init(loop, &p->grace);
        p->grace.data = p;
        goto out;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        rc = reel_err_set(err, REEL_INVALID, "cannot listen on %s:%d: %s", host, port,
                          gai_strerror(gai));
        goto out;
    }
    uv_tcp_init(loop, &p->listener);
    p->listener.data = p;
    int e = uv_tcp_bind(&p->listener, res->ai_addr, 0);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&p->listener, 1024, reel__on_connection);
    freeaddrinfo(res);
    if (e != 0) {
        uv_close((uv_handle_t *)&p->listener, on_failed_listener_closed);
        listener_closing = true;
        rc = reel_err_set(err, REEL_IO, "cannot listen on %s:%d: %s", host, port, uv_strerror(e));
        goto out;
    }
    p->listening = true;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len);
    p->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_timer_init(loop, &p->grace);
    p->grace.data = p;
out:
    if (rc == REEL_OK) {
        uv_check_init(loop, &p->flush_check);
        p->flush_check.data = p;
        uv_check_start(&p->flush_check, on_flush_check);
        uv_unref((uv_handle_t *)&p->flush_check); /* it alone does not keep the loop */
        p->check_open = true;
    } else {
        reel_tls_ctx_free(p->client_ctx);
        reel_tls_ctx_free(p->server_ctx);
        for (size_t i = 0; i < p->nignore; i++)
            pcre2_code_free(p->ignore[i]);
        free(p->ignore);
        free(p->proxyauth_b64);
        free(p->h2c_upstreams);
        if (!listener_closing)
            free(p); /* else on_failed_listener_closed frees it */
        p = NULL;
    }
    *out = p;
    return rc;
}

void reel__proxy_set_connector(reel_proxy_t *p,
                               reel_filter_t *(*fn)(void *ctx, reel_proxy_t *p, const char *host,
                                                    int port),
                               void *ctx) {
    p->connect = fn;
    p->connect_ctx = ctx;
}

int reel_proxy_port(const reel_proxy_t *p) {
    return p->port;
}

void reel__h2_memory_seen(reel_proxy_t *p, size_t bytes) {
    if (bytes > p->stats.h2_peak_bytes)
        p->stats.h2_peak_bytes = bytes;
}

void reel__batch_begin(reel_proxy_t *p) {
    p->batch++;
}

bool reel__batch_defer(reel_proxy_t *p, bool session, void *ptr) {
    if (p->batch == 0 && !p->check_open)
        return false;
    if (p->nflushq == p->capflushq) {
        p->capflushq = p->capflushq ? p->capflushq * 2 : 16;
        p->flushq = reel_realloc(p->flushq, p->capflushq * sizeof *p->flushq);
    }
    p->flushq[p->nflushq++] = (struct deferred_flush){session, ptr};
    return true;
}

/* The entries' memory outlives the batch: conns and sessions are freed
 * from libuv close callbacks, never inside the callback a batch runs in,
 * and libuv runs the check handle (on_flush_check) before the close
 * callbacks of the same loop iteration. */
void reel__batch_end(reel_proxy_t *p) {
    if (--p->batch > 0)
        return;
    p->batch++; /* flushing may defer again: those go in this same pass */
    for (size_t i = 0; i < p->nflushq; i++) {
        struct deferred_flush d = p->flushq[i];
        if (d.session)
            reel__h2up_flush_deferred(d.ptr);
        else
            reel__h2front_flush_deferred(d.ptr);
    }
    p->nflushq = 0;
    p->batch--;
}

static void on_flush_check(uv_check_t *h) {
    reel_proxy_t *p = h->data;
    if (p->nflushq && p->batch == 0) {
        p->batch++;
        reel__batch_end(p);
    }
}

void reel__proxy_handle_closed(reel_proxy_t *p) {
    if (--p->closing_handles == 0 && p->conns == NULL && p->done) {
        void (*done)(void *) = p->done;
        p->done = NULL;
        done(p->done_ctx);
    }
}

static void on_proxy_handle_closed(uv_handle_t *h) {
    reel__proxy_handle_closed(h->data);
}

/* Every connection is gone: close the grace timer, then report done once
 * every handle of the proxy has closed. */
void reel__shutdown_finish(reel_proxy_t *p) {
    if (p->check_open) {
        on_flush_check(&p->flush_check); /* what is still deferred */
        p->check_open = false;
        p->closing_handles++;
        uv_close((uv_handle_t *)&p->flush_check, on_proxy_handle_closed);
    }
    if (!p->grace_closing) {
        p->grace_closing = true;
        p->closing_handles++;
        uv_close((uv_handle_t *)&p->grace, on_proxy_handle_closed);
    }
}

static void on_grace(uv_timer_t *t) {
    reel_proxy_t *p = t->data;
    for (conn_t *c = p->conns; c; c = c->next)
        reel__conn_close(c);
}

void reel_proxy_shutdown(reel_proxy_t *p, uint64_t grace_ms, void (*done)(void *ctx), void *ctx) {
    p->shutting_down = true;
    p->done = done;
    p->done_ctx = ctx;
    if (p->listening) {
        p->listening = false;
        p->closing_handles++;
        uv_close((uv_handle_t *)&p->listener, on_proxy_handle_closed);
    }
    conn_t *next;
    for (conn_t *c = p->conns; c; c = next) {
        next = c->next;
        c->draining = true;
        if (c->state == C_HEAD && c->client.in.len == 0 && c->ex.flow == NULL)
            reel__conn_close(c);
        else if (c->state == C_H2)
            reel__h2front_drain(c); /* GOAWAY: streams running may finish */
    }
    reel__h2up_shutdown(p);
    if (p->conns == NULL) {
        reel__shutdown_finish(p);
        return;
    }
    uv_timer_start(&p->grace, on_grace, grace_ms, 0);
}

void reel_proxy_free(reel_proxy_t *p) {
    if (p == NULL)
        return;
    reel_tls_ctx_free(p->client_ctx);
    reel_tls_ctx_free(p->server_ctx);
    for (size_t i = 0; i < p->nignore; i++)
        pcre2_code_free(p->ignore[i]);
    free(p->ignore);
    free(p->proxyauth_b64);
    free(p->h2c_upstreams);
    free(p->flushq);
    for (size_t i = 0; i < p->nclient_buckets; i++)
        while (p->clients[i]) {
            struct client_count *e = p->clients[i];
            p->clients[i] = e->next;
            free(e);
        }
    free(p->clients);
    free(p);
}

void reel_proxy_stats(const reel_proxy_t *p, reel_proxy_stats_t *out) {
    *out = p->stats;
}
