/* loadgen: a small HTTP/1.1 load generator that can speak to a forward
 * proxy, for bench/proxy/run.sh.
 *
 *   loadgen --url http[s]://HOST:PORT/PATH [--proxy HOST:PORT] [--cafile PEM]
 *           [--new] [-c CONNS] [-d SECONDS | -n REQUESTS] [--rate REQ_PER_S]
 *           [--and-direct] [--label TEXT]
 *
 * A thread per connection, blocking sockets, OpenSSL for TLS; paced
 * keep-alive over plain HTTP runs on one epoll thread instead (below).
 *
 * - Without --proxy it talks to the origin directly (origin-form requests).
 * - With --proxy and an http:// URL it sends absolute-form requests
 *   ("GET http://host:port/path HTTP/1.1") to the proxy, as a browser does.
 * - With --proxy and an https:// URL it sends "CONNECT host:port", expects
 *   200, then does a TLS handshake inside the tunnel (verifying the
 *   certificate against --cafile and the host name or IP address) and sends
 *   origin-form requests inside it.
 * - Default: keep-alive; each connection sends its next request as soon as
 *   the previous response is complete. --new: every request opens a new
 *   connection (CONNECT, TLS handshake without session resumption, one GET
 *   with "Connection: close", close), so the rate is new connections per
 *   second.
 * - --rate R paces the requests: connection i of C sends request k at
 *   start + (k * C + i) / R, and the latency of a request is measured from
 *   that scheduled time, so a stalled server is charged for the requests
 *   it delayed (no coordinated omission). Without --rate, latency is
 *   measured from the moment the request is written.
 * - Paced keep-alive over plain HTTP (--rate without --new or https) runs
 *   all C connections on one thread with epoll, not a thread each: woken
 *   once per batch of events instead of once per request per thread, its
 *   own scheduling (50 threads on 2 cores) no longer shows in the latency
 *   it measures (it was most of a p99 of 10 ms straight to nginx). Its CPU
 *   per request stays about the same: nearly all of it is the kernel's
 *   loopback TCP work in send and recv.
 * - --and-direct (with --proxy, --rate and -d, http:// only) runs as many
 *   connections again straight to the origin, in the same time, on the
 *   same schedule shifted by half a slot (the two sets' requests
 *   alternate): the latency a proxy adds is then the difference of two
 *   figures taken under the same load of the machine, not of two runs
 *   seconds apart on a host whose neighbours come and go. Their figures
 *   follow on the same line, each key prefixed "direct_".
 *
 * Responses must carry Content-Length (or end at connection close); bodies
 * are read and discarded. Output: a human-readable summary on stderr and
 * one line of key=value pairs on stdout (requests, errors, seconds, rate,
 * mib_per_s, p50_us, p90_us, p99_us, p999_us, max_us, and client_cpu_us:
 * this process's own CPU time per completed request). Exit status 1 if no
 * request completed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_ERRORS_PER_CONN 100

typedef struct {
    char host[256];
    int port;
    char path[2048];
    int tls;
} url_t;

static struct {
    url_t url;
    int have_proxy;
    char proxy_host[256];
    int proxy_port;
    int new_conn;
    int conns;
    double duration;
    long long requests;
    double rate;
    const char *cafile;
    const char *label;
    SSL_CTX *ctx;
    char req[4096];
    size_t req_len;
    int and_direct; /* --and-direct: a second set of connections to the origin */
    char req_direct[4096];
    size_t req_direct_len;
    char connect_req[600];
    size_t connect_req_len;
    struct timespec start;
    double deadline; /* seconds after start, 0 = none */
} G;

static atomic_llong remaining;
static atomic_int stop_flag;

typedef struct {
    pthread_t thread;
    int id;
    long long done, errors;
    uint64_t body_bytes;
    uint32_t *lat;
    size_t nlat, cap;
    char first_error[256];
    double finished_at;
} worker_t;

typedef struct {
    int fd;
    SSL *ssl;
    char buf[65536];
    size_t off, len;
} conn_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - G.start.tv_sec) + (double)(ts.tv_nsec - G.start.tv_nsec) / 1e9;
}

static void sleep_until(double t) {
    struct timespec ts = G.start;
    double whole = (double)(long long)t;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((t - whole) * 1e9);
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_nsec -= 1000000000L;
        ts.tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --url http[s]://HOST:PORT/PATH [--proxy HOST:PORT] [--cafile PEM]\n"
            "               [--new] [-c CONNS] [-d SECONDS | -n REQUESTS] [--rate REQ_PER_S]\n"
            "               [--and-direct] [--label TEXT]\n");
    exit(2);
}

