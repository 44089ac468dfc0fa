/* reel diff: what differs between two flows, of one session or of two
 * (docs/replay.md). The comparing is session/diff.c's; this file parses
 * the arguments and writes the result for people or as JSON. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/flowread.h"
#include "session/diff.h"

static const char usage[] =
    "usage: reel diff [--home DIR] [--json] [--context N] SESSION ID1 ID2\n"
    "       reel diff [--home DIR] [--json] [--context N] SESSION1:ID1 SESSION2:ID2\n"
    "\n"
    "Shows what differs between two flows (a flow and its replay, say): method,\n"
    "URL, status, error; request and response headers added, removed or changed\n"
    "(names compared without case, every value of a repeated header in order);\n"
    "and bodies, decoded (Content-Encoding) and pretty-printed as 'reel flow\n"
    "--view auto' shows them, as a unified diff. Bodies are looked at up to\n"
    "16 MiB and 50000 lines; what is cut is said. A body not stored whole\n"
    "(body_limit) is compared only in the bytes both flows stored, and in its\n"
    "size on the wire: it is never taken for the same.\n"
    "\n"
    "  --context N  lines of context around each change (default 3)\n"
    "  --home DIR   sessions root (default $REEL_HOME, else the XDG data dir)\n"
    "  --json       print {a, b, same, changes, request, response} (docs/replay.md)\n";

static const char *const dir_name[2] = {"request", "response"};

typedef struct {
    int color, esc;
} out_t;

#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_CYAN "\033[36m"
#define C_BOLD "\033[1m"
#define C_OFF "\033[0m"

static void col(const out_t *o, const char *code) {
    if (o->color)
        fputs(code, stdout);
}

/* Recorded text: escaped on a terminal. */
static void put(const char *s) {
    reel_cli_put(s ? s : "");
}

static char *join(char **v, size_t n) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++)
        reel_buf_printf(&b, "%s%s", i ? ", " : "", v[i]);
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

