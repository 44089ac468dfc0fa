/* Export of flows: see export.h.
 *
 * One flow at a time: read its index row, tags and annotations, stream its
 * records from the spool into a flow_t (heads, stored bodies up to the cap,
 * messages), prepare it (decode bodies, redact), write it in the format
 * asked, free it. */
#include "session/export.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/mem.h"
#include "session/config.h"
#include "session/decode.h"
#include "session/filter.h"
#include "session/flowread.h"
#include "session/har.h"
#include "session/index.h"
#include "session/store.h"

enum { REQ = 0, RESP = 1 };

reel_redact_t *reel_export_redact_rules(reel_session_t *s, char **warning) {
    static const char *const opts[2] = {"redact_headers", "redact_keys"};
    reel_redact_t *r = reel_redact_new();
    reel_err_t err;
    reel_err_clear(&err);
    *warning = NULL;
    reel_config_t *c = reel_config_new();
    if (reel_config_load_user(c, NULL, &err) != REEL_OK)
        *warning = reel_strdup(reel_err_str(&err));
    reel_config_load_overlay(c, reel_session_db(s), NULL, &err);
    for (int k = 0; k < 2; k++) {
        if (reel_option_find(opts[k]) == NULL)
            continue;
        size_t n = 0;
        char **items = reel_config_get_list(c, opts[k], &n);
        for (size_t i = 0; i < n; i++) {
            if (k == 0)
                reel_redact_add_header(r, items[i]);
            else
                reel_redact_add_key(r, items[i]);
        }
        free(items);
    }
    reel_config_free(c);
    return r;
}

int reel_export_format_parse(const char *name) {
    static const char *const names[] = {"har", "curl", "raw", "ndjson"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

/* ---- one flow in memory --------------------------------------------------- */

typedef struct {
    char *name, *value; /* owned, NUL-terminated (may hold NULs: see lengths) */
    size_t nlen, vlen;
} hdr_t;

typedef struct {
    int64_t time_us;
    int from_client;
    uint32_t opcode;
    uint32_t close_code;
    uint64_t length;
    int truncated; /* body_limit cut the payload: data holds fewer than length bytes */
    int compressed; /* sent with permessage-deflate (data is inflated) */
    reel_buf_t data;
} msg_t;

/* An informational answer (100 Continue, 103 Early Hints) before the final
 * response head. */
typedef struct {
    int64_t time_us;
    uint32_t status;
    char *reason, *version;
    hdr_t *hdr;
    size_t nhdr;
} interim_t;

typedef struct {
    uint64_t id;
    int64_t start_us, end_us, req_end_us, resp_start_us;
    char *uuid, *source, *client_addr, *server_addr, *state, *error, *kind;
    int marked;
    json_t *tags;        /* array of strings */
    json_t *annotations; /* array of {text, time, _reel.text_b64 when not UTF-8} */
    reel_buf_t *notes;   /* the bytes of each annotation's text, in that order */
    int tunnel;
    int have_head[2];
    char *method, *scheme, *host, *target, *version[2], *reason;
    uint32_t port, status;
    int generated;
    hdr_t *hdr[2];
    size_t nhdr[2];
    hdr_t *trailer[2]; /* trailer fields of each body (chunked, HTTP/2) */
    size_t ntrailer[2];
    int has_trailers[2];
    int trailers_held[2]; /* ... which did not reach the other side (not_passed_on) */
    interim_t *interim;
    size_t ninterim;
    int body_decoded[2];
    int absolute_form;    /* the client's request line had an absolute-form target */
    int reverse;          /* reel was a reverse proxy for its origin (RequestHead.reverse) */
    char *mapped_to;      /* map_remote sent the request there (RequestHead.mapped_to) */
    char *original_dst;   /* transparent: where it went (RequestHead.original_dst) */
    char *local_file;     /* map_local answered from it (ResponseHead.local_file) */
    char *blocked_by;     /* a block_list rule answered (ResponseHead.blocked_by) */
    json_t *modified[2];  /* modify_headers' changes (reel_json_header_edits); NULL: none */
    json_t *body_edit[2]; /* each body's BodyEdit (reel_json_body_edit); NULL: none */
    uint64_t excess;      /* bytes the origin sent past its response's end */
    reel_buf_t stored[2]; /* body as stored, capped */
    int cut[2];           /* stored body longer than the cap */
    uint64_t wire_size[2];
    int truncated[2]; /* body_limit cut it when recorded */
    int has_timings;
    int64_t t[7]; /* blocked dns connect send wait receive ssl, us */
    char *conn_addr, *alpn, *tls_version;
    /* the server connection's certificate check: made with verification
     * off, and what the check found (NULL: it passed) with the origin's
     * certificate then */
    int unverified;
    char *verify_error, *peer_cert;
    char *via;          /* the upstream proxy the server connection went through */
    char *dns_override; /* the dns_overrides entry its address came from */
    int via_forward;    /* ... the request sent to it in absolute form (no CONNECT) */
    int client_cert_asked; /* the origin asked for a client certificate */
    char *client_cert;     /* ... the one reel presented (NULL: none) */
    int tls_resumed;       /* its TLS resumed a session from an earlier connection */
    json_t *client_tls; /* the start record's, NULL: none */
    uint64_t conn_id;
    int conn_reused;
    msg_t *msgs;
    size_t nmsgs;
    size_t msg_bytes;
    int msgs_cut;
    int ended;
    /* prepared */
    reel_buf_t decoded[2];
    int use_decoded[2];  /* body[] is decoded[], else stored[] */
    int unencoded[2];    /* decode_body removed a Content-Encoding, or found it removed: ... */
    size_t plain_len[2]; /* ... and this is the body's length without it */
    char *decode_error[2];
    int rewritten[2]; /* redaction changed the body: raw/curl write body[] decoded */
    int wire_encoded[2]; /* ... and it was cut and encoded: wire_size is still the encoded one's */
    int redacted;
} flow_t;

/* Writes j compact, each real number in the shortest form that reads back
 * as the same double (0.086, not 0.08599999999999999; a WebSocket
 * message's time in seconds since the epoch still to the microsecond).
 * jansson writes every real with one precision: 16 digits gave noise
 * below 1 ms and 15 would cut the microseconds of a time since the
 * epoch. So the text it writes at 17 (exact) is read again as it streams
 * out (json_dump_callback: an entry's base64 body is never held twice),
 * strings passed over, and each number with a point or an exponent
 * written shortest. 0, or -1 if j cannot be written. */
typedef struct {
    FILE *out;
    int in_str, esc;
    char num[48]; /* the number being read, outside strings */
    size_t nnum;
} shortest_t;

static void shortest_num(shortest_t *w) {
    w->num[w->nnum] = '\0';
    char *end = NULL;
    double v = strtod(w->num, &end);
    if (strpbrk(w->num, ".eE") != NULL && end == w->num + w->nnum) {
        char num[40];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, v);
            if (strtod(num, NULL) == v)
                break;
        }
        if (strpbrk(num, ".eE") == NULL) /* still a real: 2.0, not 2 */
            strcat(num, ".0");
        fputs(num, w->out);
    } else { /* an integer, or not a number jansson wrote: as it is */
        fwrite(w->num, 1, w->nnum, w->out);
    }
    w->nnum = 0;
}

static int shortest_cb(const char *buf, size_t size, void *data) {
    shortest_t *w = data;
    size_t run = 0;
    for (size_t i = 0; i < size; i++) {
        char c = buf[i];
        if (w->in_str) {
            if (w->esc)
                w->esc = 0;
            else if (c == '\\')
                w->esc = 1;
            else if (c == '"')
                w->in_str = 0;
            continue;
        }
        if (c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || (c >= '0' && c <= '9')) {
            fwrite(buf + run, 1, i - run, w->out);
            run = i + 1;
            if (w->nnum + 1 == sizeof w->num)
                shortest_num(w); /* (longer than any jansson writes) */
            w->num[w->nnum++] = c;
            continue;
        }
        if (w->nnum) {
            fwrite(buf + run, 1, i - run, w->out);
            run = i;
            shortest_num(w);
        }
        w->in_str = c == '"';
    }
    fwrite(buf + run, 1, size - run, w->out);
    return 0;
}

