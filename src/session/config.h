/* Configuration: one table of options serving every layer.
 *
 *   built-in defaults < user file ($XDG_CONFIG_HOME/reel/config.yaml)
 *                     < session overlay (session.db config_overlay)
 *                     < --set KEY=VALUE on the command line
 *
 * Values are stored and shown as strings in a canonical form (e.g. "on",
 * "1048576", "a,b"); reel_config_validate turns user input into that form
 * or refuses it with a message naming the valid choices. */
#ifndef REEL_SESSION_CONFIG_H
#define REEL_SESSION_CONFIG_H

#include <sqlite3.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
    REEL_OPT_BOOL,   /* true/false, on/off, yes/no, 1/0 -> "true"/"false" */
    REEL_OPT_INT,    /* decimal integer within [min, max] */
    REEL_OPT_SIZE,   /* bytes, with optional k/m/g/kb/mib... suffix -> plain number of bytes */
    REEL_OPT_STRING, /* any text (validated by a per-option check if given) */
    REEL_OPT_LIST,   /* list of strings; YAML sequence or comma-separated -> JSON array text */
    REEL_OPT_ENUM,   /* one of `choices` */
} reel_opt_type;

typedef struct {
    const char *name;
    reel_opt_type type;
    const char *def;     /* canonical default value */
    const char *help;    /* one line */
    const char *choices; /* ENUM: "a|b|c" */
    int64_t min, max;    /* INT, SIZE */
} reel_option_t;

typedef enum {
    REEL_LAYER_DEFAULT = 0,
    REEL_LAYER_USER,
    REEL_LAYER_SESSION,
    REEL_LAYER_CLI,
} reel_layer;

/** Name of a layer: "default", "user", "session", "cli". */
const char *reel_layer_name(reel_layer l);

/** The option table, terminated by an entry with name == NULL. */
const reel_option_t *reel_options(void);

/** Finds an option by name; NULL if unknown. */
const reel_option_t *reel_option_find(const char *name);

/** Validates value for option `name` and returns its canonical form in
 * *canonical (owned). Unknown key: REEL_NOTFOUND, message lists the near
 * matches (or all keys when none is near). Bad value: REEL_INVALID, message
 * says what is expected. */
reel_rc reel_config_validate(const char *name, const char *value, char **canonical,
                             reel_err_t *err);

/** Effective configuration: one value and its layer per option. */
typedef struct reel_config reel_config_t;

/** Returns a config holding the defaults. Owned. */
reel_config_t *reel_config_new(void);
void reel_config_free(reel_config_t *c);

/** Path of the user file: $XDG_CONFIG_HOME/reel/config.yaml or
 * ~/.config/reel/config.yaml. Owned. */
char *reel_config_user_path(void);

/** Applies a YAML user file (a mapping of option name to scalar or
 * sequence). A missing file is not an error; a malformed one, an unknown key
 * or a bad value is REEL_INVALID with file:line in the message. path NULL =
 * reel_config_user_path(). */
reel_rc reel_config_load_user(reel_config_t *c, const char *path, reel_err_t *err);

/** Applies the session overlay from db's config_overlay table. Rows with
 * keys or values this build does not accept are skipped, with a warning in
 * *warnings (owned, may be set to NULL if none). */
reel_rc reel_config_load_overlay(reel_config_t *c, sqlite3 *db, char **warnings, reel_err_t *err);

/** Applies "KEY=VALUE" from the command line (layer cli). */
reel_rc reel_config_set_cli(reel_config_t *c, const char *assignment, reel_err_t *err);

/** Effective value (canonical string, borrowed, valid until the next change
 * to c) and its layer. name must be a known option (abort otherwise). */
const char *reel_config_get(const reel_config_t *c, const char *name, reel_layer *layer);
int64_t reel_config_get_int(const reel_config_t *c, const char *name);
int reel_config_get_bool(const reel_config_t *c, const char *name);

/** Overlay storage in session.db. `actor` says who changed it. set validates
 * first and refuses unknown keys and bad values; both record a history row.
 * unset of a key that is not set is REEL_NOTFOUND. */
reel_rc reel_overlay_set(sqlite3 *db, const char *key, const char *value, const char *actor,
                         reel_err_t *err);
reel_rc reel_overlay_unset(sqlite3 *db, const char *key, const char *actor, reel_err_t *err);

/** "user@host pid N" for history rows. Owned. */
char *reel_config_actor(void);

#endif
