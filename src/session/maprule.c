/* map_remote's rules; see maprule.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "session/maprule.h"

#include <ctype.h>
#include <stdbool.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"
#include "session/filter.h"

typedef struct {
    reel_filter_live_t *filter; /* the rule's flow filter (NULL: none) */
    pcre2_code *re;
    char *replacement; /* map_local: the file or directory */
    char *text;        /* the rule as given, for errors */
    bool groups;       /* map_local: the pattern has a capture group */
} rule_t;

struct reel_map_rules {
    rule_t *r;
    size_t n;
    const char *what; /* "map_remote" or "map_local" */
};

/* Splits SEP [FILTER SEP] REGEX SEP REPLACEMENT: the flow filter (owned,
 * *filter; NULL: none), the pattern (owned, *re) and the replacement (a
 * pointer into rule). NULL with why set when it is not one. */
static const char *split(const char *rule, bool local, char **filter, char **re, const char **why) {
    *re = *filter = NULL;
    unsigned char sep = (unsigned char)rule[0];
    if (sep == '\0' || isalnum(sep) || isspace(sep)) {
        *why = local ? "a rule starts with its separator (\"|regex|/path\")"
                     : "a rule starts with its separator (\"|regex|replacement\")";
        return NULL;
    }
    const char *mid = strchr(rule + 1, sep);
    if (mid == NULL) {
        *why = local ? "no path after the pattern (\"|regex|/path\")"
                     : "no replacement after the pattern (\"|regex|replacement\")";
        return NULL;
    }
    const char *third = strchr(mid + 1, sep), *start = rule + 1;
    if (third) { /* |filter|regex|replacement, as mitmproxy's */
        if (strchr(third + 1, sep)) {
            *why = local ? "more than three parts (\"|regex|/path\" or \"|filter|regex|/path\")"
                         : "more than three parts (\"|regex|replacement\" or "
                           "\"|filter|regex|replacement\")";
            return NULL;
        }
        *filter = reel_strndup(rule + 1, (size_t)(mid - rule - 1));
        start = mid + 1;
        mid = third;
    }
    if (mid == start) {
        free(*filter);
        *filter = NULL;
        *why = "an empty pattern";
        return NULL;
    }
    *re = reel_strndup(start, (size_t)(mid - start));
    return mid + 1;
}

/* The rule's flow filter compiled, or NULL (err set, naming the rule) when
 * it is no filter a request can be judged on before it is sent. */
static reel_rc rule_filter(const char *text, const char *rule, const char *what,
                           reel_filter_live_t **out, reel_err_t *err) {
    *out = NULL;
    if (text == NULL)
        return REEL_OK;
    reel_err_t fe;
    reel_err_clear(&fe);
    if (reel_filter_live_compile(text, out, &fe) != REEL_OK)
        return reel_err_set(err, REEL_INVALID, "%s rule '%.120s': %s", what, rule,
                            reel_err_str(&fe));
    return REEL_OK;
}

