/* HTTP/1.x protocol layer on llhttp; see http1.h for the contract.
 *
 * How llhttp is driven: its callbacks only record. Span callbacks append the
 * bytes of the request line, status line and fields to a per-message buffer
 * (a span may arrive in pieces across feeds) and remember where body bytes
 * lie in the caller's buffer; *_complete callbacks close an element. Every
 * point where an event is ready (head complete, chunk data complete, message
 * complete) returns HPE_PAUSED, so llhttp_execute() stops right there and
 * error_pos tells how much it consumed; the next feed resumes it. Some pauses
 * are internal and produce no event: the last-chunk line (the trailer
 * section starts, and its size is capped like a head), and the end of an
 * interim 1xx response.
 *
 * Size caps: while a head or trailer section is being parsed, llhttp is
 * never handed more bytes than the section may still grow by, so an
 * oversized head is refused after max_head_size bytes whatever the caller's
 * buffer size; the copies of its strings live in a capped reel_buf_t.
 *
 * What llhttp cannot be told through return values while also pausing
 * (on_headers_complete may return either "skip body"/"upgrade" or
 * HPE_PAUSED, not both) is set on the parser directly, exactly as llhttp's
 * own code for those return values does: F_SKIPBODY in flags, upgrade = 1. */
#include "core/http1.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXPECT_MAX 64
#define EXPECT_HEAD 1u
#define EXPECT_CONNECT 2u

/* Offsets of one field inside a section buffer; vo == SIZE_MAX: empty. */
typedef struct {
    size_t no, nl, vo, vl;
} field_ofs_t;

/* The strings of a head or trailer section. */
typedef struct {
    reel_buf_t buf;
    field_ofs_t *f;
    size_t n, cap;
    reel_h1_header_t *out;
    size_t out_cap;
} section_t;

typedef enum { ST_HTTP, ST_UPGRADED, ST_CLOSED, ST_FAILED } state_t;

struct reel_h1 {
    llhttp_t ll;
    llhttp_settings_t cbs;
    reel_h1_side side;
    reel_h1_limits_t lim;
    state_t st;

    /* strings of the current message */
    section_t head, trl;
    section_t *sec; /* where fields go now */
    bool elem_open;
    size_t elem_off;
    size_t method_off, method_len, target_off, target_len, reason_off, reason_len;
    bool have_method, have_target, have_reason;
    bool interim;
    bool in_head;  /* between a message's first byte and the end of its head */
    bool in_value; /* the open element is a field value */
    /* the version of a request line llhttp refused before reading it
     * (target_rest), if it was there */
    bool bad_version;
    int bad_major, bad_minor;

    /* raw scan of the head / trailer section, beside llhttp: obs-fold
     * (which llhttp 8 accepts) and the protocol name of the start line */
    bool sc_started, sc_done, sc_colon;
    /* whitespace came in a field name: the section is refused, the reason
     * waits for what follows it (1: only whitespace since, 2: more name) */
    int sc_bad;
    int sc_prev;
    size_t sc_line_len;
    char sc_tail[9];
    bool closing; /* a message without keep-alive ended */

    /* size accounting of the head / trailer section being parsed */
    bool in_section;
    size_t section_bytes;

    /* a request method llhttp does not know (any token is one, RFC 9110
     * 9.1): llhttp is fed GET in its place, and the method stored is this */
    char ext_method[REEL_H1_EXT_METHOD_MAX + 1]; /* one more: a longer one is seen as such */
    size_t ext_len;
    bool at_start; /* no byte of the request's line given to llhttp yet */
    bool cr_seen;  /* ... and a CR of an empty line before it was */

    /* chunk framing, checked beside llhttp: in its loose mode llhttp takes
     * any byte after a chunk-size CR for the LF and any two bytes after
     * chunk data for the CRLF, so a proxy forwarding the raw bytes would
     * disagree with a strict next hop about where the body ends. A
     * chunk-size line is read by chunk_line_scan, not by llhttp: llhttp 8.1
     * refuses legal extensions (more than one, BWS around ';' and '='), so
     * it is handed the size alone, as "<hex>\r\n", once the line is whole */
    bool ck_line;     /* inside a chunk-size line */
    int ck_state;     /* where in that line (CK_*) */
    uint64_t ck_size; /* its size so far */
    size_t ck_len;    /* its bytes so far */
    char ck_norm[20]; /* what llhttp is given for it */
    unsigned ck_crlf; /* bytes of the CRLF after chunk data still to come */

    /* events waiting to be reported */
    reel_h1_event_t ev;
    bool have_ev;
    const uint8_t *body;
    size_t body_len;

    /* first error */
    int err_status;
    const char *err_reason;
    /* the error refused a head read whole whose framing is sound (see
     * reel_h1_resume_refused): llhttp is paused at its end, head_used
     * bytes into the buf of the call that failed */
    bool refused;
    size_t head_used;

    /* requests the coming responses answer (response parsers) */
    uint8_t expect[EXPECT_MAX];
    unsigned ex_first, ex_n;
};

static const char empty_input[1];

/* ---- small helpers ---- */

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(unsigned char c) {
    return c == ' ' || c == '\t';
}

static bool eq_ci(const char *a, size_t alen, const char *b) {
    size_t blen = strlen(b);
    return alen == blen && strncasecmp(a, b, blen) == 0;
}

