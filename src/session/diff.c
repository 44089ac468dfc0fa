/* Flow differences; see diff.h.
 *
 * The line diff is Myers' O((N+M)D) greedy algorithm ("An O(ND)
 * Difference Algorithm and Its Variations", 1986) on the lines left once
 * the common prefix and suffix are set aside, keeping the furthest-reaching
 * x of every diagonal after each step d (2d+3 32-bit ints) to walk the
 * script back. That trace costs O(D^2) memory (16 MiB at the default
 * max_d), hence max_d: past it the middle is shown
 * deleted then added whole (rough), which is a correct if not minimal
 * script. Lines are compared by a hash first. */
#include "session/diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "flow.pb-c.h"
#include "session/decode.h"
#include "session/index.h"
#include "session/store.h"
#include "session/view.h"

/* ---- line diff ---- */

typedef struct {
    const char *p;
    size_t len;
    int nonl;
    uint64_t hash;
} line_t;

static line_t *split(const char *t, size_t n, size_t max, size_t *count, int *cut) {
    size_t cap = 64, k = 0;
    line_t *v = reel_malloc(cap * sizeof *v);
    size_t i = 0;
    while (i < n) {
        if (k == max) {
            *cut = 1;
            break;
        }
        const char *nl = memchr(t + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (t + i)) : n - i;
        if (k == cap) {
            cap *= 2;
            v = reel_realloc(v, cap * sizeof *v);
        }
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (size_t j = 0; j < len; j++)
            h = (h ^ (unsigned char)t[i + j]) * 1099511628211ull;
        v[k++] = (line_t){t + i, len, nl == NULL, h ^ (nl == NULL)};
        i += len + (nl != NULL);
    }
    *count = k;
    return v;
}

static int line_eq(const line_t *x, const line_t *y) {
    return x->hash == y->hash && x->len == y->len && x->nonl == y->nonl &&
           memcmp(x->p, y->p, x->len) == 0;
}

typedef struct {
    reel_diff_t *d;
    size_t cap;
} script_t;

static void emit(script_t *s, reel_diff_op op, const line_t *l, size_t a, size_t b) {
    reel_diff_t *d = s->d;
    if (d->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        d->v = reel_realloc(d->v, s->cap * sizeof *d->v);
    }
    d->v[d->n++] = (reel_diff_line_t){op, l->p, l->len, l->nonl, a, b};
    if (op != REEL_DIFF_EQ)
        d->changes++;
}

/* Myers on a[0..n) and b[0..m) (offsets ao, bo in the whole texts); emits
 * the script in order. Returns 0 if it needs more than max_d steps. */
static int myers(script_t *s, const line_t *a, size_t n, const line_t *b, size_t m, size_t ao,
                 size_t bo, size_t max_d) {
    long N = (long)n, M = (long)m;
    long dmax = N + M < (long)max_d ? N + M : (long)max_d;
    long width = 2 * dmax + 3;
    int32_t *V = reel_calloc((size_t)width, sizeof *V);
    long off = dmax + 1;
    V[off + 1] = 0;
    /* trace[d] holds V[k] for k in [-(d+1), d+1] before step d */
    size_t tcap = 1024, tlen = 0;
    int32_t *trace = reel_malloc(tcap * sizeof *trace);
    size_t *tstart = reel_malloc((size_t)(dmax + 1) * sizeof *tstart);
    long D = -1;
    for (long d = 0; d <= dmax && D < 0; d++) {
        size_t need = (size_t)(2 * d + 3);
        while (tlen + need > tcap) {
            tcap *= 2;
            trace = reel_realloc(trace, tcap * sizeof *trace);
        }
        tstart[d] = tlen;
        for (long k = -(d + 1); k <= d + 1; k++)
            trace[tlen++] = V[off + k];
        for (long k = -d; k <= d; k += 2) {
            long x;
            if (k == -d || (k != d && V[off + k - 1] < V[off + k + 1]))
                x = V[off + k + 1];
            else
                x = V[off + k - 1] + 1;
            long y = x - k;
            while (x < N && y < M && line_eq(&a[x], &b[y])) {
                x++;
                y++;
            }
            V[off + k] = (int32_t)x;
            if (x >= N && y >= M) {
                D = d;
                break;
            }
        }
    }
    int ok = D >= 0;
    if (ok) {
        /* walk back, collecting moves in reverse */
        size_t rcap = (size_t)(N + M + 1), rn = 0;
        reel_diff_line_t *rev = reel_malloc(rcap * sizeof *rev);
        long x = N, y = M;
        for (long d = D; d >= 0; d--) {
            const int32_t *v = trace + tstart[d] + (d + 1); /* v[k], k in [-(d+1), d+1] */
            long k = x - y, pk;
            if (k == -d || (k != d && v[k - 1] < v[k + 1]))
                pk = k + 1;
            else
                pk = k - 1;
            long px = d == 0 ? 0 : v[pk], py = d == 0 ? 0 : px - pk;
            while (x > px && y > py) {
                x--;
                y--;
                rev[rn++] = (reel_diff_line_t){REEL_DIFF_EQ, a[x].p,         a[x].len,
                                               a[x].nonl,    ao + (size_t)x, bo + (size_t)y};
            }
            if (d > 0) {
                if (pk == k + 1) { /* down: b[py] added */
                    rev[rn++] = (reel_diff_line_t){REEL_DIFF_ADD, b[py].p,         b[py].len,
                                                   b[py].nonl,    ao + (size_t)px, bo + (size_t)py};
                } else { /* right: a[px] deleted */
                    rev[rn++] = (reel_diff_line_t){REEL_DIFF_DEL, a[px].p,         a[px].len,
                                                   a[px].nonl,    ao + (size_t)px, bo + (size_t)py};
                }
            }
            x = px;
            y = py;
        }
        for (size_t i = rn; i-- > 0;) {
            line_t l = {rev[i].p, rev[i].len, rev[i].nonl, 0};
            emit(s, rev[i].op, &l, rev[i].a, rev[i].b);
        }
        free(rev);
    }
    free(V);
    free(trace);
    free(tstart);
    return ok;
}

