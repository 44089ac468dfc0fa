/* .proto reader (protoschema.h): a tokenizer and a recursive descent over
 * what names fields; everything else is read past by brackets. */
#include "session/protoschema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

/** Nesting of messages (and blocks read past) accepted. */
#define NEST_MAX 64
/** Longest token or name. */
#define TOK_MAX 512

enum { T_EOF, T_IDENT, T_NUM, T_STR, T_SYM };

typedef struct {
    const char *s;
    size_t n, pos;
    int line;
    int kind;
    char tok[TOK_MAX];
    reel_proto_t *p;
    reel_err_t *err;
    int failed;
    char pkg[TOK_MAX];
} ps_t;

static int bad(ps_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(ps_t *t, const char *fmt, ...) {
    if (t->failed)
        return -1;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reel_err_set(t->err, REEL_INVALID, "line %d: %s", t->line, msg);
    t->failed = 1;
    return -1;
}

static int ident_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' ||
           (!first && c >= '0' && c <= '9');
}

static int next(ps_t *t) {
    if (t->failed) {
        t->kind = T_EOF;
        return -1;
    }
    for (;;) {
        while (t->pos < t->n && (t->s[t->pos] == ' ' || t->s[t->pos] == '\t' ||
                                 t->s[t->pos] == '\r' || t->s[t->pos] == '\n')) {
            if (t->s[t->pos] == '\n')
                t->line++;
            t->pos++;
        }
        if (t->pos + 1 < t->n && t->s[t->pos] == '/' && t->s[t->pos + 1] == '/') {
            while (t->pos < t->n && t->s[t->pos] != '\n')
                t->pos++;
            continue;
        }
        if (t->pos + 1 < t->n && t->s[t->pos] == '/' && t->s[t->pos + 1] == '*') {
            t->pos += 2;
            while (t->pos < t->n &&
                   !(t->s[t->pos] == '*' && t->pos + 1 < t->n && t->s[t->pos + 1] == '/')) {
                if (t->s[t->pos] == '\n')
                    t->line++;
                t->pos++;
            }
            if (t->pos >= t->n)
                return bad(t, "a comment does not end");
            t->pos += 2;
            continue;
        }
        break;
    }
    t->tok[0] = '\0';
    if (t->pos >= t->n) {
        t->kind = T_EOF;
        return 0;
    }
    char c = t->s[t->pos];
    size_t start = t->pos, len;
    if (ident_char(c, 1)) {
        while (t->pos < t->n && ident_char(t->s[t->pos], 0))
            t->pos++;
        t->kind = T_IDENT;
    } else if ((c >= '0' && c <= '9') || c == '-' || c == '+') {
        t->pos++;
        while (t->pos < t->n &&
               (ident_char(t->s[t->pos], 0) || t->s[t->pos] == '-' || t->s[t->pos] == '+'))
            t->pos++;
        t->kind = T_NUM;
    } else if (c == '"' || c == '\'') {
        t->pos++;
        while (t->pos < t->n && t->s[t->pos] != c && t->s[t->pos] != '\n')
            t->pos += t->s[t->pos] == '\\' && t->pos + 1 < t->n ? 2 : 1;
        if (t->pos >= t->n || t->s[t->pos] != c)
            return bad(t, "a string does not end on its line");
        t->pos++;
        t->kind = T_STR;
        start++;
        len = t->pos - 1 - start;
        goto copy;
    } else {
        t->pos++;
        t->kind = T_SYM;
    }
    len = t->pos - start;
copy:
    if (len >= TOK_MAX)
        return bad(t, "a token longer than %d bytes", TOK_MAX - 1);
    memcpy(t->tok, t->s + start, len);
    t->tok[len] = '\0';
    return 0;
}

static int is(const ps_t *t, const char *s) {
    return t->kind != T_EOF && t->kind != T_STR && strcmp(t->tok, s) == 0;
}

static int expect(ps_t *t, const char *s) {
    if (!is(t, s))
        return bad(t, "expected '%s', found '%s'", s, t->kind == T_EOF ? "end of file" : t->tok);
    return next(t);
}

