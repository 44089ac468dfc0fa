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

#include "base/thread.h"
#include "core/conn.h"
#include "core/hostport.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- workers: the types (functions at the end of the file) ---- */

/* A worker besides the first: its own loop on its own thread, running a
 * proxy of its own (start_one) that shares the first's numbering and
 * client table (struct proxy_shared). The first worker's thread talks to
 * it only through `wake` and the request fields under the group's lock. */
typedef struct worker {
    struct proxy_group *g;
    unsigned index; /* 1, 2, ... (0 is the first worker) */
    uv_loop_t loop;
    reel_proxy_t *p;
    uv_async_t wake;
    pthread_t thread;
    bool running; /* its thread was started */
    /* requests, under g->mu */
    struct owned_settings *cfg; /* configure with these */
    bool stop;                  /* shut down, with grace_ms */
    uint64_t grace_ms;
    bool finished; /* its proxy has shut down and its loop is ending */
} worker_t;

struct proxy_group {
    pthread_mutex_t mu;
    size_t n; /* workers besides the first */
    worker_t *w;
    /* on the first worker's loop: another worker finished (under mu) */
    uv_async_t finished;
    bool finished_open;
    bool first_done, stopping;
    void (*done)(void *);
    void *done_ctx;
};

/* Settings handed to another thread: a copy of every string. */
struct owned_settings {
    reel_proxy_settings_t s;
    char *strs[10];
    char **ignore, **map, **local, **block, **headers, **dns, **body;
};

static reel_rc apply_config(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err);
static void raise_fd_limit(void);
static void on_failed_listener_closed(uv_handle_t *h);
static void on_proxy_handle_closed(uv_handle_t *h);
static void on_flush_check(uv_check_t *h);
static void on_flush_idle(uv_idle_t *h);
static void on_grace(uv_timer_t *t);
static reel_rc start_one(uv_loop_t *loop, const reel_proxy_settings_t *cfg, reel_recorder_t *rec,
                         reel_ca_t *ca, const reel_proxy_t *first, bool reuseport,
                         reel_proxy_t **out, reel_err_t *err);
static reel_rc configure_one(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err);
static void shutdown_one(reel_proxy_t *p, uint64_t grace_ms, void (*done)(void *ctx), void *ctx);
static void free_one(reel_proxy_t *p);
static reel_rc probe_port(reel_proxy_settings_t *cfg, reel_err_t *err);
static int join_reuseport(uv_tcp_t *t);
static void free_after_shutdown(void *ctx);
static void on_first_worker_done(void *ctx);
static void on_other_finished(uv_async_t *a);
static reel_rc start_workers(reel_proxy_t *p0, const reel_proxy_settings_t *cfg, unsigned n,
                             reel_err_t *err);
static void configure_workers(reel_proxy_t *p0, const reel_proxy_settings_t *cfg);
static void shutdown_workers(reel_proxy_t *p0, uint64_t grace_ms);
static void free_workers(reel_proxy_t *p0);

/* ---- public API ---- */

/* The rules of a configuration, compiled before any is taken, so that a
 * bad one changes nothing. */
typedef struct {
    reel_map_rules_t *map, *local;
    reel_block_rules_t *block;
    reel_header_rules_t *headers;
    reel_body_rules_t *body;
    reel_dns_map_t *dns;
    reel_tls_identities_t *ids;
    pcre2_code **ignore;
    size_t nignore;
} compiled_t;

static void compiled_free(compiled_t *k) {
    reel_map_rules_free(k->map);
    reel_map_rules_free(k->local);
    reel_block_rules_free(k->block);
    reel_header_rules_free(k->headers);
    reel_body_rules_free(k->body);
    reel_dns_map_free(k->dns);
    reel_tls_identities_free(k->ids);
    for (size_t i = 0; i < k->nignore; i++)
        pcre2_code_free(k->ignore[i]);
    free(k->ignore);
}

/* The rules p has now. */
static compiled_t p_compiled(const reel_proxy_t *p) {
    return (compiled_t){.map = p->map_remote,
                        .local = p->map_local,
                        .block = p->block_list,
                        .headers = p->modify_headers,
                        .body = p->modify_body,
                        .dns = p->dns_overrides,
                        .ids = p->client_certs,
                        .ignore = p->ignore,
                        .nignore = p->nignore};
}

