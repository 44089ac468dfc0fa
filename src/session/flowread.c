/* One flow read back for a user interface; see flowread.h. */
#include "session/flowread.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"
#include "session/index.h"
#include "session/store.h"

json_t *reel_json_b64(const void *p, size_t n) {
    size_t len;
    char *s = reel_base64(p, n, &len);
    json_t *j = json_stringn_nocheck(s, len);
    free(s);
    return j;
}

json_t *reel_json_bytes(const void *p, size_t n) {
    if (n == 0)
        return json_string("");
    json_t *j = json_stringn((const char *)p, n);
    return j ? j : json_pack("{s:o}", "b64", reel_json_b64(p, n));
}

json_t *reel_json_text(const char *s) {
    return s ? reel_json_bytes(s, strlen(s)) : json_null();
}

static json_t *b64_json(const uint8_t *p, size_t n) {
    return reel_json_b64(p, n);
}

static json_t *bytes_json(const uint8_t *p, size_t n) {
    return reel_json_bytes(p, n);
}

static json_t *pbytes_json(ProtobufCBinaryData b) {
    return bytes_json(b.data, b.len);
}

static json_t *str_json(const char *s) {
    if (s == NULL || s[0] == '\0')
        return json_null();
    return bytes_json((const uint8_t *)s, strlen(s));
}

/* The first header named name as an owned C string (NULL if none or if it
 * holds a NUL). */
static char *header_get(Reel__Header **h, size_t n, const char *name) {
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i]->name.len == nl && strncasecmp((const char *)h[i]->name.data, name, nl) == 0) {
            if (memchr(h[i]->value.data, 0, h[i]->value.len))
                return NULL;
            return reel_strndup((const char *)h[i]->value.data, h[i]->value.len);
        }
    return NULL;
}

static json_t *headers_json(Reel__Header **h, size_t n, int decoded) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("[o,o]", pbytes_json(h[i]->name), pbytes_json(h[i]->value)));
    (void)decoded;
    return a;
}

static void head_extra(json_t *o, Reel__Header **h, size_t n, int decoded) {
    char *ct = header_get(h, n, "content-type");
    char *ce = header_get(h, n, "content-encoding");
    json_object_set_new(o, "content_type", reel_json_text(ct)); /* (any bytes) */
    json_object_set_new(o, "content_encoding", reel_json_text(ce)); /* (any bytes) */
    json_object_set_new(o, "body_decoded", json_boolean(decoded));
    free(ct);
    free(ce);
}

/* Unknown opcodes read "other" here. */
static const char *opcode_name(uint32_t op) {
    const char *n = reel_store_opcode_name(op);
    return n ? n : "other";
}

typedef struct {
    json_t *o;        /* the detail */
    json_t *messages; /* array */
    json_t *msg;      /* the message whose data is being gathered */
    reel_buf_t data;
    uint64_t msg_stored; /* its bytes in the spool, over its records */
    size_t msg_total, msg_max;
    int64_t omitted; /* messages past REEL_FLOWREAD_MESSAGES_MAX */
    /* each body's facts, as `reel flow --json` gives them: the bytes
     * stored; size on the wire, body_limit's cut and the bytes capture
     * shed, from the end or error record (have_end) */
    uint64_t stored[2], size[2], dropped[2];
    uint64_t excess; /* bytes the origin sent past its response's end */
    int truncated[2], have_end;
} detail_t;

static void msg_done(detail_t *d) {
    if (d->msg == NULL)
        return;
    /* fewer bytes than its length, not cut by body_limit: its later
     * records are not in the spool (yet, while the flow is written) */
    if (!json_is_true(json_object_get(d->msg, "truncated")) &&
        d->msg_stored < (uint64_t)json_integer_value(json_object_get(d->msg, "length")))
        json_object_set_new(d->msg, "incomplete", json_true());
    if (d->msg_total + d->data.len > d->msg_max) {
        json_object_set_new(d->msg, "data_b64", json_null());
        json_object_set_new(d->msg, "data_omitted", json_true());
    } else {
        d->msg_total += d->data.len;
        json_object_set_new(d->msg, "data_b64", b64_json(d->data.data, d->data.len));
        /* text: looks like text and is valid UTF-8 (jansson checks it) */
        bool text = false;
        if (reel_looks_text(d->data.data, d->data.len)) {
            json_t *probe = json_stringn((const char *)d->data.data, d->data.len);
            text = probe != NULL;
            json_decref(probe);
        }
        json_object_set_new(d->msg, "text", json_boolean(text));
    }
    reel_buf_reset(&d->data);
    d->msg = NULL;
}

