/* Flow filter expressions compiled to SQL, plus a per-flow pass over the
 * spool for header and body terms; see filter.h for the language.
 *
 * Grammar (juxtaposition binds loosest, as in mitmproxy, where a filter is
 * OneOrMore(infix_notation(atom, [!, &, |]))):
 *
 *   filter  := [ seq ]                      empty: matches everything ("1")
 *   seq     := or { or }                    juxtaposition: AND
 *   or      := and { '|' and }
 *   and     := unary { '&' unary }
 *   unary   := '!' unary | primary
 *   primary := '(' seq ')' | REGEXOP VALUE | '~tag' VALUE
 *            | '~c' CODE | '~id' CODE | '~since' CODE | '~until' CODE
 *            | '~size' CODE | '~marked' | '~damaged' | '~replay' | '~all' | '~e'
 *            | '~s' | '~q' | '~http' | '~http2' | '~h2' | '~websocket' | '~tcp'
 *            | VALUE                        (bare: ~u)
 *   REGEXOP := ~d ~u ~m ~h ~hq ~hs ~b ~bq ~bs ~t ~tq ~ts ~src ~dst ~comment
 *   VALUE   := WORD | '...' | "..."
 *   CODE    := DIGITS | '...' | "..."       (DIGITS: any word ending at & |)
 *
 * A WORD runs until whitespace or one of ( ) ~ ' " (mitmproxy's
 * CharsNotIn("()~'\"" + whitespace)), so it may hold | & ! ("~d a|b" is
 * the regex "a|b", as in mitmproxy). DIGITS (mitmproxy's Word(nums)) also
 * end at & and |, so "~c 200|~c 404" is an "or" there and here. An
 * operator name runs until whitespace or one of ( ) ~ ' " & | !. Inside
 * quotes, a backslash before the quote character stands for the quote;
 * every other backslash is kept as written, together with the character
 * after it, so regex escapes ("\d", "\\") pass through.
 *
 * Where mitmproxy's reading is not what the text says to a reader, reel
 * refuses the filter and names the column (check_word(), check_next()),
 * rather than silently match something else:
 * - an unquoted WORD that ends in '|' or '&': "~m POST|~m PUT" would be
 *   the regex "POST|" (which matches every method) and "~m PUT";
 * - an argument that starts with '!', '&' or '|': "~d !x" is not "!~d x";
 * - a WORD cut short by ( ~ ' " rather than by whitespace or ')':
 *   "~m ^(GET|POST)$" would be "~m ^" and the URL regexes "GET|POST"
 *   and "$";
 * - a quoted argument or CODE followed by anything but whitespace, ')',
 *   '&', '|' or the end ("'a'b", "~c 200x").
 *
 * Header and body terms (~h ~hq ~hs ~b ~bq ~bs) need the spool. The SQL
 * (reel_filter_sql) takes each of them, negated or not, as 1: in negation
 * normal form every other operator is monotone, so the SQL over-
 * approximates. reel_filter_match_flow() then reads one flow's records,
 * decides those terms, and runs a second rendering of the tree (the
 * "exact" SQL, those terms as placeholders bound to 0 or 1) on its row.
 *
 * The parser builds a small tree, rewrites it into negation normal form with
 * chains of one kind flattened, then emits SQL with as few parentheses as
 * SQL precedence allows, the whole in one pair (see emit() for why depth
 * matters). Every emitted expression is two-valued (0 or 1, never NULL), so
 * NOT behaves like mitmproxy's "!" and De Morgan's laws hold: "!~c 200"
 * matches flows without a response.
 *
 * Regexes run in PCRE2's 8-bit non-UTF mode, caseless: case folding is ASCII
 * only (PCRE2's default C-locale tables), "." matches one byte, and invalid
 * UTF-8 in stored text can never make a match fail.
 *
 * There is no literal prefilter (such as "instr(lower(host), 'lit')>0 AND"
 * in front of regexp()): measured on 1M flows, JIT-compiled PCRE2, which
 * scans for a required literal itself, is 2-3 times faster than SQLite's
 * lower() + instr() (75 ms against 185 ms for "~d some.host"). A filter with
 * "~c N" uses the flows_status index and tests only those rows' regexes. */
#include "session/filter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "base/progress.h"
#include "session/bodyindex.h"
#include "session/decode.h"
#include "session/pbwire.h"
#include "session/store.h"

/** Longest accepted expression, in bytes. */
#define FILTER_MAX_LEN (64 * 1024)
/** Deepest nesting of "(" and "!". SQLite before 3.46 parses with a fixed
 * stack of 100 entries: the worst shape, "a & (b | c & (d | ...))", costs
 * one entry a level after emit()'s reordering, on top of about 30 for the
 * caller's statement and the deepest atom (tests/unit/session/filter_test.c
 * checks 32 levels inside a CTE and two subqueries). */
#define FILTER_MAX_DEPTH 32
/** Most terms (operators and bare words) in one expression. Chains are
 * emitted flat, and SQLite's expression depth limit (1000) counts each
 * operand of a chain, more than once when the caller nests the filter in
 * subqueries: 256 terms pass two levels of IN (SELECT ...), 400 do not. */
#define FILTER_MAX_TERMS 256
/** Cap on the generated SQL; the limits above keep it far below. */
#define FILTER_MAX_SQL (4 * 1024 * 1024)
/** Longest piece of user input quoted back in an error message. */
#define SHOW_MAX 40
/** Room for it, quoted, escaped and marked as cut. */
#define SHOW_BUF (SHOW_MAX * 4 + 8)

/* Compile options shared by the filter's validation and regexp(). */
#define RX_OPTIONS (PCRE2_CASELESS | PCRE2_NEVER_UTF)

/* ---- tree ---------------------------------------------------------------- */

typedef enum {
    N_REGEX, /* field, value */
    N_CODE,  /* num */
    N_CONN,  /* num: the client connection's number (flows.client_conn) */
    N_TAG,   /* value */
    N_MARKED,
    N_DAMAGED,
    N_REPLAY,    /* made by reel replay (flows.replay_of set) */
    N_HTTP,      /* an HTTP exchange, WebSocket handshakes included */
    N_WEBSOCKET, /* a WebSocket flow */
    N_HTTP2,     /* the client spoke HTTP/2 */
    N_TCP,       /* a raw TCP flow (tunnel) */
    N_ALL,
    N_ERROR,   /* flows.error set */
    N_HASRESP, /* ~s: an HTTP flow with a response */
    N_NORESP,  /* ~q: an HTTP flow without one */
    N_CTYPE,   /* value: request or response content type */
    N_COMMENT, /* value: an annotation's text */
    N_ID,      /* num..num2 */
    N_SINCE,   /* num: start_us >= num */
    N_UNTIL,   /* num: start_us <= num */
    N_SIZE,    /* request + response body size `cmp` num */
    N_SPOOL,   /* field F_HEADERS or F_BODY, num: sides (1 request, 2 response);
                  after compile, num2 is the index in reel_filter.spool */
    N_NOT,     /* kids[0] */
    N_AND,     /* kids[0..nkids) */
    N_OR,
} node_kind;

typedef enum {
    F_HOST,
    F_URL,
    F_METHOD,
    F_REQ_CTYPE,
    F_RESP_CTYPE,
    F_SRC,
    F_DST,
    F_HEADERS,
    F_BODY
} field_t;

typedef enum { C_EQ, C_LT, C_LE, C_GT, C_GE } cmp_t;

typedef struct node {
    node_kind kind;
    field_t field;
    char *value; /* owned, NUL-terminated */
    size_t vlen;
    int64_t num, num2;
    cmp_t cmp;
    struct node **kids; /* owned */
    size_t nkids, cap;
    char *fts; /* N_SPOOL body term of a plain string: its body_fts query (owned) */
} node_t;

static void node_free(node_t *n) {
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->value);
    free(n->fts);
    free(n);
}

static node_t *node_new(node_kind kind) {
    node_t *n = reel_calloc(1, sizeof *n);
    n->kind = kind;
    return n;
}

static void node_add(node_t *n, node_t *kid) {
    if (n->nkids == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 4;
        n->kids = reel_realloc(n->kids, n->cap * sizeof *n->kids);
    }
    n->kids[n->nkids++] = kid;
}

/* Adds kid to AND/OR node n, splicing in kid's own kids when it is of the
 * same kind: "(a & b) & c" becomes one chain of three. Takes kid. */
static void node_add_flat(node_t *n, node_t *kid) {
    if (kid->kind != n->kind) {
        node_add(n, kid);
        return;
    }
    for (size_t i = 0; i < kid->nkids; i++)
        node_add(n, kid->kids[i]);
    kid->nkids = 0;
    node_free(kid);
}

/* ---- lexer --------------------------------------------------------------- */

typedef enum { T_END, T_LPAREN, T_RPAREN, T_AND, T_OR, T_NOT, T_OP, T_WORD, T_QUOTED } tok_kind;

typedef struct {
    tok_kind kind;
    size_t start, end; /* source span, end exclusive (quotes included) */
} tok_t;

