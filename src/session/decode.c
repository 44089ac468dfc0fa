/* Content-Encoding decoders, text detection and hex dumps.
 *
 * A decoder is a chain of stages, one per coding named in the header, in the
 * order the codings were applied ("gzip, br": stage 0 gzip, stage 1 br).
 * Encoded bytes enter the last stage; each stage's output feeds the stage
 * before it, and stage 0's output goes to the sink. Every stage writes into
 * its own fixed output buffer, so memory is bounded by the number of stages
 * (at most REEL_DECODE_MAX_STAGES) whatever the body size. */
#include "session/decode.h"

#include <brotli/decode.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "base/mem.h"

/** Largest piece handed to the sink or to the next stage. */
#define OUT_CAP (64 * 1024)
/** Most codings accepted in one header; more is hostile or broken. */
#define REEL_DECODE_MAX_STAGES 8
/** zstd window limit: RFC 9659 caps Content-Encoding zstd windows at 8 MiB. */
#define ZSTD_WINDOW_LOG_MAX 23

typedef enum { CODING_GZIP, CODING_DEFLATE, CODING_BR, CODING_ZSTD } coding_t;

static const char *const coding_names[] = {"gzip", "deflate", "brotli", "zstd"};

typedef struct {
    coding_t coding;
    uint64_t fed;   /* encoded bytes received */
    int done;       /* stream (or, for gzip, the current member) ended */
    int started;    /* codec initialised (deflate waits for two header bytes) */
    uint8_t hdr[2]; /* deflate: first bytes, kept until the wrapper is known */
    size_t hdr_len;
    z_stream z;
    BrotliDecoderState *br;
    ZSTD_DCtx *zs;
    size_t zs_hint; /* last ZSTD_decompressStream result: 0 at a frame end */
    uint8_t *out;
} stage_t;

struct reel_decoder {
    reel_sink_fn sink;
    void *ctx;
    stage_t stages[REEL_DECODE_MAX_STAGES];
    size_t nstages;
    reel_rc failed; /* sticky: the first error, REEL_OK while healthy */
    char failmsg[REEL_ERR_MSG_MAX];
};

static reel_rc fail(reel_decoder_t *d, reel_err_t *err, reel_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static reel_rc fail(reel_decoder_t *d, reel_err_t *err, reel_rc rc, const char *fmt, ...) {
    if (d->failed == REEL_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->failmsg, sizeof d->failmsg, fmt, ap);
        va_end(ap);
        d->failed = rc;
    }
    return reel_err_set(err, d->failed, "%s", d->failmsg);
}

static int ieq(const char *a, size_t alen, const char *b) {
    size_t blen = strlen(b);
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        char ca = a[i], cb = b[i];
        if (ca >= 'A' && ca <= 'Z')
            ca = (char)(ca - 'A' + 'a');
        if (ca != cb)
            return 0;
    }
    return 1;
}

int reel_coding_is_identity(const char *value, size_t n) {
    while (n && (*value == ' ' || *value == '\t'))
        value++, n--;
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    return n == 0 || ieq(value, n, "identity");
}

/* Copies a peer-supplied token into out for an error message: printable
 * ASCII only, at most 64 bytes. */
