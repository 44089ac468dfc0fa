/* The web UI's HTTP/1.1 server: connections, the request parser shared
 * with the proxy (core/http1.h), the security checks (token, Host, Origin,
 * read-only), static assets and Server-Sent Events. See web.h. */
#include "web/web.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "core/http1.h"
#include "core/replay_send.h"
#include "core/tls.h"
#include "web/web_int.h"

#define IDLE_TIMEOUT_MS 30000
#define HEAD_MAX (16 * 1024)
#define TICK_MS 500
#define STREAM_CHUNK (256 * 1024)
/* The cookie versions before this one set for the token. Cookies are not
 * separated by port (RFC 6265 8.5): the browser sent it to every server on
 * the host. It no longer authorizes anything, and a page load that still
 * carries it is answered with its expiry. */
#define OLD_COOKIE "reel_token"
/* How long a replay child may run before it is killed (504); the
 * environment's REEL_WEB_REPLAY_TIMEOUT (seconds) overrides it. */
#define REPLAY_TIMEOUT_MS (120 * 1000)
/* Most bytes kept of a replay child's stdout and of its stderr. */
#define REPLAY_OUT_MAX ((size_t)1024 * 1024)
/* Replays into the live session sending at once. Each holds one of
 * libuv's thread pool threads (4 by default) for as long as it runs, and
 * the proxy resolves names on that pool: two are left to it. */
#define LIVE_REPLAY_MAX 2
/* Threads of the server's own that answer the requests that may walk a
 * whole session (reel__web_api_long: exports, filtered counts and pages,
 * ...), so that the loop, which is the proxy's under `reel record --web`,
 * goes on serving meanwhile. Not libuv's pool: the proxy resolves names
 * there, and live replays hold two of its four threads. Two, so that a
 * filtered page need not wait for a long export; more wait in a queue. */
#define WALK_THREADS 2
/* Their nice value: on a busy machine the proxy's threads come first, and
 * an export takes longer instead. */
#define WALK_NICE 10
/* Tickets (POST /api/tickets): what the requests a browser makes without
 * the page's headers (the event stream, a body's raw bytes, an export)
 * carry in their URL instead of the token, which a URL would leak
 * (history, downloads list, copy and paste). Each is bound to one path,
 * valid for TICKET_TTL_MS (the environment's REEL_WEB_TICKET_TTL, seconds,
 * overrides it), and at most TICKET_MAX exist: the table neither grows
 * nor holds dead ones for long. */
#define TICKET_TTL_MS (60 * 1000)
#define TICKET_MAX 128

typedef struct conn conn_t;
typedef struct replay replay_t;
typedef struct live_replay live_replay_t;
typedef struct walk walk_t;

/* One ticket. A download's or an image's is taken by its one request. The
 * event stream's is held by the stream while it is open (no second one may
 * use it meanwhile) and may be used again until TICKET_TTL_MS after it
 * closed: the browser reconnects an EventSource by itself, to the same URL,
 * sending Last-Event-ID so that no flow is lost, and no script runs
 * in between that could ask for a new ticket. */
typedef struct {
    char id[33]; /* "": a free slot */
    char *segs;  /* the path's segments, percent-decoded, each NUL-terminated */
    size_t segs_len;
    int stream;          /* for /api/sessions/S/events: reused by its reconnects */
    int in_use;          /* a stream holds it: it does not expire meanwhile */
    uint64_t expires_ms; /* uv_now */
} ticket_t;

struct reel_web {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t tick;
    reel__web_ctx_t ctx;
    char *home;
    char **sessions;
    size_t nsessions;
    char *live;
    char token[33];
    ticket_t tickets[TICKET_MAX];
    int ticket_ttl_ms;
    char *url;
    char *hosts[4]; /* Host values accepted */
    int port;
    int stopped;
    int open_handles;
    conn_t *conns;
    replay_t *replays; /* children running `reel replay` */
    int replay_timeout_ms;
    /* replays into the live session, sent in this process */
    reel_recorder_t *live_rec; /* borrowed; NULL: none (409) */
    reel_tls_ctx_t *live_tls;
    int live_verify, live_timeout_s;
    /* upstream_proxy, upstream_proxyauth, upstream_no_proxy,
     * upstream_insecure_hosts, upstream_client_certs (NULL: none) */
    char *live_str[5];
    live_replay_t *live_replays; /* queued or running */
    int nlive_replays;
    /* long requests, answered on the walk threads */
    walk_t *walks; /* every one not yet freed (the loop's list) */
    pthread_mutex_t wmu;
    pthread_cond_t wcv;
    pthread_t wthreads[WALK_THREADS];
    int nwthreads;             /* started (loop; joined by reel_web_free) */
    int widle;                 /* threads waiting for a job (wmu) */
    walk_t *wq_head, *wq_tail; /* waiting for a thread (wmu) */
    walk_t *wdone;             /* answered, for the loop to send (wmu) */
    int wquit;                 /* threads exit; wasync is closed (wmu) */
    uv_async_t wasync;         /* wakes the loop for wdone */
    int have_wasync;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    reel_web_t *w;
    conn_t *next, *prev;
    reel_h1_t *parser;
    reel_buf_t in;       /* bytes read, not yet parsed */
    reel_h1_head_t head; /* of the request being read; valid until END is handled */
    int have_head;
    reel_buf_t body;
    int closing, handles;
    int close_after;      /* close once the writes are done */
    int head_only;        /* the request is a HEAD: its answer goes without content */
    int writes;           /* writes in flight */
    FILE *stream;         /* a body being streamed */
    reel__web_sse_t *sse; /* the connection is an event stream */
    char sse_ticket[33];  /* ... opened with this ticket, held until it closes ("": none) */
    int64_t sse_idle;
    replay_t *replay;           /* the request waits for this replay child */
    live_replay_t *live_replay; /* ... or for this replay into the live session */
    walk_t *walk;               /* ... or for this answer from a walk thread */
};

/* A `reel replay --json` child answering one request: its exit and both
 * pipes at end of stream make the answer. Owned by the server's list; the
 * connection only points at it (and it back, NULL once the connection
 * has closed: the child then runs to its end unanswered). */
struct replay {
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t timer;
    reel_web_t *w;
    conn_t *c;
    replay_t *next, *prev;
    reel_buf_t obuf, ebuf;
    int keep_alive;
    int handles;     /* open handles */
    int pipes_open;  /* pipes not at end of stream */
    int exited;      /* the exit callback ran */
    int64_t status;  /* exit status */
    int term_signal; /* signal that ended it, 0 if none */
    int timed_out;
    int closing;
};

/* A replay into the session this process records, sent on libuv's thread
 * pool (core/replay_send.c) and recorded by the daemon's recorder. The job
 * owns everything the thread reads; the server's list owns the job until
 * the after-work callback (on the loop) answers and frees it. The
 * connection only points at it (and it back, NULL once the connection has
 * closed: the job then runs to its end unanswered). */
struct live_replay {
    uv_work_t work;
    reel_web_t *w;
    conn_t *c;
    live_replay_t *next, *prev;
    int keep_alive;
    char *session;
    reel_replay_req_t *req; /* owned */
    reel_replay_send_opts_t opts;
    char *str[5];      /* opts' strings, as w->live_str (copies: the settings may change) */
    atomic_int cancel; /* reel_web_stop: stop at the next wait */
    reel_replay_result_t res;
};

