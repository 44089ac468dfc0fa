/* mitmproxy flow file import: see mitm.h for the mapping.
 *
 * reel_mitm_parse cuts the file into top-level tnetstrings, parses each
 * into a tree, checks it and extracts what recording needs into an mflow_t
 * (strings copied, bodies and headers pointing into the file's buffer),
 * then frees the tree. Nothing is recorded until every flow has passed, so
 * a damaged file imports nothing. */
#include "session/mitm.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "session/spool.h"
#include "session/tnetstring.h"
#include "session/userdata.h"

uint64_t reel__mitm_max_file_size = REEL_MITM_MAX_FILE_SIZE;

#define ADDR_MAX 300
#define CLOSE_REASON_MAX 123 /* a close frame's payload is at most 125 bytes */

typedef struct {
    const uint8_t *p;
    size_t n;
} span_t;

typedef struct {
    int from_client;
    uint32_t opcode;
    span_t data;
} wsmsg_t;

typedef struct {
    int http; /* 0: a flow of another type (udp, dns), skipped */
    int tcp;  /* a TCP flow: a tunnel with messages */
    int64_t created_us;
    char client_addr[ADDR_MAX], server_addr[ADDR_MAX];
    int has_sconn;
    char *sni, *alpn, *tls_version, *cipher;
    /* client_conn's TLS with mitmproxy (has_ctls: it has a tls_version) */
    int has_ctls;
    char *c_sni, *c_alpn, *c_tls_version, *c_cipher;

    char *method, *scheme, *host, *target, *req_version;
    uint32_t port;
    reel_header_t *req_h;
    size_t n_req_h;
    span_t req_body;
    int64_t req_start_us, req_end_us;

    int has_resp;
    uint32_t status;
    char *reason, *resp_version;
    reel_header_t *resp_h;
    size_t n_resp_h;
    span_t resp_body;
    int64_t resp_start_us, resp_end_us;

    char *error;
    int64_t error_us;

    wsmsg_t *ws;
    size_t n_ws;
    int ws_closed, closed_by_client;
    uint32_t close_code;
    span_t close_reason;
    int64_t ws_end_us;

    span_t comment;
    int marked;
    uint64_t id; /* reel flow id once recorded */
} mflow_t;

struct reel_mitm {
    uint8_t *buf;
    size_t len;
    char *name;
    mflow_t *flows;
    size_t n;
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    const volatile sig_atomic_t *stop; /* borrowed; NULL: never */
};

void reel_mitm_set_stop(reel_mitm_t *m, const volatile sig_atomic_t *stop) {
    m->stop = stop;
}

void reel_mitm_set_progress(reel_mitm_t *m, void (*fn)(void *ctx, uint64_t done, uint64_t total),
                            void *ctx) {
    m->progress = fn;
    m->progress_ctx = ctx;
}

/* ---- checking ----------------------------------------------------------- */

typedef struct {
    const char *name;
    size_t idx; /* 1-based flow number */
    size_t off; /* the flow's first byte */
    reel_err_t *err;
} vctx_t;

/* "NAME: flow IDX (byte OFF): FIELD: MESSAGE" */
static reel_rc __attribute__((format(printf, 4, 5)))
fail(const vctx_t *v, reel_rc rc, const char *field, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (field)
        return reel_err_set(v->err, rc, "%s: flow %zu (byte %zu): %s: %s", v->name, v->idx, v->off,
                            field, msg);
    return reel_err_set(v->err, rc, "%s: flow %zu (byte %zu): %s", v->name, v->idx, v->off, msg);
}

static const char *tname(const reel_tns_t *t) {
    return reel_tns_type_name(t->type);
}

/* A required (or, with opt, optional: absent or null gives an empty span
 * and *present 0) bytes/string member. */
static reel_rc get_text(const vctx_t *v, const reel_tns_t *d, const char *key, const char *field,
                        int opt, span_t *out, int *present) {
    const reel_tns_t *t = reel_tns_get(d, key);
    out->p = NULL;
    out->n = 0;
    if (present)
        *present = 0;
    if (t == NULL || t->type == REEL_TNS_NULL) {
        if (opt)
            return REEL_OK;
        return fail(v, REEL_INVALID, field, t ? "null, not bytes or a string" : "missing");
    }
    if (!reel_tns_is_text(t))
        return fail(v, REEL_INVALID, field, "not bytes or a string but %s", tname(t));
    out->p = t->data;
    out->n = t->len;
    if (present)
        *present = 1;
    return REEL_OK;
}

/* A text member as an owned C string (NULL when optional and absent);
 * refuses NUL bytes. */
static reel_rc get_cstr(const vctx_t *v, const reel_tns_t *d, const char *key, const char *field,
                        int opt, char **out) {
    span_t s;
    int present = 0;
    *out = NULL;
    reel_rc rc = get_text(v, d, key, field, opt, &s, &present);
    if (rc != REEL_OK || !present)
        return rc;
    if (memchr(s.p, '\0', s.n) != NULL)
        return fail(v, REEL_INVALID, field, "contains a NUL byte");
    *out = reel_strndup((const char *)s.p, s.n);
    return REEL_OK;
}

