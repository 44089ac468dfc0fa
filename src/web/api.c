/* The web UI's JSON API (docs/web.md): sessions, flow pages, one flow's
 * detail and bodies, notes, tags, marks, the config overlay, export and
 * live updates. Every read and write goes through the session modules
 * (query.h, flowread.h, config.h, export.h); no SQL here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "session/config.h"
#include "session/decode.h"
#include "session/diff.h"
#include "session/export.h"
#include "session/flowread.h"
#include "session/query.h"
#include "session/replay.h"
#include "session/view.h"
#include "web/web_int.h"

#ifndef REEL_VERSION /* CMakeLists.txt defines it: the project's version */
#define REEL_VERSION "0.0.0"
#endif

/* Most message data put into one flow's detail. */
#define MSG_DATA_MAX ((size_t)4 * 1024 * 1024)
/* Default and largest slice of a body one request renders. */
#define BODY_PAGE ((size_t)1024 * 1024)
/* Ids an export or write of a selection may name. */
#define IDS_MAX 10000
/* Flows an event stream watches for changes by id; open flows beyond them
 * are found again by a walk over their id range, SCAN_PAGE rows a tick (a
 * flow of the range that has ended is sent if it ended after the walk
 * before began, less the slack of the index behind the recorder). */
#define PEND_MAX 256
#define SCAN_PAGE 200
#define WALK_SLACK_US ((int64_t)10 * 1000 * 1000)
/* A walk starts at most this often: a flow that ended is sent again by the
 * walks of the WALK_SLACK_US after its end, so at most about 6 times. */
#define WALK_EVERY_US ((int64_t)2 * 1000 * 1000)

typedef struct {
    const reel__web_ctx_t *w;
    const reel__web_req_t *rq;
    reel__web_resp_t *rs;
    char *seg[8]; /* path segments after /api/, decoded */
    size_t nseg;
    json_t *in; /* request body as JSON, or NULL */
} call_t;

static void send_json(reel__web_resp_t *rs, int status, json_t *j) {
    rs->status = status;
    rs->type = NULL;
    reel_buf_reset(&rs->body);
    if (j == NULL) { /* a json_pack that failed (a value that is not UTF-8): not 200 "null" */
        rs->status = 500;
        reel_buf_puts(&rs->body, "{\"error\":\"reel could not build the answer (a value in it "
                                 "is not UTF-8)\"}");
        return;
    }
    char *s = json_dumps(j, JSON_COMPACT);
    reel_buf_puts(&rs->body, s ? s : "null");
    free(s);
    json_decref(j);
}

/* Maps an error from the session modules to a status and sends it; a
 * filter's message "... at column N ..." also gives "column". */
static void send_err(reel__web_resp_t *rs, const reel_err_t *err) {
    int status = 500;
    switch (err->code) {
    case REEL_NOTFOUND:
        status = 404;
        break;
    case REEL_INVALID:
    case REEL_LIMIT:
    case REEL_USAGE:
        status = 400;
        break;
    case REEL_LOCKED:
        status = 423;
        break;
    case REEL_EXISTS:
        status = 409;
        break;
    default:
        break;
    }
    const char *msg = reel_err_str(err);
    json_t *j = json_pack("{s:o}", "error", reel__web_message(msg));
    const char *col = strstr(msg, "at column ");
    if (col) {
        long n = strtol(col + 10, NULL, 10);
        if (n > 0)
            json_object_set_new(j, "column", json_integer(n));
    }
    send_json(rs, status, j);
}

static int allowed(const reel__web_ctx_t *w, const char *name) {
    if (w->nsessions == 0)
        return 1;
    for (size_t i = 0; i < w->nsessions; i++)
        if (strcmp(w->sessions[i], name) == 0)
            return 1;
    return 0;
}

/* Opens session name for reading (write 0) or writing; NULL after sending
 * the error. */
static reel_session_t *open_session(call_t *c, const char *name, int write) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_name_check(name, &err) != REEL_OK || !allowed(c->w, name)) {
        reel__web_error(c->rs, 404, "no session '%s'", name);
        return NULL;
    }
    reel_session_t *s = NULL;
    if (reel_session_open(c->w->home, name, write ? 0 : REEL_OPEN_READ, &s, &err) != REEL_OK) {
        if (err.code == REEL_NOTFOUND)
            reel__web_error(c->rs, 404, "no session '%s'", name);
        else
            send_err(c->rs, &err);
        return NULL;
    }
    if (write && reel_session_readonly(s)) {
        reel__web_error(c->rs, 403, "session '%s' is read-only: %s", name,
                        reel_session_readonly(s));
        reel_session_close(s);
        return NULL;
    }
    return s;
}

/* An integer parameter: def when absent; -1 (after sending 400) when bad. */
static int int_param(call_t *c, const char *name, int64_t def, int64_t min, int64_t max,
                     int64_t *out) {
    char *v = reel__web_param(c->rq->query, name);
    *out = def;
    if (v == NULL || v[0] == '\0') {
        free(v);
        return 0;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    int bad = errno || *end || n < min || n > max;
    if (bad)
        reel__web_error(c->rs, 400, "%s must be an integer %lld..%lld, not '%s'", name,
                        (long long)min, (long long)max, v);
    free(v);
    if (bad)
        return -1;
    *out = n;
    return 0;
}

static const char *protocol(const reel_query_flow_t *f) {
    if (f->kind && strcmp(f->kind, "websocket") == 0)
        return "WebSocket";
    if (f->kind && strcmp(f->kind, "tunnel") == 0) /* TLS that is not HTTP, or raw bytes */
        return f->scheme && strcmp(f->scheme, "tls") == 0 ? "TLS" : "TCP";
    if (f->http_version && strncmp(f->http_version, "HTTP/2", 6) == 0)
        return "HTTP/2";
    if (f->http_version && strcmp(f->http_version, "HTTP/1.0") == 0)
        return "HTTP/1.0";
    return "HTTP/1.1";
}

/* The `reel flows --json` row plus what the table shows besides. */
static json_t *row_json(const reel_query_flow_t *f) {
    json_t *o = reel_query_flow_json(f);
    json_object_set_new(o, "host", reel_json_text(f->host));
    json_object_set_new(o, "path", reel_json_text(f->path));
    json_object_set_new(o, "scheme", reel_json_text(f->scheme));
    json_object_set_new(o, "port",
                        f->port == REEL_QUERY_NULL ? json_null() : json_integer(f->port));
    json_object_set_new(o, "http_version", reel_json_text(f->http_version));
    json_object_set_new(o, "annotations", json_integer(f->annotations));
    json_object_set_new(o, "protocol", json_string(protocol(f)));
    json_object_set_new(o, "response_content_type", reel_json_text(f->response_content_type));
    return o;
}

/* ---- sessions ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What `reel ls` shows as the session's size, measured as it does: before
 * the session is opened, since opening it makes SQLite create the index's
 * -shm (32 KiB) when no one else has it open. */
static unsigned long long session_bytes(const reel__web_ctx_t *w, const char *name) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_name_check(name, &err) != REEL_OK || !allowed(w, name))
        return 0;
    char *dir = reel_asprintf("%s/%s", w->home, name);
    unsigned long long n = reel_session_dir_bytes(dir);
    free(dir);
    return n;
}

static json_t *session_json(const reel__web_ctx_t *w, const char *name, reel_session_t *s,
                            unsigned long long bytes) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_query_summary_t sum;
    json_t *o = json_pack("{s:s}", "name", name);
    if (reel_query_summary(s, &sum, &err) != REEL_OK) {
        json_object_set_new(o, "error", json_string(reel_err_str(&err)));
        return o;
    }
    long pid = reel_session_recorder_pid(s);
    json_object_set_new(o, "flows", json_integer(sum.flows));
    json_object_set_new(o, "errors", json_integer(sum.errors));
    json_object_set_new(o, "size", json_integer((json_int_t)bytes));
    json_object_set_new(o, "created_us", json_integer(sum.created_us));
    json_object_set_new(o, "first_us", sum.first_us ? json_integer(sum.first_us) : json_null());
    json_object_set_new(o, "last_us", sum.last_us ? json_integer(sum.last_us) : json_null());
    json_object_set_new(o, "recording", json_boolean(pid != 0));
    json_object_set_new(o, "pid", pid ? json_integer(pid) : json_null());
    json_object_set_new(o, "annotations", json_integer(sum.annotations));
    json_object_set_new(o, "marked", json_integer(sum.marked_flows));
    json_object_set_new(o, "live", json_boolean(w->live && strcmp(w->live, name) == 0));
    return o;
}

/* GET /api/sessions: every session with its summary (each one opened and
 * counted: a cold million-flow index takes a few hundred ms). brief=1 gives
 * only the names (and which one is live), from the directory: what the UI
 * needs to pick a session when it starts, without waiting for the counts. */
static void api_sessions(call_t *c) {
    const reel__web_ctx_t *w = c->w;
    char *bp = reel__web_param(c->rq->query, "brief");
    int brief = bp && strcmp(bp, "1") == 0;
    free(bp);
    json_t *arr = json_array();
    DIR *d = opendir(w->home);
    size_t n = 0, cap = 16;
    char **names = reel_malloc(cap * sizeof *names);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !allowed(w, e->d_name))
            continue;
        char *db = reel_asprintf("%s/%s/session.db", w->home, e->d_name);
        struct stat st;
        int ok = stat(db, &st) == 0;
        free(db);
        if (!ok)
            continue;
        if (n == cap)
            names = reel_realloc(names, (cap *= 2) * sizeof *names);
        names[n++] = reel_strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (brief) {
            json_array_append_new(arr, json_pack("{s:s, s:b}", "name", names[i], "live",
                                                 w->live && strcmp(w->live, names[i]) == 0));
            free(names[i]);
            continue;
        }
        reel_err_t err;
        reel_err_clear(&err);
        reel_session_t *s = NULL;
        unsigned long long bytes = session_bytes(w, names[i]);
        reel_rc orc = reel_session_open(w->home, names[i], REEL_OPEN_READ, &s, &err);
        if (orc != REEL_OK) {
            /* busy: another process rebuilds its index (as `reel ls` says) */
            json_t *o = json_pack("{s:s, s:s, s:b}", "name", names[i], "error", reel_err_str(&err),
                                  "busy", orc == REEL_LOCKED);
            if (o)
                json_array_append_new(arr, o);
        } else {
            json_array_append_new(arr, session_json(w, names[i], s, bytes));
        }
        reel_session_close(s);
        free(names[i]);
    }
    free(names);
    /* rename: refused (403) by a server given SESSION names, which shows
     * only those: the renamed session would vanish from it */
    send_json(c->rs, 200,
              json_pack("{s:o, s:b, s:o, s:b}", "sessions", arr, "read_only", w->read_only, "live",
                        w->live ? json_string(w->live) : json_null(), "can_rename",
                        !w->read_only && w->nsessions == 0));
}

