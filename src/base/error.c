#include "base/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

const char *reel_rc_name(reel_rc rc) {
    switch (rc) {
#define REEL_ERR_NAME(name, val, msg)                                          \
    case REEL_##name:                                                          \
        return "REEL_" #name;
        REEL_ERRNO_MAP(REEL_ERR_NAME)
#undef REEL_ERR_NAME
    }
    return "REEL_UNKNOWN";
}

const char *reel_rc_message(reel_rc rc) {
    switch (rc) {
#define REEL_ERR_MSG(name, val, msg)                                           \
    case REEL_##name:                                                          \
        return msg;
        REEL_ERRNO_MAP(REEL_ERR_MSG)
#undef REEL_ERR_MSG
    }
    return "unknown error";
}

void reel_err_clear(reel_err_t *err) {
    if (err == NULL)
        return;
    err->code = REEL_OK;
    err->msg[0] = '\0';
}

__attribute__((format(printf, 4, 0))) static reel_rc err_vset(reel_err_t *err, reel_rc rc,
                                                              int errnum, const char *fmt,
                                                              va_list ap) {
    if (err == NULL || err->code != REEL_OK)
        return rc;
    err->code = rc;
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (errnum != 0 && n >= 0 && (size_t)n < sizeof err->msg)
        n += snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errnum));
    /* "File too large" alone reads as a fault of the file; mostly it is
     * the process's file-size limit, which the message then names. */
    struct rlimit rl;
    if (errnum == EFBIG && n >= 0 && (size_t)n < sizeof err->msg &&
        getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n,
                 " (the file-size limit, ulimit -f, is %llu bytes)",
                 (unsigned long long)rl.rlim_cur);
    return rc;
}

reel_rc reel_err_set(reel_err_t *err, reel_rc rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, rc, 0, fmt, ap);
    va_end(ap);
    return rc;
}

reel_rc reel_err_errno(reel_err_t *err, reel_rc rc, int errnum, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, rc, errnum, fmt, ap);
    va_end(ap);
    return rc;
}

const char *reel_err_str(const reel_err_t *err) {
    return err->msg[0] ? err->msg : reel_rc_message(err->code);
}