static json_t *timings_json(const Reel__Timings *t) {
    if (t == NULL)
        return json_null();
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "blocked_us", (json_int_t)t->blocked_us,
                     "dns_us", (json_int_t)t->dns_us, "connect_us", (json_int_t)t->connect_us,
                     "send_us", (json_int_t)t->send_us, "wait_us", (json_int_t)t->wait_us,
                     "receive_us", (json_int_t)t->receive_us, "ssl_us", (json_int_t)t->ssl_us);
}

json_t *reel_json_client_tls(const Reel__ClientTls *t) {
    if (t == NULL)
        return json_null();
    return json_pack("{s:o, s:o, s:o, s:o, s:b}", "sni", reel_json_text(t->sni[0] ? t->sni : NULL),
                     "alpn", reel_json_text(t->alpn[0] ? t->alpn : NULL), "tls_version",
                     reel_json_text(t->tls_version[0] ? t->tls_version : NULL), "cipher",
                     reel_json_text(t->cipher[0] ? t->cipher : NULL), "resumed", t->resumed);
}

json_t *reel_json_header_edits(Reel__HeaderEdit *const *e, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a,
                              json_pack("{s:o, s:o, s:o}", "name", pbytes_json(e[i]->name), "value",
                                        e[i]->removed ? json_null() : pbytes_json(e[i]->value),
                                        "rule", reel_json_text(e[i]->rule)));
    return a;
}

bool reel_body_edit_sent_kept(const Reel__BodyEdit *b) {
    return !b->not_applied[0] && (b->sent_body.len || b->sent_size == 0);
}

json_t *reel_json_body_edit(const Reel__BodyEdit *b) {
    json_t *rules = json_array();
    for (size_t i = 0; i < b->n_rules; i++)
        json_array_append_new(rules, reel_json_text(b->rules[i]));
    json_t *o = json_pack("{s:o, s:I, s:I, s:b, s:o}", "rules", rules, "replacements",
                          (json_int_t)b->replacements, "sent_size", (json_int_t)b->sent_size,
                          "decoded", b->decoded, "not_applied",
                          reel_json_text(b->not_applied[0] ? b->not_applied : NULL));
    if (!b->response) /* (a request's only: a response has no Expect) */
        json_object_set_new(o, "answered_continue", json_boolean(b->answered_continue));
    json_t *sent = json_null();
    if (reel_body_edit_sent_kept(b)) {
        size_t n = 0;
        char *t = reel_base64(b->sent_body.data, b->sent_body.len, &n);
        sent = json_stringn(t, n);
        free(t);
    }
    json_object_set_new(o, "sent_body_b64", sent);
    json_object_set_new(o, "sent_body_truncated", json_boolean(b->sent_body_truncated));
    return o;
}

void reel_json_conn_setup(json_t *o, const Reel__ServerConn *sc) {
    int known = sc->opened_us != 0;
    json_object_set_new(o, "opened_us",
                        known ? json_integer((json_int_t)sc->opened_us) : json_null());
    json_object_set_new(o, "dns_us", json_integer(known ? (json_int_t)sc->dns_us : -1));
    json_object_set_new(o, "connect_us", json_integer(known ? (json_int_t)sc->connect_us : -1));
    json_object_set_new(o, "ssl_us", json_integer(known ? (json_int_t)sc->ssl_us : -1));
}

static void end_facts(detail_t *d, const Reel__Timings *t, int64_t req_end, int64_t resp_start) {
    json_object_set_new(d->o, "timings", timings_json(t));
    json_object_set_new(d->o, "request_end_us", req_end ? json_integer(req_end) : json_null());
    json_object_set_new(d->o, "response_start_us",
                        resp_start ? json_integer(resp_start) : json_null());
}

/* The client's TLS from a flow's end record, when its start had none
 * (FlowEnd.client_tls: a TLS tunnel whose client's handshake came after
 * its flow began). */
static void late_client_tls(detail_t *d, const Reel__ClientTls *t) {
    if (t && json_is_null(json_object_get(d->o, "client_tls")))
        json_object_set_new(d->o, "client_tls", reel_json_client_tls(t));
}

