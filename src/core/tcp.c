/* The TCP filter: sockets, reads, writes, resolving and connecting. See
 * core/tcp.h and core/filter.h. */

#include "core/tcp.h"
#include "core/hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"

/* netfilter's: where a connection NAT redirected (iptables/nftables
 * REDIRECT or DNAT) was made to (<linux/netfilter_ipv4.h>,
 * <linux/netfilter_ipv6/ip6_tables.h>, whose other definitions clash
 * with the C library's) */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

typedef struct tcp_filter tcp_filter_t;

/* One socket. A connecting filter may go through several (one per address
 * tried); each is freed in its own close callback. */
typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    tcp_filter_t *t;
} tcp_handle_t;

struct tcp_filter {
    reel_filter_t f;
    uv_loop_t *loop;
    tcp_handle_t *h; /* the current socket */
    int handles;     /* sockets not yet closed, old attempts included */
    bool resolving, connected, want_read, reading, eof, closing, shut, reported;
    bool send_reset; /* a send was told of the peer's reset (see eof_status) */
    size_t wpending;
    uint8_t *readbuf;
    size_t readbuf_len;
    char *host;
    int port;
    char *dns_override; /* the dns_overrides entry that gave host (NULL: none) */
    char *dns_name;     /* ... the name it gave host for */
    int dns_port;       /* ... and that name's port (the entry may give another) */
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_next;
    char local[64], remote[64];
    int64_t t_dns0, t_dns1, t_connected;
};

typedef struct {
    uv_write_t req;
    tcp_filter_t *t;
    size_t len;
    char data[];
} wreq_t;

static const reel_filter_ops_t tcp_ops;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void addr_string(const struct sockaddr *sa, char *out, size_t n, char *ip_out,
                        size_t ip_len) {
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        uv_ip4_name(s4, ip, sizeof ip);
        snprintf(out, n, "%s:%d", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(s6, ip, sizeof ip);
        snprintf(out, n, "[%s]:%d", ip, ntohs(s6->sin6_port));
    } else {
        snprintf(out, n, "?");
    }
    if (ip_out)
        snprintf(ip_out, ip_len, "%s", ip);
}

static void local_addr(tcp_filter_t *t) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&t->h->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_string((struct sockaddr *)&ss, t->local, sizeof t->local, NULL, 0);
}

static tcp_filter_t *tcp_new(uv_loop_t *loop, uint8_t *readbuf, size_t readbuf_len) {
    tcp_filter_t *t = reel_calloc(1, sizeof *t);
    t->f.ops = &tcp_ops;
    t->loop = loop;
    t->readbuf = readbuf;
    t->readbuf_len = readbuf_len;
    return t;
}

static tcp_handle_t *handle_new(tcp_filter_t *t) {
    tcp_handle_t *h = reel_calloc(1, sizeof *h);
    h->t = t;
    uv_tcp_init(t->loop, &h->tcp);
    h->tcp.data = h;
    h->creq.data = h;
    t->handles++;
    return h;
}

static void maybe_closed(tcp_filter_t *t) {
    if (t->closing && t->handles == 0 && !t->resolving && !t->reported) {
        t->reported = true;
        reel_stack_closed_by_bottom(t->f.st); /* destroys t */
    }
}

static void on_handle_closed(uv_handle_t *hd) {
    tcp_handle_t *h = hd->data;
    tcp_filter_t *t = h->t;
    free(h);
    if (t == NULL)
        return; /* a failed accept's: no filter */
    t->handles--;
    maybe_closed(t);
}

static void handle_close(tcp_handle_t *h) {
    uv_close((uv_handle_t *)&h->tcp, on_handle_closed);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
    tcp_handle_t *h = hd->data;
    (void)suggested;
    buf->base = (char *)h->t->readbuf;
    buf->len = h->t->readbuf_len;
}

/* What a read at libuv's end of the stream would have said. libuv says
 * UV_EOF without reading when epoll's hang-up comes after a short read
 * (uv__stream_io), and a reset hangs up too: a reset that came while
 * bytes waited unread in the socket passed for a clean end, and a body
 * read until the close for whole. A peek asks the kernel as a read
 * would: 0 after the peer's FIN, the error (ECONNRESET) after a reset
 * without one. The kernel tells a reset once, though, to the first call
 * that asks: when a send took it, reads say a clean end too, so the send
 * remembers it. */