typedef struct {
    const char *src;
    size_t len;
    size_t pos;
    int depth;
    int terms;
    reel_err_t *err;
} parser_t;

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Ends an unquoted word (mitmproxy's word set). */
static bool ends_word(char c) {
    return is_space(c) || c == '(' || c == ')' || c == '~' || c == '\'' || c == '"';
}

/* Ends an operator name. */
static bool ends_op(char c) {
    return ends_word(c) || c == '&' || c == '|' || c == '!';
}

static size_t skip_space(const parser_t *p, size_t i) {
    while (i < p->len && is_space(p->src[i]))
        i++;
    return i;
}

static size_t scan_word(const parser_t *p, size_t i) {
    while (i < p->len && !ends_word(p->src[i]))
        i++;
    return i;
}

/* Scans an unquoted status code: a word that also ends at & and |, as
 * mitmproxy's Word(nums) does, so that "~c 200|~c 404" is an "or". */
static size_t scan_code(const parser_t *p, size_t i) {
    while (i < p->len && !ends_word(p->src[i]) && p->src[i] != '&' && p->src[i] != '|')
        i++;
    return i;
}

/* Scans a quoted string starting at the quote at i; sets *end past the
 * closing quote. */
static reel_rc scan_quoted(parser_t *p, size_t i, size_t *end) {
    char q = p->src[i];
    size_t j = i + 1;
    while (j < p->len) {
        if (p->src[j] == '\\' && j + 1 < p->len) {
            j += 2;
            continue;
        }
        if (p->src[j] == q) {
            *end = j + 1;
            return REEL_OK;
        }
        j++;
    }
    return reel_err_set(p->err, REEL_INVALID, "filter: unterminated quoted string at column %zu",
                        i + 1);
}

/* The token at the current position, in term/operator position; does not
 * consume it. */
static reel_rc peek(parser_t *p, tok_t *t) {
    size_t i = skip_space(p, p->pos);
    t->start = i;
    t->end = i + 1;
    if (i >= p->len) {
        t->kind = T_END;
        t->end = i;
        return REEL_OK;
    }
    switch (p->src[i]) {
    case '(':
        t->kind = T_LPAREN;
        return REEL_OK;
    case ')':
        t->kind = T_RPAREN;
        return REEL_OK;
    case '&':
        t->kind = T_AND;
        return REEL_OK;
    case '|':
        t->kind = T_OR;
        return REEL_OK;
    case '!':
        t->kind = T_NOT;
        return REEL_OK;
    case '~': {
        size_t j = i + 1;
        while (j < p->len && !ends_op(p->src[j]))
            j++;
        t->kind = T_OP;
        t->end = j;
        return REEL_OK;
    }
    case '\'':
    case '"':
        t->kind = T_QUOTED;
        return scan_quoted(p, i, &t->end);
    default:
        t->kind = T_WORD;
        t->end = scan_word(p, i);
        return REEL_OK;
    }
}

/* Quotes n bytes of user input s for an error message into buf (SHOW_BUF
 * bytes): at most SHOW_MAX of them, bytes outside printable ASCII as \xNN,
 * so that no input can put control sequences on a terminal. */
static const char *show(char *buf, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    buf[o++] = '\'';
    for (size_t i = 0; i < n && i < SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    if (n > SHOW_MAX) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

/* Describes token t for an error message: "'text'" or "end of expression".
 * Writes into buf (SHOW_BUF bytes). */
static const char *describe(const parser_t *p, const tok_t *t, char *buf) {
    if (t->kind == T_END)
        return "end of expression";
    return show(buf, p->src + t->start, t->end - t->start);
}

/* Copies the text of a value token into a new string: a word as is, a
 * quoted string without its quotes and with \<quote> turned into <quote>. */
static char *value_text(const parser_t *p, const tok_t *t, size_t *len) {
    if (t->kind == T_WORD) {
        *len = t->end - t->start;
        return reel_strndup(p->src + t->start, *len);
    }
    char q = p->src[t->start];
    size_t a = t->start + 1, b = t->end - 1; /* content span */
    char *s = reel_malloc(b - a + 1);
    size_t n = 0;
    for (size_t i = a; i < b; i++) {
        if (p->src[i] == '\\' && i + 1 < b) {
            if (p->src[i + 1] != q)
                s[n++] = '\\';
            s[n++] = p->src[i + 1];
            i++;
        } else {
            s[n++] = p->src[i];
        }
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* Maps offset k in the text of value token t back to a source offset. */
static size_t value_src_offset(const parser_t *p, const tok_t *t, size_t k) {
    if (t->kind == T_WORD)
        return t->start + k;
    char q = p->src[t->start];
    size_t i = t->start + 1, b = t->end - 1, n = 0;
    while (i < b) {
        size_t step = 1, out = 1;
        if (p->src[i] == '\\' && i + 1 < b) {
            step = 2;
            out = p->src[i + 1] == q ? 1 : 2;
        }
        if (k < n + out)
            return k == n ? i : i + 1;
        n += out;
        i += step;
    }
    return b; /* the closing quote */
}

/* ---- parser -------------------------------------------------------------- */

typedef struct {
    const char *name;
    node_kind kind;
    field_t field;
    const char *expects; /* NULL: takes no argument */
    const char *noun;    /* the argument, in messages */
    int64_t sides;       /* N_SPOOL: 1 request, 2 response, 3 both */
    bool numeric;        /* unquoted, the argument also ends at & and | */
} op_t;

/* clang-format off */
static const op_t OPS[] = {
    {"~d", N_REGEX, F_HOST, "a regex", "regex", 0, false},
    {"~u", N_REGEX, F_URL, "a regex", "regex", 0, false},
    {"~m", N_REGEX, F_METHOD, "a regex", "regex", 0, false},
    {"~c", N_CODE, F_HOST, "an integer status code", "status code", 0, true},
    {"~conn", N_CONN, F_HOST, "a client connection number", "connection number", 0, true},
    {"~tag", N_TAG, F_HOST, "a tag name", "tag name", 0, false},
    {"~marked", N_MARKED, F_HOST, NULL, NULL, 0, false},
    {"~damaged", N_DAMAGED, F_HOST, NULL, NULL, 0, false},
    {"~replay", N_REPLAY, F_HOST, NULL, NULL, 0, false},
    {"~replayq", N_REPLAY, F_HOST, NULL, NULL, 0, false},
    {"~http", N_HTTP, F_HOST, NULL, NULL, 0, false},
    {"~http2", N_HTTP2, F_HOST, NULL, NULL, 0, false},
    {"~h2", N_HTTP2, F_HOST, NULL, NULL, 0, false},
    {"~websocket", N_WEBSOCKET, F_HOST, NULL, NULL, 0, false},
    {"~tcp", N_TCP, F_HOST, NULL, NULL, 0, false},
    {"~all", N_ALL, F_HOST, NULL, NULL, 0, false},
    {"~e", N_ERROR, F_HOST, NULL, NULL, 0, false},
    {"~s", N_HASRESP, F_HOST, NULL, NULL, 0, false},
    {"~q", N_NORESP, F_HOST, NULL, NULL, 0, false},
    {"~t", N_CTYPE, F_HOST, "a regex", "regex", 0, false},
    {"~tq", N_REGEX, F_REQ_CTYPE, "a regex", "regex", 0, false},
    {"~ts", N_REGEX, F_RESP_CTYPE, "a regex", "regex", 0, false},
    {"~src", N_REGEX, F_SRC, "a regex", "regex", 0, false},
    {"~dst", N_REGEX, F_DST, "a regex", "regex", 0, false},
    {"~comment", N_COMMENT, F_HOST, "a regex", "regex", 0, false},
    {"~h", N_SPOOL, F_HEADERS, "a regex", "regex", 3, false},
    {"~hq", N_SPOOL, F_HEADERS, "a regex", "regex", 1, false},
    {"~hs", N_SPOOL, F_HEADERS, "a regex", "regex", 2, false},
    {"~b", N_SPOOL, F_BODY, "a regex", "regex", 3, false},
    {"~bq", N_SPOOL, F_BODY, "a regex", "regex", 1, false},
    {"~bs", N_SPOOL, F_BODY, "a regex", "regex", 2, false},
    {"~id", N_ID, F_HOST, "a flow id N or range N-M", "flow id", 0, true},
    {"~since", N_SINCE, F_HOST, "a time", "time", 0, true},
    {"~until", N_UNTIL, F_HOST, "a time", "time", 0, true},
    {"~size", N_SIZE, F_HOST, "a size like >10k, <1m or 512", "size", 0, true},
};
/* clang-format on */

#define KNOWN_OPS                                                                                  \
    "~d ~u ~m ~c ~h ~hq ~hs ~b ~bq ~bs ~t ~tq ~ts ~src ~dst ~e ~s ~q ~comment ~marked ~all "       \
    "~http ~http2 ~h2 ~websocket ~tcp ~conn ~tag ~id ~since ~until ~size ~damaged ~replay "        \
    "~replayq"

/* Checks what follows argument token a (a word, a quoted string or, if
 * code, a status code): whitespace, ')' or the end, and after a quoted
 * string or a code also '&' or '|'. Anything else is refused rather than
 * read as juxtaposition the way mitmproxy does: "~m ^(GET|POST)$" would be
 * "~m ^" and "(GET|POST)", "'a'b" would be "'a' b". */
static reel_rc check_next(parser_t *p, const tok_t *a, const char *noun, bool code) {
    size_t i = a->end;
    if (i >= p->len || is_space(p->src[i]) || p->src[i] == ')')
        return REEL_OK;
    char c = p->src[i];
    if ((a->kind == T_QUOTED || code) && (c == '&' || c == '|'))
        return REEL_OK;
    char cbuf[SHOW_BUF], wbuf[SHOW_BUF];
    if (c == '\'')
        memcpy(cbuf, "\"'\"", 4); /* "'" reads better than ''' */
    else
        show(cbuf, &c, 1);
    if (a->kind == T_QUOTED)
        return reel_err_set(p->err, REEL_INVALID,
                            "filter: %s at column %zu right after a quoted %s: put a space "
                            "before it",
                            cbuf, i + 1, noun);
    show(wbuf, p->src + a->start, a->end - a->start);
    if (code)
        return reel_err_set(p->err, REEL_INVALID,
                            "filter: %s at column %zu right after the %s %s: put a space "
                            "before it",
                            cbuf, i + 1, noun, wbuf);
    return reel_err_set(p->err, REEL_INVALID,
                        "filter: %s at column %zu right after the unquoted %s %s: quote the "
                        "whole %s, or put a space before %s",
                        cbuf, i + 1, noun, wbuf, noun, cbuf);
}

/* Checks the edges of an unquoted word a given as the argument of op (NULL
 * for a bare word): it may not start with '!', '&' or '|', which read as
 * operators ("~d !x" is not "!~d x"), nor end in an unescaped '&' or '|'
 * ("~m POST|~m PUT" would be the regex "POST|", which matches everything,
 * and "~m PUT"). */
static reel_rc check_word(parser_t *p, const op_t *op, const tok_t *a, const char *noun) {
    char buf[SHOW_BUF];
    const char *w = p->src + a->start;
    size_t n = a->end - a->start;
    if (op != NULL && (w[0] == '!' || w[0] == '&' || w[0] == '|'))
        return reel_err_set(p->err, REEL_INVALID,
                            "filter: %s expects %s at column %zu, got '%c'%s; quote a %s that "
                            "starts with '%c'",
                            op->name, op->expects, a->start + 1, w[0],
                            w[0] == '!' ? " (for \"not\", put '!' before the operator)" : "", noun,
                            w[0]);
    char last = w[n - 1];
    if (last != '&' && last != '|')
        return REEL_OK;
    size_t bs = 0; /* backslashes before it: an odd count escapes it */
    while (bs < n - 1 && w[n - 2 - bs] == '\\')
        bs++;
    if (bs % 2 == 1)
        return REEL_OK;
    return reel_err_set(p->err, REEL_INVALID,
                        "filter: unquoted %s %s ends in '%c' at column %zu: for \"%s\", put "
                        "spaces around '%c'; for a %s, quote it",
                        noun, show(buf, w, n), last, a->end, last == '|' ? "or" : "and", last,
                        noun);
}

static reel_rc parse_seq(parser_t *p, node_t **out);

static reel_rc count_term(parser_t *p, size_t at) {
    if (++p->terms > FILTER_MAX_TERMS)
        return reel_err_set(p->err, REEL_LIMIT, "filter: too many terms at column %zu (limit %d)",
                            at + 1, FILTER_MAX_TERMS);
    return REEL_OK;
}

/* Checks regex text v, whose first byte came from value token t. */
static reel_rc check_regex(parser_t *p, const tok_t *t, const char *v, size_t vlen) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)v, vlen, RX_OPTIONS, &code, &off, NULL);
    if (re != NULL) {
        pcre2_code_free(re);
        return REEL_OK;
    }
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "error %d", code);
    size_t at = value_src_offset(p, t, off > vlen ? vlen : off);
    return reel_err_set(p->err, REEL_INVALID, "filter: bad regex at column %zu: %s", at + 1,
                        (const char *)msg);
}

/* Parses a status code: 1 to 9 decimal digits. */
static bool parse_code(const char *v, size_t vlen, int64_t *out) {
    if (vlen == 0 || vlen > 9)
        return false;
    int64_t n = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (v[i] - '0');
    }
    *out = n;
    return true;
}

/* Parses a flow id range: "N" or "N-M" (N <= M), up to 18 digits each. */
static bool parse_id(const char *v, size_t vlen, int64_t *lo, int64_t *hi) {
    int64_t n[2] = {0, 0};
    size_t k = 0, digits = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] == '-' && k == 0 && digits > 0) {
            k = 1;
            digits = 0;
            continue;
        }
        if (v[i] < '0' || v[i] > '9' || ++digits > 18)
            return false;
        n[k] = n[k] * 10 + (v[i] - '0');
    }
    if (digits == 0)
        return false;
    *lo = n[0];
    *hi = k ? n[1] : n[0];
    return *lo <= *hi;
}

/* Parses a size: an optional comparison (> >= < <= =), digits, and an
 * optional unit b, k, m, g, t (powers of 1024; "kb", "kib" too), any case. */
static bool parse_size(const char *v, size_t vlen, cmp_t *cmp, int64_t *out) {
    size_t i = 0;
    *cmp = C_EQ;
    if (i < vlen && (v[i] == '>' || v[i] == '<')) {
        bool gt = v[i] == '>';
        i++;
        bool eq = i < vlen && v[i] == '=';
        i += eq;
        *cmp = gt ? (eq ? C_GE : C_GT) : (eq ? C_LE : C_LT);
    } else if (i < vlen && v[i] == '=') {
        i++;
    }
    int64_t n = 0;
    size_t d0 = i;
    while (i < vlen && v[i] >= '0' && v[i] <= '9') {
        if (i - d0 >= 15)
            return false;
        n = n * 10 + (v[i] - '0');
        i++;
    }
    if (i == d0)
        return false;
    static const char units[] = "bkmgt";
    int shift = 0;
    if (i < vlen) {
        char u = v[i] >= 'A' && v[i] <= 'Z' ? (char)(v[i] - 'A' + 'a') : v[i];
        const char *at = memchr(units, u, 5);
        if (u == '\0' || at == NULL)
            return false;
        shift = (int)(at - units) * 10;
        i++;
        if (shift > 0 && i < vlen && (v[i] == 'i' || v[i] == 'I'))
            i++;
        if (shift > 0 && i < vlen && (v[i] == 'b' || v[i] == 'B'))
            i++;
    }
    if (i != vlen || (shift > 0 && n > (INT64_MAX >> shift)))
        return false;
    *out = n << shift;
    return true;
}

