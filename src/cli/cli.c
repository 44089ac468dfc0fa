#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "session/index.h"

#ifndef REEL_VERSION
#define REEL_VERSION "0.0.0"
#endif

static const reel_cmd_t commands[] = {
    {"record", reel_cmd_record, "start the proxy, recording into a new session"},
    {"resume", reel_cmd_resume, "start the proxy again on an existing session"},
    {"ca", reel_cmd_ca, "show reel's CA certificate and how to trust it"},
    {"new", reel_cmd_new, "create an empty session"},
    {"ls", reel_cmd_ls, "list sessions"},
    {"show", reel_cmd_show, "summary of one session"},
    {"flows", reel_cmd_flows, "list the flows of a session, optionally filtered"},
    {"flow", reel_cmd_flow, "show one flow: heads and bodies"},
    {"annotate", reel_cmd_annotate, "add, list or delete notes on a flow"},
    {"tag", reel_cmd_tag, "add tags to a flow"},
    {"untag", reel_cmd_untag, "remove tags from a flow"},
    {"mark", reel_cmd_mark, "mark flows"},
    {"unmark", reel_cmd_unmark, "unmark flows"},
    {"config", reel_cmd_config, "show or change a session's config overlay"},
    {"import", reel_cmd_import, "import a HAR file into a session"},
    {"verify", reel_cmd_verify, "check every spool frame and index row"},
    {"repair", reel_cmd_repair, "rebuild a session's index from its spool"},
    {"rm", reel_cmd_rm, "delete a session"},
    {NULL, NULL, NULL},
};

static void main_usage(FILE *out) {
    fprintf(out,
            "usage: reel [--home DIR] <command> [options] [args]\n"
            "\n"
            "reel records HTTP(S) flows into sessions and lets you query them.\n"
            "Sessions live in $REEL_HOME, else $XDG_DATA_HOME/reel/sessions.\n"
            "\n"
            "commands:\n");
    for (const reel_cmd_t *c = commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\n'reel <command> --help' describes a command.\n");
}

int reel_cli_main(int argc, char **argv) {
    reel_cli_t cli = {.prog = "reel"};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_usage(stdout);
            return REEL_EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("reel %s\n", REEL_VERSION);
            return REEL_EXIT_OK;
        } else if (strcmp(argv[i], "--home") == 0 && i + 1 < argc) {
            cli.home_opt = argv[++i];
        } else if (strncmp(argv[i], "--home=", 7) == 0) {
            cli.home_opt = argv[i] + 7;
        } else {
            fprintf(stderr, "reel: unknown option '%s'\n", argv[i]);
            main_usage(stderr);
            return REEL_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        main_usage(stderr);
        return REEL_EXIT_USAGE;
    }
    const char *name = argv[i];
    for (const reel_cmd_t *c = commands; c->name; c++) {
        if (strcmp(c->name, name) == 0) {
            cli.cmd = c->name;
            reel_cli_getopt_reset();
            int rc = c->fn(&cli, argc - i, argv + i);
            free(cli.home);
            return rc;
        }
    }
    fprintf(stderr, "reel: unknown command '%s'\n", name);
    main_usage(stderr);
    return REEL_EXIT_USAGE;
}

void reel_cli_getopt_reset(void) {
    optind = 0; /* glibc: full re-initialization */
    opterr = 1;
}

int reel_cli_common_opt(reel_cli_t *cli, int c, const char *usage) {
    switch (c) {
    case REEL_CLI_OPT_HOME:
        cli->home_opt = optarg;
        return -1;
    case REEL_CLI_OPT_JSON:
        cli->json = 1;
        return -1;
    case 'h':
        fputs(usage, stdout);
        return REEL_EXIT_OK;
    case '?':
        fprintf(stderr, "Try 'reel %s --help'.\n", cli->cmd);
        return REEL_EXIT_USAGE;
    default:
        fprintf(stderr, "Try 'reel %s --help'.\n", cli->cmd);
        return REEL_EXIT_USAGE;
    }
}

