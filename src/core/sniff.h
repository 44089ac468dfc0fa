/* What speaks inside a CONNECT tunnel, and what a TLS ClientHello says.
 * Sans I/O: both functions look at bytes and a length, keep no state,
 * allocate nothing and never read outside [buf, buf + len).
 *
 * Browsers tunnel more than HTTPS through CONNECT (plain-HTTP WebSockets,
 * for one). After answering the CONNECT, the proxy buffers what the client
 * sends and calls reel_sniff() on all of it after every read:
 *   REEL_SNIFF_TLS        a TLS ClientHello starts: intercept (and first run
 *                         reel_clienthello_parse() for the SNI, e.g. to match
 *                         ignore_hosts);
 *   REEL_SNIFF_HTTP       an HTTP/1 request line starts: parse as HTTP;
 *   REEL_SNIFF_OTHER      anything else: relay as raw TCP, record a tunnel
 *                         flow;
 *   REEL_SNIFF_NEED_MORE  not sure yet: read more and call again.
 * The answer never guesses: it stays NEED_MORE until the bytes seen so far
 * can only continue one way, and once given it does not change as more
 * bytes arrive. It is given by REEL_SNIFF_MAX_BYTES bytes at the latest.
 *
 * All three recognised protocols are client-speaks-first. A protocol whose
 * server speaks first (SMTP, POP3, FTP greetings; an SSH server banner) sends
 * nothing from the client side, so the caller sees no bytes -- NEED_MORE
 * forever. The caller must therefore apply a timeout (a second or two) while
 * the client is silent and, when it expires with no bytes seen, treat the
 * tunnel as REEL_SNIFF_OTHER and start relaying, so the server's greeting
 * gets through. A client that has sent bytes is not silent: NEED_MORE then
 * means the rest is on its way (a ClientHello split across reads), and
 * relaying it raw on the clock would pass on TLS nobody intercepted. */
#ifndef REEL_CORE_SNIFF_H
#define REEL_CORE_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/** What the first client bytes of a tunnel are. */
typedef enum {
    REEL_SNIFF_NEED_MORE = 0, /**< undecided: call again with more bytes */
    REEL_SNIFF_TLS,           /**< a TLS handshake record holding a ClientHello */
    REEL_SNIFF_HTTP,          /**< an HTTP/1 request line */
    REEL_SNIFF_OTHER,         /**< anything else: relay raw */
} reel_sniff_kind;

/** reel_sniff() decides by this many bytes at the latest. */
#define REEL_SNIFF_MAX_BYTES 8192
/** Longest method token reel_sniff() accepts (an extension method longer
 * than this is OTHER; the longest IANA-registered method has 17). */
#define REEL_SNIFF_MAX_METHOD 20

/** Classifies the first len bytes a client sent in a tunnel (borrowed, only
 * read). Rules:
 * - TLS: a record header with content type 22 (handshake), version 3.1 to
 *   3.4, a length of 1..16384, and handshake type 1 (ClientHello) as its
 *   first byte; decided at 6 bytes. SSLv2-format hellos are OTHER.
 * - HTTP: a method token followed by a space. One of GET HEAD POST PUT
 *   DELETE CONNECT OPTIONS TRACE PATCH decides as soon as its space
 *   arrives ("GET "); any other token (up to REEL_SNIFF_MAX_METHOD bytes)
 *   also needs a request target of visible bytes and " HTTP/1." after it.
 *   Leading empty lines and HTTP/2 prior knowledge ("PRI * HTTP/2.0") are
 *   OTHER.
 * - OTHER: everything else, and whatever is still undecided at
 *   REEL_SNIFF_MAX_BYTES (an extension method with a huge target).
 * Returns REEL_SNIFF_NEED_MORE while the bytes are a proper prefix of more
 * than one answer (always for len == 0). */
reel_sniff_kind reel_sniff(const uint8_t *buf, size_t len);

/** Returns a static name for k ("tls", "http", "other", "need-more"). */
const char *reel_sniff_kind_name(reel_sniff_kind k);

/** What a client began with on the proxy's own port, when that was not an
 * HTTP request (nor SOCKS5, which the proxy serves: core/socks.h) but what
 * a client set for another kind of proxy speaks first: the proxy answers
 * it in its own protocol where it can and says what it was. */
typedef enum {
    REEL_WRONG_PROXY_NONE = 0, /**< none of these (or not decided) */
    REEL_WRONG_PROXY_TLS,      /**< a TLS ClientHello: set to an https:// proxy */
    REEL_WRONG_PROXY_SOCKS4,   /**< a SOCKS4 or SOCKS4a request */
} reel_wrong_proxy;

/** Classifies the first len bytes a client sent to the proxy (borrowed,
 * only read) when they are not HTTP. Rules, each on bytes a client sends
 * whole before it waits for an answer:
 * - TLS: as reel_sniff's (a handshake record starting a ClientHello).
 * - SOCKS4 and 4a: version 4, command 1 (CONNECT) or 2 (BIND), a port
 *   and an address, then the user id ended by its NUL (4a: an address of
 *   0.0.0.x with x not 0, and a host name with its NUL after it), and
 *   nothing after that.
 * Anything else, and any of them cut short, is REEL_WRONG_PROXY_NONE. */
reel_wrong_proxy reel_sniff_wrong_proxy(const uint8_t *buf, size_t len);

/** Cap on one ClientHello handshake message (4-byte header included);
 * a longer one is REEL_LIMIT. */