static void api_session(call_t *c, const char *name) {
    unsigned long long bytes = session_bytes(c->w, name);
    reel_session_t *s = open_session(c, name, 0);
    if (s == NULL)
        return;
    send_json(c->rs, 200, session_json(c->w, name, s, bytes));
    reel_session_close(s);
}

static void api_rename(call_t *c, const char *name) {
    const char *to = json_string_value(json_object_get(c->in, "name"));
    reel_err_t err;
    reel_err_clear(&err);
    if (to == NULL) {
        reel__web_error(c->rs, 400, "expected {\"name\": NEW}");
        return;
    }
    if (reel_session_name_check(to, &err) != REEL_OK) {
        send_err(c->rs, &err);
        return;
    }
    if (c->w->nsessions) {
        reel__web_error(c->rs, 403,
                        "this server shows only the sessions it was given: "
                        "rename with it serving every session");
        return;
    }
    reel_session_t *s = open_session(c, name, 1);
    if (s == NULL)
        return;
    long pid = reel_session_recorder_pid(s);
    reel_session_close(s);
    if (pid) {
        reel__web_error(c->rs, 423, "session '%s' is recording (pid %ld)", name, pid);
        return;
    }
    char *from = reel_asprintf("%s/%s", c->w->home, name);
    char *dest = reel_asprintf("%s/%s", c->w->home, to);
    if (renameat2(AT_FDCWD, from, AT_FDCWD, dest, RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST)
            reel__web_error(c->rs, 409, "a session '%s' exists already", to);
        else
            reel__web_error(c->rs, 500, "rename: %s", strerror(errno));
    } else {
        send_json(c->rs, 200, json_pack("{s:s, s:s}", "renamed", name, "name", to));
    }
    free(from);
    free(dest);
}

static void api_delete(call_t *c, const char *name) {
    char *confirm = reel__web_param(c->rq->query, "confirm");
    if (confirm == NULL || strcmp(confirm, name) != 0) {
        free(confirm);
        reel__web_error(c->rs, 400, "deleting needs confirm=%s (the session's name)", name);
        return;
    }
    free(confirm);
    reel_session_t *s = open_session(c, name, 1);
    if (s == NULL)
        return;
    reel_session_close(s);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_session_remove(c->w->home, name, &err) != REEL_OK)
        send_err(c->rs, &err);
    else
        send_json(c->rs, 200, json_pack("{s:s}", "deleted", name));
}

/* ---- flow pages ---- */

/* Fills q from the query string (filter, sort, order); 0, or -1 after
 * sending the error. filter is owned by the caller afterwards. */
static int list_opts(call_t *c, reel_query_opts_t *q, char **filter) {
    memset(q, 0, sizeof *q);
    q->cancel = c->rq->cancel; /* set when the client leaves (walk threads only) */
    *filter = reel__web_param(c->rq->query, "filter");
    q->filter = *filter;
    char *sort = reel__web_param(c->rq->query, "sort");
    char *order = reel__web_param(c->rq->query, "order");
    int rc = 0;
    reel_err_t err;
    reel_err_clear(&err);
    if (sort && sort[0] && reel_query_sort_parse(sort, &q->sort, &err) != REEL_OK) {
        send_err(c->rs, &err);
        rc = -1;
    } else if (order && order[0] && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        reel__web_error(c->rs, 400, "order must be asc or desc");
        rc = -1;
    } else {
        q->desc = order && strcmp(order, "desc") == 0;
    }
    free(sort);
    free(order);
    return rc;
}

/* The opaque cursor of the API: the sort's letter, the row's id and its
 * sort value, "i42", "s42.1700000000000000", "h42.6170692e6578" (the host
 * in hex), "t42.200", "h42.-" / "t42.-" (NULL). The value makes it work
 * when the flow itself is gone (retention); the letter refuses a cursor of
 * another sort. A client may also make one up to start a page anywhere: the
 * UI's "go to" and position slider ask for the rows after (start, id) =
 * (T, 0), or after (42's start, 41); so the id may be 0. */
static const char cursor_letters[] = "isht"; /* by reel_query_sort */

static json_t *cursor_json(const reel_query_flow_t *f, reel_query_sort sort) {
    reel_query_cursor_t k;
    reel_query_cursor_of(f, sort, &k);
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_printf(&b, "%c%lld", cursor_letters[sort], (long long)k.id);
    if (sort != REEL_QUERY_SORT_ID) {
        if (k.null) {
            reel_buf_puts(&b, ".-");
        } else if (sort == REEL_QUERY_SORT_HOST) {
            reel_buf_puts(&b, ".");
            for (const unsigned char *p = (const unsigned char *)k.str; *p; p++)
                reel_buf_printf(&b, "%02x", *p);
        } else {
            reel_buf_printf(&b, ".%lld", (long long)k.num);
        }
    }
    json_t *j = json_stringn((const char *)b.data, b.len);
    reel_buf_free(&b);
    return j;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Parses text into *k (k->str owned by *host); 0, or -1 after sending 400. */
static int cursor_parse(call_t *c, const char *text, reel_query_sort sort, reel_query_cursor_t *k,
                        char **host) {
    memset(k, 0, sizeof *k);
    *host = NULL;
    const char *p = text;
    if (*p != cursor_letters[sort]) {
        reel__web_error(c->rs, 400, "cursor '%s' is not one of sort=%s: start over", text,
                        sort == REEL_QUERY_SORT_ID      ? "id"
                        : sort == REEL_QUERY_SORT_START ? "start"
                        : sort == REEL_QUERY_SORT_HOST  ? "host"
                                                        : "status");
        return -1;
    }
    char *end;
    errno = 0;
    long long id = strtoll(p + 1, &end, 10);
    int ok = errno == 0 && end != p + 1 && id >= 0;
    if (ok && sort == REEL_QUERY_SORT_ID) {
        ok = *end == '\0';
    } else if (ok) {
        ok = *end == '.';
        p = end + 1;
        if (ok && strcmp(p, "-") == 0 && sort != REEL_QUERY_SORT_START) {
            k->null = 1;
        } else if (ok && sort == REEL_QUERY_SORT_HOST) {
            size_t n = strlen(p);
            ok = n % 2 == 0;
            *host = reel_malloc(n / 2 + 1);
            for (size_t i = 0; ok && i < n; i += 2) {
                int hi = hexval(p[i]), lo = hexval(p[i + 1]);
                ok = hi >= 0 && lo >= 0 && (hi || lo);
                (*host)[i / 2] = (char)(hi * 16 + lo);
            }
            (*host)[n / 2] = '\0';
            k->str = *host;
        } else if (ok) {
            errno = 0;
            k->num = strtoll(p, &end, 10);
            ok = errno == 0 && end != p && *end == '\0';
        }
    }
    if (!ok) {
        free(*host);
        *host = NULL;
        reel__web_error(c->rs, 400, "bad cursor '%s': pass back a \"next\" or \"prev\"", text);
        return -1;
    }
    k->id = id;
    return 0;
}

static void api_flows(call_t *c, reel_session_t *s) {
    reel_query_opts_t q;
    char *filter = NULL, *cursor = NULL, *host = NULL, *offset = NULL;
    int64_t limit, after;
    reel_query_cursor_t k;
    reel_query_page_t page = {0};
    if (list_opts(c, &q, &filter) != 0 ||
        int_param(c, "limit", 100, 1, REEL_WEB_PAGE_MAX, &limit) != 0 ||
        int_param(c, "after", 0, 0, INT64_MAX, &after) != 0)
        goto out;
    if ((offset = reel__web_param(c->rq->query, "offset")) != NULL) {
        reel__web_error(c->rs, 400,
                        "offset paging is gone (it walked every skipped row): pass cursor=next "
                        "of the page before");
        goto out;
    }
    cursor = reel__web_param(c->rq->query, "cursor");
    if (cursor && cursor[0]) {
        if (cursor_parse(c, cursor, q.sort, &k, &host) != 0)
            goto out;
        q.cursor = &k;
    }
    q.limit = (size_t)limit;
    q.after_id = after;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_flows(s, &q, &page, &err) != REEL_OK) {
        send_err(c->rs, &err);
        goto out;
    }
    json_t *rows = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(rows, row_json(&page.rows[i]));
    send_json(c->rs, 200,
              json_pack("{s:o, s:b, s:o, s:o, s:o}", "rows", rows, "more", page.more, "next",
                        page.n ? cursor_json(&page.rows[page.n - 1], q.sort) : json_null(), "prev",
                        page.n ? cursor_json(&page.rows[0], q.sort) : json_null(), "next_after",
                        page.n ? json_integer(page.rows[page.n - 1].id) : json_null()));
out:
    reel_query_page_free(&page);
    free(filter);
    free(cursor);
    free(host);
    free(offset);
}

/* The count, exact or (with max=N) capped: counting stops after N + 1
 * matches, so "10,000+" costs 10,001 index steps whatever the session's
 * size. */
static void api_count(call_t *c, reel_session_t *s) {
    reel_query_opts_t q;
    char *filter = NULL;
    int64_t max;
    if (list_opts(c, &q, &filter) == 0 && int_param(c, "max", 0, 1, 1000000000, &max) == 0) {
        int64_t n = 0, maxid = 0;
        reel_err_t err;
        reel_err_clear(&err);
        reel_query_opts_t last = {.sort = REEL_QUERY_SORT_ID, .desc = 1, .limit = 1};
        reel_query_page_t page = {0};
        q.sort = REEL_QUERY_SORT_ID; /* the count is the same in any order: walk the rowids */
        q.desc = 0;
        q.limit = max ? (size_t)max + 1 : 0;
        if (reel_query_count(s, &q, &n, &err) != REEL_OK ||
            reel_query_flows(s, &last, &page, &err) != REEL_OK) {
            send_err(c->rs, &err);
        } else {
            maxid = page.n ? page.rows[0].id : 0;
            int capped = max && n > max;
            send_json(c->rs, 200,
                      json_pack("{s:I, s:b, s:I}", "count", (json_int_t)(capped ? max : n),
                                "capped", capped, "max_id", (json_int_t)maxid));
        }
        reel_query_page_free(&page);
    }
    free(filter);
}

