/* Indexed body search: see bodyindex.h. */
#include "session/bodyindex.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "base/mem.h"
#include "session/config.h"
#include "session/decode.h"

/* Text kept across all open flows, and decoders alive at once. */
#define TEXT_MAX (64u * 1024u * 1024u)
#define DECODERS_MAX 64
/* Bytes of a body read before deciding whether it is text. */
#define SNIFF_LEN 512
/* Longest plain string answered from the FTS. */
#define PLAIN_MAX 1024
/* Share of the indexer's wall time the FTS inserts may take while
 * recording, and the most time saved up while idle. */
#define FTS_SHARE 0.25
#define FTS_CREDIT_MAX_NS 1000000000LL

typedef struct bflow {
    struct bflow *next;
    uint64_t id;
    const char *why; /* static: why the FTS will not hold it all (NULL: it will) */
    int side;        /* body being read: 1 request, 2 response, 0 none */
    reel_decoder_t *dec;
    bool dec_failed;
    bool skip[3];         /* side not kept (binary, cut, ...) */
    bool sniffed[3];      /* side checked to look like text */
    size_t body_start[3]; /* offset in text[] where the current body starts */
    reel_buf_t text[3];   /* [1] request, [2] response */
} bflow;

struct reel_bodyindex {
    sqlite3 *db;
    uint64_t max;
    sqlite3_stmt *todo_open, *todo_set, *todo_del, *fts_old, *text_put, *fts_put;
    sqlite3_stmt *pending, *text_done, *todo_done, *off_put;
    /* With the index off (max 0): the range of flow ids this indexer has
     * seen (off_lo 0: none yet), and the range body_off holds of it. */
    uint64_t off_lo, off_hi, off_wlo, off_whi;
    int bulk;                   /* no budget: fill the FTS at every commit */
    int64_t credit_ns, last_ns; /* the FTS budget */
    bflow **buckets;
    size_t nbuckets, count;
    size_t text_bytes; /* held in all text[] */
    int decoders;
    bflow *cur; /* flow whose decoder is running (for the sink) */
};

static size_t bucket_of(const reel_bodyindex_t *bx, uint64_t id) {
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (bx->nbuckets - 1);
}

static void side_drop(reel_bodyindex_t *bx, bflow *f, int side) {
    bx->text_bytes -= f->text[side].len;
    reel_buf_free(&f->text[side]);
    f->skip[side] = true;
}

static void end_decoder(reel_bodyindex_t *bx, bflow *f) {
    if (f->dec == NULL)
        return;
    reel_decoder_free(f->dec);
    f->dec = NULL;
    bx->decoders--;
}

static void flow_free(reel_bodyindex_t *bx, bflow *f) {
    end_decoder(bx, f);
    for (int s = 1; s <= 2; s++) {
        bx->text_bytes -= f->text[s].len;
        reel_buf_free(&f->text[s]);
    }
    free(f);
}

static bflow *map_find(reel_bodyindex_t *bx, uint64_t id) {
    for (bflow *f = bx->buckets[bucket_of(bx, id)]; f; f = f->next)
        if (f->id == id)
            return f;
    return NULL;
}

static void map_grow(reel_bodyindex_t *bx) {
    size_t old = bx->nbuckets;
    bflow **ob = bx->buckets;
    bx->nbuckets = old * 2;
    bx->buckets = reel_calloc(bx->nbuckets, sizeof *bx->buckets);
    for (size_t k = 0; k < old; k++)
        for (bflow *f = ob[k], *next; f; f = next) {
            next = f->next;
            size_t b = bucket_of(bx, f->id);
            f->next = bx->buckets[b];
            bx->buckets[b] = f;
        }
    free(ob);
}

static bflow *map_add(reel_bodyindex_t *bx, uint64_t id) {
    if (bx->count >= 2 * bx->nbuckets)
        map_grow(bx);
    bflow *f = reel_calloc(1, sizeof *f);
    f->id = id;
    size_t b = bucket_of(bx, id);
    f->next = bx->buckets[b];
    bx->buckets[b] = f;
    bx->count++;
    return f;
}

