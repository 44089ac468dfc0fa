/* Recorder: producer API on the caller's thread, disk work on a writer
 * thread. See recorder.h for the contract and docs/format.md for what ends
 * up on disk.
 *
 * Queue discipline: producers append encoded records to a singly linked
 * list under `mu`; the writer swaps the whole list out at once, so the lock
 * is held for O(1) per wake-up. `queue_bytes` bounds what is queued
 * (`queued_bytes`) plus what the writer swapped out and has not yet copied
 * into a block (`writer_bytes`), so memory stays bounded by it, not twice
 * it. Records are numbered; `done_seq` is the number of the last record that is in the
 * spool (and fsynced per policy) and indexed, which is what flush waits
 * for. */
#include "session/recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "flow.pb-c.h"
#include "session/index.h"
#include "session/spool.h"

/* Work for the index thread: a frame to index (raw != NULL) or the end of
 * a batch whose frames are synced, to commit (commit = 1). */
typedef struct ijob {
    struct ijob *next;
    int commit, quit;
    uint32_t segment;
    uint64_t off;
    size_t clen;
    reel_buf_t raw;
    uint64_t last_seq;
} ijob;

/* Frames queued for indexing before the writer waits (each holds its
 * block, up to 256 KiB). */
#define IJOB_MAX 16

typedef struct item {
    struct item *next;
    uint64_t seq;
    size_t len;
    uint8_t data[];
} item;

struct reel_recorder {
    reel_session_t *session;
    reel_recorder_opts_t opts;

    /* producer side (caller's thread) */
    uint64_t next_flow_id;
    uint64_t body_limit;
    reel_capture_mode capture;
    int warned_behind;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_space, cv_done;
    item *head, *tail;
    size_t queued_bytes, writer_bytes;
    uint64_t enq_seq, done_seq;
    int stop, flush_req;
    reel_rc sticky;
    char sticky_msg[REEL_ERR_MSG_MAX];
    reel_recorder_stats_t stats;

    /* writer -> index thread queue, under mu */
    struct ijob *ihead, *itail;
    unsigned ijobs;
    pthread_cond_t cv_ijob, cv_ispace;
    pthread_t ithread;
    int index_failed;

    /* writer thread only */
    pthread_t thread;
    sqlite3 *wdb;
    reel_indexer_t *ix;
    reel_spool_enc_t *enc;
    reel_buf_t block, frame;
    uint64_t block_last_seq;  /* last record in the block being filled */
    uint64_t batch_last_seq;  /* last record in a frame written in this batch */
    int in_tx;                /* index thread: a transaction is open */
    int unsynced;             /* frames written since the last fdatasync */
    uint64_t batch_start_size; /* segment size when the batch began */
    int64_t batch_start_ns;
    uint64_t block_records;
    int64_t block_deadline_ns;
    uint32_t segment;
    int seg_fd;
    uint64_t seg_size;
    int64_t last_fsync_ns;
    int disk_failed;
};

struct reel_rflow {
    reel_recorder_t *rec;
    uint64_t id;
    uint64_t limit;
    uint64_t req_seen, req_stored, resp_seen, resp_stored;
    uint64_t dropped;
    int64_t body_time_us; /* explicit time of the last head (imports); 0 = use now */
};

