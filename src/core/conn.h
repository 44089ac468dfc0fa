/* The proxy's internals, shared by its files (proxy.c, conn.c, peer.c,
 * exchange.c, tunnel.c) and by nothing else: the connection, its two
 * peers and the proxy object, and the reel__ functions one file calls in
 * another. The design these implement is described at the top of proxy.c
 * and in docs/architecture.md. */
#ifndef REEL_CORE_CONN_H
#define REEL_CORE_CONN_H

#include "core/proxy.h"
#include "base/dnsmap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include "base/mem.h"
#include "base/noproxy.h"
#include "core/ca.h"
#include "core/capture.h"
#include "core/codec.h"
#include "core/filter.h"
#include "core/http1.h"
#include "core/sniff.h"
#include "core/tls.h"
#include "core/ws.h"
#include "session/maprule.h"

/* One read's room, a buffer per worker shared by all its sockets. 256 KiB
 * rather than 64: relaying 1 MiB bodies took a read, a parse and a write
 * (each a syscall) per 64 KiB, and four times fewer of them moved 1 MiB
 * keep-alive from 0.42-0.45 to 0.54-0.72 of direct (docs/benchmarks.md).
 * The price: reading from a peer pauses once the other side has HIGH_WATER
 * queued (reel__peer_update_reading), so a connection whose client does
 * not take its bytes holds up to HIGH_WATER plus one read, now 1.25 MiB
 * instead of 1.06. */
#define READ_SIZE (256u << 10)
#define HIGH_WATER (1u << 20)
#define LOW_WATER (256u << 10)
#define CORK_MAX (16u << 10)
#define CLIENT_IN_MAX (4u << 20) /* pipelined bytes held while a response runs */
#define SNIFF_WAIT_MS 3000       /* a CONNECT's client silent this long: the server speaks first */
/* A CONNECT's client silent this long (after the 200, or inside its TLS
 * after its handshake): reel connects to its origin, so that a server
 * that speaks first (SMTP, FTP, IMAP, MySQL; IMAPS) is heard at once
 * rather than at SNIFF_WAIT_MS (core/tunnel.c). A client that speaks
 * first does so one round trip after the 200, well before. */
#define EAGER_CONNECT_MS 500
#define LINGER_TOTAL_MS 30000 /* nginx's lingering_time */
#define LINGER_IDLE_MS 5000   /* nginx's lingering_timeout */
/* A body read until the close and cut (reel__exchange_cut): how long what
 * is still queued for the client gets to reach it before the reset, and
 * how often the socket's send queue is looked at meanwhile. */
#define CUT_DELIVER_MS 10000
#define CUT_POLL_MS 25

typedef struct conn conn_t;
/* A flow whose response reel has read whole, waiting for the client to
 * take the rest of it (core/exchange.c). */
typedef struct reel_fin reel_fin_t;
/* The head of a CONNECT reel accepted, as its client sent it: one
 * allocation holding the fields' bytes after them (core/exchange.c). A
 * lane's is its HTTP/2 stream's: version HTTP/2.0 and the stream's fields. */
typedef struct {
    char version[16]; /* "HTTP/1.1", "HTTP/1.0", "HTTP/2.0" */
    /* when its head was read, and when reel answered it 200 (0: not yet):
     * the tunnel's flow, begun once reel knows what the tunnel carries
     * (seconds later for a protocol whose server speaks first), starts
     * and is answered when the client saw it happen */
    int64_t head_us, answered_us;
    size_t nfields;
    reel_field_t fields[]; /* in wire order */
} reel_connect_head_t;

typedef enum { P_CLIENT, P_UPSTREAM } peer_role;

/* One side of a connection: a stack of transport filters (core/filter.h:
 * tcp, then tls when intercepted or toward an https origin) and the
 * plaintext it delivered that the codec above has not consumed yet. */
typedef struct peer {
    conn_t *c;
    peer_role role;
    reel_stack_t st;
    bool open; /* the stack exists and has not reported `closed` */
    bool connected, closing, eof, paused;
    reel_buf_t in;   /* plaintext received, not yet consumed */
    reel_buf_t pend; /* plaintext waiting for connect/handshake */
    /* While corked (reel__peer_cork), small writes gather here and leave
     * in one send when uncorked: a response head and the short body read
     * with it cost one write, not two. */
    int cork;
    reel_buf_t corked;
    bool close_when_flushed;
    bool notified;     /* our TLS close_notify is sent (or not to be): reel__peer_notify_first */
    bool fin_sent;     /* its side half-closed by reel, lingering (conn_t ws_linger) */
    uint64_t progress; /* when a byte was last read or written (upstream_timeout) */
    /* upstream only */
    char *host; /* origin host (for reuse checks and SNI) */
    char *sni;  /* host to verify/send as SNI, if different */
    int port;
    bool https;
    bool insecure; /* https made while upstream_cert_verify was off: never reused once on */
    char addr[64]; /* "ip:port" once connected */
    char *error;   /* why the upstream failed, for the 502 */
    /* when each phase of setting it up ended (wall clock, µs; 0: not yet) */
    int64_t t_dns0, t_dns1, t_connected, t_ready;
    bool timings_used; /* a flow has been given its dns/connect/ssl times */
    uint64_t id;       /* proxy-local number, for ServerConn records */
    int flows;         /* flows sent on it so far */
    bool h2;           /* a stream of a shared HTTP/2 session (core/h2up.c) */
    bool eager;        /* opened while its CONNECT's client had said nothing (EAGER_CONNECT_MS) */
    char *via;         /* upstream: the upstream proxy it was made through (NULL: none) */
    char *dns_entry;   /* ... the dns_overrides entry that gave its address (NULL: none) */
    bool forward;      /* ... which its requests go to in absolute form, no tunnel */
    bool held;         /* that plain connection, kept for reel's TLS to its origin: the client
                        * spoke TLS (core/tunnel.c; core/peer.c's upstream_open takes it) */
    int64_t t_starttls; /* its TLS began then, after plain TCP (STARTTLS); 0: not so */
} peer_t;

typedef enum {
    C_HEAD,      /* waiting for a request head */
    C_REQ_BODY,  /* forwarding a request body */
    C_WAIT_RESP, /* request done; response running */
    C_SNIFF,     /* after CONNECT 200: looking at the first bytes */
    C_PROBE,     /* a ClientHello offering h2 waits while reel asks the
                    origin what it speaks (ALPN mirrored, core/tunnel.c) */
    C_RAW,       /* raw tunnel */
    C_DONE,      /* closing */
    C_H2,        /* the client speaks HTTP/2: streams served by lanes
                    (core/h2front.c) */
    C_SOCKS,     /* the client speaks SOCKS5: its greeting, password or
                    request being read (core/socks_front.c) */
    C_LINGER,    /* error answered and sent: our side half-closed, the
                    client's bytes read and dropped until it closes (RFC
                    9112 9.6), so that a client still sending gets the
                    answer instead of a reset (HTTP/2: after reel's GOAWAY
                    for an error, its bytes go to the codec first) */
} conn_state;

