/* HAR 1.2 import: see har.h for the mapping.
 *
 * Two passes over one parsed document: entry_parse() validates an entry and
 * extracts what recording needs; reel_har_load runs it on every entry
 * before anything is recorded, reel_har_record again entry by entry while
 * recording (it is deterministic, so the second pass cannot fail). */
#include "session/har.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/civil.h"
#include "base/mem.h"
#include "base/wsclose.h"
#include "session/decode.h"
#include "session/spool.h"
#include "session/userdata.h"

uint64_t reel__har_max_file_size = REEL_HAR_MAX_FILE_SIZE;

/* Base64 input decoded per recorder call (a multiple of 4). */
#define B64_CHUNK_IN 65536
#define B64_CHUNK_OUT (B64_CHUNK_IN / 4 * 3)

/* Timing values beyond this many milliseconds (~115 days) are refused. */
#define HAR_MAX_MS 1e10

#define HAR_VERSION_MAX 16
#define HAR_ADDR_MAX 64

/* ---- error reporting ---------------------------------------------------- */

typedef struct {
    const char *path;
    size_t idx; /* entry index */
    reel_err_t *err;
} vctx_t;

/* "PATH: entries[IDX].FIELD: MESSAGE" */
static reel_rc __attribute__((format(printf, 3, 4)))
fail(const vctx_t *v, const char *field, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reel_err_set(v->err, REEL_INVALID, "%s: entries[%zu].%s: %s", v->path, v->idx, field,
                        msg);
}

static const char *type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Required member of type `type`; NULL (with the error set) when missing or
 * of another type. */
static json_t *need(const vctx_t *v, json_t *obj, const char *key, const char *field,
                    json_type type, const char *want) {
    json_t *j = json_object_get(obj, key);
    if (j == NULL) {
        fail(v, field, "missing");
        return NULL;
    }
    if (json_typeof(j) != type) {
        fail(v, field, "not %s but %s", want, type_name(j));
        return NULL;
    }
    return j;
}

/* Optional member: NULL when absent or null; sets *bad when of another type. */
static json_t *opt(const vctx_t *v, json_t *obj, const char *key, const char *field, json_type type,
                   const char *want, int *bad) {
    json_t *j = json_object_get(obj, key);
    if (j == NULL || json_is_null(j))
        return NULL;
    if (json_typeof(j) != type) {
        fail(v, field, "not %s but %s", want, type_name(j));
        *bad = 1;
        return NULL;
    }
    return j;
}

/* ---- ISO 8601 ----------------------------------------------------------- */

static int digits(const char *s, size_t n, int *out) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM|+HHMM|+HH)" into
 * microseconds since the epoch. Returns 0 or -1. */
static int parse_iso8601(const char *s, size_t n, int64_t *out) {
    int y, mo, d, h, mi, sec;
    if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > reel_days_in_month(y, mo) || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    size_t i = 19;
    int64_t frac_us = 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t start = i;
        int64_t scale = 100000;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            frac_us += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start)
            return -1;
    }
    int64_t off_s = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1;
        int oh, om = 0;
        i++;
        if (n - i < 2 || digits(s + i, 2, &oh))
            return -1;
        i += 2;
        if (i < n && s[i] == ':')
            i++;
        if (i < n) {
            if (n - i < 2 || digits(s + i, 2, &om))
                return -1;
            i += 2;
        }
        if (oh > 23 || om > 59)
            return -1;
        off_s = sign * (oh * 3600 + om * 60);
    } else {
        return -1; /* HAR requires a zone designator */
    }
    if (i != n)
        return -1;
    int64_t t = reel_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
    if (t <= 0)
        return -1;
    *out = t * 1000000 + frac_us;
    return 0;
}

/* ---- URL ---------------------------------------------------------------- */

static int lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int is_alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c) {
    return c >= '0' && c <= '9';
}

static int prefix_ci(const char *s, size_t n, const char *p) {
    size_t pn = strlen(p);
    if (n < pn)
        return 0;
    for (size_t i = 0; i < pn; i++)
        if (lower((unsigned char)s[i]) != p[i])
            return 0;
    return 1;
}

/* 1 if s starts with an RFC 3986 scheme followed by ':'. */
static int has_scheme(const char *s, size_t n) {
    if (n == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == ':')
            return 1;
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.')
            return 0;
    }
    return 0;
}

static int host_char(int c) {
    return is_alpha(c) || is_digit(c) || c >= 0x80 ||
           (c != 0 && strchr("-._~%!$&'()*+,;=", c) != NULL);
}

typedef reel_url_t url_t;

const char *reel_url_parse(const char *s, size_t n, int fragment, reel_url_t *u) {
    static const char *const not_abs = "not an absolute http(s) URL";
    memset(u, 0, sizeof *u);
    if (strlen(s) != n)
        return "contains a NUL byte";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return "contains a space or control character";
    /* WebSocket handshakes are HTTP/1.1 requests: ws -> http, wss -> https */
    static const struct {
        const char *prefix;
        const char *scheme;
        uint32_t port;
    } schemes[] = {{"http:", "http", 80},
                   {"https:", "https", 443},
                   {"ws:", "http", 80},
                   {"wss:", "https", 443}};
    size_t i = 0;
    for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
        if (prefix_ci(s, n, schemes[k].prefix)) {
            i = strlen(schemes[k].prefix);
            memcpy(u->scheme, schemes[k].scheme, strlen(schemes[k].scheme) + 1);
            u->port = schemes[k].port;
        }
    }
    if (i == 0 && has_scheme(s, n)) { /* data:, blob:, chrome-extension:, ... */
        u->skip = 1;
        return NULL;
    }
    if (i == 0 || n - i < 2 || s[i] != '/' || s[i + 1] != '/')
        return not_abs;
    i += 2;

    size_t auth = i, auth_end = i;
    while (auth_end < n && s[auth_end] != '/' && s[auth_end] != '?' && s[auth_end] != '#')
        auth_end++;
    for (size_t k = auth; k < auth_end; k++) /* drop userinfo */
        if (s[k] == '@')
            auth = k + 1;

    size_t h0, h1, p; /* host [h0, h1); port from p (after ':'), or none */
    if (auth < auth_end && s[auth] == '[') {
        h0 = auth + 1;
        h1 = h0;
        while (h1 < auth_end && s[h1] != ']')
            h1++;
        if (h1 == auth_end)
            return "unterminated IPv6 address in URL";
        for (size_t k = h0; k < h1; k++) {
            int c = (unsigned char)s[k];
            if (!is_digit(c) && !(lower(c) >= 'a' && lower(c) <= 'f') && c != ':' && c != '.')
                return "bad IPv6 address in URL";
        }
        if (h1 == h0)
            return "empty host in URL";
        p = h1 + 1;
        if (p < auth_end && s[p] != ':')
            return "bad host in URL";
    } else {
        h0 = auth;
        h1 = h0;
        while (h1 < auth_end && s[h1] != ':')
            h1++;
        for (size_t k = h0; k < h1; k++)
            if (!host_char((unsigned char)s[k]))
                return "bad host in URL";
        if (h1 == h0)
            return "empty host in URL";
        p = h1;
    }
    if (p < auth_end) { /* s[p] == ':' */
        p++;
        if (p < auth_end) {
            if (auth_end - p > 5)
                return "bad port in URL";
            int port;
            if (digits(s + p, auth_end - p, &port) || port < 1 || port > 65535)
                return "bad port in URL";
            u->port = (uint32_t)port;
        }
    }

    size_t t0 = auth_end, t1 = t0;
    while (t1 < n && (fragment || s[t1] != '#'))
        t1++;
    if (t0 == t1) {
        u->target = reel_strdup("/");
        u->no_path = 1;
    } else if (s[t0] == '?' || s[t0] == '#') { /* "?q" -> "/?q" */
        u->target = reel_malloc(t1 - t0 + 2);
        u->target[0] = '/';
        memcpy(u->target + 1, s + t0, t1 - t0);
        u->target[t1 - t0 + 1] = '\0';
    } else {
        u->target = reel_strndup(s + t0, t1 - t0);
    }
    u->host = reel_strndup(s + h0, h1 - h0);
    return NULL;
}

void reel_url_free(reel_url_t *u) {
    free(u->host);
    free(u->target);
    u->host = u->target = NULL;
}

/* ---- base64 ------------------------------------------------------------- */

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict RFC 4648 base64 (padded, no whitespace). Decodes in[0, n) into out
 * (if not NULL; room for n / 4 * 3 bytes), `last` telling whether this piece
 * ends the text (only then may it end with padding). Returns the decoded
 * length, or -1 with *bad the offset (within the piece) of the first
 * offending byte, or of the incomplete last group. */
static long long b64_decode(const char *in, size_t n, int last, uint8_t *out, size_t *bad) {
    size_t o = 0, whole = n - n % 4;
    for (size_t i = 0; i < whole; i += 4) {
        int end = last && i + 4 == n;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            int c = (unsigned char)in[i + k];
            if (c == '=' && end && k >= 2 && (k == 3 || in[i + 3] == '=')) {
                v[k] = 0;
                pad++;
                continue;
            }
            v[k] = b64_val(c);
            if (v[k] < 0 || pad) {
                *bad = i + (size_t)k;
                return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (out) {
            out[o] = (uint8_t)(w >> 16);
            if (pad < 2)
                out[o + 1] = (uint8_t)(w >> 8);
            if (pad < 1)
                out[o + 2] = (uint8_t)w;
        }
        o += 3 - (size_t)pad;
    }
    if (whole != n) { /* an incomplete group: point at a bad byte in it, else at it */
        *bad = whole;
        while (*bad < n && b64_val((unsigned char)in[*bad]) >= 0)
            (*bad)++;
        if (*bad == n)
            *bad = whole;
        return -1;
    }
    return (long long)o;
}

/* ---- bytes that are not UTF-8 ------------------------------------------- */

json_t *reel_har_text(const char *p, size_t n, int *exact) {
    json_t *j = json_stringn(p ? p : "", n); /* NULL when not UTF-8 */
    if (exact)
        *exact = j != NULL;
    if (j != NULL)
        return j;
    /* 2 bytes at most per byte: the string cannot fail */
    char *u = reel_malloc(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x80) {
            u[k++] = (char)c;
        } else {
            u[k++] = (char)(0xc0 | (c >> 6));
            u[k++] = (char)(0x80 | (c & 0x3f));
        }
    }
    j = json_stringn(u, k);
    free(u);
    return j ? j : json_string("");
}

/* Why bytes p[0..n) cannot be a header value (a status text), or NULL
 * when they can: the recorder takes C strings, and no head has a CR or LF
 * inside a field. */
static const char *not_a_value(const char *p, size_t n) {
    return memchr(p, '\0', n) || memchr(p, '\r', n) || memchr(p, '\n', n)
               ? "header value with a NUL, CR or LF byte"
               : NULL;
}

/* Why p[0..n) cannot be a request's URL whatever it says (a NUL, space
 * or control byte: reel_url_parse's first checks), or NULL. */
static const char *not_a_url(const char *p, size_t n) {
    if (memchr(p, '\0', n))
        return "contains a NUL byte";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return "contains a space or control character";
    return NULL;
}

static const char *not_a_reason(const char *p, size_t n) {
    return not_a_value(p, n) ? "a status text with a NUL, CR or LF byte" : NULL;
}

static int tchar(int c);

/* Why p[0..n) cannot be a header name (a token; a leading ':' marks an
 * HTTP/2 pseudo-header), or NULL when it can. */
static const char *not_a_name(const char *p, size_t n) {
    if (n == 0)
        return "empty header name";
    for (size_t k = p[0] == ':' ? 1 : 0; k < n; k++)
        if (!tchar((unsigned char)p[k]))
            return "not a header name";
    return NULL;
}

/* Why an annotation's bytes p[0..n) cannot be one (exact_bytes's holds). */
static const char *has_nul(const char *p, size_t n) {
    return memchr(p, '\0', n) ? "contains a NUL byte" : NULL;
}

/* The bytes reel export wrote beside a string that is not UTF-8: member
 * KEY of obj (a header, the request, the response, a 1xx answer, an
 * annotation), text str, has obj._reel.KEY_b64 (docs/export.md). Sets
 * *out to them (owned, NUL-terminated, *n bytes), or to NULL when there
 * are none, or when str
 * is no longer what export writes for them: the text was edited after the
 * export, and the edit wins over the stale bytes. v is NULL on the second
 * pass, validated already; on the first, a KEY_b64 that is not a string
 * of base64 fails (at field._reel.KEY_b64) as any malformed member of
 * _reel does, and so do bytes the member cannot hold (holds, when not
 * NULL, says why not), whether or not str wins: a _b64 like that was not
 * written by reel export, and docs/export.md refuses it either way. An
 * _reel that is not an object is not reel's: ignored. */