static int dump_shortest(const json_t *j, FILE *out) {
    shortest_t w = {.out = out};
    int rc = json_dump_callback(j, shortest_cb, &w,
                                JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (w.nnum)
        shortest_num(&w);
    return rc;
}

static const uint8_t *body_data(const flow_t *f, int d) {
    const reel_buf_t *b = f->use_decoded[d] ? &f->decoded[d] : &f->stored[d];
    return b->data ? b->data : (const uint8_t *)"";
}

static size_t body_len(const flow_t *f, int d) {
    return f->use_decoded[d] ? f->decoded[d].len : f->stored[d].len;
}

static char *bdup(ProtobufCBinaryData b) {
    return reel_strndup(b.len ? (const char *)b.data : "", b.len);
}

static void hdrs_free(hdr_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void flow_free(flow_t *f) {
    free(f->uuid);
    free(f->source);
    free(f->client_addr);
    free(f->server_addr);
    free(f->state);
    free(f->error);
    free(f->kind);
    json_decref(f->tags);
    for (size_t i = 0; i < json_array_size(f->annotations) && f->notes; i++)
        reel_buf_free(&f->notes[i]);
    free(f->notes);
    json_decref(f->annotations);
    free(f->method);
    free(f->scheme);
    free(f->host);
    free(f->target);
    free(f->reason);
    free(f->conn_addr);
    free(f->alpn);
    free(f->tls_version);
    free(f->verify_error);
    free(f->peer_cert);
    free(f->client_cert);
    free(f->mapped_to);
    free(f->original_dst);
    free(f->local_file);
    free(f->blocked_by);
    free(f->via);
    free(f->dns_override);
    json_decref(f->client_tls);
    json_decref(f->modified[REQ]);
    json_decref(f->modified[RESP]);
    json_decref(f->body_edit[REQ]);
    json_decref(f->body_edit[RESP]);
    for (size_t i = 0; i < f->ninterim; i++) {
        free(f->interim[i].reason);
        free(f->interim[i].version);
        hdrs_free(f->interim[i].hdr, f->interim[i].nhdr);
    }
    free(f->interim);
    for (int d = 0; d < 2; d++) {
        free(f->version[d]);
        hdrs_free(f->hdr[d], f->nhdr[d]);
        hdrs_free(f->trailer[d], f->ntrailer[d]);
        reel_buf_free(&f->stored[d]);
        reel_buf_free(&f->decoded[d]);
        free(f->decode_error[d]);
    }
    for (size_t i = 0; i < f->nmsgs; i++)
        reel_buf_free(&f->msgs[i].data);
    free(f->msgs);
    memset(f, 0, sizeof *f);
}

/* The n fields of h as an owned array (never NULL). */
static hdr_t *copy_headers(Reel__Header **h, size_t n) {
    hdr_t *a = reel_calloc(n ? n : 1, sizeof *a);
    for (size_t i = 0; i < n; i++) {
        a[i].name = bdup(h[i]->name);
        a[i].nlen = h[i]->name.len;
        a[i].value = bdup(h[i]->value);
        a[i].vlen = h[i]->value.len;
    }
    return a;
}

/* A head's modify_headers changes (none: NULL, as a 1xx head before it
 * leaves them). */
static void take_edits(flow_t *f, int d, Reel__HeaderEdit **e, size_t n) {
    json_decref(f->modified[d]);
    f->modified[d] = n ? reel_json_header_edits(e, n) : NULL;
}

static void take_headers(flow_t *f, int d, Reel__Header **h, size_t n) {
    hdrs_free(f->hdr[d], f->nhdr[d]);
    f->hdr[d] = copy_headers(h, n);
    f->nhdr[d] = n;
}

static void body_add(flow_t *f, int d, ProtobufCBinaryData b) {
    reel_buf_t *buf = &f->stored[d];
    size_t room = REEL_EXPORT_BODY_MAX - buf->len;
    size_t n = b.len;
    if (n > room) {
        n = room;
        f->cut[d] = 1;
    }
    if (n)
        reel_buf_append(buf, b.data, n);
}

static void end_facts(flow_t *f, const Reel__Timings *t, int64_t req_end, int64_t resp_start,
                      uint64_t req_size, uint64_t resp_size, const char *server_addr) {
    if (t != NULL) {
        f->has_timings = 1;
        int64_t v[7] = {t->blocked_us, t->dns_us,     t->connect_us, t->send_us,
                        t->wait_us,    t->receive_us, t->ssl_us};
        memcpy(f->t, v, sizeof v);
    }
    f->req_end_us = req_end;
    f->resp_start_us = resp_start;
    f->wire_size[REQ] = req_size;
    f->wire_size[RESP] = resp_size;
    if (server_addr && server_addr[0]) {
        free(f->server_addr);
        f->server_addr = reel_strdup(server_addr);
    }
    f->ended = 1;
}

/* The client's TLS from a flow's end record, when its start had none
 * (FlowEnd.client_tls: a TLS tunnel whose client's handshake came after
 * its flow began). */
static void late_client_tls(flow_t *f, const Reel__ClientTls *t) {
    if (t && f->client_tls == NULL)
        f->client_tls = reel_json_client_tls(t);
}

static int on_record(void *ctx, const Reel__Record *rec) {
    flow_t *f = ctx;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        f->tunnel = rec->start->kind == REEL__FLOW_KIND__FLOW_KIND_TUNNEL;
        if (!f->uuid)
            f->uuid = reel_strdup(rec->start->uuid);
        json_decref(f->client_tls);
        f->client_tls =
            rec->start->client_tls ? reel_json_client_tls(rec->start->client_tls) : NULL;
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        f->have_head[REQ] = 1;
        free(f->method);
        free(f->scheme);
        free(f->host);
        free(f->target);
        free(f->version[REQ]);
        f->method = bdup(h->method);
        f->scheme = reel_strdup(h->scheme && h->scheme[0] ? h->scheme : "http");
        f->host = bdup(h->host);
        f->port = h->port;
        f->target = bdup(h->target);
        f->version[REQ] = reel_strdup(h->http_version ? h->http_version : "");
        f->body_decoded[REQ] = h->body_decoded;
        f->absolute_form = h->absolute_form;
        f->reverse = h->reverse;
        free(f->mapped_to);
        f->mapped_to = h->mapped_to && h->mapped_to[0] ? reel_strdup(h->mapped_to) : NULL;
        free(f->original_dst);
        f->original_dst =
            h->original_dst && h->original_dst[0] ? reel_strdup(h->original_dst) : NULL;
        take_headers(f, REQ, h->headers, h->n_headers);
        take_edits(f, REQ, h->modified, h->n_modified);
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
        body_add(f, REQ, rec->request_body->data);
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        f->have_head[RESP] = 1;
        free(f->reason);
        free(f->version[RESP]);
        f->status = h->status;
        f->reason = bdup(h->reason);
        f->version[RESP] = reel_strdup(h->http_version ? h->http_version : "");
        f->body_decoded[RESP] = h->body_decoded;
        f->generated = h->generated;
        free(f->local_file);
        f->local_file = h->local_file && h->local_file[0] ? reel_strdup(h->local_file) : NULL;
        free(f->blocked_by);
        f->blocked_by = h->blocked_by && h->blocked_by[0] ? reel_strdup(h->blocked_by) : NULL;
        reel_buf_reset(&f->stored[RESP]); /* a 1xx head before the final one */
        take_headers(f, RESP, h->headers, h->n_headers);
        take_edits(f, RESP, h->modified, h->n_modified);
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        body_add(f, RESP, rec->response_body->data);
        break;
    case REEL__RECORD__EVENT_BODY_EDIT: {
        int dir = rec->body_edit->response ? RESP : REQ;
        json_decref(f->body_edit[dir]);
        f->body_edit[dir] = reel_json_body_edit(rec->body_edit);
        break;
    }
    case REEL__RECORD__EVENT_INTERIM: {
        const Reel__ResponseHead *h = rec->interim;
        f->interim = reel_realloc(f->interim, (f->ninterim + 1) * sizeof *f->interim);
        interim_t *x = &f->interim[f->ninterim++];
        x->time_us = rec->time_us;
        x->status = h->status;
        x->reason = bdup(h->reason);
        x->version = reel_strdup(h->http_version ? h->http_version : "");
        x->hdr = copy_headers(h->headers, h->n_headers);
        x->nhdr = h->n_headers;
        break;
    }
    case REEL__RECORD__EVENT_TRAILERS: {
        const Reel__Trailers *t = rec->trailers;
        int d = t->response ? RESP : REQ;
        hdrs_free(f->trailer[d], f->ntrailer[d]);
        f->trailer[d] = copy_headers(t->headers, t->n_headers);
        f->ntrailer[d] = t->n_headers;
        f->has_trailers[d] = 1;
        f->trailers_held[d] = t->not_passed_on;
        break;
    }
    case REEL__RECORD__EVENT_END: {
        const Reel__FlowEnd *e = rec->end;
        end_facts(f, e->timings, e->request_end_us, e->response_start_us, e->request_body_size,
                  e->response_body_size, e->server_addr);
        f->truncated[REQ] = e->request_truncated;
        f->truncated[RESP] = e->response_truncated;
        f->excess = e->response_excess;
        f->end_us = rec->time_us;
        late_client_tls(f, e->client_tls);
        break;
    }
    case REEL__RECORD__EVENT_ERROR: {
        const Reel__FlowError *e = rec->error;
        end_facts(f, e->timings, e->request_end_us, e->response_start_us, e->request_body_size,
                  e->response_body_size, e->server_addr);
        if (f->error == NULL)
            f->error = reel_strdup(e->message ? e->message : "");
        /* a flow that failed may have had a body body_limit cut too */
        f->truncated[REQ] = e->request_truncated;
        f->truncated[RESP] = e->response_truncated;
        f->excess = e->response_excess;
        f->end_us = rec->time_us;
        late_client_tls(f, e->client_tls);
        break;
    }
    case REEL__RECORD__EVENT_SERVER_CONN: {
        const Reel__ServerConn *c = rec->server_conn;
        free(f->conn_addr);
        free(f->alpn);
        free(f->tls_version);
        f->conn_addr = reel_strdup(c->address ? c->address : "");
        f->alpn = reel_strdup(c->alpn ? c->alpn : "");
        f->tls_version = reel_strdup(c->tls_version ? c->tls_version : "");
        free(f->verify_error);
        free(f->peer_cert);
        f->unverified = c->unverified;
        f->verify_error =
            c->verify_error && c->verify_error[0] ? reel_strdup(c->verify_error) : NULL;
        f->peer_cert = c->peer_cert && c->peer_cert[0] ? reel_strdup(c->peer_cert) : NULL;
        free(f->via);
        f->via = c->via && c->via[0] ? reel_strdup(c->via) : NULL;
        free(f->dns_override);
        f->dns_override =
            c->dns_override && c->dns_override[0] ? reel_strdup(c->dns_override) : NULL;
        f->via_forward = f->via && c->via_forward;
        f->client_cert_asked = c->client_cert_asked;
        free(f->client_cert);
        f->client_cert = c->client_cert && c->client_cert[0] ? reel_strdup(c->client_cert) : NULL;
        f->tls_resumed = c->resumed;
        f->conn_id = c->conn_id;
        f->conn_reused = c->reused;
        break;
    }
    case REEL__RECORD__EVENT_MESSAGE: {
        const Reel__Message *m = rec->message;
        if (m->continued && f->nmsgs > 0) {
            msg_t *last = &f->msgs[f->nmsgs - 1];
            size_t n = m->data.len;
            if (f->msg_bytes + n > REEL_EXPORT_BODY_MAX) {
                f->msgs_cut = 1;
                break;
            }
            if (n)
                reel_buf_append(&last->data, m->data.data, n);
            f->msg_bytes += n;
            break;
        }
        if (f->msg_bytes + m->data.len > REEL_EXPORT_BODY_MAX) {
            f->msgs_cut = 1;
            break;
        }
        f->msgs = reel_realloc(f->msgs, (f->nmsgs + 1) * sizeof *f->msgs);
        msg_t *x = &f->msgs[f->nmsgs++];
        memset(x, 0, sizeof *x);
        x->time_us = rec->time_us;
        x->from_client = m->from_client;
        x->opcode = m->opcode;
        x->close_code = m->close_code;
        x->length = m->length;
        x->truncated = m->truncated;
        x->compressed = m->compressed;
        reel_buf_init(&x->data, 0);
        if (m->data.len)
            reel_buf_append(&x->data, m->data.data, m->data.len);
        f->msg_bytes += m->data.len;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- header helpers ----------------------------------------------------- */

static int ieq(const char *a, size_t n, const char *lower) {
    size_t m = strlen(lower);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)a[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* First value of header name (lowercase), borrowed; NULL if absent. */
static const hdr_t *hdr_get(const flow_t *f, int d, const char *name) {
    for (size_t i = 0; i < f->nhdr[d]; i++)
        if (ieq(f->hdr[d][i].name, f->hdr[d][i].nlen, name))
            return &f->hdr[d][i];
    return NULL;
}

/* The :protocol field of an RFC 8441 extended CONNECT (an HTTP/2
 * WebSocket: core/h2front.c records it as the request's first field, with
 * method CONNECT); NULL for any other request. */
static const hdr_t *ext_protocol(const flow_t *f) {
    if (!f->have_head[REQ] || f->tunnel || !f->method || strcmp(f->method, "CONNECT") != 0)
        return NULL;
    return hdr_get(f, REQ, ":protocol");
}

static int ext_websocket(const flow_t *f) {
    const hdr_t *p = ext_protocol(f);
    return p && ieq(p->value, p->vlen, "websocket");
}

static int is_pseudo(const hdr_t *h) {
    return h->nlen > 0 && h->name[0] == ':';
}

/* Every Content-Encoding value joined with ", ", owned; NULL if none. */
static char *encoding_of(const flow_t *f, int d) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    int any = 0;
    for (size_t i = 0; i < f->nhdr[d]; i++) {
        if (!ieq(f->hdr[d][i].name, f->hdr[d][i].nlen, "content-encoding"))
            continue;
        if (any)
            reel_buf_puts(&b, ", ");
        reel_buf_append(&b, f->hdr[d][i].value, strlen(f->hdr[d][i].value));
        any = 1;
    }
    char *s = any ? reel_strndup(b.data ? (const char *)b.data : "", b.len) : NULL;
    reel_buf_free(&b);
    return s;
}

static void hdr_remove(flow_t *f, int d, const char *name) {
    size_t k = 0;
    for (size_t i = 0; i < f->nhdr[d]; i++) {
        if (ieq(f->hdr[d][i].name, f->hdr[d][i].nlen, name)) {
            free(f->hdr[d][i].name);
            free(f->hdr[d][i].value);
        } else {
            f->hdr[d][k++] = f->hdr[d][i];
        }
    }
    f->nhdr[d] = k;
}

static void hdr_set_value(hdr_t *h, const char *v, size_t n) {
    free(h->value);
    h->value = reel_strndup(v, n);
    h->vlen = n;
}

/* ---- preparing: decoding and redaction ---------------------------------- */

/* The body of direction d is written decoded, len bytes: its head says
 * so, or the message would claim an encoding and a length its bytes do
 * not have. Content-Encoding goes, a Content-Length is set to len. */
static void head_says_decoded(flow_t *f, int d, size_t len) {
    hdr_remove(f, d, "content-encoding");
    for (size_t i = 0; i < f->nhdr[d]; i++) {
        hdr_t *h = &f->hdr[d][i];
        if (ieq(h->name, h->nlen, "content-length")) {
            char num[32];
            int k = snprintf(num, sizeof num, "%zu", len);
            hdr_set_value(h, num, (size_t)k);
        }
    }
}

typedef struct {
    reel_buf_t *out;
    int *cut;
} sink_t;

static int dec_sink(void *ctx, const uint8_t *data, size_t len) {
    sink_t *s = ctx;
    size_t room = REEL_EXPORT_BODY_MAX - s->out->len;
    if (len > room) {
        len = room;
        *s->cut = 1;
    }
    if (len)
        reel_buf_append(s->out, data, len);
    return 0;
}

static void decode_body(flow_t *f, int d) {
    char *enc = encoding_of(f, d);
    if (enc == NULL)
        return;
    if (f->body_decoded[d]) {
        /* stored without its Content-Encoding (reel import of a HAR): the
         * plain length is the stored one, and HAR's compression (plain
         * less the size on the wire) goes back as it came */
        f->unencoded[d] = 1;
        f->plain_len[d] = f->stored[d].len;
        free(enc);
        return;
    }
    reel_err_t err;
    reel_err_clear(&err);
    reel_decoder_t *dec = NULL;
    sink_t s = {.out = &f->decoded[d], .cut = &f->cut[d]};
    reel_buf_init(&f->decoded[d], 0);
    reel_rc rc = reel_decoder_new(enc, dec_sink, &s, &dec, &err);
    if (rc == REEL_OK && f->stored[d].len)
        rc = reel_decoder_feed(dec, f->stored[d].data, f->stored[d].len, &err);
    if (rc == REEL_OK && !f->cut[d] && !f->truncated[d])
        rc = reel_decoder_finish(dec, &err);
    reel_decoder_free(dec);
    if (rc == REEL_OK) {
        f->use_decoded[d] = 1;
        f->unencoded[d] = 1;
        f->plain_len[d] = f->decoded[d].len;
    } else {
        f->decode_error[d] =
            reel_asprintf("Content-Encoding '%s' not removed: %s", enc, reel_err_str(&err));
        reel_buf_free(&f->decoded[d]);
    }
    free(enc);
}

static void set_decoded(flow_t *f, int d, reel_redacted_t *t) {
    reel_buf_free(&f->decoded[d]);
    reel_buf_init(&f->decoded[d], 0);
    reel_buf_append(&f->decoded[d], t->data, t->len);
    free(t->data);
    f->use_decoded[d] = 1;
}

/* Redacts the values of the n fields of h; returns whether any changed. */
static int redact_fields(const reel_redact_t *r, hdr_t *h, size_t n) {
    reel_redacted_t t;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (reel_redact_header(r, h[i].name, h[i].nlen, h[i].value, h[i].vlen, &t)) {
            hdr_set_value(&h[i], t.data, t.len);
            free(t.data);
            any = 1;
        }
    }
    return any;
}

static json_t *str_json(const char *s);
static void note_text(json_t *a, const reel_buf_t *b);

/* A size that counted n bytes that redaction made m: the same less n plus
 * m (the bytes not stored, past a cut, are as they were), else m. */
static uint64_t resized(uint64_t size, size_t n, size_t m) {
    return size >= n ? size - n + m : m;
}

static void redact_flow(flow_t *f, const reel_redact_t *r) {
    reel_redacted_t t;
    for (int d = 0; d < 2; d++) {
        if (redact_fields(r, f->hdr[d], f->nhdr[d]))
            f->redacted = 1;
        if (redact_fields(r, f->trailer[d], f->ntrailer[d]))
            f->redacted = 1;
    }
    for (size_t i = 0; i < f->ninterim; i++)
        if (redact_fields(r, f->interim[i].hdr, f->interim[i].nhdr))
            f->redacted = 1;
    if (f->target && reel_redact_target(r, f->target, strlen(f->target), &t)) {
        free(f->target);
        f->target = t.data;
        f->redacted = 1;
    }
    for (int d = 0; d < 2; d++) {
        const uint8_t *p = body_data(f, d);
        size_t n = body_len(f, d);
        const hdr_t *ct = hdr_get(f, d, "content-type");
        if (!reel_redact_reads(ct ? ct->value : NULL, p, n))
            continue;
        if (reel_redact_body(r, ct ? ct->value : NULL, p, n, &t)) {
            /* The body is written as redacted and decoded: its size on
             * the wire (HAR bodySize, NDJSON body_size, raw's cut
             * field) is that of the bytes written, as its Content-Length
             * is, or a reader takes it for cut; with no Content-Encoding
             * left nothing was saved (HAR compression). A cut body that
             * was encoded keeps the wire's size: what it decodes to whole
             * is not known. */
            if (!f->cut[d] && !f->truncated[d])
                f->wire_size[d] = t.len;
            else if (!f->unencoded[d])
                f->wire_size[d] = resized(f->wire_size[d], n, t.len);
            else
                f->wire_encoded[d] = 1;
            f->unencoded[d] = 0;
            set_decoded(f, d, &t);
            f->rewritten[d] = 1;
            f->redacted = 1;
            head_says_decoded(f, d, f->decoded[d].len);
        }
    }
    for (size_t i = 0; i < f->nmsgs; i++) {
        msg_t *m = &f->msgs[i];
        const uint8_t *p = m->data.data ? m->data.data : (const uint8_t *)"";
        if (m->opcode > 2 || m->data.len == 0 || !reel_looks_text(p, m->data.len))
            continue;
        if (reel_redact_body(r, NULL, p, m->data.len, &t)) {
            /* the payload's length, and the flow's sizes that count it
             * (an upgrade's), are the redacted one's */
            int dm = m->from_client ? REQ : RESP;
            f->wire_size[dm] = resized(f->wire_size[dm], m->data.len, t.len);
            m->length = resized(m->length, m->data.len, t.len);
            reel_buf_reset(&m->data);
            reel_buf_append(&m->data, t.data, t.len);
            free(t.data);
            f->redacted = 1;
        }
    }
    if (f->error && reel_redact_text(r, f->error, strlen(f->error), &t)) {
        free(f->error);
        f->error = t.data;
    }
    /* Annotations are the user's words, and often quote a token or a
     * header they saw: every format that carries them (HAR's _reel and
     * comment, NDJSON's reel) gets them redacted. */
    size_t i;
    json_t *a;
    json_array_foreach(f->annotations, i, a) {
        reel_buf_t *b = &f->notes[i];
        if (reel_redact_note(r, b->data ? (const char *)b->data : "", b->len, &t)) {
            reel_buf_reset(b);
            reel_buf_append(b, t.data, t.len);
            free(t.data);
            note_text(a, b);
            f->redacted = 1;
        }
    }
}

/* ---- small formatting helpers ------------------------------------------- */

static void iso_time(int64_t us, char out[40]) {
    if (us < 0)
        us = 0;
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03dZ", (int)((us % 1000000) / 1000));
}

static json_t *b64_json(const uint8_t *p, size_t n) {
    size_t len;
    char *s = reel_base64(p, n, &len);
    json_t *j = json_stringn_nocheck(s, len);
    free(s);
    return j;
}

/* Bytes as a JSON string: as they are when UTF-8, else each byte as the
 * code point of its Latin-1 reading (reel_har_text). */
static json_t *text_json(const char *p, size_t n) {
    return reel_har_text(p, n, NULL);
}

/* Member key of obj: the bytes p[0..n) as text_json writes them, and,
 * when that text is not the bytes (they are not UTF-8), the bytes
 * themselves in base64 at obj._reel.KEY_b64, which reel import prefers
 * (docs/export.md): a header, URL or status text comes back byte for
 * byte, while HAR readers get the string they expect. */
static void set_text(json_t *obj, const char *key, const char *p, size_t n) {
    int exact;
    json_object_set_new(obj, key, reel_har_text(p, n, &exact));
    if (exact)
        return;
    json_t *rx = json_object_get(obj, "_reel");
    if (rx == NULL) {
        rx = json_object();
        json_object_set_new(obj, "_reel", rx);
    }
    char k[32];
    snprintf(k, sizeof k, "%s_b64", key);
    json_object_set_new(rx, k, b64_json((const uint8_t *)(p ? p : ""), n));
}

/* An annotation's text b, in its object a: as set_text writes a
 * header's value, so that bytes that are not UTF-8 come back as they were
 * (reel import reads _reel.text_b64). */
static void note_text(json_t *a, const reel_buf_t *b) {
    json_object_del(a, "_reel");
    set_text(a, "text", b->data ? (const char *)b->data : "", b->len);
}

/* Moves obj's _reel, if any, after its other members, where readers of
 * the HAR expect extensions. */
static void reel_last(json_t *obj) {
    json_t *rx = json_object_get(obj, "_reel");
    if (rx == NULL)
        return;
    json_incref(rx);
    json_object_del(obj, "_reel");
    json_object_set_new(obj, "_reel", rx);
}

static json_t *str_json(const char *s) {
    return text_json(s ? s : "", s ? strlen(s) : 0);
}

/* A body as JSON: text when it is text, else base64 with *b64 set. */
static json_t *body_json(const uint8_t *p, size_t n, int *b64) {
    *b64 = 0;
    if (reel_looks_text(p, n)) {
        json_t *j = json_stringn((const char *)p, n);
        if (j != NULL)
            return j;
    }
    *b64 = 1;
    return b64_json(p, n);
}

/* Whether f is a WebSocket, as the index decides its kind (index.c): a
 * 101 whose Upgrade names websocket, an HTTP/2 extended CONNECT with
 * :protocol websocket, or a flow with WebSocket messages (opcode not 0).
 * A 101 to another protocol is not one: its bytes are TCP messages
 * (opcode 0) of its own flow, and its HAR entry stays the http:// exchange
 * it was (har_entry: _reel.messages). */
static int is_websocket(const flow_t *f) {
    if (f->tunnel)
        return 0;
    if (ext_websocket(f) || (f->kind && strcmp(f->kind, "websocket") == 0))
        return 1;
    for (size_t i = 0; i < f->nmsgs; i++)
        if (f->msgs[i].opcode != 0)
            return 1;
    const hdr_t *up = hdr_get(f, RESP, "upgrade");
    ProtobufCBinaryData v = {up ? up->vlen : 0, up ? (uint8_t *)up->value : NULL};
    return f->status == 101 && up && reel_index_upgrade_is_websocket(&v);
}

/* Whether f switched protocols (a 101), to WebSocket or another one: its
 * request is a handshake, whose Upgrade and Connection a command keeps. */
static int is_upgrade(const flow_t *f) {
    return !f->tunnel && (f->status == 101 || is_websocket(f));
}

/* scheme://host[:port]target, owned; the target alone for a request
 * refused before its host was known (reel_index_url says the same). */
static char *flow_url(const flow_t *f, int ws) {
    if (f->host == NULL || f->host[0] == '\0')
        return reel_strdup(f->target ? f->target : "");
    const char *scheme = f->scheme ? f->scheme : "http";
    int https = strcmp(scheme, "https") == 0;
    uint32_t def = https ? 443 : 80;
    const char *host = f->host ? f->host : "";
    int v6 = strchr(host, ':') != NULL;
    char port[16] = "";
    if (f->port && f->port != def)
        snprintf(port, sizeof port, ":%u", (unsigned)f->port);
    const char *target = f->target && f->target[0] ? f->target : "/";
    if (target[0] == '*')
        target = "";
    return reel_asprintf("%s://%s%s%s%s%s", ws ? (https ? "wss" : "ws") : scheme, v6 ? "[" : "",
                         host, v6 ? "]" : "", port, target);
}

/* Whether the value of Host field h names the authority of f's URL (its
 * host, with its port unless that is the scheme's default): an HTTP/2
 * request may carry one that does not, beside :authority, which is what
 * reel forwarded (RFC 9113 8.3.1). */
static int host_names_url(const flow_t *f, const hdr_t *h) {
    const char *scheme = f->scheme ? f->scheme : "http";
    uint32_t def = strcmp(scheme, "https") == 0 ? 443 : 80;
    int v6 = strchr(f->host, ':') != NULL;
    char *a = reel_asprintf("%s%s%s", v6 ? "[" : "", f->host, v6 ? "]" : "");
    char *b = reel_asprintf("%s:%u", a, (unsigned)f->port);
    int same = (f->port == def && strlen(a) == h->vlen && strncasecmp(h->value, a, h->vlen) == 0) ||
               (strlen(b) == h->vlen && strncasecmp(h->value, b, h->vlen) == 0);
    free(a);
    free(b);
    return same;
}

/* ---- HAR ---------------------------------------------------------------- */

/* Fields as HAR writes headers: [{name, value}], with _reel.name_b64 or
 * value_b64 for bytes that are not UTF-8 (set_text). */
static json_t *fields_json(const hdr_t *h, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        set_text(o, "name", h[i].name, h[i].nlen);
        set_text(o, "value", h[i].value, h[i].vlen);
        reel_last(o);
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *har_headers(const flow_t *f, int d) {
    return fields_json(f->hdr[d], f->nhdr[d]);
}

static double ms(int64_t us) {
    return (double)us / 1000.0;
}

/* A time of flow f as ms after its start; -1 when unknown (0). */
static double since_start(const flow_t *f, int64_t us) {
    return us && us >= f->start_us ? ms(us - f->start_us) : -1;
}

/* What HAR 1.2 has no field for, in _reel: the flow's own times (its
 * entry's time is the sum of its timings: har_timings), the 1xx answers
 * before the final response and each body's trailer fields. */
static void har_reel_extras(json_t *r, const flow_t *f) {
    json_object_set_new(r, "duration_ms", json_real(since_start(f, f->end_us)));
    json_object_set_new(r, "request_end_ms", json_real(since_start(f, f->req_end_us)));
    json_object_set_new(r, "response_start_ms", json_real(since_start(f, f->resp_start_us)));
    if (f->ninterim) {
        json_t *a = json_array();
        for (size_t i = 0; i < f->ninterim; i++) {
            const interim_t *x = &f->interim[i];
            char t[40];
            iso_time(x->time_us, t);
            json_t *o = json_pack("{s:i}", "status", (int)x->status);
            set_text(o, "statusText", x->reason ? x->reason : "",
                     x->reason ? strlen(x->reason) : 0);
            json_object_set_new(o, "httpVersion", str_json(x->version));
            json_object_set_new(o, "headers", fields_json(x->hdr, x->nhdr));
            json_object_set_new(o, "time", json_string(t));
            reel_last(o);
            json_array_append_new(a, o);
        }
        json_object_set_new(r, "interim", a);
    }
    for (int d = 0; d < 2; d++) {
        if (f->has_trailers[d])
            json_object_set_new(r, d == REQ ? "request_trailers" : "response_trailers",
                                fields_json(f->trailer[d], f->ntrailer[d]));
        if (f->has_trailers[d] && f->trailers_held[d])
            json_object_set_new(
                r, d == REQ ? "request_trailers_not_passed_on" : "response_trailers_not_passed_on",
                json_true());
    }
}

static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* Cookies of the Cookie headers (request) or one per Set-Cookie (response). */
static json_t *har_cookies(const flow_t *f, int d) {
    json_t *a = json_array();
    for (size_t i = 0; i < f->nhdr[d]; i++) {
        const hdr_t *h = &f->hdr[d][i];
        if (!ieq(h->name, h->nlen, d == REQ ? "cookie" : "set-cookie"))
            continue;
        const char *s = h->value;
        size_t n = h->vlen, pos = 0;
        json_t *c = NULL;
        while (pos <= n) {
            size_t end = pos;
            while (end < n && s[end] != ';')
                end++;
            const char *part = s + pos;
            size_t plen = end - pos;
            trim(&part, &plen);
            const char *eq = memchr(part, '=', plen);
            size_t klen = eq ? (size_t)(eq - part) : plen;
            const char *val = eq ? eq + 1 : "";
            size_t vlen = eq ? plen - klen - 1 : 0;
            if (d == REQ || c == NULL) {
                if (plen > 0 && eq != NULL) {
                    c = json_pack("{s:o, s:o}", "name", text_json(part, klen), "value",
                                  text_json(val, vlen));
                    json_array_append_new(a, c);
                }
                if (c == NULL && d != REQ)
                    break; /* a Set-Cookie without name=value */
            } else if (ieq(part, klen, "path")) {
                json_object_set_new(c, "path", text_json(val, vlen));
            } else if (ieq(part, klen, "domain")) {
                json_object_set_new(c, "domain", text_json(val, vlen));
            } else if (ieq(part, klen, "httponly")) {
                json_object_set_new(c, "httpOnly", json_true());
            } else if (ieq(part, klen, "secure")) {
                json_object_set_new(c, "secure", json_true());
            }
            pos = end + 1;
        }
    }
    return a;
}

/* name=value pairs of an urlencoded list, as {name, value} objects. */
static json_t *har_pairs(const char *s, size_t n) {
    json_t *a = json_array();
    size_t pos = 0;
    while (pos < n) {
        size_t end = pos;
        while (end < n && s[end] != '&')
            end++;
        if (end > pos) {
            const char *eq = memchr(s + pos, '=', end - pos);
            size_t klen = eq ? (size_t)(eq - (s + pos)) : end - pos;
            json_array_append_new(
                a, json_pack("{s:o, s:o}", "name", text_json(s + pos, klen), "value",
                             eq ? text_json(eq + 1, end - pos - klen - 1) : json_string("")));
        }
        pos = end + 1;
    }
    return a;
}

/* HAR 1.2's timings and entry time. ssl "is also included in connect"
 * (reel records connect as TCP alone), and time must equal "the sum of
 * the timings supplied" but -1 ones (ssl counted in connect). It differs
 * from the flow's own duration, end minus start: reel's phases start at
 * the request head and leave gaps (the request body before the connection
 * is ready, say); the flow's own times are in _reel (duration_ms,
 * request_end_ms, response_start_ms: har_reel_extras), and reel import
 * reads them. */
static json_t *har_timings(const flow_t *f, double *total_ms) {
    int64_t v[7]; /* us, -1 unknown */
    static const char *const keys[7] = {"blocked", "dns",     "connect", "send",
                                        "wait",    "receive", "ssl"};
    if (f->has_timings) {
        for (int k = 0; k < 7; k++)
            v[k] = f->t[k] < 0 ? -1 : f->t[k];
    } else {
        for (int k = 0; k < 7; k++)
            v[k] = -1;
        v[3] = 0;
        v[4] = f->req_end_us && f->resp_start_us && f->resp_start_us >= f->req_end_us
                   ? f->resp_start_us - f->req_end_us
                   : 0;
        v[5] = f->resp_start_us && f->end_us >= f->resp_start_us ? f->end_us - f->resp_start_us : 0;
    }
    for (int k = 3; k < 6; k++) /* send, wait and receive must not be negative */
        if (v[k] < 0)
            v[k] = 0;
    if (v[6] >= 0)
        v[2] = (v[2] > 0 ? v[2] : 0) + v[6];
    int64_t sum = 0;
    for (int k = 0; k < 6; k++) /* ssl is in connect */
        if (v[k] > 0)
            sum += v[k];
    *total_ms = ms(sum);
    json_t *t = json_object();
    for (int k = 0; k < 7; k++)
        json_object_set_new(t, keys[k], json_real(v[k] < 0 ? -1 : ms(v[k])));
    return t;
}

/* Unknown opcodes read "other" here. */
static const char *opcode_name(uint32_t op) {
    const char *n = reel_store_opcode_name(op);
    return n ? n : "other";
}

/* Whether the client had not sent its whole request when the flow ended:
 * the final response came first (an origin's early 413, a final answer to
 * Expect: 100-continue) and the request never ended, which the record says
 * with a request_end_us of 0 (docs/format.md). The request body then holds
 * the bytes that came, and a HAR reader would take it, and its bodySize,
 * for the whole request. Not for a flow whose end is not known (still
 * open, or interrupted: its run ended first), nor for a handshake or a
 * tunnel, whose request has no body. */
static int request_unfinished(const flow_t *f) {
    return f->have_head[REQ] && f->have_head[RESP] && f->req_end_us == 0 && f->end_us != 0 &&
           !f->tunnel && !is_upgrade(f) && f->state != NULL &&
           strcmp(f->state, "interrupted") != 0 && strcmp(f->state, "open") != 0;
}

static json_t *reel_info(const flow_t *f) {
    json_t *r =
        json_pack("{s:I, s:o, s:o, s:o, s:b, s:O, s:O}", "id", (json_int_t)f->id, "uuid",
                  str_json(f->uuid), "source", str_json(f->source), "state", str_json(f->state),
                  "marked", f->marked, "tags", f->tags, "annotations", f->annotations);
    if (f->client_addr && f->client_addr[0])
        json_object_set_new(r, "client_addr", str_json(f->client_addr));
    if (f->server_addr && f->server_addr[0])
        json_object_set_new(r, "server_addr", str_json(f->server_addr));
    if (f->error)
        json_object_set_new(r, "error", str_json(f->error));
    if (f->generated)
        json_object_set_new(r, "generated", json_true());
    if (f->absolute_form)
        json_object_set_new(r, "absolute_form", json_true());
    if (f->reverse)
        json_object_set_new(r, "reverse", json_true());
    if (f->mapped_to)
        json_object_set_new(r, "mapped_to", str_json(f->mapped_to));
    if (f->original_dst)
        json_object_set_new(r, "original_dst", str_json(f->original_dst));
    if (f->local_file)
        json_object_set_new(r, "local_file", str_json(f->local_file));
    if (f->blocked_by)
        json_object_set_new(r, "blocked_by", str_json(f->blocked_by));
    if (f->modified[REQ])
        json_object_set(r, "request_modified", f->modified[REQ]);
    if (f->modified[RESP])
        json_object_set(r, "response_modified", f->modified[RESP]);
    if (f->body_edit[REQ])
        json_object_set(r, "request_body_edit", f->body_edit[REQ]);
    if (f->body_edit[RESP])
        json_object_set(r, "response_body_edit", f->body_edit[RESP]);
    if (f->excess)
        json_object_set_new(r, "response_excess", json_integer((json_int_t)f->excess));
    if (f->tls_version && f->tls_version[0])
        json_object_set_new(r, "tls_version", str_json(f->tls_version));
    if (f->alpn && f->alpn[0])
        json_object_set_new(r, "alpn", str_json(f->alpn));
    if (f->unverified)
        json_object_set_new(r, "unverified", json_true());
    if (f->verify_error)
        json_object_set_new(r, "verify_error", str_json(f->verify_error));
    if (f->peer_cert)
        json_object_set_new(r, "peer_cert", str_json(f->peer_cert));
    if (f->via) /* server_addr (serverIPAddress) is then the proxy's */
        json_object_set_new(r, "via", str_json(f->via));
    if (f->via_forward)
        json_object_set_new(r, "via_forward", json_true());
    if (f->dns_override) /* server_addr is then the entry's address */
        json_object_set_new(r, "dns_override", str_json(f->dns_override));
    if (f->client_cert_asked)
        json_object_set_new(r, "client_cert_asked", json_true());
    if (f->client_cert)
        json_object_set_new(r, "client_cert", str_json(f->client_cert));
    if (f->tls_resumed)
        json_object_set_new(r, "tls_resumed", json_true());
    if (f->client_tls)
        json_object_set(r, "client_tls", f->client_tls);
    for (int d = 0; d < 2; d++) {
        const char *key = d == REQ ? "request_truncated" : "response_truncated";
        if (f->truncated[d] || f->cut[d])
            json_object_set_new(r, key, json_true());
        if (f->decode_error[d])
            json_object_set_new(r, d == REQ ? "request_decode_error" : "response_decode_error",
                                str_json(f->decode_error[d]));
    }
    if (request_unfinished(f))
        json_object_set_new(r, "request_unfinished", json_true());
    if (f->msgs_cut)
        json_object_set_new(r, "messages_truncated", json_true());
    if (f->redacted)
        json_object_set_new(r, "redacted", json_true());
    return r;
}

static char *comment_text(const flow_t *f) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    size_t i;
    json_t *a;
    json_array_foreach(f->annotations, i, a) {
        if (b.len)
            reel_buf_puts(&b, "\n");
        reel_buf_puts(&b, json_string_value(json_object_get(a, "text")));
    }
    if (json_array_size(f->tags)) {
        if (b.len)
            reel_buf_puts(&b, "\n");
        reel_buf_puts(&b, "tags:");
        json_t *t;
        json_array_foreach(f->tags, i, t) {
            reel_buf_puts(&b, " ");
            reel_buf_puts(&b, json_string_value(t));
        }
    }
    for (int d = 0; d < 2; d++) {
        if (f->truncated[d] || f->cut[d]) {
            if (b.len)
                reel_buf_puts(&b, "\n");
            reel_buf_printf(&b, "%s body incomplete (%s)", d == REQ ? "request" : "response",
                            f->cut[d] ? "cut by reel export" : "cut by body_limit when recorded");
        }
    }
    if (request_unfinished(f)) {
        if (b.len)
            reel_buf_puts(&b, "\n");
        reel_buf_printf(&b,
                        "request unfinished: the response came before the client had sent the "
                        "whole request (bodySize counts the %llu bytes that came",
                        (unsigned long long)f->wire_size[REQ]);
        const hdr_t *cl = hdr_get(f, REQ, "content-length");
        /* digits alone: the comment is a JSON string, and bytes that are
         * not UTF-8 would make it invalid */
        if (cl != NULL && cl->vlen > 0 && cl->vlen < 20 &&
            strspn(cl->value, "0123456789") >= cl->vlen)
            reel_buf_printf(&b, " of the Content-Length's %.*s", (int)cl->vlen, cl->value);
        reel_buf_puts(&b, ")");
    }
    char *s = reel_strndup(b.data ? (const char *)b.data : "", b.len);
    reel_buf_free(&b);
    return s;
}

/* The TCP messages of an upgrade to a protocol other than WebSocket (the
 * bytes of one read each way, after the 101), for _reel.messages: HAR has
 * no field for them, and _webSocketMessages is for WebSocket frames
 * (opcode 1|2|8|9|10, which these are not). Shaped as those are, without
 * an opcode, the data as a body is written (text, or base64 with
 * "encoding"); reel import reads them back (check_message in har.c). */
static json_t *har_tcp_messages(const flow_t *f) {
    json_t *msgs = json_array();
    for (size_t i = 0; i < f->nmsgs; i++) {
        const msg_t *m = &f->msgs[i];
        const uint8_t *p = m->data.data ? m->data.data : (const uint8_t *)"";
        int b64;
        json_t *jm =
            json_pack("{s:s, s:f, s:o}", "type", m->from_client ? "send" : "receive", "time",
                      (double)m->time_us / 1e6, "data", body_json(p, m->data.len, &b64));
        if (b64)
            json_object_set_new(jm, "encoding", json_string("base64"));
        if (m->truncated) {
            json_object_set_new(jm, "truncated", json_true());
            json_object_set_new(jm, "length", json_integer((json_int_t)m->length));
        }
        json_array_append_new(msgs, jm);
    }
    return msgs;
}

static json_t *har_entry(const flow_t *f) {
    int ws = is_websocket(f);
    /* an upgrade's handshake has no body: the sizes its end record has
     * (the index's too) count the messages' bytes after the 101 */
    int up = is_upgrade(f);
    char started[40];
    iso_time(f->start_us, started);
    char *url = flow_url(f, ws);
    /* the query ends at the fragment, if any, and a '?' after a '#' is
     * the fragment's (RFC 3986 3.4, 3.5) */
    const char *q = f->target ? strchr(f->target, '?') : NULL;
    const char *hash = f->target ? strchr(f->target, '#') : NULL;
    if (q && hash && hash < q)
        q = NULL;
    size_t qlen = q ? (hash ? (size_t)(hash - q - 1) : strlen(q + 1)) : 0;

    json_t *req = json_pack("{s:o}", "method", str_json(f->method));
    set_text(req, "url", url, strlen(url));
    free(url);
    json_object_update_new(
        req,
        json_pack("{s:o, s:o, s:o, s:o, s:i, s:I}", "httpVersion", str_json(f->version[REQ]),
                  "cookies", har_cookies(f, REQ), "headers", har_headers(f, REQ), "queryString",
                  q ? har_pairs(q + 1, qlen) : json_array(), "headersSize", -1, "bodySize",
                  up          ? (json_int_t)0
                  : !f->ended ? (json_int_t)-1 /* (still open: its size is not known yet) */
                              : (json_int_t)f->wire_size[REQ]));
    size_t rn = body_len(f, REQ);
    if (rn > 0) {
        const hdr_t *ct = hdr_get(f, REQ, "content-type");
        int b64;
        const uint8_t *p = body_data(f, REQ);
        json_t *post =
            json_pack("{s:o, s:o}", "mimeType", ct ? str_json(ct->value) : json_string(""), "text",
                      body_json(p, rn, &b64));
        if (b64)
            json_object_set_new(post, "encoding", json_string("base64"));
        if (!b64 && ct && strncasecmp(ct->value, "application/x-www-form-urlencoded", 33) == 0)
            json_object_set_new(post, "params", har_pairs((const char *)p, rn));
        else
            json_object_set_new(post, "params", json_array());
        json_object_set_new(req, "postData", post);
    }
    reel_last(req);

    const hdr_t *ct = hdr_get(f, RESP, "content-type");
    size_t sn = body_len(f, RESP);
    json_t *content = json_pack("{s:I, s:o}", "size", (json_int_t)sn, "mimeType",
                                ct ? str_json(ct->value) : json_string("x-unknown"));
    if (sn > 0) {
        int b64;
        json_object_set_new(content, "text", body_json(body_data(f, RESP), sn, &b64));
        if (b64)
            json_object_set_new(content, "encoding", json_string("base64"));
    }
    /* HAR 1.2: size, the decoded length, is "bigger when the content has
     * been compressed", compression the "number of bytes saved": known for
     * a body reel decoded whole; absent for a body with no
     * Content-Encoding, which saved nothing (nor one redaction rewrote,
     * written without it), and for a cut one */
    size_t plain = f->plain_len[RESP];
    if (f->unencoded[RESP] && !f->cut[RESP] && !f->truncated[RESP] && plain > f->wire_size[RESP])
        json_object_set_new(content, "compression",
                            json_integer((json_int_t)(plain - f->wire_size[RESP])));
    /* the Location as written: redact_flow has redacted it in place */
    const hdr_t *loc = hdr_get(f, RESP, "location");
    json_t *resp = json_pack(
        "{s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:I}", "status",
        f->have_head[RESP] ? (int)f->status : 0, "statusText", str_json(f->reason), "httpVersion",
        str_json(f->version[RESP] ? f->version[RESP] : f->version[REQ]), "cookies",
        har_cookies(f, RESP), "headers", har_headers(f, RESP), "content", content, "redirectURL",
        loc ? text_json(loc->value, loc->vlen) : json_string(""), "headersSize", -1, "bodySize",
        !f->have_head[RESP] || (!f->ended && !up) ? (json_int_t)-1
        : up                                      ? (json_int_t)0
                                                  : (json_int_t)f->wire_size[RESP]);
    if (!f->have_head[RESP]) {
        /* what reel import made of a HAR status 0 goes back as it came */
        static const char pre[] = "no response (HAR status 0)";
        const char *why = f->error ? f->error : "no response recorded";
        if (strncmp(why, pre, sizeof pre - 1) == 0)
            why = why[sizeof pre - 1] == ':' ? why + sizeof pre + 1 : NULL;
        if (why != NULL && why[0])
            json_object_set_new(resp, "_error", str_json(why));
    }
    /* the reason's bytes when they are not UTF-8 (status lines may have
     * obs-text) */
    set_text(resp, "statusText", f->reason ? f->reason : "", f->reason ? strlen(f->reason) : 0);
    reel_last(resp);

    double total;
    json_t *timings = har_timings(f, &total);
    char *comment = comment_text(f);
    json_t *e = json_pack("{s:s, s:s, s:f, s:o, s:o, s:{}, s:o}", "pageref", "page_1",
                          "startedDateTime", started, "time", total, "request", req, "response",
                          resp, "cache", "timings", timings);
    const char *addr = f->conn_addr && f->conn_addr[0] ? f->conn_addr : f->server_addr;
    if (addr && addr[0]) {
        /* "ip:port" or "[v6]:port" -> the address alone */
        const char *a0 = addr, *colon = strrchr(addr, ':');
        size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
        if (a0[0] == '[' && n >= 2 && a0[n - 1] == ']') {
            a0++;
            n -= 2;
        }
        json_object_set_new(e, "serverIPAddress", text_json(a0, n));
    }
    if (f->conn_id) {
        char c[32];
        snprintf(c, sizeof c, "%llu", (unsigned long long)f->conn_id);
        json_object_set_new(e, "connection", json_string(c));
    }
    if (comment[0])
        json_object_set_new(e, "comment", str_json(comment));
    free(comment);
    if (ws) {
        json_object_set_new(e, "_resourceType", json_string("websocket"));
        json_t *msgs = json_array();
        for (size_t i = 0; i < f->nmsgs; i++) {
            const msg_t *m = &f->msgs[i];
            const uint8_t *p = m->data.data ? m->data.data : (const uint8_t *)"";
            /* text as text, as Chromium writes it, unless its bytes are not
             * UTF-8 (body_limit cut a character in two): then, as any
             * other opcode's, base64, said by "encoding" (read as text,
             * one character per byte, it came back as other bytes) */
            json_t *data = m->opcode == 1 ? json_stringn((const char *)p, m->data.len) : NULL;
            int b64 = data == NULL;
            if (b64)
                data = b64_json(p, m->data.len);
            json_t *jm =
                json_pack("{s:s, s:f, s:i, s:o}", "type", m->from_client ? "send" : "receive",
                          "time", (double)m->time_us / 1e6, "opcode", (int)m->opcode, "data", data);
            if (b64 && m->opcode == 1)
                json_object_set_new(jm, "encoding", json_string("base64"));
            if (m->compressed) /* not Chromium's: reel import reads it back */
                json_object_set_new(jm, "compressed", json_true());
            if (m->truncated) { /* data is the part body_limit kept of length bytes */
                json_object_set_new(jm, "truncated", json_true());
                json_object_set_new(jm, "length", json_integer((json_int_t)m->length));
            }
            /* a close body_limit cut before its code's two bytes: the
             * record has the code all the same (not Chromium's: reel
             * import reads it back) */
            if (m->opcode == 8 && m->truncated && m->data.len < 2 && m->close_code != 0)
                json_object_set_new(jm, "closeCode", json_integer((json_int_t)m->close_code));
            json_array_append_new(msgs, jm);
        }
        json_object_set_new(e, "_webSocketMessages", msgs);
    }
    json_t *r = reel_info(f);
    har_reel_extras(r, f);
    if (!ws && f->nmsgs > 0 && !f->tunnel)
        json_object_set_new(r, "messages", har_tcp_messages(f));
    json_object_set_new(e, "_reel", r);
    return e;
}

/* ---- curl --------------------------------------------------------------- */

/* Writes s[0..n) single-quoted for bash (any byte but NUL). */
static void sq(FILE *out, const char *s, size_t n) {
    fputc('\'', out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'')
            fputs("'\\''", out);
        else
            fputc(s[i], out);
    }
    fputc('\'', out);
}

static void sqs(FILE *out, const char *s) {
    sq(out, s, strlen(s));
}

static reel_rc write_body_file(const char *dir, uint64_t id, const char *what, const uint8_t *p,
                               size_t n, char **path, reel_err_t *err) {
    *path = reel_asprintf("%s/%llu.%s", dir, (unsigned long long)id, what);
    FILE *f = fopen(*path, "wb");
    if (f == NULL)
        return reel_err_errno(err, REEL_IO, errno, "%s", *path);
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    int bad = w != n;
    if (fclose(f) != 0 || bad)
        return reel_err_errno(err, REEL_IO, errno ? errno : EIO, "writing %s", *path);
    return REEL_OK;
}

/* The body raw and curl write for direction d: stored bytes, unless
 * redaction rewrote it. */
static const uint8_t *wire_body(const flow_t *f, int d, size_t *n) {
    if (f->rewritten[d]) {
        *n = f->decoded[d].len;
        return f->decoded[d].data ? f->decoded[d].data : (const uint8_t *)"";
    }
    *n = f->stored[d].len;
    return f->stored[d].data ? f->stored[d].data : (const uint8_t *)"";
}

/* How much of the body of direction d was stored, when not all of it
 * was (body_limit, capture falling behind, the export cap): "1000 of 2000
 * bytes stored", or "1000 bytes stored, not all" when the size on the
 * wire is not known; NULL for a body stored whole. Owned. */
static char *body_cut(const flow_t *f, int d) {
    size_t n;
    wire_body(f, d, &n);
    /* a body redaction rewrote is written as redacted, and its size
     * made the redacted one's (redact_flow) */
    size_t stored = f->rewritten[d] ? n : f->stored[d].len;
    /* an upgrade's end record counts its messages' bytes in its sizes, and
     * a body stored decoded was counted encoded: neither compares */
    const hdr_t *ce = hdr_get(f, d, "content-encoding");
    /* (an import stores a HAR's responses as decoded: without a coding,
     * decoded is the wire's bytes, whose size compares) */
    int decoded = f->body_decoded[d] && ce && !reel_coding_is_identity(ce->value, ce->vlen);
    int known =
        f->ended && !is_upgrade(f) && !decoded && !f->wire_encoded[d] && f->wire_size[d] > stored;
    if (known)
        return reel_asprintf("%zu of %llu bytes stored", stored,
                             (unsigned long long)f->wire_size[d]);
    return f->cut[d] || f->truncated[d] ? reel_asprintf("%zu bytes stored, not all", stored) : NULL;
}

/* raw and curl write a body stored decoded (reel import of a HAR, which
 * holds bodies without their Content-Encoding, keeps the header) as it is:
 * decoded, so its head must say so, as a body redaction rewrote does. */
static void wire_heads(flow_t *f) {
    for (int d = 0; d < 2; d++) {
        if (!f->body_decoded[d] || f->rewritten[d] || hdr_get(f, d, "content-encoding") == NULL)
            continue;
        size_t n;
        wire_body(f, d, &n);
        head_says_decoded(f, d, n);
    }
}

/* A field as a comment's text: one line of printable ASCII. */
static void comment_bytes(FILE *out, const char *s, size_t n) {
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        fputc(c >= 0x20 && c < 0x7f ? c : '?', out);
    }
}

/* Whether the comma-separated list v[0..n) holds token[0..tl), without
 * case (an empty token never). */
static int lists_token(const char *v, size_t n, const char *token, size_t tl) {
    size_t pos = 0;
    while (pos <= n) {
        size_t end = pos;
        while (end < n && v[end] != ',')
            end++;
        const char *opt = v + pos;
        size_t olen = end - pos;
        trim(&opt, &olen);
        if (olen && olen == tl && strncasecmp(opt, token, tl) == 0)
            return 1;
        pos = end + 1;
    }
    return 0;
}

/* Whether a request field is hop-by-hop (RFC 9110 7.6.1): for the next
 * hop only, which was reel; reel replay leaves these out
 * (core/replay_send.c send_headers by reel_h1_hop), and a command sending
 * them to the origin would hand it, say, the user's Proxy-Authorization.
 * The list is reel_h1_is_hop_by_hop's (core/http1.c, which this library
 * does not link): the fixed names and those a Connection field names. */
static int hop_by_hop(const flow_t *f, const hdr_t *h) {
    static const char *const fixed[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "proxy-authenticate",
                                        "proxy-authorization",
                                        "te",
                                        "trailer",
                                        "transfer-encoding",
                                        "upgrade"};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
        if (ieq(h->name, h->nlen, fixed[k]))
            return 1;
    for (size_t i = 0; i < f->nhdr[REQ]; i++) {
        const hdr_t *c = &f->hdr[REQ][i];
        if (ieq(c->name, c->nlen, "connection") && lists_token(c->value, c->vlen, h->name, h->nlen))
            return 1;
    }
    return 0;
}

/* Most bytes of a body passed inline as one curl argument. Linux caps one
 * execve argument at 128 KiB (MAX_ARG_STRLEN): past it the shell cannot
 * start curl ("Argument list too long"). A longer body goes through the
 * printf pipe, printf being a builtin of bash and dash (no execve, no cap). */
#define CURL_INLINE_MAX ((size_t)64 * 1024)

/* The Sec-WebSocket-Key of the HTTP/1.1 handshake written for an HTTP/2
 * WebSocket, which had none (RFC 8441): RFC 6455's sample nonce. */
static const char ws_sample_key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static reel_rc write_curl(FILE *out, const flow_t *f, const reel_export_opts_t *o,
                          reel_err_t *err) {
    fprintf(out, "# flow %llu\n", (unsigned long long)f->id);
    const hdr_t *proto = ext_protocol(f);
    int ws_h1 = 0; /* an HTTP/2 WebSocket, written as its HTTP/1.1 handshake */
    if (proto != NULL) {
        /* curl cannot send an extended CONNECT (nor any pseudo-header
         * field): -X CONNECT with ':protocol' as a header is no request */
        fputs("# an HTTP/2 extended CONNECT (RFC 8441, :protocol ", out);
        comment_bytes(out, proto->value, proto->vlen);
        fputs(") that curl cannot send", out);
        if (!ext_websocket(f)) {
            fputs(": no command\n", out);
            return REEL_OK;
        }
        fputs(": this WebSocket's HTTP/1.1 handshake instead (GET with Upgrade, as reel asks an "
              "HTTP/1.1 origin; Sec-WebSocket-Key is RFC 6455's sample)\n",
              out);
        ws_h1 = 1;
    }
    char *url = flow_url(f, 0);
    size_t n;
    const uint8_t *p = wire_body(f, REQ, &n);
    if (ws_h1)
        n = 0; /* a handshake has no body (what followed is the messages) */
    int piped = n > 0 && o->body_dir == NULL && (n > CURL_INLINE_MAX || memchr(p, '\0', n) != NULL);
    char *cut = ws_h1 ? NULL : body_cut(f, REQ);
    if (cut) { /* what is sent is what was stored: said, as raw's X-Reel-Body-Cut says it */
        fprintf(out, "# not sent whole: the request body was not stored whole (%s)\n", cut);
        free(cut);
    }
    if (f->ntrailer[REQ]) {
        /* curl's command line cannot send trailer fields: said, not dropped */
        fputs("# not sent: curl cannot send the request's trailer fields (", out);
        for (size_t i = 0; i < f->ntrailer[REQ]; i++) {
            if (i)
                fputs(", ", out);
            /* a comment stays one line */
            comment_bytes(out, f->trailer[REQ][i].name, f->trailer[REQ][i].nlen);
        }
        fputs(")\n", out);
    }
    if (piped) { /* NUL bytes, or too many bytes, for an argument: printf them into a pipe */
        fputs("printf '", out);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = p[i];
            /* A format starting with '-' is an option to printf (every
             * multipart body starts "--"): write that byte as an escape. */
            if (c == '%')
                fputs("%%", out);
            else if (c == '\\')
                fputs("\\\\", out);
            else if (c == '\'' || c < 0x20 || c >= 0x7f || (i == 0 && c == '-'))
                fprintf(out, "\\%03o", c);
            else
                fputc(c, out);
        }
        fputs("' | ", out);
    }
    fputs("curl -sS -g --path-as-is", out);
    const char *v = ws_h1 ? "HTTP/1.1" : f->version[REQ] ? f->version[REQ] : "";
    if (strcmp(v, "HTTP/1.0") == 0)
        fputs(" --http1.0", out);
    else if (strncmp(v, "HTTP/1", 6) == 0)
        fputs(" --http1.1", out);
    else if (strncmp(v, "HTTP/2", 6) == 0)
        fputs(" --http2", out);
    if (strcmp(f->method, "HEAD") == 0) {
        fputs(" --head", out);
    } else {
        fputs(" -X ", out);
        sqs(out, ws_h1 ? "GET" : f->method);
    }
    if (f->target && strcmp(f->target, "*") == 0)
        fputs(" --request-target '*'", out); /* OPTIONS *: the URL alone would ask for / */
    fputc(' ', out);
    sqs(out, url);
    free(url);
    if (ws_h1) {
        fputs(" \\\n  -H 'Upgrade: websocket' \\\n  -H 'Connection: Upgrade' \\\n  -H ", out);
        char *key = reel_asprintf("Sec-WebSocket-Key: %s", ws_sample_key);
        sqs(out, key);
        free(key);
    }
    int up = is_upgrade(f), te_trailers = 0;
    for (size_t i = 0; i < f->nhdr[REQ]; i++) {
        const hdr_t *h = &f->hdr[REQ][i];
        if (ieq(h->name, h->nlen, "content-length"))
            continue;
        if (!up && !te_trailers && ieq(h->name, h->nlen, "te") &&
            lists_token(h->value, h->vlen, "trailers", 8)) {
            /* what reel sent on (core/exchange.c write_head): gRPC servers
             * refuse a request without it */
            fputs(" \\\n  -H 'TE: trailers' \\\n  -H 'Connection: TE'", out);
            te_trailers = 1;
            continue;
        }
        if (hop_by_hop(f, h)) {
            /* but an upgrade's (a WebSocket's) command is its handshake,
             * which needs them, and curl sends a body chunked when told so */
            int keep =
                (up && (ieq(h->name, h->nlen, "connection") || ieq(h->name, h->nlen, "upgrade"))) ||
                (n > 0 && ieq(h->name, h->nlen, "transfer-encoding") &&
                 strcasestr(h->value, "chunked"));
            if (!keep)
                continue;
        }
        if (is_pseudo(h))
            continue; /* curl sends none: an HTTP/2 head's are in the URL and method */
        if ((f->absolute_form || f->reverse) && ieq(h->name, h->nlen, "host"))
            continue; /* the origin got Host from the URL (RFC 9112 3.2.2), as curl makes it */
        if (ws_h1 && (ieq(h->name, h->nlen, "upgrade") || ieq(h->name, h->nlen, "connection") ||
                      ieq(h->name, h->nlen, "sec-websocket-key")))
            continue; /* written above */
        if (memchr(h->name, '\0', h->nlen) || memchr(h->value, '\0', h->vlen))
            continue; /* cannot be passed in an argument */
        char *line =
            h->vlen ? reel_asprintf("%s: %s", h->name, h->value) : reel_asprintf("%s;", h->name);
        fputs(" \\\n  -H ", out);
        sqs(out, line);
        free(line);
    }
    /* Fields curl adds on its own, which the request did not have: an
     * empty value (-H 'Name:') tells curl to send none. Content-Type is
     * curl's form type for a body, Expect its 100-continue for one over
     * 1 KiB (1 MiB in newer curl versions); never over HTTP/1.0. */
    static const char *const added[] = {"accept", "user-agent", "content-type", "expect"};
    static const char *const removal[] = {"Accept:", "User-Agent:", "Content-Type:", "Expect:"};
    /* An empty body its request said (Content-Length: 0, as RFC 9110 8.6
     * has a POST send): curl counts a body only when given one */
    int empty_cl =
        n == 0 && strcmp(f->method, "HEAD") != 0 && hdr_get(f, REQ, "content-length") != NULL;
    for (int k = 0; k < 4; k++) {
        if (hdr_get(f, REQ, added[k]) != NULL || (k == 2 && n == 0 && !empty_cl) ||
            (k == 3 && (n <= 1024 || strcmp(v, "HTTP/1.0") == 0)))
            continue;
        fputs(" \\\n  -H ", out);
        sqs(out, removal[k]);
    }
    reel_rc rc = REEL_OK;
    if (n > 0) {
        if (o->body_dir != NULL) {
            /* From stdin, redirected from the file: the shell refuses a
             * file it cannot open and curl does not run, where curl's
             * @FILE only warns (silent under -s) and sends an empty body.
             * body_dir is absolute (reel_export): the script runs from
             * any directory. */
            char *path = NULL;
            rc = write_body_file(o->body_dir, f->id, "request", p, n, &path, err);
            fputs(" \\\n  --data-binary @- < ", out);
            sqs(out, path);
            free(path);
        } else if (piped) {
            fputs(" \\\n  --data-binary @-", out);
        } else {
            /* --data-raw: a body starting with '@' is bytes, not a file name */
            fputs(" \\\n  --data-raw ", out);
            sq(out, (const char *)p, n);
        }
    } else if (empty_cl) {
        fputs(" \\\n  --data-raw ''", out);
    }
    fputc('\n', out);
    return rc;
}

