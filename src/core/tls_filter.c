/* The TLS filter. See core/tls_filter.h. */

#include "core/tls_filter.h"

#include <stdlib.h>
#include <time.h>

typedef struct {
    reel_filter_t f;
    reel_tls_t *tls;
    reel_buf_t cipher; /* scratch for output, passed down at once */
    bool open;         /* handshake done and reported */
    int64_t t_done;    /* when it was done (wall clock µs; 0: not yet) */
    bool eof_sent;
    bool eof_error; /* ... with an error of the TLS (an alert): it said why the stream ended */
    /* what the transport below said of its end (a reset), while the end
     * is passed up: a TLS stream without close_notify ends on it */
    const char *below_error;
} tls_filter_t;

static const reel_filter_ops_t tls_ops, proxy_tls_ops;

reel_filter_t *reel_tls_filter_new(reel_tls_t *tls) {
    tls_filter_t *t = reel_calloc(1, sizeof *t);
    t->f.ops = &tls_ops;
    t->tls = tls;
    reel_buf_init(&t->cipher, 0);
    return &t->f;
}

reel_filter_t *reel_tls_filter_new_proxy(reel_tls_t *tls) {
    reel_filter_t *f = reel_tls_filter_new(tls);
    f->ops = &proxy_tls_ops;
    return f;
}

/* Wall clock, as core/tcp.c stamps the phases before the handshake. */
static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void flush(tls_filter_t *t) {
    if (reel_tls_cipher_pending(t->tls) == 0)
        return;
    reel_buf_reset(&t->cipher);
    reel_tls_take_cipher(t->tls, &t->cipher);
    reel_filter_down(&t->f, t->cipher.data, t->cipher.len);
}

static bool gone(const tls_filter_t *t) {
    return t->f.st->closing || t->f.st->failed;
}

/* Runs the handshake, then passes up every plaintext byte available. */
static void pump(tls_filter_t *t) {
    reel_err_t err;
    reel_err_clear(&err);
    if (!reel_tls_handshake_done(t->tls)) {
        reel_rc rc = reel_tls_handshake(t->tls, &err);
        flush(t);
        if (rc == REEL_NEED_MORE)
            return;
        if (rc != REEL_OK) {
            reel_filter_fail(&t->f, reel_err_str(&err));
            return;
        }
    }
    if (!t->open) {
        t->open = true;
        t->t_done = now_us();
        reel_filter_up_open(&t->f);
    }
    while (!gone(t) && !t->eof_sent) {
        uint8_t buf[16384];
        size_t n = 0;
        reel_rc rc = reel_tls_read_plain(t->tls, buf, sizeof buf, &n, &err);
        flush(t);
        if (rc == REEL_NEED_MORE)
            break;
        if (rc != REEL_OK || n == 0) {
            /* the end of the stream: close_notify (or a bare EOF, tls.c),
             * or an error, which the layers above must know of: a body
             * read until the close is cut short by it, not complete */
            t->eof_sent = true;
            t->eof_error = rc != REEL_OK;
            const char *why = rc != REEL_OK                  ? reel_err_str(&err)
                              : reel_tls_peer_closed(t->tls) ? NULL /* close_notify: whole */
                                                             : t->below_error;
            reel_filter_up_eof(&t->f, why);
            break;
        }
        reel_filter_up(&t->f, buf, n);
    }
}

static void tls_recv(reel_filter_t *f, const uint8_t *data, size_t len) {
    tls_filter_t *t = (tls_filter_t *)f;
    size_t off = 0;
    while (off < len && !gone(t)) {
        size_t n = 0;
        reel_tls_feed_cipher(t->tls, data + off, len - off, &n);
        off += n;
        pump(t);
        if (n == 0)
            break; /* cannot happen: pump drained the TLS input */
    }
}