static reel_rc exact_bytes(const vctx_t *v, json_t *obj, const char *key, json_t *str,
                           const char *field, const char *(*holds)(const char *p, size_t n),
                           char **out, size_t *n) {
    char k[32], f[160];
    *out = NULL;
    *n = 0;
    json_t *rx = json_object_get(obj, "_reel");
    snprintf(k, sizeof k, "%s_b64", key);
    json_t *b = json_is_object(rx) ? json_object_get(rx, k) : NULL;
    if (b == NULL || json_is_null(b))
        return REEL_OK;
    snprintf(f, sizeof f, "%s%s_reel.%s", field, field[0] ? "." : "", k);
    if (!json_is_string(b))
        return v ? fail(v, f, "not a string but %s", type_name(b)) : REEL_INVALID;
    size_t bad, len = json_string_length(b);
    char *d = reel_malloc(len / 4 * 3 + 1);
    long long got = b64_decode(json_string_value(b), len, 1, (uint8_t *)d, &bad);
    if (got < 0) {
        free(d);
        return v ? fail(v, f, "invalid base64 at offset %zu", bad) : REEL_INVALID;
    }
    d[got] = '\0';
    const char *why = holds ? holds(d, (size_t)got) : NULL;
    if (why != NULL) {
        free(d);
        return v ? fail(v, f, "%s", why) : REEL_INVALID;
    }
    json_t *t = reel_har_text(d, (size_t)got, NULL);
    int same = json_string_length(t) == json_string_length(str) &&
               memcmp(json_string_value(t), json_string_value(str), json_string_length(t)) == 0;
    json_decref(t);
    if (!same) {
        free(d);
        return REEL_OK;
    }
    *out = d;
    *n = (size_t)got;
    return REEL_OK;
}

/* ---- entries ------------------------------------------------------------ */

typedef struct {
    const char *text; /* borrowed from the document or owned; NULL: no body */
    size_t len;
    int base64;
    char *owned; /* text when built here (from params, or base64 without
                    its whitespace); NULL when text is borrowed */
} body_t;

/* One of the messages of an entry, as check_message reads it for
 * reel_recorder_message: a WebSocket message of _webSocketMessages (what
 * Chromium and reel export write, har_entry in export.c), or a TCP
 * message of reel export's _reel.messages (har_tcp_messages). */
typedef struct {
    int from_client;
    uint32_t opcode;     /* 0: a TCP message */
    uint32_t close_code; /* a close's (opcode 8) */
    int64_t time_us;
    const char *data; /* borrowed from the document: text, or base64 */
    size_t len;       /* of data as the document has it */
    int base64;
    int latin1;      /* data is the ISO-8859-1 reading of the bytes (cut_text_bytes) */
    uint64_t bytes;  /* the payload bytes data holds (decoded) */
    uint64_t length; /* the whole payload's length */
    int truncated;
    int compressed; /* reel export's "compressed": sent with permessage-deflate */
    int error; /* Chromium's {"type": "error"}: no message, data says why */
} hmsg_t;

typedef struct {
    int64_t start_us;
    const char *method;
    url_t url;
    char req_version[HAR_VERSION_MAX];
    json_t *req_headers;
    body_t req_body;
    const char *server_ip; /* NULL if absent */
    uint32_t status;
    const char *reason;
    char *reason_bytes;     /* owned: reel export's exact bytes of a reason
                               that is not UTF-8 (status_text), else NULL */
    const char *error_text; /* "_error", NULL if absent */
    char resp_version[HAR_VERSION_MAX];
    json_t *resp_headers;
    body_t resp_body;
    int has_timings;
    reel_timings_t timings;
    int64_t total_us; /* "time", -1 when absent */
    /* timings.connect includes ssl, as HAR 1.2 says; not in what reel
     * export wrote before it wrote _reel.duration_ms (TCP alone there) */
    int connect_has_ssl;
    /* reel export's _reel.duration_ms, request_end_ms, response_start_ms
     * (us after the start, -1 unknown): the flow's own times, which time
     * and timings do not give back (reel's phases leave gaps) */
    int reel_times;
    int64_t duration_us, req_end_off_us, resp_start_off_us;
    /* reel export's _reel.request_unfinished: the response came before the
     * client had sent the whole request, which never ended (recorded with
     * no request end, whatever the times say) */
    int unfinished;
    /* Bodies cut before they were written to the HAR (request, response):
     * "_reel": {"request_truncated": true, ...} as reel export writes for
     * a body cut by body_limit; the bodySize of each (bytes on the wire,
     * -1 unknown) and the response's content.size (its decoded length),
     * compared with the bytes given when the flow is recorded, and its
     * content.compression (bytes the Content-Encoding saved, -1 unknown):
     * with them the size on the wire of a body given decoded. */
    int cut[2];
    int64_t body_size[2], content_size, compression;
    /* The rest of what reel export writes under _reel (reel_info and
     * har_reel_extras in export.c), borrowed from the document: the
     * flow's error (NULL: it ended normally), whether reel sent the
     * response itself, the addresses, the origin connection (the entry's
     * "connection" as its number, its TLS version and ALPN), the 1xx
     * answers and the trailer fields (validated arrays, or NULL). The
     * annotations, tags and mark are applied after recording
     * (reel_har_apply_user_data). */
    const char *error;
    int generated;
    int absolute_form;        /* the request came to reel in absolute form */
    int reverse;              /* ... or to reel as a reverse proxy for its origin */
    const char *mapped_to;    /* _reel.mapped_to: where map_remote sent it */
    const char *local_file;   /* _reel.local_file: the file map_local answered from */
    const char *blocked_by;   /* _reel.blocked_by: the block_list rule that answered */
    const char *original_dst; /* _reel.original_dst: where a transparent request went */
    uint64_t response_excess; /* bytes the origin sent past its response's end */
    const char *client_addr, *server_addr, *tls_version, *alpn;
    uint64_t conn_id;
    int has_conn; /* reel export's entry names an origin connection */
    /* ... its certificate check: _reel.unverified, verify_error, peer_cert */
    int unverified;
    const char *verify_error, *peer_cert;
    const char *via; /* _reel.via: the upstream proxy of that connection */
    const char *dns_override; /* _reel.dns_override: the entry that gave its address */
    int via_forward; /* _reel.via_forward: ... the request sent to it in absolute form */
    int client_cert_asked;   /* _reel.client_cert_asked: the origin asked for one */
    const char *client_cert; /* _reel.client_cert: the one reel presented */
    int tls_resumed;         /* _reel.tls_resumed: its TLS resumed a session */
    /* _reel.client_tls: the client's TLS with reel (has_client_tls) */
    int has_client_tls, client_tls_resumed;
    const char *client_tls[4]; /* sni, alpn, tls_version, cipher; NULL: none */
    json_t *interim, *trailers[2];
    int trailers_held[2]; /* _reel.*_trailers_not_passed_on */
    /* _reel.messages: the TCP messages of an upgrade to a protocol other
     * than WebSocket, or _webSocketMessages: a WebSocket's messages, in
     * order (owned array, their data borrowed); an entry has one or the
     * other. ws_error: the first error Chromium wrote among the latter
     * (borrowed), NULL if none. */
    hmsg_t *msgs;
    size_t nmsgs;
    const char *ws_error;
    /* _reel.request_modified, response_modified: modify_headers' changes
     * (owned arrays, their strings borrowed) */
    reel_header_edit_t *modified[2];
    size_t nmodified[2];
    /* _reel.request_body_edit, response_body_edit: what modify_body rules
     * did to each body (has_body_edit; the rules owned arrays, their
     * strings borrowed) */
    int has_body_edit[2];
    reel_body_edit_t body_edit[2];
    const char **body_edit_rules[2];
    uint8_t *body_edit_sent[2]; /* its sent_body_b64 decoded (owned; NULL: none) */
} entry_t;

