/* Redaction of secrets: see redact.h for the rules. */
#include "session/redact.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "session/decode.h"

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

/* Whether the "auth" at s[i..] of s[0..n) begins "author", "authored",
 * "authority" and the like: a writer or a domain, which APIs name on every
 * object (GitHub's commits, Atom feeds, OAuth's authority URL), and no
 * secret; "authorization", "authorize" and "authorisation" still are. */
static int auth_not_secret(const char *s, size_t n, size_t i) {
    static const char *const secret_after[] = {"iz", "is"};
    if (n - i < 6 || lc((unsigned char)s[i + 4]) != 'o' || lc((unsigned char)s[i + 5]) != 'r')
        return 0;
    for (size_t k = 0; k < N(secret_after); k++)
        if (n - i >= 8 && lc((unsigned char)s[i + 6]) == secret_after[k][0] &&
            lc((unsigned char)s[i + 7]) == secret_after[k][1])
            return 0;
    return 1;
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
            if (j == wl && !(k < N(default_keys) && strcmp(r->keys[k], "auth") == 0 &&
                             auth_not_secret(key, n, i)))
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

static int space(int c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f';
}

/* s[from..to) replaced by the marker in b (s[*run..from) copied first). */
static void mreplace(const char *s, size_t *run, size_t from, size_t to, reel_buf_t *b,
                     int *changed) {
    put(b, s + *run, from - *run);
    put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
    if (!is_marker(s + from, to - from))
        *changed = 1;
    *run = to;
}

/* Where the first `what` (no NUL in it) starts in s[from..n), n if
 * nowhere; ci: in any case (what in lower case). */
static size_t find(const char *s, size_t n, size_t from, const char *what, int ci) {
    size_t k = strlen(what);
    for (size_t i = from; i + k <= n; i++)
        if (ci ? lc((unsigned char)s[i]) == (unsigned char)what[0] && ieq(s + i, k, what)
               : s[i] == what[0] && memcmp(s + i, what, k) == 0)
            return i;
    return n;
}

/* Tokens that say what they are by a prefix their issuer gives them (as
 * secret scanners find them): the prefix, the least and most length of
 * what follows it, and whether that may hold '-' and '_' (else letters
 * and digits only; upper: upper case letters and digits only). */
static const struct {
    const char *prefix;
    unsigned char min, max, dash, upper;
} known_tokens[] = {
    {"ghp_", 36, 255, 0, 0}, /* GitHub */
    {"gho_", 36, 255, 0, 0},        {"ghu_", 36, 255, 0, 0},
    {"ghs_", 36, 255, 0, 0},        {"ghr_", 36, 255, 0, 0},
    {"github_pat_", 22, 255, 1, 0}, {"glpat-", 20, 255, 1, 0}, /* GitLab */
    {"xoxb-", 10, 255, 1, 0},                                  /* Slack */
    {"xoxp-", 10, 255, 1, 0},       {"xoxa-", 10, 255, 1, 0},
    {"xoxr-", 10, 255, 1, 0},       {"xoxs-", 10, 255, 1, 0},
    {"xoxe-", 10, 255, 1, 0},       {"sk_live_", 16, 255, 0, 0}, /* Stripe */
    {"sk_test_", 16, 255, 0, 0},    {"rk_live_", 16, 255, 0, 0},
    {"rk_test_", 16, 255, 0, 0},    {"whsec_", 16, 255, 0, 0},
    {"AKIA", 16, 16, 0, 1},                                 /* AWS access key ids */
    {"ASIA", 16, 16, 0, 1},         {"AIza", 35, 35, 1, 0}, /* Google API keys */
    {"sk-", 20, 255, 1, 0}, /* OpenAI, Anthropic (sk-ant-, sk-proj-) */
    {"npm_", 36, 36, 0, 0},         {"hf_", 30, 255, 0, 0},   /* Hugging Face */
    {"pypi-", 50, 255, 1, 0},       {"shpat_", 32, 32, 0, 0}, /* Shopify */
    {"shpss_", 32, 32, 0, 0},
};

/* At s[0..n), where the text before it ends a word: the length of the
 * prefix of a known token in *keep and the token's whole length, 0 if
 * none. The prefix stays (it says what kind of token it was, and is no
 * secret); a token redacted already ("ghp_REDACTED") is too short to be
 * one. */
static size_t known_token_at(const char *s, size_t n, size_t *keep) {
    for (size_t k = 0; k < sizeof known_tokens / sizeof known_tokens[0]; k++) {
        size_t pl = strlen(known_tokens[k].prefix);
        if (n <= pl || memcmp(s, known_tokens[k].prefix, pl) != 0)
            continue;
        size_t i = pl;
        while (i < n && b64url((unsigned char)s[i]) &&
               (known_tokens[k].dash || (s[i] != '-' && s[i] != '_')) &&
               (!known_tokens[k].upper || !lower((unsigned char)s[i])))
            i++;
        size_t len = i - pl;
        if (len < known_tokens[k].min || len > known_tokens[k].max ||
            (i < n && b64url((unsigned char)s[i])))
            continue;
        *keep = pl;
        return i;
    }
    return 0;
}

/* A PEM private key's block at s[0..n) ("-----BEGIN RSA PRIVATE
 * KEY-----"): the length of its BEGIN line in *keep, and how far its
 * base64 goes (to its END line, or the end of s; *keep when it has
 * none); 0 if s starts no such block. */
static size_t pem_key_at(const char *s, size_t n, size_t *keep) {
    static const char begin[] = "-----BEGIN ", end[] = "PRIVATE KEY-----";
    size_t bl = sizeof begin - 1, el = sizeof end - 1;
    if (n < bl + el || memcmp(s, begin, bl) != 0)
        return 0;
    size_t i = bl;
    while (i < n && i < bl + 40 && ((s[i] >= 'A' && s[i] <= 'Z') || s[i] == ' ') &&
           !(n - i >= el && memcmp(s + i, end, el) == 0))
        i++;
    if (n - i < el || memcmp(s + i, end, el) != 0)
        return 0;
    size_t from = i + el, e = find(s, n, from, "-----END ", 0);
    /* the line ending before the END line stays (LF, CRLF or JSON's \n) */
    while (e > from && (s[e - 1] == '\n' || s[e - 1] == '\r'))
        e--;
    if (e >= from + 2 && s[e - 2] == '\\' && s[e - 1] == 'n')
        e -= 2;
    *keep = from;
    return e;
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
        } else if (!b64url(prev) && (len = known_token_at(s + i, n - i, &keep)) > 0) {
            /* keep: its prefix */
        } else if (s[i] == '-' && (len = pem_key_at(s + i, n - i, &keep)) > 0) {
            /* keep: its BEGIN line; the key's lines are replaced */
            size_t k = keep;
            while (k < len && (s[i + k] == '\r' || s[i + k] == '\n' ||
                               (s[i + k] == '\\' && k + 1 < len && s[i + k + 1] == 'n')))
                k += s[i + k] == '\\' ? 2 : 1;
            keep = k;
            if (len <= keep)
                len = 0;
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
 * pair (the rest are attributes). A pair without '=' is a value with no
 * name, as browsers read it (RFC 6265bis, 5.6 and 5.7: "SID" alone is
 * the cookie named "" whose value is "SID"), so it is replaced whole, its
 * surrounding blanks kept. */
static void cookies(const char *s, size_t n, int set_cookie, reel_buf_t *b) {
    size_t i = 0;
    int first = 1;
    while (i < n) {
        size_t end = i;
        while (end < n && s[end] != ';')
            end++;
        if (first || !set_cookie) {
            const char *eq = memchr(s + i, '=', end - i);
            size_t from = i, to = end;
            while (from < to && (s[from] == ' ' || s[from] == '\t'))
                from++;
            while (to > from && (s[to - 1] == ' ' || s[to - 1] == '\t'))
                to--;
            if (eq != NULL) {
                put(b, s + i, (size_t)(eq - s) + 1 - i);
                put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
            } else if (to > from) {
                put(b, s + i, from - i);
                put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
                put(b, s + to, end - to);
            } else {
                put(b, s + i, end - i); /* an empty pair: "a=1;; b=2" */
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

static int url(const reel_redact_t *r, const char *s, size_t n, int depth, int text, reel_buf_t *b);

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

/* Whether s[0..n) holds a path parameter, a ';' after a '/' with a name
 * and a '=' after it before the next '/' or ';' ("/shop;jsessionid=x", read by
 * path_into): a value with one is a URL as much as one with a query
 * ("next=/shop;jsessionid=x", percent-encoded or not), and a Java
 * server's session goes there without any '?'. */
static int has_path_param(const char *s, size_t n) {
    for (const char *p = memchr(s, ';', n); p != NULL;
         p = memchr(p + 1, ';', (size_t)(s + n - p - 1))) {
        size_t from = (size_t)(p - s) + 1, k = from;
        while (k < n && s[k] != '=' && s[k] != ';' && s[k] != '/')
            k++;
        /* after a path: "a=1;b=2" is a form's value, not a URL */
        if (k < n && s[k] == '=' && k > from && memchr(s, '/', from) != NULL)
            return 1;
    }
    return 0;
}

/* How much of the secret value s[0..n) of a URL in text is the value:
 * the longest head of it up to its first ')' or ']' that closes no bracket
 * opened in it, that closes every bracket it opens. url_end reads a URL's
 * end by its brackets: the value replaced with one that some bracket
 * outside it matched ("https://h/p_(a?token=x)y"), or with one that is
 * left open ("?token=a[b&c]d"), a second pass would read the URL to
 * another end and replace more (redacting is a fixed point), and the text
 * after the value would not stay as it was. The rest of such a secret
 * stays. */
static size_t value_len(const char *s, size_t n) {
    size_t paren = 0, bracket = 0, whole = 0; /* s[0..whole) closes all it opens */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '(') {
            paren++;
        } else if (s[i] == '[') {
            bracket++;
        } else if (s[i] == ')') {
            if (paren == 0)
                break;
            paren--;
        } else if (s[i] == ']') {
            if (bracket == 0)
                break;
            bracket--;
        }
        if (paren == 0 && bracket == 0)
            whole = i + 1;
    }
    return whole;
}

/* A value of a query or fragment that is itself a URL (a redirect_uri,
 * a next=), as it stands or percent-encoded once or more: that URL
 * redacted, encoded again as often as it was decoded, into b. 1 if it
 * had something to replace (b untouched otherwise); *is_url says whether
 * it was a URL at all: one with nothing to replace is left as it is, not
 * given the rules for text whole, which would read its query's
 * delimiters as part of a token and redact again what one pass had cut
 * (redacting is a fixed point: tests/fuzz/fuzz_redact.c). */
static int nested_url(const reel_redact_t *r, const char *v, size_t n, int depth, int text,
                      reel_buf_t *b, int *is_url) {
    *is_url = 0;
    if (n == 0)
        return 0;
    reel_buf_t cur, next;
    reel_buf_init(&cur, 0);
    reel_buf_init(&next, 0);
    put(&cur, v, n);
    int layers = 0, changed = 0;
    while (depth + layers < URL_DEPTH) {
        /* The first form that has a query, fragment, userinfo or path
         * parameter is the URL: its own values are decoded further by the
         * recursion, so each byte is read once per level, not once per
         * way down. */
        if (memchr(cur.data, '?', cur.len) || memchr(cur.data, '#', cur.len) ||
            memchr(cur.data, '@', cur.len) || has_path_param((const char *)cur.data, cur.len)) {
            reel_buf_reset(&next);
            changed = url(r, (const char *)cur.data, cur.len, depth + layers + 1, text, &next);
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

/* The end of the pair that starts at s[i] in s[0..n): the next '&' or,
 * with semi, the next ';' that a "name=" follows (a query split as
 * "a=1;token=x", as HTML 4 recommended and Java servers accept). A ';'
 * followed by no '=' before the pair's end is taken for a part of the
 * value ("token=ab;cd"): a cut there would leave the rest of a secret
 * readable. */
static size_t pair_end(const char *s, size_t n, size_t i, int semi) {
    size_t end = i;
    while (end < n && s[end] != '&') {
        if (semi && s[end] == ';') {
            size_t k = end + 1;
            while (k < n && s[k] != '&' && s[k] != ';' && s[k] != '=')
                k++;
            if (k < n && s[k] == '=')
                break;
            end = k; /* no name= after it: on to the next ';' or '&' */
            continue;
        }
        end++;
    }
    return end;
}

/* s[0..n) percent-encoded into b: what is not unreserved (RFC 3986 2.3)
 * as %XX. */
static void pct_encode(const uint8_t *s, size_t n, reel_buf_t *b) {
    for (size_t i = 0; i < n; i++) {
        if (alpha(s[i]) || (s[i] >= '0' && s[i] <= '9') || strchr("-._~", s[i]) != NULL) {
            put(b, &s[i], 1);
        } else {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", s[i]);
            put(b, e, 3);
        }
    }
}

static int param_doc(const reel_redact_t *r, const reel_buf_t *key, const char *v, size_t vn,
                     const reel_buf_t *vars, reel_buf_t *b);
static void pairs_gql_vars(const reel_redact_t *r, const char *s, size_t n, int semi,
                           reel_buf_t *vars);

/* "k=v&k2=v2" (a query, a fragment, a form; a query's and a fragment's
 * also split at ';', see pair_end) into b: the value of every secret key
 * replaced (with text, of a URL found in text, up to value_len), a value
 * that is a URL redacted as one, and the rules for text over the rest. 1
 * if something was replaced. */
static int pairs(const reel_redact_t *r, const char *s, size_t n, int depth, int semi, int text,
                 reel_buf_t *b) {
    reel_buf_t key, vars;
    reel_buf_init(&key, 0);
    reel_buf_init(&vars, 0);
    pairs_gql_vars(r, s, n, semi, &vars);
    int changed = 0;
    size_t i = 0;
    while (i <= n) {
        size_t end = pair_end(s, n, i, semi);
        const char *eq = memchr(s + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (s + i)) : end - i;
        unescape(s + i, klen, &key);
        if (eq != NULL && reel_redact_key_matches(r, (const char *)key.data, key.len)) {
            size_t vn = (size_t)(s + end - eq - 1), vlen = text ? value_len(eq + 1, vn) : vn;
            put(b, s + i, klen + 1);
            put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
            if (!is_marker(eq + 1, vlen))
                changed = 1;
            put(b, eq + 1 + vlen, vn - vlen);
        } else if (eq != NULL) {
            /* the rules for text over the key too: a bearer token may
             * stand anywhere in what a client put in a query */
            changed |= text_into(r, s + i, klen, b);
            put(b, "=", 1);
            int is_url = 0, doc = param_doc(r, &key, eq + 1, (size_t)(s + end - eq - 1), &vars, b);
            if (doc == 1)
                changed = 1;
            else if (doc == 0) /* (its strings had the rules for text) */
                put(b, eq + 1, (size_t)(s + end - eq - 1));
            else if (nested_url(r, eq + 1, (size_t)(s + end - eq - 1), depth, text, b, &is_url))
                changed = 1;
            else if (is_url)
                put(b, eq + 1, (size_t)(s + end - eq - 1));
            else
                changed |= text_into(r, eq + 1, (size_t)(s + end - eq - 1), b);
        } else {
            changed |= text_into(r, s + i, end - i, b);
        }
        if (end < n)
            put(b, &s[end], 1);
        i = end + 1;
    }
    reel_buf_free(&key);
    reel_buf_free(&vars);
    return changed;
}

int reel_redact_urlencoded(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    /* a form: split at '&' only, as browsers write and read it (they
     * encode a ';' in a value) */
    if (!pairs(r, s, n, 0, 0, 0, &b)) {
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

/* Where the path of the URL s[0..n) (no query or fragment) starts: after
 * the authority of scheme://authority or //authority (a ';' there is the
 * userinfo's, as in imap://user;AUTH=*@host), else at 0. */
static size_t path_from(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (alpha((unsigned char)s[i]) ||
                     (i > 0 && ((s[i] >= '0' && s[i] <= '9') || strchr("+-.", s[i]) != NULL))))
        i++;
    if (i > 0 && n - i >= 3 && memcmp(s + i, "://", 3) == 0)
        i += 3;
    else if (n >= 2 && s[0] == '/' && s[1] == '/')
        i = 2;
    else
        return 0;
    const char *slash = memchr(s + i, '/', n - i);
    return slash ? (size_t)(slash - s) : n;
}

/* A path s[0..n) into b: the value of every path parameter with a secret
 * name replaced ("/shop;jsessionid=x/item", RFC 3986 3.3's ";name=value"
 * after a segment, as Java servers put the session in a URL), the rules
 * for text over the rest. A value ends at the next ';' or '/' (with text,
 * also where value_len says). 1 if something was replaced. */
static int path_into(const reel_redact_t *r, const char *s, size_t n, int text, reel_buf_t *b) {
    reel_buf_t key;
    reel_buf_init(&key, 0);
    int changed = 0;
    size_t run = 0, i = 0;
    while (i < n) {
        if (s[i] != ';') {
            i++;
            continue;
        }
        size_t k = i + 1;
        while (k < n && s[k] != '=' && s[k] != ';' && s[k] != '/')
            k++;
        if (k >= n || s[k] != '=') {
            i = k;
            continue;
        }
        size_t v = k + 1, e = v;
        while (e < n && s[e] != ';' && s[e] != '/')
            e++;
        if (text)
            e = v + value_len(s + v, e - v);
        unescape(s + i + 1, k - i - 1, &key);
        if (reel_redact_key_matches(r, (const char *)key.data, key.len)) {
            changed |= text_into(r, s + run, v - run, b);
            put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
            if (!is_marker(s + v, e - v))
                changed = 1;
            run = e;
        }
        i = e;
    }
    changed |= text_into(r, s + run, n - run, b);
    reel_buf_free(&key);
    return changed;
}

/* The URL s[0..n) into b: the password of its userinfo, its path
 * parameters (path_into), its query as pairs(), and its fragment too (the
 * OAuth implicit flow answers "#access_token=..."; a client-side route
 * "#/cb?token=..." has its query after the '?', unless what comes before
 * it has a '=' too), the rules for text over the rest. text: the URL was
 * found in text (url_end), not given whole by a header or request line.
 * 1 if something was replaced. */
static int url(const reel_redact_t *r, const char *s, size_t n, int depth, int text,
               reel_buf_t *b) {
    const char *h = memchr(s, '#', n);
    size_t hash = h ? (size_t)(h - s) : n;
    const char *q = memchr(s, '?', hash);
    size_t query = q ? (size_t)(q - s) : hash, from, to, path = path_from(s, query);
    int changed = 0;
    if (password_at(s, query, depth == 0, &from, &to)) {
        changed |= text_into(r, s, from, b);
        put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
        /* one redacted already is no new replacement */
        if (!is_marker(s + from, to - from))
            changed = 1;
        if (path < to)
            path = to; /* a CONNECT target's user:password@host:port */
        changed |= text_into(r, s + to, path - to, b);
    } else {
        changed |= text_into(r, s, path, b);
    }
    changed |= path_into(r, s + path, query - path, text, b);
    if (query < hash) {
        put(b, "?", 1);
        changed |= pairs(r, s + query + 1, hash - query - 1, depth, 1, text, b);
    }
    if (hash < n) {
        const char *f = s + hash + 1, *fq = memchr(f, '?', n - hash - 1);
        size_t pre = fq ? (size_t)(fq - f) + 1 : 0;
        /* pairs before the '?' make it one of a value
         * ("#access_token=x&state=/p?y"), not a route's query */
        if (pre > 0 && memchr(f, '=', pre) != NULL)
            pre = 0;
        put(b, "#", 1);
        changed |= text_into(r, f, pre, b);
        changed |= pairs(r, f + pre, n - hash - 1 - pre, depth, 1, text, b);
    }
    return changed;
}

int reel_redact_target(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    if (!url(r, s, n, 0, 0, &b)) {
        reel_buf_free(&b);
        return 0;
    }
    take(&b, out);
    return 1;
}

/* ---- URLs in text ------------------------------------------------------ */

/* Text as read for its URLs: JSON's escapes decoded (a JSON string value,
 * JSON quoted in text, a script's "https:\/\/..."), every other byte as
 * it is, and where each escape was, so that a URL found in the decoded
 * text can be put back in place of the bytes that held it. One entry per
 * escape, not an offset per byte: a 64 MiB text body with a backslash in
 * it took 8 to 16 bytes per byte of it that way. */
typedef struct {
    uint32_t dec, raw; /* where the escape's decoded bytes start, and the escape */
    uint8_t dlen, rlen;
} escape_t;

typedef struct {
    const uint8_t *data; /* the decoded bytes: the input itself when it has no '\\' */
    size_t len;
    reel_buf_t d;  /* the decoded bytes when there are escapes */
    escape_t *esc; /* the escapes, in order */
    size_t nesc, cap;
} decoded_t;

/* Where the unit of decoded byte k starts in the input (k == len: its
 * end): the bytes between escapes are the input's one for one. */
static size_t raw_at(const decoded_t *x, size_t k) {
    size_t lo = 0, hi = x->nesc; /* the escapes before lo start at or before k */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->esc[mid].dec <= k)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return k;
    const escape_t *e = &x->esc[lo - 1];
    if (k < (size_t)e->dec + e->dlen)
        return e->raw;
    return (size_t)e->raw + e->rlen + (k - e->dec - e->dlen);
}

/* Decoded bytes p[0..len) of the escape of rlen bytes at from; a byte
 * that is no escape with rlen 0. */
static void dec_put(decoded_t *x, const char *p, size_t len, size_t from, size_t rlen) {
    if (rlen) {
        if (x->nesc == x->cap) {
            x->cap = x->cap ? x->cap * 2 : 64;
            x->esc = reel_realloc(x->esc, x->cap * sizeof *x->esc);
        }
        x->esc[x->nesc++] =
            (escape_t){(uint32_t)x->d.len, (uint32_t)from, (uint8_t)len, (uint8_t)rlen};
    }
    put(&x->d, p, len);
}

static int hex4(const char *s, size_t n, size_t i) {
    int v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = i + k < n ? hexval((unsigned char)s[i + k]) : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decodes s[0..n) into x: \" \\ \/ \b \f \n \r \t and \uXXXX (a
 * surrogate pair as one character, in UTF-8); a lone surrogate becomes
 * a control byte, which no URL holds; a backslash that starts no escape
 * stays as it is. */
static void decode(const char *s, size_t n, decoded_t *x) {
    reel_buf_init(&x->d, 0);
    x->esc = NULL;
    x->nesc = x->cap = 0;
    x->data = (const uint8_t *)s;
    x->len = n;
    /* nothing to decode: no copy (a big text body); past 4 GiB, which no
     * body held in memory reaches, escape_t's offsets would not hold */
    if (memchr(s, '\\', n) == NULL || n >= UINT32_MAX)
        return;
    size_t i = 0;
    while (i < n) {
        const char *esc = i + 1 < n && s[i] == '\\' ? strchr("\"\\/bfnrt", s[i + 1]) : NULL;
        if (esc != NULL && s[i + 1] != '\0') {
            dec_put(x, &"\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"], 1, i, 2);
            i += 2;
            continue;
        }
        int v = i + 1 < n && s[i] == '\\' && s[i + 1] == 'u' ? hex4(s, n, i + 2) : -1;
        if (v < 0) {
            dec_put(x, &s[i], 1, i, 0);
            i++;
            continue;
        }
        size_t len = 6;
        unsigned cp = (unsigned)v;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 11 < n + 0 && s[i + 6] == '\\' && s[i + 7] == 'u') {
            int lo = hex4(s, n, i + 8);
            if (lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
                len = 12;
            }
        }
        char u[4];
        size_t ul;
        if (cp >= 0xd800 && cp < 0xe000) {
            u[0] = 1;
            ul = 1;
        } else if (cp < 0x80) {
            u[0] = (char)cp;
            ul = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xc0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3f));
            ul = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xe0 | (cp >> 12));
            u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            u[2] = (char)(0x80 | (cp & 0x3f));
            ul = 3;
        } else {
            u[0] = (char)(0xf0 | (cp >> 18));
            u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
            u[3] = (char)(0x80 | (cp & 0x3f));
            ul = 4;
        }
        dec_put(x, u, ul, i, len);
        i += len;
    }
    x->data = x->d.data;
    x->len = x->d.len;
}

/* Whether k is where a unit of x starts (or its end): not inside the
 * bytes of one escape. */
static int unit_start(const decoded_t *x, size_t k) {
    return k == 0 || k >= x->len || raw_at(x, k) != raw_at(x, k - 1);
}

/* Whether s[i] (of s[0..n), decoded text) ends a URL in text: white
 * space and controls, quotes, angle brackets and backticks (what HTML,
 * JSON, Markdown, scripts and prose put around one), and the rest of the
 * ASCII bytes RFC 3986 never allows unencoded: '{' '}' '|' '^' and a
 * backslash that starts no JSON escape (one that does is JSON quoted
 * twice, "https:\\/\\/..."), and a template's "${" (its '$' no part of
 * the value before it). CSS's "url(...);}" ends the URL so, not the
 * secret's value. */
static int url_stop(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\\')
        return i + 1 >= n || s[i + 1] == '\0' || strchr("\"\\/bfnrtu", s[i + 1]) == NULL;
    if (c == '$')
        return i + 1 < n && s[i + 1] == '{';
    return c <= 0x20 || c == 0x7f || strchr("\"'<>`{}|^", c) != NULL;
}

static int scheme_char(int c) {
    return alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

/* The length of "://", ":\/\/" (JSON quoted twice) or "%3A%2F%2F" (a URL
 * percent-encoded, as a form or a state= carries it) at s[i..n), 0 if
 * none. */
static size_t scheme_sep(const char *s, size_t n, size_t i) {
    if (n - i >= 3 && memcmp(s + i, "://", 3) == 0)
        return 3;
    if (n - i >= 5 && memcmp(s + i, ":\\/\\/", 5) == 0)
        return 5;
    if (n - i >= 9 && s[i] == '%' && s[i + 1] == '3' && lc((unsigned char)s[i + 2]) == 'a' &&
        s[i + 3] == '%' && s[i + 4] == '2' && lc((unsigned char)s[i + 5]) == 'f' &&
        s[i + 6] == '%' && s[i + 7] == '2' && lc((unsigned char)s[i + 8]) == 'f')
        return 9;
    return 0;
}

/* The end of the URL that starts at s[from] in s[0..n): the next byte
 * url_stop() names or the first ')' or ']' that no '(' or '[' in the URL
 * opened, as GitHub's autolinker reads one: "[log](https://x/?a=1)**b**"
 * and "url(https://x/a.png?a=1);}" end at the ')', while a Wikipedia
 * URL keeps its "_(film)". Then less the punctuation that prose puts
 * after a URL (".,:;!?": "see https://x/?a=1."), so that a sentence's
 * full stop is not taken for a part of a secret. A secret's value does
 * not take a bracket that one before it opened (value_len). */
static size_t url_end(const char *s, size_t n, size_t from) {
    size_t e = from, paren = 0, bracket = 0;
    for (; e < n && !url_stop(s, n, e); e++) {
        if (s[e] == '(')
            paren++;
        else if (s[e] == '[')
            bracket++;
        else if (s[e] == ')' && paren-- == 0)
            break;
        else if (s[e] == ']' && bracket-- == 0)
            break;
    }
    while (e > from && strchr(".,:;!?", s[e - 1]) != NULL)
        e--;
    return e;
}

/* The URL d[from..to) of text whose raw form is s, redacted as a value
 * of a query is (nested_url: as it stands or percent-encoded); when that
 * replaced something, the raw bytes that held the part it changed are
 * replaced in b by that part of the result, each ASCII character escaped
 * as the URL had escaped it ("\/", "\u0026"), so that JSON stays JSON
 * and its escaping as it was. The raw bytes before the URL from *run on
 * go into b first, under the rules for text. 1 if something was
 * replaced. */
static int url_in_text(const reel_redact_t *r, const char *s, const decoded_t *x, size_t from,
                       size_t to, size_t *run, reel_buf_t *b) {
    const uint8_t *d = x->data;
    reel_buf_t o;
    reel_buf_init(&o, 0);
    int is_url = 0;
    if (!nested_url(r, (const char *)d + from, to - from, 0, 1, &o, &is_url)) {
        reel_buf_free(&o);
        return 0;
    }
    /* the part that changed: between the common head and tail */
    size_t len = to - from, olen = o.len, head = 0, tail = 0;
    while (head < len && head < olen && d[from + head] == o.data[head])
        head++;
    while (tail < len - head && tail < olen - head && d[to - 1 - tail] == o.data[olen - 1 - tail])
        tail++;
    if (head == len && head == olen) {
        reel_buf_free(&o);
        return 0; /* the same after all */
    }
    while (!unit_start(x, from + head)) /* whole escapes only */
        head--;
    while (!unit_start(x, to - tail))
        tail--;
    /* how the URL wrote each ASCII character it escaped */
    const char *style[128] = {0};
    size_t style_len[128] = {0};
    for (size_t k = from; k < to; k++) {
        unsigned char c = (unsigned char)d[k];
        size_t unit = raw_at(x, k + 1) - raw_at(x, k); /* an ASCII one is one byte */
        if (c < 128 && unit > 1 && style[c] == NULL) {
            style[c] = s + raw_at(x, k);
            style_len[c] = unit;
        }
    }
    size_t raw_from = raw_at(x, from + head), raw_to = raw_at(x, to - tail);
    text_into(r, s + *run, raw_from - *run, b);
    for (size_t k = head; k < olen - tail; k++) {
        unsigned char c = o.data[k];
        if (c < 128 && style[c] != NULL) {
            put(b, style[c], style_len[c]);
        } else if (c < 0x20 || c == '"' || c == '\\') {
            /* none of these is in a URL, nor put there: JSON's escape
             * all the same, should one be */
            char e[6] = {
                '\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
            put(b, e, 6);
        } else {
            put(b, &o.data[k], 1);
        }
    }
    *run = raw_to;
    reel_buf_free(&o);
    return 1;
}

/* Text s[0..n) into b (a JSON string value as it stands between its
 * quotes, a text body, a note): the URLs in it redacted as a query's
 * value that is a URL is, and the rules for text over the rest. A URL is
 * one with a scheme ("https://", also as "https:\/\/" and percent-encoded
 * "https%3A%2F%2F"); one that starts with '/', '?' or '#' right after a
 * quote or backtick (href="/cb?token=x", JSON quoted in text, a template
 * string); or the whole text when it is one word that starts so (a JSON
 * value "/cb?token=x"). It ends where url_end says: white space, a quote,
 * a bracket it did not open, a byte no URL holds. 1 if something was
 * replaced. */
static int urls_in_text(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *b) {
    /* no URL without one of these (a timestamp's ':' is no reason to
     * decode a string) */
    int any = n > 0 && (s[0] == '?' || s[0] == '#');
    for (const char *c = "/%\"'`\\"; *c && !any; c++)
        any = memchr(s, *c, n) != NULL;
    if (!any)
        return text_into(r, s, n, b);
    decoded_t x;
    decode(s, n, &x);
    const char *d = (const char *)x.data;
    size_t dn = x.len, run = 0, i = 0;
    int changed = 0;
    if (dn > 0 && (d[0] == '/' || d[0] == '?' || d[0] == '#')) {
        size_t e = 0;
        while (e < dn && !url_stop(d, dn, e))
            e++;
        if (e == dn) {
            changed |= url_in_text(r, s, &x, 0, url_end(d, dn, 0), &run, b);
            i = dn;
        }
    }
    size_t floor = 0; /* a scheme starts after the previous URL */
    while (i < dn) {
        if ((d[i] == '/' || d[i] == '?' || d[i] == '#') && i > floor &&
            (d[i - 1] == '"' || d[i - 1] == '\'' || d[i - 1] == '`')) {
            /* a relative URL in quotes: JSON quoted in text or in a
             * string, an HTML attribute (href="/cb?token=x"), a script's
             * template string (fetch(`/api?token=${t}`)) */
            size_t end = url_end(d, dn, i);
            if (end > i + 1) {
                changed |= url_in_text(r, s, &x, i, end, &run, b);
                i = floor = end;
                continue;
            }
        }
        size_t sep = d[i] == ':' || d[i] == '%' ? scheme_sep(d, dn, i) : 0;
        if (sep == 0) {
            i++;
            continue;
        }
        size_t from = i;
        while (from > floor && scheme_char((unsigned char)d[from - 1]))
            from--;
        while (from < i && !alpha((unsigned char)d[from]))
            from++;
        if (from == i) {
            i += sep;
            continue;
        }
        size_t end = url_end(d, dn, from);
        if (end <= i + sep) {
            i += sep;
            continue;
        }
        changed |= url_in_text(r, s, &x, from, end, &run, b);
        i = floor = end;
    }
    if (changed)
        text_into(r, s + run, n - run, b);
    reel_buf_free(&x.d);
    free(x.esc);
    if (!changed)
        return text_into(r, s, n, b);
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
    /* the variables that GraphQL queries in the document give for
     * secrets, each name followed by a NUL (gql_json_variables); NULL
     * for none */
    const reel_buf_t *gql_vars;
    /* A document inside a JSON string of another (json_in_string): s is
     * the string's content decoded (x), raw its content as it stands, and
     * b gets raw's bytes, the replacements escaped for the string;
     * raw_run is the first byte of raw not yet copied. depth counts the
     * strings around the document. */
    const decoded_t *x;
    const char *raw;
    size_t rawn, raw_run;
    int depth;
    int cut; /* the document ended cut short (json_redact) */
    /* the document is a GraphQL request's "variables" object itself (a
     * GET's variables= parameter): gql_vars name secrets at its top */
    int vars_top;
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

/* p[0..n) as the content of a JSON string: '"', '\\' and controls
 * escaped, every other byte as it is. */
static void jescape(const char *p, size_t n, reel_buf_t *b) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        const char *e = c == '"'    ? "\\\""
                        : c == '\\' ? "\\\\"
                        : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t"
                                    : NULL;
        char u[8];
        if (e == NULL && c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            e = u;
        }
        if (e != NULL)
            put(b, e, strlen(e));
        else
            put(b, &p[i], 1);
    }
}

/* Copies the input up to `to`, then `with` in place of what follows up to
 * `resume`. In a document inside a string, the raw bytes that held them,
 * and of `with` what differs from the text it replaces, escaped: the rest
 * keeps the string's own escapes (a URL's "\\/" in a string that a string
 * holds stays so), cut where a character begins, since one escape can
 * hold the bytes of one character. */
static void jreplace(jscan_t *j, size_t to, const char *with, size_t wlen, size_t resume) {
    if (j->x != NULL) {
        const uint8_t *d = (const uint8_t *)j->s;
        size_t len = resume - to, p = 0, q = 0;
        while (p < len && p < wlen && d[to + p] == (uint8_t)with[p])
            p++;
        while (p > 0 && to + p < j->n && (d[to + p] & 0xc0) == 0x80)
            p--;
        while (q < len - p && q < wlen - p && d[resume - 1 - q] == (uint8_t)with[wlen - 1 - q])
            q++;
        while (q > 0 && (d[resume - q] & 0xc0) == 0x80)
            q--;
        put(&j->b, j->raw + j->raw_run, raw_at(j->x, to + p) - j->raw_run);
        jescape(with + p, wlen - p - q, &j->b);
        j->raw_run = raw_at(j->x, resume - q);
    } else {
        put(&j->b, j->s + j->run, to - j->run);
        put(&j->b, with, wlen);
    }
    j->run = resume;
    j->changed = 1;
}

/* The media type of content_type (may be NULL): *ct moved past leading
 * blanks, and the type's length before its parameters; 0 for none. */
static size_t media_type(const char **ct) {
    if (*ct == NULL)
        return 0;
    while (**ct == ' ' || **ct == '\t')
        (*ct)++;
    return strcspn(*ct, "; \t");
}

/* ---- GraphQL ------------------------------------------------------------ */

/* A GraphQL document's secrets: the value of every argument, or field of
 * an input object in one, whose name holds a key word
 * (login(password: "x"), createKey(input: {apiKey: "x"})), and the
 * default value of a variable so named ($password: String = "x"). Names
 * before a ':' outside parentheses are aliases, not arguments, and stay. A
 * string's content is replaced (its quotes stay), any other value whole
 * (a number, an enum, a list or an object: REDACTED, a valid enum value).
 * A variable given for a secret (password: $p) stays, and its name goes
 * to cb as a span with variable set: its value is in the request's
 * "variables" under that name. Each span is given to cb in order. */
typedef void (*gql_span_fn)(void *ctx, size_t from, size_t to, int variable);

static int gql_name_char(int c) {
    return alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

/* The end of the GraphQL string at s[i] ('"', or '"""' for a block
 * string): past its closing quote(s), or n; *c0 and *c1 its content. */
static size_t gql_string(const char *s, size_t n, size_t i, size_t *c0, size_t *c1) {
    if (n - i >= 3 && memcmp(s + i, "\"\"\"", 3) == 0) {
        size_t k = i + 3;
        *c0 = k;
        while (k < n && !(n - k >= 3 && memcmp(s + k, "\"\"\"", 3) == 0))
            k += s[k] == '\\' && n - k >= 4 && memcmp(s + k + 1, "\"\"\"", 3) == 0 ? 4 : 1;
        *c1 = k < n ? k : n;
        return k < n ? k + 3 : n;
    }
    size_t k = i + 1;
    *c0 = k;
    while (k < n && s[k] != '"' && s[k] != '\n')
        k += s[k] == '\\' && k + 1 < n ? 2 : 1;
    *c1 = k < n ? k : n;
    return k < n && s[k] == '"' ? k + 1 : k;
}

static size_t gql_space(const char *s, size_t n, size_t i) {
    while (i < n && (space((unsigned char)s[i]) || s[i] == ','))
        i++;
    return i;
}

static size_t gql_name_end(const char *s, size_t n, size_t i) {
    while (i < n && gql_name_char((unsigned char)s[i]))
        i++;
    return i;
}

/* The value at s[v] (v < n) of a secret, other than a string or a
 * variable: given whole to cb, and each variable in it (a list or an
 * object of them) by its name. Returns where the value ends. */
static size_t gql_value(const char *s, size_t n, size_t v, gql_span_fn cb, void *ctx) {
    size_t e = v, c0, c1;
    if (s[v] == '[' || s[v] == '{') { /* to its matching bracket */
        size_t depth = 0;
        while (e < n) {
            if (s[e] == '"') {
                e = gql_string(s, n, e, &c0, &c1);
                continue;
            }
            depth += s[e] == '[' || s[e] == '{';
            if ((s[e] == ']' || s[e] == '}') && --depth == 0) {
                e++;
                break;
            }
            e++;
        }
    } else {
        while (e < n &&
               (gql_name_char((unsigned char)s[e]) || s[e] == '-' || s[e] == '+' || s[e] == '.'))
            e++;
    }
    if (e > v)
        cb(ctx, v, e, 0);
    for (size_t k = v; k < e; k++) {
        if (s[k] == '"') {
            k = gql_string(s, n, k, &c0, &c1) - 1;
        } else if (s[k] == '$') {
            size_t k1 = gql_name_end(s, n, k + 1);
            if (k1 > k + 1)
                cb(ctx, k + 1, k1, 1);
        }
    }
    return e;
}

static void gql_secrets(const reel_redact_t *r, const char *s, size_t n, gql_span_fn cb,
                        void *ctx) {
    size_t i = 0, parens = 0, c0, c1;
    while (i < n) {
        char c = s[i];
        if (c == '#') {
            const char *nl = memchr(s + i, '\n', n - i);
            i = nl ? (size_t)(nl - s) + 1 : n;
        } else if (c == '"') {
            i = gql_string(s, n, i, &c0, &c1);
        } else if (c == '(') {
            parens++;
            i++;
        } else if (c == ')') {
            parens -= parens > 0;
            i++;
        } else if (alpha((unsigned char)c) || c == '_') {
            size_t k0 = i;
            i = gql_name_end(s, n, i);
            size_t k1 = i, v = gql_space(s, n, i);
            if (parens == 0 || v >= n || s[v] != ':')
                continue;
            int secret = reel_redact_key_matches(r, s + k0, k1 - k0);
            if (k0 > 0 && s[k0 - 1] == '$') {
                /* a variable's definition: its type stays, and a default
                 * value of a secret's is one */
                for (v++;
                     v < n && (gql_name_char((unsigned char)s[v]) || space((unsigned char)s[v]) ||
                               s[v] == '!' || s[v] == '[' || s[v] == ']' || s[v] == ',');
                     v++)
                    ;
                i = v;
                if (!secret || v >= n || s[v] != '=')
                    continue;
            } else if (!secret) {
                continue;
            }
            v = gql_space(s, n, v + 1);
            if (v >= n)
                continue;
            if (s[v] == '$') {
                i = gql_name_end(s, n, v + 1);
                if (i > v + 1)
                    cb(ctx, v + 1, i, 1);
                continue;
            }
            if (s[v] == '"') {
                i = gql_string(s, n, v, &c0, &c1);
                cb(ctx, c0, c1, 0);
                continue;
            }
            size_t e = gql_value(s, n, v, cb, ctx);
            i = e > v ? e : v + 1;
        } else {
            i++;
        }
    }
}

/* gql_secrets' spans of a document given as text s[0..n), or of the
 * decoded text of a JSON string whose raw content that is (x), replaced
 * by the marker into b. */
typedef struct {
    const char *s;
    const decoded_t *x; /* NULL: the spans are s's own */
    size_t run;
    reel_buf_t *b;
    int changed;
} gql_out_t;

static void gql_replace(void *ctx, size_t from, size_t to, int variable) {
    gql_out_t *o = ctx;
    if (variable)
        return;
    if (o->x != NULL) {
        from = raw_at(o->x, from);
        to = raw_at(o->x, to);
    }
    if (from < o->run)
        return;
    mreplace(o->s, &o->run, from, to, o->b, &o->changed);
}

/* Whether content_type (may be NULL) is application/graphql. */
static int is_graphql(const char *content_type) {
    size_t k = media_type(&content_type);
    return k > 0 && ieq(content_type, k, "application/graphql");
}

/* A GraphQL document s[0..n) (raw: not in a JSON string) into b. */
static int graphql_into(const reel_redact_t *r, const char *s, size_t n, int json, reel_buf_t *b) {
    decoded_t x;
    gql_out_t o = {.s = s, .x = NULL, .b = b};
    if (json) {
        decode(s, n, &x);
        o.x = &x;
        gql_secrets(r, (const char *)x.data, x.len, gql_replace, &o);
        reel_buf_free(&x.d);
        free(x.esc);
    } else {
        gql_secrets(r, s, n, gql_replace, &o);
    }
    put(b, s + o.run, n - o.run);
    return o.changed;
}

/* gql_secrets' variables, each name followed by a NUL, into names. */
typedef struct {
    const char *s;
    reel_buf_t *names;
} gql_vars_t;

static void gql_var(void *ctx, size_t from, size_t to, int variable) {
    gql_vars_t *v = ctx;
    if (variable) {
        put(v->names, v->s + from, to - from);
        put(v->names, "", 1);
    }
}

/* The variables that the "query" strings of the JSON document s[0..n)
 * give for secrets (login(password: $p)) into names, each followed by a
 * NUL: their values in "variables" are secrets whatever their names. A
 * "query" key is looked for as bytes, wherever it is: one that is no key
 * of a GraphQL request can at worst hide a value that was no secret. */
static void gql_json_variables(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *names) {
    const char *q;
    for (size_t from = 0; (q = memchr(s + from, '"', n - from)) != NULL;) {
        jscan_t j = {.r = r, .s = s, .n = n, .i = (size_t)(q - s) + 7};
        from = (size_t)(q - s) + 1;
        if (j.i > n || !ieq(q + 1, 5, "query") || q[6] != '"')
            continue;
        jws(&j);
        if (j.i >= n || s[j.i] != ':')
            continue;
        j.i++;
        jws(&j);
        size_t v = j.i;
        if (!jstring(&j, NULL))
            continue;
        decoded_t x;
        decode(s + v + 1, j.i - v - 2, &x);
        gql_vars_t c = {(const char *)x.data, names};
        gql_secrets(r, (const char *)x.data, x.len, gql_var, &c);
        reel_buf_free(&x.d);
        free(x.esc);
        from = j.i;
    }
}

/* Whether names (gql_json_variables) holds k[0..kn). */
static int gql_var_named(const reel_buf_t *names, const char *k, size_t kn) {
    for (size_t i = 0; names != NULL && i < names->len;) {
        const char *name = (const char *)names->data + i;
        size_t len = strlen(name);
        if (len == kn && memcmp(name, k, kn) == 0)
            return 1;
        i += len + 1;
    }
    return 0;
}

/* Scans the whole document: every value of a key holding a key word
 * becomes "REDACTED" (whatever its type), every other string has its
 * bearer tokens and JWTs replaced. Iterative (a stack of the open
 * containers), so no depth is too deep. 0: not JSON (a syntax error;
 * a document cut short is JSON as far as it goes). */
static int json_in_string(const jscan_t *j, const char *v, size_t vn, const reel_buf_t *vars,
                          reel_buf_t *t);
static int quoted_pairs(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out);

static int json_redact(jscan_t *j) {
    reel_buf_t stack, key;
    reel_buf_init(&stack, 0); /* '{' or '[' per open container */
    reel_buf_init(&key, 0);
    size_t skip_depth = 0, skip_from = 0;
    /* the depth of the "variables" object the scan is in (0: none), and
     * whether the value coming is that of a "variables" key */
    size_t vars_depth = 0;
    int skipping = 0, ok = 0, vars_next = j->vars_top;
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
                if (vars_next && c == '{')
                    vars_depth = stack.len;
                vars_next = 0;
                j->i++;
                jws(j);
                if (j->i < j->n && j->s[j->i] == (c == '{' ? '}' : ']')) {
                    stack.len--;
                    vars_depth = stack.len < vars_depth ? 0 : vars_depth;
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
                const char *v = j->s + from + 1;
                size_t vn = j->i - from - 2;
                reel_buf_t t;
                reel_buf_init(&t, 0);
                /* JSON in a string ({"body": "{\"apiKey\": \"x\"}"}, as
                 * AWS's events and many logs carry it): redacted as JSON,
                 * its strings by the rules for text; a GraphQL request's
                 * "variables" sent so, as the object would be */
                int nested =
                    skipping ? -1 : json_in_string(j, v, vn, vars_next ? j->gql_vars : NULL, &t);
                if (nested > 0)
                    jreplace(j, from + 1, (const char *)t.data, t.len, j->i - 1);
                if (nested < 0 && !skipping) {
                    /* GraphQL over HTTP: {"query": "mutation { login(password:
                     * \"x\") }"}, its arguments first, then the text rules */
                    reel_buf_t g;
                    reel_buf_init(&g, 0);
                    int changed = 0;
                    if (stack.len && stack.data[stack.len - 1] == '{' &&
                        ieq((const char *)key.data, key.len, "query") &&
                        graphql_into(j->r, v, vn, 1, &g)) {
                        v = (const char *)g.data;
                        vn = g.len;
                        changed = 1;
                    }
                    changed |= urls_in_text(j->r, v, vn, &t);
                    if (changed)
                        jreplace(j, from + 1, (const char *)t.data, t.len, j->i - 1);
                    reel_buf_free(&g);
                }
                reel_buf_free(&t);
            } else if (!jscalar(j)) {
                break;
            }
            vars_next = 0;
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
            const char *k = (const char *)key.data;
            if (!skipping && (reel_redact_key_matches(j->r, k, key.len) ||
                              (vars_depth != 0 && stack.len == vars_depth &&
                               gql_var_named(j->gql_vars, k, key.len)))) {
                skipping = 1;
                skip_depth = stack.len;
                skip_from = j->i;
            }
            vars_next = !skipping && j->gql_vars != NULL && j->gql_vars->len != 0 &&
                        ieq(k, key.len, "variables");
            want = VALUE;
            continue;
        }
        /* AFTER a value */
        if (skipping && stack.len == skip_depth) {
            static const char marker[] = "\"" REEL_REDACT_MARKER "\"";
            /* one redacted already is no replacement (see is_marker) */
            if (j->i - skip_from != sizeof marker - 1 ||
                memcmp(j->s + skip_from, marker, sizeof marker - 1) != 0)
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
            vars_depth = stack.len < vars_depth ? 0 : vars_depth;
        } else {
            break;
        }
    }
    if (!ok && j->i >= j->n && stack.len) {
        /* Cut short (body_limit, a HAR of a cut body): what came was JSON
         * so far, and is redacted as such; a secret's value that the cut
         * ended is replaced to the end, and a string it ended gets the
         * rules for text, its URLs too. */
        reel_buf_t t;
        reel_buf_init(&t, 0);
        static const char marker[] = "\"" REEL_REDACT_MARKER;
        j->cut = 1;
        if (skipping && skip_from < j->n) { /* (a cut before any of it: none to hide) */
            if (j->n - skip_from != sizeof marker - 1 ||
                memcmp(j->s + skip_from, marker, sizeof marker - 1) != 0)
                jreplace(j, skip_from, marker, sizeof marker - 1, j->n);
        } else if (urls_in_text(j->r, j->s + j->run, j->n - j->run, &t)) {
            jreplace(j, j->run, (const char *)t.data, t.len, j->n);
        }
        reel_buf_free(&t);
        ok = 1;
    }
    reel_buf_free(&stack);
    reel_buf_free(&key);
    return ok;
}

/* The JSON document of j (r, s, n, i set; x and raw too for one inside
 * a string) redacted: 1 with the result in b, 0 (nothing replaced) or -1
 * (not JSON: a syntax error, or cut short inside a string) with b
 * empty. */
static int json_doc(jscan_t *j, reel_buf_t *b) {
    reel_buf_t vars;
    reel_buf_init(&vars, 0);
    if (j->gql_vars != NULL) /* found outside the document (a GET's query=) */
        put(&vars, j->gql_vars->data, j->gql_vars->len);
    gql_json_variables(j->r, j->s, j->n, &vars);
    j->gql_vars = &vars;
    reel_buf_init(&j->b, 0);
    int json = json_redact(j) && !(j->x != NULL && j->cut);
    reel_buf_free(&vars);
    j->gql_vars = NULL;
    if (json && j->changed) {
        if (j->x != NULL)
            put(&j->b, j->raw + j->raw_run, j->rawn - j->raw_run);
        else
            put(&j->b, j->s + j->run, j->n - j->run);
        *b = j->b;
        return 1;
    }
    reel_buf_free(&j->b);
    reel_buf_init(b, 0);
    return json ? 0 : -1;
}

/* How many strings deep a document inside a string is read: each level
 * decodes its text once more. */
#define JSON_NEST_MAX 4

/* The content v[0..vn) of a string of the document j scans (as it stands,
 * escaped), when its text is a JSON object or array: that document
 * redacted as json_doc does, the result as the string's content in t. */
static int json_in_string(const jscan_t *j, const char *v, size_t vn, const reel_buf_t *vars,
                          reel_buf_t *t) {
    size_t k = 0;
    for (;;) { /* white space, escaped or not, before the document */
        if (k < vn && (v[k] == ' ' || v[k] == '\t'))
            k++;
        else if (vn - k >= 2 && v[k] == '\\' &&
                 (v[k + 1] == 'n' || v[k + 1] == 'r' || v[k + 1] == 't'))
            k += 2;
        else
            break;
    }
    if (j->depth >= JSON_NEST_MAX || k >= vn || (v[k] != '{' && v[k] != '['))
        return -1;
    decoded_t x;
    decode(v, vn, &x);
    jscan_t in = {.r = j->r,
                  .s = (const char *)x.data,
                  .n = x.len,
                  .x = &x,
                  .raw = v,
                  .rawn = vn,
                  .depth = j->depth + 1,
                  .gql_vars = vars,
                  .vars_top = vars != NULL};
    int rc = json_doc(&in, t);
    reel_redacted_t q;
    if (rc < 0 && quoted_pairs(j->r, in.s, in.n, &q)) {
        /* not JSON after all (a control byte in a string, a lone
         * surrogate's \ud800 decoded): its quoted pairs, as a body's with
         * a syntax error, so that one bad escape does not export every
         * secret of it; what changed goes back escaped (jreplace) */
        reel_buf_init(&in.b, 0);
        in.raw_run = 0;
        jreplace(&in, 0, q.data, q.len, in.n);
        put(&in.b, v + in.raw_run, vn - in.raw_run);
        *t = in.b;
        free(q.data);
        rc = 1;
    }
    reel_buf_free(&x.d);
    free(x.esc);
    return rc;
}

/* ---- GraphQL and JSON in a URL's query or a form ---------------------- */

/* Whether a query= value d[0..n) (decoded) reads as a GraphQL document:
 * an operation or a selection set, as GraphQL over HTTP's GET sends it. */
static int gql_doc(const char *d, size_t n) {
    size_t i = gql_space(d, n, 0);
    static const char *const ops[] = {"query", "mutation", "subscription", "fragment"};
    if (i < n && d[i] == '{')
        return 1;
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        size_t l = strlen(ops[k]);
        if (n - i > l && memcmp(d + i, ops[k], l) == 0 && !gql_name_char((unsigned char)d[i + l]))
            return 1;
    }
    return 0;
}

/* The variables that a GraphQL query= pair of s[0..n) gives for secrets
 * (login(password: $p)) into vars, as gql_json_variables finds them in a
 * JSON request: a GET's variables= holds their values. */
static void pairs_gql_vars(const reel_redact_t *r, const char *s, size_t n, int semi,
                           reel_buf_t *vars) {
    reel_buf_t d;
    reel_buf_init(&d, 0);
    for (size_t i = 0; i <= n;) {
        size_t end = pair_end(s, n, i, semi);
        if (end - i > 6 && ieq(s + i, 6, "query=")) {
            unescape(s + i + 6, end - i - 6, &d);
            if (gql_doc((const char *)d.data, d.len)) {
                gql_vars_t c = {(const char *)d.data, vars};
                gql_secrets(r, (const char *)d.data, d.len, gql_var, &c);
            }
        }
        i = end + 1;
    }
    reel_buf_free(&d);
}

/* The value v[0..vn) of the pair named key (decoded), when it holds a
 * document: GraphQL in query= (a GET's request), else a JSON object or
 * array (a GET's variables=, a filter or state some APIs put in a
 * query), redacted as a body of that kind (a JSON one with a syntax
 * error by its quoted pairs), its variables named in vars being secrets
 * in variables=. 1 if something was replaced, the value written into b
 * percent-encoded again (what is not unreserved as %XX); 0 for a document
 * with nothing to replace, -1 for none (nothing written either way: the
 * rules for text over the encoded value would find what these did not,
 * and a second pass over the output more than the first). */
static int param_doc(const reel_redact_t *r, const reel_buf_t *key, const char *v, size_t vn,
                     const reel_buf_t *vars, reel_buf_t *b) {
    if (memchr(v, '%', vn) == NULL && memchr(v, '{', vn) == NULL && memchr(v, '[', vn) == NULL)
        return -1; /* the common case: nothing encoded, no document */
    reel_buf_t d, out;
    reel_buf_init(&d, 0);
    reel_buf_init(&out, 0);
    unescape(v, vn, &d);
    const char *s = (const char *)d.data;
    size_t i = 0;
    while (i < d.len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    int rc = -1;
    if (ieq((const char *)key->data, key->len, "query") && gql_doc(s, d.len)) {
        rc = graphql_into(r, s, d.len, 0, &out);
    } else if (i < d.len && (s[i] == '{' || s[i] == '[')) {
        jscan_t j = {.r = r,
                     .s = s,
                     .n = d.len,
                     .gql_vars = vars,
                     .vars_top =
                         vars->len != 0 && ieq((const char *)key->data, key->len, "variables")};
        rc = json_doc(&j, &out);
        reel_redacted_t q;
        if (rc < 0) {
            rc = quoted_pairs(r, s, d.len, &q);
            if (rc) {
                reel_buf_free(&out);
                reel_buf_init(&out, 0);
                put(&out, q.data, q.len);
                free(q.data);
            }
        }
    }
    if (rc == 1)
        pct_encode(out.data, out.len, b);
    reel_buf_free(&d);
    reel_buf_free(&out);
    return rc;
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
        if (end - v != strlen(REEL_REDACT_MARKER) + 2 || s[end - 1] != *q ||
            !is_marker(s + v + 1, end - v - 2))
            changed = 1; /* not one redacted already */
        run = end;
        j.i = end;
    }
    reel_buf_free(&key);
    put(&b, s + run, n - run);
    reel_buf_t t;
    reel_buf_init(&t, 0);
    if (urls_in_text(r, (const char *)b.data, b.len, &t)) {
        reel_buf_free(&b);
        take(&t, out);
        return 1;
    }
    reel_buf_free(&t);
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

/* ---- markup: XML and HTML ------------------------------------------------ */

enum { MARKUP_NONE, MARKUP_XML, MARKUP_HTML };

/* s[0..n) starts with lower (lower case), in any case. */
static int starts_ci(const char *s, size_t n, const char *lower) {
    size_t k = strlen(lower);
    return n >= k && ieq(s, k, lower);
}

/* Whether a body is XML (a Content-Type text/xml, application/xml or any
 * +xml: SOAP, Atom, SVG; or an XML declaration first), HTML (text/html,
 * or a document that starts so), or neither. s[i..n) is the body after a
 * byte order mark and white space. */
static int markup_kind(const char *content_type, const char *s, size_t i, size_t n) {
    size_t k = media_type(&content_type);
    if (k >= 4 && (ieq(content_type + k - 4, 4, "/xml") || ieq(content_type + k - 4, 4, "+xml")))
        return MARKUP_XML;
    if (k > 0 &&
        (ci_prefix(content_type, "text/html") || ci_prefix(content_type, "application/xhtml")))
        return MARKUP_HTML;
    if (starts_ci(s + i, n - i, "<?xml"))
        return MARKUP_XML;
    if (starts_ci(s + i, n - i, "<!doctype html") || starts_ci(s + i, n - i, "<html"))
        return MARKUP_HTML;
    return MARKUP_NONE;
}

/* Whether the qualified name s[0..n) ("wsse:Password", "api-key") is a
 * secret: its local part, after any prefix, holds a key word. */
static int name_secret(const reel_redact_t *r, const char *s, size_t n) {
    const char *colon = n ? memrchr(s, ':', n) : NULL;
    if (colon != NULL) {
        n -= (size_t)(colon - s) + 1;
        s = colon + 1;
    }
    return n > 0 && reel_redact_key_matches(r, s, n);
}

static int tag_name_char(int c) {
    return alpha(c) || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ':' || c == '.' ||
           c >= 0x80;
}

/* An attribute of a start tag: its name s[n0..n1) (empty for a stray
 * byte), its value s[v0..v1) without its quotes (v0 == v1: none or
 * empty). */
typedef struct {
    size_t n0, n1, v0, v1;
} mattr_t;

/* The attribute at s[*i..n), *i moved past it; 0 (*i at the '>' or n)
 * at the end of the tag. */
static int next_attr(const char *s, size_t n, size_t *i, mattr_t *a) {
    size_t k = *i;
    while (k < n && (space((unsigned char)s[k]) || s[k] == '/'))
        k++;
    if (k >= n || s[k] == '>') {
        *i = k;
        return 0;
    }
    a->n0 = k;
    while (k < n && !space((unsigned char)s[k]) && s[k] != '=' && s[k] != '>' && s[k] != '/')
        k++;
    a->n1 = k;
    a->v0 = a->v1 = k;
    if (k == a->n0) { /* a stray '=' or quote: passed over */
        *i = k + 1;
        return 1;
    }
    size_t j = k;
    while (j < n && space((unsigned char)s[j]))
        j++;
    if (j < n && s[j] == '=') {
        j++;
        while (j < n && space((unsigned char)s[j]))
            j++;
        if (j < n && (s[j] == '"' || s[j] == '\'')) {
            const char *q = memchr(s + j + 1, s[j], n - j - 1);
            a->v0 = j + 1;
            a->v1 = q ? (size_t)(q - s) : n;
            k = q ? a->v1 + 1 : n;
        } else { /* HTML's unquoted value */
            a->v0 = j;
            while (j < n && !space((unsigned char)s[j]) && s[j] != '>')
                j++;
            a->v1 = k = j;
        }
    }
    *i = k;
    return 1;
}

/* XML or HTML s[0..n) into b, its secrets replaced and everything else
 * byte for byte: the value of an attribute whose name holds a key word
 * (api_key="x", data-token="x"; not name= nor key=, which name a value
 * as a JSON key does); the value= and content= of an element
 * that names a secret (<input name="password" value="x">, <meta
 * name="csrf-token" content="x">, <entry key="db.password" value="x">)
 * or is a password field (type="password"); and in XML the text and
 * CDATA inside an element whose name holds a key word or that names one,
 * at any depth (<wsse:Password>x</wsse:Password>, a UsernameToken's
 * every text), each text replaced whole but for the white space around
 * it. A comment's content is read as markup of its own (commented out);
 * declarations and processing instructions are passed over, and so is
 * what an HTML script or style holds; a document cut short is redacted
 * as far as it goes. 1 if something was replaced. in_comment: s is a
 * comment's content, where "<!--" is text (one level: no recursion that
 * a hostile body of "<!--<!--..." could make as deep as it is long). */
static int markup_in(const reel_redact_t *r, int xml, const char *s, size_t n, reel_buf_t *b,
                     int in_comment) {
    size_t i = 0, run = 0, depth = 0, secret_at = 0; /* depth of the outer secret element */
    int changed = 0;
    while (i < n) {
        const char *lt = memchr(s + i, '<', n - i);
        size_t t = lt ? (size_t)(lt - s) : n;
        if (secret_at) { /* a text inside a secret element */
            size_t a = i, z = t;
            while (a < z && space((unsigned char)s[a]))
                a++;
            while (z > a && space((unsigned char)s[z - 1]))
                z--;
            if (z > a)
                mreplace(s, &run, a, z, b, &changed);
        }
        if (lt == NULL)
            break;
        i = t;
        if (in_comment && starts_ci(s + i, n - i, "<!--")) {
            i += 4;
            continue;
        }
        if (starts_ci(s + i, n - i, "<!--")) {
            /* what a comment holds is markup commented out, often (a
             * config's <!-- <password>old</password> -->): read as such */
            size_t e = find(s, n, i + 4, "-->", 0);
            reel_buf_t c;
            reel_buf_init(&c, 0);
            if (e > i + 4 && markup_in(r, xml, s + i + 4, e - i - 4, &c, 1)) {
                put(b, s + run, i + 4 - run);
                put(b, c.data, c.len);
                run = e;
                changed = 1;
            }
            reel_buf_free(&c);
            i = e < n ? e + 3 : n;
            continue;
        }
        if (starts_ci(s + i, n - i, "<![cdata[")) {
            size_t e = find(s, n, i + 9, "]]>", 0);
            if (secret_at && e > i + 9)
                mreplace(s, &run, i + 9, e, b, &changed);
            i = e < n ? e + 3 : n;
            continue;
        }
        if (i + 1 < n && (s[i + 1] == '?' || s[i + 1] == '!' || s[i + 1] == '/')) {
            size_t e = find(s, n, i + 1, s[i + 1] == '?' ? "?>" : ">", 0);
            if (s[i + 1] == '/' && xml && depth > 0) {
                if (depth == secret_at)
                    secret_at = 0;
                depth--;
            }
            i = e < n ? e + (s[i + 1] == '?' ? 2 : 1) : n;
            continue;
        }
        size_t k = i + 1;
        if (k >= n || !(alpha((unsigned char)s[k]) || s[k] == '_' || s[k] == ':')) {
            i++; /* "a < b": no tag */
            continue;
        }
        while (k < n && tag_name_char((unsigned char)s[k]))
            k++;
        size_t name0 = i + 1, name1 = k, j = k;
        mattr_t a;
        int names_secret = 0;
        while (next_attr(s, n, &j, &a)) {
            const char *an = s + a.n0, *v = s + a.v0;
            size_t anl = a.n1 - a.n0, vl = a.v1 - a.v0;
            if (((ieq(an, anl, "name") || ieq(an, anl, "key")) && name_secret(r, v, vl)) ||
                (ieq(an, anl, "type") && ieq(v, vl, "password")))
                names_secret = 1;
        }
        size_t end = j; /* the '>', or n */
        j = k;
        while (next_attr(s, n, &j, &a)) {
            const char *an = s + a.n0;
            size_t anl = a.n1 - a.n0;
            /* name= and key= name a value, as a JSON key does: they stay */
            if (a.v1 > a.v0 && !ieq(an, anl, "name") && !ieq(an, anl, "key") &&
                (name_secret(r, an, anl) ||
                 (names_secret && (ieq(an, anl, "value") || ieq(an, anl, "content")))))
                mreplace(s, &run, a.v0, a.v1, b, &changed);
        }
        i = end < n ? end + 1 : n;
        if (end >= n || s[end - 1] == '/')
            continue; /* cut short, or an empty element */
        if (xml) {
            depth++;
            if (!secret_at && (names_secret || name_secret(r, s + name0, name1 - name0)))
                secret_at = depth;
        } else if (ieq(s + name0, name1 - name0, "script") ||
                   ieq(s + name0, name1 - name0, "style")) {
            /* raw text: its '<' start no tag, up to its end tag */
            i = find(s, n, i, name1 - name0 == 6 ? "</script" : "</style", 1);
        }
    }
    put(b, s + run, n - run);
    return changed;
}

static int markup(const reel_redact_t *r, int xml, const char *s, size_t n, reel_buf_t *b) {
    return markup_in(r, xml, s, n, b, 0);
}

/* The end of the line that starts at s[i] (the index of its '\n', n if
 * it has none), and in *next where the next line starts. */
static size_t line_end(const char *s, size_t n, size_t i, size_t *next) {
    const char *nl = memchr(s + i, '\n', n - i);
    size_t e = nl ? (size_t)(nl - s) : n;
    *next = nl ? e + 1 : n;
    return e > i && s[e - 1] == '\r' ? e - 1 : e;
}

/* ---- YAML and properties ------------------------------------------------ */

/* Whether content_type (may be NULL) is YAML or a Java properties file
 * (a configuration server's answer: Spring Cloud Config serves both). */
static int config_type(const char *content_type) {
    static const char *const types[] = {"application/yaml",
                                        "application/x-yaml",
                                        "text/yaml",
                                        "text/x-yaml",
                                        "text/x-java-properties",
                                        "text/x-properties",
                                        "application/x-java-properties"};
    size_t k = media_type(&content_type);
    for (size_t i = 0; k > 0 && i < sizeof types / sizeof types[0]; i++)
        if (ieq(content_type, k, types[i]))
            return 1;
    return 0;
}

/* A YAML flow mapping on one line, s[from..to) after its '{' ({user: a,
 * password: b}): the value of each secret key replaced through run and
 * b, and the flow mappings in the others' values, to any depth. Returns
 * where it ended (its '}', or to). */
static size_t flow_pairs(const reel_redact_t *r, const char *s, size_t from, size_t to, size_t *run,
                         reel_buf_t *b, int *changed) {
    size_t i = from;
    while (i < to && s[i] != '}') {
        while (i < to && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t k0 = i;
        char q = i < to && (s[i] == '"' || s[i] == '\'') ? s[i] : 0;
        if (q) {
            const char *c = memchr(s + i + 1, q, to - i - 1);
            i = c ? (size_t)(c - s) + 1 : to;
        }
        while (i < to && s[i] != ':' && s[i] != ',' && s[i] != '}')
            i++;
        if (i >= to || s[i] != ':')
            continue; /* a key without a value: on at its ',' or '}' */
        size_t k1 = i++;
        k0 += q != 0;
        while (k1 > k0 && (s[k1 - 1] == ' ' || s[k1 - 1] == '\t' || (q && s[k1 - 1] == q)))
            k1--;
        while (i < to && (s[i] == ' ' || s[i] == '\t'))
            i++;
        int secret = k1 > k0 && reel_redact_key_matches(r, s + k0, k1 - k0);
        if (!secret && i < to && s[i] == '{') {
            i = flow_pairs(r, s, i + 1, to, run, b, changed);
            i += i < to; /* its '}' */
            continue;
        }
        size_t v0 = i, depth = 0;
        while (i < to) {
            if (s[i] == '"' || s[i] == '\'') {
                const char *c = memchr(s + i + 1, s[i], to - i - 1);
                i = c ? (size_t)(c - s) + 1 : to;
                continue;
            }
            if (s[i] == '[' || s[i] == '{')
                depth++;
            else if ((s[i] == ']' || s[i] == '}') && depth-- == 0)
                break;
            else if (s[i] == ',' && depth == 0)
                break;
            i++;
        }
        size_t v1 = i;
        while (v1 > v0 && (s[v1 - 1] == ' ' || s[v1 - 1] == '\t'))
            v1--;
        if (secret && v1 > v0)
            mreplace(s, run, v0, v1, b, changed);
    }
    return i;
}

/* YAML or properties s[0..n) into b: the value of every `key: value` or
 * `key=value` line whose key holds a key word replaced, the rest byte for
 * byte. A secret key with no value on its line (YAML's nested mapping,
 * or a block scalar `|` / `>`) has every more indented line after it
 * replaced too, each line's value where it has a key, else its text; in
 * a flow mapping on one line ({user: a, password: b}) the values of its
 * secret keys. Comments (# or !) stay. 1 if something was replaced. */
static int config_lines(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *b) {
    size_t run = 0;
    long under = -1; /* the indent of a secret key whose value is its block */
    int changed = 0;
    for (size_t i = 0, next; i < n; i = next) {
        size_t e = line_end(s, n, i, &next), k = i;
        while (k < e && (s[k] == ' ' || s[k] == '\t'))
            k++;
        long indent = (long)(k - i);
        if (k == e || s[k] == '#' || s[k] == '!')
            continue; /* blank, or a comment: a block goes on past it */
        if (under >= 0 && indent <= under)
            under = -1;
        while (k + 1 < e && s[k] == '-' && s[k + 1] == ' ') /* a YAML list item */
            for (k += 2; k < e && s[k] == ' '; k++)
                ;
        if (k >= e)
            continue; /* "- " alone */
        if (s[k] == '{' && under < 0) { /* a list item that is a flow mapping */
            flow_pairs(r, s, k + 1, e, &run, b, &changed);
            continue;
        }
        /* the key ends at the first '=' or ": " (or ':' ending the line) */
        size_t sep = k;
        char q = s[k] == '"' || s[k] == '\'' ? s[k] : 0;
        if (q) {
            const char *c = memchr(s + k + 1, q, e - k - 1);
            sep = c ? (size_t)(c - s) + 1 : e;
        }
        while (sep < e && s[sep] != '=' &&
               !(s[sep] == ':' && (sep + 1 == e || s[sep + 1] == ' ' || s[sep + 1] == '\t')))
            sep++;
        size_t v = sep < e ? sep + 1 : e, ve = e;
        while (v < ve && (s[v] == ' ' || s[v] == '\t'))
            v++;
        while (ve > v && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
            ve--;
        if (under >= 0) { /* inside a secret's block: every value */
            size_t from = sep < e ? v : k;
            if (ve > from)
                mreplace(s, &run, from, ve, b, &changed);
            continue;
        }
        if (sep >= e)
            continue;
        size_t k0 = k + (q != 0), k1 = sep;
        while (k1 > k0 && (s[k1 - 1] == ' ' || s[k1 - 1] == '\t' || (q && s[k1 - 1] == q)))
            k1--;
        if (k1 == k0 || !reel_redact_key_matches(r, s + k0, k1 - k0)) {
            if (v < ve && s[v] == '{') /* a flow mapping: {user: a, password: b} */
                flow_pairs(r, s, v + 1, ve, &run, b, &changed);
            continue;
        }
        if (v == ve || ((s[v] == '|' || s[v] == '>') && ve - v <= 3))
            under = indent; /* its value is the block below */
        else
            mreplace(s, &run, v, ve, b, &changed);
    }
    put(b, s + run, n - run);
    return changed;
}

static int plain_body(const reel_redact_t *r, const char *content_type, const uint8_t *body,
                      size_t n, reel_redacted_t *out);

/* text/event-stream (server-sent events, as streaming APIs send them):
 * the value of each data: line as a body of its own, so that the JSON
 * of an event has its secrets replaced as a JSON body's (a value that
 * does not start as JSON, as reel_redact_note: the lines of JSON printed
 * over several data: lines have their "key": value pairs); the other lines
 * (event:, id:, comments) by the rules for text. Lines end at LF or
 * CRLF, kept as they were. 1 if something was replaced. */
static int event_stream(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *b) {
    int changed = 0;
    for (size_t i = 0, next; i < n; i = next) {
        size_t e = line_end(s, n, i, &next), v = i;
        if (e - i >= 5 && memcmp(s + i, "data:", 5) == 0) {
            v = i + 5 + (e > i + 5 && s[i + 5] == ' ');
            put(b, s + i, v - i);
            reel_redacted_t t;
            /* a line of JSON printed over several data: lines ("token":
             * "x" alone) gets the rules of a note: its quoted pairs */
            int json = e > v && (s[v] == '{' || s[v] == '[');
            if (e > v && (json ? plain_body(r, NULL, (const uint8_t *)s + v, e - v, &t)
                               : quoted_pairs(r, s + v, e - v, &t))) {
                put(b, t.data, t.len);
                free(t.data);
                changed = 1;
            } else {
                put(b, s + v, e - v);
            }
        } else {
            changed |= urls_in_text(r, s + i, e - i, b);
        }
        put(b, s + e, next - e);
    }
    return changed;
}

/* A body other than multipart: see reel_redact_body. */
static int plain_body(const reel_redact_t *r, const char *content_type, const uint8_t *body,
                      size_t n, reel_redacted_t *out) {
    /* a UTF-8 byte order mark may come first (RFC 8259 8.1: ignored) */
    size_t bom = n >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0 ? 3 : 0, i = bom;
    while (i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < n && (body[i] == '{' || body[i] == '[')) {
        jscan_t j = {.r = r, .s = (const char *)body, .n = n, .i = bom};
        reel_buf_t b;
        int json = json_doc(&j, &b);
        if (json >= 0) {
            if (json > 0)
                take(&b, out);
            return json;
        }
        /* Not JSON after all (a syntax error): its quoted "key": value
         * pairs still have their secrets replaced, so that one bad byte
         * does not export every secret of the body in the clear. */
        return quoted_pairs(r, (const char *)body, n, out);
    }
    if (content_type != NULL) {
        while (*content_type == ' ')
            content_type++;
        if (ci_prefix(content_type, "application/x-www-form-urlencoded"))
            return reel_redact_urlencoded(r, (const char *)body, n, out);
        if (ci_prefix(content_type, "text/event-stream")) {
            reel_buf_t b;
            reel_buf_init(&b, 0);
            if (!event_stream(r, (const char *)body, n, &b)) {
                reel_buf_free(&b);
                return 0;
            }
            take(&b, out);
            return 1;
        }
    }
    /* markup, YAML, properties, GraphQL: their secrets first, then the
     * rules for text over it all (URLs, bearer tokens, JWTs, ...) */
    reel_buf_t b, m;
    reel_buf_init(&b, 0);
    reel_buf_init(&m, 0);
    const char *text = (const char *)body;
    size_t tn = n;
    int kind = markup_kind(content_type, text, i, n), changed = 0;
    if ((kind != MARKUP_NONE && markup(r, kind == MARKUP_XML, text, n, &m)) ||
        (kind == MARKUP_NONE && config_type(content_type) && config_lines(r, text, n, &m)) ||
        (kind == MARKUP_NONE && is_graphql(content_type) && graphql_into(r, text, n, 0, &m))) {
        text = (const char *)m.data;
        tn = m.len;
        changed = 1;
    }
    changed |= urls_in_text(r, text, tn, &b);
    reel_buf_free(&m);
    if (!changed) {
        reel_buf_free(&b);
        return 0;
    }
    take(&b, out);
    return 1;
}

/* ---- multipart bodies (RFC 2046 5.1.1, RFC 7578) ------------------------ */

/* How deep a multipart body inside a part of one is followed (a form's
 * multipart/mixed of files, RFC 2388; a batch of batches): past it, a
 * part is left as it is. */
#define MULTIPART_DEPTH 8

/* Whether content_type (NUL-terminated, may be NULL) is multipart/... */
static int is_multipart(const char *content_type) {
    return media_type(&content_type) > 0 && ci_prefix(content_type, "multipart/");
}

/* The parameter `name` (lower case) of a header value that has some
 * ("multipart/form-data; boundary=x", "form-data; name=\"a\""): its value
 * into v (reset first), a quoted string's backslash escapes read. 1 if
 * found. */
static int param(const char *s, size_t n, const char *name, reel_buf_t *v) {
    const char *semi = memchr(s, ';', n);
    size_t i = semi ? (size_t)(semi - s) + 1 : n;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ';'))
            i++;
        size_t k = i;
        while (k < n && s[k] != '=' && s[k] != ';')
            k++;
        size_t kend = k;
        while (kend > i && (s[kend - 1] == ' ' || s[kend - 1] == '\t'))
            kend--;
        if (k >= n || s[k] == ';') {
            i = k;
            continue;
        }
        int match = ieq(s + i, kend - i, name);
        if (match)
            reel_buf_reset(v);
        k++;
        while (k < n && (s[k] == ' ' || s[k] == '\t'))
            k++;
        if (k < n && s[k] == '"') {
            for (k++; k < n && s[k] != '"'; k++) {
                if (s[k] == '\\' && k + 1 < n)
                    k++;
                if (match)
                    put(v, &s[k], 1);
            }
            k += k < n; /* the closing quote */
        } else {
            size_t e = k;
            while (e < n && s[e] != ';' && s[e] != ' ' && s[e] != '\t')
                e++;
            if (match)
                put(v, s + k, e - k);
            k = e;
        }
        if (match)
            return 1;
        i = k;
    }
    return 0;
}

static int body_into(const reel_redact_t *r, const char *content_type, const char *s, size_t n,
                     int depth, reel_buf_t *b);

/* The name of a part, from its Content-Disposition s[0..n) into name:
 * name=, or name*= (RFC 8187: charset'language'percent-encoded, which
 * RFC 7578 4.2 says not to send but some clients do) when there is no
 * name= or when it is the one that names a secret. */
static void disposition_name(const reel_redact_t *r, const char *s, size_t n, reel_buf_t *name) {
    reel_buf_t ext;
    reel_buf_init(&ext, 0);
    int plain = param(s, n, "name", name);
    if (param(s, n, "name*", &ext)) {
        /* (name*="" leaves ext without a buffer: no bytes to look at) */
        const char *e = ext.len ? (const char *)ext.data : "";
        const char *q1 = memchr(e, '\'', ext.len);
        const char *q2 = q1 ? memchr(q1 + 1, '\'', ext.len - (size_t)(q1 + 1 - e)) : NULL;
        size_t at = q2 ? (size_t)(q2 + 1 - e) : 0;
        reel_buf_t dec;
        reel_buf_init(&dec, 0);
        unescape(e + at, ext.len - at, &dec);
        if (!plain || (!reel_redact_key_matches(r, (const char *)name->data, name->len) &&
                       reel_redact_key_matches(r, (const char *)dec.data, dec.len))) {
            reel_buf_reset(name);
            put(name, dec.data, dec.len);
        }
        reel_buf_free(&dec);
    }
    reel_buf_free(&ext);
}

/* The header fields of a part, s[from..to), into b: each value redacted
 * as a header's; the name= of its Content-Disposition into name and its
 * Content-Type into type (NUL-terminated; both reset first). 1 if a value
 * was replaced. */
static int part_fields(const reel_redact_t *r, const char *s, size_t from, size_t to,
                       reel_buf_t *name, reel_buf_t *type, reel_buf_t *b) {
    int changed = 0;
    size_t run = from;
    reel_buf_reset(name);
    reel_buf_reset(type);
    for (size_t i = from, next; i < to; i = next) {
        size_t e = line_end(s, to, i, &next);
        const char *colon = memchr(s + i, ':', e - i);
        if (colon == NULL)
            continue;
        size_t nlen = (size_t)(colon - (s + i)), v = (size_t)(colon - s) + 1;
        while (v < e && (s[v] == ' ' || s[v] == '\t'))
            v++;
        if (ieq(s + i, nlen, "content-disposition"))
            disposition_name(r, s + v, e - v, name);
        else if (ieq(s + i, nlen, "content-type"))
            put(type, s + v, e - v);
        reel_redacted_t t;
        if (reel_redact_header(r, s + i, nlen, s + v, e - v, &t)) {
            /* a header replaced whole is the marker whatever it held: a
             * value that was the marker already is no replacement here */
            if (t.len != e - v || memcmp(t.data, s + v, t.len) != 0) {
                put(b, s + run, v - run);
                put(b, t.data, t.len);
                run = e;
                changed = 1;
            }
            free(t.data);
        }
    }
    put(b, s + run, to - run);
    put(type, "", 1);
    return changed;
}

/* Whether what follows a boundary at s[i] makes its line a delimiter:
 * "--" (the close delimiter), or blanks and the line's end (or the end of
 * a body cut short). A line that only begins with the boundary is
 * content. */
static int delimiter_end(const char *s, size_t n, size_t i) {
    if (i + 2 <= n && s[i] == '-' && s[i + 1] == '-')
        return 1;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    i += i < n && s[i] == '\r';
    return i >= n || s[i] == '\n';
}

/* The next delimiter line at or after s[from] (the index of its "--"), n
 * if none; nd[0..nn) is "\n--" and the boundary, and at from 0 the body
 * may start with a delimiter. */
static size_t next_delimiter(const char *s, size_t n, size_t from, const char *nd, size_t nn) {
    if (from == 0 && n >= nn - 1 && memcmp(s, nd + 1, nn - 1) == 0 && delimiter_end(s, n, nn - 1))
        return 0;
    while (from < n) {
        const char *hit = memmem(s + from, n - from, nd, nn);
        if (hit == NULL)
            return n;
        from = (size_t)(hit - s) + 1;
        if (delimiter_end(s, n, from + nn - 1))
            return from;
    }
    return n;
}

/* A multipart body s[0..n) whose Content-Type is content_type, into b:
 * each part's header fields as a header's, the content of a part whose
 * name (a form's field) holds a key word replaced whole, and the
 * content of the others redacted as a body of the part's own
 * Content-Type (none: as a body without one; binary content is left as
 * it is). The preamble, the delimiters and the epilogue stay byte for
 * byte. A body cut short is redacted as far as it goes, a secret's
 * content the cut ended replaced to the end. Returns 1 if something was
 * replaced, 0 if not, -1 (b untouched) if s is not one: no boundary, or
 * no delimiter line that has it. */
static int multipart(const reel_redact_t *r, const char *content_type, const char *s, size_t n,
                     int depth, reel_buf_t *b) {
    reel_buf_t bd, needle, name, type;
    reel_buf_init(&bd, 0);
    /* RFC 2046 allows 70 bytes; a longer one is still sought */
    if (!param(content_type, strlen(content_type), "boundary", &bd) || bd.len == 0 ||
        bd.len > 200) {
        reel_buf_free(&bd);
        return -1;
    }
    /* a delimiter is "--" and the boundary at the start of a line; the
     * first may start the body */
    reel_buf_init(&needle, 0);
    put(&needle, "\n--", 3);
    put(&needle, bd.data, bd.len);
    reel_buf_free(&bd);
    const char *nd = (const char *)needle.data;
    size_t nn = needle.len, d = next_delimiter(s, n, 0, nd, nn);
    if (d >= n) {
        reel_buf_free(&needle);
        return -1;
    }
    reel_buf_init(&name, 0);
    reel_buf_init(&type, 0);
    int changed = 0;
    size_t run = 0; /* first byte of s not yet in b */
    while (d < n) {
        size_t i = d + nn - 1, hs, cs = n, ce = n, next = n;
        if (i + 2 <= n && s[i] == '-' && s[i + 1] == '-')
            break; /* the close delimiter: the epilogue follows */
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        i += i < n && s[i] == '\r';
        if (i >= n || s[i] != '\n')
            break; /* not a delimiter line, or cut in it */
        hs = i + 1;
        /* the header fields end at the first empty line */
        for (size_t k = hs, nx; k < n; k = nx) {
            if (line_end(s, n, k, &nx) == k && nx > k) {
                cs = nx;
                break;
            }
            if (nx >= n)
                break; /* cut in the fields: no content */
        }
        if (cs < n && (next = next_delimiter(s, n, cs, nd, nn)) < n) {
            ce = next - 1; /* the '\n' before its "--" */
            ce -= ce > cs && s[ce - 1] == '\r';
        }
        put(b, s + run, hs - run);
        /* the fields up to the empty line, which stays as it is */
        size_t fe = n;
        if (cs < n) {
            fe = cs - 1;
            fe -= fe > hs && s[fe - 1] == '\r';
        }
        changed |= part_fields(r, s, hs, fe, &name, &type, b);
        run = fe;
        if (cs < n) {
            put(b, s + run, cs - run);
            run = cs;
            if (name.len > 0 && reel_redact_key_matches(r, (const char *)name.data, name.len)) {
                put(b, REEL_REDACT_MARKER, strlen(REEL_REDACT_MARKER));
                if (!is_marker(s + cs, ce - cs))
                    changed = 1;
            } else {
                const char *ct = type.len > 1 ? (const char *)type.data : NULL;
                changed |= body_into(r, ct, s + cs, ce - cs, depth + 1, b);
            }
            run = ce;
        }
        d = next;
    }
    put(b, s + run, n - run);
    reel_buf_free(&name);
    reel_buf_free(&type);
    reel_buf_free(&needle);
    return changed;
}

/* s[0..n), a body or a part of one, redacted into b (as it is when
 * nothing is replaced); 1 if something was. */
static int body_into(const reel_redact_t *r, const char *content_type, const char *s, size_t n,
                     int depth, reel_buf_t *b) {
    if (is_multipart(content_type) && depth < MULTIPART_DEPTH) {
        int c = multipart(r, content_type, s, n, depth, b);
        if (c >= 0)
            return c;
    }
    reel_redacted_t t;
    if (n > 0 && reel_looks_text((const uint8_t *)s, n) &&
        plain_body(r, content_type, (const uint8_t *)s, n, &t)) {
        put(b, t.data, t.len);
        free(t.data);
        return 1;
    }
    put(b, s, n);
    return 0;
}

int reel_redact_reads(const char *content_type, const uint8_t *body, size_t n) {
    return n > 0 && (is_multipart(content_type) || reel_looks_text(body, n));
}

int reel_redact_body(const reel_redact_t *r, const char *content_type, const uint8_t *body,
                     size_t n, reel_redacted_t *out) {
    if (!is_multipart(content_type))
        return plain_body(r, content_type, body, n, out);
    reel_buf_t b;
    reel_buf_init(&b, 0);
    int c = multipart(r, content_type, (const char *)body, n, 0, &b);
    if (c > 0) {
        take(&b, out);
        return 1;
    }
    reel_buf_free(&b);
    return c < 0 && reel_looks_text(body, n) ? plain_body(r, content_type, body, n, out) : 0;
}