/* One request and its response (HTTP/1: one at a time per connection;
 * HTTP/2: one per stream): the stream it is on at each side, the flow
 * being recorded, its progress and its retry state. */
/* The most 1xx heads an exchange passes on and records before its final
 * response: an origin sending them without end is refused (502). */
#define REEL_MAX_INTERIM 64

/* What a flow's record needs of its upstream connection, kept in the
 * exchange once known: the origin may close, and c->up go, while the flow
 * still runs (an early 413 with Connection: close, the client still
 * sending its body). */
typedef struct {
    bool known;
    uint64_t id; /* the peer_t's */
    bool fresh;  /* the flow has the connection's dns/connect/ssl times */
    bool https;
    int64_t dns0, dns1, connected, ready; /* as in peer_t */
    char addr[64];                        /* "" until connected */
} upstream_facts_t;

/* modify_body: a message held whole, its head as it will go (without its
 * framing fields and last CRLF) and its body as it came, to be changed by
 * the rules of mask (a reference kept) before it goes; or, held past the
 * limit, sent on chunked by reel (rechunk). */
typedef struct {
    bool on, rechunk;
    bool continued; /* reel answered the request's Expect: 100-continue */
    reel_body_rules_t *rules;
    uint64_t mask;
    reel_buf_t head, body;
    char *coding; /* its Content-Encoding (NULL: none) */
} body_hold_t;

typedef struct {
    uint32_t client_sid; /* the request's stream on the client side */
    uint32_t server_sid; /* ... on the upstream side (0: not sent) */
    reel_capture_flow_t *flow;
    bool resp_head_sent, req_done, resp_done;
    /* the final response said the origin closes after it (Connection:
     * close, HTTP/1.0 without keep-alive): a request body still coming
     * has nowhere to go once it is whole (reel__resp_process) */
    bool resp_close;
    bool client_h10;              /* the request came as HTTP/1.0: no 1xx for it (RFC 9110 15.2) */
    bool resp_until_close;        /* the response's body ends at the origin's close */
    int64_t client_ended_us;      /* the client ended its side while waiting for the response */
    bool resp_dechunk;            /* a chunked response to an HTTP/1.0 client: sent to it
                                     as the body alone, ended by the close (RFC 9112 6.1);
                                     or an HTTP/2 origin's with a content-length, to an
                                     HTTP/1.1 client: framed by that length */
    bool upgrade;                 /* request asked for an Upgrade */
    bool ws_requested;            /* ... to WebSocket */
    reel_ws_deflate_t ws_deflate; /* what the server's 101 accepted */
    bool ws_ok;                   /* the 101 switched to WebSocket with extensions reel reads */
    uint64_t head_started;        /* when the first byte of the request head arrived, 0 if none */
    uint64_t resp_head_started;   /* the same for the response head */
    int64_t req_end_us;
    int64_t head_us;       /* when the request head was read */
    int64_t flow_start_us; /* its flow's start record's time (0: none) */
    int64_t resp_first_us; /* first byte of its response, 0: none yet */
    unsigned interims;     /* 1xx heads before the final one (REEL_MAX_INTERIM) */
    uint64_t resp_excess;  /* bytes the origin sent right after its response's end */
    bool flow_upstream;    /* the flow was sent to c->up */
    bool conn_recorded;    /* its ServerConn record is written */
    upstream_facts_t upf;  /* of the upstream connection it was sent on */
    /* The head of a request that may be sent again on a new upstream
     * connection if a reused one closes before answering (empty: may not). */
    reel_buf_t retry_head;
    /* The bytes of the head being read (request, then response) that
     * earlier reads brought, at most HEAD_QUOTE_MAX: with what is left in
     * the buffer, a refused head's bytes as they came (exchange.c's
     * head_as_it_came). Only a head split across reads copies any. */
    reel_buf_t head_raw;
    bool retry_is_head, retried;
    /* retried because the kept-alive connection closed while reel held
     * the request for modify_body: nothing of it went before, so it is
     * not "again" (no ServerConn.retried, and errors say so) */
    bool retry_held;
    bool retry_unprocessed_only; /* ... only if the origin said it did not process it */
    /* map_local's answer: the file being sent (core/maplocal.c; NULL:
     * none, or all of it sent) */
    struct reel_local *local;
    const char *blocked_by; /* block_list's rule, while its answer is recorded (borrowed) */
    /* modify_headers: the request as its rules judge it again with its
     * response (exchange.c's rule_req_save; empty: there were no rules
     * when it was sent), and the changes made to the request being sent
     * (borrowed from the rules, for start_flow's record) */
    reel_buf_t rule_req;
    const reel_header_edit_t *req_edits;
    size_t n_req_edits;
    /* modify_body (exchange.c's hold_*), [0] the request, [1] the
     * response */
    body_hold_t hold[2];
} exchange_t;

