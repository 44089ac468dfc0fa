/* Recorder: producer API on the caller's thread, disk work on a writer
 * thread, a sync thread and an index thread. See recorder.h for the contract and
 * docs/format.md for what ends up on disk.
 *
 * Queue discipline: producers append encoded records to a singly linked
 * list under `mu`; the writer swaps the whole list out at once, so the lock
 * is held for O(1) per wake-up. `queue_bytes` bounds what is queued
 * (`queued_bytes`) plus what the writer swapped out and has not yet copied
 * into a block (`writer_bytes`), so memory stays bounded by it, not twice
 * it (plus the blocks on their way to the index thread, IJOB_BYTES_MAX at
 * most, and BLOCK_POOL kept for reuse).
 * With capture on, body chunks may fill 7/8 of it and are shed past that;
 * the last 1/8 is kept for starts, heads and ends (see shed_body). Records
 * are numbered; `done_seq` is the number of the last record the writer has
 * dealt with: in the spool (and fsynced per policy) and indexed, or
 * dropped. That is what flush waits for.
 *
 * Syncing. The writer never calls fdatasync in the steady state: it
 * publishes how far it has written (`written_*`), a sync thread runs
 * fdatasync whenever that moved (group commit: one call covers every frame
 * written before it started) and publishes `synced_*`; with fsync block the
 * index thread commits a batch only once `synced_*` covers its end. So a
 * slow fdatasync delays when records count as done, not how fast the
 * writer compresses and appends.
 *
 * Disk errors. When a frame cannot be written, the writer cuts the segment
 * back to the end of its last whole frame and stops capture: every record
 * it takes from the queue is dropped, and the flows they belong to go into
 * the `lost` map (flow id -> what was lost). Every retry_ms it checks the
 * file system (the segment still exists, it is writable, it has room, a
 * test file can be written); when that passes capture resumes. Records of
 * a flow in the `lost` map are dropped from then on too, so no flow is ever
 * stored with a hole in it: a flow whose start was lost is left out
 * entirely, and a flow whose start is on disk gets one error record in
 * place of its end ("capture was stopped while this flow was running ...").
 * The map holds only flows that were running during an outage; each entry
 * goes when the flow's last record comes by.
 *
 * Index errors. When the index thread cannot write session.db (full disk:
 * SQLITE_FULL at commit), it rolls back, remembers the spool position of
 * the first frame not indexed, and drops further frame jobs; every
 * retry_ms (and at each batch end) it re-reads the spool from that
 * position up to the end of the last synced batch and indexes it, as
 * recovery would. The index thus never refers to bytes that are not in the
 * spool, and the spool is never rewritten. */
#include "session/recorder.h"

#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/thread.h"
#include "flow.pb-c.h"
#include "session/index.h"
#include "session/journal.h"
#include "session/pbhead.h"
#include "session/spool.h"

/* Work for the index thread: a frame to index, the end of a batch whose
 * frames are synced, to commit (commit = 1; segment/off is then where the
 * batch ends in the spool), or the end (quit = 1). */
typedef struct ijob {
    struct ijob *next;
    int commit, quit;
    uint32_t segment;
    uint64_t off;
    size_t clen;
    reel_buf_t raw;
    uint64_t last_seq;
} ijob;

/* The index thread commits batch ends at most this often while more keep
 * coming (at once when a flush waits or at the end; within this when the
 * queue goes idle).
 * Each commit writes every page its rows touched to the WAL, and (before
 * schema 11's client_conns replaced it) a page per client connection of
 * the index on client_conn alone: committing every few milliseconds under
 * load made that a page written per flow, a third of the index thread's
 * CPU (two thirds of it in the kernel). The index is
 * rebuilt from the spool after a crash, so this delays only when flows
 * show in queries, by at most this. */
#define COMMIT_EVERY_NS (100 * 1000000LL)
/* The index and writer threads give up their core after this much work at
 * a time while they keep up (base/pace.h says why): the event loop then
 * waits for a core at most about this long behind them. */
#define REEL_RECORDER_PACE_NS (200 * 1000LL)

/* Frames queued for indexing before the writer waits: IJOB_MAX, or as
 * many as hold IJOB_BYTES_MAX of blocks (a full block is 4 MiB). With
 * fsync block the index thread waits at each batch end for the sync that
 * covers it, so this is also how far the writer may run ahead of a slow
 * fdatasync. Each queued block is memory: with blocks of 4 MiB, 16 MiB of
 * them took the store's peak RSS from 58 to 66 MiB (docs/benchmarks.md). */
#define IJOB_MAX 64
#define IJOB_BYTES_MAX (8u << 20)

/* Blocks kept for reuse once indexed: a block of 4 MiB freed by the index
 * thread and another allocated by the writer left holes in the writer's
 * heap that stayed resident; reused, the few blocks in flight are all
 * the memory blocks take (the writer's, the second compressor's, one
 * queued and one being indexed). */
#define BLOCK_POOL 4

/* Free space the file system must show before capture resumes: room for a
 * few blocks and the index rows that go with them. */
#define RESUME_MIN_FREE (4u << 20)
/* Size of the test write before capture resumes. */
#define PROBE_BYTES (64u << 10)

/* The queue is a list of chunks of records, each record after its length
 * (a uint32_t); a chunk's records are numbered from its first_seq on. A
 * record too big for a chunk of QCHUNK gets a chunk of its own. One chunk
 * in one buffer would have to grow (copied under the lock, and twice the
 * memory while it is) up to capture_buffer. */
#define QCHUNK (64u * 1024u)

/* Once the queue has held this much, the index thread hands the freed
 * memory back to the system (malloc_trim) when the queue has stayed under
 * TRIM_LOW for TRIM_QUIET_NS: the allocator keeps what a burst freed, in
 * holes it cannot give back by itself, so a proxy that buffered 50
 * downloads of 1 MiB stayed at 200 MiB for the rest of its run (24 MiB
 * after the trim). Waiting for the quiet lets the burst's connections
 * close and free their buffers first; light traffic (a few records at a
 * time) does not put the trim off. */
#define TRIM_AFTER (16u << 20)
#define TRIM_LOW (1u << 20)
#define TRIM_QUIET_NS (1000 * 1000000ll)

typedef struct qchunk {
    struct qchunk *next;
    size_t len, cap;
    uint64_t first_seq;
    uint8_t data[];
} qchunk;

/* A record on its way into the queue: encoded on the producer's stack
 * when it is small, then copied into the queue's last chunk (a malloc per
 * record on the producer and its free on the writer, which the allocator
 * hands back across threads, were a tenth of the writer's CPU); a bigger
 * one (a body chunk) is encoded into a chunk of its own, which is linked
 * into the queue as it is, not copied. */
typedef struct {
    uint8_t *data;
    size_t len;
    qchunk *own;
    uint8_t stack[2048];
} pending;

static uint8_t *pending_init(pending *p, size_t len) {
    p->len = len;
    p->own = NULL;
    if (len <= sizeof p->stack) {
        p->data = p->stack;
    } else {
        p->own = reel_malloc(sizeof *p->own + sizeof(uint32_t) + len);
        p->own->cap = sizeof(uint32_t) + len;
        p->data = p->own->data + sizeof(uint32_t);
    }
    return p->data;
}

static void pending_free(pending *p) {
    free(p->own);
    p->own = NULL;
    p->data = NULL;
}

/* A flow that lost records to a disk outage (writer thread only). */
typedef struct lostflow {
    struct lostflow *next;
    uint64_t id;
    uint64_t dropped; /* its records not written */
    int start_lost;   /* its start was dropped: nothing of it is on disk */
    int final_seen;   /* its end or error record was dropped */
    int64_t final_us; /* time of that record */
    uint64_t req_size, resp_size;
    uint64_t body_lost[2]; /* bytes of its request, response body chunks not written */
    /* what the dropped end or error record said capture had shed before
     * (*_body_dropped, messages_dropped): bytes not in the spool either */
    uint64_t body_dropped[2], messages_dropped, response_excess;
    int truncated[2]; /* ... and whether it said a body was cut */
    char *final_msg; /* message of a dropped error record, owned */
} lostflow;

struct reel_recorder {
    reel_session_t *session;
    reel_recorder_opts_t opts;

    /* shared, under mu. Producer side: producers may run on several
     * threads (recorder.h); these are only read or changed under mu. */
    uint64_t next_flow_id;
    uint64_t body_limit;
    reel_capture_mode capture;
    int warned_behind;  /* said that bodies are being shed */
    int warned_records; /* said that other records are being dropped */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_space, cv_done;
    /* The queue (qchunk says how); the writer takes it whole. qspare: an
     * emptied chunk the writer handed back, for the next one needed. */
    qchunk *qhead, *qtail, *qspare;
    size_t queued_bytes, writer_bytes;
    size_t qmem;        /* bytes of the chunks queued or in the writer's hands */
    int trim_due;       /* qmem reached TRIM_AFTER since the last trim */
    int trim_busy;      /* qmem reached TRIM_LOW since the index thread looked */
    int64_t trim_at;    /* when the quiet before the trim is long enough */
    int writer_waiting; /* 1: for work (no block open), 2: for a deadline */
    uint64_t enq_seq, done_seq;
    int stop, flush_req;
    int flushers; /* threads in reel_recorder_flush: the index commits at once */
    reel_rc sticky;
    char sticky_msg[REEL_ERR_MSG_MAX];
    reel_recorder_stats_t stats;
    int capture_stopped; /* the writer is dropping records */
    int index_behind;    /* frames in the spool the index lacks */
    char index_msg[REEL_ERR_MSG_MAX];

    /* spool positions (segment, offset), under mu: the end of the last
     * frame written, and how far the last fdatasync reached */
    uint32_t written_seg, synced_seg;
    uint64_t written_off, synced_off;
    int sync_errno; /* a failed fdatasync the writer has not handled yet */
    int sync_stop;
    int sync_running;
    pthread_cond_t cv_sync, cv_synced;
    pthread_t sthread;

    /* writer -> index thread queue, under mu */
    struct ijob *ihead, *itail;
    unsigned ijobs; /* frame jobs queued (markers hold no block: not counted) */
    size_t ijob_bytes; /* their blocks' bytes */
    /* Blocks the index thread is done with, for the writer's next ones
     * (BLOCK_POOL at most; emptied by trim_when_quiet and at close). */
    reel_buf_t pool[BLOCK_POOL];
    unsigned npool;
    pthread_cond_t cv_ijob, cv_ispace;
    pthread_t ithread;

    /* index thread only */
    int in_tx;       /* a transaction is open */
    int writer_stuck; /* a writer kept ix_begin waiting its whole turn */
    uint32_t tx_seg; /* first frame of the open transaction */
    uint64_t tx_off;
    int ix_behind;    /* indexing paused: catch up from ix_from */
    /* A batch end the index thread has not committed yet (index thread
     * only): batches coming faster than COMMIT_EVERY_NS share a commit. */
    int due;
    int due_dirty; /* frames of a later batch were indexed since: the
                    * transaction can only be committed at a batch end */
    uint32_t due_seg;
    uint64_t due_off, due_last_seq;
    int64_t last_commit_ns;
    int ix_dead;      /* the spool cannot be indexed: give up */
    int ix_announced; /* "indexing paused" was said */
    uint32_t ix_from_seg, ix_end_seg;
    uint64_t ix_from_off, ix_end_off;
    int64_t ix_retry_ns;

    /* maintenance thread: on_segment_closed and retention. Under mu: the
     * closed segments not yet handed to the hook, the limits, the command,
     * and ix_done_seg (every segment below it is indexed and committed) */
    pthread_t mthread;
    int maint_running, maint_stop;
    pthread_cond_t cv_maint;
    uint32_t *closed;
    size_t nclosed, closed_cap;
    reel_retention_limits_t ret_lim;
    char *hook_cmd; /* owned */
    uint32_t ix_done_seg;
    /* session.db's write lock, taken in turns by the index thread and
     * retention (ix_begin says why), under mu: the index thread has a
     * transaction open, or waits to begin one, and how many it has ended;
     * retention waits for its turn, has it (until maint_turn_end), and
     * owes the index thread a transaction before its next turn (the
     * index thread's transaction count when the last turn ended) */
    int ix_tx_open, ix_gate_waiting, maint_wants, maint_writing, maint_owes;
    uint64_t ix_txs, maint_owed_at;
    int64_t maint_turn_end;
    pthread_cond_t cv_gate;

    /* writer thread only */
    pthread_t thread;
    sqlite3 *wdb;
    reel_indexer_t *ix;
    reel_spool_enc_t *enc;
    reel_buf_t block, frame, scratch;
    /* A second compressor, for a writer that falls behind (frame_out):
     * started at the first need, on hosts with more than one core. held:
     * the block it has (its records, frame, count and last sequence),
     * written before any later block. */
    reel_spool_async_t *zhelp;
    int zhelp_allowed, behind;
    int held;
    reel_buf_t held_raw, held_frame;
    uint64_t held_records, held_last_seq;
    uint64_t block_last_seq;   /* last record taken into (or dropped beside) the block */
    uint64_t batch_last_seq;   /* last record dealt with in this batch */
    uint64_t batch_start_size; /* segment size when the batch began */
    int64_t batch_start_ns;
    uint64_t block_records;
    int64_t block_deadline_ns;
    size_t block_cap;  /* records the block takes (reel_spool_block_size) */
    size_t wake_bytes; /* queued bytes that wake a writer waiting for its
                          block's deadline: set at open, read by producers */
    uint32_t segment;
    int seg_fd;
    uint64_t seg_size;
    int disk_failed; /* capture stopped by a disk error */
    int seg_gone;    /* ... because the segment was deleted: for good */
    int announced;   /* "capture stopped" was said for this outage */
    uint64_t fsize_need; /* stopped by the file-size limit: the size it must allow */
    int64_t retry_ns, outage_ns;
    char fail_reason[REEL_ERR_MSG_MAX];
    uint64_t out_records, out_lost_flows; /* dropped during this outage */
    lostflow **lost;
    size_t nlost, lost_buckets;
};

struct reel_rflow {
    reel_recorder_t *rec;
    uint64_t id;
    int64_t start_us; /* its start record's time */
    uint64_t limit;
    uint64_t req_seen, req_stored, resp_seen, resp_stored;
    /* reel_recorder_body_truncated: the body was cut before it was given
     * (request, response), and its size on the wire (0: not known) */
    int cut[2];
    uint64_t wire[2];
    /* reel_recorder_body_wire_size: the body was given decoded, and its
     * size on the wire is exact[] (which may be fewer bytes than given) */
    int has_exact[2];
    uint64_t exact[2];
    uint64_t dropped;     /* records other than body chunks not queued (hard cap) */
    /* the first record of the flow too large for the spool (its event's
     * field number, 0: none, and its encoded size): the flow records
     * nothing after it and ends with an error saying so */
    unsigned big_event;
    size_t big_len;
    int body_admit[2];    /* request, response body: 0 not begun, 1 stored, -1 shed */
    int64_t body_time_us; /* explicit time of the last head (imports); 0 = use now */
    /* WebSocket / TCP messages per direction: payload bytes seen, and bytes
     * within body_limit that were shed */
    uint64_t msg_seen[2], msg_dropped[2];
    uint64_t msg_lost; /* messages not stored at all */
    bool start_tls;    /* its start record has the client's TLS */
};

