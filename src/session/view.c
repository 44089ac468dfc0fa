/* Contentviews (view.h). Every view first checks that its content reads as
 * its kind, writing nothing, and only then prints; a view that cannot read
 * its content returns a reason and the body is shown as a hex dump (under
 * auto, text that does not read as what it claims is shown as text). */
#include "session/view.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/HTMLparser.h>
#include <libxml/HTMLtree.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <msgpack.h>
#include <zlib.h>

#include "base/mem.h"
#include "session/decode.h"

/** Levels of nesting shown as indentation; deeper levels stay at this one,
 * so hostile nesting cannot blow the output up quadratically. */
#define INDENT_MAX 32
/** Nested protobuf messages guessed inside length-delimited fields. */
#define PB_DEPTH_MAX 32
/** Elements of msgpack containers read (msgpack-c holds 24 bytes each). */
#define MP_ITEMS_MAX (2 * 1024 * 1024)
/** Parts of a multipart body listed. */
#define PARTS_MAX 10000

static const char *const names[REEL_VIEW_COUNT] = {
    "auto",       "raw",       "hex",      "json", "xml",     "html",  "css",      "javascript",
    "urlencoded", "multipart", "protobuf", "grpc", "msgpack", "image", "websocket"};

int reel_view_parse(const char *name) {
    for (int i = 0; i < REEL_VIEW_COUNT; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    if (name && strcmp(name, "js") == 0)
        return REEL_VIEW_JAVASCRIPT;
    return -1;
}

const char *reel_view_name(reel_view_kind kind) {
    return (unsigned)kind < REEL_VIEW_COUNT ? names[kind] : "?";
}

/* ---- writer ---- */

typedef struct {
    FILE *f;
    int flags;
    char why[200]; /* why the content did not read as its kind */
} w_t;

static int fail(w_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(w_t *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
    return -1;
}

static void col(w_t *w, const char *code) {
    if (w->flags & REEL_VIEW_COLOR)
        fprintf(w->f, "\033[%sm", code);
}

static void col_off(w_t *w) {
    if (w->flags & REEL_VIEW_COLOR)
        fputs("\033[0m", w->f);
}

/* Length of the valid UTF-8 sequence at p (2..4), 0 if there is none. */
static size_t utf8_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    size_t k;
    uint32_t min;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    uint32_t cp = c & (0x3f >> (k - 1));
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

enum { ESC_CELL = 1 }; /* newline, CR and tab as \n \r \t too, always */

/* Writes recorded bytes: on a terminal C0/C1 controls, DEL and bytes that
 * are not UTF-8 as \xNN (newline and tab kept); in a cell (a table value, a
 * protobuf string) newline, CR and tab are always shown as \n \r \t. */
static void w_esc_mode(w_t *w, const uint8_t *p, size_t n, int mode) {
    if (n == 0)
        return; /* p may be NULL (msgpack-c's empty strings) */
    int term = w->flags & REEL_VIEW_TERM;
    size_t run = 0, i = 0;
    while (i < n) {
        uint8_t c = p[i];
        const char *named = NULL;
        size_t k = 1;
        int esc = 0;
        if (c == '\n' || c == '\r' || c == '\t') {
            if (mode & ESC_CELL)
                named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t";
            else if (term && c == '\r')
                esc = 1;
        } else if (c < 0x20 || c == 0x7f) {
            esc = term;
        } else if (c >= 0x80) {
            k = utf8_len(p + i, n - i);
            if (k == 0) {
                k = 1;
                esc = term;
            } else if (k == 2 && c == 0xc2 && p[i + 1] < 0xa0) {
                esc = term; /* a C1 control */
            }
        }
        if (!named && !esc) {
            i += k;
            continue;
        }
        fwrite(p + run, 1, i - run, w->f);
        if (named) {
            fputs(named, w->f);
        } else {
            for (size_t j = 0; j < k; j++)
                fprintf(w->f, "\\x%02x", p[i + j]);
        }
        i += k;
        run = i;
    }
    fwrite(p + run, 1, n - run, w->f);
}

static void w_esc(w_t *w, const void *p, size_t n) {
    w_esc_mode(w, p, n, 0);
}

static void w_cell(w_t *w, const void *p, size_t n) {
    w_esc_mode(w, p, n, ESC_CELL);
}

static void indent(w_t *w, int depth) {
    if (depth > INDENT_MAX)
        depth = INDENT_MAX;
    for (int i = 0; i < depth; i++)
        fputs("  ", w->f);
}

static void hex(w_t *w, const uint8_t *p, size_t n) {
    reel_hexdump_t h;
    reel_hexdump_init(&h, w->f);
    reel_hexdump_feed(&h, p, n);
    reel_hexdump_finish(&h);
}

static int ieq_prefix(const char *s, size_t n, const char *pre) {
    size_t k = strlen(pre);
    return n >= k && strncasecmp(s, pre, k) == 0;
}

/* ---- auto ---- */

/* The media type of a Content-Type, lower case, without parameters. */
static void media_type(const char *ct, char out[static 128]) {
    size_t o = 0;
    if (ct) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        for (; *ct && *ct != ';' && *ct != ' ' && o < 127; ct++)
            out[o++] = (char)tolower((unsigned char)*ct);
    }
    out[o] = '\0';
}

static int is_image(const uint8_t *p, size_t n) {
    return (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) ||
           (n >= 3 && memcmp(p, "\xff\xd8\xff", 3) == 0) ||
           (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0)) ||
           (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0);
}

reel_view_kind reel_view_pick(const char *content_type, const uint8_t *p, size_t n) {
    char mt[128];
    media_type(content_type, mt);
    if (mt[0]) {
        if (strstr(mt, "json"))
            return REEL_VIEW_JSON;
        if (strstr(mt, "xml"))
            return REEL_VIEW_XML;
        if (strcmp(mt, "text/html") == 0)
            return REEL_VIEW_HTML;
        if (strcmp(mt, "text/css") == 0)
            return REEL_VIEW_CSS;
        if (strstr(mt, "javascript") || strstr(mt, "ecmascript"))
            return REEL_VIEW_JAVASCRIPT;
        if (strcmp(mt, "application/x-www-form-urlencoded") == 0)
            return REEL_VIEW_URLENCODED;
        if (strncmp(mt, "multipart/", 10) == 0)
            return REEL_VIEW_MULTIPART;
        if (strncmp(mt, "application/grpc", 16) == 0)
            return REEL_VIEW_GRPC;
        if (strstr(mt, "protobuf"))
            return REEL_VIEW_PROTOBUF;
        if (strstr(mt, "msgpack"))
            return REEL_VIEW_MSGPACK;
        if (strncmp(mt, "image/", 6) == 0 && is_image(p, n))
            return REEL_VIEW_IMAGE;
    }
    if (is_image(p, n))
        return REEL_VIEW_IMAGE;
    size_t i = 0;
    if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    size_t sample = n > 4096 ? 4096 : n;
    if (!reel_looks_text(p, sample))
        return REEL_VIEW_HEX;
    if (i < n && (p[i] == '{' || p[i] == '['))
        return REEL_VIEW_JSON;
    if (i < n && p[i] == '<') {
        const char *s = (const char *)p + i;
        size_t m = n - i > 1024 ? 1024 : n - i;
        for (size_t k = 0; k < m; k++)
            if (s[k] == '<' &&
                (ieq_prefix(s + k, m - k, "<!doctype html") || ieq_prefix(s + k, m - k, "<html") ||
                 ieq_prefix(s + k, m - k, "<head") || ieq_prefix(s + k, m - k, "<body")))
                return REEL_VIEW_HTML;
        return REEL_VIEW_XML;
    }
    return REEL_VIEW_RAW;
}

/* ---- json ---- */