static int parse_hostport(const char *s, char *host, size_t hostsz, int *port) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= hostsz)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static int parse_url(const char *s, url_t *u) {
    const char *rest;
    if (strncmp(s, "http://", 7) == 0) {
        u->tls = 0;
        rest = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        u->tls = 1;
        rest = s + 8;
    } else {
        return -1;
    }
    const char *slash = strchr(rest, '/');
    char hp[300];
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n >= sizeof hp)
        return -1;
    memcpy(hp, rest, n);
    hp[n] = 0;
    if (parse_hostport(hp, u->host, sizeof u->host, &u->port) != 0)
        return -1;
    snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
    return 0;
}

static int is_ip_literal(const char *h) {
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static void set_error(worker_t *w, const char *fmt, const char *detail) {
    w->errors++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, fmt, detail ? detail : "");
}

static int tcp_connect(const char *host, int port, worker_t *w) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        set_error(w, "getaddrinfo: %s", gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        set_error(w, "connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void conn_close(conn_t *c) {
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* sends close_notify; does not wait for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->off = c->len = 0;
}

static int conn_write(conn_t *c, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k;
        if (c->ssl) {
            int r = SSL_write(c->ssl, p, (int)n);
            k = r > 0 ? r : -1;
        } else {
            k = send(c->fd, p, n, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR)
                continue;
        }
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads more bytes into c->buf (compacting first). Returns bytes read, 0 at
 * EOF, -1 on error. */
static ssize_t conn_fill(conn_t *c) {
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof c->buf)
        return -1;
    for (;;) {
        ssize_t k;
        if (c->ssl) {
            int r = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
            }
            k = r;
        } else {
            k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return -1;
        }
        c->len += (size_t)k;
        return k;
    }
}

typedef struct {
    int status;
    long long content_length; /* -1 = absent */
    int close;
} resp_t;

static int ieq_prefix(const char *line, size_t n, const char *name) {
    size_t m = strlen(name);
    return n >= m && strncasecmp(line, name, m) == 0;
}

/* Parses the response head at start, which ends at end ("\r\n\r\n").
 * Returns 0, -1 if it is not a response head, -2 if chunked. */
static int parse_head(const char *start, const char *end, resp_t *r) {
    size_t head_len = (size_t)(end - start) + 4;
    r->status = 0;
    r->content_length = -1;
    r->close = 0;
    if (head_len < 12 || strncmp(start, "HTTP/1.", 7) != 0)
        return -1;
    r->status = atoi(start + 9);
    if (start[7] == '0')
        r->close = 1;
    const char *line = (const char *)memchr(start, '\n', head_len) + 1;
    while (line < end) {
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        size_t n = (size_t)(eol - line);
        if (ieq_prefix(line, n, "content-length:"))
            r->content_length = strtoll(line + 15, NULL, 10);
        else if (ieq_prefix(line, n, "connection:")) {
            if (memmem(line, n, "close", 5))
                r->close = 1;
        } else if (ieq_prefix(line, n, "transfer-encoding:"))
            return -2; /* chunked responses are not supported */
        line = eol + 2;
    }
    return 0;
}

/* Reads and parses a response head; leaves c->off at the first body byte. */
static int read_head(conn_t *c, resp_t *r) {
    for (;;) {
        char *start = c->buf + c->off;
        size_t avail = c->len - c->off;
        char *end = avail >= 4 ? memmem(start, avail, "\r\n\r\n", 4) : NULL;
        if (end) {
            int rc = parse_head(start, end, r);
            if (rc != 0)
                return rc;
            c->off += (size_t)(end - start) + 4;
            return 0;
        }
        ssize_t k = conn_fill(c);
        if (k <= 0)
            return -1;
    }
}

/* Reads and discards the body; returns its length or -1. */
static long long read_body(conn_t *c, const resp_t *r) {
    long long got = 0;
    if (r->content_length >= 0) {
        while (got < r->content_length) {
            size_t avail = c->len - c->off;
            if (avail == 0) {
                c->off = c->len = 0;
                if (conn_fill(c) <= 0)
                    return -1;
                continue;
            }
            long long need = r->content_length - got;
            size_t take = (long long)avail < need ? avail : (size_t)need;
            c->off += take;
            got += (long long)take;
        }
        return got;
    }
    if (!r->close)
        return -1;
    for (;;) {
        got += (long long)(c->len - c->off);
        c->off = c->len = 0;
        ssize_t k = conn_fill(c);
        if (k == 0)
            return got;
        if (k < 0)
            return -1;
    }
}

