/* Tests for src/session/decode.c: Content-Encoding decoders (each input
 * also replayed split at every byte and in 1-byte feeds), text detection
 * and hex dumps. Encoded inputs are made here with zlib, libbrotlienc and
 * libzstd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "base/mem.h"
#include "session/decode.h"

/* ---- encoders ---- */

typedef struct {
    uint8_t *data;
    size_t len;
} blob_t;

static void blob_free(blob_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static blob_t blob_cat(blob_t a, blob_t b) {
    blob_t r = {reel_malloc(a.len + b.len + 1), a.len + b.len};
    memcpy(r.data, a.data, a.len);
    memcpy(r.data + a.len, b.data, b.len);
    return r;
}

static blob_t blob_of(const void *p, size_t n) {
    blob_t r = {reel_malloc(n + 1), n};
    memcpy(r.data, p, n);
    return r;
}

/* wbits: 16 + 15 gzip, 15 zlib, -15 raw deflate. */
static blob_t zlib_encode(const uint8_t *in, size_t len, int wbits) {
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uLong cap = deflateBound(&z, (uLong)len) + 32;
    blob_t r = {reel_malloc(cap), 0};
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = r.data;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    r.len = cap - z.avail_out;
    deflateEnd(&z);
    return r;
}

static blob_t br_encode(const uint8_t *in, size_t len) {
    size_t cap = BrotliEncoderMaxCompressedSize(len);
    if (cap == 0)
        cap = len + 1024;
    blob_t r = {reel_malloc(cap), cap};
    assert_true(BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, in,
                                      &r.len, r.data));
    return r;
}

static blob_t zstd_encode(const uint8_t *in, size_t len) {
    size_t cap = ZSTD_compressBound(len);
    blob_t r = {reel_malloc(cap), 0};
    r.len = ZSTD_compress(r.data, cap, in, len, 3);
    assert_false(ZSTD_isError(r.len));
    return r;
}

/* Encodes with one coding by name. */
static blob_t encode(const char *coding, const uint8_t *in, size_t len) {
    if (strcmp(coding, "gzip") == 0)
        return zlib_encode(in, len, 16 + 15);
    if (strcmp(coding, "deflate") == 0)
        return zlib_encode(in, len, 15);
    if (strcmp(coding, "rawdeflate") == 0)
        return zlib_encode(in, len, -15);
    if (strcmp(coding, "br") == 0)
        return br_encode(in, len);
    if (strcmp(coding, "zstd") == 0)
        return zstd_encode(in, len);
    fail_msg("no encoder for %s", coding);
    return (blob_t){NULL, 0};
}

/* ---- decoding helpers ---- */

typedef struct {
    reel_buf_t out;
    size_t max_piece;
    int abort_after; /* abort on this call (1-based); 0: never */
    int calls;
} sink_t;

static int sink_fn(void *ctx, const uint8_t *data, size_t len) {
    sink_t *s = ctx;
    s->calls++;
    if (s->abort_after && s->calls >= s->abort_after)
        return 1;
    if (len > s->max_piece)
        s->max_piece = len;
    assert_true(len > 0);
    assert_int_equal(reel_buf_append(&s->out, data, len), REEL_OK);
    return 0;
}

/* Decodes enc fed as the given pieces (cuts: ascending split offsets).
 * Returns the first error (feed or finish); sink->out holds the output. */
static reel_rc decode_split(const char *ce, const blob_t *enc, const size_t *cuts, size_t ncuts,
                            sink_t *sink, reel_err_t *err) {
    reel_decoder_t *d = NULL;
    reel_rc rc = reel_decoder_new(ce, sink_fn, sink, &d, err);
    if (rc != REEL_OK)
        return rc;
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts && rc == REEL_OK; k++) {
        size_t end = k < ncuts ? cuts[k] : enc->len;
        rc = reel_decoder_feed(d, enc->data + pos, end - pos, err);
        pos = end;
    }
    if (rc == REEL_OK)
        rc = reel_decoder_finish(d, err);
    reel_decoder_free(d);
    return rc;
}

static void sink_init(sink_t *s) {
    memset(s, 0, sizeof *s);
    reel_buf_init(&s->out, 0);
}

/* Decodes enc in one piece, split at every byte, and in 1-byte feeds; each
 * must give exactly want. */