void reel_recorder_opts_default(reel_recorder_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->fsync = REEL_FSYNC_BLOCK;
    o->fsync_interval_ms = 1000;
    o->segment_size = 128ull << 20;
    o->body_limit = 64ull << 20;
    o->capture = REEL_CAPTURE_ON;
    o->queue_bytes = 16u << 20;
    o->zstd_level = 3;
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void warn(reel_recorder_t *r, const char *msg) {
    if (r->opts.warn)
        r->opts.warn(r->opts.warn_ctx, msg);
    else
        fprintf(stderr, "reel: %s\n", msg);
}

/* ---- writer thread ---- */

static reel_rc open_segment(reel_recorder_t *r, uint32_t n, reel_err_t *err) {
    char name[16];
    reel_spool_segment_name(n, name);
    char *p = reel_asprintf("%s/%s", reel_session_spool_dir(r->session), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    reel_rc rc = REEL_OK;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot open spool segment %s", p);
        if (fd >= 0)
            close(fd);
    } else {
        if (r->seg_fd >= 0)
            close(r->seg_fd);
        r->seg_fd = fd;
        r->segment = n;
        r->seg_size = (uint64_t)st.st_size;
        /* A new segment's directory entry must survive a crash too. */
        int dfd = open(reel_session_spool_dir(r->session), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    free(p);
    return rc;
}

static void set_sticky(reel_recorder_t *r, reel_rc rc, const char *msg) {
    pthread_mutex_lock(&r->mu);
    if (r->sticky == REEL_OK) {
        r->sticky = rc;
        snprintf(r->sticky_msg, sizeof r->sticky_msg, "%s", msg);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Hands a job to the index thread, waiting while IJOB_MAX frames are
 * queued (commit markers never wait: the writer must not stall a batch). */
static void push_ijob(reel_recorder_t *r, ijob *j) {
    pthread_mutex_lock(&r->mu);
    while (!j->commit && !j->quit && r->ijobs >= IJOB_MAX)
        pthread_cond_wait(&r->cv_ispace, &r->mu);
    if (r->itail)
        r->itail->next = j;
    else
        r->ihead = j;
    r->itail = j;
    r->ijobs++;
    pthread_cond_signal(&r->cv_ijob);
    pthread_mutex_unlock(&r->mu);
}

static reel_rc write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return REEL_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return REEL_OK;
}

static void disk_failure(reel_recorder_t *r, reel_rc rc, const reel_err_t *err) {
    r->disk_failed = 1;
    char msg[REEL_ERR_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "capture stopped: %s (traffic is still forwarded)", reel_err_str(err));
    warn(r, msg);
    set_sticky(r, rc, reel_err_str(err));
}

static int sync_due(reel_recorder_t *r) {
    if (!r->unsynced)
        return 0;
    if (r->opts.fsync == REEL_FSYNC_BLOCK)
        return 1;
    return r->opts.fsync == REEL_FSYNC_INTERVAL &&
           mono_ns() - r->last_fsync_ns >= (int64_t)r->opts.fsync_interval_ms * 1000000;
}

static reel_rc sync_segment(reel_recorder_t *r, reel_err_t *err) {
    if (fdatasync(r->seg_fd) != 0)
        return reel_err_errno(err, REEL_IO, errno, "syncing spool segment %08u.zst", r->segment);
    r->unsynced = 0;
    r->last_fsync_ns = mono_ns();
    return REEL_OK;
}

/* Compresses the current block into a frame, appends it to the segment and
 * adds it to the open index transaction. Syncing and committing happen
 * once per batch, in batch_end. */
static void frame_out(reel_recorder_t *r) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = REEL_OK;
    if (r->block.len == 0)
        return;
    if (r->disk_failed)
        goto done;
    if ((rc = reel_spool_enc_frame(r->enc, r->block.data, r->block.len, &r->frame, &err)) !=
        REEL_OK)
        goto fail;
    if (r->seg_size > 0 && r->seg_size + r->frame.len > r->opts.segment_size) {
        /* A finished segment is synced before the next one starts. */
        if (r->opts.fsync != REEL_FSYNC_NEVER && r->unsynced &&
            (rc = sync_segment(r, &err)) != REEL_OK)
            goto fail;
        if ((rc = open_segment(r, r->segment + 1, &err)) != REEL_OK)
            goto fail;
    }
    uint64_t off = r->seg_size;
    if (write_all(r->seg_fd, r->frame.data, r->frame.len) != REEL_OK) {
        int e = errno;
        /* Leave the segment ending on a frame boundary. */
        if (ftruncate(r->seg_fd, (off_t)off) != 0) {
            /* recovery moves a partial frame aside on the next open */
        }
        rc = reel_err_errno(&err, REEL_IO, e, "writing spool segment %08u.zst", r->segment);
        goto fail;
    }
    r->seg_size += r->frame.len;
    r->unsynced = 1;
    {
        /* The block moves to the index thread; a fresh one is started. */
        ijob *j = reel_calloc(1, sizeof *j);
        j->segment = r->segment;
        j->off = off;
        j->clen = r->frame.len;
        j->raw = r->block;
        reel_buf_init(&r->block, 0);
        push_ijob(r, j);
    }
    r->batch_last_seq = r->block_last_seq;
    pthread_mutex_lock(&r->mu);
    r->stats.frames++;
    r->stats.raw_bytes += r->block.len;
    r->stats.spool_bytes += r->frame.len;
    r->stats.records += r->block_records;
    pthread_mutex_unlock(&r->mu);
    goto done;
fail:
    disk_failure(r, rc, &err);
done:
    if (r->disk_failed)
        r->batch_last_seq = r->block_last_seq; /* dropped, but nobody may wait for it */
    reel_buf_reset(&r->block);
    r->block_records = 0;
}

/* Ends a batch: syncs the spool (per the policy), then commits the index,
 * so the index never refers to bytes that a crash could lose; then wakes
 * flushers. One sync and one commit cover every frame written since the
 * last batch: under load that is many frames (group commit). */
static void batch_end(reel_recorder_t *r) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = REEL_OK;
    if (!r->disk_failed && sync_due(r) && (rc = sync_segment(r, &err)) != REEL_OK)
        disk_failure(r, rc, &err);
    ijob *j = reel_calloc(1, sizeof *j);
    j->commit = 1;
    j->last_seq = r->batch_last_seq;
    push_ijob(r, j);
}

/* ---- index thread ---- */

static void index_failure(reel_recorder_t *r, reel_rc rc, const reel_err_t *err) {
    if (r->in_tx) {
        reel_indexer_rollback(r->ix);
        r->in_tx = 0;
    }
    if (!r->index_failed) {
        r->index_failed = 1;
        char msg[REEL_ERR_MSG_MAX + 96];
        snprintf(msg, sizeof msg,
                 "indexing stopped: %s (the spool keeps recording; the next open indexes it)",
                 reel_err_str(err));
        warn(r, msg);
        set_sticky(r, rc, reel_err_str(err));
    }
}

static void *index_main(void *arg) {
    reel_recorder_t *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->ihead == NULL)
            pthread_cond_wait(&r->cv_ijob, &r->mu);
        ijob *j = r->ihead;
        r->ihead = j->next;
        if (r->ihead == NULL)
            r->itail = NULL;
        r->ijobs--;
        pthread_cond_signal(&r->cv_ispace);
        pthread_mutex_unlock(&r->mu);

        reel_err_t err;
        reel_err_clear(&err);
        reel_rc rc = REEL_OK;
        if (j->quit) {
            free(j);
            break;
        }
        if (!j->commit && !r->index_failed) {
            if (!r->in_tx) {
                if ((rc = reel_indexer_begin(r->ix, &err)) == REEL_OK)
                    r->in_tx = 1;
            }
            if (rc == REEL_OK)
                rc = reel_indexer_add_frame(r->ix, j->segment, j->off, j->clen, j->raw.data,
                                            j->raw.len, &err);
            if (rc != REEL_OK)
                index_failure(r, rc, &err);
        } else if (j->commit) {
            if (r->in_tx && !r->index_failed) {
                r->in_tx = 0;
                if ((rc = reel_indexer_commit(r->ix, &err)) != REEL_OK)
                    index_failure(r, rc, &err);
            }
            pthread_mutex_lock(&r->mu);
            if (r->done_seq < j->last_seq)
                r->done_seq = j->last_seq;
            pthread_cond_broadcast(&r->cv_done);
            pthread_mutex_unlock(&r->mu);
        }
        reel_buf_free(&j->raw);
        free(j);
    }
    if (r->in_tx) {
        reel_indexer_rollback(r->ix);
        r->in_tx = 0;
    }
    return NULL;
}

