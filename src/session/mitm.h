/* mitmproxy flow file import (`mitmdump -w`, mitmproxy's "Save" / `w`).
 *
 * A flow file is a concatenation of tnetstring dicts (tnetstring.h), one
 * per flow, each the flow's get_state() with a "version" key: the flow
 * format version, 14 for mitmproxy 7.0, 17 for 8.1 (Debian bookworm), 18
 * for 9, 20 for 10, 21 from 11 on. reel reads versions 12 to 21; the few
 * fields whose name or shape changed in between are read as
 * mitmproxy/io/compat.py would migrate them: marked is a boolean before 13
 * and a string since; comment appears in 14; WebSocket messages have 5
 * fields before 15 and 6 since; before 19 server_conn.sni may be True (the
 * server's address), and 19 renamed client_conn.address, server_conn
 * ip_address and cipher_name to peername, peername and cipher. Older
 * (tuple) and newer versions are refused.
 *
 * The whole file is read into memory (at most REEL_MITM_MAX_FILE_SIZE
 * bytes), every flow parsed and checked, and only then are flows recorded,
 * in file order, one reel flow each; bodies are fed to the recorder from
 * the file's buffer, nothing is copied.
 *
 * Mapping of one "http" flow:
 * - flow: source "mitm-import", start time = timestamp_created (else the
 *   request's start), client_addr from client_conn peername, server_addr
 *   from server_conn peername;
 * - ServerConn when server_conn has a peername: its address, sni, alpn,
 *   tls_version, cipher;
 * - FlowStart.client_tls when client_conn has a tls_version: its sni,
 *   alpn (alpn_proto_negotiated before 19), tls_version, cipher (values
 *   of another type left out);
 * - request head: method, scheme, host, port, target = path (authority
 *   for CONNECT), http_version, headers in order, body_decoded 0: content
 *   is the body as on the wire (Content-Encoding not removed; chunked
 *   framing is, as in any reel flow); time = timestamp_start;
 * - response head (when there is a response): status_code, reason,
 *   http_version, headers, content as sent; time = timestamp_start;
 * - WebSocket messages (type, direction, content) after the 101 response,
 *   then a close message with the close code and reason when the
 *   connection closed; their own timestamps are not kept (the recorder
 *   stamps messages when it takes them);
 * - the flow ends at the response's (or the WebSocket's) timestamp_end,
 *   with FlowError error.msg when the flow has an error; timings: send
 *   (request start to end), wait (request end to response start) and
 *   receive (response start to end), the rest unknown;
 * - comment (non-empty) becomes an annotation, a non-empty marked a mark
 *   (reel_mitm_apply_user_data, once the flows are indexed).
 * A "tcp" flow is recorded as the proxy records a TCP tunnel (kind TUNNEL):
 * a CONNECT head with scheme "tcp" to server_conn's address ("tls" when
 * mitmproxy relayed it over TLS: client_conn or server_conn has tls or
 * tls_established true, or a timestamp_tls_setup), ServerConn,
 * then its messages (opcode 0) in order, ending at server_conn's
 * timestamp_end (else the last message's). Flows of other types (udp,
 * dns) are skipped and counted. Request
 * and response trailers, intercepted/replay state and metadata are not
 * imported. */
#ifndef REEL_SESSION_MITM_H
#define REEL_SESSION_MITM_H

#include <sqlite3.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>

#include "base/error.h"
#include "session/recorder.h"

/** Largest flow file accepted (it is held in memory whole). */
#define REEL_MITM_MAX_FILE_SIZE (UINT64_C(4) << 30)

/** Flow format versions read. */
#define REEL_MITM_VERSION_MIN 12
#define REEL_MITM_VERSION_MAX 21

typedef struct {
    uint64_t flows;    /* flows recorded */
    uint64_t first_id; /* flow id of the first, 0 if none */
    uint64_t last_id;
    uint64_t skipped;   /* flows of another type (udp, dns) */
    uint64_t annotated; /* flows whose comment became an annotation */
    uint64_t marked;    /* flows marked */
} reel_mitm_stats_t;

/** A parsed and checked flow file. */
typedef struct reel_mitm reel_mitm_t;

/** 1 when buf (the start of a file) looks like a mitmproxy flow file: a
 * tnetstring length digit (then more digits and ':'), else 0. */
int reel_mitm_sniff(const uint8_t *buf, size_t len);

/** Reads the file at path and parses and checks every flow in it (see
 * reel_mitm_parse). Returns REEL_IO (cannot read), REEL_LIMIT (larger
 * than the cap) or the parse error. Returns owned in *out. */
reel_rc reel_mitm_load(const char *path, reel_mitm_t **out, reel_err_t *err);

/** Parses and checks a whole flow file held in buf (takes buf, an
 * allocation of len bytes that reel_mitm_free frees; name is used in
 * messages, copied). An empty file holds no flows. Errors name the file,
 * the flow (1-based) and its byte offset, and what was wrong:
 * "f.mitm: flow 3 (byte 5120): truncated: needs 2048 bytes, the file ends
 * after 100", "f.mitm: flow 1 (byte 0): flow format version 22 is not
 * supported (reel reads 12 to 21)", "f.mitm: flow 2 (byte 1988):
 * request.headers[1]: not a [name, value] pair of byte strings".
 * REEL_CORRUPT for damaged tnetstrings, REEL_UNSUPPORTED for versions,
 * REEL_INVALID for well-formed values of the wrong shape, REEL_LIMIT for
 * the parser's caps. On error *out is NULL and buf is freed. */
reel_rc reel_mitm_parse(uint8_t *buf, size_t len, const char *name, reel_mitm_t **out,
                        reel_err_t *err);

/** Number of flows in m, skipped ones included. */
size_t reel_mitm_count(const reel_mitm_t *m);

/** Has reel_mitm_record call fn(ctx, flows done, flows) after each flow
 * (a progress line). */
void reel_mitm_set_progress(reel_mitm_t *m, void (*fn)(void *ctx, uint64_t done, uint64_t total),
                            void *ctx);

/** Has reel_mitm_record stop before its next flow once *stop is non-zero
 * (a signal handler sets it; borrowed, NULL: never). */
void reel_mitm_set_stop(reel_mitm_t *m, const volatile sig_atomic_t *stop);

/** Records every http and tcp flow of m through rec (see the mapping above), in
 * file order, then flushes rec; remembers each flow's id in m for
 * reel_mitm_apply_user_data. stats (may be NULL) is filled even on error.
 * Returns the recorder's sticky error, if any, or REEL_INTERRUPTED when
 * the stop flag was set (the flows before are recorded). */
reel_rc reel_mitm_record(reel_recorder_t *rec, reel_mitm_t *m, reel_mitm_stats_t *stats,
                         reel_err_t *err);

/** Adds the comments (annotations) and marks of the flows recorded by
 * reel_mitm_record to db (a session's index, after the recorder has
 * indexed the flows), in one transaction: all or nothing. Counts them in
 * stats. Returns REEL_DB on SQLite errors (rolled back). */
reel_rc reel_mitm_apply_user_data(sqlite3 *db, const reel_mitm_t *m, reel_mitm_stats_t *stats,
                                  reel_err_t *err);

/** Frees m and its buffer; accepts NULL. */
void reel_mitm_free(reel_mitm_t *m);

/** Size cap used by reel_mitm_load; REEL_MITM_MAX_FILE_SIZE unless a test
 * lowers it. */
extern uint64_t reel__mitm_max_file_size;

#endif
