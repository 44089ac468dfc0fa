/* Redaction of secrets: see redact.h for the rules. */
#include "session/redact.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

struct reel_redact {
    char **headers; /* lowercase */
    size_t n_headers;
    char **keys; /* lowercase */
    size_t n_keys;
};

static const char *const default_headers[] = {"authorization", "proxy-authorization", "cookie",
                                              "set-cookie"};
static const char *const default_keys[] = {
    "password", "passwd", "pwd",     "token",      "secret",    "apikey",      "api_key",
    "api-key",  "auth",   "session", "credential", "signature", "private_key", "access_key"};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int lc(int c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static char *lower_dup(const char *s) {
    char *d = reel_strdup(s);
    for (char *p = d; *p; p++)
        *p = (char)lc((unsigned char)*p);
    return d;
}

static int ieq(const char *a, size_t n, const char *lower) {
    if (strlen(lower) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lc((unsigned char)a[i]) != (unsigned char)lower[i])
            return 0;
    return 1;
}

reel_redact_t *reel_redact_new(void) {
    reel_redact_t *r = reel_calloc(1, sizeof *r);
    for (size_t i = 0; i < N(default_headers); i++)
        reel_redact_add_header(r, default_headers[i]);
    for (size_t i = 0; i < N(default_keys); i++)
        reel_redact_add_key(r, default_keys[i]);
    return r;
}

void reel_redact_free(reel_redact_t *r) {
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_headers; i++)
        free(r->headers[i]);
    for (size_t i = 0; i < r->n_keys; i++)
        free(r->keys[i]);
    free(r->headers);
    free(r->keys);
    free(r);
}

void reel_redact_add_header(reel_redact_t *r, const char *name) {
    if (name == NULL || name[0] == '\0')
        return;
    r->headers = reel_realloc(r->headers, (r->n_headers + 1) * sizeof *r->headers);
    r->headers[r->n_headers++] = lower_dup(name);
}

void reel_redact_add_key(reel_redact_t *r, const char *word) {
    if (word == NULL || word[0] == '\0')
        return;
    r->keys = reel_realloc(r->keys, (r->n_keys + 1) * sizeof *r->keys);
    r->keys[r->n_keys++] = lower_dup(word);
}

static int alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int lower(int c) {
    return c >= 'a' && c <= 'z';
}

static int upper(int c) {
    return c >= 'A' && c <= 'Z';
}

/* "key" as a word of the name (key, X-Key, api.key, keyId, accessKey),
 * not inside one (monkey, keyboard): as a bare substring it would take
 * too much, and a name that is just "key" (?key= of many web APIs) is a
 * secret's. A word starts after a non-letter or at a lower-to-upper case
 * change. */
static int key_word(const char *s, size_t n) {
    for (size_t i = 0; i + 3 <= n; i++) {
        if (lc((unsigned char)s[i]) != 'k' || lc((unsigned char)s[i + 1]) != 'e' ||
            lc((unsigned char)s[i + 2]) != 'y')
            continue;
        int before = i == 0 || !alpha((unsigned char)s[i - 1]) ||
                     (upper((unsigned char)s[i]) && lower((unsigned char)s[i - 1]));
        int after = i + 3 == n || !alpha((unsigned char)s[i + 3]) ||
                    (upper((unsigned char)s[i + 3]) && lower((unsigned char)s[i + 2]));
        if (before && after)
            return 1;
    }
    return 0;
}

int reel_redact_key_matches(const reel_redact_t *r, const char *key, size_t n) {
    if (key_word(key, n))
        return 1;
    for (size_t k = 0; k < r->n_keys; k++) {
        size_t wl = strlen(r->keys[k]);
        for (size_t i = 0; i + wl <= n; i++) {
            size_t j = 0;
            while (j < wl && lc((unsigned char)key[i + j]) == (unsigned char)r->keys[k][j])
                j++;
            if (j == wl)
                return 1;
        }
    }
    return 0;
}

static void put(reel_buf_t *b, const void *p, size_t n) {
    if (reel_buf_append(b, p, n) != REEL_OK)
        abort(); /* unlimited buffer: only out of memory */
}

