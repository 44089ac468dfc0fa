/* A tunnel through an upstream proxy (HTTP CONNECT, or SOCKS5's); see
 * connect_filter.h. */
#include "core/connect_filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "core/hostport.h"
#include "core/socks.h"
#include "session/session.h"

typedef struct {
    reel_filter_t f;
    char *proxy, *host, *auth;
    int port;
    reel_buf_t head; /* the proxy's answer so far */
    bool sent, open;
    bool forward; /* no CONNECT: open with the connection to the proxy */
    int64_t opened_us; /* when the tunnel opened (wall clock; 0: not yet, or forward) */
    /* a SOCKS5 proxy: its handshake, and upstream_proxyauth split */
    bool socks;
    reel_socks5_client_t sc;
    char *user, *pass;
} connect_filter_t;

static const reel_filter_ops_t connect_ops;

reel_filter_t *reel_connect_filter_new(const char *proxy, const char *host, int port,
                                       const char *auth_b64, bool forward) {
    connect_filter_t *c = reel_calloc(1, sizeof *c);
    c->forward = forward;
    c->f.ops = &connect_ops;
    c->proxy = reel_strdup(proxy);
    c->host = reel_strdup(host);
    c->port = port;
    c->auth = auth_b64 && auth_b64[0] ? reel_strdup(auth_b64) : NULL;
    reel_buf_init(&c->head, 0);
    return &c->f;
}

reel_filter_t *reel_socks_filter_new(const char *proxy, const char *host, int port,
                                     const char *userpass) {
    connect_filter_t *c =
        (connect_filter_t *)reel_connect_filter_new(proxy, host, port, NULL, false);
    c->socks = true;
    const char *colon = userpass ? strchr(userpass, ':') : NULL;
    if (colon) {
        c->user = reel_strndup(userpass, (size_t)(colon - userpass));
        c->pass = reel_strdup(colon + 1);
    }
    return &c->f;
}

/* The connection to the proxy is up: the CONNECT goes, once. */
static void connect_below_open(reel_filter_t *f) {
    connect_filter_t *c = (connect_filter_t *)f;
    if (c->forward)
        c->open = true;
    if (c->open) {
        reel_filter_up_open(f);
        return;
    }
    if (c->sent)
        return;
    c->sent = true;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    if (c->socks)
        reel_socks5_client_start(&c->sc, c->host, c->port, c->user, c->pass, &b);
    else
        reel_connect_request(&b, c->host, c->port, c->auth);
    reel_filter_down(f, b.data, b.len);
    reel_buf_free(&b);
}

void reel_connect_request(reel_buf_t *out, const char *host, int port, const char *auth_b64) {
    reel_buf_printf(out,
                    "CONNECT " REEL_HOSTPORT_FMT " HTTP/1.1\r\nHost: " REEL_HOSTPORT_FMT "\r\n",
                    REEL_HOSTPORT(host, port), REEL_HOSTPORT(host, port));
    if (auth_b64 && auth_b64[0])
        reel_buf_printf(out, "Proxy-Authorization: Basic %s\r\n", auth_b64);
    reel_buf_puts(out, "\r\n");
}

char *reel_connect_refused(const char *proxy, const char *what, const char *host, int port) {
    return reel_asprintf("the upstream proxy %s %s CONNECT " REEL_HOSTPORT_FMT, proxy, what,
                         REEL_HOSTPORT(host, port));
}

static void fail(connect_filter_t *c, const char *what) {
    char *why = reel_connect_refused(c->proxy, what, c->host, c->port);
    reel_filter_fail(&c->f, why);
    free(why);
}

/* Where the answer head ends in h (after its blank line), 0: not yet. */
static size_t head_end(const reel_buf_t *h) {
    const uint8_t *p = h->data;
    for (size_t i = 0; i + 1 < h->len; i++)
        if (p[i] == '\n' &&
            (p[i + 1] == '\n' || (p[i + 1] == '\r' && i + 2 < h->len && p[i + 2] == '\n')))
            return i + (p[i + 1] == '\n' ? 2 : 3);
    return 0;
}