static void tls_recv_eof(reel_filter_t *f, const char *error) {
    tls_filter_t *t = (tls_filter_t *)f;
    if (t->eof_sent) {
        /* the TLS stream had ended (close_notify), then the connection
         * broke (a reset, a write that failed): what is still to be sent
         * cannot go, which the layers above must hear; not when the TLS
         * had ended with an error of its own (an alert: an origin that
         * wants a client certificate, then resets), which said why */
        if (error && !gone(t) && !t->eof_error)
            reel_filter_fail(f, error);
        return;
    }
    reel_tls_feed_eof_error(t->tls, error);
    t->below_error = error;
    pump(t);
    t->below_error = NULL;
    if (!t->eof_sent && !gone(t)) {
        t->eof_sent = true;
        reel_filter_up_eof(f, error);
    }
}

static void tls_below_open(reel_filter_t *f) {
    tls_filter_t *t = (tls_filter_t *)f;
    if (!reel_tls_is_server(t->tls))
        pump(t); /* a client speaks first */
}

static void tls_send(reel_filter_t *f, const uint8_t *p, size_t len) {
    tls_filter_t *t = (tls_filter_t *)f;
    while (len) {
        size_t n = 0;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_tls_write_plain(t->tls, p, len, &n, &err) != REEL_OK)
            break;
        flush(t);
        p += n;
        len -= n;
    }
}

static void tls_shutdown(reel_filter_t *f) {
    tls_filter_t *t = (tls_filter_t *)f;
    reel_err_t e;
    reel_err_clear(&e);
    reel_tls_close_notify(t->tls, &e);
    flush(t);
}

static size_t tls_queued(const reel_filter_t *f) {
    return reel_tls_cipher_pending(((const tls_filter_t *)f)->tls);
}

static bool tls_is_open(const reel_filter_t *f) {
    const tls_filter_t *t = (const tls_filter_t *)f;
    return f->below && f->below->ops->is_open(f->below) && reel_tls_handshake_done(t->tls);
}

static void tls_info(const reel_filter_t *f, reel_stack_info_t *out) {
    const tls_filter_t *t = (const tls_filter_t *)f;
    out->tls = true;
    out->tls_done = reel_tls_handshake_done(t->tls);
    out->setup_tls_done = t->t_done;
    out->sni = reel_tls_sni(t->tls); /* known before the handshake ends (or fails) */
    if (!out->tls_done) {
        out->verify_error = reel_tls_verify_error(t->tls, &out->peer_cert);
        if (out->verify_error == NULL)
            return;
    }
    out->alpn = reel_tls_alpn(t->tls);
    out->tls_version = reel_tls_version(t->tls);
    out->cipher = reel_tls_cipher(t->tls);
    out->tls_resumed = reel_tls_resumed(t->tls);
    out->unchecked_error = reel_tls_unchecked_error(t->tls, &out->unchecked_cert);
    out->client_cert_asked = reel_tls_client_cert_asked(t->tls, &out->client_cert);
    out->tls_no_close_notify = t->eof_sent && !reel_tls_peer_closed(t->tls);
}

static void tls_destroy(reel_filter_t *f) {
    tls_filter_t *t = (tls_filter_t *)f;
    reel_tls_free(t->tls);
    reel_buf_free(&t->cipher);
    free(t);
}

static const reel_filter_ops_t tls_ops = {
    .name = "tls",
    .send = tls_send,
    .recv = tls_recv,
    .recv_eof = tls_recv_eof,
    .below_open = tls_below_open,
    .shutdown = tls_shutdown,
    .queued = tls_queued,
    .is_open = tls_is_open,
    .info = tls_info,
    .destroy = tls_destroy,
};

/* The TLS to an upstream proxy: the same but for its name and its facts,
 * which are not the origin's (the stack's `via` names the proxy, its
 * https:// scheme included). */
static void proxy_tls_info(const reel_filter_t *f, reel_stack_info_t *out) {
    out->via_tls = true;
    out->via_tls_done = reel_tls_handshake_done(((const tls_filter_t *)f)->tls);
}

static const reel_filter_ops_t proxy_tls_ops = {
    .name = "proxy-tls",
    .send = tls_send,
    .recv = tls_recv,
    .recv_eof = tls_recv_eof,
    .below_open = tls_below_open,
    .shutdown = tls_shutdown,
    .queued = tls_queued,
    .is_open = tls_is_open,
    .info = proxy_tls_info,
    .destroy = tls_destroy,
};
