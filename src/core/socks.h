/* SOCKS5 (RFC 1928) as a proxy's server side reads it, with the
 * username/password sub-negotiation (RFC 1929). Sans I/O: each function
 * looks at the bytes a client sent, keeps no state, allocates nothing and
 * never reads outside [buf, buf + len).
 *
 * A SOCKS5 client sends one message, then waits for the answer, three
 * times at most:
 *   greeting   VER=5 NMETHODS METHODS[NMETHODS]
 *              answered VER=5 METHOD (0 no authentication, 2 username and
 *              password, 0xFF none acceptable)
 *   user/pass  VER=1 ULEN UNAME[ULEN] PLEN PASSWD[PLEN] (method 2 only)
 *              answered VER=1 STATUS (0 success)
 *   request    VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT
 *              answered VER=5 REP RSV=0 ATYP BND.ADDR BND.PORT
 * so the caller reads them one after the other, in its own record of
 * which comes next, and answers each before it parses the next. */
#ifndef REEL_CORE_SOCKS_H
#define REEL_CORE_SOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"

/** Methods of the greeting (RFC 1928 3). */
#define REEL_SOCKS5_NO_AUTH 0x00
#define REEL_SOCKS5_USERPASS 0x02
#define REEL_SOCKS5_NO_METHOD 0xFF

/** Commands of the request (RFC 1928 4). */
#define REEL_SOCKS5_CONNECT 1
#define REEL_SOCKS5_BIND 2
#define REEL_SOCKS5_UDP 3

/** Replies (RFC 1928 6). */
#define REEL_SOCKS5_OK 0x00
#define REEL_SOCKS5_FAILURE 0x01
#define REEL_SOCKS5_NET_UNREACHABLE 0x03
#define REEL_SOCKS5_HOST_UNREACHABLE 0x04
#define REEL_SOCKS5_REFUSED 0x05
#define REEL_SOCKS5_TTL_EXPIRED 0x06
#define REEL_SOCKS5_BAD_COMMAND 0x07
#define REEL_SOCKS5_BAD_ADDRESS 0x08

/** Room for a request's host: a domain name of up to 255 bytes, an IPv6
 * address as text, and the NUL. */
#define REEL_SOCKS5_HOST_MAX 256

/** Parses the greeting at the start of buf. REEL_OK: *used bytes, and
 * *no_auth / *userpass say whether the client offers those methods;
 * REEL_NEED_MORE: a valid prefix; REEL_INVALID: not a SOCKS5 greeting
 * (*why, a static string). */
reel_rc reel_socks5_greeting(const uint8_t *buf, size_t len, size_t *used, bool *no_auth,
                             bool *userpass, const char **why);

/** Parses a username/password message (RFC 1929 2) at the start of buf
 * into user and pass (each NUL-terminated, 256 bytes of room: a name or a
 * password holding a NUL byte is REEL_INVALID, as is an empty name).
 * Returns as reel_socks5_greeting does. */
reel_rc reel_socks5_userpass(const uint8_t *buf, size_t len, size_t *used, char user[256],
                             char pass[256], const char **why);

/** A request (RFC 1928 4). */
typedef struct {
    uint8_t cmd;  /**< REEL_SOCKS5_CONNECT, _BIND, _UDP, or another value */
    uint8_t atyp; /**< 1 IPv4, 3 a domain name, 4 IPv6 */
    /** The destination as text: a dotted IPv4 address, the domain name as
     * sent, or an IPv6 address as inet_ntop writes it (no brackets). */
    char host[REEL_SOCKS5_HOST_MAX];
    int port;
} reel_socks5_request_t;

/** Parses a request at the start of buf into *out. A domain name must be
 * 1 to 255 bytes of visible ASCII other than '/', '@', '?', '#' and '['
 * or ']' (it becomes a URL's host); port 0 is refused. REEL_INVALID says
 * in *why what was wrong and *reply (when not NULL) the reply code that
 * says it to the client: REEL_SOCKS5_BAD_ADDRESS for an address type or
 * a name that cannot be used, REEL_SOCKS5_FAILURE otherwise. A command
 * other than CONNECT is not an error here: the caller answers it. */
reel_rc reel_socks5_request(const uint8_t *buf, size_t len, size_t *used,
                            reel_socks5_request_t *out, uint8_t *reply, const char **why);

/** Writes the 10-byte reply with code rep and the bound address 0.0.0.0:0
 * (reel's own end of the connection to the origin is none of the
 * client's business, and a relay has no other) into out. */
void reel_socks5_reply(uint8_t out[10], uint8_t rep);

/** A static description of a reply code ("succeeded", "connection
 * refused", ...), as RFC 1928 6 names it; "unassigned" for the rest. */
const char *reel_socks5_reply_name(uint8_t rep);

/* ---- the client's side: reel's own connections through a SOCKS5
 * upstream proxy (upstream_proxy socks5://host:port) ---- */

/** Appends the greeting offering no authentication, and username and
 * password too when userpass. */
void reel_socks5_client_greeting(reel_buf_t *out, bool userpass);

/** Appends the username/password message (RFC 1929). false, nothing
 * appended, when user is empty or either is over 255 bytes. */
bool reel_socks5_client_userpass(reel_buf_t *out, const char *user, const char *pass);

/** Appends a CONNECT request for host:port: an IPv4 or IPv6 address as
 * that address type, any other host as a domain name, which the proxy
 * resolves. false, nothing appended, for a name over 255 bytes. */
bool reel_socks5_client_connect(reel_buf_t *out, const char *host, int port);

/** Reads a two-byte answer whose first byte is version (5: the method the
 * proxy chose, answering the greeting; 1: the status of a username and
 * password, 0 success). REEL_NEED_MORE; REEL_OK with *value, 2 bytes
 * used; REEL_INVALID when the version is another (*why, static). */
reel_rc reel_socks5_client_pair(const uint8_t *buf, size_t len, uint8_t version, uint8_t *value,
                                const char **why);

/** Reads the proxy's reply to CONNECT: REEL_NEED_MORE; REEL_OK with *used
 * its bytes (what follows is the origin's) and *rep its code (0:
 * succeeded, the tunnel is open); REEL_INVALID when it is no SOCKS5 reply
 * (*why, static). */
reel_rc reel_socks5_client_reply(const uint8_t *buf, size_t len, size_t *used, uint8_t *rep,
                                 const char **why);

/** The client's handshake, message by message: the greeting, the
 * username and password when the proxy asks for them, then CONNECT. The
 * strings are borrowed and must outlive it. */
typedef struct {
    int phase; /* 0: the greeting sent; 1: the username and password; 2:
                * CONNECT; 3: the tunnel is open */
    const char *host, *user, *pass;
    int port;
} reel_socks5_client_t;

/** Starts a handshake for a tunnel to host:port (user NULL or "": offer
 * no username and password) and appends the greeting to out. */
void reel_socks5_client_start(reel_socks5_client_t *s, const char *host, int port, const char *user,
                              const char *pass, reel_buf_t *out);

/** Reads what the proxy sent, in[0..len) being all of it not yet used:
 * *used bytes are taken, and what to send next is appended to out.
 * REEL_NEED_MORE: its next answer is awaited; REEL_OK: the tunnel is open
 * (the bytes after *used are the origin's); REEL_INVALID: the proxy
 * refused or did not speak SOCKS5, *what (owned) saying so in the words
 * reel_connect_refused puts before "CONNECT host:port" ("answered 05
 * (connection refused) to"). */
reel_rc reel_socks5_client_feed(reel_socks5_client_t *s, const uint8_t *in, size_t len,
                                size_t *used, reel_buf_t *out, char **what);

#endif
