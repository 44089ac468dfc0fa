/* Client replay, the session side; see replay.h. */
#include "session/replay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session/filter.h"
#include "session/har.h"
#include "session/index.h"
#include "session/store.h"

typedef struct {
    reel_replay_req_t *r;
    int has_start, has_head, ended, tunnel, websocket, too_big;
    int cut_off;        /* recovery's interrupted end: its run ended before it did */
    int har;            /* imported from a HAR (FlowStart.source "har-import") */
    uint64_t wire_size; /* request body bytes seen on the wire (end/error record) */
    uint64_t dropped, truncated;
    uint64_t lost; /* FlowError.request_body_lost: a disk error stopped capture */
    /* modify_body rules changed the request body (its BodyEdit, applied):
     * the body the origin got (sent_body), whether the record kept it
     * whole, how long it was, whether it went decoded and without the
     * client's Expect */
    int edited, sent_whole, sent_decoded, sent_no_expect;
    uint64_t sent_size;
    reel_buf_t sent;
} load_ctx;

/* An owned C string of a recorded byte field; NULL when it holds a NUL. */
static char *bytes_str(ProtobufCBinaryData b) {
    if (b.len && memchr(b.data, '\0', b.len))
        return NULL;
    return reel_strndup(b.len ? (const char *)b.data : "", b.len);
}

/* Points r at url ("http[s]://host[:port]/target", map_remote's): its
 * scheme, host, port and target replace the recorded ones. 0 when url is
 * not one (r unchanged). */
static int use_url(reel_replay_req_t *r, const char *url) {
    reel_url_t u;
    if (reel_url_parse(url, strlen(url), 0, &u) != NULL || u.skip) {
        reel_url_free(&u);
        return 0;
    }
    free(r->scheme);
    free(r->host);
    free(r->target);
    r->scheme = reel_strdup(u.scheme);
    r->host = u.host;
    r->port = u.port;
    r->target = u.target;
    return 1;
}

/* Adds name: value to r's fields; 1 when either holds a NUL byte (then
 * empty). */
static int push_header(reel_replay_req_t *r, ProtobufCBinaryData name, ProtobufCBinaryData value) {
    char *n = bytes_str(name), *v = bytes_str(value);
    r->headers[r->n_headers++] = (reel_header_t){.name = n ? n : reel_strdup(""),
                                                 .name_len = n ? strlen(n) : 0,
                                                 .value = v ? v : reel_strdup(""),
                                                 .value_len = v ? strlen(v) : 0};
    return n == NULL || v == NULL;
}

static void take_head(load_ctx *c, const Reel__RequestHead *h) {
    reel_replay_req_t *r = c->r;
    c->has_head = 1;
    /* a WebSocket's handshake: replay sends requests without Upgrade and
     * could not carry the messages, whether or not the origin agreed */
    if (reel_index_upgrade_is_websocket(reel_index_header(h->headers, h->n_headers, "upgrade")))
        c->websocket = 1;
    free(r->method);
    free(r->scheme);
    free(r->host);
    free(r->target);
    free(r->http_version);
    for (size_t k = 0; k < r->n_headers; k++) {
        free((char *)r->headers[k].name);
        free((char *)r->headers[k].value);
    }
    free(r->headers);
    r->method = bytes_str(h->method);
    r->scheme = reel_strdup(h->scheme ? h->scheme : "");
    r->host = bytes_str(h->host);
    r->target = bytes_str(h->target);
    r->http_version = reel_strdup(h->http_version ? h->http_version : "");
    r->port = h->port;
    r->body_decoded = h->body_decoded;
    /* (a reverse proxy's request too: its origin got Host from its URL) */
    r->absolute_form = h->absolute_form || h->reverse;
    /* map_remote sent it elsewhere: sent there again, as it went */
    if (h->mapped_to && h->mapped_to[0] && use_url(r, h->mapped_to))
        r->absolute_form = 1;
    /* modify_headers changed it: sent again with those changes too (the
     * fields the changes name dropped, theirs added; RequestHead.modified) */
    r->n_headers = 0;
    r->headers = reel_calloc(h->n_headers + h->n_modified + 1, sizeof *r->headers);
    int nul = r->method == NULL || r->host == NULL || r->target == NULL;
    for (size_t k = 0; k < h->n_headers; k++) {
        int changed = 0;
        for (size_t e = 0; e < h->n_modified && !changed; e++)
            changed =
                h->modified[e]->name.len == h->headers[k]->name.len &&
                strncasecmp((const char *)h->modified[e]->name.data,
                            (const char *)h->headers[k]->name.data, h->headers[k]->name.len) == 0;
        if (changed)
            continue;
        nul |= push_header(r, h->headers[k]->name, h->headers[k]->value);
    }
    for (size_t e = 0; e < h->n_modified; e++) {
        if (h->modified[e]->removed)
            continue;
        nul |= push_header(r, h->modified[e]->name, h->modified[e]->value);
    }
    if (nul && r->why_not == NULL)
        r->why_not = reel_strdup("its request head holds a NUL byte");
}

