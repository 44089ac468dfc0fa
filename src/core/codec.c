/* The codecs behind core/codec.h: HTTP/1 (over core/http1.c), WebSocket
 * (over core/ws.c) and raw TCP. */

#include "core/codec.h"

#include <stdlib.h>
#include <string.h>

void reel_codec_free(reel_codec_t *c) {
    if (c)
        c->ops->free(c);
}

/* ---- HTTP/1 ---- */

typedef struct {
    reel_codec_t base;
    reel_h1_t *p;
    uint32_t stream; /* the message being read (0: none started yet) */
    bool in_message;
} h1_codec_t;

/* The stream of an event: a head outside a message starts the next one;
 * an interim response (1xx) leaves the message open, so the final head
 * that follows has the same number. */
static void h1_translate(h1_codec_t *h, reel_codec_event_t *ev) {
    const reel_h1_event_t *e = &ev->h1;
    switch (e->type) {
    case REEL_H1_EV_HEAD:
        if (!h->in_message) {
            h->stream++;
            h->in_message = true;
        }
        ev->type = REEL_CODEC_EV_HEAD;
        break;
    case REEL_H1_EV_BODY:
        ev->type = REEL_CODEC_EV_DATA;
        ev->data = e->data;
        ev->len = e->len;
        break;
    case REEL_H1_EV_END:
        ev->type = REEL_CODEC_EV_END;
        h->in_message = false;
        break;
    case REEL_H1_EV_UPGRADE:
        ev->type = REEL_CODEC_EV_UPGRADE;
        h->in_message = false;
        break;
    case REEL_H1_EV_TUNNEL:
        ev->type = REEL_CODEC_EV_RAW;
        ev->data = e->data;
        ev->len = e->len;
        break;
    case REEL_H1_EV_NONE:
        ev->type = REEL_CODEC_EV_NONE;
        break;
    }
    ev->stream = h->stream;
}

static reel_rc h1_feed(reel_codec_t *c, const uint8_t *buf, size_t len, size_t *consumed,
                       reel_codec_event_t *ev) {
    h1_codec_t *h = (h1_codec_t *)c;
    memset(ev, 0, sizeof *ev);
    reel_rc rc = reel_h1_feed(h->p, buf, len, consumed, &ev->h1);
    if (rc == REEL_OK || rc == REEL_NEED_MORE) {
        h1_translate(h, ev);
    } else {
        ev->stream = h->in_message ? h->stream : h->stream + 1;
        ev->error_status = ev->h1.error_status;
        ev->error_reason = ev->h1.error_reason;
    }
    return rc;
}

static reel_rc h1_feed_eof(reel_codec_t *c, reel_codec_event_t *ev) {
    h1_codec_t *h = (h1_codec_t *)c;
    memset(ev, 0, sizeof *ev);
    reel_rc rc = reel_h1_feed_eof(h->p, &ev->h1);
    if (rc == REEL_OK) {
        h1_translate(h, ev);
    } else {
        ev->stream = h->stream;
        ev->error_status = ev->h1.error_status;
        ev->error_reason = ev->h1.error_reason;
    }
    return rc;
}

static void h1_free(reel_codec_t *c) {
    h1_codec_t *h = (h1_codec_t *)c;
    reel_h1_free(h->p);
    free(h);
}

static const reel_codec_ops_t h1_ops = {
    .name = "h1", .feed = h1_feed, .feed_eof = h1_feed_eof, .free = h1_free};

reel_codec_t *reel_h1_codec_new(reel_h1_side side, const reel_h1_limits_t *lim) {
    h1_codec_t *h = reel_calloc(1, sizeof *h);
    h->base.ops = &h1_ops;
    h->p = reel_h1_new(side, lim);
    return &h->base;
}

reel_h1_t *reel_h1_codec_parser(reel_codec_t *c) {
    return c && c->ops == &h1_ops ? ((h1_codec_t *)c)->p : NULL;
}

/* ---- WebSocket ---- */

typedef struct {
    reel_codec_t base;
    reel_ws_t *w;
} ws_codec_t;

static reel_rc ws_feed(reel_codec_t *c, const uint8_t *buf, size_t len, size_t *consumed,
                       reel_codec_event_t *ev) {
    memset(ev, 0, sizeof *ev);
    reel_rc rc = reel_ws_feed(((ws_codec_t *)c)->w, buf, len, consumed, &ev->ws);
    if (rc == REEL_OK && ev->ws.type != REEL_WS_EV_NONE) {
        ev->type = REEL_CODEC_EV_MESSAGE;
        ev->data = ev->ws.data;
        ev->len = ev->ws.len;
    } else if (rc != REEL_OK && rc != REEL_NEED_MORE) {
        ev->error_code = ev->ws.error_code;
        ev->error_reason = ev->ws.error_reason;
    }
    return rc;
}

static reel_rc ws_feed_eof(reel_codec_t *c, reel_codec_event_t *ev) {
    memset(ev, 0, sizeof *ev);
    reel_rc rc = reel_ws_feed_eof(((ws_codec_t *)c)->w, &ev->ws);
    if (rc != REEL_OK) {
        ev->error_code = ev->ws.error_code;
        ev->error_reason = ev->ws.error_reason;
    }
    return rc;
}

static void ws_free(reel_codec_t *c) {
    reel_ws_free(((ws_codec_t *)c)->w);
    free(c);
}

static const reel_codec_ops_t ws_ops = {
    .name = "ws", .feed = ws_feed, .feed_eof = ws_feed_eof, .free = ws_free};

reel_codec_t *reel_ws_codec_new(reel_ws_role role, const reel_ws_opts_t *opts) {
    ws_codec_t *w = reel_calloc(1, sizeof *w);
    w->base.ops = &ws_ops;
    w->w = reel_ws_new(role, opts);
    return &w->base;
}

reel_ws_t *reel_ws_codec_ws(reel_codec_t *c) {
    return c && c->ops == &ws_ops ? ((ws_codec_t *)c)->w : NULL;
}

/* ---- raw TCP ---- */

static reel_rc tcp_feed(reel_codec_t *c, const uint8_t *buf, size_t len, size_t *consumed,
                        reel_codec_event_t *ev) {
    (void)c;
    memset(ev, 0, sizeof *ev);
    *consumed = len;
    if (len == 0)
        return REEL_NEED_MORE;
    ev->type = REEL_CODEC_EV_MESSAGE;
    ev->data = buf;
    ev->len = len;
    return REEL_OK;
}

static reel_rc tcp_feed_eof(reel_codec_t *c, reel_codec_event_t *ev) {
    (void)c;
    memset(ev, 0, sizeof *ev);
    return REEL_OK;
}

static void tcp_free(reel_codec_t *c) {
    free(c);
}

static const reel_codec_ops_t tcp_ops = {
    .name = "tcp", .feed = tcp_feed, .feed_eof = tcp_feed_eof, .free = tcp_free};

reel_codec_t *reel_tcp_codec_new(void) {
    reel_codec_t *c = reel_calloc(1, sizeof *c);
    c->ops = &tcp_ops;
    return c;
}
