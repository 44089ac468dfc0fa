/* tnetstring reader: see tnetstring.h for the format and the contract.
 *
 * parse_value() handles one value whose bytes must lie within `avail`
 * bytes; containers call it for each item with what is left of their
 * payload, so a length that runs past its container is caught where it is
 * read. Recursion is bounded by max_depth, allocation by max_nodes (item
 * arrays grow by doubling, so at most twice the nodes counted). */
#include "session/tnetstring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

typedef struct {
    const uint8_t *base; /* start of the buffer offsets count from */
    size_t max_depth, max_nodes, nodes;
    reel_err_t *err;
} pctx_t;

const char *reel_tns_type_name(reel_tns_type t) {
    switch (t) {
    case REEL_TNS_NULL:
        return "null";
    case REEL_TNS_BOOL:
        return "a boolean";
    case REEL_TNS_INT:
        return "an integer";
    case REEL_TNS_FLOAT:
        return "a float";
    case REEL_TNS_BYTES:
        return "bytes";
    case REEL_TNS_STRING:
        return "a string";
    case REEL_TNS_LIST:
        return "a list";
    case REEL_TNS_DICT:
        return "a dict";
    }
    return "?";
}

/* A byte for a message: 'x' when printable, else \xNN. */
static const char *show_byte(uint8_t c, char buf[8]) {
    if (c >= 0x20 && c < 0x7f && c != '\'')
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "\\x%02x", c);
    return buf;
}

/* Prefix at buf: *hdr = digits + ':', *plen = payload length. */
static reel_rc read_prefix(const uint8_t *buf, size_t len, size_t off, const char *what,
                           size_t *hdr, size_t *plen, reel_err_t *err) {
    char b[8];
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9') {
        if (i == REEL_TNS_MAX_DIGITS)
            return reel_err_set(err, REEL_CORRUPT,
                                "byte %zu: %s: length prefix longer than %d digits", off, what,
                                REEL_TNS_MAX_DIGITS);
        v = v * 10 + (uint64_t)(buf[i] - '0');
        i++;
    }
    if (i == len)
        return REEL_NEED_MORE;
    if (i == 0)
        return reel_err_set(err, REEL_CORRUPT, "byte %zu: %s: expected a length digit, found %s",
                            off, what, show_byte(buf[0], b));
    if (buf[i] != ':')
        return reel_err_set(err, REEL_CORRUPT,
                            "byte %zu: %s: expected ':' after the length, found %s", off + i, what,
                            show_byte(buf[i], b));
    if (i > 1 && buf[0] == '0')
        return reel_err_set(err, REEL_CORRUPT, "byte %zu: %s: length prefix with a leading zero",
                            off, what);
    *hdr = i + 1;
    *plen = (size_t)v;
    return REEL_OK;
}

reel_rc reel_tns_frame(const uint8_t *buf, size_t len, size_t *total, reel_err_t *err) {
    size_t hdr = 0, plen = 0;
    reel_rc rc = read_prefix(buf, len, 0, "value", &hdr, &plen, err);
    if (rc == REEL_OK)
        *total = hdr + plen + 1;
    return rc;
}

static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int parse_int(const uint8_t *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int parse_float(const uint8_t *s, size_t n, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -1;
    for (size_t i = 0; i < n; i++) /* strtod would skip leading spaces; refuse them */
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-' || s[i] == '+' ||
              s[i] == 'e' || s[i] == 'E' || s[i] == 'i' || s[i] == 'n' || s[i] == 'f' ||
              s[i] == 'a'))
            return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    *out = strtod(buf, &end);
    return end == buf + n ? 0 : -1;
}