static int conn_open(conn_t *c, worker_t *w) {
    c->off = c->len = 0;
    c->ssl = NULL;
    c->fd = G.have_proxy ? tcp_connect(G.proxy_host, G.proxy_port, w)
                         : tcp_connect(G.url.host, G.url.port, w);
    if (c->fd < 0)
        return -1;
    if (G.have_proxy && G.url.tls) {
        if (conn_write(c, G.connect_req, G.connect_req_len) != 0) {
            set_error(w, "CONNECT write failed%s", NULL);
            goto fail;
        }
        resp_t r;
        if (read_head(c, &r) != 0 || r.status != 200) {
            set_error(w, "CONNECT not answered 200%s", NULL);
            goto fail;
        }
        if (c->off != c->len) {
            set_error(w, "bytes after the CONNECT response%s", NULL);
            goto fail;
        }
        c->off = c->len = 0;
    }
    if (G.url.tls) {
        c->ssl = SSL_new(G.ctx);
        SSL_set_fd(c->ssl, c->fd);
        if (is_ip_literal(G.url.host)) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), G.url.host);
        } else {
            SSL_set_tlsext_host_name(c->ssl, G.url.host);
            SSL_set1_host(c->ssl, G.url.host);
        }
        if (SSL_connect(c->ssl) != 1) {
            char e[200];
            unsigned long code = ERR_get_error();
            ERR_error_string_n(code, e, sizeof e);
            ERR_clear_error();
            set_error(w, "TLS handshake: %s", code ? e : "connection closed");
            goto fail;
        }
    }
    return 0;
fail:
    conn_close(c);
    return -1;
}

