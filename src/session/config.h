/* Configuration: one table of options serving every layer.
 *
 *   built-in defaults < user file ($XDG_CONFIG_HOME/reel/config.yaml)
 *                     < session overlay (session.db config_overlay)
 *                     < --set KEY=VALUE on the command line
 *
 * Values are stored and shown as strings in a canonical form: BOOL "true" or
 * "false", INT and SIZE a plain decimal number, ENUM one of its choices,
 * STRING the text itself, LIST a compact JSON array of strings (["a","b"]).
 * reel_config_validate turns user input into that form or refuses it with a
 * message naming what is valid. Option names follow mitmproxy's where it has
 * one (listen_host, listen_port, ignore_hosts, proxyauth). */
#ifndef REEL_SESSION_CONFIG_H
#define REEL_SESSION_CONFIG_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
    REEL_OPT_BOOL,   /* true/false, on/off, yes/no, 1/0 -> "true"/"false" */
    REEL_OPT_INT,    /* decimal integer within [min, max] */
    REEL_OPT_SIZE,   /* bytes, optional k/m/g/t, kb.., kib.. suffix (1024-based) -> bytes */
    REEL_OPT_STRING, /* any text without control characters, then `check` if given */
    REEL_OPT_LIST,   /* JSON array or comma-separated text (YAML: a sequence) -> JSON array */
    REEL_OPT_ENUM,   /* one of `choices`, case-insensitive -> the choice as written there */
} reel_opt_type;

typedef struct {
    const char *name;
    reel_opt_type type;
    const char *def;     /* canonical default value */
    const char *help;    /* one line */
    const char *choices; /* ENUM: "a|b|c" */
    int64_t min, max;    /* INT, SIZE */
    /* STRING: called with the value, LIST: with each item; NULL = no check.
     * Returns REEL_INVALID with a message saying what is expected. */
    reel_rc (*check)(const char *value, reel_err_t *err);
} reel_option_t;

typedef enum {
    REEL_LAYER_DEFAULT = 0,
    REEL_LAYER_USER,
    REEL_LAYER_SESSION,
    REEL_LAYER_CLI,
} reel_layer;

/** Longest value accepted for any option, in bytes. */
#define REEL_CONFIG_VALUE_MAX 65536

/** Name of a layer: "default", "user", "session", "cli". */
const char *reel_layer_name(reel_layer l);

/** The option table, terminated by an entry with name == NULL. Static. */
const reel_option_t *reel_options(void);

/** Finds an option by name (exact, case-sensitive); NULL if unknown. */
const reel_option_t *reel_option_find(const char *name);

/** Whether a running proxy applies a change of option name within a
 * second (1), or reads it only when it starts (0). */
int reel_option_is_hot(const char *name);

/** Like reel_option_find, but an unknown name also sets REEL_NOTFOUND in err
 * with the message reel_config_validate gives (near matches or every name). */
const reel_option_t *reel_option_lookup(const char *name, reel_err_t *err);

/** One-line description of what o accepts: "true|false", "integer 0..65535",
 * "size 1 MiB..4 GiB", "on|off|lossless", "text", "list (...)". Owned. */
char *reel_option_describe(const reel_option_t *o);

/** Validates value for option `name` and returns its canonical form in
 * *canonical (owned; left untouched on error). Unknown key: REEL_NOTFOUND,
 * "unknown option 'x'; did you mean: y?" or, when nothing is near, the list
 * of every option. Bad value: REEL_INVALID, "invalid value 'v' for name:
 * expected ..." (the value is not echoed for proxyauth). */
reel_rc reel_config_validate(const char *name, const char *value, char **canonical,
                             reel_err_t *err);

/** Validates value for option `name` as it is about to be set in a session
 * overlay (`reel config SESSION set`, the web UI's config POST): as
 * reel_config_validate, and then what only the file system can tell now,
 * before a proxy reads it at its next start: upstream_trusted_ca must name
 * a readable regular file of PEM certificates, and its canonical form is
 * the absolute path (resolved against the current directory: the proxy
 * may start in another). A file that fails: REEL_INVALID, "invalid value
 * 'PATH' for upstream_trusted_ca: WHY". *canonical as reel_config_validate.
 * The layers read at start (user file, --set) are not checked this way:
 * the proxy refuses a bad CA file when it loads it. */