static void map_remove(reel_bodyindex_t *bx, bflow *f) {
    for (bflow **pp = &bx->buckets[bucket_of(bx, f->id)]; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            bx->count--;
            flow_free(bx, f);
            return;
        }
}

/* The state of flow id; a flow first seen without its start record has
 * lost what came before (an earlier run, a rollback). */
static bflow *flow_get(reel_bodyindex_t *bx, uint64_t id) {
    bflow *f = map_find(bx, id);
    if (f == NULL) {
        f = map_add(bx, id);
        f->why = "lost";
    }
    return f;
}

/* Keeps decoded bytes of the current side of f. */
static void keep(reel_bodyindex_t *bx, bflow *f, const uint8_t *data, size_t len) {
    int s = f->side;
    if (s == 0 || f->skip[s] || len == 0)
        return;
    if (memchr(data, 0, len) != NULL) {
        f->why = "binary";
        side_drop(bx, f, s);
        return;
    }
    reel_buf_t *t = &f->text[s];
    size_t room = bx->max > t->len ? (size_t)(bx->max - t->len) : 0;
    bool cut = len > room;
    size_t n = cut ? room : len;
    if (bx->text_bytes + n > TEXT_MAX) {
        f->why = "busy";
        side_drop(bx, f, s);
        return;
    }
    reel_buf_append(t, data, n);
    bx->text_bytes += n;
    if (cut)
        f->why = "cap";
    if (!f->sniffed[s] && t->len - f->body_start[s] >= SNIFF_LEN) {
        f->sniffed[s] = true;
        if (!reel_looks_text(t->data + f->body_start[s], t->len - f->body_start[s])) {
            f->why = "binary";
            side_drop(bx, f, s);
            return;
        }
    }
    if (cut) /* nothing more fits: stop decoding it */
        f->skip[s] = true;
}

static int sink(void *ctx, const uint8_t *data, size_t len) {
    reel_bodyindex_t *bx = ctx;
    keep(bx, bx->cur, data, len);
    return 0;
}

/* Ends the body being read (as the filter's eval_end_body does). */
static void end_body(reel_bodyindex_t *bx, bflow *f) {
    int s = f->side;
    if (s == 0)
        return;
    if (f->dec != NULL && !f->dec_failed && !f->skip[s]) {
        reel_err_t err;
        reel_err_clear(&err);
        bx->cur = f;
        if (reel_decoder_finish(f->dec, &err) != REEL_OK)
            f->why = "decode";
        bx->cur = NULL;
    }
    end_decoder(bx, f);
    if (!f->skip[s] && !f->sniffed[s]) {
        f->sniffed[s] = true;
        const uint8_t *t = f->text[s].data ? f->text[s].data + f->body_start[s] : NULL;
        if (!reel_looks_text(t, f->text[s].len - f->body_start[s])) {
            f->why = "binary";
            side_drop(bx, f, s);
        }
    }
    f->side = 0;
}

static bool name_is(const ProtobufCBinaryData *b, const char *s) {
    size_t n = strlen(s);
    return b->len == n && strncasecmp((const char *)b->data, s, n) == 0;
}

/* Content types never kept, whatever their bytes look like. */
static bool binary_type(const ProtobufCBinaryData *v) {
    static const char *const types[] = {"image/",
                                        "audio/",
                                        "video/",
                                        "font/",
                                        "application/octet-stream",
                                        "application/zip",
                                        "application/pdf",
                                        "application/grpc",
                                        "application/x-protobuf",
                                        "application/protobuf",
                                        "application/msgpack",
                                        "application/wasm"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t n = strlen(types[i]);
        if (v->len >= n && strncasecmp((const char *)v->data, types[i], n) == 0)
            return true;
    }
    return false;
}

