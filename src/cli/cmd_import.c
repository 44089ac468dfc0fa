#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/progress.h"
#include "cli/cli.h"
#include "session/har.h"
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
    "blob:, ...) are skipped.\n"
    "\n"
    "mitmproxy: every HTTP flow becomes one flow with its heads, bodies as on\n"
    "the wire (still content-encoded), timestamps, error, WebSocket messages;\n"
    "a flow's comment becomes an annotation and a marked flow is marked.\n"
    "TCP flows become tunnel flows with their messages; UDP and DNS flows\n"
    "are skipped.\n"
    "\n"
    "The whole file is checked first: if any entry or flow is malformed, or\n"
    "the file is truncated or of an unknown version, nothing is imported.\n"
    "A progress line (flows, rate, time left) goes to stderr when it is a\n"
    "terminal and the import lasts more than half a second.\n"
    "\n"
    "  --format F      har or mitm (default: told by the content)\n"
    "  --into SESSION  session to import into (created if missing; must not be\n"
    "                  recording)\n"
    "  --home DIR      sessions root (default $REEL_HOME, else the XDG data dir)\n"
    "  --json          print {session, imported, first_id, last_id, skipped}\n"
    "                  (mitm: also annotated, marked)\n";

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

static void print_incomplete(uint64_t n, uint64_t first, uint64_t last) {
    if (n == 1)
        fprintf(stderr, "reel import: 1 flow (id %llu) may be incomplete\n",
                (unsigned long long)first);
    else if (n)
        fprintf(stderr, "reel import: %llu flows (ids %llu-%llu) may be incomplete\n",
                (unsigned long long)n, (unsigned long long)first, (unsigned long long)last);
}

/* The mitmproxy path: load and check the whole file, record, then add the
 * comments and marks in one transaction once the flows are indexed. */
static int import_mitm(reel_cli_t *cli, const char *file, const char *into) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_mitm_t *m = NULL; /* parsed and checked before the session is touched */
    if (reel_mitm_load(file, &m, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));

    reel_session_t *s = reel_cli_open(cli, into, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    if (s == NULL) {
        reel_mitm_free(m);
        return REEL_EXIT_ERROR;
    }
    reel_recorder_opts_t ro;
    reel_recorder_opts_default(&ro);
    ro.capture = REEL_CAPTURE_LOSSLESS;
    ro.body_limit = UINT64_MAX / 2; /* an import stores every byte the file holds */
    reel_recorder_t *rec = NULL;
    reel_mitm_stats_t st = {0};
    int rc = REEL_EXIT_OK;
    if (reel_recorder_open(s, &ro, &rec, &err) != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    reel_progress_t pr;
    reel_progress_init(&pr, "reel import", "flows", 0);
    reel_mitm_set_progress(m, progress, &pr);
    reel_rc imp = reel_mitm_record(rec, m, &st, &err);
    reel_progress_clear(&pr);
    reel_rc closed = reel_recorder_close(rec, &err); /* first error wins in err */
    if (imp == REEL_OK && closed == REEL_OK)
        imp = reel_mitm_apply_user_data(reel_session_db(s), m, &st, &err);
    if (imp != REEL_OK || closed != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        print_incomplete(st.flows, st.first_id, st.last_id);
        goto out;
    }
    if (cli->json) {
        rc = reel_cli_json_out(
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "session", into, "imported",
                      (json_int_t)st.flows, "first_id", (json_int_t)st.first_id, "last_id",
                      (json_int_t)st.last_id, "skipped", (json_int_t)st.skipped, "annotated",
                      (json_int_t)st.annotated, "marked", (json_int_t)st.marked));
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
    reel_session_close(s);
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
        return reel_cli_usage(cli, "unexpected argument '%s'", argv[optind + 1]);
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

    reel_session_t *s = reel_cli_open(cli, into, REEL_OPEN_CREATE | REEL_OPEN_RECORD);
    if (s == NULL) {
        reel_har_free(har);
        return REEL_EXIT_ERROR;
    }
    reel_recorder_opts_t ro;
    reel_recorder_opts_default(&ro);
    ro.capture = REEL_CAPTURE_LOSSLESS;
    ro.body_limit = UINT64_MAX / 2; /* an import stores every byte the file holds */
    reel_recorder_t *rec = NULL;
    reel_har_stats_t st = {0};
    int rc = REEL_EXIT_OK;
    if (reel_recorder_open(s, &ro, &rec, &err) != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        goto out;
    }
    reel_progress_t pr;
    reel_progress_init(&pr, "reel import", "flows", 0);
    reel_har_set_progress(har, progress, &pr);
    reel_rc imp = reel_har_record(rec, har, &st, &err);
    reel_progress_clear(&pr);
    reel_rc closed = reel_recorder_close(rec, &err); /* first error wins in err */
    if (imp != REEL_OK || closed != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
        print_incomplete(st.entries, st.first_id, st.last_id);
        goto out;
    }
    if (cli->json) {
        rc = reel_cli_json_out(json_pack("{s:s, s:I, s:I, s:I, s:I}", "session", into, "imported",
                                         (json_int_t)st.entries, "first_id",
                                         (json_int_t)st.first_id, "last_id", (json_int_t)st.last_id,
                                         "skipped", (json_int_t)st.skipped));
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
    reel_session_close(s);
    reel_har_free(har);
    return rc;
}
