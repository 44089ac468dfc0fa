/* The proxy: sockets and timers on one libuv loop, glued to the sans-I/O
 * layers (http1, tls, sniff) and to the recorder.
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
#include "core/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include "base/mem.h"
#include "core/ca.h"
#include "core/capture.h"
#include "core/http1.h"
#include "core/sniff.h"
#include "core/tls.h"
#include "core/ws.h"

#define READ_SIZE 65536
#define HIGH_WATER (1u << 20)
#define LOW_WATER (256u << 10)
#define CLIENT_IN_MAX (4u << 20) /* pipelined bytes held while a response runs */
#define SNIFF_WAIT_MS 3000
#define LINGER_TOTAL_MS 30000 /* nginx's lingering_time */
#define LINGER_IDLE_MS 5000   /* nginx's lingering_timeout */

typedef struct conn conn_t;

typedef enum { P_CLIENT, P_UPSTREAM } peer_role;

typedef struct peer {
    conn_t *c;
    peer_role role;
    uv_tcp_t tcp;
    bool tcp_open, connected, closing, reading, eof, paused;
    reel_tls_t *tls;      /* NULL: plaintext */
    reel_buf_t in;        /* plaintext received, not yet consumed */
    reel_buf_t pend;      /* plaintext waiting for connect/handshake */
    reel_buf_t cipher;    /* scratch for TLS output */
    size_t wpending;      /* bytes handed to uv_write, not yet written */
    bool close_when_flushed;
    uint64_t progress;    /* when a byte was last read or written (upstream_timeout) */
    /* upstream only */
    char *host;           /* origin host (for reuse checks and SNI) */
    char *sni;            /* host to verify/send as SNI, if different */
    int port;
    bool https;
    char addr[64];        /* "ip:port" once connected */
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_next;
    uv_connect_t connect_req;
    char *error;          /* why the upstream failed, for the 502 */
    /* when each phase of setting it up ended (wall clock, µs; 0: not yet) */
    int64_t t_dns0, t_dns1, t_connected, t_ready;
    bool timings_used;    /* a flow has been given its dns/connect/ssl times */
    uint64_t id;          /* proxy-local number, for ServerConn records */
    int flows;            /* flows sent on it so far */
} peer_t;

typedef enum {
    C_HEAD,        /* waiting for a request head */
    C_REQ_BODY,    /* forwarding a request body */
    C_WAIT_RESP,   /* request done; response running */
    C_SNIFF,       /* after CONNECT 200: looking at the first bytes */
    C_RAW,         /* raw tunnel */
    C_DONE,        /* closing */
    C_LINGER,      /* error answered and sent: our side half-closed, the
                      client's bytes read and dropped until it closes (RFC
                      9112 9.6), so that a client still sending gets the
                      answer instead of a reset */
} conn_state;

struct conn {
    reel_proxy_t *p;
    conn_t *prev, *next;
    peer_t client;
    peer_t *up;
    conn_state state;
    reel_h1_t *reqp, *resp;
    uv_timer_t timer;     /* one-shot, armed for the earliest deadline */
    bool timer_open;
    uint64_t timer_due;   /* loop time the timer fires at, 0: not armed */
    bool linger;          /* linger once the error answer is flushed */
    uint64_t linger_start;
    char client_ip[48];   /* for the per-client connection count */
    bool counted;         /* counted in the proxy's per-client table */
    int handles;          /* open uv handles owned by this conn (client tcp, timer) */
    uint64_t last_activity;
    uint64_t head_started; /* when the first byte of the current head arrived, 0 if none */
    uint64_t resp_head_started; /* the same for the response head */
    char client_addr[64];
    /* Inside a CONNECT tunnel: the origin every request goes to. */
    bool in_tunnel, tunnel_tls;
    char *tunnel_host;
    int tunnel_port;
    char *tunnel_sni;
    uint64_t sniff_started;
    /* The current exchange. */
    reel_capture_flow_t *flow;
    bool resp_head_sent, req_done, resp_done;
    bool client_close;    /* close the client after this exchange */
    bool upgrade;         /* request asked for an Upgrade */
    bool ws_requested;    /* ... to WebSocket */
    /* After a 101 to WebSocket: a codec per direction (0: frames from the
     * client, 1: from the server); NULL otherwise. The flow stays c->flow:
     * the handshake is its request and response, the messages follow. */
    reel_ws_t *ws[2];
    reel_ws_deflate_t ws_deflate; /* what the server's 101 accepted */
    bool ws_ok;           /* the 101 switched to WebSocket with extensions reel reads */
    bool draining;        /* proxy shutting down: close after this exchange */
    int64_t req_end_us;
    int64_t head_us;       /* when the current request head was read (flow start) */
    int64_t resp_first_us; /* first byte of its response, 0: none yet */
    bool flow_upstream;    /* the current flow was sent to c->up */
    bool conn_recorded;    /* its ServerConn record is written */
    /* Raw tunnel flow (NULL for an ignored host: relayed, not recorded). */
    reel_capture_flow_t *tflow;
    bool tunnel_reply;     /* answer the CONNECT with 200 once the upstream is connected */
    /* The head of a request that may be sent again on a new upstream
     * connection if a reused one closes before answering (empty: may not). */
    reel_buf_t retry_head;
    bool retry_is_head, retried;
};

struct reel_proxy {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;
    int port;
    reel_recorder_t *rec;
    reel_ca_t *ca;
    reel_tls_ctx_t *server_ctx, *client_ctx;
    conn_t *conns;
    reel_proxy_stats_t stats;
    /* configuration */
    pcre2_code **ignore;
    size_t nignore;
    bool verify_upstream;
    char *proxyauth_b64; /* expected Basic credentials, NULL when not required */
    uint64_t idle_timeout_ms, head_timeout_ms, upstream_timeout_ms;
    size_t max_head_size;
    uint32_t max_client_conns; /* per client address; 0: no limit */
    uint64_t upstream_ids;     /* upstream connections opened so far */
    struct client_count **clients; /* open connections per client address */
    size_t nclient_buckets;
    /* shutdown */
    bool shutting_down;
    uv_timer_t grace;
    /* The proxy's own handles (listener, grace timer) being closed: done
     * is called only once their close callbacks have run, so that the
     * caller may free the proxy then (it used to be freed while libuv
     * still had the grace timer's close to run: a use-after-free). */
    int closing_handles;
    bool grace_closing;
    void (*done)(void *);
    void *done_ctx;
    uint8_t readbuf[READ_SIZE];
};

static void conn_process(conn_t *c);
static void conn_close(conn_t *c);
static void conn_close_flushed(conn_t *c);
static void conn_arm(conn_t *c);
static void client_release(conn_t *c);
static void shutdown_finish(reel_proxy_t *p);
static void peer_flush_pend(peer_t *pe);
static void upstream_ready(peer_t *up);
static void resp_process(conn_t *c);
static void maybe_finish(conn_t *c);
static void req_process(conn_t *c);

/* ---- small helpers ---- */

/* Wall clock in µs, the clock the recorder stamps records with. */
static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void touch(conn_t *c) {
    c->last_activity = uv_now(c->p->loop);
}

static void addr_string(const struct sockaddr *sa, char *out, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        uv_ip4_name(s4, ip, sizeof ip);
        port = ntohs(s4->sin_port);
        snprintf(out, n, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(s6, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
        snprintf(out, n, "[%s]:%d", ip, port);
    } else {
        snprintf(out, n, "?");
    }
}

/* Splits "host:port" / "[v6]:port" (authority form). */
static int split_authority(const char *a, size_t n, char **host, int *port, int def_port) {
    const char *end = a + n, *h = a, *he, *colon = NULL;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (close == NULL)
            return -1;
        h = a + 1;
        he = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return -1;
            colon = close + 1;
        }
    } else {
        colon = NULL;
        for (const char *q = a; q < end; q++)
            if (*q == ':')
                colon = q;
        he = colon ? colon : end;
    }
    if (he == h)
        return -1;
    for (const char *q = h; q < he; q++)
        if ((unsigned char)*q <= 0x20 || *q == '/' || *q == '@' || *q == '?' || *q == '#')
            return -1;
    int pt = def_port;
    if (colon) {
        if (colon + 1 == end || end - colon > 6)
            return -1;
        pt = 0;
        for (const char *q = colon + 1; q < end; q++) {
            if (*q < '0' || *q > '9')
                return -1;
            pt = pt * 10 + (*q - '0');
        }
        if (pt < 1 || pt > 65535)
            return -1;
    }
    *host = reel_strndup(h, (size_t)(he - h));
    *port = pt;
    return 0;
}

/* Absolute-form "http://host[:port]/path" -> parts; path defaults to "/". */
static int split_absolute(const char *t, size_t n, bool *https, char **host, int *port,
                          char **path) {
    size_t skip;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0) {
        *https = false;
        skip = 7;
    } else if (n >= 8 && strncasecmp(t, "https://", 8) == 0) {
        *https = true;
        skip = 8;
    } else {
        return -1;
    }
    const char *a = t + skip, *end = t + n, *slash = a;
    while (slash < end && *slash != '/' && *slash != '?')
        slash++;
    const char *at = memchr(a, '@', (size_t)(slash - a));
    if (at)
        return -1; /* userinfo in a proxy request: refuse rather than guess */
    if (split_authority(a, (size_t)(slash - a), host, port, *https ? 443 : 80) != 0)
        return -1;
    if (slash == end)
        *path = reel_strdup("/");
    else if (*slash == '?')
        *path = reel_asprintf("/%.*s", (int)(end - slash), slash);
    else
        *path = reel_strndup(slash, (size_t)(end - slash));
    return 0;
}