/* d[key] as a C string when it is text without a NUL, else NULL. */
static char *opt_text(const reel_tns_t *d, const char *key) {
    const reel_tns_t *t = reel_tns_get(d, key);
    if (t == NULL || !reel_tns_is_text(t) || memchr(t->data, '\0', t->len) != NULL)
        return NULL;
    return reel_strndup((const char *)t->data, t->len);
}

static reel_rc get_int(const vctx_t *v, const reel_tns_t *d, const char *key, const char *field,
                       int64_t lo, int64_t hi, int64_t *out) {
    const reel_tns_t *t = reel_tns_get(d, key);
    if (t == NULL)
        return fail(v, REEL_INVALID, field, "missing");
    if (t->type != REEL_TNS_INT)
        return fail(v, REEL_INVALID, field, "not an integer but %s", tname(t));
    if (t->i < lo || t->i > hi)
        return fail(v, REEL_INVALID, field, "%lld is out of range (%lld to %lld)", (long long)t->i,
                    (long long)lo, (long long)hi);
    *out = t->i;
    return REEL_OK;
}

/* Seconds since the epoch (float or int) as microseconds; 0 when absent
 * or null and opt. */
static reel_rc ts_us(const vctx_t *v, const reel_tns_t *t, const char *field, int opt,
                     int64_t *out) {
    *out = 0;
    if (t == NULL || t->type == REEL_TNS_NULL) {
        if (opt)
            return REEL_OK;
        return fail(v, REEL_INVALID, field, t ? "null, not a timestamp" : "missing");
    }
    double f;
    if (t->type == REEL_TNS_FLOAT)
        f = t->f;
    else if (t->type == REEL_TNS_INT)
        f = (double)t->i;
    else
        return fail(v, REEL_INVALID, field, "not a timestamp but %s", tname(t));
    if (!isfinite(f) || f < 0 || f > 1e11)
        return fail(v, REEL_INVALID, field, "timestamp %g out of range", f);
    double us = f * 1e6;
    int64_t r = (int64_t)us; /* f >= 0: rounds to the nearest, ties to even */
    double frac = us - (double)r;
    if (frac > 0.5 || (frac == 0.5 && (r & 1)))
        r++;
    *out = r;
    return REEL_OK;
}

static reel_rc get_ts(const vctx_t *v, const reel_tns_t *d, const char *key, const char *field,
                      int opt, int64_t *out) {
    return ts_us(v, reel_tns_get(d, key), field, opt, out);
}

static reel_rc get_dict(const vctx_t *v, const reel_tns_t *d, const char *key, const char *field,
                        int opt, const reel_tns_t **out) {
    const reel_tns_t *t = reel_tns_get(d, key);
    *out = NULL;
    if (t == NULL || t->type == REEL_TNS_NULL) {
        if (opt)
            return REEL_OK;
        return fail(v, REEL_INVALID, field, t ? "null, not a dict" : "missing");
    }
    if (t->type != REEL_TNS_DICT)
        return fail(v, REEL_INVALID, field, "not a dict but %s", tname(t));
    *out = t;
    return REEL_OK;
}

/* headers: a list of [name, value] byte pairs. */
static reel_rc get_headers(const vctx_t *v, const reel_tns_t *d, const char *field,
                           reel_header_t **out, size_t *n) {
    char f[64];
    snprintf(f, sizeof f, "%s.headers", field);
    const reel_tns_t *t = reel_tns_get(d, "headers");
    *out = NULL;
    *n = 0;
    if (t == NULL)
        return fail(v, REEL_INVALID, f, "missing");
    if (t->type != REEL_TNS_LIST)
        return fail(v, REEL_INVALID, f, "not a list but %s", tname(t));
    reel_header_t *hs = reel_calloc(t->n ? t->n : 1, sizeof *hs);
    for (size_t i = 0; i < t->n; i++) {
        const reel_tns_t *h = &t->item[i];
        if (h->type != REEL_TNS_LIST || h->n != 2 || !reel_tns_is_text(&h->item[0]) ||
            !reel_tns_is_text(&h->item[1])) {
            free(hs);
            snprintf(f, sizeof f, "%s.headers[%zu]", field, i);
            return fail(v, REEL_INVALID, f, "not a [name, value] pair of byte strings");
        }
        hs[i].name = (const char *)h->item[0].data;
        hs[i].name_len = h->item[0].len;
        hs[i].value = (const char *)h->item[1].data;
        hs[i].value_len = h->item[1].len;
    }
    *out = hs;
    *n = t->n;
    return REEL_OK;
}

/* content: bytes, or null (mitmproxy streamed the body without keeping it). */
static reel_rc get_body(const vctx_t *v, const reel_tns_t *d, const char *field, span_t *out) {
    char f[64];
    snprintf(f, sizeof f, "%s.content", field);
    const reel_tns_t *t = reel_tns_get(d, "content");
    out->p = NULL;
    out->n = 0;
    if (t == NULL || t->type == REEL_TNS_NULL)
        return REEL_OK;
    if (!reel_tns_is_text(t))
        return fail(v, REEL_INVALID, f, "not bytes but %s", tname(t));
    out->p = t->data;
    out->n = t->len;
    return REEL_OK;
}

