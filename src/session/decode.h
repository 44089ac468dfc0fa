/* Body presentation: Content-Encoding decoding (gzip, x-gzip, deflate in
 * its zlib and raw forms, br, zstd, identity; stacked codings like
 * "gzip, br" are undone right to left), binary detection and hex dumps.
 * Streaming: memory is bounded whatever the body size (a fixed 64 KiB
 * buffer per coding plus the codec's own state; zstd windows are limited
 * to 8 MiB as RFC 9659 allows). */
#ifndef REEL_SESSION_DECODE_H
#define REEL_SESSION_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"

typedef struct reel_decoder reel_decoder_t;

/** Output sink: receives decoded bytes in pieces of at most 64 KiB; data is
 * borrowed for the call. Return non-zero to abort: the feed or finish that
 * was running returns REEL_ERROR. */
typedef int (*reel_sink_fn)(void *ctx, const uint8_t *data, size_t len);

/** Whether one Content-Encoding (or Transfer-Encoding) field value of n
 * bytes leaves the body as it is: empty or "identity" (any case), spaces
 * and tabs around it allowed. */
int reel_coding_is_identity(const char *value, size_t n);

/** Creates a decoder for a Content-Encoding header value: a comma-separated
 * list, names case-insensitive, whitespace and empty elements tolerated
 * (NULL, "" and "identity" pass through). Unknown codings: REEL_UNSUPPORTED
 * with "unsupported Content-Encoding 'name'" in err (more than 8 codings
 * too). *out is owned by the caller (reel_decoder_free); NULL on error. */
reel_rc reel_decoder_new(const char *content_encoding, reel_sink_fn sink, void *ctx,
                         reel_decoder_t **out, reel_err_t *err);
/** Feeds encoded bytes (borrowed); decoded output reaches the sink before
 * this returns. REEL_CORRUPT on a malformed stream (including trailing
 * garbage after a deflate or brotli stream; zero padding after a gzip member
 * is ignored, further gzip members and zstd frames are decoded). Errors are
 * sticky: later calls return the same error and message. */
reel_rc reel_decoder_feed(reel_decoder_t *d, const uint8_t *data, size_t len, reel_err_t *err);
/** Ends the stream. REEL_CORRUPT ("truncated gzip stream") if the encoded
 * stream stopped early; an empty input (no bytes fed) is an empty body and
 * succeeds whatever the coding (HEAD, 204 and 304 responses carry one). */
reel_rc reel_decoder_finish(reel_decoder_t *d, reel_err_t *err);
/** Frees d; accepts NULL. */
void reel_decoder_free(reel_decoder_t *d);

/** 1 if data looks like text: valid UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF; a sequence cut by the end of data is accepted, as
 * data is usually a sample), no NUL, and at most 5% other control bytes
 * (tab, CR, LF, FF and ESC do not count). Empty data is text. */
int reel_looks_text(const uint8_t *data, size_t len);
/** The same for data that is all there is (a whole body or message): a
 * sequence cut by its end is not UTF-8, so it is not text. */
int reel_looks_text_whole(const uint8_t *data, size_t len);

/** Hex dump writer in the format of `hexdump -C`, keeping its offset across
 * calls (16 bytes a line:
 * "00000010  48 65 6c 6c 6f 20 77 6f  72 6c 64 0a 00 01 02 03  |Hello world.....|").
 * Unlike hexdump -C it never squeezes repeated lines into "*" and prints no
 * final offset line. Write errors are left in the FILE's error flag. */
typedef struct {
    FILE *out;
    uint64_t offset;
    uint8_t line[16];
    size_t fill;
} reel_hexdump_t;

/** Starts a dump at offset 0 writing to out (borrowed). Set h->offset after
 * this to number lines from elsewhere. */
void reel_hexdump_init(reel_hexdump_t *h, FILE *out);
/** Dumps data, writing every completed line; keeps up to 15 bytes. */
void reel_hexdump_feed(reel_hexdump_t *h, const uint8_t *data, size_t len);
/** Writes the last partial line, padded so its ASCII column lines up. */
void reel_hexdump_finish(reel_hexdump_t *h);

#endif