static bool ignored(reel_proxy_t *p, const char *host, int port) {
    if (p->nignore == 0)
        return false;
    char *hp = reel_asprintf("%s:%d", host, port);
    bool hit = false;
    pcre2_match_data *md = NULL;
    for (size_t i = 0; i < p->nignore && !hit; i++) {
        md = pcre2_match_data_create_from_pattern(p->ignore[i], NULL);
        hit = pcre2_match(p->ignore[i], (PCRE2_SPTR)hp, strlen(hp), 0, 0, md, NULL) >= 0;
        pcre2_match_data_free(md);
    }
    free(hp);
    return hit;
}

/* A request head in neutral terms (ver: room for "HTTP/x.y"). */
static void request_msg(const reel_h1_head_t *h, const char *scheme, const char *host, int port,
                        const char *path, char ver[16], reel_msg_head_t *m) {
    snprintf(ver, 16, "HTTP/%d.%d", h ? h->version_major : 1, h ? h->version_minor : 1);
    *m = (reel_msg_head_t){.method = h && h->method ? h->method : "",
                           .scheme = scheme,
                           .host = host ? host : "",
                           .port = (uint32_t)(port > 0 ? port : 0),
                           .path = path ? path : (h && h->target ? h->target : ""),
                           .version = ver,
                           .fields = h ? h->headers : NULL,
                           .nfields = h ? h->nheaders : 0};
}

/* ---- peers: sockets with an optional TLS layer ---- */

typedef struct {
    uv_write_t req;
    peer_t *pe;
    size_t len;
    char data[];
} wreq_t;

static void on_close_peer(uv_handle_t *h);

