/* The proxy: listener, client and upstream connections on one libuv loop
 * (per worker: with `workers` > 1 each further loop runs a proxy of its own
 * on its own thread, started and driven through the first; see
 * reel_proxy_start).
 *
 * It glues the sans-I/O layers (http1, tls, sniff) to sockets and reports
 * every flow event to the recorder. Configuration that may change while it
 * runs (body_limit, capture, ignore_hosts, upstream_cert_verify) is applied
 * with reel_proxy_configure. */
#ifndef REEL_CORE_PROXY_H
#define REEL_CORE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"

typedef struct reel_proxy reel_proxy_t;
typedef struct reel_ca reel_ca_t;
typedef struct reel_recorder reel_recorder_t;

/** What the proxy is told, in its own terms (the caller translates its
 * configuration: reel's CLI does in daemon/proxy_settings.c). Strings are
 * borrowed for the call. */
typedef struct {
    const char *listen_host;         /* start only; NULL: no listener (tests
                                      * hand connections in, core/conn.h) */
    int listen_port;                 /* start only; 0: any free port */
    const char *upstream_trusted_ca; /* start only; PEM file, NULL or "": none */
    const char *const *ignore_hosts; /* regexes of "host:port" relayed unrecorded */
    size_t n_ignore_hosts;
    const char *const *map_remote; /* session/maprule.h's rules */
    size_t n_map_remote;
    const char *const *map_local; /* ... map_local's */
    size_t n_map_local;
    const char *const *block_list; /* ... block_list's */
    size_t n_block_list;
    const char *const *modify_headers; /* ... modify_headers' */
    size_t n_modify_headers;
    const char *const *modify_body; /* session/maprule.h's modify_body rules */
    size_t n_modify_body;
    const char *const *dns_overrides; /* base/dnsmap.h's entries, NAME=ADDRESS */
    size_t n_dns_overrides;
    bool upstream_cert_verify;
    bool intercept_starttls; /* TLS a plain TCP tunnel's STARTTLS begins: intercepted */
    bool http2; /* speak HTTP/2 to clients that offer it (ALPN h2, h2c preface)
                 * and to their origins that choose it */
    const char *h2c_upstreams; /* "host:port,...": plain origins spoken h2c to */
    uint32_t idle_timeout_s, head_timeout_s, upstream_timeout_s;
    size_t max_head_size;
    uint32_t max_client_conns; /* per client address; 0: no limit */
    const char *proxyauth;     /* "user:pass" clients must send; NULL or "": none */
    /* "host:port" of an HTTP proxy reel's own connections to origins go
     * through (CONNECT), and the "user:pass" it asks for; NULL or "": none */
    const char *upstream_proxy, *upstream_proxyauth;
    /* the hosts reached directly all the same (base/noproxy.h); NULL or
     * "": none */
    const char *upstream_no_proxy;
    /* origins whose certificates are not verified all the same
     * (base/noproxy.h's list); NULL or "": none */
    const char *upstream_insecure_hosts;
    /* client certificates for origins that ask (a PEM file, or a
     * directory of NAME.pem files; core/tls.h); NULL or "": none */
    const char *upstream_client_certs;
    /* start only: the origin reel is a reverse proxy for
     * ("http[s]://host[:port]"); NULL or "": a forward proxy */
    const char *reverse_to;
    /* start only: connections the OS redirected to reel go to their
     * original destination (SO_ORIGINAL_DST) */
    bool transparent;
    uint64_t first_client_id;  /* start only: client connections are numbered after
                                * it (the session's earlier runs took those) */
    unsigned workers;          /* start only: event loops accepting on the listen
                                * address (0 or 1: the caller's loop alone); the
                                * others run on threads of their own */
} reel_proxy_settings_t;

/** Starts listening on the config's listen_host:listen_port on loop and
 * records into rec (borrowed; must outlive the proxy). ca (borrowed, may be
 * NULL: CONNECT is then tunnelled without interception). Returns owned.
 * REEL_IO with the address in err when the port cannot be bound. Raises the
 * process's soft RLIMIT_NOFILE to its hard limit first (every connection
 * takes one or two descriptors).
 *
 * With cfg->workers > 1 (and a listener), workers - 1 more event loops run
 * on threads of their own, each a proxy with its own connections, upstream
 * pools and TLS contexts, all accepting on the same address (SO_REUSEPORT:
 * the kernel spreads connections over them) and recording into rec. The
 * returned proxy is the first worker, on loop; the functions below act on
 * all of them through it (configure, stats, shutdown, free), from loop's
 * thread. Client and upstream connection numbers are unique across them. */
reel_rc reel_proxy_start(uv_loop_t *loop, const reel_proxy_settings_t *cfg, reel_recorder_t *rec,
                         reel_ca_t *ca, reel_proxy_t **out, reel_err_t *err);

/** Applies the hot-reloadable options of cfg to connections and flows
 * started from now on. Returns REEL_INVALID (nothing applied) if cfg holds a
 * value the proxy cannot use (e.g. an ignore_hosts regex). */
reel_rc reel_proxy_configure(reel_proxy_t *p, const reel_proxy_settings_t *cfg, reel_err_t *err);

/** upstream_proxy's value ("host:port" or "http://host:port/" for an HTTP
 * proxy, "https://host:port" for one reached over TLS, "socks5://host:port"
 * or "socks5h://host:port" for a SOCKS5 one; NULL or "": none, and all
 * outputs NULL/0) as reel uses it: *display "host:port", or the HTTPS or
 * SOCKS5 URL (for records and errors), *host (no brackets) and *port to
 * connect to, *auth_b64 the base64 of upstream_proxyauth's "user:pass"
 * (NULL when auth is NULL or empty), *socks whether it is a SOCKS5 proxy,
 * *tls whether reel speaks TLS to the proxy itself. Strings owned.
 * REEL_INVALID, nothing set, when the value is no host:port. */
reel_rc reel_upstream_proxy_parse(const char *value, const char *auth, char **display, char **host,
                                  int *port, char **auth_b64, bool *socks, bool *tls,
                                  reel_err_t *err);

/** The port actually bound (useful with listen_port 0). */
int reel_proxy_port(const reel_proxy_t *p);

/** Stops accepting; in-flight flows get grace_ms to finish, then every
 * connection is closed (flows still open are recorded as errors). done is
 * called (on loop) once everything is closed, every worker's too; the
 * caller then frees the proxy. */
void reel_proxy_shutdown(reel_proxy_t *p, uint64_t grace_ms, void (*done)(void *ctx), void *ctx);

/** Frees a proxy after shutdown completed (accepts NULL); joins the
 * workers' threads. */
void reel_proxy_free(reel_proxy_t *p);

/** Counters for logs and stats, summed over the workers. */
typedef struct {
    uint64_t connections, active_connections, flows, errors;
    uint64_t ignored; /* connections to ignore_hosts: relayed, not recorded */
    /* HTTP/2 connections (from clients and to origins) opened, and the most
     * bytes one of them held at once (frames and bodies waiting on either
     * side: flow control keeps it bounded) */
    uint64_t h2_connections, h2_peak_bytes;
    /* origin connections closed for sending bytes while no response was
     * due (core/exchange.c): not passed on, not recorded in any flow */
    uint64_t unsolicited;
} reel_proxy_stats_t;
void reel_proxy_stats(const reel_proxy_t *p, reel_proxy_stats_t *out);

#endif