void reel_recorder_opts_default(reel_recorder_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->fsync = REEL_FSYNC_BLOCK;
    o->fsync_interval_ms = 1000;
    o->segment_size = 128ull << 20;
    o->body_limit = 64ull << 20;
    o->capture = REEL_CAPTURE_ON;
    o->queue_bytes = REEL_RECORDER_QUEUE_DEFAULT;
    o->zstd_level = REEL_SPOOL_LEVEL_DEFAULT;
    o->retry_ms = 1000;
}

static int64_t retry_interval_ns(const reel_recorder_t *r) {
    return (int64_t)r->opts.retry_ms * 1000000;
}

/* Waits on cv until the monotonic deadline (cv uses CLOCK_MONOTONIC). */
static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ns) {
    struct timespec ts = {(time_t)(deadline_ns / 1000000000), (long)(deadline_ns % 1000000000)};
    pthread_cond_timedwait(cv, mu, &ts);
}

static void warn(reel_recorder_t *r, const char *msg) {
    if (r->opts.warn)
        r->opts.warn(r->opts.warn_ctx, msg);
    else
        fprintf(stderr, "reel: %s\n", msg);
}

static int fault(reel_recorder_t *r, reel_recorder_fault_op op) {
    return r->opts.fault ? r->opts.fault(r->opts.fault_ctx, op) : 0;
}

/* ---- records seen from the outside ---- */

/* Event field numbers of Record (schema/flow.proto). */
enum { EV_START = 10, EV_REQ_BODY = 12, EV_RESP_BODY = 14, EV_END = 15, EV_ERROR = 16 };

/* The flow id and event field number of an encoded Record. Returns 0 if
 * it does not parse. */
static int peek_record(const uint8_t *p, size_t len, uint64_t *fid, unsigned *event) {
    reel_spool_peek_t pk;
    int ok = reel_spool_peek_record(p, len, &pk);
    *fid = ok ? pk.flow_id : 0;
    *event = ok ? pk.event : 0;
    return ok;
}

/* ---- the lost map (writer thread) ---- */

static size_t lost_bucket(const reel_recorder_t *r, uint64_t id) {
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (r->lost_buckets - 1);
}

