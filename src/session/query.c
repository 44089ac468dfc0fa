/* Queries over a session's index for the user interfaces (query.h). */
#include "session/query.h"

#include "session/flowread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "session/filter.h"
#include "session/journal.h"
#include "session/index.h"

/* ---- errors ---- */

/* The last SQLite error of db as REEL_CORRUPT (the file is damaged) or
 * REEL_DB, "session.db: <message>"; a filter's regex that failed on a flow
 * as REEL_LIMIT, its message as it is. */
static reel_rc db_err(sqlite3 *db, reel_err_t *err) {
    int c = sqlite3_errcode(db) & 0xff;
    if (reel_journal_failed(db)) /* not SQLite's "constraint failed" */
        return reel_err_set(err, REEL_IO, "%s", reel_journal_errmsg(db));
    if (reel_filter_regexp_error(sqlite3_errmsg(db))) /* a filter's regex, not the index */
        return reel_err_set(err, REEL_LIMIT, "%s", sqlite3_errmsg(db));
    return reel_index_db_error(
        err, c == SQLITE_CORRUPT || c == SQLITE_NOTADB ? REEL_CORRUPT : REEL_DB, db);
}

static reel_rc no_flow(reel_session_t *s, int64_t id, reel_err_t *err) {
    return reel_err_set(err, REEL_NOTFOUND, "no flow %lld in session '%s'", (long long)id,
                        reel_session_name(s));
}

static reel_rc prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, reel_err_t *err) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return db_err(db, err);
    return REEL_OK;
}

static char *dup_col(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? reel_strdup((const char *)t) : NULL;
}

static int64_t int_or_null(sqlite3_stmt *st, int i) {
    sqlite3_value *v = sqlite3_column_value(st, i); /* one call, one lock of the db */
    return sqlite3_value_type(v) == SQLITE_NULL ? REEL_QUERY_NULL : sqlite3_value_int64(v);
}

/* ---- flow rows ---- */

/* The columns a reel_query_flow_t is read from, in read_row's order. Tags
 * come NUL-separated so that any stored tag reads back whole. */
#define FLOW_COLS                                                                                  \
    "id, uuid, kind, state, source, start_us, request_end_us, response_start_us, end_us, "         \
    "client_addr, server_addr, scheme, method, host, path, url, http_version, reason, port, "      \
    "status, request_body_size, response_body_size, request_truncated, response_truncated, "       \
    "request_body_dropped, response_body_dropped, request_content_type, response_content_type, "   \
    "error, response_generated, damaged, marked, messages, replay_of, replay_session, "            \
    "client_conn, stream_id, "                                                                     \
    "(SELECT group_concat(tag, char(0)) FROM tags qt WHERE qt.flow_id = flows.id), "               \
    "(SELECT count(*) FROM annotations qa WHERE qa.flow_id = flows.id)"
/* The same without the count of notes (the last column). */
#define FLOW_COLS_NO_COUNT                                                                         \
    "id, uuid, kind, state, source, start_us, request_end_us, response_start_us, end_us, "         \
    "client_addr, server_addr, scheme, method, host, path, url, http_version, reason, port, "      \
    "status, request_body_size, response_body_size, request_truncated, response_truncated, "       \
    "request_body_dropped, response_body_dropped, request_content_type, response_content_type, "   \
    "error, response_generated, damaged, marked, messages, replay_of, replay_session, "            \
    "client_conn, stream_id, "                                                                     \
    "(SELECT group_concat(tag, char(0)) FROM tags qt WHERE qt.flow_id = flows.id)"

/* Scratch space for the tags of the row being read. */
typedef struct {
    char *buf;
    size_t cap;
    const char **v;
    size_t vcap;
} tagbuf_t;

static void tagbuf_free(tagbuf_t *t) {
    free(t->buf);
    free(t->v);
}

/* Fills r from the current row of st (strings borrowed from st and tb). */
static void read_row(sqlite3_stmt *st, reel_query_flow_t *r, tagbuf_t *tb) {
#define TXT(i) ((const char *)sqlite3_column_text(st, (i)))
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->uuid = TXT(1);
    r->kind = TXT(2);
    r->state = TXT(3);
    r->source = TXT(4);
    r->start_us = int_or_null(st, 5);
    r->request_end_us = int_or_null(st, 6);
    r->response_start_us = int_or_null(st, 7);
    r->end_us = int_or_null(st, 8);
    r->client_addr = TXT(9);
    r->server_addr = TXT(10);
    r->scheme = TXT(11);
    r->method = TXT(12);
    r->host = TXT(13);
    r->path = TXT(14);
    r->url = TXT(15);
    r->http_version = TXT(16);
    r->reason = TXT(17);
    r->port = int_or_null(st, 18);
    r->status = int_or_null(st, 19);
    r->request_body_size = sqlite3_column_int64(st, 20);
    r->response_body_size = sqlite3_column_int64(st, 21);
    r->request_truncated = sqlite3_column_int(st, 22) != 0;
    r->response_truncated = sqlite3_column_int(st, 23) != 0;
    r->request_body_dropped = sqlite3_column_int64(st, 24);
    r->response_body_dropped = sqlite3_column_int64(st, 25);
    r->request_content_type = TXT(26);
    r->response_content_type = TXT(27);
    r->error = TXT(28);
    r->response_generated = sqlite3_column_int(st, 29) != 0;
    r->damaged = sqlite3_column_int(st, 30) != 0;
    r->marked = sqlite3_column_int(st, 31) != 0;
    r->messages = sqlite3_column_int64(st, 32);
    r->replay_of = int_or_null(st, 33);
    r->replay_session = TXT(34);
    r->client_conn = int_or_null(st, 35);
    r->stream_id = int_or_null(st, 36);
    r->annotations = sqlite3_column_count(st) > 38 ? sqlite3_column_int64(st, 38) : REEL_QUERY_NULL;
#undef TXT
    const char *tags = (const char *)sqlite3_column_text(st, 37);
    size_t len = (size_t)sqlite3_column_bytes(st, 37);
    if (tags == NULL)
        return;
    if (tb->cap < len + 1) {
        tb->cap = len + 1;
        tb->buf = reel_realloc(tb->buf, tb->cap);
    }
    memcpy(tb->buf, tags, len);
    tb->buf[len] = '\0';
    size_t n = 0;
    for (size_t i = 0; i <= len; i += strlen(tb->buf + i) + 1) {
        if (n == tb->vcap) {
            tb->vcap = tb->vcap ? tb->vcap * 2 : 8;
            tb->v = reel_realloc(tb->v, tb->vcap * sizeof *tb->v);
        }
        tb->v[n++] = tb->buf + i;
    }
    r->tags = tb->v;
    r->ntags = n;
}