static void peer_maybe_resume_other(peer_t *pe);
static size_t peer_queued(const peer_t *pe);

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
            conn_close_flushed(pe->c);
        else if (!pe->closing && pe->tcp_open) {
            pe->closing = true;
            uv_close((uv_handle_t *)&pe->tcp, on_close_peer);
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
                if (peer_queued(pe) < LOW_WATER)
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

static void tls_flush(peer_t *pe) {
    if (pe->tls == NULL || reel_tls_cipher_pending(pe->tls) == 0)
        return;
    reel_buf_reset(&pe->cipher);
    reel_tls_take_cipher(pe->tls, &pe->cipher);
    raw_write(pe, pe->cipher.data, pe->cipher.len);
}

static bool peer_ready(const peer_t *pe) {
    if (!pe->connected)
        return false;
    return pe->tls == NULL || reel_tls_handshake_done(pe->tls);
}

/* Writes plaintext to a peer (queued until it is connected and its TLS
 * handshake is done). */
static void peer_write(peer_t *pe, const void *data, size_t len) {
    if (len == 0 || pe->closing)
        return;
    if (!peer_ready(pe) || pe->pend.len) {
        reel_buf_append(&pe->pend, data, len);
        if (peer_ready(pe))
            peer_flush_pend(pe);
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
        tls_flush(pe);
        p += n;
        len -= n;
    }
}

static void peer_flush_pend(peer_t *pe) {
    if (!peer_ready(pe) || pe->pend.len == 0)
        return;
    reel_buf_t b = pe->pend;
    reel_buf_init(&pe->pend, 0);
    peer_write(pe, b.data, b.len);
    reel_buf_free(&b);
}

static size_t peer_queued(const peer_t *pe) {
    return pe->wpending + pe->pend.len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    peer_t *pe = h->data;
    (void)suggested;
    buf->base = (char *)pe->c->p->readbuf;
    buf->len = READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void peer_read_start(peer_t *pe) {
    if (pe->reading || pe->closing || !pe->tcp_open || pe->eof)
        return;
    if (uv_read_start((uv_stream_t *)&pe->tcp, on_alloc, on_read) == 0)
        pe->reading = true;
}

static void peer_read_stop(peer_t *pe) {
    if (!pe->reading)
        return;
    uv_read_stop((uv_stream_t *)&pe->tcp);
    pe->reading = false;
}

static peer_t *other(peer_t *pe) {
    return pe->role == P_CLIENT ? pe->c->up : &pe->c->client;
}

/* Reading from `pe` is paused while the other side is full, or while its
 * input buffer already holds too much unconsumed data. */
static void peer_update_reading(peer_t *pe) {
    if (pe == NULL || pe->closing)
        return;
    peer_t *o = other(pe);
    bool full = (o && peer_queued(o) >= HIGH_WATER) || pe->in.len >= CLIENT_IN_MAX;
    if (full) {
        peer_read_stop(pe);
        pe->paused = true;
    } else {
        pe->paused = false;
        peer_read_start(pe);
    }
}

static void peer_maybe_resume_other(peer_t *pe) {
    peer_t *o = other(pe);
    if (o && o->paused)
        peer_update_reading(o);
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

static void conn_unref(conn_t *c);

static void on_close_peer(uv_handle_t *h) {
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
    conn_unref(c);
}

static void upstream_close(conn_t *c) {
    peer_t *up = c->up;
    if (up == NULL)
        return;
    c->up = NULL;
    if (up->closing)
        return;
    up->closing = true;
    if (up->tcp_open) {
        uv_close((uv_handle_t *)&up->tcp, on_close_peer);
    } else {
        /* still resolving: the getaddrinfo callback frees it */
    }
}

/* ---- ending flows ---- */

static int64_t span_us(int64_t from, int64_t to) {
    return from && to ? (to >= from ? to - from : 0) : -1;
}

/* The phases of the current exchange, HAR style (-1: did not happen or not
 * known). dns, connect and ssl go to the first flow on a new upstream
 * connection only; a flow on a reused connection has none. */
static void exchange_timings(conn_t *c, peer_t *up, int64_t end_us, reel_capture_timings_t *t) {
    *t = (reel_capture_timings_t){-1, -1, -1, -1, -1, -1, -1};
    int64_t ready = c->head_us;
    if (up && !up->timings_used && up->t_dns0) {
        up->timings_used = true;
        t->blocked_us = span_us(c->head_us, up->t_dns0);
        t->dns_us = span_us(up->t_dns0, up->t_dns1);
        t->connect_us = span_us(up->t_dns1, up->t_connected);
        if (up->https)
            t->ssl_us = span_us(up->t_connected, up->t_ready);
    }
    if (up && up->t_ready > ready)
        ready = up->t_ready;
    if (up && up->t_ready == 0)
        ready = 0; /* never got as far as sending */
    if (ready && c->req_end_us) {
        t->send_us = span_us(ready, c->req_end_us > ready ? c->req_end_us : ready);
        if (c->resp_first_us)
            t->wait_us = span_us(c->req_end_us > ready ? c->req_end_us : ready, c->resp_first_us);
    }
    if (c->resp_first_us)
        t->receive_us = span_us(c->resp_first_us, end_us);
}

/* Ends c->flow (error NULL: normally) with its timings, request end, first
 * response byte and the server address. */
static void finish_flow(conn_t *c, const char *error) {
    if (c->flow == NULL)
        return;
    peer_t *up = c->flow_upstream ? c->up : NULL;
    int64_t now = now_us();
    reel_capture_timings_t t;
    exchange_timings(c, up, now, &t);
    reel_capture_end_t e = {.error = error,
                         .timings = &t,
                         .time_us = now,
                         .request_end_us = c->req_end_us,
                         .response_start_us = c->resp_first_us,
                         .server_addr = up && up->connected ? up->addr : NULL};
    reel_capture_finish(c->flow, &e);
    c->flow = NULL;
    if (error)
        c->p->stats.errors++;
}

/* The ServerConn record of the current flow, once its upstream is ready
 * (connected, TLS done): address, SNI, ALPN, TLS version and cipher, and
 * whether the connection was reused or the request retried on it. */
static void record_server_conn(conn_t *c) {
    peer_t *up = c->up;
    if (c->flow == NULL || !c->flow_upstream || c->conn_recorded || up == NULL || !up->connected ||
        (up->tls && !reel_tls_handshake_done(up->tls)))
        return;
    c->conn_recorded = true;
    reel_capture_conn_t sc = {.conn_id = up->id,
                              .address = up->addr,
                              .sni = up->tls ? (up->sni ? up->sni : up->host) : NULL,
                              .alpn = up->tls ? reel_tls_alpn(up->tls) : NULL,
                              .tls_version = up->tls ? reel_tls_version(up->tls) : NULL,
                              .cipher = up->tls ? reel_tls_cipher(up->tls) : NULL,
                              .reused = up->flows > 0,
                              .retried = c->retried};
    up->flows++;
    reel_capture_server_conn(c->flow, &sc);
}

/* The same for the raw tunnel flow. */
static void finish_tflow(conn_t *c, const char *error) {
    if (c->tflow == NULL)
        return;
    peer_t *up = c->up;
    reel_capture_timings_t t = {-1, -1, -1, -1, -1, -1, -1};
    if (up && up->t_dns0) {
        t.dns_us = span_us(up->t_dns0, up->t_dns1);
        t.connect_us = span_us(up->t_dns1, up->t_connected);
    }
    reel_capture_end_t e = {.error = error,
                            .timings = &t,
                            .server_addr = up && up->connected ? up->addr : NULL};
    reel_capture_finish(c->tflow, &e);
    c->tflow = NULL;
}

/* ---- responses made by the proxy ---- */

static const char *status_text(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Answers the client with an error and closes it. The flow (the caller
 * starts one if the request never got that far) records the response reel
 * sent, marked as generated, and ends with the error. */
static void fail_exchange(conn_t *c, int status, const char *reason) {
    if (!c->resp_head_sent && status > 0 && !c->client.closing) {
        char *body = reel_asprintf("reel: %s\n", reason);
        char clen[24];
        snprintf(clen, sizeof clen, "%zu", strlen(body));
        reel_field_t hs[4] = {
            {"Content-Type", 12, "text/plain; charset=utf-8", 25},
            {"Content-Length", 14, clen, strlen(clen)},
            {"Connection", 10, "close", 5},
            {"Proxy-Authenticate", 18, "Basic realm=\"reel\"", 18},
        };
        size_t nh = status == 407 ? 4 : 3;
        reel_buf_t msg;
        reel_buf_init(&msg, 0);
        reel_buf_printf(&msg, "HTTP/1.1 %d %s\r\n", status, status_text(status));
        for (size_t i = 0; i < nh; i++)
            reel_buf_printf(&msg, "%s: %s\r\n", hs[i].name, hs[i].value);
        reel_buf_printf(&msg, "\r\n%s", body);
        peer_write(&c->client, msg.data, msg.len);
        reel_buf_free(&msg);
        c->resp_head_sent = true;
        if (c->flow) {
            int64_t now = now_us();
            if (c->resp_first_us == 0)
                c->resp_first_us = now;
            reel_msg_head_t rs = {.status = (uint32_t)status,
                                  .reason = status_text(status),
                                  .version = "HTTP/1.1",
                                  .fields = hs,
                                  .nfields = nh};
            reel_capture_response(c->flow, &rs, true, now);
            reel_capture_body(c->flow, true, body, strlen(body));
        }
        free(body);
    }
    finish_flow(c, reason);
    c->state = C_DONE;
    c->linger = c->resp_head_sent && status > 0;
    upstream_close(c);
    c->client.close_when_flushed = true;
    if (c->client.wpending == 0 && c->client.pend.len == 0)
        conn_close_flushed(c);
    else
        peer_read_stop(&c->client);
}

/* Records a flow for a request refused before it was forwarded. */
static void record_refused(conn_t *c, const reel_h1_head_t *h, const char *scheme,
                           const char *host, int port, const char *target) {
    c->flow = reel_capture_start(c->p->rec, REEL_CAPTURE_HTTP, c->client_addr, NULL);
    c->p->stats.flows++;
    c->head_us = now_us();
    c->req_end_us = c->resp_first_us = 0;
    c->flow_upstream = false;
    char ver[16];
    reel_msg_head_t m;
    request_msg(h, scheme, host, port, target, ver, &m);
    reel_capture_request(c->flow, &m);
}

/* Records a flow for a request that failed before its head was complete
 * (a 400 or 431 from the parser, a head timeout), with what the parser
 * had of it: method, target (maybe cut short) and the fields read so far. */
static void record_rejected(conn_t *c) {
    reel_h1_head_t ph;
    if (!reel_h1_partial_head(c->reqp, &ph)) {
        record_refused(c, NULL, c->in_tunnel && c->tunnel_tls ? "https" : "http",
                       c->in_tunnel ? c->tunnel_host : NULL, c->in_tunnel ? c->tunnel_port : 0,
                       "");
        return;
    }
    char *method = reel_strndup(ph.method ? ph.method : "", ph.method_len);
    char *target = reel_strndup(ph.target ? ph.target : "", ph.target_len);
    bool https = c->in_tunnel && c->tunnel_tls;
    char *host = c->in_tunnel && c->tunnel_host ? reel_strdup(c->tunnel_host) : NULL;
    char *path = NULL;
    int port = c->in_tunnel ? c->tunnel_port : 0;
    if (!c->in_tunnel) {
        char *h2 = NULL;
        bool s2 = false;
        int p2 = 0;
        if (split_absolute(target, strlen(target), &s2, &h2, &p2, &path) == 0) {
            https = s2;
            host = h2;
            port = p2;
        }
    }
    reel_h1_head_t h = ph;
    h.method = method;
    h.target = target;
    record_refused(c, &h, https ? "https" : "http", host, port, path ? path : target);
    free(method);
    free(target);
    free(host);
    free(path);
}

/* ---- upstream connections ---- */

static void on_connect(uv_connect_t *req, int status);

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
        addr_string(ai->ai_addr, up->addr, sizeof up->addr);
        if (uv_tcp_connect(&up->connect_req, &up->tcp, ai->ai_addr, on_connect) == 0)
            return;
        up->closing = true;
        uv_close((uv_handle_t *)&up->tcp, on_close_peer);
        return;
    }
}

static void upstream_failed(peer_t *up, const char *why) {
    conn_t *c = up->c;
    if (c->up != up)
        return;
    if (c->state == C_RAW) {
        /* A tunnel: a 502 if the CONNECT is still unanswered (an ignored
         * host is connected before the 200), else the client is cut. */
        finish_tflow(c, why);
        if (!c->resp_head_sent)
            fail_exchange(c, 502, why);
        else
            conn_close(c);
        return;
    }
    fail_exchange(c, 502, why);
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
            uv_close((uv_handle_t *)&up->tcp, on_close_peer);
            upstream_try_next(next);
            return;
        }
        char *why = reel_asprintf("cannot connect to %s:%d (%s): %s", up->host, up->port,
                                  up->addr, uv_strerror(status));
        upstream_failed(up, why);
        free(why);
        return;
    }
    up->connected = true;
    up->t_connected = now_us();
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
        reel_tls_client_opts_t o = {.host = name,
                                    .insecure = !c->p->verify_upstream,
                                    .session_key = origin};
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc trc = reel_tls_new_client(c->p->client_ctx, &o, &up->tls, &err);
        free(origin);
        if (trc != REEL_OK) {
            upstream_failed(up, reel_err_str(&err));
            return;
        }
        reel_tls_handshake(up->tls, &err);
        tls_flush(up);
    }
    peer_read_start(up);
    if (peer_ready(up))
        upstream_ready(up);
    conn_arm(c);
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
        conn_unref(c);
        return;
    }
    conn_unref(c); /* the resolver's reference */
    up->t_dns1 = now_us();
    if (status < 0) {
        char *why = reel_asprintf("cannot resolve %s: %s", up->host, uv_strerror(status));
        upstream_failed(up, why);
        free(why);
        return;
    }
    up->ai = res;
    up->ai_next = res;
    upstream_try_next(up);
    conn_arm(c);
    if (!up->tcp_open && c->up == up) {
        char *why = reel_asprintf("cannot connect to %s:%d: no usable address", up->host, up->port);
        upstream_failed(up, why);
        free(why);
    }
}

/* Makes sure c->up goes to (https, host, port), reusing it when it does.
 * Returns true when it reused the connection. */
static bool upstream_for(conn_t *c, bool https, const char *host, int port, const char *sni) {
    peer_t *up = c->up;
    if (up && !up->closing && !up->eof && up->https == https && up->port == port &&
        strcasecmp(up->host, host) == 0 &&
        ((sni == NULL && up->sni == NULL) || (sni && up->sni && strcasecmp(sni, up->sni) == 0)))
        return true;
    upstream_close(c);
    up = reel_calloc(1, sizeof *up);
    up->c = c;
    up->role = P_UPSTREAM;
    up->host = reel_strdup(host);
    up->sni = sni && strcasecmp(sni, host) != 0 ? reel_strdup(sni) : NULL;
    up->port = port;
    up->https = https;
    up->progress = uv_now(c->p->loop);
    up->t_dns0 = now_us();
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
        upstream_failed(up, why);
        free(why);
    }
    return false;
}

/* ---- recording helpers ---- */

static void start_flow(conn_t *c, const reel_h1_head_t *h, bool https, const char *host, int port,
                       const char *target) {
    c->flow = reel_capture_start(c->p->rec, REEL_CAPTURE_HTTP, c->client_addr,
                                 c->up && c->up->connected ? c->up->addr : NULL);
    c->p->stats.flows++;
    c->req_end_us = c->resp_first_us = 0;
    c->flow_upstream = true;
    c->conn_recorded = false;
    char ver[16];
    reel_msg_head_t m;
    request_msg(h, https ? "https" : "http", host, port, target, ver, &m);
    reel_capture_request(c->flow, &m);
}

/* ---- request side ---- */