/* ---- one flow ---- */

/* A flow id as the CLI reads one (reel_query_parse_flow_id). */
static int parse_flow_id(const char *arg, int64_t *id) {
    return reel_query_parse_flow_id(arg, id);
}

/* The flow id of a path: -1 after sending 400 when it is not one. */
static int flow_id(call_t *c, const char *arg, int64_t *id) {
    if (parse_flow_id(arg, id) != 0) {
        reel__web_error(c->rs, 400, "invalid flow id '%s': a flow id is digits only, 1 and up",
                        arg);
        return -1;
    }
    return 0;
}

/* The body facts the detail has from the flow's records (flowread.c), an
 * open flow's from the index row: no size under the bytes stored. */
static void body_facts(const reel_query_flow_t *f, json_t *detail) {
    const int64_t isize[2] = {f->request_body_size, f->response_body_size};
    const int itrunc[2] = {f->request_truncated, f->response_truncated};
    const int64_t idrop[2] = {f->request_body_dropped, f->response_body_dropped};
    static const char *const names[2] = {"request", "response"};
    for (int dir = 0; dir < 2; dir++) {
        json_t *o = json_object_get(detail, names[dir]);
        if (!json_is_object(o))
            continue;
        json_int_t stored = json_integer_value(json_object_get(o, "body_stored"));
        json_t *size = json_object_get(o, "body_size");
        /* a body stored decoded (a HAR import) may have had fewer bytes on
         * the wire, still encoded, than are stored: its end record says */
        int exact = size != NULL && json_is_true(json_object_get(o, "body_decoded"));
        if (size == NULL) { /* no end record yet */
            json_object_set_new(o, "body_size", json_integer(isize[dir] > 0 ? isize[dir] : 0));
            json_object_set_new(o, "body_truncated", json_boolean(itrunc[dir]));
            json_object_set_new(o, "body_dropped", json_integer(idrop[dir] > 0 ? idrop[dir] : 0));
        } else if (itrunc[dir]) {
            json_object_set_new(o, "body_truncated", json_true());
        }
        if (!exact && json_integer_value(json_object_get(o, "body_size")) < stored)
            json_object_set_new(o, "body_size", json_integer(stored));
    }
}

/* "replayed_as": the flows of this session that re-sent it, as `reel flow
 * --json` gives them (reel_replay_links). */
static json_t *replayed_as_json(reel_session_t *s, int64_t id) {
    uint64_t of = 0, *replays = NULL;
    char *of_session = NULL;
    size_t n = 0;
    reel_err_t err;
    reel_err_clear(&err);
    json_t *a = json_array();
    if (reel_replay_links(s, (uint64_t)id, &of, &of_session, &replays, &n, &err) == REEL_OK)
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_integer((json_int_t)replays[i]));
    free(replays);
    free(of_session);
    return a;
}

static void api_flow(call_t *c, reel_session_t *s, int64_t id) {
    reel_query_flow_t f;
    memset(&f, 0, sizeof f);
    reel_err_t err;
    reel_err_clear(&err);
    json_t *detail = NULL;
    reel_query_note_t *notes = NULL;
    size_t nnotes = 0;
    if (reel_query_flow(s, id, &f, &err) != REEL_OK ||
        reel_query_notes(s, id, &notes, &nnotes, &err) != REEL_OK ||
        reel_flowread_detail(s, id, MSG_DATA_MAX, &detail, &err) != REEL_OK) {
        send_err(c->rs, &err);
        goto out;
    }
    json_t *na = json_array();
    for (size_t i = 0; i < nnotes; i++) {
        json_t *t = json_string(notes[i].text);
        json_array_append_new(na, json_pack("{s:I, s:I, s:o}", "id", (json_int_t)notes[i].id,
                                            "created_us", (json_int_t)notes[i].created_us, "text",
                                            t ? t : json_string("")));
    }
    body_facts(&f, detail);
    json_object_set_new(detail, "replayed_as", replayed_as_json(s, id));
    json_object_set_new(detail, "row", row_json(&f));
    json_object_set_new(detail, "notes", na);
    send_json(c->rs, 200, detail);
out:
    reel_query_notes_free(notes, nnotes);
    reel_query_flow_clear(&f);
}

static int dir_arg(call_t *c, const char *arg) {
    if (strcmp(arg, "request") == 0)
        return 0;
    if (strcmp(arg, "response") == 0)
        return 1;
    reel__web_error(c->rs, 404, "no body '%s' (request or response)", arg);
    return -1;
}

typedef struct {
    reel_buf_t buf;
    uint64_t skip, want;
    int more;
} slice_t;

/* reel_flowread_body; and when decoding gave nothing at all (a coding
 * that fails at its first byte: "gzip" over bytes that are not gzip), the
 * body as stored instead, as reel flow shows it, info keeping why
 * (decode_error, decoded 0). It showed an empty body, and raw downloaded
 * an empty file. (Nothing reached sink the first time.) */
static reel_rc body_or_stored(reel_session_t *s, int64_t id, int dir, int decode, reel_sink_fn sink,
                              void *ctx, reel_flowread_body_t *info, reel_err_t *err) {
    reel_rc rc = reel_flowread_body(s, id, dir, decode, sink, ctx, info, err);
    if (rc == REEL_NOTFOUND || !decode || info->decode_error[0] == '\0' || info->total != 0)
        return rc;
    char why[sizeof info->decode_error];
    memcpy(why, info->decode_error, sizeof why);
    reel_flowread_body_clear(info);
    memset(info, 0, sizeof *info);
    rc = reel_flowread_body(s, id, dir, 0, sink, ctx, info, err);
    memcpy(info->decode_error, why, sizeof why);
    info->decoded = 0;
    return rc;
}

static int slice_sink(void *ctx, const uint8_t *p, size_t n) {
    slice_t *sl = ctx;
    if (sl->skip >= n) {
        sl->skip -= n;
        return 0;
    }
    p += sl->skip;
    n -= (size_t)sl->skip;
    sl->skip = 0;
    size_t room = (size_t)(sl->want - sl->buf.len);
    if (n > room) {
        reel_buf_append(&sl->buf, p, room);
        sl->more = 1;
        return 1;
    }
    reel_buf_append(&sl->buf, p, n);
    return 0;
}

/* Bytes of the UTF-8 sequence lead byte c starts (2..4); 0 for a
 * continuation byte, 1 for any other. */
static size_t utf8_lead(uint8_t c) {
    if ((c & 0xc0) == 0x80)
        return 0;
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* Where a part of text starts and ends in b[0..n), b holding pre bytes
 * before the offset asked for and up to 3 after the want asked for: a
 * character the offset splits is taken whole (the start moves back to its
 * lead byte), one the end splits is left to the next part (the end moves
 * back before it, when the body goes on), so no part starts or ends in
 * half a character and the next part, asked for at offset + length, starts
 * on the character after. A want shorter than the part's first character
 * gets that whole character (the bytes after want): moved back, the end
 * would leave the part empty, and the next part would start where this
 * one did, again and again. */
static void text_edges(const uint8_t *b, size_t n, size_t pre, size_t want, int more, size_t *start,
                       size_t *end) {
    size_t st = pre;
    for (size_t j = 1; j <= pre && utf8_lead(b[pre]) == 0; j++) {
        size_t k = utf8_lead(b[pre - j]);
        if (k == 0)
            continue;
        if (k > j)
            st = pre - j;
        break;
    }
    size_t en = n - st > want ? st + want : n;
    if (more || en < n) {
        for (size_t j = 1; j <= 3 && j <= en - st; j++) {
            size_t k = utf8_lead(b[en - j]);
            if (k == 0)
                continue;
            if (k > j && en - j > st)
                en -= j;
            else if (k > j)
                en = st + k < n ? st + k : n;
            break;
        }
    }
    *start = st;
    *end = en;
}

/* Whether raw?inline=1 serves a body of Content-Type ct as itself: images
 * only, never SVG (a document that may run script), and only a type that
 * is safe to repeat in the header. The rest downloads, so recorded HTML
 * never runs under this origin. */
static int inline_image(const char *ct) {
    return ct && strncmp(ct, "image/", 6) == 0 && strstr(ct, "svg") == NULL &&
           strspn(ct, "abcdefghijklmnopqrstuvwxyz0123456789/.+-; =") == strlen(ct);
}

static void api_body(call_t *c, reel_session_t *s, int64_t id, int dir) {
    int64_t off, len;
    char *vname = reel__web_param(c->rq->query, "view");
    int kind = vname && vname[0] ? reel_view_parse(vname) : REEL_VIEW_AUTO;
    slice_t sl;
    memset(&sl, 0, sizeof sl);
    reel_flowread_body_t info;
    memset(&info, 0, sizeof info);
    char *text = NULL;
    size_t tlen = 0;
    if (kind < 0) {
        reel__web_error(c->rs, 400, "no view '%s'", vname);
        goto out;
    }
    if (int_param(c, "offset", 0, 0, INT64_MAX / 2, &off) != 0 ||
        int_param(c, "length", (int64_t)BODY_PAGE, 1, (int64_t)BODY_PAGE, &len) != 0)
        goto out;
    /* the 3 bytes before the offset too: the lead of a character it splits;
     * and 3 after the length: the rest of a character longer than it */
    size_t pre = off < 3 ? (size_t)off : 3;
    sl.skip = (uint64_t)off - pre;
    sl.want = (uint64_t)len + pre + 3;
    reel_buf_init(&sl.buf, 0);
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = body_or_stored(s, id, dir, 1, slice_sink, &sl, &info, &err);
    if (rc == REEL_NOTFOUND) {
        send_err(c->rs, &err);
        goto out;
    }
    /* a part of text cut on character boundaries (else a character split at
     * an edge made the part look binary); the hex view shows the bytes
     * asked for */
    size_t st = pre, en = sl.buf.len;
    if (en > pre && en - pre > (size_t)len) /* the 3 bytes after the length: text_edges's */
        en = pre + (size_t)len;
    if (sl.buf.len <= pre) /* the body ends before the offset */
        st = en = sl.buf.len;
    else if (kind != REEL_VIEW_HEX) {
        size_t ts, te;
        text_edges(sl.buf.data, sl.buf.len, pre, (size_t)len, sl.more, &ts, &te);
        size_t sample = te - ts < 4096 ? te - ts : 4096;
        if (te > ts && reel_looks_text(sl.buf.data + ts, sample))
            st = ts, en = te;
    }
    int more = sl.more || en < sl.buf.len;
    if (sl.buf.len > pre)
        off = off - (int64_t)pre + (int64_t)st;
    /* body_limit cut the stored body (the index row, as in the detail): no
     * more is stored past the last part, which is not the body's end */
    reel_query_flow_t qf;
    memset(&qf, 0, sizeof qf);
    reel_err_t qerr;
    reel_err_clear(&qerr);
    int cut = 0;
    if (reel_query_flow(s, id, &qf, &qerr) == REEL_OK)
        cut = dir ? qf.response_truncated : qf.request_truncated;
    reel_query_flow_clear(&qf);
    FILE *f = open_memstream(&text, &tlen);
    reel_view_kind shown = REEL_VIEW_RAW;
    if (f) {
        shown = reel_view_render_part((reel_view_kind)kind, info.content_type, sl.buf.data + st,
                                      en - st, (uint64_t)off, more || cut, REEL_VIEW_TERM, NULL, f);
        fclose(f);
    }
    json_t *t = text ? json_stringn(text, tlen) : NULL;
    /* what the UI shows as an image: what raw?inline=1 serves as one */
    int image = inline_image(info.content_type);
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:I, s:I, s:b, s:o, s:b, s:b, s:o, s:o}", "view",
                  reel_view_name((reel_view_kind)kind), "shown", reel_view_name(shown),
                  "content_type", reel_json_text(info.content_type), /* (any bytes) */
                  "offset", (json_int_t)off, "length", (json_int_t)(en - st), "more", more, "text",
                  t ? t : json_string("(not shown: the view's output is not UTF-8)"), "image",
                  image, "decoded", info.decoded, "decode_error",
                  info.decode_error[0] ? reel_json_text(info.decode_error) : json_null(),
                  "read_error", rc == REEL_OK ? json_null() : reel_json_text(reel_err_str(&err)));
    json_object_set_new(o, "truncated", json_boolean(cut));
    send_json(c->rs, 200, o);