/* An operator token t: looks it up and parses its argument. */
static reel_rc parse_op(parser_t *p, const tok_t *t, node_t **out) {
    reel_rc rc = REEL_OK;
    node_t *n = NULL;
    char *v = NULL;
    size_t vlen = 0, tlen = t->end - t->start;
    const op_t *op = NULL;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
        if (strlen(OPS[i].name) == tlen && memcmp(OPS[i].name, p->src + t->start, tlen) == 0)
            op = &OPS[i];
    }
    if (op == NULL) {
        char buf[SHOW_BUF];
        rc = reel_err_set(p->err, REEL_INVALID,
                          "filter: unknown operator %s at column %zu (known: " KNOWN_OPS ")",
                          show(buf, p->src + t->start, tlen), t->start + 1);
        goto out;
    }
    p->pos = t->end;
    n = node_new(op->kind);
    n->field = op->field;
    if (op->expects == NULL)
        goto out;

    /* The argument: a quoted string or a word (for ~c, digits). */
    tok_t a = {0}; /* every path sets a.end; gcc -O3 cannot see it (scan_quoted) */
    a.start = skip_space(p, p->pos);
    char c = a.start < p->len ? p->src[a.start] : '\0';
    if (c == '\'' || c == '"') {
        a.kind = T_QUOTED;
        if ((rc = scan_quoted(p, a.start, &a.end)) != REEL_OK)
            goto out;
    } else if (a.start < p->len && !ends_word(c)) {
        a.kind = T_WORD;
        if (op->numeric) {
            a.end = scan_code(p, a.start);
        } else {
            a.end = scan_word(p, a.start);
            if ((rc = check_word(p, op, &a, op->noun)) != REEL_OK)
                goto out;
        }
    } else {
        char buf[SHOW_BUF];
        p->pos = a.start;
        if ((rc = peek(p, &a)) != REEL_OK)
            goto out;
        rc = reel_err_set(p->err, REEL_INVALID, "filter: %s expects %s at column %zu, got %s",
                          op->name, op->expects, a.start + 1, describe(p, &a, buf));
        goto out;
    }
    if (a.end == a.start) { /* ~c followed by & or | */
        char buf[SHOW_BUF];
        rc = reel_err_set(p->err, REEL_INVALID, "filter: %s expects %s at column %zu, got %s",
                          op->name, op->expects, a.start + 1, show(buf, p->src + a.start, 1));
        goto out;
    }
    p->pos = a.end;
    v = value_text(p, &a, &vlen);

    n->num = op->sides;
    bool ok = true;
    switch (op->kind) {
    case N_REGEX:
    case N_CTYPE:
    case N_COMMENT:
    case N_SPOOL:
        if ((rc = check_regex(p, &a, v, vlen)) != REEL_OK)
            goto out;
        break;
    case N_ID:
        ok = parse_id(v, vlen, &n->num, &n->num2);
        break;
    case N_SINCE:
    case N_UNTIL:
        ok = reel_filter_parse_time(v, &n->num) == REEL_OK;
        break;
    case N_SIZE:
        ok = parse_size(v, vlen, &n->cmp, &n->num);
        break;
    default:
        break;
    }
    if (!ok) {
        char buf[SHOW_BUF];
        rc = reel_err_set(p->err, REEL_INVALID, "filter: %s expects %s at column %zu, got %s",
                          op->name, op->expects, a.start + 1, describe(p, &a, buf));
        goto out;
    }
    switch (op->kind) {
    case N_CODE:
    case N_CONN:
        if (!parse_code(v, vlen, &n->num)) {
            char buf[SHOW_BUF];
            rc = reel_err_set(p->err, REEL_INVALID, "filter: %s expects %s at column %zu, got %s",
                              op->name, op->expects, a.start + 1, describe(p, &a, buf));
            goto out;
        }
        break;
    default:
        break;
    }
    if ((rc = check_next(p, &a, op->noun, op->numeric)) != REEL_OK)
        goto out;
    n->value = v;
    n->vlen = vlen;
    v = NULL;
out:
    free(v);
    if (rc != REEL_OK) {
        node_free(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

static reel_rc nest(parser_t *p, size_t at) {
    if (++p->depth > FILTER_MAX_DEPTH)
        return reel_err_set(p->err, REEL_LIMIT,
                            "filter: expression nested too deeply at column %zu (limit %d)", at + 1,
                            FILTER_MAX_DEPTH);
    return REEL_OK;
}

static reel_rc parse_unary(parser_t *p, node_t **out) {
    reel_rc rc = REEL_OK;
    node_t *n = NULL;
    tok_t t;
    char buf[SHOW_BUF];
    if ((rc = peek(p, &t)) != REEL_OK)
        goto out;
    switch (t.kind) {
    case T_NOT:
        if ((rc = nest(p, t.start)) != REEL_OK)
            goto out;
        p->pos = t.end;
        n = node_new(N_NOT);
        node_add(n, NULL);
        if ((rc = parse_unary(p, &n->kids[0])) != REEL_OK)
            goto out;
        p->depth--;
        break;
    case T_LPAREN: {
        if ((rc = nest(p, t.start)) != REEL_OK)
            goto out;
        p->pos = t.end;
        if ((rc = parse_seq(p, &n)) != REEL_OK)
            goto out;
        tok_t c;
        if ((rc = peek(p, &c)) != REEL_OK)
            goto out;
        if (c.kind != T_RPAREN) {
            rc = reel_err_set(p->err, REEL_INVALID, "filter: expected ')' at column %zu, got %s",
                              c.start + 1, describe(p, &c, buf));
            goto out;
        }
        p->pos = c.end;
        p->depth--;
        break;
    }
    case T_OP:
        if ((rc = count_term(p, t.start)) != REEL_OK)
            goto out;
        rc = parse_op(p, &t, &n);
        break;
    case T_WORD:
    case T_QUOTED: {
        if ((rc = count_term(p, t.start)) != REEL_OK)
            goto out;
        if (t.kind == T_WORD && (rc = check_word(p, NULL, &t, "regex")) != REEL_OK)
            goto out;
        p->pos = t.end;
        n = node_new(N_REGEX);
        n->field = F_URL;
        n->value = value_text(p, &t, &n->vlen);
        if ((rc = check_regex(p, &t, n->value, n->vlen)) != REEL_OK)
            goto out;
        rc = check_next(p, &t, "regex", false);
        break;
    }
    default:
        rc = reel_err_set(p->err, REEL_INVALID, "filter: unexpected %s at column %zu",
                          describe(p, &t, buf), t.start + 1);
        break;
    }
out:
    if (rc != REEL_OK) {
        node_free(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

/* Parses `sub { sep sub }` into an n-ary node of kind `kind` (or the single
 * operand). sep is T_AND or T_OR; T_END means juxtaposition: continue while
 * the next token can start a term. */
static reel_rc parse_chain(parser_t *p, node_kind kind, tok_kind sep,
                           reel_rc (*sub)(parser_t *, node_t **), node_t **out) {
    reel_rc rc = REEL_OK;
    node_t *first = NULL, *chain = NULL, *kid = NULL;
    if ((rc = sub(p, &first)) != REEL_OK)
        goto out;
    for (;;) {
        tok_t t;
        if ((rc = peek(p, &t)) != REEL_OK)
            goto out;
        if (sep == T_END) {
            if (t.kind == T_END || t.kind == T_RPAREN || t.kind == T_AND || t.kind == T_OR)
                break;
        } else {
            if (t.kind != sep)
                break;
            p->pos = t.end;
        }
        if ((rc = sub(p, &kid)) != REEL_OK)
            goto out;
        if (chain == NULL) {
            chain = node_new(kind);
            node_add_flat(chain, first);
            first = NULL;
        }
        node_add_flat(chain, kid);
        kid = NULL;
    }
out:
    if (rc != REEL_OK) {
        node_free(first);
        node_free(chain);
        *out = NULL;
        return rc;
    }
    *out = chain ? chain : first;
    return REEL_OK;
}

static reel_rc parse_and(parser_t *p, node_t **out) {
    return parse_chain(p, N_AND, T_AND, parse_unary, out);
}

static reel_rc parse_or(parser_t *p, node_t **out) {
    return parse_chain(p, N_OR, T_OR, parse_and, out);
}

static reel_rc parse_seq(parser_t *p, node_t **out) {
    return parse_chain(p, N_AND, T_END, parse_or, out);
}

/* Rewrites n into negation normal form, negated if `neg`: NOT only above
 * atoms ("!(a | !b)" is "!a & b"), chains of one kind flattened. Exact,
 * since every atom is two-valued, and it keeps the SQL shallow. Takes n. */
static node_t *to_nnf(node_t *n, bool neg) {
    if (n->kind == N_NOT) {
        node_t *kid = n->kids[0];
        n->nkids = 0;
        node_free(n);
        return to_nnf(kid, !neg);
    }
    if (n->kind == N_AND || n->kind == N_OR) {
        if (neg)
            n->kind = n->kind == N_AND ? N_OR : N_AND;
        node_t **kids = n->kids;
        size_t nkids = n->nkids;
        n->kids = NULL;
        n->nkids = n->cap = 0;
        for (size_t i = 0; i < nkids; i++)
            node_add_flat(n, to_nnf(kids[i], neg));
        free(kids);
        return n;
    }
    if (!neg)
        return n;
    node_t *neg_node = node_new(N_NOT);
    node_add(neg_node, n);
    return neg_node;
}

/* ---- live matching: a request about to be sent ------------------------------ */

struct reel_filter_live {
    node_t *root;    /* NULL: the empty filter */
    pcre2_code **re; /* the regexes of its terms, node->num2 the index */
    size_t nre;
    bool both; /* judged on responses too (reel_filter_live_compile_both) */
};

/* The operator a term was written with, for messages. */
static const char *op_name(const node_t *n) {
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (OPS[i].kind == n->kind &&
            (n->kind != N_REGEX && n->kind != N_SPOOL ? true : OPS[i].field == n->field) &&
            (n->kind != N_SPOOL || OPS[i].sides == n->num))
            return OPS[i].name;
    return "this term";
}

/* Checks that every term of n can be judged on a request before it is
 * sent, compiling their regexes. */
static reel_rc live_prepare(reel_filter_live_t *f, node_t *n, reel_err_t *err) {
    for (size_t i = 0; i < n->nkids; i++) {
        reel_rc rc = live_prepare(f, n->kids[i], err);
        if (rc != REEL_OK)
            return rc;
    }
    bool regex = false, headers = false;
    switch (n->kind) {
    case N_NOT:
    case N_AND:
    case N_OR:
    case N_HTTP:
    case N_HTTP2:
    case N_WEBSOCKET:
    case N_TCP:
    case N_ALL:
    case N_HASRESP:
    case N_NORESP:
        return REEL_OK;
    case N_CODE:
        if (f->both)
            return REEL_OK;
        break;
    case N_CTYPE:
        regex = true;
        break;
    case N_REGEX:
        regex = n->field != F_DST && (f->both || n->field != F_RESP_CTYPE);
        break;
    case N_SPOOL:
        regex = headers = n->field == F_HEADERS && (f->both || (n->num & 1));
        break;
    default:
        break;
    }
    if (!regex)
        return f->both ? reel_err_set(err, REEL_INVALID,
                                      "filter: %s is not known when a head is sent on (a rule's "
                                      "filter takes ~d ~u ~m ~c ~h ~hq ~hs ~t ~tq ~ts ~src ~http "
                                      "~h2 ~websocket ~all ~q ~s, and ! & |)",
                                      op_name(n))
                       : reel_err_set(err, REEL_INVALID,
                                      "filter: %s is not known before the request is sent (a "
                                      "rule's filter takes ~d ~u ~m ~h ~hq ~t ~tq ~src ~http ~h2 "
                                      "~websocket ~all ~q, and ! & |)",
                                      op_name(n));
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (headers) /* header lines end in CRLF: "$" before it, as ~h in the spool */
        pcre2_set_newline(cc, PCRE2_NEWLINE_ANYCRLF);
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)n->value, n->vlen,
                                   RX_OPTIONS | (headers ? PCRE2_MULTILINE : 0), &code, &off, cc);
    pcre2_compile_context_free(cc);
    if (re == NULL) /* (check_regex passed it) */
        return reel_err_set(err, REEL_INVALID, "filter: bad regex (error %d)", code);
    f->re = reel_realloc(f->re, (f->nre + 1) * sizeof *f->re);
    f->re[f->nre] = re;
    n->num2 = (int64_t)f->nre++;
    return REEL_OK;
}

static reel_rc live_compile(const char *expr, bool both, reel_filter_live_t **out,
                            reel_err_t *err) {
    *out = NULL;
    if (expr == NULL)
        expr = "";
    size_t len = strnlen(expr, FILTER_MAX_LEN + 1);
    if (len > FILTER_MAX_LEN)
        return reel_err_set(err, REEL_LIMIT, "filter: expression too long (limit %d bytes)",
                            FILTER_MAX_LEN);
    parser_t p = {.src = expr, .len = len, .err = err};
    reel_filter_live_t *f = reel_calloc(1, sizeof *f);
    f->both = both;
    tok_t t;
    reel_rc rc = peek(&p, &t);
    if (rc == REEL_OK && t.kind != T_END) {
        if ((rc = parse_seq(&p, &f->root)) == REEL_OK && (rc = peek(&p, &t)) == REEL_OK &&
            t.kind != T_END) {
            char buf[SHOW_BUF];
            rc = reel_err_set(err, REEL_INVALID, "filter: unexpected %s at column %zu",
                              describe(&p, &t, buf), t.start + 1);
        }
        if (rc == REEL_OK) {
            f->root = to_nnf(f->root, false);
            rc = live_prepare(f, f->root, err);
        }
    }
    if (rc != REEL_OK) {
        reel_filter_live_free(f);
        return rc;
    }
    *out = f;
    return REEL_OK;
}

reel_rc reel_filter_live_compile(const char *expr, reel_filter_live_t **out, reel_err_t *err) {
    return live_compile(expr, false, out, err);
}

reel_rc reel_filter_live_compile_both(const char *expr, reel_filter_live_t **out, reel_err_t *err) {
    return live_compile(expr, true, out, err);
}

/* The lines of n fields, as mitmproxy's bytes(headers), into an empty
 * buffer. */
static void live_lines(reel_buf_t *lines, const reel_filter_field_t *hs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        reel_buf_append(lines, hs[i].name, hs[i].name_len);
        reel_buf_append(lines, ": ", 2);
        reel_buf_append(lines, hs[i].value, hs[i].value_len);
        reel_buf_append(lines, "\r\n", 2);
    }
}

static bool live_find(const reel_filter_live_t *f, const node_t *n, const char *s, size_t len) {
    if (s == NULL)
        return false; /* (as regexp() on a NULL column) */
    pcre2_code *re = f->re[n->num2];
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* lines: the request's header lines [0] and the response's [1], made
 * when a term first needs them */
static bool live_eval(const reel_filter_live_t *f, const node_t *n, const reel_filter_request_t *rq,
                      reel_buf_t *lines) {
    switch (n->kind) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++)
            if (!live_eval(f, n->kids[i], rq, lines))
                return false;
        return true;
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++)
            if (live_eval(f, n->kids[i], rq, lines))
                return true;
        return false;
    case N_NOT:
        return !live_eval(f, n->kids[0], rq, lines);
    case N_HTTP:
    case N_ALL:
        return true;
    case N_NORESP: /* ~q: the request, no response yet */
        return !rq->response;
    case N_HASRESP: /* ~s: its response */
        return rq->response;
    case N_CODE:
        return rq->response && (int64_t)rq->status == n->num;
    case N_HTTP2:
        return rq->http2;
    case N_WEBSOCKET:
        return rq->websocket;
    case N_CTYPE: {
        const char *rs = rq->response ? rq->resp_content_type : NULL;
        return live_find(f, n, rq->content_type, rq->content_type ? strlen(rq->content_type) : 0) ||
               live_find(f, n, rs, rs ? strlen(rs) : 0);
    }
    case N_REGEX: {
        const char *s = n->field == F_HOST         ? rq->host
                        : n->field == F_URL        ? rq->url
                        : n->field == F_METHOD     ? rq->method
                        : n->field == F_REQ_CTYPE  ? rq->content_type
                        : n->field == F_RESP_CTYPE ? (rq->response ? rq->resp_content_type : NULL)
                        : n->field == F_SRC        ? rq->client_addr
                                                   : NULL;
        return live_find(f, n, s, s ? strlen(s) : 0);
    }
    case N_SPOOL:
        for (int side = 0; side < 2; side++) {
            if (!(n->num & (1 << side)) || (side == 1 && !rq->response))
                continue;
            if (lines[side].len == 0) {
                if (side == 0)
                    live_lines(&lines[0], rq->headers, rq->nheaders);
                else
                    live_lines(&lines[1], rq->resp_headers, rq->nresp_headers);
            }
            if (live_find(f, n, (const char *)lines[side].data, lines[side].len))
                return true;
        }
        return false;
    default: /* (N_TCP: never for a request about to be sent) */
        return false;
    }
}