/* A long request answered on a walk thread: a copy of the request (the
 * connection's buffers move on) and the answer. Created and freed on the
 * loop, which owns it through w->walks; a thread only takes it from the
 * queue, fills rs and puts it on w->wdone. The connection only points at
 * it (and it back, NULL once the connection has closed: the answer is
 * then dropped, and an export stops early by `cancel`). */
struct walk {
    reel_web_t *w;
    conn_t *c;
    walk_t *next, *prev; /* w->walks */
    walk_t *qnext;       /* w->wq_head... or w->wdone (under w->wmu) */
    int keep_alive;
    char *method, *path, *query;
    uint8_t *body;
    size_t body_len;
    atomic_int cancel;
    reel__web_resp_t rs;
};

typedef struct {
    uv_write_t req;
    conn_t *c;
    char *data[2];
} wreq_t;

static void conn_process(conn_t *c);

/* ---- helpers ---- */

/* The bytes of b, owned by the caller (malloc'd); b is left empty. */
static uint8_t *buf_take(reel_buf_t *b) {
    uint8_t *p = b->data;
    if (p == NULL)
        p = reel_malloc(1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

json_t *reel__web_message(const char *msg) {
    json_t *j = json_string(msg);
    if (j != NULL)
        return j;
    /* not UTF-8 (it quotes a parameter's bytes): those bytes as \xNN, as
     * a filter's errors write them, so the message still names them; it
     * was the word "error" alone */
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p < 0x80)
            reel_buf_append(&b, p, 1);
        else
            reel_buf_printf(&b, "\\x%02x", *p);
    }
    reel_buf_append(&b, "", 1);
    j = json_string((const char *)b.data);
    reel_buf_free(&b);
    return j;
}

void reel__web_error(reel__web_resp_t *rs, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rs->status = status;
    rs->type = NULL;
    reel_buf_reset(&rs->body);
    json_t *j = json_pack("{s:o}", "error", reel__web_message(msg));
    char *s = json_dumps(j, JSON_COMPACT);
    reel_buf_puts(&rs->body, s);
    free(s);
    json_decref(j);
}

void reel__web_not_allowed(reel__web_resp_t *rs, const char *allow, const char *msg) {
    reel__web_error(rs, 405, "%s", msg);
    char *h = reel_asprintf("%sAllow: %s\r\n", rs->headers ? rs->headers : "", allow);
    free(rs->headers);
    rs->headers = h;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *reel__web_unescape(const char *s, size_t n, int form) {
    char *o = reel_malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+' && form) {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (ch == 0) {
            free(o);
            return NULL;
        }
        o[k++] = (char)ch;
    }
    o[k] = '\0';
    return o;
}

char *reel__web_param(const char *query, const char *name) {
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len >= nl && strncmp(p, name, nl) == 0 && (len == nl || p[nl] == '='))
            return len == nl ? reel_strdup("") : reel__web_unescape(p + nl + 1, len - nl - 1, 1);
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *reel__web_query_nul(const char *query, size_t *name_len) {
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq) {
            char *v = reel__web_unescape(eq + 1, len - (size_t)(eq + 1 - p), 1);
            if (v == NULL) {
                *name_len = (size_t)(eq - p);
                return p;
            }
            free(v);
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static int token_eq(const char *a, const char *b, size_t blen) {
    size_t al = strlen(a);
    unsigned diff = al != blen;
    for (size_t i = 0; i < al; i++)
        diff |= (unsigned)(a[i] ^ (i < blen ? b[i] : 0));
    return diff == 0;
}

/* ---- tickets ---- */

/* Packs segments as ticket_t.segs holds them: each NUL-terminated. */
static char *segs_pack(char *const *seg, int n, size_t *len) {
    size_t l = 0;
    for (int i = 0; i < n; i++)
        l += strlen(seg[i]) + 1;
    char *p = reel_malloc(l ? l : 1);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        size_t sl = strlen(seg[i]) + 1;
        memcpy(p + k, seg[i], sl);
        k += sl;
    }
    *len = l;
    return p;
}

static void ticket_clear(ticket_t *t) {
    free(t->segs);
    memset(t, 0, sizeof *t);
}

/* Frees the tickets that expired (those held by a stream do not). */
static void tickets_sweep(reel_web_t *w) {
    uint64_t now = uv_now(w->loop);
    for (int i = 0; i < TICKET_MAX; i++) {
        ticket_t *t = &w->tickets[i];
        if (t->id[0] && !t->in_use && t->expires_ms <= now)
            ticket_clear(t);
    }
}

/* Makes a ticket for the path of segments seg[0..n) (the API path without
 * "/api/"), into id (33 bytes). -1 when no random bytes could be had, -2
 * when the table is full of tickets held by open streams. A full table
 * otherwise loses the ticket nearest its expiry: one that will not be used
 * any more, most likely. */
static int ticket_mint(reel_web_t *w, char *const *seg, int n, int stream, char *id) {
    tickets_sweep(w);
    ticket_t *slot = NULL;
    for (int i = 0; i < TICKET_MAX && slot == NULL; i++)
        if (w->tickets[i].id[0] == '\0')
            slot = &w->tickets[i];
    for (int i = 0; i < TICKET_MAX && slot == NULL; i++) {
        ticket_t *t = &w->tickets[i];
        if (t->in_use)
            continue;
        for (int k = i; k < TICKET_MAX; k++) {
            ticket_t *u = &w->tickets[k];
            if (!u->in_use && u->expires_ms < t->expires_ms)
                t = u;
        }
        slot = t;
    }
    if (slot == NULL)
        return -2;
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -1;
    ticket_clear(slot);
    for (int i = 0; i < 16; i++)
        snprintf(slot->id + 2 * i, 3, "%02x", r[i]);
    slot->segs = segs_pack(seg, n, &slot->segs_len);
    slot->stream = stream;
    slot->expires_ms = uv_now(w->loop) + (uint64_t)w->ticket_ttl_ms;
    memcpy(id, slot->id, sizeof slot->id);
    return 0;
}

/* Takes ticket id for a request of the path seg[0..n): 1 when it is good
 * for that path and neither expired nor held by an open stream, and then
 * uses it up (a stream's ticket is held instead: *stream set to 1, to be
 * given back with ticket_release); else 0, and the ticket is left as it
 * was. The id is compared with every slot's, each in constant time. */
static int ticket_take(reel_web_t *w, const char *id, char *const *seg, int n, int *stream) {
    *stream = 0;
    tickets_sweep(w);
    ticket_t *hit = NULL;
    size_t idl = strlen(id);
    for (int i = 0; i < TICKET_MAX; i++) {
        ticket_t *t = &w->tickets[i];
        int eq = token_eq(t->id, id, idl);
        if (t->id[0] && eq)
            hit = t;
    }
    if (hit == NULL || hit->in_use)
        return 0;
    size_t len;
    char *segs = segs_pack(seg, n, &len);
    int same = len == hit->segs_len && memcmp(segs, hit->segs, len) == 0;
    free(segs);
    if (!same)
        return 0;
    if (hit->stream) {
        hit->in_use = 1;
        *stream = 1;
    } else {
        ticket_clear(hit);
    }
    return 1;
}

/* Gives back the stream ticket id (NULL or "": none) that ticket_take
 * handed out: its stream closed, or was not opened after all. A reconnect
 * may use it until TICKET_TTL_MS from now. */
