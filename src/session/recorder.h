/* Recorder: the API the proxy (and the HAR importer) calls to record flows.
 *
 * Calls encode one Record and put it on a bounded queue; a writer thread
 * groups records into blocks, compresses each into one zstd frame, appends
 * it to the current spool segment, fsyncs per the durability policy and
 * then indexes the block in session.db. The calling thread never touches
 * the disk. The queue is bounded in bytes (queue_bytes, the capture_buffer
 * setting, 256 MiB by default), so it absorbs bursts the disk catches up
 * with. When it is full the recorder either blocks (capture "lossless") or,
 * with capture "on", never blocks and sheds body chunks first: 7/8 of the
 * budget may hold body chunks, the rest is kept for starts, heads and ends,
 * so a flow keeps its heads and its outcome; a body that is shed keeps a
 * stored prefix and the flow ends normally, with the bytes left out in
 * request_body_dropped / response_body_dropped (and *_truncated). Only if
 * even heads do not fit does a flow lose records and end with an error.
 * The warning callback reports each case once. A record larger than the
 * spool takes (REEL_SPOOL_RECORD_MAX; heads are split nowhere, and bounded
 * below it by max_head_size) is not queued: its flow records nothing more,
 * ends with an error that marks it damaged, and the callback says so each
 * time.
 *
 * When writing the spool fails (disk full, read-only file system, I/O
 * error) capture stops: records are dropped, the warning callback says so
 * once, and the writer checks every retry_ms whether writing works again
 * (free space, then a real write). When it does, capture resumes and the
 * callback says so once. Flows whose start was dropped are left out of the
 * session entirely; flows that lost records in the middle get no further
 * records and end with an error record saying what was lost (how many
 * records, and the body bytes after the stored prefix: the index marks
 * such a flow damaged, with its body holes). If the spool
 * segment itself was deleted (the session directory removed), capture stays
 * stopped. When the index (session.db) cannot be written, the spool keeps
 * going and the index thread re-reads the missing frames from the spool
 * once it can write again.
 *
 * Producers may call it from several threads at once (the proxy's loop,
 * and the web UI's replays into the session it records, on libuv's thread
 * pool) as long as each flow (reel_rflow_t) is used by one thread at a
 * time. Flow ids are given out in the order of the reel_recorder_flow_start
 * calls, and each flow's start record is queued before any record of a
 * later flow; its start time ("now", unless the caller gives one) is read
 * when its id is given, so ids follow start times whichever thread
 * started the flow. A body chunk takes the queue's lock once, as it always did;
 * nothing else on that path is shared. */
#ifndef REEL_SESSION_RECORDER_H
#define REEL_SESSION_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "session/retention.h"

#include <stdbool.h>
#include "session/session.h"

typedef struct reel_recorder reel_recorder_t;

/** Default and smallest queue_bytes. */
#define REEL_RECORDER_QUEUE_DEFAULT ((size_t)256 << 20)
#define REEL_RECORDER_QUEUE_MIN ((size_t)64 << 10)

typedef enum {
    REEL_FSYNC_BLOCK = 0, /* no record is done (flush) before an fdatasync covers it;
                             a sync thread runs fdatasync back to back, each one
                             covering every frame written since the last (default) */
    REEL_FSYNC_INTERVAL,  /* at most every fsync_interval_ms */
    REEL_FSYNC_NEVER,
} reel_fsync_policy;

typedef enum {
    REEL_CAPTURE_ON = 0,   /* record; drop (loudly) if the disk falls behind */
    REEL_CAPTURE_OFF,      /* record nothing */
    REEL_CAPTURE_LOSSLESS, /* record; block the caller if the disk falls behind */
} reel_capture_mode;

/** Operations a fault-injection hook can make fail (tests). */
typedef enum {
    REEL_FAULT_WRITE,  /* appending a frame to the segment */
    REEL_FAULT_SYNC,   /* fdatasync of the segment */
    REEL_FAULT_PROBE,  /* the free-space check and test write before resuming */
    REEL_FAULT_COMMIT, /* committing an index transaction (fails as SQLITE_FULL would) */
} reel_recorder_fault_op;