static int tchar(int c) {
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Normalizes an httpVersion into out; "" -> out = "". HAR 1.2 leaves the
 * string free and browsers write what their network stack calls the
 * protocol: "HTTP/1.1", "http/2.0" (Chromium), "HTTP/2" (Firefox), "h2",
 * "h3", "h3-29", "spdy/3.1", "http/2+quic/43", "unknown". ALPN names of
 * HTTP/2 and 3 become reel's "HTTP/2.0" and "HTTP/3.0", and so do "HTTP/2"
 * and "HTTP/3"; "HTTP/" and a version number that no HTTP has (HTTP/9,
 * HTTP/1.2) is impossible: -2; other names are kept, in upper case.
 * Returns -1 for a string that is no protocol name at all (a space, a
 * control byte, too long). */
static int norm_version(const char *v, size_t n, char out[HAR_VERSION_MAX]) {
    static const char *const known[][2] = {
        {"0.9", "HTTP/0.9"}, {"1.0", "HTTP/1.0"}, {"1.1", "HTTP/1.1"}, {"2", "HTTP/2.0"},
        {"2.0", "HTTP/2.0"}, {"3", "HTTP/3.0"},   {"3.0", "HTTP/3.0"},
    };
    if (strlen(v) != n || n >= HAR_VERSION_MAX)
        return -1;
    if (strcmp(v, "h2") == 0 || strcmp(v, "h2c") == 0) {
        memcpy(out, "HTTP/2.0", 9);
        return 0;
    }
    if (strcmp(v, "h3") == 0 || strncmp(v, "h3-", 3) == 0) {
        memcpy(out, "HTTP/3.0", 9);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)v[i];
        if (c <= 0x20 || c >= 0x7f)
            return -1;
        out[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    out[n] = '\0';
    if (strncmp(out, "HTTP/", 5) == 0 && strspn(out + 5, "0123456789.") == n - 5) {
        /* HTTP/ and digits (or nothing): one of HTTP's, or none */
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strcmp(out + 5, known[k][0]) == 0) {
                snprintf(out, HAR_VERSION_MAX, "%s", known[k][1]);
                return 0;
            }
        return -2;
    }
    return 0;
}

static reel_rc check_version(const vctx_t *v, json_t *obj, const char *field,
                             char out[HAR_VERSION_MAX]) {
    json_t *j = need(v, obj, "httpVersion", field, JSON_STRING, "a string");
    if (j == NULL)
        return REEL_INVALID;
    int r = norm_version(json_string_value(j), json_string_length(j), out);
    if (r == -2)
        return fail(v, field,
                    "\"%s\" is not an HTTP version (there are HTTP/0.9, 1.0, 1.1, 2 and 3)",
                    json_string_value(j));
    if (r != 0)
        return fail(v, field, "not an HTTP version");
    return REEL_OK;
}

/* The exact bytes of obj's statusText (a response, a 1xx answer at
 * field) when reel export wrote them (exact_bytes): owned in *out, else
 * NULL. The recorder takes a C string: bytes with a NUL, CR or LF, which
 * no status line has, are refused. v: as for exact_bytes. */
static reel_rc status_text(const vctx_t *v, json_t *obj, const char *field, char **out) {
    size_t n;
    json_t *st = json_object_get(obj, "statusText");
    if (exact_bytes(v, obj, "statusText", st, field, not_a_reason, out, &n) != REEL_OK)
        return REEL_INVALID;
    if (*out != NULL && strcspn(*out, "\r\n") != n) {
        free(*out);
        *out = NULL;
        if (v == NULL)
            return REEL_INVALID;
        char f[96];
        snprintf(f, sizeof f, "%s%s_reel.statusText_b64", field, field[0] ? "." : "");
        return fail(v, f, "a status text with a NUL, CR or LF byte");
    }
    return REEL_OK;
}

/* An array of {name, value} fields (headers, trailers) at field. */
static reel_rc check_fields(const vctx_t *v, json_t *arr, const char *field) {
    size_t i;
    json_t *h;
    json_array_foreach(arr, i, h) {
        char f[96];
        if (!json_is_object(h)) {
            snprintf(f, sizeof f, "%s[%zu]", field, i);
            return fail(v, f, "not an object but %s", type_name(h));
        }
        snprintf(f, sizeof f, "%s[%zu].name", field, i);
        json_t *name = need(v, h, "name", f, JSON_STRING, "a string");
        if (name == NULL)
            return REEL_INVALID;
        snprintf(f, sizeof f, "%s[%zu].value", field, i);
        json_t *val = need(v, h, "value", f, JSON_STRING, "a string");
        if (val == NULL)
            return REEL_INVALID;
        /* the bytes the import records (to_headers): reel export's exact
         * ones when the text is not UTF-8, else the text */
        char *xb[2];
        size_t xn[2];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        if (exact_bytes(v, h, "name", name, f, not_a_name, &xb[0], &xn[0]) != REEL_OK)
            return REEL_INVALID;
        if (exact_bytes(v, h, "value", val, f, not_a_value, &xb[1], &xn[1]) != REEL_OK) {
            free(xb[0]);
            return REEL_INVALID;
        }
        const char *ns = xb[0] ? xb[0] : json_string_value(name);
        size_t nl = xb[0] ? xn[0] : json_string_length(name);
        const char *vs = xb[1] ? xb[1] : json_string_value(val);
        size_t vl = xb[1] ? xn[1] : json_string_length(val);
        const char *why = NULL;
        snprintf(f, sizeof f, "%s[%zu].%s", field, i, xb[0] ? "_reel.name_b64" : "name");
        if (nl == 0)
            why = "empty header name";
        /* a leading ':' marks an HTTP/2 pseudo-header, skipped on import
         * but for a CONNECT's ':protocol' (to_headers) */
        for (size_t k = ns[0] == ':' ? 1 : 0; why == NULL && k < nl; k++)
            if (!tchar((unsigned char)ns[k]))
                why = "not a header name";
        if (why == NULL)
            snprintf(f, sizeof f, "%s[%zu].%s", field, i, xb[1] ? "_reel.value_b64" : "value");
        for (size_t k = 0; why == NULL && k < vl; k++)
            if (vs[k] == '\0' || vs[k] == '\r' || vs[k] == '\n')
                why = "header value with a NUL, CR or LF byte";
        free(xb[0]);
        free(xb[1]);
        if (why != NULL)
            return fail(v, f, "%s", why);
    }
    return REEL_OK;
}

static reel_rc check_headers(const vctx_t *v, json_t *obj, const char *field, json_t **out) {
    json_t *arr = need(v, obj, "headers", field, JSON_ARRAY, "an array");
    if (arr == NULL || check_fields(v, arr, field) != REEL_OK)
        return REEL_INVALID;
    *out = arr;
    return REEL_OK;
}

/* Line breaks of base64 wrapped in lines (MIME's 76 columns, PEM's 64).
 * Other whitespace (a space) stays an error: it is more often damage. */
static int b64_space(int c) {
    return c == '\r' || c == '\n';
}

/* The offset in s of the byte at offset k of s without its whitespace. */
static size_t b64_unstrip(const char *s, size_t n, size_t k) {
    size_t i = 0;
    for (; i < n; i++) {
        if (b64_space((unsigned char)s[i]))
            continue;
        if (k-- == 0)
            break;
    }
    return i;
}

/* postData given as params alone (HAR 1.2 allows it for
 * application/x-www-form-urlencoded): the body is the params serialized
 * as that format does (WHATWG URL, application/x-www-form-urlencoded):
 * name=value pairs joined by '&', bytes other than ALPHA, DIGIT and
 * "*-._" percent-encoded, a space as '+'. HAR 1.2 does not say whether
 * values are decoded or as sent (Chromium and reel export write them as
 * sent, but always with text too), so they are taken as decoded and
 * encoded. Multipart params carry no boundary nor file contents: such
 * an entry is refused rather than imported without its body. */
static reel_rc params_body(const vctx_t *v, json_t *post, json_t *params, body_t *out) {
    static const char hex[] = "0123456789ABCDEF";
    json_t *mime = json_object_get(post, "mimeType");
    const char *mt = json_is_string(mime) ? json_string_value(mime) : "";
    if (prefix_ci(mt, strlen(mt), "multipart/"))
        return fail(v, "request.postData",
                    "multipart params without text: the body cannot be rebuilt from them");
    size_t cap = 1, i;
    json_t *p;
    json_array_foreach(params, i, p) {
        char f[64];
        snprintf(f, sizeof f, "request.postData.params[%zu]", i);
        if (!json_is_object(p))
            return fail(v, f, "not an object but %s", type_name(p));
        if (json_object_get(p, "fileName") != NULL)
            return fail(v, f,
                        "a file upload without postData.text: the body cannot be "
                        "rebuilt from params");
        snprintf(f, sizeof f, "request.postData.params[%zu].name", i);
        json_t *name = need(v, p, "name", f, JSON_STRING, "a string");
        if (name == NULL)
            return REEL_INVALID;
        int bad = 0;
        snprintf(f, sizeof f, "request.postData.params[%zu].value", i);
        json_t *val = opt(v, p, "value", f, JSON_STRING, "a string", &bad);
        if (bad)
            return REEL_INVALID;
        cap += 3 * (json_string_length(name) + (val ? json_string_length(val) : 0)) + 2;
    }
    char *b = reel_malloc(cap);
    size_t n = 0;
    json_array_foreach(params, i, p) {
        for (int k = 0; k < 2; k++) {
            json_t *j = json_object_get(p, k ? "value" : "name");
            const char *s = j ? json_string_value(j) : "";
            size_t l = j ? json_string_length(j) : 0;
            if (k)
                b[n++] = '=';
            else if (i)
                b[n++] = '&';
            for (size_t m = 0; m < l; m++) {
                int c = (unsigned char)s[m];
                if (is_alpha(c) || is_digit(c) || (c != 0 && strchr("*-._", c) != NULL)) {
                    b[n++] = (char)c;
                } else if (c == ' ') {
                    b[n++] = '+';
                } else {
                    b[n++] = '%';
                    b[n++] = hex[c >> 4];
                    b[n++] = hex[c & 15];
                }
            }
        }
    }
    b[n] = '\0';
    out->owned = b;
    out->text = b;
    out->len = n;
    return REEL_OK;
}

/* obj's "encoding" (f names it): none, "", or "base64", which sets
 * *base64; anything else is refused. */
static reel_rc check_encoding(const vctx_t *v, json_t *obj, const char *f, int *base64) {
    int bad = 0;
    json_t *enc = opt(v, obj, "encoding", f, JSON_STRING, "a string", &bad);
    if (bad)
        return REEL_INVALID;
    if (enc != NULL && json_string_length(enc) > 0) {
        if (strcmp(json_string_value(enc), "base64") != 0)
            return fail(v, f, "unsupported encoding (only \"base64\")");
        *base64 = 1;
    }
    return REEL_OK;
}

/* A body container (postData or content): text and encoding. */
static reel_rc check_body(const vctx_t *v, json_t *obj, const char *field, body_t *out) {
    char f[64];
    int bad = 0;
    memset(out, 0, sizeof *out);
    snprintf(f, sizeof f, "%s.text", field);
    json_t *text = opt(v, obj, "text", f, JSON_STRING, "a string", &bad);
    if (bad)
        return REEL_INVALID;
    snprintf(f, sizeof f, "%s.encoding", field);
    if (check_encoding(v, obj, f, &out->base64) != REEL_OK)
        return REEL_INVALID;
    if (text == NULL) {
        json_t *params = json_object_get(obj, "params");
        if (strcmp(field, "request.postData") == 0 && json_is_array(params) &&
            json_array_size(params) > 0)
            return params_body(v, obj, params, out);
        return REEL_OK;
    }
    out->text = json_string_value(text);
    out->len = json_string_length(text);
    if (out->base64) {
        /* base64 wrapped in lines: decoded without its line breaks */
        const char *t = out->text;
        size_t tl = out->len, k = 0;
        for (size_t i = 0; i < tl; i++)
            if (!b64_space((unsigned char)t[i]))
                k++;
        if (k != tl) {
            out->owned = reel_malloc(k + 1);
            k = 0;
            for (size_t i = 0; i < tl; i++)
                if (!b64_space((unsigned char)t[i]))
                    out->owned[k++] = t[i];
            out->owned[k] = '\0';
            out->text = out->owned;
            out->len = k;
        }
        size_t badoff = 0;
        snprintf(f, sizeof f, "%s.text", field);
        if (b64_decode(out->text, out->len, 1, NULL, &badoff) < 0) {
            badoff = b64_unstrip(t, tl, badoff);
            free(out->owned);
            out->owned = NULL;
            return fail(v, f, "invalid base64 at offset %zu", badoff);
        }
    }
    return REEL_OK;
}

/* One HAR timing in ms (number, negative = unknown) -> µs or -1. */
static reel_rc check_ms(const vctx_t *v, json_t *obj, const char *key, const char *field,
                        int64_t *out) {
    *out = -1;
    json_t *j = json_object_get(obj, key);
    if (j == NULL || json_is_null(j))
        return REEL_OK;
    if (!json_is_number(j))
        return fail(v, field, "not a number but %s", type_name(j));
    double ms = json_number_value(j);
    if (ms > HAR_MAX_MS)
        return fail(v, field, "out of range");
    if (ms >= 0)
        *out = (int64_t)(ms * 1000.0 + 0.5);
    return REEL_OK;
}

static reel_rc check_timings(const vctx_t *v, json_t *entry, entry_t *e) {
    static const char *const keys[] = {"blocked", "dns",     "connect", "send",
                                       "wait",    "receive", "ssl"};
    int bad = 0;
    json_t *t = opt(v, entry, "timings", "timings", JSON_OBJECT, "an object", &bad);
    if (bad)
        return REEL_INVALID;
    int64_t vals[7];
    for (int k = 0; k < 7; k++) {
        char f[32];
        snprintf(f, sizeof f, "timings.%s", keys[k]);
        vals[k] = -1;
        if (t != NULL && check_ms(v, t, keys[k], f, &vals[k]) != REEL_OK)
            return REEL_INVALID;
    }
    e->has_timings = t != NULL;
    e->timings = (reel_timings_t){.blocked_us = vals[0],
                                  .dns_us = vals[1],
                                  .connect_us = vals[2],
                                  .send_us = vals[3],
                                  .wait_us = vals[4],
                                  .receive_us = vals[5],
                                  .ssl_us = vals[6]};
    return check_ms(v, entry, "time", "time", &e->total_us);
}

/* Optional string member of _reel at "_reel.KEY": NULL when absent; fails
 * when it is not a string, holds a NUL, or (addr) is longer than 128 bytes
 * or holds a space or control byte. */
static reel_rc reel_string(const vctx_t *v, json_t *rx, const char *key, int addr,
                           const char **out) {
    char f[64];
    int bad = 0;
    snprintf(f, sizeof f, "_reel.%s", key);
    *out = NULL;
    json_t *j = opt(v, rx, key, f, JSON_STRING, "a string", &bad);
    if (bad)
        return REEL_INVALID;
    if (j == NULL)
        return REEL_OK;
    const char *sv = json_string_value(j);
    size_t n = json_string_length(j);
    if (strlen(sv) != n)
        return fail(v, f, "contains a NUL byte");
    for (size_t i = 0; addr && i < n; i++)
        if ((unsigned char)sv[i] <= 0x20 || sv[i] == 0x7f)
            return fail(v, f, "contains a space or control character");
    if (addr && n > 128)
        return fail(v, f, "longer than 128 bytes");
    *out = sv;
    return REEL_OK;
}

/* _reel.KEY, modify_headers' changes as reel export writes them (an array
 * of {name, value: a string or null when the field was removed, rule}),
 * into *out (owned) and *n. */
static reel_rc reel_edits(const vctx_t *v, json_t *rx, const char *key, reel_header_edit_t **out,
                          size_t *n) {
    char f[64];
    int bad = 0;
    snprintf(f, sizeof f, "_reel.%s", key);
    *out = NULL;
    *n = 0;
    json_t *a = opt(v, rx, key, f, JSON_ARRAY, "an array", &bad);
    if (bad)
        return REEL_INVALID;
    size_t len = a ? json_array_size(a) : 0;
    if (len == 0)
        return REEL_OK;
    reel_header_edit_t *e = reel_calloc(len, sizeof *e);
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(a, i), *name = json_object_get(x, "name"),
               *value = json_object_get(x, "value"), *rule = json_object_get(x, "rule");
        const char *why = NULL;
        if (!json_is_object(x))
            why = "not an object";
        else if (!json_is_string(name) || json_string_length(name) == 0 ||
                 strlen(json_string_value(name)) != json_string_length(name))
            why = "its name is not a field name";
        else if (!(json_is_null(value) || value == NULL ||
                   (json_is_string(value) &&
                    strlen(json_string_value(value)) == json_string_length(value))))
            why = "its value is not a string without NUL bytes, or null";
        else if (rule && !json_is_null(rule) && !json_is_string(rule))
            why = "its rule is not a string";
        if (why) {
            free(e);
            return fail(v, f, "change %zu: %s", i, why);
        }
        for (const char *s = json_string_value(name); *s && why == NULL; s++)
            if (!tchar((unsigned char)*s))
                why = "its name is not a field name";
        if (why) {
            free(e);
            return fail(v, f, "change %zu: %s", i, why);
        }
        e[i] = (reel_header_edit_t){json_string_value(name),
                                    json_is_string(value) ? json_string_value(value) : NULL,
                                    json_is_string(rule) ? json_string_value(rule) : NULL};
    }
    *out = e;
    *n = len;
    return REEL_OK;
}

/* _reel.request_body_edit or (response) response_body_edit, as reel
 * export writes them ({rules: [string], replacements, sent_size, decoded,
 * not_applied: a string or null, a request's answered_continue,
 * sent_body_b64: base64 or null, sent_body_truncated}), into e. */
