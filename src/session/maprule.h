/* map_remote: rules that send a request to another URL than the one its
 * client asked for (Charles's Map Remote, mitmproxy's map_remote); and
 * map_local's, which answer it from a local file instead (Map Local).
 *
 * A rule is SEP REGEX SEP REPLACEMENT, its first character the separator
 * (any character that is not a letter or digit; "|" reads best), as in
 *
 *     |^https://api\.example\.com/|https://staging.example.com/
 *     |^http://localhost:3000/v1/(.*)|http://localhost:4000/v2/$1
 *
 * A rule may start with a flow filter (docs/filters.md, the terms a
 * request can be judged on before it is sent: reel_filter_live_compile),
 * SEP FILTER SEP REGEX SEP REPLACEMENT, as mitmproxy's: it then applies
 * only to the requests the filter matches ("|~m POST|^https://api/|...").
 *
 * REGEX is a PCRE2 pattern matched against the request's URL
 * (scheme://host[:port]/path?query, the port only when it is not the
 * scheme's own, an IPv6 address in brackets); every match is replaced by
 * REPLACEMENT, with PCRE2's $1 and ${name}. The first rule whose pattern
 * matches applies; the result must be an http:// or https:// URL. Pure:
 * no I/O, safe to use from several threads at once. */
#ifndef REEL_SESSION_MAPRULE_H
#define REEL_SESSION_MAPRULE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "session/filter.h"
#include "session/recorder.h"

typedef struct reel_map_rules reel_map_rules_t;

/** Compiles n rules. REEL_INVALID naming the first bad one (and why); *out
 * NULL when n is 0. */
reel_rc reel_map_rules_new(const char *const *rules, size_t n, reel_map_rules_t **out,
                           reel_err_t *err);

/** Checks one rule: REEL_OK or REEL_INVALID saying what is wrong. */
reel_rc reel_map_rule_check(const char *rule, reel_err_t *err);

/** The URL the first rule matching url (and rq, the request, when the rule
 * has a filter; rq NULL: such rules never match) makes of it (owned), NULL
 * when none matches (m NULL: none). *err is set, and NULL returned, when a rule
 * matched but its result is not an http(s) URL or could not be made. */
char *reel_map_rules_apply(const reel_map_rules_t *m, const char *url,
                           const reel_filter_request_t *rq, reel_err_t *err);

/** map_local's rules: SEP REGEX SEP PATH, PATH an absolute file or
 * directory name, REGEX matched against the URL as above. */
reel_rc reel_map_local_new(const char *const *rules, size_t n, reel_map_rules_t **out,
                           reel_err_t *err);
reel_rc reel_map_local_check(const char *rule, reel_err_t *err);

/** map_local: 1 when a rule's pattern matches url (the first that does),
 * with *path its PATH (borrowed from m) and *suffix (owned) the file name
 * the URL gives under PATH if PATH is a directory: the first capture
 * group's text if the pattern has one, else what follows the match; up to
 * its query, percent-decoded, without slashes at either end. *suffix is
 * NULL when that name would leave the directory (a ".." segment, a NUL).
 * 0 when no rule matches. */
int reel_map_local_match(const reel_map_rules_t *m, const char *url,
                         const reel_filter_request_t *rq, const char **path, char **suffix);

void reel_map_rules_free(reel_map_rules_t *m);

/** block_list's rules (mitmproxy's block_list): SEP FILTER SEP STATUS, as
 * "|~d telemetry\\.example|404": a request the flow filter matches (its
 * live form, reel_filter_live_compile) is answered with STATUS (200..599)
 * by reel, or, with 444, its connection closed without an answer. */
typedef struct reel_block_rules reel_block_rules_t;

reel_rc reel_block_rules_new(const char *const *rules, size_t n, reel_block_rules_t **out,
                             reel_err_t *err);
reel_rc reel_block_rule_check(const char *rule, reel_err_t *err);
/** The status of the first rule whose filter matches rq (with *rule the
 * rule as given, borrowed from b), or 0 when none does. */