static char *dup_or_null(const char *s) {
    return s ? reel_strdup(s) : NULL;
}

/* Deep copy of src into dst; reel_query_flow_clear frees it. */
static void copy_row(reel_query_flow_t *dst, const reel_query_flow_t *src) {
    *dst = *src;
    const char **strs[] = {&dst->uuid,
                           &dst->kind,
                           &dst->state,
                           &dst->source,
                           &dst->client_addr,
                           &dst->server_addr,
                           &dst->scheme,
                           &dst->method,
                           &dst->host,
                           &dst->path,
                           &dst->url,
                           &dst->http_version,
                           &dst->reason,
                           &dst->request_content_type,
                           &dst->response_content_type,
                           &dst->error,
                           &dst->replay_session};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        *strs[i] = dup_or_null(*strs[i]);
    if (src->ntags) {
        char **v = reel_calloc(src->ntags, sizeof *v);
        for (size_t i = 0; i < src->ntags; i++)
            v[i] = reel_strdup(src->tags[i]);
        dst->tags = (const char *const *)v;
    } else {
        dst->tags = NULL;
    }
}

void reel_query_flow_clear(reel_query_flow_t *f) {
    if (f == NULL)
        return;
    const char *strs[] = {f->uuid,
                          f->kind,
                          f->state,
                          f->source,
                          f->client_addr,
                          f->server_addr,
                          f->scheme,
                          f->method,
                          f->host,
                          f->path,
                          f->url,
                          f->http_version,
                          f->reason,
                          f->request_content_type,
                          f->response_content_type,
                          f->error,
                          f->replay_session};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free((char *)strs[i]);
    for (size_t i = 0; i < f->ntags; i++)
        free((char *)f->tags[i]);
    free((void *)f->tags);
    memset(f, 0, sizeof *f);
}

/* ---- the flow list ---- */

static const char *const sort_names[] = {"id", "start", "host", "status"};
static const char *const sort_cols[] = {"id", "start_us", "host", "status"};

reel_rc reel_query_sort_parse(const char *name, reel_query_sort *out, reel_err_t *err) {
    for (size_t i = 0; i < sizeof sort_names / sizeof sort_names[0]; i++) {
        if (strcmp(name, sort_names[i]) == 0) {
            *out = (reel_query_sort)i;
            return REEL_OK;
        }
    }
    return reel_err_set(err, REEL_INVALID,
                        "cannot sort on '%s': sorts are id, start, host and status", name);
}

void reel_query_cursor_of(const reel_query_flow_t *row, reel_query_sort sort,
                          reel_query_cursor_t *out) {
    memset(out, 0, sizeof *out);
    out->id = row->id;
    if (sort == REEL_QUERY_SORT_START) {
        out->num = row->start_us;
    } else if (sort == REEL_QUERY_SORT_HOST) {
        out->str = row->host;
        out->null = row->host == NULL;
    } else if (sort == REEL_QUERY_SORT_STATUS) {
        out->num = row->status;
        out->null = row->status == REEL_QUERY_NULL;
    }
}

/* Rows go to cb; ids_only selects just the id column (row has only id). */
typedef struct {
    reel_query_flow_cb cb;
    void *ctx;
    int ids_only;
} sink_t;

static int in_ids(const int64_t *ids, size_t n, int64_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == id;
}

/* Where the rows after the cursor are, as one or two WHERE terms run one
 * after the other, each an index range: SQLite puts NULLs first in
 * ascending order, and a single "(col, id) > (?, ?) OR col IS NULL" would
 * be a scan of the whole index instead of a seek. @ stands for the column.
 * Placeholders: the cursor's value (when not NULL), then its id. */
typedef struct {
    const char *term[2];
    int binds_value[2]; /* the term binds the cursor's value before its id */
    int binds_id[2];
} keyset_t;

static keyset_t keyset_for(reel_query_sort sort, int desc, int after_null) {
    keyset_t k = {{NULL, NULL}, {0, 0}, {0, 0}};
    if (sort == REEL_QUERY_SORT_ID) {
        k.term[0] = desc ? "id < ?" : "id > ?";
        k.binds_id[0] = 1;
    } else if (sort == REEL_QUERY_SORT_START) { /* NOT NULL */
        k.term[0] = desc ? "(start_us, id) < (?, ?)" : "(start_us, id) > (?, ?)";
        k.binds_value[0] = k.binds_id[0] = 1;
    } else if (!desc && after_null) { /* the rest of the NULLs, then the values */
        k.term[0] = "@ IS NULL AND id > ?";
        k.binds_id[0] = 1;
        k.term[1] = "@ IS NOT NULL";
    } else if (!desc) {
        k.term[0] = "(@, id) > (?, ?)";
        k.binds_value[0] = k.binds_id[0] = 1;
    } else if (after_null) { /* descending: NULLs come last */
        k.term[0] = "@ IS NULL AND id < ?";
        k.binds_id[0] = 1;
    } else {
        k.term[0] = "(@, id) < (?, ?)";
        k.binds_value[0] = k.binds_id[0] = 1;
        k.term[1] = "@ IS NULL";
    }
    return k;
}

/* SQLite's progress handler while a cancellable walk runs: non-zero stops
 * the statement with SQLITE_INTERRUPT. */
static int cancel_progress(void *p) {
    return atomic_load((const atomic_int *)p) != 0;
}

/* Starts (on) or ends watching q->cancel on db: a count or a filter whose
 * SQL scans millions of rows without returning one checks it every few
 * thousand VM steps. */
static void watch_cancel(sqlite3 *db, const reel_query_opts_t *q, int on) {
    if (q && q->cancel)
        sqlite3_progress_handler(db, on ? 4096 : 0, on ? cancel_progress : NULL,
                                 on ? (void *)q->cancel : NULL);
}

static int cancelled(const reel_query_opts_t *q) {
    return q && q->cancel && atomic_load(q->cancel);
}

static reel_rc cancel_err(reel_err_t *err) {
    return reel_err_set(err, REEL_INTERRUPTED, "cancelled: nobody waits for the answer");
}

