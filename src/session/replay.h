/* Client replay, the session side: what `reel replay` reads of a recorded
 * flow to send its request again, and which flows a filter or an id names.
 * The sending itself (sockets, TLS, HTTP/1) is in src/core/replay_send.c;
 * the new flow is recorded through the recorder with
 * reel_flow_info_t.replay_of naming the flow it replays (FlowStart.replay_of
 * in the spool, flows.replay_of in the index: docs/replay.md). */
#ifndef REEL_SESSION_REPLAY_H
#define REEL_SESSION_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"
#include "session/recorder.h"
#include "session/session.h"

/** Most bytes of one request body a replay sends (a stored body is already
 * cut at the session's body_limit). */
#define REEL_REPLAY_BODY_MAX ((size_t)256 * 1024 * 1024)

/** A recorded request, as the spool holds it. Every string is owned and
 * NUL-terminated (a NUL inside a recorded byte field makes the flow not
 * replayable: `why_not` says so). */
typedef struct {
    uint64_t id; /* the recorded flow */
    char *uuid;  /* its FlowStart.uuid ("" if none) */
    char *method;
    char *scheme; /* "http" or "https" */
    char *host;
    uint32_t port; /* 0 when the head gave none: the scheme's default */
    char *target;  /* origin form: path and query */
    char *http_version;
    reel_header_t *headers; /* as recorded, strings owned by this struct */
    size_t n_headers;
    int body_decoded; /* the stored body had its Content-Encoding removed (HAR import) */
    int no_expect;    /* reel answered the client's Expect itself: the origin got none */
    int absolute_form; /* the client sent an absolute-form target: Host was made from
                          host and port, not taken from headers */
    reel_buf_t body;  /* the stored request body */
    reel_header_t *trailers; /* the request's trailer fields, as recorded (owned) */
    size_t n_trailers;
    /* NULL when the request can be sent again; else an owned sentence
     * saying why not (a tunnel or WebSocket flow, no request head, a body
     * not stored whole, a flow still open, ...). */
    char *why_not;
} reel_replay_req_t;

/** Reads the request of flow `id` of s into out (zeroed first; release with
 * reel_replay_req_free, also after an error). A flow that cannot be sent
 * again is not an error: out->why_not says why. Returns REEL_NOTFOUND when
 * s has no flow `id`, REEL_CORRUPT / REEL_IO / REEL_DB when its records
 * cannot be read, with a message. */
reel_rc reel_replay_load(reel_session_t *s, uint64_t id, reel_replay_req_t *out, reel_err_t *err);

/** Frees what r holds (not r itself); accepts NULL. */
void reel_replay_req_free(reel_replay_req_t *r);

/** The port a request goes to: r->port, or 443 / 80 by its scheme. */
uint32_t reel_replay_port(const reel_replay_req_t *r);

/** The ids of the flows of s that `what` names, in id order: a flow id
 * ("12"), a range ("3-7": those of them that exist), or else a filter
 * expression (filter.h). Returns an owned array (free()) of *n ids (NULL
 * when none); REEL_INVALID / REEL_LIMIT for a bad filter, REEL_DB on index
 * errors, with a message. */
reel_rc reel_replay_select(reel_session_t *s, const char *what, uint64_t **ids, size_t *n,
                           reel_err_t *err);

/** What the index knows of flow id's replay links: the flow it replays
 * (*of, 0 when it is not a replay; *of_session the name of that flow's
 * session, owned, NULL for this session) and the flows of s that replay it
 * (*replays, owned array of *n ids ascending, NULL when none). For `reel
 * flow` ("replay of #N", "replayed as #M"). REEL_DB on index errors. */
reel_rc reel_replay_links(reel_session_t *s, uint64_t id, uint64_t *of, char **of_session,
                          uint64_t **replays, size_t *n, reel_err_t *err);

#endif