static int str_differs(const char *a, const char *b) {
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

/* "200 OK", or NULL without a response; owned. */
static char *status_str(const reel_diff_flow_t *f) {
    if (f->status == 0)
        return NULL;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_printf(&b, "%u%s%s", f->status, f->reason && f->reason[0] ? " " : "",
                    f->reason ? f->reason : "");
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* "field: a -> b" for a field that differs. */
static void field_line(const out_t *o, const char *name, const char *a, const char *b) {
    col(o, C_BOLD);
    printf("%s:", name);
    col(o, C_OFF);
    printf(" ");
    col(o, C_RED);
    put(a ? a : "(none)");
    col(o, C_OFF);
    printf(" -> ");
    col(o, C_GREEN);
    put(b ? b : "(none)");
    col(o, C_OFF);
    printf("\n");
}

static void header_line(const out_t *o, const char *sign, const char *color, const char *name,
                        const char *value) {
    printf("  ");
    col(o, color);
    printf("%s ", sign);
    put(name);
    printf(": ");
    put(value);
    col(o, C_OFF);
    printf("\n");
}

/* The body diff's hunks, one line at a time, coloured by their sign. */
static void print_hunks(const out_t *o, const reel_buf_t *h) {
    const char *p = (const char *)h->data, *end = p + h->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *color = *p == '-' ? C_RED : *p == '+' ? C_GREEN : *p == '@' ? C_CYAN : NULL;
        if (color)
            col(o, color);
        if (o->esc) {
            reel_cli_esc_t e = {.flags = REEL_CLI_ESC | REEL_CLI_ESC_LINES};
            reel_cli_esc_write(&e, stdout, p, len);
            reel_cli_esc_end(&e, stdout);
        } else {
            fwrite(p, 1, len, stdout);
        }
        if (color)
            col(o, C_OFF);
        printf("\n");
        p += len + 1;
    }
}

typedef struct {
    reel_diff_header_t *hdr;
    size_t nhdr;
    reel_diff_body_t body;
    reel_diff_t lines;
    reel_buf_t hunks;
} dir_diff_t;

static void dir_compare(const reel_diff_dir_t *a, const reel_diff_dir_t *b, unsigned ctx,
                        dir_diff_t *d) {
    memset(d, 0, sizeof *d);
    reel_buf_init(&d->hunks, 0);
    d->hdr = reel_diff_headers(a->headers, a->n_headers, b->headers, b->n_headers, &d->nhdr);
    reel_diff_body_compare(a, b, &d->body);
    if (!d->body.views_same) {
        reel_diff_lines((const char *)d->body.view_a.data, d->body.view_a.len,
                        (const char *)d->body.view_b.data, d->body.view_b.len, 0, 0, &d->lines);
        reel_diff_unified(&d->lines, ctx, &d->hunks);
    }
}

static void dir_free(dir_diff_t *d) {
    reel_diff_headers_free(d->hdr, d->nhdr);
    reel_diff_body_free(&d->body);
    reel_diff_free(&d->lines);
    reel_buf_free(&d->hunks);
}

/* `same` of a body comparison (`whole_same` when both sides are whole):
 * false when the bodies differ, null when a side was not stored whole and
 * what both stored agrees (not known); a partial body is never the same. */
static json_t *verdict_json(const dir_diff_t *d, int partial, int whole_same) {
    if (!partial)
        return json_boolean(whole_same);
    return d->body.verdict == REEL_DIFF_BODY_UNKNOWN ? json_null() : json_false();
}

static json_t *partial_json(const reel_diff_dir_t *x) {
    if (!x->partial)
        return json_null();
    char why[256];
    reel_diff_partial_str(x, why, sizeof why);
    return json_string(why);
}

static json_t *side_json(const char *session, const reel_diff_flow_t *f) {
    json_t *o = json_object();
    json_object_set_new(o, "session", json_string(session));
    json_object_set_new(o, "id", json_integer((json_int_t)f->id));
    json_object_set_new(o, "method", reel_json_text(f->method));
    json_object_set_new(o, "url", reel_json_text(f->url));
    json_object_set_new(o, "status", f->status ? json_integer(f->status) : json_null());
    json_object_set_new(o, "reason", f->status ? reel_json_text(f->reason) : json_null());
    json_object_set_new(o, "error", reel_json_text(f->error));
    return o;
}

static json_t *values_json(char **v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, reel_json_text(v[i]));
    return a;
}

static json_t *dir_json(const reel_diff_flow_t *fa, const reel_diff_flow_t *fb, int dir,
                        const dir_diff_t *d) {
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    for (size_t i = 0; i < d->nhdr; i++) {
        const reel_diff_header_t *h = &d->hdr[i];
        if (h->na == 0) {
            for (size_t k = 0; k < h->nb; k++)
                json_array_append_new(
                    added, json_pack("[o, o]", reel_json_text(h->name), reel_json_text(h->b[k])));
        } else if (h->nb == 0) {
            for (size_t k = 0; k < h->na; k++)
                json_array_append_new(
                    removed, json_pack("[o, o]", reel_json_text(h->name), reel_json_text(h->a[k])));
        } else {
            json_array_append_new(
                changed, json_pack("{s:o, s:o, s:o}", "name", reel_json_text(h->name), "a",
                                   values_json(h->a, h->na), "b", values_json(h->b, h->nb)));
        }
    }
    const reel_diff_dir_t *a = &fa->dir[dir], *b = &fb->dir[dir];
    const reel_diff_body_t *bd = &d->body;
    json_t *body = json_object();
    int partial = a->partial || b->partial;
    json_object_set_new(body, "same", verdict_json(d, partial, bd->views_same));
    json_object_set_new(body, "bytes_same", verdict_json(d, partial, bd->bytes_same));
    json_object_set_new(body, "view_a", json_string(bd->kind_a ? bd->kind_a : "raw"));
    json_object_set_new(body, "view_b", json_string(bd->kind_b ? bd->kind_b : "raw"));
    json_object_set_new(body, "size_a", json_integer((json_int_t)a->wire_size));
    json_object_set_new(body, "size_b", json_integer((json_int_t)b->wire_size));
    json_object_set_new(body, "stored_a", json_integer((json_int_t)a->body_size));
    json_object_set_new(body, "stored_b", json_integer((json_int_t)b->body_size));
    json_object_set_new(body, "partial_a", partial_json(a));
    json_object_set_new(body, "partial_b", partial_json(b));
    json_object_set_new(body, "compared",
                        partial ? json_integer((json_int_t)bd->compared) : json_null());
    json_t *text = NULL;
    if (!bd->views_same) {
        text = json_stringn((const char *)d->hunks.data, d->hunks.len);
        if (text == NULL) { /* not UTF-8 (a raw view of other text): escaped */
            char *e =
                reel_cli_escaped(d->hunks.data, d->hunks.len, REEL_CLI_ESC | REEL_CLI_ESC_LINES);
            text = json_string(e);
            free(e);
        }
    }
    json_object_set_new(body, "diff", text ? text : json_null());
    json_object_set_new(body, "cut", json_boolean(a->body_cut || b->body_cut || d->lines.cut));
    json_object_set_new(body, "rough", json_boolean(d->lines.rough));
    json_object_set_new(body, "decode_error_a", reel_json_text(a->decode_error));
    json_object_set_new(body, "decode_error_b", reel_json_text(b->decode_error));
    return json_pack("{s:b, s:b, s:{s:o, s:o, s:o}, s:o}", "present_a", a->present, "present_b",
                     b->present, "headers", "added", added, "removed", removed, "changed", changed,
                     "body", body);
}

