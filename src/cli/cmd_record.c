/* `reel record` and `reel resume`: arguments, the session, and the exit
 * code; the daemon itself (configuration layers, proxy, recorder, hot
 * reload, signals) is src/daemon/daemon.c. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "daemon/daemon.h"
#include "session/config.h"
#include "daemon/service.h"
#include "web/web.h"

static const char record_usage[] =
    "usage: reel record [--home DIR] [--listen HOST:PORT] [--set KEY=VALUE]...\n"
    "                   [--pidfile FILE] [--web[=HOST:PORT]] [SESSION]\n"
    "\n"
    "Starts the intercepting proxy (127.0.0.1:8080 by default) and records every\n"
    "flow into a new session, named by date and time when SESSION is omitted.\n"
    "Point a client at it as an HTTP proxy (curl -x http://127.0.0.1:8080 ...)\n"
    "or a SOCKS5 one on the same address (curl -x socks5h://127.0.0.1:8080 ...);\n"
    "for HTTPS, make the client trust reel's CA ('reel ca' shows how).\n"
    "\n"
    "  --listen HOST:PORT  address to listen on (also :PORT or PORT); listening\n"
    "                      beyond loopback must be asked for and prints a warning\n"
    "  --set KEY=VALUE     any config option, for this run only (not saved in the\n"
    "                      session); 'reel config --help' lists the options\n"
    "  --pidfile FILE      once the proxy listens, write its pid to FILE (removed\n"
    "                      at exit); under systemd (Type=notify) reel also sends\n"
    "                      READY=1 then, and STOPPING=1 when it stops\n"
    "  --web[=HOST:PORT]   also serve the web UI (127.0.0.1:8081 by default) on the\n"
    "                      same loop, showing flows live; prints its URL ('reel web\n"
    "                      --help')\n"
    "\n"
    "Ctrl-C, SIGTERM or SIGHUP (unless ignored, as nohup does) stops accepting,\n"
    "lets in-flight flows finish for a few seconds, flushes the session and\n"
    "exits; a second one exits at once (the session stays readable). 'reel\n"
    "resume SESSION' continues recording later.\n";

static const char resume_usage[] =
    "usage: reel resume [--home DIR] [--listen HOST:PORT] [--set KEY=VALUE]...\n"
    "                   [--pidfile FILE] [--web[=HOST:PORT]] SESSION\n"
    "\n"
    "Starts the proxy again on an existing session, with the config overlay it\n"
    "had ('reel config SESSION list'), appending new flows after the old ones.\n"
    "Options as for 'reel record'.\n";

/* Arguments of one run. */
typedef struct {
    char **sets; /* --set and --listen as KEY=VALUE */
    const char **from; /* per set: the --listen argument it came from, or NULL (--set) */
    size_t nsets;
} run_t;

static void add_set(run_t *r, char *assignment, const char *listen) {
    r->sets = reel_realloc(r->sets, (r->nsets + 1) * sizeof *r->sets);
    r->from = reel_realloc(r->from, (r->nsets + 1) * sizeof *r->from);
    r->sets[r->nsets] = assignment;
    r->from[r->nsets++] = listen;
}

/* Every --set and --listen checked before a session is made: an unknown
 * option or a value it does not take is a usage error, as replay's --set
 * is, said as the option the user typed. Returns -1 when all are valid,
 * else the exit code. */
static int check_sets(reel_cli_t *cli, const run_t *r) {
    reel_config_t *cfg = reel_config_new();
    int rc = -1;
    for (size_t i = 0; i < r->nsets && rc < 0; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_config_set_cli(cfg, r->sets[i], &err) == REEL_OK)
            continue;
        if (r->from[i])
            rc = reel_cli_usage(cli, "--listen %s: %s", r->from[i], reel_err_str(&err));
        else
            rc = reel_cli_usage(cli, "--set %s: %s", r->sets[i], reel_err_str(&err));
    }
    reel_config_free(cfg);
    return rc;
}

static char *default_name(void) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[64];
    strftime(buf, sizeof buf, "%Y-%m-%d_%H-%M-%S", &tm);
    return reel_strdup(buf);
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
    if (*port == '\0' || strspn(port, "0123456789") != strlen(port)) {
        free(host);
        return -1; /* said as --listen's, not as the --set it becomes */
    }
    if (host) {
        add_set(r, reel_asprintf("listen_host=%s", host), arg);
        free(host);
    }
    add_set(r, reel_asprintf("listen_port=%s", port), arg);
    return 0;
}

