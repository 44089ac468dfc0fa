/* The HTTP CONNECT filter: reel's connection to an origin through an
 * upstream HTTP proxy (`upstream_proxy`), DESIGN.md's "http-connect"
 * filter. Pushed right above the bottom, which connects to the proxy:
 * once that connection is open it sends `CONNECT host:port` (with
 * Proxy-Authorization when the proxy's URL names a user), reads the
 * proxy's answer head, and opens for the layers above (reel's TLS to the
 * origin, or HTTP) on a 2xx. Any other answer, an answer that is not
 * HTTP, or the proxy's close before it, fails the stack with what the
 * proxy said. After that it passes bytes through both ways. No socket:
 * bytes from below and above only.
 *
 * Forwarding (plain HTTP requests a client sent reel in absolute form):
 * no CONNECT; the filter opens with the connection to the proxy and
 * passes bytes through, and its part is to say in the stack's info that
 * the connection is the proxy's (the request head above it names the
 * origin, core/exchange.c). That is what squid and tinyproxy allow by
 * default: CONNECT only to port 443. */
#ifndef REEL_CORE_CONNECT_FILTER_H
#define REEL_CORE_CONNECT_FILTER_H

#include "base/mem.h"
#include "base/error.h"
#include "core/filter.h"

/** Longest answer head from the proxy read; longer fails the stack. */
#define REEL_CONNECT_HEAD_MAX (16 * 1024)

/** A filter asking the proxy named proxy ("host:port", for the record and
 * errors) for a tunnel to host:port; auth_b64 (may be NULL): base64 of
 * "user:pass" for Basic proxy authentication. Strings are copied.
 * forward: no tunnel; the requests above go to the proxy (see above). */
reel_filter_t *reel_connect_filter_new(const char *proxy, const char *host, int port,
                                       const char *auth_b64, bool forward);

/** The same through a SOCKS5 proxy (RFC 1928; proxy its URL, for the
 * record and errors): its CONNECT for host:port, a name sent as a name
 * for the proxy to resolve, with RFC 1929's username and password from
 * userpass ("user:pass"; NULL: none offered) when the proxy asks. Its
 * refusals read as the HTTP proxy's do: "the upstream proxy
 * socks5://h:1080 answered 05 (connection refused) to CONNECT
 * host:port". */
reel_filter_t *reel_socks_filter_new(const char *proxy, const char *host, int port,
                                     const char *userpass);

/** Appends the CONNECT request for host:port to out (with Basic
 * Proxy-Authorization when auth_b64 is set and not empty). */
void reel_connect_request(reel_buf_t *out, const char *host, int port, const char *auth_b64);

/** Reads the proxy's answer to a CONNECT, head being what came so far:
 * REEL_NEED_MORE until its head is whole; REEL_OK for a 2xx, *end the
 * head's length (what follows is the origin's); REEL_INVALID otherwise,
 * with *what (owned) saying what the proxy did, to be put in
 * reel_connect_refused ("answered \"HTTP/1.1 403 Forbidden\" to", "sent
 * an answer head over 16 KiB to", ...). */
reel_rc reel_connect_answer(const reel_buf_t *head, size_t *end, char **what);

/** "the upstream proxy PROXY WHAT CONNECT HOST:PORT" (owned). */
char *reel_connect_refused(const char *proxy, const char *what, const char *host, int port);

#endif
