/* `reel record` and `reel resume`: run the proxy, recording into a session.
 *
 * The effective configuration is built from the four layers (defaults <
 * user file < session overlay < --set/--listen). While the proxy runs, a
 * timer watches the overlay's history and re-applies the hot options
 * within a second of `reel config SESSION set ...`. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "cli/proxy_settings.h"
#include "cli/service.h"
#include "core/ca.h"
#include "core/proxy.h"
#include "session/config.h"
#include "session/index.h"
#include "session/recorder.h"

static const char record_usage[] =
    "usage: reel record [--home DIR] [--listen HOST:PORT] [--set KEY=VALUE]...\n"
    "                   [--pidfile FILE] [SESSION]\n"
    "\n"
    "Starts the intercepting proxy (127.0.0.1:8080 by default) and records every\n"
    "flow into a new session, named by date and time when SESSION is omitted.\n"
    "Point a client at it (curl -x http://127.0.0.1:8080 ...); for HTTPS, make\n"
    "the client trust reel's CA ('reel ca' shows how).\n"
    "\n"
    "  --listen HOST:PORT  address to listen on (also :PORT or PORT); listening\n"
    "                      beyond loopback must be asked for and prints a warning\n"
    "  --set KEY=VALUE     any config option, for this run only (not saved in the\n"
    "                      session); 'reel config --help' lists the options\n"
    "  --pidfile FILE      once the proxy listens, write its pid to FILE (removed\n"
    "                      at exit); under systemd (Type=notify) reel also sends\n"
    "                      READY=1 then, and STOPPING=1 when it stops\n"
    "\n"
    "Ctrl-C or SIGTERM stops accepting, lets in-flight flows finish for a few\n"
    "seconds, flushes the session and exits; a second one exits at once (the\n"
    "session stays readable). 'reel resume SESSION' continues recording later.\n";

static const char resume_usage[] =
    "usage: reel resume [--home DIR] [--listen HOST:PORT] [--set KEY=VALUE]...\n"
    "                   [--pidfile FILE] SESSION\n"
    "\n"
    "Starts the proxy again on an existing session, with the config overlay it\n"
    "had ('reel config SESSION list'), appending new flows after the old ones.\n"
    "Options as for 'reel record'.\n";

typedef struct {
    reel_cli_t *cli;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t config_timer;
    reel_session_t *session;
    reel_recorder_t *rec;
    reel_proxy_t *proxy;
    char **sets;
    size_t nsets;
    const char *pidfile; /* --pidfile, written once listening */
    int pidfile_written;
    long long config_seen;
    /* connections to ignore_hosts: the session's count before this run,
     * and what this run last wrote to meta `ignored_connections` */
    unsigned long long ignored_base, ignored_written;
    int stopping;
    int exit_code;
} run_t;

static void warn_cb(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "reel: %s\n", msg);
}

/* Builds the effective configuration; prints problems. Returns NULL on a
 * hard error (bad user file, bad --set). */
static reel_config_t *build_config(run_t *r, int quiet) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_config_t *c = reel_config_new();
    char *warnings = NULL;
    if (reel_config_load_user(c, NULL, &err) != REEL_OK) {
        reel_cli_fail(r->cli, "%s", reel_err_str(&err));
        goto fail;
    }
    if (reel_config_load_overlay(c, reel_session_db(r->session), &warnings, &err) != REEL_OK) {
        reel_cli_fail(r->cli, "%s", reel_err_str(&err));
        goto fail;
    }
    if (warnings && !quiet)
        fprintf(stderr, "reel: %s\n", warnings);
    free(warnings);
    for (size_t i = 0; i < r->nsets; i++)
        if (reel_config_set_cli(c, r->sets[i], &err) != REEL_OK) {
            reel_cli_fail(r->cli, "--set %s: %s", r->sets[i], reel_err_str(&err));
            goto fail;
        }
    return c;
fail:
    reel_config_free(c);
    return NULL;
}