/* Trims OWS around s[0..*len); returns the new start. */
static const char *trim(const char *s, size_t *len) {
    size_t n = *len;
    while (n > 0 && is_ows((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_ows((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

/* Iterates the elements of a comma-separated list: returns false at the
 * end; empty elements are skipped. */
static bool list_next(const char **cur, const char *end, const char **el, size_t *el_len) {
    while (*cur < end) {
        const char *s = *cur;
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        *cur = comma ? comma + 1 : end;
        size_t n = (size_t)(stop - s);
        s = trim(s, &n);
        if (n > 0) {
            *el = s;
            *el_len = n;
            return true;
        }
    }
    return false;
}

static void section_init(section_t *s, size_t max) {
    memset(s, 0, sizeof(*s));
    reel_buf_init(&s->buf, max);
}

static void section_free(section_t *s) {
    reel_buf_free(&s->buf);
    free(s->f);
    free(s->out);
}

static void section_reset(section_t *s) {
    reel_buf_reset(&s->buf);
    s->n = 0;
}

/* Pointers into a finished section (nothing is appended to it afterwards,
 * so they stay valid). */
static const reel_h1_header_t *section_fields(section_t *s) {
    if (s->n > s->out_cap) {
        s->out = reel_realloc(s->out, s->n * sizeof(*s->out));
        s->out_cap = s->n;
    }
    for (size_t i = 0; i < s->n; i++) {
        const field_ofs_t *f = &s->f[i];
        s->out[i].name = (const char *)s->buf.data + f->no;
        s->out[i].name_len = f->nl;
        s->out[i].value = f->vo == SIZE_MAX ? "" : (const char *)s->buf.data + f->vo;
        s->out[i].value_len = f->vo == SIZE_MAX ? 0 : f->vl;
    }
    return s->out;
}

/* Records the first error. req_status is the answer to a bad request; any
 * bad response is a 502. Returns -1 for llhttp callbacks. */
static int fail(reel_h1_t *p, int req_status, const char *reason) {
    if (!p->err_reason) {
        p->err_status = p->side == REEL_H1_REQUEST ? req_status : 502;
        p->err_reason = reason;
    }
    return -1;
}

static int too_large(reel_h1_t *p) {
    return fail(p, 431,
                p->sec == &p->trl ? "trailer section too large" : "header section too large");
}

/* ---- the raw section scan ---- */

/* A head (trailer: no start line) or trailer section begins. */
static void section_start(reel_h1_t *p, bool trailer) {
    p->in_section = true;
    p->section_bytes = 0;
    p->ext_len = 0;
    p->at_start = !trailer;
    p->cr_seen = false;
    p->sc_started = trailer;
    p->sc_done = false;
    p->sc_prev = '\n'; /* a section starts at a line start */
    p->sc_line_len = 0;
    p->sc_colon = false;
    p->sc_bad = 0;
}

static bool start_line_ok(const reel_h1_t *p) {
    const char *t = p->sc_tail;
    if (p->side == REEL_H1_RESPONSE)
        return p->sc_line_len >= 5 && memcmp(t, "HTTP/", 5) == 0;
    /* the last 9 bytes: " HTTP/d.d" */
    return p->sc_line_len >= 9 && memcmp(t, " HTTP/", 6) == 0 && t[6] >= '0' && t[6] <= '9' &&
           t[7] == '.' && t[8] >= '0' && t[8] <= '9';
}

/* Scans b[0..n) of a section; returns how many bytes are fine (n, or the
 * position of a problem, with *why set). The runs between the bytes that
 * matter (CR, LF, and in a field name ':' and whitespace) are skipped in a
 * tight loop: the per-byte checks below were a tenth of the loop thread's
 * instructions on small requests, with four heads parsed per h2 stream.
 *
 * Whitespace in a field name dooms the section, but what it is depends on
 * what follows (RFC 9112 5.1, 5): whitespace then ':' is whitespace before
 * the colon, more name then ':' an invalid character in the name, and a
 * line end before any ':' a line that is not a field. The scan reads on to
 * decide, across calls if need be (so that the reason does not depend on
 * how the input was cut); it returns the position of the whitespace, and
 * until it decides the caller takes the bytes after it as read
 * (p->sc_bad). */
static size_t section_scan(reel_h1_t *p, const char *b, size_t n, const char **why) {
    size_t first = 0; /* where the doomed part of the name began in b */
    for (size_t i = 0; i < n && !p->sc_done; i++) {
        if (p->sc_bad) {
            unsigned char c = (unsigned char)b[i];
            if (c == ':') {
                *why =
                    p->sc_bad == 1 ? "whitespace before colon" : "invalid character in header name";
                return first;
            }
            if (c == '\r' || c == '\n') {
                *why = "header line without a colon";
                return first;
            }
            if (!is_ows(c))
                p->sc_bad = 2;
            continue;
        }
        if (p->sc_prev != '\r') {
            size_t j = i;
            if (!p->sc_started || p->sc_colon) {
                while (j < n && b[j] != '\r' && b[j] != '\n')
                    j++;
            } else {
                while (j < n && b[j] != '\r' && b[j] != '\n' && b[j] != ':' &&
                       !is_ows((unsigned char)b[j]))
                    j++;
            }
            if (j > i) {
                size_t k = j - i;
                if (!p->sc_started) {
                    /* requests keep the last 9 bytes, responses the first 5 */
                    const size_t t = sizeof(p->sc_tail);
                    if (p->side == REEL_H1_REQUEST) {
                        if (k >= t) {
                            memcpy(p->sc_tail, b + j - t, t);
                        } else {
                            memmove(p->sc_tail, p->sc_tail + k, t - k);
                            memcpy(p->sc_tail + t - k, b + i, k);
                        }
                    } else if (p->sc_line_len < 5) {
                        size_t m = 5 - p->sc_line_len < k ? 5 - p->sc_line_len : k;
                        memcpy(p->sc_tail + p->sc_line_len, b + i, m);
                    }
                }
                p->sc_line_len += k;
                p->sc_prev = (unsigned char)b[j - 1];
                i = j;
                if (i == n)
                    break;
            }
        }
        unsigned char c = (unsigned char)b[i];
        if (c == '\n') {
            if (p->sc_prev != '\r') {
                *why = "bare LF";
                return i;
            }
            if (p->sc_line_len == 0 && p->sc_started) {
                p->sc_done = true;
            } else if (p->sc_line_len > 0 && !p->sc_started) {
                p->sc_started = true;
                if (!start_line_ok(p)) {
                    *why = "invalid HTTP version";
                    return i;
                }
            }
            p->sc_line_len = 0;
            p->sc_colon = false;
        } else if (p->sc_prev == '\r') {
            /* RFC 9112 2.2: a bare CR is rejected (llhttp would take it
             * for a line end) */
            *why = "bare CR";
            return i;
        } else if (c == '\r') {
            if (p->sc_started && !p->sc_colon && p->sc_line_len > 0) {
                *why = "header line without a colon";
                return i;
            }
        } else {
            if (p->sc_prev == '\n' && p->sc_started && is_ows(c)) {
                *why = "obs-fold in header";
                return i;
            }
            /* decided by this scan, not from llhttp's error position, so
             * that the reason does not depend on how the input was cut */
            if (p->sc_started && !p->sc_colon && is_ows(c)) {
                p->sc_bad = 1;
                first = i;
                continue;
            }
            if (c == ':')
                p->sc_colon = true;
            if (!p->sc_started) {
                /* requests keep the last 9 bytes, responses the first 5 */
                if (p->side == REEL_H1_REQUEST) {
                    memmove(p->sc_tail, p->sc_tail + 1, sizeof(p->sc_tail) - 1);
                    p->sc_tail[sizeof(p->sc_tail) - 1] = (char)c;
                } else if (p->sc_line_len < 5) {
                    p->sc_tail[p->sc_line_len] = (char)c;
                }
            }
            p->sc_line_len++;
        }
        p->sc_prev = c;
    }
    return p->sc_bad ? first : n;
}

/* Checks the CRLF after chunk data, where llhttp is lenient. Returns how
 * many bytes llhttp may parse now: never past that CRLF, so that the check
 * runs again for the next chunk (chunk data itself ends in a pause, see
 * cb_body), or the position of a problem, with *why set. */
static size_t chunk_crlf_scan(reel_h1_t *p, const char *b, size_t n, const char **why) {
    size_t i = 0;
    for (; i < n && p->ck_crlf; i++, p->ck_crlf--) {
        if (b[i] != (p->ck_crlf == 2 ? '\r' : '\n')) {
            *why = "missing CRLF after chunk data";
            return i;
        }
    }
    return i;
}

/* Where chunk_line_scan is in a chunk-size line (RFC 9112 7.1, 7.1.1):
 *   chunk-size [ chunk-ext ] CRLF
 *   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val = token / quoted-string */
enum {
    CK_SIZE,      /* in the size; no digit yet when ck_len is 0 */
    CK_EXT_END,   /* after the size or an extension: BWS ";", or CR */
    CK_BWS,       /* whitespace after the size or an extension: ";" must come */
    CK_NAME0,     /* after ";": BWS, then a name */
    CK_NAME,      /* in a name */
    CK_NAME_BWS,  /* whitespace after a name: "=" or ";" must come */
    CK_VAL0,      /* after "=": BWS, then a token or a quoted string */
    CK_TOKEN,     /* in a token value */
    CK_QUOTED,    /* in a quoted-string value */
    CK_QUOTED_BS, /* after a backslash in it */
    CK_CR,        /* after the CR that ends the line */
};

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads b[0..n) of a chunk-size line. The caller consumes what it returns;
 * *eol says the line ended there (its last byte is the LF), and then
 * ck_norm holds the line as llhttp is to see it. On a problem *why is set.
 * Extensions are checked and ignored (RFC 9112 7.1.1: a recipient ignores
 * unknown ones); what is forwarded is the raw line. */
static size_t chunk_line_scan(reel_h1_t *p, const char *b, size_t n, bool *eol, const char **why) {
    *eol = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (++p->ck_len > p->lim.max_head_size) {
            *why = "chunk-size line too long";
            return i;
        }
        if (c == '\n' && p->ck_state != CK_CR) {
            *why = "bare LF";
            return i;
        }
        switch (p->ck_state) {
        case CK_SIZE:
            if (hex_value(c) >= 0) {
                if (p->ck_size > (uint64_t)INT64_MAX >> 4) {
                    /* as Content-Length: what a next hop reading it as a
                     * signed 64-bit number could not agree on */
                    *why = "chunk size too large";
                    return i;
                }
                if (p->ck_len > 16) {
                    /* leading zeros: a next hop that reads at most 16
                     * digits (a 64-bit number's) would take another size */
                    *why = "chunk size longer than 16 hex digits";
                    return i;
                }
                p->ck_size = p->ck_size << 4 | (uint64_t)hex_value(c);
                continue;
            }
            if (p->ck_len == 1 || (c != ';' && c != '\r' && !is_ows(c))) {
                *why = "invalid chunk size";
                return i;
            }
            p->ck_state = CK_EXT_END; /* c ends the size: see it there */
            /* fall through */
        case CK_EXT_END:
        case CK_BWS:
            if (c == ';')
                p->ck_state = CK_NAME0;
            else if (is_ows(c))
                p->ck_state = CK_BWS;
            else if (c == '\r' && p->ck_state == CK_EXT_END)
                p->ck_state = CK_CR;
            else
                goto bad_ext;
            break;
        case CK_NAME0:
            if (is_tchar(c))
                p->ck_state = CK_NAME;
            else if (!is_ows(c))
                goto bad_ext;
            break;
        case CK_NAME:
        case CK_NAME_BWS:
            if (c == '=')
                p->ck_state = CK_VAL0;
            else if (c == ';')
                p->ck_state = CK_NAME0;
            else if (is_ows(c))
                p->ck_state = CK_NAME_BWS;
            else if (c == '\r' && p->ck_state == CK_NAME)
                p->ck_state = CK_CR;
            else if (!is_tchar(c) || p->ck_state != CK_NAME)
                goto bad_ext;
            break;
        case CK_VAL0:
            if (c == '"')
                p->ck_state = CK_QUOTED;
            else if (is_tchar(c))
                p->ck_state = CK_TOKEN;
            else if (!is_ows(c))
                goto bad_ext;
            break;
        case CK_TOKEN:
            if (c == ';')
                p->ck_state = CK_NAME0;
            else if (is_ows(c))
                p->ck_state = CK_BWS;
            else if (c == '\r')
                p->ck_state = CK_CR;
            else if (!is_tchar(c))
                goto bad_ext;
            break;
        case CK_QUOTED: /* qdtext or a backslash */
            if (c == '"')
                p->ck_state = CK_EXT_END;
            else if (c == '\\')
                p->ck_state = CK_QUOTED_BS;
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                goto bad_ext;
            break;
        case CK_QUOTED_BS: /* quoted-pair: HTAB, SP, VCHAR, obs-text */
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                goto bad_ext;
            p->ck_state = CK_QUOTED;
            break;
        case CK_CR:
            if (c != '\n') {
                *why = "bare CR";
                return i;
            }
            p->ck_line = false;
            snprintf(p->ck_norm, sizeof p->ck_norm, "%llx\r\n", (unsigned long long)p->ck_size);
            *eol = true;
            return i + 1;
        }
        continue;
    bad_ext:
        *why = "invalid chunk extension";
        return i;
    }
    return n;
}

/* A chunk-size line starts. */
static void chunk_line_start(reel_h1_t *p) {
    p->ck_line = true;
    p->ck_state = CK_SIZE;
    p->ck_size = 0;
    p->ck_len = 0;
}

/* ---- llhttp callbacks: record only ---- */

static int span_append(reel_h1_t *p, section_t *s, const char *at, size_t n) {
    if (!p->elem_open) {
        p->elem_open = true;
        p->elem_off = s->buf.len;
    }
    if (reel_buf_append(&s->buf, at, n) != REEL_OK)
        return too_large(p);
    return 0;
}

/* Closes the element being collected in s: NUL-terminates it and returns its
 * offset and length (an element that got no span is empty). */
static int elem_close(reel_h1_t *p, section_t *s, size_t *off, size_t *len) {
    if (!p->elem_open)
        p->elem_off = s->buf.len;
    *off = p->elem_off;
    *len = s->buf.len - p->elem_off;
    p->elem_open = false;
    if (reel_buf_append(&s->buf, "", 1) != REEL_OK)
        return too_large(p);
    return 0;
}

static int cb_message_begin(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    p->at_start = false;
    section_reset(&p->head);
    section_reset(&p->trl);
    p->sec = &p->head;
    p->elem_open = false;
    p->have_method = p->have_target = p->have_reason = false;
    p->interim = false;
    p->in_head = true;
    p->in_value = false;
    p->bad_version = false;
    p->ck_line = false;
    p->ck_crlf = 0;
    return 0;
}

static int cb_method(llhttp_t *ll, const char *at, size_t n) {
    reel_h1_t *p = ll->data;
    if (p->ext_len) /* the stand-in's bytes: the method is the real one */
        return p->elem_open ? 0 : span_append(p, &p->head, p->ext_method, p->ext_len);
    return span_append(p, &p->head, at, n);
}

static int cb_method_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    p->have_method = true;
    return elem_close(p, &p->head, &p->method_off, &p->method_len);
}

static int cb_url(llhttp_t *ll, const char *at, size_t n) {
    reel_h1_t *p = ll->data;
    return span_append(p, &p->head, at, n);
}

static int cb_url_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    p->have_target = true;
    return elem_close(p, &p->head, &p->target_off, &p->target_len);
}

static int cb_status(llhttp_t *ll, const char *at, size_t n) {
    reel_h1_t *p = ll->data;
    /* RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ). A
     * control byte made the head impossible to write again, and its body
     * reached the client without it (a response split in two). */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)at[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, 502, "invalid reason phrase: a control byte in it");
    }
    return span_append(p, &p->head, at, n);
}

static int cb_status_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    p->have_reason = true;
    return elem_close(p, &p->head, &p->reason_off, &p->reason_len);
}