static void json_str(w_t *w, const char *s, size_t n) {
    fputc('"', w->f);
    if (n == 0) { /* s may be NULL (msgpack-c's empty strings) */
        fputc('"', w->f);
        return;
    }
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        w_esc(w, s + run, i - run);
        if (c == '"' || c == '\\')
            fprintf(w->f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", w->f);
        else if (c == '\t')
            fputs("\\t", w->f);
        else if (c == '\r')
            fputs("\\r", w->f);
        else
            fprintf(w->f, "\\u%04x", c);
        run = i + 1;
    }
    w_esc(w, s + run, n - run);
    fputc('"', w->f);
}

/* A JSON document read by hand (RFC 8259) rather than through jansson:
 * the view shows what was sent. jansson printed 0.1 as
 * 0.10000000000000001 and 1e2 as 100.0, kept one of two values of a key
 * given twice, and refused integers beyond 64 bits (the body was then
 * "not JSON"). Numbers are shown as written, every key as often as it
 * comes, strings decoded (escapes read, then written as json_str does).
 * One pass checks (w NULL), a second one prints, so that a document that
 * turns out not to be JSON prints nothing of itself. */
#define JSON_DEPTH_MAX 2048

typedef struct {
    const uint8_t *p;
    size_t n, i;
    reel_buf_t s;    /* the string last read, decoded */
    const char *why; /* what went wrong, at i */
} jtext_t;

static void jws(jtext_t *x) {
    while (x->i < x->n &&
           (x->p[x->i] == ' ' || x->p[x->i] == '\t' || x->p[x->i] == '\n' || x->p[x->i] == '\r'))
        x->i++;
}

static int jfail(jtext_t *x, const char *why) {
    x->why = why;
    return -1;
}

static int hex4(const uint8_t *p, uint32_t *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        int c = p[k], d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
        if (d < 0)
            return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return 1;
}

static void put_utf8(reel_buf_t *b, uint32_t cp) {
    uint8_t u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xc0 | cp >> 6);
        u[1] = (uint8_t)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xe0 | cp >> 12);
        u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (uint8_t)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (uint8_t)(0xf0 | cp >> 18);
        u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (uint8_t)(0x80 | (cp & 0x3f));
        k = 4;
    }
    reel_buf_append(b, u, k);
}