static void safe_token(const char *s, size_t n, char out[static 72]) {
    size_t o = 0;
    for (size_t i = 0; i < n && o < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > 64) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static reel_rc stage_init(stage_t *st, coding_t coding) {
    memset(st, 0, sizeof *st);
    st->coding = coding;
    switch (coding) {
    case CODING_GZIP:
        if (inflateInit2(&st->z, 16 + MAX_WBITS) != Z_OK)
            return REEL_NOMEM;
        st->started = 1;
        break;
    case CODING_DEFLATE:
        break; /* initialised once the first two bytes tell zlib from raw */
    case CODING_BR:
        st->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        if (st->br == NULL)
            return REEL_NOMEM;
        st->started = 1;
        break;
    case CODING_ZSTD:
        st->zs = ZSTD_createDCtx();
        if (st->zs == NULL)
            return REEL_NOMEM;
        ZSTD_DCtx_setParameter(st->zs, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX);
        st->started = 1;
        break;
    }
    st->out = reel_malloc(OUT_CAP);
    return REEL_OK;
}

static void stage_free(stage_t *st) {
    if ((st->coding == CODING_GZIP || st->coding == CODING_DEFLATE) && st->started)
        inflateEnd(&st->z);
    if (st->br)
        BrotliDecoderDestroyInstance(st->br);
    ZSTD_freeDCtx(st->zs);
    free(st->out);
    memset(st, 0, sizeof *st);
}

reel_rc reel_decoder_new(const char *content_encoding, reel_sink_fn sink, void *ctx,
                         reel_decoder_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_decoder_t *d = reel_calloc(1, sizeof *d);
    d->sink = sink;
    d->ctx = ctx;
    const char *p = content_encoding ? content_encoding : "";
    while (*p) {
        /* One list element: OWS token OWS, separated by commas; empty
         * elements are allowed by the list syntax (RFC 9110 5.6.1). */
        while (*p == ' ' || *p == '\t')
            p++;
        const char *tok = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (*p == ',')
            p++;
        size_t n = (size_t)(end - tok);
        coding_t coding;
        if (n == 0 || ieq(tok, n, "identity"))
            continue;
        else if (ieq(tok, n, "gzip") || ieq(tok, n, "x-gzip"))
            coding = CODING_GZIP;
        else if (ieq(tok, n, "deflate"))
            coding = CODING_DEFLATE;
        else if (ieq(tok, n, "br"))
            coding = CODING_BR;
        else if (ieq(tok, n, "zstd"))
            coding = CODING_ZSTD;
        else {
            char name[72];
            safe_token(tok, n, name);
            rc = reel_err_set(err, REEL_UNSUPPORTED, "unsupported Content-Encoding '%s'", name);
            goto out;
        }
        if (d->nstages == REEL_DECODE_MAX_STAGES) {
            rc = reel_err_set(err, REEL_UNSUPPORTED,
                              "too many Content-Encoding layers (more than %d)",
                              REEL_DECODE_MAX_STAGES);
            goto out;
        }
        if ((rc = stage_init(&d->stages[d->nstages], coding)) != REEL_OK) {
            stage_free(&d->stages[d->nstages]);
            reel_err_set(err, rc, "cannot create a %s decoder", coding_names[coding]);
            goto out;
        }
        d->nstages++;
    }
out:
    if (rc != REEL_OK) {
        reel_decoder_free(d);
        d = NULL;
    }
    *out = d;
    return rc;
}

void reel_decoder_free(reel_decoder_t *d) {
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nstages; i++)
        stage_free(&d->stages[i]);
    free(d);
}

static reel_rc stage_feed(reel_decoder_t *d, size_t i, const uint8_t *data, size_t len,
                          reel_err_t *err);

/* Hands output of stage i (or, for i == nstages, the encoded input of an
 * empty chain) to the next consumer: stage i-1 or the sink. */
static reel_rc emit(reel_decoder_t *d, size_t i, const uint8_t *data, size_t len, reel_err_t *err) {
    if (len == 0)
        return REEL_OK;
    if (i > 0)
        return stage_feed(d, i - 1, data, len, err);
    while (len > 0) {
        size_t n = len < OUT_CAP ? len : OUT_CAP;
        if (d->sink(d->ctx, data, n) != 0)
            return fail(d, err, REEL_ERROR, "decoded output aborted by its consumer");
        data += n;
        len -= n;
    }
    return REEL_OK;
}

static int zlib_header_ok(const uint8_t h[2]) {
    return (h[0] & 0x0f) == Z_DEFLATED && (h[0] >> 4) <= 7 && ((h[0] << 8) | h[1]) % 31 == 0;
}

