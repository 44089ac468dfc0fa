/* reel config SESSION list|get|set|unset|history: a session's config overlay. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/flowread.h"
#include "session/config.h"
#include "session/index.h"
#include "session/query.h"

/* Appends text to b as lines indented by `indent`, broken at spaces so that
 * they stay within `width` columns where the words allow. */
static void put_wrapped(reel_buf_t *b, const char *text, int indent, int width) {
    int col = indent;
    reel_buf_printf(b, "%*s", indent, "");
    for (const char *p = text; *p;) {
        int w = (int)strcspn(p, " ");
        if (col > indent && col + 1 + w > width) {
            reel_buf_printf(b, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            reel_buf_puts(b, " ");
            col++;
        }
        reel_buf_append(b, p, (size_t)w);
        col += w;
        p += w;
        while (*p == ' ')
            p++;
    }
    reel_buf_puts(b, "\n");
}

/* Usage text: fixed part plus every option with its type and help. Owned. */
static char *build_usage(void) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    char *user = reel_config_user_path();
    reel_buf_printf(
        &b,
        "usage: reel config [--home DIR] [--json] SESSION [list]\n"
        "       reel config [--home DIR] [--json] SESSION get KEY\n"
        "       reel config [--home DIR] [--json] SESSION set KEY VALUE\n"
        "       reel config [--home DIR] [--json] SESSION unset KEY\n"
        "       reel config [--home DIR] [--json] SESSION add|remove KEY ITEM...\n"
        "       reel config [--home DIR] [--json] SESSION history\n"
        "\n"
        "Shows or changes the config overlay of SESSION. Layers, lowest first:\n"
        "built-in defaults < user file (%s)\n"
        "< session overlay < command-line flags. A proxy recording into the session\n"
        "applies overlay changes within a second, except to the options marked\n"
        "'at start' below, which apply when it next starts ('reel resume'), and to\n"
        "the options it was started with --set for, which keep that value until it\n"
        "stops. 'list' and 'get' show those --set values and the address it listens\n"
        "on at layer cli. The user file is never touched.\n"
        "\n"
        "  list           every option: effective value, its layer, help (default)\n"
        "  get KEY        the effective value of KEY\n"
        "  set KEY VALUE  validate VALUE and store it in the session overlay (a file\n"
        "                 must exist and is stored as an absolute path); also\n"
        "                 set KEY=VALUE, as 'reel record --set' takes it\n"
        "  unset KEY      remove KEY from the overlay (the user file or default applies)\n"
        "  add KEY ITEM.. a list option (map_remote, modify_headers, ...): its\n"
        "                 effective list with the ITEMs added at its end (one\n"
        "                 already there is not added twice), stored as set stores it\n"
        "  remove KEY ITEM..\n"
        "                 ... without the ITEMs, each of which must be in it\n"
        "  history        every overlay change: time, key, old -> new, who\n"
        "\n"
        "options:\n",
        user);
    free(user);
    for (const reel_option_t *o = reel_options(); o->name; o++) {
        char *what = reel_option_describe(o);
        reel_buf_printf(&b, "  %-21s %s", o->name, what);
        free(what);
        reel_buf_printf(&b, "; default %s%s\n", o->def[0] ? o->def : "\"\"",
                        reel_option_is_hot(o->name) ? "" : "; at start");
        put_wrapped(&b, o->help, 24, 79);
    }
    return (char *)b.data;
}

/* Prints v for people: "" for empty, control characters escaped on a
 * terminal. */
static void put_value(const char *v) {
    if (v[0] == '\0')
        fputs("\"\"", stdout);
    else
        reel_cli_put(v);
}

/* Effective config of the session without the cli layer. The user file's
 * errors are warnings here: the overlay is what this command is about. */
