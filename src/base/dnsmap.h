/* dns_overrides: host names reel connects to at an address of the
 * user's instead of the one DNS gives (Burp's hostname resolution
 * overrides, Charles's DNS spoofing, curl's --resolve). Pure string work.
 *
 * An entry is NAME[:PORT]=ADDRESS[:PORT]: NAME a host name
 * ("api.example.com"), or "*.example.com" for every name under
 * example.com (not example.com itself), with a port for connections to
 * that port only (curl's --resolve HOST:PORT:ADDR); ADDRESS an IPv4 or
 * IPv6 address ("10.0.0.5", "::1", "[::1]"), with a port to connect to
 * that one instead ("10.0.0.5:8443", "[::1]:8443"; curl's --connect-to).
 * Names compare without regard to case or a trailing dot; the first entry
 * that matches applies. Only where reel connects changes: the request's
 * Host, the TLS server name and the certificate check keep the name (and
 * the URL's port). */
#ifndef REEL_BASE_DNSMAP_H
#define REEL_BASE_DNSMAP_H

#include <stddef.h>

#include "base/error.h"

typedef struct reel_dns_map reel_dns_map_t;

/** REEL_OK when entry is NAME[:PORT]=ADDRESS[:PORT] as above;
 * REEL_INVALID saying why. */
reel_rc reel_dns_override_check(const char *entry, reel_err_t *err);

/** Parses n entries (*out NULL when n is 0); REEL_INVALID naming the first
 * bad one. */
reel_rc reel_dns_map_new(const char *const *entries, size_t n, reel_dns_map_t **out,
                         reel_err_t *err);

/** The address the first entry matching host and port gives (without
 * brackets), with *entry the entry as given and *to_port the port to
 * connect to (port itself unless the entry names another); NULL when none
 * matches (m NULL: none). Strings borrowed from m. */
const char *reel_dns_map_find(const reel_dns_map_t *m, const char *host, int port,
                              const char **entry, int *to_port);

void reel_dns_map_free(reel_dns_map_t *m);

#endif
