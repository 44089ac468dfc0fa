/* One flow read back from the spool for a user interface: its detail as
 * JSON (heads, timings, upstream connection, messages, errors) and the
 * bytes of one body, decoded, streamed to a sink.
 *
 * The web UI uses it; it shares the record walk (reel_store_read_flow) with
 * `reel flow` but keeps no state between calls. Memory is bounded: body
 * bytes are never gathered here (reel_flowread_body streams them), and the
 * data of WebSocket/TCP messages put into the detail is capped.
 *
 * Ownership: the session is borrowed; *out of reel_flowread_detail is
 * returned owned (json_decref). */
#ifndef REEL_SESSION_FLOWREAD_H
#define REEL_SESSION_FLOWREAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "flow.pb-c.h"
#include "session/decode.h"
#include "session/session.h"

/** Most messages put into one detail; the rest are counted in
 * "messages_omitted". */
#define REEL_FLOWREAD_MESSAGES_MAX 5000

/** Bytes as a JSON string when they are valid UTF-8, else {"b64": "..."}
 * (jansson refuses a string that is not UTF-8: a caller that used
 * json_string on them got NULL, and lost the field or the whole row). */
json_t *reel_json_bytes(const void *p, size_t n);

/** A C string as reel_json_bytes gives it; null for NULL. */
json_t *reel_json_text(const char *s);

/** Bytes in base64, as a JSON string. */
json_t *reel_json_b64(const void *p, size_t n);

/** A FlowStart's client_tls as JSON: {sni, alpn, tls_version, cipher
 * (each null when empty), resumed}; null for NULL (no TLS with the
 * client, or not recorded). */
json_t *reel_json_client_tls(const Reel__ClientTls *t);

/** A head's modify_headers changes (RequestHead.modified,
 * ResponseHead.modified) as a JSON array of {name, value (null: the field
 * removed), rule}; [] when there are none. */
json_t *reel_json_header_edits(Reel__HeaderEdit *const *e, size_t n);

/** A BodyEdit (modify_body) as JSON: {rules, replacements, sent_size,
 * decoded, not_applied (null: applied)}. Its response flag is not in it:
 * readers put it under request_body_edit or response_body_edit. */
json_t *reel_json_body_edit(const Reel__BodyEdit *b);

/** Whether b keeps the body as sent (sent_body, whole or its first bytes):
 * not when the rules were not applied (it went as it came), nor in a
 * spool written before reel kept it (empty, of a body that was not). */
bool reel_body_edit_sent_kept(const Reel__BodyEdit *b);

/** A ServerConn's set-up into object o: opened_us (null: not known),
 * dns_us, connect_us, ssl_us (-1: did not happen or not known, as in
 * timings; all -1 when opened_us is not known, the record holding nothing
 * then). */
void reel_json_conn_setup(json_t *o, const Reel__ServerConn *sc);

/** Flow id's detail into *out: {"request": head|null, "response": head|null,
 * "timings", "server_conn", "client_tls", "messages" (each with data_b64 while the total
 * stays within msg_data_max bytes, then data_omitted; the first
 * REEL_FLOWREAD_MESSAGES_MAX of them), "messages_omitted", "error",
 * "request_end_us", "response_start_us", "request_body_edit",
 * "response_body_edit" (reel_json_body_edit; null: none), "damage",
 * "read_error"}. A head is
 * {method, scheme, host, port, target, url, http_version, headers: [[name,
 * value]...], body_decoded, content_type, content_encoding} (response:
 * status, reason, generated instead of the request fields). Header names
 * and values that are not UTF-8 come as {"b64": ...}. REEL_NOTFOUND when
 * the flow does not exist; a damaged frame is not an error (read_error
 * says it). */
reel_rc reel_flowread_detail(reel_session_t *s, int64_t id, size_t msg_data_max, json_t **out,
                             reel_err_t *err);

/** What reel_flowread_body found. */
typedef struct {
    int has_head;           /* the direction had a head */
    char *content_type;     /* owned, NULL when none */
    char *encoding;         /* Content-Encoding as recorded, owned, NULL when none */
    int decoded;            /* bytes given to the sink are decoded (or needed no decoding) */
    char decode_error[256]; /* why decoding stopped ("" if it did not) */
    uint64_t total;         /* bytes given to the sink (or that would have been) */
} reel_flowread_body_t;

/** Streams the body of direction dir (0 request, 1 response) of flow id to
 * sink, with its Content-Encoding undone when decode is set and the coding
 * is known (else as stored; info->decode_error says why). The sink may
 * stop the walk by returning non-zero (info->total then counts what it was
 * given). Free info with reel_flowread_body_clear. REEL_NOTFOUND when the
 * flow does not exist. */
reel_rc reel_flowread_body(reel_session_t *s, int64_t id, int dir, int decode, reel_sink_fn sink,
                           void *ctx, reel_flowread_body_t *info, reel_err_t *err);

/** Frees what reel_flowread_body put into info; accepts NULL. */
void reel_flowread_body_clear(reel_flowread_body_t *info);

#endif