bool reel_filter_live_match(const reel_filter_live_t *f, const reel_filter_request_t *rq) {
    if (f == NULL || f->root == NULL)
        return true;
    reel_buf_t lines[2];
    reel_buf_init(&lines[0], 0);
    reel_buf_init(&lines[1], 0);
    bool m = live_eval(f, f->root, rq, lines);
    reel_buf_free(&lines[0]);
    reel_buf_free(&lines[1]);
    return m;
}

void reel_filter_live_free(reel_filter_live_t *f) {
    if (f == NULL)
        return;
    node_free(f->root);
    for (size_t i = 0; i < f->nre; i++)
        pcre2_code_free(f->re[i]);
    free(f->re);
    free(f);
}

/* ---- SQL emission ---------------------------------------------------------- */

typedef struct {
    bool is_int;
    bool is_spool; /* num: index of a spool term, bound to its 0/1 verdict */
    int64_t num;
    char *text; /* owned */
    size_t len;
} param_t;

/* One SQL rendering of the filter and its parameters. */
typedef struct {
    char *sql; /* owned */
    param_t *params;
    size_t nparams, cap;
} part_t;

/* A term read from the spool (~h ~hq ~hs ~b ~bq ~bs). */
typedef struct {
    field_t field;   /* F_HEADERS or F_BODY */
    int sides;       /* 1 request, 2 response, 3 both */
    pcre2_code *re;  /* owned */
    size_t lookback; /* bytes kept before a search window (body terms) */
} spool_term_t;

/* The filter's tree as far as the spool pass can judge it without the
 * index (vprog_build), in prefix order: each AND and OR followed by its
 * kids. */
typedef enum { V_TRUE, V_SQL, V_SPOOL, V_AND, V_OR } vkind_t;

typedef struct {
    vkind_t kind;
    bool neg;       /* V_SPOOL: the term negated */
    uint32_t idx;   /* V_SPOOL: the term's index in reel_filter.spool */
    uint32_t nkids; /* V_AND, V_OR */
} vnode_t;

/* The progress line of a spool pass (base/progress.h); its total is
 * counted only once the line is about to be drawn. */
typedef struct {
    reel_progress_t line;
    bool total_known;
} scan_progress_t;

struct reel_filter {
    part_t approx; /* spool terms as 1: the rows that may match */
    part_t exact;  /* spool terms as ? bound to their verdicts */
    spool_term_t *spool;
    size_t nspool;
    vnode_t *vprog; /* with spool terms */
    size_t nvprog;
    scan_progress_t *progress; /* owned; changed by the const readers too */
    struct pass_cache *cache;  /* owned; likewise */
};

/* What a spool pass keeps between flows: a reader of the session's spool,
 * which keeps the frames it decompressed (flows read in id order share
 * them), the pass state with its buffers, and the statement asking the
 * index for the final verdict when the spool terms cannot decide it. */
typedef struct pass_cache {
    reel_store_reader_t *reader; /* owned; NULL until the first flow */
    struct eval *ev;             /* owned; NULL until the first flow */
    /* prepared once on db, when first needed (a session closes its db with
     * sqlite3_close_v2, so it may outlive it) */
    sqlite3 *db;
    sqlite3_stmt *exact;
} pass_cache_t;

static void eval_free(struct eval *e);

static void part_add(part_t *pt, param_t pa) {
    if (pt->nparams == pt->cap) {
        pt->cap = pt->cap ? pt->cap * 2 : 8;
        pt->params = reel_realloc(pt->params, pt->cap * sizeof *pt->params);
    }
    pt->params[pt->nparams++] = pa;
}

static void add_text_param(part_t *pt, const char *s, size_t len) {
    part_add(pt, (param_t){.text = reel_strndup(s, len), .len = len});
}

static void add_int_param(part_t *pt, int64_t v) {
    part_add(pt, (param_t){.is_int = true, .num = v});
}

static const char *field_column(field_t fld) {
    switch (fld) {
    case F_HOST:
        return "flows.host";
    case F_URL:
        return "flows.url";
    case F_METHOD:
        return "flows.method";
    case F_REQ_CTYPE:
        return "flows.request_content_type";
    case F_RESP_CTYPE:
        return "flows.response_content_type";
    case F_SRC:
        return "flows.client_addr";
    case F_DST:
        return "flows.server_addr";
    case F_HEADERS:
    case F_BODY:
        break;
    }
    return "NULL";
}

/* What a regex term of field fld matches, as an SQL string literal for
 * regexp()'s third argument: it names the term in the error of a regex
 * that fails on a flow (sql_regexp). */
static const char *field_label(field_t fld) {
    switch (fld) {
    case F_HOST:
        return "'a host regex (~d)'";
    case F_URL:
        return "'a URL regex (~u)'";
    case F_METHOD:
        return "'a method regex (~m)'";
    case F_REQ_CTYPE:
        return "'a request content type regex (~tq)'";
    case F_RESP_CTYPE:
        return "'a response content type regex (~ts)'";
    case F_SRC:
        return "'a client address regex (~src)'";
    case F_DST:
        return "'a server address regex (~dst)'";
    case F_HEADERS:
    case F_BODY:
        break;
    }
    return "'a regex'";
}

/* SQL precedence levels, loosest first. */
enum { P_OR = 1, P_AND, P_NOT, P_CMP, P_PRIMARY };

static int node_prec(const node_t *n) {
    switch (n->kind) {
    case N_REGEX:
    case N_TAG:
    case N_COMMENT:
    case N_CTYPE: /* parenthesized by emit() */
    case N_ALL:
    case N_SPOOL:
        return P_PRIMARY;
    case N_CODE:
    case N_CONN:
    case N_MARKED:
    case N_DAMAGED:
    case N_REPLAY:
    case N_HTTP:
    case N_HTTP2:
    case N_WEBSOCKET:
    case N_TCP:
    case N_ERROR:
    case N_ID:
    case N_SINCE:
    case N_UNTIL:
    case N_SIZE:
        return P_CMP;
    case N_HASRESP:
    case N_NORESP:
        return P_AND;
    case N_NOT:
        return P_NOT;
    case N_AND:
        return P_AND;
    case N_OR:
        return P_OR;
    }
    return P_OR;
}

/* How deeply emit() nests n's SQL in parentheses and NOTs, in a context
 * that needs precedence `need`. */
static int nesting(const node_t *n, int need) {
    int own = node_prec(n) < need;
    int deepest = 0;
    if (n->kind == N_NOT) {
        own++;
        deepest = nesting(n->kids[0], P_NOT);
    } else if (n->kind == N_AND || n->kind == N_OR) {
        for (size_t i = 0; i < n->nkids; i++) {
            int d = nesting(n->kids[i], node_prec(n));
            if (d > deepest)
                deepest = d;
        }
    } else if (n->kind == N_CTYPE || (n->kind == N_SPOOL && n->fts != NULL)) {
        own++;
    }
    return own + deepest;
}