static void check_roundtrip(const char *ce, const blob_t *enc, const uint8_t *want,
                            size_t want_len) {
    reel_err_t err;
    sink_t s;

    sink_init(&s);
    reel_err_clear(&err);
    reel_rc rc = decode_split(ce, enc, NULL, 0, &s, &err);
    if (rc != REEL_OK)
        fail_msg("%s: %s", ce, reel_err_str(&err));
    assert_int_equal(s.out.len, want_len);
    assert_memory_equal(s.out.data, want, want_len);
    assert_true(s.max_piece <= 64 * 1024);
    reel_buf_free(&s.out);

    if (enc->len <= 4096) {
        for (size_t cut = 0; cut <= enc->len; cut++) {
            sink_init(&s);
            reel_err_clear(&err);
            rc = decode_split(ce, enc, &cut, 1, &s, &err);
            if (rc != REEL_OK)
                fail_msg("%s split at %zu: %s", ce, cut, reel_err_str(&err));
            assert_int_equal(s.out.len, want_len);
            assert_memory_equal(s.out.data, want, want_len);
            reel_buf_free(&s.out);
        }
    }

    size_t *cuts = reel_malloc((enc->len + 1) * sizeof *cuts);
    for (size_t k = 0; k < enc->len; k++)
        cuts[k] = k + 1;
    sink_init(&s);
    reel_err_clear(&err);
    rc = decode_split(ce, enc, cuts, enc->len ? enc->len - 1 : 0, &s, &err);
    if (rc != REEL_OK)
        fail_msg("%s in 1-byte feeds: %s", ce, reel_err_str(&err));
    assert_int_equal(s.out.len, want_len);
    assert_memory_equal(s.out.data, want, want_len);
    reel_buf_free(&s.out);
    free(cuts);
}

static const char short_text[] =
    "HTTP bodies come gzip'd, deflated, brotli'd or zstd'd; reel shows them decoded. "
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps again.\n";

/* A compressible but not trivial body larger than several 64 KiB pieces. */
static blob_t big_body(size_t n) {
    blob_t b = {reel_malloc(n + 1), n};
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b.data[i] = (uint8_t)("abcdefgh\n "[(x >> 16) % 10]);
    }
    return b;
}

/* ---- tests: round trips ---- */

static void roundtrip_one(const char *ce, const char *encoder) {
    const uint8_t *in = (const uint8_t *)short_text;
    size_t len = sizeof short_text - 1;
    blob_t enc = encode(encoder, in, len);
    check_roundtrip(ce, &enc, in, len);
    blob_free(&enc);

    /* Empty content, encoded (not an empty body: a valid empty stream). */
    enc = encode(encoder, (const uint8_t *)"", 0);
    check_roundtrip(ce, &enc, (const uint8_t *)"", 0);
    blob_free(&enc);

    blob_t big = big_body(700 * 1024);
    enc = encode(encoder, big.data, big.len);
    check_roundtrip(ce, &enc, big.data, big.len);
    blob_free(&enc);
    blob_free(&big);
}

static void test_gzip(void **state) {
    roundtrip_one("gzip", "gzip");
    roundtrip_one("x-gzip", "gzip");
    roundtrip_one(" GZip ", "gzip");
}

static void test_deflate_zlib(void **state) {
    roundtrip_one("deflate", "deflate");
}

static void test_deflate_raw(void **state) {
    roundtrip_one("deflate", "rawdeflate");
    roundtrip_one("Deflate", "rawdeflate");
}

static void test_br(void **state) {
    roundtrip_one("br", "br");
}

static void test_zstd(void **state) {
    roundtrip_one("zstd", "zstd");
}

static void test_stacked(void **state) {
    static const struct {
        const char *ce;
        const char *first, *second; /* applied in this order */
    } cases[] = {
        {"gzip, br", "gzip", "br"},
        {"br,gzip", "br", "gzip"},
        {"  Deflate ,\tZSTD  ", "rawdeflate", "zstd"},
        {"identity, gzip, , identity, deflate", "gzip", "deflate"},
        {"zstd, zstd", "zstd", "zstd"},
    };
    const uint8_t *in = (const uint8_t *)short_text;
    size_t len = sizeof short_text - 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob_t a = encode(cases[i].first, in, len);
        blob_t b = encode(cases[i].second, a.data, a.len);
        check_roundtrip(cases[i].ce, &b, in, len);
        blob_free(&a);
        blob_free(&b);
    }
    /* Three layers over a large body. */
    blob_t big = big_body(300 * 1024);
    blob_t a = encode("gzip", big.data, big.len);
    blob_t b = encode("br", a.data, a.len);
    blob_t c = encode("zstd", b.data, b.len);
    check_roundtrip("gzip, br, zstd", &c, big.data, big.len);
    blob_free(&a);
    blob_free(&b);
    blob_free(&c);
    blob_free(&big);
}

