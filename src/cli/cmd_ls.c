#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/index.h"
#include "session/query.h"

static const char usage[] =
    "usage: reel ls [--home DIR] [--json]\n"
    "\n"
    "Lists the sessions under the sessions root with their flow count,\n"
    "size on disk, creation time and, if one is recording, its PID.\n"
    "A session whose index another process is rebuilding (reel repair,\n"
    "reel compact) is listed as busy, with who is at it and no counts;\n"
    "that is not a failure.\n"
    "Exits 1 if a session could not be read: it is listed as damaged (its\n"
    "index is damaged or missing; 'reel repair' rebuilds it) or unreadable.\n";

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int reel_cmd_ls(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 0, 0, "expected no arguments");
    if (arc >= 0)
        return arc;
    const char *home = reel_cli_home(cli);
    DIR *d = opendir(home);
    size_t n = 0, cap = 16;
    char **names = reel_malloc(cap * sizeof *names);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        /* A session has session.db, or at least a spool (its index lost). */
        char *db = reel_asprintf("%s/%s/session.db", home, e->d_name);
        char *sp = reel_asprintf("%s/%s/spool", home, e->d_name);
        struct stat st;
        int ok = stat(db, &st) == 0 || (stat(sp, &st) == 0 && S_ISDIR(st.st_mode));
        free(db);
        free(sp);
        if (!ok)
            continue;
        if (n == cap)
            names = reel_realloc(names, (cap *= 2) * sizeof *names);
        names[n++] = reel_strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    json_t *arr = json_array();
    int unreadable = 0;
    if (!cli->json && n)
        printf("%-32s %8s %10s  %-23s %s\n", "SESSION", "FLOWS", "SIZE", "CREATED", "RECORDING");
    for (size_t i = 0; i < n; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        reel_session_t *s = NULL;
        char *path = reel_asprintf("%s/%s", home, names[i]);
        unsigned long long bytes = reel_session_dir_bytes(path);
        free(path);
        reel_rc orc = reel_session_open(home, names[i], REEL_OPEN_READ, &s, &err);
        if (orc != REEL_OK) {
            /* Also a directory named against the rule (an older reel
             * allowed more): listed, so that it can be renamed. Busy
             * (REEL_LOCKED: a rebuild by another process holds it) is not
             * a failure: the session is whole again when that is done. */
            int busy = orc == REEL_LOCKED;
            char *shown = reel_cli_escaped(names[i], strlen(names[i]), REEL_CLI_ESC);
            if (cli->json) {
                json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:b}", "session", shown,
                                                     "error", reel_err_str(&err), "damaged",
                                                     orc == REEL_CORRUPT, "busy", busy));
            } else {
                reel_cli_put(names[i]);
                printf("%*s (%s: %s)\n", (int)(strlen(shown) < 32 ? 32 - strlen(shown) : 0), "",
                       busy                  ? "busy"
                       : orc == REEL_CORRUPT ? "damaged"
                                             : "unreadable",
                       reel_err_str(&err));
            }
            free(shown);
            if (!busy)
                unreadable++;
            continue;
        }
        /* what opening it recovered (a torn tail moved aside, a rebuilt
         * index, interrupted flows), as every other command says it */
        const char *note = reel_session_recovery_note(s);
        if (note[0]) {
            char *shown = reel_cli_escaped(names[i], strlen(names[i]), REEL_CLI_ESC);
            fprintf(stderr, "reel: session '%s': %s\n", shown, note);
            free(shown);
        }
        int64_t flows = 0;
        if (reel_query_count(s, NULL, &flows, &err) != REEL_OK) {
            const char *msg = reel_err_str(&err); /* "session.db: <SQLite's message>" */
            if (cli->json)
                json_array_append_new(arr, json_pack("{s:s, s:s}", "session", names[i], "error",
                                                     strncmp(msg, "session.db: ", 12) == 0
                                                         ? msg + 12
                                                         : msg));
            else
                printf("%-32s (unreadable: %s; 'reel repair %s' rebuilds it)\n", names[i], msg,
                       names[i]);
            unreadable++;
            reel_session_close(s);
            continue;
        }
        char *created = reel_index_meta_get(reel_session_db(s), "created_us");
        long long cus = created ? strtoll(created, NULL, 10) : 0;
        free(created);
        long pid = reel_session_recorder_pid(s);
        if (cli->json) {
            json_t *o = json_pack("{s:s, s:I, s:I, s:I}", "session", names[i], "flows",
                                  (json_int_t)flows, "bytes", (json_int_t)bytes, "created_us",
                                  (json_int_t)cus);
            json_object_set_new(o, "recording_pid", pid ? json_integer(pid) : json_null());
            json_array_append_new(arr, o);
        } else {
            char t[32], sz[16], rec[32] = "";
            reel_cli_time(cus, t);
            reel_cli_size(bytes, sz);
            if (pid)
                snprintf(rec, sizeof rec, "pid %ld", pid);
            printf("%-32s %8lld %10s  %-23s %s\n", names[i], (long long)flows, sz, t, rec);
        }
        reel_session_close(s);
    }
    if (!cli->json && n == 0)
        printf("no sessions in %s\n", home);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (cli->json) {
        int rc = reel_cli_json_out(arr);
        return unreadable ? REEL_EXIT_ERROR : rc;
    }
    json_decref(arr);
    if (unreadable)
        return reel_cli_fail(cli, "%d session%s could not be read", unreadable,
                             unreadable == 1 ? "" : "s");
    return REEL_EXIT_OK;
}
