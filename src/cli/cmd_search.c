/* `reel search`: words in decoded text bodies, answered from the body index
 * (body_fts, schema/006_body_fts.sql) without reading the spool. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/bodyindex.h"
#include "session/flowread.h"
#include "session/query.h"

static const char usage[] =
    "usage: reel search [--home DIR] [--json] [--limit N] SESSION WORDS...\n"
    "\n"
    "Lists the flows whose decoded text bodies (JSON, HTML, JS, CSS, XML, form\n"
    "data, any text) hold every one of WORDS, case folded, anywhere: inside\n"
    "longer words too (\"oken\" finds \"token\"). Each row: id, method, URL,\n"
    "status, then the text around the match (request> or response>).\n"
    "Answered from the body index in milliseconds, whatever the session size.\n"
    "\n"
    "  --limit N   at most N flows (the first ones); 0: all (the default)\n"
    "  --json      an array of {id, method, url, status, side, snippet}\n"
    "\n"
    "A word is at least 3 characters. WORDS holding FTS5 syntax (\"a phrase\",\n"
    "AND, OR, NOT, parentheses, req: or resp: before a word for one side) are\n"
    "read as one FTS5 query: 'reel search S \"user id\" OR req:token'.\n"
    "\n"
    "Only what the index holds is searched: the first body_index_max bytes\n"
    "(1 MiB) of each text body. Binary bodies, WebSocket and TCP messages and\n"
    "flows recorded before reel had this index are not: 'reel repair SESSION'\n"
    "indexes the latter, 'reel flows SESSION \"~b REGEX\"' reads everything.\n"
    "More: docs/filters.md, \"Indexed body search\".\n";

/* Markers reel_snippet() puts around a match; bytes no indexed text
 * holds. */
#define MARK_ON "\x01"
#define MARK_OFF "\x02"

/* Writes one side's snippet on a line of its own: control bytes as spaces,
 * the matches in bold on a terminal, in [[...]] elsewhere. For --json,
 * returns it without markers (owned) instead. */
static char *snippet_text(const char *s, bool tty, bool json) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (const char *p = s; *p; p++) {
        if (*p == MARK_ON[0])
            reel_buf_puts(&b, json ? "" : tty ? "\033[1m" : "[[");
        else if (*p == MARK_OFF[0])
            reel_buf_puts(&b, json ? "" : tty ? "\033[0m" : "]]");
        else if ((unsigned char)*p < 0x20 || *p == 0x7f)
            reel_buf_puts(&b, " ");
        else
            reel_buf_append(&b, p, 1);
    }
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* s with each byte that is no part of a valid UTF-8 character as U+FFFD:
 * a snippet may end inside a character that body_index_max cut. Owned. */
static char *utf8_clean(const char *s) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = *p < 0x80                  ? 1
                   : *p >= 0xc2 && *p <= 0xdf ? 2
                   : *p >= 0xe0 && *p <= 0xef ? 3
                   : *p >= 0xf0 && *p <= 0xf4 ? 4
                                              : 0;
        size_t k = 1;
        while (k < n && (p[k] & 0xc0) == 0x80)
            k++;
        /* no overlong form, no surrogate, nothing past U+10FFFF */
        bool ok = n && k == n && !(n == 3 && *p == 0xe0 && p[1] < 0xa0) &&
                  !(n == 3 && *p == 0xed && p[1] > 0x9f) &&
                  !(n == 4 && *p == 0xf0 && p[1] < 0x90) && !(n == 4 && *p == 0xf4 && p[1] > 0x8f);
        reel_buf_append(&b, ok ? (const char *)p : "\xef\xbf\xbd", ok ? n : 3);
        p += ok ? n : 1;
    }
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Prints text escaped (captured bytes), keeping the bold markers this
 * file put in. */
static void put_snippet(const char *text) {
    const char *p = text;
    while (*p) {
        const char *esc = strchr(p, '\033');
        size_t n = esc ? (size_t)(esc - p) : strlen(p);
        reel_cli_putn(p, n);
        p += n;
        if (esc) {
            size_t m = strncmp(esc, "\033[1m", 4) == 0 || strncmp(esc, "\033[0m", 4) == 0 ? 4 : 1;
            if (m == 4)
                fwrite(esc, 1, 4, stdout);
            else
                reel_cli_putn(esc, 1);
            p += m;
        }
    }
}

typedef struct {
    json_t *arr; /* --json */
    bool tty;
    long long n;
} search_ctx_t;