static void test_gzip_members(void **state) {
    blob_t a = encode("gzip", (const uint8_t *)"first member, ", 14);
    blob_t b = encode("gzip", (const uint8_t *)"second member", 13);
    blob_t ab = blob_cat(a, b);
    check_roundtrip("gzip", &ab, (const uint8_t *)"first member, second member", 27);

    /* Zero padding after the last member is ignored, as gzip(1) does. */
    blob_t zeros = blob_of("\0\0\0\0", 4);
    blob_t padded = blob_cat(ab, zeros);
    check_roundtrip("gzip", &padded, (const uint8_t *)"first member, second member", 27);

    /* Anything else after a member is garbage. */
    blob_t junk = blob_of("junk", 4);
    blob_t bad = blob_cat(a, junk);
    sink_t s;
    sink_init(&s);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(decode_split("gzip", &bad, NULL, 0, &s, &err), REEL_CORRUPT);
    assert_non_null(strstr(err.msg, "gzip"));
    reel_buf_free(&s.out);

    blob_free(&a);
    blob_free(&b);
    blob_free(&ab);
    blob_free(&zeros);
    blob_free(&padded);
    blob_free(&junk);
    blob_free(&bad);
}

static void test_zstd_frames(void **state) {
    blob_t a = encode("zstd", (const uint8_t *)"one ", 4);
    blob_t b = encode("zstd", (const uint8_t *)"two", 3);
    blob_t ab = blob_cat(a, b);
    check_roundtrip("zstd", &ab, (const uint8_t *)"one two", 7);
    blob_free(&a);
    blob_free(&b);
    blob_free(&ab);
}

static void test_identity(void **state) {
    const char *ces[] = {NULL, "", "identity", " IDENTITY ", ",", "identity, identity"};
    blob_t in = blob_of(short_text, sizeof short_text - 1);
    for (size_t i = 0; i < sizeof ces / sizeof ces[0]; i++)
        check_roundtrip(ces[i], &in, in.data, in.len);
    blob_free(&in);

    /* Large passthrough feeds reach the sink in bounded pieces. */
    blob_t big = big_body(200 * 1024);
    check_roundtrip(NULL, &big, big.data, big.len);
    blob_free(&big);
}

/* ---- tests: errors ---- */

static void test_zstd_window_limit(void **state) {
    /* A frame that declares a 16 MiB window (content size unknown) is
     * refused: RFC 9659 limits Content-Encoding zstd windows to 8 MiB. */
    const char *text = "window test";
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_non_null(cc);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 24)));
    uint8_t buf[256];
    ZSTD_outBuffer out = {buf, sizeof buf, 0};
    ZSTD_inBuffer in = {text, strlen(text), 0};
    assert_false(ZSTD_isError(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_continue)));
    ZSTD_inBuffer none = {NULL, 0, 0};
    assert_int_equal(ZSTD_compressStream2(cc, &out, &none, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cc);
    blob_t enc = {buf, out.pos};
    sink_t s;
    sink_init(&s);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(decode_split("zstd", &enc, NULL, 0, &s, &err), REEL_CORRUPT);
    assert_string_equal(err.msg,
                        "zstd stream needs a window larger than 8192 KiB (RFC 9659 limit)");
    reel_buf_free(&s.out);

    /* 8 MiB is fine. */
    cc = ZSTD_createCCtx();
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 23)));
    out.pos = 0;
    in.pos = 0;
    assert_false(ZSTD_isError(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_continue)));
    assert_int_equal(ZSTD_compressStream2(cc, &out, &none, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cc);
    enc.len = out.pos;
    check_roundtrip("zstd", &enc, (const uint8_t *)text, strlen(text));
}

static void test_empty_body(void **state) {
    /* HEAD, 204 and 304 responses: a coding but no bytes at all. */
    const char *ces[] = {"gzip", "deflate", "br", "zstd", "gzip, br"};
    for (size_t i = 0; i < sizeof ces / sizeof ces[0]; i++) {
        blob_t none = {NULL, 0};
        check_roundtrip(ces[i], &none, NULL, 0);
    }
}