struct conn {
    reel_proxy_t *p;
    conn_t *prev, *next;
    peer_t client;
    peer_t *up;
    conn_state state;
    /* HTTP: requests from the client, responses from the upstream */
    reel_codec_t *reqc, *respc;
    uv_timer_t timer; /* one-shot, armed for the earliest deadline */
    bool timer_open;
    uint64_t timer_due; /* loop time the timer fires at, 0: not armed */
    bool linger;        /* linger once the error answer is flushed */
    /* C_LINGER after a WebSocket peer broke the protocol: each side
     * (socket or HTTP/2 stream), once reel's Close frame is out,
     * half-closed and read (and dropped) until its peer ends its own
     * (core/tunnel.c) */
    bool ws_linger;
    uint64_t linger_start;
    char client_ip[48]; /* for the per-client connection count */
    bool counted;       /* counted in the proxy's per-client table */
    int handles;        /* open uv handles owned by this conn (client tcp, timer) */
    uint64_t last_activity;
    char client_addr[64];
    /* Inside a CONNECT tunnel: the origin every request goes to. */
    bool in_tunnel, tunnel_tls;
    /* ... or reverse_to's, a connection of reel as a reverse proxy (as a
     * tunnel no CONNECT asked for: nothing answered, no CONNECT
     * recorded; its requests go to reverse_to's scheme, whatever the
     * client speaks: reel__tunnel_https) */
    bool reverse;
    /* ... or one the OS redirected to reel (transparent): its tunnel goes
     * to the address the client connected to, tunnel_host and
     * tunnel_port; its requests are recorded under the name the client
     * gave (core/exchange.c), with that address as original_dst */
    bool transparent;
    char *tunnel_host;
    int tunnel_port;
    char *tunnel_sni;
    uint64_t sniff_started;
    unsigned sniff_grace; /* times the sniff deadline found bytes unread (conn.c) */
    /* C_SNIFF: the origin closed the early connection having said nothing,
     * so it is no server that speaks first: the client's silence does not
     * make the tunnel a raw one (its bytes decide, however late) */
    bool origin_closed_silent;
    bool eager_tried;     /* C_SNIFF: the origin was connected to early (EAGER_CONNECT_MS) */
    /* C_SNIFF before any TLS: when the client's first bytes came (0: none
     * yet). From then on the client is not silent: sniffing waits for
     * what it needs up to head_timeout, not SNIFF_WAIT_MS (conn.c). */
    uint64_t sniff_bytes_at;
    int64_t sniff_bytes_us; /* ... the same, wall clock µs (0: not known) */
    /* The CONNECT reel accepted, as its client sent it, for the tunnel's
     * flow (NULL: none, or already recorded): owned, freed once that
     * flow's request is recorded or the tunnel turns out to carry HTTP. */
    reel_connect_head_t *connect_head;
    /* HTTP/1: the one exchange running on the connection. */
    exchange_t ex;
    uint32_t next_sid; /* stream id the next request gets (1, 2, ...) */
    bool client_close; /* close the client after this exchange */
    bool spoke_http;   /* a whole request head came on the connection */
    /* Its tunnel was asked for with SOCKS5, not CONNECT (answered in
     * SOCKS5), and which of the client's messages comes next: 0 the
     * greeting, 1 its username and password, 2 its request. */
    bool socks;
    uint8_t socks_phase;
    /* Once the connection leaves HTTP (a tunnel, a 101): a codec per
     * direction (0: bytes from the client, 1: from the server), NULL
     * before. WebSocket codecs when `websocket` (the flow stays the
     * exchange's: the handshake is its request and response, the messages
     * follow), raw TCP otherwise. */
    reel_codec_t *tun[2];
    bool websocket;
    /* A WebSocket: whose end of stream came first (1 the client, 2 the
     * server, 3 both in one go; 0: none yet), to tell which side dropped
     * the connection without a Close frame (core/tunnel.c) */
    uint8_t ws_eof_first;
    bool tun_half_closed; /* a plain tunnel: the server's EOF passed on to the client */
    /* a tunnel whose origin connection failed (refused, reset): its client
     * is cut, which a lane's CONNECT stream says with RST_STREAM
     * CONNECT_ERROR rather than END_STREAM (RFC 9113 8.5) */
    bool tunnel_failed;
    bool draining; /* proxy shutting down: close after this exchange */
    /* Raw tunnel flow (NULL for an ignored host: relayed, not recorded). */
    reel_capture_flow_t *tflow;
    /* After a 101 to an Upgrade other than WebSocket, tflow is the
     * upgrade's own HTTP flow, its end (timings of the request and the 101)
     * held here until the tunnel ends: the bytes are its messages, and no
     * CONNECT the client never sent is recorded. */
    reel_fin_t *upgrade_fin;
    bool tunnel_reply; /* answer the CONNECT with 200 once the upstream is connected */
    reel_tls_t *probe_tls; /* C_PROBE: the client's TLS, not started yet (also a TLS
                              tunnel's whose ALPN waits for the origin's choice) */
    /* The ALPN probe failed (timed out, refused, an error): why, owned,
     * and the answer (504 or 502) the client's first request to that
     * origin gets at once instead of a second wait; its flow starts when
     * the probe did (exchange.c). NULL: no failure to tell. */
    char *probe_error;
    int probe_status;
    int64_t probe_started_us;
    /* ... and the connection it made, when it reached the origin (known;
     * its TLS handshake then failed or stalled): that flow's ServerConn
     * and server address, with the SNI it sent, the upstream proxy it
     * went through and the dns_overrides entry it took (owned; NULL:
     * none) */
    upstream_facts_t probe_upf;
    char *probe_sni, *probe_via, *probe_dns;
    /* A TLS tunnel: TLS carrying something other than HTTP, relayed as a
     * tunnel flow (scheme "tls") over TLS on both legs (core/tunnel.c). */
    bool tls_tunnel;
    /* A plain TCP tunnel's STARTTLS (core/tunnel.c): how far it got
     * (ST_*), the protocol that asked (SMTP, IMAP, POP3) and an IMAP
     * command's tag */
    uint8_t starttls, starttls_proto;
    char starttls_tag[24];
    /* a TLS filter is on the client's stack (start_client_tls): flows
     * look for the client's TLS facts only then */
    bool client_tls;
    bool tls_conn_recorded; /* its ServerConn record is written */
    bool tls_client_ended;  /* the client's close_notify passed on to the origin */
    /* ALPN the next reel__upstream_for offers an https origin
     * (comma-separated, "" for none; borrowed, set only around that
     * call); NULL: HTTP's */
    const char *upstream_alpn;
    /* HTTP/2: the client's streams when it speaks h2 (core/h2front.c) */
    struct h2front *h2;
    /* This conn is a lane of an HTTP/2 client connection (its client is
     * a stream, not a socket): its flows are recorded as HTTP/2.0, with
     * the fields the client sent (borrowed from the stream, NULL between
     * streams). */
    struct lane *lane;
    const reel_field_t *lane_fields;
    size_t lane_nfields;
    uint32_t lane_stream; /* the stream it serves (0: none) */
    /* Trailers the stream's client sent after a body with a
     * content-length (borrowed from the stream): its HTTP/1.1 request,
     * framed by that length, cannot carry them, so they are recorded at
     * the request's end and not passed on (core/h2front.c). */
    const reel_field_t *lane_trailers;
    size_t lane_ntrailers;
    /* when that stream's HEADERS came (0: none): its flow starts then,
     * and the time it waited for this lane is in its `blocked` */
    int64_t lane_came_us;
    /* Its stream is a CONNECT tunnel (RFC 9113 8.5), accepted: what comes
     * now is the tunnel's bytes, and a request in them is recorded as any
     * tunnel's (its own version, start and client TLS), not as the
     * stream's HEADERS. */
    bool lane_tunnel;
    /* proxy-local number of the client connection, recorded with its flows
     * (a lane has its HTTP/2 connection's) */
    uint64_t id;
    /* HTTP/1: flows whose responses are whole but still (partly) queued
     * toward the client, oldest first: ended once its queue is empty, or
     * with an error if the connection goes first (a lane's go to its
     * HTTP/2 stream instead, core/h2front.c). */
    reel_fin_t *fins;
    /* A body read until the close was cut while bytes were still queued
     * for the client (reel__exchange_cut): the flow's end, held until
     * they reached it (or CUT_DELIVER_MS passed, or it went), then the
     * reset; why it was cut (owned), how many bytes were queued then and
     * at the last look, and the loop time the wait ends. */
    reel_fin_t *cut_fin;
    char *cut_why;
    size_t cut_queued, cut_left;
    uint64_t cut_until;
};

/* Whether the exchange's request went out again on its connection (its
 * ServerConn's retried): a retry, not a request held for modify_body
 * whose kept-alive connection closed before any of it went. */
static inline bool reel__ex_sent_again(const conn_t *c) {
    return c->ex.retried && !c->ex.retry_held;
}

/* Open connections from one client address (a hash table shared by the
 * workers). */
