/* The protocol-neutral message head: what codecs produce, exchanges act on
 * and capture records, whatever the protocol on the wire (HTTP/1 today;
 * HTTP/2 and WebSocket handshakes later). One shape instead of a
 * conversion per pair of modules.
 *
 * Ownership: a head borrows every string and the field array from whoever
 * filled it (a parser's storage, a caller's locals), valid for the call it
 * is passed to; nothing here allocates. */
#ifndef REEL_CORE_MSG_H
#define REEL_CORE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reel_header_edit; /* session/recorder.h's */

/** One header (or trailer) field as bytes; need not be NUL-terminated. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} reel_field_t;

/** A request or response head. Strings are NUL-terminated C strings
 * (empty, not NULL, when absent); fields are in wire order. */
typedef struct {
    /* request */
    const char *method;
    const char *scheme;    /* "http", "https", "ws", "wss", "tcp" */
    const char *host;      /* without brackets for IPv6 */
    uint32_t port;
    const char *path;      /* origin form: path and query ("" for CONNECT) */
    const char *protocol;  /* an extended CONNECT's :protocol (RFC 8441), else NULL */
    bool absolute_form;    /* HTTP/1 target sent in absolute form: Host went from host:port */
    bool reverse;          /* reel as a reverse proxy for host:port: Host went from them */
    const char *mapped_to; /* map_remote sent the request to this URL instead (NULL: none) */
    const char *original_dst; /* transparent: the address it went to, "ip:port" (NULL: none) */
    /* response */
    uint32_t status;
    const char *reason;
    const char *local_file; /* map_local answered from this file (NULL: not) */
    const char *blocked_by; /* a block_list rule answered (NULL: not) */
    /* both */
    const char *version;   /* "HTTP/1.1" */
    const reel_field_t *fields;
    size_t nfields;
    /* modify_headers' changes to the fields in what reel sent on */
    const struct reel_header_edit *edits;
    size_t nedits;
} reel_msg_head_t;

#endif
