/* tnetstring reader (typed netstrings, as mitmproxy writes its flow files).
 *
 * A value is LENGTH ':' PAYLOAD TAG, where LENGTH is the payload's byte
 * count in decimal (no sign, no leading zero, at most 12 digits) and TAG
 * one of
 *   ,  bytes            ;  UTF-8 string      #  integer (decimal, int64)
 *   ^  float (decimal)  !  "true" / "false"  ~  null (empty payload)
 *   ]  list: the payload is the items, one value after another
 *   }  dict: the payload is key, value, key, value, ...
 * (mitmproxy/io/tnetstring.py). No library packaged for Debian reads it in C,
 * so reel has its own.
 *
 * Sans I/O: the caller hands in bytes. reel_tns_frame() reads only the
 * length prefix of a top-level value and says how many bytes the whole
 * value takes (or that it needs more, or that the prefix is bad), so a
 * stream can be cut into values without parsing them; reel_tns_parse()
 * then parses one complete value into a tree whose byte payloads point
 * into the caller's buffer (nothing is copied). Nesting depth and the
 * number of nodes are capped; no input makes it read outside the buffer,
 * recurse without bound or allocate more than the node cap allows. */
#ifndef REEL_SESSION_TNETSTRING_H
#define REEL_SESSION_TNETSTRING_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
    REEL_TNS_NULL = 0,
    REEL_TNS_BOOL,
    REEL_TNS_INT,
    REEL_TNS_FLOAT,
    REEL_TNS_BYTES,
    REEL_TNS_STRING,
    REEL_TNS_LIST,
    REEL_TNS_DICT,
} reel_tns_type;

/** Default caps of reel_tns_parse. */
#define REEL_TNS_MAX_DEPTH 32
#define REEL_TNS_MAX_NODES ((size_t)1 << 22)
/** Longest length prefix accepted, in digits (under 1 TB). */
#define REEL_TNS_MAX_DIGITS 12

typedef struct reel_tns reel_tns_t;

/** One parsed value. */
struct reel_tns {
    reel_tns_type type;
    size_t off;          /* offset of the value's first byte in the parsed buffer */
    const uint8_t *data; /* BYTES, STRING: the payload, borrowed from the input
                            (valid while it is); INT, FLOAT, BOOL: the literal */
    size_t len;
    int64_t i;        /* INT; BOOL: 0 or 1 */
    double f;         /* FLOAT */
    reel_tns_t *item; /* LIST: n items; DICT: n pairs as 2n items, key then value */
    size_t n;
};

typedef struct {
    size_t max_depth; /* 0 = REEL_TNS_MAX_DEPTH; the top level is depth 1 */
    size_t max_nodes; /* 0 = REEL_TNS_MAX_NODES; every value counts one */
} reel_tns_limits_t;

/** Reads the length prefix at the start of buf. Returns REEL_OK with the
 * whole value's size (prefix, payload and tag) in *total, REEL_NEED_MORE
 * when buf ends inside the prefix (an empty buf included), or REEL_CORRUPT
 * (not a digit, a leading zero, no ':' after at most REEL_TNS_MAX_DIGITS
 * digits) with the reason in err. Does not look past the ':'. */
reel_rc reel_tns_frame(const uint8_t *buf, size_t len, size_t *total, reel_err_t *err);

/** Parses the value starting at byte off of buf (len bytes; offsets in
 * messages and in the tree count from buf). Returns REEL_OK with the tree
 * in *out (owned: free with reel_tns_free; its payloads borrow buf) and its
 * size in *consumed (buf may go on after it); REEL_NEED_MORE when buf is a
 * proper prefix of a value whose prefix is well formed (more bytes could
 * complete it); REEL_CORRUPT for malformed input (bad prefix or tag, a
 * payload that does not hold whole values, a bad literal, invalid UTF-8 in
 * a string); REEL_LIMIT when nesting or the node count passes lim (NULL:
 * the defaults). Errors say what was wrong and at which byte offset:
 * "byte 123: list item: unknown type tag 'x'". *out is NULL on error. */
reel_rc reel_tns_parse(const uint8_t *buf, size_t len, size_t off, const reel_tns_limits_t *lim,
                       reel_tns_t **out, size_t *consumed, reel_err_t *err);

/** Frees a tree from reel_tns_parse; accepts NULL. */
void reel_tns_free(reel_tns_t *v);

/** The value of key (compared with the payload of BYTES and STRING keys) in
 * dict d; NULL when d is not a dict or has no such key. Borrowed. */
const reel_tns_t *reel_tns_get(const reel_tns_t *d, const char *key);

/** 1 when v is a BYTES or STRING value, else 0. */
int reel_tns_is_text(const reel_tns_t *v);

/** Name of a type for messages ("bytes", "dict", ...); static. */
const char *reel_tns_type_name(reel_tns_type t);

#endif
