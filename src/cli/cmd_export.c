/* reel export SESSION [FILTER]: flows out as HAR, curl, raw HTTP or NDJSON
 * (src/session/export.c does the work, flow by flow). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/progress.h"
#include "cli/cli.h"
#include "session/config.h"
#include "session/export.h"
#include "session/filter.h"
#include "session/redact.h"

#ifndef REEL_VERSION
#define REEL_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: reel export [--home DIR] [--format har|curl|raw|ndjson] [-o FILE] [--redact]\n"
    "                   [--bodies DIR] SESSION [FILTER]\n"
    "\n"
    "Writes the flows of SESSION that match FILTER (every flow if none), oldest\n"
    "first, to FILE or stdout. The export is streamed flow by flow: memory stays\n"
    "bounded whatever the session's size.\n"
    "\n"
    "  -f, --format F  har (default): HAR 1.2 for browsers' devtools and HAR tools\n"
    "                  (bodies decoded, base64 when binary; WebSocket messages in\n"
    "                  _webSocketMessages; notes and tags in comment and _reel);\n"
    "                  'reel import' reads it back.\n"
    "                  curl: one runnable curl command per flow.\n"
    "                  raw: requests and responses as on the wire.\n"
    "                  ndjson: one JSON object per line and flow (for DuckDB, jq...)\n"
    "  -o, --output FILE  write to FILE (default: stdout); not inside a session\n"
    "                  directory, whose files it could replace\n"
    "  --redact        replace secrets with REDACTED: Authorization and\n"
    "                  Proxy-Authorization credentials, Cookie and Set-Cookie values,\n"
    "                  bearer tokens and JWTs, headers, query parameters, form fields\n"
    "                  and JSON keys named like password, token, secret, key, auth,\n"
    "                  session; more with the config options redact_headers and\n"
    "                  redact_keys (see docs/export.md)\n"
    "  --bodies DIR    curl and ndjson: write bodies as files DIR/ID.request and\n"
    "                  DIR/ID.response instead of inline (curl commands name them\n"
    "                  by absolute path)\n"
    "\n"
    "A progress line (flows, rate, time left) goes to stderr when it is a terminal.\n"
    "Flows that retention drops while the export runs (it listed them before)\n"
    "are left out, and their number said on stderr; so are damaged flows ('reel\n"
    "repair' marked them) that lost all their records, or but in ndjson their\n"
    "request head: the export goes on without them (exit 0), naming the first.\n"
    "Flows: reel flows --help. Formats in detail: docs/export.md.\n"
    "Example: reel export mysession -o bug.har --redact '~d api.example.com'\n";

static void progress(void *ctx, uint64_t done, uint64_t total) {
    reel_progress_set(ctx, done, total);
}

/* Where -o FILE is written: FILE, or the path the last of a chain of
 * symbolic links names (made if it does not exist yet, as a shell's >
 * makes it, rather than a link replaced); malloc'd. */
static char *link_target(const char *output) {
    char *cur = reel_strdup(output);
    char buf[4096];
    for (int hops = 0; hops < 40; hops++) { /* (40: the kernel's own bound) */
        ssize_t n = readlink(cur, buf, sizeof buf - 1);
        if (n <= 0 || (size_t)n >= sizeof buf - 1)
            break; /* not a link (or one too long to follow): the file */
        buf[n] = '\0';
        const char *slash = strrchr(cur, '/');
        char *next = buf[0] == '/' || slash == NULL
                         ? reel_strdup(buf)
                         : reel_asprintf("%.*s/%s", (int)(slash - cur), cur, buf);
        free(cur);
        cur = next;
    }
    return cur;
}

/* The session directory (one with a session.db and a spool/) that holds
 * path, or its directory when path is not there yet; NULL for none.
 * Malloc'd. An export written there could take the name of a segment,
 * the index or the journal, and replace it. */
static char *session_around(const char *path) {
    char *real = realpath(path, NULL);
    if (real == NULL) {
        const char *slash = strrchr(path, '/');
        char *dir = slash == NULL   ? reel_strdup(".")
                    : slash == path ? reel_strdup("/")
                                    : reel_asprintf("%.*s", (int)(slash - path), path);
        real = realpath(dir, NULL);
        free(dir);
        if (real == NULL)
            return NULL; /* no such directory: fopen will say so */
    }
    for (;;) {
        char *db = reel_asprintf("%s/session.db", real), *spool = reel_asprintf("%s/spool", real);
        struct stat a, b;
        int session =
            stat(db, &a) == 0 && S_ISREG(a.st_mode) && stat(spool, &b) == 0 && S_ISDIR(b.st_mode);
        free(db);
        free(spool);
        if (session)
            return real;
        char *slash = strrchr(real, '/');
        if (slash == NULL || slash == real) {
            free(real);
            return NULL;
        }
        *slash = '\0';
    }
}