static reel_rc zlib_feed(reel_decoder_t *d, size_t i, const uint8_t *data, size_t len,
                         reel_err_t *err) {
    stage_t *st = &d->stages[i];
    const char *name = coding_names[st->coding];
    st->z.next_in = (Bytef *)data;
    st->z.avail_in = (uInt)len;
    int more_out = 0;
    for (;;) {
        if (st->done) {
            if (st->z.avail_in == 0)
                break;
            if (st->coding == CODING_DEFLATE)
                return fail(d, err, REEL_CORRUPT, "trailing data after the deflate stream");
            /* gzip: another member may follow. Zero padding after the last
             * member is ignored, as gzip(1) does. */
            while (st->z.avail_in > 0 && st->z.next_in[0] == 0) {
                st->z.next_in++;
                st->z.avail_in--;
            }
            if (st->z.avail_in == 0)
                break;
            if (st->z.next_in[0] != 0x1f)
                return fail(d, err, REEL_CORRUPT, "garbage after the end of a gzip member");
            inflateReset(&st->z);
            st->done = 0;
        }
        if (st->z.avail_in == 0 && !more_out)
            break;
        st->z.next_out = st->out;
        st->z.avail_out = OUT_CAP;
        int zr = inflate(&st->z, Z_NO_FLUSH);
        size_t n = OUT_CAP - st->z.avail_out;
        more_out = st->z.avail_out == 0;
        if (zr == Z_STREAM_END) {
            st->done = 1;
            more_out = 0;
        } else if (zr == Z_BUF_ERROR) {
            /* No progress possible: all input used and no output pending. */
            return emit(d, i, st->out, n, err);
        } else if (zr == Z_NEED_DICT) {
            return fail(d, err, REEL_CORRUPT, "corrupt %s stream: needs a preset dictionary", name);
        } else if (zr == Z_MEM_ERROR) {
            return fail(d, err, REEL_NOMEM, "%s decoder: out of memory", name);
        } else if (zr != Z_OK) {
            return fail(d, err, REEL_CORRUPT, "corrupt %s stream: %s", name,
                        st->z.msg ? st->z.msg : "invalid data");
        }
        reel_rc rc = emit(d, i, st->out, n, err);
        if (rc != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

static reel_rc deflate_start(reel_decoder_t *d, stage_t *st, reel_err_t *err) {
    /* RFC 9110 "deflate" is zlib-wrapped, but many servers send raw
     * deflate; the zlib header (CM = 8, CINFO <= 7, FCHECK) tells them
     * apart. */
    int wbits = zlib_header_ok(st->hdr) ? MAX_WBITS : -MAX_WBITS;
    if (inflateInit2(&st->z, wbits) != Z_OK)
        return fail(d, err, REEL_NOMEM, "deflate decoder: out of memory");
    st->started = 1;
    return REEL_OK;
}

static reel_rc br_feed(reel_decoder_t *d, size_t i, const uint8_t *data, size_t len,
                       reel_err_t *err) {
    stage_t *st = &d->stages[i];
    if (st->done)
        return len ? fail(d, err, REEL_CORRUPT, "trailing data after the brotli stream") : REEL_OK;
    size_t avail_in = len;
    const uint8_t *next_in = data;
    for (;;) {
        size_t avail_out = OUT_CAP;
        uint8_t *next_out = st->out;
        BrotliDecoderResult r =
            BrotliDecoderDecompressStream(st->br, &avail_in, &next_in, &avail_out, &next_out, NULL);
        if (r == BROTLI_DECODER_RESULT_ERROR)
            return fail(d, err, REEL_CORRUPT, "corrupt brotli stream: %s",
                        BrotliDecoderErrorString(BrotliDecoderGetErrorCode(st->br)));
        reel_rc rc = emit(d, i, st->out, OUT_CAP - avail_out, err);
        if (rc != REEL_OK)
            return rc;
        if (r == BROTLI_DECODER_RESULT_SUCCESS) {
            st->done = 1;
            if (avail_in > 0)
                return fail(d, err, REEL_CORRUPT, "trailing data after the brotli stream");
            break;
        }
        if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
            break;
        /* NEEDS_MORE_OUTPUT: go round with an empty buffer. */
    }
    return REEL_OK;
}

static reel_rc zstd_feed(reel_decoder_t *d, size_t i, const uint8_t *data, size_t len,
                         reel_err_t *err) {
    stage_t *st = &d->stages[i];
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {st->out, OUT_CAP, 0};
        size_t r = ZSTD_decompressStream(st->zs, &out, &in);
        if (ZSTD_isError(r)) {
            if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
                return fail(d, err, REEL_CORRUPT,
                            "zstd stream needs a window larger than %u KiB (RFC 9659 limit)",
                            (1u << ZSTD_WINDOW_LOG_MAX) / 1024);
            return fail(d, err, REEL_CORRUPT, "corrupt zstd stream: %s", ZSTD_getErrorName(r));
        }
        st->zs_hint = r;
        reel_rc rc = emit(d, i, st->out, out.pos, err);
        if (rc != REEL_OK)
            return rc;
        if (in.pos == in.size && out.pos < out.size)
            break;
    }
    return REEL_OK;
}

static reel_rc stage_feed(reel_decoder_t *d, size_t i, const uint8_t *data, size_t len,
                          reel_err_t *err) {
    stage_t *st = &d->stages[i];
    if (len == 0)
        return REEL_OK;
    st->fed += len;
    switch (st->coding) {
    case CODING_GZIP:
        return zlib_feed(d, i, data, len, err);
    case CODING_DEFLATE:
        if (!st->started) {
            while (st->hdr_len < 2 && len > 0) {
                st->hdr[st->hdr_len++] = *data++;
                len--;
            }
            if (st->hdr_len < 2)
                return REEL_OK;
            reel_rc rc = deflate_start(d, st, err);
            if (rc == REEL_OK)
                rc = zlib_feed(d, i, st->hdr, 2, err);
            if (rc != REEL_OK || len == 0)
                return rc;
        }
        return zlib_feed(d, i, data, len, err);
    case CODING_BR:
        return br_feed(d, i, data, len, err);
    case CODING_ZSTD:
        return zstd_feed(d, i, data, len, err);
    }
    return REEL_OK;
}

reel_rc reel_decoder_feed(reel_decoder_t *d, const uint8_t *data, size_t len, reel_err_t *err) {
    if (d->failed != REEL_OK)
        return reel_err_set(err, d->failed, "%s", d->failmsg);
    return emit(d, d->nstages, data, len, err);
}

reel_rc reel_decoder_finish(reel_decoder_t *d, reel_err_t *err) {
    if (d->failed != REEL_OK)
        return reel_err_set(err, d->failed, "%s", d->failmsg);
    /* Outermost coding first: its truncation explains the inner ones'. */
    for (size_t k = d->nstages; k-- > 0;) {
        stage_t *st = &d->stages[k];
        if (st->fed == 0)
            continue; /* an empty body is empty whatever its coding */
        int complete;
        switch (st->coding) {
        case CODING_ZSTD:
            complete = st->zs_hint == 0;
            break;
        default:
            complete = st->done;
            break;
        }
        if (!complete)
            return fail(d, err, REEL_CORRUPT, "truncated %s stream", coding_names[st->coding]);
    }
    return REEL_OK;
}

/* ---- text detection ---- */

static int looks_text(const uint8_t *data, size_t len, int whole) {
    size_t controls = 0;
    size_t i = 0;
    while (i < len) {
        uint8_t c = data[i];
        if (c < 0x80) {
            if (c == 0)
                return 0;
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b) ||
                c == 0x7f)
                controls++;
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= len) /* cut by the end: of a sample, fine so far */
                return whole ? 0 : controls * 20 <= len;
            uint8_t b = data[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
                return 0;
        }
        i += need + 1;
    }
    return controls * 20 <= len;
}

