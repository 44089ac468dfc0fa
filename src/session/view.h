/* Contentviews: a body shown the way its content reads (`reel flow --view`).
 *
 * Sans I/O: a view takes the bytes of one (decoded) body and its
 * Content-Type and writes text to a FILE. Nothing is ever executed or
 * fetched: JSON is parsed by jansson, XML and HTML by libxml2 with the
 * network off and entities not expanded, CSS and JavaScript are re-indented
 * by a tokenizer that only tracks strings, comments and brackets. A view that
 * cannot read its content never fails: it says why in one line starting
 * "(" and shows the bytes as a hex dump.
 *
 * With REEL_VIEW_TERM, every recorded byte that could drive a terminal
 * (C0 and C1 control characters, DEL, bytes that are not UTF-8) is written
 * as \xNN; with REEL_VIEW_COLOR, names, keys and numbers get ANSI colours.
 * Without them every byte goes out as it was. The caller holds the body:
 * it is expected to hold at most REEL_VIEW_MAX bytes of it and to pass
 * `cut` when there was more. */
#ifndef REEL_SESSION_VIEW_H
#define REEL_SESSION_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "session/protoschema.h"

/** Bytes of one body a view looks at; the rest is cut with a note. */
#define REEL_VIEW_MAX ((size_t)16 * 1024 * 1024)

typedef enum {
    REEL_VIEW_AUTO,
    REEL_VIEW_RAW,
    REEL_VIEW_HEX,
    REEL_VIEW_JSON,
    REEL_VIEW_XML,
    REEL_VIEW_HTML,
    REEL_VIEW_CSS,
    REEL_VIEW_JAVASCRIPT,
    REEL_VIEW_URLENCODED,
    REEL_VIEW_MULTIPART,
    REEL_VIEW_PROTOBUF,
    REEL_VIEW_GRPC,
    REEL_VIEW_MSGPACK,
    REEL_VIEW_IMAGE,
    REEL_VIEW_WEBSOCKET,
    REEL_VIEW_COUNT
} reel_view_kind;

enum {
    REEL_VIEW_TERM = 1,  /* escape control bytes as \xNN */
    REEL_VIEW_COLOR = 2, /* ANSI colours */
};

/** The kind named `name` ("json", ...); -1 when there is none. */
int reel_view_parse(const char *name);
/** The name of a kind ("auto" for REEL_VIEW_AUTO). */
const char *reel_view_name(reel_view_kind kind);
/** What `auto` picks for a body: from the Content-Type (may be NULL), then
 * from the first bytes (magic numbers, '{', '<'); text is RAW, the rest HEX.
 * Never returns AUTO. */
reel_view_kind reel_view_pick(const char *content_type, const uint8_t *p, size_t n);

/** Writes body p[0..n) through view `kind` to out. content_type (may be
 * NULL) gives auto its hint and multipart its boundary; cut says the body
 * went on past n (a note is written at the end). Returns the kind that was
 * shown: the one asked for (or picked), or REEL_VIEW_HEX when the content did
 * not read as that kind. */
reel_view_kind reel_view_render(reel_view_kind kind, const char *content_type, const uint8_t *p,
                                size_t n, int cut, int flags, FILE *out);

/** A schema for the protobuf and grpc views (`--proto FILE`): message is
 * an index into proto's messages, -1 for none (the view goes without). */
typedef struct {
    const reel_proto_t *proto;
    int message;
} reel_view_schema_t;

/** reel_view_render with a schema (NULL: none). Fields the schema names are
 * shown by name and decoded as their declared type (sint zigzag, enums by
 * name, packed repeated scalars, strings, nested messages); fields it does
 * not know, or whose wire type does not match, are shown as without one. */
reel_view_kind reel_view_render_schema(reel_view_kind kind, const char *content_type,
                                       const uint8_t *p, size_t n, int cut, int flags,
                                       const reel_view_schema_t *schema, FILE *out);

/** reel_view_render_schema for the part of a body that starts at byte
 * offset of it: the hex dump numbers its lines from offset, and for
 * offset > 0 the closing note names the bytes shown ("bytes 1048576 to
 * 2097151 of the body"). */
reel_view_kind reel_view_render_part(reel_view_kind kind, const char *content_type,
                                     const uint8_t *p, size_t n, uint64_t offset, int cut,
                                     int flags, const reel_view_schema_t *schema, FILE *out);

#endif