/* fopencookie's write: the bytes through the terminal's escaping. */
static ssize_t esc_cookie_write(void *cookie, const char *buf, size_t n) {
    reel_cli_esc_write(cookie, stdout, buf, n);
    return ferror(stdout) ? -1 : (ssize_t)n;
}

int reel_cmd_export(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_REDACT = 0x2001, OPT_BODIES };
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"redact", no_argument, NULL, OPT_REDACT},
                                         {"bodies", required_argument, NULL, OPT_BODIES},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *format = "har", *output = NULL, *bodies = NULL;
    int redact = 0, c;
    while ((c = reel_cli_getopt(argc, argv, "hf:o:", opts)) != -1) {
        switch (c) {
        case 'f':
            format = optarg;
            continue;
        case 'o':
            output = optarg;
            continue;
        case OPT_REDACT:
            redact = 1;
            continue;
        case OPT_BODIES:
            bodies = optarg;
            continue;
        default: {
            int rc = reel_cli_common_opt(cli, c, usage);
            if (rc >= 0)
                return rc;
        }
        }
    }
    int fmt = reel_export_format_parse(format);
    if (fmt < 0)
        return reel_cli_usage(cli, "unknown format '%s' (har, curl, raw or ndjson)", format);
    if (bodies && fmt != REEL_EXPORT_CURL && fmt != REEL_EXPORT_NDJSON)
        return reel_cli_usage(cli, "--bodies goes with --format curl or ndjson");
    int nargs = argc - optind;
    if (nargs < 1)
        return reel_cli_usage(cli, "missing SESSION");
    if (nargs > 2)
        return reel_cli_usage(cli,
                              "unexpected argument '%s' (expected at most one FILTER: "
                              "quote it)",
                              argv[optind + 2]);
    const char *name = argv[optind];
    const char *filter = nargs == 2 ? argv[optind + 1] : NULL;
    reel_err_t err;
    reel_err_clear(&err);
    /* a bad filter is an error (exit 1), as in reel flows, tag, mark,
     * annotate and replay, not a usage error; refused before the session
     * opens, as reel flows, tag, mark and annotate do */
    if (filter) {
        reel_filter_t *f = NULL;
        if (reel_filter_compile(filter, &f, &err) != REEL_OK)
            return reel_cli_fail(cli, "%s", reel_err_str(&err));
        reel_filter_free(f);
    }

    const char *dests[2][2] = {{"-o", output && strcmp(output, "-") != 0 ? output : NULL},
                               {"--bodies", bodies}};
    for (int k = 0; k < 2; k++) {
        /* where it ends up: a symbolic link is followed, even one whose
         * file does not exist yet (-o makes it) */
        char *to = dests[k][1] ? link_target(dests[k][1]) : NULL;
        char *in = to ? session_around(to) : NULL;
        free(to);
        if (in != NULL) {
            int frc = reel_cli_fail(cli,
                                    "%s %s is inside the session directory %s, whose files it "
                                    "could replace; write the export outside it",
                                    dests[k][0], dests[k][1], in);
            free(in);
            return frc;
        }
    }

    reel_session_t *s = reel_cli_open(cli, name, REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    int rc = REEL_EXIT_OK;
    reel_redact_t *r = NULL;
    FILE *out = stdout;
    char *tmp = NULL, *target = NULL; /* written, then renamed to */
    if (redact) {
        char *warning = NULL;
        r = reel_export_redact_rules(s, &warning);
        if (warning)
            fprintf(stderr, "reel export: %s\n", warning);
        free(warning);
    }
    struct stat sb;
    if (output != NULL && strcmp(output, "-") != 0 && stat(output, &sb) == 0 &&
        !S_ISREG(sb.st_mode)) {
        /* a device or a FIFO (-o /dev/null, a pipe) is written to as it
         * is: the rename below would replace it with a file (run as root,
         * /dev/null itself) */
        out = fopen(output, "wb");
        if (out == NULL) {
            rc = reel_cli_fail(cli, "%s: %s", output, strerror(errno));
            out = stdout;
            goto out;
        }
    } else if (output != NULL && strcmp(output, "-") != 0) {
        /* write beside it and rename at the end: no half export under its
         * name; beside the file a symbolic link names, which stays a link */
        target = link_target(output);
        tmp = reel_asprintf("%s.part", target);
        out = fopen(tmp, "wb");
        if (out == NULL) {
            /* named as the user gave it: the .part beside it is reel's */
            rc = reel_cli_fail(cli,
                               "cannot write %s: %s (the export is written to %s, then "
                               "renamed)",
                               output, strerror(errno), tmp);
            out = stdout;
            goto out;
        }
    }
    /* On a terminal, raw and curl (a server's bytes as they came) are
     * escaped as every command's output is there: an escape sequence in a
     * header would work the terminal (HAR and NDJSON escape in JSON). */
    reel_cli_esc_t esc = {.flags = REEL_CLI_ESC | REEL_CLI_ESC_LINES};
    FILE *tty = NULL;
    if (out == stdout && reel_cli_escaping() &&
        (fmt == REEL_EXPORT_RAW || fmt == REEL_EXPORT_CURL)) {
        cookie_io_functions_t io = {.write = esc_cookie_write};
        if ((tty = fopencookie(&esc, "w", io)) != NULL)
            out = tty;
    }
    reel_progress_t pr;
    reel_progress_init(&pr, "reel export", "flows", 0);
    reel_export_opts_t eo = {.format = (reel_export_format)fmt,
                             .filter = filter,
                             .redact = r,
                             .body_dir = bodies,
                             .creator_version = REEL_VERSION,
                             .progress = progress,
                             .progress_ctx = &pr};
    reel_export_stats_t st;
    reel_err_clear(&err);
    reel_rc erc = reel_export(s, out, &eo, &st, &err);
    reel_progress_clear(&pr);
    if (tty) {
        fclose(tty); /* (its writes went to stdout as they came) */
        reel_cli_esc_end(&esc, stdout);
        out = stdout;
    }
    if (out != stdout) {
        if (fclose(out) != 0 && erc == REEL_OK)
            erc = reel_err_errno(&err, REEL_IO, errno, "%s", tmp ? tmp : output);
        out = stdout;
        if (tmp && erc == REEL_OK && rename(tmp, target) != 0)
            erc = reel_err_errno(&err, REEL_IO, errno, "renaming %s to %s", tmp, target);
        if (tmp && erc != REEL_OK)
            unlink(tmp);
    }
    if (st.dropped)
        /* said even when the export failed later: it explains a short one;
         * counted only when the retention table lists the segment gone */
        fprintf(stderr,
                "reel export: %llu %s dropped by retention while the export ran (the session "
                "is being recorded with a retention limit): not written\n",
                (unsigned long long)st.dropped, st.dropped == 1 ? "flow was" : "flows were");
    if (st.damaged == 1)
        fprintf(stderr,
                "reel export: flow %llu not written: damaged, it lost %s records "
                "('reel flow %s %llu' says what)\n",
                (unsigned long long)st.damaged_first,
                fmt != REEL_EXPORT_NDJSON ? "its request head or all its" : "all its", name,
                (unsigned long long)st.damaged_first);
    else if (st.damaged > 1)
        fprintf(stderr,
                "reel export: %llu flows not written (the first: flow %llu): damaged, they lost "
                "%s records ('reel flows %s ~damaged' lists the damaged flows, 'reel flow' says "
                "what one lost)\n",
                (unsigned long long)st.damaged, (unsigned long long)st.damaged_first,
                fmt != REEL_EXPORT_NDJSON ? "their request heads or all their" : "all their", name);
    if (st.userdata_unread)
        /* damage in those tables, which the rest does not need: written
         * without them, and said (they came out as none, exit 0 and no
         * word: a note lost from an export nobody was told of) */
        fprintf(stderr,
                "reel export: the tags and notes of %llu %s could not be read (the first: flow "
                "%llu: %s): written without them; session.db is damaged ('reel verify %s' says "
                "where)\n",
                (unsigned long long)st.userdata_unread, st.userdata_unread == 1 ? "flow" : "flows",
                (unsigned long long)st.userdata_unread_first, st.userdata_why, name);
    if (erc != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    if (st.flows == 0 && st.skipped == 0 && st.damaged == 0 && filter != NULL)
        reel_cli_no_match(cli, name, filter);
    if (output != NULL && strcmp(output, "-") != 0) {
        fprintf(stderr, "exported %llu %s to %s", (unsigned long long)st.flows,
                st.flows == 1 ? "flow" : "flows", output);
        if (st.skipped)
            fprintf(stderr,
                    " (skipped %llu: TCP tunnels, refused SOCKS5 requests, or requests refused "
                    "before their host was known)",
                    (unsigned long long)st.skipped);
        fputc('\n', stderr);
    } else if (st.skipped) {
        /* to stdout: say it there too, or a filter of TCP flows writes
         * nothing with exit 0 and no word of why */
        fprintf(stderr,
                "reel export: skipped %llu %s: TCP tunnels, refused SOCKS5 requests, or "
                "requests refused before their host was known (no URL to write)\n",
                (unsigned long long)st.skipped, st.skipped == 1 ? "flow" : "flows");
    }
out:
    if (out != stdout)
        fclose(out);
    free(tmp);
    free(target);
    reel_redact_free(r);
    reel_session_close(s);
    return rc;
}