out:
    free(vname);
    free(text);
    reel_buf_free(&sl.buf);
    reel_flowread_body_clear(&info);
}

static int file_sink(void *ctx, const uint8_t *p, size_t n) {
    return fwrite(p, 1, n, ctx) == n ? 0 : 1;
}

static void api_raw(call_t *c, reel_session_t *s, int64_t id, int dir) {
    char *dec = reel__web_param(c->rq->query, "decoded");
    char *inl = reel__web_param(c->rq->query, "inline");
    FILE *f = NULL;
    reel_flowread_body_t info;
    memset(&info, 0, sizeof info);
    /* decoded unless told 0 or false; another value is a mistake to say,
     * not a reason to guess */
    bool decoded = dec == NULL || strcmp(dec, "1") == 0 || strcmp(dec, "true") == 0;
    if (dec && !decoded && strcmp(dec, "0") != 0 && strcmp(dec, "false") != 0) {
        reel__web_error(c->rs, 400, "decoded: 0, 1, true or false");
        goto out;
    }
    if ((f = tmpfile()) == NULL) {
        reel__web_error(c->rs, 500, "tmpfile: %s", strerror(errno));
        goto out;
    }
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = body_or_stored(s, id, dir, decoded, file_sink, f, &info, &err);
    if (rc == REEL_NOTFOUND) {
        send_err(c->rs, &err);
        goto out;
    }
    const char *ct = info.content_type;
    int image = inl && inline_image(ct);
    c->rs->status = 200;
    if (image) {
        /* rs->type is borrowed until the response is written, which
         * happens before the next request is handled */
        static char type[128];
        snprintf(type, sizeof type, "%s", ct);
        c->rs->type = type;
    } else {
        c->rs->type = "application/octet-stream";
        c->rs->headers = reel_asprintf("Content-Disposition: attachment; "
                                       "filename=\"flow-%lld-%s.bin\"\r\n",
                                       (long long)id, dir ? "response" : "request");
    }
    c->rs->file = f;
    f = NULL;
out:
    if (f)
        fclose(f);
    free(dec);
    free(inl);
    reel_flowread_body_clear(&info);
}

static void api_curl(call_t *c, reel_session_t *s, int64_t id) {
    char *filter = reel_asprintf("~id %lld", (long long)id);
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    reel_export_opts_t o = {.format = REEL_EXPORT_CURL, .filter = filter};
    reel_export_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = f ? reel_export(s, f, &o, &st, &err) : REEL_IO;
    if (f)
        fclose(f);
    if (rc != REEL_OK) {
        send_err(c->rs, &err);
    } else if (st.flows == 0) {
        reel__web_error(c->rs, 404, "flow %lld has no request to write as curl", (long long)id);
    } else {
        c->rs->status = 200;
        c->rs->type = "text/plain; charset=utf-8";
        reel_buf_append(&c->rs->body, text, tlen);
    }
    free(text);
    free(filter);
}

/* ---- diff of two flows ---- */

/* Appends one JSON string (or {"b64"}) to out. */
static void put_jstr(reel_buf_t *out, json_t *v) {
    if (json_is_string(v))
        reel_buf_append(out, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v))
        reel_buf_printf(out, "%lld", (long long)json_integer_value(v));
    else if (json_is_object(v))
        reel_buf_puts(out, "(binary)");
}

/* Flow id's heads as text: request line and headers, status and headers
 * (the bodies are compared by reel_diff_body_compare: api_diff). */
static reel_rc flow_text(reel_session_t *s, int64_t id, reel_buf_t *out, reel_err_t *err) {
    json_t *d = NULL;
    reel_rc rc = reel_flowread_detail(s, id, 0, &d, err);
    if (rc != REEL_OK)
        return rc;
    static const char *const dirs[2] = {"request", "response"};
    for (int dir = 0; dir < 2; dir++) {
        json_t *h = json_object_get(d, dirs[dir]);
        if (json_is_object(h)) {
            if (dir == 0) {
                put_jstr(out, json_object_get(h, "method"));
                reel_buf_puts(out, " ");
                put_jstr(out, json_object_get(h, "url"));
            } else {
                put_jstr(out, json_object_get(h, "status"));
                reel_buf_puts(out, " ");
                put_jstr(out, json_object_get(h, "reason"));
            }
            reel_buf_puts(out, "\n");
            json_t *f;
            size_t i;
            json_array_foreach(json_object_get(h, "headers"), i, f) {
                put_jstr(out, json_array_get(f, 0));
                reel_buf_puts(out, ": ");
                put_jstr(out, json_array_get(f, 1));
                reel_buf_puts(out, "\n");
            }
        }
        reel_buf_puts(out, "\n");
    }
    json_decref(d);
    return REEL_OK;
}

/* The diff of two flows' heads as text, then of each direction's body as
 * `reel diff` compares it (reel_diff_body_compare): a body not stored whole
 * (body_limit cut it) is compared only in the bytes both sides stored, so
 * its diff never shows "no differences" for bodies that may differ past
 * them: `same` is null then, and `unknown` names the body, as `reel diff
 * --json` has it. */
