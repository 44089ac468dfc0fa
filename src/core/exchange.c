/* HTTP/1 exchanges: request heads rewritten for the origin, bodies passed
 * on as received, responses back, upstream reuse and the retry after a
 * keep-alive race, answers reel makes itself, and the flow record of each
 * exchange (through core/capture.h). Part of the proxy; see core/conn.h. */

#include <ctype.h>

#include "core/conn.h"
#include "core/hostport.h"
#include "core/sniff.h"
#include "session/decode.h"

static int split_absolute(const char *t, size_t n, bool *https, char **host, int *port,
                          char **path);
static void request_msg(const reel_h1_head_t *h, const char *scheme, const char *host, int port,
                        const char *path, char ver[16], reel_msg_head_t *m);
static void record_unanswered(conn_t *c, const char *why);
static bool awaits_response(const conn_t *c);
static char *undelivered_why(const char *why, const char *what, size_t queued);
static void exchange_timings(conn_t *c, const upstream_facts_t *up, int64_t end_us,
                             reel_capture_timings_t *t);
static void start_flow(conn_t *c, const reel_h1_head_t *h, bool https, const char *host, int port,
                       const char *target, bool keeps_up, int64_t since_us, const char *mapped_to);
static bool check_auth(conn_t *c, const reel_h1_head_t *h);
static bool write_head(reel_buf_t *out, const reel_h1_head_t *h, bool request, const char *target,
                       bool keep_upgrade, bool add_close, const char *proxy_auth, const char *host,
                       const reel_header_edit_t *edits, size_t nedits);
static bool retryable_method(const char *m);
static void handle_connect(conn_t *c, const reel_h1_head_t *h);
static void request_head(conn_t *c, const reel_h1_head_t *h);
static void exchange_done(conn_t *c, bool upstream_reusable);
static void maybe_finish(conn_t *c);
static void resp_head(conn_t *c, const reel_h1_head_t *h);
static void retry_on_new_upstream(conn_t *c, bool held);
static void fail_noted(conn_t *c, int status, const char *reason, const char *note);
static const reel_capture_tls_t *client_tls(conn_t *c, reel_capture_tls_t *out);

/* ---- small helpers ---- */

/* Wall clock in µs, the clock the recorder stamps records with. */
int64_t reel__now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void reel__conn_touch(conn_t *c) {
    c->last_activity = uv_now(c->p->loop);
}

/* Splits "host:port" / "[v6]:port" (authority form). */
int reel__split_authority(const char *a, size_t n, char **host, int *port, int def_port) {
    const char *end = a + n, *h = a, *he, *colon = NULL;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (close == NULL)
            return -1;
        h = a + 1;
        he = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return -1;
            colon = close + 1;
        }
    } else {
        colon = NULL;
        for (const char *q = a; q < end; q++)
            if (*q == ':')
                colon = q;
        he = colon ? colon : end;
    }
    if (he == h)
        return -1;
    for (const char *q = h; q < he; q++)
        if ((unsigned char)*q <= 0x20 || *q == '/' || *q == '@' || *q == '?' || *q == '#')
            return -1;
    int pt = def_port;
    if (colon) {
        if (colon + 1 == end || end - colon > 6)
            return -1;
        pt = 0;
        for (const char *q = colon + 1; q < end; q++) {
            if (*q < '0' || *q > '9')
                return -1;
            pt = pt * 10 + (*q - '0');
        }
        if (pt < 1 || pt > 65535)
            return -1;
    }
    *host = reel_strndup(h, (size_t)(he - h));
    *port = pt;
    return 0;
}

/* Absolute-form "http://host[:port]/path" -> parts; path defaults to "/". */
static int split_absolute(const char *t, size_t n, bool *https, char **host, int *port,
                          char **path) {
    size_t skip;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0) {
        *https = false;
        skip = 7;
    } else if (n >= 8 && strncasecmp(t, "https://", 8) == 0) {
        *https = true;
        skip = 8;
    } else {
        return -1;
    }
    const char *a = t + skip, *end = t + n, *slash = a;
    while (slash < end && *slash != '/' && *slash != '?')
        slash++;
    const char *at = memchr(a, '@', (size_t)(slash - a));
    if (at)
        return -1; /* userinfo in a proxy request: refuse rather than guess */
    if (reel__split_authority(a, (size_t)(slash - a), host, port, *https ? 443 : 80) != 0)
        return -1;
    if (slash == end)
        *path = reel_strdup("/");
    else if (*slash == '?')
        *path = reel_asprintf("/%.*s", (int)(end - slash), slash);
    else
        *path = reel_strndup(slash, (size_t)(end - slash));
    return 0;
}

/* True when the absolute URL t has nothing after its authority: no path,
 * not even "/", and no query. */
static bool bare_authority(const char *t, size_t n) {
    const char *a = memmem(t, n, "://", 3);
    if (a == NULL)
        return false;
    a += 3;
    return memchr(a, '/', n - (size_t)(a - t)) == NULL &&
           memchr(a, '?', n - (size_t)(a - t)) == NULL;
}

bool reel__host_ignored(reel_proxy_t *p, const char *host, int port) {
    if (p->nignore == 0)
        return false;
    char *hp = reel_asprintf("%s:%d", host, port);
    bool hit = false;
    pcre2_match_data *md = NULL;
    for (size_t i = 0; i < p->nignore && !hit; i++) {
        md = pcre2_match_data_create_from_pattern(p->ignore[i], NULL);
        hit = pcre2_match(p->ignore[i], (PCRE2_SPTR)hp, strlen(hp), 0, 0, md, NULL) >= 0;
        pcre2_match_data_free(md);
    }
    free(hp);
    return hit;
}

/* A request head in neutral terms (ver: room for "HTTP/x.y"). */
static void request_msg(const reel_h1_head_t *h, const char *scheme, const char *host, int port,
                        const char *path, char ver[16], reel_msg_head_t *m) {
    reel_h1_version_str(ver, h ? h->version_major : 1, h ? h->version_minor : 1);
    if (h == NULL || (h->version_major == 0 && h->version_minor == 0))
        ver[0] = '\0'; /* a refused request line that gave no version, or nothing */
    *m = (reel_msg_head_t){.method = h && h->method ? h->method : "",
                           .scheme = scheme,
                           .host = host ? host : "",
                           .port = (uint32_t)(port > 0 ? port : 0),
                           .path = path ? path : (h && h->target ? h->target : ""),
                           .version = ver,
                           .fields = h ? h->headers : NULL,
                           .nfields = h ? h->nheaders : 0,
                           .absolute_form = h && h->target_form == REEL_H1_TARGET_ABSOLUTE};
}

bool reel__is_lane_length(const reel_field_t *f) {
    return f->name_len == sizeof REEL_LANE_LENGTH - 1 &&
           memcmp(f->name, REEL_LANE_LENGTH, sizeof REEL_LANE_LENGTH - 1) == 0;
}

/* A lane of an HTTP/2 connection (core/h2front.c) records what its client
 * sent: version HTTP/2.0 and the client's own fields. */
static void lane_request(const conn_t *c, reel_msg_head_t *m) {
    if (c->lane == NULL || c->lane_tunnel)
        return;
    m->version = "HTTP/2.0";
    m->absolute_form = false; /* :scheme and :authority, no target form */
    if (c->lane_fields) {
        m->fields = c->lane_fields;
        m->nfields = c->lane_nfields;
    }
    /* RFC 8441: a WebSocket came as CONNECT with :protocol (core/h2front.c
     * keeps it as the first field); the lane's GET Upgrade is reel's
     * translation for the origin, not what the client sent */
    if (m->nfields && m->fields[0].name_len == 9 && memcmp(m->fields[0].name, ":protocol", 9) == 0)
        m->method = "CONNECT";
}

/* ---- ending flows ---- */

/* The phases of the current exchange, HAR style (-1: did not happen or not
 * known). dns, connect and ssl go to the first flow on a new upstream
 * connection only, and only if it was opened for that flow: a flow on a
 * reused connection has none, nor has the first on the connection that
 * asked the origin what to offer a CONNECT's client (the ALPN probe: it
 * was set up before the request came, which did not wait for it; counted,
 * its phases made the flow's time longer than the flow). The phases
 * follow one another without overlapping, so that they add up to the
 * flow's duration (HAR 1.2: time is their sum) even when the response
 * begins before the request ends (a 100 Continue, an early 413): send runs
 * from the connection being ready to the request's end, wait from there
 * to the first response byte (0 if that came first), receive from the
 * later of the two to the end. A request that had not ended when the flow
 * did is taken as sent up to the first response byte (or the end). */
static void exchange_timings(conn_t *c, const upstream_facts_t *up, int64_t end_us,
                             reel_capture_timings_t *t) {
    *t = (reel_capture_timings_t){-1, -1, -1, -1, -1, -1, -1};
    /* the phases start where the flow does (stamped before its connection
     * is asked for, so that a new one's set-up is inside it); a stamp
     * before that is cut there, or the phases would add up to more than
     * the flow's duration */
    int64_t from = c->ex.flow_start_us > c->ex.head_us ? c->ex.flow_start_us : c->ex.head_us;
    /* a lane's flow starts when its HTTP/2 stream's HEADERS came, before
     * the lane read its head: the time between (the stream waited for a
     * lane, every one busy) is blocked, HAR's wait for a connection, so
     * that the phases still add up to the flow's duration */
    int64_t queued =
        c->ex.flow_start_us && c->ex.flow_start_us < from ? from - c->ex.flow_start_us : 0;
    if (queued)
        t->blocked_us = queued;
#define AFTER(x) ((x) && (x) < from ? from : (x))
    int64_t ready = from;
    bool set_up_for_it = up && up->fresh && (up->dns0 == 0 || up->dns0 >= c->ex.head_us);
    if (set_up_for_it) {
        t->blocked_us = queued + reel__span_us(from, AFTER(up->dns0));
        t->dns_us = reel__span_us(AFTER(up->dns0), AFTER(up->dns1));
        t->connect_us = reel__span_us(AFTER(up->dns1), AFTER(up->connected));
    }
    /* its TLS handshake, when made for it: also one begun after the flow
     * on a connection made before it (the plain connection made early to
     * a tunnel's origin, reel's TLS put on it when the client's request
     * came: core/peer.c). One that failed (no ready) took until reel's
     * answer or the end: counted, or the phases fell short of the duration */
    if (up && up->fresh && up->https && up->connected &&
        (set_up_for_it || up->ready == 0 || up->ready > from))
        t->ssl_us =
            reel__span_us(AFTER(up->connected), up->ready             ? AFTER(up->ready)
                                                : c->ex.resp_first_us ? AFTER(c->ex.resp_first_us)
                                                                      : end_us);
#undef AFTER
    if (up && up->ready > ready)
        ready = up->ready;
    if (up && up->ready == 0)
        ready = 0; /* never got as far as sending */
    int64_t resp = c->ex.resp_first_us;
    int64_t recv_from = resp; /* where receive starts */
    if (ready) {
        int64_t sent = c->ex.req_end_us ? c->ex.req_end_us : resp ? resp : end_us;
        if (sent < ready)
            sent = ready; /* the body came before the connection was ready */
        if (sent > end_us)
            sent = end_us;
        t->send_us = reel__span_us(ready, sent);
        if (resp) {
            t->wait_us = reel__span_us(sent, resp); /* 0 when the response came first */
            if (sent > recv_from)
                recv_from = sent;
        }
    }
    if (resp)
        t->receive_us = reel__span_us(recv_from, end_us);
}

/* A flow's end as of the moment its exchange was over: written at once
 * (reel__finish_flow), or once the client has taken the response's bytes
 * (or with an error if it does not: reel__fin_take), so that a response
 * the client cancelled is not recorded as complete. A few dozen bytes; the
 * flow handle is the recorder's small one. */
struct reel_fin {
    reel_fin_t *next;
    reel_capture_flow_t *flow;
    reel_capture_timings_t t;
    int64_t request_end_us, response_start_us;
    uint64_t response_excess;
    bool websocket;       /* a WebSocket's end: what the client lacks is of its stream */
    bool tunnel;          /* a raw tunnel's (reel__tflow_when_delivered): the same */
    char server_addr[64]; /* "" when not known */
    reel_capture_tls_t *ctls; /* a TLS tunnel's client TLS (tflow_client_tls), owned */
};

/* Notes in c->ex.upf what the flow's record needs of up, its upstream
 * connection, as up stands now. The first flow to do so on a connection
 * gets its dns/connect/ssl times. */
static void note_upstream(conn_t *c, peer_t *up) {
    upstream_facts_t *u = &c->ex.upf;
    if (!u->known || u->id != up->id) {
        memset(u, 0, sizeof *u);
        u->known = true;
        u->id = up->id;
    }
    if (!up->timings_used && up->t_dns0) {
        up->timings_used = true;
        u->fresh = true;
    }
    u->https = up->https;
    u->dns0 = up->t_dns0;
    u->dns1 = up->t_dns1;
    u->connected = up->t_connected;
    u->ready = up->t_ready;
    if (up->connected)
        reel_strcpy_to(u->addr, sizeof u->addr, up->addr);
}

/* Takes c->ex.flow (non-NULL) into f, its timings and times as of now. */
static void fin_fill(conn_t *c, reel_fin_t *f) {
    /* a retry's connection that never got ready carried nothing: the
     * timings and address stay those of the reused one, which did */
    if (c->ex.flow_upstream && c->up && !(c->ex.retried && c->up->t_ready == 0))
        note_upstream(c, c->up);
    const upstream_facts_t *up = c->ex.flow_upstream && c->ex.upf.known ? &c->ex.upf : NULL;
    f->next = NULL;
    exchange_timings(c, up, reel__now_us(), &f->t);
    f->flow = c->ex.flow;
    f->request_end_us = c->ex.req_end_us;
    f->response_start_us = c->ex.resp_first_us;
    f->response_excess = c->ex.resp_excess;
    f->websocket = c->websocket;
    f->tunnel = false; /* (reel__tflow_when_delivered sets it) */
    reel_strcpy_to(f->server_addr, sizeof f->server_addr, up ? up->addr : "");
    c->ex.flow = NULL;
}

/* Writes f's end (why NULL: normally, else the error why). */
static void fin_write(const reel_fin_t *f, const char *why) {
    reel_capture_end_t e = {.error = why,
                            .timings = &f->t,
                            .time_us = reel__now_us(),
                            .request_end_us = f->request_end_us,
                            .response_start_us = f->response_start_us,
                            .server_addr = f->server_addr[0] ? f->server_addr : NULL,
                            .response_excess = f->response_excess,
                            .client_tls = f->ctls};
    reel_capture_finish(f->flow, &e);
}

/* Ends c->ex.flow (error NULL: normally) with its timings, request end, first
 * response byte and the server address. */
void reel__finish_flow(conn_t *c, const char *error) {
    if (c->ex.flow == NULL)
        return;
    reel_fin_t f;
    fin_fill(c, &f);
    f.ctls = NULL;
    fin_write(&f, error);
    if (error)
        STAT_ADD(c->p, errors, 1);
}

reel_fin_t *reel__fin_take(conn_t *c) {
    if (c->ex.flow == NULL)
        return NULL;
    reel_fin_t *f = reel_malloc(sizeof *f);
    fin_fill(c, f);
    f->ctls = NULL;
    return f;
}

void reel__fin_trailers(reel_fin_t *f, bool response, const reel_field_t *fl, size_t n,
                        bool not_passed_on) {
    if (f)
        reel_capture_trailers(f->flow, response, fl, n, not_passed_on);
}