static reel_rc compile_rules(const reel_proxy_settings_t *cfg, compiled_t *k, reel_err_t *err) {
    memset(k, 0, sizeof *k);
    reel_rc rc = REEL_INVALID;
    if (reel_map_rules_new(cfg->map_remote, cfg->n_map_remote, &k->map, err) != REEL_OK ||
        reel_map_local_new(cfg->map_local, cfg->n_map_local, &k->local, err) != REEL_OK ||
        reel_block_rules_new(cfg->block_list, cfg->n_block_list, &k->block, err) != REEL_OK ||
        reel_header_rules_new(cfg->modify_headers, cfg->n_modify_headers, &k->headers, err) !=
            REEL_OK ||
        reel_body_rules_new(cfg->modify_body, cfg->n_modify_body, &k->body, err) != REEL_OK ||
        reel_dns_map_new(cfg->dns_overrides, cfg->n_dns_overrides, &k->dns, err) != REEL_OK ||
        (rc = reel_tls_identities_load(cfg->upstream_client_certs, &k->ids, err)) != REEL_OK) {
        compiled_free(k);
        return rc;
    }
    size_t n = cfg->n_ignore_hosts;
    k->ignore = reel_calloc(n ? n : 1, sizeof *k->ignore);
    for (size_t i = 0; i < n; i++) {
        int ec;
        PCRE2_SIZE eo;
        k->ignore[i] = pcre2_compile((PCRE2_SPTR)cfg->ignore_hosts[i], PCRE2_ZERO_TERMINATED,
                                     PCRE2_CASELESS, &ec, &eo, NULL);
        if (k->ignore[i] == NULL) {
            PCRE2_UCHAR msg[200];
            pcre2_get_error_message(ec, msg, sizeof msg);
            reel_err_set(err, REEL_INVALID, "ignore_hosts: bad regex '%s': %s",
                         cfg->ignore_hosts[i], (const char *)msg);
            compiled_free(k);
            return REEL_INVALID;
        }
        k->nignore = i + 1;
    }
    return REEL_OK;
}

static reel_rc apply_config(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err) {
    compiled_t k;
    reel_rc krc = compile_rules(cfg, &k, err);
    if (krc != REEL_OK)
        return krc;
    /* the old ones go; the new ones are p's */
    compiled_t old = p_compiled(p);
    compiled_free(&old);
    p->map_remote = k.map;
    p->map_local = k.local;
    p->block_list = k.block;
    p->modify_headers = k.headers;
    p->modify_body = k.body;
    p->dns_overrides = k.dns;
    p->client_certs = k.ids;
    p->ignore = k.ignore;
    p->nignore = k.nignore;
    p->verify_upstream = cfg->upstream_cert_verify;
    p->starttls = cfg->intercept_starttls;
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
    /* new connections to origins go through it (those open stay as they are) */
    free(p->upstream_proxy);
    free(p->upstream_proxy_host);
    free(p->upstream_proxy_b64);
    p->upstream_proxy = p->upstream_proxy_host = p->upstream_proxy_b64 = NULL;
    p->upstream_proxy_port = 0;
    reel_rc rc = reel_upstream_proxy_parse(cfg->upstream_proxy, cfg->upstream_proxyauth,
                                           &p->upstream_proxy, &p->upstream_proxy_host,
                                           &p->upstream_proxy_port, &p->upstream_proxy_b64,
                                           &p->upstream_proxy_socks, &p->upstream_proxy_tls, err);
    free(p->upstream_proxy_userpass);
    p->upstream_proxy_userpass =
        p->upstream_proxy_socks && cfg->upstream_proxyauth && cfg->upstream_proxyauth[0]
            ? reel_strdup(cfg->upstream_proxyauth)
            : NULL;
    /* parsed here, once: they are matched on every request */
    reel_host_list_free(p->upstream_no_proxy);
    p->upstream_no_proxy = reel_host_list_new(cfg->upstream_no_proxy);
    reel_host_list_free(p->insecure_hosts);
    p->insecure_hosts = reel_host_list_new(cfg->upstream_insecure_hosts);
    return rc;
}