/* Splits "SESSION:ID"; 0 when arg has no ':' or a bad id (message printed). */
static int parse_ref(reel_cli_t *cli, const char *arg, char **session, unsigned long long *id) {
    const char *colon = strrchr(arg, ':');
    if (colon == NULL || colon == arg) {
        reel_cli_usage(cli, "'%s' is not SESSION:ID (or give SESSION ID1 ID2)", arg);
        return 0;
    }
    *id = reel_cli_flow_id(cli, colon + 1);
    if (*id == 0)
        return 0;
    *session = reel_strndup(arg, (size_t)(colon - arg));
    return 1;
}

int reel_cmd_diff(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_CONTEXT = 0x2001 };
    static const struct option opts[] = {
        {"context", required_argument, NULL, OPT_CONTEXT}, REEL_CLI_COMMON_OPTS, {0}};
    long ctx = 3;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == OPT_CONTEXT) {
            char *end = NULL;
            errno = 0;
            ctx = strtol(optarg, &end, 10);
            if (optarg[0] == '\0' || *end || errno || ctx < 0 || ctx > 100000)
                return reel_cli_usage(cli, "--context takes a number of lines, not '%s'", optarg);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    int npos = argc - optind;
    if (npos < 2)
        return reel_cli_usage(cli, "missing flows to compare");
    if (npos > 3)
        return reel_cli_usage(cli, "unexpected argument '%s'", argv[optind + 3]);
    char *sn[2] = {NULL, NULL};
    unsigned long long id[2] = {0, 0};
    int exit_code = REEL_EXIT_OK;
    if (npos == 3) {
        sn[0] = reel_strdup(argv[optind]);
        sn[1] = reel_strdup(argv[optind]);
        for (int i = 0; i < 2; i++)
            if ((id[i] = reel_cli_flow_id(cli, argv[optind + 1 + i])) == 0) {
                exit_code = REEL_EXIT_USAGE;
                goto out_args;
            }
    } else {
        for (int i = 0; i < 2; i++)
            if (!parse_ref(cli, argv[optind + i], &sn[i], &id[i])) {
                exit_code = REEL_EXIT_USAGE;
                goto out_args;
            }
    }

    reel_session_t *s[2] = {NULL, NULL};
    reel_diff_flow_t f[2];
    memset(f, 0, sizeof f);
    dir_diff_t dd[2];
    memset(dd, 0, sizeof dd);
    int same_session = strcmp(sn[0], sn[1]) == 0;
    for (int i = 0; i < 2; i++) {
        if (i == 1 && same_session) {
            s[1] = s[0];
            break;
        }
        if ((s[i] = reel_cli_open(cli, sn[i], REEL_OPEN_READ)) == NULL) {
            exit_code = REEL_EXIT_ERROR;
            goto out;
        }
    }
    for (int i = 0; i < 2; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_diff_flow_load(s[i], id[i], &f[i], &err) != REEL_OK) {
            exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
            goto out;
        }
    }
    for (int d = 0; d < 2; d++)
        dir_compare(&f[0].dir[d], &f[1].dir[d], (unsigned)ctx, &dd[d]);
    char *st[2] = {status_str(&f[0]), status_str(&f[1])};
    int diff_method = str_differs(f[0].method, f[1].method);
    int diff_url = str_differs(f[0].url, f[1].url);
    int diff_status = str_differs(st[0], st[1]);
    int diff_error = str_differs(f[0].error, f[1].error);
    int same = !diff_method && !diff_url && !diff_status && !diff_error;
    int unknown = 0; /* a body not stored whole that what was stored does not tell apart */
    for (int d = 0; d < 2; d++) {
        same &= dd[d].nhdr == 0 && dd[d].body.verdict == REEL_DIFF_BODY_SAME &&
                f[0].dir[d].present == f[1].dir[d].present;
        unknown |= dd[d].body.verdict == REEL_DIFF_BODY_UNKNOWN;
    }

    if (cli->json) {
        json_t *changes = json_array();
        if (diff_method)
            json_array_append_new(changes, json_string("method"));
        if (diff_url)
            json_array_append_new(changes, json_string("url"));
        if (diff_status)
            json_array_append_new(changes, json_string("status"));
        if (diff_error)
            json_array_append_new(changes, json_string("error"));
        for (int d = 0; d < 2; d++) {
            char key[32];
            if (dd[d].nhdr) {
                snprintf(key, sizeof key, "%s.headers", dir_name[d]);
                json_array_append_new(changes, json_string(key));
            }
            if (dd[d].body.verdict == REEL_DIFF_BODY_DIFFERS) {
                snprintf(key, sizeof key, "%s.body", dir_name[d]);
                json_array_append_new(changes, json_string(key));
            }
        }
        json_t *unknown_j = json_array();
        for (int d = 0; d < 2; d++)
            if (dd[d].body.verdict == REEL_DIFF_BODY_UNKNOWN) {
                char key[32];
                snprintf(key, sizeof key, "%s.body", dir_name[d]);
                json_array_append_new(unknown_j, json_string(key));
            }
        json_t *o = json_pack("{s:o, s:o, s:b, s:o, s:o, s:o, s:o}", "a", side_json(sn[0], &f[0]),
                              "b", side_json(sn[1], &f[1]), "same", same, "changes", changes,
                              "unknown", unknown_j, "request", dir_json(&f[0], &f[1], 0, &dd[0]),
                              "response", dir_json(&f[0], &f[1], 1, &dd[1]));
        exit_code = reel_cli_json_out(o);
    } else {
        out_t o = {.esc = reel_cli_escaping() != 0};
        o.color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
        for (int i = 0; i < 2; i++) {
            col(&o, C_BOLD);
            printf("%s %s #%llu ", i ? "+++" : "---", sn[i], id[i]);
            put(f[i].method ? f[i].method : "-");
            printf(" ");
            put(f[i].url ? f[i].url : "-");
            col(&o, C_OFF);
            printf("\n");
        }
        if (diff_method)
            field_line(&o, "method", f[0].method, f[1].method);
        if (diff_url)
            field_line(&o, "url", f[0].url, f[1].url);
        if (diff_status)
            field_line(&o, "status", st[0], st[1]);
        if (diff_error)
            field_line(&o, "error", f[0].error, f[1].error);
        for (int d = 0; d < 2; d++) {
            const reel_diff_dir_t *a = &f[0].dir[d], *b = &f[1].dir[d];
            if (dd[d].nhdr) {
                col(&o, C_BOLD);
                printf("%s headers:", dir_name[d]);
                col(&o, C_OFF);
                printf("\n");
            }
            for (size_t i = 0; i < dd[d].nhdr; i++) {
                const reel_diff_header_t *h = &dd[d].hdr[i];
                if (h->na == 0) {
                    for (size_t k = 0; k < h->nb; k++)
                        header_line(&o, "+", C_GREEN, h->name, h->b[k]);
                } else if (h->nb == 0) {
                    for (size_t k = 0; k < h->na; k++)
                        header_line(&o, "-", C_RED, h->name, h->a[k]);
                } else {
                    char *ja = join(h->a, h->na), *jb = join(h->b, h->nb);
                    printf("  ~ ");
                    put(h->name);
                    printf(": ");
                    col(&o, C_RED);
                    put(ja);
                    col(&o, C_OFF);
                    printf(" -> ");
                    col(&o, C_GREEN);
                    put(jb);
                    col(&o, C_OFF);
                    printf("\n");
                    free(ja);
                    free(jb);
                }
            }
            const reel_diff_body_t *bd = &dd[d].body;
            if (bd->verdict == REEL_DIFF_BODY_SAME)
                continue;
            int partial = a->partial || b->partial;
            col(&o, C_BOLD);
            printf("%s body", dir_name[d]);
            col(&o, C_OFF);
            printf(" (%s, %llu bytes -> %s, %llu bytes):", bd->kind_a ? bd->kind_a : "raw",
                   (unsigned long long)a->wire_size, bd->kind_b ? bd->kind_b : "raw",
                   (unsigned long long)b->wire_size);
            if (partial && bd->verdict == REEL_DIFF_BODY_UNKNOWN)
                printf(" not stored whole; the same in the %zu bytes both hold, past them not "
                       "known",
                       bd->compared);
            else if (partial && bd->bytes_same)
                printf(" not stored whole; the same in the %zu bytes both hold, but the sizes "
                       "differ",
                       bd->compared);
            else if (partial)
                printf(" compared in the %zu bytes both hold", bd->compared);
            else if (bd->views_same)
                printf(" the same once pretty-printed");
            printf("\n");
            print_hunks(&o, &dd[d].hunks);
            for (int i = 0; i < 2; i++) {
                const reel_diff_dir_t *x = &f[i].dir[d];
                if (x->partial) {
                    char why[256];
                    reel_diff_partial_str(x, why, sizeof why);
                    printf("(%s: %s body %s)\n", i ? "+++" : "---", dir_name[d], why);
                }
                if (x->decode_error) {
                    printf("(%s: not decoded: ", i ? "+++" : "---");
                    put(x->decode_error);
                    printf(")\n");
                }
                if (x->body_cut)
                    printf("(%s: body cut at 16 MiB)\n", i ? "+++" : "---");
            }
            if (dd[d].lines.cut)
                printf("(only the first %d lines of each side compared)\n", REEL_DIFF_MAX_LINES);
            if (dd[d].lines.rough)
                printf("(over %d lines differ: the differing part is shown replaced whole)\n",
                       REEL_DIFF_MAX_D);
        }
        if (same)
            printf("no differences\n");
        else if (unknown && !diff_method && !diff_url && !diff_status && !diff_error &&
                 dd[0].nhdr == 0 && dd[1].nhdr == 0 &&
                 dd[0].body.verdict != REEL_DIFF_BODY_DIFFERS &&
                 dd[1].body.verdict != REEL_DIFF_BODY_DIFFERS &&
                 f[0].dir[0].present == f[1].dir[0].present &&
                 f[0].dir[1].present == f[1].dir[1].present)
            printf("no differences in what was stored, but a body was not stored whole: "
                   "not known to be the same\n");
    }
    free(st[0]);
    free(st[1]);
out:
    for (int d = 0; d < 2; d++)
        dir_free(&dd[d]);
    for (int i = 0; i < 2; i++)
        reel_diff_flow_free(&f[i]);
    reel_session_close(s[0]);
    if (!same_session)
        reel_session_close(s[1]);
out_args:
    free(sn[0]);
    free(sn[1]);
    return exit_code;
}