static lostflow *lost_find(reel_recorder_t *r, uint64_t id) {
    if (r->nlost == 0)
        return NULL;
    for (lostflow *l = r->lost[lost_bucket(r, id)]; l; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

static lostflow *lost_get(reel_recorder_t *r, uint64_t id) {
    lostflow *l = lost_find(r, id);
    if (l)
        return l;
    if (r->nlost >= r->lost_buckets * 2) {
        size_t nb = r->lost_buckets * 4;
        lostflow **nv = reel_calloc(nb, sizeof *nv);
        for (size_t b = 0; b < r->lost_buckets; b++)
            while (r->lost[b]) {
                lostflow *x = r->lost[b];
                r->lost[b] = x->next;
                size_t k = (size_t)(x->id * 0x9E3779B97F4A7C15ull >> 32) & (nb - 1);
                x->next = nv[k];
                nv[k] = x;
            }
        free(r->lost);
        r->lost = nv;
        r->lost_buckets = nb;
    }
    l = reel_calloc(1, sizeof *l);
    l->id = id;
    size_t b = lost_bucket(r, id);
    l->next = r->lost[b];
    r->lost[b] = l;
    r->nlost++;
    return l;
}

static void lost_remove(reel_recorder_t *r, lostflow *l) {
    for (lostflow **pp = &r->lost[lost_bucket(r, l->id)]; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            r->nlost--;
            free(l->final_msg);
            free(l);
            return;
        }
}

static void lost_free_all(reel_recorder_t *r) {
    for (size_t b = 0; b < r->lost_buckets; b++)
        while (r->lost[b]) {
            lostflow *l = r->lost[b];
            r->lost[b] = l->next;
            free(l->final_msg);
            free(l);
        }
    free(r->lost);
    r->lost = NULL;
    r->nlost = 0;
}

/* Counts one record of l not written: a body chunk's bytes too, for the
 * error record that ends the flow (the body hole it leaves). */
static void lost_count(lostflow *l, const uint8_t *data, size_t len, unsigned ev) {
    l->dropped++;
    if (ev != EV_REQ_BODY && ev != EV_RESP_BODY)
        return;
    Reel__Record *rec = reel__record__unpack(NULL, len, data);
    const Reel__BodyChunk *bc = rec == NULL         ? NULL
                                : ev == EV_REQ_BODY ? rec->request_body
                                                    : rec->response_body;
    if (bc)
        l->body_lost[ev == EV_RESP_BODY] += bc->data.len;
    reel__record__free_unpacked(rec, NULL);
}

/* Keeps what the error record that replaces a flow's end needs. */
static void lost_set_final(lostflow *l, const uint8_t *data, size_t len) {
    Reel__Record *rec = reel__record__unpack(NULL, len, data);
    l->final_seen = 1;
    l->final_us = 0;
    if (rec == NULL)
        return;
    l->final_us = rec->time_us;
    if (rec->event_case == REEL__RECORD__EVENT_END) {
        l->req_size = rec->end->request_body_size;
        l->resp_size = rec->end->response_body_size;
        l->body_dropped[0] = rec->end->request_body_dropped;
        l->body_dropped[1] = rec->end->response_body_dropped;
        l->messages_dropped = rec->end->messages_dropped;
        l->response_excess = rec->end->response_excess;
        l->truncated[0] = rec->end->request_truncated;
        l->truncated[1] = rec->end->response_truncated;
    } else if (rec->event_case == REEL__RECORD__EVENT_ERROR) {
        l->req_size = rec->error->request_body_size;
        l->resp_size = rec->error->response_body_size;
        l->body_dropped[0] = rec->error->request_body_dropped;
        l->body_dropped[1] = rec->error->response_body_dropped;
        l->messages_dropped = rec->error->messages_dropped;
        l->response_excess = rec->error->response_excess;
        l->truncated[0] = rec->error->request_truncated;
        l->truncated[1] = rec->error->response_truncated;
        free(l->final_msg);
        l->final_msg =
            rec->error->message && rec->error->message[0] ? reel_strdup(rec->error->message) : NULL;
    }
    reel__record__free_unpacked(rec, NULL);
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
        /* root recording into another user's session: the segment is
         * theirs from the start (a root process killed before its close
         * gave it back left it unreadable to them) */
        reel_session_give(reel_session_path(r->session), fd, p);
        /* Under mu: the sync thread takes a dup of seg_fd there. */
        pthread_mutex_lock(&r->mu);
        int old = r->seg_fd;
        r->seg_fd = fd;
        pthread_mutex_unlock(&r->mu);
        if (old >= 0)
            close(old);
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
    while (!j->commit && !j->quit && (r->ijobs >= IJOB_MAX || r->ijob_bytes >= IJOB_BYTES_MAX))
        pthread_cond_wait(&r->cv_ispace, &r->mu);
    if (r->itail)
        r->itail->next = j;
    else
        r->ihead = j;
    r->itail = j;
    if (!j->commit && !j->quit) {
        r->ijobs++;
        r->ijob_bytes += j->raw.len;
    }
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

/* Appends a frame to the segment; an injected fault writes half of it and
 * fails, as a disk that fills up mid-write does. */
static reel_rc write_frame(reel_recorder_t *r, const uint8_t *p, size_t n) {
    int e = fault(r, REEL_FAULT_WRITE);
    if (e) {
        (void)write_all(r->seg_fd, p, n / 2);
        errno = e;
        return REEL_IO;
    }
    return write_all(r->seg_fd, p, n);
}

/* Counts one record the writer did not write. */
static void count_dropped(reel_recorder_t *r, int start) {
    pthread_mutex_lock(&r->mu);
    r->stats.dropped_records++;
    if (start)
        r->stats.lost_flows++;
    pthread_mutex_unlock(&r->mu);
}

/* A record dropped while capture is stopped: its flow goes into the lost
 * map (a flow lost whole is forgotten once its last record has gone by). */
static void drop_record(reel_recorder_t *r, const uint8_t *data, size_t len) {
    uint64_t fid = 0;
    unsigned ev = 0;
    r->out_records++;
    int ok = peek_record(data, len, &fid, &ev) && fid != 0;
    count_dropped(r, ok && ev == EV_START);
    if (!ok)
        return;
    lostflow *l = lost_get(r, fid);
    lost_count(l, data, len, ev);
    if (ev == EV_START) {
        l->start_lost = 1;
        r->out_lost_flows++;
    }
    if (ev == EV_END || ev == EV_ERROR) {
        if (l->start_lost)
            lost_remove(r, l);
        else
            lost_set_final(l, data, len);
    }
}

/* The records of a block that failed to go out are lost. */
static void drop_block(reel_recorder_t *r, const reel_buf_t *raw) {
    size_t pos = 0, len = 0;
    const uint8_t *rec = NULL;
    while (reel_spool_block_next(raw->data, raw->len, &pos, &rec, &len) == REEL_OK)
        drop_record(r, rec, len);
}

static void disk_failure(reel_recorder_t *r, reel_rc rc, const reel_err_t *err, int gone) {
    r->disk_failed = 1;
    r->seg_gone |= gone;
    r->retry_ns = reel_mono_ns() + retry_interval_ns(r);
    pthread_mutex_lock(&r->mu);
    r->capture_stopped = 1;
    pthread_mutex_unlock(&r->mu);
    set_sticky(r, rc, reel_err_str(err));
    if (r->announced)
        return; /* a resume attempt that failed: still the same outage */
    r->announced = 1;
    r->outage_ns = reel_mono_ns();
    r->out_records = r->out_lost_flows = 0;
    snprintf(r->fail_reason, sizeof r->fail_reason, "%s", reel_err_str(err));
    char msg[REEL_ERR_MSG_MAX + 160];
    if (gone)
        snprintf(msg, sizeof msg,
                 "capture stopped: %s; traffic is still forwarded, but nothing more is recorded "
                 "by this run",
                 reel_err_str(err));
    else
        snprintf(msg, sizeof msg,
                 "capture stopped: %s; traffic is still forwarded, and capture resumes when "
                 "writing works again (checked every %.1f s)",
                 reel_err_str(err), (double)r->opts.retry_ms / 1000);
    warn(r, msg);
}

/* Whether spool position (sa, oa) comes before (sb, ob). */
static int pos_before(uint32_t sa, uint64_t oa, uint32_t sb, uint64_t ob) {
    return sa < sb || (sa == sb && oa < ob);
}

/* The writer syncs the segment itself only when it rolls to the next one
 * (a finished segment is synced before the next begins); everything
 * written so far is then synced. */
static reel_rc sync_segment(reel_recorder_t *r, reel_err_t *err) {
    int e = fault(r, REEL_FAULT_SYNC);
    if (e || fdatasync(r->seg_fd) != 0)
        return reel_err_errno(err, REEL_IO, e ? e : errno, "syncing spool segment %08u.zst",
                              r->segment);
    pthread_mutex_lock(&r->mu);
    r->stats.syncs++;
    r->synced_seg = r->written_seg;
    r->synced_off = r->written_off;
    pthread_cond_broadcast(&r->cv_synced);
    pthread_mutex_unlock(&r->mu);
    return REEL_OK;
}

/* Sync thread (fsync block or interval): group commit. Whenever frames
 * have been written since the last fdatasync, it runs one (with fsync
 * interval, at most every fsync_interval_ms) on a dup of the segment's fd;
 * that one call covers every frame written before it started, however
 * many. The writer goes on compressing and writing meanwhile, so the disk's
 * sync latency does not cap capture throughput: the slower the sync, the
 * more frames the next one covers. With fsync block the index thread
 * commits a batch only once a sync has covered its end (so nothing is done
 * for flush before it is synced). A failed sync is handed to the writer,
 * which stops capture as for a failed write. Every recorder thread gets a
 * name: `top -H`, perf and /proc/PID/task show which thread costs what. */
static void *sync_main(void *arg) {
    reel_recorder_t *r = arg;
    reel_thread_name("reel-sync");
    int64_t last_ns = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (!pos_before(r->synced_seg, r->synced_off, r->written_seg, r->written_off)) {
            if (r->sync_stop)
                break;
            pthread_cond_wait(&r->cv_sync, &r->mu);
            continue;
        }
        if (r->opts.fsync == REEL_FSYNC_INTERVAL && !r->sync_stop) {
            int64_t due = last_ns + (int64_t)r->opts.fsync_interval_ms * 1000000;
            if (reel_mono_ns() < due) {
                wait_until(&r->cv_sync, &r->mu, due);
                continue;
            }
        }
        uint32_t seg = r->written_seg;
        uint64_t off = r->written_off;
        int fd = dup(r->seg_fd);
        pthread_mutex_unlock(&r->mu);
        int e = fd < 0 ? errno : fault(r, REEL_FAULT_SYNC);
        if (e == 0 && fdatasync(fd) != 0)
            e = errno;
        if (fd >= 0)
            close(fd);
        last_ns = reel_mono_ns();
        pthread_mutex_lock(&r->mu);
        r->stats.syncs++;
        if (e) {
            if (r->sync_errno == 0)
                r->sync_errno = e;
            if (r->sticky == REEL_OK) {
                r->sticky = REEL_IO;
                snprintf(r->sticky_msg, sizeof r->sticky_msg, "syncing spool segment %08u.zst: %s",
                         seg, strerror(e));
            }
            pthread_cond_signal(&r->cv_work);
        }
        /* Done with, synced or failed: nobody may wait for it for ever. */
        if (pos_before(r->synced_seg, r->synced_off, seg, off)) {
            r->synced_seg = seg;
            r->synced_off = off;
        }
        pthread_cond_broadcast(&r->cv_synced);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Appends a block compressed into frame (crc/cerr: how the compression
 * went) to the segment and hands the block (raw, taken over) to the index
 * thread. Syncing and committing happen once per batch, in batch_end. On
 * failure the block's records are dropped and capture stops. */
static void block_write(reel_recorder_t *r, reel_buf_t *raw, const reel_buf_t *frame,
                        uint64_t nrecords, uint64_t last_seq, reel_rc crc, const reel_err_t *cerr,
                        int helped) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = crc;
    if (r->disk_failed) {
        drop_block(r, raw);
        goto done;
    }
    if (rc != REEL_OK) {
        err = *cerr;
        goto fail;
    }
    struct stat st;
    if (fstat(r->seg_fd, &st) == 0 && st.st_nlink == 0) {
        /* Someone deleted the segment (or the whole session): writing on
         * would record into a file nobody can see. */
        rc = reel_err_set(&err, REEL_IO,
                          "spool segment %08u.zst was deleted (was the session directory "
                          "removed?)",
                          r->segment);
        disk_failure(r, rc, &err, 1);
        drop_block(r, raw);
        goto done;
    }
again:
    if (r->seg_size > 0 && r->seg_size + frame->len > r->opts.segment_size) {
        /* A finished segment is synced before the next one starts. */
        if (r->opts.fsync != REEL_FSYNC_NEVER && (rc = sync_segment(r, &err)) != REEL_OK)
            goto fail;
        uint32_t closed = r->segment;
        if ((rc = open_segment(r, r->segment + 1, &err)) != REEL_OK)
            goto fail;
        pthread_mutex_lock(&r->mu);
        if (r->nclosed == r->closed_cap)
            r->closed = reel_realloc(r->closed,
                                     (r->closed_cap = r->closed_cap ? r->closed_cap * 2 : 8) *
                                         sizeof *r->closed);
        r->closed[r->nclosed++] = closed;
        pthread_cond_signal(&r->cv_maint);
        pthread_mutex_unlock(&r->mu);
    }
    uint64_t off = r->seg_size;
    if (write_frame(r, frame->data, frame->len) != REEL_OK) {
        int e = errno;
        /* Leave the segment ending on a frame boundary (if this fails too,
         * resuming tries again before it writes anything). */
        if (ftruncate(r->seg_fd, (off_t)off) != 0) {
            /* recovery moves a partial frame aside on the next open */
        }
        /* EFBIG: past the process's file-size limit (SIGXFSZ is ignored,
         * main.c), below segment_size: segments end at the limit from now
         * on, and the frame goes at the start of the next one. Only a
         * frame larger than the limit stops capture. Free space does not
         * lift that: writable_again waits until the limit admits it. */
        struct rlimit rl;
        if (e == EFBIG && off > 0 && getrlimit(RLIMIT_FSIZE, &rl) == 0 &&
            rl.rlim_cur != RLIM_INFINITY && frame->len <= rl.rlim_cur &&
            rl.rlim_cur < r->opts.segment_size) {
            r->opts.segment_size = rl.rlim_cur;
            char msg[256];
            snprintf(msg, sizeof msg,
                     "the file-size limit (ulimit -f) of %llu bytes is below segment_size: "
                     "spool segments end at it from %08u.zst on",
                     (unsigned long long)rl.rlim_cur, r->segment);
            warn(r, msg);
            goto again;
        }
        if (e == EFBIG)
            r->fsize_need = off + frame->len;
        rc = reel_err_errno(&err, REEL_IO, e, "writing spool segment %08u.zst", r->segment);
        goto fail;
    }
    r->seg_size += frame->len;
    pthread_mutex_lock(&r->mu);
    r->written_seg = r->segment;
    r->written_off = r->seg_size;
    pthread_cond_signal(&r->cv_sync);
    r->stats.frames++;
    r->stats.raw_bytes += raw->len;
    r->stats.spool_bytes += frame->len;
    r->stats.records += nrecords;
    r->stats.helped_frames += (uint64_t)helped;
    pthread_mutex_unlock(&r->mu);
    {
        /* The block moves to the index thread; a fresh one is started. */
        ijob *j = reel_calloc(1, sizeof *j);
        j->segment = r->segment;
        j->off = off;
        j->clen = frame->len;
        j->raw = *raw;
        reel_buf_init(raw, 0);
        push_ijob(r, j);
    }
    goto done;
fail:
    disk_failure(r, rc, &err, 0); /* first: it starts the outage's counts */
    drop_block(r, raw);
done:
    r->batch_last_seq = last_seq; /* written, or dropped: nobody may wait for it */
    reel_buf_reset(raw);
}

/* Writes out the block the second compressor has, if any, once it is
 * compressed. */
static void held_out(reel_recorder_t *r) {
    if (!r->held)
        return;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_spool_async_wait(r->zhelp, &err);
    r->held = 0;
    block_write(r, &r->held_raw, &r->held_frame, r->held_records, r->held_last_seq, rc, &err, 1);
}

/* Whether the block goes to the second compressor: only while the writer
 * is behind (a calm writer keeps one core, and the event loop the other)
 * and nothing is held already. */
static int hand_over(reel_recorder_t *r) {
    if (r->held || !r->behind || r->disk_failed || !r->zhelp_allowed)
        return 0;
    if (r->zhelp == NULL &&
        (r->zhelp = reel_spool_async_new(r->opts.zstd_level, "reel-zstd")) == NULL) {
        r->zhelp_allowed = 0;
        return 0;
    }
    return 1;
}

/* The current block goes out: compressed here and written, or, while the
 * writer is behind, handed to the second compressor, to be written when
 * the next block goes out (in order: the held block first). */
static void frame_out(reel_recorder_t *r) {
    if (r->block.len == 0)
        return;
    if (hand_over(r)) {
        reel_buf_t t = r->held_raw;
        r->held_raw = r->block;
        r->block = t;
        reel_buf_reset(&r->block);
        r->held_records = r->block_records;
        r->held_last_seq = r->block_last_seq;
        r->held = 1;
        r->block_records = 0;
        reel_spool_async_start(r->zhelp, r->held_raw.data, r->held_raw.len, &r->held_frame);
        return;
    }
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = REEL_OK;
    if (!r->disk_failed)
        rc = reel_spool_enc_frame(r->enc, r->block.data, r->block.len, &r->frame, &err);
    held_out(r);
    block_write(r, &r->block, &r->frame, r->block_records, r->block_last_seq, rc, &err, 0);
    r->block_records = 0;
}

/* Gives the writer's block, which has no buffer, the buffer of one the
 * index thread is done with, if one is kept. */
static void block_from_pool(reel_recorder_t *r) {
    pthread_mutex_lock(&r->mu);
    if (r->npool > 0) {
        r->block = r->pool[--r->npool];
        reel_buf_reset(&r->block);
    }
    pthread_mutex_unlock(&r->mu);
}

/* The index thread is done with a block: kept for the writer, or freed. */
static void block_to_pool(reel_recorder_t *r, reel_buf_t *b) {
    pthread_mutex_lock(&r->mu);
    if (r->npool < BLOCK_POOL && b->cap > 0) {
        r->pool[r->npool++] = *b;
        reel_buf_init(b, 0);
    }
    pthread_mutex_unlock(&r->mu);
    reel_buf_free(b);
}

/* Frees the blocks kept for reuse. */
static void pool_free(reel_recorder_t *r) {
    pthread_mutex_lock(&r->mu);
    unsigned n = r->npool;
    reel_buf_t keep[BLOCK_POOL];
    memcpy(keep, r->pool, n * sizeof keep[0]);
    r->npool = 0;
    pthread_mutex_unlock(&r->mu);
    for (unsigned i = 0; i < n; i++)
        reel_buf_free(&keep[i]);
}

/* Appends one encoded record to the block, writing the block out first if
 * the record would push it past its target size. Returns 0 if capture
 * stopped meanwhile (the record was not taken). */
static int block_add(reel_recorder_t *r, const uint8_t *data, size_t len) {
    if (r->block.len && r->block.len + len + 10 > r->block_cap)
        frame_out(r);
    if (r->disk_failed)
        return 0;
    if (r->block.len == 0) {
        r->block_deadline_ns = reel_mono_ns() + 100 * 1000000;
        /* (a file-size limit set meanwhile makes the next block smaller) */
        r->block_cap = reel_spool_block_size(r->opts.segment_size, r->opts.block_size);
        if (r->block.cap == 0)
            block_from_pool(r);
        /* Room for the whole block at once (it never grows past it): grown
         * by doubling, each block left the halves it outgrew as holes in
         * the writer's heap. */
        reel_buf_reserve(&r->block, r->block_cap - 64);
    }
    if (reel_spool_block_append(&r->block, data, len) != REEL_OK) {
        /* cannot happen: producers split records below the limit */
        warn(r, "internal error: record too large for a block; dropped");
        return 1;
    }
    r->block_records++;
    return 1;
}

/* A record the writer makes itself, packed into the block (block_add). */
static int block_add_record(reel_recorder_t *r, const Reel__Record *rec) {
    size_t n = reel__record__get_packed_size(rec);
    reel_buf_reset(&r->scratch);
    reel_buf_reserve(&r->scratch, n);
    reel__record__pack(rec, r->scratch.data);
    return block_add(r, r->scratch.data, n);
}

/* Writes the error record that ends a flow which lost records, in place of
 * its end. Returns 0 if capture stopped meanwhile (the flow stays in the
 * lost map, to be closed at the next resume). */
static int close_lost(reel_recorder_t *r, lostflow *l) {
    char msg[2 * REEL_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s%s" REEL_GAP_MSG " (%s): %llu of its records were not recorded",
             l->final_msg ? l->final_msg : "", l->final_msg ? "; " : "", r->fail_reason,
             (unsigned long long)l->dropped);
    Reel__FlowError fe = REEL__FLOW_ERROR__INIT;
    fe.message = msg;
    fe.request_body_size = l->req_size;
    fe.response_body_size = l->resp_size;
    /* the index marks the flow damaged, with its body holes */
    fe.records_lost = l->dropped ? l->dropped : 1;
    fe.request_body_lost = l->body_lost[0];
    fe.response_body_lost = l->body_lost[1];
    /* the bytes capture shed, as the dropped end said: they follow those
     * lost (a body is shed to its end), and are in neither count above */
    fe.request_body_dropped = l->body_dropped[0];
    fe.response_body_dropped = l->body_dropped[1];
    fe.messages_dropped = l->messages_dropped;
    fe.response_excess = l->response_excess;
    fe.request_truncated = l->truncated[0];
    fe.response_truncated = l->truncated[1];
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = l->id;
    rec.time_us = l->final_us ? l->final_us : reel_now_us();
    rec.event_case = REEL__RECORD__EVENT_ERROR;
    rec.error = &fe;
    if (!block_add_record(r, &rec))
        return 0;
    lost_remove(r, l);
    return 1;
}

/* Says in the spool, as capture resumes, that a flow still running lost
 * records to the outage (its CaptureGap record): its error record, in
 * place of its end, comes only when the flow ends, and a run killed before
 * then left the flow looking merely cut off by the end of the recording,
 * as if everything it did until then had been recorded. Returns 0 if
 * capture stopped again. */
static int write_gap(reel_recorder_t *r, lostflow *l) {
    char msg[REEL_ERR_MSG_MAX + 200];
    snprintf(msg, sizeof msg,
             REEL_GAP_MSG " (%s): %llu of its records were not recorded, nor any after "
                          "them",
             r->fail_reason, (unsigned long long)l->dropped);
    Reel__CaptureGap g = REEL__CAPTURE_GAP__INIT;
    g.message = msg;
    g.records_lost = l->dropped;
    g.request_body_lost = l->body_lost[0];
    g.response_body_lost = l->body_lost[1];
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = l->id;
    rec.time_us = reel_now_us();
    rec.event_case = REEL__RECORD__EVENT_GAP;
    rec.gap = &g;
    return block_add_record(r, &rec);
}

/* A record of a flow in the lost map, with capture running: the flow's
 * records stay out (no holes); its last record becomes the error record. */
static void take_lost(reel_recorder_t *r, lostflow *l, const uint8_t *data, size_t len,
                      unsigned ev) {
    if (ev != EV_END && ev != EV_ERROR) {
        lost_count(l, data, len, ev);
        count_dropped(r, 0);
        return;
    }
    if (l->start_lost) {
        count_dropped(r, 0);
        lost_remove(r, l);
        return;
    }
    lost_set_final(l, data, len);
    if (!close_lost(r, l))
        l->dropped++; /* the end itself is lost now */
}

/* One record from the queue: into the block, or dropped. */
static void take(reel_recorder_t *r, const uint8_t *data, size_t len) {
    if (!r->disk_failed && r->nlost) {
        uint64_t fid = 0;
        unsigned ev = 0;
        lostflow *l = peek_record(data, len, &fid, &ev) ? lost_find(r, fid) : NULL;
        if (l) {
            take_lost(r, l, data, len, ev);
            return;
        }
    }
    if (r->disk_failed || !block_add(r, data, len))
        drop_record(r, data, len);
}

/* Whether the spool can be written again: the segment still exists, the
 * file system is writable with room to spare, a file-size limit that
 * stopped capture admits the frame that failed, and a test file of
 * PROBE_BYTES can be written and synced. */
static int writable_again(reel_recorder_t *r) {
    struct stat st;
    if (fstat(r->seg_fd, &st) == 0 && st.st_nlink == 0) {
        r->seg_gone = 1;
        warn(r, "the spool segment being written was deleted: capture stays stopped");
        return 0;
    }
    if (fault(r, REEL_FAULT_PROBE))
        return 0;
    struct statvfs vfs;
    if (fstatvfs(r->seg_fd, &vfs) != 0 || (vfs.f_flag & ST_RDONLY) ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < RESUME_MIN_FREE)
        return 0;
    /* The probe would pass under the limit (it is a small new file), and
     * capture would stop again at its next frame, every retry_ms: only
     * raising the limit (prlimit --pid) lets it resume. */
    struct rlimit rl;
    if (r->fsize_need && getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < r->fsize_need)
        return 0;
    char *p = reel_asprintf("%s/.probe", reel_session_spool_dir(r->session));
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ok = 0;
    if (fd >= 0) {
        uint8_t *zero = reel_calloc(1, PROBE_BYTES);
        ok = write_all(fd, zero, PROBE_BYTES) == REEL_OK && fdatasync(fd) == 0;
        free(zero);
        close(fd);
    }
    unlink(p);
    free(p);
    /* Cut anything a failed write left after the last whole frame. */
    return ok && ftruncate(r->seg_fd, (off_t)r->seg_size) == 0;
}

/* While capture is stopped: every retry_ms, checks whether writing works
 * again; if so resumes, closes the flows that ended during the outage and
 * says so once. */
static void try_resume(reel_recorder_t *r) {
    if (!r->disk_failed || r->seg_gone || reel_mono_ns() < r->retry_ns)
        return;
    r->retry_ns = reel_mono_ns() + retry_interval_ns(r);
    if (!writable_again(r))
        return;
    r->disk_failed = 0;
    r->fsize_need = 0;
    pthread_mutex_lock(&r->mu);
    r->capture_stopped = 0;
    pthread_mutex_unlock(&r->mu);
    uint64_t cut = 0;
    for (size_t b = 0; b < r->lost_buckets; b++)
        for (lostflow *l = r->lost[b]; l; l = l->next)
            cut += !l->start_lost;
    for (size_t b = 0; b < r->lost_buckets && !r->disk_failed; b++) {
        lostflow *l = r->lost[b];
        while (l && !r->disk_failed) {
            lostflow *next = l->next;
            if (l->final_seen && !l->start_lost)
                close_lost(r, l);
            l = next;
        }
    }
    for (size_t b = 0; b < r->lost_buckets && !r->disk_failed; b++)
        for (lostflow *l = r->lost[b]; l && !r->disk_failed; l = l->next)
            if (!l->start_lost && !l->final_seen)
                write_gap(r, l);
    if (r->disk_failed || !r->announced)
        return;
    r->announced = 0;
    char msg[320];
    snprintf(msg, sizeof msg,
             "capture resumed after %.1f s: %llu records were not recorded; %llu flows that "
             "started meanwhile are not in the session, %llu flows in progress are marked with "
             "an error",
             (double)(reel_mono_ns() - r->outage_ns) / 1e9, (unsigned long long)r->out_records,
             (unsigned long long)r->out_lost_flows, (unsigned long long)cut);
    warn(r, msg);
}

/* Ends a batch: hands the index thread a marker to commit the frames
 * written so far (with fsync block it first waits for the sync thread to
 * cover them, so the index never refers to bytes that a crash could lose);
 * then flushers waiting for these records are woken. One sync and one
 * commit cover every frame written since the last batch: under load that
 * is many frames (group commit), when idle it is one. */
static void batch_end(reel_recorder_t *r) {
    held_out(r);
    if (r->block.len == 0)
        r->batch_last_seq = r->block_last_seq;
    ijob *j = reel_calloc(1, sizeof *j);
    j->commit = 1;
    j->segment = r->written_seg; /* the writer is the only one to change them */
    j->off = r->written_off;
    j->last_seq = r->batch_last_seq;
    push_ijob(r, j);
}

/* A sync failed (sync thread): capture stops as for a failed write. */
static void take_sync_failure(reel_recorder_t *r, int e) {
    if (e == 0 || r->disk_failed)
        return;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_err_errno(&err, REEL_IO, e, "syncing spool segment %08u.zst", r->segment);
    disk_failure(r, rc, &err, 0);
}

/* ---- index thread ---- */

/* The index thread's transaction is over, committed or rolled back: a
 * retention transaction waiting for the write lock may begin. */
static void ix_closed(reel_recorder_t *r) {
    r->in_tx = 0;
    pthread_mutex_lock(&r->mu);
    r->ix_tx_open = 0;
    r->ix_txs++;
    if (r->maint_wants)
        pthread_cond_broadcast(&r->cv_gate);
    pthread_mutex_unlock(&r->mu);
}

/* Whether a writer of another process waits for session.db's write lock
 * (index.h). One that kept ix_begin waiting its whole turn (a process
 * stopped while it waited) is not waited for again until it lets go. */
static int writer_waits(reel_recorder_t *r) {
    int w = reel_index_writer_waiting(reel__session_lock_fd(r->session));
    if (!w)
        r->writer_stuck = 0;
    return w && !r->writer_stuck;
}

/* Begins the index thread's transaction. Under steady load the index
 * thread holds session.db's write lock from a batch's first frame to the
 * commit at a batch end, that is nearly all the time, and retention, on
 * another connection, used to wait in SQLite's busy handler, which polls
 * every 1 to 100 ms and so rarely caught the lock free between a COMMIT
 * and the next BEGIN: the spool grew far past its limit while the load
 * lasted. So they take turns through mu instead (maint_take): retention
 * says it waits (maint_wants), the index thread commits at its next batch
 * end (index_main) and begins no transaction during retention's turn
 * (maint_writing). */
static reel_rc ix_begin(reel_recorder_t *r, reel_err_t *err) {
    /* Another process waits to write (reel tag, config, the web UI): it
     * takes the lock before this transaction does (index.h says why). */
    if (writer_waits(r)) {
        int64_t until = reel_mono_ns() + REEL_INDEX_WRITER_YIELD_MS * 1000000LL;
        int fd = reel__session_lock_fd(r->session);
        do {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        } while ((r->writer_stuck = reel_index_writer_waiting(fd)) && reel_mono_ns() < until);
    }
    pthread_mutex_lock(&r->mu);
    r->ix_gate_waiting = 1;
    while (r->maint_writing)
        pthread_cond_wait(&r->cv_gate, &r->mu);
    r->ix_gate_waiting = 0;
    r->ix_tx_open = 1;
    pthread_mutex_unlock(&r->mu);
    reel_rc rc = reel_indexer_begin(r->ix, err);
    if (rc == REEL_OK)
        r->in_tx = 1;
    else
        ix_closed(r);
    return rc;
}

static reel_rc ix_commit(reel_recorder_t *r, reel_err_t *err) {
    reel_rc rc;
    if (fault(r, REEL_FAULT_COMMIT)) {
        reel_indexer_rollback(r->ix);
        rc = reel_err_set(err, REEL_DB, "session.db: database or disk is full (injected)");
    } else {
        rc = reel_indexer_commit(r->ix, err); /* rolls back on failure */
    }
    ix_closed(r);
    return rc;
}

/* Indexing failed: roll back and catch up from the spool later. */
static void index_failure(reel_recorder_t *r, const reel_err_t *err, uint32_t seg, uint64_t off) {
    if (r->in_tx) {
        reel_indexer_rollback(r->ix);
        ix_closed(r);
    }
    if (!r->ix_behind) {
        r->ix_behind = 1;
        r->ix_from_seg = seg;
        r->ix_from_off = off;
    }
    r->ix_retry_ns = reel_mono_ns() + retry_interval_ns(r);
    pthread_mutex_lock(&r->mu);
    int quiet = r->capture_stopped; /* the writer already said what is wrong */
    r->index_behind = 1;
    snprintf(r->index_msg, sizeof r->index_msg, "%s", reel_err_str(err));
    pthread_mutex_unlock(&r->mu);
    if (!r->ix_announced && !quiet) {
        r->ix_announced = 1;
        char msg[REEL_ERR_MSG_MAX + 128];
        snprintf(msg, sizeof msg,
                 "indexing paused: %s (the spool keeps recording; the index catches up when "
                 "session.db can be written again)",
                 reel_err_str(err));
        warn(r, msg);
    }
}

/* Frames one catch-up pass indexes before it lets the thread take its
 * queue again (the writer waits on that queue). */
#define CATCHUP_BUDGET 1024

typedef struct {
    reel_recorder_t *r;
    uint32_t seg;
    uint64_t limit, next_off;
    unsigned pending, done;
    int more; /* stopped for the budget: continue at once */
    reel_rc rc;
    reel_err_t *err;
} catchup_ctx;

static int catchup_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    catchup_ctx *c = ctx;
    reel_recorder_t *r = c->r;
    if (off + clen > c->limit)
        return 1;
    if (c->done >= CATCHUP_BUDGET) {
        c->more = 1;
        return 1;
    }
    c->done++;
    if (!r->in_tx && (c->rc = ix_begin(r, c->err)) != REEL_OK)
        return 1;
    c->rc = reel_indexer_add_frame(r->ix, c->seg, off, clen, raw, rlen, c->err);
    if (c->rc == REEL_CORRUPT) {
        /* as recovery does: index what the frame says; verify names it */
        reel_err_clear(c->err);
        c->rc = REEL_OK;
    }
    if (c->rc != REEL_OK)
        return 1;
    c->next_off = off + clen;
    if (++c->pending >= 256) {
        c->pending = 0;
        if ((c->rc = ix_commit(r, c->err)) != REEL_OK)
            return 1;
        r->ix_from_seg = c->seg;
        r->ix_from_off = c->next_off;
    }
    return 0;
}

/* Indexes the spool from ix_from to the end of the last synced batch,
 * reading it back from disk. */
static void catch_up(reel_recorder_t *r) {
    reel_err_t err;
    reel_err_clear(&err);
    r->ix_retry_ns = reel_mono_ns() + retry_interval_ns(r);
    if (r->ix_end_seg < r->ix_from_seg ||
        (r->ix_end_seg == r->ix_from_seg && r->ix_end_off < r->ix_from_off))
        return; /* the batch end that covers the missing frames has not come yet */
    catchup_ctx c = {.r = r, .err = &err};
    for (uint32_t seg = r->ix_from_seg; seg <= r->ix_end_seg && c.rc == REEL_OK && !c.more; seg++) {
        int fd = reel_session_open_segment(r->session, seg);
        if (fd < 0) {
            c.rc = reel_err_errno(&err, REEL_IO, errno, "opening spool segment %08u.zst", seg);
            break;
        }
        c.seg = seg;
        c.limit = seg == r->ix_end_seg ? r->ix_end_off : UINT64_MAX;
        c.next_off = seg == r->ix_from_seg ? r->ix_from_off : 0;
        reel_spool_scan_t sc;
        reel_rc rc = reel_spool_scan(fd, c.next_off, catchup_cb, &c, &sc, &err);
        close(fd);
        if (c.rc == REEL_OK && rc != REEL_OK)
            c.rc = rc;
        if (c.rc == REEL_OK && !c.more && sc.reason[0] && sc.bad_off < c.limit) {
            /* Not a write in progress: bytes this recorder wrote do not
             * read back. Leave it to recovery on the next open. */
            r->ix_dead = 1;
            char msg[REEL_ERR_MSG_MAX];
            snprintf(msg, sizeof msg,
                     "indexing stopped: segment %08u.zst does not read back at offset %llu (%s); "
                     "the next open of the session repairs the index",
                     seg, (unsigned long long)sc.bad_off, sc.reason);
            warn(r, msg);
            reel_err_set(&err, REEL_CORRUPT, "%s", msg);
            c.rc = REEL_CORRUPT;
        }
    }
    if (c.rc == REEL_OK && r->in_tx)
        c.rc = ix_commit(r, &err);
    if (c.rc != REEL_OK) {
        index_failure(r, &err, r->ix_from_seg, r->ix_from_off);
        return;
    }
    if (c.more) {
        r->ix_from_seg = c.seg;
        r->ix_from_off = c.next_off;
        r->ix_retry_ns = 0; /* go on at the next wake-up */
        return;
    }
    r->ix_behind = 0;
    r->ix_from_seg = r->ix_end_seg;
    r->ix_from_off = r->ix_end_off;
    pthread_mutex_lock(&r->mu);
    r->index_behind = 0;
    pthread_mutex_unlock(&r->mu);
    if (r->ix_announced) {
        r->ix_announced = 0;
        warn(r, "indexing resumed: the index has caught up with the spool");
    }
}

/* Commits the batch end kept in due (index thread), which must be the end
 * of what the transaction holds: waits for the sync thread to cover it with
 * fsync block, commits, then wakes the flushers and the maintenance
 * thread. */
static void commit_due(reel_recorder_t *r) {
    if (!r->due)
        return;
    r->due = 0;
    r->due_dirty = 0;
    reel_err_t err;
    reel_err_clear(&err);
    if (r->opts.fsync == REEL_FSYNC_BLOCK) {
        pthread_mutex_lock(&r->mu);
        while (pos_before(r->synced_seg, r->synced_off, r->due_seg, r->due_off))
            pthread_cond_wait(&r->cv_synced, &r->mu);
        pthread_mutex_unlock(&r->mu);
    }
    r->ix_end_seg = r->due_seg;
    r->ix_end_off = r->due_off;
    if (r->ix_behind) {
        if (!r->ix_dead && reel_mono_ns() >= r->ix_retry_ns)
            catch_up(r);
    } else if (r->in_tx) {
        if (ix_commit(r, &err) != REEL_OK)
            index_failure(r, &err, r->tx_seg, r->tx_off);
    }
    r->last_commit_ns = reel_mono_ns();
    pthread_mutex_lock(&r->mu);
    if (!r->ix_behind && !r->in_tx && r->ix_done_seg < r->due_seg) {
        r->ix_done_seg = r->due_seg; /* committed up to here */
        pthread_cond_signal(&r->cv_maint);
    }
    if (r->done_seq < r->due_last_seq)
        r->done_seq = r->due_last_seq;
    pthread_cond_broadcast(&r->cv_done);
    pthread_mutex_unlock(&r->mu);
}

/* The index thread, idle after a burst (trim_due, under mu): once the
 * queue has stayed under TRIM_LOW for TRIM_QUIET_NS, hands the freed memory
 * back to the system; until then waits for that, or for work. */
static void trim_when_quiet(reel_recorder_t *r) {
    int64_t now = reel_mono_ns();
    if (r->trim_busy || r->qmem >= TRIM_LOW || r->trim_at == 0) {
        r->trim_busy = 0; /* not quiet (yet): the quiet starts now */
        r->trim_at = now + TRIM_QUIET_NS;
    }
    if (now < r->trim_at) {
        wait_until(&r->cv_ijob, &r->mu, r->trim_at);
        return;
    }
    r->trim_due = 0;
    r->trim_at = 0;
    pthread_mutex_unlock(&r->mu);
    pool_free(r); /* a burst's full blocks */
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    pthread_mutex_lock(&r->mu);
    r->stats.trims++;
}

static void *index_main(void *arg) {
    reel_recorder_t *r = arg;
    reel_thread_name("reel-index");
    for (;;) {
        pthread_mutex_lock(&r->mu);
        ijob *j = NULL;
        int commit_now = 0, calm = 1;
        for (;;) {
            if (r->ihead) {
                j = r->ihead;
                r->ihead = j->next;
                if (r->ihead == NULL)
                    r->itail = NULL;
                if (!j->commit && !j->quit) {
                    r->ijobs--;
                    r->ijob_bytes -= j->raw.len;
                }
                /* as the writer's: no yields once frames pile up */
                calm = r->ijobs <= 2;
                pthread_cond_signal(&r->cv_ispace);
                break;
            }
            if (r->due && !r->due_dirty) {
                /* a batch end waits, and nothing after it is indexed:
                 * commit it when a flush or retention asks, or once
                 * COMMIT_EVERY_NS has passed without more work */
                int64_t at = r->last_commit_ns + COMMIT_EVERY_NS;
                if (r->flushers > 0 || r->maint_wants || reel_mono_ns() >= at) {
                    commit_now = 1;
                    break;
                }
                wait_until(&r->cv_ijob, &r->mu, at);
                continue;
            }
            if (!r->ix_behind || r->ix_dead) {
                if (!r->trim_due)
                    pthread_cond_wait(&r->cv_ijob, &r->mu);
                else
                    trim_when_quiet(r);
                continue;
            }
            if (reel_mono_ns() >= r->ix_retry_ns)
                break; /* idle and behind: time to try again */
            wait_until(&r->cv_ijob, &r->mu, r->ix_retry_ns);
        }
        pthread_mutex_unlock(&r->mu);

        if (commit_now) {
            commit_due(r);
            continue;
        }
        if (j == NULL) {
            catch_up(r);
            continue;
        }
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc rc = REEL_OK;
        if (j->quit) {
            free(j);
            if (!r->due_dirty)
                commit_due(r);
            break; /* else rolled back below: recovery indexes it */
        }
        if (!j->commit) {
            if (r->due)
                r->due_dirty = 1; /* the next batch end commits */
            if (!r->ix_behind) {
                if (!r->in_tx) {
                    if ((rc = ix_begin(r, &err)) == REEL_OK) {
                        r->tx_seg = j->segment;
                        r->tx_off = j->off;
                    }
                }
                if (rc == REEL_OK) {
                    reel_indexer_pace(r->ix, calm ? REEL_RECORDER_PACE_NS : 0);
                    rc = reel_indexer_add_own_frame(r->ix, j->segment, j->off, j->clen, j->raw.data,
                                                    j->raw.len, &err);
                }
                if (rc != REEL_OK)
                    index_failure(r, &err, r->in_tx ? r->tx_seg : j->segment,
                                  r->in_tx ? r->tx_off : j->off);
            }
        } else {
            /* one commit for the batches of the last COMMIT_EVERY_NS while
             * more come: this one's end covers the earlier ones' */
            r->due = 1;
            r->due_dirty = 0;
            r->due_seg = j->segment;
            r->due_off = j->off;
            if (r->due_last_seq < j->last_seq)
                r->due_last_seq = j->last_seq;
            /* (a writer of another process waits for the lock: now) */
            int writer = writer_waits(r);
            pthread_mutex_lock(&r->mu);
            int now = r->flushers > 0 || r->maint_wants || r->ix_behind || writer ||
                      reel_mono_ns() - r->last_commit_ns >= COMMIT_EVERY_NS;
            pthread_mutex_unlock(&r->mu);
            if (now)
                commit_due(r);
        }
        block_to_pool(r, &j->raw);
        free(j);
    }
    if (r->in_tx) {
        reel_indexer_rollback(r->ix);
        ix_closed(r);
    }
    /* One last try before the recorder closes, for as long as it gets on. */
    while (r->ix_behind && !r->ix_dead) {
        catch_up(r);
        if (r->ix_retry_ns != 0)
            break;
    }
    return NULL;
}

/* The writer has copied n bytes of its swapped-out list into blocks: they
 * no longer count against queue_bytes. */
static void release_queue_bytes(reel_recorder_t *r, size_t n, size_t mem) {
    if (n == 0 && mem == 0)
        return;
    pthread_mutex_lock(&r->mu);
    r->writer_bytes -= n;
    r->qmem -= mem;
    pthread_cond_broadcast(&r->cv_space);
    pthread_mutex_unlock(&r->mu);
}

static void *writer_main(void *arg) {
    reel_recorder_t *r = arg;
    reel_thread_name("reel-writer");
    qchunk *keep = NULL; /* an emptied chunk, for qspare */
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->qhead == NULL && !r->stop && !r->flush_req && !r->sync_errno) {
            /* Sleep until work comes, the block is due, or (capture
             * stopped) the next check whether the disk works again. */
            int64_t deadline = INT64_MAX;
            if (r->block.len)
                deadline = r->block_deadline_ns;
            if (r->disk_failed && !r->seg_gone && r->retry_ns < deadline)
                deadline = r->retry_ns;
            if (deadline == INT64_MAX) {
                r->writer_waiting = 1;
                pthread_cond_wait(&r->cv_work, &r->mu);
                r->writer_waiting = 0;
                continue;
            }
            if (reel_mono_ns() >= deadline)
                break;
            r->writer_waiting = 2;
            wait_until(&r->cv_work, &r->mu, deadline);
            r->writer_waiting = 0;
        }
        qchunk *list = r->qhead;
        r->qhead = r->qtail = NULL;
        if (r->qspare == NULL) {
            r->qspare = keep;
            keep = NULL;
        }
        r->writer_bytes += r->queued_bytes;
        r->queued_bytes = 0;
        /* Yields only while the queue has room to spare (base/pace.h): a
         * writer that gave its core away under saturation fell behind and
         * bodies were left out of the capture. */
        int calm = r->writer_bytes < r->opts.queue_bytes / 16;
        r->behind = !calm;
        int stop = r->stop, flush = r->flush_req, sync_errno = r->sync_errno;
        r->flush_req = 0;
        r->sync_errno = 0;
        pthread_cond_broadcast(&r->cv_space);
        pthread_mutex_unlock(&r->mu);

        take_sync_failure(r, sync_errno);
        try_resume(r);
        reel_spool_enc_pace(r->enc, calm ? REEL_RECORDER_PACE_NS : 0);
        size_t copied = 0, freed = 0;
        while (list) {
            qchunk *c = list;
            list = c->next;
            uint64_t seq = c->first_seq;
            for (size_t pos = 0; pos < c->len;) {
                uint32_t len;
                memcpy(&len, c->data + pos, sizeof len);
                const uint8_t *data = c->data + pos + sizeof len;
                pos += sizeof len + len;
                if (r->block.len && r->block.len + len + 10 > r->block_cap) {
                    /* the block goes out: let producers go on meanwhile */
                    release_queue_bytes(r, copied, freed);
                    copied = freed = 0;
                }
                take(r, data, len);
                r->block_last_seq = seq++;
                copied += len;
            }
            freed += sizeof *c + c->cap;
            if (keep == NULL && c->cap == QCHUNK)
                keep = c; /* handed back at the next take */
            else
                free(c);
        }
        release_queue_bytes(r, copied, freed);
        if (r->block.len && (stop || flush || reel_mono_ns() >= r->block_deadline_ns ||
                             r->block.len >= r->block_cap))
            frame_out(r);
        /* End the batch (sync + commit) when the queue has run dry, or when
         * enough has piled up: under load one fdatasync then covers many
         * frames, and nothing counts as done before its frame is synced. */
        pthread_mutex_lock(&r->mu);
        int more = r->qhead != NULL;
        pthread_mutex_unlock(&r->mu);
        if (!more || stop || flush || r->seg_size - r->batch_start_size >= (4u << 20) ||
            reel_mono_ns() - r->batch_start_ns >= 50 * 1000000) {
            batch_end(r);
            r->batch_start_size = r->seg_size;
            r->batch_start_ns = reel_mono_ns();
        }
        if (stop) {
            pthread_mutex_lock(&r->mu);
            int empty = r->qhead == NULL;
            pthread_mutex_unlock(&r->mu);
            if (empty)
                break;
        }
    }
    free(keep);
    return NULL;
}

