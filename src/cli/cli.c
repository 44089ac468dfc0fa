#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "cli/version.h"
#include "session/index.h"
#include "session/query.h"

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
    {"import", reel_cmd_import, "import a HAR or mitmproxy flow file into a session"},
    {"search", reel_cmd_search, "full-text search of a session's text bodies"},
    {"replay", reel_cmd_replay, "send recorded requests again, recording the new flows"},
    {"diff", reel_cmd_diff, "differences between two flows"},
    {"export", reel_cmd_export, "export flows as HAR, curl commands, raw HTTP or NDJSON"},
    {"verify", reel_cmd_verify, "check every spool frame and index row"},
    {"repair", reel_cmd_repair, "rebuild a session's index from its spool"},
    {"compact", reel_cmd_compact, "rewrite a session's spool without its dropped flows"},
    {"rm", reel_cmd_rm, "delete a session"},
    {"web", reel_cmd_web, "serve a web UI over the sessions"},
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

/* Checks a --home value: "" would silently mean the default, and a file
 * would read as a home without sessions. A directory that does not exist
 * yet is fine (record makes it). Returns -1 when usable, else the exit
 * code after printing why ("reel: " or "reel CMD: "). */
static int check_home(const char *cmd, const char *dir) {
    const char *sep = cmd ? " " : "";
    if (dir[0] == '\0') {
        fprintf(stderr, "reel%s%s: --home needs a directory, not an empty string\n", sep,
                cmd ? cmd : "");
        fprintf(stderr, "Try 'reel%s%s --help'.\n", sep, cmd ? cmd : "");
        return REEL_EXIT_USAGE;
    }
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "reel%s%s: --home %s: not a directory\n", sep, cmd ? cmd : "", dir);
        return REEL_EXIT_ERROR;
    }
    return -1;
}

