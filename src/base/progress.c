/* The progress line. See base/progress.h. */

#include "base/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void reel_progress_init(reel_progress_t *p, const char *label, const char *unit,
                        uint64_t total) {
    *p = (reel_progress_t){.label = label, .unit = unit, .tty = -1, .total = total};
}

static void first(reel_progress_t *p) {
    if (p->tty >= 0)
        return;
    p->tty = isatty(STDERR_FILENO);
    p->start_us = now_us();
    const char *d = getenv("REEL_PROGRESS_DELAY_MS");
    char *end = NULL;
    long long ms = d ? strtoll(d, &end, 10) : 500;
    p->delay_us = (d && (end == d || *end || ms < 0) ? 500 : ms) * 1000;
}

bool reel_progress_due(reel_progress_t *p) {
    first(p);
    if (!p->tty)
        return false;
    int64_t now = now_us();
    return now - p->start_us >= p->delay_us && !(p->shown && now - p->last_us < 200000);
}

static void draw(reel_progress_t *p) {
    if (!reel_progress_due(p))
        return;
    int64_t now = now_us();
    p->last_us = now;
    double secs = (double)(now - p->start_us) / 1e6;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    char total[32] = "", left[48] = "", mbs[32] = "";
    if (p->total >= p->done && p->total)
        snprintf(total, sizeof total, "/%llu", (unsigned long long)p->total);
    if (rate > 0 && p->total > p->done)
        snprintf(left, sizeof left, ", %.0f s left", (double)(p->total - p->done) / rate);
    if (p->show_bytes && secs > 0)
        snprintf(mbs, sizeof mbs, ", %.1f MB/s", (double)p->bytes / 1e6 / secs);
    fprintf(stderr, "\r%s: %llu%s %s, %.0f/s%s%s\033[K", p->label, (unsigned long long)p->done,
            total, p->unit, rate, mbs, left);
    p->shown = true;
}

void reel_progress_add(reel_progress_t *p, uint64_t n, uint64_t bytes) {
    p->done += n;
    p->bytes += bytes;
    if (bytes)
        p->show_bytes = true;
    draw(p);
}

void reel_progress_set(reel_progress_t *p, uint64_t done, uint64_t total) {
    p->done = done;
    if (total)
        p->total = total;
    draw(p);
}

void reel_progress_clear(reel_progress_t *p) {
    if (p->shown)
        fputs("\r\033[K", stderr);
    p->shown = false;
}