/* A head starts a body of side s, decoded by its Content-Encoding. */
static void head(reel_bodyindex_t *bx, bflow *f, int s, Reel__Header **h, size_t nh, bool decoded) {
    end_body(bx, f);
    f->side = s;
    f->dec_failed = false;
    if (f->skip[s])
        return;
    if (bx->max == 0) {
        f->skip[s] = true;
        return;
    }
    reel_buf_t enc;
    reel_buf_init(&enc, 64 * 1024);
    bool any_enc = false;
    for (size_t i = 0; i < nh; i++) {
        if (name_is(&h[i]->name, "content-encoding")) {
            if (any_enc)
                reel_buf_puts(&enc, ", ");
            reel_buf_append(&enc, h[i]->value.data, h[i]->value.len);
            any_enc = true;
        } else if (name_is(&h[i]->name, "content-type") && binary_type(&h[i]->value)) {
            f->skip[s] = true; /* f->why is set if a byte of it comes */
        }
    }
    if (!f->skip[s]) {
        /* Bodies of one side are kept one after the other (a 1xx response
         * then the final one), a line apart. */
        if (f->text[s].len > 0 && bx->text_bytes < TEXT_MAX && f->text[s].len < bx->max) {
            reel_buf_append(&f->text[s], "\n", 1);
            bx->text_bytes++;
        }
        f->body_start[s] = f->text[s].len;
        f->sniffed[s] = false;
    }
    if (!f->skip[s] && any_enc && !decoded && reel_buf_append(&enc, "", 1) == REEL_OK) {
        reel_err_t err;
        reel_err_clear(&err);
        if (bx->decoders >= DECODERS_MAX) {
            f->why = "busy";
            side_drop(bx, f, s);
        } else if (reel_decoder_new((const char *)enc.data, sink, bx, &f->dec, &err) != REEL_OK) {
            f->dec = NULL;
            f->why = "encoding"; /* the filter searches its bytes as stored */
            side_drop(bx, f, s);
        } else {
            bx->decoders++;
        }
    }
    reel_buf_free(&enc);
}

void reel_bodyindex_chunk(reel_bodyindex_t *bx, uint64_t fid, int response, const uint8_t *data,
                          size_t len) {
    if (fid == 0 || len == 0 || bx->max == 0)
        return; /* off: the flow's other records put it in body_off */
    bflow *f = flow_get(bx, fid);
    int s = response ? 2 : 1;
    if (f->side != s)
        return; /* a body without its head: the filter ignores it too */
    if (f->skip[s]) {
        if (f->why == NULL)
            f->why = bx->max == 0 ? "disabled" : "binary";
        return;
    }
    if (f->dec == NULL) {
        keep(bx, f, data, len);
        return;
    }
    if (f->dec_failed)
        return;
    reel_err_t err;
    reel_err_clear(&err);
    bx->cur = f;
    if (reel_decoder_feed(f->dec, data, len, &err) != REEL_OK) {
        f->dec_failed = true;
        f->why = "decode";
    }
    bx->cur = NULL;
}

static reel_rc step(reel_bodyindex_t *bx, sqlite3_stmt *st, reel_err_t *err) {
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (s != SQLITE_DONE && s != SQLITE_ROW)
        return reel_err_set(err, REEL_DB, "session.db: body index: %s", sqlite3_errmsg(bx->db));
    return REEL_OK;
}

static void bind_side(sqlite3_stmt *st, int col, const bflow *f, int s) {
    if (f->skip[s] && f->text[s].len == 0)
        sqlite3_bind_null(st, col);
    else
        sqlite3_bind_text(st, col, f->text[s].len ? (const char *)f->text[s].data : "",
                          (int)f->text[s].len, SQLITE_STATIC);
}

/* The flow ended: its text goes into body_text, to be put into the FTS
 * by reel_bodyindex_fill (reason 'pending' meanwhile); it leaves body_todo
 * then, unless the FTS lacks some of its text. */
static reel_rc finish(reel_bodyindex_t *bx, bflow *f, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    end_body(bx, f);
    int64_t id = (int64_t)f->id;
    if (f->text[1].len > 0 || f->text[2].len > 0) {
        sqlite3_bind_int64(bx->fts_old, 1, id);
        sqlite3_bind_int64(bx->text_put, 1, id);
        bind_side(bx->text_put, 2, f, 1);
        bind_side(bx->text_put, 3, f, 2);
        if ((rc = step(bx, bx->fts_old, err)) != REEL_OK ||
            (rc = step(bx, bx->text_put, err)) != REEL_OK)
            goto out;
        if (f->why == NULL)
            f->why = "pending";
    }
    if (f->why == NULL) {
        sqlite3_bind_int64(bx->todo_del, 1, id);
        rc = step(bx, bx->todo_del, err);
    } else {
        sqlite3_bind_int64(bx->todo_set, 1, id);
        sqlite3_bind_text(bx->todo_set, 2, f->why, -1, SQLITE_STATIC);
        rc = step(bx, bx->todo_set, err);
    }
out:
    map_remove(bx, f);
    return rc;
}