static void free_headers(reel_header_t *h, size_t n) {
    for (size_t k = 0; k < n; k++) {
        free((char *)h[k].name);
        free((char *)h[k].value);
    }
    free(h);
}

/* Fields as reel_header_t, strings owned (a NUL byte cut there). */
static reel_header_t *copy_headers(Reel__Header *const *h, size_t n) {
    reel_header_t *v = reel_calloc(n ? n : 1, sizeof *v);
    for (size_t k = 0; k < n; k++) {
        char *nm = reel_strndup((const char *)h[k]->name.data, h[k]->name.len);
        char *val = reel_strndup((const char *)h[k]->value.data, h[k]->value.len);
        v[k] = (reel_header_t){nm, strlen(nm), val, strlen(val)};
    }
    return v;
}

/* The request as the origin got it from modify_body's rules: the body
 * they made (decoded from the client's Content-Encoding when they
 * decoded it, so that field is left out), without trailer fields (reel
 * sends a changed body with a Content-Length), and no Expect when reel
 * answered the client's 100-continue itself (the origin got none). */
static void as_sent(load_ctx *c) {
    reel_replay_req_t *r = c->r;
    reel_buf_reset(&r->body);
    reel_buf_append(&r->body, c->sent.data, c->sent.len);
    free_headers(r->trailers, r->n_trailers);
    r->trailers = NULL;
    r->n_trailers = 0;
    if (c->sent_decoded)
        r->body_decoded = 1;
    r->no_expect = c->sent_no_expect;
}

static int load_cb(void *ctx, const Reel__Record *rec) {
    load_ctx *c = ctx;
    reel_replay_req_t *r = c->r;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        c->has_start = 1;
        c->tunnel = rec->start->kind == REEL__FLOW_KIND__FLOW_KIND_TUNNEL;
        c->har = rec->start->source && strcmp(rec->start->source, "har-import") == 0;
        free(r->uuid);
        r->uuid = reel_strdup(rec->start->uuid ? rec->start->uuid : "");
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD:
        take_head(c, rec->request_head);
        break;
    case REEL__RECORD__EVENT_REQUEST_BODY:
        if (reel_buf_append(&r->body, rec->request_body->data.data, rec->request_body->data.len) !=
            REEL_OK)
            c->too_big = 1;
        break;
    case REEL__RECORD__EVENT_MESSAGE:
        c->websocket = 1;
        break;
    case REEL__RECORD__EVENT_BODY_EDIT: {
        const Reel__BodyEdit *b = rec->body_edit;
        if (b->response || b->not_applied[0]) /* (not applied: it went as it came) */
            break;
        c->edited = 1;
        c->sent_size = b->sent_size;
        c->sent_whole = b->sent_body.len == b->sent_size && !b->sent_body_truncated;
        c->sent_decoded = b->decoded;
        c->sent_no_expect = b->answered_continue;
        reel_buf_reset(&c->sent);
        reel_buf_append(&c->sent, b->sent_body.data, b->sent_body.len);
        break;
    }
    case REEL__RECORD__EVENT_TRAILERS:
        if (!rec->trailers->response) {
            free_headers(r->trailers, r->n_trailers);
            r->n_trailers = rec->trailers->n_headers;
            r->trailers = copy_headers(rec->trailers->headers, rec->trailers->n_headers);
        }
        break;
    case REEL__RECORD__EVENT_END:
        c->ended = 1;
        c->wire_size = rec->end->request_body_size;
        c->truncated = rec->end->request_truncated;
        c->dropped = rec->end->request_body_dropped;
        break;
    case REEL__RECORD__EVENT_ERROR:
        if (rec->error->interrupted) { /* its sizes are what was stored, not the wire's */
            c->cut_off = 1;
            break;
        }
        c->ended = 1;
        c->wire_size = rec->error->request_body_size;
        c->truncated = rec->error->request_truncated;
        c->dropped = rec->error->request_body_dropped;
        c->lost = rec->error->records_lost ? rec->error->request_body_lost : 0;
        break;
    default:
        break;
    }
    return 0;
}