/* The string at x->i (its opening quote) into x->s, decoded. */
static int jstring(jtext_t *x) {
    reel_buf_reset(&x->s);
    x->i++;
    for (;;) {
        size_t run = x->i;
        while (x->i < x->n && x->p[x->i] >= 0x20 && x->p[x->i] < 0x80 && x->p[x->i] != '"' &&
               x->p[x->i] != '\\')
            x->i++;
        reel_buf_append(&x->s, x->p + run, x->i - run);
        if (x->i >= x->n)
            return jfail(x, "the text ends inside a string");
        uint8_t c = x->p[x->i];
        if (c == '"') {
            x->i++;
            return 0;
        }
        if (c < 0x20)
            return jfail(x, "a control character inside a string");
        if (c >= 0x80) {
            size_t k = utf8_len(x->p + x->i, x->n - x->i);
            if (k == 0)
                return jfail(x, "invalid UTF-8 inside a string");
            reel_buf_append(&x->s, x->p + x->i, k);
            x->i += k;
            continue;
        }
        /* a backslash */
        if (x->i + 1 >= x->n)
            return jfail(x, "the text ends inside a string");
        uint8_t e = x->p[x->i + 1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *at = e ? strchr(from, e) : NULL;
        if (at) {
            reel_buf_append(&x->s, &to[at - from], 1);
            x->i += 2;
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || x->n - x->i < 6 || !hex4(x->p + x->i + 2, &cp))
            return jfail(x, "an invalid escape inside a string");
        x->i += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (x->n - x->i < 6 || x->p[x->i] != '\\' || x->p[x->i + 1] != 'u' ||
                !hex4(x->p + x->i + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                return jfail(x, "a \\u escape of a lone surrogate inside a string");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            x->i += 6;
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return jfail(x, "a \\u escape of a lone surrogate inside a string");
        }
        put_utf8(&x->s, cp);
    }
}

/* The number at x->i: its length (0: none, x->why says why). */
static size_t jnumber(jtext_t *x) {
    size_t i = x->i;
    const uint8_t *p = x->p;
    if (i < x->n && p[i] == '-')
        i++;
    if (i < x->n && p[i] == '0') {
        i++;
    } else if (i < x->n && p[i] >= '1' && p[i] <= '9') {
        while (i < x->n && p[i] >= '0' && p[i] <= '9')
            i++;
    } else {
        jfail(x, "a value expected");
        return 0;
    }
    if (i < x->n && p[i] == '.') {
        size_t d = ++i;
        while (i < x->n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d) {
            x->i = i;
            jfail(x, "digits expected after a decimal point");
            return 0;
        }
    }
    if (i < x->n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < x->n && (p[i] == '+' || p[i] == '-'))
            i++;
        size_t d = i;
        while (i < x->n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d) {
            x->i = i;
            jfail(x, "digits expected in an exponent");
            return 0;
        }
    }
    return i - x->i;
}

/* The value at x->i, printed to w (NULL: only read). */
static int jvalue(jtext_t *x, w_t *w, int depth) {
    jws(x);
    if (x->i >= x->n)
        return jfail(x, "a value expected, the text ends");
    if (depth > JSON_DEPTH_MAX)
        return jfail(x, "nested too deeply");
    uint8_t c = x->p[x->i];
    if (c == '{' || c == '[') {
        uint8_t close = c == '{' ? '}' : ']';
        x->i++;
        jws(x);
        if (x->i < x->n && x->p[x->i] == close) {
            x->i++;
            if (w)
                fputs(c == '{' ? "{}" : "[]", w->f);
            return 0;
        }
        if (w)
            fputs(c == '{' ? "{\n" : "[\n", w->f);
        for (;;) {
            jws(x);
            if (w)
                indent(w, depth + 1);
            if (c == '{') {
                if (x->i >= x->n || x->p[x->i] != '"')
                    return jfail(x, "a key (a string) expected");
                if (jstring(x) != 0)
                    return -1;
                if (w) {
                    col(w, "34");
                    json_str(w, (const char *)x->s.data, x->s.len);
                    col_off(w);
                    fputs(": ", w->f);
                }
                jws(x);
                if (x->i >= x->n || x->p[x->i] != ':')
                    return jfail(x, "':' expected after a key");
                x->i++;
            }
            if (jvalue(x, w, depth + 1) != 0)
                return -1;
            jws(x);
            if (x->i < x->n && x->p[x->i] == ',') {
                x->i++;
                if (w)
                    fputs(",\n", w->f);
                continue;
            }
            if (x->i < x->n && x->p[x->i] == close) {
                x->i++;
                if (w) {
                    fputc('\n', w->f);
                    indent(w, depth);
                    fputc(close, w->f);
                }
                return 0;
            }
            return jfail(x, c == '{' ? "',' or '}' expected" : "',' or ']' expected");
        }
    }
    if (c == '"') {
        if (jstring(x) != 0)
            return -1;
        if (w) {
            col(w, "32");
            json_str(w, (const char *)x->s.data, x->s.len);
            col_off(w);
        }
        return 0;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (x->n - x->i >= l && memcmp(x->p + x->i, lits[k], l) == 0) {
            if (w) {
                col(w, "35");
                fputs(lits[k], w->f);
                col_off(w);
            }
            x->i += l;
            return 0;
        }
    }
    size_t l = jnumber(x);
    if (l == 0)
        return -1;
    if (w) {
        col(w, "36");
        fwrite(x->p + x->i, 1, l, w->f);
        col_off(w);
    }
    x->i += l;
    return 0;
}

/* The whole text: one value (of any kind), white space around it; a
 * UTF-8 byte order mark before it is passed over (RFC 8259 8.1). */
static int jdoc(jtext_t *x, w_t *w) {
    x->i = x->n >= 3 && memcmp(x->p, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    if (jvalue(x, w, 0) != 0)
        return -1;
    jws(x);
    return x->i < x->n ? jfail(x, "the end of the text expected after the value") : 0;
}

static int view_json(w_t *w, const uint8_t *p, size_t n) {
    jtext_t x = {.p = p, .n = n};
    reel_buf_init(&x.s, 0);
    int rc = jdoc(&x, NULL);
    if (rc != 0) {
        size_t at = x.i < n ? x.i : n, line = 1, bol = 0;
        for (size_t k = 0; k < at; k++)
            if (p[k] == '\n') {
                line++;
                bol = k + 1;
            }
        rc = fail(w, "not JSON: %s%s at line %zu, column %zu", x.why,
                  at >= n && strstr(x.why, "ends") == NULL ? ", but the text ends" : "", line,
                  at - bol + 1);
    } else {
        jdoc(&x, w);
        fputc('\n', w->f);
    }
    reel_buf_free(&x.s);
    return rc;
}

/* ---- xml, html (libxml2: no network, no DTD loading, entities kept) ---- */

static void xml_reason(w_t *w, const char *what) {
    const xmlError *e = xmlGetLastError();
    if (e && e->message) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s", e->message);
        size_t k = strlen(msg);
        while (k && (msg[k - 1] == '\n' || msg[k - 1] == ' '))
            msg[--k] = '\0';
        fail(w, "not %s: %s at line %d", what, msg, e->line);
    } else {
        fail(w, "not %s", what);
    }
}

static int view_xml(w_t *w, const uint8_t *p, size_t n, int html) {
    xmlResetLastError();
    xmlDocPtr doc;
    if (html)
        doc = htmlReadMemory((const char *)p, (int)n, NULL, NULL,
                             HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR |
                                 HTML_PARSE_NOWARNING | HTML_PARSE_NOBLANKS);
    else
        doc = xmlReadMemory((const char *)p, (int)n, NULL, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                XML_PARSE_NOBLANKS | XML_PARSE_NOCDATA);
    if (doc == NULL || (html && xmlDocGetRootElement(doc) == NULL)) {
        xml_reason(w, html ? "HTML" : "XML");
        xmlFreeDoc(doc);
        return -1;
    }
    xmlChar *mem = NULL;
    int len = 0;
    if (html) {
        /* written back in UTF-8, the text as it came: htmlDocDumpMemory
         * writes through libxml2's "HTML" encoder unless an old-style
         * <meta http-equiv> names a charset, and that made every
         * non-ASCII character an entity (&eacute;, &#20013;) */
        xmlOutputBufferPtr out = xmlAllocOutputBuffer(NULL);
        if (out != NULL) {
            htmlDocContentDumpFormatOutput(out, doc, NULL, 1);
            xmlOutputBufferFlush(out);
            len = (int)xmlOutputBufferGetSize(out);
            mem = xmlStrndup(xmlOutputBufferGetContent(out), len);
            xmlOutputBufferClose(out);
        }
    } else {
        xmlDocDumpFormatMemoryEnc(doc, &mem, &len, "UTF-8", 1);
    }
    xmlFreeDoc(doc);
    if (mem == NULL)
        return fail(w, "libxml2 could not write the document back");
    const uint8_t *s = mem;
    size_t m = (size_t)len;
    /* libxml2 writes an XML declaration: leave it out */
    if (!html && m > 5 && memcmp(s, "<?xml", 5) == 0) {
        const uint8_t *e = memchr(s, '\n', m);
        if (e) {
            m -= (size_t)(e + 1 - s);
            s = e + 1;
        }
    }
    for (size_t i = 0; i < m;) {
        /* tags in colour, everything escaped */
        if (s[i] == '<') {
            const uint8_t *e = memchr(s + i, '>', m - i);
            size_t k = e ? (size_t)(e - (s + i)) + 1 : m - i;
            col(w, "34");
            w_esc(w, s + i, k);
            col_off(w);
            i += k;
        } else {
            const uint8_t *e = memchr(s + i, '<', m - i);
            size_t k = e ? (size_t)(e - (s + i)) : m - i;
            w_esc(w, s + i, k);
            i += k;
        }
    }
    if (m == 0 || s[m - 1] != '\n')
        fputc('\n', w->f);
    xmlFree(mem);
    return 0;
}

/* ---- css, javascript: re-indented, never run ---- */

static int view_code(w_t *w, const uint8_t *p, size_t n, int js) {
    size_t sample = n > 4096 ? 4096 : n;
    if (!reel_looks_text(p, sample))
        return fail(w, "not text (binary bytes in the first %zu)", sample);
    int depth = 0, paren = 0, bol = 1;
    size_t i = 0;
#define BOL()                                                                                      \
    do {                                                                                           \
        if (bol) {                                                                                 \
            indent(w, depth);                                                                      \
            bol = 0;                                                                               \
        }                                                                                          \
    } while (0)
#define NL()                                                                                       \
    do {                                                                                           \
        if (!bol)                                                                                  \
            fputc('\n', w->f);                                                                     \
        bol = 1;                                                                                   \
    } while (0)
    while (i < n) {
        uint8_t c = p[i];
        if (c == '\n') {
            NL();
            i++;
            continue;
        }
        if (bol && (c == ' ' || c == '\t' || c == '\r' || c == '\f')) {
            i++;
            continue;
        }
        if (c == '"' || c == '\'' || (js && c == '`')) {
            size_t j = i + 1;
            while (j < n && p[j] != c && (c == '`' || p[j] != '\n'))
                j += p[j] == '\\' && j + 1 < n ? 2 : 1;
            if (j < n && p[j] == c)
                j++;
            BOL();
            col(w, "32");
            w_esc(w, p + i, j - i);
            col_off(w);
            i = j;
            continue;
        }
        if (c == '/' && i + 1 < n && (p[i + 1] == '*' || (js && p[i + 1] == '/'))) {
            const uint8_t *e;
            size_t j;
            if (p[i + 1] == '*') {
                e = memmem(p + i + 2, n - i - 2, "*/", 2);
                j = e ? (size_t)(e - p) + 2 : n;
            } else {
                e = memchr(p + i, '\n', n - i);
                j = e ? (size_t)(e - p) : n;
            }
            BOL();
            col(w, "90");
            w_esc(w, p + i, j - i);
            col_off(w);
            i = j;
            continue;
        }
        if (c == '{') {
            BOL();
            fputc('{', w->f);
            depth++;
            NL();
        } else if (c == '}') {
            NL();
            if (depth > 0)
                depth--;
            BOL();
            fputc('}', w->f);
            size_t j = i + 1;
            while (j < n && (p[j] == ' ' || p[j] == '\t'))
                j++;
            if (!(j < n && (p[j] == ';' || p[j] == ',' || p[j] == ')')))
                NL();
        } else if (c == ';') {
            BOL();
            fputc(';', w->f);
            if (paren == 0)
                NL();
        } else {
            if (c == '(' || c == '[')
                paren++;
            else if ((c == ')' || c == ']') && paren > 0)
                paren--;
            size_t j = i + 1;
            while (j < n && p[j] >= 0x80)
                j++;
            BOL();
            w_esc(w, p + i, j - i);
            i = j;
            continue;
        }
        i++;
    }
    NL();
#undef BOL
#undef NL
    return 0;
}

/* ---- urlencoded ---- */

/* Percent-decodes s[0..n) ('+' is a space) into out (n bytes at least). */
static size_t pct_decode(const uint8_t *s, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n + 0 && isxdigit(s[i + 1]) && isxdigit(s[i + 2])) {
            char h[3] = {(char)s[i + 1], (char)s[i + 2], 0};
            out[o++] = (uint8_t)strtoul(h, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

static int view_urlencoded(w_t *w, const uint8_t *p, size_t n) {
    if (n && p[0] == '?') {
        p++;
        n--;
    }
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return fail(w, "not URL-encoded: control byte 0x%02x at offset %zu", p[i], i);
    if (n == 0) {
        fputs("(no fields)\n", w->f);
        return 0;
    }
    uint8_t *buf = malloc(n + 1);
    if (buf == NULL)
        return fail(w, "out of memory");
    /* column width: the longest decoded name, at most 32 */
    size_t width = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0;
        while (i <= n) {
            const uint8_t *e = memchr(p + i, '&', n - i);
            size_t end = e ? (size_t)(e - p) : n;
            const uint8_t *eq = memchr(p + i, '=', end - i);
            size_t nend = eq ? (size_t)(eq - p) : end;
            if (end > i) {
                size_t k = pct_decode(p + i, nend - i, buf);
                if (pass == 0) {
                    size_t cols = 0;
                    for (size_t j = 0; j < k; j++)
                        cols += (buf[j] & 0xc0) != 0x80;
                    if (cols > width)
                        width = cols > 32 ? 32 : cols;
                } else {
                    size_t cols = 0;
                    for (size_t j = 0; j < k; j++)
                        cols += (buf[j] & 0xc0) != 0x80;
                    col(w, "34");
                    w_cell(w, buf, k);
                    col_off(w);
                    for (; cols < width; cols++)
                        fputc(' ', w->f);
                    fputs("  ", w->f);
                    if (eq) {
                        k = pct_decode(eq + 1, end - nend - 1, buf);
                        w_cell(w, buf, k);
                    } else {
                        fputs("(no value)", w->f);
                    }
                    fputc('\n', w->f);
                }
            }
            i = end + 1;
        }
    }
    free(buf);
    return 0;
}

/* ---- multipart ---- */

/* The boundary parameter of a Content-Type into out; 0 when there is none. */
static int boundary_of(const char *ct, char out[static 72]) {
    if (ct == NULL)
        return 0;
    for (const char *s = ct; *s; s++) {
        if (strncasecmp(s, "boundary=", 9) != 0 || (s != ct && s[-1] != ';' && s[-1] != ' '))
            continue;
        s += 9;
        int q = *s == '"';
        s += q;
        size_t o = 0;
        while (*s && o < 71 && (q ? *s != '"' : (*s != ';' && *s != ' ')))
            out[o++] = *s++;
        out[o] = '\0';
        return o > 0;
    }
    return 0;
}

typedef struct {
    const uint8_t *head, *body;
    size_t head_len, body_len;
    int closed; /* ended by a delimiter */
} part_t;

/* Walks the parts; with print off only checks. Returns parts found or -1. */
static int multipart_walk(w_t *w, const uint8_t *p, size_t n, const char *b, int print, int cut) {
    char delim[80];
    int dl = snprintf(delim, sizeof delim, "\r\n--%s", b);
    /* the first delimiter may start the body, without the CRLF */
    const uint8_t *d = NULL;
    if (n >= (size_t)dl - 2 && memcmp(p, delim + 2, (size_t)dl - 2) == 0)
        d = p;
    else if ((d = memmem(p, n, delim, (size_t)dl)) != NULL)
        d += 2;
    if (d == NULL)
        return fail(w, "not multipart: no delimiter line '--%s'", b);
    size_t pos = (size_t)(d - p) + (size_t)dl - 2;
    int count = 0;
    for (;;) {
        if (pos + 2 <= n && p[pos] == '-' && p[pos + 1] == '-')
            break; /* close delimiter */
        while (pos < n && (p[pos] == ' ' || p[pos] == '\t'))
            pos++;
        if (pos + 2 <= n && p[pos] == '\r' && p[pos + 1] == '\n')
            pos += 2;
        else if (pos < n && p[pos] == '\n')
            pos++;
        else if (pos >= n) {
            if (count == 0)
                return fail(w, "not multipart: the body ends after the first delimiter");
            break;
        } else
            return fail(w, "not multipart: junk after the delimiter at offset %zu", pos);
        if (count >= PARTS_MAX) {
            if (print)
                fprintf(w->f, "(more than %d parts: the rest are not listed)\n", PARTS_MAX);
            break;
        }
        part_t pt = {.head = p + pos};
        const uint8_t *he = memmem(p + pos, n - pos, "\r\n\r\n", 4);
        size_t hl = 4;
        if (pos + 2 <= n && p[pos] == '\r' && p[pos + 1] == '\n') {
            he = p + pos; /* no headers */
            hl = 2;
        }
        if (he == NULL) {
            if (!cut)
                return fail(w, "not multipart: part %d has no end to its headers", count + 1);
            pt.head_len = n - pos;
            pt.body = p + n;
        } else {
            pt.head_len = (size_t)(he - (p + pos));
            pt.body = he + hl;
        }
        const uint8_t *nd = memmem(pt.body, (size_t)(p + n - pt.body), delim, (size_t)dl);
        pt.body_len = nd ? (size_t)(nd - pt.body) : (size_t)(p + n - pt.body);
        pt.closed = nd != NULL;
        count++;
        if (print) {
            col(w, "1");
            fprintf(w->f, "part %d", count);
            col_off(w);
            fprintf(w->f, ": %zu bytes%s\n", pt.body_len,
                    pt.closed ? ""
                    : cut     ? " (cut)"
                              : " (no closing delimiter)");
            const uint8_t *h = pt.head, *he2 = pt.head + pt.head_len;
            while (h < he2) {
                const uint8_t *e = memchr(h, '\n', (size_t)(he2 - h));
                size_t k = e ? (size_t)(e - h) : (size_t)(he2 - h);
                size_t kk = k && h[k - 1] == '\r' ? k - 1 : k;
                fputs("  ", w->f);
                const uint8_t *colon = memchr(h, ':', kk);
                if (colon) {
                    col(w, "34");
                    w_cell(w, h, (size_t)(colon - h));
                    col_off(w);
                    w_cell(w, colon, kk - (size_t)(colon - h));
                } else {
                    w_cell(w, h, kk);
                }
                fputc('\n', w->f);
                h += k + 1;
            }
            if (pt.body_len > 0 && pt.body_len <= 200 && reel_looks_text(pt.body, pt.body_len) &&
                !memchr(pt.body, 0, pt.body_len)) {
                fputs("  = ", w->f);
                w_cell(w, pt.body, pt.body_len);
                fputc('\n', w->f);
            }
        }
        if (!nd)
            break;
        pos = (size_t)(nd - p) + (size_t)dl;
    }
    return count;
}

static int view_multipart(w_t *w, const char *ct, const uint8_t *p, size_t n, int cut) {
    char b[72];
    if (!boundary_of(ct, b)) {
        /* none given: the first line, if it looks like a delimiter */
        size_t k = 0;
        while (k < n && k < 72 && p[k] != '\r' && p[k] != '\n')
            k++;
        if (k < 3 || k > 72 || p[0] != '-' || p[1] != '-')
            return fail(w, "not multipart: no boundary in the Content-Type");
        memcpy(b, p + 2, k - 2);
        b[k - 2] = '\0';
    }
    if (multipart_walk(w, p, n, b, 0, cut) < 0)
        return -1;
    multipart_walk(w, p, n, b, 1, cut);
    return 0;
}

/* ---- protobuf (no schema), grpc ---- */

static int pb_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v) {
    uint64_t r = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= n)
            return -1;
        uint8_t b = p[(*pos)++];
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Fields at the top level of p[0..n), or -1 (w->why says why when w). */
static long pb_check(w_t *w, const uint8_t *p, size_t n) {
    size_t pos = 0;
    long count = 0;
    while (pos < n) {
        size_t at = pos;
        uint64_t key, v;
        if (pb_varint(p, n, &pos, &key) < 0)
            return w ? fail(w, "not protobuf: bad field key at offset %zu", at) : -1;
        uint64_t field = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        if (field == 0 || field > 536870911)
            return w ? fail(w, "not protobuf: field number %" PRIu64 " at offset %zu", field, at)
                     : -1;
        switch (wt) {
        case 0:
            if (pb_varint(p, n, &pos, &v) < 0)
                return w ? fail(w, "not protobuf: bad varint at offset %zu", pos) : -1;
            break;
        case 1:
        case 5: {
            size_t k = wt == 1 ? 8 : 4;
            if (n - pos < k)
                return w ? fail(w, "not protobuf: field %" PRIu64 " cut short at offset %zu", field,
                                at)
                         : -1;
            pos += k;
            break;
        }
        case 2:
            if (pb_varint(p, n, &pos, &v) < 0 || v > n - pos)
                return w ? fail(w,
                                "not protobuf: field %" PRIu64 " length runs past the end "
                                "(offset %zu)",
                                field, at)
                         : -1;
            pos += (size_t)v;
            break;
        default:
            return w ? fail(w, "not protobuf: wire type %u at offset %zu", wt, at) : -1;
        }
        count++;
    }
    return count;
}

static int printable(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        if (p[i] >= 0x80) {
            size_t k = utf8_len(p + i, n - i);
            if (k == 0)
                return 0;
            i += k;
        } else if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\t' && p[i] != '\r') {
            return 0;
        } else if (p[i] == 0x7f) {
            return 0;
        } else {
            i++;
        }
    }
    return 1;
}

