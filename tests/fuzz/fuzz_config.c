/* libFuzzer harness: configuration values and files (src/session/config.h).
 *
 * Input: one mode byte, then text (a NUL inside ends values, as on a
 * command line; the YAML file gets every byte).
 *   mode % 4 == 0  the text as the value of every option: reel_config_validate
 *                  (an accepted value's canonical form must validate to
 *                  itself), --set NAME=VALUE, and the session overlay
 *                  (reel_overlay_set, load_overlay, typed getters, unset);
 *   mode % 4 == 1  the text as an option name (unknown names get near-match
 *                  suggestions) and as a whole --set assignment;
 *   mode % 4 == 2  the text as the user's config.yaml: reel_config_load_user,
 *                  then every option read back through its typed getter;
 *   mode % 4 == 3  the text as overlay rows "key<TAB>value" per line written
 *                  straight into config_overlay (as another build or a hand
 *                  edit might), then reel_config_load_overlay. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/config.h"
#include "session/index.h"

static sqlite3 *db;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_tmpdir("config");
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_index_open(":memory:", 1, &db, &err) != REEL_OK) {
        fprintf(stderr, "fuzz_config: %s\n", reel_err_str(&err));
        abort();
    }
    return 0;
}

/* Reads every option of c through the getter of its type. */
static void read_all(const reel_config_t *c) {
    for (const reel_option_t *o = reel_options(); o->name; o++) {
        reel_layer layer;
        const char *v = reel_config_get(c, o->name, &layer);
        FUZZ_CHECK(v != NULL && reel_layer_name(layer) != NULL, "%s: no value", o->name);
        /* whatever a layer holds must be canonical already */
        char *canon = NULL;
        reel_err_t err;
        reel_err_clear(&err);
        FUZZ_CHECK(reel_config_validate(o->name, v, &canon, &err) == REEL_OK,
                   "%s: stored value '%s' does not validate: %s", o->name, v, reel_err_str(&err));
        FUZZ_CHECK(strcmp(canon, v) == 0, "%s: stored '%s', canonical '%s'", o->name, v, canon);
        free(canon);
        switch (o->type) {
        case REEL_OPT_INT:
        case REEL_OPT_SIZE: {
            int64_t n = reel_config_get_int(c, o->name);
            FUZZ_CHECK(n >= o->min && n <= o->max, "%s = %lld outside its range", o->name,
                       (long long)n);
            break;
        }
        case REEL_OPT_BOOL:
            (void)reel_config_get_bool(c, o->name);
            break;
        case REEL_OPT_LIST: {
            size_t n = 0;
            char **items = reel_config_get_list(c, o->name, &n);
            FUZZ_CHECK(items != NULL && items[n] == NULL, "%s: list not terminated", o->name);
            free(items);
            break;
        }
        default:
            break;
        }
    }
}

