/* The recording daemon; see daemon.h. Moved out of cli/cmd_record.c so
 * that the CLI only parses arguments and opens the session. */
#include "daemon/daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>

#include "base/mem.h"
#include "core/ca.h"
#include "core/proxy.h"
#include "daemon/proxy_settings.h"
#include "daemon/service.h"
#include "session/config.h"
#include "session/index.h"
#include "session/recorder.h"
#include "web/web.h"

typedef struct {
    const reel_daemon_opts_t *o;
    uv_loop_t loop;
    /* SIGHUP too: the terminal that ran it closed (or a supervisor's
     * stop), which must not lose what is in flight or leave the pid file */
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t config_timer;
    reel_recorder_t *rec;
    reel_proxy_t *proxy;
    reel_web_t *web; /* --web */
    int pidfile_written;
    long long config_seen;
    /* connections to ignore_hosts: the session's count before this run,
     * and what this run last wrote to meta `ignored_connections` */
    unsigned long long ignored_base, ignored_written;
    int stopping;
} daemon_t;

/* The upstream settings of the web UI's replays into the live session,
 * the proxy's own (borrowed from ps). */
static reel_web_upstream_t web_upstream(const reel_proxy_settings_t *ps) {
    return (reel_web_upstream_t){.verify = ps->upstream_cert_verify,
                                 .timeout_s = (int)ps->upstream_timeout_s,
                                 .proxy = ps->upstream_proxy,
                                 .proxyauth = ps->upstream_proxyauth,
                                 .no_proxy = ps->upstream_no_proxy,
                                 .insecure_hosts = ps->upstream_insecure_hosts,
                                 .client_certs = ps->upstream_client_certs};
}

static void warn_cb(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "reel: %s\n", msg);
}

/* Builds the effective configuration; prints problems. Returns NULL on a
 * hard error (bad user file, bad --set). */