/* ---- raw ---------------------------------------------------------------- */

/* Field lines and the empty line that ends them. */
static void raw_fields(FILE *out, const hdr_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (is_pseudo(&h[i]))
            continue; /* no field line: an HTTP/2 head's request line says it (write_raw) */
        fwrite(h[i].name, 1, h[i].nlen, out);
        fputs(": ", out);
        fwrite(h[i].value, 1, h[i].vlen, out);
        fputs("\r\n", out);
    }
    fputs("\r\n", out);
}

/* A head's field lines (an extended CONNECT's :protocol is in its URL). */
static void raw_head_lines(FILE *out, const flow_t *f, int d) {
    raw_fields(out, f->hdr[d], f->nhdr[d]);
}

static int chunked(const flow_t *f, int d) {
    for (size_t i = 0; i < f->nhdr[d]; i++) {
        const hdr_t *h = &f->hdr[d][i];
        if (ieq(h->name, h->nlen, "transfer-encoding") && strcasestr(h->value, "chunked"))
            return 1;
    }
    return 0;
}

/* The body, then its trailer fields: in the last chunk of a chunked body
 * (as on the wire); after any other body (HTTP/2, where they came in a
 * HEADERS frame after the DATA) as field lines and an empty line. */
static void raw_body(FILE *out, const flow_t *f, int d) {
    size_t n;
    const uint8_t *p = wire_body(f, d, &n);
    if (chunked(f, d)) {
        if (n)
            fprintf(out, "%zx\r\n", n);
        fwrite(p, 1, n, out);
        fputs(n ? "\r\n0\r\n" : "0\r\n", out);
        raw_fields(out, f->trailer[d], f->ntrailer[d]);
    } else {
        fwrite(p, 1, n, out);
        if (f->has_trailers[d])
            raw_fields(out, f->trailer[d], f->ntrailer[d]);
    }
}