static int cb_header_field(llhttp_t *ll, const char *at, size_t n) {
    reel_h1_t *p = ll->data;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)at[i];
        if (is_ows(c))
            return fail(p, 400, "whitespace before colon");
        if (!is_tchar(c))
            return fail(p, 400, "invalid character in header name");
    }
    return span_append(p, p->sec, at, n);
}

static int cb_header_field_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    section_t *s = p->sec;
    if (s->n >= p->lim.max_headers)
        return fail(p, 431, s == &p->trl ? "too many trailer fields" : "too many header fields");
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->f = reel_realloc(s->f, s->cap * sizeof(*s->f));
    }
    field_ofs_t *f = &s->f[s->n];
    if (elem_close(p, s, &f->no, &f->nl) != 0)
        return -1;
    if (f->nl == 0)
        return fail(p, 400, "empty header name");
    f->vo = SIZE_MAX;
    f->vl = 0;
    s->n++;
    return 0;
}

static int cb_header_value(llhttp_t *ll, const char *at, size_t n) {
    reel_h1_t *p = ll->data;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)at[i];
        if (c == '\r' || c == '\n')
            return fail(p, 400, "obs-fold in header");
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, 400, "invalid character in header value");
    }
    p->in_value = true;
    return span_append(p, p->sec, at, n);
}

static int cb_header_value_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    section_t *s = p->sec;
    if (s->n == 0)
        return fail(p, 400, "malformed header field");
    field_ofs_t *f = &s->f[s->n - 1];
    p->in_value = false;
    if (!p->elem_open) {
        /* empty value: nothing stored */
        return 0;
    }
    size_t off = p->elem_off;
    size_t end = s->buf.len;
    while (end > off && is_ows(s->buf.data[end - 1]))
        end--;
    while (off < end && is_ows(s->buf.data[off]))
        off++;
    s->buf.len = end; /* drop trailing whitespace */
    p->elem_open = false;
    f->vo = off;
    f->vl = end - off;
    if (reel_buf_append(&s->buf, "", 1) != REEL_OK)
        return too_large(p);
    return 0;
}

/* Request target form and its validity for the method. */
static int check_target(reel_h1_t *p, reel_h1_head_t *h) {
    const char *t = h->target;
    size_t n = h->target_len;
    bool connect = h->is_connect;
    bool options = h->method_len == 7 && memcmp(h->method, "OPTIONS", 7) == 0;

    if (n == 0)
        return fail(p, 400, "empty request target");
    /* RFC 9112 3.2: no whitespace or control byte in a target. llhttp lets
     * HTAB and FF through; forwarded, such a target could not be written
     * (reel_h1_write_request_head refuses it), and the head went missing
     * while its body went on to the origin as the next request. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] == 0x7f)
            return fail(p, 400, "invalid request target: whitespace or a control byte in it");
    if (t[0] == '/') {
        h->target_form = REEL_H1_TARGET_ORIGIN;
    } else if (n == 1 && t[0] == '*') {
        h->target_form = REEL_H1_TARGET_ASTERISK;
    } else {
        size_t i = 0;
        bool scheme = (t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z');
        while (scheme && i < n && t[i] != ':') {
            unsigned char c = (unsigned char)t[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '-' || c == '.'))
                scheme = false;
            i++;
        }
        if (scheme && i + 3 <= n && memcmp(t + i, "://", 3) == 0 && i + 3 < n)
            h->target_form = REEL_H1_TARGET_ABSOLUTE;
        else
            h->target_form = REEL_H1_TARGET_AUTHORITY;
    }
    if (connect && h->target_form != REEL_H1_TARGET_AUTHORITY)
        return fail(p, 400, "CONNECT target not in authority-form");
    if (!connect && h->target_form == REEL_H1_TARGET_AUTHORITY)
        return fail(p, 400, "authority-form target without CONNECT");
    if (!options && h->target_form == REEL_H1_TARGET_ASTERISK)
        return fail(p, 400, "asterisk-form target without OPTIONS");
    if (h->target_form == REEL_H1_TARGET_AUTHORITY) {
        /* host ":" port, host possibly an [IPv6] literal */
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++) {
            if (t[i] == ':')
                colon = t + i;
            if (strchr("/?#@ ", t[i]))
                return fail(p, 400, "invalid CONNECT target");
        }
        size_t port_len = colon ? n - (size_t)(colon + 1 - t) : 0;
        if (!colon || colon == t || port_len == 0 || port_len > 5)
            return fail(p, 400, "invalid CONNECT target");
        for (const char *c = colon + 1; c < t + n; c++)
            if (*c < '0' || *c > '9')
                return fail(p, 400, "invalid CONNECT target");
    }
    return 0;
}