static int detail_record(void *ctx, const Reel__Record *rec) {
    detail_t *d = ctx;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        json_object_set_new(d->o, "client_tls", reel_json_client_tls(rec->start->client_tls));
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        reel_buf_t url;
        reel_buf_init(&url, 0);
        reel_index_url(h, &url);
        json_t *o =
            json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o}", "method",
                      h->method.len ? pbytes_json(h->method) : json_null(), "scheme",
                      str_json(h->scheme), "host", pbytes_json(h->host), "port",
                      (json_int_t)h->port, "target", pbytes_json(h->target), "url",
                      bytes_json(url.data, url.len), "http_version", str_json(h->http_version),
                      "headers", headers_json(h->headers, h->n_headers, h->body_decoded));
        reel_buf_free(&url);
        json_object_set_new(o, "absolute_form", json_boolean(h->absolute_form));
        json_object_set_new(o, "reverse", json_boolean(h->reverse));
        json_object_set_new(o, "mapped_to", str_json(h->mapped_to));
        json_object_set_new(o, "original_dst", str_json(h->original_dst));
        json_object_set_new(o, "modified", reel_json_header_edits(h->modified, h->n_modified));
        head_extra(o, h->headers, h->n_headers, h->body_decoded);
        json_object_set_new(d->o, "request", o);
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        json_t *o = json_pack(
            "{s:I, s:o, s:o, s:o, s:b}", "status", (json_int_t)h->status, "reason",
            pbytes_json(h->reason), "http_version", str_json(h->http_version), "headers",
            headers_json(h->headers, h->n_headers, h->body_decoded), "generated", h->generated);
        json_object_set_new(o, "local_file", str_json(h->local_file));
        json_object_set_new(o, "blocked_by", str_json(h->blocked_by));
        json_object_set_new(o, "modified", reel_json_header_edits(h->modified, h->n_modified));
        head_extra(o, h->headers, h->n_headers, h->body_decoded);
        json_object_set_new(d->o, "response", o);
        break;
    }
    case REEL__RECORD__EVENT_MESSAGE: {
        const Reel__Message *m = rec->message;
        if (!m->continued) {
            msg_done(d);
            if (json_array_size(d->messages) >= REEL_FLOWREAD_MESSAGES_MAX) {
                d->omitted++;
                break;
            }
            d->msg = json_pack("{s:I, s:b, s:i, s:s, s:I, s:b, s:b}", "time_us",
                               (json_int_t)rec->time_us, "from_client", m->from_client, "opcode",
                               (int)m->opcode, "type", opcode_name(m->opcode), "length",
                               (json_int_t)m->length, "truncated", m->truncated, "compressed",
                               m->compressed);
            if (m->opcode == 8)
                json_object_set_new(d->msg, "close_code", json_integer(m->close_code));
            json_array_append_new(d->messages, d->msg);
            d->msg_stored = 0;
        }
        d->msg_stored += m->data.len;
        if (d->msg && d->msg_total + d->data.len <= d->msg_max)
            reel_buf_append(&d->data, m->data.data, m->data.len);
        break;
    }
    case REEL__RECORD__EVENT_INTERIM: {
        const Reel__ResponseHead *h = rec->interim;
        json_t *a = json_object_get(d->o, "interim");
        if (a == NULL) {
            a = json_array();
            json_object_set_new(d->o, "interim", a);
        }
        json_array_append_new(a, json_pack("{s:I, s:I, s:o, s:o, s:o}", "time_us",
                                           (json_int_t)rec->time_us, "status",
                                           (json_int_t)h->status, "reason", pbytes_json(h->reason),
                                           "http_version", str_json(h->http_version), "headers",
                                           headers_json(h->headers, h->n_headers, 0)));
        break;
    }
    case REEL__RECORD__EVENT_TRAILERS: {
        const Reel__Trailers *t = rec->trailers;
        json_object_set_new(d->o, t->response ? "response_trailers" : "request_trailers",
                            headers_json(t->headers, t->n_headers, 0));
        if (t->not_passed_on) /* (they did not reach the other side) */
            json_object_set_new(d->o,
                                t->response ? "response_trailers_not_passed_on"
                                            : "request_trailers_not_passed_on",
                                json_true());
        break;
    }
    case REEL__RECORD__EVENT_BODY_EDIT:
        json_object_set_new(d->o,
                            rec->body_edit->response ? "response_body_edit" : "request_body_edit",
                            reel_json_body_edit(rec->body_edit));
        break;
    case REEL__RECORD__EVENT_SERVER_CONN: {
        const Reel__ServerConn *sc = rec->server_conn;
        json_object_set_new(d->o, "server_conn",
                            json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:b, s:b, s:b}", "conn_id",
                                      (json_int_t)sc->conn_id, "address", str_json(sc->address),
                                      "sni", str_json(sc->sni), "alpn", str_json(sc->alpn),
                                      "tls_version", str_json(sc->tls_version), "cipher",
                                      str_json(sc->cipher), "reused", sc->reused, "retried",
                                      sc->retried, "unverified", sc->unverified));
        json_t *o = json_object_get(d->o, "server_conn");
        json_object_set_new(o, "verify_error", str_json(sc->verify_error));
        json_object_set_new(o, "peer_cert", str_json(sc->peer_cert));
        json_object_set_new(o, "via", str_json(sc->via));
        json_object_set_new(o, "via_forward", json_boolean(sc->via_forward));
        json_object_set_new(o, "client_cert_asked", json_boolean(sc->client_cert_asked));
        json_object_set_new(o, "client_cert", str_json(sc->client_cert));
        json_object_set_new(o, "resumed", json_boolean(sc->resumed));
        json_object_set_new(o, "dns_override", str_json(sc->dns_override));
        reel_json_conn_setup(o, sc);
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
        d->stored[0] += rec->request_body->data.len;
        break;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        d->stored[1] += rec->response_body->data.len;
        break;
    case REEL__RECORD__EVENT_END: {
        const Reel__FlowEnd *e = rec->end;
        end_facts(d, e->timings, e->request_end_us, e->response_start_us);
        late_client_tls(d, e->client_tls);
        d->have_end = 1;
        d->size[0] = e->request_body_size;
        d->size[1] = e->response_body_size;
        d->truncated[0] = e->request_truncated;
        d->truncated[1] = e->response_truncated;
        d->dropped[0] = e->request_body_dropped;
        d->dropped[1] = e->response_body_dropped;
        d->excess = e->response_excess;
        break;
    }
    case REEL__RECORD__EVENT_ERROR: {
        const Reel__FlowError *e = rec->error;
        end_facts(d, e->timings, e->request_end_us, e->response_start_us);
        late_client_tls(d, e->client_tls);
        json_object_set_new(d->o, "error", str_json(e->message));
        d->have_end = 1;
        d->size[0] = e->request_body_size;
        d->size[1] = e->response_body_size;
        d->truncated[0] = e->request_truncated;
        d->truncated[1] = e->response_truncated;
        d->dropped[0] = e->request_body_dropped;
        d->dropped[1] = e->response_body_dropped;
        d->excess = e->response_excess;
        break;
    }
    default:
        break;
    }
    return 0;
}