int reel_block_match(const reel_block_rules_t *b, const reel_filter_request_t *rq,
                     const char **rule);
void reel_block_rules_free(reel_block_rules_t *b);

/** modify_headers' rules (mitmproxy's modify_headers, Charles's Rewrite):
 * SEP NAME SEP VALUE or SEP FILTER SEP NAME SEP VALUE, as
 * "|X-Debug|1" or "|~s & ~d api\\.example|Cache-Control|no-store". A rule
 * whose flow filter (reel_filter_live_compile_both's: judged on the
 * request before it is sent, and again on its response's head) matches
 * sets the field NAME to VALUE in the head reel sends on: every field of
 * that name is removed, then VALUE added; an empty VALUE only removes.
 * The fields that frame a message or name its hop (Content-Length,
 * Transfer-Encoding, Connection, Host, ...) are refused: reel writes those
 * itself. */
typedef struct reel_header_rules reel_header_rules_t;

/* (a change is a reel_header_edit_t, session/recorder.h's; its strings
 * borrowed from the rules) */

reel_rc reel_header_rules_new(const char *const *rules, size_t n, reel_header_rules_t **out,
                              reel_err_t *err);
reel_rc reel_header_rule_check(const char *rule, reel_err_t *err);
/** The changes of the rules whose filters match rq (rq->response says
 * which head: the request's or its response's), in rule order, at most
 * cap of them into out; returns how many rules matched (more than cap:
 * the rest left out). */
size_t reel_header_rules_match(const reel_header_rules_t *m, const reel_filter_request_t *rq,
                               reel_header_edit_t *out, size_t cap);
/** How many rules m has (0 for NULL): the most reel_header_rules_match
 * can find. */
size_t reel_header_rules_len(const reel_header_rules_t *m);
/** Whether the field name[0..len) is one edits[0..n) sets or removes. */
int reel_header_edits_name(const reel_header_edit_t *edits, size_t n, const char *name, size_t len);
void reel_header_rules_free(reel_header_rules_t *m);

/** modify_body's rules (mitmproxy's modify_body, Charles's Rewrite of a
 * body): SEP REGEX SEP REPLACEMENT or SEP FILTER SEP REGEX SEP
 * REPLACEMENT, as "|~d api\\.example|\"debug\":false|\"debug\":true". A
 * rule whose flow filter (reel_filter_live_compile_both's, judged on a
 * response's head with its request) matches replaces every match of its
 * PCRE2 REGEX in the response's body ($1 and ${name} in REPLACEMENT), the
 * rules in order, each on what the ones before made. Refcounted: an
 * exchange holding a body keeps the rules it matched alive across a
 * change of the option (same thread). */
typedef struct reel_body_rules reel_body_rules_t;

reel_rc reel_body_rules_new(const char *const *rules, size_t n, reel_body_rules_t **out,
                            reel_err_t *err);
reel_rc reel_body_rule_check(const char *rule, reel_err_t *err);
/** The rules matching rq (a response's, rq->response set): a bit per
 * rule, the first 64 rules (0: none, m NULL: none). */
uint64_t reel_body_rules_match(const reel_body_rules_t *m, const reel_filter_request_t *rq);
/** Applies the rules of mask to data[0..len): *out (owned) the result,
 * *count the matches replaced; REEL_OK, or REEL_INVALID with err saying
 * why a rule could not (its match limit, say). */
reel_rc reel_body_rules_apply(const reel_body_rules_t *m, uint64_t mask, const uint8_t *data,
                              size_t len, uint8_t **out, size_t *out_len, uint64_t *count,
                              reel_err_t *err);
/** The rules of mask as configured into out (borrowed from m, at most
 * 64); returns how many. */
size_t reel_body_rules_texts(const reel_body_rules_t *m, uint64_t mask, const char **out);
reel_body_rules_t *reel_body_rules_ref(reel_body_rules_t *m);
/** Drops a reference (the last frees m); accepts NULL. */
void reel_body_rules_free(reel_body_rules_t *m);

#endif