int reel_looks_text(const uint8_t *data, size_t len) {
    return looks_text(data, len, 0);
}

int reel_looks_text_whole(const uint8_t *data, size_t len) {
    return looks_text(data, len, 1);
}

/* ---- hex dump ---- */

void reel_hexdump_init(reel_hexdump_t *h, FILE *out) {
    memset(h, 0, sizeof *h);
    h->out = out;
}

static void hexdump_line(reel_hexdump_t *h) {
    static const char hex[] = "0123456789abcdef";
    /* "00000010  xx xx xx xx xx xx xx xx  xx xx xx xx xx xx xx xx  |................|" */
    char line[96];
    int n = snprintf(line, sizeof line, "%08llx  ", (unsigned long long)h->offset);
    size_t o = n > 0 ? (size_t)n : 0;
    for (size_t j = 0; j < 16; j++) {
        if (j < h->fill) {
            line[o++] = hex[h->line[j] >> 4];
            line[o++] = hex[h->line[j] & 15];
        } else {
            line[o++] = ' ';
            line[o++] = ' ';
        }
        line[o++] = ' ';
        if (j == 7)
            line[o++] = ' ';
    }
    line[o++] = ' ';
    line[o++] = '|';
    for (size_t j = 0; j < h->fill; j++) {
        uint8_t c = h->line[j];
        line[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
    }
    line[o++] = '|';
    line[o++] = '\n';
    fwrite(line, 1, o, h->out);
    h->offset += h->fill;
    h->fill = 0;
}

void reel_hexdump_feed(reel_hexdump_t *h, const uint8_t *data, size_t len) {
    while (len > 0) {
        size_t n = 16 - h->fill;
        if (n > len)
            n = len;
        memcpy(h->line + h->fill, data, n);
        h->fill += n;
        data += n;
        len -= n;
        if (h->fill == 16)
            hexdump_line(h);
    }
}

void reel_hexdump_finish(reel_hexdump_t *h) {
    if (h->fill > 0)
        hexdump_line(h);
}
