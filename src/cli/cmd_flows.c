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
    "usage: reel flows [--home DIR] [--json] [--wide] [--limit N] [--since WHEN]\n"
    "                  [--follow] SESSION [FILTER]\n"
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
    "  -f, --follow   then keep listing: each flow once it has ended (in the order\n"
    "                 flows end, within about 0.3 s of being indexed), until\n"
    "                 interrupted; flows still open are listed when they end.\n"
    "                 With --json, one object per line (no array)\n"
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

/* A sorted set of flow ids (--follow). */
typedef struct {
    int64_t *v;
    size_t n, cap;
} idset_t;

static bool idset_has(const idset_t *s, int64_t id) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid] == id)
            return true;
        if (s->v[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static void idset_add(idset_t *s, int64_t id) {
    if (idset_has(s, id))
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = reel_realloc(s->v, s->cap * sizeof *s->v);
    }
    size_t i = s->n;
    while (i > 0 && s->v[i - 1] > id) {
        s->v[i] = s->v[i - 1];
        i--;
    }
    s->v[i] = id;
    s->n++;
}

/* Keeps the ids keep() says yes to. */
static void idset_keep(idset_t *s, bool (*keep)(void *, int64_t), void *ctx) {
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (keep(ctx, s->v[i]))
            s->v[k++] = s->v[i];
    s->n = k;
}

typedef struct {
    json_t *json; /* --json: the array rows go into */
    bool lines;   /* --json --follow: one object per line instead */
    layout_t layout;
    size_t rows;
    /* --follow's first listing: the flows it leaves to the follow loop
     * (open when it began, newer than the newest flow then, or indexed
     * after the loop's view of the newest ones was taken) */
    const idset_t *skip, *known;
    int64_t upto;
} list_t;

/* --follow looks again at the flows this far below the newest it has
 * seen: a flow of one worker may be indexed after a later one of another
 * (their ids are given in order of start, their records reach the
 * index in the order written). */
#define FOLLOW_WINDOW 256
#define FOLLOW_POLL_NS 250000000L

/* Prints one row of the listing, or adds it to the JSON array. */
static int list_row(void *ctx, const reel_query_flow_t *r) {
    list_t *l = ctx;
    if (l->skip && (r->id > l->upto || idset_has(l->skip, r->id) ||
                    (r->id > l->upto - FOLLOW_WINDOW && !idset_has(l->known, r->id))))
        return 0;
    l->rows++;
    if (l->lines) {
        json_t *o = reel_query_flow_json(r);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        puts(s);
        free(s);
        return 0;
    }
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

/* ---- --follow ---- */

typedef struct {
    idset_t *open, *ended, *known;
    int64_t max;
} scan_t;

/* A flow of the window: new ones are noted, open or ended. */
static int scan_new(void *ctx, const reel_query_flow_t *r) {
    scan_t *s = ctx;
    if (idset_has(s->known, r->id))
        return 0;
    idset_add(s->known, r->id);
    if (r->id > s->max)
        s->max = r->id;
    idset_add(r->state && strcmp(r->state, "open") == 0 ? s->open : s->ended, r->id);
    return 0;
}

static int add_id(void *ctx, const reel_query_flow_t *r) {
    idset_add(ctx, r->id);
    return 0;
}

static bool in_set(void *ctx, int64_t id) {
    return idset_has(ctx, id);
}

static bool above(void *ctx, int64_t id) {
    return id > *(const int64_t *)ctx;
}

static bool at_most(void *ctx, int64_t id) {
    return id <= *(const int64_t *)ctx;
}

/* Lists those of ids that match filter, a hundred runs of ids per query. */
static reel_rc list_ids(reel_session_t *s, const char *filter, const idset_t *ids, list_t *l,
                        reel_err_t *err) {
    for (size_t i = 0; i < ids->n;) {
        reel_buf_t f;
        reel_buf_init(&f, 0);
        if (filter && filter[0])
            reel_buf_printf(&f, "(%s) & (", filter);
        else
            reel_buf_puts(&f, "(");
        for (int k = 0; k < 100 && i < ids->n; k++) {
            size_t j = i;
            while (j + 1 < ids->n && ids->v[j + 1] == ids->v[j] + 1)
                j++;
            reel_buf_printf(&f, "%s~id %lld", k ? " | " : "", (long long)ids->v[i]);
            if (j > i)
                reel_buf_printf(&f, "-%lld", (long long)ids->v[j]);
            i = j + 1;
        }
        reel_buf_puts(&f, ")");
        reel_query_opts_t q = {.filter = (const char *)f.data, .no_note_count = 1};
        reel_rc rc = reel_query_flows_each(s, &q, list_row, l, err);
        reel_buf_free(&f);
        if (rc != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

/* Lists each flow once it has ended, until interrupted (or stdout fails):
 * open holds the flows open so far, known the ids seen in the window
 * below max, the newest. */
static int follow(reel_cli_t *cli, reel_session_t *s, const char *filter, list_t *l, idset_t *open,
                  idset_t *known, int64_t max) {
    idset_t ended = {0}, still = {0};
    l->skip = NULL; /* (the first listing's rule) */
    reel_err_t err;
    reel_err_clear(&err);
    int rc = REEL_EXIT_OK;
    for (;;) {
        if (fflush(stdout) != 0 || ferror(stdout)) {
            /* a reader that has gone (| head) ends it, as it ends tail -f */
            if (errno != EPIPE)
                rc = reel_cli_fail(cli, "cannot write the listing: %s", strerror(errno));
            break;
        }
        struct timespec ts = {0, FOLLOW_POLL_NS};
        nanosleep(&ts, NULL);
        scan_t sc = {open, &ended, known, max};
        reel_query_opts_t q = {.after_id = max > FOLLOW_WINDOW ? max - FOLLOW_WINDOW : 0,
                               .no_note_count = 1};
        if (reel_query_flows_each(s, &q, scan_new, &sc, &err) != REEL_OK)
            goto failed;
        max = sc.max;
        if (open->n) { /* the open ones that have ended since */
            still.n = 0;
            reel_query_opts_t qo = {.open_only = 1, .no_note_count = 1};
            if (reel_query_flows_each(s, &qo, add_id, &still, &err) != REEL_OK)
                goto failed;
            for (size_t i = 0; i < open->n; i++)
                if (!idset_has(&still, open->v[i]))
                    idset_add(&ended, open->v[i]);
            idset_keep(open, in_set, &still);
        }
        if (ended.n && list_ids(s, filter, &ended, l, &err) != REEL_OK)
            goto failed;
        ended.n = 0;
        int64_t floor = max - FOLLOW_WINDOW;
        idset_keep(known, above, &floor);
    }
    goto out;
failed:
    rc = reel_cli_query_fail(cli, s, &err);
out:
    free(ended.v);
    free(still.v);
    return rc;
}

int reel_cmd_flows(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"limit", required_argument, NULL, 'n'},
                                         {"since", required_argument, NULL, 's'},
                                         {"wide", no_argument, NULL, 'w'},
                                         {"follow", no_argument, NULL, 'f'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    long long limit = -1, since = 0;
    int have_since = 0, wide = 0, follow_on = 0, c;
    while ((c = reel_cli_getopt(argc, argv, "hn:f", opts)) != -1) {
        if (c == 'w') {
            wide = 1;
            continue;
        }
        if (c == 'f') {
            follow_on = 1;
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
    /* --follow: what the first listing leaves to the loop, taken first:
     * the newest flow, the window below it, the flows open */
    idset_t open = {0}, known = {0};
    int64_t max = 0;
    if (follow_on) {
        int64_t *last = NULL;
        size_t nlast = 0;
        reel_query_opts_t qm = {.desc = 1, .limit = 1};
        if (reel_query_ids(s, &qm, &last, &nlast, &err) != REEL_OK) {
            rc = reel_cli_query_fail(cli, s, &err);
            goto out;
        }
        max = nlast ? last[0] : 0;
        free(last);
        reel_query_opts_t qw = {.after_id = max > FOLLOW_WINDOW ? max - FOLLOW_WINDOW : 0,
                                .no_note_count = 1};
        reel_query_opts_t qo = {.open_only = 1, .no_note_count = 1};
        if (reel_query_flows_each(s, &qw, add_id, &known, &err) != REEL_OK ||
            reel_query_flows_each(s, &qo, add_id, &open, &err) != REEL_OK) {
            rc = reel_cli_query_fail(cli, s, &err);
            goto out;
        }
        /* (those indexed or started since: new to the loop) */
        idset_keep(&known, at_most, &max);
        idset_keep(&open, at_most, &max);
    }
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
    list_t l = {.json = cli->json && !follow_on ? json_array() : NULL,
                .lines = cli->json && follow_on,
                .layout = {.esc = reel_cli_escaping()}};
    if (follow_on) {
        l.skip = &open;
        l.known = &known;
        l.upto = max;
    }
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
    if (follow_on)
        rc = follow(cli, s, q.filter, &l, &open, &known, max);
    else if (l.json)
        rc = reel_cli_json_out(l.json);
    else if (l.rows == 0 && q.filter != NULL)
        reel_cli_no_match(cli, argv[optind], q.filter);
out:
    free(open.v);
    free(known.v);
    free(keep);
    reel_session_close(s);
    return rc;
}
