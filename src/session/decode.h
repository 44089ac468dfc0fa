/* Body presentation: Content-Encoding decoding (gzip, deflate, br, identity;
 * stacked codings like "gzip, br" are undone right to left), binary
 * detection and hex dumps. Streaming: memory is bounded whatever the body
 * size. */
#ifndef REEL_SESSION_DECODE_H
#define REEL_SESSION_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"

typedef struct reel_decoder reel_decoder_t;

/** Output sink: receives decoded bytes. Return non-zero to abort. */
typedef int (*reel_sink_fn)(void *ctx, const uint8_t *data, size_t len);

/** Creates a decoder for a Content-Encoding header value (NULL or "" or
 * "identity" pass through). Unknown codings: REEL_UNSUPPORTED with the
 * coding named in err. */
reel_rc reel_decoder_new(const char *content_encoding, reel_sink_fn sink, void *ctx,
                         reel_decoder_t **out, reel_err_t *err);
/** Feeds encoded bytes. REEL_CORRUPT on a malformed stream. */
reel_rc reel_decoder_feed(reel_decoder_t *d, const uint8_t *data, size_t len, reel_err_t *err);
/** Ends the stream. REEL_CORRUPT if the encoded stream was truncated. */
reel_rc reel_decoder_finish(reel_decoder_t *d, reel_err_t *err);
void reel_decoder_free(reel_decoder_t *d);

/** 1 if data looks like text (valid UTF-8, no NUL and few control bytes). */
int reel_looks_text(const uint8_t *data, size_t len);

/** Hex dump writer that keeps its offset across calls (16 bytes a line:
 * "00000010  xx xx ... |ascii|"). */
typedef struct {
    FILE *out;
    uint64_t offset;
    uint8_t line[16];
    size_t fill;
} reel_hexdump_t;

void reel_hexdump_init(reel_hexdump_t *h, FILE *out);
void reel_hexdump_feed(reel_hexdump_t *h, const uint8_t *data, size_t len);
void reel_hexdump_finish(reel_hexdump_t *h);

#endif