/* The index is off: only the flow's id is noted, for body_off. The range
 * reaches down to any flow of an earlier run that gets records in this one
 * (recovery ends them): a body filter then reads a few flows too many from
 * the spool, never too few. */
static void note_off(reel_bodyindex_t *bx, uint64_t fid) {
    if (bx->off_lo == 0 || fid < bx->off_lo)
        bx->off_lo = fid;
    if (fid > bx->off_hi)
        bx->off_hi = fid;
}

reel_rc reel_bodyindex_record(reel_bodyindex_t *bx, const Reel__Record *rec, reel_err_t *err) {
    uint64_t fid = rec->flow_id;
    if (fid == 0)
        return REEL_OK;
    if (bx->max == 0) {
        note_off(bx, fid);
        return REEL_OK;
    }
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START: {
        if (map_find(bx, fid) == NULL)
            (void)map_add(bx, fid);
        sqlite3_bind_int64(bx->todo_open, 1, (int64_t)fid);
        return step(bx, bx->todo_open, err);
    }
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        head(bx, flow_get(bx, fid), 1, h->headers, h->n_headers, h->body_decoded);
        return REEL_OK;
    }
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        head(bx, flow_get(bx, fid), 2, h->headers, h->n_headers, h->body_decoded);
        return REEL_OK;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
        reel_bodyindex_chunk(bx, fid, 0, rec->request_body->data.data, rec->request_body->data.len);
        return REEL_OK;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        reel_bodyindex_chunk(bx, fid, 1, rec->response_body->data.data,
                             rec->response_body->data.len);
        return REEL_OK;
    case REEL__RECORD__EVENT_MESSAGE: {
        /* Messages are searched one by one from the spool. */
        bflow *f = flow_get(bx, fid);
        end_body(bx, f);
        f->why = "messages";
        return REEL_OK;
    }
    case REEL__RECORD__EVENT_END:
    case REEL__RECORD__EVENT_ERROR:
        return finish(bx, flow_get(bx, fid), err);
    default:
        return REEL_OK;
    }
}

void reel_bodyindex_rollback(reel_bodyindex_t *bx) {
    bx->off_wlo = bx->off_whi = 0; /* written again at the next commit */
    for (size_t b = 0; b < bx->nbuckets; b++)
        for (bflow *f = bx->buckets[b]; f; f = f->next)
            f->why = "lost";
}

reel_rc reel_bodyindex_new(sqlite3 *db, uint64_t max, reel_bodyindex_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_bodyindex_t *bx = reel_calloc(1, sizeof *bx);
    bx->db = db;
    bx->max = max;
    bx->nbuckets = 256;
    bx->buckets = reel_calloc(bx->nbuckets, sizeof *bx->buckets);
    const struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&bx->todo_open, "INSERT OR IGNORE INTO body_todo(flow_id, reason) VALUES(?, 'open')"},
        {&bx->todo_set, "INSERT OR REPLACE INTO body_todo(flow_id, reason) VALUES(?, ?)"},
        {&bx->todo_del, "DELETE FROM body_todo WHERE flow_id = ?"},
        {&bx->fts_old, "INSERT INTO body_fts(body_fts, rowid, req, resp) SELECT 'delete', "
                       "flow_id, req, resp FROM body_text WHERE flow_id = ? AND fts = 1"},
        {&bx->text_put,
         "INSERT OR REPLACE INTO body_text(flow_id, req, resp, fts) VALUES(?, ?, ?, 0)"},
        {&bx->fts_put, "INSERT INTO body_fts(rowid, req, resp) VALUES(?, ?, ?)"},
        {&bx->pending, "SELECT flow_id, req, resp FROM body_text WHERE fts = 0 AND flow_id > ? "
                       "ORDER BY flow_id LIMIT 1"},
        {&bx->text_done, "UPDATE body_text SET fts = 1 WHERE flow_id = ?"},
        {&bx->todo_done, "DELETE FROM body_todo WHERE flow_id = ? AND reason = 'pending'"},
        {&bx->off_put, "INSERT INTO body_off(lo, hi) VALUES(?, ?) ON CONFLICT(lo) DO UPDATE "
                       "SET hi = max(hi, excluded.hi)"},
    };
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        if (sqlite3_prepare_v3(db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].st,
                               NULL) != SQLITE_OK) {
            rc = reel_err_set(err, REEL_DB, "session.db: body index: %s", sqlite3_errmsg(db));
            break;
        }
    }
    if (rc != REEL_OK) {
        reel_bodyindex_free(bx);
        bx = NULL;
    }
    *out = bx;
    return rc;
}

