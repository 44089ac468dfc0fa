/* Spool codec. The byte-level format is specified in docs/format.md; this
 * file is its reference implementation.
 *
 * Frames are standard zstd frames (RFC 8878) written with the content
 * checksum flag and the frame content size set. Checksums are verified by
 * libzstd while decompressing; a frame whose declared content size exceeds
 * REEL_SPOOL_BLOCK_MAX, or that declares none, is rejected as not ours.
 * Skippable frames are written only where recovery or repair set damaged
 * bytes aside; a scan stops at one and reports it (skip_len). */
#include "session/spool.h"

#include "base/pace.h"
#include "base/thread.h"
#include "flow.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ZSTD_c_stableInBuffer (libzstd >= 1.4.5): see reel_spool_enc_new */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#define ZSTD_MAGIC 0xFD2FB528u

size_t reel_spool_block_size(uint64_t segment_size, size_t want) {
    uint64_t n = want && want < REEL_SPOOL_BLOCK_TARGET ? want : REEL_SPOOL_BLOCK_TARGET;
    if (segment_size / 4 < n)
        n = segment_size / 4;
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < n)
        n = rl.rlim_cur / 4;
    return n < (64u << 10) ? 64u << 10 : (size_t)n;
}

void reel_spool_segment_name(uint32_t n, char out[static 16]) {
    snprintf(out, 16, "%08u.zst", n);
}

int reel_spool_segment_parse(const char *name, uint32_t *n) {
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint32_t)(name[i] - '0');
    }
    if (strcmp(name + 8, ".zst") != 0 || v == 0)
        return 0;
    *n = v;
    return 1;
}