/* Adds the field name: value to the head of direction d: before its
 * fields when first, else after them. */
static void hdr_add(flow_t *f, int d, const char *name, const char *value, int first) {
    f->hdr[d] = reel_realloc(f->hdr[d], (f->nhdr[d] + 1) * sizeof *f->hdr[d]);
    hdr_t *h = &f->hdr[d][f->nhdr[d]];
    if (first) {
        memmove(f->hdr[d] + 1, f->hdr[d], f->nhdr[d] * sizeof *f->hdr[d]);
        h = &f->hdr[d][0];
    }
    f->nhdr[d]++;
    h->name = reel_strdup(name);
    h->nlen = strlen(name);
    h->value = reel_strdup(value);
    h->vlen = strlen(value);
}

/* Sets every Content-Length of direction d to n, or adds one. */
static void hdr_set_length(flow_t *f, int d, size_t n) {
    char num[32];
    int k = snprintf(num, sizeof num, "%zu", n);
    int found = 0;
    for (size_t i = 0; i < f->nhdr[d]; i++) {
        hdr_t *h = &f->hdr[d][i];
        if (ieq(h->name, h->nlen, "content-length")) {
            hdr_set_value(h, num, (size_t)k);
            found = 1;
        }
    }
    if (!found)
        hdr_add(f, d, "Content-Length", num, 0);
}