int reel_cli_simple_args(reel_cli_t *cli, int argc, char **argv, const char *usage, int min,
                         int max, const char *expect) {
    static const struct option opts[] = {REEL_CLI_COMMON_OPTS, {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    int n = argc - optind;
    if (n < min || n > max) {
        if (n > max)
            return reel_cli_usage(cli, "unexpected argument '%s' (%s)", argv[optind + max],
                                  expect);
        return reel_cli_usage(cli, "%s", expect);
    }
    return -1;
}

char *reel_cli_data_dir(void) {
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && xdg[0] == '/')
        return reel_asprintf("%s/reel", xdg);
    const char *home = getenv("HOME");
    return reel_asprintf("%s/.local/share/reel", home && home[0] ? home : ".");
}

const char *reel_cli_home(reel_cli_t *cli) {
    if (cli->home == NULL)
        cli->home = reel_session_home(cli->home_opt);
    return cli->home;
}

int reel_cli_fail(reel_cli_t *cli, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "reel %s: ", cli->cmd ? cli->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return REEL_EXIT_ERROR;
}

int reel_cli_usage(reel_cli_t *cli, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "reel %s: ", cli->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'reel %s --help'.\n", cli->cmd);
    return REEL_EXIT_USAGE;
}

reel_session_t *reel_cli_open(reel_cli_t *cli, const char *name, int flags) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(reel_cli_home(cli), name, flags, &s, &err) != REEL_OK) {
        reel_cli_fail(cli, "%s", reel_err_str(&err));
        return NULL;
    }
    const char *note = reel_session_recovery_note(s);
    if (note[0])
        fprintf(stderr, "reel: session '%s': %s\n", name, note);
    return s;
}

unsigned long long reel_cli_flow_id(reel_cli_t *cli, const char *arg) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (arg[0] == '\0' || arg[0] == '-' || *end != '\0' || errno != 0 || v == 0 ||
        v > (unsigned long long)INT64_MAX) {
        reel_cli_fail(cli, "invalid flow id '%s': expected a positive number", arg);
        return 0;
    }
    return v;
}

int reel_cli_db_error(reel_cli_t *cli, const char *session, int sqlite_code, const char *msg) {
    int code = sqlite_code & 0xff;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        return reel_cli_fail(cli,
                             "session.db is damaged (%s); 'reel repair %s' rebuilds the index "
                             "from the spool (annotations, tags and marks kept in it may be lost)",
                             msg, session);
    return reel_cli_fail(cli, "session.db: %s", msg);
}

int reel_cli_db_fail(reel_cli_t *cli, reel_session_t *s) {
    sqlite3 *db = reel_session_db(s);
    return reel_cli_db_error(cli, reel_session_name(s), sqlite3_errcode(db), sqlite3_errmsg(db));
}

int reel_cli_flow_exists(reel_cli_t *cli, reel_session_t *s, unsigned long long id) {
    sqlite3_stmt *st = NULL;
    int step = SQLITE_ERROR;
    if (sqlite3_prepare_v2(reel_session_db(s), "SELECT 1 FROM flows WHERE id = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        step = sqlite3_step(st);
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        reel_cli_db_fail(cli, s);
    else if (step == SQLITE_DONE)
        reel_cli_fail(cli, "no flow %llu in session '%s'", id, reel_session_name(s));
    sqlite3_finalize(st);
    return step == SQLITE_ROW;
}

int reel_cli_json_out(json_t *j) {
    if (j == NULL)
        return REEL_EXIT_ERROR;
    int rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
    json_decref(j);
    return rc == 0 ? REEL_EXIT_OK : REEL_EXIT_ERROR;
}

void reel_cli_time(long long us, char out[static 32]) {
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03lld", (us % 1000000) / 1000);
}

void reel_cli_size(unsigned long long n, char out[static 16]) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 16, "%llu B", n);
    else
        snprintf(out, 16, "%.1f %s", v, units[u]);
}