/* Emits n as a two-valued SQL expression, in parentheses only when its
 * precedence is below `need`. Two SQLite limits shape the output:
 * - its parser stack (100 entries before 3.46) holds one entry per open
 *   parenthesis and two or three per pending operator, so no parenthesis is
 *   wasted and the most deeply nested operand of a chain goes first;
 * - its expression depth limit (1000, counted across the caller's
 *   subqueries too) sees "a AND b AND c" as a tree of depth 3: chains are
 *   flat, so FILTER_MAX_TERMS bounds their depth.
 * With `exact` false a spool term, or its negation, is emitted as 1, so
 * the SQL over-approximates (the tree is in negation normal form, so every
 * other operator is monotone); with `exact`, it is a placeholder bound to
 * the term's verdict for one flow. */
static reel_rc emit(part_t *pt, reel_buf_t *b, const node_t *n, int need, bool exact) {
    reel_rc rc = REEL_OK;
    if (!exact && n->kind == N_SPOOL && n->fts != NULL) {
        /* A plain string in bodies: only flows whose indexed text holds it,
         * or whose text the index lacks (body_todo, or recorded with the
         * index off: body_off), can match (bodyindex.h). */
        add_text_param(pt, n->fts, strlen(n->fts));
        return reel_buf_puts(b,
                             "(flows.id IN (SELECT rowid FROM body_fts WHERE body_fts "
                             "MATCH ?) OR flows.id IN (SELECT flow_id FROM body_todo) OR "
                             "EXISTS (SELECT 1 FROM body_off WHERE flows.id BETWEEN lo AND hi))");
    }
    if (!exact && (n->kind == N_SPOOL || (n->kind == N_NOT && n->kids[0]->kind == N_SPOOL)))
        return reel_buf_puts(b, "1");
    bool paren = node_prec(n) < need;
    if (paren && (rc = reel_buf_puts(b, "(")) != REEL_OK)
        return rc;
    switch (n->kind) {
    case N_REGEX:
        add_text_param(pt, n->value, n->vlen);
        rc = reel_buf_printf(b, "regexp(?, %s, %s, flows.id)", field_column(n->field),
                             field_label(n->field));
        break;
    case N_CTYPE:
        add_text_param(pt, n->value, n->vlen);
        add_text_param(pt, n->value, n->vlen);
        rc = reel_buf_puts(b, "(regexp(?, flows.request_content_type, 'a content type regex "
                              "(~t)', flows.id) OR regexp(?, flows.response_content_type, "
                              "'a content type regex (~t)', flows.id))");
        break;
    case N_COMMENT:
        add_text_param(pt, n->value, n->vlen);
        rc = reel_buf_puts(b, "EXISTS (SELECT 1 FROM annotations a WHERE a.flow_id = flows.id "
                              "AND regexp(?, a.text, 'a note regex (~comment)', a.flow_id))");
        break;
    case N_CODE:
        add_int_param(pt, n->num);
        rc = reel_buf_puts(b, "flows.status IS ?");
        break;
    case N_CONN:
        /* the ids between the connection's first and last flow (schema
         * 11's client_conns; no index on client_conn), then its own */
        add_int_param(pt, n->num);
        add_int_param(pt, n->num);
        add_int_param(pt, n->num);
        rc = reel_buf_puts(
            b, "(flows.id BETWEEN coalesce((SELECT first_flow FROM client_conns "
               "WHERE conn = ?), 0) AND coalesce((SELECT last_flow FROM "
               "client_conns WHERE conn = ?), 9223372036854775807) AND flows.client_conn IS ?)");
        break;
    case N_TAG:
        add_text_param(pt, n->value, n->vlen);
        rc = reel_buf_puts(
            b, "EXISTS (SELECT 1 FROM tags t WHERE t.flow_id = flows.id AND t.tag = ?)");
        break;
    case N_MARKED:
        rc = reel_buf_puts(b, "flows.marked = 1");
        break;
    case N_DAMAGED:
        rc = reel_buf_puts(b, "flows.damaged != 0");
        break;
    case N_REPLAY:
        rc = reel_buf_puts(b, "flows.replay_of IS NOT NULL");
        break;
    case N_HTTP:
        rc = reel_buf_puts(b, "flows.kind != 'tunnel'");
        break;
    case N_WEBSOCKET:
        rc = reel_buf_puts(b, "flows.kind = 'websocket'");
        break;
    case N_HTTP2:
        /* IS, not =: a flow without a version (a tunnel, an import) is not
         * HTTP/2, and "!~h2" must keep it (NULL would drop it) */
        rc = reel_buf_puts(b, "flows.http_version IS 'HTTP/2.0'");
        break;
    case N_TCP:
        rc = reel_buf_puts(b, "flows.kind = 'tunnel'");
        break;
    case N_ALL:
        rc = reel_buf_puts(b, "1");
        break;
    case N_ERROR:
        rc = reel_buf_puts(b, "flows.error IS NOT NULL");
        break;
    case N_HASRESP:
        rc = reel_buf_puts(b, "flows.kind != 'tunnel' AND flows.status IS NOT NULL");
        break;
    case N_NORESP:
        rc = reel_buf_puts(b, "flows.kind != 'tunnel' AND flows.status IS NULL");
        break;
    case N_ID:
        add_int_param(pt, n->num);
        add_int_param(pt, n->num2);
        rc = reel_buf_puts(b, "flows.id BETWEEN ? AND ?");
        break;
    case N_SINCE:
        add_int_param(pt, n->num);
        rc = reel_buf_puts(b, "flows.start_us >= ?");
        break;
    case N_UNTIL:
        add_int_param(pt, n->num);
        rc = reel_buf_puts(b, "flows.start_us <= ?");
        break;
    case N_SIZE: {
        static const char *const ops[] = {"=", "<", "<=", ">", ">="};
        add_int_param(pt, n->num);
        rc = reel_buf_printf(b, "flows.request_body_size + flows.response_body_size %s ?",
                             ops[n->cmp]);
        break;
    }
    case N_SPOOL:
        part_add(pt, (param_t){.is_spool = true, .num = n->num2});
        rc = reel_buf_puts(b, "?");
        break;
    case N_NOT:
        if ((rc = reel_buf_puts(b, "NOT ")) == REEL_OK)
            rc = emit(pt, b, n->kids[0], P_NOT, exact);
        break;
    case N_AND:
    case N_OR: {
        /* The most deeply nested kid goes first, where no pending operator
         * sits under it on the parser stack: "(deep) AND a", not
         * "a AND (deep)". AND and OR commute: every operand is two-valued. */
        size_t first = 0;
        for (size_t i = 1; i < n->nkids; i++) {
            if (nesting(n->kids[i], node_prec(n)) > nesting(n->kids[first], node_prec(n)))
                first = i;
        }
        for (size_t k = 0; k < n->nkids && rc == REEL_OK; k++) {
            size_t i = k == 0 ? first : (k <= first ? k - 1 : k);
            if (k > 0)
                rc = reel_buf_puts(b, n->kind == N_AND ? " AND " : " OR ");
            if (rc == REEL_OK)
                rc = emit(pt, b, n->kids[i], node_prec(n), exact);
        }
        break;
    }
    }
    if (rc == REEL_OK && paren)
        rc = reel_buf_puts(b, ")");
    return rc;
}

/* Renders root into pt, parenthesized as a whole so that callers may write
 * "x AND <sql>". */
static reel_rc render(part_t *pt, const node_t *root, bool exact, reel_err_t *err) {
    reel_buf_t b;
    reel_buf_init(&b, FILTER_MAX_SQL);
    reel_rc rc;
    if ((rc = reel_buf_puts(&b, "(")) != REEL_OK ||
        (rc = emit(pt, &b, root, P_OR, exact)) != REEL_OK ||
        (rc = reel_buf_puts(&b, ")")) != REEL_OK) {
        reel_buf_free(&b);
        return reel_err_set(err, rc, "filter: generated SQL too long");
    }
    pt->sql = reel_strndup((const char *)b.data, b.len);
    reel_buf_free(&b);
    return REEL_OK;
}

/* Numbers the spool terms of the tree and compiles their regexes into f. */
static reel_rc collect_spool(reel_filter_t *f, node_t *n, reel_err_t *err) {
    for (size_t i = 0; i < n->nkids; i++) {
        reel_rc rc = collect_spool(f, n->kids[i], err);
        if (rc != REEL_OK)
            return rc;
    }
    if (n->kind != N_SPOOL)
        return REEL_OK;
    uint32_t opts = RX_OPTIONS | (n->field == F_HEADERS ? PCRE2_MULTILINE : PCRE2_DOTALL);
    int code;
    PCRE2_SIZE off;
    /* Header lines end in CRLF: with ANYCRLF, "$" matches before it. */
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (cc == NULL)
        return reel_err_set(err, REEL_NOMEM, "filter: out of memory");
    if (n->field == F_HEADERS)
        pcre2_set_newline(cc, PCRE2_NEWLINE_ANYCRLF);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)n->value, n->vlen, opts, &code, &off, cc);
    pcre2_compile_context_free(cc);
    if (re == NULL) /* check_regex() passed it with fewer options */
        return reel_err_set(err, REEL_INVALID, "filter: bad regex (error %d)", code);
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
    uint32_t lb = 0;
    (void)pcre2_pattern_info(re, PCRE2_INFO_MAXLOOKBEHIND, &lb);
    f->spool = reel_realloc(f->spool, (f->nspool + 1) * sizeof *f->spool);
    f->spool[f->nspool] = (spool_term_t){
        .field = n->field, .sides = (int)n->num, .re = re, .lookback = (size_t)lb + 16};
    n->num2 = (int64_t)f->nspool++;
    if (n->field == F_BODY && reel_bodyindex_plain(n->value, n->vlen))
        n->fts = reel_bodyindex_fts_query(n->value, n->vlen, (int)n->num);
    return REEL_OK;
}

static bool has_spool(const node_t *n) {
    if (n->kind == N_SPOOL)
        return true;
    for (size_t i = 0; i < n->nkids; i++) {
        if (has_spool(n->kids[i]))
            return true;
    }
    return false;
}

/* Appends n (in negation normal form, its spool terms numbered) to f's
 * verdict program. A subtree without spool terms is V_SQL, a value only
 * the index knows, except in the AND at the root (top), where it is
 * V_TRUE: reel_filter_match_flow is given rows that matched the SQL part,
 * and every such kid of that AND is rendered there as it is. */
static void vprog_build(reel_filter_t *f, const node_t *n, bool top) {
    vnode_t v = {.kind = V_SQL};
    if (!has_spool(n))
        v.kind = top ? V_TRUE : V_SQL;
    else if (n->kind == N_SPOOL)
        v = (vnode_t){.kind = V_SPOOL, .idx = (uint32_t)n->num2};
    else if (n->kind == N_NOT) /* only above an atom */
        v = (vnode_t){.kind = V_SPOOL, .neg = true, .idx = (uint32_t)n->kids[0]->num2};
    else
        v = (vnode_t){.kind = n->kind == N_AND ? V_AND : V_OR, .nkids = (uint32_t)n->nkids};
    f->vprog = reel_realloc(f->vprog, (f->nvprog + 1) * sizeof *f->vprog);
    f->vprog[f->nvprog++] = v;
    if (v.kind == V_AND || v.kind == V_OR) {
        for (size_t i = 0; i < n->nkids; i++)
            vprog_build(f, n->kids[i], top && n->kind == N_AND);
    }
}

/* ---- public API ------------------------------------------------------------ */

static void part_free(part_t *pt) {
    for (size_t i = 0; i < pt->nparams; i++)
        free(pt->params[i].text);
    free(pt->params);
    free(pt->sql);
}

void reel_filter_free(reel_filter_t *f) {
    if (f == NULL)
        return;
    part_free(&f->approx);
    part_free(&f->exact);
    for (size_t i = 0; i < f->nspool; i++)
        pcre2_code_free(f->spool[i].re);
    free(f->spool);
    free(f->vprog);
    if (f->progress)
        reel_progress_clear(&f->progress->line);
    free(f->progress);
    if (f->cache) {
        reel_store_reader_free(f->cache->reader);
        eval_free(f->cache->ev);
        sqlite3_finalize(f->cache->exact);
        free(f->cache);
    }
    free(f);
}

