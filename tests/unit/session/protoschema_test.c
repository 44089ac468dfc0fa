/* Tests for src/session/protoschema.c (.proto files for --proto) and the
 * protobuf and grpc views with a schema (src/session/view.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session/protoschema.h"
#include "session/view.h"

static const char proto_text[] =
    "syntax = \"proto3\";\n"
    "package demo.v1;\n"
    "import \"google/protobuf/empty.proto\";\n"
    "option go_package = \"x/y;z\";\n"
    "// a comment { with braces }\n"
    "/* and a block comment } */\n"
    "message Req {\n"
    "  int32 id = 1;\n"
    "  string name = 2;\n"
    "  Child child = 3 [deprecated = true];\n"
    "  message Child { sint32 a = 1; Kind kind = 2; }\n"
    "  enum Kind { option allow_alias = true; KIND_UNSPECIFIED = 0; KIND_A = 1; KIND_B = 2; }\n"
    "  repeated int32 nums = 4;\n"
    "  oneof pick { string s = 5; bytes b = 6; }\n"
    "  map<string, int32> tags = 7;\n"
    "  reserved 8, 9 to 11;\n"
    "  google.protobuf.Empty e = 12;\n"
    "  double d = 13;\n"
    "}\n"
    "service Svc {\n"
    "  rpc Get (Req) returns (Req.Child) { option (google.api.http) = { get: \"/v1/x\" }; }\n"
    "  rpc Stream (stream Req) returns (stream Req);\n"
    "}\n";

static reel_proto_t *parse_ok(const char *text) {
    reel_proto_t *p = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_proto_parse(text, strlen(text), &p, &err) != REEL_OK)
        fail_msg("parse failed: %s", reel_err_str(&err));
    return p;
}

static void parse_bad(const char *text, const char *want) {
    reel_proto_t *p = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_not_equal(reel_proto_parse(text, strlen(text), &p, &err), REEL_OK);
    assert_null(p);
    if (strstr(reel_err_str(&err), want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, reel_err_str(&err));
}

static void test_parse(void **state) {
    (void)state;
    reel_proto_t *p = parse_ok(proto_text);
    int req = reel_proto_message(p, "demo.v1.Req");
    assert_true(req >= 0);
    assert_int_equal(reel_proto_message(p, ".demo.v1.Req"), req);
    assert_int_equal(reel_proto_message(p, "Req"), req);
    int child = reel_proto_message(p, "Child");
    assert_true(child >= 0);
    assert_string_equal(p->messages[child].full_name, "demo.v1.Req.Child");
    assert_int_equal(reel_proto_message(p, "Nope"), -1);
    const reel_pt_message_t *m = &p->messages[req];
    assert_int_equal(m->n_fields, 9); /* oneof fields belong to Req; map is one field */
    int seen = 0;
    for (size_t i = 0; i < m->n_fields; i++) {
        const reel_pt_field_t *f = &m->fields[i];
        if (strcmp(f->name, "child") == 0) {
            assert_int_equal(f->type, REEL_PT_MESSAGE);
            assert_int_equal(f->ref, child);
            seen++;
        } else if (strcmp(f->name, "tags") == 0) {
            assert_int_equal(f->type, REEL_PT_MESSAGE);
            assert_true(f->repeated);
            assert_string_equal(p->messages[f->ref].full_name, "demo.v1.Req.TagsEntry");
            seen++;
        } else if (strcmp(f->name, "e") == 0) {
            assert_int_equal(f->type, REEL_PT_UNRESOLVED); /* imports are not followed */
            seen++;
        } else if (strcmp(f->name, "b") == 0) {
            assert_int_equal(f->number, 6);
            assert_int_equal(f->type, REEL_PT_BYTES);
            seen++;
        }
    }
    assert_int_equal(seen, 4);
    const reel_pt_message_t *c = &p->messages[child];
    assert_int_equal(c->fields[1].type, REEL_PT_ENUM);
    assert_string_equal(p->enums[c->fields[1].ref].full_name, "demo.v1.Req.Kind");
    const reel_pt_rpc_t *r = reel_proto_rpc(p, "/demo.v1.Svc/Get", 16);
    assert_non_null(r);
    assert_int_equal(r->in, req);
    assert_int_equal(r->out, child);
    assert_non_null(reel_proto_rpc(p, "/demo.v1.Svc/Stream", 19));
    assert_null(reel_proto_rpc(p, "/demo.v1.Svc/Gone", 17));
    reel_proto_free(p);
}

static void test_parse_errors(void **state) {
    (void)state;
    parse_bad("message A { int32 x = 1; ", "line 1: a message does not end");
    parse_bad("message A {\n int32 x = 0; }", "line 2: field number '0'");
    parse_bad("message A { int32 x = 1 }", "expected ';'");
    parse_bad("message A { string s = \"x; }", "a string does not end");
    parse_bad("/* open", "a comment does not end");
    parse_bad("bogus;", "unexpected 'bogus'");
    parse_bad("message A { optional group G = 1 {} }", "groups are not supported");
    /* deep nesting is refused, not recursed into without end */
    char deep[64 * 12 + 200] = "";
    for (int i = 0; i < 70; i++)
        strcat(deep, "message M {");
    parse_bad(deep, "nested more than");
    /* every prefix of a good file fails cleanly or parses */
    size_t n = strlen(proto_text);
    for (size_t k = 0; k < n; k++) {
        reel_proto_t *p = NULL;
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_proto_parse(proto_text, k, &p, &err) == REEL_OK)
            reel_proto_free(p);
    }
}

