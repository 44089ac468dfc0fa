/* The recording daemon: the proxy, the recorder and the session they write,
 * on one libuv loop, from start to a clean stop.
 *
 * It builds the effective configuration from the four layers (defaults <
 * user file < session overlay < the caller's KEY=VALUE assignments),
 * opens the CA and the recorder, starts the proxy, and runs until SIGINT,
 * SIGTERM or SIGHUP (a second signal exits at once). While it runs, a timer
 * watches the overlay's history and re-applies the hot options within a second of
 * `reel config SESSION set ...`, and keeps meta `ignored_connections`. It
 * writes the pid file and tells systemd it is ready once it listens.
 *
 * The CLI (`reel record`, `reel resume`) parses arguments and opens the
 * session; everything after that is here, so that other front ends (a
 * service wrapper, the web UI's own process) run the same daemon. */
#ifndef REEL_DAEMON_DAEMON_H
#define REEL_DAEMON_DAEMON_H

#include <stddef.h>

#include "base/error.h"
#include "session/session.h"

typedef struct {
    reel_session_t *session;  /* opened with REEL_OPEN_RECORD; borrowed */
    const char *name;         /* the session's name, for messages */
    char *const *sets;        /* KEY=VALUE over every other layer (--set, --listen) */
    size_t nsets;
    int explicit_listen;      /* listening beyond loopback was asked for explicitly */
    const char *pidfile;      /* written once listening, removed at exit; NULL: none */
    const char *data_dir;     /* where reel's CA lives */
    /* --web: also serve the web UI (src/web) on the same loop */
    int web;
    const char *web_host;     /* NULL: 127.0.0.1 */
    int web_port;
    int web_explicit;         /* --web=HOST:PORT named the address */
    const char *home;         /* sessions root the web UI shows */
} reel_daemon_opts_t;

/** Runs the daemon until it is told to stop. Returns REEL_OK after a clean
 * stop; an error (err: the first, for the caller to print) when it could
 * not start or when records were lost on the way (those it also says on
 * stderr as they happen). *served is set to 1 once the proxy listened. */
reel_rc reel_daemon_run(const reel_daemon_opts_t *o, int *served, reel_err_t *err);

#endif
