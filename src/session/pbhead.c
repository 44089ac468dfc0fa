/* Records of request and response heads in the protobuf wire format,
 * written by hand (pbhead.h says why, and what they must equal). */
#include "session/pbhead.h"

#include <string.h>

/* Field numbers and wire types (schema/flow.proto). */
enum { WT_VARINT = 0, WT_LEN = 2 };
enum {
    REC_FLOW_ID = 1,
    REC_TIME_US = 2,
    REC_REQUEST_HEAD = 11,
    REC_RESPONSE_HEAD = 13,
    REC_INTERIM = 20
};
enum { HDR_NAME = 1, HDR_VALUE = 2 };
enum {
    RQ_METHOD = 1,
    RQ_SCHEME,
    RQ_HOST,
    RQ_PORT,
    RQ_TARGET,
    RQ_VERSION,
    RQ_HEADERS,
    RQ_DECODED,
    RQ_ABSOLUTE,
    RQ_REVERSE,
    RQ_MAPPED,
    RQ_ORIGINAL_DST,
    RQ_MODIFIED
};
enum {
    RS_STATUS = 1,
    RS_REASON,
    RS_VERSION,
    RS_HEADERS,
    RS_DECODED,
    RS_GENERATED,
    RS_LOCAL,
    RS_BLOCKED,
    RS_MODIFIED
};
enum { ED_NAME = 1, ED_VALUE, ED_REMOVED, ED_RULE };

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t tag_size(uint32_t field) {
    return varint_size((uint64_t)field << 3);
}

static uint8_t *put_tag(uint8_t *p, uint32_t field, unsigned wire) {
    return put_varint(p, ((uint64_t)field << 3) | wire);
}

/* A varint field, left out when 0 (proto3). */
static size_t uint_size(uint32_t field, uint64_t v) {
    return v ? tag_size(field) + varint_size(v) : 0;
}

static uint8_t *put_uint(uint8_t *p, uint32_t field, uint64_t v) {
    if (v == 0)
        return p;
    p = put_tag(p, field, WT_VARINT);
    return put_varint(p, v);
}

/* A bytes or string field, left out when empty (proto3). */
static size_t bytes_size(uint32_t field, size_t len) {
    return len ? tag_size(field) + varint_size(len) + len : 0;
}

static uint8_t *put_bytes(uint8_t *p, uint32_t field, const void *data, size_t len) {
    if (len == 0)
        return p;
    p = put_tag(p, field, WT_LEN);
    p = put_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

static size_t slen(const char *s) {
    return s ? strlen(s) : 0;
}

/* A nested message field: always there, even empty (a header, the oneof
 * member). */
static size_t msg_size(uint32_t field, size_t len) {
    return tag_size(field) + varint_size(len) + len;
}

static uint8_t *put_msg_head(uint8_t *p, uint32_t field, size_t len) {
    p = put_tag(p, field, WT_LEN);
    return put_varint(p, len);
}

static size_t header_size(const reel_header_t *h) {
    return bytes_size(HDR_NAME, h->name_len) + bytes_size(HDR_VALUE, h->value_len);
}

static size_t headers_size(uint32_t field, const reel_header_t *h, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += msg_size(field, header_size(&h[i]));
    return len;
}

static uint8_t *put_headers(uint8_t *p, uint32_t field, const reel_header_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        p = put_msg_head(p, field, header_size(&h[i]));
        p = put_bytes(p, HDR_NAME, h[i].name, h[i].name_len);
        p = put_bytes(p, HDR_VALUE, h[i].value, h[i].value_len);
    }
    return p;
}

static size_t edit_size(const reel_header_edit_t *e) {
    return bytes_size(ED_NAME, slen(e->name)) + bytes_size(ED_VALUE, slen(e->value)) +
           uint_size(ED_REMOVED, e->value == NULL) + bytes_size(ED_RULE, slen(e->rule));
}

static size_t edits_size(uint32_t field, const reel_header_edit_t *e, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += msg_size(field, edit_size(&e[i]));
    return len;
}