static const reel_pt_field_t *pb_field(const reel_proto_t *proto, int msg, uint64_t number) {
    if (proto == NULL || msg < 0 || (size_t)msg >= proto->n_messages)
        return NULL;
    const reel_pt_message_t *m = &proto->messages[msg];
    for (size_t i = 0; i < m->n_fields; i++)
        if (m->fields[i].number == number)
            return &m->fields[i];
    return NULL;
}

/* The wire type a declared type is sent with (packed repeated aside). */
static unsigned pb_wire_of(reel_pt_type t) {
    switch (t) {
    case REEL_PT_DOUBLE:
    case REEL_PT_FIXED64:
    case REEL_PT_SFIXED64:
        return 1;
    case REEL_PT_FLOAT:
    case REEL_PT_FIXED32:
    case REEL_PT_SFIXED32:
        return 5;
    case REEL_PT_STRING:
    case REEL_PT_BYTES:
    case REEL_PT_MESSAGE:
        return 2;
    case REEL_PT_UNRESOLVED:
        return 9;
    default:
        return 0;
    }
}

/* A scalar of declared type t from its wire value x (wire type 0, 1 or 5). */
static void pb_scalar(w_t *w, const reel_proto_t *proto, const reel_pt_field_t *f, uint64_t x) {
    col(w, "36");
    switch (f->type) {
    case REEL_PT_INT32:
        fprintf(w->f, "%" PRId32, (int32_t)(uint32_t)x);
        break;
    case REEL_PT_INT64:
    case REEL_PT_SFIXED64:
        fprintf(w->f, "%" PRId64, (int64_t)x);
        break;
    case REEL_PT_SFIXED32:
        fprintf(w->f, "%" PRId32, (int32_t)(uint32_t)x);
        break;
    case REEL_PT_SINT32:
    case REEL_PT_SINT64:
        fprintf(w->f, "%" PRId64, (x & 1) ? -(int64_t)(x >> 1) - 1 : (int64_t)(x >> 1));
        break;
    case REEL_PT_BOOL:
        fputs(x ? "true" : "false", w->f);
        break;
    case REEL_PT_DOUBLE: {
        double d;
        memcpy(&d, &x, sizeof d);
        fprintf(w->f, "%.17g", d);
        break;
    }
    case REEL_PT_FLOAT: {
        uint32_t y = (uint32_t)x;
        float fl;
        memcpy(&fl, &y, sizeof fl);
        fprintf(w->f, "%.9g", (double)fl);
        break;
    }
    case REEL_PT_ENUM: {
        const reel_pt_enum_t *e = &proto->enums[f->ref];
        const char *name = NULL;
        for (size_t i = 0; i < e->n_values && !name; i++)
            if (e->values[i].number == (int32_t)(uint32_t)x)
                name = e->values[i].name;
        if (name)
            fprintf(w->f, "%s (%" PRId32 ")", name, (int32_t)(uint32_t)x);
        else
            fprintf(w->f, "%" PRId32, (int32_t)(uint32_t)x);
        break;
    }
    default:
        fprintf(w->f, "%" PRIu64, x);
        break;
    }
    col_off(w);
}