static void free_items(reel_tns_t *item, size_t n) {
    if (item == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free_items(item[i].item, item[i].type == REEL_TNS_DICT ? item[i].n * 2 : item[i].n);
    free(item);
}

/* Parses one value at p (avail bytes may hold it) into *v. top: a prefix
 * that runs past avail is NEED_MORE rather than CORRUPT. `what` names the
 * value's place for messages ("list item", "dict key", ...). */
static reel_rc parse_value(pctx_t *c, const uint8_t *p, size_t avail, size_t depth, int top,
                           const char *what, reel_tns_t *v, size_t *used) {
    size_t off = (size_t)(p - c->base);
    size_t hdr = 0, plen = 0;
    char b[8];
    memset(v, 0, sizeof *v);
    v->off = off;
    reel_rc rc = read_prefix(p, avail, off, what, &hdr, &plen, c->err);
    if (rc == REEL_NEED_MORE && !top)
        return reel_err_set(c->err, REEL_CORRUPT,
                            "byte %zu: %s: length prefix cut off by the end "
                            "of its container",
                            off, what);
    if (rc != REEL_OK)
        return rc;
    if (plen > avail - hdr || avail - hdr - plen < 1) {
        if (top)
            return REEL_NEED_MORE;
        return reel_err_set(c->err, REEL_CORRUPT,
                            "byte %zu: %s: length %zu runs past the end of its container (%zu "
                            "bytes left)",
                            off, what, plen, avail - hdr);
    }
    if (++c->nodes > c->max_nodes)
        return reel_err_set(c->err, REEL_LIMIT, "byte %zu: more than %zu values", off,
                            c->max_nodes);
    const uint8_t *d = p + hdr;
    uint8_t tag = d[plen];
    v->data = d;
    v->len = plen;
    *used = hdr + plen + 1;
    switch (tag) {
    case ',':
        v->type = REEL_TNS_BYTES;
        return REEL_OK;
    case ';':
        v->type = REEL_TNS_STRING;
        if (!utf8_valid(d, plen))
            return reel_err_set(c->err, REEL_CORRUPT, "byte %zu: %s: string is not valid UTF-8",
                                off, what);
        return REEL_OK;
    case '#':
        v->type = REEL_TNS_INT;
        if (parse_int(d, plen, &v->i) != 0)
            return reel_err_set(c->err, REEL_CORRUPT,
                                "byte %zu: %s: not an integer literal (or out of range): '%.*s'",
                                off, what, (int)(plen > 40 ? 40 : plen), (const char *)d);
        return REEL_OK;
    case '^':
        v->type = REEL_TNS_FLOAT;
        if (parse_float(d, plen, &v->f) != 0)
            return reel_err_set(c->err, REEL_CORRUPT, "byte %zu: %s: not a float literal: '%.*s'",
                                off, what, (int)(plen > 40 ? 40 : plen), (const char *)d);
        return REEL_OK;
    case '!':
        v->type = REEL_TNS_BOOL;
        if (plen == 4 && memcmp(d, "true", 4) == 0)
            v->i = 1;
        else if (plen == 5 && memcmp(d, "false", 5) == 0)
            v->i = 0;
        else
            return reel_err_set(c->err, REEL_CORRUPT,
                                "byte %zu: %s: not a boolean literal (true/false)", off, what);
        return REEL_OK;
    case '~':
        v->type = REEL_TNS_NULL;
        if (plen != 0)
            return reel_err_set(c->err, REEL_CORRUPT, "byte %zu: %s: null with a payload", off,
                                what);
        return REEL_OK;
    case ']':
    case '}':
        break;
    default:
        return reel_err_set(c->err, REEL_CORRUPT, "byte %zu: %s: unknown type tag %s",
                            off + hdr + plen, what, show_byte(tag, b));
    }
    int dict = tag == '}';
    v->type = dict ? REEL_TNS_DICT : REEL_TNS_LIST;
    if (depth + 1 > c->max_depth && plen > 0)
        return reel_err_set(c->err, REEL_LIMIT, "byte %zu: %s: nested deeper than %zu levels", off,
                            what, c->max_depth);
    size_t cap = 0, count = 0, pos = 0;
    rc = REEL_OK;
    while (pos < plen) {
        if (count == cap) {
            cap = cap ? cap * 2 : 4;
            v->item = reel_realloc(v->item, cap * sizeof *v->item);
        }
        size_t u = 0;
        const char *w = dict ? (count % 2 ? "dict value" : "dict key") : "list item";
        rc = parse_value(c, d + pos, plen - pos, depth + 1, 0, w, &v->item[count], &u);
        if (rc != REEL_OK) /* the failed item freed its own items */
            break;
        count++;
        pos += u;
    }
    if (rc == REEL_OK && dict && count % 2)
        rc =
            reel_err_set(c->err, REEL_CORRUPT, "byte %zu: %s: dict key without a value", off, what);
    v->n = dict ? count / 2 : count;
    if (rc != REEL_OK) {
        for (size_t i = 0; i < count; i++)
            free_items(v->item[i].item,
                       v->item[i].type == REEL_TNS_DICT ? v->item[i].n * 2 : v->item[i].n);
        free(v->item);
        v->item = NULL;
        v->n = 0;
    }
    return rc;
}

reel_rc reel_tns_parse(const uint8_t *buf, size_t len, size_t off, const reel_tns_limits_t *lim,
                       reel_tns_t **out, size_t *consumed, reel_err_t *err) {
    pctx_t c = {.base = buf,
                .max_depth = lim && lim->max_depth ? lim->max_depth : REEL_TNS_MAX_DEPTH,
                .max_nodes = lim && lim->max_nodes ? lim->max_nodes : REEL_TNS_MAX_NODES,
                .err = err};
    *out = NULL;
    if (off > len)
        return reel_err_set(err, REEL_INVALID, "offset %zu past the end (%zu bytes)", off, len);
    reel_tns_t *v = reel_calloc(1, sizeof *v);
    size_t used = 0;
    reel_rc rc = parse_value(&c, buf + off, len - off, 1, 1, "value", v, &used);
    if (rc != REEL_OK) {
        free(v);
        return rc;
    }
    *out = v;
    if (consumed)
        *consumed = used;
    return REEL_OK;
}

void reel_tns_free(reel_tns_t *v) {
    if (v == NULL)
        return;
    free_items(v->item, v->type == REEL_TNS_DICT ? v->n * 2 : v->n);
    free(v);
}

int reel_tns_is_text(const reel_tns_t *v) {
    return v != NULL && (v->type == REEL_TNS_BYTES || v->type == REEL_TNS_STRING);
}

const reel_tns_t *reel_tns_get(const reel_tns_t *d, const char *key) {
    if (d == NULL || d->type != REEL_TNS_DICT)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < d->n; i++) {
        const reel_tns_t *k = &d->item[2 * i];
        if (reel_tns_is_text(k) && k->len == kl && memcmp(k->data, key, kl) == 0)
            return &d->item[2 * i + 1];
    }
    return NULL;
}
