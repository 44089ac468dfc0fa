/* Client replay, the sending side: one recorded request (session/replay.h)
 * sent again to its server and recorded as a new flow naming the one it
 * replays (docs/replay.md). Used by `reel replay` (its worker threads) and
 * by the web UI's Replay in the session its own process records (libuv's
 * thread pool).
 *
 * The client is small and blocking: one connection per request (a socket
 * made non-blocking so that poll() keeps the timeouts), TLS through
 * core/tls.c (the proxy's own client role: system store plus
 * upstream_trusted_ca, host name checked unless verify is off), the
 * response parsed by core/http1.c. The request goes out over HTTP/1.1
 * without its hop-by-hop headers and with Content-Length set to the body
 * sent. Bodies are recorded as they arrive, de-chunked but still
 * content-encoded, as the proxy records them. A connection refused, a TLS
 * failure, a timeout or a stop (deadline, cancel) is recorded as the new
 * flow's error.
 *
 * Thread safety: any number of sends may run at once on different threads
 * with the same recorder and TLS context; each call uses its own flow. */
#ifndef REEL_CORE_REPLAY_SEND_H
#define REEL_CORE_REPLAY_SEND_H

#include <stdatomic.h>
#include <stdint.h>

#include "base/dnsmap.h"
#include "base/error.h"
#include "core/tls.h"
#include "session/recorder.h"
#include "session/replay.h"

typedef struct {
    reel_recorder_t *rec;       /* records the new flow (borrowed) */
    reel_tls_ctx_t *tls;        /* client context for https (borrowed) */
    int verify;                 /* check the server's certificate and name */
    int timeout_ms;             /* each wait: connect, TLS handshake, send, each read */
    int total_ms;               /* the whole send at most this long (the error says
                                   "replay timed out", timed_out is set); 0: no limit */
    const atomic_int *cancel;   /* non-zero: stop at the next wait, within 200 ms
                                   (cancelled is set); NULL: never */
    const char *replay_session; /* the replayed flow's session when it is not the
                                   one recorded into; NULL: the same */
    /* upstream_proxy, upstream_proxyauth and upstream_no_proxy as
     * configured (NULL or "": none): the request goes through that HTTP
     * proxy as the proxy's own do (HTTPS in a CONNECT tunnel, plain HTTP
     * to it in absolute form), unless upstream_no_proxy names its host */
    const char *upstream_proxy, *upstream_proxyauth, *upstream_no_proxy;
    /* upstream_insecure_hosts: the hosts whose certificates are not
     * checked although verify is set (NULL or "": none) */
    const char *upstream_insecure_hosts;
    /* upstream_client_certs: client certificates for origins that ask
     * (core/tls.h's reel_tls_identities_load; NULL or "": none) */
    const char *upstream_client_certs;
    /* dns_overrides (base/dnsmap.h; NULL: none): a name reached directly
     * at the address an entry gives it */
    const reel_dns_map_t *dns_overrides;
} reel_replay_send_opts_t;

/** What became of one send. */
typedef struct {
    uint64_t id;     /* the new flow (0 when the recorder's capture was off) */
    uint32_t status; /* the final response's status; 0: none came */
    char *reason;    /* its reason phrase (owned), NULL when none came */
    char *error;     /* owned: why the replay failed (the new flow's error);
                        NULL when the whole response came back */
    int timed_out;   /* stopped by total_ms */
    int cancelled;   /* stopped by *cancel */
} reel_replay_result_t;

/** Sends r (replayable: r->why_not NULL; borrowed) to its server and
 * records the new flow (start, request head and body, server connection,
 * response head and body, timings, end or error) with rec. Fills *out
 * (zeroed first; release with reel_replay_result_free). Returns REEL_OK
 * when the whole response came back, else the error code of out->error.
 * Blocks: getaddrinfo has no timeout of its own, everything after it is
 * bounded by timeout_ms per wait and by total_ms. */
reel_rc reel_replay_send(const reel_replay_req_t *r, const reel_replay_send_opts_t *o,
                         reel_replay_result_t *out);

/** Frees what res holds (not res); accepts NULL. */
void reel_replay_result_free(reel_replay_result_t *res);

#endif