void reel__fin_end(reel_fin_t *f, const char *why) {
    if (f == NULL)
        return;
    fin_write(f, why);
    free(f->ctls);
    free(f);
}

void reel__fins_delivered(conn_t *c) {
    while (c->fins) {
        reel_fin_t *f = c->fins;
        c->fins = f->next;
        reel__fin_end(f, NULL);
    }
}

/* why, and that the client went with queued bytes of the connection's
 * output (what: "response", "tunnel", ...) not yet sent: one wording for
 * a flow over on the origin's side and the exchange's own. Returns owned. */
static char *undelivered_why(const char *why, const char *what, size_t queued) {
    return reel_asprintf("%s before the client received the whole %s (%zu bytes of the "
                         "connection's output were still queued in reel)",
                         why, what, queued);
}

void reel__fins_undelivered(conn_t *c, const char *why) {
    if (c->fins && reel__peer_queued(&c->client) == 0) {
        reel__fins_delivered(c); /* nothing of theirs was left to send */
        return;
    }
    size_t queued = reel__peer_queued(&c->client);
    while (c->fins) {
        reel_fin_t *f = c->fins;
        c->fins = f->next;
        char *msg = undelivered_why(why,
                                    f->websocket ? "WebSocket"
                                    : f->tunnel  ? "tunnel"
                                                 : "response",
                                    queued);
        reel__fin_end(f, msg);
        free(msg);
        STAT_ADD(c->p, errors, 1);
    }
}

void reel__client_gone_ends_exchange(conn_t *c, const char *why) {
    reel__cut_end(c, why); /* a cut response's, waiting for its bytes to reach the client */
    size_t queued = reel__peer_queued(&c->client);
    bool waiting = awaits_response(c);
    reel__fins_undelivered(c, why); /* older ones first */
    if (c->ex.flow && c->ex.resp_head_sent && queued > 0 && !c->lane && c->state != C_RAW) {
        /* part of its response was still queued, as for one over on the
         * origin's side: the same words (docs/format.md) */
        char *msg = undelivered_why(why, "response", queued);
        reel__finish_flow(c, msg);
        free(msg);
    } else {
        reel__finish_flow(c, why);
    }
    if (waiting) {
        /* the requests pipelined behind it: read, never sent, and never
         * to be (no byte more reaches this client) */
        char *msg = reel_asprintf(
            "the client connection ended before reel sent it to the origin (%s)", why);
        record_unanswered(c, msg);
        free(msg);
    }
}

/* The exchange's flow is complete on the origin's side: ended now if the
 * client has every byte of it, else when it has (HTTP/1: the client's
 * queue empties, core/peer.c; a lane: its stream's DATA went out). */
void reel__finish_when_delivered(conn_t *c) {
    if (c->ex.flow == NULL)
        return;
    if (!c->lane && reel__peer_queued(&c->client) == 0) {
        reel__fins_delivered(c); /* older ones first */
        reel__finish_flow(c, NULL);
        return;
    }
    reel_fin_t *f = reel__fin_take(c);
    if (c->lane && reel__h2front_fin(c, f))
        return;
    if (reel__peer_queued(&c->client) == 0) {
        reel__fins_delivered(c);
        reel__fin_end(f, NULL);
        return;
    }
    reel_fin_t **tail = &c->fins;
    while (*tail)
        tail = &(*tail)->next;
    *tail = f;
}

/* The ServerConn record of the current flow, once its upstream is ready
 * (connected, TLS done): address, SNI, ALPN, TLS version and cipher, and
 * whether the connection was reused or the request retried on it. */
void reel__record_server_conn(conn_t *c) {
    peer_t *up = c->up;
    if (c->ex.flow == NULL || !c->ex.flow_upstream || c->ex.conn_recorded || up == NULL ||
        !up->connected)
        return;
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    if (info.tls && !info.tls_done)
        return;
    c->ex.conn_recorded = true;
    note_upstream(c, up); /* kept: the origin may close before the flow ends */
    reel_capture_conn_t sc = reel__conn_facts(up, &info);
    sc.reused = up->flows > 0;
    sc.retried = reel__ex_sent_again(c);
    sc.unverified = info.tls && up->insecure;
    up->flows++;
    reel_capture_server_conn(c->ex.flow, &sc);
}

/* A raw tunnel flow's timings (dns, connect: its upstream's) and server
 * address ("" when not connected), as of now. */
static void tflow_facts(conn_t *c, reel_capture_timings_t *t, char *addr, size_t n) {
    peer_t *up = c->up;
    *t = (reel_capture_timings_t){-1, -1, -1, -1, -1, -1, -1};
    if (up && up->t_dns0) {
        t->dns_us = reel__span_us(up->t_dns0, up->t_dns1);
        t->connect_us = reel__span_us(up->t_dns1, up->t_connected);
        /* a TLS tunnel's origin handshake, as its server_conn says (up to
         * now if it did not finish; from its STARTTLS if it began so) */
        int64_t tls0 = up->t_starttls > up->t_connected ? up->t_starttls : up->t_connected;
        if (up->https && up->t_connected)
            t->ssl_us = reel__span_us(tls0, up->t_ready ? up->t_ready : reel__now_us());
    }
    reel_strcpy_to(addr, n, up && up->connected ? up->addr : "");
}

/* A TLS tunnel's client TLS with reel, copied (one allocation; NULL: not
 * a TLS tunnel, or the client's handshake not done): for its end written
 * later (reel__tflow_fin_take), which keeps it when the flow's start could
 * not (begin_tls_tunnel with a mirrored ALPN starts the flow before the
 * client's handshake). */
static reel_capture_tls_t *tflow_client_tls(conn_t *c) {
    reel_capture_tls_t now;
    if (!c->tls_tunnel || client_tls(c, &now) == NULL)
        return NULL;
    const char *in[4] = {now.sni, now.alpn, now.tls_version, now.cipher};
    size_t len[4], total = 0;
    for (int i = 0; i < 4; i++)
        total += len[i] = in[i] ? strlen(in[i]) + 1 : 0;
    reel_capture_tls_t *t = reel_malloc(sizeof *t + total);
    char *at = (char *)(t + 1);
    const char **out[4] = {&t->sni, &t->alpn, &t->tls_version, &t->cipher};
    for (int i = 0; i < 4; i++) {
        *out[i] = in[i] ? memcpy(at, in[i], len[i]) : NULL;
        at += len[i];
    }
    t->resumed = now.resumed;
    return t;
}

/* The same for the raw tunnel flow. */
void reel__finish_tflow(conn_t *c, const char *error) {
    if (c->tflow == NULL)
        return;
    if (c->upgrade_fin) { /* an Upgrade's flow: its HTTP end, written now */
        reel__fin_end(c->upgrade_fin, error);
        c->upgrade_fin = NULL;
        c->tflow = NULL;
        if (error)
            STAT_ADD(c->p, errors, 1);
        return;
    }
    reel_capture_timings_t t;
    char addr[64];
    tflow_facts(c, &t, addr, sizeof addr);
    /* bytes reel held for a STARTTLS never reached the server: said */
    size_t held = reel__starttls_held(c);
    char *why = held ? reel_asprintf("%s%sthe client's %zu bytes after the server agreed to "
                                     "STARTTLS (the start of its TLS handshake) were held by reel "
                                     "for its interception and never relayed",
                                     error ? error : "", error ? "; " : "", held)
                     : NULL;
    if (why)
        error = why;
    reel_capture_tls_t now; /* (written at once: the stack's own strings) */
    reel_capture_end_t e = {.error = error,
                            .timings = &t,
                            .server_addr = addr[0] ? addr : NULL,
                            .client_tls = c->tls_tunnel ? client_tls(c, &now) : NULL};
    reel_capture_finish(c->tflow, &e);
    c->tflow = NULL;
    if (error)
        STAT_ADD(c->p, errors, 1);
    free(why);
}

reel_fin_t *reel__tflow_fin_take(conn_t *c) {
    if (c->tflow == NULL)
        return NULL;
    if (c->upgrade_fin) {
        reel_fin_t *f = c->upgrade_fin;
        c->upgrade_fin = NULL;
        c->tflow = NULL;
        return f;
    }
    reel_fin_t *f = reel_calloc(1, sizeof *f);
    f->flow = c->tflow;
    tflow_facts(c, &f->t, f->server_addr, sizeof f->server_addr);
    f->ctls = tflow_client_tls(c);
    c->tflow = NULL;
    return f;
}

void reel__tflow_when_delivered(conn_t *c) {
    if (c->tflow == NULL || c->lane)
        return;
    if (reel__peer_queued(&c->client) == 0) {
        reel__fins_delivered(c); /* older ones first */
        reel__finish_tflow(c, NULL);
        return;
    }
    reel_fin_t *f = reel__tflow_fin_take(c);
    f->tunnel = true;
    reel_fin_t **tail = &c->fins;
    while (*tail)
        tail = &(*tail)->next;
    *tail = f;
}

/* ---- responses made by the proxy ---- */

/* The reason phrases of IANA's HTTP status code registry (RFC 9110
 * section 15 and the codes other RFCs added), for the status lines reel
 * writes: its own answers, and HTTP/2 responses given to HTTP/1.1 clients
 * (HTTP/2 carries no phrase). An unknown code gets an empty phrase, which
 * HTTP/1.1 allows. (llhttp's llhttp_status_name gives enum names such as
 * NOT_FOUND, and aborts on a code it does not know.) */