/* An address: null, or [host, port, ...] -> "host:port" ("[v6]:port"). */
static reel_rc get_addr(const vctx_t *v, const reel_tns_t *t, const char *field,
                        char out[ADDR_MAX]) {
    out[0] = '\0';
    if (t == NULL || t->type == REEL_TNS_NULL)
        return REEL_OK;
    if (t->type != REEL_TNS_LIST || t->n < 2 || !reel_tns_is_text(&t->item[0]) ||
        t->item[1].type != REEL_TNS_INT || t->item[1].i < 0 || t->item[1].i > 65535 ||
        t->item[0].len > ADDR_MAX - 16 || memchr(t->item[0].data, '\0', t->item[0].len))
        return fail(v, REEL_INVALID, field, "not a [host, port] address");
    const char *h = (const char *)t->item[0].data;
    int n = (int)t->item[0].len;
    int v6 = memchr(h, ':', (size_t)n) != NULL;
    snprintf(out, ADDR_MAX, "%s%.*s%s:%lld", v6 ? "[" : "", n, h, v6 ? "]" : "",
             (long long)t->item[1].i);
    return REEL_OK;
}

static void mflow_free(mflow_t *f) {
    free(f->sni);
    free(f->alpn);
    free(f->tls_version);
    free(f->cipher);
    free(f->c_sni);
    free(f->c_alpn);
    free(f->c_tls_version);
    free(f->c_cipher);
    free(f->method);
    free(f->scheme);
    free(f->host);
    free(f->target);
    free(f->req_version);
    free(f->req_h);
    free(f->reason);
    free(f->resp_version);
    free(f->resp_h);
    free(f->error);
    free(f->ws);
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((rc = (x)) != REEL_OK)                                                                 \
            goto out;                                                                              \
    } while (0)

static reel_rc conv_conns(const vctx_t *v, const reel_tns_t *flow, mflow_t *f) {
    reel_rc rc = REEL_OK;
    const reel_tns_t *cc = NULL, *sc = NULL, *a;
    TRY(get_dict(v, flow, "client_conn", "client_conn", 1, &cc));
    TRY(get_dict(v, flow, "server_conn", "server_conn", 1, &sc));
    if (cc) {
        /* 19 renamed address -> peername */
        a = reel_tns_get(cc, "peername");
        TRY(get_addr(v, a ? a : reel_tns_get(cc, "address"), "client_conn.peername",
                     f->client_addr));
        /* its TLS with mitmproxy, as reel records a client's with reel
         * (FlowStart.client_tls); 19 renamed alpn_proto_negotiated ->
         * alpn and cipher_name -> cipher */
        /* (facts only: a value of another type, as older versions wrote
         * some, is left out rather than refusing the file) */
        f->c_tls_version = opt_text(cc, "tls_version");
        if (f->c_tls_version && f->c_tls_version[0]) {
            f->has_ctls = 1;
            f->c_sni = opt_text(cc, "sni");
            f->c_alpn = opt_text(cc, reel_tns_get(cc, "alpn") ? "alpn" : "alpn_proto_negotiated");
            f->c_cipher = opt_text(cc, reel_tns_get(cc, "cipher") ? "cipher" : "cipher_name");
        }
    }
    if (sc) {
        /* 19 renamed ip_address -> peername; address is where it was meant to go */
        a = reel_tns_get(sc, "peername");
        if (a == NULL)
            a = reel_tns_get(sc, "ip_address");
        TRY(get_addr(v, a, "server_conn.peername", f->server_addr));
        if (f->server_addr[0]) {
            f->has_sconn = 1;
            /* before 19 sni could be True: "the server's address" */
            const reel_tns_t *sni = reel_tns_get(sc, "sni");
            const reel_tns_t *addr = reel_tns_get(sc, "address");
            if (sni && sni->type == REEL_TNS_BOOL) {
                if (sni->i && addr && addr->type == REEL_TNS_LIST && addr->n >= 1 &&
                    reel_tns_is_text(&addr->item[0]) &&
                    !memchr(addr->item[0].data, '\0', addr->item[0].len))
                    f->sni = reel_strndup((const char *)addr->item[0].data, addr->item[0].len);
            } else {
                TRY(get_cstr(v, sc, "sni", "server_conn.sni", 1, &f->sni));
            }
            TRY(get_cstr(v, sc, "alpn", "server_conn.alpn", 1, &f->alpn));
            TRY(get_cstr(v, sc, "tls_version", "server_conn.tls_version", 1, &f->tls_version));
            /* 19 renamed cipher_name -> cipher */
            TRY(get_cstr(v, sc, reel_tns_get(sc, "cipher") ? "cipher" : "cipher_name",
                         "server_conn.cipher", 1, &f->cipher));
        }
    }
out:
    return rc;
}

