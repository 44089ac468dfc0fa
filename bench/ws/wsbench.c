/* wsbench: a WebSocket echo server and an echo load generator that can go
 * through a forward proxy, for bench/ws/run.sh.
 *
 *   wsbench server [--port PORT]
 *   wsbench client --target HOST:PORT [--proxy HOST:PORT] [-c CONNS]
 *                  [-d SECONDS] [-s MESSAGE_BYTES] [--label TEXT]
 *
 * server: listens on 127.0.0.1 (an ephemeral port unless --port), prints
 * "port=N" on stdout once listening, and serves each connection in a thread
 * of its own with blocking sockets: the opening handshake (any path, no
 * extensions), then every data frame is sent back as an unmasked frame
 * with the same opcode and payload (unmasked), pings answered with pongs,
 * and a close answered with a close before the connection is closed.
 *
 * client: CONNS connections (threads), each doing the opening handshake
 * (without --proxy straight to the target; with it, "CONNECT host:port"
 * first and the handshake inside the tunnel, as browsers send ws:// through
 * a proxy) and then, until SECONDS have passed, sending one binary message
 * of MESSAGE_BYTES (one frame, masked) and reading its echo before sending
 * the next. The payload is random bytes, masked once per connection with
 * that connection's key and reused for every message (the peer's unmasking
 * costs the same whatever the key). The first echo of each connection is
 * compared with the payload. Each connection ends with a close handshake.
 *
 * Output: a summary on stderr and one line of key=value pairs on stdout:
 * messages, errors, seconds, msg_per_s, mib_per_s (payload bytes echoed
 * per second, one direction), p50_us, p99_us, max_us (round trip of one
 * message), client_cpu_us (this process's CPU time per message). Exit
 * status 1 if no message was echoed. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct {
    int fd;
    uint8_t buf[65536];
    size_t off, len;
} conn_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Copies n bytes to dst (NULL: discards them), from the buffer first, then
 * straight from the socket. Returns 0, or -1 at EOF or on an error. */
static int read_exact(conn_t *c, uint8_t *dst, size_t n) {
    while (n > 0) {
        if (c->off < c->len) {
            size_t k = c->len - c->off < n ? c->len - c->off : n;
            if (dst) {
                memcpy(dst, c->buf + c->off, k);
                dst += k;
            }
            c->off += k;
            n -= k;
            continue;
        }
        ssize_t k;
        if (dst && n >= sizeof c->buf) {
            k = recv(c->fd, dst, n, 0);
            if (k > 0) {
                dst += k;
                n -= (size_t)k;
            }
        } else {
            c->off = 0;
            k = recv(c->fd, c->buf, sizeof c->buf, 0);
            c->len = k > 0 ? (size_t)k : 0;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
    }
    return 0;
}

/* Reads an HTTP head into out (NUL-terminated); the bytes after it stay
 * in the buffer. */
static int read_head(conn_t *c, char *out, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        uint8_t ch;
        if (read_exact(c, &ch, 1) != 0)
            return -1;
        out[n++] = (char)ch;
        if (n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0) {
            out[n] = 0;
            return 0;
        }
    }
    return -1;
}

/* XORs p with the 4-byte key from offset 0, 8 bytes at a time. */
static void mask(uint8_t *p, size_t n, const uint8_t key[4]) {
    uint8_t k8[8];
    for (int i = 0; i < 8; i++)
        k8[i] = key[i & 3];
    uint64_t k;
    memcpy(&k, k8, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 3];
}

/* Frame header for a payload of n bytes, masked with key when not NULL. */
static size_t frame_head(uint8_t *h, unsigned op, uint64_t n, const uint8_t *key) {
    size_t len = 2;
    h[0] = (uint8_t)(0x80 | op);
    uint8_t m = key ? 0x80 : 0;
    if (n < 126) {
        h[1] = (uint8_t)(m | n);
    } else if (n < 65536) {
        h[1] = m | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        len = 4;
    } else {
        h[1] = m | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(n >> (56 - 8 * i));
        len = 10;
    }
    if (key) {
        memcpy(h + len, key, 4);
        len += 4;
    }
    return len;
}

typedef struct {
    unsigned op;
    int masked;
    uint8_t key[4];
    uint64_t len;
} fhead_t;

static int read_frame_head(conn_t *c, fhead_t *f) {
    uint8_t h[8];
    if (read_exact(c, h, 2) != 0)
        return -1;
    f->op = h[0] & 0x0f;
    f->masked = (h[1] & 0x80) != 0;
    f->len = h[1] & 0x7f;
    if (f->len >= 126) {
        size_t ext = f->len == 126 ? 2 : 8;
        if (read_exact(c, h, ext) != 0)
            return -1;
        f->len = 0;
        for (size_t i = 0; i < ext; i++)
            f->len = f->len << 8 | h[i];
    }
    if (f->masked && read_exact(c, f->key, 4) != 0)
        return -1;
    return 0;
}