void reel_bodyindex_free(reel_bodyindex_t *bx) {
    if (bx == NULL)
        return;
    for (size_t b = 0; b < bx->nbuckets; b++)
        for (bflow *f = bx->buckets[b], *next; f; f = next) {
            next = f->next;
            flow_free(bx, f);
        }
    free(bx->buckets);
    sqlite3_finalize(bx->todo_open);
    sqlite3_finalize(bx->todo_set);
    sqlite3_finalize(bx->todo_del);
    sqlite3_finalize(bx->fts_old);
    sqlite3_finalize(bx->text_put);
    sqlite3_finalize(bx->fts_put);
    sqlite3_finalize(bx->pending);
    sqlite3_finalize(bx->text_done);
    sqlite3_finalize(bx->todo_done);
    sqlite3_finalize(bx->off_put);
    free(bx);
}

uint64_t reel_bodyindex_configured_max(sqlite3 *db) {
    uint64_t max = REEL_BODYINDEX_DEFAULT_MAX;
    if (reel_option_find("body_index_max") == NULL)
        return max;
    reel_err_t err;
    reel_err_clear(&err);
    reel_config_t *c = reel_config_new();
    (void)reel_config_load_user(c, NULL, &err); /* a bad file: the recorder says so */
    reel_err_clear(&err);
    (void)reel_config_load_overlay(c, db, NULL, &err);
    int64_t v = reel_config_get_int(c, "body_index_max");
    if (v >= 0)
        max = (uint64_t)v;
    reel_config_free(c);
    return max;
}

int reel_bodyindex_on(const reel_bodyindex_t *bx) {
    return bx->max != 0;
}

void reel_bodyindex_bulk(reel_bodyindex_t *bx) {
    bx->bulk = 1;
}

/* Puts the next body_text row after flow id *after into the FTS; *done
 * when there is none. */
static reel_rc fill_one(reel_bodyindex_t *bx, int64_t *after, bool *done, reel_err_t *err) {
    sqlite3_bind_int64(bx->pending, 1, *after);
    int s = sqlite3_step(bx->pending);
    if (s != SQLITE_ROW) {
        sqlite3_reset(bx->pending);
        *done = true;
        if (s == SQLITE_DONE)
            return REEL_OK;
        return reel_err_set(err, REEL_DB, "session.db: body index: %s", sqlite3_errmsg(bx->db));
    }
    int64_t id = sqlite3_column_int64(bx->pending, 0);
    *after = id;
    sqlite3_bind_int64(bx->fts_put, 1, id);
    for (int c = 1; c <= 2; c++) /* copies */
        sqlite3_bind_value(bx->fts_put, 1 + c, sqlite3_column_value(bx->pending, c));
    sqlite3_reset(bx->pending); /* before body_text changes */
    reel_rc rc = step(bx, bx->fts_put, err);
    if (rc == REEL_OK) {
        sqlite3_bind_int64(bx->text_done, 1, id);
        rc = step(bx, bx->text_done, err);
    }
    if (rc == REEL_OK) {
        sqlite3_bind_int64(bx->todo_done, 1, id);
        rc = step(bx, bx->todo_done, err);
    }
    return rc;
}