static reel_rc run(reel_session_t *s, const reel_query_opts_t *q, const sink_t *k,
                   reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3 *db = reel_session_db(s);
    reel_filter_t *f = NULL;
    sqlite3_stmt *st = NULL;
    sqlite3_value *after = NULL; /* the cursor flow's sort value */
    reel_buf_t sql;
    reel_buf_init(&sql, 0);
    tagbuf_t tb = {0};
    if ((unsigned)q->sort > REEL_QUERY_SORT_STATUS) {
        rc = reel_err_set(err, REEL_INVALID, "unknown sort %d", (int)q->sort);
        goto out;
    }
    if (cancelled(q)) {
        rc = cancel_err(err);
        goto out;
    }
    if ((rc = reel_filter_compile(q->filter, &f, err)) != REEL_OK)
        goto out;
    watch_cancel(db, q, 1);
    const char *col = sort_cols[q->sort];
    int by_id = q->sort == REEL_QUERY_SORT_ID;
    int64_t after_id = q->cursor ? q->cursor->id : q->after_id;
    if (q->cursor && !by_id) { /* the value is in the cursor: "SELECT ?" makes it a value */
        if ((rc = prepare(db, "SELECT ?", &st, err)) != REEL_OK)
            goto out;
        if (q->cursor->null)
            sqlite3_bind_null(st, 1);
        else if (q->sort == REEL_QUERY_SORT_HOST)
            sqlite3_bind_text(st, 1, q->cursor->str ? q->cursor->str : "", -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, 1, q->cursor->num);
        if (sqlite3_step(st) == SQLITE_ROW)
            after = sqlite3_value_dup(sqlite3_column_value(st, 0));
        else
            rc = db_err(db, err);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != REEL_OK)
            goto out;
        if (after == NULL)
            abort(); /* out of memory */
    } else if (q->after_id && !by_id) {
        char *look = reel_asprintf("SELECT %s FROM flows WHERE id = ?", col);
        rc = prepare(db, look, &st, err);
        free(look);
        if (rc != REEL_OK)
            goto out;
        sqlite3_bind_int64(st, 1, q->after_id);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            after = sqlite3_value_dup(sqlite3_column_value(st, 0));
        else if (step == SQLITE_DONE)
            rc = no_flow(s, q->after_id, err);
        else
            rc = db_err(db, err);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != REEL_OK)
            goto out;
        if (after == NULL)
            abort(); /* out of memory */
    }
    keyset_t ks = {{"1", NULL}, {0, 0}, {0, 0}}; /* no cursor: one pass over everything */
    if (q->cursor || after_id) /* a cursor's id may be 0: before every flow of its value */
        ks = keyset_for(q->sort, q->desc, after && sqlite3_value_type(after) == SQLITE_NULL);
    int nseg = ks.term[1] ? 2 : 1;
    int only = q->only_ids != NULL;
    int spool = !only && reel_filter_needs_spool(f);
    /* LIMIT/OFFSET in SQL when SQL alone decides the rows, else counted here */
    int sql_window = !only && !spool && nseg == 1 && (q->limit || q->offset);
    const char *dir = q->desc ? "DESC" : "ASC";
    size_t skipped = 0, sent = 0;
    for (int seg = 0; seg < nseg; seg++) {
        reel_buf_reset(&sql);
        reel_buf_printf(&sql, "SELECT %s FROM flows WHERE %s",
                        k->ids_only        ? "id"
                        : q->no_note_count ? FLOW_COLS_NO_COUNT
                                           : FLOW_COLS,
                        reel_filter_sql(f));
        if (q->has_since)
            reel_buf_puts(&sql, " AND start_us >= ?");
        if (only)
            reel_buf_puts(&sql, " AND id BETWEEN ? AND ?");
        if (q->open_only) /* (its first term as flows_unfinished's WHERE: that index) */
            reel_buf_puts(&sql, " AND state != 'complete' AND state = 'open'");
        reel_buf_puts(&sql, " AND (");
        for (const char *t = ks.term[seg]; *t; t++) {
            if (*t == '@')
                reel_buf_puts(&sql, col);
            else
                reel_buf_append(&sql, t, 1);
        }
        reel_buf_puts(&sql, ")");
        if (by_id)
            reel_buf_printf(&sql, " ORDER BY id %s", dir);
        else
            reel_buf_printf(&sql, " ORDER BY %s %s, id %s", col, dir, dir);
        if (sql_window)
            reel_buf_puts(&sql, " LIMIT ? OFFSET ?");
        if ((rc = prepare(db, (const char *)sql.data, &st, err)) != REEL_OK)
            goto out;
        int i = reel_filter_bind(f, st, 1);
        if (i < 0) {
            rc = db_err(db, err);
            goto out;
        }
        if (q->has_since)
            sqlite3_bind_int64(st, i++, q->since_us);
        if (only) {
            sqlite3_bind_int64(st, i++, q->n_only_ids ? q->only_ids[0] : 1);
            sqlite3_bind_int64(st, i++, q->n_only_ids ? q->only_ids[q->n_only_ids - 1] : 0);
        }
        if (ks.binds_value[seg])
            sqlite3_bind_value(st, i++, after);
        if (ks.binds_id[seg])
            sqlite3_bind_int64(st, i++, after_id);
        if (sql_window) {
            sqlite3_bind_int64(st, i++, q->limit ? (sqlite3_int64)q->limit : -1);
            sqlite3_bind_int64(st, i++, (sqlite3_int64)q->offset);
        }
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            if (cancelled(q)) {
                rc = cancel_err(err);
                goto out;
            }
            int64_t id = sqlite3_column_int64(st, 0);
            if (only && !in_ids(q->only_ids, q->n_only_ids, id))
                continue;
            if (spool) {
                int match = 0;
                if ((rc = reel_filter_match_flow(f, s, (uint64_t)id, &match, err)) != REEL_OK)
                    goto out;
                if (!match)
                    continue;
            }
            if (!sql_window && skipped < q->offset) {
                skipped++;
                continue;
            }
            reel_query_flow_t row;
            if (k->ids_only) {
                memset(&row, 0, sizeof row);
                row.id = id;
            } else {
                read_row(st, &row, &tb);
            }
            sent++;
            if (k->cb(k->ctx, &row) != 0)
                goto out;
            if (!sql_window && q->limit && sent == q->limit)
                goto out;
        }
        if (step != SQLITE_DONE) {
            rc = step == SQLITE_INTERRUPT && cancelled(q) ? cancel_err(err) : db_err(db, err);
            goto out;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
out:
    watch_cancel(db, q, 0);
    sqlite3_finalize(st);
    sqlite3_value_free(after);
    reel_filter_free(f);
    reel_buf_free(&sql);
    tagbuf_free(&tb);
    return rc;
}

