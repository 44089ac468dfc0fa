/* Transport filter stacks: the plumbing between filters and to the owner.
 * See core/filter.h. */

#include "core/filter.h"

#include <string.h>

void reel_stack_init(reel_stack_t *st, const reel_stack_events_t *ev, void *ud) {
    memset(st, 0, sizeof *st);
    st->ev = ev;
    st->ud = ud;
}

void reel_stack_push(reel_stack_t *st, reel_filter_t *f, const uint8_t *initial, size_t n) {
    f->st = st;
    f->above = NULL;
    f->below = st->top;
    if (st->top)
        st->top->above = f;
    else
        st->bottom = f;
    st->top = f;
    if (f->below && f->below->ops->is_open(f->below) && f->ops->below_open)
        f->ops->below_open(f);
    if (n && !st->closing && f->ops->recv) {
        f->ops->recv(f, initial, n);
        if (!st->closing && !st->failed && st->ev->read_done)
            st->ev->read_done(st->ud);
    }
}

void reel_stack_connect(reel_stack_t *st) {
    if (st->bottom && !st->closing && st->bottom->ops->open)
        st->bottom->ops->open(st->bottom);
}

void reel_stack_send(reel_stack_t *st, const void *data, size_t len) {
    if (st->top && !st->closing && len)
        st->top->ops->send(st->top, data, len);
}

size_t reel_stack_queued(const reel_stack_t *st) {
    size_t n = 0;
    for (const reel_filter_t *f = st->top; f; f = f->below)
        n += f->ops->queued ? f->ops->queued(f) : 0;
    return n;
}

size_t reel_stack_unread(const reel_stack_t *st) {
    const reel_filter_t *b = st->bottom;
    return b && b->ops->unread ? b->ops->unread(b) : 0;
}

size_t reel_stack_unsent(const reel_stack_t *st) {
    const reel_filter_t *b = st->bottom;
    return b && b->ops->unsent ? b->ops->unsent(b) : 0;
}

bool reel_stack_broken(const reel_stack_t *st) {
    const reel_filter_t *b = st->bottom;
    return b && b->ops->broken && b->ops->broken(b);
}

bool reel_stack_peer_ended(const reel_stack_t *st) {
    const reel_filter_t *b = st->bottom;
    return b && b->ops->peer_ended && b->ops->peer_ended(b);
}

bool reel_stack_open(const reel_stack_t *st) {
    return st->top && !st->closing && st->top->ops->is_open(st->top);
}

void reel_stack_set_reading(reel_stack_t *st, bool on) {
    if (st->bottom && !st->closing && st->bottom->ops->set_reading)
        st->bottom->ops->set_reading(st->bottom, on);
}

void reel_stack_info(const reel_stack_t *st, reel_stack_info_t *out) {
    out->local[0] = out->remote[0] = '\0';
    out->t_dns0 = out->t_dns1 = out->t_connected = 0;
    out->setup_dns0 = out->setup_dns1 = out->setup_connected = out->setup_tls_done = 0;
    out->setup_tunnel_open = 0;
    out->tls = out->tls_done = out->tls_resumed = out->tls_no_close_notify = false;
    out->alpn = out->sni = out->tls_version = out->cipher = NULL;
    out->verify_error = out->peer_cert = NULL;
    out->unchecked_error = out->unchecked_cert = NULL;
    out->client_cert_asked = false;
    out->client_cert = NULL;
    out->via = NULL;
    out->via_forward = false;
    out->via_open = false;
    out->via_tls = out->via_tls_done = false;
    out->dns_override = NULL;
    for (const reel_filter_t *f = st->bottom; f; f = f->above)
        if (f->ops->info)
            f->ops->info(f, out);
}

bool reel_stack_has_tls(const reel_stack_t *st) {
    for (const reel_filter_t *f = st->top; f; f = f->below)
        if (strcmp(f->ops->name, "tls") == 0)
            return true;
    return false;
}

void reel_stack_end(reel_stack_t *st) {
    if (st->top && !st->closing && st->top->ops->shutdown)
        st->top->ops->shutdown(st->top);
}

void reel_stack_end_transport(reel_stack_t *st) {
    if (st->bottom && !st->closing && st->bottom->ops->shutdown)
        st->bottom->ops->shutdown(st->bottom);
}

void reel_stack_close(reel_stack_t *st) {
    if (st->closing)
        return;
    st->closing = true;
    if (st->bottom)
        st->bottom->ops->close(st->bottom);
}

void reel_stack_abort(reel_stack_t *st) {
    if (!st->closing)
        st->reset = true;
    reel_stack_close(st);
}

void reel_stack_closed_once(reel_stack_t *st, bool *done) {
    if (*done)
        return;
    *done = true;
    reel_stack_closed_by_bottom(st);
}

void reel_stack_closed_by_bottom(reel_stack_t *st) {
    reel_filter_t *f = st->top;
    while (f) {
        reel_filter_t *below = f->below;
        f->ops->destroy(f);
        f = below;
    }
    st->top = st->bottom = NULL;
    st->ev->closed(st->ud);
}

/* ---- for filters ---- */

void reel_filter_up(reel_filter_t *f, const uint8_t *data, size_t len) {
    reel_stack_t *st = f->st;
    if (st->closing || st->failed || len == 0)
        return;
    if (f->above)
        f->above->ops->recv(f->above, data, len);
    else
        st->ev->data(st->ud, data, len);
}

void reel_filter_up_eof(reel_filter_t *f, const char *error) {
    reel_stack_t *st = f->st;
    if (st->closing || st->failed)
        return;
    if (f->above)
        f->above->ops->recv_eof(f->above, error);
    else
        st->ev->eof(st->ud, error);
}

void reel_filter_up_open(reel_filter_t *f) {
    reel_stack_t *st = f->st;
    if (st->closing || st->failed)
        return;
    if (f->above) {
        if (f->above->ops->below_open)
            f->above->ops->below_open(f->above);
    } else {
        st->ev->ready(st->ud);
    }
}

void reel_filter_down(reel_filter_t *f, const uint8_t *data, size_t len) {
    if (f->below && len)
        f->below->ops->send(f->below, data, len);
}

void reel_filter_fail(reel_filter_t *f, const char *why) {
    reel_stack_t *st = f->st;
    if (st->closing || st->failed)
        return;
    st->failed = true;
    st->ev->error(st->ud, why);
}

void reel_filter_read_done(reel_filter_t *f) {
    reel_stack_t *st = f->st;
    if (!st->closing && !st->failed)
        st->ev->read_done(st->ud);
}

void reel_filter_connected(reel_filter_t *f) {
    reel_stack_t *st = f->st;
    if (st->closing || st->failed)
        return;
    if (st->ev->connected)
        st->ev->connected(st->ud);
    reel_filter_up_open(f);
}

void reel_filter_written(reel_filter_t *f) {
    reel_stack_t *st = f->st;
    if (!st->closing && st->ev->written)
        st->ev->written(st->ud);
}
