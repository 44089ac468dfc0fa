/* upstream_no_proxy's list; see noproxy.h. */
#include "base/noproxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

#define ENTRY_MAX 255 /* a DNS name's longest */

typedef enum { E_BAD, E_ALL, E_NAME, E_ADDR } entry_kind;

typedef struct {
    entry_kind kind;
    char name[ENTRY_MAX + 1]; /* E_NAME: without a leading "*." or "." */
    size_t name_len;
    int family;       /* E_ADDR: AF_INET or AF_INET6 */
    uint8_t addr[16]; /* ... network order */
    int prefix;       /* ... bits that must match (32 or 128: the address alone) */
} entry_t;

/* s[0..n) as an address, "[v6]" too: its family, or 0 when it is none. */
static int parse_addr(const char *s, size_t n, uint8_t addr[16]) {
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, buf, addr) == 1)
        return AF_INET6;
    return 0;
}

static bool name_char(char ch) {
    return isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.';
}

static entry_kind parse_entry(const char *s, size_t n, entry_t *e) {
    memset(e, 0, sizeof *e);
    if (n == 1 && s[0] == '*')
        return e->kind = E_ALL;
    const char *slash = memchr(s, '/', n);
    size_t an = slash ? (size_t)(slash - s) : n;
    if ((e->family = parse_addr(s, an, e->addr)) != 0) {
        int bits = e->family == AF_INET ? 32 : 128;
        e->prefix = bits;
        if (slash) {
            const char *d = slash + 1, *end = s + n;
            if (d == end || end - d > 3)
                return E_BAD;
            int v = 0;
            for (; d < end; d++) {
                if (!isdigit((unsigned char)*d))
                    return E_BAD;
                v = v * 10 + (*d - '0');
            }
            if (v > bits)
                return E_BAD;
            e->prefix = v;
        }
        return e->kind = E_ADDR;
    }
    if (slash)
        return E_BAD;
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    } else if (n >= 1 && s[0] == '.') {
        s++;
        n--;
    }
    if (n && s[n - 1] == '.')
        n--;
    if (n == 0 || n > ENTRY_MAX || s[0] == '.')
        return E_BAD;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]) || (s[i] == '.' && i + 1 < n && s[i + 1] == '.'))
            return E_BAD;
    memcpy(e->name, s, n);
    e->name_len = n;
    return e->kind = E_NAME;
}

/* Calls each on every entry of list in turn until it returns true; the
 * entry's text is s[0..n). Returns whether one did. */
static bool each_entry(const char *list, bool (*each)(const char *s, size_t n, void *ud),
                       void *ud) {
    const char *p = list;
    while (p && *p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        size_t n = 0;
        while (p[n] && p[n] != ',' && !isspace((unsigned char)p[n]))
            n++;
        if (n && each(p, n, ud))
            return true;
        p += n;
    }
    return false;
}

typedef struct {
    const char *host; /* without a trailing dot */
    size_t host_len;
    int family; /* the host as an address (0: a name) */
    uint8_t addr[16];
} host_t;

static bool prefix_equal(const uint8_t *a, const uint8_t *b, int bits) {
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

static bool entry_matches(const entry_t *e, const host_t *h) {
    switch (e->kind) {
    case E_ALL:
        return true;
    case E_ADDR:
        return h->family == e->family && prefix_equal(h->addr, e->addr, e->prefix);
    case E_NAME:
        if (h->family)
            return false;
        if (h->host_len == e->name_len)
            return strncasecmp(h->host, e->name, e->name_len) == 0;
        return h->host_len > e->name_len && h->host[h->host_len - e->name_len - 1] == '.' &&
               strncasecmp(h->host + h->host_len - e->name_len, e->name, e->name_len) == 0;
    case E_BAD:
        break;
    }
    return false;
}

struct reel_host_list {
    size_t n;
    entry_t e[];
};

typedef struct {
    reel_host_list_t *l;
    size_t cap;
} build_t;

static bool collect(const char *s, size_t n, void *ud) {
    build_t *b = ud;
    entry_t e;
    if (parse_entry(s, n, &e) == E_BAD)
        return false; /* (the config check refused it) */
    size_t have = b->l ? b->l->n : 0;
    if (have == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->l = reel_realloc(b->l, sizeof *b->l + b->cap * sizeof b->l->e[0]);
    }
    b->l->e[have] = e;
    b->l->n = have + 1;
    return false;
}

reel_host_list_t *reel_host_list_new(const char *list) {
    build_t b = {NULL, 0};
    each_entry(list, collect, &b);
    return b.l;
}

bool reel_host_list_match(const reel_host_list_t *l, const char *host) {
    if (l == NULL || host == NULL || host[0] == '\0')
        return false;
    host_t h = {.host = host, .host_len = strlen(host)};
    if (h.host[h.host_len - 1] == '.')
        h.host_len--;
    h.family = parse_addr(h.host, h.host_len, h.addr);
    for (size_t i = 0; i < l->n; i++)
        if (entry_matches(&l->e[i], &h))
            return true;
    return false;
}

void reel_host_list_free(reel_host_list_t *l) {
    free(l);
}

bool reel_no_proxy_match(const char *list, const char *host) {
    reel_host_list_t *l = reel_host_list_new(list);
    bool m = reel_host_list_match(l, host);
    reel_host_list_free(l);
    return m;
}

typedef struct {
    reel_err_t *err;
} check_t;

static bool entry_bad(const char *s, size_t n, void *ud) {
    check_t *c = ud;
    entry_t e;
    if (parse_entry(s, n, &e) != E_BAD)
        return false;
    reel_err_set(c->err, REEL_INVALID,
                 "'%.*s' is not a host name, an address or an address range (a.b.c.d/n)",
                 (int)(n > 80 ? 80 : n), s);
    return true;
}

reel_rc reel_no_proxy_check(const char *list, reel_err_t *err) {
    check_t c = {err};
    return each_entry(list, entry_bad, &c) ? REEL_INVALID : REEL_OK;
}
