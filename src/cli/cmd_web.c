/* `reel web`: the web UI over the sessions under --home, until SIGINT or
 * SIGTERM (src/web/web.h; docs/web.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "web/web.h"

static const char usage[] =
    "usage: reel web [--home DIR] [--listen HOST:PORT] [--read-only] [SESSION...]\n"
    "\n"
    "Serves a web UI over the sessions (every one under the home directory, or\n"
    "only the SESSIONs named) on 127.0.0.1:8081 and prints its URL, which\n"
    "carries a random access token: open it in a browser. Nothing is opened by\n"
    "itself. Ctrl-C or SIGTERM stops it.\n"
    "\n"
    "  --listen HOST:PORT  address to listen on (also :PORT or PORT; port 0 picks\n"
    "                      one); beyond loopback must be asked for this way and\n"
    "                      prints a warning\n"
    "  --read-only         refuse every change (notes, tags, marks, config, rename,\n"
    "                      delete)\n"
    "\n"
    "'reel record --web' serves the same UI beside a recording proxy.\n";

typedef struct {
    reel_web_t *w;
    uv_signal_t sigint, sigterm;
} web_run_t;

static void on_signal(uv_signal_t *s, int signum) {
    web_run_t *r = s->data;
    fprintf(stderr, "\nreel web: %s, stopping\n", signum == SIGINT ? "interrupted" : "terminated");
    reel_web_stop(r->w);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
}

/* HOST:PORT, [V6]:PORT, :PORT or PORT into *host (owned or NULL) and
 * *port; -1 if malformed. */
int reel_cli_web_listen(const char *arg, char **host, int *port) {
    const char *p = arg;
    *host = NULL;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        *host = reel_strndup(arg + 1, (size_t)(close - arg - 1));
        p = close + 2;
    } else {
        const char *colon = strrchr(arg, ':');
        if (colon) {
            if (colon != arg)
                *host = reel_strndup(arg, (size_t)(colon - arg));
            p = colon + 1;
        }
    }
    char *end;
    long n = strtol(p, &end, 10);
    if (*p == '\0' || *end || n < 0 || n > 65535) {
        free(*host);
        *host = NULL;
        return -1;
    }
    *port = (int)n;
    return 0;
}

int reel_cmd_web(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"read-only", no_argument, NULL, 'r'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    char *host = NULL;
    int port = REEL_WEB_DEFAULT_PORT, explicit_listen = 0, read_only = 0, c;
    int exit_code = REEL_EXIT_OK;
    while ((c = reel_cli_getopt(argc, argv, "hl:r", opts)) != -1) {
        if (c == 'l') {
            free(host);
            if (reel_cli_web_listen(optarg, &host, &port) != 0)
                return reel_cli_usage(cli, "--listen takes HOST:PORT, not '%s'", optarg);
            explicit_listen = 1;
            continue;
        }
        if (c == 'r') {
            read_only = 1;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0) {
            free(host);
            return rc;
        }
    }
    for (int i = optind; i < argc; i++) {
        reel_session_t *s = reel_cli_open(cli, argv[i], REEL_OPEN_READ);
        if (s == NULL) {
            free(host);
            return REEL_EXIT_ERROR;
        }
        reel_session_close(s);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    web_run_t r = {0};
    reel_web_opts_t o = {.home = reel_cli_home(cli),
                         .host = host,
                         .port = port,
                         .explicit_listen = explicit_listen,
                         .read_only = read_only,
                         .sessions = argv + optind,
                         .nsessions = (size_t)(argc - optind),
                         .token = getenv("REEL_WEB_TOKEN")};
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_web_start(&loop, &o, &r.w, &err) != REEL_OK) {
        /* "web: ..." names the part for reel record --web; here it is the
         * command's own name */
        const char *why = reel_err_str(&err);
        if (strncmp(why, "web: ", 5) == 0)
            why += 5;
        exit_code = reel_cli_fail(cli, "%s", why);
    } else {
        signal(SIGPIPE, SIG_IGN);
        uv_signal_init(&loop, &r.sigint);
        uv_signal_init(&loop, &r.sigterm);
        r.sigint.data = r.sigterm.data = &r;
        uv_signal_start(&r.sigint, on_signal, SIGINT);
        uv_signal_start(&r.sigterm, on_signal, SIGTERM);
        printf("reel web: serving %s%s\nreel web: open %s\n",
               o.nsessions ? "the named sessions" : "every session under ",
               o.nsessions ? "" : o.home, reel_web_url(r.w));
        if (read_only)
            printf("reel web: read-only\n");
        fflush(stdout);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    reel_web_free(r.w);
    uv_loop_close(&loop);
    free(host);
    return exit_code;
}
