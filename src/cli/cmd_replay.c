/* reel replay: sends recorded requests to their servers again (client
 * replay) and records what comes back as new flows linked to the ones they
 * replay (docs/replay.md).
 *
 * Each request is sent and recorded by core/replay_send.c (blocking, one
 * connection per request: see replay_send.h); this file selects and loads
 * the flows, runs the sends and prints the results in flow order. With
 * --concurrency N, N threads send at once, each recording its own flows
 * (the recorder takes producers on several threads). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "core/replay_send.h"
#include "core/tls.h"
#include "session/flowread.h"
#include "session/config.h"
#include "session/recorder.h"
#include "session/replay.h"

static const char usage[] =
    "usage: reel replay [--home DIR] [--json] SESSION ID|FILTER [--into SESSION2]\n"
    "                   [--concurrency N] [--set KEY=VALUE]...\n"
    "\n"
    "Sends the recorded requests of SESSION again to their servers (client replay)\n"
    "and records each answer as a new flow in SESSION, or in SESSION2 with --into\n"
    "(created if missing; removed again if every flow was skipped). Each new\n"
    "flow names the flow it replays (its start record's replay_of;\n"
    "flows.replay_of in the index). ID is a flow id or a range N-M (digits and\n"
    "'-' only: 0, -1 or 7-3 are usage errors); anything else is a filter\n"
    "expression (docs/filters.md).\n"
    "\n"
    "A request goes out as recorded (method, target, headers, stored body) over\n"
    "HTTP/1.1 on a new connection, without its hop-by-hop headers and with\n"
    "Content-Length set to the body sent; as reel sent it on when its rules\n"
    "changed it (map_remote's URL, modify_headers' fields, modify_body's body,\n"
    "docs/replay.md). The answer is recorded as it came\n"
    "(bodies still content-encoded). A connection refused, a TLS failure or a\n"
    "timeout is recorded as the new flow's error. Flows that cannot be sent\n"
    "again (tunnels, WebSocket, a body not stored whole, still open) are skipped.\n"
    "\n"
    "Upstream settings come from SESSION's configuration (user file, then its\n"
    "overlay, then --set): upstream_cert_verify, upstream_trusted_ca,\n"
    "upstream_timeout, and upstream_proxy with upstream_proxyauth and\n"
    "upstream_no_proxy (an HTTPS request to a host upstream_no_proxy does not\n"
    "name then goes through a CONNECT tunnel the proxy opens, a plain-HTTP\n"
    "one to the proxy in absolute form, as the proxy's own requests do);\n"
    "dns_overrides (a name reached directly at its entry's address);\n"
    "body_limit bounds what is stored of each new body.\n"
    "The session recorded into must not be recording: replay refuses while a\n"
    "proxy records into it (use --into another session).\n"
    "\n"
    "  --into SESSION2    record the new flows there (default: SESSION)\n"
    "  --concurrency N    requests in flight at once, 1..64 (default 1: in order)\n"
    "  --set KEY=VALUE    a configuration option for this run (repeatable)\n"
    "  --home DIR         sessions root (default $REEL_HOME, else the XDG data dir)\n"
    "  --json             print {session, into, replays: [{of, id, method, url,\n"
    "                     status, error}], skipped: [{of, why}], ok, failed}\n"
    "\n"
    "Exit status: 0 when every replay got a response, 1 when one failed (its flow\n"
    "holds the error) or nothing could be replayed, 2 for a usage error.\n";

#define CONCURRENCY_MAX 64

/* ---- one replay ---- */

typedef struct {
    reel_replay_req_t req;
    char *url;
    /* results */
    int done, skipped, failed;
    uint64_t new_id;
    uint32_t status;
    char *reason;
    char *error; /* owned: why the replay failed, or why it was skipped */
} job_t;

typedef struct {
    reel_cli_t *cli;
    reel_replay_send_opts_t send; /* recorder, TLS context and upstream settings */
    pthread_mutex_t mu;           /* the job list, results and printing */
    pthread_cond_t cond;
    job_t **jobs;
    size_t njobs, next_take, loaded, next_print;
    int loading_done;
    json_t *jreplays, *jskipped;
    size_t ok, failed, skipped;
} run_t;