/* Reads past a balanced block; the current token is its '{'. */
static int skip_block(ps_t *t) {
    int depth = 0;
    do {
        if (t->kind == T_EOF)
            return bad(t, "a block does not end");
        if (is(t, "{"))
            depth++;
        else if (is(t, "}"))
            depth--;
        if (next(t) < 0)
            return -1;
    } while (depth > 0);
    return 0;
}

/* Reads past a statement: to its ';', or a block and the ';' after it. */
static int skip_statement(ps_t *t) {
    for (;;) {
        if (t->kind == T_EOF)
            return bad(t, "a statement does not end");
        if (is(t, ";"))
            return next(t);
        if (is(t, "{")) {
            if (skip_block(t) < 0)
                return -1;
            return is(t, ";") ? next(t) : 0;
        }
        if (is(t, "}"))
            return bad(t, "unexpected '}'");
        if (next(t) < 0)
            return -1;
    }
}

static char *join(const char *scope, const char *name) {
    size_t a = strlen(scope), b = strlen(name);
    char *s = reel_malloc(a + b + 2);
    if (a) {
        memcpy(s, scope, a);
        s[a++] = '.';
    }
    memcpy(s + a, name, b + 1);
    return s;
}

static int add_message(ps_t *t, char *full) {
    reel_proto_t *p = t->p;
    p->messages = reel_realloc(p->messages, (p->n_messages + 1) * sizeof *p->messages);
    p->messages[p->n_messages] = (reel_pt_message_t){.full_name = full};
    return (int)p->n_messages++;
}

static void add_field(ps_t *t, int msg, const char *name, uint32_t number, const char *type,
                      int repeated) {
    reel_pt_message_t *m = &t->p->messages[msg];
    m->fields = reel_realloc(m->fields, (m->n_fields + 1) * sizeof *m->fields);
    m->fields[m->n_fields++] = (reel_pt_field_t){.name = reel_strdup(name),
                                                 .number = number,
                                                 .type = REEL_PT_UNRESOLVED,
                                                 .repeated = repeated,
                                                 .ref = -1,
                                                 .type_name = reel_strdup(type)};
}

static int field_number(ps_t *t, uint32_t *out) {
    char *end = NULL;
    long long v = strtoll(t->tok, &end, 0);
    if (t->kind != T_NUM || end == t->tok || *end || v < 1 || v > 536870911)
        return bad(t, "field number '%s'", t->tok);
    *out = (uint32_t)v;
    return next(t);
}

/* [ options ] ; after a field's number */
static int field_end(ps_t *t) {
    if (is(t, "[")) {
        int depth = 0;
        do {
            if (t->kind == T_EOF)
                return bad(t, "field options do not end");
            if (is(t, "["))
                depth++;
            else if (is(t, "]"))
                depth--;
            if (next(t) < 0)
                return -1;
        } while (depth > 0);
    }
    return expect(t, ";");
}

static int parse_field(ps_t *t, int msg) {
    int repeated = 0;
    if (is(t, "repeated") || is(t, "optional") || is(t, "required")) {
        repeated = is(t, "repeated");
        if (next(t) < 0)
            return -1;
    }
    if (is(t, "group"))
        return bad(t, "groups are not supported");
    if (t->kind != T_IDENT)
        return bad(t, "expected a field type, found '%s'", t->tok);
    char type[TOK_MAX], name[TOK_MAX];
    snprintf(type, sizeof type, "%s", t->tok);
    if (next(t) < 0 || t->kind != T_IDENT)
        return bad(t, "expected a field name, found '%s'", t->tok);
    snprintf(name, sizeof name, "%s", t->tok);
    uint32_t num = 0;
    if (next(t) < 0 || expect(t, "=") < 0 || field_number(t, &num) < 0)
        return -1;
    add_field(t, msg, name, num, type, repeated);
    return field_end(t);
}

