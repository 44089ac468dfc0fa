/* Internals shared by the web server's files (server.c: HTTP and security;
 * api.c: the JSON API; assets: the generated front end). Not for use
 * outside src/web. */
#ifndef REEL_WEB_WEB_INT_H
#define REEL_WEB_WEB_INT_H

#include <stdatomic.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "base/mem.h"
#include "session/replay.h"
#include "web/web.h"

/** Largest request body accepted (413 beyond). */
#define REEL_WEB_BODY_MAX ((size_t)1024 * 1024)
/** Largest flow page the API serves (400 beyond). */
#define REEL_WEB_PAGE_MAX 1000

/** One embedded file of web/ (generated: gen/web_assets.c). */
typedef struct {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} reel_web_asset_t;

/** Terminated by an entry with path NULL. */
extern const reel_web_asset_t reel_web_assets[];

/** A request as the API sees it; everything borrowed. */
typedef struct {
    const char *method;
    const char *path;  /* without the query, not percent-decoded */
    const char *query; /* after '?', "" when none */
    const uint8_t *body;
    size_t body_len;
    /* Set (to non-zero) once nobody waits for the answer (the client went
     * away, the server stops): an export stops writing at its next flow.
     * NULL: never. */
    const atomic_int *cancel;
    /* The Last-Event-ID header (an event stream the browser reconnects);
     * NULL: none. */
    const char *last_event_id;
} reel__web_req_t;

/** Live updates of one Server-Sent Events stream. */
typedef struct {
    char *session;
    int64_t last_id; /* highest id sent */
    int64_t *pend;   /* flows sent while open (state may still change), with sig */
    uint64_t *sig;
    size_t npend;
    /* Flows sent while open that did not fit in pend lie in ovf_lo..ovf_hi
     * (0: none); a walk over that range (scan_at: the last id walked) sends
     * them again, and collects those still open and untracked in
     * next_lo..next_hi, the range of the next walk. */
    int64_t ovf_lo, ovf_hi, scan_at, next_lo, next_hi;
    /* When the walk under way started (0: none under way), and when the
     * one before it did (or the overflow began): a flow of the range that
     * ended before that was sent ended already. */
    int64_t walk_us, walk_prev_us;
    int id_sent; /* the stream's starting point went out as an id: line */
    int64_t ticks;
} reel__web_sse_t;

/** A response the API fills in. */
typedef struct {
    int status;
    const char *type; /* Content-Type; NULL: application/json */
    reel_buf_t body;
    FILE *file;           /* instead of body: streamed from here (owned, closed after) */
    char *headers;        /* extra header lines, each ending CRLF (owned) */
    reel__web_sse_t *sse; /* the request became an event stream (owned) */
    /* The request became a replay (POST .../flows/ID/replay): server.c runs
     * `reel replay --json` on flow replay_id of replay_session (owned) in a
     * child process and answers when it exits (reel__web_replay_answer);
     * or, when replay_req is set (owned: the request, loaded), sends it on
     * libuv's thread pool into the session this process records and
     * answers when it is done (reel__web_replay_live_answer). */
    char *replay_session;
    int64_t replay_id;
    reel_replay_req_t *replay_req;
} reel__web_resp_t;

/** Server state the API reads. */
typedef struct {
    const char *home;
    int read_only;
    char *const *sessions;
    size_t nsessions;
    const char *live;
    int live_replay; /* replays into `live` run in this process */
} reel__web_ctx_t;

/** Answers an /api/ request. Keeps no state between calls and opens the
 * session anew for each (its own SQLite connection, closed before it
 * returns), so the requests reel__web_api_long names may be answered on
 * another thread while the loop answers others. */
void reel__web_api(const reel__web_ctx_t *w, const reel__web_req_t *rq, reel__web_resp_t *rs);

/** 1 when answering rq may walk a whole session: an export; a count or a
 * page with a filter (a header or body term reads every flow's records, and
 * a page of a rare match walks the index until it is full); tags or marks
 * by filter; the list of sessions with their counts. server.c answers
 * those off the event loop (the proxy's, under `reel record --web`). Only
 * the request line and body are looked at; the answer does not change. */
int reel__web_api_long(const reel__web_req_t *rq);

/** Appends the events of one tick of stream e to out (nothing when nothing
 * changed). Returns -1 when the session is gone. */
int reel__web_sse_tick(const reel__web_ctx_t *w, reel__web_sse_t *e, reel_buf_t *out);

void reel__web_sse_free(reel__web_sse_t *e);

/** Sets rs to the answer to a replay from what the child `reel replay
 * --json SESSION ID` left: its exit status (exit_status; -1 when it was
 * killed or could not start: why says so), stdout (the JSON) and stderr.
 * 200 {id, of, status, error: null} when the new flow got a
 * response; 502 with the new flow's id and its error when the replay
 * failed upstream; 422 when the flow cannot be replayed; 409 when the
 * session is being recorded; 500 otherwise, with the child's message. */
void reel__web_replay_answer(reel__web_resp_t *rs, int exit_status, const char *why,
                             const reel_buf_t *out, const reel_buf_t *errout);

/** Sets rs to the answer to a replay into the live session (sent in this
 * process) of flow `of`: the new flow id (0 when capture was off: 409),
 * the response's status (0: none), the error (NULL: it got a response) and
 * whether it ran out of time. 200 {id, of, status, error: null}; 502 with
 * the same fields when it failed upstream; 504 with them when it timed
 * out. */
void reel__web_replay_live_answer(reel__web_resp_t *rs, const char *session, int64_t of,
                                  uint64_t id, uint32_t status, const char *error, int timed_out);

/** msg as a JSON string; bytes of it that are not UTF-8 as \xNN. */
json_t *reel__web_message(const char *msg);

/** Sets rs to a JSON error {"error": msg} with status. */
void reel__web_error(reel__web_resp_t *rs, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A 405: the error, and the Allow header naming the methods (RFC 9110
 * 15.5.6: a 405 must carry one). */
void reel__web_not_allowed(reel__web_resp_t *rs, const char *allow, const char *msg);

/** Value of query parameter name, percent-decoded, owned; NULL if absent,
 * and also when it decodes to a NUL: the server refuses such a query (400,
 * reel__web_query_nul) before any handler asks for a parameter. */
char *reel__web_param(const char *query, const char *name);

/** The first parameter of query whose value decodes to a NUL (its name,
 * *name_len bytes, raw), or NULL when there is none. */
const char *reel__web_query_nul(const char *query, size_t *name_len);

/** Percent-decodes s[0..n); NULL if it decodes to a NUL. In a query
 * (`form`), '+' is a space (HTML's form encoding); in a path it is '+'. */
char *reel__web_unescape(const char *s, size_t n, int form);

#endif