int reel_cli_main(int argc, char **argv) {
    reel_cli_t cli = {.prog = "reel"};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_usage(stdout);
            return REEL_EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            reel_cli_version(stdout);
            return REEL_EXIT_OK;
        } else if (strcmp(argv[i], "--home") == 0 && i + 1 < argc) {
            cli.home_opt = argv[++i];
        } else if (strncmp(argv[i], "--home=", 7) == 0) {
            cli.home_opt = argv[i] + 7;
        } else if (strcmp(argv[i], "--home") == 0) {
            fprintf(stderr, "reel: --home needs a directory: reel --home DIR <command> ...\n");
            return REEL_EXIT_USAGE;
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
    if (cli.home_opt) {
        int rc = check_home(NULL, cli.home_opt);
        if (rc >= 0)
            return rc;
    } else if (getenv("REEL_HOME") && getenv("REEL_HOME")[0]) {
        /* the same for REEL_HOME: a file read as a home without sessions */
        struct stat st;
        const char *h = getenv("REEL_HOME");
        if (stat(h, &st) == 0 && !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "reel: REEL_HOME %s: not a directory\n", h);
            return REEL_EXIT_ERROR;
        }
    }
    const char *name = argv[i];
    for (const reel_cmd_t *c = commands; c->name; c++) {
        if (strcmp(c->name, name) == 0) {
            cli.cmd = c->name;
            reel_cli_getopt_reset();
            /* getopt prefixes its own messages ("unrecognized option")
             * with argv[0]: make it "reel show", as reel_cli_fail writes. */
            char *name0 = argv[i], *prog = reel_asprintf("reel %s", c->name);
            argv[i] = prog;
            int rc = c->fn(&cli, argc - i, argv + i);
            /* Output that did not reach stdout (a full disk): exit 0 with
             * an empty file misled scripts (commands that said so clear
             * the error). A closed stdout is /dev/null (main.c). */
            errno = 0;
            int flushed = fflush(stdout) == 0;
            if (!flushed || ferror(stdout)) {
                fprintf(stderr, "reel %s: writing standard output: %s\n", c->name,
                        !flushed && errno ? strerror(errno) : "a write failed");
                rc = REEL_EXIT_ERROR;
            }
            argv[i] = name0;
            free(prog);
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

/* Negative numbers hidden from getopt while it parses one argv: each one
 * is swapped for a marked copy (not starting with '-', so a positional to
 * getopt, which permutes it with the others) and swapped back when parsing
 * ends. */
static char **neg_orig, **neg_mark;
static size_t neg_n;

static void neg_restore(char **argv, int argc) {
    for (int i = 0; argv && i < argc; i++)
        for (size_t k = 0; k < neg_n; k++)
            if (argv[i] == neg_mark[k])
                argv[i] = neg_orig[k];
    for (size_t k = 0; k < neg_n; k++)
        free(neg_mark[k]);
    free(neg_orig);
    free(neg_mark);
    neg_orig = neg_mark = NULL;
    neg_n = 0;
}

/* Whether option argument `prev` takes the next argument as its value. */
static int takes_value(const char *prev, const char *optstring, const struct option *lo) {
    if (prev[0] != '-' || prev[1] == '\0')
        return 0;
    if (prev[1] == '-') {
        const char *name = prev + 2;
        if (name[0] == '\0' || strchr(name, '=') != NULL)
            return 0;
        size_t len = strlen(name);
        int matches = 0, required = 0;
        for (const struct option *o = lo; o && o->name; o++) {
            if (strncmp(o->name, name, len) != 0)
                continue;
            if (o->name[len] == '\0')
                return o->has_arg == required_argument;
            matches++; /* an abbreviation, as getopt_long accepts */
            required = o->has_arg == required_argument;
        }
        return matches == 1 && required;
    }
    for (const char *c = prev + 1; *c; c++) {
        const char *d = *c == ':' ? NULL : strchr(optstring, *c);
        if (d == NULL)
            return 0;
        if (d[1] == ':') /* the rest of the cluster, or the next argument */
            return c[1] == '\0' && d[2] != ':';
    }
    return 0;
}

int reel_cli_getopt(int argc, char **argv, const char *optstring, const struct option *longopts) {
    if (optind == 0) { /* first call on this argv (reel_cli_getopt_reset) */
        neg_restore(NULL, 0);
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
            if (argv[i][0] != '-' || !isdigit((unsigned char)argv[i][1]) ||
                takes_value(argv[i - 1], optstring, longopts))
                continue;
            neg_orig = reel_realloc(neg_orig, (neg_n + 1) * sizeof *neg_orig);
            neg_mark = reel_realloc(neg_mark, (neg_n + 1) * sizeof *neg_mark);
            neg_orig[neg_n] = argv[i];
            neg_mark[neg_n] = reel_asprintf("#%s", argv[i]);
            argv[i] = neg_mark[neg_n++];
        }
    }
    int c = getopt_long(argc, argv, optstring, longopts, NULL);
    if (c == -1 || c == '?')
        neg_restore(argv, argc);
    return c;
}

int reel_cli_common_opt(reel_cli_t *cli, int c, const char *usage) {
    switch (c) {
    case REEL_CLI_OPT_HOME:
        cli->home_opt = optarg;
        return check_home(cli->cmd, optarg);
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
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
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

int reel_cli_parse_flow_id(const char *arg, uint64_t *id) {
    int64_t v;
    if (reel_query_parse_flow_id(arg, &v) != 0)
        return -1;
    *id = (uint64_t)v;
    return 0;
}

unsigned long long reel_cli_flow_id(reel_cli_t *cli, const char *arg) {
    uint64_t v;
    if (reel_cli_parse_flow_id(arg, &v) != 0) {
        reel_cli_usage(cli, "invalid flow id '%s': a flow id is a positive integer", arg);
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

int reel_cli_query_fail(reel_cli_t *cli, reel_session_t *s, const reel_err_t *err) {
    const char *msg = reel_err_str(err);
    if (err->code != REEL_CORRUPT)
        return reel_cli_fail(cli, "%s", msg);
    if (strncmp(msg, "session.db: ", 12) == 0)
        msg += 12;
    return reel_cli_db_error(cli, reel_session_name(s), SQLITE_CORRUPT, msg);
}

int reel_cli_flow_exists(reel_cli_t *cli, reel_session_t *s, unsigned long long id) {
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_flow_exists(s, (int64_t)id, &err) == REEL_OK)
        return 1;
    reel_cli_query_fail(cli, s, &err);
    return 0;
}

void reel_cli_no_match(reel_cli_t *cli, const char *session, const char *filter) {
    /* the filter as typed, escaped as a filter parse error quotes it:
     * always, stderr being a terminal even when stdout is a pipe */
    char *shown = reel_cli_escaped(filter, strlen(filter), REEL_CLI_ESC);
    fprintf(stderr, "%s %s: no flow of session '%s' matches '%s'", cli->prog, cli->cmd, session,
            shown);
    free(shown);
    /* "4" is a URL regex like any bare word; a user who typed it most
     * likely meant flow 4, as `reel flow SESSION 4` takes it */
    const char *end = filter + strspn(filter, "0123456789");
    if (end > filter && end[0] == '-' && end[1] >= '0' && end[1] <= '9')
        end += 1 + strspn(end + 1, "0123456789"); /* a range, "10-20" */
    if (end > filter && *end == '\0')
        fprintf(stderr, " (a bare word is matched against URLs; flow ids are '~id %s')", filter);
    fputc('\n', stderr);
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

/* ---- captured and user-given data, written for people ---- */

int reel_cli_escaping(void) {
    static int tty = -1;
    if (tty < 0)
        tty = isatty(STDOUT_FILENO) ? REEL_CLI_ESC : 0;
    return tty;
}

enum { TOK_PLAIN, TOK_ESCAPE, TOK_MORE };

/* The token at p[0..n), n >= 1: returns its length and sets *kind to
 * TOK_PLAIN (written as is), TOK_ESCAPE (each byte as \xNN) or TOK_MORE
 * (p[0..n) is the start of a token that needs more bytes to judge). */
static size_t esc_token(const unsigned char *p, size_t n, int flags, int *kind) {
    unsigned char c = p[0];
    int lines = (flags & REEL_CLI_ESC_LINES) != 0;
    *kind = TOK_PLAIN;
    if (c == '\r' && lines) {
        if (n < 2) {
            *kind = TOK_MORE;
            return n;
        }
        if (p[1] == '\n')
            return 2;
        *kind = TOK_ESCAPE;
        return 1;
    }
    if (c < 0x20 || c == 0x7f) {
        if (!(lines && (c == '\n' || c == '\t')))
            *kind = TOK_ESCAPE;
        return 1;
    }
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        *kind = TOK_ESCAPE;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n) {
            *kind = TOK_MORE;
            return n;
        }
        if ((p[i] & 0xc0) != 0x80) {
            *kind = TOK_ESCAPE;
            return 1;
        }
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        *kind = TOK_ESCAPE; /* overlong or not a character: the lead byte */
        return 1;
    }
    if (cp >= 0x80 && cp <= 0x9f)
        *kind = TOK_ESCAPE; /* a C1 control (U+009B is CSI) */
    return len;
}

static void esc_put(FILE *out, const unsigned char *p, size_t n, int kind) {
    if (kind == TOK_PLAIN) {
        fwrite(p, 1, n, out);
        return;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(out, "\\x%02x", p[i]);
}

void reel_cli_esc_write(reel_cli_esc_t *e, FILE *out, const void *data, size_t n) {
    const unsigned char *p = data;
    if (!(e->flags & REEL_CLI_ESC)) {
        fwrite(p, 1, n, out);
        return;
    }
    int kind;
    if (e->nheld > 0 && n > 0) {
        /* The held tail plus at most 4 new bytes decide every held token. */
        unsigned char tmp[8];
        size_t h = e->nheld, m = n < 4 ? n : 4, pos = 0;
        memcpy(tmp, e->held, h);
        memcpy(tmp + h, p, m);
        e->nheld = 0;
        while (pos < h) {
            size_t k = esc_token(tmp + pos, h + m - pos, e->flags, &kind);
            if (kind == TOK_MORE) { /* m == n: every new byte is held too */
                memcpy(e->held, tmp + pos, k);
                e->nheld = k;
                return;
            }
            esc_put(out, tmp + pos, k, kind);
            pos += k;
        }
        p += pos - h;
        n -= pos - h;
    }
    size_t run = 0, pos = 0;
    while (pos < n) {
        size_t k = esc_token(p + pos, n - pos, e->flags, &kind);
        if (kind == TOK_PLAIN) {
            pos += k;
            continue;
        }
        fwrite(p + run, 1, pos - run, out);
        if (kind == TOK_MORE) {
            memcpy(e->held, p + pos, k);
            e->nheld = k;
            return;
        }
        esc_put(out, p + pos, k, kind);
        pos += k;
        run = pos;
    }
    fwrite(p + run, 1, pos - run, out);
}

void reel_cli_esc_end(reel_cli_esc_t *e, FILE *out) {
    size_t pos = 0;
    while (pos < e->nheld) {
        int kind;
        size_t k = esc_token(e->held + pos, e->nheld - pos, e->flags, &kind);
        if (kind == TOK_MORE) { /* cut short: its first byte cannot be shown */
            k = 1;
            kind = TOK_ESCAPE;
        }
        esc_put(out, e->held + pos, k, kind);
        pos += k;
    }
    e->nheld = 0;
}

static void put_flags(const void *p, size_t n, int flags) {
    reel_cli_esc_t e = {.flags = flags};
    reel_cli_esc_write(&e, stdout, p, n);
    reel_cli_esc_end(&e, stdout);
}

void reel_cli_putn(const void *p, size_t n) {
    put_flags(p, n, reel_cli_escaping());
}

void reel_cli_put(const char *s) {
    if (s)
        put_flags(s, strlen(s), reel_cli_escaping());
}

void reel_cli_put_lines(const char *s) {
    if (s)
        put_flags(s, strlen(s), reel_cli_escaping() | REEL_CLI_ESC_LINES);
}

char *reel_cli_escaped(const void *p, size_t n, int flags) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        abort(); /* out of memory, as reel_malloc would */
    reel_cli_esc_t e = {.flags = flags};
    reel_cli_esc_write(&e, f, p, n);
    reel_cli_esc_end(&e, f);
    if (fclose(f) != 0 || buf == NULL)
        abort();
    return buf;
}

size_t reel_cli_columns(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

char *reel_cli_cut(const char *s, size_t cols) {
    if (cols < 1)
        cols = 1;
    if (reel_cli_columns(s) <= cols)
        return reel_strdup(s);
    /* Keep cols - 1 characters, then the ellipsis. */
    size_t i = 0, kept = 0;
    while (s[i]) {
        if (((unsigned char)s[i] & 0xc0) != 0x80 && kept++ == cols - 1)
            break;
        i++;
    }
    return reel_asprintf("%.*s\xe2\x80\xa6", (int)i, s);
}

int reel_cli_term_width(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    if (c && *c) {
        char *end = NULL;
        errno = 0;
        long v = strtol(c, &end, 10);
        if (*end == '\0' && errno == 0 && v > 0 && v < 100000)
            return (int)v;
    }
    return 80;
}
