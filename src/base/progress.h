/* The progress line of long CLI work (export, import, a spool search):
 * "reel export: 1200/50000 flows, 3100/s, 16 s left" redrawn in place on
 * stderr at most 5 times a second, only when stderr is a terminal, and only
 * once the work has lasted REEL_PROGRESS_DELAY_MS (default 500 ms), so a
 * short run prints nothing. Silent when piped. */
#ifndef REEL_BASE_PROGRESS_H
#define REEL_BASE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *label; /* "reel export" (borrowed, static) */
    const char *unit;  /* "flows" */
    int tty;           /* -1: not asked yet */
    int64_t start_us, last_us, delay_us;
    uint64_t done, bytes, total; /* total 0: unknown */
    bool shown, show_bytes;
} reel_progress_t;

/** Starts a progress line; total 0 when not known (yet). */
void reel_progress_init(reel_progress_t *p, const char *label, const char *unit,
                        uint64_t total);
/** Whether a line would be drawn now (a terminal, past the delay): lets a
 * caller compute an expensive total only when it will be shown. */
bool reel_progress_due(reel_progress_t *p);
/** Counts n more units (and bytes, shown as MB/s when any were counted)
 * and redraws when due. */
void reel_progress_add(reel_progress_t *p, uint64_t n, uint64_t bytes);
/** Sets done to an absolute count and redraws when due. */
void reel_progress_set(reel_progress_t *p, uint64_t done, uint64_t total);
/** Clears the line (before other output, and at the end). */
void reel_progress_clear(reel_progress_t *p);

#endif