/* Transfer-Encoding of the head: the codings, in order, across all fields. */
typedef struct {
    size_t fields, codings, chunked;
    bool last_chunked;
    bool empty; /* a field or list element with no coding in it */
} te_info_t;

static void scan_te(const reel_h1_head_t *h, te_info_t *te) {
    memset(te, 0, sizeof(*te));
    for (size_t i = 0; i < h->nheaders; i++) {
        const reel_h1_header_t *f = &h->headers[i];
        if (!eq_ci(f->name, f->name_len, "transfer-encoding"))
            continue;
        te->fields++;
        const char *cur = f->value, *el;
        size_t el_len, n = 0, commas = 0;
        while (list_next(&cur, f->value + f->value_len, &el, &el_len)) {
            bool ch = eq_ci(el, el_len, "chunked");
            te->codings++;
            te->chunked += ch;
            te->last_chunked = ch;
            n++;
        }
        for (size_t k = 0; k < f->value_len; k++)
            commas += f->value[k] == ',';
        if (n != commas + 1)
            te->empty = true;
    }
}

static int cb_headers_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    bool req = p->side == REEL_H1_REQUEST;
    reel_h1_head_t *h = &p->ev.head;
    const char *base = (const char *)p->head.buf.data;

    memset(&p->ev, 0, sizeof(p->ev));
    p->ev.type = REEL_H1_EV_HEAD;
    h->version_major = ll->http_major;
    h->version_minor = ll->http_minor;
    h->headers = section_fields(&p->head);
    h->nheaders = p->head.n;
    h->content_length = -1;
    h->method = h->target = h->reason = "";

    if (ll->http_major != 1)
        return fail(p, 505, "unsupported HTTP version");

    if (req) {
        if (!p->have_method || !p->have_target)
            return fail(p, 400, "malformed request line");
        h->method = base + p->method_off;
        h->method_len = p->method_len;
        h->target = base + p->target_off;
        h->target_len = p->target_len;
        h->is_connect = ll->method == HTTP_CONNECT;
        h->is_head = ll->method == HTTP_HEAD;
        if (check_target(p, h) != 0)
            return -1;
    } else {
        unsigned ex = p->ex_n ? p->expect[p->ex_first] : 0;
        h->status = ll->status_code;
        if (p->have_reason) {
            h->reason = base + p->reason_off;
            h->reason_len = p->reason_len;
        }
        h->is_head = (ex & EXPECT_HEAD) != 0;
        h->is_connect = (ex & EXPECT_CONNECT) != 0;
        if (h->status < 100 || h->status > 999)
            return fail(p, 502, "invalid status code");
    }

    /* framing fields */
    size_t cl = 0, hosts = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        const reel_h1_header_t *f = &h->headers[i];
        if (eq_ci(f->name, f->name_len, "content-length"))
            cl++;
        else if (eq_ci(f->name, f->name_len, "host"))
            hosts++;
        else if (req && eq_ci(f->name, f->name_len, "expect") &&
                 eq_ci(f->value, f->value_len, "100-continue"))
            h->expect_continue = true;
    }
    te_info_t te;
    scan_te(h, &te);
    if (cl > 1)
        return fail(p, 400, "duplicate Content-Length");
    if (cl && te.fields)
        return fail(p, 400, "both Transfer-Encoding and Content-Length");
    if (te.fields) {
        if (ll->http_minor == 0)
            return fail(p, 400, "Transfer-Encoding in HTTP/1.0 message");
        /* "chunked" then an empty field, ", chunked": RFC 9110 5.6.1 lets a
         * recipient skip empty elements, but a next hop that takes the last
         * field alone sees no coding, and another end of the body */
        if (te.empty)
            return fail(p, 400, "empty Transfer-Encoding field or element");
        if (req && !te.last_chunked)
            return fail(p, 400, "Transfer-Encoding not ending in chunked");
        if (te.last_chunked && (te.chunked > 1 || te.codings > 1))
            return fail(p, 501, "unsupported Transfer-Encoding");
    }
    if (cl) {
        if (ll->content_length > (uint64_t)INT64_MAX)
            return fail(p, 400, "Content-Length too large");
        h->content_length = (int64_t)ll->content_length;
    }
    /* A Host missing or given twice makes a request not to forward, but
     * its framing is checked by now: where it ends is known, so llhttp is
     * left sound (paused at the end of the head, as for a good one) and
     * the caller may read past it to the requests pipelined behind. */
    if (req && ((ll->http_minor >= 1 && hosts == 0) || hosts > 1)) {
        fail(p, 400, hosts ? "duplicate Host header" : "missing Host header");
        p->refused = true;
    }
    h->chunked = (ll->flags & F_CHUNKED) != 0;

    if (req) {
        h->upgrade = ll->upgrade != 0;
        if (h->is_connect)
            h->framing = REEL_H1_BODY_NONE;
    } else {
        int st = h->status;
        bool skip = false, upgrade = false;
        if (st == 101)
            upgrade = true;
        else if (st / 100 == 1)
            skip = p->interim = true;
        else if (h->is_connect && st / 100 == 2)
            upgrade = true;
        else if (h->is_head || st == 204 || st == 304)
            skip = true;
        if (upgrade) {
            ll->upgrade = 1;
            ll->flags |= F_SKIPBODY;
        } else {
            ll->upgrade = 0;
            if (skip)
                ll->flags |= F_SKIPBODY;
        }
        h->upgrade = upgrade;
        h->interim = p->interim;
    }
    h->keep_alive = llhttp_should_keep_alive(ll) != 0 && !(!req && h->upgrade);

    /* what follows the head */
    if ((ll->flags & F_SKIPBODY) || (req && h->is_connect)) {
        h->framing = REEL_H1_BODY_NONE;
    } else if (ll->flags & F_CHUNKED) {
        h->framing = REEL_H1_BODY_CHUNKED;
        chunk_line_start(p);
    } else if (te.fields || (!cl && llhttp_message_needs_eof(ll))) {
        h->framing = REEL_H1_BODY_EOF;
    } else if (cl) {
        h->framing = REEL_H1_BODY_LENGTH;
    } else {
        h->framing = REEL_H1_BODY_NONE;
    }

    p->have_ev = !p->refused;
    p->in_section = false;
    p->in_head = p->refused; /* reel_h1_partial_head gives a refused head */
    return HPE_PAUSED;
}

static int cb_body(llhttp_t *ll, const char *at, size_t n) {
    reel_h1_t *p = ll->data;
    if (n == 0)
        return 0;
    if (p->body_len && (const char *)p->body + p->body_len != at)
        return fail(p, 400, "internal: two body spans");
    if (!p->body_len)
        p->body = (const uint8_t *)at;
    p->body_len += n;
    if ((ll->flags & F_CHUNKED) && ll->content_length == 0) {
        /* the data of a chunk ends here: stop, so chunk_crlf_scan sees the CRLF
         * before llhttp skips it */
        p->ck_crlf = 2;
        return HPE_PAUSED;
    }
    return 0;
}

static int cb_chunk_header(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    if (ll->content_length != 0)
        return 0;
    /* last chunk: the trailer section starts; cap it like a head */
    p->sec = &p->trl;
    section_start(p, true);
    return HPE_PAUSED;
}

static int cb_chunk_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    chunk_line_start(p); /* the next one */
    return p->body_len ? HPE_PAUSED : 0;
}

static int cb_message_complete(llhttp_t *ll) {
    reel_h1_t *p = ll->data;
    section_start(p, false);
    if (ll->upgrade)
        p->at_start = false; /* what follows may be the tunnel's */
    p->sec = &p->head;
    if (p->interim)
        return HPE_PAUSED; /* internal: the final response follows */
    memset(&p->ev, 0, sizeof(p->ev));
    p->ev.type = REEL_H1_EV_END;
    p->ev.trailers = p->trl.n ? section_fields(&p->trl) : NULL;
    p->ev.ntrailers = p->trl.n;
    p->have_ev = true;
    p->closing = !llhttp_should_keep_alive(ll) && !ll->upgrade;
    if (p->side == REEL_H1_RESPONSE && p->ex_n) {
        p->ex_first = (p->ex_first + 1) % EXPECT_MAX;
        p->ex_n--;
    }
    return HPE_PAUSED;
}

/* ---- driving llhttp ---- */

