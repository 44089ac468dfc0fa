/* `reel mark` and `reel unmark`: one feature, one file. Marks live in the
 * marks table (user data, kept by repair) and are mirrored in flows.marked
 * for filtering. */
#include <stdlib.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/filter.h"
#include "session/query.h"

static const char mark_usage[] =
    "usage: reel mark [--home DIR] [--json] SESSION ID...\n"
    "       reel mark [--home DIR] [--json] SESSION --filter FILTER\n"
    "\n"
    "Marks flows (shown with * in 'reel flows'; filter: ~marked): the IDs given,\n"
    "or every flow FILTER matches (docs/filters.md), saying how many.\n"
    "\n"
    "  --json   print {\"marked\": N} (N: flow IDs given, or flows matched)\n";
static const char unmark_usage[] =
    "usage: reel unmark [--home DIR] [--json] SESSION ID...\n"
    "       reel unmark [--home DIR] [--json] SESSION --filter FILTER\n"
    "\n"
    "Removes the mark from flows: the IDs given, or every flow FILTER matches.\n"
    "\n"
    "  --json   print {\"unmarked\": N}\n";

static int run(reel_cli_t *cli, int argc, char **argv, int mark) {
    static const struct option opts[] = {{"filter", required_argument, NULL, 'F'},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    const char *filter = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == 'F') {
            filter = optarg;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, mark ? mark_usage : unmark_usage);
        if (rc >= 0)
            return rc;
    }
    if (filter ? argc - optind != 1 : argc - optind < 2)
        return reel_cli_usage(cli, filter ? "expected SESSION and no flow ID with --filter"
                                          : "expected SESSION and at least one flow ID");
    for (int i = optind + 1; i < argc; i++)
        if (reel_cli_flow_id(cli, argv[i]) == 0)
            return REEL_EXIT_USAGE;
    reel_err_t err;
    reel_err_clear(&err);
    if (filter) { /* a bad filter is refused before the session opens */
        reel_filter_t *f = NULL;
        if (reel_filter_compile(filter, &f, &err) != REEL_OK)
            return reel_cli_fail(cli, "%s", reel_err_str(&err));
        reel_filter_free(f);
    }
    reel_session_t *s = reel_cli_open(cli, argv[optind], 0);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    int rc = REEL_EXIT_OK;
    reel_query_target_t t = {.filter = filter};
    if (!filter) {
        t.n = (size_t)(argc - optind - 1);
        int64_t *ids = reel_calloc(t.n, sizeof *ids);
        for (size_t i = 0; i < t.n; i++)
            ids[i] = (int64_t)reel_cli_flow_id(cli, argv[optind + 1 + (int)i]);
        t.ids = ids;
    }
    reel_query_result_t res;
    if (reel_query_mark(s, &t, mark, &res, &err) != REEL_OK)
        rc = reel_cli_query_fail(cli, s, &err);
    else if (!cli->json)
        printf("%s %zu %sflow%s\n", mark ? "marked" : "unmarked", res.matched,
               filter ? "matching " : "", res.matched == 1 ? "" : "s");
    else
        reel_cli_json_out(
            json_pack("{s:I}", mark ? "marked" : "unmarked", (json_int_t)res.matched));
    free((void *)t.ids);
    reel_session_close(s);
    return rc;
}

int reel_cmd_mark(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 1);
}

int reel_cmd_unmark(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 0);
}
