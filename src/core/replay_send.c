/* Client replay, the sending side; see replay_send.h. Moved out of
 * cli/cmd_replay.c so that the web UI sends a replay the same way. */
#include "core/replay_send.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/noproxy.h"
#include "core/connect_filter.h"
#include "core/hostport.h"
#include "core/http1.h"
#include "core/proxy.h"
#include "core/socks.h"

#define READ_CHUNK 65536
/* How often a wait looks at the cancel flag. */
#define CANCEL_POLL_MS 200

static int64_t now_us(void) {
    return reel_now_us();
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the connection: socket + optional TLS, with a deadline per wait ---- */

typedef struct {
    const reel_replay_send_opts_t *o;
    int64_t deadline_ms; /* mono_ms() at which the whole send stops; 0: none */
    int stopped;         /* 1: deadline_ms passed, 2: cancelled */
    int fd;
    reel_tls_t *tls;
    /* TLS to an https:// upstream proxy, under the origin's (NULL: none):
     * what send_raw and recv_raw carry goes through it */
    reel_tls_t *ptls;
    reel_buf_t pout;   /* its cipher bytes waiting to be sent */
    reel_buf_t cout;   /* cipher bytes waiting to be sent */
    const char *phase; /* what we are waiting for, for the timeout message */
    int eof;           /* the socket reached end of stream */
} sconn_t;

/* Waits up to timeout_ms for events on fd, in slices short enough to see
 * the deadline and the cancel flag. 1: ready; 0: timeout_ms passed; -1:
 * poll failed (errno); -2: the send is to stop (c->stopped says why). */
/* Whether the send is to stop now (sets c->stopped). */
static int stop_due(sconn_t *c, int64_t now) {
    if (c->o->cancel && atomic_load(c->o->cancel))
        c->stopped = 2;
    else if (c->deadline_ms && now >= c->deadline_ms)
        c->stopped = 1;
    return c->stopped != 0;
}

static int wait_fd(sconn_t *c, int fd, short events, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = events};
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        int64_t now = mono_ms();
        if (stop_due(c, now))
            return -2;
        if (now >= end)
            return 0;
        int64_t slice = end - now;
        if (c->deadline_ms && c->deadline_ms - now < slice)
            slice = c->deadline_ms - now;
        if (c->o->cancel && slice > CANCEL_POLL_MS)
            slice = CANCEL_POLL_MS;
        int n = poll(&p, 1, (int)slice);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* The error of a send that was stopped (wait_fd returned -2). */
static reel_rc stop_error(const sconn_t *c, reel_err_t *err) {
    if (c->stopped == 2)
        return reel_err_set(err, REEL_IO, "replay cancelled %s (reel is stopping)", c->phase);
    return reel_err_set(err, REEL_IO, "replay timed out after %d s %s", c->o->total_ms / 1000,
                        c->phase);
}

/* Waits for events on c->fd; REEL_IO with a timeout message if none come. */
static reel_rc conn_wait(sconn_t *c, short events, reel_err_t *err) {
    int n = wait_fd(c, c->fd, events, c->o->timeout_ms);
    if (n > 0)
        return REEL_OK;
    if (n == 0)
        return reel_err_set(err, REEL_IO, "upstream timed out after %d s %s",
                            c->o->timeout_ms / 1000, c->phase);
    if (n == -2)
        return stop_error(c, err);
    return reel_err_errno(err, REEL_IO, errno, "poll");
}

static reel_rc sock_send(sconn_t *c, const uint8_t *p, size_t n, reel_err_t *err) {
    while (n) {
        if (stop_due(c, mono_ms())) /* also when the socket never makes us wait */
            return stop_error(c, err);
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            reel_rc rc = conn_wait(c, POLLOUT, err);
            if (rc != REEL_OK)
                return rc;
            continue;
        }
        return reel_err_errno(err, REEL_IO, errno, "sending to upstream");
    }
    return REEL_OK;
}

/* Reads what the socket has (waiting for it); *n == 0 at end of stream. */
static reel_rc sock_recv(sconn_t *c, uint8_t *buf, size_t cap, size_t *n, reel_err_t *err) {
    for (;;) {
        if (stop_due(c, mono_ms()))
            return stop_error(c, err);
        ssize_t r = recv(c->fd, buf, cap, 0);
        if (r >= 0) {
            *n = (size_t)r;
            if (r == 0)
                c->eof = 1;
            return REEL_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            reel_rc rc = conn_wait(c, POLLIN, err);
            if (rc != REEL_OK)
                return rc;
            continue;
        }
        return reel_err_errno(err, REEL_IO, errno, "reading from upstream");
    }
}

