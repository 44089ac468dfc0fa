/* host:port in messages, with an IPv6 literal in brackets ("[::1]:9", not
 * the ambiguous "::1:9"), as in URLs and Host headers:
 *
 *     reel_asprintf("cannot connect to " REEL_HOSTPORT_FMT, REEL_HOSTPORT(host, port))
 */
#ifndef REEL_CORE_HOSTPORT_H
#define REEL_CORE_HOSTPORT_H

#include <string.h>

#define REEL_HOSTPORT_FMT "%s%s%s:%d"
#define REEL_HOSTPORT(host, port)                                                                 \
    (host) && strchr((host), ':') ? "[" : "", (host), (host) && strchr((host), ':') ? "]" : "",   \
        (int)(port)

#endif