static void values(const char *v) {
    reel_config_t *c = reel_config_new();
    for (const reel_option_t *o = reel_options(); o->name; o++) {
        reel_err_t err;
        reel_err_clear(&err);
        char *canon = NULL;
        reel_rc rc = reel_config_validate(o->name, v, &canon, &err);
        if (rc != REEL_OK) {
            FUZZ_CHECK(rc == REEL_INVALID && canon == NULL && err.msg[0], "%s: rc %d", o->name,
                       (int)rc);
        } else {
            FUZZ_CHECK(canon != NULL, "%s: no canonical form", o->name);
            char *again = NULL;
            reel_err_clear(&err);
            FUZZ_CHECK(reel_config_validate(o->name, canon, &again, &err) == REEL_OK,
                       "%s: canonical '%s' of '%s' is refused: %s", o->name, canon, v,
                       reel_err_str(&err));
            FUZZ_CHECK(strcmp(again, canon) == 0, "%s: canonical '%s' becomes '%s'", o->name,
                       canon, again);
            free(again);
        }
        char *assign = reel_asprintf("%s=%s", o->name, v);
        reel_err_clear(&err);
        FUZZ_CHECK((reel_config_set_cli(c, assign, &err) == REEL_OK) == (rc == REEL_OK),
                   "--set %s disagrees with validate", o->name);
        free(assign);
        if (rc == REEL_OK) {
            reel_err_clear(&err);
            reel_rc orc = reel_overlay_set(db, o->name, v, "fuzz", &err);
            FUZZ_CHECK(orc == REEL_OK, "overlay_set %s: %s", o->name, reel_err_str(&err));
        }
        free(canon);
        char *d = reel_option_describe(o);
        free(d);
    }
    read_all(c);
    reel_config_free(c);

    c = reel_config_new();
    char *warnings = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    FUZZ_CHECK(reel_config_load_overlay(c, db, &warnings, &err) == REEL_OK, "load_overlay: %s",
               reel_err_str(&err));
    FUZZ_CHECK(warnings == NULL, "warnings for values set through reel_overlay_set: %s", warnings);
    read_all(c);
    reel_config_free(c);
    for (const reel_option_t *o = reel_options(); o->name; o++)
        reel_overlay_unset(db, o->name, "fuzz", NULL);
    sqlite3_exec(db, "DELETE FROM config_history", NULL, NULL, NULL);
}

static void names(const char *name) {
    reel_err_t err;
    reel_err_clear(&err);
    char *canon = NULL;
    reel_rc rc = reel_config_validate(name, "1", &canon, &err);
    FUZZ_CHECK((rc == REEL_NOTFOUND) == (reel_option_find(name) == NULL), "find vs validate");
    free(canon);
    reel_err_clear(&err);
    const reel_option_t *o = reel_option_lookup(name, &err);
    FUZZ_CHECK(o != NULL || (err.code == REEL_NOTFOUND && err.msg[0]), "lookup");
    reel_config_t *c = reel_config_new();
    reel_err_clear(&err);
    reel_config_set_cli(c, name, &err);
    read_all(c);
    reel_config_free(c);
}

static void yaml(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("config.yaml");
    fuzz_write_file(path, data, size);
    reel_config_t *c = reel_config_new();
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_config_load_user(c, path, &err);
    FUZZ_CHECK(rc == REEL_OK || rc == REEL_INVALID || rc == REEL_LIMIT, "load_user: %d %s",
               (int)rc, reel_err_str(&err));
    if (rc != REEL_OK) {
        /* the file applies whole or not at all */
        for (const reel_option_t *o = reel_options(); o->name; o++) {
            reel_layer l;
            reel_config_get(c, o->name, &l);
            FUZZ_CHECK(l == REEL_LAYER_DEFAULT, "%s changed by a refused file", o->name);
        }
    }
    read_all(c);
    reel_config_free(c);
}

static void rows(const char *text) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO config_overlay(key, value, updated_us) "
                           "VALUES(?, ?, 0)",
                           -1, &st, NULL) != SQLITE_OK)
        abort();
    char *copy = reel_strdup(text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        const char *value = "";
        if (tab) {
            *tab = '\0';
            value = tab + 1;
        }
        sqlite3_bind_text(st, 1, line, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    free(copy);
    reel_config_t *c = reel_config_new();
    char *warnings = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    FUZZ_CHECK(reel_config_load_overlay(c, db, &warnings, &err) == REEL_OK, "load_overlay: %s",
               reel_err_str(&err));
    free(warnings);
    read_all(c);
    reel_config_free(c);
    sqlite3_exec(db, "DELETE FROM config_overlay", NULL, NULL, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 256 * 1024)
        return 0;
    char *text = reel_strndup((const char *)data + 1, size - 1);
    switch (data[0] % 4) {
    case 0:
        values(text);
        break;
    case 1:
        names(text);
        break;
    case 2:
        yaml(data + 1, size - 1);
        break;
    default:
        rows(text);
        break;
    }
    free(text);
    return 0;
}