/* The connection's layers, the socket's first: 0 the socket, 1 the TLS to
 * an https:// upstream proxy (c->ptls), 2 the TLS to the origin (c->tls).
 * A layer without its TLS (NULL) passes bytes to the one below as they
 * are. */
enum { L_SOCKET, L_PROXY_TLS, L_ORIGIN_TLS };

static reel_tls_t *layer_tls(const sconn_t *c, int layer) {
    return layer == L_PROXY_TLS ? c->ptls : layer == L_ORIGIN_TLS ? c->tls : NULL;
}

static reel_rc layer_send(sconn_t *c, int layer, const uint8_t *p, size_t n, reel_err_t *err);

/* Sends the cipher bytes the layer's TLS has waiting, on the layer below. */
static reel_rc layer_flush(sconn_t *c, int layer, reel_err_t *err) {
    reel_tls_t *t = layer_tls(c, layer);
    reel_buf_t *b = layer == L_PROXY_TLS ? &c->pout : &c->cout;
    while (t && reel_tls_cipher_pending(t)) {
        reel_buf_reset(b);
        reel_tls_take_cipher(t, b);
        reel_rc rc = layer_send(c, layer - 1, b->data, b->len, err);
        if (rc != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

/* Sends plaintext of the layer (its TLS's, or the socket's bytes). */
static reel_rc layer_send(sconn_t *c, int layer, const uint8_t *p, size_t n, reel_err_t *err) {
    if (layer == L_SOCKET)
        return sock_send(c, p, n, err);
    reel_tls_t *t = layer_tls(c, layer);
    if (t == NULL)
        return layer_send(c, layer - 1, p, n, err);
    while (n) {
        size_t used = 0;
        reel_rc rc = reel_tls_write_plain(t, p, n, &used, err);
        if (rc != REEL_OK)
            return rc == REEL_NEED_MORE ? reel_err_set(err, REEL_IO, "TLS not ready") : rc;
        p += used;
        n -= used;
        if ((rc = layer_flush(c, layer, err)) != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

static reel_rc layer_recv(sconn_t *c, int layer, uint8_t *buf, size_t cap, size_t *n,
                          reel_err_t *err);

/* Feeds the layer's TLS what the layer below has; at its end, the TLS's. */
static reel_rc layer_feed(sconn_t *c, int layer, reel_err_t *err) {
    reel_tls_t *t = layer_tls(c, layer);
    uint8_t buf[16384];
    size_t n = 0;
    reel_rc rc = layer_recv(c, layer - 1, buf, sizeof buf, &n, err);
    if (rc != REEL_OK)
        return rc;
    if (n == 0) {
        reel_tls_feed_eof(t);
        return REEL_OK;
    }
    for (size_t off = 0; off < n;) {
        size_t used = 0;
        reel_tls_feed_cipher(t, buf + off, n - off, &used);
        off += used;
        if (used == 0) /* cannot happen while we read plaintext between feeds */
            return reel_err_set(err, REEL_LIMIT, "TLS input buffer full");
    }
    return REEL_OK;
}

/* Reads the layer's plaintext; *n == 0 at end of stream. */
static reel_rc layer_recv(sconn_t *c, int layer, uint8_t *buf, size_t cap, size_t *n,
                          reel_err_t *err) {
    if (layer == L_SOCKET)
        return sock_recv(c, buf, cap, n, err);
    reel_tls_t *t = layer_tls(c, layer);
    if (t == NULL)
        return layer_recv(c, layer - 1, buf, cap, n, err);
    for (;;) {
        reel_rc rc = reel_tls_read_plain(t, buf, cap, n, err);
        reel_err_t ferr;
        reel_err_clear(&ferr);
        layer_flush(c, layer, &ferr); /* key updates, alerts */
        if (rc != REEL_NEED_MORE) {
            if (rc == REEL_OK && *n == 0 && layer < L_ORIGIN_TLS)
                c->eof = 1; /* (the proxy's TLS ended: so did what it carried) */
            return rc;
        }
        if (c->eof) {
            *n = 0;
            return REEL_OK;
        }
        if ((rc = layer_feed(c, layer, err)) != REEL_OK)
            return rc;
    }
}

/* The layer's TLS handshake; who: the peer, for its close ("upstream",
 * "the upstream proxy"). */
static reel_rc layer_handshake(sconn_t *c, int layer, const char *who, reel_err_t *err) {
    reel_tls_t *t = layer_tls(c, layer);
    for (;;) {
        reel_rc hs = reel_tls_handshake(t, err);
        reel_err_t ferr;
        reel_err_clear(&ferr);
        reel_rc rc =
            layer_flush(c, layer, &ferr); /* an alert may be waiting, even after an error */
        if (hs != REEL_NEED_MORE)
            return hs == REEL_OK && rc != REEL_OK ? reel_err_set(err, rc, "%s", reel_err_str(&ferr))
                                                  : hs;
        if (rc != REEL_OK)
            return reel_err_set(err, rc, "%s", reel_err_str(&ferr));
        if (c->eof)
            return reel_err_set(err, REEL_IO, "%s closed the connection during the TLS handshake",
                                who);
        if ((rc = layer_feed(c, layer, err)) != REEL_OK)
            return rc;
    }
}

/* Bytes on the connection, under the origin's TLS (what CONNECT and the
 * proxy's answers travel as). */
static reel_rc send_raw(sconn_t *c, const uint8_t *p, size_t n, reel_err_t *err) {
    return layer_send(c, L_PROXY_TLS, p, n, err);
}

static reel_rc recv_raw(sconn_t *c, uint8_t *buf, size_t cap, size_t *n, reel_err_t *err) {
    return layer_recv(c, L_PROXY_TLS, buf, cap, n, err);
}

static reel_rc ptls_handshake(sconn_t *c, reel_err_t *err) {
    return layer_handshake(c, L_PROXY_TLS, "the upstream proxy", err);
}

static reel_rc tls_handshake(sconn_t *c, reel_err_t *err) {
    return layer_handshake(c, L_ORIGIN_TLS, "upstream", err);
}

static reel_rc conn_write(sconn_t *c, const uint8_t *p, size_t n, reel_err_t *err) {
    return layer_send(c, L_ORIGIN_TLS, p, n, err);
}

/* Reads plaintext; *n == 0 at end of stream. */
static reel_rc conn_read(sconn_t *c, uint8_t *buf, size_t cap, size_t *n, reel_err_t *err) {
    return layer_recv(c, L_ORIGIN_TLS, buf, cap, n, err);
}

/* "ip:port" of a socket address. */
static void addr_str(const struct sockaddr *sa, char out[64]) {
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, 64, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, 64, "[%s]:%u", ip, port);
    } else {
        snprintf(out, 64, "?");
    }
}

/* Connects to host:port (every address getaddrinfo gives, in turn, each
 * within the timeout). Sets c->fd, the server's and our address. */
static reel_rc dial(sconn_t *c, const char *host, uint32_t port, char server[64], char client[64],
                    int64_t *dns_us, int64_t *connect_us, reel_err_t *err) {
    char ports[16];
    snprintf(ports, sizeof ports, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int64_t t0 = now_us();
    int g = getaddrinfo(host, ports, &hints, &res);
    *dns_us = now_us() - t0;
    if (g != 0)
        return reel_err_set(err, REEL_IO, "cannot resolve %s: %s", host, gai_strerror(g));
    reel_rc rc = REEL_IO;
    int64_t t1 = now_us();
    char last[200] = "no address";
    for (struct addrinfo *ai = res; ai && !c->stopped; ai = ai->ai_next) {
        int s =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (s < 0) {
            snprintf(last, sizeof last, "%s", strerror(errno));
            continue;
        }
        addr_str(ai->ai_addr, server);
        int e = 0;
        if (connect(s, ai->ai_addr, ai->ai_addrlen) != 0) {
            e = errno;
            if (e == EINPROGRESS) {
                int n = wait_fd(c, s, POLLOUT, c->o->timeout_ms);
                socklen_t len = sizeof e;
                if (n == 0)
                    e = ETIMEDOUT;
                else if (n == -2)
                    e = ECANCELED;
                else if (n < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                    e = errno;
            }
        }
        if (e == 0) {
            int one = 1;
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct sockaddr_storage me;
            socklen_t ml = sizeof me;
            if (getsockname(s, (struct sockaddr *)&me, &ml) == 0)
                addr_str((struct sockaddr *)&me, client);
            c->fd = s;
            rc = REEL_OK;
            break;
        }
        snprintf(last, sizeof last, "connecting to %s: %s", server, strerror(e));
        close(s);
    }
    *connect_us = now_us() - t1;
    freeaddrinfo(res);
    if (rc != REEL_OK && c->stopped)
        return stop_error(c, err);
    if (rc != REEL_OK)
        return reel_err_set(err, REEL_IO, "%s", last);
    return REEL_OK;
}

/* Asks the upstream proxy via (c connected to it) for a tunnel to
 * host:port, with HTTP's CONNECT (and auth_b64's Basic credentials) or
 * SOCKS5's (and userpass's username and password, "user:pass", when the
 * proxy asks), and reads its answers a byte at a time: what follows them
 * is the origin's, and this client reads nothing ahead. */
static reel_rc proxy_tunnel(sconn_t *c, const char *via, bool socks, const char *host,
                            uint32_t port, const char *auth_b64, const char *userpass,
                            reel_err_t *err) {
    const char *colon = userpass ? strchr(userpass, ':') : NULL;
    char *user = colon ? reel_strndup(userpass, (size_t)(colon - userpass)) : NULL;
    reel_socks5_client_t s;
    reel_buf_t out, in;
    reel_buf_init(&out, 0);
    reel_buf_init(&in, 0);
    if (socks)
        reel_socks5_client_start(&s, host, (int)port, user, colon ? colon + 1 : NULL, &out);
    else
        reel_connect_request(&out, host, (int)port, auth_b64);
    c->phase = "waiting for the upstream proxy's answer to CONNECT";
    reel_rc rc = send_raw(c, out.data, out.len, err);
    while (rc == REEL_OK) {
        uint8_t ch;
        size_t n = 0, used = 0;
        if ((rc = recv_raw(c, &ch, 1, &n, err)) != REEL_OK)
            break;
        char *what = NULL;
        reel_rc a = REEL_INVALID;
        reel_buf_reset(&out);
        if (n == 0) {
            what = reel_strdup("closed the connection (a clean close) before it answered");
        } else {
            reel_buf_append(&in, &ch, 1);
            a = socks ? reel_socks5_client_feed(&s, in.data, in.len, &used, &out, &what)
                      : reel_connect_answer(&in, &used, &what);
            if (a == REEL_NEED_MORE) {
                if (socks) /* (a SOCKS5 answer is taken whole, the next awaited) */
                    reel_buf_consume(&in, used);
                if (out.len)
                    rc = send_raw(c, out.data, out.len, err);
                continue;
            }
        }
        if (a != REEL_OK) {
            char *why = reel_connect_refused(via, what, host, (int)port);
            rc = reel_err_set(err, REEL_IO, "%s", why);
            free(why);
        }
        free(what);
        break;
    }
    reel_buf_free(&out);
    reel_buf_free(&in);
    free(user);
    return rc;
}

/* ---- the request as sent ---- */

static int ieq(const char *a, size_t alen, const char *b) {
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* The head to send: the recorded headers without hop-by-hop ones and
 * Content-Length (set to the body sent), Content-Encoding dropped for a
 * stored body that was decoded, Host added when missing. A request the
 * client sent in absolute form went out with a Host made from its URL
 * (RFC 9112 3.2.2), whatever its own Host said, and goes out so again.
 * Fields point into r and into hostbuf/clbuf. */
static reel_h1_header_t *send_headers(const reel_replay_req_t *r, size_t *n, char hostbuf[300],
                                      char clbuf[32]) {
    reel_h1_header_t *v = reel_calloc(r->n_headers + 4, sizeof *v); /* + those added below */
    const reel_h1_header_t *rh = (const reel_h1_header_t *)(const void *)r->headers;
    size_t k = 0;
    int host = 0, length = 0;
    reel_h1_hop_t hop;
    reel_h1_hop_init(&hop, rh, r->n_headers);
    for (size_t i = 0; i < r->n_headers; i++) {
        const reel_header_t *h = &r->headers[i];
        /* Trailer names the trailer fields sent after the body: with them
         * it goes on, as the proxy sends it (exchange.c write_head) */
        if (reel_h1_hop(&hop, h->name, h->name_len) &&
            !(r->n_trailers && ieq(h->name, h->name_len, "trailer")))
            continue;
        if (ieq(h->name, h->name_len, "content-length")) {
            length = 1;
            continue;
        }
        if (r->body_decoded && ieq(h->name, h->name_len, "content-encoding"))
            continue;
        if (r->no_expect && ieq(h->name, h->name_len, "expect"))
            continue;
        if (ieq(h->name, h->name_len, "host")) {
            if (r->absolute_form)
                continue;
            host = 1;
        }
        v[k++] = rh[i];
    }
    for (size_t i = 0; i < r->n_headers; i++) /* a hop-by-hop Transfer-Encoding framed a body */
        if (ieq(r->headers[i].name, r->headers[i].name_len, "transfer-encoding"))
            length = 1;
    if (!host) {
        uint32_t port = reel_replay_port(r);
        int def = port == (strcmp(r->scheme, "https") == 0 ? 443u : 80u);
        int v6 = strchr(r->host, ':') != NULL;
        if (def)
            snprintf(hostbuf, 300, "%s%s%s", v6 ? "[" : "", r->host, v6 ? "]" : "");
        else
            snprintf(hostbuf, 300, "%s%s%s:%u", v6 ? "[" : "", r->host, v6 ? "]" : "", port);
        /* Host goes first, as clients send it */
        memmove(v + 1, v, k * sizeof *v);
        v[0] = (reel_h1_header_t){"Host", 4, hostbuf, strlen(hostbuf)};
        k++;
    }
    if (r->n_trailers) {
        /* trailer fields have a place only in the chunked coding */
        v[k++] = (reel_h1_header_t){"Transfer-Encoding", 17, "chunked", 7};
    } else if (length || r->body.len) {
        snprintf(clbuf, 32, "%zu", r->body.len);
        v[k++] = (reel_h1_header_t){"Content-Length", 14, clbuf, strlen(clbuf)};
    }
    /* TE's "trailers" goes on as the proxy sends it (exchange.c
     * write_head): gRPC servers refuse a request without it */
    if (reel_h1_has_token(rh, r->n_headers, "te", "trailers")) {
        v[k++] = (reel_h1_header_t){"TE", 2, "trailers", 8};
        v[k++] = (reel_h1_header_t){"Connection", 10, "TE", 2};
    }
    *n = k;
    return v;
}

/* ---- one replay ---- */

typedef struct {
    reel_rflow_t *f;
    reel_replay_result_t *out;
    int64_t resp_start;
    uint64_t excess; /* bytes the origin sent past its response's end */
} exch_t;

/* Reads and records the response. */
static reel_rc read_response(exch_t *x, sconn_t *c, int is_head, reel_timings_t *t, int64_t sent,
                             reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_h1_t *p = reel_h1_new(REEL_H1_RESPONSE, NULL);
    reel_h1_expect_response(p, is_head, false);
    uint8_t *buf = reel_malloc(READ_CHUNK);
    size_t have = 0, off = 0;
    int64_t first = 0;
    c->phase = "waiting for the response";
    for (;;) {
        reel_h1_event_t ev;
        size_t used = 0;
        reel_rc f = reel_h1_feed(p, buf + off, have - off, &used, &ev);
        if (f == REEL_NEED_MORE) {
            off = have = 0;
            size_t n = 0;
            if ((rc = conn_read(c, buf, READ_CHUNK, &n, err)) != REEL_OK)
                goto out;
            if (n && first == 0)
                first = now_us();
            if (n) {
                have = n;
                continue;
            }
            f = reel_h1_feed_eof(p, &ev);
            if (f == REEL_OK && ev.type == REEL_H1_EV_NONE) {
                rc =
                    reel_err_set(err, REEL_IO, "upstream closed the connection without a response");
                goto out;
            }
            if (f == REEL_OK && ev.type == REEL_H1_EV_END && c->tls &&
                !reel_tls_peer_closed(c->tls)) {
                /* a body read until the close is whole only with its close
                 * (RFC 9112 9.8), as the proxy says (core/exchange.c) */
                rc = reel_err_set(err, REEL_IO,
                                  "the origin closed the TLS connection without close_notify: the "
                                  "body may be cut short (RFC 9112 9.8)");
                goto out;
            }
        } else {
            off += used;
        }
        if (f == REEL_INVALID) {
            rc = reel_err_set(err, REEL_CORRUPT, "upstream sent an invalid response: %s",
                              ev.error_reason ? ev.error_reason : "parse error");
            goto out;
        }
        if (f != REEL_OK) {
            rc = reel_err_set(err, f, "reading the response failed");
            goto out;
        }
        if (ev.type == REEL_H1_EV_HEAD) {
            char version[16];
            snprintf(version, sizeof version, "HTTP/%d.%d", ev.head.version_major,
                     ev.head.version_minor);
            char *reason = reel_strndup(ev.head.reason ? ev.head.reason : "", ev.head.reason_len);
            reel_response_head_t rs = {.status = (uint32_t)ev.head.status,
                                       .reason = reason,
                                       .http_version = version,
                                       .headers =
                                           (const reel_header_t *)(const void *)ev.head.headers,
                                       .n_headers = ev.head.nheaders};
            if (ev.head.interim) { /* 100, 103: recorded as the proxy records them */
                reel_recorder_interim(x->f, &rs);
                free(reason);
                continue;
            }
            c->phase = "reading the response body";
            x->resp_start = first ? first : now_us();
            reel_recorder_response_head(x->f, &rs);
            x->out->status = rs.status;
            free(x->out->reason);
            x->out->reason = reason;
        } else if (ev.type == REEL_H1_EV_BODY) {
            reel_recorder_response_body(x->f, ev.data, ev.len);
        } else if (ev.type == REEL_H1_EV_END || ev.type == REEL_H1_EV_UPGRADE) {
            if (ev.type == REEL_H1_EV_END && ev.ntrailers)
                reel_recorder_trailers(x->f, true, (const reel_header_t *)(const void *)ev.trailers,
                                       ev.ntrailers, false);
            /* bytes past the response's end, as the proxy counts them */
            if (ev.type == REEL_H1_EV_END)
                x->excess = have > off ? have - off : 0;
            break;
        }
    }
    int64_t end = now_us();
    t->wait_us = (first ? first : end) - sent;
    t->receive_us = end - (first ? first : end);
out:
    free(buf);
    reel_h1_free(p);
    return rc;
}

reel_rc reel_replay_send(const reel_replay_req_t *r, const reel_replay_send_opts_t *o,
                         reel_replay_result_t *out) {
    memset(out, 0, sizeof *out);
    reel_err_t err;
    reel_err_clear(&err);
    reel_timings_t t = {-1, -1, -1, -1, -1, -1, -1};
    sconn_t c = {.o = o, .fd = -1, .phase = "connecting"};
    if (o->total_ms > 0)
        c.deadline_ms = mono_ms() + o->total_ms;
    reel_buf_init(&c.cout, 0);
    reel_buf_init(&c.pout, 0);
    reel_buf_t head;
    reel_buf_init(&head, 0);
    char server[64] = "", client[64] = "";
    int64_t t0 = now_us(), sent = 0;
    uint32_t port = reel_replay_port(r);
    int https = strcmp(r->scheme, "https") == 0;
    exch_t x = {.out = out};

    /* through upstream_proxy as the proxy goes (core/peer.c): HTTPS in a
     * CONNECT tunnel, plain HTTP to it in absolute form */
    char *via = NULL, *proxy_host = NULL, *proxy_auth = NULL;
    int proxy_port = 0;
    bool direct = reel_no_proxy_match(o->upstream_no_proxy, r->host), socks = false,
         proxy_tls = false;
    /* (upstream_insecure_hosts: this host's certificate not checked) */
    bool verify = o->verify && !reel_no_proxy_match(o->upstream_insecure_hosts, r->host);
    reel_rc rc =
        reel_upstream_proxy_parse(direct ? NULL : o->upstream_proxy, o->upstream_proxyauth, &via,
                                  &proxy_host, &proxy_port, &proxy_auth, &socks, &proxy_tls, &err);
    /* dns_overrides, as the proxy's own connections take them (core/peer.c) */
    const char *dns_entry = NULL;
    int addr_port = (int)port;
    const char *addr =
        via ? NULL
            : reel_dns_map_find(o->dns_overrides, r->host, (int)port, &dns_entry, &addr_port);
    if (rc == REEL_OK)
        rc = dial(&c,
                  via    ? proxy_host
                  : addr ? addr
                         : r->host,
                  via    ? (uint32_t)proxy_port
                  : addr ? (uint32_t)addr_port
                         : port,
                  server, client, &t.dns_us, &t.connect_us, &err);
    if (rc == REEL_OK && via && proxy_tls) {
        /* https:// : TLS to the proxy itself, checked as an origin's */
        bool check = o->verify && !reel_no_proxy_match(o->upstream_insecure_hosts, proxy_host);
        reel_tls_client_opts_t po = {.host = proxy_host, .insecure = !check, .alpn = "http/1.1"};
        c.phase = "during the TLS handshake with the upstream proxy";
        if ((rc = reel_tls_new_client(o->tls, &po, &c.ptls, &err)) == REEL_OK)
            rc = ptls_handshake(&c, &err);
    }
    if (rc != REEL_OK && via && !c.stopped) {
        char *why = reel_strdup(reel_err_str(&err));
        reel_err_clear(&err); /* (the first error set stays otherwise) */
        reel_err_set(&err, rc, "the upstream proxy (upstream_proxy %s) could not be reached: %s",
                     via, why);
        free(why);
    }
    if (rc != REEL_OK)
        server[0] = '\0'; /* no origin was reached (the error names the address tried) */

    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP,
                             .client_addr = client[0] ? client : NULL,
                             .server_addr = rc == REEL_OK ? server : NULL,
                             .source = "replay",
                             .time_us = t0,
                             .replay_of = r->id,
                             .replay_session = o->replay_session,
                             .replay_uuid = r->uuid};
    char hostbuf[300], clbuf[32];
    char *proxied = NULL, *basic = NULL; /* the target and field sent to upstream_proxy */
    reel_h1_header_t *sent_hs = NULL;
    size_t nh = 0;
    reel_h1_header_t *hs = send_headers(r, &nh, hostbuf, clbuf);
    reel_request_head_t rq = {.method = r->method,
                              .scheme = r->scheme,
                              .host = r->host,
                              .port = port,
                              .target = r->target,
                              .http_version = "HTTP/1.1",
                              .headers = (const reel_header_t *)(const void *)hs,
                              .n_headers = nh,
                              .time_us = t0};
    x.f = reel_recorder_flow_start(o->rec, &info);
    out->id = reel_rflow_id(x.f);
    reel_recorder_request_head(x.f, &rq);
    if (r->body.len)
        reel_recorder_request_body(x.f, r->body.data, r->body.len);
    if (r->n_trailers)
        reel_recorder_trailers(x.f, false, r->trailers, r->n_trailers, false);
    if (rc != REEL_OK)
        goto out;

    /* a tunnel for HTTPS, and for anything through a SOCKS5 proxy */
    if ((https && via) || socks)
        rc = proxy_tunnel(&c, via, socks, r->host, port, proxy_auth, o->upstream_proxyauth, &err);
    if (rc != REEL_OK)
        goto out;
    reel_tls_identities_t *ids = NULL;
    if (https && (rc = reel_tls_identities_load(o->upstream_client_certs, &ids, &err)) != REEL_OK)
        goto out;
    if (https) {
        int64_t ts = now_us();
        reel_tls_client_opts_t to = {.host = r->host,
                                     .insecure = !verify,
                                     .identity = reel_tls_identities_find(ids, r->host)};
        c.phase = "during the TLS handshake";
        if ((rc = reel_tls_new_client(o->tls, &to, &c.tls, &err)) == REEL_OK)
            rc = tls_handshake(&c, &err);
        if (rc == REEL_OK)
            t.ssl_us = now_us() - ts;
    }
    reel_tls_identities_free(ids); /* (the TLS holds its own references) */
    /* What the certificate's check found, as the proxy records it: the
     * failure that ended the handshake, or (verification off) the one
     * that would have; and the origin's certificate then. */
    const char *cert = NULL, *sent_cert = NULL;
    if (c.tls)
        reel_tls_client_cert_asked(c.tls, &sent_cert);
    const char *verr = c.tls == NULL   ? NULL
                       : rc != REEL_OK ? reel_tls_verify_error(c.tls, &cert)
                                       : reel_tls_unchecked_error(c.tls, &cert);
    if (rc != REEL_OK && verr == NULL)
        goto out; /* no TLS got as far as the check: the error says what happened */
    reel_server_conn_t sc = {.conn_id = out->id,
                             .address = server,
                             .sni = c.tls ? reel_tls_sni(c.tls) : NULL,
                             .alpn = c.tls ? reel_tls_alpn(c.tls) : NULL,
                             .tls_version = c.tls ? reel_tls_version(c.tls) : NULL,
                             .cipher = c.tls ? reel_tls_cipher(c.tls) : NULL,
                             .unverified = c.tls && !verify,
                             .verify_error = verr,
                             .peer_cert = verr ? cert : NULL,
                             .via = via,
                             .via_forward = via && !https && !socks,
                             .client_cert_asked = c.tls && reel_tls_client_cert_asked(c.tls, NULL),
                             .client_cert = sent_cert,
                             .resumed = c.tls && reel_tls_resumed(c.tls),
                             .dns_override = addr ? dns_entry : NULL,
                             /* a connection of its own, set up for it */
                             .opened_us = t0,
                             .dns_us = t.dns_us,
                             .connect_us = t.connect_us,
                             .ssl_us = t.ssl_us};
    reel_recorder_server_conn(x.f, &sc);
    if (rc != REEL_OK)
        goto out;

    reel_h1_head_t h = {.method = r->method,
                        .method_len = strlen(r->method),
                        .target = r->target[0] ? r->target : "/",
                        .target_len = r->target[0] ? strlen(r->target) : 1,
                        .version_major = 1,
                        .version_minor = 1,
                        .headers = hs,
                        .nheaders = nh};
    if (via && !https && !socks) {
        /* to the proxy in absolute form, with its credentials: only on
         * the wire, the flow records the request as replayed */
        bool asterisk = strcmp(h.target, "*") == 0; /* OPTIONS *: the authority alone */
        proxied = reel_asprintf("http://" REEL_HOSTPORT_FMT "%s", REEL_HOSTPORT(r->host, port),
                                asterisk ? "" : h.target);
        h.target = proxied;
        h.target_len = strlen(proxied);
        if (proxy_auth) {
            basic = reel_asprintf("Basic %s", proxy_auth);
            sent_hs = reel_calloc(nh + 1, sizeof *sent_hs);
            memcpy(sent_hs, hs, nh * sizeof *hs);
            sent_hs[nh] = (reel_h1_header_t){"Proxy-Authorization", 19, basic, strlen(basic)};
            h.headers = sent_hs;
            h.nheaders = nh + 1;
        }
    }
    if ((rc = reel_h1_write_request_head(&head, &h)) != REEL_OK) {
        rc = reel_err_set(&err, rc,
                          "the recorded request head cannot be sent as HTTP/1.1 "
                          "(a bad method, target or header)");
        goto out;
    }
    int64_t ts = now_us();
    c.phase = "sending the request";
    if (r->n_trailers) { /* the body as one chunk, then the trailer fields */
        char chunk[REEL_H1_CHUNK_HEADER_MAX];
        reel_buf_append(&head, chunk, reel_h1_chunk_header(r->body.len, chunk));
        reel_buf_t tail;
        reel_buf_init(&tail, 0);
        if (r->body.len)
            reel_buf_puts(&tail, "\r\n");
        if (reel_h1_write_last_chunk(&tail, (const reel_h1_header_t *)(const void *)r->trailers,
                                     r->n_trailers) != REEL_OK) {
            reel_buf_free(&tail);
            rc = reel_err_set(&err, REEL_INVALID,
                              "the recorded trailer fields cannot be sent as HTTP/1.1 (a bad "
                              "name or value)");
            goto out;
        }
        rc = conn_write(&c, head.data, head.len, &err);
        if (rc == REEL_OK && r->body.len)
            rc = conn_write(&c, r->body.data, r->body.len, &err);
        if (rc == REEL_OK)
            rc = conn_write(&c, tail.data, tail.len, &err);
        reel_buf_free(&tail);
        if (rc != REEL_OK)
            goto out;
    } else if ((rc = conn_write(&c, head.data, head.len, &err)) != REEL_OK ||
               (r->body.len && (rc = conn_write(&c, r->body.data, r->body.len, &err)) != REEL_OK)) {
        goto out;
    }
    sent = now_us();
    t.send_us = sent - ts;
    rc = read_response(&x, &c, strcmp(r->method, "HEAD") == 0, &t, sent, &err);
out:;
    reel_flow_end_t fe = {.error = rc != REEL_OK ? reel_err_str(&err) : NULL,
                          .timings = &t,
                          .request_end_us = sent,
                          .response_start_us = x.resp_start,
                          .server_addr = server[0] ? server : NULL,
                          .response_excess = x.excess};
    reel_recorder_flow_finish(x.f, &fe);
    if (rc != REEL_OK) {
        out->error = reel_strdup(reel_err_str(&err));
        out->timed_out = c.stopped == 1;
        out->cancelled = c.stopped == 2;
    }
    free(hs);
    free(sent_hs);
    free(basic);
    free(proxied);
    free(via);
    free(proxy_host);
    free(proxy_auth);
    reel_buf_free(&head);
    reel_buf_free(&c.cout);
    reel_buf_free(&c.pout);
    reel_tls_free(c.tls);
    reel_tls_free(c.ptls);
    if (c.fd >= 0)
        close(c.fd);
    return rc;
}

void reel_replay_result_free(reel_replay_result_t *res) {
    if (res == NULL)
        return;
    free(res->reason);
    free(res->error);
    res->reason = res->error = NULL;
}