/* ---- server ---- */

static void *serve(void *arg) {
    conn_t *c = arg;
    char head[8192];
    uint8_t *payload = NULL;
    size_t cap = 0;
    if (read_head(c, head, sizeof head) != 0)
        goto out;
    char *k = strcasestr(head, "\r\nSec-WebSocket-Key:");
    if (k == NULL)
        goto out;
    k += 20;
    while (*k == ' ')
        k++;
    size_t klen = strcspn(k, "\r");
    char src[128];
    if (klen > 64)
        goto out;
    memcpy(src, k, klen);
    memcpy(src + klen, GUID, sizeof GUID);
    uint8_t sha[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)src, strlen(src), sha);
    char accept[64];
    EVP_EncodeBlock((uint8_t *)accept, sha, sizeof sha);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (write_all(c->fd, resp, (size_t)n) != 0)
        goto out;
    for (;;) {
        fhead_t f;
        if (read_frame_head(c, &f) != 0 || f.len > (1u << 30))
            goto out;
        if (f.len > cap) {
            cap = f.len;
            payload = realloc(payload, cap);
            if (payload == NULL)
                goto out;
        }
        if (read_exact(c, payload, f.len) != 0)
            goto out;
        if (f.masked)
            mask(payload, f.len, f.key);
        unsigned op = f.op == 9 ? 10 : f.op;
        if (op == 10 && f.op == 10)
            continue; /* a pong needs no answer */
        uint8_t h[14];
        struct iovec iov[2] = {{h, frame_head(h, op, f.len, NULL)}, {payload, f.len}};
        size_t total = iov[0].iov_len + iov[1].iov_len;
        ssize_t w = writev(c->fd, iov, 2);
        if (w < 0)
            goto out;
        if ((size_t)w < total) {
            size_t done = (size_t)w;
            if (done < iov[0].iov_len) {
                if (write_all(c->fd, h + done, iov[0].iov_len - done) != 0)
                    goto out;
                done = iov[0].iov_len;
            }
            if (write_all(c->fd, payload + (done - iov[0].iov_len),
                          total - done) != 0)
                goto out;
        }
        if (op == 8)
            goto out;
    }
out:
    free(payload);
    close(c->fd);
    free(c);
    return NULL;
}

static int run_server(int port) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 512) != 0) {
        perror("wsbench server");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("port=%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        c->fd = fd;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, serve, c) != 0) {
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&at);
    }
}

/* ---- client ---- */

static struct {
    char host[256], proxy_host[256];
    int port, proxy_port, have_proxy;
    int conns;
    double seconds;
    size_t size;
    double deadline;
} G;

typedef struct {
    pthread_t thread;
    long long done, errors;
    uint32_t *lat;
    size_t nlat, cap;
    char first_error[200];
} worker_t;

static void fail(worker_t *w, const char *what) {
    w->errors++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "%s: %s", what,
                 errno ? strerror(errno) : "unexpected data");
}

