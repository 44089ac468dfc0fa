/* map_remote's rules; see maprule.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "session/maprule.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

typedef struct {
    pcre2_code *re;
    char *replacement;
    char *text; /* the rule as given, for errors */
} rule_t;

struct reel_map_rules {
    rule_t *r;
    size_t n;
};

/* Splits SEP REGEX SEP REPLACEMENT: the pattern (owned, *re) and the
 * replacement (a pointer into rule). NULL with why set when it is not one. */
static const char *split(const char *rule, char **re, const char **why) {
    *re = NULL;
    unsigned char sep = (unsigned char)rule[0];
    if (sep == '\0' || isalnum(sep) || isspace(sep)) {
        *why = "a rule starts with its separator (\"|regex|replacement\")";
        return NULL;
    }
    const char *mid = strchr(rule + 1, sep);
    if (mid == NULL) {
        *why = "no replacement after the pattern (\"|regex|replacement\")";
        return NULL;
    }
    if (strchr(mid + 1, sep)) {
        *why =
            "three parts: a flow filter before the pattern is not taken (\"|regex|replacement\")";
        return NULL;
    }
    if (mid == rule + 1) {
        *why = "an empty pattern";
        return NULL;
    }
    *re = reel_strndup(rule + 1, (size_t)(mid - rule - 1));
    return mid + 1;
}

static pcre2_code *compile(const char *re, const char *rule, reel_err_t *err) {
    int code = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *c =
        /* (a URL may hold bytes that are no UTF-8: matched, not an error) */
        pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                      &code, &off, NULL);
    if (c == NULL) {
        PCRE2_UCHAR msg[200];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        reel_err_set(err, REEL_INVALID, "map_remote rule '%.120s': bad pattern at %zu: %s", rule,
                     (size_t)off, (const char *)msg);
    }
    return c;
}

/* *out (owned): subject with every match of rule's pattern replaced; 0
 * when it did not match, 1 when it did, -1 on an error (err set). */
static int substitute(const rule_t *r, const char *subject, char **out, reel_err_t *err) {
    *out = NULL;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
    size_t len = strlen(subject), cap = len * 2 + strlen(r->replacement) + 64;
    int rc;
    for (int round = 0; round < 2; round++) {
        *out = reel_malloc(cap);
        PCRE2_SIZE got = cap;
        rc = pcre2_substitute(r->re, (PCRE2_SPTR)subject, len, 0,
                              PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, md, NULL,
                              (PCRE2_SPTR)r->replacement, PCRE2_ZERO_TERMINATED,
                              (PCRE2_UCHAR *)*out, &got);
        if (rc != PCRE2_ERROR_NOMEMORY)
            break;
        free(*out);
        *out = NULL;
        cap = got + 1; /* (the length it needs, told by OVERFLOW_LENGTH) */
    }
    pcre2_match_data_free(md);
    if (rc > 0)
        return 1;
    free(*out);
    *out = NULL;
    if (rc == 0 || rc == PCRE2_ERROR_NOMATCH)
        return 0;
    PCRE2_UCHAR msg[200];
    if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "error %d", rc);
    reel_err_set(err, REEL_INVALID, "map_remote rule '%.120s' could not replace: %s", r->text,
                 (const char *)msg);
    return -1;
}

reel_rc reel_map_rule_check(const char *rule, reel_err_t *err) {
    const char *why = NULL;
    char *re = NULL;
    const char *repl = split(rule, &re, &why);
    if (repl == NULL)
        return reel_err_set(err, REEL_INVALID, "map_remote rule '%.120s': %s", rule, why);
    pcre2_code *c = compile(re, rule, err);
    free(re);
    if (c == NULL)
        return REEL_INVALID;
    pcre2_code_free(c);
    /* the replacement's own syntax ("${" unclosed, "$x"): tried with a
     * pattern matching the empty string, its groups' references unset */
    pcre2_code *empty = compile("", rule, err);
    if (empty == NULL)
        return REEL_INVALID;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(empty, NULL);
    PCRE2_UCHAR buf[8];
    PCRE2_SIZE got = sizeof buf;
    int rc = pcre2_substitute(empty, (PCRE2_SPTR) "", 0, 0,
                              PCRE2_SUBSTITUTE_OVERFLOW_LENGTH | PCRE2_SUBSTITUTE_UNKNOWN_UNSET |
                                  PCRE2_SUBSTITUTE_UNSET_EMPTY,
                              md, NULL, (PCRE2_SPTR)repl, PCRE2_ZERO_TERMINATED, buf, &got);
    pcre2_match_data_free(md);
    pcre2_code_free(empty);
    if (rc < 0 && rc != PCRE2_ERROR_NOMEMORY) {
        PCRE2_UCHAR msg[200];
        if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", rc);
        return reel_err_set(err, REEL_INVALID, "map_remote rule '%.120s': bad replacement: %s",
                            rule, (const char *)msg);
    }
    return REEL_OK;
}

reel_rc reel_map_rules_new(const char *const *rules, size_t n, reel_map_rules_t **out,
                           reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return REEL_OK;
    reel_map_rules_t *m = reel_calloc(1, sizeof *m);
    m->r = reel_calloc(n, sizeof *m->r);
    for (size_t i = 0; i < n; i++) {
        if (reel_map_rule_check(rules[i], err) != REEL_OK) {
            reel_map_rules_free(m);
            return REEL_INVALID;
        }
        const char *why;
        char *re;
        const char *repl = split(rules[i], &re, &why);
        m->r[i].re = compile(re, rules[i], err);
        free(re);
        m->r[i].replacement = reel_strdup(repl);
        m->r[i].text = reel_strdup(rules[i]);
        m->n = i + 1;
    }
    *out = m;
    return REEL_OK;
}

/* Whether s is an absolute http:// or https:// URL with a host. */
static int http_url(const char *s) {
    size_t k = strncasecmp(s, "http://", 7) == 0 ? 7 : strncasecmp(s, "https://", 8) == 0 ? 8 : 0;
    return k && s[k] && s[k] != '/' && s[k] != '?' && s[k] != '#';
}

char *reel_map_rules_apply(const reel_map_rules_t *m, const char *url, reel_err_t *err) {
    for (size_t i = 0; m && i < m->n; i++) {
        char *out = NULL;
        int rc = substitute(&m->r[i], url, &out, err);
        if (rc < 0)
            return NULL;
        if (rc == 0)
            continue;
        if (!http_url(out)) {
            reel_err_set(err, REEL_INVALID,
                         "map_remote rule '%.120s' made '%.200s' of the URL, which is not an "
                         "http:// or https:// URL",
                         m->r[i].text, out);
            free(out);
            return NULL;
        }
        return out;
    }
    return NULL;
}

void reel_map_rules_free(reel_map_rules_t *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        pcre2_code_free(m->r[i].re);
        free(m->r[i].replacement);
        free(m->r[i].text);
    }
    free(m->r);
    free(m);
}