/* Prints (or adds to the JSON array) one hit. */
static int print_hit(void *ctx, const reel_query_hit_t *h) {
    search_ctx_t *sc = ctx;
    sc->n++;
    /* The side whose snippet shows a match (the request's first). */
    int side = h->snippet[0] && strchr(h->snippet[0], MARK_ON[0]) ? 0 : 1;
    char *text = snippet_text(h->snippet[side] ? h->snippet[side] : "", sc->tty, sc->arr != NULL);
    if (sc->arr) {
        /* (json_pack refuses a string that is not UTF-8: the hit was left
         * out of the array, whose other hits said nothing of it) */
        char *clean = utf8_clean(text);
        json_t *o = json_pack("{s:I, s:o, s:s, s:s}", "id", (json_int_t)h->id, "url",
                              reel_json_text(h->url ? h->url : ""), "side",
                              side ? "response" : "request", "snippet", clean);
        free(clean);
        json_object_set_new(o, "method", reel_json_text(h->method));
        json_object_set_new(o, "status",
                            h->status != REEL_QUERY_NULL ? json_integer(h->status) : json_null());
        json_array_append_new(sc->arr, o);
    } else {
        char st_s[24] = "-";
        if (h->status != REEL_QUERY_NULL)
            snprintf(st_s, sizeof st_s, "%lld", (long long)h->status);
        printf("%6lld ", (long long)h->id);
        reel_cli_put(h->method ? h->method : "-");
        printf(" ");
        reel_cli_put(h->url ? h->url : "");
        printf(" %s\n       %s> ", st_s, side ? "response" : "request");
        put_snippet(text);
        printf("\n");
    }
    free(text);
    return 0;
}

/* The error err (with how to write a query, if hint), the control
 * characters of the words it quotes escaped whatever stdout is (README:
 * messages that quote what was typed escape them always). */
static int search_fail(reel_cli_t *cli, const reel_err_t *err, int hint) {
    const char *m = reel_err_str(err);
    char *esc = reel_cli_escaped(m, strlen(m), REEL_CLI_ESC);
    int rc = reel_cli_fail(cli, "%s%s", esc,
                           hint ? " (plain words are searched as they are; in FTS5 syntax quote "
                                  "a phrase with \"...\", join with AND, OR, NOT, and name a "
                                  "side with req: or resp:)"
                                : "");
    free(esc);
    return rc;
}

int reel_cmd_search(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'n'}, REEL_CLI_COMMON_OPTS, {0}};
    long long limit = 0;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == 'n') {
            char *end = NULL;
            limit = strtoll(optarg, &end, 10);
            if (end == optarg || *end || limit < 0)
                return reel_cli_usage(cli, "--limit expects a count >= 0, got '%s'", optarg);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (argc - optind < 2)
        return reel_cli_usage(cli, argc - optind < 1 ? "expected a SESSION and WORDS"
                                                     : "expected WORDS to search for");
    reel_err_t err;
    reel_err_clear(&err);
    char *q = NULL;
    if (reel_bodyindex_search_query((const char *const *)argv + optind + 1,
                                    (size_t)(argc - optind - 1), &q, &err) != REEL_OK)
        return search_fail(cli, &err, 0);
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_READ);
    if (s == NULL) {
        free(q);
        return REEL_EXIT_ERROR;
    }
    search_ctx_t sc = {.arr = cli->json ? json_array() : NULL, .tty = isatty(STDOUT_FILENO)};
    int rc = REEL_EXIT_OK;
    reel_rc qrc = reel_query_search(s, q, limit, MARK_ON, MARK_OFF, print_hit, &sc, &err);
    if (qrc == REEL_INVALID) {
        rc = search_fail(cli, &err, 1);
        json_decref(sc.arr);
        goto out;
    }
    if (qrc != REEL_OK) {
        rc = reel_cli_query_fail(cli, s, &err);
        json_decref(sc.arr);
        goto out;
    }
    if (sc.arr)
        reel_cli_json_out(sc.arr);
    else if (sc.n == 0)
        fprintf(stderr, "reel search: no flow has that in its indexed bodies\n");
    /* Flows the index lacks are worth a word when repair would add them. */
    int64_t before = 0, pending = 0, off = 0;
    if (reel_query_search_missing(s, &before, &pending, &off, &err) == REEL_OK) {
        const char *name = argv[optind];
        if (off > 0)
            fprintf(stderr,
                    "reel search: %lld %s recorded with the body index off "
                    "(body_index_max is 0 by default); 'reel config %s set body_index_max 1m' "
                    "then 'reel repair %s' indexes %s, and 'reel flows %s \"~b WORD\"' "
                    "searches %s without an index\n",
                    (long long)off, off == 1 ? "flow was" : "flows were", name, name,
                    off == 1 ? "it" : "them", name, off == 1 ? "it" : "them");
        if (before > 0)
            fprintf(stderr,
                    "reel search: %lld %s recorded before reel indexed bodies and %s not "
                    "searched; 'reel repair %s' indexes %s\n",
                    (long long)before,
                    before == 1 ? "flow with a body was" : "flows with bodies were",
                    before == 1 ? "was" : "were", name, before == 1 ? "it" : "them");
        if (pending > 0)
            fprintf(stderr,
                    "reel search: the text of %lld %s is not in the index yet (it is added "
                    "as the recorder has time; 'reel repair %s' adds it now); 'reel flows %s "
                    "\"~b WORD\"' reads %s\n",
                    (long long)pending, pending == 1 ? "flow" : "flows", name, name,
                    pending == 1 ? "it" : "them");
    }
out:
    free(q);
    reel_session_close(s);
    return rc;
}
