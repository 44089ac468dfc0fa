#include "base/pace.h"

#include <sched.h>

#include "base/clock.h"

void reel_pace_init(reel_pace_t *p, int64_t every_ns) {
    p->every_ns = every_ns;
    p->last_ns = every_ns ? reel_mono_ns() : 0;
}

void reel_pace(reel_pace_t *p) {
    if (p->every_ns == 0)
        return;
    int64_t now = reel_mono_ns();
    if (now - p->last_ns < p->every_ns)
        return;
    sched_yield();
    p->last_ns = reel_mono_ns();
}