void reel_diff_lines(const char *a, size_t alen, const char *b, size_t blen, size_t max_lines,
                     size_t max_d, reel_diff_t *out) {
    memset(out, 0, sizeof *out);
    if (max_lines == 0 || max_lines > ((size_t)1 << 30)) /* positions fit the 32-bit trace */
        max_lines = max_lines ? (size_t)1 << 30 : REEL_DIFF_MAX_LINES;
    if (max_d == 0)
        max_d = REEL_DIFF_MAX_D;
    size_t n = 0, m = 0;
    line_t *la = split(a, alen, max_lines, &n, &out->cut);
    line_t *lb = split(b, blen, max_lines, &m, &out->cut);
    script_t s = {out, 0};
    size_t pre = 0;
    while (pre < n && pre < m && line_eq(&la[pre], &lb[pre]))
        pre++;
    size_t suf = 0;
    while (suf < n - pre && suf < m - pre && line_eq(&la[n - 1 - suf], &lb[m - 1 - suf]))
        suf++;
    for (size_t i = 0; i < pre; i++)
        emit(&s, REEL_DIFF_EQ, &la[i], i, i);
    size_t mn = n - pre - suf, mm = m - pre - suf;
    if (!myers(&s, la + pre, mn, lb + pre, mm, pre, pre, max_d)) {
        out->rough = 1;
        for (size_t i = 0; i < mn; i++)
            emit(&s, REEL_DIFF_DEL, &la[pre + i], pre + i, pre);
        for (size_t j = 0; j < mm; j++)
            emit(&s, REEL_DIFF_ADD, &lb[pre + j], pre + mn, pre + j);
    }
    for (size_t i = 0; i < suf; i++)
        emit(&s, REEL_DIFF_EQ, &la[n - suf + i], n - suf + i, m - suf + i);
    free(la);
    free(lb);
}

void reel_diff_free(reel_diff_t *d) {
    if (d == NULL)
        return;
    free(d->v);
    memset(d, 0, sizeof *d);
}

/* "l,n" of a hunk side as diff -u writes it: n omitted when 1; for an
 * empty side l is the line before it. */
static void range(reel_buf_t *out, size_t first, size_t count) {
    if (count == 1)
        reel_buf_printf(out, "%zu", first + 1);
    else
        reel_buf_printf(out, "%zu,%zu", count ? first + 1 : first, count);
}

