/* Capture: core terms to recorder calls; see capture.h. */
#include "core/capture.h"

#include <stdlib.h>

#include "base/mem.h"
#include "session/recorder.h"

/* reel_field_t and the recorder's reel_header_t describe a field the same
 * way, so a head's field array is handed over without a copy. */
_Static_assert(sizeof(reel_field_t) == sizeof(reel_header_t), "field layouts differ");
_Static_assert(offsetof(reel_field_t, value_len) == offsetof(reel_header_t, value_len),
               "field layouts differ");

static const reel_header_t *fields(const reel_msg_head_t *h) {
    return (const reel_header_t *)(const void *)h->fields;
}

/* The client's TLS t into the recorder's reel_flow_info_t or
 * reel_flow_end_t dst, whose fields have the same names. */
#define PUT_CLIENT_TLS(dst, t)                                                                     \
    do {                                                                                           \
        (dst).tls = true;                                                                          \
        (dst).tls_sni = (t)->sni;                                                                  \
        (dst).tls_alpn = (t)->alpn;                                                                \
        (dst).tls_version = (t)->tls_version;                                                      \
        (dst).tls_cipher = (t)->cipher;                                                            \
        (dst).tls_resumed = (t)->resumed;                                                          \
    } while (0)

reel_capture_flow_t *reel_capture_start(reel_recorder_t *rec, reel_capture_kind kind,
                                        const char *client_addr, const char *server_addr,
                                        uint64_t client_conn, uint32_t stream_id, int64_t time_us,
                                        const reel_capture_tls_t *tls) {
    reel_flow_info_t info = {.kind =
                                 kind == REEL_CAPTURE_TUNNEL ? REEL_FLOW_TUNNEL : REEL_FLOW_HTTP,
                             .client_addr = client_addr,
                             .server_addr = server_addr,
                             .time_us = time_us,
                             .client_conn = client_conn,
                             .stream_id = stream_id};
    if (tls)
        PUT_CLIENT_TLS(info, tls);
    return reel_recorder_flow_start(rec, &info);
}

void reel_capture_interim(reel_capture_flow_t *f, const reel_msg_head_t *h) {
    reel_response_head_t rs = {.status = h->status,
                               .reason = h->reason ? h->reason : "",
                               .http_version = h->version ? h->version : "HTTP/1.1",
                               .headers = fields(h),
                               .n_headers = h->nfields};
    reel_recorder_interim(f, &rs);
}

void reel_capture_trailers(reel_capture_flow_t *f, bool response, const reel_field_t *fl, size_t n,
                           bool not_passed_on) {
    reel_msg_head_t h = {.fields = fl, .nfields = n};
    reel_recorder_trailers(f, response, fields(&h), n, not_passed_on);
}

void reel_capture_request(reel_capture_flow_t *f, const reel_msg_head_t *h) {
    reel_capture_request_at(f, h, 0);
}

void reel_capture_request_at(reel_capture_flow_t *f, const reel_msg_head_t *h, int64_t time_us) {
    reel_request_head_t rq = {.method = h->method ? h->method : "",
                              .scheme = h->scheme ? h->scheme : "",
                              .host = h->host ? h->host : "",
                              .port = h->port,
                              .target = h->path ? h->path : "",
                              .http_version = h->version ? h->version : "HTTP/1.1",
                              .headers = fields(h),
                              .n_headers = h->nfields,
                              .absolute_form = h->absolute_form,
                              .reverse = h->reverse,
                              .mapped_to = h->mapped_to,
                              .original_dst = h->original_dst,
                              .edits = h->edits,
                              .n_edits = h->nedits,
                              .time_us = time_us};
    reel_recorder_request_head(f, &rq);
}

void reel_capture_response(reel_capture_flow_t *f, const reel_msg_head_t *h, bool generated,
                           int64_t time_us) {
    reel_response_head_t rs = {.status = h->status,
                               .reason = h->reason ? h->reason : "",
                               .http_version = h->version ? h->version : "HTTP/1.1",
                               .headers = fields(h),
                               .n_headers = h->nfields,
                               .generated = generated,
                               .local_file = h->local_file,
                               .blocked_by = h->blocked_by,
                               .edits = h->edits,
                               .n_edits = h->nedits,
                               .time_us = time_us};
    reel_recorder_response_head(f, &rs);
}