reel_rc reel_upstream_proxy_parse(const char *value, const char *auth, char **display, char **host,
                                  int *port, char **auth_b64, bool *socks, bool *tls,
                                  reel_err_t *err) {
    *display = *host = *auth_b64 = NULL;
    *port = 0;
    *socks = *tls = false;
    const char *via = value;
    size_t scheme = 0; /* of a SOCKS or HTTPS proxy, kept in *display */
    if (via && strncmp(via, "http://", 7) == 0)
        via += 7;
    else if (via && strncmp(via, "https://", 8) == 0)
        scheme = 8;
    else if (via && strncmp(via, "socks5://", 9) == 0)
        scheme = 9;
    else if (via && strncmp(via, "socks5h://", 10) == 0)
        scheme = 10;
    *socks = scheme > 8;
    *tls = scheme == 8;
    if (via == NULL || via[0] == '\0')
        return REEL_OK;
    size_t len = strlen(via);
    if (len && via[len - 1] == '/')
        len--; /* "http://host:port/" */
    if (reel__split_authority(via + scheme, len - scheme, host, port, -1) != 0 || *port <= 0 ||
        *port > 65535) {
        free(*host);
        *host = NULL;
        *port = 0;
        *socks = *tls = false;
        return reel_err_set(err, REEL_INVALID,
                            "upstream_proxy: expected host:port, http://host:port, "
                            "https://host:port or socks5://host:port, not '%s'",
                            value);
    }
    *display = reel_strndup(via, len);
    if (auth && auth[0])
        *auth_b64 = reel_base64(auth, strlen(auth), NULL);
    return REEL_OK;
}

/* What apply_config and reverse_parse made of the settings. */
static void free_settings(reel_proxy_t *p) {
    compiled_t k = p_compiled(p);
    compiled_free(&k);
    free(p->proxyauth_b64);
    free(p->h2c_upstreams);
    free(p->upstream_proxy);
    free(p->upstream_proxy_host);
    free(p->upstream_proxy_b64);
    reel_host_list_free(p->upstream_no_proxy);
    free(p->upstream_proxy_userpass);
    free(p->reverse_host);
    free(p->reverse_authority);
    reel_host_list_free(p->insecure_hosts);
}

/* reverse_to ("http[s]://host[:port][/]"), read when the proxy starts. */
static reel_rc reverse_parse(reel_proxy_t *p, const char *v, reel_err_t *err) {
    if (v == NULL || v[0] == '\0')
        return REEL_OK;
    bool https = strncmp(v, "https://", 8) == 0;
    const char *a = v + (https ? 8 : strncmp(v, "http://", 7) == 0 ? 7 : 0);
    size_t n = strlen(a);
    if (n && a[n - 1] == '/')
        n--;
    if (a == v ||
        reel__split_authority(a, n, &p->reverse_host, &p->reverse_port, https ? 443 : 80) != 0)
        return reel_err_set(err, REEL_INVALID,
                            "reverse_to: expected http://host[:port] or https://host[:port], not "
                            "'%s'",
                            v);
    p->reverse_https = https;
    p->reverse_authority = reel__authority(https, p->reverse_host, p->reverse_port);
    return REEL_OK;
}

static reel_rc configure_one(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err) {
    reel_rc rc = apply_config(p, cfg, err);
    if (rc == REEL_OK)
        for (conn_t *c = p->conns; c; c = c->next)
            reel__conn_arm_at(c, true); /* timeouts may have become shorter */
    return rc;
}

/* The first worker checks the settings (a bad regex changes nothing
 * anywhere); the others take them on their own loops. */
reel_rc reel_proxy_configure(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err) {
    reel_rc rc = configure_one(p, cfg, err);
    if (rc == REEL_OK && p->group)
        configure_workers(p, cfg);
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

/* The listen address (the first of host's), for bind. */
static reel_rc resolve_listen(const char *host, int port, struct addrinfo **res, reel_err_t *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, res);
    if (gai != 0)
        return reel_err_set(err, REEL_INVALID, "cannot listen on " REEL_HOSTPORT_FMT ": %s",
                            REEL_HOSTPORT(host, port), gai_strerror(gai));
    return REEL_OK;
}

