#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/filter.h"

static const char usage[] =
    "usage: reel flows [--home DIR] [--json] [--wide] [--limit N] [--since WHEN] SESSION\n"
    "                  [FILTER]\n"
    "\n"
    "Lists flows, oldest first: id, start time, method, URL, status, request and\n"
    "response body sizes, duration, tags and mark (*), then the error if any.\n"
    "WebSocket (WS) and raw TCP flows show their message count as the status and\n"
    "the payload bytes each way as the sizes.\n"
    "On a terminal each row is cut to the terminal's width (a long URL ends in\n"
    "an ellipsis) and control characters are shown as \\xNN; into a pipe or a\n"
    "file, with --wide or with --json, every value is written whole.\n"
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
    "~e error, ~s response, ~q no response, ~marked, ~all, ~http, ~websocket, ~tcp,\n"
    "~tag NAME, ~id N[-M], ~since/~until WHEN, ~size >10k, ~damaged; !X, X & Y,\n"
    "X | Y, (X); a bare word is ~u. Quote a regex holding | or & or parentheses.\n"
    "Every operator: docs/filters.md.\n"
    "\n"
    "--json adds per flow: client_addr, server_addr, request_end_us, messages,\n"
    "response_start_us, response_generated (reel sent the response itself),\n"
    "request_body_dropped/response_body_dropped (bytes not stored because capture\n"
    "fell behind) and damaged.\n"
    "Example: reel flows mysession '~d example.com & !~c 200'\n";

/* Columns of a row besides the URL, tags and error: "%6lld%s %s %-7s " and
 * " %3s %9s %9s %7s". */
#define ROW_FIXED 72
/* URL columns kept on a terminal too narrow for the row. */
#define URL_MIN 20
/* URLs are padded to this many columns so the next ones line up. */
#define URL_PAD 60