static bool check_auth(conn_t *c, const reel_h1_head_t *h) {
    if (c->p->proxyauth_b64 == NULL)
        return true;
    const reel_h1_header_t *a = reel_h1_find_header(h->headers, h->nheaders, "proxy-authorization");
    if (a == NULL || a->value_len < 6 || strncasecmp(a->value, "basic ", 6) != 0)
        return false;
    const char *v = a->value + 6;
    while (*v == ' ')
        v++;
    return strcmp(v, c->p->proxyauth_b64) == 0;
}

/* Serializes h for the next hop with hop-by-hop fields removed (keeping
 * the framing fields, since the body is forwarded as received). */
static void write_head(reel_buf_t *out, const reel_h1_head_t *h, bool request, const char *target,
                       bool keep_upgrade, bool add_close) {
    size_t n = h->nheaders;
    reel_h1_header_t *hs = reel_malloc((n + 1) * sizeof *hs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const reel_h1_header_t *f = &h->headers[i];
        bool framing = (f->name_len == 17 && strncasecmp(f->name, "transfer-encoding", 17) == 0) ||
                       (f->name_len == 7 && strncasecmp(f->name, "trailer", 7) == 0);
        bool upgrade = keep_upgrade &&
                       ((f->name_len == 7 && strncasecmp(f->name, "upgrade", 7) == 0) ||
                        (f->name_len == 10 && strncasecmp(f->name, "connection", 10) == 0));
        if (!framing && !upgrade &&
            reel_h1_is_hop_by_hop_in(f->name, f->name_len, h->headers, h->nheaders))
            continue;
        hs[k++] = *f;
    }
    if (add_close)
        hs[k++] = (reel_h1_header_t){"Connection", 10, "close", 5};
    reel_h1_head_t o = *h;
    o.headers = hs;
    o.nheaders = k;
    if (request) {
        o.target = target;
        o.target_len = strlen(target);
        reel_h1_write_request_head(out, &o);
    } else {
        reel_h1_write_response_head(out, &o);
    }
    free(hs);
}

static void begin_raw_tunnel(conn_t *c, const char *host, int port, bool reply_200, bool record);

/* Whether a comma-separated field (any of its lines) holds token. */
static bool has_token(const reel_h1_head_t *h, const char *field, const char *token) {
    size_t tl = strlen(token);
    for (size_t i = 0; i < h->nheaders; i++) {
        const reel_h1_header_t *f = &h->headers[i];
        if (strlen(field) != f->name_len || strncasecmp(f->name, field, f->name_len) != 0)
            continue;
        const char *v = f->value, *end = f->value + f->value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *e = v;
            while (e < end && *e != ',')
                e++;
            const char *t = e;
            while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
                return true;
            v = e;
        }
    }
    return false;
}

/* Idempotent methods (RFC 9110 9.2.2). */
static bool retryable_method(const char *m) {
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0)
            return true;
    return false;
}

static void handle_connect(conn_t *c, const reel_h1_head_t *h) {
    char *host = NULL;
    int port = 0;
    if (split_authority(h->target, h->target_len, &host, &port, -1) != 0 || port < 0) {
        record_refused(c, h, "http", NULL, 0, NULL);
        fail_exchange(c, 400, "CONNECT target must be host:port");
        free(host);
        return;
    }
    if (!check_auth(c, h)) {
        record_refused(c, h, "https", host, port, "");
        fail_exchange(c, 407, "proxy authentication required");
        free(host);
        return;
    }
    free(c->tunnel_host);
    c->tunnel_host = host;
    c->tunnel_port = port;
    c->in_tunnel = true;
    if (ignored(c->p, host, port)) {
        /* relayed untouched and not recorded (counted in the stats) */
        c->p->stats.ignored++;
        begin_raw_tunnel(c, host, port, true, false);
        return;
    }
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    peer_write(&c->client, ok, sizeof ok - 1);
    c->resp_head_sent = true; /* the CONNECT's answer */
    c->state = C_SNIFF;
    c->sniff_started = uv_now(c->p->loop);
    /* Bytes after the CONNECT head belong to the tunnel. */
    reel_h1_free(c->reqp);
    c->reqp = reel_h1_new(REEL_H1_REQUEST, NULL);
}

static void request_head(conn_t *c, const reel_h1_head_t *h) {
    c->head_us = now_us();
    c->head_started = c->resp_head_started = 0;
    c->resp_head_sent = c->req_done = c->resp_done = false;
    c->client_close = !h->keep_alive;
    c->upgrade = h->upgrade && !h->is_connect;
    c->ws_requested = c->upgrade && has_token(h, "upgrade", "websocket");
    c->ws_ok = false;
    if (h->is_connect) {
        if (c->in_tunnel) {
            record_refused(c, h, "https", c->tunnel_host, c->tunnel_port, NULL);
            fail_exchange(c, 400, "CONNECT inside a CONNECT tunnel");
            return;
        }
        handle_connect(c, h);
        return;
    }
    bool https;
    char *host = NULL, *path = NULL;
    int port;
    if (h->target_form == REEL_H1_TARGET_ABSOLUTE) {
        if (split_absolute(h->target, h->target_len, &https, &host, &port, &path) != 0) {
            record_refused(c, h, "http", NULL, 0, NULL);
            fail_exchange(c, 400, "cannot parse the absolute URL of the request");
            return;
        }
    } else if (c->in_tunnel && h->target_form == REEL_H1_TARGET_ORIGIN) {
        https = c->tunnel_tls;
        host = reel_strdup(c->tunnel_host);
        port = c->tunnel_port;
        path = reel_strndup(h->target, h->target_len);
    } else {
        record_refused(c, h, "http", NULL, 0, NULL);
        fail_exchange(c, 400,
                      "this is a proxy: the request target must be an absolute URL "
                      "(http://host/path) or the request must come through CONNECT");
        return;
    }
    if (!c->in_tunnel && !check_auth(c, h)) {
        record_refused(c, h, https ? "https" : "http", host, port, path);
        fail_exchange(c, 407, "proxy authentication required");
        free(host);
        free(path);
        return;
    }
    /* An absolute "https://" URL sent in the clear goes to the origin
     * over TLS, like any https request. */
    bool reused = upstream_for(c, https, host, port, c->in_tunnel ? c->tunnel_sni : NULL);
    c->retried = false;
    start_flow(c, h, https, host, port, path);
    record_server_conn(c); /* now if reused, else once connected */
    reel_h1_expect_response(c->resp, h->is_head, false);
    reel_buf_t out;
    reel_buf_init(&out, 0);
    write_head(&out, h, true, path, c->upgrade, false);
    peer_write(c->up, out.data, out.len);
    /* A reused connection may be closed by the origin just as the request
     * goes out (an idle keep-alive timeout, nginx freeing connections):
     * then a request without a body and with an idempotent method is sent
     * once more on a new connection, as RFC 9112 9.3.1 allows. */
    reel_buf_reset(&c->retry_head);
    c->retry_is_head = h->is_head;
    if (reused && !c->upgrade && retryable_method(h->method) &&
        (h->framing == REEL_H1_BODY_NONE ||
         (h->framing == REEL_H1_BODY_LENGTH && h->content_length == 0)))
        reel_buf_append(&c->retry_head, out.data, out.len);
    reel_buf_free(&out);
    free(host);
    free(path);
    c->state = C_REQ_BODY;
}

/* Feeds the request parser from the client's input. */
static void req_process(conn_t *c) {
    peer_t *cl = &c->client;
    while (c->state == C_HEAD || c->state == C_REQ_BODY) {
        if (c->state == C_HEAD && c->draining && cl->in.len == 0) {
            conn_close(c);
            return;
        }
        size_t consumed = 0;
        reel_h1_event_t ev;
        memset(&ev, 0, sizeof ev);
        reel_rc rc = reel_h1_feed(c->reqp, cl->in.data, cl->in.len, &consumed, &ev);
        if (rc == REEL_NEED_MORE) {
            if (c->state == C_HEAD && cl->in.len && c->head_started == 0)
                c->head_started = uv_now(c->p->loop);
            /* Body framing the parser took without an event (a chunk-size
             * line or CRLF cut by a read) is passed on like the data; head
             * bytes are not, the head is re-serialized. */
            if (c->state == C_REQ_BODY && c->up)
                peer_write(c->up, cl->in.data, consumed);
            reel_buf_consume(&cl->in, consumed);
            break;
        }
        if (rc != REEL_OK) {
            if (c->flow == NULL)
                record_rejected(c);
            fail_exchange(c, ev.error_status ? ev.error_status : 400,
                          ev.error_reason ? ev.error_reason : "malformed request");
            return;
        }
        switch (ev.type) {
        case REEL_H1_EV_HEAD:
            /* The head's strings live in the parser, not in cl->in: drop
             * the head bytes first, so that a tunnel started by this head
             * (CONNECT) only ever sees what follows it. */
            reel_buf_consume(&cl->in, consumed);
            request_head(c, &ev.head);
            if (c->state == C_SNIFF || c->state == C_RAW || c->state == C_DONE)
                return;
            break;
        case REEL_H1_EV_BODY:
            if (c->flow)
                reel_capture_body(c->flow, false, ev.data, ev.len);
            if (c->up)
                peer_write(c->up, cl->in.data, consumed);
            reel_buf_consume(&cl->in, consumed);
            break;
        case REEL_H1_EV_END:
            if (c->up)
                peer_write(c->up, cl->in.data, consumed);
            reel_buf_consume(&cl->in, consumed);
            c->req_done = true;
            c->req_end_us = now_us();
            if (c->up)
                c->up->progress = uv_now(c->p->loop); /* the response is due from now */
            if (!c->upgrade)
                c->state = C_WAIT_RESP;
            if (c->resp_done) {
                /* the response finished first (an early answer) */
                maybe_finish(c);
                return;
            }
            break;
        case REEL_H1_EV_UPGRADE:
            reel_buf_consume(&cl->in, consumed);
            c->state = C_WAIT_RESP; /* the response decides */
            return;
        case REEL_H1_EV_TUNNEL:
        case REEL_H1_EV_NONE:
            reel_buf_consume(&cl->in, consumed);
            break;
        }
        if (c->up)
            peer_update_reading(cl);
    }
}