static void take(reel_buf_t *b, reel_redacted_t *out) {
    out->len = b->len;
    out->data = b->data ? (char *)b->data : reel_strdup("");
    b->data = NULL;
}

/* ---- free text: bearer tokens and JWTs ---------------------------------- */

static int b64url(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static int token68(int c) {
    return b64url(c) || c == '.' || c == '~' || c == '+' || c == '/';
}

/* Length of a JWT at s (eyJ<b64url>.<b64url>.<b64url>*), 0 if none. */
static size_t jwt_at(const char *s, size_t n) {
    if (n < 3 || memcmp(s, "eyJ", 3) != 0)
        return 0;
    size_t i = 3, dots = 0;
    while (i < n) {
        int c = (unsigned char)s[i];
        if (c == '.' && dots < 2 && i + 1 <= n) {
            dots++;
            i++;
            continue;
        }
        if (!b64url(c))
            break;
        i++;
    }
    return dots == 2 && i > 12 ? i : 0;
}

/* Whether s[0..n) is the marker itself: a value redacted already, which
 * a second pass (a URL inside a URL, an export of an import of a redacted
 * export) must leave as it is and not count as a replacement, so that
 * redacting is a fixed point (tests/fuzz/fuzz_redact.c checks it). */
static int is_marker(const char *s, size_t n) {
    return n == sizeof REEL_REDACT_MARKER - 1 && memcmp(s, REEL_REDACT_MARKER, n) == 0;
}

int reel_redact_text(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    size_t run = 0, i = 0;
    int changed = 0;
    while (i < n) {
        int prev = i > 0 ? (unsigned char)s[i - 1] : ' ';
        size_t len = 0, keep = 0;
        if (!b64url(prev) && (len = jwt_at(s + i, n - i)) > 0) {
            keep = 0;
        } else if (!b64url(prev) && n - i > 7 && lc((unsigned char)s[i]) == 'b' &&
                   ieq(s + i, 6, "bearer") && (s[i + 6] == ' ' || s[i + 6] == '\t')) {
            size_t j = i + 6;
            while (j < n && (s[j] == ' ' || s[j] == '\t'))
                j++;
            size_t t = j;
            /* token68 and its '=' padding (RFC 7235 2.1), and on past a
             * '=' in the middle: what follows is still the credential, and
             * a cut there would leave its rest readable */
            while (t < n && (token68((unsigned char)s[t]) || s[t] == '='))
                t++;
            if (t > j) {
                keep = j - i;
                len = t - i;
            }
        }
        if (len == 0) {
            i++;
            continue;
        }
        if (is_marker(s + i + keep, len - keep)) {
            i += len; /* redacted already: nothing to replace */
            continue;
        }
        put(&b, s + run, i + keep - run);
        put(&b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
        i += len;
        run = i;
        changed = 1;
    }
    if (!changed) {
        reel_buf_free(&b);
        return 0;
    }
    put(&b, s + run, n - run);
    take(&b, out);
    return 1;
}

/* ---- headers ------------------------------------------------------------ */

/* "a=1; b=2" -> "a=REDACTED; b=REDACTED"; with set_cookie only the first
 * pair (the rest are attributes). */
static void cookies(const char *s, size_t n, int set_cookie, reel_buf_t *b) {
    size_t i = 0;
    int first = 1;
    while (i < n) {
        size_t end = i;
        while (end < n && s[end] != ';')
            end++;
        if (first || !set_cookie) {
            const char *eq = memchr(s + i, '=', end - i);
            if (eq != NULL) {
                put(b, s + i, (size_t)(eq - s) + 1 - i);
                put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
            } else {
                put(b, s + i, end - i);
            }
        } else {
            put(b, s + i, end - i);
        }
        first = 0;
        if (end < n)
            put(b, ";", 1);
        i = end + 1;
    }
}

static int text_into(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *b);

/* The URLs a Link value holds ("<URL>; rel=preload, <URL2>; ...", RFC
 * 8288) or a Refresh value ("0; url=URL") redacted as reel_redact_target
 * does, and the rules for text over the rest. 1 if something was
 * replaced. */
static int header_urls(const reel_redact_t *r, const char *s, size_t n, int refresh,
                       reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    int changed = 0;
    size_t run = 0, i = 0;
    while (i < n) {
        size_t from = 0, to = 0;
        if (!refresh && s[i] == '<') {
            const char *gt = memchr(s + i + 1, '>', n - i - 1);
            if (gt != NULL) {
                from = i + 1;
                to = (size_t)(gt - s);
            }
        } else if (refresh && n - i >= 4 && ieq(s + i, 4, "url=") &&
                   (i == 0 || s[i - 1] == ';' || s[i - 1] == ' ' || s[i - 1] == '\t')) {
            from = i + 4;
            if (from < n && (s[from] == '\'' || s[from] == '"'))
                from++;
            to = from;
            while (to < n && s[to] != '\'' && s[to] != '"')
                to++;
        }
        if (to <= from) {
            i++;
            continue;
        }
        reel_redacted_t t;
        changed |= text_into(r, s + run, from - run, &b);
        if (reel_redact_target(r, s + from, to - from, &t)) {
            put(&b, t.data, t.len);
            free(t.data);
            changed = 1;
        } else {
            put(&b, s + from, to - from);
        }
        i = run = to;
    }
    changed |= text_into(r, s + run, n - run, &b);
    if (!changed) {
        reel_buf_free(&b);
        return 0;
    }
    take(&b, out);
    return 1;
}

int reel_redact_header(const reel_redact_t *r, const char *name, size_t name_len, const char *value,
                       size_t value_len, reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    if (ieq(name, name_len, "cookie") || ieq(name, name_len, "set-cookie")) {
        cookies(value, value_len, ieq(name, name_len, "set-cookie"), &b);
    } else if (ieq(name, name_len, "authorization") || ieq(name, name_len, "proxy-authorization")) {
        /* keep the scheme word: "Bearer REDACTED" */
        size_t i = 0;
        while (i < value_len && value[i] != ' ' && value[i] != '\t')
            i++;
        if (i < value_len) {
            put(&b, value, i + 1);
        }
        put(&b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
    } else {
        int listed = 0;
        for (size_t k = 0; k < r->n_headers; k++)
            listed |= ieq(name, name_len, r->headers[k]);
        if (listed || reel_redact_key_matches(r, name, name_len)) {
            put(&b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
        } else if (ieq(name, name_len, "location") || ieq(name, name_len, "content-location") ||
                   ieq(name, name_len, "referer")) {
            /* a URL: its query's secret parameters, as in a request's */
            reel_buf_free(&b);
            return reel_redact_target(r, value, value_len, out);
        } else if (ieq(name, name_len, "link") || ieq(name, name_len, "refresh")) {
            reel_buf_free(&b);
            return header_urls(r, value, value_len, ieq(name, name_len, "refresh"), out);
        } else {
            reel_buf_free(&b);
            return reel_redact_text(r, value, value_len, out);
        }
    }
    take(&b, out);
    return 1;
}

/* ---- urlencoded --------------------------------------------------------- */

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lc(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent- and '+'-decoded copy of s[0..n) into b (reset first). */
static void unescape(const char *s, size_t n, reel_buf_t *b) {
    reel_buf_reset(b);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n + 0 && hexval((unsigned char)s[i + 1]) >= 0 &&
                   hexval((unsigned char)s[i + 2]) >= 0) {
            c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        put(b, &c, 1);
    }
}

/* How deep a URL inside a URL's query or fragment is followed, each
 * percent-decoding on the way counting as one level too: real redirects
 * nest two or three deep, and a hostile value could nest or re-encode
 * without end (a value past the limit keeps the rules for text). */
#define URL_DEPTH 8

static int url(const reel_redact_t *r, const char *s, size_t n, int depth, reel_buf_t *b);

/* s[0..n) into b; the rules for text over it. 1 if they replaced something. */
static int text_into(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *b) {
    reel_redacted_t t;
    if (reel_redact_text(r, s, n, &t)) {
        put(b, t.data, t.len);
        free(t.data);
        return 1;
    }
    put(b, s, n);
    return 0;
}

/* Percent-encoded copy of s[0..n) into b (reset first): every byte but
 * RFC 3986's unreserved ones, as encodeURIComponent does, so that the
 * copy is one value wherever it stands in a query or fragment. */
static void escape(const char *s, size_t n, reel_buf_t *b) {
    static const char hex[] = "0123456789ABCDEF";
    reel_buf_reset(b);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (alpha(c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
            put(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(b, e, 3);
        }
    }
}

/* A value of a query or fragment that is itself a URL (a redirect_uri,
 * a next=), as it stands or percent-encoded once or more: that URL
 * redacted, encoded again as often as it was decoded, into b. 1 if it
 * had something to replace (b untouched otherwise); *is_url says whether
 * it was a URL at all: one with nothing to replace is left as it is, not
 * given the rules for text whole, which would read its query's
 * delimiters as part of a token and redact again what one pass had cut
 * (redacting is a fixed point: tests/fuzz/fuzz_redact.c). */
static int nested_url(const reel_redact_t *r, const char *v, size_t n, int depth, reel_buf_t *b,
                      int *is_url) {
    *is_url = 0;
    if (n == 0)
        return 0;
    reel_buf_t cur, next;
    reel_buf_init(&cur, 0);
    reel_buf_init(&next, 0);
    put(&cur, v, n);
    int layers = 0, changed = 0;
    while (depth + layers < URL_DEPTH) {
        /* The first form that has a query, fragment or userinfo is the
         * URL: its own values are decoded further by the recursion, so
         * each byte is read once per level, not once per way down. */
        if (memchr(cur.data, '?', cur.len) || memchr(cur.data, '#', cur.len) ||
            memchr(cur.data, '@', cur.len)) {
            reel_buf_reset(&next);
            changed = url(r, (const char *)cur.data, cur.len, depth + layers + 1, &next);
            *is_url = 1;
            break;
        }
        unescape((const char *)cur.data, cur.len, &next);
        if (next.len == cur.len && memcmp(next.data, cur.data, cur.len) == 0)
            break; /* nothing left to decode */
        reel_buf_t t = cur;
        cur = next;
        next = t;
        layers++;
    }
    if (changed) {
        for (int k = 0; k < layers; k++) {
            escape((const char *)next.data, next.len, &cur);
            reel_buf_t t = cur;
            cur = next;
            next = t;
        }
        put(b, next.data, next.len);
    }
    reel_buf_free(&cur);
    reel_buf_free(&next);
    return changed;
}

/* "k=v&k2=v2" (a query, a fragment, a form) into b: the value of every
 * secret key replaced, a value that is a URL redacted as one, and the
 * rules for text over the rest. 1 if something was replaced. */
static int pairs(const reel_redact_t *r, const char *s, size_t n, int depth, reel_buf_t *b) {
    reel_buf_t key;
    reel_buf_init(&key, 0);
    int changed = 0;
    size_t i = 0;
    while (i <= n) {
        size_t end = i;
        while (end < n && s[end] != '&')
            end++;
        const char *eq = memchr(s + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (s + i)) : end - i;
        unescape(s + i, klen, &key);
        if (eq != NULL && reel_redact_key_matches(r, (const char *)key.data, key.len)) {
            put(b, s + i, klen + 1);
            put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
            if (!is_marker(eq + 1, (size_t)(s + end - eq - 1)))
                changed = 1;
        } else if (eq != NULL) {
            /* the rules for text over the key too: a bearer token may
             * stand anywhere in what a client put in a query */
            changed |= text_into(r, s + i, klen, b);
            put(b, "=", 1);
            int is_url = 0;
            if (nested_url(r, eq + 1, (size_t)(s + end - eq - 1), depth, b, &is_url))
                changed = 1;
            else if (is_url)
                put(b, eq + 1, (size_t)(s + end - eq - 1));
            else
                changed |= text_into(r, eq + 1, (size_t)(s + end - eq - 1), b);
        } else {
            changed |= text_into(r, s + i, end - i, b);
        }
        if (end < n)
            put(b, "&", 1);
        i = end + 1;
    }
    reel_buf_free(&key);
    return changed;
}

int reel_redact_urlencoded(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    if (!pairs(r, s, n, 0, &b)) {
        reel_buf_free(&b);
        return 0;
    }
    take(&b, out);
    return 1;
}

/* The password of the userinfo of the URL s[0..n) (no query or fragment):
 * scheme://user:password@host, //user:password@host or, with
 * authority_form (a request target: CONNECT's), user:password@host:port.
 * The authority ends at the first '/', and its userinfo at its last '@',
 * as browsers read it, so that an '@' in the password hides nothing.
 * 1 and [*from, *to) if there is one. */
static int password_at(const char *s, size_t n, int authority_form, size_t *from, size_t *to) {
    size_t a = 0, i = 0;
    while (i < n && (alpha((unsigned char)s[i]) ||
                     (i > 0 && ((s[i] >= '0' && s[i] <= '9') || strchr("+-.", s[i]) != NULL))))
        i++;
    if (i > 0 && n - i >= 3 && memcmp(s + i, "://", 3) == 0)
        a = i + 3;
    else if (n >= 2 && s[0] == '/' && s[1] == '/')
        a = 2;
    else if (!authority_form || (n > 0 && s[0] == '/'))
        return 0;
    size_t e = a;
    while (e < n && s[e] != '/')
        e++;
    size_t at = e;
    while (at > a && s[at - 1] != '@')
        at--;
    if (at == a)
        return 0; /* no '@' */
    const char *colon = memchr(s + a, ':', at - 1 - a);
    if (colon == NULL || (size_t)(colon - s) + 1 == at - 1)
        return 0; /* no password, or an empty one */
    *from = (size_t)(colon - s) + 1;
    *to = at - 1;
    return 1;
}

/* The URL s[0..n) into b: the password of its userinfo, its query as
 * pairs(), and its fragment too (the OAuth implicit flow answers
 * "#access_token=..."; a client-side route "#/cb?token=..." has its query
 * after the '?'), the rules for text over the rest. 1 if something was
 * replaced. */
static int url(const reel_redact_t *r, const char *s, size_t n, int depth, reel_buf_t *b) {
    const char *h = memchr(s, '#', n);
    size_t hash = h ? (size_t)(h - s) : n;
    const char *q = memchr(s, '?', hash);
    size_t query = q ? (size_t)(q - s) : hash, from, to;
    int changed = 0;
    if (password_at(s, query, depth == 0, &from, &to)) {
        text_into(r, s, from, b);
        put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
        text_into(r, s + to, query - to, b);
        changed = 1;
    } else {
        changed |= text_into(r, s, query, b);
    }
    if (query < hash) {
        put(b, "?", 1);
        changed |= pairs(r, s + query + 1, hash - query - 1, depth, b);
    }
    if (hash < n) {
        const char *f = s + hash + 1, *fq = memchr(f, '?', n - hash - 1);
        size_t pre = fq ? (size_t)(fq - f) + 1 : 0;
        put(b, "#", 1);
        changed |= text_into(r, f, pre, b);
        changed |= pairs(r, f + pre, n - hash - 1 - pre, depth, b);
    }
    return changed;
}

int reel_redact_target(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    if (!url(r, s, n, 0, &b)) {
        reel_buf_free(&b);
        return 0;
    }
    take(&b, out);
    return 1;
}

/* ---- bodies ------------------------------------------------------------- */

/* JSON is redacted as text, by a scanner that checks the syntax (RFC
 * 8259) as it goes and copies everything but the secrets byte for byte.
 * jansson's tree was used before: it refuses valid JSON it cannot hold
 * (an integer past 64 bits, 1e400, nesting past 2048), and such a body
 * then kept every secret; and writing the tree back changed numbers
 * (0.1 became 0.10000000000000001) and dropped duplicate keys. */
typedef struct {
    const reel_redact_t *r;
    const char *s;
    size_t n, i;
    size_t run;   /* first input byte not yet copied to b */
    reel_buf_t b; /* the output so far */
    int changed;
} jscan_t;

static void jws(jscan_t *j) {
    while (j->i < j->n &&
           (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

/* Passes the string at j->i (its opening quote); its content, unescaped
 * for the ASCII a key word could match (any other escaped character as
 * '?'), into key when key is not NULL. 0: not a JSON string. */
static int jstring(jscan_t *j, reel_buf_t *key) {
    if (j->i >= j->n || j->s[j->i] != '"')
        return 0;
    j->i++;
    while (j->i < j->n) {
        unsigned char c = (unsigned char)j->s[j->i];
        if (c == '"') {
            j->i++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c != '\\') {
            if (key)
                put(key, &j->s[j->i], 1);
            j->i++;
            continue;
        }
        if (j->i + 1 >= j->n)
            return 0;
        char e = j->s[j->i + 1], d = e;
        if (e == 'u') {
            int v = 0;
            for (size_t k = 2; k < 6; k++) {
                int h = j->i + k < j->n ? hexval((unsigned char)j->s[j->i + k]) : -1;
                if (h < 0)
                    return 0;
                v = v * 16 + h;
            }
            d = v > 0 && v < 0x80 ? (char)v : '?';
            j->i += 6;
        } else {
            const char *esc = strchr("\"\\/bfnrt", e);
            if (e == '\0' || esc == NULL)
                return 0;
            d = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            j->i += 2;
        }
        if (key)
            put(key, &d, 1);
    }
    return 0;
}

static int jdigits(jscan_t *j) {
    size_t from = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
        j->i++;
    return j->i > from;
}

/* A number, true, false or null at j->i: of any size, as the grammar has
 * no limit. 0: none. */
static int jscalar(jscan_t *j) {
    static const char *const lit[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t l = strlen(lit[k]);
        if (j->n - j->i >= l && memcmp(j->s + j->i, lit[k], l) == 0) {
            j->i += l;
            return 1;
        }
    }
    if (j->i < j->n && j->s[j->i] == '-')
        j->i++;
    if (j->i < j->n && j->s[j->i] == '0')
        j->i++;
    else if (!jdigits(j))
        return 0;
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (!jdigits(j))
            return 0;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        if (!jdigits(j))
            return 0;
    }
    return 1;
}

/* Copies the input up to `to`, then `with` in place of what follows up to
 * `resume`. */
static void jreplace(jscan_t *j, size_t to, const char *with, size_t wlen, size_t resume) {
    put(&j->b, j->s + j->run, to - j->run);
    put(&j->b, with, wlen);
    j->run = resume;
    j->changed = 1;
}

/* Scans the whole document: every value of a key holding a key word
 * becomes "REDACTED" (whatever its type), every other string has its
 * bearer tokens and JWTs replaced. Iterative (a stack of the open
 * containers), so no depth is too deep. 0: not JSON (a syntax error;
 * a document cut short is JSON as far as it goes). */
static int json_redact(jscan_t *j) {
    reel_buf_t stack, key;
    reel_buf_init(&stack, 0); /* '{' or '[' per open container */
    reel_buf_init(&key, 0);
    size_t skip_depth = 0, skip_from = 0;
    int skipping = 0, ok = 0;
    enum { VALUE, KEY, AFTER } want = VALUE;
    jws(j);
    for (;;) {
        if (want == VALUE) {
            jws(j);
            if (j->i >= j->n)
                break;
            char c = j->s[j->i];
            if (c == '{' || c == '[') {
                put(&stack, &c, 1);
                j->i++;
                jws(j);
                if (j->i < j->n && j->s[j->i] == (c == '{' ? '}' : ']')) {
                    stack.len--;
                    j->i++;
                    want = AFTER;
                } else {
                    want = c == '{' ? KEY : VALUE;
                }
                continue;
            }
            if (c == '"') {
                size_t from = j->i;
                if (!jstring(j, NULL))
                    break;
                reel_redacted_t t;
                if (!skipping && reel_redact_text(j->r, j->s + from + 1, j->i - from - 2, &t)) {
                    jreplace(j, from + 1, t.data, t.len, j->i - 1);
                    free(t.data);
                }
            } else if (!jscalar(j)) {
                break;
            }
            want = AFTER;
            continue;
        }
        if (want == KEY) {
            jws(j);
            reel_buf_reset(&key);
            if (!jstring(j, skipping ? NULL : &key))
                break;
            jws(j);
            if (j->i >= j->n || j->s[j->i] != ':')
                break;
            j->i++;
            jws(j);
            if (!skipping && reel_redact_key_matches(j->r, (const char *)key.data, key.len)) {
                skipping = 1;
                skip_depth = stack.len;
                skip_from = j->i;
            }
            want = VALUE;
            continue;
        }
        /* AFTER a value */
        if (skipping && stack.len == skip_depth) {
            static const char marker[] = "\"" REEL_REDACT_MARKER "\"";
            jreplace(j, skip_from, marker, sizeof marker - 1, j->i);
            skipping = 0;
        }
        jws(j);
        if (stack.len == 0) {
            /* the end, or another object or array: NDJSON, JSON Lines and
             * values one after the other are redacted value by value */
            if (j->i < j->n && (j->s[j->i] == '{' || j->s[j->i] == '[')) {
                want = VALUE;
                continue;
            }
            ok = j->i == j->n;
            break;
        }
        if (j->i >= j->n)
            break;
        char top = (char)stack.data[stack.len - 1], c = j->s[j->i];
        if (c == ',') {
            j->i++;
            want = top == '{' ? KEY : VALUE;
        } else if (c == (top == '{' ? '}' : ']')) {
            j->i++;
            stack.len--;
        } else {
            break;
        }
    }
    if (!ok && j->i >= j->n && stack.len) {
        /* Cut short (body_limit, a HAR of a cut body): what came was JSON
         * so far, and is redacted as such; a secret's value that the cut
         * ended is replaced to the end, and a string it ended gets the
         * rules for text. */
        reel_redacted_t t;
        if (skipping && skip_from < j->n) { /* (a cut before any of it: none to hide) */
            static const char marker[] = "\"" REEL_REDACT_MARKER;
            jreplace(j, skip_from, marker, sizeof marker - 1, j->n);
        } else if (reel_redact_text(j->r, j->s + j->run, j->n - j->run, &t)) {
            jreplace(j, j->run, t.data, t.len, j->n);
            free(t.data);
        }
        ok = 1;
    }
    reel_buf_free(&stack);
    reel_buf_free(&key);
    return ok;
}

/* Passes the single-quoted string at j->i (Python's repr, JavaScript):
 * to the next quote no backslash escapes; its content, each escaped
 * character as itself, into key when key is not NULL. 0: none (no
 * closing quote before the line's end), j->i where it stopped. */
static int sqstring(jscan_t *j, reel_buf_t *key) {
    if (j->i >= j->n || j->s[j->i] != '\'')
        return 0;
    j->i++;
    while (j->i < j->n && j->s[j->i] != '\n' && j->s[j->i] != '\r') {
        char c = j->s[j->i];
        if (c == '\'') {
            j->i++;
            return 1;
        }
        if (c == '\\') {
            if (j->i + 1 >= j->n)
                break;
            c = j->s[++j->i];
        }
        if (key)
            put(key, &c, 1);
        j->i++;
    }
    return 0;
}

/* A string in double quotes (jstring) or single quotes (sqstring). */
static int qstring(jscan_t *j, reel_buf_t *key) {
    return j->i < j->n && j->s[j->i] == '\'' ? sqstring(j, key) : jstring(j, key);
}

/* Text that is not JSON but may quote some (a body with a syntax error, a
 * note a user wrote): the value after every quoted secret key and a colon
 * ("password": "x", 'token': 1, "auth": {...}) replaced, found by a
 * lexical scan that needs no valid document around it, and the rules for
 * text over the rest. Keys and strings are in double or single quotes
 * (Python's dict repr, JavaScript). A string value ends at its closing
 * quote or, unclosed, at the line's end (JSON strings hold no raw
 * newline); an object or array at its matching bracket (or the end);
 * anything else at the next comma, bracket or white space. */
static int quoted_pairs(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    reel_buf_t b, key;
    reel_buf_init(&b, 0);
    reel_buf_init(&key, 0);
    jscan_t j = {.r = r, .s = s, .n = n};
    size_t run = 0, apostrophes = 0;
    int changed = 0;
    while (j.i < n) {
        char quote = s[j.i];
        if ((quote != '"' && quote != '\'') || (quote == '\'' && j.i < apostrophes)) {
            j.i++;
            continue;
        }
        size_t from = j.i;
        reel_buf_reset(&key);
        if (!qstring(&j, &key)) {
            if (quote == '\'') {
                /* an apostrophe (it's): on from the next byte, as double
                 * quotes may follow on the line; every single quote up to
                 * where this scan stopped was escaped for it and would
                 * stop there too, so none of them starts a string */
                apostrophes = j.i;
                j.i = from + 1;
            } else if (j.i <= from) {
                /* not a whole string: on past what it had (a scan from
                 * the next quote could read the same bytes again, for
                 * every escaped quote in them) */
                j.i = from + 1;
            }
            continue;
        }
        size_t after = j.i;
        jws(&j);
        if (j.i >= n || s[j.i] != ':' ||
            !reel_redact_key_matches(r, (const char *)key.data, key.len)) {
            /* a value, or a key of no secret: maybe the next key. A single
             * quote may have been an apostrophe ("don't 'token': x"), so
             * the one that closed this string may open the next. */
            j.i = quote == '\'' ? after - 1 : after;
            continue;
        }
        j.i++;
        jws(&j); /* newlines too, as before the colon: '"token":\n "x"' */
        size_t v = j.i, end = v;
        if (v < n && (s[v] == '"' || s[v] == '\'')) {
            if (qstring(&j, NULL)) {
                end = j.i;
            } else {
                end = v + 1;
                while (end < n && s[end] != '\n' && s[end] != '\r')
                    end++;
            }
        } else if (v < n && (s[v] == '{' || s[v] == '[')) {
            /* brackets counted outside strings */
            size_t depth = 0;
            end = v;
            while (end < n) {
                if (s[end] == '"' || s[end] == '\'') {
                    j.i = end;
                    if (!qstring(&j, NULL)) {
                        end = n;
                        break;
                    }
                    end = j.i;
                    continue;
                }
                if (s[end] == '{' || s[end] == '[')
                    depth++;
                else if ((s[end] == '}' || s[end] == ']') && --depth == 0) {
                    end++;
                    break;
                }
                end++;
            }
        } else {
            while (end < n && !strchr(",}] \t\r\n", s[end]))
                end++;
        }
        if (end == v) { /* nothing after the colon */
            j.i = v;
            continue;
        }
        /* the marker in the value's own quotes, so the text keeps its syntax */
        const char *q = s[v] == '\'' ? "'" : "\"";
        put(&b, s + run, v - run);
        put(&b, q, 1);
        put(&b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
        put(&b, q, 1);
        run = end;
        j.i = end;
        changed = 1;
    }
    reel_buf_free(&key);
    put(&b, s + run, n - run);
    reel_redacted_t t;
    if (reel_redact_text(r, (const char *)b.data, b.len, &t)) {
        reel_buf_free(&b);
        *out = t;
        return 1;
    }
    if (!changed) {
        reel_buf_free(&b);
        return 0;
    }
    take(&b, out);
    return 1;
}

int reel_redact_note(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    return quoted_pairs(r, s, n, out);
}

static int ci_prefix(const char *s, const char *lower) {
    size_t n = strlen(lower);
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || lc((unsigned char)s[i]) != (unsigned char)lower[i])
            return 0;
    return 1;
}

int reel_redact_body(const reel_redact_t *r, const char *content_type, const uint8_t *body,
                     size_t n, reel_redacted_t *out) {
    /* a UTF-8 byte order mark may come first (RFC 8259 8.1: ignored) */
    size_t bom = n >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0 ? 3 : 0, i = bom;
    while (i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < n && (body[i] == '{' || body[i] == '[')) {
        jscan_t j = {.r = r, .s = (const char *)body, .n = n, .i = bom};
        reel_buf_init(&j.b, 0);
        if (json_redact(&j)) {
            if (j.changed) {
                put(&j.b, j.s + j.run, n - j.run);
                take(&j.b, out);
            } else {
                reel_buf_free(&j.b);
            }
            return j.changed;
        }
        /* Not JSON after all (a syntax error): its quoted "key": value
         * pairs still have their secrets replaced, so that one bad byte
         * does not export every secret of the body in the clear. */
        reel_buf_free(&j.b);
        return quoted_pairs(r, (const char *)body, n, out);
    }
    if (content_type != NULL) {
        while (*content_type == ' ')
            content_type++;
        if (ci_prefix(content_type, "application/x-www-form-urlencoded"))
            return reel_redact_urlencoded(r, (const char *)body, n, out);
    }
    return reel_redact_text(r, (const char *)body, n, out);
}