typedef struct {
    reel_fsync_policy fsync;
    uint32_t fsync_interval_ms; /* for REEL_FSYNC_INTERVAL */
    uint64_t segment_size;      /* roll to a new segment past this many bytes */
    uint64_t body_limit;        /* bytes of each body stored; 0 = nothing stored */
    reel_capture_mode capture;
    size_t queue_bytes; /* bound of the queue in bytes (capture_buffer);
                           0 = default (REEL_RECORDER_QUEUE_DEFAULT) */
    int zstd_level;     /* 0 = default (REEL_SPOOL_LEVEL_DEFAULT) */
    size_t block_size;  /* records per frame before it is written (the
                           spool_block_size option; 0: REEL_SPOOL_BLOCK_TARGET),
                           as reel_spool_block_size() bounds it */
    uint32_t retry_ms;  /* while capture is stopped, how often to check
                           whether writing works again; 0 = default (1000) */
    /* Called from the writer thread, the index thread or the caller with a
     * one-line message when capture falls behind, a disk error stops it,
     * it resumes, or indexing pauses and resumes. May be NULL (messages go
     * to stderr). */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
    /* Fault injection for tests; NULL in production. Called before each
     * operation `op` from the writer or index thread; a non-zero return is
     * an errno value the operation then fails with (a failing write first
     * writes half of its bytes, as a disk filling up mid-write does). */
    int (*fault)(void *ctx, reel_recorder_fault_op op);
    void *fault_ctx;
    /* Retention limits (0: none), applied by a maintenance thread after
     * each segment roll and every maint_ms (retention.h says what it
     * drops). */
    reel_retention_limits_t retention;
    /* Shell command run (sh -c 'CMD "$1"' with the closed segment's path)
     * by the maintenance thread once a segment is closed, before retention
     * may drop it; a failure is reported through warn. NULL = none.
     * Borrowed for reel_recorder_open (copied). */
    const char *on_segment_closed;
    uint32_t maint_ms; /* 0 = default (1000) */
} reel_recorder_opts_t;

/** Fills opts with the defaults. */
void reel_recorder_opts_default(reel_recorder_opts_t *opts);

/** One header as bytes (need not be NUL-terminated). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} reel_header_t;

/** A change reel made to a head it sent on, by a modify_headers rule
 * (RequestHead.modified, ResponseHead.modified): the fields named name
 * removed, then name: value added (value NULL: only removed); the head
 * sent loses the fields any change of its list names before any is added. */
typedef struct reel_header_edit {
    const char *name;
    const char *value;
    const char *rule; /* the rule as configured */
} reel_header_edit_t;

typedef enum { REEL_FLOW_HTTP = 0, REEL_FLOW_TUNNEL = 1 } reel_flow_kind;

typedef struct {
    reel_flow_kind kind;
    const char *client_addr; /* may be NULL */
    const char *server_addr; /* may be NULL */
    const char *source;      /* "proxy", "har-import"; NULL = "proxy" */
    int64_t time_us;         /* 0 = now */
    /* reel replay: the flow this one re-sends the request of (0: none),
     * its session's name (NULL: the same session) and uuid (may be NULL) */
    uint64_t replay_of;
    const char *replay_session;
    const char *replay_uuid;
    /* the client connection (proxy-local number, 0: unknown) and HTTP/2
     * stream id (0: none) it came on */
    uint64_t client_conn;
    uint32_t stream_id;
    /* the client's TLS with reel (FlowStart.client_tls; tls false: none):
     * each string may be NULL */
    bool tls, tls_resumed;
    const char *tls_sni, *tls_alpn, *tls_version, *tls_cipher;
} reel_flow_info_t;

typedef struct {
    const char *method;
    const char *scheme;
    const char *host;
    uint32_t port;
    const char *target; /* origin-form: path and query */
    const char *http_version;
    const reel_header_t *headers;
    size_t n_headers;
    int body_decoded;
    int absolute_form; /* the client's target was absolute-form (RequestHead.absolute_form) */
    int reverse;       /* reel as a reverse proxy for host:port (RequestHead.reverse) */
    const char *mapped_to; /* map_remote's URL (RequestHead.mapped_to); NULL: none */
    const char *original_dst; /* transparent: "ip:port" (RequestHead.original_dst); NULL: none */
    const reel_header_edit_t *edits; /* modify_headers' changes, in order */
    size_t n_edits;
    int64_t time_us;   /* 0 = now */
} reel_request_head_t;