static void api_diff(call_t *c, reel_session_t *s, int64_t id) {
    int64_t with;
    char *w = reel__web_param(c->rq->query, "with");
    if (w == NULL || w[0] == '\0') {
        reel__web_error(c->rs, 400, "diff needs with=ID, the other flow");
        free(w);
        return;
    }
    int bad = parse_flow_id(w, &with) != 0;
    if (bad)
        reel__web_error(c->rs, 400,
                        "invalid flow id '%s' in with: a flow id is digits only, 1 and up", w);
    free(w);
    if (bad)
        return;
    reel_buf_t a, b, out;
    reel_buf_init(&a, 0);
    reel_buf_init(&b, 0);
    reel_buf_init(&out, 0);
    reel_diff_flow_t fl[2];
    memset(fl, 0, sizeof fl);
    reel_err_t err;
    reel_err_clear(&err);
    if (flow_text(s, id, &a, &err) != REEL_OK || flow_text(s, with, &b, &err) != REEL_OK ||
        reel_diff_flow_load(s, (uint64_t)id, &fl[0], &err) != REEL_OK ||
        reel_diff_flow_load(s, (uint64_t)with, &fl[1], &err) != REEL_OK) {
        send_err(c->rs, &err);
        goto out;
    }
    static const char *const dirs[2] = {"request", "response"};
    reel_diff_t d;
    reel_diff_lines((const char *)a.data, a.len, (const char *)b.data, b.len, 0, 0, &d);
    reel_diff_unified(&d, 3, &out);
    size_t changes = d.changes;
    int cut = d.cut, rough = d.rough, differs = d.changes > 0;
    reel_diff_free(&d);
    json_t *unknown = json_array(), *notes = json_array();
    for (int dir = 0; dir < 2; dir++) {
        const reel_diff_dir_t *x = &fl[0].dir[dir], *y = &fl[1].dir[dir];
        reel_diff_body_t bd;
        reel_diff_body_compare(x, y, &bd);
        int partial = x->partial || y->partial;
        if (bd.verdict == REEL_DIFF_BODY_DIFFERS)
            differs = 1;
        if (bd.verdict == REEL_DIFF_BODY_UNKNOWN) {
            char key[32];
            snprintf(key, sizeof key, "%s.body", dirs[dir]);
            json_array_append_new(unknown, json_string(key));
        }
        if (bd.verdict != REEL_DIFF_BODY_SAME) {
            /* as reel diff says it (cmd_diff.c) */
            reel_buf_printf(&out, "%s body (%s, %llu bytes -> %s, %llu bytes)", dirs[dir],
                            bd.kind_a ? bd.kind_a : "raw", (unsigned long long)x->wire_size,
                            bd.kind_b ? bd.kind_b : "raw", (unsigned long long)y->wire_size);
            if (partial && bd.verdict == REEL_DIFF_BODY_UNKNOWN)
                reel_buf_printf(&out,
                                ": not stored whole; the same in the %zu bytes both hold, past "
                                "them not known",
                                bd.compared);
            else if (partial && bd.bytes_same)
                reel_buf_printf(&out,
                                ": not stored whole; the same in the %zu bytes both hold, but "
                                "the sizes differ",
                                bd.compared);
            else if (partial)
                reel_buf_printf(&out, ": compared in the %zu bytes both hold", bd.compared);
            else if (bd.views_same)
                reel_buf_puts(&out, ": the same once pretty-printed");
            reel_buf_puts(&out, "\n");
            if (!bd.views_same) {
                reel_diff_t bl;
                reel_diff_lines((const char *)bd.view_a.data, bd.view_a.len,
                                (const char *)bd.view_b.data, bd.view_b.len, 0, 0, &bl);
                reel_diff_unified(&bl, 3, &out);
                changes += bl.changes;
                cut |= bl.cut;
                rough |= bl.rough;
                reel_diff_free(&bl);
            }
        }
        for (int i = 0; i < 2; i++) { /* as reel diff says them (cmd_diff.c) */
            const reel_diff_dir_t *z = i ? y : x;
            char *note[3] = {NULL, NULL, NULL};
            if (z->partial) {
                char why[256];
                reel_diff_partial_str(z, why, sizeof why);
                note[0] = reel_asprintf("%s: %s body %s", i ? "b" : "a", dirs[dir], why);
            }
            if (z->decode_error) /* compared as stored */
                note[1] = reel_asprintf("%s: %s body not decoded: %s", i ? "b" : "a", dirs[dir],
                                        z->decode_error);
            if (z->body_cut)
                note[2] = reel_asprintf("%s: %s body cut at 16 MiB", i ? "b" : "a", dirs[dir]);
            for (int k = 0; k < 3; k++)
                if (note[k]) {
                    json_array_append_new(notes, reel__web_message(note[k]));
                    free(note[k]);
                }
        }
        reel_diff_body_free(&bd);
    }
    /* same: true, false, or null when nothing stored differs but a body
     * was not stored whole (reel diff: "not known to be the same") */
    json_t *same = differs ? json_false() : json_array_size(unknown) ? json_null() : json_true();
    json_t *t = out.len ? json_stringn((const char *)out.data, out.len) : json_string("");
    send_json(c->rs, 200,
              json_pack("{s:I, s:I, s:I, s:b, s:b, s:o, s:o, s:o, s:o}", "a", (json_int_t)id, "b",
                        (json_int_t)with, "changes", (json_int_t)changes, "cut", cut, "rough",
                        rough, "same", same, "unknown", unknown, "notes", notes, "text",
                        t ? t : json_string("(the diff is not UTF-8)")));
out:
    reel_diff_flow_free(&fl[0]);
    reel_diff_flow_free(&fl[1]);
    reel_buf_free(&a);
    reel_buf_free(&b);
    reel_buf_free(&out);
}

/* ---- replay ---- */

/* Checks that flow id of session name can be replayed, then hands the
 * replay to server.c (rs->replay_session): the request is sent by a child
 * `reel replay`, not on the server's loop; or, for the session this process
 * records, by server.c on libuv's thread pool into this process's recorder
 * (rs->replay_req: a child could not open the session's recorder). */
static void api_replay(call_t *c, reel_session_t *s, const char *name, int64_t id) {
    int live = c->w->live && strcmp(c->w->live, name) == 0;
    if (live && !c->w->live_replay) {
        reel__web_error(c->rs, 409,
                        "session '%s' is being recorded by this process, and this server was not "
                        "given its recorder to replay into: stop the recording and replay flow "
                        "%lld from `reel web`",
                        name, (long long)id);
        return;
    }
    reel_replay_req_t r;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_replay_load(s, (uint64_t)id, &r, &err) != REEL_OK) {
        send_err(c->rs, &err);
    } else if (r.why_not) {
        reel__web_error(c->rs, 422, "flow %lld cannot be replayed: %s", (long long)id, r.why_not);
    } else {
        c->rs->replay_session = reel_strdup(name);
        c->rs->replay_id = id;
        if (live) {
            c->rs->replay_req = reel_malloc(sizeof r);
            *c->rs->replay_req = r; /* taken: nothing left to free here */
            memset(&r, 0, sizeof r);
        }
    }
    reel_replay_req_free(&r);
}

void reel__web_replay_live_answer(reel__web_resp_t *rs, const char *session, int64_t of,
                                  uint64_t id, uint32_t status, const char *error, int timed_out) {
    if (id == 0) {
        reel__web_error(rs, 409,
                        "capture is off in session '%s': the request of flow %lld was sent "
                        "again but not recorded",
                        session, (long long)of);
        return;
    }
    json_t *o = json_pack("{s:I, s:I}", "id", (json_int_t)id, "of", (json_int_t)of);
    json_object_set_new(o, "status", status ? json_integer(status) : json_null());
    json_t *e = error ? json_string(error) : json_null();
    json_object_set_new(o, "error", e ? e : json_string("replay failed (message not UTF-8)"));
    send_json(rs, error == NULL ? 200 : timed_out ? 504 : 502, o);
}

/* The last line of the child's stderr without its "reel replay: " prefix,
 * owned. */
static char *child_message(const reel_buf_t *errout) {
    size_t n = errout->len;
    const char *p = (const char *)errout->data;
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    size_t start = n;
    while (start && p[start - 1] != '\n')
        start--;
    /* "Try 'reel replay --help'." follows a usage error: take the line before */
    if (n - start >= 4 && strncmp(p + start, "Try ", 4) == 0 && start) {
        n = start - 1;
        start = n;
        while (start && p[start - 1] != '\n')
            start--;
    }
    const char *pre = "reel replay: ";
    size_t pl = strlen(pre);
    if (n - start >= pl && strncmp(p + start, pre, pl) == 0)
        start += pl;
    return n > start ? reel_strndup(p + start, n - start) : reel_strdup("replay failed");
}

void reel__web_replay_answer(reel__web_resp_t *rs, int exit_status, const char *why,
                             const reel_buf_t *out, const reel_buf_t *errout) {
    if (exit_status < 0) {
        reel__web_error(rs, why && strstr(why, "timed out") ? 504 : 500, "%s",
                        why ? why : "replay failed");
        return;
    }
    json_t *j = out->len ? json_loadb((const char *)out->data, out->len, 0, NULL) : NULL;
    json_t *rp = json_array_get(json_object_get(j, "replays"), 0);
    json_t *sk = json_array_get(json_object_get(j, "skipped"), 0);
    if (rp) {
        json_t *e = json_object_get(rp, "error");
        json_t *o =
            json_pack("{s:O, s:O, s:O, s:O}", "id", json_object_get(rp, "id"), "of",
                      json_object_get(rp, "of"), "status",
                      json_object_get(rp, "status") ? json_object_get(rp, "status") : json_null(),
                      "error", e ? e : json_null());
        if (o == NULL)
            reel__web_error(rs, 500, "unexpected output of reel replay");
        else
            send_json(rs, json_is_string(e) ? 502 : 200, o);
    } else if (sk) {
        const char *whynot = json_string_value(json_object_get(sk, "why"));
        reel__web_error(rs, 422, "flow %lld cannot be replayed: %s",
                        (long long)json_integer_value(json_object_get(sk, "of")),
                        whynot ? whynot : "skipped");
    } else {
        char *msg = child_message(errout);
        /* the child's advice is for the command line (--into): say what
         * can be done from here */
        char *cut = strstr(msg, "; replay records into a session no proxy is recording");
        if (cut)
            *cut = '\0';
        if (cut && strstr(msg, "is being recorded by")) {
            reel__web_error(rs, 409,
                            "%s, and only that proxy can record the replay into it while it "
                            "runs: stop it and replay again here, or replay from that proxy's "
                            "own web UI (started with --web: the URL it printed), which records "
                            "the replay into its live capture",
                            msg);
        } else {
            reel__web_error(rs, cut ? 409 : 500, "%s", msg); /* locked for another reason */
        }
        free(msg);
    }
    json_decref(j);
}

/* ---- notes, tags, marks ---- */

static void api_note_add(call_t *c, reel_session_t *s, int64_t id) {
    const char *text = json_string_value(json_object_get(c->in, "text"));
    if (text == NULL) {
        reel__web_error(c->rs, 400, "expected {\"text\": NOTE}");
        return;
    }
    reel_query_target_t t = {.ids = &id, .n = 1};
    reel_query_result_t res;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_annotate(s, &t, text, &res, &err) != REEL_OK)
        send_err(c->rs, &err);
    else
        send_json(c->rs, 200, json_pack("{s:I}", "note", (json_int_t)res.last_note));
}

static void api_note(call_t *c, reel_session_t *s, int64_t id, const char *narg) {
    int64_t note;
    char *end;
    errno = 0;
    note = strtoll(narg, &end, 10);
    if (errno || *end || note <= 0) {
        reel__web_error(c->rs, 404, "no note '%s'", narg);
        return;
    }
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc;
    if (strcmp(c->rq->method, "DELETE") == 0) {
        rc = reel_query_note_delete(s, id, note, &err);
    } else if (strcmp(c->rq->method, "PUT") == 0) {
        const char *text = json_string_value(json_object_get(c->in, "text"));
        if (text == NULL) {
            reel__web_error(c->rs, 400, "expected {\"text\": NOTE}");
            return;
        }
        rc = reel_query_note_edit(s, id, note, text, &err);
    } else {
        reel__web_not_allowed(c->rs, "PUT, DELETE", "PUT or DELETE a note");
        return;
    }
    if (rc != REEL_OK)
        send_err(c->rs, &err);
    else
        send_json(c->rs, 200, json_pack("{s:I}", "note", (json_int_t)note));
}