/* Our reason for an llhttp error that no callback explained. */
static void map_llhttp_error(reel_h1_t *p, llhttp_errno_t e) {
    const char *why = llhttp_get_error_reason(&p->ll);
    if (!why)
        why = "";
    switch (e) {
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        if (strstr(why, "Duplicate"))
            fail(p, 400, "duplicate Content-Length");
        else
            fail(p, 400, "both Transfer-Encoding and Content-Length");
        break;
    case HPE_INVALID_CONTENT_LENGTH:
        fail(p, 400, "invalid Content-Length");
        break;
    case HPE_INVALID_CHUNK_SIZE:
        fail(p, 400, "invalid chunk size");
        break;
    case HPE_INVALID_TRANSFER_ENCODING:
        /* "Request has invalid `Transfer-Encoding`": chunked is not last;
         * "Invalid `Transfer-Encoding` header value": a request coding
         * after chunked (which also covers chunked twice) */
        if (strstr(why, "Request has invalid"))
            fail(p, 400, "Transfer-Encoding not ending in chunked");
        else
            fail(p, 400, "invalid Transfer-Encoding");
        break;
    case HPE_INVALID_HEADER_TOKEN:
        if (strstr(why, "value"))
            fail(p, 400, "invalid character in header value");
        else
            fail(p, 400, "invalid character in header name");
        break;
    case HPE_INVALID_CONSTANT:
        if (strstr(why, "HTTP/"))
            fail(p, 400, "invalid HTTP version");
        else
            fail(p, 400, "malformed message");
        break;
    case HPE_INVALID_METHOD:
        fail(p, 400, "invalid method");
        break;
    case HPE_INVALID_URL:
        fail(p, 400, "invalid request target");
        break;
    case HPE_INVALID_VERSION:
        fail(p, 400, "invalid HTTP version");
        break;
    case HPE_INVALID_STATUS:
        fail(p, 400, "invalid status code");
        break;
    case HPE_CLOSED_CONNECTION:
        fail(p, 400, "data after Connection: close");
        break;
    case HPE_PAUSED_H2_UPGRADE:
        fail(p, 505, "HTTP/2 connection preface");
        break;
    case HPE_LF_EXPECTED:
        if (strstr(why, "header value"))
            fail(p, 400, "invalid character in header value");
        else
            fail(p, 400, "bare CR");
        break;
    case HPE_CR_EXPECTED:
        fail(p, 400, "bare LF");
        break;
    default:
        fail(p, 400, "malformed message");
        break;
    }
}

static reel_rc error_out(reel_h1_t *p, reel_h1_event_t *ev) {
    p->st = ST_FAILED;
    memset(ev, 0, sizeof(*ev));
    ev->error_status = p->err_status;
    ev->error_reason = p->err_reason;
    return REEL_INVALID;
}

/* Hands out what is pending: body bytes first, then the stored event. */
static bool deliver(reel_h1_t *p, reel_h1_event_t *ev) {
    if (p->body_len) {
        memset(ev, 0, sizeof(*ev));
        ev->type = REEL_H1_EV_BODY;
        ev->data = p->body;
        ev->len = p->body_len;
        p->body_len = 0;
        return true;
    }
    if (p->have_ev) {
        *ev = p->ev;
        p->have_ev = false;
        return true;
    }
    return false;
}

/* Runs for every request: lengths first, GET before the list. */
static bool llhttp_knows(const char *m, size_t n) {
    if (n == 3 && memcmp(m, "GET", 3) == 0)
        return true;
#define REEL_H1_KNOWN(num, name, string) {#string, sizeof #string - 1},
    static const struct {
        const char *s;
        size_t n;
    } known[] = {HTTP_METHOD_MAP(REEL_H1_KNOWN){"PRI", 3}}; /* PRI: HTTP/2's preface */
#undef REEL_H1_KNOWN
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].n == n && memcmp(known[i].s, m, n) == 0)
            return true;
    return false;
}

/* At the start of a request, before llhttp sees a byte of it: takes the
 * empty lines before the request line (RFC 9112 2.2) and the method's
 * token into p->ext_method, across reads. Any token is a method (RFC 9110
 * 9.1), but llhttp knows a fixed list: a method it does not know (QUERY,
 * an application's own, a lower-case one) is fed to it as the stand-in
 * GET, whose framing rules (none of CONNECT's or HEAD's) are every
 * extension method's, and cb_method stores the real one. Returns the
 * bytes of b taken; *more: all taken and the method not whole yet. */
static size_t start_line(reel_h1_t *p, const char *b, size_t n, bool *more, const char **why) {
    size_t k = 0;
    *more = false;
    while (p->ext_len == 0 && k < n) { /* empty lines */
        if (p->cr_seen) {
            if (b[k] != '\n') {
                *why = "bare CR";
                return k;
            }
            p->cr_seen = false;
        } else if (b[k] == '\r') {
            p->cr_seen = true;
        } else if (b[k] != '\n') {
            break;
        }
        k++;
    }
    size_t m0 = k, had = p->ext_len; /* where the method starts in b, and in earlier reads */
    while (k < n && p->ext_len < sizeof p->ext_method && is_tchar((unsigned char)b[k]))
        p->ext_method[p->ext_len++] = b[k++];
    if (k == n && (p->cr_seen || p->ext_len == 0 || p->ext_len < sizeof p->ext_method)) {
        *more = true;
        return k;
    }
    /* the method is whole (or is no token: llhttp says what is wrong) */
    p->at_start = false;
    if (p->ext_len == 0)
        return k;
    if (had == 0 && (k == n || b[k] != ' ' || llhttp_knows(p->ext_method, p->ext_len))) {
        /* all of it in this read, and llhttp's to parse (known, or its
         * error to report): it reads it from b itself, as with no prelude
         * (the common case costs one scan of the method, nothing more) */
        p->ext_len = 0;
        return m0;
    }
    const char *feed = p->ext_method;
    size_t nfeed = p->ext_len;
    if (p->ext_len < sizeof p->ext_method && b[k] == ' ' &&
        !llhttp_knows(p->ext_method, p->ext_len)) {
        feed = "GET";
        nfeed = 3;
    } else {
        p->ext_len = 0; /* llhttp's own: cb_method stores its bytes */
    }
    const char *scan_why = NULL;
    size_t real = p->ext_len ? p->ext_len : nfeed; /* the method's bytes on the wire */
    section_scan(p, p->ext_method, real, &scan_why);
    p->section_bytes += real;
    if (llhttp_get_errno(&p->ll) == HPE_PAUSED)
        llhttp_resume(&p->ll);
    llhttp_errno_t e = llhttp_execute(&p->ll, feed, nfeed);
    if (e != HPE_OK && !p->err_reason)
        map_llhttp_error(p, e);
    if (e != HPE_OK)
        *why = p->err_reason ? p->err_reason : "invalid method";
    return k;
}

/* A field value llhttp refused (Content-Length: 12abc, a Transfer-Encoding
 * it does not take) is collected only up to where llhttp stopped: so that
 * the refused request's record shows the value the client sent rather
 * than a part of it that looks valid, the value is taken again from its
 * line in this read (base .. end, llhttp stopped at at), or, when the line
 * began in an earlier read, the rest of the line is added. */
static void value_rest(reel_h1_t *p, const char *base, const char *at, const char *end) {
    if (at == NULL || at < base || at > end)
        return;
    const char *e = at;
    while (e < end && *e != '\r' && *e != '\n')
        e++;
    const char *ls = at;
    while (ls > base && ls[-1] != '\n')
        ls--;
    const char *colon = ls > base ? memchr(ls, ':', (size_t)(e - ls)) : NULL;
    if (colon) { /* the whole line is in this read */
        const char *v = colon + 1;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        if (p->elem_open)
            p->head.buf.len = p->elem_off; /* what llhttp gave of it goes */
        span_append(p, &p->head, v, (size_t)(e - v));
        return;
    }
    span_append(p, &p->head, at, (size_t)(e - at)); /* too large: cut, as any */
}

/* A request target llhttp refused ("foo", a control character in it) stops
 * it before the target is stored and before a field is read. So that the
 * refused request's record shows what the client sent, as it does for a
 * refused field value, the target is taken from its line in this read
 * (base .. end; earlier reads gave its first bytes, if any, before base),
 * then the version and the fields that follow in this read: complete
 * lines, each a field as cb_header_field and cb_header_value would take
 * it; the first that is not ends them. The target starts after the method
 * and one SP (llhttp takes no other separator), which the section's bytes
 * before this read place: llhttp's error position may lie past it, past
 * the target even ("GET foo HTTP/1.1" fails at the H). */