struct client_count {
    struct client_count *next;
    uint32_t n;
    char ip[48];
};

/* What the workers of one proxy share (core/proxy.c): the numbers given to
 * client and upstream connections (atomics, so that each names one
 * connection in the session whichever worker took it) and the per-client
 * connection counts (under mu: a client's connections may land on any
 * worker). With one worker it is the proxy's own. */
struct proxy_shared {
    uint64_t client_ids;   /* client connections accepted so far */
    uint64_t upstream_ids; /* upstream connections opened so far */
    pthread_mutex_t mu;
    struct client_count **clients;
    size_t nclient_buckets;
};

/* The proxy's counters are read by the thread that asks for them
 * (reel_proxy_stats) while a worker's loop changes them: relaxed atomics,
 * as cheap as plain increments on the machines reel runs on. */
#define STAT_ADD(p, field, n) __atomic_fetch_add(&(p)->stats.field, (n), __ATOMIC_RELAXED)
#define STAT_SUB(p, field, n) __atomic_fetch_sub(&(p)->stats.field, (n), __ATOMIC_RELAXED)

struct reel_proxy {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;
    int port;
    reel_recorder_t *rec;
    reel_ca_t *ca;
    reel_tls_ctx_t *server_ctx, *client_ctx;
    conn_t *conns;
    reel_proxy_stats_t stats;
    /* configuration */
    pcre2_code **ignore;
    size_t nignore;
    bool verify_upstream;
    reel_host_list_t *insecure_hosts; /* upstream_insecure_hosts (NULL: none) */
    reel_map_rules_t *map_remote; /* map_remote (NULL: none) */
    reel_map_rules_t *map_local;  /* map_local (NULL: none) */
    reel_block_rules_t *block_list;      /* block_list (NULL: none) */
    reel_header_rules_t *modify_headers; /* modify_headers (NULL: none) */
    reel_dns_map_t *dns_overrides;       /* dns_overrides (NULL: none) */
    reel_body_rules_t *modify_body;      /* modify_body (NULL: none) */
    reel_tls_identities_t *client_certs; /* upstream_client_certs (NULL: none) */
    bool starttls;                /* intercept_starttls */
    bool transparent;             /* transparent: redirected connections go where they were made */
    bool http2; /* offer h2 to clients (ALPN) and accept the h2c preface */
    char *h2c_upstreams; /* "host:port,..." spoken prior-knowledge h2c to, NULL: none */
    char *proxyauth_b64; /* expected Basic credentials, NULL when not required */
    /* upstream_proxy: the HTTP proxy new connections to origins go through
     * ("host:port" as given, and split), and the Basic credentials sent to
     * it (NULL: none) */
    char *upstream_proxy, *upstream_proxy_host, *upstream_proxy_b64;
    reel_host_list_t *upstream_no_proxy; /* the hosts reached directly all the same (NULL: none) */
    bool upstream_proxy_socks;     /* upstream_proxy is a SOCKS5 proxy (socks5://) */
    bool upstream_proxy_tls;       /* ... an HTTP proxy reached over TLS (https://) */
    char *upstream_proxy_userpass; /* ... and upstream_proxyauth's "user:pass" for it */
    /* reverse_to: the origin every connection goes to (NULL: a forward
     * proxy), and whether reel speaks TLS to it */
    char *reverse_host;
    int reverse_port;
    bool reverse_https;
    char *reverse_authority; /* ... as its requests' Host says it */
    int upstream_proxy_port;
    uint64_t idle_timeout_ms, head_timeout_ms, upstream_timeout_ms;
    size_t max_head_size;
    uint32_t max_client_conns;     /* per client address; 0: no limit */
    struct proxy_shared *shared;   /* the first worker's (its own: own_shared) */
    struct proxy_shared own_shared;
    struct proxy_group *group;     /* the first worker of several: the others */
    /* What origins chose by ALPN when offered h2 ("host:port sni" -> h2 or
     * not), so that a client is offered h2 only if its origin speaks it;
     * a small ring, newest kept. */
    struct alpn_seen {
        char key[300];
        bool h2;
    } alpn_seen[256];
    unsigned alpn_next;
    struct h2sess *h2up; /* HTTP/2 sessions to origins (core/h2up.c) */
    /* Inside a batch of events (reel__batch_begin/end), writes of HTTP/2
     * connections wait for its end, so that the responses of many streams
     * leave in one write instead of one each. */
    int batch;
    /* ... and outside batches, until the end of the loop iteration (a
     * check handle: after the poll phase's callbacks), so that answers from
     * many origin connections read in one iteration share a write. While
     * something waits there, an idle handle keeps the poll from blocking:
     * output deferred from a timer callback (before the poll) would
     * otherwise wait for the next I/O or timer, up to half a second. */
    uv_check_t flush_check;
    uv_idle_t flush_idle;
    bool check_open;
    struct deferred_flush {
        bool session; /* a struct h2sess, else a conn_t with a front */
        void *ptr;
    } *flushq;
    size_t nflushq, capflushq;
    /* shutdown */
    bool shutting_down;
    uv_timer_t grace;
    /* The proxy's own handles (listener, grace timer) being closed: done
     * is called only once their close callbacks have run, so that the
     * caller may free the proxy then (it used to be freed while libuv
     * still had the grace timer's close to run: a use-after-free). */
    int closing_handles;
    bool grace_closing;
    void (*done)(void *);
    void *done_ctx;
    /* How upstream connections are made: a TCP filter, or what a test
     * plugs in (reel__proxy_set_connector). Returns a bottom filter not yet
     * opened. */
    reel_filter_t *(*connect)(void *ctx, reel_proxy_t *p, const char *host, int port);
    void *connect_ctx;
    uint8_t readbuf[READ_SIZE];
};

/* ---- peer.c ---- */
void reel__peer_init(peer_t *pe, conn_t *c, peer_role role);
void reel__peer_close(peer_t *pe);
/* Closes as reel__peer_close does, with a TCP reset: the peer learns the
 * connection broke (reel_stack_abort). */
void reel__peer_reset(peer_t *pe);
/* Over TLS, the close_notify that goes before a planned close (RFC 8446
 * 6.1: without it the end of a body delimited by the close looks like a
 * cut to the peer; wget gave up "non-properly terminated"). Sent once;
 * true when it is still queued: the close then waits for it, as it waited
 * for the data before (close_when_flushed, ev_written). */
bool reel__peer_notify_first(peer_t *pe);
/* What up's stack says of it (info: reel_stack_info of its stack) as a
 * ServerConn record, for the caller to add reused, retried, unverified. */
reel_capture_conn_t reel__conn_facts(const peer_t *up, const reel_stack_info_t *info);
/* µs from one time stamp to the next, 0 if the clock went back; -1 when
 * either is missing (0): a phase that did not happen or is not known, as
 * Timings and ServerConn count them. */
