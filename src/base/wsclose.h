/* The WebSocket close codes an endpoint may send (RFC 6455 7.4.1, 7.4.2,
 * and the IANA registry's 1012-1014): shared by the codec (core/ws.c),
 * which fails a connection on any other, and the HAR import
 * (session/har.c), which refuses a file holding one. */
#ifndef REEL_BASE_WSCLOSE_H
#define REEL_BASE_WSCLOSE_H

#include <stdbool.h>

/** Whether code may be sent in a close frame: 1000-1003, 1007-1014 and
 * 3000-4999 (1004-1006 and 1015 are reserved, never sent; below 1000 and
 * 1016-2999 unused or for extensions not negotiated). */
static inline bool reel_ws_close_code_ok(unsigned code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

#endif
