/* An in-memory bottom filter: a stack whose "wire" is a pipe the caller
 * drives, so that everything above it (TLS, codecs, exchanges, capture)
 * runs without a socket. Tests use it to play the client and the origin
 * byte by byte (every split of an input); see tests/unit/core/
 * exchange_test.c.
 *
 * The pipe (reel_mempipe_t) is the caller's and outlives the filter: when
 * the stack closes, the filter is destroyed and the pipe records it. Events
 * that a socket would deliver later (connected, refused, closed, reads
 * resumed after a pause) are delivered from a zero timer on the loop, never
 * inside the call that caused them, as libuv would. */
#ifndef REEL_CORE_MEMFILTER_H
#define REEL_CORE_MEMFILTER_H

#include <uv.h>

#include "base/mem.h"
#include "core/filter.h"

typedef struct reel_mempipe reel_mempipe_t;

/** A pipe on loop. connected: already connected (an accepted client);
 * else it connects when the stack is opened, or is refused with `refuse`
 * (borrowed, copied) as the stack's error. */
reel_mempipe_t *reel_mempipe_new(uv_loop_t *loop, bool connected, const char *refuse);
/** Frees the pipe; its filter must be gone (stack closed) and the loop
 * run once more afterwards so its timer's close callback runs. */
void reel_mempipe_free(reel_mempipe_t *mp);

/** The filter for the pipe (one per pipe; owned by the stack it is pushed
 * on). */
reel_filter_t *reel_mempipe_filter(reel_mempipe_t *mp);

/** Bytes arriving from the wire: delivered now if the stack reads, else
 * when it resumes reading. */
void reel_mempipe_feed(reel_mempipe_t *mp, const void *data, size_t len);
/** The wire's end of stream (after the bytes fed before it). */
void reel_mempipe_feed_eof(reel_mempipe_t *mp);

/** Bytes the stack wrote to the wire so far, not yet taken; the caller
 * may consume them (reel_buf_consume / reset). */
reel_buf_t *reel_mempipe_sent(reel_mempipe_t *mp);
/** Whether the stack half-closed its side (shutdown) / closed. */
bool reel_mempipe_shut(const reel_mempipe_t *mp);
bool reel_mempipe_closed(const reel_mempipe_t *mp);
bool reel_mempipe_reading(const reel_mempipe_t *mp);

#endif