const char *reel__status_text(int status) {
    static const struct {
        short code;
        const char *text;
    } phrases[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {102, "Processing"},
        {103, "Early Hints"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {207, "Multi-Status"},
        {208, "Already Reported"},
        {226, "IM Used"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {305, "Use Proxy"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {423, "Locked"},
        {424, "Failed Dependency"},
        {425, "Too Early"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {506, "Variant Also Negotiates"},
        {507, "Insufficient Storage"},
        {508, "Loop Detected"},
        {510, "Not Extended"},
        {511, "Network Authentication Required"},
    };
    size_t lo = 0, hi = sizeof phrases / sizeof phrases[0];
    while (lo < hi) { /* sorted by code */
        size_t mid = lo + (hi - lo) / 2;
        if (phrases[mid].code == status)
            return phrases[mid].text;
        if (phrases[mid].code < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return "";
}

/* The exchange is over and so is the connection: the upstream closes
 * now, the client once its answer has left (reading paused meanwhile),
 * then lingers (C_LINGER) to drain what it still sends if linger. */
static void close_after_answer(conn_t *c, bool linger) {
    c->state = C_DONE;
    c->linger = linger;
    reel__upstream_close(c);
    c->client.close_when_flushed = true;
    if (reel__peer_queued(&c->client) == 0)
        reel__conn_close_flushed(c);
    else
        reel__peer_read_stop(&c->client);
}

/* Answers the client with an error and closes it. The flow (the caller
 * starts one if the request never got that far) records the response reel
 * sent, marked as generated, and ends with the error. */
void reel__fail_exchange(conn_t *c, int status, const char *reason) {
    fail_noted(c, status, reason, NULL);
}

/* reel__fail_exchange, with a note (NULL: none) after the reason in the
 * flow's error, not in the answer. */
static void fail_noted(conn_t *c, int status, const char *reason, const char *note) {
    reel_buf_t msg;
    reel_buf_init(&msg, 0);
    if (!c->ex.resp_head_sent && status > 0 && !c->client.closing) {
        char *body = reel_asprintf("reel: %s\n", reason);
        char clen[24];
        snprintf(clen, sizeof clen, "%zu", strlen(body));
        reel_field_t hs[4] = {
            {"Content-Type", 12, "text/plain; charset=utf-8", 25},
            {"Content-Length", 14, clen, strlen(clen)},
            {"Connection", 10, "close", 5},
            {"Proxy-Authenticate", 18, "Basic realm=\"reel\"", 18},
        };
        size_t nh = status == 407 ? 4 : 3;
        reel_buf_printf(&msg, "HTTP/1.1 %d %s\r\n", status, reel__status_text(status));
        for (size_t i = 0; i < nh; i++)
            reel_buf_printf(&msg, "%s: %s\r\n", hs[i].name, hs[i].value);
        reel_buf_printf(&msg, "\r\n%s", body);
        c->ex.resp_head_sent = true;
        if (c->ex.flow) {
            int64_t now = reel__now_us();
            if (c->ex.resp_first_us == 0)
                c->ex.resp_first_us = now;
            /* an HTTP/2 client's stream gets the head as core/h2front.c
             * writes it: no reason, names in lower case, no Connection */
            reel_field_t h2[3] = {
                {"content-type", 12, hs[0].value, hs[0].value_len},
                {"content-length", 14, hs[1].value, hs[1].value_len},
                {"proxy-authenticate", 18, hs[3].value, hs[3].value_len},
            };
            bool stream = c->lane && !c->lane_tunnel; /* (in a tunnel: HTTP/1.1 bytes) */
            reel_msg_head_t rs = {.status = (uint32_t)status,
                                  .reason = stream ? "" : reel__status_text(status),
                                  .version = stream ? "HTTP/2.0" : "HTTP/1.1",
                                  .fields = stream ? h2 : hs,
                                  .nfields = stream ? (status == 407 ? 3 : 2) : nh};
            reel_capture_response(c->ex.flow, &rs, true, now);
            reel_capture_body(c->ex.flow, true, body, strlen(body));
        }
        free(body);
    }
    /* The flow ends, with its error, before the answer goes: a lane's
     * stream (core/h2front.c) that sees its response whole takes the
     * conn's flow at once and would end it without either. */
    /* A client that ended its side while it waited (a half-close, or
     * gone: which cannot be told) may never read reel's answer: the flow
     * says when it ended, not only that reel answered */
    char *gone = status > 0 && c->ex.client_ended_us
                     ? reel_asprintf("; the client had ended its side of the connection %.1f s "
                                     "before, while it waited for the response (it may have "
                                     "left: reel's answer may have reached no one)",
                                     (double)(reel__now_us() - c->ex.client_ended_us) / 1e6)
                     : NULL;
    char *noted = note || gone ? reel_asprintf("%s%s%s%s", reason, note ? " " : "",
                                               note ? note : "", gone ? gone : "")
                               : NULL;
    reel__finish_flow(c, noted ? noted : reason);
    free(noted);
    free(gone);
    if (status > 0 && msg.len) {
        char *why = reel_asprintf("reel closed the connection after its %d answer to the "
                                  "request before",
                                  status);
        record_unanswered(c, why);
        free(why);
    }
    if (msg.len)
        reel__peer_write(&c->client, msg.data, msg.len);
    reel_buf_free(&msg);
    close_after_answer(c, c->ex.resp_head_sent && status > 0);
}

/* The client's TLS with reel for a flow c starts (a lane's: its HTTP/2
 * connection's), in *out; NULL when the client's connection is not TLS or
 * its handshake is not done. */
static const reel_capture_tls_t *client_tls(conn_t *c, reel_capture_tls_t *out) {
    conn_t *front = c->lane && !c->lane_tunnel ? reel__h2front_conn(c) : c;
    if (front == NULL || !front->client_tls)
        return NULL; /* (plain HTTP: no walk of the stack) */
    reel_stack_info_t info;
    reel_stack_info(&front->client.st, &info);
    if (!info.tls || !info.tls_done)
        return NULL;
    *out = (reel_capture_tls_t){.sni = info.sni,
                                .alpn = info.alpn,
                                .tls_version = info.tls_version,
                                .cipher = info.cipher,
                                .resumed = info.tls_resumed};
    return out;
}

reel_capture_flow_t *reel__flow_start(conn_t *c, reel_capture_kind kind, const char *server_addr,
                                      uint32_t stream_id, int64_t time_us) {
    reel_capture_tls_t tls;
    return reel_capture_start(c->p->rec, kind, c->client_addr, server_addr, c->id, stream_id,
                              time_us, client_tls(c, &tls));
}

/* Records a flow for a request refused before it was forwarded. */
void reel__record_refused(conn_t *c, const reel_h1_head_t *h, const char *scheme, const char *host,
                          int port, const char *target) {
    char ver[16];
    reel_msg_head_t m;
    request_msg(h, scheme, host, port, target, ver, &m);
    reel__record_refused_msg(c, &m);
}

/* reel__record_refused, with the request as the record gives it (a
 * SOCKS5 request's, core/socks_front.c). */
void reel__record_refused_msg(conn_t *c, reel_msg_head_t *m) {
    /* it starts when its head began to come (a 408's, head_timeout
     * before), when that was in an earlier read */
    int64_t now = reel__now_us();
    uint64_t ms = uv_now(c->p->loop);
    int64_t start = c->ex.head_started && c->ex.head_started <= ms
                        ? now - (int64_t)(ms - c->ex.head_started) * 1000
                        : now;
    if (c->lane_came_us && c->lane_came_us < start)
        start = c->lane_came_us; /* its HTTP/2 stream's HEADERS came then (start_flow) */
    c->ex.flow = reel__flow_start(c, REEL_CAPTURE_HTTP, NULL, c->lane_stream, start);
    STAT_ADD(c->p, flows, 1);
    c->ex.head_us = c->ex.flow_start_us = start;
    c->ex.req_end_us = c->ex.resp_first_us = 0;
    c->ex.flow_upstream = false;
    c->ex.upf.known = false;
    lane_request(c, m);
    reel_capture_request(c->ex.flow, m);
}

/* The bytes of a head the parser refused, for its flow's error: those of
 * earlier reads (c->ex.head_raw), then p[0..n), up to the head's end (its
 * blank line) or all that was read, at most HEAD_QUOTE_MAX of them,
 * quoted. The record's head holds what the parser took of it, up to the
 * field at fault; these are the evidence of the rest (a second
 * Content-Length's value, the fields after a bad line), and for a
 * response the only record of the origin's head. */
#define HEAD_QUOTE_MAX 1024
static char *head_as_it_came(conn_t *c, const char *what, const uint8_t *p, size_t n) {
    reel_buf_t all;
    reel_buf_init(&all, 0);
    reel_buf_append(&all, c->ex.head_raw.data, c->ex.head_raw.len);
    reel_buf_append(&all, p, n);
    /* (head_raw at its cap: the quote is as long, and says it is cut) */
    const uint8_t *q = all.data;
    size_t end = all.len;
    for (size_t i = 0; i + 1 < all.len; i++)
        if (q[i] == '\n' &&
            (q[i + 1] == '\n' || (q[i + 1] == '\r' && i + 2 < all.len && q[i + 2] == '\n'))) {
            end = i + (q[i + 1] == '\n' ? 2 : 3);
            break;
        }
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_printf(&b, "(%s as it came: ", what);
    reel_buf_put_quoted(&b, q, end, HEAD_QUOTE_MAX);
    reel_buf_puts(&b, ")");
    reel_buf_free(&all);
    return (char *)b.data;
}

/* Keeps the n head bytes at p that a read brought and the parser took
 * without finishing the head, up to HEAD_QUOTE_MAX (head_as_it_came). */
static void head_raw_keep(conn_t *c, const uint8_t *p, size_t n) {
    size_t room = c->ex.head_raw.len < HEAD_QUOTE_MAX ? HEAD_QUOTE_MAX - c->ex.head_raw.len : 0;
    reel_buf_append(&c->ex.head_raw, p, n < room ? n : room);
}

char *reel__head_cut_note(conn_t *c, bool for_client) {
    const char *name = NULL;
    size_t name_len = 0;
    const char *where = reel_h1_partial_cut(reel_h1_codec_parser(c->reqc), &name, &name_len);
    if (where == NULL)
        return reel_strdup("");
    int n = (int)(name_len > 100 ? 100 : name_len);
    if (for_client) /* (the record's part is for its reader alone) */
        return name ? reel_asprintf("it ended in the value of field %.*s", n, name)
                    : reel_asprintf("it ended %s", where);
    if (name)
        return reel_asprintf("it ended in the value of field %.*s, which the record gives as far "
                             "as it came; ",
                             n, name);
    if (strcmp(where, "in the name of a field") == 0)
        return reel_asprintf("it ended %s, which the record leaves out; ", where);
    if (strcmp(where, "in its request line") == 0)
        return reel_asprintf("it ended %s, after the target; ", where);
    return reel_asprintf("it ended %s, which the record gives as far as it came; ", where);
}

bool reel__head_abandoned(conn_t *c, const char *error) {
    reel_h1_head_t ph;
    if (c->state != C_HEAD || c->ex.flow || !c->ex.head_started ||
        !reel_h1_partial_head(reel_h1_codec_parser(c->reqc), &ph) || ph.method_len == 0)
        return false; /* nothing but blank lines came, or a whole head */
    char *cut = reel__head_cut_note(c, false);
    reel__record_rejected(c);
    char *why = reel_asprintf("%s before its request head was complete (%snothing was sent on: "
                              "reel forwards a head once it is whole)",
                              error ? error : "the client closed the connection", cut);
    reel__fail_exchange(c, 0, why);
    free(why);
    free(cut);
    return true;
}

/* Records a flow for a request that failed before its head was complete
 * (a 400 or 431 from the parser, a head timeout), with what the parser
 * had of it: method, target (maybe cut short) and the fields read so far. */
void reel__record_rejected(conn_t *c) {
    reel_h1_head_t ph;
    if (!reel_h1_partial_head(reel_h1_codec_parser(c->reqc), &ph)) {
        reel__record_refused(c, NULL, c->in_tunnel && reel__tunnel_https(c) ? "https" : "http",
                             c->in_tunnel ? c->tunnel_host : NULL,
                             c->in_tunnel ? c->tunnel_port : 0, "");
        return;
    }
    char *method = reel_strndup(ph.method ? ph.method : "", ph.method_len);
    char *target = reel_strndup(ph.target ? ph.target : "", ph.target_len);
    bool https = c->in_tunnel && reel__tunnel_https(c);
    char *host = c->in_tunnel && c->tunnel_host ? reel_strdup(c->tunnel_host) : NULL;
    char *path = NULL;
    int port = c->in_tunnel ? c->tunnel_port : 0;
    reel_h1_head_t h = ph;
    if (!c->in_tunnel) {
        char *h2 = NULL;
        bool s2 = false;
        int p2 = 0;
        if (split_absolute(target, strlen(target), &s2, &h2, &p2, &path) == 0) {
            https = s2;
            host = h2;
            port = p2;
            /* the parser had not got as far as telling the form: the
             * record says it, as for a request read whole */
            h.target_form = REEL_H1_TARGET_ABSOLUTE;
        }
    }
    h.method = method;
    h.target = target;
    reel__record_refused(c, &h, https ? "https" : "http", host, port, path ? path : target);
    free(method);
    free(target);
    free(host);
    free(path);
}

/* Requests the client pipelined behind the one whose answer ends the
 * connection (reel's own error answer, or a response that closes it):
 * reel read them and will never answer them, and the client, seeing the
 * close, sends them again if it can. Each whole head that came is a flow
 * with its body as far as it came, ended with why, as a refused request
 * is; a request still coming when the connection closes is not one yet.
 * Only once the request before them was read whole (else what follows is
 * its body, not requests). */
static void record_unanswered(conn_t *c, const char *why) {
    peer_t *cl = &c->client;
    if (cl->in.len == 0 || c->lane || !c->ex.req_done)
        return;
    reel_codec_t *pc = reel_h1_codec_new(REEL_H1_REQUEST, NULL);
    reel_capture_flow_t *f = NULL;
    char *msg = reel_asprintf("not answered: %s", why);
    size_t off = 0;
    while (off < cl->in.len) {
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(pc, cl->in.data + off, cl->in.len - off, &used, &ev);
        off += used;
        if (rc != REEL_OK || ev.type == REEL_CODEC_EV_NONE)
            break; /* the rest is not a whole head, or not HTTP */
        const reel_h1_event_t *e = &ev.h1;
        if (e->type == REEL_H1_EV_HEAD) {
            const reel_h1_head_t *h = &e->head;
            bool https = c->in_tunnel && reel__tunnel_https(c);
            char *host = NULL, *path = NULL;
            int port = 0;
            if (h->target_form == REEL_H1_TARGET_ABSOLUTE)
                split_absolute(h->target, h->target_len, &https, &host, &port, &path);
            if (host == NULL && c->in_tunnel) {
                host = reel_strdup(c->tunnel_host);
                port = c->tunnel_port;
            }
            f = reel__flow_start(c, REEL_CAPTURE_HTTP, NULL, 0, 0);
            STAT_ADD(c->p, flows, 1);
            char ver[16];
            reel_msg_head_t m;
            request_msg(h, https ? "https" : "http", host, port, path, ver, &m);
            reel_capture_request(f, &m);
            free(host);
            free(path);
        } else if (e->type == REEL_H1_EV_BODY && f) {
            reel_capture_body(f, false, e->data, e->len);
        } else if (e->type == REEL_H1_EV_END && f) {
            reel_capture_end_t end = {.error = msg};
            reel_capture_finish(f, &end);
            STAT_ADD(c->p, errors, 1);
            f = NULL;
        }
    }
    if (f) { /* its body was still coming */
        reel_capture_end_t end = {.error = msg};
        reel_capture_finish(f, &end);
        STAT_ADD(c->p, errors, 1);
    }
    free(msg);
    reel_codec_free(pc);
    /* they are flows now: a later end of the connection (the client's
     * error while the answer before them drains) must not record them
     * again, and nothing else reads them in C_DONE */
    reel_buf_reset(&cl->in);
}

/* A client set for another kind of proxy (an https:// or a SOCKS4 one)
 * began the connection in that protocol, not with an HTTP request (nor
 * SOCKS5, served: core/socks_front.c): it is answered in its own protocol
 * where that can say no (SOCKS4), else with the 400 (TLS: the client sees
 * a plain-text answer to its handshake), and its flow says what it spoke
 * and what reel answered. Returns false for anything else (the parser's
 * 400, as for any malformed request). */
bool reel__at_connection_start(const conn_t *c) {
    const peer_t *cl = &c->client;
    return c->state == C_HEAD && !c->spoke_http && !c->in_tunnel && !c->lane && !c->client_tls &&
           c->ex.flow == NULL && c->ex.head_raw.len == 0 && !cl->closing && cl->in.len > 0;
}

static bool wrong_proxy(conn_t *c) {
    peer_t *cl = &c->client;
    if (!reel__at_connection_start(c))
        return false;
    reel_wrong_proxy kind = reel_sniff_wrong_proxy(cl->in.data, cl->in.len);
    if (kind == REEL_WRONG_PROXY_NONE)
        return false;
    static const char advice[] = "reel takes HTTP proxy requests (http://HOST:PORT, HTTPS "
                                 "through it with CONNECT) and SOCKS5 (socks5://HOST:PORT) on "
                                 "this port";
    reel__record_rejected(c);
    c->ex.req_done = false;
    if (kind == REEL_WRONG_PROXY_TLS) {
        reel_clienthello_t ch;
        bool sni = reel_clienthello_parse(cl->in.data, cl->in.len, &ch) == REEL_OK &&
                   ch.sni_status == REEL_CH_SNI_OK;
        char *why = reel_asprintf("the client began a TLS handshake with the proxy itself (was "
                                  "it set to an https:// proxy?); %s",
                                  advice);
        char *note = reel_asprintf("(a ClientHello%s%s)", sni ? " for " : "", sni ? ch.sni : "");
        fail_noted(c, 400, why, note);
        free(note);
        free(why);
        return true;
    }
    /* SOCKS4: request rejected or failed (91); SOCKS5 is served
     * (core/socks_front.c) */
    static const uint8_t no4[] = {0, 91, 0, 0, 0, 0, 0, 0};
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_put_quoted(&b, cl->in.data, cl->in.len, HEAD_QUOTE_MAX);
    char *why =
        reel_asprintf("the client spoke SOCKS4 (was it set to a SOCKS4 proxy?); %s", advice);
    char *note = reel_asprintf("(it sent %.*s; reel answered that the request is rejected (00 "
                               "5B) and closed the connection)",
                               (int)b.len, (const char *)b.data);
    reel__peer_write(cl, no4, sizeof no4);
    fail_noted(c, 0, why, note);
    free(note);
    free(why);
    reel_buf_free(&b);
    return true;
}

/* Refuses a request whose head was read whole: c->reqc stands right after
 * it, at the start of the client's unread bytes. Its body, as far as it
 * came, is read into the refused flow (reel took those bytes off the
 * wire); once it came whole, what follows are the requests pipelined
 * behind it, which reel__fail_exchange records as not answered. While its
 * body is still coming, nothing after it is a request yet. */
static void refuse_request(conn_t *c, int status, const char *reason) {
    peer_t *cl = &c->client;
    c->ex.req_done = false;
    while (!c->lane) {
        size_t used = 0;
        reel_codec_event_t ev;
        reel_rc rc = reel_codec_feed(c->reqc, cl->in.data, cl->in.len, &used, &ev);
        if (rc != REEL_OK || ev.type == REEL_CODEC_EV_NONE) {
            if (rc == REEL_NEED_MORE)
                reel_buf_consume(&cl->in, used); /* a chunk-size line cut by the read */
            break;
        }
        bool end = ev.h1.type == REEL_H1_EV_END;
        if (ev.h1.type == REEL_H1_EV_BODY && c->ex.flow) /* before the bytes move */
            reel_capture_body(c->ex.flow, false, ev.h1.data, ev.h1.len);
        if (end && c->ex.flow && ev.h1.ntrailers)
            reel_capture_trailers(c->ex.flow, false, ev.h1.trailers, ev.h1.ntrailers, false);
        reel_buf_consume(&cl->in, used);
        if (end) {
            c->ex.req_done = true;
            c->ex.req_end_us = reel__now_us();
        }
        if (ev.h1.type != REEL_H1_EV_BODY)
            break;
    }
    reel__fail_exchange(c, status, reason);
}

/* ---- recording helpers ---- */

/* The name the client of a redirected connection (transparent) gave its
 * server: its TLS SNI, else the host of its Host field (HTTP/2's
 * :authority comes as Host). Owned; NULL when it gave none, or one that
 * is no host name. */
static char *transparent_name(const conn_t *c, const reel_h1_head_t *h, bool https) {
    if (https && c->tunnel_sni && c->tunnel_sni[0])
        return reel_strdup(c->tunnel_sni);
    const reel_h1_header_t *hh = h ? reel_h1_find_header(h->headers, h->nheaders, "host") : NULL;
    char *host = NULL;
    int port = 0;
    if (hh == NULL || reel__split_authority(hh->value, hh->value_len, &host, &port, 0) != 0)
        return NULL;
    for (const char *s = host; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '.' || *s == '-' || *s == '_' || *s == ':')) {
            free(host);
            return NULL; /* (not a name for the record's host) */
        }
    return host;
}

static void start_flow(conn_t *c, const reel_h1_head_t *h, bool https, const char *host, int port,
                       const char *target, bool keeps_up, int64_t since_us, const char *mapped_to) {
    /* started at the recorder's "now", read with its id given, so that ids
     * follow start times across workers; its phases start there too
     * (exchange_timings). A lane's flow starts when its stream's HEADERS
     * came (which may have waited for a lane): its id can come after
     * those of flows that started later. keeps_up: the request goes on
     * c->up, whose address is then known at the start; since_us: it
     * started earlier, blocked (the ALPN probe it waited for) */
    c->ex.flow =
        reel__flow_start(c, REEL_CAPTURE_HTTP, keeps_up && c->up->connected ? c->up->addr : NULL,
                         c->lane_stream, since_us ? since_us : c->lane_came_us);
    c->ex.flow_start_us = reel_capture_start_us(c->ex.flow);
    STAT_ADD(c->p, flows, 1);
    c->ex.req_end_us = c->ex.resp_first_us = 0;
    c->ex.flow_upstream = true;
    c->ex.conn_recorded = false;
    c->ex.upf.known = false;
    char ver[16];
    reel_msg_head_t m;
    /* a redirected connection's request (transparent) under the name its
     * client gave, with the address it went to */
    char *name = c->transparent ? transparent_name(c, h, https) : NULL;
    char dst[80] = "";
    if (c->transparent)
        snprintf(dst, sizeof dst, REEL_HOSTPORT_FMT, REEL_HOSTPORT(c->tunnel_host, c->tunnel_port));
    request_msg(h, https ? "https" : "http", name ? name : host, port, target, ver, &m);
    lane_request(c, &m);
    m.reverse = c->reverse;
    m.mapped_to = mapped_to;
    m.original_dst = c->transparent ? dst : NULL;
    m.edits = c->ex.req_edits;
    m.nedits = c->ex.n_req_edits;
    reel_capture_request(c->ex.flow, &m);
    free(name);
}

void reel__exchange_start_local(conn_t *c, const reel_h1_head_t *h, bool https, const char *host,
                                int port, const char *path) {
    start_flow(c, h, https, host, port, path, false, 0, NULL);
    c->ex.flow_upstream = false;
}

void reel__exchange_maybe_finish(conn_t *c) {
    maybe_finish(c);
}

/* ---- request side ---- */

static bool check_auth(conn_t *c, const reel_h1_head_t *h) {
    if (c->p->proxyauth_b64 == NULL)
        return true;
    const reel_h1_header_t *a = reel_h1_find_header(h->headers, h->nheaders, "proxy-authorization");
    if (a == NULL || a->value_len < 6 || strncasecmp(a->value, "basic ", 6) != 0)
        return false;
    const char *v = a->value + 6;
    while (*v == ' ')
        v++;
    return strcmp(v, c->p->proxyauth_b64) == 0;
}

char *reel__authority(bool https, const char *host, int port) {
    bool v6 = strchr(host, ':') != NULL;
    if (port == (https ? 443 : 80))
        return reel_asprintf("%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
    return reel_asprintf(REEL_HOSTPORT_FMT, REEL_HOSTPORT(host, port));
}

/* map_remote's rule for a request to https, host, port and path, if one
 * matches: 1 with *mapped (the URL it made, owned) and the origin it names
 * in *m_https, *m_host, *m_port and *m_path (owned); 0: none matches; -1:
 * a rule matched but made nothing reel can send a request to, *why
 * (owned) saying so. */
void reel__rule_request(const conn_t *c, const reel_h1_head_t *h, const char *url, const char *host,
                        reel_filter_request_t *rq) {
    const reel_h1_header_t *ct = reel_h1_find_header(h->headers, h->nheaders, "content-type");
    *rq = (reel_filter_request_t){.method = h->method,
                                  .url = url,
                                  .host = host,
                                  .content_type = ct ? ct->value : NULL,
                                  .client_addr = c->client_addr,
                                  /* (the same layout: core/msg.h's reel_field_t) */
                                  .headers = (const reel_filter_field_t *)(const void *)h->headers,
                                  .nheaders = h->nheaders,
                                  .http2 = c->lane != NULL && !c->lane_tunnel,
                                  .websocket = c->ex.ws_requested};
}

/* ---- modify_headers ---- */

/* Keeps what modify_headers' rules judge of the request rq for when its
 * response comes (c->ex.rule_req): a flags byte, method, URL, host and
 * Content-Type each ended by a NUL, then each field as its name's length,
 * the name, its value's length and the value. */
static void rule_req_save(conn_t *c, const reel_filter_request_t *rq) {
    reel_buf_t *b = &c->ex.rule_req;
    uint8_t flags =
        (uint8_t)(1 | (rq->content_type ? 2 : 0) | (rq->http2 ? 4 : 0) | (rq->websocket ? 8 : 0));
    reel_buf_append(b, &flags, 1);
    const char *s[] = {rq->method, rq->url, rq->host, rq->content_type ? rq->content_type : ""};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        reel_buf_append(b, s[i], strlen(s[i]) + 1);
    for (size_t i = 0; i < rq->nheaders; i++) {
        const reel_filter_field_t *f = &rq->headers[i];
        reel_buf_append(b, &f->name_len, sizeof f->name_len);
        reel_buf_append(b, f->name, f->name_len);
        reel_buf_append(b, &f->value_len, sizeof f->value_len);
        reel_buf_append(b, f->value, f->value_len);
    }
}

/* The request rule_req_save kept, into *rq, its fields in *fields (owned). */
static void rule_req_load(const conn_t *c, reel_filter_request_t *rq,
                          reel_filter_field_t **fields) {
    const uint8_t *p = c->ex.rule_req.data, *end = p + c->ex.rule_req.len;
    uint8_t flags = *p++;
    const char *s[4];
    for (size_t i = 0; i < 4; i++) {
        s[i] = (const char *)p;
        p += strlen(s[i]) + 1;
    }
    size_t n = 0, cap = 8;
    reel_filter_field_t *f = reel_malloc(cap * sizeof *f);
    while (p < end) {
        if (n == cap)
            f = reel_realloc(f, (cap *= 2) * sizeof *f);
        memcpy(&f[n].name_len, p, sizeof f[n].name_len);
        f[n].name = (const char *)p + sizeof f[n].name_len;
        p = (const uint8_t *)f[n].name + f[n].name_len;
        memcpy(&f[n].value_len, p, sizeof f[n].value_len);
        f[n].value = (const char *)p + sizeof f[n].value_len;
        p = (const uint8_t *)f[n].value + f[n].value_len;
        n++;
    }
    *fields = f;
    *rq = (reel_filter_request_t){.method = s[0],
                                  .url = s[1],
                                  .host = s[2],
                                  .content_type = flags & 2 ? s[3] : NULL,
                                  .client_addr = c->client_addr,
                                  .headers = f,
                                  .nheaders = n,
                                  .http2 = flags & 4,
                                  .websocket = flags & 8};
}

/* The changes of the rules matching rq to the head whose fields are
 * fs[0..nfs), owned (NULL, *n 0: none); a removal of a field the head
 * does not have changes nothing and is left out. */
static reel_header_edit_t *edits_for(const conn_t *c, const reel_filter_request_t *rq,
                                     const reel_filter_field_t *fs, size_t nfs, size_t *n) {
    *n = 0;
    size_t len = reel_header_rules_len(c->p->modify_headers);
    if (len == 0)
        return NULL;
    reel_header_edit_t *e = reel_malloc(len * sizeof *e);
    size_t k = reel_header_rules_match(c->p->modify_headers, rq, e, len);
    for (size_t i = 0; i < k; i++) {
        bool has = e[i].value != NULL;
        for (size_t j = 0; j < nfs && !has; j++)
            has = fs[j].name_len == strlen(e[i].name) &&
                  strncasecmp(fs[j].name, e[i].name, fs[j].name_len) == 0;
        if (has)
            e[(*n)++] = e[i];
    }
    if (*n == 0) {
        free(e);
        return NULL;
    }
    return e;
}

static reel_header_edit_t *request_edits(const conn_t *c, size_t *n) {
    reel_filter_request_t rq;
    reel_filter_field_t *fields;
    rule_req_load(c, &rq, &fields);
    reel_header_edit_t *e = edits_for(c, &rq, rq.headers, rq.nheaders, n);
    free(fields);
    return e;
}

/* The request kept with the response head rs (as recorded), as the
 * rules judge a response: *fields and *ct owned. */
static void response_rule_request(const conn_t *c, const reel_msg_head_t *rs,
                                  reel_filter_request_t *rq, reel_filter_field_t **fields,
                                  char **ct) {
    rule_req_load(c, rq, fields);
    rq->response = true;
    rq->status = rs->status;
    /* (the same layout: core/msg.h's reel_field_t) */
    rq->resp_headers = (const reel_filter_field_t *)(const void *)rs->fields;
    rq->nresp_headers = rs->nfields;
    *ct = NULL;
    for (size_t i = 0; i < rs->nfields && *ct == NULL; i++)
        if (rs->fields[i].name_len == 12 &&
            strncasecmp(rs->fields[i].name, "content-type", 12) == 0)
            *ct = reel_strndup(rs->fields[i].value, rs->fields[i].value_len);
    rq->resp_content_type = *ct;
}

/* The rules judged on the response head rs (as recorded) with the request
 * kept, the request read back once for both: modify_headers' changes
 * (owned; NULL, *n 0: none), and, when body_mask is not NULL, the
 * modify_body rules that match, a bit each (0: none, or none applies to
 * a response of its kind). */
static reel_header_edit_t *response_rules(const conn_t *c, const reel_msg_head_t *rs, size_t *n,
                                          uint64_t *body_mask) {
    *n = 0;
    bool body = body_mask && c->p->modify_body && !c->ex.upgrade && !c->ex.retry_is_head &&
                rs->status >= 200 && rs->status != 204 && rs->status != 304;
    if (body_mask)
        *body_mask = 0;
    if (c->ex.rule_req.len == 0 || (c->p->modify_headers == NULL && !body))
        return NULL;
    reel_filter_request_t rq;
    reel_filter_field_t *fields;
    char *ct;
    response_rule_request(c, rs, &rq, &fields, &ct);
    reel_header_edit_t *e =
        c->p->modify_headers ? edits_for(c, &rq, rq.resp_headers, rq.nresp_headers, n) : NULL;
    if (body)
        *body_mask = reel_body_rules_match(c->p->modify_body, &rq);
    free(ct);
    free(fields);
    return e;
}

reel_header_edit_t *reel__response_edits(const conn_t *c, const reel_msg_head_t *rs, size_t *n) {
    return response_rules(c, rs, n, NULL);
}

size_t reel__fields_edit(reel_field_t *fs, size_t n, const reel_header_edit_t *edits,
                         size_t nedits) {
    if (nedits == 0)
        return n;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!reel_header_edits_name(edits, nedits, fs[i].name, fs[i].name_len))
            fs[k++] = fs[i];
    for (size_t i = 0; i < nedits; i++)
        if (edits[i].value)
            fs[k++] = (reel_field_t){edits[i].name, strlen(edits[i].name), edits[i].value,
                                     strlen(edits[i].value)};
    return k;
}

/* ---- modify_body: a body held whole, changed, then sent ----
 *
 * d: 0 the request (sent to the origin), 1 the response (to the client). */

#define HOLD_MAX ((size_t)8 << 20) /* the most of a body held (and of it decoded) */

static void hold_clear(conn_t *c, int d) {
    body_hold_t *b = &c->ex.hold[d];
    b->on = b->rechunk = b->continued = false;
    reel_body_rules_free(b->rules);
    b->rules = NULL;
    b->mask = 0;
    reel_buf_free(&b->head);
    reel_buf_free(&b->body);
    free(b->coding);
    b->coding = NULL;
}

void reel__hold_clear(conn_t *c) {
    hold_clear(c, 0);
    hold_clear(c, 1);
}

/* Records what became of the rules of mask for this body. */
static void hold_record(conn_t *c, int d, const reel_body_rules_t *m, uint64_t mask,
                        uint64_t replacements, uint64_t sent, bool decoded, const char *not_applied,
                        const void *body) {
    const char *texts[64];
    size_t n = reel_body_rules_texts(m, mask, texts);
    if (c->ex.flow)
        reel_capture_body_edit(c->ex.flow, d == 1, texts, n, replacements, sent, decoded,
                               c->ex.hold[d].continued, not_applied, body, body ? sent : 0);
}

static peer_t *hold_to(conn_t *c, int d) {
    return d ? &c->client : c->up;
}

/* Whether the message h, whose body the modify_body rules of mask match
 * (0: none), is held: if so *o is h without the fields that frame its
 * body (reel frames it) nor its Content-Encoding (added again if the body
 * goes as it came), its fields in *fs (owned), for the caller to write as
 * it will go (hold_commit). Not when it is too large: why said now.
 * A request's Expect: 100-continue is reel's to answer then (the origin
 * gets the head only with the body), as mitmproxy does: RFC 9110 10.1.1
 * has a proxy send the head on at once, which would leave the body's
 * length to be said before its rules have run. */
static bool hold_begin(conn_t *c, int d, const reel_h1_head_t *h, uint64_t mask, reel_h1_head_t *o,
                       reel_h1_header_t **fs) {
    if (mask == 0)
        return false;
    const char *why = NULL;
    if (h->framing == REEL_H1_BODY_LENGTH && (uint64_t)h->content_length > HOLD_MAX)
        why = "the body is over 8 MiB";
    else if (d == 1 && h->framing != REEL_H1_BODY_LENGTH && c->ex.client_h10)
        why = "its length is not known, and its HTTP/1.0 client could take it only whole";
    if (why) { /* (known now: said now) */
        hold_record(c, d, c->p->modify_body, mask, 0, 0, false, why, NULL);
        return false;
    }
    body_hold_t *b = &c->ex.hold[d];
    *fs = reel_malloc((h->nheaders ? h->nheaders : 1) * sizeof **fs);
    *o = *h;
    o->nheaders = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        const reel_h1_header_t *f = &h->headers[i];
        bool coding = f->name_len == 16 && strncasecmp(f->name, "content-encoding", 16) == 0;
        if (coding && !reel_coding_is_identity(f->value, f->value_len) && b->coding == NULL)
            b->coding = reel_strndup(f->value, f->value_len);
        if (d == 0 && f->name_len == 6 && strncasecmp(f->name, "expect", 6) == 0 &&
            reel__has_token(h, "expect", "100-continue")) {
            /* (an HTTP/1.0 client's is ignored, RFC 9110 10.1.1: no 100) */
            b->continued = !c->ex.client_h10;
            continue;
        }
        /* (an HTTP/2 origin's length, for a stream: core/h2up.c) */
        if (coding || (f->name_len == 14 && strncasecmp(f->name, "content-length", 14) == 0) ||
            (f->name_len == 17 && strncasecmp(f->name, "transfer-encoding", 17) == 0) ||
            (f->name_len == 7 && strncasecmp(f->name, "trailer", 7) == 0) ||
            reel__is_lane_length(f))
            continue;
        (*fs)[o->nheaders++] = *f;
    }
    o->headers = *fs;
    reel_buf_reset(&b->head);
    return true;
}

/* The held head is written (written: its writer's result): the body is
 * held from now on. False if it could not be (then it goes as it came,
 * and its own failure is said there). */
static bool hold_commit(conn_t *c, int d, uint64_t mask, bool written) {
    body_hold_t *b = &c->ex.hold[d];
    if (!written || b->head.len < 2) {
        hold_clear(c, d);
        return false;
    }
    b->head.len -= 2; /* its last CRLF: the framing fields go there */
    b->on = true;
    b->rules = reel_body_rules_ref(c->p->modify_body);
    b->mask = mask;
    return true;
}

/* Sends the held head, with fields (each line with its CRLF) and the
 * head's end, then body. */
static void hold_send(conn_t *c, int d, const char *fields, const void *body, size_t len) {
    const body_hold_t *b = &c->ex.hold[d];
    reel_buf_t out;
    reel_buf_init(&out, 0);
    reel_buf_append(&out, b->head.data, b->head.len);
    reel_buf_puts(&out, fields);
    reel_buf_puts(&out, "\r\n");
    if (len)
        reel_buf_append(&out, body, len);
    reel__peer_write(hold_to(c, d), out.data, out.len);
    reel_buf_free(&out);
}

/* A chunk of a body reel frames (rechunk). */
static void send_chunk(conn_t *c, int d, const void *data, size_t len) {
    if (len == 0)
        return;
    char size[24];
    snprintf(size, sizeof size, "%zx\r\n", len);
    peer_t *to = hold_to(c, d);
    reel__peer_write(to, size, strlen(size));
    reel__peer_write(to, data, len);
    reel__peer_write(to, "\r\n", 2);
}

/* The held body grew past HOLD_MAX: the rules are not applied; what came
 * goes on now, and the rest as it comes, chunked. */
static void hold_give_up(conn_t *c, int d) {
    body_hold_t *b = &c->ex.hold[d];
    char *coding = b->coding ? reel_asprintf("Content-Encoding: %s\r\n", b->coding) : NULL;
    char *fields = reel_asprintf("%sTransfer-Encoding: chunked\r\n", coding ? coding : "");
    hold_send(c, d, fields, NULL, 0);
    send_chunk(c, d, b->body.data, b->body.len);
    free(fields);
    free(coding);
    hold_record(c, d, b->rules, b->mask, 0, 0, false, "the body is over 8 MiB", NULL);
    hold_clear(c, d);
    b->rechunk = true;
}

static void hold_body_add(conn_t *c, int d, const uint8_t *data, size_t len) {
    reel_buf_append(&c->ex.hold[d].body, data, len);
    if (c->ex.hold[d].body.len > HOLD_MAX)
        hold_give_up(c, d);
}

typedef struct {
    reel_buf_t *out;
    bool over;
} hold_sink_t;

static int hold_sink(void *ctx, const uint8_t *data, size_t len) {
    hold_sink_t *s = ctx;
    if (s->out->len + len > HOLD_MAX) {
        s->over = true;
        return 1;
    }
    reel_buf_append(s->out, data, len);
    return 0;
}

/* The held body has come whole: the rules applied (decoded first if it
 * has a Content-Encoding), the message sent with its new length; or, if
 * they cannot be, as it came. */
static void hold_end(conn_t *c, int d) {
    body_hold_t *b = &c->ex.hold[d];
    const reel_buf_t *raw = &b->body;
    reel_buf_t plain;
    reel_buf_init(&plain, 0);
    reel_err_t err;
    reel_err_clear(&err);
    char *why = NULL;
    const uint8_t *in = raw->data;
    size_t in_len = raw->len;
    if (b->coding) {
        hold_sink_t sink = {.out = &plain};
        reel_decoder_t *dec = NULL;
        if (reel_decoder_new(b->coding, hold_sink, &sink, &dec, &err) != REEL_OK ||
            reel_decoder_feed(dec, raw->data, raw->len, &err) != REEL_OK ||
            reel_decoder_finish(dec, &err) != REEL_OK)
            why = sink.over ? reel_strdup("the body decoded is over 8 MiB")
                            : reel_asprintf("its Content-Encoding could not be undone: %s",
                                            reel_err_str(&err));
        reel_decoder_free(dec);
        in = plain.data;
        in_len = plain.len;
    }
    uint8_t *out = NULL;
    size_t out_len = 0;
    uint64_t count = 0;
    if (why == NULL && reel_body_rules_apply(b->rules, b->mask, in, in_len, &out, &out_len, &count,
                                             &err) != REEL_OK)
        why = reel_strdup(reel_err_str(&err));
    char *fields;
    if (why) { /* as it came */
        fields =
            reel_asprintf("%s%s%sContent-Length: %zu\r\n", b->coding ? "Content-Encoding: " : "",
                          b->coding ? b->coding : "", b->coding ? "\r\n" : "", raw->len);
        hold_send(c, d, fields, raw->data, raw->len);
        hold_record(c, d, b->rules, b->mask, 0, raw->len, false, why, NULL);
    } else {
        fields = reel_asprintf("Content-Length: %zu\r\n", out_len);
        hold_send(c, d, fields, out, out_len);
        /* (out is NULL for an empty body: "" says it was kept, empty) */
        hold_record(c, d, b->rules, b->mask, count, out_len, b->coding != NULL, NULL,
                    out ? (const void *)out : "");
    }
    free(fields);
    free(why);
    free(out);
    reel_buf_free(&plain);
    hold_clear(c, d);
}

static int map_request(const conn_t *c, const reel_filter_request_t *rq, char **mapped,
                       bool *m_https, char **m_host, int *m_port, char **m_path, char **why) {
    *mapped = *m_host = *m_path = *why = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    char *to = reel_map_rules_apply(c->p->map_remote, rq->url, rq, &err);
    if (to == NULL) {
        if (err.code == REEL_OK)
            return 0;
        *why = reel_strdup(reel_err_str(&err));
        return -1;
    }
    if (split_absolute(to, strlen(to), m_https, m_host, m_port, m_path) != 0) {
        *why = reel_asprintf("map_remote made '%.200s' of the URL, which reel cannot send a "
                             "request to",
                             to);
        free(to);
        return -1;
    }
    *mapped = to;
    return 1;
}

/* Writes h for the next hop into out, without its hop-by-hop fields
 * (keeping the framing fields, since the body is forwarded as received)
 * and with modify_headers' edits[0..nedits) made. False when it cannot be written
 * (what the parser let through and the writer refuses): the caller must
 * not send the body then, or the body would go as a message of its own.
 * proxy_auth: a request to upstream_proxy in absolute form, which asks
 * for these Basic credentials ("": none). host: a request's Host, whatever
 * the client's said (reverse_to's origin; NULL: the client's, or its
 * absolute URL's). */
static bool write_head(reel_buf_t *out, const reel_h1_head_t *h, bool request, const char *target,
                       bool keep_upgrade, bool add_close, const char *proxy_auth, const char *host,
                       const reel_header_edit_t *edits, size_t nedits) {
    size_t n = h->nheaders;
    /* + what is added below */
    reel_h1_header_t *hs = reel_malloc((n + 4 + nedits) * sizeof *hs);
    size_t k = 0;
    reel_h1_hop_t hop;
    reel_h1_hop_init(&hop, h->headers, n);
    for (size_t i = 0; i < n; i++) {
        const reel_h1_header_t *f = &h->headers[i];
        /* the fields that say where the body ends stay whatever Connection
         * names: "Connection: Content-Length" dropped the length and sent
         * the body on, to be read as the next request (RFC 9110 7.6.1) */
        bool framing = (f->name_len == 17 && strncasecmp(f->name, "transfer-encoding", 17) == 0) ||
                       (f->name_len == 14 && strncasecmp(f->name, "content-length", 14) == 0) ||
                       (f->name_len == 7 && strncasecmp(f->name, "trailer", 7) == 0);
        bool upgrade =
            keep_upgrade && ((f->name_len == 7 && strncasecmp(f->name, "upgrade", 7) == 0) ||
                             (f->name_len == 10 && strncasecmp(f->name, "connection", 10) == 0));
        /* An Upgrade keeps the client's Connection, and with it the fields
         * it names, which are the upgrade's own (h2c's HTTP2-Settings,
         * RFC 7540 3.2: it was dropped while Connection still named it);
         * not those that are hop-by-hop whatever Connection says
         * (Proxy-Authorization, Keep-Alive) */
        bool hop_field = keep_upgrade ? reel_h1_is_hop_by_hop(f->name, f->name_len, NULL, 0)
                                      : reel_h1_hop(&hop, f->name, f->name_len);
        if (!framing && !upgrade && hop_field)
            continue;
        hs[k++] = *f;
    }
    /* (the rules name no framing or hop-by-hop field: maprule.c) */
    k = reel__fields_edit(hs, k, edits, nedits);
    if (add_close)
        hs[k++] = (reel_h1_header_t){"Connection", 10, "close", 5};
    if (request && !keep_upgrade && reel__has_token(h, "te", "trailers")) {
        /* TE is hop-by-hop, but its "trailers" speaks for the client too
         * (RFC 9110 10.1.4), and reel relays trailers: gRPC servers refuse
         * a request without it. Only that member goes on (reel decodes no
         * other transfer coding), named in Connection as RFC 9110 7.6.1
         * asks of HTTP/1.1; toward HTTP/2 (core/h2up.c) Connection is
         * dropped and "te: trailers", the one TE RFC 9113 8.2.2 allows,
         * stays. Not on an Upgrade, which keeps the client's Connection:
         * its answer is the switch. */
        hs[k++] = (reel_h1_header_t){"TE", 2, "trailers", 8};
        hs[k++] = (reel_h1_header_t){"Connection", 10, "TE", 2};
    }
    const char *a = host;
    size_t al = host ? strlen(host) : 0;
    if (request && host == NULL && h->target_form == REEL_H1_TARGET_ABSOLUTE) {
        /* RFC 9112 3.2.2: a proxy forwarding an absolute-form request
         * makes Host from its target, not from the client's Host (which
         * could name another virtual host of the origin than the URL the
         * flow records). The target's authority: after "://", up to the
         * path, query or fragment (userinfo was refused before). */
        const char *t = h->target, *end = t + h->target_len;
        a = memmem(t, h->target_len, "://", 3);
        a = a ? a + 3 : t;
        while (a + al < end && a[al] != '/' && a[al] != '?' && a[al] != '#')
            al++;
    }
    if (request && a) {
        bool found = false;
        for (size_t i = 0; i < k; i++)
            if (hs[i].name_len == 4 && strncasecmp(hs[i].name, "host", 4) == 0) {
                hs[i].value = a;
                hs[i].value_len = al;
                found = true;
                break;
            }
        if (!found) /* an HTTP/1.0 request may have none */
            hs[k++] = (reel_h1_header_t){"Host", 4, a, al};
    }
    char *basic = proxy_auth && proxy_auth[0] ? reel_asprintf("Basic %s", proxy_auth) : NULL;
    if (basic)
        hs[k++] = (reel_h1_header_t){"Proxy-Authorization", 19, basic, strlen(basic)};
    reel_h1_head_t o = *h;
    o.headers = hs;
    o.nheaders = k;
    reel_rc rc;
    if (request) {
        o.target = target;
        o.target_len = strlen(target);
        rc = reel_h1_write_request_head(out, &o);
    } else {
        rc = reel_h1_write_response_head(out, &o);
    }
    free(hs);
    free(basic);
    return rc == REEL_OK;
}

bool reel__has_token(const reel_h1_head_t *h, const char *field, const char *token) {
    return reel_h1_has_token(h->headers, h->nheaders, field, token);
}

/* Idempotent methods (RFC 9110 9.2.2). */
static bool retryable_method(const char *m) {
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0)
            return true;
    return false;
}

void reel__connect_head_drop(conn_t *c) {
    free(c->connect_head);
    c->connect_head = NULL;
}

size_t reel__fields_bytes(const reel_field_t *f, size_t n) {
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += f[i].name_len + f[i].value_len;
    return bytes;
}

void reel__fields_copy(reel_field_t *dst, char *at, const reel_field_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const reel_field_t *f = &src[i];
        if (f->name_len)
            memcpy(at, f->name, f->name_len);
        dst[i].name = at;
        dst[i].name_len = f->name_len;
        at += f->name_len;
        if (f->value_len)
            memcpy(at, f->value, f->value_len);
        dst[i].value = at;
        dst[i].value_len = f->value_len;
        at += f->value_len;
    }
}

/* Keeps the version and fields of the CONNECT m for its tunnel's flow
 * (c->connect_head, replacing any). The fields' bytes are copied: m's are
 * the parser's, gone with the next read. */
static void keep_connect_head(conn_t *c, const reel_msg_head_t *m) {
    size_t bytes = reel__fields_bytes(m->fields, m->nfields);
    reel_connect_head_t *k = reel_malloc(sizeof *k + m->nfields * sizeof k->fields[0] + bytes);
    reel_strcpy_to(k->version, sizeof k->version, m->version ? m->version : "HTTP/1.1");
    /* a lane's CONNECT came as its stream's HEADERS, maybe long before
     * the lane was free to read it */
    k->head_us =
        c->lane_came_us && c->lane_came_us < c->ex.head_us ? c->lane_came_us : c->ex.head_us;
    k->answered_us = 0;
    k->nfields = m->nfields;
    reel__fields_copy(k->fields, (char *)&k->fields[m->nfields], m->fields, m->nfields);
    reel__connect_head_drop(c);
    c->connect_head = k;
}

static void handle_connect(conn_t *c, const reel_h1_head_t *h) {
    char *host = NULL;
    int port = 0;
    if (reel__split_authority(h->target, h->target_len, &host, &port, -1) != 0 || port < 0) {
        reel__record_refused(c, h, "http", NULL, 0, NULL);
        refuse_request(c, 400, "CONNECT target must be host:port");
        free(host);
        return;
    }
    if (!check_auth(c, h)) {
        reel__record_refused(c, h, "https", host, port, "");
        refuse_request(c, 407, "proxy authentication required");
        free(host);
        return;
    }
    /* what the client sent, for the tunnel's flow (a tunnel carrying HTTP
     * records the requests inside instead) */
    char ver[16];
    reel_msg_head_t m;
    request_msg(h, "tcp", host, port, "", ver, &m);
    reel__open_tunnel(c, host, port, &m);
}

/* The tunnel a client asked for, to host (owned: taken) and port, with a
 * CONNECT or a SOCKS5 request (c->socks), which m gives as the record
 * has it: answered at once (200, or SOCKS5's success) and sniffed, or,
 * to a host in ignore_hosts, relayed once its origin is connected. */
void reel__open_tunnel(conn_t *c, char *host, int port, reel_msg_head_t *m) {
    free(c->tunnel_host);
    c->tunnel_host = host;
    c->tunnel_port = port;
    c->in_tunnel = true;
    if (reel__host_ignored(c->p, host, port)) {
        /* relayed untouched and not recorded (counted in the stats) */
        STAT_ADD(c->p, ignored, 1);
        reel__begin_raw_tunnel(c, host, port, true, false);
        return;
    }
    lane_request(c, m);
    keep_connect_head(c, m);
    if (c->lane) { /* from here on its stream carries the tunnel's bytes */
        c->lane_tunnel = true;
        c->lane_came_us = 0;
    }
    reel__tunnel_answer(c);
    c->connect_head->answered_us = reel__now_us();
    c->ex.resp_head_sent = true; /* the CONNECT's answer */
    c->state = C_SNIFF;
    c->sniff_started = uv_now(c->p->loop);
    c->sniff_bytes_at = 0;
    c->sniff_bytes_us = 0;
    c->eager_tried = c->origin_closed_silent = false;
    /* Bytes after the CONNECT head belong to the tunnel. */
    reel_codec_free(c->reqc);
    reel_h1_limits_t lim = {.max_head_size = c->p->max_head_size};
    c->reqc = reel_h1_codec_new(REEL_H1_REQUEST, &lim);
}

static void request_head(conn_t *c, const reel_h1_head_t *h) {
    c->ex.head_us = reel__now_us();
    c->ex.flow_start_us = 0;
    c->ex.head_started = c->ex.resp_head_started = 0;
    c->ex.interims = 0;
    c->ex.resp_excess = 0;
    c->ex.resp_head_sent = c->ex.req_done = c->ex.resp_done = c->ex.resp_close = false;
    c->ex.resp_until_close = false;
    c->ex.resp_dechunk = false;
    c->ex.client_ended_us = 0;
    c->ex.client_h10 = !c->lane && h->version_major == 1 && h->version_minor == 0;
    c->client_close = !h->keep_alive;
    c->ex.upgrade = h->upgrade && !h->is_connect;
    c->ex.ws_requested = c->ex.upgrade && reel__has_token(h, "upgrade", "websocket");
    c->ex.ws_ok = false;
    /* an HTTP request inside a CONNECT tunnel: its flows are the requests
     * inside, none is the CONNECT's (README) */
    reel__connect_head_drop(c);
    if (h->is_connect) {
        if (c->in_tunnel) {
            /* (to the tunnel's origin, as the client's bytes there went;
             * no path: an authority-form target made one of the URL) */
            reel__record_refused(c, h, reel__tunnel_https(c) ? "https" : "http", c->tunnel_host,
                                 c->tunnel_port, "");
            refuse_request(c, 400,
                           c->reverse ? "CONNECT to reel as a reverse proxy (reverse_to): it "
                                        "takes requests for its origin only, not tunnels"
                           : c->transparent
                               ? "CONNECT on a connection redirected to reel (transparent): "
                                 "its requests go to the address the client connected to"
                               : "CONNECT inside a CONNECT tunnel");
            return;
        }
        handle_connect(c, h);
        return;
    }
    bool https;
    char *host = NULL, *path = NULL;
    int port;
    if (h->target_form == REEL_H1_TARGET_ABSOLUTE) {
        if (split_absolute(h->target, h->target_len, &https, &host, &port, &path) != 0) {
            reel__record_refused(c, h, "http", NULL, 0, NULL);
            refuse_request(c, 400, "cannot parse the absolute URL of the request");
            return;
        }
        if (strcmp(h->method, "OPTIONS") == 0 && bare_authority(h->target, h->target_len)) {
            /* RFC 9112 3.2.4: the last proxy sends such an OPTIONS to the
             * origin as "OPTIONS *" (an HTTP/2 client's ":path *" comes
             * so from core/h2front.c), a question about the server */
            free(path);
            path = reel_strdup("*");
        }
        if (c->in_tunnel) {
            /* Inside a tunnel the request goes where the tunnel goes, as
             * it would without reel: never to another host named by its
             * URL (which would take it out of the client's TLS). One that
             * names the tunnel's own host and port is sent there. */
            bool same = strcasecmp(host, c->tunnel_host) == 0 && port == c->tunnel_port;
            bool url_https = https;
            https = reel__tunnel_https(c);
            if (!same && c->reverse) {
                /* a reverse proxy's requests all go to reverse_to, as a
                 * server takes its absolute-form ones (RFC 9112 3.2.2):
                 * its path, reverse_to's origin */
                free(host);
                host = reel_strdup(c->tunnel_host);
                port = c->tunnel_port;
            } else if (!same) {
                char *why = reel_asprintf(
                    "the absolute URL of a request inside the CONNECT tunnel to " REEL_HOSTPORT_FMT
                    " names another origin (" REEL_HOSTPORT_FMT ")",
                    REEL_HOSTPORT(c->tunnel_host, c->tunnel_port), REEL_HOSTPORT(host, port));
                /* recorded as it came: the URL the client named */
                reel__record_refused(c, h, url_https ? "https" : "http", host, port, path);
                refuse_request(c, 400, why);
                free(why);
                free(host);
                free(path);
                return;
            }
        }
    } else if (c->in_tunnel && (h->target_form == REEL_H1_TARGET_ORIGIN ||
                                h->target_form == REEL_H1_TARGET_ASTERISK)) {
        https = reel__tunnel_https(c);
        host = reel_strdup(c->tunnel_host);
        port = c->tunnel_port;
        path = reel_strndup(h->target, h->target_len);
    } else {
        reel__record_refused(c, h, "http", NULL, 0, NULL);
        refuse_request(c, 400,
                       "this is a proxy: the request target must be an absolute URL "
                       "(http://host/path) or the request must come through CONNECT");
        return;
    }
    if (!c->in_tunnel && !check_auth(c, h)) {
        reel__record_refused(c, h, https ? "https" : "http", host, port, path);
        refuse_request(c, 407, "proxy authentication required");
        free(host);
        free(path);
        return;
    }
    /* map_local: answered from a file, no origin asked (the rules see the
     * client's URL: map_remote's apply to the requests they leave) */
    /* (a redirected connection's under the name its client gave, as its
     * flow records it: transparent_name) */
    /* What the rules see of the request, made once for all three */
    char *rule_host = NULL, *rule_url = NULL;
    reel_filter_request_t rq = {0};
    reel_buf_reset(&c->ex.rule_req);
    reel__hold_clear(c);
    if (c->p->block_list || c->p->map_local || c->p->map_remote || c->p->modify_headers ||
        c->p->modify_body) {
        rule_host = c->transparent ? transparent_name(c, h, https) : NULL;
        const char *rhost = rule_host ? rule_host : host;
        char *auth = reel__authority(https, rhost, port);
        rule_url = reel_asprintf("%s://%s%s", https ? "https" : "http", auth, path);
        free(auth);
        reel__rule_request(c, h, rule_url, rhost, &rq);
        if (c->p->modify_headers || c->p->modify_body)
            rule_req_save(c, &rq);
    }
    if ((c->p->block_list && !c->ex.upgrade && reel__block_answer(c, h, https, port, path, &rq)) ||
        (c->p->map_local && strcmp(path, "*") != 0 && !c->ex.upgrade &&
         reel__local_answer(c, h, https, port, path, &rq))) {
        free(rule_url);
        free(rule_host);
        free(host);
        free(path);
        return;
    }
    /* map_remote: the request goes to another URL than its client's. The
     * flow records the client's (c_*) and where it went (mapped_to); from
     * here on https, host, port and path are the origin it goes to. */
    char *mapped = NULL, *c_host = NULL, *c_path = NULL;
    bool c_https = https;
    int c_port = port;
    if (c->p->map_remote && strcmp(path, "*") != 0) {
        bool m_https = false;
        char *m_host = NULL, *m_path = NULL, *why = NULL;
        int m_port = 0;
        int mr = map_request(c, &rq, &mapped, &m_https, &m_host, &m_port, &m_path, &why);
        if (mr < 0) { /* recorded as the client sent it, answered with why */
            start_flow(c, h, https, host, port, path, false, 0, NULL);
            reel__fail_exchange(c, 502, why);
            free(why);
            free(rule_url);
            free(rule_host);
            free(host);
            free(path);
            return;
        }
        if (mr > 0) {
            c_host = host;
            c_path = path;
            https = m_https;
            host = m_host;
            port = m_port;
            path = m_path;
            /* modify_headers' and modify_body's rules judge the request
             * map_remote sends, its URL and host, as mitmproxy's (whose
             * map_remote comes first) do; its fields are the client's */
            if (c->p->modify_headers || c->p->modify_body) {
                reel__rule_request(c, h, mapped, host, &rq);
                reel_buf_reset(&c->ex.rule_req);
                rule_req_save(c, &rq);
            }
        }
    }
    /* modify_body's rules that match the request, for its body (one it
     * has: a length or chunks; not an Upgrade's) */
    uint64_t body_mask = c->p->modify_body && !c->ex.upgrade &&
                                 (h->framing == REEL_H1_BODY_CHUNKED ||
                                  (h->framing == REEL_H1_BODY_LENGTH && h->content_length > 0))
                             ? reel_body_rules_match(c->p->modify_body, &rq)
                             : 0;
    free(rule_url);
    free(rule_host);
    /* An absolute "https://" URL sent in the clear goes to the origin
     * over TLS, like any https request. */
    /* The flow starts before its connection is asked for: a new one's
     * DNS lookup, connect and handshake then fall inside the flow, as its
     * timings and its ServerConn say them (started after, the flow began
     * a moment into the set-up: a few hundred µs under sanitizers) */
    const char *sni = c->in_tunnel && !mapped ? c->tunnel_sni : NULL;
    /* The ALPN probe to this origin failed while the client's handshake
     * waited for it (core/tunnel.c): its first request gets that answer
     * at once, its flow starting when the probe did (that wait is its
     * blocked time), instead of a second connection and a second wait
     * for the same origin that no flow would explain. */
    char *probe_error = c->probe_error;
    c->probe_error = NULL;
    if (probe_error &&
        !(https && c->in_tunnel && port == c->tunnel_port && strcmp(host, c->tunnel_host) == 0)) {
        free(probe_error); /* a request to another origin */
        probe_error = NULL;
        memset(&c->probe_upf, 0, sizeof c->probe_upf);
    }
    if (probe_error) {
        start_flow(c, h, mapped ? c_https : https, mapped ? c_host : host, mapped ? c_port : port,
                   mapped ? c_path : path, false, c->probe_started_us, mapped);
        reel__probe_conn(c);
        reel__fail_exchange(c, c->probe_status, probe_error);
        free(probe_error);
        free(host);
        free(path);
        free(c_host);
        free(c_path);
        free(mapped);
        return;
    }
    bool keep = reel__upstream_would_reuse(c, https, host, port, sni);
    /* modify_headers' changes: recorded with the request, made as it is
     * written */
    size_t n_edits = 0;
    reel_header_edit_t *edits = c->ex.rule_req.len ? request_edits(c, &n_edits) : NULL;
    c->ex.req_edits = edits;
    c->ex.n_req_edits = n_edits;
    start_flow(c, h, mapped ? c_https : https, mapped ? c_host : host, mapped ? c_port : port,
               mapped ? c_path : path, keep, 0, mapped);
    bool reused = keep || reel__upstream_open(c, https, host, port, sni);
    if (c->state == C_DONE) { /* it failed at once (a TLS client it could not make): a 502 */
        c->ex.req_edits = NULL;
        c->ex.n_req_edits = 0;
        free(edits);
        free(host);
        free(path);
        free(c_host);
        free(c_path);
        free(mapped);
        return;
    }
    c->ex.retried = c->ex.retry_held = false;
    reel__record_server_conn(c); /* now if reused, else once connected */
    reel_h1_expect_response(reel_h1_codec_parser(c->respc), h->is_head, false);
    reel_buf_t out;
    reel_buf_init(&out, 0);
    /* to upstream_proxy as it came, in absolute form (core/peer.c's
     * upstream_forward), asking for upstream_proxyauth's credentials */
    char *proxied = !c->up->forward ? NULL
                    : mapped        ? reel_strdup(mapped)
                                    : reel_strndup(h->target, h->target_len);
    /* the origin's Host when reel chose the origin: map_remote's, or
     * reverse_to's, as reverse proxies send it (the flow records the
     * client's) */
    char *mapped_host = mapped ? reel__authority(https, host, port) : NULL;
    const char *reverse_host = mapped_host  ? mapped_host
                               : c->reverse ? c->p->reverse_authority
                                            : NULL;
    /* a body the rules change: the head waits for it (modify_body) */
    reel_h1_head_t held;
    reel_h1_header_t *held_fs = NULL;
    bool hold = hold_begin(c, 0, h, body_mask, &held, &held_fs);
    bool written = write_head(hold ? &c->ex.hold[0].head : &out, hold ? &held : h, true,
                              proxied ? proxied : path, c->ex.upgrade, false,
                              proxied ? c->p->upstream_proxy_b64 : NULL, reverse_host,
                              c->ex.req_edits, c->ex.n_req_edits);
    free(held_fs);
    if (hold && !hold_commit(c, 0, body_mask, written))
        written = false;                      /* (said below) */
    else if (hold && c->ex.hold[0].continued) /* (recorded with what the rules did) */
        reel__peer_write(&c->client, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->ex.req_edits = NULL;
    c->ex.n_req_edits = 0;
    free(edits);
    free(mapped_host);
    free(proxied);
    if (!written) {
        reel_buf_free(&out);
        free(host);
        free(path);
        free(c_host);
        free(c_path);
        free(mapped);
        reel__fail_exchange(c, 400, "the request's head cannot be forwarded as it is");
        return;
    }
    if (!hold)
        reel__peer_write(c->up, out.data, out.len);
    /* A reused connection may be closed by the origin just as the request
     * goes out (an idle keep-alive timeout, nginx freeing connections):
     * then a request without a body and with an idempotent method is sent
     * once more on a new connection, as RFC 9112 9.3.1 allows. */
    reel_buf_reset(&c->ex.retry_head);
    c->ex.retry_is_head = h->is_head;
    /* Toward HTTP/2 also on a new connection, but only if the origin says
     * it did not process it (RFC 9113 8.7: a GOAWAY whose last stream is
     * below it, REFUSED_STREAM), which a first stream's GOAWAY can say
     * too: it was a 502 then, though "not processed". */
    c->ex.retry_unprocessed_only = !reused;
    if ((reused || c->up->h2) && !c->ex.upgrade && retryable_method(h->method) &&
        (h->framing == REEL_H1_BODY_NONE ||
         (h->framing == REEL_H1_BODY_LENGTH && h->content_length == 0)))
        reel_buf_append(&c->ex.retry_head, out.data, out.len);
    reel_buf_free(&out);
    free(host);
    free(path);
    free(c_host);
    free(c_path);
    free(mapped);
    c->state = C_REQ_BODY;
}

/* Feeds the request parser from the client's input. */
void reel__req_process(conn_t *c) {
    peer_t *cl = &c->client;
    while (c->state == C_HEAD || c->state == C_REQ_BODY) {
        if (c->state == C_HEAD && c->draining && cl->in.len == 0) {
            reel__conn_close(c);
            return;
        }
        size_t consumed = 0;
        reel_codec_event_t cev;
        reel_rc rc = reel_codec_feed(c->reqc, cl->in.data, cl->in.len, &consumed, &cev);
        const reel_h1_event_t ev = cev.h1;
        if (rc == REEL_OK && cev.type == REEL_CODEC_EV_HEAD)
            c->ex.client_sid = cev.stream;
        if (rc == REEL_NEED_MORE) {
            if (c->state == C_HEAD && cl->in.len && c->ex.head_started == 0)
                c->ex.head_started = uv_now(c->p->loop);
            if (c->state == C_HEAD)
                head_raw_keep(c, cl->in.data, consumed);
            /* Body framing the parser took without an event (a chunk-size
             * line or CRLF cut by a read) is passed on like the data; head
             * bytes are not, the head is re-serialized. */
            if (c->state == C_REQ_BODY && c->up && !c->ex.hold[0].on && !c->ex.hold[0].rechunk)
                reel__peer_write(c->up, cl->in.data, consumed);
            reel_buf_consume(&cl->in, consumed);
            break;
        }
        if (rc != REEL_OK) {
            if (wrong_proxy(c))
                return;
            if (c->ex.flow == NULL)
                reel__record_rejected(c);
            int status = ev.error_status ? ev.error_status : 400;
            const char *why = ev.error_reason ? ev.error_reason : "malformed request";
            size_t head_used;
            reel_h1_t *hp = reel_h1_codec_parser(c->reqc);
            if (hp && reel_h1_resume_refused(hp, &head_used) == REEL_OK) {
                /* a head refused whole (a missing Host): where the request
                 * ends is known, and so are the requests behind it */
                reel_buf_consume(&cl->in, head_used);
                refuse_request(c, status, why);
                return;
            }
            c->ex.req_done = false; /* not the exchange before's: nothing follows it */
            reel_h1_head_t ph;
            char *raw = c->state == C_HEAD && hp && reel_h1_partial_head(hp, &ph)
                            ? head_as_it_came(c, "the request head", cl->in.data, cl->in.len)
                            : NULL;
            fail_noted(c, status, why, raw);
            free(raw);
            return;
        }
        switch (ev.type) {
        case REEL_H1_EV_HEAD:
            /* The head's strings live in the parser, not in cl->in: drop
             * the head bytes first, so that a tunnel started by this head
             * (CONNECT) only ever sees what follows it. */
            reel_buf_consume(&cl->in, consumed);
            c->spoke_http = true;
            reel_buf_reset(&c->ex.head_raw); /* (whole: the response's next) */
            request_head(c, &ev.head);
            if (c->state == C_SNIFF || c->state == C_RAW || c->state == C_DONE)
                return;
            break;
        case REEL_H1_EV_BODY:
            if (c->ex.flow)
                reel_capture_body(c->ex.flow, false, ev.data, ev.len);
            if (c->up && c->ex.hold[0].on)
                hold_body_add(c, 0, ev.data, ev.len);
            else if (c->up && c->ex.hold[0].rechunk)
                send_chunk(c, 0, ev.data, ev.len);
            else if (c->up)
                reel__peer_write(c->up, cl->in.data, consumed);
            reel_buf_consume(&cl->in, consumed);
            break;
        case REEL_H1_EV_END: {
            /* (a body reel framed itself, modify_body's, goes without them) */
            bool framed = c->ex.hold[0].on || c->ex.hold[0].rechunk;
            if (c->ex.flow && ev.ntrailers)
                reel_capture_trailers(c->ex.flow, false, ev.trailers, ev.ntrailers, framed);
            else if (c->ex.flow && c->lane_ntrailers) /* (not passed on: core/h2front.c) */
                reel_capture_trailers(c->ex.flow, false, c->lane_trailers, c->lane_ntrailers, true);
            if (c->up && c->ex.hold[0].on)
                hold_end(c, 0);
            else if (c->up && c->ex.hold[0].rechunk)
                reel__peer_write(c->up, "0\r\n\r\n", 5);
            else if (c->up)
                reel__peer_write(c->up, cl->in.data, consumed);
            c->ex.hold[0].rechunk = false;
            reel_buf_consume(&cl->in, consumed);
            c->ex.req_done = true;
            c->ex.req_end_us = reel__now_us();
            if (c->up)
                c->up->progress = uv_now(c->p->loop); /* the response is due from now */
            if (!c->ex.upgrade)
                c->state = C_WAIT_RESP;
            if (c->ex.resp_done) {
                /* the response finished first (an early answer) */
                maybe_finish(c);
                return;
            }
            break;
        }
        case REEL_H1_EV_UPGRADE:
            reel_buf_consume(&cl->in, consumed);
            c->state = C_WAIT_RESP; /* the response decides */
            return;
        case REEL_H1_EV_TUNNEL:
        case REEL_H1_EV_NONE:
            reel_buf_consume(&cl->in, consumed);
            break;
        }
        if (c->up)
            reel__peer_update_reading(cl);
    }
}

/* ---- response side ---- */

static void exchange_done(conn_t *c, bool upstream_reusable) {
    if (!upstream_reusable)
        reel__upstream_close(c);
    if (c->client_close || c->draining) {
        record_unanswered(c, c->draining ? "the proxy was shutting down"
                                         : "the response to the request before ended the "
                                           "connection (Connection: close, or a body read "
                                           "until the close)");
        c->state = C_DONE;
        c->client.close_when_flushed = true;
        if (reel__peer_queued(&c->client) == 0)
            reel__conn_close(c);
        return;
    }
    c->state = C_HEAD;
    c->ex.head_started = 0;
    /* nothing of the next exchange has been answered: a bad next request
     * must still get its 400 (or 408) */
    c->ex.resp_head_sent = false;
    reel__conn_touch(c);
}

/* The final response is whole while the request body is not, and the
 * origin will not read the rest (it said Connection: close, or closed): the
 * exchange is over. Its flow is complete once the client has the response
 * (RFC 9110 10.1.1 lets a client that had a final answer stop sending; the
 * record's request body is what came, its request_end_us 0), and the client
 * gets the end of the connection, lingering as after reel's own error
 * answers so that its unread upload does not reset the response away.
 * Waiting for the rest of the body left a client that reads the answer
 * before sending more hanging until idle_timeout, its flow then an error
 * of the client's. */
void reel__early_answer_ends(conn_t *c) {
    reel__finish_when_delivered(c);
    close_after_answer(c, true);
}

/* Ends the exchange once both the request and the response are complete:
 * an origin may answer before it has read the whole request body (nginx
 * does for a `return`), and the rest of the body still has to be passed on
 * (and recorded) before the connection can carry the next request. */
static void maybe_finish(conn_t *c) {
    if (!c->ex.req_done || !c->ex.resp_done)
        return;
    reel__finish_when_delivered(c);
    peer_t *up = c->up;
    exchange_done(c, up && !up->eof && up->in.len == 0);
    if (c->state == C_HEAD && c->client.in.len)
        reel__req_process(c);
    /* a client that half-closed behind its pipelined requests */
    if (c->client.eof && !c->client.error)
        reel__conn_client_ended(c);
}

static void resp_head(conn_t *c, const reel_h1_head_t *h) {
    c->ex.resp_head_started = 0;
    if (h->status == 101 && !c->ex.upgrade) {
        /* RFC 9110 15.2.2: a server switches only to a protocol the
         * request's Upgrade named; passing it on would leave the client
         * reading a protocol it never asked for */
        reel__fail_exchange(c, 502,
                            "the origin answered 101 Switching Protocols to a request that asked "
                            "for no upgrade");
        return;
    }
    if (h->status == 407 && c->up && c->up->forward) {
        /* upstream_proxy wants credentials it was not given (or others):
         * its 407 asks for them with Proxy-Authenticate, which passed on
         * would have the client ask its user for reel's; said as a
         * CONNECT refused is (core/connect_filter.c) */
        char *why = reel_asprintf("the upstream proxy %s answered \"HTTP/%d.%d 407 %s\" to the "
                                  "request forwarded to it",
                                  c->up->via, h->version_major, h->version_minor,
                                  h->reason ? h->reason : "");
        reel__fail_exchange(c, 502, why);
        free(why);
        return;
    }
    if (c->lane && c->ex.ws_requested && !h->interim && h->status / 100 == 2) {
        /* An HTTP/2 client's WebSocket (RFC 8441) takes any 2xx as the
         * switch and would read the origin's body as frames: an origin that
         * served the resource instead of switching did not open it. */
        char *why = reel_asprintf("the origin answered %d to the WebSocket request instead of "
                                  "101 Switching Protocols: it did not open a WebSocket",
                                  h->status);
        reel__fail_exchange(c, 502, why);
        free(why);
        return;
    }
    char ver[16];
    reel_h1_version_str(ver, h->version_major, h->version_minor);
    reel_msg_head_t rs = {.status = (uint32_t)h->status,
                          .reason = h->reason ? h->reason : "",
                          .version = ver,
                          .fields = h->headers,
                          .nfields = h->nheaders};
    reel_field_t *h2fields = NULL;
    if (c->up && c->up->h2) {
        /* an HTTP/2 origin (core/h2up.c): recorded as it answered, without
         * the Transfer-Encoding its HTTP/1.1 form got from reel (HTTP/2
         * has none) and without a reason phrase (nor that); a WebSocket
         * stream's switch as the 200 it was, without the fields reel added
         * to make it a 101 */
        h2fields = reel_calloc(h->nheaders ? h->nheaders : 1, sizeof *h2fields);
        size_t n = 0, upto = h->nheaders;
        if (h->status == 101) {
            unsigned synth = reel__h2up_synthesized(c->up);
            upto = synth <= upto ? upto - synth : 0;
            rs.status = 200;
        }
        for (size_t i = 0; i < upto; i++) {
            if (h->headers[i].name_len == 17 &&
                strncasecmp(h->headers[i].name, "transfer-encoding", 17) == 0)
                continue;
            h2fields[n] = h->headers[i];
            if (reel__is_lane_length(&h2fields[n])) { /* the origin's content-length */
                h2fields[n].name = "content-length";
                h2fields[n].name_len = 14;
            }
            n++;
        }
        rs.version = "HTTP/2.0";
        rs.reason = "";
        rs.fields = h2fields;
        rs.nfields = n;
    }
    if (h->interim && ++c->ex.interims > REEL_MAX_INTERIM) {
        free(h2fields);
        char *why = reel_asprintf("the origin sent more than %d informational (1xx) responses "
                                  "before its final one",
                                  REEL_MAX_INTERIM);
        reel__fail_exchange(c, 502, why);
        free(why);
        return;
    }
    if (h->interim) {
        /* 100 Continue, 103 Early Hints: recorded as the origin sent them,
         * passed on unless the client spoke HTTP/1.0, which has no 1xx
         * (RFC 9110 15.2: a server must not send it one) */
        if (c->ex.flow)
            reel_capture_interim(c->ex.flow, &rs);
        free(h2fields);
        if (c->ex.client_h10)
            return;
        reel_buf_t out;
        reel_buf_init(&out, 0);
        if (write_head(&out, h, false, NULL, false, false, NULL, NULL, NULL, 0))
            reel__peer_write(&c->client, out.data, out.len);
        else
            reel__fail_exchange(c, 502, "the origin's informational head cannot be forwarded");
        reel_buf_free(&out);
        return;
    }
    /* modify_headers: judged on the request as it was sent and on this
     * head as the origin sent it (and as it is recorded) */
    size_t n_redits = 0;
    uint64_t body_mask; /* (modify_body's rules, judged on it as it is recorded, too) */
    reel_header_edit_t *redits = response_rules(c, &rs, &n_redits, &body_mask);
    rs.edits = redits;
    rs.nedits = n_redits;
    if (c->ex.flow)
        reel_capture_response(c->ex.flow, &rs, false, 0);
    free(h2fields);
    if (h->status == 101 && c->ex.ws_requested && reel__has_token(h, "upgrade", "websocket")) {
        /* Sec-WebSocket-Extensions lines joined as one list */
        reel_buf_t ext;
        reel_buf_init(&ext, 0);
        for (size_t i = 0; i < h->nheaders; i++)
            if (h->headers[i].name_len == 24 &&
                strncasecmp(h->headers[i].name, "sec-websocket-extensions", 24) == 0) {
                if (ext.len)
                    reel_buf_append(&ext, ", ", 2);
                reel_buf_append(&ext, h->headers[i].value, h->headers[i].value_len);
            }
        c->ex.ws_ok =
            reel_ws_parse_extensions((const char *)ext.data, ext.len, &c->ex.ws_deflate) == REEL_OK;
        reel_buf_free(&ext);
    }
    bool eof_framed = h->framing == REEL_H1_BODY_EOF;
    c->ex.resp_until_close = eof_framed;
    /* An HTTP/1.0 client knows no chunked coding (RFC 9112 6.1: a server
     * must not send it Transfer-Encoding): it would keep the chunk-size
     * lines as body bytes. It gets the body alone, ended by the close, and
     * no trailers; so does one of an HTTP/2 origin, whose body reel made
     * chunked (core/h2up.c). */
    reel_h1_head_t plain;
    reel_h1_header_t *kept = NULL;
    /* (nor the fields of a chunked answer to HEAD, or a 304, which has no
     * body to decode: a chunked body has the field, so it decides) */
    bool te = c->ex.client_h10 && !c->ex.upgrade &&
              reel_h1_find_header(h->headers, h->nheaders, "transfer-encoding") != NULL;
    /* An HTTP/2 origin's body with a content-length came chunked all the
     * same, the length under REEL_LANE_LENGTH (core/h2up.c), so that the
     * record has trailers after it; an HTTP/1.1 client gets it as the
     * origin framed it, by the length, de-chunked, and not the trailers,
     * which HTTP/1.1 has no place for there; so does one inside a lane's
     * CONNECT tunnel. (A lane's own client, a stream, takes them:
     * core/h2front.c gives the length its name.) */
    bool to_stream = c->lane && !c->lane_tunnel, lane_len = false;
    for (size_t i = 0; !to_stream && c->up && c->up->h2 && i < h->nheaders && !lane_len; i++)
        lane_len = reel__is_lane_length(&h->headers[i]);
    c->ex.resp_dechunk = (te || lane_len) && h->framing == REEL_H1_BODY_CHUNKED;
    if (te || lane_len) {
        plain = *h;
        kept = reel_malloc((h->nheaders ? h->nheaders : 1) * sizeof *kept);
        plain.nheaders = 0;
        for (size_t i = 0; i < h->nheaders; i++) {
            const reel_h1_header_t *f = &h->headers[i];
            if ((f->name_len == 17 && strncasecmp(f->name, "transfer-encoding", 17) == 0) ||
                (te && f->name_len == 7 && strncasecmp(f->name, "trailer", 7) == 0))
                continue;
            kept[plain.nheaders] = *f;
            if (reel__is_lane_length(f)) {
                kept[plain.nheaders].name = "content-length";
                kept[plain.nheaders].name_len = 14;
            }
            plain.nheaders++;
        }
        plain.headers = kept;
        h = &plain;
    }
    if (eof_framed || !h->keep_alive || (te && c->ex.resp_dechunk))
        c->client_close = c->ex.resp_close = true;
    reel_h1_head_t held;
    reel_h1_header_t *held_fs = NULL;
    if (hold_begin(c, 1, h, body_mask, &held, &held_fs)) {
        bool ok = write_head(&c->ex.hold[1].head, &held, false, NULL, false, c->client_close, NULL,
                             NULL, redits, n_redits);
        free(held_fs);
        if (hold_commit(c, 1, body_mask, ok)) {
            /* (committed: from here an error cuts the client's connection) */
            free(kept);
            free(redits);
            c->ex.resp_head_sent = true;
            return;
        }
    }
    reel_buf_t out;
    reel_buf_init(&out, 0);
    bool written = write_head(&out, h, false, NULL, c->ex.upgrade && h->status == 101,
                              c->client_close && !(c->ex.upgrade && h->status == 101), NULL, NULL,
                              redits, n_redits);
    free(kept);
    free(redits);
    if (!written) {
        reel_buf_free(&out);
        reel__fail_exchange(c, 502, "the origin's response head cannot be forwarded as it is");
        return;
    }
    reel__peer_write(&c->client, out.data, out.len);
    reel_buf_free(&out);
    c->ex.resp_head_sent = true;
}

/* The reused upstream connection closed before a byte of the response
 * came: the same request on a new connection, once. */
static void retry_on_new_upstream(conn_t *c, bool held) {
    peer_t *old = c->up;
    bool https = old->https;
    int port = old->port;
    char *host = reel_strdup(old->host);
    char *sni = old->sni ? reel_strdup(old->sni) : NULL;
    reel__upstream_close(c);
    c->ex.retried = true;
    c->ex.retry_held = held;
    c->ex.conn_recorded = false; /* the new connection gets a record of its own */
    reel__upstream_for(c, https, host, port, sni);
    reel_h1_expect_response(reel_h1_codec_parser(c->respc), c->ex.retry_is_head, false);
    /* (none for a request held for modify_body: it goes whole, later) */
    reel__peer_write(c->up, c->ex.retry_head.data, c->ex.retry_head.len);
    reel_buf_reset(&c->ex.retry_head);
    free(host);
    free(sni);
}

/* RFC 9112 9.8: a body delimited by the close "is complete only if a
 * valid closure alert has been received"; core/tls.c passes a bare TCP
 * close up as an end, since a body its framing delimits is whole without
 * one (many servers skip it). */
#define TLS_CUT_SHORT                                                                              \
    "the origin closed the TLS connection without close_notify: the body may be cut short (RFC "   \
    "9112 9.8)"

/* Whether the exchange waits for its response with the request read
 * whole: what the client sent since is requests pipelined behind it. */
static bool awaits_response(const conn_t *c) {
    return c->state == C_WAIT_RESP && c->ex.flow && c->ex.req_done && !c->ex.upgrade && !c->lane;
}

/* The requests the client pipelined behind an exchange that ends before
 * its response did (why): read, never sent, and never to be (they used to
 * leave no flow at all). Before the exchange's flow ends. */
static void record_behind_cut(conn_t *c, const char *why) {
    if (!awaits_response(c))
        return;
    char *msg = c->ex.resp_head_sent
                    ? reel_asprintf("the response to the request before was cut short (%s)", why)
                    : reel_asprintf("the request before got no response (%s)", why);
    record_unanswered(c, msg);
    free(msg);
}

/* Bytes of the connection's output the client has not taken: reel's
 * queue and its socket's unacknowledged bytes. */
static size_t client_unsent(conn_t *c) {
    return c->lane ? 0 : reel__peer_queued(&c->client) + reel_stack_unsent(&c->client.st);
}

void reel__exchange_ends_cut(conn_t *c, const char *why) {
    record_behind_cut(c, why);
    /* reel__conn_close resets the client when a body read until the
     * close was being relayed, and a reset drops what is still queued
     * for it, in reel and in its socket: the record says how much the
     * client may never get (reel__exchange_cut delivers it first when it
     * can; a shutdown, a client gone do not wait) */
    size_t queued = client_unsent(c);
    if (c->ex.resp_until_close && c->ex.resp_head_sent && !c->lane && c->state != C_RAW &&
        queued > 0) {
        char *msg = reel_asprintf("%s (%zu bytes of the connection's output were still queued "
                                  "in reel)",
                                  why, queued);
        reel__finish_flow(c, msg);
        free(msg);
    } else {
        reel__finish_flow(c, why);
    }
}

void reel__exchange_cut(conn_t *c, const char *why) {
    if (c->lane && c->ex.flow && c->ex.resp_head_sent && c->state != C_RAW &&
        reel__peer_queued(&c->client) > 0) {
        /* A lane's stream: the reset (RST_STREAM INTERNAL_ERROR) waits
         * in the stream, with the flow, for the response bytes reel held
         * for the client's window, as an HTTP/1 client's waits for its
         * queue (below); the reset at once dropped them, a megabyte for a
         * slow reader. The lane's conn goes now. Reset at once (at a
         * shutdown: by the lane's close, core/h2front.c), the record
         * says how many bytes it dropped, in the lane and in its stream. */
        if (!reel__h2front_cut(c, why)) {
            char *msg = reel_asprintf("%s (%zu bytes of the response were still queued in reel "
                                      "for the HTTP/2 stream, not sent, when reel reset the "
                                      "stream)",
                                      why, reel__peer_queued(&c->client));
            reel__exchange_ends_cut(c, msg);
            free(msg);
        }
        reel__conn_close(c);
        return;
    }
    size_t queued = client_unsent(c);
    /* The reset (reel__conn_close) drops what the client has not taken,
     * which the origin did send: a slow reader lost megabytes of it. So
     * the reset waits for them to reach it, reading from the client
     * stopped (what it sends now answers nothing); the socket's queue
     * must empty too, as uv_tcp_close_reset drops its unacknowledged
     * bytes. The flow's end waits with them, as any response's does for
     * its last byte (reel__finish_when_delivered): it says whether they
     * arrived. A shutdown closes at once. */
    if (queued == 0 || c->ex.flow == NULL || c->lane || c->state == C_RAW ||
        !c->ex.resp_until_close || !c->ex.resp_head_sent || c->ex.resp_done || c->client.closing ||
        c->client.error || c->p->shutting_down || c->cut_fin) {
        reel__exchange_ends_cut(c, why);
        reel__conn_close(c);
        return;
    }
    record_behind_cut(c, why);
    c->cut_fin = reel__fin_take(c);
    c->cut_why = reel_strdup(why);
    c->cut_queued = c->cut_left = queued;
    /* (an idle_timeout set shorter bounds the wait too) */
    c->cut_until =
        uv_now(c->p->loop) +
        (c->p->idle_timeout_ms < CUT_DELIVER_MS ? c->p->idle_timeout_ms : CUT_DELIVER_MS);
    c->state = C_DONE;
    reel__upstream_close(c);
    reel__peer_read_stop(&c->client);
    reel__conn_arm_at(c, true);
}

void reel__cut_poll(conn_t *c) {
    size_t left = client_unsent(c);
    bool broken = reel_stack_broken(&c->client.st);
    if (left > 0 && !broken && uv_now(c->p->loop) < c->cut_until) {
        c->cut_left = left;
        reel__conn_arm_at(c, true);
        return;
    }
    reel__conn_close(c); /* writes the end (reel__cut_end), then the reset */
}

void reel__cut_end(conn_t *c, const char *client_why) {
    if (c->cut_fin == NULL)
        return;
    size_t left = client_unsent(c);
    bool broken = reel_stack_broken(&c->client.st);
    char *msg;
    if (client_why || broken) {
        /* what was still queued went with the connection: as much as at
         * the last look */
        char *both = reel_asprintf("%s; then %s", c->cut_why,
                                   client_why ? client_why : "the client reset the connection");
        msg = undelivered_why(both, "response", left > c->cut_left ? left : c->cut_left);
        free(both);
    } else if (left == 0) {
        msg = reel_asprintf("%s (the %zu bytes of the connection's output still queued in reel "
                            "then reached the client before reel reset the connection)",
                            c->cut_why, c->cut_queued);
    } else {
        msg = reel_asprintf("%s (%zu bytes of the connection's output were still queued in reel "
                            "%s, when reel reset the connection)",
                            c->cut_why, left,
                            c->p->shutting_down ? "at the proxy's shutdown"
                                                : "after waiting for the client to take them");
    }
    reel__fin_end(c->cut_fin, msg);
    STAT_ADD(c->p, errors, 1);
    free(msg);
    c->cut_fin = NULL;
    free(c->cut_why);
    c->cut_why = NULL;
}

static bool tls_no_close_notify(peer_t *up) {
    reel_stack_info_t info;
    reel_stack_info(&up->st, &info);
    return info.tls_no_close_notify;
}

void reel__resp_process(conn_t *c) {
    peer_t *up = c->up;
    if (up && up->in.len && (c->state == C_HEAD || (c->ex.resp_done && !c->ex.upgrade))) {
        /* Bytes from the origin while no response is due (between
         * requests, or after a whole response while the request body
         * still goes): they answer nothing the client asked, so they never
         * reach it, and the connection, whose framing is lost, is not used
         * again (the next request gets a new one). Counted for the exit
         * summary. */
        STAT_ADD(c->p, unsolicited, 1);
        reel_buf_reset(&up->in);
        reel__upstream_close(c);
        return;
    }
    if (up && up->in.len && c->ex.flow && c->ex.resp_first_us == 0)
        c->ex.resp_first_us = reel__now_us();
    while (up && c->up == up && c->state != C_DONE && c->state != C_RAW) {
        size_t consumed = 0;
        reel_codec_event_t cev;
        reel_rc rc;
        bool at_eof = up->eof && up->in.len == 0;
        if (at_eof)
            rc = reel_codec_feed_eof(c->respc, &cev);
        else
            rc = reel_codec_feed(c->respc, up->in.data, up->in.len, &consumed, &cev);
        const reel_h1_event_t ev = cev.h1;
        if (rc == REEL_OK && cev.type == REEL_CODEC_EV_HEAD)
            c->ex.server_sid = cev.stream;
        if (rc == REEL_NEED_MORE) {
            if (c->ex.resp_head_sent && !c->ex.resp_done && !c->ex.resp_dechunk &&
                !c->ex.hold[1].on && !c->ex.hold[1].rechunk) /* (not a body reel frames itself) */
                reel__peer_write(&c->client, up->in.data, consumed); /* framing, as above */
            else if (!c->ex.resp_head_sent && consumed && c->ex.resp_head_started == 0)
                c->ex.resp_head_started = uv_now(c->p->loop);
            if (!c->ex.resp_head_sent)
                head_raw_keep(c, up->in.data, consumed);
            reel_buf_consume(&up->in, consumed);
            break;
        }
        if (rc != REEL_OK) {
            /* cut short: by what the transport said if it said (an HTTP/2
             * stream reset, a TLS error), else by what the parser saw */
            char *who = up->eof && up->error ? NULL : reel__upstream_name(up);
            char *why = who ? reel_asprintf("invalid response from %s: %s", who,
                                            ev.error_reason ? ev.error_reason : "malformed")
                            : reel_strdup(up->error);
            free(who);
            if (c->ex.resp_head_sent && up->eof && up->error && !up->h2) {
                /* a reset in the middle of a body its framing delimits:
                 * the origin's, said as for a body read until the close
                 * (a bare "connection reset by peer" named no side) */
                char *cut = reel_asprintf("response cut short: %s", why);
                free(why);
                why = cut;
            }
            if (c->ex.resp_head_sent) {
                reel__exchange_cut(c, why);
                free(why);
                return;
            }
            reel_h1_t *hp = reel_h1_codec_parser(c->respc);
            reel_h1_head_t ph;
            char *raw =
                !(up->eof && up->error) && up->in.len && hp && reel_h1_partial_head(hp, &ph)
                    ? head_as_it_came(c, "the origin's response head", up->in.data, up->in.len)
                    : NULL;
            fail_noted(c, 502, why, raw);
            free(raw);
            free(why);
            return;
        }
        if (ev.type == REEL_H1_EV_NONE) {
            /* clean EOF between responses */
            if (up->eof) {
                if (c->ex.flow && !c->ex.resp_head_sent && c->ex.retry_head.len && !c->ex.retried &&
                    reel__h2up_may_retry(up) &&
                    (!c->ex.retry_unprocessed_only || reel__h2up_unprocessed(up))) {
                    retry_on_new_upstream(c, false);
                    return;
                }
                /* A kept-alive connection the origin closed while reel held
                 * the request for its body (modify_body): nothing of it
                 * went, so it goes on a new connection, once whole (it was
                 * a 502 saying the origin had not answered) */
                if (c->ex.flow && c->ex.hold[0].on && !c->ex.retried && reel__h2up_may_retry(up)) {
                    retry_on_new_upstream(c, true);
                    return;
                }
                if (c->ex.flow && !c->ex.resp_head_sent) {
                    const char *why =
                        up->error ? up->error : "upstream closed the connection without responding";
                    /* the request went out twice: the record says so */
                    char *both =
                        c->ex.retry_held
                            ? reel_asprintf("%s (on a new connection: the kept-alive one it was "
                                            "first meant for closed while reel held the request "
                                            "for modify_body, before any of it went)",
                                            why)
                        : c->ex.retried
                            ? reel_asprintf("%s (retried once: the first attempt, on a "
                                            "kept-alive connection, went unanswered too)",
                                            why)
                            : NULL;
                    reel__fail_exchange(c, 502, both ? both : why);
                    free(both);
                    return;
                }
                if (c->ex.resp_done && !c->ex.req_done && !c->ex.upgrade && !c->lane &&
                    c->state == C_REQ_BODY) {
                    reel__early_answer_ends(c);
                    return;
                }
                reel__upstream_close(c);
            }
            break;
        }
        switch (ev.type) {
        case REEL_H1_EV_HEAD:
            reel_buf_reset(&c->ex.head_raw);
            resp_head(c, &ev.head);
            reel_buf_consume(&up->in, consumed);
            break;
        case REEL_H1_EV_BODY:
            if (c->ex.flow)
                reel_capture_body(c->ex.flow, true, ev.data, ev.len);
            if (c->ex.hold[1].on)
                hold_body_add(c, 1, ev.data, ev.len);
            else if (c->ex.hold[1].rechunk)
                send_chunk(c, 1, ev.data, ev.len);
            else if (c->ex.resp_dechunk)
                reel__peer_write(&c->client, ev.data, ev.len);
            else
                reel__peer_write(&c->client, up->in.data, consumed);
            reel_buf_consume(&up->in, consumed);
            break;
        case REEL_H1_EV_END:
            if (at_eof && (up->error || tls_no_close_notify(up))) {
                /* a body read until the close, and the connection ended
                 * on an error (a TLS error, a reset) or, over TLS, without
                 * close_notify: cut short, not whole (RFC 9112 9.8) */
                char *why = up->error ? reel_asprintf("response cut short: %s", up->error)
                                      : reel_strdup(TLS_CUT_SHORT);
                reel__exchange_cut(c, why);
                free(why);
                return;
            }
            /* (a body reel framed itself, modify_body's, goes without them) */
            if (c->ex.flow && ev.ntrailers)
                reel_capture_trailers(c->ex.flow, true, ev.trailers, ev.ntrailers,
                                      c->ex.hold[1].on || c->ex.hold[1].rechunk);
            if (c->ex.hold[1].on) {
                hold_end(c, 1);
            } else if (c->ex.hold[1].rechunk) {
                reel__peer_write(&c->client, "0\r\n\r\n", 5);
                c->ex.hold[1].rechunk = false;
            } else if (!c->ex.resp_dechunk) { /* (the last chunk and the trailers) */
                reel__peer_write(&c->client, up->in.data, consumed);
            }
            reel_buf_consume(&up->in, consumed);
            c->ex.resp_done = true;
            if (c->ex.upgrade && c->ex.req_done)
                break; /* an UPGRADE event follows if it switched */
            if (up->in.len && !up->h2 && !c->ex.upgrade) {
                /* Bytes right after the response's end, as its framing
                 * said (a Content-Length shorter than the body sent, a
                 * body after a HEAD's or a 204's head): they answer
                 * nothing, never reach the client, and the connection is
                 * not used again (below). The flow says how many came. */
                c->ex.resp_excess = up->in.len;
            }
            if (!c->ex.req_done && c->ex.resp_close && !c->ex.upgrade && !c->lane) {
                reel__early_answer_ends(c);
                return;
            }
            if (!c->ex.req_done && c->ex.resp_until_close && !c->ex.upgrade && c->lane) {
                /* the lane's HTTP/1.1 parser ends such a body only at the
                 * lane's close, which waited for the request body
                 * (maybe_finish): the client, still sending, never had its
                 * END_STREAM nor a reset, its flow ended as its error. The
                 * stream ends it now and takes the flow (its lane conn is
                 * closed then, stream_cut), as when the length said so. */
                reel__h2front_closed_answer(c);
            }
            maybe_finish(c);
            return;
        case REEL_H1_EV_UPGRADE:
            reel_buf_consume(&up->in, consumed);
            reel__start_upgraded_tunnel(c);
            return;
        default:
            reel_buf_consume(&up->in, consumed);
            break;
        }
        reel__peer_update_reading(up);
    }
    if (c->ex.upgrade && c->ex.resp_done && c->state == C_WAIT_RESP) {
        /* Upgrade refused (the origin answered without 101): the exchange
         * and its flow are complete, and the connection speaks HTTP again. */
        c->ex.upgrade = false;
        reel_h1_upgrade_refused(reel_h1_codec_parser(c->reqc));
        maybe_finish(c);
    }
}
