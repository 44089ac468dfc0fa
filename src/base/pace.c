#include "base/pace.h"

#include <sched.h>
#include <time.h>

static int64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

void reel_pace_init(reel_pace_t *p, int64_t every_ns) {
    p->every_ns = every_ns;
    p->last_ns = every_ns ? mono_ns() : 0;
}

void reel_pace(reel_pace_t *p) {
    if (p->every_ns == 0)
        return;
    int64_t now = mono_ns();
    if (now - p->last_ns < p->every_ns)
        return;
    sched_yield();
    p->last_ns = mono_ns();
}
