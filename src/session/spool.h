/* Spool codec: zstd frames of length-delimited Record messages.
 *
 * Sans I/O except for the two pread-based helpers at the end. The format is
 * specified in docs/format.md:
 *
 *   segment  := frame*                      (a valid multi-frame .zst file)
 *   frame    := one zstd frame, content checksum on, content size set,
 *               decompressing to a block
 *   block    := record*
 *   record   := varint(n) Record[n]         (protobuf, schema/flow.proto)
 *
 * A block holds up to REEL_SPOOL_BLOCK_TARGET bytes (one record may push it
 * past that, up to REEL_SPOOL_BLOCK_MAX). A frame decompresses to at most
 * REEL_SPOOL_BLOCK_MAX bytes; anything larger is treated as corrupt, so a
 * hostile file cannot make a reader allocate without bound. */
#ifndef REEL_SESSION_SPOOL_H
#define REEL_SESSION_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"

/* 4 MiB: the same traffic took 15% less room than in blocks of 256 KiB
 * (the size until schema 12), 8% of it from zstd's matches reaching
 * farther and 8% from level 3, which pays on blocks this large. */
#define REEL_SPOOL_BLOCK_TARGET (4096u * 1024u)
#define REEL_SPOOL_BLOCK_MAX (8192u * 1024u)
/** Largest record (encoded) a writer produces; body chunks are split below it. */
#define REEL_SPOOL_RECORD_MAX (512u * 1024u)
/** Largest max_head_size (config): every head reel accepts is recorded as
 * one record, never split, so it must fit in REEL_SPOOL_RECORD_MAX with
 * its framing. A request head's record holds the head's bytes (less its
 * spaces, colons and CRLFs) plus its host once more (taken from the Host
 * field, the absolute target or the CONNECT before it, each inside a head
 * of at most this size) plus at most 12 bytes of protobuf framing per field
 * (200 at most) and a few dozen for the record's own: under twice this
 * size plus 8 KiB. Response heads (64 KiB) and HTTP/2 header lists (64
 * KiB) are held far below it. */
#define REEL_SPOOL_HEAD_MAX (REEL_SPOOL_RECORD_MAX / 2u - 8192u)
/** Body bytes per body-chunk record. */
#define REEL_SPOOL_CHUNK 16384u
/** Largest compressed frame a reader accepts. */
#define REEL_SPOOL_FRAME_MAX (REEL_SPOOL_BLOCK_MAX + 65536u)
/** A writer ends a zstd block (ZSTD_e_flush) at the first record boundary
 * reel_spool_flush_every() content bytes after the last, so a damaged frame
 * can be salvaged up to the zstd block the damage is in: every eighth of
 * the frame's content, and at least every REEL_SPOOL_FLUSH bytes. Every
 * flush costs compression time and ratio (flushing every 2 KiB took twice
 * the CPU and grew the output 12% on text; every 16 KiB +25% and +1.4%), so
 * the full frames written under load flush every 512 KiB, while the small
 * frames of light traffic (or of a HAR import) keep fine-grained salvage at
 * a cost nobody notices. */
#define REEL_SPOOL_FLUSH 2048u
#define REEL_SPOOL_FLUSH_PARTS 8u

/** The flush interval for a frame of len content bytes (see above). */
static inline size_t reel_spool_flush_every(size_t len) {
    size_t every = len / REEL_SPOOL_FLUSH_PARTS;
    return every > REEL_SPOOL_FLUSH ? every : REEL_SPOOL_FLUSH;
}
/** Magic of the zstd skippable frame reel writes where it set damaged
 * bytes aside (docs/format.md section 6): 0x184D2A5E, little-endian. */
#define REEL_SPOOL_SKIP_MAGIC 0x184D2A5Eu
/** Smallest skippable frame: magic and Frame_Size. */
#define REEL_SPOOL_SKIP_HDR 8u

/** The records a writer puts in a frame before it writes it: want (0:
 * REEL_SPOOL_BLOCK_TARGET), but at most a quarter of segment_size (a
 * segment then holds several frames: rollover and retention, which drop
 * whole segments, stay fine-grained) and a quarter of the process's
 * file-size limit (ulimit -f: a frame of bytes that do not compress still
 * fits under it), and at least 64 KiB. */
size_t reel_spool_block_size(uint64_t segment_size, size_t want);

/** Formats the file name of segment n ("00000001.zst") into out (>= 16 bytes). */
void reel_spool_segment_name(uint32_t n, char out[static 16]);

/** Parses a segment file name; returns 1 and sets *n for "NNNNNNNN.zst", else 0. */
int reel_spool_segment_parse(const char *name, uint32_t *n);

/** Appends varint(len) and rec to block. Returns REEL_LIMIT if the block
 * would exceed REEL_SPOOL_BLOCK_MAX or rec exceeds REEL_SPOOL_RECORD_MAX. */
reel_rc reel_spool_block_append(reel_buf_t *block, const uint8_t *rec, size_t len);