reel_rc reel_query_flows_each(reel_session_t *s, const reel_query_opts_t *q, reel_query_flow_cb cb,
                              void *ctx, reel_err_t *err) {
    sink_t k = {cb, ctx, 0};
    return run(s, q, &k, err);
}

typedef struct {
    reel_query_page_t *page;
    size_t cap;
} page_ctx_t;

static int page_add(void *ctx, const reel_query_flow_t *row) {
    page_ctx_t *p = ctx;
    if (p->page->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->page->rows = reel_realloc(p->page->rows, p->cap * sizeof *p->page->rows);
    }
    copy_row(&p->page->rows[p->page->n++], row);
    return 0;
}

reel_rc reel_query_flows(reel_session_t *s, const reel_query_opts_t *q, reel_query_page_t *page,
                         reel_err_t *err) {
    memset(page, 0, sizeof *page);
    if (q->limit < 1 || q->limit > REEL_QUERY_PAGE_MAX)
        return reel_err_set(err, REEL_INVALID, "a page holds 1 to %d flows, not %zu",
                            REEL_QUERY_PAGE_MAX, q->limit);
    reel_query_opts_t one_more = *q; /* tells whether there is a next page */
    one_more.limit = q->limit + 1;
    page_ctx_t p = {page, 0};
    sink_t k = {page_add, &p, 0};
    reel_rc rc = run(s, &one_more, &k, err);
    if (rc != REEL_OK) {
        reel_query_page_free(page);
        return rc;
    }
    if (page->n > q->limit) {
        reel_query_flow_clear(&page->rows[--page->n]);
        page->more = 1;
    }
    return REEL_OK;
}

void reel_query_page_free(reel_query_page_t *page) {
    if (page == NULL)
        return;
    for (size_t i = 0; i < page->n; i++)
        reel_query_flow_clear(&page->rows[i]);
    free(page->rows);
    memset(page, 0, sizeof *page);
}

typedef struct {
    int64_t *ids;
    size_t n, cap;
} ids_ctx_t;

static int ids_add(void *ctx, const reel_query_flow_t *row) {
    ids_ctx_t *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->ids = reel_realloc(c->ids, c->cap * sizeof *c->ids);
    }
    c->ids[c->n++] = row->id;
    return 0;
}

reel_rc reel_query_ids(reel_session_t *s, const reel_query_opts_t *q, int64_t **out, size_t *n,
                       reel_err_t *err) {
    ids_ctx_t c = {0};
    sink_t k = {ids_add, &c, 1};
    *out = NULL;
    *n = 0;
    reel_rc rc = run(s, q, &k, err);
    if (rc != REEL_OK) {
        free(c.ids);
        return rc;
    }
    *out = c.ids;
    *n = c.n;
    return REEL_OK;
}

static int count_one(void *ctx, const reel_query_flow_t *row) {
    (void)row;
    (*(int64_t *)ctx)++;
    return 0;
}

reel_rc reel_query_count(reel_session_t *s, const reel_query_opts_t *q, int64_t *n,
                         reel_err_t *err) {
    *n = 0;
    if (cancelled(q))
        return cancel_err(err);
    reel_filter_t *f = NULL;
    reel_rc rc = q ? reel_filter_compile(q->filter, &f, err) : REEL_OK;
    if (rc != REEL_OK)
        return rc;
    if (q && (reel_filter_needs_spool(f) || q->only_ids || q->limit || q->offset || q->after_id ||
              q->cursor || q->open_only)) {
        reel_filter_free(f); /* the rows themselves decide */
        sink_t k = {count_one, n, 1};
        return run(s, q, &k, err);
    }
    /* SQL alone decides: one count(*) */
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    char *sql = reel_asprintf("SELECT count(*) FROM flows WHERE %s%s", reel_filter_sql(f),
                              q && q->has_since ? " AND start_us >= ?" : "");
    if ((rc = prepare(db, sql, &st, err)) == REEL_OK) {
        int i = reel_filter_bind(f, st, 1);
        if (i > 0 && q && q->has_since)
            sqlite3_bind_int64(st, i, q->since_us);
        watch_cancel(db, q, 1);
        int step = i > 0 ? sqlite3_step(st) : SQLITE_ERROR;
        watch_cancel(db, q, 0);
        if (step == SQLITE_ROW)
            *n = sqlite3_column_int64(st, 0);
        else
            rc = step == SQLITE_INTERRUPT && cancelled(q) ? cancel_err(err) : db_err(db, err);
    }
    sqlite3_finalize(st);
    free(sql);
    reel_filter_free(f);
    return rc;
}