/* ---- response side ---- */

static void exchange_done(conn_t *c, bool upstream_reusable) {
    if (!upstream_reusable)
        upstream_close(c);
    if (c->client_close || c->draining) {
        c->state = C_DONE;
        c->client.close_when_flushed = true;
        if (c->client.wpending == 0 && c->client.pend.len == 0)
            conn_close(c);
        return;
    }
    c->state = C_HEAD;
    c->head_started = 0;
    /* nothing of the next exchange has been answered: a bad next request
     * must still get its 400 (or 408) */
    c->resp_head_sent = false;
    touch(c);
}

/* Ends the exchange once both the request and the response are complete:
 * an origin may answer before it has read the whole request body (nginx
 * does for a `return`), and the rest of the body still has to be passed on
 * (and recorded) before the connection can carry the next request. */
static void maybe_finish(conn_t *c) {
    if (!c->req_done || !c->resp_done)
        return;
    finish_flow(c, NULL);
    peer_t *up = c->up;
    exchange_done(c, up && !up->eof && up->in.len == 0);
    if (c->state == C_HEAD && c->client.in.len)
        req_process(c);
}

static void resp_head(conn_t *c, const reel_h1_head_t *h) {
    c->resp_head_started = 0;
    if (h->interim) {
        reel_buf_t out;
        reel_buf_init(&out, 0);
        write_head(&out, h, false, NULL, false, false);
        peer_write(&c->client, out.data, out.len);
        reel_buf_free(&out);
        return;
    }
    char ver[16];
    snprintf(ver, sizeof ver, "HTTP/%d.%d", h->version_major, h->version_minor);
    reel_msg_head_t rs = {.status = (uint32_t)h->status,
                          .reason = h->reason ? h->reason : "",
                          .version = ver,
                          .fields = h->headers,
                          .nfields = h->nheaders};
    if (c->flow)
        reel_capture_response(c->flow, &rs, false, 0);
    if (h->status == 101 && c->ws_requested && has_token(h, "upgrade", "websocket")) {
        /* Sec-WebSocket-Extensions lines joined as one list */
        reel_buf_t ext;
        reel_buf_init(&ext, 0);
        for (size_t i = 0; i < h->nheaders; i++)
            if (h->headers[i].name_len == 24 &&
                strncasecmp(h->headers[i].name, "sec-websocket-extensions", 24) == 0) {
                if (ext.len)
                    reel_buf_append(&ext, ", ", 2);
                reel_buf_append(&ext, h->headers[i].value, h->headers[i].value_len);
            }
        c->ws_ok = reel_ws_parse_extensions((const char *)ext.data, ext.len, &c->ws_deflate) ==
                   REEL_OK;
        reel_buf_free(&ext);
    }
    bool eof_framed = h->framing == REEL_H1_BODY_EOF;
    if (eof_framed || !h->keep_alive)
        c->client_close = true;
    reel_buf_t out;
    reel_buf_init(&out, 0);
    write_head(&out, h, false, NULL, c->upgrade && h->status == 101,
               c->client_close && !(c->upgrade && h->status == 101));
    peer_write(&c->client, out.data, out.len);
    reel_buf_free(&out);
    c->resp_head_sent = true;
}

static void start_upgraded_tunnel(conn_t *c);

/* The reused upstream connection closed before a byte of the response
 * came: the same request on a new connection, once. */
static void retry_on_new_upstream(conn_t *c) {
    peer_t *old = c->up;
    bool https = old->https;
    int port = old->port;
    char *host = reel_strdup(old->host);
    char *sni = old->sni ? reel_strdup(old->sni) : NULL;
    upstream_close(c);
    c->retried = true;
    c->conn_recorded = false; /* the new connection gets a record of its own */
    upstream_for(c, https, host, port, sni);
    reel_h1_expect_response(c->resp, c->retry_is_head, false);
    peer_write(c->up, c->retry_head.data, c->retry_head.len);
    reel_buf_reset(&c->retry_head);
    free(host);
    free(sni);
}

static void resp_process(conn_t *c) {
    peer_t *up = c->up;
    if (up && up->in.len && c->flow && c->resp_first_us == 0)
        c->resp_first_us = now_us();
    while (up && c->up == up && c->state != C_DONE && c->state != C_RAW) {
        size_t consumed = 0;
        reel_h1_event_t ev;
        memset(&ev, 0, sizeof ev);
        reel_rc rc;
        if (up->eof && up->in.len == 0)
            rc = reel_h1_feed_eof(c->resp, &ev);
        else
            rc = reel_h1_feed(c->resp, up->in.data, up->in.len, &consumed, &ev);
        if (rc == REEL_NEED_MORE) {
            if (c->resp_head_sent && !c->resp_done)
                peer_write(&c->client, up->in.data, consumed); /* framing, as above */
            else if (!c->resp_head_sent && consumed && c->resp_head_started == 0)
                c->resp_head_started = uv_now(c->p->loop);
            reel_buf_consume(&up->in, consumed);
            break;
        }
        if (rc != REEL_OK) {
            char *why = reel_asprintf("invalid response from %s:%d: %s", up->host, up->port,
                                      ev.error_reason ? ev.error_reason : "malformed");
            if (c->resp_head_sent) {
                finish_flow(c, why);
                free(why);
                conn_close(c);
                return;
            }
            fail_exchange(c, 502, why);
            free(why);
            return;
        }
        if (ev.type == REEL_H1_EV_NONE) {
            /* clean EOF between responses */
            if (up->eof) {
                if (c->flow && !c->resp_head_sent && c->retry_head.len && !c->retried) {
                    retry_on_new_upstream(c);
                    return;
                }
                if (c->flow && !c->resp_head_sent) {
                    fail_exchange(c, 502, "upstream closed the connection without responding");
                    return;
                }
                upstream_close(c);
            }
            break;
        }
        switch (ev.type) {
        case REEL_H1_EV_HEAD:
            resp_head(c, &ev.head);
            reel_buf_consume(&up->in, consumed);
            break;
        case REEL_H1_EV_BODY:
            if (c->flow)
                reel_capture_body(c->flow, true, ev.data, ev.len);
            peer_write(&c->client, up->in.data, consumed);
            reel_buf_consume(&up->in, consumed);
            break;
        case REEL_H1_EV_END:
            peer_write(&c->client, up->in.data, consumed);
            reel_buf_consume(&up->in, consumed);
            c->resp_done = true;
            if (c->upgrade && c->req_done)
                break; /* an UPGRADE event follows if it switched */
            maybe_finish(c);
            return;
        case REEL_H1_EV_UPGRADE:
            reel_buf_consume(&up->in, consumed);
            start_upgraded_tunnel(c);
            return;
        default:
            reel_buf_consume(&up->in, consumed);
            break;
        }
        peer_update_reading(up);
    }
    if (c->upgrade && c->resp_done && c->state == C_WAIT_RESP) {
        /* Upgrade refused (the origin answered without 101): the exchange
         * and its flow are complete, and the connection speaks HTTP again. */
        c->upgrade = false;
        reel_h1_upgrade_refused(c->reqp);
        maybe_finish(c);
    }
}

/* ---- raw tunnels ---- */

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    free(req);
}

static void ws_free(conn_t *c) {
    for (int d = 0; d < 2; d++) {
        reel_ws_free(c->ws[d]);
        c->ws[d] = NULL;
    }
}

/* A peer broke the WebSocket protocol (dir 0: the client, 1: the server):
 * both peers get a close frame with the code where their side of the
 * stream is between frames, the flow ends with the error, both
 * connections close once the frames are out. */