reel_rc reel_bodyindex_fill(reel_bodyindex_t *bx, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    if (bx->off_lo != bx->off_wlo || bx->off_hi != bx->off_whi) {
        /* The flows noted since the last commit join this run's range,
         * in the transaction that writes their rows. */
        sqlite3_bind_int64(bx->off_put, 1, (sqlite3_int64)bx->off_lo);
        sqlite3_bind_int64(bx->off_put, 2, (sqlite3_int64)bx->off_hi);
        if ((rc = step(bx, bx->off_put, err)) != REEL_OK)
            return rc;
        bx->off_wlo = bx->off_lo;
        bx->off_whi = bx->off_hi;
    }
    int64_t start = reel_mono_ns();
    if (!bx->bulk) {
        if (bx->last_ns == 0)
            bx->credit_ns = FTS_CREDIT_MAX_NS;
        else
            bx->credit_ns += (int64_t)((double)(start - bx->last_ns) * FTS_SHARE);
        if (bx->credit_ns > FTS_CREDIT_MAX_NS)
            bx->credit_ns = FTS_CREDIT_MAX_NS;
        bx->last_ns = start;
        if (bx->credit_ns <= 0)
            return REEL_OK;
    }
    int64_t after = 0;
    bool done = false;
    while (!done && rc == REEL_OK) {
        rc = fill_one(bx, &after, &done, err);
        if (!bx->bulk && reel_mono_ns() - start >= bx->credit_ns)
            break;
    }
    if (!bx->bulk) {
        int64_t end = reel_mono_ns();
        bx->credit_ns -= end - start;
        bx->last_ns = end;
    }
    return rc;
}

int reel_bodyindex_plain(const char *re, size_t len) {
    if (len < 3 || len > PLAIN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)re[i];
        if (c < 0x20 || c > 0x7e || strchr("\\^$.|?*+()[]{}", c) != NULL)
            return 0;
    }
    return 1;
}

char *reel_bodyindex_fts_query(const char *s, size_t len, int sides) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    if (sides == 1)
        reel_buf_puts(&b, "req : ");
    else if (sides == 2)
        reel_buf_puts(&b, "resp : ");
    reel_buf_puts(&b, "\"");
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"')
            reel_buf_puts(&b, "\"\"");
        else
            reel_buf_append(&b, &s[i], 1);
    }
    reel_buf_append(&b, "\"", 2);
    return (char *)b.data;
}

/* 1 if word w asks for FTS5 syntax. */
static int fts_syntax(const char *w) {
    static const char *const ops[] = {"AND", "OR", "NOT", "NEAR"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(w, ops[i]) == 0 || (strncmp(w, "NEAR(", 5) == 0 && i == 3))
            return 1;
    return strpbrk(w, "\"()") != NULL || strncmp(w, "req:", 4) == 0 ||
           strncmp(w, "resp:", 5) == 0 || strncmp(w, "-req:", 5) == 0 ||
           strncmp(w, "-resp:", 6) == 0 || strncmp(w, "{", 1) == 0;
}

