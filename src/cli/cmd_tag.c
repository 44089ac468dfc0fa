/* `reel tag` and `reel untag`: one feature, one file. */
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/filter.h"
#include "session/query.h"

static const char tag_usage[] =
    "usage: reel tag [--home DIR] [--json] SESSION ID TAG...\n"
    "       reel tag [--home DIR] [--json] SESSION --filter FILTER TAG...\n"
    "\n"
    "Adds TAGs to flow ID, or to every flow FILTER matches (docs/filters.md),\n"
    "saying how many. A tag is 1-128 letters, digits, '-', '_', '.', ':'\n"
    "and '/', not starting with '.' or '-'. Find tagged flows with:\n"
    "reel flows SESSION '~tag TAG'\n"
    "\n"
    "  --json   print {\"flow\": ID, \"added\": N} (N: tags the flow did not have);\n"
    "           with --filter {\"matched\": M, \"added\": N}\n";
static const char untag_usage[] =
    "usage: reel untag [--home DIR] [--json] SESSION ID TAG...\n"
    "       reel untag [--home DIR] [--json] SESSION --filter FILTER TAG...\n"
    "\n"
    "Removes TAGs from flow ID, or from every flow FILTER matches (any tag it\n"
    "has, also one an older reel allowed that 'reel tag' now refuses).\n"
    "\n"
    "  --json   print {\"flow\": ID, \"removed\": N}; with --filter\n"
    "           {\"matched\": M, \"removed\": N}\n";

/* Tags removed need only be tags something could have stored. */
static int untag_ok(const char *t) {
    size_t n = strlen(t);
    return n > 0 && n <= 128;
}

static int run(reel_cli_t *cli, int argc, char **argv, int add) {
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
        int rc = reel_cli_common_opt(cli, c, add ? tag_usage : untag_usage);
        if (rc >= 0)
            return rc;
    }
    /* the tags start after SESSION and ID, or after SESSION with --filter */
    int first_tag = optind + (filter ? 1 : 2);
    if (argc - first_tag < 1)
        return reel_cli_usage(cli, filter ? "expected SESSION and at least one TAG"
                                          : "expected SESSION, flow ID and at least one TAG");
    unsigned long long id = 0;
    if (!filter && (id = reel_cli_flow_id(cli, argv[optind + 1])) == 0)
        return REEL_EXIT_USAGE;
    reel_err_t err;
    reel_err_clear(&err);
    for (int i = first_tag; i < argc; i++) {
        if (add && reel_session_tag_check(argv[i], &err) != REEL_OK)
            return reel_cli_fail(cli, "%s", reel_err_str(&err));
        if (!add && !untag_ok(argv[i]))
            return reel_cli_fail(cli, "invalid tag: expected 1-128 bytes");
    }
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
    int64_t one = (int64_t)id;
    reel_query_target_t t = {.filter = filter};
    if (!filter) {
        t.ids = &one;
        t.n = 1;
    }
    reel_query_result_t res;
    if (reel_query_tag(s, &t, (const char *const *)argv + first_tag, (size_t)(argc - first_tag),
                       add, &res, &err) != REEL_OK) {
        rc = reel_cli_query_fail(cli, s, &err);
        goto out;
    }
    long long changed = (long long)res.changed;
    size_t nids = res.matched;
    if (filter && !cli->json)
        printf("%s %lld tag%s %s %zu matching flow%s\n", add ? "added" : "removed", changed,
               changed == 1 ? "" : "s", add ? "to" : "from", nids, nids == 1 ? "" : "s");
    else if (filter)
        reel_cli_json_out(json_pack("{s:I, s:I}", "matched", (json_int_t)nids,
                                    add ? "added" : "removed", (json_int_t)changed));
    else if (!cli->json)
        printf("%s %lld tag%s %s flow %llu\n", add ? "added" : "removed", changed,
               changed == 1 ? "" : "s", add ? "to" : "from", id);
    else
        reel_cli_json_out(json_pack("{s:I, s:I}", "flow", (json_int_t)id,
                                    add ? "added" : "removed", (json_int_t)changed));
out:
    reel_session_close(s);
    return rc;
}

int reel_cmd_tag(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 1);
}

int reel_cmd_untag(reel_cli_t *cli, int argc, char **argv) {
    return run(cli, argc, argv, 0);
}