static reel_config_t *build_config(daemon_t *r, int quiet, reel_err_t *err) {
    reel_err_t e;
    reel_err_clear(&e);
    reel_config_t *c = reel_config_new();
    char *warnings = NULL;
    if (reel_config_load_user(c, NULL, &e) != REEL_OK) {
        reel_err_set(err, e.code, "%s", reel_err_str(&e));
        goto fail;
    }
    if (reel_config_load_overlay(c, reel_session_db(r->o->session), &warnings, &e) != REEL_OK) {
        reel_err_set(err, e.code, "%s", reel_err_str(&e));
        goto fail;
    }
    if (warnings && !quiet)
        fprintf(stderr, "reel: %s\n", warnings);
    free(warnings);
    for (size_t i = 0; i < r->o->nsets; i++)
        if (reel_config_set_cli(c, r->o->sets[i], &e) != REEL_OK) {
            reel_err_set(err, e.code, "--set %s: %s", r->o->sets[i], reel_err_str(&e));
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
    o->zstd_level = (int)reel_config_get_int(c, "zstd_level");
    o->block_size = (size_t)reel_config_get_int(c, "spool_block_size");
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

static long long config_version(daemon_t *r) {
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(reel_session_db(r->o->session),
                           "SELECT coalesce(max(id), 0) FROM config_history", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Connections to ignore_hosts are not recorded; `reel show` reports how
 * many there were from meta `ignored_connections`. */
static void save_ignored(daemon_t *r) {
    reel_proxy_stats_t ps;
    reel_proxy_stats(r->proxy, &ps);
    if (ps.ignored == r->ignored_written)
        return;
    char v[32];
    snprintf(v, sizeof v, "%llu", r->ignored_base + (unsigned long long)ps.ignored);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_index_meta_set(reel_session_db(r->o->session), "ignored_connections", v, &err) ==
        REEL_OK)
        r->ignored_written = ps.ignored;
}

/* Says what the overlay changes after history entry `seen` did, as `reel
 * config set` tells it (cmd_config.c say_applies): each key the proxy
 * applied, with the value now in force; each one its command line set,
 * which keeps that value until it stops; each one read only when it
 * starts. redact_* are read by reel export, not by the proxy: not named.
 * Values that may hold credentials (proxyauth, on_segment_closed's
 * command) are said to be set or off, never shown. */
static void log_changes(daemon_t *r, long long seen, const reel_config_t *c) {
    sqlite3_stmt *st = NULL;
    reel_buf_t now, cli, later;
    reel_buf_init(&now, 0);
    reel_buf_init(&cli, 0);
    reel_buf_init(&later, 0);
    if (sqlite3_prepare_v2(reel_session_db(r->o->session),
                           "SELECT DISTINCT key FROM config_history WHERE id > ? ORDER BY key", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(st, 1, seen) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0);
            if (k == NULL || strncmp(k, "redact_", 7) == 0)
                continue;
            reel_layer layer = REEL_LAYER_DEFAULT;
            const char *val = reel_option_find(k) ? reel_config_get(c, k, &layer) : NULL;
            int secret = strcmp(k, "proxyauth") == 0 || strcmp(k, "upstream_proxyauth") == 0 ||
                         strcmp(k, "on_segment_closed") == 0;
            if (val != NULL && layer == REEL_LAYER_CLI)
                reel_buf_printf(&cli, "%s%s", cli.len ? ", " : "", k);
            else if (val != NULL && reel_option_is_hot(k) && secret)
                reel_buf_printf(&now, "%s%s %s", now.len ? ", " : "", k, val[0] ? "set" : "off");
            else if (val != NULL && reel_option_is_hot(k))
                reel_buf_printf(&now, "%s%s=%s", now.len ? ", " : "", k, val);
            else
                reel_buf_printf(&later, "%s%s", later.len ? ", " : "", k);
        }
    }
    sqlite3_finalize(st);
    if (now.len)
        fprintf(stderr, "reel: applied config change %lld: %.*s\n", r->config_seen, (int)now.len,
                (const char *)now.data);
    if (cli.len)
        fprintf(stderr,
                "reel: config change %lld to %.*s: the command line's value (--set, --listen) "
                "stays in force until the proxy stops\n",
                r->config_seen, (int)cli.len, (const char *)cli.data);
    if (later.len)
        fprintf(stderr, "reel: config change %lld to %.*s applies at the next start\n",
                r->config_seen, (int)later.len, (const char *)later.data);
    if (!now.len && !cli.len && !later.len)
        fprintf(stderr, "reel: config change %lld: nothing the proxy reads\n", r->config_seen);
    reel_buf_free(&now);
    reel_buf_free(&cli);
    reel_buf_free(&later);
}

static void on_config_timer(uv_timer_t *t) {
    daemon_t *r = t->data;
    save_ignored(r);
    long long v = config_version(r);
    if (v < 0 || v == r->config_seen)
        return;
    long long seen = r->config_seen;
    r->config_seen = v;
    reel_err_t berr;
    reel_err_clear(&berr);
    reel_config_t *c = build_config(r, 0, &berr);
    if (c == NULL) {
        fprintf(stderr, "reel: overlay change not applied: %s\n", reel_err_str(&berr));
        return;
    }
    reel_recorder_opts_t o;
    recorder_opts(c, &o);
    reel_err_t err;
    reel_err_clear(&err);
    reel_proxy_settings_t ps;
    void *lists = reel_daemon_proxy_settings(c, &ps);
    reel_rc prc = reel_proxy_configure(r->proxy, &ps, &err);
    reel_daemon_proxy_settings_free(lists);
    if (prc != REEL_OK) {
        fprintf(stderr, "reel: overlay change not applied: %s\n", reel_err_str(&err));
    } else {
        reel_recorder_set_limits(r->rec, o.body_limit, o.capture);
        reel_recorder_set_retention(r->rec, &o.retention, o.on_segment_closed);
        reel_web_upstream_t wu = web_upstream(&ps);
        reel_web_live_upstream(r->web, &wu);
        log_changes(r, seen, c);
    }
    reel_config_free(c);
}

static void on_shutdown_done(void *ctx) {
    daemon_t *r = ctx;
    uv_stop(&r->loop);
}

static void on_signal(uv_signal_t *s, int signum) {
    daemon_t *r = s->data;
    if (r->stopping) {
        /* Second signal: leave now. Every frame on disk is whole or a torn
         * tail that recovery moves aside, so the session stays readable. */
        fprintf(stderr, "\nreel: second signal, exiting now\n");
        /* the pidfile goes too (a uv_signal callback, not a handler): a
         * supervisor must not later signal whoever reuses the pid */
        if (r->pidfile_written)
            reel_service_pidfile_remove(r->o->pidfile);
        _exit(130);
    }
    r->stopping = 1;
    reel_service_notify("STOPPING=1");
    fprintf(stderr, "\nreel: %s: finishing in-flight flows (signal again to exit now)\n",
            signum == SIGINT   ? "interrupted"
            : signum == SIGHUP ? "hung up"
                               : "terminated");
    uv_timer_stop(&r->config_timer);
    reel_web_stop(r->web);
    reel_proxy_shutdown(r->proxy, 3000, on_shutdown_done, r);
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int is_loopback(const char *host) {
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

reel_rc reel_daemon_run(const reel_daemon_opts_t *o, int *served, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    daemon_t r = {.o = o};
    reel_config_t *cfg = NULL;
    reel_ca_t *ca = NULL;
    int loop_ready = 0;
    reel_proxy_stats_t px = {0}; /* the proxy's figures for the summary at the end */
    *served = 0;
    cfg = build_config(&r, 0, err);
    if (cfg == NULL) {
        rc = err->code ? err->code : REEL_ERROR;
        goto out;
    }
    const char *host = reel_config_get(cfg, "listen_host", NULL);
    if (!is_loopback(host)) {
        if (!o->explicit_listen) {
            rc = reel_err_set(err, REEL_INVALID,
                              "listen_host is %s (from config), beyond loopback; "
                              "pass --listen %s:%lld to confirm",
                              host, host, (long long)reel_config_get_int(cfg, "listen_port"));
            goto out;
        }
        fprintf(stderr,
                "reel: WARNING: listening on %s, beyond loopback: anyone who can reach "
                "this address can use the proxy%s\n",
                host, reel_config_get(cfg, "proxyauth", NULL)[0] ? "" : " (no proxyauth set)");
    }
    reel_err_t e;
    reel_err_clear(&e);
    if (reel_ca_open(o->data_dir, &ca, &e) != REEL_OK) {
        rc = reel_err_set(err, e.code, "CA: %s", reel_err_str(&e));
        goto out;
    }
    for (const char *w = reel_ca_warning(ca); w && *w;) {
        size_t n = strcspn(w, "\n");
        fprintf(stderr, "reel: WARNING: %.*s\n", (int)n, w);
        w += n + (w[n] == '\n');
    }
    reel_recorder_opts_t ro;
    recorder_opts(cfg, &ro);
    /* client connection numbers go on from the session's earlier runs, so
     * that `~conn N` names one connection (read before the recorder owns
     * the index) */
    uint64_t first_client_id = reel_index_max_client_conn(reel_session_db(o->session));
    if ((rc = reel_recorder_open(o->session, &ro, &r.rec, err)) != REEL_OK)
        goto out;
    uv_loop_init(&r.loop);
    loop_ready = 1;
    reel_proxy_settings_t ps;
    void *lists = reel_daemon_proxy_settings(cfg, &ps);
    ps.first_client_id = first_client_id;
    rc = reel_proxy_start(&r.loop, &ps, r.rec, ca, &r.proxy, err);
    reel_daemon_proxy_settings_free(lists);
    if (rc != REEL_OK)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    uv_signal_t *sigs[] = {&r.sigint, &r.sigterm, &r.sighup};
    const int signums[] = {SIGINT, SIGTERM, SIGHUP};
    /* SIGHUP ignored (nohup, a supervisor): it stays so, and the proxy
     * outlives the terminal that started it */
    struct sigaction hup;
    size_t nsigs = sigaction(SIGHUP, NULL, &hup) == 0 && hup.sa_handler == SIG_IGN ? 2 : 3;
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(&r.loop, sigs[i]);
        sigs[i]->data = &r;
        if (i < nsigs)
            uv_signal_start(sigs[i], on_signal, signums[i]);
        uv_unref((uv_handle_t *)sigs[i]);
    }
    r.config_seen = config_version(&r);
    char *ign = reel_index_meta_get(reel_session_db(o->session), "ignored_connections");
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
    reel_index_meta_set(reel_session_db(o->session), "listen", listen, NULL);
    free(listen);
    /* and its --set assignments, which beat the session overlay while it
     * runs: `reel config` shows them at layer cli */
    json_t *sets = json_array();
    for (size_t i = 0; i < o->nsets; i++)
        json_array_append_new(sets, json_string(o->sets[i]));
    char *js = json_dumps(sets, JSON_COMPACT);
    json_decref(sets);
    reel_index_meta_set(reel_session_db(o->session), "cli_sets", js ? js : "[]", NULL);
    free(js);
    const char *rev = ps.reverse_to && ps.reverse_to[0] ? ps.reverse_to : NULL;
    if (rev) /* a reverse proxy: clients talk to it as to that origin */
        fprintf(stderr,
                "reel: recording into session '%s' (%s)\n"
                "reel: reverse proxy for %s listening on http://%s%s%s:%d  (curl "
                "http://%s%s%s:%d/...)\n"
                "reel: TLS clients use the same address, with a certificate from the CA in %s "
                "('reel ca' shows how to trust it)\n",
                o->name, reel_session_path(o->session), rev, v6 ? "[" : "", lh, v6 ? "]" : "",
                reel_proxy_port(r.proxy), v6 ? "[" : "", lh, v6 ? "]" : "",
                reel_proxy_port(r.proxy), reel_ca_cert_path(ca));
    else
        fprintf(stderr,
                "reel: recording into session '%s' (%s)\n"
                "reel: proxy listening on http://%s%s%s:%d  (curl -x http://%s%s%s:%d ...)\n"
                "reel: SOCKS5 clients use the same address (curl -x socks5h://%s%s%s:%d ...)\n"
                "reel: HTTPS is intercepted with the CA in %s ('reel ca' shows how to trust it)\n",
                o->name, reel_session_path(o->session), v6 ? "[" : "", lh, v6 ? "]" : "",
                reel_proxy_port(r.proxy), v6 ? "[" : "", lh, v6 ? "]" : "",
                reel_proxy_port(r.proxy), v6 ? "[" : "", lh, v6 ? "]" : "",
                reel_proxy_port(r.proxy), reel_ca_cert_path(ca));
    if (ps.workers > 1)
        fprintf(stderr, "reel: %u workers (event loops, one per thread) share that address\n",
                ps.workers);
    if (ps.transparent)
        fprintf(stderr,
                "reel: transparent: connections the OS redirects to port %d (iptables or "
                "nftables REDIRECT, DNAT) go to the address their client connected to\n",
                reel_proxy_port(r.proxy));
    if (o->web) {
        reel_web_opts_t wo = {.home = o->home,
                              .host = o->web_host,
                              .port = o->web_port,
                              .explicit_listen = o->web_explicit,
                              .live = o->name,
                              .token = getenv("REEL_WEB_TOKEN"),
                              /* Replay in the UI records through this recorder,
                               * with the proxy's upstream settings */
                              .live_recorder = r.rec,
                              .live_trusted_ca = reel_config_get(cfg, "upstream_trusted_ca", NULL),
                              .live_upstream = web_upstream(&ps)};
        if (reel_web_start(&r.loop, &wo, &r.web, err) != REEL_OK) {
            rc = err->code;
            r.stopping = 1;
            reel_proxy_shutdown(r.proxy, 0, on_shutdown_done, &r);
            uv_run(&r.loop, UV_RUN_DEFAULT);
            goto out;
        }
        fprintf(stderr, "reel: web UI on %s\n", reel_web_url(r.web));
    }
    fflush(stderr);
    if (o->pidfile) {
        if ((rc = reel_service_pidfile_write(o->pidfile, err)) != REEL_OK) {
            /* a supervisor waiting for the file would never see it: stop
             * (nothing was accepted yet) */
            r.stopping = 1;
            reel_proxy_shutdown(r.proxy, 0, on_shutdown_done, &r);
            uv_run(&r.loop, UV_RUN_DEFAULT);
            goto out;
        }
        r.pidfile_written = 1;
    }
    char *ready =
        reel_asprintf("READY=1\nSTATUS=recording into session '%s', listening on "
                      "%s%s%s:%d",
                      o->name, v6 ? "[" : "", lh, v6 ? "]" : "", reel_proxy_port(r.proxy));
    reel_service_notify(ready);
    free(ready);
    *served = 1;
    uv_run(&r.loop, UV_RUN_DEFAULT);
out:
    if (loop_ready) {
        if (r.proxy && *served)
            save_ignored(&r);
        if (r.proxy)
            reel_proxy_stats(r.proxy, &px); /* for the summary below */
        reel_proxy_free(r.proxy);
        reel_web_stop(r.web); /* before close_walk: its handles free memory when closed */
        uv_walk(&r.loop, close_walk, NULL);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        reel_web_free(r.web);
    }
    if (r.rec) {
        reel_recorder_stats_t st;
        reel_recorder_stats(r.rec, &st);
        reel_err_t e2;
        reel_err_clear(&e2);
        if (reel_recorder_close(r.rec, &e2) != REEL_OK) {
            fprintf(stderr, "reel: %s\n", reel_err_str(&e2));
            if (rc == REEL_OK)
                rc = e2.code;
        }
        unsigned long long kept = st.flows - st.lost_flows;
        /* a run that never started (the proxy could not, e.g. an unreadable
         * upstream_trusted_ca) has nothing to sum up: its error is what
         * matters, and a summary printed first would bury it */
        if (*served && st.lost_flows)
            fprintf(stderr,
                    "reel: session '%s': %llu flow%s recorded in this run, %llu more not recorded "
                    "(capture had stopped before their records reached the disk)\n",
                    o->name, kept, kept == 1 ? "" : "s", (unsigned long long)st.lost_flows);
        else if (*served)
            fprintf(stderr, "reel: session '%s': %llu flow%s recorded in this run\n", o->name,
                    (unsigned long long)st.flows, st.flows == 1 ? "" : "s");
    }
    if (px.unsolicited)
        fprintf(stderr,
                "reel: %llu origin connection%s sent bytes while no response was due: not passed "
                "on, connection%s closed\n",
                (unsigned long long)px.unsolicited, px.unsolicited == 1 ? "" : "s",
                px.unsolicited == 1 ? "" : "s");
    if (px.h2_connections)
        fprintf(stderr,
                "reel: HTTP/2: %llu connection%s (clients and origins); the most one held at "
                "once: %llu KiB\n",
                (unsigned long long)px.h2_connections, px.h2_connections == 1 ? "" : "s",
                (unsigned long long)(px.h2_peak_bytes + 1023) / 1024);
    reel_ca_free(ca);
    reel_config_free(cfg);
    return rc;
}
