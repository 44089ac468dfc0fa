/* SOCKS5 messages a client sends, and the reply reel sends; see socks.h.
 * Written here rather than taken from a library: Debian has no library
 * for the server side of SOCKS5 (libsocks/dante are clients' shims), and
 * the three messages are a few length-prefixed fields. */
#include "core/socks.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

reel_rc reel_socks5_greeting(const uint8_t *buf, size_t len, size_t *used, bool *no_auth,
                             bool *userpass, const char **why) {
    *used = 0;
    *no_auth = *userpass = false;
    *why = NULL;
    if (len < 1)
        return REEL_NEED_MORE;
    if (buf[0] != 5) {
        *why = "not SOCKS version 5";
        return REEL_INVALID;
    }
    if (len < 2)
        return REEL_NEED_MORE;
    size_t n = buf[1];
    if (n == 0) {
        *why = "a greeting that offers no method";
        return REEL_INVALID;
    }
    if (len < 2 + n)
        return REEL_NEED_MORE;
    for (size_t i = 0; i < n; i++) {
        if (buf[2 + i] == REEL_SOCKS5_NO_AUTH)
            *no_auth = true;
        else if (buf[2 + i] == REEL_SOCKS5_USERPASS)
            *userpass = true;
    }
    *used = 2 + n;
    return REEL_OK;
}

/* One length-prefixed string of a username/password message at buf[*at]
 * into out (256 bytes). */
static reel_rc userpass_field(const uint8_t *buf, size_t len, size_t *at, char out[256],
                              bool may_be_empty, const char *what, const char **why) {
    if (len < *at + 1)
        return REEL_NEED_MORE;
    size_t n = buf[*at];
    if (n == 0 && !may_be_empty) {
        *why = what;
        return REEL_INVALID;
    }
    if (len < *at + 1 + n)
        return REEL_NEED_MORE;
    if (memchr(buf + *at + 1, 0, n) != NULL) {
        *why = "a username or password holding a NUL byte";
        return REEL_INVALID;
    }
    memcpy(out, buf + *at + 1, n);
    out[n] = '\0';
    *at += 1 + n;
    return REEL_OK;
}

reel_rc reel_socks5_userpass(const uint8_t *buf, size_t len, size_t *used, char user[256],
                             char pass[256], const char **why) {
    *used = 0;
    *why = NULL;
    user[0] = pass[0] = '\0';
    if (len < 1)
        return REEL_NEED_MORE;
    if (buf[0] != 1) {
        *why = "not version 1 of the username/password sub-negotiation";
        return REEL_INVALID;
    }
    size_t at = 1;
    reel_rc rc = userpass_field(buf, len, &at, user, false, "an empty username", why);
    if (rc != REEL_OK)
        return rc;
    rc = userpass_field(buf, len, &at, pass, true, NULL, why);
    if (rc != REEL_OK)
        return rc;
    *used = at;
    return REEL_OK;
}

/* Whether a domain name from a request can be a URL's host as it is. */
static bool host_ok(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f || strchr("/@?#[]\\", p[i]) != NULL)
            return false;
    return true;
}

static reel_rc bad(uint8_t *reply, uint8_t code, const char **why, const char *what) {
    if (reply)
        *reply = code;
    *why = what;
    return REEL_INVALID;
}

reel_rc reel_socks5_request(const uint8_t *buf, size_t len, size_t *used,
                            reel_socks5_request_t *out, uint8_t *reply, const char **why) {
    *used = 0;
    *why = NULL;
    memset(out, 0, sizeof *out);
    if (len < 1)
        return REEL_NEED_MORE;
    if (buf[0] != 5)
        return bad(reply, REEL_SOCKS5_FAILURE, why, "not SOCKS version 5");
    if (len < 4)
        return REEL_NEED_MORE;
    if (buf[2] != 0)
        return bad(reply, REEL_SOCKS5_FAILURE, why, "a reserved byte that is not 0");
    out->cmd = buf[1];
    out->atyp = buf[3];
    size_t at = 4, n;
    switch (buf[3]) {
    case 1: /* IPv4 */
        if (len < at + 4 + 2)
            return REEL_NEED_MORE;
        snprintf(out->host, sizeof out->host, "%u.%u.%u.%u", buf[4], buf[5], buf[6], buf[7]);
        at += 4;
        break;
    case 3: /* a domain name */
        if (len < at + 1)
            return REEL_NEED_MORE;
        n = buf[at];
        if (n == 0)
            return bad(reply, REEL_SOCKS5_BAD_ADDRESS, why, "an empty domain name");
        if (len < at + 1 + n + 2)
            return REEL_NEED_MORE;
        if (!host_ok(buf + at + 1, n))
            return bad(reply, REEL_SOCKS5_BAD_ADDRESS, why,
                       "a domain name with bytes a host name cannot hold");
        memcpy(out->host, buf + at + 1, n);
        out->host[n] = '\0';
        at += 1 + n;
        break;
    case 4: /* IPv6 */
        if (len < at + 16 + 2)
            return REEL_NEED_MORE;
        inet_ntop(AF_INET6, buf + at, out->host, sizeof out->host);
        at += 16;
        break;
    default:
        return bad(reply, REEL_SOCKS5_BAD_ADDRESS, why, "an unknown address type");
    }
    out->port = buf[at] << 8 | buf[at + 1];
    at += 2;
    if (out->port == 0)
        return bad(reply, REEL_SOCKS5_FAILURE, why, "port 0");
    *used = at;
    return REEL_OK;
}

void reel_socks5_reply(uint8_t out[10], uint8_t rep) {
    memset(out, 0, 10);
    out[0] = 5;
    out[1] = rep;
    out[3] = 1; /* an IPv4 address, 0.0.0.0, port 0 */
}

const char *reel_socks5_reply_name(uint8_t rep) {
    static const char *const names[] = {"succeeded",
                                        "general SOCKS server failure",
                                        "connection not allowed by ruleset",
                                        "network unreachable",
                                        "host unreachable",
                                        "connection refused",
                                        "TTL expired",
                                        "command not supported",
                                        "address type not supported"};
    return rep < sizeof names / sizeof names[0] ? names[rep] : "unassigned";
}