static int sockaddr_port(const struct sockaddr_storage *ss) {
    return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                     : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

reel_rc reel_proxy_start(uv_loop_t *loop, const reel_proxy_settings_t *cfg, reel_recorder_t *rec,
                         reel_ca_t *ca, reel_proxy_t **out, reel_err_t *err) {
    raise_fd_limit();
    unsigned n = cfg->listen_host ? cfg->workers : 1;
    if (n <= 1)
        return start_one(loop, cfg, rec, ca, NULL, false, out, err);
    reel_proxy_settings_t c = *cfg;
    reel_rc rc = probe_port(&c, err);
    if (rc == REEL_OK)
        rc = start_one(loop, &c, rec, ca, NULL, true, out, err);
    if (rc == REEL_OK && (rc = start_workers(*out, &c, n, err)) != REEL_OK) {
        /* its handles close when the caller's loop runs next; then it is freed */
        shutdown_one(*out, 0, free_after_shutdown, *out);
        *out = NULL;
    }
    return rc;
}

/* One worker: the only one, or one of several (first: the first worker,
 * whose numbering, client table and TLS ticket keys it shares; NULL for the
 * first itself), whose listeners join the address's SO_REUSEPORT group. */
static reel_rc start_one(uv_loop_t *loop, const reel_proxy_settings_t *cfg, reel_recorder_t *rec,
                         reel_ca_t *ca, const reel_proxy_t *first, bool reuseport,
                         reel_proxy_t **out, reel_err_t *err) {
    struct proxy_shared *shared = first ? first->shared : NULL;
    reel_rc rc = REEL_OK;
    bool listener_closing = false;
    reel_proxy_t *p = reel_calloc(1, sizeof *p);
    p->loop = loop;
    p->rec = rec;
    p->ca = ca;
    if (shared == NULL) {
        shared = &p->own_shared;
        shared->client_ids = cfg->first_client_id;
        pthread_mutex_init(&shared->mu, NULL);
    }
    p->shared = shared;
    *out = NULL;
    if ((rc = apply_config(p, cfg, err)) != REEL_OK)
        goto out;
    if ((rc = reverse_parse(p, cfg->reverse_to, err)) != REEL_OK)
        goto out;
    if (cfg->transparent && p->reverse_host) {
        rc = reel_err_set(err, REEL_INVALID,
                          "transparent and reverse_to cannot both be set: a reverse proxy sends "
                          "every connection to its one origin");
        goto out;
    }
    p->transparent = cfg->transparent;
    const char *extra = cfg->upstream_trusted_ca;
    if ((rc = reel_tls_ctx_new_client(extra && extra[0] ? extra : NULL, false, &p->client_ctx,
                                      err)) != REEL_OK)
        goto out;
    if (ca && (rc = reel_tls_ctx_new_server(ca, &p->server_ctx, err)) != REEL_OK)
        goto out;
    if (p->server_ctx && first && first->server_ctx &&
        !reel_tls_ctx_share_tickets(p->server_ctx, first->server_ctx)) {
        rc = reel_err_set(err, REEL_ERROR, "cannot share the TLS ticket keys between workers");
        goto out;
    }
    const char *host = cfg->listen_host;
    int port = cfg->listen_port;
    if (host == NULL) {
        /* no listener: connections are handed in (tests) */
        uv_timer_init(loop, &p->grace);
        p->grace.data = p;
        goto out;
    }
    struct addrinfo *res = NULL;
    if ((rc = resolve_listen(host, port, &res, err)) != REEL_OK)
        goto out;
    uv_tcp_init_ex(loop, &p->listener, (unsigned)res->ai_family);
    p->listener.data = p;
    int e = reuseport ? join_reuseport(&p->listener) : 0;
    if (e == 0)
        e = uv_tcp_bind(&p->listener, res->ai_addr, 0);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&p->listener, 1024, reel__on_connection);
    freeaddrinfo(res);
    if (e != 0) {
        uv_close((uv_handle_t *)&p->listener, on_failed_listener_closed);
        listener_closing = true;
        rc = reel_err_set(err, REEL_IO, "cannot listen on " REEL_HOSTPORT_FMT ": %s",
                          REEL_HOSTPORT(host, port), uv_strerror(e));
        goto out;
    }
    p->listening = true;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len);
    p->port = sockaddr_port(&ss);
    uv_timer_init(loop, &p->grace);
    p->grace.data = p;
