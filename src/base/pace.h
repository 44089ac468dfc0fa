/* Pacing of a background thread's long bursts of CPU work (the recorder's
 * index and writer threads). A thread that works for milliseconds at a time
 * delays the proxy's event loop whenever the scheduler queues the loop
 * behind it on the same core: measured at 5,000 req/s on 2 cores, the
 * index thread's 2.5 ms per frame of rows and the writer's 1 ms per frame
 * compressed made capture add 1.4-2 ms to the p99 latency, while capture
 * off added 0.08 ms. At points where it can stop, such a thread calls
 * reel_pace(); once `every_ns` have passed since the last yield it gives
 * up the core (sched_yield), and a thread waiting for it runs now rather
 * than after the burst. With nothing waiting the yield returns at once.
 *
 * Why not a lower priority: nice values and a shorter scheduler slice for
 * the loop did not change the p99 (Linux's EEVDF lets a running task keep
 * the core for its slice); SCHED_IDLE did, but starves the writer under
 * saturation (bodies of 256 KiB responses were dropped from the capture),
 * and an unprivileged thread cannot leave SCHED_IDLE again. */
#ifndef REEL_BASE_PACE_H
#define REEL_BASE_PACE_H

#include <stdint.h>

typedef struct {
    int64_t every_ns; /* 0: never yields */
    int64_t last_ns;  /* the last yield, or the start */
} reel_pace_t;

/** Starts pacing every every_ns of work (0: off). */
void reel_pace_init(reel_pace_t *p, int64_t every_ns);
/** Yields the core if every_ns have passed since the last yield. */
void reel_pace(reel_pace_t *p);

#endif