static void ticket_release(reel_web_t *w, char *id) {
    if (id == NULL || id[0] == '\0')
        return;
    for (int i = 0; i < TICKET_MAX; i++) {
        ticket_t *t = &w->tickets[i];
        if (t->in_use && strcmp(t->id, id) == 0) {
            t->in_use = 0;
            t->expires_ms = uv_now(w->loop) + (uint64_t)w->ticket_ttl_ms;
        }
    }
    id[0] = '\0';
}

/* The value of header name in the current head as an owned string, NULL
 * if absent. */
static char *hdr(conn_t *c, const char *name) {
    const reel_h1_header_t *h = reel_h1_find_header(c->head.headers, c->head.nheaders, name);
    return h ? reel_strndup(h->value, h->value_len) : NULL;
}

/* ---- connection teardown and writes ---- */

static void handle_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    reel_web_t *w = c->w;
    w->open_handles--;
    if (--c->handles > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    reel_h1_free(c->parser);
    reel_buf_free(&c->in);
    reel_buf_free(&c->body);
    if (c->stream)
        fclose(c->stream);
    reel__web_sse_free(c->sse);
    ticket_release(w, c->sse_ticket);
    if (c->replay)
        c->replay->c = NULL;
    if (c->live_replay)
        c->live_replay->c = NULL;
    if (c->walk) {
        c->walk->c = NULL;
        atomic_store(&c->walk->cancel, 1); /* nobody waits for it now */
    }
    free(c);
}

static void conn_close(conn_t *c) {
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void stream_next(conn_t *c);

static void write_done(uv_write_t *req, int status) {
    wreq_t *wr = (wreq_t *)req;
    conn_t *c = wr->c;
    free(wr->data[0]);
    free(wr->data[1]);
    free(wr);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->stream) {
        stream_next(c);
        return;
    }
    if (c->writes == 0 && c->close_after) {
        conn_close(c);
        return;
    }
    if (c->writes == 0 && c->sse == NULL)
        conn_process(c); /* input that waited for the stream to end */
}

/* Writes a and b (owned, either may be NULL). */
static void conn_write(conn_t *c, char *a, size_t alen, char *b, size_t blen) {
    if (c->closing) {
        free(a);
        free(b);
        return;
    }
    wreq_t *wr = reel_calloc(1, sizeof *wr);
    wr->c = c;
    wr->data[0] = a;
    wr->data[1] = b;
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (a)
        bufs[n++] = uv_buf_init(a, (unsigned)alen);
    if (b)
        bufs[n++] = uv_buf_init(b, (unsigned)blen);
    c->writes++;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, n, write_done) != 0) {
        c->writes--;
        free(a);
        free(b);
        free(wr);
        conn_close(c);
    }
}

static void stream_next(conn_t *c) {
    char *buf = reel_malloc(STREAM_CHUNK);
    size_t n = fread(buf, 1, STREAM_CHUNK, c->stream);
    if (n == 0) {
        free(buf);
        fclose(c->stream);
        c->stream = NULL;
        if (c->close_after)
            conn_close(c);
        else
            conn_process(c);
        return;
    }
    conn_write(c, buf, n, NULL, 0);
}

static const char *status_text(int s) {
    switch (s) {
    case 200:
        return "OK";
    case 302:
        return "Found";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 422:
        return "Unprocessable Content";
    case 423:
        return "Locked";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

/* Sends rs (taking what it owns). */
static void conn_respond(conn_t *c, reel__web_resp_t *rs, int keep_alive) {
    reel_buf_t h;
    reel_buf_init(&h, 0);
    /* (an event stream ends only with the connection: closing it once its
     * head was written ended a stream asked for with Connection: close, or
     * over HTTP/1.0, before its first event) */
    if (!keep_alive && !rs->sse)
        c->close_after = 1;
    reel_buf_printf(&h, "HTTP/1.1 %d %s\r\n", rs->status, status_text(rs->status));
    reel_buf_printf(&h, "Content-Type: %s\r\n", rs->type ? rs->type : "application/json");
    reel_buf_puts(&h, "Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:; "
                      "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                      "form-action 'self'\r\n"
                      "X-Content-Type-Options: nosniff\r\n"
                      "Referrer-Policy: no-referrer\r\n"
                      "X-Frame-Options: DENY\r\n"
                      "Cross-Origin-Resource-Policy: same-origin\r\n"
                      "Cache-Control: no-store\r\n");
    if (rs->headers)
        reel_buf_puts(&h, rs->headers);
    if (c->head_only) { /* RFC 9110 9.3.2: the head a GET would have, no content */
        long len = 0;
        if (rs->file && fseek(rs->file, 0, SEEK_END) == 0)
            len = ftell(rs->file);
        /* (an event stream has no length: its GET ends with the connection) */
        if (!rs->sse)
            reel_buf_printf(&h, "Content-Length: %ld\r\n",
                            rs->file ? (len < 0 ? 0 : len) : (long)rs->body.len);
        else
            c->close_after = 1;
        reel_buf_puts(&h, keep_alive && !rs->sse ? "\r\n" : "Connection: close\r\n\r\n");
        size_t n = h.len;
        conn_write(c, (char *)buf_take(&h), n, NULL, 0);
    } else if (rs->sse) {
        reel_buf_puts(&h, keep_alive ? "Connection: keep-alive\r\n\r\nretry: 2000\n\n"
                                     : "Connection: close\r\n\r\nretry: 2000\n\n");
        c->sse = rs->sse;
        rs->sse = NULL;
        uv_timer_stop(&c->timer);
        size_t n = h.len;
        conn_write(c, (char *)buf_take(&h), n, NULL, 0);
    } else if (rs->file) {
        fseek(rs->file, 0, SEEK_END);
        long len = ftell(rs->file);
        rewind(rs->file);
        reel_buf_printf(&h, "Content-Length: %ld\r\n%s\r\n", len < 0 ? 0 : len,
                        keep_alive ? "" : "Connection: close\r\n");
        c->stream = rs->file;
        rs->file = NULL;
        size_t n = h.len;
        conn_write(c, (char *)buf_take(&h), n, NULL, 0);
    } else {
        reel_buf_printf(&h, "Content-Length: %zu\r\n%s\r\n", rs->body.len,
                        keep_alive ? "" : "Connection: close\r\n");
        size_t n = h.len, bn = rs->body.len;
        char *b = bn ? (char *)buf_take(&rs->body) : NULL;
        conn_write(c, (char *)buf_take(&h), n, b, bn);
    }
    reel_buf_free(&h);
}

static void resp_free(reel__web_resp_t *rs) {
    reel_buf_free(&rs->body);
    if (rs->file)
        fclose(rs->file);
    free(rs->headers);
    reel__web_sse_free(rs->sse);
    free(rs->replay_session);
    reel_replay_req_free(rs->replay_req);
    free(rs->replay_req);
}

/* ---- replay children ---- */

static void replay_handle_closed(uv_handle_t *h) {
    replay_t *rp = h->data;
    rp->w->open_handles--;
    if (--rp->handles > 0)
        return;
    reel_buf_free(&rp->obuf);
    reel_buf_free(&rp->ebuf);
    free(rp);
}

/* Unlinks rp and closes its handles (it frees itself once they are). */
static void replay_close(replay_t *rp) {
    if (rp->closing)
        return;
    rp->closing = 1;
    if (rp->prev)
        rp->prev->next = rp->next;
    else
        rp->w->replays = rp->next;
    if (rp->next)
        rp->next->prev = rp->prev;
    if (rp->c)
        rp->c->replay = NULL;
    rp->c = NULL;
    if (!rp->exited)
        uv_process_kill(&rp->proc, SIGTERM);
    uv_close((uv_handle_t *)&rp->proc, replay_handle_closed);
    uv_close((uv_handle_t *)&rp->out, replay_handle_closed);
    uv_close((uv_handle_t *)&rp->err, replay_handle_closed);
    uv_close((uv_handle_t *)&rp->timer, replay_handle_closed);
}

/* Answers the request once the child has exited and both pipes ended. */
static void replay_maybe_done(replay_t *rp) {
    if (!rp->exited || rp->pipes_open > 0 || rp->closing)
        return;
    conn_t *c = rp->c;
    if (c) {
        reel__web_resp_t rs;
        memset(&rs, 0, sizeof rs);
        reel_buf_init(&rs.body, 0);
        char why[128] = "";
        int code = (int)rp->status;
        if (rp->timed_out) {
            snprintf(why, sizeof why, "replay timed out after %d s (the child was stopped)",
                     rp->w->replay_timeout_ms / 1000);
            code = -1;
        } else if (rp->term_signal) {
            snprintf(why, sizeof why, "reel replay was killed by signal %d", rp->term_signal);
            code = -1;
        }
        reel__web_replay_answer(&rs, code, why[0] ? why : NULL, &rp->obuf, &rp->ebuf);
        c->replay = NULL;
        rp->c = NULL;
        uv_timer_again(&c->timer);
        conn_respond(c, &rs, rp->keep_alive && !rp->w->stopped);
        resp_free(&rs);
    }
    replay_close(rp);
}

static void replay_exited(uv_process_t *p, int64_t status, int term_signal) {
    replay_t *rp = p->data;
    rp->exited = 1;
    rp->status = status;
    rp->term_signal = term_signal;
    uv_timer_stop(&rp->timer);
    replay_maybe_done(rp);
}

static void replay_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    static char slab[16 * 1024];
    *buf = uv_buf_init(slab, sizeof slab);
}

static void replay_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    replay_t *rp = s->data;
    if (nread < 0) {
        uv_read_stop(s);
        rp->pipes_open--;
        replay_maybe_done(rp);
        return;
    }
    reel_buf_t *b = s == (uv_stream_t *)&rp->out ? &rp->obuf : &rp->ebuf;
    size_t n = (size_t)nread;
    if (b->len + n > REPLAY_OUT_MAX)
        n = REPLAY_OUT_MAX - b->len;
    if (n)
        reel_buf_append(b, buf->base, n);
}