/* The writer has copied n bytes of its swapped-out list into blocks: they
 * no longer count against queue_bytes. */
static void release_queue_bytes(reel_recorder_t *r, size_t n) {
    if (n == 0)
        return;
    pthread_mutex_lock(&r->mu);
    r->writer_bytes -= n;
    pthread_cond_broadcast(&r->cv_space);
    pthread_mutex_unlock(&r->mu);
}

static void *writer_main(void *arg) {
    reel_recorder_t *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->head == NULL && !r->stop && !r->flush_req) {
            if (r->block.len == 0) {
                pthread_cond_wait(&r->cv_work, &r->mu);
            } else {
                int64_t left = r->block_deadline_ns - mono_ns();
                if (left <= 0)
                    break;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t t = (int64_t)ts.tv_nsec + left;
                ts.tv_sec += t / 1000000000;
                ts.tv_nsec = t % 1000000000;
                pthread_cond_timedwait(&r->cv_work, &r->mu, &ts);
            }
        }
        item *list = r->head;
        r->head = r->tail = NULL;
        r->writer_bytes += r->queued_bytes;
        r->queued_bytes = 0;
        int stop = r->stop, flush = r->flush_req;
        r->flush_req = 0;
        pthread_cond_broadcast(&r->cv_space);
        pthread_mutex_unlock(&r->mu);

        size_t copied = 0;
        while (list) {
            item *it = list;
            list = it->next;
            if (r->block.len == 0)
                r->block_deadline_ns = mono_ns() + 100 * 1000000;
            if (r->block.len + it->len + 10 > REEL_SPOOL_BLOCK_TARGET && r->block.len) {
                release_queue_bytes(r, copied);
                copied = 0;
                frame_out(r);
            }
            if (r->block.len == 0)
                r->block_deadline_ns = mono_ns() + 100 * 1000000;
            if (reel_spool_block_append(&r->block, it->data, it->len) != REEL_OK) {
                /* cannot happen: producers split records below the limit */
                warn(r, "internal error: record too large for a block; dropped");
            }
            r->block_records++;
            r->block_last_seq = it->seq;
            copied += it->len;
            free(it);
        }
        release_queue_bytes(r, copied);
        if (r->block.len && (stop || flush || mono_ns() >= r->block_deadline_ns ||
                             r->block.len >= REEL_SPOOL_BLOCK_TARGET))
            frame_out(r);
        /* End the batch (sync + commit) when the queue has run dry, or when
         * enough has piled up: under load one fdatasync then covers many
         * frames, and nothing counts as done before its frame is synced. */
        pthread_mutex_lock(&r->mu);
        int more = r->head != NULL;
        pthread_mutex_unlock(&r->mu);
        if (!more || stop || flush || r->seg_size - r->batch_start_size >= (4u << 20) ||
            mono_ns() - r->batch_start_ns >= 50 * 1000000) {
            batch_end(r);
            r->batch_start_size = r->seg_size;
            r->batch_start_ns = mono_ns();
        }
        if (stop) {
            pthread_mutex_lock(&r->mu);
            int empty = r->head == NULL;
            pthread_mutex_unlock(&r->mu);
            if (empty)
                break;
        }
    }
    return NULL;
}