/* Why a request body is not whole, naming the cause the flow's records
 * give: a disk error that stopped capture (FlowError.request_body_lost),
 * capture falling behind the disk (request_body_dropped: the recorder
 * also says truncated then; body_limit cut the rest when more is missing
 * than was dropped), the HAR it was imported from holding part of it
 * (truncated, source har-import), body_limit (truncated); none of them:
 * the sizes alone. Written into buf. */
static const char *not_whole(const load_ctx *c, char *buf, size_t cap) {
    uint64_t stored = c->r->body.len;
    uint64_t missing = c->wire_size > stored ? c->wire_size - stored : 0;
    const char *cause = c->lost ? ": capture was stopped by a disk error while the flow ran"
                        : c->dropped && missing > c->dropped
                            ? ": capture fell behind the disk, and body_limit cut the rest"
                        : c->dropped             ? ": capture fell behind the disk"
                        : c->truncated && c->har ? ": the HAR it was imported from held no more"
                        : c->truncated           ? ": body_limit cut it"
                                                 : "";
    if (missing)
        snprintf(buf, cap, "its request body was not stored whole (%llu of %llu bytes)%s",
                 (unsigned long long)stored, (unsigned long long)c->wire_size, cause);
    else /* cut, but its size on the wire is not known (a HAR without bodySize) */
        snprintf(buf, cap, "its request body was not stored whole (its first %llu bytes)%s",
                 (unsigned long long)stored, cause);
    return buf;
}

reel_rc reel_replay_load(reel_session_t *s, uint64_t id, reel_replay_req_t *out, reel_err_t *err) {
    memset(out, 0, sizeof *out);
    out->id = id;
    reel_buf_init(&out->body, REEL_REPLAY_BODY_MAX);
    load_ctx c = {.r = out};
    reel_buf_init(&c.sent, 0);
    reel_rc rc = reel_store_read_flow(s, id, load_cb, &c, err);
    if (rc == REEL_NOTFOUND) {
        reel_buf_free(&c.sent);
        return reel_err_set(err, REEL_NOTFOUND, "no flow %" PRIu64 " in session '%s'", id,
                            reel_session_name(s));
    }
    if (rc != REEL_OK) {
        reel_buf_free(&c.sent);
        return rc;
    }
    if (c.edited && c.sent_whole)
        as_sent(&c);
    if (out->uuid == NULL)
        out->uuid = reel_strdup("");
    const char *why = NULL;
    char cut[256];
    if (c.tunnel)
        why = "it is a TCP tunnel, not an HTTP exchange";
    else if (c.websocket)
        why = "it is a WebSocket flow";
    else if (!c.has_head)
        why = "it has no request head";
    else if (out->host == NULL || out->host[0] == '\0')
        why = "its request names no host";
    else if (strcmp(out->scheme, "http") != 0 && strcmp(out->scheme, "https") != 0)
        why = "its scheme is neither http nor https";
    else if (out->method && strcmp(out->method, "CONNECT") == 0)
        why = "it is a CONNECT request";
    else if (out->method && strcmp(out->method, "PRI") == 0 && strcmp(out->target, "*") == 0)
        why = "it is an HTTP/2 connection preface, not a request";
    else if (c.too_big)
        why = "its request body is larger than replay sends (256 MiB)";
    else if (c.edited && !c.sent_whole)
        why = c.sent.len ? (snprintf(cut, sizeof cut,
                                     "modify_body rules changed its request body, and the record "
                                     "keeps only the first %zu of the %llu bytes the origin got",
                                     c.sent.len, (unsigned long long)c.sent_size),
                            cut)
                         : "modify_body rules changed its request body, and the record does not "
                           "keep the body the origin got (recorded before reel kept it, or "
                           "capture fell behind)";
    else if (c.cut_off)
        why = "its recording stopped before it ended (its request body may not be whole)";
    else if (!c.ended)
        why = "it is still open (its request body may not be whole yet)";
    /* a body stored decoded (a HAR import) may be shorter than it was on
     * the wire, still encoded: only its truncated flag says it is cut */
    else if (!c.edited && (c.truncated || c.dropped || c.lost ||
                           (c.wire_size > out->body.len && !out->body_decoded)))
        why = not_whole(&c, cut, sizeof cut);
    if (why && out->why_not == NULL)
        out->why_not = reel_strdup(why);
    reel_buf_free(&c.sent);
    return REEL_OK;
}

