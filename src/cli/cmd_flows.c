#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/filter.h"
#include "session/query.h"

static const char usage[] =
    "usage: reel flows [--home DIR] [--json] [--wide] [--limit N] [--since WHEN] SESSION\n"
    "                  [FILTER]\n"
    "\n"
    "Lists flows, oldest first: id, start time, method, the client's HTTP version\n"
    "(1.1, 2), URL, status, request and response body sizes, duration, tags and\n"
    "mark (*), then the error if any.\n"
    "WebSocket (WS), raw TCP (TCP) and TLS tunnel flows (TLS: TLS that is not\n"
    "HTTP, a tls:// URL, its messages the plaintext) show their message count as\n"
    "the status and the payload bytes each way as the sizes.\n"
    "On a terminal each row is cut to the terminal's width (a long URL ends in\n"
    "an ellipsis; under 120 columns rows give the time of day and the date is a\n"
    "line of its own where the day changes) and control characters are shown as\n"
    "\\xNN; into a pipe or a file, with --wide or with --json, every value is\n"
    "written whole.\n"
    "\n"
    "  --limit N      only the newest N flows (still printed oldest first);\n"
    "                 0 means no limit, every flow (the default)\n"
    "  --wide         do not cut rows to the terminal's width\n"
    "  --since WHEN   only flows started at or after WHEN: a duration back from now\n"
    "                 (30s, 15m, 2h, 7d), a date 'YYYY-MM-DD[ HH:MM[:SS]]' (local\n"
    "                 time), or '@SECONDS' since the epoch\n"
    "\n"
    "FILTER (mitmproxy's language): ~d domain, ~u URL, ~m method, ~c CODE status,\n"
    "~h/~hq/~hs headers, ~b/~bq/~bs decoded bodies (read from the spool), ~t/~tq/~ts\n"
    "content type, ~src/~dst address, ~comment annotation (each takes a REGEX),\n"
    "~e error, ~s response, ~q no response, ~marked, ~all, ~http, ~h2 (HTTP/2),\n"
    "~websocket, ~tcp, ~conn N (client connection N of the session),\n"
    "~tag NAME, ~id N[-M], ~since/~until WHEN, ~size >10k, ~damaged; !X, X & Y,\n"
    "X | Y, (X); a bare word is ~u. Quote a regex holding | or & or parentheses.\n"
    "Every operator: docs/filters.md.\n"
    "\n"
    "--json adds per flow: client_addr, server_addr, request_end_us, messages,\n"
    "response_start_us, response_generated (reel sent the response itself),\n"
    "request_body_dropped/response_body_dropped (bytes not stored because capture\n"
    "fell behind), damaged, client_conn and stream_id (its HTTP/2 stream).\n"
    "A proxy recording into SESSION has a flow listed here about 0.1 s after\n"
    "the flow ended (its spool block is written within 100 ms, then indexed\n"
    "at once; later while the disk is behind): a script that lists flows\n"
    "right after its own requests should allow for that, or poll.\n"
    "Example: reel flows mysession '~d example.com & !~c 200'\n";

/* Columns of a row besides the URL, tags and error: "%6lld%s %s %-7s %-3s " and
 * " %3s %9s %9s %7s". */
#define ROW_FIXED 76
/* URL columns kept on a terminal too narrow for the row. */
#define URL_MIN 20
/* URLs are padded to this many columns so the next ones line up. */
#define URL_PAD 60
/* Below this many columns the time column drops its date ("2026-12-04 "),
 * said instead on a line of its own where the day changes: at 80 columns
 * the URL had 20, most of them its scheme and host. */
#define DATE_LINES_BELOW 120
#define DATE_COLS 11

typedef struct {
    int esc;           /* REEL_CLI_ESC on a terminal */
    size_t width;      /* cut rows to this many columns; 0 = never */
    size_t url_max;    /* cut URLs to this many columns (with width) */
    int date_lines;    /* rows show the time of day; the date on a line of its own */
    char last_day[11]; /* the date said last (date_lines) */
} layout_t;

/* Appends s escaped as the layout says (one line), cut to max columns when
 * max > 0, padded with spaces to pad columns. */
static void put_field(reel_buf_t *b, const layout_t *l, const char *s, size_t max, size_t pad) {
    char *e = reel_cli_escaped(s, strlen(s), l->esc);
    if (max > 0) {
        char *cut = reel_cli_cut(e, max);
        free(e);
        e = cut;
    }
    reel_buf_puts(b, e);
    for (size_t n = reel_cli_columns(e); n < pad; n++)
        reel_buf_puts(b, " ");
    free(e);
}

