/* The two records a recorded request sends most bytes of fields in, a
 * Record holding a RequestHead or a ResponseHead (schema/flow.proto),
 * encoded straight from the recorder's own head structs.
 *
 * protobuf-c packs a message from a descriptor, field by field, and sizes
 * every nested message twice (once for the whole record, once more for
 * its length prefix while packing): for a head and its headers that was
 * most of what recording cost the proxy's loop thread per request, with
 * two allocations to build the Reel__Header array. These write the same
 * bytes protobuf-c writes (fields in number order, proto3 defaults left
 * out, every header kept even if empty); pbhead_test.c checks that they
 * are byte for byte what reel__record__pack makes of the same head. */
#ifndef REEL_SESSION_PBHEAD_H
#define REEL_SESSION_PBHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "flow.pb-c.h"
#include "session/recorder.h"

/* Each record is sized once: the size function fills a plan (the
 * lengths of the record's messages), and the write function takes it
 * instead of working them out again (three walks of every string and
 * header were a fifth of what recording added to the loop thread's
 * instructions per request). */
typedef struct {
    uint32_t ev;   /* the event's field number; 0: not one of these */
    size_t ev_len; /* the event message's length */
    size_t sub[2]; /* its nested messages' (timings, replay_of, client TLS) */
} reel_pbrec_plan_t;

/** Bytes of Record{flow_id, time_us, request_head = h}, planned into pl.
 * h's scheme and http_version must not be NULL (the recorder puts in its
 * defaults). */
size_t reel_pbhead_request_size(uint64_t flow_id, int64_t time_us, const reel_request_head_t *h,
                                reel_pbrec_plan_t *pl);
/** Writes that record to out (room for reel_pbhead_request_size bytes),
 * with the plan that call made of the same head; returns the bytes
 * written. */
size_t reel_pbhead_request_write(uint8_t *out, uint64_t flow_id, int64_t time_us,
                                 const reel_request_head_t *h, const reel_pbrec_plan_t *pl);

/** Bytes of Record{flow_id, time_us, response_head or interim = h}
 * (`interim`: field 20, else 13), planned into pl. h's http_version must
 * not be NULL. */
size_t reel_pbhead_response_size(uint64_t flow_id, int64_t time_us, const reel_response_head_t *h,
                                 int interim, reel_pbrec_plan_t *pl);
/** Writes that record to out with its plan; returns the bytes written. */
size_t reel_pbhead_response_write(uint8_t *out, uint64_t flow_id, int64_t time_us,
                                  const reel_response_head_t *h, const reel_pbrec_plan_t *pl);

/* The records every flow has a few of, from protobuf-c's own structs
 * (so that the recorder fills them as before): FlowStart, ServerConn, a
 * request or response BodyChunk and FlowEnd. protobuf-c's packing of
 * these was a sixth of the loop thread's instructions per small request,
 * with a second sizing pass for the nested messages. */

/** Bytes of rec packed, planned into pl, when its event is one of those
 * four (with its member set); 0 for any other event, which protobuf-c
 * packs. */
size_t reel_pbrec_size(const Reel__Record *rec, reel_pbrec_plan_t *pl);
/** Writes rec as reel__record__pack would (room for reel_pbrec_size
 * bytes), with that call's plan; returns the bytes written, 0 for an
 * event it does not write. */
size_t reel_pbrec_write(uint8_t *out, const Reel__Record *rec, const reel_pbrec_plan_t *pl);

#endif
