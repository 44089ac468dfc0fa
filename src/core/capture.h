/* Capture: the one module of src/core/ that talks to the recorder.
 *
 * The proxy describes what passes in core terms (protocol-neutral heads,
 * body bytes, how a flow ended) and capture turns that into recorder calls;
 * no other core file knows src/session/. A flow handle is owned by the
 * caller from reel_capture_start until reel_capture_finish, which frees it.
 * Everything passed in is borrowed for the call. Not thread-safe: the
 * proxy's loop thread calls it. */
#ifndef REEL_CORE_CAPTURE_H
#define REEL_CORE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

typedef struct reel_recorder reel_recorder_t;
/** A flow being recorded (the recorder's handle). */
typedef struct reel_rflow reel_capture_flow_t;

typedef enum {
    REEL_CAPTURE_HTTP = 0,   /* a request/response exchange */
    REEL_CAPTURE_TUNNEL = 1, /* bytes relayed raw (CONNECT not intercepted, after a 101) */
} reel_capture_kind;

/** Phases of an exchange in microseconds, HAR style; -1: did not happen. */
typedef struct {
    int64_t blocked_us, dns_us, connect_us, ssl_us, send_us, wait_us, receive_us;
} reel_capture_timings_t;

/** The client's TLS with reel, for a flow inside an intercepted TLS
 * connection whose handshake is done (each string may be NULL). */
typedef struct {
    const char *sni;         /* from the client's ClientHello */
    const char *alpn;        /* chosen by ALPN */
    const char *tls_version; /* "TLSv1.3", ... */
    const char *cipher;
    bool resumed; /* the client resumed an earlier TLS session */
} reel_capture_tls_t;

/** How a flow ended; every field optional (0/NULL: unknown). */
typedef struct {
    const char *error; /* NULL: normally; else why it failed */
    const reel_capture_timings_t *timings;
    int64_t time_us; /* 0: now */
    int64_t request_end_us, response_start_us;
    const char *server_addr;  /* "ip:port" once an origin was reached */
    uint64_t response_excess; /* bytes past the response's end, not passed on */
    /* the client's TLS with reel, kept (FlowEnd.client_tls) when the
     * flow's start did not have it: its handshake began after the flow */
    const reel_capture_tls_t *client_tls;
} reel_capture_end_t;

/** Starts a flow; never NULL (with capture off it records nothing).
 * client_addr/server_addr may be NULL; client_conn: the client connection
 * (proxy-local number) and stream_id its HTTP/2 stream (0: none) the flow
 * came on; time_us 0: now; tls: the client's TLS (NULL: none, or not
 * known). */
reel_capture_flow_t *reel_capture_start(reel_recorder_t *rec, reel_capture_kind kind,
                                        const char *client_addr, const char *server_addr,
                                        uint64_t client_conn, uint32_t stream_id, int64_t time_us,
                                        const reel_capture_tls_t *tls);

/** An informational (1xx, not 101) head before the final response. */
void reel_capture_interim(reel_capture_flow_t *f, const reel_msg_head_t *h);
/** The trailer fields of the request's or the response's body;
 * not_passed_on: they did not reach the other side (Trailers.not_passed_on). */
void reel_capture_trailers(reel_capture_flow_t *f, bool response, const reel_field_t *fields,
                           size_t n, bool not_passed_on);

/** The request head (scheme, host, port, path, method, version, fields). */
void reel_capture_request(reel_capture_flow_t *f, const reel_msg_head_t *h);
/** The same, read at time_us (0: now). */
void reel_capture_request_at(reel_capture_flow_t *f, const reel_msg_head_t *h, int64_t time_us);

/** The response head; generated: reel itself sent it (a refusal or an
 * origin failure). time_us 0: now. */
void reel_capture_response(reel_capture_flow_t *f, const reel_msg_head_t *h, bool generated,
                           int64_t time_us);

/** Body bytes of the request (response false) or the response; all are
 * counted, up to body_limit are stored. */
void reel_capture_body(reel_capture_flow_t *f, bool response, const void *data, size_t len);

/** One message of a WebSocket (opcode 1 text, 2 binary, 8 close, 9 ping,
 * 10 pong) or raw TCP (opcode 0: the bytes of one read) flow, as it
 * passes: data holds len bytes of a payload of length bytes (truncated:
 * cut by the codec's cap), compressed: sent with permessage-deflate,
 * close_code for a close. body_limit applies per message. */
void reel_capture_message(reel_capture_flow_t *f, bool from_client, uint32_t opcode,
                          const void *data, size_t len, uint64_t length, bool truncated,
                          bool compressed, uint32_t close_code);
/** The same, for a message that passed at time_us (wall clock µs), not now. */
void reel_capture_message_at(reel_capture_flow_t *f, bool from_client, const void *data, size_t len,
                             int64_t time_us);

/** The upstream connection a flow's request went out on. */
typedef struct {
    uint64_t conn_id;        /* proxy-local number of the connection */
    const char *address;     /* "ip:port" */
    const char *sni;         /* NULL or "": plain TCP */
    const char *alpn;        /* protocol chosen by ALPN, NULL or "": none */
    const char *tls_version; /* NULL or "": plain TCP */
    const char *cipher;
    bool reused;             /* kept alive from an earlier flow */
    bool retried;            /* the request went out again on this new connection */
    bool unverified;         /* TLS made with upstream_cert_verify off */
    /* the certificate failed the check: why (NULL: it did not); with
     * unverified, the check found it so and the connection went on */
    const char *verify_error;
    const char *peer_cert; /* ... and the facts of the origin's own certificate */
    const char *via;       /* the upstream proxy, "host:port"; NULL: none */
    bool via_forward;      /* ... which the requests went to in absolute form, no CONNECT */
    bool client_cert_asked;  /* the origin asked for a client certificate */
    const char *client_cert; /* ... and the one reel presented (its facts; NULL: none) */
    bool resumed;            /* the TLS resumed a session from an earlier connection */
    const char *dns_override; /* the dns_overrides entry that gave address (NULL: none) */
    /* How the connection was set up: when its DNS lookup began (wall
     * clock µs; 0: not known, the three others then ignored), and how
     * long its DNS, TCP connect and TLS handshake took (µs, -1: did not
     * happen or not known) */
    int64_t opened_us, dns_us, connect_us, ssl_us;
} reel_capture_conn_t;

/** Records what modify_body rules did to f's request or response body
 * (after it): the rules (as configured, n of them), matches replaced,
 * bytes sent, whether it was decoded, whether reel answered the request's
 * Expect: 100-continue itself; not_applied: why they were not (NULL: they
 * were); the body as sent when they were (its first bytes are kept). */
void reel_capture_body_edit(reel_capture_flow_t *f, bool response, const char *const *rules,
                            size_t n, uint64_t replacements, uint64_t sent_size, bool decoded,
                            bool answered_continue, const char *not_applied, const void *sent_body,
                            size_t sent_body_len);

/** Records the upstream connection of f. */
void reel_capture_server_conn(reel_capture_flow_t *f, const reel_capture_conn_t *sc);

/** Bytes of each body or message that f stores (body_limit when it
 * started); 0 when capture is off for it. */
size_t reel_capture_body_limit(const reel_capture_flow_t *f);

/** When f's start record says it started (0: not recorded). */
int64_t reel_capture_start_us(const reel_capture_flow_t *f);

/** Ends the flow and frees f (accepts NULL). e may be NULL. */
void reel_capture_finish(reel_capture_flow_t *f, const reel_capture_end_t *e);

#endif