static void ws_fail(conn_t *c, int dir, const reel_ws_event_t *ev) {
    peer_t *offender = dir ? c->up : &c->client, *other = dir ? &c->client : c->up;
    char *why = reel_asprintf("%s sent an invalid WebSocket frame: %s (closed with %u)",
                              dir ? "the server" : "the client", ev->error_reason,
                              (unsigned)ev->error_code);
    reel_buf_t frame;
    reel_buf_init(&frame, 0);
    /* frames reel sends to a server are masked, as a client's must be */
    uint8_t key[4] = {0x5a, 0x17, 0xc3, 0x8e};
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* keep the fixed key: masking guards caches, not secrets */
    }
    /* to the offender, on the stream the other codec reads */
    if (!reel_ws_mid_frame(c->ws[1 - dir]) &&
        reel_ws_write_close(&frame, ev->error_code, ev->error_reason, dir == 1 ? key : NULL) ==
            REEL_OK)
        peer_write(offender, frame.data, frame.len);
    reel_buf_reset(&frame);
    if (other && !reel_ws_mid_frame(c->ws[dir]) &&
        reel_ws_write_close(&frame, ev->error_code, "reel: the other side broke the protocol",
                            dir == 0 ? key : NULL) == REEL_OK)
        peer_write(other, frame.data, frame.len);
    reel_buf_free(&frame);
    finish_flow(c, why);
    free(why);
    ws_free(c);
    c->state = C_DONE;
    if (c->up)
        c->up->close_when_flushed = true;
    c->client.close_when_flushed = true;
    peer_read_stop(&c->client);
    if (c->up)
        peer_read_stop(c->up);
    if (c->client.wpending == 0 && c->client.pend.len == 0)
        conn_close(c);
}

/* Moves what one side sent to the other (dir 0: client to server) while
 * the other can take it, recording it: WebSocket messages through the
 * codec (the bytes forwarded are exactly the bytes received), raw chunks
 * as TCP messages. Returns false when a protocol error closed the
 * connection. */
static bool relay_dir(conn_t *c, int dir) {
    peer_t *src = dir ? c->up : &c->client, *dst = dir ? &c->client : c->up;
    while (src->in.len && peer_queued(dst) < HIGH_WATER) {
        if (c->ws[dir] == NULL) {
            if (c->tflow)
                reel_capture_message(c->tflow, dir == 0, 0, src->in.data, src->in.len,
                                     src->in.len, false, false, 0);
            peer_write(dst, src->in.data, src->in.len);
            reel_buf_reset(&src->in);
            break;
        }
        size_t consumed = 0;
        reel_ws_event_t ev;
        reel_rc rc = reel_ws_feed(c->ws[dir], src->in.data, src->in.len, &consumed, &ev);
        peer_write(dst, src->in.data, consumed);
        reel_buf_consume(&src->in, consumed);
        if (rc == REEL_OK) {
            if (c->flow && ev.type != REEL_WS_EV_NONE)
                reel_capture_message(c->flow, dir == 0, (uint32_t)ev.opcode, ev.data, ev.len,
                                     ev.length, ev.truncated, ev.compressed,
                                     ev.opcode == REEL_WS_OP_CLOSE ? ev.close_code : 0);
            continue;
        }
        if (rc == REEL_NEED_MORE)
            break;
        ws_fail(c, dir, &ev);
        return false;
    }
    return true;
}

/* Both sides closed: the tunnel's flow (or the WebSocket flow) ends; a
 * WebSocket cut in the middle of a frame or message ends with that error. */
static void tunnel_end(conn_t *c) {
    if (c->ws[0]) {
        const char *why = NULL;
        for (int d = 0; d < 2 && !why; d++) {
            reel_ws_event_t ev;
            if (reel_ws_feed_eof(c->ws[d], &ev) != REEL_OK)
                why = d ? "the server closed the connection in the middle of a WebSocket frame"
                        : "the client closed the connection in the middle of a WebSocket frame";
        }
        finish_flow(c, why);
        ws_free(c);
    } else {
        finish_tflow(c, NULL);
    }
}

static void tunnel_forward(conn_t *c) {
    peer_t *cl = &c->client, *up = c->up;
    if (up == NULL)
        return;
    if (!relay_dir(c, 0) || !relay_dir(c, 1))
        return;
    peer_update_reading(cl);
    peer_update_reading(up);
    if ((cl->eof && up->eof) || (cl->eof && up->in.len == 0 && !up->tcp_open)) {
        tunnel_end(c);
        c->client.close_when_flushed = true;
        upstream_close(c);
        if (cl->wpending == 0)
            conn_close(c);
        return;
    }
    /* Half-close: pass the EOF on once the other side's data is out. */
    if (cl->eof && up->connected && up->tls == NULL && up->in.len == 0 && cl->in.len == 0 &&
        up->tcp_open && !up->closing) {
        uv_shutdown_t *sr = reel_malloc(sizeof *sr);
        if (uv_shutdown(sr, (uv_stream_t *)&up->tcp, on_shutdown) != 0)
            free(sr);
    }
    if (up->eof && cl->tcp_open && !cl->closing && up->in.len == 0 && cl->tls == NULL) {
        tunnel_end(c);
        c->client.close_when_flushed = true;
        if (cl->wpending == 0)
            conn_close(c);
    }
}

static void tunnel_flow(conn_t *c, const char *host, int port) {
    c->tflow = reel_capture_start(c->p->rec, REEL_CAPTURE_TUNNEL, c->client_addr, NULL);
    c->p->stats.flows++;
    reel_msg_head_t rq = {.method = "CONNECT", .scheme = "tcp", .host = host,
                          .port = (uint32_t)port, .path = "", .version = "HTTP/1.1"};
    reel_capture_request(c->tflow, &rq);
}

/* A tunnel to host:port relayed byte for byte, recorded as one flow if
 * `record`. With reply_200 the CONNECT is answered once the upstream is
 * connected (a 502 if it cannot be). */
static void begin_raw_tunnel(conn_t *c, const char *host, int port, bool reply_200, bool record) {
    c->state = C_RAW;
    if (record)
        tunnel_flow(c, host, port);
    c->tunnel_reply = reply_200;
    upstream_for(c, false, host, port, NULL);
    if (c->state == C_RAW)
        tunnel_forward(c);
}

static void start_upgraded_tunnel(conn_t *c) {
    c->state = C_RAW;
    if (c->ws_ok && c->flow) {
        /* WebSocket: the flow goes on, its messages recorded as they pass
         * (each kept up to body_limit). */
        size_t limit = reel_capture_body_limit(c->flow);
        reel_ws_opts_t o = {.max_message = limit, .deflate = c->ws_deflate};
        c->ws[0] = reel_ws_new(REEL_WS_FROM_CLIENT, &o);
        c->ws[1] = reel_ws_new(REEL_WS_FROM_SERVER, &o);
    } else {
        /* Another protocol (or WebSocket extensions reel cannot read): the
         * HTTP flow (request + 101) is complete, the bytes that follow are
         * a tunnel flow of TCP messages. */
        finish_flow(c, NULL);
        tunnel_flow(c, c->up ? c->up->host : "", c->up ? c->up->port : 0);
    }
    /* Bytes the parsers hold beyond the head are still in the buffers. */
    tunnel_forward(c);
}

/* After CONNECT 200: decide what the client speaks. */
static void sniff_process(conn_t *c) {
    peer_t *cl = &c->client;
    reel_sniff_kind k = reel_sniff(cl->in.data, cl->in.len);
    if (k == REEL_SNIFF_NEED_MORE)
        return;
    if (k == REEL_SNIFF_TLS) {
        reel_clienthello_t ch;
        reel_rc rc = reel_clienthello_parse(cl->in.data, cl->in.len, &ch);
        if (rc == REEL_NEED_MORE)
            return;
        const char *sni = rc == REEL_OK && ch.sni[0] ? ch.sni : NULL;
        if (sni && ignored(c->p, sni, c->tunnel_port)) {
            c->p->stats.ignored++;
            begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, false);
            return;
        }
        if (c->p->server_ctx == NULL) {
            begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
            return;
        }
        free(c->tunnel_sni);
        c->tunnel_sni = sni ? reel_strdup(sni) : NULL;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_tls_new_server(c->p->server_ctx, c->tunnel_host, &cl->tls, &err) != REEL_OK) {
            begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
            return;
        }
        c->tunnel_tls = true;
        c->state = C_HEAD;
        c->resp_head_sent = false; /* requests inside the tunnel get their own answers */
        /* The buffered ClientHello is cipher text for the new TLS layer. */
        reel_buf_t hello = cl->in;
        reel_buf_init(&cl->in, 0);
        size_t off = 0;
        while (off < hello.len) {
            size_t n = 0;
            reel_tls_feed_cipher(cl->tls, hello.data + off, hello.len - off, &n);
            if (n == 0)
                break;
            off += n;
        }
        reel_buf_free(&hello);
        conn_process(c);
        return;
    }
    if (k == REEL_SNIFF_HTTP) {
        c->tunnel_tls = false;
        c->state = C_HEAD;
        c->resp_head_sent = false;
        req_process(c);
        return;
    }
    begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
}

/* ---- reading ---- */

/* Runs the TLS layer of a peer: handshake, decrypt into pe->in. Returns
 * false if the peer failed. */