/* A packed repeated scalar: "[1, 2, 3]"; 0 when the bytes do not fit. */
static int pb_packed(w_t *w, const reel_proto_t *proto, const reel_pt_field_t *f, const uint8_t *s,
                     size_t len) {
    unsigned wt = pb_wire_of(f->type);
    size_t pos = 0, count = 0;
    while (pos < len) { /* check first */
        uint64_t x;
        if (wt == 0) {
            if (pb_varint(s, len, &pos, &x) < 0)
                return 0;
        } else {
            size_t k = wt == 1 ? 8 : 4;
            if (len - pos < k)
                return 0;
            pos += k;
        }
        count++;
    }
    fputs(": [", w->f);
    pos = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t x = 0;
        if (wt == 0) {
            pb_varint(s, len, &pos, &x);
        } else {
            size_t k = wt == 1 ? 8 : 4;
            for (size_t j = k; j-- > 0;)
                x = (x << 8) | s[pos + j];
            pos += k;
        }
        if (i)
            fputs(", ", w->f);
        pb_scalar(w, proto, f, x);
    }
    fputs("]\n", w->f);
    return 1;
}

/* Fields of p[0..n) (checked by pb_check), by the schema's message msg
 * when there is one (proto NULL or msg -1: none). */
static void pb_print(w_t *w, const uint8_t *p, size_t n, int depth, const reel_proto_t *proto,
                     int msg) {
    size_t pos = 0;
    while (pos < n) {
        uint64_t key, v = 0;
        if (pb_varint(p, n, &pos, &key) < 0)
            return; /* checked before */
        uint64_t field = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        const reel_pt_field_t *f = pb_field(proto, msg, field);
        indent(w, depth);
        col(w, "34");
        if (f)
            fputs(f->name, w->f);
        else
            fprintf(w->f, "%" PRIu64, field);
        col_off(w);
        if (f && pb_wire_of(f->type) == wt && wt != 2) {
            uint64_t x = 0;
            if (wt == 0) {
                pb_varint(p, n, &pos, &x);
            } else {
                size_t k = wt == 1 ? 8 : 4;
                for (size_t j = k; j-- > 0;)
                    x = (x << 8) | p[pos + j];
                pos += k;
            }
            fputs(": ", w->f);
            pb_scalar(w, proto, f, x);
            fputc('\n', w->f);
            continue;
        }
        if (f && wt == 2) {
            size_t save = pos;
            pb_varint(p, n, &pos, &v);
            const uint8_t *s = p + pos;
            size_t len = (size_t)v;
            int done = 1;
            if (f->type == REEL_PT_STRING) {
                fputs(": ", w->f);
                col(w, "32");
                fputc('"', w->f);
                w_cell(w, s, len);
                fputc('"', w->f);
                col_off(w);
                fputc('\n', w->f);
            } else if (f->type == REEL_PT_MESSAGE && depth < PB_DEPTH_MAX &&
                       pb_check(NULL, s, len) >= 0) {
                fputs(" {\n", w->f);
                pb_print(w, s, len, depth + 1, proto, f->ref);
                indent(w, depth);
                fputs("}\n", w->f);
            } else if (f->type != REEL_PT_BYTES && f->type != REEL_PT_MESSAGE &&
                       f->type != REEL_PT_UNRESOLVED && f->type != REEL_PT_STRING && f->repeated &&
                       pb_packed(w, proto, f, s, len)) {
            } else {
                done = 0;
            }
            if (done) {
                pos += len;
                continue;
            }
            pos = save;
        }
        if (wt == 0) {
            pb_varint(p, n, &pos, &v);
            fprintf(w->f, ": %" PRIu64, v);
            if (v & 1)
                fprintf(w->f, "  (sint %" PRId64 ")", -(int64_t)(v >> 1) - 1);
            else if (v > INT64_MAX)
                fprintf(w->f, "  (int %" PRId64 ")", (int64_t)v);
            fputc('\n', w->f);
        } else if (wt == 1) {
            uint64_t x = 0;
            for (int i = 7; i >= 0; i--)
                x = (x << 8) | p[pos + (size_t)i];
            double d;
            memcpy(&d, &x, sizeof d);
            fprintf(w->f, ": fixed64 0x%016" PRIx64 "  (double %g)\n", x, d);
            pos += 8;
        } else if (wt == 5) {
            uint32_t x = 0;
            for (int i = 3; i >= 0; i--)
                x = (x << 8) | p[pos + (size_t)i];
            float fl;
            memcpy(&fl, &x, sizeof fl);
            fprintf(w->f, ": fixed32 0x%08" PRIx32 "  (float %g)\n", x, (double)fl);
            pos += 4;
        } else {
            pb_varint(p, n, &pos, &v);
            const uint8_t *s = p + pos;
            size_t len = (size_t)v;
            pos += len;
            if (len > 0 && depth < PB_DEPTH_MAX && !printable(s, len) &&
                pb_check(NULL, s, len) > 0) {
                fputs(" {\n", w->f);
                pb_print(w, s, len, depth + 1, NULL, -1);
                indent(w, depth);
                fputs("}\n", w->f);
            } else if (printable(s, len)) {
                fputs(": ", w->f);
                col(w, "32");
                fputc('"', w->f);
                w_cell(w, s, len);
                fputc('"', w->f);
                col_off(w);
                fputc('\n', w->f);
            } else {
                fprintf(w->f, ": bytes (%zu) ", len);
                size_t k = len > 32 ? 32 : len;
                for (size_t i = 0; i < k; i++)
                    fprintf(w->f, "%02x", s[i]);
                fputs(len > k ? "...\n" : "\n", w->f);
            }
        }
    }
}