static uint8_t *put_edits(uint8_t *p, uint32_t field, const reel_header_edit_t *e, size_t n) {
    for (size_t i = 0; i < n; i++) {
        p = put_msg_head(p, field, edit_size(&e[i]));
        p = put_bytes(p, ED_NAME, e[i].name, slen(e[i].name));
        p = put_bytes(p, ED_VALUE, e[i].value, slen(e[i].value));
        p = put_uint(p, ED_REMOVED, e[i].value == NULL);
        p = put_bytes(p, ED_RULE, e[i].rule, slen(e[i].rule));
    }
    return p;
}

static size_t record_size(uint64_t flow_id, int64_t time_us, uint32_t event, size_t ev_len) {
    return uint_size(REC_FLOW_ID, flow_id) + uint_size(REC_TIME_US, (uint64_t)time_us) +
           msg_size(event, ev_len);
}

static uint8_t *put_record_head(uint8_t *p, uint64_t flow_id, int64_t time_us, uint32_t event,
                                size_t ev_len) {
    p = put_uint(p, REC_FLOW_ID, flow_id);
    p = put_uint(p, REC_TIME_US, (uint64_t)time_us); /* int64: two's complement */
    return put_msg_head(p, event, ev_len);
}

static size_t request_len(const reel_request_head_t *h) {
    return bytes_size(RQ_METHOD, slen(h->method)) + bytes_size(RQ_SCHEME, slen(h->scheme)) +
           bytes_size(RQ_HOST, slen(h->host)) + uint_size(RQ_PORT, h->port) +
           bytes_size(RQ_TARGET, slen(h->target)) + bytes_size(RQ_VERSION, slen(h->http_version)) +
           headers_size(RQ_HEADERS, h->headers, h->n_headers) +
           uint_size(RQ_DECODED, h->body_decoded != 0) +
           uint_size(RQ_ABSOLUTE, h->absolute_form != 0) + uint_size(RQ_REVERSE, h->reverse != 0) +
           bytes_size(RQ_MAPPED, slen(h->mapped_to)) +
           bytes_size(RQ_ORIGINAL_DST, slen(h->original_dst)) +
           edits_size(RQ_MODIFIED, h->edits, h->n_edits);
}

size_t reel_pbhead_request_size(uint64_t flow_id, int64_t time_us, const reel_request_head_t *h,
                                reel_pbrec_plan_t *pl) {
    pl->ev = REC_REQUEST_HEAD;
    pl->ev_len = request_len(h);
    return record_size(flow_id, time_us, pl->ev, pl->ev_len);
}

size_t reel_pbhead_request_write(uint8_t *out, uint64_t flow_id, int64_t time_us,
                                 const reel_request_head_t *h, const reel_pbrec_plan_t *pl) {
    uint8_t *p = put_record_head(out, flow_id, time_us, pl->ev, pl->ev_len);
    p = put_bytes(p, RQ_METHOD, h->method, slen(h->method));
    p = put_bytes(p, RQ_SCHEME, h->scheme, slen(h->scheme));
    p = put_bytes(p, RQ_HOST, h->host, slen(h->host));
    p = put_uint(p, RQ_PORT, h->port);
    p = put_bytes(p, RQ_TARGET, h->target, slen(h->target));
    p = put_bytes(p, RQ_VERSION, h->http_version, slen(h->http_version));
    p = put_headers(p, RQ_HEADERS, h->headers, h->n_headers);
    p = put_uint(p, RQ_DECODED, h->body_decoded != 0);
    p = put_uint(p, RQ_ABSOLUTE, h->absolute_form != 0);
    p = put_uint(p, RQ_REVERSE, h->reverse != 0);
    p = put_bytes(p, RQ_MAPPED, h->mapped_to, slen(h->mapped_to));
    p = put_bytes(p, RQ_ORIGINAL_DST, h->original_dst, slen(h->original_dst));
    p = put_edits(p, RQ_MODIFIED, h->edits, h->n_edits);
    return (size_t)(p - out);
}

