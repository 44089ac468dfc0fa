/* libFuzzer harness: the contentviews (src/session/view.h).
 *
 * Input: byte 0 picks the view (modulo REEL_VIEW_COUNT), byte 1 its flags
 * (bit 0 cut, bit 1 terminal, bit 2 colour), then a Content-Type up to the
 * first '\n' (at most 200 bytes), then the body. Besides memory safety it
 * checks what the header promises: a view names the kind it showed (never
 * AUTO), one that could not read its content says why in a "(...; shown as
 * hex)" or "(...; shown as text)" line, and with the terminal flag and no
 * colour not one ESC byte of the content reaches the output. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "session/view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    reel_view_kind kind = (reel_view_kind)(data[0] % REEL_VIEW_COUNT);
    int cut = data[1] & 1;
    int flags = (data[1] & 2 ? REEL_VIEW_TERM : 0) | (data[1] & 4 ? REEL_VIEW_COLOR : 0);
    data += 2;
    size -= 2;
    char ct[201];
    const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
    const char *ctp = NULL;
    if (nl) {
        size_t k = (size_t)(nl - data);
        memcpy(ct, data, k);
        ct[k] = '\0';
        if (memchr(ct, 0, k) == NULL)
            ctp = ct;
        data += k + 1;
        size -= k + 1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        abort();
    /* the body in a buffer of its own size, so ASan sees any overread */
    uint8_t *body = malloc(size ? size : 1);
    memcpy(body, data, size);
    reel_view_kind shown = reel_view_render(kind, ctp, body, size, cut, flags, f);
    fclose(f);
    free(body);
    FUZZ_CHECK(shown > REEL_VIEW_AUTO && shown < REEL_VIEW_COUNT, "shown %d", (int)shown);
    if (shown == REEL_VIEW_HEX && kind != REEL_VIEW_HEX && kind != REEL_VIEW_AUTO &&
        kind != REEL_VIEW_WEBSOCKET)
        FUZZ_CHECK(strstr(text, "; shown as hex)\n") != NULL, "fell back to hex without a reason");
    if ((flags & REEL_VIEW_TERM) && !(flags & REEL_VIEW_COLOR))
        FUZZ_CHECK(memchr(text, '\033', len) == NULL, "an ESC reached the terminal");
    free(text);
    return 0;
}