#define REEL_CH_MAX_SIZE (64 * 1024)
/** Room for the SNI host name (a valid one has at most 253 bytes). */
#define REEL_CH_SNI_MAX 255
/** ALPN protocol names kept, and the longest one kept. */
#define REEL_CH_ALPN_MAX 8
#define REEL_CH_ALPN_NAME_MAX 32

/** What the server_name extension held. */
typedef enum {
    REEL_CH_SNI_NONE = 0, /**< no server_name extension, or no host_name entry */
    REEL_CH_SNI_OK,       /**< one valid host name, in sni */
    REEL_CH_SNI_INVALID,  /**< "invalid SNI": see sni_problem; sni is empty */
} reel_ch_sni_status;

/** A parsed ClientHello. Every string is a copy inside the struct: no
 * pointer into the input survives the call. */
typedef struct {
    /** Bytes of the input that hold the records carrying the ClientHello:
     * the caller's TLS layer must be fed from offset 0, and bytes from here
     * on are whatever the client sent after it. */
    size_t consumed;
    /** Number of TLS records the ClientHello arrived in (1 normally). */
    size_t records;
    /** Version of the first record header (0x0301 usually). */
    uint16_t record_version;
    /** legacy_version of the ClientHello (0x0303 for TLS 1.2 and 1.3). */
    uint16_t legacy_version;

    reel_ch_sni_status sni_status;
    /** The host name as sent (case kept, no trailing dot), NUL-terminated;
     * empty unless sni_status is REEL_CH_SNI_OK. A valid name is letters,
     * digits, hyphens and dots: labels of 1..63 bytes, 253 bytes at most. */
    char sni[REEL_CH_SNI_MAX + 1];
    /** Why the SNI is invalid (static string), NULL otherwise. */
    const char *sni_problem;

    /** True when the ALPN extension (16) is present. */
    bool has_alpn;
    /** ALPN protocol names in client order, NUL-terminated; alpn_len[i]
     * is the exact length (a name is opaque bytes and may hold a NUL). */
    size_t alpn_count;
    char alpn[REEL_CH_ALPN_MAX][REEL_CH_ALPN_NAME_MAX + 1];
    uint8_t alpn_len[REEL_CH_ALPN_MAX];
    /** True when names were left out: more than REEL_CH_ALPN_MAX of them or
     * longer than REEL_CH_ALPN_NAME_MAX bytes. */
    bool alpn_truncated;

    /** True when the supported_versions extension (43) is present. */
    bool has_supported_versions;
    /** Highest version listed in supported_versions, GREASE values left
     * out (0 without the extension). */
    uint16_t max_supported_version;
    /** Looks like TLS 1.3: supported_versions lists 0x0304. */
    bool tls13;

    /** Why the parse failed (static string), NULL on success. */
    const char *reason;
} reel_clienthello_t;

/** Parses the ClientHello at the start of buf (the first len bytes the
 * client sent; borrowed, only read). The handshake message may be split
 * over several handshake records; it is reassembled (virtually, nothing is
 * copied) up to REEL_CH_MAX_SIZE. Every length field is checked against
 * its enclosing one.
 *
 * Fills *out (zeroed first) and returns:
 * - REEL_OK: a complete, well-formed ClientHello; a bad SNI is not a parse
 *   error but sni_status REEL_CH_SNI_INVALID;
 * - REEL_NEED_MORE: everything so far is a valid prefix; call again with
 *   more bytes (a length pointing past the end of the input is this);
 * - REEL_INVALID: not a ClientHello at all (another record type or
 *   version, another handshake message), out->reason says which;
 * - REEL_CORRUPT: a ClientHello whose structure is broken (lengths that do
 *   not add up, empty vectors that may not be, a duplicate extension,
 *   bytes after it in its last record), out->reason says which;
 * - REEL_LIMIT: the handshake message is longer than REEL_CH_MAX_SIZE.
 * Errors that the record and handshake headers show are reported as soon as
 * those headers are in; errors inside the message once all of it is. */
reel_rc reel_clienthello_parse(const uint8_t *buf, size_t len, reel_clienthello_t *out);

/** What a ClientHello's ALPN offer says of the protocol inside its TLS. */
typedef enum {
    /** http/1.1 or h2 is offered: HTTP (what reel selects). */
    REEL_CH_ALPN_HTTP = 0,
    /** No offer, or one reel cannot read whole or pass on (HTTP of another
     * version, names left out, a name holding ',' or NUL): the bytes the
     * client sends inside must decide. */
    REEL_CH_ALPN_UNKNOWN,
    /** Only protocols that are not HTTP (mqtt, imap, ...): the origin may
     * be offered the same list. */
    REEL_CH_ALPN_OTHER,
} reel_ch_alpn_kind;

/** Room for reel_clienthello_alpn's list: every name kept, with commas. */
#define REEL_CH_ALPN_LIST_MAX (REEL_CH_ALPN_MAX * (REEL_CH_ALPN_NAME_MAX + 1))

/** Classifies the ALPN offer of ch (a successful parse; borrowed). For
 * REEL_CH_ALPN_OTHER, list (cap bytes, REEL_CH_ALPN_LIST_MAX suffice) gets
 * the names in client order, comma-separated, NUL-terminated; it is left
 * empty otherwise. A name is HTTP when it starts with "http/" or "h2-" or
 * "h3-", or is "h2", "h2c" or "h3". */
reel_ch_alpn_kind reel_clienthello_alpn(const reel_clienthello_t *ch, char *list, size_t cap);

#endif