void reel_diff_unified(const reel_diff_t *d, unsigned context, reel_buf_t *out) {
    size_t i = 0;
    while (i < d->n) {
        while (i < d->n && d->v[i].op == REEL_DIFF_EQ)
            i++;
        if (i == d->n)
            break;
        /* a hunk: from `context` lines before this change to `context`
         * lines after the last change that is at most 2*context equal
         * lines from the next */
        size_t start = i >= context ? i - context : 0, end = i;
        for (;;) {
            while (end < d->n && d->v[end].op != REEL_DIFF_EQ)
                end++;
            size_t eq = end;
            while (eq < d->n && d->v[eq].op == REEL_DIFF_EQ)
                eq++;
            if (eq < d->n && eq - end <= 2 * (size_t)context) {
                end = eq;
                continue;
            }
            end = end + context < d->n ? end + context : d->n;
            if (end > eq)
                end = eq;
            break;
        }
        size_t na = 0, nb = 0;
        for (size_t k = start; k < end; k++) {
            na += d->v[k].op != REEL_DIFF_ADD;
            nb += d->v[k].op != REEL_DIFF_DEL;
        }
        reel_buf_puts(out, "@@ -");
        range(out, d->v[start].a, na);
        reel_buf_puts(out, " +");
        range(out, d->v[start].b, nb);
        reel_buf_puts(out, " @@\n");
        for (size_t k = start; k < end; k++) {
            const reel_diff_line_t *l = &d->v[k];
            reel_buf_append(out,
                            l->op == REEL_DIFF_EQ    ? " "
                            : l->op == REEL_DIFF_DEL ? "-"
                                                     : "+",
                            1);
            reel_buf_append(out, l->p, l->len);
            reel_buf_puts(out, "\n");
            if (l->nonl)
                reel_buf_puts(out, "\\ No newline at end of file\n");
        }
        i = end;
    }
}

/* ---- headers ---- */

static int name_eq(const reel_header_t *x, const char *name, size_t len) {
    return x->name_len == len && strncasecmp(x->name, name, len) == 0;
}

/* The values of header `name` in h, in order (owned strings). */
static char **values(const reel_header_t *h, size_t n, const char *name, size_t len, size_t *cnt) {
    char **v = NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (name_eq(&h[i], name, len)) {
            v = reel_realloc(v, (k + 1) * sizeof *v);
            v[k++] = reel_strndup(h[i].value, h[i].value_len);
        }
    *cnt = k;
    return v;
}

static int seen_before(const reel_header_t *h, size_t upto, const char *name, size_t len) {
    for (size_t i = 0; i < upto; i++)
        if (name_eq(&h[i], name, len))
            return 1;
    return 0;
}

static void add_if_differs(reel_diff_header_t **out, size_t *n, const reel_header_t *a, size_t na,
                           const reel_header_t *b, size_t nb, const reel_header_t *which) {
    reel_diff_header_t e = {0};
    e.a = values(a, na, which->name, which->name_len, &e.na);
    e.b = values(b, nb, which->name, which->name_len, &e.nb);
    int same = e.na == e.nb;
    for (size_t i = 0; same && i < e.na; i++)
        same = strcmp(e.a[i], e.b[i]) == 0;
    if (same) {
        for (size_t i = 0; i < e.na; i++)
            free(e.a[i]);
        for (size_t i = 0; i < e.nb; i++)
            free(e.b[i]);
        free(e.a);
        free(e.b);
        return;
    }
    e.name = reel_strndup(which->name, which->name_len);
    *out = reel_realloc(*out, (*n + 1) * sizeof **out);
    (*out)[(*n)++] = e;
}

reel_diff_header_t *reel_diff_headers(const reel_header_t *a, size_t na, const reel_header_t *b,
                                      size_t nb, size_t *n) {
    reel_diff_header_t *out = NULL;
    *n = 0;
    for (size_t i = 0; i < na; i++)
        if (!seen_before(a, i, a[i].name, a[i].name_len))
            add_if_differs(&out, n, a, na, b, nb, &a[i]);
    for (size_t i = 0; i < nb; i++)
        if (!seen_before(b, i, b[i].name, b[i].name_len) &&
            !seen_before(a, na, b[i].name, b[i].name_len))
            add_if_differs(&out, n, a, na, b, nb, &b[i]);
    return out;
}

void reel_diff_headers_free(reel_diff_header_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        for (size_t k = 0; k < v[i].na; k++)
            free(v[i].a[k]);
        for (size_t k = 0; k < v[i].nb; k++)
            free(v[i].b[k]);
        free(v[i].a);
        free(v[i].b);
    }
    free(v);
}

/* ---- flows ---- */

typedef struct {
    reel_diff_flow_t *f;
    reel_buf_t stored[2];
    int decoded[2]; /* the head says the stored body is already decoded */
    /* from the end or error record, per direction */
    int ended, interrupted, har;
    uint64_t wire[2], dropped[2], lost[2];
    int truncated[2];
    /* switched protocols (a 101, or messages recorded): the end record's
     * sizes, dropped and lost bytes count the messages after the switch */
    int upgraded;
} load_ctx;