static int cmp_id(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* {"ids": [...]} or {"filter": "..."} from the body into t (both: 400);
 * ids owned by *ids. -1 after sending the error. */
static int target(call_t *c, reel_query_target_t *t, int64_t **ids) {
    memset(t, 0, sizeof *t);
    *ids = NULL;
    json_t *a = json_object_get(c->in, "ids");
    json_t *f = json_object_get(c->in, "filter");
    if (a && !json_is_null(a) && f && !json_is_null(f)) {
        reel__web_error(c->rs, 400, "give ids or filter, not both");
        return -1;
    }
    if (json_is_array(a)) {
        size_t n = json_array_size(a);
        if (n == 0 || n > IDS_MAX) {
            reel__web_error(c->rs, 400, "ids: 1 to %d flow ids", IDS_MAX);
            return -1;
        }
        *ids = reel_calloc(n, sizeof **ids);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(a, i);
            if (!json_is_integer(v) || json_integer_value(v) <= 0) {
                reel__web_error(c->rs, 400, "ids: flow ids are positive integers");
                return -1;
            }
            (*ids)[i] = json_integer_value(v);
        }
        /* each flow once: [1, 1, 1] is one flow, and "matched" counts flows */
        qsort(*ids, n, sizeof **ids, cmp_id);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || (*ids)[k - 1] != (*ids)[i])
                (*ids)[k++] = (*ids)[i];
        t->ids = *ids;
        t->n = k;
        return 0;
    }
    if (!json_is_string(f)) {
        reel__web_error(c->rs, 400, "expected \"ids\": [...] or \"filter\": \"...\"");
        return -1;
    }
    t->filter = json_string_value(f);
    return 0;
}

/* The boolean body field name: def when absent; -1 (after sending 400) when
 * it is there but not true or false. */
static int bool_field(call_t *c, const char *name, int def) {
    json_t *v = json_object_get(c->in, name);
    if (v == NULL)
        return def;
    if (!json_is_boolean(v)) {
        reel__web_error(c->rs, 400, "\"%s\" must be true or false", name);
        return -1;
    }
    return json_is_true(v);
}

static void api_tags(call_t *c, reel_session_t *s) {
    reel_query_target_t t;
    int64_t *ids = NULL;
    const char **tags = NULL;
    if (target(c, &t, &ids) != 0)
        goto out;
    json_t *ta = json_object_get(c->in, "tags");
    size_t n = json_array_size(ta);
    if (n == 0 || n > 100) {
        reel__web_error(c->rs, 400, "expected \"tags\": [1 to 100 tags]");
        goto out;
    }
    tags = reel_calloc(n, sizeof *tags);
    for (size_t i = 0; i < n; i++)
        if ((tags[i] = json_string_value(json_array_get(ta, i))) == NULL) {
            reel__web_error(c->rs, 400, "tags are strings");
            goto out;
        }
    int remove = bool_field(c, "remove", 0);
    if (remove < 0)
        goto out;
    int add = !remove;
    reel_query_result_t res;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_tag(s, &t, tags, n, add, &res, &err) != REEL_OK)
        send_err(c->rs, &err);
    else /* flows, as for marks (docs/web.md): not (flow, tag) pairs */
        send_json(c->rs, 200,
                  json_pack("{s:I, s:I}", "matched", (json_int_t)res.matched, "changed",
                            (json_int_t)res.flows_changed));
out:
    free(ids);
    free(tags);
}

static void api_marks(call_t *c, reel_session_t *s) {
    reel_query_target_t t;
    int64_t *ids = NULL;
    int mark;
    if (target(c, &t, &ids) == 0 && (mark = bool_field(c, "mark", 1)) >= 0) {
        reel_query_result_t res;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_query_mark(s, &t, mark, &res, &err) != REEL_OK)
            send_err(c->rs, &err);
        else
            send_json(c->rs, 200,
                      json_pack("{s:I, s:I}", "matched", (json_int_t)res.matched, "changed",
                                (json_int_t)res.changed));
    }
    free(ids);
}

/* ---- config ---- */

/* The configuration GET .../config shows: defaults, the user file (a bad
 * one is left out), the overlay, and what the proxy recording into the
 * session (pid, or 0) runs with from its command line, as `reel config
 * list` shows it. NULL after sending the error. */
static reel_config_t *effective_config(call_t *c, reel_session_t *s, long pid, char **warnings) {
    reel_config_t *cfg = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    reel_config_load_user(cfg, NULL, &err); /* a bad user file: its layer is left out */
    reel_err_clear(&err);
    if (reel_config_load_overlay(cfg, reel_session_db(s), warnings, &err) != REEL_OK) {
        send_err(c->rs, &err);
        reel_config_free(cfg);
        return NULL;
    }
    reel_config_apply_running(cfg, reel_session_db(s), pid != 0);
    return cfg;
}

static void api_config_get(call_t *c, reel_session_t *s) {
    char *warnings = NULL;
    long pid = reel_session_recorder_pid(s);
    reel_config_t *cfg = effective_config(c, s, pid, &warnings);
    if (cfg == NULL) {
        free(warnings);
        return;
    }
    json_t *arr = json_array();
    for (const reel_option_t *o = reel_options(); o->name; o++) {
        reel_layer layer;
        const char *v = reel_config_get(cfg, o->name, &layer);
        char *accepts = reel_option_describe(o);
        json_t *jv = json_string(v);
        json_array_append_new(arr,
                              json_pack("{s:s, s:o, s:s, s:s, s:s, s:s}", "name", o->name, "value",
                                        jv ? jv : json_string(""), "layer", reel_layer_name(layer),
                                        "help", o->help, "accepts", accepts, "default", o->def));
        free(accepts);
    }
    send_json(c->rs, 200,
              json_pack("{s:o, s:o, s:o}", "options", arr, "warnings",
                        warnings ? json_string(warnings) : json_null(), "recording_pid",
                        pid ? json_integer(pid) : json_null()));
    free(warnings);
    reel_config_free(cfg);
}

/* The answer to a change of key: what was stored (canon; NULL: unset),
 * and the effective value and layer GET now shows. When the proxy
 * recording into the session runs key from its command line (layer cli),
 * that beats the overlay until it stops, and the answer says so. */
static void config_changed(call_t *c, reel_session_t *s, const char *key, const char *canon) {
    long pid = reel_session_recorder_pid(s);
    reel_config_t *cfg = effective_config(c, s, pid, NULL);
    if (cfg == NULL)
        return;
    reel_layer layer;
    const char *v = reel_config_get(cfg, key, &layer);
    json_t *ev = json_string(v);
    json_t *o = json_pack("{s:s, s:o, s:s, s:o, s:o}", "name", key, "value",
                          canon ? json_string(canon) : json_null(), "layer", reel_layer_name(layer),
                          "effective", ev ? ev : json_string(""), "recording_pid",
                          pid ? json_integer(pid) : json_null());
    if (layer == REEL_LAYER_CLI) {
        char *note = reel_asprintf(
            "the proxy recording into '%s' (pid %ld) runs with %s = %s from its command line "
            "(--set or --listen), which takes precedence over the overlay: it keeps that value "
            "until it stops",
            reel_session_name(s), pid, key, v);
        json_t *jn = json_string(note);
        json_object_set_new(o, "note", jn ? jn : json_string("the running proxy keeps its value"));
        free(note);
    } else if (pid && strncmp(key, "redact_", 7) != 0 && !reel_option_is_hot(key)) {
        /* as `reel config S set` says it (redact_*: read by reel export, not
         * by the proxy, so nothing waits for a start) */
        char *note = reel_asprintf("%s applies at the next start: the proxy recording into '%s' "
                                   "(pid %ld) keeps its current value until then",
                                   key, reel_session_name(s), pid);
        json_t *jn = json_string(note);
        json_object_set_new(o, "note", jn ? jn : json_string("applies at the next start"));
        free(note);
    }
    send_json(c->rs, 200, o);
    reel_config_free(cfg);
}

/* Options the web API may neither set nor unset: on_segment_closed runs a
 * shell command (as this user, at every segment close), so a token that
 * leaked would be code execution. Only `reel config` on the command line
 * changes them. No other option runs a program or writes a file: the one
 * path among them, upstream_trusted_ca, is only read, and must hold PEM
 * certificates. */
static const char *const CLI_ONLY_OPTIONS[] = {"on_segment_closed", NULL};

static void api_config_set(call_t *c, reel_session_t *s) {
    const char *key = json_string_value(json_object_get(c->in, "name"));
    json_t *jv = json_object_get(c->in, "value");
    reel_err_t err;
    reel_err_clear(&err);
    for (int i = 0; key && CLI_ONLY_OPTIONS[i]; i++)
        if (strcmp(key, CLI_ONLY_OPTIONS[i]) == 0) {
            reel__web_error(c->rs, 403,
                            "%s runs a command, so the web UI cannot change it: use "
                            "`reel config %s set %s ...` on the command line",
                            key, reel_session_name(s), key);
            return;
        }
    if (key == NULL || jv == NULL) {
        /* no "value" at all is not an unset: null says that */
        reel__web_error(c->rs, 400, "expected {\"name\": KEY, \"value\": VALUE or null}");
        return;
    }
    /* a JSON number or boolean is taken as its text, as typed on the CLI */
    char num[32];
    const char *text = json_string_value(jv);
    if (json_is_integer(jv)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(jv));
        text = num;
    } else if (json_is_boolean(jv)) {
        text = json_is_true(jv) ? "true" : "false";
    } else if (text == NULL && !json_is_null(jv)) {
        reel__web_error(c->rs, 400,
                        "\"value\" must be a string, a whole number, true, false or null");
        return;
    }
    if (json_is_null(jv)) { /* unset */
        if (reel_overlay_unset(reel_session_db(s), key, NULL, &err) != REEL_OK)
            send_err(c->rs, &err);
        else if (reel_option_find(key) == NULL) /* an ignored row of another version */
            send_json(c->rs, 200, json_pack("{s:s, s:n}", "name", key, "value"));
        else
            config_changed(c, s, key, NULL);
        return;
    }
    /* checked as `reel config set` checks it: a CA file must be there now */
    char *canon = NULL;
    if (reel_config_validate_set(key, text, &canon, &err) != REEL_OK ||
        reel_overlay_set(reel_session_db(s), key, canon, NULL, &err) != REEL_OK)
        send_err(c->rs, &err);
    else
        config_changed(c, s, key, canon);
    free(canon);
}