int64_t reel__span_us(int64_t from, int64_t to);
bool reel__peer_ready(const peer_t *pe);
void reel__peer_write(peer_t *pe, const void *data, size_t len);
void reel__peer_flush_pend(peer_t *pe);
/* Between cork and uncork, writes of up to CORK_MAX bytes in all wait and
 * go out together at uncork (a bigger one sends what waited, then itself,
 * uncopied). Closing the peer sends what waited first. */
void reel__peer_cork(peer_t *pe);
void reel__peer_uncork(peer_t *pe);
size_t reel__peer_queued(const peer_t *pe);
void reel__peer_read_start(peer_t *pe);
void reel__peer_read_stop(peer_t *pe);
peer_t *reel__peer_other(peer_t *pe);
void reel__peer_update_reading(peer_t *pe);
void reel__upstream_close(conn_t *c);
void reel__peer_forget(peer_t *pe);
void reel__upstream_failed(peer_t *up, const char *why);
/* up failed to set up (a timeout): its flow's ServerConn when it reached
 * the origin and its TLS handshake did not end (peer.c's
 * record_refused_conn); nothing otherwise */
void reel__upstream_record_failed(peer_t *up);
bool reel__upstream_for(conn_t *c, bool https, const char *host, int port, const char *sni);
/* Whether reel__upstream_for with these would keep c->up (no side effect):
 * a flow starts before its connection is asked for, so that the set-up
 * falls inside it, and names a kept connection's address at its start.
 * When it would not, reel__upstream_open does the rest of
 * reel__upstream_for without deciding again. */
bool reel__upstream_would_reuse(conn_t *c, bool https, const char *host, int port, const char *sni);
bool reel__upstream_open(conn_t *c, bool https, const char *host, int port, const char *sni);

/* ---- exchange.c ---- */
int64_t reel__now_us(void);
void reel__conn_touch(conn_t *c);
bool reel__host_ignored(reel_proxy_t *p, const char *host, int port);
void reel__finish_flow(conn_t *c, const char *error);
/* c->ex.flow's end as of now (timings, times, server address), the flow
 * taken from c (c->ex.flow NULL after); NULL when c has none. */
reel_fin_t *reel__fin_take(conn_t *c);
/* The bytes of the names and values of n fields, and a copy of them to
 * dst with their strings from at on (that many bytes): one allocation
 * holds both (a CONNECT's head, a stream's trailers). */
size_t reel__fields_bytes(const reel_field_t *f, size_t n);
void reel__fields_copy(reel_field_t *dst, char *at, const reel_field_t *src, size_t n);
/* Writes f's end (why NULL: normally, else the error why) and frees f. */
void reel__fin_end(reel_fin_t *f, const char *why);
/* Records trailers on f's flow before its end (f may be NULL). */
void reel__fin_trailers(reel_fin_t *f, bool response, const reel_field_t *fl, size_t n,
                        bool not_passed_on);
/* c->ex.flow is over on the origin's side: it ends normally now if the
 * client's queue is empty, else once it empties (reel__fins_delivered), or
 * with an error if the client goes first (reel__fins_undelivered); a
 * lane's waits for its stream's DATA (reel__h2front_fin). */
void reel__finish_when_delivered(conn_t *c);
/* c's client has taken every queued byte: its waiting flows end normally. */
void reel__fins_delivered(conn_t *c);
/* c's client will not take the rest: its waiting flows end with why (and
 * how many bytes were still queued). */
void reel__fins_undelivered(conn_t *c, const char *why);
/* c's client connection broke (why: "client connection error: ..."): its
 * waiting flows (reel__fins_undelivered) and the exchange's end with why,
 * saying how many bytes were still queued when part of the response was,
 * and the requests pipelined behind the exchange, which reel read and
 * never sent, are recorded as not answered. */
void reel__client_gone_ends_exchange(conn_t *c, const char *why);
/* c's exchange ends before its response did (why: the origin cut it, a
 * timeout, reel's shutdown): its flow ends with why (saying how many
 * bytes were still queued for the client when a body read until the close
 * was being relayed: the reset that follows drops them), and the requests
 * the client pipelined behind it, read and never sent, are flows ending
 * `not answered: the response to the request before was cut short (why)`
 * (or `the request before got no response (why)` when no response head
 * was passed on). The connection is left as it is. */
void reel__exchange_ends_cut(conn_t *c, const char *why);
/* reel__exchange_ends_cut, then the connection closes (reel__conn_close)
 * with a reset if a body read until the close was being relayed. When
 * bytes of it are still queued for the client (in reel or unacknowledged
 * in its socket), they go first: reading from the client stops, the flow's
 * end waits in c->cut_fin, and c's timer looks at the queue every
 * CUT_POLL_MS (reel__cut_poll) for CUT_DELIVER_MS at most. */
void reel__exchange_cut(conn_t *c, const char *why);
/* c->cut_fin's wait: closes c once the client has every byte, has reset
 * the connection, or the wait is over; else re-arms the timer. */
void reel__cut_poll(conn_t *c);
/* Writes c->cut_fin's end, if c has one, saying whether the queued bytes
 * reached the client before the reset (client_why: the client connection
 * broke first, "client connection error: ..."; else NULL). */
void reel__cut_end(conn_t *c, const char *client_why);
void reel__record_server_conn(conn_t *c);
void reel__finish_tflow(conn_t *c, const char *error);
/* c->tflow's end as of now, as reel__finish_tflow would write it without
 * error (an Upgrade's: its upgrade_fin), taken from c (c->tflow NULL
 * after); NULL when c has none. */
reel_fin_t *reel__tflow_fin_take(conn_t *c);
/* c->tflow (HTTP/1; a lane's waits in its stream, reel__h2front_tunnel_end)
 * is over without error: it ends normally now if the client's queue is
 * empty, else it waits in c->fins as a response does, complete once the
 * queue empties, an error naming the bytes still queued if the client
 * goes first. */
void reel__tflow_when_delivered(conn_t *c);
void reel__fail_exchange(conn_t *c, int status, const char *reason);
void reel__record_refused(conn_t *c, const reel_h1_head_t *h, const char *scheme, const char *host,
                          int port, const char *target);
/* reel__record_refused, with the request as the record gives it. */
void reel__record_refused_msg(conn_t *c, reel_msg_head_t *m);
void reel__record_rejected(conn_t *c);
/* Whether the client's unread bytes are its connection's first (no
 * request, tunnel or HTTP/2 before them, none taken by the parser yet):
 * what a client set for another kind of proxy speaks first. */
bool reel__at_connection_start(const conn_t *c);
/* Opens the tunnel a client asked for (CONNECT, or SOCKS5: c->socks) to
 * host (owned: taken) and port, m its request as the record gives it. */
void reel__open_tunnel(conn_t *c, char *host, int port, reel_msg_head_t *m);
/* A client that left (error: how, NULL for a close) in the middle of a
 * request head: what came of it is a flow, ended with why; false if
 * nothing of a head had come (then nothing is recorded). */