static int tcp_connect(const char *host, int port) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void *client(void *arg) {
    worker_t *w = arg;
    conn_t *c = calloc(1, sizeof *c);
    uint8_t *plain = malloc(G.size + 1), *frame = malloc(G.size + 14), *echo = malloc(G.size + 1);
    char head[8192];
    errno = 0;
    c->fd = G.have_proxy ? tcp_connect(G.proxy_host, G.proxy_port) : tcp_connect(G.host, G.port);
    if (c->fd < 0) {
        fail(w, "connect");
        goto out;
    }
    if (G.have_proxy) {
        int n = snprintf(head, sizeof head, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                         G.host, G.port, G.host, G.port);
        if (write_all(c->fd, head, (size_t)n) != 0 || read_head(c, head, sizeof head) != 0 ||
            strncmp(head, "HTTP/1.1 200", 12) != 0) {
            fail(w, "CONNECT");
            goto out;
        }
    }
    int n = snprintf(head, sizeof head,
                     "GET /echo HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     G.host, G.port);
    if (write_all(c->fd, head, (size_t)n) != 0 || read_head(c, head, sizeof head) != 0 ||
        strncmp(head, "HTTP/1.1 101", 12) != 0) {
        fail(w, "handshake");
        goto out;
    }
    uint8_t key[4];
    if (getrandom(plain, G.size, 0) != (ssize_t)G.size && G.size > 0)
        memset(plain, 0x5a, G.size);
    if (getrandom(key, 4, 0) != 4)
        memcpy(key, "wsbk", 4);
    size_t hl = frame_head(frame, 2, G.size, key);
    memcpy(frame + hl, plain, G.size);
    mask(frame + hl, G.size, key);
    int first = 1;
    while (now_s() < G.deadline) {
        double t0 = now_s();
        fhead_t f;
        errno = 0;
        if (write_all(c->fd, frame, hl + G.size) != 0 || read_frame_head(c, &f) != 0 ||
            f.op != 2 || f.masked || f.len != G.size ||
            read_exact(c, first ? echo : NULL, f.len) != 0) {
            fail(w, "echo");
            goto out;
        }
        if (first && memcmp(echo, plain, G.size) != 0) {
            errno = 0;
            fail(w, "echo differs");
            goto out;
        }
        first = 0;
        double us = (now_s() - t0) * 1e6;
        if (w->nlat == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        }
        w->lat[w->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
        w->done++;
    }
    /* close handshake: 1000, then the server's close */
    uint8_t cl[8];
    size_t cn = frame_head(cl, 8, 2, key);
    cl[cn] = 0x03 ^ key[0];
    cl[cn + 1] = 0xe8 ^ key[1];
    fhead_t f;
    if (write_all(c->fd, cl, cn + 2) == 0 && read_frame_head(c, &f) == 0)
        read_exact(c, NULL, f.len);
out:
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    free(plain);
    free(frame);
    free(echo);
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_hostport(const char *s, char *host, size_t cap, int *port) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= cap)
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

static void usage(void) {
    fprintf(stderr, "usage: wsbench server [--port PORT]\n"
                    "       wsbench client --target HOST:PORT [--proxy HOST:PORT] [-c CONNS]\n"
                    "                      [-d SECONDS] [-s MESSAGE_BYTES] [--label TEXT]\n");
    exit(2);
}

static long long num(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 0)
        usage();
    return v;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "server") == 0) {
        int port = 0;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
                port = (int)num(argv[++i]);
            else
                usage();
        }
        return run_server(port);
    }
    if (strcmp(argv[1], "client") != 0)
        usage();
    const char *label = "";
    G.conns = 50;
    G.seconds = 10;
    G.size = 100;
    int have_target = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--target") == 0) {
            if (parse_hostport(v, G.host, sizeof G.host, &G.port) != 0)
                usage();
            have_target = 1;
        } else if (strcmp(a, "--proxy") == 0) {
            if (parse_hostport(v, G.proxy_host, sizeof G.proxy_host, &G.proxy_port) != 0)
                usage();
            G.have_proxy = 1;
        } else if (strcmp(a, "-c") == 0) {
            G.conns = (int)num(v);
        } else if (strcmp(a, "-d") == 0) {
            G.seconds = (double)num(v);
        } else if (strcmp(a, "-s") == 0) {
            G.size = (size_t)num(v);
        } else if (strcmp(a, "--label") == 0) {
            label = v;
        } else {
            usage();
        }
    }
    if (!have_target || G.conns < 1)
        usage();
    worker_t *ws = calloc((size_t)G.conns, sizeof *ws);
    double start = now_s();
    G.deadline = start + G.seconds;
    for (int i = 0; i < G.conns; i++)
        pthread_create(&ws[i].thread, NULL, client, &ws[i]);
    long long done = 0, errors = 0;
    size_t nlat = 0;
    const char *first_error = NULL;
    for (int i = 0; i < G.conns; i++) {
        pthread_join(ws[i].thread, NULL);
        done += ws[i].done;
        errors += ws[i].errors;
        nlat += ws[i].nlat;
        if (!first_error && ws[i].first_error[0])
            first_error = ws[i].first_error;
    }
    double secs = now_s() - start;
    uint32_t *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (int i = 0; i < G.conns; i++) {
        memcpy(lat + k, ws[i].lat, ws[i].nlat * sizeof *lat);
        k += ws[i].nlat;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    double rate = (double)done / secs;
    double mib = rate * (double)G.size / 1048576.0;
    uint32_t p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[nlat * 99 / 100] : 0,
             mx = nlat ? lat[nlat - 1] : 0;
    fprintf(stderr, "%s%s%zu B x %d conns%s: %lld messages in %.2f s = %.0f msg/s, %.1f MiB/s; "
                    "p50 %u us, p99 %u us; %lld errors%s%s\n",
            label, label[0] ? ": " : "", G.size, G.conns, G.have_proxy ? " via proxy" : "",
            done, secs, rate, mib, p50, p99, errors, first_error ? ", first: " : "",
            first_error ? first_error : "");
    printf("messages=%lld errors=%lld seconds=%.3f msg_per_s=%.1f mib_per_s=%.2f p50_us=%u "
           "p99_us=%u max_us=%u client_cpu_us=%.2f\n",
           done, errors, secs, rate, mib, p50, p99, mx, done ? cpu_us / (double)done : 0.0);
    return done > 0 ? 0 : 1;
}
