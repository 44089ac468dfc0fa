/* libFuzzer harness: export's redaction (src/session/redact.h), which
 * takes hostile bytes from a recorded flow and must never let a secret out
 * nor blow up on nesting (URLs percent-encoded inside query values,
 * fragments, userinfo, JSON at any depth, quotes that close nothing).
 *
 * Input: 1 control byte, then the text.
 *   c[0] bits 0-2  what the text is: a request target or URL, an
 *                  urlencoded list, a body (JSON, form or text by bits
 *                  3-4: no Content-Type, application/json,
 *                  application/x-www-form-urlencoded, text/plain), a
 *                  header value (Location, Authorization, Cookie,
 *                  Set-Cookie, X-Api-Key, Refresh, X-Fuzz or Link by
 *                  bits 3-5), a note, free text
 *        bit 6     an extra key word ("fuzzkey") and header (X-Fuzz)
 * Checks, besides memory safety (every call gets a heap buffer of exactly
 * the text's bytes) and libFuzzer's time limit per input (linear scans):
 * - an output is NUL-terminated at its length;
 * - (no fixed-point check: a second pass over the output can read it
 *   differently on garbage input, a token holding '/' or '=' replaced
 *   moving where it sees a URL's authority or a pair's end, a JWT's
 *   minimum length met by the marker; the inputs where it found real
 *   gaps, a bearer token cut at an inner '=', a bearer token in a nested
 *   query's key, a URL value given the rules for text whole, are kept
 *   in regress/redact-*)
 * - an output is at most a bounded multiple of the input (re-encoding a
 *   nested URL may escape every byte, three times). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/redact.h"

static const char *const types[] = {NULL, "application/json", "application/x-www-form-urlencoded",
                                    "text/plain"};
static const char *const headers[] = {"Location",  "Authorization", "Cookie", "Set-Cookie",
                                      "X-Api-Key", "Refresh",       "X-Fuzz", "Link"};

static int redact(const reel_redact_t *r, uint8_t c, const char *s, size_t n, reel_redacted_t *o) {
    switch (c & 7) {
    case 0:
        return reel_redact_target(r, s, n, o);
    case 1:
        return reel_redact_urlencoded(r, s, n, o);
    case 2:
    case 3:
        return reel_redact_body(r, types[(c >> 3) & 3], (const uint8_t *)s, n, o);
    case 4: {
        const char *h = headers[(c >> 3) & 7];
        return reel_redact_header(r, h, strlen(h), s, n, o);
    }
    case 5:
    case 6:
        return reel_redact_note(r, s, n, o);
    default:
        return reel_redact_text(r, s, n, o);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 64 * 1024)
        return 0;
    uint8_t c = data[0];
    size_t n = size - 1;
    char *text = reel_malloc(n ? n : 1);
    memcpy(text, data + 1, n);
    reel_redact_t *r = reel_redact_new();
    if (c & 0x40) {
        reel_redact_add_key(r, "fuzzkey");
        reel_redact_add_header(r, "X-Fuzz");
    }
    reel_redacted_t o1 = {0};
    if (redact(r, c, text, n, &o1)) {
        FUZZ_CHECK(o1.data != NULL && o1.data[o1.len] == '\0', "output not NUL-terminated");
        FUZZ_CHECK(o1.len <= 9 * n + 64, "output %zu bytes from %zu", o1.len, n);
        free(o1.data);
    }
    reel_redact_free(r);
    free(text);
    return 0;
}
