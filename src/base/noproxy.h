/* upstream_no_proxy: the hosts reel reaches directly although
 * upstream_proxy is set, as curl's NO_PROXY names them. Pure string work:
 * no name is resolved, so an entry that is an address matches a request
 * to that address, not to a name that resolves to it.
 *
 * The list: entries separated by commas or spaces, each one of
 *   *                 every host
 *   example.com       that name and every name under it (www.example.com);
 *                     a leading "." or "*." means the same
 *   192.0.2.7, ::1    that address ([::1] too), however the request spells it
 *   10.0.0.0/8        the addresses in that range (IPv4 or IPv6)
 * Names compare without regard to case, and without a trailing dot. */
#ifndef REEL_BASE_NOPROXY_H
#define REEL_BASE_NOPROXY_H

#include <stdbool.h>

#include "base/error.h"

/** Whether host (a name, or an IP address, brackets or not) is one the
 * list says to reach directly. A NULL or empty list matches nothing;
 * entries that are not valid (reel_no_proxy_check) match nothing. */
bool reel_no_proxy_match(const char *list, const char *host);

/** The list parsed once, for a matcher that runs on every request (NULL:
 * no valid entry, which matches nothing; entries that are not valid are
 * left out). */
typedef struct reel_host_list reel_host_list_t;
reel_host_list_t *reel_host_list_new(const char *list);
/** reel_no_proxy_match against a parsed list (NULL: none). */
bool reel_host_list_match(const reel_host_list_t *l, const char *host);
void reel_host_list_free(reel_host_list_t *l);

/** REEL_OK when every entry of list is one of the forms above;
 * REEL_INVALID naming the first that is not. */
reel_rc reel_no_proxy_check(const char *list, reel_err_t *err);

#endif