out:
    if (rc == REEL_OK) {
        uv_check_init(loop, &p->flush_check);
        p->flush_check.data = p;
        uv_check_start(&p->flush_check, on_flush_check);
        uv_unref((uv_handle_t *)&p->flush_check); /* it alone does not keep the loop */
        uv_idle_init(loop, &p->flush_idle);
        p->flush_idle.data = p;
        uv_unref((uv_handle_t *)&p->flush_idle);
        p->check_open = true;
    } else {
        reel_tls_ctx_free(p->client_ctx);
        reel_tls_ctx_free(p->server_ctx);
        free_settings(p);
        if (p->shared == &p->own_shared)
            pthread_mutex_destroy(&p->own_shared.mu);
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
    /* only p's loop writes it */
    if (bytes > p->stats.h2_peak_bytes)
        __atomic_store_n(&p->stats.h2_peak_bytes, (uint64_t)bytes, __ATOMIC_RELAXED);
}

void reel__batch_begin(reel_proxy_t *p) {
    p->batch++;
}

bool reel__batch_defer(reel_proxy_t *p, bool session, void *ptr) {
    if (p->batch == 0 && !p->check_open)
        return false;
    if (p->batch == 0 && p->nflushq == 0)
        uv_idle_start(&p->flush_idle, on_flush_idle); /* a poll that does not wait */
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

static void on_flush_idle(uv_idle_t *h) {
    (void)h; /* its being active is the point: the flush is on_flush_check's */
}

static void on_flush_check(uv_check_t *h) {
    reel_proxy_t *p = h->data;
    uv_idle_stop(&p->flush_idle);
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
        p->closing_handles += 2;
        uv_close((uv_handle_t *)&p->flush_check, on_proxy_handle_closed);
        uv_close((uv_handle_t *)&p->flush_idle, on_proxy_handle_closed);
    }
    if (!p->grace_closing) {
        p->grace_closing = true;
        p->closing_handles++;
        uv_close((uv_handle_t *)&p->grace, on_proxy_handle_closed);
    }
}

static void on_grace(uv_timer_t *t) {
    reel_proxy_t *p = t->data;
    for (conn_t *c = p->conns; c; c = c->next) {
        reel__conn_shutdown_ends(c);
        reel__conn_close(c);
    }
}

static void shutdown_one(reel_proxy_t *p, uint64_t grace_ms, void (*done)(void *ctx), void *ctx) {
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
        if (c->state == C_HEAD && c->client.in.len == 0 && c->ex.flow == NULL) {
            reel__conn_shutdown_ends(c); /* (a TLS tunnel with no request yet) */
            reel__conn_close(c);
        } else if (c->state == C_H2) {
            reel__conn_shutdown_ends(c); /* (a client that opened no stream) */
            reel__h2front_drain(c);      /* GOAWAY: streams running may finish */
        }
    }
    reel__h2up_shutdown(p);
    if (p->conns == NULL) {
        reel__shutdown_finish(p);
        return;
    }
    uv_timer_start(&p->grace, on_grace, grace_ms, 0);
}

void reel_proxy_shutdown(reel_proxy_t *p, uint64_t grace_ms, void (*done)(void *ctx), void *ctx) {
    if (p->group == NULL) {
        shutdown_one(p, grace_ms, done, ctx);
        return;
    }
    shutdown_workers(p, grace_ms);
    p->group->done = done;
    p->group->done_ctx = ctx;
    shutdown_one(p, grace_ms, on_first_worker_done, p->group);
}

void reel_proxy_free(reel_proxy_t *p) {
    if (p == NULL)
        return;
    if (p->group)
        free_workers(p);
    free_one(p);
}

static void free_one(reel_proxy_t *p) {
    reel_tls_ctx_free(p->client_ctx);
    reel_tls_ctx_free(p->server_ctx);
    free_settings(p);
    free(p->flushq);
    if (p->shared == &p->own_shared) {
        struct proxy_shared *sh = &p->own_shared;
        for (size_t i = 0; i < sh->nclient_buckets; i++)
            while (sh->clients[i]) {
                struct client_count *e = sh->clients[i];
                sh->clients[i] = e->next;
                free(e);
            }
        free(sh->clients);
        pthread_mutex_destroy(&sh->mu);
    }
    free(p);
}

