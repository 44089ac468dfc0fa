/* The web UI server (`reel web`, `reel record --web`): HTTP/1.1 on a libuv
 * loop through the proxy's own request parser (core/http1.h), serving the
 * embedded front end (web/ in the source tree) and a JSON API over the
 * sessions under a home directory (docs/web.md).
 *
 * Security model: every request must carry the access token (a cookie set
 * when the printed URL is first opened, or `Authorization: Bearer`), a
 * Host header naming this server (DNS rebinding), and no Origin other than
 * the UI's own (cross-site requests); no CORS headers are ever sent. A
 * read-only server refuses every write with 403. Listening beyond
 * loopback needs explicit_listen and warns on stderr.
 *
 * Ownership: reel_web_start returns an owned server whose handles (and
 * replays into the live session: uv_queue_work requests) live on the
 * caller's loop. reel_web_stop closes them (callable from a signal
 * handler's callback, idempotent); run the loop until they have closed,
 * then reel_web_free. Requests that may walk a whole session (exports,
 * filtered counts and pages) are answered on threads of the server's own,
 * started as needed and joined by reel_web_free. */
#ifndef REEL_WEB_WEB_H
#define REEL_WEB_WEB_H

#include <stddef.h>
#include <uv.h>

#include "base/error.h"
#include "session/recorder.h"

/** Default port of `reel web`. */
#define REEL_WEB_DEFAULT_PORT 8081

/** The upstream settings replays into the live session go by (the
 * recording's). Strings copied when given; NULL or "": none. */
typedef struct {
    int verify;    /* upstream_cert_verify */
    int timeout_s; /* upstream_timeout (each wait); 0: 60 */
    /* upstream_proxy, upstream_proxyauth, upstream_no_proxy,
     * upstream_insecure_hosts, upstream_client_certs */
    const char *proxy, *proxyauth, *no_proxy, *insecure_hosts, *client_certs;
} reel_web_upstream_t;

typedef struct {
    const char *home;      /* sessions root (borrowed) */
    const char *host;      /* listen host; NULL: 127.0.0.1 */
    int port;              /* 0: an ephemeral port */
    int explicit_listen;   /* beyond loopback was asked for (--listen) */
    int read_only;         /* refuse every write */
    char *const *sessions; /* only these sessions; NULL/0: every one under home */
    size_t nsessions;
    const char *live;  /* the session this process records into, or NULL */
    const char *token; /* fixed token (tests); NULL: a random 128-bit one */
    /* Replays into `live` (POST .../flows/ID/replay) run in this process,
     * on libuv's thread pool, recorded by live_recorder (borrowed: it must
     * outlive the loop's last run). NULL: they are refused with 409 (the
     * session's recorder is not a child's to open). */
    reel_recorder_t *live_recorder;
    const char *live_trusted_ca; /* upstream_trusted_ca for them (PEM file, copied);
                                    NULL or "": none */
    reel_web_upstream_t live_upstream; /* the other upstream settings for them */
} reel_web_opts_t;

typedef struct reel_web reel_web_t;

/** Binds and listens. REEL_INVALID (beyond loopback without
 * explicit_listen, bad host), REEL_IO (bind failed: message says why). */
reel_rc reel_web_start(uv_loop_t *loop, const reel_web_opts_t *o, reel_web_t **out,
                       reel_err_t *err);

/** "http://HOST:PORT/?token=..." (borrowed, valid until free). */
const char *reel_web_url(const reel_web_t *w);

/** Changes the upstream settings (copied) of replays into the live
 * session started from now on (the daemon's hot configuration). */
void reel_web_live_upstream(reel_web_t *w, const reel_web_upstream_t *u);

/** Closes the listener and every connection, and tells running replays
 * to stop (within 200 ms, but a name lookup in progress finishes first);
 * safe to call twice and on NULL. */
void reel_web_stop(reel_web_t *w);

/** Frees w once its handles have closed and its replays have ended (after
 * reel_web_stop and a loop run: uv_run waits for both); waits for its walk
 * threads to finish the request each answers (an export stops at its next
 * flow, a filtered count runs to its end); accepts NULL. */
void reel_web_free(reel_web_t *w);

#endif