/* ---- producer side ---- */

static void enqueue(reel_recorder_t *r, reel_rflow_t *f, const Reel__Record *rec, int force) {
    size_t len = reel__record__get_packed_size(rec);
    item *it = reel_malloc(sizeof *it + len);
    it->next = NULL;
    it->len = len;
    reel__record__pack(rec, it->data);
    pthread_mutex_lock(&r->mu);
    if (!force && r->queued_bytes + r->writer_bytes + len > r->opts.queue_bytes &&
        (r->head || r->writer_bytes)) {
        if (r->capture == REEL_CAPTURE_LOSSLESS) {
            while (r->queued_bytes + r->writer_bytes + len > r->opts.queue_bytes &&
                   (r->head || r->writer_bytes))
                pthread_cond_wait(&r->cv_space, &r->mu);
        } else {
            r->stats.dropped_records++;
            pthread_mutex_unlock(&r->mu);
            free(it);
            if (f)
                f->dropped++;
            if (!r->warned_behind) {
                r->warned_behind = 1;
                warn(r, "capture is falling behind the disk: records are being dropped and the "
                        "affected flows marked with an error (set capture=lossless to slow "
                        "traffic down instead)");
            }
            return;
        }
    }
    it->seq = ++r->enq_seq;
    if (r->tail)
        r->tail->next = it;
    else
        r->head = it;
    r->tail = it;
    r->queued_bytes += len;
    pthread_cond_signal(&r->cv_work);
    pthread_mutex_unlock(&r->mu);
}

static int64_t now_or(int64_t t) {
    return t ? t : reel_now_us();
}