static void locked(run_t *run) {
    pthread_mutex_lock(&run->mu);
}
static void unlocked(run_t *run) {
    pthread_mutex_unlock(&run->mu);
}

/* Sends one request and records its answer (core/replay_send.c); the
 * job's results are read once it is marked done, under mu. */
static void run_job(run_t *run, job_t *job) {
    reel_replay_result_t res;
    reel_replay_send(&job->req, &run->send, &res);
    job->new_id = res.id;
    job->status = res.status;
    free(job->reason);
    job->reason = res.reason;
    job->failed = res.error != NULL;
    free(job->error);
    job->error = res.error;
}

/* ---- output, in job order ---- */

/* Prints the results that are complete and next in order. Under mu. */
static void print_ready(run_t *run) {
    while (run->next_print < run->loaded && run->jobs[run->next_print]->done) {
        job_t *j = run->jobs[run->next_print++];
        if (j->skipped) {
            run->skipped++;
            if (run->cli->json) {
                json_array_append_new(run->jskipped,
                                      json_pack("{s:I, s:o}", "of", (json_int_t)j->req.id, "why",
                                                reel_json_text(j->error)));
            } else {
                printf("#%llu skipped: ", (unsigned long long)j->req.id);
                reel_cli_put(j->error);
                printf("\n");
            }
        } else {
            if (j->failed)
                run->failed++;
            else
                run->ok++;
            if (run->cli->json) {
                json_t *o = json_pack("{s:I, s:I, s:o, s:o}", "of", (json_int_t)j->req.id, "id",
                                      (json_int_t)j->new_id, "method",
                                      reel_json_text(j->req.method), "url", reel_json_text(j->url));
                json_object_set_new(o, "status", j->status ? json_integer(j->status) : json_null());
                json_object_set_new(o, "error", j->error ? reel_json_text(j->error) : json_null());
                json_array_append_new(run->jreplays, o);
            } else {
                printf("#%llu -> #%llu ", (unsigned long long)j->req.id,
                       (unsigned long long)j->new_id);
                reel_cli_put(j->req.method);
                printf(" ");
                reel_cli_put(j->url);
                if (j->status) {
                    printf(" %u ", j->status);
                    reel_cli_put(j->reason);
                }
                if (j->error) {
                    printf(" error: ");
                    reel_cli_put(j->error);
                }
                printf("\n");
            }
        }
        fflush(stdout);
        reel_replay_req_free(&j->req);
    }
}

static void *worker(void *arg) {
    run_t *run = arg;
    locked(run);
    for (;;) {
        while (run->next_take == run->loaded && !run->loading_done)
            pthread_cond_wait(&run->cond, &run->mu);
        if (run->next_take == run->loaded)
            break;
        job_t *j = run->jobs[run->next_take++];
        pthread_cond_broadcast(&run->cond); /* room for the loader */
        if (!j->skipped) {
            unlocked(run);
            run_job(run, j);
            locked(run);
        }
        reel_buf_free(&j->req.body); /* sent; results may wait for earlier jobs */
        j->done = 1;
        print_ready(run);
    }
    unlocked(run);
    return NULL;
}

/* The URL of a request, as the index writes it. */
static char *req_url(const reel_replay_req_t *r) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    uint32_t port = reel_replay_port(r);
    int def = port == (strcmp(r->scheme, "https") == 0 ? 443u : 80u);
    int v6 = r->host && strchr(r->host, ':') != NULL;
    reel_buf_printf(&b, "%s://%s%s%s", r->scheme ? r->scheme : "?", v6 ? "[" : "",
                    r->host ? r->host : "", v6 ? "]" : "");
    if (!def)
        reel_buf_printf(&b, ":%u", port);
    /* OPTIONS *: the URL of the server itself, as reel flows shows it */
    if (!(r->target && strcmp(r->target, "*") == 0))
        reel_buf_puts(&b, r->target && r->target[0] ? r->target : "/");
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Opens a session to record into; a clear refusal when a proxy records it.
 * With `made` (create when missing), *made says this call created it. */