static void test_truncated(void **state) {
    static const struct {
        const char *ce, *encoder, *name;
    } cases[] = {
        {"gzip", "gzip", "gzip"},
        {"deflate", "deflate", "deflate"},
        {"deflate", "rawdeflate", "deflate"},
        {"br", "br", "brotli"},
        {"zstd", "zstd", "zstd"},
    };
    const uint8_t *in = (const uint8_t *)short_text;
    size_t len = sizeof short_text - 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob_t enc = encode(cases[i].encoder, in, len);
        /* Every proper prefix is an error, and at the very end it is a
         * truncation naming the coding. */
        for (size_t cut = 1; cut < enc.len; cut++) {
            blob_t pre = {enc.data, cut};
            sink_t s;
            sink_init(&s);
            reel_err_t err;
            reel_err_clear(&err);
            reel_rc rc = decode_split(cases[i].ce, &pre, NULL, 0, &s, &err);
            if (rc != REEL_CORRUPT)
                fail_msg("%s cut at %zu of %zu: %s", cases[i].encoder, cut, enc.len,
                         reel_rc_name(rc));
            char want[64];
            snprintf(want, sizeof want, "truncated %s stream", cases[i].name);
            if (strcmp(err.msg, want) != 0)
                fail_msg("%s cut at %zu: '%s'", cases[i].encoder, cut, err.msg);
            reel_buf_free(&s.out);
        }
        blob_free(&enc);
    }

    /* Stacked: the outer coding is reported. */
    blob_t a = encode("gzip", in, len);
    blob_t b = encode("br", a.data, a.len);
    blob_t pre = {b.data, b.len - 1};
    sink_t s;
    sink_init(&s);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(decode_split("gzip, br", &pre, NULL, 0, &s, &err), REEL_CORRUPT);
    assert_string_equal(err.msg, "truncated brotli stream");
    reel_buf_free(&s.out);
    /* Inner truncated, outer complete. */
    blob_t a2 = {a.data, a.len - 3};
    blob_t b2 = encode("br", a2.data, a2.len);
    sink_init(&s);
    reel_err_clear(&err);
    assert_int_equal(decode_split("gzip, br", &b2, NULL, 0, &s, &err), REEL_CORRUPT);
    assert_string_equal(err.msg, "truncated gzip stream");
    reel_buf_free(&s.out);
    blob_free(&a);
    blob_free(&b);
    blob_free(&b2);
}

static void test_garbage(void **state) {
    static const uint8_t junk[] = {0xff, 0xfe, 0xfd, 0xfc, 0x00, 0x11, 0x22, 0x33,
                                   0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb};
    static const struct {
        const char *ce, *needle;
    } cases[] = {
        {"gzip", "corrupt gzip stream"},
        {"deflate", "corrupt deflate stream"},
        {"br", "corrupt brotli stream"},
        {"zstd", "corrupt zstd stream"},
    };
    blob_t g = blob_of(junk, sizeof junk);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t cuts[sizeof junk];
        for (size_t k = 0; k < sizeof junk - 1; k++)
            cuts[k] = k + 1;
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            sink_t s;
            sink_init(&s);
            reel_err_t err;
            reel_err_clear(&err);
            reel_rc rc =
                decode_split(cases[i].ce, &g, cuts, bytewise ? sizeof junk - 1 : 0, &s, &err);
            if (rc != REEL_CORRUPT || strstr(err.msg, cases[i].needle) == NULL)
                fail_msg("%s: %s '%s'", cases[i].ce, reel_rc_name(rc), err.msg);
            reel_buf_free(&s.out);
        }
    }
    blob_free(&g);

    /* Plain text labelled gzip. */
    blob_t txt = blob_of("<html>not compressed</html>", 27);
    sink_t s;
    sink_init(&s);
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(decode_split("gzip", &txt, NULL, 0, &s, &err), REEL_CORRUPT);
    reel_buf_free(&s.out);
    blob_free(&txt);
}