static void uuid4(char out[37]) {
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        for (size_t i = 0; i < sizeof b; i++) /* not for security: a label */
            b[i] = (uint8_t)(rand() & 0xff);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

reel_rc reel_recorder_open(reel_session_t *s, const reel_recorder_opts_t *opts,
                           reel_recorder_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *out = NULL;
    if (!reel_session_is_recording(s))
        return reel_err_set(err, REEL_INVALID, "session '%s' was not opened for recording",
                            reel_session_name(s));
    reel_recorder_t *r = reel_calloc(1, sizeof *r);
    r->session = s;
    if (opts)
        r->opts = *opts;
    else
        reel_recorder_opts_default(&r->opts);
    if (r->opts.queue_bytes == 0)
        r->opts.queue_bytes = 16u << 20;
    if (r->opts.segment_size < (1u << 20))
        r->opts.segment_size = 1u << 20;
    r->body_limit = r->opts.body_limit;
    r->capture = r->opts.capture;
    r->seg_fd = -1;
    reel_buf_init(&r->block, 0);
    reel_buf_init(&r->frame, 0);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv_work, NULL);
    pthread_cond_init(&r->cv_space, NULL);
    pthread_cond_init(&r->cv_done, NULL);
    pthread_cond_init(&r->cv_ijob, NULL);
    pthread_cond_init(&r->cv_ispace, NULL);
    r->next_flow_id = reel_index_max_flow_id(reel_session_db(s)) + 1;
    char *dbpath = reel_asprintf("%s/session.db", reel_session_path(s));
    rc = reel_index_open(dbpath, 0, &r->wdb, err);
    free(dbpath);
    if (rc != REEL_OK)
        goto out;
    if ((rc = reel_indexer_new(r->wdb, &r->ix, err)) != REEL_OK)
        goto out;
    r->enc = reel_spool_enc_new(r->opts.zstd_level);
    /* Append to the newest segment: recovery left it ending on a frame. */
    uint32_t last = 0;
    {
        char *p = NULL;
        for (uint32_t n = reel_index_last_segment(reel_session_db(s)) + 1;; n++) {
            char name[16];
            reel_spool_segment_name(n, name);
            free(p);
            p = reel_asprintf("%s/%s", reel_session_spool_dir(s), name);
            if (access(p, F_OK) != 0)
                break;
            last = n;
        }
        free(p);
        if (last == 0)
            last = reel_index_last_segment(reel_session_db(s));
    }
    if ((rc = open_segment(r, last ? last : 1, err)) != REEL_OK)
        goto out;
    if (r->seg_size >= r->opts.segment_size && (rc = open_segment(r, r->segment + 1, err)) != REEL_OK)
        goto out;
    if (pthread_create(&r->ithread, NULL, index_main, r) != 0) {
        rc = reel_err_set(err, REEL_ERROR, "cannot start the index thread");
        goto out;
    }
    if (pthread_create(&r->thread, NULL, writer_main, r) != 0) {
        ijob *q = reel_calloc(1, sizeof *q);
        q->quit = 1;
        push_ijob(r, q);
        pthread_join(r->ithread, NULL);
        rc = reel_err_set(err, REEL_ERROR, "cannot start the writer thread");
        goto out;
    }
out:
    if (rc != REEL_OK) {
        reel_indexer_free(r->ix);
        sqlite3_close_v2(r->wdb);
        reel_spool_enc_free(r->enc);
        if (r->seg_fd >= 0)
            close(r->seg_fd);
        reel_buf_free(&r->block);
        reel_buf_free(&r->frame);
        free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

void reel_recorder_set_limits(reel_recorder_t *rec, uint64_t body_limit, reel_capture_mode capture) {
    rec->body_limit = body_limit;
    rec->capture = capture;
}

reel_rflow_t *reel_recorder_flow_start(reel_recorder_t *r, const reel_flow_info_t *info) {
    reel_rflow_t *f = reel_calloc(1, sizeof *f);
    f->rec = r;
    f->limit = r->body_limit;
    if (r->capture == REEL_CAPTURE_OFF)
        return f;
    f->id = r->next_flow_id++;
    char uuid[37];
    uuid4(uuid);
    Reel__FlowStart st = REEL__FLOW_START__INIT;
    st.uuid = uuid;
    st.kind = info && info->kind == REEL_FLOW_TUNNEL ? REEL__FLOW_KIND__FLOW_KIND_TUNNEL
                                                     : REEL__FLOW_KIND__FLOW_KIND_HTTP;
    st.client_addr = (char *)(info && info->client_addr ? info->client_addr : "");
    st.server_addr = (char *)(info && info->server_addr ? info->server_addr : "");
    st.source = (char *)(info && info->source ? info->source : "proxy");
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(info ? info->time_us : 0);
    rec.event_case = REEL__RECORD__EVENT_START;
    rec.start = &st;
    enqueue(r, f, &rec, 0);
    pthread_mutex_lock(&r->mu);
    r->stats.flows++;
    pthread_mutex_unlock(&r->mu);
    return f;
}

uint64_t reel_rflow_id(const reel_rflow_t *f) {
    return f->id;
}

static Reel__Header **headers_pb(const reel_header_t *h, size_t n, Reel__Header *store) {
    Reel__Header **v = reel_malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        reel__header__init(&store[i]);
        store[i].name.data = (uint8_t *)h[i].name;
        store[i].name.len = h[i].name_len;
        store[i].value.data = (uint8_t *)h[i].value;
        store[i].value.len = h[i].value_len;
        v[i] = &store[i];
    }
    return v;
}

static ProtobufCBinaryData bin(const char *s) {
    ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)s};
    return b;
}

