/* Names the calling thread (what top -H, perf and gdb show), at most 15
 * characters; a no-op where the system has no names for threads. */
#ifndef REEL_BASE_THREAD_H
#define REEL_BASE_THREAD_H

#include <pthread.h>

static inline void reel_thread_name(const char *name) {
#ifdef __linux__
    pthread_setname_np(pthread_self(), name);
#else
    (void)name;
#endif
}

#endif