typedef struct {
    int esc;        /* REEL_CLI_ESC on a terminal */
    size_t width;   /* cut rows to this many columns; 0 = never */
    size_t url_max; /* cut URLs to this many columns (with width) */
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
                      const char *method, const char *url, const char *st, const char *qs,
                      const char *rs, const char *dur, const char *tags, const char *error) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_printf(&b, "%6lld%s %s ", id, marked ? "*" : " ", t);
    put_field(&b, l, method, 0, 7);
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
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_READ);
    if (s == NULL) {
        reel_filter_free(f);
        return REEL_EXIT_ERROR;
    }
    /* Header and body terms: the SQL narrows the rows, the spool decides.
     * With --limit, a first pass finds the newest N matches (ascending in
     * keep[]) and the listing shows those. */
    bool spool = reel_filter_needs_spool(f);
    int64_t *keep = NULL;
    size_t nkeep = 0;
    int rc = REEL_EXIT_OK;
    sqlite3_stmt *st = NULL;
    char *sql = NULL;
    if (spool && limit >= 0) {
        sql = reel_asprintf("SELECT id FROM flows WHERE (%s)%s ORDER BY id DESC",
                            reel_filter_sql(f), have_since ? " AND start_us >= ?" : "");
        if (sqlite3_prepare_v2(reel_session_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
            rc = reel_cli_db_fail(cli, s);
            goto out;
        }
        int k = reel_filter_bind(f, st, 1);
        if (have_since)
            sqlite3_bind_int64(st, k++, since);
        keep = reel_calloc((size_t)limit, sizeof *keep);
        int step = SQLITE_DONE;
        while ((long long)nkeep < limit && (step = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            int match = 0;
            if (reel_filter_match_flow(f, s, (uint64_t)id, &match, &err) != REEL_OK) {
                rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
                goto out;
            }
            if (match)
                keep[nkeep++] = id;
        }
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = reel_cli_db_fail(cli, s);
            goto out;
        }
        for (size_t i = 0; i < nkeep / 2; i++) { /* to ascending order */
            int64_t t = keep[i];
            keep[i] = keep[nkeep - 1 - i];
            keep[nkeep - 1 - i] = t;
        }
        sqlite3_finalize(st);
        st = NULL;
        free(sql);
        limit = -1;
    }
    sql = reel_asprintf(
        "SELECT * FROM (SELECT id, start_us, method, url, status, request_body_size, "
        "response_body_size, end_us, (SELECT group_concat(tag, ',') FROM tags t WHERE t.flow_id "
        "= flows.id), marked, state, error, kind, host, port, client_addr, server_addr, "
        "request_end_us, response_start_us, response_generated, request_body_dropped, "
        "response_body_dropped, damaged, messages FROM flows WHERE (%s)%s%s ORDER BY id "
        "DESC%s) ORDER BY id",
        reel_filter_sql(f), have_since ? " AND start_us >= ?" : "", keep ? " AND id >= ?" : "",
        limit >= 0 ? " LIMIT ?" : "");
    if (sqlite3_prepare_v2(reel_session_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
        rc = reel_cli_db_fail(cli, s);
        goto out;
    }
    int k = reel_filter_bind(f, st, 1);
    if (have_since)
        sqlite3_bind_int64(st, k++, since);
    if (keep)
        sqlite3_bind_int64(st, k++, nkeep ? keep[0] : INT64_MAX);
    if (limit >= 0)
        sqlite3_bind_int64(st, k++, limit);
    json_t *arr = cli->json ? json_array() : NULL;
    layout_t layout = {.esc = reel_cli_escaping()};
    if (layout.esc && !wide) {
        layout.width = reel_cli_term_width();
        /* Two columns stay for the start of the tags or the error. */
        layout.url_max =
            layout.width > ROW_FIXED + 2 + URL_MIN ? layout.width - ROW_FIXED - 2 : URL_MIN;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0), start = sqlite3_column_int64(st, 1);
        if (keep) {
            size_t lo = 0, hi = nkeep; /* id in keep[]? */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (keep[mid] < id)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == nkeep || keep[lo] != id)
                continue;
        } else if (spool) {
            int match = 0;
            if (reel_filter_match_flow(f, s, (uint64_t)id, &match, &err) != REEL_OK) {
                json_decref(arr);
                rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
                goto out;
            }
            if (!match)
                continue;
        }
        const char *method = (const char *)sqlite3_column_text(st, 2);
        const char *url = (const char *)sqlite3_column_text(st, 3);
        int has_status = sqlite3_column_type(st, 4) != SQLITE_NULL;
        long long status = sqlite3_column_int64(st, 4);
        long long qsize = sqlite3_column_int64(st, 5), rsize = sqlite3_column_int64(st, 6);
        int has_end = sqlite3_column_type(st, 7) != SQLITE_NULL;
        long long end = sqlite3_column_int64(st, 7);
        const char *tags = (const char *)sqlite3_column_text(st, 8);
        int marked = sqlite3_column_int(st, 9);
        const char *state = (const char *)sqlite3_column_text(st, 10);
        const char *error = (const char *)sqlite3_column_text(st, 11);
        const char *kind = (const char *)sqlite3_column_text(st, 12);
        if (arr) {
            json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:I, s:I, s:b, s:s}", "id", (json_int_t)id,
                                  "start_us", (json_int_t)start, "state", state ? state : "",
                                  "kind", kind ? kind : "http", "request_body_size",
                                  (json_int_t)qsize, "response_body_size", (json_int_t)rsize,
                                  "marked", marked, "url", url ? url : "");
            json_object_set_new(o, "method", method ? json_string(method) : json_null());
            json_object_set_new(o, "status", has_status ? json_integer(status) : json_null());
            json_object_set_new(o, "end_us", has_end ? json_integer(end) : json_null());
            json_object_set_new(o, "duration_us", has_end ? json_integer(end - start) : json_null());
            json_object_set_new(o, "error", error ? json_string(error) : json_null());
            /* where it went and when its phases ended; what reel itself
             * answered; what of it was not stored or is known lost */
            static const char *const addr_keys[] = {"client_addr", "server_addr"};
            for (int a = 0; a < 2; a++) {
                const char *v = (const char *)sqlite3_column_text(st, 15 + a);
                json_object_set_new(o, addr_keys[a], v ? json_string(v) : json_null());
            }
            static const char *const time_keys[] = {"request_end_us", "response_start_us"};
            for (int a = 0; a < 2; a++)
                json_object_set_new(o, time_keys[a],
                                    sqlite3_column_type(st, 17 + a) == SQLITE_NULL
                                        ? json_null()
                                        : json_integer(sqlite3_column_int64(st, 17 + a)));
            json_object_set_new(o, "response_generated",
                                json_boolean(sqlite3_column_int(st, 19)));
            json_object_set_new(o, "request_body_dropped",
                                json_integer(sqlite3_column_int64(st, 20)));
            json_object_set_new(o, "response_body_dropped",
                                json_integer(sqlite3_column_int64(st, 21)));
            json_object_set_new(o, "damaged", json_boolean(sqlite3_column_int(st, 22)));
            json_object_set_new(o, "messages", json_integer(sqlite3_column_int64(st, 23)));
            json_t *ta = json_array();
            if (tags) {
                char *dup = reel_strdup(tags), *save = NULL;
                for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save))
                    json_array_append_new(ta, json_string(t));
                free(dup);
            }
            json_object_set_new(o, "tags", ta);
            json_array_append_new(arr, o);
            continue;
        }
        char t[32], qs[16], rs[16], dur[24], st_s[8];
        reel_cli_time(start, t);
        reel_cli_size((unsigned long long)qsize, qs);
        reel_cli_size((unsigned long long)rsize, rs);
        if (has_end && end >= start) {
            long long us = end - start;
            if (us < 1000000)
                snprintf(dur, sizeof dur, "%lldms", us / 1000);
            else
                snprintf(dur, sizeof dur, "%.1fs", (double)us / 1e6);
        } else {
            snprintf(dur, sizeof dur, "-");
        }
        if (has_status)
            snprintf(st_s, sizeof st_s, "%lld", status);
        else
            snprintf(st_s, sizeof st_s, "%s", state && strcmp(state, "error") == 0 ? "ERR" : "-");
        /* WebSocket and TCP flows: the kind in the method column, their
         * message count in the status column */
        bool ws = kind && strcmp(kind, "websocket") == 0, tcp = kind && strcmp(kind, "tunnel") == 0;
        if (ws || tcp) {
            long long nm = sqlite3_column_int64(st, 23);
            if (nm < 1000)
                snprintf(st_s, sizeof st_s, "%d", (int)nm);
            else
                snprintf(st_s, sizeof st_s, "1k+");
        }
        print_row(&layout, id, marked, t, ws ? "WS" : tcp ? "TCP" : method ? method : "-",
                  url ? url : "-", st_s, qs, rs, dur, tags, error);
    }
    if (step != SQLITE_DONE) {
        json_decref(arr);
        rc = reel_cli_db_fail(cli, s);
        goto out;
    }
    if (arr)
        rc = reel_cli_json_out(arr);
out:
    free(keep);
    sqlite3_finalize(st);
    free(sql);
    reel_filter_free(f);
    reel_session_close(s);
    return rc;
}