reel_rc reel_config_validate_set(const char *name, const char *value, char **canonical,
                                 reel_err_t *err);

/** Effective configuration: one value and its layer per option. */
typedef struct reel_config reel_config_t;

/** Returns a config holding the defaults (layer default). Owned. */
reel_config_t *reel_config_new(void);

/** Frees c; accepts NULL. */
void reel_config_free(reel_config_t *c);

/** Path of the user file: $XDG_CONFIG_HOME/reel/config.yaml or
 * ~/.config/reel/config.yaml. Owned. */
char *reel_config_user_path(void);

/** Applies a YAML user file (a mapping of option name to scalar, or to a
 * sequence for LIST options; an empty file is an empty mapping) at layer
 * user. path NULL = reel_config_user_path(). A missing file is not an error.
 * A malformed file, a root that is not a mapping, an unknown or repeated key
 * or a bad value is REEL_INVALID with "path:line: ..." in the message; an
 * unreadable file is REEL_IO, one over 1 MiB REEL_LIMIT. On error c is left
 * unchanged (the file applies whole or not at all). */
reel_rc reel_config_load_user(reel_config_t *c, const char *path, reel_err_t *err);

/** Applies the session overlay from db's config_overlay table at layer
 * session. Rows with keys or values this build does not accept (written by
 * another version, or by hand) are skipped, one line each in *warnings
 * (owned; set to NULL when there is none; warnings may be NULL). Returns
 * REEL_DB if the table cannot be read. */
reel_rc reel_config_load_overlay(reel_config_t *c, sqlite3 *db, char **warnings, reel_err_t *err);

/** Applies "KEY=VALUE" from the command line (layer cli); the value is what
 * follows the first '='. No '=': REEL_INVALID; else as reel_config_validate. */
reel_rc reel_config_set_cli(reel_config_t *c, const char *assignment, reel_err_t *err);

/** Applies at layer cli what the proxy recording into the session of db
 * runs with beyond the stored layers: its --set assignments (meta
 * "cli_sets", a JSON array of "KEY=VALUE" written when it started), which
 * beat the overlay until it stops, and where it listens (meta "listen",
 * "host:port" or "[v6]:port") when that differs from the configuration
 * (--listen, port 0). recording: whether a proxy records into it now; a
 * value left by one that died is not read. Values it does not take are
 * left out. */
void reel_config_apply_running(reel_config_t *c, sqlite3 *db, int recording);

/** Effective value (canonical string, borrowed, valid until the next change
 * to that option of c) and, if layer is non-NULL, its layer. name must be a
 * known option (aborts otherwise: it is a programming error). */
const char *reel_config_get(const reel_config_t *c, const char *name, reel_layer *layer);

/** Value of an INT or SIZE option (aborts for other types or unknown names). */
int64_t reel_config_get_int(const reel_config_t *c, const char *name);

/** Value of a BOOL option: 1 or 0 (aborts for other types or unknown names). */
int reel_config_get_bool(const reel_config_t *c, const char *name);

/** Items of a LIST option as a NULL-terminated array, *n (if non-NULL) set to
 * the count. Returns owned: one allocation, release it with free(). Aborts
 * for other types or unknown names. */
char **reel_config_get_list(const reel_config_t *c, const char *name, size_t *n);

/** Overlay storage in session.db. `actor` says who changed it. set validates
 * first (REEL_NOTFOUND / REEL_INVALID as reel_config_validate), then in one
 * BEGIN IMMEDIATE transaction upserts config_overlay and records a
 * config_history row (old_value NULL if the key was not set). Setting the
 * value the overlay already holds is a no-op (REEL_OK, no history row).
 * actor NULL = reel_config_actor(). The caller must not have a transaction
 * open on db; SQLite errors are REEL_DB (REEL_LOCKED when it stays busy). */
reel_rc reel_overlay_set(sqlite3 *db, const char *key, const char *value, const char *actor,
                         reel_err_t *err);

/** Deletes key from the overlay and records a history row (new_value NULL).
 * Works for rows this build does not accept. A key that is not set:
 * REEL_NOTFOUND, "option 'x' is not set in this session's overlay" (or the
 * unknown-option message if x is not an option either). */
reel_rc reel_overlay_unset(sqlite3 *db, const char *key, const char *actor, reel_err_t *err);

/** "user@host pid N" for history rows. Owned. */
char *reel_config_actor(void);

#endif
