/* Conditional and range requests (RFC 9110 sections 13 and 14) for a
 * representation reel serves itself: map_local's files. Sans I/O: it reads
 * a request's fields and the file's size, time and entity-tag, and says
 * what to answer; it keeps no state and allocates nothing.
 *
 * What it answers, in RFC 9110 13.2.2's order:
 *   412  If-Match that no entity-tag matches (strong comparison), else an
 *        If-Unmodified-Since the file was modified after;
 *   304  If-None-Match that one matches (weak comparison), else an
 *        If-Modified-Since the file was not modified after (GET and HEAD;
 *        other methods get 412 for a matching If-None-Match);
 *   206  one satisfiable byte range of a GET (Range: bytes=...), unless an
 *        If-Range names another entity-tag or date;
 *   416  a GET's single byte range that starts past the end;
 *   200  anything else, the whole file: a Range that does not parse, names
 *        another unit, or asks for more than one range is ignored, as
 *        RFC 9110 14.2 allows (no multipart/byteranges).
 * A field that does not parse (a date, a list of entity-tags) counts as
 * absent, as RFC 9110 says of dates (13.1.3). */
#ifndef REEL_CORE_COND_H
#define REEL_CORE_COND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

/** The representation the request asks about. */
typedef struct {
    uint64_t size;    /**< its length in bytes */
    int64_t mtime;    /**< its Last-Modified, seconds since the epoch */
    const char *etag; /**< its strong entity-tag, quotes included */
    int64_t now;      /**< the time of the answer, seconds (a Last-Modified
                           less than a second old is a weak validator) */
} reel_cond_repr_t;

/** What to answer. */
typedef struct {
    int status;      /**< 200, 206, 304, 412 or 416 */
    uint64_t first;  /**< 206: the first byte sent; else 0 */
    uint64_t length; /**< bytes of the file the body holds: 200 size, 206
                          the range's, 0 otherwise */
} reel_cond_answer_t;

/** Evaluates the fields of a request with method (NUL-terminated) against
 * r. fields are borrowed. */
void reel_cond_evaluate(const char *method, const reel_field_t *fields, size_t nfields,
                        const reel_cond_repr_t *r, reel_cond_answer_t *out);

/** Writes t (seconds since the epoch) as an IMF-fixdate ("Sun, 06 Nov
 * 1994 08:49:37 GMT") into out, which holds at least 30 bytes. */
void reel_http_date_format(int64_t t, char out[30]);

/** Parses an HTTP-date of any of RFC 9110's three formats (IMF-fixdate,
 * RFC 850's, asctime's) of len bytes; false if it is none of them or
 * names a day that does not exist. */
bool reel_http_date_parse(const char *s, size_t len, int64_t *t);

#endif
