/* Reading flows back: the records of one flow, in order, from the spool. */
#ifndef REEL_SESSION_STORE_H
#define REEL_SESSION_STORE_H

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
 * frame of it fails its checksum or its segment is missing (records before
 * it were delivered). */
reel_rc reel_store_read_flow(reel_session_t *s, uint64_t id, reel_record_cb cb, void *ctx,
                             reel_err_t *err);

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