/* ---- producer side ---- */

/* What kind of record is queued: the budget treats them differently. */
enum {
    Q_SMALL, /* start, heads: kept up to the whole budget */
    Q_BODY,  /* a body chunk: shed first, once the body share is used up */
    Q_FINAL, /* end or error: always queued (one per flow, small) */
};

/* The share of queue_bytes body chunks may use; the rest is kept for
 * heads and ends, so that a queue full of bodies never costs a flow its
 * head or its outcome. */
static size_t body_budget(const reel_recorder_t *r) {
    return r->opts.queue_bytes - r->opts.queue_bytes / 8;
}

/* Whether a record of len bytes of this kind finds no room in the queue
 * (under mu). */
static int queue_full(const reel_recorder_t *r, size_t len, int kind) {
    size_t cap = kind == Q_BODY ? body_budget(r) : r->opts.queue_bytes;
    return kind != Q_FINAL && r->queued_bytes + r->writer_bytes + len > cap &&
           (r->qhead || r->writer_bytes);
}

/* With capture lossless: waits (under mu) until a record of len bytes fits
 * the whole budget. */
static void wait_for_room(reel_recorder_t *r, size_t len) {
    while (r->queued_bytes + r->writer_bytes + len > r->opts.queue_bytes &&
           (r->qhead || r->writer_bytes))
        pthread_cond_wait(&r->cv_space, &r->mu);
}