static void recorder_opts(const reel_config_t *c, reel_recorder_opts_t *o) {
    reel_recorder_opts_default(o);
    const char *fs = reel_config_get(c, "fsync", NULL);
    o->fsync = strcmp(fs, "never") == 0      ? REEL_FSYNC_NEVER
               : strcmp(fs, "interval") == 0 ? REEL_FSYNC_INTERVAL
                                             : REEL_FSYNC_BLOCK;
    o->fsync_interval_ms = (uint32_t)reel_config_get_int(c, "fsync_interval_ms");
    o->segment_size = (uint64_t)reel_config_get_int(c, "segment_size");
    o->body_limit = (uint64_t)reel_config_get_int(c, "body_limit");
    o->queue_bytes = (size_t)reel_config_get_int(c, "capture_buffer");
    const char *cap = reel_config_get(c, "capture", NULL);
    o->capture = strcmp(cap, "off") == 0        ? REEL_CAPTURE_OFF
                 : strcmp(cap, "lossless") == 0 ? REEL_CAPTURE_LOSSLESS
                                                : REEL_CAPTURE_ON;
    o->warn = warn_cb;
    o->retention.max_bytes = (uint64_t)reel_config_get_int(c, "retention_max_bytes");
    o->retention.max_age_s = reel_config_get_int(c, "retention_max_age");
    o->retention.max_flows = (uint64_t)reel_config_get_int(c, "retention_max_flows");
    o->on_segment_closed = reel_config_get(c, "on_segment_closed", NULL);
}