reel_rc reel_connect_answer(const reel_buf_t *head, size_t *end, char **what) {
    *what = NULL;
    *end = head_end(head);
    if (*end == 0) {
        if (head->len <= REEL_CONNECT_HEAD_MAX)
            return REEL_NEED_MORE;
        *what = reel_strdup("sent an answer head over 16 KiB to");
        return REEL_INVALID;
    }
    /* "HTTP/1.x NNN reason" */
    const char *s = (const char *)head->data;
    size_t line = 0, len = *end;
    while (line < len && s[line] != '\r' && s[line] != '\n')
        line++;
    int status = 0;
    if (line >= 12 && memcmp(s, "HTTP/1.", 7) == 0 && s[8] == ' ' && s[9] >= '1' && s[9] <= '5' &&
        s[10] >= '0' && s[10] <= '9' && s[11] >= '0' && s[11] <= '9' &&
        (line == 12 || s[12] == ' '))
        status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status / 100 != 2) {
        char quoted[160];
        reel_buf_t q;
        reel_buf_init(&q, 0);
        reel_buf_put_quoted(&q, s, line, 120);
        snprintf(quoted, sizeof quoted, "%.*s", (int)q.len, (const char *)q.data);
        reel_buf_free(&q);
        *what = status ? reel_asprintf("answered %s to", quoted)
                       : reel_asprintf("answered what is no HTTP status line (%s) to", quoted);
        return REEL_INVALID;
    }
    return REEL_OK;
}

static void connect_recv(reel_filter_t *f, const uint8_t *data, size_t len) {
    connect_filter_t *c = (connect_filter_t *)f;
    if (c->open) {
        reel_filter_up(f, data, len);
        return;
    }
    reel_buf_append(&c->head, data, len);
    size_t end;
    char *what;
    reel_rc rc;
    if (c->socks) { /* what to send next, once each answer is whole */
        reel_buf_t next;
        reel_buf_init(&next, 0);
        rc = reel_socks5_client_feed(&c->sc, c->head.data, c->head.len, &end, &next, &what);
        if (next.len && rc != REEL_INVALID)
            reel_filter_down(f, next.data, next.len);
        reel_buf_free(&next);
        if (rc == REEL_NEED_MORE)
            reel_buf_consume(&c->head, end);
    } else {
        rc = reel_connect_answer(&c->head, &end, &what);
    }
    if (rc == REEL_NEED_MORE)
        return;
    if (rc != REEL_OK) {
        fail(c, what);
        free(what);
        return;
    }
    c->open = true;
    c->opened_us = reel_now_us();
    /* bytes behind the head are the origin's first */
    reel_buf_t rest;
    reel_buf_init(&rest, 0);
    reel_buf_append(&rest, c->head.data + end, c->head.len - end);
    reel_buf_free(&c->head);
    reel_filter_up_open(f);
    if (rest.len && !f->st->closing && !f->st->failed)
        reel_filter_up(f, rest.data, rest.len);
    reel_buf_free(&rest);
}

static void connect_recv_eof(reel_filter_t *f, const char *error) {
    connect_filter_t *c = (connect_filter_t *)f;
    if (c->open) {
        reel_filter_up_eof(f, error);
        return;
    }
    char *what = reel_asprintf("closed the connection (%s) before it answered",
                               error ? error : "a clean close");
    fail(c, what);
    free(what);
}

static void connect_send(reel_filter_t *f, const uint8_t *data, size_t len) {
    connect_filter_t *c = (connect_filter_t *)f;
    if (c->open) /* (nothing above sends before it is open) */
        reel_filter_down(f, data, len);
}

static void connect_shutdown(reel_filter_t *f) {
    /* the tunnel's end is the connection's: a TCP half-close */
    if (f->below && f->below->ops->shutdown)
        f->below->ops->shutdown(f->below);
}

static size_t connect_queued(const reel_filter_t *f) {
    (void)f;
    return 0;
}

static bool connect_is_open(const reel_filter_t *f) {
    const connect_filter_t *c = (const connect_filter_t *)f;
    return c->open && f->below && f->below->ops->is_open(f->below);
}

static void connect_info(const reel_filter_t *f, reel_stack_info_t *out) {
    const connect_filter_t *c = (const connect_filter_t *)f;
    out->via = c->proxy;
    out->via_open = c->open;
    out->via_forward = c->forward;
    out->setup_tunnel_open = c->opened_us;
}

static void connect_destroy(reel_filter_t *f) {
    connect_filter_t *c = (connect_filter_t *)f;
    free(c->proxy);
    free(c->host);
    free(c->auth);
    free(c->user);
    free(c->pass);
    reel_buf_free(&c->head);
    free(c);
}

static const reel_filter_ops_t connect_ops = {
    .name = "http-connect",
    .send = connect_send,
    .recv = connect_recv,
    .recv_eof = connect_recv_eof,
    .below_open = connect_below_open,
    .shutdown = connect_shutdown,
    .queued = connect_queued,
    .is_open = connect_is_open,
    .info = connect_info,
    .destroy = connect_destroy,
};