static void replay_timeout(uv_timer_t *t) {
    replay_t *rp = t->data;
    rp->timed_out = 1;
    if (!rp->exited)
        uv_process_kill(&rp->proc, SIGKILL);
}

/* Starts `reel replay --json` for the request rs hands over, answered
 * later by replay_maybe_done. -1 with rs set to the error when the child
 * cannot start. */
static int replay_start(conn_t *c, reel__web_resp_t *rs, int keep_alive) {
    reel_web_t *w = c->w;
    replay_t *rp = reel_calloc(1, sizeof *rp);
    rp->w = w;
    rp->keep_alive = keep_alive;
    reel_buf_init(&rp->obuf, 0);
    reel_buf_init(&rp->ebuf, 0);
    uv_pipe_init(w->loop, &rp->out, 0);
    uv_pipe_init(w->loop, &rp->err, 0);
    uv_timer_init(w->loop, &rp->timer);
    rp->out.data = rp->err.data = rp->timer.data = rp->proc.data = rp;
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)rs->replay_id);
    char *args[] = {"reel", "replay",           "--json", "--home", w->home,
                    "--",   rs->replay_session, idbuf,    NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&rp->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&rp->err}};
    uv_process_options_t po = {.exit_cb = replay_exited,
                               .file = "/proc/self/exe",
                               .args = args,
                               .stdio_count = 3,
                               .stdio = stdio};
    int e = uv_spawn(w->loop, &rp->proc, &po);
    /* every handle is open from here, even after a failed spawn (libuv) */
    rp->handles = 4;
    w->open_handles += 4;
    rp->next = w->replays;
    if (w->replays)
        w->replays->prev = rp;
    w->replays = rp;
    if (e != 0) {
        rp->exited = 1;
        replay_close(rp);
        reel__web_error(rs, 500, "cannot start reel replay: %s", uv_strerror(e));
        return -1;
    }
    rp->pipes_open = 2;
    uv_read_start((uv_stream_t *)&rp->out, replay_alloc, replay_read);
    uv_read_start((uv_stream_t *)&rp->err, replay_alloc, replay_read);
    uv_timer_start(&rp->timer, replay_timeout, (uint64_t)w->replay_timeout_ms, 0);
    rp->c = c;
    c->replay = rp;
    return 0;
}

/* ---- replays into the live session ---- */

/* On a pool thread: sends, then waits until the new flow is indexed (as
 * a child's `reel replay` has when it exits), so that the flow the answer
 * names can be opened at once. */
static void live_work(uv_work_t *req) {
    live_replay_t *j = req->data;
    reel_replay_send(j->req, &j->opts, &j->res);
    if (!atomic_load(&j->cancel))
        reel_recorder_flush(j->opts.rec, NULL); /* a disk error is the daemon's to report */
}

/* On the loop once the send is done, or at once with UV_ECANCELED when
 * reel_web_stop cancelled it before a thread took it (nothing was sent). */
static void live_done(uv_work_t *req, int status) {
    live_replay_t *j = req->data;
    reel_web_t *w = j->w;
    if (j->prev)
        j->prev->next = j->next;
    else
        w->live_replays = j->next;
    if (j->next)
        j->next->prev = j->prev;
    w->nlive_replays--;
    conn_t *c = j->c;
    if (c) {
        c->live_replay = NULL;
        reel__web_resp_t rs;
        memset(&rs, 0, sizeof rs);
        reel_buf_init(&rs.body, 0);
        if (status != 0)
            reel__web_error(&rs, 503, "replay cancelled: the server is stopping");
        else
            reel__web_replay_live_answer(&rs, j->session, (int64_t)j->req->id, j->res.id,
                                         j->res.status, j->res.error, j->res.timed_out);
        if (!c->closing)
            uv_timer_again(&c->timer);
        conn_respond(c, &rs, j->keep_alive && !w->stopped); /* dropped if closing */
        resp_free(&rs);
    }
    reel_replay_result_free(&j->res);
    reel_replay_req_free(j->req);
    free(j->req);
    free(j->session);
    for (int i = 0; i < 5; i++)
        free(j->str[i]);
    free(j);
}

/* Queues the replay rs hands over (rs->replay_req) on the thread pool,
 * answered later by live_done. -1 with rs set to the error when it cannot
 * start (too many running). */