static ssize_t eof_status(tcp_filter_t *t) {
    uv_os_fd_t fd;
    char b;
    if (uv_fileno((const uv_handle_t *)&t->h->tcp, &fd) == 0) {
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return uv_translate_sys_error(errno);
    }
    return t->send_reset ? UV_ECONNRESET : UV_EOF;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tcp_handle_t *h = s->data;
    tcp_filter_t *t = h->t;
    if (nread == 0 || t->closing)
        return;
    if (nread == UV_EOF)
        nread = eof_status(t);
    if (nread < 0) {
        uv_read_stop(s);
        t->reading = false;
        t->eof = true;
        reel_filter_up_eof(&t->f, nread == UV_EOF ? NULL : uv_strerror((int)nread));
    } else {
        reel_filter_up(&t->f, (const uint8_t *)buf->base, (size_t)nread);
    }
    reel_filter_read_done(&t->f);
}

static void apply_reading(tcp_filter_t *t) {
    bool want = t->want_read && t->connected && !t->eof && !t->closing;
    if (want == t->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&t->h->tcp, on_alloc, on_read) == 0)
            t->reading = true;
    } else {
        uv_read_stop((uv_stream_t *)&t->h->tcp);
        t->reading = false;
    }
}

static void tcp_set_reading(reel_filter_t *f, bool on) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    t->want_read = on;
    apply_reading(t);
}

/* ---- writing ---- */

/* A write failed (a reset, EPIPE): the connection is dead both ways. It
 * is the end of the stream, with that error, as a failed read would say;
 * after an end already passed up (a half-close, or TLS's close_notify
 * above), a failure. Ignoring it left a peer whose output could never
 * drain waiting, paused, for the idle timeout. */
static void write_failed(tcp_filter_t *t, int status) {
    /* (the EPIPE of the sends after one that took the reset says less) */
    const char *why = uv_strerror(status == UV_EPIPE && t->send_reset ? UV_ECONNRESET : status);
    if (!t->eof) {
        /* What the peer sent before its reset is still in the socket: it
         * may say why (a TLS alert: an origin that wants a client
         * certificate). Read first, as a read would have; then the end. */
        uv_os_fd_t fd;
        if (t->want_read && t->connected && uv_fileno((const uv_handle_t *)&t->h->tcp, &fd) == 0) {
            for (int i = 0; i < 16 && !t->closing && !t->eof; i++) {
                ssize_t n = recv(fd, t->readbuf, t->readbuf_len, MSG_DONTWAIT);
                if (n <= 0)
                    break;
                reel_filter_up(&t->f, t->readbuf, (size_t)n);
            }
        }
        if (t->closing || t->eof)
            return;
        t->eof = true;
        apply_reading(t); /* stops it */
        reel_filter_up_eof(&t->f, why);
        reel_filter_read_done(&t->f);
    } else {
        reel_filter_fail(&t->f, why);
    }
}

static void on_written(uv_write_t *req, int status) {
    wreq_t *w = (wreq_t *)req;
    tcp_filter_t *t = w->t;
    t->wpending -= w->len;
    free(w);
    if (t->closing)
        return;
    if (status < 0) {
        write_failed(t, status);
        return;
    }
    reel_filter_written(&t->f);
}

static void tcp_send(reel_filter_t *f, const uint8_t *data, size_t len) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    if (len == 0 || t->closing || !t->connected)
        return;
    if (t->wpending == 0) {
        /* Nothing queued: try the socket first. Usually it takes it all,
         * and the bytes need no copy and no allocation (a copy and
         * malloc per read were most of the cost of relaying a body). */
        uv_buf_t b0 = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&t->h->tcp, &b0, 1);
        if (n == UV_ECONNRESET)
            t->send_reset = true; /* (not EPIPE: a reset after a FIN cuts nothing) */
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            if (len == 0)
                return;
        }
        /* UV_EAGAIN, a partial write or an error: uv_write queues the rest
         * and reports an error through on_written */
    }
    wreq_t *w = reel_malloc(sizeof *w + len);
    w->t = t;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    t->wpending += len;
    if (uv_write(&w->req, (uv_stream_t *)&t->h->tcp, &b, 1, on_written) != 0) {
        t->wpending -= len;
        free(w);
    }
}

