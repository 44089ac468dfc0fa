/* Tunnel sniffing and ClientHello parsing; see sniff.h.
 *
 * The bytes read here (RFC 8446 sections 4.1.2 and 5.1, RFC 6066 section 3,
 * RFC 7301 section 3.1; all integers big-endian):
 *
 *   record:       type(1)=22  version(2)=3.x  length(2)  fragment[length]
 *   handshake:    msg_type(1)=1  length(3)  body[length]
 *                 (the message may span several records, each carrying the
 *                 next fragment; records of other types may not interleave)
 *   ClientHello:  legacy_version(2) random(32)
 *                 legacy_session_id<0..32>          (1-byte length)
 *                 cipher_suites<2..2^16-2>          (2-byte length, even)
 *                 legacy_compression_methods<1..255> (1-byte length)
 *                 [extensions<0..2^16-1>]            (2-byte length; may be
 *                                                     absent before TLS 1.3)
 *   extension:    type(2) length(2) data[length]
 *   server_name (0):        list_len(2) { name_type(1) len(2) name[len] }*
 *   ALPN (16):              list_len(2) { len(1) name[len] }*
 *   supported_versions (43): len(1) { version(2) }*
 *
 * reel_clienthello_parse works in two passes over the caller's buffer. The
 * first walks the record headers until the whole handshake message is in,
 * checking each header and the handshake header as soon as they arrive. The
 * second reads the message through a cursor that steps over the record
 * headers, so a fragmented message needs no reassembly buffer; every read
 * names the logical end of the vector it lies in, and fails (CORRUPT) rather
 * than cross it. */
#include "core/sniff.h"

#include <string.h>

/* ---- sniffing ---- */

static bool is_tchar(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_standard_method(const uint8_t *m, size_t n) {
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strlen(methods[i]) == n && memcmp(methods[i], m, n) == 0)
            return true;
    return false;
}

/* Out of bytes while undecided: more may settle it, unless we hit the cap. */
static reel_sniff_kind undecided(size_t len) {
    return len >= REEL_SNIFF_MAX_BYTES ? REEL_SNIFF_OTHER : REEL_SNIFF_NEED_MORE;
}

static reel_sniff_kind sniff_tls(const uint8_t *buf, size_t len) {
    /* buf[0] == 22 */
    if (len < 2)
        return REEL_SNIFF_NEED_MORE;
    if (buf[1] != 3)
        return REEL_SNIFF_OTHER;
    if (len < 3)
        return REEL_SNIFF_NEED_MORE;
    if (buf[2] < 1 || buf[2] > 4)
        return REEL_SNIFF_OTHER;
    if (len < 4)
        return REEL_SNIFF_NEED_MORE;
    if (buf[3] > 0x40) /* record length over 2^14 whatever the low byte */
        return REEL_SNIFF_OTHER;
    if (len < 5)
        return REEL_SNIFF_NEED_MORE;
    size_t rlen = (size_t)buf[3] << 8 | buf[4];
    if (rlen == 0 || rlen > 16384)
        return REEL_SNIFF_OTHER;
    if (len < 6)
        return REEL_SNIFF_NEED_MORE;
    return buf[5] == 1 ? REEL_SNIFF_TLS : REEL_SNIFF_OTHER;
}

static reel_sniff_kind sniff_http(const uint8_t *buf, size_t len) {
    size_t n = len < REEL_SNIFF_MAX_BYTES ? len : REEL_SNIFF_MAX_BYTES;
    size_t i = 0;

    /* method = token, then SP */
    for (;;) {
        if (i == n)
            return undecided(len);
        if (buf[i] == ' ')
            break;
        if (!is_tchar(buf[i]) || i == REEL_SNIFF_MAX_METHOD)
            return REEL_SNIFF_OTHER;
        i++;
    }
    if (i == 0)
        return REEL_SNIFF_OTHER;
    if (is_standard_method(buf, i))
        return REEL_SNIFF_HTTP;

    /* extension method: request-target (visible bytes), SP, "HTTP/1." */
    size_t target = ++i;
    for (;;) {
        if (i == n)
            return undecided(len);
        if (buf[i] == ' ')
            break;
        if (buf[i] < 0x21 || buf[i] == 0x7f)
            return REEL_SNIFF_OTHER;
        i++;
    }
    if (i == target)
        return REEL_SNIFF_OTHER;
    i++;
    static const char version[] = "HTTP/1.";
    for (size_t k = 0; k < sizeof version - 1; k++, i++) {
        if (i == n)
            return undecided(len);
        if (buf[i] != (uint8_t)version[k])
            return REEL_SNIFF_OTHER;
    }
    return REEL_SNIFF_HTTP;
}