static int live_replay_start(conn_t *c, reel__web_resp_t *rs, int keep_alive) {
    reel_web_t *w = c->w;
    if (w->nlive_replays >= LIVE_REPLAY_MAX) {
        reel__web_error(rs, 503,
                        "%d replays are already running in this process; try again when one "
                        "has finished",
                        w->nlive_replays);
        return -1;
    }
    live_replay_t *j = reel_calloc(1, sizeof *j);
    j->w = w;
    j->keep_alive = keep_alive;
    j->session = rs->replay_session;
    rs->replay_session = NULL;
    j->req = rs->replay_req;
    rs->replay_req = NULL;
    atomic_init(&j->cancel, 0);
    for (int i = 0; i < 5; i++)
        j->str[i] = w->live_str[i] ? reel_strdup(w->live_str[i]) : NULL;
    j->opts = (reel_replay_send_opts_t){.rec = w->live_rec,
                                        .tls = w->live_tls,
                                        .verify = w->live_verify,
                                        .timeout_ms = w->live_timeout_s * 1000,
                                        .total_ms = w->replay_timeout_ms,
                                        .cancel = &j->cancel,
                                        .upstream_proxy = j->str[0],
                                        .upstream_proxyauth = j->str[1],
                                        .upstream_no_proxy = j->str[2],
                                        .upstream_insecure_hosts = j->str[3],
                                        .upstream_client_certs = j->str[4]};
    j->work.data = j;
    int e = uv_queue_work(w->loop, &j->work, live_work, live_done);
    if (e != 0) {
        reel_replay_req_free(j->req);
        free(j->req);
        free(j->session);
        free(j);
        reel__web_error(rs, 500, "cannot start the replay: %s", uv_strerror(e));
        return -1;
    }
    j->next = w->live_replays;
    if (w->live_replays)
        w->live_replays->prev = j;
    w->live_replays = j;
    w->nlive_replays++;
    j->c = c;
    c->live_replay = j;
    return 0;
}

/* ---- long requests, on the walk threads ---- */

static void walk_free(walk_t *j) {
    free(j->method);
    free(j->path);
    free(j->query);
    free(j->body);
    resp_free(&j->rs);
    free(j);
}

static void *walk_main(void *arg) {
    reel_web_t *w = arg;
    /* nice is per thread on Linux: this one yields to the proxy's (where
     * that is refused, it runs at theirs) */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), WALK_NICE);
    pthread_mutex_lock(&w->wmu);
    while (!w->wquit) {
        walk_t *j = w->wq_head;
        if (j == NULL) {
            w->widle++;
            pthread_cond_wait(&w->wcv, &w->wmu);
            w->widle--;
            continue;
        }
        w->wq_head = j->qnext;
        if (w->wq_head == NULL)
            w->wq_tail = NULL;
        pthread_mutex_unlock(&w->wmu);
        if (!atomic_load(&j->cancel)) { /* nobody waits for a cancelled one */
            reel__web_req_t rq = {.method = j->method,
                                  .path = j->path,
                                  .query = j->query,
                                  .body = j->body,
                                  .body_len = j->body_len,
                                  .cancel = &j->cancel};
            reel__web_api(&w->ctx, &rq, &j->rs);
        }
        pthread_mutex_lock(&w->wmu);
        j->qnext = w->wdone;
        w->wdone = j;
        if (!w->wquit) /* else wasync is closed: reel_web_free frees the job */
            uv_async_send(&w->wasync);
    }
    pthread_mutex_unlock(&w->wmu);
    return NULL;
}

/* On the loop: sends the answers the threads have finished. */
static void walk_answered(uv_async_t *a) {
    reel_web_t *w = a->data;
    pthread_mutex_lock(&w->wmu);
    walk_t *done = w->wdone;
    w->wdone = NULL;
    pthread_mutex_unlock(&w->wmu);
    while (done) {
        walk_t *j = done;
        done = j->qnext;
        if (j->prev)
            j->prev->next = j->next;
        else
            w->walks = j->next;
        if (j->next)
            j->next->prev = j->prev;
        conn_t *c = j->c;
        if (c) {
            c->walk = NULL;
            if (!c->closing)
                uv_timer_again(&c->timer);
            conn_respond(c, &j->rs, j->keep_alive && !w->stopped); /* dropped if closing */
        }
        walk_free(j);
    }
}

/* Hands the request to a walk thread, starting one if none is idle (up to
 * WALK_THREADS); it is answered by walk_answered. 0 when there is no
 * thread to take it: the caller answers it on the loop. */
static int walk_start(conn_t *c, const reel__web_req_t *rq) {
    reel_web_t *w = c->w;
    if (!w->have_wasync || w->stopped)
        return 0;
    pthread_mutex_lock(&w->wmu);
    int idle = w->widle;
    pthread_mutex_unlock(&w->wmu);
    if (idle == 0 && w->nwthreads < WALK_THREADS) {
        /* signals stay with the loop's thread (the daemon's handlers) */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&w->wthreads[w->nwthreads], NULL, walk_main, w) == 0) {
            pthread_setname_np(w->wthreads[w->nwthreads], "reel-web");
            w->nwthreads++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (w->nwthreads == 0)
        return 0;
    walk_t *j = reel_calloc(1, sizeof *j);
    j->w = w;
    j->c = c;
    j->keep_alive = c->head.keep_alive && !w->stopped;
    j->method = reel_strdup(rq->method);
    j->path = reel_strdup(rq->path);
    j->query = reel_strdup(rq->query);
    if (rq->body_len) {
        j->body = reel_malloc(rq->body_len);
        memcpy(j->body, rq->body, rq->body_len);
        j->body_len = rq->body_len;
    }
    atomic_init(&j->cancel, 0);
    reel_buf_init(&j->rs.body, 0);
    j->rs.status = 200;
    j->next = w->walks;
    if (w->walks)
        w->walks->prev = j;
    w->walks = j;
    c->walk = j;
    pthread_mutex_lock(&w->wmu);
    if (w->wq_tail)
        w->wq_tail->qnext = j;
    else
        w->wq_head = j;
    w->wq_tail = j;
    pthread_cond_signal(&w->wcv);
    pthread_mutex_unlock(&w->wmu);
    return 1;
}

/* ---- requests ---- */

static const reel_web_asset_t *asset_find(const char *path) {
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (const reel_web_asset_t *a = reel_web_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}

static int host_ok(reel_web_t *w, const char *host) {
    if (host == NULL)
        return 0;
    for (int i = 0; i < 4; i++)
        if (w->hosts[i] && strcasecmp(w->hosts[i], host) == 0)
            return 1;
    return 0;
}

/* Splits an /api/ path into its segments, percent-decoded as api.c
 * decodes them (so "%63onfig" is "config" here too). Returns how many (the
 * segments owned by the caller), or -1 when there are more than max or one
 * is empty or decodes to a NUL (api.c answers 404 then). */
static int api_segments(const char *path, char **seg, int max) {
    int n = 0;
    const char *p = path + 5; /* after "/api/" */
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char *s = n < max ? reel__web_unescape(p, len, 0) : NULL;
        if (s == NULL || s[0] == '\0') {
            free(s);
            while (n > 0)
                free(seg[--n]);
            return -1;
        }
        seg[n++] = s;
        p = slash ? slash + 1 : p + len;
    }
    return n;
}

/* 1 for the requests a browser makes without the page's script adding
 * headers, which therefore carry a ticket as ?ticket= (POST /api/tickets):
 * the event stream (EventSource), a body's bytes (an <img> of an image, a
 * download) and an export (a download). Only GETs, so a ticket in such a
 * URL changes nothing by itself. */
static int takes_ticket(const char *method, char *const *seg, int n) {
    if (strcmp(method, "GET") != 0 || n < 3 || strcmp(seg[0], "sessions") != 0)
        return 0;
    if (n == 3)
        return strcmp(seg[2], "events") == 0 || strcmp(seg[2], "export") == 0;
    return n == 7 && strcmp(seg[2], "flows") == 0 && strcmp(seg[4], "body") == 0 &&
           strcmp(seg[6], "raw") == 0;
}