static reel_rc conv_request(const vctx_t *v, const reel_tns_t *r, mflow_t *f) {
    reel_rc rc = REEL_OK;
    int64_t port = 0;
    char *authority = NULL, *path = NULL;
    TRY(get_cstr(v, r, "method", "request.method", 0, &f->method));
    TRY(get_cstr(v, r, "scheme", "request.scheme", 0, &f->scheme));
    if (strcmp(f->scheme, "http") != 0 && strcmp(f->scheme, "https") != 0)
        TRY(fail(v, REEL_INVALID, "request.scheme", "'%.40s' is not http or https", f->scheme));
    TRY(get_cstr(v, r, "host", "request.host", 0, &f->host));
    TRY(get_int(v, r, "port", "request.port", 0, 65535, &port));
    f->port = (uint32_t)port;
    TRY(get_cstr(v, r, "authority", "request.authority", 1, &authority));
    TRY(get_cstr(v, r, "path", "request.path", 0, &path));
    TRY(get_cstr(v, r, "http_version", "request.http_version", 0, &f->req_version));
    TRY(get_headers(v, r, "request", &f->req_h, &f->n_req_h));
    TRY(get_body(v, r, "request", &f->req_body));
    TRY(get_ts(v, r, "timestamp_start", "request.timestamp_start", 0, &f->req_start_us));
    TRY(get_ts(v, r, "timestamp_end", "request.timestamp_end", 1, &f->req_end_us));
    if (strcmp(f->method, "CONNECT") == 0)
        f->target = authority && authority[0] ? reel_strdup(authority)
                                              : reel_asprintf("%s:%u", f->host, f->port);
    else
        f->target = reel_strdup(path[0] ? path : "/");
out:
    free(authority);
    free(path);
    return rc;
}

static reel_rc conv_response(const vctx_t *v, const reel_tns_t *r, mflow_t *f) {
    reel_rc rc = REEL_OK;
    int64_t status = 0;
    f->has_resp = 1;
    TRY(get_int(v, r, "status_code", "response.status_code", 0, 999, &status));
    f->status = (uint32_t)status;
    TRY(get_cstr(v, r, "reason", "response.reason", 1, &f->reason));
    TRY(get_cstr(v, r, "http_version", "response.http_version", 0, &f->resp_version));
    TRY(get_headers(v, r, "response", &f->resp_h, &f->n_resp_h));
    TRY(get_body(v, r, "response", &f->resp_body));
    /* null before 14 (mitmproxy issue 4576): compat.py takes the request's end */
    TRY(get_ts(v, r, "timestamp_start", "response.timestamp_start", 1, &f->resp_start_us));
    if (f->resp_start_us == 0)
        f->resp_start_us = f->req_end_us;
    TRY(get_ts(v, r, "timestamp_end", "response.timestamp_end", 1, &f->resp_end_us));
out:
    return rc;
}

/* websocket: {messages: [[type, from_client, content, timestamp, dropped
 * (, injected from 15)]], closed_by_client, close_code, close_reason,
 * timestamp_end} */
static reel_rc conv_websocket(const vctx_t *v, const reel_tns_t *w, mflow_t *f) {
    reel_rc rc = REEL_OK;
    char field[64];
    const reel_tns_t *ms = reel_tns_get(w, "messages");
    if (ms == NULL)
        return fail(v, REEL_INVALID, "websocket.messages", "missing");
    if (ms->type != REEL_TNS_LIST)
        return fail(v, REEL_INVALID, "websocket.messages", "not a list but %s", tname(ms));
    f->ws = reel_calloc(ms->n ? ms->n : 1, sizeof *f->ws);
    for (size_t i = 0; i < ms->n; i++) {
        const reel_tns_t *m = &ms->item[i];
        snprintf(field, sizeof field, "websocket.messages[%zu]", i);
        if (m->type != REEL_TNS_LIST || m->n < 4 || m->item[0].type != REEL_TNS_INT ||
            m->item[0].i < 0 || m->item[0].i > 15 || m->item[1].type != REEL_TNS_BOOL ||
            !reel_tns_is_text(&m->item[2]))
            return fail(v, REEL_INVALID, field,
                        "not a [type, from_client, content, timestamp, ...] message");
        f->ws[i].opcode = (uint32_t)m->item[0].i;
        f->ws[i].from_client = (int)m->item[1].i;
        f->ws[i].data.p = m->item[2].data;
        f->ws[i].data.n = m->item[2].len;
        f->n_ws++;
    }
    const reel_tns_t *t = reel_tns_get(w, "closed_by_client");
    if (t && t->type == REEL_TNS_BOOL) {
        f->ws_closed = 1;
        f->closed_by_client = (int)t->i;
    } else if (t && t->type != REEL_TNS_NULL) {
        return fail(v, REEL_INVALID, "websocket.closed_by_client", "not a boolean but %s",
                    tname(t));
    }
    t = reel_tns_get(w, "close_code");
    f->close_code = 1005; /* no status */
    if (t && t->type == REEL_TNS_INT && t->i >= 0 && t->i <= 65535)
        f->close_code = (uint32_t)t->i;
    else if (t && t->type != REEL_TNS_NULL)
        return fail(v, REEL_INVALID, "websocket.close_code", "not a close code");
    TRY(get_text(v, w, "close_reason", "websocket.close_reason", 1, &f->close_reason, NULL));
    if (f->close_reason.n > CLOSE_REASON_MAX)
        f->close_reason.n = CLOSE_REASON_MAX;
    TRY(get_ts(v, w, "timestamp_end", "websocket.timestamp_end", 1, &f->ws_end_us));
out:
    return rc;
}