static int view_protobuf(w_t *w, const uint8_t *p, size_t n, const reel_proto_t *proto, int msg) {
    if (pb_check(w, p, n) < 0)
        return -1;
    if (proto && msg >= 0) {
        col(w, "1");
        fputs(proto->messages[msg].full_name, w->f);
        col_off(w);
        fputc('\n', w->f);
    }
    if (n == 0)
        fputs("(empty message)\n", w->f);
    pb_print(w, p, n, 0, proto, msg);
    return 0;
}

/* A gRPC message compressed with gzip (or zlib), the grpc-encoding nearly
 * every client uses: inflated into a new buffer of at most max bytes (*out,
 * free()); 0 on success, -1 when it is not gzip or inflates past max. */
static int grpc_inflate(const uint8_t *p, size_t n, size_t max, uint8_t **out, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 32 + 15) != Z_OK) /* gzip or zlib, detected */
        return -1;
    size_t cap = n * 4 + 1024, len = 0;
    if (max == 0)
        max = 1;
    if (cap > max)
        cap = max;
    uint8_t *buf = malloc(cap);
    int rc = buf ? Z_OK : Z_MEM_ERROR;
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    while (rc == Z_OK) {
        if (len == cap) {
            if (cap == max)
                break;
            cap = cap * 2 > max ? max : cap * 2;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL)
                break;
            buf = nb;
        }
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (rc == Z_BUF_ERROR && z.avail_out > 0)
            break; /* input ended early */
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

static int view_grpc(w_t *w, const uint8_t *p, size_t n, int cut, const reel_proto_t *proto,
                     int msg) {
    size_t pos = 0;
    int count = 0;
    size_t budget = REEL_VIEW_MAX; /* what the body's compressed messages may inflate to */
    while (pos < n) {              /* check the framing first */
        if (n - pos < 5) {
            if (cut)
                break;
            return fail(w, "not gRPC: %zu bytes after the last message, a prefix is 5", n - pos);
        }
        if (p[pos] & 0x7e)
            return fail(w, "not gRPC: flags 0x%02x at offset %zu", p[pos], pos);
        uint32_t len = (uint32_t)p[pos + 1] << 24 | (uint32_t)p[pos + 2] << 16 |
                       (uint32_t)p[pos + 3] << 8 | p[pos + 4];
        if (len > n - pos - 5 && !cut)
            return fail(w, "not gRPC: message at offset %zu says %" PRIu32 " bytes, %zu follow",
                        pos, len, n - pos - 5);
        pos += 5 + (len > n - pos - 5 ? n - pos - 5 : len);
        count++;
    }
    if (count == 0)
        fputs("(no messages)\n", w->f);
    pos = 0;
    for (int i = 1; pos + 5 <= n; i++) {
        uint8_t flags = p[pos];
        uint32_t len = (uint32_t)p[pos + 1] << 24 | (uint32_t)p[pos + 2] << 16 |
                       (uint32_t)p[pos + 3] << 8 | p[pos + 4];
        size_t have = len > n - pos - 5 ? n - pos - 5 : len;
        const uint8_t *m = p + pos + 5;
        col(w, "1");
        fprintf(w->f, "%s %d", flags & 0x80 ? "trailers" : "message", i);
        col_off(w);
        if (proto && msg >= 0 && !(flags & 0x80))
            fprintf(w->f, " (%s)", proto->messages[msg].full_name);
        fprintf(w->f, ": %" PRIu32 " bytes%s%s\n", len, flags & 1 ? ", compressed" : "",
                have < len ? " (cut)" : "");
        if (flags & 0x80) {
            w_esc(w, m, have);
            if (have && m[have - 1] != '\n')
                fputc('\n', w->f);
        } else if (flags & 1) {
            uint8_t *plain = NULL;
            size_t plen = 0;
            w_t sub = *w;
            int inflated = grpc_inflate(m, have, budget, &plain, &plen) == 0;
            if (inflated)
                budget -= plen;
            if (!inflated) {
                fprintf(w->f,
                        "(compressed, not with gzip, or cut, or more than the %zu bytes "
                        "left to inflate in this body: shown as hex)\n",
                        budget);
                hex(w, m, have);
            } else if (pb_check(&sub, plain, plen) < 0) {
                fputc('(', w->f);
                w_cell(w, sub.why, strlen(sub.why));
                fprintf(w->f, "; %zu bytes once inflated, shown as hex)\n", plen);
                hex(w, plain, plen);
            } else {
                fprintf(w->f, "  (gzip, %zu bytes inflated)\n", plen);
                pb_print(w, plain, plen, 1, proto, msg);
            }
            free(plain);
        } else {
            w_t sub = *w;
            if (pb_check(&sub, m, have) < 0) {
                fputc('(', w->f);
                w_cell(w, sub.why, strlen(sub.why));
                fputs("; shown as hex)\n", w->f);
                hex(w, m, have);
            } else {
                pb_print(w, m, have, 1, proto, msg);
            }
        }
        pos += 5 + have;
    }
    return 0;
}