static size_t response_len(const reel_response_head_t *h) {
    return uint_size(RS_STATUS, h->status) + bytes_size(RS_REASON, slen(h->reason)) +
           bytes_size(RS_VERSION, slen(h->http_version)) +
           headers_size(RS_HEADERS, h->headers, h->n_headers) +
           uint_size(RS_DECODED, h->body_decoded != 0) +
           uint_size(RS_GENERATED, h->generated != 0) + bytes_size(RS_LOCAL, slen(h->local_file)) +
           bytes_size(RS_BLOCKED, slen(h->blocked_by)) +
           edits_size(RS_MODIFIED, h->edits, h->n_edits);
}

size_t reel_pbhead_response_size(uint64_t flow_id, int64_t time_us, const reel_response_head_t *h,
                                 int interim, reel_pbrec_plan_t *pl) {
    pl->ev = interim ? REC_INTERIM : REC_RESPONSE_HEAD;
    pl->ev_len = response_len(h);
    return record_size(flow_id, time_us, pl->ev, pl->ev_len);
}

size_t reel_pbhead_response_write(uint8_t *out, uint64_t flow_id, int64_t time_us,
                                  const reel_response_head_t *h, const reel_pbrec_plan_t *pl) {
    uint8_t *p = put_record_head(out, flow_id, time_us, pl->ev, pl->ev_len);
    p = put_uint(p, RS_STATUS, h->status);
    p = put_bytes(p, RS_REASON, h->reason, slen(h->reason));
    p = put_bytes(p, RS_VERSION, h->http_version, slen(h->http_version));
    p = put_headers(p, RS_HEADERS, h->headers, h->n_headers);
    p = put_uint(p, RS_DECODED, h->body_decoded != 0);
    p = put_uint(p, RS_GENERATED, h->generated != 0);
    p = put_bytes(p, RS_LOCAL, h->local_file, slen(h->local_file));
    p = put_bytes(p, RS_BLOCKED, h->blocked_by, slen(h->blocked_by));
    p = put_edits(p, RS_MODIFIED, h->edits, h->n_edits);
    return (size_t)(p - out);
}

/* ---- the small records of every flow: start, server connection, body
 * chunk, end ---- */

enum {
    REC_START = 10,
    REC_REQUEST_BODY = 12,
    REC_RESPONSE_BODY = 14,
    REC_END = 15,
    REC_SERVER_CONN = 18
};

static size_t str_size(uint32_t field, const char *s) {
    return bytes_size(field, slen(s));
}

static uint8_t *put_str(uint8_t *p, uint32_t field, const char *s) {
    return put_bytes(p, field, s, slen(s));
}

/* int64 and enum (int32) fields: negative values take ten bytes, as the
 * two's complement of their 64-bit sign extension */
static uint64_t i64(int64_t v) {
    return (uint64_t)v;
}

static size_t replay_of_len(const Reel__ReplayOf *r) {
    return uint_size(1, r->flow_id) + str_size(2, r->session) + str_size(3, r->uuid);
}

static size_t client_tls_len(const Reel__ClientTls *t) {
    return str_size(1, t->sni) + str_size(2, t->alpn) + str_size(3, t->tls_version) +
           str_size(4, t->cipher) + uint_size(5, t->resumed != 0);
}

static uint8_t *put_client_tls(uint8_t *p, uint32_t field, const Reel__ClientTls *t, size_t len) {
    p = put_msg_head(p, field, len);
    p = put_str(p, 1, t->sni);
    p = put_str(p, 2, t->alpn);
    p = put_str(p, 3, t->tls_version);
    p = put_str(p, 4, t->cipher);
    return put_uint(p, 5, t->resumed != 0);
}

/* sub[0]: replay_of's length, sub[1]: client_tls's */
static size_t start_len(const Reel__FlowStart *s, size_t sub[2]) {
    sub[0] = s->replay_of ? replay_of_len(s->replay_of) : 0;
    sub[1] = s->client_tls ? client_tls_len(s->client_tls) : 0;
    return str_size(1, s->uuid) + uint_size(2, i64((int32_t)s->kind)) +
           str_size(3, s->client_addr) + str_size(4, s->server_addr) + str_size(5, s->source) +
           (s->replay_of ? msg_size(6, sub[0]) : 0) + uint_size(7, s->client_conn) +
           uint_size(8, s->stream_id) + (s->client_tls ? msg_size(9, sub[1]) : 0);
}