static size_t tcp_queued(const reel_filter_t *f) {
    return ((const tcp_filter_t *)f)->wpending;
}

static bool tcp_is_open(const reel_filter_t *f) {
    const tcp_filter_t *t = (const tcp_filter_t *)f;
    return t->connected && !t->closing;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    free(req);
}

static void tcp_shutdown(reel_filter_t *f) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    if (!t->connected || t->closing || t->shut)
        return;
    uv_shutdown_t *sr = reel_malloc(sizeof *sr);
    if (uv_shutdown(sr, (uv_stream_t *)&t->h->tcp, on_shutdown) != 0)
        free(sr);
    else
        t->shut = true;
}

/* ---- connecting ---- */

static void on_connect(uv_connect_t *req, int status);

/* "cannot connect to HOST:PORT (ADDRESS): detail", or, with a
 * dns_overrides entry, its name and the entry */
static char *connect_error(const tcp_filter_t *t, const char *detail) {
    if (t->dns_override)
        return reel_asprintf(
            "cannot connect to " REEL_HOSTPORT_FMT " at %s (dns_overrides '%s'): %s",
            REEL_HOSTPORT(t->dns_name, t->dns_port), t->remote, t->dns_override, detail);
    return reel_asprintf("cannot connect to " REEL_HOSTPORT_FMT " (%s): %s",
                         REEL_HOSTPORT(t->host, t->port), t->remote, detail);
}

/* Tries the remaining addresses; reports the failure when none connects. */
static void try_next(tcp_filter_t *t, const char *last_error) {
    char *why = last_error ? reel_strdup(last_error) : NULL;
    while (t->ai_next) {
        struct addrinfo *ai = t->ai_next;
        t->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (t->h == NULL)
            t->h = handle_new(t);
        addr_string(ai->ai_addr, t->remote, sizeof t->remote, NULL, 0);
        int e = uv_tcp_connect(&t->h->creq, &t->h->tcp, ai->ai_addr, on_connect);
        if (e == 0) {
            free(why);
            return;
        }
        free(why);
        why = connect_error(t, uv_strerror(e));
        handle_close(t->h);
        t->h = NULL;
    }
    if (t->h == NULL)
        t->h = handle_new(t); /* closed with the stack, like any other */
    if (why == NULL)
        why = reel_asprintf("cannot connect to " REEL_HOSTPORT_FMT ": no usable address",
                            REEL_HOSTPORT(t->host, t->port));
    reel_filter_fail(&t->f, why);
    free(why);
}

static void on_connect(uv_connect_t *req, int status) {
    tcp_handle_t *h = req->data;
    tcp_filter_t *t = h->t;
    if (t->closing || h != t->h)
        return;
    if (status < 0) {
        char *why = connect_error(t, uv_strerror(status));
        if (t->ai_next) {
            handle_close(h);
            t->h = NULL;
        }
        try_next(t, why);
        free(why);
        return;
    }
    t->connected = true;
    t->t_connected = now_us();
    uv_tcp_nodelay(&h->tcp, 1);
    local_addr(t);
    if (t->ai) {
        uv_freeaddrinfo(t->ai);
        t->ai = t->ai_next = NULL;
    }
    apply_reading(t);
    reel_filter_connected(&t->f);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    tcp_filter_t *t = req->data;
    t->resolving = false;
    if (t->closing) {
        if (res)
            uv_freeaddrinfo(res);
        maybe_closed(t);
        return;
    }
    t->t_dns1 = now_us();
    if (status < 0) {
        char *why = reel_asprintf("cannot resolve %s: %s", t->host, uv_strerror(status));
        reel_filter_fail(&t->f, why);
        free(why);
        return;
    }
    t->ai = t->ai_next = res;
    try_next(t, NULL);
}