/* map<K, V> name = N; : a repeated field of a synthesized NameEntry message */
static int parse_map(ps_t *t, int msg) {
    char k[TOK_MAX], v[TOK_MAX], name[TOK_MAX];
    if (next(t) < 0 || expect(t, "<") < 0)
        return -1;
    snprintf(k, sizeof k, "%s", t->tok);
    if (next(t) < 0 || expect(t, ",") < 0)
        return -1;
    snprintf(v, sizeof v, "%s", t->tok);
    if (next(t) < 0 || expect(t, ">") < 0)
        return -1;
    if (t->kind != T_IDENT)
        return bad(t, "expected a map field name, found '%s'", t->tok);
    snprintf(name, sizeof name, "%s", t->tok);
    uint32_t num = 0;
    if (next(t) < 0 || expect(t, "=") < 0 || field_number(t, &num) < 0)
        return -1;
    char entry[TOK_MAX + 8];
    snprintf(entry, sizeof entry, "%c%sEntry",
             name[0] >= 'a' && name[0] <= 'z' ? name[0] - 32 : name[0], name + 1);
    char *full = join(t->p->messages[msg].full_name, entry);
    char *abs = join("", full);
    char dotted[TOK_MAX * 3];
    snprintf(dotted, sizeof dotted, ".%s", abs);
    free(abs);
    int e = add_message(t, full);
    add_field(t, e, "key", 1, k, 0);
    add_field(t, e, "value", 2, v, 0);
    add_field(t, msg, name, num, dotted, 1);
    return field_end(t);
}

static int parse_enum(ps_t *t, const char *scope) {
    if (next(t) < 0 || t->kind != T_IDENT)
        return bad(t, "expected an enum name");
    reel_proto_t *p = t->p;
    p->enums = reel_realloc(p->enums, (p->n_enums + 1) * sizeof *p->enums);
    size_t ei = p->n_enums++;
    p->enums[ei] = (reel_pt_enum_t){.full_name = join(scope, t->tok)};
    if (next(t) < 0 || expect(t, "{") < 0)
        return -1;
    while (!is(t, "}")) {
        if (t->kind == T_EOF)
            return bad(t, "an enum does not end");
        if (is(t, "option") || is(t, "reserved")) {
            if (skip_statement(t) < 0)
                return -1;
            continue;
        }
        if (is(t, ";")) {
            if (next(t) < 0)
                return -1;
            continue;
        }
        char name[TOK_MAX];
        snprintf(name, sizeof name, "%s", t->tok);
        if (next(t) < 0 || expect(t, "=") < 0)
            return -1;
        char *end = NULL;
        long long v = strtoll(t->tok, &end, 0);
        if (t->kind != T_NUM || end == t->tok || *end || v < INT32_MIN || v > INT32_MAX)
            return bad(t, "enum value '%s'", t->tok);
        reel_pt_enum_t *en = &p->enums[ei];
        en->values = reel_realloc(en->values, (en->n_values + 1) * sizeof *en->values);
        en->values[en->n_values++] =
            (reel_pt_value_t){.name = reel_strdup(name), .number = (int32_t)v};
        if (next(t) < 0 || field_end(t) < 0)
            return -1;
    }
    return next(t);
}

static int parse_message(ps_t *t, const char *scope, int depth) {
    if (depth > NEST_MAX)
        return bad(t, "messages nested more than %d deep", NEST_MAX);
    if (next(t) < 0 || t->kind != T_IDENT)
        return bad(t, "expected a message name");
    int msg = add_message(t, join(scope, t->tok));
    if (next(t) < 0 || expect(t, "{") < 0)
        return -1;
    int in_oneof = 0;
    for (;;) {
        if (t->failed)
            return -1;
        if (t->kind == T_EOF)
            return bad(t, "a message does not end");
        if (is(t, "}")) {
            if (next(t) < 0)
                return -1;
            if (!in_oneof)
                return 0;
            in_oneof = 0;
            continue;
        }
        const char *full = t->p->messages[msg].full_name;
        if (is(t, "message")) {
            char *sc = reel_strdup(full);
            int rc = parse_message(t, sc, depth + 1);
            free(sc);
            if (rc < 0)
                return -1;
        } else if (is(t, "enum")) {
            char *sc = reel_strdup(full);
            int rc = parse_enum(t, sc);
            free(sc);
            if (rc < 0)
                return -1;
        } else if (is(t, "oneof") && !in_oneof) {
            if (next(t) < 0 || next(t) < 0 || expect(t, "{") < 0)
                return -1;
            in_oneof = 1;
        } else if (is(t, "option") || is(t, "reserved") || is(t, "extensions") || is(t, "extend")) {
            if (skip_statement(t) < 0)
                return -1;
        } else if (is(t, ";")) {
            if (next(t) < 0)
                return -1;
        } else if (is(t, "map")) {
            if (parse_map(t, msg) < 0)
                return -1;
        } else if (parse_field(t, msg) < 0) {
            return -1;
        }
    }
}