static pcre2_code *compile(const char *re, const char *rule, const char *what, reel_err_t *err) {
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
        reel_err_set(err, REEL_INVALID, "%s rule '%.120s': bad pattern at %zu: %s", what, rule,
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

/* The replacement's own syntax ("${" unclosed, "$x"): tried with a
 * pattern matching the empty string, its groups' references unset. */
static reel_rc replacement_check(const char *rule, const char *what, const char *repl,
                                 reel_err_t *err) {
    pcre2_code *empty = compile("", rule, what, err);
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
        return reel_err_set(err, REEL_INVALID, "%s rule '%.120s': bad replacement: %s", what, rule,
                            (const char *)msg);
    }
    return REEL_OK;
}

/* Checks one rule of map_remote's (local false) or map_local's. */
static reel_rc check(const char *rule, bool local, reel_err_t *err) {
    const char *what = local ? "map_local" : "map_remote";
    const char *why = NULL;
    char *re = NULL, *filter = NULL;
    const char *repl = split(rule, local, &filter, &re, &why);
    if (repl == NULL)
        return reel_err_set(err, REEL_INVALID, "%s rule '%.120s': %s", what, rule, why);
    reel_filter_live_t *fl = NULL;
    reel_rc frc = rule_filter(filter, rule, what, &fl, err);
    free(filter);
    reel_filter_live_free(fl);
    if (frc != REEL_OK) {
        free(re);
        return frc;
    }
    pcre2_code *c = compile(re, rule, what, err);
    free(re);
    if (c == NULL)
        return REEL_INVALID;
    pcre2_code_free(c);
    if (local) {
        /* read by the proxy, whose working directory is not the user's */
        if (repl[0] != '/')
            return reel_err_set(err, REEL_INVALID,
                                "map_local rule '%.120s': the path '%.200s' is not absolute (it "
                                "must start with /)",
                                rule, repl);
        return REEL_OK;
    }
    return replacement_check(rule, what, repl, err);
}

reel_rc reel_map_rule_check(const char *rule, reel_err_t *err) {
    return check(rule, false, err);
}

reel_rc reel_map_local_check(const char *rule, reel_err_t *err) {
    return check(rule, true, err);
}

static reel_rc rules_new(const char *const *rules, size_t n, bool local, reel_map_rules_t **out,
                         reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return REEL_OK;
    reel_map_rules_t *m = reel_calloc(1, sizeof *m);
    m->r = reel_calloc(n, sizeof *m->r);
    m->what = local ? "map_local" : "map_remote";
    for (size_t i = 0; i < n; i++) {
        if (check(rules[i], local, err) != REEL_OK) {
            reel_map_rules_free(m);
            return REEL_INVALID;
        }
        const char *why;
        char *re, *filter;
        const char *repl = split(rules[i], local, &filter, &re, &why);
        rule_filter(filter, rules[i], m->what, &m->r[i].filter, err); /* (checked above) */
        free(filter);
        m->r[i].re = compile(re, rules[i], m->what, err);
        free(re);
        uint32_t ngroups = 0;
        pcre2_pattern_info(m->r[i].re, PCRE2_INFO_CAPTURECOUNT, &ngroups);
        m->r[i].groups = ngroups > 0;
        m->r[i].replacement = reel_strdup(repl);
        m->r[i].text = reel_strdup(rules[i]);
        m->n = i + 1;
    }
    *out = m;
    return REEL_OK;
}

reel_rc reel_map_rules_new(const char *const *rules, size_t n, reel_map_rules_t **out,
                           reel_err_t *err) {
    return rules_new(rules, n, false, out, err);
}

reel_rc reel_map_local_new(const char *const *rules, size_t n, reel_map_rules_t **out,
                           reel_err_t *err) {
    return rules_new(rules, n, true, out, err);
}

/* Whether s is an absolute http:// or https:// URL with a host. */
static int http_url(const char *s) {
    size_t k = strncasecmp(s, "http://", 7) == 0 ? 7 : strncasecmp(s, "https://", 8) == 0 ? 8 : 0;
    return k && s[k] && s[k] != '/' && s[k] != '?' && s[k] != '#';
}

char *reel_map_rules_apply(const reel_map_rules_t *m, const char *url,
                           const reel_filter_request_t *rq, reel_err_t *err) {
    for (size_t i = 0; m && i < m->n; i++) {
        if (m->r[i].filter && (rq == NULL || !reel_filter_live_match(m->r[i].filter, rq)))
            continue;
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

static int hexval(unsigned char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The file name s[0..n) gives under a rule's directory: up to its query
 * or fragment, percent-decoded, without the slashes at either end. NULL
 * when it would leave the directory (a ".." segment) or holds a NUL. */
static char *local_suffix(const char *s, size_t n) {
    char *out = reel_malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n && s[i] != '?' && s[i] != '#'; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    size_t a = 0;
    while (a < k && out[a] == '/')
        a++;
    while (k > a && out[k - 1] == '/')
        k--;
    memmove(out, out + a, k - a);
    k -= a;
    out[k] = '\0';
    bool bad = memchr(out, '\0', k) != NULL;
    for (size_t i = 0; !bad && i < k;) { /* each segment */
        size_t j = i;
        while (j < k && out[j] != '/')
            j++;
        bad = j - i == 2 && out[i] == '.' && out[i + 1] == '.';
        i = j + 1;
    }
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

int reel_map_local_match(const reel_map_rules_t *m, const char *url,
                         const reel_filter_request_t *rq, const char **path, char **suffix) {
    *path = NULL;
    *suffix = NULL;
    size_t len = strlen(url);
    for (size_t i = 0; m && i < m->n; i++) {
        const rule_t *r = &m->r[i];
        if (r->filter && (rq == NULL || !reel_filter_live_match(r->filter, rq)))
            continue;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        int rc = pcre2_match(r->re, (PCRE2_SPTR)url, len, 0, 0, md, NULL);
        if (rc < 0) { /* no match (or a match limit hit: none either) */
            pcre2_match_data_free(md);
            continue;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t from = len, to = len;
        if (!r->groups) {
            from = ov[1]; /* what follows the match */
        } else if (rc >= 2 && ov[2] != PCRE2_UNSET) {
            from = ov[2]; /* the first group */
            to = ov[3];
        }
        pcre2_match_data_free(md);
        *path = r->replacement;
        *suffix = local_suffix(url + from, to - from);
        return 1;
    }
    return 0;
}

void reel_map_rules_free(reel_map_rules_t *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        reel_filter_live_free(m->r[i].filter);
        pcre2_code_free(m->r[i].re);
        free(m->r[i].replacement);
        free(m->r[i].text);
    }
    free(m->r);
    free(m);
}

/* ---- block_list ---- */

typedef struct {
    reel_filter_live_t *filter;
    int status;
    char *text;
} block_t;

struct reel_block_rules {
    block_t *r;
    size_t n;
};

/* Parses one rule into *b (filter owned); REEL_INVALID saying why. */
static reel_rc block_parse(const char *rule, block_t *b, reel_err_t *err) {
    memset(b, 0, sizeof *b);
    unsigned char sep = (unsigned char)rule[0];
    const char *why = NULL;
    const char *mid = sep && !isalnum(sep) && !isspace(sep) ? strchr(rule + 1, sep) : NULL;
    if (sep == '\0' || isalnum(sep) || isspace(sep))
        why = "a rule starts with its separator (\"|filter|status\")";
    else if (mid == NULL)
        why = "no status after the filter (\"|filter|status\")";
    else if (strchr(mid + 1, sep))
        why = "more than two parts (\"|filter|status\")";
    if (why)
        return reel_err_set(err, REEL_INVALID, "block_list rule '%.120s': %s", rule, why);
    char *end = NULL;
    long status = strtol(mid + 1, &end, 10);
    if (end == mid + 1 || *end != '\0' || !((status >= 200 && status <= 599) || status == 444))
        return reel_err_set(err, REEL_INVALID,
                            "block_list rule '%.120s': the status '%.20s' is not 200..599, or 444 "
                            "(close the connection without an answer)",
                            rule, mid + 1);
    char *filter = reel_strndup(rule + 1, (size_t)(mid - rule - 1));
    reel_rc rc = rule_filter(filter, rule, "block_list", &b->filter, err);
    free(filter);
    if (rc != REEL_OK)
        return rc;
    b->status = (int)status;
    b->text = reel_strdup(rule);
    return REEL_OK;
}

reel_rc reel_block_rule_check(const char *rule, reel_err_t *err) {
    block_t b;
    reel_rc rc = block_parse(rule, &b, err);
    reel_filter_live_free(b.filter);
    free(b.text);
    return rc;
}

reel_rc reel_block_rules_new(const char *const *rules, size_t n, reel_block_rules_t **out,
                             reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return REEL_OK;
    reel_block_rules_t *b = reel_calloc(1, sizeof *b);
    b->r = reel_calloc(n, sizeof *b->r);
    for (size_t i = 0; i < n; i++) {
        if (block_parse(rules[i], &b->r[i], err) != REEL_OK) {
            reel_block_rules_free(b);
            return REEL_INVALID;
        }
        b->n = i + 1;
    }
    *out = b;
    return REEL_OK;
}

int reel_block_match(const reel_block_rules_t *b, const reel_filter_request_t *rq,
                     const char **rule) {
    for (size_t i = 0; b && rq && i < b->n; i++)
        if (reel_filter_live_match(b->r[i].filter, rq)) {
            if (rule)
                *rule = b->r[i].text;
            return b->r[i].status;
        }
    return 0;
}

void reel_block_rules_free(reel_block_rules_t *b) {
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        reel_filter_live_free(b->r[i].filter);
        free(b->r[i].text);
    }
    free(b->r);
    free(b);
}

/* ---- modify_headers ---- */

typedef struct {
    reel_filter_live_t *filter; /* NULL: every request and response */
    char *name, *value;         /* value NULL: the field removed */
    char *text;
} hrule_t;

struct reel_header_rules {
    hrule_t *r;
    size_t n;
};

#define HEADER_VALUE_MAX 8192

/* The fields reel writes itself, as the framing and the hop need them: a
 * rule setting one would make a head that says another thing than what
 * reel sends. */
static const char *const RESERVED[] = {"content-length",
                                       "transfer-encoding",
                                       "connection",
                                       "keep-alive",
                                       "proxy-connection",
                                       "te",
                                       "trailer",
                                       "upgrade",
                                       "host",
                                       "proxy-authorization",
                                       "proxy-authenticate"};

static bool tchar(unsigned char c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Parses one rule into *r (owned); REEL_INVALID saying why. */
static reel_rc header_parse(const char *rule, hrule_t *r, reel_err_t *err) {
    memset(r, 0, sizeof *r);
    unsigned char sep = (unsigned char)rule[0];
    const char *why = NULL;
    const char *a = NULL, *b = NULL, *c = NULL;
    if (sep == '\0' || isalnum(sep) || isspace(sep)) {
        why = "a rule starts with its separator (\"|name|value\")";
    } else if ((a = strchr(rule + 1, sep)) == NULL) {
        why = "no value after the name (\"|name|value\", \"|name|\" to remove the field)";
    } else if ((b = strchr(a + 1, sep)) != NULL && (c = strchr(b + 1, sep)) != NULL) {
        why = "more than three parts (\"|name|value\" or \"|filter|name|value\"; choose a "
              "separator that is not in the value)";
    }
    if (why)
        return reel_err_set(err, REEL_INVALID, "modify_headers rule '%.120s': %s", rule, why);
    const char *name = rule + 1, *name_end = a, *value = a + 1;
    char *filter = NULL;
    if (b) { /* |filter|name|value */
        filter = reel_strndup(rule + 1, (size_t)(a - rule - 1));
        name = a + 1;
        name_end = b;
        value = b + 1;
    }
    size_t nlen = (size_t)(name_end - name), vlen = strlen(value);
    bool token = nlen > 0;
    for (size_t i = 0; i < nlen; i++)
        token = token && tchar((unsigned char)name[i]);
    bool reserved = false;
    for (size_t i = 0; token && i < sizeof RESERVED / sizeof *RESERVED; i++)
        reserved =
            reserved || (strlen(RESERVED[i]) == nlen && strncasecmp(RESERVED[i], name, nlen) == 0);
    bool bad_value =
        vlen > HEADER_VALUE_MAX || (vlen && (value[0] == ' ' || value[0] == '\t' ||
                                             value[vlen - 1] == ' ' || value[vlen - 1] == '\t'));
    for (size_t i = 0; !bad_value && i < vlen; i++)
        bad_value = value[i] == '\r' || value[i] == '\n' || value[i] == 0x7f ||
                    ((unsigned char)value[i] < 0x20 && value[i] != '\t');
    reel_rc rc = REEL_OK;
    if (!token)
        rc = reel_err_set(err, REEL_INVALID,
                          "modify_headers rule '%.120s': '%.*s' is not a field name (letters, "
                          "digits and !#$%%&'*+-.^_`|~)",
                          rule, (int)(nlen > 100 ? 100 : nlen), name);
    else if (reserved)
        rc = reel_err_set(err, REEL_INVALID,
                          "modify_headers rule '%.120s': reel writes %.*s itself (%s)", rule,
                          (int)nlen, name,
                          nlen == 4 ? "map_remote sends a request to another host"
                                    : "it frames the message or belongs to one hop");
    else if (bad_value)
        rc = reel_err_set(err, REEL_INVALID,
                          "modify_headers rule '%.120s': the value has a control character, "
                          "white space at an end, or more than %d bytes",
                          rule, HEADER_VALUE_MAX);
    else if (vlen && value[0] == '@')
        rc = reel_err_set(err, REEL_INVALID,
                          "modify_headers rule '%.120s': a value from a file (\"@path\", "
                          "mitmproxy's) is not read; write the value itself",
                          rule);
    if (rc == REEL_OK && filter) {
        reel_err_t fe;
        reel_err_clear(&fe);
        if (reel_filter_live_compile_both(filter, &r->filter, &fe) != REEL_OK)
            rc = reel_err_set(err, REEL_INVALID, "modify_headers rule '%.120s': %s", rule,
                              reel_err_str(&fe));
    }
    free(filter);
    if (rc != REEL_OK)
        return rc;
    r->name = reel_strndup(name, nlen);
    r->value = vlen ? reel_strdup(value) : NULL;
    r->text = reel_strdup(rule);
    return REEL_OK;
}

static void hrule_free(hrule_t *r) {
    reel_filter_live_free(r->filter);
    free(r->name);
    free(r->value);
    free(r->text);
}

reel_rc reel_header_rule_check(const char *rule, reel_err_t *err) {
    hrule_t r;
    reel_rc rc = header_parse(rule, &r, err);
    hrule_free(&r);
    return rc;
}

reel_rc reel_header_rules_new(const char *const *rules, size_t n, reel_header_rules_t **out,
                              reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return REEL_OK;
    reel_header_rules_t *m = reel_calloc(1, sizeof *m);
    m->r = reel_calloc(n, sizeof *m->r);
    for (size_t i = 0; i < n; i++) {
        if (header_parse(rules[i], &m->r[i], err) != REEL_OK) {
            reel_header_rules_free(m);
            return REEL_INVALID;
        }
        m->n = i + 1;
    }
    *out = m;
    return REEL_OK;
}

size_t reel_header_rules_match(const reel_header_rules_t *m, const reel_filter_request_t *rq,
                               reel_header_edit_t *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; m && rq && i < m->n; i++) {
        const hrule_t *r = &m->r[i];
        if (r->filter && !reel_filter_live_match(r->filter, rq))
            continue;
        if (k < cap)
            out[k] = (reel_header_edit_t){r->name, r->value, r->text};
        k++;
    }
    return k;
}

size_t reel_header_rules_len(const reel_header_rules_t *m) {
    return m ? m->n : 0;
}

int reel_header_edits_name(const reel_header_edit_t *edits, size_t n, const char *name,
                           size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(edits[i].name) == len && strncasecmp(edits[i].name, name, len) == 0)
            return 1;
    return 0;
}

void reel_header_rules_free(reel_header_rules_t *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        hrule_free(&m->r[i]);
    free(m->r);
    free(m);
}

/* ---- modify_body ---- */

typedef struct {
    reel_filter_live_t *filter; /* NULL: every response */
    pcre2_code *re;
    char *replacement;
    char *text;
} brule_t;

struct reel_body_rules {
    brule_t *r;
    size_t n;
    unsigned refs;
};

#define BODY_RULES_MAX 64 /* (a bit each in a match's mask) */

/* Parses one rule into *b (owned); REEL_INVALID saying why. */
static reel_rc body_parse(const char *rule, brule_t *b, reel_err_t *err) {
    memset(b, 0, sizeof *b);
    const char *why = NULL;
    char *re = NULL, *filter = NULL;
    const char *repl = split(rule, false, &filter, &re, &why);
    if (repl == NULL)
        return reel_err_set(err, REEL_INVALID, "modify_body rule '%.120s': %s", rule, why);
    reel_rc rc = REEL_OK;
    if (filter) {
        reel_err_t fe;
        reel_err_clear(&fe);
        if (reel_filter_live_compile_both(filter, &b->filter, &fe) != REEL_OK)
            rc = reel_err_set(err, REEL_INVALID, "modify_body rule '%.120s': %s", rule,
                              reel_err_str(&fe));
    }
    free(filter);
    if (rc == REEL_OK) {
        /* bytes, not text: a body need not be UTF-8 ("." is any byte) */
        int code = 0;
        PCRE2_SIZE off = 0;
        b->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_NEVER_UTF, &code, &off,
                              NULL);
        if (b->re == NULL) {
            PCRE2_UCHAR msg[200];
            if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
                snprintf((char *)msg, sizeof msg, "error %d", code);
            rc =
                reel_err_set(err, REEL_INVALID, "modify_body rule '%.120s': bad pattern at %zu: %s",
                             rule, (size_t)off, (const char *)msg);
        }
    }
    free(re);
    if (rc == REEL_OK)
        rc = replacement_check(rule, "modify_body", repl, err);
    if (rc != REEL_OK) {
        reel_filter_live_free(b->filter);
        pcre2_code_free(b->re);
        memset(b, 0, sizeof *b);
        return rc;
    }
    b->replacement = reel_strdup(repl);
    b->text = reel_strdup(rule);
    return REEL_OK;
}

static void brule_free(brule_t *b) {
    reel_filter_live_free(b->filter);
    pcre2_code_free(b->re);
    free(b->replacement);
    free(b->text);
}

reel_rc reel_body_rule_check(const char *rule, reel_err_t *err) {
    brule_t b;
    reel_rc rc = body_parse(rule, &b, err);
    brule_free(&b);
    return rc;
}

reel_rc reel_body_rules_new(const char *const *rules, size_t n, reel_body_rules_t **out,
                            reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return REEL_OK;
    if (n > BODY_RULES_MAX)
        return reel_err_set(err, REEL_INVALID, "modify_body: %zu rules, more than the %d allowed",
                            n, BODY_RULES_MAX);
    reel_body_rules_t *m = reel_calloc(1, sizeof *m);
    m->refs = 1;
    m->r = reel_calloc(n, sizeof *m->r);
    for (size_t i = 0; i < n; i++) {
        if (body_parse(rules[i], &m->r[i], err) != REEL_OK) {
            reel_body_rules_free(m);
            return REEL_INVALID;
        }
        m->n = i + 1;
    }
    *out = m;
    return REEL_OK;
}

uint64_t reel_body_rules_match(const reel_body_rules_t *m, const reel_filter_request_t *rq) {
    uint64_t mask = 0;
    for (size_t i = 0; m && rq && i < m->n; i++)
        if (m->r[i].filter == NULL || reel_filter_live_match(m->r[i].filter, rq))
            mask |= (uint64_t)1 << i;
    return mask;
}

reel_rc reel_body_rules_apply(const reel_body_rules_t *m, uint64_t mask, const uint8_t *data,
                              size_t len, uint8_t **out, size_t *out_len, uint64_t *count,
                              reel_err_t *err) {
    uint8_t *cur = reel_malloc(len ? len : 1);
    if (len)
        memcpy(cur, data, len);
    size_t cur_len = len;
    *count = 0;
    for (size_t i = 0; m && i < m->n; i++) {
        if (!(mask & ((uint64_t)1 << i)))
            continue;
        const brule_t *r = &m->r[i];
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        PCRE2_SIZE cap = cur_len + cur_len / 2 + 256;
        uint8_t *next = NULL;
        int rc = 0;
        for (int round = 0; round < 2; round++) {
            next = reel_malloc(cap ? cap : 1);
            PCRE2_SIZE got = cap;
            rc = pcre2_substitute(r->re, (PCRE2_SPTR)cur, cur_len, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, md,
                                  NULL, (PCRE2_SPTR)r->replacement, PCRE2_ZERO_TERMINATED,
                                  (PCRE2_UCHAR *)next, &got);
            if (rc != PCRE2_ERROR_NOMEMORY) {
                cap = got;
                break;
            }
            free(next);
            next = NULL;
            cap = got + 1; /* (the length it needs, told by OVERFLOW_LENGTH) */
        }
        pcre2_match_data_free(md);
        if (rc < 0) {
            free(next);
            free(cur);
            PCRE2_UCHAR msg[200];
            if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
                snprintf((char *)msg, sizeof msg, "error %d", rc);
            return reel_err_set(err, REEL_INVALID,
                                "modify_body rule '%.120s' could not replace: %s", r->text,
                                (const char *)msg);
        }
        *count += (uint64_t)rc;
        free(cur);
        cur = next;
        cur_len = cap;
    }
    *out = cur;
    *out_len = cur_len;
    return REEL_OK;
}

size_t reel_body_rules_texts(const reel_body_rules_t *m, uint64_t mask, const char **out) {
    size_t k = 0;
    for (size_t i = 0; m && i < m->n; i++)
        if (mask & ((uint64_t)1 << i))
            out[k++] = m->r[i].text;
    return k;
}

reel_body_rules_t *reel_body_rules_ref(reel_body_rules_t *m) {
    if (m)
        m->refs++;
    return m;
}

void reel_body_rules_free(reel_body_rules_t *m) {
    if (m == NULL || --m->refs > 0)
        return;
    for (size_t i = 0; i < m->n; i++)
        brule_free(&m->r[i]);
    free(m->r);
    free(m);
}
