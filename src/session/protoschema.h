/* A .proto file read well enough to name what a protobuf body holds
 * (`reel flow --view protobuf|grpc --proto FILE`): messages (nested too),
 * their fields (number, name, type, repeated, map), enums and their
 * values, services and their rpcs. Options, imports, extensions, reserved
 * ranges and oneof wrappers are read past (a oneof's fields belong to its
 * message). Imports are not followed: types they would bring stay
 * unresolved and such fields are shown without a schema.
 *
 * The whole file is parsed at once from memory; a file reel cannot read
 * fails with the line it stopped at. Sans I/O, no global state. */
#ifndef REEL_SESSION_PROTOSCHEMA_H
#define REEL_SESSION_PROTOSCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/** Scalar types; TYPE_MESSAGE and TYPE_ENUM name another definition. */
typedef enum {
    REEL_PT_DOUBLE,
    REEL_PT_FLOAT,
    REEL_PT_INT64,
    REEL_PT_UINT64,
    REEL_PT_INT32,
    REEL_PT_FIXED64,
    REEL_PT_FIXED32,
    REEL_PT_BOOL,
    REEL_PT_STRING,
    REEL_PT_BYTES,
    REEL_PT_UINT32,
    REEL_PT_SFIXED32,
    REEL_PT_SFIXED64,
    REEL_PT_SINT32,
    REEL_PT_SINT64,
    REEL_PT_MESSAGE,
    REEL_PT_ENUM,
    REEL_PT_UNRESOLVED
} reel_pt_type;

typedef struct {
    char *name;
    uint32_t number;
    reel_pt_type type;
    int repeated;
    int ref;         /* index of the message or enum for MESSAGE and ENUM, else -1 */
    char *type_name; /* as written, for resolution and for UNRESOLVED */
} reel_pt_field_t;

typedef struct {
    char *full_name; /* "pkg.Outer.Inner" */
    reel_pt_field_t *fields;
    size_t n_fields;
} reel_pt_message_t;

typedef struct {
    char *name;
    int32_t number;
} reel_pt_value_t;

typedef struct {
    char *full_name;
    reel_pt_value_t *values;
    size_t n_values;
} reel_pt_enum_t;

typedef struct {
    char *path; /* "/pkg.Service/Method", as gRPC requests name it */
    char *in_name, *out_name;
    int in, out; /* message indexes, -1 when unresolved */
} reel_pt_rpc_t;

typedef struct reel_proto {
    reel_pt_message_t *messages;
    size_t n_messages;
    reel_pt_enum_t *enums;
    size_t n_enums;
    reel_pt_rpc_t *rpcs;
    size_t n_rpcs;
} reel_proto_t;

/** Parses .proto text. On success *out is a new schema (reel_proto_free). */
reel_rc reel_proto_parse(const char *text, size_t len, reel_proto_t **out, reel_err_t *err);
void reel_proto_free(reel_proto_t *p);
/** The message named `name`: a full name ("pkg.M", a leading '.' allowed)
 * or, when only one message has it, a last part ("M"). -1 when none. */
int reel_proto_message(const reel_proto_t *p, const char *name);
/** The rpc a gRPC request path ("/pkg.Service/Method") names, or NULL. */
const reel_pt_rpc_t *reel_proto_rpc(const reel_proto_t *p, const char *path, size_t len);

#endif