/* ---- image ---- */

static uint32_t be16(const uint8_t *p) {
    return (uint32_t)p[0] << 8 | p[1];
}
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le16(const uint8_t *p) {
    return (uint32_t)p[1] << 8 | p[0];
}
static uint32_t le24(const uint8_t *p) {
    return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static int view_image(w_t *w, const uint8_t *p, size_t n) {
    const char *fmt = NULL;
    uint32_t wd = 0, ht = 0;
    char extra[64] = "";
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) {
        if (n < 26 || memcmp(p + 12, "IHDR", 4) != 0)
            return fail(w, "PNG signature but no IHDR chunk after it");
        static const char *const ct[] = {"grey", "?", "RGB", "palette", "grey+alpha", "?", "RGBA"};
        fmt = "PNG";
        wd = be32(p + 16);
        ht = be32(p + 20);
        snprintf(extra, sizeof extra, ", %u-bit %s", p[24], p[25] < 7 ? ct[p[25]] : "?");
    } else if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0)) {
        if (n < 10)
            return fail(w, "GIF signature but no screen size");
        fmt = "GIF";
        wd = le16(p + 6);
        ht = le16(p + 8);
    } else if (n >= 3 && memcmp(p, "\xff\xd8\xff", 3) == 0) {
        size_t pos = 2;
        while (fmt == NULL) {
            while (pos < n && p[pos] == 0xff && pos + 1 < n && p[pos + 1] == 0xff)
                pos++;
            if (pos + 4 > n || p[pos] != 0xff)
                return fail(w, "JPEG without a frame header (SOF) before offset %zu", pos);
            uint8_t m = p[pos + 1];
            if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
                pos += 2;
                continue;
            }
            if (m == 0xd9 || m == 0xda)
                return fail(w, "JPEG without a frame header (SOF)");
            uint32_t len = be16(p + pos + 2);
            if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
                if (pos + 9 > n || len < 7)
                    return fail(w, "JPEG frame header cut short");
                fmt = "JPEG";
                ht = be16(p + pos + 5);
                wd = be16(p + pos + 7);
                snprintf(extra, sizeof extra, ", %s", m == 0xc2 ? "progressive" : "baseline");
                break;
            }
            if (len < 2)
                return fail(w, "JPEG segment length %u at offset %zu", len, pos);
            pos += 2 + len;
        }
    } else if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
        fmt = "WebP";
        if (n >= 30 && memcmp(p + 12, "VP8 ", 4) == 0 && memcmp(p + 23, "\x9d\x01\x2a", 3) == 0) {
            wd = le16(p + 26) & 0x3fff;
            ht = le16(p + 28) & 0x3fff;
            snprintf(extra, sizeof extra, ", lossy");
        } else if (n >= 25 && memcmp(p + 12, "VP8L", 4) == 0 && p[20] == 0x2f) {
            uint32_t b = (uint32_t)p[21] | (uint32_t)p[22] << 8 | (uint32_t)p[23] << 16 |
                         (uint32_t)p[24] << 24;
            wd = (b & 0x3fff) + 1;
            ht = ((b >> 14) & 0x3fff) + 1;
            snprintf(extra, sizeof extra, ", lossless");
        } else if (n >= 30 && memcmp(p + 12, "VP8X", 4) == 0) {
            wd = le24(p + 24) + 1;
            ht = le24(p + 27) + 1;
            snprintf(extra, sizeof extra, ", extended");
        } else {
            return fail(w, "WebP without a VP8, VP8L or VP8X header");
        }
    } else {
        return fail(w, "not a PNG, JPEG, GIF or WebP image");
    }
    col(w, "1");
    fprintf(w->f, "%s image", fmt);
    col_off(w);
    fprintf(w->f, ": %" PRIu32 " x %" PRIu32 " pixels%s, %zu bytes\n", wd, ht, extra, n);
    return 0;
}

/* ---- msgpack (msgpack-c) ---- */

/* Checks the framing before msgpack-c sees it: every header complete and no
 * array or map claiming more elements than bytes remain (msgpack-c would
 * allocate what a header claims). Returns objects at the top level or -1. */
static long mp_check(w_t *w, const uint8_t *p, size_t n) {
    size_t pos = 0;
    long top = 0;
    uint64_t pending = 0, total = 0;
    while (pos < n || pending > 0) {
        if (pending == 0) {
            pending = 1;
            top++;
        }
        if (pos >= n)
            return fail(w, "not msgpack: the body ends inside an object");
        size_t at = pos;
        uint8_t c = p[pos++];
        uint64_t skip = 0, items = 0;
        size_t lenb = 0; /* bytes of a length field */
        int ext = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        } else if (c <= 0x8f) {
            items = 2u * (c & 0x0f);
        } else if (c <= 0x9f) {
            items = c & 0x0f;
        } else if (c <= 0xbf) {
            skip = c & 0x1f;
        } else if (c == 0xc1) {
            return fail(w, "not msgpack: byte 0xc1 at offset %zu", at);
        } else if (c >= 0xc4 && c <= 0xc6) {
            lenb = (size_t)1 << (c - 0xc4);
        } else if (c >= 0xc7 && c <= 0xc9) {
            lenb = (size_t)1 << (c - 0xc7);
            ext = 1;
        } else if (c == 0xca || c == 0xcb) {
            skip = c == 0xca ? 4 : 8;
        } else if (c >= 0xcc && c <= 0xd3) {
            skip = (uint64_t)1 << ((c - 0xcc) & 3);
        } else if (c >= 0xd4 && c <= 0xd8) {
            skip = 1 + ((uint64_t)1 << (c - 0xd4));
        } else if (c >= 0xd9 && c <= 0xdb) {
            lenb = (size_t)1 << (c - 0xd9);
        } else { /* 0xdc..0xdf: array16/32, map16/32 */
            lenb = c == 0xdc || c == 0xde ? 2 : 4;
        }
        if (lenb) {
            if (n - pos < lenb)
                return fail(w, "not msgpack: length cut short at offset %zu", at);
            uint64_t v = 0;
            for (size_t i = 0; i < lenb; i++)
                v = v << 8 | p[pos + i];
            pos += lenb;
            if (c >= 0xdc)
                items = c >= 0xde ? 2 * v : v;
            else
                skip = v + (uint64_t)ext;
        }
        if (skip > n - pos)
            return fail(w, "not msgpack: object at offset %zu runs past the end", at);
        pos += (size_t)skip;
        pending--;
        if (items > n - pos)
            return fail(w,
                        "not msgpack: container at offset %zu claims %" PRIu64
                        " elements, %zu bytes follow",
                        at, items, n - pos);
        pending += items;
        total += items;
        if (total > MP_ITEMS_MAX)
            return fail(w, "msgpack: more than %d elements, not shown", MP_ITEMS_MAX);
        if (pending > n - pos)
            return fail(w, "not msgpack: more elements claimed than bytes follow (offset %zu)", at);
    }
    return top;
}