static int parse_service(ps_t *t) {
    if (next(t) < 0 || t->kind != T_IDENT)
        return bad(t, "expected a service name");
    char svc[TOK_MAX];
    snprintf(svc, sizeof svc, "%s", t->tok);
    if (next(t) < 0 || expect(t, "{") < 0)
        return -1;
    while (!is(t, "}")) {
        if (t->kind == T_EOF || t->failed)
            return bad(t, "a service does not end");
        if (!is(t, "rpc")) {
            if (skip_statement(t) < 0)
                return -1;
            continue;
        }
        char name[TOK_MAX], types[2][TOK_MAX];
        if (next(t) < 0 || t->kind != T_IDENT)
            return bad(t, "expected an rpc name");
        snprintf(name, sizeof name, "%s", t->tok);
        if (next(t) < 0)
            return -1;
        for (int i = 0; i < 2; i++) {
            if (i == 1 && expect(t, "returns") < 0)
                return -1;
            if (expect(t, "(") < 0)
                return -1;
            if (is(t, "stream") && next(t) < 0)
                return -1;
            if (t->kind != T_IDENT)
                return bad(t, "expected a message type, found '%s'", t->tok);
            snprintf(types[i], sizeof types[i], "%s", t->tok);
            if (next(t) < 0 || expect(t, ")") < 0)
                return -1;
        }
        if (skip_statement(t) < 0)
            return -1;
        reel_proto_t *p = t->p;
        p->rpcs = reel_realloc(p->rpcs, (p->n_rpcs + 1) * sizeof *p->rpcs);
        char path[TOK_MAX * 3 + 4];
        snprintf(path, sizeof path, "/%s%s%s/%s", t->pkg, t->pkg[0] ? "." : "", svc, name);
        p->rpcs[p->n_rpcs++] = (reel_pt_rpc_t){.path = reel_strdup(path),
                                               .in_name = reel_strdup(types[0]),
                                               .out_name = reel_strdup(types[1]),
                                               .in = -1,
                                               .out = -1};
    }
    return next(t);
}

/* ---- resolution ---- */

static const char *const scalars[] = {"double",  "float",    "int64",    "uint64", "int32",
                                      "fixed64", "fixed32",  "bool",     "string", "bytes",
                                      "uint32",  "sfixed32", "sfixed64", "sint32", "sint64"};

static int find_exact(const reel_proto_t *p, const char *full, int *is_enum) {
    for (size_t i = 0; i < p->n_messages; i++)
        if (strcmp(p->messages[i].full_name, full) == 0) {
            *is_enum = 0;
            return (int)i;
        }
    for (size_t i = 0; i < p->n_enums; i++)
        if (strcmp(p->enums[i].full_name, full) == 0) {
            *is_enum = 1;
            return (int)i;
        }
    return -1;
}

/* name as written inside scope (a message's full name or the package). */
static int resolve(const reel_proto_t *p, const char *scope, const char *name, int *is_enum) {
    if (name[0] == '.')
        return find_exact(p, name + 1, is_enum);
    char buf[TOK_MAX * 4];
    snprintf(buf, sizeof buf, "%s", scope);
    for (;;) {
        char full[TOK_MAX * 5];
        snprintf(full, sizeof full, "%s%s%s", buf, buf[0] ? "." : "", name);
        int r = find_exact(p, full, is_enum);
        if (r >= 0)
            return r;
        if (!buf[0])
            return -1;
        char *dot = strrchr(buf, '.');
        if (dot)
            *dot = '\0';
        else
            buf[0] = '\0';
    }
}

static void resolve_all(reel_proto_t *p) {
    for (size_t i = 0; i < p->n_messages; i++) {
        reel_pt_message_t *m = &p->messages[i];
        for (size_t k = 0; k < m->n_fields; k++) {
            reel_pt_field_t *f = &m->fields[k];
            for (size_t s = 0; s < sizeof scalars / sizeof *scalars; s++)
                if (strcmp(f->type_name, scalars[s]) == 0)
                    f->type = (reel_pt_type)s;
            if (f->type != REEL_PT_UNRESOLVED)
                continue;
            int is_enum = 0;
            int r = resolve(p, m->full_name, f->type_name, &is_enum);
            if (r >= 0) {
                f->type = is_enum ? REEL_PT_ENUM : REEL_PT_MESSAGE;
                f->ref = r;
            }
        }
    }
}