/* Empty lines a request line may follow (RFC 9112 2.2: a server SHOULD
 * ignore at least one; reel's HTTP/1 parser ignores them, as it does on a
 * proxy connection): up to this many bytes of CR and LF. */
#define LEADING_EOL_MAX 8

reel_sniff_kind reel_sniff(const uint8_t *buf, size_t len) {
    if (len == 0)
        return REEL_SNIFF_NEED_MORE;
    if (buf[0] == 22) /* not a tchar, so never an HTTP method */
        return sniff_tls(buf, len);
    size_t eol = 0;
    while (eol < len && (buf[eol] == '\r' || buf[eol] == '\n'))
        if (++eol > LEADING_EOL_MAX)
            return REEL_SNIFF_OTHER;
    if (eol == len)
        return REEL_SNIFF_NEED_MORE;
    return sniff_http(buf + eol, len - eol);
}

const char *reel_sniff_kind_name(reel_sniff_kind k) {
    switch (k) {
    case REEL_SNIFF_NEED_MORE:
        return "need-more";
    case REEL_SNIFF_TLS:
        return "tls";
    case REEL_SNIFF_HTTP:
        return "http";
    case REEL_SNIFF_OTHER:
        return "other";
    }
    return "unknown";
}

/* ---- clients set for another kind of proxy ---- */

reel_wrong_proxy reel_sniff_wrong_proxy(const uint8_t *buf, size_t len) {
    if (len >= 6 && buf[0] == 22)
        return sniff_tls(buf, len) == REEL_SNIFF_TLS ? REEL_WRONG_PROXY_TLS : REEL_WRONG_PROXY_NONE;
    if (len < 9 || buf[0] != 4 || (buf[1] != 1 && buf[1] != 2))
        return REEL_WRONG_PROXY_NONE;
    /* 4 CMD PORT(2) IP(4) USERID NUL [HOST NUL when IP is 0.0.0.x, x != 0] */
    const uint8_t *user_end = memchr(buf + 8, 0, len - 8);
    if (user_end == NULL)
        return REEL_WRONG_PROXY_NONE;
    size_t end = (size_t)(user_end - buf) + 1;
    bool socks4a = buf[4] == 0 && buf[5] == 0 && buf[6] == 0 && buf[7] != 0;
    if (socks4a) {
        const uint8_t *host_end = end < len ? memchr(buf + end, 0, len - end) : NULL;
        if (host_end == NULL || host_end == buf + end)
            return REEL_WRONG_PROXY_NONE;
        end = (size_t)(host_end - buf) + 1;
    }
    return end == len ? REEL_WRONG_PROXY_SOCKS4 : REEL_WRONG_PROXY_NONE;
}

/* ---- ClientHello: the cursor over a fragmented handshake message ---- */

#define TLS_RECORD_HEADER 5
#define TLS_MAX_FRAGMENT 16384

typedef struct {
    const uint8_t *buf;
    size_t pos;  /* offset in buf of the next byte */
    size_t frag; /* bytes left in the current record */
    size_t off;  /* logical offset in the handshake message */
} rd_t;

/* Reads n bytes into dst (NULL: skips them) unless that would cross the
 * logical offset end. The first pass checked that every record up to the
 * message's end lies inside buf, and end never exceeds the message's end. */
static bool rd_take(rd_t *r, size_t end, uint8_t *dst, size_t n) {
    if (r->off > end || n > end - r->off)
        return false;
    r->off += n;
    while (n > 0) {
        if (r->frag == 0) {
            r->frag = (size_t)r->buf[r->pos + 3] << 8 | r->buf[r->pos + 4];
            r->pos += TLS_RECORD_HEADER;
        }
        size_t k = n < r->frag ? n : r->frag;
        if (dst) {
            memcpy(dst, r->buf + r->pos, k);
            dst += k;
        }
        r->pos += k;
        r->frag -= k;
        n -= k;
    }
    return true;
}