static void mp_put(w_t *w, const msgpack_object *o, int depth) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
    case MSGPACK_OBJECT_BOOLEAN:
        col(w, "35");
        fputs(o->type == MSGPACK_OBJECT_NIL ? "null" : o->via.boolean ? "true" : "false", w->f);
        col_off(w);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        col(w, "36");
        fprintf(w->f, "%" PRIu64, o->via.u64);
        col_off(w);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        col(w, "36");
        fprintf(w->f, "%" PRId64, o->via.i64);
        col_off(w);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        col(w, "36");
        fprintf(w->f, "%.17g", o->via.f64);
        col_off(w);
        break;
    case MSGPACK_OBJECT_STR:
        col(w, "32");
        json_str(w, o->via.str.ptr, o->via.str.size);
        col_off(w);
        break;
    case MSGPACK_OBJECT_BIN:
    case MSGPACK_OBJECT_EXT: {
        const uint8_t *b =
            (const uint8_t *)(o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : o->via.ext.ptr);
        size_t len = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.ext.size;
        if (o->type == MSGPACK_OBJECT_BIN)
            fprintf(w->f, "bin(%zu) ", len);
        else
            fprintf(w->f, "ext(type %d, %zu) ", (int)o->via.ext.type, len);
        size_t k = len > 32 ? 32 : len;
        for (size_t i = 0; i < k; i++)
            fprintf(w->f, "%02x", b[i]);
        if (len > k)
            fputs("...", w->f);
        break;
    }
    case MSGPACK_OBJECT_ARRAY: {
        uint32_t m = o->via.array.size;
        if (m == 0) {
            fputs("[]", w->f);
            break;
        }
        fputs("[\n", w->f);
        for (uint32_t i = 0; i < m; i++) {
            indent(w, depth + 1);
            mp_put(w, &o->via.array.ptr[i], depth + 1);
            fputs(i + 1 < m ? ",\n" : "\n", w->f);
        }
        indent(w, depth);
        fputc(']', w->f);
        break;
    }
    case MSGPACK_OBJECT_MAP: {
        uint32_t m = o->via.map.size;
        if (m == 0) {
            fputs("{}", w->f);
            break;
        }
        fputs("{\n", w->f);
        for (uint32_t i = 0; i < m; i++) {
            indent(w, depth + 1);
            if (o->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR) {
                col(w, "34");
                json_str(w, o->via.map.ptr[i].key.via.str.ptr, o->via.map.ptr[i].key.via.str.size);
                col_off(w);
            } else {
                mp_put(w, &o->via.map.ptr[i].key, depth + 1);
            }
            fputs(": ", w->f);
            mp_put(w, &o->via.map.ptr[i].val, depth + 1);
            fputs(i + 1 < m ? ",\n" : "\n", w->f);
        }
        indent(w, depth);
        fputc('}', w->f);
        break;
    }
    default:
        fputs("?", w->f);
        break;
    }
}

static int view_msgpack(w_t *w, const uint8_t *p, size_t n) {
    if (mp_check(w, p, n) < 0)
        return -1;
    msgpack_unpacked u;
    /* first pass: msgpack-c must read it all (its nesting limit is 32) */
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        msgpack_unpacked_init(&u);
        while (off < n) {
            size_t at = off;
            msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)p, n, &off);
            if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES) {
                msgpack_unpacked_destroy(&u);
                return fail(w, "not msgpack: %s at offset %zu",
                            r == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory"
                            : r == MSGPACK_UNPACK_CONTINUE
                                ? "cut short"
                                : "msgpack-c cannot read it (nested too deep?)",
                            at);
            }
            if (pass == 1) {
                mp_put(w, &u.data, 0);
                fputc('\n', w->f);
            }
        }
        msgpack_unpacked_destroy(&u);
    }
    if (n == 0)
        fputs("(empty)\n", w->f);
    return 0;
}

/* ---- render ---- */

reel_view_kind reel_view_render(reel_view_kind kind, const char *content_type, const uint8_t *p,
                                size_t n, int cut, int flags, FILE *out) {
    return reel_view_render_schema(kind, content_type, p, n, cut, flags, NULL, out);
}

reel_view_kind reel_view_render_schema(reel_view_kind kind, const char *content_type,
                                       const uint8_t *p, size_t n, int cut, int flags,
                                       const reel_view_schema_t *schema, FILE *out) {
    return reel_view_render_part(kind, content_type, p, n, 0, cut, flags, schema, out);
}

/* The body's own hex dump: numbered from where the part starts in the body,
 * so an address is the same whichever part shows it. */
static void hex_at(w_t *w, const uint8_t *p, size_t n, uint64_t offset) {
    reel_hexdump_t h;
    reel_hexdump_init(&h, w->f);
    h.offset = offset;
    reel_hexdump_feed(&h, p, n);
    reel_hexdump_finish(&h);
}

reel_view_kind reel_view_render_part(reel_view_kind kind, const char *content_type,
                                     const uint8_t *p, size_t n, uint64_t offset, int cut,
                                     int flags, const reel_view_schema_t *schema, FILE *out) {
    w_t w = {.f = out, .flags = flags};
    const reel_proto_t *proto = schema ? schema->proto : NULL;
    int msg = proto && schema->message >= 0 && (size_t)schema->message < proto->n_messages
                  ? schema->message
                  : -1;
    static const uint8_t none[1];
    if (p == NULL)
        p = none, n = 0;
    int asked_auto = kind == REEL_VIEW_AUTO;
    if (kind == REEL_VIEW_WEBSOCKET) {
        fputs("(the websocket view shows messages; this body is shown by auto)\n", out);
        kind = REEL_VIEW_AUTO;
        asked_auto = 1;
    }
    if (kind == REEL_VIEW_AUTO)
        kind = reel_view_pick(content_type, p, n);
    int rc = 0;
    switch (kind) {
    case REEL_VIEW_RAW:
        w_esc(&w, p, n);
        if (n && p[n - 1] != '\n')
            fputc('\n', out);
        break;
    case REEL_VIEW_JSON:
        rc = view_json(&w, p, n);
        break;
    case REEL_VIEW_XML:
        rc = view_xml(&w, p, n, 0);
        break;
    case REEL_VIEW_HTML:
        rc = view_xml(&w, p, n, 1);
        break;
    case REEL_VIEW_CSS:
        rc = view_code(&w, p, n, 0);
        break;
    case REEL_VIEW_JAVASCRIPT:
        rc = view_code(&w, p, n, 1);
        break;
    case REEL_VIEW_URLENCODED:
        rc = view_urlencoded(&w, p, n);
        break;
    case REEL_VIEW_MULTIPART:
        rc = view_multipart(&w, content_type, p, n, cut);
        break;
    case REEL_VIEW_PROTOBUF:
        rc = view_protobuf(&w, p, n, proto, msg);
        break;
    case REEL_VIEW_GRPC:
        rc = view_grpc(&w, p, n, cut, proto, msg);
        break;
    case REEL_VIEW_IMAGE:
        rc = view_image(&w, p, n);
        break;
    case REEL_VIEW_MSGPACK:
        rc = view_msgpack(&w, p, n);
        break;
    default:
        kind = REEL_VIEW_HEX;
        hex_at(&w, p, n, offset);
        break;
    }
    if (rc < 0) {
        size_t sample = n > 4096 ? 4096 : n;
        int text = asked_auto && reel_looks_text(p, sample);
        /* a reason may quote the content: written escaped */
        fputc('(', out);
        w_cell(&w, w.why, strlen(w.why));
        fprintf(out, "%s; shown as %s)\n", cut ? ", perhaps because the body was cut" : "",
                text ? "text" : "hex");
        if (text) {
            kind = REEL_VIEW_RAW;
            w_esc(&w, p, n);
            if (n && p[n - 1] != '\n')
                fputc('\n', out);
        } else {
            kind = REEL_VIEW_HEX;
            hex_at(&w, p, n, offset);
        }
    }
    if (offset > 0 && n > 0)
        fprintf(out, "(%sthe view shows bytes %" PRIu64 " to %" PRIu64 " of the body%s)\n",
                cut ? "cut: " : "", offset, offset + n - (n > 0), cut ? "" : ", to its end");
    else if (cut && offset > 0) /* (asked past what is stored) */
        fprintf(out, "(cut: no byte of the body is stored from byte %" PRIu64 " on)\n", offset);
    else if (cut)
        fprintf(out, "(cut: the view shows the first %zu bytes of the body)\n", n);
    return kind;
}