static void target_rest(reel_h1_t *p, const char *base, const char *end) {
    section_t *s = &p->head;
    size_t at = p->method_len + 1; /* in the section: where the target starts */
    const char *v;                 /* where the version starts */
    size_t avail = (size_t)(end - base);
    if (!p->have_target) {
        size_t skip = at > p->section_bytes ? at - p->section_bytes : 0;
        if (skip > avail)
            return;
        const char *ts = base + skip;
        const char *te = ts;
        while (te < end && *te != ' ' && *te != '\r' && *te != '\n')
            te++;
        if (span_append(p, s, ts, (size_t)(te - ts)) != 0 ||
            elem_close(p, s, &p->target_off, &p->target_len) != 0)
            return;
        p->have_target = true;
        if (te == end || *te != ' ')
            return;
        v = te + 1;
    } else { /* llhttp took the target whole in an earlier read, then failed */
        at += p->target_len + 1;
        if (at < p->section_bytes || at - p->section_bytes > avail)
            return;
        v = base + (at - p->section_bytes);
    }
    if (end - v < 10 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9' || v[8] != '\r' || v[9] != '\n')
        return; /* no version, or not yet read */
    p->bad_version = true;
    p->bad_major = v[5] - '0';
    p->bad_minor = v[7] - '0';
    for (const char *q = v + 10; q < end && s->n < p->lim.max_headers;) {
        const char *lf = memchr(q, '\n', (size_t)(end - q));
        if (lf == NULL || lf == q || lf[-1] != '\r' || lf - 1 == q)
            return; /* not whole yet, a bare LF, or the end of the head */
        const char *colon = memchr(q, ':', (size_t)(lf - 1 - q));
        if (colon == NULL || colon == q)
            return;
        for (const char *c = q; c < colon; c++)
            if (!is_tchar((unsigned char)*c))
                return;
        size_t vl = (size_t)(lf - 1 - (colon + 1));
        const char *val = trim(colon + 1, &vl);
        for (size_t i = 0; i < vl; i++) {
            unsigned char c = (unsigned char)val[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return;
        }
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 16;
            s->f = reel_realloc(s->f, s->cap * sizeof(*s->f));
        }
        field_ofs_t *f = &s->f[s->n];
        if (span_append(p, s, q, (size_t)(colon - q)) != 0 || elem_close(p, s, &f->no, &f->nl) != 0)
            return;
        f->vo = SIZE_MAX;
        f->vl = 0;
        if (vl > 0 && (span_append(p, s, val, vl) != 0 || elem_close(p, s, &f->vo, &f->vl) != 0))
            return;
        s->n++;
        q = lf + 1;
    }
}

static reel_rc drive(reel_h1_t *p, const uint8_t *buf, size_t len, size_t *consumed,
                     reel_h1_event_t *ev) {
    reel_rc rc = REEL_NEED_MORE;
    size_t off = 0;

    for (;;) {
        const char *base = len ? (const char *)buf + off : empty_input;
        size_t avail = len - off;
        size_t n = avail;
        if (p->at_start && p->side == REEL_H1_REQUEST) {
            bool more;
            const char *why = NULL;
            off += start_line(p, base, avail, &more, &why);
            if (why) {
                if (!p->err_reason)
                    fail(p, 400, why);
                rc = REEL_INVALID;
                goto out;
            }
            if (more)
                break; /* REEL_NEED_MORE, every byte taken */
            continue;
        }
        bool sectioned = p->in_section;
        if (sectioned) {
            size_t room = p->lim.max_head_size - p->section_bytes;
            if (n > room)
                n = room;
            if (n == 0 && avail > 0) {
                too_large(p);
                rc = REEL_INVALID;
                goto out;
            }
        }
        const char *scan_why = NULL;
        const char *feed = base;
        size_t scanned = n;
        if (sectioned) {
            n = section_scan(p, base, n, &scan_why);
        } else if (p->ck_crlf) {
            n = chunk_crlf_scan(p, base, n, &scan_why);
        } else if (p->ck_line) {
            /* the line is taken here; llhttp gets its size once it is whole */
            bool eol;
            size_t k = chunk_line_scan(p, base, n, &eol, &scan_why);
            if (scan_why) {
                fail(p, 400, scan_why);
                rc = REEL_INVALID;
                goto out;
            }
            off += k;
            if (!eol)
                break; /* REEL_NEED_MORE, every byte taken */
            feed = p->ck_norm;
            n = strlen(p->ck_norm);
        }
        if (llhttp_get_errno(&p->ll) == HPE_PAUSED)
            llhttp_resume(&p->ll);
        llhttp_errno_t e = llhttp_execute(&p->ll, feed, n);
        size_t used = n;
        if (feed != base) {
            used = 0; /* counted above */
            if (e != HPE_OK && e != HPE_PAUSED) {
                if (!p->err_reason)
                    map_llhttp_error(p, e);
                rc = REEL_INVALID;
                goto out;
            }
        } else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            used = (size_t)(llhttp_get_error_pos(&p->ll) - base);
        } else if (e != HPE_OK) {
            if (!p->err_reason)
                map_llhttp_error(p, e);
            if (p->in_value)
                value_rest(p, base, llhttp_get_error_pos(&p->ll), base + n);
            else if (e == HPE_INVALID_URL && p->side == REEL_H1_REQUEST && p->in_head &&
                     p->have_method && p->head.n == 0)
                target_rest(p, base, base + n);
            rc = REEL_INVALID;
            goto out;
        }
        if (sectioned && p->sc_bad && !scan_why && e == HPE_OK)
            used = scanned; /* the rest of a doomed name: read, not parsed */
        if (sectioned)
            p->section_bytes += used;
        off += used;
        if (p->refused) {
            p->head_used = off;
            rc = REEL_INVALID;
            goto out;
        }
        if (deliver(p, ev)) {
            rc = REEL_OK;
            goto out;
        }
        if (scan_why && e == HPE_OK) {
            fail(p, 400, scan_why);
            rc = REEL_INVALID;
            goto out;
        }
        if (e == HPE_PAUSED_UPGRADE) {
            p->st = ST_UPGRADED;
            memset(ev, 0, sizeof(*ev));
            ev->type = REEL_H1_EV_UPGRADE;
            rc = REEL_OK;
            goto out;
        }
        if (e == HPE_OK && off == len)
            break; /* REEL_NEED_MORE */
        /* internal pause, or a section slice ran out: go on */
    }
out:
    if (rc == REEL_INVALID)
        return error_out(p, ev);
    *consumed = off;
    return rc;
}

/* ---- public API ---- */

reel_h1_t *reel_h1_new(reel_h1_side side, const reel_h1_limits_t *lim) {
    reel_h1_t *p = reel_calloc(1, sizeof(*p));
    p->side = side;
    if (lim)
        p->lim = *lim;
    if (!p->lim.max_head_size)
        p->lim.max_head_size = REEL_H1_DEFAULT_MAX_HEAD_SIZE;
    if (!p->lim.max_headers)
        p->lim.max_headers = REEL_H1_DEFAULT_MAX_HEADERS;
    /* Stored strings never outgrow the raw section (the NULs replace
     * separators); the slack covers a head that is all request line. */
    section_init(&p->head, p->lim.max_head_size + 16);
    section_init(&p->trl, p->lim.max_head_size + 16);
    p->sec = &p->head;
    section_start(p, false);

    llhttp_settings_init(&p->cbs);
    p->cbs.on_message_begin = cb_message_begin;
    p->cbs.on_method = cb_method;
    p->cbs.on_method_complete = cb_method_complete;
    p->cbs.on_url = cb_url;
    p->cbs.on_url_complete = cb_url_complete;
    p->cbs.on_status = cb_status;
    p->cbs.on_status_complete = cb_status_complete;
    p->cbs.on_header_field = cb_header_field;
    p->cbs.on_header_field_complete = cb_header_field_complete;
    p->cbs.on_header_value = cb_header_value;
    p->cbs.on_header_value_complete = cb_header_value_complete;
    p->cbs.on_headers_complete = cb_headers_complete;
    p->cbs.on_body = cb_body;
    p->cbs.on_chunk_header = cb_chunk_header;
    p->cbs.on_chunk_complete = cb_chunk_complete;
    p->cbs.on_message_complete = cb_message_complete;
    llhttp_init(&p->ll, side == REEL_H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &p->cbs);
    p->ll.data = p;
    llhttp_set_lenient_headers(&p->ll, 0);
    llhttp_set_lenient_chunked_length(&p->ll, 0);
    llhttp_set_lenient_keep_alive(&p->ll, 0);
    llhttp_set_lenient_transfer_encoding(&p->ll, 0);
    return p;
}

void reel_h1_free(reel_h1_t *p) {
    if (!p)
        return;
    section_free(&p->head);
    section_free(&p->trl);
    free(p);
}