/* Whether direction d of f is a response that has no body whatever its
 * fields say (RFC 9112 6.3): one to HEAD, a 1xx, 204 or 304, a 2xx to
 * CONNECT. */
static int bodiless(const flow_t *f, int d) {
    return d == RESP && ((f->method && (strcmp(f->method, "HEAD") == 0 ||
                                        (strcmp(f->method, "CONNECT") == 0 && f->status < 300))) ||
                         f->status < 200 || f->status == 204 || f->status == 304);
}

/* Whether the Content-Length of direction d promises more than the n
 * bytes raw writes of a body that has one (not bodiless); sets *wire to
 * it. */
static int says_more(const flow_t *f, int d, size_t n, unsigned long long *wire) {
    const hdr_t *h = hdr_get(f, d, "content-length");
    if (h == NULL || bodiless(f, d))
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(h->value, &end, 10);
    if (end == h->value || *end != '\0' || errno != 0 || h->value[0] == '-')
        return 0;
    *wire = v;
    return v > n;
}

/* Makes each head of f frame the body raw writes, so that a raw export is
 * a sequence of messages an HTTP/1.1 parser reads one after the other:
 * a body not stored whole (body_limit, capture falling behind, the export
 * cap) says so in an X-Reel-Body-Cut field and, unless chunked (written
 * as one chunk of what was stored), has the Content-Length of the bytes
 * written, not the wire's, which would take the next flow's head for
 * body; a body with no framing at all (an imported one, a response
 * that ran to the close) gets a Content-Length, an empty response's 0;
 * an HTTP/1 request in origin form without a Host (an
 * imported one) gets the Host its URL names (RFC 9112 3.2). */