reel_rc reel_spool_block_append(reel_buf_t *block, const uint8_t *rec, size_t len) {
    if (len > REEL_SPOOL_RECORD_MAX)
        return REEL_LIMIT;
    uint8_t hdr[10];
    size_t h = 0;
    size_t v = len;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        hdr[h++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    if (block->len + h + len > REEL_SPOOL_BLOCK_MAX)
        return REEL_LIMIT;
    reel_rc rc = reel_buf_reserve(block, h + len);
    if (rc != REEL_OK)
        return rc;
    memcpy(block->data + block->len, hdr, h);
    memcpy(block->data + block->len + h, rec, len);
    block->len += h + len;
    return REEL_OK;
}

/* Size of the frame header (RFC 8878 section 3.1.1.1) from its descriptor
 * byte, or 0 if buf is too short to hold the descriptor. */
static size_t header_size(const uint8_t *buf, size_t len) {
    if (len < 5)
        return 0;
    uint8_t fhd = buf[4];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did_flag = fhd & 3;
    static const size_t did_size[4] = {0, 1, 2, 4};
    static const size_t fcs_size[4] = {0, 2, 4, 8};
    size_t fcs = fcs_flag == 0 ? (single ? 1 : 0) : fcs_size[fcs_flag];
    return 4 + 1 + (single ? 0 : 1) + did_size[did_flag] + fcs;
}

reel_rc reel_spool_frame_size(const uint8_t *buf, size_t len, size_t *frame_len) {
    if (len < 4)
        return REEL_NEED_MORE;
    uint32_t magic = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
                     (uint32_t)buf[3] << 24;
    if (magic != ZSTD_MAGIC)
        return REEL_CORRUPT;
    size_t hs = header_size(buf, len);
    if (hs == 0 || hs > len)
        return REEL_NEED_MORE;
    if (!(buf[4] & 0x04))
        return REEL_CORRUPT; /* reel frames always carry a content checksum */
    unsigned long long csize = ZSTD_getFrameContentSize(buf, len);
    if (csize == ZSTD_CONTENTSIZE_ERROR || csize == ZSTD_CONTENTSIZE_UNKNOWN ||
        csize > REEL_SPOOL_BLOCK_MAX)
        return REEL_CORRUPT;
    size_t fs = ZSTD_findFrameCompressedSize(buf, len);
    if (ZSTD_isError(fs)) {
        /* A frame cut short and a malformed block header both fail here;
         * srcSize_wrong means "the buffer ends inside the frame". */
        return ZSTD_getErrorCode(fs) == ZSTD_error_srcSize_wrong ? REEL_NEED_MORE : REEL_CORRUPT;
    }
    if (fs > REEL_SPOOL_FRAME_MAX)
        return REEL_CORRUPT;
    *frame_len = fs;
    return REEL_OK;
}

/* reel_spool_frame_decode with the decompression context d (one made for
 * the call if NULL). */
static reel_rc frame_decode_with(ZSTD_DCtx *d, const uint8_t *frame, size_t len, reel_buf_t *out,
                                 reel_err_t *err) {
    unsigned long long csize = ZSTD_getFrameContentSize(frame, len);
    if (csize == ZSTD_CONTENTSIZE_ERROR || csize == ZSTD_CONTENTSIZE_UNKNOWN ||
        csize > REEL_SPOOL_BLOCK_MAX)
        return reel_err_set(err, REEL_CORRUPT, "frame header is not a reel block");
    size_t hs = header_size(frame, len);
    if (hs == 0 || hs > len || !(frame[4] & 0x04))
        return reel_err_set(err, REEL_CORRUPT, "frame has no content checksum");
    reel_buf_reset(out);
    if (reel_buf_reserve(out, (size_t)csize) != REEL_OK)
        return reel_err_set(err, REEL_LIMIT, "frame too large");
    size_t n = d ? ZSTD_decompressDCtx(d, out->data, (size_t)csize, frame, len)
                 : ZSTD_decompress(out->data, (size_t)csize, frame, len);
    if (ZSTD_isError(n))
        return reel_err_set(err, REEL_CORRUPT, "%s", ZSTD_getErrorName(n));
    if (n != csize)
        return reel_err_set(err, REEL_CORRUPT, "frame content size mismatch");
    out->len = n;
    out->data[n] = 0;
    return REEL_OK;
}

reel_rc reel_spool_frame_decode(const uint8_t *frame, size_t len, reel_buf_t *out,
                                reel_err_t *err) {
    return frame_decode_with(NULL, frame, len, out, err);
}

void reel_spool_skip_header(uint64_t total, uint8_t hdr[static 8]) {
    uint32_t m = REEL_SPOOL_SKIP_MAGIC, n = (uint32_t)(total - REEL_SPOOL_SKIP_HDR);
    for (int i = 0; i < 4; i++) {
        hdr[i] = (uint8_t)(m >> (8 * i));
        hdr[4 + i] = (uint8_t)(n >> (8 * i));
    }
}

/* Length of the skippable frame at buf (any of zstd's 16 skippable magics),
 * or 0 if buf does not start one that fits in file_left bytes. */
static uint64_t skippable_len(const uint8_t *buf, size_t len, uint64_t file_left) {
    if (len < REEL_SPOOL_SKIP_HDR || buf[1] != 0x2a || buf[2] != 0x4d || buf[3] != 0x18 ||
        (buf[0] & 0xf0) != 0x50)
        return 0;
    uint64_t n = (uint64_t)buf[4] | (uint64_t)buf[5] << 8 | (uint64_t)buf[6] << 16 |
                 (uint64_t)buf[7] << 24;
    return n + REEL_SPOOL_SKIP_HDR <= file_left ? n + REEL_SPOOL_SKIP_HDR : 0;
}

int reel_spool_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return 0;
        uint8_t b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Event field numbers of Record: start = 10 .. error = 16, edit = 17, server_conn = 18,
 * message = 19. */
#define EV_FIRST 10
#define EV_LAST 19

int reel_spool_peek_record(const uint8_t *p, size_t len, reel_spool_peek_t *out) {
    size_t pos = 0;
    memset(out, 0, sizeof *out);
    while (pos < len) {
        uint64_t key, v;
        if (!reel_spool_read_varint(p, len, &pos, &key))
            return 0;
        uint64_t field = key >> 3, wt = key & 7;
        if (wt == 0) {
            if (!reel_spool_read_varint(p, len, &pos, &v))
                return 0;
            if (field == 1)
                out->flow_id = v;
        } else if (wt == 2) {
            if (!reel_spool_read_varint(p, len, &pos, &v) || v > len - pos)
                return 0;
            if (field >= EV_FIRST && field <= EV_LAST) {
                out->event = (unsigned)field;
                out->ev_off = pos;
                out->ev_len = (size_t)v;
            }
            pos += (size_t)v;
        } else if (wt == 1 && len - pos >= 8) {
            pos += 8;
        } else if (wt == 5 && len - pos >= 4) {
            pos += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

reel_rc reel_spool_block_next(const uint8_t *block, size_t len, size_t *pos, const uint8_t **rec,
                              size_t *rec_len) {
    size_t p = *pos;
    if (p >= len)
        return REEL_NOTFOUND;
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        if (p >= len || shift > 28)
            return REEL_CORRUPT;
        uint8_t b = block[p++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    if (v > REEL_SPOOL_RECORD_MAX || v > len - p)
        return REEL_CORRUPT;
    *rec = block + p;
    *rec_len = (size_t)v;
    *pos = p + (size_t)v;
    return REEL_OK;
}

struct reel_spool_enc {
    ZSTD_CCtx *cctx;
    reel_pace_t pace; /* reel_spool_enc_pace */
};

reel_spool_enc_t *reel_spool_enc_new(int level) {
    reel_spool_enc_t *e = reel_calloc(1, sizeof *e);
    e->cctx = ZSTD_createCCtx();
    if (e->cctx == NULL) {
        fprintf(stderr, "reel: out of memory (zstd context)\n");
        abort();
    }
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_compressionLevel,
                           level ? level : REEL_SPOOL_LEVEL_DEFAULT);
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_contentSizeFlag, 1);
    /* reel_spool_enc_frame feeds one block that stays put, cut by cut: zstd
     * then reads it where it is instead of copying it into a window buffer
     * of its own (2 MiB at level 3 on a 4 MiB block, per encoder). */
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_stableInBuffer, 1);
    return e;
}

void reel_spool_enc_pace(reel_spool_enc_t *enc, int64_t ns) {
    reel_pace_init(&enc->pace, ns);
}

void reel_spool_enc_free(reel_spool_enc_t *enc) {
    if (enc == NULL)
        return;
    ZSTD_freeCCtx(enc->cctx);
    free(enc);
}

reel_rc reel_spool_enc_frame(reel_spool_enc_t *enc, const uint8_t *block, size_t len,
                             reel_buf_t *out, reel_err_t *err) {
    /* The block is fed record by record and zstd is told to end its block
     * (ZSTD_e_flush) at a record boundary once reel_spool_flush_every() bytes went
     * in since the last: a frame cut short or damaged later then still
     * decodes, as a stream, up to the last whole zstd block before the
     * damage, and the records in it can be salvaged. */
    size_t every = reel_spool_flush_every(len);
    size_t bound = ZSTD_compressBound(len) + (len / every + 1) * 8 + 64;
    reel_buf_reset(out);
    if (reel_buf_reserve(out, bound) != REEL_OK)
        return reel_err_set(err, REEL_LIMIT, "block too large to compress");
    ZSTD_CCtx_reset(enc->cctx, ZSTD_reset_session_only);
    ZSTD_CCtx_setPledgedSrcSize(enc->cctx, len);
    ZSTD_outBuffer ob = {out->data, bound, 0};
    size_t pos = 0, fed = 0;
    while (fed < len) {
        /* The next cut: after whole records, `every` bytes on. */
        size_t cut = fed, rl = 0;
        const uint8_t *r = NULL;
        while (cut - fed < every &&
               reel_spool_block_next(block, len, &pos, &r, &rl) == REEL_OK)
            cut = pos;
        if (cut == fed)
            cut = len; /* not records: one piece */
        ZSTD_EndDirective mode = cut == len ? ZSTD_e_end : ZSTD_e_flush;
        ZSTD_inBuffer ib = {block, cut, fed};
        size_t left;
        do {
            left = ZSTD_compressStream2(enc->cctx, &ob, &ib, mode);
            if (ZSTD_isError(left))
                return reel_err_set(err, REEL_ERROR, "zstd: %s", ZSTD_getErrorName(left));
        } while (left != 0 && ob.pos < ob.size);
        if (left != 0)
            return reel_err_set(err, REEL_ERROR, "zstd: output buffer too small");
        fed = cut;
        reel_pace(&enc->pace);
    }
    if (len == 0) {
        ZSTD_inBuffer ib = {block, 0, 0};
        size_t left = ZSTD_compressStream2(enc->cctx, &ob, &ib, ZSTD_e_end);
        if (ZSTD_isError(left) || left != 0)
            return reel_err_set(err, REEL_ERROR, "zstd: cannot write an empty frame");
    }
    out->len = ob.pos;
    return REEL_OK;
}

reel_rc reel_spool_enc_frame_whole(reel_spool_enc_t *enc, const uint8_t *block, size_t len,
                                   reel_buf_t *out, reel_err_t *err) {
    size_t bound = ZSTD_compressBound(len) + 64;
    reel_buf_reset(out);
    if (reel_buf_reserve(out, bound) != REEL_OK)
        return reel_err_set(err, REEL_LIMIT, "block too large to compress");
    ZSTD_CCtx_reset(enc->cctx, ZSTD_reset_session_only);
    size_t n = ZSTD_compress2(enc->cctx, out->data, bound, block, len);
    if (ZSTD_isError(n))
        return reel_err_set(err, REEL_ERROR, "zstd: %s", ZSTD_getErrorName(n));
    out->len = n;
    return REEL_OK;
}

struct reel_spool_async {
    reel_spool_enc_t *enc; /* the thread's own */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy; /* a job was started and its result not yet taken */
    int done; /* ... and it has finished */
    int stop;
    const uint8_t *block;
    size_t len;
    reel_buf_t *out;
    reel_rc rc;
    reel_err_t err;
    char name[16];
};

static void *async_main(void *arg) {
    reel_spool_async_t *a = arg;
    reel_thread_name(a->name);
    pthread_mutex_lock(&a->mu);
    for (;;) {
        if (a->stop)
            break;
        if (!a->busy || a->done) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        pthread_mutex_unlock(&a->mu);
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc rc = reel_spool_enc_frame(a->enc, a->block, a->len, a->out, &err);
        pthread_mutex_lock(&a->mu);
        a->rc = rc;
        a->err = err;
        a->done = 1;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

reel_spool_async_t *reel_spool_async_new(int level, const char *name) {
    reel_spool_async_t *a = reel_calloc(1, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->enc = reel_spool_enc_new(level);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, async_main, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        reel_spool_enc_free(a->enc);
        free(a);
        return NULL;
    }
    return a;
}

void reel_spool_async_start(reel_spool_async_t *a, const uint8_t *block, size_t len,
                            reel_buf_t *out) {
    pthread_mutex_lock(&a->mu);
    a->block = block;
    a->len = len;
    a->out = out;
    a->busy = 1;
    a->done = 0;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

reel_rc reel_spool_async_wait(reel_spool_async_t *a, reel_err_t *err) {
    pthread_mutex_lock(&a->mu);
    while (a->busy && !a->done)
        pthread_cond_wait(&a->cv, &a->mu);
    reel_rc rc = a->busy ? a->rc : REEL_OK;
    if (rc != REEL_OK)
        *err = a->err;
    a->busy = a->done = 0;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void reel_spool_async_free(reel_spool_async_t *a) {
    if (a == NULL)
        return;
    reel_err_t err;
    reel_err_clear(&err);
    (void)reel_spool_async_wait(a, &err); /* a job's buffers are the caller's */
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    reel_spool_enc_free(a->enc);
    free(a);
}

/* Whether a salvaged record is one to keep: it unpacks, with an event
 * (what a reader, the indexer, would refuse is not kept). */
static int salvage_keeps(const uint8_t *rec, size_t len) {
    Reel__Record *r = reel__record__unpack(NULL, len, rec);
    int ok = r != NULL && r->event_case != REEL__RECORD__EVENT__NOT_SET;
    reel__record__free_unpacked(r, NULL);
    return ok;
}

reel_rc reel_spool_salvage(const uint8_t *buf, size_t len, reel_buf_t *out,
                           reel_spool_salvage_t *info) {
    memset(info, 0, sizeof *info);
    reel_buf_reset(out);
    unsigned long long csize = ZSTD_getFrameContentSize(buf, len);
    if (csize == ZSTD_CONTENTSIZE_ERROR || csize == ZSTD_CONTENTSIZE_UNKNOWN ||
        csize > REEL_SPOOL_BLOCK_MAX) {
        info->bad_block = 1;
        snprintf(info->why, sizeof info->why, "no readable frame header");
        return REEL_OK;
    }
    if (reel_buf_reserve(out, (size_t)csize + 1) != REEL_OK)
        return REEL_LIMIT;
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (d == NULL)
        return REEL_LIMIT;
    size_t total = len < REEL_SPOOL_FRAME_MAX ? len : REEL_SPOOL_FRAME_MAX;
    ZSTD_inBuffer ib = {buf, 0, 0};
    ZSTD_outBuffer ob = {out->data, (size_t)csize, 0};
    int done = 0;
    const char *why = "the frame is cut short";
    /* Fed a byte at a time: zstd decodes a unit (the header, a block
     * header, a block, the checksum) when its last byte comes, and a call
     * that fails hands out nothing it decoded. Fed the whole frame, a
     * wrong checksum at the end, or a block that does not decode, lost
     * everything decoded before it; fed what zstd's return value hints, a
     * block and the next block's header came in one call, and a damaged
     * header lost the block before it. (1 MiB of frame takes ~30 ms: salvage
     * is for damage, and a full frame is about 1 MiB.) */
    while (ib.pos < total) {
        size_t before_in = ib.pos, before_out = ob.pos;
        ib.size = ib.pos + 1;
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            why = ZSTD_getErrorName(r);
            if (ZSTD_getErrorCode(r) == ZSTD_error_checksum_wrong)
                info->bad_checksum = 1;
            else
                info->bad_block = 1;
            break;
        }
        if (r == 0) {
            done = 1;
            break;
        }
        if (ib.pos == before_in && ob.pos == before_out)
            break; /* no progress (zstd takes what it is given: never seen) */
    }
    /* What zstd handed out came from whole blocks that decoded; unless
     * the frame decoded whole with a good checksum, nothing vouches for
     * it (info's flags say why, the caller says so). */
    size_t got = ob.pos;
    ZSTD_freeDCtx(d);
    if (done) {
        /* Only a wrong checksum can fail a frame that decodes whole; libzstd
         * reports that as an error, so a clean end means nothing was wrong. */
        why = "the frame decodes whole";
        info->checked = 1;
    }
    info->decoded = got;
    /* Keep the whole records that unpack, up to the first that does not:
     * what a reader (the indexer) would refuse is not kept, and past a
     * record that does not parse the framing itself is in doubt. */
    size_t pos = 0, keep = 0, rl = 0;
    const uint8_t *rec = NULL;
    int bad = 0;
    while (reel_spool_block_next(out->data, got, &pos, &rec, &rl) == REEL_OK) {
        if (!salvage_keeps(rec, rl)) {
            bad = 1;
            break;
        }
        keep = pos;
        info->records++;
    }
    if (bad && done) {
        /* The checksum held: the records after the one that does not
         * unpack are as they were written, and the framing says where
         * each is. Those up to the next that does not unpack follow the
         * kept ones in out. */
        size_t from = pos, end = pos;
        while (reel_spool_block_next(out->data, got, &pos, &rec, &rl) == REEL_OK &&
               salvage_keeps(rec, rl)) {
            end = pos;
            info->after++;
        }
        memmove(out->data + keep, out->data + from, end - from);
        info->after_len = end - from;
    }
    out->len = keep + info->after_len;
    info->complete = done && keep == (size_t)csize;
    info->lost = (size_t)csize - keep - info->after_len;
    snprintf(info->why, sizeof info->why, "%s", why);
    return REEL_OK;
}

static reel_rc pread_full(int fd, uint8_t *buf, size_t len, uint64_t off, size_t *got) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return REEL_IO;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return REEL_OK;
}

reel_rc reel_spool_read_frame(int fd, uint64_t off, size_t clen, reel_buf_t *comp, reel_buf_t *raw,
                              reel_err_t *err) {
    if (clen > REEL_SPOOL_FRAME_MAX)
        return reel_err_set(err, REEL_CORRUPT, "frame at offset %llu: length %zu too large",
                            (unsigned long long)off, clen);
    reel_buf_reset(comp);
    if (reel_buf_reserve(comp, clen) != REEL_OK)
        return reel_err_set(err, REEL_LIMIT, "frame too large");
    size_t got = 0;
    if (pread_full(fd, comp->data, clen, off, &got) != REEL_OK)
        return reel_err_errno(err, REEL_IO, errno, "reading frame at offset %llu",
                              (unsigned long long)off);
    if (got != clen)
        return reel_err_set(err, REEL_CORRUPT, "frame at offset %llu: segment ends %zu bytes short",
                            (unsigned long long)off, clen - got);
    comp->len = clen;
    size_t fl = 0;
    reel_rc rc = reel_spool_frame_size(comp->data, clen, &fl);
    if (rc != REEL_OK || fl != clen)
        return reel_err_set(err, REEL_CORRUPT, "frame at offset %llu: bad frame header",
                            (unsigned long long)off);
    reel_err_t e2;
    reel_err_clear(&e2);
    if (reel_spool_frame_decode(comp->data, clen, raw, &e2) != REEL_OK)
        return reel_err_set(err, REEL_CORRUPT, "frame at offset %llu: %s", (unsigned long long)off,
                            reel_err_str(&e2));
    return REEL_OK;
}

/* Reads a window at off large enough to hold one whole frame (or to the end
 * of the file), growing on demand. */
/* What a scan reads at once (a frame larger than what is left of it is
 * read again from its start, walk_frame): several typical frames, which
 * hold a few MiB of records in well under one. */
#define SCAN_WINDOW (2u * 1024u * 1024u)

static reel_rc read_window(int fd, uint64_t off, uint64_t file_size, size_t want, reel_buf_t *win,
                           reel_err_t *err) {
    uint64_t avail = file_size > off ? file_size - off : 0;
    size_t n = want < avail ? want : (size_t)avail;
    reel_buf_reset(win);
    if (reel_buf_reserve(win, n) != REEL_OK)
        return reel_err_set(err, REEL_LIMIT, "window too large");
    size_t got = 0;
    if (pread_full(fd, win->data, n, off, &got) != REEL_OK) {
        /* named: the callers have only the descriptor ("reading segment
         * at offset 0: Is a directory" said neither which nor where) */
        int e = errno;
        char link[32], path[512];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t pl = readlink(link, path, sizeof path - 1);
        path[pl > 0 ? pl : 0] = '\0';
        return reel_err_errno(err, REEL_IO, e, "reading %s at offset %llu",
                              pl > 0 ? path : "segment", (unsigned long long)off);
    }
    win->len = got;
    return REEL_OK;
}

/* Where a scan reads: the window of the file it holds, read once per
 * several frames (reading FRAME_MAX per frame copied 16 times the spool). */
typedef struct {
    int fd;
    uint64_t file_size;
    uint64_t wbase;   /* file offset of win.data[0] */
    uint64_t advised; /* the file is asked for up to here (SCAN_AHEAD) */
    reel_buf_t win;
} walker_t;

/* How far past its window a scan asks the kernel to read: a scan of a
 * spool that is not in the page cache (a repair or recovery after a
 * reboot) otherwise waits for each window's read in turn, the disk idle
 * while frames are decoded. Asked for in halves, so each request is
 * large and the next one goes out while half of the last is unread. */
#define SCAN_AHEAD (16u * 1024u * 1024u)

/* Asks for the part of [off, off + SCAN_AHEAD) not asked for yet, once
 * less than half of that is: a hint, its failure changes nothing. */
static void walk_advise(walker_t *w, uint64_t off) {
    if (w->advised >= w->file_size || w->advised >= off + SCAN_AHEAD / 2)
        return;
    uint64_t from = w->advised > off ? w->advised : off;
    uint64_t to = off + SCAN_AHEAD < w->file_size ? off + SCAN_AHEAD : w->file_size;
    (void)posix_fadvise(w->fd, (off_t)from, (off_t)(to - from), POSIX_FADV_WILLNEED);
    w->advised = to;
}

/* Finds the frame at off: REEL_OK with its bytes in *at[0..*fl) (valid
 * until the next call). Where no frame is, returns REEL_NOTFOUND with
 * out's torn, skip_len and reason set; or a read error. */
static reel_rc walk_frame(walker_t *w, uint64_t off, const uint8_t **at_out, size_t *fl_out,
                          reel_spool_scan_t *out, reel_err_t *err) {
    /* A frame is at most REEL_SPOOL_FRAME_MAX bytes: it is judged on the
     * FRAME_MAX bytes from its start (or what is left of the file). The
     * window is read anew at off when off is not in it, or when the frame
     * there runs past its end: SCAN_WINDOW bytes, or FRAME_MAX for a frame
     * larger than that. */
    uint64_t need =
        w->file_size - off < REEL_SPOOL_FRAME_MAX ? w->file_size - off : REEL_SPOOL_FRAME_MAX;
    size_t want = SCAN_WINDOW;
    const uint8_t *at;
    size_t avail, fl = 0;
    reel_rc frc;
    /* at least this much in the window before anything is judged: a
     * frame's header, or a mark's and the reason at its start */
    uint64_t least = need < 4096 ? need : 4096;
    for (;;) {
        if (off < w->wbase || off + least > w->wbase + w->win.len || want > SCAN_WINDOW) {
            walk_advise(w, off + want);
            reel_rc rc = read_window(w->fd, off, w->file_size, want, &w->win, err);
            if (rc != REEL_OK)
                return rc;
            w->wbase = off;
        }
        at = w->win.data + (off - w->wbase);
        avail = (size_t)(w->wbase + w->win.len - off);
        frc = reel_spool_frame_size(at, avail < need ? avail : (size_t)need, &fl);
        if (frc != REEL_NEED_MORE || avail >= need)
            break; /* judged on all it may be judged on */
        /* more of the file to see: from off, and as much as a frame may be */
        if (w->wbase != off)
            least = need;
        else if (want < REEL_SPOOL_FRAME_MAX)
            want = REEL_SPOOL_FRAME_MAX;
        else
            break; /* the file ended while it was read: all there is */
    }
    if (frc == REEL_NEED_MORE) {
        out->torn = 1;
        snprintf(out->reason, sizeof out->reason, "frame cut short by the end of the file");
        return REEL_NOTFOUND;
    }
    if (frc != REEL_OK) {
        uint64_t sk = skippable_len(at, avail, w->file_size - off);
        if (sk) {
            /* Damage set aside by recovery or repair: the reason is the
             * text at the start of its content, up to a NUL. */
            size_t tl = (size_t)(sk - REEL_SPOOL_SKIP_HDR);
            if (tl > avail - REEL_SPOOL_SKIP_HDR)
                tl = avail - REEL_SPOOL_SKIP_HDR;
            const uint8_t *t = at + REEL_SPOOL_SKIP_HDR;
            size_t k = 0;
            while (k < tl && k < 150 && t[k] >= 0x20 && t[k] < 0x7f)
                k++;
            out->skip_len = sk;
            snprintf(out->reason, sizeof out->reason, "set aside: %.*s", (int)k, (const char *)t);
            return REEL_NOTFOUND;
        }
        snprintf(out->reason, sizeof out->reason, "no valid frame header");
        return REEL_NOTFOUND;
    }
    *at_out = at;
    *fl_out = fl;
    return REEL_OK;
}

/* Decodes the frame at[0..fl) into raw with d and checks that every record
 * in it parses (a block with garbage inside is corrupt even if zstd was
 * happy: a reel bug or a forged frame). 0 if it is sound; else reason says
 * why. */
static int frame_check(ZSTD_DCtx *d, const uint8_t *at, size_t fl, reel_buf_t *raw,
                       char reason[static 200], reel_spool_vet_fn vet) {
    reel_err_t e2;
    reel_err_clear(&e2);
    if (frame_decode_with(d, at, fl, raw, &e2) != REEL_OK) {
        snprintf(reason, 200, "%s", reel_err_str(&e2));
        return -1;
    }
    size_t pos = 0, rl = 0;
    const uint8_t *r = NULL;
    reel_rc brc;
    while ((brc = reel_spool_block_next(raw->data, raw->len, &pos, &r, &rl)) == REEL_OK)
        ;
    if (brc != REEL_NOTFOUND) {
        snprintf(reason, 200, "bad record length inside the block");
        return -1;
    }
    return vet ? vet(raw->data, raw->len, reason) : 0;
}

/* The start of a scan from start: the file's size, out cleared. */
static reel_rc walk_begin(walker_t *w, int fd, uint64_t start, reel_spool_scan_t *out,
                          reel_err_t *err) {
    memset(out, 0, sizeof *out);
    *w = (walker_t){.fd = fd, .wbase = start, .advised = start};
    reel_buf_init(&w->win, 0);
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0)
        return reel_err_errno(err, REEL_IO, errno, "seeking segment");
    w->file_size = out->file_size = (uint64_t)end;
    (void)posix_fadvise(fd, (off_t)start, 0, POSIX_FADV_SEQUENTIAL);
    out->good_end = start;
    return REEL_OK;
}

static reel_rc scan_vet(int fd, uint64_t start, reel_spool_frame_cb cb, reel_spool_vet_fn vet,
                        void *ctx, reel_spool_scan_t *out, reel_err_t *err) {
    walker_t w;
    reel_buf_t raw;
    reel_buf_init(&raw, 0);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    reel_rc rc = d ? walk_begin(&w, fd, start, out, err)
                   : reel_err_set(err, REEL_NOMEM, "zstd: out of memory");
    if (rc != REEL_OK)
        goto out;
    uint64_t off = start;
    while (off < out->file_size) {
        const uint8_t *at = NULL;
        size_t fl = 0;
        rc = walk_frame(&w, off, &at, &fl, out, err);
        if (rc == REEL_NOTFOUND)
            rc = REEL_OK;
        if (rc != REEL_OK || at == NULL)
            break;
        if (frame_check(d, at, fl, &raw, out->reason, vet) != 0) {
            /* A torn write can leave a syntactically complete frame whose
             * checksum fails only if it is the very last thing in the file. */
            out->torn = off + fl == out->file_size;
            break;
        }
        int stop = cb && cb(ctx, off, fl, raw.data, raw.len);
        off += fl;
        out->good_end = off;
        if (stop)
            break;
    }
    out->bad_off = off;
out:
    if (d)
        reel_buf_free(&w.win);
    ZSTD_freeDCtx(d);
    reel_buf_free(&raw);
    return rc;
}

reel_rc reel_spool_scan(int fd, uint64_t start, reel_spool_frame_cb cb, void *ctx,
                        reel_spool_scan_t *out, reel_err_t *err) {
    return scan_vet(fd, start, cb, NULL, ctx, out, err);
}

/* ---- read-ahead scan ----
 *
 * The walk (reading the file, finding each frame) runs on a helper thread
 * that decodes frames too; with a second core, a second helper decodes
 * every other frame, the frames' order kept: the callback sees them one
 * by one, in the file's order, on the caller's thread, and sees what a
 * plain scan would have seen (a frame that fails ends the scan there,
 * whichever thread found it). Decompression is most of a scan's work
 * (2.4 GB of records from 570 MB of spool, about 2 s of one core), and
 * the callback (the rebuild's indexing) less than that. */

/* Frames the helpers may hold found but not yet taken by the callback:
 * AHEAD_MAX, or as many as hold AHEAD_BYTES of frames and their records
 * (a full frame holds 4 MiB of records; those of older sessions 256 KiB).
 * Taken frames are kept for their buffers up to AHEAD_BYTES too. */
#define AHEAD_MAX 32
#define AHEAD_BYTES (32u << 20)

typedef struct ahead_item {
    struct ahead_item *next, *next_job;
    uint64_t off;
    size_t clen;
    reel_buf_t comp; /* the frame's bytes, for the second decoder */
    reel_buf_t raw;
    size_t weight;         /* its frame's bytes and records' (queued) */
    int state;             /* AHEAD_PENDING, AHEAD_OK, AHEAD_BAD, AHEAD_END */
    reel_spool_scan_t end; /* AHEAD_END: where and why the walk ended;
                              AHEAD_BAD: reason only */
} ahead_item;

enum { AHEAD_PENDING, AHEAD_OK, AHEAD_BAD, AHEAD_END };

typedef struct {
    int fd;
    uint64_t start;
    pthread_mutex_t mu;
    pthread_cond_t cv_item, cv_space, cv_job;
    ahead_item *head, *tail;      /* found, in the file's order */
    ahead_item *jobs, *jobs_tail; /* for the second decoder */
    unsigned njobs;               /* ... how many */
    ahead_item *spare;            /* taken, kept for their buffers */
    size_t spare_bytes;           /* ... their buffers' size */
    unsigned n;                   /* found and not taken */
    size_t bytes;                 /* ... their weight */
    int second;                   /* a second decoder runs */
    reel_spool_vet_fn vet;        /* frame_check's, or NULL */
    uint64_t file_size;           /* set by the walker before it queues anything */
    int walked, stop;
    reel_rc rc;
    reel_err_t err;
} ahead_t;

static ahead_item *ahead_new_item(ahead_t *a) {
    pthread_mutex_lock(&a->mu);
    ahead_item *it = a->spare;
    if (it) {
        a->spare = it->next;
        a->spare_bytes -= it->comp.cap + it->raw.cap;
    }
    pthread_mutex_unlock(&a->mu);
    if (it == NULL) {
        it = reel_calloc(1, sizeof *it);
        reel_buf_init(&it->comp, 0);
        reel_buf_init(&it->raw, 0);
    }
    it->next = it->next_job = NULL;
    it->weight = 0;
    it->state = AHEAD_PENDING;
    return it;
}

static void ahead_free_list(ahead_item *it) {
    while (it) {
        ahead_item *nx = it->next;
        reel_buf_free(&it->comp);
        reel_buf_free(&it->raw);
        free(it);
        it = nx;
    }
}

/* Takes the oldest frame no decoder has begun, with a->mu held (NULL if
 * there is none). */
static ahead_item *ahead_take_job(ahead_t *a) {
    ahead_item *it = a->stop ? NULL : a->jobs;
    if (it) {
        a->jobs = it->next_job;
        if (a->jobs == NULL)
            a->jobs_tail = NULL;
        a->njobs--;
    }
    return it;
}

/* Decodes a frame taken with ahead_take_job, with a->mu held on entry and
 * on return (released meanwhile). */
static void ahead_decode_job(ahead_t *a, ZSTD_DCtx *d, ahead_item *it) {
    pthread_mutex_unlock(&a->mu);
    int bad = d == NULL;
    if (bad)
        snprintf(it->end.reason, sizeof it->end.reason, "zstd: out of memory");
    else
        bad = frame_check(d, it->comp.data, it->comp.len, &it->raw, it->end.reason, a->vet) != 0;
    pthread_mutex_lock(&a->mu);
    it->state = bad ? AHEAD_BAD : AHEAD_OK;
    pthread_cond_signal(&a->cv_item);
}

/* Queues it after the frames found before it, waiting while AHEAD_MAX are
 * queued (and decoding queued frames meanwhile, given d); 0 if the scan
 * was stopped (it is then the caller's). */
static int ahead_push(ahead_t *a, ahead_item *it, int job, ZSTD_DCtx *d) {
    pthread_mutex_lock(&a->mu);
    while (a->n > 0 && (a->n >= AHEAD_MAX || a->bytes >= AHEAD_BYTES) && !a->stop) {
        ahead_item *j = d ? ahead_take_job(a) : NULL;
        if (j)
            ahead_decode_job(a, d, j);
        else
            pthread_cond_wait(&a->cv_space, &a->mu);
    }
    int ok = !a->stop;
    if (ok) {
        if (a->tail)
            a->tail->next = it;
        else
            a->head = it;
        a->tail = it;
        a->n++;
        a->bytes += it->weight;
        if (job) {
            if (a->jobs_tail)
                a->jobs_tail->next_job = it;
            else
                a->jobs = it;
            a->jobs_tail = it;
            a->njobs++;
            pthread_cond_signal(&a->cv_job);
        }
        if (it->state != AHEAD_PENDING)
            pthread_cond_signal(&a->cv_item);
    }
    pthread_mutex_unlock(&a->mu);
    return ok;
}

static void ahead_done(ahead_t *a, ahead_item *it, int state) {
    pthread_mutex_lock(&a->mu);
    it->state = state;
    pthread_cond_signal(&a->cv_item);
    pthread_mutex_unlock(&a->mu);
}

/* The walker: finds each frame, decodes it or (every other one, with a
 * second decoder) hands it over, and ends the queue with where and why
 * the walk ended. */
static void *ahead_main(void *arg) {
    ahead_t *a = arg;
    reel_thread_name("reel-scan");
    reel_err_clear(&a->err);
    walker_t w;
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ahead_item *end = ahead_new_item(a);
    end->state = AHEAD_END;
    reel_rc rc = d ? walk_begin(&w, a->fd, a->start, &end->end, &a->err)
                   : reel_err_set(&a->err, REEL_NOMEM, "zstd: out of memory");
    a->file_size = end->end.file_size;
    uint64_t off = a->start;
    int stopped = 0;
    while (rc == REEL_OK && off < end->end.file_size) {
        const uint8_t *at = NULL;
        size_t fl = 0;
        rc = walk_frame(&w, off, &at, &fl, &end->end, &a->err);
        if (rc != REEL_OK)
            break;
        ahead_item *it = ahead_new_item(a);
        it->off = off;
        it->clen = fl;
        /* (walk_frame vetted the content size) */
        it->weight = fl + (size_t)ZSTD_getFrameContentSize(at, fl);
        /* With a second decoder every frame is queued, and both take the
         * oldest in turn: handing over every other one kept the two in
         * step, each waiting for the other's frame whenever the scheduler
         * gave the caller's thread its core. */
        int job = a->second;
        if (job) {
            reel_buf_reset(&it->comp);
            reel_buf_append(&it->comp, at, fl);
        }
        if (!ahead_push(a, it, job, d)) {
            ahead_free_list(it);
            stopped = 1;
            break;
        }
        if (job) {
            /* the walk is cheap: it goes on while the other decoder has
             * frames to begin, and decodes one of them when it has two */
            pthread_mutex_lock(&a->mu);
            ahead_item *j = a->njobs >= 2 ? ahead_take_job(a) : NULL;
            if (j)
                ahead_decode_job(a, d, j);
            pthread_mutex_unlock(&a->mu);
        } else {
            /* it is the consumer's to take only once its state is set;
             * the records of a frame that fails are not looked at, and
             * the walk ends there: nothing after it is seen */
            int bad = frame_check(d, at, fl, &it->raw, it->end.reason, a->vet) != 0;
            ahead_done(a, it, bad ? AHEAD_BAD : AHEAD_OK);
            if (bad) {
                stopped = 1;
                break;
            }
        }
        off += fl;
    }
    if (rc == REEL_NOTFOUND)
        rc = REEL_OK;
    a->rc = rc;
    end->end.bad_off = end->end.good_end = off;
    /* the frames still queued, before the end is */
    pthread_mutex_lock(&a->mu);
    for (ahead_item *j; !stopped && (j = ahead_take_job(a)) != NULL;)
        ahead_decode_job(a, d, j);
    pthread_mutex_unlock(&a->mu);
    if (stopped || !ahead_push(a, end, 0, d))
        ahead_free_list(end);
    pthread_mutex_lock(&a->mu);
    a->walked = 1;
    pthread_cond_broadcast(&a->cv_job);
    pthread_cond_signal(&a->cv_item);
    pthread_mutex_unlock(&a->mu);
    if (d)
        reel_buf_free(&w.win);
    ZSTD_freeDCtx(d);
    return NULL;
}

/* The second decoder: the frames handed over, in turn. */
static void *ahead_decoder(void *arg) {
    ahead_t *a = arg;
    reel_thread_name("reel-scan2");
    ZSTD_DCtx *d = ZSTD_createDCtx();
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (a->jobs == NULL && !a->walked && !a->stop)
            pthread_cond_wait(&a->cv_job, &a->mu);
        ahead_item *it = ahead_take_job(a);
        if (it)
            ahead_decode_job(a, d, it);
        pthread_mutex_unlock(&a->mu);
        if (it == NULL)
            break;
    }
    ZSTD_freeDCtx(d);
    return NULL;
}

reel_rc reel_spool_scan_ahead(int fd, uint64_t start, reel_spool_frame_cb cb, void *ctx,
                              reel_spool_scan_t *out, reel_err_t *err) {
    return reel_spool_scan_ahead_vet(fd, start, cb, NULL, ctx, out, err);
}

reel_rc reel_spool_scan_ahead_vet(int fd, uint64_t start, reel_spool_frame_cb cb,
                                  reel_spool_vet_fn vet, void *ctx, reel_spool_scan_t *out,
                                  reel_err_t *err) {
    if (cb == NULL)
        return scan_vet(fd, start, cb, vet, ctx, out, err);
    ahead_t a = {.fd = fd, .start = start, .vet = vet};
    pthread_t th, th2;
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv_item, NULL);
    pthread_cond_init(&a.cv_space, NULL);
    pthread_cond_init(&a.cv_job, NULL);
    a.second =
        sysconf(_SC_NPROCESSORS_ONLN) > 1 && pthread_create(&th2, NULL, ahead_decoder, &a) == 0;
    if (pthread_create(&th, NULL, ahead_main, &a) != 0) {
        if (a.second) {
            pthread_mutex_lock(&a.mu);
            a.walked = 1;
            pthread_cond_broadcast(&a.cv_job);
            pthread_mutex_unlock(&a.mu);
            pthread_join(th2, NULL);
        }
        pthread_mutex_destroy(&a.mu);
        pthread_cond_destroy(&a.cv_item);
        pthread_cond_destroy(&a.cv_space);
        pthread_cond_destroy(&a.cv_job);
        return scan_vet(fd, start, cb, vet, ctx, out, err);
    }
    int stopped = 0, ended = 0;
    memset(out, 0, sizeof *out);
    for (;;) {
        pthread_mutex_lock(&a.mu);
        while ((a.head == NULL && !a.walked) || (a.head && a.head->state == AHEAD_PENDING))
            pthread_cond_wait(&a.cv_item, &a.mu);
        ahead_item *it = a.head;
        if (it) {
            a.head = it->next;
            if (a.head == NULL)
                a.tail = NULL;
            a.n--;
            a.bytes -= it->weight;
            pthread_cond_signal(&a.cv_space);
        }
        pthread_mutex_unlock(&a.mu);
        if (it == NULL)
            break; /* stopped by a read error: a.rc says */
        if (it->state == AHEAD_END) {
            *out = it->end;
            ended = 1;
        } else if (it->state == AHEAD_BAD) {
            /* as reel_spool_scan: the run ends before the frame */
            out->file_size = a.file_size;
            out->good_end = out->bad_off = it->off;
            /* a torn write can leave a syntactically complete frame whose
             * checksum fails only if it is the very last thing in the file */
            out->torn = it->off + it->clen == a.file_size;
            snprintf(out->reason, sizeof out->reason, "%s", it->end.reason);
            ended = 1;
        } else if (cb(ctx, it->off, it->clen, it->raw.data, it->raw.len)) {
            /* As reel_spool_scan: the run ends after this frame. */
            out->file_size = a.file_size;
            out->good_end = out->bad_off = it->off + it->clen;
            stopped = ended = 1;
        }
        pthread_mutex_lock(&a.mu);
        if (a.spare_bytes + it->comp.cap + it->raw.cap > AHEAD_BYTES) {
            /* kept, but not its buffers: frames of 4 MiB after many small
             * ones would otherwise grow every kept buffer to their size */
            reel_buf_free(&it->comp);
            reel_buf_free(&it->raw);
        }
        a.spare_bytes += it->comp.cap + it->raw.cap;
        it->next = a.spare;
        a.spare = it;
        if (ended) {
            a.stop = 1;
            pthread_cond_broadcast(&a.cv_space);
            pthread_cond_broadcast(&a.cv_job);
        }
        pthread_mutex_unlock(&a.mu);
        if (ended)
            break;
    }
    pthread_join(th, NULL);
    if (a.second)
        pthread_join(th2, NULL);
    ahead_free_list(a.head);
    ahead_free_list(a.spare);
    pthread_mutex_destroy(&a.mu);
    pthread_cond_destroy(&a.cv_item);
    pthread_cond_destroy(&a.cv_space);
    pthread_cond_destroy(&a.cv_job);
    if (stopped)
        return REEL_OK; /* (whatever the walker met after that frame) */
    if (a.rc != REEL_OK && err)
        *err = a.err;
    return a.rc;
}

reel_rc reel_spool_resync(int fd, uint64_t from, uint64_t *next, reel_err_t *err) {
    reel_rc rc = REEL_NOTFOUND;
    reel_buf_t win, raw;
    reel_buf_init(&win, 0);
    reel_buf_init(&raw, 0);
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "seeking segment");
        goto out;
    }
    uint64_t size = (uint64_t)end;
    const size_t step = 1u << 20;
    for (uint64_t base = from; base < size; base += step) {
        /* a hole holds no frame: a sparse tail (a file extended by
         * truncate, say) was read, and scanned, a byte at a time */
        off_t data = lseek(fd, (off_t)base, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* nothing but a hole to the end */
        if (data > (off_t)base + (off_t)step) {
            base = (uint64_t)data - step; /* (the loop adds step) */
            continue;
        }
        reel_rc r = read_window(fd, base, size, step + 3, &win, err);
        if (r != REEL_OK) {
            rc = r;
            goto out;
        }
        for (size_t i = 0; i + 4 <= win.len && i < step; i++) {
            if (win.data[i] != 0x28 || win.data[i + 1] != 0xb5 || win.data[i + 2] != 0x2f ||
                win.data[i + 3] != 0xfd)
                continue;
            /* Candidate: confirm it decodes as a whole reel frame. */
            reel_buf_t fw;
            reel_buf_init(&fw, 0);
            r = read_window(fd, base + i, size, REEL_SPOOL_FRAME_MAX, &fw, err);
            size_t fl = 0;
            int ok = r == REEL_OK && reel_spool_frame_size(fw.data, fw.len, &fl) == REEL_OK &&
                     reel_spool_frame_decode(fw.data, fl, &raw, NULL) == REEL_OK;
            reel_buf_free(&fw);
            if (ok) {
                *next = base + i;
                rc = REEL_OK;
                goto out;
            }
        }
    }
out:
    reel_buf_free(&win);
    reel_buf_free(&raw);
    return rc;
}