reel_rc reel_query_flow(reel_session_t *s, int64_t id, reel_query_flow_t *out, reel_err_t *err) {
    memset(out, 0, sizeof *out);
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    reel_rc rc = prepare(db, "SELECT " FLOW_COLS " FROM flows WHERE id = ?", &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        tagbuf_t tb = {0};
        reel_query_flow_t row;
        read_row(st, &row, &tb);
        copy_row(out, &row);
        tagbuf_free(&tb);
    } else if (step == SQLITE_DONE) {
        rc = no_flow(s, id, err);
    } else {
        rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    return rc;
}

reel_rc reel_query_flow_exists(reel_session_t *s, int64_t id, reel_err_t *err) {
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    reel_rc rc = prepare(db, "SELECT 1 FROM flows WHERE id = ?", &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        rc = no_flow(s, id, err);
    else if (step != SQLITE_ROW)
        rc = db_err(db, err);
    sqlite3_finalize(st);
    return rc;
}

static json_t *nullable_int(int64_t v) {
    return v == REEL_QUERY_NULL ? json_null() : json_integer((json_int_t)v);
}

/* The index's text as recorded: a URL, method or error that is not UTF-8
 * (a request target with raw bytes) comes as {"b64": ...}, as in `reel
 * flow --json`; json_pack refused it, and the whole row went missing. */
static json_t *nullable_str(const char *v) {
    return reel_json_text(v);
}

json_t *reel_query_flow_json(const reel_query_flow_t *f) {
    int64_t start = f->start_us == REEL_QUERY_NULL ? 0 : f->start_us;
    json_t *o = json_pack(
        "{s:I, s:I, s:o, s:o, s:I, s:I, s:b, s:o}", "id", (json_int_t)f->id, "start_us",
        (json_int_t)start, "state", reel_json_text(f->state ? f->state : ""), "kind",
        reel_json_text(f->kind ? f->kind : "http"), "request_body_size",
        (json_int_t)f->request_body_size, "response_body_size", (json_int_t)f->response_body_size,
        "marked", f->marked, "url", reel_json_text(f->url ? f->url : ""));
    json_object_set_new(o, "method", nullable_str(f->method));
    json_object_set_new(o, "status", nullable_int(f->status));
    json_object_set_new(o, "end_us", nullable_int(f->end_us));
    json_object_set_new(
        o, "duration_us",
        /* start 0: its start record was lost (a damaged spool) */
        f->end_us == REEL_QUERY_NULL || start <= 0 ? json_null() : json_integer(f->end_us - start));
    json_object_set_new(o, "error", nullable_str(f->error));
    /* where it went and when its phases ended; what reel itself answered;
     * what of it was not stored or is known lost */
    json_object_set_new(o, "client_addr", nullable_str(f->client_addr));
    json_object_set_new(o, "server_addr", nullable_str(f->server_addr));
    json_object_set_new(o, "request_end_us", nullable_int(f->request_end_us));
    json_object_set_new(o, "response_start_us", nullable_int(f->response_start_us));
    json_object_set_new(o, "response_generated", json_boolean(f->response_generated));
    json_object_set_new(o, "request_body_dropped", json_integer(f->request_body_dropped));
    json_object_set_new(o, "response_body_dropped", json_integer(f->response_body_dropped));
    json_object_set_new(o, "damaged", json_boolean(f->damaged));
    json_object_set_new(o, "messages", json_integer(f->messages));
    /* reel replay: the flow this one re-sent (and its session, if another) */
    json_object_set_new(o, "replay_of", nullable_int(f->replay_of));
    if (f->replay_session)
        json_object_set_new(o, "replay_session", reel_json_text(f->replay_session));
    /* the client connection it came on (numbered per run) and its HTTP/2
     * stream there */
    json_object_set_new(o, "client_conn", nullable_int(f->client_conn));
    json_object_set_new(o, "stream_id", nullable_int(f->stream_id));
    json_t *ta = json_array();
    for (size_t i = 0; i < f->ntags; i++)
        json_array_append_new(ta, reel_json_text(f->tags[i]));
    json_object_set_new(o, "tags", ta);
    return o;
}

/* ---- the session summary ---- */

/* One number from sql into *v; the first failure is kept in rc. */
static void q1(sqlite3 *db, const char *sql, int64_t *v, reel_rc *rc, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    *v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    else if (*rc == REEL_OK)
        *rc = db_err(db, err);
    sqlite3_finalize(st);
}

static int64_t meta_int(sqlite3 *db, const char *key) {
    char *v = reel_index_meta_get(db, key);
    long long n = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return n;
}

/* Retention's figures, best effort (zeros if the table cannot be read). */
static void retention_load(sqlite3 *db, reel_query_summary_t *out) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), coalesce(sum(flows), 0), coalesce(sum(bytes), 0), "
                           "(SELECT count(*) FROM retention WHERE reason = 'compact') FROM "
                           "retention WHERE reason != 'compact'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        out->retention.segments = sqlite3_column_int64(st, 0);
        out->retention.flows = sqlite3_column_int64(st, 1);
        out->retention.bytes = sqlite3_column_int64(st, 2);
        out->retention.compacted = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT segment, time_us, flows, bytes, reason FROM retention WHERE "
                           "reason != 'compact' ORDER BY time_us DESC, segment DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        out->retention.last_segment = sqlite3_column_int64(st, 0);
        out->retention.last_us = sqlite3_column_int64(st, 1);
        out->retention.last_flows = sqlite3_column_int64(st, 2);
        out->retention.last_bytes = sqlite3_column_int64(st, 3);
        const unsigned char *why = sqlite3_column_text(st, 4);
        snprintf(out->retention.last_reason, sizeof out->retention.last_reason, "%s",
                 why ? (const char *)why : "");
    }
    sqlite3_finalize(st);
}

reel_rc reel_query_summary(reel_session_t *s, reel_query_summary_t *out, reel_err_t *err) {
    memset(out, 0, sizeof *out);
    sqlite3 *db = reel_session_db(s);
    reel_rc rc = REEL_OK;
    q1(db, "SELECT count(*) FROM flows", &out->flows, &rc, err);
    sqlite3_stmt *st = NULL;
    int step = SQLITE_ERROR;
    /* an index of the unfinished flows makes this cheap */
    if (sqlite3_prepare_v2(db,
                           "SELECT state, count(*) FROM flows WHERE state != 'complete' "
                           "GROUP BY state",
                           -1, &st, NULL) == SQLITE_OK)
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            const char *state = (const char *)sqlite3_column_text(st, 0);
            int64_t n = sqlite3_column_int64(st, 1);
            if (state == NULL)
                continue;
            if (strcmp(state, "error") == 0)
                out->errors = n;
            else if (strcmp(state, "open") == 0)
                out->open = n;
            else if (strcmp(state, "interrupted") == 0)
                out->interrupted = n;
        }
    if (step != SQLITE_DONE && rc == REEL_OK)
        rc = db_err(db, err);
    sqlite3_finalize(st);
    st = NULL;
    out->complete = out->flows - out->errors - out->open - out->interrupted;
    /* a flow whose start record was lost has start_us 0: not 1970 */
    q1(db, "SELECT coalesce(min(start_us), 0) FROM flows WHERE start_us > 0", &out->first_us, &rc,
       err);
    q1(db, "SELECT coalesce(max(start_us), 0) FROM flows", &out->last_us, &rc, err);
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), coalesce(sum(clen), 0), coalesce(sum(rlen), 0), "
                           "count(DISTINCT segment) FROM frames",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        out->frames = sqlite3_column_int64(st, 0);
        out->spool_bytes = sqlite3_column_int64(st, 1);
        out->raw_bytes = sqlite3_column_int64(st, 2);
        out->segments = sqlite3_column_int64(st, 3);
    } else if (rc == REEL_OK) {
        rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    q1(db, "SELECT count(*) FROM annotations", &out->annotations, &rc, err);
    q1(db, "SELECT count(DISTINCT flow_id) FROM tags", &out->tagged_flows, &rc, err);
    q1(db, "SELECT count(*) FROM marks", &out->marked_flows, &rc, err);
    q1(db, "SELECT count(*) FROM config_overlay", &out->overlay_keys, &rc, err);
    q1(db, "SELECT count(*) FROM damage", &out->damaged_ranges, &rc, err);
    q1(db, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
       &out->index_bytes, &rc, err);
    if (rc != REEL_OK)
        return rc;
    out->created_us = meta_int(db, "created_us");
    out->ignored_connections = meta_int(db, "ignored_connections");
    retention_load(db, out);
    return REEL_OK;
}