static reel_rc reel_body_edit(const vctx_t *v, json_t *rx, int response, entry_t *e) {
    const char *key = response ? "response_body_edit" : "request_body_edit";
    const char *f = response ? "_reel.response_body_edit" : "_reel.request_body_edit";
    int bad = 0;
    json_t *b = opt(v, rx, key, f, JSON_OBJECT, "an object", &bad);
    if (bad)
        return REEL_INVALID;
    if (b == NULL)
        return REEL_OK;
    json_t *rules = json_object_get(b, "rules"), *rep = json_object_get(b, "replacements"),
           *sent = json_object_get(b, "sent_size"), *dec = json_object_get(b, "decoded"),
           *why = json_object_get(b, "not_applied"),
           *cont = json_object_get(b, "answered_continue"),
           *sb = json_object_get(b, "sent_body_b64"),
           *cut = json_object_get(b, "sent_body_truncated");
    if (!json_is_array(rules) || json_array_size(rules) > 64)
        return fail(v, f, "its rules are not an array of at most 64 strings");
    if (!json_is_integer(rep) || json_integer_value(rep) < 0 || !json_is_integer(sent) ||
        json_integer_value(sent) < 0)
        return fail(v, f, "its replacements and sent_size are not counts");
    if (!json_is_boolean(dec) || !(why == NULL || json_is_null(why) || json_is_string(why)))
        return fail(v, f, "its decoded is not a boolean, or its not_applied not a string or null");
    if (cont && !json_is_boolean(cont)) /* (absent: written before reel recorded it) */
        return fail(v, f, "its answered_continue is not a boolean");
    /* the body as sent (absent or null: not kept, or not applied) */
    if (cut && !json_is_boolean(cut))
        return fail(v, f, "its sent_body_truncated is not a boolean");
    if (sb && !json_is_null(sb) && !json_is_string(sb))
        return fail(v, f, "its sent_body_b64 is not a string of base64 or null");
    uint8_t *sb_bytes = NULL;
    long long sent_len = 0;
    if (json_is_string(sb)) {
        size_t at = 0, len = json_string_length(sb);
        sb_bytes = reel_malloc(len / 4 * 3 + 1);
        if ((sent_len = b64_decode(json_string_value(sb), len, 1, sb_bytes, &at)) < 0) {
            free(sb_bytes);
            return fail(v, f, "its sent_body_b64 has invalid base64 at offset %zu", at);
        }
        /* what reel export writes: sent_size bytes, or fewer when cut */
        json_int_t size = json_integer_value(sent);
        if (json_is_string(why)) {
            free(sb_bytes);
            return fail(v, f,
                        "it has a sent_body_b64 and a not_applied: a body the rules did not "
                        "change is not kept apart");
        }
        if (sent_len > size || (sent_len < size && !json_is_true(cut))) {
            free(sb_bytes);
            return fail(v, f,
                        "its sent_body_b64 holds %lld bytes, not its sent_size of %lld (fewer "
                        "only with sent_body_truncated)",
                        sent_len, (long long)size);
        }
    }
    size_t n = json_array_size(rules);
    const char **texts = reel_calloc(n ? n : 1, sizeof *texts);
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(rules, i);
        if (!json_is_string(r) || strlen(json_string_value(r)) != json_string_length(r)) {
            free(texts);
            free(sb_bytes);
            return fail(v, f, "rule %zu is not a string without NUL bytes", i);
        }
        texts[i] = json_string_value(r);
    }
    e->has_body_edit[response] = 1;
    e->body_edit_rules[response] = texts;
    e->body_edit_sent[response] = sb_bytes;
    e->body_edit[response] =
        (reel_body_edit_t){.response = response,
                           .rules = texts,
                           .n_rules = n,
                           .replacements = (uint64_t)json_integer_value(rep),
                           .sent_size = (uint64_t)json_integer_value(sent),
                           .decoded = json_is_true(dec),
                           .answered_continue = !response && json_is_true(cont),
                           .not_applied = json_is_string(why) ? json_string_value(why) : NULL,
                           .sent_body = sb_bytes,
                           .sent_body_len = (size_t)sent_len};
    return REEL_OK;
}

/* A time string of _reel (ISO 8601) at field into *us. */
static reel_rc reel_time(const vctx_t *v, json_t *obj, const char *field, int64_t *us) {
    json_t *t = need(v, obj, "time", field, JSON_STRING, "a string");
    if (t == NULL)
        return REEL_INVALID;
    if (parse_iso8601(json_string_value(t), json_string_length(t), us) != 0)
        return fail(v, field, "not an ISO 8601 date and time with a zone after 1970");
    return REEL_OK;
}

/* Seconds since the epoch beyond this (9999-12-31T23:59:59Z) are refused. */
#define HAR_MAX_EPOCH_S 253402300799.0

/* A WebSocket control frame's payload has at most this many bytes (RFC
 * 6455 5.5); reel's codec refuses longer ones, so it records none. */
#define WS_MAX_CONTROL 125

/* Whether text s[0..n) (UTF-8) is the ISO-8859-1 reading (reel_har_text)
 * of bytes that are UTF-8 but for an unfinished character at their end,
 * and then their count in *bytes. That is what reel export writes for a
 * text message body_limit cut inside a character, the one text message
 * reel records that is not UTF-8 (its codec checks the rest), marked no
 * other way. A text that is UTF-8 as it is reads so only when its
 * characters, all below U+0100, taken as bytes, end with the start of a
 * character they do not finish: "caf\u00e9" cut there, say (taken as the
 * bytes "caf\xe9"). check_message asks only of truncated text, which
 * browsers do not write. */
static int cut_text_bytes(const char *s, size_t n, size_t *bytes) {
    size_t m = 0;
    unsigned need = 0, lo = 0x80, hi = 0xbf; /* as ws.c's UTF-8 check */
    for (size_t i = 0; i < n; i++, m++) {
        unsigned b = (unsigned char)s[i];
        if ((b == 0xc2 || b == 0xc3) && i + 1 < n) /* U+0080..U+00FF: one byte */
            b = (b & 3) << 6 | ((unsigned char)s[++i] & 0x3f);
        else if (b >= 0x80)
            return 0; /* a character that is no byte */
        if (need > 0) {
            if (b < lo || b > hi)
                return 0;
            need--;
            lo = 0x80;
            hi = 0xbf;
        } else if (b >= 0x80) {
            if (b >= 0xc2 && b <= 0xdf)
                need = 1;
            else if (b >= 0xe0 && b <= 0xef)
                need = 2;
            else if (b >= 0xf0 && b <= 0xf4)
                need = 3;
            else
                return 0;
            lo = b == 0xe0 ? 0xa0 : b == 0xf0 ? 0x90 : 0x80;
            hi = b == 0xed ? 0x9f : b == 0xf4 ? 0x8f : 0xbf;
        }
    }
    *bytes = m;
    return need > 0;
}

/* Writes the bytes whose ISO-8859-1 reading text s[0..n) is into out
 * (room for n bytes); cut_text_bytes said there are such. */
static size_t latin1_bytes(const char *s, size_t n, uint8_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        out[m++] = c < 0x80 ? (uint8_t)c : (uint8_t)((c & 3) << 6 | ((unsigned char)s[++i] & 0x3f));
    }
    return m;
}

/* Message m, LIST[i] of the entry (LIST "_reel.messages" or
 * "_webSocketMessages"), into *out. Both have the shape {"type":
 * "send"|"receive", "time": seconds since the epoch, "data": text or,
 * with "encoding": "base64", base64, and "truncated": true with "length",
 * the whole payload's size, for one that body_limit cut}; every member
 * must have that shape, as for the rest of _reel, and a length larger
 * than the data without truncated (capture fell behind) reel export does
 * not write. A WebSocket message (ws) also has "opcode": 1|2|8|9|10, as
 * Chromium and reel export write them, or 0: the bytes of one read, which
 * reel records (and export writes there) after a 101 to a WebSocket whose
 * extensions it cannot read. Its data is text for opcode 1, base64 for
 * the others (Chromium's DevTools protocol gives them so, and reel export
 * writes them so), a control frame's at most 125 bytes, a
 * close's none or at least the two of its code, which becomes its
 * close_code (1005 without one, as reel's codec records it; when
 * body_limit cut the code off, reel export's "closeCode", else 0:
 * unknown). Chromium also writes {"type": "error",
 * "data": "<why>"} (opcode -1) where the connection failed: *out is then
 * not a message, and out->error is set, data its text. */
static reel_rc check_message(const vctx_t *v, json_t *m, const char *list, size_t i, int ws,
                             hmsg_t *out) {
    char f[96];
    int bad = 0;
    memset(out, 0, sizeof *out);
    snprintf(f, sizeof f, "%s[%zu]", list, i);
    if (!json_is_object(m))
        return fail(v, f, "not an object but %s", type_name(m));

    snprintf(f, sizeof f, "%s[%zu].type", list, i);
    json_t *type = need(v, m, "type", f, JSON_STRING, "a string");
    if (type == NULL)
        return REEL_INVALID;
    const char *ts = json_string_value(type);
    out->error = ws && strcmp(ts, "error") == 0;
    if (strcmp(ts, "send") != 0 && strcmp(ts, "receive") != 0 && !out->error)
        return fail(v, f,
                    ws ? "not \"send\", \"receive\" or \"error\"" : "not \"send\" or \"receive\"");
    out->from_client = ts[0] == 's';

    snprintf(f, sizeof f, "%s[%zu].time", list, i);
    json_t *t = json_object_get(m, "time");
    if (t == NULL)
        return fail(v, f, "missing");
    if (!json_is_number(t))
        return fail(v, f, "not a number but %s", type_name(t));
    double sec = json_number_value(t);
    if (!(sec > 0 && sec <= HAR_MAX_EPOCH_S))
        return fail(v, f, "not a time in seconds since 1970 (before the year 10000)");
    /* export writes the microseconds to the digit (%.16g of ~1e9 s): the
     * nearest one is the one recorded */
    out->time_us = (int64_t)(sec * 1e6 + 0.5);

    if (out->error) { /* Chromium's word that the connection failed */
        snprintf(f, sizeof f, "%s[%zu].data", list, i);
        json_t *why = need(v, m, "data", f, JSON_STRING, "a string");
        if (why == NULL)
            return REEL_INVALID;
        if (strlen(json_string_value(why)) != json_string_length(why))
            return fail(v, f, "contains a NUL byte");
        out->data = json_string_value(why);
        out->len = json_string_length(why);
        return REEL_OK;
    }
    if (ws) {
        snprintf(f, sizeof f, "%s[%zu].opcode", list, i);
        json_t *op = need(v, m, "opcode", f, JSON_INTEGER, "an integer");
        if (op == NULL)
            return REEL_INVALID;
        json_int_t o = json_integer_value(op);
        if (o != 0 && o != 1 && o != 2 && o != 8 && o != 9 && o != 10)
            return fail(v, f,
                        "%lld is not the opcode of a WebSocket message (1 text, 2 binary, "
                        "8 close, 9 ping, 10 pong) nor 0 (bytes reel did not read as frames)",
                        (long long)o);
        out->opcode = (uint32_t)o;
        out->base64 = o != 1;
    }

    snprintf(f, sizeof f, "%s[%zu].encoding", list, i);
    if (check_encoding(v, m, f, &out->base64) != REEL_OK)
        return REEL_INVALID;
    snprintf(f, sizeof f, "%s[%zu].data", list, i);
    json_t *data = need(v, m, "data", f, JSON_STRING, "a string");
    if (data == NULL)
        return REEL_INVALID;
    out->data = json_string_value(data);
    out->len = json_string_length(data);
    out->bytes = out->len;
    if (out->base64) {
        size_t badoff;
        long long n = b64_decode(out->data, out->len, 1, NULL, &badoff);
        if (n < 0)
            return fail(v, f, "invalid base64 at offset %zu", badoff);
        out->bytes = (uint64_t)n;
    }

    snprintf(f, sizeof f, "%s[%zu].truncated", list, i);
    json_t *cut = json_object_get(m, "truncated");
    if (cut != NULL && !json_is_null(cut) && !json_is_boolean(cut))
        return fail(v, f, "not a boolean but %s", type_name(cut));
    out->truncated = json_is_true(cut);
    snprintf(f, sizeof f, "%s[%zu].compressed", list, i);
    json_t *defl = json_object_get(m, "compressed");
    if (defl != NULL && !json_is_null(defl) && !json_is_boolean(defl))
        return fail(v, f, "not a boolean but %s", type_name(defl));
    out->compressed = ws && json_is_true(defl);
    if (out->compressed && out->opcode >= 8) /* RFC 7692 6.1: never a control frame */
        return fail(v, f,
                    "true on a control message (close, ping, pong), which is never sent "
                    "compressed");
    size_t nb;
    if (out->opcode == 1 && !out->base64 && out->truncated &&
        cut_text_bytes(out->data, out->len, &nb)) {
        out->latin1 = 1; /* a text message cut inside a character */
        out->bytes = nb;
    }
    snprintf(f, sizeof f, "%s[%zu].length", list, i);
    json_t *len = opt(v, m, "length", f, JSON_INTEGER, "an integer", &bad);
    if (bad)
        return REEL_INVALID;
    out->length = out->bytes;
    if (len == NULL && out->truncated)
        return fail(v, f, "missing (a truncated message has its whole length)");
    if (len != NULL) {
        json_int_t l = json_integer_value(len);
        if (l < 0 || (uint64_t)l < out->bytes)
            return fail(v, f, "less than the %llu bytes of data", (unsigned long long)out->bytes);
        if ((uint64_t)l > out->bytes && !out->truncated)
            return fail(v, f, "%lld bytes, more than the %llu of data, but not truncated",
                        (long long)l, (unsigned long long)out->bytes);
        out->length = (uint64_t)l;
    }

    /* f: length when there is one, else data, which says the length */
    if (len == NULL)
        snprintf(f, sizeof f, "%s[%zu].data", list, i);
    if (out->opcode >= 8 && out->length > WS_MAX_CONTROL)
        return fail(v, f, "%llu bytes: a control message (close, ping, pong) has at most %d",
                    (unsigned long long)out->length, WS_MAX_CONTROL);
    if (out->opcode == 8 && out->length == 1)
        return fail(v, f, "1 byte: a close message has none or at least the 2 of its code");
    if (out->opcode == 8) {
        uint8_t p[WS_MAX_CONTROL + 3]; /* the data decoded: at most length bytes */
        size_t badoff;
        b64_decode(out->data, out->len, 1, p, &badoff);
        out->close_code = out->bytes >= 2    ? (uint32_t)(p[0] << 8 | p[1])
                          : out->length == 0 ? 1005 /* no status code (RFC 6455 7.1.5) */
                                             : 0;   /* cut off by body_limit: not known */
        if (out->bytes >= 2 && !reel_ws_close_code_ok(out->close_code)) {
            snprintf(f, sizeof f, "%s[%zu].data", list, i);
            return fail(v, f,
                        "close code %u, which no endpoint sends (RFC 6455 7.4): reel's codec "
                        "fails a connection that sends it",
                        out->close_code);
        }
    }
    /* reel export's code of a close body_limit cut before its two bytes
     * (the record has it, from the frame as it passed) */
    snprintf(f, sizeof f, "%s[%zu].closeCode", list, i);
    json_t *cc = opt(v, m, "closeCode", f, JSON_INTEGER, "an integer", &bad);
    if (bad)
        return REEL_INVALID;
    if (cc != NULL) {
        json_int_t code = json_integer_value(cc);
        if (out->opcode != 8)
            return fail(v, f, "on a message that is not a close (opcode 8)");
        if (out->bytes >= 2 || !out->truncated)
            return fail(v, f,
                        "on a close whose data is not cut before its code (the code is the "
                        "data's first two bytes, or 1005 without them)");
        if (code < 0 || code > 0xffff || !reel_ws_close_code_ok((uint32_t)code))
            return fail(v, f,
                        "%lld, which no endpoint sends (RFC 6455 7.4): reel's codec fails a "
                        "connection that sends it",
                        (long long)code);
        out->close_code = (uint32_t)code;
    }
    return REEL_OK;
}

