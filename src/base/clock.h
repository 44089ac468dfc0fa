/* The monotonic clock in nanoseconds, for intervals and deadlines (not
 * wall time: that is reel_now_us in session/session.h). */
#ifndef REEL_BASE_CLOCK_H
#define REEL_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t reel_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
