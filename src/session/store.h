/* Reading flows back: the records of one flow, in order, from the spool. */
#ifndef REEL_SESSION_STORE_H
#define REEL_SESSION_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "flow.pb-c.h"
#include "session/session.h"

/** Called for each record of the flow, in spool order. rec is borrowed and
 * valid only during the call. Return non-zero to stop. */
typedef int (*reel_record_cb)(void *ctx, const Reel__Record *rec);

/** The name of a Message record's opcode ("tcp" for 0, then WebSocket's
 * "text", "binary", "close", "ping", "pong"), NULL for another value. */
const char *reel_store_opcode_name(uint32_t op);

/** Streams the records of flow `id` to cb, decompressing one frame at a
 * time (memory stays bounded by the frame size, whatever the body size).
 * Returns REEL_NOTFOUND if the flow is not in the index, REEL_CORRUPT if a
 * frame of it fails its checksum, holds an undecodable record of it, or
 * its segment is missing (records before it were delivered), and as
 * reel_store_reader_flow() for a segment dropped or a session removed
 * while it reads. To read many
 * flows, use a reel_store_reader_t (below), which keeps frames. */
reel_rc reel_store_read_flow(reel_session_t *s, uint64_t id, reel_record_cb cb, void *ctx,
                             reel_err_t *err);

/** A reader of many flows of one session that keeps the last few spool
 * frames it decompressed: a frame holds the records of many small flows,
 * so flows read in id order (as export and the filter's spool pass do)
 * decompress each frame once instead of once per flow in it. Memory stays
 * bounded: REEL_STORE_READER_FRAMES frames of at most REEL_SPOOL_BLOCK_MAX
 * bytes, and an index of their records. Borrows the session, which must
 * outlive it; one thread. */
typedef struct reel_store_reader reel_store_reader_t;

/** Frames a reader keeps decompressed. */
#define REEL_STORE_READER_FRAMES 4

/** Opens a reader on s into *out. REEL_DB if the index cannot be queried. */
reel_rc reel_store_reader_open(reel_session_t *s, reel_store_reader_t **out, reel_err_t *err);

/** The session r reads (borrowed). */
reel_session_t *reel_store_reader_session(const reel_store_reader_t *r);

/** reel_store_read_flow() through r's frames: the same records to cb, the
 * same errors (REEL_NOTFOUND, REEL_CORRUPT after the records before the
 * damage, REEL_IO), and REEL_DB if the index cannot be read. The index
 * may be read in a transaction older than the spool: a flow whose segment
 * retention has dropped since is REEL_NOTFOUND (after the records before
 * it), and a session `reel rm` has deleted since is REEL_IO. A frame that
 * fails to decode is not kept: the next flow in it reports it again. cb
 * must not use r. */
reel_rc reel_store_reader_flow(reel_store_reader_t *r, uint64_t id, reel_record_cb cb, void *ctx,
                               reel_err_t *err);

/** Called for each record of the flow, in spool order, with its encoded
 * bytes (a reel.Record, borrowed, valid only during the call), for readers
 * that pick a few fields from the wire format (session/pbwire.h) instead of
 * unpacking whole records. Return 0 to go on, 1 to stop, -1 if the record
 * does not decode: the read then fails with REEL_CORRUPT as it does for a
 * record that does not unpack. */
typedef int (*reel_record_raw_cb)(void *ctx, const uint8_t *rec, size_t len);

/** reel_store_reader_flow() with the records' bytes instead of unpacked
 * records: the same records (those of flow `id` by their flow id field,
 * which is peeked, or unpacked when the peek fails), the same errors. Flows
 * read one after the other in id order while a statement of the session's
 * db is running (a pass over a query's rows) find their frames with one
 * index query for many flows instead of one each. cb must not use r. */
reel_rc reel_store_reader_flow_raw(reel_store_reader_t *r, uint64_t id, reel_record_raw_cb cb,
                                   void *ctx, reel_err_t *err);

/** true if the last flow r read ended in REEL_NOTFOUND because retention
 * dropped a segment of its records after the index was read (the retention
 * table lists the segment); false for every other end, among them the
 * REEL_NOTFOUND of a flow the index lists no records of (one `reel repair`
 * kept for its annotations, tags or mark though all its records were lost:
 * known damage, not retention). */
bool reel_store_reader_dropped(const reel_store_reader_t *r);

/** Frames r has decompressed so far (tests, benchmarks). */
uint64_t reel_store_reader_frames_read(const reel_store_reader_t *r);

/** Index statements r has run to find flows' frames: one per flow looked up
 * alone, one per range of flows read in id order (tests, benchmarks). */
uint64_t reel_store_reader_queries(const reel_store_reader_t *r);

/** Caps the index rows one statement of r reads for a range of flows
 * (default 4096, at least 1): a flow with as many frames is looked up
 * alone (tests). */
void reel_store_reader_set_plan_rows(reel_store_reader_t *r, size_t rows);

/** Frees r and the frames it keeps; NULL is a no-op. */
void reel_store_reader_free(reel_store_reader_t *r);

/** One known hole in a flow's record (a flow_damage row, docs/format.md). */
typedef struct {
    int direction;  /* 0 request body, 1 response body, 2 other records of the flow */
    int64_t offset; /* body bytes stored before the hole */
    int64_t length; /* body bytes missing, -1 if unknown */
    char reason[300];
} reel_store_damage_t;

/** Name of a reel_store_damage_t direction: "request", "response", "flow". */
const char *reel_store_damage_direction(int direction);

/** The known holes of flow id (none for an intact flow), in the order
 * recorded, as an owned array of *n entries in *out (NULL when none;
 * release with free()). Returns REEL_DB if the index cannot be read. */
reel_rc reel_store_flow_damage(reel_session_t *s, uint64_t id, reel_store_damage_t **out, size_t *n,
                               reel_err_t *err);

#endif