reel_rc reel_filter_compile(const char *expr, reel_filter_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    node_t *root = NULL;
    reel_filter_t *f = NULL;
    *out = NULL;
    if (expr == NULL)
        expr = "";
    size_t len = strnlen(expr, FILTER_MAX_LEN + 1);
    if (len > FILTER_MAX_LEN) {
        rc = reel_err_set(err, REEL_LIMIT, "filter: expression too long (limit %d bytes)",
                          FILTER_MAX_LEN);
        goto out;
    }
    parser_t p = {.src = expr, .len = len, .err = err};
    f = reel_calloc(1, sizeof *f);
    f->progress = reel_calloc(1, sizeof *f->progress);
    reel_progress_init(&f->progress->line, "reel: searching the spool", "flows", 0);
    f->cache = reel_calloc(1, sizeof *f->cache);
    tok_t t;
    if ((rc = peek(&p, &t)) != REEL_OK)
        goto out;
    if (t.kind == T_END) {
        f->approx.sql = reel_strdup("1");
        f->exact.sql = reel_strdup("1");
        goto out;
    }
    if ((rc = parse_seq(&p, &root)) != REEL_OK || (rc = peek(&p, &t)) != REEL_OK)
        goto out;
    root = to_nnf(root, false);
    if (t.kind != T_END) {
        /* parse_seq stops only at the end, ')', '&' or '|', and consumes the
         * latter two itself: what is left is a ')' without its '('. */
        char buf[SHOW_BUF];
        rc = reel_err_set(err, REEL_INVALID, "filter: unexpected %s at column %zu",
                          describe(&p, &t, buf), t.start + 1);
        goto out;
    }
    if ((rc = collect_spool(f, root, err)) != REEL_OK ||
        (rc = render(&f->approx, root, false, err)) != REEL_OK)
        goto out;
    if (f->nspool > 0) {
        rc = render(&f->exact, root, true, err);
        vprog_build(f, root, true);
    }
out:
    node_free(root);
    if (rc != REEL_OK) {
        reel_filter_free(f);
        return rc;
    }
    *out = f;
    return REEL_OK;
}

const char *reel_filter_sql(const reel_filter_t *f) {
    return f ? f->approx.sql : "1";
}

int reel_filter_bind(const reel_filter_t *f, sqlite3_stmt *st, int first) {
    int idx = first;
    if (f == NULL)
        return idx;
    for (size_t i = 0; i < f->approx.nparams; i++, idx++) {
        const param_t *pa = &f->approx.params[i];
        int src = pa->is_int ? sqlite3_bind_int64(st, idx, pa->num)
                             : sqlite3_bind_text(st, idx, pa->text, (int)pa->len, SQLITE_TRANSIENT);
        if (src != SQLITE_OK)
            return -1;
    }
    return idx;
}

int reel_filter_needs_spool(const reel_filter_t *f) {
    return f != NULL && f->nspool > 0;
}

/* ---- spool terms ------------------------------------------------------------ */

/* Searched bytes kept for a match still in progress at the end of a window
 * (PCRE2 partial matching): a match longer than this, across pieces of a
 * streamed body, is not found. */
#define BODY_WINDOW (1024 * 1024)
/* All body terms of one filter together keep at most this much: with more
 * than 16 of them, each keeps less (at least BODY_WINDOW_MIN). */
#define BODY_WINDOWS_MAX (16 * 1024 * 1024)
#define BODY_WINDOW_MIN (64 * 1024)

/* Field numbers read from the wire (schema/flow.proto). */
enum {
    PB_RECORD_FLOW_ID = 1,
    PB_RECORD_REQUEST_HEAD = 11,
    PB_RECORD_REQUEST_BODY = 12,
    PB_RECORD_RESPONSE_HEAD = 13,
    PB_RECORD_RESPONSE_BODY = 14,
    PB_RECORD_MESSAGE = 19,
    PB_REQUEST_HEAD_HEADERS = 7,
    PB_REQUEST_HEAD_BODY_DECODED = 8,
    PB_RESPONSE_HEAD_HEADERS = 4,
    PB_RESPONSE_HEAD_BODY_DECODED = 5,
    PB_HEADER_NAME = 1,
    PB_HEADER_VALUE = 2,
    PB_BODY_CHUNK_DATA = 1,
    PB_MESSAGE_FROM_CLIENT = 1,
    PB_MESSAGE_DATA = 3,
};

/* The state of one body term over one body (or message stream). */
typedef struct {
    const spool_term_t *term;
    size_t window; /* bytes kept at most for a match in progress */
    pcre2_match_data *md;
    uint8_t *buf; /* owned: kept tail + new bytes; kept from flow to flow */
    size_t len, cap;
    size_t start; /* offset in buf where the next search starts */
    bool dropped; /* bytes before buf were searched already: ^ cannot match */
    bool matched;
    reel_rc rc; /* a match error (PCRE2 limits) */
} body_rx_t;

static void body_rx_reset(body_rx_t *r) {
    r->len = r->start = 0;
    r->dropped = false;
}

/* Searches subject[0..len) from r->start: what buf holds, or a piece of
 * the body searched in place when buf holds nothing (the start of a body:
 * no copy of most small bodies). Keeps in buf what a later search needs;
 * `final` at the end of the body. */
static void body_rx_search(body_rx_t *r, const uint8_t *subject, size_t len, bool final) {
    if (r->matched || r->rc != REEL_OK)
        return;
    uint32_t opts = (r->dropped ? PCRE2_NOTBOL : 0) | (final ? 0 : PCRE2_PARTIAL_HARD);
    /* an empty body is searched too ("~bq '^$'"): never a NULL subject */
    if (subject == NULL)
        subject = (const uint8_t *)"";
    int m = pcre2_match(r->term->re, subject, len, r->start, opts, r->md, NULL);
    if (m == PCRE2_ERROR_JIT_STACKLIMIT)
        m = pcre2_match(r->term->re, subject, len, r->start, opts | PCRE2_NO_JIT, r->md, NULL);
    if (m >= 0) {
        r->matched = true;
        return;
    }
    size_t keep_from; /* first byte that may start a match still */
    if (m == PCRE2_ERROR_PARTIAL) {
        keep_from = (size_t)pcre2_get_ovector_pointer(r->md)[0];
        if (len - keep_from > r->window) /* too long: give it up */
            keep_from = len - r->window / 2;
    } else if (m == PCRE2_ERROR_NOMATCH) {
        keep_from = len;
    } else {
        r->rc = REEL_LIMIT;
        return;
    }
    if (final)
        return;
    size_t from = keep_from > r->term->lookback ? keep_from - r->term->lookback : 0;
    if (subject != r->buf) {
        if (len - from > r->cap) {
            r->cap = len - from;
            r->buf = reel_realloc(r->buf, r->cap);
        }
        memcpy(r->buf, subject + from, len - from);
    } else if (from > 0) {
        memmove(r->buf, r->buf + from, len - from);
    }
    r->len = len - from;
    r->dropped |= from > 0;
    r->start = keep_from - from;
}

static void body_rx_run(body_rx_t *r, bool final) {
    body_rx_search(r, r->buf, r->len, final);
}

static void body_rx_feed(body_rx_t *r, const uint8_t *data, size_t len) {
    if (r->matched || r->rc != REEL_OK || len == 0)
        return;
    if (r->len == 0) { /* nothing kept (so r->start is 0): in place */
        body_rx_search(r, data, len, false);
        return;
    }
    if (r->len + len > r->cap) {
        r->cap = r->len + len;
        r->buf = reel_realloc(r->buf, r->cap);
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    body_rx_run(r, false);
}

/* One header of a head, borrowed from the record. */
typedef struct {
    const uint8_t *name, *value;
    size_t nlen, vlen;
} hdr_t;

/* The state of a spool pass over one flow, kept by the filter from flow
 * to flow (its buffers are reused): the terms' verdicts, the body terms'
 * searches, the body being read. */
typedef struct eval {
    const reel_filter_t *f;
    uint64_t id;   /* the flow being read */
    bool *verdict; /* per spool term */
    body_rx_t *rx; /* per spool term (body terms) */
    int side;      /* body being read: 1 request, 2 response, 0 none */
    reel_decoder_t *dec;
    bool dec_failed; /* the coding broke: the rest of the body is searched as stored */
    /* A body being decoded whose decoder may yet fail early (filter.h):
     * its stored bytes kept (REEL_FILTER_UNDECODED_STORED at most), the
     * decoded ones held back (REEL_FILTER_UNDECODED_OUT at most), not
     * searched until it is clear which of the two stands. */
    bool holding;
    reel_buf_t stored, held;
    uint64_t dec_out; /* bytes the body's decoder gave */
    bool any_stored;  /* the body being read has a stored byte: it is searched */
    uint64_t bytes;   /* decoded body bytes searched */
    hdr_t *hdrs;     /* the head being read */
    size_t nhdrs, caphdrs;
    reel_buf_t text;      /* its "Name: value\r\n" lines, for header terms */
    reel_buf_t enc;       /* its Content-Encoding values */
    pcre2_match_data *md; /* for header terms */
    uint64_t events;      /* bit n: field n of a Record is an event (its oneof) */
} eval_t;

static void eval_free(eval_t *e) {
    if (e == NULL)
        return;
    reel_decoder_free(e->dec);
    for (size_t i = 0; e->rx && i < e->f->nspool; i++) {
        pcre2_match_data_free(e->rx[i].md);
        free(e->rx[i].buf);
    }
    free(e->rx);
    free(e->verdict);
    free(e->hdrs);
    reel_buf_free(&e->text);
    reel_buf_free(&e->enc);
    reel_buf_free(&e->stored);
    reel_buf_free(&e->held);
    pcre2_match_data_free(e->md);
    free(e);
}

/* The pass state of f, made on first use. NULL when out of memory. */
static eval_t *eval_new(const reel_filter_t *f) {
    eval_t *e = reel_calloc(1, sizeof *e);
    e->f = f;
    e->verdict = reel_calloc(f->nspool, sizeof *e->verdict);
    e->rx = reel_calloc(f->nspool, sizeof *e->rx);
    reel_buf_init(&e->text, 0);
    reel_buf_init(&e->enc, 64 * 1024); /* values past 64 KiB in all are left out */
    reel_buf_init(&e->stored, REEL_FILTER_UNDECODED_STORED);
    reel_buf_init(&e->held, REEL_FILTER_UNDECODED_OUT);
    size_t nbody = 0;
    for (size_t i = 0; i < f->nspool; i++)
        nbody += f->spool[i].field == F_BODY;
    size_t window = BODY_WINDOW;
    if (nbody > BODY_WINDOWS_MAX / BODY_WINDOW)
        window =
            BODY_WINDOWS_MAX / nbody > BODY_WINDOW_MIN ? BODY_WINDOWS_MAX / nbody : BODY_WINDOW_MIN;
    for (unsigned i = 0; i < reel__record__descriptor.n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &reel__record__descriptor.fields[i];
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && fd->id < 64)
            e->events |= 1ull << fd->id; /* the others: is_event() */
    }
    bool ok = (e->md = pcre2_match_data_create(1, NULL)) != NULL;
    for (size_t i = 0; i < f->nspool && ok; i++) {
        e->rx[i].term = &f->spool[i];
        e->rx[i].window = window;
        ok = (e->rx[i].md = pcre2_match_data_create(1, NULL)) != NULL;
    }
    if (!ok) {
        eval_free(e);
        return NULL;
    }
    return e;
}

/* Makes e ready for flow id: no verdicts, no body. */
static void eval_start(eval_t *e, uint64_t id) {
    e->id = id;
    e->side = 0;
    e->bytes = 0;
    reel_decoder_free(e->dec);
    e->dec = NULL;
    e->dec_failed = false;
    e->holding = false;
    e->any_stored = false;
    for (size_t i = 0; i < e->f->nspool; i++) {
        e->verdict[i] = false;
        body_rx_reset(&e->rx[i]);
        e->rx[i].matched = false;
        e->rx[i].rc = REEL_OK;
    }
}

/* Feeds decoded body bytes of the current side to its body terms. */
static int eval_sink(void *ctx, const uint8_t *data, size_t len) {
    eval_t *e = ctx;
    e->bytes += len;
    for (size_t i = 0; i < e->f->nspool; i++) {
        const spool_term_t *t = &e->f->spool[i];
        if (t->field == F_BODY && (t->sides & e->side))
            body_rx_feed(&e->rx[i], data, len);
    }
    return 0;
}

/* The decoded bytes stand (the decoder gave enough, or too much was
 * stored to fall back to): the held ones are searched, and the rest as
 * they come. */
