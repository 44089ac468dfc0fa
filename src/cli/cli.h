/* reel's command line: one dispatch table (cli.c) and one cmd_<name>.c per
 * subcommand. A new subcommand touches cmd_<name>.c and the table.
 *
 * Exit codes: 0 success, 1 error (message on stderr), 2 usage error. */
#ifndef REEL_CLI_CLI_H
#define REEL_CLI_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "session/session.h"

enum { REEL_EXIT_OK = 0, REEL_EXIT_ERROR = 1, REEL_EXIT_USAGE = 2 };

/** State shared by all subcommands. */
typedef struct {
    const char *prog; /* "reel" */
    const char *cmd;  /* subcommand name */
    char *home;       /* sessions root, owned; resolved by reel_cli_home() */
    const char *home_opt;
    int json;         /* --json */
} reel_cli_t;

typedef int (*reel_cmd_fn)(reel_cli_t *cli, int argc, char **argv);

typedef struct {
    const char *name;
    reel_cmd_fn fn;
    const char *summary; /* one line for `reel --help` */
} reel_cmd_t;

/** Entry point: parses global options, dispatches. */
int reel_cli_main(int argc, char **argv);

/** Long options every subcommand accepts; put REEL_CLI_COMMON_OPTS at the
 * end of a getopt_long table (before the {0} terminator) and pass unknown
 * option characters to reel_cli_common_opt. */
#define REEL_CLI_OPT_HOME 0x1001
#define REEL_CLI_OPT_JSON 0x1002
#define REEL_CLI_COMMON_OPTS                                                   \
    {"home", required_argument, NULL, REEL_CLI_OPT_HOME},                      \
        {"json", no_argument, NULL, REEL_CLI_OPT_JSON}, {"help", no_argument, NULL, 'h'}

/** Handles a common option returned by getopt_long. Returns -1 if `c` was
 * handled and parsing should continue, else an exit code: 0 after printing
 * usage for -h, 2 for '?' (getopt already printed why), for an empty
 * --home or anything else, 1 for a --home that is not a directory. */
int reel_cli_common_opt(reel_cli_t *cli, int c, const char *usage);

/** Parses argv of a subcommand that takes only the common options and
 * between min and max positional arguments. Returns -1 when parsing
 * succeeded (positionals are argv[optind..argc)), else the exit code to
 * return (0 after --help; 2 with `expect` in the message for a wrong
 * count or an unknown option). */
int reel_cli_simple_args(reel_cli_t *cli, int argc, char **argv, const char *usage, int min,
                         int max, const char *expect);

/** Resets getopt for a subcommand's argv. */
void reel_cli_getopt_reset(void);

/** getopt_long for subcommands: the same, except that an argument that is
 * a negative number ("-5", "-1.5") is a positional argument, not an option,
 * unless it is the value of the option before it (`--limit -5`). So
 * `config S set body_limit -5` reaches the value check and `flow S -1` the
 * flow id check, with their messages, instead of "invalid option -- '5'". */
int reel_cli_getopt(int argc, char **argv, const char *optstring, const struct option *longopts);

/** reel's data directory, where the CA lives: $XDG_DATA_HOME/reel, else
 * ~/.local/share/reel. Owned. */
char *reel_cli_data_dir(void);

/** Sessions root (from --home, $REEL_HOME or XDG), borrowed. */
const char *reel_cli_home(reel_cli_t *cli);