reel_rc reel_h1_feed(reel_h1_t *p, const uint8_t *buf, size_t len, size_t *consumed,
                     reel_h1_event_t *ev) {
    memset(ev, 0, sizeof(*ev));
    *consumed = 0;
    if (p->st == ST_FAILED)
        return error_out(p, ev);
    if (deliver(p, ev))
        return REEL_OK;
    if (p->st == ST_UPGRADED) {
        if (len == 0)
            return REEL_NEED_MORE;
        ev->type = REEL_H1_EV_TUNNEL;
        ev->data = buf;
        ev->len = len;
        *consumed = len;
        return REEL_OK;
    }
    if (p->st == ST_CLOSED) {
        if (len == 0)
            return REEL_NEED_MORE;
        fail(p, 400, "data after end of stream");
        return error_out(p, ev);
    }
    if (p->closing && p->st == ST_HTTP) {
        /* after a message without keep-alive only stray line ends may come */
        size_t i = 0;
        while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
            i++;
        if (i < len) {
            fail(p, 400, "data after Connection: close");
            return error_out(p, ev);
        }
        *consumed = len;
        return REEL_NEED_MORE;
    }
    return drive(p, buf, len, consumed, ev);
}

reel_rc reel_h1_feed_eof(reel_h1_t *p, reel_h1_event_t *ev) {
    size_t consumed;
    memset(ev, 0, sizeof(*ev));
    if (p->st == ST_FAILED)
        return error_out(p, ev);
    if (deliver(p, ev))
        return REEL_OK;
    if (p->st != ST_HTTP) {
        p->st = ST_CLOSED;
        return REEL_OK;
    }
    if (p->at_start && p->ext_len) { /* a method, and no more */
        fail(p, 400, "request cut short");
        return error_out(p, ev);
    }
    reel_rc rc = drive(p, NULL, 0, &consumed, ev);
    if (rc != REEL_NEED_MORE)
        return rc;
    /* inside a chunked body, before a chunk-size line, drive gives llhttp
     * nothing, and llhttp still paused at the event before (the head)
     * takes any end for a clean one: a response cut right after its head
     * ended as if whole and empty */
    if (p->ck_line && llhttp_get_errno(&p->ll) == HPE_PAUSED)
        llhttp_resume(&p->ll);
    llhttp_errno_t e = llhttp_finish(&p->ll);
    if (e == HPE_OK || e == HPE_PAUSED) {
        p->st = ST_CLOSED;
        deliver(p, ev); /* END of a close-delimited message, or nothing */
        return REEL_OK;
    }
    if (!p->err_reason) {
        if (e == HPE_INVALID_EOF_STATE)
            fail(p, 400, p->side == REEL_H1_REQUEST ? "request cut short" : "response cut short");
        else
            map_llhttp_error(p, e);
    }
    return error_out(p, ev);
}

reel_rc reel_h1_expect_response(reel_h1_t *p, bool method_is_head, bool method_is_connect) {
    if (p->side != REEL_H1_RESPONSE)
        return REEL_INVALID;
    if (p->ex_n == EXPECT_MAX)
        return REEL_LIMIT;
    p->expect[(p->ex_first + p->ex_n) % EXPECT_MAX] =
        (uint8_t)((method_is_head ? EXPECT_HEAD : 0) | (method_is_connect ? EXPECT_CONNECT : 0));
    p->ex_n++;
    return REEL_OK;
}

bool reel_h1_partial_head(reel_h1_t *p, reel_h1_head_t *out) {
    memset(out, 0, sizeof(*out));
    if (p->side == REEL_H1_REQUEST && p->at_start && p->ext_len && !p->in_head) {
        /* the first bytes of a method, which start_line holds until a
         * byte that is not a token's says it is whole */
        out->method = p->ext_method;
        out->method_len = p->ext_len;
        return true;
    }
    if (!p->in_head)
        return false;
    section_t *s = &p->head;
    /* An element still being collected (a request line cut by the size
     * cap) is reported with the bytes read so far. */
    if (p->have_method) {
        out->method = (const char *)s->buf.data + p->method_off;
        out->method_len = p->method_len;
    } else if (p->elem_open && s->n == 0) {
        out->method = (const char *)s->buf.data + p->elem_off;
        out->method_len = s->buf.len - p->elem_off;
        return true;
    }
    if (p->have_target) {
        out->target = (const char *)s->buf.data + p->target_off;
        out->target_len = p->target_len;
    } else if (p->have_method && p->elem_open && s->n == 0) {
        out->target = (const char *)s->buf.data + p->elem_off;
        out->target_len = s->buf.len - p->elem_off;
    }
    /* 0.0 when the request line never got as far as its version (or
     * has none, as HTTP/0.9's): not known, and not to be guessed */
    out->version_major = p->bad_version ? p->bad_major : p->ll.http_major;
    out->version_minor = p->bad_version ? p->bad_minor : p->ll.http_minor;
    /* Fields whose name is complete, with a value still being read cut
     * where it stands. */
    reel_h1_header_t *hs = (reel_h1_header_t *)section_fields(s);
    if (p->in_value && p->elem_open && s->n > 0) {
        hs[s->n - 1].value = (const char *)s->buf.data + p->elem_off;
        hs[s->n - 1].value_len = s->buf.len - p->elem_off;
    }
    out->headers = hs;
    out->nheaders = s->n;
    return true;
}

const char *reel_h1_partial_cut(reel_h1_t *p, const char **name, size_t *name_len) {
    *name = NULL;
    *name_len = 0;
    if (p->side == REEL_H1_REQUEST && p->at_start && p->ext_len && !p->in_head)
        return "in its method";
    if (!p->in_head)
        return NULL;
    section_t *s = &p->head;
    if (!p->have_method)
        return p->elem_open && s->n == 0 ? "in its method" : NULL;
    if (s->n == 0 && !p->have_target)
        return "in its request target";
    if (!p->sc_started) /* the raw scan has not seen its line's end */
        return "in its request line";
    if (p->sc_line_len == 0)
        return NULL; /* at a line's start (llhttp ends a value at the next line's first byte) */
    if (p->elem_open && !p->in_value)
        return "in the name of a field";
    if (s->n > 0) { /* in the value of the last field (maybe before its first byte) */
        const reel_h1_header_t *hs = section_fields(s);
        *name = hs[s->n - 1].name;
        *name_len = hs[s->n - 1].name_len;
        return "in the value of a field";
    }
    return NULL;
}

reel_rc reel_h1_upgrade_refused(reel_h1_t *p) {
    if (p->side != REEL_H1_REQUEST || p->st != ST_UPGRADED)
        return REEL_INVALID;
    llhttp_resume_after_upgrade(&p->ll);
    section_start(p, false); /* forget what the scan saw of tunnel bytes */
    p->st = ST_HTTP;
    return REEL_OK;
}

reel_rc reel_h1_resume_refused(reel_h1_t *p, size_t *head_used) {
    *head_used = 0;
    if (p->side != REEL_H1_REQUEST || p->st != ST_FAILED || !p->refused)
        return REEL_INVALID;
    *head_used = p->head_used;
    p->refused = false;
    p->in_head = false;
    p->err_status = 0;
    p->err_reason = NULL; /* a later error is that one's, not the Host's */
    p->st = ST_HTTP;
    return REEL_OK;
}

const reel_h1_header_t *reel_h1_find_header(const reel_h1_header_t *headers, size_t nheaders,
                                            const char *name) {
    for (size_t i = 0; i < nheaders; i++)
        if (headers[i].name && eq_ci(headers[i].name, headers[i].name_len, name))
            return &headers[i];
    return NULL;
}

bool reel_h1_is_hop_by_hop(const char *name, size_t name_len, const char *connection,
                           size_t connection_len) {
    /* RFC 9110 7.6.1 and the fields proxies treat so, by length first:
     * this runs for every field of every message */
    bool fixed = false;
    switch (name_len) {
    case 2:
        fixed = eq_ci(name, name_len, "te");
        break;
    case 7:
        fixed = eq_ci(name, name_len, "trailer") || eq_ci(name, name_len, "upgrade");
        break;
    case 10:
        fixed = eq_ci(name, name_len, "connection") || eq_ci(name, name_len, "keep-alive");
        break;
    case 16:
        fixed = eq_ci(name, name_len, "proxy-connection");
        break;
    case 17:
        fixed = eq_ci(name, name_len, "transfer-encoding");
        break;
    case 18:
        fixed = eq_ci(name, name_len, "proxy-authenticate");
        break;
    case 19:
        fixed = eq_ci(name, name_len, "proxy-authorization");
        break;
    default:
        break;
    }
    if (fixed)
        return true;
    if (!connection)
        return false;
    const char *cur = connection, *el;
    size_t el_len;
    while (list_next(&cur, connection + connection_len, &el, &el_len))
        if (el_len == name_len && strncasecmp(el, name, name_len) == 0)
            return true;
    return false;
}