reel_rc reel_proto_parse(const char *text, size_t len, reel_proto_t **out, reel_err_t *err) {
    *out = NULL;
    reel_proto_t *p = reel_calloc(1, sizeof *p);
    ps_t t = {.s = text, .n = len, .line = 1, .p = p, .err = err};
    next(&t);
    while (!t.failed && t.kind != T_EOF) {
        if (is(&t, "package")) {
            if (next(&t) < 0 || t.kind != T_IDENT) {
                bad(&t, "expected a package name");
                break;
            }
            snprintf(t.pkg, sizeof t.pkg, "%s", t.tok);
            if (next(&t) < 0 || expect(&t, ";") < 0)
                break;
        } else if (is(&t, "message")) {
            char pkg[TOK_MAX];
            snprintf(pkg, sizeof pkg, "%s", t.pkg);
            parse_message(&t, pkg, 0);
        } else if (is(&t, "enum")) {
            char pkg[TOK_MAX];
            snprintf(pkg, sizeof pkg, "%s", t.pkg);
            parse_enum(&t, pkg);
        } else if (is(&t, "service")) {
            parse_service(&t);
        } else if (is(&t, "syntax") || is(&t, "edition") || is(&t, "import") || is(&t, "option") ||
                   is(&t, "extend") || is(&t, ";")) {
            if (is(&t, ";"))
                next(&t);
            else
                skip_statement(&t);
        } else {
            bad(&t, "unexpected '%s' at the top level", t.tok);
        }
    }
    if (t.failed) {
        reel_proto_free(p);
        return REEL_INVALID;
    }
    resolve_all(p);
    for (size_t i = 0; i < p->n_rpcs; i++) {
        int is_enum = 0;
        p->rpcs[i].in = resolve(p, t.pkg, p->rpcs[i].in_name, &is_enum);
        if (is_enum)
            p->rpcs[i].in = -1;
        p->rpcs[i].out = resolve(p, t.pkg, p->rpcs[i].out_name, &is_enum);
        if (is_enum)
            p->rpcs[i].out = -1;
    }
    *out = p;
    return REEL_OK;
}

void reel_proto_free(reel_proto_t *p) {
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_messages; i++) {
        for (size_t k = 0; k < p->messages[i].n_fields; k++) {
            free(p->messages[i].fields[k].name);
            free(p->messages[i].fields[k].type_name);
        }
        free(p->messages[i].fields);
        free(p->messages[i].full_name);
    }
    for (size_t i = 0; i < p->n_enums; i++) {
        for (size_t k = 0; k < p->enums[i].n_values; k++)
            free(p->enums[i].values[k].name);
        free(p->enums[i].values);
        free(p->enums[i].full_name);
    }
    for (size_t i = 0; i < p->n_rpcs; i++) {
        free(p->rpcs[i].path);
        free(p->rpcs[i].in_name);
        free(p->rpcs[i].out_name);
    }
    free(p->messages);
    free(p->enums);
    free(p->rpcs);
    free(p);
}

int reel_proto_message(const reel_proto_t *p, const char *name) {
    if (name[0] == '.')
        name++;
    int found = -1, count = 0;
    for (size_t i = 0; i < p->n_messages; i++) {
        const char *full = p->messages[i].full_name;
        if (strcmp(full, name) == 0)
            return (int)i;
        const char *last = strrchr(full, '.');
        if (strcmp(last ? last + 1 : full, name) == 0) {
            found = (int)i;
            count++;
        }
    }
    return count == 1 ? found : -1;
}

const reel_pt_rpc_t *reel_proto_rpc(const reel_proto_t *p, const char *path, size_t len) {
    for (size_t i = 0; i < p->n_rpcs; i++)
        if (strlen(p->rpcs[i].path) == len && memcmp(p->rpcs[i].path, path, len) == 0)
            return &p->rpcs[i];
    return NULL;
}