static void raw_heads(flow_t *f) {
    if (f->tunnel)
        return;
    for (int d = 0; d < 2; d++) {
        if (!f->have_head[d])
            continue;
        size_t n;
        unsigned long long wire = 0;
        wire_body(f, d, &n);
        size_t stored = f->rewritten[d] ? n : f->stored[d].len;
        char *why = body_cut(f, d);
        if (why) {
            hdr_add(f, d, "X-Reel-Body-Cut", why, 0);
            free(why);
            if (!chunked(f, d))
                hdr_set_length(f, d, n);
        } else if (!chunked(f, d) && says_more(f, d, n, &wire)) {
            /* a flow still open, or its recording cut off: no end record
             * says so, its Content-Length does; or one that ended with
             * less than that (reel refused the head, say): its end record
             * says how much came */
            why = f->ended ? reel_asprintf("%zu bytes recorded of the %llu the head declares: the "
                                           "flow ended before the rest",
                                           stored, wire)
                           : reel_asprintf("%zu of %llu bytes stored", stored, wire);
            hdr_add(f, d, "X-Reel-Body-Cut", why, 0);
            free(why);
            hdr_set_length(f, d, n);
        } else if ((n > 0 || (d == RESP && !bodiless(f, d))) && !chunked(f, d) &&
                   hdr_get(f, d, "content-length") == NULL) {
            /* an empty response too: without a length it would run to the
             * end of the file (RFC 9112 6.3), taking the next flow along */
            hdr_set_length(f, d, n);
        }
    }
    if (f->have_head[REQ] && strncmp(f->version[REQ], "HTTP/1", 6) == 0 && !f->absolute_form &&
        f->host && f->host[0] && f->target && f->target[0] && hdr_get(f, REQ, "host") == NULL) {
        uint32_t def = f->scheme && strcmp(f->scheme, "https") == 0 ? 443 : 80;
        int v6 = strchr(f->host, ':') != NULL;
        char port[16] = "";
        if (f->port && f->port != def)
            snprintf(port, sizeof port, ":%u", (unsigned)f->port);
        char *host = reel_asprintf("%s%s%s%s", v6 ? "[" : "", f->host, v6 ? "]" : "", port);
        hdr_add(f, REQ, "Host", host, 1);
        free(host);
    }
}