static reel_session_t *open_target(reel_cli_t *cli, const char *name, int *made) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    reel_rc rc = reel_session_open(reel_cli_home(cli), name, REEL_OPEN_RECORD, &s, &err);
    if (rc == REEL_NOTFOUND && made) {
        reel_err_clear(&err);
        rc = reel_session_open(reel_cli_home(cli), name,
                               REEL_OPEN_RECORD | REEL_OPEN_CREATE | REEL_OPEN_NEW, &s, &err);
        *made = rc == REEL_OK;
    }
    if (rc == REEL_LOCKED) {
        reel_cli_fail(cli,
                      "%s; replay records into a session no proxy is recording: stop that "
                      "proxy, or replay into another session with --into",
                      reel_err_str(&err));
        return NULL;
    }
    if (rc != REEL_OK) {
        reel_cli_fail(cli, "%s", reel_err_str(&err));
        return NULL;
    }
    const char *note = reel_session_recovery_note(s);
    if (note[0])
        fprintf(stderr, "reel: session '%s': %s\n", name, note);
    return s;
}

/* Whether `what` is meant as a flow id or a range (made of digits and
 * '-' only: "12", "3-7", and the slips "0", "-1", "0-3", "7-3"), and then
 * whether it is a valid one. Returns 1 when what is a valid id or range,
 * 0 when it is not meant as one (a filter), -1 after a usage error. A
 * bare "-1" as a URL regex would match next to nothing anyone means; a
 * regex of digits and dashes can be written '~u 1-2'. */
static int check_ids(reel_cli_t *cli, const char *what) {
    if (what[0] == '\0' || what[strspn(what, "0123456789-")] != '\0' ||
        strpbrk(what, "0123456789") == NULL)
        return 0;
    const char *dash = strchr(what, '-');
    uint64_t lo, hi;
    if (dash == NULL) {
        if (reel_cli_flow_id(cli, what) == 0)
            return -1;
        return 1;
    }
    char *first = reel_strndup(what, (size_t)(dash - what));
    int ok = reel_cli_parse_flow_id(first, &lo) == 0 && reel_cli_parse_flow_id(dash + 1, &hi) == 0;
    free(first);
    if (!ok) {
        reel_cli_usage(cli,
                       "invalid flow id or range '%s': a flow id is a positive integer, a "
                       "range N-M two of them",
                       what);
        return -1;
    }
    if (lo > hi) {
        reel_cli_usage(cli, "invalid range '%s': its first id is greater than its last", what);
        return -1;
    }
    return 1;
}