static bool rd_u8(rd_t *r, size_t end, size_t *v) {
    uint8_t b[1];
    if (!rd_take(r, end, b, 1))
        return false;
    *v = b[0];
    return true;
}

static bool rd_u16(rd_t *r, size_t end, size_t *v) {
    uint8_t b[2];
    if (!rd_take(r, end, b, 2))
        return false;
    *v = (size_t)b[0] << 8 | b[1];
    return true;
}

/* ---- ClientHello: extensions ---- */

/* NULL when name (n bytes) is a host name: labels of 1..63 letters,
 * digits, '-' and '_' joined by dots, 253 bytes at most; otherwise why not.
 * '_' is not LDH, but real names carry it (service records, some CDN and
 * internal hosts) and browsers send it; the CA mints leaves for it. */
static const char *hostname_problem(const uint8_t *name, size_t n) {
    if (n == 0)
        return "empty host name";
    if (n > 253)
        return "host name longer than 253 bytes";
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = name[i];
        if (c == '.') {
            if (label == 0)
                return "empty label in host name";
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63)
                return "host name label longer than 63 bytes";
        } else {
            return "byte not allowed in a host name";
        }
    }
    if (label == 0)
        return "empty label in host name";
    return NULL;
}

static void sni_invalid(reel_clienthello_t *out, const char *why) {
    out->sni_status = REEL_CH_SNI_INVALID;
    out->sni_problem = why;
    out->sni[0] = '\0';
}

/* Each parse_* reads one extension's data, which ends at logical offset end,
 * and returns NULL or the reason it is corrupt. */

static const char *parse_sni(rd_t *r, size_t end, reel_clienthello_t *out) {
    size_t list_len;
    if (!rd_u16(r, end, &list_len) || list_len != end - r->off)
        return "server_name list length does not match its extension";
    if (list_len == 0) {
        sni_invalid(out, "empty server_name list");
        return NULL;
    }
    size_t hosts = 0;
    uint8_t name[REEL_CH_SNI_MAX];
    size_t name_len = 0;
    bool too_long = false;
    while (r->off < end) {
        size_t type, len;
        if (!rd_u8(r, end, &type) || !rd_u16(r, end, &len))
            return "truncated server_name entry";
        bool keep = false;
        if (type == 0 && ++hosts == 1) {
            keep = len <= sizeof name;
            too_long = !keep;
        }
        if (!rd_take(r, end, keep ? name : NULL, len))
            return "server_name entry longer than its list";
        if (keep)
            name_len = len;
    }
    if (hosts == 0)
        return NULL; /* only name types we do not know: no host name */
    if (hosts > 1) {
        sni_invalid(out, "more than one host_name in server_name");
        return NULL;
    }
    /* A name in its absolute form ("example.com.") is the same name, and
     * the CA mints its leaf for it without the dot: the origin must be
     * checked against that name too, or a client's trailing dot would get
     * a leaf for a name no origin was verified for (RFC 6066 3 sends
     * none; clients that do mean the name without it). */
    if (!too_long && name_len > 1 && name[name_len - 1] == '.')
        name_len--;
    const char *why =
        too_long ? "host name longer than 253 bytes" : hostname_problem(name, name_len);
    if (why) {
        sni_invalid(out, why);
        return NULL;
    }
    memcpy(out->sni, name, name_len);
    out->sni[name_len] = '\0';
    out->sni_status = REEL_CH_SNI_OK;
    return NULL;
}

static const char *parse_alpn(rd_t *r, size_t end, reel_clienthello_t *out) {
    size_t list_len;
    if (!rd_u16(r, end, &list_len) || list_len != end - r->off)
        return "ALPN list length does not match its extension";
    if (list_len == 0)
        return "empty ALPN list";
    out->has_alpn = true;
    while (r->off < end) {
        size_t len;
        if (!rd_u8(r, end, &len))
            return "truncated ALPN list"; /* not reached: off < end */
        if (len == 0)
            return "empty ALPN protocol name";
        if (out->alpn_count < REEL_CH_ALPN_MAX && len <= REEL_CH_ALPN_NAME_MAX) {
            char *dst = out->alpn[out->alpn_count];
            if (!rd_take(r, end, (uint8_t *)dst, len))
                return "ALPN protocol name longer than its list";
            dst[len] = '\0';
            out->alpn_len[out->alpn_count++] = (uint8_t)len;
        } else {
            out->alpn_truncated = true;
            if (!rd_take(r, end, NULL, len))
                return "ALPN protocol name longer than its list";
        }
    }
    return NULL;
}