/* A start or head that found no room (capture on): counted, and the flow
 * marked (under mu). Returns 1 when the warning is to be said, once. */
static int drop_locked(reel_recorder_t *r, reel_rflow_t *f) {
    r->stats.dropped_records++;
    if (f)
        f->dropped++;
    if (r->warned_records)
        return 0;
    r->warned_records = 1;
    return 1;
}

static void warn_dropping(reel_recorder_t *r) {
    warn(r, "capture is falling behind the disk: the capture buffer is full even "
            "without bodies, records are being dropped and the affected flows marked "
            "with an error (set capture=lossless to slow traffic down instead)");
}

/* Appends an empty chunk c to the queue; its first record will be the
 * next one queued (under mu). */
static void queue_link(reel_recorder_t *r, qchunk *c) {
    c->next = NULL;
    c->len = 0;
    c->first_seq = r->enq_seq + 1;
    if (r->qtail)
        r->qtail->next = c;
    else
        r->qhead = c;
    r->qtail = c;
    r->qmem += sizeof *c + c->cap;
    if (r->qmem > r->stats.queue_mem_peak)
        r->stats.queue_mem_peak = r->qmem;
    if (r->qmem >= TRIM_LOW) {
        r->trim_busy = 1;
        if (r->qmem >= TRIM_AFTER)
            r->trim_due = 1;
    }
}

/* Room at the queue's end for a record of len bytes (under mu): its
 * bytes go at the pointer returned, before queue_locked. */
static uint8_t *queue_room(reel_recorder_t *r, size_t len) {
    size_t need = sizeof(uint32_t) + len;
    qchunk *c = r->qtail;
    if (c == NULL || c->cap - c->len < need) {
        if (need <= QCHUNK && r->qspare) {
            c = r->qspare;
            r->qspare = NULL;
        } else {
            size_t cap = need <= QCHUNK ? QCHUNK : need;
            c = reel_malloc(sizeof *c + cap);
            c->cap = cap;
        }
        queue_link(r, c);
    }
    return c->data + c->len + sizeof(uint32_t);
}

/* Appends the len bytes written at queue_room() to the queue and wakes the
 * writer if it waits (under mu). */
static void queue_locked(reel_recorder_t *r, size_t len) {
    qchunk *c = r->qtail;
    ++r->enq_seq;
    uint32_t n = (uint32_t)len;
    memcpy(c->data + c->len, &n, sizeof n);
    c->len += sizeof n + len;
    r->queued_bytes += len;
    if (r->queued_bytes + r->writer_bytes > r->stats.queue_peak)
        r->stats.queue_peak = r->queued_bytes + r->writer_bytes;
    /* Wake the writer when it waits for work, or when it waits for a
     * block's deadline and half a block has piled up; otherwise it takes
     * these records at its deadline. Waking it per record cost a context
     * switch and lock contention per record, more CPU than the recording. */
    if (r->writer_waiting == 1 || (r->writer_waiting == 2 && r->queued_bytes >= r->wake_bytes)) {
        r->writer_waiting = 0;
        pthread_cond_signal(&r->cv_work);
    }
}

/* What a record with event field number ev holds, for messages. */
static const char *event_name(unsigned ev) {
    switch (ev) {
    case REEL__RECORD__EVENT_REQUEST_HEAD:
        return "request head";
    case REEL__RECORD__EVENT_RESPONSE_HEAD:
        return "response head";
    case REEL__RECORD__EVENT_INTERIM:
        return "informational (1xx) head";
    case REEL__RECORD__EVENT_TRAILERS:
        return "trailer section";
    case REEL__RECORD__EVENT_SERVER_CONN:
        return "upstream connection record";
    default:
        return "record";
    }
}

/* p is larger than the spool takes in one record (REEL_SPOOL_RECORD_MAX:
 * readers refuse longer ones as corrupt) and was not queued. Heads, the
 * only records of unbounded size that are not split, are bounded below it
 * by max_head_size; this catches what gets past that (an import, a record
 * type nobody bounded). The flow is not left to look whole without it:
 * like a flow whose head found no room it records nothing more and ends
 * with an error, one that also marks it damaged (records_lost). */
static void too_large(reel_recorder_t *r, reel_rflow_t *f, const pending *p) {
    uint64_t fid = 0;
    unsigned ev = 0;
    peek_record(p->data, p->len, &fid, &ev);
    char msg[256];
    if (f) {
        if (f->big_event == 0) {
            f->big_event = ev ? ev : 1;
            f->big_len = p->len;
        }
        f->dropped++;
        snprintf(msg, sizeof msg,
                 "flow %llu: its %s takes %zu bytes as a record, more than a spool record may "
                 "hold (%u): not recorded, nor anything of the flow after it; the flow ends "
                 "with an error and is marked damaged",
                 (unsigned long long)f->id, event_name(ev), p->len, REEL_SPOOL_RECORD_MAX);
    } else {
        /* an end: its fields are bounded, so this is a bug; the flow is
         * left open, and the next recovery ends it as interrupted */
        snprintf(msg, sizeof msg,
                 "internal error: flow %llu: its end takes %zu bytes as a record, more than a "
                 "spool record may hold (%u); not recorded",
                 (unsigned long long)fid, p->len, REEL_SPOOL_RECORD_MAX);
    }
    pthread_mutex_lock(&r->mu);
    r->stats.dropped_records++;
    pthread_mutex_unlock(&r->mu);
    warn(r, msg);
}

/* Queues p, an encoded record (enqueue() says how), and frees it. */
static int enqueue_item(reel_recorder_t *r, reel_rflow_t *f, pending *p, int kind) {
    size_t len = p->len;
    if (len > REEL_SPOOL_RECORD_MAX) {
        too_large(r, f, p);
        pending_free(p);
        return 0;
    }
    pthread_mutex_lock(&r->mu);
    int full = queue_full(r, len, kind);
    if (full && r->capture == REEL_CAPTURE_LOSSLESS) {
        wait_for_room(r, len);
        full = 0;
    }
    if (full) {
        int say = kind == Q_BODY ? 0 : drop_locked(r, f);
        pthread_mutex_unlock(&r->mu);
        pending_free(p);
        if (say)
            warn_dropping(r);
        return 0;
    }
    qchunk *t = r->qtail;
    if (p->own && (t == NULL || t->cap - t->len < sizeof(uint32_t) + len)) {
        /* the record is in place: its chunk joins the queue */
        queue_link(r, p->own);
        p->own = NULL;
    } else {
        /* Copied when it fits in the last chunk: linked, every record
         * bigger than the stack buffer started a chunk, and the small
         * records after it (the next flow's start and heads) another one
         * of QCHUNK, mostly empty: the queue's memory was five times the
         * record bytes it counts, for flows with bodies of 10 KiB. */
        memcpy(queue_room(r, len), p->data, len);
    }
    queue_locked(r, len);
    pthread_mutex_unlock(&r->mu);
    pending_free(p);
    return 1;
}