/** Prints "reel <cmd>: <message>" to stderr; returns REEL_EXIT_ERROR. */
int reel_cli_fail(reel_cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Prints the usage error and a hint to use --help; returns REEL_EXIT_USAGE. */
int reel_cli_usage(reel_cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Opens session `name` with flags, printing any error (and recovery notes
 * to stderr). Returns NULL on failure. */
reel_session_t *reel_cli_open(reel_cli_t *cli, const char *name, int flags);

/** Prints an index error ("reel <cmd>: session.db ...", naming 'reel
 * repair' when SQLite's result code says the file is damaged); returns
 * REEL_EXIT_ERROR. */
int reel_cli_db_error(reel_cli_t *cli, const char *session, int sqlite_code, const char *msg);

/** Prints the error of a session query (session/query.h): a damaged
 * session.db (REEL_CORRUPT) as reel_cli_db_error does, naming 'reel repair';
 * anything else as its message. Returns REEL_EXIT_ERROR. */
int reel_cli_query_fail(reel_cli_t *cli, reel_session_t *s, const reel_err_t *err);

/** Parses a flow id: ASCII digits only (no sign, no space), 1 to
 * INT64_MAX. Sets *id and returns 0, or returns -1 when arg is not one. */
int reel_cli_parse_flow_id(const char *arg, uint64_t *id);

/** The flow id argument of every subcommand ("12"), as
 * reel_cli_parse_flow_id reads it. Returns 0 after printing a usage error
 * ("invalid flow id"): a malformed id is a usage error, and the caller
 * returns REEL_EXIT_USAGE. Whether the flow exists is for later ("no flow N
 * in session S", REEL_EXIT_ERROR). */
unsigned long long reel_cli_flow_id(reel_cli_t *cli, const char *arg);

/** Says on stderr that no flow of `session` matches `filter`; when the
 * filter is a bare number or range ("4", "10-20"), that it was read as a
 * URL regex and how to name flow ids ("~id 4"). */
void reel_cli_no_match(reel_cli_t *cli, const char *session, const char *filter);

/** Checks that flow `id` exists in s; prints "no flow N in session S" if not. */
int reel_cli_flow_exists(reel_cli_t *cli, reel_session_t *s, unsigned long long id);

/** Writes JSON to stdout followed by a newline; takes (decrefs) j. */
int reel_cli_json_out(json_t *j);

/** Formats microseconds since the epoch as local "YYYY-MM-DD HH:MM:SS.mmm". */
void reel_cli_time(long long us, char out[static 32]);

/** Formats a byte count for people ("1.2 MiB"). */
void reel_cli_size(unsigned long long n, char out[static 16]);

/* ---- captured and user-given data, written for people ----
 *
 * Anything a server sent, a HAR file held or a user typed (URLs, heads,
 * bodies, notes, tags, error texts quoting them) goes to stdout through
 * these, so that on a terminal it cannot move the cursor, retitle the
 * window or clear the screen: with escaping on, every control character
 * (C0 but the layout ones a flag keeps, DEL, and the C1 controls U+0080 to
 * U+009F) and every byte that is not part of valid UTF-8 is written as
 * \xNN, one per byte. Escaping is on when stdout is a terminal; into a pipe
 * or file the bytes go unchanged. */

/** Escape every control character (else bytes are written unchanged). */
#define REEL_CLI_ESC 1
/** Multi-line text (bodies, notes): keep LF, tab and CR LF as layout. */
#define REEL_CLI_ESC_LINES 2

/** REEL_CLI_ESC when stdout is a terminal, else 0 (asked once). */
int reel_cli_escaping(void);

/** Streaming writer: bytes may arrive split anywhere (a UTF-8 sequence or
 * CR LF across two chunks is judged whole). Zero-initialise, set flags. */
typedef struct {
    int flags;             /* REEL_CLI_ESC, REEL_CLI_ESC_LINES */
    unsigned char held[4]; /* an undecided tail of the last chunk */
    size_t nheld;
} reel_cli_esc_t;

/** Writes p[0..n) to out as the flags say; may hold back up to 3 bytes. */
void reel_cli_esc_write(reel_cli_esc_t *e, FILE *out, const void *p, size_t n);

/** Writes what is held back (an incomplete sequence is escaped). */
void reel_cli_esc_end(reel_cli_esc_t *e, FILE *out);

/** Writes n bytes of one-line data to stdout, escaped if stdout is a
 * terminal. */
void reel_cli_putn(const void *p, size_t n);

/** The same for a NUL-terminated string; NULL writes nothing. */
void reel_cli_put(const char *s);

/** Multi-line text (notes): as reel_cli_put but LF, tab and CR LF kept. */
void reel_cli_put_lines(const char *s);

/** Returns owned, NUL-terminated: p[0..n) as written with flags. */
char *reel_cli_escaped(const void *p, size_t n, int flags);

/** Columns that escaped text s takes: one per UTF-8 character. */
size_t reel_cli_columns(const char *s);

/** Returns owned: s cut to at most `cols` columns (cols >= 1), its last
 * column then U+2026 '…' when s was longer; else a copy of s. */
char *reel_cli_cut(const char *s, size_t cols);

/** Width of the terminal on stdout: TIOCGWINSZ, else $COLUMNS, else 80. */
int reel_cli_term_width(void);

/* Subcommands. */
int reel_cmd_ls(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_show(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_flows(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_flow(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_annotate(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_tag(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_untag(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_mark(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_unmark(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_config(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_import(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_export(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_verify(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_repair(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_compact(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_rm(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_search(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_replay(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_diff(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_new(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_record(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_web(reel_cli_t *cli, int argc, char **argv);
/** --listen HOST:PORT of `reel web` / `--web=`: *host owned (NULL: none);
 * -1 if malformed. */
int reel_cli_web_listen(const char *arg, char **host, int *port);
int reel_cmd_resume(reel_cli_t *cli, int argc, char **argv);
int reel_cmd_ca(reel_cli_t *cli, int argc, char **argv);

#endif