static void write_raw(FILE *out, const flow_t *f) {
    if (f->have_head[REQ]) {
        /* An HTTP/2 request names its scheme and authority in pseudo-header
         * fields, not in a Host field: without one the request line takes
         * the absolute form (as mitmproxy writes it), or the host is lost. */
        /* An extended CONNECT's :protocol websocket is said by the URL's
         * scheme, ws:// or wss://, as HAR writes a WebSocket's URL. */
        int ws = ext_websocket(f);
        /* ... and a request the client sent in absolute form keeps it */
        /* (a Host that names another authority than :authority did: that
         * is not where it went) */
        const hdr_t *hh = hdr_get(f, REQ, "host");
        int absolute = f->host && f->host[0] &&
                       ((strncmp(f->version[REQ], "HTTP/2", 6) == 0 &&
                         (hh == NULL || ws || !host_names_url(f, hh))) ||
                        f->absolute_form);
        char *url = absolute ? flow_url(f, ws) : NULL;
        /* A tunnel's head has no target: the request line names the
         * authority it was opened to (CONNECT host:port), as reel flow does. */
        if (!(f->target && f->target[0]) && f->host && f->host[0]) {
            free(url);
            int v6 = strchr(f->host, ':') != NULL;
            url = reel_asprintf("%s%s%s:%u", v6 ? "[" : "", f->host, v6 ? "]" : "",
                                (unsigned)f->port);
        }
        fprintf(out, "%s %s %s\r\n", f->method,
                url                         ? url
                : f->target && f->target[0] ? f->target
                                            : "/",
                f->version[REQ][0] ? f->version[REQ] : "HTTP/1.1");
        free(url);
        raw_head_lines(out, f, REQ);
        raw_body(out, f, REQ);
    }
    for (size_t i = 0; i < f->ninterim; i++) { /* 100 Continue, 103 Early Hints */
        const interim_t *x = &f->interim[i];
        fprintf(out, "%s %u %s\r\n", x->version[0] ? x->version : "HTTP/1.1", (unsigned)x->status,
                x->reason);
        raw_fields(out, x->hdr, x->nhdr);
    }
    if (f->have_head[RESP]) {
        fprintf(out, "%s %u %s\r\n", f->version[RESP][0] ? f->version[RESP] : "HTTP/1.1",
                (unsigned)f->status, f->reason);
        raw_head_lines(out, f, RESP);
        /* no body, whatever its fields (a HEAD answer's Transfer-Encoding:
         * chunked got a last chunk, which a parser read as the next
         * request line) */
        if (!bodiless(f, RESP))
            raw_body(out, f, RESP);
    }
    for (size_t i = 0; i < f->nmsgs; i++) /* WebSocket messages, TCP bytes: the payloads */
        if (f->msgs[i].data.len)
            fwrite(f->msgs[i].data.data, 1, f->msgs[i].data.len, out);
}

/* ---- ndjson ------------------------------------------------------------- */

static json_t *nd_headers(const flow_t *f, int d) {
    return har_headers(f, d);
}

static reel_rc nd_body(json_t *obj, const flow_t *f, int d, const reel_export_opts_t *o,
                       reel_err_t *err) {
    size_t n = body_len(f, d);
    const uint8_t *p = body_data(f, d);
    json_object_set_new(obj, "body_size", json_integer((json_int_t)f->wire_size[d]));
    json_object_set_new(obj, "body_stored", json_integer((json_int_t)n));
    if (f->truncated[d] || f->cut[d])
        json_object_set_new(obj, "truncated", json_true());
    if (n == 0)
        return REEL_OK;
    if (o->body_dir != NULL) {
        char *path = NULL;
        reel_rc rc = write_body_file(o->body_dir, f->id, d == REQ ? "request" : "response", p, n,
                                     &path, err);
        json_object_set_new(obj, "body_file", str_json(path));
        free(path);
        return rc;
    }
    int b64;
    json_t *b = body_json(p, n, &b64);
    json_object_set_new(obj, b64 ? "body_b64" : "body", b);
    return REEL_OK;
}

static reel_rc write_ndjson(FILE *out, const flow_t *f, const reel_export_opts_t *o,
                            reel_err_t *err) {
    char started[40];
    iso_time(f->start_us, started);
    json_t *j = reel_info(f);
    json_object_set_new(j, "kind", str_json(f->kind));
    json_object_set_new(j, "start", json_string(started));
    json_object_set_new(j, "start_us", json_integer(f->start_us));
    if (f->end_us)
        json_object_set_new(j, "duration_ms", json_real(ms(f->end_us - f->start_us)));
    reel_rc rc = REEL_OK;
    if (f->have_head[REQ]) {
        char *url = flow_url(f, 0);
        json_t *req =
            json_pack("{s:o, s:o, s:o, s:I}", "method", str_json(f->method), "scheme",
                      str_json(f->scheme), "host", str_json(f->host), "port", (json_int_t)f->port);
        /* a target that is not UTF-8: its bytes in _reel.target_b64 and
         * url_b64, as HAR has them and NDJSON has a header's */
        set_text(req, "target", f->target, f->target ? strlen(f->target) : 0);
        set_text(req, "url", url, strlen(url));
        free(url);
        json_object_set_new(req, "http_version", str_json(f->version[REQ]));
        json_object_set_new(req, "headers", nd_headers(f, REQ));
        json_object_set_new(req, "absolute_form", json_boolean(f->absolute_form));
        json_object_set_new(req, "reverse", json_boolean(f->reverse));
        json_object_set_new(req, "mapped_to", str_json(f->mapped_to));
        json_object_set_new(req, "original_dst", str_json(f->original_dst));
        json_object_set_new(req, "modified",
                            f->modified[REQ] ? json_incref(f->modified[REQ]) : json_array());
        json_object_set_new(req, "body_edit",
                            f->body_edit[REQ] ? json_incref(f->body_edit[REQ]) : json_null());
        rc = nd_body(req, f, REQ, o, err);
        if (f->has_trailers[REQ])
            json_object_set_new(req, "trailers", fields_json(f->trailer[REQ], f->ntrailer[REQ]));
        if (f->has_trailers[REQ] && f->trailers_held[REQ])
            json_object_set_new(req, "trailers_not_passed_on", json_true());
        reel_last(req);
        json_object_set_new(j, "request", req);
    }
    if (f->ninterim) {
        json_t *a = json_array();
        for (size_t i = 0; i < f->ninterim; i++) {
            const interim_t *x = &f->interim[i];
            json_array_append_new(a, json_pack("{s:I, s:i, s:o, s:o, s:o}", "time_us",
                                               (json_int_t)x->time_us, "status", (int)x->status,
                                               "reason", str_json(x->reason), "http_version",
                                               str_json(x->version), "headers",
                                               fields_json(x->hdr, x->nhdr)));
        }
        json_object_set_new(j, "interim", a);
    }
    if (f->have_head[RESP] && rc == REEL_OK) {
        json_t *resp = json_pack("{s:i}", "status", (int)f->status);
        set_text(resp, "reason", f->reason, f->reason ? strlen(f->reason) : 0);
        json_object_set_new(resp, "http_version", str_json(f->version[RESP]));
        json_object_set_new(resp, "headers", nd_headers(f, RESP));
        json_object_set_new(resp, "generated", json_boolean(f->generated));
        json_object_set_new(resp, "local_file", str_json(f->local_file));
        json_object_set_new(resp, "blocked_by", str_json(f->blocked_by));
        json_object_set_new(resp, "modified",
                            f->modified[RESP] ? json_incref(f->modified[RESP]) : json_array());
        json_object_set_new(resp, "body_edit",
                            f->body_edit[RESP] ? json_incref(f->body_edit[RESP]) : json_null());
        rc = nd_body(resp, f, RESP, o, err);
        if (f->has_trailers[RESP])
            json_object_set_new(resp, "trailers", fields_json(f->trailer[RESP], f->ntrailer[RESP]));
        reel_last(resp);
        json_object_set_new(j, "response", resp);
    }
    if (f->has_timings) {
        static const char *const keys[7] = {"blocked_ms", "dns_ms",     "connect_ms", "send_ms",
                                            "wait_ms",    "receive_ms", "ssl_ms"};
        json_t *t = json_object();
        for (int k = 0; k < 7; k++)
            json_object_set_new(t, keys[k], json_real(f->t[k] < 0 ? -1 : ms(f->t[k])));
        json_object_set_new(j, "timings", t);
    }
    if (f->nmsgs) {
        json_t *msgs = json_array();
        for (size_t i = 0; i < f->nmsgs; i++) {
            const msg_t *m = &f->msgs[i];
            int b64;
            const uint8_t *p = m->data.data ? m->data.data : (const uint8_t *)"";
            json_t *data = body_json(p, m->data.len, &b64);
            json_array_append_new(msgs, json_pack("{s:I, s:b, s:s, s:I, s:b, s:o}", "time_us",
                                                  (json_int_t)m->time_us, "from_client",
                                                  m->from_client, "type", opcode_name(m->opcode),
                                                  "length", (json_int_t)m->length, "truncated",
                                                  m->truncated, b64 ? "data_b64" : "data", data));
        }
        json_object_set_new(j, "messages", msgs);
    }
    if (dump_shortest(j, out) != 0 && rc == REEL_OK)
        rc = reel_err_set(err, REEL_IO, "writing the export failed");
    fputc('\n', out);
    json_decref(j);
    return rc;
}

/* ---- the driver --------------------------------------------------------- */

typedef struct {
    sqlite3_stmt *row, *tags, *notes;
    reel_export_stats_t *stats; /* (user data that did not read) */
} stmts_t;

/* A read of f's tags or notes that ended in an error (damage in those
 * tables, which the rest of the export does not need): counted, the first
 * said why, the export going on without them (they came out as none). */
static void userdata_unread(stmts_t *q, const flow_t *f, int step) {
    if (step == SQLITE_DONE || q->stats == NULL)
        return;
    if (q->stats->userdata_unread++ == 0) {
        q->stats->userdata_unread_first = f->id;
        snprintf(q->stats->userdata_why, sizeof q->stats->userdata_why, "%s",
                 sqlite3_errmsg(sqlite3_db_handle(q->tags)));
    }
}

static const char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : NULL;
}