static bool is_grease(size_t v) {
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

static const char *parse_supported_versions(rd_t *r, size_t end, reel_clienthello_t *out) {
    size_t list_len;
    if (!rd_u8(r, end, &list_len) || list_len != end - r->off)
        return "supported_versions length does not match its extension";
    if (list_len < 2 || list_len % 2 != 0)
        return "supported_versions list empty or of odd length";
    out->has_supported_versions = true;
    while (r->off < end) {
        size_t v;
        if (!rd_u16(r, end, &v))
            return "truncated supported_versions list"; /* not reached: even length */
        if (is_grease(v))
            continue;
        if (v > out->max_supported_version)
            out->max_supported_version = (uint16_t)v;
        if (v == 0x0304)
            out->tls13 = true;
    }
    return NULL;
}

/* ---- ClientHello: the two passes ---- */

#define FAIL(code, why)                                                                            \
    do {                                                                                           \
        rc = (code);                                                                               \
        out->reason = (why);                                                                       \
        goto out;                                                                                  \
    } while (0)

/* Pass one: finds the end of the handshake message. Returns REEL_OK with
 * *msg_len (header included), out->consumed and out->records set. */
static reel_rc frame(const uint8_t *buf, size_t len, size_t *msg_len, reel_clienthello_t *out) {
    reel_rc rc = REEL_OK;
    size_t pos = 0, got = 0, need = 0; /* need: 0 until the handshake header is in */
    uint8_t hdr[4];

    for (;;) {
        size_t left = len - pos;
        if (left < 1)
            FAIL(REEL_NEED_MORE, "record header incomplete");
        if (buf[pos] != 22)
            FAIL(REEL_INVALID, "not a handshake record");
        if (left < 2)
            FAIL(REEL_NEED_MORE, "record header incomplete");
        if (buf[pos + 1] != 3)
            FAIL(REEL_INVALID, "record version is not 3.x");
        if (left < 3)
            FAIL(REEL_NEED_MORE, "record header incomplete");
        if (buf[pos + 2] < 1 || buf[pos + 2] > 4)
            FAIL(REEL_INVALID, "record version is not 3.1 to 3.4");
        if (left < TLS_RECORD_HEADER)
            FAIL(REEL_NEED_MORE, "record header incomplete");
        size_t rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        if (rlen == 0)
            FAIL(REEL_CORRUPT, "empty handshake record");
        if (rlen > TLS_MAX_FRAGMENT)
            FAIL(REEL_CORRUPT, "record longer than 16384 bytes");
        if (pos == 0)
            out->record_version = (uint16_t)(buf[1] << 8 | buf[2]);

        size_t body = pos + TLS_RECORD_HEADER;
        size_t avail = len - body < rlen ? len - body : rlen;
        for (size_t i = 0; i < avail && got + i < sizeof hdr; i++) {
            hdr[got + i] = buf[body + i];
            if (got + i == 0 && hdr[0] != 1)
                FAIL(REEL_INVALID, "handshake message is not a ClientHello");
            if (got + i == 3) {
                need = 4 + ((size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]);
                if (need > REEL_CH_MAX_SIZE)
                    FAIL(REEL_LIMIT, "ClientHello longer than 64 KiB");
            }
        }
        if (avail < rlen)
            FAIL(REEL_NEED_MORE, "record incomplete");
        got += rlen;
        pos = body + rlen;
        out->records++;
        if (need != 0 && got >= need) {
            if (got > need)
                FAIL(REEL_CORRUPT, "bytes after the ClientHello in its last record");
            break;
        }
    }
    *msg_len = need;
    out->consumed = pos;
out:
    return rc;
}

reel_rc reel_clienthello_parse(const uint8_t *buf, size_t len, reel_clienthello_t *out) {
    reel_rc rc = REEL_OK;
    size_t end = 0, v, n;
    uint8_t seen[65536 / 8]; /* extension types met so far */
    memset(out, 0, sizeof *out);

    rc = frame(buf, len, &end, out);
    if (rc != REEL_OK)
        goto out;

    rd_t r = {.buf = buf};
    if (!rd_take(&r, end, NULL, 4)) /* the handshake header, checked already */
        FAIL(REEL_CORRUPT, "truncated handshake header");
    if (!rd_u16(&r, end, &v))
        FAIL(REEL_CORRUPT, "truncated legacy_version");
    out->legacy_version = (uint16_t)v;
    if (!rd_take(&r, end, NULL, 32))
        FAIL(REEL_CORRUPT, "truncated random");
    if (!rd_u8(&r, end, &n) || n > 32 || !rd_take(&r, end, NULL, n))
        FAIL(REEL_CORRUPT, "bad legacy_session_id");
    if (!rd_u16(&r, end, &n) || n < 2 || n % 2 != 0 || !rd_take(&r, end, NULL, n))
        FAIL(REEL_CORRUPT, "bad cipher_suites");
    if (!rd_u8(&r, end, &n) || n < 1 || !rd_take(&r, end, NULL, n))
        FAIL(REEL_CORRUPT, "bad legacy_compression_methods");
    if (r.off == end)
        goto out; /* no extensions (allowed before TLS 1.3) */
    if (!rd_u16(&r, end, &n) || n != end - r.off)
        FAIL(REEL_CORRUPT, "extensions length does not match the message");

    memset(seen, 0, sizeof seen);
    while (r.off < end) {
        size_t type, ext_len;
        if (!rd_u16(&r, end, &type) || !rd_u16(&r, end, &ext_len))
            FAIL(REEL_CORRUPT, "truncated extension header");
        if (ext_len > end - r.off)
            FAIL(REEL_CORRUPT, "extension longer than the extensions block");
        if (seen[type / 8] & (1u << (type % 8)))
            FAIL(REEL_CORRUPT, "duplicate extension");
        seen[type / 8] |= (uint8_t)(1u << (type % 8));
        size_t ext_end = r.off + ext_len;
        const char *why = NULL;
        switch (type) {
        case 0:
            why = parse_sni(&r, ext_end, out);
            break;
        case 16:
            why = parse_alpn(&r, ext_end, out);
            break;
        case 43:
            why = parse_supported_versions(&r, ext_end, out);
            break;
        default:
            rd_take(&r, ext_end, NULL, ext_len);
            break;
        }
        if (why)
            FAIL(REEL_CORRUPT, why);
        if (r.off != ext_end)
            FAIL(REEL_CORRUPT, "extension data shorter than its length"); /* not reached */
    }

out:
    if (rc != REEL_OK) {
        const char *why = out->reason;
        memset(out, 0, sizeof *out);
        out->reason = why;
    }
    return rc;
}

/* ---- the ALPN offer ---- */

static bool alpn_is(const char *name, size_t n, const char *what) {
    return n == strlen(what) && memcmp(name, what, n) == 0;
}

static bool alpn_is_http(const char *name, size_t n) {
    return (n >= 5 && memcmp(name, "http/", 5) == 0) ||
           (n >= 3 && (memcmp(name, "h2-", 3) == 0 || memcmp(name, "h3-", 3) == 0)) ||
           alpn_is(name, n, "h2") || alpn_is(name, n, "h2c") || alpn_is(name, n, "h3");
}

reel_ch_alpn_kind reel_clienthello_alpn(const reel_clienthello_t *ch, char *list, size_t cap) {
    bool other = ch->alpn_count > 0 && !ch->alpn_truncated && cap > 0;
    size_t len = 0;
    for (size_t i = 0; i < ch->alpn_count; i++) {
        const char *name = ch->alpn[i];
        size_t n = ch->alpn_len[i];
        if (alpn_is(name, n, "http/1.1") || alpn_is(name, n, "h2")) {
            other = false;
            break;
        }
        if (alpn_is_http(name, n) || memchr(name, ',', n) || memchr(name, '\0', n))
            other = false;
        if (other && len + (len > 0) + n < cap) {
            if (len)
                list[len++] = ',';
            memcpy(list + len, name, n);
            len += n;
        } else {
            other = false;
        }
    }
    if (cap > 0)
        list[other ? len : 0] = '\0';
    if (other)
        return REEL_CH_ALPN_OTHER;
    for (size_t i = 0; i < ch->alpn_count; i++)
        if (alpn_is(ch->alpn[i], ch->alpn_len[i], "http/1.1") ||
            alpn_is(ch->alpn[i], ch->alpn_len[i], "h2"))
            return REEL_CH_ALPN_HTTP;
    return REEL_CH_ALPN_UNKNOWN;
}