int reel_cmd_replay(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_INTO = 0x2001, OPT_CONC, OPT_SET };
    static const struct option opts[] = {{"into", required_argument, NULL, OPT_INTO},
                                         {"concurrency", required_argument, NULL, OPT_CONC},
                                         {"set", required_argument, NULL, OPT_SET},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *into = NULL;
    long conc = 1;
    const char **sets = NULL;
    size_t nsets = 0;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == OPT_INTO) {
            into = optarg;
            continue;
        }
        if (c == OPT_SET) {
            sets = reel_realloc(sets, (nsets + 1) * sizeof *sets);
            sets[nsets++] = optarg;
            continue;
        }
        if (c == OPT_CONC) {
            char *end = NULL;
            errno = 0;
            conc = strtol(optarg, &end, 10);
            if (optarg[0] == '\0' || *end != '\0' || errno || conc < 1 || conc > CONCURRENCY_MAX) {
                free(sets);
                return reel_cli_usage(cli, "--concurrency takes a number from 1 to %d, not '%s'",
                                      CONCURRENCY_MAX, optarg);
            }
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0) {
            free(sets);
            return rc;
        }
    }
    if (argc - optind < 2) {
        free(sets);
        return reel_cli_usage(cli, argc - optind == 0 ? "missing SESSION" : "missing ID|FILTER");
    }
    if (argc - optind > 2) {
        free(sets);
        return reel_cli_usage(cli, "unexpected argument '%s' (quote a filter with spaces)",
                              argv[optind + 2]);
    }
    const char *sname = argv[optind], *what = argv[optind + 1];
    int same = into == NULL || strcmp(into, sname) == 0;
    if (check_ids(cli, what) < 0) {
        free(sets);
        return REEL_EXIT_USAGE;
    }

    int exit_code = REEL_EXIT_OK;
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *src = NULL, *dst = NULL;
    reel_config_t *cfg = NULL;
    reel_tls_ctx_t *tls = NULL;
    reel_dns_map_t *dns = NULL;
    reel_recorder_t *rec = NULL;
    uint64_t *ids = NULL;
    size_t nids = 0;
    run_t run = {.cli = cli};
    pthread_mutex_init(&run.mu, NULL);
    pthread_cond_init(&run.cond, NULL);
    pthread_t threads[CONCURRENCY_MAX];
    size_t nthreads = 0;
    int made = 0; /* this run created the --into session */

    if (reel_session_name_check(sname, &err) != REEL_OK ||
        (!same && reel_session_name_check(into, &err) != REEL_OK)) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    src = same ? open_target(cli, sname, NULL) : reel_cli_open(cli, sname, REEL_OPEN_READ);
    if (src == NULL) {
        exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    /* The upstream settings: user file < SESSION's overlay < --set. */
    cfg = reel_config_new();
    char *warnings = NULL;
    if (reel_config_load_user(cfg, NULL, &err) != REEL_OK ||
        reel_config_load_overlay(cfg, reel_session_db(src), &warnings, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    if (warnings)
        fprintf(stderr, "reel: %s\n", warnings);
    free(warnings);
    for (size_t i = 0; i < nsets; i++)
        if (reel_config_set_cli(cfg, sets[i], &err) != REEL_OK) {
            exit_code = reel_cli_usage(cli, "--set %s: %s", sets[i], reel_err_str(&err));
            goto out;
        }
    if (reel_replay_select(src, what, &ids, &nids, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    if (nids == 0) {
        char *shown = reel_cli_escaped(what, strlen(what), REEL_CLI_ESC); /* as typed */
        exit_code = reel_cli_fail(cli, "no flow of session '%s' matches '%s'", sname, shown);
        free(shown);
        goto out;
    }
    size_t ndns = 0;
    char **dns_list = reel_config_get_list(cfg, "dns_overrides", &ndns);
    reel_rc drc = reel_dns_map_new((const char *const *)dns_list, ndns, &dns, &err);
    free(dns_list);
    if (drc != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    const char *ca = reel_config_get(cfg, "upstream_trusted_ca", NULL);
    if (reel_tls_ctx_new_client(ca && ca[0] ? ca : NULL, false, &tls, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "upstream_trusted_ca: %s", reel_err_str(&err));
        goto out;
    }
    if (!same && (dst = open_target(cli, into, &made)) == NULL) {
        exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    reel_recorder_opts_t ro;
    reel_recorder_opts_default(&ro);
    ro.capture = REEL_CAPTURE_LOSSLESS;
    ro.body_limit = (uint64_t)reel_config_get_int(cfg, "body_limit");
    if (reel_recorder_open(same ? src : dst, &ro, &rec, &err) != REEL_OK) {
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    run.send = (reel_replay_send_opts_t){
        .rec = rec,
        .tls = tls,
        .verify = reel_config_get_bool(cfg, "upstream_cert_verify"),
        .timeout_ms = (int)reel_config_get_int(cfg, "upstream_timeout") * 1000,
        .replay_session = same ? NULL : sname,
        .upstream_proxy = reel_config_get(cfg, "upstream_proxy", NULL),
        .upstream_proxyauth = reel_config_get(cfg, "upstream_proxyauth", NULL),
        .upstream_no_proxy = reel_config_get(cfg, "upstream_no_proxy", NULL),
        .upstream_insecure_hosts = reel_config_get(cfg, "upstream_insecure_hosts", NULL),
        .upstream_client_certs = reel_config_get(cfg, "upstream_client_certs", NULL),
        .dns_overrides = dns};
    run.jobs = reel_calloc(nids, sizeof *run.jobs);
    run.njobs = nids;
    run.jreplays = json_array();
    run.jskipped = json_array();
    for (size_t i = 0; i < (size_t)conc && i < nids; i++) {
        if (pthread_create(&threads[nthreads], NULL, worker, &run) != 0)
            break;
        nthreads++;
    }
    /* Load requests a few ahead of the workers; a flow that cannot be sent
     * is settled here. */
    for (size_t i = 0; i < nids; i++) {
        job_t *j = reel_calloc(1, sizeof *j);
        reel_err_t lerr;
        reel_err_clear(&lerr);
        if (reel_replay_load(src, ids[i], &j->req, &lerr) != REEL_OK) {
            j->skipped = 1;
            j->error = reel_strdup(reel_err_str(&lerr));
        } else if (j->req.why_not) {
            j->skipped = 1;
            j->error = reel_strdup(j->req.why_not);
        }
        j->req.id = ids[i];
        j->url = req_url(&j->req);
        locked(&run);
        while (nthreads && run.loaded - run.next_take > (size_t)conc)
            pthread_cond_wait(&run.cond, &run.mu);
        run.jobs[run.loaded++] = j;
        if (nthreads == 0) { /* no thread started: send it from here */
            run.next_take++;
            if (!j->skipped) {
                unlocked(&run);
                run_job(&run, j);
                locked(&run);
            }
            reel_buf_free(&j->req.body);
            j->done = 1;
            print_ready(&run);
        }
        pthread_cond_broadcast(&run.cond);
        unlocked(&run);
    }
    locked(&run);
    run.loading_done = 1;
    pthread_cond_broadcast(&run.cond);
    unlocked(&run);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    locked(&run);
    print_ready(&run);
    unlocked(&run);
    reel_rc closed = reel_recorder_close(rec, &err);
    rec = NULL;
    if (closed != REEL_OK)
        exit_code = reel_cli_fail(cli, "recording the new flows: %s", reel_err_str(&err));
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:O, s:O, s:I, s:I}", "session", sname, "into",
                              same ? sname : into, "replays", run.jreplays, "skipped", run.jskipped,
                              "ok", (json_int_t)run.ok, "failed", (json_int_t)run.failed);
        int jr = reel_cli_json_out(o);
        if (exit_code == REEL_EXIT_OK)
            exit_code = jr;
    } else {
        fprintf(stderr, "replayed %zu of %zu %s into %s: %zu answered, %zu failed",
                run.ok + run.failed, nids, nids == 1 ? "flow" : "flows", same ? sname : into,
                run.ok, run.failed);
        if (run.skipped)
            fprintf(stderr, ", %zu skipped", run.skipped);
        fprintf(stderr, "\n");
    }
    if (exit_code == REEL_EXIT_OK && (run.failed || run.ok == 0))
        exit_code = REEL_EXIT_ERROR;
out:
    reel_recorder_close(rec, NULL);
    for (size_t i = 0; i < run.loaded; i++) {
        reel_replay_req_free(&run.jobs[i]->req);
        free(run.jobs[i]->url);
        free(run.jobs[i]->reason);
        free(run.jobs[i]->error);
        free(run.jobs[i]);
    }
    free(run.jobs);
    json_decref(run.jreplays);
    json_decref(run.jskipped);
    pthread_mutex_destroy(&run.mu);
    pthread_cond_destroy(&run.cond);
    reel_tls_ctx_free(tls);
    reel_dns_map_free(dns);
    reel_config_free(cfg);
    free(ids);
    free(sets);
    reel_session_close(dst);
    if (made && run.ok + run.failed == 0) {
        /* Every flow was skipped: a new session with nothing in it would
         * only be in the way of the next --into with that name. */
        reel_err_clear(&err);
        if (reel_session_remove(reel_cli_home(cli), into, &err) == REEL_OK)
            fprintf(stderr,
                    "reel replay: removed session '%s' again (nothing was replayed into it)\n",
                    into);
        else
            fprintf(stderr,
                    "reel replay: session '%s' was created but nothing was replayed into "
                    "it; %s\n",
                    into, reel_err_str(&err));
    }
    reel_session_close(src);
    return exit_code;
}