static bool tls_pump(peer_t *pe) {
    reel_err_t err;
    reel_err_clear(&err);
    if (!reel_tls_handshake_done(pe->tls)) {
        reel_rc rc = reel_tls_handshake(pe->tls, &err);
        tls_flush(pe);
        if (rc == REEL_NEED_MORE)
            return true;
        if (rc != REEL_OK) {
            conn_t *c = pe->c;
            if (pe->role == P_UPSTREAM) {
                upstream_failed(pe, reel_err_str(&err));
            } else {
                /* The client refused our certificate (or spoke garbage):
                 * record it, since it usually means the CA is not trusted. */
                char *why = reel_asprintf("TLS handshake with the client failed (is reel's CA "
                                          "trusted?): %s",
                                          reel_err_str(&err));
                tunnel_flow(c, c->tunnel_host ? c->tunnel_host : "", c->tunnel_port);
                finish_tflow(c, why);
                free(why);
                c->resp_head_sent = true;
                fail_exchange(c, 0, "client TLS handshake failed");
            }
            return false;
        }
        if (pe->role == P_UPSTREAM) {
            pe->t_ready = now_us();
            upstream_ready(pe);
        } else {
            peer_flush_pend(pe);
        }
    }
    for (;;) {
        uint8_t buf[16384];
        size_t n = 0;
        reel_rc rc = reel_tls_read_plain(pe->tls, buf, sizeof buf, &n, &err);
        tls_flush(pe);
        if (rc == REEL_NEED_MORE)
            break;
        if (rc != REEL_OK) {
            pe->eof = true;
            break;
        }
        if (n == 0) {
            pe->eof = true;
            break;
        }
        reel_buf_append(&pe->in, buf, n);
    }
    return true;
}

static void upstream_ready(peer_t *up) {
    peer_flush_pend(up);
    conn_t *c = up->c;
    record_server_conn(c);
    if (c->state == C_RAW && c->tunnel_reply) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        c->tunnel_reply = false;
        c->resp_head_sent = true;
        peer_write(&c->client, ok, sizeof ok - 1);
    }
    if (c->state == C_RAW)
        tunnel_forward(c);
}