static void print_row(const layout_t *l, long long id, int marked, const char *t,
                      const char *method, const char *ver, const char *url, const char *st,
                      const char *qs, const char *rs, const char *dur, const char *tags,
                      const char *error) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_printf(&b, "%6lld%s %s ", id, marked ? "*" : " ", t);
    put_field(&b, l, method, 0, 7);
    reel_buf_puts(&b, " ");
    put_field(&b, l, ver, 3, 3);
    reel_buf_puts(&b, " ");
    size_t pad = l->width && l->url_max < URL_PAD ? l->url_max : URL_PAD;
    put_field(&b, l, url, l->width ? l->url_max : 0, pad);
    reel_buf_printf(&b, " %3s %9s %9s %7s", st, qs, rs, dur);
    /* Tags and error take the room left; the columns before stay whole. */
    reel_buf_t x;
    reel_buf_init(&x, 0);
    if (tags) {
        reel_buf_puts(&x, "  [");
        put_field(&x, l, tags, 0, 0);
        reel_buf_puts(&x, "]");
    }
    if (error) {
        reel_buf_puts(&x, "  ! ");
        put_field(&x, l, error, 0, 0);
    }
    if (l->width && x.len) {
        size_t used = reel_cli_columns((const char *)b.data);
        char *cut = reel_cli_cut((const char *)x.data, used + 2 < l->width ? l->width - used : 2);
        reel_buf_puts(&b, cut);
        free(cut);
    } else if (x.len) {
        reel_buf_puts(&b, (const char *)x.data);
    }
    if (l->width) { /* a terminal narrower than the fixed columns */
        char *cut = reel_cli_cut((const char *)b.data, l->width);
        fputs(cut, stdout);
        free(cut);
    } else {
        fputs((const char *)b.data, stdout);
    }
    putchar('\n');
    reel_buf_free(&x);
    reel_buf_free(&b);
}

typedef struct {
    json_t *json; /* --json: the array rows go into */
    layout_t layout;
    size_t rows;
} list_t;

/* Prints one row of the listing, or adds it to the JSON array. */
static int list_row(void *ctx, const reel_query_flow_t *r) {
    list_t *l = ctx;
    l->rows++;
    if (l->json) {
        json_array_append_new(l->json, reel_query_flow_json(r));
        return 0;
    }
    long long start = r->start_us, end = r->end_us;
    int has_end = r->end_us != REEL_QUERY_NULL;
    char t[32], qs[16], rs[16], dur[24], st_s[24];
    if (start > 0)
        reel_cli_time(start, t);
    else /* its start record was lost to damage: no time, not 1970 */
        snprintf(t, sizeof t, "%-23s", "-");
    const char *when = t;
    if (l->layout.date_lines && start > 0) {
        if (strncmp(l->layout.last_day, t, 10) != 0) {
            snprintf(l->layout.last_day, sizeof l->layout.last_day, "%.10s", t);
            printf("%s\n", l->layout.last_day);
        }
        when = t + DATE_COLS;
    } else if (l->layout.date_lines) {
        snprintf(t, sizeof t, "%-12s", "-");
    }
    reel_cli_size((unsigned long long)r->request_body_size, qs);
    reel_cli_size((unsigned long long)r->response_body_size, rs);
    if (has_end && start > 0 && end >= start) {
        long long us = end - start;
        if (us < 1000000)
            snprintf(dur, sizeof dur, "%lldms", us / 1000);
        else
            snprintf(dur, sizeof dur, "%.1fs", (double)us / 1e6);
    } else {
        snprintf(dur, sizeof dur, "-");
    }
    if (r->status != REEL_QUERY_NULL)
        snprintf(st_s, sizeof st_s, "%lld", (long long)r->status);
    else
        snprintf(st_s, sizeof st_s, "%s",
                 r->state && strcmp(r->state, "error") == 0 ? "ERR" : "-");
    /* WebSocket and tunnel flows: the kind in the method column (a tunnel's
     * scheme says whether it carried raw TCP or the plaintext of TLS that
     * is not HTTP), their message count in the status column */
    bool ws = r->kind && strcmp(r->kind, "websocket") == 0;
    bool tcp = r->kind && strcmp(r->kind, "tunnel") == 0;
    bool tls = tcp && r->scheme && strcmp(r->scheme, "tls") == 0;
    if (ws || tcp) {
        if (r->messages < 1000)
            snprintf(st_s, sizeof st_s, "%d", (int)r->messages);
        else
            snprintf(st_s, sizeof st_s, "1k+");
    }
    reel_buf_t tags;
    reel_buf_init(&tags, 0);
    for (size_t i = 0; i < r->ntags; i++)
        reel_buf_printf(&tags, "%s%s", i ? "," : "", r->tags[i]);
    /* the client's HTTP version, short: 1.1, 2, 1.0 ("-" when not known) */
    const char *ver = r->http_version && strncmp(r->http_version, "HTTP/", 5) == 0
                          ? r->http_version + 5
                          : "-";
    if (strcmp(ver, "2.0") == 0)
        ver = "2";
    const char *method = ws ? "WS" : tls ? "TLS" : tcp ? "TCP" : r->method ? r->method : "-";
    print_row(&l->layout, (long long)r->id, r->marked, when, method, tcp ? "" : ver,
              r->url ? r->url : "-", st_s, qs, rs, dur, r->ntags ? (const char *)tags.data : NULL,
              r->error);
    reel_buf_free(&tags);
    return 0;
}

