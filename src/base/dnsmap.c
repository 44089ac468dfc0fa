/* dns_overrides; see dnsmap.h. */
#include "base/dnsmap.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

typedef struct {
    char *name;    /* lowercase, no trailing dot; for "*.x" the "x" */
    bool wildcard; /* "*.name": the names under it */
    int port;      /* connections to this port only (0: any) */
    char *addr;    /* without brackets */
    int to_port;   /* the port connected to instead (0: the same) */
    char *text;    /* the entry as given */
} entry_t;

struct reel_dns_map {
    entry_t *e;
    size_t n;
};

#define NAME_MAX_LEN 253

/* A port, 1..65535, all of s[0..n); 0 if it is not one. */
static int port_of(const char *s, size_t n) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || (i == 0 && s[i] == '0'))
            return 0;
        v = v * 10 + (s[i] - '0');
        if (v > 65535)
            return 0;
    }
    return v;
}

/* Parses entry into *e (owned); REEL_INVALID saying why. */
static reel_rc parse(const char *entry, entry_t *e, reel_err_t *err) {
    memset(e, 0, sizeof *e);
    const char *eq = strchr(entry, '=');
    if (eq == NULL)
        return reel_err_set(err, REEL_INVALID,
                            "dns_overrides entry '%.120s': not NAME=ADDRESS (as "
                            "\"api.example.com=10.0.0.5\")",
                            entry);
    const char *name = entry;
    size_t nlen = (size_t)(eq - entry);
    const char *colon = memchr(name, ':', nlen);
    if (colon) { /* NAME:PORT */
        e->port = port_of(colon + 1, (size_t)(eq - colon - 1));
        if (e->port == 0)
            return reel_err_set(err, REEL_INVALID,
                                "dns_overrides entry '%.120s': '%.*s' is not a port (1-65535)",
                                entry, (int)(eq - colon - 1 > 20 ? 20 : eq - colon - 1), colon + 1);
        nlen = (size_t)(colon - name);
    }
    bool wildcard = nlen > 2 && name[0] == '*' && name[1] == '.';
    if (wildcard) {
        name += 2;
        nlen -= 2;
    }
    if (nlen && name[nlen - 1] == '.')
        nlen--;
    int shown = (int)((colon ? colon : eq) - entry); /* (the name as given) */
    if (shown > 120)
        shown = 120;
    bool ok = nlen > 0 && nlen <= NAME_MAX_LEN && name[0] != '.' && name[0] != '-';
    for (size_t i = 0; ok && i < nlen; i++) {
        unsigned char c = (unsigned char)name[i];
        ok = isalnum(c) || c == '-' || c == '_' || (c == '.' && name[i + 1] != '.');
    }
    if (!ok)
        return reel_err_set(err, REEL_INVALID,
                            "dns_overrides entry '%.120s': '%.*s' is not a host name, nor "
                            "\"*.\" and one",
                            entry, shown, entry);
    /* ADDRESS, [IPv6], or with a port: IPv4:PORT, [IPv6]:PORT (a bare
     * IPv6 address takes none: its colons would be read as one) */
    const char *a = eq + 1;
    size_t alen = strlen(a);
    const char *p = NULL; /* its port */
    size_t plen = 0;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (close && close[1] == ':') {
            p = close + 2;
            plen = strlen(p);
        }
        if (close && (close[1] == '\0' || p)) {
            alen = (size_t)(close - a - 1);
            a++;
        }
    } else if (strchr(a, ':') == strrchr(a, ':') && strchr(a, ':')) {
        p = strchr(a, ':') + 1;
        plen = strlen(p);
        alen = (size_t)(p - 1 - a);
    }
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    bool addr = alen > 0 && alen < sizeof buf && memchr(a, '[', alen) == NULL;
    if (addr) {
        memcpy(buf, a, alen);
        buf[alen] = '\0';
        /* (IPv6 with a port only in brackets) */
        addr = inet_pton(AF_INET, buf, bin) == 1 ||
               ((p == NULL || eq[1] == '[') && inet_pton(AF_INET6, buf, bin) == 1);
    }
    if (!addr)
        return reel_err_set(err, REEL_INVALID,
                            "dns_overrides entry '%.120s': '%.60s' is not an IPv4 or IPv6 "
                            "address, nor one with a port (10.0.0.5:8443, [::1]:8443)",
                            entry, eq + 1);
    if (p && (e->to_port = port_of(p, plen)) == 0)
        return reel_err_set(err, REEL_INVALID,
                            "dns_overrides entry '%.120s': '%.20s' is not a port (1-65535)", entry,
                            p);
    e->name = reel_strndup(name, nlen);
    for (char *s = e->name; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    e->wildcard = wildcard;
    e->addr = reel_strdup(buf);
    e->text = reel_strdup(entry);
    return REEL_OK;
}

static void entry_free(entry_t *e) {
    free(e->name);
    free(e->addr);
    free(e->text);
}

reel_rc reel_dns_override_check(const char *entry, reel_err_t *err) {
    entry_t e;
    reel_rc rc = parse(entry, &e, err);
    entry_free(&e);
    return rc;
}

reel_rc reel_dns_map_new(const char *const *entries, size_t n, reel_dns_map_t **out,
                         reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return REEL_OK;
    reel_dns_map_t *m = reel_calloc(1, sizeof *m);
    m->e = reel_calloc(n, sizeof *m->e);
    for (size_t i = 0; i < n; i++) {
        if (parse(entries[i], &m->e[i], err) != REEL_OK) {
            reel_dns_map_free(m);
            return REEL_INVALID;
        }
        m->n = i + 1;
    }
    *out = m;
    return REEL_OK;
}

const char *reel_dns_map_find(const reel_dns_map_t *m, const char *host, int port,
                              const char **entry, int *to_port) {
    size_t hlen = host ? strlen(host) : 0;
    if (hlen && host[hlen - 1] == '.')
        hlen--;
    for (size_t i = 0; m && i < m->n; i++) {
        const entry_t *e = &m->e[i];
        size_t nlen = strlen(e->name);
        bool match = e->wildcard ? hlen > nlen + 1 && host[hlen - nlen - 1] == '.' &&
                                       strncasecmp(host + hlen - nlen, e->name, nlen) == 0
                                 : hlen == nlen && strncasecmp(host, e->name, nlen) == 0;
        if (match && (e->port == 0 || e->port == port)) {
            if (entry)
                *entry = e->text;
            if (to_port)
                *to_port = e->to_port ? e->to_port : port;
            return e->addr;
        }
    }
    return NULL;
}

void reel_dns_map_free(reel_dns_map_t *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        entry_free(&m->e[i]);
    free(m->e);
    free(m);
}