static void take_headers(reel_diff_dir_t *d, Reel__Header **h, size_t n) {
    for (size_t i = 0; i < d->n_headers; i++) {
        free((char *)d->headers[i].name);
        free((char *)d->headers[i].value);
    }
    free(d->headers);
    d->present = 1;
    d->n_headers = n;
    d->headers = reel_calloc(n ? n : 1, sizeof *d->headers);
    for (size_t i = 0; i < n; i++)
        d->headers[i] = (reel_header_t){
            reel_strndup((const char *)h[i]->name.data, h[i]->name.len), h[i]->name.len,
            reel_strndup((const char *)h[i]->value.data, h[i]->value.len), h[i]->value.len};
}

static char *bin_str(ProtobufCBinaryData b) {
    return reel_strndup(b.len ? (const char *)b.data : "", b.len);
}

static void set_str(char **dst, char *v) {
    free(*dst);
    *dst = v;
}

static int load_cb(void *ctx, const Reel__Record *rec) {
    load_ctx *c = ctx;
    reel_diff_flow_t *f = c->f;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        c->har = rec->start->source && strcmp(rec->start->source, "har-import") == 0;
        break;
    case REEL__RECORD__EVENT_END: {
        const Reel__FlowEnd *e = rec->end;
        c->ended = 1;
        c->wire[0] = e->request_body_size;
        c->wire[1] = e->response_body_size;
        c->truncated[0] = e->request_truncated;
        c->truncated[1] = e->response_truncated;
        c->dropped[0] = e->request_body_dropped;
        c->dropped[1] = e->response_body_dropped;
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        set_str(&f->method, bin_str(h->method));
        reel_buf_t u;
        reel_buf_init(&u, 0);
        reel_index_url(h, &u);
        reel_buf_append(&u, "", 1);
        set_str(&f->url, (char *)u.data);
        take_headers(&f->dir[0], h->headers, h->n_headers);
        c->decoded[0] = h->body_decoded;
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        f->status = h->status;
        if (h->status == 101)
            c->upgraded = 1;
        set_str(&f->reason, bin_str(h->reason));
        take_headers(&f->dir[1], h->headers, h->n_headers);
        c->decoded[1] = h->body_decoded;
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
    case REEL__RECORD__EVENT_RESPONSE_BODY: {
        int d = rec->event_case == REEL__RECORD__EVENT_RESPONSE_BODY;
        const ProtobufCBinaryData *b = d ? &rec->response_body->data : &rec->request_body->data;
        f->dir[d].body_size += b->len;
        if (reel_buf_append(&c->stored[d], b->data, b->len) != REEL_OK) {
            size_t room = c->stored[d].max - c->stored[d].len;
            reel_buf_append(&c->stored[d], b->data, room);
            f->dir[d].body_cut = 1;
        }
        break;
    }
    case REEL__RECORD__EVENT_MESSAGE:
        c->upgraded = 1;
        break;
    case REEL__RECORD__EVENT_ERROR: {
        const Reel__FlowError *e = rec->error;
        set_str(&f->error, reel_strdup(e->message ? e->message : ""));
        if (e->interrupted) { /* its sizes are what was stored, not the wire's */
            c->interrupted = 1;
            break;
        }
        c->ended = 1;
        c->wire[0] = e->request_body_size;
        c->wire[1] = e->response_body_size;
        c->truncated[0] = e->request_truncated;
        c->truncated[1] = e->response_truncated;
        c->dropped[0] = e->request_body_dropped;
        c->dropped[1] = e->response_body_dropped;
        c->lost[0] = e->records_lost ? e->request_body_lost : 0;
        c->lost[1] = e->records_lost ? e->response_body_lost : 0;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* All values of header name joined with ", ", owned; NULL when none. */
static char *joined(const reel_diff_dir_t *d, const char *name) {
    size_t n = 0;
    char **v = values(d->headers, d->n_headers, name, strlen(name), &n);
    if (n == 0)
        return NULL;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        reel_buf_printf(&b, "%s%s", i ? ", " : "", v[i]);
        free(v[i]);
    }
    free(v);
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

static int body_sink(void *ctx, const uint8_t *data, size_t len) {
    reel_diff_dir_t *d = ctx;
    if (reel_buf_append(&d->body, data, len) != REEL_OK) {
        reel_buf_append(&d->body, data, d->body.max - d->body.len);
        d->body_cut = 1;
        return 1; /* enough */
    }
    return 0;
}

/* Whether the stored body of direction d is whole, from the end or error
 * record (as replay judges a request body, session/replay.c): the cause
 * the records give, or NULL when whole. */
static const char *partial_why(const load_ctx *c, int d, uint64_t stored) {
    /* An upgrade's handshake bodies ended before the switch, and the
     * records' counts mix in the messages' bytes (not compared, see
     * docs/replay.md): only the body's own truncated flag speaks for it. */
    if (c->upgraded)
        return c->truncated[d]
                   ? (c->har ? "the HAR it was imported from held no more" : "body_limit cut it")
                   : NULL;
    if (c->interrupted)
        return "its recording stopped before the flow ended";
    if (!c->ended)
        return "the flow has not ended";
    uint64_t missing = c->wire[d] > stored ? c->wire[d] - stored : 0;
    if (c->lost[d])
        return "capture was stopped by a disk error while the flow ran";
    if (c->dropped[d])
        return missing > c->dropped[d] ? "capture fell behind the disk, and body_limit cut the rest"
                                       : "capture fell behind the disk";
    if (c->truncated[d])
        return c->har ? "the HAR it was imported from held no more" : "body_limit cut it";
    if (missing && !c->decoded[d]) /* decoded: shorter than the encoded wire's */
        return "fewer bytes were stored than its end record counts";
    return NULL;
}

/* Writes the auto view of p[0..n) into view (at most REEL_DIFF_VIEW_MAX
 * bytes); returns the view's name and sets *cut when the view was cut. */
static const char *render(const reel_diff_dir_t *d, const uint8_t *p, size_t n, int body_cut,
                          reel_buf_t *view, int *cut) {
    char *ct = joined(d, "content-type");
    char *mem = NULL;
    size_t memlen = 0;
    const char *name = "raw";
    FILE *fp = open_memstream(&mem, &memlen);
    if (fp) {
        reel_view_kind k = reel_view_render(REEL_VIEW_AUTO, ct, p, n, body_cut, 0, fp);
        fclose(fp);
        name = reel_view_name(k);
        size_t keep = memlen < REEL_DIFF_VIEW_MAX ? memlen : REEL_DIFF_VIEW_MAX;
        reel_buf_append(view, mem, keep);
        *cut |= keep < memlen;
    }
    free(mem);
    free(ct);
    return name;
}

static void finish_dir(reel_diff_dir_t *d, reel_buf_t *stored, int decoded) {
    char *ce = decoded ? NULL : joined(d, "content-encoding");
    reel_decoder_t *dec = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_decoder_new(ce, body_sink, d, &dec, &err);
    if (rc == REEL_OK)
        rc = reel_decoder_feed(dec, stored->data, stored->len, &err);
    /* a stored prefix decodes as far as it goes: its end is not the stream's */
    if (rc == REEL_OK && !d->body_cut && !d->partial)
        rc = reel_decoder_finish(dec, &err);
    reel_decoder_free(dec);
    if (rc != REEL_OK && !d->body_cut) {
        d->decode_error = reel_strdup(reel_err_str(&err));
        reel_buf_reset(&d->body);
        reel_buf_append(&d->body, stored->data, stored->len);
    }
    d->coding = ce;
    /* the pretty-printed view, written to memory */
    d->view_kind =
        render(d, d->body.data, d->body.len, d->body_cut || d->partial, &d->view, &d->body_cut);
}

void reel_diff_partial_str(const reel_diff_dir_t *d, char *buf, size_t cap) {
    if (!d->partial) {
        snprintf(buf, cap, "%s", "");
        return;
    }
    unsigned long long stored = d->body_size, wire = d->wire_size;
    if (strcmp(d->partial_why, "body_limit cut it") == 0 && wire > stored)
        snprintf(buf, cap, "cut by body_limit at %llu of %llu bytes", stored, wire);
    else if (wire > stored)
        snprintf(buf, cap, "not stored whole (%llu of %llu bytes): %s", stored, wire,
                 d->partial_why);
    else
        snprintf(buf, cap, "not known to be stored whole (its first %llu bytes): %s", stored,
                 d->partial_why);
}

/* Whether the wire sizes of a and b are sizes of the same form of body. */
static int same_coding(const reel_diff_dir_t *a, const reel_diff_dir_t *b) {
    if (a->coding == NULL || b->coding == NULL)
        return a->coding == b->coding;
    return strcasecmp(a->coding, b->coding) == 0;
}

static int buf_eq(const reel_buf_t *a, const reel_buf_t *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

void reel_diff_body_compare(const reel_diff_dir_t *a, const reel_diff_dir_t *b,
                            reel_diff_body_t *out) {
    memset(out, 0, sizeof *out);
    reel_buf_init(&out->view_a, 0);
    reel_buf_init(&out->view_b, 0);
    if (!a->partial && !b->partial) {
        out->compared = a->body.len > b->body.len ? a->body.len : b->body.len;
        out->bytes_same = buf_eq(&a->body, &b->body);
        reel_buf_append(&out->view_a, a->view.data, a->view.len);
        reel_buf_append(&out->view_b, b->view.data, b->view.len);
        out->kind_a = a->view_kind;
        out->kind_b = b->view_kind;
        out->views_same = buf_eq(&out->view_a, &out->view_b);
        out->verdict = out->bytes_same ? REEL_DIFF_BODY_SAME : REEL_DIFF_BODY_DIFFERS;
        return;
    }
    /* Only what both sides hold can be compared: a byte one side did not
     * store is not a change. Both views are of that common prefix. */
    size_t n = a->body.len < b->body.len ? a->body.len : b->body.len;
    out->compared = n;
    out->bytes_same = n == 0 || memcmp(a->body.data, b->body.data, n) == 0;
    int cut = 0;
    out->kind_a = render(a, a->body.data, n, 1, &out->view_a, &cut);
    out->kind_b = render(b, b->body.data, n, 1, &out->view_b, &cut);
    out->views_same = buf_eq(&out->view_a, &out->view_b);
    int sizes_differ = same_coding(a, b) && a->decode_error == NULL && b->decode_error == NULL &&
                       a->wire_size != b->wire_size;
    /* a whole body shorter than what the other side stored of its own */
    int shorter =
        (!a->partial && b->body.len > a->body.len) || (!b->partial && a->body.len > b->body.len);
    out->verdict = !out->bytes_same || sizes_differ || shorter ? REEL_DIFF_BODY_DIFFERS
                                                               : REEL_DIFF_BODY_UNKNOWN;
}

void reel_diff_body_free(reel_diff_body_t *b) {
    if (b == NULL)
        return;
    reel_buf_free(&b->view_a);
    reel_buf_free(&b->view_b);
}

reel_rc reel_diff_flow_load(reel_session_t *s, uint64_t id, reel_diff_flow_t *out,
                            reel_err_t *err) {
    memset(out, 0, sizeof *out);
    out->id = id;
    load_ctx c = {.f = out};
    for (int d = 0; d < 2; d++) {
        reel_buf_init(&c.stored[d], REEL_VIEW_MAX);
        reel_buf_init(&out->dir[d].body, REEL_VIEW_MAX);
        reel_buf_init(&out->dir[d].view, 0);
    }
    reel_rc rc = reel_store_read_flow(s, id, load_cb, &c, err);
    if (rc == REEL_NOTFOUND)
        rc = reel_err_set(err, REEL_NOTFOUND, "no flow %llu in session '%s'",
                          (unsigned long long)id, reel_session_name(s));
    if (rc == REEL_OK)
        for (int d = 0; d < 2; d++) {
            reel_diff_dir_t *x = &out->dir[d];
            /* an upgrade's wire sizes count its messages: its bodies' are
             * not known past what was stored (export's HAR says 0 too) */
            uint64_t wire = c.upgraded ? 0 : c.wire[d];
            x->wire_size = wire > x->body_size ? wire : x->body_size;
            x->partial_why = x->present ? partial_why(&c, d, x->body_size) : NULL;
            x->partial = x->partial_why != NULL;
            finish_dir(x, &c.stored[d], c.decoded[d]);
        }
    for (int d = 0; d < 2; d++)
        reel_buf_free(&c.stored[d]);
    return rc;
}

void reel_diff_flow_free(reel_diff_flow_t *f) {
    if (f == NULL)
        return;
    free(f->method);
    free(f->url);
    free(f->reason);
    free(f->error);
    for (int d = 0; d < 2; d++) {
        reel_diff_dir_t *x = &f->dir[d];
        for (size_t i = 0; i < x->n_headers; i++) {
            free((char *)x->headers[i].name);
            free((char *)x->headers[i].value);
        }
        free(x->headers);
        reel_buf_free(&x->body);
        reel_buf_free(&x->view);
        free(x->decode_error);
        free(x->coding);
    }
    memset(f, 0, sizeof *f);
}
