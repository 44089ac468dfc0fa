#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/progress.h"
#include "cli/cli.h"
#include "session/har.h"
#include "session/importtx.h"
#include "session/mitm.h"
#include "session/recorder.h"

/* Redraws the progress line (base/progress.h): on a terminal only. */
static void progress(void *ctx, uint64_t done, uint64_t total) {
    reel_progress_set(ctx, done, total);
}

static const char usage[] =
    "usage: reel import [--home DIR] [--json] [--format har|mitm] FILE --into SESSION\n"
    "\n"
    "Imports a HAR 1.2 file (as exported by browsers' devtools) or a mitmproxy\n"
    "flow file (mitmdump -w; flow format versions 12-21, mitmproxy 7 to 12)\n"
    "into SESSION, creating the session if it does not exist. The format is\n"
    "told by the content (a mitmproxy file starts with a length digit) unless\n"
    "--format says it.\n"
    "\n"
    "HAR: every entry becomes one flow, in file order, with its headers, the\n"
    "bodies it holds (base64 bodies decoded), start time and timings. A body\n"
    "the HAR says was cut (reel export's _reel.request_truncated or\n"
    "response_truncated, a bodySize larger than the body given when there is\n"
    "no Content-Encoding or Transfer-Encoding, a response content.size larger\n"
    "than its text) is recorded as truncated, with the size the wire had, not\n"
    "as a whole body ('reel replay' does not send a request body so cut).\n"
    "HTTP/2 pseudo-headers (':authority', ...) are left out, as the method and\n"
    "URL say them, but for the ':protocol' of a CONNECT: an HTTP/2 WebSocket\n"
    "(RFC 8441), as reel export writes it (method CONNECT, ':protocol:\n"
    "websocket' among the headers, a wss:// or ws:// URL), comes back as the\n"
    "extended CONNECT reel recorded.\n"
    "Entries with status 0 (blocked or failed in the browser) become flows\n"
    "with an error, and entries whose URL is not http(s) or ws(s) (data:,\n"
    "blob:, ...) are skipped. WebSocket messages (_webSocketMessages, as\n"
    "Chromium and reel export write them) become the flow's messages; an\n"
    "error Chromium wrote there ends the flow with it. What reel export\n"
    "writes under _reel comes back: the flow's error, addresses, TLS version\n"
    "and ALPN, whether reel sent the response itself, 1xx answers, trailer\n"
    "fields, the TCP messages after a 101 to a protocol other than WebSocket,\n"
    "annotations, tags, mark.\n"
    "\n"
    "mitmproxy: every HTTP flow becomes one flow with its heads, bodies as on\n"
    "the wire (still content-encoded), timestamps, error, WebSocket messages;\n"
    "a flow's comment becomes an annotation and a marked flow is marked.\n"
    "TCP flows become tunnel flows with their messages; UDP and DNS flows\n"
    "are skipped.\n"
    "\n"
    "The whole file is checked first: if any entry or flow is malformed, or\n"
    "the file is truncated or of an unknown version, nothing is imported.\n"
    "An import that fails, or is interrupted (SIGINT, SIGTERM, SIGHUP), removes\n"
    "what it had recorded; one that is killed leaves a note in the session,\n"
    "and the next command that opens the session removes its flows. The\n"
    "flows the session had before are never touched.\n"
    "A progress line (flows, rate, time left) goes to stderr when it is a\n"
    "terminal and the import lasts more than half a second.\n"
    "\n"
    "  --format F      har or mitm (default: told by the content)\n"
    "  --into SESSION  session to import into (created if missing; must not be\n"
    "                  recording)\n"
    "  --home DIR      sessions root (default $REEL_HOME, else the XDG data dir)\n"
    "  --json          print {session, imported, first_id, last_id, skipped,\n"
    "                  annotated, marked} (HAR: also tagged); the ids are null\n"
    "                  when nothing was imported\n";

/* A first or last id for --json: null when no flow was imported (there is
 * none; 0 is no flow id). */
static json_t *import_id(uint64_t imported, uint64_t id) {
    return imported ? json_integer((json_int_t)id) : json_null();
}

/* 1 when the file at path starts like a mitmproxy flow file; 0 otherwise
 * (HAR is JSON), also when it cannot be read (the loader then says why)
 * and when it is not a regular file: a pipe read here could not be read
 * again (--format says what it is). */
static int sniff_mitm(const char *path) {
    uint8_t head[16];
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n;
    do
        n = read(fd, head, sizeof head);
    while (n < 0 && errno == EINTR);
    close(fd);
    return n > 0 && reel_mitm_sniff(head, (size_t)n);
}

