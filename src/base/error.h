/* reel error codes and error context.
 *
 * Every fallible function returns a reel_rc (REEL_OK == 0, errors negative)
 * and, when given a reel_err_t, fills its message once: the first error wins,
 * later ones only add nothing. Codes, names and default messages come from
 * the one table below. */
#ifndef REEL_BASE_ERROR_H
#define REEL_BASE_ERROR_H

#include <stddef.h>

#define REEL_ERRNO_MAP(X)                                                                          \
    X(OK, 0, "success")                                                                            \
    X(ERROR, -1, "error")                                                                          \
    X(NOMEM, -2, "out of memory")                                                                  \
    X(IO, -3, "input/output error")                                                                \
    X(NOTFOUND, -4, "not found")                                                                   \
    X(EXISTS, -5, "already exists")                                                                \
    X(INVALID, -6, "invalid argument")                                                             \
    X(CORRUPT, -7, "corrupt data")                                                                 \
    X(LIMIT, -8, "size limit exceeded")                                                            \
    X(LOCKED, -9, "locked by another process")                                                     \
    X(NEED_MORE, -10, "need more input")                                                           \
    X(DB, -11, "database error")                                                                   \
    X(USAGE, -12, "usage error")                                                                   \
    X(UNSUPPORTED, -13, "unsupported")                                                             \
    X(FULL, -14, "queue full")                                                                     \
    X(INTERRUPTED, -15, "interrupted")

typedef enum {
#define REEL_ERR_ENUM(name, val, msg) REEL_##name = (val),
    REEL_ERRNO_MAP(REEL_ERR_ENUM)
#undef REEL_ERR_ENUM
} reel_rc;

/** Size of the message buffer of an error context (1 KiB: config's
 * "unknown option" lists every option's name, over 512 bytes since
 * upstream_no_proxy). */
#define REEL_ERR_MSG_MAX 1024

/** Error context: code and message of the first error reported into it. */
typedef struct {
    reel_rc code;
    char msg[REEL_ERR_MSG_MAX];
} reel_err_t;

/** Returns the symbolic name of rc ("REEL_CORRUPT"); static storage. */
const char *reel_rc_name(reel_rc rc);

/** Returns the default one-line message for rc; static storage. */
const char *reel_rc_message(reel_rc rc);

/** Clears err (may be NULL). */
void reel_err_clear(reel_err_t *err);

/** Records rc with a printf-style message into err unless err already holds
 * an error (first error wins). err may be NULL. Returns rc, so callers can
 * write `return reel_err_set(err, REEL_IO, "...")`. */
reel_rc reel_err_set(reel_err_t *err, reel_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Like reel_err_set, appending ": strerror(errnum)". */
reel_rc reel_err_errno(reel_err_t *err, reel_rc rc, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Returns err's message, or the default message of its code when it has
 * none. err must not be NULL. */
const char *reel_err_str(const reel_err_t *err);

#endif
