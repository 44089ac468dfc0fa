/* Telling a supervisor about a running proxy (`reel record`/`resume`):
 * a pid file, and systemd's readiness protocol.
 *
 * The pid file is written once the proxy listens, so its existence means
 * "ready", and removed at exit. Notification goes to $NOTIFY_SOCKET through
 * libsystemd's sd_notify when reel is built with it (REEL_HAVE_LIBSYSTEMD),
 * else it does nothing and the unit files use Type=exec. */
#ifndef REEL_DAEMON_SERVICE_H
#define REEL_DAEMON_SERVICE_H

#include "base/error.h"

/** Writes this process's pid and a newline to `path` atomically (a
 * temporary file beside it, then rename), mode 0644. Returns REEL_IO with
 * the reason on failure (nothing is left behind). */
reel_rc reel_service_pidfile_write(const char *path, reel_err_t *err);

/** Removes `path` if it still holds this process's pid (another process
 * may have replaced it since); quiet on every error. */
void reel_service_pidfile_remove(const char *path);

/** Sends `state` ("READY=1\nSTATUS=...", "STOPPING=1") to the service
 * manager when $NOTIFY_SOCKET is set and reel has libsystemd; else no-op.
 * Returns 1 if sent, 0 if there is nobody to tell, -1 on error. */
int reel_service_notify(const char *state);

/** Whether this build can notify (it has libsystemd). */
int reel_service_can_notify(void);

#endif