static void load_row(stmts_t *q, flow_t *f) {
    sqlite3_reset(q->row);
    sqlite3_bind_int64(q->row, 1, (sqlite3_int64)f->id);
    if (sqlite3_step(q->row) == SQLITE_ROW) {
        f->start_us = sqlite3_column_int64(q->row, 0);
        f->end_us = sqlite3_column_int64(q->row, 1);
        f->state = reel_strdup(col_text(q->row, 2));
        f->source = reel_strdup(col_text(q->row, 3));
        f->client_addr = reel_strdup(col_text(q->row, 4));
        f->server_addr = reel_strdup(col_text(q->row, 5));
        f->marked = sqlite3_column_int(q->row, 6) != 0;
        f->kind = reel_strdup(col_text(q->row, 7));
        const char *e = col_text(q->row, 8);
        if (e && e[0])
            f->error = reel_strdup(e);
        f->uuid = reel_strdup(col_text(q->row, 9));
    }
    sqlite3_reset(q->row);
    f->tags = json_array();
    sqlite3_reset(q->tags);
    sqlite3_bind_int64(q->tags, 1, (sqlite3_int64)f->id);
    int step;
    while ((step = sqlite3_step(q->tags)) == SQLITE_ROW)
        json_array_append_new(f->tags, str_json(col_text(q->tags, 0)));
    int tags_step = step;
    sqlite3_reset(q->tags);
    f->annotations = json_array();
    sqlite3_reset(q->notes);
    sqlite3_bind_int64(q->notes, 1, (sqlite3_int64)f->id);
    size_t cap = 0;
    while ((step = sqlite3_step(q->notes)) == SQLITE_ROW) {
        size_t n = json_array_size(f->annotations);
        if (n == cap)
            f->notes = reel_realloc(f->notes, (cap = cap ? cap * 2 : 4) * sizeof *f->notes);
        reel_buf_init(&f->notes[n], 0);
        const void *p = sqlite3_column_blob(q->notes, 0);
        reel_buf_append(&f->notes[n], p ? p : "", (size_t)sqlite3_column_bytes(q->notes, 0));
        char t[40];
        iso_time(sqlite3_column_int64(q->notes, 1), t);
        json_t *a = json_pack("{s:s, s:s}", "text", "", "time", t);
        note_text(a, &f->notes[n]);
        reel_last(a);
        json_array_append_new(f->annotations, a);
    }
    userdata_unread(q, f, tags_step != SQLITE_DONE ? tags_step : step);
    sqlite3_reset(q->notes);
}

static reel_rc prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, reel_err_t *err) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return reel_index_db_error(err, REEL_DB, db);
    return REEL_OK;
}

static void write_har_start(FILE *out, reel_session_t *s, const reel_export_opts_t *o,
                            int64_t first_us) {
    char started[40];
    iso_time(first_us ? first_us : reel_now_us(), started);
    json_t *creator = json_pack("{s:s, s:s}", "name", "reel", "version",
                                o->creator_version ? o->creator_version : "0");
    json_t *page = json_pack("{s:s, s:s, s:o, s:{s:i, s:i}}", "startedDateTime", started, "id",
                             "page_1", "title", str_json(reel_session_name(s)), "pageTimings",
                             "onContentLoad", -1, "onLoad", -1);
    fputs("{\n  \"log\": {\n    \"version\": \"1.2\",\n    \"creator\": ", out);
    json_dumpf(creator, out, JSON_COMPACT);
    fputs(",\n    \"pages\": [", out);
    json_dumpf(page, out, JSON_COMPACT);
    fputs("],\n    \"entries\": [", out);
    json_decref(creator);
    json_decref(page);
}

/* *known: 1 if reel repair marked flow id damaged (part of its record is
 * known lost: flow_damage), else 0. REEL_DB if the index cannot say. */
static reel_rc known_damage(reel_session_t *s, uint64_t id, int *known, reel_err_t *err) {
    reel_store_damage_t *d = NULL;
    size_t n = 0;
    reel_rc rc = reel_store_flow_damage(s, id, &d, &n, err);
    free(d);
    *known = rc == REEL_OK && n > 0;
    return rc;
}

static void count_damaged(reel_export_stats_t *stats, uint64_t id) {
    if (stats->damaged++ == 0)
        stats->damaged_first = id;
}

reel_rc reel_export(reel_session_t *s, FILE *out, const reel_export_opts_t *o,
                    reel_export_stats_t *stats, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_export_stats_t local;
    reel_filter_t *flt = NULL;
    reel_store_reader_t *rd = NULL; /* flows go in id order: they share frames */
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *ids = NULL, *count = NULL;
    stmts_t q = {.stats = stats};
    char *sql = NULL;
    uint64_t total = 0;
    int64_t first_us = 0;
    int entries = 0;
    char *abs_dir = NULL;
    reel_export_opts_t curl_opts;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);

    if ((rc = reel_filter_compile(o->filter, &flt, err)) != REEL_OK ||
        (rc = reel_store_reader_open(s, &rd, err)) != REEL_OK)
        goto out;
    if (o->body_dir != NULL && mkdir(o->body_dir, 0700) != 0 && errno != EEXIST) {
        rc = reel_err_errno(err, REEL_IO, errno, "%s", o->body_dir);
        goto out;
    }
    /* curl commands name body files by absolute path, to run from any
     * directory (ndjson's body_file names them as DIR was given) */
    if (o->body_dir != NULL && o->format == REEL_EXPORT_CURL) {
        if ((abs_dir = realpath(o->body_dir, NULL)) == NULL) {
            rc = reel_err_errno(err, REEL_IO, errno, "%s", o->body_dir);
            goto out;
        }
        curl_opts = *o;
        curl_opts.body_dir = abs_dir;
        o = &curl_opts;
    }
    const char *only = o->ids_json ? " AND id IN (SELECT value FROM json_each(:ids))" : "";
    sql = reel_asprintf("SELECT count(*), min(start_us) FROM flows WHERE (%s)%s",
                        reel_filter_sql(flt), only);
    if ((rc = prepare(db, sql, &count, err)) != REEL_OK)
        goto out;
    free(sql);
    sql =
        reel_asprintf("SELECT id FROM flows WHERE (%s)%s ORDER BY id", reel_filter_sql(flt), only);
    if ((rc = prepare(db, sql, &ids, err)) != REEL_OK ||
        (rc = prepare(db,
                      "SELECT start_us, end_us, state, source, client_addr, server_addr, marked, "
                      "kind, error, uuid FROM flows WHERE id = ?",
                      &q.row, err)) != REEL_OK ||
        (rc = prepare(db, "SELECT tag FROM tags WHERE flow_id = ? ORDER BY tag", &q.tags, err)) !=
            REEL_OK ||
        (rc = prepare(db, "SELECT text, created_us FROM annotations WHERE flow_id = ? ORDER BY id",
                      &q.notes, err)) != REEL_OK)
        goto out;
    reel_filter_bind(flt, count, 1);
    reel_filter_bind(flt, ids, 1);
    if (o->ids_json) {
        sqlite3_bind_text(count, sqlite3_bind_parameter_index(count, ":ids"), o->ids_json, -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(ids, sqlite3_bind_parameter_index(ids, ":ids"), o->ids_json, -1,
                          SQLITE_STATIC);
    }
    if (sqlite3_step(count) == SQLITE_ROW) {
        total = (uint64_t)sqlite3_column_int64(count, 0);
        first_us = sqlite3_column_int64(count, 1);
    }

    if (o->format == REEL_EXPORT_HAR)
        write_har_start(out, s, o, first_us);
    int step;
    uint64_t done = 0;
    while ((step = sqlite3_step(ids)) == SQLITE_ROW) {
        flow_t f;
        memset(&f, 0, sizeof f);
        f.id = (uint64_t)sqlite3_column_int64(ids, 0);
        int match = 1; /* header and body terms: the SQL only narrowed the rows */
        reel_err_t ferr;
        reel_err_clear(&ferr);
        rc = reel_filter_match_flow(flt, s, f.id, &match, &ferr);
        if (rc == REEL_NOTFOUND) { /* dropped by retention since it was listed */
            stats->dropped++;
            rc = REEL_OK;
            continue;
        }
        if (rc != REEL_OK) {
            reel_err_set(err, rc, "%s", reel_err_str(&ferr));
            goto out;
        }
        if (!match)
            continue;
        load_row(&q, &f);
        char *uuid = f.uuid;
        f.uuid = NULL;
        reel_err_t rerr;
        reel_err_clear(&rerr);
        rc = reel_store_reader_flow(rd, f.id, on_record, &f, &rerr);
        if (f.uuid == NULL)
            f.uuid = uuid;
        else
            free(uuid);
        if (rc == REEL_NOTFOUND) {
            /* The flows were listed in one read transaction: either
             * retention has dropped this one's segment since (a drop on
             * purpose, not damage), or the index lists no records of it
             * (reel repair kept its row after damage took them all). Both
             * are left out and counted apart; a flow without records and
             * without known damage is damage no repair has seen. */
            int known = 0;
            rc = REEL_OK;
            if (!reel_store_reader_dropped(rd) &&
                (rc = known_damage(s, f.id, &known, err)) == REEL_OK && !known)
                rc = reel_err_set(err, REEL_CORRUPT,
                                  "flow %llu: the index has no spool records of it, nor damage "
                                  "that says why ('reel verify %s')",
                                  (unsigned long long)f.id, reel_session_name(s));
            uint64_t id = f.id;
            flow_free(&f);
            if (rc != REEL_OK)
                goto out;
            if (known)
                count_damaged(stats, id);
            else
                stats->dropped++;
            continue;
        }
        if (rc != REEL_OK) {
            reel_err_set(err, rc, "%s", reel_err_str(&rerr));
            flow_free(&f);
            goto out;
        }
        /* HAR and curl need an absolute URL: a request refused before its
         * host was known (no Host, a target that is not a URL, or one reel
         * could not parse) has none of its own, and a HAR with a relative
         * or broken one could not be imported back; nor has a SOCKS5
         * request reel refused (tcp://), which is no HTTP request */
        int usable = f.have_head[REQ] && !f.tunnel && f.host && f.host[0] &&
                     !(f.scheme && (strcmp(f.scheme, "tcp") == 0 || strcmp(f.scheme, "tls") == 0));
        int known = 0;
        int tunnel = f.tunnel || (f.kind && strcmp(f.kind, "tunnel") == 0); /* no head */
        if (o->format != REEL_EXPORT_NDJSON && !f.have_head[REQ] && !tunnel &&
            (rc = known_damage(s, f.id, &known, err)) != REEL_OK) {
            flow_free(&f);
            goto out;
        }
        if (known) { /* its request head was lost, not never sent: nothing to write but
                      * in ndjson, which has the index's row and error */
            count_damaged(stats, f.id);
        } else if (!usable && (o->format == REEL_EXPORT_HAR || o->format == REEL_EXPORT_CURL)) {
            stats->skipped++;
        } else {
            for (int d = 0; d < 2; d++)
                decode_body(&f, d);
            if (o->redact)
                redact_flow(&f, o->redact);
            switch (o->format) {
            case REEL_EXPORT_HAR: {
                json_t *e = har_entry(&f);
                fputs(entries++ ? ",\n" : "\n", out);
                dump_shortest(e, out);
                json_decref(e);
                break;
            }
            case REEL_EXPORT_CURL:
                wire_heads(&f);
                rc = write_curl(out, &f, o, err);
                break;
            case REEL_EXPORT_RAW:
                wire_heads(&f);
                raw_heads(&f);
                write_raw(out, &f);
                break;
            case REEL_EXPORT_NDJSON:
                rc = write_ndjson(out, &f, o, err);
                break;
            }
            stats->flows++;
        }
        flow_free(&f);
        if (rc != REEL_OK)
            goto out;
        if (ferror(out)) {
            rc = reel_err_errno(err, REEL_IO, errno ? errno : EIO, "writing the export");
            goto out;
        }
        done++;
        if (o->progress)
            o->progress(o->progress_ctx, done, total);
    }
    if (step != SQLITE_DONE) {
        rc = reel_filter_regexp_error(sqlite3_errmsg(db))
                 ? reel_err_set(err, REEL_LIMIT, "%s", sqlite3_errmsg(db))
                 : reel_index_db_error(err, REEL_DB, db);
        goto out;
    }
    if (o->format == REEL_EXPORT_HAR)
        fputs(entries ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n", out);
    if (fflush(out) != 0 || ferror(out))
        rc = reel_err_errno(err, REEL_IO, errno ? errno : EIO, "writing the export");
out:
    free(abs_dir);
    free(sql);
    sqlite3_finalize(ids);
    sqlite3_finalize(count);
    sqlite3_finalize(q.row);
    sqlite3_finalize(q.tags);
    sqlite3_finalize(q.notes);
    reel_filter_free(flt);
    reel_store_reader_free(rd);
    return rc;
}