/* What reel export writes under _reel (docs/export.md), read back. Not
 * being reel's, an _reel that is not an object is left alone; inside it
 * every member reel writes must have the shape reel gives it, else the
 * entry is refused, as for any other field. */
static reel_rc check_reel(const vctx_t *v, json_t *entry, entry_t *e) {
    json_t *rx = json_object_get(entry, "_reel");
    if (!json_is_object(rx))
        return REEL_OK;
    e->cut[0] = json_is_true(json_object_get(rx, "request_truncated"));
    e->cut[1] = json_is_true(json_object_get(rx, "response_truncated"));
    e->generated = json_is_true(json_object_get(rx, "generated"));
    e->absolute_form = json_is_true(json_object_get(rx, "absolute_form"));
    e->reverse = json_is_true(json_object_get(rx, "reverse"));
    json_t *excess = json_object_get(rx, "response_excess");
    if (excess && (!json_is_integer(excess) || json_integer_value(excess) < 0))
        return fail(v, "_reel.response_excess", "not a count of bytes but %s",
                    json_is_integer(excess) ? "a negative number" : type_name(excess));
    e->response_excess = excess ? (uint64_t)json_integer_value(excess) : 0;
    json_t *unfinished = json_object_get(rx, "request_unfinished");
    if (unfinished && !json_is_null(unfinished) && !json_is_boolean(unfinished))
        return fail(v, "_reel.request_unfinished", "not a boolean but %s", type_name(unfinished));
    e->unfinished = json_is_true(unfinished);
    json_t *dur = json_object_get(rx, "duration_ms");
    e->reel_times = dur != NULL && !json_is_null(dur);
    e->connect_has_ssl = e->reel_times;
    if (check_ms(v, rx, "duration_ms", "_reel.duration_ms", &e->duration_us) != REEL_OK ||
        check_ms(v, rx, "request_end_ms", "_reel.request_end_ms", &e->req_end_off_us) != REEL_OK ||
        check_ms(v, rx, "response_start_ms", "_reel.response_start_ms", &e->resp_start_off_us) !=
            REEL_OK)
        return REEL_INVALID;
    if (reel_string(v, rx, "error", 0, &e->error) != REEL_OK ||
        reel_string(v, rx, "client_addr", 1, &e->client_addr) != REEL_OK ||
        reel_string(v, rx, "server_addr", 1, &e->server_addr) != REEL_OK ||
        reel_string(v, rx, "tls_version", 1, &e->tls_version) != REEL_OK ||
        reel_string(v, rx, "alpn", 1, &e->alpn) != REEL_OK ||
        reel_string(v, rx, "verify_error", 0, &e->verify_error) != REEL_OK ||
        reel_string(v, rx, "peer_cert", 0, &e->peer_cert) != REEL_OK ||
        reel_string(v, rx, "via", 1, &e->via) != REEL_OK ||
        reel_string(v, rx, "dns_override", 0, &e->dns_override) != REEL_OK ||
        reel_string(v, rx, "client_cert", 1, &e->client_cert) != REEL_OK ||
        reel_string(v, rx, "mapped_to", 1, &e->mapped_to) != REEL_OK ||
        reel_string(v, rx, "local_file", 1, &e->local_file) != REEL_OK ||
        reel_string(v, rx, "blocked_by", 1, &e->blocked_by) != REEL_OK ||
        reel_string(v, rx, "original_dst", 1, &e->original_dst) != REEL_OK ||
        reel_edits(v, rx, "request_modified", &e->modified[0], &e->nmodified[0]) != REEL_OK ||
        reel_edits(v, rx, "response_modified", &e->modified[1], &e->nmodified[1]) != REEL_OK ||
        reel_body_edit(v, rx, 0, e) != REEL_OK || reel_body_edit(v, rx, 1, e) != REEL_OK)
        return REEL_INVALID;
    /* A flow exported while it was still open (reel export of a session
     * being recorded) is not a whole exchange: it comes back an error
     * that says so, not complete with half its body */
    json_t *state = json_object_get(rx, "state");
    if (state && !json_is_null(state) && !json_is_string(state))
        return fail(v, "_reel.state", "not a string but %s", type_name(state));
    if (e->error == NULL && json_is_string(state) && strcmp(json_string_value(state), "open") == 0)
        e->error = "the flow was still open when it was exported: it holds what had come by then";
    json_t *unv = json_object_get(rx, "unverified");
    if (unv && !json_is_null(unv) && !json_is_boolean(unv))
        return fail(v, "_reel.unverified", "not a boolean but %s", type_name(unv));
    e->unverified = json_is_true(unv);
    json_t *fwd = json_object_get(rx, "via_forward");
    if (fwd && !json_is_null(fwd) && !json_is_boolean(fwd))
        return fail(v, "_reel.via_forward", "not a boolean but %s", type_name(fwd));
    e->via_forward = e->via && json_is_true(fwd);
    e->client_cert_asked = json_is_true(json_object_get(rx, "client_cert_asked"));
    json_t *tres = json_object_get(rx, "tls_resumed");
    if (tres && !json_is_null(tres) && !json_is_boolean(tres))
        return fail(v, "_reel.tls_resumed", "not a boolean but %s", type_name(tres));
    e->tls_resumed = json_is_true(tres);
    int tbad = 0;
    json_t *ct = opt(v, rx, "client_tls", "_reel.client_tls", JSON_OBJECT, "an object", &tbad);
    if (tbad)
        return REEL_INVALID;
    if (ct) {
        static const char *const keys[4] = {"sni", "alpn", "tls_version", "cipher"};
        for (int k = 0; k < 4; k++) {
            char tf[64];
            snprintf(tf, sizeof tf, "_reel.client_tls.%s", keys[k]);
            json_t *t = opt(v, ct, keys[k], tf, JSON_STRING, "a string", &tbad);
            if (tbad)
                return REEL_INVALID;
            if (t && strlen(json_string_value(t)) != json_string_length(t))
                return fail(v, tf, "contains a NUL byte");
            e->client_tls[k] = t ? json_string_value(t) : NULL;
        }
        json_t *res = json_object_get(ct, "resumed");
        if (res && !json_is_null(res) && !json_is_boolean(res))
            return fail(v, "_reel.client_tls.resumed", "not a boolean but %s", type_name(res));
        e->client_tls_resumed = json_is_true(res);
        e->has_client_tls = 1;
    }
    json_t *conn = json_object_get(entry, "connection");
    if (json_is_string(conn) && json_string_length(conn) > 0 && json_string_length(conn) < 20 &&
        strspn(json_string_value(conn), "0123456789") == json_string_length(conn))
        e->conn_id = strtoull(json_string_value(conn), NULL, 10);
    e->has_conn = e->conn_id || e->tls_version || e->alpn || e->unverified || e->verify_error;
    int bad = 0;
    char f[96];
    size_t i;
    json_t *x;
    e->interim = opt(v, rx, "interim", "_reel.interim", JSON_ARRAY, "an array", &bad);
    if (bad)
        return REEL_INVALID;
    json_array_foreach(e->interim, i, x) {
        snprintf(f, sizeof f, "_reel.interim[%zu]", i);
        if (!json_is_object(x))
            return fail(v, f, "not an object but %s", type_name(x));
        char ver[HAR_VERSION_MAX];
        int64_t us;
        snprintf(f, sizeof f, "_reel.interim[%zu].status", i);
        json_t *st = need(v, x, "status", f, JSON_INTEGER, "an integer");
        if (st == NULL)
            return REEL_INVALID;
        if (json_integer_value(st) < 100 || json_integer_value(st) > 199)
            return fail(v, f, "not an informational (1xx) status");
        snprintf(f, sizeof f, "_reel.interim[%zu].statusText", i);
        if (need(v, x, "statusText", f, JSON_STRING, "a string") == NULL)
            return REEL_INVALID;
        char *reason;
        snprintf(f, sizeof f, "_reel.interim[%zu]", i);
        if (status_text(v, x, f, &reason) != REEL_OK)
            return REEL_INVALID;
        free(reason);
        snprintf(f, sizeof f, "_reel.interim[%zu].httpVersion", i);
        if (check_version(v, x, f, ver) != REEL_OK)
            return REEL_INVALID;
        snprintf(f, sizeof f, "_reel.interim[%zu].headers", i);
        json_t *hs;
        if (check_headers(v, x, f, &hs) != REEL_OK)
            return REEL_INVALID;
        snprintf(f, sizeof f, "_reel.interim[%zu].time", i);
        if (reel_time(v, x, f, &us) != REEL_OK)
            return REEL_INVALID;
    }
    static const char *const tkeys[2] = {"request_trailers", "response_trailers"};
    for (int d = 0; d < 2; d++) {
        snprintf(f, sizeof f, "_reel.%s", tkeys[d]);
        e->trailers[d] = opt(v, rx, tkeys[d], f, JSON_ARRAY, "an array", &bad);
        if (bad || (e->trailers[d] && check_fields(v, e->trailers[d], f) != REEL_OK))
            return REEL_INVALID;
        e->trailers_held[d] = json_is_true(json_object_get(
            rx, d ? "response_trailers_not_passed_on" : "request_trailers_not_passed_on"));
    }
    json_t *msgs = opt(v, rx, "messages", "_reel.messages", JSON_ARRAY, "an array", &bad);
    if (bad)
        return REEL_INVALID;
    if (msgs != NULL)
        e->msgs = reel_calloc(json_array_size(msgs) + 1, sizeof *e->msgs);
    json_array_foreach(msgs, i, x) {
        if (check_message(v, x, "_reel.messages", i, 0, &e->msgs[i]) != REEL_OK)
            return REEL_INVALID; /* e->msgs: entry_free */
        e->nmsgs++;
    }
    /* the user data, applied after recording: checked here */
    json_t *marked = json_object_get(rx, "marked");
    if (marked && !json_is_null(marked) && !json_is_boolean(marked))
        return fail(v, "_reel.marked", "not a boolean but %s", type_name(marked));
    json_t *notes = opt(v, rx, "annotations", "_reel.annotations", JSON_ARRAY, "an array", &bad);
    json_t *tags = bad ? NULL : opt(v, rx, "tags", "_reel.tags", JSON_ARRAY, "an array", &bad);
    if (bad)
        return REEL_INVALID;
    json_array_foreach(notes, i, x) {
        snprintf(f, sizeof f, "_reel.annotations[%zu]", i);
        if (!json_is_object(x))
            return fail(v, f, "not an object but %s", type_name(x));
        snprintf(f, sizeof f, "_reel.annotations[%zu].text", i);
        json_t *t = need(v, x, "text", f, JSON_STRING, "a string");
        if (t == NULL)
            return REEL_INVALID;
        if (strlen(json_string_value(t)) != json_string_length(t))
            return fail(v, f, "contains a NUL byte");
        char *bytes;
        size_t nb;
        snprintf(f, sizeof f, "_reel.annotations[%zu]", i);
        if (exact_bytes(v, x, "text", t, f, has_nul, &bytes, &nb) != REEL_OK)
            return REEL_INVALID;
        free(bytes);
        int64_t us;
        snprintf(f, sizeof f, "_reel.annotations[%zu].time", i);
        if (reel_time(v, x, f, &us) != REEL_OK)
            return REEL_INVALID;
    }
    json_array_foreach(tags, i, x) {
        snprintf(f, sizeof f, "_reel.tags[%zu]", i);
        if (!json_is_string(x))
            return fail(v, f, "not a string but %s", type_name(x));
        reel_err_t terr;
        reel_err_clear(&terr);
        if (reel_session_tag_check(json_string_value(x), &terr) != REEL_OK ||
            strlen(json_string_value(x)) != json_string_length(x))
            return fail(v, f, "%s", reel_err_str(&terr));
    }
    return REEL_OK;
}