/* Characters (UTF-8) of s[0..n): the trigram tokenizer counts those. */
static size_t utf8_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* The first string of FTS5 query text w that the trigram index cannot
 * find, being under 3 characters (a quoted phrase as a whole, or a bare
 * term; not the operators, a column name before ':', NEAR's distance),
 * in *at / *len; 0 if there is none. FTS5 finds nothing for such a
 * string, which read as "no flow has that". */
static int fts_short_string(const char *w, const char **at, size_t *len) {
    static const char syntax[] = " \t\"(){}:*^+,-";
    int braces = 0; /* inside {col1 col2}: column names */
    for (const char *p = w; *p;) {
        if (*p == '"') {
            const char *q = ++p;
            while (*q && !(q[0] == '"' && q[1] != '"'))
                q += q[0] == '"' ? 2 : 1;
            size_t quotes = 0; /* each "" is one '"' */
            for (const char *x = p; x < q; x++)
                quotes += *x == '"';
            if (utf8_chars(p, (size_t)(q - p)) - quotes / 2 < 3) {
                *at = p;
                *len = (size_t)(q - p);
                return 1;
            }
            p = *q ? q + 1 : q;
            continue;
        }
        if (strchr(syntax, *p)) {
            braces = *p == '{' ? 1 : *p == '}' ? 0 : braces;
            p++;
            continue;
        }
        const char *q = p;
        while (*q && !strchr(syntax, *q))
            q++;
        size_t n = (size_t)(q - p);
        int op = (n == 3 && (strncmp(p, "AND", 3) == 0 || strncmp(p, "NOT", 3) == 0)) ||
                 (n == 2 && strncmp(p, "OR", 2) == 0) || (n == 4 && strncmp(p, "NEAR", 4) == 0);
        int column = *q == ':' || braces;
        const char *before = p;
        while (before > w && (before[-1] == ' ' || before[-1] == '\t'))
            before--;
        int distance = before > w && before[-1] == ',' && strspn(p, "0123456789") == n;
        if (!op && !column && !distance && utf8_chars(p, n) < 3) {
            *at = p;
            *len = n;
            return 1;
        }
        p = q;
    }
    return 0;
}

reel_rc reel_bodyindex_search_query(const char *const *words, size_t n, char **out,
                                    reel_err_t *err) {
    *out = NULL;
    if (n == 0)
        return reel_err_set(err, REEL_INVALID, "nothing to search for");
    int raw = 0;
    for (size_t i = 0; i < n; i++)
        raw |= fts_syntax(words[i]);
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            reel_buf_puts(&b, raw ? " " : " AND ");
        /* With FTS syntax, a word of it goes as it is; a plain word (also
         * one the shell's quotes made of several: `"user id" OR x` arrives
         * as `user id`, `OR`, `x`) is a phrase, checked as without syntax:
         * as it was, `id` in it matched nearly every flow. */
        const char *at;
        size_t alen;
        if (raw && fts_syntax(words[i])) {
            if (fts_short_string(words[i], &at, &alen)) {
                reel_buf_free(&b);
                return reel_err_set(err, REEL_INVALID,
                                    "'%.*s' in '%s' is too short: the body index finds strings "
                                    "of 3 characters or more (reel flows SESSION '~b REGEX' "
                                    "reads the spool instead)",
                                    (int)alen, at, words[i]);
            }
            reel_buf_puts(&b, words[i]);
            continue;
        }
        size_t len = strlen(words[i]);
        if (utf8_chars(words[i], len) < 3) {
            reel_buf_free(&b);
            return reel_err_set(err, REEL_INVALID,
                                "'%s' is too short: the body index finds strings of 3 characters "
                                "or more (reel flows SESSION '~b REGEX' reads the spool instead)",
                                words[i]);
        }
        char *p = reel_bodyindex_fts_query(words[i], len, 3);
        reel_buf_puts(&b, p);
        free(p);
    }
    reel_buf_append(&b, "", 1);
    *out = (char *)b.data;
    return REEL_OK;
}

/* ---- reel_snippet() ------------------------------------------------------ */

/* The byte offsets of the tokens from..to-1 of a text, read as FTS5
 * tokenizes it; next counts the tokens read so far. */
typedef struct {
    int from, to, next;
    int *start, *end;
} snip_tokens_t;

static int snip_token(void *ctx, int flags, const char *tok, int ntok, int start, int end) {
    (void)tok;
    (void)ntok;
    snip_tokens_t *t = ctx;
    if (flags & FTS5_TOKEN_COLOCATED) /* a synonym: the position of the token before */
        return SQLITE_OK;
    int i = t->next++;
    if (i >= t->to)
        return SQLITE_DONE; /* no need to read on */
    if (i >= t->from) {
        t->start[i - t->from] = start;
        t->end[i - t->from] = end;
    }
    return SQLITE_OK;
}