static void test_trailing_data(void **state) {
    const uint8_t *in = (const uint8_t *)short_text;
    size_t len = sizeof short_text - 1;
    const char *encoders[] = {"deflate", "rawdeflate", "br"};
    for (size_t i = 0; i < 3; i++) {
        blob_t enc = encode(encoders[i], in, len);
        blob_t x = blob_of("x", 1);
        blob_t bad = blob_cat(enc, x);
        const char *ce = strcmp(encoders[i], "br") == 0 ? "br" : "deflate";
        for (int split = 0; split < 2; split++) {
            size_t cut = enc.len; /* trailing byte in its own feed */
            sink_t s;
            sink_init(&s);
            reel_err_t err;
            reel_err_clear(&err);
            assert_int_equal(decode_split(ce, &bad, &cut, (size_t)split, &s, &err), REEL_CORRUPT);
            assert_non_null(strstr(err.msg, "trailing data"));
            reel_buf_free(&s.out);
        }
        blob_free(&enc);
        blob_free(&x);
        blob_free(&bad);
    }
}

static void test_unsupported(void **state) {
    static const struct {
        const char *ce, *msg;
    } cases[] = {
        {"compress", "unsupported Content-Encoding 'compress'"},
        {"gzip, zstd2", "unsupported Content-Encoding 'zstd2'"},
        {" x-compress ", "unsupported Content-Encoding 'x-compress'"},
        {"gzip\x01\x1b[31m", "unsupported Content-Encoding 'gzip??[31m'"},
        {"gzip,gzip,gzip,gzip,gzip,gzip,gzip,gzip,gzip",
         "too many Content-Encoding layers (more than 8)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reel_decoder_t *d = (reel_decoder_t *)1;
        reel_err_t err;
        reel_err_clear(&err);
        sink_t s;
        assert_int_equal(reel_decoder_new(cases[i].ce, sink_fn, &s, &d, &err), REEL_UNSUPPORTED);
        assert_null(d);
        assert_string_equal(err.msg, cases[i].msg);
    }
    /* A hostile, long name is cut in the message. */
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    reel_decoder_t *d = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_decoder_new(longname, sink_fn, NULL, &d, &err), REEL_UNSUPPORTED);
    assert_true(strlen(err.msg) < 120);
    assert_non_null(strstr(err.msg, "...'"));
    reel_decoder_free(NULL);
}

static void test_sink_abort(void **state) {
    blob_t big = big_body(300 * 1024);
    blob_t enc = encode("gzip", big.data, big.len);
    sink_t s;
    sink_init(&s);
    s.abort_after = 2;
    reel_decoder_t *d = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_decoder_new("gzip", sink_fn, &s, &d, &err), REEL_OK);
    assert_int_equal(reel_decoder_feed(d, enc.data, enc.len, &err), REEL_ERROR);
    assert_int_equal(s.calls, 2);
    /* Sticky. */
    reel_err_t err2;
    reel_err_clear(&err2);
    assert_int_equal(reel_decoder_feed(d, enc.data, 1, &err2), REEL_ERROR);
    assert_string_equal(err.msg, err2.msg);
    assert_int_equal(reel_decoder_finish(d, NULL), REEL_ERROR);
    assert_int_equal(s.calls, 2);
    reel_decoder_free(d);
    reel_buf_free(&s.out);
    blob_free(&enc);
    blob_free(&big);
}

/* ---- tests: text detection ---- */

#define TEXT(s) reel_looks_text((const uint8_t *)(s), sizeof(s) - 1)