/* Packs rec: by hand for the records every flow has (pbhead.h), else
 * with protobuf-c. */
static size_t record_size(const Reel__Record *rec, reel_pbrec_plan_t *pl) {
    size_t n = reel_pbrec_size(rec, pl);
    return n ? n : reel__record__get_packed_size(rec);
}

static size_t record_pack(const Reel__Record *rec, const reel_pbrec_plan_t *pl, uint8_t *out) {
    size_t n = reel_pbrec_write(out, rec, pl);
    return n ? n : reel__record__pack(rec, out);
}

/* Encodes rec and queues it. With capture lossless it waits for room; with
 * capture on it never waits: a body chunk that does not fit in the body
 * share is not queued (returns 0: the caller sheds the rest of that body),
 * and a start or head that does not fit in the whole budget is dropped and
 * counted in f->dropped (the flow then ends with an error). Ends are always
 * queued. Returns 1 when queued. */
static int enqueue(reel_recorder_t *r, reel_rflow_t *f, const Reel__Record *rec, int kind) {
    pending p;
    reel_pbrec_plan_t pl;
    size_t n = record_size(rec, &pl);
    record_pack(rec, &pl, pending_init(&p, n));
    return enqueue_item(r, f, &p, kind);
}

static int64_t now_or(int64_t t) {
    return t ? t : reel_now_us();
}

/* A random (version 4) UUID per flow, on the producer's thread: random
 * bytes are taken from the kernel 4 KiB at a time (a getrandom call per
 * flow was one more syscall per request on the proxy's loop), and written
 * as hex without printf (16 conversions of snprintf cost more than the
 * rest of starting a flow). */
static void uuid4(char out[37]) {
    static __thread uint8_t pool[4096];
    static __thread size_t left;
    if (left < 16) {
        if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool)
            for (size_t i = 0; i < sizeof pool; i++) /* not for security: a label */
                pool[i] = (uint8_t)(rand() & 0xff);
        left = sizeof pool;
    }
    uint8_t b[16];
    memcpy(b, pool + sizeof pool - left, sizeof b);
    left -= sizeof b;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

/* Lets the sync thread cover what is written, then joins it. */
static void stop_sync_thread(reel_recorder_t *r) {
    if (!r->sync_running)
        return;
    pthread_mutex_lock(&r->mu);
    r->sync_stop = 1;
    pthread_cond_signal(&r->cv_sync);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->sthread, NULL);
    r->sync_running = 0;
}

/* ---- maintenance thread: on_segment_closed, retention ---- */

/* How long retention waits for the index thread to step aside before it
 * leaves the lock to SQLite's busy handler as before: a batch end comes
 * within tens of ms unless the disk hangs. */
#define MAINT_GATE_WAIT_NS (5 * 1000000000LL)

/* How long one turn of retention's lasts: the transactions it begins
 * meanwhile run back to back, as waiting for a batch end before each of
 * them made retention slower than a fast client fills segments; the index
 * thread waits for at most this and one transaction (its queue and the
 * capture buffer hold what comes meanwhile). */
#define MAINT_TURN_NS (20 * 1000000LL)

/* Ends retention's turn (under mu). If the index thread waits to begin a
 * transaction, retention owes it that one before its next turn: else,
 * woken after retention took the lock again, it would wait turn after
 * turn. */
static void maint_turn_over(reel_recorder_t *r) {
    if (!r->maint_writing)
        return;
    r->maint_writing = 0;
    r->maint_owes = r->ix_gate_waiting;
    r->maint_owed_at = r->ix_txs;
    pthread_cond_broadcast(&r->cv_gate);
}

/* reel_retention_lock_t.take (maintenance thread), before each of
 * retention's transactions: within its turn, nothing to do; else waits
 * until the index thread has no transaction open (ix_begin says why), and
 * a new turn begins. */
static void maint_take(void *arg) {
    reel_recorder_t *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->maint_writing && reel_mono_ns() < r->maint_turn_end) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    maint_turn_over(r);
    r->maint_wants = 1;
    if (r->ix_tx_open)
        pthread_cond_signal(&r->cv_ijob); /* it may be holding back a commit */
    int64_t give_up = reel_mono_ns() + MAINT_GATE_WAIT_NS;
    while ((r->ix_tx_open || (r->maint_owes && r->ix_txs == r->maint_owed_at)) &&
           reel_mono_ns() < give_up)
        wait_until(&r->cv_gate, &r->mu, give_up);
    r->maint_wants = 0;
    r->maint_owes = 0;
    r->maint_writing = 1;
    r->maint_turn_end = reel_mono_ns() + MAINT_TURN_NS;
    pthread_mutex_unlock(&r->mu);
}

/* reel_retention_lock_t.give, after each of retention's transactions: the
 * turn goes on until it is used up (maint_take) or retention has nothing
 * more to do (maint_done). */
static void maint_give(void *arg) {
    reel_recorder_t *r = arg;
    pthread_mutex_lock(&r->mu);
    if (reel_mono_ns() >= r->maint_turn_end)
        maint_turn_over(r);
    pthread_mutex_unlock(&r->mu);
}

/* Retention is done for now: the index thread may begin again. */
static void maint_done(reel_recorder_t *r) {
    pthread_mutex_lock(&r->mu);
    maint_turn_over(r);
    pthread_mutex_unlock(&r->mu);
}

/* Runs `sh -c 'CMD "$1"' sh PATH` and waits for it; a failure is warned. */
static void run_hook(reel_recorder_t *r, const char *cmd, uint32_t seg) {
    char name[16];
    reel_spool_segment_name(seg, name);
    char *path = reel_asprintf("%s/%s", reel_session_spool_dir(r->session), name);
    char *script = reel_asprintf("%s \"$1\"", cmd);
    char *argv[] = {"sh", "-c", script, "sh", path, NULL};
    extern char **environ;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int e = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    char msg[REEL_ERR_MSG_MAX];
    msg[0] = 0;
    if (e != 0) {
        snprintf(msg, sizeof msg, "on_segment_closed: cannot run the command for %s: %s", name,
                 strerror(e));
    } else {
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            snprintf(msg, sizeof msg, "on_segment_closed: '%s' failed for %s: exit status %d",
                     cmd, name, WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            snprintf(msg, sizeof msg, "on_segment_closed: '%s' failed for %s: killed by signal %d",
                     cmd, name, WTERMSIG(status));
    }
    if (msg[0])
        warn(r, msg);
    free(script);
    free(path);
}

static void *maint_main(void *arg) {
    reel_recorder_t *r = arg;
    reel_thread_name("reel-maint");
    sqlite3 *db = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    char *dbpath = reel_asprintf("%s/session.db", reel_session_path(r->session));
    /* Its drops go into the journal as they commit, so that an index
     * rebuilt without session.db still knows them (docs/format.md, 6a). */
    char *jpath = reel_asprintf("%s/" REEL_JOURNAL_NAME, reel_session_spool_dir(r->session));
    if (reel_index_open(dbpath, 0, &db, &err) != REEL_OK ||
        reel_journal_attach(db, jpath, &err) != REEL_OK) {
        char msg[REEL_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "retention is off for this run: %s", reel_err_str(&err));
        warn(r, msg);
        sqlite3_close_v2(db);
        db = NULL;
    }
    free(dbpath);
    free(jpath);
    int64_t every = (int64_t)(r->opts.maint_ms ? r->opts.maint_ms : 1000) * 1000000;
    int64_t next = 0; /* run once at the start */
    uint32_t *segs = NULL;
    reel_retention_lock_t lock = {maint_take, maint_give, r};
    uint32_t future_told = 0; /* the oldest future-dated segment last warned of */
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->maint_stop && r->nclosed == 0 && reel_mono_ns() < next)
            wait_until(&r->cv_maint, &r->mu, next);
        int stop = r->maint_stop;
        size_t n = r->nclosed;
        free(segs);
        segs = NULL;
        if (n) {
            segs = reel_malloc(n * sizeof *segs);
            memcpy(segs, r->closed, n * sizeof *segs);
        }
        r->nclosed = 0;
        char *cmd = r->hook_cmd ? reel_strdup(r->hook_cmd) : NULL;
        reel_retention_limits_t lim = r->ret_lim;
        uint32_t below = r->ix_done_seg;
        pthread_mutex_unlock(&r->mu);

        for (size_t i = 0; cmd && i < n; i++)
            run_hook(r, cmd, segs[i]);
        free(cmd);
        reel_retention_result_t res;
        reel_rc rrc = REEL_OK;
        if (db && !stop) {
            rrc = reel_retention_run(db, reel_session_spool_dir(r->session), below, &lim,
                                     reel_now_us(), &lock, &res, &err);
            maint_done(r);
        }
        if (rrc != REEL_OK) {
            char msg[REEL_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", reel_err_str(&err));
            warn(r, msg);
            reel_err_clear(&err);
        } else if (db && !stop && res.segments) {
            char msg[REEL_ERR_MSG_MAX];
            snprintf(msg, sizeof msg,
                     "retention dropped %u segment%s (%llu bytes, %llu flows); 'reel show' lists "
                     "what and why",
                     res.segments, res.segments == 1 ? "" : "s", (unsigned long long)res.bytes,
                     (unsigned long long)res.flows);
            warn(r, msg);
        }
        if (rrc == REEL_OK && db && !stop && res.future && res.future_seg != future_told) {
            /* once per oldest such segment, not every second */
            future_told = res.future_seg;
            char msg[REEL_ERR_MSG_MAX];
            snprintf(msg, sizeof msg,
                     "retention: %u spool segment%s dated in the future (%08u.zst the oldest, "
                     "up to %lld s ahead: the clock was set back?); %s taken to be as old as "
                     "the segments after %s",
                     res.future, res.future == 1 ? " is" : "s are", res.future_seg,
                     (long long)res.future_s, res.future == 1 ? "it is" : "they are",
                     res.future == 1 ? "it" : "them");
            warn(r, msg);
        }
        next = reel_mono_ns() + every;
        pthread_mutex_lock(&r->mu);
        if (stop && r->nclosed == 0)
            break;
    }
    pthread_mutex_unlock(&r->mu);
    free(segs);
    sqlite3_close_v2(db);
    return NULL;
}

static void stop_maint_thread(reel_recorder_t *r) {
    if (!r->maint_running)
        return;
    pthread_mutex_lock(&r->mu);
    r->maint_stop = 1;
    pthread_cond_signal(&r->cv_maint);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->mthread, NULL);
    r->maint_running = 0;
}

void reel_recorder_set_retention(reel_recorder_t *r, const reel_retention_limits_t *lim,
                                 const char *on_segment_closed) {
    pthread_mutex_lock(&r->mu);
    r->ret_lim = *lim;
    free(r->hook_cmd);
    r->hook_cmd = on_segment_closed && on_segment_closed[0] ? reel_strdup(on_segment_closed)
                                                            : NULL;
    pthread_cond_signal(&r->cv_maint);
    pthread_mutex_unlock(&r->mu);
}