typedef struct {
    uint32_t status;
    const char *reason;
    const char *http_version;
    const reel_header_t *headers;
    size_t n_headers;
    int body_decoded;
    int generated;   /* reel itself sent this response (refusal, origin failure) */
    const char *local_file; /* map_local answered from this file (ResponseHead.local_file) */
    const char *blocked_by; /* a block_list rule answered (ResponseHead.blocked_by) */
    const reel_header_edit_t *edits; /* modify_headers' changes, in order */
    size_t n_edits;
    int64_t time_us;        /* 0 = now */
} reel_response_head_t;

/** Timings in microseconds, -1 when unknown (as in HAR). */
typedef struct {
    int64_t blocked_us, dns_us, connect_us, send_us, wait_us, receive_us, ssl_us;
} reel_timings_t;

/** Per-flow recording state, owned by the caller between flow_start and
 * flow_end/flow_error (which free it). */
typedef struct reel_rflow reel_rflow_t;

/** Starts a writer thread recording into s (which must have been opened
 * with REEL_OPEN_RECORD and outlive the recorder). Returns owned. */
reel_rc reel_recorder_open(reel_session_t *s, const reel_recorder_opts_t *opts,
                           reel_recorder_t **out, reel_err_t *err);

/** Changes body_limit and capture for flows started from now on. */
void reel_recorder_set_limits(reel_recorder_t *rec, uint64_t body_limit, reel_capture_mode capture);

/** Changes the retention limits and the on_segment_closed command (NULL
 * or "" = none; copied) from now on. Never waits for the disk. */
void reel_recorder_set_retention(reel_recorder_t *rec, const reel_retention_limits_t *lim,
                                 const char *on_segment_closed);

/** Where the next frame will be appended (the segment and the offset in
 * it) and the id the next flow will get. Read before the first flow is
 * started, it is where everything this recorder records begins: reel
 * import's rollback point (session/importtx.h). */
void reel_recorder_position(reel_recorder_t *rec, uint32_t *segment, uint64_t *offset,
                            uint64_t *next_flow_id);

/** Starts a flow; returns an owned handle, never NULL (with capture off the
 * handle records nothing). */
reel_rflow_t *reel_recorder_flow_start(reel_recorder_t *rec, const reel_flow_info_t *info);

/** The flow's session-local id (0 when capture was off at its start). */
uint64_t reel_rflow_id(const reel_rflow_t *f);

void reel_recorder_request_head(reel_rflow_t *f, const reel_request_head_t *h);
/** One WebSocket or raw TCP message (see Message in schema/flow.proto). */
typedef struct {
    int from_client;
    uint32_t opcode;      /* WebSocket opcode; 0 for a TCP chunk */
    const void *data;     /* the first len bytes of the payload (borrowed) */
    size_t len;
    uint64_t length;      /* the whole payload's length */
    int truncated;        /* data was already cut before (the codec's cap) */
    int compressed;       /* sent with permessage-deflate */
    uint32_t close_code;  /* close frames */
    int64_t time_us;      /* when it passed; 0 = now (an import gives the file's) */
} reel_message_t;

/** Records a message as it passed: up to body_limit bytes of its payload,
 * its length counted in the flow's sizes. */
void reel_recorder_message(reel_rflow_t *f, const reel_message_t *m);

/** What modify_body rules did to a body (BodyEdit in schema/flow.proto). */
typedef struct {
    bool response;
    const char *const *rules; /* as configured */
    size_t n_rules;
    uint64_t replacements, sent_size;
    bool decoded;
    bool answered_continue;  /* reel sent the client's 100 (Continue) itself */
    const char *not_applied; /* NULL: they were applied */
    /* the body as sent (the rules applied; NULL: not known); the record
     * keeps its first bytes, up to the flow's body_limit and
     * REEL_SENT_BODY_MAX, and says when it cut them (sent_body_truncated,
     * also set here when these are fewer than sent_size) */
    const void *sent_body;
    size_t sent_body_len;
} reel_body_edit_t;

