/* reel replay: sends recorded requests to their servers again (client
 * replay) and records what comes back as new flows linked to the ones they
 * replay (docs/replay.md).
 *
 * The client is small and blocking: one connection per request (a socket
 * made non-blocking so that poll() keeps upstream_timeout), TLS through
 * core/tls.c (the proxy's own client role: system store plus
 * upstream_trusted_ca, host name checked unless upstream_cert_verify is
 * off), the response parsed by core/http1.c. Bodies are recorded as they
 * arrive, de-chunked but still content-encoded, as the proxy records them.
 * With --concurrency N, N threads send at once; recorder calls are
 * serialized by one mutex (the recorder takes one producer at a time). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "core/http1.h"
#include "core/tls.h"
#include "session/config.h"
#include "session/recorder.h"
#include "session/replay.h"

static const char usage[] =
    "usage: reel replay [--home DIR] [--json] SESSION ID|FILTER [--into SESSION2]\n"
    "                   [--concurrency N] [--set KEY=VALUE]...\n"
    "\n"
    "Sends the recorded requests of SESSION again to their servers (client replay)\n"
    "and records each answer as a new flow in SESSION, or in SESSION2 with --into\n"
    "(created if missing). Each new flow names the flow it replays (its start\n"
    "record's replay_of; flows.replay_of in the index). ID is a flow id or a\n"
    "range N-M; anything else is a filter expression (docs/filters.md).\n"
    "\n"
    "A request goes out as recorded (method, target, headers, stored body) over\n"
    "HTTP/1.1 on a new connection, without its hop-by-hop headers and with\n"
    "Content-Length set to the body sent. The answer is recorded as it came\n"
    "(bodies still content-encoded). A connection refused, a TLS failure or a\n"
    "timeout is recorded as the new flow's error. Flows that cannot be sent\n"
    "again (tunnels, WebSocket, a body not stored whole, still open) are skipped.\n"
    "\n"
    "Upstream settings come from SESSION's configuration (user file, then its\n"
    "overlay, then --set): upstream_cert_verify, upstream_trusted_ca,\n"
    "upstream_timeout; body_limit bounds what is stored of each new body.\n"
    "The session recorded into must not be recording: replay refuses while a\n"
    "proxy records into it (use --into another session).\n"
    "\n"
    "  --into SESSION2    record the new flows there (default: SESSION)\n"
    "  --concurrency N    requests in flight at once, 1..64 (default 1: in order)\n"
    "  --set KEY=VALUE    a configuration option for this run (repeatable)\n"
    "  --home DIR         sessions root (default $REEL_HOME, else the XDG data dir)\n"
    "  --json             print {session, into, replays: [{of, id, method, url,\n"
    "                     status, error}], skipped: [{of, why}], ok, failed}\n"
    "\n"
    "Exit status: 0 when every replay got a response, 1 when one failed (its flow\n"
    "holds the error) or nothing could be replayed, 2 for a usage error.\n";

#define CONCURRENCY_MAX 64
#define READ_CHUNK 65536

/* ---- one replay ---- */

typedef struct {
    reel_replay_req_t req;
    char *url;
    /* results */
    int done, skipped, failed;
    uint64_t new_id;
    uint32_t status;
    char *reason;
    char *error; /* owned: why the replay failed, or why it was skipped */
} job_t;

typedef struct {
    reel_cli_t *cli;
    reel_recorder_t *rec;
    reel_tls_ctx_t *tls;
    int verify;
    int timeout_ms;
    const char *replay_session; /* NULL: the same session */
    pthread_mutex_t rec_mu;     /* recorder calls, results and printing */
    pthread_cond_t cond;
    job_t **jobs;
    size_t njobs, next_take, loaded, next_print;
    int loading_done;
    json_t *jreplays, *jskipped;
    size_t ok, failed, skipped;
} run_t;

/* Microseconds of a monotonic-enough wall clock (timings are differences). */
static int64_t now_us(void) {
    return reel_now_us();
}

/* ---- the connection: socket + optional TLS, with a deadline per wait ---- */