/** Finds the length of the zstd frame starting at buf. Returns REEL_OK with
 * *frame_len set, REEL_NEED_MORE if buf ends inside the frame (torn), or
 * REEL_CORRUPT if buf does not start a valid reel frame. */
reel_rc reel_spool_frame_size(const uint8_t *buf, size_t len, size_t *frame_len);

/** Decompresses one whole frame into out (reset first) and verifies its
 * content checksum. Returns REEL_CORRUPT with a reason in err on any defect. */
reel_rc reel_spool_frame_decode(const uint8_t *frame, size_t len, reel_buf_t *out,
                                reel_err_t *err);

/** What reel_spool_salvage found. */
typedef struct {
    size_t decoded;      /* content bytes zstd decoded before the damage */
    size_t records;      /* whole records kept, up to the damage */
    size_t after;        /* checked only: whole records kept after the record
                            that does not unpack (up to the next that does
                            not), in out after the first `records` */
    size_t after_len;    /* ... and their bytes at the end of out */
    size_t lost;         /* content bytes (of the frame's declared size) not kept */
    int complete;        /* the frame decoded whole: nothing was wrong with it */
    int bad_checksum;    /* it decoded whole but its checksum failed */
    int checked;         /* it decoded whole and its checksum held (then a
                            record that does not unpack is what stopped it) */
    int bad_block;       /* the header or a zstd block did not decode: what
                            decoded before it may be wrong too (a damaged
                            byte can decode to other bytes before zstd
                            notices), and no checksum can tell */
    char why[120];       /* what stopped the decoding */
} reel_spool_salvage_t;

/** Salvages a damaged or cut-off frame starting at buf (len bytes are
 * there, maybe fewer than the frame's): decodes it as a stream, one zstd
 * block at a time, up to the first block that does not decode, the wrong
 * checksum, or the end of buf, and keeps, in out (reset first), the
 * content's whole records that unpack, in order, up to the first that does
 * not. Unless info->complete, nothing vouches for them: with bad_checksum
 * or bad_block set some of their bytes may be wrong (the caller must say
 * so); with neither, decoding stopped at the end of buf (a frame cut
 * short), or at a record that does not unpack in a frame whose checksum
 * held. Returns REEL_OK (out may be empty) or REEL_LIMIT if memory runs
 * out. */
reel_rc reel_spool_salvage(const uint8_t *buf, size_t len, reel_buf_t *out,
                           reel_spool_salvage_t *info);

/** Writes the 8-byte header of a skippable frame of `total` bytes in all
 * (Frame_Size = total - 8) to hdr. total must be >= 8 and < 2^32 + 8. */
void reel_spool_skip_header(uint64_t total, uint8_t hdr[static 8]);

/** Reads a protobuf varint at p[*pos..len) into *v and advances *pos.
 * Returns 1, or 0 if it is cut off or longer than 10 bytes. */
int reel_spool_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v);

/** What reel_spool_peek_record sees of an encoded Record. */
typedef struct {
    uint64_t flow_id;   /* field 1, 0 if absent */
    unsigned event;     /* field number of the event (the oneof), 0 if none */
    size_t ev_off;      /* the event message's bytes: rec[ev_off .. ev_off + ev_len) */
    size_t ev_len;
} reel_spool_peek_t;

/** Reads the flow id and the event of an encoded Record (schema/flow.proto)
 * from the protobuf wire format, without unpacking it. As protobuf does, the
 * last event field wins. Returns 0 if the wire format does not parse. */
int reel_spool_peek_record(const uint8_t *rec, size_t len, reel_spool_peek_t *out);

/** Iterates the records of a decompressed block. *pos starts at 0. On
 * REEL_OK sets *rec/ *rec_len (borrowed from block) and advances *pos;
 * returns REEL_NOTFOUND at the end, REEL_CORRUPT on a bad length. */
reel_rc reel_spool_block_next(const uint8_t *block, size_t len, size_t *pos,
                              const uint8_t **rec, size_t *rec_len);

/** Compressor state for writing frames; owned by one thread. */
typedef struct reel_spool_enc reel_spool_enc_t;

/** The spool's zstd level unless told otherwise (the zstd_level option).
 * On blocks of 4 MiB, level 3 stores about 8% less than level 2 at about
 * 20% more CPU; on blocks of 256 KiB the difference was 1.3%, which did
 * not pay for the CPU (docs/benchmarks.md, "Stop 57"). */
#define REEL_SPOOL_LEVEL_DEFAULT 3

/** Creates an encoder at zstd level `level` (0: REEL_SPOOL_LEVEL_DEFAULT).
 * Returns owned; never NULL. */
reel_spool_enc_t *reel_spool_enc_new(int level);
/** Frees enc; accepts NULL. */
void reel_spool_enc_free(reel_spool_enc_t *enc);
/** Yields the core between the pieces of a frame once ns have passed
 * (base/pace.h); 0, the default, never. */