/** The most of a changed body a BodyEdit record keeps (sent_body). */
#define REEL_SENT_BODY_MAX (256u * 1024u)

/** Records e, after the body's last chunk. */
void reel_recorder_body_edit(reel_rflow_t *f, const reel_body_edit_t *e);

/** The upstream connection of a flow (see ServerConn in schema/flow.proto). */
typedef struct {
    uint64_t conn_id;
    const char *address, *sni, *alpn, *tls_version, *cipher; /* NULL: empty */
    int reused, retried;
    int unverified; /* TLS made with upstream_cert_verify off */
    /* the origin's certificate failed the check: why, and the facts of
     * the origin's own certificate (NULL: it did not) */
    const char *verify_error, *peer_cert;
    const char *via; /* the upstream proxy it went through, "host:port" (NULL: none) */
    bool via_forward; /* ... the requests sent to it in absolute form, not through CONNECT */
    /* the origin asked for a client certificate; the one reel presented
     * (its facts; NULL: none) */
    bool client_cert_asked;
    const char *client_cert;
    /* the TLS resumed a session kept from an earlier connection */
    bool resumed;
    const char *dns_override; /* the dns_overrides entry that gave address (NULL: none) */
    /* How the connection was set up: when reel began (its DNS lookup;
     * wall clock µs, 0: not known, and the three others are then not
     * recorded), and the µs its DNS lookup, TCP connect and TLS handshake
     * took (-1: did not happen or not known) */
    int64_t opened_us, dns_us, connect_us, ssl_us;
} reel_server_conn_t;

/** Records the upstream connection a flow's request went out on. */
void reel_recorder_server_conn(reel_rflow_t *f, const reel_server_conn_t *sc);

/** A record of f was larger than the spool takes in one
 * (REEL_SPOOL_RECORD_MAX): returns its encoded size and sets *what (may be
 * NULL) to what it held ("request head", ...; static); 0 if none was. The
 * flow then records nothing more and its end is an error that marks it
 * damaged. An importer asks before it ends the flow, to refuse the entry. */
size_t reel_rflow_too_large(const reel_rflow_t *f, const char **what);

/** Bytes of a body or message this flow stores (its body_limit); 0 when
 * capture was off at its start. */
uint64_t reel_rflow_body_limit(const reel_rflow_t *f);

/** The time its start record says (µs since the epoch); 0 when capture was
 * off at its start. */
int64_t reel_rflow_start_us(const reel_rflow_t *f);

/** Records body bytes up to body_limit; all bytes are counted. */
void reel_recorder_request_body(reel_rflow_t *f, const void *data, size_t len);
void reel_recorder_response_head(reel_rflow_t *f, const reel_response_head_t *h);
/** An informational (1xx, not 101) response before the final one. */
void reel_recorder_interim(reel_rflow_t *f, const reel_response_head_t *h);
/** The trailer fields of the request's (response false) or the response's
 * body, after its last chunk. */
void reel_recorder_trailers(reel_rflow_t *f, bool response, const reel_header_t *headers, size_t n,
                            bool not_passed_on);
void reel_recorder_response_body(reel_rflow_t *f, const void *data, size_t len);

/** The request's (response false) or the response's body was longer on
 * the wire than the bytes given to reel_recorder_request_body /
 * response_body: wire_size bytes (0, or not more than the bytes given:
 * how many is not known). The flow's end then says the body was truncated
 * and counts wire_size as its size, as for a body cut by body_limit (a
 * HAR import of a body that was cut when it was captured). Call before
 * the flow ends. */
void reel_recorder_body_truncated(reel_rflow_t *f, bool response, uint64_t wire_size);

/** The request's (response false) or the response's body was given to
 * reel_recorder_request_body / response_body decoded (its head says
 * body_decoded: a HAR import), and had wire_size bytes on the wire, still
 * content-encoded: fewer or more than the bytes given. The flow's end
 * counts wire_size as the body's size, in place of the bytes given or a
 * size reel_recorder_body_truncated gave; whether the body was cut is
 * said as before. Call before the flow ends. */