static void tcp_open(reel_filter_t *f) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", t->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    t->gai.data = t;
    t->t_dns0 = now_us();
    /* An address needs no lookup: getaddrinfo takes it at once on this
     * thread (AI_NUMERICHOST reads no file and asks no server), where
     * libuv's thread pool cost every connection two thread switches and
     * reads of /etc/hosts, resolv.conf and nsswitch.conf. Its dns time is
     * then about nothing, as it was. */
    struct addrinfo numeric = hints, *res = NULL;
    numeric.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(t->host, portstr, &numeric, &res) == 0) {
        t->t_dns1 = now_us();
        t->ai = t->ai_next = res;
        try_next(t, NULL);
        return;
    }
    if (uv_getaddrinfo(t->loop, &t->gai, on_resolved, t->host, portstr, &hints) != 0) {
        char *why = reel_asprintf("cannot resolve %s", t->host);
        reel_filter_fail(f, why);
        free(why);
        return;
    }
    t->resolving = true;
}

reel_filter_t *reel_tcp_connect(uv_loop_t *loop, const char *host, int port, uint8_t *readbuf,
                                size_t readbuf_len) {
    tcp_filter_t *t = tcp_new(loop, readbuf, readbuf_len);
    t->host = reel_strdup(host);
    t->port = port;
    /* A socket from the start, so that closing always waits for a close
     * callback (the owner is never freed inside its own call). */
    t->h = handle_new(t);
    return &t->f;
}

reel_filter_t *reel_tcp_accept(uv_stream_t *server, uint8_t *readbuf, size_t readbuf_len,
                               char *peer_ip, size_t ip_len) {
    tcp_filter_t *t = tcp_new(server->loop, readbuf, readbuf_len);
    t->h = handle_new(t);
    if (uv_accept(server, (uv_stream_t *)&t->h->tcp) != 0) {
        t->h->t = NULL;
        handle_close(t->h);
        free(t);
        return NULL;
    }
    t->connected = true;
    t->t_connected = now_us();
    uv_tcp_nodelay(&t->h->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&t->h->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_string((struct sockaddr *)&ss, t->remote, sizeof t->remote, peer_ip, ip_len);
    local_addr(t);
    return &t->f;
}

bool reel_tcp_original_dst(const reel_filter_t *f, char *ip, size_t ip_len, int *port) {
    if (f == NULL || f->ops != &tcp_ops)
        return false;
    const tcp_filter_t *t = (const tcp_filter_t *)f;
    uv_os_fd_t fd;
    struct sockaddr_storage dst, here;
    socklen_t len = sizeof dst;
    int here_len = sizeof here;
    if (t->h == NULL || uv_fileno((const uv_handle_t *)&t->h->tcp, &fd) != 0 ||
        uv_tcp_getsockname(&t->h->tcp, (struct sockaddr *)&here, &here_len) != 0)
        return false;
    int rc = here.ss_family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
                                        : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
    if (rc != 0 || dst.ss_family != here.ss_family)
        return false; /* (no NAT on this connection: ENOENT) */
    bool same =
        dst.ss_family == AF_INET6
            ? memcmp(&((struct sockaddr_in6 *)&dst)->sin6_addr,
                     &((struct sockaddr_in6 *)&here)->sin6_addr, sizeof(struct in6_addr)) == 0 &&
                  ((struct sockaddr_in6 *)&dst)->sin6_port ==
                      ((struct sockaddr_in6 *)&here)->sin6_port
            : ((struct sockaddr_in *)&dst)->sin_addr.s_addr ==
                      ((struct sockaddr_in *)&here)->sin_addr.s_addr &&
                  ((struct sockaddr_in *)&dst)->sin_port == ((struct sockaddr_in *)&here)->sin_port;
    if (same)
        return false; /* made to reel itself */
    char where[INET6_ADDRSTRLEN + 8];
    addr_string((struct sockaddr *)&dst, where, sizeof where, ip, ip_len);
    *port = ntohs(dst.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&dst)->sin6_port
                                            : ((struct sockaddr_in *)&dst)->sin_port);
    return true;
}

/* ---- the rest of the contract ---- */