/* The entry's _webSocketMessages, as Chromium writes them (its DevTools'
 * HAR export) and reel export does for a WebSocket flow (check_message),
 * in e->msgs; Chromium's errors are not messages: the first is
 * e->ws_error. An entry with _reel.messages too is refused: reel writes
 * one or the other, and which of them a flow's messages are (WebSocket
 * or TCP) is what it is. */
static reel_rc check_ws_messages(const vctx_t *v, json_t *entry, entry_t *e) {
    int bad = 0;
    json_t *msgs =
        opt(v, entry, "_webSocketMessages", "_webSocketMessages", JSON_ARRAY, "an array", &bad);
    if (bad)
        return REEL_INVALID;
    if (json_array_size(msgs) == 0)
        return REEL_OK;
    if (e->nmsgs > 0)
        return fail(v, "_webSocketMessages",
                    "WebSocket messages beside _reel.messages (an upgrade's TCP messages): a "
                    "flow has one or the other");
    free(e->msgs);
    e->msgs = reel_calloc(json_array_size(msgs), sizeof *e->msgs);
    size_t i;
    json_t *x;
    json_array_foreach(msgs, i, x) {
        hmsg_t *m = &e->msgs[e->nmsgs];
        if (check_message(v, x, "_webSocketMessages", i, 1, m) != REEL_OK)
            return REEL_INVALID; /* e->msgs: entry_free */
        if (!m->error)
            e->nmsgs++;
        else if (e->ws_error == NULL)
            e->ws_error = m->data;
    }
    return REEL_OK;
}

static void entry_free(entry_t *e) {
    reel_url_free(&e->url);
    free(e->msgs);
    e->msgs = NULL;
    e->nmsgs = 0;
    free(e->reason_bytes);
    e->reason_bytes = NULL;
    free(e->req_body.owned);
    free(e->resp_body.owned);
    e->req_body.owned = e->resp_body.owned = NULL;
    for (int d = 0; d < 2; d++) {
        free(e->modified[d]);
        e->modified[d] = NULL;
        e->nmodified[d] = 0;
    }
    for (int d = 0; d < 2; d++) {
        free(e->body_edit_rules[d]);
        e->body_edit_rules[d] = NULL;
        free(e->body_edit_sent[d]);
        e->body_edit_sent[d] = NULL;
        e->has_body_edit[d] = 0;
    }
}

/* Validates entry v->idx and fills e (owned parts: entry_free). */
static reel_rc entry_parse(const vctx_t *v, json_t *entry, entry_t *e) {
    int bad = 0;
    memset(e, 0, sizeof *e);
    if (!json_is_object(entry))
        return reel_err_set(v->err, REEL_INVALID, "%s: entries[%zu]: not an object but %s", v->path,
                            v->idx, type_name(entry));

    json_t *j = need(v, entry, "startedDateTime", "startedDateTime", JSON_STRING, "a string");
    if (j == NULL)
        return REEL_INVALID;
    if (parse_iso8601(json_string_value(j), json_string_length(j), &e->start_us) != 0)
        return fail(v, "startedDateTime", "not an ISO 8601 date and time with a zone after 1970");

    json_t *req = need(v, entry, "request", "request", JSON_OBJECT, "an object");
    if (req == NULL)
        return REEL_INVALID;
    j = need(v, req, "method", "request.method", JSON_STRING, "a string");
    if (j == NULL)
        return REEL_INVALID;
    e->method = json_string_value(j);
    size_t ml = json_string_length(j);
    for (size_t k = 0; k < ml; k++)
        if (!tchar((unsigned char)e->method[k]))
            ml = 0;
    if (ml == 0)
        return fail(v, "request.method", "not an HTTP method");
    j = need(v, req, "url", "request.url", JSON_STRING, "a string");
    if (j == NULL)
        return REEL_INVALID;
    /* a URL that is not UTF-8 (its target's bytes as the client sent
     * them): reel export's exact bytes */
    char *ub;
    size_t ul;
    if (exact_bytes(v, req, "url", j, "request", not_a_url, &ub, &ul) != REEL_OK)
        return REEL_INVALID;
    /* an entry of reel export's (it has _reel) keeps its fragment: its
     * client sent it so, where a browser's request never holds one */
    int reels = json_is_object(json_object_get(entry, "_reel"));
    const char *why =
        ub ? reel_url_parse(ub, ul, reels, &e->url)
           : reel_url_parse(json_string_value(j), json_string_length(j), reels, &e->url);
    const char *uf = ub ? "request._reel.url_b64" : "request.url";
    free(ub);
    if (why != NULL)
        return fail(v, uf, "%s", why);
    if (e->url.skip)
        return REEL_OK;
    if (check_version(v, req, "request.httpVersion", e->req_version) != REEL_OK ||
        check_headers(v, req, "request.headers", &e->req_headers) != REEL_OK)
        goto bad;
    json_t *post = opt(v, req, "postData", "request.postData", JSON_OBJECT, "an object", &bad);
    if (bad || (post != NULL && check_body(v, post, "request.postData", &e->req_body) != REEL_OK))
        goto bad;
    if (e->req_version[0] == '\0')
        memcpy(e->req_version, "HTTP/1.1", 9);

    json_t *ip = opt(v, entry, "serverIPAddress", "serverIPAddress", JSON_STRING, "a string", &bad);
    if (bad)
        goto bad;
    if (ip != NULL && json_string_length(ip) > 0 && json_string_length(ip) < HAR_ADDR_MAX &&
        strspn(json_string_value(ip), "0123456789abcdefABCDEF:.[]") == json_string_length(ip))
        e->server_ip = json_string_value(ip);

    json_t *resp = need(v, entry, "response", "response", JSON_OBJECT, "an object");
    if (resp == NULL)
        goto bad;
    j = need(v, resp, "status", "response.status", JSON_INTEGER, "an integer");
    if (j == NULL)
        goto bad;
    json_int_t st = json_integer_value(j);
    if (st < 0 || st > 999) {
        fail(v, "response.status", "not an HTTP status");
        goto bad;
    }
    e->status = (uint32_t)st;
    j = need(v, resp, "statusText", "response.statusText", JSON_STRING, "a string");
    if (j == NULL)
        goto bad;
    e->reason = json_string_value(j);
    if (status_text(v, resp, "response", &e->reason_bytes) != REEL_OK ||
        check_version(v, resp, "response.httpVersion", e->resp_version) != REEL_OK ||
        check_headers(v, resp, "response.headers", &e->resp_headers) != REEL_OK)
        goto bad;
    if (e->resp_version[0] == '\0')
        memcpy(e->resp_version, e->req_version, sizeof e->resp_version);
    json_t *content = need(v, resp, "content", "response.content", JSON_OBJECT, "an object");
    if (content == NULL)
        goto bad;
    j = json_object_get(content, "size");
    if (!json_is_number(j)) {
        if (j == NULL)
            fail(v, "response.content.size", "missing");
        else
            fail(v, "response.content.size", "not a number but %s", type_name(j));
        goto bad;
    }
    if (need(v, content, "mimeType", "response.content.mimeType", JSON_STRING, "a string") ==
            NULL ||
        check_body(v, content, "response.content", &e->resp_body) != REEL_OK)
        goto bad;
    json_t *errtext = opt(v, resp, "_error", "response._error", JSON_STRING, "a string", &bad);
    if (bad)
        goto bad;
    if (errtext != NULL && json_string_length(errtext) > 0 &&
        strlen(json_string_value(errtext)) == json_string_length(errtext))
        e->error_text = json_string_value(errtext);
    if (check_timings(v, entry, e) != REEL_OK)
        goto bad;
    e->connect_has_ssl = 1; /* HAR 1.2; check_reel knows older reel exports */
    /* What reel export says of the flow; then the sizes, lenient as HAR
     * readers are: a size that is not a number is unknown. */
    if (check_reel(v, entry, e) != REEL_OK || check_ws_messages(v, entry, e) != REEL_OK)
        goto bad;
    json_t *bs[2] = {json_object_get(req, "bodySize"), json_object_get(resp, "bodySize")};
    for (int d = 0; d < 2; d++)
        e->body_size[d] = json_is_integer(bs[d]) ? (int64_t)json_integer_value(bs[d]) : -1;
    j = json_object_get(content, "size");
    e->content_size = json_is_integer(j) ? (int64_t)json_integer_value(j) : -1;
    j = json_object_get(content, "compression");
    e->compression = json_is_integer(j) ? (int64_t)json_integer_value(j) : -1;
    return REEL_OK;
bad:
    entry_free(e);
    return REEL_INVALID;
}

/* ---- loading ------------------------------------------------------------ */

typedef struct {
    FILE *f;
    uint64_t total;
    int too_big;
    int io_errno; /* non-zero after a read error */
    int started;  /* the first bytes were read (a UTF-8 BOM skipped) */
} loader_t;

static size_t load_cb(void *buf, size_t len, void *arg) {
    loader_t *l = arg;
    size_t n = fread(buf, 1, len, l->f);
    if (n == 0 && ferror(l->f)) {
        l->io_errno = errno ? errno : EIO;
        return (size_t)-1;
    }
    l->total += n;
    if (l->total > reel__har_max_file_size) {
        l->too_big = 1;
        return (size_t)-1;
    }
    if (!l->started) {
        /* a UTF-8 BOM (Windows tools write one) is not JSON: skip it; fread
         * fills len bytes but at the end, so a BOM is whole in them */
        l->started = 1;
        if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
            memmove(buf, (char *)buf + 3, n - 3);
            n -= 3;
        }
    }
    return n;
}

static reel_rc too_big(const char *path, reel_err_t *err) {
    uint64_t max = reel__har_max_file_size;
    int mib = max >= (1u << 20) && max % (1u << 20) == 0;
    return reel_err_set(err, REEL_LIMIT, "%s: larger than the %llu %s a HAR file may have", path,
                        (unsigned long long)(mib ? max >> 20 : max), mib ? "MiB" : "bytes");
}

/* log.version: HAR 1.2 says an empty one means 1.1; reel reads every 1.x
 * (1.1 and 1.2 differ in fields reel does not need) and, leniently, a
 * missing one. Another major version is a format reel does not know:
 * REEL_UNSUPPORTED, naming the file and the version. */
static reel_rc check_log_version(const char *path, json_t *j, reel_err_t *err) {
    if (j == NULL || json_is_null(j))
        return REEL_OK;
    if (!json_is_string(j))
        return reel_err_set(err, REEL_INVALID, "%s: log.version: not a string but %s", path,
                            type_name(j));
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    if (n == 0)
        return REEL_OK;
    size_t major = strspn(s, "0123456789");
    int shaped = major > 0 && major <= 4 && strlen(s) == n &&
                 (s[major] == '\0' || (s[major] == '.' && s[major + 1] != '\0' &&
                                       strspn(s + major + 1, "0123456789") == n - major - 1));
    if (!shaped)
        return reel_err_set(err, REEL_INVALID,
                            "%s: log.version: \"%.40s\" is not a HAR version (such as \"1.2\")",
                            path, s);
    if (major != 1 || s[0] != '1')
        return reel_err_set(err, REEL_UNSUPPORTED,
                            "%s: log.version: HAR version %s is not supported (reel reads HAR "
                            "1.x: 1.1 and 1.2)",
                            path, s);
    return REEL_OK;
}

/* Parses path and checks the document's outline; *entries is borrowed
 * from *root (owned). */