void reel_recorder_body_wire_size(reel_rflow_t *f, bool response, uint64_t wire_size);

/** Ends the flow normally and frees f. timings may be NULL; time_us 0 = now;
 * request_end_us/response_start_us 0 = unknown. */
void reel_recorder_flow_end(reel_rflow_t *f, const reel_timings_t *timings, int64_t time_us,
                            int64_t request_end_us, int64_t response_start_us);

/** Ends the flow with an error message and frees f. time_us 0 = now. */
void reel_recorder_flow_error(reel_rflow_t *f, const char *message, int64_t time_us);

/** How a flow ended; every field optional (zero/NULL = unknown). Borrowed
 * for the call. */
typedef struct {
    const char *error;             /* NULL: ended normally; else why it failed */
    const reel_timings_t *timings; /* phases, -1 for those that did not happen */
    int64_t time_us;               /* 0 = now */
    int64_t request_end_us, response_start_us;
    const char *server_addr; /* "ip:port" of the origin, if one was reached */
    uint64_t response_excess; /* bytes the origin sent past its response's end (FlowEnd) */
    /* the client's TLS with reel, recorded in the end (client_tls) only
     * when the flow's start did not have it (tls false: none, as in
     * reel_flow_info_t) */
    bool tls, tls_resumed;
    const char *tls_sni, *tls_alpn, *tls_version, *tls_cipher;
} reel_flow_end_t;

/** Ends the flow (FlowEnd, or FlowError when e->error is set) and frees f.
 * reel_recorder_flow_end and reel_recorder_flow_error are shorthands. */
void reel_recorder_flow_finish(reel_rflow_t *f, const reel_flow_end_t *e);

/** Waits until the writer has dealt with every record queued so far: it is
 * in the spool and indexed, or it was dropped. Returns the writer's sticky
 * error if records were ever dropped by a disk error, or REEL_DB while the
 * index is behind the spool (session.db cannot be written). */
reel_rc reel_recorder_flush(reel_recorder_t *rec, reel_err_t *err);

/** Counters for `reel show` / stats. `flows` counts flows started;
 * `lost_flows` those of them left out because capture had stopped before
 * their start record reached the disk; `dropped_records` every record not
 * written (body chunks that were shed are not records: they are counted in
 * bytes);
 * `unrecorded_bodies` bodies (request or response) not stored in full
 * because capture fell behind (capture on); `dropped_body_bytes` their
 * bytes left out, counted when their flows end; `syncs` fdatasyncs of the
 * spool (each covers every frame written before it started); `queue_peak`
 * the most bytes the queue held at once: at most queue_bytes, plus the end
 * records (about 100 bytes each) of flows that finished while it was full,
 * or one record larger than queue_bytes taken into an empty queue;
 * `queue_mem_peak` the most memory the queue's chunks took at once (what
 * queue_peak counts, plus their length prefixes, headers and unused room);
 * `helped_frames` the frames of `frames` the second compressor compressed
 * (while the writer was behind, on hosts with more than one core); `trims`
 * how often the memory a burst took was handed back to the system once
 * the queue was quiet again (after it held 16 MiB or more: under 1 MiB
 * for a second). */
typedef struct {
    uint64_t flows, records, frames, raw_bytes, spool_bytes, dropped_records, lost_flows;
    uint64_t unrecorded_bodies;
    uint64_t dropped_body_bytes, syncs, queue_peak, queue_mem_peak, helped_frames, trims;
} reel_recorder_stats_t;
void reel_recorder_stats(reel_recorder_t *rec, reel_recorder_stats_t *out);

/** Flushes, stops the writer thread and frees rec (accepts NULL). Returns
 * the writer's sticky error if a disk error dropped records at any point,
 * else REEL_DB if the index could not catch up with the spool (the next
 * open of the session indexes the rest). */
reel_rc reel_recorder_close(reel_recorder_t *rec, reel_err_t *err);

#endif