static reel_config_t *effective(reel_cli_t *cli, sqlite3 *db) {
    reel_config_t *cfg = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_config_load_user(cfg, NULL, &err) != REEL_OK)
        fprintf(stderr, "reel %s: warning: ignoring the user file: %s\n", cli->cmd,
                reel_err_str(&err));
    reel_err_clear(&err);
    if (reel_config_load_overlay(cfg, db, NULL, &err) != REEL_OK) {
        reel_cli_fail(cli, "%s", reel_err_str(&err));
        reel_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* What the proxy recording into the session runs with beyond the stored
 * layers (its --set options, its listen address), at layer cli. */
static void apply_running(reel_session_t *s, reel_config_t *cfg) {
    reel_config_apply_running(cfg, reel_session_db(s), reel_session_recorder_pid(s) != 0);
}

static json_t *option_json(const reel_config_t *cfg, const reel_option_t *o) {
    reel_layer layer;
    const char *v = reel_config_get(cfg, o->name, &layer);
    return json_pack("{s:s, s:o, s:s, s:s, s:b}", "name", o->name, "value", reel_json_text(v),
                     "layer", reel_layer_name(layer), "help", o->help, "valid", 1);
}

static size_t options_count(void) {
    size_t n = 0;
    while (reel_options()[n].name)
        n++;
    return n;
}

static bool same_value(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The options that the proxy recording into s applies at its next start
 * and whose overlay value differs from the one it had when the proxy
 * started: it runs with that one, where list shows the new one (a value
 * set and set back is not). pending[i] for the i-th of reel_options();
 * returns how many. */
static size_t pending_options(reel_session_t *s, bool *pending) {
    int64_t started = reel_session_recorder_since(s);
    reel_query_change_t *rows = NULL;
    size_t nrows = 0;
    reel_err_t err;
    reel_err_clear(&err);
    if (started == 0 || reel_query_history(s, &rows, &nrows, &err) != REEL_OK)
        return 0;
    size_t nopts = options_count();
    /* the value at the start: the old value of the first change after it;
     * the value now: the new value of the last (rows oldest first) */
    const char **then = reel_calloc(nopts ? nopts : 1, sizeof *then);
    const char **now = reel_calloc(nopts ? nopts : 1, sizeof *now);
    bool *seen = reel_calloc(nopts ? nopts : 1, sizeof *seen);
    for (size_t i = 0; i < nrows; i++) {
        if (rows[i].time_us <= started || rows[i].key == NULL || reel_option_is_hot(rows[i].key))
            continue;
        for (size_t k = 0; k < nopts; k++)
            if (strcmp(reel_options()[k].name, rows[i].key) == 0) {
                if (!seen[k])
                    then[k] = rows[i].old_value;
                seen[k] = true;
                now[k] = rows[i].new_value;
            }
    }
    /* an unset overlay value is the one below it (the user's file, the
     * default): setting that value, or unsetting it, is no change */
    reel_config_t *below = reel_config_new();
    reel_config_load_user(below, NULL, &err);
    size_t n = 0;
    for (size_t k = 0; k < nopts; k++) {
        if (!seen[k])
            continue;
        const char *base = reel_config_get(below, reel_options()[k].name, NULL);
        if (!same_value(then[k] ? then[k] : base, now[k] ? now[k] : base)) {
            pending[k] = true;
            n++;
        }
    }
    reel_config_free(below);
    free(then);
    free(now);
    free(seen);
    reel_query_history_free(rows, nrows);
    return n;
}

/* Whether the proxy recording into s runs with another value of key than
 * the overlay now holds (pending_options). */
static bool pending_option(reel_session_t *s, const char *key) {
    size_t nopts = options_count();
    bool *pending = reel_calloc(nopts ? nopts : 1, sizeof *pending), out = false;
    pending_options(s, pending);
    for (size_t k = 0; k < nopts; k++)
        if (pending[k] && strcmp(reel_options()[k].name, key) == 0)
            out = true;
    free(pending);
    return out;
}

static int cmd_list(reel_cli_t *cli, reel_session_t *s) {
    sqlite3 *db = reel_session_db(s);
    reel_config_t *cfg = effective(cli, db);
    if (cfg == NULL)
        return REEL_EXIT_ERROR;
    apply_running(s, cfg);
    size_t nopts = options_count();
    bool *pending = reel_calloc(nopts ? nopts : 1, sizeof *pending);
    long pid = reel_session_recorder_pid(s);
    size_t npending = pending_options(s, pending);
    json_t *arr = json_array();
    if (!cli->json)
        printf("%-21s %-16s %-8s %s\n", "OPTION", "VALUE", "LAYER", "HELP");
    for (const reel_option_t *o = reel_options(); o->name; o++) {
        if (cli->json) {
            json_t *j = option_json(cfg, o);
            if (pending[o - reel_options()])
                json_object_set_new(j, "applies", json_string("next start"));
            json_array_append_new(arr, j);
            continue;
        }
        reel_layer layer;
        const char *v = reel_config_get(cfg, o->name, &layer);
        printf("%-21s ", o->name);
        put_value(v);
        size_t w = v[0] ? strlen(v) : 2;
        printf("%*s %-8s %s\n", w < 16 ? (int)(16 - w) : 0, "", reel_layer_name(layer), o->help);
    }
    if (npending && !cli->json) {
        printf("\nchanged since the proxy recording into '%s' (pid %ld) started, which keeps its "
               "values from before until it next starts ('reel resume %s' after stopping it):",
               reel_session_name(s), pid, reel_session_name(s));
        for (size_t k = 0; k < nopts; k++)
            if (pending[k])
                printf(" %s", reel_options()[k].name);
        printf("\n");
    }
    free(pending);
    /* Overlay rows this build refuses (another version wrote them): the
     * proxy skips them too, so say so next to the effective values. */
    int rc = REEL_EXIT_OK, bad = 0;
    reel_query_overlay_t *rows = NULL;
    size_t nrows = 0;
    reel_err_t qerr;
    reel_err_clear(&qerr);
    if (reel_query_overlay(s, &rows, &nrows, &qerr) != REEL_OK) {
        rc = reel_cli_fail(cli, "%s", reel_err_str(&qerr));
        goto out;
    }
    for (size_t i = 0; i < nrows; i++) {
        const char *key = rows[i].key, *val = rows[i].value;
        reel_err_t err;
        reel_err_clear(&err);
        char *canon = NULL;
        if (key == NULL || reel_config_validate(key, val ? val : "", &canon, &err) == REEL_OK) {
            free(canon);
            continue;
        }
        if (cli->json) {
            json_array_append_new(arr, json_pack("{s:o, s:o, s:s, s:b, s:o}", "name",
                                                 reel_json_text(key), "value", reel_json_text(val),
                                                 "layer", "session", "valid", 0, "error",
                                                 reel_json_text(reel_err_str(&err))));
            continue;
        }
        if (bad++ == 0)
            printf("\nsession overlay rows this build ignores:\n");
        printf("  ");
        put_value(key);
        printf(" = ");
        put_value(val ? val : "");
        printf(": %s\n", reel_err_str(&err));
    }
out:
    reel_query_overlay_free(rows, nrows);
    if (cli->json && rc == REEL_EXIT_OK)
        rc = reel_cli_json_out(arr);
    else
        json_decref(arr);
    reel_config_free(cfg);
    return rc;
}

static int cmd_get(reel_cli_t *cli, reel_session_t *s, const char *key) {
    reel_err_t err;
    reel_err_clear(&err);
    const reel_option_t *o = reel_option_lookup(key, &err);
    if (o == NULL)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    reel_config_t *cfg = effective(cli, reel_session_db(s));
    if (cfg == NULL)
        return REEL_EXIT_ERROR;
    apply_running(s, cfg);
    int rc = REEL_EXIT_OK;
    if (cli->json) {
        rc = reel_cli_json_out(option_json(cfg, o));
    } else {
        put_value(reel_config_get(cfg, key, NULL));
        putchar('\n');
    }
    reel_config_free(cfg);
    return rc;
}

/* The value the proxy recording into the session runs key with when its
 * command line set it (layer cli, which beats the overlay until it
 * stops), or NULL. Owned. */
static char *running_value(reel_session_t *s, const char *key) {
    reel_config_t *cfg = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    reel_config_load_user(cfg, NULL, &err); /* a bad file or row is left out, as list says */
    reel_config_load_overlay(cfg, reel_session_db(s), NULL, &err);
    apply_running(s, cfg);
    reel_layer layer;
    const char *v = reel_config_get(cfg, key, &layer);
    char *out = layer == REEL_LAYER_CLI ? reel_strdup(v) : NULL;
    reel_config_free(cfg);
    return out;
}

/* When a change of key takes effect; *pid: the recording proxy's, or 0;
 * *cli_value (if cli_value is not NULL): as running_value. */
static const char *applies(reel_session_t *s, const char *key, long *pid, char **cli_value) {
    *pid = reel_session_recorder_pid(s);
    char *v = *pid ? running_value(s, key) : NULL;
    const char *when = *pid == 0                 ? "next start"
                       : v                       ? "when the proxy stops"
                       : reel_option_is_hot(key) ? "now"
                                                 : "next start";
    if (cli_value)
        *cli_value = v;
    else
        free(v);
    return when;
}

static void say_applies(reel_session_t *s, const char *key) {
    if (strncmp(key, "redact_", 7) == 0)
        return; /* read by reel export --redact, not by the proxy: nothing to wait for */
    long pid;
    char *cli_value = NULL;
    const char *when = applies(s, key, &pid, &cli_value);
    if (cli_value && strncmp(key, "listen_", 7) == 0)
        /* --listen HOST:PORT, --set listen_port=N and the address a port 0
         * was given all look the same from here: say what it listens on */
        printf("the proxy recording into '%s' (pid %ld) runs with %s = %s from its command "
               "line (--listen or --set), which takes precedence over the overlay: it keeps "
               "that address until it stops\n",
               reel_session_name(s), pid, key, cli_value);
    else if (cli_value)
        printf("the proxy recording into '%s' (pid %ld) was started with --set %s=%s, which "
               "takes precedence over the overlay: it keeps that value until it stops\n",
               reel_session_name(s), pid, key, cli_value);
    else if (strcmp(when, "now") == 0)
        printf("the proxy recording into '%s' (pid %ld) applies it within a second\n",
               reel_session_name(s), pid);
    else if (pid && !pending_option(s, key))
        printf("%s applies at the next start: the proxy recording into '%s' (pid %ld) runs with "
               "this value already (its value when it started)\n",
               key, reel_session_name(s), pid);
    else if (pid)
        printf("%s applies at the next start: the proxy recording into '%s' (pid %ld) keeps "
               "its current value until then ('reel resume %s' after stopping it)\n",
               key, reel_session_name(s), pid, reel_session_name(s));
    free(cli_value);
}

static int cmd_set(reel_cli_t *cli, reel_session_t *s, const char *key, const char *value) {
    sqlite3 *db = reel_session_db(s);
    reel_err_t err;
    reel_err_clear(&err);
    char *canon = NULL;
    if (reel_config_validate_set(key, value, &canon, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    if (reel_overlay_set(db, key, canon, NULL, &err) != REEL_OK) {
        free(canon);
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    }
    if (cli->json) {
        long pid;
        reel_cli_json_out(json_pack("{s:s, s:o, s:s, s:s}", "name", key, "value",
                                    reel_json_text(canon), "layer", "session", "applies",
                                    applies(s, key, &pid, NULL)));
    } else {
        printf("%s = ", key);
        put_value(canon);
        printf(" (session overlay)\n");
        say_applies(s, key);
    }
    free(canon);
    return REEL_EXIT_OK;
}

/* add (or remove) items[0..n) to (from) the effective value of the list
 * option key, stored in the overlay as set stores a value. */
static int cmd_add_remove(reel_cli_t *cli, reel_session_t *s, const char *key, char *const *items,
                          size_t n, bool add) {
    reel_err_t err;
    reel_err_clear(&err);
    const reel_option_t *o = reel_option_lookup(key, &err);
    if (o == NULL)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    if (o->type != REEL_OPT_LIST)
        return reel_cli_fail(cli,
                             "%s is not a list option: %s takes one whose value is a list "
                             "(ignore_hosts, map_remote, modify_headers, ...); use set",
                             key, add ? "add" : "remove");
    reel_config_t *cfg = effective(cli, reel_session_db(s));
    if (cfg == NULL)
        return REEL_EXIT_ERROR;
    size_t have = 0;
    char **list = reel_config_get_list(cfg, key, &have);
    reel_config_free(cfg);
    json_t *a = json_array();
    int rc = REEL_EXIT_OK;
    for (size_t i = 0; i < have; i++) {
        bool drop = false;
        for (size_t k = 0; !add && k < n; k++)
            drop = drop || strcmp(list[i], items[k]) == 0;
        if (!drop)
            json_array_append_new(a, json_string(list[i]));
    }
    for (size_t k = 0; k < n && rc == REEL_OK; k++) {
        bool there = false;
        for (size_t i = 0; i < have && !there; i++)
            there = strcmp(list[i], items[k]) == 0;
        for (size_t j = 0; j < k && !there && add; j++) /* (given twice) */
            there = strcmp(items[j], items[k]) == 0;
        if (add && !there) {
            json_t *v = json_string(items[k]);
            if (v == NULL) {
                rc = reel_cli_fail(cli, "%s: an item is not UTF-8 text", key);
                break;
            }
            json_array_append_new(a, v);
        } else if (!add && !there) {
            char *shown = reel_cli_escaped(items[k], strlen(items[k]), REEL_CLI_ESC);
            rc = reel_cli_fail(cli,
                               "'%s' is not in %s (nothing removed; 'reel config %s get %s' "
                               "lists it)",
                               shown, key, reel_session_name(s), key);
            free(shown);
        }
    }
    free(list);
    if (rc == REEL_EXIT_OK) {
        char *value = json_dumps(a, JSON_COMPACT);
        rc = cmd_set(cli, s, key, value);
        free(value);
    }
    json_decref(a);
    return rc;
}

static int cmd_unset(reel_cli_t *cli, reel_session_t *s, const char *key) {
    sqlite3 *db = reel_session_db(s);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_overlay_unset(db, key, NULL, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    if (reel_option_find(key) == NULL) { /* an ignored row of another version */
        if (cli->json)
            reel_cli_json_out(
                json_pack("{s:o, s:n, s:n}", "name", reel_json_text(key), "value", "layer"));
        else
            printf("unset %s in the session overlay\n", key);
        return REEL_EXIT_OK;
    }
    reel_config_t *cfg = effective(cli, db);
    if (cfg == NULL)
        return REEL_EXIT_ERROR;
    reel_layer layer;
    const char *v = reel_config_get(cfg, key, &layer);
    if (cli->json) {
        long pid;
        reel_cli_json_out(json_pack("{s:s, s:o, s:s, s:s}", "name", key, "value", reel_json_text(v),
                                    "layer", reel_layer_name(layer), "applies",
                                    applies(s, key, &pid, NULL)));
    } else {
        printf("unset %s in the session overlay; now %s = ", key, key);
        put_value(v);
        printf(" (%s)\n", reel_layer_name(layer));
        say_applies(s, key);
    }
    reel_config_free(cfg);
    return REEL_EXIT_OK;
}

static int cmd_history(reel_cli_t *cli, reel_session_t *s) {
    reel_query_change_t *rows = NULL;
    size_t n = 0;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_history(s, &rows, &n, &err) != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        long long id = rows[i].id, t = rows[i].time_us;
        const char *key = rows[i].key, *old = rows[i].old_value, *newv = rows[i].new_value;
        const char *actor = rows[i].actor;
        char ts[32];
        reel_cli_time(t, ts);
        if (cli->json) {
            json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:o, s:o, s:o, s:o}", "id",
                                                 (json_int_t)id, "time_us", (json_int_t)t, "time",
                                                 ts, "key", reel_json_text(key ? key : ""), "old",
                                                 reel_json_text(old), "new", reel_json_text(newv),
                                                 "actor", reel_json_text(actor ? actor : "")));
            continue;
        }
        printf("%s  ", ts);
        put_value(key ? key : "");
        printf("  ");
        if (old)
            put_value(old);
        else
            fputs("(unset)", stdout);
        printf(" -> ");
        if (newv)
            put_value(newv);
        else
            fputs("(unset)", stdout);
        printf("  ");
        put_value(actor ? actor : "");
        putchar('\n');
    }
    reel_query_history_free(rows, n);
    if (cli->json)
        return reel_cli_json_out(arr);
    json_decref(arr);
    if (n == 0)
        printf("no config changes recorded in session '%s'\n", reel_session_name(s));
    return REEL_EXIT_OK;
}

int reel_cmd_config(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {REEL_CLI_COMMON_OPTS, {0}};
    char *usage = build_usage();
    int rc = REEL_EXIT_OK, c;
    reel_session_t *s = NULL;
    char *key_value = NULL, *split[4];
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if ((rc = reel_cli_common_opt(cli, c, usage)) >= 0)
            goto out;
    }
    rc = REEL_EXIT_OK;
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) {
        rc = reel_cli_usage(cli, "expected a SESSION name");
        goto out;
    }
    static const struct {
        const char *name;
        int nargs;
        const char *args;
    } subs[] = {{"list", 0, ""},
                {"get", 1, " KEY"},
                {"set", 2, " KEY VALUE"},
                {"unset", 1, " KEY"},
                {"history", 0, ""},
                {"add", -2, " KEY ITEM..."},
                {"remove", -2, " KEY ITEM..."}};
    const char *sub = nargs > 1 ? args[1] : "list";
    size_t k = 0;
    while (k < sizeof subs / sizeof subs[0] && strcmp(subs[k].name, sub) != 0)
        k++;
    if (k == sizeof subs / sizeof subs[0]) {
        rc = reel_cli_usage(
            cli, "unknown subcommand '%s' (list, get, set, unset, history, add, remove)", sub);
        goto out;
    }
    if (k == 2 && nargs == 3 && strchr(args[2], '=') && args[2][0] != '=') {
        /* set KEY=VALUE, as `reel record --set` takes it */
        key_value = reel_strdup(args[2]);
        char *eq = strchr(key_value, '=');
        *eq = '\0';
        split[0] = args[0];
        split[1] = args[1];
        split[2] = key_value;
        split[3] = eq + 1;
        args = split;
        nargs = 4;
    }
    /* (a negative count: at least that many) */
    if (nargs > 1 &&
        (subs[k].nargs < 0 ? nargs - 2 < -subs[k].nargs : nargs - 2 != subs[k].nargs)) {
        rc = reel_cli_usage(cli, "%s: expected SESSION %s%s", sub, sub, subs[k].args);
        goto out;
    }
    /* list, get and history only read: they work on a session this user
     * cannot write (read-only media, someone else's copy) */
    int reads = k == 0 || k == 1 || k == 4;
    if ((s = reel_cli_open(cli, args[0], reads ? REEL_OPEN_READ : 0)) == NULL) {
        rc = REEL_EXIT_ERROR;
        goto out;
    }
    switch (k) {
    case 0:
        rc = cmd_list(cli, s);
        break;
    case 1:
        rc = cmd_get(cli, s, args[2]);
        break;
    case 2:
        rc = cmd_set(cli, s, args[2], args[3]);
        break;
    case 3:
        rc = cmd_unset(cli, s, args[2]);
        break;
    case 4:
        rc = cmd_history(cli, s);
        break;
    default:
        rc = cmd_add_remove(cli, s, args[2], args + 3, (size_t)nargs - 3, k == 5);
        break;
    }
out:
    reel_session_close(s);
    free(key_value);
    free(usage);
    return rc;
}