static uint8_t *put_start(uint8_t *p, const Reel__FlowStart *s, const size_t sub[2]) {
    p = put_str(p, 1, s->uuid);
    p = put_uint(p, 2, i64((int32_t)s->kind));
    p = put_str(p, 3, s->client_addr);
    p = put_str(p, 4, s->server_addr);
    p = put_str(p, 5, s->source);
    if (s->replay_of) {
        const Reel__ReplayOf *r = s->replay_of;
        p = put_msg_head(p, 6, sub[0]);
        p = put_uint(p, 1, r->flow_id);
        p = put_str(p, 2, r->session);
        p = put_str(p, 3, r->uuid);
    }
    p = put_uint(p, 7, s->client_conn);
    p = put_uint(p, 8, s->stream_id);
    return s->client_tls ? put_client_tls(p, 9, s->client_tls, sub[1]) : p;
}

static size_t timings_len(const Reel__Timings *t) {
    return uint_size(1, i64(t->blocked_us)) + uint_size(2, i64(t->dns_us)) +
           uint_size(3, i64(t->connect_us)) + uint_size(4, i64(t->send_us)) +
           uint_size(5, i64(t->wait_us)) + uint_size(6, i64(t->receive_us)) +
           uint_size(7, i64(t->ssl_us));
}

/* sub[0]: timings' length, sub[1]: client_tls's */
static size_t end_len(const Reel__FlowEnd *e, size_t sub[2]) {
    sub[0] = e->timings ? timings_len(e->timings) : 0;
    sub[1] = e->client_tls ? client_tls_len(e->client_tls) : 0;
    return uint_size(1, e->request_body_size) + uint_size(2, e->response_body_size) +
           uint_size(3, e->request_truncated != 0) + uint_size(4, e->response_truncated != 0) +
           (e->timings ? msg_size(5, sub[0]) : 0) + uint_size(6, i64(e->request_end_us)) +
           uint_size(7, i64(e->response_start_us)) + uint_size(8, e->request_body_dropped) +
           uint_size(9, e->response_body_dropped) + str_size(10, e->server_addr) +
           uint_size(11, e->messages_dropped) + uint_size(12, e->response_excess) +
           (e->client_tls ? msg_size(13, sub[1]) : 0);
}

static uint8_t *put_end(uint8_t *p, const Reel__FlowEnd *e, const size_t sub[2]) {
    p = put_uint(p, 1, e->request_body_size);
    p = put_uint(p, 2, e->response_body_size);
    p = put_uint(p, 3, e->request_truncated != 0);
    p = put_uint(p, 4, e->response_truncated != 0);
    if (e->timings) {
        const Reel__Timings *t = e->timings;
        p = put_msg_head(p, 5, sub[0]);
        p = put_uint(p, 1, i64(t->blocked_us));
        p = put_uint(p, 2, i64(t->dns_us));
        p = put_uint(p, 3, i64(t->connect_us));
        p = put_uint(p, 4, i64(t->send_us));
        p = put_uint(p, 5, i64(t->wait_us));
        p = put_uint(p, 6, i64(t->receive_us));
        p = put_uint(p, 7, i64(t->ssl_us));
    }
    p = put_uint(p, 6, i64(e->request_end_us));
    p = put_uint(p, 7, i64(e->response_start_us));
    p = put_uint(p, 8, e->request_body_dropped);
    p = put_uint(p, 9, e->response_body_dropped);
    p = put_str(p, 10, e->server_addr);
    p = put_uint(p, 11, e->messages_dropped);
    p = put_uint(p, 12, e->response_excess);
    return e->client_tls ? put_client_tls(p, 13, e->client_tls, sub[1]) : p;
}