/* Read while the worker's loop may change them (STAT_ADD). */
static void stats_add(reel_proxy_stats_t *to, const reel_proxy_t *p) {
    const reel_proxy_stats_t *s = &p->stats;
    to->connections += __atomic_load_n(&s->connections, __ATOMIC_RELAXED);
    to->active_connections += __atomic_load_n(&s->active_connections, __ATOMIC_RELAXED);
    to->flows += __atomic_load_n(&s->flows, __ATOMIC_RELAXED);
    to->errors += __atomic_load_n(&s->errors, __ATOMIC_RELAXED);
    to->ignored += __atomic_load_n(&s->ignored, __ATOMIC_RELAXED);
    to->h2_connections += __atomic_load_n(&s->h2_connections, __ATOMIC_RELAXED);
    to->unsolicited += __atomic_load_n(&s->unsolicited, __ATOMIC_RELAXED);
    uint64_t peak = __atomic_load_n(&s->h2_peak_bytes, __ATOMIC_RELAXED);
    if (peak > to->h2_peak_bytes)
        to->h2_peak_bytes = peak;
}

void reel_proxy_stats(const reel_proxy_t *p, reel_proxy_stats_t *out) {
    *out = (reel_proxy_stats_t){0};
    stats_add(out, p);
    if (p->group)
        for (size_t i = 0; i < p->group->n; i++)
            stats_add(out, p->group->w[i].p);
}

/* ---- workers ---- */

/* The first worker binds the address alone first, to fail as a single
 * worker would when something else holds it (an SO_REUSEPORT group would
 * otherwise let a second reel on the same port take half the connections)
 * and to learn the port when any was asked for; the group then binds it. */
static reel_rc probe_port(reel_proxy_settings_t *cfg, reel_err_t *err) {
    struct addrinfo *res = NULL;
    reel_rc rc = resolve_listen(cfg->listen_host, cfg->listen_port, &res, err);
    if (rc != REEL_OK)
        return rc;
    int e = 0;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0)
        e = -errno;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (e == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        cfg->listen_port = sockaddr_port(&ss);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    if (e != 0)
        return reel_err_set(err, REEL_IO, "cannot listen on " REEL_HOSTPORT_FMT ": %s",
                            REEL_HOSTPORT(cfg->listen_host, cfg->listen_port), uv_strerror(e));
    return REEL_OK;
}