/* Whether the connection c (a dict or NULL; which names field) was TLS:
 * its tls (since 10: TLS is used on it), tls_established (before 19) or
 * timestamp_tls_setup (mitmproxy's own test of tls_established, every
 * version). A member of the wrong type is an error. */
static reel_rc conn_tls(const vctx_t *v, const reel_tns_t *c, const char *field, int *tls) {
    char name[64];
    static const char *const flags[] = {"tls", "tls_established"};
    for (int i = 0; c && i < 2; i++) {
        const reel_tns_t *t = reel_tns_get(c, flags[i]);
        snprintf(name, sizeof name, "%s.%s", field, flags[i]);
        if (t == NULL || t->type == REEL_TNS_NULL)
            continue;
        if (t->type != REEL_TNS_BOOL)
            return fail(v, REEL_INVALID, name, "not a boolean but %s", tname(t));
        if (t->i)
            *tls = 1;
    }
    if (c == NULL)
        return REEL_OK;
    const reel_tns_t *t = reel_tns_get(c, "timestamp_tls_setup");
    int64_t us;
    snprintf(name, sizeof name, "%s.timestamp_tls_setup", field);
    reel_rc rc = ts_us(v, t, name, 1, &us);
    if (rc == REEL_OK && t && t->type != REEL_TNS_NULL)
        *tls = 1;
    return rc;
}

/* A TCP flow: {client_conn, server_conn, messages: [[from_client, content,
 * timestamp]], error, ...}, recorded as the proxy records a tunnel: a
 * CONNECT head to the server's address, then its messages. Its scheme is
 * "tls" when mitmproxy relayed it over TLS (either connection was TLS:
 * conn_tls), as the proxy records TLS that is not HTTP; else "tcp". */
static reel_rc conv_tcp(const vctx_t *v, const reel_tns_t *flow, mflow_t *f) {
    reel_rc rc = REEL_OK;
    char field[64];
    const reel_tns_t *sc = NULL, *cc = NULL;
    int tls = 0;
    f->tcp = 1;
    TRY(conv_conns(v, flow, f));
    TRY(get_dict(v, flow, "client_conn", "client_conn", 1, &cc));
    TRY(get_dict(v, flow, "server_conn", "server_conn", 1, &sc));
    TRY(conn_tls(v, cc, "client_conn", &tls));
    TRY(conn_tls(v, sc, "server_conn", &tls));
    const reel_tns_t *a = reel_tns_get(sc, "address");
    if (a == NULL || a->type == REEL_TNS_NULL)
        a = reel_tns_get(sc, "peername");
    if (a && a->type != REEL_TNS_NULL) {
        if (a->type != REEL_TNS_LIST || a->n < 2 || !reel_tns_is_text(&a->item[0]) ||
            a->item[1].type != REEL_TNS_INT || a->item[1].i < 0 || a->item[1].i > 65535 ||
            memchr(a->item[0].data, '\0', a->item[0].len))
            return fail(v, REEL_INVALID, "server_conn.address", "not a [host, port] address");
        f->host = reel_strndup((const char *)a->item[0].data, a->item[0].len);
        f->port = (uint32_t)a->item[1].i;
    } else {
        f->host = reel_strdup("");
    }
    f->method = reel_strdup("CONNECT");
    f->scheme = reel_strdup(tls ? "tls" : "tcp");
    f->target = reel_strdup("");
    f->req_version = reel_strdup("HTTP/1.1");
    if (cc)
        TRY(get_ts(v, cc, "timestamp_start", "client_conn.timestamp_start", 1, &f->req_start_us));
    if (sc)
        TRY(get_ts(v, sc, "timestamp_end", "server_conn.timestamp_end", 1, &f->ws_end_us));
    const reel_tns_t *ms = reel_tns_get(flow, "messages");
    if (ms == NULL)
        return fail(v, REEL_INVALID, "messages", "missing");
    if (ms->type != REEL_TNS_LIST)
        return fail(v, REEL_INVALID, "messages", "not a list but %s", tname(ms));
    f->ws = reel_calloc(ms->n ? ms->n : 1, sizeof *f->ws);
    int64_t last = 0;
    for (size_t i = 0; i < ms->n; i++) {
        const reel_tns_t *m = &ms->item[i];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (m->type != REEL_TNS_LIST || m->n < 2 || m->item[0].type != REEL_TNS_BOOL ||
            !reel_tns_is_text(&m->item[1]))
            return fail(v, REEL_INVALID, field, "not a [from_client, content, timestamp] message");
        int64_t ts = 0;
        if (m->n > 2)
            TRY(ts_us(v, &m->item[2], field, 1, &ts));
        if (ts)
            last = ts;
        if (f->req_start_us == 0)
            f->req_start_us = ts;
        f->ws[i].opcode = 0;
        f->ws[i].from_client = (int)m->item[0].i;
        f->ws[i].data.p = m->item[1].data;
        f->ws[i].data.n = m->item[1].len;
        f->n_ws++;
    }
    if (f->ws_end_us == 0)
        f->ws_end_us = last;
out:
    return rc;
}