static reel_rc load(const char *path, json_t **root, json_t **entries, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    loader_t l = {0};
    json_error_t jerr;
    *root = NULL;
    l.f = fopen(path, "rb");
    if (l.f == NULL)
        return reel_err_errno(err, REEL_IO, errno, "%s", path);
    struct stat st;
    if (fstat(fileno(l.f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            rc = reel_err_errno(err, REEL_IO, EISDIR, "%s", path);
            goto out;
        }
        if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > reel__har_max_file_size) {
            rc = too_big(path, err); /* fail before parsing; load_cb caps pipes */
            goto out;
        }
    }
    *root = json_load_callback(load_cb, &l, JSON_ALLOW_NUL, &jerr);
    if (l.too_big) {
        rc = too_big(path, err);
        goto out;
    }
    if (l.io_errno) {
        rc = reel_err_errno(err, REEL_IO, l.io_errno, "%s: read", path);
        goto out;
    }
    if (*root == NULL) {
        rc = reel_err_set(err, REEL_INVALID, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                          jerr.text);
        goto out;
    }
    if (!json_is_object(*root)) {
        rc = reel_err_set(err, REEL_INVALID, "%s: not a HAR file: the top level is %s", path,
                          type_name(*root));
        goto out;
    }
    json_t *hlog = json_object_get(*root, "log");
    if (!json_is_object(hlog)) {
        rc = reel_err_set(err, REEL_INVALID, "%s: log: %s", path,
                          hlog ? "not an object" : "missing");
        goto out;
    }
    if ((rc = check_log_version(path, json_object_get(hlog, "version"), err)) != REEL_OK)
        goto out;
    *entries = json_object_get(hlog, "entries");
    if (!json_is_array(*entries)) {
        rc = reel_err_set(err, REEL_INVALID, "%s: log.entries: %s", path,
                          *entries ? "not an array" : "missing");
        goto out;
    }
out:
    fclose(l.f);
    if (rc != REEL_OK) {
        json_decref(*root);
        *root = NULL;
    }
    return rc;
}

struct reel_har {
    char *path;
    json_t *root;
    json_t *entries; /* borrowed from root */
    uint64_t *ids;   /* the flow id of each entry reel_har_record recorded (0: none) */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    const volatile sig_atomic_t *stop; /* borrowed; NULL: never */
};

void reel_har_set_stop(reel_har_t *h, const volatile sig_atomic_t *stop) {
    h->stop = stop;
}

void reel_har_set_progress(reel_har_t *h, void (*fn)(void *ctx, uint64_t done, uint64_t total),
                           void *ctx) {
    h->progress = fn;
    h->progress_ctx = ctx;
}

reel_rc reel_har_load(const char *path, reel_har_t **out, reel_err_t *err) {
    json_t *root, *entries;
    *out = NULL;
    reel_rc rc = load(path, &root, &entries, err);
    if (rc != REEL_OK)
        return rc;
    vctx_t v = {.path = path, .err = err};
    json_t *entry;
    json_array_foreach(entries, v.idx, entry) {
        entry_t e;
        if (entry_parse(&v, entry, &e) != REEL_OK) {
            json_decref(root);
            return REEL_INVALID;
        }
        entry_free(&e);
    }
    reel_har_t *h = reel_calloc(1, sizeof *h);
    h->path = reel_strdup(path);
    h->root = root;
    h->entries = entries;
    *out = h;
    return REEL_OK;
}

void reel_har_free(reel_har_t *h) {
    if (h == NULL)
        return;
    json_decref(h->root);
    free(h->ids);
    free(h->path);
    free(h);
}

reel_rc reel_har_check(const char *path, reel_err_t *err) {
    reel_har_t *h = NULL;
    reel_rc rc = reel_har_load(path, &h, err);
    reel_har_free(h);
    return rc;
}

/* ---- recording ---------------------------------------------------------- */

/* Whether a validated header array has a `field` (Content-Encoding,
 * Transfer-Encoding) other than identity. */
static int coded(json_t *arr, const char *field) {
    size_t i;
    json_t *h;
    json_array_foreach(arr, i, h) {
        json_t *name = json_object_get(h, "name");
        if (strcasecmp(json_string_value(name), field) != 0)
            continue;
        const char *val = json_string_value(json_object_get(h, "value"));
        if (!reel_coding_is_identity(val, strlen(val)))
            return 1;
    }
    return 0;
}

/* 1 for the ':protocol' pseudo-header of an RFC 8441 extended CONNECT. */
static int is_ext_protocol(json_t *name) {
    return json_string_length(name) == 9 && strcasecmp(json_string_value(name), ":protocol") == 0;
}

/* Headers of a validated array, without pseudo-headers, but for
 * ':protocol' when keep_protocol (a CONNECT request: an HTTP/2 WebSocket,
 * which reel records as method CONNECT with ':protocol' among its headers;
 * the other pseudo-headers say what the method and URL hold); a name or
 * value that reel export wrote with its exact bytes (exact_bytes) has
 * those. Returns owned, with *owned (free it after the headers) holding
 * the exact bytes, NULL when there are none. */
static reel_header_t *to_headers(json_t *arr, int keep_protocol, size_t *n, reel_buf_t *owned) {
    reel_header_t *hs = reel_calloc(json_array_size(arr), sizeof *hs);
    size_t i;
    json_t *h;
    *n = 0;
    reel_buf_init(owned, 0);
    /* offsets into owned->data (it moves as it grows) of each exact name
     * and value; SIZE_MAX when the text is recorded */
    size_t *off = reel_calloc(2 * json_array_size(arr) + 1, sizeof *off);
    json_array_foreach(arr, i, h) {
        json_t *name = json_object_get(h, "name");
        json_t *val = json_object_get(h, "value");
        if (json_string_value(name)[0] == ':' && !(keep_protocol && is_ext_protocol(name)))
            continue;
        hs[*n] = (reel_header_t){.name = json_string_value(name),
                                 .name_len = json_string_length(name),
                                 .value = json_string_value(val),
                                 .value_len = json_string_length(val)};
        for (int k = 0; k < 2; k++) {
            char *x;
            size_t xn;
            off[2 * *n + k] = SIZE_MAX;
            exact_bytes(NULL, h, k ? "value" : "name", k ? val : name, "", NULL, &x, &xn);
            if (x == NULL)
                continue;
            off[2 * *n + k] = owned->len;
            reel_buf_append(owned, x, xn);
            if (k)
                hs[*n].value_len = xn;
            else
                hs[*n].name_len = xn;
            free(x);
        }
        (*n)++;
    }
    for (size_t m = 0; m < *n; m++) {
        if (off[2 * m] != SIZE_MAX)
            hs[m].name = (const char *)owned->data + off[2 * m];
        if (off[2 * m + 1] != SIZE_MAX)
            hs[m].value = (const char *)owned->data + off[2 * m + 1];
    }
    free(off);
    return hs;
}

/* Gives the body to fn; returns its length in bytes. */
static uint64_t feed(reel_rflow_t *f, void (*fn)(reel_rflow_t *, const void *, size_t),
                     const body_t *b, uint8_t *scratch) {
    if (b->text == NULL || b->len == 0)
        return 0;
    if (!b->base64) {
        fn(f, b->text, b->len);
        return b->len;
    }
    uint64_t total = 0;
    for (size_t off = 0; off < b->len; off += B64_CHUNK_IN) {
        size_t n = b->len - off < B64_CHUNK_IN ? b->len - off : B64_CHUNK_IN;
        size_t bad;
        long long out = b64_decode(b->text + off, n, off + n == b->len, scratch, &bad);
        if (out > 0) {
            fn(f, scratch, (size_t)out);
            total += (uint64_t)out;
        }
    }
    return total;
}

/* What the body of `given` bytes (headers: its head's) was on the wire.
 *
 * Its size: a body with a Content-Encoding is given decoded (HAR bodies
 * are; the head says body_decoded), so the bytes given are not the
 * wire's: its size is bodySize (HAR 1.2: the bytes on the wire), else,
 * for a response, content.size less content.compression, else (the HAR
 * gives neither) the bytes given. A body without one is given as it was
 * on the wire and is at least as long as given (bodySize counts a
 * browser's chunked framing too, which reel does not count).
 *
 * Whether it was cut: reel export said so (_reel.*_truncated), or its
 * bodySize is larger (compared only without a Content-Encoding or a
 * Transfer-Encoding: bodySize then counts the encoded bytes, or a
 * browser's the chunked framing, and the body is decoded), or the
 * response's content.size is (a decoded length, like the body; only when
 * part of the body is there: browsers leave the text out of some
 * entries), or it has a Content-Encoding, none of it is given and its
 * size on the wire is not 0. The flow then says the body was truncated, as a capture's
 * body_limit cut does, and a replay refuses to send it as if it were
 * whole. */
static void body_facts(reel_rflow_t *f, const entry_t *e, int response, json_t *headers,
                       uint64_t given) {
    int64_t bs = e->body_size[response];
    uint64_t wire = bs > 0 ? (uint64_t)bs : 0;
    int encoded = coded(headers, "content-encoding");
    int same = !encoded && !coded(headers, "transfer-encoding");
    int cut = e->cut[response] || (same && wire > given);
    if (response && e->content_size > 0 && given > 0 && (uint64_t)e->content_size > given) {
        cut = 1;
        if ((uint64_t)e->content_size > wire)
            wire = (uint64_t)e->content_size;
    }
    if (encoded) {
        int64_t w = bs;
        if (w < 0 && response && e->content_size >= 0 && e->compression >= 0 &&
            e->compression <= e->content_size && !cut)
            w = e->content_size - e->compression;
        if (w >= 0)
            reel_recorder_body_wire_size(f, response, (uint64_t)w);
        /* none of it given (browsers leave the text out of some entries),
         * some of it on the wire: what is stored is cut, as for a body
         * without a Content-Encoding */
        if (w > 0 && given == 0)
            cut = 1;
    }
    if (cut)
        reel_recorder_body_truncated(f, response, wire);
}

static int64_t known(int64_t v) {
    return v > 0 ? v : 0;
}

/* The trailer fields reel export wrote for the request's (response 0)
 * or the response's body, after its last chunk. */
static void record_trailers(reel_rflow_t *f, const entry_t *e, int response) {
    if (json_array_size(e->trailers[response]) == 0)
        return;
    size_t n;
    reel_buf_t owned;
    reel_header_t *hs = to_headers(e->trailers[response], 0, &n, &owned);
    reel_recorder_trailers(f, response, hs, n, e->trailers_held[response]);
    free(hs);
    reel_buf_free(&owned);
}

/* The 1xx answers reel export wrote, before the final response. */
static void record_interim(reel_rflow_t *f, const entry_t *e) {
    size_t i;
    json_t *x;
    json_array_foreach(e->interim, i, x) {
        char ver[HAR_VERSION_MAX];
        json_t *jv = json_object_get(x, "httpVersion");
        json_t *jt = json_object_get(x, "time");
        int64_t us = 0;
        if (norm_version(json_string_value(jv), json_string_length(jv), ver) != 0 || !ver[0])
            memcpy(ver, e->resp_version, sizeof ver); /* validated: cannot happen */
        parse_iso8601(json_string_value(jt), json_string_length(jt), &us);
        size_t n;
        reel_buf_t owned;
        reel_header_t *hs = to_headers(json_object_get(x, "headers"), 0, &n, &owned);
        char *reason = NULL;
        status_text(NULL, x, "", &reason); /* validated */
        reel_response_head_t ih = {
            .status = (uint32_t)json_integer_value(json_object_get(x, "status")),
            .reason = reason ? reason : json_string_value(json_object_get(x, "statusText")),
            .http_version = ver,
            .headers = hs,
            .n_headers = n,
            .time_us = us};
        reel_recorder_interim(f, &ih);
        free(hs);
        free(reason);
        reel_buf_free(&owned);
    }
}

/* The messages of the entry (check_message), after the 101 (the 200 of
 * an HTTP/2 WebSocket) as they came, each at its own time: WebSocket
 * messages whole, as reel's codec gives them to the recorder (a close
 * with its code), or the TCP messages of another upgrade (opcode 0), one
 * a read. */
static void record_messages(reel_rflow_t *f, const entry_t *e) {
    for (size_t i = 0; i < e->nmsgs; i++) {
        const hmsg_t *m = &e->msgs[i];
        uint8_t *bytes = NULL;
        if (m->base64) { /* validated: decodes to m->bytes */
            size_t bad;
            bytes = reel_malloc(m->len / 4 * 3 + 1);
            b64_decode(m->data, m->len, 1, bytes, &bad);
        } else if (m->latin1) {
            bytes = reel_malloc(m->len + 1);
            latin1_bytes(m->data, m->len, bytes);
        }
        reel_message_t rm = {.from_client = m->from_client,
                             .opcode = m->opcode,
                             .data = bytes ? (const void *)bytes : m->data,
                             .len = (size_t)m->bytes,
                             .length = m->length,
                             .truncated = m->truncated,
                             .compressed = m->compressed,
                             .close_code = m->close_code,
                             .time_us = m->time_us};
        reel_recorder_message(f, &rm);
        free(bytes);
    }
}