/* 1 if the request carries our token in `Authorization: Bearer`. A cookie
 * does not count (OLD_COOKIE). */
static int bearer_ok(reel_web_t *w, conn_t *c) {
    int ok = 0;
    char *auth = hdr(c, "authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        ok = token_eq(w->token, auth + 7, strlen(auth + 7));
    free(auth);
    return ok;
}

/* 1 if the request carries a cookie named OLD_COOKIE. */
static int has_old_cookie(conn_t *c) {
    size_t cl = strlen(OLD_COOKIE);
    for (size_t i = 0; i < c->head.nheaders; i++) {
        const reel_h1_header_t *f = &c->head.headers[i];
        if (f->name_len != 6 || strncasecmp(f->name, "cookie", 6) != 0)
            continue;
        const char *p = f->value, *end = f->value + f->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *e = semi ? semi : end;
            if ((size_t)(e - p) > cl && strncmp(p, OLD_COOKIE, cl) == 0 && p[cl] == '=')
                return 1;
            p = e;
        }
    }
    return 0;
}

static int is_write(const char *m) {
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
}

/* POST /api/tickets {"path": P}: a ticket for a GET of P (no query), one
 * of the paths takes_ticket names, answered {"ticket", "expires_in"}. */
static void tickets_post(reel_web_t *w, conn_t *c, const char *method, reel__web_resp_t *rs) {
    char *seg[8];
    int n = -1;
    json_t *j = NULL;
    if (strcmp(method, "POST") != 0) {
        reel__web_not_allowed(rs, "POST",
                              "method not allowed: POST {\"path\": ...} makes a ticket");
        goto out;
    }
    j = json_loadb((const char *)c->body.data, c->body.len, 0, NULL);
    const char *path = json_string_value(json_object_get(j, "path"));
    if (path == NULL) {
        reel__web_error(rs, 400, "body must be {\"path\": \"/api/sessions/S/...\"}");
        goto out;
    }
    if (strncmp(path, "/api/", 5) != 0 || strchr(path, '?') ||
        (n = api_segments(path, seg, 8)) < 0 || !takes_ticket("GET", seg, n)) {
        reel__web_error(rs, 400,
                        "a ticket is only for the event stream (/api/sessions/S/events), a "
                        "body's bytes (/api/sessions/S/flows/ID/body/request|response/raw) "
                        "and an export (/api/sessions/S/export), given without a query: "
                        "not '%.200s'",
                        path);
        goto out;
    }
    char id[33];
    int rc = ticket_mint(w, seg, n, n == 3 && strcmp(seg[2], "events") == 0, id);
    if (rc == -2) {
        reel__web_error(rs, 503, "%d event streams hold a ticket each: no room for another",
                        TICKET_MAX);
    } else if (rc < 0) {
        reel__web_error(rs, 500, "no random bytes for a ticket");
    } else {
        json_t *a = json_pack("{s:s,s:i}", "ticket", id, "expires_in", w->ticket_ttl_ms / 1000);
        char *txt = json_dumps(a, JSON_COMPACT);
        rs->status = 200;
        reel_buf_puts(&rs->body, txt);
        free(txt);
        json_decref(a);
    }
out:
    for (int i = 0; i < n; i++)
        free(seg[i]);
    json_decref(j);
}

/* Answers the request into rs; 1 instead when a walk thread took it
 * (rs untouched: walk_answered answers it). */
static int handle(conn_t *c, reel__web_resp_t *rs) {
    reel_web_t *w = c->w;
    int handed = 0;
    char *method = reel_strndup(c->head.method, c->head.method_len);
    char *target = reel_strndup(c->head.target, c->head.target_len);
    char *host = hdr(c, "host");
    char *origin = hdr(c, "origin");
    char *site = hdr(c, "sec-fetch-site");
    char *q = strchr(target, '?');
    const char *query = "";
    if (q) {
        *q = '\0';
        query = q + 1;
    }
    if (c->head.target_form != REEL_H1_TARGET_ORIGIN) {
        reel__web_error(rs, 400, "request target must be a path");
        goto out;
    }
    if (!host_ok(w, host)) {
        reel__web_error(rs, 403, "Host '%s' is not this server (DNS rebinding?)", host ? host : "");
        goto out;
    }
    if (origin) {
        char *own = reel_asprintf("http://%s", host);
        int same = strcasecmp(own, origin) == 0;
        free(own);
        if (!same) {
            reel__web_error(rs, 403, "cross-origin request from '%s' refused", origin);
            goto out;
        }
    }
    if (site && strcmp(site, "cross-site") == 0) {
        reel__web_error(rs, 403, "cross-site request refused");
        goto out;
    }
    size_t nul_len;
    const char *nul = reel__web_query_nul(query, &nul_len);
    if (nul) {
        /* reel__web_param would take it for absent: "filter=a%00" is no filter */
        reel__web_error(rs, 400, "parameter '%.*s' holds a NUL byte",
                        (int)(nul_len > 64 ? 64 : nul_len), nul);
        goto out;
    }
    if (strncmp(target, "/api/", 5) == 0) {
        char *seg[8];
        int nseg = api_segments(target, seg, 8);
        int by_ticket = nseg > 0 && takes_ticket(method, seg, nseg);
        char *tok = reel__web_param(query, "token");
        char *ticket = reel__web_param(query, "ticket");
        int ok = bearer_ok(w, c), stream = 0;
        if (tok) {
            /* a URL is kept in history, the downloads list, logs and
             * captures: the token that opens everything is never in one */
            reel__web_error(rs, 400,
                            "the token is not taken from the query: send "
                            "Authorization: Bearer TOKEN (the event stream, raw bodies and "
                            "exports take ?ticket= from POST /api/tickets)");
        } else if (ticket && !by_ticket) {
            reel__web_error(rs, 400,
                            "a ticket is only taken by the event stream, raw bodies and "
                            "exports: send Authorization: Bearer TOKEN");
        } else if (nseg == 1 && strcmp(seg[0], "tickets") == 0) {
            /* not refused by --read-only: a ticket only reads */
            if (ok)
                tickets_post(w, c, method, rs);
            else
                reel__web_error(rs, 401,
                                "missing or wrong token: open the URL reel printed, or "
                                "send Authorization: Bearer TOKEN");
        } else if (!ok && !(ticket && ticket_take(w, ticket, seg, nseg, &stream))) {
            reel__web_error(rs, 401,
                            ticket ? "ticket used up, expired or for another path: ask "
                                     "POST /api/tickets for a new one"
                                   : "missing or wrong token: open the URL reel printed, or "
                                     "send Authorization: Bearer TOKEN");
        } else if (w->ctx.read_only && is_write(method)) {
            reel__web_error(rs, 403, "read-only: this server was started with --read-only");
        } else {
            char *leid = hdr(c, "last-event-id");
            reel__web_req_t rq = {.method = method,
                                  .path = target,
                                  .query = query,
                                  .body = c->body.data,
                                  .body_len = c->body.len,
                                  .last_event_id = leid};
            handed = reel__web_api_long(&rq) && walk_start(c, &rq);
            if (!handed)
                reel__web_api(&w->ctx, &rq, rs);
            free(leid);
        }
        if (stream) { /* the stream holds its ticket while it is open */
            if (!handed && rs->sse)
                memcpy(c->sse_ticket, ticket, sizeof c->sse_ticket);
            else
                ticket_release(w, ticket);
        }
        free(ticket);
        free(tok);
        for (int i = 0; i < nseg; i++)
            free(seg[i]);
        goto out;
    }
    /* The pages (the front end's own files, the same for everyone) need no
     * token: app.js takes it from the address (?token=, the URL reel
     * printed) into the tab's sessionStorage and sends it with each API
     * request, so a reload, which has no ?token= any more, works. */
    if (has_old_cookie(c))
        rs->headers = reel_strdup("Set-Cookie: " OLD_COOKIE
                                  "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict\r\n");
    char *tok = strcmp(target, "/") == 0 ? reel__web_param(query, "token") : NULL;
    int bad_tok = tok && !token_eq(w->token, tok, strlen(tok));
    free(tok);
    if (bad_tok) {
        rs->status = 401;
        rs->type = "text/html; charset=utf-8";
        reel_buf_puts(&rs->body, "<!doctype html><title>reel</title><p>Wrong token: open the URL "
                                 "that <code>reel web</code> printed.\n");
        goto out;
    }
    const reel_web_asset_t *a = asset_find(target);
    if (a == NULL) {
        reel__web_error(rs, 404, "no such page");
        goto out;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        reel__web_not_allowed(rs, "GET, HEAD", "method not allowed");
        goto out;
    }
    rs->status = 200;
    rs->type = a->type;
    reel_buf_append(&rs->body, a->data, a->len);
out:
    free(method);
    free(target);
    free(host);
    free(origin);
    free(site);
    return handed;
}