static size_t server_conn_len(const Reel__ServerConn *c) {
    return uint_size(1, c->conn_id) + str_size(2, c->address) + str_size(3, c->sni) +
           str_size(4, c->alpn) + str_size(5, c->tls_version) + str_size(6, c->cipher) +
           uint_size(7, c->reused != 0) + uint_size(8, c->retried != 0) +
           uint_size(9, c->unverified != 0) + str_size(10, c->verify_error) +
           str_size(11, c->peer_cert) + uint_size(12, i64(c->opened_us)) +
           uint_size(13, i64(c->dns_us)) + uint_size(14, i64(c->connect_us)) +
           uint_size(15, i64(c->ssl_us)) + str_size(16, c->via) +
           uint_size(17, c->via_forward != 0) + str_size(18, c->client_cert) +
           uint_size(19, c->client_cert_asked != 0) + uint_size(20, c->resumed != 0) +
           str_size(21, c->dns_override);
}

static uint8_t *put_server_conn(uint8_t *p, const Reel__ServerConn *c) {
    p = put_uint(p, 1, c->conn_id);
    p = put_str(p, 2, c->address);
    p = put_str(p, 3, c->sni);
    p = put_str(p, 4, c->alpn);
    p = put_str(p, 5, c->tls_version);
    p = put_str(p, 6, c->cipher);
    p = put_uint(p, 7, c->reused != 0);
    p = put_uint(p, 8, c->retried != 0);
    p = put_uint(p, 9, c->unverified != 0);
    p = put_str(p, 10, c->verify_error);
    p = put_str(p, 11, c->peer_cert);
    p = put_uint(p, 12, i64(c->opened_us));
    p = put_uint(p, 13, i64(c->dns_us));
    p = put_uint(p, 14, i64(c->connect_us));
    p = put_uint(p, 15, i64(c->ssl_us));
    p = put_str(p, 16, c->via);
    p = put_uint(p, 17, c->via_forward != 0);
    p = put_str(p, 18, c->client_cert);
    p = put_uint(p, 19, c->client_cert_asked != 0);
    p = put_uint(p, 20, c->resumed != 0);
    return put_str(p, 21, c->dns_override);
}

/* Plans rec: its event's field number, length and nested lengths (ev 0
 * for an event left to protobuf-c). */
static void small_event(const Reel__Record *rec, reel_pbrec_plan_t *pl) {
    pl->sub[0] = pl->sub[1] = 0;
    pl->ev_len = 0;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        pl->ev = REC_START;
        pl->ev_len = start_len(rec->start, pl->sub);
        break;
    case REEL__RECORD__EVENT_REQUEST_BODY:
        pl->ev = REC_REQUEST_BODY;
        pl->ev_len = bytes_size(1, rec->request_body->data.len);
        break;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        pl->ev = REC_RESPONSE_BODY;
        pl->ev_len = bytes_size(1, rec->response_body->data.len);
        break;
    case REEL__RECORD__EVENT_END:
        pl->ev = REC_END;
        pl->ev_len = end_len(rec->end, pl->sub);
        break;
    case REEL__RECORD__EVENT_SERVER_CONN:
        pl->ev = REC_SERVER_CONN;
        pl->ev_len = server_conn_len(rec->server_conn);
        break;
    default:
        pl->ev = 0;
        break;
    }
}

size_t reel_pbrec_size(const Reel__Record *rec, reel_pbrec_plan_t *pl) {
    small_event(rec, pl);
    return pl->ev ? record_size(rec->flow_id, rec->time_us, pl->ev, pl->ev_len) : 0;
}

size_t reel_pbrec_write(uint8_t *out, const Reel__Record *rec, const reel_pbrec_plan_t *pl) {
    if (pl->ev == 0)
        return 0;
    uint8_t *p = put_record_head(out, rec->flow_id, rec->time_us, pl->ev, pl->ev_len);
    switch (pl->ev) {
    case REC_START:
        p = put_start(p, rec->start, pl->sub);
        break;
    case REC_REQUEST_BODY:
        p = put_bytes(p, 1, rec->request_body->data.data, rec->request_body->data.len);
        break;
    case REC_RESPONSE_BODY:
        p = put_bytes(p, 1, rec->response_body->data.data, rec->response_body->data.len);
        break;
    case REC_END:
        p = put_end(p, rec->end, pl->sub);
        break;
    default:
        p = put_server_conn(p, rec->server_conn);
        break;
    }
    return (size_t)(p - out);
}