static long long config_version(run_t *r) {
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(reel_session_db(r->session),
                           "SELECT coalesce(max(id), 0) FROM config_history", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Connections to ignore_hosts are not recorded; `reel show` reports how
 * many there were from meta `ignored_connections`. */
static void save_ignored(run_t *r) {
    reel_proxy_stats_t ps;
    reel_proxy_stats(r->proxy, &ps);
    if (ps.ignored == r->ignored_written)
        return;
    char v[32];
    snprintf(v, sizeof v, "%llu", r->ignored_base + (unsigned long long)ps.ignored);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_index_meta_set(reel_session_db(r->session), "ignored_connections", v, &err) ==
        REEL_OK)
        r->ignored_written = ps.ignored;
}

static void on_config_timer(uv_timer_t *t) {
    run_t *r = t->data;
    save_ignored(r);
    long long v = config_version(r);
    if (v < 0 || v == r->config_seen)
        return;
    r->config_seen = v;
    reel_config_t *c = build_config(r, 0);
    if (c == NULL)
        return;
    reel_recorder_opts_t o;
    recorder_opts(c, &o);
    reel_err_t err;
    reel_err_clear(&err);
    reel_proxy_settings_t ps;
    char **ign = reel_cli_proxy_settings(c, &ps);
    reel_rc prc = reel_proxy_configure(r->proxy, &ps, &err);
    free(ign);
    if (prc != REEL_OK) {
        fprintf(stderr, "reel: overlay change not applied: %s\n", reel_err_str(&err));
    } else {
        reel_recorder_set_limits(r->rec, o.body_limit, o.capture);
        reel_recorder_set_retention(r->rec, &o.retention, o.on_segment_closed);
        fprintf(stderr, "reel: applied config change (capture=%s, body_limit=%s, "
                        "upstream_cert_verify=%s)\n",
                reel_config_get(c, "capture", NULL), reel_config_get(c, "body_limit", NULL),
                reel_config_get(c, "upstream_cert_verify", NULL));
    }
    reel_config_free(c);
}

static void on_shutdown_done(void *ctx) {
    run_t *r = ctx;
    uv_stop(&r->loop);
}

static void on_signal(uv_signal_t *s, int signum) {
    run_t *r = s->data;
    if (r->stopping) {
        /* Second signal: leave now. Every frame on disk is whole or a torn
         * tail that recovery moves aside, so the session stays readable. */
        fprintf(stderr, "\nreel: second signal, exiting now\n");
        _exit(130);
    }
    r->stopping = 1;
    reel_service_notify("STOPPING=1");
    fprintf(stderr, "\nreel: %s: finishing in-flight flows (signal again to exit now)\n",
            signum == SIGINT ? "interrupted" : "terminated");
    uv_timer_stop(&r->config_timer);
    reel_proxy_shutdown(r->proxy, 3000, on_shutdown_done, r);
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static char *default_name(void) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[64];
    strftime(buf, sizeof buf, "%Y-%m-%d_%H-%M-%S", &tm);
    return reel_strdup(buf);
}

static int is_loopback(const char *host) {
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

/* --listen HOST:PORT, [V6]:PORT, :PORT or PORT -> two --set assignments. */
static int parse_listen(run_t *r, const char *arg) {
    const char *colon = strrchr(arg, ':');
    char *host = NULL;
    const char *port = arg;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        host = reel_strndup(arg + 1, (size_t)(close - arg - 1));
        port = close + 2;
    } else if (colon) {
        host = colon == arg ? NULL : reel_strndup(arg, (size_t)(colon - arg));
        port = colon + 1;
    }
    if (*port == '\0') {
        free(host);
        return -1;
    }
    r->sets = reel_realloc(r->sets, (r->nsets + 2) * sizeof *r->sets);
    if (host) {
        r->sets[r->nsets++] = reel_asprintf("listen_host=%s", host);
        free(host);
    }
    r->sets[r->nsets++] = reel_asprintf("listen_port=%s", port);
    return 0;
}

static int run(reel_cli_t *cli, int argc, char **argv, int resume) {
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"set", required_argument, NULL, 's'},
                                         {"pidfile", required_argument, NULL, 'p'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *usage = resume ? resume_usage : record_usage;
    run_t r = {.cli = cli, .exit_code = REEL_EXIT_OK};
    reel_config_t *cfg = NULL;
    reel_ca_t *ca = NULL;
    char *name = NULL;
    int c, explicit_listen = 0, loop_ready = 0;
    int created = 0, served = 0; /* this run made the session; the proxy ran */
    while ((c = getopt_long(argc, argv, "hl:s:", opts, NULL)) != -1) {
        if (c == 'l') {
            if (parse_listen(&r, optarg) != 0) {
                r.exit_code = reel_cli_usage(cli, "--listen takes HOST:PORT, not '%s'", optarg);
                goto out;
            }
            explicit_listen = 1;
            continue;
        }
        if (c == 'p') {
            r.pidfile = optarg;
            continue;
        }
        if (c == 's') {
            if (strchr(optarg, '=') == NULL) {
                r.exit_code = reel_cli_usage(cli, "--set takes KEY=VALUE, not '%s'", optarg);
                goto out;
            }
            r.sets = reel_realloc(r.sets, (r.nsets + 1) * sizeof *r.sets);
            r.sets[r.nsets++] = reel_strdup(optarg);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0) {
            r.exit_code = rc;
            goto out;
        }
    }
    int nargs = argc - optind;
    if (nargs > 1 || (resume && nargs != 1)) {
        r.exit_code = reel_cli_usage(cli, resume ? "expected one SESSION" : "expected at most one SESSION");
        goto out;
    }
    name = nargs ? reel_strdup(argv[optind]) : default_name();
    r.session = reel_cli_open(cli, name, resume ? REEL_OPEN_RECORD
                                                : REEL_OPEN_RECORD | REEL_OPEN_CREATE | REEL_OPEN_NEW);
    created = r.session != NULL && !resume;
    if (r.session == NULL) {
        if (!resume) {
            reel_err_t e;
            reel_err_clear(&e);
            reel_session_t *probe = NULL;
            if (reel_session_open(reel_cli_home(cli), name, 0, &probe, &e) == REEL_OK)
                fprintf(stderr, "reel record: to append to it, use 'reel resume %s'\n", name);
            reel_session_close(probe);
        }
        r.exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    cfg = build_config(&r, 0);
    if (cfg == NULL) {
        r.exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    const char *host = reel_config_get(cfg, "listen_host", NULL);
    if (!is_loopback(host)) {
        if (!explicit_listen) {
            r.exit_code = reel_cli_fail(cli,
                                        "listen_host is %s (from config), beyond loopback; "
                                        "pass --listen %s:%lld to confirm",
                                        host, host,
                                        (long long)reel_config_get_int(cfg, "listen_port"));
            goto out;
        }
        fprintf(stderr, "reel: WARNING: listening on %s, beyond loopback: anyone who can reach "
                        "this address can use the proxy%s\n",
                host, reel_config_get(cfg, "proxyauth", NULL)[0] ? "" : " (no proxyauth set)");
    }
    reel_err_t err;
    reel_err_clear(&err);
    char *cadir = reel_cli_data_dir();
    if (reel_ca_open(cadir, &ca, &err) != REEL_OK) {
        free(cadir);
        r.exit_code = reel_cli_fail(cli, "CA: %s", reel_err_str(&err));
        goto out;
    }
    free(cadir);
    if (reel_ca_warning(ca))
        fprintf(stderr, "reel: WARNING: %s\n", reel_ca_warning(ca));
    reel_recorder_opts_t ro;
    recorder_opts(cfg, &ro);
    if (reel_recorder_open(r.session, &ro, &r.rec, &err) != REEL_OK) {
        r.exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    uv_loop_init(&r.loop);
    loop_ready = 1;
    reel_proxy_settings_t ps;
    char **ignore_list = reel_cli_proxy_settings(cfg, &ps);
    reel_rc prc = reel_proxy_start(&r.loop, &ps, r.rec, ca, &r.proxy, &err);
    free(ignore_list);
    if (prc != REEL_OK) {
        r.exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    r.sigint.data = r.sigterm.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&r.sigint);
    uv_unref((uv_handle_t *)&r.sigterm);
    r.config_seen = config_version(&r);
    char *ign = reel_index_meta_get(reel_session_db(r.session), "ignored_connections");
    r.ignored_base = ign ? strtoull(ign, NULL, 10) : 0;
    free(ign);
    uv_timer_init(&r.loop, &r.config_timer);
    r.config_timer.data = &r;
    uv_timer_start(&r.config_timer, on_config_timer, 500, 500);
    uv_unref((uv_handle_t *)&r.config_timer);
    const char *lh = reel_config_get(cfg, "listen_host", NULL);
    int v6 = strchr(lh, ':') != NULL;
    /* Where this proxy listens, for `reel config SESSION list`. */
    char *listen = reel_asprintf(v6 ? "[%s]:%d" : "%s:%d", lh, reel_proxy_port(r.proxy));
    reel_index_meta_set(reel_session_db(r.session), "listen", listen, NULL);
    free(listen);
    fprintf(stderr,
            "reel: recording into session '%s' (%s)\n"
            "reel: proxy listening on http://%s%s%s:%d  (curl -x http://%s%s%s:%d ...)\n"
            "reel: HTTPS is intercepted with the CA in %s ('reel ca' shows how to trust it)\n",
            name, reel_session_path(r.session), v6 ? "[" : "", lh, v6 ? "]" : "",
            reel_proxy_port(r.proxy), v6 ? "[" : "", lh, v6 ? "]" : "",
            reel_proxy_port(r.proxy), reel_ca_cert_path(ca));
    fflush(stderr);
    if (r.pidfile) {
        if (reel_service_pidfile_write(r.pidfile, &err) != REEL_OK) {
            /* a supervisor waiting for the file would never see it: stop
             * (nothing was accepted yet) */
            r.exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
            r.stopping = 1;
            reel_proxy_shutdown(r.proxy, 0, on_shutdown_done, &r);
            uv_run(&r.loop, UV_RUN_DEFAULT);
            goto out;
        }
        r.pidfile_written = 1;
    }
    char *ready = reel_asprintf("READY=1\nSTATUS=recording into session '%s', listening on "
                                "%s%s%s:%d",
                                name, v6 ? "[" : "", lh, v6 ? "]" : "", reel_proxy_port(r.proxy));
    reel_service_notify(ready);
    free(ready);
    served = 1;
    uv_run(&r.loop, UV_RUN_DEFAULT);
out:
    if (loop_ready) {
        if (r.proxy && served)
            save_ignored(&r);
        reel_proxy_free(r.proxy);
        uv_walk(&r.loop, close_walk, NULL);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
    }
    if (r.rec) {
        reel_recorder_stats_t st;
        reel_recorder_stats(r.rec, &st);
        reel_err_t err2;
        reel_err_clear(&err2);
        if (reel_recorder_close(r.rec, &err2) != REEL_OK) {
            fprintf(stderr, "reel: %s\n", reel_err_str(&err2));
            r.exit_code = REEL_EXIT_ERROR;
        }
        unsigned long long kept = st.flows - st.lost_flows;
        if (st.lost_flows)
            fprintf(stderr,
                    "reel: session '%s': %llu flow%s recorded in this run, %llu more not recorded "
                    "(capture was stopped when they started)\n",
                    name, kept, kept == 1 ? "" : "s", (unsigned long long)st.lost_flows);
        else
            fprintf(stderr, "reel: session '%s': %llu flow%s recorded in this run\n", name,
                    (unsigned long long)st.flows, st.flows == 1 ? "" : "s");
    }
    reel_ca_free(ca);
    reel_config_free(cfg);
    reel_session_close(r.session);
    if (r.pidfile_written) /* last: the session is flushed and unlocked */
        reel_service_pidfile_remove(r.pidfile);
    if (created && !served) {
        /* It never recorded anything: do not leave an empty session that
         * the next `reel record NAME` would refuse as existing. */
        reel_err_t e;
        reel_err_clear(&e);
        if (reel_session_remove(reel_cli_home(cli), name, &e) == REEL_OK)
            fprintf(stderr, "reel: removed session '%s' again (the proxy did not start)\n", name);
        else
            fprintf(stderr, "reel: session '%s' was created but the proxy did not start; %s\n",
                    name, reel_err_str(&e));
    }
    for (size_t i = 0; i < r.nsets; i++)
        free(r.sets[i]);
    free(r.sets);
    free(name);
    return r.exit_code;
}

int reel_cmd_record(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 0);
}

int reel_cmd_resume(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 1);
}