static void request_end(conn_t *c) {
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    rs.status = 200;
    int keep = c->head.keep_alive && !c->w->stopped;
    c->head_only = c->head.method_len == 4 && memcmp(c->head.method, "HEAD", 4) == 0;
    int waits = handle(c, &rs)      ? 1
                : rs.replay_req     ? live_replay_start(c, &rs, keep) == 0
                : rs.replay_session ? replay_start(c, &rs, keep) == 0
                                    : 0;
    if (!waits)
        conn_respond(c, &rs, keep);
    resp_free(&rs);
    reel_buf_reset(&c->body);
    c->have_head = 0;
}

/* A body past REEL_WEB_BODY_MAX: answered at once, without reading it,
 * and the connection closed. */
static void too_big(conn_t *c) {
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel__web_error(&rs, 413, "request body larger than %zu bytes", REEL_WEB_BODY_MAX);
    conn_respond(c, &rs, 0);
    resp_free(&rs);
}

/* Parses what was read while the connection is free to answer. */
static void conn_process(conn_t *c) {
    while (!c->closing && !c->close_after && c->stream == NULL && c->sse == NULL &&
           c->replay == NULL && c->live_replay == NULL && c->walk == NULL) {
        size_t consumed = 0;
        reel_h1_event_t ev;
        reel_rc rc = reel_h1_feed(c->parser, c->in.data, c->in.len, &consumed, &ev);
        if (rc == REEL_NEED_MORE) {
            reel_buf_consume(&c->in, consumed);
            return;
        }
        if (rc != REEL_OK) {
            reel__web_resp_t rs;
            memset(&rs, 0, sizeof rs);
            reel__web_error(&rs, ev.error_status ? ev.error_status : 400, "%s",
                            ev.error_reason ? ev.error_reason : "bad request");
            conn_respond(c, &rs, 0);
            resp_free(&rs);
            return;
        }
        switch (ev.type) {
        case REEL_H1_EV_HEAD:
            c->head = ev.head;
            c->have_head = 1;
            if (ev.head.upgrade) {
                /* Refused here, at the head: the parser reports UPGRADE only
                 * after END, by which time the request had been answered
                 * (and a write done) and a second answer followed */
                reel__web_resp_t rs;
                memset(&rs, 0, sizeof rs);
                reel__web_error(&rs, 400, "no upgrades or CONNECT here");
                conn_respond(c, &rs, 0);
                resp_free(&rs);
                return;
            }
            if (ev.head.content_length > (int64_t)REEL_WEB_BODY_MAX) {
                too_big(c);
                return;
            }
            break;
        case REEL_H1_EV_BODY:
            if (c->body.len + ev.len > REEL_WEB_BODY_MAX) {
                too_big(c);
                return;
            }
            reel_buf_append(&c->body, ev.data, ev.len);
            break;
        case REEL_H1_EV_END:
            uv_timer_again(&c->timer);
            request_end(c);
            break;
        case REEL_H1_EV_UPGRADE:
            /* not reached: a head asking to leave HTTP is refused above */
            c->close_after = 1;
            return;
        default:
            break;
        }
        reel_buf_consume(&c->in, consumed); /* after: BODY data points into it */
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    static char slab[64 * 1024];
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (c->sse) /* nothing more is read from an event stream */
        return;
    if (reel_buf_append(&c->in, buf->base, (size_t)nread) != REEL_OK) {
        conn_close(c);
        return;
    }
    conn_process(c);
}

static void on_timeout(uv_timer_t *t) {
    conn_t *c = t->data;
    if (c->sse || c->stream || c->writes || c->replay || c->live_replay || c->walk)
        return;
    conn_close(c);
}

static void on_connection(uv_stream_t *server, int status) {
    reel_web_t *w = server->data;
    if (status < 0 || w->stopped)
        return;
    conn_t *c = reel_calloc(1, sizeof *c);
    c->w = w;
    uv_tcp_init(w->loop, &c->tcp);
    uv_timer_init(w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    w->open_handles += 2;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    reel_h1_limits_t lim = {.max_head_size = HEAD_MAX, .max_headers = 100};
    c->parser = reel_h1_new(REEL_H1_REQUEST, &lim);
    reel_buf_init(&c->in, HEAD_MAX + REEL_WEB_BODY_MAX + 64 * 1024);
    reel_buf_init(&c->body, 0);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, IDLE_TIMEOUT_MS, IDLE_TIMEOUT_MS);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Every TICK_MS: new and changed flows to each event stream. */
static void on_tick(uv_timer_t *t) {
    reel_web_t *w = t->data;
    for (conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->sse == NULL || c->closing || c->writes > 4)
            continue;
        reel_buf_t out;
        reel_buf_init(&out, 0);
        if (reel__web_sse_tick(&w->ctx, c->sse, &out) < 0) {
            reel_buf_puts(&out, "event: gone\ndata: {}\n\n");
            c->close_after = 1;
        }
        if (out.len == 0 && ++c->sse_idle * TICK_MS >= 15000)
            reel_buf_puts(&out, ": keep-alive\n\n");
        if (out.len) {
            c->sse_idle = 0;
            size_t n = out.len;
            conn_write(c, (char *)buf_take(&out), n, NULL, 0);
        }
        reel_buf_free(&out);
    }
}

static void w_closed(uv_handle_t *h) {
    reel_web_t *w = h->data;
    w->open_handles--;
}

static int is_loopback(const char *host) {
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

/* Milliseconds from the environment's name, in whole seconds from 1 to
 * max (for tests); def when it is unset or not such a number. */
static int env_seconds(const char *name, long max, int def) {
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return def;
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    return errno == 0 && *end == '\0' && n > 0 && n <= max ? (int)n * 1000 : def;
}

reel_rc reel_web_start(uv_loop_t *loop, const reel_web_opts_t *o, reel_web_t **out,
                       reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *out = NULL;
    const char *host = o->host && o->host[0] ? o->host : "127.0.0.1";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, o->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, o->port, (struct sockaddr_in6 *)&ss) != 0)
        return reel_err_set(err, REEL_INVALID, "web: '%s' is not an IP address", host);
    if (!is_loopback(host) && !o->explicit_listen)
        return reel_err_set(err, REEL_INVALID, "web: %s is beyond loopback; pass --listen", host);
    reel_web_t *w = reel_calloc(1, sizeof *w);
    w->loop = loop;
    pthread_mutex_init(&w->wmu, NULL);
    pthread_cond_init(&w->wcv, NULL);
    w->home = reel_strdup(o->home);
    if (o->nsessions) {
        w->sessions = reel_calloc(o->nsessions, sizeof *w->sessions);
        for (size_t i = 0; i < o->nsessions; i++)
            w->sessions[i] = reel_strdup(o->sessions[i]);
        w->nsessions = o->nsessions;
    }
    w->live = o->live ? reel_strdup(o->live) : NULL;
    if (o->live && o->live_recorder) {
        const char *ca = o->live_trusted_ca;
        reel_err_t e;
        reel_err_clear(&e);
        if (reel_tls_ctx_new_client(ca && ca[0] ? ca : NULL, false, &w->live_tls, &e) != REEL_OK) {
            rc = reel_err_set(err, e.code, "web: upstream_trusted_ca: %s", reel_err_str(&e));
            goto fail;
        }
        w->live_rec = o->live_recorder;
        reel_web_live_upstream(w, &o->live_upstream);
    }
    w->replay_timeout_ms = env_seconds("REEL_WEB_REPLAY_TIMEOUT", 86400, REPLAY_TIMEOUT_MS);
    w->ticket_ttl_ms = env_seconds("REEL_WEB_TICKET_TTL", 3600, TICKET_TTL_MS);
    w->ctx = (reel__web_ctx_t){.home = w->home,
                               .read_only = o->read_only,
                               .sessions = w->sessions,
                               .nsessions = w->nsessions,
                               .live = w->live,
                               .live_replay = w->live_rec != NULL};
    if (o->token) {
        snprintf(w->token, sizeof w->token, "%s", o->token);
    } else {
        unsigned char r[16];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
            rc = reel_err_set(err, REEL_IO, "web: no random bytes for the token");
            goto fail;
        }
        for (int i = 0; i < 16; i++)
            snprintf(w->token + 2 * i, 3, "%02x", r[i]);
    }
    uv_tcp_init(loop, &w->listener);
    w->listener.data = w;
    w->open_handles++;
    int e = uv_tcp_bind(&w->listener, (const struct sockaddr *)&ss, 0);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&w->listener, 64, on_connection);
    if (e != 0) {
        rc = reel_err_set(err, REEL_IO, "web: cannot listen on %s:%d: %s", host, o->port,
                          uv_strerror(e));
        uv_close((uv_handle_t *)&w->listener, w_closed);
        w->stopped = 1;
        *out = w; /* the caller runs the loop and frees */
        return rc;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&w->listener, (struct sockaddr *)&bound, &blen);
    w->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    int v6 = strchr(host, ':') != NULL;
    w->hosts[0] = reel_asprintf("127.0.0.1:%d", w->port);
    w->hosts[1] = reel_asprintf("localhost:%d", w->port);
    w->hosts[2] = reel_asprintf("[::1]:%d", w->port);
    w->hosts[3] = reel_asprintf(v6 ? "[%s]:%d" : "%s:%d", host, w->port);
    w->url = reel_asprintf(v6 ? "http://[%s]:%d/?token=%s" : "http://%s:%d/?token=%s", host,
                           w->port, w->token);
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    w->open_handles++;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    if (uv_async_init(loop, &w->wasync, walk_answered) == 0) { /* else long requests wait */
        w->wasync.data = w;
        w->have_wasync = 1;
        w->open_handles++;
    }
    if (!is_loopback(host))
        fprintf(stderr,
                "reel: WARNING: web UI listening on %s, beyond loopback: anyone who can reach "
                "it and learns the token can read (%s) the sessions\n",
                host, o->read_only ? "not change" : "and change");
    *out = w;
    return REEL_OK;
