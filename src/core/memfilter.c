/* The in-memory bottom filter. See core/memfilter.h. */

#include "core/memfilter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_filter mem_filter_t;

struct reel_mempipe {
    uv_timer_t timer; /* deferred events */
    mem_filter_t *f;  /* NULL once destroyed */
    bool filter_taken;
    bool connected, reading, shut, closed, eof_in, eof_delivered;
    bool want_connect, want_close;
    char *refuse;
    reel_buf_t in;   /* fed, not yet delivered */
    reel_buf_t sent; /* written by the stack */
};

struct mem_filter {
    reel_filter_t f;
    reel_mempipe_t *mp;
};

static const reel_filter_ops_t mem_ops;

static void deliver(reel_mempipe_t *mp) {
    mem_filter_t *m = mp->f;
    if (m == NULL || !mp->reading || !mp->connected || mp->want_close)
        return;
    if (mp->in.len) {
        /* the stack may pause reading or close inside: hand over a copy */
        reel_buf_t b = mp->in;
        reel_buf_init(&mp->in, 0);
        reel_filter_up(&m->f, b.data, b.len);
        reel_buf_free(&b);
    }
    if (mp->eof_in && !mp->eof_delivered && mp->f && !mp->f->f.st->closing) {
        mp->eof_delivered = true;
        reel_filter_up_eof(&mp->f->f, NULL);
    }
    if (mp->f)
        reel_filter_read_done(&mp->f->f);
}

static void on_timer(uv_timer_t *t) {
    reel_mempipe_t *mp = t->data;
    mem_filter_t *m = mp->f;
    if (m == NULL)
        return;
    if (mp->want_close) {
        mp->want_close = false;
        mp->closed = true;
        reel_stack_closed_by_bottom(m->f.st); /* destroys m */
        return;
    }
    if (mp->want_connect) {
        mp->want_connect = false;
        if (mp->refuse) {
            reel_filter_fail(&m->f, mp->refuse);
            return;
        }
        mp->connected = true;
        reel_filter_connected(&m->f);
        if (mp->f == NULL || mp->want_close)
            return;
    }
    if (mp->in.len || (mp->eof_in && !mp->eof_delivered))
        deliver(mp);
}

static void later(reel_mempipe_t *mp) {
    uv_timer_start(&mp->timer, on_timer, 0, 0);
}

reel_mempipe_t *reel_mempipe_new(uv_loop_t *loop, bool connected, const char *refuse) {
    reel_mempipe_t *mp = reel_calloc(1, sizeof *mp);
    uv_timer_init(loop, &mp->timer);
    mp->timer.data = mp;
    mp->connected = connected;
    mp->refuse = refuse ? reel_strdup(refuse) : NULL;
    reel_buf_init(&mp->in, 0);
    reel_buf_init(&mp->sent, 0);
    return mp;
}

static void on_timer_closed(uv_handle_t *h) {
    free(h->data);
}

void reel_mempipe_free(reel_mempipe_t *mp) {
    if (mp == NULL)
        return;
    reel_buf_free(&mp->in);
    reel_buf_free(&mp->sent);
    free(mp->refuse);
    if (mp->f)
        mp->f->mp = NULL; /* a caller bug; keep the filter from writing here */
    uv_close((uv_handle_t *)&mp->timer, on_timer_closed);
}

reel_filter_t *reel_mempipe_filter(reel_mempipe_t *mp) {
    if (mp->filter_taken)
        return NULL;
    mem_filter_t *m = reel_calloc(1, sizeof *m);
    m->f.ops = &mem_ops;
    m->mp = mp;
    mp->f = m;
    mp->filter_taken = true;
    return &m->f;
}

void reel_mempipe_feed(reel_mempipe_t *mp, const void *data, size_t len) {
    reel_buf_append(&mp->in, data, len);
    deliver(mp);
}

void reel_mempipe_feed_eof(reel_mempipe_t *mp) {
    mp->eof_in = true;
    deliver(mp);
}

reel_buf_t *reel_mempipe_sent(reel_mempipe_t *mp) {
    return &mp->sent;
}

bool reel_mempipe_shut(const reel_mempipe_t *mp) {
    return mp->shut;
}

bool reel_mempipe_closed(const reel_mempipe_t *mp) {
    return mp->closed;
}

bool reel_mempipe_reading(const reel_mempipe_t *mp) {
    return mp->reading;
}

/* ---- the filter ---- */

static void mem_open(reel_filter_t *f) {
    mem_filter_t *m = (mem_filter_t *)f;
    m->mp->want_connect = true;
    later(m->mp);
}

static void mem_send(reel_filter_t *f, const uint8_t *data, size_t len) {
    mem_filter_t *m = (mem_filter_t *)f;
    if (m->mp && m->mp->connected && !m->mp->shut)
        reel_buf_append(&m->mp->sent, data, len);
}

static void mem_shutdown(reel_filter_t *f) {
    mem_filter_t *m = (mem_filter_t *)f;
    if (m->mp)
        m->mp->shut = true;
}

static bool mem_is_open(const reel_filter_t *f) {
    const mem_filter_t *m = (const mem_filter_t *)f;
    return m->mp && m->mp->connected && !f->st->closing;
}

static void mem_set_reading(reel_filter_t *f, bool on) {
    mem_filter_t *m = (mem_filter_t *)f;
    reel_mempipe_t *mp = m->mp;
    if (mp == NULL)
        return;
    bool was = mp->reading;
    mp->reading = on;
    if (on && !was && (mp->in.len || (mp->eof_in && !mp->eof_delivered)))
        later(mp);
}

static void mem_info(const reel_filter_t *f, reel_stack_info_t *out) {
    (void)f;
    snprintf(out->local, sizeof out->local, "mem:0");
    snprintf(out->remote, sizeof out->remote, "mem:1");
}

static void mem_close(reel_filter_t *f) {
    mem_filter_t *m = (mem_filter_t *)f;
    if (m->mp == NULL)
        return;
    m->mp->want_close = true;
    m->mp->reading = false;
    later(m->mp);
}

static void mem_destroy(reel_filter_t *f) {
    mem_filter_t *m = (mem_filter_t *)f;
    if (m->mp)
        m->mp->f = NULL;
    free(m);
}

static const reel_filter_ops_t mem_ops = {
    .name = "mem",
    .open = mem_open,
    .send = mem_send,
    .shutdown = mem_shutdown,
    .is_open = mem_is_open,
    .set_reading = mem_set_reading,
    .info = mem_info,
    .close = mem_close,
    .destroy = mem_destroy,
};