reel_rc reel_flowread_detail(reel_session_t *s, int64_t id, size_t msg_data_max, json_t **out,
                             reel_err_t *err) {
    reel_rc rc = REEL_OK;
    detail_t d = {.msg_max = msg_data_max};
    *out = NULL;
    d.o = json_pack("{s:n, s:n, s:n, s:n, s:n, s:n, s:n, s:n, s:n, s:n}", "request", "response",
                    "timings", "server_conn", "client_tls", "error", "request_end_us",
                    "response_start_us", "request_body_edit", "response_body_edit");
    d.messages = json_array();
    reel_buf_init(&d.data, 0);
    reel_err_t e;
    reel_err_clear(&e);
    rc = reel_store_read_flow(s, (uint64_t)id, detail_record, &d, &e);
    msg_done(&d);
    if (rc == REEL_NOTFOUND) {
        reel_err_set(err, rc, "%s", reel_err_str(&e));
        json_decref(d.o);
        json_decref(d.messages);
        goto out;
    }
    json_object_set_new(d.o, "read_error",
                        rc == REEL_OK ? json_null() : json_string(reel_err_str(&e)));
    rc = REEL_OK;
    json_object_set_new(d.o, "messages", d.messages);
    static const char *const names[2] = {"request", "response"};
    for (int k = 0; k < 2; k++) {
        json_t *o = json_object_get(d.o, names[k]);
        if (!json_is_object(o))
            continue;
        json_object_set_new(o, "body_stored", json_integer((json_int_t)d.stored[k]));
        if (d.have_end) { /* else the caller may know them from the index */
            json_object_set_new(o, "body_size", json_integer((json_int_t)d.size[k]));
            json_object_set_new(o, "body_truncated", json_boolean(d.truncated[k]));
            json_object_set_new(o, "body_dropped", json_integer((json_int_t)d.dropped[k]));
            if (k == 1)
                json_object_set_new(o, "body_excess", json_integer((json_int_t)d.excess));
        }
    }
    json_object_set_new(d.o, "messages_omitted", json_integer(d.omitted));
    json_t *dmg = json_array();
    reel_store_damage_t *dm = NULL;
    size_t n = 0;
    reel_err_clear(&e);
    reel_store_flow_damage(s, (uint64_t)id, &dm, &n, &e);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(dmg, json_pack("{s:s, s:I, s:I, s:s}", "direction",
                                             reel_store_damage_direction(dm[i].direction), "offset",
                                             (json_int_t)dm[i].offset, "length",
                                             (json_int_t)dm[i].length, "reason", dm[i].reason));
    free(dm);
    json_object_set_new(d.o, "damage", dmg);
    *out = d.o;
out:
    reel_buf_free(&d.data);
    return rc;
}