/* ---- writes ---- */

static reel_rc begin(sqlite3 *db, reel_err_t *err) {
    if (reel_index_begin_write(db) != SQLITE_OK)
        return db_err(db, err);
    return REEL_OK;
}

/* Commits when rc is REEL_OK, else (or if COMMIT fails) rolls back. */
static reel_rc end(sqlite3 *db, reel_rc rc, reel_err_t *err) {
    if (rc == REEL_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_err(db, err);
    if (rc != REEL_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Begins the write transaction of user data on the flows ids[0..*n) of
 * target t (target_ids; owned: its array, for a filter), then checks them
 * again inside it. A flow whose segment retention listed as dropped since
 * (its rows go soon after, reel_retention_run, which checks in its own
 * transaction that no flow there has user data) gets none: it would
 * outlive the flow, and `reel tag` said it tagged a flow about to go. A
 * flow named by id is then an error, as if it were gone already; one that
 * a filter matched is left out (*n shrinks). */
static reel_rc begin_live(reel_session_t *s, const reel_query_target_t *t, const int64_t *ids,
                          int64_t *owned, size_t *n, reel_err_t *err) {
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    reel_rc rc = begin(db, err);
    if (rc == REEL_OK)
        rc = prepare(db,
                     "SELECT 1 FROM flows f WHERE f.id = ?1 AND NOT EXISTS (SELECT 1 FROM "
                     "flow_frames ff JOIN retention r ON r.segment = ff.segment WHERE "
                     "ff.flow_id = ?1)",
                     &st, err);
    size_t k = 0;
    for (size_t i = 0; i < *n && rc == REEL_OK; i++) {
        sqlite3_bind_int64(st, 1, ids[i]);
        int step = sqlite3_step(st);
        sqlite3_reset(st);
        if (step == SQLITE_ROW) {
            if (owned)
                owned[k++] = ids[i];
        } else if (step != SQLITE_DONE) {
            rc = db_err(db, err);
        } else if (t->ids) {
            rc = no_flow(s, ids[i], err);
        }
    }
    sqlite3_finalize(st);
    if (rc != REEL_OK)
        return end(db, rc, err);
    if (owned)
        *n = k;
    return REEL_OK;
}

/* The ids of target t, ascending for a filter, as given otherwise (each
 * checked to exist). *owned is the array to free(). */
static reel_rc target_ids(reel_session_t *s, const reel_query_target_t *t, const int64_t **ids,
                          size_t *n, int64_t **owned, reel_err_t *err) {
    *owned = NULL;
    if (t->ids) {
        for (size_t i = 0; i < t->n; i++) {
            reel_rc rc = reel_query_flow_exists(s, t->ids[i], err);
            if (rc != REEL_OK)
                return rc;
        }
        *ids = t->ids;
        *n = t->n;
        return REEL_OK;
    }
    reel_filter_t *f = NULL;
    reel_rc rc = reel_filter_compile(t->filter, &f, err);
    if (rc == REEL_OK)
        rc = reel_filter_ids(f, s, owned, n, err);
    reel_filter_free(f);
    *ids = *owned;
    return rc;
}

reel_rc reel_query_note_check(const char *text, reel_err_t *err) {
    if (text == NULL || text[0] == '\0')
        return reel_err_set(err, REEL_INVALID, "empty note");
    if (strlen(text) > REEL_QUERY_NOTE_MAX)
        return reel_err_set(err, REEL_INVALID, "note longer than %d bytes", REEL_QUERY_NOTE_MAX);
    return REEL_OK;
}

reel_rc reel_query_annotate(reel_session_t *s, const reel_query_target_t *t, const char *text,
                            reel_query_result_t *res, reel_err_t *err) {
    memset(res, 0, sizeof *res);
    reel_rc rc = reel_query_note_check(text, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3 *db = reel_session_db(s);
    const int64_t *ids = NULL;
    int64_t *owned = NULL;
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    if ((rc = target_ids(s, t, &ids, &n, &owned, err)) != REEL_OK)
        goto out;
    if ((rc = begin_live(s, t, ids, owned, &n, err)) != REEL_OK)
        goto out;
    rc =
        prepare(db, "INSERT INTO annotations(flow_id, created_us, text) VALUES(?, ?, ?)", &st, err);
    for (size_t i = 0; i < n && rc == REEL_OK; i++) {
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, reel_now_us());
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(db, err);
        res->last_note = sqlite3_last_insert_rowid(db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = end(db, rc, err);
    if (rc == REEL_OK)
        res->matched = res->changed = n;
    else
        res->last_note = 0;
out:
    free(owned);
    return rc;
}

reel_rc reel_query_notes(reel_session_t *s, int64_t id, reel_query_note_t **out, size_t *n,
                         reel_err_t *err) {
    *out = NULL;
    *n = 0;
    reel_rc rc = reel_query_flow_exists(s, id, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(db,
                      "SELECT id, created_us, text FROM annotations WHERE flow_id = ? ORDER BY id",
                      &st, err)) != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    reel_query_note_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            v = reel_realloc(v, cap * sizeof *v);
        }
        v[cnt].id = sqlite3_column_int64(st, 0);
        v[cnt].created_us = sqlite3_column_int64(st, 1);
        v[cnt].text = dup_col(st, 2);
        if (v[cnt].text == NULL)
            v[cnt].text = reel_strdup("");
        cnt++;
    }
    if (step != SQLITE_DONE) {
        rc = db_err(db, err);
        reel_query_notes_free(v, cnt);
    } else {
        *out = v;
        *n = cnt;
    }
    sqlite3_finalize(st);
    return rc;
}

void reel_query_notes_free(reel_query_note_t *notes, size_t n) {
    for (size_t i = 0; notes && i < n; i++)
        free(notes[i].text);
    free(notes);
}

/* created_us of note `note` of flow id into *created; REEL_NOTFOUND if the
 * flow or the note is not there. */
static reel_rc note_find(reel_session_t *s, int64_t id, int64_t note, int64_t *created,
                         reel_err_t *err) {
    reel_rc rc = reel_query_flow_exists(s, id, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(db, "SELECT created_us FROM annotations WHERE id = ? AND flow_id = ?", &st,
                      err)) != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, note);
    sqlite3_bind_int64(st, 2, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        *created = sqlite3_column_int64(st, 0);
    else if (step == SQLITE_DONE)
        rc = reel_err_set(err, REEL_NOTFOUND, "flow %lld has no note %lld", (long long)id,
                          (long long)note);
    else
        rc = db_err(db, err);
    sqlite3_finalize(st);
    return rc;
}

static reel_rc exec_bound(sqlite3 *db, const char *sql, int64_t a, int64_t b, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = prepare(db, sql, &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_err(db, err);
    sqlite3_finalize(st);
    return rc;
}

reel_rc reel_query_note_edit(reel_session_t *s, int64_t id, int64_t note, const char *text,
                             reel_err_t *err) {
    reel_rc rc = reel_query_note_check(text, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3 *db = reel_session_db(s);
    if ((rc = begin(db, err)) != REEL_OK)
        return rc;
    int64_t created = 0;
    sqlite3_stmt *st = NULL;
    /* Delete and insert again under the same number: the full-text index
     * follows both through the table's triggers. */
    if ((rc = note_find(s, id, note, &created, err)) == REEL_OK &&
        (rc = exec_bound(db, "DELETE FROM annotations WHERE id = ? AND flow_id = ?", note, id,
                         err)) == REEL_OK &&
        (rc = prepare(db,
                      "INSERT INTO annotations(id, flow_id, created_us, text) VALUES(?, ?, ?, ?)",
                      &st, err)) == REEL_OK) {
        sqlite3_bind_int64(st, 1, note);
        sqlite3_bind_int64(st, 2, id);
        sqlite3_bind_int64(st, 3, created);
        sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    return end(db, rc, err);
}

reel_rc reel_query_note_delete(reel_session_t *s, int64_t id, int64_t note, reel_err_t *err) {
    sqlite3 *db = reel_session_db(s);
    reel_rc rc = begin(db, err);
    if (rc != REEL_OK)
        return rc;
    int64_t created = 0;
    if ((rc = note_find(s, id, note, &created, err)) == REEL_OK)
        rc = exec_bound(db, "DELETE FROM annotations WHERE id = ? AND flow_id = ?", note, id, err);
    return end(db, rc, err);
}

reel_rc reel_query_tag(reel_session_t *s, const reel_query_target_t *t, const char *const *tags,
                       size_t ntags, int add, reel_query_result_t *res, reel_err_t *err) {
    memset(res, 0, sizeof *res);
    reel_rc rc = REEL_OK;
    for (size_t i = 0; i < ntags; i++) {
        size_t len = strlen(tags[i]);
        if (add && (rc = reel_session_tag_check(tags[i], err)) != REEL_OK)
            return rc;
        if (!add && (len == 0 || len > 128))
            return reel_err_set(err, REEL_INVALID, "invalid tag: expected 1-128 bytes");
    }
    sqlite3 *db = reel_session_db(s);
    const int64_t *ids = NULL;
    int64_t *owned = NULL;
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    if ((rc = target_ids(s, t, &ids, &n, &owned, err)) != REEL_OK)
        goto out;
    if ((rc = begin_live(s, t, ids, owned, &n, err)) != REEL_OK)
        goto out;
    rc = prepare(db,
                 add ? "INSERT OR IGNORE INTO tags(flow_id, tag) VALUES(?, ?)"
                     : "DELETE FROM tags WHERE flow_id = ? AND tag = ?",
                 &st, err);
    size_t changed = 0, flows = 0;
    for (size_t k = 0; k < n && rc == REEL_OK; k++) {
        size_t before = changed;
        for (size_t i = 0; i < ntags && rc == REEL_OK; i++) {
            sqlite3_bind_int64(st, 1, ids[k]);
            sqlite3_bind_text(st, 2, tags[i], -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_err(db, err);
            else
                changed += (size_t)sqlite3_changes(db);
            sqlite3_reset(st);
        }
        flows += changed > before;
    }
    sqlite3_finalize(st);
    rc = end(db, rc, err);
    if (rc == REEL_OK) {
        res->matched = n;
        res->changed = changed;
        res->flows_changed = flows;
    }
out:
    free(owned);
    return rc;
}

reel_rc reel_query_tags(reel_session_t *s, int64_t id, char ***out, size_t *n, reel_err_t *err) {
    *out = NULL;
    *n = 0;
    reel_rc rc = reel_query_flow_exists(s, id, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(db, "SELECT tag FROM tags WHERE flow_id = ? ORDER BY tag", &st, err)) !=
        REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            v = reel_realloc(v, cap * sizeof *v);
        }
        char *tag = dup_col(st, 0);
        v[cnt++] = tag ? tag : reel_strdup("");
    }
    if (step != SQLITE_DONE) {
        rc = db_err(db, err);
        reel_query_strings_free(v, cnt);
    } else {
        *out = v;
        *n = cnt;
    }
    sqlite3_finalize(st);
    return rc;
}

void reel_query_strings_free(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

reel_rc reel_query_mark(reel_session_t *s, const reel_query_target_t *t, int mark,
                        reel_query_result_t *res, reel_err_t *err) {
    memset(res, 0, sizeof *res);
    sqlite3 *db = reel_session_db(s);
    const int64_t *ids = NULL;
    int64_t *owned = NULL;
    size_t n = 0;
    sqlite3_stmt *a = NULL, *b = NULL;
    reel_rc rc = target_ids(s, t, &ids, &n, &owned, err);
    if (rc != REEL_OK)
        goto out;
    if ((rc = begin_live(s, t, ids, owned, &n, err)) != REEL_OK)
        goto out;
    /* marks is the user data repair keeps; flows.marked mirrors it for
     * filters */
    if ((rc = prepare(db,
                      mark ? "INSERT OR IGNORE INTO marks(flow_id, created_us) VALUES(?1, ?2)"
                           : "DELETE FROM marks WHERE flow_id = ?1 AND ?2 IS NOT NULL",
                      &a, err)) == REEL_OK)
        rc = prepare(db, "UPDATE flows SET marked = ?2 WHERE id = ?1", &b, err);
    size_t changed = 0;
    for (size_t i = 0; i < n && rc == REEL_OK; i++) {
        sqlite3_bind_int64(a, 1, ids[i]);
        sqlite3_bind_int64(a, 2, reel_now_us());
        sqlite3_bind_int64(b, 1, ids[i]);
        sqlite3_bind_int(b, 2, mark != 0);
        if (sqlite3_step(a) != SQLITE_DONE) {
            rc = db_err(db, err);
            break;
        }
        changed += (size_t)sqlite3_changes(db);
        if (sqlite3_step(b) != SQLITE_DONE)
            rc = db_err(db, err);
        sqlite3_reset(a);
        sqlite3_reset(b);
    }
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    rc = end(db, rc, err);
    if (rc == REEL_OK) {
        res->matched = n;
        res->changed = changed;
    }
out:
    free(owned);
    return rc;
}

/* ---- the config overlay ---- */

reel_rc reel_query_overlay(reel_session_t *s, reel_query_overlay_t **out, size_t *n,
                           reel_err_t *err) {
    *out = NULL;
    *n = 0;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    reel_rc rc = prepare(db, "SELECT key, value FROM config_overlay ORDER BY key", &st, err);
    if (rc != REEL_OK)
        return rc;
    reel_query_overlay_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            v = reel_realloc(v, cap * sizeof *v);
        }
        v[cnt].key = dup_col(st, 0);
        v[cnt].value = dup_col(st, 1);
        cnt++;
    }
    if (step != SQLITE_DONE) {
        rc = db_err(db, err);
        reel_query_overlay_free(v, cnt);
    } else {
        *out = v;
        *n = cnt;
    }
    sqlite3_finalize(st);
    return rc;
}

void reel_query_overlay_free(reel_query_overlay_t *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].key);
        free(rows[i].value);
    }
    free(rows);
}

reel_rc reel_query_history(reel_session_t *s, reel_query_change_t **out, size_t *n,
                           reel_err_t *err) {
    *out = NULL;
    *n = 0;
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    reel_rc rc = prepare(db,
                         "SELECT id, time_us, key, old_value, new_value, actor "
                         "FROM config_history ORDER BY id",
                         &st, err);
    if (rc != REEL_OK)
        return rc;
    reel_query_change_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            v = reel_realloc(v, cap * sizeof *v);
        }
        v[cnt].id = sqlite3_column_int64(st, 0);
        v[cnt].time_us = sqlite3_column_int64(st, 1);
        v[cnt].key = dup_col(st, 2);
        v[cnt].old_value = dup_col(st, 3);
        v[cnt].new_value = dup_col(st, 4);
        v[cnt].actor = dup_col(st, 5);
        cnt++;
    }
    if (step != SQLITE_DONE) {
        rc = db_err(db, err);
        reel_query_history_free(v, cnt);
    } else {
        *out = v;
        *n = cnt;
    }
    sqlite3_finalize(st);
    return rc;
}