void reel_recorder_request_head(reel_rflow_t *f, const reel_request_head_t *h) {
    if (f->id == 0 || f->dropped)
        return;
    Reel__Header *store = reel_malloc((h->n_headers ? h->n_headers : 1) * sizeof *store);
    Reel__RequestHead rh = REEL__REQUEST_HEAD__INIT;
    rh.method = bin(h->method);
    rh.scheme = (char *)(h->scheme ? h->scheme : "http");
    rh.host = bin(h->host);
    rh.port = h->port;
    rh.target = bin(h->target);
    rh.http_version = (char *)(h->http_version ? h->http_version : "HTTP/1.1");
    rh.n_headers = h->n_headers;
    rh.headers = headers_pb(h->headers, h->n_headers, store);
    rh.body_decoded = h->body_decoded != 0;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(h->time_us);
    rec.event_case = REEL__RECORD__EVENT_REQUEST_HEAD;
    rec.request_head = &rh;
    f->body_time_us = h->time_us;
    enqueue(f->rec, f, &rec, 0);
    free(rh.headers);
    free(store);
}

void reel_recorder_response_head(reel_rflow_t *f, const reel_response_head_t *h) {
    if (f->id == 0 || f->dropped)
        return;
    Reel__Header *store = reel_malloc((h->n_headers ? h->n_headers : 1) * sizeof *store);
    Reel__ResponseHead rh = REEL__RESPONSE_HEAD__INIT;
    rh.status = h->status;
    rh.reason = bin(h->reason);
    rh.http_version = (char *)(h->http_version ? h->http_version : "HTTP/1.1");
    rh.n_headers = h->n_headers;
    rh.headers = headers_pb(h->headers, h->n_headers, store);
    rh.body_decoded = h->body_decoded != 0;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(h->time_us);
    rec.event_case = REEL__RECORD__EVENT_RESPONSE_HEAD;
    rec.response_head = &rh;
    f->body_time_us = h->time_us;
    enqueue(f->rec, f, &rec, 0);
    free(rh.headers);
    free(store);
}

static void body(reel_rflow_t *f, int response, const void *data, size_t len) {
    uint64_t *seen = response ? &f->resp_seen : &f->req_seen;
    uint64_t *stored = response ? &f->resp_stored : &f->req_stored;
    *seen += len;
    if (f->id == 0 || f->dropped)
        return;
    size_t room = *stored >= f->limit ? 0 : (size_t)(f->limit - *stored < len ? f->limit - *stored : len);
    const uint8_t *p = data;
    int64_t t = now_or(f->body_time_us);
    while (room) {
        size_t n = room < REEL_SPOOL_CHUNK ? room : REEL_SPOOL_CHUNK;
        Reel__BodyChunk bc = REEL__BODY_CHUNK__INIT;
        bc.data.data = (uint8_t *)p;
        bc.data.len = n;
        Reel__Record rec = REEL__RECORD__INIT;
        rec.flow_id = f->id;
        rec.time_us = t;
        rec.event_case = response ? REEL__RECORD__EVENT_RESPONSE_BODY : REEL__RECORD__EVENT_REQUEST_BODY;
        if (response)
            rec.response_body = &bc;
        else
            rec.request_body = &bc;
        enqueue(f->rec, f, &rec, 0);
        if (f->dropped)
            return;
        *stored += n;
        p += n;
        room -= n;
    }
}

void reel_recorder_request_body(reel_rflow_t *f, const void *data, size_t len) {
    body(f, 0, data, len);
}

void reel_recorder_response_body(reel_rflow_t *f, const void *data, size_t len) {
    body(f, 1, data, len);
}