static int run(reel_cli_t *cli, int argc, char **argv, int resume) {
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"set", required_argument, NULL, 's'},
                                         {"pidfile", required_argument, NULL, 'p'},
                                         {"web", optional_argument, NULL, 'w'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *usage = resume ? resume_usage : record_usage;
    run_t r = {0};
    reel_session_t *session = NULL;
    const char *pidfile = NULL;
    char *name = NULL;
    int exit_code = REEL_EXIT_OK;
    int c, explicit_listen = 0;
    int web = 0, web_port = REEL_WEB_DEFAULT_PORT, web_explicit = 0;
    char *web_host = NULL;
    int created = 0, served = 0; /* this run made the session; the proxy ran */
    while ((c = getopt_long(argc, argv, "hl:s:", opts, NULL)) != -1) {
        if (c == 'l') {
            if (parse_listen(&r, optarg) != 0) {
                exit_code = reel_cli_usage(cli, "--listen takes HOST:PORT, not '%s'", optarg);
                goto out;
            }
            explicit_listen = 1;
            continue;
        }
        if (c == 'p') {
            pidfile = optarg;
            continue;
        }
        if (c == 'w') {
            web = 1;
            if (optarg) {
                free(web_host);
                if (reel_cli_web_listen(optarg, &web_host, &web_port) != 0) {
                    exit_code = reel_cli_usage(cli, "--web takes HOST:PORT, not '%s'", optarg);
                    goto out;
                }
                web_explicit = 1;
            }
            continue;
        }
        if (c == 's') {
            if (strchr(optarg, '=') == NULL) {
                exit_code = reel_cli_usage(cli, "--set takes KEY=VALUE, not '%s'", optarg);
                goto out;
            }
            add_set(&r, reel_strdup(optarg), NULL);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0) {
            exit_code = rc;
            goto out;
        }
    }
    int nargs = argc - optind;
    if (nargs > 1 || (resume && nargs != 1)) {
        exit_code =
            reel_cli_usage(cli, resume ? "expected one SESSION" : "expected at most one SESSION");
        goto out;
    }
    if ((exit_code = check_sets(cli, &r)) >= 0)
        goto out;
    exit_code = REEL_EXIT_OK;
    name = nargs ? reel_strdup(argv[optind]) : default_name();
    session = reel_cli_open(
        cli, name, resume ? REEL_OPEN_RECORD : REEL_OPEN_RECORD | REEL_OPEN_CREATE | REEL_OPEN_NEW);
    created = session != NULL && !resume;
    if (session == NULL) {
        if (!resume) {
            reel_err_t e;
            reel_err_clear(&e);
            reel_session_t *probe = NULL;
            if (reel_session_open(reel_cli_home(cli), name, 0, &probe, &e) == REEL_OK)
                fprintf(stderr, "reel record: to append to it, use 'reel resume %s'\n", name);
            reel_session_close(probe);
        }
        exit_code = REEL_EXIT_ERROR;
        goto out;
    }
    char *data_dir = reel_cli_data_dir();
    reel_daemon_opts_t o = {.session = session,
                            .name = name,
                            .sets = r.sets,
                            .nsets = r.nsets,
                            .explicit_listen = explicit_listen,
                            .pidfile = pidfile,
                            .data_dir = data_dir,
                            .web = web,
                            .web_host = web_host,
                            .web_port = web_port,
                            .web_explicit = web_explicit,
                            .home = reel_cli_home(cli)};
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_daemon_run(&o, &served, &err) != REEL_OK)
        exit_code = err.msg[0] ? reel_cli_fail(cli, "%s", reel_err_str(&err)) : REEL_EXIT_ERROR;
    free(data_dir);
out:
    reel_session_close(session);
    if (served && pidfile) /* last: the session is flushed and unlocked */
        reel_service_pidfile_remove(pidfile);
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
    free(r.from);
    free(name);
    free(web_host);
    return exit_code;
}

int reel_cmd_record(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 0);
}

int reel_cmd_resume(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 1);
}
