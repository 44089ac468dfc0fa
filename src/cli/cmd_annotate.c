#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "session/flowread.h"
#include "session/filter.h"
#include "session/query.h"

static const char usage[] =
    "usage: reel annotate [--home DIR] [--json] SESSION ID [TEXT]\n"
    "       reel annotate [--home DIR] SESSION ID --delete N\n"
    "       reel annotate [--home DIR] [--json] SESSION --filter FILTER TEXT\n"
    "\n"
    "Adds TEXT as a note on flow ID (a flow can have many), or, without TEXT,\n"
    "lists the flow's notes with their numbers and times. --delete N removes\n"
    "note number N of that flow. With --filter, adds TEXT to every flow FILTER\n"
    "matches (docs/filters.md) and says how many ({\"annotated\": N} with --json).\n"
    "Works while the session is recording. A TEXT that starts with '-' goes\n"
    "after --: reel annotate S 12 -- '-x is flaky'.\n"
    "On a terminal, control characters in listed notes are shown as \\xNN.\n";

/* reel annotate SESSION --filter FILTER TEXT */
static int annotate_filter(reel_cli_t *cli, int argc, char **argv, const char *filter,
                           long long del) {
    if (del)
        return reel_cli_usage(cli, "--delete takes a flow ID, not --filter");
    if (argc - optind != 2)
        return reel_cli_usage(cli, "expected SESSION and one TEXT argument with --filter");
    const char *text = argv[optind + 1];
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_note_check(text, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    /* a bad filter is refused before the session opens */
    reel_filter_t *f = NULL;
    if (reel_filter_compile(filter, &f, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    reel_filter_free(f);
    reel_session_t *s = reel_cli_open(cli, argv[optind], 0);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    int rc = REEL_EXIT_OK;
    reel_query_target_t t = {.filter = filter};
    reel_query_result_t res;
    if (reel_query_annotate(s, &t, text, &res, &err) != REEL_OK)
        rc = reel_cli_query_fail(cli, s, &err);
    else if (cli->json)
        reel_cli_json_out(json_pack("{s:I}", "annotated", (json_int_t)res.matched));
    else
        printf("added a note to %zu matching flow%s\n", res.matched, res.matched == 1 ? "" : "s");
    reel_session_close(s);
    return rc;
}

int reel_cmd_annotate(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"delete", required_argument, NULL, 'd'},
                                         {"filter", required_argument, NULL, 'F'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    long long del = 0;
    const char *filter = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "hd:", opts)) != -1) {
        if (c == 'F') {
            filter = optarg;
            continue;
        }
        if (c == 'd') {
            char *end = NULL;
            errno = 0;
            del = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end || errno || del <= 0)
                return reel_cli_usage(cli, "--delete takes a note number, not '%s'", optarg);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    int nargs = argc - optind;
    if (filter)
        return annotate_filter(cli, argc, argv, filter, del);
    if (nargs < 2 || nargs > 3 || (del && nargs != 2))
        return reel_cli_usage(cli, nargs < 2 ? "expected SESSION and flow ID"
                                             : "expected one TEXT argument (quote it)");
    unsigned long long id = reel_cli_flow_id(cli, argv[optind + 1]);
    if (id == 0)
        return REEL_EXIT_USAGE;
    const char *text = nargs == 3 ? argv[optind + 2] : NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (text && reel_query_note_check(text, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    /* listing a flow's notes only reads (works on a read-only session) */
    reel_session_t *s = reel_cli_open(cli, argv[optind], text || del ? 0 : REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    int rc = REEL_EXIT_OK;
    if (del) {
        if (reel_query_note_delete(s, (int64_t)id, del, &err) != REEL_OK)
            rc = reel_cli_query_fail(cli, s, &err);
        else if (!cli->json)
            printf("deleted note %lld of flow %llu\n", del, id);
        else
            reel_cli_json_out(
                json_pack("{s:I, s:I}", "flow", (json_int_t)id, "deleted", (json_int_t)del));
    } else if (text) {
        int64_t one = (int64_t)id;
        reel_query_target_t t = {.ids = &one, .n = 1};
        reel_query_result_t res;
        if (reel_query_annotate(s, &t, text, &res, &err) != REEL_OK)
            rc = reel_cli_query_fail(cli, s, &err);
        else if (cli->json)
            reel_cli_json_out(
                json_pack("{s:I, s:I}", "flow", (json_int_t)id, "note", (json_int_t)res.last_note));
        else
            printf("added note %lld to flow %llu\n", (long long)res.last_note, id);
    } else {
        reel_query_note_t *notes = NULL;
        size_t n = 0;
        if (reel_query_notes(s, (int64_t)id, &notes, &n, &err) != REEL_OK) {
            rc = reel_cli_query_fail(cli, s, &err);
            goto out;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            long long nid = notes[i].id, t = notes[i].created_us;
            const char *txt = notes[i].text;
            if (cli->json) {
                /* (text that is not UTF-8 as {"b64": ...}: s:s dropped the note) */
                json_array_append_new(arr, json_pack("{s:I, s:I, s:o}", "note", (json_int_t)nid,
                                                     "created_us", (json_int_t)t, "text",
                                                     reel_json_text(txt)));
            } else {
                char ts[32];
                reel_cli_time(t, ts);
                printf("%4lld  %s  ", nid, ts);
                reel_cli_put_lines(txt);
                putchar('\n');
            }
        }
        if (cli->json)
            reel_cli_json_out(arr);
        else {
            json_decref(arr);
            if (n == 0)
                printf("flow %llu has no notes\n", id);
        }
        reel_query_notes_free(notes, n);
    }
out:
    reel_session_close(s);
    return rc;
}