/* ---- export ---- */

/* The export's output when the request can be cancelled: writes go to the
 * temporary file until the cancel flag is set, then fail, and reel_export
 * stops at the end of the flow it is writing. */
typedef struct {
    FILE *to;
    const atomic_int *cancel;
} cut_out_t;

static ssize_t cut_out_write(void *cookie, const char *buf, size_t n) {
    cut_out_t *k = cookie;
    if (atomic_load(k->cancel)) {
        errno = ECANCELED;
        return 0; /* fopencookie: 0 is the error */
    }
    return fwrite(buf, 1, n, k->to) == n ? (ssize_t)n : 0;
}

static void api_export(call_t *c, reel_session_t *s) {
    char *fmt = reel__web_param(c->rq->query, "format");
    char *filter = reel__web_param(c->rq->query, "filter");
    char *ids = reel__web_param(c->rq->query, "ids");
    char *redact = reel__web_param(c->rq->query, "redact");
    reel_redact_t *rules = NULL;
    reel_buf_t fb, idb;
    reel_buf_init(&fb, 0);
    reel_buf_init(&idb, 0);
    FILE *f = NULL;
    int format = reel_export_format_parse(fmt ? fmt : "har");
    if (format != REEL_EXPORT_HAR && format != REEL_EXPORT_NDJSON) {
        reel__web_error(c->rs, 400, "format must be har or ndjson");
        goto out;
    }
    if (redact && strcmp(redact, "0") != 0 && strcmp(redact, "1") != 0) {
        reel__web_error(c->rs, 400, "redact must be 0 or 1");
        goto out;
    }
    if (ids && filter) { /* as tags and marks refuse it (target) */
        reel__web_error(c->rs, 400, "give ids or filter, not both");
        goto out;
    }
    if (ids) { /* a selection, as a JSON array; ids= (none) is no selection: 400 */
        char *p = ids, *end = NULL;
        size_t n = 0;
        reel_buf_puts(&idb, "[");
        for (;; p = end + 1) {
            errno = 0;
            long long lo = strtoll(p, &end, 10), hi = lo;
            if (end != p && *end == '-') { /* a range N-M */
                char *q = end + 1;
                hi = strtoll(q, &end, 10);
                if (end == q)
                    hi = 0;
            }
            /* (an id past INT64_MAX, clamped to it by strtoll, is none) */
            if (end == p || errno == ERANGE || lo <= 0 || hi < lo || (*end && *end != ',') ||
                (unsigned long long)(hi - lo) >= IDS_MAX - n) {
                reel__web_error(c->rs, 400, "ids: 1 to %d comma-separated flow ids or ranges N-M",
                                IDS_MAX);
                goto out;
            }
            for (long long v = lo;; v++) { /* (v <= hi never fails at INT64_MAX) */
                reel_buf_printf(&idb, "%s%lld", n++ ? "," : "", v);
                if (v == hi)
                    break;
            }
            if (*end == '\0')
                break;
        }
        reel_buf_append(&idb, "]", 2); /* (with its NUL) */
    } else if (filter) {
        reel_buf_puts(&fb, filter);
    }
    if (redact && strcmp(redact, "1") == 0) { /* as reel export --redact */
        char *warning = NULL;
        rules = reel_export_redact_rules(s, &warning);
        if (warning) /* the defaults and the session's rules still apply */
            fprintf(stderr, "reel web: export of '%s' with --redact: %s\n", reel_session_name(s),
                    warning);
        free(warning);
    }
    if ((f = tmpfile()) == NULL) {
        reel__web_error(c->rs, 500, "tmpfile: %s", strerror(errno));
        goto out;
    }
    reel_export_opts_t o = {.format = (reel_export_format)format,
                            .filter = fb.len ? (const char *)fb.data : NULL,
                            .ids_json = idb.len ? (const char *)idb.data : NULL,
                            .redact = rules,
                            .creator_version = REEL_VERSION};
    reel_export_stats_t st;
    reel_err_t err;
    reel_err_clear(&err);
    cut_out_t k = {.to = f, .cancel = c->rq->cancel};
    FILE *out =
        k.cancel ? fopencookie(&k, "w", (cookie_io_functions_t){.write = cut_out_write}) : NULL;
    reel_rc rc = reel_export(s, out ? out : f, &o, &st, &err);
    if (out && fclose(out) != 0 && rc == REEL_OK) /* flushed into f */
        rc = reel_err_errno(&err, REEL_IO, errno ? errno : EIO, "writing the export");
    if (rc != REEL_OK) {
        send_err(c->rs, &err);
        goto out;
    }
    c->rs->status = 200;
    c->rs->type = format == REEL_EXPORT_HAR ? "application/json" : "application/x-ndjson";
    c->rs->headers =
        reel_asprintf("Content-Disposition: attachment; filename=\"%s.%s\"\r\n",
                      reel_session_name(s), format == REEL_EXPORT_HAR ? "har" : "ndjson");
    c->rs->file = f;
    f = NULL;
out:
    if (f)
        fclose(f);
    reel_buf_free(&fb);
    reel_buf_free(&idb);
    reel_redact_free(rules);
    free(fmt);
    free(filter);
    free(ids);
    free(redact);
}

/* ---- live updates ---- */

static uint64_t row_sig(const reel_query_flow_t *f) {
    uint64_t h = 1469598103934665603ull;
    int64_t v[] = {f->status, f->end_us,         f->messages,    f->response_body_size,
                   f->marked, (int64_t)f->ntags, f->annotations, f->request_body_size};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        h = (h ^ (uint64_t)v[i]) * 1099511628211ull;
    for (const char *p = f->state ? f->state : ""; *p; p++)
        h = (h ^ (uint64_t)(unsigned char)*p) * 1099511628211ull;
    return h;
}

/* A flow's row; its id: line is the highest new flow's id sent so far, so
 * a browser reconnecting with it as Last-Event-ID gets the flows after it
 * (as with after=). */
static void sse_event(reel_buf_t *out, const reel__web_sse_t *e, const reel_query_flow_t *f) {
    json_t *j = row_json(f);
    char *s = json_dumps(j, JSON_COMPACT);
    reel_buf_printf(out, "event: flow\nid: %lld\ndata: %s\n\n", (long long)e->last_id,
                    s ? s : "{}");
    free(s);
    json_decref(j);
}

/* Tracks flow id, sent while open. Beyond PEND_MAX the id only widens the
 * range the overflow walk covers, so memory stays bounded however many
 * flows are open at once; returns 0 then. */
static int pend_add(reel__web_sse_t *e, int64_t id, uint64_t sig) {
    if (e->npend >= PEND_MAX) {
        if (e->ovf_hi == 0 && e->walk_us == 0)
            e->walk_prev_us = reel_now_us();
        if (e->ovf_hi == 0 || id < e->ovf_lo)
            e->ovf_lo = id;
        if (id > e->ovf_hi)
            e->ovf_hi = id;
        return 0;
    }
    e->pend = reel_realloc(e->pend, (e->npend + 1) * sizeof *e->pend);
    e->sig = reel_realloc(e->sig, (e->npend + 1) * sizeof *e->sig);
    e->pend[e->npend] = id;
    e->sig[e->npend++] = sig;
    return 1;
}

static int pend_has(const reel__web_sse_t *e, int64_t id) {
    for (size_t i = 0; i < e->npend; i++)
        if (e->pend[i] == id)
            return 1;
    return 0;
}

/* One step of the walk over the flows pend had no room for: up to
 * SCAN_PAGE rows of ovf_lo..ovf_hi by id (one index seek). Their signatures
 * were not kept, so one that has ended since the walk before started (less
 * WALK_SLACK_US: the index shows an end a little after it happened) is
 * sent again, and one still open is sent and tracked once pend has room;
 * the rest make up the next walk's range. A flow may so be sent a few
 * times more than it changed: the UI takes a row again as an update. */
static void ovf_walk(reel_session_t *s, reel__web_sse_t *e, reel_buf_t *out, reel_err_t *err) {
    if (e->ovf_hi == 0)
        return;
    if (e->walk_us == 0) {
        int64_t now = reel_now_us();
        if (now - e->walk_prev_us < WALK_EVERY_US)
            return;
        e->walk_us = now;
        e->scan_at = e->ovf_lo - 1;
    }
    reel_query_opts_t q = {.sort = REEL_QUERY_SORT_ID, .limit = SCAN_PAGE, .after_id = e->scan_at};
    reel_query_page_t page = {0};
    if (reel_query_flows(s, &q, &page, err) != REEL_OK) {
        reel_query_page_free(&page);
        return;
    }
    int done = !page.more;
    for (size_t i = 0; i < page.n; i++) {
        const reel_query_flow_t *f = &page.rows[i];
        if (f->id > e->ovf_hi) {
            done = 1;
            break;
        }
        e->scan_at = f->id;
        if (f->state && strcmp(f->state, "open") == 0) {
            if (pend_has(e, f->id))
                continue;
            if (e->npend < PEND_MAX) {
                sse_event(out, e, f);
                pend_add(e, f->id, row_sig(f));
                continue;
            }
            if (e->next_hi == 0)
                e->next_lo = f->id;
            e->next_hi = f->id;
        } else if (f->end_us == REEL_QUERY_NULL || f->end_us >= e->walk_prev_us - WALK_SLACK_US) {
            sse_event(out, e, f);
        }
    }
    if (e->scan_at >= e->ovf_hi)
        done = 1;
    reel_query_page_free(&page);
    if (done) {
        e->ovf_lo = e->next_lo;
        e->ovf_hi = e->next_hi;
        e->next_lo = e->next_hi = 0;
        e->walk_prev_us = e->walk_us;
        e->walk_us = 0;
    }
}