static reel_rc conv_flow(const vctx_t *v, const reel_tns_t *flow, mflow_t *f) {
    reel_rc rc = REEL_OK;
    const reel_tns_t *t;
    if (flow->type != REEL_TNS_DICT)
        return fail(v, REEL_INVALID, NULL, "not a flow: %s, not a dict", tname(flow));
    t = reel_tns_get(flow, "version");
    if (t == NULL)
        return fail(v, REEL_INVALID, NULL, "not a flow: no \"version\"");
    if (t->type == REEL_TNS_LIST)
        return fail(v, REEL_UNSUPPORTED, NULL,
                    "flow format version (a tuple, mitmproxy 2 or older) is not supported "
                    "(reel reads %d to %d)",
                    REEL_MITM_VERSION_MIN, REEL_MITM_VERSION_MAX);
    if (t->type != REEL_TNS_INT)
        return fail(v, REEL_INVALID, "version", "not an integer but %s", tname(t));
    if (t->i < REEL_MITM_VERSION_MIN || t->i > REEL_MITM_VERSION_MAX)
        return fail(v, REEL_UNSUPPORTED, NULL,
                    "flow format version %lld is not supported (reel reads %d to %d)",
                    (long long)t->i, REEL_MITM_VERSION_MIN, REEL_MITM_VERSION_MAX);
    span_t type;
    TRY(get_text(v, flow, "type", "type", 0, &type, NULL));
    const reel_tns_t *req = NULL, *resp = NULL, *err = NULL, *ws = NULL;
    if (type.n == 3 && memcmp(type.p, "tcp", 3) == 0) {
        f->http = 1; /* recorded, as a tunnel */
        TRY(conv_tcp(v, flow, f));
    } else if (type.n == 4 && memcmp(type.p, "http", 4) == 0) {
        f->http = 1;
        TRY(get_dict(v, flow, "request", "request", 0, &req));
        TRY(get_dict(v, flow, "response", "response", 1, &resp));
        TRY(get_dict(v, flow, "websocket", "websocket", 1, &ws));
        TRY(conv_conns(v, flow, f));
        TRY(conv_request(v, req, f));
        if (resp)
            TRY(conv_response(v, resp, f));
    } else if ((type.n == 3 && memcmp(type.p, "udp", 3) == 0) ||
               (type.n == 3 && memcmp(type.p, "dns", 3) == 0)) {
        return REEL_OK; /* skipped, and counted as such */
    } else {
        /* (quoted: the file's bytes, not to work a terminal) */
        reel_buf_t q;
        reel_buf_init(&q, 0);
        reel_buf_put_quoted(&q, type.p, type.n, 32);
        reel_buf_append(&q, "", 1);
        reel_rc bad =
            fail(v, REEL_INVALID, "type",
                 "%s, not a flow type of mitmproxy's (http, tcp, udp, dns)", (const char *)q.data);
        reel_buf_free(&q);
        return bad;
    }
    TRY(get_dict(v, flow, "error", "error", 1, &err));
    if (err) {
        TRY(get_cstr(v, err, "msg", "error.msg", 0, &f->error));
        TRY(get_ts(v, err, "timestamp", "error.timestamp", 1, &f->error_us));
    }
    if (ws)
        TRY(conv_websocket(v, ws, f));
    /* marked: a boolean before 13, then a string ("" = not marked) */
    t = reel_tns_get(flow, "marked");
    if (t && t->type == REEL_TNS_BOOL)
        f->marked = (int)t->i;
    else if (t && reel_tns_is_text(t))
        f->marked = t->len > 0;
    else if (t && t->type != REEL_TNS_NULL)
        TRY(fail(v, REEL_INVALID, "marked", "not a string but %s", tname(t)));
    TRY(get_text(v, flow, "comment", "comment", 1, &f->comment, NULL)); /* from 14 */
    if (memchr(f->comment.p ? (const void *)f->comment.p : "", '\0', f->comment.n))
        TRY(fail(v, REEL_INVALID, "comment", "contains a NUL byte"));
    TRY(get_ts(v, flow, "timestamp_created", "timestamp_created", 1, &f->created_us)); /* 16 */
    if (f->created_us == 0)
        f->created_us = f->req_start_us;
out:
    return rc;
}

/* ---- loading ------------------------------------------------------------ */

int reel_mitm_sniff(const uint8_t *buf, size_t len) {
    /* A length digit, as the docs say: JSON (HAR) never starts with one
     * that could be a HAR. A prefix too long, or without its ':', is then
     * the loader's to name ("length prefix longer than 12 digits"), not a
     * JSON parser's ("too big integer"). */
    return len > 0 && buf[0] >= '0' && buf[0] <= '9';
}

void reel_mitm_free(reel_mitm_t *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        mflow_free(&m->flows[i]);
    free(m->flows);
    free(m->buf);
    free(m->name);
    free(m);
}

size_t reel_mitm_count(const reel_mitm_t *m) {
    return m->n;
}