static void release_held(eval_t *e) {
    if (!e->holding)
        return;
    e->holding = false;
    eval_sink(e, e->held.data, e->held.len);
    reel_buf_reset(&e->held);
    reel_buf_reset(&e->stored);
}

/* Decoded body bytes: held back while the decoder may yet fail early. */
static int dec_sink(void *ctx, const uint8_t *data, size_t len) {
    eval_t *e = ctx;
    e->dec_out += len;
    if (e->holding) {
        size_t k = REEL_FILTER_UNDECODED_OUT - e->held.len;
        if (k > len)
            k = len;
        reel_buf_append(&e->held, data, k); /* within its cap */
        data += k;
        len -= k;
        if (e->held.len < REEL_FILTER_UNDECODED_OUT)
            return 0;
        release_held(e);
    }
    return eval_sink(e, data, len);
}

/* Ends the body being read: flushes its decoder, runs the final searches.
 * A body of no stored bytes (a GET's, a HEAD's response) is no body to
 * search: "~b ''" and "~bq '^$'" do not match it, as in mitmproxy. */
static void eval_end_body(eval_t *e) {
    if (e->side == 0)
        return;
    if (e->dec != NULL && !e->dec_failed) {
        reel_err_t err;
        reel_err_clear(&err);
        (void)reel_decoder_finish(e->dec, &err); /* cut short: what was decoded stands */
    }
    release_held(e);
    reel_decoder_free(e->dec);
    e->dec = NULL;
    for (size_t i = 0; i < e->f->nspool; i++) {
        body_rx_t *r = &e->rx[i];
        if (e->f->spool[i].field != F_BODY || !(e->f->spool[i].sides & e->side))
            continue;
        if (e->any_stored)
            body_rx_run(r, true);
        if (r->matched)
            e->verdict[i] = true;
        body_rx_reset(r);
    }
    e->side = 0;
    e->any_stored = false;
}

static bool name_is(const uint8_t *name, size_t len, const char *s) {
    size_t n = strlen(s);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)s[i])
            return false;
    }
    return true;
}

/* A head (its headers in e->hdrs): header terms search "Name: value\r\n"
 * lines (as mitmproxy's bytes(headers)); its body starts, decoded by its
 * Content-Encoding. The lines are made only when a header term of this
 * side is still undecided. */
static void eval_head(eval_t *e, int side, bool decoded) {
    eval_end_body(e);
    bool want_text = false;
    for (size_t i = 0; i < e->f->nspool; i++) {
        const spool_term_t *t = &e->f->spool[i];
        want_text |= t->field == F_HEADERS && (t->sides & side) && !e->verdict[i];
    }
    reel_buf_t *b = &e->text, *enc = &e->enc;
    reel_buf_reset(b);
    reel_buf_reset(enc);
    bool any_enc = false;
    for (size_t i = 0; i < e->nhdrs; i++) {
        const hdr_t *h = &e->hdrs[i];
        if (want_text) {
            reel_buf_append(b, h->name, h->nlen);
            reel_buf_append(b, ": ", 2);
            reel_buf_append(b, h->value, h->vlen);
            reel_buf_append(b, "\r\n", 2);
        }
        if (name_is(h->name, h->nlen, "content-encoding")) {
            if (any_enc)
                reel_buf_append(enc, ", ", 2);
            reel_buf_append(enc, h->value, h->vlen);
            any_enc = true;
        }
    }
    for (size_t i = 0; want_text && i < e->f->nspool; i++) {
        const spool_term_t *t = &e->f->spool[i];
        if (t->field != F_HEADERS || !(t->sides & side) || e->verdict[i])
            continue;
        const uint8_t *subject = b->data ? b->data : (const uint8_t *)"";
        int m = pcre2_match(t->re, subject, b->len, 0, 0, e->md, NULL);
        if (m == PCRE2_ERROR_JIT_STACKLIMIT)
            m = pcre2_match(t->re, subject, b->len, 0, PCRE2_NO_JIT, e->md, NULL);
        if (m >= 0)
            e->verdict[i] = true;
    }
    e->side = side;
    e->dec_failed = false;
    e->any_stored = false;
    if (any_enc && !decoded && reel_buf_append(enc, (const uint8_t *)"", 1) == REEL_OK) {
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_decoder_new((const char *)enc->data, dec_sink, e, &e->dec, &err) != REEL_OK)
            e->dec = NULL; /* an unknown coding: search the bytes as stored */
    }
    e->holding = e->dec != NULL;
    e->dec_out = 0;
    reel_buf_reset(&e->stored);
    reel_buf_reset(&e->held);
}

/* A stored body chunk: decoded, or as stored once decoding broke off
 * (filter.h says which bytes stand then, as `reel flow` shows them). */
static void eval_body(eval_t *e, int side, const uint8_t *data, size_t len) {
    if (e->side != side)
        return; /* a body without its head */
    e->any_stored |= len > 0;
    if (e->dec == NULL || e->dec_failed) {
        eval_sink(e, data, len);
        return;
    }
    if (e->holding && reel_buf_append(&e->stored, data, len) != REEL_OK)
        release_held(e); /* too much stored to fall back to */
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_decoder_feed(e->dec, data, len, &err) == REEL_OK)
        return;
    e->dec_failed = true;
    if (e->holding) { /* early: the whole body as stored, nothing decoded */
        e->holding = false;
        reel_buf_reset(&e->held);
        eval_sink(e, e->stored.data, e->stored.len);
        reel_buf_reset(&e->stored);
    } else { /* what was decoded was searched; then this chunk as stored */
        eval_sink(e, data, len);
    }
}

/* WebSocket and TCP messages count as bodies, each searched alone (as
 * mitmproxy does), an empty one too: client messages as the request side. */
static void eval_message(eval_t *e, bool from_client, const uint8_t *data, size_t len) {
    eval_end_body(e);
    e->side = from_client ? 1 : 2;
    e->any_stored = true;
    eval_sink(e, data, len);
    eval_end_body(e);
}

/* The last occurrence of bytes field `tag` in message m (empty if none). */
static void pb_bytes(const reel_pbwire_field_t *m, uint32_t tag, const uint8_t **data,
                     size_t *len) {
    *data = NULL;
    *len = 0;
    size_t pos = 0;
    reel_pbwire_field_t f;
    while (reel_pbwire_next(m->val, m->val_len, &pos, &f)) {
        if (f.tag == tag) {
            *data = f.val;
            *len = f.val_len;
        }
    }
}

/* A RequestHead or ResponseHead (m, checked) read into e->hdrs: its headers
 * (field hdr_tag) in order, and its body_decoded (field dec_tag). */
static bool pb_head(eval_t *e, const reel_pbwire_field_t *m, uint32_t hdr_tag, uint32_t dec_tag) {
    bool decoded = false;
    e->nhdrs = 0;
    size_t pos = 0;
    reel_pbwire_field_t f, g;
    while (reel_pbwire_next(m->val, m->val_len, &pos, &f)) {
        if (f.tag == dec_tag) {
            decoded = reel_pbwire_bool(&f);
        } else if (f.tag == hdr_tag) {
            if (e->nhdrs == e->caphdrs) {
                e->caphdrs = e->caphdrs ? e->caphdrs * 2 : 32;
                e->hdrs = reel_realloc(e->hdrs, e->caphdrs * sizeof *e->hdrs);
            }
            hdr_t *h = &e->hdrs[e->nhdrs++];
            *h = (hdr_t){0};
            size_t p2 = 0;
            while (reel_pbwire_next(f.val, f.val_len, &p2, &g)) {
                if (g.tag == PB_HEADER_NAME) {
                    h->name = g.val;
                    h->nlen = g.val_len;
                } else if (g.tag == PB_HEADER_VALUE) {
                    h->value = g.val;
                    h->vlen = g.val_len;
                }
            }
        }
    }
    return decoded;
}