/* Whether every record of f fit in the spool: a head (a URL, a header)
 * too large for one record cannot be stored, and the entry is refused
 * (the import is undone) rather than imported without it. */
static reel_rc stored_whole(reel_rflow_t *f, const vctx_t *v) {
    const char *what;
    size_t n = reel_rflow_too_large(f, &what);
    if (n == 0)
        return REEL_OK;
    /* the heads come from request and response, the rest (1xx heads,
     * trailers) from _reel */
    const char *member = strcmp(what, "request head") == 0    ? "request"
                         : strcmp(what, "response head") == 0 ? "response"
                                                              : "_reel";
    return fail(v, member,
                "its %s would take %zu bytes as a record, more than a spool record may hold "
                "(%u bytes): reel cannot store it",
                what, n, REEL_SPOOL_RECORD_MAX);
}

/* Records entry e, and sets *id to the flow's id. Returns REEL_INVALID
 * (in v's error) for an entry that could not be stored whole. */
static reel_rc record(reel_recorder_t *rec, const entry_t *e, uint8_t *scratch,
                      reel_har_stats_t *stats, const vctx_t *v, uint64_t *idp) {
    reel_rc rc;
    char addr[HAR_ADDR_MAX + 16];
    reel_flow_info_t info = {.kind = REEL_FLOW_HTTP,
                             .source = "har-import",
                             .time_us = e->start_us,
                             .client_addr = e->client_addr,
                             .tls = e->has_client_tls,
                             .tls_resumed = e->client_tls_resumed,
                             .tls_sni = e->client_tls[0],
                             .tls_alpn = e->client_tls[1],
                             .tls_version = e->client_tls[2],
                             .tls_cipher = e->client_tls[3]};
    if (e->server_addr != NULL) {
        info.server_addr = e->server_addr; /* reel's own, with its port */
    } else if (e->server_ip != NULL) {
        int v6 = strchr(e->server_ip, ':') != NULL && e->server_ip[0] != '[';
        snprintf(addr, sizeof addr, "%s%s%s:%u", v6 ? "[" : "", e->server_ip, v6 ? "]" : "",
                 (unsigned)e->url.port);
        info.server_addr = addr;
    }
    reel_rflow_t *f = reel_recorder_flow_start(rec, &info);
    uint64_t id = reel_rflow_id(f);
    *idp = id;
    if (stats->first_id == 0)
        stats->first_id = id;
    stats->last_id = id;
    stats->entries++;

    const reel_timings_t *t = &e->timings;
    /* reel records connect as TCP alone, ssl beside it */
    reel_timings_t tm = *t;
    if (e->connect_has_ssl && tm.ssl_us >= 0 && tm.connect_us >= 0)
        tm.connect_us = tm.connect_us > tm.ssl_us ? tm.connect_us - tm.ssl_us : 0;
    int64_t req_end = 0, resp_start = 0, end;
    if (e->reel_times) { /* the flow's own, as reel recorded them */
        if (e->req_end_off_us >= 0)
            req_end = e->start_us + e->req_end_off_us;
        else if (!e->unfinished && e->has_timings)
            /* not said, and not said to be unfinished: no request end
             * would read as one that never came (export's
             * request_unfinished), so the phases give it */
            req_end = e->start_us + known(tm.blocked_us) + known(tm.dns_us) + known(tm.connect_us) +
                      known(tm.ssl_us) + known(tm.send_us);
        if (e->resp_start_off_us >= 0)
            resp_start = e->start_us + e->resp_start_off_us;
    } else if (e->has_timings) { /* the phases one after the other */
        req_end = e->start_us + known(tm.blocked_us) + known(tm.dns_us) + known(tm.connect_us) +
                  known(tm.ssl_us) + known(tm.send_us);
        if (t->wait_us >= 0)
            resp_start = req_end + t->wait_us;
    }
    if (e->reel_times && e->duration_us >= 0)
        end = e->start_us + e->duration_us;
    else if (e->total_us >= 0)
        end = e->start_us + e->total_us;
    else
        end = (req_end ? req_end : e->start_us) + known(t->wait_us) + known(t->receive_us);
    if (e->unfinished)
        req_end = 0; /* the request never ended, whatever its phases say */

    size_t n;
    reel_buf_t owned;
    reel_header_t *hs = to_headers(e->req_headers, strcmp(e->method, "CONNECT") == 0, &n, &owned);
    reel_request_head_t rh = {
        .method = e->method,
        .scheme = e->url.scheme,
        .host = e->url.host,
        .port = e->url.port,
        /* RFC 9112 3.2.4: an OPTIONS of the server
           itself (reel export writes its URL without
           a path) is for "*" */
        .target = strcmp(e->method, "OPTIONS") == 0 && e->url.no_path ? "*" : e->url.target,
        .http_version = e->req_version,
        .headers = hs,
        .n_headers = n,
        /* postData, as content, is the body without its
           Content-Encoding (browsers and reel export
           write it so) */
        .body_decoded = coded(e->req_headers, "content-encoding"),
        .absolute_form = e->absolute_form,
        .reverse = e->reverse,
        .mapped_to = e->mapped_to,
        .original_dst = e->original_dst,
        .edits = e->modified[0],
        .n_edits = e->nmodified[0],
        .time_us = e->start_us};
    reel_recorder_request_head(f, &rh);
    free(hs);
    reel_buf_free(&owned);
    uint64_t given = feed(f, reel_recorder_request_body, &e->req_body, scratch);
    if (e->has_body_edit[0]) /* (after the body, before the response, as the proxy records it) */
        reel_recorder_body_edit(f, &e->body_edit[0]);
    body_facts(f, e, 0, e->req_headers, given);
    record_trailers(f, e, 0);
    if (e->has_conn) {
        reel_server_conn_t sc = {.conn_id = e->conn_id,
                                 .address = e->server_addr,
                                 .alpn = e->alpn,
                                 .tls_version = e->tls_version,
                                 .unverified = e->unverified,
                                 .verify_error = e->verify_error,
                                 .peer_cert = e->verify_error ? e->peer_cert : NULL,
                                 .via = e->via,
                                 .via_forward = e->via_forward,
                                 .dns_override = e->dns_override,
                                 .client_cert_asked = e->client_cert_asked,
                                 .client_cert = e->client_cert_asked ? e->client_cert : NULL,
                                 .resumed = e->tls_resumed};
        reel_recorder_server_conn(f, &sc);
    }
    reel_flow_end_t fe = {.error = e->error,
                          .timings = e->has_timings ? &tm : NULL,
                          .time_us = end,
                          .request_end_us = req_end,
                          .response_start_us = resp_start,
                          .response_excess = e->response_excess};
    /* Chromium's word that the WebSocket failed ends the flow with an
     * error, as reel's codec would */
    char werr[512];
    const char *why = e->error_text ? e->error_text : e->ws_error;
    if (e->error == NULL && e->ws_error != NULL) {
        if (e->ws_error[0])
            snprintf(werr, sizeof werr, "the browser reported a WebSocket error: %s", e->ws_error);
        else
            snprintf(werr, sizeof werr,
                     "the browser reported a WebSocket error (without a reason)");
        fe.error = werr;
    }

    if (e->status == 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "no response (HAR status 0)%s%s", why ? ": " : "",
                 why ? why : "");
        record_messages(f, e);
        rc = stored_whole(f, v);
        if (e->error) /* reel's own, as it was recorded */
            reel_recorder_flow_finish(f, &fe);
        else
            reel_recorder_flow_error(f, msg, end);
        return rc;
    }
    record_interim(f, e);
    hs = to_headers(e->resp_headers, 0, &n, &owned);
    reel_response_head_t sh = {.status = e->status,
                               .reason = e->reason_bytes ? e->reason_bytes : e->reason,
                               .http_version = e->resp_version,
                               .headers = hs,
                               .n_headers = n,
                               .body_decoded = 1,
                               .generated = e->generated,
                               .local_file = e->local_file,
                               .blocked_by = e->blocked_by,
                               .edits = e->modified[1],
                               .n_edits = e->nmodified[1],
                               .time_us = resp_start ? resp_start : end};
    reel_recorder_response_head(f, &sh);
    free(hs);
    reel_buf_free(&owned);
    given = feed(f, reel_recorder_response_body, &e->resp_body, scratch);
    if (e->has_body_edit[1]) /* (after the body, as the proxy records it) */
        reel_recorder_body_edit(f, &e->body_edit[1]);
    body_facts(f, e, 1, e->resp_headers, given);
    record_trailers(f, e, 1);
    record_messages(f, e);
    rc = stored_whole(f, v);
    reel_recorder_flow_finish(f, &fe); /* FlowError when _reel has an error */
    return rc;
}

reel_rc reel_har_record(reel_recorder_t *rec, reel_har_t *h, reel_har_stats_t *stats,
                        reel_err_t *err) {
    reel_har_stats_t local;
    reel_rc rc = REEL_OK;
    json_t *entry;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    uint8_t *scratch = reel_malloc(B64_CHUNK_OUT);
    vctx_t v = {.path = h->path, .err = err};
    free(h->ids);
    h->ids = reel_calloc(json_array_size(h->entries) + 1, sizeof *h->ids);
    json_array_foreach(h->entries, v.idx, entry) {
        if (h->stop && *h->stop) {
            rc = reel_err_set(err, REEL_INTERRUPTED, "interrupted after %zu of %zu entries", v.idx,
                              json_array_size(h->entries));
            goto out;
        }
        entry_t e;
        if (entry_parse(&v, entry, &e) != REEL_OK) { /* cannot happen: validated on load */
            rc = REEL_INVALID;
            goto out;
        }
        if (e.url.skip)
            stats->skipped++;
        else
            rc = record(rec, &e, scratch, stats, &v, &h->ids[v.idx]);
        entry_free(&e);
        if (rc != REEL_OK)
            goto out;
        if (h->progress)
            h->progress(h->progress_ctx, v.idx + 1, json_array_size(h->entries));
    }
    rc = reel_recorder_flush(rec, err);
out:
    free(scratch);
    return rc;
}

/* Runs st (bound) once; REEL_DB with the message on failure. */
reel_rc reel_har_apply_user_data(sqlite3 *db, const reel_har_t *h, reel_har_stats_t *stats,
                                 reel_err_t *err) {
    int64_t now = reel_now_us();
    int any = 0;
    size_t i;
    json_t *entry;
    json_array_foreach(h->entries, i, entry) {
        json_t *rx = json_object_get(entry, "_reel");
        if (h->ids && h->ids[i] &&
            (json_array_size(json_object_get(rx, "annotations")) ||
             json_array_size(json_object_get(rx, "tags")) ||
             json_is_true(json_object_get(rx, "marked")))) {
            any = 1;
            break;
        }
    }
    if (!any)
        return REEL_OK; /* nothing to add */
    reel_userdata_t u;
    reel_rc rc = reel_userdata_begin(&u, db, err);
    json_array_foreach(h->entries, i, entry) {
        json_t *rx = json_object_get(entry, "_reel");
        if (rc != REEL_OK)
            break;
        if (h->ids[i] == 0 || !json_is_object(rx))
            continue;
        uint64_t id = h->ids[i];
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(rx, "annotations"), k, x) {
            json_t *text = json_object_get(x, "text"), *time = json_object_get(x, "time");
            int64_t us = now;
            parse_iso8601(json_string_value(time), json_string_length(time), &us);
            /* the bytes reel export wrote beside a text that is not UTF-8 */
            char *bytes;
            size_t nb;
            exact_bytes(NULL, x, "text", text, "", has_nul, &bytes, &nb);
            if (rc == REEL_OK)
                rc = reel_userdata_note(&u, id, us, bytes ? bytes : json_string_value(text),
                                        bytes ? nb : json_string_length(text), err);
            free(bytes);
        }
        json_array_foreach(json_object_get(rx, "tags"), k, x) {
            if (rc == REEL_OK)
                rc = reel_userdata_tag(&u, id, json_string_value(x), err);
        }
        if (rc == REEL_OK && json_is_true(json_object_get(rx, "marked")))
            rc = reel_userdata_mark(&u, id, now, err);
    }
    rc = reel_userdata_end(&u, rc, err);
    if (stats && rc == REEL_OK) {
        stats->annotated += u.annotated;
        stats->tagged += u.tagged;
        stats->marked += u.marked;
    }
    return rc;
}

reel_rc reel_har_import(reel_recorder_t *rec, const char *path, reel_har_stats_t *stats,
                        reel_err_t *err) {
    reel_har_t *h = NULL;
    if (stats)
        memset(stats, 0, sizeof *stats);
    reel_rc rc = reel_har_load(path, &h, err);
    if (rc == REEL_OK)
        rc = reel_har_record(rec, h, stats, err);
    reel_har_free(h);
    return rc;
}
