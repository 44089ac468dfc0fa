/* Conditional and range requests for map_local's files: core/cond.h. */

#include "core/cond.h"

#include "base/civil.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- dates ---- */

static const char *const WDAYS[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const WDAYS_LONG[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday"};
static const char *const MONTHS[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void reel_http_date_format(int64_t t, char out[30]) {
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days * 86400, y;
    int m, d;
    reel_civil_from_days(days, &y, &m, &d);
    int wd = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    if (y < 0 || y > 9999)               /* not a date HTTP can say */
        y = y < 0 ? 0 : 9999;
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", WDAYS[wd], d, MONTHS[m - 1], (int)y,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
}

typedef struct {
    const char *p, *end;
} cur_t;

static bool lit(cur_t *c, const char *s) {
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

static bool digits(cur_t *c, int n, int *v) {
    if (c->end - c->p < n)
        return false;
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (c->p[i] < '0' || c->p[i] > '9')
            return false;
        x = x * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *v = x;
    return true;
}

static int word(cur_t *c, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (lit(c, names[i]))
            return i;
    return -1;
}

/* "HH:MM:SS" */
static bool clock_of(cur_t *c, int *h, int *mi, int *s) {
    return digits(c, 2, h) && lit(c, ":") && digits(c, 2, mi) && lit(c, ":") && digits(c, 2, s) &&
           *h < 24 && *mi < 60 && *s < 61; /* (60: a leap second, read as :59) */
}

bool reel_http_date_parse(const char *s, size_t len, int64_t *t) {
    cur_t c = {s, s + len};
    int d = 0, m = -1, y = 0, h = 0, mi = 0, sec = 0;
    /* the day's name is checked for form only: RFC 9110 does not ask that
     * it be the date's */
    cur_t save = c;
    bool ok = false;
    if (word(&c, WDAYS_LONG, 7) >= 0 && lit(&c, ", ")) { /* RFC 850 */
        int yy = 0;
        ok = digits(&c, 2, &d) && lit(&c, "-") && (m = word(&c, MONTHS, 12)) >= 0 && lit(&c, "-") &&
             digits(&c, 2, &yy) && lit(&c, " ") && clock_of(&c, &h, &mi, &sec) && lit(&c, " GMT") &&
             c.p == c.end;
        if (ok) {
            /* RFC 9110 5.6.7: a two-digit year more than 50 years ahead is
             * the most recent past year with those digits */
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            int cy = tm.tm_year + 1900;
            y = cy - cy % 100 + yy;
            if (y > cy + 50)
                y -= 100;
        }
    } else {
        c = save;
        if (word(&c, WDAYS, 7) < 0)
            return false;
        if (lit(&c, ", ")) /* IMF-fixdate */
            ok = digits(&c, 2, &d) && lit(&c, " ") && (m = word(&c, MONTHS, 12)) >= 0 &&
                 lit(&c, " ") && digits(&c, 4, &y) && lit(&c, " ") && clock_of(&c, &h, &mi, &sec) &&
                 lit(&c, " GMT") && c.p == c.end;
        else if (lit(&c, " ")) { /* asctime: "Nov  6 08:49:37 1994" */
            ok = (m = word(&c, MONTHS, 12)) >= 0 && lit(&c, " ");
            if (ok && c.p < c.end && *c.p == ' ') {
                c.p++;
                ok = digits(&c, 1, &d);
            } else
                ok = ok && digits(&c, 2, &d);
            ok = ok && lit(&c, " ") && clock_of(&c, &h, &mi, &sec) && lit(&c, " ") &&
                 digits(&c, 4, &y) && c.p == c.end;
        }
    }
    if (!ok)
        return false;
    if (d < 1 || d > reel_days_in_month(y, m + 1))
        return false;
    if (sec == 60)
        sec = 59;
    *t = reel_days_from_civil(y, m + 1, d) * 86400 + h * 3600 + mi * 60 + sec;
    return true;
}

/* ---- fields ---- */

static bool named(const reel_field_t *f, const char *name) {
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* The one field named name: its value, or NULL when there is none (*dup
 * set when there is more than one). */
static const reel_field_t *field_of(const reel_field_t *fs, size_t n, const char *name, bool *dup) {
    const reel_field_t *found = NULL;
    *dup = false;
    for (size_t i = 0; i < n; i++)
        if (named(&fs[i], name)) {
            if (found)
                *dup = true;
            else
                found = &fs[i];
        }
    return found;
}

/* A date field, if there is exactly one and it parses. */
static bool date_field(const reel_field_t *fs, size_t n, const char *name, int64_t *t) {
    bool dup;
    const reel_field_t *f = field_of(fs, n, name, &dup);
    return f && !dup && reel_http_date_parse(f->value, f->value_len, t);
}

static bool is_ows(char ch) {
    return ch == ' ' || ch == '\t';
}

/* An entity-tag at p (before end): its length, with *weak, *op and *oplen
 * its opaque part (quotes included); 0 if none is there. */
static size_t etag_at(const char *p, const char *end, bool *weak, const char **op, size_t *oplen) {
    const char *s = p;
    *weak = false;
    if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
        *weak = true;
        p += 2;
    }
    if (p >= end || *p != '"')
        return 0;
    const char *q = p + 1;
    while (q < end && *q != '"') {
        unsigned char ch = (unsigned char)*q;
        if (ch < 0x21 || ch == 0x7f) /* etagc: no controls or spaces */
            return 0;
        q++;
    }
    if (q >= end)
        return 0;
    *op = p;
    *oplen = (size_t)(q + 1 - p);
    return (size_t)(q + 1 - s);
}

enum { TAGS_ABSENT, TAGS_BAD, TAGS_MATCH, TAGS_NO_MATCH };

/* Whether the If-Match / If-None-Match fields named name (all of them: a
 * list may be split over fields) hold etag (strong: strong comparison);
 * TAGS_BAD when a value does not parse. */
static int tags_match(const reel_field_t *fs, size_t n, const char *name, const char *etag,
                      bool strong) {
    int res = TAGS_ABSENT;
    size_t el = strlen(etag);
    for (size_t i = 0; i < n; i++) {
        if (!named(&fs[i], name))
            continue;
        if (res == TAGS_ABSENT)
            res = TAGS_NO_MATCH;
        const char *p = fs[i].value, *end = p + fs[i].value_len;
        while (p < end && is_ows(*p))
            p++;
        if (end - p == 1 && *p == '*') {
            res = TAGS_MATCH; /* the file exists */
            continue;
        }
        bool any = false;
        while (p < end) {
            if (*p == ',' || is_ows(*p)) { /* (empty list elements are allowed) */
                p++;
                continue;
            }
            bool weak;
            const char *op;
            size_t oplen, l = etag_at(p, end, &weak, &op, &oplen);
            if (l == 0)
                return TAGS_BAD;
            any = true;
            if (oplen == el && memcmp(op, etag, el) == 0 && !(strong && weak))
                res = TAGS_MATCH;
            p += l;
            while (p < end && is_ows(*p))
                p++;
            if (p < end && *p != ',')
                return TAGS_BAD;
        }
        if (!any)
            return TAGS_BAD;
    }
    return res;
}

/* ---- ranges ---- */

static bool number(const char **p, const char *end, uint64_t *v) {
    const char *s = *p;
    uint64_t x = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        unsigned dgt = (unsigned)(**p - '0');
        x = x > (UINT64_MAX - dgt) / 10 ? UINT64_MAX : x * 10 + dgt; /* saturates */
        (*p)++;
    }
    *v = x;
    return *p > s;
}

enum { RANGE_IGNORE, RANGE_OK, RANGE_UNSATISFIABLE };

/* A Range value: one byte range of size bytes (RANGE_OK, *first and *len
 * set), one that starts past the end (RANGE_UNSATISFIABLE), or anything
 * else, which the answer ignores. */
static int range_of(const char *p, size_t len, uint64_t size, uint64_t *first, uint64_t *rlen) {
    const char *end = p + len;
    if (len < 6 || strncasecmp(p, "bytes", 5) != 0)
        return RANGE_IGNORE;
    p += 5;
    while (p < end && is_ows(*p))
        p++;
    if (p >= end || *p != '=')
        return RANGE_IGNORE;
    p++;
    while (p < end && is_ows(*p))
        p++;
    uint64_t a = 0, b = UINT64_MAX;
    bool suffix = p < end && *p == '-';
    if (suffix) {
        p++;
        if (!number(&p, end, &b))
            return RANGE_IGNORE;
    } else {
        if (!number(&p, end, &a) || p >= end || *p != '-')
            return RANGE_IGNORE;
        p++;
        if (p < end && *p >= '0' && *p <= '9' && (!number(&p, end, &b) || b < a))
            return RANGE_IGNORE;
    }
    while (p < end && is_ows(*p))
        p++;
    if (p != end) /* another range, or something else: the whole file */
        return RANGE_IGNORE;
    if (suffix) {
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *rlen = size - *first;
        return RANGE_OK;
    }
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *first = a;
    *rlen = (b >= size - 1 ? size - 1 : b) - a + 1;
    return RANGE_OK;
}

void reel_cond_evaluate(const char *method, const reel_field_t *fs, size_t n,
                        const reel_cond_repr_t *r, reel_cond_answer_t *out) {
    bool get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
    out->first = 0;
    out->length = r->size;
    out->status = 200;
    int64_t t;
    /* 13.2.2 step 1 and 2 */
    int im = tags_match(fs, n, "If-Match", r->etag, true);
    if (im == TAGS_NO_MATCH || im == TAGS_BAD ||
        (im == TAGS_ABSENT && date_field(fs, n, "If-Unmodified-Since", &t) && r->mtime > t)) {
        out->status = 412;
        out->length = 0;
        return;
    }
    /* step 3 and 4 */
    int inm = tags_match(fs, n, "If-None-Match", r->etag, false);
    if (inm == TAGS_MATCH || (inm == TAGS_ABSENT && (get || head) &&
                              date_field(fs, n, "If-Modified-Since", &t) && r->mtime <= t)) {
        out->status = get || head ? 304 : 412;
        out->length = 0;
        return;
    }
    /* step 5: a GET's Range */
    bool dup;
    const reel_field_t *rf = get ? field_of(fs, n, "Range", &dup) : NULL;
    if (rf == NULL || dup)
        return;
    const reel_field_t *ir = field_of(fs, n, "If-Range", &dup);
    if (ir) {
        bool weak;
        const char *op;
        size_t oplen, l = etag_at(ir->value, ir->value + ir->value_len, &weak, &op, &oplen);
        bool same;
        if (dup)
            same = false;
        else if (l) /* strong comparison */
            same = l == ir->value_len && !weak && oplen == strlen(r->etag) &&
                   memcmp(op, r->etag, oplen) == 0;
        else /* a date: the same as Last-Modified, and that one strong (13.1.4) */
            same = reel_http_date_parse(ir->value, ir->value_len, &t) && t == r->mtime &&
                   r->now - r->mtime >= 1;
        if (!same)
            return;
    }
    uint64_t first = 0, len = 0;
    switch (range_of(rf->value, rf->value_len, r->size, &first, &len)) {
    case RANGE_OK:
        out->status = 206;
        out->first = first;
        out->length = len;
        break;
    case RANGE_UNSATISFIABLE:
        out->status = 416;
        out->length = 0;
        break;
    default:
        break;
    }
}