void reel_replay_req_free(reel_replay_req_t *r) {
    if (r == NULL)
        return;
    free(r->uuid);
    free(r->method);
    free(r->scheme);
    free(r->host);
    free(r->target);
    free(r->http_version);
    for (size_t k = 0; k < r->n_headers; k++) {
        free((char *)r->headers[k].name);
        free((char *)r->headers[k].value);
    }
    free(r->headers);
    free_headers(r->trailers, r->n_trailers);
    reel_buf_free(&r->body);
    free(r->why_not);
    memset(r, 0, sizeof *r);
}

uint32_t reel_replay_port(const reel_replay_req_t *r) {
    if (r->port)
        return r->port;
    return r->scheme && strcmp(r->scheme, "https") == 0 ? 443 : 80;
}

/* 1 if s is a whole decimal number that fits in int64 (into *v). */
static int parse_id(const char *s, uint64_t *v) {
    if (*s < '0' || *s > '9')
        return 0;
    uint64_t n = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > (uint64_t)INT64_MAX / 10)
            return 0;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    *v = n;
    return n <= (uint64_t)INT64_MAX;
}

reel_rc reel_replay_select(reel_session_t *s, const char *what, uint64_t **ids, size_t *n,
                           reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_filter_t *f = NULL;
    int64_t *found = NULL;
    *ids = NULL;
    *n = 0;
    uint64_t one;
    if (parse_id(what, &one)) {
        sqlite3_stmt *st = NULL;
        sqlite3 *db = reel_session_db(s);
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM flows WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
            return reel_index_db_error(err, REEL_DB, db);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)one);
        int step = sqlite3_step(st);
        sqlite3_finalize(st);
        if (step == SQLITE_DONE)
            return reel_err_set(err, REEL_NOTFOUND, "no flow %" PRIu64 " in session '%s'", one,
                                reel_session_name(s));
        if (step != SQLITE_ROW)
            return reel_index_db_error(err, REEL_DB, db);
        *ids = reel_malloc(sizeof **ids);
        (*ids)[0] = one;
        *n = 1;
        return REEL_OK;
    }
    /* "3-7" is the filter "~id 3-7"; anything else is a filter. */
    char *expr = NULL;
    const char *dash = strchr(what, '-');
    uint64_t lo, hi;
    if (dash && dash != what) {
        char *first = reel_strndup(what, (size_t)(dash - what));
        if (parse_id(first, &lo) && parse_id(dash + 1, &hi)) {
            size_t len = strlen(what) + 8;
            expr = reel_malloc(len);
            snprintf(expr, len, "~id %s", what);
        }
        free(first);
    }
    if ((rc = reel_filter_compile(expr ? expr : what, &f, err)) != REEL_OK)
        goto out;
    size_t count = 0;
    if ((rc = reel_filter_ids(f, s, &found, &count, err)) != REEL_OK)
        goto out;
    if (count) {
        *ids = reel_malloc(count * sizeof **ids);
        for (size_t k = 0; k < count; k++)
            (*ids)[k] = (uint64_t)found[k];
        *n = count;
    }
out:
    free(expr);
    free(found);
    reel_filter_free(f);
    return rc;
}

reel_rc reel_replay_links(reel_session_t *s, uint64_t id, uint64_t *of, char **of_session,
                          uint64_t **replays, size_t *n, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int step;
    *of = 0;
    *of_session = NULL;
    *replays = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db, "SELECT replay_of, replay_session FROM flows WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        goto db_error;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *of = (uint64_t)sqlite3_column_int64(st, 0);
        const unsigned char *sess = sqlite3_column_text(st, 1);
        if (sess)
            *of_session = reel_strdup((const char *)sess);
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        goto db_error;
    }
    sqlite3_finalize(st);
    /* replays recorded into this session (one into another session is
     * known there, not here) */
    if (sqlite3_prepare_v2(db,
                           "SELECT id FROM flows WHERE replay_of = ? AND replay_session IS NULL "
                           "ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        goto db_error;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *replays = reel_realloc(*replays, cap * sizeof **replays);
        }
        (*replays)[(*n)++] = (uint64_t)sqlite3_column_int64(st, 0);
    }
    if (step == SQLITE_DONE)
        goto out;
db_error:
    rc = reel_index_db_error(err, REEL_DB, db);
out:
    sqlite3_finalize(st);
    if (rc != REEL_OK) {
        free(*of_session);
        free(*replays);
        *of_session = NULL;
        *replays = NULL;
        *n = 0;
    }
    return rc;
}