bool reel__head_abandoned(conn_t *c, const char *error);
/* Where the request head being read stopped, when that was inside one of
 * its elements, as words that end in "; " for a flow's error: "it ended
 * in the value of field X, which the record gives as far as it came; ";
 * for_client: only where ("it ended in the value of field X"), for an
 * answer the client reads too; "" when it stopped at a line's end. Owned
 * by the caller. */
char *reel__head_cut_note(conn_t *c, bool for_client);
/* Starts a flow of c's client (its address, connection number and TLS
 * with reel: a lane's HTTP/2 connection's), reel_capture_start's other
 * arguments as given. */
reel_capture_flow_t *reel__flow_start(conn_t *c, reel_capture_kind kind, const char *server_addr,
                                      uint32_t stream_id, int64_t time_us);
/* The HTTP/2 client connection a lane serves (NULL: not a lane, or its
 * connection is gone). */
conn_t *reel__h2front_conn(conn_t *lane_conn);
/* Frees c->connect_head (NULL after); fine when there is none. */
void reel__connect_head_drop(conn_t *c);
void reel__req_process(conn_t *c);
void reel__resp_process(conn_t *c);
const char *reel__status_text(int status);
/* Whether a comma-separated field of h (any of its lines) holds token. */
bool reel__has_token(const reel_h1_head_t *h, const char *field, const char *token);
/* "host:port" or "[v6]:port" -> *host (allocated, no brackets) and *port
 * (def_port when absent); -1 when it is not a valid authority. */
int reel__split_authority(const char *a, size_t n, char **host, int *port, int def_port);

/* The bottom of a new connection to host:port on st: TCP to it, or to the
 * upstream proxy with an HTTP CONNECT filter above (upstream_proxy; with
 * forward, one that asks for no tunnel: the requests go to the proxy in
 * absolute form; TLS to the proxy between the two for an https:// one),
 * or the tests' connector. Returns whether it goes through the upstream
 * proxy; *error (owned; NULL: none) when the TLS to it could not be made,
 * the stack then unusable; *dns_entry (if dns_entry is not NULL; borrowed
 * from p) the dns_overrides entry that gave its address, NULL: none. */
bool reel__upstream_transport(reel_proxy_t *p, reel_stack_t *st, const char *host, int port,
                              bool forward, char **error, const char **dns_entry);
/* "host" or "host:port" as a Host field says it: the port left out when
 * it is the scheme's own, an IPv6 address in brackets (owned). */
char *reel__authority(bool https, const char *host, int port);
/* Whether reel checks the certificate of host's origin: upstream_cert_verify,
 * unless upstream_insecure_hosts names host. */
bool reel__verify_host(const reel_proxy_t *p, const char *host);
/* Whether the requests inside c's tunnel go to their origin over TLS: as
 * the client spoke to reel inside its CONNECT, or as reverse_to says. */
static inline bool reel__tunnel_https(const conn_t *c) {
    return c->reverse ? c->p->reverse_https : c->tunnel_tls;
}
/* A new client connection of reel as a reverse proxy (reverse_to): a
 * tunnel to that origin, sniffed as a CONNECT's is. */
void reel__reverse_begin(conn_t *c);
/* The upstream proxy ("host:port") a new connection to host goes through
 * now: upstream_proxy unless upstream_no_proxy names host; NULL: direct
 * (or the tests' connector). */
const char *reel__proxy_for(const reel_proxy_t *p, const char *host);
/* Who answers on up, for errors (owned): "host:port", or "the upstream
 * proxy VIA (forwarding to host:port)" when its requests go to that proxy
 * in absolute form. */
char *reel__upstream_name(const peer_t *up);
/* "the upstream proxy (upstream_proxy VIA) could not be reached: WHY"
 * (owned). */
char *reel__via_unreachable(const char *via, const char *why);
/* The dns_overrides entry a connection to host:port made now takes (NULL:
 * none, or one through an upstream proxy, which resolves names itself);
 * its address into *addr and the port to connect to into *to_port when
 * they are not NULL. Borrowed from p. */
const char *reel__dns_entry(const reel_proxy_t *p, const char *host, int port, const char **addr,
                            int *to_port);
/* Why a connection through the upstream proxy failed, the proxy named
 * (owned) when it was the proxy that could not be reached: not
 * connected, or its TLS (https://) not made; NULL otherwise (not through
 * one, or reached: why says enough). */
char *reel__via_failed(const reel_stack_info_t *info, bool connected, const char *why);

/* ---- socks_front.c ---- */
/* A connection's first bytes are a SOCKS5 greeting: it is served as
 * SOCKS5 from here on (state C_SOCKS; true), else false. */
bool reel__socks_begin(conn_t *c);
/* Reads the client's SOCKS5 messages, answering each. */
void reel__socks_process(conn_t *c);
/* The client's SOCKS5 negotiation ended before its request was served:
 * why (the client closed, its error, head_timeout, the proxy's shutdown)
 * ends its flow, and the connection. */
void reel__socks_ended(conn_t *c, const char *why);
/* The tunnel's answer to its client: CONNECT's 200, or SOCKS5's success. */
void reel__tunnel_answer(conn_t *c);
/* A tunnel to an ignored host could not be opened before its client was
 * answered: a 502, or SOCKS5's reply for why (the flow is written). */
void reel__tunnel_refuse(conn_t *c, const char *why);

/* ---- tunnel.c ---- */
void reel__tunnel_codecs_free(conn_t *c);
void reel__tunnel_forward(conn_t *c);
/* Starts c->tflow, the tunnel to host:port (none if c has one already).
 * answered: reel has sent the client its 200 to the CONNECT (recorded as
 * the flow's response, generated). The flow is the CONNECT's own (a TCP
 * or TLS tunnel, a CONNECT stream's): its request has the version and
 * fields of c->connect_head, which is dropped then. (The bytes after a 101
 * are the upgrade's flow's: reel__start_upgraded_tunnel.) */
void reel__tunnel_flow(conn_t *c, const char *host, int port, bool answered);
void reel__begin_raw_tunnel(conn_t *c, const char *host, int port, bool reply_200, bool record);
void reel__start_upgraded_tunnel(conn_t *c);
void reel__sniff_process(conn_t *c);
/* The client ended its side while its first bytes (of the tunnel, or inside
 * the TLS reel intercepts) did not say yet what the tunnel carries: a raw
 * or TLS tunnel that relays them and the end. */
void reel__sniff_client_ended(conn_t *c);
/* Why a tunnel ends whose origin's connection failed with error (owned):
 * said so, with the bytes relayed from the client it never acknowledged. */
char *reel__tunnel_origin_failed(conn_t *c, const char *error);
/* Whether the client, still sniffed and not yet in TLS, has sent the start
 * of a TLS ClientHello but not all of it. */
bool reel__sniff_hello_started(conn_t *c);
/* Whether a tunnel still sniffed may have its origin connected to before
 * its client says anything (EAGER_CONNECT_MS), and doing so. */