reel_rc reel_mitm_parse(uint8_t *buf, size_t len, const char *name, reel_mitm_t **out,
                        reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_mitm_t *m = reel_calloc(1, sizeof *m);
    m->buf = buf;
    m->len = len;
    m->name = reel_strdup(name);
    *out = NULL;
    size_t cap = 0, off = 0;
    while (off < len) {
        vctx_t v = {.name = m->name, .idx = m->n + 1, .off = off, .err = err};
        reel_err_t e;
        reel_err_clear(&e);
        size_t total = 0;
        rc = reel_tns_frame(buf + off, len - off, &total, &e);
        if (rc == REEL_NEED_MORE) {
            rc = fail(&v, REEL_CORRUPT, NULL, "truncated: the file ends inside a length prefix");
            goto out;
        }
        if (rc != REEL_OK) {
            rc = fail(&v, rc, NULL, "not a tnetstring: %s", reel_err_str(&e));
            goto out;
        }
        if (total > len - off) {
            rc = fail(&v, REEL_CORRUPT, NULL, "truncated: needs %zu bytes, the file ends after %zu",
                      total, len - off);
            goto out;
        }
        reel_tns_t *t = NULL;
        size_t used = 0;
        rc = reel_tns_parse(buf, off + total, off, NULL, &t, &used, &e);
        if (rc != REEL_OK) {
            rc = fail(&v, rc == REEL_NEED_MORE ? REEL_CORRUPT : rc, NULL, "damaged: %s",
                      reel_err_str(&e));
            goto out;
        }
        if (m->n == cap) {
            cap = cap ? cap * 2 : 16;
            m->flows = reel_realloc(m->flows, cap * sizeof *m->flows);
        }
        mflow_t *f = &m->flows[m->n++];
        memset(f, 0, sizeof *f);
        rc = conv_flow(&v, t, f);
        reel_tns_free(t);
        if (rc != REEL_OK)
            goto out;
        off += used;
    }
out:
    if (rc != REEL_OK) {
        reel_mitm_free(m);
        return rc;
    }
    *out = m;
    return REEL_OK;
}

reel_rc reel_mitm_load(const char *path, reel_mitm_t **out, reel_err_t *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return reel_err_errno(err, REEL_IO, errno, "%s", path);
    reel_buf_t b;
    reel_buf_init(&b, (size_t)reel__mitm_max_file_size);
    reel_rc rc = REEL_OK;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size <= reel__mitm_max_file_size)
        reel_buf_reserve(&b, (size_t)sb.st_size + 1);
    uint8_t chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = reel_err_errno(err, REEL_IO, errno, "%s", path);
            break;
        }
        if (n == 0)
            break;
        if (reel_buf_append(&b, chunk, (size_t)n) != REEL_OK) {
            rc = reel_err_set(err, REEL_LIMIT, "%s: larger than %llu bytes", path,
                              (unsigned long long)reel__mitm_max_file_size);
            break;
        }
    }
    close(fd);
    if (rc != REEL_OK) {
        reel_buf_free(&b);
        return rc;
    }
    size_t len = b.len;
    uint8_t *data = (uint8_t *)b.data; /* taken by reel_mitm_parse */
    if (data == NULL)
        data = reel_malloc(1);
    return reel_mitm_parse(data, len, path, out, err);
}

/* ---- recording ---------------------------------------------------------- */

static int64_t span_us(int64_t a, int64_t b) {
    return a && b && b >= a ? b - a : -1;
}

/* Records flow f (the file's flow number idx); returns REEL_INVALID, in
 * err, if a record of it was too large for the spool (a head, a URL): the
 * flow is refused (the import is undone) rather than imported without it. */