static int segment_exists(reel_session_t *s, uint32_t n) {
    char name[16];
    reel_spool_segment_name(n, name);
    char *p = reel_asprintf("%s/%s", reel_session_spool_dir(s), name);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
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
        r->opts.queue_bytes = REEL_RECORDER_QUEUE_DEFAULT;
    if (r->opts.queue_bytes < REEL_RECORDER_QUEUE_MIN)
        r->opts.queue_bytes = REEL_RECORDER_QUEUE_MIN;
    if (r->opts.segment_size < (1u << 20))
        r->opts.segment_size = 1u << 20;
    if (r->opts.retry_ms == 0)
        r->opts.retry_ms = 1000;
    r->block_cap = reel_spool_block_size(r->opts.segment_size, r->opts.block_size);
    r->wake_bytes = r->block_cap / 2;
    r->body_limit = r->opts.body_limit;
    r->capture = r->opts.capture;
    r->seg_fd = -1;
    reel_buf_init(&r->block, 0);
    reel_buf_init(&r->frame, 0);
    reel_buf_init(&r->scratch, 0);
    reel_buf_init(&r->held_raw, 0);
    reel_buf_init(&r->held_frame, 0);
    r->zhelp_allowed = sysconf(_SC_NPROCESSORS_ONLN) > 1;
    r->lost_buckets = 64;
    r->lost = reel_calloc(r->lost_buckets, sizeof *r->lost);
    pthread_mutex_init(&r->mu, NULL);
    /* Timed waits (block deadlines, retries) use the monotonic clock. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv_work, &ca);
    pthread_cond_init(&r->cv_space, &ca);
    pthread_cond_init(&r->cv_done, &ca);
    pthread_cond_init(&r->cv_ijob, &ca);
    pthread_cond_init(&r->cv_ispace, &ca);
    pthread_cond_init(&r->cv_sync, &ca);
    pthread_cond_init(&r->cv_synced, &ca);
    pthread_cond_init(&r->cv_maint, &ca);
    pthread_cond_init(&r->cv_gate, &ca);
    pthread_condattr_destroy(&ca);
    r->ret_lim = r->opts.retention;
    if (r->opts.on_segment_closed && r->opts.on_segment_closed[0])
        r->hook_cmd = reel_strdup(r->opts.on_segment_closed);
    r->opts.on_segment_closed = NULL; /* borrowed: the copy is hook_cmd */
    r->next_flow_id = reel_index_max_flow_id(reel_session_db(s)) + 1;
    char *dbpath = reel_asprintf("%s/session.db", reel_session_path(s));
    /* the index thread's alone (opened here, freed after it is joined) */
    rc = reel_index_open(dbpath, REEL_INDEX_ONE_THREAD, &r->wdb, err);
    free(dbpath);
    /* The indexer's multi-row statements keep a statement journal (the
     * pages they touch, to undo a statement that fails half way). Past
     * 64 KiB SQLite spills it to a temporary file: a write per page
     * touched, two thirds of the index thread's CPU in the kernel. In
     * memory it stays a few hundred KiB at most. */
    if (rc == REEL_OK)
        rc = reel_index_exec(r->wdb, "PRAGMA temp_store = MEMORY", err);
    if (rc != REEL_OK)
        goto out;
    if ((rc = reel_indexer_new(r->wdb, &r->ix, err)) == REEL_OK)
        reel_indexer_marks_fixed(r->ix);
    if (rc != REEL_OK)
        goto out;
    r->enc = reel_spool_enc_new(r->opts.zstd_level);
    /* Append to the newest segment: recovery left it ending on a frame. If
     * the newest indexed segment is missing (deleted), start the next one
     * rather than a new file under its name, whose offsets the index
     * already uses for frames that are gone. */
    uint32_t last = 0, indexed = reel_index_last_segment(reel_session_db(s));
    for (uint32_t n = indexed + 1; segment_exists(s, n); n++)
        last = n;
    if (last == 0)
        last = indexed && segment_exists(s, indexed) ? indexed : indexed + 1;
    if ((rc = open_segment(r, last, err)) != REEL_OK)
        goto out;
    if (r->seg_size >= r->opts.segment_size &&
        (rc = open_segment(r, r->segment + 1, err)) != REEL_OK)
        goto out;
    r->written_seg = r->synced_seg = r->segment;
    r->written_off = r->synced_off = r->seg_size;
    r->ix_done_seg = r->segment; /* recovery indexed everything before it */
    if (r->opts.fsync != REEL_FSYNC_NEVER) {
        if (pthread_create(&r->sthread, NULL, sync_main, r) != 0) {
            rc = reel_err_set(err, REEL_ERROR, "cannot start the sync thread");
            goto out;
        }
        r->sync_running = 1;
    }
    if (pthread_create(&r->ithread, NULL, index_main, r) != 0) {
        stop_sync_thread(r);
        rc = reel_err_set(err, REEL_ERROR, "cannot start the index thread");
        goto out;
    }
    if (pthread_create(&r->thread, NULL, writer_main, r) != 0) {
        ijob *q = reel_calloc(1, sizeof *q);
        q->quit = 1;
        push_ijob(r, q);
        pthread_join(r->ithread, NULL);
        stop_sync_thread(r);
        rc = reel_err_set(err, REEL_ERROR, "cannot start the writer thread");
        goto out;
    }
    if (pthread_create(&r->mthread, NULL, maint_main, r) == 0)
        r->maint_running = 1;
    else
        warn(r, "cannot start the maintenance thread: no retention or on_segment_closed");
out:
    if (rc != REEL_OK) {
        reel_indexer_free(r->ix);
        sqlite3_close_v2(r->wdb);
        reel_spool_enc_free(r->enc);
        if (r->seg_fd >= 0)
            close(r->seg_fd);
        reel_buf_free(&r->block);
        reel_buf_free(&r->frame);
        reel_buf_free(&r->scratch);
        free(r->lost);
        free(r->hook_cmd);
        free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

void reel_recorder_set_limits(reel_recorder_t *rec, uint64_t body_limit,
                              reel_capture_mode capture) {
    pthread_mutex_lock(&rec->mu);
    rec->body_limit = body_limit;
    rec->capture = capture;
    pthread_mutex_unlock(&rec->mu);
}

/* The start record goes into the queue in the same locked section that
 * gives the flow its id, so that starts are queued in id order with any
 * number of producer threads (flow ids follow start times in the index,
 * whichever worker started the flow). It is packed under the lock (a
 * small record, once per flow) into a buffer allocated before, with room
 * for the largest id (the size the queue accounts for while it checks for
 * room). */
void reel_recorder_position(reel_recorder_t *r, uint32_t *segment, uint64_t *offset,
                            uint64_t *next_flow_id) {
    pthread_mutex_lock(&r->mu);
    *segment = r->written_seg;
    *offset = r->written_off;
    *next_flow_id = r->next_flow_id;
    pthread_mutex_unlock(&r->mu);
}

/* ct filled with the client's TLS (each string NULL: empty); ct. */
static Reel__ClientTls *client_tls_pb(Reel__ClientTls *ct, const char *sni, const char *alpn,
                                      const char *version, const char *cipher, bool resumed) {
    ct->sni = (char *)(sni ? sni : "");
    ct->alpn = (char *)(alpn ? alpn : "");
    ct->tls_version = (char *)(version ? version : "");
    ct->cipher = (char *)(cipher ? cipher : "");
    ct->resumed = resumed;
    return ct;
}

reel_rflow_t *reel_recorder_flow_start(reel_recorder_t *r, const reel_flow_info_t *info) {
    reel_rflow_t *f = reel_calloc(1, sizeof *f);
    f->rec = r;
    f->start_tls = info && info->tls;
    char uuid[37];
    uuid4(uuid);
    Reel__FlowStart st = REEL__FLOW_START__INIT;
    st.uuid = uuid;
    st.kind = info && info->kind == REEL_FLOW_TUNNEL ? REEL__FLOW_KIND__FLOW_KIND_TUNNEL
                                                     : REEL__FLOW_KIND__FLOW_KIND_HTTP;
    st.client_addr = (char *)(info && info->client_addr ? info->client_addr : "");
    st.server_addr = (char *)(info && info->server_addr ? info->server_addr : "");
    st.source = (char *)(info && info->source ? info->source : "proxy");
    st.client_conn = info ? info->client_conn : 0;
    st.stream_id = info ? info->stream_id : 0;
    Reel__ClientTls ct = REEL__CLIENT_TLS__INIT;
    if (info && info->tls)
        st.client_tls = client_tls_pb(&ct, info->tls_sni, info->tls_alpn, info->tls_version,
                                      info->tls_cipher, info->tls_resumed);
    Reel__ReplayOf ro = REEL__REPLAY_OF__INIT;
    if (info && info->replay_of) {
        ro.flow_id = info->replay_of;
        ro.session = (char *)(info->replay_session ? info->replay_session : "");
        ro.uuid = (char *)(info->replay_uuid ? info->replay_uuid : "");
        st.replay_of = &ro;
    }
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = UINT64_MAX; /* the largest encoding an id can take */
    int64_t given_us = info ? info->time_us : 0;
    rec.time_us = given_us ? given_us : INT64_MAX; /* ... and time */
    rec.event_case = REEL__RECORD__EVENT_START;
    rec.start = &st;
    reel_pbrec_plan_t pl; /* (the event's lengths do not depend on id and time) */
    size_t room = record_size(&rec, &pl);
    int say = 0;
    pthread_mutex_lock(&r->mu);
    f->limit = r->body_limit;
    if (r->capture != REEL_CAPTURE_OFF) {
        int full = queue_full(r, room, Q_SMALL);
        if (full && r->capture == REEL_CAPTURE_LOSSLESS) {
            wait_for_room(r, room);
            full = 0;
        }
        f->id = r->next_flow_id++;
        /* "now" read with the id given: flows of any number of producer
         * threads (the proxy's workers) are numbered in the order they
         * started */
        rec.time_us = now_or(given_us);
        f->start_us = rec.time_us;
        r->stats.flows++;
        if (full) {
            say = drop_locked(r, f);
        } else {
            rec.flow_id = f->id;
            queue_locked(r, record_pack(&rec, &pl, queue_room(r, room)));
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (say)
        warn_dropping(r);
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

void reel_recorder_request_head(reel_rflow_t *f, const reel_request_head_t *h) {
    if (f->id == 0 || f->dropped)
        return;
    /* encoded by hand (pbhead.h): protobuf-c's pack of a head cost more
     * than the rest of recording it */
    reel_request_head_t rq = *h;
    rq.scheme = h->scheme ? h->scheme : "http";
    rq.http_version = h->http_version ? h->http_version : "HTTP/1.1";
    int64_t t = now_or(h->time_us);
    pending p;
    reel_pbrec_plan_t pl;
    size_t n = reel_pbhead_request_size(f->id, t, &rq, &pl);
    reel_pbhead_request_write(pending_init(&p, n), f->id, t, &rq, &pl);
    f->body_time_us = h->time_us;
    enqueue_item(f->rec, f, &p, Q_SMALL);
}

/* A response head as a record: the final one (interim false) or a 1xx
 * before it. */
static void response_record(reel_rflow_t *f, const reel_response_head_t *h, bool interim) {
    if (f->id == 0 || f->dropped)
        return;
    reel_response_head_t rs = *h;
    rs.http_version = h->http_version ? h->http_version : "HTTP/1.1";
    int64_t t = now_or(h->time_us);
    pending p;
    reel_pbrec_plan_t pl;
    size_t n = reel_pbhead_response_size(f->id, t, &rs, interim, &pl);
    reel_pbhead_response_write(pending_init(&p, n), f->id, t, &rs, &pl);
    if (!interim)
        f->body_time_us = h->time_us;
    enqueue_item(f->rec, f, &p, Q_SMALL);
}

void reel_recorder_response_head(reel_rflow_t *f, const reel_response_head_t *h) {
    response_record(f, h, false);
}

void reel_recorder_interim(reel_rflow_t *f, const reel_response_head_t *h) {
    response_record(f, h, true);
}

void reel_recorder_trailers(reel_rflow_t *f, bool response, const reel_header_t *headers, size_t n,
                            bool not_passed_on) {
    if (f->id == 0 || f->dropped || n == 0)
        return;
    Reel__Header *store = reel_malloc(n * sizeof *store);
    Reel__Trailers t = REEL__TRAILERS__INIT;
    t.response = response;
    t.not_passed_on = not_passed_on;
    t.n_headers = n;
    t.headers = headers_pb(headers, n, store);
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(0);
    rec.event_case = REEL__RECORD__EVENT_TRAILERS;
    rec.trailers = &t;
    enqueue(f->rec, f, &rec, Q_SMALL);
    free(t.headers);
    free(store);
}

void reel_recorder_body_edit(reel_rflow_t *f, const reel_body_edit_t *e) {
    if (f->id == 0 || f->dropped)
        return;
    Reel__BodyEdit b = REEL__BODY_EDIT__INIT;
    b.response = e->response;
    b.n_rules = e->n_rules;
    b.rules = (char **)e->rules;
    b.replacements = e->replacements;
    b.sent_size = e->sent_size;
    b.decoded = e->decoded;
    b.not_applied = (char *)(e->not_applied ? e->not_applied : "");
    b.answered_continue = e->answered_continue;
    if (e->sent_body) {
        /* within the flow's body_limit, and a record's bound with the
         * rules (each bounded by the config; 64 of them at most) */
        size_t keep = e->sent_body_len < REEL_SENT_BODY_MAX ? e->sent_body_len : REEL_SENT_BODY_MAX;
        size_t rules = 0;
        for (size_t i = 0; i < e->n_rules; i++)
            rules += strlen(e->rules[i]) + 8;
        size_t room = REEL_SPOOL_RECORD_MAX - 16384;
        if (keep > f->limit)
            keep = (size_t)f->limit;
        if (keep + rules > room)
            keep = rules < room ? room - rules : 0;
        b.sent_body.data = (uint8_t *)e->sent_body;
        b.sent_body.len = keep;
        b.sent_body_truncated = keep < e->sent_size;
    }
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(0);
    rec.event_case = REEL__RECORD__EVENT_BODY_EDIT;
    rec.body_edit = &b;
    /* The body sent is a body: shed as one when capture falls behind (the
     * record then goes without it, saying it was cut to nothing) */
    if (b.sent_body.len && enqueue(f->rec, f, &rec, Q_BODY))
        return;
    if (b.sent_body.len) {
        b.sent_body.data = NULL;
        b.sent_body.len = 0;
        b.sent_body_truncated = true;
    }
    enqueue(f->rec, f, &rec, Q_SMALL);
}

/* Body shedding (capture on). The budget's body share (7/8 of it) absorbs
 * bursts; heads and ends keep the rest. A body is shed, never a head or an
 * end, and a body is shed from some point to its end, never in pieces: the
 * stored bytes are then a prefix, as with body_limit, so every reader of
 * the spool stays right, and the flow's end says how many bytes were left
 * out (request_body_dropped / response_body_dropped) instead of turning a
 * successful exchange into an error. A body that begins while the body
 * share is more than 3/4 used is shed from its first byte: under a load
 * the disk cannot keep up with, the bodies already being stored keep the
 * last quarter and are stored whole, rather than every body losing its
 * tail (bench/burst stored larger bursts of downloads whole with 3/4 than
 * with 1/2). Per body, not per chunk: a shed chunk in the middle
 * would leave a hole the format cannot express for a live flow. */
static void shed_body(reel_rflow_t *f, int response) {
    reel_recorder_t *r = f->rec;
    f->body_admit[response] = -1;
    pthread_mutex_lock(&r->mu);
    r->stats.unrecorded_bodies++;
    int say = !r->warned_behind;
    r->warned_behind = 1;
    pthread_mutex_unlock(&r->mu);
    if (say) {
        warn(r, "capture is falling behind the disk: some bodies are not stored in full (their "
                "flows end normally and say how many bytes were left out); raise capture_buffer "
                "to absorb larger bursts, or set capture=lossless to slow traffic down instead");
    }
}

/* Whether a body that begins now is stored. */
static int body_admitted(reel_rflow_t *f, int response) {
    if (f->body_admit[response] == 0) {
        reel_recorder_t *r = f->rec;
        f->body_admit[response] = 1;
        pthread_mutex_lock(&r->mu); /* once per body, not per chunk */
        int behind = r->capture == REEL_CAPTURE_ON &&
                     r->queued_bytes + r->writer_bytes > body_budget(r) / 4 * 3;
        pthread_mutex_unlock(&r->mu);
        if (behind)
            shed_body(f, response);
    }
    return f->body_admit[response] > 0;
}

static void body(reel_rflow_t *f, int response, const void *data, size_t len) {
    uint64_t *seen = response ? &f->resp_seen : &f->req_seen;
    uint64_t *stored = response ? &f->resp_stored : &f->req_stored;
    *seen += len;
    if (f->id == 0 || f->dropped || len == 0)
        return;
    size_t room =
        *stored >= f->limit ? 0 : (size_t)(f->limit - *stored < len ? f->limit - *stored : len);
    if (room == 0 || !body_admitted(f, response))
        return; /* counted in seen: the end says what was not stored */
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
        rec.event_case =
            response ? REEL__RECORD__EVENT_RESPONSE_BODY : REEL__RECORD__EVENT_REQUEST_BODY;
        if (response)
            rec.response_body = &bc;
        else
            rec.request_body = &bc;
        if (!enqueue(f->rec, f, &rec, Q_BODY)) {
            shed_body(f, response);
            return;
        }
        *stored += n;
        p += n;
        room -= n;
    }
}

/* A message is one Message record carrying its first REEL_SPOOL_CHUNK
 * bytes, then continuation records for the rest. All are shed like body
 * chunks when capture falls behind, message by message: a message that
 * does not fit is left out (counted, with its bytes, in the flow's end)
 * or keeps a prefix, and the messages after it are stored again once the
 * buffer has room: a long-lived WebSocket must not stop being recorded
 * because of one burst. */
void reel_recorder_message(reel_rflow_t *f, const reel_message_t *m) {
    int dir = m->from_client ? 0 : 1;
    f->msg_seen[dir] += m->length;
    if (f->id == 0 || f->dropped)
        return;
    size_t keep = m->len < f->limit ? m->len : (size_t)f->limit;
    int cut = m->truncated || keep < m->len;
    const uint8_t *p = m->data;
    int64_t t = now_or(m->time_us);
    size_t off = 0;
    do {
        size_t n = keep - off < REEL_SPOOL_CHUNK ? keep - off : REEL_SPOOL_CHUNK;
        Reel__Message pm = REEL__MESSAGE__INIT;
        pm.from_client = m->from_client;
        pm.opcode = m->opcode;
        pm.data.data = (uint8_t *)p + off;
        pm.data.len = n;
        pm.length = m->length;
        pm.truncated = cut;
        pm.compressed = m->compressed;
        pm.close_code = m->close_code;
        pm.continued = off > 0;
        Reel__Record rec = REEL__RECORD__INIT;
        rec.flow_id = f->id;
        rec.time_us = t;
        rec.event_case = REEL__RECORD__EVENT_MESSAGE;
        rec.message = &pm;
        if (!enqueue(f->rec, f, &rec, Q_BODY)) {
            f->msg_dropped[dir] += keep - off; /* the rest of this message */
            if (off == 0)
                f->msg_lost++;
            return;
        }
        off += n;
    } while (off < keep);
}

void reel_recorder_server_conn(reel_rflow_t *f, const reel_server_conn_t *sc) {
    if (f->id == 0 || f->dropped)
        return;
    Reel__ServerConn pc = REEL__SERVER_CONN__INIT;
    pc.conn_id = sc->conn_id;
    pc.address = (char *)(sc->address ? sc->address : "");
    pc.sni = (char *)(sc->sni ? sc->sni : "");
    pc.alpn = (char *)(sc->alpn ? sc->alpn : "");
    pc.tls_version = (char *)(sc->tls_version ? sc->tls_version : "");
    pc.cipher = (char *)(sc->cipher ? sc->cipher : "");
    pc.reused = sc->reused;
    pc.retried = sc->retried;
    pc.unverified = sc->unverified;
    pc.verify_error = (char *)(sc->verify_error ? sc->verify_error : "");
    pc.peer_cert = (char *)(sc->peer_cert ? sc->peer_cert : "");
    pc.via = (char *)(sc->via ? sc->via : "");
    pc.via_forward = sc->via_forward;
    pc.client_cert = (char *)(sc->client_cert ? sc->client_cert : "");
    pc.client_cert_asked = sc->client_cert_asked;
    pc.resumed = sc->resumed;
    pc.dns_override = (char *)(sc->dns_override ? sc->dns_override : "");
    if (sc->opened_us) { /* else they mean nothing: left 0, as older records have them */
        pc.opened_us = sc->opened_us;
        pc.dns_us = sc->dns_us;
        pc.connect_us = sc->connect_us;
        pc.ssl_us = sc->ssl_us;
    }
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(0);
    rec.event_case = REEL__RECORD__EVENT_SERVER_CONN;
    rec.server_conn = &pc;
    enqueue(f->rec, f, &rec, Q_SMALL);
}

size_t reel_rflow_too_large(const reel_rflow_t *f, const char **what) {
    if (what)
        *what = f->big_event ? event_name(f->big_event) : NULL;
    return f->big_event ? f->big_len : 0;
}

uint64_t reel_rflow_body_limit(const reel_rflow_t *f) {
    return f->id ? f->limit : 0;
}

int64_t reel_rflow_start_us(const reel_rflow_t *f) {
    return f->id ? f->start_us : 0;
}

void reel_recorder_request_body(reel_rflow_t *f, const void *data, size_t len) {
    body(f, 0, data, len);
}

void reel_recorder_response_body(reel_rflow_t *f, const void *data, size_t len) {
    body(f, 1, data, len);
}

void reel_recorder_body_truncated(reel_rflow_t *f, bool response, uint64_t wire_size) {
    f->cut[response] = 1;
    if (wire_size > f->wire[response])
        f->wire[response] = wire_size;
}

void reel_recorder_body_wire_size(reel_rflow_t *f, bool response, uint64_t wire_size) {
    f->has_exact[response] = 1;
    f->exact[response] = wire_size;
}

/* A body's size on the wire: the bytes given, or more when the caller
 * said so (reel_recorder_body_truncated); the caller's size when the
 * bytes given were decoded (reel_recorder_body_wire_size), since then
 * they count no bytes of the wire. */
static uint64_t body_size(const reel_rflow_t *f, int response) {
    if (f->has_exact[response])
        return f->exact[response];
    uint64_t seen = response ? f->resp_seen : f->req_seen;
    return f->wire[response] > seen ? f->wire[response] : seen;
}

static void fill_timings(Reel__Timings *tm, const reel_timings_t *t) {
    tm->blocked_us = t->blocked_us;
    tm->dns_us = t->dns_us;
    tm->connect_us = t->connect_us;
    tm->send_us = t->send_us;
    tm->wait_us = t->wait_us;
    tm->receive_us = t->receive_us;
    tm->ssl_us = t->ssl_us;
}

/* Body bytes within body_limit that were not stored: shed because capture
 * fell behind (0 when the whole body, up to body_limit, is in the spool). */
static uint64_t body_dropped(const reel_rflow_t *f, int response) {
    uint64_t seen = response ? f->resp_seen : f->req_seen;
    uint64_t stored = response ? f->resp_stored : f->req_stored;
    uint64_t kept = seen < f->limit ? seen : f->limit;
    return kept > stored ? kept - stored : 0;
}

/* The client's TLS of e into ct, when the flow's start lacked it: ct, or
 * NULL. */
static Reel__ClientTls *end_client_tls(const reel_rflow_t *f, const reel_flow_end_t *e,
                                       Reel__ClientTls *ct) {
    if (f->start_tls || !e->tls)
        return NULL;
    return client_tls_pb(ct, e->tls_sni, e->tls_alpn, e->tls_version, e->tls_cipher,
                         e->tls_resumed);
}

/* What FlowEnd and FlowError both carry (their fields have the same
 * names): sizes, dropped bytes, whether a body was cut, times, server
 * address, timings (tm: the caller's storage for them), the client's TLS
 * when the start could not say it (ct: storage). A flow that fails after
 * body_limit cut a body is as cut as one that ends well. */
#define FILL_END_FACTS(fe, f, e, tm, ct)                                                           \
    do {                                                                                           \
        (fe).client_tls = end_client_tls((f), (e), &(ct));                                         \
        (fe).request_body_size = body_size((f), 0) + (f)->msg_seen[0];                             \
        (fe).response_body_size = body_size((f), 1) + (f)->msg_seen[1];                            \
        (fe).request_body_dropped = body_dropped((f), 0) + (f)->msg_dropped[0];                    \
        (fe).response_body_dropped = body_dropped((f), 1) + (f)->msg_dropped[1];                   \
        (fe).request_end_us = (e)->request_end_us;                                                 \
        (fe).response_start_us = (e)->response_start_us;                                           \
        (fe).server_addr = (char *)((e)->server_addr ? (e)->server_addr : "");                     \
        (fe).messages_dropped = (f)->msg_lost;                                                     \
        (fe).response_excess = (e)->response_excess;                                               \
        (fe).request_truncated = (f)->req_seen > (f)->req_stored || (f)->cut[0];                   \
        (fe).response_truncated = (f)->resp_seen > (f)->resp_stored || (f)->cut[1];                \
        if ((e)->timings) {                                                                        \
            fill_timings(&(tm), (e)->timings);                                                     \
            (fe).timings = &(tm);                                                                  \
        }                                                                                          \
    } while (0)

static void end_with_error(reel_rflow_t *f, const char *message, const reel_flow_end_t *e) {
    Reel__FlowError fe = REEL__FLOW_ERROR__INIT;
    Reel__Timings tm = REEL__TIMINGS__INIT;
    Reel__ClientTls ct = REEL__CLIENT_TLS__INIT;
    fe.message = (char *)message;
    FILL_END_FACTS(fe, f, e, tm, ct);
    /* a record too large to store is lost for good, not shed for lack
     * of room: the index marks the flow damaged, so ~damaged and verify
     * name it */
    if (f->big_event)
        fe.records_lost = f->dropped;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = f->id;
    rec.time_us = now_or(e->time_us);
    rec.event_case = REEL__RECORD__EVENT_ERROR;
    rec.error = &fe;
    enqueue(f->rec, NULL, &rec, Q_FINAL);
}

/* Counts the body bytes a finished flow did not store. */
static void count_dropped_bodies(reel_rflow_t *f) {
    uint64_t n = body_dropped(f, 0) + body_dropped(f, 1);
    if (n == 0)
        return;
    pthread_mutex_lock(&f->rec->mu);
    f->rec->stats.dropped_body_bytes += n;
    pthread_mutex_unlock(&f->rec->mu);
}

void reel_recorder_flow_finish(reel_rflow_t *f, const reel_flow_end_t *e) {
    static const reel_flow_end_t none = {0};
    if (f == NULL)
        return;
    if (e == NULL)
        e = &none;
    if (f->id)
        count_dropped_bodies(f);
    char big[256] = "";
    if (f->big_event)
        snprintf(big, sizeof big,
                 "its %s took %zu bytes as a record, more than a spool record may hold (%u): it "
                 "was not recorded, nor anything of the flow after it",
                 event_name(f->big_event), f->big_len, REEL_SPOOL_RECORD_MAX);
    if (f->id && e->error) {
        /* (whole: a long one, a refused head's bytes, kept its end, what
         * capture dropped, when it was cut at 511 bytes) */
        char *msg = f->big_event ? reel_asprintf("%s (and %s)", e->error, big)
                    : f->dropped ? reel_asprintf("%s (and capture fell behind: %llu records not "
                                                 "recorded)",
                                                 e->error, (unsigned long long)f->dropped)
                                 : NULL;
        end_with_error(f, msg ? msg : e->error, e);
        free(msg);
    } else if (f->id && f->big_event) {
        end_with_error(f, big, e);
    } else if (f->id && f->dropped) {
        /* A start or head did not fit even in the part of the capture
         * buffer kept for them: the flow's record has a hole, say so. */
        char msg[160];
        snprintf(msg, sizeof msg,
                 "capture fell behind the disk: %llu records of this flow were not recorded",
                 (unsigned long long)f->dropped);
        end_with_error(f, msg, e);
    } else if (f->id) {
        Reel__FlowEnd fe = REEL__FLOW_END__INIT;
        Reel__Timings tm = REEL__TIMINGS__INIT;
        Reel__ClientTls ct = REEL__CLIENT_TLS__INIT;
        FILL_END_FACTS(fe, f, e, tm, ct);
        Reel__Record rec = REEL__RECORD__INIT;
        rec.flow_id = f->id;
        rec.time_us = now_or(e->time_us);
        rec.event_case = REEL__RECORD__EVENT_END;
        rec.end = &fe;
        enqueue(f->rec, NULL, &rec, Q_FINAL);
    }
    free(f);
}

void reel_recorder_flow_end(reel_rflow_t *f, const reel_timings_t *timings, int64_t time_us,
                            int64_t request_end_us, int64_t response_start_us) {
    reel_flow_end_t e = {.timings = timings,
                         .time_us = time_us,
                         .request_end_us = request_end_us,
                         .response_start_us = response_start_us};
    reel_recorder_flow_finish(f, &e);
}

void reel_recorder_flow_error(reel_rflow_t *f, const char *message, int64_t time_us) {
    reel_flow_end_t e = {.error = message, .time_us = time_us};
    reel_recorder_flow_finish(f, &e);
}

reel_rc reel_recorder_flush(reel_recorder_t *r, reel_err_t *err) {
    pthread_mutex_lock(&r->mu);
    uint64_t target = r->enq_seq;
    r->flush_req = 1;
    pthread_cond_signal(&r->cv_work);
    /* the index thread commits a batch end it holds back, now */
    r->flushers++;
    pthread_cond_signal(&r->cv_ijob);
    /* The writer deals with every record even while capture is stopped
     * (it drops them), so this cannot wait for ever. */
    while (r->done_seq < target)
        pthread_cond_wait(&r->cv_done, &r->mu);
    r->flushers--;
    reel_rc rc = r->sticky;
    if (rc != REEL_OK)
        reel_err_set(err, rc, "%s", r->sticky_msg);
    else if (r->index_behind)
        rc = reel_err_set(err, REEL_DB, "the index is behind the spool: %s", r->index_msg);
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
    stop_sync_thread(r); /* after the index thread: it may wait for a sync */
    stop_maint_thread(r); /* runs the hooks of segments closed before the stop */
    reel_rc rc = r->sticky;
    if (rc != REEL_OK)
        reel_err_set(err, rc,
                     "capture was stopped during this run (%s): %llu records were not "
                     "recorded",
                     r->sticky_msg, (unsigned long long)r->stats.dropped_records);
    else if (r->index_behind)
        rc = reel_err_set(err, REEL_DB,
                          "the index could not catch up with the spool (%s); the next open of "
                          "the session indexes the rest",
                          r->index_msg);
    if (r->seg_fd >= 0) {
        if (r->opts.fsync != REEL_FSYNC_NEVER && !r->disk_failed && fdatasync(r->seg_fd) != 0 &&
            rc == REEL_OK)
            rc = reel_err_errno(err, REEL_IO, errno, "syncing spool segment");
        close(r->seg_fd);
    }
    reel_indexer_free(r->ix);
    sqlite3_close_v2(r->wdb);
    reel_spool_enc_free(r->enc);
    reel_spool_async_free(r->zhelp); /* idle: the writer wrote what it held */
    reel_buf_free(&r->block);
    reel_buf_free(&r->frame);
    reel_buf_free(&r->scratch);
    reel_buf_free(&r->held_raw);
    reel_buf_free(&r->held_frame);
    pool_free(r);
    free(r->qspare);
    while (r->qhead) { /* none: the writer took all before it stopped */
        qchunk *c = r->qhead;
        r->qhead = c->next;
        free(c);
    }
    lost_free_all(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv_work);
    pthread_cond_destroy(&r->cv_space);
    pthread_cond_destroy(&r->cv_done);
    pthread_cond_destroy(&r->cv_ijob);
    pthread_cond_destroy(&r->cv_ispace);
    pthread_cond_destroy(&r->cv_sync);
    pthread_cond_destroy(&r->cv_synced);
    pthread_cond_destroy(&r->cv_maint);
    pthread_cond_destroy(&r->cv_gate);
    free(r->closed);
    free(r->hook_cmd);
    free(r);
    return rc;
}
