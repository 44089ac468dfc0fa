#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: reel rm [--home DIR] [--json] [--yes] SESSION...\n"
    "\n"
    "Deletes sessions with everything in them. Asks first unless --yes\n"
    "is given; without a terminal to ask on, --yes is required.\n"
    "Refused for a session a proxy is recording into.\n"
    "\n"
    "  --json   print {\"deleted\": [...], \"kept\": [...], \"failed\":\n"
    "           [{\"session\": ..., \"error\": ...}]}: the sessions deleted, those\n"
    "           the user chose to keep, those that could not be deleted\n";

int reel_cmd_rm(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"yes", no_argument, NULL, 'y'}, REEL_CLI_COMMON_OPTS,
                                         {0}};
    int yes = 0, c;
    while ((c = reel_cli_getopt(argc, argv, "hy", opts)) != -1) {
        if (c == 'y') {
            yes = 1;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (argc - optind < 1)
        return reel_cli_usage(cli, "expected at least one SESSION");
    int rc = REEL_EXIT_OK;
    json_t *deleted = json_array(), *kept = json_array(), *failed = json_array();
    for (int i = optind; i < argc; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_session_name_check(argv[i], &err) != REEL_OK) {
            rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
            char *shown = reel_cli_escaped(argv[i], strlen(argv[i]), REEL_CLI_ESC);
            json_array_append_new(
                failed, json_pack("{s:s, s:s}", "session", shown, "error", reel_err_str(&err)));
            free(shown);
            continue;
        }
        /* nothing to confirm for a session that is not there: the removal
         * says so (or finishes one cut short before) */
        char *dir = reel_asprintf("%s/%s", reel_cli_home(cli), argv[i]);
        struct stat st;
        bool there = lstat(dir, &st) == 0 || errno != ENOENT;
        free(dir);
        if (!yes && there) {
            if (!isatty(STDIN_FILENO)) {
                rc = reel_cli_fail(cli,
                                   "not deleting '%s' without confirmation: stdin is "
                                   "not a terminal; pass --yes",
                                   argv[i]);
                break;
            }
            fprintf(stderr, "delete session '%s' and all its flows? [y/N] ", argv[i]);
            char ans[16] = "";
            if (fgets(ans, sizeof ans, stdin) == NULL || (ans[0] != 'y' && ans[0] != 'Y')) {
                fprintf(stderr, "kept '%s'\n", argv[i]);
                json_array_append_new(kept, json_string(argv[i]));
                continue;
            }
        }
        if (reel_session_remove(reel_cli_home(cli), argv[i], &err) != REEL_OK) {
            rc = reel_cli_fail(cli, "%s", reel_err_str(&err));
            json_array_append_new(
                failed, json_pack("{s:s, s:s}", "session", argv[i], "error", reel_err_str(&err)));
            continue;
        }
        json_array_append_new(deleted, json_string(argv[i]));
        if (!cli->json)
            printf("deleted session '%s'\n", argv[i]);
    }
    json_t *o = json_pack("{s:o, s:o, s:o}", "deleted", deleted, "kept", kept, "failed", failed);
    if (cli->json && reel_cli_json_out(o) != REEL_EXIT_OK && rc == REEL_EXIT_OK)
        rc = REEL_EXIT_ERROR;
    else if (!cli->json)
        json_decref(o);
    return rc;
}