void reel_capture_body(reel_capture_flow_t *f, bool response, const void *data, size_t len) {
    if (response)
        reel_recorder_response_body(f, data, len);
    else
        reel_recorder_request_body(f, data, len);
}

void reel_capture_message(reel_capture_flow_t *f, bool from_client, uint32_t opcode,
                          const void *data, size_t len, uint64_t length, bool truncated,
                          bool compressed, uint32_t close_code) {
    reel_message_t m = {.from_client = from_client,
                        .opcode = opcode,
                        .data = data,
                        .len = len,
                        .length = length,
                        .truncated = truncated,
                        .compressed = compressed,
                        .close_code = close_code};
    reel_recorder_message(f, &m);
}

void reel_capture_message_at(reel_capture_flow_t *f, bool from_client, const void *data, size_t len,
                             int64_t time_us) {
    reel_message_t m = {
        .from_client = from_client, .data = data, .len = len, .length = len, .time_us = time_us};
    reel_recorder_message(f, &m);
}

void reel_capture_body_edit(reel_capture_flow_t *f, bool response, const char *const *rules,
                            size_t n, uint64_t replacements, uint64_t sent_size, bool decoded,
                            bool answered_continue, const char *not_applied, const void *sent_body,
                            size_t sent_body_len) {
    reel_body_edit_t e = {.response = response,
                          .answered_continue = answered_continue,
                          .rules = rules,
                          .n_rules = n,
                          .replacements = replacements,
                          .sent_size = sent_size,
                          .decoded = decoded,
                          .not_applied = not_applied,
                          .sent_body = sent_body,
                          .sent_body_len = sent_body_len};
    reel_recorder_body_edit(f, &e);
}

void reel_capture_server_conn(reel_capture_flow_t *f, const reel_capture_conn_t *sc) {
    reel_server_conn_t r = {.conn_id = sc->conn_id,
                            .address = sc->address,
                            .sni = sc->sni,
                            .alpn = sc->alpn,
                            .tls_version = sc->tls_version,
                            .cipher = sc->cipher,
                            .reused = sc->reused,
                            .retried = sc->retried,
                            .unverified = sc->unverified,
                            .verify_error = sc->verify_error,
                            .peer_cert = sc->peer_cert,
                            .via = sc->via,
                            .via_forward = sc->via_forward,
                            .client_cert_asked = sc->client_cert_asked,
                            .client_cert = sc->client_cert,
                            .resumed = sc->resumed,
                            .dns_override = sc->dns_override,
                            .opened_us = sc->opened_us,
                            .dns_us = sc->dns_us,
                            .connect_us = sc->connect_us,
                            .ssl_us = sc->ssl_us};
    reel_recorder_server_conn(f, &r);
}

int64_t reel_capture_start_us(const reel_capture_flow_t *f) {
    return f ? reel_rflow_start_us(f) : 0;
}

size_t reel_capture_body_limit(const reel_capture_flow_t *f) {
    return (size_t)reel_rflow_body_limit(f);
}

void reel_capture_finish(reel_capture_flow_t *f, const reel_capture_end_t *e) {
    if (f == NULL)
        return;
    reel_timings_t t;
    reel_flow_end_t fe = {0};
    if (e) {
        if (e->timings) {
            t = (reel_timings_t){.blocked_us = e->timings->blocked_us,
                                 .dns_us = e->timings->dns_us,
                                 .connect_us = e->timings->connect_us,
                                 .send_us = e->timings->send_us,
                                 .wait_us = e->timings->wait_us,
                                 .receive_us = e->timings->receive_us,
                                 .ssl_us = e->timings->ssl_us};
            fe.timings = &t;
        }
        fe.error = e->error;
        fe.time_us = e->time_us;
        fe.request_end_us = e->request_end_us;
        fe.response_start_us = e->response_start_us;
        fe.server_addr = e->server_addr;
        fe.response_excess = e->response_excess;
        if (e->client_tls)
            PUT_CLIENT_TLS(fe, e->client_tls);
    }
    reel_recorder_flow_finish(f, &fe);
}