/* A bounded copy, cheaper than snprintf: info is asked for once per flow. */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void tcp_info(const reel_filter_t *f, reel_stack_info_t *out) {
    const tcp_filter_t *t = (const tcp_filter_t *)f;
    copy_str(out->local, sizeof out->local, t->local);
    copy_str(out->remote, sizeof out->remote, t->remote);
    out->t_dns0 = t->t_dns0;
    out->t_dns1 = t->t_dns1;
    out->t_connected = t->t_connected;
    out->setup_dns0 = t->t_dns0;
    out->setup_dns1 = t->t_dns1;
    out->setup_connected = t->t_connected;
    if (t->dns_override)
        out->dns_override = t->dns_override;
}

void reel_tcp_set_dns_override(reel_filter_t *f, const char *entry, const char *name, int port) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    free(t->dns_override);
    free(t->dns_name);
    t->dns_override = reel_strdup(entry);
    t->dns_name = reel_strdup(name);
    t->dns_port = port;
}

static void tcp_close(reel_filter_t *f) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    if (t->closing)
        return;
    t->closing = true;
    if (t->reading) {
        uv_read_stop((uv_stream_t *)&t->h->tcp);
        t->reading = false;
    }
    if (t->h) {
        /* (uv_tcp_close_reset refuses a socket with a shutdown under way:
         * its FIN is queued, and a plain close follows it) */
        if (!(t->f.st->reset && t->connected &&
              uv_tcp_close_reset(&t->h->tcp, on_handle_closed) == 0))
            handle_close(t->h);
        t->h = NULL;
    }
    if (t->resolving)
        uv_cancel((uv_req_t *)&t->gai); /* its callback still runs */
}

static void tcp_destroy(reel_filter_t *f) {
    tcp_filter_t *t = (tcp_filter_t *)f;
    if (t->ai)
        uv_freeaddrinfo(t->ai);
    free(t->host);
    free(t->dns_override);
    free(t->dns_name);
    free(t);
}

static size_t tcp_unread(const reel_filter_t *f) {
    const tcp_filter_t *t = (const tcp_filter_t *)f;
    uv_os_fd_t fd;
    int n = 0;
    if (t->closing || uv_fileno((const uv_handle_t *)&t->h->tcp, &fd) != 0 ||
        ioctl(fd, FIONREAD, &n) != 0 || n < 0)
        return 0;
    return (size_t)n;
}

/* The filter's socket, false if it cannot be asked (reel closes a
 * socket only through the filter, which sets closing first). */
static bool tcp_fd(const tcp_filter_t *t, uv_os_fd_t *fd) {
    return !t->closing && t->h != NULL && uv_fileno((const uv_handle_t *)&t->h->tcp, fd) == 0;
}

static size_t tcp_unsent(const reel_filter_t *f) {
    uv_os_fd_t fd;
    int n = 0;
    /* TIOCOUTQ is Linux's SIOCOUTQ on a TCP socket: sent, not yet acked */
    if (!tcp_fd((const tcp_filter_t *)f, &fd) || ioctl(fd, TIOCOUTQ, &n) != 0 || n < 0)
        return 0;
    return (size_t)n;
}

/* The kernel's TCP state of the filter's socket (TCP_INFO), -1 if it
 * cannot be asked. */
static int tcp_state(const tcp_filter_t *t) {
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t n = sizeof ti;
    if (!tcp_fd(t, &fd) || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) != 0)
        return -1;
    return ti.tcpi_state;
}

static bool tcp_broken(const reel_filter_t *f) {
    /* a reset from the peer takes the socket to CLOSE at once */
    return tcp_state((const tcp_filter_t *)f) == TCP_CLOSE;
}

static bool tcp_peer_ended(const reel_filter_t *f) {
    /* its FIN takes the socket to CLOSE_WAIT, a reset to CLOSE */
    int st = tcp_state((const tcp_filter_t *)f);
    return st == TCP_CLOSE_WAIT || st == TCP_CLOSE;
}

static const reel_filter_ops_t tcp_ops = {
    .name = "tcp",
    .open = tcp_open,
    .send = tcp_send,
    .shutdown = tcp_shutdown,
    .queued = tcp_queued,
    .is_open = tcp_is_open,
    .set_reading = tcp_set_reading,
    .unread = tcp_unread,
    .unsent = tcp_unsent,
    .broken = tcp_broken,
    .peer_ended = tcp_peer_ended,
    .info = tcp_info,
    .close = tcp_close,
    .destroy = tcp_destroy,
};