typedef struct {
    int fd;
    reel_tls_t *tls;
    reel_buf_t cout; /* cipher bytes waiting to be sent */
    int timeout_ms;
    const char *phase; /* what we are waiting for, for the timeout message */
    int eof;           /* the socket reached end of stream */
} conn_t;

/* Waits for events on c->fd; REEL_IO with a timeout message if none come. */
static reel_rc conn_wait(conn_t *c, short events, reel_err_t *err) {
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, c->timeout_ms);
        if (n > 0)
            return REEL_OK;
        if (n == 0)
            return reel_err_set(err, REEL_IO, "upstream timed out after %d s %s",
                                c->timeout_ms / 1000, c->phase);
        if (errno != EINTR)
            return reel_err_errno(err, REEL_IO, errno, "poll");
    }
}

static reel_rc send_raw(conn_t *c, const uint8_t *p, size_t n, reel_err_t *err) {
    while (n) {
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

/* Sends the cipher bytes TLS has waiting. */
static reel_rc flush_tls(conn_t *c, reel_err_t *err) {
    while (reel_tls_cipher_pending(c->tls)) {
        reel_buf_reset(&c->cout);
        reel_tls_take_cipher(c->tls, &c->cout);
        reel_rc rc = send_raw(c, c->cout.data, c->cout.len, err);
        if (rc != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

/* Reads what the socket has (waiting for it); *n == 0 at end of stream. */
static reel_rc recv_raw(conn_t *c, uint8_t *buf, size_t cap, size_t *n, reel_err_t *err) {
    for (;;) {
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

/* Feeds the TLS layer what the socket has; marks EOF. */
static reel_rc feed_tls(conn_t *c, reel_err_t *err) {
    uint8_t buf[16384];
    size_t n = 0;
    reel_rc rc = recv_raw(c, buf, sizeof buf, &n, err);
    if (rc != REEL_OK)
        return rc;
    if (n == 0) {
        reel_tls_feed_eof(c->tls);
        return REEL_OK;
    }
    size_t off = 0;
    while (off < n) {
        size_t used = 0;
        reel_tls_feed_cipher(c->tls, buf + off, n - off, &used);
        off += used;
        if (used == 0) /* cannot happen while we read plaintext between feeds */
            return reel_err_set(err, REEL_LIMIT, "TLS input buffer full");
    }
    return REEL_OK;
}

static reel_rc tls_handshake(conn_t *c, reel_err_t *err) {
    for (;;) {
        reel_rc hs = reel_tls_handshake(c->tls, err);
        reel_err_t ferr;
        reel_err_clear(&ferr);
        reel_rc rc = flush_tls(c, &ferr); /* an alert may be waiting, even after an error */
        if (hs == REEL_OK || (hs != REEL_NEED_MORE))
            return hs == REEL_OK && rc != REEL_OK ? reel_err_set(err, rc, "%s", reel_err_str(&ferr))
                                                  : hs;
        if (rc != REEL_OK)
            return reel_err_set(err, rc, "%s", reel_err_str(&ferr));
        if (c->eof)
            return reel_err_set(err, REEL_IO,
                                "upstream closed the connection during the TLS "
                                "handshake");
        if ((rc = feed_tls(c, err)) != REEL_OK)
            return rc;
    }
}

static reel_rc conn_write(conn_t *c, const uint8_t *p, size_t n, reel_err_t *err) {
    if (c->tls == NULL)
        return send_raw(c, p, n, err);
    while (n) {
        size_t used = 0;
        reel_rc rc = reel_tls_write_plain(c->tls, p, n, &used, err);
        if (rc != REEL_OK)
            return rc == REEL_NEED_MORE ? reel_err_set(err, REEL_IO, "TLS not ready") : rc;
        p += used;
        n -= used;
        if ((rc = flush_tls(c, err)) != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

/* Reads plaintext; *n == 0 at end of stream. */
static reel_rc conn_read(conn_t *c, uint8_t *buf, size_t cap, size_t *n, reel_err_t *err) {
    if (c->tls == NULL)
        return recv_raw(c, buf, cap, n, err);
    for (;;) {
        reel_rc rc = reel_tls_read_plain(c->tls, buf, cap, n, err);
        reel_err_t ferr;
        reel_err_clear(&ferr);
        flush_tls(c, &ferr); /* key updates, alerts */
        if (rc != REEL_NEED_MORE)
            return rc;
        if (c->eof) {
            *n = 0;
            return REEL_OK;
        }
        if ((rc = feed_tls(c, err)) != REEL_OK)
            return rc;
    }
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
 * within the timeout). Sets *fd, the server's and our address. */
static reel_rc dial(const char *host, uint32_t port, int timeout_ms, int *fd, char server[64],
                    char client[64], int64_t *dns_us, int64_t *connect_us, reel_err_t *err) {
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
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
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
                struct pollfd p = {.fd = s, .events = POLLOUT};
                int n;
                while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
                    ;
                socklen_t len = sizeof e;
                if (n == 0)
                    e = ETIMEDOUT;
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
            *fd = s;
            rc = REEL_OK;
            break;
        }
        snprintf(last, sizeof last, "connecting to %s: %s", server, strerror(e));
        close(s);
    }
    *connect_us = now_us() - t1;
    freeaddrinfo(res);
    if (rc != REEL_OK)
        return reel_err_set(err, REEL_IO, "%s", last);
    return REEL_OK;
}

/* ---- the request as sent ---- */

static int ieq(const char *a, size_t alen, const char *b) {
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* The head to send: the recorded headers without hop-by-hop ones and
 * Content-Length (set to the body sent), Content-Encoding dropped for a
 * stored body that was decoded, Host added when missing. Fields point into
 * r and into hostbuf/clbuf. */
static reel_h1_header_t *send_headers(const reel_replay_req_t *r, size_t *n, char hostbuf[300],
                                      char clbuf[32]) {
    reel_h1_header_t *v = reel_calloc(r->n_headers + 2, sizeof *v);
    const reel_h1_header_t *rh = (const reel_h1_header_t *)(const void *)r->headers;
    size_t k = 0;
    int host = 0, length = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const reel_header_t *h = &r->headers[i];
        if (reel_h1_is_hop_by_hop_in(h->name, h->name_len, rh, r->n_headers))
            continue;
        if (ieq(h->name, h->name_len, "content-length")) {
            length = 1;
            continue;
        }
        if (r->body_decoded && ieq(h->name, h->name_len, "content-encoding"))
            continue;
        if (ieq(h->name, h->name_len, "host"))
            host = 1;
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
    if (length || r->body.len) {
        snprintf(clbuf, 32, "%zu", r->body.len);
        v[k++] = (reel_h1_header_t){"Content-Length", 14, clbuf, strlen(clbuf)};
    }
    *n = k;
    return v;
}

/* ---- running one job ---- */

typedef struct {
    run_t *run;
    job_t *job;
    reel_rflow_t *f;
    int64_t resp_start;
} exch_t;

static void locked(run_t *run) {
    pthread_mutex_lock(&run->rec_mu);
}
static void unlocked(run_t *run) {
    pthread_mutex_unlock(&run->rec_mu);
}

/* Reads and records the response. */
static reel_rc read_response(exch_t *x, conn_t *c, int is_head, reel_timings_t *t, int64_t sent,
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
            if (ev.head.interim)
                continue;
            c->phase = "reading the response body";
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
            x->resp_start = first ? first : now_us();
            locked(x->run);
            reel_recorder_response_head(x->f, &rs);
            unlocked(x->run);
            x->job->status = rs.status;
            free(x->job->reason);
            x->job->reason = reason;
        } else if (ev.type == REEL_H1_EV_BODY) {
            locked(x->run);
            reel_recorder_response_body(x->f, ev.data, ev.len);
            unlocked(x->run);
        } else if (ev.type == REEL_H1_EV_END || ev.type == REEL_H1_EV_UPGRADE) {
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

static void run_job(run_t *run, job_t *job) {
    reel_replay_req_t *r = &job->req;
    reel_err_t err;
    reel_err_clear(&err);
    reel_timings_t t = {-1, -1, -1, -1, -1, -1, -1};
    conn_t c = {.fd = -1, .timeout_ms = run->timeout_ms, .phase = "connecting"};
    reel_buf_init(&c.cout, 0);
    reel_buf_t head;
    reel_buf_init(&head, 0);
    char server[64] = "", client[64] = "";
    int64_t t0 = now_us(), sent = 0;
    uint32_t port = reel_replay_port(r);
    int https = strcmp(r->scheme, "https") == 0;
    exch_t x = {.run = run, .job = job};

    reel_rc rc =
        dial(r->host, port, run->timeout_ms, &c.fd, server, client, &t.dns_us, &t.connect_us, &err);
    if (rc != REEL_OK)
        server[0] = '\0'; /* no origin was reached (the error names the address tried) */

    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP,
                             .client_addr = client[0] ? client : NULL,
                             .server_addr = rc == REEL_OK ? server : NULL,
                             .source = "replay",
                             .time_us = t0,
                             .replay_of = r->id,
                             .replay_session = run->replay_session,
                             .replay_uuid = r->uuid};
    char hostbuf[300], clbuf[32];
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
    locked(run);
    x.f = reel_recorder_flow_start(run->rec, &info);
    job->new_id = reel_rflow_id(x.f);
    reel_recorder_request_head(x.f, &rq);
    if (r->body.len)
        reel_recorder_request_body(x.f, r->body.data, r->body.len);
    unlocked(run);
    if (rc != REEL_OK)
        goto out;

    if (https) {
        int64_t ts = now_us();
        reel_tls_client_opts_t to = {.host = r->host, .insecure = !run->verify};
        c.phase = "during the TLS handshake";
        if ((rc = reel_tls_new_client(run->tls, &to, &c.tls, &err)) != REEL_OK ||
            (rc = tls_handshake(&c, &err)) != REEL_OK)
            goto out;
        t.ssl_us = now_us() - ts;
    }
    reel_server_conn_t sc = {.conn_id = job->new_id,
                             .address = server,
                             .sni = c.tls ? reel_tls_sni(c.tls) : NULL,
                             .alpn = c.tls ? reel_tls_alpn(c.tls) : NULL,
                             .tls_version = c.tls ? reel_tls_version(c.tls) : NULL,
                             .cipher = c.tls ? reel_tls_cipher(c.tls) : NULL};
    locked(run);
    reel_recorder_server_conn(x.f, &sc);
    unlocked(run);

    reel_h1_head_t h = {.method = r->method,
                        .method_len = strlen(r->method),
                        .target = r->target[0] ? r->target : "/",
                        .target_len = r->target[0] ? strlen(r->target) : 1,
                        .version_major = 1,
                        .version_minor = 1,
                        .headers = hs,
                        .nheaders = nh};
    if ((rc = reel_h1_write_request_head(&head, &h)) != REEL_OK) {
        rc = reel_err_set(&err, rc,
                          "the recorded request head cannot be sent as HTTP/1.1 "
                          "(a bad method, target or header)");
        goto out;
    }
    int64_t ts = now_us();
    c.phase = "sending the request";
    if ((rc = conn_write(&c, head.data, head.len, &err)) != REEL_OK ||
        (r->body.len && (rc = conn_write(&c, r->body.data, r->body.len, &err)) != REEL_OK))
        goto out;
    sent = now_us();
    t.send_us = sent - ts;
    rc = read_response(&x, &c, strcmp(r->method, "HEAD") == 0, &t, sent, &err);
out:;
    reel_flow_end_t fe = {.error = rc != REEL_OK ? reel_err_str(&err) : NULL,
                          .timings = &t,
                          .request_end_us = sent,
                          .response_start_us = x.resp_start,
                          .server_addr = server[0] ? server : NULL};
    locked(run);
    reel_recorder_flow_finish(x.f, &fe);
    if (rc != REEL_OK) {
        job->failed = 1;
        job->error = reel_strdup(reel_err_str(&err));
    }
    unlocked(run);
    free(hs);
    reel_buf_free(&head);
    reel_buf_free(&c.cout);
    reel_tls_free(c.tls);
    if (c.fd >= 0)
        close(c.fd);
}

/* ---- output, in job order ---- */

/* A JSON string of recorded text; escaped when it is not UTF-8. */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j == NULL) {
        char *e = reel_cli_escaped(s, strlen(s), REEL_CLI_ESC);
        j = json_string(e);
        free(e);
    }
    return j;
}

/* Prints the results that are complete and next in order. Under rec_mu. */
static void print_ready(run_t *run) {
    while (run->next_print < run->loaded && run->jobs[run->next_print]->done) {
        job_t *j = run->jobs[run->next_print++];
        if (j->skipped) {
            run->skipped++;
            if (run->cli->json) {
                json_array_append_new(
                    run->jskipped,
                    json_pack("{s:I, s:o}", "of", (json_int_t)j->req.id, "why", jstr(j->error)));
            } else {
                printf("#%llu skipped: ", (unsigned long long)j->req.id);
                reel_cli_put(j->error);
                printf("\n");
            }
        } else {
            if (j->failed)
                run->failed++;
            else
                run->ok++;
            if (run->cli->json) {
                json_t *o = json_pack("{s:I, s:I, s:o, s:o}", "of", (json_int_t)j->req.id, "id",
                                      (json_int_t)j->new_id, "method", jstr(j->req.method), "url",
                                      jstr(j->url));
                json_object_set_new(o, "status", j->status ? json_integer(j->status) : json_null());
                json_object_set_new(o, "error", j->error ? jstr(j->error) : json_null());
                json_array_append_new(run->jreplays, o);
            } else {
                printf("#%llu -> #%llu ", (unsigned long long)j->req.id,
                       (unsigned long long)j->new_id);
                reel_cli_put(j->req.method);
                printf(" ");
                reel_cli_put(j->url);
                if (j->status) {
                    printf(" %u ", j->status);
                    reel_cli_put(j->reason);
                }
                if (j->error) {
                    printf(" error: ");
                    reel_cli_put(j->error);
                }
                printf("\n");
            }
        }
        fflush(stdout);
        reel_replay_req_free(&j->req);
    }
}

static void *worker(void *arg) {
    run_t *run = arg;
    locked(run);
    for (;;) {
        while (run->next_take == run->loaded && !run->loading_done)
            pthread_cond_wait(&run->cond, &run->rec_mu);
        if (run->next_take == run->loaded)
            break;
        job_t *j = run->jobs[run->next_take++];
        pthread_cond_broadcast(&run->cond); /* room for the loader */
        if (!j->skipped) {
            unlocked(run);
            run_job(run, j);
            locked(run);
        }
        reel_buf_free(&j->req.body); /* sent; results may wait for earlier jobs */
        j->done = 1;
        print_ready(run);
    }
    unlocked(run);
    return NULL;
}

/* The URL of a request, as the index writes it. */
static char *req_url(const reel_replay_req_t *r) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    uint32_t port = reel_replay_port(r);
    int def = port == (strcmp(r->scheme, "https") == 0 ? 443u : 80u);
    int v6 = r->host && strchr(r->host, ':') != NULL;
    reel_buf_printf(&b, "%s://%s%s%s", r->scheme ? r->scheme : "?", v6 ? "[" : "",
                    r->host ? r->host : "", v6 ? "]" : "");
    if (!def)
        reel_buf_printf(&b, ":%u", port);
    reel_buf_puts(&b, r->target && r->target[0] ? r->target : "/");
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Opens a session to record into; a clear refusal when a proxy records it. */
static reel_session_t *open_target(reel_cli_t *cli, const char *name, int create) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    reel_rc rc = reel_session_open(reel_cli_home(cli), name,
                                   REEL_OPEN_RECORD | (create ? REEL_OPEN_CREATE : 0), &s, &err);
    if (rc == REEL_LOCKED) {
        reel_cli_fail(cli,
                      "%s; replay records into a session no proxy is recording: stop that "
                      "proxy, or replay into another session with --into",
                      reel_err_str(&err));
        return NULL;
    }
    if (rc != REEL_OK) {
        reel_cli_fail(cli, "%s", reel_err_str(&err));
        return NULL;
    }
    const char *note = reel_session_recovery_note(s);
    if (note[0])
        fprintf(stderr, "reel: session '%s': %s\n", name, note);
    return s;
}

int reel_cmd_replay(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_INTO = 0x2001, OPT_CONC, OPT_SET };
    static const struct option opts[] = {{"into", required_argument, NULL, OPT_INTO},
                                         {"concurrency", required_argument, NULL, OPT_CONC},
                                         {"set", required_argument, NULL, OPT_SET},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *into = NULL;
    long conc = 1;
    const char **sets = NULL;
    size_t nsets = 0;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == OPT_INTO) {
            into = optarg;
            continue;
        }
        if (c == OPT_SET) {
            sets = reel_realloc(sets, (nsets + 1) * sizeof *sets);
            sets[nsets++] = optarg;
            continue;
        }
        if (c == OPT_CONC) {
            char *end = NULL;
            errno = 0;
            conc = strtol(optarg, &end, 10);
            if (optarg[0] == '\0' || *end != '\0' || errno || conc < 1 || conc > CONCURRENCY_MAX) {
                free(sets);
                return reel_cli_usage(cli, "--concurrency takes a number from 1 to %d, not '%s'",
                                      CONCURRENCY_MAX, optarg);
            }
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0) {
            free(sets);
            return rc;
        }
    }
    if (argc - optind < 2) {
        free(sets);
        return reel_cli_usage(cli, argc - optind == 0 ? "missing SESSION" : "missing ID|FILTER");
    }
    if (argc - optind > 2) {
        free(sets);
        return reel_cli_usage(cli, "unexpected argument '%s' (quote a filter with spaces)",
                              argv[optind + 2]);
    }
    const char *sname = argv[optind], *what = argv[optind + 1];
    int same = into == NULL || strcmp(into, sname) == 0;

    int exit_code = REEL_EXIT_OK;
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *src = NULL, *dst = NULL;
    reel_config_t *cfg = NULL;
    reel_tls_ctx_t *tls = NULL;
    reel_recorder_t *rec = NULL;
    uint64_t *ids = NULL;
    size_t nids = 0;
    run_t run = {.cli = cli};
    pthread_mutex_init(&run.rec_mu, NULL);
    pthread_cond_init(&run.cond, NULL);
    pthread_t threads[CONCURRENCY_MAX];
    size_t nthreads = 0;

    if (reel_session_name_check(sname, &err) != REEL_OK ||
        (!same && reel_session_name_check(into, &err) != REEL_OK)) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    src = same ? open_target(cli, sname, 0) : reel_cli_open(cli, sname, REEL_OPEN_READ);
    if (src == NULL) {
        exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    /* The upstream settings: user file < SESSION's overlay < --set. */
    cfg = reel_config_new();
    char *warnings = NULL;
    if (reel_config_load_user(cfg, NULL, &err) != REEL_OK ||
        reel_config_load_overlay(cfg, reel_session_db(src), &warnings, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    if (warnings)
        fprintf(stderr, "reel: %s\n", warnings);
    free(warnings);
    for (size_t i = 0; i < nsets; i++)
        if (reel_config_set_cli(cfg, sets[i], &err) != REEL_OK) {
            exit_code = reel_cli_usage(cli, "--set %s: %s", sets[i], reel_err_str(&err));
            goto out;
        }
    if (reel_replay_select(src, what, &ids, &nids, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    if (nids == 0) {
        exit_code = reel_cli_fail(cli, "no flow of session '%s' matches '%s'", sname, what);
        goto out;
    }
    const char *ca = reel_config_get(cfg, "upstream_trusted_ca", NULL);
    if (reel_tls_ctx_new_client(ca && ca[0] ? ca : NULL, false, &tls, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "upstream_trusted_ca: %s", reel_err_str(&err));
        goto out;
    }
    if (!same && (dst = open_target(cli, into, 1)) == NULL) {
        exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    reel_recorder_opts_t ro;
    reel_recorder_opts_default(&ro);
    ro.capture = REEL_CAPTURE_LOSSLESS;
    ro.body_limit = (uint64_t)reel_config_get_int(cfg, "body_limit");
    if (reel_recorder_open(same ? src : dst, &ro, &rec, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    run.rec = rec;
    run.tls = tls;
    run.verify = reel_config_get_bool(cfg, "upstream_cert_verify");
    run.timeout_ms = (int)reel_config_get_int(cfg, "upstream_timeout") * 1000;
    run.replay_session = same ? NULL : sname;
    run.jobs = reel_calloc(nids, sizeof *run.jobs);
    run.njobs = nids;
    run.jreplays = json_array();
    run.jskipped = json_array();
    for (size_t i = 0; i < (size_t)conc && i < nids; i++) {
        if (pthread_create(&threads[nthreads], NULL, worker, &run) != 0)
            break;
        nthreads++;
    }
    /* Load requests a few ahead of the workers; a flow that cannot be sent
     * is settled here. */
    for (size_t i = 0; i < nids; i++) {
        job_t *j = reel_calloc(1, sizeof *j);
        reel_err_t lerr;
        reel_err_clear(&lerr);
        if (reel_replay_load(src, ids[i], &j->req, &lerr) != REEL_OK) {
            j->skipped = 1;
            j->error = reel_strdup(reel_err_str(&lerr));
        } else if (j->req.why_not) {
            j->skipped = 1;
            j->error = reel_strdup(j->req.why_not);
        }
        j->req.id = ids[i];
        j->url = req_url(&j->req);
        locked(&run);
        while (nthreads && run.loaded - run.next_take > (size_t)conc)
            pthread_cond_wait(&run.cond, &run.rec_mu);
        run.jobs[run.loaded++] = j;
        if (nthreads == 0) { /* no thread started: send it from here */
            run.next_take++;
            if (!j->skipped) {
                unlocked(&run);
                run_job(&run, j);
                locked(&run);
            }
            reel_buf_free(&j->req.body);
            j->done = 1;
            print_ready(&run);
        }
        pthread_cond_broadcast(&run.cond);
        unlocked(&run);
    }
    locked(&run);
    run.loading_done = 1;
    pthread_cond_broadcast(&run.cond);
    unlocked(&run);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    locked(&run);
    print_ready(&run);
    unlocked(&run);
    reel_rc closed = reel_recorder_close(rec, &err);
    rec = NULL;
    if (closed != REEL_OK)
        exit_code = reel_cli_fail(cli, "recording the new flows: %s", reel_err_str(&err));
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:O, s:O, s:I, s:I}", "session", sname, "into",
                              same ? sname : into, "replays", run.jreplays, "skipped", run.jskipped,
                              "ok", (json_int_t)run.ok, "failed", (json_int_t)run.failed);
        int jr = reel_cli_json_out(o);
        if (exit_code == REEL_EXIT_OK)
            exit_code = jr;
    } else {
        fprintf(stderr, "replayed %zu of %zu %s into %s: %zu answered, %zu failed",
                run.ok + run.failed, nids, nids == 1 ? "flow" : "flows", same ? sname : into,
                run.ok, run.failed);
        if (run.skipped)
            fprintf(stderr, ", %zu skipped", run.skipped);
        fprintf(stderr, "\n");
    }
    if (exit_code == REEL_EXIT_OK && (run.failed || run.ok == 0))
        exit_code = REEL_EXIT_ERROR;
out:
    reel_recorder_close(rec, NULL);
    for (size_t i = 0; i < run.loaded; i++) {
        reel_replay_req_free(&run.jobs[i]->req);
        free(run.jobs[i]->url);
        free(run.jobs[i]->reason);
        free(run.jobs[i]->error);
        free(run.jobs[i]);
    }
    free(run.jobs);
    json_decref(run.jreplays);
    json_decref(run.jskipped);
    pthread_mutex_destroy(&run.rec_mu);
    pthread_cond_destroy(&run.cond);
    reel_tls_ctx_free(tls);
    reel_config_free(cfg);
    free(ids);
    free(sets);
    reel_session_close(dst);
    reel_session_close(src);
    return exit_code;
}