void reel_h1_hop_init(reel_h1_hop_t *c, const reel_h1_header_t *headers, size_t nheaders) {
    *c = (reel_h1_hop_t){headers, nheaders, NULL, 0};
    for (size_t i = 0; i < nheaders; i++) {
        const reel_h1_header_t *f = &headers[i];
        if (f->name && f->name_len == 10 && strncasecmp(f->name, "connection", 10) == 0) {
            c->connection = f;
            c->nconnection++;
        }
    }
}

bool reel_h1_hop(const reel_h1_hop_t *c, const char *name, size_t name_len) {
    if (c->nconnection <= 1)
        return reel_h1_is_hop_by_hop(name, name_len, c->connection ? c->connection->value : NULL,
                                     c->connection ? c->connection->value_len : 0);
    if (reel_h1_is_hop_by_hop(name, name_len, NULL, 0))
        return true;
    for (size_t i = 0; i < c->nheaders; i++) {
        const reel_h1_header_t *f = &c->headers[i];
        if (f->name && eq_ci(f->name, f->name_len, "connection") &&
            reel_h1_is_hop_by_hop(name, name_len, f->value, f->value_len))
            return true;
    }
    return false;
}

bool reel_h1_is_hop_by_hop_in(const char *name, size_t name_len, const reel_h1_header_t *headers,
                              size_t nheaders) {
    reel_h1_hop_t c;
    reel_h1_hop_init(&c, headers, nheaders);
    return reel_h1_hop(&c, name, name_len);
}

/* ---- serialization ---- */

static bool is_token(const char *s, size_t n) {
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* Field values and reason phrases: no CTL but HTAB. */
static bool is_text(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

void reel_h1_version_str(char out[16], int major, int minor) {
    if (major >= 0 && major <= 9 && minor >= 0 && minor <= 9) {
        memcpy(out, "HTTP/x.y", 9);
        out[5] = (char)('0' + major);
        out[7] = (char)('0' + minor);
    } else {
        snprintf(out, 16, "HTTP/%d.%d", major, minor);
    }
}

reel_rc reel_h1_append_field(reel_buf_t *out, const char *name, size_t name_len, const char *value,
                             size_t value_len) {
    /* one reservation per line: four appends each were a fifth of the
     * cost of writing a head */
    if (name_len > SIZE_MAX / 4 || value_len > SIZE_MAX / 4)
        return REEL_LIMIT;
    reel_rc rc = reel_buf_reserve(out, name_len + value_len + 4);
    if (rc != REEL_OK)
        return rc;
    uint8_t *d = out->data + out->len;
    memcpy(d, name, name_len);
    memcpy(d + name_len, ": ", 2);
    memcpy(d + name_len + 2, value, value_len);
    memcpy(d + name_len + 2 + value_len, "\r\n", 3); /* with the buffer's NUL */
    out->len += name_len + value_len + 4;
    return REEL_OK;
}

/* "HTTP/d.d ddd ": one digit each for the version, three for the status,
 * written without printf (a tenth of the loop's instructions per small
 * request went to printf). */
static reel_rc append_status_start(reel_buf_t *out, int major, int minor, int status) {
    const char line[13] = {'H',
                           'T',
                           'T',
                           'P',
                           '/',
                           (char)('0' + major),
                           '.',
                           (char)('0' + minor),
                           ' ',
                           (char)('0' + status / 100),
                           (char)('0' + status / 10 % 10),
                           (char)('0' + status % 10),
                           ' '};
    return reel_buf_append(out, line, sizeof line);
}

reel_rc reel_h1_append_status_line(reel_buf_t *out, int status, const char *reason,
                                   size_t reason_len) {
    if (status < 100 || status > 999)
        return REEL_INVALID;
    reel_rc rc = append_status_start(out, 1, 1, status);
    if (rc == REEL_OK)
        rc = reel_buf_append(out, reason, reason_len);
    if (rc == REEL_OK)
        rc = reel_buf_append(out, "\r\n", 2);
    return rc;
}

static reel_rc write_fields(reel_buf_t *out, const reel_h1_header_t *f, size_t n) {
    reel_rc rc = REEL_OK;
    for (size_t i = 0; i < n && rc == REEL_OK; i++) {
        if (!f[i].name)
            continue;
        if (!is_token(f[i].name, f[i].name_len) || !is_text(f[i].value, f[i].value_len))
            return REEL_INVALID;
        rc = reel_h1_append_field(out, f[i].name, f[i].name_len, f[i].value, f[i].value_len);
    }
    if (rc == REEL_OK)
        rc = reel_buf_append(out, "\r\n", 2);
    return rc;
}

static bool version_ok(const reel_h1_head_t *h) {
    return h->version_major >= 0 && h->version_major <= 9 && h->version_minor >= 0 &&
           h->version_minor <= 9;
}

reel_rc reel_h1_write_request_head(reel_buf_t *out, const reel_h1_head_t *h) {
    size_t mark = out->len;
    reel_rc rc = REEL_OK;
    if (!h->method || !is_token(h->method, h->method_len) || !h->target || h->target_len == 0 ||
        !version_ok(h)) {
        rc = REEL_INVALID;
        goto out;
    }
    for (size_t i = 0; i < h->target_len; i++) {
        unsigned char c = (unsigned char)h->target[i];
        if (c <= 0x20 || c == 0x7f) {
            rc = REEL_INVALID;
            goto out;
        }
    }
    rc = reel_buf_append(out, h->method, h->method_len);
    if (rc == REEL_OK)
        rc = reel_buf_append(out, " ", 1);
    if (rc == REEL_OK)
        rc = reel_buf_append(out, h->target, h->target_len);
    if (rc == REEL_OK)
        rc = reel_buf_append(out,
                             (const char[]){' ', 'H', 'T', 'T', 'P', '/',
                                            (char)('0' + h->version_major), '.',
                                            (char)('0' + h->version_minor), '\r', '\n'},
                             11); /* version_ok: one digit each */
    if (rc == REEL_OK)
        rc = write_fields(out, h->headers, h->nheaders);
out:
    if (rc != REEL_OK) {
        out->len = mark;
        if (out->data)
            out->data[mark] = 0;
    }
    return rc;
}

reel_rc reel_h1_write_response_head(reel_buf_t *out, const reel_h1_head_t *h) {
    size_t mark = out->len;
    reel_rc rc = REEL_OK;
    const char *reason = h->reason ? h->reason : "";
    size_t reason_len = h->reason ? h->reason_len : 0;
    if (h->status < 100 || h->status > 999 || !version_ok(h) || !is_text(reason, reason_len)) {
        rc = REEL_INVALID;
        goto out;
    }
    rc = append_status_start(out, h->version_major, h->version_minor, h->status);
    if (rc == REEL_OK)
        rc = reel_buf_append(out, reason, reason_len);
    if (rc == REEL_OK)
        rc = reel_buf_append(out, "\r\n", 2);
    if (rc == REEL_OK)
        rc = write_fields(out, h->headers, h->nheaders);
out:
    if (rc != REEL_OK) {
        out->len = mark;
        if (out->data)
            out->data[mark] = 0;
    }
    return rc;
}

size_t reel_h1_chunk_header(size_t len, char buf[REEL_H1_CHUNK_HEADER_MAX]) {
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0, o = 0;
    if (len == 0) {
        buf[0] = 0;
        return 0;
    }
    while (len) {
        tmp[n++] = hex[len & 15];
        len >>= 4;
    }
    while (n)
        buf[o++] = tmp[--n];
    buf[o++] = '\r';
    buf[o++] = '\n';
    buf[o] = 0;
    return o;
}

reel_rc reel_h1_write_last_chunk(reel_buf_t *out, const reel_h1_header_t *trailers,
                                 size_t ntrailers) {
    size_t mark = out->len;
    reel_rc rc = reel_buf_append(out, "0\r\n", 3);
    if (rc == REEL_OK)
        rc = write_fields(out, trailers, ntrailers);
    if (rc != REEL_OK) {
        out->len = mark;
        if (out->data)
            out->data[mark] = 0;
    }
    return rc;
}

bool reel_h1_has_token(const reel_h1_header_t *hs, size_t n, const char *field, const char *token) {
    size_t tl = strlen(token);
    for (size_t i = 0; i < n; i++) {
        const reel_h1_header_t *f = &hs[i];
        if (strlen(field) != f->name_len || strncasecmp(f->name, field, f->name_len) != 0)
            continue;
        const char *v = f->value, *end = f->value + f->value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *e = v;
            while (e < end && *e != ',')
                e++;
            const char *t = e;
            while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
                return true;
            v = e;
        }
    }
    return false;
}