static void record_latency(worker_t *w, double seconds) {
    if (w->nlat == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 65536;
        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        if (!w->lat) {
            perror("realloc");
            exit(1);
        }
    }
    double us = seconds * 1e6;
    w->lat[w->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    conn_t *c = calloc(1, sizeof *c);
    c->fd = -1;
    double interval = G.rate > 0 ? (double)G.conns / G.rate : 0;
    double offset = G.rate > 0 ? (double)w->id / G.rate : 0;
    long long k = 0;
    while (!atomic_load(&stop_flag)) {
        if (G.requests > 0 && atomic_fetch_sub(&remaining, 1) <= 0)
            break;
        double t0 = 0;
        if (G.rate > 0) {
            t0 = offset + (double)k * interval;
            k++;
            if (G.deadline > 0 && t0 >= G.deadline)
                break;
            if (now_s() < t0)
                sleep_until(t0);
        }
        if (c->fd < 0 && conn_open(c, w) != 0) {
            if (w->errors >= MAX_ERRORS_PER_CONN)
                break;
            continue;
        }
        if (G.rate <= 0)
            t0 = now_s();
        resp_t r;
        int hr;
        if (conn_write(c, G.req, G.req_len) != 0) {
            set_error(w, "request write failed%s", NULL);
            conn_close(c);
        } else if ((hr = read_head(c, &r)) != 0) {
            set_error(w, "%s", hr == -2 ? "chunked response (unsupported)" : "no response head");
            conn_close(c);
        } else {
            long long body = read_body(c, &r);
            double t1 = now_s();
            if (body < 0) {
                set_error(w, "response body cut short%s", NULL);
                conn_close(c);
            } else {
                if (G.deadline > 0 && t1 > G.deadline)
                    break; /* finished after the deadline: not counted */
                if (r.status != 200)
                    set_error(w, "status %s", r.status == 502 ? "502" : "not 200");
                else {
                    w->done++;
                    w->body_bytes += (uint64_t)body;
                    record_latency(w, t1 - t0);
                }
                if (G.new_conn || r.close)
                    conn_close(c);
            }
        }
        if (w->errors >= MAX_ERRORS_PER_CONN)
            break;
        if (G.deadline > 0 && now_s() >= G.deadline)
            break;
    }
    conn_close(c);
    free(c);
    w->finished_at = now_s();
    return NULL;
}

/* Paced keep-alive over plain HTTP on one thread (see the top): the same
 * schedule and the same accounting as worker_main with --rate, for all
 * connections at once (run_paced). */
typedef struct {
    int fd;
    int grp;        /* 0: as asked (--proxy or not), 1: straight to the origin */
    int busy;       /* a request is out */
    long long k;    /* requests sent on this connection */
    double due;     /* when its next request is scheduled */
    double sched;   /* when the one out was scheduled */
    long long left; /* body bytes still to come, -1 while in the head */
    long long clen; /* the body's length */
    int close;      /* the response said Connection: close */
    size_t len;     /* head bytes so far */
    char head[8192];
} pconn_t;

static void paced_drop(int ep, pconn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->busy = 0;
    c->len = 0;
    c->left = -1;
}

/* When request k of connection i of group grp is due: the schedule of
 * worker_main; the direct group half a slot later, so that the two sets'
 * requests alternate evenly. */
static double paced_due(long long k, int i, int grp) {
    return ((double)k * G.conns + i + (grp ? 0.5 : 0)) / G.rate;
}

/* Sends c's next request (scheduled at c->due), connecting first if need
 * be. id: c's index in the whole array (its epoll tag). */
static void paced_send(int ep, pconn_t *c, int id, worker_t *w) {
    int proxied = G.have_proxy && c->grp == 0;
    const char *req = c->grp ? G.req_direct : G.req;
    size_t req_len = c->grp ? G.req_direct_len : G.req_len;
    if (c->fd < 0) {
        c->fd = proxied ? tcp_connect(G.proxy_host, G.proxy_port, w)
                        : tcp_connect(G.url.host, G.url.port, w);
        if (c->fd >= 0) {
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)id};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
    }
    c->sched = c->due;
    c->k++;
    c->due = paced_due(c->k, id % G.conns, c->grp);
    if (c->fd < 0)
        return; /* counted as an error; the next one tries again */
    /* a request of a few hundred bytes into an idle socket's buffer */
    if (send(c->fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len) {
        set_error(w, "request write failed%s", NULL);
        paced_drop(ep, c);
        return;
    }
    c->busy = 1;
    c->len = 0;
    c->left = -1;
}

/* Reads what c has; returns 1 when its response is complete. */
static int paced_read(int ep, pconn_t *c, worker_t *w) {
    char buf[65536];
    for (;;) {
        ssize_t k = recv(c->fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (k <= 0 || !c->busy) {
            if (c->busy || k > 0)
                set_error(w, "%s", k > 0 ? "bytes no request asked for" : "response cut short");
            paced_drop(ep, c);
            return 0;
        }
        size_t off = 0;
        if (c->left < 0) {
            size_t take = (size_t)k < sizeof c->head - c->len ? (size_t)k : sizeof c->head - c->len;
            memcpy(c->head + c->len, buf, take);
            size_t from = c->len >= 3 ? c->len - 3 : 0;
            c->len += take;
            char *end = memmem(c->head + from, c->len - from, "\r\n\r\n", 4);
            if (end == NULL) {
                if (c->len == sizeof c->head) {
                    set_error(w, "response head over 8 KiB%s", NULL);
                    paced_drop(ep, c);
                    return 0;
                }
                continue;
            }
            resp_t r;
            int hr = parse_head(c->head, end, &r);
            if (hr != 0 || r.content_length < 0 || r.status != 200) {
                set_error(w, "%s",
                          hr == -2          ? "chunked response (unsupported)"
                          : hr != 0         ? "no response head"
                          : r.status != 200 ? "status not 200"
                                            : "no Content-Length");
                paced_drop(ep, c);
                return 0;
            }
            size_t head_len = (size_t)(end - c->head) + 4;
            off = take - (c->len - head_len); /* first body byte in buf */
            c->left = c->clen = r.content_length;
            c->close = r.close;
        }
        if ((long long)((size_t)k - off) > c->left) {
            set_error(w, "bytes after the response%s", NULL);
            paced_drop(ep, c);
            return 0;
        }
        c->left -= (long long)((size_t)k - off);
        if (c->left == 0) {
            c->busy = 0;
            if (c->close)
                paced_drop(ep, c);
            return 1;
        }
    }
}

/* ws[0]: the connections as asked; ws[1] with --and-direct: as many
 * straight to the origin, on the same schedule, in the same time. */
static void run_paced(worker_t *ws) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int n = G.conns * (G.and_direct ? 2 : 1);
    pconn_t *cs = calloc((size_t)n, sizeof *cs);
    if (ep < 0 || cs == NULL) {
        perror("loadgen");
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        cs[i].fd = -1;
        cs[i].left = -1;
        cs[i].grp = i >= G.conns;
        cs[i].due = paced_due(0, i % G.conns, cs[i].grp);
    }
    /* the last responses get this long after the deadline; late ones are
     * not counted (as worker_main) */
    double grace = 2.0;
    struct epoll_event evs[256];
    for (;;) {
        double now = now_s();
        int busy = 0;
        double next = G.deadline + grace;
        for (int i = 0; i < n; i++) {
            pconn_t *c = &cs[i];
            if (!c->busy && c->due <= now && c->due < G.deadline &&
                ws[c->grp].errors < (long long)MAX_ERRORS_PER_CONN * G.conns)
                paced_send(ep, c, i, &ws[c->grp]);
            if (c->busy)
                busy++;
            else if (c->due < G.deadline && c->due < next)
                next = c->due;
        }
        if (now >= G.deadline + grace || (busy == 0 && next >= G.deadline))
            break;
        double wait = next - now;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        int ne = epoll_pwait2(ep, evs, 256, wait > 0 ? &ts : &(struct timespec){0, 0}, NULL);
        if (ne < 0 && errno != EINTR) {
            perror("epoll_pwait2");
            exit(1);
        }
        for (int e = 0; e < ne; e++) {
            pconn_t *c = &cs[evs[e].data.u32];
            worker_t *w = &ws[c->grp];
            if (c->fd < 0 || !paced_read(ep, c, w))
                continue;
            double t1 = now_s();
            if (t1 > G.deadline)
                continue; /* finished after the deadline: not counted */
            w->done++;
            w->body_bytes += (uint64_t)c->clen;
            record_latency(w, t1 - c->sched);
        }
    }
    for (int i = 0; i < n; i++)
        paced_drop(ep, &cs[i]);
    free(cs);
    close(ep);
    ws[0].finished_at = ws[1].finished_at = now_s();
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Prints the figures of workers ws[0..n): a summary on stderr, key=value
 * pairs (each key after prefix) on stdout, client_cpu_us when cpu_us >= 0.
 * Returns the requests completed. */
static long long report(worker_t *ws, int n, const char *prefix, double cpu_us) {
    long long done = 0, errors = 0;
    uint64_t bytes = 0;
    size_t nlat = 0;
    double finished = 0;
    const char *first_error = NULL;
    for (int i = 0; i < n; i++) {
        done += ws[i].done;
        errors += ws[i].errors;
        bytes += ws[i].body_bytes;
        nlat += ws[i].nlat;
        if (ws[i].finished_at > finished)
            finished = ws[i].finished_at;
        if (!first_error && ws[i].first_error[0])
            first_error = ws[i].first_error;
    }
    double seconds = G.duration > 0 ? G.duration : finished;
    uint32_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (ws[i].nlat)
            memcpy(all + at, ws[i].lat, ws[i].nlat * sizeof *all);
        at += ws[i].nlat;
    }
    qsort(all, nlat, sizeof *all, cmp_u32);
#define PCT(p) (nlat ? all[(size_t)((double)(nlat - 1) * (p))] : 0u)
    double rate = seconds > 0 ? (double)done / seconds : 0;
    double mibs = seconds > 0 ? (double)bytes / seconds / 1048576.0 : 0;
    fprintf(stderr,
            "loadgen %s%s: %lld requests, %lld errors in %.2f s: %.1f req/s, %.2f MiB/s of bodies;"
            " latency p50 %u us, p90 %u us, p99 %u us, p99.9 %u us, max %u us\n",
            prefix, G.label, done, errors, seconds, rate, mibs, PCT(0.50), PCT(0.90), PCT(0.99),
            PCT(0.999), nlat ? all[nlat - 1] : 0u);
    if (first_error)
        fprintf(stderr, "loadgen %s%s: first error: %s\n", prefix, G.label, first_error);
    printf("%s%srequests=%lld %serrors=%lld %sseconds=%.3f %srate=%.1f %smib_per_s=%.2f "
           "%sp50_us=%u %sp90_us=%u %sp99_us=%u %sp999_us=%u %smax_us=%u",
           *prefix ? " " : "", prefix, done, prefix, errors, prefix, seconds, prefix, rate, prefix,
           mibs, prefix, PCT(0.50), prefix, PCT(0.90), prefix, PCT(0.99), prefix, PCT(0.999),
           prefix, nlat ? all[nlat - 1] : 0u);
    if (cpu_us >= 0)
        printf(" client_cpu_us=%.1f", done > 0 ? cpu_us / (double)done : 0);
#undef PCT
    free(all);
    return done;
}

/* The GET of G.url into buf: absolute-form (to a proxy) or origin-form,
 * with the extra header lines extra. Returns its length. */
static size_t format_get(char *buf, size_t n, int absolute, const char *extra) {
    char target[2400];
    if (absolute)
        snprintf(target, sizeof target, "http://%s:%d%s", G.url.host, G.url.port, G.url.path);
    else
        snprintf(target, sizeof target, "%s", G.url.path);
    return (size_t)snprintf(buf, n,
                            "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s"
                            "User-Agent: reel-bench-loadgen\r\n\r\n",
                            target, G.url.host, G.url.port, extra);
}

int main(int argc, char **argv) {
    const char *url = NULL, *proxy = NULL;
    G.conns = 50;
    G.label = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--new")) {
            G.new_conn = 1;
            continue;
        }
        if (!strcmp(a, "--and-direct")) {
            G.and_direct = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--url"))
            url = v;
        else if (!strcmp(a, "--proxy"))
            proxy = v;
        else if (!strcmp(a, "--cafile"))
            G.cafile = v;
        else if (!strcmp(a, "-c"))
            G.conns = atoi(v);
        else if (!strcmp(a, "-d"))
            G.duration = atof(v);
        else if (!strcmp(a, "-n"))
            G.requests = atoll(v);
        else if (!strcmp(a, "--rate"))
            G.rate = atof(v);
        else if (!strcmp(a, "--label"))
            G.label = v;
        else
            usage();
    }
    if (!url || parse_url(url, &G.url) != 0 || G.conns <= 0 ||
        (G.duration <= 0 && G.requests <= 0) || (G.duration > 0 && G.requests > 0))
        usage();
    if (proxy) {
        if (parse_hostport(proxy, G.proxy_host, sizeof G.proxy_host, &G.proxy_port) != 0)
            usage();
        G.have_proxy = 1;
    }
    signal(SIGPIPE, SIG_IGN);

    const char *conn_hdr = G.new_conn ? "Connection: close\r\n" : "";
    G.req_len = format_get(G.req, sizeof G.req, G.have_proxy && !G.url.tls, conn_hdr);
    G.req_direct_len = format_get(G.req_direct, sizeof G.req_direct, 0, "");
    G.connect_req_len = (size_t)snprintf(G.connect_req, sizeof G.connect_req,
                                         "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                                         G.url.host, G.url.port, G.url.host, G.url.port);

    if (G.url.tls) {
        G.ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(G.ctx, SSL_VERIFY_PEER, NULL);
        if (!G.cafile || SSL_CTX_load_verify_locations(G.ctx, G.cafile, NULL) != 1) {
            fprintf(stderr, "loadgen: https needs --cafile with the CA that signs the server\n");
            return 2;
        }
        /* Every connection does a full handshake: no session cache, no tickets. */
        SSL_CTX_set_session_cache_mode(G.ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(G.ctx, SSL_OP_NO_TICKET);
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(G.ctx, alpn, sizeof alpn - 1);
    }

    atomic_store(&remaining, G.requests);
    /* paced keep-alive over plain HTTP for a duration: one thread */
    int paced = G.rate > 0 && !G.new_conn && !G.url.tls && G.duration > 0;
    if (G.and_direct && !(paced && G.have_proxy)) {
        fprintf(stderr, "loadgen: --and-direct needs --proxy, an http:// URL, --rate and -d\n");
        return 2;
    }
    int nw = paced ? 2 : G.conns; /* paced: ws[1] is the --and-direct group */
    worker_t *ws = calloc((size_t)nw, sizeof *ws);
    clock_gettime(CLOCK_MONOTONIC, &G.start);
    G.deadline = G.duration;
    if (paced) {
        run_paced(ws);
    } else {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        for (int i = 0; i < nw; i++) {
            ws[i].id = i;
            if (pthread_create(&ws[i].thread, &attr, worker_main, &ws[i]) != 0) {
                perror("pthread_create");
                return 1;
            }
        }
        for (int i = 0; i < nw; i++)
            pthread_join(ws[i].thread, NULL);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    long long done = report(ws, paced ? 1 : nw, "", cpu_us);
    if (G.and_direct)
        report(ws + 1, 1, "direct_", -1);
    printf("\n");
    return done > 0 ? 0 : 1;
}