static void conn_process(conn_t *c) {
    peer_t *cl = &c->client;
    if (cl->tls && !tls_pump(cl))
        return;
    switch (c->state) {
    case C_SNIFF:
        sniff_process(c);
        break;
    case C_HEAD:
    case C_REQ_BODY:
        req_process(c);
        break;
    case C_RAW:
        tunnel_forward(c);
        break;
    default:
        break;
    }
    if (c->state == C_DONE || cl->closing)
        return;
    if (cl->eof && cl->in.len == 0) {
        if (c->state == C_HEAD && c->flow == NULL) {
            conn_close(c);
        } else if (c->state == C_REQ_BODY) {
            finish_flow(c, "client closed the connection during the request");
            conn_close(c);
        } else if (c->state == C_SNIFF) {
            conn_close(c);
        } else if (c->state == C_WAIT_RESP) {
            /* Let the response finish (the client may have half-closed). */
            c->client_close = true;
        }
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    peer_t *pe = s->data;
    conn_t *c = pe->c;
    if (nread == 0)
        return;
    touch(c);
    pe->progress = c->last_activity;
    if (c->state == C_LINGER) {
        /* dropped unread; the client's close ends the connection */
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (nread < 0) {
        peer_read_stop(pe);
        if (nread != UV_EOF && pe->role == P_CLIENT && c->flow) {
            char *why = reel_asprintf("client connection error: %s", uv_strerror((int)nread));
            finish_flow(c, why);
            free(why);
        }
        pe->eof = true;
        if (pe->tls)
            reel_tls_feed_eof(pe->tls);
    } else if (pe->tls) {
        size_t off = 0;
        while (off < (size_t)nread) {
            size_t n = 0;
            reel_tls_feed_cipher(pe->tls, (const uint8_t *)buf->base + off, (size_t)nread - off, &n);
            off += n;
            if (!tls_pump(pe))
                return;
            if (n == 0)
                break; /* cannot happen: tls_pump drained the TLS input */
        }
    } else {
        reel_buf_append(&pe->in, buf->base, (size_t)nread);
    }
    if (pe->tls && nread < 0 && !tls_pump(pe))
        return;
    if (pe->role == P_CLIENT) {
        conn_process(c);
    } else if (c->state == C_RAW) {
        tunnel_forward(c);
    } else {
        resp_process(c);
    }
    if (!pe->closing && c->up == pe)
        peer_update_reading(pe);
    else if (pe->role == P_CLIENT && !pe->closing && c->state != C_DONE)
        peer_update_reading(pe);
    conn_arm(c);
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
    ws_free(c);
    reel_h1_free(c->reqp);
    reel_h1_free(c->resp);
    reel_buf_free(&c->retry_head);
    free(c->tunnel_host);
    free(c->tunnel_sni);
    free(c);
    p->stats.active_connections--;
    if (p->shutting_down && p->conns == NULL)
        shutdown_finish(p);
}

static void conn_unref(conn_t *c) {
    if (--c->handles == 0)
        conn_free(c);
}

static void on_close_timer(uv_handle_t *h) {
    conn_unref(h->data);
}

/* The client's answer is out: close, or, after an error answer, half-close
 * and drop what the client still sends until it closes or goes quiet
 * (LINGER_IDLE_MS, at most LINGER_TOTAL_MS). Closing at once with its
 * bytes unread would make the kernel send a reset, which can destroy the
 * answer before the client reads it. */
static void conn_close_flushed(conn_t *c) {
    peer_t *cl = &c->client;
    if (!c->linger || cl->closing || !cl->tcp_open || cl->eof || c->p->shutting_down) {
        conn_close(c);
        return;
    }
    c->linger = false;
    uv_shutdown_t *sr = reel_malloc(sizeof *sr);
    if (uv_shutdown(sr, (uv_stream_t *)&cl->tcp, on_shutdown) != 0) {
        free(sr);
        conn_close(c);
        return;
    }
    c->state = C_LINGER;
    c->linger_start = uv_now(c->p->loop);
    touch(c);
    reel_buf_reset(&cl->in);
    cl->paused = false;
    peer_read_start(cl);
    conn_arm(c);
}

static void conn_close(conn_t *c) {
    if (c->client.closing)
        return;
    finish_flow(c, c->p->shutting_down ? "proxy shut down before the flow ended"
                                       : "connection closed before the flow ended");
    finish_tflow(c, NULL);
    c->state = C_DONE;
    client_release(c); /* no longer counts against its client's limit */
    upstream_close(c);
    c->client.closing = true;
    uv_close((uv_handle_t *)&c->client.tcp, on_close_peer);
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
        c->resp_done)
        return false;
    return !peer_ready(up) || up->wpending > 0 || up->pend.len > 0 || c->req_done ||
           c->resp_head_sent;
}

/* upstream_timeout expired: 504 while no response head was passed on,
 * else the client connection is cut (its response cannot be completed). */
static void upstream_timed_out(conn_t *c) {
    peer_t *up = c->up;
    unsigned secs = (unsigned)(c->p->upstream_timeout_ms / 1000);
    char *why;
    if (!up->connected)
        why = reel_asprintf("cannot connect to %s:%d: no answer within %us (upstream_timeout)",
                            up->host, up->port, secs);
    else if (!peer_ready(up))
        why = reel_asprintf("TLS handshake with %s:%d not done within %us (upstream_timeout)",
                            up->host, up->port, secs);
    else if (!c->resp_head_sent && c->resp_head_started)
        why = reel_asprintf("%s:%d stalled for %us in the middle of the response head "
                            "(upstream_timeout)",
                            up->host, up->port, secs);
    else if (!c->resp_head_sent)
        why = reel_asprintf("%s:%d sent no response for %us (upstream_timeout)", up->host, up->port,
                            secs);
    else
        why = reel_asprintf("%s:%d stalled for %us in the middle of the response "
                            "(upstream_timeout)",
                            up->host, up->port, secs);
    if (c->resp_head_sent) {
        finish_flow(c, why);
        conn_close(c);
    } else {
        fail_exchange(c, 504, why);
    }
    free(why);
}

/* ---- deadlines ----
 *
 * Each connection has one one-shot timer armed for its earliest deadline
 * (head, response head, upstream progress, sniffing, lingering, idle), so
 * timeouts fire when due instead of on the next tick of a 1 s clock.
 * Activity only moves deadlines later, so the timer is re-armed only when
 * a new, earlier deadline appears (conn_arm after each event) and when it
 * fires. */

static uint64_t earlier(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

static uint64_t conn_deadline(conn_t *c) {
    reel_proxy_t *p = c->p;
    if (c->state == C_LINGER)
        return earlier(c->linger_start + LINGER_TOTAL_MS, c->last_activity + LINGER_IDLE_MS);
    /* a WebSocket may stay quiet for hours: no idle timeout */
    uint64_t d = c->ws[0] ? UINT64_MAX : c->last_activity + p->idle_timeout_ms;
    if (c->state == C_HEAD && c->head_started)
        d = earlier(d, c->head_started + p->head_timeout_ms);
    if (upstream_owes(c))
        d = earlier(d, c->up->progress + p->upstream_timeout_ms);
    if ((c->state == C_REQ_BODY || c->state == C_WAIT_RESP) && !c->resp_head_sent &&
        c->resp_head_started)
        d = earlier(d, c->resp_head_started + p->head_timeout_ms);
    if (c->state == C_SNIFF)
        d = earlier(d, c->sniff_started + SNIFF_WAIT_MS);
    return d;
}

static void on_conn_timer(uv_timer_t *t);

/* Arms the timer for the connection's earliest deadline if that is sooner
 * than the one it is armed for (or if force: it just fired). */
static void conn_arm_at(conn_t *c, bool force) {
    if (!c->timer_open || c->client.closing)
        return;
    uint64_t due = conn_deadline(c);
    if (!force && c->timer_due && c->timer_due <= due)
        return;
    uint64_t now = uv_now(c->p->loop);
    c->timer_due = due > now ? due : now + 1;
    uv_timer_start(&c->timer, on_conn_timer, c->timer_due - now, 0);
}

static void conn_arm(conn_t *c) {
    conn_arm_at(c, false);
}

static void on_conn_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    reel_proxy_t *p = c->p;
    uint64_t now = uv_now(p->loop);
    c->timer_due = 0;
    if (c->state == C_LINGER) {
        if (now >= c->linger_start + LINGER_TOTAL_MS || now >= c->last_activity + LINGER_IDLE_MS) {
            conn_close(c);
            return;
        }
        conn_arm_at(c, true);
        return;
    }
    if (c->state == C_HEAD && c->head_started && now - c->head_started >= p->head_timeout_ms) {
        record_rejected(c);
        fail_exchange(c, 408, "request head not received in time (head_timeout)");
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
    if ((c->state == C_REQ_BODY || c->state == C_WAIT_RESP) && !c->resp_head_sent &&
        c->resp_head_started && now - c->resp_head_started >= p->head_timeout_ms) {
        fail_exchange(c, 504, "response head not received in time (head_timeout)");
        return;
    }
    if (c->state == C_SNIFF && now - c->sniff_started >= SNIFF_WAIT_MS) {
        /* The client is silent: maybe a server-speaks-first protocol. */
        begin_raw_tunnel(c, c->tunnel_host, c->tunnel_port, false, true);
        conn_arm(c);
        return;
    }
    if (c->ws[0] == NULL && now - c->last_activity >= p->idle_timeout_ms) {
        finish_flow(c, "idle timeout");
        conn_close(c);
        return;
    }
    conn_arm_at(c, true);
}

/* ---- per-client connection counts ---- */

struct client_count {
    struct client_count *next;
    uint32_t n;
    char ip[48];
};

static struct client_count **client_slot(reel_proxy_t *p, const char *ip) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *q = ip; *q; q++)
        h = (h ^ (unsigned char)*q) * 1099511628211ull;
    struct client_count **pp = &p->clients[h % p->nclient_buckets];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Counts a new connection from c's client address; false when that would
 * go over max_client_conns (then it is not counted). */
static bool client_admit(conn_t *c) {
    reel_proxy_t *p = c->p;
    if (p->clients == NULL) {
        p->nclient_buckets = 1024;
        p->clients = reel_calloc(p->nclient_buckets, sizeof *p->clients);
    }
    struct client_count **pp = client_slot(p, c->client_ip);
    if (*pp && p->max_client_conns && (*pp)->n >= p->max_client_conns)
        return false;
    if (*pp == NULL) {
        *pp = reel_calloc(1, sizeof **pp);
        snprintf((*pp)->ip, sizeof (*pp)->ip, "%s", c->client_ip);
    }
    (*pp)->n++;
    c->counted = true;
    return true;
}

static void client_release(conn_t *c) {
    if (!c->counted)
        return;
    c->counted = false;
    struct client_count **pp = client_slot(c->p, c->client_ip);
    if (*pp && --(*pp)->n == 0) {
        struct client_count *e = *pp;
        *pp = e->next;
        free(e);
    }
}

/* Over the per-client limit: answered 429 at once (the request is not
 * read: the point is to spend nothing on it), recorded, then lingering. */
static void refuse_over_limit(conn_t *c) {
    record_refused(c, NULL, "http", NULL, 0, "");
    char *why = reel_asprintf("too many connections from %s (max_client_conns %u)", c->client_ip,
                              c->p->max_client_conns);
    fail_exchange(c, 429, why);
    free(why);
}

static void on_connection(uv_stream_t *server, int status) {
    reel_proxy_t *p = server->data;
    if (status < 0)
        return;
    conn_t *c = reel_calloc(1, sizeof *c);
    c->p = p;
    c->client.c = c;
    c->client.role = P_CLIENT;
    reel_buf_init(&c->client.in, 0);
    reel_buf_init(&c->client.pend, 0);
    reel_buf_init(&c->client.cipher, 0);
    reel_buf_init(&c->retry_head, 0);
    uv_tcp_init(p->loop, &c->client.tcp);
    c->client.tcp.data = &c->client;
    c->handles = 1;
    if (uv_accept(server, (uv_stream_t *)&c->client.tcp) != 0) {
        c->client.closing = true;
        c->next = p->conns;
        if (p->conns)
            p->conns->prev = c;
        p->conns = c;
        p->stats.active_connections++;
        uv_close((uv_handle_t *)&c->client.tcp, on_close_peer);
        return;
    }
    c->client.tcp_open = c->client.connected = true;
    uv_tcp_nodelay(&c->client.tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->client.tcp, (struct sockaddr *)&ss, &len) == 0) {
        addr_string((struct sockaddr *)&ss, c->client_addr, sizeof c->client_addr);
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->client_ip, sizeof c->client_ip);
        else if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->client_ip, sizeof c->client_ip);
    }
    reel_h1_limits_t lim = {.max_head_size = p->max_head_size};
    c->reqp = reel_h1_new(REEL_H1_REQUEST, &lim);
    c->resp = reel_h1_new(REEL_H1_RESPONSE, NULL);
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->stats.connections++;
    p->stats.active_connections++;
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->timer_open = true;
    c->handles++;
    touch(c);
    conn_arm(c);
    peer_read_start(&c->client);
    if (!client_admit(c))
        refuse_over_limit(c);
}

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
    p->idle_timeout_ms = (uint64_t)cfg->idle_timeout_s * 1000;
    p->head_timeout_ms = (uint64_t)cfg->head_timeout_s * 1000;
    p->upstream_timeout_ms = (uint64_t)cfg->upstream_timeout_s * 1000;
    p->max_head_size = cfg->max_head_size;
    p->max_client_conns = cfg->max_client_conns;
    const char *auth = cfg->proxyauth;
    free(p->proxyauth_b64);
    p->proxyauth_b64 = NULL;
    if (auth && auth[0]) {
        size_t len = strlen(auth);
        p->proxyauth_b64 = reel_malloc(4 * ((len + 2) / 3) + 1);
        static const char tbl[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t o = 0;
        for (size_t i = 0; i < len; i += 3) {
            uint32_t v = (uint32_t)(unsigned char)auth[i] << 16;
            if (i + 1 < len)
                v |= (uint32_t)(unsigned char)auth[i + 1] << 8;
            if (i + 2 < len)
                v |= (unsigned char)auth[i + 2];
            p->proxyauth_b64[o++] = tbl[(v >> 18) & 63];
            p->proxyauth_b64[o++] = tbl[(v >> 12) & 63];
            p->proxyauth_b64[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
            p->proxyauth_b64[o++] = i + 2 < len ? tbl[v & 63] : '=';
        }
        p->proxyauth_b64[o] = '\0';
    }
    return REEL_OK;
}

reel_rc reel_proxy_configure(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err) {
    reel_rc rc = apply_config(p, cfg, err);
    if (rc == REEL_OK)
        for (conn_t *c = p->conns; c; c = c->next)
            conn_arm_at(c, true); /* timeouts may have become shorter */
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
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
        e = uv_listen((uv_stream_t *)&p->listener, 1024, on_connection);
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
    if (rc != REEL_OK) {
        reel_tls_ctx_free(p->client_ctx);
        reel_tls_ctx_free(p->server_ctx);
        for (size_t i = 0; i < p->nignore; i++)
            pcre2_code_free(p->ignore[i]);
        free(p->ignore);
        free(p->proxyauth_b64);
        if (!listener_closing)
            free(p); /* else on_failed_listener_closed frees it */
        p = NULL;
    }
    *out = p;
    return rc;
}

int reel_proxy_port(const reel_proxy_t *p) {
    return p->port;
}

static void on_proxy_handle_closed(uv_handle_t *h) {
    reel_proxy_t *p = h->data;
    if (--p->closing_handles == 0 && p->conns == NULL && p->done) {
        void (*done)(void *) = p->done;
        p->done = NULL;
        done(p->done_ctx);
    }
}

/* Every connection is gone: close the grace timer, then report done once
 * every handle of the proxy has closed. */
static void shutdown_finish(reel_proxy_t *p) {
    if (!p->grace_closing) {
        p->grace_closing = true;
        p->closing_handles++;
        uv_close((uv_handle_t *)&p->grace, on_proxy_handle_closed);
    }
}

static void on_grace(uv_timer_t *t) {
    reel_proxy_t *p = t->data;
    for (conn_t *c = p->conns; c; c = c->next)
        conn_close(c);
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
        if (c->state == C_HEAD && c->client.in.len == 0 && c->flow == NULL)
            conn_close(c);
    }
    if (p->conns == NULL) {
        shutdown_finish(p);
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