static void end_with_error(reel_rflow_t *f, const char *message, int64_t time_us) {
    Reel__FlowError fe = REEL__FLOW_ERROR__INIT;
    fe.message = (char *)message;
    fe.request_body_size = f->req_seen;
    fe.response_body_size = f->resp_seen;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(time_us);
    rec.event_case = REEL__RECORD__EVENT_ERROR;
    rec.error = &fe;
    enqueue(f->rec, NULL, &rec, 1);
}

void reel_recorder_flow_end(reel_rflow_t *f, const reel_timings_t *timings, int64_t time_us,
                            int64_t request_end_us, int64_t response_start_us) {
    if (f == NULL)
        return;
    if (f->id && f->dropped) {
        char msg[160];
        snprintf(msg, sizeof msg, "capture fell behind the disk: %llu records of this flow were not recorded",
                 (unsigned long long)f->dropped);
        end_with_error(f, msg, time_us);
    } else if (f->id) {
        Reel__FlowEnd fe = REEL__FLOW_END__INIT;
        Reel__Timings tm = REEL__TIMINGS__INIT;
        fe.request_body_size = f->req_seen;
        fe.response_body_size = f->resp_seen;
        fe.request_truncated = f->req_seen > f->req_stored;
        fe.response_truncated = f->resp_seen > f->resp_stored;
        fe.request_end_us = request_end_us;
        fe.response_start_us = response_start_us;
        if (timings) {
            tm.blocked_us = timings->blocked_us;
            tm.dns_us = timings->dns_us;
            tm.connect_us = timings->connect_us;
            tm.send_us = timings->send_us;
            tm.wait_us = timings->wait_us;
            tm.receive_us = timings->receive_us;
            tm.ssl_us = timings->ssl_us;
            fe.timings = &tm;
        }
        Reel__Record rec = REEL__RECORD__INIT;
        rec.flow_id = f->id;
        rec.time_us = now_or(time_us);
        rec.event_case = REEL__RECORD__EVENT_END;
        rec.end = &fe;
        enqueue(f->rec, NULL, &rec, 1);
    }
    free(f);
}

void reel_recorder_flow_error(reel_rflow_t *f, const char *message, int64_t time_us) {
    if (f == NULL)
        return;
    if (f->id) {
        char msg[REEL_ERR_MSG_MAX];
        if (f->dropped)
            snprintf(msg, sizeof msg, "%s (and capture fell behind: %llu records not recorded)",
                     message, (unsigned long long)f->dropped);
        else
            snprintf(msg, sizeof msg, "%s", message);
        end_with_error(f, msg, time_us);
    }
    free(f);
}

reel_rc reel_recorder_flush(reel_recorder_t *r, reel_err_t *err) {
    pthread_mutex_lock(&r->mu);
    uint64_t target = r->enq_seq;
    r->flush_req = 1;
    pthread_cond_signal(&r->cv_work);
    while (r->done_seq < target && r->sticky == REEL_OK)
        pthread_cond_wait(&r->cv_done, &r->mu);
    reel_rc rc = r->sticky;
    if (rc != REEL_OK)
        reel_err_set(err, rc, "%s", r->sticky_msg);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void reel_recorder_stats(reel_recorder_t *r, reel_recorder_stats_t *out) {
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    pthread_mutex_unlock(&r->mu);
}

reel_rc reel_recorder_close(reel_recorder_t *r, reel_err_t *err) {
    if (r == NULL)
        return REEL_OK;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_signal(&r->cv_work);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    ijob *q = reel_calloc(1, sizeof *q);
    q->quit = 1;
    push_ijob(r, q);
    pthread_join(r->ithread, NULL);
    reel_rc rc = r->sticky;
    if (rc != REEL_OK)
        reel_err_set(err, rc, "%s", r->sticky_msg);
    if (r->seg_fd >= 0) {
        if (r->opts.fsync != REEL_FSYNC_NEVER && fdatasync(r->seg_fd) != 0 && rc == REEL_OK)
            rc = reel_err_errno(err, REEL_IO, errno, "syncing spool segment");
        close(r->seg_fd);
    }
    reel_indexer_free(r->ix);
    sqlite3_close_v2(r->wdb);
    reel_spool_enc_free(r->enc);
    reel_buf_free(&r->block);
    reel_buf_free(&r->frame);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv_work);
    pthread_cond_destroy(&r->cv_space);
    pthread_cond_destroy(&r->cv_done);
    pthread_cond_destroy(&r->cv_ijob);
    pthread_cond_destroy(&r->cv_ispace);
    free(r);
    return rc;
}
