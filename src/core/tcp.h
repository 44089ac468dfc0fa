/* The TCP filter: the bottom of a stack on a real socket, and the only
 * part of the proxy that reads, writes, resolves or connects (listening
 * aside, which is proxy.c's). See core/filter.h for the filter contract.
 *
 * Writes try the socket first and queue only what it does not take (no
 * copy in the common case). Reads land in a buffer shared by the loop's
 * filters (borrowed by every recv above for the call). A connecting filter
 * resolves the name and tries each address in turn; the error it reports
 * names the host, port, address and reason of the last failure. Timings
 * (dns start/end, connected) are in reel_stack_info. */
#ifndef REEL_CORE_TCP_H
#define REEL_CORE_TCP_H

#include <uv.h>

#include "core/filter.h"

/** A filter on the connection waiting on `server` (accepted here). NULL
 * if the accept failed. readbuf (borrowed, shared) receives reads. The
 * client's address goes to peer_ip / peer_addr ("ip:port"). */
reel_filter_t *reel_tcp_accept(uv_stream_t *server, uint8_t *readbuf, size_t readbuf_len,
                               char *peer_ip, size_t ip_len);

/** The address an accepted connection (f, from reel_tcp_accept) was made
 * to before NAT redirected it to reel (SO_ORIGINAL_DST: iptables or
 * nftables REDIRECT or DNAT): true with its IP (no brackets) and port;
 * false when there was none, or it is the socket's own address (made to
 * reel itself), or f is not a TCP filter. */
bool reel_tcp_original_dst(const reel_filter_t *f, char *ip, size_t ip_len, int *port);

/** A filter connecting to host:port: it resolves and connects once pushed
 * and opened (reel_stack_connect); `connected` then `ready`, or `error`,
 * follow. */
reel_filter_t *reel_tcp_connect(uv_loop_t *loop, const char *host, int port, uint8_t *readbuf,
                                size_t readbuf_len);

/** Says (in reel_stack_info's dns_override, and in its errors) that f, a
 * filter of reel_tcp_connect, connects to the address a dns_overrides
 * entry (base/dnsmap.h) gave name:port, instead of a lookup of name (and
 * maybe at another port). Both copied. */
void reel_tcp_set_dns_override(reel_filter_t *f, const char *entry, const char *name, int port);

#endif
