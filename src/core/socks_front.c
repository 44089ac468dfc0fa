/* SOCKS5 clients on the proxy's own port. A connection whose first byte is
 * 5 cannot be an HTTP request (a method is a token) nor TLS (22), so a
 * client set for a SOCKS5 proxy is served on the same address as HTTP
 * ones: its greeting, its username and password (RFC 1929) when
 * `proxyauth` asks for them, then its CONNECT request, which opens a tunnel
 * as an HTTP CONNECT does (core/exchange.c's reel__open_tunnel: sniffed,
 * TLS intercepted, HTTP inside recorded as such, anything else relayed as
 * a TCP flow). What is refused (no method in common, a wrong password,
 * BIND or UDP ASSOCIATE, a malformed message) is answered in SOCKS5 and
 * recorded as a flow with the error, as a refused HTTP request is. Part of
 * the proxy; see core/conn.h, and core/socks.h for the messages. */

#include "core/conn.h"
#include "core/socks.h"

/* The request head a SOCKS5 flow records: method CONNECT (or the command
 * refused), scheme tcp, version "SOCKS5"; host empty when the request
 * never came. */
static reel_msg_head_t socks_msg(const char *method, const char *host, int port) {
    return (reel_msg_head_t){.method = method,
                             .scheme = "tcp",
                             .host = host ? host : "",
                             .port = (uint32_t)port,
                             .path = "",
                             .version = "SOCKS5"};
}

/* Ends the negotiation: reply (n bytes, none when 0) goes to the client,
 * which is then closed, and the flow (one with the request m when it came,
 * else one with none) ends with why. */
static void refuse(conn_t *c, const uint8_t *reply, size_t n, reel_msg_head_t *m, const char *why) {
    if (c->ex.flow == NULL) {
        reel_msg_head_t none = socks_msg("", NULL, 0);
        reel__record_refused_msg(c, m ? m : &none);
    }
    if (n)
        reel__peer_write(&c->client, reply, n);
    reel__fail_exchange(c, 0, why);
}

bool reel__socks_begin(conn_t *c) {
    if (!reel__at_connection_start(c) || c->client.in.data[0] != 5)
        return false;
    c->state = C_SOCKS;
    c->socks = true;
    c->socks_phase = 0;
    if (c->ex.head_started == 0) /* head_timeout covers the whole negotiation */
        c->ex.head_started = uv_now(c->p->loop);
    return true;
}

/* The greeting: a method both sides take, or 0xFF and the end. */
static bool greeting(conn_t *c) {
    peer_t *cl = &c->client;
    size_t used;
    bool none, userpass;
    const char *bad;
    reel_rc rc = reel_socks5_greeting(cl->in.data, cl->in.len, &used, &none, &userpass, &bad);
    if (rc == REEL_NEED_MORE)
        return false;
    static const uint8_t no[2] = {5, REEL_SOCKS5_NO_METHOD};
    if (rc != REEL_OK) {
        char *why = reel_asprintf("a malformed SOCKS5 greeting (%s); reel answered that it takes "
                                  "none of its methods (05 FF)",
                                  bad);
        refuse(c, no, sizeof no, NULL, why);
        free(why);
        return false;
    }
    reel_buf_consume(&cl->in, used);
    /* proxyauth: the username and password are checked (RFC 1929); else
     * no authentication, or a username and password taken unchecked from
     * a client that offers nothing else */
    bool need = c->p->proxyauth_b64 != NULL;
    if (need ? !userpass : !none && !userpass) {
        refuse(c, no, sizeof no, NULL,
               need ? "proxy authentication required: the SOCKS5 client did not offer a "
                      "username and password (RFC 1929), which proxyauth asks for; reel "
                      "answered that it takes none of its methods (05 FF)"
                    : "the SOCKS5 client offered neither no authentication nor a username and "
                      "password; reel answered that it takes none of its methods (05 FF)");
        return false;
    }
    uint8_t ok[2] = {5, need || !none ? REEL_SOCKS5_USERPASS : REEL_SOCKS5_NO_AUTH};
    reel__peer_write(cl, ok, sizeof ok);
    c->socks_phase = ok[1] == REEL_SOCKS5_USERPASS ? 1 : 2;
    return true;
}

/* The username and password, checked against proxyauth when it is set. */
static bool password(conn_t *c) {
    peer_t *cl = &c->client;
    size_t used;
    char user[256], pass[256];
    const char *bad;
    reel_rc rc = reel_socks5_userpass(cl->in.data, cl->in.len, &used, user, pass, &bad);
    if (rc == REEL_NEED_MORE)
        return false;
    static const uint8_t no[2] = {1, 1};
    if (rc != REEL_OK) {
        char *why = reel_asprintf("a malformed SOCKS5 username and password (%s); reel answered "
                                  "failure (01 01)",
                                  bad);
        refuse(c, no, sizeof no, NULL, why);
        free(why);
        return false;
    }
    reel_buf_consume(&cl->in, used);
    if (c->p->proxyauth_b64) {
        char *both = reel_asprintf("%s:%s", user, pass);
        char *b64 = reel_base64(both, strlen(both), NULL);
        bool good = strcmp(b64, c->p->proxyauth_b64) == 0;
        free(b64);
        free(both);
        if (!good) {
            refuse(c, no, sizeof no, NULL,
                   "proxy authentication failed: the SOCKS5 client's username and password are "
                   "not proxyauth's; reel answered failure (01 01)");
            return false;
        }
    }
    static const uint8_t ok[2] = {1, 0};
    reel__peer_write(cl, ok, sizeof ok);
    c->socks_phase = 2;
    return true;
}

