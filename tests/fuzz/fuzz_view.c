/* libFuzzer harness: the contentviews (src/session/view.h).
 *
 * Input: byte 0 picks the view (modulo REEL_VIEW_COUNT), byte 1 its flags
 * (bit 0 cut, bit 1 terminal, bit 2 colour, bit 3 schema), then a
 * Content-Type up to the first '\n' (at most 200 bytes), then the body. With
 * bit 3 the rest is .proto text, a NUL, then the body: the text goes through
 * reel_proto_parse (src/session/protoschema.h) and, when it parses, the body
 * is shown with each of its messages as the schema. Besides memory safety it
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
    int flags_byte = data[1];
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
    reel_proto_t *proto = NULL;
    int schema = 0;
    if (flags_byte & 8) {
        const uint8_t *nul = memchr(data, 0, size);
        size_t k = nul ? (size_t)(nul - data) : size;
        char *ptext = malloc(k ? k : 1);
        memcpy(ptext, data, k);
        reel_err_t err;
        reel_err_clear(&err);
        if (reel_proto_parse(ptext, k, &proto, &err) == REEL_OK) {
            FUZZ_CHECK(proto != NULL, "parsed without a schema");
            for (size_t i = 0; i < proto->n_messages; i++)
                for (size_t j = 0; j < proto->messages[i].n_fields; j++) {
                    const reel_pt_field_t *f = &proto->messages[i].fields[j];
                    if (f->type == REEL_PT_MESSAGE)
                        FUZZ_CHECK(f->ref >= 0 && (size_t)f->ref < proto->n_messages, "ref");
                    if (f->type == REEL_PT_ENUM)
                        FUZZ_CHECK(f->ref >= 0 && (size_t)f->ref < proto->n_enums, "ref");
                }
            schema = 1;
        } else {
            FUZZ_CHECK(proto == NULL && reel_err_str(&err)[0], "failed without a reason");
        }
        free(ptext);
        data += nul ? k + 1 : k;
        size -= nul ? k + 1 : k;
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
    if (schema) {
        size_t nm = proto->n_messages < 8 ? proto->n_messages : 8;
        for (size_t i = 0; i < nm; i++) {
            reel_view_schema_t sc = {.proto = proto, .message = (int)i};
            reel_view_render_schema(REEL_VIEW_PROTOBUF, ctp, body, size, cut, flags, &sc, f);
            reel_view_render_schema(REEL_VIEW_GRPC, ctp, body, size, cut, flags, &sc, f);
        }
    }
    fclose(f);
    free(body);
    FUZZ_CHECK(shown > REEL_VIEW_AUTO && shown < REEL_VIEW_COUNT, "shown %d", (int)shown);
    if (shown == REEL_VIEW_HEX && kind != REEL_VIEW_HEX && kind != REEL_VIEW_AUTO &&
        kind != REEL_VIEW_WEBSOCKET)
        FUZZ_CHECK(strstr(text, "; shown as hex)\n") != NULL, "fell back to hex without a reason");
    if ((flags & REEL_VIEW_TERM) && !(flags & REEL_VIEW_COLOR))
        FUZZ_CHECK(memchr(text, '\033', len) == NULL, "an ESC reached the terminal");
    free(text);
    reel_proto_free(proto);
    return 0;
}
