/* SOCKS5 messages a client sends, and the reply reel sends; see socks.h.
 * Written here rather than taken from a library: Debian has no library
 * for the server side of SOCKS5 (libsocks/dante are clients' shims), and
 * the three messages are a few length-prefixed fields. The client's side
 * (reel through a SOCKS5 upstream proxy) is the same messages the other
 * way, kept beside them; Debian's client libraries (dante's libsocks)
 * take over the process's sockets, not bytes in memory. */
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

/* ---- the client's side ---- */

void reel_socks5_client_greeting(reel_buf_t *out, bool userpass) {
    static const uint8_t none[] = {5, 1, REEL_SOCKS5_NO_AUTH};
    static const uint8_t both[] = {5, 2, REEL_SOCKS5_NO_AUTH, REEL_SOCKS5_USERPASS};
    if (userpass)
        reel_buf_append(out, both, sizeof both);
    else
        reel_buf_append(out, none, sizeof none);
}

bool reel_socks5_client_userpass(reel_buf_t *out, const char *user, const char *pass) {
    size_t ul = strlen(user), pl = strlen(pass);
    if (ul == 0 || ul > 255 || pl > 255)
        return false;
    uint8_t b[2] = {1, (uint8_t)ul};
    reel_buf_append(out, b, 2);
    reel_buf_append(out, user, ul);
    b[0] = (uint8_t)pl;
    reel_buf_append(out, b, 1);
    reel_buf_append(out, pass, pl);
    return true;
}

bool reel_socks5_client_connect(reel_buf_t *out, const char *host, int port) {
    uint8_t addr[16];
    uint8_t head[5] = {5, REEL_SOCKS5_CONNECT, 0, 0, 0};
    size_t n = strlen(host);
    if (inet_pton(AF_INET, host, addr) == 1) {
        head[3] = 1;
        reel_buf_append(out, head, 4);
        reel_buf_append(out, addr, 4);
    } else if (inet_pton(AF_INET6, host, addr) == 1) {
        head[3] = 4;
        reel_buf_append(out, head, 4);
        reel_buf_append(out, addr, 16);
    } else {
        if (n == 0 || n > 255)
            return false;
        head[3] = 3;
        head[4] = (uint8_t)n;
        reel_buf_append(out, head, 5);
        reel_buf_append(out, host, n);
    }
    uint8_t p[2] = {(uint8_t)(port >> 8), (uint8_t)port};
    reel_buf_append(out, p, 2);
    return true;
}

reel_rc reel_socks5_client_pair(const uint8_t *buf, size_t len, uint8_t version, uint8_t *value,
                                const char **why) {
    *why = NULL;
    if (len >= 1 && buf[0] != version) {
        *why = version == 5 ? "answered the greeting with what is not SOCKS version 5, before"
                            : "answered the username and password with what is not RFC 1929, "
                              "before";
        return REEL_INVALID;
    }
    if (len < 2)
        return REEL_NEED_MORE;
    *value = buf[1];
    return REEL_OK;
}

reel_rc reel_socks5_client_reply(const uint8_t *buf, size_t len, size_t *used, uint8_t *rep,
                                 const char **why) {
    *used = 0;
    *why = NULL;
    if (len >= 1 && buf[0] != 5) {
        *why = "answered what is not SOCKS version 5 to";
        return REEL_INVALID;
    }
    if (len < 5)
        return REEL_NEED_MORE;
    size_t addr;
    switch (buf[3]) {
    case 1:
        addr = 4;
        break;
    case 4:
        addr = 16;
        break;
    case 3:
        addr = 1 + (size_t)buf[4];
        break;
    default:
        *why = "answered with an unknown address type to";
        return REEL_INVALID;
    }
    if (len < 4 + addr + 2)
        return REEL_NEED_MORE;
    *used = 4 + addr + 2;
    *rep = buf[1];
    return REEL_OK;
}

void reel_socks5_client_start(reel_socks5_client_t *s, const char *host, int port, const char *user,
                              const char *pass, reel_buf_t *out) {
    memset(s, 0, sizeof *s);
    s->host = host;
    s->port = port;
    s->user = user && user[0] ? user : NULL;
    s->pass = pass ? pass : "";
    reel_socks5_client_greeting(out, s->user != NULL);
}

/* The request, after the method (and the password) went through. */
static reel_rc client_request(reel_socks5_client_t *s, reel_buf_t *out, char **what) {
    s->phase = 2;
    if (!reel_socks5_client_connect(out, s->host, s->port)) {
        *what = reel_strdup("cannot be asked (a host name over 255 bytes) for");
        return REEL_INVALID;
    }
    return REEL_NEED_MORE;
}

reel_rc reel_socks5_client_feed(reel_socks5_client_t *s, const uint8_t *in, size_t len,
                                size_t *used, reel_buf_t *out, char **what) {
    *used = 0;
    *what = NULL;
    const char *why = NULL;
    for (;;) {
        const uint8_t *p = in + *used;
        size_t n = len - *used;
        uint8_t v = 0;
        reel_rc rc;
        if (s->phase == 0) { /* the method chosen */
            if ((rc = reel_socks5_client_pair(p, n, 5, &v, &why)) != REEL_OK)
                break;
            *used += 2;
            if (v == REEL_SOCKS5_NO_AUTH)
                rc = client_request(s, out, what);
            else if (v == REEL_SOCKS5_USERPASS && s->user) {
                s->phase = 1;
                if (!reel_socks5_client_userpass(out, s->user, s->pass)) {
                    *what = reel_strdup("cannot be given upstream_proxyauth's username and "
                                        "password (over 255 bytes) before");
                    return REEL_INVALID;
                }
                rc = REEL_NEED_MORE;
            } else if (v == REEL_SOCKS5_USERPASS || (v == REEL_SOCKS5_NO_METHOD && !s->user)) {
                *what = reel_strdup("asks for a username and password (upstream_proxyauth) "
                                    "before");
                return REEL_INVALID;
            } else {
                *what = reel_asprintf("accepted none of the methods reel offers (%s) before",
                                      s->user ? "none, username and password" : "none");
                return REEL_INVALID;
            }
            if (rc != REEL_NEED_MORE)
                return rc;
        } else if (s->phase == 1) { /* the password's status */
            if ((rc = reel_socks5_client_pair(p, n, 1, &v, &why)) != REEL_OK)
                break;
            *used += 2;
            if (v != 0) {
                *what = reel_strdup("refused upstream_proxyauth's username and password before");
                return REEL_INVALID;
            }
            if ((rc = client_request(s, out, what)) != REEL_NEED_MORE)
                return rc;
        } else if (s->phase == 2) { /* the reply to CONNECT */
            size_t k = 0;
            if ((rc = reel_socks5_client_reply(p, n, &k, &v, &why)) != REEL_OK)
                break;
            *used += k;
            if (v != REEL_SOCKS5_OK) {
                *what =
                    reel_asprintf("answered %02X (%s) to", (unsigned)v, reel_socks5_reply_name(v));
                return REEL_INVALID;
            }
            s->phase = 3;
            return REEL_OK;
        } else {
            return REEL_OK;
        }
    }
    if (why) {
        *what = reel_strdup(why);
        return REEL_INVALID;
    }
    return REEL_NEED_MORE;
}