static const char *command_name(uint8_t cmd) {
    return cmd == REEL_SOCKS5_BIND ? "BIND" : cmd == REEL_SOCKS5_UDP ? "UDP ASSOCIATE" : "?";
}

/* The request: a CONNECT opens the tunnel; the rest are refused. */
static void request(conn_t *c) {
    peer_t *cl = &c->client;
    size_t used;
    reel_socks5_request_t rq;
    uint8_t code = REEL_SOCKS5_FAILURE, reply[10];
    const char *bad;
    reel_rc rc = reel_socks5_request(cl->in.data, cl->in.len, &used, &rq, &code, &bad);
    if (rc == REEL_NEED_MORE)
        return;
    if (rc != REEL_OK) {
        reel_socks5_reply(reply, code);
        char *why = reel_asprintf("a malformed SOCKS5 request (%s); reel answered %s (05 %02X)",
                                  bad, reel_socks5_reply_name(code), code);
        refuse(c, reply, sizeof reply, NULL, why);
        free(why);
        return;
    }
    reel_buf_consume(&cl->in, used);
    if (rq.cmd != REEL_SOCKS5_CONNECT) {
        reel_socks5_reply(reply, REEL_SOCKS5_BAD_COMMAND);
        reel_msg_head_t m = socks_msg(command_name(rq.cmd), rq.host, rq.port);
        char *why = reel_asprintf("SOCKS5 command %u (%s) is not supported: reel relays CONNECT "
                                  "only; it answered command not supported (05 07)",
                                  (unsigned)rq.cmd, command_name(rq.cmd));
        refuse(c, reply, sizeof reply, &m, why);
        free(why);
        return;
    }
    char *host = reel_strdup(rq.host);
    reel_msg_head_t m = socks_msg("CONNECT", host, rq.port);
    /* the tunnel's flow starts with the negotiation's first byte */
    int64_t now = reel__now_us();
    uint64_t ms = uv_now(c->p->loop);
    c->ex.head_us = c->ex.head_started && c->ex.head_started <= ms
                        ? now - (int64_t)(ms - c->ex.head_started) * 1000
                        : now;
    c->ex.head_started = 0;
    reel__open_tunnel(c, host, rq.port, &m);
    /* bytes sent right behind the request (a client that does not wait for
     * the reply) are the tunnel's first */
    if (c->state == C_SNIFF && cl->in.len && !cl->closing)
        reel__sniff_process(c);
}

void reel__socks_process(conn_t *c) {
    peer_t *cl = &c->client;
    while (c->state == C_SOCKS && cl->in.len && !cl->closing) {
        if (c->socks_phase == 0 && !greeting(c))
            break;
        if (c->state == C_SOCKS && c->socks_phase == 1 && cl->in.len && !password(c))
            break;
        if (c->state == C_SOCKS && c->socks_phase == 2 && cl->in.len) {
            request(c);
            break;
        }
    }
    /* closed with a message not whole (its bytes stay in `in`, so the
     * connection's end, which waits for them to be taken, is said here;
     * an error is said by the caller) */
    if (c->state == C_SOCKS && cl->eof && !cl->error && !cl->closing)
        reel__socks_ended(c, NULL);
}

void reel__socks_ended(conn_t *c, const char *why) {
    static const char *const before[] = {"its greeting", "its username and password",
                                         "its request"};
    char *msg = reel_asprintf("%s during the SOCKS5 negotiation, before reel had %s whole",
                              why ? why : "the client closed the connection",
                              before[c->socks_phase < 3 ? c->socks_phase : 2]);
    refuse(c, NULL, 0, NULL, msg);
    free(msg);
}

void reel__tunnel_answer(conn_t *c) {
    if (c->socks) {
        uint8_t ok[10];
        reel_socks5_reply(ok, REEL_SOCKS5_OK);
        reel__peer_write(&c->client, ok, sizeof ok);
        return;
    }
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    reel__peer_write(&c->client, ok, sizeof ok - 1);
}

void reel__tunnel_refuse(conn_t *c, const char *why) {
    if (!c->socks) {
        reel__fail_exchange(c, 502, why);
        return;
    }
    /* the reply that says it (RFC 1928 6), from reel's own words for it
     * (core/tcp.c) */
    uint8_t code = strncmp(why, "cannot resolve", 14) == 0         ? REEL_SOCKS5_HOST_UNREACHABLE
                   : strstr(why, "connection refused") != NULL     ? REEL_SOCKS5_REFUSED
                   : strstr(why, "network is unreachable") != NULL ? REEL_SOCKS5_NET_UNREACHABLE
                   : strstr(why, "host is unreachable") != NULL    ? REEL_SOCKS5_HOST_UNREACHABLE
                                                                   : REEL_SOCKS5_FAILURE;
    uint8_t reply[10];
    reel_socks5_reply(reply, code);
    reel__peer_write(&c->client, reply, sizeof reply);
    char *msg =
        reel_asprintf("%s; reel answered %s (05 %02X)", why, reel_socks5_reply_name(code), code);
    reel__fail_exchange(c, 0, msg);
    free(msg);
}