static char *render(reel_view_kind kind, const void *body, size_t n, const reel_proto_t *p,
                    int msg) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    reel_view_schema_t s = {.proto = p, .message = msg};
    reel_view_render_schema(kind, NULL, body, n, 0, REEL_VIEW_TERM, &s, f);
    fclose(f);
    return text;
}

static void test_view_with_schema(void **state) {
    (void)state;
    reel_proto_t *p = parse_ok(proto_text);
    int req = reel_proto_message(p, "Req");
    static const uint8_t pb[] = {0x08, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0x01,                               /* id: -2 */
                                 0x12, 0x03, 'a',  0x1b, 'b',              /* name */
                                 0x1a, 0x04, 0x08, 0x01, 0x10, 0x02,       /* child */
                                 0x22, 0x04, 0x01, 0x02, 0xac, 0x02,       /* nums packed */
                                 0x3a, 0x05, 0x0a, 0x01, 'k',  0x10, 0x05, /* tags */
                                 0x69, 0,    0,    0,    0,    0,    0,    0xf8, 0x3f, /* d: 1.5 */
                                 0x98, 0x06, 0x07,  /* unknown 99 */
                                 0x12, 0x01, 0x05}; /* name, wrong */
    char *t = render(REEL_VIEW_PROTOBUF, pb, sizeof pb, p, req);
    assert_string_equal(t, "demo.v1.Req\n"
                           "id: -2\n"
                           "name: \"a\\x1bb\"\n"
                           "child {\n  a: -1\n  kind: KIND_B (2)\n}\n"
                           "nums: [1, 2, 300]\n"
                           "tags {\n  key: \"k\"\n  value: 5\n}\n"
                           "d: 1.5\n"
                           "99: 7  (sint -4)\n"
                           "name: \"\\x05\"\n");
    free(t);
    /* a field whose wire type does not match its declaration: as without a schema */
    static const uint8_t mism[] = {0x0d, 1, 0, 0, 0}; /* id as fixed32 */
    t = render(REEL_VIEW_PROTOBUF, mism, sizeof mism, p, req);
    assert_string_equal(t, "demo.v1.Req\nid: fixed32 0x00000001  (float 1.4013e-45)\n");
    free(t);
    /* gRPC with the schema */
    uint8_t g[64] = {0, 0, 0, 0, 6};
    memcpy(g + 5, pb + 16, 6);
    t = render(REEL_VIEW_GRPC, g, 11, p, req);
    assert_string_equal(t, "message 1 (demo.v1.Req): 6 bytes\n  child {\n    a: -1\n"
                           "    kind: KIND_B (2)\n  }\n");
    free(t);
    /* hostile bodies with a schema: no crash, a reason */
    t = render(REEL_VIEW_PROTOBUF, "\x1a\x05\x08", 3, p, req);
    assert_non_null(strstr(t, "(not protobuf: "));
    free(t);
    for (size_t k = 0; k < sizeof pb; k++) {
        uint8_t b[sizeof pb];
        memcpy(b, pb, sizeof pb);
        b[k] ^= 0x5a;
        free(render(REEL_VIEW_PROTOBUF, b, sizeof b, p, req));
        free(render(REEL_VIEW_PROTOBUF, pb, k, p, req));
    }
    reel_proto_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_view_with_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
