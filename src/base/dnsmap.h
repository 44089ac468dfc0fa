/* dns_overrides: host names reel connects to at an address of the
 * user's instead of the one DNS gives (Burp's hostname resolution
 * overrides, Charles's DNS spoofing, curl's --resolve). Pure string work.
 *
 * An entry is NAME=ADDRESS: NAME a host name ("api.example.com"), or
 * "*.example.com" for every name under example.com (not example.com
 * itself); ADDRESS an IPv4 or IPv6 address ("10.0.0.5", "::1", "[::1]").
 * Names compare without regard to case or a trailing dot; the first entry
 * that matches applies. Only the address changes: the request's Host, the
 * TLS server name and the certificate check keep the name. */
#ifndef REEL_BASE_DNSMAP_H
#define REEL_BASE_DNSMAP_H

#include <stddef.h>

#include "base/error.h"

typedef struct reel_dns_map reel_dns_map_t;

/** REEL_OK when entry is NAME=ADDRESS as above; REEL_INVALID saying why. */
reel_rc reel_dns_override_check(const char *entry, reel_err_t *err);

/** Parses n entries (*out NULL when n is 0); REEL_INVALID naming the first
 * bad one. */
reel_rc reel_dns_map_new(const char *const *entries, size_t n, reel_dns_map_t **out,
                         reel_err_t *err);

/** The address the first entry matching host gives (without brackets),
 * with *entry the entry as given; NULL when none matches (m NULL: none).
 * Both borrowed from m. */
const char *reel_dns_map_find(const reel_dns_map_t *m, const char *host, const char **entry);

void reel_dns_map_free(reel_dns_map_t *m);

#endif