fail:
    reel_web_free(w);
    return rc;
}

const char *reel_web_url(const reel_web_t *w) {
    return w->url;
}

void reel_web_live_upstream(reel_web_t *w, const reel_web_upstream_t *u) {
    if (w == NULL)
        return;
    w->live_verify = u->verify;
    w->live_timeout_s = u->timeout_s > 0 ? u->timeout_s : 60;
    const char *from[5] = {u->proxy, u->proxyauth, u->no_proxy, u->insecure_hosts, u->client_certs};
    for (int i = 0; i < 5; i++) {
        free(w->live_str[i]);
        w->live_str[i] = from[i] && from[i][0] ? reel_strdup(from[i]) : NULL;
    }
}

void reel_web_stop(reel_web_t *w) {
    if (w == NULL || w->stopped)
        return;
    w->stopped = 1;
    uv_close((uv_handle_t *)&w->listener, w_closed);
    uv_close((uv_handle_t *)&w->tick, w_closed);
    for (conn_t *c = w->conns; c; c = c->next)
        conn_close(c);
    while (w->replays)
        replay_close(w->replays);
    /* A replay on the thread pool cannot be taken back once it runs: it
     * is told to stop, and the loop's next run waits for its after-work
     * callback (which finds its connection gone). One not yet taken by a
     * thread is cancelled outright. */
    for (live_replay_t *j = w->live_replays; j; j = j->next) {
        atomic_store(&j->cancel, 1);
        uv_cancel((uv_req_t *)&j->work);
    }
    /* Walk threads finish the request they answer (an export stops at its
     * next flow; a count runs to its end) and exit; reel_web_free joins
     * them and frees what they leave. */
    for (walk_t *j = w->walks; j; j = j->next)
        atomic_store(&j->cancel, 1);
    pthread_mutex_lock(&w->wmu);
    w->wquit = 1;
    pthread_cond_broadcast(&w->wcv);
    pthread_mutex_unlock(&w->wmu);
    if (w->have_wasync)
        uv_close((uv_handle_t *)&w->wasync, w_closed);
}

void reel_web_free(reel_web_t *w) {
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->wmu);
    w->wquit = 1;
    pthread_cond_broadcast(&w->wcv);
    pthread_mutex_unlock(&w->wmu);
    for (int i = 0; i < w->nwthreads; i++)
        pthread_join(w->wthreads[i], NULL);
    while (w->walks) { /* queued, or answered after the stop */
        walk_t *j = w->walks;
        w->walks = j->next;
        walk_free(j);
    }
    pthread_mutex_destroy(&w->wmu);
    pthread_cond_destroy(&w->wcv);
    free(w->home);
    for (size_t i = 0; i < w->nsessions; i++)
        free(w->sessions[i]);
    free(w->sessions);
    free(w->live);
    reel_tls_ctx_free(w->live_tls);
    for (int i = 0; i < 5; i++)
        free(w->live_str[i]);
    free(w->url);
    for (int i = 0; i < 4; i++)
        free(w->hosts[i]);
    for (int i = 0; i < TICKET_MAX; i++)
        ticket_clear(&w->tickets[i]);
    free(w);
}