void reel_spool_enc_pace(reel_spool_enc_t *enc, int64_t ns);
/** Compresses block into one frame (checksum on) written to out (reset first). */
reel_rc reel_spool_enc_frame(reel_spool_enc_t *enc, const uint8_t *block, size_t len,
                             reel_buf_t *out, reel_err_t *err);

/** The same frame as reel_spool_enc_frame, but without ending zstd blocks
 * at record boundaries: smaller (every block end costs a block header and
 * the literals' tables again), but a byte damaged in it later loses all of
 * it rather than the rest after that block. Salvage uses it when the
 * records of a damaged frame would not fit in its place otherwise. */
reel_rc reel_spool_enc_frame_whole(reel_spool_enc_t *enc, const uint8_t *block, size_t len,
                                   reel_buf_t *out, reel_err_t *err);

/** A second compressor on a thread of its own: the recorder's writer hands
 * it one block and compresses the next one itself meanwhile, so a writer
 * that falls behind uses two cores for zstd (docs/architecture.md). */
typedef struct reel_spool_async reel_spool_async_t;

/** Starts the thread, named `name`, with an encoder at `level`. Returns
 * NULL when no thread can be started (the caller compresses alone). */
reel_spool_async_t *reel_spool_async_new(int level, const char *name);
/** Hands block[0..len) to the thread, to be compressed into out (reset
 * first) as by reel_spool_enc_frame. Both stay the caller's and must not be
 * touched until reel_spool_async_wait returns; one job at a time. */
void reel_spool_async_start(reel_spool_async_t *a, const uint8_t *block, size_t len,
                            reel_buf_t *out);
/** Waits for the job started last and returns its result. */
reel_rc reel_spool_async_wait(reel_spool_async_t *a, reel_err_t *err);
/** Waits for a job still running, stops the thread and frees a; accepts
 * NULL. */
void reel_spool_async_free(reel_spool_async_t *a);

/** Reads and decodes the frame at (fd, off, clen) into raw; comp is scratch.
 * Returns REEL_IO / REEL_CORRUPT with the segment position in err. */
reel_rc reel_spool_read_frame(int fd, uint64_t off, size_t clen, reel_buf_t *comp,
                              reel_buf_t *raw, reel_err_t *err);

/** Callback for reel_spool_scan: a valid frame at off of clen bytes whose
 * decompressed block is raw[0..rlen). Return non-zero to stop the scan. */
typedef int (*reel_spool_frame_cb)(void *ctx, uint64_t off, size_t clen, const uint8_t *raw,
                                   size_t rlen);

/** Outcome of a scan. */
typedef struct {
    uint64_t good_end;  /* end offset of the last valid frame in the run */
    uint64_t bad_off;   /* offset of the first invalid byte (== file size if none) */
    uint64_t file_size;
    int torn;           /* 1 if the bad range ran to EOF inside a frame */
    uint64_t skip_len;  /* bad_off starts a skippable frame of this many bytes
                           (reel's mark of damage set aside); 0 otherwise */
    char reason[200];   /* why bad_off is bad, empty if the scan reached EOF */
} reel_spool_scan_t;

/** Reads frames of the segment open on fd from `start`, calling cb for each
 * valid one, and stops at the first invalid frame, at a skippable frame
 * (reported with skip_len and its reason, "set aside: ..." and the start of
 * its content), or at EOF. Returns REEL_IO on
 * read errors; a defect in the data is reported in *out, not as an error. */
reel_rc reel_spool_scan(int fd, uint64_t start, reel_spool_frame_cb cb, void *ctx,
                        reel_spool_scan_t *out, reel_err_t *err);

/** Same contract as reel_spool_scan, with reading and decompression done
 * by a helper thread a few frames ahead of cb, which still runs on the
 * caller's thread and in order: a long scan (recovery, repair, verify)
 * then uses two cores. Falls back to reel_spool_scan if no thread starts. */
reel_rc reel_spool_scan_ahead(int fd, uint64_t start, reel_spool_frame_cb cb, void *ctx,
                              reel_spool_scan_t *out, reel_err_t *err);

/** A check of a decoded frame's records beyond their framing: 0 if the
 * frame is good, else -1 with why in reason. */
typedef int (*reel_spool_vet_fn)(const uint8_t *raw, size_t rlen, char reason[static 200]);
/** reel_spool_scan_ahead, with vet run on each frame that decodes, by the
 * thread that decoded it: a frame vet refuses is invalid, as one whose
 * checksum fails (the scan ends before it, and reason says why). A rebuild
 * and recovery take a frame with a record that does not unpack for a
 * damaged one this way, and the check is off the indexing thread. */
reel_rc reel_spool_scan_ahead_vet(int fd, uint64_t start, reel_spool_frame_cb cb,
                                  reel_spool_vet_fn vet, void *ctx, reel_spool_scan_t *out,
                                  reel_err_t *err);

/** Searches the segment for the next offset >= from where a valid frame
 * starts. Returns REEL_OK with *next set, REEL_NOTFOUND if none. */
reel_rc reel_spool_resync(int fd, uint64_t from, uint64_t *next, reel_err_t *err);

#endif