int reel__web_sse_tick(const reel__web_ctx_t *w, reel__web_sse_t *e, reel_buf_t *out) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (!e->id_sent) {
        /* where the stream starts, before any flow: a reconnect before the
         * first event then goes on from there, not from the reconnect */
        reel_buf_printf(out, "id: %lld\n\n", (long long)e->last_id);
        e->id_sent = 1;
    }
    if (reel_session_open(w->home, e->session, REEL_OPEN_READ, &s, &err) != REEL_OK)
        return err.code == REEL_NOTFOUND ? -1 : 0;
    /* flows seen open: send them again when they changed */
    for (size_t i = 0; i < e->npend;) {
        reel_query_flow_t f;
        memset(&f, 0, sizeof f);
        if (reel_query_flow(s, e->pend[i], &f, &err) != REEL_OK) {
            e->pend[i] = e->pend[--e->npend];
            e->sig[i] = e->sig[e->npend];
            continue;
        }
        uint64_t sig = row_sig(&f);
        if (sig != e->sig[i])
            sse_event(out, e, &f);
        e->sig[i] = sig;
        int open = f.state && strcmp(f.state, "open") == 0;
        reel_query_flow_clear(&f);
        if (!open) {
            e->pend[i] = e->pend[--e->npend];
            e->sig[i] = e->sig[e->npend];
            continue;
        }
        i++;
    }
    ovf_walk(s, e, out, &err);
    reel_query_opts_t q = {.sort = REEL_QUERY_SORT_ID, .limit = 200, .after_id = e->last_id};
    reel_query_page_t page = {0};
    if (reel_query_flows(s, &q, &page, &err) == REEL_OK) {
        for (size_t i = 0; i < page.n; i++) {
            const reel_query_flow_t *f = &page.rows[i];
            e->last_id = f->id;
            sse_event(out, e, f);
            if (f->state && strcmp(f->state, "open") == 0)
                pend_add(e, f->id, row_sig(f));
        }
    }
    reel_query_page_free(&page);
    reel_session_close(s);
    return 0;
}

void reel__web_sse_free(reel__web_sse_t *e) {
    if (e == NULL)
        return;
    free(e->session);
    free(e->pend);
    free(e->sig);
    free(e);
}

static void api_events(call_t *c, reel_session_t *s, const char *name) {
    int64_t after;
    if (int_param(c, "after", -1, -1, INT64_MAX, &after) != 0)
        return;
    /* A browser reconnecting sends the last id: line it got, the highest
     * new flow's id, so the flows recorded while it was away come first.
     * Not one of ours (digits): the stream starts as asked. */
    const char *le = c->rq->last_event_id;
    if (le && *le && strlen(le) <= 18 && strspn(le, "0123456789") == strlen(le))
        after = strtoll(le, NULL, 10);
    if (after < 0) { /* from now on */
        reel_query_opts_t last = {.sort = REEL_QUERY_SORT_ID, .desc = 1, .limit = 1};
        reel_query_page_t page = {0};
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_query_flows(s, &last, &page, &err) != REEL_OK) {
            send_err(c->rs, &err);
            return;
        }
        after = page.n ? page.rows[0].id : 0;
        reel_query_page_free(&page);
    }
    reel__web_sse_t *e = reel_calloc(1, sizeof *e);
    e->session = reel_strdup(name);
    e->last_id = after;
    c->rs->status = 200;
    c->rs->type = "text/event-stream";
    c->rs->sse = e;
}

/* ---- routing ---- */

int reel__web_api_long(const reel__web_req_t *rq) {
    const char *p = rq->path + 5; /* after "/api/" */
    if (strcmp(p, "sessions") == 0) {
        char *brief = reel__web_param(rq->query, "brief");
        int counts = brief == NULL || strcmp(brief, "1") != 0; /* as api_sessions reads it */
        free(brief);
        return counts;
    }
    if (strncmp(p, "sessions/", 9) != 0)
        return 0;
    const char *what = strchr(p + 9, '/'); /* after the session's name */
    if (what == NULL || strchr(++what, '/'))
        return 0;
    if (strcmp(what, "export") == 0)
        return 1;
    if (strcmp(what, "count") == 0 || strcmp(what, "flows") == 0) {
        char *f = reel__web_param(rq->query, "filter");
        int any = f && f[strspn(f, " \t\r\n")] != '\0'; /* a blank filter is every flow */
        free(f);
        return any;
    }
    if (strcmp(what, "tags") == 0 || strcmp(what, "marks") == 0) {
        json_t *in =
            rq->body_len ? json_loadb((const char *)rq->body, rq->body_len, 0, NULL) : NULL;
        int by_filter = json_is_string(json_object_get(in, "filter"));
        json_decref(in);
        return by_filter;
    }
    return 0;
}

static int method_is(call_t *c, const char *m) {
    int get = strcmp(m, "GET") == 0;
    if (strcmp(c->rq->method, m) == 0 || (get && strcmp(c->rq->method, "HEAD") == 0))
        return 1; /* (a HEAD is answered as its GET, without the content: server.c) */
    char msg[32];
    snprintf(msg, sizeof msg, "use %s here", m);
    reel__web_not_allowed(c->rs, get ? "GET, HEAD" : m, msg);
    return 0;
}

static void route_session(call_t *c) {
    const char *name = c->seg[1];
    if (c->nseg == 2) {
        if (method_is(c, "GET"))
            api_session(c, name);
        return;
    }
    const char *what = c->seg[2];
    if (c->nseg == 3 && strcmp(what, "rename") == 0) {
        if (method_is(c, "POST"))
            api_rename(c, name);
        return;
    }
    if (c->nseg == 3 && strcmp(what, "delete") == 0) {
        if (method_is(c, "POST"))
            api_delete(c, name);
        return;
    }
    /* (a HEAD reads, as its GET does) */
    int write = strcmp(c->rq->method, "GET") != 0 && strcmp(c->rq->method, "HEAD") != 0;
    reel_session_t *s = NULL;
    int64_t id = 0;
    if (c->nseg == 3 && strcmp(what, "flows") == 0) {
        if (method_is(c, "GET") && (s = open_session(c, name, 0)))
            api_flows(c, s);
    } else if (c->nseg == 3 && strcmp(what, "count") == 0) {
        if (method_is(c, "GET") && (s = open_session(c, name, 0)))
            api_count(c, s);
    } else if (c->nseg == 3 && strcmp(what, "events") == 0) {
        if (method_is(c, "GET") && (s = open_session(c, name, 0)))
            api_events(c, s, name);
    } else if (c->nseg == 3 && strcmp(what, "export") == 0) {
        if (method_is(c, "GET") && (s = open_session(c, name, 0)))
            api_export(c, s);
    } else if (c->nseg == 3 && strcmp(what, "tags") == 0) {
        if (method_is(c, "POST") && (s = open_session(c, name, 1)))
            api_tags(c, s);
    } else if (c->nseg == 3 && strcmp(what, "marks") == 0) {
        if (method_is(c, "POST") && (s = open_session(c, name, 1)))
            api_marks(c, s);
    } else if (c->nseg == 3 && strcmp(what, "config") == 0) {
        if ((s = open_session(c, name, write)) == NULL)
            return;
        if (!write)
            api_config_get(c, s);
        else if (strcmp(c->rq->method, "POST") == 0)
            api_config_set(c, s);
        else
            reel__web_not_allowed(c->rs, "GET, HEAD, POST", "use GET or POST here");
    } else if (c->nseg >= 4 && strcmp(what, "flows") == 0) {
        if (flow_id(c, c->seg[3], &id) != 0 || (s = open_session(c, name, write)) == NULL)
            return;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_query_flow_exists(s, id, &err) != REEL_OK) {
            send_err(c->rs, &err);
        } else if (c->nseg == 4) {
            if (method_is(c, "GET"))
                api_flow(c, s, id);
        } else if (c->nseg == 5 && strcmp(c->seg[4], "diff") == 0) {
            if (method_is(c, "GET"))
                api_diff(c, s, id);
        } else if (c->nseg == 5 && strcmp(c->seg[4], "replay") == 0) {
            if (method_is(c, "POST"))
                api_replay(c, s, name, id);
        } else if (c->nseg == 5 && strcmp(c->seg[4], "curl") == 0) {
            if (method_is(c, "GET"))
                api_curl(c, s, id);
        } else if (c->nseg == 5 && strcmp(c->seg[4], "notes") == 0) {
            if (method_is(c, "POST"))
                api_note_add(c, s, id);
        } else if (c->nseg == 6 && strcmp(c->seg[4], "notes") == 0) {
            api_note(c, s, id, c->seg[5]);
        } else if ((c->nseg == 6 || c->nseg == 7) && strcmp(c->seg[4], "body") == 0) {
            int dir = dir_arg(c, c->seg[5]);
            if (dir < 0 || !method_is(c, "GET"))
                ;
            else if (c->nseg == 6)
                api_body(c, s, id, dir);
            else if (strcmp(c->seg[6], "raw") == 0)
                api_raw(c, s, id, dir);
            else
                reel__web_error(c->rs, 404, "no such API");
        } else {
            reel__web_error(c->rs, 404, "no such API");
        }
    } else {
        reel__web_error(c->rs, 404, "no such API");
    }
    reel_session_close(s);
}

void reel__web_api(const reel__web_ctx_t *w, const reel__web_req_t *rq, reel__web_resp_t *rs) {
    call_t c = {.w = w, .rq = rq, .rs = rs};
    const char *p = rq->path + 5; /* after "/api/" */
    while (*p && c.nseg < sizeof c.seg / sizeof *c.seg) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char *seg = reel__web_unescape(p, len, 0);
        if (seg == NULL || seg[0] == '\0') {
            free(seg);
            reel__web_error(rs, 404, "no such API");
            goto out;
        }
        c.seg[c.nseg++] = seg;
        p = slash ? slash + 1 : p + len;
    }
    if (*p) {
        reel__web_error(rs, 404, "no such API");
        goto out;
    }
    if (rq->body_len) {
        json_error_t je;
        c.in = json_loadb((const char *)rq->body, rq->body_len, 0, &je);
        if (c.in == NULL) {
            reel__web_error(rs, 400, "request body is not JSON: %s", je.text);
            goto out;
        }
    }
    if (c.nseg == 1 && strcmp(c.seg[0], "sessions") == 0) {
        if (method_is(&c, "GET"))
            api_sessions(&c);
    } else if (c.nseg >= 2 && strcmp(c.seg[0], "sessions") == 0) {
        route_session(&c);
    } else {
        reel__web_error(rs, 404, "no such API");
    }
out:
    json_decref(c.in);
    for (size_t i = 0; i < c.nseg; i++)
        free(c.seg[i]);
}