bool reel__sniff_may_connect_early(const conn_t *c);
void reel__sniff_connect_early(conn_t *c);
/* A TLS client for reel's connection to an origin (host:port, verified
 * for sni, or host when NULL), offering alpn (NULL: http/1.1, "": none),
 * its session resumed per origin and name. */
reel_rc reel__origin_tls(reel_proxy_t *p, const char *host, int port, const char *sni,
                         const char *alpn, reel_tls_t **out, reel_err_t *err);
/* The origin connected to early spoke (or closed) before the client's
 * bytes said what the tunnel carries. */
void reel__sniff_origin_first(conn_t *c);
/* Whether the origin connected to early is up (its TLS too) and has said
 * nothing, and neither has the client: the client then speaks first, and
 * no timer decides for it. */
bool reel__sniff_origin_silent(const conn_t *c);
void reel__probe_done(conn_t *c, const char *alpn);
/* The ALPN probe on c->up failed: keeps why (owned) and status for the
 * client's first request, with the connection's facts (reel__probe_conn) */
void reel__probe_failed(conn_t *c, int status, char *why);
/* Records on c->ex.flow the connection of a failed probe that reached the
 * origin (the flow's ServerConn and address), if there was one. */
void reel__probe_conn(conn_t *c);
/* The client of an intercepted tunnel ended (error: its connection broke,
 * why; NULL: it closed) after its TLS handshake with reel, before its
 * first request (HTTP/2: its first stream): with no request there is no
 * flow to say so, so the tunnel's own does (scheme tls), its error (error,
 * or that it closed) naming the client's TLS version, SNI and ALPN.
 * Returns whether it recorded that (false: not such a tunnel, a request
 * has begun, or its handshake is not done). */
bool reel__tls_client_left(conn_t *c, const char *error);
/* A tunnel reel answered 200 that ended before it was known what it
 * carries: its own flow, with the bytes that came and why (NULL: a
 * close); nothing if a flow says it already (conn.c). */
void reel__tunnel_abandoned(conn_t *c, const char *why);
/* What an origin chose when offered h2: 1 h2, 0 not, -1 not known. */
int reel__alpn_seen(const reel_proxy_t *p, const char *host, int port, const char *sni);
void reel__alpn_note(reel_proxy_t *p, const char *host, int port, const char *sni, bool h2);

/* ---- conn.c ---- */
void reel__upstream_ready(peer_t *up);
void reel__conn_process(conn_t *c);
void reel__conn_client_ended(conn_t *c);
/* The proxy's shutdown closes c: a request head, ClientHello or tunnel it
 * was still reading gets its flow, as when the client leaves. */
void reel__conn_shutdown_ends(conn_t *c);
/* The final response is whole, the request body is not and will not be
 * (the origin closes, or the client ended): the flow ends once the client
 * has the response, and the connection closes after it (core/exchange.c). */
void reel__early_answer_ends(conn_t *c);
/* Ends the exchange if both its request and its response are whole. */
void reel__exchange_maybe_finish(conn_t *c);
/* Starts the flow of a request no origin gets (map_local): the request
 * as the client sent it, no upstream. */
void reel__exchange_start_local(conn_t *c, const reel_h1_head_t *h, bool https, const char *host,
                                int port, const char *path);

/* A plain TCP tunnel whose client and server agreed on STARTTLS: reel's
 * TLS to the origin goes on its connection now (core/tunnel.c). False,
 * the upstream failed with the reason, when it cannot. */
bool reel__upstream_starttls(conn_t *c);
/* Bytes of the client's reel holds for a STARTTLS (its ClientHello, whole
 * or not, not relayed: its TLS not begun with reel yet); 0: none. */
size_t reel__starttls_held(const conn_t *c);

/* A connection the OS redirected to reel (transparent), made by its
 * client to host (an IP address) and port: sniffed as a CONNECT tunnel
 * there would be (core/tunnel.c). */
void reel__transparent_begin(conn_t *c, const char *host, int port);

/* What map rules' filters see of the request h, to url (owned by the
 * caller) at host: method, content type, fields, the client. */
void reel__rule_request(const conn_t *c, const reel_h1_head_t *h, const char *url, const char *host,
                        reel_filter_request_t *rq);

/* Drops a held request and response (modify_body) and their rules'
 * references. */
void reel__hold_clear(conn_t *c);

/* modify_headers' changes to the response head rs (as recorded) of the
 * request c->ex.rule_req kept: owned (NULL, *n 0: none, or no rules, or
 * nothing kept). */
reel_header_edit_t *reel__response_edits(const conn_t *c, const reel_msg_head_t *rs, size_t *n);

/* Makes edits[0..nedits) in the n fields fs (room for n + nedits): those
 * the edits name dropped, then each edit's value added at the end.
 * Returns how many fields there are now. */
size_t reel__fields_edit(reel_field_t *fs, size_t n, const reel_header_edit_t *edits,
                         size_t nedits);

/* map_local (core/maplocal.c). */
typedef struct reel_local reel_local_t;
/* If a map_local rule matches the request h (to https, port and path;
 * rq: what the rules see of it, reel__rule_request's, its host the one
 * recorded): answers it from its file (its flow started, the conn
 * reading the request's body) and true; false when none does. */
bool reel__local_answer(conn_t *c, const reel_h1_head_t *h, bool https, int port, const char *path,
                        const reel_filter_request_t *rq);
/* The same for block_list: a rule whose filter matches the request
 * answers it with its status (444: the connection closed, no answer). */
bool reel__block_answer(conn_t *c, const reel_h1_head_t *h, bool https, int port, const char *path,
                        const reel_filter_request_t *rq);
/* Sends more of the file while the client's queue is short. */
void reel__local_pump(conn_t *c);
void reel__local_free(conn_t *c);
void reel__peer_read_done(peer_t *pe);
void reel__client_tls_failed(conn_t *c, const char *why);
/* The client's connection broke (error: why): the flows in flight end
 * with "client connection error: ...", their queued bytes undelivered. */
void reel__client_error_ends_flows(conn_t *c, const char *error);
/* The same after its TLS handshake (or on plain TCP) once its stream had
 * ended cleanly, and the connection closes. */
void reel__client_lost(conn_t *c, const char *error);
conn_t *reel__conn_open(reel_proxy_t *p, reel_filter_t *bottom, const char *client_ip);
/* reel__conn_open with counted: whether it counts against its client
 * address's connection limit (HTTP/2 lanes do not). */
conn_t *reel__conn_new(reel_proxy_t *p, reel_filter_t *bottom, const char *client_ip, bool counted);
void reel__conn_unref(conn_t *c);
void reel__conn_close_flushed(conn_t *c);
/* A lingering WebSocket's next step (ws_linger): a peer whose queue is
 * out is half-closed; one half-closed whose end came is closed, the
 * connection once both are. */
void reel__ws_linger_step(conn_t *c);
void reel__conn_close(conn_t *c);
void reel__conn_arm_at(conn_t *c, bool force);
void reel__conn_arm(conn_t *c);
void reel__on_connection(uv_stream_t *server, int status);