int reel_cmd_flows(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"limit", required_argument, NULL, 'n'},
                                         {"since", required_argument, NULL, 's'},
                                         {"wide", no_argument, NULL, 'w'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    long long limit = -1, since = 0;
    int have_since = 0, wide = 0, c;
    while ((c = reel_cli_getopt(argc, argv, "hn:", opts)) != -1) {
        if (c == 'w') {
            wide = 1;
            continue;
        }
        if (c == 'n') {
            char *end = NULL;
            errno = 0;
            limit = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end || errno || limit < 0)
                return reel_cli_usage(cli, "--limit takes a non-negative number, not '%s'",
                                      optarg);
            if (limit == 0)
                limit = -1; /* no limit */
            continue;
        }
        if (c == 's') {
            int64_t us = 0;
            if (reel_filter_parse_time(optarg, &us) != REEL_OK)
                return reel_cli_usage(cli,
                                      "--since: cannot read '%s' (examples: 15m, 2h, "
                                      "'2026-11-24 10:00', @1700000000)",
                                      optarg);
            since = (long long)us;
            have_since = 1;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    int nargs = argc - optind;
    if (nargs < 1 || nargs > 2)
        return reel_cli_usage(cli, nargs < 1 ? "expected a SESSION"
                                             : "expected at most one FILTER (quote it)");
    reel_err_t err;
    reel_err_clear(&err);
    reel_filter_t *f = NULL;
    if (reel_filter_compile(nargs == 2 ? argv[optind + 1] : "", &f, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    reel_filter_free(f); /* compiled above for its error before the session opens */
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    reel_query_opts_t q = {.filter = nargs == 2 ? argv[optind + 1] : NULL,
                           .since_us = since,
                           .has_since = have_since,
                           .no_note_count = 1};
    /* --limit: the newest N matches, listed oldest first. A first pass
     * finds their ids (newest first), the listing shows exactly those. */
    int64_t *keep = NULL;
    size_t nkeep = 0;
    int rc = REEL_EXIT_OK;
    if (limit >= 0) {
        reel_query_opts_t newest = q;
        newest.desc = 1;
        newest.limit = (size_t)limit;
        if (reel_query_ids(s, &newest, &keep, &nkeep, &err) != REEL_OK) {
            rc = reel_cli_query_fail(cli, s, &err);
            goto out;
        }
        for (size_t i = 0; i < nkeep / 2; i++) { /* to ascending order */
            int64_t t = keep[i];
            keep[i] = keep[nkeep - 1 - i];
            keep[nkeep - 1 - i] = t;
        }
        static const int64_t none[1] = {0}; /* no match: an empty set, not "no set" */
        q.only_ids = keep ? keep : none;
        q.n_only_ids = nkeep;
    }
    list_t l = {.json = cli->json ? json_array() : NULL, .layout = {.esc = reel_cli_escaping()}};
    if (l.layout.esc && !wide) {
        l.layout.width = reel_cli_term_width();
        l.layout.date_lines = l.layout.width < DATE_LINES_BELOW;
        size_t fixed = ROW_FIXED - (l.layout.date_lines ? DATE_COLS : 0);
        /* Two columns stay for the start of the tags or the error. */
        l.layout.url_max =
            l.layout.width > fixed + 2 + URL_MIN ? l.layout.width - fixed - 2 : URL_MIN;
    }
    if (reel_query_flows_each(s, &q, list_row, &l, &err) != REEL_OK) {
        json_decref(l.json);
        rc = reel_cli_query_fail(cli, s, &err);
        /* rows are printed as the index yields them: those before the
         * failure (a regex that ran into PCRE2's match limit on a later
         * flow) are out already, and must not pass for the whole answer */
        if (l.json == NULL && l.rows > 0)
            fprintf(stderr,
                    "%s %s: the listing above is incomplete: it stopped at that error (%zu %s "
                    "listed before it)\n",
                    cli->prog, cli->cmd, l.rows, l.rows == 1 ? "flow" : "flows");
        goto out;
    }
    if (l.json)
        rc = reel_cli_json_out(l.json);
    else if (l.rows == 0 && q.filter != NULL)
        reel_cli_no_match(cli, argv[optind], q.filter);
out:
    free(keep);
    reel_session_close(s);
    return rc;
}