static void test_looks_text(void **state) {
    assert_true(TEXT(""));
    assert_true(TEXT("plain ASCII\r\n\twith tabs\f and \x1b[1mESC\x1b[0m\n"));
    assert_true(TEXT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"));
    /* Latin-1 bytes are not UTF-8. */
    assert_false(TEXT("caf\xe9 cr\xe8me br\xfbl\xe9"
                      "e"));
    assert_false(TEXT("nul\0inside"));
    /* Overlongs, surrogates, out of range, stray continuation, bad bytes. */
    assert_false(TEXT("\xc0\xaf"));
    assert_false(TEXT("\xc1\xbf"));
    assert_false(TEXT("\xe0\x80\xaf"));
    assert_false(TEXT("\xf0\x80\x80\xaf"));
    assert_false(TEXT("\xed\xa0\x80 surrogate"));
    assert_false(TEXT("\xf4\x90\x80\x80"));
    assert_false(TEXT("\xf5\x80\x80\x80"));
    assert_false(TEXT("\x80 continuation"));
    assert_false(TEXT("\xe2\x82 short then ascii"));
    assert_false(TEXT("\xff"));
    /* A sequence cut by the end of the sample is fine. */
    assert_true(TEXT("sample ends in \xe2\x82"));
    assert_true(TEXT("sample ends in \xf0\x9f\x98"));
    assert_true(TEXT("sample ends in \xc3"));
    /* ...but only if what is there is valid. */
    assert_false(TEXT("sample ends in \xe0\x80"));
    assert_false(TEXT("sample ends in \xed\xa0"));
    /* ...and not in data that is all there is (a 5-byte body ending in a
     * lead byte was printed as text by reel flow) */
    assert_false(reel_looks_text_whole((const uint8_t *)"abcd\xe0", 5));
    assert_false(reel_looks_text_whole((const uint8_t *)"ends in \xe2\x82", 10));
    assert_true(reel_looks_text_whole((const uint8_t *)"caf\xc3\xa9", 5));
    assert_true(reel_looks_text_whole((const uint8_t *)"", 0));
    /* the control bytes before a cut sequence count too (a sample of
     * them ending in a lead byte was text) */
    assert_false(TEXT("\x01\x02\x03\x04\xe0"));
    /* Control bytes: up to 5% is text, more is binary. */
    char buf[100];
    memset(buf, 'a', sizeof buf);
    for (int i = 0; i < 5; i++)
        buf[i * 10] = 0x01;
    assert_true(reel_looks_text((const uint8_t *)buf, sizeof buf));
    buf[99] = 0x7f;
    assert_false(reel_looks_text((const uint8_t *)buf, sizeof buf));
    /* A gzip header is binary. */
    assert_false(TEXT("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"));
}

/* ---- tests: hex dump ---- */

static char *dump(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts,
                  uint64_t start) {
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    assert_non_null(f);
    reel_hexdump_t h;
    reel_hexdump_init(&h, f);
    h.offset = start;
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        reel_hexdump_feed(&h, data + pos, end - pos);
        pos = end;
    }
    reel_hexdump_finish(&h);
    reel_hexdump_finish(&h); /* idempotent */
    fclose(f);
    return text;
}

static void test_hexdump(void **state) {
    static const char in[] = "Hello world\n\x00\x01\x02\x03"
                             "abc";
    static const char want[] =
        "00000000  48 65 6c 6c 6f 20 77 6f  72 6c 64 0a 00 01 02 03  |Hello world.....|\n"
        "00000010  61 62 63                                          |abc|\n";
    size_t len = sizeof in - 1;
    char *got = dump((const uint8_t *)in, len, NULL, 0, 0);
    assert_string_equal(got, want);
    free(got);
    /* Any split gives the same text. */
    for (size_t cut = 0; cut <= len; cut++) {
        got = dump((const uint8_t *)in, len, &cut, 1, 0);
        assert_string_equal(got, want);
        free(got);
    }
    size_t cuts[sizeof in];
    for (size_t k = 0; k < len - 1; k++)
        cuts[k] = k + 1;
    got = dump((const uint8_t *)in, len, cuts, len - 1, 0);
    assert_string_equal(got, want);
    free(got);

    /* Partial line shorter than the middle gap; high bytes; a start offset. */
    static const uint8_t bin[] = {0x7f, 0x80, 0xff, 0x20, 0x7e, 0x09};
    got = dump(bin, sizeof bin, NULL, 0, 0x1230);
    assert_string_equal(got,
                        "00001230  7f 80 ff 20 7e 09                                 |... ~.|\n");
    free(got);

    /* Exactly 16 bytes: one full line, nothing after it; empty input: nothing. */
    got = dump((const uint8_t *)"0123456789abcdef", 16, NULL, 0, 0);
    assert_string_equal(
        got, "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n");
    free(got);
    got = dump(NULL, 0, NULL, 0, 0);
    assert_string_equal(got, "");
    free(got);

    /* Exactly 8 bytes: the gap is still there. */
    got = dump((const uint8_t *)"ABCDEFGH", 8, NULL, 0, 0);
    assert_string_equal(got,
                        "00000000  41 42 43 44 45 46 47 48                           |ABCDEFGH|\n");
    free(got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_deflate_zlib),
        cmocka_unit_test(test_deflate_raw),
        cmocka_unit_test(test_br),
        cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_stacked),
        cmocka_unit_test(test_gzip_members),
        cmocka_unit_test(test_zstd_frames),
        cmocka_unit_test(test_zstd_window_limit),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_trailing_data),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_sink_abort),
        cmocka_unit_test(test_looks_text),
        cmocka_unit_test(test_hexdump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