void reel_query_history_free(reel_query_change_t *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].key);
        free(rows[i].old_value);
        free(rows[i].new_value);
        free(rows[i].actor);
    }
    free(rows);
}

const char *reel_query_sqlite_version(void) {
    return sqlite3_libversion();
}

/* ---- indexed body search ---- */

reel_rc reel_query_search(reel_session_t *s, const char *q, int64_t limit, const char *mark_on,
                          const char *mark_off, reel_query_hit_cb cb, void *ctx, reel_err_t *err) {
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    reel_rc rc = prepare(db,
                         "SELECT f.id, f.method, f.url, f.status, "
                         "reel_snippet(body_fts, 0, ?3, ?4, '...', 24), "
                         "reel_snippet(body_fts, 1, ?3, ?4, '...', 24) "
                         "FROM body_fts JOIN flows f ON f.id = body_fts.rowid "
                         "WHERE body_fts MATCH ?1 ORDER BY f.id LIMIT ?2",
                         &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
    sqlite3_bind_text(st, 3, mark_on, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, mark_off, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        reel_query_hit_t h = {.id = sqlite3_column_int64(st, 0),
                              .method = (const char *)sqlite3_column_text(st, 1),
                              .url = (const char *)sqlite3_column_text(st, 2),
                              .status = int_or_null(st, 3),
                              .snippet = {(const char *)sqlite3_column_text(st, 4),
                                          (const char *)sqlite3_column_text(st, 5)}};
        if (cb(ctx, &h) != 0) {
            step = SQLITE_DONE;
            break;
        }
    }
    if (step != SQLITE_DONE) {
        if ((sqlite3_errcode(db) & 0xff) == SQLITE_ERROR) /* FTS5 refused the query */
            rc = reel_err_set(err, REEL_INVALID, "bad query %s: %s", q, sqlite3_errmsg(db));
        else
            rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    return rc;
}

reel_rc reel_query_search_missing(reel_session_t *s, int64_t *before, int64_t *pending,
                                  int64_t *off, reel_err_t *err) {
    sqlite3 *db = reel_session_db(s);
    sqlite3_stmt *st = NULL;
    *before = *pending = *off = 0;
    reel_rc rc = prepare(db,
                         "SELECT coalesce(sum(reason = 'indexed before body search'), 0), "
                         "coalesce(sum(reason = 'pending'), 0), "
                         "coalesce(sum(reason = 'disabled'), 0) + (SELECT count(*) FROM flows f "
                         "WHERE f.id >= (SELECT min(lo) FROM body_off) AND EXISTS (SELECT 1 "
                         "FROM body_off o WHERE f.id BETWEEN o.lo AND o.hi)) FROM body_todo",
                         &st, err);
    if (rc != REEL_OK)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *before = sqlite3_column_int64(st, 0);
        *pending = sqlite3_column_int64(st, 1);
        *off = sqlite3_column_int64(st, 2);
    } else {
        rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    return rc;
}

int reel_query_parse_flow_id(const char *arg, int64_t *id) {
    if (arg == NULL || arg[0] == '\0')
        return -1;
    int64_t v = 0;
    for (const char *p = arg; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v == 0)
        return -1;
    *id = v;
    return 0;
}