/* ---- h2front.c ---- */
/* At C_HEAD: switches c to HTTP/2 when its client negotiated h2 or sent
 * the preface; true when it did (or may: the preface is not whole yet). */
bool reel__h2front_start(conn_t *c);
void reel__h2front_process(conn_t *c);
bool reel__h2front_busy(const conn_t *c);
void reel__h2front_written(conn_t *c);
void reel__h2front_eof(conn_t *c);
/* C_LINGER after reel's GOAWAY with an error: the client's bytes in
 * c->client.in go to the codec, which reports the streams they open (then
 * recorded as refused), and are dropped. */
void reel__h2front_linger(conn_t *c);
void reel__h2front_drain(conn_t *c);
void reel__h2front_free(conn_t *c);
/* Writes what a batch held back (reel__batch_end). */
void reel__h2front_flush_deferred(conn_t *c);
/* The flow of a lane's stream whose response is whole: ended once the
 * stream's DATA has gone out to the client, or with an error if the
 * client resets the stream or goes first. Takes f and returns true, or
 * false when the stream is a tunnel (CONNECT, the exchange one of those
 * inside it): the caller keeps f, and HTTP/1's rules apply to the lane. */
bool reel__h2front_fin(conn_t *lane_conn, reel_fin_t *f);
/* A lane's WebSocket (RFC 8441 stream) is over, normally, while its
 * stream still holds frames for the client: the stream takes the flow
 * (lane_conn->ex.flow) and ends it as reel__h2front_fin does, once its
 * last DATA has gone out, or with an error saying how many bytes were not
 * sent; the lane is let go. false (the flow left to the caller, to end
 * now) when nothing is left to send. */
bool reel__h2front_ws_end(conn_t *lane_conn);
/* The same for a lane's tunnel (a plain CONNECT stream, RFC 9113 8.5)
 * over without error: the stream takes lane_conn->tflow and ends it once
 * its last DATA has gone out, or with the bytes not sent. false (the
 * flow left to the caller) when nothing is left to send. */
bool reel__h2front_tunnel_end(conn_t *lane_conn);
/* A lane's response read until the close, whole (the origin's clean
 * end), while its client is still sending the request body: the stream
 * gets the rest of the body and its END_STREAM, then RST_STREAM NO_ERROR,
 * and takes the flow, complete (as an early answer with a length is). */
void reel__h2front_closed_answer(conn_t *lane_conn);
/* A lane's response cut short (reel__exchange_cut; why: how): the stream
 * takes the flow (lane_conn->ex.flow) and the bytes the lane and the
 * stream hold for the client go out first, as an HTTP/1 client's do;
 * then RST_STREAM INTERNAL_ERROR, and the flow ends saying whether they
 * were sent. A client whose window stays shut gets the reset after
 * CUT_DELIVER_MS (or a shorter idle_timeout), the flow saying how many
 * bytes it never got. Returns true when the stream waits so (the caller
 * closes the lane's conn); false, the flow left to the caller, when
 * there is nothing to send or no stream to wait in. */
bool reel__h2front_cut(conn_t *lane_conn, const char *why);
/* When the earliest of c's cut streams (reel__h2front_cut) is due to be
 * reset; UINT64_MAX when none is. */
uint64_t reel__h2front_cut_due(const conn_t *c);
/* Resets c's cut streams whose wait is over, ending their flows. */
void reel__h2front_cut_expire(conn_t *c);

/* ---- h2up.c ---- */
/* A bottom filter for an upstream peer whose requests go as streams of
 * the proxy's HTTP/2 session to the origin (a new one if none is usable):
 * *conn_id gets the session's number, *flows_before the streams it has
 * carried so far. */
reel_filter_t *reel__h2up_filter(reel_proxy_t *p, bool https, const char *host, int port,
                                 const char *sni, uint64_t *conn_id, int *flows_before);
/* An HTTP/2 origin's response with a content-length goes to the conn
 * chunked all the same, its trailers on the last chunk (HTTP/2 allows
 * them after any body, HTTP/1.1 only after a chunked one), its
 * content-length under this name: the record (core/exchange.c), an
 * HTTP/1.1 client (exchange.c, de-chunked) and a lane's stream
 * (core/h2front.c) give it its own back. In capitals, so
 * that no HTTP/2 peer's field (lower case, RFC 9113 8.2.1) is taken for
 * it. */
#define REEL_LANE_LENGTH "X-Reel-Content-Length"
bool reel__is_lane_length(const reel_field_t *f);
/* The probe connection to an origin that chose h2 (core/tunnel.c) becomes
 * its session: st (open, TLS done) and the bytes read so far move over;
 * the caller forgets both. */
void reel__h2up_adopt(reel_proxy_t *p, reel_stack_t *st, reel_buf_t *in, const char *host,
                      int port, const char *sni);
/* Shutdown: sessions take no new streams and close with their last. */
void reel__h2up_shutdown(reel_proxy_t *p);
/* The origin's session is up and allows WebSockets as streams (RFC 8441). */
bool reel__h2up_ws_ok(reel_proxy_t *p, bool https, const char *host, int port, const char *sni);
/* How many fields at the end of up's last response head reel added (the
 * 101 an extended CONNECT's 200 became: core/h2up.c); 0 for any other. */
unsigned reel__h2up_synthesized(const peer_t *up);
/* up is an up-lane whose stream the origin said it did not process (a
 * GOAWAY's last stream below it, REFUSED_STREAM; RFC 9113 8.7) */
bool reel__h2up_unprocessed(const peer_t *up);
/* Whether up's request may be sent again if it ended unanswered: false for
 * an HTTP/2 stream the origin had (reset other than REFUSED_STREAM, a
 * malformed answer reel reset: RFC 9113 8.7); true for any other. */
bool reel__h2up_may_retry(const peer_t *up);
void reel__h2up_flush_deferred(struct h2sess *s);

/* ---- proxy.c ---- */
/* An HTTP/2 connection holds `bytes`: kept in the stats if the most yet. */
void reel__h2_memory_seen(reel_proxy_t *p, size_t bytes);
void reel__shutdown_finish(reel_proxy_t *p);
/* One of the proxy's closing handles (counted in closing_handles) closed. */
void reel__proxy_handle_closed(reel_proxy_t *p);
/* A batch of events: HTTP/2 output queued meanwhile (reel__batch_defer)
 * is written when the outermost batch ends. */
void reel__batch_begin(reel_proxy_t *p);
void reel__batch_end(reel_proxy_t *p);
/* True (and ptr queued once the caller set its own flag) inside a batch. */
bool reel__batch_defer(reel_proxy_t *p, bool session, void *ptr);
/* Tests: upstream connections come from fn instead of sockets. */
void reel__proxy_set_connector(reel_proxy_t *p,
                               reel_filter_t *(*fn)(void *ctx, reel_proxy_t *p, const char *host,
                                                    int port),
                               void *ctx);

#endif