/* 1 if field tag of a Record is an event (a member of its oneof). */
static bool is_event(uint32_t tag) {
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(&reel__record__descriptor, tag);
    return fd != NULL && (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
}

/* One record of the flow, as the store hands it: checked as unpacking
 * would check it (-1 if it does not decode), then read in place. */
static int eval_record(void *ctx, const uint8_t *rec, size_t len) {
    eval_t *e = ctx;
    if (!reel_pbwire_check(&reel__record__descriptor, rec, len))
        return -1;
    uint64_t flow_id = 0;
    reel_pbwire_field_t f, ev = {0};
    size_t pos = 0;
    while (reel_pbwire_next(rec, len, &pos, &f)) {
        if (f.tag == PB_RECORD_FLOW_ID)
            flow_id = reel_pbwire_u64(&f);
        else if (f.tag < 64 ? e->events >> f.tag & 1 : is_event(f.tag))
            ev = f; /* the oneof's last member wins */
    }
    if (flow_id != e->id)
        return 0;
    const uint8_t *data;
    size_t dlen;
    switch (ev.tag) {
    case PB_RECORD_REQUEST_HEAD:
        eval_head(e, 1, pb_head(e, &ev, PB_REQUEST_HEAD_HEADERS, PB_REQUEST_HEAD_BODY_DECODED));
        break;
    case PB_RECORD_RESPONSE_HEAD:
        eval_head(e, 2, pb_head(e, &ev, PB_RESPONSE_HEAD_HEADERS, PB_RESPONSE_HEAD_BODY_DECODED));
        break;
    case PB_RECORD_REQUEST_BODY:
    case PB_RECORD_RESPONSE_BODY:
        pb_bytes(&ev, PB_BODY_CHUNK_DATA, &data, &dlen);
        eval_body(e, ev.tag == PB_RECORD_REQUEST_BODY ? 1 : 2, data, dlen);
        break;
    case PB_RECORD_MESSAGE: {
        bool from_client = false;
        size_t p2 = 0;
        data = NULL;
        dlen = 0;
        while (reel_pbwire_next(ev.val, ev.val_len, &p2, &f)) {
            if (f.tag == PB_MESSAGE_FROM_CLIENT) {
                from_client = reel_pbwire_bool(&f);
            } else if (f.tag == PB_MESSAGE_DATA) {
                data = f.val;
                dlen = f.val_len;
            }
        }
        eval_message(e, from_client, data, dlen);
        break;
    }
    default:
        break;
    }
    return 0;
}

/* The verdict of f's tree from the spool terms' verdicts alone: 1, 0, or -1
 * when it turns on a term only the index can decide (see vprog_build). */
static int vprog_eval(const vnode_t *p, size_t *i, const bool *verdict) {
    const vnode_t *n = &p[(*i)++];
    int r;
    switch (n->kind) {
    case V_TRUE:
        return 1;
    case V_SPOOL:
        return verdict[n->idx] != n->neg;
    case V_AND:
    case V_OR:
        r = n->kind == V_AND ? 1 : 0;
        for (uint32_t k = 0; k < n->nkids; k++) {
            int v = vprog_eval(p, i, verdict); /* every kid: they follow in p */
            if (n->kind == V_AND ? v == 0 : v == 1)
                r = v;
            else if (v < 0 && r != (n->kind == V_AND ? 0 : 1))
                r = -1;
        }
        return r;
    default:
        return -1;
    }
}

/* The cached reader of f for session s, made again when s (or its db) is
 * not the one it was made for, and the pass state. REEL_DB with SQLite's
 * message, or REEL_NOMEM. */
static reel_rc cache_prepare(const reel_filter_t *f, reel_session_t *s, reel_err_t *err) {
    pass_cache_t *c = f->cache;
    sqlite3 *db = reel_session_db(s);
    if (c->ev == NULL && (c->ev = eval_new(f)) == NULL)
        return reel_err_set(err, REEL_NOMEM, "filter: out of memory");
    if (c->db == db && c->reader && reel_store_reader_session(c->reader) == s)
        return REEL_OK;
    reel_store_reader_free(c->reader);
    sqlite3_finalize(c->exact);
    c->reader = NULL;
    c->exact = NULL;
    c->db = NULL;
    reel_rc rc = reel_store_reader_open(s, &c->reader, err);
    if (rc == REEL_OK)
        c->db = db;
    return rc;
}

/* The exact SQL's verdict on row id, the spool terms bound to e's
 * verdicts. REEL_DB on failure. */
/* The failure of a statement running a filter's SQL on db: a regex that
 * failed on a flow (REEL_LIMIT, its message as regexp() wrote it) or
 * REEL_DB. */
static reel_rc sql_err(sqlite3 *db, reel_err_t *err) {
    const char *msg = sqlite3_errmsg(db);
    if (reel_filter_regexp_error(msg))
        return reel_err_set(err, REEL_LIMIT, "%s", msg);
    return reel_err_set(err, REEL_DB, "filter: %s", msg);
}

static reel_rc exact_verdict(const reel_filter_t *f, reel_session_t *s, const eval_t *e,
                             uint64_t id, int *match, reel_err_t *err) {
    pass_cache_t *c = f->cache;
    sqlite3 *db = reel_session_db(s);
    reel_rc rc = REEL_OK;
    if (c->exact == NULL) {
        char *sql = reel_asprintf("SELECT %s FROM flows WHERE id = ?", f->exact.sql);
        if (sqlite3_prepare_v2(db, sql, -1, &c->exact, NULL) != SQLITE_OK)
            rc = reel_err_set(err, REEL_DB, "filter: %s", sqlite3_errmsg(db));
        free(sql);
        if (rc != REEL_OK)
            return rc;
    }
    sqlite3_stmt *st = c->exact;
    int idx = 1;
    for (size_t i = 0; i < f->exact.nparams; i++, idx++) {
        const param_t *pa = &f->exact.params[i];
        if (pa->is_spool)
            sqlite3_bind_int(st, idx, e->verdict[pa->num] ? 1 : 0);
        else if (pa->is_int)
            sqlite3_bind_int64(st, idx, pa->num);
        else
            sqlite3_bind_text(st, idx, pa->text, (int)pa->len, SQLITE_TRANSIENT);
    }
    sqlite3_bind_int64(st, idx, (sqlite3_int64)id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        *match = sqlite3_column_int(st, 0) != 0;
    else if (step == SQLITE_DONE)
        *match = 0;
    else
        rc = sql_err(db, err);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Rows of s the SQL part of f leaves to the spool pass, or 0 if the count
 * fails (the line then shows no total). */
static uint64_t scan_total(const reel_filter_t *f, reel_session_t *s) {
    sqlite3 *db = reel_session_db(s);
    char *sql = reel_asprintf("SELECT count(*) FROM flows WHERE %s", f->approx.sql);
    sqlite3_stmt *st = NULL;
    uint64_t n = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && reel_filter_bind(f, st, 1) > 0 &&
        sqlite3_step(st) == SQLITE_ROW)
        n = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    free(sql);
    return n;
}

/* Counts one flow of the spool pass and redraws the progress line (flows,
 * rate, time left) at most 5 times a second, once the pass has lasted
 * delay_us (REEL_PROGRESS_DELAY_MS, default 500): never on a pass too short
 * to need it, nor when stderr is not a terminal. A flow that matched gets
 * a clean line: the caller prints it next. */
static void scan_progress(const reel_filter_t *f, reel_session_t *s, uint64_t bytes, int match) {
    scan_progress_t *p = f->progress;
    if (match)
        reel_progress_clear(&p->line);
    if (!p->total_known && reel_progress_due(&p->line)) {
        p->line.total = scan_total(f, s);
        p->total_known = true;
    }
    reel_progress_add(&p->line, 1, bytes);
}

reel_rc reel_filter_match_flow(const reel_filter_t *f, reel_session_t *s, uint64_t id, int *match,
                               reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *match = 1;
    if (f == NULL || f->nspool == 0)
        return REEL_OK;
    if ((rc = cache_prepare(f, s, err)) != REEL_OK)
        return rc;
    eval_t *e = f->cache->ev;
    eval_start(e, id);
    rc = reel_store_reader_flow_raw(f->cache->reader, id, eval_record, e, err);
    eval_end_body(e);
    bool listed = rc != REEL_NOTFOUND;             /* the index lists frames of it */
    if (rc == REEL_CORRUPT || rc == REEL_NOTFOUND) /* judge what could be read */
        rc = REEL_OK;
    if (rc != REEL_OK)
        return rc;
    for (size_t i = 0; i < f->nspool; i++) {
        if (e->rx[i].rc != REEL_OK)
            return reel_err_set(err, e->rx[i].rc,
                                "filter: a body regex ran into PCRE2's match limit (flow %llu)",
                                (unsigned long long)id);
    }
    /* The row matched the SQL part: unless the verdict turns on a term
     * only the index knows, the spool terms' verdicts decide it. (A flow
     * without frames may have no row either: the index says.) */
    size_t at = 0;
    int v = listed ? vprog_eval(f->vprog, &at, e->verdict) : -1;
    if (v >= 0)
        *match = v;
    else if ((rc = exact_verdict(f, s, e, id, match, err)) != REEL_OK)
        return rc;
    scan_progress(f, s, e->bytes, *match);
    return REEL_OK;
}

reel_rc reel_filter_ids(const reel_filter_t *f, reel_session_t *s, int64_t **out, size_t *n,
                        reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *out = NULL;
    *n = 0;
    sqlite3 *db = reel_session_db(s);
    char *sql = reel_asprintf("SELECT id FROM flows WHERE %s ORDER BY id", reel_filter_sql(f));
    sqlite3_stmt *st = NULL;
    int64_t *ids = NULL;
    size_t cnt = 0, cap = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || reel_filter_bind(f, st, 1) < 0) {
        rc = reel_err_set(err, REEL_DB, "filter: %s", sqlite3_errmsg(db));
        goto out;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int match = 1;
        if ((rc = reel_filter_match_flow(f, s, (uint64_t)id, &match, err)) != REEL_OK)
            goto out;
        if (!match)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            ids = reel_realloc(ids, cap * sizeof *ids);
        }
        ids[cnt++] = id;
    }
    if (step != SQLITE_DONE)
        rc = sql_err(db, err);
out:
    sqlite3_finalize(st);
    free(sql);
    if (rc != REEL_OK) {
        free(ids);
        return rc;
    }
    *out = ids;
    *n = cnt;
    return REEL_OK;
}

/* ---- times ------------------------------------------------------------------ */

reel_rc reel_filter_parse_time(const char *s, int64_t *out) {
    char *end = NULL;
    errno = 0;
    if (s[0] == '@') {
        long long v = strtoll(s + 1, &end, 10);
        if (end == s + 1 || *end || errno || v > INT64_MAX / 1000000 || v < INT64_MIN / 1000000)
            return REEL_INVALID;
        *out = (int64_t)v * 1000000;
        return REEL_OK;
    }
    if (!isdigit((unsigned char)s[0]))
        return REEL_INVALID;
    long long v = strtoll(s, &end, 10);
    long long mul = 0;
    if (errno == 0 && end != s && end[0] && !end[1]) {
        switch (end[0]) {
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = 86400;
            break;
        default:
            break;
        }
    }
    if (mul) {
        if (v > 1000000000LL * 100 / mul)
            return REEL_INVALID;
        *out = ((int64_t)time(NULL) - v * mul) * 1000000;
        return REEL_OK;
    }
    static const char *const fmts[] = {"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                                       "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *e = strptime(s, fmts[i], &tm);
        if (e && *e == '\0') {
            /* strptime takes any day up to 31 and seconds up to 61, and
             * mktime would make 2026-02-30 March 2nd: a date that does not
             * exist is refused instead */
            static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
            int y = tm.tm_year + 1900;
            bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            if (tm.tm_mday > mdays[tm.tm_mon] + (tm.tm_mon == 1 && leap) || tm.tm_sec > 59)
                return REEL_INVALID;
            tm.tm_isdst = -1;
            time_t t = mktime(&tm);
            if (t == (time_t)-1)
                return REEL_INVALID;
            *out = (int64_t)t * 1000000;
            return REEL_OK;
        }
    }
    return REEL_INVALID;
}

/* ---- regexp() SQL function --------------------------------------------------- */

typedef struct {
    pcre2_code *code;
    pcre2_match_data *md;
} rx_cache_t;

static void rx_cache_free(void *p) {
    rx_cache_t *c = p;
    if (c == NULL)
        return;
    pcre2_match_data_free(c->md);
    pcre2_code_free(c->code);
    free(c);
}

/* Where the messages of sql_regexp start: reel_filter_regexp_error
 * tells them from SQLite's own. */
#define RX_ERR "filter: "

/* The error of a match that failed (m, a PCRE2 error code) into ctx,
 * naming the term and the flow when the call names them: regexp(pattern,
 * text, 'a URL regex (~u)', flows.id), as the filter's SQL calls it. */
static void rx_fail(sqlite3_context *ctx, int argc, sqlite3_value **argv, int m) {
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(m, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "error %d", m);
    const unsigned char *what = argc >= 4 ? sqlite3_value_text(argv[2]) : NULL;
    char *e;
    if (what == NULL)
        e = reel_asprintf(RX_ERR "regexp: %s", (const char *)msg);
    else if (m == PCRE2_ERROR_MATCHLIMIT)
        e = reel_asprintf(RX_ERR "%s ran into PCRE2's match limit (flow %lld)", what,
                          (long long)sqlite3_value_int64(argv[3]));
    else
        e = reel_asprintf(RX_ERR "%s failed on flow %lld: %s", what,
                          (long long)sqlite3_value_int64(argv[3]), (const char *)msg);
    sqlite3_result_error(ctx, e, -1);
    free(e);
}

bool reel_filter_regexp_error(const char *msg) {
    return msg != NULL && strncmp(msg, RX_ERR, strlen(RX_ERR)) == 0;
}

static void sql_regexp(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    rx_cache_t *c = sqlite3_get_auxdata(ctx, 0);
    bool fresh = false;
    if (c == NULL) {
        const unsigned char *pat = sqlite3_value_text(argv[0]);
        int plen = sqlite3_value_bytes(argv[0]);
        if (pat == NULL) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
        int code;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile(pat, (PCRE2_SIZE)plen, RX_OPTIONS, &code, &off, NULL);
        if (re == NULL) {
            PCRE2_UCHAR msg[256];
            if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
                snprintf((char *)msg, sizeof msg, "error %d", code);
            char *e = reel_asprintf(RX_ERR "regexp: bad pattern at offset %zu: %s", (size_t)off,
                                    (const char *)msg);
            sqlite3_result_error(ctx, e, -1);
            free(e);
            return;
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter if it fails */
        c = reel_calloc(1, sizeof *c);
        c->code = re;
        c->md = pcre2_match_data_create(1, NULL);
        if (c->md == NULL) {
            rx_cache_free(c);
            sqlite3_result_error_nomem(ctx);
            return;
        }
        fresh = true;
    }
    const unsigned char *text = sqlite3_value_text(argv[1]);
    int tlen = sqlite3_value_bytes(argv[1]);
    int m;
    if (text == NULL) {
        m = PCRE2_ERROR_NOMEMORY;
    } else {
        m = pcre2_match(c->code, text, (PCRE2_SIZE)tlen, 0, 0, c->md, NULL);
        if (m == PCRE2_ERROR_JIT_STACKLIMIT)
            m = pcre2_match(c->code, text, (PCRE2_SIZE)tlen, 0, PCRE2_NO_JIT, c->md, NULL);
    }
    if (m >= 0 || m == PCRE2_ERROR_NOMATCH) {
        sqlite3_result_int(ctx, m >= 0);
    } else {
        rx_fail(ctx, argc, argv, m);
    }
    /* Last: SQLite may free c at once (when argument 0 is not a constant). */
    if (fresh)
        sqlite3_set_auxdata(ctx, 0, c, rx_cache_free);
}

reel_rc reel_filter_register(sqlite3 *db, reel_err_t *err) {
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC;
#ifdef SQLITE_INNOCUOUS
    flags |= SQLITE_INNOCUOUS;
#endif
    int src =
        sqlite3_create_function_v2(db, "regexp", 2, flags, NULL, sql_regexp, NULL, NULL, NULL);
    if (src == SQLITE_OK) /* regexp(pattern, text, term, flow id): the filter's SQL */
        src =
            sqlite3_create_function_v2(db, "regexp", 4, flags, NULL, sql_regexp, NULL, NULL, NULL);
    if (src != SQLITE_OK)
        return reel_err_set(err, REEL_DB, "filter: registering regexp(): %s", sqlite3_errmsg(db));
    return REEL_OK;
}