static reel_rc record(reel_recorder_t *rec, mflow_t *f, reel_mitm_stats_t *st, const char *name,
                      size_t idx, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_flow_info_t info = {.kind = f->tcp ? REEL_FLOW_TUNNEL : REEL_FLOW_HTTP,
                             .client_addr = f->client_addr[0] ? f->client_addr : NULL,
                             .server_addr = f->server_addr[0] ? f->server_addr : NULL,
                             .source = "mitm-import",
                             .time_us = f->created_us,
                             .tls = f->has_ctls,
                             .tls_sni = f->c_sni,
                             .tls_alpn = f->c_alpn,
                             .tls_version = f->c_tls_version,
                             .tls_cipher = f->c_cipher};
    reel_rflow_t *rf = reel_recorder_flow_start(rec, &info);
    f->id = reel_rflow_id(rf);
    if (st->first_id == 0)
        st->first_id = f->id;
    st->last_id = f->id;
    st->flows++;

    reel_request_head_t rh = {.method = f->method,
                              .scheme = f->scheme,
                              .host = f->host,
                              .port = f->port,
                              .target = f->target,
                              .http_version = f->req_version,
                              .headers = f->req_h,
                              .n_headers = f->n_req_h,
                              .body_decoded = 0,
                              .time_us = f->req_start_us};
    reel_recorder_request_head(rf, &rh);
    if (f->req_body.n)
        reel_recorder_request_body(rf, f->req_body.p, f->req_body.n);
    if (f->has_sconn) {
        reel_server_conn_t sc = {.address = f->server_addr,
                                 .sni = f->sni,
                                 .alpn = f->alpn,
                                 .tls_version = f->tls_version,
                                 .cipher = f->cipher};
        reel_recorder_server_conn(rf, &sc);
    }
    if (f->has_resp) {
        reel_response_head_t sh = {.status = f->status,
                                   .reason = f->reason ? f->reason : "",
                                   .http_version = f->resp_version,
                                   .headers = f->resp_h,
                                   .n_headers = f->n_resp_h,
                                   .body_decoded = 0,
                                   .time_us = f->resp_start_us};
        reel_recorder_response_head(rf, &sh);
        if (f->resp_body.n)
            reel_recorder_response_body(rf, f->resp_body.p, f->resp_body.n);
    }
    for (size_t i = 0; i < f->n_ws; i++) {
        reel_message_t m = {.from_client = f->ws[i].from_client,
                            .opcode = f->ws[i].opcode,
                            .data = f->ws[i].data.p,
                            .len = f->ws[i].data.n,
                            .length = f->ws[i].data.n};
        reel_recorder_message(rf, &m);
    }
    if (f->ws_closed) {
        uint8_t payload[2 + CLOSE_REASON_MAX];
        size_t n = 0;
        if (f->close_code != 1005) {
            payload[0] = (uint8_t)(f->close_code >> 8);
            payload[1] = (uint8_t)f->close_code;
            memcpy(payload + 2, f->close_reason.p ? (const void *)f->close_reason.p : "",
                   f->close_reason.n);
            n = 2 + f->close_reason.n;
        }
        reel_message_t m = {.from_client = f->closed_by_client,
                            .opcode = 8,
                            .data = payload,
                            .len = n,
                            .length = n,
                            .close_code = f->close_code};
        reel_recorder_message(rf, &m);
    }

    reel_timings_t tm = {-1, -1, -1, -1, -1, -1, -1};
    tm.send_us = span_us(f->req_start_us, f->req_end_us);
    if (f->has_resp) {
        tm.wait_us = span_us(f->req_end_us, f->resp_start_us);
        tm.receive_us = span_us(f->resp_start_us, f->resp_end_us);
    }
    int64_t end = f->ws_end_us;
    if (end == 0 && f->has_resp)
        end = f->resp_end_us ? f->resp_end_us : f->resp_start_us;
    if (end == 0 && f->error)
        end = f->error_us;
    if (end == 0)
        end = f->req_end_us ? f->req_end_us : f->req_start_us;
    reel_flow_end_t e = {.error = f->error,
                         .timings = &tm,
                         .time_us = end,
                         .request_end_us = f->req_end_us,
                         .response_start_us = f->has_resp ? f->resp_start_us : 0,
                         .server_addr = f->server_addr[0] ? f->server_addr : NULL};
    const char *what;
    size_t big = reel_rflow_too_large(rf, &what);
    if (big)
        rc =
            reel_err_set(err, REEL_INVALID,
                         "%s: flow %zu: its %s would take %zu bytes as a record, more than a spool "
                         "record may hold (%u bytes): reel cannot store it",
                         name, idx, what, big, REEL_SPOOL_RECORD_MAX);
    reel_recorder_flow_finish(rf, &e);
    return rc;
}

reel_rc reel_mitm_record(reel_recorder_t *rec, reel_mitm_t *m, reel_mitm_stats_t *stats,
                         reel_err_t *err) {
    reel_mitm_stats_t local;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    for (size_t i = 0; i < m->n; i++) {
        if (m->stop && *m->stop)
            return reel_err_set(err, REEL_INTERRUPTED, "interrupted after %zu of %zu flows", i,
                                m->n);
        if (m->flows[i].http) {
            reel_rc rc = record(rec, &m->flows[i], stats, m->name, i + 1, err);
            if (rc != REEL_OK)
                return rc;
        } else {
            stats->skipped++;
        }
        if (m->progress)
            m->progress(m->progress_ctx, i + 1, m->n);
    }
    return reel_recorder_flush(rec, err);
}

reel_rc reel_mitm_apply_user_data(sqlite3 *db, const reel_mitm_t *m, reel_mitm_stats_t *stats,
                                  reel_err_t *err) {
    int64_t now = reel_now_us();
    int any = 0;
    for (size_t i = 0; i < m->n && !any; i++)
        any = m->flows[i].id && (m->flows[i].comment.n || m->flows[i].marked);
    if (!any)
        return REEL_OK; /* nothing to add */
    reel_userdata_t u;
    reel_rc rc = reel_userdata_begin(&u, db, err);
    for (size_t i = 0; i < m->n && rc == REEL_OK; i++) {
        const mflow_t *f = &m->flows[i];
        if (f->id == 0)
            continue;
        if (f->comment.n)
            rc = reel_userdata_note(&u, f->id, now, (const char *)f->comment.p, f->comment.n, err);
        if (rc == REEL_OK && f->marked)
            rc = reel_userdata_mark(&u, f->id, now, err);
    }
    rc = reel_userdata_end(&u, rc, err);
    if (stats && rc == REEL_OK) {
        stats->annotated += u.annotated;
        stats->marked += u.marked;
    }
    return rc;
}