/* ---- body ---- */

typedef struct {
    int dir, decode;
    reel_sink_fn sink;
    void *ctx;
    reel_flowread_body_t *info;
    reel_decoder_t *dec;
    int started, stopped;
} body_t;

static int give(body_t *b, const uint8_t *p, size_t n) {
    if (b->stopped)
        return 1;
    b->info->total += n;
    if (b->sink(b->ctx, p, n) != 0)
        b->stopped = 1;
    return b->stopped;
}

static int dec_sink(void *ctx, const uint8_t *p, size_t n) {
    return give(ctx, p, n);
}

static void body_head(body_t *b, Reel__Header **h, size_t n, int decoded) {
    reel_flowread_body_t *in = b->info;
    in->has_head = 1;
    free(in->content_type);
    free(in->encoding);
    in->content_type = header_get(h, n, "content-type");
    in->encoding = header_get(h, n, "content-encoding");
    in->decoded = decoded || in->encoding == NULL;
}

static int body_record(void *ctx, const Reel__Record *rec) {
    body_t *b = ctx;
    if (rec->event_case == REEL__RECORD__EVENT_REQUEST_HEAD && b->dir == 0)
        body_head(b, rec->request_head->headers, rec->request_head->n_headers,
                  rec->request_head->body_decoded);
    else if (rec->event_case == REEL__RECORD__EVENT_RESPONSE_HEAD && b->dir == 1)
        body_head(b, rec->response_head->headers, rec->response_head->n_headers,
                  rec->response_head->body_decoded);
    const Reel__BodyChunk *c = NULL;
    if (rec->event_case == REEL__RECORD__EVENT_REQUEST_BODY && b->dir == 0)
        c = rec->request_body;
    else if (rec->event_case == REEL__RECORD__EVENT_RESPONSE_BODY && b->dir == 1)
        c = rec->response_body;
    if (c == NULL)
        return 0;
    if (!b->started) {
        b->started = 1;
        reel_flowread_body_t *in = b->info;
        if (b->decode && !in->decoded && in->encoding) {
            reel_err_t e;
            reel_err_clear(&e);
            if (reel_decoder_new(in->encoding, dec_sink, b, &b->dec, &e) == REEL_OK)
                in->decoded = 1;
            else
                snprintf(in->decode_error, sizeof in->decode_error, "%s", reel_err_str(&e));
        }
    }
    if (b->dec) {
        reel_err_t e;
        reel_err_clear(&e);
        if (reel_decoder_feed(b->dec, c->data.data, c->data.len, &e) != REEL_OK) {
            if (!b->stopped)
                snprintf(b->info->decode_error, sizeof b->info->decode_error, "%s",
                         reel_err_str(&e));
            return 1;
        }
        return b->stopped;
    }
    return give(b, c->data.data, c->data.len);
}

reel_rc reel_flowread_body(reel_session_t *s, int64_t id, int dir, int decode, reel_sink_fn sink,
                           void *ctx, reel_flowread_body_t *info, reel_err_t *err) {
    memset(info, 0, sizeof *info);
    body_t b = {.dir = dir, .decode = decode, .sink = sink, .ctx = ctx, .info = info};
    reel_rc rc = reel_store_read_flow(s, (uint64_t)id, body_record, &b, err);
    if (b.dec && !b.stopped && info->decode_error[0] == '\0') {
        reel_err_t e;
        reel_err_clear(&e);
        if (reel_decoder_finish(b.dec, &e) != REEL_OK && !b.stopped)
            snprintf(info->decode_error, sizeof info->decode_error, "%s", reel_err_str(&e));
    }
    reel_decoder_free(b.dec);
    if (info->decode_error[0])
        info->decoded = 0;
    return rc;
}

void reel_flowread_body_clear(reel_flowread_body_t *info) {
    if (info == NULL)
        return;
    free(info->content_type);
    free(info->encoding);
    memset(info, 0, sizeof *info);
}