static int join_reuseport(uv_tcp_t *t) {
    uv_os_fd_t fd;
    int one = 1;
    int e = uv_fileno((uv_handle_t *)t, &fd);
    if (e == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        e = -errno;
    return e;
}

static void free_after_shutdown(void *ctx) {
    reel_proxy_free(ctx);
}

/* A copy of the n strings of l into *own (owned), returned as the
 * settings' list. */
static const char *const *list_copy(const char *const *l, size_t n, char ***own) {
    *own = reel_calloc(n ? n : 1, sizeof **own);
    for (size_t i = 0; i < n; i++)
        (*own)[i] = reel_strdup(l[i]);
    return (const char *const *)*own;
}

static struct owned_settings *settings_dup(const reel_proxy_settings_t *c) {
    struct owned_settings *o = reel_calloc(1, sizeof *o);
    o->s = *c;
    const char *from[sizeof o->strs / sizeof *o->strs] = {c->listen_host,
                                                          c->upstream_trusted_ca,
                                                          c->h2c_upstreams,
                                                          c->proxyauth,
                                                          c->upstream_proxy,
                                                          c->upstream_proxyauth,
                                                          c->upstream_no_proxy,
                                                          c->reverse_to,
                                                          c->upstream_insecure_hosts,
                                                          c->upstream_client_certs};
    for (size_t i = 0; i < sizeof o->strs / sizeof *o->strs; i++)
        o->strs[i] = from[i] ? reel_strdup(from[i]) : NULL;
    o->s.listen_host = o->strs[0];
    o->s.upstream_trusted_ca = o->strs[1];
    o->s.h2c_upstreams = o->strs[2];
    o->s.proxyauth = o->strs[3];
    o->s.upstream_proxy = o->strs[4];
    o->s.upstream_proxyauth = o->strs[5];
    o->s.upstream_no_proxy = o->strs[6];
    o->s.reverse_to = o->strs[7];
    o->s.upstream_insecure_hosts = o->strs[8];
    o->s.upstream_client_certs = o->strs[9];
    o->s.ignore_hosts = list_copy(c->ignore_hosts, c->n_ignore_hosts, &o->ignore);
    o->s.map_remote = list_copy(c->map_remote, c->n_map_remote, &o->map);
    o->s.map_local = list_copy(c->map_local, c->n_map_local, &o->local);
    o->s.block_list = list_copy(c->block_list, c->n_block_list, &o->block);
    o->s.modify_headers = list_copy(c->modify_headers, c->n_modify_headers, &o->headers);
    o->s.dns_overrides = list_copy(c->dns_overrides, c->n_dns_overrides, &o->dns);
    o->s.modify_body = list_copy(c->modify_body, c->n_modify_body, &o->body);
    return o;
}

static void list_free(char **l, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void settings_free(struct owned_settings *o) {
    if (o == NULL)
        return;
    for (size_t i = 0; i < sizeof o->strs / sizeof *o->strs; i++)
        free(o->strs[i]);
    list_free(o->ignore, o->s.n_ignore_hosts);
    list_free(o->map, o->s.n_map_remote);
    list_free(o->local, o->s.n_map_local);
    list_free(o->block, o->s.n_block_list);
    list_free(o->headers, o->s.n_modify_headers);
    list_free(o->dns, o->s.n_dns_overrides);
    list_free(o->body, o->s.n_modify_body);
    free(o);
}

/* On the worker's loop: its proxy has shut down; once `wake` is closed
 * too, nothing is left on the loop and the thread ends. */
static void on_wake_closed(uv_handle_t *h) {
    worker_t *w = h->data;
    struct proxy_group *g = w->g;
    pthread_mutex_lock(&g->mu);
    w->finished = true;
    if (g->finished_open)
        uv_async_send(&g->finished); /* under mu: the first cannot close it meanwhile */
    pthread_mutex_unlock(&g->mu);
}

static void on_worker_done(void *ctx) {
    worker_t *w = ctx;
    uv_close((uv_handle_t *)&w->wake, on_wake_closed);
}

static void on_worker_wake(uv_async_t *a) {
    worker_t *w = a->data;
    struct proxy_group *g = w->g;
    pthread_mutex_lock(&g->mu);
    struct owned_settings *cfg = w->cfg;
    w->cfg = NULL;
    bool stop = w->stop && !w->p->shutting_down;
    uint64_t grace_ms = w->grace_ms;
    pthread_mutex_unlock(&g->mu);
    if (cfg) {
        reel_err_t e; /* the first worker took the same settings */
        reel_err_clear(&e);
        configure_one(w->p, &cfg->s, &e);
        settings_free(cfg);
    }
    if (stop)
        shutdown_one(w->p, grace_ms, on_worker_done, w);
}

static void close_left(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Runs a worker's loop until everything on it has closed. */
static void run_worker_loop(worker_t *w) {
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) == UV_EBUSY) {
        uv_walk(&w->loop, close_left, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
    }
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof name, "reel-worker%u", w->index);
    reel_thread_name(name);
    run_worker_loop(w);
    return NULL;
}

static void pool_noop(uv_work_t *req) {
    (void)req;
}

static void pool_started(uv_work_t *req, int status) {
    (void)status;
    free(req);
}

static void ask_stop(worker_t *w, uint64_t grace_ms) {
    pthread_mutex_lock(&w->g->mu);
    w->stop = true;
    w->grace_ms = grace_ms;
    pthread_mutex_unlock(&w->g->mu);
    uv_async_send(&w->wake);
}

/* Workers 1 .. n-1, each with its loop, proxy and thread. If one cannot
 * start, those made so far are stopped and freed and the error returned. */
static reel_rc start_workers(reel_proxy_t *p0, const reel_proxy_settings_t *cfg, unsigned n,
                             reel_err_t *err) {
    struct proxy_group *g = reel_calloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    g->n = n - 1;
    g->w = reel_calloc(g->n, sizeof *g->w);
    reel_rc rc = REEL_OK;
    size_t made = 0;
    for (; made < g->n; made++) {
        worker_t *w = &g->w[made];
        w->g = g;
        w->index = (unsigned)made + 1;
        uv_loop_init(&w->loop);
        if ((rc = start_one(&w->loop, cfg, p0->rec, p0->ca, p0, true, &w->p, err)) != REEL_OK) {
            uv_run(&w->loop, UV_RUN_DEFAULT); /* a failed listener's close */
            uv_loop_close(&w->loop);
            break;
        }
        uv_async_init(&w->loop, &w->wake, on_worker_wake);
        w->wake.data = w;
    }
    if (rc == REEL_OK) {
        /* libuv's thread pool (getaddrinfo) starts in the first thread that
         * needs it, and its threads take that thread's name: started from
         * here they are named after the process, not "reel-worker1" */
        uv_work_t *start_pool = reel_malloc(sizeof *start_pool);
        uv_queue_work(p0->loop, start_pool, pool_noop, pool_started);
        /* signals are the first worker's loop's (the daemon's handlers) */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (size_t i = 0; i < g->n && rc == REEL_OK; i++) {
            int e = pthread_create(&g->w[i].thread, NULL, worker_main, &g->w[i]);
            if (e != 0)
                rc = reel_err_set(err, REEL_ERROR, "cannot start worker %zu: %s", i + 1,
                                  strerror(e));
            else
                g->w[i].running = true;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != REEL_OK) {
        for (size_t i = 0; i < made; i++) {
            worker_t *w = &g->w[i];
            ask_stop(w, 0);
            if (w->running)
                pthread_join(w->thread, NULL);
            else
                run_worker_loop(w); /* on this thread: it was never started */
            free_one(w->p);
        }
        free(g->w);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return rc;
    }
    uv_async_init(p0->loop, &g->finished, on_other_finished);
    g->finished.data = g;
    pthread_mutex_lock(&g->mu);
    g->finished_open = true;
    pthread_mutex_unlock(&g->mu);
    p0->group = g;
    return REEL_OK;
}

static void on_group_closed(uv_handle_t *h) {
    struct proxy_group *g = h->data;
    void (*done)(void *) = g->done;
    g->done = NULL;
    if (done)
        done(g->done_ctx);
}

/* On the first worker's loop: once it and every other worker have shut
 * down, the caller's done runs (after `finished` has closed, so that the
 * caller may free everything then). */
static void group_check(struct proxy_group *g) {
    if (!g->first_done)
        return;
    pthread_mutex_lock(&g->mu);
    bool all = g->finished_open;
    for (size_t i = 0; i < g->n && all; i++)
        all = g->w[i].finished;
    if (all) {
        g->finished_open = false;
        uv_close((uv_handle_t *)&g->finished, on_group_closed);
    }
    pthread_mutex_unlock(&g->mu);
}

static void on_other_finished(uv_async_t *a) {
    group_check(a->data);
}

static void on_first_worker_done(void *ctx) {
    struct proxy_group *g = ctx;
    g->first_done = true;
    group_check(g);
}

static void configure_workers(reel_proxy_t *p0, const reel_proxy_settings_t *cfg) {
    struct proxy_group *g = p0->group;
    if (g->stopping)
        return; /* their wake handles may be closing */
    for (size_t i = 0; i < g->n; i++) {
        worker_t *w = &g->w[i];
        struct owned_settings *o = settings_dup(cfg);
        pthread_mutex_lock(&g->mu);
        settings_free(w->cfg); /* not taken yet: the newer replaces it */
        w->cfg = o;
        pthread_mutex_unlock(&g->mu);
        uv_async_send(&w->wake);
    }
}

static void shutdown_workers(reel_proxy_t *p0, uint64_t grace_ms) {
    struct proxy_group *g = p0->group;
    if (g->stopping)
        return;
    g->stopping = true;
    for (size_t i = 0; i < g->n; i++)
        ask_stop(&g->w[i], grace_ms);
}

/* After the shutdown's done: every thread has ended or is ending. */
static void free_workers(reel_proxy_t *p0) {
    struct proxy_group *g = p0->group;
    for (size_t i = 0; i < g->n; i++) {
        worker_t *w = &g->w[i];
        if (w->running)
            pthread_join(w->thread, NULL);
        free_one(w->p);
        settings_free(w->cfg);
    }
    free(g->w);
    pthread_mutex_destroy(&g->mu);
    free(g);
    p0->group = NULL;
}