static void reel_snippet(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx,
                         int argc, sqlite3_value **argv) {
    if (argc != 5) {
        sqlite3_result_error(ctx, "reel_snippet: wants 5 arguments after the table", -1);
        return;
    }
    int col = sqlite3_value_int(argv[0]), ntok = sqlite3_value_int(argv[4]);
    const char *on = (const char *)sqlite3_value_text(argv[1]);
    const char *off = (const char *)sqlite3_value_text(argv[2]);
    const char *ell = (const char *)sqlite3_value_text(argv[3]);
    on = on ? on : "";
    off = off ? off : "";
    ell = ell ? ell : "";
    ntok = ntok < 1 ? 1 : ntok > 1024 ? 1024 : ntok;
    const char *text = NULL;
    int n = 0, ninst = 0, rc = api->xColumnText(fts, col, &text, &n);
    if (rc == SQLITE_OK)
        rc = api->xInstCount(fts, &ninst);
    if (rc != SQLITE_OK) {
        sqlite3_result_error_code(ctx, rc);
        return;
    }
    /* the window: from a quarter of it before the first match on, and on
     * to the end of the last match that begins in it */
    int first = -1, ph, c, o;
    for (int i = 0; i < ninst; i++)
        if (api->xInst(fts, i, &ph, &c, &o) == SQLITE_OK && c == col && (first < 0 || o < first))
            first = o;
    int from = first > ntok / 4 ? first - ntok / 4 : 0, to = from + ntok;
    for (int i = 0; i < ninst; i++)
        if (api->xInst(fts, i, &ph, &c, &o) == SQLITE_OK && c == col && o >= from &&
            o < from + ntok && o + api->xPhraseSize(fts, ph) > to)
            to = o + api->xPhraseSize(fts, ph);
    snip_tokens_t t = {.from = from, .to = to};
    t.start = reel_calloc((size_t)(to - from), sizeof *t.start);
    t.end = reel_calloc((size_t)(to - from), sizeof *t.end);
    rc = text && n > 0 ? api->xTokenize(fts, text, n, &t, snip_token) : SQLITE_OK;
    int got = (t.next < to ? t.next : to) - from; /* tokens of the window the text has */
    if (rc != SQLITE_OK && rc != SQLITE_DONE) {
        sqlite3_result_error_code(ctx, rc);
    } else {
        /* no token (a text shorter than a trigram): the text, no match */
        int wb = got > 0 ? t.start[0] : 0, we = got > 0 ? t.end[got - 1] : n;
        for (int k = 1; k < got; k++) /* tokens need not come in order of bytes */
            we = t.end[k] > we ? t.end[k] : we;
        char *lit = reel_calloc((size_t)(we - wb) + 1, 1); /* which bytes are a match's */
        for (int i = 0; i < ninst; i++) {
            if (api->xInst(fts, i, &ph, &c, &o) != SQLITE_OK || c != col || o < from ||
                o - from >= got)
                continue;
            int last = o + api->xPhraseSize(fts, ph) - 1 - from;
            last = last >= got ? got - 1 : last;
            for (int b = t.start[o - from]; b < t.end[last] && b < we; b++)
                if (b >= wb)
                    lit[b - wb] = 1;
        }
        reel_buf_t out;
        reel_buf_init(&out, 0);
        if (wb > 0)
            reel_buf_puts(&out, ell);
        for (int b = wb; b < we; b++) {
            if (lit[b - wb] && (b == wb || !lit[b - wb - 1]))
                reel_buf_puts(&out, on);
            /* control bytes as spaces: the markers are control bytes
             * (reel search's \x01 and \x02), which a body may hold */
            char ch = (unsigned char)text[b] < 0x20 || text[b] == 0x7f ? ' ' : text[b];
            reel_buf_append(&out, &ch, 1);
            if (lit[b - wb] && (b + 1 == we || !lit[b - wb + 1]))
                reel_buf_puts(&out, off);
        }
        if (we < n)
            reel_buf_puts(&out, ell);
        sqlite3_result_text(ctx, out.data ? (const char *)out.data : "", (int)out.len,
                            SQLITE_TRANSIENT);
        reel_buf_free(&out);
        free(lit);
    }
    free(t.start);
    free(t.end);
}

void reel_bodyindex_register(sqlite3 *db) {
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (api != NULL && api->iVersion >= 2)
        api->xCreateFunction(api, "reel_snippet", NULL, reel_snippet, NULL);
}
