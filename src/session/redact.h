/* Redaction of secrets in exported flows (reel export --redact).
 *
 * Rules: header names whose whole value is a secret, and key words; a key
 * (query parameter, form field, JSON object key, header name) that contains
 * a key word, case-insensitively, is a secret key and its value is replaced
 * by REEL_REDACT_MARKER. Defaults:
 * - headers Authorization and Proxy-Authorization: the credentials after
 *   the scheme word ("Bearer REDACTED", "Basic REDACTED");
 * - Cookie: every cookie's value ("sid=REDACTED; lang=REDACTED");
 *   Set-Cookie: the cookie's value, attributes kept ("sid=REDACTED; Path=/");
 * - any other header whose name contains a key word (X-Api-Key,
 *   X-Auth-Token, X-CSRF-Token): its whole value;
 * - Location, Content-Location and Referer: the URL, as a request's
 *   target (reel_redact_target); so each <URL> of Link and the url= of
 *   Refresh;
 * - in every other header value and every text body: bearer tokens
 *   ("Bearer xyz"), JSON Web Tokens ("eyJ...x.y.z"), tokens known by
 *   their issuer's prefix ("ghp_", "xoxb-", "sk_live_", "AKIA", ...: the
 *   prefix kept) and a PEM private key's lines;
 * - query parameters (split at '&' and at a ';' a "name=" follows), path
 *   parameters (";jsessionid=x") and application/x-www-form-urlencoded
 *   fields (split at '&' only) with a secret key;
 * - URLs in bodies and notes (in JSON string values, JSON escapes read
 *   and written back as they were, and in text): as a request's target;
 * - JSON bodies: the value (of any type) of every secret key,
 *   at any depth, the rest byte for byte (a body cut short: as far as it
 *   goes); one with a syntax error: the value after each secret key in
 *   double or single quotes and a colon, then the rules for text;
 * - annotations (reel_redact_note): the same as a JSON body with a syntax
 *   error;
 * - multipart bodies (a form's multipart/form-data, multipart/mixed):
 *   the content of a part whose name holds a key word, whole; the
 *   other parts by the rules for their own Content-Type.
 * - XML and HTML bodies: the value of an attribute whose name holds a
 *   key word, the value= and content= of an element whose name= or key=
 *   names a secret (or a password field), and in XML every text inside
 *   an element whose name holds a key word or that names one; then the
 *   rules for text.
 * - server-sent events (text/event-stream): each data: line's value as a
 *   body of its own (its JSON as JSON), the other lines as text.
 * - YAML and Java properties (by content type): the value of each
 *   key: value / key=value line with a secret key, and every more
 *   indented line under a secret key with no value on its line.
 * - GraphQL (a JSON body's "query" string, an application/graphql
 *   body): the value of every argument whose name holds a key word.
 * Default key words: password passwd pwd token secret apikey api_key api-key
 * auth session credential signature private_key access_key ("auth" not
 * where it begins author, authored, authority; authorization and
 * authorize are); and "key" as a word of its own (key, X-Key, keyId; not
 * monkey or keyboard).
 *
 * Everything here is pure: bytes in, owned bytes out. */
#ifndef REEL_SESSION_REDACT_H
#define REEL_SESSION_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/** What a secret is replaced with. */
#define REEL_REDACT_MARKER "REDACTED"

typedef struct reel_redact reel_redact_t;

/** The default rules; returns owned (reel_redact_free). */
reel_redact_t *reel_redact_new(void);

/** Frees r; accepts NULL. */
void reel_redact_free(reel_redact_t *r);

/** Adds a header name whose whole value is redacted (copied, any case). */
void reel_redact_add_header(reel_redact_t *r, const char *name);

/** Adds a key word (copied, any case). */
void reel_redact_add_key(reel_redact_t *r, const char *word);

/** 1 if key[0..n) contains one of r's key words, case-insensitively, or
 * the word "key" (see above). */
int reel_redact_key_matches(const reel_redact_t *r, const char *key, size_t n);

/** Redacted bytes: *out (owned, NUL-terminated, free()) and *out_len. */
typedef struct {
    char *data;
    size_t len;
} reel_redacted_t;

/** The value of header name: returns 1 and fills *out when something was
 * replaced, else 0 (*out untouched). */
int reel_redact_header(const reel_redact_t *r, const char *name, size_t name_len, const char *value,
                       size_t value_len, reel_redacted_t *out);

/** An urlencoded list "k=v&k2=v2" (a form body; split at '&' only, as
 * browsers write forms): values of secret keys replaced, a value that is
 * a URL (as it stands or percent-encoded, any number of times up to a
 * fixed depth) redacted as reel_redact_target does and encoded again,
 * and bearer tokens and JWTs in the others. Returns 1 and fills *out when something
 * was replaced, else 0. */
int reel_redact_urlencoded(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out);

/** A URL or request target ("/path?query#fragment", "scheme://user:pw@
 * host/...", "user:pw@host:port"): the userinfo's password, secret path
 * parameters (";jsessionid=x"), the query as above but split at a ';'
 * too when a "name=" follows it, and the fragment as a query too (after
 * its '?' when it has one and no '=' comes before that). Returns 1 and
 * fills *out when something was replaced, else 0. */
int reel_redact_target(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out);

/** A body: JSON (an object or array, whatever its Content-Type; one cut
 * short as far as it goes) has the values of its secret keys replaced,
 * the URLs in its other strings redacted as reel_redact_target does (the
 * string's JSON escapes kept), and the rest as it was; one that starts so
 * but has a syntax error is redacted as reel_redact_note does; a form
 * (content_type application/x-www-form-urlencoded) as
 * reel_redact_urlencoded; multipart (content_type multipart/... with
 * its boundary): each part's header fields as a header's, the content of
 * a part whose name (a form field's) holds a key word replaced whole, the
 * others' content by these rules for the part's Content-Type (binary
 * content left as it is), preamble, delimiters and epilogue byte for
 * byte; XML and HTML (by content_type, or by how the body starts) their
 * secrets as the rules above say, then as text; YAML and properties
 * likewise; text/event-stream each data: line's value as a body; other
 * text has its URLs, bearer tokens
 * and JWTs redacted.
 * content_type may be NULL. Returns 1 and fills *out when
 * something was replaced (a value that is the marker already is not),
 * else 0. */
int reel_redact_body(const reel_redact_t *r, const char *content_type, const uint8_t *body,
                     size_t n, reel_redacted_t *out);

/** Whether reel_redact_body reads a body of this Content-Type
 * (NUL-terminated, may be NULL) and bytes: text, or multipart (whose
 * text parts it reads, whatever the others hold). */
int reel_redact_reads(const char *content_type, const uint8_t *body, size_t n);

/** Text a user wrote (an annotation), which may quote headers or JSON:
 * the value after every quoted secret key and a colon ("password": "x",
 * found without needing valid JSON around it) replaced, the URLs in it
 * redacted as in a text body, and the rules for text over the rest. A
 * JSON body with a syntax error gets the same from reel_redact_body.
 * Returns 1 and fills *out when something was replaced, else 0. */
int reel_redact_note(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out);

/** Free text: bearer tokens, JWTs, tokens known by their prefix and PEM
 * private keys replaced. Returns 1 and fills *out
 * when something was replaced, else 0. */
int reel_redact_text(const reel_redact_t *r, const char *s, size_t n, reel_redacted_t *out);

#endif