/* The first SIGINT, SIGTERM or SIGHUP: the import stops before its next
 * entry and undoes what it recorded. The handler is reset when it runs, so
 * a second signal kills at once (the next open of the session undoes the
 * import then). */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
    stop_signal = sig;
}

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* One import into one session, all or nothing (session/importtx.h). */
typedef struct {
    reel_cli_t *cli;
    const char *file, *into;
    reel_session_t *s;
    reel_recorder_t *rec;
    int created; /* the session did not exist before */
    int begun;   /* the rollback point is written */
    reel_importtx_point_t point;
    reel_progress_t pr;
} import_t;

/* 1 when s holds nothing: no flow, no user data, no config. */
static int session_empty(reel_session_t *s) {
    sqlite3_stmt *st = NULL;
    int empty = 0;
    if (sqlite3_prepare_v2(reel_session_db(s),
                           "SELECT (SELECT count(*) FROM flows) + (SELECT count(*) FROM "
                           "annotations) + (SELECT count(*) FROM tags) + (SELECT count(*) FROM "
                           "marks) + (SELECT count(*) FROM config_overlay) + (SELECT count(*) "
                           "FROM config_history)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        empty = sqlite3_column_int64(st, 0) == 0;
    sqlite3_finalize(st);
    return empty;
}

/* Removes the session im made when it holds nothing (an import that
 * failed creates no session). Closes im->s. Returns 1 if it did. */
static int remove_made(import_t *im) {
    int gone = 0;
    if (im->created && im->s && session_empty(im->s)) {
        reel_session_close(im->s);
        im->s = NULL;
        reel_err_t err;
        reel_err_clear(&err);
        gone = reel_session_remove(reel_cli_home(im->cli), im->into, &err) == REEL_OK;
    }
    reel_session_close(im->s);
    im->s = NULL;
    return gone;
}

/* Opens (or makes) the session and a recorder, and writes the rollback
 * point before anything is recorded. Returns REEL_OK, or an error that is
 * reported (and a session it made removed). */
/* The recorder's warnings are a proxy's ("traffic is still forwarded,
 * and capture resumes ..."): wrong for an import, which stops at the
 * recorder's first error and names it when it undoes what it recorded. */
static void recorder_quiet(void *ctx, const char *msg) {
    (void)ctx;
    (void)msg;
}

static reel_rc import_begin(import_t *im) {
    reel_err_t err;
    reel_err_clear(&err);
    char *path = reel_asprintf("%s/%s", reel_cli_home(im->cli), im->into);
    struct stat sb;
    im->created = stat(path, &sb) != 0;
    free(path);
    catch_signals();
    im->s = reel_cli_open(im->cli, im->into, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    if (im->s == NULL)
        return REEL_ERROR;
    reel_recorder_opts_t ro;
    reel_recorder_opts_default(&ro);
    ro.warn = recorder_quiet;
    ro.capture = REEL_CAPTURE_LOSSLESS;
    ro.body_limit = UINT64_MAX / 2; /* an import stores every byte the file holds */
    reel_importtx_point_t *p = &im->point;
    if (reel_recorder_open(im->s, &ro, &im->rec, &err) != REEL_OK)
        goto fail;
    reel_recorder_position(im->rec, &p->segment, &p->offset, &p->first_id);
    p->started_us = reel_now_us();
    p->pid = (long)getpid();
    p->created = im->created;
    snprintf(p->file, sizeof p->file, "%s", im->file);
    if (reel_importtx_begin(im->s, p, &err) != REEL_OK)
        goto fail;
    im->begun = 1;
    reel_progress_init(&im->pr, "reel import", "flows", 0);
    return REEL_OK;
fail:
    reel_cli_fail(im->cli, "%s", reel_err_str(&err));
    reel_recorder_close(im->rec, NULL); /* it recorded nothing */
    im->rec = NULL;
    remove_made(im);
    return REEL_ERROR;
}

/* Closes the recorder after the recording returned rc (everything it
 * recorded is then in the spool and indexed, or rc or the close says what
 * is not). Returns the first error, in err. */
static reel_rc import_close(import_t *im, reel_rc rc, reel_err_t *err) {
    reel_progress_clear(&im->pr);
    reel_rc closed = reel_recorder_close(im->rec, err); /* first error wins in err */
    im->rec = NULL;
    return rc == REEL_OK ? closed : rc;
}

/* The import failed (rc, err) or was interrupted: undoes what it recorded
 * (flows recorded: n, ids first..last), removes the session if the import
 * made it and it holds nothing else, says what happened, and for a signal
 * dies of it. Returns the exit code. */
static int import_fail(import_t *im, reel_rc rc, const reel_err_t *err, uint64_t n, uint64_t first,
                       uint64_t last) {
    reel_cli_t *cli = im->cli;
    char why[REEL_ERR_MSG_MAX + 64];
    int sig = stop_signal;
    if (rc == REEL_INTERRUPTED && sig)
        snprintf(why, sizeof why, "%s: %s by %s", im->file, reel_err_str(err),
                 sig == SIGINT    ? "SIGINT"
                 : sig == SIGTERM ? "SIGTERM"
                                  : "SIGHUP");
    else
        snprintf(why, sizeof why, "%s", reel_err_str(err));
    reel_recorder_close(im->rec, NULL); /* when the recording never began */
    im->rec = NULL;
    reel_err_t uerr;
    reel_err_clear(&uerr);
    reel_rc undone = REEL_OK;
    reel_importtx_undone_t u = {0};
    if (im->begun && (undone = reel_importtx_undo(im->s, &im->point, &u, &uerr)) == REEL_OK) {
        im->begun = 0;
        /* what the index had of them, not what was handed to the recorder:
         * a disk that filled up took the rest before it was written */
        n = u.flows;
        first = u.first;
        last = u.last;
    }
    char ids[64] = "";
    if (n == 1)
        snprintf(ids, sizeof ids, " (id %llu)", (unsigned long long)first);
    else if (n)
        snprintf(ids, sizeof ids, " (ids %llu-%llu)", (unsigned long long)first,
                 (unsigned long long)last);
    if (undone != REEL_OK) {
        /* how many reached the disk is not known here: they are named by
         * where they begin */
        reel_cli_fail(cli,
                      "%s; the flows it had recorded (from id %llu on) could not be removed (%s): "
                      "the next open of session '%s' that can write removes them",
                      why, (unsigned long long)im->point.first_id, reel_err_str(&uerr), im->into);
        reel_session_close(im->s);
        im->s = NULL;
    } else {
        const char *gone = remove_made(im) ? ", and the session it had made was removed" : "";
        if (n)
            reel_cli_fail(cli,
                          "%s; nothing was imported: the %llu flow%s it had recorded%s %s "
                          "removed%s",
                          why, (unsigned long long)n, n == 1 ? "" : "s", ids,
                          n == 1 ? "was" : "were", gone);
        else
            reel_cli_fail(cli, "%s; nothing was imported%s", why, gone);
    }
    if (rc == REEL_INTERRUPTED && sig) {
        fflush(stdout);
        fflush(stderr);
        signal(sig, SIG_DFL);
        raise(sig); /* die of it, as the caller asked */
        return 128 + sig;
    }
    return REEL_EXIT_ERROR;
}

/* The import is whole: removes the rollback point, its commit; unless a
 * signal came after the last entry was recorded. */
static reel_rc import_commit(import_t *im, reel_err_t *err) {
    if (stop_signal)
        return reel_err_set(err, REEL_INTERRUPTED, "interrupted after its last entry");
    reel_rc rc = reel_importtx_commit(im->s, err);
    if (rc == REEL_OK)
        im->begun = 0;
    return rc;
}

static void import_end(import_t *im) {
    reel_recorder_close(im->rec, NULL);
    reel_session_close(im->s);
}

/* The mitmproxy path: load and check the whole file, record, then add the
 * comments and marks in one transaction once the flows are indexed. */
static int import_mitm(reel_cli_t *cli, const char *file, const char *into) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_mitm_t *m = NULL; /* parsed and checked before the session is touched */
    if (reel_mitm_load(file, &m, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));

    import_t im = {.cli = cli, .file = file, .into = into};
    reel_mitm_stats_t st = {0};
    int rc = REEL_EXIT_OK;
    if (import_begin(&im) != REEL_OK) {
        rc = REEL_EXIT_ERROR;
        goto out;
    }
    reel_mitm_set_progress(m, progress, &im.pr);
    reel_mitm_set_stop(m, &stop_signal);
    reel_rc imp = import_close(&im, reel_mitm_record(im.rec, m, &st, &err), &err);
    if (imp == REEL_OK)
        imp = reel_mitm_apply_user_data(reel_session_db(im.s), m, &st, &err);
    if (imp == REEL_OK)
        imp = import_commit(&im, &err);
    if (imp != REEL_OK) {
        rc = import_fail(&im, imp, &err, st.flows, st.first_id, st.last_id);
        goto out;
    }
    if (cli->json) {
        rc = reel_cli_json_out(
            json_pack("{s:s, s:I, s:o, s:o, s:I, s:I, s:I}", "session", into, "imported",
                      (json_int_t)st.flows, "first_id", import_id(st.flows, st.first_id), "last_id",
                      import_id(st.flows, st.last_id), "skipped", (json_int_t)st.skipped,
                      "annotated", (json_int_t)st.annotated, "marked", (json_int_t)st.marked));
    } else {
        printf("imported %llu %s into %s", (unsigned long long)st.flows,
               st.flows == 1 ? "flow" : "flows", into);
        if (st.flows == 1)
            printf(" (id %llu)", (unsigned long long)st.first_id);
        else if (st.flows)
            printf(" (ids %llu-%llu)", (unsigned long long)st.first_id,
                   (unsigned long long)st.last_id);
        if (st.skipped)
            printf("; skipped %llu UDP/DNS %s", (unsigned long long)st.skipped,
                   st.skipped == 1 ? "flow" : "flows");
        printf("\n");
    }
out:
    import_end(&im);
    reel_mitm_free(m);
    return rc;
}

int reel_cmd_import(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_INTO = 0x2001, OPT_FORMAT };
    static const struct option opts[] = {{"into", required_argument, NULL, OPT_INTO},
                                         {"format", required_argument, NULL, OPT_FORMAT},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *into = NULL, *format = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == OPT_INTO) {
            into = optarg;
            continue;
        }
        if (c == OPT_FORMAT) {
            format = optarg;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (optind >= argc)
        return reel_cli_usage(cli, "missing FILE");
    if (argc - optind > 1)
        return reel_cli_usage(cli,
                              "unexpected argument '%s' (one FILE; the session it goes into is "
                              "named by --into: reel import FILE --into SESSION)",
                              argv[optind + 1]);
    if (into == NULL)
        return reel_cli_usage(cli, "missing --into SESSION");
    if (format && strcmp(format, "har") != 0 && strcmp(format, "mitm") != 0)
        return reel_cli_usage(cli, "--format must be har or mitm, not '%s'", format);
    const char *file = argv[optind];
    int mitm = format ? strcmp(format, "mitm") == 0 : sniff_mitm(file);
    if (mitm)
        return import_mitm(cli, file, into);

    reel_err_t err;
    reel_err_clear(&err);
    reel_har_t *har = NULL; /* parsed and checked before the session is touched */
    if (reel_har_load(file, &har, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));

    import_t im = {.cli = cli, .file = file, .into = into};
    reel_har_stats_t st = {0};
    int rc = REEL_EXIT_OK;
    if (import_begin(&im) != REEL_OK) {
        rc = REEL_EXIT_ERROR;
        goto out;
    }
    reel_har_set_progress(har, progress, &im.pr);
    reel_har_set_stop(har, &stop_signal);
    reel_rc imp = import_close(&im, reel_har_record(im.rec, har, &st, &err), &err);
    if (imp == REEL_OK)
        imp = reel_har_apply_user_data(reel_session_db(im.s), har, &st, &err);
    if (imp == REEL_OK)
        imp = import_commit(&im, &err);
    if (imp != REEL_OK) {
        rc = import_fail(&im, imp, &err, st.entries, st.first_id, st.last_id);
        goto out;
    }
    if (cli->json) {
        rc = reel_cli_json_out(
            json_pack("{s:s, s:I, s:o, s:o, s:I, s:I, s:I, s:I}", "session", into, "imported",
                      (json_int_t)st.entries, "first_id", import_id(st.entries, st.first_id),
                      "last_id", import_id(st.entries, st.last_id), "skipped",
                      (json_int_t)st.skipped, "annotated", (json_int_t)st.annotated, "tagged",
                      (json_int_t)st.tagged, "marked", (json_int_t)st.marked));
    } else {
        printf("imported %llu %s into %s", (unsigned long long)st.entries,
               st.entries == 1 ? "flow" : "flows", into);
        if (st.entries == 1)
            printf(" (id %llu)", (unsigned long long)st.first_id);
        else if (st.entries)
            printf(" (ids %llu-%llu)", (unsigned long long)st.first_id,
                   (unsigned long long)st.last_id);
        if (st.skipped) /* data:, blob:, ftp:, chrome-extension: ... */
            printf("; skipped %llu %s whose URL is not http(s) or ws(s)",
                   (unsigned long long)st.skipped, st.skipped == 1 ? "entry" : "entries");
        printf("\n");
    }
out:
    import_end(&im);
    reel_har_free(har);
    return rc;
}
